/*
 * pipeline.c — one S3 request, from its head to its access-log line, as
 * named stages run in order.  Read it from top to bottom:
 *
 *   1 route          what the request names (path or virtual host, query) and
 *                    which route serves it (routes.c)
 *   2 authenticate   who is asking: SigV4 or SigV2, header or presigned; an
 *                    unsigned request is anonymous, which goes on to be
 *                    judged on routes that name a bucket
 *   3 bucket         the request's bucket
 *   4 authorize      may this caller do this to that bucket and key: the
 *                    bucket policy, ACLs, public access block (acl.c)
 *   5 rate limit     token buckets per access key, client address and bucket,
 *                    and the cap on requests in flight (limits.c): 503
 *                    SlowDown with Retry-After; bytes are charged as bodies
 *                    flow (on_body here, the GET stream in object.c)
 *   6 handler        from the head: refusal of what we do not serve, the body
 *                    plan, the route's begin; then the body through the
 *                    transforms (6b: hashing now, encryption later) into its
 *                    sink; once it is in: the payload checks and the handler
 *   7 post-commit    hooks told of every metadata write that committed
 *   8 response       filters that see every response before its head is sent:
 *                    CORS headers (cors.c), then those registered
 *
 * Stages 1 to 5 and the head part of 6 run from the head alone (http's begin
 * callback), so a request that will be refused is refused before its body
 * is read and before 100 Continue is sent.  Any stage may answer, which ends
 * the request's way through the stages; the filters (8) still see the answer.
 * done() runs last, whatever happened: cleanup, metrics, one access-log line.
 *
 * Adding a stage: write it as a function below, in its place in the order,
 * taking the request and returning 0 to go on or nonzero once it answered;
 * call it from on_begin (decided from the head) or on_end (needs the body).
 * A stage that needs to run after commits is a post-commit hook
 * (s3_hook_add); one that changes responses is a response filter
 * (s3_filter_add).
 */
#include "s3/internal.h"
#include "cache/tiered.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include <openssl/evp.h>

/* ---- 1. route ------------------------------------------------------------------------------ */

/* Fills bucket and key from the Host header (virtual-host style, when a domain
 * is configured) or from the path.  Returns 0, or answers and returns nonzero. */
static int parse_address(s3_req *q) {
    http_req *r = q->http;
    size_t plen = strlen(r->raw_path);
    char *path = arena_alloc(r->arena, plen + 1);
    if (!path) { s3_error_nomem(q); return -1; }
    long dl = url_decode(r->raw_path, plen, path);
    if (dl < 0 || path[0] != '/' || (long)strlen(path) != dl) {
        s3_error(q, "InvalidURI", "Couldn't parse the specified URI.");
        return -1;
    }
    const char *rest = path + 1;
    const char *host = http_header(r, "host");
    const char *domain = q->gw->cfg.domain;
    bool vhost = false;
    if (host && domain[0]) {
        size_t hl = strcspn(host, ":"), dlen = strlen(domain);
        if (hl > dlen + 1 && host[hl - dlen - 1] == '.' && strncasecmp(host + hl - dlen, domain, dlen) == 0) {
            size_t bl = hl - dlen - 1;
            if (bl >= sizeof q->bucket) bl = sizeof q->bucket - 1;
            memcpy(q->bucket, host, bl);
            q->bucket[bl] = '\0';
            q->vhost = vhost = true;
        }
    }
    if (!vhost) {
        size_t bl = strcspn(rest, "/");
        if (bl >= sizeof q->bucket) {
            s3_error(q, "InvalidBucketName", NULL);
            return -1;
        }
        memcpy(q->bucket, rest, bl);
        q->bucket[bl] = '\0';
        rest += bl;
        if (*rest == '/') rest++;
        else rest = NULL;
    }
    if (rest && *rest) {
        size_t kl = (size_t)(path + dl - rest);
        if (kl > 1024) {
            s3_error(q, "KeyTooLongError", NULL);
            return -1;
        }
        /* Keys are UTF-8: anything else could be stored but never listed in
         * XML that parses. */
        if (!s3_utf8_valid(rest, kl)) {
            s3_error(q, "InvalidURI", "Couldn't parse the specified URI: the object key is not valid UTF-8.");
            return -1;
        }
        /* A decoded NUL anywhere in the path was refused above. */
        assert(!memchr(rest, '\0', kl));
        memcpy(q->key, rest, kl);
        q->key[kl] = '\0';
        q->key_len = kl;
        q->has_key = true;
    }
    return 0;
}

