/*
 * object.c — object operations: PutObject, GetObject/HeadObject, CopyObject,
 * DeleteObject, DeleteObjects and the object subresources we answer.
 *
 * PUT streams: bytes are hashed (MD5 for the ETag, plus any x-amz-checksum-*
 * the client sent) and go either to a bounded in-memory buffer (objects up to
 * inline_max_size, stored in the metadata database in the same transaction
 * that publishes them) or to a data writer (temp file, fsync, rename).  The
 * metadata commit is the single point at which the object appears; an
 * overwrite swaps versions atomically and the old bytes are removed after.
 *
 * GET serves inline bytes from the row, and files with sendfile from an fd
 * opened before the response starts, so a concurrent overwrite or delete
 * cannot change the bytes of a response already under way.
 */
#include "s3/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MAX_USER_METADATA 2048

#define MAX_SINGLE_PUT (5LL * 1024 * 1024 * 1024)

static const char *const stored_headers[] = {
    "content-type", "content-encoding", "content-disposition", "content-language",
    "cache-control", "expires", "x-amz-website-redirect-location",
};

/* ---- headers stored with the object ------------------------------------------------------- */

static bool is_stored_header(const char *name, size_t n) {
    if (n > 11 && strncasecmp(name, "x-amz-meta-", 11) == 0) return true;
    for (size_t i = 0; i < sizeof stored_headers / sizeof stored_headers[0]; i++)
        if (strlen(stored_headers[i]) == n && strncasecmp(stored_headers[i], name, n) == 0) return true;
    return false;
}

/* Builds the JSON object of stored headers from the request, in its arena;
 * returns NULL and answers the request on error. */
char *s3_headers_json_from_request(s3_req *q) {
    http_req *r = q->http;
    buf_t b;
    buf_init(&b);
    buf_putc(&b, '{');
    bool first = true;
    size_t meta_bytes = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const header_field *h = &r->headers[i];
        if (!is_stored_header(h->name, h->name_len)) continue;
        /* aws-chunked is a transfer detail, not the object's encoding */
        if (h->name_len == 16 && !strncasecmp(h->name, "content-encoding", 16) &&
            q->chunked && strstr(h->value, "aws-chunked")) {
            char tmp[256];
            size_t o = 0;
            const char *p = h->value;
            while (*p && o < sizeof tmp - 1) {
                size_t l = strcspn(p, ",");
                const char *s = p, *e = p + l;
                while (s < e && *s == ' ') s++;
                while (e > s && e[-1] == ' ') e--;
                if (e > s && !(e - s == 11 && !strncmp(s, "aws-chunked", 11))) {
                    if (o) tmp[o++] = ',';
                    size_t k = (size_t)(e - s);
                    if (k > sizeof tmp - 1 - o) k = sizeof tmp - 1 - o;
                    memcpy(tmp + o, s, k);
                    o += k;
                }
                p += l;
                if (*p == ',') p++;
            }
            tmp[o] = '\0';
            if (!o) continue;
            buf_puts(&b, first ? "\"" : ",\"");
            buf_puts(&b, "content-encoding\":\"");
            buf_json_escape(&b, tmp, o);
            buf_putc(&b, '"');
            first = false;
            continue;
        }
        /* Stored as UTF-8 (JSON holds nothing else); user metadata sent as
         * RFC 2047 encoded words is stored decoded, as S3 does. */
        bool user_meta = h->name_len > 11 && strncasecmp(h->name, "x-amz-meta-", 11) == 0;
        char *v = arena_alloc(r->arena, 2 * h->value_len + 1);
        if (!v) {
            buf_free(&b);
            s3_error_nomem(q);
            return NULL;
        }
        size_t vl = s3_header_value_decode(h->value, h->value_len, user_meta, v);
        if (user_meta) meta_bytes += h->name_len - 11 + vl;
        buf_puts(&b, first ? "\"" : ",\"");
        for (size_t k = 0; k < h->name_len; k++) {
            char c = h->name[k];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            buf_json_escape(&b, &c, 1);
        }
        buf_puts(&b, "\":\"");
        buf_json_escape(&b, v, vl);
        buf_putc(&b, '"');
        first = false;
    }
    if (meta_bytes > MAX_USER_METADATA) {
        buf_free(&b);
        s3_error(q, "MetadataTooLarge", NULL);
        return NULL;
    }
    /* The version's tags (x-amz-tagging) travel with its headers, under a
     * member no response ever sends (tagging.c). */
    s3_tagset tags = {0};
    /* CopyObject takes its tags by x-amz-tagging-directive, not with the headers. */
    if (q->op != OP_COPY_OBJECT && s3_tagging_header(q, &tags) != 0) {
        buf_free(&b);
        return NULL;
    }
    if (tags.n > 0) {
        buf_puts(&b, first ? "\"" S3_TAGS_MEMBER "\":" : ",\"" S3_TAGS_MEMBER "\":");
        s3_tagset_json(&tags, &b);
    }
    s3_tagset_free(&tags);
    buf_putc(&b, '}');
    if (b.oom) {
        buf_free(&b);
        s3_error(q, "InternalError", NULL);
        return NULL;
    }
    char *json = arena_strndup(r->arena, b.data, b.len);
    buf_free(&b);
    if (!json) s3_error_nomem(q);
    return json;
}

static const struct { const char *param, *header; } overrides[] = {
    {"response-content-type", "content-type"},
    {"response-content-language", "content-language"},
    {"response-expires", "expires"},
    {"response-cache-control", "cache-control"},
    {"response-content-disposition", "content-disposition"},
    {"response-content-encoding", "content-encoding"},
};

/* The response-* query value replacing stored header name, or NULL.  S3 honours
 * them only on authenticated requests. */
static const char *override_for(const s3_req *q, const char *name) {
    if (q->who.anonymous) return NULL;
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
        if (!strcasecmp(overrides[i].header, name)) return s3_param_get(q, overrides[i].param);
    return NULL;
}

/* Adds the stored headers of an object to the response, then the overrides. */
static void add_object_headers(s3_req *q, const char *json, bool *has_content_type) {
    http_req *r = q->http;
    *has_content_type = false;
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
        const char *v = override_for(q, overrides[i].header);
        if (!v) continue;
        http_add_header(r, overrides[i].header, v);
        if (i == 0) *has_content_type = true;
    }
    if (!json) return;
    /* The tags themselves are GetObjectTagging's to tell. */
    int ntags = s3_tag_count(json);
    if (ntags > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", ntags);
        http_add_header(r, "x-amz-tagging-count", n);
    }
    json_error_t err;
    json_t *o = json_loads(json, 0, &err);
    if (!o) return;
    const char *k;
    json_t *v;
    buf_t enc;
    buf_init(&enc);
    json_object_foreach(o, k, v) {
        if (!json_is_string(v) || override_for(q, k) || !strcmp(k, S3_TAGS_MEMBER) ||
            !strcmp(k, S3_ACL_MEMBER))
            continue;
        /* The checksum goes out only when asked for (get_object). */
        if (!strncmp(k, "x-amz-checksum-", 15)) continue;
        if (!strncmp(k, "x-amz-meta-", 11)) {
            /* Non-ASCII user metadata goes out as an RFC 2047 encoded word. */
            buf_reset(&enc);
            s3_meta_value_encode(&enc, json_string_value(v), json_string_length(v));
            buf_putc(&enc, '\0');
            if (!enc.oom) http_add_header(r, k, enc.data);
            continue;
        }
        http_add_header(r, k, json_string_value(v));
        if (!strcmp(k, "content-type")) *has_content_type = true;
    }
    buf_free(&enc);
    json_decref(o);
}

/* ---- PUT --------------------------------------------------------------------------------------- */

/* In S3_CK_* order. */
static const char *const checksum_names[] = {"x-amz-checksum-crc32", "x-amz-checksum-crc32c",
                                             "x-amz-checksum-sha1", "x-amz-checksum-sha256",
                                             "x-amz-checksum-crc64nvme"};

/* Starts computing checksum i of checksum_names, to be compared with value
 * (compute: none was sent, the upload's algorithm asks for one). */
static int start_checksum(s3_req *q, size_t i, const char *value, bool compute) {
    q->checksum_name = checksum_names[i];
    q->checksum_compute_only = compute;
    snprintf(q->checksum_expected, sizeof q->checksum_expected, "%s", value ? value : "");
    if (i == 0) { q->crc_kind = 1; q->crc = (uint32_t)crc32(0L, Z_NULL, 0); }
    else if (i == 1) { q->crc_kind = 2; q->crc = 0; }
    else if (i == 4) { q->crc_kind = 3; q->crc64 = 0; }
    else {
        q->checksum_md = EVP_MD_CTX_new();
        if (!q->checksum_md || !EVP_DigestInit_ex(q->checksum_md, i == 2 ? EVP_sha1() : EVP_sha256(), NULL))
            return CAIRN_ENOMEM;
    }
    return 0;
}

int s3_checksum_begin(s3_req *q, const char *name, const char *value) {
    for (size_t i = 0; i < sizeof checksum_names / sizeof checksum_names[0]; i++)
        if (!strcasecmp(name, checksum_names[i])) return start_checksum(q, i, value, false);
    return CAIRN_EINVAL;
}

static int setup_checksum(s3_req *q) {
    /* The value comes in a header, or (aws-chunked) in a trailer that
     * x-amz-trailer announces; either way the algorithm is known up front. */
    const char *trailer = http_header(q->http, "x-amz-trailer");
    for (size_t i = 0; i < sizeof checksum_names / sizeof checksum_names[0]; i++) {
        const char *v = http_header(q->http, checksum_names[i]);
        if (!v && trailer && q->chunked && !strcasecmp(trailer, checksum_names[i])) v = "";
        /* A part of an upload with an algorithm has its checksum computed
         * when the client sent none (multipart.c). */
        bool compute = !v && q->checksum_want == (int)i + 1;
        if (!v && !compute) continue;
        return start_checksum(q, i, v, compute);
    }
    return 0;
}

/* Fills checksum_got with the checksum of the body (once it is all in). */
static void checksum_final(s3_req *q) {
    if (q->checksum_got[0]) return;
    uint8_t raw[64];
    size_t rl = 0;
    if (q->crc_kind == 3) {
        for (int i = 0; i < 8; i++) raw[i] = (uint8_t)(q->crc64 >> (56 - 8 * i));
        rl = 8;
    } else if (q->crc_kind) {
        raw[0] = (uint8_t)(q->crc >> 24);
        raw[1] = (uint8_t)(q->crc >> 16);
        raw[2] = (uint8_t)(q->crc >> 8);
        raw[3] = (uint8_t)q->crc;
        rl = 4;
    } else if (q->checksum_md) {
        unsigned dl = 0;
        EVP_DigestFinal_ex(q->checksum_md, raw, &dl);
        rl = dl;
    } else {
        return; /* none asked for */
    }
    s3_base64_encode(raw, rl, q->checksum_got);
}

