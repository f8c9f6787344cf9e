/*
 * test_cache.c — the L1 in-process cache (src/cache/cache.h), through its
 * public API only.
 *
 * What must hold: a get returns what was filled, or a miss; the entries never
 * weigh more than the capacity, whatever the workload; entries expire on the
 * cache's clock (injected here, so no test sleeps); a fill that began before
 * an invalidation, a flush or a newer fill never lands, even with the
 * tombstone window overflowing, and under concurrent writers no reader ever
 * sees a value older than the last invalidation that finished before its
 * read; bypass misses and refuses; concurrent misses on one key load once,
 * share a failure, give up at the deadline, and do not join a load that an
 * invalidation overtook; S3-FIFO keeps more hits than LRU on a Zipf trace
 * polluted by scans (hit counts of a fixed trace, not time); and, in the
 * fault build, every allocation that fails leaves the cache as it was
 * (CAIRN_ENOMEM), never half-changed.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"

/* ---- helpers ---------------------------------------------------------------- */

static _Atomic int64_t fake_now;

static int64_t fake_clock(void *ud) { return atomic_load((_Atomic int64_t *)ud); }

/* The defaults but for these, on the fake clock. */
static cache_options opts(cache_policy policy, size_t capacity, unsigned shards, int64_t ttl_ms) {
    cache_options o;
    cache_options_default(&o);
    o.policy = policy;
    o.capacity = capacity;
    o.shards = shards;
    o.ttl_ms = ttl_ms;
    o.clock = fake_clock;
    o.clock_ud = &fake_now;
    return o;
}

static cache *make_from(const cache_options *o) {
    cache *c = NULL;
    cr_assert_eq(cache_new(o, &c), 0);
    return c;
}

static cache *make(cache_policy policy, size_t capacity, unsigned shards, int64_t ttl_ms) {
    cache_options o = opts(policy, capacity, shards, ttl_ms);
    return make_from(&o);
}

static int fill_str(cache *c, const char *k, const char *v, uint64_t version) {
    return cache_fill(c, k, strlen(k), v, strlen(v), version, 0);
}

/* Fills with a version taken now: a reader that just read v. */
static int put_str(cache *c, const char *k, const char *v) { return fill_str(c, k, v, cache_version_begin(c)); }

/* The cached value as a NUL-terminated malloc'd string, or NULL on a miss. */
static char *get_str(cache *c, const char *k) {
    void *v = NULL;
    size_t n = 0;
    int rc = cache_get_alloc(c, k, strlen(k), &v, &n);
    if (rc == CAIRN_ENOTFOUND) return NULL;
    cr_assert_eq(rc, 0);
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memcpy(s, v, n);
    s[n] = '\0';
    free(v);
    return s;
}

static void expect_value(cache *c, const char *k, const char *want) {
    char *got = get_str(c, k);
    if (!want) cr_expect_null(got, "%s: expected a miss, got \"%s\"", k, got ? got : "");
    else cr_expect(got && strcmp(got, want) == 0, "%s: expected \"%s\", got \"%s\"", k, want, got ? got : "(miss)");
    free(got);
}

static cache_stats stats(cache *c) {
    cache_stats s;
    cache_stats_get(c, &s);
    return s;
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Polls the cache's counters until pred holds, for 10 s at most. */
static bool eventually(cache *c, bool (*pred)(const cache_stats *, long), long arg) {
    for (int i = 0; i < 10000; i++) {
        cache_stats s = stats(c);
        if (pred(&s, arg)) return true;
        sleep_ms(1);
    }
    return false;
}

static bool waits_reach(const cache_stats *s, long n) { return s->load_waits >= (uint64_t)n; }
static bool loads_reach(const cache_stats *s, long n) { return s->loads >= (uint64_t)n; }

/* A deterministic generator (xorshift64*), so traces are the same every run. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* ---- basics ------------------------------------------------------------------ */

Test(cache, a_get_returns_what_was_filled_or_misses) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    expect_value(c, "k", NULL);
    cr_assert_eq(put_str(c, "k", "value-1"), 0);
    expect_value(c, "k", "value-1");
    char small[3];
    size_t n = 0;
    cr_expect_eq(cache_get(c, "k", 1, small, sizeof small, &n), CAIRN_ETOOBIG);
    cr_expect_eq(n, 7, "the length needed");
    char big[16];
    cr_expect_eq(cache_get(c, "k", 1, big, sizeof big, &n), 0);
    cr_expect(n == 7 && memcmp(big, "value-1", 7) == 0);
    cr_assert_eq(put_str(c, "k", "value-2"), 0);
    expect_value(c, "k", "value-2");
    cr_assert_eq(put_str(c, "empty", ""), 0);
    expect_value(c, "empty", "");
    /* Keys are bytes, not strings. */
    cr_assert_eq(cache_fill(c, "a\0b", 3, "x", 1, cache_version_begin(c), 0), 0);
    cr_expect_eq(cache_get(c, "a\0c", 3, big, sizeof big, &n), CAIRN_ENOTFOUND);
    cr_expect_eq(cache_get(c, "a\0b", 3, big, sizeof big, &n), 0);
    cache_stats s = stats(c);
    cr_expect_eq(s.fills, 4);
    cr_expect_eq(s.entries, 3);
    cr_expect_eq(s.bytes, 3 * CACHE_ENTRY_OVERHEAD + 1 + 7 + 5 + 0 + 3 + 1);
    cr_expect_eq(s.misses, 2);
    cr_expect_eq(s.hits, 6);
    cr_expect_eq(cache_verify(c), 0);
    cache_free(c);
}

