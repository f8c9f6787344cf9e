/*
 * kinds.c — the job kinds a gateway runs, and their periodic schedule.
 *
 * collect_orphans: removes shard files that no metadata references and that
 *   are older than an hour (args "grace_s" overrides, for tests), on local
 *   drives and on storage nodes (through their listing call).  A node that
 *   cannot be listed fails the run after the rest is collected, so the job
 *   is retried.  Enqueued at every start with "started_ms" (the process's
 *   start): then a shard counts when it is older than the time since that
 *   start, i.e. it was written before this process existed, so what a crash
 *   left between writing shards and committing them goes at once.  Ages are
 *   durations on the drive's own clock, so no clock needs to agree.  (Safe
 *   when one process writes these drives: the data directory's lock.  When
 *   gateways share a PostgreSQL database and nodes, another gateway's upload
 *   may have written shards before this start and not committed them yet:
 *   then the run also has "min_age_ms", waits that long after the start and
 *   takes only shards at least that old — older than any upload's wait
 *   between its shards and its commit; decision 0013.)
 * abort_abandoned_uploads: aborts multipart uploads initiated more than
 *   multipart_expiry seconds ago and removes their parts' bytes.  Idempotent:
 *   an upload already gone is simply not found again.
 * prune_jobs: deletes completed and cancelled jobs older than job_retention_s
 *   and discarded ones older than job_discarded_retention_s.
 * empty_trash: removes the shards listed in the trash (the parts of every
 *   upload of a deleted bucket, the parts of a multipart object overwritten
 *   or deleted) and forgets them, a batch at a time; a shard that cannot be
 *   removed now (its node is down) stays listed and the run is retried.  A
 *   shard on a node this gateway has not opened (removed from the registry,
 *   or down since the start) is forgotten: orphan collection takes it once
 *   the node is back.  Enqueued by DeleteBucket, at start and periodically.
 * heal: rewrites the missing or damaged shards of one version (args
 *   version_id, layout, size), queued by reads that found damage
 *   (jobs_enqueue_heal, the data store's heal sink).  A heal that fails, say
 *   while a node is down, is retried with backoff.  A version deleted
 *   meanwhile is skipped.  Idempotent: a healthy version needs no rewrite.
 * audit_retention: deletes the audit store's events older than
 *   audit_retention_days (docs/audit.md), 10000 at a time, each batch its
 *   own transaction; periodic.  Registered by every process that serves
 *   the audit store (jobs_register_audit), so it runs on whichever claims
 *   it: once per period across gateways, by its unique key.
 * kms_rewrap: after a KMS key's rotation, moves the data keys wrapped by
 *   its older versions to the newest one, a batch per run, each run
 *   enqueueing the next with its cursor (rewrap.c says how).  Registered by
 *   jobs_register_kms_rewrap, with the process's key manager.
 * test.record / test.fail (only with CAIRN_TEST_JOB_KINDS set): append to a
 *   file named in the arguments, so tests can see every run; test.record may
 *   sleep first (args "sleep_ms"; with "interruptible": true it releases the
 *   job when the queue stops) and skips work already recorded as done.
 *   test.noop does nothing: the queue's own cost, for bench/jobs.py.
 */
#include "jobs/jobs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

typedef struct {
    job_queue *q;
    meta_store *ms;
    data_store *ds;
    int64_t expiry_s;
    int64_t orphan_grace_s;
    int64_t retention_s, discarded_retention_s;
} builtin_ctx;

/* Each run's own counters (runs of one kind may overlap). */
typedef struct {
    builtin_ctx *c;
    int aborted, seen;
    bool stopped;
} abort_run;

static void drop_part(void *ud, const meta_part *p) {
    builtin_ctx *c = ud;
    data_layout l;
    if (data_layout_parse(p->layout, &l) == 0) data_delete(c->ds, p->version_id, &l);
}

static int abort_one(void *ud, const meta_upload *u) {
    abort_run *a = ud;
    builtin_ctx *c = a->c;
    if (jobs_stopping(c->q)) {
        a->stopped = true;
        return 1;
    }
    a->seen++;
    if (meta_upload_abort(c->ms, u->upload_id, drop_part, c) == 0) {
        a->aborted++;
        log_write(LOG_INFO, NULL, "aborted abandoned multipart upload", "bucket", u->bucket, "key", u->key,
                  "upload_id", u->upload_id, NULL);
    }
    return 0;
}

