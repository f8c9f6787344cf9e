/*
 * internal.h — private to s3/: the per-request state and the helpers shared
 * by the gateway, bucket and object handler files.
 */
#ifndef CAIRN_S3_INTERNAL_H
#define CAIRN_S3_INTERNAL_H

#include <openssl/evp.h>

#include "auth/auth.h"
#include "crypt/crypt.h"
#include "s3/s3.h"

typedef struct s3_health s3_health;
typedef struct s3_notify_cache s3_notify_cache;
typedef struct s3_cors_cache s3_cors_cache;
typedef struct s3_lifecycle_cache s3_lifecycle_cache;
typedef struct s3_sse_cache s3_sse_cache;

/* A registry of callbacks (post-commit hooks, response filters): filled
 * before the gateway serves, read-only after. */
#define S3_MAX_CALLBACKS 8
typedef struct {
    struct {
        void (*fn)(void);       /* the registry's own type, cast back to call */
        void *ud;
    } at[S3_MAX_CALLBACKS];
    int n;
} s3_callbacks;

struct s3_gateway {
    s3_deps d;
    config_t cfg;               /* private copy: immutable after start */
    s3_health *health;          /* the readiness checker (health.c) */
    s3_callbacks hooks;         /* post-commit hooks (s3_hook_add) */
    s3_callbacks filters;       /* response filters (s3_filter_add) */
    auth_keys keys;             /* what signatures are checked against (into d and cfg) */
    s3_notify_cache *notify;    /* bucket notification configurations and targets (notify.c) */
    s3_cors_cache *cors;        /* buckets' CORS configurations (cors.c) */
    s3_lifecycle_cache *lifecycle; /* buckets' lifecycle configurations, for x-amz-expiration (lifecycle.c) */
    s3_sse_cache *sse;          /* buckets' default encryption (encryption.c) */
    rl_limiter *limiter;        /* the rate limits and the in-flight cap (limits.c) */
    _Atomic int64_t limits_read_ns; /* when the overrides were last read (monotonic; 0 never) */
    _Atomic bool limits_read_failing; /* the last read of them failed */
};

/* Who a request's bytes and operations count against (limits.c): copies,
 * so that a GET body's stream may outlive the request's handler. */
typedef struct {
    rl_limiter *l;              /* set once admitted: release and charge through it; NULL: nothing */
    char key[129], ip[64], bucket[64];
    rl_subject s;               /* points into the above (s3_rate_subject_fix after a copy) */
    uint64_t pending;           /* body bytes not charged yet */
} s3_rate;

/* Operations, one per route (routes.c); the unsupported ones have no handler. */
typedef enum {
    OP_NONE = 0,                /* not routed yet */
    OP_HEALTH_LIVE, OP_HEALTH_READY, OP_METRICS, OP_EVENTS_WS,
    OP_LIST_BUCKETS,
    OP_CREATE_BUCKET, OP_HEAD_BUCKET, OP_DELETE_BUCKET, OP_GET_BUCKET_LOCATION,
    OP_LIST_OBJECTS, OP_LIST_OBJECTS_V2, OP_DELETE_OBJECTS,
    OP_GET_BUCKET_VERSIONING, OP_GET_BUCKET_ACL, OP_BUCKET_SUBRESOURCE_EMPTY,
    OP_PUT_BUCKET_NOTIFICATION, OP_GET_BUCKET_NOTIFICATION,
    OP_PUT_BUCKET_VERSIONING, OP_LIST_OBJECT_VERSIONS,
    OP_PUT_BUCKET_CORS, OP_GET_BUCKET_CORS, OP_DELETE_BUCKET_CORS, OP_CORS_PREFLIGHT, OP_CORS_PREFLIGHT_OBJECT,
    OP_PUT_BUCKET_ENCRYPTION, OP_GET_BUCKET_ENCRYPTION, OP_DELETE_BUCKET_ENCRYPTION,
    OP_PUT_BUCKET_OWNERSHIP, OP_GET_BUCKET_OWNERSHIP, OP_DELETE_BUCKET_OWNERSHIP,
    OP_PUT_OBJECT_LOCK_CONFIG, OP_GET_OBJECT_LOCK_CONFIG,
    OP_PUT_OBJECT_RETENTION, OP_GET_OBJECT_RETENTION, OP_PUT_OBJECT_LEGAL_HOLD, OP_GET_OBJECT_LEGAL_HOLD,
    OP_PUT_BUCKET_TAGGING, OP_GET_BUCKET_TAGGING, OP_DELETE_BUCKET_TAGGING,
    OP_PUT_BUCKET_LIFECYCLE, OP_GET_BUCKET_LIFECYCLE, OP_DELETE_BUCKET_LIFECYCLE,
    OP_PUT_BUCKET_POLICY, OP_GET_BUCKET_POLICY, OP_DELETE_BUCKET_POLICY, OP_GET_BUCKET_POLICY_STATUS,
    OP_PUT_PUBLIC_ACCESS_BLOCK, OP_GET_PUBLIC_ACCESS_BLOCK, OP_DELETE_PUBLIC_ACCESS_BLOCK,
    OP_PUT_BUCKET_ACL, OP_PUT_OBJECT_ACL,
    OP_PUT_OBJECT, OP_COPY_OBJECT, OP_GET_OBJECT, OP_HEAD_OBJECT, OP_DELETE_OBJECT,
    OP_GET_OBJECT_ACL, OP_GET_OBJECT_TAGGING, OP_PUT_OBJECT_TAGGING, OP_DELETE_OBJECT_TAGGING,
    OP_GET_OBJECT_ATTRIBUTES,
    OP_LIST_MULTIPART_UPLOADS, OP_POST_OBJECT,
    OP_CREATE_MULTIPART, OP_UPLOAD_PART, OP_UPLOAD_PART_COPY, OP_COMPLETE_MULTIPART, OP_ABORT_MULTIPART, OP_LIST_PARTS,
    OP_UNSUPPORTED_SERVICE, OP_UNSUPPORTED_BUCKET, OP_UNSUPPORTED_BUCKET_CONFIG, OP_UNSUPPORTED_BUCKET_SUB,
    OP_UNSUPPORTED_MULTIPART, OP_UNSUPPORTED_OBJECT_SUB, OP_UNSUPPORTED_OBJECT,
    OP__COUNT
} s3_op;

