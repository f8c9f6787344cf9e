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
#define MAX_PEERS 64          /* other gateways whose acknowledgements are remembered */
#define ACK_POLL_MS 2         /* a writer without the channel polls the acknowledgements this often */

enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF = 2 };

struct l2 {
    redis_target target;       /* redis_url, read */
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

    /* Leases (lease_ms > 0; l2.h).  This gateway's id, and its last two
     * leases as it measures them: valid until (monotonic ms), and the seq
     * it must have applied before the L1 answers under that lease. */
    int lease_ms;
    char gid[33];
    /* The first token of this gateway's invalidation messages, "00" and the
     * gid: no cache key starts with a zero byte, so a gateway that does not
     * know the token invalidates a key that never exists. */
    char sender[35];
    int64_t lease_until, prev_until;
    uint64_t lease_need, prev_need;
    uint64_t epoch_known;      /* the L2 epoch, as renewals and flush messages told */
    uint64_t acked_sent;       /* the last seq this gateway acknowledged */
    struct {
        char gid[33];
        uint64_t seq;
    } peers[MAX_PEERS];        /* what other gateways acknowledged, as heard */
    int npeers, next_peer;
    bool paused;               /* tests: the subscriber stops reading its messages */

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

static redisContext *connect_redis(l2 *r) { return redis_open(&r->target, r->timeout_ms); }

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
    struct timespec until = time_deadline(CLOCK_REALTIME, wait_ms);
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

/* Invalidates the keys ARGV[4..] (hex) or, with none, everything (the
 * epoch advances): every key's generation advances and its value goes, seq
 * advances, and the message carries the new seq ("SEQ HEX..." or "SEQ
 * *EPOCH").  With leases (ARGV[3] > 0) it also answers what the writer must
 * wait for: {seq, young, GID, REMAINING, ...}: every gateway holding a lease
 * now and the milliseconds its lease has left, and young > 0 when this Redis
 * came up (or was flushed) less than a lease ago, so a gateway may still
 * trust a lease it took from the instance before (expired ones are dropped
 * here). */
static const char invalidate_script[] =
    "local p, L = ARGV[1], tonumber(ARGV[3]) "
    "local msg "
    "if #ARGV == 4 then "
    "  msg = ' *' .. redis.call('INCR', p .. 'epoch') "
    "else "
    "  local e = redis.call('GET', p .. 'epoch') or '0' "
    "  for i = 5, #ARGV do "
    "    local g = p .. 'g:' .. ARGV[i] "
    "    redis.call('INCR', g) "
    "    redis.call('PEXPIRE', g, ARGV[2]) "
    "    redis.call('DEL', p .. 'c:' .. e .. ':' .. ARGV[i]) "
    "  end "
    "  msg = ' ' .. table.concat(ARGV, ' ', 4) "
    "end "
    "local s = redis.call('INCR', p .. 'seq') "
    "if L == 0 then "
    "  redis.call('PUBLISH', p .. 'inval', s .. msg) "
    "  return {s} "
    "end "
    /* A counter below what a gateway acknowledged went backwards (a key
     * evicted or set by hand): it moves on past every acknowledgement, or
     * an old acknowledgement would answer for this write. */
    "local a = redis.call('HVALS', p .. 'acks') "
    "for i = 1, #a do "
    "  local v = tonumber(a[i]) or 0 "
    "  if v >= s then s = v + 1 end "
    "end "
    "redis.call('SET', p .. 'seq', s) "
    "redis.call('PUBLISH', p .. 'inval', s .. msg) "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local young = 0 "
    "if not redis.call('GET', p .. 'boot') then young = L "
    "else "
    "  local bt = tonumber(redis.call('GET', p .. 'boot_time') or '0') or 0 "
    "  if bt + L > now then young = bt + L - now end "
    "end "
    "local out = {s, young} "
    "local h = redis.call('HGETALL', p .. 'leases') "
    "for i = 1, #h, 2 do "
    "  local x = tonumber(h[i + 1]) or 0 "
    "  if x > now then out[#out + 1] = h[i]; out[#out + 1] = x - now "
    "  else redis.call('HDEL', p .. 'leases', h[i]); redis.call('HDEL', p .. 'acks', h[i]) end "
    "end "
    "return out";

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

/* What other gateways acknowledged: the seq gid reported last (0: none heard). */
static uint64_t peer_acked(const l2 *r, const char *gid) {
    for (int i = 0; i < r->npeers; i++)
        if (!strcmp(r->peers[i].gid, gid)) return r->peers[i].seq;
    return 0;
}

/* Records gid's acknowledgement of seq (r->mu held). */
static void peer_heard(l2 *r, const char *gid, uint64_t seq) {
    if (!strcmp(gid, r->gid)) return;
    for (int i = 0; i < r->npeers; i++)
        if (!strcmp(r->peers[i].gid, gid)) {
            if (seq > r->peers[i].seq) r->peers[i].seq = seq;
            return;
        }
    int i = r->npeers < MAX_PEERS ? r->npeers++ : (r->next_peer++ % MAX_PEERS);
    snprintf(r->peers[i].gid, sizeof r->peers[i].gid, "%s", gid);
    r->peers[i].seq = seq;
}

/* Without the channel (an admin command, or a gateway whose subscriber is
 * down) the acknowledgements are read from the acks hash instead. */
static void poll_acks(l2 *r, char (*gids)[33], int n) {
    const char **argv = calloc((size_t)n + 2, sizeof *argv);
    buf_t k;
    buf_init(&k);
    buf_printf(&k, "%sacks", r->prefix);
    if (!argv || k.oom) {
        free(argv);
        buf_free(&k);
        return;
    }
    argv[0] = "HMGET";
    argv[1] = k.data;
    for (int i = 0; i < n; i++) argv[2 + i] = gids[i];
    redisReply *rep = NULL;
    if (run(r, n + 2, argv, NULL, &rep) == 0 && rep->type == REDIS_REPLY_ARRAY && rep->elements == (size_t)n) {
        pthread_mutex_lock(&r->mu);
        for (int i = 0; i < n; i++)
            if (rep->element[i]->type == REDIS_REPLY_STRING) peer_heard(r, gids[i], reply_u64(rep->element[i]));
        pthread_mutex_unlock(&r->mu);
    }
    if (rep) freeReplyObject(rep);
    free(argv);
    buf_free(&k);
}

/* The writer's wait (leases): until every other gateway that held a lease
 * when seq was published acknowledged it or saw its lease run out, and
 * until a young instance is a lease old.  rep is the script's answer. */
static void wait_for_holders(l2 *r, uint64_t seq, const redisReply *rep) {
    int64_t t0 = mono_ms();
    int64_t young_until = t0 + (int64_t)reply_u64(rep->element[1]);
    int n = 0;
    size_t cap = (rep->elements - 2) / 2;
    char(*gids)[33] = cap ? calloc(cap, sizeof *gids) : NULL;
    int64_t *until = cap ? calloc(cap, sizeof *until) : NULL;
    if (cap && (!gids || !until)) {
        /* No room to track them: wait out every lease (never too short). */
        free(gids);
        free(until);
        gids = NULL;
        until = NULL;
        int64_t last = young_until;
        for (size_t i = 2; i + 1 < rep->elements; i += 2) {
            int64_t u = t0 + (int64_t)reply_u64(rep->element[i + 1]);
            if (u > last) last = u;
        }
        while (mono_ms() < last) usleep(1000);
        return;
    }
    for (size_t i = 2; i + 1 < rep->elements; i += 2) {
        const redisReply *g = rep->element[i];
        if (g->type != REDIS_REPLY_STRING || g->len >= 33 || !strcmp(g->str, r->gid)) continue;
        memcpy(gids[n], g->str, g->len);
        gids[n][g->len] = '\0';
        until[n++] = t0 + (int64_t)reply_u64(rep->element[i + 1]);
    }
    bool waited = false, ran_out = false;
    for (;;) {
        int64_t now = mono_ms(), next = now < young_until ? young_until : 0;
        pthread_mutex_lock(&r->mu);
        int pending = 0;
        for (int i = 0; i < n; i++) {
            if (!until[i]) continue;
            if (peer_acked(r, gids[i]) >= seq) until[i] = 0;
            else if (now >= until[i]) {
                until[i] = 0;
                ran_out = true;
            } else {
                pending++;
                if (!next || until[i] < next) next = until[i];
            }
        }
        bool listening = r->o.subscribe && r->channel_up && !r->stopping;
        if (!next || r->stopping) {
            if (waited) r->st.write_waits++;
            if (ran_out) r->st.lease_timeouts++;
            pthread_mutex_unlock(&r->mu);
            break;
        }
        waited = true;
        if (listening) {
            int64_t ms = next - now;
            if (ms > 100) ms = 100;
            struct timespec ts = time_deadline(CLOCK_REALTIME, ms);
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
            pthread_mutex_unlock(&r->mu);
        } else {
            pthread_mutex_unlock(&r->mu);
            if (pending) {
                /* only the ones still pending */
                char(*left)[33] = calloc((size_t)pending, sizeof *left);
                int m = 0;
                for (int i = 0; left && i < n; i++)
                    if (until[i]) memcpy(left[m++], gids[i], 33);
                if (left) poll_acks(r, left, m);
                free(left);
            }
            usleep(ACK_POLL_MS * 1000);
        }
    }
    free(gids);
    free(until);
}

int l2_invalidate(l2 *r, const void *const *keys, const size_t *klens, int n) {
    int argc = 7 + n;
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
        char gts[24], ls[24];
        snprintf(gts, sizeof gts, "%lld", (long long)gen_ttl_ms(3600 * 1000));
        snprintf(ls, sizeof ls, "%d", r->lease_ms);
        argv[0] = "EVAL";
        argv[1] = invalidate_script;
        argv[2] = "0";
        argv[3] = r->prefix;
        argv[4] = gts;
        argv[5] = ls;
        argv[6] = r->sender;
        for (int i = 0; i < n; i++) argv[7 + i] = hex.data + offs[i];
        argc = 7 + n;
        for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
        rc = run(r, argc, argv, lens, &rep);
    }
    free(argv);
    free(lens);
    free(offs);
    buf_free(&hex);
    if (rc == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || (r->lease_ms > 0 && rep->elements < 2)))
        rc = CAIRN_EIO;
    if (rc == 0 && r->lease_ms > 0) wait_for_holders(r, reply_u64(rep->element[0]), rep);
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

