/*
 * store.c — the audit store's HTTP API (audit.h; docs/audit.md).
 *
 *   POST /audit/v1/events   a batch, {"events":[...]} or a bare array:
 *                           every event validated (400 naming the first bad
 *                           one: nothing of the batch is stored), then one
 *                           transaction, idempotent on event_id:
 *                           200 {"accepted":N,"duplicates":M}.
 *   GET  /audit/v1/events   filters, limit and cursor in the query:
 *                           200 {"events":[...],"next_cursor":"..."}, the
 *                           cursor absent on the last page.
 *
 * A request is decided from its head where it can be: the path and method,
 * the SigV4 signature (header or presigned, service "s3", the configured
 * region) of root or of a user with the audit right, a Content-Length over
 * audit_max_batch_bytes (413 before the body is read).  The body is
 * buffered up to that bound (a chunked body that passes it is 413 at that
 * point), its SHA-256 checked when the signature covers it, then parsed.
 *
 * Errors are JSON: {"error":"...","reason":"..."}; a database that is busy
 * or down is 503 with Retry-After, as for S3 requests.
 *
 * Test mode (the fault build only; docs/fault-injection.md): the points
 * audit.store.post and audit.store.get, reached once the request is read
 * and authenticated, may sleep (pause=) or answer a status (status=), so
 * the audit client's retries are tested against this real server.
 *
 * Metrics: cairn_audit_store_events_accepted_total,
 * cairn_audit_store_events_duplicate_total,
 * cairn_audit_store_batches_rejected_total and
 * cairn_audit_store_queries_total.
 */
#include "audit/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "auth/auth.h"

struct audit_store {
    audit_store_options o;
    char *root_access_key, *root_secret, *region;
    uint8_t master_key[32];
    auth_keys keys;
};

struct audit_mux {
    audit_store *s;
    const http_handler *next;
    void *next_app;
    char domain[256];
};

typedef enum { REQ_NONE, REQ_POST, REQ_GET } req_kind;

/* One request's state, in its arena; the body buffer is malloc'd (bounded
 * by max_body_bytes) and freed in done. */
typedef struct {
    req_kind kind;
    bool check_sha;
    char want_sha[65];
    crypto_hash_sha256_state sha;
    buf_t body;
    char error[48];                    /* for the access log, and the audit event's error_code */
    char principal[AUDIT_STR_MAX + 1]; /* the access key a refused signature claimed */
    const char *user;                  /* the user behind an accepted signature (arena) */
} areq;

int audit_store_new(const audit_store_options *o, audit_store **out) {
    *out = NULL;
    if (!o || !o->meta || !o->master_key || !o->region || o->max_body_bytes <= 0) return CAIRN_EINVAL;
    audit_store *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    s->o = *o;
    if (!s->o.events) s->o.events = o->meta;
    memcpy(s->master_key, o->master_key, sizeof s->master_key);
    s->region = strdup(o->region);
    s->root_access_key = o->root_access_key ? strdup(o->root_access_key) : NULL;
    s->root_secret = o->root_secret ? strdup(o->root_secret) : NULL;
    if (!s->region || (o->root_access_key && !s->root_access_key) || (o->root_secret && !s->root_secret)) {
        audit_store_free(s);
        return CAIRN_ENOMEM;
    }
    s->o.master_key = s->master_key;
    s->o.region = s->region;
    s->o.root_access_key = s->root_access_key;
    s->o.root_secret = s->root_secret;
    s->keys = (auth_keys){.meta = o->meta, .master_key = s->master_key, .root_access_key = s->root_access_key,
                          .root_secret = s->root_secret, .root_user_id = o->root_user_id, .region = s->region,
                          .clock_skew = o->clock_skew, .sigv2 = false};
    *out = s;
    return 0;
}

void audit_store_free(audit_store *s) {
    if (!s) return;
    if (s->root_secret) sodium_memzero(s->root_secret, strlen(s->root_secret));
    sodium_memzero(s->master_key, sizeof s->master_key);
    free(s->root_secret);
    free(s->root_access_key);
    free(s->region);
    free(s);
}

