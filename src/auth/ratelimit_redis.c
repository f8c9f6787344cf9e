/*
 * ratelimit_redis.c — the rate limits shared by every gateway through Redis
 * (docs/rate-limiting.md): the same GCRA as ratelimit.c, kept in Redis and
 * decided by one Lua script per check, so N gateways together admit the
 * configured rate, not N times it.
 *
 * Each subject is a hash "cairn:rl:<limiter>:<name>" with fields o (the
 * theoretical arrival time of its operations) and b (of its bytes), in
 * microseconds of Redis's own clock (TIME inside the script, so the
 * gateways' clocks need not agree).  A key expires once its buckets would
 * be full again: Redis holds only subjects that owe.
 *
 * When Redis fails, a breaker opens for redis_breaker_ms and each gateway
 * decides alone with its local tables at its share of every limit: the
 * limit divided by the gateways that were live when Redis last answered
 * (each registers itself in the sorted set cairn:rl:gateways every few
 * seconds).  cairn_ratelimit_shared says which mode a gateway is in.
 */
#include "auth/auth.h"
#include "auth/ratelimit_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#define POOL_MAX 16
#define HEARTBEAT_MS 3000
#define GATEWAY_TTL_MS 15000

/* KEYS: the subjects.  ARGV[1 + 3(i-1) ..]: T_ops (us per request, 0 for
 * none), tau_ops (us), tau_bytes (us, -1 for no byte limit).  Returns
 * {0, 0} admitted (each ops bucket charged) or {i, wait_us} refused by
 * KEYS[i], nothing charged. */
static const char admit_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local worst, who, tats = 0, 0, {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local T, tau, btau = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])\n"
    "  local v = redis.call('HMGET', k, 'o', 'b')\n"
    "  local o, b = tonumber(v[1]) or 0, tonumber(v[2]) or 0\n"
    "  if T > 0 then\n"
    "    local tat = math.max(o, now) + T\n"
    "    tats[i] = tat\n"
    "    if tat - now - tau > worst then worst, who = tat - now - tau, i end\n"
    "  end\n"
    "  if btau >= 0 and b - now - btau > worst then worst, who = b - now - btau, i end\n"
    "end\n"
    "if worst > 0 then return {who, math.ceil(worst)} end\n"
    "for i, k in ipairs(KEYS) do\n"
    "  if tats[i] then\n"
    "    redis.call('HSET', k, 'o', string.format('%.0f', tats[i]))\n"
    "    local ttl = math.ceil((tats[i] - now) / 1000) + 1000\n"
    "    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end\n"
    "  end\n"
    "end\n"
    "return {0, 0}\n";

/* KEYS: the subjects.  ARGV[1]: bytes; ARGV[1 + 2(i-1) + 1 ..]: T_bytes
 * (us per byte, may be fractional), tau_bytes (us).  Charges every one and
 * returns the longest wait in us. */
static const char charge_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local n, wait = tonumber(ARGV[1]), 0\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local T, tau = tonumber(ARGV[2*i]), tonumber(ARGV[2*i+1])\n"
    "  local b = tonumber(redis.call('HGET', k, 'b')) or 0\n"
    "  local tat = math.max(b, now) + n * T\n"
    "  redis.call('HSET', k, 'b', string.format('%.0f', tat))\n"
    "  local ttl = math.ceil((tat - now) / 1000) + 1000\n"
    "  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end\n"
    "  if tat - now - tau > wait then wait = tat - now - tau end\n"
    "end\n"
    "return math.ceil(wait)\n";

struct rl_remote {
    redis_target target;
    int timeout_ms, breaker_ms;
    char gateway_id[33];
    pthread_mutex_t mu;
    redisContext *idle[POOL_MAX];
    int nidle;
    int64_t open_until_ms;      /* the breaker: Redis is not tried before this (0: closed) */
    bool half_open;             /* one caller is probing */
    int64_t heartbeat_ms;       /* when this gateway last registered itself */
    int gateways;               /* live gateways when Redis last answered (>= 1) */
};

static int64_t mono_ms(void) { return time_mono_ns() / 1000000; }

