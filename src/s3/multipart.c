/*
 * multipart.c — multipart uploads: Create, UploadPart, Complete, Abort,
 * ListParts, ListMultipartUploads.
 *
 * Each part is stored like an object of its own (a fresh version id, shards
 * through the data writer, never inline) and recorded in the upload's part
 * table; uploading a part number again replaces it and removes the old
 * bytes.  Complete checks S3's rules (ascending part numbers, known parts with
 * matching ETags, every part but the last at least 5 MiB), then publishes the
 * object in one metadata transaction: the object row (layout "mp:<n>", ETag
 * md5-of-md5s "-n") and its part list.  Parts left out are removed after.
 *
 * Checksums (checksum.c): an upload created with x-amz-checksum-algorithm
 * has every part's checksum verified (or computed, for a FULL_OBJECT upload
 * whose client sent none) and kept with the part; Complete checks the
 * checksums its body names against those and gives the object its
 * composite or full-object checksum.
 */
#include "s3/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MIN_PART_SIZE (5LL * 1024 * 1024)
#define MAX_PARTS 10000
#define MAX_MULTIPART_OBJECT (5LL * 1024 * 1024 * 1024 * 1024)

/* Removes the bytes of a stored part (or any layout-addressed version). */
static void drop_part(void *ud, const meta_part *p) {
    s3_req *q = ud;
    data_layout l;
    if (data_layout_parse(p->layout, &l) == 0) data_delete(q->gw->d.data, p->version_id, &l);
}

void s3_drop_multipart_version(s3_req *q, const char *version_id) {
    /* The commit that replaced or deleted the version put its parts in the
     * trash.  Remove them now, a batch at most, as the bytes of a plain
     * version go; what is left (a node down, a long trash) the job takes. */
    (void)version_id;
    const s3_jobs *jobs = &q->gw->d.jobs;
    int removed = 0;
    bool emptied = jobs->empty_trash && jobs->empty_trash(jobs->ud, 1, &removed) == 0 && removed < 256;
    if (!emptied && jobs->empty_trash_later) jobs->empty_trash_later(jobs->ud);
}

/* Loads the upload named by ?uploadId and checks it belongs to this bucket
 * (by identity: the bucket the request loaded, q->bucket_id) and key.
 * Answers NoSuchUpload unless quiet_missing (the caller has a fallback). */
static int find_upload(s3_req *q, meta_upload *u, bool quiet_missing) {
    assert(q->bucket_id > 0);
    const char *id = s3_param_get(q, "uploadId");
    int rc = id && *id && strlen(id) < sizeof u->upload_id ? meta_upload_get(q->gw->d.meta, id, u) : CAIRN_ENOTFOUND;
    if (rc == 0 && (u->bucket_id != q->bucket_id || u->key_len != q->key_len || memcmp(u->key, q->key, q->key_len) != 0)) {
        meta_upload_clear(u);
        rc = CAIRN_ENOTFOUND;
    }
    if (rc == CAIRN_ENOTFOUND && !quiet_missing) s3_error(q, "NoSuchUpload", NULL);
    else if (rc != 0 && rc != CAIRN_ENOTFOUND) s3_meta_error(q, rc, "InternalError", NULL);
    return rc;
}

static int load_upload(s3_req *q, meta_upload *u) { return find_upload(q, u, false); }

/* ?partNumber of UploadPart and UploadPartCopy: 1..10000; nonzero = answered.
 * The gateway routes only requests that have one here; an absent one is still
 * refused, not dereferenced, should that routing change. */
