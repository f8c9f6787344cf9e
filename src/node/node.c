/*
 * node.c — the storage node's HTTP handler (docs/shard-api.md).
 *
 * Per request: begin checks the signature, the nonce and the name from the
 * head alone, so an unauthenticated, replayed or malformed upload is refused
 * before its body; body appends the shard bytes to a temp shard and feeds
 * them to the body tag; end checks the tag and only then commits (fsync,
 * rename) and answers 201; done removes the temp shard of a body that never
 * completed or did not authenticate, and logs the request.
 *
 * A PUT comes with Content-Length (the shard's size was known: the tag is
 * the last 16 bytes of the announced length) or Transfer-Encoding: chunked
 * (it was not).  MHD decodes the chunks; the handler holds back the last 16
 * bytes seen (shard_tail_feed), which are the tag once the zero chunk ends
 * the body.  end is only reached on that zero chunk: a stream cut short
 * anywhere, even between whole chunks, goes to done and leaves nothing.  The
 * signature covers the framing: "chunked" stands where the length would.
 *
 * Authentication, and why it looks like this:
 *
 *   - The head signature (HMAC-SHA256 with the cluster secret) covers the
 *     node's id (a request for one node is refused by every other), the
 *     method, the target, the date, a nonce and the Content-Length.
 *   - A PUT's body ends with a 16-byte Poly1305 tag over the shard bytes,
 *     keyed per request by HMAC(secret, signature).  The gateway streams a
 *     shard and knows its hash only at the end, so the tag trails the bytes;
 *     Poly1305 and not HMAC-SHA256 because every object byte crosses the
 *     shard API: measured on the reference box, OpenSSL's Poly1305 runs at
 *     ~12.6 GB/s per core, HMAC-SHA256 (SHA-NI) at ~1.8 GB/s.  A one-time
 *     key is what Poly1305 needs, and each signature is unique (its nonce is).
 *   - Replays: the nonce is a gateway session (random, per gateway process and
 *     node) and a sequence number.  The node keeps, per session, the highest
 *     number and a bitmap of the NODE_REPLAY_WINDOW before it (IPsec's
 *     anti-replay window: concurrent gateway threads arrive out of order), for
 *     at most NODE_REPLAY_SESSIONS sessions, least recently used evicted.
 *     Memory is that fixed table (~580 KiB), whatever the request rate.
 *   - What the table forgets (an evicted session, or everything at a restart)
 *     is covered by a floor: a session the table does not hold is admitted
 *     only for requests dated after the newest date the node ever admitted
 *     for a forgotten session.  At start the floor is the later of the node's
 *     start time and the newest date it had admitted before (the file
 *     request-floor on the first drive, rewritten as that date advances; not
 *     synced: a process crash keeps it, a machine crash is covered by the
 *     start time).  So a request captured before a restart is never admitted
 *     after it, even from a gateway whose clock runs ahead of the node's.
 *
 * Replays and bad tags are 401, like any other authentication failure.
 */
#include "node/node.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "data/drive.h"

#define NODE_MAX_DRIVES 64
#define NODE_FLOOR_FILE "request-floor"

struct node_server {
    drive *drives[NODE_MAX_DRIVES];
    int ndrives;
    char secret[256];
    char id[DATA_DRIVE_ID_LEN + 1];
    EVP_MAC *poly;
    node_replay *replay;
    int floor_fd;                /* request-floor on the first drive */
    pthread_mutex_t floor_mu;
    _Atomic int64_t newest_ms;   /* the newest date admitted, as written to floor_fd */
};

typedef struct {
    node_server *n;
    char name[48];
    char sig[65];
    shard_out *out;
    EVP_MAC_CTX *tag;
    uint64_t expected;           /* Content-Length: shard bytes and the tag */
    uint64_t got;                /* body bytes seen */
    unsigned char tag_in[SHARD_TAG_LEN];
    bool chunked;                /* no length: the tag is what tail holds at the end */
    shard_tail tail;
    const char *refused;         /* why a 401, for the log */
} node_req;

/* ---- the replay table ------------------------------------------------------------------- */

#define NIL UINT32_MAX
#define WORDS (NODE_REPLAY_WINDOW / 64)

typedef struct {
    unsigned char id[SHARD_SESSION_BYTES];
    uint64_t highest;            /* highest sequence number admitted */
    uint64_t seen[WORDS];        /* bit i: highest - i was admitted */
    int64_t newest_ms;           /* newest date admitted */
    int64_t floor_ms;            /* the table's floor when the entry was made */
    uint32_t prev, next;         /* recency list, most recent first */
    uint32_t chain;              /* next entry in the same hash bucket */
} replay_entry;

