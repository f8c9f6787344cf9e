/*
 * test_crypt.c — encryption at rest's building blocks (src/crypt/): the
 * AES-256-GCM known answers (NIST's GCM test cases 13, 14 and 16), the
 * package format round trip at the sizes that matter, every tamper the
 * format must catch (a flipped byte or tag, packages reordered, swapped
 * between streams, the last one dropped, a wrong size), plaintext never
 * left behind by a failed open, and data key wrapping.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/crypt.h"

static void unhex(const char *h, uint8_t *out, size_t *n) {
    size_t l = strlen(h) / 2;
    for (size_t i = 0; i < l; i++) sscanf(h + 2 * i, "%2hhx", &out[i]);
    if (n) *n = l;
}

static void expect_hex(const uint8_t *b, size_t n, const char *want, const char *what) {
    char got[1024];
    for (size_t i = 0; i < n; i++) sprintf(got + 2 * i, "%02x", b[i]);
    got[2 * n] = '\0';
    cr_expect_str_eq(got, want, "%s", what);
}

Test(crypt, gcm_known_answers) {
    uint8_t key[32] = {0}, iv[12] = {0}, tag[16], out[64], back[64];
    /* Test Case 13: empty plaintext. */
    cr_assert_eq(crypt_gcm_seal(key, iv, NULL, 0, NULL, 0, out, tag), 0);
    expect_hex(tag, 16, "530f8afbc74536b9a963b4f1c4cb738b", "TC13 tag");
    /* Test Case 14: one zero block. */
    uint8_t zero[16] = {0};
    cr_assert_eq(crypt_gcm_seal(key, iv, NULL, 0, zero, 16, out, tag), 0);
    expect_hex(out, 16, "cea7403d4d606b6e074ec5d3baf39d18", "TC14 ciphertext");
    expect_hex(tag, 16, "d0d1c8a799996bf0265b98b5d48ab919", "TC14 tag");
    /* Test Case 16: 60 bytes with AAD. */
    uint8_t k2[32], iv2[12], p[64], aad[32];
    size_t pl, al;
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", k2, NULL);
    unhex("cafebabefacedbaddecaf888", iv2, NULL);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b1"
          "6aedf5aa0de657ba637b39",
          p, &pl);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, &al);
    cr_assert_eq(pl, 60);
    cr_assert_eq(crypt_gcm_seal(k2, iv2, aad, al, p, pl, out, tag), 0);
    expect_hex(out, 60,
               "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f6"
               "1e6393ba7a0abcc9f662",
               "TC16 ciphertext");
    expect_hex(tag, 16, "76fc6ece0f4e1768cddf8853bb2d551b", "TC16 tag");
    cr_assert_eq(crypt_gcm_open(k2, iv2, aad, al, out, 60, tag, back), 0);
    cr_assert_eq(memcmp(back, p, 60), 0);
    tag[0] ^= 1;
    cr_assert_eq(crypt_gcm_open(k2, iv2, aad, al, out, 60, tag, back), CAIRN_EAUTH);
}

/* Seals a stream of n bytes into packages; returns the sealed bytes. */
static uint8_t *seal_stream(const uint8_t key[32], const uint8_t *plain, uint64_t n, uint64_t *sealed_len) {
    uint64_t np = crypt_packages(n), total = crypt_sealed_size(n);
    uint8_t *out = malloc(total ? total : 1);
    cr_assert_not_null(out);
    uint64_t off = 0, pos = 0;
    for (uint64_t i = 0; i < np; i++) {
        size_t len = (size_t)(n - pos < CRYPT_PACKAGE ? n - pos : CRYPT_PACKAGE);
        cr_assert_eq(crypt_package_seal(key, i, i == np - 1, plain + pos, len, out + off), 0);
        pos += len;
        off += len + CRYPT_TAG;
    }
    cr_assert_eq(off, total);
    *sealed_len = total;
    return out;
}

Test(crypt, packages_round_trip_at_every_boundary) {
    uint8_t key[32];
    crypt_key_new(key);
    static const uint64_t sizes[] = {0, 1, 15, 16, 65535, 65536, 65537, 3 * 65536, 3 * 65536 + 100};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint64_t n = sizes[s], total;
        uint8_t *plain = malloc(n ? n : 1);
        for (uint64_t i = 0; i < n; i++) plain[i] = (uint8_t)(i * 31 + s);
        uint8_t *sealed = seal_stream(key, plain, n, &total);
        cr_expect_eq(total, n + crypt_packages(n) * 16, "%llu", (unsigned long long)n);
        /* Open each package, as a range read does. */
        uint64_t np = crypt_packages(n), off = 0, pos = 0;
        uint8_t *back = malloc(CRYPT_PACKAGE);
        for (uint64_t i = 0; i < np; i++) {
            size_t len = (size_t)(n - pos < CRYPT_PACKAGE ? n - pos : CRYPT_PACKAGE);
            cr_assert_eq(crypt_package_open(key, i, i == np - 1, sealed + off, len + 16, back), 0, "size %llu, package %llu",
                         (unsigned long long)n, (unsigned long long)i);
            cr_assert_eq(memcmp(back, plain + pos, len), 0);
            pos += len;
            off += len + 16;
        }
        free(back);
        free(sealed);
        free(plain);
    }
}