static int part_number_param(s3_req *q, int *out) {
    const char *pn = s3_param_get(q, "partNumber");
    char *end = NULL;
    long n = pn ? strtol(pn, &end, 10) : 0;
    if (!pn || !*pn || *end || n < 1 || n > MAX_PARTS || pn[0] == '+' || pn[0] == '-' || pn[0] == ' ') {
        s3_error(q, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
        return -1;
    }
    *out = (int)n;
    return 0;
}

static void put_key_xml(buf_t *b, const char *name, const char *v, size_t n) {
    buf_printf(b, "<%s>", name);
    buf_xml_escape(b, v, n);
    buf_printf(b, "</%s>", name);
}

/* ---- Create ---------------------------------------------------------------------- */

/* x-amz-checksum-algorithm and x-amz-checksum-type of a Create, checked as
 * S3 checks them: SHA-1 and SHA-256 are COMPOSITE only, CRC-64/NVME is
 * FULL_OBJECT only, CRC-32 and CRC-32C either (COMPOSITE unless asked).
 * Fills *alg (0: none) and *full.  Nonzero = answered. */
static int create_checksum(s3_req *q, int *alg, bool *full) {
    const char *a = http_header(q->http, "x-amz-checksum-algorithm"), *t = http_header(q->http, "x-amz-checksum-type");
    *alg = 0;
    *full = false;
    if (t && strcmp(t, "COMPOSITE") != 0 && strcmp(t, "FULL_OBJECT") != 0) {
        s3_error(q, "InvalidRequest", "Value for x-amz-checksum-type header is invalid.");
        return -1;
    }
    if (!a) {
        if (!t) return 0;
        s3_error(q, "InvalidRequest", "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.");
        return -1;
    }
    *alg = s3_ck_by_name(a);
    if (!*alg) {
        s3_error(q, "InvalidRequest", "Checksum algorithm provided is unsupported. Please try again with any of the "
                                      "valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]");
        return -1;
    }
    *full = t ? !strcmp(t, "FULL_OBJECT") : *alg == S3_CK_CRC64NVME;
    bool crc = *alg == S3_CK_CRC32 || *alg == S3_CK_CRC32C || *alg == S3_CK_CRC64NVME;
    if ((*full && !crc) || (!*full && *alg == S3_CK_CRC64NVME)) {
        char msg[160];
        snprintf(msg, sizeof msg, "The %s checksum type cannot be used with the %s checksum algorithm.",
                 *full ? "FULL_OBJECT" : "COMPOSITE", s3_ck_info_of(*alg)->lower);
        s3_error(q, "InvalidRequest", msg);
        return -1;
    }
    return 0;
}

void s3_create_multipart(s3_req *q) {
    int alg;
    bool full;
    if (create_checksum(q, &alg, &full) != 0) return;
    meta_upload u = {0};
    char raw[32];
    rand_bytes(raw, sizeof raw);
    hex_encode(raw, sizeof raw, u.upload_id);
    snprintf(u.bucket, sizeof u.bucket, "%s", q->bucket);
    u.bucket_id = q->bucket_id;
    memcpy(u.key, q->key, q->key_len);
    u.key_len = q->key_len;
    u.owner_id = q->who.user_id;
    u.initiated_ms = time_now_ms();
    u.headers_json = s3_headers_json_from_request(q);
    /* The lock its headers ask for goes with the upload to the object; the
     * bucket's default is the complete's to apply. */
    /* The upload's key: its parts are each sealed under one derived from it. */
    if (!u.headers_json || s3_lock_stamp(q, &u.headers_json, u.initiated_ms, S3_LOCK_HEADERS) != 0 ||
        s3_acl_stamp(q, &u.headers_json) != 0 || s3_sse_begin_write(q) != 0 || s3_sse_headers_set(q, &u.headers_json) != 0)
        return;
    /* The algorithm and type go with the upload's headers, until Complete
     * puts the object's checksum there instead. */
    if (alg && !(u.headers_json = s3_ck_headers_set(q, u.headers_json, "x-amz-checksum-algorithm",
                                                    s3_ck_info_of(alg)->name, full))) {
        s3_error_nomem(q);
        return;
    }
    int rc = meta_upload_create(q->gw->d.meta, &u);
    if (rc != 0) {
        s3_meta_error(q, rc, rc == CAIRN_ENOTFOUND ? "NoSuchBucket" : "InternalError", NULL);
        return;
    }
    s3_committed(q, q->key, q->key_len);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    put_key_xml(&b, "Bucket", q->bucket, strlen(q->bucket));
    put_key_xml(&b, "Key", q->key, q->key_len);
    put_key_xml(&b, "UploadId", u.upload_id, strlen(u.upload_id));
    buf_puts(&b, "</InitiateMultipartUploadResult>");
    if (alg) {
        http_add_header(q->http, "x-amz-checksum-algorithm", s3_ck_info_of(alg)->name);
        http_add_header(q->http, "x-amz-checksum-type", full ? "FULL_OBJECT" : "COMPOSITE");
    }
    s3_sse_add_headers(q, u.headers_json);
    s3_respond_xml(q, 200, &b);
}

/* ---- UploadPart ------------------------------------------------------------------------ */

/* UploadPart's and UploadPartCopy's x-amz-server-side-encryption*: the upload's. */
static void sse_part_headers(s3_req *q) {
    const s3_sse *s = &q->sse;
    if (s->mode == 'C') {
        http_add_header(q->http, "x-amz-server-side-encryption-customer-algorithm", "AES256");
        http_add_header(q->http, "x-amz-server-side-encryption-customer-key-MD5", s->customer_md5);
    } else if (s->mode) {
        http_add_header(q->http, "x-amz-server-side-encryption", s->mode == 'S' ? "AES256" : "aws:kms");
        if (s->mode == 'K') http_add_header(q->http, "x-amz-server-side-encryption-aws-kms-key-id", s->kms_key_id);
    }
}

int s3_upload_part_begin(s3_req *q) {
    int n;
    if (part_number_param(q, &n) != 0) return -1;
    meta_upload u;
    if (load_upload(q, &u) != 0) return -1;
    s3_ck_stored ck;
    s3_ck_from_headers(u.headers_json, &ck);
    /* The part is sealed under a key derived from the upload's. */
    int src = s3_sse_begin_part(q, u.headers_json);
    meta_upload_clear(&u);
    if (src != 0) return -1;
    /* A part of an upload with an algorithm carries a checksum of it; in a
     * FULL_OBJECT upload it may come without, and we compute it. */
    int sent = s3_ck_in_request(q);
    if (ck.upload_alg && sent != ck.upload_alg && (sent || !ck.full_object)) {
        char msg[160];
        snprintf(msg, sizeof msg, "Checksum Type mismatch occurred, expected checksum Type: %s, actual checksum Type: %s",
                 s3_ck_info_of(ck.upload_alg)->lower, sent ? s3_ck_info_of(sent)->lower : "null");
        s3_error(q, "InvalidRequest", msg);
        return -1;
    }
    q->checksum_want = ck.upload_alg;
    q->part_number = n;
    q->force_shards = true;
    return s3_object_begin(q);
}

void s3_upload_part(s3_req *q) {
    meta_part p = {0};
    char etag[80];
    if (s3_object_store_body(q, p.version_id, &p.size, p.etag, p.layout) != 0) return;
    const char *sum = s3_object_checksum(q);
    if (sum) snprintf(p.checksum, sizeof p.checksum, "%s:%s", q->checksum_name + 15, sum);
    p.part_number = q->part_number;
    p.mtime_ms = time_now_ms();
    meta_part old;
    bool had = false;
    fault_point("part.before_commit"); /* race tests: tests/fault/test_races.py */
    int rc = meta_part_put(q->gw->d.meta, s3_param_get(q, "uploadId"), &p, &old, &had);
    if (rc != 0) {
        if (s3_commit_failed_drop_ok(q, rc, p.version_id)) drop_part(q, &p);
        s3_meta_error(q, rc, rc == CAIRN_ENOTFOUND ? "NoSuchUpload" : "InternalError", NULL);
        return;
    }
    s3_committed(q, q->key, q->key_len);
    if (had) drop_part(q, &old);
    s3_quote_etag(p.etag, etag, sizeof etag);
    http_add_header(q->http, "ETag", etag);
    if (sum) http_add_header(q->http, q->checksum_name, sum);
    sse_part_headers(q);
    http_respond(q->http, 200, "", 0);
}

/* ---- UploadPartCopy ------------------------------------------------------------------------ */

/* Copies [start, start+len) of src into a new part; fills p, with its
 * checksum of alg (0: none).  Nonzero = error code. */
static int copy_into_part(s3_req *q, const meta_object *src, int64_t start, int64_t len, int alg, meta_part *p) {
    rand_hex_id(p->version_id, 16);
    p->size = len;
    p->mtime_ms = time_now_ms();
    s3_ck ck;
    if (alg && s3_ck_init(&ck, alg) != 0) return CAIRN_ENOMEM;
    uint8_t key[CRYPT_KEY];
    if (q->sse.mode) crypt_part_key(q->sse.key, p->version_id, key);
    int rc = s3_copy_range(q, src, start, len, p->version_id, q->sse.mode ? key : NULL, p->etag, p->layout,
                           alg ? &ck : NULL);
    OPENSSL_cleanse(key, sizeof key);
    if (alg) {
        char v[S3_CK_VALUE_MAX];
        s3_ck_final(&ck, v);
        s3_ck_free(&ck);
        snprintf(p->checksum, sizeof p->checksum, "%s:%s", s3_ck_info_of(alg)->lower, v);
    }
    return rc;
}

void s3_upload_part_copy(s3_req *q) {
    http_req *r = q->http;
    int n;
    if (part_number_param(q, &n) != 0) return;
    meta_upload u;
    if (load_upload(q, &u) != 0) return;
    /* A copied part of an upload with an algorithm gets its checksum computed. */
    s3_ck_stored uck;
    s3_ck_from_headers(u.headers_json, &uck);
    char sbucket[256], skey[1025];
    size_t sklen = 0;
    meta_object src;
    if (s3_sse_begin_part(q, u.headers_json) != 0) {
        meta_upload_clear(&u);
        return;
    }
    if (s3_load_copy_source(q, &src, sbucket, skey, &sklen) != 0) {
        meta_upload_clear(&u);
        return;
    }
    int64_t start = 0, len = src.size;
    const char *code = NULL;
    const char *range = http_header(r, "x-amz-copy-source-range");
    if (range) {
        int rr = s3_parse_copy_range(range, src.size, &start, &len);
        if (rr == CAIRN_EINVAL) code = "InvalidArgument";
        else if (rr != 0) code = "InvalidRange";
    }
    if (!code && len > 5LL * 1024 * 1024 * 1024) code = "EntityTooLarge";
    int rc, meta_rc = 0;
    meta_part p = {0};
    p.part_number = n;
    if (!code) {
        rc = copy_into_part(q, &src, start, len, uck.upload_alg, &p);
        if (rc != 0) code = rc == CAIRN_ENOSPC ? "InsufficientStorage" : "InternalError";
        meta_rc = q->meta_failure;
    }
    if (!code) {
        meta_part old;
        bool had = false;
        rc = meta_part_put(q->gw->d.meta, u.upload_id, &p, &old, &had);
        if (rc != 0) {
            if (s3_commit_failed_drop_ok(q, rc, p.version_id)) drop_part(q, &p);
            code = rc == CAIRN_ENOTFOUND ? "NoSuchUpload" : "InternalError";
            meta_rc = rc;
        } else {
            s3_committed(q, q->key, q->key_len);
            if (had) drop_part(q, &old);
        }
    }
    meta_object_clear(&src);
    meta_upload_clear(&u);
    if (code) {
        s3_meta_error(q, meta_rc, code, NULL);
        return;
    }
    char ts[40];
    time_fmt_iso8601(p.mtime_ms, ts, sizeof ts);
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyPartResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                   "<LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>", ts, p.etag);
    const char *v = NULL;
    int alg = s3_ck_split(p.checksum, &v);
    if (alg) buf_printf(&b, "<%s>%s</%s>", s3_ck_info_of(alg)->xml, v, s3_ck_info_of(alg)->xml);
    buf_puts(&b, "</CopyPartResult>");
    sse_part_headers(q);
    s3_respond_xml(q, 200, &b);
}