struct node_replay {
    pthread_mutex_t mu;
    replay_entry *e;
    uint32_t cap, used;
    uint32_t *bucket;
    uint32_t mask;
    uint32_t head, tail;
    int64_t floor_ms;
};

int node_replay_new(size_t max_sessions, int64_t floor_ms, node_replay **out) {
    if (max_sessions < 1 || max_sessions > (1u << 24)) return CAIRN_EINVAL;
    node_replay *rp = calloc(1, sizeof *rp);
    uint32_t nb = 1;
    while (nb < max_sessions) nb <<= 1;
    if (rp) {
        rp->e = calloc(max_sessions, sizeof *rp->e);
        rp->bucket = malloc(nb * sizeof *rp->bucket);
    }
    if (!rp || !rp->e || !rp->bucket) {
        node_replay_free(rp);
        return CAIRN_ENOMEM;
    }
    for (uint32_t i = 0; i < nb; i++) rp->bucket[i] = NIL;
    pthread_mutex_init(&rp->mu, NULL);
    rp->cap = (uint32_t)max_sessions;
    rp->mask = nb - 1;
    rp->head = rp->tail = NIL;
    rp->floor_ms = floor_ms;
    *out = rp;
    return 0;
}

void node_replay_free(node_replay *rp) {
    if (!rp) return;
    if (rp->cap) pthread_mutex_destroy(&rp->mu);
    free(rp->e);
    free(rp->bucket);
    free(rp);
}

int64_t node_replay_floor(node_replay *rp) {
    pthread_mutex_lock(&rp->mu);
    int64_t f = rp->floor_ms;
    pthread_mutex_unlock(&rp->mu);
    return f;
}

/* Session ids are random and only signed requests reach the table, so their
 * first bytes are a fine hash. */
static uint32_t bucket_of(const node_replay *rp, const unsigned char *id) {
    uint32_t h;
    memcpy(&h, id, sizeof h);
    return h & rp->mask;
}

static void lru_unlink(node_replay *rp, uint32_t i) {
    replay_entry *e = &rp->e[i];
    if (e->prev != NIL) rp->e[e->prev].next = e->next;
    else rp->head = e->next;
    if (e->next != NIL) rp->e[e->next].prev = e->prev;
    else rp->tail = e->prev;
}

static void lru_push_front(node_replay *rp, uint32_t i) {
    replay_entry *e = &rp->e[i];
    e->prev = NIL;
    e->next = rp->head;
    if (rp->head != NIL) rp->e[rp->head].prev = i;
    rp->head = i;
    if (rp->tail == NIL) rp->tail = i;
}

static void chain_unlink(node_replay *rp, uint32_t i) {
    uint32_t *p = &rp->bucket[bucket_of(rp, rp->e[i].id)];
    while (*p != i) {
        assert(*p != NIL);
        p = &rp->e[*p].chain;
    }
    *p = rp->e[i].chain;
}

/* A free slot: a new one, or the least recently used session's, whose
 * newest date becomes the floor (what it admitted can no longer be told
 * apart from what it did not). */
static uint32_t take_slot(node_replay *rp) {
    if (rp->used < rp->cap) return rp->used++;
    uint32_t i = rp->tail;
    assert(i != NIL);
    lru_unlink(rp, i);
    chain_unlink(rp, i);
    if (rp->e[i].newest_ms > rp->floor_ms) rp->floor_ms = rp->e[i].newest_ms;
    return i;
}

/* Moves the window up by d numbers: bit i becomes bit i + d. */
static void window_shift(uint64_t *w, uint64_t d) {
    if (d >= NODE_REPLAY_WINDOW) {
        memset(w, 0, WORDS * sizeof *w);
        return;
    }
    size_t ws = (size_t)(d / 64);
    unsigned bs = (unsigned)(d % 64);
    for (size_t k = WORDS; k-- > 0;) {
        uint64_t v = 0;
        if (k >= ws) {
            v = w[k - ws] << bs;
            if (bs && k > ws) v |= w[k - ws - 1] >> (64 - bs);
        }
        w[k] = v;
    }
}