bool audit_path_is_store(const char *raw_path) {
    return raw_path && strncmp(raw_path, AUDIT_PATH_PREFIX, sizeof AUDIT_PATH_PREFIX - 1) == 0;
}

/* ---- answers ------------------------------------------------------------------------ */

static void count(audit_store *s, const char *name, const char *help, uint64_t v) {
    if (s->o.obs && v) obs_counter_add(s->o.obs, name, help, v);
}

static void respond_json(http_req *r, unsigned status, buf_t *b) {
    if (b->oom) {
        buf_free(b);
        static const char oom[] = "{\"error\":\"InternalError\",\"reason\":\"out of memory\"}";
        http_add_header(r, "Content-Type", "application/json");
        http_respond(r, 500, oom, sizeof oom - 1);
        return;
    }
    http_add_header(r, "Content-Type", "application/json");
    size_t len = b->len;
    http_respond_take(r, status, buf_steal(b), len);
}

static void fail(http_req *r, areq *q, unsigned status, const char *error, const char *reason) {
    if (q) snprintf(q->error, sizeof q->error, "%s", error);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{\"error\":\"");
    buf_json_escape(&b, error, strlen(error));
    buf_puts(&b, "\",\"reason\":\"");
    buf_json_escape(&b, reason, strlen(reason));
    buf_puts(&b, "\"}");
    respond_json(r, status, &b);
}

static bool meta_unavailable(int rc) { return rc == CAIRN_EBUSY || rc == CAIRN_EIO || rc == CAIRN_ETIMEDOUT; }

/* A metadata failure: 503 with Retry-After when the database is busy or
 * down (the client retries), 500 otherwise. */
static void fail_meta(http_req *r, areq *q, int rc, const char *what) {
    if (meta_unavailable(rc)) {
        log_write(LOG_WARN, r->request_id, "metadata database unavailable: answering 503", "api", r->api,
                  "error", cairn_strerror(rc), NULL);
        http_add_header(r, "Retry-After", "1");
        fail(r, q, 503, rc == CAIRN_EIO ? "ServiceUnavailable" : "SlowDown",
             "the metadata database is busy or cannot be reached; retry");
        return;
    }
    log_write(LOG_ERROR, r->request_id, what, "error", cairn_strerror(rc), NULL);
    fail(r, q, 500, "InternalError", what);
}

/* ---- the head: route, authenticate, authorize --------------------------------------- */

/* Who may use the API: root, or a user with the audit right.  0, or
 * answers and returns nonzero. */
static int authorize(audit_store *s, http_req *r, areq *q) {
    sigv4_request sr = {r->method, r->raw_path, r->raw_query, r->headers, r->nheaders};
    auth_identity who;
    auth_refusal why;
    int rc = auth_request(&s->keys, &sr, NULL, time_now_ms() / 1000, &who, &why);
    if (rc != 0) {
        snprintf(q->principal, sizeof q->principal, "%s", who.cred.access_key);
        auth_identity_wipe(&who);
        if (meta_unavailable(rc)) {
            fail_meta(r, q, rc, "cannot load the access key");
            return -1;
        }
        fail(r, q, rc == CAIRN_ENOMEM ? 500 : 403, why.code ? why.code : "AccessDenied",
             why.message ? why.message : "the request's signature was refused");
        return -1;
    }
    snprintf(r->principal, sizeof r->principal, "%s", who.anonymous ? "anonymous" : who.cred.access_key);
    sigv4_payload payload = who.cred.payload;
    if (payload == PAYLOAD_SHA256) snprintf(q->want_sha, sizeof q->want_sha, "%s", who.cred.payload_hash);
    bool anonymous = who.anonymous, root = who.is_root;
    int64_t user_id = who.user_id;
    auth_identity_wipe(&who);
    if (anonymous) {
        fail(r, q, 403, "AccessDenied", "the audit API needs a SigV4 signature of root or of a user with the audit right");
        return -1;
    }
    if (root) q->user = s->root_access_key;
    if (!root) {
        meta_user u;
        rc = meta_user_get(s->o.meta, user_id, &u);
        if (rc != 0 && rc != CAIRN_ENOTFOUND) {
            fail_meta(r, q, rc, "cannot load the user");
            return -1;
        }
        if (rc == 0) q->user = arena_strndup(r->arena, u.name, strlen(u.name));
        if (rc == CAIRN_ENOTFOUND || !u.audit) {
            fail(r, q, 403, "AccessDenied", "this user does not have the audit right (cairn admin user audit NAME --grant)");
            return -1;
        }
    }
    if (payload != PAYLOAD_SHA256 && payload != PAYLOAD_UNSIGNED) {
        fail(r, q, 400, "InvalidRequest", "aws-chunked bodies are not accepted here; sign the body's SHA-256 or UNSIGNED-PAYLOAD");
        return -1;
    }
    q->check_sha = payload == PAYLOAD_SHA256;
    return 0;
}

