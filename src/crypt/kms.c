/*
 * kms.c — the built-in key manager (kms.h, docs/kms.md).
 *
 * Two small caches in process memory, under one mutex:
 *
 *   - key rows (id, enabled, newest version), each trusted for at most
 *     KMS_CACHE_MS after it was read: every wrap and unwrap needs a fresh
 *     enough row, so a key disabled (or rotated) on any gateway is seen by
 *     every gateway within that time;
 *   - unsealed material per (id, version).  A version's material never
 *     changes (a master key rotation re-seals it, the bytes stay), so an
 *     entry is kept until it is evicted; the enabled check above is what
 *     bounds how long it is used.
 *
 * Both hold KMS_CACHE_SLOTS entries and evict the least recently used.
 * Material is wiped (OPENSSL_cleanse) on eviction, on kms_forget and at
 * close.  Metadata is read outside the mutex: two threads that miss at once
 * both read, and the second insert replaces the first (same content).
 *
 * KMS_SSE_S3_KEY is made by the first kms_wrap that finds it absent; two
 * gateways racing to make it settle on the primary key: the loser's insert
 * is CAIRN_EEXIST and it reads the winner's row.
 */
#include "crypt/kms.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define KMS_CACHE_SLOTS 64

typedef struct {
    bool used;
    char id[KMS_ID_MAX + 1];
    bool enabled;
    int version;               /* the newest */
    int64_t read_ms;           /* monotonic: when the row was read */
    uint64_t last_use;
} row_entry;

typedef struct {
    bool used;
    char id[KMS_ID_MAX + 1];
    int version;
    uint8_t material[CRYPT_KEY];
    uint64_t last_use;
} material_entry;

struct kms {
    meta_store *ms;
    uint8_t master[CRYPT_KEY];
    pthread_mutex_t mu;        /* guards everything below */
    uint64_t clock;            /* use counter for LRU */
    row_entry rows[KMS_CACHE_SLOTS];
    material_entry mats[KMS_CACHE_SLOTS];
};

static int64_t mono_ms(void) { return time_mono_ns() / 1000000; }

