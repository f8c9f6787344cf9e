/*
 * test_queue.c — the worker side of the durable job queue (src/jobs/queue.c)
 * against a real SQLite metadata store.
 *
 * Each test opens a fresh database in its own mkdtemp directory, registers
 * job kinds whose handlers fail, succeed or wait deterministically (driven
 * by the attempt number and by flags the test sets), starts the workers and
 * waits for the jobs' end states by polling meta_job_get with a deadline.
 * What must hold: a failed run is retried until it succeeds or its attempts
 * run out (then it is discarded with its last error); a run whose lease was
 * taken away records nothing; a run that ends while the queue stops is
 * recorded as it ended; the options fall back to their defaults; and the
 * counters and log lines say what happened.
 */
#include <criterion/criterion.h>

#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/jobs.h"
#include "meta/meta.h"
#include "obs/obs.h"

/* ---- fixture ---------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char path[128];
    meta_store *ms;
    obs_registry *obs;
    job_queue *q;
} fx;

static int log_fd = -1;

static void fx_open(fx *f) {
    cr_assert_eq(core_init(), 0);
    strcpy(f->dir, "/tmp/cairn-test-queue-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/meta.db", f->dir);
    meta_options o = {.readers = 2, .fsync = false, .busy_timeout_ms = 5000};
    cr_assert_eq(meta_open(f->path, &o, &f->ms), 0);
    f->obs = obs_new();
    cr_assert_not_null(f->obs);
    /* The log goes to an unlinked file the test can read back. */
    char lp[] = "/tmp/cairn-test-queue-log-XXXXXX";
    log_fd = mkstemp(lp);
    cr_assert_geq(log_fd, 0);
    unlink(lp);
    log_set_fd(log_fd);
}