/* Names the route: an operator endpoint by its exact path, else an S3
 * route by method, resource kind and query (routes.c). */
static int stage_route(s3_req *q) {
    http_req *r = q->http;
    if (r->too_many_headers) {
        s3_error(q, "InvalidRequest", "Too many headers.");
        return -1;
    }
    const char *up = http_header(r, "upgrade");
    const s3_route *op = s3_route_operator(r->method, r->raw_path, up && strcasecmp(up, "websocket") == 0);
    if (!op) {
        if (parse_address(q) != 0) return -1;
        int qrc = s3_parse_query(r->arena, r->raw_query, q->params, S3_MAX_QUERY, &q->nparams);
        if (qrc != 0) {
            if (qrc == CAIRN_ENOMEM) s3_error_nomem(q);
            else s3_error(q, "InvalidURI", "Couldn't parse the specified URI: the query string is malformed.");
            return -1;
        }
    }
    s3_route_input in = {r->method, !q->bucket[0] ? S3_RES_SERVICE : q->has_key ? S3_RES_OBJECT : S3_RES_BUCKET,
                         q->params, q->nparams, http_header(r, "x-amz-copy-source") != NULL};
    q->route = op ? op : s3_route_find(&in);
    q->op = s3_route_op(q->route);
    r->api = q->route->api;
    return 0;
}

/* ---- 2. authenticate ----------------------------------------------------------------------- */

/* The signature is auth/'s to check (auth_request); SigV2 signs the bucket
 * of a virtual-host request as part of the resource. */
static int stage_authenticate(s3_req *q) {
    if (q->route->auth == S3_AUTH_NONE) {
        /* Nothing is read, so nothing is signed: the body's digest is not
         * checked either (a CORS preflight). */
        q->who.anonymous = true;
        return 0;
    }
    http_req *r = q->http;
    sigv4_request sr = {r->method, r->raw_path, r->raw_query, r->headers, r->nheaders};
    auth_refusal why;
    int rc = auth_request(&q->gw->keys, &sr, q->vhost ? q->bucket : NULL, time_now_ms() / 1000, &q->who, &why);
    if (rc != 0) {
        s3_meta_error(q, rc, why.code, why.message);
        return -1;
    }
    snprintf(r->principal, sizeof r->principal, "%s", q->who.anonymous ? "anonymous" : q->who.cred.access_key);
    /* An anonymous request on a bucket goes on to be judged by the
     * bucket's policy and ACLs (authorize); others need a signature. */
    if (q->who.anonymous && q->route->auth == S3_AUTH_SIGNED && !q->route->bucket) {
        s3_error(q, "AccessDenied", NULL);
        return -1;
    }
    return 0;
}

/* ---- 3. bucket ------------------------------------------------------------------------------ */

/* The one lookup of the request's bucket.  Also for routes whose body comes
 * later (DeleteObjects, CompleteMultipartUpload): a missing bucket is
 * answered before the body is read. */
static int stage_bucket(s3_req *q) {
    if (!q->route->bucket) return 0;
    if (!s3_bucket_name_valid(q->bucket)) {
        /* Names that could never have been created cannot exist. */
        s3_error(q, "NoSuchBucket", NULL);
        return -1;
    }
    int rc = meta_bucket_get(q->gw->d.meta, q->bucket, &q->bk);
    if (rc == CAIRN_ENOTFOUND) {
        s3_error(q, "NoSuchBucket", NULL);
        return -1;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "metadata lookup failed");
        return -1;
    }
    q->bucket_id = q->bk.id;
    return 0;
}

/* ---- 4. authorize --------------------------------------------------------------------------- */

bool s3_expected_owner_ok(const char *expected, const meta_bucket *b) {
    if (!expected) return true;
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)b->owner_id);
    return strcmp(expected, id) == 0;
}

/* x-amz-expected-bucket-owner names the account the caller believes owns
 * the bucket, as the Owner ID that ListBuckets and the ACLs show (the
 * owner's user id): any other value is 403 AccessDenied, so a request
 * never acts on a bucket that changed hands under its name. */