static int run_abort_abandoned(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    builtin_ctx *c = ud;
    int64_t before = time_now_ms() - c->expiry_s * 1000;
    abort_run a = {c, 0, 0, false};
    int rc = 0;
    /* Batches of 1000, oldest first, until none are left (or a batch could
     * abort none of its uploads: the next run tries those again). */
    for (;;) {
        int aborted = a.aborted;
        a.seen = 0;
        rc = meta_upload_list_older(c->ms, before, 1000, abort_one, &a);
        if (rc != 0 || a.stopped || a.seen < 1000 || a.aborted == aborted) break;
    }
    if (rc != 0) snprintf(err, errlen, "listing uploads failed: %s", cairn_strerror(rc));
    return rc == 0 && a.stopped ? JOBS_RELEASE : rc;
}

/* collect_orphans: shard files no metadata references (a crash between a
 * shard's rename and its metadata commit, the old copy a rebalance moved but
 * could not remove, the new copies of a move it could not record: see
 * jobs_shard_referenced) are removed once
 * older than the grace period, which covers every legitimate window between
 * a shard becoming durable and its commit.  Idempotent. */
typedef struct {
    builtin_ctx *c;
    int64_t grace_ms;
    int removed;
    bool stopped;
} orphan_ctx;

static int orphan_visit(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms) {
    orphan_ctx *o = ud;
    if (jobs_stopping(o->c->q)) {
        o->stopped = true;
        return 1;
    }
    if (age_ms <= o->grace_ms) return 0;
    bool referenced;
    if (jobs_shard_referenced(o->c->ms, drive_id, version_id, index, &referenced) != 0 || referenced) return 0;
    if (data_remove_shard(o->c->ds, drive_id, version_id, index) == 0) {
        o->removed++;
        log_write(LOG_INFO, NULL, "removed unreferenced shard", "drive_id", drive_id, "version_id", version_id, NULL);
    }
    return 0;
}

static int run_collect_orphans(void *ud, const meta_job *job, char *err, size_t errlen) {
    builtin_ctx *c = ud;
    orphan_ctx o = {c, c->orphan_grace_s * 1000, 0, false};
    json_t *a = json_loads(job->args, 0, NULL);
    json_t *g = a ? json_object_get(a, "grace_s") : NULL;
    json_t *started = a ? json_object_get(a, "started_ms") : NULL;
    json_t *min_age = a ? json_object_get(a, "min_age_ms") : NULL;
    if (json_is_integer(g)) o.grace_ms = json_integer_value(g) * 1000;
    /* Written before the process started: older than the time since then.
     * That time only grows while the walk runs, and each age was measured
     * before the comparison, so the test never takes a younger shard.  With
     * other gateways on the database, also at least min_age_ms old: older
     * than any shard whose upload another gateway has yet to commit. */
    int64_t start_ms = json_is_integer(started) ? json_integer_value(started) : 0;
    if (start_ms) o.grace_ms = time_now_ms() - start_ms;
    if (start_ms && json_is_integer(min_age) && o.grace_ms < json_integer_value(min_age))
        o.grace_ms = json_integer_value(min_age);
    json_decref(a);
    int unreachable = 0;
    int rc = data_walk_shards(c->ds, orphan_visit, &o, &unreachable);
    if (o.stopped) return JOBS_RELEASE;
    /* A start's pass names the start (the process's start time, in ms since
     * the epoch): with several gateways it may run in another process. */
    char rm[24], un[24], st[24];
    log_write(LOG_INFO, NULL, "orphan collection pass", "removed", log_int(rm, o.removed), "unreachable_drives",
              log_int(un, unreachable), start_ms ? "started_ms" : NULL, log_int(st, start_ms), NULL);
    if (rc == 0 && unreachable > 0) {
        /* The rest was collected; retrying later covers the nodes that were down. */
        snprintf(err, errlen, "%d drive(s) could not be listed", unreachable);
        rc = CAIRN_EIO;
    }
    return rc;
}

/* empty_trash */
#define TRASH_BATCH 256

typedef struct {
    meta_trash_entry *v;
    int n;
} trash_batch;

static int take_trash(void *ud, const meta_trash_entry *e) {
    trash_batch *b = ud;
    b->v[b->n++] = *e;
    return 0;
}

