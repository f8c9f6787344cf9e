/*
 * jobs — background work of the gateway: the scrubber, membership and
 * rebalancing, and the durable job queue with its kinds (GC, expiry, heal,
 * trash).
 *
 * The scrubber walks every placement (jobs_walk: objects, parts of multipart
 * objects, parts of uploads in progress), a batch at a time, verifies every
 * block of every shard (data_heal), and
 * rewrites the shards it finds missing or corrupt.  It paces itself to
 * scrub_rate bytes per second and starts a new pass scrub_interval seconds
 * after the previous one began, so a large store is verified continuously
 * without starving client I/O.  It depends on meta (what exists) and data
 * (the bytes); neither knows about it.
 *
 * With several gateways on one database, one of them scrubs: the one
 * holding the "scrub" lease (below).
 *
 * Thread-safety: one scrubber thread per server; start/stop from one thread.
 */
#ifndef CAIRN_JOBS_H
#define CAIRN_JOBS_H

#include <stdint.h>

#include "data/data.h"
#include "meta/meta.h"
#include "obs/obs.h"

/* Calls fn for every placement (meta_placement_scan: objects, parts of
 * completed multipart objects, parts of uploads in progress) without holding
 * a database connection during fn; stops early when fn returns nonzero or
 * stop(ud) (may be NULL) returns true.  Returns the number visited or a
 * negative error. */
int jobs_walk(meta_store *ms, int (*fn)(void *ud, const meta_placement *p), bool (*stop)(void *ud), void *ud);
/* A placement in words for logs: "object B/K", "upload part 3 of ID"... */
void jobs_describe(const meta_placement *p, char *out, size_t n);
/* Sets *referenced to whether shard `index` of version_id on drive_id is one
 * metadata references: its version exists and its layout puts that shard on
 * that drive.  A copy a move or a failed rebalance left on another drive is
 * not referenced though its version lives.  Returns 0 or the lookup's error
 * (then *referenced is true: a spare copy is cheaper than a lost one). */
int jobs_shard_referenced(meta_store *ms, const char *drive_id, const char *version_id, int index, bool *referenced);

/*
 * Leases (lease.c): work one gateway does for all, however many share the
 * database — the scrubber ("scrub") and node bookkeeping and rebalancing
 * ("membership").  jobs_lease_start runs a thread that takes the lease
 * (meta_lease_acquire) for this process and renews it every third of its
 * ttl; one that dies loses it ttl after its last renewal, and another
 * gateway's thread takes it.  The work's thread asks jobs_lease_held
 * between steps and stops when it is false; jobs_lease_term changes each
 * time the lease is taken anew (so a pass the previous holder may have left
 * unfinished runs again).  A lease whose renewals fail counts as lost half
 * a ttl after the last one that succeeded.  Changes are logged ("lease
 * taken", "lease lost") and exported as the gauge cairn_leader{role}.
 * Thread-safety: held and term from any thread; start and stop from one.
 */
typedef struct jobs_lease jobs_lease;

typedef struct {
    const char *holder;        /* who this process is, the same across its restarts ("host:data_dir") */
    int64_t ttl_ms;            /* leader_lease_ms */
} jobs_lease_options;

/* CAIRN_EINVAL for an empty or too long role (31 bytes) or holder (255),
 * or a ttl below 3 ms. */
int jobs_lease_start(meta_store *ms, obs_registry *obs, const char *role, const jobs_lease_options *o,
                     jobs_lease **out);
bool jobs_lease_held(jobs_lease *l);
/* Which holding this is: a new number each time the lease is taken anew, 0
 * while it is not held. */
uint64_t jobs_lease_term(jobs_lease *l);
/* Stops the thread and releases the lease, so another gateway takes it at
 * its next try instead of a ttl later. */
void jobs_lease_stop(jobs_lease *l);

/* data_heal of placement p (l: its parsed layout), then, if shards were
 * rewritten, a second look: when the placement moved (a rebalance) or went
 * (a delete) while the heal ran, the rewritten copies belong to nothing and
 * are removed again (and *repaired is 0).  Returns data_heal's result, or
 * CAIRN_ENOTFOUND for a placement that went. */
int jobs_heal_placement(meta_store *ms, data_store *ds, const meta_placement *p, const data_layout *l,
                        int *repaired);

typedef struct scrubber scrubber;

/* Starts the scrubber thread.  interval_s == 0 disables it (returns 0 and sets
 * *out to NULL).  rate_bps: bytes verified per second at most (0 = no limit).
 * Passes run only while this process holds the "scrub" lease (lease):
 * however many gateways run, one scrubs. */
