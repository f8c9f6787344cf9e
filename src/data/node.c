/*
 * node.c — the storage node's HTTP handler (docs/shard-api.md).
 *
 * Per request: begin checks the signature and the name from the head alone,
 * so an unauthenticated or malformed upload is refused before its body; body
 * appends to a temp shard; end commits (fsync, rename) and answers 201; done
 * removes the temp shard of a body that never completed and logs the request.
 */
#include "data/node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "data/data.h"
#include "data/drive.h"

#define NODE_MAX_DRIVES 64
#define NODE_CLOCK_WINDOW 300

struct node_server {
    drive *drives[NODE_MAX_DRIVES];
    int ndrives;
    char secret[256];
    char id[DATA_DRIVE_ID_LEN + 1];
};

typedef struct {
    node_server *n;
    char name[48];
    bool is_shard;
    shard_out *out;
    int err;
    uint64_t expected;
} node_req;

void node_sign(const char *secret, const char *method, const char *target, const char *date, char out[65]) {
    char msg[4096];
    int len = snprintf(msg, sizeof msg, "%s\n%s\n%s", method, target, date);
    if (len < 0 || len >= (int)sizeof msg) len = (int)sizeof msg - 1;
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)len, mac, &maclen);
    hex_encode(mac, 32, out);
}

int node_server_new(const char *const *drives, int ndrives, bool fsync, const char *secret, node_server **out,
                    int *cleaned) {
    if (ndrives < 1 || ndrives > NODE_MAX_DRIVES || !secret || strlen(secret) < 16 ||
        strlen(secret) >= sizeof((node_server *)0)->secret)
        return CAIRN_EINVAL;
    node_server *n = calloc(1, sizeof *n);
    if (!n) return CAIRN_ENOMEM;
    snprintf(n->secret, sizeof n->secret, "%s", secret);
    int total = 0, rc = 0;
    for (int i = 0; i < ndrives && rc == 0; i++) {
        int c = 0;
        rc = drive_local_open(drives[i], fsync, &n->drives[i], &c);
        if (rc == 0) {
            n->ndrives++;
            total += c;
        }
    }
    if (rc != 0) {
        node_server_free(n);
        return rc;
    }
    /* The node is known by its first drive's id: stable across restarts. */
    snprintf(n->id, sizeof n->id, "%s", drive_id(n->drives[0]));
    if (cleaned) *cleaned = total;
    *out = n;
    return 0;
}

void node_server_free(node_server *n) {
    if (!n) return;
    for (int i = 0; i < n->ndrives; i++) drive_close(n->drives[i]);
    free(n);
}

const char *node_server_id(const node_server *n) { return n->id; }

/* The drive a shard lives on: a hash of its name, so the choice is stable. */
static drive *home_drive(node_server *n, const char *name) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return n->drives[h % (uint64_t)n->ndrives];
}

static void reply(http_req *r, unsigned status, const char *msg) {
    http_add_header(r, "Content-Type", "text/plain");
    http_respond(r, status, msg, strlen(msg));
}

static bool authorized(node_server *n, http_req *r) {
    const char *date = http_header(r, "x-cairn-date");
    const char *sig = http_header(r, "x-cairn-signature");
    if (!date || !sig || strlen(sig) != 64) return false;
    char *end;
    long long t = strtoll(date, &end, 10);
    if (*end || end == date) return false;
    long long now = time_now_ms() / 1000;
    if (t < now - NODE_CLOCK_WINDOW || t > now + NODE_CLOCK_WINDOW) return false;
    char target[4096];
    snprintf(target, sizeof target, "%s%s%s", r->raw_path, r->raw_query[0] ? "?" : "", r->raw_query);
    char want[65];
    node_sign(n->secret, r->method, target, date, want);
    return CRYPTO_memcmp(want, sig, 64) == 0;
}

static void serve_info(node_server *n, http_req *r) {
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "{\"node_id\":\"%s\",\"drives\":[", n->id);
    for (int i = 0; i < n->ndrives; i++) {
        int64_t free_b = -1, total_b = -1;
        drive_free_bytes(n->drives[i], &free_b, &total_b);
        buf_printf(&b, "%s{\"id\":\"%s\",\"path\":\"", i ? "," : "", drive_id(n->drives[i]));
        buf_json_escape(&b, drive_path(n->drives[i]), strlen(drive_path(n->drives[i])));
        buf_printf(&b, "\",\"free_bytes\":%lld,\"total_bytes\":%lld}", (long long)free_b, (long long)total_b);
    }
    buf_puts(&b, "]}\n");
    http_add_header(r, "Content-Type", "application/json");
    size_t len = b.len;
    http_respond_take(r, 200, buf_steal(&b), len);
}

/* Opens a shard on its home drive, else on any drive. */
static int open_shard(node_server *n, const char *name, shard_in **in) {
    drive *home = home_drive(n, name);
    int rc = drive_open(home, name, in);
    for (int i = 0; rc == CAIRN_ENOTFOUND && i < n->ndrives; i++)
        if (n->drives[i] != home) rc = drive_open(n->drives[i], name, in);
    return rc;
}

