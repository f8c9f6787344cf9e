/*
 * ratelimit_bench.c — cairn-rlbench: the cost of one rate limit check
 * (auth/ratelimit.c), local and through Redis.
 *
 * Local: rl_admit of a request naming a key, an address and a bucket, each
 * with an ops limit high enough never to refuse, so every check runs the
 * whole path (three hashed lookups, three locks, check and charge); one
 * thread on one subject, one thread over 10,000 subjects (cache misses),
 * and two threads over 10,000.  The median over runs of the mean ns per
 * check.  Through Redis (when --redis URL is given): the same check as one
 * Lua script call, one thread, median of runs of the mean us per check.
 * A check refused where nothing should be fails the benchmark (exit 1).
 *
 * Usage: cairn-rlbench [--quick] [--runs N] [--redis redis://HOST:PORT]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
    rl_limiter *l;
    int subjects, checks, failed;
    unsigned seed;
} run_arg;

static void *checks(void *p) {
    run_arg *a = p;
    char key[32], ip[32], bucket[32];
    for (int i = 0; i < a->checks; i++) {
        int k = a->subjects > 1 ? (int)(rand_r(&a->seed) % (unsigned)a->subjects) : 0;
        snprintf(key, sizeof key, "AKID%08d", k);
        snprintf(ip, sizeof ip, "10.%d.%d.%d", (k >> 16) & 255, (k >> 8) & 255, k & 255);
        snprintf(bucket, sizeof bucket, "bucket-%d", k % 100);
        rl_subject s = {{key, ip, bucket}};
        rl_refusal why;
        if (rl_admit(a->l, &s, time_mono_ns(), &why) != 0) a->failed++;
        else rl_release(a->l);
    }
    return NULL;
}

/* Mean ns per check over threads x n checks. */
static double measure(rl_limiter *l, int threads, int subjects, int n, int *failed) {
    pthread_t t[8];
    run_arg a[8];
    int64_t t0 = time_mono_ns();
    for (int i = 0; i < threads; i++) {
        a[i] = (run_arg){l, subjects, n, 0, (unsigned)(i * 7919 + 1)};
        pthread_create(&t[i], NULL, checks, &a[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        *failed += a[i].failed;
    }
    /* Threads run side by side: the wall time over all their checks. */
    return (double)(time_mono_ns() - t0) / ((double)threads * n);
}

int main(int argc, char **argv) {
    bool quick = getenv("BENCH_QUICK") && !strcmp(getenv("BENCH_QUICK"), "1");
    int runs = 5;
    const char *redis = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--redis") && i + 1 < argc) redis = argv[++i];
    }
    if (runs < 1 || runs > 50) runs = 5;
    int n = quick ? 200000 : 1000000, nr = quick ? 2000 : 10000;
    rl_config cfg = {.ops_per_s = {1000000000, 1000000000, 1000000000}, .burst_s = 3600, .max_entries = 100000};
    rl_limiter *l = NULL;
    if (rl_new(&cfg, &l) != 0) return 1;
    int failed = 0;
    double one[50], many[50], two[50];
    for (int r = 0; r < runs; r++) {
        one[r] = measure(l, 1, 1, n, &failed);
        many[r] = measure(l, 1, 10000, n, &failed);
        two[r] = measure(l, 2, 10000, n / 2, &failed);
    }
    printf("rate limiter (auth/ratelimit.c): one check = key + address + bucket, median of %d runs\n", runs);
    printf("  local, 1 thread, 1 subject           %8.0f ns/check\n", median(one, runs));
    printf("  local, 1 thread, 10,000 subjects     %8.0f ns/check\n", median(many, runs));
    printf("  local, 2 threads, 10,000 subjects    %8.0f ns/check (wall time / checks)\n", median(two, runs));
    rl_free(l);
    if (redis) {
        rl_limiter *rl = NULL;
        char why[160];
        rl_shared sh = {.redis_url = redis, .timeout_ms = 1000, .breaker_ms = 1000};
        if (rl_new(&cfg, &rl) != 0 || rl_share(rl, &sh, why, sizeof why) != 0) return 1;
        double us[50];
        for (int r = 0; r < runs; r++) us[r] = measure(rl, 1, 10000, nr, &failed) / 1000;
        rl_stats st;
        rl_stats_get(rl, &st);
        if (st.fallback_checks) {
            fprintf(stderr, "rlbench: %llu checks fell back (Redis did not answer)\n",
                    (unsigned long long)st.fallback_checks);
            failed++;
        }
        printf("  Redis (one Lua script), 1 thread     %8.1f us/check\n", median(us, runs));
        rl_free(rl);
    }
    if (failed) {
        fprintf(stderr, "rlbench: %d checks refused where none should be\n", failed);
        return 1;
    }
    return 0;
}
