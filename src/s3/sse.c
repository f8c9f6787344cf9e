/*
 * sse.c — server-side encryption of object bytes (docs/encryption.md,
 * decisions 0027 and 0028).
 *
 * A write decides its mode before its body (s3_sse_begin_write): the
 * request's x-amz-server-side-encryption* values, else the bucket's
 * default.  It gets a data key of its own, wrapped by a KMS key (SSE-S3:
 * the built-in KMS_SSE_S3_KEY; SSE-KMS: the key the request names) or by
 * the customer's key (SSE-C), and described by the CRYPT_SSE_MEMBER member
 * of its headers.  The body is sealed into 64 KiB packages on its way to
 * the data writer (s3_sealer), so erasure coding, healing, scrubbing and
 * rebalancing see only sealed bytes; the layout says so (data_layout's
 * sealed), and the data layer stores the sealed length.  An upload's parts
 * are each sealed under a key derived from the upload's and the part's own
 * random version id: a part uploaded again never reuses a nonce.
 *
 * Reads get the key with s3_sse_read_key and open only the packages a
 * range needs (obj_reader, object.c).  A package that does not
 * authenticate fails the read: the client sees an error or a cut
 * connection, never bytes that were not stored.
 *
 * The SSE-C key is never stored: only the data key wrapped by it, and an
 * HMAC of it under a key derived from the master key, which refuses a
 * wrong key before anything is read.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypt/kms.h"
#include "s3/internal.h"

#define H_SSE "x-amz-server-side-encryption"
#define H_KMS_KEY "x-amz-server-side-encryption-aws-kms-key-id"
#define H_BUCKET_KEY "x-amz-server-side-encryption-bucket-key-enabled"
#define H_C_ALG "x-amz-server-side-encryption-customer-algorithm"
#define H_C_KEY "x-amz-server-side-encryption-customer-key"
#define H_C_MD5 "x-amz-server-side-encryption-customer-key-md5"
#define H_CS_ALG "x-amz-copy-source-server-side-encryption-customer-algorithm"
#define H_CS_KEY "x-amz-copy-source-server-side-encryption-customer-key"
#define H_CS_MD5 "x-amz-copy-source-server-side-encryption-customer-key-md5"

/* ---- the SSE-C key ----------------------------------------------------------------------- */

typedef struct {
    bool present;
    uint8_t key[CRYPT_KEY];
    char md5[32];               /* base64, as sent */
} customer_key;

/* The customer's key a request carries (copy_source: the copy source's).
 * Nonzero = answered. */
static int customer_key_of(s3_req *q, bool copy_source, customer_key *out) {
    memset(out, 0, sizeof *out);
    const char *alg = s3_request_value(q, copy_source ? H_CS_ALG : H_C_ALG);
    const char *key = s3_request_value(q, copy_source ? H_CS_KEY : H_C_KEY);
    const char *md5 = s3_request_value(q, copy_source ? H_CS_MD5 : H_C_MD5);
    if (!alg && !key && !md5) return 0;
    if (!alg) {
        s3_error(q, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must "
                                       "provide a valid encryption algorithm.");
        return -1;
    }
    if (strcmp(alg, "AES256") != 0) {
        s3_error(q, "InvalidEncryptionAlgorithmError", NULL);
        return -1;
    }
    if (!key) {
        s3_error(q, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must "
                                       "provide an appropriate secret key.");
        return -1;
    }
    if (!md5) {
        s3_error(q, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must "
                                       "provide the client calculated MD5 of the secret key.");
        return -1;
    }
    if (!q->gw->cfg.tls_cert[0] && !q->gw->cfg.sse_c_allow_insecure) {
        s3_error(q, "InvalidRequest", "Requests specifying Server Side Encryption with Customer provided keys must be "
                                      "made over a secure connection.");
        return -1;
    }
    uint8_t raw[48], want[24], got[16];
    size_t rl = 0, wl = 0;
    if (!s3_base64_decode(key, raw, sizeof raw, &rl) || rl != CRYPT_KEY) {
        OPENSSL_cleanse(raw, sizeof raw);
        s3_error(q, "InvalidArgument", "The secret key was invalid for the specified algorithm.");
        return -1;
    }
    unsigned gl = 0;
    bool ok = s3_base64_decode(md5, want, sizeof want, &wl) && wl == 16 &&
              EVP_Digest(raw, CRYPT_KEY, got, &gl, EVP_md5(), NULL) == 1 && CRYPTO_memcmp(got, want, 16) == 0;
    if (!ok) {
        OPENSSL_cleanse(raw, sizeof raw);
        s3_error(q, "InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was provided.");
        return -1;
    }
    memcpy(out->key, raw, CRYPT_KEY);
    OPENSSL_cleanse(raw, sizeof raw);
    s3_base64_encode(got, 16, out->md5);
    out->present = true;
    return 0;
}