static void store_begin(audit_store *s, http_req *r) {
    areq *q = arena_calloc(r->arena, 1, sizeof *q);
    if (!q) {
        fail(r, NULL, 500, "InternalError", "out of memory");
        return;
    }
    buf_init(&q->body);
    crypto_hash_sha256_init(&q->sha);
    r->ctx = q;
    r->api = "AuditUnknown";
    if (strcmp(r->raw_path, AUDIT_EVENTS_PATH) != 0) {
        fail(r, q, 404, "NotFound", "the audit API is POST and GET /audit/v1/events");
        return;
    }
    if (!strcmp(r->method, "POST")) {
        q->kind = REQ_POST;
        r->api = "AuditPostEvents";
    } else if (!strcmp(r->method, "GET")) {
        q->kind = REQ_GET;
        r->api = "AuditQueryEvents";
    } else {
        http_add_header(r, "Allow", "GET, POST");
        fail(r, q, 405, "MethodNotAllowed", "the audit API is POST and GET /audit/v1/events");
        return;
    }
    if (authorize(s, r, q) != 0) return;
    if (q->kind == REQ_POST && r->content_length > s->o.max_body_bytes) {
        char why[96];
        snprintf(why, sizeof why, "the body is over audit_max_batch_bytes (%lld bytes)", (long long)s->o.max_body_bytes);
        count(s, "cairn_audit_store_batches_rejected_total", "Audit batches refused (400 or 413).", 1);
        fail(r, q, 413, "EntityTooLarge", why);
    }
}

static void store_body(audit_store *s, http_req *r, const char *data, size_t n) {
    areq *q = r->ctx;
    if (!q || q->kind != REQ_POST) return; /* a GET's body is ignored */
    if ((int64_t)(q->body.len + n) > s->o.max_body_bytes) {
        char why[96];
        snprintf(why, sizeof why, "the body is over audit_max_batch_bytes (%lld bytes)", (long long)s->o.max_body_bytes);
        count(s, "cairn_audit_store_batches_rejected_total", "Audit batches refused (400 or 413).", 1);
        fail(r, q, 413, "EntityTooLarge", why);
        return;
    }
    buf_append(&q->body, data, n);
    crypto_hash_sha256_update(&q->sha, (const unsigned char *)data, n);
    if (q->body.oom) fail(r, q, 500, "InternalError", "out of memory reading the body");
}

/* ---- POST ---------------------------------------------------------------------------- */