Test(cache, options_out_of_range_are_refused) {
    cache *c = NULL;
    cache_options bad[8];
    for (int i = 0; i < 8; i++) cache_options_default(&bad[i]);
    bad[0].shards = 3;           /* not a power of two */
    bad[1].shards = 512;         /* more than the hash's 8 bits pick */
    bad[2].capacity = 512;       /* under 1 KiB a shard */
    bad[2].shards = 1;
    bad[3].capacity = 64 << 10;  /* max_entry over a shard */
    bad[3].shards = 4;
    bad[3].max_entry = 32 << 10;
    bad[4].ttl_ms = -1;
    bad[5].policy = (cache_policy)7;
    bad[6].load_wait_ms = -1;
    bad[7].max_entry = CACHE_ENTRY_OVERHEAD; /* no room for a byte */
    for (int i = 0; i < 8; i++) cr_expect_eq(cache_new(&bad[i], &c), CAIRN_EINVAL, "case %d", i);
    cr_expect_null(c);
    cr_assert_eq(cache_new(NULL, &c), 0, "the defaults are valid");
    cr_expect_eq(stats(c).capacity, 64u << 20);
    cr_expect_eq(cache_fill(c, NULL, 1, "v", 1, 1, 0), CAIRN_EINVAL);
    cr_expect_eq(cache_fill(c, "k", 1, NULL, 1, 1, 0), CAIRN_EINVAL);
    cr_expect_eq(cache_fill(c, "k", 1, "v", 1, 1, -5), CAIRN_EINVAL);
    size_t n;
    cr_expect_eq(cache_get(c, "k", 1, NULL, 4, &n), CAIRN_EINVAL);
    cache_free(c);
}

Test(cache, an_entry_over_max_entry_is_not_stored) {
    cache_options o = opts(CACHE_POLICY_S3FIFO, 64 << 10, 1, 0);
    o.max_entry = 1024;
    cache *c = make_from(&o);
    char v[1024];
    memset(v, 'x', sizeof v);
    size_t fits = 1024 - CACHE_ENTRY_OVERHEAD - 1;
    cr_expect_eq(cache_fill(c, "k", 1, v, fits, cache_version_begin(c), 0), 0);
    cr_expect_eq(cache_fill(c, "k", 1, v, fits + 1, cache_version_begin(c), 0), CAIRN_ETOOBIG);
    size_t n = 0;
    char out[1024];
    cr_expect_eq(cache_get(c, "k", 1, out, sizeof out, &n), 0);
    cr_expect_eq(n, fits, "the refused fill left the old entry");
    cr_expect_eq(stats(c).refused_fills, 1);
    cache_free(c);
}

/* ---- the byte bound and consistency under random workloads --------------------- */

#define NKEYS 3000
#define MAX_PENDING 64

typedef struct {
    int key;
    uint64_t version;
    unsigned gen;     /* the backend generation the slow reader saw */
} pending_read;

/* A value encodes its key and generation and has a size that depends on both. */
static size_t value_for(int key, unsigned gen, unsigned char *out) {
    size_t n = (size_t)((key * 131u + gen * 71u) % 900);
    int w = snprintf((char *)out, 32, "%d:%u:", key, gen);
    for (size_t i = (size_t)w; i < n; i++) out[i] = (unsigned char)(key + gen + i);
    return n < (size_t)w ? (size_t)w : n;
}

/*
 * One thread, many operations in random order against a "backend" (a
 * generation per key): reads that miss fill at once or later (a slow reader
 * whose fill lands after other operations), writes that bump the backend and
 * invalidate, flushes, bypass switches and clock jumps past the TTL.  After
 * every operation the weight is within capacity, and a hit always returns
 * the backend's current value: no write is ever undone by a slow fill.
 */
static void random_workload(cache_policy policy, size_t capacity, unsigned shards, unsigned tombstones,
                            uint64_t seed) {
    cache_options o = opts(policy, capacity, shards, 5000);
    o.max_entry = capacity / shards / 4;
    o.tombstones = tombstones;
    cache *c = make_from(&o);
    static unsigned backend[NKEYS];
    memset(backend, 0, sizeof backend);
    pending_read pending[MAX_PENDING];
    int npending = 0;
    unsigned char want[1024], got[1024];
    uint64_t rng = seed;
    atomic_store(&fake_now, 0);
    uint64_t stale = 0;
    for (int op = 0; op < 200000; op++) {
        uint64_t r = rng_next(&rng);
        int key = (int)(r % NKEYS);
        if (key % 3) key %= 100; /* two keys in three among a hot hundred */
        char k[16];
        size_t klen = (size_t)snprintf(k, sizeof k, "key-%d", key);
        unsigned what = (unsigned)(r >> 32) % 1000;
        if (what < 700) { /* read */
            size_t n = 0;
            int rc = cache_get(c, k, klen, got, sizeof got, &n);
            if (rc == 0) {
                size_t wn = value_for(key, backend[key], want);
                cr_assert(n == wn && memcmp(got, want, n) == 0, "op %d: key %d: a value that is not the backend's",
                          op, key);
                continue;
            }
            cr_assert_eq(rc, CAIRN_ENOTFOUND);
            pending_read p = {key, cache_version_begin(c), backend[key]};
            if (npending < MAX_PENDING && (r & 1)) {
                pending[npending++] = p; /* lands later */
                continue;
            }
            size_t wn = value_for(key, p.gen, want);
            rc = cache_fill(c, k, klen, want, wn, p.version, 0);
            cr_assert(rc == 0 || rc == CAIRN_ETOOBIG || rc == CAIRN_EBUSY || rc == CAIRN_ECONFLICT, "rc %d", rc);
        } else if (what < 850 && npending) { /* a slow reader's fill lands */
            int i = (int)(r % (uint64_t)npending);
            pending_read p = pending[i];
            pending[i] = pending[--npending];
            size_t pk = (size_t)snprintf(k, sizeof k, "key-%d", p.key);
            size_t wn = value_for(p.key, p.gen, want);
            int rc = cache_fill(c, k, pk, want, wn, p.version, 0);
            if (p.gen != backend[p.key])
                cr_assert(rc != 0, "op %d: a fill of generation %u landed after generation %u was written", op,
                          p.gen, backend[p.key]);
            if (rc == CAIRN_ECONFLICT) stale++;
        } else if (what < 980) { /* write: commit, then invalidate */
            backend[key]++;
            cache_invalidate(c, k, klen);
        } else if (what < 981) {
            cache_invalidate_all(c);
        } else if (what < 982) {
            cache_set_bypass(c, !cache_bypassed(c));
        } else {
            atomic_fetch_add(&fake_now, (int64_t)(r % 3000));
        }
        cache_stats s = stats(c);
        cr_assert_leq(s.bytes, capacity, "op %d: %llu bytes in a cache of %zu", op, (unsigned long long)s.bytes,
                      capacity);
        if (op % 5000 == 0) cr_assert_eq(cache_verify(c), 0, "op %d", op);
    }
    cache_stats s = stats(c);
    cr_expect_gt(s.evictions, 1000, "the workload did not press on the bound");
    cr_expect_gt(s.hits, 1000);
    cr_expect_gt(stale, 100, "the workload did not exercise stale fills");
    cr_expect_eq(cache_verify(c), 0);
    cache_free(c);
}

