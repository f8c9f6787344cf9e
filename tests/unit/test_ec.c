/*
 * test_ec.c — the data module's codec (src/data/ec.h): Reed-Solomon encode and
 * reconstruct, CRC-32C, and the default (k, m) per drive count.
 *
 * For every layout cairn uses, random data blocks of awkward lengths are
 * encoded; then every subset of at most m shards (data, parity or both) is
 * erased, overwritten with garbage, and ec_reconstruct must restore every
 * shard byte for byte.  Every subset of more than m must be refused with
 * CAIRN_EIO.  The CRC is checked against the standard CRC-32C check value and
 * a bit-at-a-time reference implementation, including chaining.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/ec.h"

/* Deterministic data so a failure reproduces. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_random(uint64_t *seed, unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(rng_next(seed) >> 24);
}

static const struct { int k, m; } layouts[] = {
    {1, 0}, {1, 1}, {2, 1}, {2, 2}, {3, 2}, {4, 2}, {8, 4}, {12, 4},
};
static const size_t lengths[] = {1, 7, 4096, 65537};

/* Encodes random data for (k, m, len), then erases every subset of at most m
 * shards and checks that reconstruction gives back every original byte. */
static void check_all_erasures(int k, int m, size_t len, uint64_t seed) {
    int n = k + m;
    ec_codec *c = NULL;
    cr_assert_eq(ec_codec_new(k, m, &c), 0, "codec %d+%d", k, m);
    cr_assert_eq(ec_k(c), k);
    cr_assert_eq(ec_m(c), m);
    unsigned char *orig[EC_MAX_SHARDS], *work[EC_MAX_SHARDS];
    for (int i = 0; i < n; i++) {
        orig[i] = malloc(len);
        work[i] = malloc(len);
        cr_assert(orig[i] && work[i]);
    }
    for (int i = 0; i < k; i++) fill_random(&seed, orig[i], len);
    ec_encode(c, len, orig, orig + k);

    int checked = 0;
    for (unsigned mask = 0; mask < (1u << n); mask++) {
        int erased = __builtin_popcount(mask);
        if (erased > m) continue;
        bool present[EC_MAX_SHARDS];
        for (int i = 0; i < n; i++) {
            present[i] = !(mask & (1u << i));
            if (present[i]) memcpy(work[i], orig[i], len);
            else memset(work[i], 0xA5 ^ i, len);  /* garbage the codec must overwrite */
        }
        int rc = ec_reconstruct(c, len, work, present);
        cr_assert_eq(rc, 0, "%d+%d len %zu erased mask %#x: rc %d", k, m, len, mask, rc);
        for (int i = 0; i < n; i++)
            cr_assert(memcmp(work[i], orig[i], len) == 0,
                      "%d+%d len %zu erased mask %#x: shard %d differs", k, m, len, mask, i);
        checked++;
    }
    /* 1 + n + C(n,2) + ... + C(n,m) subsets, every one visited. */
    int expect = 0;
    for (unsigned mask = 0; mask < (1u << n); mask++) expect += __builtin_popcount(mask) <= m;
    cr_assert_eq(checked, expect);
    cr_assert_gt(checked, 0);

    for (int i = 0; i < n; i++) {
        free(orig[i]);
        free(work[i]);
    }
    ec_codec_free(c);
}

Test(ec, reconstructs_every_erasure_up_to_m, .timeout = 240) {
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; li++)
        for (size_t ni = 0; ni < sizeof lengths / sizeof lengths[0]; ni++)
            check_all_erasures(layouts[li].k, layouts[li].m, lengths[ni], seed + li * 31 + ni);
}

/* More than m erased: CAIRN_EIO for every such subset, and the survivors are
 * left alone (nothing is "rebuilt" into them). */
Test(ec, refuses_more_than_m_erasures) {
    const size_t len = 64;
    for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; li++) {
        int k = layouts[li].k, m = layouts[li].m, n = k + m;
        ec_codec *c = NULL;
        cr_assert_eq(ec_codec_new(k, m, &c), 0);
        unsigned char *orig[EC_MAX_SHARDS], *work[EC_MAX_SHARDS];
        uint64_t seed = 12345 + li;
        for (int i = 0; i < n; i++) {
            orig[i] = malloc(len);
            work[i] = malloc(len);
        }
        for (int i = 0; i < k; i++) fill_random(&seed, orig[i], len);
        ec_encode(c, len, orig, orig + k);
        int refused = 0;
        for (unsigned mask = 0; mask < (1u << n); mask++) {
            if (__builtin_popcount(mask) <= m) continue;
            bool present[EC_MAX_SHARDS];
            for (int i = 0; i < n; i++) {
                present[i] = !(mask & (1u << i));
                memcpy(work[i], orig[i], len);
            }
            cr_assert_eq(ec_reconstruct(c, len, work, present), CAIRN_EIO, "%d+%d mask %#x", k, m, mask);
            for (int i = 0; i < n; i++)
                if (present[i]) cr_assert(memcmp(work[i], orig[i], len) == 0, "%d+%d mask %#x: survivor %d touched", k, m, mask, i);
            refused++;
        }
        cr_assert_gt(refused, 0, "%d+%d", k, m);
        for (int i = 0; i < n; i++) {
            free(orig[i]);
            free(work[i]);
        }
        ec_codec_free(c);
    }
}

/* Parity is not a trivial function of the data: changing one data byte
 * changes every parity block (so a stale parity cannot pass for a fresh one). */