bool kms_id_valid(const char *id) {
    if (!id) return false;
    size_t n = strnlen(id, KMS_ID_MAX + 1);
    if (n == 0 || n > KMS_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

int kms_open(meta_store *ms, const uint8_t master[CRYPT_KEY], kms **out) {
    *out = NULL;
    if (!ms || !master) return CAIRN_EINVAL;
    kms *k = calloc(1, sizeof *k);
    if (!k) return CAIRN_ENOMEM;
    k->ms = ms;
    memcpy(k->master, master, CRYPT_KEY);
    pthread_mutex_init(&k->mu, NULL);
    *out = k;
    return 0;
}

void kms_close(kms *k) {
    if (!k) return;
    OPENSSL_cleanse(k->mats, sizeof k->mats);
    OPENSSL_cleanse(k->master, sizeof k->master);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

static void purpose(char *out, size_t n, const char *what, const char *id, int version) {
    int w = snprintf(out, n, "%s:%s:%d", what, id, version);
    assert(w > 0 && (size_t)w < n);
    (void)w;
}

int kms_material_seal(const uint8_t master[CRYPT_KEY], const char *id, int version,
                      const uint8_t material[CRYPT_KEY], uint8_t sealed[CRYPT_WRAPPED]) {
    char p[KMS_ID_MAX + 32];
    purpose(p, sizeof p, "kms", id, version);
    return crypt_key_wrap(master, p, material, sealed);
}

int kms_material_open(const uint8_t master[CRYPT_KEY], const char *id, int version,
                      const uint8_t sealed[CRYPT_WRAPPED], uint8_t material[CRYPT_KEY]) {
    char p[KMS_ID_MAX + 32];
    purpose(p, sizeof p, "kms", id, version);
    return crypt_key_unwrap(master, p, sealed, material);
}

/* ---- the caches (callers hold mu) ---- */

static row_entry *row_find(kms *k, const char *id) {
    for (int i = 0; i < KMS_CACHE_SLOTS; i++)
        if (k->rows[i].used && !strcmp(k->rows[i].id, id)) return &k->rows[i];
    return NULL;
}

static void row_put(kms *k, const meta_kms_key *row) {
    row_entry *e = row_find(k, row->id);
    if (!e) {
        e = &k->rows[0];
        for (int i = 0; i < KMS_CACHE_SLOTS; i++) {
            if (!k->rows[i].used) {
                e = &k->rows[i];
                break;
            }
            if (k->rows[i].last_use < e->last_use) e = &k->rows[i];
        }
    }
    e->used = true;
    snprintf(e->id, sizeof e->id, "%s", row->id);
    e->enabled = row->enabled;
    e->version = row->version;
    e->read_ms = mono_ms();
    e->last_use = ++k->clock;
}

static material_entry *mat_find(kms *k, const char *id, int version) {
    for (int i = 0; i < KMS_CACHE_SLOTS; i++)
        if (k->mats[i].used && k->mats[i].version == version && !strcmp(k->mats[i].id, id)) return &k->mats[i];
    return NULL;
}

static void mat_put(kms *k, const char *id, int version, const uint8_t material[CRYPT_KEY]) {
    material_entry *e = mat_find(k, id, version);
    if (!e) {
        e = &k->mats[0];
        for (int i = 0; i < KMS_CACHE_SLOTS; i++) {
            if (!k->mats[i].used) {
                e = &k->mats[i];
                break;
            }
            if (k->mats[i].last_use < e->last_use) e = &k->mats[i];
        }
        OPENSSL_cleanse(e, sizeof *e); /* the evicted material */
    }
    e->used = true;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->version = version;
    memcpy(e->material, material, CRYPT_KEY);
    e->last_use = ++k->clock;
}

void kms_forget(kms *k, const char *id) {
    pthread_mutex_lock(&k->mu);
    for (int i = 0; i < KMS_CACHE_SLOTS; i++) {
        if (k->rows[i].used && !strcmp(k->rows[i].id, id)) memset(&k->rows[i], 0, sizeof k->rows[i]);
        if (k->mats[i].used && !strcmp(k->mats[i].id, id)) OPENSSL_cleanse(&k->mats[i], sizeof k->mats[i]);
    }
    pthread_mutex_unlock(&k->mu);
}

/* ---- keys ---- */

static int create_with(kms *k, const char *id, const char *description) {
    uint8_t material[CRYPT_KEY], sealed[CRYPT_WRAPPED];
    crypt_key_new(material);
    int rc = kms_material_seal(k->master, id, 1, material, sealed);
    OPENSSL_cleanse(material, sizeof material);
    if (rc == 0) rc = meta_kms_key_create(k->ms, id, description, sealed, time_now_ms());
    return rc;
}

int kms_key_create(kms *k, const char *id, const char *description) {
    if (!k || !kms_id_valid(id)) return CAIRN_EINVAL;
    return create_with(k, id, description);
}

int kms_key_rotate(kms *k, const char *id, int *version) {
    if (!k || !kms_id_valid(id)) return CAIRN_ENOTFOUND;
    for (int tries = 0; tries < 16; tries++) {
        meta_kms_key row;
        int rc = meta_kms_key_get(k->ms, id, &row);
        if (rc != 0) return rc;
        uint8_t material[CRYPT_KEY], sealed[CRYPT_WRAPPED];
        crypt_key_new(material);
        rc = kms_material_seal(k->master, id, row.version + 1, material, sealed);
        OPENSSL_cleanse(material, sizeof material);
        if (rc == 0) rc = meta_kms_version_add(k->ms, id, row.version + 1, sealed, time_now_ms());
        if (rc == CAIRN_EEXIST) continue; /* a concurrent rotation took the number */
        if (rc == 0) {
            if (version) *version = row.version + 1;
            kms_forget(k, id);
        }
        return rc;
    }
    return CAIRN_ECONFLICT;
}

/* The key's row, read again when the cached one is older than
 * KMS_CACHE_MS; KMS_SSE_S3_KEY is made when create is set and it is
 * absent. */
static int key_row(kms *k, const char *id, bool create, bool *enabled, int *newest) {
    pthread_mutex_lock(&k->mu);
    row_entry *e = row_find(k, id);
    if (e && mono_ms() - e->read_ms < KMS_CACHE_MS) {
        e->last_use = ++k->clock;
        *enabled = e->enabled;
        *newest = e->version;
        pthread_mutex_unlock(&k->mu);
        return 0;
    }
    pthread_mutex_unlock(&k->mu);
    meta_kms_key row;
    int rc = meta_kms_key_get(k->ms, id, &row);
    if (rc == CAIRN_ENOTFOUND && create && !strcmp(id, KMS_SSE_S3_KEY)) {
        rc = create_with(k, id, "SSE-S3: made on first use");
        if (rc == 0 || rc == CAIRN_EEXIST) rc = meta_kms_key_get(k->ms, id, &row); /* the winner's, if we lost */
    }
    if (rc != 0) return rc;
    pthread_mutex_lock(&k->mu);
    row_put(k, &row);
    pthread_mutex_unlock(&k->mu);
    *enabled = row.enabled;
    *newest = row.version;
    return 0;
}

static int material_of(kms *k, const char *id, int version, uint8_t material[CRYPT_KEY]) {
    pthread_mutex_lock(&k->mu);
    material_entry *e = mat_find(k, id, version);
    if (e) {
        memcpy(material, e->material, CRYPT_KEY);
        e->last_use = ++k->clock;
    }
    pthread_mutex_unlock(&k->mu);
    if (e) return 0;
    uint8_t sealed[CRYPT_WRAPPED];
    int rc = meta_kms_version_get(k->ms, id, version, sealed);
    if (rc == 0) rc = kms_material_open(k->master, id, version, sealed, material);
    if (rc != 0) return rc;
    pthread_mutex_lock(&k->mu);
    mat_put(k, id, version, material);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

static int wrap_with(kms *k, const char *key_id, int version, const uint8_t dk[CRYPT_KEY],
                     uint8_t wrapped[CRYPT_WRAPPED]) {
    uint8_t material[CRYPT_KEY];
    int rc = material_of(k, key_id, version, material);
    if (rc == 0) {
        char p[KMS_ID_MAX + 32];
        purpose(p, sizeof p, "sse", key_id, version);
        rc = crypt_key_wrap(material, p, dk, wrapped);
    }
    OPENSSL_cleanse(material, sizeof material);
    return rc;
}

/* Whether key_id may wrap or unwrap now: 0 with *newest, CAIRN_ENOTFOUND
 * (a bad id, a version below 1 when version_needed, no such key),
 * CAIRN_EPERM (disabled), or the metadata's error. */
static int usable(kms *k, const char *key_id, bool create, int version, bool version_needed, int *newest) {
    if (!kms_id_valid(key_id) || (version_needed && version < 1)) return CAIRN_ENOTFOUND;
    bool enabled;
    int rc = key_row(k, key_id, create, &enabled, newest);
    if (rc != 0) return rc;
    return enabled ? 0 : CAIRN_EPERM;
}

int kms_wrap(kms *k, const char *key_id, const uint8_t dk[CRYPT_KEY], uint8_t wrapped[CRYPT_WRAPPED], int *version) {
    if (!k || !dk || !wrapped || !version) return CAIRN_EINVAL;
    int newest;
    int rc = usable(k, key_id, true, 0, false, &newest);
    if (rc == 0) rc = wrap_with(k, key_id, newest, dk, wrapped);
    if (rc == 0) *version = newest;
    return rc;
}

int kms_wrap_at(kms *k, const char *key_id, int version, const uint8_t dk[CRYPT_KEY],
                uint8_t wrapped[CRYPT_WRAPPED]) {
    if (!k || !dk || !wrapped) return CAIRN_EINVAL;
    int newest;
    int rc = usable(k, key_id, false, version, true, &newest);
    return rc != 0 ? rc : wrap_with(k, key_id, version, dk, wrapped);
}

int kms_unwrap(kms *k, const char *key_id, int version, const uint8_t wrapped[CRYPT_WRAPPED],
               uint8_t dk[CRYPT_KEY]) {
    if (!k || !wrapped || !dk) return CAIRN_EINVAL;
    int newest;
    int rc = usable(k, key_id, false, version, true, &newest);
    if (rc != 0) return rc;
    uint8_t material[CRYPT_KEY];
    rc = material_of(k, key_id, version, material);
    if (rc == 0) {
        char p[KMS_ID_MAX + 32];
        purpose(p, sizeof p, "sse", key_id, version);
        rc = crypt_key_unwrap(material, p, wrapped, dk);
    }
    OPENSSL_cleanse(material, sizeof material);
    return rc;
}

int kms_mac(kms *k, const char *key_id, int *version, const void *msg, size_t n, uint8_t mac[32]) {
    if (!k || !version || !mac || *version < 0) return CAIRN_EINVAL;
    if (!kms_id_valid(key_id)) return CAIRN_ENOTFOUND;
    if (*version == 0) {
        bool enabled;
        int newest;
        int rc = key_row(k, key_id, true, &enabled, &newest);
        if (rc != 0) return rc;
        *version = newest;
    }
    uint8_t material[CRYPT_KEY], sub[32];
    int rc = material_of(k, key_id, *version, material);
    if (rc == 0) {
        char p[KMS_ID_MAX + 32];
        purpose(p, sizeof p, "mac", key_id, *version);
        crypt_hmac(material, sizeof material, p, strlen(p), sub);
        crypt_hmac(sub, sizeof sub, msg, n, mac);
    }
    OPENSSL_cleanse(material, sizeof material);
    OPENSSL_cleanse(sub, sizeof sub);
    return rc;
}
