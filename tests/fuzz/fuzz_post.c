/*
 * fuzz_post.c — libFuzzer target for POST Object's multipart/form-data
 * parser (s3_form_boundary, s3_form_* in src/s3/form.c).
 *
 * The input is a Content-Type value, a NUL, then the body.  The body is
 * fed whole and again in pieces whose sizes come from the body's own
 * bytes: both parses must agree (same result, same parts and content), a
 * delimiter split across feeds included.  A part's name must be a C
 * string the sink can read; content never outgrows the body.
 */
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

typedef struct {
    unsigned char digest[64];   /* a running checksum of what the sink saw */
    size_t bytes;
    int parts;
} seen;

static void mix(seen *s, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) s->digest[(s->bytes + i) % 64] = (unsigned char)(s->digest[(s->bytes + i) % 64] * 31 + b[i] + 1);
    s->bytes += n;
}

static int on_begin(void *ud, const char *name, const char *filename, const char *type) {
    seen *s = ud;
    mix(s, "B", 1);
    mix(s, name, strlen(name) + 1);
    if (filename) mix(s, filename, strlen(filename) + 1);
    if (type) mix(s, type, strlen(type) + 1);
    return 0;
}

static int on_data(void *ud, const char *d, size_t n) {
    seen *s = ud;
    if (n == 0) abort();   /* never called empty */
    mix(s, d, n);
    return 0;
}

static int on_end(void *ud) {
    seen *s = ud;
    mix(s, "E", 1);
    return ++s->parts == 50 ? S3_FORM_STOP : 0;
}

static const s3_form_sink sink = {on_begin, on_data, on_end};

static int run(const char *boundary, const uint8_t *body, size_t n, const uint8_t *steps, size_t nsteps, seen *s) {
    s3_form *f = s3_form_new(boundary, &sink, s);
    if (!f) abort();
    size_t off = 0, k = 0;
    int rc = 0;
    const char *why = NULL;
    while (off < n && rc == 0) {
        size_t step = nsteps ? (size_t)steps[k++ % nsteps] % 17 + 1 : n;
        if (step > n - off) step = n - off;
        rc = s3_form_feed(f, (const char *)body + off, step, &why);
        off += step;
        if (rc != 0 && !why) abort();
    }
    if (rc == 0) rc = s3_form_finish(f, &why);
    if (rc != 0 && !why) abort();
    if (s3_form_offset(f) > n) abort();
    s3_form_free(f);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul) return 0;
    char *ct = strndup((const char *)data, (size_t)(nul - data));
    if (!ct) return 0;
    char boundary[S3_FORM_BOUNDARY_MAX + 1];
    if (s3_form_boundary(ct, boundary) != 0) {
        free(ct);
        return 0;
    }
    if (strlen(boundary) == 0 || strlen(boundary) > S3_FORM_BOUNDARY_MAX) abort();
    const uint8_t *body = nul + 1;
    size_t n = size - (size_t)(nul + 1 - data);
    seen whole = {0}, split = {0};
    int a = run(boundary, body, n, NULL, 0, &whole);
    int b = run(boundary, body, n, body, n, &split);
    if (a != b || whole.bytes != split.bytes || whole.parts != split.parts ||
        memcmp(whole.digest, split.digest, sizeof whole.digest) != 0)
        abort();
    free(ct);
    return 0;
}
