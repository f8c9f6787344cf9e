/*
 * fuzz_s3_params.c — the S3 layer's parsers of request parameters: base64
 * (Content-MD5, x-amz-checksum-*), listing continuation tokens,
 * x-amz-copy-source and x-amz-copy-source-range, CompleteMultipartUpload XML,
 * query strings, max-keys style numbers and the UTF-8 check of keys.  The
 * first byte picks the parser; the rest is its input.  Each case also checks
 * what the parser promises (bounds, round trips), aborting when it breaks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

static void check_base64(const char *s, size_t size) {
    /* The decoder must never write past cap, whatever it is given. */
    uint8_t buf[96];
    for (size_t cap = 0; cap <= 24; cap += 4) {
        memset(buf, 0xA5, sizeof buf);
        size_t n = 0;
        if (s3_base64_decode(s, buf, cap, &n) && n > cap) abort();
        for (size_t i = cap; i < sizeof buf; i++)
            if (buf[i] != 0xA5) abort();
    }
    /* Whatever decodes re-encodes to a string that decodes to the same bytes. */
    uint8_t raw[64];
    size_t n = 0;
    if (size <= 84 && s3_base64_decode(s, raw, sizeof raw, &n)) {
        char enc[100];
        s3_base64_encode(raw, n, enc);
        uint8_t again[64];
        size_t m = 0;
        if (!s3_base64_decode(enc, again, sizeof again, &m) || m != n || memcmp(raw, again, n)) abort();
    }
}

static void check_token(const char *s) {
    char key[1025];
    size_t len = 0;
    bool inclusive = false;
    if (s3_list_token_decode(s, key, &len, &inclusive) == 0) {
        if (len > 1024 || key[len] != '\0' || memchr(key, '\0', len)) abort();
        char *t = s3_list_token_encode(key, len, false);
        if (t) {
            char k2[1025];
            size_t l2 = 0;
            bool i2 = true;
            if (s3_list_token_decode(t, k2, &l2, &i2) != 0 || l2 != len || memcmp(k2, key, len) || i2) abort();
            free(t);
        }
    }
}

static void check_copy_source(const char *s) {
    char bucket[256], key[1025], version[128];
    size_t klen = 0;
    bool has_version = false;
    if (s3_parse_copy_source(s, bucket, sizeof bucket, key, &klen, version, sizeof version, &has_version) == 0) {
        if (!bucket[0] || klen == 0 || klen > 1024 || key[klen] != '\0' || !s3_utf8_valid(key, klen)) abort();
        if (has_version && strlen(version) >= sizeof version) abort();
    }
}

static void check_copy_range(const char *s, int64_t size) {
    int64_t start = -1, len = -1;
    if (s3_parse_copy_range(s, size, &start, &len) == 0)
        if (start < 0 || len < 1 || start + len > size) abort();
}

static void check_complete(const char *s, size_t size) {
    s3_complete_part *parts = NULL;
    int n = s3_parse_complete_xml(s, size, &parts);
    if (n > 0) {
        if (n > 10000 || !parts) abort();
        for (int i = 0; i < n; i++)
            if (parts[i].number < 1 || parts[i].number > 10000 || strlen(parts[i].etag) >= sizeof parts[i].etag ||
                strlen(parts[i].checksum) >= sizeof parts[i].checksum)
                abort();
    } else if (parts) {
        abort();
    }
    free(parts);
}

static void check_query(const char *s) {
    s3_query_param params[16];
    int n = 0;
    /* Room for the decoded text (2 * len + 2) and the chunk headers. */
    arena *a = arena_new(4 * strlen(s) + 4 * ARENA_CHUNK);
    if (!a) return;
    if (s3_parse_query(a, s, params, 16, &n) == 0) {
        if (n < 0 || n > 16) abort();
        for (int i = 0; i < n; i++)
            if (!s3_utf8_valid(params[i].name, strlen(params[i].name)) ||
                !s3_utf8_valid(params[i].value, strlen(params[i].value)))
                abort();
    }
    arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++, size--;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    switch (sel % 8) {
    case 0: check_base64(s, size); break;
    case 1: check_token(s); break;
    case 2: check_copy_source(s); break;
    case 3: check_copy_range(s, size ? (int64_t)data[0] * 977 : 0); break;
    case 4: check_complete(s, size); break;
    case 5: check_query(s); break;
    case 6: {
        int v = -1;
        if (s3_parse_max(s, 1000, 1000, &v) == 0 && (v < 0 || v > 1000)) abort();
        break;
    }
    case 7: s3_utf8_valid(s, size); break;
    }
    free(s);
    return 0;
}
