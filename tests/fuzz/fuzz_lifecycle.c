/*
 * fuzz_lifecycle.c — libFuzzer target for the lifecycle configuration a
 * bucket owner PUTs and the metadata keeps (s3_lifecycle_parse), and the
 * questions runs and GETs ask of it (s3_lifecycle_filter_match,
 * s3_lifecycle_expiry).
 *
 * A document that parses must be within S3's limits, render to a stored
 * form that parses to a configuration rendering the same bytes, and every
 * rule's own prefix must pass its prefix test.  One that does not parse
 * must name an S3 error code and a reason, and leave nothing behind.  The
 * input up to its first NUL is the document; what follows is a key matched
 * against it (a request's key is untrusted too).
 */
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

static const char *const codes[] = {"MalformedXML", "InvalidArgument", "InvalidRequest", "InvalidTag",
                                    "NotImplemented"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    s3_lifecycle_config c;
    const char *code = NULL, *why = NULL;
    const uint8_t *nul = memchr(data, '\0', size);
    size_t doclen = nul ? (size_t)(nul - data) : size;
    int rc = s3_lifecycle_parse((const char *)data, doclen, &c, &code, &why);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc != 0) {
        if (c.n != 0 || c.rules) abort();
        if (rc == CAIRN_EINVAL) {
            bool known = false;
            for (size_t i = 0; code && i < sizeof codes / sizeof codes[0]; i++) known |= !strcmp(code, codes[i]);
            if (!known || !why || !why[0]) abort();
        }
        return 0;
    }
    if (c.n < 1 || c.n > S3_LIFECYCLE_MAX_RULES) abort();
    buf_t doc, again;
    buf_init(&doc);
    buf_init(&again);
    s3_lifecycle_render(&c, &doc);
    s3_lifecycle_config back;
    if (doc.oom || s3_lifecycle_parse(doc.data, doc.len, &back, &code, &why) != 0) abort();
    s3_lifecycle_render(&back, &again);
    if (again.len != doc.len || memcmp(again.data, doc.data, doc.len) != 0) abort();
    s3_lifecycle_config_free(&back);
    for (int i = 0; i < c.n; i++) {
        const s3_lifecycle_rule *r = &c.rules[i];
        if (!r->id || strlen(r->id) > 255 || !r->prefix) abort();
        if (r->size_gt >= 0 && r->size_lt >= 0 && r->size_gt >= r->size_lt) abort();
        if (r->tags.n == 0 && r->size_gt < 0 && r->size_lt < 0 &&
            !s3_lifecycle_filter_match(r, r->prefix, strlen(r->prefix), 0, NULL))
            abort();
    }
    if (nul) {
        size_t kl = size - doclen - 1;
        char *key = malloc(kl + 1);
        if (!key) abort();
        memcpy(key, nul + 1, kl);
        key[kl] = '\0';
        const char *id = NULL;
        int64_t due = s3_lifecycle_expiry(&c, key, kl, (int64_t)kl, 0, NULL, 86400000, &id);
        if (due != 0 && !id) abort();
        for (int i = 0; i < c.n; i++) (void)s3_lifecycle_filter_match(&c.rules[i], key, kl, (int64_t)kl, NULL);
        free(key);
    }
    buf_free(&doc);
    buf_free(&again);
    s3_lifecycle_config_free(&c);
    return 0;
}