int rl_remote_new(const rl_shared *o, rl_remote **out, char *why, size_t whylen) {
    *out = NULL;
    rl_remote *r = calloc(1, sizeof *r);
    if (!r) return CAIRN_ENOMEM;
    int rc = redis_target_parse(o->redis_url, &r->target, why, whylen);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 200;
    r->breaker_ms = o->breaker_ms > 0 ? o->breaker_ms : 1000;
    r->gateways = 1;
    uint8_t id[16];
    randombytes_buf(id, sizeof id);
    hex_encode(id, sizeof id, r->gateway_id);
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return 0;
}

void rl_remote_free(rl_remote *r) {
    if (!r) return;
    for (int i = 0; i < r->nidle; i++) redisFree(r->idle[i]);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* A connection, unless the breaker is open (NULL then, and *skipped). */
static redisContext *checkout(rl_remote *r, bool *skipped) {
    *skipped = false;
    pthread_mutex_lock(&r->mu);
    int64_t now = mono_ms();
    if (r->open_until_ms && (now < r->open_until_ms || r->half_open)) {
        pthread_mutex_unlock(&r->mu);
        *skipped = true;
        return NULL;
    }
    if (r->open_until_ms) r->half_open = true; /* this caller probes */
    redisContext *c = r->nidle > 0 ? r->idle[--r->nidle] : NULL;
    pthread_mutex_unlock(&r->mu);
    return c ? c : redis_open(&r->target, r->timeout_ms);
}

static void checkin(rl_remote *r, redisContext *c, bool ok) {
    pthread_mutex_lock(&r->mu);
    bool was_open = r->open_until_ms != 0;
    r->half_open = false;
    if (ok) {
        r->open_until_ms = 0;
        if (c && r->nidle < POOL_MAX) {
            r->idle[r->nidle++] = c;
            c = NULL;
        }
    } else {
        r->open_until_ms = mono_ms() + r->breaker_ms;
    }
    pthread_mutex_unlock(&r->mu);
    if (c) redisFree(c);
    if (ok && was_open) log_write(LOG_INFO, NULL, "redis answers again: rate limits are shared again", NULL);
    if (!ok && !was_open)
        log_write(LOG_WARN, NULL, "redis failed: each gateway enforces its share of the rate limits alone", NULL);
}

int rl_remote_gateways(rl_remote *r) {
    pthread_mutex_lock(&r->mu);
    int n = r->gateways;
    pthread_mutex_unlock(&r->mu);
    return n;
}

bool rl_remote_up(rl_remote *r) {
    pthread_mutex_lock(&r->mu);
    bool up = r->open_until_ms == 0;
    pthread_mutex_unlock(&r->mu);
    return up;
}

/* Registers this gateway in cairn:rl:gateways and counts the live ones,
 * every HEARTBEAT_MS at most (on a connection that just worked). */
static void heartbeat(rl_remote *r, redisContext *c) {
    int64_t now = mono_ms();
    pthread_mutex_lock(&r->mu);
    bool due = now - r->heartbeat_ms >= HEARTBEAT_MS || !r->heartbeat_ms;
    if (due) r->heartbeat_ms = now;
    pthread_mutex_unlock(&r->mu);
    if (!due) return;
    int64_t wall = time_now_ms();
    char score[24], floor_s[24];
    snprintf(score, sizeof score, "%lld", (long long)wall);
    snprintf(floor_s, sizeof floor_s, "%lld", (long long)(wall - GATEWAY_TTL_MS));
    redisAppendCommand(c, "ZADD cairn:rl:gateways %s %s", score, r->gateway_id);
    redisAppendCommand(c, "ZREMRANGEBYSCORE cairn:rl:gateways -inf (%s", floor_s);
    redisAppendCommand(c, "ZCARD cairn:rl:gateways");
    redisReply *rep = NULL;
    long long n = 0;
    for (int i = 0; i < 3; i++) {
        if (redisGetReply(c, (void **)&rep) != REDIS_OK) return;
        if (i == 2 && rep && rep->type == REDIS_REPLY_INTEGER) n = rep->integer;
        freeReplyObject(rep);
    }
    pthread_mutex_lock(&r->mu);
    r->gateways = n > 0 ? (int)n : 1;
    pthread_mutex_unlock(&r->mu);
}

static void subject_key(int dim, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "cairn:rl:%s:%s", rl_dim_name(dim), name);
}