/* The MAC of a customer key that is kept to refuse a wrong key: under the
 * SSE-S3 KMS key (*version 0: its newest, which *version gets), so it
 * outlives a master key rotation.  Nonzero = answered. */
static int customer_mac(s3_req *q, const uint8_t key[CRYPT_KEY], int *version, uint8_t mac[32]);

/* ---- KMS errors ----------------------------------------------------------------------------- */

static void kms_error(s3_req *q, int rc, const char *key_id) {
    char msg[200];
    if (rc == CAIRN_ENOTFOUND) {
        snprintf(msg, sizeof msg, "Key '%s' does not exist", key_id);
        s3_error(q, "KMS.NotFoundException", msg);
    } else if (rc == CAIRN_EPERM) {
        snprintf(msg, sizeof msg, "Key '%s' is disabled.", key_id);
        s3_error(q, "KMS.DisabledException", msg);
    } else if (rc == CAIRN_EAUTH) {
        log_write(LOG_ERROR, q->http->request_id, "a KMS key or data key does not open under the master key",
                  "key_id", key_id, NULL);
        s3_error(q, "InternalError", "The object's key cannot be unwrapped.");
    } else {
        s3_meta_error(q, rc, "InternalError", "reading the KMS key failed");
    }
}

static int customer_mac(s3_req *q, const uint8_t key[CRYPT_KEY], int *version, uint8_t mac[32]) {
    static const char label[] = "cairn sse-c key check v1";
    uint8_t msg[sizeof label - 1 + CRYPT_KEY];
    memcpy(msg, label, sizeof label - 1);
    memcpy(msg + sizeof label - 1, key, CRYPT_KEY);
    int rc = kms_mac(q->gw->d.kms, KMS_SSE_S3_KEY, version, msg, sizeof msg, mac);
    OPENSSL_cleanse(msg, sizeof msg);
    if (rc != 0) kms_error(q, rc, KMS_SSE_S3_KEY);
    return rc;
}

/* ---- writes ------------------------------------------------------------------------------------ */

static int new_key(s3_req *q, const customer_key *ck) {
    s3_sse *s = &q->sse;
    crypt_key_new(s->key);
    crypt_sse d = {.mode = s->mode};
    int rc;
    if (!q->gw->d.kms) {
        s3_error(q, "NotImplemented", "This gateway has no key manager: server-side encryption is unavailable.");
        return -1;
    }
    if (s->mode == 'C') {
        rc = crypt_key_wrap(ck->key, "sse-c", s->key, d.wrapped);
        snprintf(d.key_id, sizeof d.key_id, "%s", KMS_SSE_S3_KEY);
        if (rc == 0 && customer_mac(q, ck->key, &d.key_version, d.mac) != 0) return -1;
        d.has_mac = true;
        memcpy(s->customer_md5, ck->md5, sizeof s->customer_md5);
    } else {
        snprintf(d.key_id, sizeof d.key_id, "%s", s->kms_key_id);
        rc = kms_wrap(q->gw->d.kms, s->kms_key_id, s->key, d.wrapped, &d.key_version);
        if (rc != 0) {
            kms_error(q, rc, s->kms_key_id);
            return -1;
        }
    }
    if (rc == 0) rc = crypt_sse_format(&d, s->member, sizeof s->member);
    if (rc != 0) {
        s3_error(q, "InternalError", "sealing the object's key failed");
        return -1;
    }
    return 0;
}

