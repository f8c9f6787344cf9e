/*
 * auth — who is asking, and may they.
 *
 * sigv4.c     AWS Signature Version 4: parsing the Authorization header or the
 *             presigned-URL query, building the canonical request, verifying
 *             with a constant-time compare, and signing (for tools and tests).
 * sigv2.c     AWS Signature Version 2 (HMAC-SHA1), header and query forms,
 *             for old clients (aws cli v1's `s3 presign`, s3cmd).  Requests of
 *             both versions fill the same sigv4_auth.
 * chunked.c   The aws-chunked body decoder (STREAMING-AWS4-HMAC-SHA256-PAYLOAD,
 *             STREAMING-UNSIGNED-PAYLOAD-TRAILER), verifying every chunk
 *             signature as the body streams through; memory is O(1) in the body.
 * secrets.c   Sealing access-key secrets with the master key (XChaCha20-Poly1305).
 * request.c   Authenticating a request: SigV4 or SigV2, the access key's
 *             secret from the configuration (root) or metadata.
 * ratelimit.c Token buckets (GCRA) per access key, client address and
 *             bucket, for operations and bytes, and the cap on requests in
 *             flight; bounded memory, thread-safe.
 *
 * Only request.c touches the database (to read an access key); the rest
 * works on the request pieces and the secret its callers supply.  Nothing
 * here touches the network.  Everything is thread-safe (no shared state).
 */
#ifndef CAIRN_AUTH_H
#define CAIRN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "meta/meta.h"

/* A header as received (core.h), by the name auth's interface uses. */
typedef header_field auth_header;

/* The request as it came off the wire. */
typedef struct {
    const char *method;       /* "GET", "PUT", ... */
    const char *raw_path;     /* percent-encoded path as sent, without '?' and query */
    const char *raw_query;    /* as sent after '?', "" when none; never NULL */
    const auth_header *headers;
    size_t nheaders;
} sigv4_request;

typedef enum {
    SIGV4_ANONYMOUS = 0,      /* no Authorization header, no X-Amz-Algorithm */
    SIGV4_HEADER,             /* Authorization: AWS4-HMAC-SHA256 ... */
    SIGV4_PRESIGNED,          /* X-Amz-Algorithm=AWS4-HMAC-SHA256 in the query */
    SIGV2_HEADER,             /* Authorization: AWS AccessKeyId:Signature */
    SIGV2_PRESIGNED,          /* AWSAccessKeyId, Signature and Expires in the query */
} sigv4_kind;

typedef enum {
    PAYLOAD_SHA256 = 0,       /* x-amz-content-sha256 is a hex digest of the body */
    PAYLOAD_UNSIGNED,         /* UNSIGNED-PAYLOAD (always for presigned) */
    PAYLOAD_STREAMING_SIGNED, /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
    PAYLOAD_STREAMING_SIGNED_TRAILER,   /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
} sigv4_payload;

/* The credentials a request carries.  For the SIGV2_* kinds only kind,
 * access_key, signature (base64 as sent), expires (SIGV2_PRESIGNED: the
 * Expires time, seconds since epoch), request_time (SIGV2_HEADER) and
 * payload (always PAYLOAD_UNSIGNED: SigV2 does not sign the body) are set. */
typedef struct {
    sigv4_kind kind;
    char access_key[129];
    char date[9];             /* credential scope date YYYYMMDD */
    char amz_date[17];        /* request time YYYYMMDDTHHMMSSZ */
    char region[64];
    char service[32];         /* must be "s3" for S3 requests; checked by the caller */
    char signed_headers[1024];/* "host;x-amz-date" as given */
    char signature[65];       /* lowercase hex */
    int64_t expires;          /* presigned: X-Amz-Expires seconds; else 0 */
    sigv4_payload payload;
    char payload_hash[65];    /* lowercase hex when payload == PAYLOAD_SHA256 */
    int64_t request_time;     /* SIGV2_HEADER: x-amz-date or Date, seconds since epoch */
} sigv4_auth;

