/*
 * queue.c — the worker side of the durable job queue (jobs.h).
 *
 * Idle workers sleep until the poll interval passes or something wakes
 * them: an enqueue in this process, or on PostgreSQL a notification that a
 * job was added anywhere (meta.h, job notifications).  Those are heard by a
 * listener thread with a connection of its own; when the connection is
 * lost it opens another with backoff (250 ms doubling to 10 s) and wakes
 * the workers once it is back, since notifications sent meanwhile were
 * missed.  Correctness never rests on a notification: polling finds every
 * due job anyway, and the claim decides who runs it.
 */
#include "jobs/jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_KINDS 32
#define MAX_WORKERS 64

typedef struct {
    char kind[64];
    job_handler fn;
    void *ud;
    bool owned;                /* ud is freed with the queue */
} kind_entry;

typedef struct {
    int64_t job_id;            /* 0 = idle */
    char owner[64];
} running_slot;

struct job_queue {
    running_slot running[MAX_WORKERS]; /* what each worker runs (guarded by mu) */
    pthread_t keeper;
    bool keeper_started;
    pthread_t listener;
    bool listener_started;
    meta_listener *listen;     /* the listener thread's (NULL while reconnecting) */
    int wake[2];               /* a byte on wake[1] stops the listener thread */
    meta_store *ms;
    obs_registry *obs;
    job_options opt;
    kind_entry kinds[MAX_KINDS];
    int nkinds;
    pthread_t threads[MAX_WORKERS];
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    char owner_prefix[48];
};

static const kind_entry *find_kind(const job_queue *q, const char *kind) {
    for (int i = 0; i < q->nkinds; i++)
        if (!strcmp(q->kinds[i].kind, kind)) return &q->kinds[i];
    return NULL;
}

bool jobs_kind_registered(job_queue *q, const char *kind) { return q && kind && find_kind(q, kind) != NULL; }

/* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
static int64_t backoff_ms(const job_options *o, int attempt) {
    int64_t ceil = o->backoff_base_ms;
    for (int i = 1; i < attempt && ceil < o->backoff_max_ms; i++) ceil *= 2;
    if (ceil > o->backoff_max_ms) ceil = o->backoff_max_ms;
    uint64_t r;
    rand_bytes(&r, sizeof r);
    return ceil > 0 ? (int64_t)(r % (uint64_t)(ceil + 1)) : 0;
}

/* What a run came to, for its finish. */
typedef struct {
    bool release;              /* the handler stopped early: give the job back */
    bool defer;                /* the handler asked to wait: give it back for later */
    const char *state;         /* completed, retryable or discarded */
    int64_t run_at;
    int rc;
    char err[256];
} run_outcome;

static void run_job(job_queue *q, const meta_job *job, run_outcome *o) {
    const kind_entry *k = find_kind(q, job->kind);
    o->err[0] = '\0';
    o->rc = k ? k->fn(k->ud, job, o->err, sizeof o->err) : -1;
    if (!k) snprintf(o->err, sizeof o->err, "no handler for job kind '%s'", job->kind);
    o->release = o->rc == JOBS_RELEASE;
    o->defer = o->rc == JOBS_DEFER;
    o->state = o->rc == 0 ? "completed" : job->attempts >= job->max_attempts ? "discarded" : "retryable";
    o->run_at = o->rc == 0 ? job->run_at_ms : time_now_ms() + backoff_ms(&q->opt, job->attempts);
}

/* Logs and counts a run's end once its finish was recorded (frc). */
static void report_run(job_queue *q, const meta_job *job, const run_outcome *o, int frc) {
    char id[24], at[24];
    snprintf(id, sizeof id, "%lld", (long long)job->id);
    snprintf(at, sizeof at, "%d", job->attempts);
    if (frc == CAIRN_ECONFLICT)
        log_write(LOG_WARN, NULL, "job lease lost before it finished; another run owns it", "job_id", id, "kind", job->kind, NULL);
    else if (frc != 0)
        log_write(LOG_WARN, NULL, "recording a job's end failed; it runs again when its lease expires", "job_id", id,
                  "kind", job->kind, "error", cairn_strerror(frc), NULL);
    else if (o->rc != 0) {
        bool last = !strcmp(o->state, "discarded");
        log_write(last ? LOG_ERROR : LOG_WARN, NULL, last ? "job discarded after its last attempt" : "job failed; will retry",
                  "job_id", id, "kind", job->kind, "attempt", at, "error", o->err, NULL);
        status_emit("job:Failed", "job_id", id, "kind", job->kind, "attempt", at, "error", o->err, "retried",
                    last ? "false" : "true", NULL);
    }
    obs_counter_add(q->obs, o->rc == 0 ? "cairn_jobs_completed_total" : "cairn_jobs_failed_runs_total",
                    o->rc == 0 ? "Job runs that completed." : "Job runs that failed (retried or discarded).", 1);
}

