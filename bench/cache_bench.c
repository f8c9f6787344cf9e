/*
 * cache_bench.c — cairn-cachebench: the L1 cache's hit ratio under S3-FIFO
 * against LRU at the same capacity, and the cost of an L1 hit.
 *
 * Traces.  Requests for 100,000 keys ("bucket/object-NNNNNNN", 256-byte
 * values, about a metadata record) drawn from a Zipf distribution with
 * alpha 0.99: 1,000,000 requests.  The polluted trace is the same requests
 * with, every 10,000 of them, a sequential scan of 5,000 keys read once and
 * never again (a listing, a backup, a crawler: half the cache's entries
 * each time).  Each request is a cache_get; a miss fills with the version
 * protocol (cache_version_begin, then cache_fill), as a reader would after
 * reading the backend.  The capacity holds 10% of the keys (entries weigh
 * key + value + CACHE_ENTRY_OVERHEAD), with the default sharding for that
 * size.  The ratio counted is hits over the Zipf requests only (the scanned
 * keys are misses under any policy), so both traces' figures compare.  Both
 * traces are generated once from a fixed seed: each policy sees the same
 * requests.
 *
 * Hit cost.  10,000 keys in a cache far larger than they are; the median
 * over runs of the mean ns per cache_get (a present key, copied out into the
 * caller's buffer) over 1,000,000 gets in a random order, one thread.  The
 * policies' runs alternate so that load from others on a shared machine
 * hits both alike.  A hit that returns other bytes than were filled fails
 * the benchmark (exit 1) instead of reporting.
 *
 * Usage: cairn-cachebench [--quick] [--runs N]    (BENCH_QUICK=1 = --quick:
 * 20,000 keys, 200,000 requests, scans of 1,000, 200,000 timed gets)
 */
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cache/l2.h"

#define VLEN 256
#define MAX_RUNS 101
#define ALPHA 0.99
#define KEY_FMT "bucket/object-%07u"

typedef struct {
    unsigned keys;         /* distinct Zipf keys */
    unsigned requests;     /* Zipf requests */
    unsigned scan_every;   /* a scan after this many requests */
    unsigned scan_len;     /* keys per scan */
    unsigned hit_keys;     /* keys present in the hit-cost runs */
    unsigned hit_gets;     /* gets per hit-cost run */
    int runs;
} plan;

typedef struct {
    double zipf, polluted; /* hit ratios */
    double hit_ns;         /* median */
} result;

static unsigned char value_bytes[VLEN];

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* n key ids from Zipf(ALPHA) over [0, keys), by inverse CDF. */
static unsigned *zipf_trace(unsigned keys, unsigned n, uint64_t seed) {
    double *cdf = malloc(keys * sizeof *cdf);
    unsigned *t = malloc(n * sizeof *t);
    if (!cdf || !t) {
        free(cdf);
        free(t);
        return NULL;
    }
    double sum = 0;
    for (unsigned i = 0; i < keys; i++) cdf[i] = (sum += 1.0 / pow(i + 1.0, ALPHA));
    for (unsigned r = 0; r < n; r++) {
        double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0 * sum;
        unsigned lo = 0, hi = keys - 1;
        while (lo < hi) {
            unsigned mid = (lo + hi) / 2;
            if (cdf[mid] < u) lo = mid + 1;
            else hi = mid;
        }
        t[r] = lo;
    }
    free(cdf);
    return t;
}

static cache *make(cache_policy policy, size_t capacity) {
    cache_options o;
    cache_options_default(&o);
    o.policy = policy;
    o.capacity = capacity;
    o.ttl_ms = 0;
    cache *c = NULL;
    return cache_new(&o, &c) == 0 ? c : NULL;
}

/* One request: a hit (checked), or a miss filled as a reader would.
 * Returns 1 on a hit, 0 on a miss, -1 when a hit returned wrong bytes. */
static int request(cache *c, const char *key, size_t klen) {
    unsigned char out[VLEN];
    size_t n = 0;
    if (cache_get(c, key, klen, out, sizeof out, &n) == 0)
        return n == VLEN && memcmp(out, value_bytes, VLEN) == 0 ? 1 : -1;
    uint64_t v = cache_version_begin(c);
    (void)cache_fill(c, key, klen, value_bytes, VLEN, v, 0);
    return 0;
}

