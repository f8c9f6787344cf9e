/*
 * test_secrets.c — sealing secrets with the master key and generating keys:
 * round trips, wrong keys, tampering of every byte class, malformed blobs, and
 * the shape and spread of generated access keys.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <string.h>

#include "auth/auth.h"

static void setup(void) { cr_assert_eq(core_init(), 0); }

TestSuite(secrets, .init = setup);

static const uint8_t key1[AUTH_MASTER_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const uint8_t key2[AUTH_MASTER_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12};

Test(secrets, seal_open_roundtrip) {
    const char *secrets[] = {"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", "x",
                             "a much longer secret with spaces, UTF-8 \xc3\xa9 and symbols !@#$%"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        buf_t sealed, plain;
        buf_init(&sealed);
        buf_init(&plain);
        cr_assert_eq(auth_secret_seal(key1, secrets[i], &sealed), 0);
        /* nonce (24) + ciphertext + tag (16), hex */
        cr_assert_eq(sealed.len, 2 * (24 + strlen(secrets[i]) + 16));
        for (size_t k = 0; k < sealed.len; k++)
            cr_assert(isxdigit((unsigned char)sealed.data[k]) && !isupper((unsigned char)sealed.data[k]));
        cr_assert_null(strstr(sealed.data, "7MDENG"), "no plaintext in the sealed form");
        cr_assert_eq(auth_secret_open(key1, sealed.data, &plain), 0);
        cr_assert_eq(plain.len, strlen(secrets[i]));
        cr_assert_eq(memcmp(plain.data ? plain.data : "", secrets[i], plain.len), 0);
        buf_free(&sealed);
        buf_free(&plain);
    }
}

Test(secrets, every_seal_is_different) {
    buf_t a, b;
    buf_init(&a);
    buf_init(&b);
    cr_assert_eq(auth_secret_seal(key1, "same secret", &a), 0);
    cr_assert_eq(auth_secret_seal(key1, "same secret", &b), 0);
    cr_assert_str_neq(a.data, b.data, "random nonce");
    buf_free(&a);
    buf_free(&b);
}

Test(secrets, wrong_key_fails) {
    buf_t sealed, plain;
    buf_init(&sealed);
    buf_init(&plain);
    cr_assert_eq(auth_secret_seal(key1, "s3cr3t", &sealed), 0);
    cr_assert_eq(auth_secret_open(key2, sealed.data, &plain), CAIRN_EAUTH);
    cr_assert_eq(plain.len, 0, "nothing leaks out on failure");
    buf_free(&sealed);
    buf_free(&plain);
}

Test(secrets, tampering_fails_everywhere) {
    buf_t sealed, plain;
    buf_init(&sealed);
    buf_init(&plain);
    cr_assert_eq(auth_secret_seal(key1, "s3cr3t-value", &sealed), 0);
    /* Flip one hex digit in the nonce, the ciphertext and the tag. */
    size_t spots[] = {0, 47, 48, 60, sealed.len - 1};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        char *t = strdup(sealed.data);
        t[spots[i]] = t[spots[i]] == '0' ? '1' : '0';
        cr_assert_eq(auth_secret_open(key1, t, &plain), CAIRN_EAUTH, "spot %zu", spots[i]);
        free(t);
    }
    /* Truncated, extended, odd length, not hex, empty. */
    char *t = strdup(sealed.data);
    t[sealed.len - 2] = '\0';
    cr_assert_eq(auth_secret_open(key1, t, &plain), CAIRN_EAUTH);
    free(t);
    buf_t longer;
    buf_init(&longer);
    buf_printf(&longer, "%s00", sealed.data);
    cr_assert_eq(auth_secret_open(key1, longer.data, &plain), CAIRN_EAUTH);
    buf_free(&longer);
    t = strdup(sealed.data);
    t[sealed.len - 1] = '\0';
    cr_assert_eq(auth_secret_open(key1, t, &plain), CAIRN_EAUTH);
    t[3] = 'z';
    cr_assert_eq(auth_secret_open(key1, t, &plain), CAIRN_EAUTH);
    free(t);
    cr_assert_eq(auth_secret_open(key1, "", &plain), CAIRN_EAUTH);
    cr_assert_eq(auth_secret_open(key1, "00", &plain), CAIRN_EAUTH);
    cr_assert_eq(plain.len, 0);
    buf_free(&sealed);
    buf_free(&plain);
}

Test(secrets, generated_keys) {
    char ak[21], sk[41], ak2[21], sk2[41];
    int seen[256] = {0};
    for (int round = 0; round < 200; round++) {
        auth_generate_key(ak, sk);
        cr_assert_eq(strlen(ak), 20);
        cr_assert_eq(strlen(sk), 40);
        for (int i = 0; i < 20; i++)
            cr_assert(isupper((unsigned char)ak[i]) || isdigit((unsigned char)ak[i]), "ak %s", ak);
        for (int i = 0; i < 40; i++) {
            unsigned char c = (unsigned char)sk[i];
            cr_assert(isalnum(c) || c == '-' || c == '_', "secret %s", sk);
            seen[c]++;
        }
    }
    /* 8000 draws over 64 symbols: every symbol shows up. */
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (const char *p = alpha; *p; p++) cr_assert_gt(seen[(unsigned char)*p], 0, "symbol %c", *p);
    auth_generate_key(ak2, sk2);
    cr_assert_str_neq(ak, ak2);
    cr_assert_str_neq(sk, sk2);

    /* A generated secret works end to end with sealing. */
    buf_t sealed, plain;
    buf_init(&sealed);
    buf_init(&plain);
    cr_assert_eq(auth_secret_seal(key1, sk2, &sealed), 0);
    cr_assert_eq(auth_secret_open(key1, sealed.data, &plain), 0);
    cr_assert_str_eq(plain.data, sk2);
    buf_free(&sealed);
    buf_free(&plain);
}

Test(secrets, non_hex_blob_of_valid_length_fails) {
    buf_t sealed, plain;
    buf_init(&sealed);
    buf_init(&plain);
    cr_assert_eq(auth_secret_seal(key1, "s3cr3t-value", &sealed), 0);
    /* The right (even) length, one character that is not a hex digit, in the
     * nonce, the ciphertext and the tag. */
    size_t spots[] = {0, 48, sealed.len - 1};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        char *t = strdup(sealed.data);
        t[spots[i]] = 'g';
        cr_assert_eq(auth_secret_open(key1, t, &plain), CAIRN_EAUTH, "spot %zu", spots[i]);
        free(t);
    }
    cr_assert_eq(plain.len, 0);
    /* The untouched blob still opens. */
    cr_assert_eq(auth_secret_open(key1, sealed.data, &plain), 0);
    cr_assert_str_eq(plain.data, "s3cr3t-value");
    buf_free(&sealed);
    buf_free(&plain);
}