Test(cache, s3fifo_stays_within_bytes_and_never_serves_an_overwritten_value) {
    random_workload(CACHE_POLICY_S3FIFO, 48 << 10, 1, 64, 1);
    random_workload(CACHE_POLICY_S3FIFO, 96 << 10, 4, 4096, 2);
}

Test(cache, lru_stays_within_bytes_and_never_serves_an_overwritten_value) {
    random_workload(CACHE_POLICY_LRU, 48 << 10, 1, 64, 3);
    random_workload(CACHE_POLICY_LRU, 96 << 10, 4, 4096, 4);
}

/* ---- TTL ---------------------------------------------------------------------- */

Test(cache, entries_expire_on_the_cache_clock) {
    atomic_store(&fake_now, 1000);
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 1, 100);
    cr_assert_eq(put_str(c, "default", "d"), 0);
    cr_assert_eq(cache_fill(c, "own", 3, "o", 1, cache_version_begin(c), 30), 0);
    atomic_store(&fake_now, 1029);
    expect_value(c, "own", "o");
    atomic_store(&fake_now, 1030);
    expect_value(c, "own", NULL);
    expect_value(c, "default", "d");
    atomic_store(&fake_now, 1099);
    expect_value(c, "default", "d");
    atomic_store(&fake_now, 1100);
    expect_value(c, "default", NULL);
    cache_stats s = stats(c);
    cr_expect_eq(s.expirations, 2);
    cr_expect_eq(s.entries, 0);
    cr_expect_eq(s.bytes, 0);
    cache_free(c);

    c = make(CACHE_POLICY_LRU, 1 << 20, 1, 0);
    cr_assert_eq(put_str(c, "forever", "f"), 0);
    atomic_store(&fake_now, (int64_t)1 << 50);
    expect_value(c, "forever", "f");
    cache_free(c);
}

/* ---- version stamps ---------------------------------------------------------------- */

Test(cache, a_fill_begun_before_an_invalidation_is_refused) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    cr_assert_eq(put_str(c, "k", "v1"), 0);
    uint64_t slow = cache_version_begin(c); /* a reader starts, reads v1 ... */
    cache_invalidate(c, "k", 1);            /* ... a writer commits v2 and invalidates ... */
    expect_value(c, "k", NULL);
    cr_expect_eq(fill_str(c, "k", "v1", slow), CAIRN_ECONFLICT, "... and the slow reader's v1 must not land");
    expect_value(c, "k", NULL);
    cr_expect_eq(put_str(c, "k", "v2"), 0, "a read begun after the invalidation fills");
    expect_value(c, "k", "v2");
    cr_expect_eq(fill_str(c, "k", "v1", slow), CAIRN_ECONFLICT, "nor over the newer entry");
    expect_value(c, "k", "v2");
    cache_stats s = stats(c);
    cr_expect_eq(s.stale_fills, 2);
    cr_expect_eq(s.invalidations, 1);
    cache_free(c);
}

Test(cache, an_older_fill_never_replaces_a_newer_entry) {
    cache *c = make(CACHE_POLICY_LRU, 1 << 20, 0, 0);
    uint64_t v1 = cache_version_begin(c);
    cache_invalidate(c, "other", 5); /* the counter moves on */
    uint64_t v2 = cache_version_begin(c);
    cr_assert_lt(v1, v2);
    cr_assert_eq(fill_str(c, "k", "new", v2), 0);
    cr_expect_eq(fill_str(c, "k", "old", v1), CAIRN_ECONFLICT);
    expect_value(c, "k", "new");
    cr_expect_eq(fill_str(c, "k", "same", v2), 0, "the same version may refresh");
    expect_value(c, "k", "same");
    cache_free(c);
}

Test(cache, forgotten_tombstones_still_refuse_older_fills) {
    cache_options o = opts(CACHE_POLICY_S3FIFO, 1 << 20, 1, 0);
    o.tombstones = 4; /* one set of four */
    cache *c = make_from(&o);
    uint64_t slow = cache_version_begin(c);
    cache_invalidate(c, "k", 1);
    char k[16];
    for (int i = 0; i < 100; i++) cache_invalidate(c, k, (size_t)snprintf(k, sizeof k, "other-%d", i));
    cr_expect_eq(fill_str(c, "k", "old", slow), CAIRN_ECONFLICT, "k's tombstone is gone, its rule is not");
    cr_expect_eq(fill_str(c, "never-invalidated", "x", slow), CAIRN_ECONFLICT,
                 "the price: older fills of any key are refused too");
    cr_expect_eq(put_str(c, "k", "new"), 0);
    expect_value(c, "k", "new");
    cache_free(c);
}

/* ---- write-through (cache_invalidate_fill) ------------------------------------------------- */

static int wfill_str(cache *c, const char *k, const char *v, uint64_t version) {
    return cache_invalidate_fill(c, k, strlen(k), v, strlen(v), version, 0);
}