int s3_sse_begin_write(s3_req *q) {
    s3_sse *s = &q->sse;
    memset(s, 0, sizeof *s);
    const char *sse = s3_request_value(q, H_SSE);
    const char *kid = s3_request_value(q, H_KMS_KEY);
    const char *bkey = s3_request_value(q, H_BUCKET_KEY);
    customer_key ck;
    if (customer_key_of(q, false, &ck) != 0) return -1;
    if (sse && ck.present) {
        s3_error(q, "InvalidArgument", "Server Side Encryption with Customer provided key is incompatible with the "
                                       "encryption method specified");
        return -1;
    }
    if (sse && !strcmp(sse, "aws:kms:dsse")) {
        s3_error(q, "NotImplemented", "Dual-layer encryption (aws:kms:dsse) is not supported by this server.");
        return -1;
    }
    if (sse && strcmp(sse, "AES256") != 0 && strcmp(sse, "aws:kms") != 0) {
        s3_error(q, "InvalidArgument", "The encryption method specified is not supported");
        return -1;
    }
    if (kid && !(sse && !strcmp(sse, "aws:kms"))) {
        s3_error(q, "InvalidArgument", "Server Side Encryption with AWS KMS managed key requires HTTP header "
                                       "x-amz-server-side-encryption : aws:kms");
        return -1;
    }
    if (bkey && strcasecmp(bkey, "true") != 0 && strcasecmp(bkey, "false") != 0) {
        s3_error(q, "InvalidArgument", "x-amz-server-side-encryption-bucket-key-enabled must be true or false.");
        return -1;
    }
    s->bucket_key = bkey && !strcasecmp(bkey, "true");
    if (ck.present) {
        s->mode = 'C';
    } else if (sse) {
        s->mode = !strcmp(sse, "AES256") ? 'S' : 'K';
        const char *id = kid ? s3_kms_key_id_of(kid) : KMS_SSE_S3_KEY;
        if (id && !kms_id_valid(id)) id = NULL;
        if (!id) {
            s3_error(q, "KMS.NotFoundException", "Invalid keyId");
            return -1;
        }
        snprintf(s->kms_key_id, sizeof s->kms_key_id, "%s", s->mode == 'S' ? KMS_SSE_S3_KEY : id);
    } else {
        s3_sse_default def;
        if (s3_bucket_sse_default(q, &def) != 0) return -1;
        if (!def.mode) return 0;
        s->mode = def.mode;
        s->bucket_key = def.bucket_key;
        snprintf(s->kms_key_id, sizeof s->kms_key_id, "%s",
                 def.mode == 'K' && def.kms_key_id[0] ? def.kms_key_id : KMS_SSE_S3_KEY);
    }
    int rc = new_key(q, &ck);
    OPENSSL_cleanse(&ck, sizeof ck);
    return rc;
}

/* The data key a stored description opens to, with the request's customer
 * key for SSE-C.  Nonzero = answered. */
static int open_key(s3_req *q, const crypt_sse *d, const customer_key *ck, uint8_t key[CRYPT_KEY]) {
    if (d->mode == 'C') {
        if (!ck->present) {
            s3_error(q, "InvalidRequest", "The object was stored using a form of Server Side Encryption. The correct "
                                          "parameters must be provided to retrieve the object.");
            return -1;
        }
        uint8_t mac[32];
        int version = d->key_version;
        if (!q->gw->d.kms) {
            s3_error(q, "NotImplemented", "This gateway has no key manager: the object's key cannot be checked.");
            return -1;
        }
        if (strcmp(d->key_id, KMS_SSE_S3_KEY) != 0 || customer_mac(q, ck->key, &version, mac) != 0) {
            if (strcmp(d->key_id, KMS_SSE_S3_KEY) != 0) s3_error(q, "InternalError", "The object's key check is damaged.");
            return -1;
        }
        if (CRYPTO_memcmp(mac, d->mac, sizeof mac) != 0 || crypt_key_unwrap(ck->key, "sse-c", d->wrapped, key) != 0) {
            s3_error(q, "AccessDenied", "The provided customer key does not match the key the object was encrypted with.");
            return -1;
        }
        return 0;
    }
    if (ck->present) {
        s3_error(q, "InvalidRequest", "The encryption parameters are not applicable to this object.");
        return -1;
    }
    if (!q->gw->d.kms) {
        s3_error(q, "NotImplemented", "This gateway has no key manager: the object's key cannot be unwrapped.");
        return -1;
    }
    int rc = kms_unwrap(q->gw->d.kms, d->key_id, d->key_version, d->wrapped, key);
    if (rc != 0) {
        kms_error(q, rc, d->key_id);
        return -1;
    }
    return 0;
}