static void fx_close(fx *f) {
    if (f->q) jobs_queue_free(f->q);
    f->q = NULL;
    meta_close(f->ms);
    obs_free(f->obs);
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* Whether the log so far holds msg. */
static bool logged(const char *msg) {
    off_t len = lseek(log_fd, 0, SEEK_END);
    char *text = malloc((size_t)len + 1);
    cr_assert_not_null(text);
    cr_assert_eq(pread(log_fd, text, (size_t)len, 0), len);
    text[len] = '\0';
    bool found = strstr(text, msg) != NULL;
    free(text);
    return found;
}

/* Fast options: retries after at most a few ms, idle workers look often. */
static job_options fast_options(int workers) {
    job_options o = {.workers = workers, .lease_ms = 30000, .backoff_base_ms = 1, .backoff_max_ms = 4,
                     .poll_ms = 10};
    return o;
}

/* Polls until job id is in state (10 s deadline); returns the job. */
static meta_job wait_state(fx *f, int64_t id, const char *state) {
    meta_job j;
    memset(&j, 0, sizeof j);
    for (int i = 0; i < 10000; i++) {
        meta_job_clear(&j);
        cr_assert_eq(meta_job_get(f->ms, id, &j), 0);
        if (!strcmp(j.state, state)) return j;
        usleep(1000);
    }
    cr_assert_fail("job %lld still %s, never %s (last error \"%s\")", (long long)id, j.state, state, j.last_error);
    return j;
}

/* The value of an unlabelled counter in the registry's exposition. */
static long long counter(fx *f, const char *name) {
    buf_t b;
    buf_init(&b);
    obs_render(f->obs, &b);
    buf_putc(&b, '\0');
    long long v = 0;
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(b.data, pat);
    if (p) v = atoll(p + strlen(pat));
    buf_free(&b);
    return v;
}

/* ---- handlers --------------------------------------------------------------- */

typedef struct {
    fx *f;
    _Atomic int runs;
    _Atomic bool entered;
    int fail_before;            /* flaky: attempts before this one fail */
    _Atomic int64_t lease_left_ms; /* lease: what the run's lease had left at its start */
} kind_state;

static int run_ok(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    (void)err;
    (void)errlen;
    kind_state *k = ud;
    atomic_fetch_add(&k->runs, 1);
    return 0;
}

static int run_flaky(void *ud, const meta_job *job, char *err, size_t errlen) {
    kind_state *k = ud;
    atomic_fetch_add(&k->runs, 1);
    if (job->attempts >= k->fail_before) return 0;
    snprintf(err, errlen, "attempt %d failed", job->attempts);
    return -1;
}

static int run_fail(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    kind_state *k = ud;
    atomic_fetch_add(&k->runs, 1);
    snprintf(err, errlen, "always fails");
    return -1;
}

/* Records the lease the run got. */
static int run_lease(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    kind_state *k = ud;
    atomic_store(&k->lease_left_ms, job->lease_expires_ms - time_now_ms());
    atomic_fetch_add(&k->runs, 1);
    return 0;
}

/* First run: the lease is taken away mid-run (the job given back, as when
 * it expired and another worker took it), then the run fails; later runs
 * succeed. */
static int run_lose_lease(void *ud, const meta_job *job, char *err, size_t errlen) {
    kind_state *k = ud;
    if (atomic_fetch_add(&k->runs, 1) > 0) return 0;
    cr_assert_eq(meta_job_release(k->f->ms, job->id, job->lease_owner), 0);
    snprintf(err, errlen, "first run");
    return -1;
}

/* First run: gives the job back itself and asks the queue to release it,
 * which then finds it no longer holds it. */
static int run_release_twice(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    kind_state *k = ud;
    if (atomic_fetch_add(&k->runs, 1) > 0) return 0;
    cr_assert_eq(meta_job_release(k->f->ms, job->id, job->lease_owner), 0);
    return JOBS_RELEASE;
}

/* Waits for the queue to stop, then fails (rather than asking for a release). */
static int run_until_stop(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    kind_state *k = ud;
    atomic_fetch_add(&k->runs, 1);
    atomic_store(&k->entered, true);
    for (int i = 0; i < 10000 && !jobs_stopping(k->f->q); i++) usleep(1000);
    snprintf(err, errlen, "%s", jobs_stopping(k->f->q) ? "interrupted by shutdown" : "the queue never stopped");
    return -1;
}

/* Stops f's queue, waiting for its workers: what a run does after its job's
 * row changes (counters, log lines) is then done. */
static void queue_stop(fx *f) {
    jobs_queue_free(f->q);
    f->q = NULL;
}

/* A queue of f's store with one kind registered (fn, k), started. */
static void queue_start(fx *f, job_options o, const char *kind, job_handler fn, kind_state *k) {
    cr_assert_eq(jobs_queue_new(f->ms, f->obs, &o, &f->q), 0);
    cr_assert_eq(jobs_register(f->q, kind, fn, k), 0);
    cr_assert_eq(jobs_queue_start(f->q), 0);
}

/* ---- tests ------------------------------------------------------------------ */

TestSuite(queue, .timeout = 60);

Test(queue, failed_runs_retry_with_backoff_until_one_succeeds) {
    fx f = {0};
    fx_open(&f);
    kind_state flaky = {.f = &f, .fail_before = 3};
    queue_start(&f, fast_options(2), "t.flaky", run_flaky, &flaky);
    int64_t id = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.flaky", "{\"n\":1}", 5, "flaky-1", &id), 0);
    meta_job j = wait_state(&f, id, "completed");
    cr_expect_eq(j.attempts, 3);
    cr_expect_str_eq(j.args, "{\"n\":1}");
    meta_job_clear(&j);
    queue_stop(&f);
    cr_expect_eq(atomic_load(&flaky.runs), 3);
    cr_expect_eq(counter(&f, "cairn_jobs_failed_runs_total"), 2);
    cr_expect_eq(counter(&f, "cairn_jobs_completed_total"), 1);
    cr_expect(logged("job failed; will retry"));
    fx_close(&f);
}

/* The last attempt discards.  A kind this queue has no handler for is not
 * claimed at all (meta_job_kinds_set: another process sharing the database
 * may run it); were one claimed anyway (the filter cleared), it would be
 * discarded with "no handler". */