Test(cache, a_writer_puts_its_value_in_place_of_the_old_one) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    cr_assert_eq(put_str(c, "k", "v1"), 0);
    uint64_t w = cache_version_begin(c); /* the writer, before its commit */
    cr_expect_eq(wfill_str(c, "k", "v2", w), 0);
    expect_value(c, "k", "v2");
    cache_stats s = stats(c);
    cr_expect_eq(s.invalidations, 1, "it is an invalidation too");
    cr_expect_eq(s.fills, 2);
    cache_free(c);
}

Test(cache, a_write_that_another_write_overtook_leaves_the_key_empty) {
    cache *c = make(CACHE_POLICY_LRU, 1 << 20, 0, 0);
    cr_assert_eq(put_str(c, "k", "v0"), 0);
    uint64_t w1 = cache_version_begin(c); /* writer 1 begins ... */
    uint64_t w2 = cache_version_begin(c); /* ... writer 2 begins, commits after writer 1 ... */
    cr_expect_eq(wfill_str(c, "k", "v2", w2), 0, "writer 2 invalidates first: nothing came after it");
    expect_value(c, "k", "v2");
    cr_expect_eq(wfill_str(c, "k", "v1", w1), CAIRN_ECONFLICT, "writer 1's value may be the older one");
    expect_value(c, "k", NULL);
    /* A plain invalidation (a write heard from another gateway) after the
     * writer's version: the same. */
    uint64_t w3 = cache_version_begin(c);
    cache_invalidate(c, "k", 1);
    cr_expect_eq(wfill_str(c, "k", "v3", w3), CAIRN_ECONFLICT);
    expect_value(c, "k", NULL);
    /* So does a flush. */
    uint64_t w4 = cache_version_begin(c);
    cache_invalidate_all(c);
    cr_expect_eq(wfill_str(c, "k", "v4", w4), CAIRN_ECONFLICT);
    expect_value(c, "k", NULL);
    cr_expect_eq(stats(c).stale_fills, 3);
    cache_free(c);
}

Test(cache, a_read_begun_before_a_write_through_cannot_replace_it) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    uint64_t reader = cache_version_begin(c); /* a reader read the old value ... */
    uint64_t w = cache_version_begin(c);
    cr_assert_eq(wfill_str(c, "k", "new", w), 0);
    cr_expect_eq(fill_str(c, "k", "old", reader), CAIRN_ECONFLICT, "... and must not land over the new one");
    expect_value(c, "k", "new");
    cr_expect_eq(put_str(c, "k", "newer-read"), 0, "a read begun after may refresh it");
    expect_value(c, "k", "newer-read");
    cache_free(c);
}

Test(cache, a_write_through_that_cannot_store_still_invalidates) {
    cache_options o = opts(CACHE_POLICY_S3FIFO, 64 << 10, 1, 0);
    o.max_entry = 1024;
    cache *c = make_from(&o);
    cr_assert_eq(put_str(c, "k", "old"), 0);
    char big[2048];
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    cr_expect_eq(wfill_str(c, "k", big, cache_version_begin(c)), CAIRN_ETOOBIG);
    expect_value(c, "k", NULL);
    cr_assert_eq(put_str(c, "k", "old"), 0);
    cache_set_bypass(c, true);
    cr_expect_eq(wfill_str(c, "k", "v", cache_version_begin(c)), CAIRN_EBUSY);
    cache_set_bypass(c, false);
    expect_value(c, "k", NULL);
    /* Bad arguments change nothing. */
    cr_assert_eq(put_str(c, "k", "old"), 0);
    cr_expect_eq(cache_invalidate_fill(c, NULL, 0, "v", 1, 0, 0), CAIRN_EINVAL);
    cr_expect_eq(cache_invalidate_fill(c, "k", 1, NULL, 1, 0, 0), CAIRN_EINVAL);
    cr_expect_eq(cache_invalidate_fill(NULL, "k", 1, "v", 1, 0, 0), CAIRN_EINVAL);
    expect_value(c, "k", "old");
    cache_free(c);
}

/* ---- flush and bypass ---------------------------------------------------------------- */

Test(cache, a_flush_drops_everything_and_refuses_older_fills) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 4, 0);
    char k[16];
    for (int i = 0; i < 50; i++) cr_assert_eq(put_str(c, (snprintf(k, sizeof k, "k%d", i), k), "v"), 0);
    uint64_t slow = cache_version_begin(c);
    cache_invalidate_all(c);
    cache_stats s = stats(c);
    cr_expect_eq(s.entries, 0);
    cr_expect_eq(s.bytes, 0);
    cr_expect_eq(s.flushes, 1);
    expect_value(c, "k7", NULL);
    for (int i = 0; i < 50; i++)
        cr_expect_eq(fill_str(c, (snprintf(k, sizeof k, "k%d", i), k), "old", slow), CAIRN_ECONFLICT);
    cr_expect_eq(put_str(c, "k7", "new"), 0);
    expect_value(c, "k7", "new");
    cr_expect_eq(cache_verify(c), 0);
    cache_free(c);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;             /* loaders wait for this */
    atomic_int calls;
    int rc;                /* what the loader returns */
    const char *value;
} gate;

#define GATE_INIT(v) {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0, (v)}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gated_loader(void *ud, const void *key, size_t klen, buf_t *out) {
    (void)key;
    (void)klen;
    gate *g = ud;
    atomic_fetch_add(&g->calls, 1);
    pthread_mutex_lock(&g->mu);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    if (g->rc) return g->rc;
    buf_puts(out, g->value);
    return 0;
}

/* cache_get_or_load of key into a NUL-terminated string (*out, malloc'd). */
static int load_str(cache *c, const char *key, gate *g, char **out) {
    void *v = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = cache_get_or_load(c, key, strlen(key), gated_loader, g, &v, &n);
    if (rc) return rc;
    cr_assert_not_null(v);
    *out = calloc(1, n + 1);
    cr_assert_not_null(*out);
    memcpy(*out, v, n);
    free(v);
    return 0;
}

