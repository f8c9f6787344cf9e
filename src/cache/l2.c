/*
 * l2.c — the Redis tier and the invalidation channel (l2.h).
 *
 * Commands go over a small pool of blocking hiredis connections, each with
 * the command timeout set, so no caller waits on Redis longer than
 * timeout_ms (plus the connect, also bounded).  A connection that failed is
 * thrown away.  The subscriber owns one more connection and polls its socket
 * together with a pipe that stop writes to, so l2_free never waits on Redis.
 */
#include "cache/l2.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_POOL 64
#define PING_MS 1000          /* the subscriber pings this often when idle... */
#define DEAD_MS 3000          /* ...and gives the connection up after this much silence */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF = 2 };

struct l2 {
    char host[256];
    int port;
    char password[256];
    int db;
    char prefix[64];
    int timeout_ms, breaker_ms, pool_max;
    l2_options o;

    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t cv;         /* applied or channel_up changed */
    redisContext *idle[MAX_POOL];
    int nidle;
    int breaker;
    int64_t open_until_ms;
    bool channel_up;
    uint64_t applied;
    char boot[33];             /* the Redis instance's token, as the subscriber found it */
    l2_stats st;

    pthread_t sub;
    bool sub_started;
    int stop_pipe[2];
    bool stopping;
    bool rejoin;               /* the instance lost our boot token (a flush): subscribe anew */

    /* Coalesced reads of seq (l2_sync): fetches are numbered as they start;
     * a caller waits for one that started after it arrived. */
    pthread_cond_t sync_cv;
    uint64_t sync_started, sync_done;
    bool sync_inflight;
    int sync_rc;
    uint64_t sync_seq, sync_epoch;
    char sync_boot[33];
};

static int64_t mono_ms(void) { return time_mono_ns() / 1000000; }

int l2_parse_url(const char *url, char *host, size_t hostlen, int *port, char *password, size_t pwlen, int *db,
                 char *why, size_t whylen) {
    const char *p = url;
    *port = 6379;
    *db = 0;
    password[0] = '\0';
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(why, whylen, "redis_url must start with redis://");
        return CAIRN_EINVAL;
    }
    p += 8;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p; /* redis://:PASSWORD@ or redis://PASSWORD@ */
        size_t n = (size_t)(at - pw);
        if (n >= pwlen) {
            snprintf(why, whylen, "the password in redis_url is too long");
            return CAIRN_EINVAL;
        }
        memcpy(password, pw, n);
        password[n] = '\0';
        p = at + 1;
    }
    size_t hn = strcspn(p, ":/");
    if (hn == 0 || hn >= hostlen) {
        snprintf(why, whylen, "redis_url needs a host");
        return CAIRN_EINVAL;
    }
    memcpy(host, p, hn);
    host[hn] = '\0';
    p += hn;
    if (*p == ':') {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535 || (*end && *end != '/')) {
            snprintf(why, whylen, "bad port in redis_url");
            return CAIRN_EINVAL;
        }
        *port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || v < 0 || v > 1000000) {
            snprintf(why, whylen, "bad database number in redis_url");
            return CAIRN_EINVAL;
        }
        *db = (int)v;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(why, whylen, "unexpected text in redis_url after the host");
        return CAIRN_EINVAL;
    }
    return 0;
}

static struct timeval tv_of(int ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* Runs one command on c; NULL when the connection failed (c->err set) or
 * Redis answered with an error (then *rc says which). */
static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens, int *rc) {
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    if (!rep) {
        *rc = CAIRN_EIO;
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        log_write(LOG_WARN, NULL, "redis answered with an error", "error", rep->str, NULL);
        freeReplyObject(rep);
        *rc = CAIRN_EIO;
        return NULL;
    }
    *rc = 0;
    return rep;
}

