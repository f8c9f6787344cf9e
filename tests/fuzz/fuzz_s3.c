/*
 * fuzz_s3.c — the S3 layer's parsers of untrusted input: Range headers,
 * conditional headers (HTTP dates, ETag lists), DeleteObjects and
 * CreateBucketConfiguration and OwnershipControls XML, bucket names,
 * percent-decoding, header values (UTF-8, RFC 2047 encoded words) and
 * GetObjectAttributes' attribute lists, and VersioningConfiguration XML
 * (with DeleteObjects' VersionIds: the same case as its Delete XML).
 * The first byte picks the parser; the rest is its input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++, size--;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    switch (sel % 8) {
    case 0: {
        int64_t st = 0, len = 0;
        int64_t objsize = size ? data[0] * 1000 : 0;
        if (s3_parse_range(s, objsize, &st, &len) == S3_RANGE_OK) {
            if (st < 0 || len <= 0 || st + len > objsize) abort();
        }
        break;
    }
    case 1: {
        /* split into four header values at NUL-free separators */
        char *parts[4] = {s, NULL, NULL, NULL};
        int n = 1;
        for (char *p = s; *p && n < 4; p++)
            if (*p == '\n') { *p = '\0'; parts[n++] = p + 1; }
        int r = s3_eval_conditionals(parts[0], parts[1], parts[2], parts[3], "abc", 1795255200000LL);
        if (r != 0 && r != 304 && r != 412) abort();
        int64_t ms;
        time_parse_http(s, &ms);
        break;
    }
    case 2: {
        s3_delete_req d;
        if (s3_parse_delete_xml(s, size, &d) == 0) {
            if (d.count < 1 || d.count > 1000) abort();
            for (int i = 0; i < d.count; i++)
                if (d.objects[i].version_id && strlen(d.objects[i].version_id) > size) abort();
            s3_delete_req_free(&d);
        }
        break;
    }
    case 3: {
        char loc[64];
        s3_parse_create_bucket_xml(s, size, loc, sizeof loc);
        int status = -1;
        bool mfa = false, illegal = false;
        int rc = s3_parse_versioning_xml(s, size, &status, &mfa, &illegal);
        if (rc == 0 && (status < 0 || status > 2 || illegal)) abort();
        break;
    }
    case 6: {
        char own[32];
        if (s3_parse_ownership_xml(s, size, own, sizeof own) == 0 && !s3_object_ownership_valid(own)) abort();
        break;
    }
    case 7: {
        /* Whatever comes in, what is stored is UTF-8 within 2n bytes, and
         * its wire form is printable ASCII. */
        char *out = malloc(2 * size + 1);
        if (!out) break;
        size_t n = s3_header_value_decode((const char *)data, size, size && (data[0] & 1), out);
        if (n > 2 * size || out[n] != '\0' || !s3_utf8_valid(out, n)) abort();
        buf_t b;
        buf_init(&b);
        s3_meta_value_encode(&b, out, n);
        for (size_t i = 0; i < b.len; i++)
            if (b.data[i] != '\t' && ((unsigned char)b.data[i] < 0x20 || (unsigned char)b.data[i] > 0x7e)) abort();
        buf_free(&b);
        free(out);
        unsigned attrs;
        if (s3_parse_object_attributes(s, &attrs) == 0 && (attrs == 0 || attrs > 31)) abort();
        break;
    }
    case 4:
        s3_bucket_name_valid(s);
        break;
    case 5: {
        char *out = malloc(size + 1);
        if (out) {
            long n = url_decode(s, size, out);
            if (n > (long)size) abort();
            free(out);
        }
        break;
    }
    }
    free(s);
    return 0;
}