/* Hit ratio of the Zipf requests, with scans of never-seen keys or not. */
static double replay(const plan *p, const unsigned *trace, cache_policy policy, size_t capacity, bool scans,
                     bool *bad) {
    cache *c = make(policy, capacity);
    if (!c) {
        *bad = true;
        return 0;
    }
    unsigned long hits = 0, cold = 0;
    char key[48];
    for (unsigned r = 0; r < p->requests; r++) {
        if (scans && r % p->scan_every == 0) {
            for (unsigned j = 0; j < p->scan_len; j++) {
                int len = snprintf(key, sizeof key, "scan/object-%09lu", cold++);
                if (request(c, key, (size_t)len) < 0) *bad = true;
            }
        }
        int len = snprintf(key, sizeof key, KEY_FMT, trace[r]);
        int h = request(c, key, (size_t)len);
        if (h < 0) *bad = true;
        else hits += (unsigned long)h;
    }
    cache_free(c);
    return (double)hits / p->requests;
}

/* Mean ns per hit over one pass of `order`. */
static double hit_run(cache *c, char (*keys)[32], const unsigned *order, unsigned n, bool *bad) {
    unsigned char out[VLEN];
    size_t len;
    unsigned long ok = 0;
    double t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        const char *k = keys[order[i]];
        ok += cache_get(c, k, strlen(k), out, sizeof out, &len) == 0 && len == VLEN;
    }
    double ns = (now_ns() - t0) / n;
    if (ok != n) *bad = true;
    return ns;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median ns of an L1 hit under each policy (runs alternating). */
static void hit_cost(const plan *p, result res[2], bool *bad) {
    char (*keys)[32] = malloc(p->hit_keys * sizeof *keys);
    unsigned *order = malloc(p->hit_gets * sizeof *order);
    cache *c[2] = {make(CACHE_POLICY_S3FIFO, (size_t)64 << 20), make(CACHE_POLICY_LRU, (size_t)64 << 20)};
    if (!keys || !order || !c[0] || !c[1]) {
        *bad = true;
        goto out;
    }
    uint64_t seed = 7;
    for (unsigned i = 0; i < p->hit_keys; i++) snprintf(keys[i], sizeof keys[i], KEY_FMT, i);
    for (unsigned i = 0; i < p->hit_gets; i++) order[i] = (unsigned)(rng_next(&seed) % p->hit_keys);
    for (int k = 0; k < 2; k++)
        for (unsigned i = 0; i < p->hit_keys; i++)
            if (cache_fill(c[k], keys[i], strlen(keys[i]), value_bytes, VLEN, cache_version_begin(c[k]), 0))
                *bad = true;
    double ns[2][MAX_RUNS];
    for (int k = 0; k < 2; k++) hit_run(c[k], keys, order, p->hit_gets, bad); /* warm-up */
    for (int r = 0; r < p->runs; r++)
        for (int j = 0; j < 2; j++) {
            int k = (r + j) % 2;
            ns[k][r] = hit_run(c[k], keys, order, p->hit_gets, bad);
        }
    for (int k = 0; k < 2; k++) res[k].hit_ns = median(ns[k], p->runs);
out:
    cache_free(c[0]);
    cache_free(c[1]);
    free(keys);
    free(order);
}

/* ---- the L2: a real redis-server on loopback ------------------------------------------ */

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
                       getsockname(s, (struct sockaddr *)&a, &l) == 0 ? ntohs(a.sin_port) : -1;
    if (s >= 0) close(s);
    return port;
}

/* Median microseconds of an L2 hit (l2_get) and of the seq read a cached
 * read pays with Redis (l2_sync), or -1 each when no redis-server runs here. */
