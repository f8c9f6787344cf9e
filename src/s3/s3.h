/*
 * s3 — the S3 API: the request pipeline (routing, authentication through
 * auth/, the bucket, authorization, the slots for rate limiting, body
 * transforms, post-commit hooks and response filters), the bucket and
 * object handlers, XML in and out, and the S3 error table.  Also serves the
 * unauthenticated operator endpoints /health/live, /health/ready and
 * /metrics.
 *
 * The gateway plugs into http/ as an http_handler; pipeline.c runs its
 * stages in order.  Everything decidable from the head is decided in
 * begin() (so a bad signature, a missing bucket or an oversized
 * Content-Length is answered before any body is read), body() streams the
 * payload through the aws-chunked decoder and the transforms into storage
 * (memory bounded by inline_max_size or one I/O buffer), end() commits and
 * answers, done() cleans up and writes the access log line.
 *
 * Thread-safety: the gateway is shared by all connection threads; it holds
 * only thread-safe handles (meta, data, obs) and immutable configuration.
 */
#ifndef CAIRN_S3_H
#define CAIRN_S3_H

#include <stdbool.h>
#include <stdint.h>

#include "audit/journal.h"
#include "core/core.h"
#include "data/data.h"
#include "events/events.h"
#include "http/http.h"
#include "meta/meta.h"
#include "obs/obs.h"

typedef struct s3_gateway s3_gateway;

/* What the gateway asks of the job queue.  cmd/ wires it to jobs/, which s3/
 * does not depend on.  Any may be NULL: no job figures on /metrics, and the
 * trash waits for the periodic empty_trash job. */
typedef struct {
    void *ud;
    /* Appends the queue's figures to /metrics (jobs_render_metrics). */
    void (*render_metrics)(void *ud, buf_t *out);
    /* Empties at most max_batches of the trash now; *removed gets how many
     * versions went (jobs_empty_trash). */
    int (*empty_trash)(void *ud, int max_batches, int *removed);
    /* Asks for an empty_trash run soon (jobs_enqueue_empty_trash). */
    int (*empty_trash_later)(void *ud);
    /* Jobs were committed with a change (bucket notifications): wake a worker (jobs_wake). */
    void (*wake)(void *ud);
} s3_jobs;

typedef struct {
    const config_t *cfg;
    meta_store *meta;
    data_store *data;
    obs_registry *obs;
    const char *root_access_key;
    const char *root_secret;
    int64_t root_user_id;
    uint8_t master_key[32];
    s3_jobs jobs;
    /* The audit journal every request's event goes to (audit/journal.h);
     * NULL: audit_enabled is false. */
    audit_journal *audit;
    /* The event bus object events are published on, and the hub that
     * serves GET /events/ws (events/events.h); NULL: events are off. */
    events_bus *events;
    events_hub *events_hub;
    /* The key manager SSE-S3 and SSE-KMS wrap data keys with (crypt/kms.h);
     * NULL: neither is available (requests for them get 501). */
    struct kms *kms;
} s3_deps;

/* The gateway copies deps (the handles stay owned by the caller). */
int s3_gateway_new(const s3_deps *deps, s3_gateway **out);
void s3_gateway_free(s3_gateway *gw);
/* The callbacks to give http_server_start with the gateway as app. */
const http_handler *s3_http_handler(void);

/* ---- the pipeline's slots (pipeline.c) -------------------------------------
 *
 * Registered after s3_gateway_new and before the gateway serves (not
 * thread-safe); at most 8 of each: CAIRN_ETOOBIG beyond.  Callbacks run on
 * the request's thread and must not block for long.
 */

/* What a commit did to an object a client can read. */
typedef enum {
    S3_CHANGE_NONE = 0,        /* a bucket's own commit, or an upload's bookkeeping (create, part, abort) */
    S3_CHANGE_CREATED,         /* an object was written (put, copy, completed upload) */
    S3_CHANGE_REMOVED,         /* an object was removed */
    S3_CHANGE_MARKER,          /* a delete marker became the current version (versioned buckets) */
} s3_change;

/* A metadata write that committed, as post-commit hooks see it.  The
 * pointers are valid during the call only. */