static void handle_post(audit_store *s, http_req *r, areq *q) {
    if (q->check_sha) {
        unsigned char d[crypto_hash_sha256_BYTES];
        char hex[65];
        crypto_hash_sha256_final(&q->sha, d);
        hex_encode(d, sizeof d, hex);
        if (strcmp(hex, q->want_sha) != 0) {
            fail(r, q, 400, "XAmzContentSHA256Mismatch", "the body's SHA-256 is not the one signed");
            return;
        }
    }
    fault_point("audit.store.post");
    int injected = fault_status("audit.store.post");
    if (injected == 400) {
        static const char body[] = "{\"error\":\"invalid event\",\"index\":0,\"field\":\"event_id\","
                                   "\"reason\":\"fault injected (audit.store.post)\"}";
        snprintf(q->error, sizeof q->error, "injected 400");
        http_add_header(r, "Content-Type", "application/json");
        http_respond(r, 400, body, sizeof body - 1);
        return;
    }
    if (injected) {
        if (injected == 503) http_add_header(r, "Retry-After", "1");
        fail(r, q, (unsigned)injected, "InjectedFault", "fault injected (audit.store.post)");
        return;
    }
    audit_events *b = NULL;
    audit_error err;
    int rc = audit_events_parse(q->body.data ? q->body.data : "", q->body.len, AUDIT_BATCH_MAX, &b, &err);
    if (rc == CAIRN_ENOMEM) {
        fail(r, q, 500, "InternalError", "out of memory parsing the batch");
        return;
    }
    if (rc != 0) {
        count(s, "cairn_audit_store_batches_rejected_total", "Audit batches refused (400 or 413).", 1);
        buf_t o;
        buf_init(&o);
        const char *what = rc == CAIRN_ETOOBIG ? "batch too large" : err.index >= 0 ? "invalid event" : "invalid batch";
        snprintf(q->error, sizeof q->error, "%s", what);
        buf_printf(&o, "{\"error\":\"%s\"", what);
        if (err.index >= 0) buf_printf(&o, ",\"index\":%d", err.index);
        buf_puts(&o, ",\"field\":\"");
        buf_json_escape(&o, err.field, strlen(err.field));
        buf_puts(&o, "\",\"reason\":\"");
        buf_json_escape(&o, err.reason, strlen(err.reason));
        buf_puts(&o, "\"}");
        respond_json(r, rc == CAIRN_ETOOBIG ? 413 : 400, &o);
        return;
    }
    int n = audit_events_count(b), inserted = 0;
    rc = n > 0 ? meta_audit_insert(s->o.events, audit_events_list(b), n, &inserted) : 0;
    audit_events_free(b);
    if (rc != 0) {
        fail_meta(r, q, rc, "cannot store the batch");
        return;
    }
    count(s, "cairn_audit_store_events_accepted_total", "Audit events stored.", (uint64_t)inserted);
    count(s, "cairn_audit_store_events_duplicate_total", "Audit events received again (already stored; not stored twice).",
          (uint64_t)(n - inserted));
    buf_t o;
    buf_init(&o);
    buf_printf(&o, "{\"accepted\":%d,\"duplicates\":%d}", inserted, n - inserted);
    respond_json(r, 200, &o);
}

/* ---- GET ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    size_t off;                        /* into meta_audit_filter, for the string filters */
    size_t max;
} query_param;

static const query_param string_params[] = {
    {"correlation_id", offsetof(meta_audit_filter, correlation_id), AUDIT_STR_MAX},
    {"request_id", offsetof(meta_audit_filter, request_id), AUDIT_STR_MAX},
    {"principal", offsetof(meta_audit_filter, principal), AUDIT_STR_MAX},
    {"action", offsetof(meta_audit_filter, action), AUDIT_STR_MAX},
    {"bucket", offsetof(meta_audit_filter, bucket), AUDIT_STR_MAX},
    {"key_prefix", offsetof(meta_audit_filter, key_prefix), AUDIT_KEY_MAX},
    {"outcome", offsetof(meta_audit_filter, outcome), AUDIT_STR_MAX},
};

typedef struct {
    meta_audit_filter f;
    int limit;
} query;

