/*
 * ratelimit.c — token buckets per access key, per client address and per
 * bucket, operations and bytes counted apart, and a cap on requests in
 * flight (docs/rate-limiting.md).
 *
 * Each limit is a GCRA (the generic cell rate algorithm, the form of a token
 * bucket that keeps one number per subject): a subject's "theoretical
 * arrival time" tat says when its bucket would be full again.  With a rate
 * of r units per second each unit costs T = 1/r seconds, and the bucket
 * holds tau = burst_s seconds of them.  A cost c is admitted when
 * max(tat, now) + c*T - now <= tau, and then tat moves to max(tat, now) +
 * c*T.  A subject whose tat is in the past has a full bucket, which is
 * the same as having no entry at all: such entries are dropped first when
 * room is needed, at no loss.
 *
 * Operations are admitted or refused whole: rl_admit checks every
 * dimension that applies and charges them only when all admit, so a
 * request refused by its bucket's limit costs its key nothing.  Bytes are
 * never refused mid-flow: rl_charge charges them as they pass and answers
 * how long the flow must wait for the bucket to hold them again, so one
 * large GET or PUT cannot run up a debt (it is slowed to the rate instead),
 * and a new request is refused while a subject's bytes are in debt (other
 * flows of it are still draining).
 *
 * Memory is bounded: each dimension is an open-addressed table of
 * max_entries / 3 slots, keyed by a SipHash of the subject's name with a
 * key drawn at start (so a client cannot choose names that share another
 * subject's slot).  A probe looks at most PROBE slots; when none is free
 * or idle, the one that would be full soonest is replaced (counted as an
 * eviction: it loses what it owed).  Slots are guarded by striped mutexes.
 *
 * Overrides (cairn admin limits) replace the defaults of one key or one
 * bucket; they are kept in a small sorted array swapped whole under a
 * rwlock.
 */
#include "auth/auth.h"
#include "auth/ratelimit_int.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define PROBE 8
#define STRIPES 16

typedef struct {
    uint64_t h;                 /* 0: empty */
    int64_t tat_ops, tat_bytes; /* ns on the monotonic clock; <= now: full */
} rl_slot;

typedef struct {
    rl_slot *slots;
    size_t mask;
    pthread_mutex_t mu[STRIPES];
} rl_table;

typedef struct {
    int dim;
    char *name;
    rl_limits lim;
} rl_override;

struct rl_limiter {
    rl_config cfg;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    rl_table t[RL__DIMS];
    atomic_int in_flight;
    pthread_rwlock_t ov_mu;
    rl_override *ov;
    atomic_size_t nov;            /* read without the lock by rl_enabled */
    /* counters, per dimension (RL_INFLIGHT last) */
    atomic_uint_fast64_t admitted[RL__DIMS + 1], limited[RL__DIMS + 1], bytes[RL__DIMS], throttled_ns[RL__DIMS];
    atomic_uint_fast64_t evictions;
    rl_remote *remote;            /* shared through Redis (ratelimit_redis.c); NULL: this gateway alone */
    atomic_uint_fast64_t shared_checks, fallback_checks;
};

static const char *const dim_names[RL__DIMS + 1] = {"key", "ip", "bucket", "in_flight"};

const char *rl_dim_name(int dim) { return dim >= 0 && dim <= RL__DIMS ? dim_names[dim] : "?"; }

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

int rl_new(const rl_config *cfg, rl_limiter **out) {
    *out = NULL;
    rl_limiter *l = calloc(1, sizeof *l);
    if (!l) return CAIRN_ENOMEM;
    l->cfg = *cfg;
    if (l->cfg.burst_s < 1) l->cfg.burst_s = 1;
    if (l->cfg.max_entries < 48) l->cfg.max_entries = 48;
    randombytes_buf(l->hkey, sizeof l->hkey);
    /* Each dimension's table, rounded up to a power of two. */
    size_t per = pow2_at_least((size_t)l->cfg.max_entries / RL__DIMS);
    for (int d = 0; d < RL__DIMS; d++) {
        l->t[d].slots = calloc(per, sizeof *l->t[d].slots);
        if (!l->t[d].slots) {
            rl_free(l);
            return CAIRN_ENOMEM;
        }
        l->t[d].mask = per - 1;
        for (int s = 0; s < STRIPES; s++) pthread_mutex_init(&l->t[d].mu[s], NULL);
    }
    pthread_rwlock_init(&l->ov_mu, NULL);
    *out = l;
    return 0;
}

