/*
 * lease.c — work one gateway does for all (jobs.h): a thread per lease that
 * takes it and keeps it.
 *
 * At start and then every third of a ttl the thread calls
 * meta_lease_acquire, which takes the lease when it is free or expired and
 * renews it when it is ours.  So a
 * holder that dies loses it at most ttl after its last renewal, and another
 * gateway's thread takes it at its next try.  The work itself (the
 * scrubber, membership) runs on its own thread and asks jobs_lease_held
 * between steps; a pass stops as soon as the lease is gone.
 *
 * A renewal that fails (the database is unreachable or slow) does not end
 * the lease at once: it counts as held until half a ttl after the last
 * renewal that succeeded, then as lost.  Another gateway can take it only a
 * whole ttl after that renewal, so on agreeing clocks the old holder has
 * stopped by then.  Even if one did not (a process stalled past its
 * expiry), the work stays correct: every step it takes is idempotent or a
 * compare-and-set (meta.h, leases).
 *
 * Thread-safety: jobs_lease_held and jobs_lease_term may be called from any
 * thread; start and stop from one.
 */
#include "jobs/jobs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEADER_GAUGE "cairn_leader"
#define LEADER_HELP "1 while this gateway holds the lease of work one gateway does for all (role), else 0."

struct jobs_lease {
    meta_store *ms;
    obs_registry *obs;
    char role[32];
    char labels[48];           /* role="..." for the gauge */
    char holder[256];
    int64_t ttl_ms;
    pthread_t thread;
    pthread_mutex_t mu;        /* guards stop, held and term */
    pthread_cond_t cv;
    bool stop;
    bool held;
    uint64_t term;             /* times taken anew */
    /* The lease thread's own (and jobs_lease_start's, before it runs). */
    bool mine, failing;
    int64_t renewed;           /* mono_ms of the last acquire that succeeded */
};

static int64_t mono_ms(void) { return time_mono_ns() / 1000000; }

static void set_held(jobs_lease *l, bool held) {
    pthread_mutex_lock(&l->mu);
    if (held && !l->held) l->term++;
    l->held = held;
    pthread_mutex_unlock(&l->mu);
    obs_gauge_set(l->obs, LEADER_GAUGE, l->labels, LEADER_HELP, held ? 1 : 0);
}

/* Waits up to ms or until stopped; returns true when stopping. */
static bool pause_ms(jobs_lease *l, int64_t ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + (ms % 1000) * 1000000LL;
    until.tv_sec += (time_t)(ms / 1000 + ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&l->mu);
    while (!l->stop)
        if (pthread_cond_timedwait(&l->cv, &l->mu, &until) != 0) break;
    bool stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    return stop;
}

/* One try: take or renew, and say what changed. */
static void lease_try(jobs_lease *l) {
    bool now_held = false;
    int rc = meta_lease_acquire(l->ms, l->role, l->holder, time_now_ms(), l->ttl_ms, &now_held);
    if (rc == 0) {
        if (now_held) l->renewed = mono_ms();
        if (l->failing) log_write(LOG_INFO, NULL, "lease: the database answers again", "role", l->role, NULL);
        l->failing = false;
    } else {
        if (!l->failing)
            log_write(LOG_WARN, NULL, "lease: taking or renewing failed; retrying", "role", l->role, "error",
                      cairn_strerror(rc), NULL);
        l->failing = true;
        now_held = l->mine && mono_ms() - l->renewed < l->ttl_ms / 2;
    }
    char ttl[24];
    if (now_held && !l->mine)
        log_write(LOG_INFO, NULL, "lease taken: this gateway does the work for all", "role", l->role, "holder",
                  l->holder, "ttl_ms", log_int(ttl, l->ttl_ms), NULL);
    else if (!now_held && l->mine)
        log_write(LOG_WARN, NULL, "lease lost: this gateway stops the work", "role", l->role, "holder", l->holder,
                  "reason", rc == 0 ? "another gateway holds it" : "renewals failed for half its ttl", NULL);
    if (now_held != l->mine) set_held(l, now_held);
    l->mine = now_held;
}

static void *lease_main(void *arg) {
    pthread_setname_np(pthread_self(), "lease");
    jobs_lease *l = arg;
    while (!pause_ms(l, l->ttl_ms / 3)) lease_try(l);
    if (l->mine) {
        set_held(l, false);
        int rc = meta_lease_release(l->ms, l->role, l->holder);
        if (rc == 0)
            log_write(LOG_INFO, NULL, "lease released", "role", l->role, "holder", l->holder, NULL);
        else
            log_write(LOG_WARN, NULL, "lease: releasing failed; another gateway takes it when it expires", "role",
                      l->role, "holder", l->holder, "error", cairn_strerror(rc), NULL);
    }
    return NULL;
}

int jobs_lease_start(meta_store *ms, obs_registry *obs, const char *role, const jobs_lease_options *o,
                     jobs_lease **out) {
    *out = NULL;
    if (!role || !o || !o->holder || !o->holder[0] || o->ttl_ms < 3 || strlen(role) >= sizeof(((jobs_lease *)0)->role) ||
        strlen(o->holder) >= sizeof(((jobs_lease *)0)->holder))
        return CAIRN_EINVAL;
    jobs_lease *l = calloc(1, sizeof *l);
    if (!l) return CAIRN_ENOMEM;
    l->ms = ms;
    l->obs = obs;
    l->ttl_ms = o->ttl_ms;
    snprintf(l->role, sizeof l->role, "%s", role);
    snprintf(l->labels, sizeof l->labels, "role=\"%s\"", role);
    snprintf(l->holder, sizeof l->holder, "%s", o->holder);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    obs_gauge_set(obs, LEADER_GAUGE, l->labels, LEADER_HELP, 0);
    /* The first try now: the work's thread knows at once whether it leads. */
    lease_try(l);
    if (pthread_create(&l->thread, NULL, lease_main, l) != 0) {
        if (l->mine) meta_lease_release(ms, l->role, l->holder);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        free(l);
        return CAIRN_ENOMEM;
    }
    *out = l;
    return 0;
}

bool jobs_lease_held(jobs_lease *l) {
    pthread_mutex_lock(&l->mu);
    bool held = l->held;
    pthread_mutex_unlock(&l->mu);
    return held;
}

uint64_t jobs_lease_term(jobs_lease *l) {
    pthread_mutex_lock(&l->mu);
    uint64_t term = l->held ? l->term : 0;
    pthread_mutex_unlock(&l->mu);
    return term;
}

void jobs_lease_stop(jobs_lease *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
