/*
 * kms — cairn's built-in key manager (docs/encryption.md).
 *
 * A KMS key is a name (its id: 1 .. 64 of [A-Za-z0-9_-], or an alias-like
 * "alias/NAME" is NOT accepted: ids only), a state (enabled or disabled) and
 * one or more versions of key material: 32 random bytes each, stored only
 * sealed by the master key (crypt_key_wrap under the master key with the
 * purpose "kms:<id>:<version>").  Version 1 is made with the key; a
 * rotation adds version n+1, which wraps every new data key from then on.
 * Old versions stay (objects wrapped by them still open) until the
 * background re-wrap has moved every data key to the newest version.
 *
 * SSE-S3 uses the key KMS_SSE_S3_KEY, made on first use, as AWS's SSE-S3
 * uses a key S3 owns: so rotating the master key re-seals a few key rows,
 * never an object's data key.
 *
 * Unsealed material is cached in process memory only (never in Redis),
 * for at most KMS_CACHE_MS, so a key disabled on one gateway is refused by
 * every gateway within that time.
 *
 * Thread-safe.
 */
#ifndef CAIRN_KMS_H
#define CAIRN_KMS_H

#include <stdbool.h>
#include <stdint.h>

#include "crypt/crypt.h"
#include "meta/meta.h"

#define KMS_SSE_S3_KEY "cairn-sse-s3"
#define KMS_ID_MAX 64
#define KMS_CACHE_MS 1000

typedef struct kms kms; /* struct kms: s3.h names it without this header */

/* ms and master (32 bytes, copied) stay the caller's. */
int kms_open(meta_store *ms, const uint8_t master[CRYPT_KEY], kms **out);
void kms_close(kms *k);

/* Whether id is a valid key id. */
bool kms_id_valid(const char *id);

/* Wraps dk under key_id's newest version: *version gets that version.
 * KMS_SSE_S3_KEY is created when absent.  0; CAIRN_ENOTFOUND: no such key;
 * CAIRN_EPERM: the key is disabled; CAIRN_EAUTH: its material does not
 * open under the master key; other CAIRN_E*: the metadata's error. */
int kms_wrap(kms *k, const char *key_id, const uint8_t dk[CRYPT_KEY], uint8_t wrapped[CRYPT_WRAPPED], int *version);
/* Unwraps a data key wrapped by key_id's version.  Errors as kms_wrap
 * (CAIRN_EAUTH also for a wrapped key that does not open). */
int kms_unwrap(kms *k, const char *key_id, int version, const uint8_t wrapped[CRYPT_WRAPPED],
               uint8_t dk[CRYPT_KEY]);

/* HMAC-SHA256 of msg under a key derived from key_id's material at
 * *version (0: the newest, which *version then gets; KMS_SSE_S3_KEY is
 * made when absent).  A disabled key still MACs: this checks keys (SSE-C),
 * it opens nothing.  Errors as kms_wrap but CAIRN_EPERM. */
int kms_mac(kms *k, const char *key_id, int *version, const void *msg, size_t n, uint8_t mac[32]);

/* ---- beyond the request path: the admin commands and the re-wrap job ---- */

/* kms_wrap under a given version of key_id (the re-wrap job moves data
 * keys to the version it read from the key row itself, never a cached
 * one).  Errors as kms_wrap; CAIRN_ENOTFOUND also for no such version. */
int kms_wrap_at(kms *k, const char *key_id, int version, const uint8_t dk[CRYPT_KEY],
                uint8_t wrapped[CRYPT_WRAPPED]);
/* Creates key id (kms_id_valid) with fresh material as version 1.
 * CAIRN_EINVAL for a bad id, CAIRN_EEXIST when it exists. */
int kms_key_create(kms *k, const char *id, const char *description);
/* Adds the next version of fresh material; *version gets it.  A concurrent
 * rotation that took the number is retried with the next one. */
int kms_key_rotate(kms *k, const char *id, int *version);
/* Forgets what this process cached of key id (after a change it made). */
void kms_forget(kms *k, const char *id);

/* Sealing of material under a master key with the purpose
 * "kms:<id>:<version>": 0, CAIRN_EAUTH (open: another master key, or
 * tampered), CAIRN_ENOMEM.  Thread-safe. */
int kms_material_seal(const uint8_t master[CRYPT_KEY], const char *id, int version,
                      const uint8_t material[CRYPT_KEY], uint8_t sealed[CRYPT_WRAPPED]);
int kms_material_open(const uint8_t master[CRYPT_KEY], const char *id, int version,
                      const uint8_t sealed[CRYPT_WRAPPED], uint8_t material[CRYPT_KEY]);

#endif