void rl_free(rl_limiter *l) {
    if (!l) return;
    for (int d = 0; d < RL__DIMS; d++) {
        if (!l->t[d].slots) continue;
        free(l->t[d].slots);
        for (int s = 0; s < STRIPES; s++) pthread_mutex_destroy(&l->t[d].mu[s]);
    }
    for (size_t i = 0; i < l->nov; i++) free(l->ov[i].name);
    free(l->ov);
    pthread_rwlock_destroy(&l->ov_mu);
    rl_remote_free(l->remote);
    free(l);
}

int rl_share(rl_limiter *l, const rl_shared *o, char *why, size_t whylen) {
    if (!o->redis_url || !o->redis_url[0]) return 0;
    return rl_remote_new(o, &l->remote, why, whylen);
}

bool rl_enabled(const rl_limiter *l) {
    if (!l) return false;
    if (l->cfg.max_in_flight > 0 || atomic_load(&((rl_limiter *)l)->nov) > 0) return true;
    for (int d = 0; d < RL__DIMS; d++)
        if (l->cfg.ops_per_s[d] > 0 || l->cfg.bytes_per_s[d] > 0) return true;
    return false;
}

/* ---- overrides ------------------------------------------------------------------------------ */

static int ov_cmp(const void *a, const void *b) {
    const rl_override *x = a, *y = b;
    return x->dim != y->dim ? x->dim - y->dim : strcmp(x->name, y->name);
}

int rl_overrides_replace(rl_limiter *l, const rl_override_entry *e, size_t n) {
    rl_override *ov = n ? calloc(n, sizeof *ov) : NULL;
    if (n && !ov) return CAIRN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        assert(e[i].dim >= 0 && e[i].dim < RL__DIMS);
        ov[i].dim = e[i].dim;
        ov[i].lim = e[i].lim;
        if (!(ov[i].name = strdup(e[i].name))) {
            for (size_t k = 0; k < i; k++) free(ov[k].name);
            free(ov);
            return CAIRN_ENOMEM;
        }
    }
    if (n) qsort(ov, n, sizeof *ov, ov_cmp);
    pthread_rwlock_wrlock(&l->ov_mu);
    rl_override *old = l->ov;
    size_t nold = l->nov;
    l->ov = ov;
    l->nov = n;
    pthread_rwlock_unlock(&l->ov_mu);
    for (size_t i = 0; i < nold; i++) free(old[i].name);
    free(old);
    return 0;
}

/* The limits of a subject: its override, else the defaults. */
static rl_limits limits_of(rl_limiter *l, int dim, const char *name) {
    rl_limits lim = {l->cfg.ops_per_s[dim], l->cfg.bytes_per_s[dim]};
    if (dim == RL_IP) return lim;
    pthread_rwlock_rdlock(&l->ov_mu);
    if (l->nov) {
        rl_override key = {.dim = dim, .name = (char *)name};
        const rl_override *o = bsearch(&key, l->ov, l->nov, sizeof *l->ov, ov_cmp);
        if (o) lim = o->lim;
    }
    pthread_rwlock_unlock(&l->ov_mu);
    return lim;
}

/* ---- the tables ----------------------------------------------------------------------------- */

static uint64_t hash_of(const rl_limiter *l, int dim, const char *name) {
    uint8_t out[crypto_shorthash_BYTES];
    size_t n = strlen(name);
    uint8_t stack[300];
    uint8_t *in = n + 1 <= sizeof stack ? stack : malloc(n + 1);
    uint64_t h = 0;
    if (in) {
        in[0] = (uint8_t)dim;
        memcpy(in + 1, name, n);
        crypto_shorthash(out, in, n + 1, l->hkey);
        memcpy(&h, out, sizeof h);
        if (in != stack) free(in);
    } else {
        /* No memory for a long name: a plain FNV-1a of it, still per dimension. */
        h = 1469598103934665603ULL ^ (uint64_t)dim;
        for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)name[i]) * 1099511628211ULL;
    }
    return h ? h : 1;
}

/* A name's slot lives in its window: the PROBE slots from its hash's
 * position rounded down to a multiple of PROBE.  A window belongs wholly to
 * one stripe, so every name probing it takes the same mutex. */
static size_t window_of(const rl_table *t, uint64_t h) { return ((size_t)h & t->mask) / PROBE; }

static pthread_mutex_t *window_stripe(rl_table *t, uint64_t h) { return &t->mu[window_of(t, h) % STRIPES]; }

