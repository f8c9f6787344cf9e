/*
 * test_audit_ship.c — the audit shipper (src/audit/ship.h) in embedded
 * mode, on a real journal (real files, fdatasync) and a real SQLite store:
 * the flush timer fires while 100 threads emit, events spaced over several
 * intervals all land, N threads x M events then close leaves exactly N x M
 * events in the store, a bad event is split out into the DLQ as rejected
 * while the good ones land, and the emitter cuts strings to the store's
 * bounds (a long ?versionId=) so that such events are not refused.
 *
 * The remote mode, retries against a real audit-server's test mode, Redis
 * and kill -9 are in tests/integration/test_audit_ship.py and
 * tests/fault/test_audit_ship_faults.py.  The long runs (100 x 10,000, RSS
 * over 10 million, TSan) are cairn-shipbench's (make audit-ship-million,
 * audit-ship-rss, audit-ship-tsan).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"

static char dir[256], jdir[300], db[300];
static audit_journal *J;
static meta_store *MS;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void setup(void) {
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cairn-ship-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(jdir, sizeof jdir, "%s/audit", dir);
    snprintf(db, sizeof db, "%s/meta.db", dir);
    log_set_level(getenv("SHIP_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
    cr_assert_eq(meta_open(db, NULL, &MS), 0);
    audit_journal_opts o = {.dir = jdir, .max_bytes = 256 << 20, .segment_bytes = 4 << 20, .sync_ms = 10,
                            .overflow = AUDIT_OVERFLOW_REJECT, .fsync = true};
    cr_assert_eq(audit_journal_open(&o, &J), 0);
}

static void teardown(void) {
    audit_journal_close(J);
    meta_close(MS);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(audit_ship, .init = setup, .fini = teardown, .timeout = 120);

static audit_shipper *start(int batch, int flush_ms) {
    audit_shipper_opts o = {.journal = J, .meta = MS, .batch_size = batch, .flush_interval_ms = flush_ms,
                            .max_retries = 2, .backoff_base_ms = 10, .backoff_max_ms = 50,
                            .replay_interval_ms = 100, .dlq = {.dir = jdir, .fsync = true}};
    audit_shipper *s = NULL;
    cr_assert_eq(audit_shipper_start(&o, &s), 0);
    return s;
}

static void emit(const char *corr, const char *rid) {
    audit_event_fields e = {.time_us = time_now_ms() * 1000, .request_id = rid, .correlation_id = corr,
                            .action = "s3:PutObject", .bucket = "b", .key = "k", .status = 200};
    cr_assert_eq(audit_emit(J, &e, false), 0);
}

typedef struct {
    int64_t count, t;
    char id[33];
} counter;

static int count_cb(void *ud, const meta_audit_event *e) {
    counter *c = ud;
    c->count++;
    c->t = e->time_us;
    snprintf(c->id, sizeof c->id, "%s", e->event_id);
    return 0;
}

static int64_t stored(const char *corr, const char *rid) {
    counter c = {0};
    meta_audit_filter f = {.correlation_id = corr, .request_id = rid};
    for (;;) {
        int n = 0;
        cr_assert_eq(meta_audit_query(MS, &f, 1000, count_cb, &c, &n), 0);
        if (n < 1000) return c.count;
        f.after_set = true;
        f.after_time_us = c.t;
        memcpy(f.after_id, c.id, sizeof f.after_id);
    }
}

/* Polls (no fixed sleep) until the store holds want events, or deadline. */
static int64_t wait_stored(const char *corr, const char *rid, int64_t want, int deadline_ms) {
    int64_t end = time_mono_ns() + (int64_t)deadline_ms * 1000000, n = 0;
    while ((n = stored(corr, rid)) < want && time_mono_ns() < end) usleep(5000);
    return n;
}

/* ---- the timer ------------------------------------------------------------------------------ */

static atomic_bool loading;
static atomic_long load_emitted;

/* One of 100 emitters: an event every 10 ms (10,000/s in all), which keeps
 * the journal's writer and the shipper busy but never fills a batch of
 * 10,000 within the interval: only the timer ships. */
static void *load_thread(void *arg) {
    long id = (long)arg;
    char rid[32];
    for (int i = 0; atomic_load(&loading); i++) {
        snprintf(rid, sizeof rid, "load-%ld-%d", id, i);
        audit_event_fields e = {.time_us = time_now_ms() * 1000, .request_id = rid, .correlation_id = "load",
                                .action = "s3:GetObject", .status = 200};
        if (audit_emit(J, &e, false) == 0) atomic_fetch_add(&load_emitted, 1);
        usleep(10000);
    }
    return NULL;
}