typedef struct {
    const char *api;           /* the operation: "PutObject", "DeleteObjects", "DeleteBucket", ... */
    const char *bucket;        /* the bucket's name */
    int64_t bucket_id;         /* its identity (meta.h) */
    const char *key;           /* the object's key (not NUL-terminated: key_len), NULL for the bucket itself */
    size_t key_len;
    s3_change change;
    const meta_object *obj;    /* CREATED: the new object; REMOVED: the one removed; MARKER: the marker; else NULL */
    const char *request_id;
    const char *principal;     /* the access key, or "anonymous" */
    const char *source_ip;
    bool versioned;            /* the bucket keeps versions (or did): events carry the version id */
} s3_commit;
typedef void (*s3_hook_fn)(void *ud, const s3_commit *c);
/* fn(ud, c) runs after every commit, before the response is sent: once per
 * key (a DeleteObjects of n keys is n commits), also when the request
 * then fails. */
int s3_hook_add(s3_gateway *gw, s3_hook_fn fn, void *ud);

/* A response about to be sent, as response filters see it. */
typedef struct {
    http_req *http;            /* add headers with http_add_header */
    const char *api;           /* the operation ("Unknown" when the request was refused before routing) */
    const char *bucket;        /* "" when none */
    int64_t bucket_id;         /* the request's bucket when the pipeline loaded it, else 0 */
    unsigned status;
} s3_response;
typedef void (*s3_filter_fn)(void *ud, const s3_response *resp);
/* fn(ud, resp) runs once for every response of the gateway, errors and
 * operator endpoints included, before its head is sent. */
int s3_filter_add(s3_gateway *gw, s3_filter_fn fn, void *ud);

/* ---- pure helpers, exposed for unit tests and fuzzing ------------------------ */

/* Bucket naming rules of S3 (3-63 chars, a-z 0-9 . -, no "..", not an IP, ...). */
bool s3_bucket_name_valid(const char *name);

/* The readiness verdict over n checks (health.c): "fail" when a required
 * one failed (rc[i] != 0), "degraded" when only optional ones did, else
 * "ok".  A static string. */
const char *s3_ready_status(int n, const bool *required, const int *rc);

typedef enum {
    S3_RANGE_NONE = 0,      /* no usable range: answer 200 with the whole object */
    S3_RANGE_OK = 1,        /* answer 206 with [*start, *start + *len) */
    S3_RANGE_UNSATISFIABLE = 2, /* answer 416 InvalidRange */
} s3_range_result;
/* Parses a Range header against an object of size bytes.  Syntactically
 * invalid or multi-range headers are ignored (S3 serves the whole object). */
s3_range_result s3_parse_range(const char *header, int64_t size, int64_t *start, int64_t *len);

/* Evaluates If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since
 * (any may be NULL) for an object with etag (unquoted) and mtime_ms, following
 * RFC 7232 precedence as S3 applies it.  Returns 0 (serve), 304 or 412. */
int s3_eval_conditionals(const char *if_match, const char *if_none_match,
                         const char *if_modified_since, const char *if_unmodified_since,
                         const char *etag, int64_t mtime_ms);

/* Parsed DeleteObjects request body. */
typedef struct {
    bool quiet;
    int count;
    struct { char *key; size_t key_len; char *version_id; } *objects;  /* owned; s3_delete_req_free; version_id NULL when none */
} s3_delete_req;
/* Parses <Delete> XML (at most 1000 objects).  CAIRN_EINVAL means MalformedXML;
 * CAIRN_ENOMEM. */
int s3_parse_delete_xml(const char *body, size_t len, s3_delete_req *out);
void s3_delete_req_free(s3_delete_req *d);

/* One rule of a bucket's notification configuration (a QueueConfiguration):
 * events matching one of the types, on keys with the prefix and suffix, go
 * to the webhook target the ARN names (arn:cairn:sqs::NAME:webhook). */
#define S3_NOTIFY_MAX_RULES 100
typedef struct {
    char id[256];
    char target[64];           /* NAME of the ARN */
    int nevents;
    char events[16][48];       /* s3:ObjectCreated:*, ... (a trailing * is a family) */
    char prefix[1025];
    char suffix[1025];
} s3_notify_rule;
/* Parses a NotificationConfiguration document: *rules (malloc'd, *n of
 * them; none for an empty configuration).  CAIRN_EINVAL with *why (a static
 * string) for what S3 answers MalformedXML or InvalidArgument about:
 * *invalid_argument tells which.  CAIRN_ENOMEM. */