/* What happens to the request body. */
typedef enum {
    BODY_IGNORE = 0,            /* none expected; any bytes are hashed then dropped */
    BODY_BUFFER,                /* small XML documents, capped at body_limit */
    BODY_OBJECT,                /* object data: inline buffer or data writer */
    BODY_FORM,                  /* a POST Object form: fields, then the file streamed as object data (post.c) */
} s3_body_mode;

/* What a request names. */
typedef enum {
    S3_RES_OPERATOR = 0,        /* /health/live, /health/ready, /metrics */
    S3_RES_SERVICE,             /* no bucket: GET / */
    S3_RES_BUCKET,              /* a bucket, no key */
    S3_RES_OBJECT,              /* a bucket and a key */
} s3_resource;

/* The credentials a route needs. */
typedef enum {
    S3_AUTH_NONE = 0,           /* none are read (operator endpoints) */
    S3_AUTH_PUBLIC,             /* anonymous callers too, whatever the route */
    /* a signed request; an anonymous one is AccessDenied, except on a route
     * that loads a bucket, where the authorize stage judges it (acl.c) */
    S3_AUTH_SIGNED,
} s3_auth_need;

typedef struct s3_req s3_req;
typedef struct s3_post s3_post;

/* Seals a stream into a data writer (sse.c): 64 KiB packages (crypt.h),
 * the last one held back until the stream ends, so it is the one marked
 * last.  Two package buffers, made on first use. */
typedef struct {
    uint8_t key[CRYPT_KEY];
    uint64_t index;
    uint8_t *pkg;               /* CRYPT_PACKAGE plaintext bytes */
    size_t fill;
    uint8_t *out;               /* CRYPT_PACKAGE + CRYPT_TAG */
} s3_sealer;

/* How what a request writes is sealed (sse.c), decided before its body. */
typedef struct {
    char mode;                  /* 0: stored plain; 'S' SSE-S3, 'K' SSE-KMS, 'C' SSE-C */
    bool upload;                /* key is an upload's: a part's own is crypt_part_key of it */
    uint8_t key[CRYPT_KEY];     /* the data key (an upload's, for parts) */
    char kms_key_id[65];
    char member[CRYPT_SSE_MAX]; /* CRYPT_SSE_MEMBER's value for the headers */
    char customer_md5[32];      /* SSE-C: the key's MD5, base64 */
    bool bucket_key;            /* x-amz-server-side-encryption-bucket-key-enabled, echoed */
    s3_sealer sealer;           /* the body on its way to q->writer */
} s3_sse;

/* One route: what the pipeline does around its handler. */
typedef struct {
    const char *api;            /* the operation's name in logs and metrics */
    s3_resource resource;
    s3_auth_need auth;
    /* The request's bucket must exist: the bucket stage loads it once
     * (s3_req.bk) and authorization judges access to it. */
    bool bucket;
    s3_body_mode body;
    /* Runs from the head, before any body byte; nonzero = answered. */
    int (*begin)(s3_req *q);
    /* Runs once the body is in and checked; must answer.  NULL: a route we
     * do not serve, refused as s3_route_refusal says. */
    void (*handler)(s3_req *q);
    /* The IAM action name audit events carry ("s3:GetObject"); "s3:Unknown"
     * for the routes we do not serve. */
    const char *action;
} s3_route;

/* What a route is chosen by. */
typedef struct {
    const char *method;
    s3_resource resource;       /* never S3_RES_OPERATOR: see s3_route_operator */
    const s3_query_param *params;
    int nparams;
    bool copy_source;           /* an x-amz-copy-source header is present */
} s3_route_input;

/* routes.c */
/* The operator endpoint a GET of raw_path is, or NULL. */
const s3_route *s3_route_operator(const char *method, const char *raw_path, bool upgrade);
/* The route of an S3 request: never NULL (unsupported combinations have
 * routes without a handler). */
const s3_route *s3_route_find(const s3_route_input *in);
/* The S3 error code refusing route (MethodNotAllowed or NotImplemented),
 * or NULL when route has a handler. */
const char *s3_route_refusal(const s3_route *route, const char *method);
const s3_route *s3_route_get(s3_op op);
/* The IAM action name of a request on route (NULL: "s3:Unknown"), for its audit event. */
const char *s3_route_action(const s3_route *route, const s3_query_param *params, int nparams);
s3_op s3_route_op(const s3_route *route);

#define S3_MAX_QUERY 48

typedef s3_query_param s3_param;  /* decoded, in the request's arena */

struct s3_req {
    s3_gateway *gw;
    http_req *http;
    const s3_route *route;
    s3_op op;                   /* s3_route_op(route) */
    char error_code[64];        /* set by s3_error, for the access log */
    bool filtered;              /* the response filters ran */
    /* A metadata call made below a helper whose own result cannot say so
     * (obj_reader_open's parts lookup) found the database unavailable
     * (s3_meta_unavailable): the code, so the request answers 503. */
    int meta_failure;

    /* addressing */
    char bucket[256];
    /* The request's bucket, loaded once by the bucket stage when the route
     * needs one (route->bucket); handlers use it and name the bucket by its
     * id (bucket_id) in every metadata call, so a bucket deleted and
     * recreated by someone else meanwhile is never acted on. */
    meta_bucket bk;
    int64_t bucket_id;          /* bk.id, or the id CreateBucket made */
    char key[1025];
    size_t key_len;
    bool has_key;
    bool vhost;                 /* the bucket came from the Host header */
    s3_param params[S3_MAX_QUERY];
    int nparams;