typedef struct {
    shard_in *in;
    uint64_t start;
} shard_stream;

static long stream_shard(void *ud, uint64_t pos, char *buf, size_t max) {
    shard_stream *s = ud;
    struct iovec iov = {buf, max};
    ssize_t got = drive_preadv(s->in, &iov, 1, s->start + pos);
    return got > 0 ? (long)got : -1;
}

static void stream_free(void *ud) {
    shard_stream *s = ud;
    drive_close_shard(s->in);
    free(s);
}

static void serve_get(node_server *n, http_req *r, const char *name, bool head) {
    shard_in *in;
    int rc = open_shard(n, name, &in);
    if (rc == CAIRN_ENOTFOUND) return reply(r, 404, "no such shard\n");
    if (rc != 0) return reply(r, 500, "cannot open shard\n");
    int64_t size = drive_shard_size(in), start = 0, len = size;
    unsigned status = 200;
    const char *range = http_header(r, "range");
    long long a, b;
    int used = 0;
    if (range && sscanf(range, "bytes=%lld-%lld%n", &a, &b, &used) == 2 && range[used] == '\0') {
        if (a < 0 || b < a || a >= size) {
            drive_close_shard(in);
            return reply(r, 416, "range not satisfiable\n");
        }
        if (b >= size) b = size - 1;
        start = a;
        len = b - a + 1;
        status = 206;
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", a, b, (long long)size);
        http_add_header(r, "Content-Range", cr);
    }
    if (head || len == 0) {
        drive_close_shard(in);
        if (head) http_respond_stream(r, status, (uint64_t)len, stream_shard, NULL, NULL);
        else http_respond(r, status, "", 0);
        return;
    }
    shard_stream *s = malloc(sizeof *s);
    if (!s) {
        drive_close_shard(in);
        return reply(r, 500, "out of memory\n");
    }
    s->in = in;
    s->start = (uint64_t)start;
    http_respond_stream(r, status, (uint64_t)len, stream_shard, s, stream_free);
}

/* GET /v1/shards?after=NAME&limit=N: the node's committed shards after NAME in
 * name order, across its drives (a name on two drives is listed once, with
 * the younger age). */
#define NODE_LIST_MAX 1000

typedef struct {
    drive_entry *v;
    size_t n, cap;
} entry_vec;

static int collect_entry(void *ud, const drive_entry *e) {
    entry_vec *ev = ud;
    if (ev->n == ev->cap) {
        size_t nc = ev->cap ? ev->cap * 2 : 256;
        drive_entry *g = realloc(ev->v, nc * sizeof *g);
        if (!g) return CAIRN_ENOMEM;
        ev->v = g;
        ev->cap = nc;
    }
    ev->v[ev->n++] = *e;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const drive_entry *)a)->name, ((const drive_entry *)b)->name);
}

/* after and limit from the query; false on anything else. */
static bool parse_list_query(const char *q, char *after, size_t alen, long *limit) {
    after[0] = '\0';
    *limit = NODE_LIST_MAX;
    while (*q) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q), *eq = memchr(q, '=', (size_t)(end - q));
        if (!eq) return false;
        size_t kl = (size_t)(eq - q), vl = (size_t)(end - eq - 1);
        if (kl == 5 && !strncmp(q, "after", 5)) {
            if (vl >= alen) return false;
            memcpy(after, eq + 1, vl);
            after[vl] = '\0';
            if (vl && !drive_shard_name_valid(after)) return false;
        } else if (kl == 5 && !strncmp(q, "limit", 5)) {
            char num[16];
            if (vl == 0 || vl >= sizeof num) return false;
            memcpy(num, eq + 1, vl);
            num[vl] = '\0';
            char *e;
            *limit = strtol(num, &e, 10);
            if (*e || *limit < 1) return false;
            if (*limit > NODE_LIST_MAX) *limit = NODE_LIST_MAX;
        } else {
            return false;
        }
        q = amp ? amp + 1 : end;
    }
    return true;
}

static void serve_list(node_server *n, http_req *r) {
    char after[48];
    long limit;
    if (!parse_list_query(r->raw_query, after, sizeof after, &limit)) return reply(r, 400, "bad listing query\n");
    entry_vec ev = {0};
    int rc = 0;
    /* limit + 1 from each drive tells whether more follow the page. */
    for (int i = 0; i < n->ndrives && rc == 0; i++) rc = drive_local_list(n->drives[i], after, limit + 1, collect_entry, &ev);
    if (rc != 0) {
        free(ev.v);
        return reply(r, 500, "listing failed\n");
    }
    if (ev.n > 1) qsort(ev.v, ev.n, sizeof *ev.v, cmp_name);
    size_t u = 0;
    for (size_t i = 0; i < ev.n; i++) {
        if (u && !strcmp(ev.v[u - 1].name, ev.v[i].name)) {
            if (ev.v[i].age_s < ev.v[u - 1].age_s) ev.v[u - 1].age_s = ev.v[i].age_s;
        } else {
            ev.v[u++] = ev.v[i];
        }
    }
    bool truncated = u > (size_t)limit;
    if (truncated) u = (size_t)limit;
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{\"shards\":[");
    for (size_t i = 0; i < u; i++)
        buf_printf(&b, "%s{\"name\":\"%s\",\"age_s\":%lld}", i ? "," : "", ev.v[i].name, (long long)ev.v[i].age_s);
    buf_printf(&b, "],\"truncated\":%s}\n", truncated ? "true" : "false");
    free(ev.v);
    http_add_header(r, "Content-Type", "application/json");
    size_t len = b.len;
    http_respond_take(r, 200, buf_steal(&b), len);
}