int s3_parse_notification_xml(const char *body, size_t len, s3_notify_rule **rules, int *n, const char **why,
                              bool *invalid_argument);
/* The rules as the JSON the metadata keeps, and back (CAIRN_EINVAL for text
 * that is not such JSON). */
int s3_notify_rules_to_json(const s3_notify_rule *rules, int n, buf_t *out);
int s3_notify_rules_from_json(const char *json, s3_notify_rule **rules, int *n);
/* Does an event of this name ("s3:ObjectCreated:Put") on this key match the rule? */
bool s3_notify_rule_match(const s3_notify_rule *r, const char *event, const char *key, size_t key_len);
/* A bucket's CORS configuration (cors.c, docs/cors.md): the rules of a
 * CORSConfiguration, validated as S3 validates PutBucketCors.  Every string
 * is malloc'd and owned by the configuration (s3_cors_config_free). */
#define S3_CORS_MAX_RULES 100
#define S3_CORS_MAX_BYTES (64 * 1024)   /* the largest document PutBucketCors takes */
typedef struct {
    char *id;                  /* "" when none */
    char **origins;            /* AllowedOrigin: at most one '*' each, matching any run of characters */
    int norigins;
    char methods[5][8];        /* AllowedMethod: GET PUT POST DELETE HEAD, each once, in the order given */
    int nmethods;
    char **headers;            /* AllowedHeader: at most one '*' each; matched without regard to case */
    int nheaders;
    char **expose;             /* ExposeHeader: no wildcard */
    int nexpose;
    int64_t max_age;           /* MaxAgeSeconds, -1 when absent */
} s3_cors_rule;
typedef struct {
    s3_cors_rule *rules;
    int n;
} s3_cors_config;
/* Parses a CORSConfiguration document (at most 1 MiB: the stored form may be
 * longer than the request's 64 KB).  0 with *out filled (1..100 rules);
 * CAIRN_EINVAL with why (whylen bytes) for what S3 answers MalformedXML
 * about, or InvalidRequest when *invalid_request is set; CAIRN_ENOMEM.  On
 * failure *out is empty. */
int s3_cors_parse(const char *body, size_t len, s3_cors_config *out, char *why, size_t whylen,
                  bool *invalid_request);
void s3_cors_config_free(s3_cors_config *c);
/* The configuration as the document GetBucketCors answers, which is also
 * the form the metadata keeps: parsing it gives the same configuration. */
void s3_cors_render(const s3_cors_config *c, buf_t *out);
/* Matches s against pattern, where each '*' stands for any run of
 * characters (the empty one too); nocase compares ASCII letters without
 * regard to case. */
bool s3_cors_wildcard_match(const char *pattern, const char *s, bool nocase);
/* The first rule that allows a request from origin with method (exact,
 * "GET"), and, unless req_headers is NULL, every header named in
 * req_headers (the comma-separated Access-Control-Request-Headers of a
 * preflight); NULL when none.  *matched_origin gets the AllowedOrigin that
 * matched ("*" answers Access-Control-Allow-Origin: *). */
const s3_cors_rule *s3_cors_match(const s3_cors_config *c, const char *origin, const char *method,
                                  const char *req_headers, const char **matched_origin);

/* Object lock documents (lock.c, docs/object-lock.md), validated as S3
 * validates PutObjectLockConfiguration, PutObjectRetention and
 * PutObjectLegalHold.  Each parser takes at most S3_LOCK_MAX_BYTES and
 * returns 0 with *out filled, CAIRN_EINVAL with *code the S3 error
 * ("MalformedXML" or "InvalidArgument") and *message (static, NULL for the
 * code's default), or CAIRN_ENOMEM. */
#define S3_LOCK_MAX_BYTES (64 * 1024)
#define S3_LOCK_MAX_DAYS 36500
#define S3_LOCK_MAX_YEARS 100
typedef struct {
    bool enabled;              /* ObjectLockEnabled: Enabled */
    meta_lock_mode mode;       /* the default retention's mode; NONE: no Rule */
    int days, years;           /* its period: exactly one of them > 0 when mode is set */
} s3_lock_config;
int s3_lock_config_parse(const char *body, size_t len, s3_lock_config *out, const char **code,
                         const char **message);
