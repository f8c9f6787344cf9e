/*
 * gateway.c — the request pipeline of the S3 gateway:
 *
 *   begin: operator endpoints -> address (path or virtual host) -> query ->
 *          operation -> SigV4 -> authorization -> body plan
 *   body:  aws-chunked decode -> payload hashes -> storage (object.c) or buffer
 *   end:   payload checks (sha256, sizes) -> the operation's handler
 *   done:  cleanup of unfinished uploads, metrics, one access-log line
 *
 * Everything that can be judged from the head is judged in begin, so a
 * request that will be refused is refused before its body is read.
 */
#include "jobs/jobs.h"
#include "s3/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <pthread.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

int s3_gateway_new(const s3_deps *deps, s3_gateway **out) {
    s3_gateway *gw = calloc(1, sizeof *gw);
    if (!gw) return CAIRN_ENOMEM;
    gw->d = *deps;
    gw->cfg = *deps->cfg;
    gw->d.cfg = &gw->cfg;
    int rc = s3_health_start(gw, &gw->health);
    if (rc != 0) {
        free(gw);
        return rc;
    }
    *out = gw;
    return 0;
}

void s3_gateway_free(s3_gateway *gw) {
    if (!gw) return;
    s3_health_stop(gw->health);
    free(gw);
}

/* ---- small shared helpers --------------------------------------------------- */

const char *s3_param_get(const s3_req *q, const char *name) {
    for (int i = 0; i < q->nparams; i++)
        if (strcmp(q->params[i].name, name) == 0) return q->params[i].value;
    return NULL;
}

bool s3_param_has(const s3_req *q, const char *name) { return s3_param_get(q, name) != NULL; }

void s3_respond_xml(s3_req *q, unsigned status, buf_t *b) {
    if (b->oom) {
        buf_free(b);
        s3_error(q, "InternalError", "out of memory building the response");
        return;
    }
    http_add_header(q->http, "Content-Type", "application/xml");
    size_t len = b->len;
    http_respond_take(q->http, status, buf_steal(b), len);
}

bool s3_may_access(const s3_req *q, int64_t owner_id) {
    return !q->anonymous && (q->is_root || q->user_id == owner_id);
}

int s3_load_bucket(s3_req *q, meta_bucket *b, bool allow_public_read) {
    int rc = meta_bucket_get(q->gw->d.meta, q->bucket, b);
    if (rc == CAIRN_ENOTFOUND) {
        s3_error(q, "NoSuchBucket", NULL);
        return rc;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "metadata lookup failed");
        return rc;
    }
    q->bucket_id = b->id;
    if (s3_may_access(q, b->owner_id)) return 0;
    if (allow_public_read && b->public_read) return 0;
    s3_error(q, "AccessDenied", NULL);
    return CAIRN_EAUTH;
}

void s3_owner_xml(s3_req *q, buf_t *b, int64_t owner_id) {
    meta_user u;
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)owner_id);
    buf_puts(b, "<Owner><ID>");
    buf_puts(b, id);
    buf_puts(b, "</ID><DisplayName>");
    if (meta_user_get(q->gw->d.meta, owner_id, &u) == 0)
        buf_xml_escape(b, u.display_name[0] ? u.display_name : u.name,
                       strlen(u.display_name[0] ? u.display_name : u.name));
    buf_puts(b, "</DisplayName></Owner>");
}

/* ---- operator endpoints -------------------------------------------------------- */

void s3_serve_live(s3_req *q) {
    static const char live[] = "{\"status\":\"ok\"}\n";
    http_add_header(q->http, "Content-Type", "application/json");
    http_respond(q->http, 200, live, sizeof live - 1);
}

void s3_serve_metrics(s3_req *q) {
    buf_t b;
    buf_init(&b);
    obs_render(q->gw->d.obs, &b);
    data_stats ds;
    data_get_stats(q->gw->d.data, &ds);
    buf_printf(&b, "# HELP cairn_data_corrupt_blocks_total Blocks whose checksum failed or that were short on read.\n"
                   "# TYPE cairn_data_corrupt_blocks_total counter\ncairn_data_corrupt_blocks_total %llu\n"
                   "# HELP cairn_data_missing_shards_total Shard files absent when an object was read.\n"
                   "# TYPE cairn_data_missing_shards_total counter\ncairn_data_missing_shards_total %llu\n"
                   "# HELP cairn_data_degraded_reads_total Object reads that needed parity.\n"
                   "# TYPE cairn_data_degraded_reads_total counter\ncairn_data_degraded_reads_total %llu\n"
                   "# HELP cairn_data_healed_shards_total Shards rewritten by healing.\n"
                   "# TYPE cairn_data_healed_shards_total counter\ncairn_data_healed_shards_total %llu\n"
                   "# HELP cairn_data_heal_failures_total Heals that could not complete.\n"
                   "# TYPE cairn_data_heal_failures_total counter\ncairn_data_heal_failures_total %llu\n",
               (unsigned long long)ds.corrupt_blocks, (unsigned long long)ds.missing_shards,
               (unsigned long long)ds.degraded_reads, (unsigned long long)ds.healed_shards,
               (unsigned long long)ds.heal_failures);
    data_render_metrics(q->gw->d.data, &b);
    jobs_render_metrics(q->gw->d.meta, &b);
    s3_render_meta_metrics(q->gw->d.meta, &b);
    http_add_header(q->http, "Content-Type", "text/plain; version=0.0.4");
    size_t len = b.len;
    http_respond_take(q->http, 200, buf_steal(&b), len);
}