/* The checksum value to verify: a header, or the aws-chunked trailer. */
static bool checksum_matches(s3_req *q) {
    const char *name = q->checksum_name, *expected = q->checksum_expected;
    if (q->chunked && chunked_trailer_name(q->chunked)) {
        const char *tn = chunked_trailer_name(q->chunked);
        if (!name || strcasecmp(tn, name) == 0) {
            name = tn;
            expected = chunked_trailer_value(q->chunked);
            q->checksum_compute_only = false;
        }
    }
    if (!name || !expected) return true;
    checksum_final(q);
    if (q->checksum_compute_only) return true;
    if (!*expected) return false; /* announced in x-amz-trailer but never sent */
    if (!q->checksum_got[0]) return true; /* an algorithm we do not compute */
    return strcmp(q->checksum_got, expected) == 0;
}

bool s3_checksum_ok(s3_req *q) { return checksum_matches(q); }

const char *s3_object_checksum(s3_req *q) { return q->checksum_name && q->checksum_got[0] ? q->checksum_got : NULL; }

/* ---- conditional writes ---------------------------------------------------------------------- */

/*
 * S3's conditional writes: If-None-Match: * writes only where the key has
 * no current version, If-Match: <ETag> only over the version with that ETag.
 * The check that counts is the one inside the commit's transaction (the
 * condition travels in meta_object.cond), so of two conditional writers the
 * first to commit decides what the other finds: 32 If-None-Match writers
 * on any number of gateways have exactly one winner.  The check at the
 * start only saves a doomed upload its bytes.
 */
int s3_write_cond_parse(s3_req *q) {
    const char *inm = http_header(q->http, "if-none-match"), *im = http_header(q->http, "if-match");
    q->put_cond = META_PUT_ALWAYS;
    if (!inm && !im) return 0;
    if (inm && im) {
        s3_error(q, "NotImplemented", "A write takes If-Match or If-None-Match, not both.");
        return -1;
    }
    if (inm && strcmp(inm, "*") != 0) {
        s3_error(q, "NotImplemented", "A header you provided implies functionality that is not implemented: "
                                      "a write's If-None-Match takes only '*'.");
        return -1;
    }
    if (im) {
        /* The ETag as a GET returns it (quoted), or bare; a weak one (W/) compares by its value. */
        const char *v = im;
        size_t n = strlen(v);
        if (n >= 2 && v[0] == 'W' && v[1] == '/') v += 2, n -= 2;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
        if (n == 0 || n >= sizeof q->put_cond_etag) {
            /* No stored ETag is empty or this long: nothing can match. */
            s3_error(q, "PreconditionFailed", NULL);
            return -1;
        }
        memcpy(q->put_cond_etag, v, n);
        q->put_cond_etag[n] = '\0';
    }
    q->put_cond = inm ? META_PUT_IF_ABSENT : META_PUT_IF_MATCH;
    return 0;
}

int s3_write_cond_check(s3_req *q) {
    if (q->put_cond == META_PUT_ALWAYS) return 0;
    meta_object cur = {0};
    int rc = meta_object_get(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, false, &cur);
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        s3_meta_error(q, rc, "InternalError", NULL);
        return -1;
    }
    bool exists = rc == 0, holds = q->put_cond == META_PUT_IF_ABSENT ? !exists
                                                                       : exists && !strcmp(cur.etag, q->put_cond_etag);
    meta_object_clear(&cur);
    if (holds) return 0;
    /* If-Match on a key with no object: NoSuchKey, as S3 answers. */
    s3_error(q, q->put_cond == META_PUT_IF_MATCH && !exists ? "NoSuchKey" : "PreconditionFailed", NULL);
    return -1;
}

int s3_write_cond_begin(s3_req *q) {
    return s3_write_cond_parse(q) != 0 ? -1 : s3_write_cond_check(q);
}

void s3_write_cond_apply(const s3_req *q, meta_object *obj) {
    obj->cond = q->put_cond;
    if (q->put_cond == META_PUT_IF_MATCH) memcpy(obj->cond_etag, q->put_cond_etag, sizeof obj->cond_etag);
}

void s3_write_cond_refused(s3_req *q) {
    /* The condition held when the request began.  An If-Match whose object
     * was deleted since met a conflicting operation (409, retry after a
     * fresh read); any other change is a precondition that no longer holds. */
    int rc = CAIRN_EPRECOND;
    if (q->put_cond == META_PUT_IF_MATCH) {
        meta_object cur = {0};
        rc = meta_object_get(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, false, &cur);
        meta_object_clear(&cur);
    }
    log_write(LOG_INFO, q->http->request_id, "conditional write refused at commit: the key changed meanwhile",
              "condition", q->put_cond == META_PUT_IF_MATCH ? "If-Match" : "If-None-Match", NULL);
    s3_error(q, rc == CAIRN_ENOTFOUND ? "ConditionalRequestConflict" : "PreconditionFailed", NULL);
}

/* The writer's tap: the transforms, past the bytes they saw before the
 * writer opened (a body of unknown size that outgrew the inline buffer).
 * On the writer's thread; tap_skip is set before its first byte. */
static void object_tap(void *ud, const void *p, size_t n) {
    s3_req *q = ud;
    size_t k = q->tap_skip < n ? q->tap_skip : n;
    q->tap_skip -= k;
    if (n > k) s3_body_transform(q, (const char *)p + k, n - k);
}

/* Opens the writer of q->version_id for a body of size bytes (-1 unknown).
 * A sealed body (q->sse) is sealed on this thread, after its transforms,
 * and the writer gets the sealed stream and no tap; a part's key is
 * derived from its upload's and its own version id. */
static int open_writer(s3_req *q, int64_t size) {
    if (!q->sse.mode)
        return data_writer_open_size(q->gw->d.data, q->version_id, size, object_tap, q, &q->writer);
    uint8_t key[CRYPT_KEY];
    if (q->sse.upload) crypt_part_key(q->sse.key, q->version_id, key);
    else memcpy(key, q->sse.key, CRYPT_KEY);
    s3_sealer_init(&q->sse.sealer, key);
    OPENSSL_cleanse(key, sizeof key);
    return data_writer_open_size(q->gw->d.data, q->version_id, size < 0 ? -1 : (int64_t)crypt_sealed_size((uint64_t)size),
                                 NULL, NULL, &q->writer);
}

/*
 * A body without a length: Transfer-Encoding: chunked, no Content-Length,
 * no aws-chunked x-amz-decoded-content-length.  S3 refuses it (411
 * MissingContentLength); cairn takes it when nothing needs the length up
 * front: the payload is not signed as one SHA-256 (UNSIGNED-PAYLOAD).  Its
 * shards go to local drives as they come, and to storage nodes chunked
 * (remote.c).  0 to go on, nonzero = answered.
 */
static int begin_unknown_size(s3_req *q) {
    if (!q->http->chunked_transfer) {
        s3_error(q, "MissingContentLength", NULL);
        return -1;
    }
    if (q->who.cred.payload != PAYLOAD_UNSIGNED) {
        s3_error(q, "MissingContentLength", "You must provide the Content-Length HTTP header: a chunked body "
                                            "is taken only with x-amz-content-sha256: UNSIGNED-PAYLOAD, or "
                                            "aws-chunked with x-amz-decoded-content-length.");
        return -1;
    }
    q->size_unknown = true;
    return 0;
}

/* Moves a body of unknown size that outgrew the inline buffer to a writer. */
static int spill_to_writer(s3_req *q) {
    rand_hex_id(q->version_id, 16);
    int rc = open_writer(q, -1);
    if (rc != 0) return rc;
    q->inline_object = false;
    q->tap_skip = q->body.len;
    /* A sealed body's transforms ran as it came (s3_object_sink). */
    rc = q->sse.mode ? s3_sealer_write(&q->sse.sealer, q->writer, q->body.data ? q->body.data : "", q->body.len)
                     : data_writer_write(q->writer, q->body.data ? q->body.data : "", q->body.len);
    buf_free(&q->body);
    buf_init(&q->body);
    return rc;
}

int s3_object_begin(s3_req *q) {
    s3_gateway *gw = q->gw;
    if (q->declared_size < 0 && begin_unknown_size(q) != 0) return -1;
    if (q->declared_size > MAX_SINGLE_PUT || q->declared_size > gw->cfg.max_object_size) {
        s3_error(q, "EntityTooLarge", NULL);
        return -1;
    }
    const char *sc = http_header(q->http, "x-amz-storage-class");
    if (sc && strcmp(sc, "STANDARD") != 0 && strcmp(sc, "REDUCED_REDUNDANCY") != 0 &&
        strcmp(sc, "STANDARD_IA") != 0) {
        s3_error(q, "InvalidStorageClass", NULL);
        return -1;
    }
    const char *md5h = http_header(q->http, "content-md5");
    if (md5h) {
        uint8_t d[20];
        size_t dl = 0;
        if (!s3_base64_decode(md5h, d, sizeof d, &dl) || dl != 16) {
            s3_error(q, "InvalidDigest", NULL);
            return -1;
        }
    }
    if (q->op == OP_PUT_OBJECT && s3_write_cond_begin(q) != 0) return -1;
    /* A lock the write could not be given refuses it before its body. */
    if (q->op == OP_PUT_OBJECT && s3_lock_check_headers(q) != 0) return -1;
    if (q->op == OP_PUT_OBJECT) {
        /* Bad tags fail the upload before any byte is stored. */
        s3_tagset tags;
        if (s3_tagging_header(q, &tags) != 0) return -1;
        s3_tagset_free(&tags);
    }
    /* How the body is sealed: the request's or the bucket's choice; a
     * part's is its upload's (s3_sse_begin_part ran). */
    if (q->op == OP_PUT_OBJECT && s3_sse_begin_write(q) != 0) return -1;
    q->md5 = EVP_MD_CTX_new();
    if (!q->md5 || !EVP_DigestInit_ex(q->md5, EVP_md5(), NULL) || setup_checksum(q) != 0) {
        s3_error(q, "InternalError", NULL);
        return -1;
    }
    if (q->size_unknown && !q->force_shards) {
        q->inline_object = true; /* until it outgrows inline_max_size */
        return 0;
    }
    if (q->declared_size <= gw->cfg.inline_max_size && !q->force_shards && !q->size_unknown) {
        q->inline_object = true;
        if (buf_reserve(&q->body, (size_t)q->declared_size) != 0) {
            s3_error(q, "InternalError", NULL);
            return -1;
        }
        return 0;
    }
    rand_hex_id(q->version_id, 16);
    int rc = open_writer(q, q->size_unknown ? -1 : q->declared_size);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOSPC ? "InsufficientStorage" : "InternalError",
                 "cannot create the object's shards");
        return -1;
    }
    return 0;
}