/* The configuration as GetObjectLockConfiguration answers it, which is
 * also the form the metadata keeps ("object_lock"). */
void s3_lock_config_render(const s3_lock_config *c, buf_t *out);
/* A Retention: mode NONE (an empty Retention, which removes one) or a mode
 * with its date (ms since epoch; not checked against the clock here). */
int s3_lock_retention_parse(const char *body, size_t len, meta_lock_mode *mode, int64_t *until_ms,
                            const char **code, const char **message);
/* A LegalHold: Status ON or OFF. */
int s3_lock_legal_hold_parse(const char *body, size_t len, bool *on, const char **code, const char **message);

/* Tags (tagging.c, docs/s3-compatibility.md): an object version's tag set
 * (at most 10) or a bucket's (at most 50), validated as S3 validates them:
 * keys of 1..128 and values of 0..256 Unicode characters, made of letters,
 * digits, spaces and + - = . _ : / @, keys unique and not beginning with
 * "aws:".  Every string is malloc'd, owned by the set (s3_tagset_free). */
#define S3_TAGS_OBJECT_MAX 10
#define S3_TAGS_BUCKET_MAX 50
/* The member of an object version's stored headers (headers_json) holding
 * its tags, as a JSON object {"key": "value", ...}; never a response header. */
#define S3_TAGS_MEMBER "x-amz-tagging"
typedef struct {
    char *key;
    char *value;
} s3_tag;
typedef struct {
    s3_tag *tags;
    int n;
} s3_tagset;
/* Parses a <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>
 * document of at most 1 MiB and validates it for an object (max_tags 10) or
 * a bucket (50).  0 with *out; CAIRN_EINVAL with the S3 error *code
 * ("MalformedXML", "InvalidTag") and *why (static strings); CAIRN_ENOMEM.
 * On failure *out is empty. */
int s3_tagging_parse_xml(const char *body, size_t len, int max_tags, s3_tagset *out, const char **code,
                         const char **why);
/* Parses an x-amz-tagging header, URL-query encoded ("k1=v1&k2=v2", '+' a
 * space, "k" an empty value; "" no tags) and validates it for an object:
 * CAIRN_EINVAL with *code "InvalidArgument" for an encoding that does not
 * decode to UTF-8 or repeats a key, "InvalidTag" for the limits above;
 * CAIRN_ENOMEM.  On failure *out is empty. */
int s3_tagging_parse_header(const char *value, size_t len, s3_tagset *out, const char **code, const char **why);
void s3_tagset_free(s3_tagset *t);
/* The set as GetObjectTagging / GetBucketTagging answer it (the form a
 * bucket's tags are kept in too): parsing it gives the same set. */
void s3_tagging_render(const s3_tagset *t, buf_t *out);
/* The set as the JSON object stored under S3_TAGS_MEMBER ({} when empty). */
void s3_tagset_json(const s3_tagset *t, buf_t *out);
/* The tags of stored headers (headers_json, NULL: none): 0 with *out
 * (empty when it has none), CAIRN_EINVAL for text that is not a JSON
 * object, CAIRN_ENOMEM. */
int s3_tagset_from_headers(const char *headers_json, s3_tagset *out);
/* How many tags stored headers hold (0 for NULL or unreadable JSON). */
int s3_tag_count(const char *headers_json);
/* headers_json (NULL: "{}") with its S3_TAGS_MEMBER replaced by tags (none,
 * or NULL: removed): malloc'd into *out.  CAIRN_EINVAL when headers_json is
 * not a JSON object, CAIRN_ENOMEM. */
int s3_headers_set_tags(const char *headers_json, const s3_tagset *tags, char **out);

/* Lifecycle configurations (lifecycle_config.c, docs/lifecycle.md), as S3
 * validates PutBucketLifecycleConfiguration.  Strings are malloc'd, owned
 * by the configuration (s3_lifecycle_config_free). */