static int stage_authorize(s3_req *q) {
    if (!q->route->bucket) return 0;
    if (!s3_expected_owner_ok(http_header(q->http, "x-amz-expected-bucket-owner"), &q->bk)) {
        s3_error(q, "AccessDenied", "The bucket is not owned by the account x-amz-expected-bucket-owner names.");
        return -1;
    }
    return s3_authorize_request(q);
}

/* ---- 5. rate limit -------------------------------------------------------------------------- */

/* The rate limits and the in-flight cap (limits.c), then the audit
 * journal: when it is full and its overflow policy is reject
 * (docs/audit.md) a request is refused before it does anything (fail
 * closed).  The operator endpoints (health, metrics) are exempt from both. */
static int stage_rate_limit(s3_req *q) {
    if (q->route->resource == S3_RES_OPERATOR && q->route->auth == S3_AUTH_NONE) return 0;
    if (s3_rate_admit(q) != 0) return -1;
    audit_journal *aj = q->gw->d.audit;
    if (!aj || audit_journal_admit(aj) == 0)
        return 0;
    log_write(LOG_WARN, q->http->request_id, "audit journal full: answering 503", NULL);
    http_add_header(q->http, "Retry-After", "1");
    s3_error(q, "SlowDown", "The audit journal is full. Please retry.");
    return -1;
}

/* ---- 6. handler ------------------------------------------------------------------------------ */

/*
 * 6b. The body-transform slot.  Every payload byte (after aws-chunked
 * decoding) passes through here on its way to its sink: the buffer of an
 * XML document, an inline object, or the data writer, which calls this as
 * its tap on its hash thread so hashing overlaps receiving.  Today the
 * transforms are digests that only look at the bytes: the signed payload's
 * SHA-256, and for object data MD5 (the ETag) and the x-amz-checksum-* the
 * client asked for (set up by plan_body and s3_object_begin).  Encryption
 * will be the first transform that changes the bytes; it goes here, after
 * the digests, which are of the plaintext.
 */
void s3_body_transform(void *ud, const void *data, size_t n) {
    s3_req *q = ud;
    if (q->sha256) EVP_DigestUpdate(q->sha256, data, n);
    if (q->md5) EVP_DigestUpdate(q->md5, data, n);
    if (q->crc_kind == 1) q->crc = (uint32_t)crc32(q->crc, (const Bytef *)data, (uInt)n);
    else if (q->crc_kind == 2) q->crc = data_crc32c(q->crc, data, n);
    else if (q->crc_kind == 3) q->crc64 = crc64nvme(q->crc64, data, n);
    else if (q->checksum_md) EVP_DigestUpdate(q->checksum_md, data, n);
}

/* Receives decoded payload bytes (after aws-chunked, if any). */
static int payload_sink(void *ud, const char *data, size_t n) {
    s3_req *q = ud;
    q->payload_bytes += n;
    switch (q->body_mode) {
    case BODY_IGNORE:
        s3_body_transform(q, data, n);
        return 0;
    case BODY_BUFFER:
        if (q->body.len + n > q->body_limit) {
            q->body_error_code = "MalformedXML";
            return CAIRN_ETOOBIG;
        }
        s3_body_transform(q, data, n);
        buf_append(&q->body, data, n);
        return q->body.oom ? CAIRN_ENOMEM : 0;
    case BODY_OBJECT:
        return s3_object_sink(q, data, n);   /* transforms there, maybe on the writer's thread */
    case BODY_FORM:
        return s3_post_sink(q, data, n);     /* the file's bytes go on to s3_object_sink */
    }
    return 0;
}

static void fail_body(s3_req *q, int rc, const char *code) {
    if (code) s3_error(q, code, q->body_error_code ? q->body_error_msg : NULL);
    else if (rc == CAIRN_ENOSPC) s3_error(q, "InsufficientStorage", "The storage is full.");
    else if (rc == CAIRN_ETOOBIG) s3_error(q, "EntityTooLarge", NULL);
    else s3_error(q, "InternalError", "storing the request body failed");
}

/* What the body needs before its first byte: the aws-chunked decoder, the
 * signed payload's digest, its sink. */