/* The slot of h in its window, found or taken (its stripe held). */
static rl_slot *slot_of(rl_limiter *l, rl_table *t, uint64_t h, int64_t now) {
    size_t base = window_of(t, h) * PROBE;
    rl_slot *victim = NULL;
    int64_t victim_full = INT64_MAX;
    for (size_t i = 0; i < PROBE; i++) {
        rl_slot *s = &t->slots[base + i];
        if (s->h == h) return s;
    }
    for (size_t i = 0; i < PROBE; i++) {
        rl_slot *s = &t->slots[base + i];
        int64_t full = s->tat_ops > s->tat_bytes ? s->tat_ops : s->tat_bytes;
        if (s->h == 0 || full <= now) {
            victim = s;
            victim_full = INT64_MIN;
            break;
        }
        if (full < victim_full) {
            victim = s;
            victim_full = full;
        }
    }
    assert(victim);
    if (victim->h && victim_full > now) atomic_fetch_add(&l->evictions, 1);
    victim->h = h;
    victim->tat_ops = victim->tat_bytes = now;
    return victim;
}

static double unit_ns(int64_t per_s) { return 1e9 / (double)per_s; }

static int64_t tau_ns(const rl_limiter *l, int64_t per_s) {
    /* The bucket holds burst_s seconds of the rate, and at least one unit. */
    double t = (double)l->cfg.burst_s * 1e9, one = unit_ns(per_s);
    return (int64_t)(t > one ? t : one);
}

/* Every dimension's limits for s: its override or the defaults, divided by
 * share (this gateway's part when Redis is down). */
static void limits_for(rl_limiter *l, const rl_subject *s, int share, rl_limits lim[RL__DIMS]) {
    for (int d = 0; d < RL__DIMS; d++) {
        lim[d] = s->name[d] ? limits_of(l, d, s->name[d]) : (rl_limits){0, 0};
        if (share > 1) {
            if (lim[d].ops_per_s > 0) lim[d].ops_per_s = lim[d].ops_per_s / share > 0 ? lim[d].ops_per_s / share : 1;
            if (lim[d].bytes_per_s > 0)
                lim[d].bytes_per_s = lim[d].bytes_per_s / share > 0 ? lim[d].bytes_per_s / share : 1;
        }
    }
}

/* One request of s against this gateway's own tables. */
static int local_admit(rl_limiter *l, const rl_subject *s, const rl_limits *lim, int64_t now, rl_refusal *why) {
    rl_slot *slot[RL__DIMS] = {0};
    pthread_mutex_t *held[RL__DIMS] = {0};
    int rc = 0;
    /* Lock every dimension's window in dimension order (each dimension has
     * its own mutexes, so the order cannot deadlock), check, then charge. */
    for (int d = 0; d < RL__DIMS; d++) {
        if (!s->name[d] || (lim[d].ops_per_s <= 0 && lim[d].bytes_per_s <= 0)) continue;
        uint64_t h = hash_of(l, d, s->name[d]);
        held[d] = window_stripe(&l->t[d], h);
        pthread_mutex_lock(held[d]);
        slot[d] = slot_of(l, &l->t[d], h, now);
    }
    for (int d = 0; d < RL__DIMS && rc == 0; d++) {
        if (!slot[d]) continue;
        int64_t wait = 0;
        if (lim[d].ops_per_s > 0) {
            int64_t tat = slot[d]->tat_ops > now ? slot[d]->tat_ops : now;
            int64_t next = tat + (int64_t)unit_ns(lim[d].ops_per_s);
            int64_t over = next - now - tau_ns(l, lim[d].ops_per_s);
            if (over > 0) wait = over;
        }
        if (lim[d].bytes_per_s > 0) {
            int64_t over = slot[d]->tat_bytes - now - tau_ns(l, lim[d].bytes_per_s);
            if (over > wait) wait = over;
        }
        if (wait > 0) {
            why->dim = d;
            why->retry_after_ms = (wait + 999999) / 1000000;
            rc = CAIRN_EBUSY;
        }
    }
    for (int d = 0; d < RL__DIMS; d++) {
        if (!slot[d]) continue;
        if (rc == 0 && lim[d].ops_per_s > 0) {
            int64_t tat = slot[d]->tat_ops > now ? slot[d]->tat_ops : now;
            slot[d]->tat_ops = tat + (int64_t)unit_ns(lim[d].ops_per_s);
        }
        pthread_mutex_unlock(held[d]);
    }
    return rc;
}

/* Every dimension's bucket holds burst_s seconds (microseconds, for Redis). */
static void taus_us(const rl_limiter *l, int64_t tau[RL__DIMS]) {
    for (int d = 0; d < RL__DIMS; d++) tau[d] = (int64_t)l->cfg.burst_s * 1000000;
}