static void start_load(pthread_t th[100]) {
    atomic_store(&loading, true);
    for (long i = 0; i < 100; i++) cr_assert_eq(pthread_create(&th[i], NULL, load_thread, (void *)i), 0);
}

static void stop_load(pthread_t th[100]) {
    atomic_store(&loading, false);
    for (int i = 0; i < 100; i++) pthread_join(th[i], NULL);
}

Test(audit_ship, one_event_is_queryable_within_the_interval_while_100_threads_emit) {
    audit_shipper *s = start(10000, 200);
    pthread_t th[100];
    start_load(th);
    /* Several probes, each alone in its interval's batch as far as the
     * batch size goes: each lands because the timer fires. */
    for (int i = 0; i < 5; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "probe-%d", i);
        int64_t t0 = time_mono_ns();
        emit("probe", rid);
        cr_assert_eq(wait_stored("probe", rid, 1, 10000), 1, "probe %d not stored", i);
        double ms = (double)(time_mono_ns() - t0) / 1e6;
        /* interval 200 ms + audit_sync 10 ms + one batch: a generous
         * margin, since a timer that does not fire never gets here. */
        cr_assert_lt(ms, 5000, "probe %d took %.0f ms", i, ms);
    }
    stop_load(th);
    cr_assert_gt(atomic_load(&load_emitted), 1000);
    audit_shipper_stats st;
    audit_shipper_stats_get(s, &st);
    cr_assert_lt(st.events_sent / (st.batches_sent ? st.batches_sent : 1), 10000, "batches were timer-sized");
    cr_assert_eq(audit_shipper_close(s, 30000), 0);
    cr_assert_eq(stored("load", NULL), atomic_load(&load_emitted));
}

Test(audit_ship, fifty_events_spaced_over_several_intervals_all_land_while_100_threads_emit) {
    audit_shipper *s = start(500, 100);
    pthread_t th[100];
    start_load(th);
    for (int i = 0; i < 50; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "spaced-%d", i);
        emit("spaced", rid);
        usleep(12000); /* 50 x 12 ms: about six intervals */
    }
    cr_assert_eq(wait_stored("spaced", NULL, 50, 10000), 50);
    stop_load(th);
    audit_shipper_close(s, 30000);
    cr_assert_eq(stored("spaced", NULL), 50);
    cr_assert_eq(stored("load", NULL), atomic_load(&load_emitted));
}

Test(audit_ship, fifty_events_spaced_over_several_intervals_all_land) {
    audit_shipper *s = start(500, 100);
    for (int i = 0; i < 50; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "q-%d", i);
        emit("quiet", rid);
        usleep(12000);
    }
    cr_assert_eq(wait_stored("quiet", NULL, 50, 10000), 50);
    audit_shipper_stats st;
    audit_shipper_stats_get(s, &st);
    cr_assert_geq(st.batches_sent, 3, "several intervals, several batches (%llu)", (unsigned long long)st.batches_sent);
    audit_shipper_close(s, 10000);
}

/* ---- close ------------------------------------------------------------------------------------ */

static void *burst(void *arg) {
    long id = (long)arg;
    char rid[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(rid, sizeof rid, "b-%ld-%d", id, i);
        audit_event_fields e = {.time_us = time_now_ms() * 1000, .request_id = rid, .correlation_id = "burst",
                                .action = "s3:PutObject", .status = 200};
        cr_assert_eq(audit_emit(J, &e, false), 0);
    }
    return NULL;
}

Test(audit_ship, eight_threads_by_2000_events_then_close_leaves_exactly_16000) {
    /* The flush interval is long: close must ship what is buffered. */
    audit_shipper *s = start(500, 60000);
    pthread_t th[8];
    for (long i = 0; i < 8; i++) pthread_create(&th[i], NULL, burst, (void *)i);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    cr_assert_eq(audit_shipper_close(s, 60000), 0, "nothing left in the journal");
    cr_assert_eq(stored("burst", NULL), 16000);
    audit_journal_stats js;
    audit_journal_get_stats(J, &js);
    cr_assert_eq(js.depth, 0);
    cr_assert_eq(js.lost, 0);
}

Test(audit_ship, close_with_a_short_deadline_leaves_the_rest_for_the_next_start) {
    audit_shipper *s = start(500, 60000);
    for (int i = 0; i < 300; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "later-%d", i);
        emit("later", rid);
    }
    audit_journal_sync(J);
    /* A deadline already past: nothing may be sent, everything stays. */
    int64_t left = audit_shipper_close(s, 0);
    cr_assert_eq(left + stored("later", NULL), 300);
    s = start(500, 60000);
    cr_assert_eq(audit_shipper_close(s, 30000), 0);
    cr_assert_eq(stored("later", NULL), 300);
}

/* ---- rejected events --------------------------------------------------------------------------- */