/* ---- addressing ------------------------------------------------------------------ */

/* Fills bucket and key from the Host header (virtual-host style, when a domain
 * is configured) or from the path.  Returns 0, or answers and returns nonzero. */
static int parse_address(s3_req *q) {
    http_req *r = q->http;
    size_t plen = strlen(r->raw_path);
    char *path = malloc(plen + 1);
    if (!path) { s3_error(q, "InternalError", NULL); return -1; }
    long dl = url_decode(r->raw_path, plen, path);
    if (dl < 0 || path[0] != '/' || (long)strlen(path) != dl) {
        free(path);
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
            vhost = true;
        }
    }
    if (!vhost) {
        size_t bl = strcspn(rest, "/");
        if (bl >= sizeof q->bucket) {
            free(path);
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
            free(path);
            s3_error(q, "KeyTooLongError", NULL);
            return -1;
        }
        /* Keys are UTF-8: anything else could be stored but never listed in
         * XML that parses. */
        if (!s3_utf8_valid(rest, kl)) {
            free(path);
            s3_error(q, "InvalidURI", "Couldn't parse the specified URI: the object key is not valid UTF-8.");
            return -1;
        }
        memcpy(q->key, rest, kl);
        q->key[kl] = '\0';
        q->key_len = kl;
        q->has_key = true;
    }
    free(path);
    return 0;
}

/* ---- authentication ----------------------------------------------------------------------- */

/* The bucket the Host header named (virtual-host style, as parse_address
 * read it), which SigV2 signs as part of the resource; NULL for path style. */
static const char *vhost_bucket(const s3_req *q) {
    const char *host = http_header(q->http, "host");
    const char *domain = q->gw->cfg.domain;
    if (!host || !domain[0]) return NULL;
    size_t hl = strcspn(host, ":"), dlen = strlen(domain);
    bool vhost = hl > dlen + 1 && host[hl - dlen - 1] == '.' &&
                 strncasecmp(host + hl - dlen, domain, dlen) == 0;
    return vhost ? q->bucket : NULL;
}

/*
 * SigV4, or SigV2 when the request carries V2 credentials (sigv2_present).
 * A V2 request's payload is PAYLOAD_UNSIGNED, so the body plumbing treats it
 * as an UNSIGNED-PAYLOAD request: no SHA-256 to check, no aws-chunked.
 */
