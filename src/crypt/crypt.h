/*
 * crypt — encryption at rest (docs/encryption.md, decision 0027): the
 * package format object bytes are sealed in, and the wrapping of data keys.
 *
 * A stream (one object version, or one upload of one part) is sealed with a
 * data key of its own, 32 random bytes, never reused: so a part uploaded
 * again, or a copy, gets a new key and no nonce is ever used twice under
 * one key.  The plaintext is cut into packages of CRYPT_PACKAGE bytes (the
 * last may be shorter, or empty for an empty stream); package i is sealed
 * with AES-256-GCM under the data key, with
 *
 *   nonce = "cair" (4 bytes) || i (8 bytes, big-endian)
 *   AAD   = "cairn-sse-v1" || i (8 bytes, big-endian) || last (1 byte)
 *
 * and stored as its ciphertext followed by its 16-byte tag.  Binding the
 * index makes reordering fail, binding "last" makes dropping trailing
 * packages fail (the new last one was sealed as not last), and a key per
 * stream makes swapping packages between streams fail.  A range read opens
 * only the packages it needs.
 *
 * Data keys are wrapped by a key-encryption key (the master key's, or a KMS
 * key's) with AES-256-GCM under a random nonce: nonce || ciphertext || tag,
 * CRYPT_WRAPPED bytes, with the purpose as AAD.
 *
 * Everything here is thread-safe and allocates nothing but OpenSSL's
 * per-call contexts.
 */
#ifndef CAIRN_CRYPT_H
#define CAIRN_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define CRYPT_KEY 32
#define CRYPT_TAG 16
#define CRYPT_PACKAGE 65536
#define CRYPT_WRAPPED (12 + CRYPT_KEY + CRYPT_TAG)

/* Bytes stored for a plaintext of n bytes (every package with its tag; an
 * empty stream is one empty package). */
uint64_t crypt_sealed_size(uint64_t n);
/* Packages of a plaintext of n bytes (at least 1). */
uint64_t crypt_packages(uint64_t n);

/* Seals package index (n plaintext bytes, n <= CRYPT_PACKAGE) into out
 * (n + CRYPT_TAG bytes).  0 or CAIRN_ENOMEM. */
int crypt_package_seal(const uint8_t key[CRYPT_KEY], uint64_t index, bool last, const uint8_t *in, size_t n,
                       uint8_t *out);
/* Opens a sealed package (n bytes, tag included) into out (n - CRYPT_TAG
 * bytes).  0, CAIRN_EAUTH when it does not authenticate (a flipped byte,
 * another index or stream, a last flag that differs), CAIRN_EINVAL for a
 * size no package has, CAIRN_ENOMEM.  out holds nothing usable on failure
 * (it is zeroed). */
int crypt_package_open(const uint8_t key[CRYPT_KEY], uint64_t index, bool last, const uint8_t *in, size_t n,
                       uint8_t *out);

/* A fresh data key. */
void crypt_key_new(uint8_t key[CRYPT_KEY]);
/* Wraps dk under kek for purpose (bound as AAD: "sse-s3", a KMS key id...).
 * 0 or CAIRN_ENOMEM. */
int crypt_key_wrap(const uint8_t kek[CRYPT_KEY], const char *purpose, const uint8_t dk[CRYPT_KEY],
                   uint8_t out[CRYPT_WRAPPED]);
/* 0, or CAIRN_EAUTH (another kek or purpose, or tampered), CAIRN_ENOMEM. */
int crypt_key_unwrap(const uint8_t kek[CRYPT_KEY], const char *purpose, const uint8_t in[CRYPT_WRAPPED],
                     uint8_t dk[CRYPT_KEY]);

/* AES-256-GCM itself, for the known-answer tests: 0 or CAIRN_ENOMEM /
 * CAIRN_EAUTH (open). */
int crypt_gcm_seal(const uint8_t key[CRYPT_KEY], const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                   const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[CRYPT_TAG]);
int crypt_gcm_open(const uint8_t key[CRYPT_KEY], const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                   const uint8_t *in, size_t n, const uint8_t tag[CRYPT_TAG], uint8_t *out);

/*
 * How a version (or a multipart upload, whose parts share it) is sealed,
 * as kept in its headers_json under CRYPT_SSE_MEMBER, a member no
 * response sends:
 *
 *   "v1:<mode>:<key id>:<key version>:<wrapped data key, hex>:<key MAC, hex>"
 *
 * mode 'S' (SSE-S3) and 'K' (SSE-KMS): the data key wrapped by the KMS
 * key <key id> at <key version> (kms.h); no MAC.  mode 'C' (SSE-C): the
 * data key wrapped by the customer's key (purpose "sse-c"), and a MAC of
 * the customer's key under the KMS key <key id> at <key version>
 * (kms_mac), so a wrong key is refused before anything is read.  A KMS
 * key's material survives a master key rotation (it is re-sealed, not
 * changed), so the MAC does too.  The data key of a whole object's
 * bytes is this key; a multipart part's is crypt_part_key of it and the
 * part's own version id, so a part uploaded again gets a new key.
 */
#define CRYPT_SSE_MEMBER "cairn-sse"
#define CRYPT_SSE_MAX 320               /* formatted, with NUL */
typedef struct {
    char mode;                          /* 'S', 'K' or 'C' */
    char key_id[65];
    int key_version;
    uint8_t wrapped[CRYPT_WRAPPED];
    bool has_mac;
    uint8_t mac[32];
} crypt_sse;
/* 0 or CAIRN_EINVAL (too long: never with a valid key id). */
int crypt_sse_format(const crypt_sse *s, char *out, size_t n);
/* 0 or CAIRN_EINVAL for anything that is not the format above. */
int crypt_sse_parse(const char *text, crypt_sse *out);
/* The data key of a multipart part: HMAC-SHA256(upload key, "cairn-part" ||
 * part version id). */
void crypt_part_key(const uint8_t upload_key[CRYPT_KEY], const char *part_version_id, uint8_t out[CRYPT_KEY]);
/* HMAC-SHA256(key, msg) into out. */
void crypt_hmac(const uint8_t *key, size_t keylen, const void *msg, size_t n, uint8_t out[32]);

#endif