/* ---- Complete ---------------------------------------------------------------------------- */

typedef struct {
    meta_part *parts;
    int n;
    int cap;
    bool oom;
} part_vec;

static int gather_part(void *ud, const meta_part *p) {
    part_vec *v = ud;
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 64;
        meta_part *np = realloc(v->parts, (size_t)cap * sizeof *np);
        if (!np) {
            v->oom = true;
            return 1;
        }
        v->parts = np;
        v->cap = cap;
    }
    v->parts[v->n++] = *p;
    return 0;
}

static const meta_part *find_part(const part_vec *v, int number) {
    for (int i = 0; i < v->n; i++)
        if (v->parts[i].part_number == number) return &v->parts[i];
    return NULL;
}

/* ck: the object's checksum (NULL or none: no checksum elements). */
static void complete_result(s3_req *q, const char *etag, const s3_ck_stored *ck) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>/");
    buf_xml_escape(&b, q->bucket, strlen(q->bucket));
    buf_putc(&b, '/');
    buf_xml_escape(&b, q->key, q->key_len);
    buf_puts(&b, "</Location>");
    put_key_xml(&b, "Bucket", q->bucket, strlen(q->bucket));
    put_key_xml(&b, "Key", q->key, q->key_len);
    buf_printf(&b, "<ETag>&quot;%s&quot;</ETag>", etag);
    if (ck && ck->alg)
        buf_printf(&b, "<%s>%s</%s><ChecksumType>%s</ChecksumType>", s3_ck_info_of(ck->alg)->xml, ck->value,
                   s3_ck_info_of(ck->alg)->xml, ck->full_object ? "FULL_OBJECT" : "COMPOSITE");
    buf_puts(&b, "</CompleteMultipartUploadResult>");
    s3_respond_xml(q, 200, &b);
}