int scrub_start(meta_store *ms, data_store *ds, obs_registry *obs, int interval_s, int64_t rate_bps,
                const jobs_lease_options *lease, scrubber **out);
/* Stops and joins the thread (the current object finishes first). */
void scrub_stop(scrubber *s);

/*
 * Membership (gateways over storage nodes).  A thread that every heartbeat:
 *  - health-checks every node; nodes that do not answer get no new shards
 *    from this gateway (each gateway judges what it can reach);
 *  - applies the registry: nodes added with `cairn admin node add` join the
 *    store, `draining` and `removed` nodes stop taking shards;
 *  - on the gateway holding the "membership" lease only (one of all that
 *    share the database): records the health checks in the registry
 *    (last_seen, last_error), and runs the rebalance passes: one when it
 *    takes the lease (the last holder's may be unfinished), and one a
 *    heartbeat after any change to the set of placeable nodes (by then every
 *    gateway has applied the change to its own writes).  A pass gives every
 *    object whose rendezvous placement moved just the moved shards,
 *    rewritten on their new nodes, metadata repointed (only if the version
 *    is unchanged), and the old copies removed.  Objects already in place
 *    cost a metadata read, so a pass interrupted by a restart or a lost
 *    lease simply runs again.
 */
typedef struct membership membership;

int membership_start(meta_store *ms, data_store *ds, obs_registry *obs, int heartbeat_ms,
                     const jobs_lease_options *lease, membership **out);
void membership_stop(membership *m);
/* Runs one rebalance pass now (tests, admin); returns objects moved or < 0. */
int membership_rebalance(membership *m);
/* Opens every node of the registry the store does not have yet (nodes added
 * with `cairn admin node add`), and marks which take new shards (active) and
 * which do not (draining, removed).  A node that does not answer is left for
 * the next heartbeat.  Run once at open, so fsck and a starting gateway see
 * the shards those nodes hold, and again by every heartbeat.  sig, if given,
 * receives the ids of the active nodes ("id,id,"). */
int membership_apply_registry(meta_store *ms, data_store *ds, buf_t *sig);

/*
 * The durable job queue.  Jobs live in the metadata database (kind, JSON
 * arguments, priority, run-at time, attempts, state, lease).  Workers claim a
 * due job in one write transaction and hold it under a lease; a worker that
 * dies leaves a lease that expires, and the job runs again — so handlers must
 * be idempotent: running one twice must have the effect of running it once.
 * A failed run is retried after exponential backoff with full jitter
 * (uniform in [0, min(cap, base * 2^(attempt-1))]); after max_attempts the job
 * is discarded, keeping its last error (the queue's dead letters).
 * Stopping the queue lets running jobs finish (or releases them) first.
 */
typedef struct job_queue job_queue;

/* A handler runs one job.  Returns 0 on success, JOBS_RELEASE when it stopped
 * early because the queue is stopping (jobs_stopping): the job goes back to
 * available without counting the attempt and runs again later; or another
 * nonzero value with err filled (the run is retried or, after max_attempts,
 * discarded).  Must be idempotent. */
typedef int (*job_handler)(void *ud, const meta_job *job, char *err, size_t errlen);
#define JOBS_RELEASE 1
/* Or JOBS_DEFER: the job must wait (for another job, say): it goes back to
 * available, not before about job_backoff_base_ms from now, and the run
 * does not count as an attempt. */
#define JOBS_DEFER 2

typedef struct {
    int workers;               /* worker threads */
    int64_t lease_ms;          /* a run's lease; a dead worker's job runs again after it */
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t poll_ms;           /* idle workers look for due jobs this often (and when woken: an
                                  enqueue here, or on PostgreSQL a notification of one anywhere) */
    int64_t periodic_s;        /* schedule periodic jobs this often; 0 = never */
} job_options;

int jobs_queue_new(meta_store *ms, obs_registry *obs, const job_options *opt, job_queue **out);
/* Registers a handler for kind (before start). */
int jobs_register(job_queue *q, const char *kind, job_handler fn, void *ud);
/* The same, and the queue frees ud (malloc'd) when it is freed. */
int jobs_register_owned(job_queue *q, const char *kind, job_handler fn, void *ud);
int jobs_queue_start(job_queue *q);
/* Stops claiming, waits for running jobs to finish (or release: handlers
 * that can take long poll jobs_stopping), joins the workers. */
