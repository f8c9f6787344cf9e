/*
 * l1.c — the L1 in-process cache (cache.h): shards, entries, the S3-FIFO and
 * LRU policies, version stamps, invalidation and bypass.  Single flight
 * (cache_get_or_load) lives in flight.c, over the shard internals of
 * l1_internal.h.
 *
 * How it works.  A key's SipHash (keyed per cache with random bytes, so that
 * untrusted keys cannot be chosen to collide) picks its shard; a shard is a
 * mutex over a chained hash table, the policy's queues, a ghost table and a
 * tombstone table.  An entry is one allocation: header, key, value.  A fill
 * allocates its entry before taking the lock, so running out of memory
 * changes nothing; under the lock it checks the version stamp, drops the
 * entry it replaces, evicts until the new one fits, and links it.
 *
 * S3-FIFO (Yang et al., SOSP 2023).  New entries go to the small FIFO unless
 * the ghost remembers their hash, then to main.  A hit sets a 2-bit
 * frequency, nothing else.  To make room: while the small queue holds more
 * than its 10% of the bytes, its oldest entry moves to main if it was read
 * since it came in, else it is dropped and its hash goes to the ghost;
 * otherwise main's oldest is dropped if its frequency is 0, or reinserted
 * with the frequency lowered.  The ghost is a 4-way set-associative table of
 * 32-bit fingerprints stamped with an insertion counter; a fingerprint
 * counts as present while fewer insertions than main has entries came after
 * it (the ghost is as long as main, as in the paper), in fixed memory.
 *
 * Version stamps.  One counter per cache: cache_version_begin reads it,
 * invalidation advances it and stores the new value as the key's tombstone
 * (4-way set-associative by hash; a tombstone pushed out raises the shard's
 * floor to its version, so forgetting one is never unsafe), and a flush
 * raises every shard's floor.  A fill is stale if its version is below the
 * floor, the key's tombstone or the entry it would replace.
 */
#include "cache/l1_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define DEFAULT_CAPACITY ((size_t)64 << 20)
#define DEFAULT_TTL_MS 60000
#define DEFAULT_TOMBSTONES 4096
#define DEFAULT_LOAD_WAIT_MS 5000
#define MIN_SHARD_CAPACITY 1024
#define AUTO_MAX_SHARDS 16
#define AUTO_MIN_SHARD_CAPACITY ((size_t)256 << 10)
#define INITIAL_BUCKETS 16
#define CAPACITY_PER_GHOST_SLOT 256 /* bytes of capacity per ghost slot (8 bytes) */
#define SMALL_PERCENT 10
#define FREQ_MAX 3

_Static_assert(sizeof(((cache *)0)->hash_key) == crypto_shorthash_KEYBYTES, "the SipHash key");
_Static_assert(sizeof(l1_entry) + 32 <= CACHE_ENTRY_OVERHEAD,
               "CACHE_ENTRY_OVERHEAD must cover the header, malloc's header and the bucket share");

/* ---- options ------------------------------------------------------------- */

void cache_options_default(cache_options *o) {
    memset(o, 0, sizeof *o);
    o->capacity = DEFAULT_CAPACITY;
    o->ttl_ms = DEFAULT_TTL_MS;
    o->policy = CACHE_POLICY_S3FIFO;
    o->tombstones = DEFAULT_TOMBSTONES;
    o->load_wait_ms = DEFAULT_LOAD_WAIT_MS;
}

static bool is_pow2(size_t n) { return n && !(n & (n - 1)); }