int s3_object_sink(s3_req *q, const char *data, size_t n) {
    if (q->size_unknown) {
        /* payload_bytes counts these n already */
        if ((int64_t)q->payload_bytes > MAX_SINGLE_PUT || (int64_t)q->payload_bytes > q->gw->cfg.max_object_size)
            return CAIRN_ETOOBIG;
        if (q->inline_object && q->payload_bytes > (uint64_t)q->gw->cfg.inline_max_size) {
            int rc = spill_to_writer(q);
            if (rc != 0) return rc;
        }
    } else if ((int64_t)q->payload_bytes > q->declared_size) {
        q->body_error_code = "IncompleteBody";
        q->body_error_msg = q->chunked ? "The aws-chunked body carries more bytes than x-amz-decoded-content-length declares."
                                       : "The body is longer than its declared length.";
        return CAIRN_EINVAL;
    }
    if (q->inline_object) {
        s3_body_transform(q, data, n);
        buf_append(&q->body, data, n);
        return q->body.oom ? CAIRN_ENOMEM : 0;
    }
    if (q->sse.mode) {
        s3_body_transform(q, data, n);
        return s3_sealer_write(&q->sse.sealer, q->writer, data, n);
    }
    /* The writer runs the transforms as its tap, on its own thread for
     * large bodies, so hashing overlaps receiving. */
    return data_writer_write(q->writer, data, n);
}

int s3_object_body_end(s3_req *q) {
    if (!q->writer) return 0;
    int rc = q->sse.mode ? s3_sealer_finish(&q->sse.sealer, q->writer) : 0;
    if (rc == 0) rc = data_writer_finish(q->writer);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOSPC ? "InsufficientStorage" : "InternalError",
                 "storing the object's shards failed");
        return -1;
    }
    return 0;
}

void s3_object_abort_writer(s3_req *q) {
    if (q->writer) {
        data_writer_abort(q->writer); /* joins its threads before returning */
        q->writer = NULL;
    }
}

void s3_object_cleanup(s3_req *q) {
    if (q->writer) {
        data_writer_abort(q->writer);
        q->writer = NULL;
    }
    if (q->md5) EVP_MD_CTX_free(q->md5);
    if (q->checksum_md) EVP_MD_CTX_free(q->checksum_md);
    q->md5 = q->checksum_md = NULL;
    s3_sse_clear(q);
}

/* Removes the bytes of a version that metadata no longer references. */
void s3_drop_version_data(s3_req *q, const meta_object *o) {
    data_layout l;
    if (o->storage == META_STORE_FILE && !strncmp(o->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX))) {
        s3_drop_multipart_version(q, o->version_id);
        return;
    }
    if (o->storage == META_STORE_FILE) {
        int rc = data_layout_parse(o->layout, &l);
        if (rc == 0) rc = data_delete(q->gw->d.data, o->version_id, &l);
        if (rc != 0)
            log_write(LOG_WARN, q->http->request_id, "could not delete replaced object data",
                      "version_id", o->version_id, "error", cairn_strerror(rc), NULL);
    }
}

const char *s3_new_version_id(const s3_req *q, const meta_object *obj) {
    /* The bucket's state when the request began; a write that raced a
     * change of it is numbered by the state its commit read. */
    if (q->bk.versioning == META_VERSIONING_ENABLED) return obj->version_id;
    return q->bk.versioning == META_VERSIONING_SUSPENDED ? "null" : NULL;
}

const char *s3_marker_event_version(const s3_req *q, const char *marker_id) {
    /* As s3_new_version_id: a suspended bucket's marker is the null version. */
    return q->bk.versioning == META_VERSIONING_SUSPENDED ? "null" : marker_id;
}

void s3_new_version_header(s3_req *q, const meta_object *obj) {
    const char *id = s3_new_version_id(q, obj);
    if (id) http_add_header(q->http, "x-amz-version-id", id);
}

/* Publishes obj; answers NoSuchBucket/InternalError itself on failure (after
 * removing the new version's bytes).  Returns 0 on success. */
int s3_object_publish(s3_req *q, meta_object *obj) {
    meta_object old = {0};
    bool had_old = false;
    meta_job *jobs = NULL;
    int njobs = 0;
    q->event_version = s3_new_version_id(q, obj);
    int rc = s3_notify_jobs(q, s3_event_name(q->route->api, S3_CHANGE_CREATED), obj->key, obj->key_len, obj->size,
                            obj->etag, &jobs, &njobs);
    if (rc == 0) {
        obj->jobs = jobs;
        obj->njobs = njobs;
        s3_write_cond_apply(q, obj);
        rc = meta_object_put(q->gw->d.meta, obj, &old, &had_old);
        obj->jobs = NULL;
        obj->njobs = 0;
        s3_notify_jobs_free(jobs, njobs);
        if (rc == 0) s3_notify_committed(q, njobs);
    }
    if (rc != 0) {
        if (s3_commit_failed_drop_ok(q, rc, obj->version_id)) s3_drop_version_data(q, obj);
        if (rc == CAIRN_EPRECOND) s3_write_cond_refused(q);
        else
            s3_meta_error(q, rc, rc == CAIRN_ENOTFOUND ? "NoSuchBucket" : "InternalError",
                          rc == CAIRN_ENOTFOUND ? NULL : "the metadata commit failed");
        return rc;
    }
    s3_committed_object(q, S3_CHANGE_CREATED, obj);
    if (had_old) {
        s3_drop_version_data(q, &old);
        meta_object_clear(&old);
    }
    return 0;
}

/* Checks the received body against what was announced (length, Content-MD5,
 * x-amz-checksum-*); fills md5.  Nonzero = answered. */
static int verify_body(s3_req *q, unsigned char md5[16]) {
    if (!q->size_unknown && (int64_t)q->payload_bytes != q->declared_size) {
        s3_error(q, "IncompleteBody", NULL);
        return -1;
    }
    unsigned dl = 0;
    EVP_DigestFinal_ex(q->md5, md5, &dl);
    const char *md5h = http_header(q->http, "content-md5");
    if (md5h) {
        uint8_t want[20];
        size_t wl = 0;
        s3_base64_decode(md5h, want, sizeof want, &wl);
        if (memcmp(want, md5, 16) != 0) {
            s3_error(q, "BadDigest", NULL);
            return -1;
        }
    }
    if (!checksum_matches(q)) {
        s3_error(q, "BadDigest", "The checksum you specified did not match what we received.");
        return -1;
    }
    return 0;
}

/* Makes the shards of a verified body durable: fills its version id, size,
 * etag and layout.  Nonzero = answered. */
static int commit_shards(s3_req *q, const unsigned char md5[16], char version_id[33], int64_t *size, char etag[72],
                         char layout[320]) {
    data_writer *w = q->writer;
    q->writer = NULL;
    data_layout l;
    int rc = data_writer_commit(w, &l);
    l.sealed = q->sse.mode != 0;
    if (rc == 0) rc = data_layout_format(&l, layout, 320);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOSPC ? "InsufficientStorage" : "InternalError", "making the object durable failed");
        return -1;
    }
    memcpy(version_id, q->version_id, 33);
    *size = (int64_t)q->payload_bytes;
    hex_encode(md5, 16, etag);
    return 0;
}

int s3_object_take_body(s3_req *q, const unsigned char md5[16], meta_object *obj) {
    if (!q->inline_object) {
        obj->storage = META_STORE_FILE;
        return commit_shards(q, md5, obj->version_id, &obj->size, obj->etag, obj->layout);
    }
    rand_hex_id(obj->version_id, 16);
    obj->size = (int64_t)q->payload_bytes;
    hex_encode(md5, 16, obj->etag);
    obj->storage = META_STORE_INLINE;
    obj->data = (uint8_t *)q->body.data;
    obj->data_len = q->body.len;
    if (q->sse.mode) {
        obj->data = s3_sse_seal_buffer(q, q->sse.key, q->body.data, q->body.len);
        obj->data_len = (size_t)crypt_sealed_size(q->body.len);
        if (!obj->data) {
            s3_error_nomem(q);
            return -1;
        }
    }
    return 0;
}

int s3_object_store_body(s3_req *q, char version_id[33], int64_t *size, char etag[72], char layout[320]) {
    unsigned char md5[16];
    if (verify_body(q, md5) != 0) return -1;
    return commit_shards(q, md5, version_id, size, etag, layout);
}

void s3_put_object(s3_req *q) {
    unsigned char md5[16];
    if (verify_body(q, md5) != 0) return;
    meta_object obj = {0};
    snprintf(obj.bucket, sizeof obj.bucket, "%s", q->bucket);
    obj.bucket_id = q->bucket_id;
    memcpy(obj.key, q->key, q->key_len);
    obj.key_len = q->key_len;
    obj.mtime_ms = time_now_ms();
    obj.owner_id = q->who.user_id;
    if (s3_object_take_body(q, md5, &obj) != 0) return;
    obj.headers_json = s3_headers_json_from_request(q);
    if (!obj.headers_json || s3_lock_stamp(q, &obj.headers_json, obj.mtime_ms, S3_LOCK_HEADERS | S3_LOCK_DEFAULT) != 0 ||
        s3_acl_stamp(q, &obj.headers_json) != 0 || s3_sse_headers_set(q, &obj.headers_json) != 0) {
        s3_drop_version_data(q, &obj);
        return;
    }
    /* A verified checksum is kept: GET and HEAD return it when asked. */
    const char *sum = s3_object_checksum(q);
    if (sum && !(obj.headers_json = s3_ck_headers_set(q, obj.headers_json, q->checksum_name, sum, true))) {
        s3_drop_version_data(q, &obj);
        s3_error_nomem(q);
        return;
    }
    int rc = s3_object_publish(q, &obj);
    if (rc != 0) return;
    s3_sse_add_headers(q, obj.headers_json);
    char etag[80];
    s3_quote_etag(obj.etag, etag, sizeof etag);
    http_add_header(q->http, "ETag", etag);
    s3_new_version_header(q, &obj);
    if (sum) {
        http_add_header(q->http, q->checksum_name, sum);
        http_add_header(q->http, "x-amz-checksum-type", "FULL_OBJECT");
    }
    http_respond(q->http, 200, "", 0);
}

/* ---- GET / HEAD ------------------------------------------------------------------------------ */

/*
 * An object's bytes, whether one erasure-coded version or the parts of a
 * multipart upload: reads locate the part holding an offset and keep one data
 * reader (verifying and rebuilding blocks) open at a time.  It holds no
 * reference to the request, so a response can outlive it.
 */