Test(cache, bypass_misses_refuses_and_flushes_both_ways) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    cr_assert_eq(put_str(c, "k", "before"), 0);
    cache_set_bypass(c, true);
    cr_expect(cache_bypassed(c));
    expect_value(c, "k", NULL);
    cr_expect_eq(stats(c).entries, 0, "entering bypass flushes");
    uint64_t during = cache_version_begin(c);
    cr_expect_eq(fill_str(c, "k", "during", during), CAIRN_EBUSY);
    gate g = GATE_INIT("loaded");
    g.open = true;
    char *v = NULL;
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(load_str(c, "k", &g, &v), 0);
        cr_expect_str_eq(v, "loaded");
        free(v);
    }
    cr_expect_eq(atomic_load(&g.calls), 2, "nothing is cached in bypass");
    cache_set_bypass(c, false);
    cr_expect_not(cache_bypassed(c));
    cr_expect_eq(fill_str(c, "k", "during", during), CAIRN_ECONFLICT,
                 "a read made while invalidations went unseen must not land after bypass");
    cr_expect_eq(put_str(c, "k", "after"), 0);
    expect_value(c, "k", "after");
    cache_stats s = stats(c);
    cr_expect_eq(s.flushes, 2);
    cr_expect_eq(s.refused_fills, 3, "the direct fill and the two loads' fills");
    cache_free(c);
}

/* ---- single flight --------------------------------------------------------------------- */

#define NTHREADS 16

typedef struct {
    cache *c;
    gate *g;
    const char *key;
    int rc;
    void *val;             /* malloc'd by the cache */
    size_t vlen;
} caller;

/* Allocates nothing of its own, so that the fault loops count only the cache's. */
static void *caller_main(void *arg) {
    caller *w = arg;
    w->rc = cache_get_or_load(w->c, w->key, strlen(w->key), gated_loader, w->g, &w->val, &w->vlen);
    return NULL;
}

static bool caller_got(const caller *w, const char *want) {
    return w->rc == 0 && w->val && w->vlen == strlen(want) && memcmp(w->val, want, w->vlen) == 0;
}

/* Starts n callers of key, waits until all but the leader wait on its load,
 * opens the gate and joins them. */
static void stampede(cache *c, gate *g, const char *key, caller *w, int n) {
    pthread_t t[NTHREADS];
    for (int i = 0; i < n; i++) {
        w[i] = (caller){.c = c, .g = g, .key = key};
        cr_assert_eq(pthread_create(&t[i], NULL, caller_main, &w[i]), 0);
    }
    cr_assert(eventually(c, waits_reach, n - 1), "the callers never all waited");
    gate_open(g);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

Test(cache, concurrent_misses_on_one_key_load_it_once) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    gate g = GATE_INIT("the-value");
    caller w[NTHREADS];
    stampede(c, &g, "hot", w, NTHREADS);
    cr_expect_eq(atomic_load(&g.calls), 1, "%d backend loads for one key", atomic_load(&g.calls));
    for (int i = 0; i < NTHREADS; i++) {
        cr_expect_eq(w[i].rc, 0, "caller %d: %d", i, w[i].rc);
        cr_expect(caller_got(&w[i], "the-value"), "caller %d", i);
        free(w[i].val);
    }
    expect_value(c, "hot", "the-value");
    cache_stats s = stats(c);
    cr_expect_eq(s.loads, 1);
    cr_expect_eq(s.load_waits, NTHREADS - 1);
    cr_expect_eq(s.fills, 1);
    char *v = NULL;
    cr_expect_eq(load_str(c, "hot", &g, &v), 0);
    cr_expect_str_eq(v, "the-value");
    free(v);
    cr_expect_eq(atomic_load(&g.calls), 1, "a hit does not load");
    cache_free(c);
}

Test(cache, a_failed_load_reaches_every_waiter_and_is_not_cached) {
    cache *c = make(CACHE_POLICY_LRU, 1 << 20, 0, 0);
    gate g = GATE_INIT("unused");
    g.rc = CAIRN_EDB;
    caller w[NTHREADS];
    stampede(c, &g, "k", w, NTHREADS);
    cr_expect_eq(atomic_load(&g.calls), 1);
    for (int i = 0; i < NTHREADS; i++) {
        cr_expect_eq(w[i].rc, CAIRN_EDB, "caller %d: %d", i, w[i].rc);
        cr_expect_null(w[i].val);
    }
    expect_value(c, "k", NULL);
    cache_stats s = stats(c);
    cr_expect_eq(s.load_errors, 1);
    cr_expect_eq(s.entries, 0);
    g.rc = 0;
    g.value = "second";
    char *v = NULL;
    cr_expect_eq(load_str(c, "k", &g, &v), 0, "the next caller loads again");
    cr_expect_str_eq(v, "second");
    free(v);
    cr_expect_eq(atomic_load(&g.calls), 2);
    cache_free(c);
}

Test(cache, a_waiter_gives_up_at_the_deadline_and_the_load_goes_on) {
    cache_options o = opts(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    o.load_wait_ms = 50;
    cache *c = make_from(&o);
    gate g = GATE_INIT("slow");
    caller leader = {.c = c, .g = &g, .key = "k"};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, caller_main, &leader), 0);
    cr_assert(eventually(c, loads_reach, 1));
    char *v = NULL;
    cr_expect_eq(load_str(c, "k", &g, &v), CAIRN_ETIMEDOUT);
    cr_expect_null(v);
    gate_open(&g);
    pthread_join(t, NULL);
    cr_expect_eq(leader.rc, 0);
    cr_expect(caller_got(&leader, "slow"));
    free(leader.val);
    expect_value(c, "k", "slow");
    cache_stats s = stats(c);
    cr_expect_eq(s.load_timeouts, 1);
    cr_expect_eq(atomic_load(&g.calls), 1);
    cache_free(c);
}

