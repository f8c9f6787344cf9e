/*
 * ownership.c — bucket ownership controls (Put/Get/DeleteBucketOwnershipControls
 * and CreateBucket's x-amz-object-ownership), and the digest check of small
 * configuration bodies that S3 requires one for.
 *
 * The setting is stored as the bucket configuration "ownership"
 * (meta_bucket_config_*), its value the validated ObjectOwnership.  S3
 * gives every bucket created since April 2023 BucketOwnerEnforced unless
 * CreateBucket names another, so CreateBucket stores one always; a bucket
 * without one (made before this code, or after a
 * DeleteBucketOwnershipControls) answers GET with
 * OwnershipControlsNotFoundError, as an S3 bucket without controls does.
 * The access decision (acl.c, access.c) enforces it: BucketOwnerEnforced
 * disables ACLs, the other two say who owns a written object.
 */
#include "s3/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include <openssl/evp.h>

#define OWNERSHIP_KIND "ownership"

/* The x-amz-checksum-* header of a buffered body, checked like Content-MD5. */
static int check_body_checksum(s3_req *q, const char *name, const char *want) {
    const uint8_t *p = (const uint8_t *)(q->body.data ? q->body.data : "");
    size_t n = q->body.len;
    uint8_t raw[64];
    size_t rl = 0;
    if (!strcasecmp(name, "x-amz-checksum-crc32") || !strcasecmp(name, "x-amz-checksum-crc32c")) {
        uint32_t c = strcasecmp(name, "x-amz-checksum-crc32") == 0 ? (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n)
                                                                   : data_crc32c(0, p, n);
        raw[0] = (uint8_t)(c >> 24), raw[1] = (uint8_t)(c >> 16), raw[2] = (uint8_t)(c >> 8), raw[3] = (uint8_t)c;
        rl = 4;
    } else if (!strcasecmp(name, "x-amz-checksum-sha1") || !strcasecmp(name, "x-amz-checksum-sha256")) {
        unsigned dl = 0;
        if (!EVP_Digest(p, n, raw, &dl, strcasecmp(name, "x-amz-checksum-sha1") == 0 ? EVP_sha1() : EVP_sha256(), NULL))
            return -1;
        rl = dl;
    } else if (!strcasecmp(name, "x-amz-checksum-crc64nvme")) {
        uint64_t c = crc64nvme(0, p, n);
        for (int i = 0; i < 8; i++) raw[i] = (uint8_t)(c >> (56 - 8 * i));
        rl = 8;
    } else {
        return 0; /* an algorithm we do not compute: accepted unverified, as for objects */
    }
    char b64[100];
    s3_base64_encode(raw, rl, b64);
    return strcmp(b64, want) == 0 ? 0 : 1;
}

int s3_check_body_digest(s3_req *q) {
    const char *md5h = http_header(q->http, "content-md5");
    if (md5h) {
        uint8_t want[20], got[16];
        size_t wl = 0;
        unsigned gl = 0;
        if (!s3_base64_decode(md5h, want, sizeof want, &wl) || wl != 16) {
            s3_error(q, "InvalidDigest", NULL);
            return -1;
        }
        EVP_Digest(q->body.data ? q->body.data : "", q->body.len, got, &gl, EVP_md5(), NULL);
        if (memcmp(want, got, 16) != 0) {
            s3_error(q, "BadDigest", NULL);
            return -1;
        }
        return 0;
    }
    http_req *r = q->http;
    for (size_t i = 0; i < r->nheaders; i++) {
        const header_field *h = &r->headers[i];
        if (h->name_len <= 15 || strncasecmp(h->name, "x-amz-checksum-", 15) != 0 ||
            (h->name_len == 19 && !strncasecmp(h->name, "x-amz-checksum-type", 19)))
            continue;
        char name[48];
        if (h->name_len >= sizeof name) continue;
        memcpy(name, h->name, h->name_len);
        name[h->name_len] = '\0';
        int c = check_body_checksum(q, name, h->value);
        if (c < 0) {
            s3_error(q, "InternalError", NULL);
            return -1;
        }
        if (c > 0) {
            s3_error(q, "BadDigest", "The checksum you specified did not match what we received.");
            return -1;
        }
        return 0;
    }
    s3_error(q, "InvalidRequest", "Missing required header for this request: Content-MD5 (or an x-amz-checksum-* header).");
    return -1;
}

int s3_ownership_header(s3_req *q, const char **value) {
    const char *v = http_header(q->http, "x-amz-object-ownership");
    *value = v ? v : "BucketOwnerEnforced";
    if (!v || s3_object_ownership_valid(v)) return 0;
    s3_error(q, "InvalidArgument", "Invalid x-amz-object-ownership header: it must be BucketOwnerEnforced, "
                                   "BucketOwnerPreferred or ObjectWriter.");
    return -1;
}

int s3_ownership_store(s3_req *q, int64_t bucket_id, const char *value) {
    return meta_bucket_config_put(q->gw->d.meta, q->bucket, bucket_id, OWNERSHIP_KIND, value);
}

void s3_put_bucket_ownership(s3_req *q) {
    if (s3_check_body_digest(q) != 0) return;
    char v[32];
    int rc = s3_parse_ownership_xml(q->body.data ? q->body.data : "", q->body.len, v, sizeof v);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOMEM ? "InternalError" : "MalformedXML", NULL);
        return;
    }
    rc = s3_ownership_store(q, q->bucket_id, v);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the ownership controls failed");
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

void s3_get_bucket_ownership(s3_req *q) {
    char *v = NULL;
    int rc = meta_bucket_config_get(q->gw->d.meta, q->bucket_id, OWNERSHIP_KIND, &v);
    if (rc == CAIRN_ENOTFOUND) {
        s3_error(q, "OwnershipControlsNotFoundError", NULL);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "reading the ownership controls failed");
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<OwnershipControls xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ObjectOwnership>");
    buf_xml_escape(&b, v, strlen(v));
    buf_puts(&b, "</ObjectOwnership></Rule></OwnershipControls>");
    free(v);
    s3_respond_xml(q, 200, &b);
}

void s3_delete_bucket_ownership(s3_req *q) {
    int rc = s3_ownership_store(q, q->bucket_id, "");
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "removing the ownership controls failed");
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}