/* Applies one published message: "SEQ 00GID HEX HEX..." or "SEQ *EPOCH"
 * ("SEQ HEX..." and "SEQ *" from older gateways).  The keys of this
 * gateway's own messages (00GID its own sender token) are not applied
 * again: l2_invalidate's caller invalidated them here before publishing,
 * and may have put the new value in their place (write-through); only the
 * sequence number counts. */
void l2_apply_message(l2 *r, const char *msg, size_t len) {
    /* The seq, read within len (msg need not end in a NUL). */
    const char *p = msg, *stop = msg + len;
    uint64_t seq = 0;
    for (; p < stop && *p >= '0' && *p <= '9'; p++)
        seq = seq > (UINT64_MAX - 9) / 10 ? UINT64_MAX : seq * 10 + (uint64_t)(*p - '0');
    unsigned char key[2048];
    size_t sl = strlen(r->sender);
    while (p < stop && *p == ' ') p++;
    if ((size_t)(stop - p) >= sl && p[0] == '0' && p[1] == '0' && (p + sl == stop || p[sl] == ' '))
        p = !memcmp(p, r->sender, sl) ? stop : p + sl; /* ours: nothing to apply; another's: its keys follow */
    while (p < stop) {
        while (p < stop && *p == ' ') p++;
        const char *t = p;
        while (p < stop && *p != ' ') p++;
        size_t tl = (size_t)(p - t);
        if (tl >= 1 && *t == '*') {
            r->o.flush(r->o.ud);
            uint64_t e = 0;
            bool digits = tl > 1;
            for (size_t i = 1; i < tl && digits; i++) {
                if (t[i] < '0' || t[i] > '9' || e > UINT64_MAX / 10 - 10) digits = false;
                else e = e * 10 + (uint64_t)(t[i] - '0');
            }
            if (digits) {
                pthread_mutex_lock(&r->mu);
                if (e > r->epoch_known) r->epoch_known = e;
                pthread_mutex_unlock(&r->mu);
            }
        } else if (tl > 0) {
            if (tl % 2 || tl / 2 > sizeof key) { /* not one of ours: trust nothing */
                r->o.flush(r->o.ud);
                continue;
            }
            bool bad = false;
            for (size_t i = 0; i < tl / 2; i++) {
                int hi = hex_value(t[2 * i]), lo = hex_value(t[2 * i + 1]);
                if (hi < 0 || lo < 0) bad = true;
                else key[i] = (unsigned char)(hi << 4 | lo);
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

static void set_channel(l2 *r, bool up, const char *boot, uint64_t seq, uint64_t epoch) {
    pthread_mutex_lock(&r->mu);
    bool was = r->channel_up;
    r->channel_up = up;
    r->lease_until = r->prev_until = 0; /* a lease is taken anew after the channel */
    r->acked_sent = 0;
    if (up) {
        snprintf(r->boot, sizeof r->boot, "%s", boot);
        r->applied = seq;
        r->epoch_known = epoch;
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

/* The first subscriber of an instance gives it a boot token and records
 * when (Redis's clock): a writer treats an instance younger than a lease as
 * possibly trusted under leases taken from the one before (l2.h). */
static const char join_script[] =
    "local p = ARGV[1] "
    "if redis.call('SET', p .. 'boot', ARGV[2], 'NX') then "
    "  local t = redis.call('TIME') "
    "  redis.call('SET', p .. 'boot_time', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) "
    "end "
    "return 1";

/* Makes sure the instance has a boot token and returns it with the seq and
 * the epoch, after the subscription is in place. */
static int join_instance(l2 *r, uint64_t *seq, uint64_t *epoch, char boot[33]) {
    unsigned char raw[16];
    char tok[33];
    rand_bytes(raw, sizeof raw);
    for (int i = 0; i < 16; i++) snprintf(tok + 2 * i, 3, "%02x", raw[i]);
    const char *argv[] = {"EVAL", join_script, "0", r->prefix, tok};
    redisReply *rep = NULL;
    int rc = run(r, 5, argv, NULL, &rep);
    if (rep) freeReplyObject(rep);
    return rc == 0 ? sync_boot(r, seq, epoch, boot) : rc;
}

/* Renews this gateway's lease if the instance is still the one joined:
 * {1, seq, epoch}, or {0} when it is not. */
static const char renew_script[] =
    "local p = ARGV[1] "
    "if redis.call('GET', p .. 'boot') ~= ARGV[4] then return {0} end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('HSET', p .. 'leases', ARGV[2], now + tonumber(ARGV[3])) "
    "return {1, tonumber(redis.call('GET', p .. 'seq') or '0'), tonumber(redis.call('GET', p .. 'epoch') or '0')}";

/* A lease is trusted for a tenth less than it lasts in Redis: clocks that
 * run at slightly different rates still end it here first. */
static int64_t lease_trust_ms(int lease_ms) { return lease_ms - lease_ms / 10; }

/* Takes or renews the lease: 0, CAIRN_ECONFLICT (another instance: rejoin),
 * or the command's error (the lease is left to run out). */
static int renew_lease(l2 *r) {
    char ls[24], boot[33];
    snprintf(ls, sizeof ls, "%d", r->lease_ms);
    pthread_mutex_lock(&r->mu);
    memcpy(boot, r->boot, sizeof boot);
    pthread_mutex_unlock(&r->mu);
    const char *argv[] = {"EVAL", renew_script, "0", r->prefix, r->gid, ls, boot};
    int64_t sent = mono_ms(); /* the lease runs from before Redis granted it */
    redisReply *rep = NULL;
    int rc = run(r, 7, argv, NULL, &rep);
    if (rc != 0) return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) rc = CAIRN_EIO;
    else if (reply_u64(rep->element[0]) != 1) rc = CAIRN_ECONFLICT;
    else if (rep->elements < 3) rc = CAIRN_EIO;
    if (rc == 0) {
        uint64_t seq = reply_u64(rep->element[1]), epoch = reply_u64(rep->element[2]);
        pthread_mutex_lock(&r->mu);
        if (seq < r->applied) { /* the counter went backwards: join anew */
            pthread_mutex_unlock(&r->mu);
            freeReplyObject(rep);
            return CAIRN_ECONFLICT;
        }
        if (r->lease_until <= sent) r->st.lease_lapses += r->lease_until ? 1 : 0;
        r->prev_until = r->lease_until;
        r->prev_need = r->lease_need;
        r->lease_until = sent + lease_trust_ms(r->lease_ms);
        r->lease_need = seq;
        if (epoch > r->epoch_known) r->epoch_known = epoch;
        r->st.lease_renewals++;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    freeReplyObject(rep);
    return rc;
}

/* Tells writers this gateway applied every message up to seq (only while it
 * holds a lease: a gateway without one is not waited for). */
static const char ack_script[] =
    "local p = ARGV[1] "
    "if redis.call('HEXISTS', p .. 'leases', ARGV[2]) == 0 then return 0 end "
    "redis.call('HSET', p .. 'acks', ARGV[2], ARGV[3]) "
    "redis.call('PUBLISH', p .. 'ack', ARGV[2] .. ' ' .. ARGV[3]) "
    "return 1";

static void send_ack(l2 *r) {
    pthread_mutex_lock(&r->mu);
    uint64_t seq = r->applied;
    bool due = r->lease_ms > 0 && seq > r->acked_sent;
    pthread_mutex_unlock(&r->mu);
    if (!due) return;
    char ss[24];
    snprintf(ss, sizeof ss, "%llu", (unsigned long long)seq);
    const char *argv[] = {"EVAL", ack_script, "0", r->prefix, r->gid, ss};
    redisReply *rep = NULL;
    if (run(r, 6, argv, NULL, &rep) == 0) {
        pthread_mutex_lock(&r->mu);
        if (seq > r->acked_sent) r->acked_sent = seq;
        pthread_mutex_unlock(&r->mu);
    }
    if (rep) freeReplyObject(rep);
}

/* An acknowledgement heard on the channel: "GID SEQ". */
static void heard_ack(l2 *r, const char *msg, size_t len) {
    const char *sp = memchr(msg, ' ', len);
    if (!sp || sp == msg || (size_t)(sp - msg) >= 33) return;
    char gid[33];
    memcpy(gid, msg, (size_t)(sp - msg));
    gid[sp - msg] = '\0';
    uint64_t seq = strtoull(sp + 1, NULL, 10);
    pthread_mutex_lock(&r->mu);
    peer_heard(r, gid, seq);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

bool l2_lease_usable(l2 *r, uint64_t *epoch) {
    int64_t now = mono_ms();
    pthread_mutex_lock(&r->mu);
    bool ok = r->channel_up && !r->rejoin && !r->stopping &&
              ((now < r->lease_until && r->applied >= r->lease_need) ||
               (now < r->prev_until && r->applied >= r->prev_need));
    *epoch = r->epoch_known;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

bool l2_leases(const l2 *r) { return r->lease_ms > 0; }

void l2_test_pause(l2 *r, bool paused) {
    pthread_mutex_lock(&r->mu);
    r->paused = paused;
    pthread_mutex_unlock(&r->mu);
}

static bool send_ping(redisContext *c) {
    if (redisAppendCommand(c, "PING") != REDIS_OK) return false;
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK) return false;
    return true;
}

/* Reads the subscribed connection until it fails or stop; renews the lease
 * and acknowledges what it applied on the way. */
static void listen_loop(l2 *r, redisContext *c, const char *ack_chan) {
    int64_t last_rx = mono_ms(), last_ping = mono_ms(), last_renew = mono_ms();
    int renew_every = r->lease_ms > 0 ? r->lease_ms / 4 : 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        bool paused = r->paused;
        pthread_mutex_unlock(&r->mu);
        int wait = PING_MS;
        if (renew_every) {
            int64_t left = last_renew + renew_every - mono_ms();
            wait = left < 0 ? 0 : left < wait ? (int)left : wait;
        }
        struct pollfd p[2] = {{.fd = c->fd, .events = paused ? 0 : POLLIN}, {.fd = r->stop_pipe[0], .events = POLLIN}};
        int n = poll(p, 2, paused && wait > 10 ? 10 : wait);
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
        pthread_mutex_lock(&r->mu);
        paused = r->paused; /* as it is now, not as before the poll */
        pthread_mutex_unlock(&r->mu);
        if (p[0].revents && !paused) {
            if (redisBufferRead(c) != REDIS_OK) return;
            void *reply;
            for (;;) {
                if (redisGetReplyFromReader(c, &reply) != REDIS_OK) return;
                if (!reply) break;
                redisReply *rep = reply;
                last_rx = now;
                if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 && rep->element[0]->type == REDIS_REPLY_STRING &&
                    !strcmp(rep->element[0]->str, "message") && rep->element[1]->type == REDIS_REPLY_STRING &&
                    rep->element[2]->type == REDIS_REPLY_STRING) {
                    if (!strcmp(rep->element[1]->str, ack_chan)) heard_ack(r, rep->element[2]->str, rep->element[2]->len);
                    else l2_apply_message(r, rep->element[2]->str, rep->element[2]->len);
                }
                freeReplyObject(rep);
            }
            send_ack(r);
        }
        if (paused) last_rx = now; /* not reading is not silence */
        if (renew_every && now - last_renew >= renew_every) {
            last_renew = now;
            if (renew_lease(r) == CAIRN_ECONFLICT) {
                log_write(LOG_WARN, NULL, "redis was flushed or replaced under the cache: subscribing anew", NULL);
                return;
            }
            if (!paused) send_ack(r); /* one that failed before */
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
    pthread_setname_np(pthread_self(), "redis-sub");
    l2 *r = arg;
    int backoff = BACKOFF_MIN_MS;
    buf_t chan, ack;
    buf_init(&chan);
    buf_init(&ack);
    buf_printf(&chan, "%sinval", r->prefix);
    buf_printf(&ack, "%sack", r->prefix);
    while (!sleep_or_stop(r, 0)) {
        redisContext *c = connect_redis(r);
        redisReply *rep = NULL;
        int rc = CAIRN_EIO;
        if (c) {
            const char *argv[] = {"SUBSCRIBE", chan.data, ack.data};
            rep = command(c, r->lease_ms > 0 ? 3 : 2, argv, NULL, &rc);
        }
        uint64_t seq = 0, epoch = 0;
        char boot[33] = "";
        /* Subscribed first, then the seq: a message published in between is
         * applied twice at worst, never missed. */
        if (rep && rep->type == REDIS_REPLY_ARRAY && join_instance(r, &seq, &epoch, boot) == 0 && boot[0]) {
            freeReplyObject(rep);
            rep = NULL;
            backoff = BACKOFF_MIN_MS;
            set_channel(r, true, boot, seq, epoch);
            if (r->lease_ms <= 0 || renew_lease(r) != CAIRN_ECONFLICT) listen_loop(r, c, ack.data);
            set_channel(r, false, "", 0, 0);
        }
        if (rep) freeReplyObject(rep);
        if (c) redisFree(c);
        if (sleep_or_stop(r, backoff)) break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    buf_free(&chan);
    buf_free(&ack);
    return NULL;
}

/* ---- life ------------------------------------------------------------------------------------ */

int l2_new(const l2_options *o, l2 **out, char *why, size_t whylen) {
    *out = NULL;
    l2 *r = calloc(1, sizeof *r);
    if (!r) return CAIRN_ENOMEM;
    int rc = redis_target_parse(o->url ? o->url : "", &r->target, why, whylen);
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
    r->lease_ms = o->lease_ms <= 0 ? 0 : o->lease_ms < 100 ? 100 : o->lease_ms; /* renewed every quarter */
    unsigned char raw[16];
    rand_bytes(raw, sizeof raw);
    for (int i = 0; i < 16; i++) snprintf(r->gid + 2 * i, 3, "%02x", raw[i]);
    snprintf(r->sender, sizeof r->sender, "00%s", r->gid);
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
    if (r->sub_started && r->lease_ms > 0) {
        /* Writers need not wait this lease out: it is given back. */
        buf_t k;
        buf_init(&k);
        buf_printf(&k, "%sleases", r->prefix);
        const char *argv[] = {"HDEL", k.data, r->gid};
        redisReply *rep = NULL;
        if (!k.oom && run(r, 3, argv, NULL, &rep) == 0) freeReplyObject(rep);
        buf_free(&k);
    }
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
    out->lease_held = r->lease_ms > 0 && r->channel_up && mono_ms() < r->lease_until;
    pthread_mutex_unlock(&r->mu);
}

void l2_count(l2 *r, bool hit) {
    pthread_mutex_lock(&r->mu);
    if (hit) r->st.hits++;
    else r->st.misses++;
    pthread_mutex_unlock(&r->mu);
}