int node_replay_admit(node_replay *rp, const unsigned char session[SHARD_SESSION_BYTES], uint64_t seq,
                      int64_t date_ms) {
    int rc = 0;
    pthread_mutex_lock(&rp->mu);
    uint32_t i = rp->bucket[bucket_of(rp, session)];
    while (i != NIL && memcmp(rp->e[i].id, session, SHARD_SESSION_BYTES) != 0) i = rp->e[i].chain;
    if (i == NIL) {
        /* The floor this session would be made under: evicting the least
         * recently used session, when the table is full, raises it. */
        int64_t under = rp->floor_ms;
        if (rp->used == rp->cap && rp->e[rp->tail].newest_ms > under) under = rp->e[rp->tail].newest_ms;
        if (date_ms <= under) {
            rc = CAIRN_EAUTH;
            goto out;
        }
        i = take_slot(rp);
        replay_entry *e = &rp->e[i];
        memcpy(e->id, session, SHARD_SESSION_BYTES);
        memset(e->seen, 0, sizeof e->seen);
        e->seen[0] = 1;
        e->highest = seq;
        e->newest_ms = date_ms;
        e->floor_ms = rp->floor_ms;
        uint32_t b = bucket_of(rp, session);
        e->chain = rp->bucket[b];
        rp->bucket[b] = i;
        lru_push_front(rp, i);
        goto out;
    }
    replay_entry *e = &rp->e[i];
    if (date_ms <= e->floor_ms) {
        rc = CAIRN_EAUTH;
        goto out;
    }
    if (seq > e->highest) {
        window_shift(e->seen, seq - e->highest);
        e->seen[0] |= 1;
        e->highest = seq;
    } else {
        uint64_t d = e->highest - seq;
        if (d >= NODE_REPLAY_WINDOW || (e->seen[d / 64] >> (d % 64) & 1)) {
            rc = CAIRN_EAUTH;
            goto out;
        }
        e->seen[d / 64] |= (uint64_t)1 << (d % 64);
    }
    if (date_ms > e->newest_ms) e->newest_ms = date_ms;
    lru_unlink(rp, i);
    lru_push_front(rp, i);
out:
    pthread_mutex_unlock(&rp->mu);
    return rc;
}

/* ---- the server ------------------------------------------------------------------------- */

/* The newest date admitted before this start, from request-floor; 0 if none. */
static int64_t read_floor(int fd) {
    char b[32];
    ssize_t r = pread(fd, b, sizeof b, 0);
    size_t n = 0;
    while (r > 0 && n < (size_t)r && b[n] >= '0' && b[n] <= '9') n++;
    uint64_t v;
    return r > 0 && shard_decimal_parse(b, n, 20, true, &v) && v <= INT64_MAX ? (int64_t)v : 0;
}

/* Records date as the newest admitted: fixed width, one pwrite, no sync. */
static void advance_floor(node_server *n, int64_t date) {
    if (date <= atomic_load(&n->newest_ms)) return;
    pthread_mutex_lock(&n->floor_mu);
    if (date > atomic_load(&n->newest_ms)) {
        atomic_store(&n->newest_ms, date);
        char b[24];
        int len = snprintf(b, sizeof b, "%020lld\n", (long long)date);
        int e = fault_inject(FAULT_NODE_FLOOR); /* a fault-injection site (core.h) */
        if (e) errno = e;
        if (e || pwrite(n->floor_fd, b, (size_t)len, 0) != len)
            log_write(LOG_WARN, NULL, "cannot record the request floor", "path", drive_path(n->drives[0]), "error",
                      strerror(errno), NULL);
    }
    pthread_mutex_unlock(&n->floor_mu);
}

static int open_floor(node_server *n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", drive_path(n->drives[0]), NODE_FLOOR_FILE);
    n->floor_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (n->floor_fd < 0) return CAIRN_EIO;
    int64_t start = time_now_ms(), before = read_floor(n->floor_fd);
    int64_t from = before > start ? before : start;
    atomic_store(&n->newest_ms, from);
    return node_replay_new(NODE_REPLAY_SESSIONS, from, &n->replay);
}