static void l2_cost(const plan *p, double *hit_us, double *sync_us, bool *bad) {
    *hit_us = *sync_us = -1;
    int port = free_port();
    if (port < 0 || access("/usr/bin/redis-server", X_OK) != 0) return;
    char ports[16], dir[] = "/tmp/cairn-cachebench-XXXXXX";
    if (!mkdtemp(dir)) return;
    snprintf(ports, sizeof ports, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
        execl("/usr/bin/redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    l2_options o = {.url = url, .timeout_ms = 1000, .breaker_ms = 1};
    l2 *r = NULL;
    char why[128];
    buf_t val;
    buf_init(&val);
    bool found = false, stored = false;
    uint64_t gen = 0, seq, epoch;
    if (pid > 0 && l2_new(&o, &r, why, sizeof why) == 0) {
        for (int i = 0; i < 500 && l2_get(r, "bench-key", 9, 0, &val, &found, &gen) != 0; i++) usleep(10000);
        if (l2_fill(r, "bench-key", 9, 0, gen, value_bytes, VLEN, 600000, &stored) != 0 || !stored) *bad = true;
        double hits[MAX_RUNS], syncs[MAX_RUNS];
        unsigned n = p->hit_gets / 100 ? p->hit_gets / 100 : 1; /* 2,000 or 10,000 round trips */
        for (int run = 0; run < p->runs && !*bad; run++) {
            double t0 = now_ns();
            for (unsigned i = 0; i < n; i++)
                if (l2_get(r, "bench-key", 9, 0, &val, &found, &gen) != 0 || !found || val.len != VLEN ||
                    memcmp(val.data, value_bytes, VLEN) != 0)
                    *bad = true;
            double t1 = now_ns();
            for (unsigned i = 0; i < n; i++) l2_sync(r, &seq, &epoch); /* no subscriber: answers ECONFLICT after the round trip */
            hits[run] = (t1 - t0) / n / 1000;
            syncs[run] = (now_ns() - t1) / n / 1000;
        }
        if (!*bad) {
            *hit_us = median(hits, p->runs);
            *sync_us = median(syncs, p->runs);
        }
    }
    buf_free(&val);
    l2_free(r);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) *bad = true;
}

int main(int argc, char **argv) {
    const char *q = getenv("BENCH_QUICK");
    bool quick = q && !strcmp(q, "1");
    int runs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--runs N]\n", argv[0]);
            return 2;
        }
    }
    plan p = quick ? (plan){20000, 200000, 10000, 1000, 10000, 200000, 3}
                   : (plan){100000, 1000000, 10000, 5000, 10000, 1000000, 5};
    if (runs) p.runs = runs;
    if (p.runs < 1 || p.runs > MAX_RUNS) {
        fprintf(stderr, "cachebench: --runs must be 1..%d\n", MAX_RUNS);
        return 2;
    }
    for (int i = 0; i < VLEN; i++) value_bytes[i] = (unsigned char)(i * 31 + 7);
    unsigned *trace = zipf_trace(p.keys, p.requests, 0x9E3779B97F4A7C15ULL);
    if (!trace) {
        fprintf(stderr, "cachebench: out of memory\n");
        return 1;
    }
    int klen = snprintf(NULL, 0, KEY_FMT, 0u);
    size_t capacity = (size_t)p.keys / 10 * (CACHE_ENTRY_OVERHEAD + (size_t)klen + VLEN);
    bool bad = false;
    result res[2] = {{0}, {0}};
    const cache_policy pol[2] = {CACHE_POLICY_S3FIFO, CACHE_POLICY_LRU};
    for (int k = 0; k < 2; k++) {
        res[k].zipf = replay(&p, trace, pol[k], capacity, false, &bad);
        res[k].polluted = replay(&p, trace, pol[k], capacity, true, &bad);
    }
    free(trace);
    hit_cost(&p, res, &bad);
    double l2_hit_us, l2_sync_us;
    l2_cost(&p, &l2_hit_us, &l2_sync_us, &bad);
    if (bad) {
        fprintf(stderr, "cachebench: a hit returned wrong bytes, or a cache could not be made\n");
        return 1;
    }
    cache *probe = make(CACHE_POLICY_S3FIFO, capacity);
    cache_stats st;
    cache_stats_get(probe, &st);
    cache_free(probe);
    printf("cache L1%s: %u keys, %u requests, Zipf %.2f, %d-byte values, capacity %.1f MiB (10%% of the keys)\n",
           quick ? " (quick)" : "", p.keys, p.requests, ALPHA, VLEN, (double)st.capacity / (1 << 20));
    printf("  %-48s %9s %9s %8s\n", "", "S3-FIFO", "LRU", "ratio");
    printf("  %-48s %9.4f %9.4f %7.2fx\n", "hit ratio, Zipf", res[0].zipf, res[1].zipf, res[0].zipf / res[1].zipf);
    char what[64];
    snprintf(what, sizeof what, "hit ratio, Zipf + scans (%u keys / %u req)", p.scan_len, p.scan_every);
    printf("  %-48s %9.4f %9.4f %7.2fx\n", what, res[0].polluted, res[1].polluted, res[0].polluted / res[1].polluted);
    snprintf(what, sizeof what, "L1 hit ns (cache_get, median of %d)", p.runs);
    printf("  %-48s %9.1f %9.1f %7.2fx\n", what, res[0].hit_ns, res[1].hit_ns, res[0].hit_ns / res[1].hit_ns);
    if (l2_hit_us < 0) {
        printf("  L2: no /usr/bin/redis-server here, not measured\n");
    } else {
        snprintf(what, sizeof what, "L2 hit us (redis on loopback, median of %d)", p.runs);
        printf("  %-48s %9.1f\n", what, l2_hit_us);
        printf("  %-48s %9.1f\n", "seq check us (what redis adds to an L1 hit)", l2_sync_us);
    }
    return 0;
}