/*
 * Reads the authentication parameters from the request.  Returns 0 and fills
 * out (kind ANONYMOUS when the request carries none), or CAIRN_EINVAL with
 * *s3_code set to the S3 error code to answer with:
 * "AuthorizationHeaderMalformed", "AuthorizationQueryParametersError",
 * "InvalidArgument" (bad x-amz-content-sha256), "AccessDenied" (unsupported
 * algorithm or a request with both header and query auth), and *message to a
 * static human-readable reason.
 */
int sigv4_parse(const sigv4_request *r, sigv4_auth *out, const char **s3_code,
                const char **message);

/*
 * Verifies the signature with the user's secret.  now is seconds since epoch.
 * Header auth: |now - amz_date| must be within skew_sec (RequestTimeTooSkewed).
 * Presigned: amz_date <= now + skew_sec and now <= amz_date + expires, expires in
 * 1..604800 (AccessDenied "Request has expired" / AuthorizationQueryParametersError).
 * Signature mismatch: "SignatureDoesNotMatch".  Compare is constant time.
 * An x-amz-* header present but not among the signed headers: "AccessDenied"
 * ("There were headers present in the request which were not signed").
 * Returns 0 or CAIRN_EAUTH with *s3_code / *message set as in sigv4_parse.
 * On success a->signature is the seed signature the chunked decoder chains from.
 */
int sigv4_verify(const sigv4_request *r, const sigv4_auth *a, const char *secret,
                 int64_t now, int skew_sec, const char **s3_code, const char **message);

/* Builds the canonical request text (for tests and debugging).  Appends to out.
 * Returns 0 or CAIRN_EINVAL when a signed header is missing. */
int sigv4_canonical_request(const sigv4_request *r, const sigv4_auth *a, buf_t *out);
/* Builds the string to sign from the canonical request. */
void sigv4_string_to_sign(const sigv4_auth *a, const char *canonical_request,
                          size_t len, buf_t *out);
/* Derives the signing key HMAC chain: out 32 bytes. */
void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, uint8_t out[32]);

/*
 * Signs a request as a client would (header auth): fills authorization (the
 * complete Authorization header value) for the given headers, which must
 * include host and x-amz-date and x-amz-content-sha256.  signed_headers is the
 * sorted, lowercase, ';'-joined list of names to sign.  For tools and tests.
 */
int sigv4_sign(const sigv4_request *r, const char *access_key, const char *secret,
               const char *region, const char *service, const char *amz_date,
               const char *signed_headers, const char *payload_hash, buf_t *authorization);

/*
 * Presigns a request as a client would (query auth, UNSIGNED-PAYLOAD): appends
 * to query_out the request's raw_query (if any) followed by the X-Amz-Algorithm,
 * -Credential, -Date, -Expires, -SignedHeaders and -Signature parameters, i.e.
 * the complete query string to send after '?'.  expires is 1..604800 seconds.
 * Returns 0, CAIRN_EINVAL (bad argument, signed header missing) or CAIRN_ENOMEM.
 * For tools (presigned download links) and tests.
 */
int sigv4_presign(const sigv4_request *r, const char *access_key, const char *secret,
                  const char *region, const char *service, const char *amz_date, int64_t expires,
                  const char *signed_headers, buf_t *query_out);

/* ---- Signature Version 2 ----------------------------------------------------
 *
 * SigV2 signs HMAC-SHA1 over: verb, Content-MD5, Content-Type, the date (Date,
 * or empty when x-amz-date is present; Expires for query auth), every x-amz-*
 * header, and the resource ("/bucket" for virtual-host requests, the path as
 * sent, the sub-resources).  vhost_bucket below is the bucket the Host header
 * named, or NULL (or "") for path-style requests: only the caller knows the
 * configured domain.
 */

/* True when the request carries SigV2 credentials and should go to
 * sigv2_parse instead of sigv4_parse: an "Authorization: AWS ..." header, or,
 * with no Authorization header and no X-Amz-Algorithm, an AWSAccessKeyId or
 * Signature query parameter. */
bool sigv2_present(const sigv4_request *r);

/*
 * Reads SigV2 credentials.  Returns 0 and fills out (kind SIGV2_*), or
 * CAIRN_EINVAL with *s3_code / *message set (static strings):
 * "InvalidArgument" (malformed Authorization header, or an aws-chunked
 * x-amz-content-sha256, which needs SigV4), "AccessDenied" (missing or bad
 * Date / x-amz-date, missing or bad query parameters, two auth mechanisms).
 */