/* The upload is gone: if it was completed (a retry whose first answer the
 * client lost), answer as that complete did; else NoSuchUpload. */
static void answer_gone_upload(s3_req *q) {
    const char *id = s3_param_get(q, "uploadId");
    meta_completed_upload c;
    int rc = id && *id ? meta_upload_completed_get(q->gw->d.meta, id, &c) : CAIRN_ENOTFOUND;
    if (rc == 0 && c.bucket_id == q->bucket_id && c.key_len == q->key_len && !memcmp(c.key, q->key, q->key_len))
        complete_result(q, c.etag, NULL);
    else if (rc == 0 || rc == CAIRN_ENOTFOUND)
        s3_error(q, "NoSuchUpload", NULL);
    else
        s3_meta_error(q, rc, "InternalError", NULL);
}

/* A part's checksum in the body of a Complete, against the stored one:
 * NULL, or the S3 error code with *msg (in msgbuf). */
static const char *check_part_checksum(const s3_complete_part *w, const meta_part *p, const s3_ck_stored *uck,
                                       const char **msg, char *msgbuf, size_t msglen) {
    if (w->checksum[0]) {
        if (strcmp(w->checksum, p->checksum) == 0) return NULL;
        *msg = "One or more of the specified parts could not be found. The part may not have been uploaded, "
               "or the specified entity tag may not match the part's entity tag.";
        return "InvalidPart";
    }
    /* A COMPOSITE upload's object checksum is made of its parts': each must be named. */
    if (!uck->upload_alg || uck->full_object) return NULL;
    snprintf(msgbuf, msglen, "The upload was created using a %s checksum. The complete request must include the "
             "checksum for each part. It was missing for part %d in the request.",
             s3_ck_info_of(uck->upload_alg)->lower, w->number);
    *msg = msgbuf;
    return "InvalidRequest";
}

/* Checks the client's part list against the upload's parts (S3's rules) and
 * fills chosen (offsets set) and obj's size and ETag.  Returns NULL or the S3
 * error code, with *msg (which may point into msgbuf). */
