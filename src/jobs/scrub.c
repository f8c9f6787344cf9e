/*
 * scrub.c — the scrubber described in jobs.h.  It scrubs only while this
 * process holds the "scrub" lease, so gateways sharing a database do not
 * each verify every object; the others wait, and the one that takes the
 * lease over (its holder died or stopped) starts with a pass.
 */
#include "jobs/jobs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct scrubber {
    meta_store *ms;
    data_store *ds;
    obs_registry *obs;
    int interval_s;
    int64_t rate_bps;
    jobs_lease *lease;
    int64_t idle_ms;           /* how often a gateway without the lease looks again */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

/* Sleeps up to ms milliseconds; returns true when asked to stop. */
static bool pause_ms(scrubber *s, int64_t ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + (ms % 1000) * 1000000LL;
    until.tv_sec += (time_t)(ms / 1000 + ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&s->mu);
    while (!s->stop)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) break;
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static bool stopping(scrubber *s) {
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void scrub_one(scrubber *s, const meta_placement *it) {
    data_layout l;
    char what[300];
    jobs_describe(it, what, sizeof what);
    if (data_layout_parse(it->layout, &l) != 0) {
        obs_counter_add(s->obs, "cairn_scrub_failures_total", "Objects the scrubber could not verify or repair.", 1);
        log_write(LOG_ERROR, NULL, "scrub found a placement with a malformed layout", "placement", what,
                  "version_id", it->version_id, NULL);
        return;
    }
    int repaired = 0;
    int rc = jobs_heal_placement(s->ms, s->ds, it, &l, &repaired);
    obs_counter_add(s->obs, "cairn_scrub_objects_total", "Objects whose every block the scrubber verified.", 1);
    obs_counter_add(s->obs, "cairn_scrub_bytes_total", "Object bytes the scrubber verified.", (uint64_t)it->size);
    if (repaired) {
        obs_counter_add(s->obs, "cairn_scrub_repaired_shards_total", "Shards the scrubber found bad and rewrote.",
                        (uint64_t)repaired);
        char n[24];
        log_write(LOG_WARN, NULL, "scrub repaired shards", "placement", what, "version_id", it->version_id,
                  "shards", log_int(n, repaired), NULL);
    }
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        /* ENOTFOUND: deleted since the batch was read.  Anything else is data loss
         * beyond parity or a failing drive: say so loudly. */
        obs_counter_add(s->obs, "cairn_scrub_failures_total", "Objects the scrubber could not verify or repair.", 1);
        log_write(LOG_ERROR, NULL, "scrub could not repair object", "placement", what,
                  "version_id", it->version_id, "error", cairn_strerror(rc), NULL);
    }
}

/* A pass ends early when the process stops or another gateway took the lease. */
static bool stopping_cb(void *ud) {
    scrubber *s = ud;
    return stopping(s) || !jobs_lease_held(s->lease);
}

/* Verifies one object and paces the pass to scrub_rate; 1 stops the walk. */
static int scrub_visit(void *ud, const meta_placement *it) {
    scrubber *s = ud;
    int64_t t0 = time_mono_ns();
    scrub_one(s, it);
    if (s->rate_bps > 0) {
        int64_t want_ms = it->size * 1000 / s->rate_bps;
        int64_t spent_ms = (time_mono_ns() - t0) / 1000000;
        if (want_ms > spent_ms && pause_ms(s, want_ms - spent_ms)) return 1;
    }
    return 0;
}

/* One pass over every object; returns true when asked to stop. */
static bool scrub_pass(scrubber *s) {
    int64_t t0 = time_mono_ns();
    int seen = jobs_walk(s->ms, scrub_visit, stopping_cb, s);
    obs_counter_add(s->obs, "cairn_scrub_passes_total", "Completed or interrupted scrub passes.", 1);
    char n[24], ms[24];
    log_int(ms, (time_mono_ns() - t0) / 1000000);
    if (seen < 0)
        log_write(LOG_WARN, NULL, "scrub pass could not finish; the next one starts over", "error",
                  cairn_strerror(seen), "duration_ms", ms, NULL);
    else if (stopping(s))
        log_write(LOG_INFO, NULL, "scrub pass stopped: shutting down", "objects_seen", log_int(n, seen),
                  "duration_ms", ms, NULL);
    else if (!jobs_lease_held(s->lease))
        log_write(LOG_WARN, NULL, "scrub pass stopped: the scrub lease is lost", "objects_seen",
                  log_int(n, seen), "duration_ms", ms, NULL);
    else
        log_write(LOG_INFO, NULL, "scrub pass done", "objects_seen", log_int(n, seen), "duration_ms", ms, NULL);
    return stopping(s);
}

static void *scrub_main(void *arg) {
    pthread_setname_np(pthread_self(), "scrubber");
    scrubber *s = arg;
    for (;;) {
        if (!jobs_lease_held(s->lease)) { /* another gateway scrubs */
            if (pause_ms(s, s->idle_ms)) break;
            continue;
        }
        int64_t t0 = time_mono_ns();
        if (scrub_pass(s)) break;
        /* The next pass starts interval_s after this one began, if the
         * lease is still ours; looking again now and then meanwhile. */
        int64_t next = t0 + (int64_t)s->interval_s * 1000000000LL;
        bool stop = false;
        for (int64_t left; !stop && jobs_lease_held(s->lease) && (left = (next - time_mono_ns()) / 1000000) > 0;)
            stop = pause_ms(s, left < s->idle_ms ? left : s->idle_ms);
        if (stop) break;
    }
    return NULL;
}

int scrub_start(meta_store *ms, data_store *ds, obs_registry *obs, int interval_s, int64_t rate_bps,
                const jobs_lease_options *lease, scrubber **out) {
    *out = NULL;
    if (interval_s <= 0) return 0;
    scrubber *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    *s = (scrubber){.ms = ms, .ds = ds, .obs = obs, .interval_s = interval_s, .rate_bps = rate_bps,
                    .idle_ms = lease && lease->ttl_ms / 3 < 500 ? lease->ttl_ms / 3 : 500};
    int rc = jobs_lease_start(ms, obs, "scrub", lease, &s->lease);
    if (rc != 0) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, scrub_main, s) != 0) {
        jobs_lease_stop(s->lease);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return CAIRN_ENOMEM;
    }
    *out = s;
    return 0;
}

void scrub_stop(scrubber *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    jobs_lease_stop(s->lease); /* after the pass stopped: another gateway takes over at once */
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
