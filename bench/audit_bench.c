/*
 * audit_bench.c — cairn-auditbench: what the audit journal costs a request.
 *
 * Emit cost.  audit_emit of a typical event (a GetObject's fields, a 40-byte
 * key) without waiting (a read's event), from 1, 4 and 16 threads at once:
 * the mean ns per event each thread sees (wall time of the run / events per
 * thread).  Twice: a burst of 4,000 events, which fits the journal's queue
 * (the request thread's own cost: the event id, the JSON, the queue's
 * lock), and a sustained run of many more, where appenders wait for the
 * writer once the queue is full, so the disk's write rate shows.  The journal is real (a temp directory, fdatasync on,
 * audit_sync_ms 50).
 *
 * Durable append latency.  audit_emit with durability (a write's event):
 * the p50 and p99 of the time each call takes, from 1 and from 16 threads
 * (16: group commit shares each fdatasync).
 *
 * Usage: cairn-auditbench [--quick]     (BENCH_QUICK=1 = --quick: fewer events)
 * Temp directory: $BENCH_DIR, else $TMPDIR, else /tmp.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/journal.h"

typedef struct {
    audit_journal *j;
    int n;
    bool durable;
    int64_t *lat;               /* durable: per-call ns */
    int rc;
} worker;

static const audit_event_fields sample = {
    .request_id = "1A2B3C4D5E6F7081", .principal = "AKIAIOSFODNN7EXAMPLE", .user = "alice",
    .source_address = "127.0.0.1", .action = "s3:GetObject", .bucket = "photos",
    .key = "2026/11/30/holiday/IMG_0042-edited-final.jpg", .status = 200, .bytes_out = 4096,
    .duration_us = 180,
};

static void *run_worker(void *p) {
    worker *w = p;
    audit_event_fields e = sample;
    for (int i = 0; i < w->n; i++) {
        e.time_us = time_now_ms() * 1000;
        int64_t t0 = w->lat ? time_mono_ns() : 0;
        int rc = audit_emit(w->j, &e, w->durable);
        if (w->lat) w->lat[i] = time_mono_ns() - t0;
        if (rc) w->rc = rc;
    }
    return NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static audit_journal *open_fresh(char *dir) {
    audit_journal_opts o = {.dir = dir, .max_bytes = 8LL << 30, .segment_bytes = 64 << 20, .sync_ms = 50,
                            .overflow = AUDIT_OVERFLOW_REJECT, .fsync = true};
    audit_journal *j;
    if (audit_journal_open(&o, &j) != 0) {
        fprintf(stderr, "auditbench: cannot open a journal in %s\n", dir);
        exit(2);
    }
    return j;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs threads x n emits; returns ns per event per thread; fills lat (threads*n) when durable. */
static double run(const char *base, int threads, int n, bool durable, int64_t *lat) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/j%d%s", base, threads, durable ? "d" : "");
    audit_journal *j = open_fresh(dir);
    pthread_t th[16];
    worker w[16];
    int64_t t0 = time_mono_ns();
    for (int t = 0; t < threads; t++) {
        w[t] = (worker){j, n, durable, lat ? lat + (size_t)t * n : NULL, 0};
        pthread_create(&th[t], NULL, run_worker, &w[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    int64_t ns = time_mono_ns() - t0;
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    audit_journal_close(j);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (int t = 0; t < threads; t++)
        if (w[t].rc) {
            fprintf(stderr, "auditbench: an emit failed: %s\n", cairn_strerror(w[t].rc));
            exit(1);
        }
    if (st.lost) {
        fprintf(stderr, "auditbench: %llu events lost\n", (unsigned long long)st.lost);
        exit(1);
    }
    return (double)ns / n;
}

int main(int argc, char **argv) {
    bool quick = getenv("BENCH_QUICK") && !strcmp(getenv("BENCH_QUICK"), "1");
    for (int i = 1; i < argc; i++) quick |= !strcmp(argv[i], "--quick");
    core_init();
    log_set_level(LOG_ERROR);
    const char *tmp = getenv("BENCH_DIR");
    if (!tmp || !*tmp) tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    char base[512];
    snprintf(base, sizeof base, "%s/cairn-auditbench-XXXXXX", tmp);
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 2;
    }
    int n = quick ? 50000 : 200000;
    printf("audit journal (cairn-auditbench%s; fdatasync on, %s):\n", quick ? " --quick" : "", base);
    /* A burst that fits the queue (AUDIT_QUEUE_MAX): the request thread's own cost. */
    int burst = 4000;
    printf("  emit, not waiting (a read's event), burst of %d events, ns/event per thread:", burst);
    for (int threads = 1; threads <= 16; threads *= 4) printf("  %d thr %.0f", threads, run(base, threads, burst / threads, false, NULL));
    printf("\n");
    /* Sustained: far more than the queue holds, so the disk's write rate shows. */
    printf("  emit, not waiting, sustained %d events (bounded by the journal's disk), ns/event per thread:", n);
    for (int threads = 1; threads <= 16; threads *= 4) printf("  %d thr %.0f", threads, run(base, threads, n / threads, false, NULL));
    printf("\n");
    int dn = quick ? 500 : 2000;
    int64_t *lat = malloc(sizeof(int64_t) * (size_t)dn * 16);
    if (!lat) return 2;
    for (int threads = 1; threads <= 16; threads *= 16) {
        int per = threads == 1 ? dn : dn / 4;
        run(base, threads, per, true, lat);
        size_t total = (size_t)per * threads;
        qsort(lat, total, sizeof *lat, cmp64);
        printf("  durable emit (a write's event), %2d thread%s: p50 %.0f us, p99 %.0f us (%zu events)\n", threads,
               threads == 1 ? " " : "s", (double)lat[total / 2] / 1e3, (double)lat[total * 99 / 100] / 1e3, total);
    }
    free(lat);
    rmdir(base);
    return 0;
}