/* Parses the query string into q.  0, or answers 400 and returns nonzero. */
static int parse_query(http_req *r, areq *rq, query *q) {
    memset(q, 0, sizeof *q);
    q->limit = AUDIT_QUERY_LIMIT_DEFAULT;
    const char *from = NULL, *to = NULL, *limit = NULL, *cursor = NULL;
    bool seen[sizeof string_params / sizeof string_params[0] + 4] = {0};
    const char *p = r->raw_query;
    while (*p) {
        size_t len = strcspn(p, "&");
        size_t nl = strcspn(p, "=");
        if (nl > len) nl = len;
        char *name = arena_strndup(r->arena, p, nl);
        const char *vs = nl < len ? p + nl + 1 : p + len;
        size_t vl = nl < len ? len - nl - 1 : 0;
        char *value = arena_alloc(r->arena, vl + 1);
        if (!name || !value) {
            fail(r, rq, 500, "InternalError", "out of memory");
            return -1;
        }
        long dn = url_decode(name, strlen(name), name);
        long dv = url_decode(vs, vl, value);
        if (dn < 0 || dv < 0 || (long)strlen(value) != dv || (long)strlen(name) != dn) {
            fail(r, rq, 400, "InvalidArgument", "a query parameter is not well percent-encoded");
            return -1;
        }
        p += len;
        if (*p == '&') p++;
        if (!name[0] || !strncasecmp(name, "X-Amz-", 6)) continue; /* presigned signature parameters */
        int idx = -1;
        for (size_t i = 0; i < sizeof string_params / sizeof string_params[0]; i++)
            if (!strcmp(name, string_params[i].name)) idx = (int)i;
        const char **slot = NULL;
        int extra = (int)(sizeof string_params / sizeof string_params[0]);
        if (idx < 0) {
            if (!strcmp(name, "from")) slot = &from, idx = extra;
            else if (!strcmp(name, "to")) slot = &to, idx = extra + 1;
            else if (!strcmp(name, "limit")) slot = &limit, idx = extra + 2;
            else if (!strcmp(name, "cursor")) slot = &cursor, idx = extra + 3;
        }
        if (idx < 0) {
            char why[160];
            snprintf(why, sizeof why, "unknown query parameter '%.64s'", name);
            fail(r, rq, 400, "InvalidArgument", why);
            return -1;
        }
        if (seen[idx]) {
            char why[160];
            snprintf(why, sizeof why, "query parameter '%.64s' given twice", name);
            fail(r, rq, 400, "InvalidArgument", why);
            return -1;
        }
        seen[idx] = true;
        if (slot) {
            *slot = value;
            continue;
        }
        if (strlen(value) > string_params[idx].max) {
            char why[160];
            snprintf(why, sizeof why, "'%s' is longer than %zu bytes", name, string_params[idx].max);
            fail(r, rq, 400, "InvalidArgument", why);
            return -1;
        }
        *(const char **)((char *)&q->f + string_params[idx].off) = value;
    }
    if (q->f.outcome && q->f.outcome[0] && strcmp(q->f.outcome, "success") && strcmp(q->f.outcome, "error") &&
        strcmp(q->f.outcome, "denied")) {
        fail(r, rq, 400, "InvalidArgument", "outcome is success, error or denied");
        return -1;
    }
    if (from && audit_time_parse(from, &q->f.from_us) != 0) {
        fail(r, rq, 400, "InvalidArgument", "'from' is not an RFC 3339 time (2026-11-30T17:41:02Z)");
        return -1;
    }
    if (to && audit_time_parse(to, &q->f.to_us) != 0) {
        fail(r, rq, 400, "InvalidArgument", "'to' is not an RFC 3339 time (2026-11-30T17:41:02Z)");
        return -1;
    }
    if (to && q->f.to_us == 0) q->f.to_us = 1; /* "to the epoch": nothing, not unbounded */
    if (limit) {
        char *end = NULL;
        long v = strtol(limit, &end, 10);
        if (!limit[0] || *end || v < 1 || v > AUDIT_QUERY_LIMIT_MAX) {
            fail(r, rq, 400, "InvalidArgument", "limit is a whole number from 1 to 1000");
            return -1;
        }
        q->limit = (int)v;
    }
    if (cursor) {
        if (audit_query_cursor_decode(cursor, &q->f.after_time_us, q->f.after_id) != 0) {
            fail(r, rq, 400, "InvalidArgument", "the cursor is malformed (pass next_cursor as it came)");
            return -1;
        }
        q->f.after_set = true;
    }
    return 0;
}

