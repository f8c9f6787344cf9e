/*
 * fuzz_sigv4.c — libFuzzer target for the SigV4 parsers and canonicalisation:
 * the Authorization header, the presigned query, the raw path and headers all
 * come from the input.
 *
 * Input layout: lines separated by '\n'.  Line 0 is the raw path, line 1 the
 * raw query, then "name:value" header lines (the first byte of the input also
 * picks whether an Authorization header built from line 2 is added).  Every
 * request is parsed; a parsed request is canonicalised and verified, and a
 * request signed by sigv4_sign must verify — that property is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"

#define MAX_HEADERS 32
#define NOW 1369353600

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

static void check_roundtrip(const sigv4_request *r) {
    /* The request as a client sends it: its headers, less those that would
     * change how it is read, plus the date and payload hash a signer adds.
     * Every x-amz-* header present must be signed (else AccessDenied), so the
     * fuzzed x-amz-* headers are dropped too and the two added are signed. */
    auth_header hs[MAX_HEADERS + 3];
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const auth_header *h = &r->headers[i];
        if ((h->name_len == 13 && strncasecmp(h->name, "authorization", 13) == 0) ||
            (h->name_len >= 6 && strncasecmp(h->name, "x-amz-", 6) == 0))
            continue;
        hs[n++] = *h;
    }
    hs[n++] = (auth_header){"x-amz-date", 10, "20130524T000000Z", 16};
    hs[n++] = (auth_header){"x-amz-content-sha256", 20, "UNSIGNED-PAYLOAD", 16};
    sigv4_request s = *r;
    s.headers = hs;
    s.nheaders = n;
    buf_t authz;
    buf_init(&authz);
    /* Only requests that carry the headers we sign. */
    if (sigv4_sign(&s, "AK", "secret", "us-east-1", "s3", "20130524T000000Z", "host;x-amz-content-sha256;x-amz-date",
                   "UNSIGNED-PAYLOAD", &authz) == 0) {
        hs[n++] = (auth_header){"Authorization", 13, authz.data, authz.len};
        s.nheaders = n;
        sigv4_auth a;
        const char *code, *msg;
        int rc = sigv4_parse(&s, &a, &code, &msg);
        /* A query carrying X-Amz-Algorithm makes the request ambiguous: refused. */
        if (rc == 0 && sigv4_verify(&s, &a, "secret", NOW, 900, &code, &msg) != 0) abort();
    }
    buf_free(&authz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > 8192) return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char *lines[MAX_HEADERS + 3];
    size_t nl = split_lines(s + 1, size - 1, lines, MAX_HEADERS + 3);
    const char *path = nl > 0 ? lines[0] : "/";
    const char *query = nl > 1 ? lines[1] : "";

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
    sigv4_auth a;
    const char *code = NULL, *msg = NULL;
    if (sigv4_parse(&r, &a, &code, &msg) == 0) {
        buf_t c;
        buf_init(&c);
        sigv4_canonical_request(&r, &a, &c);
        buf_free(&c);
        sigv4_verify(&r, &a, "secret", NOW, 900, &code, &msg);
    } else if (!code || !msg) {
        abort(); /* every refusal names its S3 error */
    }
    check_roundtrip(&r);
    free(s);
    return 0;
}
