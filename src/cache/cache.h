/*
 * cache — the L1 in-process cache: a bounded map from byte-string keys to
 * byte-string values that sits in front of a slower source of truth (the
 * metadata store), so that a hot key costs a hash and a memcpy instead of a
 * database round trip.
 *
 * Bounds.  Memory is set by configuration, never by input: the entries of a
 * cache never weigh more than `capacity` bytes, each weighing its key, its
 * value and CACHE_ENTRY_OVERHEAD (the entry header, the allocator's header and
 * its share of the hash table).  Fixed side tables — the S3-FIFO ghost (at
 * most capacity/32 bytes) and the invalidation window (16 bytes a tombstone)
 * — are sized once by cache_new.  A value larger than `max_entry` is never stored.
 *
 * Policy.  CACHE_POLICY_S3FIFO (default): a small FIFO (10% of the bytes)
 * that new keys enter, a main FIFO for keys that were read again while in
 * the small one, and a ghost of recently dropped keys' hashes that sends a
 * returning key straight to main.  One-hit wonders (a listing, a scan, a
 * crawler) pass through the small queue without displacing the hot set, and
 * a hit only bumps a 2-bit counter (no list surgery).  CACHE_POLICY_LRU is
 * the classic doubly linked list, kept as the baseline the benchmark
 * compares against (bench/cache_bench.c, docs/cache.md).
 *
 * Version stamps: how a slow fill cannot put back a stale value.
 * Every entry carries a version from one counter per cache.  A reader does:
 *
 *     uint64_t v = cache_version_begin(c);     // BEFORE reading the backend
 *     ... read the value from the backend ...
 *     cache_fill(c, key, klen, val, vlen, v, 0);
 *
 * and a writer, after its change is committed in the backend, calls
 * cache_invalidate(c, key, klen) (or, for a change that touches many keys,
 * cache_invalidate_all).  Invalidation advances the counter and remembers
 * the new value for the key (a tombstone); a fill whose version is older than
 * the key's tombstone, than the last flush, or than the entry it would
 * replace is refused with CAIRN_ECONFLICT.  So a fill that read the backend
 * before a write's invalidation can never land after it, however slow it
 * was.  Tombstones are kept in a bounded table; when one is pushed out, its
 * version becomes a floor that every older fill of any key must clear, so a
 * small table costs some refused fills, never a stale entry.  Writers must
 * not cache_fill what they wrote: two writers can invalidate in the opposite
 * order of their commits.  A writer that knows its new value uses
 * cache_invalidate_fill with a version taken BEFORE its commit: the value is
 * stored only if nothing invalidated the key since, so of two overlapping
 * writers only the first to invalidate can store, and the second's
 * invalidation drops it.
 *
 * Bypass.  When the cross-gateway invalidation channel is down, other
 * gateways' writes would go unseen: cache_set_bypass(c, true) makes every get
 * miss and every fill refused, and flushes.  Turning it off flushes again, so
 * nothing read while invalidations were being missed survives; call it only
 * once the channel is back (subscribed).
 *
 * Single flight.  cache_get_or_load returns a cached value or calls the
 * loader; concurrent callers that miss on the same key wait for the first
 * one's load instead of loading again (stampede protection), up to
 * load_wait_ms.  A failed load is not cached: its error goes to every waiter.
 * An invalidation of the key during a load lets later callers start a fresh
 * load rather than join the one that may have read the old value.
 *
 * Errors: 0 or a negative CAIRN_E* code (core/core.h).  A miss is
 * CAIRN_ENOTFOUND.  An allocation failure is CAIRN_ENOMEM and leaves the
 * cache as it was.
 *
 * Thread-safety: every function is thread-safe except cache_new and
 * cache_free (no other call on the same cache may be in progress during
 * cache_free).  The cache is split into shards, each with its own lock;
 * a loader runs without any lock held.
 */
#ifndef CAIRN_CACHE_H
#define CAIRN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct cache cache;

typedef enum {
    CACHE_POLICY_S3FIFO = 0, /* small + main FIFO + ghost (default) */
    CACHE_POLICY_LRU = 1,    /* least recently used: the baseline */
} cache_policy;

/* Bytes an entry weighs beyond its key and value. */
#define CACHE_ENTRY_OVERHEAD 96

/* A clock in milliseconds that never goes backwards (tests inject one). */
typedef int64_t (*cache_clock_fn)(void *ud);

typedef struct {
    size_t capacity;        /* bytes of entries at most; default 64 MiB */
    int64_t ttl_ms;         /* an entry's lifetime unless its fill says; 0 = no expiry; default 60000 */
    cache_policy policy;    /* default CACHE_POLICY_S3FIFO */
    unsigned shards;        /* locks; a power of two <= 256; 0 = up to 16, each >= 256 KiB */
    size_t max_entry;       /* largest entry (key + value + overhead) kept, <= 4 GiB - 1;
                               0 = a shard's capacity / 8 */
    unsigned tombstones;    /* invalidations remembered (the window of version stamps), at least;
                               a power of two per shard; 0 = default 4096 */
    int64_t load_wait_ms;   /* how long cache_get_or_load waits for another caller's load (0: it
                               does not wait: CAIRN_ETIMEDOUT); default 5000 */
    cache_clock_fn clock;   /* NULL: the monotonic clock (time_mono_ns); must be thread-safe */
    void *clock_ud;
} cache_options;

/* Fills every field with its default. */
void cache_options_default(cache_options *o);

/* Creates a cache (o NULL: the defaults).  CAIRN_EINVAL for options out of
 * range (a capacity under 1 KiB a shard, shards not a power of two, a
 * max_entry above a shard's capacity, negative times), CAIRN_ENOMEM.
 * Free with cache_free. */