/* EVAL of script over the keys and args; the reply, or NULL (Redis failed
 * or was skipped: *skipped says which). */
static redisReply *eval(rl_remote *r, const char *script, int nkeys, char keys[][320], int nargs,
                        char args[][40], bool *skipped) {
    redisContext *c = checkout(r, skipped);
    if (!c) {
        if (!*skipped) checkin(r, NULL, false);
        return NULL;
    }
    const char *argv[3 + RL__DIMS + 1 + 3 * RL__DIMS];
    size_t lens[sizeof argv / sizeof argv[0]];
    char nk[8];
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++) argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++) argv[argc++] = args[i];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        log_write(LOG_WARN, NULL, "redis refused a rate limit script", "error", rep->str, NULL);
    if (ok) heartbeat(r, c);
    if (!rep || c->err) {
        redisFree(c);
        c = NULL;
    }
    checkin(r, c, ok);
    if (!ok) {
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

int rl_remote_admit(rl_remote *r, const rl_subject *s, const rl_limits *lim, const int64_t tau_us[RL__DIMS],
                    rl_refusal *why, bool *decided) {
    *decided = false;
    char keys[RL__DIMS][320], args[3 * RL__DIMS][40];
    int dims[RL__DIMS], n = 0;
    for (int d = 0; d < RL__DIMS; d++) {
        if (!s->name[d] || (lim[d].ops_per_s <= 0 && lim[d].bytes_per_s <= 0)) continue;
        subject_key(d, s->name[d], keys[n], sizeof keys[n]);
        snprintf(args[3 * n], sizeof args[0], "%lld", lim[d].ops_per_s > 0 ? (long long)(1000000 / lim[d].ops_per_s) : 0LL);
        snprintf(args[3 * n + 1], sizeof args[0], "%lld", (long long)tau_us[d]);
        snprintf(args[3 * n + 2], sizeof args[0], "%lld", lim[d].bytes_per_s > 0 ? (long long)tau_us[d] : -1LL);
        dims[n++] = d;
    }
    if (n == 0) {
        *decided = true;
        return 0;
    }
    bool skipped;
    redisReply *rep = eval(r, admit_lua, n, keys, 3 * n, args, &skipped);
    if (!rep) return CAIRN_EIO;
    int rc = CAIRN_EIO;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        long long who = rep->element[0]->integer, wait = rep->element[1]->integer;
        *decided = true;
        rc = 0;
        if (who >= 1 && who <= n) {
            why->dim = dims[who - 1];
            why->retry_after_ms = (wait + 999) / 1000;
            rc = CAIRN_EBUSY;
        }
    }
    freeReplyObject(rep);
    return rc;
}

int rl_remote_charge(rl_remote *r, const rl_subject *s, const rl_limits *lim, const int64_t tau_us[RL__DIMS],
                     uint64_t bytes, int64_t *wait_ns) {
    char keys[RL__DIMS][320], args[1 + 2 * RL__DIMS][40];
    int n = 0;
    snprintf(args[0], sizeof args[0], "%llu", (unsigned long long)bytes);
    for (int d = 0; d < RL__DIMS; d++) {
        if (!s->name[d] || lim[d].bytes_per_s <= 0) continue;
        subject_key(d, s->name[d], keys[n], sizeof keys[n]);
        snprintf(args[1 + 2 * n], sizeof args[0], "%.9g", 1e6 / (double)lim[d].bytes_per_s);
        snprintf(args[2 + 2 * n], sizeof args[0], "%lld", (long long)tau_us[d]);
        n++;
    }
    *wait_ns = 0;
    if (n == 0) return 0;
    bool skipped;
    redisReply *rep = eval(r, charge_lua, n, keys, 1 + 2 * n, args, &skipped);
    if (!rep) return CAIRN_EIO;
    int rc = rep->type == REDIS_REPLY_INTEGER ? 0 : CAIRN_EIO;
    if (rc == 0) *wait_ns = rep->integer > 0 ? rep->integer * 1000 : 0;
    freeReplyObject(rep);
    return rc;
}