    /* who is asking (the authenticate stage) */
    auth_identity who;
    /* the authorize stage (acl.c): nothing at the bucket granted the
     * request, the object's ACL may; and what that judgement needs */
    s3_rate rate;               /* the rate limit stage's subject (limits.c) */
    bool object_acl_pending;
    bool acls_enabled;
    int pab;

    /* body */
    s3_body_mode body_mode;
    bool body_done;
    int64_t declared_size;      /* decoded payload size the client announced; -1 unknown */
    uint64_t payload_bytes;     /* decoded payload bytes seen */
    uint64_t body_limit;
    buf_t body;                 /* BODY_BUFFER, or inline object bytes */
    bool inline_object;
    /* Transfer-Encoding: chunked without a length (object.c): the body is
     * buffered up to inline_max_size, then goes to a writer of unknown size
     * whose tap skips the tap_skip bytes already hashed. */
    bool size_unknown;
    size_t tap_skip;
    data_writer *writer;
    char version_id[33];        /* of the object being written */
    bool force_shards;          /* never inline (multipart parts) */
    meta_put_cond put_cond;     /* a conditional write's condition (s3_write_cond_begin) */
    const char *event_version;  /* the version id the next s3_notify_jobs events carry (NULL: none) */
    char put_cond_etag[72];     /* ... for META_PUT_IF_MATCH, unquoted */
    int part_number;            /* UploadPart */
    s3_post *post;              /* POST Object's form (post.c) */
    chunked_decoder *chunked;
    EVP_MD_CTX *md5;
    EVP_MD_CTX *sha256;         /* when the payload hash was signed */
    const char *checksum_name;  /* x-amz-checksum-<algo> header being verified, or NULL */
    char checksum_expected[96];
    EVP_MD_CTX *checksum_md;    /* sha1/sha256 checksums */
    uint32_t crc;               /* crc32 / crc32c running value */
    uint64_t crc64;             /* crc64nvme running value */
    int crc_kind;               /* 0 none, 1 crc32, 2 crc32c, 3 crc64nvme */
    int checksum_want;          /* S3_CK_*: computed even without a header (parts of an upload that has one) */
    bool checksum_compute_only; /* checksum_name is computed, not verified: no value was sent */
    char checksum_got[96];      /* the computed value (base64), once the body is in (S3_CK_VALUE_MAX) */
    s3_sse sse;                 /* what the body is sealed with (sse.c) */
    bool src_sealed;            /* a copy's source is sealed under src_key (s3_load_copy_source) */
    uint8_t src_key[CRYPT_KEY];
    int body_error;             /* first error while storing the body */
    const char *body_error_code;
    const char *body_error_msg;    /* NULL: the code's usual message */
};

/* checksum.c: S3's additional checksums (see there). */
enum { S3_CK_CRC32 = 1, S3_CK_CRC32C, S3_CK_SHA1, S3_CK_SHA256, S3_CK_CRC64NVME };
#define S3_CK_VALUE_MAX 96      /* a base64 checksum with a "-10000" suffix, and a NUL */
typedef struct {
    const char *name;           /* as x-amz-checksum-algorithm names it: "CRC32C" */
    const char *lower;          /* as the header's suffix: "crc32c" */
    const char *header;         /* "x-amz-checksum-crc32c" */
    const char *xml;            /* "ChecksumCRC32C" */
    size_t raw;                 /* bytes of a value */
} s3_ck_info;
const s3_ck_info *s3_ck_info_of(int alg);          /* NULL for none */
int s3_ck_by_name(const char *name);               /* "CRC32" (any case) -> S3_CK_CRC32; 0 */
/* The algorithm of the x-amz-checksum-<alg> header (or x-amz-trailer) a
 * request carries; 0 for none. */
int s3_ck_in_request(s3_req *q);
/* A running checksum of one algorithm; s3_ck_free releases it. */
typedef struct {
    int alg;
    uint32_t crc;
    uint64_t crc64;
    EVP_MD_CTX *md;
} s3_ck;
int s3_ck_init(s3_ck *c, int alg);                 /* 0 or CAIRN_ENOMEM */
void s3_ck_update(s3_ck *c, const void *p, size_t n);
void s3_ck_final(s3_ck *c, char out[S3_CK_VALUE_MAX]);   /* base64; once */
void s3_ck_free(s3_ck *c);
/* The algorithm of a stored "<algorithm>:<value>" (meta_part.checksum),
 * with *value pointing into it; 0 for "" or anything else. */
int s3_ck_split(const char *stored, const char **value);
/* The checksum of a multipart object of alg from its n parts (in order,
 * sizes set, each with a checksum of alg): COMPOSITE ("<base64>-<n>") or
 * FULL_OBJECT (CRCs only).  CAIRN_EINVAL when a part has none of alg. */
int s3_ck_multipart(int alg, bool full_object, const meta_part *parts, int n, char out[S3_CK_VALUE_MAX]);
/* A version's checksum, or an upload's algorithm, from its stored headers. */
typedef struct {
    int alg;                    /* the object's checksum: algorithm, 0 none */
    char value[S3_CK_VALUE_MAX];
    bool full_object;           /* its type (or the upload's): FULL_OBJECT, else COMPOSITE */
    int upload_alg;             /* an upload's x-amz-checksum-algorithm, 0 none */
} s3_ck_stored;
void s3_ck_from_headers(const char *headers_json, s3_ck_stored *out);
/* headers_json with every checksum member replaced by member = value and
 * the type (member NULL: none), in the request's arena; NULL when
 * headers_json is not a JSON object or memory ran out. */