Test(queue, last_attempt_discards_and_unknown_kinds_are_left_alone) {
    fx f = {0};
    fx_open(&f);
    kind_state fail = {.f = &f};
    queue_start(&f, fast_options(1), "t.fail", run_fail, &fail);
    int64_t id = 0, none = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.none", "{}", 1, NULL, &none), 0);
    cr_assert_eq(jobs_enqueue(f.q, "t.fail", "{}", 2, NULL, &id), 0);
    meta_job j = wait_state(&f, id, "discarded");
    cr_expect_eq(j.attempts, 2);
    cr_expect_str_eq(j.last_error, "always fails");
    meta_job_clear(&j);
    /* Due before t.fail and passed over by both of its claims. */
    cr_assert_eq(meta_job_get(f.ms, none, &j), 0);
    cr_expect_str_eq(j.state, "available");
    cr_expect_eq(j.attempts, 0);
    meta_job_clear(&j);
    cr_assert_eq(meta_job_kinds_set(f.ms, NULL, 0), 0);
    j = wait_state(&f, none, "discarded");
    cr_expect_str_eq(j.last_error, "no handler for job kind 't.none'");
    meta_job_clear(&j);
    queue_stop(&f);
    cr_expect_eq(atomic_load(&fail.runs), 2);
    cr_expect(logged("job discarded after its last attempt"));
    fx_close(&f);
}

/* A run whose lease another took records nothing: the job runs again and
 * its end is that later run's. */
Test(queue, a_run_that_lost_its_lease_records_nothing) {
    fx f = {0};
    fx_open(&f);
    kind_state k = {.f = &f};
    queue_start(&f, fast_options(1), "t.steal", run_lose_lease, &k);
    int64_t id = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.steal", "{}", 3, NULL, &id), 0);
    meta_job j = wait_state(&f, id, "completed");
    cr_expect_str_eq(j.last_error, "", "the run without a lease recorded its failure");
    meta_job_clear(&j);
    queue_stop(&f);
    cr_expect_eq(atomic_load(&k.runs), 2);
    cr_expect(logged("job lease lost before it finished; another run owns it"));
    fx_close(&f);
}

Test(queue, a_release_of_a_job_no_longer_held_is_logged) {
    fx f = {0};
    fx_open(&f);
    kind_state k = {.f = &f};
    queue_start(&f, fast_options(1), "t.release", run_release_twice, &k);
    int64_t id = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.release", "{}", 3, NULL, &id), 0);
    meta_job j = wait_state(&f, id, "completed");
    meta_job_clear(&j);
    queue_stop(&f);
    cr_expect_eq(atomic_load(&k.runs), 2);
    cr_expect(logged("releasing a job at shutdown failed"));
    fx_close(&f);
}

/* A run that fails while the queue stops is recorded as a failure (to be
 * retried), not lost and not released. */
Test(queue, a_run_ending_at_shutdown_is_recorded) {
    fx f = {0};
    fx_open(&f);
    kind_state k = {.f = &f};
    queue_start(&f, fast_options(1), "t.slow", run_until_stop, &k);
    int64_t id = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.slow", "{}", 3, NULL, &id), 0);
    for (int i = 0; i < 10000 && !atomic_load(&k.entered); i++) usleep(1000);
    cr_assert(atomic_load(&k.entered), "the job never started");
    jobs_queue_free(f.q); /* waits for the run */
    f.q = NULL;
    meta_job j;
    cr_assert_eq(meta_job_get(f.ms, id, &j), 0);
    cr_expect_str_eq(j.state, "retryable");
    cr_expect_str_eq(j.last_error, "interrupted by shutdown");
    cr_expect_eq(j.attempts, 1);
    meta_job_clear(&j);
    cr_expect_eq(atomic_load(&k.runs), 1);
    fx_close(&f);
}

/* Zero options mean the defaults: one worker, a 60 s lease. */
Test(queue, zero_options_take_the_defaults) {
    fx f = {0};
    fx_open(&f);
    kind_state k = {.f = &f};
    queue_start(&f, (job_options){0}, "t.lease", run_lease, &k);
    int64_t id = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.lease", "{}", 1, NULL, &id), 0);
    meta_job j = wait_state(&f, id, "completed");
    meta_job_clear(&j);
    cr_expect_gt(atomic_load(&k.lease_left_ms), 50000);
    cr_expect_leq(atomic_load(&k.lease_left_ms), 60000);
    fx_close(&f);
}

