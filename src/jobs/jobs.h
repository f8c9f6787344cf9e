/*
 * jobs — background work of the gateway.  For now the scrubber; the durable
 * job queue (issue 4) will run this and the other kinds (GC, expiry, heal,
 * rebalance) on leases and retries.
 *
 * The scrubber walks every erasure-coded object in (bucket, key) order, a
 * batch at a time, verifies every block of every shard (data_heal), and
 * rewrites the shards it finds missing or corrupt.  It paces itself to
 * scrub_rate bytes per second and starts a new pass scrub_interval seconds
 * after the previous one began, so a large store is verified continuously
 * without starving client I/O.  It depends on meta (what exists) and data
 * (the bytes); neither knows about it.
 *
 * Thread-safety: one scrubber thread per server; start/stop from one thread.
 */
#ifndef CAIRN_JOBS_H
#define CAIRN_JOBS_H

#include <stdint.h>

#include "data/data.h"
#include "meta/meta.h"
#include "obs/obs.h"

typedef struct scrubber scrubber;

/* Starts the scrubber thread.  interval_s == 0 disables it (returns 0 and sets
 * *out to NULL).  rate_bps: bytes verified per second at most (0 = no limit). */
int scrub_start(meta_store *ms, data_store *ds, obs_registry *obs, int interval_s, int64_t rate_bps,
                scrubber **out);
/* Stops and joins the thread (the current object finishes first). */
void scrub_stop(scrubber *s);

#endif