struct obj_reader {
    data_store *ds;
    meta_part *parts;      /* owned; one pseudo-part for a plain object */
    int nparts;
    bool multipart;
    int cur;               /* part whose reader is open, -1 none */
    data_reader *r;
    /* Sealed bytes (sse.c): the version's key, the open part's own (a
     * multipart part's is derived from the version's), and the one package
     * opened last. */
    bool sealed;
    uint8_t key[CRYPT_KEY];
    uint8_t part_key[CRYPT_KEY];
    uint8_t *stored;       /* CRYPT_PACKAGE + CRYPT_TAG */
    uint8_t *plain;        /* CRYPT_PACKAGE */
    int pkg_part;          /* the part and package plain holds, -1 none */
    uint64_t pkg_index;
    size_t pkg_len;
};

static int add_part(void *ud, const meta_part *p) {
    obj_reader *o = ud;
    meta_part *np = realloc(o->parts, (size_t)(o->nparts + 1) * sizeof *np);
    if (!np) return 1;
    o->parts = np;
    o->parts[o->nparts++] = *p;
    return 0;
}

void obj_reader_close(obj_reader *o) {
    if (!o) return;
    data_reader_close(o->r);
    free(o->parts);
    if (o->plain) OPENSSL_cleanse(o->plain, CRYPT_PACKAGE);
    free(o->plain);
    free(o->stored);
    OPENSSL_cleanse(o->key, sizeof o->key);
    OPENSSL_cleanse(o->part_key, sizeof o->part_key);
    free(o);
}

/* Opens reading at part i. */
static int obj_reader_seek_part(obj_reader *o, int i) {
    if (o->cur == i) return 0;
    data_reader_close(o->r);
    o->r = NULL;
    o->cur = -1;
    data_layout l;
    if (data_layout_parse(o->parts[i].layout, &l) != 0) return CAIRN_EIO;
    /* A version's bytes are sealed or not as a whole: a layout that
     * disagrees was not written by this code. */
    if (l.sealed != o->sealed) return CAIRN_EIO;
    if (o->sealed && o->multipart) crypt_part_key(o->key, o->parts[i].version_id, o->part_key);
    else if (o->sealed) memcpy(o->part_key, o->key, CRYPT_KEY);
    int rc = data_reader_open(o->ds, o->parts[i].version_id, &l, o->parts[i].size, &o->r);
    if (rc == 0) o->cur = i;
    return rc;
}

/* CAIRN_ENOTFOUND when the bytes are gone (replaced or deleted since the row
 * was read), CAIRN_EIO when they cannot be rebuilt. */
int obj_reader_open(s3_req *q, const meta_object *obj, const uint8_t *key, obj_reader **out) {
    obj_reader *o = calloc(1, sizeof *o);
    if (!o) return CAIRN_ENOMEM;
    o->ds = q->gw->d.data;
    o->cur = -1;
    o->pkg_part = -1;
    int rc = 0;
    if (key) {
        o->sealed = true;
        memcpy(o->key, key, CRYPT_KEY);
        o->stored = malloc(CRYPT_PACKAGE + CRYPT_TAG);
        o->plain = malloc(CRYPT_PACKAGE);
        if (!o->stored || !o->plain) rc = CAIRN_ENOMEM;
    }
    if (!strncmp(obj->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX))) {
        o->multipart = true;
        rc = meta_object_parts(q->gw->d.meta, obj->version_id, add_part, o);
        if (s3_meta_unavailable(rc)) q->meta_failure = rc;
        if (rc == 0 && o->nparts == 0) rc = CAIRN_ENOTFOUND;
    } else {
        meta_part p = {0};
        memcpy(p.version_id, obj->version_id, sizeof p.version_id);
        p.size = obj->size;
        snprintf(p.layout, sizeof p.layout, "%s", obj->layout);
        rc = add_part(o, &p) ? CAIRN_ENOMEM : 0;
    }
    if (rc == 0) rc = obj_reader_seek_part(o, 0);
    if (rc != 0) {
        if (rc == CAIRN_EIO && o->nparts > 0 && o->cur < 0)
            log_write(LOG_ERROR, q->http->request_id, "object's bytes cannot be opened (lost shards, or a layout whose "
                      "sealing disagrees with the version's headers)", "version_id", obj->version_id, NULL);
        if (rc != CAIRN_ENOTFOUND && rc != CAIRN_EIO && rc != CAIRN_ENOMEM)
            log_write(LOG_ERROR, q->http->request_id, "object has no valid layout", "version_id", obj->version_id, NULL);
        obj_reader_close(o);
        return rc == CAIRN_ENOTFOUND || rc == CAIRN_ENOMEM ? rc : CAIRN_EIO;
    }
    *out = o;
    return 0;
}

/* Reads from part i's plaintext at off (inside the part): opens the package
 * holding off, and only that one.  CAIRN_EAUTH when it does not
 * authenticate (tampered, truncated, reordered: never its bytes). */
static ssize_t read_sealed(obj_reader *o, int i, uint64_t off, void *buf, size_t n) {
    uint64_t size = (uint64_t)o->parts[i].size, idx = off / CRYPT_PACKAGE;
    uint64_t npk = crypt_packages(size);
    size_t within = (size_t)(off - idx * CRYPT_PACKAGE);
    if (o->pkg_part != i || o->pkg_index != idx) {
        o->pkg_part = -1;
        size_t plen = idx + 1 == npk ? (size_t)(size - idx * CRYPT_PACKAGE) : CRYPT_PACKAGE;
        size_t want = plen + CRYPT_TAG, got = 0;
        uint64_t at = idx * (uint64_t)(CRYPT_PACKAGE + CRYPT_TAG);
        /* A package inside one stripe is opened where the reader holds it;
         * one across stripes is gathered first. */
        const void *in = NULL;
        ssize_t r = data_reader_peek(o->r, at, &in, want);
        if (r < 0) return r;
        if (r == 0) return CAIRN_EAUTH; /* shorter than its size says: truncated */
        const uint8_t *sealed = in;
        if ((size_t)r < want) {
            memcpy(o->stored, in, (size_t)r);
            got = (size_t)r;
            while (got < want) {
                ssize_t m = data_reader_read(o->r, at + got, o->stored + got, want - got);
                if (m < 0) return m;
                if (m == 0) return CAIRN_EAUTH;
                got += (size_t)m;
            }
            sealed = o->stored;
        }
        /* A read of the whole package (a sequential GET) opens it straight
         * into the caller's buffer: one copy fewer. */
        if (within == 0 && n >= plen) {
            int rc = crypt_package_open(o->part_key, idx, idx + 1 == npk, sealed, want, buf);
            return rc != 0 ? rc : (ssize_t)plen;
        }
        int rc = crypt_package_open(o->part_key, idx, idx + 1 == npk, sealed, want, o->plain);
        if (rc != 0) return rc;
        o->pkg_part = i;
        o->pkg_index = idx;
        o->pkg_len = plen;
    }
    if (within >= o->pkg_len) return 0;
    size_t take = o->pkg_len - within < n ? o->pkg_len - within : n;
    memcpy(buf, o->plain + within, take);
    return (ssize_t)take;
}

ssize_t obj_reader_read(obj_reader *o, uint64_t off, void *buf, size_t n) {
    int i = o->cur >= 0 ? o->cur : 0;
    while (i > 0 && (uint64_t)o->parts[i].offset > off) i--;
    while (i + 1 < o->nparts && (uint64_t)(o->parts[i].offset + o->parts[i].size) <= off) i++;
    if (off >= (uint64_t)(o->parts[i].offset + o->parts[i].size)) return 0;
    int rc = obj_reader_seek_part(o, i);
    if (rc != 0) return rc == CAIRN_ENOTFOUND ? CAIRN_EIO : rc;
    if (o->sealed) return read_sealed(o, i, off - (uint64_t)o->parts[i].offset, buf, n);
    return data_reader_read(o->r, off - (uint64_t)o->parts[i].offset, buf, n);
}

/* A GET body served from an object reader. */
typedef struct {
    obj_reader *reader;
    uint64_t start;
    char request_id[40];
    char version_id[33];
    s3_rate rate;               /* what its bytes are charged to (limits.c) */
} object_stream;

static long stream_object(void *ud, uint64_t pos, char *buf, size_t max) {
    object_stream *st = ud;
    size_t done = 0;
    while (done < max) {
        ssize_t n = obj_reader_read(st->reader, st->start + pos + done, buf + done, max - done);
        if (n < 0) {
            /* The status line is sent: the only honest answer left is to cut the
             * connection, so the client sees a short body, never wrong bytes. */
            log_write(LOG_ERROR, st->request_id,
                      n == CAIRN_EAUTH ? "object unreadable mid-response: a sealed package does not authenticate"
                                       : "object unreadable mid-response: too many shards lost",
                      "version_id", st->version_id, NULL);
            return -1;
        }
        if (n == 0) break;
        done += (size_t)n;
    }
    s3_rate_flow(&st->rate, done);
    return done ? (long)done : -1;
}

static void stream_free(void *ud) {
    object_stream *st = ud;
    s3_rate_flush(&st->rate);
    obj_reader_close(st->reader);
    free(st);
}

static void unreadable(s3_req *q) {
    char msg[1200];
    snprintf(msg, sizeof msg, "The object %s/%.*s cannot be read: more shards are lost than parity can rebuild.",
             q->bucket, (int)q->key_len, q->key);
    s3_error(q, "InternalError", msg);
}

/* The byte range of part N of an object: multipart parts by number; a plain
 * object has one part.  Fills the part count and a multipart part's stored
 * checksum (meta_part.checksum; "" for none or a plain object).  Nonzero =
 * answered. */
static int part_range(s3_req *q, const meta_object *o, int64_t *start, int64_t *len, int *nparts,
                      char checksum[sizeof ((meta_part *)0)->checksum]) {
    checksum[0] = '\0';
    const char *pn = s3_param_get(q, "partNumber");
    char *end = NULL;
    long n = strtol(pn, &end, 10);
    if (!*pn || *end || n < 1 || n > 10000) {
        s3_error(q, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
        return -1;
    }
    obj_reader tmp = {0};
    bool multipart = !strncmp(o->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX));
    int prc = multipart ? meta_object_parts(q->gw->d.meta, o->version_id, add_part, &tmp) : 0;
    if (prc != 0) {
        free(tmp.parts);
        s3_meta_error(q, prc, "InternalError", "reading the object's parts failed");
        return -1;
    }
    *nparts = multipart ? tmp.nparts : 1;
    int rc = -1;
    if (!multipart && n == 1) {
        /* An object uploaded whole is its own part 1. */
        *start = 0;
        *len = o->size;
        rc = 0;
    }
    /* Parts are named by the numbers they were uploaded with, which need not
     * be contiguous (a complete may choose parts 1 and 3). */
    for (int i = 0; multipart && i < tmp.nparts; i++) {
        if (tmp.parts[i].part_number != n) continue;
        *start = tmp.parts[i].offset;
        *len = tmp.parts[i].size;
        memcpy(checksum, tmp.parts[i].checksum, sizeof tmp.parts[i].checksum);
        rc = 0;
    }
    free(tmp.parts);
    if (rc) s3_error(q, "InvalidPartNumber", "The requested partnumber is not satisfiable");
    return rc;
}

