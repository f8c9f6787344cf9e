/*
 * ship_bench.c — cairn-shipbench: the audit shipper end to end, in one
 * process, on a real journal and a real metadata database (embedded mode:
 * the shipper inserts into the store's table, as `cairn server` does).
 *
 * First a prober alone for --idle-probe-s seconds (default 3): one event
 * every 50 ms, each polled until queryable (emit -> queryable, idle).  Then
 * THREADS threads each emit EVENTS events (waiting while the journal is
 * full, as the gateway's admission does: --journal-max-mib, default 1024) (audit_emit, not waiting, all
 * with one correlation id), while a prober emits one marked event every
 * 50 ms and polls the store until it is queryable (emit -> queryable
 * latency).  Then the shipper is closed (audit_close) and the store is
 * counted: exactly THREADS x EVENTS events of the correlation id, or the
 * run fails (exit 1).  Printed: sustained events/s into the store (from the
 * first emit to the last commit), the shipper's flush latency (one batch,
 * decision to commit) p50/p99 from its histogram, emit -> queryable p50/p99,
 * and with --rss the process's RSS every --rss-every events (the run fails
 * when RSS grows more than --rss-slack-mib after the first sample).
 *
 * Usage: cairn-shipbench [--threads N] [--events N] [--batch N] [--flush-ms N]
 *          [--metadata-url URL] [--no-fsync] [--rss] [--rss-every N] [--rss-slack-mib N] [--idle-probe-s N]
 *          [--journal-max-mib N]
 * Temp directory: $BENCH_DIR, else $TMPDIR, else /tmp.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"

static audit_journal *J;
static meta_store *MS;
static audit_shipper *SH;
static char CORR[64];
static int EVENTS = 10000;
static int64_t JOURNAL_MAX = 1LL << 30;
static atomic_long emitted, failed;

static const audit_event_fields sample = {
    .principal = "AKIAIOSFODNN7EXAMPLE", .user = "alice", .source_address = "127.0.0.1",
    .action = "s3:PutObject", .bucket = "photos", .key = "2026/11/30/holiday/IMG_0042-edited-final.jpg",
    .status = 200, .bytes_in = 4096, .duration_us = 180,
};

static void *producer(void *arg) {
    long id = (long)arg;
    audit_event_fields e = sample;
    e.correlation_id = CORR;
    char rid[48];
    e.request_id = rid;
    for (int i = 0; i < EVENTS; i++) {
        snprintf(rid, sizeof rid, "t%ld-%d", id, i);
        /* As the gateway does: no new request while the journal is full
         * (its clients get 503 SlowDown and come back). */
        while (audit_journal_admit(J) == CAIRN_EBUSY) usleep(1000);
        e.time_us = time_now_ms() * 1000;
        if (audit_emit(J, &e, false) != 0) atomic_fetch_add(&failed, 1);
        else atomic_fetch_add(&emitted, 1);
    }
    return NULL;
}

/* emit -> queryable: one prober's samples */
typedef struct {
    int64_t lat[20000];
    int n;
    atomic_bool run;
} probes;

static int found_cb(void *ud, const meta_audit_event *e) {
    (void)e;
    *(int *)ud = 1;
    return 1;
}

static void *prober(void *arg) {
    probes *pb = arg;
    audit_event_fields e = sample;
    e.action = "s3:GetObject";
    char rid[48];
    e.request_id = rid;
    e.correlation_id = "shipbench-probe";
    static atomic_int seq;
    while (atomic_load(&pb->run) && pb->n < (int)(sizeof pb->lat / sizeof pb->lat[0])) {
        snprintf(rid, sizeof rid, "probe-%d-%d", getpid(), atomic_fetch_add(&seq, 1));
        int64_t t0 = time_mono_ns();
        e.time_us = time_now_ms() * 1000;
        if (audit_emit(J, &e, false) != 0) break;
        for (;;) {
            meta_audit_filter f = {.request_id = rid};
            int found = 0, count = 0;
            meta_audit_query(MS, &f, 1, found_cb, &found, &count);
            if (found) break;
            usleep(2000);
            if (time_mono_ns() - t0 > 120LL * 1000000000) break;
        }
        pb->lat[pb->n++] = time_mono_ns() - t0;
        usleep(50000);
    }
    return NULL;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}

typedef struct {
    int64_t count;
    int64_t t;
    char id[33];
} counter;

static int count_cb(void *ud, const meta_audit_event *e) {
    counter *c = ud;
    c->count++;
    c->t = e->time_us;
    snprintf(c->id, sizeof c->id, "%s", e->event_id);
    return 0;
}

