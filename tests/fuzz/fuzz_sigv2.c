/*
 * fuzz_sigv2.c — libFuzzer target for the SigV2 parsers and the string to
 * sign: the Authorization header, the AWSAccessKeyId / Signature / Expires
 * query, the raw path, the sub-resources and the x-amz-* headers all come from
 * the input.
 *
 * Input layout: lines separated by '\n'.  Line 0 is the raw path, line 1 the
 * raw query, then "name:value" header lines.  The first byte picks the method
 * (bit 1), whether an Authorization header is built from line 2 (bit 0) and
 * whether the request is virtual-host style (bit 2).  Every request is
 * classified and, when it is SigV2, parsed; a parsed request is canonicalised
 * and verified.  Two properties are checked: every refusal names its S3 error,
 * and a request signed by sigv2_sign or presigned by sigv2_presign verifies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"

#define MAX_HEADERS 32
#define NOW 1175024202 /* Tue, 27 Mar 2007 19:36:42 GMT */
#define DATE "Tue, 27 Mar 2007 19:36:42 GMT"

static size_t split_lines(char *s, size_t n, char **lines, size_t max) {
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= n && count < max; i++) {
        if (i == n || s[i] == '\n') {
            s[i] = '\0';
            lines[count++] = s + start;
            start = i + 1;
        }
    }
    return count;
}

static bool named(const auth_header *h, const char *name) {
    return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

static void check_roundtrips(const sigv4_request *r, const char *vhost) {
    /* The fuzzed headers minus those that decide how the request is read. */
    auth_header hs[MAX_HEADERS + 2];
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const auth_header *h = &r->headers[i];
        if (named(h, "authorization") || named(h, "date") || named(h, "x-amz-date")) continue;
        hs[n++] = *h;
    }
    hs[n++] = (auth_header){"Date", 4, DATE, sizeof DATE - 1};
    sigv4_request s = *r;
    s.headers = hs;
    s.nheaders = n;
    sigv4_auth a;
    const char *code, *msg;

    buf_t authz;
    buf_init(&authz);
    if (sigv2_sign(&s, vhost, "AK", "secret", &authz) == 0) {
        hs[n] = (auth_header){"Authorization", 13, authz.data, authz.len};
        s.nheaders = n + 1;
        if (!sigv2_present(&s)) abort();
        /* Refusals here are requests that also carry query credentials. */
        if (sigv2_parse(&s, &a, &code, &msg) == 0 &&
            sigv2_verify(&s, &a, vhost, "secret", NOW, 900, &code, &msg) != 0)
            abort();
    }
    buf_free(&authz);

    buf_t q;
    buf_init(&q);
    s.nheaders = n;
    if (sigv2_presign(&s, vhost, "AK", "secret", NOW + 60, &q) == 0) {
        s.raw_query = q.data;
        if (!sigv2_present(&s)) abort();
        if (sigv2_parse(&s, &a, &code, &msg) == 0 &&
            sigv2_verify(&s, &a, vhost, "secret", NOW, 900, &code, &msg) != 0)
            abort();
    }
    buf_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > 8192) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *lines[MAX_HEADERS + 3];
    size_t nl = split_lines(s + 1, size - 1, lines, MAX_HEADERS + 3);
    const char *path = nl > 0 ? lines[0] : "/";
    const char *query = nl > 1 ? lines[1] : "";
    const char *vhost = (data[0] & 4) ? "bkt" : NULL;

    auth_header hs[MAX_HEADERS + 1];
    size_t nh = 0;
    for (size_t i = 2; i < nl && nh < MAX_HEADERS; i++) {
        char *colon = strchr(lines[i], ':');
        if (!colon) continue;
        hs[nh++] = (auth_header){lines[i], (size_t)(colon - lines[i]), colon + 1, strlen(colon + 1)};
    }
    if ((data[0] & 1) && nl > 2)
        hs[nh++] = (auth_header){"Authorization", 13, lines[2], strlen(lines[2])};

    sigv4_request r = {.method = (data[0] & 2) ? "PUT" : "GET", .raw_path = path, .raw_query = query,
                       .headers = hs, .nheaders = nh};
    if (sigv2_present(&r)) {
        sigv4_auth a;
        const char *code = NULL, *msg = NULL;
        if (sigv2_parse(&r, &a, &code, &msg) == 0) {
            if (a.kind != SIGV2_HEADER && a.kind != SIGV2_PRESIGNED) abort();
            buf_t sts;
            buf_init(&sts);
            sigv2_string_to_sign(&r, &a, vhost, &sts);
            buf_free(&sts);
            code = msg = NULL;
            if (sigv2_verify(&r, &a, vhost, "secret", NOW, 900, &code, &msg) != 0 && (!code || !msg))
                abort();
        } else if (!code || !msg) {
            abort(); /* every refusal names its S3 error */
        }
    }
    check_roundtrips(&r, vhost);
    free(s);
    return 0;
}