typedef struct {
    int n;
    char reason[512];
} walked;

static int walk_cb(void *ud, const char *event, size_t len, const char *reason, int64_t time_ms) {
    (void)event, (void)len, (void)time_ms;
    walked *w = ud;
    w->n++;
    snprintf(w->reason, sizeof w->reason, "%s", reason);
    return 0;
}

Test(audit_ship, a_bad_event_goes_to_the_dlq_as_rejected_and_the_good_ones_land) {
    for (int i = 0; i < 10; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "g-%d", i);
        emit("mixed", rid);
        if (i == 6) {
            static const char bad[] = "{\"event_id\":\"0123456789abcdef0123456789abcdef\",\"time\":"
                                      "\"2026-11-30T17:41:02.000000Z\",\"request_id\":\"bad\",\"correlation_id\":"
                                      "\"mixed\",\"principal\":\"anonymous\",\"action\":\"s3:PutObject\","
                                      "\"outcome\":\"success\",\"status\":999}";
            cr_assert_eq(audit_journal_append(J, bad, sizeof bad - 1, AUDIT_APPEND_DURABLE), 0);
        }
    }
    audit_shipper *s = start(500, 50);
    cr_assert_eq(audit_shipper_flush(s, 10000), 0);
    cr_assert_eq(stored("mixed", NULL), 10);
    walked w = {0};
    cr_assert_eq(audit_dlq_walk(audit_shipper_dlq(s), AUDIT_DLQ_REJECTED, walk_cb, &w), 0);
    cr_assert_eq(w.n, 1);
    cr_assert(strstr(w.reason, "status"), "the store's reason names the field: %s", w.reason);
    walked h = {0};
    cr_assert_eq(audit_dlq_walk(audit_shipper_dlq(s), AUDIT_DLQ_HELD, walk_cb, &h), 0);
    cr_assert_eq(h.n, 0);
    audit_shipper_stats st;
    audit_shipper_stats_get(s, &st);
    cr_assert_eq(st.dlq_rejected, 1);
    cr_assert_geq(st.splits, 1);
    cr_assert_eq(audit_shipper_close(s, 10000), 0);
}

/* ---- the emitter's bounds -------------------------------------------------------------------- */

Test(audit_ship, long_strings_are_cut_to_the_stores_bounds_and_the_event_is_stored) {
    char vid[301], bucket[400], key[5000];
    memset(vid, 'v', 300);
    vid[300] = '\0';
    memset(bucket, '\xff', 399); /* not UTF-8: each byte becomes U+FFFD, three bytes */
    bucket[399] = '\0';
    memset(key, 'k', 4999);
    key[4999] = '\0';
    audit_event_fields e = {.time_us = time_now_ms() * 1000, .request_id = "long", .correlation_id = "long",
                            .action = "s3:GetObject", .bucket = bucket, .key = key, .version_id = vid, .status = 200};
    buf_t b;
    buf_init(&b);
    cr_assert_eq(audit_emit_encode(&e, "0123456789abcdef0123456789abcdef", &b), 0);
    audit_events *ev = NULL;
    audit_error err = {0};
    cr_assert_eq(audit_event_parse(b.data, b.len, &ev, &err), 0, "%s: %s", err.field, err.reason);
    const audit_event *x = audit_events_list(ev);
    cr_assert_eq(strlen(x->version_id), AUDIT_STR_MAX);
    cr_assert_leq(strlen(x->bucket), AUDIT_STR_MAX);
    cr_assert_gt(strlen(x->bucket), AUDIT_STR_MAX - 3);
    cr_assert_eq(strlen(x->key), AUDIT_KEY_MAX);
    audit_events_free(ev);
    buf_free(&b);
    audit_shipper *s = start(500, 50);
    cr_assert_eq(audit_emit(J, &e, true), 0);
    cr_assert_eq(audit_shipper_flush(s, 10000), 0);
    cr_assert_eq(stored("long", NULL), 1);
    audit_shipper_close(s, 10000);
}

/* ---- the journal's overflow spool ------------------------------------------------------------ */

static int spool_files(void) {
    DIR *d = opendir(jdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "spool-", 6)) n++;
    if (d) closedir(d);
    return n;
}