Test(ec, every_parity_depends_on_every_data_block) {
    const int k = 4, m = 2;
    const size_t len = 128;
    ec_codec *c;
    cr_assert_eq(ec_codec_new(k, m, &c), 0);
    unsigned char buf[6][128], before[2][128];
    unsigned char *d[4] = {buf[0], buf[1], buf[2], buf[3]}, *p[2] = {buf[4], buf[5]};
    uint64_t seed = 77;
    for (int i = 0; i < k; i++) fill_random(&seed, buf[i], len);
    ec_encode(c, len, d, p);
    memcpy(before, buf[4], sizeof before);
    for (int i = 0; i < k; i++) {
        buf[i][17] ^= 0x01;
        ec_encode(c, len, d, p);
        for (int j = 0; j < m; j++) {
            cr_expect(buf[4 + j][17] != before[j][17], "parity %d ignores data %d", j, i);
            cr_expect(memcmp(buf[4 + j], before[j], 17) == 0, "parity %d changed outside the column", j);
        }
        buf[i][17] ^= 0x01;
        ec_encode(c, len, d, p);
        cr_expect(memcmp(buf[4], before, sizeof before) == 0);
    }
    ec_codec_free(c);
}

/* 1+1 is described as a mirror: its parity is the data itself. */
Test(ec, one_plus_one_is_a_mirror) {
    ec_codec *c;
    cr_assert_eq(ec_codec_new(1, 1, &c), 0);
    unsigned char a[300], b[300];
    uint64_t seed = 5;
    fill_random(&seed, a, sizeof a);
    unsigned char *d[1] = {a}, *p[1] = {b};
    ec_encode(c, sizeof a, d, p);
    cr_expect(memcmp(a, b, sizeof a) == 0);
    ec_codec_free(c);
}

Test(ec, zero_length_and_bad_parameters) {
    ec_codec *c = NULL;
    cr_expect_eq(ec_codec_new(0, 2, &c), CAIRN_EINVAL);
    cr_expect_eq(ec_codec_new(4, -1, &c), CAIRN_EINVAL);
    cr_expect_eq(ec_codec_new(13, 4, &c), CAIRN_EINVAL);
    cr_expect_eq(ec_codec_new(17, 0, &c), CAIRN_EINVAL);
    cr_assert_eq(ec_codec_new(16, 0, &c), 0);
    ec_codec_free(c);
    cr_assert_eq(ec_codec_new(12, 4, &c), 0);
    unsigned char x[16][1];
    unsigned char *s[16];
    bool present[16];
    for (int i = 0; i < 16; i++) { s[i] = x[i]; present[i] = i >= 4; }
    cr_expect_eq(ec_reconstruct(c, 0, s, present), 0);     /* 12 survivors, nothing to do */
    present[4] = false;
    cr_expect_eq(ec_reconstruct(c, 0, s, present), CAIRN_EIO); /* 11 survivors */
    ec_codec_free(c);
    ec_codec_free(NULL);
}

/* ---- CRC-32C ------------------------------------------------------------------------ */

/* Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78), the definition. */
static uint32_t crc32c_ref(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

Test(crc32c, standard_check_value) {
    cr_expect_eq(ec_crc32c(0, "123456789", 9), 0xE3069283u);
    cr_expect_eq(ec_crc32c(0, "", 0), 0u);
    /* RFC 3720 (iSCSI) B.4 test vectors. */
    unsigned char zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++) inc[i] = (unsigned char)i;
    cr_expect_eq(ec_crc32c(0, zeros, 32), 0x8A9136AAu);
    cr_expect_eq(ec_crc32c(0, ones, 32), 0x62A8AB43u);
    cr_expect_eq(ec_crc32c(0, inc, 32), 0x46DD794Eu);
}

Test(crc32c, matches_reference_and_chains) {
    enum { N = 70000 };
    unsigned char *buf = malloc(N);
    cr_assert(buf);
    uint64_t seed = 99;
    fill_random(&seed, buf, N);
    /* Every small length and alignment, plus a few long ones. */
    for (size_t off = 0; off < 16; off++)
        for (size_t len = 0; len < 300; len++)
            cr_assert_eq(ec_crc32c(0, buf + off, len), crc32c_ref(0, buf + off, len), "off %zu len %zu", off, len);
    const size_t longs[] = {4096, 65537, N};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(ec_crc32c(0, buf, longs[i]), crc32c_ref(0, buf, longs[i]), "len %zu", longs[i]);
    /* crc(a + b) == crc(crc(a), b) at every kind of split point. */
    uint32_t whole = ec_crc32c(0, buf, N);
    const size_t splits[] = {0, 1, 3, 8, 63, 64, 4095, 4096, 65536, N - 1, N};
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        size_t a = splits[i];
        cr_expect_eq(ec_crc32c(ec_crc32c(0, buf, a), buf + a, N - a), whole, "split at %zu", a);
    }
    /* Byte by byte too. */
    uint32_t c = 0;
    for (size_t i = 0; i < 5000; i++) c = ec_crc32c(c, buf + i, 1);
    cr_expect_eq(c, ec_crc32c(0, buf, 5000));
    free(buf);
}

/* ---- default layout --------------------------------------------------------------------- */

Test(ec, default_layout_per_drive_count) {
    const int want[][2] = {{1, 0}, {1, 1}, {2, 1}, {2, 2}, {3, 2}, {4, 2}, {4, 2}};
    for (int d = 1; d <= 7; d++) {
        int k = -1, m = -1;
        ec_default_layout(d, &k, &m);
        cr_expect(k == want[d - 1][0] && m == want[d - 1][1], "%d drives: %d+%d", d, k, m);
        cr_expect_leq(k + m, d);
    }
    int k, m;
    ec_default_layout(16, &k, &m);
    cr_expect(k == 4 && m == 2);
    ec_default_layout(0, &k, &m);
    cr_expect(k == 1 && m == 0);
}