char *s3_ck_headers_set(s3_req *q, const char *headers_json, const char *member, const char *value, bool full_object);
/* x-amz-checksum-<alg> and x-amz-checksum-type of a stored checksum, if any. */
void s3_ck_add_headers(s3_req *q, const s3_ck_stored *ck);
bool s3_ck_mode_enabled(s3_req *q);                /* x-amz-checksum-mode: ENABLED */

/* pipeline.c */
/* The body-transform slot (see pipeline.c): every payload byte goes through
 * it once, on its way to its sink.  ud is the request; the data writer's tap. */
void s3_body_transform(void *ud, const void *data, size_t n);
/* A metadata commit succeeded: runs the post-commit hooks with the route's
 * operation, the request's bucket and key (NULL for the bucket's own). */
void s3_committed(s3_req *q, const char *key, size_t key_len);
/* The same for a commit that created or removed the object obj (its key). */
void s3_committed_object(s3_req *q, s3_change change, const meta_object *obj);
/* The S3 event name of a change by operation api ("ObjectCreated:Put", ...). */
const char *s3_event_name(const char *api, s3_change change);
/* Bucket notifications (notify.c). */
int s3_notify_cache_new(s3_notify_cache **out);
void s3_notify_cache_free(s3_notify_cache *c);
/* The deliveries a change of key owes (event: "ObjectCreated:Put", ...;
 * size -1 and etag NULL for removals): *jobs (malloc'd, with their args;
 * s3_notify_jobs_free) for the metadata call to enqueue with the change.
 * 0 (maybe none), CAIRN_ENOMEM, or the metadata's error reading the
 * configuration. */
int s3_notify_jobs(s3_req *q, const char *event, const char *key, size_t key_len, int64_t size, const char *etag,
                   meta_job **jobs, int *njobs);
/* The same without a request (lifecycle): event says all the message
 * carries but its time, sequencer and configurationId, which each rule's
 * job gets here; the rules are read through c (NULL: none) from ms.
 * s3_notify_jobs is this with the request's principal, address and id. */
int s3_notify_jobs_of(s3_notify_cache *c, meta_store *ms, int64_t bucket_id, const events_object *event,
                      meta_job **jobs, int *njobs);
void s3_notify_jobs_free(meta_job *jobs, int n);
/* After a commit that carried njobs deliveries: a worker starts on them now
 * rather than at its next poll. */
void s3_notify_committed(s3_req *q, int njobs);
void s3_put_bucket_notification(s3_req *q);
void s3_get_bucket_notification(s3_req *q);
/* CORS (cors.c): the configuration's cache (one per gateway), the
 * handlers of ?cors, the preflight (OPTIONS), and the response filter
 * that adds the Access-Control-* headers to every other response. */
int s3_cors_cache_new(s3_cors_cache **out);
void s3_cors_cache_free(s3_cors_cache *c);
void s3_put_bucket_cors(s3_req *q);
void s3_get_bucket_cors(s3_req *q);
void s3_delete_bucket_cors(s3_req *q);
void s3_cors_preflight(s3_req *q);
void s3_cors_filter(void *ud, const s3_response *resp);
/* Default encryption (encryption.c, docs/bucket-encryption.md): the
 * configuration's cache (one per gateway: 64 slots fresh for a second, as
 * CORS's), the handlers of ?encryption, and what the object write path asks. */
typedef struct {
    char mode;                 /* 0: none, 'S': AES256, 'K': aws:kms */
    char kms_key_id[65];       /* 'K': the key id ("" = the default key: AWS's aws/s3, cairn's cairn-sse-s3) */
    bool bucket_key;           /* BucketKeyEnabled, stored and returned only */
} s3_sse_default;
#define S3_SSE_CONFIG_MAX_BYTES (64 * 1024)   /* the largest document PutBucketEncryption takes */
/* Parses a ServerSideEncryptionConfiguration document (namespace or not):
 * 0 with *out filled (mode 'S' or 'K', the key id bare, an ARN's id);
 * CAIRN_EINVAL with *code the S3 error (MalformedXML, InvalidArgument, or
 * NotImplemented for aws:kms:dsse) and *why its message (static); or
 * CAIRN_ENOMEM.  On failure *out is zeroed.  Thread-safe. */
int s3_sse_config_parse(const char *body, size_t len, s3_sse_default *out, const char **code, const char **why);
/* The configuration (mode 'S' or 'K') as GetBucketEncryption answers it,
 * which is also the form the metadata keeps: parsing it gives it back. */
void s3_sse_config_render(const s3_sse_default *c, buf_t *out);
int s3_sse_cache_new(s3_sse_cache **out);
void s3_sse_cache_free(s3_sse_cache *c);
void s3_put_bucket_encryption(s3_req *q);
void s3_get_bucket_encryption(s3_req *q);
void s3_delete_bucket_encryption(s3_req *q);
/* The request's bucket's default encryption: 0 with out filled (mode 0 when none);
 * nonzero = answered (a metadata failure: 503/500 as other config reads answer). */
int s3_bucket_sse_default(s3_req *q, s3_sse_default *out);
/* The bare key id a KMSMasterKeyID or x-amz-server-side-encryption-aws-
 * kms-key-id names: itself, or the ID of "arn:PARTITION:kms:REGION:ACCOUNT:
 * key/ID" (a pointer into v).  NULL when it names none (an alias, another
 * service's ARN, a malformed one).  The id itself is not checked. */
const char *s3_kms_key_id_of(const char *v);
/* Lifecycle (lifecycle.c): the configuration's cache (one per gateway, for
 * x-amz-expiration: 64 slots fresh for a second, as CORS's), the handlers
 * of ?lifecycle, and the header GET and HEAD add for a current version an
 * Expiration rule applies to. */