typedef struct {
    buf_t *out;
    int limit, n;
    bool more;
    int64_t last_time;
    char last_id[AUDIT_ID_LEN + 1];
} page;

static int page_add(void *ud, const audit_event *e) {
    page *pg = ud;
    if (pg->n == pg->limit) {
        pg->more = true;
        return 1;
    }
    if (pg->n++) buf_putc(pg->out, ',');
    audit_event_to_json(e, pg->out);
    pg->last_time = e->time_us;
    snprintf(pg->last_id, sizeof pg->last_id, "%s", e->event_id);
    return 0;
}

static void handle_get(audit_store *s, http_req *r, areq *rq) {
    query q;
    if (parse_query(r, rq, &q) != 0) return;
    fault_point("audit.store.get");
    int injected = fault_status("audit.store.get");
    if (injected) {
        fail(r, rq, (unsigned)injected, "InjectedFault", "fault injected (audit.store.get)");
        return;
    }
    buf_t o;
    buf_init(&o);
    buf_puts(&o, "{\"events\":[");
    page pg = {.out = &o, .limit = q.limit};
    int got = 0;
    int rc = meta_audit_query(s->o.events, &q.f, q.limit + 1, page_add, &pg, &got);
    if (rc != 0) {
        buf_free(&o);
        fail_meta(r, rq, rc, "cannot query the audit events");
        return;
    }
    buf_putc(&o, ']');
    if (pg.more) {
        char c[AUDIT_QUERY_CURSOR_LEN + 1];
        audit_query_cursor_encode(pg.last_time, pg.last_id, c);
        buf_printf(&o, ",\"next_cursor\":\"%s\"", c);
    }
    buf_putc(&o, '}');
    count(s, "cairn_audit_store_queries_total", "Audit queries answered.", 1);
    respond_json(r, 200, &o);
}

/* ---- the handler callbacks -------------------------------------------------------------- */

static void store_end(audit_store *s, http_req *r) {
    areq *q = r->ctx;
    if (!q || http_responded(r)) return;
    if (q->kind == REQ_POST) handle_post(s, r, q);
    else if (q->kind == REQ_GET) handle_get(s, r, q);
    if (!http_responded(r)) fail(r, q, 500, "InternalError", "no answer");
}

static void store_done(audit_store *s, http_req *r, bool ok) {
    areq *q = r->ctx;
    unsigned status = http_status(r);
    double secs = (double)(time_mono_ns() - r->start_ns) / 1e9;
    if (q) buf_free(&q->body);
    if (s->o.obs) obs_request(s->o.obs, r->api ? r->api : "AuditUnknown", status, secs, r->bytes_in, ok ? r->resp_size_ : 0);
    char st[24], bi[24], dur[32];
    snprintf(dur, sizeof dur, "%.3f", secs * 1000);
    log_write(status >= 500 ? LOG_WARN : LOG_INFO, r->request_id, "request", "method", r->method, "path",
              r->raw_path, "api", r->api ? r->api : "", "status", log_int(st, status), "bytes_in",
              log_int(bi, (long long)r->bytes_in), "duration_ms", dur, "principal",
              r->principal[0] ? r->principal : "-", "remote", r->remote_addr, "error",
              q && q->error[0] ? q->error : (ok ? "" : "connection closed before the response was sent"), NULL);
    r->ctx = NULL;
}

/* ---- the store's own audit events ------------------------------------------------------ */

/* One event straight into the events database: encoded and parsed back as
 * the journal's events are, so it is validated the same way. */
static int record_direct(audit_store *s, const audit_event_fields *e) {
    char id[AUDIT_ID_LEN + 1];
    audit_event_id_new(id);
    buf_t b;
    buf_init(&b);
    buf_putc(&b, '[');
    int rc = audit_emit_encode(e, id, &b);
    buf_putc(&b, ']');
    if (rc == 0 && b.oom) rc = CAIRN_ENOMEM;
    audit_events *ev = NULL;
    audit_error err;
    if (rc == 0) rc = audit_events_parse(b.data, b.len, 1, &ev, &err);
    buf_free(&b);
    int inserted = 0;
    if (rc == 0) rc = meta_audit_insert(s->o.events, audit_events_list(ev), audit_events_count(ev), &inserted);
    audit_events_free(ev);
    return rc;
}