static int plan_body(s3_req *q) {
    http_req *r = q->http;
    q->declared_size = r->content_length;
    bool streaming = q->who.cred.payload == PAYLOAD_STREAMING_SIGNED ||
                     q->who.cred.payload == PAYLOAD_STREAMING_SIGNED_TRAILER ||
                     q->who.cred.payload == PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    if (streaming) {
        const char *dcl = http_header(r, "x-amz-decoded-content-length");
        char *end = NULL;
        long long v = dcl ? strtoll(dcl, &end, 10) : -1;
        if (!dcl || *end || v < 0) {
            s3_error(q, "MissingContentLength", "x-amz-decoded-content-length is required for aws-chunked uploads.");
            return -1;
        }
        q->declared_size = v;
        q->chunked = chunked_new(&q->who.cred, q->who.secret);
        if (!q->chunked) { s3_error(q, "InternalError", NULL); return -1; }
    }
    if (!q->who.anonymous && q->who.cred.payload == PAYLOAD_SHA256) {
        q->sha256 = EVP_MD_CTX_new();
        if (!q->sha256 || !EVP_DigestInit_ex(q->sha256, EVP_sha256(), NULL)) {
            s3_error(q, "InternalError", NULL);
            return -1;
        }
    }
    q->body_mode = q->route->body;
    if (q->body_mode == BODY_BUFFER) {
        q->body_limit = 4 * 1024 * 1024;
        if (q->declared_size > (int64_t)q->body_limit) {
            s3_error(q, "MalformedXML", "The XML body is too large.");
            return -1;
        }
    }
    return 0;
}

/* The handler's part that runs from the head. */
static int stage_handler_begin(s3_req *q) {
    const char *refusal = s3_route_refusal(q->route, q->http->method);
    if (refusal) {
        s3_error(q, refusal, NULL);
        return -1;
    }
    if (q->route->resource == S3_RES_OPERATOR) {
        q->route->handler(q);   /* answered from the head; no body is read */
        return -1;
    }
    if (plan_body(q) != 0) return -1;
    return q->route->begin ? q->route->begin(q) : 0;
}

/* Checks what can only be checked once the whole body is in. */
static int finish_payload(s3_req *q) {
    const char *code = NULL;
    if (q->chunked) {
        if (chunked_finish(q->chunked, &code) != 0) {
            s3_error(q, code ? code : "IncompleteBody", NULL);
            return -1;
        }
        if (q->declared_size >= 0 && (int64_t)q->payload_bytes != q->declared_size) {
            s3_error(q, "IncompleteBody", NULL);
            return -1;
        }
    }
    if (q->sha256) {
        unsigned char d[32];
        unsigned dl = 0;
        char hex[65];
        EVP_DigestFinal_ex(q->sha256, d, &dl);
        hex_encode(d, 32, hex);
        if (strcasecmp(hex, q->who.cred.payload_hash) != 0) {
            s3_error(q, "XAmzContentSHA256Mismatch", NULL);
            return -1;
        }
    }
    if (q->body_mode == BODY_BUFFER && q->body.oom) {
        s3_error(q, "InternalError", NULL);
        return -1;
    }
    return 0;
}

/* The handler's part that runs once the body is in. */
static void stage_handler(s3_req *q) {
    q->body_done = true;
    if (q->body_mode == BODY_OBJECT && s3_object_body_end(q) != 0) return;
    if (finish_payload(q) != 0) return;
    q->route->handler(q);
}

/* ---- 7. post-commit hooks -------------------------------------------------------------------- */

/* Handlers call this right after each metadata commit that changed what a
 * client can see, and the hooks run here, on the request's thread, before
 * the response goes out: a cache invalidated by one is never stale for the
 * client that wrote.  key NULL for a bucket's own commits. */
static void run_hooks(s3_req *q, const char *key, size_t key_len, s3_change change, const meta_object *obj) {
    http_req *r = q->http;
    s3_commit c = {q->route->api, q->bucket, q->bucket_id, key, key ? key_len : 0, change, obj,
                   r->request_id, r->principal[0] ? r->principal : "anonymous", r->remote_addr,
                   q->bk.versioning != META_VERSIONING_OFF};
    const s3_callbacks *hooks = &q->gw->hooks;
    for (int i = 0; i < hooks->n; i++) ((s3_hook_fn)hooks->at[i].fn)(hooks->at[i].ud, &c);
}