Test(crypt, every_tamper_fails_and_leaves_no_plaintext) {
    uint8_t key[32], other[32];
    crypt_key_new(key);
    crypt_key_new(other);
    uint64_t n = 2 * CRYPT_PACKAGE + 1000, total;
    uint8_t *plain = malloc(n);
    memset(plain, 'p', n);
    uint8_t *sealed = seal_stream(key, plain, n, &total);
    uint8_t *out = malloc(CRYPT_PACKAGE);
    const size_t P = CRYPT_PACKAGE + 16;
    /* A flipped byte of a package, and of its tag. */
    sealed[100] ^= 0x40;
    memset(out, 'x', CRYPT_PACKAGE);
    cr_expect_eq(crypt_package_open(key, 0, false, sealed, P, out), CAIRN_EAUTH);
    bool zeroed = true;
    for (size_t i = 0; i < CRYPT_PACKAGE; i++) zeroed = zeroed && out[i] == 0;
    cr_expect(zeroed, "a package that fails leaves no plaintext behind");
    sealed[100] ^= 0x40;
    sealed[P - 1] ^= 1;
    cr_expect_eq(crypt_package_open(key, 0, false, sealed, P, out), CAIRN_EAUTH);
    sealed[P - 1] ^= 1;
    cr_expect_eq(crypt_package_open(key, 0, false, sealed, P, out), 0);
    /* Reordered: package 1's bytes where 0 is expected. */
    cr_expect_eq(crypt_package_open(key, 0, false, sealed + P, P, out), CAIRN_EAUTH);
    /* Swapped between streams: another stream's key. */
    cr_expect_eq(crypt_package_open(other, 0, false, sealed, P, out), CAIRN_EAUTH);
    /* Truncated: the last package dropped, package 1 read as the last. */
    cr_expect_eq(crypt_package_open(key, 1, true, sealed + P, P, out), CAIRN_EAUTH);
    /* The last one read as not last (a stream extended). */
    cr_expect_eq(crypt_package_open(key, 2, false, sealed + 2 * P, 1000 + 16, out), CAIRN_EAUTH);
    cr_expect_eq(crypt_package_open(key, 2, true, sealed + 2 * P, 1000 + 16, out), 0);
    /* A package cut short inside. */
    cr_expect_eq(crypt_package_open(key, 2, true, sealed + 2 * P, 1000 + 15, out), CAIRN_EAUTH);
    /* Sizes no package has. */
    cr_expect_eq(crypt_package_open(key, 0, true, sealed, 15, out), CAIRN_EINVAL);
    cr_expect_eq(crypt_package_open(key, 0, true, sealed, P + 1, out), CAIRN_EINVAL);
    free(out);
    free(sealed);
    free(plain);
}

Test(crypt, data_keys_are_wrapped_under_their_kek_and_purpose) {
    uint8_t kek[32], kek2[32], dk[32], back[32], w1[CRYPT_WRAPPED], w2[CRYPT_WRAPPED];
    crypt_key_new(kek);
    crypt_key_new(kek2);
    crypt_key_new(dk);
    cr_assert_eq(crypt_key_wrap(kek, "sse-s3", dk, w1), 0);
    cr_assert_eq(crypt_key_wrap(kek, "sse-s3", dk, w2), 0);
    cr_expect_neq(memcmp(w1, w2, CRYPT_WRAPPED), 0, "a fresh nonce each time");
    cr_expect_eq(memmem(w1, CRYPT_WRAPPED, dk, 32), NULL, "the key is never stored in the clear");
    cr_assert_eq(crypt_key_unwrap(kek, "sse-s3", w1, back), 0);
    cr_expect_eq(memcmp(back, dk, 32), 0);
    cr_expect_eq(crypt_key_unwrap(kek2, "sse-s3", w1, back), CAIRN_EAUTH, "another KEK");
    cr_expect_eq(crypt_key_unwrap(kek, "kms:other", w1, back), CAIRN_EAUTH, "another purpose");
    w1[20] ^= 1;
    cr_expect_eq(crypt_key_unwrap(kek, "sse-s3", w1, back), CAIRN_EAUTH, "tampered");
}