Test(audit_ship, the_overflow_spool_is_drained_into_the_store_and_deleted) {
    audit_journal_close(J);
    audit_journal_opts o = {.dir = jdir, .max_bytes = 16 * 1024, .segment_bytes = 64 * 1024, .sync_ms = 5,
                            .overflow = AUDIT_OVERFLOW_SPOOL, .fsync = true};
    cr_assert_eq(audit_journal_open(&o, &J), 0);
    for (int i = 0; i < 300; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "spill-%d", i);
        emit("spill", rid);
    }
    audit_journal_stats js;
    audit_journal_get_stats(J, &js);
    cr_assert_gt(js.spooled, 100, "the bound was reached: %llu spooled", (unsigned long long)js.spooled);
    cr_assert_gt(spool_files(), 0);
    audit_shipper *s = start(500, 50);
    cr_assert_eq(wait_stored("spill", NULL, 300, 15000), 300);
    audit_shipper_stats st;
    int64_t end = time_mono_ns() + 10LL * 1000000000;
    do {
        audit_shipper_stats_get(s, &st);
    } while (st.spool_drained < js.spooled && time_mono_ns() < end && usleep(5000) == 0);
    cr_assert_eq(spool_files(), 0, "a drained spool file is deleted");
    cr_assert_eq(st.spool_drained, js.spooled, "%llu drained, %llu spooled", (unsigned long long)st.spool_drained, (unsigned long long)js.spooled);
    cr_assert_eq(audit_shipper_close(s, 10000), 0);
    cr_assert_eq(stored("spill", NULL), 300);
}

/* ---- remote mode, the store unreachable ------------------------------------------------------ */

static audit_shipper *start_unreachable(int retries) {
    /* Port 1 on loopback: nothing listens, every POST is a refused connection. */
    audit_shipper_opts o = {.journal = J, .url = "http://127.0.0.1:1", .access_key = "shipper", .secret_key = "secret-key",
                            .region = "us-east-1", .batch_size = 500, .flush_interval_ms = 20, .timeout_ms = 1000,
                            .max_retries = retries, .backoff_base_ms = 5, .backoff_max_ms = 20,
                            .replay_interval_ms = 50, .dlq = {.dir = jdir, .fsync = true}};
    audit_shipper *s = NULL;
    cr_assert_eq(audit_shipper_start(&o, &s), 0);
    return s;
}

static audit_shipper_stats wait_stats(audit_shipper *s, bool (*ok)(const audit_shipper_stats *), int deadline_ms) {
    audit_shipper_stats st;
    int64_t end = time_mono_ns() + (int64_t)deadline_ms * 1000000;
    do audit_shipper_stats_get(s, &st);
    while (!ok(&st) && time_mono_ns() < end && usleep(2000) == 0);
    return st;
}

static bool twenty_held(const audit_shipper_stats *st) { return st->dlq_held >= 20; }

Test(audit_ship, an_unreachable_store_is_retried_then_the_batch_is_held_and_committed) {
    audit_shipper *s = start_unreachable(3);
    for (int i = 0; i < 20; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "held-%d", i);
        emit("held", rid);
    }
    audit_shipper_stats st = wait_stats(s, twenty_held, 10000);
    cr_assert_eq(st.dlq_held, 20);
    cr_assert_geq(st.retries[SHIP_CAUSE_CONNECT], 3);
    cr_assert_eq(st.breaker, 1);
    walked w = {0};
    cr_assert_eq(audit_dlq_walk(audit_shipper_dlq(s), AUDIT_DLQ_HELD, walk_cb, &w), 0);
    cr_assert_eq(w.n, 20);
    cr_assert(strstr(w.reason, "cannot reach"), "%s", w.reason);
    cr_assert_eq(audit_shipper_close(s, 5000), 0, "committed once held");
}

#if CAIRN_FAULT_BUILD
static bool failed_twice(const audit_shipper_stats *st) { return st->dlq_failures >= 2; }

Test(audit_ship, a_dlq_put_that_fails_keeps_the_events_in_the_journal_until_it_works) {
    for (int i = 0; i < 20; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "dlqfail-%d", i);
        emit("dlqfail", rid);
    }
    cr_assert_eq(audit_journal_sync(J), 0);
    /* Every spool write of the DLQ fails (and there is no Redis). */
    cr_assert_eq(fault_configure("sites=audit.write\nnth=1\ncount=0"), 0);
    audit_shipper *s = start_unreachable(0);
    audit_shipper_stats st = wait_stats(s, failed_twice, 10000);
    cr_assert_geq(st.dlq_failures, 2, "tried again after a backoff");
    cr_assert_eq(st.dlq_held, 0);
    audit_journal_stats js;
    audit_journal_get_stats(J, &js);
    cr_assert_eq(js.depth, 20, "not committed: the events stay in the journal");
    cr_assert_eq(fault_configure(""), 0);
    st = wait_stats(s, twenty_held, 10000);
    cr_assert_eq(st.dlq_held, 20);
    cr_assert_eq(audit_shipper_close(s, 5000), 0);
    audit_journal_get_stats(J, &js);
    cr_assert_eq(js.depth, 0);
    cr_assert_eq(js.lost, 0);
}
#endif
