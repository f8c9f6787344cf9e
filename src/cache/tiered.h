/*
 * tiered.h — the metadata cache in front of a meta_store: L1 in process
 * (cache.h), L2 in Redis (l2.h, optional), and the invalidations that keep
 * both true.
 *
 * tiered_wrap returns a meta_store that answers every meta_* call: the reads
 * it caches (meta_bucket_get, meta_key_get, meta_object_get) from the cache
 * when it can, the rest by the store it wraps.  Every write that changes a
 * cached record invalidates it after the write returned and before the
 * caller goes on (and so before the client hears of it): locally, in Redis,
 * and on every other gateway through Redis pub/sub.
 *
 * When a read may use the cache (read-after-write for every client, across
 * every gateway, is the rule):
 *   - SQLite: one server owns the database; `cairn admin` commands that write
 *     to it while it runs bump a counter in a small shared file beside it
 *     (epoch_path), which the server checks on every read and which flushes
 *     its L1 when it moved;
 *   - with Redis: the L1 answers while this gateway holds its cache lease
 *     and has applied every invalidation its renewal named, and writers
 *     wait for every lease holder (l2.h); with lease_ms 0 a read first
 *     learns the current invalidation seq instead, and uses the L1 only once
 *     this gateway applied every invalidation up to it; while the channel
 *     is down the L1 is flushed and bypassed;
 *   - PostgreSQL without Redis: other gateways' writes cannot be seen, so
 *     nothing is cached.
 * Access keys live in L1 only (with their sealed secret), never in Redis.
 *
 * Thread-safety: as meta.h.
 */
#ifndef CAIRN_CACHE_TIERED_H
#define CAIRN_CACHE_TIERED_H

#include "core/core.h"
#include "meta/meta.h"

typedef struct {
    size_t bytes;              /* L1 capacity (cache_bytes); 0 = no cache */
    int64_t ttl_ms;            /* an entry's lifetime in L1 and L2 (cache_ttl_ms) */
    const char *redis_url;     /* "" or NULL: no L2 and no channel */
    int redis_timeout_ms;
    int redis_breaker_ms;
    int lease_ms;              /* cache_lease_ms: leases (l2.h); 0 = a seq read per request */
    /* true: a server or gateway, which reads through the cache; false: an
     * admin command, which only invalidates what it writes. */
    bool reader;
    /* SQLite: the counter file that admin commands bump ("" or NULL: none). */
    const char *epoch_path;
} tiered_options;

/* Wraps inner (which the result owns: meta_close closes both).  Nothing to
 * wrap (bytes 0 and no Redis, or PostgreSQL without Redis for a reader)
 * returns inner itself.  CAIRN_EINVAL (bad redis_url; why says),
 * CAIRN_EIO (the epoch file), CAIRN_ENOMEM; on failure inner is left open. */
int tiered_wrap(meta_store *inner, const tiered_options *o, meta_store **out, char *why, size_t whylen);

/* A request's bounds, on the thread that serves it: between them, reads
 * share the first one's check of what this gateway has heard (without
 * leases: one Redis round trip a request instead of one a read).  Reads outside a scope
 * (background work) check each time.  Any write acknowledged before the
 * request began is still seen; one acknowledged while it runs is concurrent
 * with it, and may or may not be. */
void tiered_scope_begin(void);
void tiered_scope_end(void);

/* Decodes a cached value as a read from L2 would (Redis is input): 0 when
 * it is a record this binary wrote, CAIRN_EINVAL when it must be a miss,
 * CAIRN_ENOMEM.  For the fuzz target. */
int tiered_decode_value(const void *val, size_t len);

/* True when ms is a tiered store. */
bool tiered_is(const meta_store *ms);
/* Appends the cache's Prometheus figures (per tier); nothing for a store
 * that is not tiered. */
void tiered_render_metrics(meta_store *ms, buf_t *out);
/* *configured: Redis is set up; *up: its channel is up and the breaker closed.
 * Both false for a store that is not tiered. */
void tiered_redis_state(meta_store *ms, bool *configured, bool *up);
/* Statistics for tests: L1 loads (backend or L2 reads behind a miss) and
 * backend reads of the cached kinds. */
typedef struct {
    uint64_t l1_hits, l1_misses, backend_reads, l2_hits, l2_misses;
    uint64_t write_fills;      /* object records a put stored in L1 (write-through) */
} tiered_counts;
void tiered_counts_get(meta_store *ms, tiered_counts *out);
/* Tests: the Redis client under ms (NULL: none), for l2_stats_get and
 * l2_test_pause. */
struct l2;
struct l2 *tiered_test_l2(meta_store *ms);

/* Tests: every backend read of a cached record takes delay_ms longer (so
 * concurrent misses overlap for sure). */
void tiered_set_load_delay_ms(meta_store *ms, int delay_ms);

#endif
