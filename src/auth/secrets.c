/*
 * secrets.c — access-key secrets at rest, and new access keys.
 *
 * SigV4 needs the plaintext secret to verify a signature, so secrets cannot be
 * hashed like passwords; they are sealed with the master key instead.  A sealed
 * secret is hex(nonce || ciphertext || tag) with XChaCha20-Poly1305 (libsodium,
 * IETF variant): the 192-bit nonce is random for every seal, large enough that
 * random nonces never collide, and the tag makes any change to the stored text
 * (or a wrong master key) fail to open rather than yield garbage.  Hex keeps
 * the result safe in a TEXT column.
 *
 * Thread-safe; plaintext copies made here are wiped before they are freed.
 */
#include "auth/auth.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES

int auth_secret_seal(const uint8_t key[AUTH_MASTER_KEY_LEN], const char *secret, buf_t *out) {
    size_t n = strlen(secret);
    size_t blob_len = NONCE_LEN + n + TAG_LEN;
    unsigned char *blob = malloc(blob_len);
    char *hex = malloc(2 * blob_len + 1);
    if (!blob || !hex) {
        free(blob);
        free(hex);
        return CAIRN_ENOMEM;
    }
    rand_bytes(blob, NONCE_LEN);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(blob + NONCE_LEN, &clen, (const unsigned char *)secret,
                                               n, NULL, 0, NULL, blob, key);
    hex_encode(blob, NONCE_LEN + (size_t)clen, hex);
    buf_puts(out, hex);
    free(blob);
    free(hex);
    return out->oom ? CAIRN_ENOMEM : 0;
}

int auth_secret_open(const uint8_t key[AUTH_MASTER_KEY_LEN], const char *sealed, buf_t *out) {
    size_t hl = strlen(sealed);
    if (hl % 2 || hl / 2 < NONCE_LEN + TAG_LEN) return CAIRN_EAUTH;
    size_t blob_len = hl / 2;
    unsigned char *blob = malloc(blob_len);
    unsigned char *plain = malloc(blob_len); /* >= plaintext length + 1 */
    if (!blob || !plain) {
        free(blob);
        free(plain);
        return CAIRN_ENOMEM;
    }
    int rc = CAIRN_EAUTH;
    unsigned long long plen = 0;
    if (hex_decode(sealed, hl, blob, blob_len, NULL) == 0 &&
        crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, blob + NONCE_LEN,
                                                   blob_len - NONCE_LEN, NULL, 0, blob, key) == 0) {
        buf_append(out, plain, (size_t)plen);
        rc = out->oom ? CAIRN_ENOMEM : 0;
    }
    sodium_memzero(plain, blob_len);
    free(blob);
    free(plain);
    return rc;
}

/* Fills out[0..n) with characters drawn uniformly from alphabet (len <= 256),
 * rejecting the random bytes that would bias the modulo. */
static void random_string(char *out, size_t n, const char *alphabet) {
    size_t alen = strlen(alphabet);
    unsigned limit = 256 - 256 % (unsigned)alen;
    size_t i = 0;
    unsigned char r[64];
    while (i < n) {
        rand_bytes(r, sizeof r);
        for (size_t k = 0; k < sizeof r && i < n; k++)
            if (r[k] < limit) out[i++] = alphabet[r[k] % alen];
    }
    out[n] = '\0';
    sodium_memzero(r, sizeof r);
}

void auth_generate_key(char access_key[21], char secret[41]) {
    random_string(access_key, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    /* base64url alphabet: 240 bits, and no character a shell, URL or INI file
     * treats specially (AWS's '+' and '/' trip some tools). */
    random_string(secret, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
}
