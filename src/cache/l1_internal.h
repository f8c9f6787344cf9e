/*
 * l1_internal.h — what l1.c (entries, policy, versions) and flight.c (single
 * flight) share inside the cache module: the shard and entry layout and the
 * few functions each calls in the other.  Not for use outside src/cache.
 *
 * Locking: every field of a shard is guarded by its mutex, and every
 * function here that takes a shard expects that mutex held, except
 * l1_hash, l1_shard_of and l1_now_ms.
 */
#ifndef CAIRN_CACHE_L1_INTERNAL_H
#define CAIRN_CACHE_L1_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache/cache.h"

#define L1_MAX_SHARDS 256 /* the shard is the hash's low 8 bits */
#define L1_WAYS 4         /* ghost and tombstone sets */

enum { L1_SMALL = 0, L1_MAIN = 1 }; /* LRU uses main only */

typedef struct l1_entry {
    struct l1_entry *hnext;       /* hash chain */
    struct l1_entry *prev, *next; /* its queue; prev is newer */
    uint64_t hash;
    uint64_t version;             /* the stamp of the fill that stored it */
    int64_t expires;              /* on the cache's clock; 0 = never */
    uint32_t klen, vlen;
    uint8_t freq;                 /* S3-FIFO: reads since queued, saturating at 3 */
    uint8_t queue;                /* L1_SMALL or L1_MAIN */
    unsigned char kv[];           /* key, then value */
} l1_entry;

typedef struct {
    l1_entry *head, *tail;        /* newest, oldest */
    size_t bytes, count;
} l1_fifo;

typedef struct {
    uint32_t fp;                  /* 0 = free */
    uint32_t stamp;               /* ghost_clock when added */
} l1_ghost;

typedef struct {
    uint64_t hash;
    uint64_t version;             /* 0 = free */
} l1_tomb;

/* One load in progress (cache_get_or_load): its leader and the callers
 * waiting on it hold references; the last one out frees it. */
typedef struct l1_flight {
    struct l1_flight *next;       /* the shard's list while findable */
    uint64_t hash;
    int refs;
    bool linked;                  /* in the list: new callers may join */
    bool done;
    int rc;                       /* the load's result, once done */
    unsigned char *val;           /* its value (malloc'd), once done */
    size_t vlen;
    size_t klen;
    unsigned char key[];
} l1_flight;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t loaded;        /* broadcast when a load of this shard ends (CLOCK_MONOTONIC) */
    bool ready;                   /* mu and loaded initialised */
    l1_entry **buckets;
    size_t nbuckets;
    size_t count, bytes, capacity, small_target;
    l1_fifo small, main;
    l1_ghost *ghost;              /* S3-FIFO only */
    size_t ghost_sets;
    uint32_t ghost_clock;
    l1_tomb *tombs;
    size_t tomb_sets;
    uint64_t floor;               /* fills older than this are stale, whatever the key */
    l1_flight *flights;
    cache_stats st;               /* counters only; bytes and entries are above */
} l1_shard;

struct cache {
    cache_options o;              /* resolved: no automatic values left */
    unsigned nshards;
    l1_shard *shards;
    atomic_uint_fast64_t seq;     /* the version counter */
    atomic_bool bypass;
    unsigned char hash_key[16];   /* SipHash key (crypto_shorthash_KEYBYTES) */
};

uint64_t l1_hash(const cache *c, const void *key, size_t klen);
l1_shard *l1_shard_of(cache *c, uint64_t h);
int64_t l1_now_ms(const cache *c);
/* A live entry of key, counting the hit or miss (and bumping its recency),
 * or NULL: absent, expired (dropped now) or bypass on. */
l1_entry *l1_lookup(cache *c, l1_shard *sh, uint64_t h, const void *key, size_t klen);
/* *val = a malloc'd copy of n bytes at src (never NULL on success, even for
 * n == 0), *vlen = n.  CAIRN_ENOMEM. */
int l1_dup(const void *src, size_t n, void **val, size_t *vlen);
/* Makes loads of key (every load, with all) unfindable: callers from now on
 * start their own.  Waiters already joined still get the old load's result. */
void l1_flights_detach(l1_shard *sh, uint64_t h, const void *key, size_t klen, bool all);

#endif