#define S3_LIFECYCLE_MAX_RULES 1000
#define S3_LIFECYCLE_MAX_NEWER 100
#define S3_LIFECYCLE_MAX_BYTES (1024 * 1024)
typedef struct {
    char *id;                  /* 1..255 characters (made up when the request has none) */
    bool enabled;              /* Status */
    bool legacy_prefix;        /* the rule-level Prefix, not a Filter */
    bool and_form;             /* Filter/And */
    bool prefix_given;         /* a Prefix element was there (rendered back) */
    char *prefix;              /* "" = every key */
    s3_tagset tags;            /* all must be on the object */
    int64_t size_gt, size_lt;  /* ObjectSizeGreaterThan / LessThan (strict); -1 = none */
    bool has_expiration;
    int exp_days;              /* Expiration/Days, 0 = none */
    bool has_exp_date;
    int64_t exp_date_ms;       /* Expiration/Date (a midnight UTC) */
    bool has_exp_delete_marker;
    bool exp_delete_marker;    /* Expiration/ExpiredObjectDeleteMarker */
    bool has_noncurrent;
    int nc_days;               /* NoncurrentVersionExpiration/NoncurrentDays */
    int nc_newer;              /* NewerNoncurrentVersions, 0 = none */
    int abort_days;            /* AbortIncompleteMultipartUpload/DaysAfterInitiation, 0 = none */
} s3_lifecycle_rule;
typedef struct {
    s3_lifecycle_rule *rules;
    int n;
} s3_lifecycle_config;
/* Parses a LifecycleConfiguration (at most 2 MiB): 0 with *out (1..1000
 * rules); CAIRN_EINVAL with the S3 error *code ("MalformedXML",
 * "InvalidArgument", "InvalidRequest", "InvalidTag", or "NotImplemented"
 * for a Transition) and *why (static); CAIRN_ENOMEM.  On failure *out is
 * empty. */
int s3_lifecycle_parse(const char *body, size_t len, s3_lifecycle_config *out, const char **code, const char **why);
void s3_lifecycle_config_free(s3_lifecycle_config *c);
/* The configuration as GetBucketLifecycleConfiguration answers it, which is
 * the form the metadata keeps ("lifecycle"): parsing it gives it back. */
void s3_lifecycle_render(const s3_lifecycle_config *c, buf_t *out);
/* Whether rule r's filter takes an object (tags NULL: it has none). */
bool s3_lifecycle_filter_match(const s3_lifecycle_rule *r, const char *key, size_t key_len, int64_t size,
                               const s3_tagset *tags);
/* When an action due days after since_ms falls due: since + days, rounded
 * up to the next multiple of day_ms since the epoch (midnight UTC). */
int64_t s3_lifecycle_due(int64_t since_ms, int days, int64_t day_ms);
/* When the current version of a key (its size, mtime and tags) expires by
 * the earliest enabled Expiration rule (Days or Date) whose filter takes
 * it, with *rule_id that rule's ID; 0 when none applies. */
int64_t s3_lifecycle_expiry(const s3_lifecycle_config *c, const char *key, size_t key_len, int64_t size,
                            int64_t mtime_ms, const s3_tagset *tags, int64_t day_ms, const char **rule_id);

/* The lifecycle job kinds (lifecycle.c): "lifecycle" (one bucket's run,
 * args {"bucket", "bucket_id"}) and "lifecycle_scan" (a run for every
 * bucket with a configuration; periodic), on q (a job_queue, jobs.h).
 * Removals are published on bus (NULL: none) as LifecycleExpiration:Delete
 * and LifecycleExpiration:DeleteMarkerCreated. */
struct job_queue;
int s3_lifecycle_register(struct job_queue *q, meta_store *ms, data_store *ds, events_bus *bus, const config_t *cfg);
/* Enqueues a run for one bucket, unless one is pending already. */
int s3_lifecycle_enqueue(meta_store *ms, const char *bucket, int64_t bucket_id);

/* One <Part> of a CompleteMultipartUpload body. */
typedef struct {
    int number;                /* 1..10000 */
    char etag[72];             /* unquoted */
    /* Its <ChecksumCRC32> (or -CRC32C, -SHA1, -SHA256, -CRC64NVME) as
     * "<algorithm>:<value>" like meta_part.checksum, "" when it has none; a
     * value too long for any checksum keeps only "<algorithm>:?". */
    char checksum[96];
} s3_complete_part;
/* Parses <CompleteMultipartUpload><Part><PartNumber/><ETag/>[<ChecksumX/>]</Part>...
 * (1..10000 parts, each with both fields).  Returns the count with *out
 * (malloc'd, the caller frees), CAIRN_EINVAL (MalformedXML) or CAIRN_ENOMEM. */