void jobs_queue_free(job_queue *q);
/* True once the queue is stopping. */
bool jobs_stopping(job_queue *q);
/* Enqueues (wakes a worker); see meta_job_enqueue. */
int jobs_enqueue(job_queue *q, const char *kind, const char *args, int max_attempts, const char *unique_key,
                 int64_t *id);
/* Wakes an idle worker: jobs were enqueued some other way than
 * jobs_enqueue (with an object change: bucket notifications). */
void jobs_wake(job_queue *q);
/* Appends cairn_jobs{kind,state} gauges. */
void jobs_render_metrics(meta_store *ms, buf_t *out);

/* The kinds the gateway runs (kinds.c); the periodic ones are scheduled every
 * period with a unique key per period. */
typedef struct {
    int64_t multipart_expiry_s;        /* abort_abandoned_uploads: uploads older than this */
    int64_t retention_s;               /* prune_jobs: completed and cancelled jobs older than this */
    int64_t discarded_retention_s;     /* prune_jobs: discarded jobs older than this */
} jobs_builtin_options;
int jobs_register_builtin(job_queue *q, meta_store *ms, data_store *ds, const jobs_builtin_options *o);
/* A data_heal_sink_fn (ud = the meta_store): queues a durable "heal" job for
 * the version, unique while one is pending. */
int jobs_enqueue_heal(void *ms, const char *version_id, const data_layout *l, int64_t size);
/* Removes the shards the trash lists (meta_trash_list) and forgets them, in
 * batches of 256 (max_batches of them; 0 = until it is empty); *removed gets
 * how many versions went.  CAIRN_EIO when some could not be removed now
 * (they stay listed).  The empty_trash job runs this. */
int jobs_empty_trash(meta_store *ms, data_store *ds, int max_batches, int *removed);
/* Asks for a collect_orphans run that removes every unreferenced shard
 * written before started_ms (this process's start): what a crash left.
 * min_age_ms > 0 (gateways sharing a database): the run waits until then
 * and takes only shards at least that old, so the shards another gateway
 * wrote but has not committed yet are not taken for a crash's. */
int jobs_enqueue_startup_orphans(meta_store *ms, int64_t started_ms, int64_t min_age_ms);
/* Asks for an empty_trash run soon (one pending run at a time). */
int jobs_enqueue_empty_trash(meta_store *ms);
/* Enqueues the periodic jobs due now (call every period): those whose kind
 * this queue has a handler for. */
void jobs_schedule_periodic(job_queue *q, int64_t period_s);
/* Whether q has a handler for kind. */
bool jobs_kind_registered(job_queue *q, const char *kind);
/* prune_jobs alone, for a process without a data store (cairn
 * audit-server): its finished jobs are deleted as a gateway's are. */
int jobs_register_prune(job_queue *q, meta_store *ms, const jobs_builtin_options *o);
/* The audit store's kind (kinds.c): audit_retention deletes events older
 * than retention_days (0 = keeps them forever), periodically. */
int jobs_register_audit(job_queue *q, meta_store *ms, int retention_days);

/* kms_rewrap (rewrap.c; docs/kms.md): moves the data keys wrapped by older
 * versions of a KMS key to its newest.  Its args: {"key_id": ID} and, in a
 * continuation, the cursor. */
struct kms;
typedef struct {
    int64_t seen;              /* object versions and uploads looked at */
    int64_t rewrapped;         /* data keys moved to the newest version */
    int64_t conflicts;         /* compare-and-sets lost to a concurrent change (read again) */
    int64_t skipped;           /* data keys that did not open (logged, left as they are) */
} jobs_rewrap_stats;
/* One run's work: at most batch rows after the cursor in args (st counts
 * them); *next gets the continuation's args (malloc'd, the caller frees) or
 * NULL when the walk is through.  CAIRN_EINVAL for bad args, CAIRN_ENOTFOUND
 * without the key, CAIRN_EPERM when it is disabled (err says which). */
int jobs_kms_rewrap_batch(meta_store *ms, struct kms *k, const char *args, int batch, char **next,
                          jobs_rewrap_stats *st, char *err, size_t errlen);
/* Enqueues the first run for key_id (`cairn admin kms key rotate`). */
int jobs_enqueue_kms_rewrap(meta_store *ms, const char *key_id, int64_t *id);
/* Registers kms_rewrap on q, with k (stays the caller's, open while q runs). */
int jobs_register_kms_rewrap(job_queue *q, meta_store *ms, struct kms *k);

#endif