int s3_lifecycle_cache_new(s3_lifecycle_cache **out);
void s3_lifecycle_cache_free(s3_lifecycle_cache *c);
void s3_put_bucket_lifecycle(s3_req *q);
void s3_get_bucket_lifecycle(s3_req *q);
void s3_delete_bucket_lifecycle(s3_req *q);
void s3_lifecycle_expiration_header(s3_req *q, const meta_object *o);
/* Tagging (tagging.c): the handlers of ?tagging on objects and buckets. */
void s3_put_object_tagging(s3_req *q);
void s3_get_object_tagging(s3_req *q);
void s3_delete_object_tagging(s3_req *q);
void s3_put_bucket_tagging(s3_req *q);
void s3_get_bucket_tagging(s3_req *q);
void s3_delete_bucket_tagging(s3_req *q);
/* The request's x-amz-tagging header as a validated set (empty without
 * one; the caller frees it, s3_tagset_free); nonzero = answered
 * (InvalidArgument, InvalidTag). */
int s3_tagging_header(s3_req *q, s3_tagset *tags);
/* headers_json with its tags replaced by tags (NULL or empty: none), in the
 * request's arena; NULL = answered. */
char *s3_headers_json_tagged(s3_req *q, const char *headers_json, const s3_tagset *tags);
/* GET /events/ws (events.c): the event stream's WebSocket upgrade. */
void s3_events_ws(s3_req *q);
/* The post-commit hook that publishes object events (events.c). */
void s3_events_hook(void *ud, const s3_commit *c);
/* Whether the caller may act on bucket b as a whole: list it (read_only)
 * or write to it, as the authorize stage judges (the event stream's
 * bucket filter). */
bool s3_authorized(s3_req *q, const meta_bucket *b, bool read_only);
/* Access control (acl.c, docs/access-control.md).  The authorize stage:
 * judges the request's action on its bucket and key (bucket policy, ACLs,
 * public access block, ownership); 0 to go on, nonzero answered
 * (AccessDenied).  May leave the judgement to the object's ACL
 * (object_acl_pending), which s3_object_acl_check makes once the handler
 * has the version. */
int s3_authorize_request(s3_req *q);
/* Whether the caller may do action to key (NULL: the bucket) of bk: 0, or
 * answered (AccessDenied, or the database failed). */
int s3_authorize(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len);
/* s3_authorize for an action on an object (a copy's source): where only
 * the object's own ACL may grant it, 0 with *pending set, and the caller
 * judges the version it loads with s3_object_check. */
int s3_authorize_object(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len,
                        bool *pending);
/* The judgement of a loaded version o of bk: by its ACL when the bucket
 * left it pending, and, when the bucket granted it, whether the version is
 * one the bucket's grant reaches (S3: an object another writer owns in a
 * bucket whose ACLs apply is read only as its own ACL allows).  0, or
 * answered (AccessDenied, or the configuration could not be read). */
int s3_object_check(s3_req *q, const meta_bucket *bk, const char *action, bool pending, const meta_object *o);
/* s3_object_check of the request's own action and version. */
int s3_object_acl_check(s3_req *q, const meta_object *o);
/* Whether the caller may do action (a permission checked beside the
 * request's own, s3:BypassGovernanceRetention); false also when the
 * configuration could not be read.  Answers nothing. */
bool s3_may(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len);
/* DeleteObjects: whether the caller may delete each key (allowed[i]).
 * 0, or answered (the database failed). */
int s3_authorize_keys(s3_req *q, const s3_delete_req *d, bool *allowed);
/* The ACL a write's x-amz-acl / x-amz-grant-* ask for, into the new
 * version's headers_json: 0, or answered. */
int s3_acl_stamp(s3_req *q, char **headers_json);
/* The member of a version's headers_json holding its ACL (never a header). */
#define S3_ACL_MEMBER "cairn-acl"
int s3_bucket_acl_check_create(s3_req *q, const char *ownership);
int s3_bucket_acl_from_create(s3_req *q, int64_t bucket_id, const char *ownership);
void s3_put_bucket_policy(s3_req *q);
void s3_get_bucket_policy(s3_req *q);
void s3_delete_bucket_policy(s3_req *q);
void s3_get_bucket_policy_status(s3_req *q);
void s3_put_public_access_block(s3_req *q);
void s3_get_public_access_block(s3_req *q);
void s3_delete_public_access_block(s3_req *q);
void s3_put_bucket_acl(s3_req *q);
void s3_get_bucket_acl(s3_req *q);
void s3_put_object_acl(s3_req *q);
void s3_get_object_acl(s3_req *q);
/* Whether b is owned by the account an x-amz-expected-bucket-owner (or
 * x-amz-source-expected-bucket-owner) value names; NULL: no header, true. */
bool s3_expected_owner_ok(const char *expected, const meta_bucket *b);

/* health.c */
/* Starts the gateway's one readiness checker thread / stops and joins it. */
int s3_health_start(s3_gateway *gw, s3_health **out);
void s3_health_stop(s3_health *h);
/* Answers GET /health/ready from the checker's result (see health.c). */
void s3_serve_ready(s3_req *q);

/* errors.c */
void s3_error(s3_req *q, const char *code, const char *message);
/* The same with more elements after Message: elems is name, value, ...,
 * NULL (the CORS refusals' Method and ResourceType). */
void s3_error_elems(s3_req *q, const char *code, const char *message, const char *const *elems);
/* The same for a request that has no s3_req (it could not be allocated):
 * no bucket or key in the body. */
void s3_error_http(http_req *r, const char *code, const char *message);
/* An allocation from the request's arena failed: 500 InternalError, whose
 * message says so when the request needed more than its arena's max (a
 * retry will not help), logged. */