static void release_job(job_queue *q, const char *owner, const meta_job *job, const char *why) {
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)job->id);
    int rrc = meta_job_release(q->ms, job->id, owner);
    log_write(rrc == 0 ? LOG_INFO : LOG_WARN, NULL,
              rrc == 0 ? why : "releasing a job at shutdown failed; it runs again when its lease expires",
              "job_id", id, "kind", job->kind, NULL);
}

/* The fault build's window around one run of a job and the recording of
 * its end: the points job.KIND.begin and job.KIND.end, so a test counts the
 * calls of one kind's run (window=job.heal, window_scope=thread:
 * tests/fault/test_pg_faults.py), not the claim or another kind's. */
static void job_window(const char *kind, const char *edge) {
#if CAIRN_FAULT_BUILD
    char name[96];
    snprintf(name, sizeof name, "job.%s.%s", kind, edge);
    fault_point(name);
#else
    (void)kind;
    (void)edge;
#endif
}

typedef struct {
    job_queue *q;
    int index;
} worker_arg;

static void *worker_main(void *arg) {
    pthread_setname_np(pthread_self(), "job-worker");
    worker_arg *wa = arg;
    job_queue *q = wa->q;
    char owner[64];
    snprintf(owner, sizeof owner, "%s-w%d", q->owner_prefix, wa->index);
    int index = wa->index;
    bool scheduler = index == 0;
    int64_t next_schedule = 0;
    free(wa);
    meta_job job;
    bool have = false;         /* job was claimed and waits to run */
    for (;;) {
        if (jobs_stopping(q)) {
            if (have) {
                release_job(q, owner, &job, "job claimed at shutdown released unrun");
                meta_job_clear(&job);
            }
            break;
        }
        /* Worker 0 also schedules the periodic jobs; unique keys per period
         * make a repeat (or another gateway doing the same) harmless. */
        if (scheduler && q->opt.periodic_s > 0 && time_now_ms() >= next_schedule) {
            jobs_schedule_periodic(q, q->opt.periodic_s);
            next_schedule = time_now_ms() + (q->opt.periodic_s * 1000 < 60000 ? q->opt.periodic_s * 1000 : 60000);
        }
        /* A job taken with the previous one's finish comes first. */
        int rc = have ? 0 : meta_job_claim(q->ms, owner, time_now_ms(), q->opt.lease_ms, &job);
        have = false;
        if (rc == 0) {
            pthread_mutex_lock(&q->mu);
            q->running[index].job_id = job.id;
            snprintf(q->running[index].owner, sizeof q->running[index].owner, "%s", owner);
            pthread_mutex_unlock(&q->mu);
            run_outcome o;
            char kind[64];
            snprintf(kind, sizeof kind, "%s", job.kind);
            job_window(kind, "begin");
            run_job(q, &job, &o);
            if (o.release) {
                release_job(q, owner, &job, "job released at shutdown; it runs again later");
            } else if (o.defer) {
                /* Between half the base backoff and all of it: waiting jobs spread out. */
                int64_t base = q->opt.backoff_base_ms > 1 ? q->opt.backoff_base_ms : 2;
                uint64_t r;
                rand_bytes(&r, sizeof r);
                int64_t at = time_now_ms() + base / 2 + (int64_t)(r % (uint64_t)(base / 2 + 1));
                if (meta_job_defer(q->ms, job.id, owner, at) != 0)
                    log_write(LOG_WARN, NULL, "deferring a job failed; it runs again when its lease expires", NULL);
            } else if (jobs_stopping(q)) {
                report_run(q, &job, &o, meta_job_finish(q->ms, job.id, owner, o.state, o.run_at, o.rc ? o.err : ""));
            } else {
                /* One transaction ends this run and takes the next job. */
                int frc;
                meta_job next;
                int crc = meta_job_finish_claim(q->ms, job.id, owner, o.state, o.run_at, o.rc ? o.err : "",
                                                time_now_ms(), q->opt.lease_ms, &frc, &next);
                report_run(q, &job, &o, frc);
                if (crc == 0) {
                    meta_job_clear(&job);
                    job = next;
                    have = true;
                }
            }
            job_window(kind, "end");
            pthread_mutex_lock(&q->mu);
            q->running[index].job_id = have ? job.id : 0;
            pthread_mutex_unlock(&q->mu);
            if (!have) meta_job_clear(&job);
            continue;
        }
        /* Nothing due: sleep until poked by an enqueue, or the poll interval. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + q->opt.poll_ms * 1000000LL;
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        pthread_mutex_lock(&q->mu);
        if (!q->stop) pthread_cond_timedwait(&q->cv, &q->mu, &until);
        pthread_mutex_unlock(&q->mu);
    }
    return NULL;
}

/* Renews the leases of running jobs every third of a lease, so a live run
 * keeps its job however long it takes; only a dead process lets one lapse. */
static void *keeper_main(void *arg) {
    pthread_setname_np(pthread_self(), "job-keeper");
    job_queue *q = arg;
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + q->opt.lease_ms / 3 * 1000000LL;
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        pthread_mutex_lock(&q->mu);
        while (!q->stop)
            if (pthread_cond_timedwait(&q->cv, &q->mu, &until) != 0) break;
        if (q->stop) {
            pthread_mutex_unlock(&q->mu);
            break;
        }
        running_slot slots[MAX_WORKERS];
        memcpy(slots, q->running, sizeof slots);
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < q->nthreads; i++)
            if (slots[i].job_id) meta_job_extend(q->ms, slots[i].job_id, slots[i].owner, time_now_ms() + q->opt.lease_ms);
    }
    return NULL;
}