int sigv2_parse(const sigv4_request *r, sigv4_auth *out, const char **s3_code,
                const char **message);

/* Appends the string to sign of a SigV2 request (a->kind says header or query
 * form).  Returns 0, CAIRN_EINVAL (a malformed percent escape in the query) or
 * CAIRN_ENOMEM. */
int sigv2_string_to_sign(const sigv4_request *r, const sigv4_auth *a, const char *vhost_bucket,
                         buf_t *out);

/* base64(HMAC-SHA1(secret, sts)): 28 characters and a NUL. */
void sigv2_signature(const char *secret, const char *sts, size_t len, char out[29]);

/*
 * Verifies a parsed SigV2 request with the user's secret; now is seconds since
 * epoch.  Header auth: |now - request_time| <= skew_sec, else
 * "RequestTimeTooSkewed".  Query auth: now <= Expires, else "AccessDenied"
 * ("Request has expired").  The signature is compared as raw bytes, after
 * base64 decoding, in constant time: "SignatureDoesNotMatch".  Returns 0,
 * CAIRN_EAUTH with *s3_code / *message set, or CAIRN_ENOMEM.
 */
int sigv2_verify(const sigv4_request *r, const sigv4_auth *a, const char *vhost_bucket,
                 const char *secret, int64_t now, int skew_sec, const char **s3_code,
                 const char **message);

/* Signs as a client would (header auth): appends "AWS access_key:signature" to
 * authorization.  r must carry a Date or x-amz-date header.  Returns 0,
 * CAIRN_EINVAL or CAIRN_ENOMEM.  For tools and tests. */
int sigv2_sign(const sigv4_request *r, const char *vhost_bucket, const char *access_key,
               const char *secret, buf_t *authorization);

/* Presigns as a client would: appends to query_out r's raw_query (if any)
 * followed by AWSAccessKeyId, Expires (expires_at, seconds since epoch) and
 * Signature, i.e. the whole query to send.  CAIRN_EINVAL when the query
 * already carries credentials.  For tools and tests. */
int sigv2_presign(const sigv4_request *r, const char *vhost_bucket, const char *access_key,
                  const char *secret, int64_t expires_at, buf_t *query_out);

/*
 * aws-chunked body decoder.  Created after sigv4_verify succeeded on a request
 * whose payload is one of the STREAMING-* kinds.  Feed it the raw body as it
 * arrives; it calls sink with the decoded payload bytes.  Signed streams check
 * every chunk's signature (chained from the seed signature) and, for the
 * -TRAILER kinds, the trailer signature.  Memory is bounded (a chunk header
 * line is at most 4 KiB; chunk data is passed through, never buffered whole).
 */
typedef struct chunked_decoder chunked_decoder;

/* sink returns 0 to continue or a negative code to abort the decode. */
typedef int (*chunked_sink)(void *ud, const char *data, size_t n);

/* Returns a new decoder or NULL on OOM.  For unsigned kinds, secret may be NULL.
 * Caller frees with chunked_free. */
chunked_decoder *chunked_new(const sigv4_auth *a, const char *secret);
/* Returns 0, or CAIRN_EAUTH (a chunk signature is wrong: SignatureDoesNotMatch),
 * CAIRN_EINVAL (malformed framing: *s3_code "IncompleteBody" or "InvalidRequest"),
 * or the sink's error. */
int chunked_feed(chunked_decoder *d, const char *in, size_t n, chunked_sink sink,
                 void *ud, const char **s3_code);
/* Call at end of body: returns 0 if the final zero-length chunk (and trailer, if
 * any) was seen and verified, else CAIRN_EINVAL with *s3_code "IncompleteBody". */
int chunked_finish(chunked_decoder *d, const char **s3_code);
/* Total decoded bytes so far. */
uint64_t chunked_decoded_bytes(const chunked_decoder *d);
/* After finish: the trailer header (e.g. "x-amz-checksum-crc32") and its value,
 * or NULL when there was none.  Pointers live as long as the decoder. */
const char *chunked_trailer_name(const chunked_decoder *d);
const char *chunked_trailer_value(const chunked_decoder *d);
void chunked_free(chunked_decoder *d);