/* The stored description in headers_json: 0 with *found, or nonzero =
 * answered (a member that does not parse). */
static int stored_sse(s3_req *q, const char *headers_json, crypt_sse *d, bool *found) {
    *found = false;
    if (!headers_json || !strstr(headers_json, "\"" CRYPT_SSE_MEMBER "\"")) return 0;
    /* Written compact (s3_sse_headers_set), and the value is of
     * [A-Za-z0-9:_-] only: read in place, without parsing the JSON (a
     * small GET pays for every microsecond).  A user's value holding the
     * same text has its quotes escaped, so it never matches. */
    static const char pat[] = "\"" CRYPT_SSE_MEMBER "\":\"";
    const char *at = strstr(headers_json, pat);
    int rc = CAIRN_EINVAL;
    if (at) {
        at += sizeof pat - 1;
        size_t n = strcspn(at, "\"\\");
        char v[CRYPT_SSE_MAX];
        if (at[n] == '"' && n < sizeof v) {
            memcpy(v, at, n);
            v[n] = '\0';
            rc = crypt_sse_parse(v, d);
        }
    } else {
        json_t *o = json_loads(headers_json, 0, NULL);
        const char *v = o ? json_string_value(json_object_get(o, CRYPT_SSE_MEMBER)) : NULL;
        rc = v ? crypt_sse_parse(v, d) : CAIRN_EINVAL;
        json_decref(o);
    }
    if (rc != 0) {
        log_write(LOG_ERROR, q->http->request_id, "a version's encryption description does not parse", NULL);
        s3_error(q, "InternalError", "The object's encryption description is damaged.");
        return -1;
    }
    *found = true;
    return 0;
}

int s3_sse_begin_part(s3_req *q, const char *upload_headers) {
    s3_sse *s = &q->sse;
    memset(s, 0, sizeof *s);
    crypt_sse d;
    bool found;
    customer_key ck;
    if (stored_sse(q, upload_headers, &d, &found) != 0 || customer_key_of(q, false, &ck) != 0) return -1;
    if (!found) {
        if (ck.present) {
            s3_error(q, "InvalidRequest", "The upload was not initiated with customer-provided key encryption: the "
                                          "part must not carry a customer key.");
            return -1;
        }
        return 0;
    }
    int rc = open_key(q, &d, &ck, s->key);
    if (rc == 0) {
        s->mode = d.mode;
        s->upload = true;
        snprintf(s->kms_key_id, sizeof s->kms_key_id, "%s", d.key_id);
        memcpy(s->customer_md5, ck.md5, sizeof s->customer_md5);
    }
    OPENSSL_cleanse(&ck, sizeof ck);
    OPENSSL_cleanse(&d, sizeof d);
    return rc;
}

int s3_sse_read_key(s3_req *q, const char *headers_json, bool copy_source, uint8_t key[CRYPT_KEY],
                    const uint8_t **key_out) {
    *key_out = NULL;
    crypt_sse d;
    bool found;
    customer_key ck;
    if (stored_sse(q, headers_json, &d, &found) != 0 || customer_key_of(q, copy_source, &ck) != 0) return -1;
    if (!found) {
        if (ck.present) {
            OPENSSL_cleanse(&ck, sizeof ck);
            s3_error(q, "InvalidRequest", "The encryption parameters are not applicable to this object.");
            return -1;
        }
        return 0;
    }
    int rc = open_key(q, &d, &ck, key);
    OPENSSL_cleanse(&ck, sizeof ck);
    if (rc == 0) *key_out = key;
    return rc;
}