static void tampered(s3_req *q, const meta_object *o) {
    log_write(LOG_ERROR, q->http->request_id, "sealed object bytes do not authenticate: tampered or damaged",
              "version_id", o->version_id, NULL);
    s3_error(q, "InternalError", "The object's stored bytes do not authenticate: they were damaged or tampered with.");
}

/* A sealed version's key, once access is judged: its reader opened with it
 * (GET of a FILE version), or its inline bytes opened in place.  HEAD
 * checks an SSE-C key and opens nothing.  Nonzero = answered. */
static int open_sealed(s3_req *q, meta_object *o, bool head, obj_reader **reader) {
    if (*reader || o->delete_marker) return 0;
    if (head) return s3_sse_check_head(q, o->headers_json);
    uint8_t key[CRYPT_KEY];
    const uint8_t *kp = NULL;
    if (s3_sse_read_key(q, o->headers_json, false, key, &kp) != 0) return -1;
    int rc = 0;
    if (kp && o->storage == META_STORE_INLINE) {
        uint8_t *plain = NULL;
        rc = s3_sse_open_buffer(kp, o->data, o->data_len, o->size, &plain);
        if (rc == 0) {
            free(o->data);
            o->data = plain;
            o->data_len = (size_t)o->size;
        }
    } else if (kp || o->storage == META_STORE_FILE) {
        /* An overwrite that removed the bytes since the row was read is
         * not retried here (get_object's loop does, for plain versions):
         * it answers 500, and the client's retry reads the new version. */
        rc = o->storage == META_STORE_FILE ? obj_reader_open(q, o, kp, reader) : 0;
    }
    OPENSSL_cleanse(key, sizeof key);
    if (rc == 0) return 0;
    if (rc == CAIRN_EAUTH) tampered(q, o);
    else if (rc == CAIRN_ENOMEM) s3_error_nomem(q);
    else if (q->meta_failure) s3_meta_error(q, q->meta_failure, "InternalError", NULL);
    else unreadable(q);
    return -1;
}

static void get_object(s3_req *q, bool head) {
    http_req *r = q->http;
    const char *version = s3_param_get(q, "versionId");
    if (s3_version_param(q, version) != 0) return;
    meta_object o = {0};
    obj_reader *reader = NULL;
    int rc = 0;
    /* An overwrite may remove the shards between reading the row and opening
     * them; reading the row again then finds the new version.  If the row
     * still names the version whose shards are all gone, they are lost, not
     * replaced: that is an unreadable object (500), never a missing key. */
    char tried[33] = "";
    for (int attempt = 0; attempt < 4; attempt++) {
        meta_object_clear(&o);
        rc = version ? meta_object_get_version(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, version,
                                               !head, &o)
                     : meta_object_get_current(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, !head, &o);
        if (s3_meta_unavailable(rc)) q->meta_failure = rc;
        if (rc != 0 || o.storage != META_STORE_FILE || head) break;   /* NoSuchKey stays NoSuchKey */
        if (!strcmp(tried, o.version_id)) {
            rc = CAIRN_EIO;
            break;
        }
        /* Sealed bytes are opened once access is judged (below): a key's
         * errors tell nothing to one who may not read the object. */
        if (s3_sse_sealed(o.headers_json)) break;
        rc = obj_reader_open(q, &o, NULL, &reader);
        if (rc != CAIRN_ENOTFOUND) break;
        memcpy(tried, o.version_id, sizeof tried);
        rc = CAIRN_EIO; /* if the attempts run out, the shards are lost */
    }
    /* A caller only an object's ACL might admit learns nothing of a key
     * it may not read: no such key, or a delete marker, is AccessDenied
     * (S3: without s3:ListBucket). */
    if (q->object_acl_pending && ((rc == CAIRN_ENOTFOUND && !q->meta_failure) || (rc == 0 && o.delete_marker))) {
        meta_object_clear(&o);
        s3_error(q, "AccessDenied", NULL);
        return;
    }
    if (rc == 0 && s3_object_acl_check(q, &o) != 0) {
        meta_object_clear(&o);
        return;
    }
    if (rc != 0) {
        if (q->meta_failure) s3_meta_error(q, q->meta_failure, "InternalError", NULL);
        else if (rc == CAIRN_ENOTFOUND) s3_error(q, version ? "NoSuchVersion" : "NoSuchKey", NULL);
        else if (rc == CAIRN_EIO) unreadable(q);
        else s3_error(q, "InternalError", "reading the object failed");
        meta_object_clear(&o);
        return;
    }
    if (o.delete_marker) {
        /* A delete marker has no bytes: 404 when it is the current version,
         * 405 when asked for by its id (S3), saying what it is either way. */
        http_add_header(r, "x-amz-delete-marker", "true");
        http_add_header(r, "x-amz-version-id", s3_version_id(&o));
        if (version) {
            char lm[40];
            time_fmt_http(o.mtime_ms, lm, sizeof lm);
            http_add_header(r, "Last-Modified", lm);
        }
        s3_error(q, version ? "MethodNotAllowed" : "NoSuchKey", NULL);
        meta_object_clear(&o);
        return;
    }
    if (open_sealed(q, &o, head, &reader) != 0) {
        meta_object_clear(&o);
        return;
    }
    if (version || q->bk.versioning != META_VERSIONING_OFF) http_add_header(r, "x-amz-version-id", s3_version_id(&o));
    char etag[80], lm[40];
    s3_quote_etag(o.etag, etag, sizeof etag);
    time_fmt_http(o.mtime_ms, lm, sizeof lm);
    int cond = s3_eval_conditionals(http_header(r, "if-match"), http_header(r, "if-none-match"),
                                    http_header(r, "if-modified-since"),
                                    http_header(r, "if-unmodified-since"), o.etag, o.mtime_ms);
    int64_t start = 0, len = o.size;
    int nparts = 0;
    char part_ck[sizeof ((meta_part *)0)->checksum] = "";
    bool by_part = s3_param_has(q, "partNumber");
    s3_range_result rr = S3_RANGE_NONE;
    if (by_part && !cond) {
        if (part_range(q, &o, &start, &len, &nparts, part_ck) != 0) {
            obj_reader_close(reader);
            meta_object_clear(&o);
            return;
        }
        rr = nparts > 1 || strncmp(o.layout, META_MULTIPART_PREFIX, 3) == 0 ? S3_RANGE_OK : S3_RANGE_NONE;
    } else if (!cond) {
        rr = s3_parse_range(http_header(r, "range"), o.size, &start, &len);
    }
    if (rr == S3_RANGE_NONE) {
        start = 0;
        len = o.size;
    }
    if (nparts > 1 || (by_part && !strncmp(o.layout, META_MULTIPART_PREFIX, 3))) {
        char pc[16];
        snprintf(pc, sizeof pc, "%d", nparts);
        http_add_header(r, "x-amz-mp-parts-count", pc);
    }
    /* Read the first bytes before answering: a lost object gets a clean 500,
     * not a 200 that breaks off. */
    if (!cond && rr != S3_RANGE_UNSATISFIABLE && reader && len > 0) {
        char probe[1];
        ssize_t pr = obj_reader_read(reader, (uint64_t)start, probe, 1);
        if (pr < 0) {
            obj_reader_close(reader);
            if (pr == CAIRN_EAUTH) {
                tampered(q, &o);
            } else {
                unreadable(q);
            }
            meta_object_clear(&o);
            return;
        }
    }
    if (cond || rr == S3_RANGE_UNSATISFIABLE) {
        obj_reader_close(reader);
        if (cond == 304) {
            http_add_header(r, "ETag", etag);
            http_add_header(r, "Last-Modified", lm);
            http_respond(r, 304, "", 0);
        } else if (cond == 412) {
            s3_error(q, "PreconditionFailed", NULL);
        } else {
            char cr[64];
            snprintf(cr, sizeof cr, "bytes */%lld", (long long)o.size);
            http_add_header(r, "Content-Range", cr);
            s3_error(q, "InvalidRange", NULL);
        }
        meta_object_clear(&o);
        return;
    }
    unsigned status = 200;
    if (rr == S3_RANGE_OK) {
        status = 206;
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", (long long)start, (long long)(start + len - 1),
                 (long long)o.size);
        http_add_header(r, "Content-Range", cr);
    }
    bool has_ct = false;
    add_object_headers(q, o.headers_json, &has_ct);
    if (o.is_latest) s3_lifecycle_expiration_header(q, &o);
    /* The checksum of the bytes sent: the whole object's with a response
     * of the whole (a plain object's part 1 included), a part's own with
     * a part of a multipart object; a range has none. */
    if ((rr == S3_RANGE_NONE || by_part) && s3_ck_mode_enabled(q)) {
        s3_ck_stored ck;
        s3_ck_from_headers(o.headers_json, &ck);
        if (by_part && rr == S3_RANGE_OK) {
            const char *v;
            ck.alg = s3_ck_split(part_ck, &v);
            if (ck.alg) snprintf(ck.value, sizeof ck.value, "%s", v);
        }
        s3_ck_add_headers(q, &ck);
    }
    if (!has_ct) http_add_header(r, "Content-Type", "binary/octet-stream");
    http_add_header(r, "ETag", etag);
    http_add_header(r, "Last-Modified", lm);
    http_add_header(r, "Accept-Ranges", "bytes");
    if (head) {
        /* MHD sends the headers of a body of this size, and not the body. */
        http_respond_stream(r, status, (uint64_t)len, NULL, NULL, NULL);
    } else if (o.storage == META_STORE_INLINE) {
        if ((int64_t)o.data_len != o.size) {
            s3_error(q, "InternalError", "inline object size mismatch");
        } else {
            s3_rate_flow(&q->rate, (size_t)len);
            http_respond(r, status, o.data + start, (size_t)len);
        }
    } else if (len == 0) {
        obj_reader_close(reader);
        http_respond(r, status, "", 0);
    } else {
        object_stream *st = calloc(1, sizeof *st);
        if (!st) {
            obj_reader_close(reader);
            s3_error(q, "InternalError", NULL);
        } else {
            st->reader = reader;
            st->start = (uint64_t)start;
            snprintf(st->request_id, sizeof st->request_id, "%s", r->request_id);
            snprintf(st->version_id, sizeof st->version_id, "%s", o.version_id);
            st->rate = q->rate;
            s3_rate_subject_fix(&st->rate);
            http_respond_stream(r, status, (uint64_t)len, stream_object, st, stream_free);
        }
    }
    meta_object_clear(&o);
}

void s3_get_object(s3_req *q) { get_object(q, false); }
void s3_head_object(s3_req *q) { get_object(q, true); }

/* ---- COPY ---------------------------------------------------------------------------------------- */

