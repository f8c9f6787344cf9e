/*
 * checksum.c — S3's additional checksums (x-amz-checksum-crc32, -crc32c,
 * -sha1, -sha256, -crc64nvme) past the single PUT that verifies one: the
 * algorithms, the checksum of a multipart upload, and where they are kept.
 *
 * A multipart upload chooses an algorithm and a type when it is created.
 * COMPOSITE (any algorithm but CRC-64/NVME): the object's checksum is the
 * algorithm over the concatenated binary checksums of its parts, written
 * "<base64>-<parts>".  FULL_OBJECT (the CRCs only): it is the CRC of the
 * whole object, which crc_combine (core) folds from the parts' CRCs and
 * sizes without reading a byte again.
 *
 * Where they live (decision 0023): a part's checksum is a column of its row
 * ("<algorithm>:<base64>", meta_part.checksum); an object's, and an
 * upload's algorithm and type, are members of the stored headers
 * (headers_json) under their header names, which no client can store
 * (s3_headers_json_from_request keeps only the headers it lists) and which
 * GET and HEAD send only when asked (x-amz-checksum-mode: ENABLED).  The
 * headers travel with a version wherever it goes (copies, retention and tag
 * changes) and cost no migration of the objects table.
 */
#include "s3/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include <jansson.h>

static const s3_ck_info infos[] = {
    [S3_CK_CRC32] = {"CRC32", "crc32", "x-amz-checksum-crc32", "ChecksumCRC32", 4},
    [S3_CK_CRC32C] = {"CRC32C", "crc32c", "x-amz-checksum-crc32c", "ChecksumCRC32C", 4},
    [S3_CK_SHA1] = {"SHA1", "sha1", "x-amz-checksum-sha1", "ChecksumSHA1", 20},
    [S3_CK_SHA256] = {"SHA256", "sha256", "x-amz-checksum-sha256", "ChecksumSHA256", 32},
    [S3_CK_CRC64NVME] = {"CRC64NVME", "crc64nvme", "x-amz-checksum-crc64nvme", "ChecksumCRC64NVME", 8},
};

const s3_ck_info *s3_ck_info_of(int alg) {
    return alg >= S3_CK_CRC32 && alg <= S3_CK_CRC64NVME ? &infos[alg] : NULL;
}

int s3_ck_by_name(const char *name) {
    for (int a = S3_CK_CRC32; name && a <= S3_CK_CRC64NVME; a++)
        if (!strcasecmp(name, infos[a].name)) return a;
    return 0;
}

static int by_lower(const char *s, size_t n) {
    for (int a = S3_CK_CRC32; a <= S3_CK_CRC64NVME; a++)
        if (strlen(infos[a].lower) == n && !strncasecmp(s, infos[a].lower, n)) return a;
    return 0;
}

int s3_ck_in_request(s3_req *q) {
    const char *trailer = http_header(q->http, "x-amz-trailer");
    for (int a = S3_CK_CRC32; a <= S3_CK_CRC64NVME; a++) {
        if (http_header(q->http, infos[a].header)) return a;
        if (trailer && !strcasecmp(trailer, infos[a].header)) return a;
    }
    return 0;
}

/* ---- computing ---- */

int s3_ck_init(s3_ck *c, int alg) {
    memset(c, 0, sizeof *c);
    c->alg = alg;
    if (alg == S3_CK_CRC32) c->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (alg == S3_CK_SHA1 || alg == S3_CK_SHA256) {
        c->md = EVP_MD_CTX_new();
        if (!c->md || !EVP_DigestInit_ex(c->md, alg == S3_CK_SHA1 ? EVP_sha1() : EVP_sha256(), NULL)) {
            EVP_MD_CTX_free(c->md);
            c->md = NULL;
            return CAIRN_ENOMEM;
        }
    }
    return 0;
}

void s3_ck_update(s3_ck *c, const void *p, size_t n) {
    switch (c->alg) {
    case S3_CK_CRC32:
        /* zlib takes a uInt length: feed a huge buffer in slices. */
        while (n) {
            uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
            c->crc = (uint32_t)crc32(c->crc, p, k);
            p = (const char *)p + k;
            n -= k;
        }
        break;
    case S3_CK_CRC32C: c->crc = data_crc32c(c->crc, p, n); break;
    case S3_CK_CRC64NVME: c->crc64 = crc64nvme(c->crc64, p, n); break;
    case S3_CK_SHA1:
    case S3_CK_SHA256: EVP_DigestUpdate(c->md, p, n); break;
    default: break;
    }
}