/* ---- the stored headers ------------------------------------------------------------------------ */

static bool is_sse_member(const char *k) {
    return !strcmp(k, CRYPT_SSE_MEMBER) || !strncmp(k, H_SSE, sizeof H_SSE - 1);
}

int s3_sse_headers_set(s3_req *q, char **headers_json) {
    const s3_sse *s = &q->sse;
    const char *in = *headers_json ? *headers_json : "{}";
    if (!s->mode && !strstr(in, "server-side-encryption") && !strstr(in, CRYPT_SSE_MEMBER)) return 0;
    json_t *o = json_loads(in, 0, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        s3_error(q, "InternalError", "the stored headers do not read back");
        return -1;
    }
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(o, tmp, k, v) {
        if (is_sse_member(k)) json_object_del(o, k);
    }
    int bad = 0;
    if (s->mode) {
        bad |= json_object_set_new(o, CRYPT_SSE_MEMBER, json_string(s->member));
        if (s->mode == 'C') {
            bad |= json_object_set_new(o, H_C_ALG, json_string("AES256"));
            bad |= json_object_set_new(o, H_C_MD5, json_string(s->customer_md5));
        } else {
            bad |= json_object_set_new(o, H_SSE, json_string(s->mode == 'S' ? "AES256" : "aws:kms"));
            if (s->mode == 'K') bad |= json_object_set_new(o, H_KMS_KEY, json_string(s->kms_key_id));
            if (s->bucket_key) bad |= json_object_set_new(o, H_BUCKET_KEY, json_string("true"));
        }
    }
    char *out = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *copy = out ? arena_strdup(q->http->arena, out) : NULL;
    free(out);
    if (!copy) {
        s3_error_nomem(q);
        return -1;
    }
    *headers_json = copy;
    return 0;
}

void s3_sse_add_headers(s3_req *q, const char *headers_json) {
    if (!headers_json || !strstr(headers_json, "server-side-encryption")) return;
    json_t *o = json_loads(headers_json, 0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (strcmp(k, CRYPT_SSE_MEMBER) != 0 && is_sse_member(k) && json_is_string(v))
            http_add_header(q->http, k, json_string_value(v));
    }
    json_decref(o);
}

/* ---- sealing ------------------------------------------------------------------------------------- */

void s3_sealer_init(s3_sealer *s, const uint8_t key[CRYPT_KEY]) {
    memset(s, 0, sizeof *s);
    memcpy(s->key, key, CRYPT_KEY);
}

/* Seals the held package (last or not) and writes it. */
static int seal_held(s3_sealer *s, data_writer *w, bool last) {
    int rc = crypt_package_seal(s->key, s->index, last, s->pkg, s->fill, s->out);
    if (rc == 0) rc = data_writer_write(w, s->out, s->fill + CRYPT_TAG);
    s->index++;
    s->fill = 0;
    return rc;
}

int s3_sealer_write(s3_sealer *s, data_writer *w, const void *p, size_t n) {
    if (!s->pkg) {
        s->pkg = malloc(CRYPT_PACKAGE);
        s->out = malloc(CRYPT_PACKAGE + CRYPT_TAG);
        if (!s->pkg || !s->out) return CAIRN_ENOMEM;
    }
    const uint8_t *c = p;
    while (n) {
        /* A full package is sealed only once a byte follows it: until then
         * it may be the last. */
        if (s->fill == CRYPT_PACKAGE) {
            int rc = seal_held(s, w, false);
            if (rc != 0) return rc;
        }
        /* A whole package with more after it is sealed where it lies. */
        if (s->fill == 0 && n > CRYPT_PACKAGE) {
            int rc = crypt_package_seal(s->key, s->index, false, c, CRYPT_PACKAGE, s->out);
            if (rc == 0) rc = data_writer_write(w, s->out, CRYPT_PACKAGE + CRYPT_TAG);
            if (rc != 0) return rc;
            s->index++;
            c += CRYPT_PACKAGE;
            n -= CRYPT_PACKAGE;
            continue;
        }
        size_t take = CRYPT_PACKAGE - s->fill;
        if (take > n) take = n;
        memcpy(s->pkg + s->fill, c, take);
        s->fill += take;
        c += take;
        n -= take;
    }
    return 0;
}