Test(cache, a_caller_after_an_invalidation_does_not_join_the_older_load) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    gate old = GATE_INIT("old");
    caller leader = {.c = c, .g = &old, .key = "k"};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, caller_main, &leader), 0);
    cr_assert(eventually(c, loads_reach, 1));
    cache_invalidate(c, "k", 1); /* a write committed while the load ran */
    gate fresh = GATE_INIT("new");
    fresh.open = true;
    char *v = NULL;
    cr_expect_eq(load_str(c, "k", &fresh, &v), 0);
    cr_expect_str_eq(v, "new", "joined a load that began before the write");
    free(v);
    gate_open(&old);
    pthread_join(t, NULL);
    cr_expect(caller_got(&leader, "old"), "the overlapping caller gets its read");
    free(leader.val);
    expect_value(c, "k", "new");
    cr_expect_eq(stats(c).stale_fills, 1, "the old load's fill was refused");
    cache_free(c);
}

static int positive_loader(void *ud, const void *key, size_t klen, buf_t *out) {
    (void)ud, (void)key, (void)klen, (void)out;
    return 1;
}

Test(cache, a_loader_that_breaks_the_error_convention_still_fails) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 0, 0);
    void *v = NULL;
    size_t n = 0;
    cr_expect_eq(cache_get_or_load(c, "k", 1, positive_loader, NULL, &v, &n), CAIRN_EIO);
    cr_expect_null(v);
    expect_value(c, "k", NULL);
    cache_free(c);
}

/* ---- concurrency: no reader sees a write undone ---------------------------------------- */

#define CKEYS 64

typedef struct {
    cache *c;
    _Atomic unsigned gen[CKEYS];  /* the backend */
    _Atomic unsigned done[CKEYS]; /* generations whose invalidation has returned */
    atomic_long violations;
    uint64_t seed;
} shared_state;

static void atomic_max(_Atomic unsigned *p, unsigned v) {
    unsigned cur = atomic_load(p);
    while (cur < v && !atomic_compare_exchange_weak(p, &cur, v)) {
    }
}

static int backend_loader(void *ud, const void *key, size_t klen, buf_t *out) {
    shared_state *st = ud;
    int k = atoi((const char *)key + 2);
    (void)klen;
    buf_printf(out, "%u", atomic_load(&st->gen[k]));
    return 0;
}

/* A reader: takes the floor (the newest generation whose invalidation has
 * returned), then reads through the cache; it must see the floor or newer. */
static void read_one(shared_state *st, int k, const char *key, size_t klen) {
    unsigned floor = atomic_load(&st->done[k]);
    void *v = NULL;
    size_t n = 0;
    if (cache_get_or_load(st->c, key, klen, backend_loader, st, &v, &n)) {
        atomic_fetch_add(&st->violations, 1);
        return;
    }
    char s[16] = {0};
    memcpy(s, v, n < 15 ? n : 15);
    free(v);
    if ((unsigned)strtoul(s, NULL, 10) < floor) atomic_fetch_add(&st->violations, 1);
}

/* A writer: commits (bumps the backend), invalidates, then raises the floor. */
static void write_one(shared_state *st, int k, const char *key, size_t klen) {
    unsigned g = atomic_fetch_add(&st->gen[k], 1) + 1;
    cache_invalidate(st->c, key, klen);
    atomic_max(&st->done[k], g);
}

static void *worker_main(void *arg) {
    shared_state *st = arg;
    uint64_t rng = atomic_fetch_add((_Atomic uint64_t *)&st->seed, 7919);
    for (int i = 0; i < 40000; i++) {
        uint64_t r = rng_next(&rng);
        int k = (int)(r % CKEYS);
        char key[16];
        size_t klen = (size_t)snprintf(key, sizeof key, "k-%d", k);
        unsigned what = (unsigned)(r >> 32) % 1000;
        if (what < 940) read_one(st, k, key, klen);
        else if (what < 999) write_one(st, k, key, klen);
        else cache_invalidate_all(st->c);
    }
    return NULL;
}

Test(cache, under_concurrent_writers_no_reader_sees_an_invalidated_value) {
    for (int p = 0; p < 2; p++) {
        static shared_state st;
        memset(&st, 0, sizeof st);
        st.seed = 12345;
        st.c = make(p ? CACHE_POLICY_LRU : CACHE_POLICY_S3FIFO, 16 << 10, 2, 0);
        pthread_t t[4];
        for (int i = 0; i < 4; i++) cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &st), 0);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        cr_expect_eq(atomic_load(&st.violations), 0, "%s: %ld reads older than a finished invalidation",
                     p ? "lru" : "s3fifo", atomic_load(&st.violations));
        cache_stats s = stats(st.c);
        cr_expect_gt(s.hits, 10000, "%s: %llu hits", p ? "lru" : "s3fifo", (unsigned long long)s.hits);
        cr_expect_leq(s.bytes, s.capacity);
        cr_expect_eq(cache_verify(st.c), 0);
        cache_free(st.c);
    }
}

/* ---- policy: scan resistance --------------------------------------------------------------- */

/* Hits of one policy on a fixed trace: Zipf(0.99) over 5000 hot keys with,
 * every 2000 requests, a sequential scan of 1500 keys never seen again; a
 * cache of about 500 entries (100-byte values), one shard. */
