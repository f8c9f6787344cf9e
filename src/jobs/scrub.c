/*
 * scrub.c — the scrubber described in jobs.h.
 */
#include "jobs/jobs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCRUB_BATCH 64

typedef struct {
    char bucket[64];
    char key[1025];
    size_t key_len;
    char version_id[33];
    int64_t size;
    char layout[DATA_LAYOUT_MAX];
} scrub_item;

struct scrubber {
    meta_store *ms;
    data_store *ds;
    obs_registry *obs;
    int interval_s;
    int64_t rate_bps;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

typedef struct {
    scrub_item *items;
    int n;
} batch;

static int collect(void *ud, const meta_scan_entry *e) {
    batch *b = ud;
    scrub_item *it = &b->items[b->n++];
    snprintf(it->bucket, sizeof it->bucket, "%s", e->bucket);
    it->key_len = e->key_len < sizeof it->key ? e->key_len : sizeof it->key - 1;
    memcpy(it->key, e->key, it->key_len);
    it->key[it->key_len] = '\0';
    snprintf(it->version_id, sizeof it->version_id, "%s", e->version_id);
    it->size = e->storage == META_STORE_FILE ? e->size : -1; /* -1: inline, nothing to scrub */
    snprintf(it->layout, sizeof it->layout, "%s", e->layout);
    return 0;
}

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

static void scrub_one(scrubber *s, const scrub_item *it) {
    data_layout l;
    if (data_layout_parse(it->layout, &l) != 0) return;
    int repaired = 0;
    int rc = data_heal(s->ds, it->version_id, &l, it->size, &repaired);
    obs_counter_add(s->obs, "cairn_scrub_objects_total", "Objects whose every block the scrubber verified.", 1);
    obs_counter_add(s->obs, "cairn_scrub_bytes_total", "Object bytes the scrubber verified.", (uint64_t)it->size);
    if (repaired) {
        obs_counter_add(s->obs, "cairn_scrub_repaired_shards_total", "Shards the scrubber found bad and rewrote.",
                        (uint64_t)repaired);
        char n[24];
        log_write(LOG_WARN, NULL, "scrub repaired shards", "bucket", it->bucket, "key", it->key,
                  "version_id", it->version_id, "shards", log_int(n, repaired), NULL);
    }
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        /* ENOTFOUND: deleted since the batch was read.  Anything else is data loss
         * beyond parity or a failing drive: say so loudly. */
        obs_counter_add(s->obs, "cairn_scrub_failures_total", "Objects the scrubber could not verify or repair.", 1);
        log_write(LOG_ERROR, NULL, "scrub could not repair object", "bucket", it->bucket, "key", it->key,
                  "version_id", it->version_id, "error", cairn_strerror(rc), NULL);
    }
}

/* One pass over every object; returns true when asked to stop. */
static bool scrub_pass(scrubber *s) {
    batch b = {calloc(SCRUB_BATCH, sizeof(scrub_item)), 0};
    if (!b.items) return pause_ms(s, 1000);
    char after_bucket[64] = "", after_key[1025] = "";
    size_t after_len = 0;
    bool more = true, stop = false;
    while (more && !stop) {
        b.n = 0;
        if (meta_object_scan(s->ms, after_bucket, after_key, after_len, SCRUB_BATCH, collect, &b, &more) != 0) break;
        for (int i = 0; i < b.n && !stop; i++) {
            scrub_item *it = &b.items[i];
            if (it->size >= 0) {
                int64_t t0 = time_mono_ns();
                scrub_one(s, it);
                if (s->rate_bps > 0) {
                    int64_t want_ms = it->size * 1000 / s->rate_bps;
                    int64_t spent_ms = (time_mono_ns() - t0) / 1000000;
                    if (want_ms > spent_ms) stop = pause_ms(s, want_ms - spent_ms);
                }
            }
            stop = stop || stopping(s);
        }
        if (b.n) {
            scrub_item *last = &b.items[b.n - 1];
            memcpy(after_bucket, last->bucket, sizeof after_bucket);
            memcpy(after_key, last->key, last->key_len + 1);
            after_len = last->key_len;
        }
    }
    free(b.items);
    obs_counter_add(s->obs, "cairn_scrub_passes_total", "Completed or interrupted scrub passes.", 1);
    return stop;
}

static void *scrub_main(void *arg) {
    scrubber *s = arg;
    for (;;) {
        int64_t t0 = time_mono_ns();
        if (scrub_pass(s)) break;
        int64_t elapsed_ms = (time_mono_ns() - t0) / 1000000;
        int64_t wait_ms = (int64_t)s->interval_s * 1000 - elapsed_ms;
        if (pause_ms(s, wait_ms > 0 ? wait_ms : 0)) break;
    }
    return NULL;
}

int scrub_start(meta_store *ms, data_store *ds, obs_registry *obs, int interval_s, int64_t rate_bps,
                scrubber **out) {
    *out = NULL;
    if (interval_s <= 0) return 0;
    scrubber *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    *s = (scrubber){.ms = ms, .ds = ds, .obs = obs, .interval_s = interval_s, .rate_bps = rate_bps};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, scrub_main, s) != 0) {
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
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
