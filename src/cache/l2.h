/*
 * l2.h — the shared tier of the metadata cache and the invalidation channel
 * between gateways, on Redis (hiredis).  Optional: redis_url.
 *
 * What lives in Redis (every name under the prefix, "cairn:" by default):
 *   seq            a counter every invalidation advances;
 *   epoch          the L2 generation: advancing it drops every L2 value at once;
 *   c:EPOCH:KEY    a cached value (KEY in hex), with a TTL;
 *   g:KEY          the key's generation: every invalidation of KEY advances it;
 *   the channel "inval", where each invalidation is published as
 *   "SEQ HEXKEY HEXKEY..." ("SEQ *EPOCH" for a flush of everything);
 *   with leases: boot / boot_time (the instance's token and when it was
 *   set), the hashes leases (gateway id -> lease end, Redis's clock) and
 *   acks (gateway id -> the last seq it applied), and the channel "ack"
 *   where each gateway publishes "GID SEQ" after applying messages.
 *
 * Read-after-write across gateways.  A writer, after its change committed
 * and before it acknowledges, runs one script that advances every changed
 * key's generation, deletes its L2 value, advances seq and publishes the keys
 * with the new seq (l2_invalidate).  A reader first reads seq (l2_sync): any
 * write acknowledged before the read began has a seq at most that.  Its own
 * subscriber applies the channel's messages in order and records the last seq
 * it applied (l2_applied); once that reaches the read's seq, every such write
 * has been applied to the local L1, so the L1 may answer (l2_wait_applied).
 *
 * Leases (lease_ms > 0, the default: cache_lease_ms) take the seq read off
 * the read path.  Each gateway holds a short lease in Redis, renewed every
 * quarter of it by its subscriber, and trusts its L1 without asking Redis
 * while the lease lasts (as it measures it, from before the renewal was
 * sent, less a tenth) and it has applied every message up to the seq the
 * renewal returned.  A writer's script also returns every other gateway
 * holding a lease and how long each has left; the writer waits until each
 * acknowledged the write's seq (channel "ack", or the acks hash when it
 * does not subscribe) or its lease ran out, so a gateway that stopped
 * answering delays writes by one lease at most, and one that renews after
 * the write must first apply it.  A Redis younger than a lease (restarted
 * or flushed, so its leases are gone) makes writers wait out a lease: the
 * leases taken from the instance before have ended by then.  Every gateway
 * must run the same cache_lease_ms.
 *
 * An L2 value is written only by a script that checks the key's generation is
 * still the one read before the database read (l2_get, then l2_fill): a slow
 * fill cannot put back what a write removed.
 *
 * Failure.  Every command has a timeout (timeout_ms).  A failed command
 * opens a circuit breaker: for breaker_ms no command is sent (CAIRN_EBUSY at
 * once), then one caller probes; a success closes it.  The subscriber runs on
 * its own connection and thread, reconnecting with backoff; when it loses the
 * channel it reports channel(ud, false) — the cache must stop trusting its L1
 * — and channel(ud, true) once it is subscribed again and knows the current
 * seq.  Errors are 0 or negative CAIRN_E* codes.
 *
 * Thread-safety: every call is thread-safe; the callbacks run on the
 * subscriber's thread.
 */
#ifndef CAIRN_CACHE_L2_H
#define CAIRN_CACHE_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct l2 l2;

typedef struct {
    const char *url;           /* redis://[:PASSWORD@]HOST[:PORT][/DB] */
    int timeout_ms;            /* connect and command timeout (default 250) */
    int breaker_ms;            /* no command for this long after a failure (default 1000) */
    int pool;                  /* command connections at most (default 4) */
    const char *prefix;        /* key prefix (default "cairn:") */
    bool subscribe;            /* run the subscriber (gateways; admin commands only publish) */
    int lease_ms;              /* leases of this length (see above); 0: readers check seq (l2_sync) */
    /* Subscriber callbacks, on its thread: drop key (klen bytes) from L1;
     * drop everything; the channel went down (false) or is back (true). */
    void (*invalidate)(void *ud, const void *key, size_t klen);
    void (*flush)(void *ud);
    void (*channel)(void *ud, bool up);
    void *ud;
} l2_options;

/* Creates the client and starts the subscriber (when asked).  It does not
 * wait for Redis: an unreachable Redis is a closed channel, not an error.
 * CAIRN_EINVAL (bad URL, why says), CAIRN_ENOMEM. */
int l2_new(const l2_options *o, l2 **out, char *why, size_t whylen);
void l2_free(l2 *r);

/* Reads the current seq and epoch (one round trip). */
int l2_sync(l2 *r, uint64_t *seq, uint64_t *epoch);
/* True when the subscriber is subscribed and has applied every message up
 * to seq, waiting up to wait_ms for it to catch up. */
bool l2_wait_applied(l2 *r, uint64_t seq, int wait_ms);
/* True while the channel is up. */
bool l2_channel_up(l2 *r);
/* Leases: true while this gateway's L1 may answer without asking Redis (a
 * lease held and every message up to its seq applied); *epoch is the L2
 * epoch to read under.  No round trip. */
bool l2_lease_usable(l2 *r, uint64_t *epoch);
/* Whether the client runs with leases (lease_ms > 0). */
bool l2_leases(const l2 *r);
/* Tests: the subscriber stops reading the channel (messages wait in the
 * socket, nothing is applied or acknowledged) but keeps renewing its lease,
 * like a gateway that fell behind; false resumes. */
void l2_test_pause(l2 *r, bool paused);

/* Reads key's L2 value under epoch into val (reset first) and the key's
 * generation: 0 with *found; *found false on a miss (gen still set). */
int l2_get(l2 *r, const void *key, size_t klen, uint64_t epoch, buf_t *val, bool *found, uint64_t *gen);
/* Stores val for key under epoch if the key's generation is still gen and
 * the epoch still epoch; *stored says whether it was. */
int l2_fill(l2 *r, const void *key, size_t klen, uint64_t epoch, uint64_t gen, const void *val, size_t vlen,
            int64_t ttl_ms, bool *stored);
/* The write side: n keys invalidated in L2 and on every subscriber (one
 * script, one message); with leases it returns once every other lease
 * holder applied it or its lease ran out.  n == 0 with keys NULL: a flush of everything
 * (the epoch advances). */
int l2_invalidate(l2 *r, const void *const *keys, const size_t *klens, int n);

/* Applies one message of the channel as the subscriber does: every key it
 * names (hex) goes to invalidate, "*" (or anything malformed) to flush, and
 * its seq counts as applied.  Redis is input: the fuzz target drives this. */
void l2_apply_message(l2 *r, const char *msg, size_t len);

typedef struct {
    uint64_t hits, misses, fills, stale_fills, invalidations, flushes, errors, breaker_opens;
    uint64_t messages, channel_drops;
    uint64_t lease_renewals, lease_lapses; /* this gateway's lease: renewed; taken again after it ran out */
    uint64_t write_waits;      /* writes that waited for another gateway's acknowledgement */
    uint64_t lease_timeouts;   /* writes that stopped waiting because a gateway's lease ran out */
    int breaker;               /* 0 closed, 1 open, 2 half-open (a probe is out) */
    bool channel_up;
    uint64_t applied;          /* the last seq the subscriber applied */
    bool lease_held;           /* leases: this gateway holds one now */
} l2_stats;

void l2_stats_get(l2 *r, l2_stats *out);
/* Counts an L2 hit or miss (the tiered cache decides what a hit is). */
void l2_count(l2 *r, bool hit);

#endif