int jobs_empty_trash(meta_store *ms, data_store *ds, int max_batches, int *removed) {
    *removed = 0;
    trash_batch b = {calloc(TRASH_BATCH, sizeof(meta_trash_entry)), 0};
    const char **done = calloc(TRASH_BATCH, sizeof *done);
    int rc = b.v && done ? 0 : CAIRN_ENOMEM, failed = 0;
    for (int batches = 0; rc == 0 && (max_batches <= 0 || batches < max_batches); batches++) {
        b.n = 0;
        rc = meta_trash_list(ms, TRASH_BATCH, take_trash, &b);
        if (rc != 0 || b.n == 0) break;
        int nd = 0;
        for (int i = 0; i < b.n; i++) {
            data_layout l;
            int e = data_layout_parse(b.v[i].layout, &l);
            if (e == 0) e = data_delete(ds, b.v[i].version_id, &l);
            if (e == 0 || e == CAIRN_EINVAL) done[nd++] = b.v[i].version_id; /* a bad layout has nothing to remove */
            else failed++;
        }
        rc = meta_trash_remove(ms, done, nd);
        if (rc == 0) *removed += nd;
        if (nd < b.n) break; /* what is left cannot go now: retried later */
    }
    free(done);
    free(b.v);
    return rc != 0 ? rc : failed ? CAIRN_EIO : 0;
}

static int run_empty_trash(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    builtin_ctx *c = ud;
    int removed = 0;
    int rc = jobs_empty_trash(c->ms, c->ds, 0, &removed);
    if (removed) {
        char n[24];
        log_write(LOG_INFO, NULL, "emptied the trash", "versions", log_int(n, removed), NULL);
    }
    if (rc != 0) snprintf(err, errlen, "emptying the trash: %s", cairn_strerror(rc));
    return rc;
}

int jobs_enqueue_startup_orphans(meta_store *ms, int64_t started_ms, int64_t min_age_ms) {
    char args[96];
    if (min_age_ms > 0)
        snprintf(args, sizeof args, "{\"started_ms\":%lld,\"min_age_ms\":%lld}", (long long)started_ms,
                 (long long)min_age_ms);
    else
        snprintf(args, sizeof args, "{\"started_ms\":%lld}", (long long)started_ms);
    /* With a minimum age, the run waits for it: a shard this process's crash
     * left is then old enough to go in this run. */
    meta_job j = {.priority = 2, .max_attempts = 5,
                  .run_at_ms = min_age_ms > 0 ? started_ms + min_age_ms : time_now_ms()};
    snprintf(j.kind, sizeof j.kind, "collect_orphans");
    j.args = args;
    return meta_job_enqueue(ms, &j, NULL);
}

int jobs_enqueue_empty_trash(meta_store *ms) {
    meta_job j = {.priority = 3, .max_attempts = 20, .run_at_ms = time_now_ms(), .unique_while_pending = true};
    snprintf(j.kind, sizeof j.kind, "empty_trash");
    snprintf(j.unique_key, sizeof j.unique_key, "empty_trash");
    j.args = (char *)(uintptr_t)"{}";
    int rc = meta_job_enqueue(ms, &j, NULL);
    return rc == CAIRN_EEXIST ? 0 : rc; /* one pending run empties it all */
}

/* heal */
static int run_heal(void *ud, const meta_job *job, char *err, size_t errlen) {
    builtin_ctx *c = ud;
    json_t *a = json_loads(job->args, 0, NULL);
    const char *vid = a ? json_string_value(json_object_get(a, "version_id")) : NULL;
    const char *layout = a ? json_string_value(json_object_get(a, "layout")) : NULL;
    json_t *size = a ? json_object_get(a, "size") : NULL;
    data_layout l;
    int rc = 0;
    if (!vid || !layout || !json_is_integer(size) || data_layout_parse(layout, &l) != 0) {
        snprintf(err, errlen, "heal args need version_id, layout and size");
        rc = CAIRN_EINVAL;
    } else {
        bool exists = true;
        meta_version_referenced(c->ms, vid, &exists); /* on doubt, heal */
        if (exists) rc = data_heal_logged(c->ds, vid, &l, json_integer_value(size));
        if (rc != 0) snprintf(err, errlen, "heal failed: %s", cairn_strerror(rc));
    }
    json_decref(a);
    return rc;
}