/*
 * Called by http/ right before a store request's answer is queued (as the
 * S3 pipeline's on_reply is): its event, action audit:PostEvents,
 * audit:QueryEvents or audit:Unknown.  A successful answer goes out only
 * once its event is recorded (a POST's durably); when it cannot be, the
 * answer becomes 503 (a retried POST is idempotent).  An error answer
 * keeps its status, and an event lost with it is logged and counted.
 */
static void store_reply(audit_store *s, http_req *r, bool will_send) {
    if (!s->o.journal && !s->o.record_direct) return;
    areq *q = r->ctx;
    int64_t dur_us = (time_mono_ns() - r->start_ns) / 1000;
    unsigned status = http_status(r);
    char corr[129];
    const char *cid = http_header(r, "x-correlation-id");
    const char *principal = r->principal[0] ? r->principal : q && q->principal[0] ? q->principal : "anonymous";
    const char *action = !q ? "audit:Unknown" : q->kind == REQ_POST ? "audit:PostEvents"
                                              : q->kind == REQ_GET  ? "audit:QueryEvents" : "audit:Unknown";
    audit_event_fields e = {
        .time_us = time_now_us() - dur_us,
        .request_id = r->request_id,
        .correlation_id = cid && audit_correlation_id_clean(cid, corr) == 0 ? corr : NULL,
        .principal = principal,
        .user = q && q->user && r->principal[0] ? q->user : "",
        .source_address = r->remote_addr,
        .action = action,
        .status = status ? status : 499,
        .error_code = q && q->error[0] && status >= 400 ? q->error : r->refusal ? r->refusal : "",
        .bytes_in = r->bytes_in,
        .bytes_out = will_send ? http_response_size(r) : 0,
        .duration_us = (uint64_t)dur_us,
    };
    bool must = will_send && status < 300;
    int rc = s->o.journal ? audit_emit(s->o.journal, &e, will_send && strcmp(r->method, "POST") == 0)
                          : record_direct(s, &e);
    if (rc == 0) return;
    if (!must) {
        if (!s->o.journal) { /* the journal counts and logs its own losses */
            log_write(LOG_ERROR, r->request_id, "audit events lost", "count", "1", "reason",
                      "the audit event of a refused audit API request could not be recorded", "error",
                      cairn_strerror(rc), NULL);
            count(s, "cairn_audit_events_lost_total", "Audit events lost.", 1);
        }
        return;
    }
    log_write(LOG_ERROR, r->request_id, "audit event not recorded: answering 503", "error", cairn_strerror(rc), NULL);
    http_response_discard(r);
    http_add_header(r, "Retry-After", "1");
    fail(r, q, 503, rc == CAIRN_EBUSY ? "SlowDown" : "ServiceUnavailable",
         "the audit trail cannot record this request; retry");
}

/* The standalone server also answers the operator endpoints. */
static void alone_begin(void *app, http_req *r) {
    audit_store *s = app;
    if (!strcmp(r->raw_path, "/health/live")) {
        r->api = "HealthLive";
        static const char live[] = "{\"status\":\"ok\"}\n";
        http_add_header(r, "Content-Type", "application/json");
        http_respond(r, 200, live, sizeof live - 1);
        return;
    }
    if (!strcmp(r->raw_path, "/health/ready")) {
        r->api = "HealthReady";
        int rc = meta_ping(s->o.meta);
        if (rc == 0 && s->o.events != s->o.meta) rc = meta_ping(s->o.events);
        http_add_header(r, "Content-Type", "application/json");
        if (rc == 0) {
            static const char ok[] = "{\"status\":\"ok\",\"down\":[]}\n";
            http_respond(r, 200, ok, sizeof ok - 1);
        } else {
            static const char down[] = "{\"status\":\"fail\",\"down\":[\"database\"]}\n";
            http_respond(r, 503, down, sizeof down - 1);
        }
        return;
    }
    if (!strcmp(r->raw_path, "/metrics") && s->o.obs) {
        r->api = "Metrics";
        buf_t b;
        buf_init(&b);
        obs_render(s->o.obs, &b);
        http_add_header(r, "Content-Type", "text/plain; version=0.0.4");
        size_t len = b.len;
        http_respond_take(r, 200, buf_steal(&b), len);
        return;
    }
    store_begin(s, r);
}