static int authenticate(s3_req *q) {
    http_req *r = q->http;
    s3_gateway *gw = q->gw;
    sigv4_request sr = {r->method, r->raw_path, r->raw_query, r->headers, r->nheaders};
    const char *code = NULL, *msg = NULL;
    bool v2 = sigv2_present(&sr);
    if (v2 && !gw->cfg.sigv2) {
        /* What S3 answers in the regions that never had SigV2 (eu-central-1 and
         * every region opened since 2014): 400 InvalidRequest, not AccessDenied,
         * so clients see that the mechanism is refused, not their credentials. */
        s3_error(q, "InvalidRequest",
                 "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
        return -1;
    }
    if ((v2 ? sigv2_parse(&sr, &q->auth, &code, &msg) : sigv4_parse(&sr, &q->auth, &code, &msg)) != 0) {
        s3_error(q, code ? code : "AccessDenied", msg);
        return -1;
    }
    if (q->auth.kind == SIGV4_ANONYMOUS) {
        q->anonymous = true;
        snprintf(r->principal, sizeof r->principal, "anonymous");
        return 0;
    }
    if (!v2 && strcmp(q->auth.service, "s3") != 0) {
        s3_error(q, q->auth.kind == SIGV4_PRESIGNED ? "AuthorizationQueryParametersError"
                                                    : "AuthorizationHeaderMalformed",
                 "The credential scope must name the service 's3'.");
        return -1;
    }
    if (!v2 && strcmp(q->auth.region, gw->cfg.region) != 0) {
        char why[200];
        snprintf(why, sizeof why, "the region '%s' is wrong; expecting '%s'", q->auth.region, gw->cfg.region);
        s3_error(q, q->auth.kind == SIGV4_PRESIGNED ? "AuthorizationQueryParametersError"
                                                    : "AuthorizationHeaderMalformed", why);
        return -1;
    }
    const char *secret = NULL;
    buf_t opened;
    buf_init(&opened);
    if (gw->d.root_access_key && strcmp(q->auth.access_key, gw->d.root_access_key) == 0) {
        secret = gw->d.root_secret;
        q->is_root = true;
        q->user_id = gw->d.root_user_id;
    } else {
        meta_key k;
        int rc = meta_key_get(gw->d.meta, q->auth.access_key, &k);
        if (rc == CAIRN_ENOTFOUND || (rc == 0 && !k.active)) {
            s3_error(q, "InvalidAccessKeyId", NULL);
            return -1;
        }
        if (rc != 0) {
            s3_meta_error(q, rc, "InternalError", "cannot load the access key");
            return -1;
        }
        if (auth_secret_open(gw->d.master_key, k.sealed_secret, &opened) != 0) {
            buf_free(&opened);
            s3_error(q, "InternalError", "cannot load the access key");
            return -1;
        }
        secret = opened.data;
        q->user_id = k.user_id;
        q->is_root = k.user_id == gw->d.root_user_id;
    }
    int64_t now = time_now_ms() / 1000;
    int rc = v2 ? sigv2_verify(&sr, &q->auth, vhost_bucket(q), secret, now, gw->cfg.clock_skew, &code, &msg)
                : sigv4_verify(&sr, &q->auth, secret, now, gw->cfg.clock_skew, &code, &msg);
    if (rc == 0) snprintf(q->secret, sizeof q->secret, "%s", secret);
    if (opened.data) sodium_memzero(opened.data, opened.len);
    buf_free(&opened);
    if (rc == CAIRN_ENOMEM) { /* could not compute it: a retry may succeed, a 403 would not */
        s3_error(q, "InternalError", "out of memory while checking the signature");
        return -1;
    }
    if (rc != 0) {
        s3_error(q, code ? code : "SignatureDoesNotMatch", msg);
        return -1;
    }
    snprintf(r->principal, sizeof r->principal, "%s", q->auth.access_key);
    return 0;
}

/* ---- body plumbing ---------------------------------------------------------------------------- */

/* Receives decoded payload bytes (after aws-chunked, if any). */
static int payload_sink(void *ud, const char *data, size_t n) {
    s3_req *q = ud;
    q->payload_bytes += n;
    /* Object bodies are hashed by object.c, possibly on another thread. */
    if (q->sha256 && q->body_mode != BODY_OBJECT) EVP_DigestUpdate(q->sha256, data, n);
    switch (q->body_mode) {
    case BODY_IGNORE:
        return 0;
    case BODY_BUFFER:
        if (q->body.len + n > q->body_limit) {
            q->body_error_code = "MalformedXML";
            return CAIRN_ETOOBIG;
        }
        buf_append(&q->body, data, n);
        return q->body.oom ? CAIRN_ENOMEM : 0;
    case BODY_OBJECT:
        return s3_object_sink(q, data, n);
    }
    return 0;
}

static void fail_body(s3_req *q, int rc, const char *code) {
    if (code) s3_error(q, code, q->body_error_code ? q->body_error_msg : NULL);
    else if (rc == CAIRN_ENOSPC) s3_error(q, "InsufficientStorage", "The storage is full.");
    else if (rc == CAIRN_ETOOBIG) s3_error(q, "EntityTooLarge", NULL);
    else s3_error(q, "InternalError", "storing the request body failed");
}

static int plan_body(s3_req *q) {
    http_req *r = q->http;
    q->declared_size = r->content_length;
    bool streaming = q->auth.payload == PAYLOAD_STREAMING_SIGNED ||
                     q->auth.payload == PAYLOAD_STREAMING_SIGNED_TRAILER ||
                     q->auth.payload == PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    if (streaming) {
        const char *dcl = http_header(r, "x-amz-decoded-content-length");
        char *end = NULL;
        long long v = dcl ? strtoll(dcl, &end, 10) : -1;
        if (!dcl || *end || v < 0) {
            s3_error(q, "MissingContentLength", "x-amz-decoded-content-length is required for aws-chunked uploads.");
            return -1;
        }
        q->declared_size = v;
        q->chunked = chunked_new(&q->auth, q->secret);
        if (!q->chunked) { s3_error(q, "InternalError", NULL); return -1; }
    }
    if (!q->anonymous && q->auth.payload == PAYLOAD_SHA256) {
        q->sha256 = EVP_MD_CTX_new();
        if (!q->sha256 || !EVP_DigestInit_ex(q->sha256, EVP_sha256(), NULL)) {
            s3_error(q, "InternalError", NULL);
            return -1;
        }
    }
    q->body_mode = q->route->body;
    if (q->route->begin) return q->route->begin(q);
    if (q->body_mode == BODY_BUFFER) {
        q->body_limit = 4 * 1024 * 1024;
        if (q->declared_size > (int64_t)q->body_limit) {
            s3_error(q, "MalformedXML", "The XML body is too large.");
            return -1;
        }
    }
    return 0;
}

/* ---- http_handler callbacks ----------------------------------------------------------------- */

static void on_begin(void *app, http_req *r) {
    s3_req *q = calloc(1, sizeof *q);
    if (!q) {
        http_respond(r, 503, "", 0);
        return;
    }
    q->gw = app;
    q->http = r;
    q->declared_size = -1;
    buf_init(&q->body);
    r->ctx = q;
    obs_inflight(q->gw->d.obs, 1);

    if (r->too_many_headers) {
        s3_error(q, "InvalidRequest", "Too many headers.");
        return;
    }
    const s3_route *op = s3_route_operator(r->method, r->raw_path);
    if (op) {
        q->route = op;
        q->op = s3_route_op(op);
        r->api = op->api;
        op->handler(q);
        return;
    }
    if (parse_address(q) != 0) return;
    int qrc = s3_parse_query(r->raw_query, q->params, S3_MAX_QUERY, &q->nparams, &q->qbuf);
    if (qrc != 0) {
        if (qrc == CAIRN_ENOMEM) s3_error(q, "InternalError", NULL);
        else s3_error(q, "InvalidURI", "Couldn't parse the specified URI: the query string is malformed.");
        return;
    }
    s3_route_input in = {r->method, !q->bucket[0] ? S3_RES_SERVICE : q->has_key ? S3_RES_OBJECT : S3_RES_BUCKET,
                         q->params, q->nparams, http_header(r, "x-amz-copy-source") != NULL};
    q->route = s3_route_find(&in);
    q->op = s3_route_op(q->route);
    r->api = q->route->api;
    if (authenticate(q) != 0) return;
    const char *refusal = s3_route_refusal(q->route, r->method);
    if (refusal) {
        s3_error(q, refusal, NULL);
        return;
    }
    if (q->bucket[0] && q->op != OP_CREATE_BUCKET && !s3_bucket_name_valid(q->bucket)) {
        /* Names that could never have been created cannot exist. */
        s3_error(q, "NoSuchBucket", NULL);
        return;
    }
    if (q->anonymous && q->route->auth != S3_AUTH_PUBLIC) {
        s3_error(q, "AccessDenied", NULL);
        return;
    }
    if (memchr(q->key, '\0', q->key_len)) {
        s3_error(q, "InvalidArgument", "Object keys cannot contain NUL.");
        return;
    }
    plan_body(q);
}

static void on_body(void *app, http_req *r, const char *data, size_t n) {
    (void)app;
    s3_req *q = r->ctx;
    if (!q) return;
    int rc;
    const char *code = NULL;
    if (q->chunked) rc = chunked_feed(q->chunked, data, n, payload_sink, q, &code);
    else rc = payload_sink(q, data, n);
    if (rc == CAIRN_EAUTH) s3_error(q, "SignatureDoesNotMatch", "An aws-chunked chunk signature does not match.");
    else if (rc != 0) fail_body(q, rc, q->body_error_code ? q->body_error_code : code);
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
        if (strcasecmp(hex, q->auth.payload_hash) != 0) {
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

static void on_end(void *app, http_req *r) {
    (void)app;
    s3_req *q = r->ctx;
    if (!q) return;
    q->body_done = true;
    if (q->body_mode == BODY_OBJECT && s3_object_body_end(q) != 0) return;
    if (finish_payload(q) != 0) return;
    q->route->handler(q);
}

static void on_done(void *app, http_req *r, bool ok) {
    s3_gateway *gw = app;
    s3_req *q = r->ctx;
    unsigned status = http_status(r);
    double secs = (double)(time_mono_ns() - r->start_ns) / 1e9;
    if (q) {
        s3_object_cleanup(q);
        if (q->chunked) chunked_free(q->chunked);
        if (q->sha256) EVP_MD_CTX_free(q->sha256);
        buf_free(&q->body);
        free(q->qbuf);
        sodium_memzero(q->secret, sizeof q->secret);
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
    free(q);
    r->ctx = NULL;
}

static const http_handler handler = {on_begin, on_body, on_end, on_done};

const http_handler *s3_http_handler(void) { return &handler; }