/* More workers than the queue has room for are capped, not overrun. */
Test(queue, worker_count_is_capped) {
    fx f = {0};
    fx_open(&f);
    kind_state k = {.f = &f};
    queue_start(&f, fast_options(1000), "t.ok", run_ok, &k);
    int64_t ids[8];
    for (int i = 0; i < 8; i++) cr_assert_eq(jobs_enqueue(f.q, "t.ok", "{}", 1, NULL, &ids[i]), 0);
    for (int i = 0; i < 8; i++) {
        meta_job j = wait_state(&f, ids[i], "completed");
        meta_job_clear(&j);
    }
    cr_expect_eq(atomic_load(&k.runs), 8);
    fx_close(&f);
}

Test(queue, registration_limits) {
    fx f = {0};
    fx_open(&f);
    job_options o = fast_options(1);
    cr_assert_eq(jobs_queue_new(f.ms, f.obs, &o, &f.q), 0);
    kind_state k = {.f = &f};
    /* An owned ud is freed with the queue (the sanitizer builds check). */
    cr_expect_eq(jobs_register_owned(f.q, "t.owned", run_ok, calloc(1, sizeof(kind_state))), 0);
    char longname[80];
    memset(longname, 'k', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_expect_eq(jobs_register(f.q, longname, run_ok, &k), CAIRN_EINVAL);
    longname[64] = '\0';
    cr_expect_eq(jobs_register(f.q, longname, run_ok, &k), CAIRN_EINVAL, "no room for the terminator");
    longname[63] = '\0';
    cr_expect_eq(jobs_register(f.q, longname, run_ok, &k), 0);
    for (int i = 2; i < 32; i++) {
        char name[16];
        snprintf(name, sizeof name, "t.k%d", i);
        cr_expect_eq(jobs_register(f.q, name, run_ok, &k), 0, "kind %d", i);
    }
    cr_expect_eq(jobs_register(f.q, "t.one-too-many", run_ok, &k), CAIRN_EINVAL);
    fx_close(&f);
}

/* Enqueue fills in what the caller left out; a queue freed before it
 * started runs nothing. */
Test(queue, enqueue_defaults_and_an_unstarted_queue) {
    fx f = {0};
    fx_open(&f);
    job_options o = fast_options(1);
    cr_assert_eq(jobs_queue_new(f.ms, f.obs, &o, &f.q), 0);
    kind_state k = {.f = &f};
    cr_assert_eq(jobs_register(f.q, "t.ok", run_ok, &k), 0);
    int64_t id = 0, again = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.ok", NULL, 0, NULL, &id), 0);
    cr_assert_eq(jobs_enqueue(f.q, "t.ok", NULL, 0, NULL, &again), 0);
    cr_expect_neq(id, again, "without a unique key every enqueue adds a job");
    meta_job j;
    cr_assert_eq(meta_job_get(f.ms, id, &j), 0);
    cr_expect_str_eq(j.args, "{}");
    cr_expect_eq(j.max_attempts, 5);
    cr_expect_str_eq(j.unique_key, "");
    meta_job_clear(&j);
    int64_t dup = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.ok", NULL, 2, "once", &id), 0);
    cr_expect_eq(jobs_enqueue(f.q, "t.ok", NULL, 2, "once", &dup), CAIRN_EEXIST);
    cr_expect_eq(dup, id);
    jobs_queue_free(f.q);
    f.q = NULL;
    cr_assert_eq(meta_job_get(f.ms, id, &j), 0);
    cr_expect_str_eq(j.state, "available");
    meta_job_clear(&j);
    cr_expect_eq(atomic_load(&k.runs), 0);
    /* The gauges list what is queued. */
    buf_t b;
    buf_init(&b);
    jobs_render_metrics(f.ms, &b);
    buf_putc(&b, '\0');
    cr_expect_not_null(strstr(b.data, "cairn_jobs{kind=\"t.ok\",state=\"available\"} 3"), "%s", b.data);
    buf_free(&b);
    fx_close(&f);
}

/* ---- leases (lease.c): two "gateways" in one process, one database --------------------- */

/* Polls (deadline 10 s) until the lease's held state is want. */
static void wait_held(jobs_lease *l, bool want, const char *what) {
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end; usleep(2000))
        if (jobs_lease_held(l) == want) return;
    cr_assert_fail("%s: still %s after 10 s", what, want ? "not held" : "held");
}