static const char *choose_parts(s3_req *q, const s3_complete_part *want, int n, const part_vec *have,
                                const s3_ck_stored *uck, meta_part *chosen, meta_object *obj, const char **msg,
                                char *msgbuf, size_t msglen) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_md5(), NULL)) {
        EVP_MD_CTX_free(md);
        return "InternalError";
    }
    const char *code = NULL;
    int64_t offset = 0;
    for (int i = 0; !code && i < n; i++) {
        if (i > 0 && want[i].number <= want[i - 1].number) {
            code = "InvalidPartOrder";
            *msg = "The list of parts was not in ascending order. Parts must be ordered by part number.";
            break;
        }
        const meta_part *p = find_part(have, want[i].number);
        if (!p || strcasecmp(p->etag, want[i].etag) != 0) {
            code = "InvalidPart";
            *msg = "One or more of the specified parts could not be found. The part may not have been uploaded, "
                   "or the specified entity tag may not match the part's entity tag.";
            break;
        }
        if ((code = check_part_checksum(&want[i], p, uck, msg, msgbuf, msglen)) != NULL) break;
        if (i + 1 < n && p->size < MIN_PART_SIZE) {
            code = "EntityTooSmall";
            *msg = "Your proposed upload is smaller than the minimum allowed object size (5 MiB for every part but the last).";
            break;
        }
        chosen[i] = *p;
        chosen[i].offset = offset;
        offset += p->size;
        unsigned char raw[16];
        size_t rl = 0;
        hex_decode(p->etag, strlen(p->etag), raw, sizeof raw, &rl);
        EVP_DigestUpdate(md, raw, rl);
    }
    if (!code && (offset > MAX_MULTIPART_OBJECT || offset > q->gw->cfg.max_object_size)) code = "EntityTooLarge";
    if (!code) {
        unsigned char digest[16];
        unsigned dl = 0;
        char hex[33];
        EVP_DigestFinal_ex(md, digest, &dl);
        hex_encode(digest, 16, hex);
        snprintf(obj->etag, sizeof obj->etag, "%s-%d", hex, n);
        obj->size = offset;
    }
    EVP_MD_CTX_free(md);
    return code;
}

/* The checksum of the object an upload with an algorithm makes of its
 * chosen parts, checked against the x-amz-checksum-type and
 * x-amz-checksum-<algorithm> the Complete sent.  NULL, or the S3 error code
 * with *msg. */
static const char *object_checksum(s3_req *q, const s3_ck_stored *uck, const meta_part *chosen, int n,
                                   s3_ck_stored *out, const char **msg, char *msgbuf, size_t msglen) {
    const char *type = http_header(q->http, "x-amz-checksum-type");
    if (type && strcmp(type, uck->full_object ? "FULL_OBJECT" : "COMPOSITE") != 0) {
        snprintf(msgbuf, msglen, "The upload was created using the %s checksum mode. The complete request must use "
                 "the same checksum mode.", uck->full_object ? "FULL_OBJECT" : "COMPOSITE");
        *msg = msgbuf;
        return "BadDigest";
    }
    out->full_object = uck->full_object;
    /* Parts from before checksums were kept have none: no object checksum then. */
    if (s3_ck_multipart(uck->upload_alg, uck->full_object, chosen, n, out->value) == 0) out->alg = uck->upload_alg;
    int sent = s3_ck_in_request(q);
    if (!sent) return NULL;
    const char *v = http_header(q->http, s3_ck_info_of(sent)->header);
    if (sent != uck->upload_alg) {
        snprintf(msgbuf, msglen, "Checksum Type mismatch occurred, expected checksum Type: %s, actual checksum Type: %s",
                 s3_ck_info_of(uck->upload_alg)->lower, s3_ck_info_of(sent)->lower);
        *msg = msgbuf;
        return "InvalidRequest";
    }
    /* A composite value may come with its "-<parts>" suffix or without. */
    size_t bare = strcspn(out->value, "-");
    if (out->alg && v && (!strcmp(v, out->value) || (strlen(v) == bare && !strncmp(v, out->value, bare))))
        return NULL;
    *msg = "The checksum you specified did not match what we received.";
    return "BadDigest";
}

/* One attempt at completing: 0 done (answered), CAIRN_ECONFLICT when a part
 * was re-uploaded meanwhile (try again with a fresh list), else answered. */