void s3_committed(s3_req *q, const char *key, size_t key_len) { run_hooks(q, key, key_len, S3_CHANGE_NONE, NULL); }

void s3_committed_object(s3_req *q, s3_change change, const meta_object *obj) {
    run_hooks(q, obj->key, obj->key_len, change, obj);
}

/* ---- 8. response filters ---------------------------------------------------------------------- */

/* Runs once per request, as soon as a response is set, before http/ sends
 * its head: whatever a filter adds with http_add_header goes with it. */
static void stage_response_filters(s3_req *q) {
    if (q->filtered || !http_responded(q->http)) return;
    q->filtered = true;
    s3_response resp = {q->http, q->http->api, q->bucket, q->bucket_id, http_status(q->http)};
    /* The gateway's own filter first: CORS headers (cors.c), on errors too. */
    s3_cors_filter(q->gw, &resp);
    const s3_callbacks *filters = &q->gw->filters;
    for (int i = 0; i < filters->n; i++) ((s3_filter_fn)filters->at[i].fn)(filters->at[i].ud, &resp);
}

/* ---- http_handler callbacks ------------------------------------------------------------------- */

static void on_begin(void *app, http_req *r) {
    assert(r->arena);
    fault_point("s3.request.begin");
    tiered_scope_begin(); /* the request's metadata reads share one check of the cache (cache/tiered.h) */
    s3_req *q = arena_calloc(r->arena, 1, sizeof *q);
    if (!q) {
        s3_error_http(r, "InternalError", s3_nomem_message(r));
        return;
    }
    q->gw = app;
    q->http = r;
    q->declared_size = -1;
    buf_init(&q->body);
    r->ctx = q;
    obs_inflight(q->gw->d.obs, 1);
    if (stage_route(q) == 0 && stage_authenticate(q) == 0 && stage_bucket(q) == 0 && stage_authorize(q) == 0 &&
        stage_rate_limit(q) == 0)
        stage_handler_begin(q);
    stage_response_filters(q);
}

static void on_body(void *app, http_req *r, const char *data, size_t n) {
    (void)app;
    s3_req *q = r->ctx;
    if (!q) return;
    s3_rate_flow(&q->rate, n);
    int rc;
    const char *code = NULL;
    if (q->chunked) rc = chunked_feed(q->chunked, data, n, payload_sink, q, &code);
    else rc = payload_sink(q, data, n);
    if (rc == CAIRN_EAUTH) s3_error(q, "SignatureDoesNotMatch", "An aws-chunked chunk signature does not match.");
    else if (rc != 0) fail_body(q, rc, q->body_error_code ? q->body_error_code : code);
    stage_response_filters(q);
}

static void on_end(void *app, http_req *r) {
    (void)app;
    tiered_scope_begin(); /* the commit's reads check anew: the body may have taken long */
    s3_req *q = r->ctx;
    if (!q) return;
    stage_handler(q);
    stage_response_filters(q);
}

static void on_done(void *app, http_req *r, bool ok) {
    tiered_scope_end();
    s3_gateway *gw = app;
    s3_req *q = r->ctx;
    unsigned status = http_status(r);
    double secs = (double)(time_mono_ns() - r->start_ns) / 1e9;
    if (q) {
        s3_post_cleanup(q);
        s3_object_cleanup(q);
        if (q->chunked) chunked_free(q->chunked);
        if (q->sha256) EVP_MD_CTX_free(q->sha256);
        buf_free(&q->body);
        auth_identity_wipe(&q->who);
        s3_rate_done(q);
        obs_inflight(gw->d.obs, -1);
    }
    uint64_t out = ok && strcmp(r->method, "HEAD") != 0 ? r->resp_size_ : 0;
    obs_request(gw->d.obs, r->api, status, secs, r->bytes_in, out);
    char st[24], bi[24], bo[24], dur[32];
    snprintf(dur, sizeof dur, "%.3f", secs * 1000);
    log_write(status >= 500 ? LOG_WARN : LOG_INFO, r->request_id, "request",
              "method", r->method, "path", r->raw_path, "api", r->api,
              "status", log_int(st, status), "bytes_in", log_int(bi, (long long)r->bytes_in),
              "bytes_out", log_int(bo, (long long)out), "duration_ms", dur,
              "principal", r->principal[0] ? r->principal : "-",
              "remote", r->remote_addr,
              "error", q && q->error_code[0] ? q->error_code : (ok ? "" : "connection closed before the response was sent"),
              NULL);
    r->ctx = NULL;              /* q is in the request's arena, which http/ frees */
}