/* The raw checksum, big-endian for the CRCs as S3 encodes them; its length. */
static size_t raw_of(int alg, uint64_t v, uint8_t *raw) {
    size_t n = infos[alg].raw;
    for (size_t i = 0; i < n; i++) raw[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return n;
}

void s3_ck_final(s3_ck *c, char out[S3_CK_VALUE_MAX]) {
    uint8_t raw[64];
    size_t rl = 0;
    if (c->alg == S3_CK_SHA1 || c->alg == S3_CK_SHA256) {
        unsigned dl = 0;
        EVP_DigestFinal_ex(c->md, raw, &dl);
        rl = dl;
    } else if (c->alg) {
        rl = raw_of(c->alg, c->alg == S3_CK_CRC64NVME ? c->crc64 : c->crc, raw);
    }
    s3_base64_encode(raw, rl, out);
}

void s3_ck_free(s3_ck *c) {
    if (c->md) EVP_MD_CTX_free(c->md);
    c->md = NULL;
}

/* ---- stored values ---- */

int s3_ck_split(const char *stored, const char **value) {
    const char *colon = stored ? strchr(stored, ':') : NULL;
    if (!colon) return 0;
    int alg = by_lower(stored, (size_t)(colon - stored));
    if (alg && value) *value = colon + 1;
    return alg;
}

/* Decodes a base64 checksum of alg into raw (its exact size); false if it is not one. */
static bool decode_exact(int alg, const char *b64, uint8_t *raw) {
    size_t n = 0;
    return s3_base64_decode(b64, raw, 64, &n) && n == infos[alg].raw;
}

int s3_ck_multipart(int alg, bool full_object, const meta_part *parts, int n, char out[S3_CK_VALUE_MAX]) {
    if (!s3_ck_info_of(alg) || n < 1) return CAIRN_EINVAL;
    uint8_t raw[64];
    s3_ck all;
    if (!full_object && s3_ck_init(&all, alg) != 0) return CAIRN_ENOMEM;
    uint64_t crc = 0;
    for (int i = 0; i < n; i++) {
        const char *v = NULL;
        if (s3_ck_split(parts[i].checksum, &v) != alg || !decode_exact(alg, v, raw)) {
            if (!full_object) s3_ck_free(&all);
            return CAIRN_EINVAL;
        }
        if (!full_object) {
            s3_ck_update(&all, raw, infos[alg].raw);
            continue;
        }
        uint64_t part = 0;
        for (size_t k = 0; k < infos[alg].raw; k++) part = part << 8 | raw[k];
        if (i == 0) {
            crc = part;
        } else {
            uint64_t poly = alg == S3_CK_CRC32 ? CRC32_POLY : alg == S3_CK_CRC32C ? CRC32C_POLY : CRC64NVME_POLY;
            crc = crc_combine(crc, part, (uint64_t)parts[i].size, poly, alg == S3_CK_CRC64NVME ? 64 : 32);
        }
    }
    if (full_object) {
        if (alg == S3_CK_SHA1 || alg == S3_CK_SHA256) return CAIRN_EINVAL;
        s3_base64_encode(raw, raw_of(alg, crc, raw), out);
        return 0;
    }
    s3_ck_final(&all, out);
    s3_ck_free(&all);
    size_t l = strlen(out);
    snprintf(out + l, S3_CK_VALUE_MAX - l, "-%d", n);
    return 0;
}

/* ---- in the stored headers ---- */

#define TYPE_MEMBER "x-amz-checksum-type"
#define ALGORITHM_MEMBER "x-amz-checksum-algorithm"

void s3_ck_from_headers(const char *headers_json, s3_ck_stored *out) {
    memset(out, 0, sizeof *out);
    if (!headers_json || !strstr(headers_json, "x-amz-checksum-")) return;
    json_t *o = json_loads(headers_json, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    const char *t = json_string_value(json_object_get(o, TYPE_MEMBER));
    out->full_object = t && !strcmp(t, "FULL_OBJECT");
    out->upload_alg = s3_ck_by_name(json_string_value(json_object_get(o, ALGORITHM_MEMBER)));
    for (int a = S3_CK_CRC32; a <= S3_CK_CRC64NVME; a++) {
        const char *v = json_string_value(json_object_get(o, infos[a].header));
        if (!v || strlen(v) >= sizeof out->value) continue;
        out->alg = a;
        snprintf(out->value, sizeof out->value, "%s", v);
        break;
    }
    json_decref(o);
}

char *s3_ck_headers_set(s3_req *q, const char *headers_json, const char *member, const char *value, bool full_object) {
    json_t *o = json_loads(headers_json ? headers_json : "{}", 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    /* Every checksum member goes, then the new ones come. */
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(o, tmp, k, v) {
        if (!strncmp(k, "x-amz-checksum-", 15)) json_object_del(o, k);
    }
    int rc = 0;
    if (member) {
        rc |= json_object_set_new(o, member, json_string(value));
        rc |= json_object_set_new(o, TYPE_MEMBER, json_string(full_object ? "FULL_OBJECT" : "COMPOSITE"));
    }
    char *s = rc == 0 ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    char *out = s ? arena_strndup(q->http->arena, s, strlen(s)) : NULL;
    free(s);
    return out;
}

void s3_ck_add_headers(s3_req *q, const s3_ck_stored *ck) {
    if (!ck->alg) return;
    http_add_header(q->http, infos[ck->alg].header, ck->value);
    http_add_header(q->http, "x-amz-checksum-type", ck->full_object ? "FULL_OBJECT" : "COMPOSITE");
}

bool s3_ck_mode_enabled(s3_req *q) {
    const char *m = http_header(q->http, "x-amz-checksum-mode");
    return m && !strcasecmp(m, "ENABLED");
}