int s3_parse_copy_source(const char *src, char *bucket, size_t blen, char *key, size_t *klen, char *version,
                         size_t vlen, bool *has_version) {
    *has_version = false;
    if (!src || vlen == 0) return CAIRN_EINVAL;
    version[0] = '\0';
    size_t n = strcspn(src, "?");
    if (src[n] == '?') {
        /* The only parameter S3 defines here is versionId. */
        const char *q = src + n + 1;
        if (strncmp(q, "versionId=", 10) != 0) return CAIRN_EINVAL;
        size_t ql = strlen(q + 10);
        if (ql >= vlen) return CAIRN_EINVAL;
        long vl = url_decode(q + 10, ql, version);
        if (vl < 0 || (size_t)vl != strlen(version)) return CAIRN_EINVAL;
        *has_version = true;
    }
    char *dec = malloc(n + 1);
    if (!dec) return CAIRN_ENOMEM;
    long dl = url_decode(src, n, dec);
    if (dl < 0) { free(dec); return CAIRN_EINVAL; }
    const char *p = dec;
    if (*p == '/') p++;
    const char *slash = memchr(p, '/', (size_t)(dec + dl - p));
    if (!slash || (size_t)(slash - p) >= blen || slash == p) { free(dec); return CAIRN_EINVAL; }
    memcpy(bucket, p, (size_t)(slash - p));
    bucket[slash - p] = '\0';
    size_t kl = (size_t)(dec + dl - slash - 1);
    if (kl == 0 || kl > 1024 || memchr(slash + 1, '\0', kl) || memchr(bucket, '\0', (size_t)(slash - p)) ||
        !s3_utf8_valid(slash + 1, kl)) {
        free(dec);
        return CAIRN_EINVAL;
    }
    memcpy(key, slash + 1, kl);
    key[kl] = '\0';
    *klen = kl;
    free(dec);
    return 0;
}

int s3_version_param(s3_req *q, const char *version) {
    if (!version) return 0;
    if (!*version) {
        s3_error(q, "InvalidArgument", "Version id cannot be the empty string");
        return -1;
    }
    /* Any other id is looked up: one that is not there is NoSuchVersion. */
    return 0;
}

int s3_load_copy_source(s3_req *q, meta_object *src, char sbucket[256], char skey[1025], size_t *sklen) {
    http_req *r = q->http;
    memset(src, 0, sizeof *src);
    char version[1100];
    bool has_version = false;
    if (s3_parse_copy_source(http_header(r, "x-amz-copy-source"), sbucket, 256, skey, sklen, version, sizeof version,
                             &has_version) != 0) {
        s3_error(q, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
        return -1;
    }
    meta_bucket sbk;
    int rc = meta_bucket_get(q->gw->d.meta, sbucket, &sbk);
    if (rc == CAIRN_ENOTFOUND) { s3_error(q, "NoSuchBucket", "The source bucket does not exist."); return -1; }
    if (rc != 0) { s3_meta_error(q, rc, "InternalError", NULL); return -1; }
    if (!s3_expected_owner_ok(http_header(r, "x-amz-source-expected-bucket-owner"), &sbk)) {
        s3_error(q, "AccessDenied", "The source bucket is not owned by the account x-amz-source-expected-bucket-owner names.");
        return -1;
    }
    const char *action = has_version ? "s3:GetObjectVersion" : "s3:GetObject";
    bool pending = false;
    if (s3_authorize_object(q, &sbk, action, skey, *sklen, &pending) != 0) return -1;
    if (s3_version_param(q, has_version ? version : NULL) != 0) return -1;
    rc = has_version ? meta_object_get_version(q->gw->d.meta, sbucket, sbk.id, skey, *sklen, version, true, src)
                     : meta_object_get(q->gw->d.meta, sbucket, sbk.id, skey, *sklen, true, src);
    /* One only the source's own ACL might admit learns nothing of a key it
     * may not read. */
    if (pending && (rc == CAIRN_ENOTFOUND || (rc == 0 && src->delete_marker))) {
        meta_object_clear(src);
        s3_error(q, "AccessDenied", NULL);
        return -1;
    }
    if (rc == 0 && s3_object_check(q, &sbk, action, pending, src) != 0) {
        meta_object_clear(src);
        return -1;
    }
    if (rc == 0 && src->delete_marker) {
        /* A delete marker named by its id is no source: S3 answers 400. */
        meta_object_clear(src);
        s3_error(q, "InvalidRequest", "The source of a copy request may not specifically refer to a delete marker "
                                      "by version id.");
        return -1;
    }
    if (rc == CAIRN_ENOTFOUND) { s3_error(q, has_version ? "NoSuchVersion" : "NoSuchKey", NULL); return -1; }
    if (rc != 0) { s3_meta_error(q, rc, "InternalError", NULL); return -1; }
    if (has_version || sbk.versioning != META_VERSIONING_OFF)
        http_add_header(r, "x-amz-copy-source-version-id", s3_version_id(src));
    int cond = s3_eval_conditionals(http_header(r, "x-amz-copy-source-if-match"),
                                    http_header(r, "x-amz-copy-source-if-none-match"),
                                    http_header(r, "x-amz-copy-source-if-modified-since"),
                                    http_header(r, "x-amz-copy-source-if-unmodified-since"), src->etag, src->mtime_ms);
    if (cond) {
        meta_object_clear(src);
        s3_error(q, "PreconditionFailed", NULL);
        return -1;
    }
    /* A sealed source's key (SSE-C: the x-amz-copy-source-server-side-
     * encryption-customer-* headers); its inline bytes are opened here. */
    const uint8_t *kp = NULL;
    if (s3_sse_read_key(q, src->headers_json, true, q->src_key, &kp) != 0) {
        meta_object_clear(src);
        return -1;
    }
    q->src_sealed = kp != NULL;
    if (kp && src->storage == META_STORE_INLINE) {
        uint8_t *plain = NULL;
        rc = s3_sse_open_buffer(kp, src->data, src->data_len, src->size, &plain);
        if (rc != 0) {
            if (rc == CAIRN_EAUTH) tampered(q, src);
            else s3_error_nomem(q);
            meta_object_clear(src);
            return -1;
        }
        free(src->data);
        src->data = plain;
        src->data_len = (size_t)src->size;
    }
    return 0;
}

typedef struct {
    EVP_MD_CTX *md5;
    s3_ck *ck;
} copy_tap_ctx;

static void copy_tap(void *ud, const void *p, size_t n) {
    copy_tap_ctx *t = ud;
    EVP_DigestUpdate(t->md5, p, n);
    if (t->ck) s3_ck_update(t->ck, p, n);
}

int s3_copy_range(s3_req *q, const meta_object *src, int64_t start, int64_t len, const char *version_id,
                  const uint8_t *key, char etag[72], char layout[320], s3_ck *ck) {
    obj_reader *r = NULL;
    data_writer *w = NULL;
    /* A copy is a plain object: its ETag is the MD5 of its bytes (for a
     * multipart source that differs from the source's "-N" ETag). */
    EVP_MD_CTX *md5 = EVP_MD_CTX_new();
    char *buf = malloc(256 * 1024);
    bool inline_src = src->storage == META_STORE_INLINE;
    int rc = md5 && buf && EVP_DigestInit_ex(md5, EVP_md5(), NULL) ? 0 : CAIRN_ENOMEM;
    if (rc == 0 && !inline_src) rc = obj_reader_open(q, src, q->src_sealed ? q->src_key : NULL, &r);
    copy_tap_ctx tap = {md5, ck};
    /* A sealed copy is hashed here and sealed on its way to the writer. */
    s3_sealer sealer;
    if (key) s3_sealer_init(&sealer, key);
    if (rc == 0)
        rc = key ? data_writer_open_size(q->gw->d.data, version_id, (int64_t)crypt_sealed_size((uint64_t)len), NULL, NULL, &w)
                 : data_writer_open_size(q->gw->d.data, version_id, len, copy_tap, &tap, &w);
    for (int64_t off = 0; rc == 0 && off < len;) {
        size_t want = len - off < 256 * 1024 ? (size_t)(len - off) : 256 * 1024;
        const char *p = inline_src ? (const char *)src->data + start + off : buf;
        ssize_t n = inline_src ? (ssize_t)want : obj_reader_read(r, (uint64_t)(start + off), buf, want);
        if (n <= 0) {
            rc = n < 0 ? (int)n : CAIRN_EIO;
            break;
        }
        if (key) {
            copy_tap(&tap, p, (size_t)n);
            rc = s3_sealer_write(&sealer, w, p, (size_t)n);
        } else {
            rc = data_writer_write(w, p, (size_t)n);
        }
        off += n;
    }
    if (rc == 0 && key) rc = s3_sealer_finish(&sealer, w);
    if (key) s3_sealer_free(&sealer);
    if (rc == 0) rc = data_writer_finish(w);
    if (rc == 0) {
        unsigned char digest[16];
        unsigned dl = 0;
        EVP_DigestFinal_ex(md5, digest, &dl);
        hex_encode(digest, 16, etag);
        data_layout l;
        data_writer *cw = w;
        w = NULL;
        rc = data_writer_commit(cw, &l);
        l.sealed = key != NULL;
        if (rc == 0) rc = data_layout_format(&l, layout, 320);
    }
    if (w) data_writer_abort(w);
    obj_reader_close(r);
    EVP_MD_CTX_free(md5);
    free(buf);
    return rc;
}

void s3_copy_object(s3_req *q) {
    http_req *r = q->http;
    const char *directive = http_header(r, "x-amz-metadata-directive");
    bool replace = directive && !strcasecmp(directive, "REPLACE");
    if (directive && !replace && strcasecmp(directive, "COPY") != 0) {
        s3_error(q, "InvalidArgument", "Unknown metadata directive.");
        return;
    }
    const char *tdirective = http_header(r, "x-amz-tagging-directive");
    bool replace_tags = tdirective && !strcmp(tdirective, "REPLACE");
    if (tdirective && !replace_tags && strcmp(tdirective, "COPY") != 0) {
        s3_error(q, "InvalidArgument", "Unknown tagging directive.");
        return;
    }
    /* The tags the copy gets: the request's (REPLACE) or the source's (COPY). */
    s3_tagset tags = {0};
    if (replace_tags && s3_tagging_header(q, &tags) != 0) return;
    char sbucket[256], skey[1025];
    size_t sklen = 0;
    meta_object src;
    if (s3_load_copy_source(q, &src, sbucket, skey, &sklen) != 0) {
        s3_tagset_free(&tags);
        return;
    }
    int rc = replace_tags ? 0 : s3_tagset_from_headers(src.headers_json, &tags);
    if (rc != 0) {
        meta_object_clear(&src);
        s3_error(q, "InternalError", "the source's stored headers do not read back");
        return;
    }
    /* The copy's own encryption: the request's, else the bucket's default. */
    if (s3_sse_begin_write(q) != 0) {
        meta_object_clear(&src);
        s3_tagset_free(&tags);
        return;
    }
    bool sse_change = http_header(r, "x-amz-server-side-encryption") ||
                      http_header(r, "x-amz-server-side-encryption-customer-algorithm");
    if (!strcmp(sbucket, q->bucket) && sklen == q->key_len && !memcmp(skey, q->key, sklen) && !replace && !sse_change) {
        meta_object_clear(&src);
        s3_tagset_free(&tags);
        s3_error(q, "InvalidRequest",
                 "This copy request is illegal because it is trying to copy an object to itself without "
                 "changing the object's metadata, storage class, website redirect location or encryption attributes.");
        return;
    }
    if (src.size > q->gw->cfg.max_object_size) {
        meta_object_clear(&src);
        s3_tagset_free(&tags);
        s3_error(q, "EntityTooLarge", NULL);
        return;
    }
    meta_object dst = {0};
    snprintf(dst.bucket, sizeof dst.bucket, "%s", q->bucket);
    dst.bucket_id = q->bucket_id;
    memcpy(dst.key, q->key, q->key_len);
    dst.key_len = q->key_len;
    rand_hex_id(dst.version_id, 16);
    dst.size = src.size;
    snprintf(dst.etag, sizeof dst.etag, "%s", src.etag);
    dst.mtime_ms = time_now_ms();
    dst.owner_id = q->who.user_id;
    dst.storage = src.storage;
    /* The source's are src's until it is cleared, after the commit. */
    dst.headers_json = replace ? s3_headers_json_from_request(q) : src.headers_json ? src.headers_json : "{}";
    if (dst.headers_json) dst.headers_json = s3_headers_json_tagged(q, dst.headers_json, &tags);
    s3_tagset_free(&tags);
    /* The copy has the source's bytes, not its parts: a full-object
     * checksum still holds, a composite one does not. */
    s3_ck_stored ck;
    s3_ck_from_headers(dst.headers_json, &ck);
    if (ck.alg && !ck.full_object && !(dst.headers_json = s3_ck_headers_set(q, dst.headers_json, NULL, NULL, false))) {
        meta_object_clear(&src);
        s3_error_nomem(q);
        return;
    }
    /* The copy's lock is its own (its headers, or the bucket's default),
     * never the source's. */
    if (!dst.headers_json ||
        s3_lock_stamp(q, &dst.headers_json, dst.mtime_ms, S3_LOCK_HEADERS | S3_LOCK_DEFAULT | S3_LOCK_STRIP) != 0 ||
        s3_acl_stamp(q, &dst.headers_json) != 0 || s3_sse_headers_set(q, &dst.headers_json) != 0) {
        meta_object_clear(&src);
        return;
    }
    /* The source's bytes were opened (s3_load_copy_source); the copy is
     * sealed under a key of its own, never the source's. */
    if (src.storage == META_STORE_INLINE) {
        dst.data = q->sse.mode ? s3_sse_seal_buffer(q, q->sse.key, src.data, src.data_len) : src.data;
        dst.data_len = q->sse.mode ? (size_t)crypt_sealed_size(src.data_len) : src.data_len;
        if (!dst.data) {
            meta_object_clear(&src);
            s3_error_nomem(q);
            return;
        }
    } else if ((rc = s3_copy_range(q, &src, 0, src.size, dst.version_id, q->sse.mode ? q->sse.key : NULL, dst.etag,
                                   dst.layout, NULL)) != 0) {
        meta_object_clear(&src);
        if (q->meta_failure) s3_meta_error(q, q->meta_failure, "InternalError", NULL);
        else s3_error(q, rc == CAIRN_ENOSPC ? "InsufficientStorage" : rc == CAIRN_ENOTFOUND ? "NoSuchKey" : "InternalError", NULL);
        return;
    }
    rc = s3_object_publish(q, &dst);
    meta_object_clear(&src);
    if (rc != 0) return;
    s3_new_version_header(q, &dst);
    s3_sse_add_headers(q, dst.headers_json);
    char ts[40];
    time_fmt_iso8601(dst.mtime_ms, ts, sizeof ts);
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                   "<LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag></CopyObjectResult>", ts, dst.etag);
    s3_respond_xml(q, 200, &b);
}