/* ---- authenticating a request (request.c) ------------------------------- */

#define AUTH_SECRET_MAX 256           /* the longest secret: the root password */

/* What requests are checked against.  The pointers must outlive the calls. */
typedef struct {
    meta_store *meta;                 /* access keys and their sealed secrets */
    const uint8_t *master_key;        /* AUTH_MASTER_KEY_LEN bytes: opens the secrets */
    const char *root_access_key;      /* the root user's key and secret (configuration); NULL: none */
    const char *root_secret;
    int64_t root_user_id;
    const char *region;               /* the region SigV4 scopes must name */
    int clock_skew;                   /* seconds of skew accepted */
    bool sigv2;                       /* accept Signature Version 2 */
} auth_keys;

/* Who sent a request. */
typedef struct {
    sigv4_auth cred;                  /* the credentials as parsed; kind ANONYMOUS when none */
    bool anonymous;
    bool is_root;
    int64_t user_id;
    /* The verified key's secret, which the aws-chunked decoder needs; wipe
     * it with auth_identity_wipe when the request is done. */
    char secret[AUTH_SECRET_MAX];
} auth_identity;

/* Why a request was refused: the S3 error to answer with. */
typedef struct {
    const char *code;
    const char *message;              /* NULL: the code's usual message */
    char text[200];                   /* what message may point into */
} auth_refusal;

/* Authenticates r (now: seconds since epoch; vhost_bucket as for
 * sigv2_verify) and fills id: anonymous when r carries no credentials.
 * Returns 0; CAIRN_EAUTH when refused, with why (a malformed or bad
 * signature, an unknown or inactive key, SigV2 when !k->sigv2, a scope of
 * another service or region, a secret that cannot be opened); CAIRN_ENOMEM
 * (could not compute a signature: InternalError, retryable); or the
 * metadata error that kept the key from being read (why says
 * InternalError; the caller may answer 503 for an unavailable database). */
int auth_request(const auth_keys *k, const sigv4_request *r, const char *vhost_bucket, int64_t now, auth_identity *id,
                 auth_refusal *why);
/* Authenticates a POST Object form (SigV4, docs/post-object.md): the
 * fields x-amz-credential ("AKID/YYYYMMDD/region/s3/aws4_request"),
 * x-amz-date (YYYYMMDDTHHMMSSZ, of the credential's day) and
 * x-amz-signature (hex HMAC-SHA256 of the base64 policy text with the
 * scope's signing key), as auth_request does for a header: 0 with id
 * (cred.kind SIGV4_HEADER, cred.payload PAYLOAD_UNSIGNED), CAIRN_EAUTH
 * with why (InvalidArgument for a malformed credential or date,
 * InvalidAccessKeyId, SignatureDoesNotMatch), or a metadata error. */
int auth_post_form(const auth_keys *k, const char *credential, const char *amz_date, const char *policy_b64,
                   const char *signature, auth_identity *id, auth_refusal *why);
/* Authenticates a SigV2 POST Object form: the fields AWSAccessKeyId and
 * signature (base64 HMAC-SHA1 of the base64 policy text with the secret).
 * 0 with id (cred.kind SIGV2_HEADER, cred.payload PAYLOAD_UNSIGNED),
 * CAIRN_EAUTH with why (InvalidRequest when SigV2 is off,
 * InvalidAccessKeyId, SignatureDoesNotMatch), or a metadata error. */
int auth_post_form_v2(const auth_keys *k, const char *access_key, const char *policy_b64, const char *signature,
                      auth_identity *id, auth_refusal *why);
/* Zeroes id's copy of the secret. */
void auth_identity_wipe(auth_identity *id);

/* ---- secrets at rest ---------------------------------------------------- */

#define AUTH_MASTER_KEY_LEN 32
/* Seals secret with the master key; out receives nonce || ciphertext || tag as
 * hex (so it can live in a TEXT column).  Returns 0 or CAIRN_ENOMEM. */
int auth_secret_seal(const uint8_t key[AUTH_MASTER_KEY_LEN], const char *secret, buf_t *out);
/* Opens a sealed secret; out receives the plaintext.  CAIRN_EAUTH if the key is
 * wrong or the blob was tampered with. */