int s3_parse_complete_xml(const char *body, size_t len, s3_complete_part **out);
/* Parses a VersioningConfiguration: *status 1 Enabled, 2 Suspended, 0 none
 * given; *mfa_delete true when MfaDelete is Enabled.  CAIRN_EINVAL for bad
 * XML (MalformedXML) or, with *illegal set, a Status or MfaDelete S3 does
 * not have (IllegalVersioningConfigurationException).  CAIRN_ENOMEM. */
int s3_parse_versioning_xml(const char *body, size_t len, int *status, bool *mfa_delete, bool *illegal);
/* Parses <CreateBucketConfiguration>; an empty body gives "".  CAIRN_EINVAL on bad XML. */
int s3_parse_create_bucket_xml(const char *body, size_t len, char *location, size_t loclen);
/* Whether v is an S3 ObjectOwnership: BucketOwnerEnforced,
 * BucketOwnerPreferred or ObjectWriter. */
bool s3_object_ownership_valid(const char *v);
/* A header value as cairn stores it, UTF-8 (out holds 2n + 1 bytes; NUL
 * terminated; returns its length).  Bytes that are not UTF-8 are read as
 * ISO-8859-1, what HTTP says header bytes are.  With rfc2047 (user
 * metadata, x-amz-meta-*), a value made only of RFC 2047 encoded words
 * (=?UTF-8?B?...?=, =?ISO-8859-1?Q?...?=, separated by whitespace) is
 * decoded first, as S3 does before it stores one; one that does not decode
 * to UTF-8 without NULs is kept as sent. */
size_t s3_header_value_decode(const char *in, size_t n, bool rfc2047, char *out);
/* A stored user metadata value as it goes on the wire: itself when it is
 * printable US-ASCII, else one RFC 2047 encoded word of its UTF-8 bytes,
 * =?UTF-8?B?<base64>?=, as S3 answers (appended to b). */
void s3_meta_value_encode(buf_t *b, const char *v, size_t n);
/* GetObjectAttributes' x-amz-object-attributes: a comma-separated list of
 * ETag, Checksum, ObjectParts, StorageClass, ObjectSize (spaces around
 * names allowed) into a bit set.  CAIRN_EINVAL for an unknown or empty
 * name, or none at all. */
int s3_parse_object_attributes(const char *v, unsigned *out);
/* Parses a PutBucketOwnershipControls body: exactly one Rule holding
 * exactly one valid ObjectOwnership, copied into out (>= 32 bytes).  0,
 * CAIRN_EINVAL (not that document: MalformedXML) or CAIRN_ENOMEM. */
int s3_parse_ownership_xml(const char *body, size_t len, char *out, size_t outlen);

/* Decodes standard base64 (with padding) into out, which holds cap bytes;
 * false when the text is malformed or its decoding (counted before padding
 * is dropped: 3 bytes per 4 characters) would not fit in cap. */
bool s3_base64_decode(const char *in, uint8_t *out, size_t cap, size_t *outlen);
/* Encodes n bytes as base64 with padding into out (>= 4 * ((n + 2) / 3) + 1). */
void s3_base64_encode(const uint8_t *in, size_t n, char *out);

/* Parses x-amz-copy-source: "/bucket/key" or "bucket/key", percent-encoded,
 * optionally followed by "?versionId=ID".  Fills bucket (blen bytes), key
 * (1025 bytes, *klen; valid UTF-8 without NUL) and, when present, the
 * decoded version id (vlen bytes) with *has_version.  CAIRN_EINVAL when
 * malformed, CAIRN_ENOMEM. */
int s3_parse_copy_source(const char *src, char *bucket, size_t blen, char *key, size_t *klen, char *version,
                         size_t vlen, bool *has_version);
/* Parses x-amz-copy-source-range ("bytes=first-last", both given, first <=
 * last) against a source of size bytes: 0 and the range; CAIRN_EINVAL when
 * malformed (InvalidArgument); CAIRN_ETOOBIG when last is past the end
 * (InvalidRange). */