void s3_error_nomem(s3_req *q);
/* That message, or NULL (the system is out of memory: the usual one). */
const char *s3_nomem_message(const http_req *r);
/* Answers a metadata call that failed with rc.  A database that is busy (no
 * free connection within db_acquire_timeout_ms, a statement timeout, a lock
 * timeout: CAIRN_EBUSY, CAIRN_ETIMEDOUT) is 503 SlowDown; one that cannot be
 * reached or lost the connection (CAIRN_EIO) is 503 ServiceUnavailable; both
 * with Retry-After and a warning naming the request id and what failed.  Any
 * other rc is code (InternalError unless the caller knows better) with
 * message. */
void s3_meta_error(s3_req *q, int rc, const char *code, const char *message);
/* Whether rc from a metadata call is one s3_meta_error answers with 503. */
bool s3_meta_unavailable(int rc);
/* A commit that failed with rc: may the bytes of the version it tried to
 * make current be removed?  Not after CAIRN_EIO (the connection was lost,
 * maybe after the commit itself: the version may be current now); those
 * bytes stay, logged, and orphan collection removes them if no metadata
 * names them.  Every other failure rolled back. */
bool s3_commit_failed_drop_ok(s3_req *q, int rc, const char *version_id);

/* object.c: conditional writes (If-None-Match: *, If-Match: ETag) of
 * PutObject and CompleteMultipartUpload.  begin reads the headers and
 * checks them against the current version before any byte is stored, so a
 * write bound to fail fails at once (nonzero = answered); the condition then
 * travels with the commit (s3_write_cond_apply), which checks it again
 * atomically; s3_write_cond_refused answers a commit that found it false. */
int s3_write_cond_begin(s3_req *q);
/* The two halves of begin: the headers, then the check (complete checks
 * only once it knows the upload is there: a retried complete whose first
 * answer was lost must get that answer, not a 412 from its own object). */
int s3_write_cond_parse(s3_req *q);
int s3_write_cond_check(s3_req *q);
void s3_write_cond_apply(const s3_req *q, meta_object *obj);
void s3_write_cond_refused(s3_req *q);

/* metrics.c */
/* Appends the metadata store's pool figures (PostgreSQL) to b. */
void s3_render_meta_metrics(meta_store *ms, buf_t *b);
/* Rate limiting (limits.c, docs/rate-limiting.md). */
int s3_limits_new(s3_gateway *gw);
/* The rate limit stage: 0 admitted, or answered 503 SlowDown. */
int s3_rate_admit(s3_req *q);
/* Counts n body bytes of r; every 256 KiB they are charged, and the flow
 * waits as long as its byte limits ask.  s3_rate_flush charges the rest
 * without waiting (the request's end). */
void s3_rate_flow(s3_rate *r, size_t n);
void s3_rate_flush(s3_rate *r);
void s3_rate_subject_fix(s3_rate *r);
/* Gives back the request's slot in flight (on_done). */
void s3_rate_done(s3_req *q);
void s3_render_limit_metrics(s3_gateway *gw, buf_t *b);

/* gateway.c */
/* GET /health/live and GET /metrics. */
void s3_serve_live(s3_req *q);
void s3_serve_metrics(s3_req *q);
const char *s3_param_get(const s3_req *q, const char *name);
bool s3_param_has(const s3_req *q, const char *name);
/* Responds with an XML document (takes b's contents). */
void s3_respond_xml(s3_req *q, unsigned status, buf_t *b);
void s3_owner_xml(s3_req *q, buf_t *b, int64_t owner_id);

/* bucket.c */
void s3_list_buckets(s3_req *q);
void s3_create_bucket(s3_req *q);
void s3_head_bucket(s3_req *q);
void s3_delete_bucket(s3_req *q);
void s3_get_bucket_location(s3_req *q);
void s3_list_objects_v1(s3_req *q);
void s3_list_objects_v2(s3_req *q);
void s3_bucket_subresource(s3_req *q);
void s3_put_bucket_versioning(s3_req *q);

/* util.c: an S3 configuration document in a request (CORS, tagging, object
 * lock): at most max bytes, read to its end with no network, no entity
 * substitution and no DTD (S3's documents have none).  The document when
 * its root element is named root (the caller frees it: xmlFreeDoc); else
 * NULL with *rc CAIRN_EINVAL (MalformedXML) or CAIRN_ENOMEM. */
struct _xmlDoc;
struct _xmlNode;
struct _xmlDoc *s3_xml_read(const char *body, size_t len, size_t max, const char *root, int *rc);
/* Whether n is an element named name. */
bool s3_xml_is(struct _xmlNode *n, const char *name);
/* An element's text into out (n bytes); false when it holds elements or
 * does not fit. */
bool s3_xml_text(struct _xmlNode *e, char *out, size_t n);
/* The version a call on q's object names (versionId, validated, else the
 * current one) into *o, as GET finds it: a delete marker is 404 NoSuchKey,
 * or 405 when named by its id.  0, or answered. */
int s3_named_version(s3_req *q, meta_object *o);
/* GET of a configuration kept as the very document S3 answers
 * (meta_bucket_config, kind): 200 with it, or missing_code (404). */
/* Stores a bucket's configuration of kind as text ("" removes it; NULL:
 * memory ran out rendering it): 0, or answered (what names it in the
 * error: "the CORS configuration"). */
int s3_store_bucket_config(s3_req *q, const char *kind, const char *text, const char *what);
void s3_answer_bucket_config(s3_req *q, const char *kind, const char *missing_code);
/* DELETE of one: 0 done, nonzero answered (the database failed). */
int s3_drop_bucket_config(s3_req *q, const char *kind);
void s3_list_object_versions(s3_req *q);
/* The version id S3 shows for o: "null" for the null version. */
const char *s3_version_id(const meta_object *o);
/* x-amz-version-id of a new version (PUT, COPY, complete), where versions are kept. */
void s3_new_version_header(s3_req *q, const meta_object *obj);
/* That version id, or NULL where versions are not kept. */
const char *s3_new_version_id(const s3_req *q, const meta_object *obj);
/* The same for a delete marker a DELETE makes with the id marker_id it drew
 * (meta_object_delete_version_lock): "null" on a suspended bucket. */