static void alone_body(void *app, http_req *r, const char *d, size_t n) { store_body(app, r, d, n); }
static void alone_end(void *app, http_req *r) { store_end(app, r); }
static void alone_done(void *app, http_req *r, bool ok) { store_done(app, r, ok); }
static void alone_reply(void *app, http_req *r, bool will_send) {
    /* The operator endpoints are not audited (as on a gateway). */
    if (r->ctx || !r->api || (strncmp(r->api, "Health", 6) != 0 && strcmp(r->api, "Metrics") != 0))
        store_reply(app, r, will_send);
}

static const http_handler alone = {alone_begin, alone_body, alone_end, alone_done, alone_reply};

const http_handler *audit_store_handler(void) { return &alone; }

/* ---- embedded: in front of the S3 pipeline ----------------------------------------------- */

int audit_mux_new(audit_store *s, const http_handler *next, void *next_app, const char *domain, audit_mux **out) {
    *out = NULL;
    if (!s || !next) return CAIRN_EINVAL;
    audit_mux *m = calloc(1, sizeof *m);
    if (!m) return CAIRN_ENOMEM;
    *m = (audit_mux){.s = s, .next = next, .next_app = next_app};
    snprintf(m->domain, sizeof m->domain, "%s", domain ? domain : "");
    *out = m;
    return 0;
}

void audit_mux_free(audit_mux *m) { free(m); }

/* Is r the store's?  Its path, and not a virtual-host-style S3 request (a
 * Host under the S3 domain names a bucket, whose keys may begin with
 * anything). */
static bool mine(const audit_mux *m, http_req *r) {
    if (!audit_path_is_store(r->raw_path)) return false;
    if (!m->domain[0]) return true;
    const char *host = http_header(r, "host");
    if (!host) return true;
    size_t hl = strcspn(host, ":"), dl = strlen(m->domain);
    return !(hl > dl + 1 && host[hl - dl - 1] == '.' && strncasecmp(host + hl - dl, m->domain, dl) == 0);
}

static void mux_begin(void *app, http_req *r) {
    audit_mux *m = app;
    if (mine(m, r)) store_begin(m->s, r);
    else m->next->begin(m->next_app, r);
}

static void mux_body(void *app, http_req *r, const char *d, size_t n) {
    audit_mux *m = app;
    if (mine(m, r)) store_body(m->s, r, d, n);
    else m->next->body(m->next_app, r, d, n);
}

static void mux_end(void *app, http_req *r) {
    audit_mux *m = app;
    if (mine(m, r)) store_end(m->s, r);
    else m->next->end(m->next_app, r);
}

static void mux_done(void *app, http_req *r, bool ok) {
    audit_mux *m = app;
    if (mine(m, r)) store_done(m->s, r, ok);
    else m->next->done(m->next_app, r, ok);
}

/* The S3 pipeline's reply callback emits its requests' audit events; the
 * store's own requests (a context of another type) are the store's. */
static void mux_reply(void *app, http_req *r, bool will_send) {
    audit_mux *m = app;
    if (mine(m, r)) store_reply(m->s, r, will_send);
    else if (m->next->reply) m->next->reply(m->next_app, r, will_send);
}

static const http_handler mux = {mux_begin, mux_body, mux_end, mux_done, mux_reply};

const http_handler *audit_mux_handler(void) { return &mux; }