static void on_begin(void *app, http_req *r) {
    node_server *n = app;
    node_req *q = calloc(1, sizeof *q);
    if (!q) return reply(r, 503, "out of memory\n");
    q->n = n;
    r->ctx = q;
    bool get = !strcmp(r->method, "GET"), head = !strcmp(r->method, "HEAD"), put = !strcmp(r->method, "PUT"),
         del = !strcmp(r->method, "DELETE");
    if (get && !strcmp(r->raw_path, "/health/live")) {
        r->api = "Health";
        return reply(r, 200, "ok\n");
    }
    if (!authorized(n, r)) {
        r->api = "Unauthorized";
        return reply(r, 401, "bad or missing cluster signature\n");
    }
    snprintf(r->principal, sizeof r->principal, "cluster");
    if (get && !strcmp(r->raw_path, "/v1/info")) {
        r->api = "NodeInfo";
        return serve_info(n, r);
    }
    if (get && !strcmp(r->raw_path, "/v1/shards")) {
        r->api = "ShardList";
        return serve_list(n, r);
    }
    static const char prefix[] = "/v1/shards/";
    if (strncmp(r->raw_path, prefix, sizeof prefix - 1) != 0) return reply(r, 404, "unknown path\n");
    const char *name = r->raw_path + sizeof prefix - 1;
    if (!drive_shard_name_valid(name)) return reply(r, 400, "bad shard name\n");
    snprintf(q->name, sizeof q->name, "%s", name);
    if (get || head) {
        r->api = head ? "ShardStat" : "ShardGet";
        return serve_get(n, r, name, head);
    }
    if (del) {
        r->api = "ShardDelete";
        int rc = 0;
        for (int i = 0; i < n->ndrives; i++) {
            int e = drive_remove(n->drives[i], name);
            if (e) rc = e;
        }
        if (rc) reply(r, 500, "delete failed\n");
        else http_respond(r, 204, "", 0);
        return;
    }
    if (put) {
        r->api = "ShardPut";
        if (r->content_length < 0) return reply(r, 411, "Content-Length required\n");
        q->expected = (uint64_t)r->content_length;
        int rc = drive_create(home_drive(n, name), name, q->expected, &q->out);
        if (rc == CAIRN_ENOSPC) return reply(r, 507, "drive full\n");
        if (rc != 0) return reply(r, 500, "cannot create shard\n");
        q->is_shard = true;
        return;
    }
    reply(r, 405, "method not allowed\n");
}

static void on_body(void *app, http_req *r, const char *data, size_t len) {
    (void)app;
    node_req *q = r->ctx;
    if (!q || !q->out) return;
    struct iovec iov = {(void *)(uintptr_t)data, len};
    int rc = drive_append(q->out, &iov, 1);
    if (rc == 0) {
        drive_writeback(q->out);
        return;
    }
    drive_abort(q->out);
    q->out = NULL;
    reply(r, rc == CAIRN_ENOSPC ? 507 : 500, rc == CAIRN_ENOSPC ? "drive full\n" : "write failed\n");
}

static void on_end(void *app, http_req *r) {
    (void)app;
    node_req *q = r->ctx;
    if (!q || !q->out) return reply(r, 400, "no body\n");
    if (r->bytes_in != q->expected) {
        drive_abort(q->out);
        q->out = NULL;
        return reply(r, 400, "incomplete body\n");
    }
    shard_out *o = q->out;
    q->out = NULL;
    int rc = drive_commit(o);
    if (rc == CAIRN_ENOSPC) reply(r, 507, "drive full\n");
    else if (rc != 0) reply(r, 500, "commit failed\n");
    else http_respond(r, 201, "", 0);
}

static void on_done(void *app, http_req *r, bool ok) {
    (void)app;
    node_req *q = r->ctx;
    char st[24], bi[24], dur[32];
    snprintf(dur, sizeof dur, "%.3f", (double)(time_mono_ns() - r->start_ns) / 1e6);
    if (q && q->out) drive_abort(q->out); /* a body that never completed */
    log_write(http_status(r) >= 500 ? LOG_WARN : LOG_DEBUG, r->request_id, "request", "method", r->method,
              "path", r->raw_path, "api", r->api, "status", log_int(st, http_status(r)),
              "bytes_in", log_int(bi, (long long)r->bytes_in), "duration_ms", dur,
              "error", ok ? "" : "connection closed before the response was sent", NULL);
    free(q);
    r->ctx = NULL;
}

static const http_handler handler = {on_begin, on_body, on_end, on_done};

const http_handler *node_http_handler(void) { return &handler; }
