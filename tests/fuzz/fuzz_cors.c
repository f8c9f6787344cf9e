/*
 * fuzz_cors.c — libFuzzer target for the CORS configuration a bucket owner
 * PUTs and the metadata keeps (s3_cors_parse), and the matching of requests
 * against it (s3_cors_match).
 *
 * A document that parses must be within S3's limits, render to a stored
 * form that parses to a configuration rendering the same bytes, and each
 * rule must allow its own wildcard-free origins with its first method.  One
 * that does not parse must say why and leave nothing behind.  The input up
 * to its first NUL is the document; what follows, split at NULs, is an
 * origin, a method and a list of requested headers matched against it (a
 * request is untrusted too).
 */
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    s3_cors_config c;
    char why[512];
    why[0] = '\0';
    bool inval = false;
    const uint8_t *nul = memchr(data, '\0', size);
    size_t doclen = nul ? (size_t)(nul - data) : size;
    int rc = s3_cors_parse((const char *)data, doclen, &c, why, sizeof why, &inval);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc != 0) {
        if (c.n != 0 || c.rules) abort();
        if (rc == CAIRN_EINVAL && !why[0]) abort();
        return 0;
    }
    if (c.n < 1 || c.n > S3_CORS_MAX_RULES) abort();
    buf_t doc, again;
    buf_init(&doc);
    buf_init(&again);
    s3_cors_render(&c, &doc);
    s3_cors_config back;
    if (doc.oom || s3_cors_parse(doc.data, doc.len, &back, why, sizeof why, &inval) != 0) abort();
    s3_cors_render(&back, &again);
    if (again.len != doc.len || memcmp(again.data, doc.data, doc.len) != 0) abort();
    s3_cors_config_free(&back);
    for (int i = 0; i < c.n; i++) {
        const s3_cors_rule *r = &c.rules[i];
        if (r->norigins < 1 || r->nmethods < 1 || r->nmethods > 5) abort();
        for (int k = 0; k < r->norigins; k++) {
            if (strchr(r->origins[k], '*')) continue;
            const char *o = NULL;
            const s3_cors_rule *m = s3_cors_match(&c, r->origins[k], r->methods[0], NULL, &o);
            if (!m || m > r || !o) abort();
        }
    }
    if (nul) {
        /* origin \0 method \0 headers, each NUL-terminated in a copy */
        size_t rest = size - doclen - 1;
        char *req = malloc(rest + 3);
        if (!req) abort();
        memcpy(req, nul + 1, rest);
        memset(req + rest, 0, 3);
        const char *origin = req;
        const char *method = origin + strlen(origin) + 1;
        const char *headers = method + strlen(method) + 1;
        if (method <= req + rest + 1 && headers <= req + rest + 2) {
            (void)s3_cors_match(&c, origin, method, headers, NULL);
            (void)s3_cors_match(&c, origin, method, NULL, NULL);
        }
        free(req);
    }
    buf_free(&doc);
    buf_free(&again);
    s3_cors_config_free(&c);
    return 0;
}