int auth_secret_open(const uint8_t key[AUTH_MASTER_KEY_LEN], const char *sealed, buf_t *out);
/* Generates a random access key id (20 chars, A-Z0-9) and secret (40 chars base64url-ish). */
void auth_generate_key(char access_key[21], char secret[41]);

/* ---- rate limiting (ratelimit.c, docs/rate-limiting.md) --------------- */

enum { RL_KEY = 0, RL_IP, RL_BUCKET, RL__DIMS };   /* RL__DIMS also names the in-flight cap */

typedef struct {
    int64_t ops_per_s[RL__DIMS];   /* 0 = no limit */
    int64_t bytes_per_s[RL__DIMS]; /* 0 = no limit */
    int burst_s;                   /* a bucket holds this many seconds of its rate (>= 1) */
    int max_in_flight;             /* 0 = no cap */
    int max_entries;               /* subjects remembered at most, over all dimensions */
} rl_config;

typedef struct {
    int64_t ops_per_s, bytes_per_s; /* 0 = no limit */
} rl_limits;

/* An override of one key's or one bucket's limits (cairn admin limits). */
typedef struct {
    int dim;                    /* RL_KEY or RL_BUCKET */
    const char *name;           /* the access key id, or the bucket's name */
    rl_limits lim;
} rl_override_entry;

/* Who a request is, for each dimension: NULL where it does not apply (an
 * anonymous request has no key, ListBuckets no bucket). */
typedef struct {
    const char *name[RL__DIMS];
} rl_subject;

typedef struct {
    int dim;                    /* the limiter that refused: RL_* or RL__DIMS (in flight) */
    int64_t retry_after_ms;     /* when the same request would be admitted */
} rl_refusal;

typedef struct {
    uint64_t admitted[RL__DIMS + 1], limited[RL__DIMS + 1];
    uint64_t bytes[RL__DIMS], throttled_ns[RL__DIMS];
    uint64_t evictions;
    int64_t in_flight;
    bool shared, redis_up;      /* limits kept in Redis; and Redis answering now */
    int gateways;               /* live gateways sharing them (the fallback's divisor) */
    uint64_t shared_checks, fallback_checks; /* decided by Redis; decided alone while it was down */
} rl_stats;

/* Sharing the limits with every gateway through Redis. */
typedef struct {
    const char *redis_url;      /* "" or NULL: this gateway alone */
    int timeout_ms;             /* one Redis call */
    int breaker_ms;             /* Redis left alone this long after a failure */
} rl_shared;

typedef struct rl_limiter rl_limiter;

/* A limiter of cfg; rl_free releases it.  0 or CAIRN_ENOMEM. */
int rl_new(const rl_config *cfg, rl_limiter **out);
void rl_free(rl_limiter *l);
/* Keeps the limits in Redis from now on (before the limiter is shared
 * between threads).  0, or CAIRN_EINVAL (a bad URL, with why) or
 * CAIRN_ENOMEM.  Redis need not be up: until it answers, each gateway
 * enforces its share alone. */
int rl_share(rl_limiter *l, const rl_shared *o, char *why, size_t whylen);
/* Whether any limit or cap is set (a limiter with none admits everything). */
bool rl_enabled(const rl_limiter *l);
/* Replaces every override with e[0..n) (copied).  0 or CAIRN_ENOMEM (the
 * old ones stay). */
int rl_overrides_replace(rl_limiter *l, const rl_override_entry *e, size_t n);
/* Admits one request of s at now (monotonic ns): a slot in flight, one
 * operation of each of its dimensions, none of whose bytes may be in debt.
 * 0 (the caller calls rl_release when the request ends), or CAIRN_EBUSY
 * with *why, nothing charged.  l NULL admits. */
int rl_admit(rl_limiter *l, const rl_subject *s, int64_t now, rl_refusal *why);
void rl_release(rl_limiter *l);
/* Charges n bytes that flow for s: the nanoseconds the flow must wait
 * before going on (0: none). */
int64_t rl_charge(rl_limiter *l, const rl_subject *s, uint64_t n, int64_t now);
int rl_in_flight(const rl_limiter *l);
void rl_stats_get(const rl_limiter *l, rl_stats *st);
/* "key", "ip", "bucket" or "in_flight". */
const char *rl_dim_name(int dim);

#endif