const char *s3_marker_event_version(const s3_req *q, const char *marker_id);

/* ownership.c */
void s3_put_bucket_ownership(s3_req *q);
void s3_get_bucket_ownership(s3_req *q);
void s3_delete_bucket_ownership(s3_req *q);
/* CreateBucket's x-amz-object-ownership: *value the setting to store
 * (BucketOwnerEnforced when absent, S3's default); nonzero = answered
 * (InvalidArgument). */
int s3_ownership_header(s3_req *q, const char **value);
/* Stores a bucket's ObjectOwnership ("" removes it); a metadata error code. */
int s3_ownership_store(s3_req *q, int64_t bucket_id, const char *value);
/* The digest S3 requires of some configuration bodies: Content-MD5
 * (InvalidDigest, BadDigest) or an x-amz-checksum-* header (BadDigest),
 * checked against the buffered body; neither is 400 InvalidRequest.
 * Nonzero = answered. */
int s3_check_body_digest(s3_req *q);

/* object.c */
int s3_object_begin(s3_req *q);      /* validates headers before the body; nonzero = answered */
int s3_object_sink(s3_req *q, const char *data, size_t n);
/* The body is complete: the writer encodes what remains and its tap (the
 * hashes) has seen every byte; nonzero = answered. */
int s3_object_body_end(s3_req *q);
void s3_put_object(s3_req *q);
/* An x-amz-checksum-* value that came other than as a header (a POST
 * form's field): starts computing name's algorithm over the body, to be
 * compared with value.  CAIRN_EINVAL for a name that is not one,
 * CAIRN_ENOMEM. */
int s3_checksum_begin(s3_req *q, const char *name, const char *value);
/* Whether the body's checksum matches the one announced (true: none). */
bool s3_checksum_ok(s3_req *q);

/* Object lock (lock.c, docs/object-lock.md). */
void s3_put_object_lock_config(s3_req *q);
void s3_get_object_lock_config(s3_req *q);
void s3_put_object_retention(s3_req *q);
void s3_get_object_retention(s3_req *q);
void s3_put_object_legal_hold(s3_req *q);
void s3_get_object_legal_hold(s3_req *q);
/* Validates a write's x-amz-object-lock-* headers before its body comes
 * (InvalidRequest on a bucket without object lock, InvalidArgument as S3
 * says).  Nonzero = answered. */
int s3_lock_check_headers(s3_req *q);
/* What s3_lock_stamp does to a version's headers_json: */
enum {
    S3_LOCK_HEADERS = 1,   /* take the request's x-amz-object-lock-* headers */
    S3_LOCK_DEFAULT = 2,   /* without a retention, the bucket's default one, from write_ms */
    S3_LOCK_STRIP = 4,     /* drop the lock members it had first (a copy's source's) */
};
/* Sets the lock state of a version being written into *headers_json (a
 * new string in the request's arena when it changes).  Nonzero = answered. */
int s3_lock_stamp(s3_req *q, char **headers_json, int64_t write_ms, unsigned how);
/* Whether this request bypasses GOVERNANCE retention: it sends
 * x-amz-bypass-governance-retention: true and its caller holds
 * s3:BypassGovernanceRetention (acl.c: root, the owner unless a policy
 * denies it, whom a policy grants it). */
bool s3_lock_bypass(s3_req *q);
/* Answers AccessDenied for a change object lock forbids, with a log line. */
void s3_lock_refused(s3_req *q, const char *what);
const char *s3_lock_refused_message(void);
void s3_copy_object(s3_req *q);
void s3_get_object(s3_req *q);
void s3_head_object(s3_req *q);
void s3_delete_object(s3_req *q);
void s3_delete_objects(s3_req *q);
void s3_get_object_attributes(s3_req *q);
void s3_object_cleanup(s3_req *q);
/* Aborts the request's data writer, if any (its temp shards go at once). */
void s3_object_abort_writer(s3_req *q);
/* The stored headers of the request as JSON (in the request's arena), or
 * NULL (answered). */
char *s3_headers_json_from_request(s3_req *q);
/* Verifies the received body and makes its shards durable (non-inline
 * bodies); nonzero = answered. */
int s3_object_store_body(s3_req *q, char version_id[33], int64_t *size, char etag[72], char layout[320]);
/* A body whose md5 the caller verified, as obj's bytes: inline (sealed
 * when q->sse says so) or the writer's shards made durable; fills obj's
 * version id, size, etag, storage and data or layout.  Nonzero = answered. */
int s3_object_take_body(s3_req *q, const unsigned char md5[16], meta_object *obj);
/* Commits obj as the key's new version (events, notifications, hooks,
 * the replaced version's bytes removed); answers itself on failure, after
 * removing obj's bytes.  0 on success. */
int s3_object_publish(s3_req *q, meta_object *obj);

/* post.c: POST Object (docs/post-object.md).  begin from the head (the
 * form's boundary, the bucket), the sink for the body (BODY_FORM), the
 * handler once it is in, the cleanup when the request is done. */
int s3_post_begin(s3_req *q);
int s3_post_sink(s3_req *q, const char *data, size_t n);
/* A value a write names: a POST form's field of that (lowercase) name, or
 * the request's header; NULL when absent. */
const char *s3_request_value(s3_req *q, const char *name);
void s3_post_object(s3_req *q);
void s3_post_cleanup(s3_req *q);
/* The x-amz-checksum-* of the body just stored (verified, or computed for
 * checksum_want), base64; NULL when none was asked for.  Its header name is
 * q->checksum_name. */
