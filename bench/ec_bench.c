/*
 * ec_bench.c — cairn-ecbench: throughput of the data module's codec against
 * raw ISA-L on the same buffers.
 *
 * The geometry is the store's default: 4+2 with 256 KiB blocks.  A 64 MiB
 * object (256 stripes of 4 x 256 KiB) is encoded stripe by stripe with
 * ec_encode (cairn) and with ec_encode_data on tables built once (raw ISA-L);
 * then data shards 0 and 1 of every stripe are rebuilt from the other four,
 * with ec_reconstruct (cairn: it inverts the survivors' matrix and builds
 * tables on every call, as the reader does per stripe) and with ec_encode_data
 * on decode tables built once (raw).  CRC-32C runs over the same 64 MiB in
 * 256 KiB blocks, as the store checksums blocks, through ec_crc32c and through
 * ISA-L's crc32_iscsi directly.  A timed run is 8 passes over the buffer
 * (one pass is only ~5 ms); each figure is the median of 5 runs after one
 * untimed warm-up call, with cairn and raw runs alternating so that load from
 * others on a shared machine hits both alike; GB/s counts object bytes
 * (10^9 per second).  The rebuilt shards are first compared with the
 * originals, so a fast wrong codec fails (exit 1) instead of reporting.
 *
 * Usage: cairn-ecbench [--runs N]     (prints four lines to stdout)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>

#include "data/ec.h"

#define K 4
#define M 2
#define BLOCK (256u * 1024)
#define TOTAL (64u * 1024 * 1024)
#define STRIPES (TOTAL / (K * BLOCK))
#define MAX_RUNS 101
#define PASSES 8     /* passes over the buffer per timed run: ~50 ms at 10 GB/s */

typedef struct {
    unsigned char *data;    /* TOTAL bytes: stripe s, block i at (s*K + i) * BLOCK */
    unsigned char *parity;  /* STRIPES * M * BLOCK */
    unsigned char *lost;    /* STRIPES * 2 * BLOCK: rebuilt data shards 0 and 1 */
    ec_codec *codec;
    unsigned char enc_tables[32 * K * M];
    unsigned char dec_tables[32 * K * 2];
    volatile uint32_t sink; /* keeps the CRC loops from being optimised away */
} bench;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char *blk(bench *b, unsigned s, int i) {
    if (i < K) return b->data + ((size_t)s * K + (size_t)i) * BLOCK;
    return b->parity + ((size_t)s * M + (size_t)(i - K)) * BLOCK;
}

/* Raw ISA-L tables: the same Cauchy matrix ec.c uses, for encoding, and the
 * inverse of the survivors' rows (2, 3, 4, 5) for rebuilding shards 0 and 1. */
static int build_raw_tables(bench *b) {
    unsigned char a[(K + M) * K], sub[K * K], inv[K * K];
    gf_gen_cauchy1_matrix(a, K + M, K);
    ec_init_tables(K, M, a + K * K, b->enc_tables);
    const int survivors[K] = {2, 3, 4, 5};
    for (int r = 0; r < K; r++) memcpy(sub + r * K, a + survivors[r] * K, K);
    if (gf_invert_matrix(sub, inv, K) != 0) return -1;
    ec_init_tables(K, 2, inv, b->dec_tables); /* rows 0 and 1 of the inverse */
    return 0;
}

static void encode_cairn(bench *b) {
    for (unsigned s = 0; s < STRIPES; s++) {
        unsigned char *d[K], *p[M];
        for (int i = 0; i < K; i++) d[i] = blk(b, s, i);
        for (int j = 0; j < M; j++) p[j] = blk(b, s, K + j);
        ec_encode(b->codec, BLOCK, d, p);
    }
}

static void encode_raw(bench *b) {
    for (unsigned s = 0; s < STRIPES; s++) {
        unsigned char *d[K], *p[M];
        for (int i = 0; i < K; i++) d[i] = blk(b, s, i);
        for (int j = 0; j < M; j++) p[j] = blk(b, s, K + j);
        ec_encode_data((int)BLOCK, K, M, b->enc_tables, d, p);
    }
}

/* Shards 0 and 1 lost: rebuilt into b->lost, the other four read in place. */
static void decode_cairn(bench *b) {
    const bool present[K + M] = {false, false, true, true, true, true};
    for (unsigned s = 0; s < STRIPES; s++) {
        unsigned char *sh[K + M];
        sh[0] = b->lost + (size_t)s * 2 * BLOCK;
        sh[1] = sh[0] + BLOCK;
        for (int i = 2; i < K + M; i++) sh[i] = blk(b, s, i);
        if (ec_reconstruct(b->codec, BLOCK, sh, present) != 0) b->sink = 0xdead;
    }
}

static void decode_raw(bench *b) {
    for (unsigned s = 0; s < STRIPES; s++) {
        unsigned char *src[K], *dst[2];
        for (int r = 0; r < K; r++) src[r] = blk(b, s, 2 + r);
        dst[0] = b->lost + (size_t)s * 2 * BLOCK;
        dst[1] = dst[0] + BLOCK;
        ec_encode_data((int)BLOCK, K, 2, b->dec_tables, src, dst);
    }
}

