/*
 * health.c — GET /health/ready: is this gateway fit to take traffic?
 *
 * One checker thread per gateway runs the checks (a metadata round trip, a
 * probe file on every drive, free space) and keeps the last result.  A
 * request is answered from that result while it is younger than
 * health_max_age_ms; an older one makes the request ask the checker for a
 * fresh pass and wait for it at most health_timeout_ms.  So readiness costs
 * no thread per request however often it is polled, and a hung disk or a
 * locked database ties up exactly one thread (the checker, which finishes its
 * pass whenever the hang ends) while every request still answers on time:
 * "fail", with "timed out" for the check that is still running.
 *
 * The answer names every check that failed ("down": ["database"]).  Each
 * check is required or optional: a failed required one makes the gateway
 * unfit ("fail", 503); failed optional ones only (Redis, when it comes: the
 * gateway serves without it) make it "degraded", still 200, so a load
 * balancer keeps sending traffic while an operator sees what is missing.
 *
 * Unauthenticated callers reach this; nothing here grows with their number.
 */
#include "s3/internal.h"
#include "cache/tiered.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CHECK_DATABASE, CHECK_DATA_DIR, CHECK_DISK, CHECK_REDIS, NCHECKS };

typedef struct {
    const char *name;          /* the key in "checks" and in "down" */
    bool required;             /* failed: "fail" (503); else "degraded" (200) */
} check_def;

static const check_def check_defs[NCHECKS] = {
    [CHECK_DATABASE] = {"database", true},
    [CHECK_DATA_DIR] = {"data_dir", true},
    [CHECK_DISK] = {"disk", true},
    /* Only with redis_url: without it the gateway serves from L1 and the database. */
    [CHECK_REDIS] = {"redis", false},
};

typedef struct {
    int rc;                    /* 0 ok, CAIRN_E*, or CAIRN_ETIMEDOUT while it still runs */
    double ms;
} check_result;

struct s3_health {
    s3_gateway *gw;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* the checker waits for work, requests for results */
    bool stop;
    bool running;              /* a pass is under way */
    uint64_t wanted;           /* passes asked for */
    uint64_t done;             /* passes finished */
    int current;               /* the check the running pass is on */
    int64_t pass_started_ns;
    check_result last[NCHECKS];
    int64_t last_ns;           /* when the last pass finished; 0 = never */
    int64_t free_bytes;
    bool disk_full;            /* the last pass found the disk full (for disk:Full / disk:Ok) */
};

/* 0 when Redis is not set up or its channel is up and its breaker closed. */
static int redis_check(meta_store *ms) {
    bool configured, up;
    tiered_redis_state(ms, &configured, &up);
    return !configured || up ? 0 : CAIRN_EIO;
}

static bool redis_configured(meta_store *ms) {
    bool configured, up;
    tiered_redis_state(ms, &configured, &up);
    return configured;
}

static int64_t elapsed_ns(int64_t since) { return time_mono_ns() - since; }

static void *checker_main(void *arg) {
    pthread_setname_np(pthread_self(), "health-check");
    s3_health *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->stop && h->done == h->wanted) pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop) break;
        uint64_t pass = h->wanted;
        h->running = true;
        h->pass_started_ns = time_mono_ns();
        check_result r[NCHECKS];
        int64_t free_bytes = 0;
        for (int c = 0; c < NCHECKS; c++) {
            h->current = c;
            pthread_mutex_unlock(&h->mu);
            int64_t t0 = time_mono_ns();
            s3_gateway *gw = h->gw;
            if (c == CHECK_DATABASE) r[c].rc = meta_ping(gw->d.meta);
            else if (c == CHECK_DATA_DIR) r[c].rc = data_check_writable(gw->d.data);
            else if (c == CHECK_REDIS) r[c].rc = redis_check(gw->d.meta);
            else {
                r[c].rc = data_free_bytes(gw->d.data, &free_bytes);
                if (r[c].rc == 0 && free_bytes < gw->cfg.min_free_disk) r[c].rc = CAIRN_ENOSPC;
            }
            r[c].ms = (double)elapsed_ns(t0) / 1e6;
            pthread_mutex_lock(&h->mu);
        }
        memcpy(h->last, r, sizeof r);
        bool full = r[CHECK_DISK].rc == CAIRN_ENOSPC;
        if (full != h->disk_full) {
            char fb[24], mf[24];
            status_emit(full ? "disk:Full" : "disk:Ok", "free_bytes", log_int(fb, free_bytes), "min_free_disk",
                        log_int(mf, h->gw->cfg.min_free_disk), NULL);
        }
        h->disk_full = full;
        h->free_bytes = free_bytes;
        h->last_ns = time_mono_ns();
        h->running = false;
        h->done = pass;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int s3_health_start(s3_gateway *gw, s3_health **out) {
    s3_health *h = calloc(1, sizeof *h);
    if (!h) return CAIRN_ENOMEM;
    h->gw = gw;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&h->thread, &attr, checker_main, h);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return CAIRN_ENOMEM;
    }
    *out = h;
    return 0;
}

void s3_health_stop(s3_health *h) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    /* A pass stuck on a hung disk or database keeps the checker until it
     * ends; shutdown waits for it like for any in-flight work. */
    pthread_join(h->thread, NULL);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* Fills r with a result no older than max_age, waiting for a fresh pass at
 * most timeout_ms.  Checks the pass has not reached yet are "timed out". */