/* Wakes every idle worker: jobs may be due. */
static void wake_workers(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Waits up to ms (-1: no limit) for the listener's socket (when it has one)
 * or the stop byte; returns true when stopping. */
static bool listener_wait(job_queue *q, int ms, bool *readable) {
    struct pollfd p[2] = {{.fd = q->wake[0], .events = POLLIN},
                          {.fd = q->listen ? meta_listener_fd(q->listen) : -1, .events = POLLIN}};
    *readable = false;
    if (poll(p, 2, ms) < 0 && errno != EINTR) return jobs_stopping(q);
    *readable = p[1].revents != 0;
    return p[0].revents != 0 || jobs_stopping(q);
}

/* Opens the listener (PostgreSQL: a connection of its own and LISTEN),
 * between the fault build's points jobs.listen.begin and .end
 * (tests/fault/test_pg_faults.py loses each statement of it in turn). */
static int listener_open(job_queue *q) {
    fault_point("jobs.listen.begin");
    int rc = meta_job_listener_open(q->ms, &q->listen);
    fault_point("jobs.listen.end");
    return rc;
}

static void *listener_main(void *arg) {
    pthread_setname_np(pthread_self(), "job-listener");
    job_queue *q = arg;
    int backoff_ms = 0;
    bool lost = false, readable;
    if (q->listen) log_write(LOG_INFO, NULL, "job listener listening: workers wake on every enqueue", NULL);
    for (;;) {
        if (!q->listen) {
            if (listener_open(q) != 0) {
                backoff_ms = backoff_ms ? (backoff_ms < 5000 ? backoff_ms * 2 : 10000) : 250;
                if (listener_wait(q, backoff_ms, &readable)) break;
                continue;
            }
            backoff_ms = 0;
            log_write(LOG_INFO, NULL, lost ? "job listener reconnected: workers wake on every enqueue again"
                                           : "job listener listening: workers wake on every enqueue", NULL);
            wake_workers(q); /* what was added while nobody listened */
        }
        if (listener_wait(q, -1, &readable)) break;
        if (!readable) continue;
        int n = meta_listener_drain(q->listen);
        if (n < 0 || meta_listener_fd(q->listen) < 0) {
            log_write(LOG_WARN, NULL, "job listener lost its connection; workers poll until it is back", "error",
                      cairn_strerror(n < 0 ? n : CAIRN_EIO), NULL);
            obs_counter_add(q->obs, "cairn_jobs_listener_losses_total",
                            "Times the job listener's database connection was lost (reopened with backoff).", 1);
            meta_listener_close(q->listen);
            q->listen = NULL;
            lost = true;
        } else if (n > 0) {
            obs_counter_add(q->obs, "cairn_jobs_notifications_total", "Job notifications heard from the database.",
                            (uint64_t)n);
            wake_workers(q);
        }
    }
    meta_listener_close(q->listen);
    q->listen = NULL;
    return NULL;
}

int jobs_queue_new(meta_store *ms, obs_registry *obs, const job_options *opt, job_queue **out) {
    job_queue *q = calloc(1, sizeof *q);
    if (!q) return CAIRN_ENOMEM;
    q->ms = ms;
    q->obs = obs;
    q->opt = *opt;
    if (q->opt.workers < 1) q->opt.workers = 1;
    if (q->opt.workers > MAX_WORKERS) q->opt.workers = MAX_WORKERS;
    if (q->opt.lease_ms <= 0) q->opt.lease_ms = 60000;
    if (q->opt.poll_ms <= 0) q->opt.poll_ms = 500;
    if (q->opt.backoff_base_ms <= 0) q->opt.backoff_base_ms = 1000;
    if (q->opt.backoff_max_ms < q->opt.backoff_base_ms) q->opt.backoff_max_ms = q->opt.backoff_base_ms;
    if (pipe2(q->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(q);
        return CAIRN_EIO;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    char rnd[17];
    rand_hex_id(rnd, 8);
    snprintf(q->owner_prefix, sizeof q->owner_prefix, "%d-%s", (int)getpid(), rnd);
    *out = q;
    return 0;
}

static int register_kind(job_queue *q, const char *kind, job_handler fn, void *ud, bool owned) {
    if (q->nkinds == MAX_KINDS || strlen(kind) >= sizeof q->kinds[0].kind) return CAIRN_EINVAL;
    kind_entry *k = &q->kinds[q->nkinds++];
    snprintf(k->kind, sizeof k->kind, "%s", kind);
    k->fn = fn;
    k->ud = ud;
    k->owned = owned;
    return 0;
}

int jobs_register(job_queue *q, const char *kind, job_handler fn, void *ud) {
    return register_kind(q, kind, fn, ud, false);
}

int jobs_register_owned(job_queue *q, const char *kind, job_handler fn, void *ud) {
    return register_kind(q, kind, fn, ud, true);
}

int jobs_queue_start(job_queue *q) {
    /* Claim only what this process can run: the database may be shared
     * with processes that run other kinds (meta_job_kinds_set). */
    const char *names[MAX_KINDS];
    for (int i = 0; i < q->nkinds; i++) names[i] = q->kinds[i].kind;
    int krc = meta_job_kinds_set(q->ms, names, q->nkinds);
    if (krc != 0) return krc;
    for (int i = 0; i < q->opt.workers; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) return CAIRN_ENOMEM;
        *wa = (worker_arg){q, i};
        if (pthread_create(&q->threads[q->nthreads], NULL, worker_main, wa) != 0) {
            free(wa);
            return CAIRN_ENOMEM;
        }
        q->nthreads++;
    }
    if (pthread_create(&q->keeper, NULL, keeper_main, q) != 0) return CAIRN_ENOMEM;
    q->keeper_started = true;
    /* A listener when the backend notifies (PostgreSQL); one that cannot
     * connect now is retried by its thread. */
    int rc = listener_open(q);
    if (rc == CAIRN_EINVAL) return 0;
    if (rc != 0)
        log_write(LOG_WARN, NULL, "job listener cannot connect yet; workers poll until it can", "error",
                  cairn_strerror(rc), NULL);
    if (pthread_create(&q->listener, NULL, listener_main, q) != 0) {
        meta_listener_close(q->listen);
        q->listen = NULL;
        return CAIRN_ENOMEM;
    }
    q->listener_started = true;
    return 0;
}

bool jobs_stopping(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    bool stop = q->stop;
    pthread_mutex_unlock(&q->mu);
    return stop;
}

void jobs_queue_free(job_queue *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    ssize_t w = write(q->wake[1], "x", 1); /* the listener's poll */
    (void)w;
    /* Running jobs finish their run first (a handler that must stop sooner
     * returns early and is retried: handlers are idempotent). */
    for (int i = 0; i < q->nthreads; i++) pthread_join(q->threads[i], NULL);
    if (q->keeper_started) pthread_join(q->keeper, NULL);
    if (q->listener_started) pthread_join(q->listener, NULL);
    close(q->wake[0]);
    close(q->wake[1]);
    for (int i = 0; i < q->nkinds; i++)
        if (q->kinds[i].owned) free(q->kinds[i].ud);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

int jobs_enqueue(job_queue *q, const char *kind, const char *args, int max_attempts, const char *unique_key,
                 int64_t *id) {
    meta_job j = {0};
    snprintf(j.kind, sizeof j.kind, "%s", kind);
    j.args = (char *)(uintptr_t)(args ? args : "{}");
    j.run_at_ms = time_now_ms();
    j.max_attempts = max_attempts > 0 ? max_attempts : 5;
    if (unique_key) snprintf(j.unique_key, sizeof j.unique_key, "%s", unique_key);
    int rc = meta_job_enqueue(q->ms, &j, id);
    if (rc == 0) {
        pthread_mutex_lock(&q->mu);
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    return rc;
}

void jobs_wake(job_queue *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static int count_line(void *ud, const char *kind, const char *state, int64_t n) {
    /* Kinds are operator input (`cairn admin jobs enqueue KIND`): escaped. */
    buf_puts(ud, "cairn_jobs{kind=\"");
    buf_prom_label(ud, kind ? kind : "");
    buf_puts(ud, "\",state=\"");
    buf_prom_label(ud, state ? state : "");
    buf_printf(ud, "\"} %lld\n", (long long)n);
    return 0;
}

void jobs_render_metrics(meta_store *ms, buf_t *out) {
    buf_puts(out, "# HELP cairn_jobs Jobs in the durable queue by kind and state.\n# TYPE cairn_jobs gauge\n");
    meta_job_counts(ms, count_line, out);
}