int node_server_new(const char *const *drives, int ndrives, bool fsync, const char *secret, node_server **out,
                    int *cleaned) {
    if (ndrives < 1 || ndrives > NODE_MAX_DRIVES || !secret || strlen(secret) < 16 ||
        strlen(secret) >= sizeof((node_server *)0)->secret)
        return CAIRN_EINVAL;
    node_server *n = calloc(1, sizeof *n);
    if (!n) return CAIRN_ENOMEM;
    n->floor_fd = -1;
    pthread_mutex_init(&n->floor_mu, NULL);
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
    if (rc == 0 && !(n->poly = EVP_MAC_fetch(NULL, "POLY1305", NULL))) rc = CAIRN_ENOMEM;
    if (rc == 0) rc = open_floor(n);
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
    if (n->floor_fd >= 0) close(n->floor_fd);
    node_replay_free(n->replay);
    EVP_MAC_free(n->poly);
    pthread_mutex_destroy(&n->floor_mu);
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

/* Checks the head's signature, date and nonce, and admits the nonce once.
 * 0, CAIRN_ETOOBIG (target too long), CAIRN_ENOMEM (no memory to check the
 * signature with) or CAIRN_EAUTH with *why set. */
static int authenticate(node_server *n, http_req *r, char sig_out[65], const char **why) {
    const char *date = http_header(r, "x-cairn-date");
    const char *nonce = http_header(r, "x-cairn-nonce");
    const char *sig = http_header(r, "x-cairn-signature");
    uint64_t t, seq;
    unsigned char session[SHARD_SESSION_BYTES];
    if (!date || !nonce || !sig || strlen(sig) != 64 || !shard_decimal_parse(date, strlen(date), 15, false, &t) ||
        shard_nonce_parse(nonce, session, &seq) != 0) {
        *why = "missing or malformed date, nonce or signature";
        return CAIRN_EAUTH;
    }
    int64_t now = time_now_ms();
    if ((int64_t)t < now - NODE_CLOCK_WINDOW_MS || (int64_t)t > now + NODE_CLOCK_WINDOW_MS) {
        *why = "date outside the clock window";
        return CAIRN_EAUTH;
    }
    char target[SHARD_MAX_TARGET + 1];
    int tl = snprintf(target, sizeof target, "%s%s%s", r->raw_path, r->raw_query[0] ? "?" : "", r->raw_query);
    if (tl < 0 || tl >= (int)sizeof target) return CAIRN_ETOOBIG;
    char want[65];
    /* The framing is signed: "chunked" where the length would be. */
    int64_t length = r->content_length < 0 && r->chunked_transfer ? SHARD_LENGTH_CHUNKED : r->content_length;
    int rc = shard_sign(n->secret, n->id, r->method, target, date, nonce, length, want);
    if (rc != 0) return rc == CAIRN_ENOMEM ? rc : CAIRN_ETOOBIG;
    if (CRYPTO_memcmp(want, sig, 64) != 0) {
        *why = "wrong signature";
        return CAIRN_EAUTH;
    }
    /* Only now, signed: the table never holds what an outsider made up. */
    rc = node_replay_admit(n->replay, session, seq, (int64_t)t);
    if (rc != 0) {
        *why = "replayed, or older than what the node remembers";
        return rc;
    }
    advance_floor(n, (int64_t)t);
    memcpy(sig_out, sig, 65);
    return 0;
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
        if (head) http_respond_stream(r, status, (uint64_t)len, NULL, NULL, NULL);
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
            if (ev.v[i].age_ms < ev.v[u - 1].age_ms) ev.v[u - 1].age_ms = ev.v[i].age_ms;
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
        buf_printf(&b, "%s{\"name\":\"%s\",\"age_s\":%lld,\"age_ms\":%lld}", i ? "," : "", ev.v[i].name,
                   (long long)(ev.v[i].age_ms / 1000), (long long)ev.v[i].age_ms);
    buf_printf(&b, "],\"truncated\":%s}\n", truncated ? "true" : "false");
    free(ev.v);
    http_add_header(r, "Content-Type", "application/json");
    size_t len = b.len;
    http_respond_take(r, 200, buf_steal(&b), len);
}

static void begin_put(node_server *n, http_req *r, node_req *q, const char *name) {
    r->api = "ShardPut";
    q->chunked = r->content_length < 0 && r->chunked_transfer;
    if (r->content_length < 0 && !q->chunked) return reply(r, 411, "Content-Length or chunked body required\n");
    if (!q->chunked && r->content_length < SHARD_TAG_LEN) return reply(r, 400, "body shorter than its tag\n");
    q->expected = q->chunked ? 0 : (uint64_t)r->content_length;
    if (!(q->tag = shard_tag_new(n->poly, n->secret, q->sig))) return reply(r, 503, "out of memory\n");
    int rc = drive_create(home_drive(n, name), name, q->chunked ? DRIVE_SIZE_UNKNOWN : q->expected - SHARD_TAG_LEN,
                          &q->out);
    if (rc == CAIRN_ENOSPC) return reply(r, 507, "drive full\n");
    if (rc != 0) return reply(r, 500, "cannot create shard\n");
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
        http_add_header(r, "X-Cairn-Node-Id", n->id); /* what gateways sign for */
        return reply(r, 200, "ok\n");
    }
    int auth = authenticate(n, r, q->sig, &q->refused);
    if (auth == CAIRN_ETOOBIG) {
        r->api = "Unauthorized";
        return reply(r, 414, "request target too long\n");
    }
    if (auth == CAIRN_ENOMEM) return reply(r, 503, "out of memory\n");
    if (auth != 0) {
        r->api = "Unauthorized";
        return reply(r, 401, "bad, missing, stale or replayed cluster signature\n");
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
    if (put) return begin_put(n, r, q, name);
    reply(r, 405, "method not allowed\n");
}

static void drop_shard(node_req *q) {
    if (q->out) drive_abort(q->out);
    q->out = NULL;
}

/* Shard bytes to the drive and the tag. */
static int put_bytes(node_req *q, const struct iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt; i++) EVP_MAC_update(q->tag, iov[i].iov_base, iov[i].iov_len);
    int rc = drive_append(q->out, iov, iovcnt);
    if (rc == 0) drive_writeback(q->out);
    return rc;
}