const char *s3_object_checksum(s3_req *q);
/* Removes the bytes of a version metadata no longer references (multipart too). */
void s3_drop_version_data(s3_req *q, const meta_object *o);

/* An object's bytes, plain or multipart (object.c).  CAIRN_ENOTFOUND when
 * they are gone, CAIRN_EIO when they cannot be rebuilt. */
typedef struct obj_reader obj_reader;
/* key: the version's data key when its bytes are sealed (s3_sse_read_key),
 * else NULL. */
int obj_reader_open(s3_req *q, const meta_object *obj, const uint8_t *key, obj_reader **out);
ssize_t obj_reader_read(obj_reader *o, uint64_t off, void *buf, size_t n);
void obj_reader_close(obj_reader *o);
/* Copies [start, start+len) of src (inline or stored; sealed under
 * q->src_key when q->src_sealed) into a new stored version version_id,
 * sealed under key (NULL: plain): fills its etag (MD5 of the bytes) and
 * layout, and feeds the bytes to ck (initialised; NULL: none). */
int s3_copy_range(s3_req *q, const meta_object *src, int64_t start, int64_t len, const char *version_id,
                  const uint8_t *key, char etag[72], char layout[320], s3_ck *ck);
/* The source of CopyObject / UploadPartCopy (x-amz-copy-source): parses it,
 * loads the source bucket (which the caller must be allowed to read), applies
 * its versionId (s3_version_param), reads the object with its inline bytes
 * and checks the x-amz-copy-source-if-* conditions.  Fills src (the caller
 * clears it) and the source's bucket (256 bytes) and key.  Nonzero = answered. */
int s3_load_copy_source(s3_req *q, meta_object *src, char sbucket[256], char skey[1025], size_t *sklen);
/* A versionId a request names (NULL: none).  "null" is the version of every
 * object today (written unversioned): 0.  Anything else answers NoSuchVersion,
 * the empty string InvalidArgument; nonzero = answered. */
int s3_version_param(s3_req *q, const char *version);

/* multipart.c */
void s3_upload_part_copy(s3_req *q);
void s3_create_multipart(s3_req *q);
int s3_upload_part_begin(s3_req *q);
void s3_upload_part(s3_req *q);
void s3_complete_multipart(s3_req *q);
void s3_abort_multipart(s3_req *q);
void s3_list_parts(s3_req *q);
void s3_list_uploads(s3_req *q);
void s3_drop_multipart_version(s3_req *q, const char *version_id);

/* util.c */
/* Formats an ETag with quotes into out (>= 80). */
void s3_quote_etag(const char *etag, char *out, size_t n);

/* ---- server-side encryption (sse.c) ---------------------------------------- */


/* What a write (PutObject, POST Object, CopyObject's copy,
 * CreateMultipartUpload) is sealed with: the request's x-amz-server-side-
 * encryption* values, else the bucket's default; fills q->sse with a new
 * data key, wrapped.  Nonzero = answered (a bad or unsupported value, an
 * unknown or disabled KMS key, SSE-C over plain HTTP). */
int s3_sse_begin_write(s3_req *q);
/* An UploadPart (or UploadPartCopy) of the upload whose headers are
 * upload_headers: the upload's key (the request's SSE-C key must be the
 * upload's).  Nonzero = answered. */
int s3_sse_begin_part(s3_req *q, const char *upload_headers);
/* *headers_json without any encryption member, then with q->sse's (the
 * member no response sends, and the x-amz-server-side-encryption* headers
 * GET and HEAD send back), in the request's arena.  Nonzero = answered. */
int s3_sse_headers_set(s3_req *q, char **headers_json);
/* The data key a read of the version whose headers are headers_json needs:
 * *key_out points at key when it is sealed, else is NULL.  SSE-C takes the
 * request's x-amz-server-side-encryption-customer-* headers (copy_source:
 * x-amz-copy-source-server-side-encryption-customer-*).  Nonzero =
 * answered (no key, a wrong key, a disabled KMS key, ...). */
int s3_sse_read_key(s3_req *q, const char *headers_json, bool copy_source, uint8_t key[CRYPT_KEY],
                    const uint8_t **key_out);
/* Whether a version (or upload) whose headers are headers_json is sealed. */
bool s3_sse_sealed(const char *headers_json);
/* HEAD of such a version: an SSE-C one needs the right key, and a plain one
 * no key.  Nonzero = answered. */
int s3_sse_check_head(s3_req *q, const char *headers_json);
/* Adds the x-amz-server-side-encryption* response headers of a version or
 * upload whose headers are headers_json. */
void s3_sse_add_headers(s3_req *q, const char *headers_json);
/* The sealer (s3_sealer): write seals every full package but the last,
 * finish seals what is left as the last one.  0 or the writer's error. */
void s3_sealer_init(s3_sealer *s, const uint8_t key[CRYPT_KEY]);
int s3_sealer_write(s3_sealer *s, data_writer *w, const void *p, size_t n);
int s3_sealer_finish(s3_sealer *s, data_writer *w);
void s3_sealer_free(s3_sealer *s);
/* Seals n bytes whole (inline objects) into a buffer of the request's arena
 * (crypt_sealed_size(n) bytes).  NULL when memory ran out. */
uint8_t *s3_sse_seal_buffer(s3_req *q, const uint8_t key[CRYPT_KEY], const void *p, size_t n);
/* Opens a sealed inline body of plain bytes into out (plain bytes, malloc'd).
 * 0, CAIRN_EAUTH (tampered), CAIRN_ENOMEM. */
int s3_sse_open_buffer(const uint8_t key[CRYPT_KEY], const uint8_t *in, size_t n, int64_t plain, uint8_t **out);
/* Clears the request's key material and buffers. */
void s3_sse_clear(s3_req *q);

#endif