static size_t pow2_at_least(size_t n) {
    size_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

static size_t pow2_at_most(size_t n) {
    size_t p = pow2_at_least(n);
    return p > n ? p >> 1 : p;
}

static unsigned auto_shards(size_t capacity) {
    unsigned n = AUTO_MAX_SHARDS;
    while (n > 1 && capacity / n < AUTO_MIN_SHARD_CAPACITY) n >>= 1;
    return n;
}

/* Fills in the automatic values and checks the rest. */
static int options_resolve(const cache_options *in, cache_options *o) {
    if (in) *o = *in;
    else cache_options_default(o);
    if (o->policy != CACHE_POLICY_S3FIFO && o->policy != CACHE_POLICY_LRU) return CAIRN_EINVAL;
    if (o->ttl_ms < 0 || o->load_wait_ms < 0) return CAIRN_EINVAL;
    if (!o->shards) o->shards = auto_shards(o->capacity);
    if (!is_pow2(o->shards) || o->shards > L1_MAX_SHARDS) return CAIRN_EINVAL;
    size_t shard_cap = o->capacity / o->shards;
    if (shard_cap < MIN_SHARD_CAPACITY) return CAIRN_EINVAL;
    if (!o->max_entry) o->max_entry = shard_cap / 8 < UINT32_MAX ? shard_cap / 8 : UINT32_MAX;
    /* Entries keep their lengths in 32 bits. */
    if (o->max_entry > shard_cap || o->max_entry > UINT32_MAX || o->max_entry <= CACHE_ENTRY_OVERHEAD)
        return CAIRN_EINVAL;
    if (!o->tombstones) o->tombstones = DEFAULT_TOMBSTONES;
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static int shard_init(l1_shard *sh, const cache_options *o) {
    sh->capacity = o->capacity / o->shards;
    sh->small_target = sh->capacity * SMALL_PERCENT / 100;
    sh->nbuckets = INITIAL_BUCKETS;
    sh->buckets = calloc(sh->nbuckets, sizeof *sh->buckets);
    size_t ghost_slots = pow2_at_most(sh->capacity / CAPACITY_PER_GHOST_SLOT);
    sh->ghost_sets = ghost_slots > L1_WAYS ? ghost_slots / L1_WAYS : 1;
    sh->ghost = o->policy == CACHE_POLICY_S3FIFO ? calloc(sh->ghost_sets * L1_WAYS, sizeof *sh->ghost) : NULL;
    sh->tomb_sets = pow2_at_least((o->tombstones / o->shards + L1_WAYS - 1) / L1_WAYS);
    sh->tombs = calloc(sh->tomb_sets * L1_WAYS, sizeof *sh->tombs);
    if (!sh->buckets || !sh->tombs || (o->policy == CACHE_POLICY_S3FIFO && !sh->ghost)) return CAIRN_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sh->loaded, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&sh->mu, NULL);
    sh->ready = true;
    return 0;
}

static void shard_clear(l1_shard *sh);

static void shard_destroy(l1_shard *sh) {
    if (sh->buckets) shard_clear(sh);
    assert(!sh->flights);
    free(sh->buckets);
    free(sh->ghost);
    free(sh->tombs);
    if (sh->ready) {
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->loaded);
    }
}