int jobs_enqueue_heal(void *ms, const char *version_id, const data_layout *l, int64_t size) {
    char layout[256];
    if (data_layout_format(l, layout, sizeof layout) != 0) return CAIRN_EINVAL;
    json_t *a = json_pack("{s:s, s:s, s:I}", "version_id", version_id, "layout", layout, "size", (json_int_t)size);
    char *args = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!args) return CAIRN_ENOMEM;
    meta_job j = {.priority = 5, .max_attempts = 10, .run_at_ms = time_now_ms(), .unique_while_pending = true};
    snprintf(j.kind, sizeof j.kind, "heal");
    snprintf(j.unique_key, sizeof j.unique_key, "heal:%s", version_id);
    j.args = args;
    int rc = meta_job_enqueue(ms, &j, NULL);
    free(args);
    return rc == CAIRN_EEXIST ? 0 : rc;  /* already pending: that run covers this damage */
}

/* prune_jobs: finished jobs past their retention, in batches of 1000. */
static int run_prune_jobs(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    builtin_ctx *c = ud;
    int64_t now = time_now_ms(), total = 0, n = 0;
    int rc;
    do {
        if (jobs_stopping(c->q)) return JOBS_RELEASE;
        rc = meta_job_prune(c->ms, now - c->retention_s * 1000, now - c->discarded_retention_s * 1000, 1000, &n);
        total += n;
    } while (rc == 0 && n == 1000);
    /* Completed uploads are remembered (for retried completes) as long as an
     * unfinished upload would have lived. */
    while (rc == 0) {
        if (jobs_stopping(c->q)) return JOBS_RELEASE;
        rc = meta_upload_completed_prune(c->ms, now - c->expiry_s * 1000, 1000, &n);
        if (n < 1000) break;
    }
    if (total > 0) {
        char t[24];
        log_write(LOG_INFO, NULL, "pruned finished jobs", "deleted", log_int(t, total), NULL);
    }
    if (rc != 0) snprintf(err, errlen, "pruning jobs failed: %s", cairn_strerror(rc));
    return rc;
}

/* ---- test kinds ---------------------------------------------------------------------- */

static int append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return CAIRN_EIO;
    size_t n = strlen(line);
    int rc = write(fd, line, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : CAIRN_EIO;
    close(fd);
    return rc;
}

static bool already_done(const char *path, long long id) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[128], want[64];
    snprintf(want, sizeof want, "done %lld\n", id);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = !strcmp(line, want);
    fclose(f);
    return found;
}

static int run_test_record(void *ud, const meta_job *job, char *err, size_t errlen) {
    builtin_ctx *c = ud;
    json_t *a = json_loads(job->args, 0, NULL);
    const char *file = a ? json_string_value(json_object_get(a, "file")) : NULL;
    if (!file) {
        json_decref(a);
        snprintf(err, errlen, "args need \"file\"");
        return -1;
    }
    long long id = (long long)job->id;
    char line[96];
    int rc = 0;
    if (!already_done(file, id)) { /* idempotent: a rerun after a crash does the work once */
        snprintf(line, sizeof line, "start %lld\n", id);
        rc = append_line(file, line);
        json_int_t sleep_ms = json_integer_value(json_object_get(a, "sleep_ms"));
        bool interruptible = json_is_true(json_object_get(a, "interruptible"));
        for (json_int_t slept = 0; rc == 0 && slept < sleep_ms; slept += 10) {
            if (interruptible && jobs_stopping(c->q)) {
                json_decref(a);
                return JOBS_RELEASE;
            }
            usleep(10000);
        }
        snprintf(line, sizeof line, "done %lld\n", id);
        if (rc == 0) rc = append_line(file, line);
    }
    if (rc) snprintf(err, errlen, "cannot write %s", file); /* file lives in a */
    json_decref(a);
    return rc;
}

static int run_test_noop(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)ud, (void)job, (void)err, (void)errlen;
    return 0;
}

static int run_test_fail(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)ud;
    json_t *a = json_loads(job->args, 0, NULL);
    const char *file = a ? json_string_value(json_object_get(a, "file")) : NULL;
    if (file) {
        char line[96];
        snprintf(line, sizeof line, "attempt %d %lld\n", job->attempts, (long long)time_now_ms());
        append_line(file, line);
    }
    json_decref(a);
    snprintf(err, errlen, "test.fail always fails (attempt %d)", job->attempts);
    return -1;
}