static bool has_gauge(obs_registry *o, const char *line) {
    buf_t b;
    buf_init(&b);
    obs_render(o, &b);
    buf_putc(&b, '\0');
    bool found = strstr(b.data, line) != NULL;
    buf_free(&b);
    return found;
}

static void sqlite_exec(const fx *f, const char *sql) {
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(f->path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

Test(lease, one_of_two_holders_does_the_work_and_the_other_takes_over_when_it_stops) {
    fx f = {0};
    fx_open(&f);
    obs_registry *obs_b = obs_new();
    jobs_lease_options oa = {.holder = "host:/a", .ttl_ms = 600}, ob = {.holder = "host:/b", .ttl_ms = 600};
    jobs_lease *a, *b;
    cr_assert_eq(jobs_lease_start(f.ms, f.obs, "scrub", &oa, &a), 0);
    wait_held(a, true, "the first holder");
    uint64_t term_a = jobs_lease_term(a);
    cr_expect_gt(term_a, 0);
    cr_assert_eq(jobs_lease_start(f.ms, obs_b, "scrub", &ob, &b), 0);
    /* b tries at once and then every ttl/3: each try finds a's renewed lease. */
    for (int i = 0; i < 3; i++) {
        meta_lease l;
        cr_assert_eq(meta_lease_get(f.ms, "scrub", &l), 0);
        cr_expect_str_eq(l.holder, "host:/a");
        cr_expect(!jobs_lease_held(b) && jobs_lease_term(b) == 0, "b holds nothing while a renews");
        cr_expect(jobs_lease_held(a) && jobs_lease_term(a) == term_a, "a's term goes on");
        usleep(250 * 1000);
    }
    cr_expect(has_gauge(f.obs, "cairn_leader{role=\"scrub\"} 1"));
    cr_expect(has_gauge(obs_b, "cairn_leader{role=\"scrub\"} 0"));
    jobs_lease_stop(a); /* releases: b takes it at its next try, not a ttl later */
    cr_expect(logged("\"msg\":\"lease released\""));
    wait_held(b, true, "the second holder after the first released");
    cr_expect(has_gauge(f.obs, "cairn_leader{role=\"scrub\"} 0"));
    cr_expect(has_gauge(obs_b, "cairn_leader{role=\"scrub\"} 1"));
    cr_expect(logged("lease taken: this gateway does the work for all"));
    jobs_lease_stop(b);
    obs_free(obs_b);
    fx_close(&f);
}

/* A holder that died renews nothing: its lease is taken once it expires. */
Test(lease, a_dead_holders_lease_is_taken_after_it_expires) {
    fx f = {0};
    fx_open(&f);
    bool held = false;
    int64_t t0 = time_now_ms();
    cr_assert_eq(meta_lease_acquire(f.ms, "membership", "host:/dead", t0, 800, &held), 0);
    cr_assert(held);
    jobs_lease_options o = {.holder = "host:/alive", .ttl_ms = 800};
    jobs_lease *l;
    cr_assert_eq(jobs_lease_start(f.ms, f.obs, "membership", &o, &l), 0);
    wait_held(l, true, "the lease of a dead holder");
    cr_expect_geq(time_now_ms(), t0 + 800, "not before it expired");
    meta_lease got;
    cr_assert_eq(meta_lease_get(f.ms, "membership", &got), 0);
    cr_expect_str_eq(got.holder, "host:/alive");
    jobs_lease_stop(l);
    fx_close(&f);
}

/* Renewals that fail: the lease counts as held for half its ttl after the
 * last one that worked, then as lost; a release that fails is logged. */
Test(lease, failing_renewals_lose_the_lease_and_a_failed_release_is_logged) {
    fx f = {0};
    fx_open(&f);
    jobs_lease_options o = {.holder = "host:/a", .ttl_ms = 3000};
    jobs_lease *l;
    cr_assert_eq(jobs_lease_start(f.ms, f.obs, "scrub", &o, &l), 0);
    wait_held(l, true, "a free lease");
    sqlite_exec(&f, "DROP TABLE leases");
    jobs_lease_stop(l); /* within half a ttl: still held, so it tries to release */
    cr_expect(logged("lease: releasing failed; another gateway takes it when it expires"));
    sqlite_exec(&f, "CREATE TABLE leases(name TEXT PRIMARY KEY, holder TEXT NOT NULL, acquired_ms INTEGER NOT NULL,"
                    " expires_ms INTEGER NOT NULL)");
    o.ttl_ms = 600;
    cr_assert_eq(jobs_lease_start(f.ms, f.obs, "scrub", &o, &l), 0);
    wait_held(l, true, "the lease again");
    sqlite_exec(&f, "DROP TABLE leases");
    wait_held(l, false, "a lease that cannot be renewed");
    cr_expect(logged("lease: taking or renewing failed; retrying"));
    cr_expect(logged("renewals failed for half its ttl"));
    cr_expect(has_gauge(f.obs, "cairn_leader{role=\"scrub\"} 0"));
    sqlite_exec(&f, "CREATE TABLE leases(name TEXT PRIMARY KEY, holder TEXT NOT NULL, acquired_ms INTEGER NOT NULL,"
                    " expires_ms INTEGER NOT NULL)");
    wait_held(l, true, "the lease once the database answers");
    cr_expect(logged("lease: the database answers again"));
    jobs_lease_stop(l);
    fx_close(&f);
}

Test(lease, bad_options_are_einval) {
    fx f = {0};
    fx_open(&f);
    jobs_lease *l = (jobs_lease *)&f;
    jobs_lease_options o = {.holder = "host:/a", .ttl_ms = 1000};
    cr_expect_eq(jobs_lease_start(f.ms, f.obs, NULL, &o, &l), CAIRN_EINVAL);
    cr_expect_null(l);
    cr_expect_eq(jobs_lease_start(f.ms, f.obs, "a-role-name-longer-than-31-bytes", &o, &l), CAIRN_EINVAL);
    cr_expect_eq(jobs_lease_start(f.ms, f.obs, "scrub", NULL, &l), CAIRN_EINVAL);
    o.ttl_ms = 2;
    cr_expect_eq(jobs_lease_start(f.ms, f.obs, "scrub", &o, &l), CAIRN_EINVAL);
    o = (jobs_lease_options){.holder = "", .ttl_ms = 1000};
    cr_expect_eq(jobs_lease_start(f.ms, f.obs, "scrub", &o, &l), CAIRN_EINVAL);
    char holder[300];
    memset(holder, 'h', sizeof holder - 1);
    holder[sizeof holder - 1] = '\0';
    o.holder = holder;
    cr_expect_eq(jobs_lease_start(f.ms, f.obs, "scrub", &o, &l), CAIRN_EINVAL);
    jobs_lease_stop(NULL);
    /* The scrubber and membership need their lease. */
    scrubber *s = (scrubber *)&f;
    cr_expect_eq(scrub_start(f.ms, NULL, f.obs, 1, 0, NULL, &s), CAIRN_EINVAL);
    cr_expect_null(s);
    membership *m = (membership *)&f;
    cr_expect_eq(membership_start(f.ms, NULL, f.obs, 100, NULL, &m), CAIRN_EINVAL);
    cr_expect_null(m);
    fx_close(&f);
}

/* The queue's wake pipe needs two descriptors: without them, no queue. */
Test(queue, a_process_out_of_descriptors_gets_no_queue) {
    fx f = {0};
    fx_open(&f);
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest = dup(0); /* every descriptor below it is in use */
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit tight = {.rlim_cur = (rlim_t)lowest, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
    job_options o = fast_options(1);
    job_queue *q = (job_queue *)&f;
    int rc = jobs_queue_new(f.ms, f.obs, &o, &q);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_expect_eq(rc, CAIRN_EIO);
    fx_close(&f);
}