Test(crypt, stored_descriptions_round_trip_and_refuse_damage) {
    crypt_sse d = {.mode = 'K', .key_version = 3};
    snprintf(d.key_id, sizeof d.key_id, "%s", "orders-key");
    for (int i = 0; i < CRYPT_WRAPPED; i++) d.wrapped[i] = (uint8_t)i;
    char s[CRYPT_SSE_MAX];
    cr_assert_eq(crypt_sse_format(&d, s, sizeof s), 0);
    crypt_sse back;
    cr_assert_eq(crypt_sse_parse(s, &back), 0, "%s", s);
    cr_expect_eq(back.mode, 'K');
    cr_expect_str_eq(back.key_id, "orders-key");
    cr_expect_eq(back.key_version, 3);
    cr_expect(!memcmp(back.wrapped, d.wrapped, CRYPT_WRAPPED));
    cr_expect(!back.has_mac);
    /* SSE-C: no key id, a MAC */
    crypt_sse c = {.mode = 'C', .has_mac = true, .key_version = 1};
    snprintf(c.key_id, sizeof c.key_id, "%s", "cairn-sse-s3");
    memset(c.mac, 0xab, sizeof c.mac);
    cr_assert_eq(crypt_sse_format(&c, s, sizeof s), 0);
    cr_assert_eq(crypt_sse_parse(s, &back), 0, "%s", s);
    cr_expect(back.has_mac && back.mac[31] == 0xab && !strcmp(back.key_id, "cairn-sse-s3"));
    /* too little room, an unknown mode */
    cr_expect_eq(crypt_sse_format(&d, s, 20), CAIRN_EINVAL);
    crypt_sse x = d;
    x.mode = 'Z';
    cr_expect_eq(crypt_sse_format(&x, s, sizeof s), CAIRN_EINVAL);
    /* damage: every one refused */
    char good[CRYPT_SSE_MAX];
    crypt_sse_format(&d, good, sizeof good);
    char w[2 * CRYPT_WRAPPED + 1];
    memset(w, 'a', sizeof w - 1);
    w[sizeof w - 1] = '\0';
    char bad[12][CRYPT_SSE_MAX];
    snprintf(bad[0], sizeof bad[0], "v2%s", good + 2);
    snprintf(bad[1], sizeof bad[1], "v1:X%s", good + 4);
    snprintf(bad[2], sizeof bad[2], "v1:K:k:-1:%s:", w);
    snprintf(bad[3], sizeof bad[3], "v1:K:k:0:%s:", w);                 /* versions start at 1 */
    snprintf(bad[4], sizeof bad[4], "v1:K:k:1:%.119s:", w);           /* wrapped key cut short */
    snprintf(bad[5], sizeof bad[5], "v1:K:k:1:%sz:", w);
    snprintf(bad[6], sizeof bad[6], "v1:K::1:%s:", w);                  /* KMS without a key id */
    snprintf(bad[7], sizeof bad[7], "v1:C:k:1:%s:", w);                 /* SSE-C without its MAC */
    snprintf(bad[8], sizeof bad[8], "v1:K:k:1:%s:%.64s", w, w);         /* KMS with a MAC */
    snprintf(bad[9], sizeof bad[9], "v1:C:k:1:%s:%.63s", w, w);         /* MAC cut short */
    snprintf(bad[10], sizeof bad[10], "v1:K:k:1:%s", w);               /* no MAC field at all */
    snprintf(bad[11], sizeof bad[11], "v1:C::1:%s:%.64s", w, w);         /* SSE-C without the MAC's key */
    for (int i = 0; i < 12; i++) cr_expect_eq(crypt_sse_parse(bad[i], &back), CAIRN_EINVAL, "accepted %s", bad[i]);
    cr_expect_eq(crypt_sse_parse(NULL, &back), CAIRN_EINVAL);
    cr_expect_eq(crypt_sse_parse("", &back), CAIRN_EINVAL);
}

Test(crypt, part_keys_differ_per_part_upload) {
    uint8_t up[CRYPT_KEY], a[CRYPT_KEY], b[CRYPT_KEY], a2[CRYPT_KEY], other[CRYPT_KEY];
    memset(up, 7, sizeof up);
    crypt_part_key(up, "00000000000000000000000000000001", a);
    crypt_part_key(up, "00000000000000000000000000000002", b);
    crypt_part_key(up, "00000000000000000000000000000001", a2);
    up[0] ^= 1;
    crypt_part_key(up, "00000000000000000000000000000001", other);
    cr_expect(memcmp(a, b, CRYPT_KEY) != 0, "a part uploaded again (a new version id) gets a new key");
    cr_expect(!memcmp(a, a2, CRYPT_KEY), "derivation is deterministic");
    cr_expect(memcmp(a, other, CRYPT_KEY) != 0, "another upload's key derives another part key");
    /* HMAC-SHA256, RFC 4231 test case 2 */
    uint8_t mac[32];
    crypt_hmac((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, mac);
    expect_hex(mac, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "hmac");
}