static uint64_t trace_hits(cache_policy policy, bool scans) {
    enum { HOT = 5000, REQUESTS = 200000, PERIOD = 2000, SCAN = 1500, VLEN = 100 };
    static double cdf[HOT];
    double sum = 0;
    for (int i = 0; i < HOT; i++) cdf[i] = (sum += 1.0 / pow(i + 1, 0.99));
    cache *c = make(policy, 500 * (CACHE_ENTRY_OVERHEAD + 12 + VLEN), 1, 0);
    char val[VLEN];
    memset(val, 'v', sizeof val);
    uint64_t rng = 42, cold = 0;
    for (int i = 0; i < REQUESTS; i++) {
        char k[24];
        size_t klen;
        if (scans && i % PERIOD == 0) {
            for (int j = 0; j < SCAN; j++) {
                klen = (size_t)snprintf(k, sizeof k, "c%llu", (unsigned long long)cold++);
                size_t n;
                if (cache_get(c, k, klen, val, sizeof val, &n) != 0)
                    cache_fill(c, k, klen, val, VLEN, cache_version_begin(c), 0);
            }
        }
        double u = (double)(rng_next(&rng) >> 11) / 9007199254740992.0 * sum;
        int lo = 0, hi = HOT - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (cdf[mid] < u) lo = mid + 1;
            else hi = mid;
        }
        klen = (size_t)snprintf(k, sizeof k, "h%d", lo);
        size_t n;
        if (cache_get(c, k, klen, val, sizeof val, &n) != 0)
            cache_fill(c, k, klen, val, VLEN, cache_version_begin(c), 0);
    }
    uint64_t hits = stats(c).hits;
    cache_free(c);
    return hits;
}

Test(cache, s3fifo_keeps_more_hits_than_lru_on_a_scan_polluted_zipf_trace) {
    uint64_t s3 = trace_hits(CACHE_POLICY_S3FIFO, true), lru = trace_hits(CACHE_POLICY_LRU, true);
    cr_expect_gt(s3, lru + lru / 8, "S3-FIFO %llu hits, LRU %llu", (unsigned long long)s3, (unsigned long long)lru);
    uint64_t s3_clean = trace_hits(CACHE_POLICY_S3FIFO, false), lru_clean = trace_hits(CACHE_POLICY_LRU, false);
    cr_expect_geq(s3_clean, lru_clean, "without scans: S3-FIFO %llu hits, LRU %llu", (unsigned long long)s3_clean,
                  (unsigned long long)lru_clean);
}

/* ---- allocation failures (fault build) -------------------------------------------------------- */

#if CAIRN_FAULT_BUILD

#include "fault_harness.h"

#if ALLOC_FAILURES

#define MAX_N 10000

static const fail_kind kinds[] = {FAIL_ALLOC, FAIL_ALLOC_ALL};

/* Runs op with the nth allocation failing, for every kind and n = 1, 2, ...
 * until op no longer reaches the nth; check(rc, hit, ud) judges each run.
 * Returns how many runs failed an allocation. */
static int alloc_loop(int (*op)(void *ud), void (*check)(void *ud, int rc, bool hit, int n), void *ud) {
    int failed = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        failing = kinds[k];
        int n = 1;
        for (; n < MAX_N; n++) {
            alloc_arm(n);
            int rc = op(ud);
            bool hit = injected_at(NULL);
            alloc_arm(0);
            if (rc == CAIRN_ENOMEM) {
                cr_assert(hit, "allocation %d: ENOMEM with nothing failing", n);
                failed++;
            }
            check(ud, rc, hit, n);
            if (!hit) break;
        }
        cr_assert_lt(n, MAX_N);
    }
    failing = FAIL_IO;
    return failed;
}

TestSuite(cache_allocs, .init = log_capture);

static int op_new(void *ud) { return cache_new(NULL, (cache **)ud); }

static void check_new(void *ud, int rc, bool hit, int n) {
    (void)hit;
    cache **c = ud;
    if (rc == 0) {
        cr_assert_not_null(*c, "allocation %d", n);
        cr_assert_eq(put_str(*c, "k", "v"), 0);
        expect_value(*c, "k", "v");
        cache_free(*c);
    } else {
        cr_assert_eq(rc, CAIRN_ENOMEM, "allocation %d: %d", n, rc);
        cr_assert_null(*c);
    }
    *c = NULL;
}

Test(cache_allocs, creating_a_cache_out_of_memory_is_enomem) {
    cache *c = NULL;
    cr_expect_gt(alloc_loop(op_new, check_new, &c), 0);
}

/* A cache of one shard holding 16 keys, so that the next new key grows the
 * hash table, and "k0" = "old". */
typedef struct {
    cache *c;
    const char *key;
} fill_case;

static cache *sixteen(void) {
    cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 1, 0);
    char k[8];
    for (int i = 0; i < 16; i++) cr_assert_eq(put_str(c, (snprintf(k, sizeof k, "k%d", i), k), "old"), 0);
    return c;
}

static int op_fill(void *ud) {
    fill_case *f = ud;
    return put_str(f->c, f->key, "new");
}

static void check_fill(void *ud, int rc, bool hit, int n) {
    (void)hit;
    fill_case *f = ud;
    bool existed = strcmp(f->key, "k0") == 0;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "allocation %d: %d", n, rc);
    expect_value(f->c, f->key, rc == 0 ? "new" : existed ? "old" : NULL);
    cr_assert_eq(stats(f->c).entries, rc == 0 && !existed ? 17u : 16u, "allocation %d", n);
    cr_assert_eq(cache_verify(f->c), 0, "allocation %d", n);
    for (int i = 1; i < 16; i++) {
        char k[8];
        expect_value(f->c, (snprintf(k, sizeof k, "k%d", i), k), "old");
    }
    cache_free(f->c);
    f->c = sixteen();
}

Test(cache_allocs, a_fill_out_of_memory_changes_nothing) {
    fill_case f = {sixteen(), "k0"}; /* replaces */
    cr_expect_gt(alloc_loop(op_fill, check_fill, &f), 0);
    f.key = "k16"; /* adds, and grows the table (whose failure is no error) */
    cr_expect_gt(alloc_loop(op_fill, check_fill, &f), 0);
    cache_free(f.c);
}

static int op_write_fill(void *ud) {
    fill_case *f = ud;
    return cache_invalidate_fill(f->c, f->key, strlen(f->key), "new", 3, cache_version_begin(f->c), 0);
}

/* Out of memory, a write-through still invalidates: the key is empty, never
 * the old value. */