static int complete_once(s3_req *q, const s3_complete_part *want, int n) {
    meta_upload u;
    int rc = find_upload(q, &u, true);
    if (rc == CAIRN_ENOTFOUND) {
        answer_gone_upload(q);
        return 0;
    }
    if (rc != 0) return 0;
    if (s3_write_cond_check(q) != 0) {
        meta_upload_clear(&u);
        return 0;
    }
    part_vec have = {0};
    meta_part *chosen = calloc((size_t)n, sizeof *chosen);
    rc = chosen ? meta_part_list(q->gw->d.meta, u.upload_id, 0, 100000, gather_part, &have, NULL) : CAIRN_ENOMEM;
    if (rc == 0 && have.oom) rc = CAIRN_ENOMEM;
    meta_object obj = {0};
    const char *code = rc ? "InternalError" : NULL, *msg = NULL;
    char msgbuf[256];
    int meta_rc = rc;
    s3_ck_stored uck, ock = {0};
    s3_ck_from_headers(u.headers_json, &uck);
    if (!code) code = choose_parts(q, want, n, &have, &uck, chosen, &obj, &msg, msgbuf, sizeof msgbuf);
    if (!code && uck.upload_alg) code = object_checksum(q, &uck, chosen, n, &ock, &msg, msgbuf, sizeof msgbuf);
    if (!code) {
        snprintf(obj.bucket, sizeof obj.bucket, "%s", q->bucket);
        obj.bucket_id = q->bucket_id;
        memcpy(obj.key, q->key, q->key_len);
        obj.key_len = q->key_len;
        rand_hex_id(obj.version_id, 16);
        obj.mtime_ms = time_now_ms();
        obj.owner_id = u.owner_id;
        obj.storage = META_STORE_FILE;
        snprintf(obj.layout, sizeof obj.layout, "%s%d", META_MULTIPART_PREFIX, n);
        obj.headers_json = u.headers_json;
        /* The upload's algorithm gives way to the object's checksum. */
        if (uck.upload_alg &&
            !(obj.headers_json = s3_ck_headers_set(q, obj.headers_json, ock.alg ? s3_ck_info_of(ock.alg)->header : NULL,
                                                   ock.value, ock.full_object))) {
            free(chosen);
            free(have.parts);
            meta_upload_clear(&u);
            s3_error_nomem(q);
            return 0;
        }
        if (s3_lock_stamp(q, &obj.headers_json, obj.mtime_ms, S3_LOCK_DEFAULT) != 0) {
            free(chosen);
            free(have.parts);
            meta_upload_clear(&u);
            return 0; /* answered */
        }
        meta_object old = {0};
        bool had = false;
        fault_point("complete.before_commit");
        meta_job *jobs = NULL;
        int njobs = 0;
        /* The ETag is the one choose_parts computed. */
        q->event_version = s3_new_version_id(q, &obj);
        rc = s3_notify_jobs(q, "ObjectCreated:CompleteMultipartUpload", obj.key, obj.key_len, obj.size, obj.etag,
                            &jobs, &njobs);
        obj.jobs = jobs;
        obj.njobs = njobs;
        s3_write_cond_apply(q, &obj);
        if (rc == 0) rc = meta_upload_complete(q->gw->d.meta, u.upload_id, &obj, chosen, n, &old, &had, drop_part, q);
        obj.jobs = NULL;
        obj.njobs = 0;
        s3_notify_jobs_free(jobs, njobs);
        if (rc == 0) s3_notify_committed(q, njobs);
        if (rc == 0) {
            s3_committed_object(q, S3_CHANGE_CREATED, &obj);
            if (had) {
                s3_drop_version_data(q, &old);
                meta_object_clear(&old);
            }
            s3_new_version_header(q, &obj);
            s3_sse_add_headers(q, obj.headers_json);
            complete_result(q, obj.etag, &ock);
        } else if (rc == CAIRN_ENOTFOUND) {
            answer_gone_upload(q); /* completed or aborted by another request meanwhile */
        } else if (rc == CAIRN_EPRECOND) {
            s3_write_cond_refused(q); /* the upload stays, as S3 keeps it */
        } else if (rc != CAIRN_ECONFLICT) {
            code = "InternalError";
            meta_rc = rc;
        }
    }
    if (code) s3_meta_error(q, meta_rc, code, msg);
    free(chosen);
    free(have.parts);
    meta_upload_clear(&u);
    return code ? 0 : rc == CAIRN_ECONFLICT ? rc : 0;
}

#define COMPLETE_ATTEMPTS 5

void s3_complete_multipart(s3_req *q) {
    if (s3_write_cond_parse(q) != 0) return;
    s3_complete_part *want = NULL;
    int n = s3_parse_complete_xml(q->body.data ? q->body.data : "", q->body.len, &want);
    if (n < 0) {
        /* A retried complete whose upload is gone gets its first answer even
         * with a body we would refuse; anything else is MalformedXML. */
        meta_upload u;
        if (n == CAIRN_ENOMEM) s3_error(q, "InternalError", NULL);
        else if (find_upload(q, &u, true) == CAIRN_ENOTFOUND) answer_gone_upload(q);
        else if (!http_responded(q->http)) {
            meta_upload_clear(&u);
            s3_error(q, "MalformedXML", NULL);
        }
        return;
    }
    /* The parts are checked again inside the committing transaction; a part
     * re-uploaded between our read and that commit makes us read again. */
    int rc = CAIRN_ECONFLICT;
    for (int attempt = 0; rc == CAIRN_ECONFLICT && attempt < COMPLETE_ATTEMPTS; attempt++) rc = complete_once(q, want, n);
    if (rc == CAIRN_ECONFLICT) s3_error(q, "OperationAborted", "Parts of this upload kept changing while it was completed; try again.");
    free(want);
}

/* ---- Abort, ListParts, ListMultipartUploads ------------------------------------------------ */