/* ---- DELETE -------------------------------------------------------------------------------------- */

/* The post-commit hooks of a removal: the removed object under its key. */
static void s3_removed(s3_req *q, meta_object *old, const char *key, size_t key_len) {
    if (key_len < sizeof old->key) {
        memcpy(old->key, key, key_len);
        old->key[key_len] = '\0';
        old->key_len = key_len;
    }
    s3_committed_object(q, S3_CHANGE_REMOVED, old);
}

void s3_delete_object(s3_req *q) {
    const char *version = s3_param_get(q, "versionId");
    if (s3_version_param(q, version) != 0) return;
    meta_delete_result res;
    memset(&res, 0, sizeof res);
    meta_job *jobs = NULL;
    int njobs = 0;
    /* Where versions are kept a plain DELETE makes a delete marker.  Its id
     * is drawn here, not by the commit, so the events queued with the
     * commit name it as the response does. */
    bool marker = !version && q->bk.versioning != META_VERSIONING_OFF;
    char marker_id[33] = "";
    if (marker) rand_hex_id(marker_id, 16);
    q->event_version = marker ? s3_marker_event_version(q, marker_id) : version;
    int rc = s3_notify_jobs(q, marker ? "ObjectRemoved:DeleteMarkerCreated" : s3_event_name(q->route->api, S3_CHANGE_REMOVED),
                            q->key, q->key_len, -1, NULL, &jobs, &njobs);
    if (rc == 0) {
        /* Object lock is checked by meta in the delete's own transaction. */
        meta_lock_check lock = {.now_ms = time_now_ms(), .bypass_governance = s3_lock_bypass(q)};
        rc = meta_object_delete_version_lock(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, version,
                                             q->who.user_id, marker ? marker_id : NULL, &lock, jobs, njobs, &res);
        s3_notify_jobs_free(jobs, njobs);
        if (rc == 0) s3_notify_committed(q, njobs);
    }
    if (rc == CAIRN_ELOCKED) {
        s3_lock_refused(q, "deleting a locked version");
        return;
    }
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        s3_meta_error(q, rc, "InternalError", "deleting the object failed");
        return;
    }
    /* A version that is not there is deleted already: 204 naming it, as S3 answers. */
    if (rc == CAIRN_ENOTFOUND && version) http_add_header(q->http, "x-amz-version-id", version);
    if (rc == 0) {
        if (res.marker.version_id[0]) {
            http_add_header(q->http, "x-amz-delete-marker", "true");
            http_add_header(q->http, "x-amz-version-id", s3_version_id(&res.marker));
            s3_committed_object(q, S3_CHANGE_MARKER, &res.marker);
        } else if (version) {
            http_add_header(q->http, "x-amz-version-id", version);
            if (res.removed_marker) http_add_header(q->http, "x-amz-delete-marker", "true");
        }
        if (res.removed.version_id[0]) {
            s3_removed(q, &res.removed, q->key, q->key_len);
            s3_drop_version_data(q, &res.removed);
        }
        meta_delete_result_clear(&res);
    }
    http_respond(q->http, 204, "", 0);
}

void s3_delete_objects(s3_req *q) {
    if (http_header(q->http, "content-md5") && s3_check_body_digest(q) != 0) return;
    s3_delete_req d;
    int prc = s3_parse_delete_xml(q->body.data ? q->body.data : "", q->body.len, &d);
    if (prc != 0) {
        s3_error(q, prc == CAIRN_ENOMEM ? "InternalError" : "MalformedXML", NULL);
        return;
    }
    /* One transaction for the whole request: one synced commit, not one
     * per key; items[] holds the keys the caller may delete, at[i] says
     * where key i is in it (-1: refused). */
    meta_delete_item *items = calloc((size_t)d.count, sizeof *items);
    int *at = calloc((size_t)d.count, sizeof *at);
    bool *allowed = calloc((size_t)d.count, sizeof *allowed);
    char (*marker_ids)[33] = calloc((size_t)d.count + 1, sizeof *marker_ids);
    if (!items || !at || !allowed || !marker_ids) {
        free(marker_ids);
        free(items);
        free(at);
        free(allowed);
        s3_delete_req_free(&d);
        s3_error(q, "InternalError", NULL);
        return;
    }
    if (s3_authorize_keys(q, &d, allowed) != 0) {
        free(marker_ids);
        free(items);
        free(at);
        free(allowed);
        s3_delete_req_free(&d);
        return;
    }
    int n = 0;
    for (int i = 0; i < d.count; i++) at[i] = allowed[i] ? n++ : -1;
    int batch = 0;
    meta_lock_check lock = {.now_ms = time_now_ms(), .bypass_governance = s3_lock_bypass(q)};
    for (int j = 0; j < d.count && batch == 0; j++) {
        if (at[j] < 0) continue;
        int i = at[j];
        items[i].key = d.objects[j].key;
        items[i].key_len = d.objects[j].key_len;
        items[i].version_id = d.objects[j].version_id;
        items[i].owner_id = q->who.user_id;
        items[i].lock = lock;
        /* A marker's id is drawn here, as DeleteObject draws it. */
        bool marker = !d.objects[j].version_id && q->bk.versioning != META_VERSIONING_OFF;
        if (marker) {
            rand_hex_id(marker_ids[i], 16);
            items[i].marker_id = marker_ids[i];
        }
        q->event_version = marker ? s3_marker_event_version(q, marker_ids[i]) : d.objects[j].version_id;
        meta_job *jobs = NULL;
        int nj = 0;
        if (d.objects[j].key_len <= 1024)
            batch = s3_notify_jobs(q, marker ? "ObjectRemoved:DeleteMarkerCreated" : "ObjectRemoved:Delete",
                                   d.objects[j].key, d.objects[j].key_len, -1, NULL, &jobs, &nj);
        items[i].jobs = jobs;
        items[i].njobs = nj;
    }
    q->event_version = NULL;
    if (batch == 0 && n > 0) batch = meta_object_delete_many(q->gw->d.meta, q->bucket, q->bucket_id, items, n);
    else
        for (int i = 0; i < n; i++) items[i].rc = batch;   /* nothing was deleted */
    int njobs = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].rc == 0 && (items[i].deleted.version_id[0] || items[i].marker.version_id[0]))
            njobs += items[i].njobs;
        s3_notify_jobs_free((meta_job *)items[i].jobs, items[i].njobs);
    }
    s3_notify_committed(q, njobs);
    if (s3_meta_unavailable(batch)) {
        /* Nothing was deleted (the batch failed whole): one 503 says retry
         * the request, where per-key InternalErrors would not. */
        for (int i = 0; i < n; i++) {
            meta_object_clear(&items[i].deleted);
            meta_object_clear(&items[i].marker);
        }
        free(marker_ids);
        free(items);
        free(at);
        free(allowed);
        s3_delete_req_free(&d);
        s3_meta_error(q, batch, "InternalError", NULL);
        return;
    }
    if (batch != 0) log_write(LOG_ERROR, q->http->request_id, "DeleteObjects commit failed", "error", cairn_strerror(batch), NULL);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    meta_delete_item refused = {0};
    for (int j = 0; j < d.count; j++) {
        const char *k = d.objects[j].key;
        size_t kl = d.objects[j].key_len;
        meta_delete_item *it = at[j] >= 0 ? &items[at[j]] : &refused;
        int rc = at[j] < 0 ? CAIRN_EAUTH : kl > 1024 ? CAIRN_EINVAL : it->rc;
        if (rc == 0 && it->deleted.version_id[0]) {
            s3_removed(q, &it->deleted, k, kl);
            s3_drop_version_data(q, &it->deleted);
        }
        if (rc == 0 && it->marker.version_id[0]) s3_committed_object(q, S3_CHANGE_MARKER, &it->marker);
        if (rc == 0 && !d.quiet) {
            buf_puts(&b, "<Deleted><Key>");
            buf_xml_escape(&b, k, kl);
            buf_puts(&b, "</Key>");
            const char *vid = d.objects[j].version_id;
            if (vid) {
                buf_puts(&b, "<VersionId>");
                buf_xml_escape(&b, vid, strlen(vid));
                buf_puts(&b, "</VersionId>");
                if (it->deleted_marker)
                    buf_printf(&b, "<DeleteMarker>true</DeleteMarker><DeleteMarkerVersionId>%s</DeleteMarkerVersionId>",
                               s3_version_id(&it->deleted));
            } else if (it->marker.version_id[0]) {
                buf_printf(&b, "<DeleteMarker>true</DeleteMarker><DeleteMarkerVersionId>%s</DeleteMarkerVersionId>",
                           s3_version_id(&it->marker));
            }
            buf_puts(&b, "</Deleted>");
        }
        meta_object_clear(&it->deleted);
        meta_object_clear(&it->marker);
        if (rc == 0) {
            continue;
        } else if (rc == CAIRN_EAUTH) {
            buf_puts(&b, "<Error><Key>");
            buf_xml_escape(&b, k, kl);
            buf_puts(&b, "</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>");
        } else if (rc == CAIRN_ELOCKED) {
            log_write(LOG_INFO, q->http->request_id, "object lock refused the request", "what",
                      "deleting a locked version", "bucket", q->bucket, NULL);
            buf_puts(&b, "<Error><Key>");
            buf_xml_escape(&b, k, kl);
            buf_puts(&b, "</Key>");
            const char *vid = d.objects[j].version_id;
            if (vid) {
                buf_puts(&b, "<VersionId>");
                buf_xml_escape(&b, vid, strlen(vid));
                buf_puts(&b, "</VersionId>");
            }
            buf_printf(&b, "<Code>AccessDenied</Code><Message>%s</Message></Error>", s3_lock_refused_message());
        } else {
            buf_puts(&b, "<Error><Key>");
            buf_xml_escape(&b, k, kl);
            buf_puts(&b, rc == CAIRN_EINVAL ? "</Key><Code>KeyTooLongError</Code><Message>Your key is too long.</Message></Error>"
                                            : "</Key><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>");
        }
    }
    buf_puts(&b, "</DeleteResult>");
    free(marker_ids);
    free(items);
    free(at);
    free(allowed);
    s3_delete_req_free(&d);
    s3_respond_xml(q, 200, &b);
}