static void check_write_fill(void *ud, int rc, bool hit, int n) {
    (void)hit;
    fill_case *f = ud;
    bool existed = strcmp(f->key, "k0") == 0;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "allocation %d: %d", n, rc);
    expect_value(f->c, f->key, rc == 0 ? "new" : NULL);
    cr_assert_eq(stats(f->c).entries, rc == 0 ? (existed ? 16u : 17u) : (existed ? 15u : 16u), "allocation %d", n);
    cr_assert_eq(cache_verify(f->c), 0, "allocation %d", n);
    cache_free(f->c);
    f->c = sixteen();
}

Test(cache_allocs, a_write_through_out_of_memory_still_invalidates) {
    fill_case f = {sixteen(), "k0"};
    cr_expect_gt(alloc_loop(op_write_fill, check_write_fill, &f), 0);
    f.key = "k16";
    cr_expect_gt(alloc_loop(op_write_fill, check_write_fill, &f), 0);
    cache_free(f.c);
}

/* Passes rc on; on success, checks the value a call returned and frees it. */
static int returned(int rc, void *v, size_t n, const char *want) {
    if (rc == 0) {
        cr_assert(v && n == strlen(want) && memcmp(v, want, n) == 0, "a wrong value");
        free(v);
    }
    return rc;
}

static int op_get_alloc(void *ud) {
    fill_case *f = ud;
    void *v = NULL;
    size_t n = 0;
    int rc = cache_get_alloc(f->c, f->key, strlen(f->key), &v, &n);
    return returned(rc, v, n, "old");
}

static void check_get(void *ud, int rc, bool hit, int n) {
    (void)hit;
    fill_case *f = ud;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "allocation %d: %d", n, rc);
    expect_value(f->c, f->key, "old");
    cr_assert_eq(cache_verify(f->c), 0);
}

Test(cache_allocs, a_get_out_of_memory_is_enomem_and_keeps_the_entry) {
    fill_case f = {sixteen(), "k3"};
    cr_expect_gt(alloc_loop(op_get_alloc, check_get, &f), 0);
    cache_free(f.c);
}

typedef struct {
    cache *c;
    const char *value;     /* what the loader returns */
    atomic_int calls;
} load_case;

static int text_loader(void *ud, const void *key, size_t klen, buf_t *out) {
    (void)key;
    (void)klen;
    load_case *l = ud;
    atomic_fetch_add(&l->calls, 1);
    buf_puts(out, l->value);
    return 0;
}

static int op_load(void *ud) {
    load_case *l = ud;
    void *v = NULL;
    size_t n = 0;
    int rc = cache_get_or_load(l->c, "k", 1, text_loader, l, &v, &n);
    return returned(rc, v, n, l->value);
}

static void check_load(void *ud, int rc, bool hit, int n) {
    (void)hit;
    load_case *l = ud;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "allocation %d: %d", n, rc);
    cr_assert_eq(cache_verify(l->c), 0);
    /* Whatever failed, the key is either cached or loads cleanly now (no
     * flight left behind to wait on). */
    int before = atomic_load(&l->calls);
    cr_assert_eq(op_load(l), 0, "allocation %d: the cache is stuck", n);
    cr_assert_leq(atomic_load(&l->calls), before + 1);
    cache_invalidate(l->c, "k", 1);
}

Test(cache_allocs, a_load_out_of_memory_is_enomem_and_leaves_no_flight) {
    const char *values[] = {"a value built by the loader, long enough to allocate", ""};
    for (int i = 0; i < 2; i++) {
        load_case l = {make(CACHE_POLICY_S3FIFO, 1 << 20, 1, 0), values[i], 0};
        cr_expect_gt(alloc_loop(op_load, check_load, &l), 0);
        cache_free(l.c);
    }
}

/* A leader and a waiter on one load, with allocations failing only once
 * both are in place (the leader inside its loader): whatever fails, each
 * gets the value or CAIRN_ENOMEM, and the next caller is not stuck. */
Test(cache_allocs, a_shared_load_out_of_memory_fails_each_caller_cleanly) {
    int waiter_enomem = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        failing = kinds[k];
        int n = 1;
        for (; n < MAX_N; n++) {
            cache *c = make(CACHE_POLICY_S3FIFO, 1 << 20, 1, 0);
            gate g = GATE_INIT("shared value");
            caller w[2];
            pthread_t t[2];
            for (int i = 0; i < 2; i++) {
                w[i] = (caller){.c = c, .g = &g, .key = "k"};
                cr_assert_eq(pthread_create(&t[i], NULL, caller_main, &w[i]), 0);
                if (i == 0) cr_assert(eventually(c, loads_reach, 1));
            }
            cr_assert(eventually(c, waits_reach, 1));
            alloc_arm(n);
            gate_open(&g);
            for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
            bool hit = injected_at(NULL);
            alloc_arm(0);
            for (int i = 0; i < 2; i++) {
                cr_assert(w[i].rc == 0 || w[i].rc == CAIRN_ENOMEM, "allocation %d: %d", n, w[i].rc);
                if (w[i].rc == 0) cr_assert(caller_got(&w[i], "shared value"));
                else cr_assert(hit);
                free(w[i].val);
            }
            if (w[0].rc == 0 && w[1].rc == CAIRN_ENOMEM) waiter_enomem++;
            cr_assert_eq(cache_verify(c), 0);
            gate_open(&g);
            char *v = NULL;
            cr_assert_eq(load_str(c, "k", &g, &v), 0, "allocation %d: the cache is stuck", n);
            cr_assert_str_eq(v, "shared value");
            free(v);
            cache_free(c);
            if (!hit) break;
        }
        cr_assert_lt(n, MAX_N);
    }
    failing = FAIL_IO;
    cr_expect_gt(waiter_enomem, 0, "no run failed the waiter's copy alone");
}

#endif /* ALLOC_FAILURES */

#else

Test(cache_allocs, the_allocation_loops_need_the_fault_build) {
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0, "outside the fault build the sites are no-ops");
}

#endif