int cache_new(const cache_options *o, cache **out);
/* Frees the cache and every entry.  NULL is a no-op. */
void cache_free(cache *c);

/* Copies the value of key into dst (cap bytes) and sets *vlen.  Returns 0;
 * CAIRN_ENOTFOUND on a miss (absent, expired, or bypass on); CAIRN_ETOOBIG
 * when cap < the value's length (nothing copied, *vlen says what is needed;
 * counted as a hit). */
int cache_get(cache *c, const void *key, size_t klen, void *dst, size_t cap, size_t *vlen);
/* The same into a malloc'd copy that the caller frees (*val is never NULL on
 * success, even for an empty value).  CAIRN_ENOTFOUND, CAIRN_ENOMEM. */
int cache_get_alloc(cache *c, const void *key, size_t klen, void **val, size_t *vlen);

/* The version to pass to cache_fill for a value about to be read from the
 * backend: call it before the read (see the protocol above). */
uint64_t cache_version_begin(cache *c);

/* Stores a copy of key and val, stamped with version (from
 * cache_version_begin before the backend read), replacing any entry of the
 * key that is not newer.  ttl_ms 0: the cache's ttl_ms; > 0: this entry's.
 * Returns 0, CAIRN_ECONFLICT (stale: an invalidation, flush or newer entry
 * came after version), CAIRN_EBUSY (bypass on), CAIRN_ETOOBIG (larger than
 * max_entry), CAIRN_ENOMEM, CAIRN_EINVAL.  Only a 0 changes the cache. */
int cache_fill(cache *c, const void *key, size_t klen, const void *val, size_t vlen, uint64_t version,
               int64_t ttl_ms);

/* Drops key and refuses every fill of it begun before this call.  Call after
 * the backend change is committed.  A load of the key in progress is left to
 * finish for its waiters, but callers from now on start a new one. */
void cache_invalidate(cache *c, const void *key, size_t klen);
/* A write that knows the key's new value (write-through): invalidates the
 * key as cache_invalidate does and, in the same step, stores val in its
 * place, unless anything invalidated the key or flushed the cache after
 * version, which the writer took with cache_version_begin BEFORE its
 * backend change (another write may then have committed after it: the key
 * is left empty).  Returns 0 (stored), CAIRN_ECONFLICT (stale: only
 * invalidated), CAIRN_EBUSY (bypass on), CAIRN_ETOOBIG, CAIRN_ENOMEM (only
 * invalidated), CAIRN_EINVAL (nothing done).  Every outcome but EINVAL
 * invalidates. */
int cache_invalidate_fill(cache *c, const void *key, size_t klen, const void *val, size_t vlen, uint64_t version,
                          int64_t ttl_ms);
/* The same for every key (a flush). */
void cache_invalidate_all(cache *c);

/* on: every get misses, every fill is refused (CAIRN_EBUSY), and the cache
 * is flushed.  off: flushed again, then used again.  Loads through
 * cache_get_or_load still share one backend read per key. */
void cache_set_bypass(cache *c, bool on);
bool cache_bypassed(cache *c);

/* A loader reads key's value from the backend and appends it to out (empty,
 * owned by the cache: do not free).  Returns 0 or a negative CAIRN_E* code,
 * which every caller waiting on this load receives (nothing is cached).  It
 * runs without cache locks held, and must not wait on a load of the same key. */
typedef int (*cache_loader_fn)(void *ud, const void *key, size_t klen, buf_t *out);

/* Returns key's value in a malloc'd copy the caller frees: from the cache, or
 * by calling load(ud, ...) once for all concurrent callers that miss on the
 * key, then filling the cache with the version protocol above (a refused
 * fill still returns the loaded value).  Returns 0, the loader's error,
 * CAIRN_ETIMEDOUT (another caller's load took longer than load_wait_ms; it
 * goes on), CAIRN_ENOMEM, CAIRN_EINVAL. */
int cache_get_or_load(cache *c, const void *key, size_t klen, cache_loader_fn load, void *ud, void **val,
                      size_t *vlen);

/* Counters since cache_new, and the current size. */
typedef struct {
    uint64_t hits;          /* gets (any kind) that found a live entry */
    uint64_t misses;        /* gets that did not (including bypass) */
    uint64_t fills;         /* fills stored */
    uint64_t stale_fills;   /* fills refused as older than an invalidation or entry */
    uint64_t refused_fills; /* fills refused for bypass or size */
    uint64_t evictions;     /* entries dropped to make room */
    uint64_t expirations;   /* entries dropped as past their TTL */
    uint64_t invalidations; /* cache_invalidate calls (flushes not included) */
    uint64_t flushes;       /* cache_invalidate_all calls, bypass switches included */
    uint64_t loads;         /* loader calls */
    uint64_t load_errors;   /* loader calls that failed */
    uint64_t load_waits;    /* callers that waited for another caller's load */
    uint64_t load_timeouts; /* of which gave up at load_wait_ms */
    uint64_t bytes;         /* weight of the entries now (<= capacity) */
    uint64_t entries;       /* entries now */
    uint64_t capacity;
} cache_stats;

/* Copies the counters (a consistent view per shard, summed). */
void cache_stats_get(cache *c, cache_stats *out);

/* Walks every shard and checks its invariants: each entry reachable from the
 * hash table and from exactly one queue, the byte and entry counts equal to
 * what the entries weigh, the weight within the shard's capacity.  Returns 0
 * or CAIRN_EIO (a bug).  O(entries), under each shard's lock: for tests. */
int cache_verify(cache *c);

#endif