static void body_failed(http_req *r, node_req *q, int rc) {
    drop_shard(q);
    reply(r, rc == CAIRN_ENOSPC ? 507 : 500, rc == CAIRN_ENOSPC ? "drive full\n" : "write failed\n");
}

/* Chunked: everything but the newest 16 bytes is shard bytes. */
static void on_body_chunked(http_req *r, node_req *q, const char *data, size_t len) {
    unsigned char rel[SHARD_TAG_LEN];
    struct iovec iov[2];
    int cnt = shard_tail_feed(&q->tail, data, len, rel, iov);
    int rc = cnt ? put_bytes(q, iov, cnt) : 0;
    if (rc != 0) return body_failed(r, q, rc);
    q->got += len;
}

/* With a length, the first expected - SHARD_TAG_LEN bytes are the shard (to
 * the drive and the tag), the rest is the tag the gateway computed. */
static void on_body(void *app, http_req *r, const char *data, size_t len) {
    (void)app;
    node_req *q = r->ctx;
    if (!q || !q->out) return;
    if (q->chunked) return on_body_chunked(r, q, data, len);
    if (len > q->expected - q->got) { /* more than announced: the server never passes that on */
        drop_shard(q);
        return reply(r, 400, "body longer than Content-Length\n");
    }
    uint64_t shard_len = q->expected - SHARD_TAG_LEN;
    size_t take = q->got < shard_len ? (size_t)(shard_len - q->got < len ? shard_len - q->got : len) : 0;
    if (take) {
        struct iovec iov = {(void *)(uintptr_t)data, take};
        int rc = put_bytes(q, &iov, 1);
        if (rc != 0) return body_failed(r, q, rc);
    }
    if (len > take) memcpy(q->tag_in + (q->got + take - shard_len), data + take, len - take);
    q->got += len;
}

static void on_end(void *app, http_req *r) {
    (void)app;
    node_req *q = r->ctx;
    /* begin answered every request but a PUT it took: here without a shard
     * being written, that answer could not be made (no memory for it). */
    if (!q || !q->out) return reply(r, 500, "out of memory\n");
    if (q->chunked) {
        /* The zero chunk came: the bytes held back are the tag. */
        if (q->tail.n < SHARD_TAG_LEN) {
            drop_shard(q);
            return reply(r, 400, "body shorter than its tag\n");
        }
        memcpy(q->tag_in, q->tail.b, SHARD_TAG_LEN);
    } else if (q->got != q->expected) {
        drop_shard(q);
        return reply(r, 400, "incomplete body\n");
    }
    unsigned char tag[SHARD_TAG_LEN + 16];
    size_t tl = 0;
    if (!EVP_MAC_final(q->tag, tag, &tl, sizeof tag) || tl != SHARD_TAG_LEN ||
        CRYPTO_memcmp(tag, q->tag_in, SHARD_TAG_LEN) != 0) {
        drop_shard(q);
        q->refused = "wrong body tag";
        return reply(r, 401, "bad, missing, stale or replayed cluster signature\n");
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
    if (q) {
        drop_shard(q); /* a body that never completed */
        EVP_MAC_CTX_free(q->tag);
    }
    /* Refusals are worth an operator's eye: an attack, a clock out of sync. */
    const char *refused = q && q->refused ? q->refused : "";
    log_level lvl = http_status(r) >= 500 ? LOG_WARN : *refused ? LOG_INFO : LOG_DEBUG;
    log_write(lvl, r->request_id, "request", "method", r->method, "path", r->raw_path, "api", r->api, "status",
              log_int(st, http_status(r)), "bytes_in", log_int(bi, (long long)r->bytes_in), "duration_ms", dur,
              "refused", refused, "error", ok ? "" : "connection closed before the response was sent", NULL);
    free(q);
    r->ctx = NULL;
}

static const http_handler handler = {on_begin, on_body, on_end, on_done};

const http_handler *node_http_handler(void) { return &handler; }