void s3_abort_multipart(s3_req *q) {
    meta_upload u;
    if (load_upload(q, &u) != 0) return;
    int rc = meta_upload_abort(q->gw->d.meta, u.upload_id, drop_part, q);
    meta_upload_clear(&u);
    if (rc == CAIRN_ENOTFOUND) s3_error(q, "NoSuchUpload", NULL);
    else if (rc != 0) s3_meta_error(q, rc, "InternalError", NULL);
    else {
        s3_committed(q, q->key, q->key_len);
        http_respond(q->http, 204, "", 0);
    }
}

typedef struct {
    buf_t *b;
    int last;
} parts_ctx;

static int emit_part(void *ud, const meta_part *p) {
    parts_ctx *c = ud;
    char ts[40];
    time_fmt_iso8601(p->mtime_ms, ts, sizeof ts);
    buf_printf(c->b, "<Part><PartNumber>%d</PartNumber><LastModified>%s</LastModified>"
                     "<ETag>&quot;%s&quot;</ETag><Size>%lld</Size>",
               p->part_number, ts, p->etag, (long long)p->size);
    const char *v = NULL;
    int alg = s3_ck_split(p->checksum, &v);
    if (alg) buf_printf(c->b, "<%s>%s</%s>", s3_ck_info_of(alg)->xml, v, s3_ck_info_of(alg)->xml);
    buf_puts(c->b, "</Part>");
    c->last = p->part_number;
    return 0;
}

