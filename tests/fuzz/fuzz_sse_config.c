/*
 * fuzz_sse_config.c — libFuzzer target for the default encryption document
 * a bucket owner PUTs and the metadata keeps (s3_sse_config_parse).
 *
 * A document that parses must name AES256 or aws:kms, carry a key id only
 * with aws:kms (bare, a valid one: 1..64 of [A-Za-z0-9_-]), and render to a
 * stored form that parses back to the same configuration and renders the
 * same bytes.  One that does not parse must name an S3 error code and a
 * reason and leave nothing behind.
 */
#include <stdlib.h>
#include <string.h>

#include "s3/internal.h"

static bool key_ok(const char *id) {
    size_t n = strlen(id);
    if (n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9') ||
              id[i] == '_' || id[i] == '-'))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    s3_sse_default c;
    const char *code = NULL, *why = NULL;
    int rc = s3_sse_config_parse((const char *)data, size, &c, &code, &why);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc != 0) {
        if (c.mode != 0 || c.kms_key_id[0] || c.bucket_key) abort();
        if (rc == CAIRN_EINVAL &&
            (!code || !why || !why[0] ||
             (strcmp(code, "MalformedXML") && strcmp(code, "InvalidArgument") && strcmp(code, "NotImplemented"))))
            abort();
        return 0;
    }
    if (c.mode != 'S' && c.mode != 'K') abort();
    if (memchr(c.kms_key_id, '\0', sizeof c.kms_key_id) == NULL) abort();
    if (c.mode == 'S' && c.kms_key_id[0]) abort();
    if (!key_ok(c.kms_key_id)) abort();
    buf_t doc, again;
    buf_init(&doc);
    buf_init(&again);
    s3_sse_config_render(&c, &doc);
    s3_sse_default back;
    if (doc.oom || s3_sse_config_parse(doc.data, doc.len, &back, &code, &why) != 0) abort();
    if (back.mode != c.mode || strcmp(back.kms_key_id, c.kms_key_id) || back.bucket_key != c.bucket_key) abort();
    s3_sse_config_render(&back, &again);
    if (again.len != doc.len || memcmp(again.data, doc.data, doc.len) != 0) abort();
    buf_free(&doc);
    buf_free(&again);
    return 0;
}