int jobs_register_builtin(job_queue *q, meta_store *ms, data_store *ds, const jobs_builtin_options *o) {
    builtin_ctx *c = calloc(1, sizeof *c); /* the queue frees it */
    if (!c) return CAIRN_ENOMEM;
    *c = (builtin_ctx){.q = q, .ms = ms, .ds = ds, .expiry_s = o->multipart_expiry_s, .orphan_grace_s = 3600,
                       .retention_s = o->retention_s, .discarded_retention_s = o->discarded_retention_s};
    int rc = jobs_register_owned(q, "abort_abandoned_uploads", run_abort_abandoned, c);
    if (rc != 0) free(c);
    if (rc == 0) rc = jobs_register(q, "collect_orphans", run_collect_orphans, c);
    if (rc == 0) rc = jobs_register(q, "heal", run_heal, c);
    if (rc == 0) rc = jobs_register(q, "empty_trash", run_empty_trash, c);
    if (rc == 0) rc = jobs_register(q, "prune_jobs", run_prune_jobs, c);
    const char *t = getenv("CAIRN_TEST_JOB_KINDS");
    if (rc == 0 && t && *t) {
        rc = jobs_register(q, "test.record", run_test_record, c);
        if (rc == 0) rc = jobs_register(q, "test.fail", run_test_fail, c);
        if (rc == 0) rc = jobs_register(q, "test.noop", run_test_noop, c);
    }
    return rc;
}

typedef struct {
    job_queue *q;
    meta_store *ms;
    int retention_days;
} audit_ctx;

#define AUDIT_DELETE_BATCH 10000

static int run_audit_retention(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    audit_ctx *c = ud;
    if (c->retention_days <= 0) return 0; /* keep forever */
    int64_t before_us = (time_now_ms() - (int64_t)c->retention_days * 86400 * 1000) * 1000;
    int64_t total = 0, n = 0;
    int rc;
    do {
        if (jobs_stopping(c->q)) return JOBS_RELEASE;
        rc = meta_audit_delete_before(c->ms, before_us, AUDIT_DELETE_BATCH, &n);
        total += n;
    } while (rc == 0 && n == AUDIT_DELETE_BATCH);
    if (total > 0) {
        char t[24], d[24];
        log_write(LOG_INFO, NULL, "audit events past their retention deleted", "deleted", log_int(t, total),
                  "retention_days", log_int(d, c->retention_days), NULL);
    }
    if (rc != 0) snprintf(err, errlen, "deleting audit events failed: %s", cairn_strerror(rc));
    return rc;
}

int jobs_register_prune(job_queue *q, meta_store *ms, const jobs_builtin_options *o) {
    builtin_ctx *c = calloc(1, sizeof *c); /* the queue frees it */
    if (!c) return CAIRN_ENOMEM;
    *c = (builtin_ctx){.q = q, .ms = ms, .expiry_s = o->multipart_expiry_s, .retention_s = o->retention_s,
                       .discarded_retention_s = o->discarded_retention_s};
    int rc = jobs_register_owned(q, "prune_jobs", run_prune_jobs, c);
    if (rc != 0) free(c);
    return rc;
}

int jobs_register_audit(job_queue *q, meta_store *ms, int retention_days) {
    audit_ctx *c = calloc(1, sizeof *c); /* the queue frees it */
    if (!c) return CAIRN_ENOMEM;
    *c = (audit_ctx){.q = q, .ms = ms, .retention_days = retention_days};
    int rc = jobs_register_owned(q, "audit_retention", run_audit_retention, c);
    if (rc != 0) free(c);
    return rc;
}

/* A periodic job of kind, unless this queue has no handler for it (a
 * process that runs only some kinds: cairn audit-server). */
static void enqueue_periodic(job_queue *q, const char *kind, int max_attempts, long long period) {
    if (!jobs_kind_registered(q, kind)) return;
    char key[128];
    snprintf(key, sizeof key, "periodic:%s:%lld", kind, period);
    jobs_enqueue(q, kind, "{}", max_attempts, key, NULL);
}

void jobs_schedule_periodic(job_queue *q, int64_t period_s) {
    if (period_s <= 0) return;
    long long period = (long long)(time_now_ms() / 1000 / period_s);
    enqueue_periodic(q, "abort_abandoned_uploads", 3, period);
    enqueue_periodic(q, "collect_orphans", 3, period);
    enqueue_periodic(q, "prune_jobs", 3, period);
    enqueue_periodic(q, "empty_trash", 20, period);
    enqueue_periodic(q, "audit_retention", 3, period);
    enqueue_periodic(q, "lifecycle_scan", 3, period);
}
