/*
 * sse.c — the package format and key wrapping of crypt.h, over OpenSSL's
 * AES-256-GCM (EVP).  crypt.h says what is bound where, and why.
 */
#include "crypt/crypt.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

static const char AAD_PREFIX[] = "cairn-sse-v1";
#define AAD_PREFIX_LEN (sizeof AAD_PREFIX - 1)

uint64_t crypt_packages(uint64_t n) { return n == 0 ? 1 : (n + CRYPT_PACKAGE - 1) / CRYPT_PACKAGE; }

uint64_t crypt_sealed_size(uint64_t n) { return n + crypt_packages(n) * CRYPT_TAG; }

/* AES-256-GCM fetched once: OpenSSL 3 looks a legacy EVP_aes_256_gcm() up
 * in its provider tables (locks and all) on every init, which costs a
 * small object's GET more than the cipher does. */
static EVP_CIPHER *gcm_cipher;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;
/* Each thread keeps one context (freed when it exits): a new one per call
 * allocates the provider's context again every time. */
static pthread_key_t gcm_ctx_key;
static bool gcm_ctx_key_ok;
static void gcm_ctx_free(void *c) { EVP_CIPHER_CTX_free(c); }
static void gcm_fetch(void) {
    gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    gcm_ctx_key_ok = pthread_key_create(&gcm_ctx_key, gcm_ctx_free) == 0;
}

static EVP_CIPHER_CTX *gcm_ctx(void) {
    if (!gcm_ctx_key_ok) return EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX *c = pthread_getspecific(gcm_ctx_key);
    if (c) return c;
    c = EVP_CIPHER_CTX_new();
    if (c && pthread_setspecific(gcm_ctx_key, c) != 0) {
        EVP_CIPHER_CTX_free(c);
        c = NULL;
    }
    return c;
}

static int gcm(bool seal, const uint8_t key[CRYPT_KEY], const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
               const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[CRYPT_TAG]) {
    pthread_once(&gcm_once, gcm_fetch);
    const EVP_CIPHER *cipher = gcm_cipher ? gcm_cipher : EVP_aes_256_gcm();
    EVP_CIPHER_CTX *c = gcm_ctx();
    if (!c) return CAIRN_ENOMEM;
    int len = 0, rc = CAIRN_ENOMEM;
    /* A context that has the cipher keeps its provider context: only the
     * key and nonce are set again. */
    if (EVP_CIPHER_CTX_get0_cipher(c) == cipher) cipher = NULL;
    bool ok = (seal ? EVP_EncryptInit_ex(c, cipher, NULL, key, iv) : EVP_DecryptInit_ex(c, cipher, NULL, key, iv)) == 1;
    if (ok && aadlen)
        ok = (seal ? EVP_EncryptUpdate(c, NULL, &len, aad, (int)aadlen) : EVP_DecryptUpdate(c, NULL, &len, aad, (int)aadlen)) == 1;
    if (ok && n)
        ok = (seal ? EVP_EncryptUpdate(c, out, &len, in, (int)n) : EVP_DecryptUpdate(c, out, &len, in, (int)n)) == 1;
    if (ok && seal) {
        ok = EVP_EncryptFinal_ex(c, out + n, &len) == 1 && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG, tag) == 1;
        rc = ok ? 0 : CAIRN_ENOMEM;
    } else if (ok) {
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG, tag) == 1;
        rc = ok && EVP_DecryptFinal_ex(c, out + n, &len) == 1 ? 0 : CAIRN_EAUTH;
        if (rc != 0 && n) OPENSSL_cleanse(out, n); /* never plaintext that did not authenticate */
    }
    /* The thread's context keeps the last key schedule until its next use
     * or the thread's end; a failure gives it up (it may be half set). */
    if (!gcm_ctx_key_ok || !ok) {
        if (gcm_ctx_key_ok) pthread_setspecific(gcm_ctx_key, NULL);
        EVP_CIPHER_CTX_free(c);
    }
    return rc;
}

int crypt_gcm_seal(const uint8_t key[CRYPT_KEY], const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                   const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[CRYPT_TAG]) {
    return gcm(true, key, iv, aad, aadlen, in, n, out, tag);
}

int crypt_gcm_open(const uint8_t key[CRYPT_KEY], const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                   const uint8_t *in, size_t n, const uint8_t tag[CRYPT_TAG], uint8_t *out) {
    return gcm(false, key, iv, aad, aadlen, in, n, out, (uint8_t *)tag);
}

static void be64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void package_iv_aad(uint64_t index, bool last, uint8_t iv[12], uint8_t aad[AAD_PREFIX_LEN + 9]) {
    iv[0] = 0x63, iv[1] = 0x61, iv[2] = 0x69, iv[3] = 0x72;
    be64(iv + 4, index);
    memcpy(aad, AAD_PREFIX, AAD_PREFIX_LEN);
    be64(aad + AAD_PREFIX_LEN, index);
    aad[AAD_PREFIX_LEN + 8] = last ? 1 : 0;
}