static void current_results(s3_health *h, int64_t max_age_ms, int64_t timeout_ms, check_result r[NCHECKS],
                            int64_t *free_bytes) {
    pthread_mutex_lock(&h->mu);
    bool fresh = h->last_ns && elapsed_ns(h->last_ns) <= max_age_ms * 1000000LL;
    if (!fresh) {
        uint64_t want = h->done + 1;
        if (h->wanted < want) {
            h->wanted = want;
            pthread_cond_broadcast(&h->cv);
        }
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        int64_t ns = deadline.tv_nsec + timeout_ms * 1000000LL;
        deadline.tv_sec += (time_t)(ns / 1000000000LL);
        deadline.tv_nsec = (long)(ns % 1000000000LL);
        while (h->done < want && !h->stop)
            if (pthread_cond_timedwait(&h->cv, &h->mu, &deadline) != 0) break;
        fresh = h->done >= want;
    }
    if (fresh) {
        memcpy(r, h->last, sizeof h->last);
    } else {
        /* No pass finished in time (one is stuck on a hung disk or database):
         * every check is unknown, the one under way has overrun. */
        double ms = h->running ? (double)elapsed_ns(h->pass_started_ns) / 1e6 : 0;
        for (int c = 0; c < NCHECKS; c++) r[c] = (check_result){CAIRN_ETIMEDOUT, c == h->current ? ms : 0};
    }
    *free_bytes = h->free_bytes;
    pthread_mutex_unlock(&h->mu);
}

/* detail: said when the check fails (or always, with always). */
static void add_check(buf_t *b, int c, const check_result *r, const char *detail_text, bool always) {
    bool ok = r->rc == 0;
    buf_printf(b, "%s\"%s\":{\"status\":\"%s\",\"required\":%s,\"ms\":%.2f", c ? "," : "", check_defs[c].name,
               ok ? "ok" : "fail", check_defs[c].required ? "true" : "false", r->ms);
    const char *detail = r->rc == CAIRN_ETIMEDOUT ? "timed out" : ok && !always ? NULL : detail_text;
    if (detail) {
        buf_puts(b, ",\"detail\":\"");
        buf_json_escape(b, detail, strlen(detail));
        buf_putc(b, '"');
    }
    buf_putc(b, '}');
}

const char *s3_ready_status(int n, const bool *required, const int *rc) {
    bool required_down = false, optional_down = false;
    for (int i = 0; i < n; i++) {
        if (rc[i] == 0) continue;
        if (required[i]) required_down = true;
        else optional_down = true;
    }
    return required_down ? "fail" : optional_down ? "degraded" : "ok";
}

/* What a failed database check says: unreachable, busy, or not answering. */
static const char *database_detail(meta_store *ms, int rc) {
    bool pg = !strcmp(meta_backend_name(ms), "postgres");
    if (rc == CAIRN_EIO)
        return pg ? "metadata database unreachable: cannot connect to postgres" : "metadata database I/O error";
    if (rc == CAIRN_EBUSY) return "metadata database busy: no free connection";
    return "metadata database not answering";
}

void s3_serve_ready(s3_req *q) {
    s3_gateway *gw = q->gw;
    check_result r[NCHECKS];
    int64_t free_bytes = 0;
    current_results(gw->health, gw->cfg.health_max_age_ms, gw->cfg.health_timeout_ms, r, &free_bytes);
    char disk[96];
    snprintf(disk, sizeof disk, "free_bytes=%lld min_free_disk=%lld", (long long)free_bytes,
             (long long)gw->cfg.min_free_disk);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{\"checks\":{");
    add_check(&b, CHECK_DATABASE, &r[CHECK_DATABASE], database_detail(gw->d.meta, r[CHECK_DATABASE].rc), false);
    add_check(&b, CHECK_DATA_DIR, &r[CHECK_DATA_DIR], "data directory not writable", false);
    add_check(&b, CHECK_DISK, &r[CHECK_DISK], disk, true);
    bool redis = redis_configured(gw->d.meta);
    if (redis) add_check(&b, CHECK_REDIS, &r[CHECK_REDIS], "redis unreachable or invalidation channel down: serving "
                         "from the database without the cache", false);
    else r[CHECK_REDIS].rc = 0;
    bool required[NCHECKS];
    int rcs[NCHECKS];
    buf_puts(&b, "},\"down\":[");
    for (int c = 0, n = 0; c < NCHECKS; c++) {
        required[c] = check_defs[c].required;
        rcs[c] = r[c].rc;
        if (r[c].rc != 0) buf_printf(&b, "%s\"%s\"", n++ ? "," : "", check_defs[c].name);
    }
    const char *status = s3_ready_status(NCHECKS, required, rcs);
    bool all = strcmp(status, "fail") != 0;
    buf_printf(&b, "],\"status\":\"%s\"}\n", status);
    http_add_header(q->http, "Content-Type", "application/json");
    http_add_header(q->http, "Cache-Control", "no-store");
    if (b.oom) {
        buf_free(&b);
        http_respond(q->http, 503, "", 0);
        return;
    }
    size_t len = b.len;
    http_respond_take(q->http, all ? 200 : 503, buf_steal(&b), len);
}