int s3_parse_copy_range(const char *h, int64_t size, int64_t *start, int64_t *len);
/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, at most
 * U+10FFFF): S3 object keys must be. */
bool s3_utf8_valid(const char *s, size_t n);

/* One parameter of a request's query string, percent-decoded. */
typedef struct {
    char *name;
    char *value;               /* "" when the parameter had no '=' */
} s3_query_param;
/* Splits a raw query string (as sent after '?') into percent-decoded
 * name/value pairs, '+' read as a space and "%2B" as a plus.  The text the
 * pairs point into is allocated from a (at most 2 * strlen(raw) + 2 bytes).
 * At most max pairs.  CAIRN_EINVAL on a malformed escape, a NUL or invalid
 * UTF-8 in a component, or more than max parameters; CAIRN_ENOMEM when a
 * cannot hold the text. */
int s3_parse_query(arena *a, const char *raw, s3_query_param *params, int max, int *n);

/* multipart/form-data, incrementally (form.c, docs/post-object.md): the
 * body of a POST Object.  The sink is told of each part as its headers end
 * (name, filename or NULL, Content-Type or NULL: NUL-terminated, valid
 * only during the call), then of its content as it arrives, in pieces of
 * any size, then of its end.  A sink returns 0 to go on, S3_FORM_STOP (from
 * part_begin or part_end) to have the rest of the body ignored, or a
 * negative error the feed returns. */
#define S3_FORM_BOUNDARY_MAX 70       /* RFC 2046 */
#define S3_FORM_HEADER_MAX 4096       /* one part's header block */
#define S3_FORM_STOP 1
typedef struct {
    int (*part_begin)(void *ud, const char *name, const char *filename, const char *content_type);
    int (*part_data)(void *ud, const char *data, size_t n);
    int (*part_end)(void *ud);
} s3_form_sink;
typedef struct s3_form s3_form;
/* The boundary of a Content-Type "multipart/form-data; boundary=..." value
 * into out; CAIRN_EINVAL for another type or no valid boundary. */
int s3_form_boundary(const char *content_type, char out[S3_FORM_BOUNDARY_MAX + 1]);
/* A parser (the caller frees it: s3_form_free), NULL when out of memory
 * or the boundary is not 1..70 bytes without CR. */
s3_form *s3_form_new(const char *boundary, const s3_form_sink *sink, void *ud);
/* Parses n more bytes: 0; CAIRN_EINVAL for a malformed body with *why (a
 * static message); or the sink's error.  After an error every feed fails. */
int s3_form_feed(s3_form *f, const char *data, size_t n, const char **why);
/* The body ended: 0 when the closing delimiter came (or the sink stopped
 * the parse), else CAIRN_EINVAL with *why. */
int s3_form_finish(s3_form *f, const char **why);
/* The body offset of the byte being parsed (during a sink call: of the
 * first byte it is given; between feeds: bytes fed). */
uint64_t s3_form_offset(const s3_form *f);
void s3_form_free(s3_form *f);
/* A listing's continuation token: opaque base64 of 'K' + key (resume after
 * the key) or 'P' + the successor of a common prefix (resume at it).
 * Encode returns a malloc'd string or NULL; decode fills key (1025 bytes),
 * *len and *inclusive, or returns CAIRN_EINVAL for anything we did not make
 * (or CAIRN_ENOMEM). */
char *s3_list_token_encode(const char *key, size_t len, bool is_prefix);
int s3_list_token_decode(const char *tok, char *key, size_t *len, bool *inclusive);
/* A max-keys / max-uploads / max-parts style parameter: absent gives def, a
 * plain non-negative decimal is capped at cap; CAIRN_EINVAL otherwise. */
int s3_parse_max(const char *v, int def, int cap, int *out);

/* Looks up the HTTP status of an S3 error code (500 for unknown codes). */
unsigned s3_error_status(const char *code);

/* The client address rate limits count (s3/limits.c): peer, or, when peer
 * is one of trusted (net_addr_in_list), the nearest hop of the
 * X-Forwarded-For value xff (NULL: none) that is not itself trusted.  A
 * malformed hop ends the walk at the last good one.  Into out (cap bytes). */
void s3_client_address(const char *peer, const char *xff, const char *trusted, char *out, size_t cap);

#endif