int s3_sealer_finish(s3_sealer *s, data_writer *w) {
    if (!s->pkg) {
        s->pkg = malloc(CRYPT_PACKAGE);
        s->out = malloc(CRYPT_PACKAGE + CRYPT_TAG);
        if (!s->pkg || !s->out) return CAIRN_ENOMEM;
    }
    return seal_held(s, w, true);
}

void s3_sealer_free(s3_sealer *s) {
    if (s->pkg) OPENSSL_cleanse(s->pkg, CRYPT_PACKAGE);
    free(s->pkg);
    free(s->out);
    OPENSSL_cleanse(s->key, sizeof s->key);
    s->pkg = s->out = NULL;
    s->fill = 0;
}

uint8_t *s3_sse_seal_buffer(s3_req *q, const uint8_t key[CRYPT_KEY], const void *p, size_t n) {
    uint64_t np = crypt_packages(n);
    uint8_t *out = arena_alloc(q->http->arena, (size_t)crypt_sealed_size(n));
    if (!out) return NULL;
    const uint8_t *in = p ? p : (const uint8_t *)"";
    for (uint64_t i = 0; i < np; i++) {
        size_t off = (size_t)i * CRYPT_PACKAGE, len = n - off < CRYPT_PACKAGE ? n - off : CRYPT_PACKAGE;
        if (crypt_package_seal(key, i, i + 1 == np, in + off, len, out + (size_t)i * (CRYPT_PACKAGE + CRYPT_TAG)) != 0)
            return NULL;
    }
    return out;
}

int s3_sse_open_buffer(const uint8_t key[CRYPT_KEY], const uint8_t *in, size_t n, int64_t plain, uint8_t **out) {
    *out = NULL;
    if (plain < 0 || crypt_sealed_size((uint64_t)plain) != n) return CAIRN_EAUTH;
    uint8_t *o = malloc(plain ? (size_t)plain : 1);
    if (!o) return CAIRN_ENOMEM;
    uint64_t np = crypt_packages((uint64_t)plain);
    for (uint64_t i = 0; i < np; i++) {
        size_t off = (size_t)i * CRYPT_PACKAGE;
        size_t len = (size_t)plain - off < CRYPT_PACKAGE ? (size_t)plain - off : CRYPT_PACKAGE;
        int rc = crypt_package_open(key, i, i + 1 == np, in + (size_t)i * (CRYPT_PACKAGE + CRYPT_TAG), len + CRYPT_TAG,
                                    o + off);
        if (rc != 0) {
            OPENSSL_cleanse(o, (size_t)plain);
            free(o);
            return rc;
        }
    }
    *out = o;
    return 0;
}

void s3_sse_clear(s3_req *q) {
    s3_sealer_free(&q->sse.sealer);
    OPENSSL_cleanse(q->sse.key, sizeof q->sse.key);
    OPENSSL_cleanse(q->src_key, sizeof q->src_key);
}

bool s3_sse_sealed(const char *headers_json) {
    return headers_json && strstr(headers_json, "\"" CRYPT_SSE_MEMBER "\"") != NULL;
}

int s3_sse_check_head(s3_req *q, const char *headers_json) {
    crypt_sse d;
    bool found;
    if (stored_sse(q, headers_json, &d, &found) != 0) return -1;
    /* HEAD opens no bytes: an SSE-KMS or SSE-S3 key is not needed (a
     * disabled key still lets HEAD answer); an SSE-C key must be right. */
    if (found && d.mode != 'C') {
        customer_key ck;
        if (customer_key_of(q, false, &ck) != 0) return -1;
        OPENSSL_cleanse(&ck, sizeof ck);
        if (ck.present) {
            s3_error(q, "InvalidRequest", "The encryption parameters are not applicable to this object.");
            return -1;
        }
        return 0;
    }
    uint8_t key[CRYPT_KEY];
    const uint8_t *kp;
    int rc = s3_sse_read_key(q, headers_json, false, key, &kp);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}