static int64_t count_corr(const char *corr) {
    counter c = {0};
    meta_audit_filter f = {.correlation_id = corr};
    for (;;) {
        int n = 0;
        if (meta_audit_query(MS, &f, 1000, count_cb, &c, &n) != 0) return -1;
        if (n < 1000) break;
        f.after_set = true;
        f.after_time_us = c.t;
        memcpy(f.after_id, c.id, sizeof f.after_id);
    }
    return c.count;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_probes(const char *what, probes *pb) {
    if (!pb->n) return;
    qsort(pb->lat, (size_t)pb->n, sizeof pb->lat[0], cmp64);
    printf("emit_to_queryable %s probes=%d p50_ms=%.1f p99_ms=%.1f\n", what, pb->n, pb->lat[pb->n / 2] / 1e6,
           pb->lat[(pb->n * 99) / 100] / 1e6);
}

/* A quantile from the shipper's Prometheus histogram: the bucket bound. */
static const char *hist_quantile(const char *text, const char *name, double q, char *out, size_t n) {
    char key[128];
    snprintf(key, sizeof key, "%s_count ", name);
    const char *c = strstr(text, key);
    if (!c) return "NA";
    double total = strtod(c + strlen(key), NULL);
    snprintf(key, sizeof key, "%s_bucket{le=\"", name);
    for (const char *p = strstr(text, key); p; p = strstr(p + 1, key)) {
        const char *le = p + strlen(key);
        const char *end = strchr(le, '"');
        double cum = strtod(end + 3, NULL);
        if (cum >= q * total) {
            snprintf(out, n, "<=%.*ss", (int)(end - le), le);
            return out;
        }
    }
    return "NA";
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int main(int argc, char **argv) {
    int threads = 8, batch = 500, flush_ms = 1000, rss_every = 1000000, rss_slack = 64, idle_s = 3;
    bool fsync_on = true, rss = false;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--events") && v) EVENTS = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--flush-ms") && v) flush_ms = atoi(argv[++i]);
        else if (!strcmp(a, "--metadata-url") && v) url = argv[++i];
        else if (!strcmp(a, "--no-fsync")) fsync_on = false;
        else if (!strcmp(a, "--rss")) rss = true;
        else if (!strcmp(a, "--rss-every") && v) rss_every = atoi(argv[++i]);
        else if (!strcmp(a, "--rss-slack-mib") && v) rss_slack = atoi(argv[++i]);
        else if (!strcmp(a, "--idle-probe-s") && v) idle_s = atoi(argv[++i]);
        else if (!strcmp(a, "--journal-max-mib") && v) JOURNAL_MAX = (int64_t)atoi(argv[++i]) << 20;
        else {
            fprintf(stderr, "usage: cairn-shipbench [--threads N] [--events N] [--batch N] [--flush-ms N] "
                            "[--metadata-url URL] [--no-fsync] [--rss] [--rss-every N] [--rss-slack-mib N] [--idle-probe-s N] [--journal-max-mib N]\n");
            return 2;
        }
    }
    if (core_init() != 0) return 2;
    log_set_level(LOG_WARN);
    const char *tmp = getenv("BENCH_DIR");
    if (!tmp || !*tmp) tmp = getenv("TMPDIR");
    char dir[512], jdir[600], db[600];
    snprintf(dir, sizeof dir, "%s/cairn-ship-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 2;
    snprintf(jdir, sizeof jdir, "%s/audit", dir);
    snprintf(db, sizeof db, "%s/meta.db", dir);
    char why[256] = "";
    int rc = url ? meta_open_url(url, dir, NULL, true, &MS, why, sizeof why) : meta_open(db, NULL, &MS);
    if (rc != 0) {
        fprintf(stderr, "shipbench: cannot open the metadata: %s %s\n", cairn_strerror(rc), why);
        return 2;
    }
    audit_journal_opts jo = {.dir = jdir, .max_bytes = JOURNAL_MAX, .segment_bytes = 64 << 20, .sync_ms = 50,
                             .overflow = AUDIT_OVERFLOW_REJECT, .fsync = fsync_on};
    if (audit_journal_open(&jo, &J) != 0) return 2;
    audit_shipper_opts so = {.journal = J, .meta = MS, .batch_size = batch, .flush_interval_ms = flush_ms,
                             .max_retries = 5, .dlq = {.dir = jdir, .fsync = fsync_on}};
    if (audit_shipper_start(&so, &SH) != 0) return 2;
    char rid[16];
    rand_hex_id(rid, 6);
    snprintf(CORR, sizeof CORR, "shipbench-%s", rid);

    long total = (long)threads * EVENTS;
    printf("== cairn-shipbench: %d threads x %d events, batch %d, flush %d ms, %s%s\n", threads, EVENTS, batch,
           flush_ms, meta_backend_name(MS), fsync_on ? "" : ", no fsync");
    fflush(stdout);
    /* emit -> queryable with nothing else going on: the flush interval's
     * share (an event waits for it unless its batch fills). */
    static probes idle, busy;
    pthread_t pr;
    if (idle_s > 0) {
        atomic_store(&idle.run, true);
        pthread_create(&pr, NULL, prober, &idle);
        sleep((unsigned)idle_s);
        atomic_store(&idle.run, false);
        pthread_join(pr, NULL);
    }
    int64_t t0 = time_mono_ns();
    pthread_t th[threads];
    atomic_store(&busy.run, true);
    pthread_create(&pr, NULL, prober, &busy);
    for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, producer, (void *)i);
    long rss_first = -1, rss_max = 0, next_rss = rss_every;
    int bad = 0;
    if (rss) {
        while (atomic_load(&emitted) + atomic_load(&failed) < total) {
            long e = atomic_load(&emitted);
            if (e >= next_rss) {
                long r = rss_kib();
                if (rss_first < 0) rss_first = r;
                if (r > rss_max) rss_max = r;
                audit_journal_stats js;
                audit_journal_get_stats(J, &js);
                printf("rss events=%ld rss_kib=%ld journal_depth=%lld\n", e, r, (long long)js.depth);
                fflush(stdout);
                next_rss += rss_every;
            }
            usleep(20000);
        }
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    int64_t t_emit = time_mono_ns();
    if (audit_shipper_flush(SH, 600000) != 0) {
        fprintf(stderr, "shipbench: the shipper did not catch up within 600 s\n");
        bad = 1;
    }
    int64_t t_done = time_mono_ns();
    atomic_store(&busy.run, false);
    pthread_join(pr, NULL);
    buf_t m;
    buf_init(&m);
    audit_shipper_render_metrics(SH, &m);
    buf_putc(&m, '\0');
    audit_shipper_stats st;
    audit_shipper_stats_get(SH, &st);
    int64_t pending = audit_shipper_close(SH, 60000);
    audit_journal_stats js;
    audit_journal_get_stats(J, &js);
    audit_journal_close(J);
    int64_t stored = count_corr(CORR);
    double secs = (double)(t_done - t0) / 1e9;
    char q1[32], q2[32];
    printf("emitted=%ld failed=%ld stored=%lld pending=%lld lost=%llu batches=%llu duplicates=%llu\n",
           atomic_load(&emitted), atomic_load(&failed), (long long)stored, (long long)pending,
           (unsigned long long)js.lost, (unsigned long long)st.batches_sent, (unsigned long long)st.events_duplicate);
    printf("throughput events_per_s=%.0f emit_s=%.2f drain_after_emit_s=%.2f\n", (double)total / secs,
           (double)(t_emit - t0) / 1e9, (double)(t_done - t_emit) / 1e9);
    printf("flush_latency p50%s p99%s\n", hist_quantile(m.data, "cairn_audit_flush_seconds", 0.5, q1, sizeof q1),
           hist_quantile(m.data, "cairn_audit_flush_seconds", 0.99, q2, sizeof q2));
    print_probes("idle", &idle);
    print_probes("under_load", &busy);
    if (rss && rss_first > 0) {
        printf("rss first_kib=%ld max_kib=%ld growth_kib=%ld (slack %d MiB)\n", rss_first, rss_max, rss_max - rss_first,
               rss_slack);
        if (rss_max - rss_first > (long)rss_slack * 1024) {
            fprintf(stderr, "shipbench: RSS grew by %ld KiB\n", rss_max - rss_first);
            bad = 1;
        }
    }
    buf_free(&m);
    meta_close(MS);
    if (stored != total || js.lost != 0 || atomic_load(&failed) != 0) {
        fprintf(stderr, "shipbench: FAIL: stored %lld of %ld events (lost %llu, failed emits %ld)\n",
                (long long)stored, total, (unsigned long long)js.lost, atomic_load(&failed));
        bad = 1;
    }
    if (!getenv("SHIPBENCH_KEEP")) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return bad;
}