static void crc_cairn(bench *b) {
    uint32_t x = 0;
    for (size_t off = 0; off < TOTAL; off += BLOCK) x ^= ec_crc32c(0, b->data + off, BLOCK);
    b->sink = x;
}

static void crc_raw(bench *b) {
    uint32_t x = 0;
    for (size_t off = 0; off < TOTAL; off += BLOCK) x ^= ~crc32_iscsi(b->data + off, (int)BLOCK, 0xffffffffu);
    b->sink = x;
}

/* Whether the rebuilt shards 0 and 1 equal the originals. */
static bool rebuilt_ok(bench *b) {
    for (unsigned s = 0; s < STRIPES; s++)
        if (memcmp(b->lost + (size_t)s * 2 * BLOCK, blk(b, s, 0), 2 * (size_t)BLOCK) != 0) return false;
    return true;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, c = *(const double *)y;
    return (a > c) - (a < c);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* GB/s of one run: PASSES passes of fn over the 64 MiB. */
static double timed_run(bench *b, void (*fn)(bench *)) {
    double t0 = now_s();
    for (int p = 0; p < PASSES; p++) fn(b);
    return (double)TOTAL * PASSES / (now_s() - t0) / 1e9;
}

/* Median GB/s of `runs` runs of each of two functions, after one warm-up
 * call of each; the runs alternate (and alternate which goes first) so drift
 * in a shared machine's load hits both alike. */
static void measure_pair(bench *b, void (*f1)(bench *), void (*f2)(bench *), int runs, double *m1,
                         double *m2) {
    double v1[MAX_RUNS], v2[MAX_RUNS];
    f1(b);
    f2(b);
    for (int r = 0; r < runs; r++) {
        if (r % 2 == 0) {
            v1[r] = timed_run(b, f1);
            v2[r] = timed_run(b, f2);
        } else {
            v2[r] = timed_run(b, f2);
            v1[r] = timed_run(b, f1);
        }
    }
    *m1 = median(v1, runs);
    *m2 = median(v2, runs);
}

static void row(const char *what, const char *raw_name, double cairn, double raw) {
    printf("  %-28s cairn %6.2f GB/s   %-14s %6.2f GB/s   ratio %.2fx\n", what, cairn, raw_name, raw,
           raw > 0 ? cairn / raw : 0.0);
}

int main(int argc, char **argv) {
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--runs N]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "ecbench: --runs must be 1..%d\n", MAX_RUNS);
        return 2;
    }
    bench b = {0};
    if (posix_memalign((void **)&b.data, 64, TOTAL) != 0 ||
        posix_memalign((void **)&b.parity, 64, (size_t)STRIPES * M * BLOCK) != 0 ||
        posix_memalign((void **)&b.lost, 64, (size_t)STRIPES * 2 * BLOCK) != 0) {
        fprintf(stderr, "ecbench: out of memory\n");
        return 1;
    }
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < TOTAL; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(b.data + i, &x, 8);
    }
    if (ec_codec_new(K, M, &b.codec) != 0 || build_raw_tables(&b) != 0) {
        fprintf(stderr, "ecbench: cannot build the codec\n");
        return 1;
    }

    /* Correctness first: each codec rebuilds the lost shards from parity. */
    encode_cairn(&b);
    decode_cairn(&b);
    bool ok_cairn = rebuilt_ok(&b) && b.sink != 0xdead;
    memset(b.lost, 0, (size_t)STRIPES * 2 * BLOCK);
    encode_raw(&b);
    decode_raw(&b);
    bool ok_raw = rebuilt_ok(&b);
    crc_cairn(&b);
    uint32_t sum_c = b.sink;
    crc_raw(&b);
    bool ok_crc = sum_c == b.sink;

    if (!ok_cairn || !ok_raw || !ok_crc) {
        fprintf(stderr, "ecbench: WRONG RESULT: rebuilt shards differ (cairn %s, raw %s) or CRCs differ (%s)\n",
                ok_cairn ? "ok" : "bad", ok_raw ? "ok" : "bad", ok_crc ? "ok" : "bad");
        return 1;
    }

    double enc_cairn, enc_raw, dec_cairn, dec_raw, crc_c, crc_r;
    measure_pair(&b, encode_cairn, encode_raw, runs, &enc_cairn, &enc_raw);
    measure_pair(&b, decode_cairn, decode_raw, runs, &dec_cairn, &dec_raw);
    measure_pair(&b, crc_cairn, crc_raw, runs, &crc_c, &crc_r);

    printf("erasure coding, 4+2, 256 KiB blocks, 64 MiB buffer (%d passes a run), median of %d runs (GB/s = 10^9 object bytes/s):\n", PASSES, runs);
    row("encode", "raw ISA-L", enc_cairn, enc_raw);
    row("decode (2 data shards lost)", "raw ISA-L", dec_cairn, dec_raw);
    row("CRC-32C (per 256 KiB block)", "crc32_iscsi", crc_c, crc_r);

    ec_codec_free(b.codec);
    free(b.data);
    free(b.parity);
    free(b.lost);
    return 0;
}