int rl_admit(rl_limiter *l, const rl_subject *s, int64_t now, rl_refusal *why) {
    memset(why, 0, sizeof *why);
    if (!l) return 0;
    if (l->cfg.max_in_flight > 0 && atomic_fetch_add(&l->in_flight, 1) >= l->cfg.max_in_flight) {
        atomic_fetch_sub(&l->in_flight, 1);
        atomic_fetch_add(&l->limited[RL__DIMS], 1);
        why->dim = RL__DIMS;
        why->retry_after_ms = 1000;
        return CAIRN_EBUSY;
    }
    if (l->cfg.max_in_flight > 0) atomic_fetch_add(&l->admitted[RL__DIMS], 1);
    rl_limits lim[RL__DIMS];
    int rc;
    bool decided = false;
    if (l->remote) {
        limits_for(l, s, 1, lim);
        int64_t tau[RL__DIMS];
        taus_us(l, tau);
        rc = rl_remote_admit(l->remote, s, lim, tau, why, &decided);
        atomic_fetch_add(decided ? &l->shared_checks : &l->fallback_checks, 1);
    }
    if (!decided) {
        limits_for(l, s, l->remote ? rl_remote_gateways(l->remote) : 1, lim);
        rc = local_admit(l, s, lim, now, why);
    }
    for (int d = 0; d < RL__DIMS; d++)
        if (rc == 0 && s->name[d] && (lim[d].ops_per_s > 0 || lim[d].bytes_per_s > 0)) atomic_fetch_add(&l->admitted[d], 1);
    if (rc != 0) {
        atomic_fetch_add(&l->limited[why->dim], 1);
        if (l->cfg.max_in_flight > 0) atomic_fetch_sub(&l->in_flight, 1);
    }
    return rc;
}

void rl_release(rl_limiter *l) {
    if (l && l->cfg.max_in_flight > 0) atomic_fetch_sub(&l->in_flight, 1);
}

static int64_t local_charge(rl_limiter *l, const rl_subject *s, const rl_limits *lim, uint64_t n, int64_t now) {
    int64_t wait = 0;
    for (int d = 0; d < RL__DIMS; d++) {
        if (!s->name[d] || lim[d].bytes_per_s <= 0) continue;
        uint64_t h = hash_of(l, d, s->name[d]);
        pthread_mutex_t *mu = window_stripe(&l->t[d], h);
        pthread_mutex_lock(mu);
        rl_slot *slot = slot_of(l, &l->t[d], h, now);
        int64_t tat = slot->tat_bytes > now ? slot->tat_bytes : now;
        double cost = (double)n * unit_ns(lim[d].bytes_per_s);
        slot->tat_bytes = tat + (cost > 9e18 ? (int64_t)9e18 : (int64_t)cost);
        int64_t over = slot->tat_bytes - now - tau_ns(l, lim[d].bytes_per_s);
        pthread_mutex_unlock(mu);
        if (over > wait) wait = over;
    }
    return wait;
}

int64_t rl_charge(rl_limiter *l, const rl_subject *s, uint64_t n, int64_t now) {
    if (!l || n == 0) return 0;
    rl_limits lim[RL__DIMS];
    int64_t wait = 0;
    bool done = false;
    if (l->remote) {
        limits_for(l, s, 1, lim);
        int64_t tau[RL__DIMS];
        taus_us(l, tau);
        done = rl_remote_charge(l->remote, s, lim, tau, n, &wait) == 0;
        atomic_fetch_add(done ? &l->shared_checks : &l->fallback_checks, 1);
    }
    if (!done) {
        limits_for(l, s, l->remote ? rl_remote_gateways(l->remote) : 1, lim);
        wait = local_charge(l, s, lim, n, now);
    }
    for (int d = 0; d < RL__DIMS; d++) {
        if (!s->name[d] || lim[d].bytes_per_s <= 0) continue;
        atomic_fetch_add(&l->bytes[d], n);
        if (wait > 0) atomic_fetch_add(&l->throttled_ns[d], (uint64_t)wait);
    }
    return wait;
}

int rl_in_flight(const rl_limiter *l) { return l ? atomic_load(&((rl_limiter *)l)->in_flight) : 0; }

void rl_stats_get(const rl_limiter *l, rl_stats *st) {
    memset(st, 0, sizeof *st);
    if (!l) return;
    rl_limiter *m = (rl_limiter *)l;
    for (int d = 0; d <= RL__DIMS; d++) {
        st->admitted[d] = atomic_load(&m->admitted[d]);
        st->limited[d] = atomic_load(&m->limited[d]);
        if (d < RL__DIMS) {
            st->bytes[d] = atomic_load(&m->bytes[d]);
            st->throttled_ns[d] = atomic_load(&m->throttled_ns[d]);
        }
    }
    st->evictions = atomic_load(&m->evictions);
    st->in_flight = atomic_load(&m->in_flight);
    st->shared = m->remote != NULL;
    st->redis_up = m->remote && rl_remote_up(m->remote);
    st->gateways = m->remote ? rl_remote_gateways(m->remote) : 1;
    st->shared_checks = atomic_load(&m->shared_checks);
    st->fallback_checks = atomic_load(&m->fallback_checks);
}