int cache_new(const cache_options *opt, cache **out) {
    *out = NULL;
    cache_options o;
    int rc = options_resolve(opt, &o);
    if (rc) return rc;
    cache *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    c->o = o;
    c->nshards = o.shards;
    atomic_init(&c->seq, 1);
    atomic_init(&c->bypass, false);
    randombytes_buf(c->hash_key, sizeof c->hash_key);
    c->shards = calloc(c->nshards, sizeof *c->shards);
    if (!c->shards) {
        free(c);
        return CAIRN_ENOMEM;
    }
    for (unsigned i = 0; i < c->nshards; i++) {
        if (shard_init(&c->shards[i], &o)) {
            cache_free(c);
            return CAIRN_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void cache_free(cache *c) {
    if (!c) return;
    for (unsigned i = 0; i < c->nshards; i++) shard_destroy(&c->shards[i]);
    free(c->shards);
    free(c);
}

/* ---- hashing, clock ------------------------------------------------------ */

uint64_t l1_hash(const cache *c, const void *key, size_t klen) {
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, klen, c->hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

l1_shard *l1_shard_of(cache *c, uint64_t h) { return &c->shards[h & (c->nshards - 1)]; }

int64_t l1_now_ms(const cache *c) { return c->o.clock ? c->o.clock(c->o.clock_ud) : time_mono_ns() / 1000000; }

/* ---- hash table ----------------------------------------------------------- */

/* Bits 0-7 pick the shard, so the table indexes from bit 8. */
static l1_entry **bucket_of(l1_shard *sh, uint64_t h) { return &sh->buckets[(h >> 8) & (sh->nbuckets - 1)]; }

static l1_entry *table_find(l1_shard *sh, uint64_t h, const void *key, size_t klen) {
    for (l1_entry *e = *bucket_of(sh, h); e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->kv, key, klen) == 0) return e;
    return NULL;
}

static void table_unlink(l1_shard *sh, l1_entry *e) {
    l1_entry **p = bucket_of(sh, e->hash);
    while (*p != e) {
        assert(*p);
        p = &(*p)->hnext;
    }
    *p = e->hnext;
}

/* Doubles the table when it holds more entries than buckets.  Out of memory
 * it keeps the old one: longer chains, nothing lost. */
static void table_grow(l1_shard *sh) {
    if (sh->count <= sh->nbuckets) return;
    size_t n = sh->nbuckets * 2;
    l1_entry **nb = calloc(n, sizeof *nb);
    if (!nb) return;
    for (size_t i = 0; i < sh->nbuckets; i++) {
        for (l1_entry *e = sh->buckets[i], *next; e; e = next) {
            next = e->hnext;
            l1_entry **b = &nb[(e->hash >> 8) & (n - 1)];
            e->hnext = *b;
            *b = e;
        }
    }
    free(sh->buckets);
    sh->buckets = nb;
    sh->nbuckets = n;
}

/* ---- queues --------------------------------------------------------------- */

static size_t weight_of(size_t klen, size_t vlen) { return CACHE_ENTRY_OVERHEAD + klen + vlen; }
static size_t entry_weight(const l1_entry *e) { return weight_of(e->klen, e->vlen); }

static l1_fifo *fifo_of(l1_shard *sh, const l1_entry *e) { return e->queue == L1_SMALL ? &sh->small : &sh->main; }

/* Head is the newest end; eviction takes from the tail. */
static void fifo_push(l1_fifo *q, l1_entry *e) {
    e->prev = NULL;
    e->next = q->head;
    if (q->head) q->head->prev = e;
    else q->tail = e;
    q->head = e;
    q->bytes += entry_weight(e);
    q->count++;
}

static void fifo_unlink(l1_fifo *q, l1_entry *e) {
    if (e->prev) e->prev->next = e->next;
    else q->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else q->tail = e->prev;
    assert(q->count > 0 && q->bytes >= entry_weight(e));
    q->bytes -= entry_weight(e);
    q->count--;
}

static void fifo_move(l1_shard *sh, l1_entry *e, uint8_t to) {
    fifo_unlink(fifo_of(sh, e), e);
    e->queue = to;
    fifo_push(fifo_of(sh, e), e);
}

/* Unlinks e from everything and frees it. */
static void entry_drop(l1_shard *sh, l1_entry *e) {
    table_unlink(sh, e);
    fifo_unlink(fifo_of(sh, e), e);
    sh->bytes -= entry_weight(e);
    sh->count--;
    free(e);
}

static void shard_clear(l1_shard *sh) {
    while (sh->small.tail) entry_drop(sh, sh->small.tail);
    while (sh->main.tail) entry_drop(sh, sh->main.tail);
    assert(sh->count == 0 && sh->bytes == 0);
}

/* ---- ghost (S3-FIFO) ------------------------------------------------------ */

static uint32_t ghost_fp(uint64_t h) { return (uint32_t)(h >> 32) | 1; /* 0 marks a free slot */ }

static l1_ghost *ghost_set(l1_shard *sh, uint64_t h) { return &sh->ghost[((h >> 8) & (sh->ghost_sets - 1)) * L1_WAYS]; }

/* Whether h was dropped from the small queue within the last main.count
 * ghost insertions; forgets it either way. */
static bool ghost_take(l1_shard *sh, uint64_t h) {
    l1_ghost *set = ghost_set(sh, h);
    uint32_t fp = ghost_fp(h);
    for (int i = 0; i < L1_WAYS; i++) {
        if (set[i].fp != fp) continue;
        bool recent = sh->ghost_clock - set[i].stamp <= sh->main.count;
        set[i].fp = 0;
        return recent;
    }
    return false;
}

static void ghost_add(l1_shard *sh, uint64_t h) {
    l1_ghost *set = ghost_set(sh, h);
    uint32_t fp = ghost_fp(h);
    int victim = 0; /* its own way, else a free one, else the oldest */
    for (int i = 0; i < L1_WAYS; i++) {
        if (set[i].fp == fp) {
            victim = i;
            break;
        }
        if (!set[victim].fp) continue;
        if (!set[i].fp || sh->ghost_clock - set[i].stamp > sh->ghost_clock - set[victim].stamp) victim = i;
    }
    set[victim].fp = fp;
    set[victim].stamp = ++sh->ghost_clock;
}

/* ---- eviction ------------------------------------------------------------- */

static void evict_entry(l1_shard *sh, l1_entry *e, bool to_ghost) {
    if (to_ghost) ghost_add(sh, e->hash);
    entry_drop(sh, e);
    sh->st.evictions++;
}

/* Drops one entry by the policy (S3-FIFO may first move others). */
static void evict_one(const cache *c, l1_shard *sh) {
    if (c->o.policy == CACHE_POLICY_LRU) {
        assert(sh->main.tail);
        evict_entry(sh, sh->main.tail, false);
        return;
    }
    /* Each pass either frees an entry, moves one from small to main or
     * lowers a frequency, so the loop ends. */
    for (;;) {
        if (sh->small.tail && (sh->small.bytes > sh->small_target || !sh->main.tail)) {
            l1_entry *e = sh->small.tail;
            if (e->freq == 0) {
                evict_entry(sh, e, true);
                return;
            }
            e->freq = 0;
            fifo_move(sh, e, L1_MAIN);
            continue;
        }
        l1_entry *e = sh->main.tail;
        assert(e);
        if (e->freq == 0) {
            evict_entry(sh, e, false);
            return;
        }
        e->freq--;
        fifo_move(sh, e, L1_MAIN);
    }
}

static void make_room(const cache *c, l1_shard *sh, size_t need) {
    assert(need <= sh->capacity);
    while (sh->bytes + need > sh->capacity) evict_one(c, sh);
}

/* ---- lookup --------------------------------------------------------------- */

l1_entry *l1_lookup(cache *c, l1_shard *sh, uint64_t h, const void *key, size_t klen) {
    l1_entry *e = atomic_load_explicit(&c->bypass, memory_order_acquire) ? NULL : table_find(sh, h, key, klen);
    if (e && e->expires && l1_now_ms(c) >= e->expires) {
        entry_drop(sh, e);
        sh->st.expirations++;
        e = NULL;
    }
    if (!e) {
        sh->st.misses++;
        return NULL;
    }
    sh->st.hits++;
    if (c->o.policy == CACHE_POLICY_LRU) fifo_move(sh, e, L1_MAIN);
    else if (e->freq < FREQ_MAX) e->freq++;
    return e;
}

int l1_dup(const void *src, size_t n, void **val, size_t *vlen) {
    void *p = malloc(n ? n : 1);
    if (!p) return CAIRN_ENOMEM;
    if (n) memcpy(p, src, n);
    *val = p;
    *vlen = n;
    return 0;
}

int cache_get(cache *c, const void *key, size_t klen, void *dst, size_t cap, size_t *vlen) {
    if (!c || !key || !vlen || (!dst && cap)) return CAIRN_EINVAL;
    uint64_t h = l1_hash(c, key, klen);
    l1_shard *sh = l1_shard_of(c, h);
    pthread_mutex_lock(&sh->mu);
    l1_entry *e = l1_lookup(c, sh, h, key, klen);
    int rc = CAIRN_ENOTFOUND;
    if (e) {
        *vlen = e->vlen;
        rc = e->vlen > cap ? CAIRN_ETOOBIG : 0;
        if (rc == 0 && e->vlen) memcpy(dst, e->kv + e->klen, e->vlen);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int cache_get_alloc(cache *c, const void *key, size_t klen, void **val, size_t *vlen) {
    if (!c || !key || !val || !vlen) return CAIRN_EINVAL;
    uint64_t h = l1_hash(c, key, klen);
    l1_shard *sh = l1_shard_of(c, h);
    pthread_mutex_lock(&sh->mu);
    l1_entry *e = l1_lookup(c, sh, h, key, klen);
    int rc = e ? l1_dup(e->kv + e->klen, e->vlen, val, vlen) : CAIRN_ENOTFOUND;
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* ---- versions and fills ----------------------------------------------------- */

uint64_t cache_version_begin(cache *c) { return atomic_load(&c->seq); }

static l1_tomb *tomb_set(l1_shard *sh, uint64_t h) { return &sh->tombs[((h >> 8) & (sh->tomb_sets - 1)) * L1_WAYS]; }

/* The newest invalidation version that applies to h: its tombstone or the floor. */
static uint64_t tomb_version(l1_shard *sh, uint64_t h) {
    l1_tomb *set = tomb_set(sh, h);
    for (int i = 0; i < L1_WAYS; i++)
        if (set[i].version && set[i].hash == h) return set[i].version > sh->floor ? set[i].version : sh->floor;
    return sh->floor;
}

/* Records that fills of h older than version are stale.  The way it takes
 * (its own, a free one, else the oldest) has its version folded into the
 * floor, so the rule still holds for the key it forgets. */
static void tomb_put(l1_shard *sh, uint64_t h, uint64_t version) {
    l1_tomb *set = tomb_set(sh, h);
    int victim = 0; /* its own way, else a free one, else the oldest */
    for (int i = 0; i < L1_WAYS; i++) {
        if (set[i].version && set[i].hash == h) {
            victim = i;
            break;
        }
        if (!set[victim].version) continue;
        if (!set[i].version || set[i].version < set[victim].version) victim = i;
    }
    if (set[victim].version && set[victim].hash != h && set[victim].version > sh->floor)
        sh->floor = set[victim].version;
    set[victim].hash = h;
    set[victim].version = version;
}

static l1_entry *entry_new(uint64_t h, const void *key, size_t klen, const void *val, size_t vlen,
                           uint64_t version, int64_t expires) {
    l1_entry *e = malloc(sizeof *e + klen + vlen);
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->version = version;
    e->expires = expires;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(e->kv, key, klen);
    if (vlen) memcpy(e->kv + klen, val, vlen);
    return e;
}

/* Links a new entry in place of old (may be NULL), making room first. */
static void entry_link(const cache *c, l1_shard *sh, l1_entry *e, l1_entry *old) {
    if (old) {
        e->queue = old->queue;
        e->freq = old->freq;
        entry_drop(sh, old);
    } else {
        e->queue = c->o.policy == CACHE_POLICY_S3FIFO && !ghost_take(sh, e->hash) ? L1_SMALL : L1_MAIN;
    }
    make_room(c, sh, entry_weight(e));
    l1_entry **b = bucket_of(sh, e->hash);
    e->hnext = *b;
    *b = e;
    fifo_push(fifo_of(sh, e), e);
    sh->bytes += entry_weight(e);
    sh->count++;
    table_grow(sh);
}

int cache_fill(cache *c, const void *key, size_t klen, const void *val, size_t vlen, uint64_t version,
               int64_t ttl_ms) {
    if (!c || !key || (!val && vlen) || ttl_ms < 0) return CAIRN_EINVAL;
    uint64_t h = l1_hash(c, key, klen);
    l1_shard *sh = l1_shard_of(c, h);
    if (klen > c->o.max_entry || vlen > c->o.max_entry || weight_of(klen, vlen) > c->o.max_entry) {
        pthread_mutex_lock(&sh->mu);
        sh->st.refused_fills++;
        pthread_mutex_unlock(&sh->mu);
        return CAIRN_ETOOBIG;
    }
    int64_t ttl = ttl_ms ? ttl_ms : c->o.ttl_ms;
    l1_entry *e = entry_new(h, key, klen, val, vlen, version, ttl ? l1_now_ms(c) + ttl : 0);
    if (!e) return CAIRN_ENOMEM;
    pthread_mutex_lock(&sh->mu);
    l1_entry *old = table_find(sh, h, key, klen);
    int rc = 0;
    if (atomic_load_explicit(&c->bypass, memory_order_acquire)) {
        rc = CAIRN_EBUSY;
        sh->st.refused_fills++;
    } else if (version < tomb_version(sh, h) || (old && version < old->version)) {
        rc = CAIRN_ECONFLICT;
        sh->st.stale_fills++;
    } else {
        entry_link(c, sh, e, old);
        sh->st.fills++;
        e = NULL;
    }
    pthread_mutex_unlock(&sh->mu);
    free(e);
    return rc;
}

/* ---- invalidation ------------------------------------------------------------ */

void cache_invalidate(cache *c, const void *key, size_t klen) {
    if (!c || !key) return;
    uint64_t h = l1_hash(c, key, klen);
    l1_shard *sh = l1_shard_of(c, h);
    pthread_mutex_lock(&sh->mu);
    /* A fill older than v that took the lock first is dropped below; one
     * that comes after meets the tombstone. */
    uint64_t v = atomic_fetch_add(&c->seq, 1) + 1;
    tomb_put(sh, h, v);
    l1_entry *e = table_find(sh, h, key, klen);
    if (e) entry_drop(sh, e);
    l1_flights_detach(sh, h, key, klen, false);
    sh->st.invalidations++;
    pthread_mutex_unlock(&sh->mu);
}

int cache_invalidate_fill(cache *c, const void *key, size_t klen, const void *val, size_t vlen, uint64_t version,
                          int64_t ttl_ms) {
    if (!c || !key || (!val && vlen) || ttl_ms < 0) return CAIRN_EINVAL;
    uint64_t h = l1_hash(c, key, klen);
    l1_shard *sh = l1_shard_of(c, h);
    bool fits = klen <= c->o.max_entry && vlen <= c->o.max_entry && weight_of(klen, vlen) <= c->o.max_entry;
    int64_t ttl = ttl_ms ? ttl_ms : c->o.ttl_ms;
    l1_entry *e = fits ? entry_new(h, key, klen, val, vlen, 0, ttl ? l1_now_ms(c) + ttl : 0) : NULL;
    pthread_mutex_lock(&sh->mu);
    /* Whether anything invalidated the key (or flushed) since version: that
     * write may have committed after the caller's, so its value is not
     * known to be the newest. */
    bool stale = version < tomb_version(sh, h);
    uint64_t v = atomic_fetch_add(&c->seq, 1) + 1;
    tomb_put(sh, h, v);
    l1_entry *old = table_find(sh, h, key, klen);
    if (old) entry_drop(sh, old);
    l1_flights_detach(sh, h, key, klen, false);
    sh->st.invalidations++;
    int rc = 0;
    if (!fits) {
        rc = CAIRN_ETOOBIG;
        sh->st.refused_fills++;
    } else if (!e) {
        rc = CAIRN_ENOMEM;
    } else if (atomic_load_explicit(&c->bypass, memory_order_acquire)) {
        rc = CAIRN_EBUSY;
        sh->st.refused_fills++;
    } else if (stale) {
        rc = CAIRN_ECONFLICT;
        sh->st.stale_fills++;
    } else {
        /* Stamped with the invalidation's own version: a fill begun before
         * it is older than the tombstone, one begun after may replace it. */
        e->version = v;
        entry_link(c, sh, e, NULL);
        sh->st.fills++;
        e = NULL;
    }
    pthread_mutex_unlock(&sh->mu);
    free(e);
    return rc;
}

void cache_invalidate_all(cache *c) {
    if (!c) return;
    uint64_t v = atomic_fetch_add(&c->seq, 1) + 1;
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->mu);
        if (v > sh->floor) sh->floor = v;
        shard_clear(sh);
        l1_flights_detach(sh, 0, NULL, 0, true);
        if (i == 0) sh->st.flushes++;
        pthread_mutex_unlock(&sh->mu);
    }
}

void cache_set_bypass(cache *c, bool on) {
    if (!c) return;
    /* On: refuse first, then flush what got in.  Off: flush first (raising
     * the floor over every fill begun while invalidations went unseen), then
     * accept again. */
    if (on) atomic_store(&c->bypass, true);
    cache_invalidate_all(c);
    if (!on) atomic_store(&c->bypass, false);
}

bool cache_bypassed(cache *c) { return c && atomic_load(&c->bypass); }

/* ---- stats and verification ------------------------------------------------------ */

void cache_stats_get(cache *c, cache_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->mu);
        const cache_stats *s = &sh->st;
        out->hits += s->hits;
        out->misses += s->misses;
        out->fills += s->fills;
        out->stale_fills += s->stale_fills;
        out->refused_fills += s->refused_fills;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->invalidations += s->invalidations;
        out->flushes += s->flushes;
        out->loads += s->loads;
        out->load_errors += s->load_errors;
        out->load_waits += s->load_waits;
        out->load_timeouts += s->load_timeouts;
        out->bytes += sh->bytes;
        out->entries += sh->count;
        out->capacity += sh->capacity;
        pthread_mutex_unlock(&sh->mu);
    }
}

/* Counts a queue's entries and weight, checking links and membership. */
static bool fifo_ok(l1_shard *sh, const l1_fifo *q, uint8_t which, size_t *count, size_t *bytes) {
    size_t n = 0, w = 0;
    const l1_entry *prev = NULL;
    for (const l1_entry *e = q->head; e; prev = e, e = e->next) {
        if (e->prev != prev || e->queue != which || e->freq > FREQ_MAX) return false;
        if (table_find(sh, e->hash, e->kv, e->klen) != e) return false;
        n++;
        w += entry_weight(e);
    }
    *count += n;
    *bytes += w;
    return q->tail == prev && q->count == n && q->bytes == w;
}

static bool shard_ok(l1_shard *sh) {
    size_t in_table = 0, count = 0, bytes = 0;
    for (size_t i = 0; i < sh->nbuckets; i++)
        for (const l1_entry *e = sh->buckets[i]; e; e = e->hnext) in_table++;
    return fifo_ok(sh, &sh->small, L1_SMALL, &count, &bytes) && fifo_ok(sh, &sh->main, L1_MAIN, &count, &bytes) &&
           in_table == count && count == sh->count && bytes == sh->bytes && bytes <= sh->capacity;
}

int cache_verify(cache *c) {
    if (!c) return CAIRN_EINVAL;
    int rc = 0;
    for (unsigned i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->mu);
        if (!shard_ok(sh)) rc = CAIRN_EIO;
        pthread_mutex_unlock(&sh->mu);
    }
    return rc;
}