int crypt_package_seal(const uint8_t key[CRYPT_KEY], uint64_t index, bool last, const uint8_t *in, size_t n,
                       uint8_t *out) {
    assert(n <= CRYPT_PACKAGE);
    uint8_t iv[12], aad[AAD_PREFIX_LEN + 9];
    package_iv_aad(index, last, iv, aad);
    return gcm(true, key, iv, aad, sizeof aad, in, n, out, out + n);
}

int crypt_package_open(const uint8_t key[CRYPT_KEY], uint64_t index, bool last, const uint8_t *in, size_t n,
                       uint8_t *out) {
    if (n < CRYPT_TAG || n > CRYPT_PACKAGE + CRYPT_TAG) return CAIRN_EINVAL;
    uint8_t iv[12], aad[AAD_PREFIX_LEN + 9];
    package_iv_aad(index, last, iv, aad);
    return gcm(false, key, iv, aad, sizeof aad, in, n - CRYPT_TAG, out, (uint8_t *)in + n - CRYPT_TAG);
}

void crypt_key_new(uint8_t key[CRYPT_KEY]) { randombytes_buf(key, CRYPT_KEY); }

int crypt_key_wrap(const uint8_t kek[CRYPT_KEY], const char *purpose, const uint8_t dk[CRYPT_KEY],
                   uint8_t out[CRYPT_WRAPPED]) {
    randombytes_buf(out, 12);
    return gcm(true, kek, out, (const uint8_t *)purpose, strlen(purpose), dk, CRYPT_KEY, out + 12, out + 12 + CRYPT_KEY);
}

int crypt_key_unwrap(const uint8_t kek[CRYPT_KEY], const char *purpose, const uint8_t in[CRYPT_WRAPPED],
                     uint8_t dk[CRYPT_KEY]) {
    return gcm(false, kek, in, (const uint8_t *)purpose, strlen(purpose), in + 12, CRYPT_KEY, dk,
               (uint8_t *)in + 12 + CRYPT_KEY);
}

/* ---- the stored description of a sealed version ------------------------------------------ */

void crypt_hmac(const uint8_t *key, size_t keylen, const void *msg, size_t n, uint8_t out[32]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, msg, n);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

void crypt_part_key(const uint8_t upload_key[CRYPT_KEY], const char *part_version_id, uint8_t out[CRYPT_KEY]) {
    char msg[80];
    int n = snprintf(msg, sizeof msg, "cairn-part%s", part_version_id);
    crypt_hmac(upload_key, CRYPT_KEY, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1, out);
}

int crypt_sse_format(const crypt_sse *s, char *out, size_t n) {
    char w[2 * CRYPT_WRAPPED + 1], m[65] = "";
    hex_encode(s->wrapped, CRYPT_WRAPPED, w);
    if (s->has_mac) hex_encode(s->mac, sizeof s->mac, m);
    if (s->mode != 'S' && s->mode != 'K' && s->mode != 'C') return CAIRN_EINVAL;
    int len = snprintf(out, n, "v1:%c:%s:%d:%s:%s", s->mode, s->key_id, s->key_version, w, m);
    return len > 0 && (size_t)len < n ? 0 : CAIRN_EINVAL;
}

int crypt_sse_parse(const char *text, crypt_sse *out) {
    memset(out, 0, sizeof *out);
    if (!text || strncmp(text, "v1:", 3) != 0) return CAIRN_EINVAL;
    const char *p = text + 3;
    if ((*p != 'S' && *p != 'K' && *p != 'C') || p[1] != ':') return CAIRN_EINVAL;
    out->mode = *p;
    p += 2;
    size_t idl = strcspn(p, ":");
    if (p[idl] != ':' || idl >= sizeof out->key_id) return CAIRN_EINVAL;
    memcpy(out->key_id, p, idl);
    p += idl + 1;
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || *end != ':' || v < 0 || v > 1000000) return CAIRN_EINVAL;
    out->key_version = (int)v;
    p = end + 1;
    size_t wl = strcspn(p, ":"), got = 0;
    if (p[wl] != ':' || wl != 2 * CRYPT_WRAPPED || hex_decode(p, wl, out->wrapped, CRYPT_WRAPPED, &got) != 0 ||
        got != CRYPT_WRAPPED)
        return CAIRN_EINVAL;
    p += wl + 1;
    size_t ml = strlen(p);
    if (ml) {
        if (ml != 64 || hex_decode(p, ml, out->mac, sizeof out->mac, &got) != 0 || got != sizeof out->mac)
            return CAIRN_EINVAL;
        out->has_mac = true;
    }
    if (!out->key_id[0] || out->key_version < 1 || (out->mode == 'C') != out->has_mac) return CAIRN_EINVAL;
    return 0;
}