static redisContext *connect_redis(l2 *r) {
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv_of(r->timeout_ms));
    if (!c) return NULL;
    if (c->err || redisSetTimeout(c, tv_of(r->timeout_ms)) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    int rc;
    if (r->password[0]) {
        const char *argv[] = {"AUTH", r->password};
        redisReply *rep = command(c, 2, argv, NULL, &rc);
        if (!rep) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    if (r->db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", r->db);
        const char *argv[] = {"SELECT", dbs};
        redisReply *rep = command(c, 2, argv, NULL, &rc);
        if (!rep) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    return c;
}

/* ---- the breaker and the pool ---------------------------------------------------------- */

/* 0: go ahead (maybe as the half-open probe); CAIRN_EBUSY: the breaker is open. */
static int breaker_enter(l2 *r) {
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (r->breaker == BREAKER_OPEN && mono_ms() >= r->open_until_ms) r->breaker = BREAKER_HALF; /* this caller probes */
    else if (r->breaker != BREAKER_CLOSED) rc = CAIRN_EBUSY;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void breaker_result(l2 *r, bool ok) {
    pthread_mutex_lock(&r->mu);
    if (ok) {
        if (r->breaker != BREAKER_CLOSED) log_write(LOG_INFO, NULL, "redis answers again: cache breaker closed", NULL);
        r->breaker = BREAKER_CLOSED;
    } else {
        if (r->breaker != BREAKER_OPEN) {
            char ms[24];
            log_write(LOG_WARN, NULL, "redis failed: cache breaker open, redis not tried for a while", "breaker_ms",
                      log_int(ms, r->breaker_ms), NULL);
            r->st.breaker_opens++;
        }
        r->st.errors++;
        r->breaker = BREAKER_OPEN;
        r->open_until_ms = mono_ms() + r->breaker_ms;
    }
    pthread_mutex_unlock(&r->mu);
}

static redisContext *checkout(l2 *r) {
    pthread_mutex_lock(&r->mu);
    redisContext *c = r->nidle > 0 ? r->idle[--r->nidle] : NULL;
    pthread_mutex_unlock(&r->mu);
    return c ? c : connect_redis(r);
}

static void checkin(l2 *r, redisContext *c) {
    pthread_mutex_lock(&r->mu);
    if (r->nidle < r->pool_max) {
        r->idle[r->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    if (c) redisFree(c);
}

/* One command through the breaker and the pool.  The caller frees the reply. */
static int run(l2 *r, int argc, const char **argv, const size_t *lens, redisReply **out) {
    *out = NULL;
    int rc = breaker_enter(r);
    if (rc != 0) return rc;
    redisContext *c = checkout(r);
    if (!c) {
        breaker_result(r, false);
        return CAIRN_EIO;
    }
    *out = command(c, argc, argv, lens, &rc);
    if (!*out && c->err) {
        redisFree(c); /* the connection is broken: never reused */
        breaker_result(r, false);
        return rc;
    }
    checkin(r, c);
    breaker_result(r, true);
    return rc;
}

/* ---- names ------------------------------------------------------------------------------ */

static void hex_append(buf_t *b, const void *key, size_t klen) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *k = key;
    if (buf_reserve(b, klen * 2) != 0) return;
    for (size_t i = 0; i < klen; i++) {
        b->data[b->len++] = digits[k[i] >> 4];
        b->data[b->len++] = digits[k[i] & 15];
    }
    b->data[b->len] = '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static uint64_t reply_u64(const redisReply *rep) {
    if (!rep) return 0;
    if (rep->type == REDIS_REPLY_INTEGER) return (uint64_t)rep->integer;
    if (rep->type == REDIS_REPLY_STRING) return strtoull(rep->str, NULL, 10);
    return 0;
}

/* ---- reads and writes ------------------------------------------------------------------- */

static int sync_boot(l2 *r, uint64_t *seq, uint64_t *epoch, char boot[33]) {
    buf_t k[3];
    for (int i = 0; i < 3; i++) buf_init(&k[i]);
    buf_printf(&k[0], "%sseq", r->prefix);
    buf_printf(&k[1], "%sepoch", r->prefix);
    buf_printf(&k[2], "%sboot", r->prefix);
    const char *argv[] = {"MGET", k[0].data, k[1].data, k[2].data};
    redisReply *rep;
    int rc = k[0].oom || k[1].oom || k[2].oom ? CAIRN_ENOMEM : run(r, 4, argv, NULL, &rep);
    for (int i = 0; i < 3; i++) buf_free(&k[i]);
    if (rc != 0) return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) rc = CAIRN_EIO;
    else {
        *seq = reply_u64(rep->element[0]);
        *epoch = reply_u64(rep->element[1]);
        const redisReply *b = rep->element[2];
        snprintf(boot, 33, "%s", b->type == REDIS_REPLY_STRING ? b->str : "");
    }
    freeReplyObject(rep);
    return rc;
}

/* Concurrent callers share a read of seq, but only one that began after
 * they asked: one a fetch already under way when a caller arrives cannot
 * answer for it (a write acknowledged in between would be missed), so that
 * caller waits for the next, which one of the waiters sends.  Many requests
 * at once cost a few round trips, not one each. */
int l2_sync(l2 *r, uint64_t *seq, uint64_t *epoch) {
    pthread_mutex_lock(&r->mu);
    uint64_t target = r->sync_started + 1;
    while (r->sync_done < target) {
        if (r->sync_inflight) {
            pthread_cond_wait(&r->sync_cv, &r->mu);
            continue;
        }
        r->sync_inflight = true;
        uint64_t id = ++r->sync_started;
        pthread_mutex_unlock(&r->mu);
        uint64_t s = 0, e = 0;
        char b[33] = "";
        int frc = sync_boot(r, &s, &e, b);
        pthread_mutex_lock(&r->mu);
        r->sync_done = id;
        r->sync_rc = frc;
        r->sync_seq = s;
        r->sync_epoch = e;
        memcpy(r->sync_boot, b, sizeof b);
        r->sync_inflight = false;
        pthread_cond_broadcast(&r->sync_cv);
    }
    int rc = r->sync_rc;
    *seq = r->sync_seq;
    *epoch = r->sync_epoch;
    if (rc != 0) {
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    /* A Redis that restarted (or was flushed) since the subscriber joined it
     * is not the one whose messages were applied; nor is one whose counter
     * is below what was applied: it went backwards (evicted: see
     * docs/deploy.md on maxmemory-policy). */
    bool same = r->channel_up && !strcmp(r->sync_boot, r->boot) && *seq >= r->applied;
    if (r->channel_up && !same) r->rejoin = true;
    pthread_mutex_unlock(&r->mu);
    return same ? 0 : CAIRN_ECONFLICT;
}

bool l2_wait_applied(l2 *r, uint64_t seq, int wait_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (r->channel_up && r->applied < seq && !r->stopping)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) break;
    bool ok = r->channel_up && r->applied >= seq;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

bool l2_channel_up(l2 *r) {
    pthread_mutex_lock(&r->mu);
    bool up = r->channel_up;
    pthread_mutex_unlock(&r->mu);
    return up;
}

int l2_get(l2 *r, const void *key, size_t klen, uint64_t epoch, buf_t *val, bool *found, uint64_t *gen) {
    *found = false;
    *gen = 0;
    buf_reset(val);
    buf_t c, g;
    buf_init(&c);
    buf_init(&g);
    buf_printf(&c, "%sc:%llu:", r->prefix, (unsigned long long)epoch);
    hex_append(&c, key, klen);
    buf_printf(&g, "%sg:", r->prefix);
    hex_append(&g, key, klen);
    const char *argv[] = {"MGET", c.data, g.data};
    size_t lens[] = {4, c.len, g.len};
    redisReply *rep = NULL;
    int rc = c.oom || g.oom ? CAIRN_ENOMEM : run(r, 3, argv, lens, &rep);
    buf_free(&c);
    buf_free(&g);
    if (rc != 0) return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) rc = CAIRN_EIO;
    else {
        *gen = reply_u64(rep->element[1]);
        const redisReply *v = rep->element[0];
        if (v->type == REDIS_REPLY_STRING) {
            buf_append(val, v->str, v->len);
            if (val->oom) rc = CAIRN_ENOMEM;
            else *found = true;
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* Stores a value only if nothing invalidated the key (or flushed) since its
 * generation and epoch were read; a generation's lifetime outlasts its values. */
static const char fill_script[] =
    "local p, k = ARGV[1], ARGV[2] "
    "local g = redis.call('GET', p .. 'g:' .. k) or '0' "
    "if g ~= ARGV[4] then return 0 end "
    "if (redis.call('GET', p .. 'epoch') or '0') ~= ARGV[3] then return 0 end "
    "redis.call('SET', p .. 'c:' .. ARGV[3] .. ':' .. k, ARGV[6], 'PX', ARGV[5]) "
    "if g ~= '0' then redis.call('PEXPIRE', p .. 'g:' .. k, ARGV[7]) end "
    "return 1";

/* Invalidates the keys ARGV[3..] (hex) or, with none, everything: every
 * key's generation advances and its value goes, seq advances, and the
 * message carries the new seq. */
static const char invalidate_script[] =
    "local p = ARGV[1] "
    "if #ARGV == 2 then "
    "  redis.call('INCR', p .. 'epoch') "
    "  local s = redis.call('INCR', p .. 'seq') "
    "  redis.call('PUBLISH', p .. 'inval', s .. ' *') "
    "  return s "
    "end "
    "local e = redis.call('GET', p .. 'epoch') or '0' "
    "for i = 3, #ARGV do "
    "  local g = p .. 'g:' .. ARGV[i] "
    "  redis.call('INCR', g) "
    "  redis.call('PEXPIRE', g, ARGV[2]) "
    "  redis.call('DEL', p .. 'c:' .. e .. ':' .. ARGV[i]) "
    "end "
    "local s = redis.call('INCR', p .. 'seq') "
    "redis.call('PUBLISH', p .. 'inval', s .. ' ' .. table.concat(ARGV, ' ', 3)) "
    "return s";

/* A generation outlives every value filled under it. */
static int64_t gen_ttl_ms(int64_t ttl_ms) { return ttl_ms * 2 + 60000; }

int l2_fill(l2 *r, const void *key, size_t klen, uint64_t epoch, uint64_t gen, const void *val, size_t vlen,
            int64_t ttl_ms, bool *stored) {
    *stored = false;
    buf_t hk;
    buf_init(&hk);
    hex_append(&hk, key, klen);
    char es[24], gs[24], ts[24], gts[24];
    snprintf(es, sizeof es, "%llu", (unsigned long long)epoch);
    snprintf(gs, sizeof gs, "%llu", (unsigned long long)gen);
    snprintf(ts, sizeof ts, "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    snprintf(gts, sizeof gts, "%lld", (long long)gen_ttl_ms(ttl_ms));
    const char *argv[] = {"EVAL", fill_script, "0", r->prefix, hk.data, es, gs, ts, val, gts};
    size_t lens[] = {4, strlen(fill_script), 1, strlen(r->prefix), hk.len, strlen(es), strlen(gs), strlen(ts), vlen,
                     strlen(gts)};
    redisReply *rep = NULL;
    int rc = hk.oom ? CAIRN_ENOMEM : run(r, 10, argv, lens, &rep);
    buf_free(&hk);
    if (rc != 0) return rc;
    *stored = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    pthread_mutex_lock(&r->mu);
    if (*stored) r->st.fills++;
    else r->st.stale_fills++;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int l2_invalidate(l2 *r, const void *const *keys, const size_t *klens, int n) {
    int argc = 5 + n;
    const char **argv = calloc((size_t)argc, sizeof *argv);
    size_t *lens = calloc((size_t)argc, sizeof *lens);
    buf_t hex;
    buf_init(&hex);
    size_t *offs = calloc((size_t)n + 1, sizeof *offs);
    int rc = argv && lens && offs ? 0 : CAIRN_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++) {
        offs[i] = hex.len;
        hex_append(&hex, keys[i], klens[i]);
        buf_putc(&hex, '\0');
    }
    if (rc == 0 && hex.oom) rc = CAIRN_ENOMEM;
    redisReply *rep = NULL;
    if (rc == 0) {
        char gts[24];
        snprintf(gts, sizeof gts, "%lld", (long long)gen_ttl_ms(3600 * 1000));
        argv[0] = "EVAL";
        argv[1] = invalidate_script;
        argv[2] = "0";
        argv[3] = r->prefix;
        argv[4] = gts;
        for (int i = 0; i < n; i++) argv[5 + i] = hex.data + offs[i];
        for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
        rc = run(r, argc, argv, lens, &rep);
    }
    free(argv);
    free(lens);
    free(offs);
    buf_free(&hex);
    if (rep) freeReplyObject(rep);
    if (rc == 0) {
        pthread_mutex_lock(&r->mu);
        if (n) r->st.invalidations += (uint64_t)n;
        else r->st.flushes++;
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

/* ---- the subscriber ----------------------------------------------------------------------- */

/* Applies one published message: "SEQ HEX HEX..." or "SEQ *". */
void l2_apply_message(l2 *r, const char *msg, size_t len) {
    char *end;
    uint64_t seq = strtoull(msg, &end, 10);
    const char *p = end, *stop = msg + len;
    unsigned char key[2048];
    while (p < stop) {
        while (p < stop && *p == ' ') p++;
        const char *t = p;
        while (p < stop && *p != ' ') p++;
        size_t tl = (size_t)(p - t);
        if (tl == 1 && *t == '*') {
            r->o.flush(r->o.ud);
        } else if (tl > 0) {
            if (tl % 2 || tl / 2 > sizeof key) { /* not one of ours: trust nothing */
                r->o.flush(r->o.ud);
                continue;
            }
            bool bad = false;
            for (size_t i = 0; i < tl / 2; i++) {
                int hi = hex_value(t[2 * i]), lo = hex_value(t[2 * i + 1]);
                if (hi < 0 || lo < 0) bad = true;
                key[i] = (unsigned char)(hi << 4 | lo);
            }
            if (bad) r->o.flush(r->o.ud);
            else r->o.invalidate(r->o.ud, key, tl / 2);
        }
    }
    pthread_mutex_lock(&r->mu);
    r->st.messages++;
    if (seq > r->applied) r->applied = seq;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void set_channel(l2 *r, bool up, const char *boot, uint64_t seq) {
    pthread_mutex_lock(&r->mu);
    bool was = r->channel_up;
    r->channel_up = up;
    if (up) {
        snprintf(r->boot, sizeof r->boot, "%s", boot);
        r->applied = seq;
    } else if (was) {
        r->st.channel_drops++;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (up != was) {
        log_write(up ? LOG_INFO : LOG_WARN, NULL,
                  up ? "cache invalidation channel up: the L1 cache is used again"
                     : "cache invalidation channel lost: the L1 cache is flushed and bypassed until it is back",
                  NULL);
        r->o.channel(r->o.ud, up);
    }
}

/* Waits ms or until stop; true when stopping. */
static bool sleep_or_stop(l2 *r, int ms) {
    struct pollfd p = {.fd = r->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

/* Makes sure the instance has a boot token (the first subscriber sets one)
 * and returns it with the seq, after the subscription is in place. */
static int join_instance(l2 *r, uint64_t *seq, char boot[33]) {
    unsigned char raw[16];
    char tok[33];
    rand_bytes(raw, sizeof raw);
    for (int i = 0; i < 16; i++) snprintf(tok + 2 * i, 3, "%02x", raw[i]);
    buf_t k;
    buf_init(&k);
    buf_printf(&k, "%sboot", r->prefix);
    const char *argv[] = {"SET", k.data, tok, "NX"};
    redisReply *rep = NULL;
    int rc = k.oom ? CAIRN_ENOMEM : run(r, 4, argv, NULL, &rep);
    buf_free(&k);
    if (rep) freeReplyObject(rep);
    uint64_t epoch;
    return rc == 0 ? sync_boot(r, seq, &epoch, boot) : rc;
}

static bool send_ping(redisContext *c) {
    if (redisAppendCommand(c, "PING") != REDIS_OK) return false;
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK) return false;
    return true;
}

/* Reads the subscribed connection until it fails or stop. */
static void listen_loop(l2 *r, redisContext *c) {
    int64_t last_rx = mono_ms(), last_ping = mono_ms();
    for (;;) {
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = r->stop_pipe[0], .events = POLLIN}};
        int n = poll(p, 2, PING_MS);
        if (n < 0 && errno != EINTR) return;
        if (p[1].revents) return;
        pthread_mutex_lock(&r->mu);
        bool rejoin = r->rejoin;
        r->rejoin = false;
        pthread_mutex_unlock(&r->mu);
        if (rejoin) {
            log_write(LOG_WARN, NULL, "redis was flushed or replaced under the cache: subscribing anew", NULL);
            return;
        }
        int64_t now = mono_ms();
        if (p[0].revents) {
            if (redisBufferRead(c) != REDIS_OK) return;
            void *reply;
            for (;;) {
                if (redisGetReplyFromReader(c, &reply) != REDIS_OK) return;
                if (!reply) break;
                redisReply *rep = reply;
                last_rx = now;
                if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 && rep->element[0]->type == REDIS_REPLY_STRING &&
                    !strcmp(rep->element[0]->str, "message") && rep->element[2]->type == REDIS_REPLY_STRING)
                    l2_apply_message(r, rep->element[2]->str, rep->element[2]->len);
                freeReplyObject(rep);
            }
        }
        if (now - last_rx > DEAD_MS) {
            log_write(LOG_WARN, NULL, "redis subscriber heard nothing, not even a ping's answer: reconnecting", NULL);
            return;
        }
        if (now - last_ping >= PING_MS) {
            if (!send_ping(c)) return;
            last_ping = now;
        }
    }
}

static void *subscriber_main(void *arg) {
    l2 *r = arg;
    int backoff = BACKOFF_MIN_MS;
    buf_t chan;
    buf_init(&chan);
    buf_printf(&chan, "%sinval", r->prefix);
    while (!sleep_or_stop(r, 0)) {
        redisContext *c = connect_redis(r);
        redisReply *rep = NULL;
        int rc = CAIRN_EIO;
        if (c) {
            const char *argv[] = {"SUBSCRIBE", chan.data};
            rep = command(c, 2, argv, NULL, &rc);
        }
        uint64_t seq = 0;
        char boot[33] = "";
        /* Subscribed first, then the seq: a message published in between is
         * applied twice at worst, never missed. */
        if (rep && rep->type == REDIS_REPLY_ARRAY && join_instance(r, &seq, boot) == 0 && boot[0]) {
            freeReplyObject(rep);
            rep = NULL;
            backoff = BACKOFF_MIN_MS;
            set_channel(r, true, boot, seq);
            listen_loop(r, c);
            set_channel(r, false, "", 0);
        }
        if (rep) freeReplyObject(rep);
        if (c) redisFree(c);
        if (sleep_or_stop(r, backoff)) break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    buf_free(&chan);
    return NULL;
}

/* ---- life ------------------------------------------------------------------------------------ */

int l2_new(const l2_options *o, l2 **out, char *why, size_t whylen) {
    *out = NULL;
    l2 *r = calloc(1, sizeof *r);
    if (!r) return CAIRN_ENOMEM;
    int rc = l2_parse_url(o->url ? o->url : "", r->host, sizeof r->host, &r->port, r->password, sizeof r->password,
                          &r->db, why, whylen);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->o = *o;
    r->o.url = NULL;
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 250;
    r->breaker_ms = o->breaker_ms > 0 ? o->breaker_ms : 1000;
    r->pool_max = o->pool > 0 ? (o->pool < MAX_POOL ? o->pool : MAX_POOL) : 4;
    snprintf(r->prefix, sizeof r->prefix, "%s", o->prefix && o->prefix[0] ? o->prefix : "cairn:");
    r->stop_pipe[0] = r->stop_pipe[1] = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_cond_init(&r->sync_cv, NULL);
    if (o->subscribe) {
        if (pipe(r->stop_pipe) != 0 || pthread_create(&r->sub, NULL, subscriber_main, r) != 0) {
            snprintf(why, whylen, "cannot start the redis subscriber");
            l2_free(r);
            return CAIRN_ENOMEM;
        }
        r->sub_started = true;
    }
    *out = r;
    return 0;
}

void l2_free(l2 *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->stop_pipe[1] >= 0) {
        ssize_t w = write(r->stop_pipe[1], "x", 1);
        (void)w;
    }
    if (r->sub_started) pthread_join(r->sub, NULL);
    for (int i = 0; i < 2; i++)
        if (r->stop_pipe[i] >= 0) close(r->stop_pipe[i]);
    for (int i = 0; i < r->nidle; i++) redisFree(r->idle[i]);
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->sync_cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void l2_stats_get(l2 *r, l2_stats *out) {
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    out->breaker = r->breaker;
    out->channel_up = r->channel_up;
    out->applied = r->applied;
    pthread_mutex_unlock(&r->mu);
}

void l2_count(l2 *r, bool hit) {
    pthread_mutex_lock(&r->mu);
    if (hit) r->st.hits++;
    else r->st.misses++;
    pthread_mutex_unlock(&r->mu);
}