/* ---- the audit event ---------------------------------------------------------------------------- */

/* Reads change nothing: their events need not be durable before the answer. */
static bool method_mutates(const char *m) {
    return m[0] && strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 && strcmp(m, "OPTIONS") != 0;
}

/*
 * The one place every request passes at its end: http/ calls this right
 * before it queues the response (and, for a request that ends without
 * one, before done).  The event is emitted here, with the final status,
 * the planned body length as bytes_out (what a stream or file response is
 * about to send) and the duration up to now, because a mutating request
 * may be answered only once its event is durable: its emit waits for the
 * journal's group commit.  When that fails (the journal is full past its
 * headroom, or its disk failed) the answer becomes 503 — the write itself
 * has happened, and a retry is safe — instead of an acknowledgement
 * without its audit event.  A read's event is appended without waiting.
 * The operator endpoints (/health, /metrics) are not audited.
 */
static void on_reply(void *app, http_req *r, bool will_send) {
    fault_point("s3.request.end"); /* window=s3.request: tests/fault/test_pg_faults.py */
    s3_gateway *gw = app;
    audit_journal *aj = gw->d.audit;
    s3_req *q = r->ctx;
    if (!aj || (q && q->route && q->route->resource == S3_RES_OPERATOR && q->route->auth == S3_AUTH_NONE)) return;
    int64_t dur_us = (time_mono_ns() - r->start_ns) / 1000;
    unsigned status = http_status(r);
    char corr[129];
    const char *cid = http_header(r, "x-correlation-id");
    bool authed = r->principal[0] != '\0';
    const char *principal = authed ? r->principal : q && q->who.cred.access_key[0] ? q->who.cred.access_key : "anonymous";
    meta_user u = {0};
    const char *user = "";
    if (q && authed && !q->who.anonymous) {
        if (q->who.is_root && gw->d.root_access_key) user = gw->d.root_access_key;
        else if (meta_user_get(gw->d.meta, q->who.user_id, &u) == 0) user = u.name;
    }
    const char *version = q ? (q->version_id[0] ? q->version_id : s3_param_get(q, "versionId")) : NULL;
    audit_event_fields e = {
        .time_us = time_now_us() - dur_us,
        .request_id = r->request_id,
        .correlation_id = cid && audit_correlation_id_clean(cid, corr) == 0 ? corr : NULL,
        .principal = principal,
        .user = user,
        .source_address = r->remote_addr,
        .action = q ? s3_route_action(q->route, q->params, q->nparams) : NULL,
        .bucket = q ? q->bucket : "",
        .key = q && q->has_key ? q->key : NULL,
        .key_len = q && q->has_key ? q->key_len : 0,
        .version_id = version,
        .status = status ? status : 499,  /* 499: the client left before an answer (nginx's code) */
        .error_code = q && q->error_code[0] ? q->error_code : r->refusal ? r->refusal : "",
        .bytes_in = r->bytes_in,
        .bytes_out = will_send && strcmp(r->method, "HEAD") != 0 ? http_response_size(r) : 0,
        .duration_us = (uint64_t)dur_us,
    };
    bool durable = will_send && method_mutates(r->method);
    int rc = audit_emit(aj, &e, durable);
    if (rc == 0 || !durable) return;
    /* Not durable: this write is not acknowledged. */
    log_write(LOG_ERROR, r->request_id, "audit event not durable: answering 503", "error", cairn_strerror(rc), NULL);
    http_response_discard(r);
    http_add_header(r, "Retry-After", "1");
    const char *code = rc == CAIRN_EBUSY ? "SlowDown" : "ServiceUnavailable";
    const char *msg = "The audit journal cannot record this request. Please retry.";
    if (q) {
        q->error_code[0] = '\0';
        s3_error(q, code, msg);
    } else {
        s3_error_http(r, code, msg);
    }
}

static const http_handler handler = {on_begin, on_body, on_end, on_done, on_reply};

const http_handler *s3_http_handler(void) { return &handler; }