void s3_list_parts(s3_req *q) {
    meta_upload u;
    if (load_upload(q, &u) != 0) return;
    int max, marker;
    if (s3_parse_max(s3_param_get(q, "max-parts"), 1000, 1000, &max) != 0 || s3_parse_max(s3_param_get(q, "part-number-marker"), 0, MAX_PARTS, &marker) != 0) {
        meta_upload_clear(&u);
        s3_error(q, "InvalidArgument", "max-parts and part-number-marker must be non-negative integers");
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListPartsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    put_key_xml(&b, "Bucket", q->bucket, strlen(q->bucket));
    put_key_xml(&b, "Key", q->key, q->key_len);
    put_key_xml(&b, "UploadId", u.upload_id, strlen(u.upload_id));
    buf_printf(&b, "<PartNumberMarker>%d</PartNumberMarker>", marker);
    buf_t parts;
    buf_init(&parts);
    parts_ctx c = {&parts, marker};
    bool more = false;
    int rc = meta_part_list(q->gw->d.meta, u.upload_id, marker, max, emit_part, &c, &more);
    if (rc != 0) {
        buf_free(&b);
        buf_free(&parts);
        meta_upload_clear(&u);
        s3_meta_error(q, rc, "InternalError", NULL);
        return;
    }
    buf_printf(&b, "<NextPartNumberMarker>%d</NextPartNumberMarker><MaxParts>%d</MaxParts><IsTruncated>%s</IsTruncated>",
               c.last, max, more ? "true" : "false");
    s3_owner_xml(q, &b, u.owner_id);
    buf_puts(&b, "<StorageClass>STANDARD</StorageClass>");
    s3_ck_stored ck;
    s3_ck_from_headers(u.headers_json, &ck);
    if (ck.upload_alg)
        buf_printf(&b, "<ChecksumAlgorithm>%s</ChecksumAlgorithm><ChecksumType>%s</ChecksumType>",
                   s3_ck_info_of(ck.upload_alg)->name, ck.full_object ? "FULL_OBJECT" : "COMPOSITE");
    buf_append(&b, parts.data ? parts.data : "", parts.len);
    buf_puts(&b, "</ListPartsResult>");
    buf_free(&parts);
    meta_upload_clear(&u);
    s3_respond_xml(q, 200, &b);
}

typedef struct {
    s3_req *q;
    buf_t *b;
    const char *prefix;
    size_t prefix_len;
    const char *delim;
    const char *key_marker;
    char last_cp[1025];
    int count, max;
    bool truncated;
    char next_key[1025];
    size_t next_key_len;
    char next_id[65];
    /* where the next fetch resumes (the last row seen) */
    char seen_key[1025];
    size_t seen_key_len;
    char seen_id[65];
} uploads_ctx;

static int emit_upload(void *ud, const meta_upload *u) {
    uploads_ctx *c = ud;
    memcpy(c->seen_key, u->key, u->key_len + 1);
    c->seen_key_len = u->key_len;
    snprintf(c->seen_id, sizeof c->seen_id, "%s", u->upload_id);
    if (c->delim && *c->delim) {
        const char *rest = u->key + c->prefix_len;
        const char *d = strstr(rest, c->delim);
        if (d) {
            size_t cpl = (size_t)(d - u->key) + strlen(c->delim);
            /* One entry per prefix: skip the rest of a prefix already given on
             * this page, or given on the page before (the key marker). */
            if (strlen(c->last_cp) == cpl && !memcmp(c->last_cp, u->key, cpl)) return 0;
            if (c->key_marker && strlen(c->key_marker) == cpl && !memcmp(c->key_marker, u->key, cpl)) return 0;
            if (c->count == c->max) {
                c->truncated = true;
                return 1;
            }
            memcpy(c->last_cp, u->key, cpl);
            c->last_cp[cpl] = '\0';
            buf_puts(c->b, "<CommonPrefixes>");
            put_key_xml(c->b, "Prefix", u->key, cpl);
            buf_puts(c->b, "</CommonPrefixes>");
            c->count++;
            /* The next page resumes after the whole prefix. */
            memcpy(c->next_key, u->key, cpl);
            c->next_key[cpl] = '\0';
            c->next_key_len = cpl;
            c->next_id[0] = '\0';
            return 0;
        }
    }
    if (c->count == c->max) {
        c->truncated = true;
        return 1;
    }
    char ts[40];
    time_fmt_iso8601(u->initiated_ms, ts, sizeof ts);
    buf_puts(c->b, "<Upload>");
    put_key_xml(c->b, "Key", u->key, u->key_len);
    put_key_xml(c->b, "UploadId", u->upload_id, strlen(u->upload_id));
    s3_owner_xml(c->q, c->b, u->owner_id);
    buf_printf(c->b, "<StorageClass>STANDARD</StorageClass><Initiated>%s</Initiated>", ts);
    s3_ck_stored ck;
    s3_ck_from_headers(u->headers_json, &ck);
    if (ck.upload_alg)
        buf_printf(c->b, "<ChecksumAlgorithm>%s</ChecksumAlgorithm><ChecksumType>%s</ChecksumType>",
                   s3_ck_info_of(ck.upload_alg)->name, ck.full_object ? "FULL_OBJECT" : "COMPOSITE");
    buf_puts(c->b, "</Upload>");
    c->count++;
    memcpy(c->next_key, u->key, u->key_len + 1);
    c->next_key_len = u->key_len;
    snprintf(c->next_id, sizeof c->next_id, "%s", u->upload_id);
    return 0;
}

void s3_list_uploads(s3_req *q) {
    int max;
    if (s3_parse_max(s3_param_get(q, "max-uploads"), 1000, 1000, &max) != 0) {
        s3_error(q, "InvalidArgument", "max-uploads must be a non-negative integer");
        return;
    }
    const char *prefix = s3_param_get(q, "prefix"), *delim = s3_param_get(q, "delimiter");
    const char *key_marker = s3_param_get(q, "key-marker"), *id_marker = s3_param_get(q, "upload-id-marker");
    buf_t b, items;
    buf_init(&b);
    buf_init(&items);
    uploads_ctx c = {.q = q, .b = &items, .prefix = prefix ? prefix : "", .prefix_len = prefix ? strlen(prefix) : 0,
                     .delim = delim, .key_marker = key_marker, .max = max};
    /* S3: the upload-id marker counts only with a key marker; a key marker
     * alone starts after every upload of that key ("~" sorts after any hex
     * upload id).  Fetch in batches until the page is full, since common
     * prefixes fold many rows into one entry. */
    const char *from_key = key_marker ? key_marker : "";
    size_t from_len = strlen(from_key);
    const char *from_id = key_marker ? (id_marker && *id_marker ? id_marker : "~") : "";
    char kbuf[1025], ibuf[65];
    int rc = 0;
    bool more = true;
    while (rc == 0 && more && !c.truncated && max > 0) {
        rc = meta_upload_list(q->gw->d.meta, q->bucket_id, c.prefix, c.prefix_len, from_key, from_len, from_id, 1000,
                              emit_upload, &c, &more);
        if (!c.seen_key_len && !c.seen_id[0]) break;
        memcpy(kbuf, c.seen_key, c.seen_key_len + 1);
        memcpy(ibuf, c.seen_id, sizeof ibuf);
        from_key = kbuf;
        from_len = c.seen_key_len;
        from_id = ibuf;
    }
    if (rc != 0) {
        buf_free(&b);
        buf_free(&items);
        s3_meta_error(q, rc, "InternalError", NULL);
        return;
    }
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    put_key_xml(&b, "Bucket", q->bucket, strlen(q->bucket));
    put_key_xml(&b, "KeyMarker", key_marker ? key_marker : "", key_marker ? strlen(key_marker) : 0);
    put_key_xml(&b, "UploadIdMarker", id_marker ? id_marker : "", id_marker ? strlen(id_marker) : 0);
    if (c.truncated) {
        put_key_xml(&b, "NextKeyMarker", c.next_key, c.next_key_len);
        /* Empty when the page ended on a common prefix, as in S3. */
        put_key_xml(&b, "NextUploadIdMarker", c.next_id, strlen(c.next_id));
    }
    if (prefix) put_key_xml(&b, "Prefix", prefix, strlen(prefix));
    if (delim) put_key_xml(&b, "Delimiter", delim, strlen(delim));
    buf_printf(&b, "<MaxUploads>%d</MaxUploads><IsTruncated>%s</IsTruncated>", max, c.truncated ? "true" : "false");
    buf_append(&b, items.data ? items.data : "", items.len);
    buf_puts(&b, "</ListMultipartUploadsResult>");
    buf_free(&items);
    s3_respond_xml(q, 200, &b);
}
