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

#include <stdatomic.h>
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

Test(queue, last_attempt_discards_and_unknown_kinds_are_discarded) {
    fx f = {0};
    fx_open(&f);
    kind_state fail = {.f = &f};
    queue_start(&f, fast_options(1), "t.fail", run_fail, &fail);
    int64_t id = 0, none = 0;
    cr_assert_eq(jobs_enqueue(f.q, "t.fail", "{}", 2, NULL, &id), 0);
    cr_assert_eq(jobs_enqueue(f.q, "t.none", "{}", 1, NULL, &none), 0);
    meta_job j = wait_state(&f, id, "discarded");
    cr_expect_eq(j.attempts, 2);
    cr_expect_str_eq(j.last_error, "always fails");
    meta_job_clear(&j);
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