/* ---- GetObjectAttributes ------------------------------------------------------------------------ */

enum { ATTR_ETAG = 1, ATTR_CHECKSUM = 2, ATTR_PARTS = 4, ATTR_STORAGE_CLASS = 8, ATTR_SIZE = 16 };

int s3_parse_object_attributes(const char *v, unsigned *out) {
    static const struct { const char *name; unsigned bit; } names[] = {
        {"ETag", ATTR_ETAG}, {"Checksum", ATTR_CHECKSUM}, {"ObjectParts", ATTR_PARTS},
        {"StorageClass", ATTR_STORAGE_CLASS}, {"ObjectSize", ATTR_SIZE},
    };
    *out = 0;
    if (!v) return CAIRN_EINVAL;
    for (const char *p = v;;) {
        size_t l = strcspn(p, ",");
        const char *s = p, *e = p + l;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !bit; i++)
            if ((size_t)(e - s) == strlen(names[i].name) && !memcmp(s, names[i].name, (size_t)(e - s))) bit = names[i].bit;
        if (!bit) return CAIRN_EINVAL;
        *out |= bit;
        p += l;
        if (*p != ',') return 0;
        p++; /* a name must follow: "ETag," is not a list */
    }
}

typedef struct {
    buf_t *b;
    int marker, max, listed, total;
    int last;               /* the number of the last part listed */
    bool truncated;
} attr_parts;

static int attr_part(void *ud, const meta_part *p) {
    attr_parts *a = ud;
    a->total++;
    if (p->part_number <= a->marker) return 0;
    if (a->listed == a->max) {
        a->truncated = true;
        return 0; /* keep counting: PartsCount is every part */
    }
    buf_printf(a->b, "<Part><PartNumber>%d</PartNumber><Size>%lld</Size>", p->part_number, (long long)p->size);
    const char *v = NULL;
    int alg = s3_ck_split(p->checksum, &v);
    if (alg) {
        buf_printf(a->b, "<%s>", s3_ck_info_of(alg)->xml);
        buf_xml_escape(a->b, v, strlen(v));
        buf_printf(a->b, "</%s>", s3_ck_info_of(alg)->xml);
    }
    buf_puts(a->b, "</Part>");
    a->listed++;
    a->last = p->part_number;
    return 0;
}

/* One of the headers GetObjectAttributes pages parts by: a count of digits. */
static int attr_number(s3_req *q, const char *header, int def, int cap, int *out) {
    if (s3_parse_max(http_header(q->http, header), def, cap, out) == 0) return 0;
    char msg[120];
    snprintf(msg, sizeof msg, "The %s header must be a non-negative integer.", header);
    s3_error(q, "InvalidArgument", msg);
    return -1;
}

/*
 * GetObjectAttributes: what x-amz-object-attributes asks for, of the
 * object's current version.  Checksum is there for an object stored with
 * one (checksum.c), a composite one without its "-<parts>" suffix, as S3
 * gives it here; ObjectParts is there for multipart objects only, with their
 * parts' numbers, sizes and checksums, paged by x-amz-max-parts and
 * x-amz-part-number-marker.
 */
void s3_get_object_attributes(s3_req *q) {
    unsigned want = 0;
    const char *attrs = http_header(q->http, "x-amz-object-attributes");
    if (!attrs || !*attrs) {
        s3_error(q, "InvalidArgument", "The x-amz-object-attributes header specifying the attributes to be retrieved "
                                       "is either missing or empty");
        return;
    }
    if (s3_parse_object_attributes(attrs, &want) != 0) {
        s3_error(q, "InvalidArgument", "Invalid attribute name specified.");
        return;
    }
    int max_parts = 1000, marker = 0;
    if (attr_number(q, "x-amz-max-parts", 1000, 1000, &max_parts) != 0 ||
        attr_number(q, "x-amz-part-number-marker", 0, 10000, &marker) != 0)
        return;
    const char *version = s3_param_get(q, "versionId");
    if (s3_version_param(q, version) != 0) return;
    meta_object o = {0};
    int rc = version ? meta_object_get_version(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, version,
                                               false, &o)
                     : meta_object_get_current(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len, false, &o);
    if (rc == 0 && o.delete_marker) {
        /* As GET: a current marker is 404, one named by its id 405. */
        http_add_header(q->http, "x-amz-delete-marker", "true");
        http_add_header(q->http, "x-amz-version-id", s3_version_id(&o));
        s3_error(q, version ? "MethodNotAllowed" : "NoSuchKey", NULL);
        meta_object_clear(&o);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, rc != CAIRN_ENOTFOUND ? "InternalError" : version ? "NoSuchVersion" : "NoSuchKey", NULL);
        return;
    }
    if (version || q->bk.versioning != META_VERSIONING_OFF) http_add_header(q->http, "x-amz-version-id", s3_version_id(&o));
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<GetObjectAttributesOutput xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    if (want & ATTR_ETAG) {
        buf_puts(&b, "<ETag>");
        buf_xml_escape(&b, o.etag, strlen(o.etag));
        buf_puts(&b, "</ETag>");
    }
    s3_ck_stored ck;
    s3_ck_from_headers(o.headers_json, &ck);
    if ((want & ATTR_CHECKSUM) && ck.alg) {
        const char *x = s3_ck_info_of(ck.alg)->xml;
        size_t vl = strcspn(ck.value, "-");
        buf_printf(&b, "<Checksum><%s>", x);
        buf_xml_escape(&b, ck.value, vl);
        buf_printf(&b, "</%s><ChecksumType>%s</ChecksumType></Checksum>", x,
                   ck.full_object ? "FULL_OBJECT" : "COMPOSITE");
    }
    bool multipart = !strncmp(o.layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX));
    if ((want & ATTR_PARTS) && multipart) {
        buf_t parts;
        buf_init(&parts);
        attr_parts a = {&parts, marker, max_parts, 0, 0, 0, false};
        rc = meta_object_parts(q->gw->d.meta, o.version_id, attr_part, &a);
        if (rc != 0) {
            buf_free(&parts);
            buf_free(&b);
            meta_object_clear(&o);
            s3_meta_error(q, rc, "InternalError", "reading the object's parts failed");
            return;
        }
        buf_printf(&b, "<ObjectParts><PartsCount>%d</PartsCount><PartNumberMarker>%d</PartNumberMarker>", a.total,
                   marker);
        if (a.truncated) buf_printf(&b, "<NextPartNumberMarker>%d</NextPartNumberMarker>", a.last);
        buf_printf(&b, "<MaxParts>%d</MaxParts><IsTruncated>%s</IsTruncated>", max_parts,
                   a.truncated ? "true" : "false");
        buf_append(&b, parts.data ? parts.data : "", parts.len);
        buf_puts(&b, "</ObjectParts>");
        buf_free(&parts);
    }
    if (want & ATTR_STORAGE_CLASS) buf_puts(&b, "<StorageClass>STANDARD</StorageClass>");
    if (want & ATTR_SIZE) buf_printf(&b, "<ObjectSize>%lld</ObjectSize>", (long long)o.size);
    buf_puts(&b, "</GetObjectAttributesOutput>");
    char lm[40];
    time_fmt_http(o.mtime_ms, lm, sizeof lm);
    http_add_header(q->http, "Last-Modified", lm);
    meta_object_clear(&o);
    s3_respond_xml(q, 200, &b);
}
