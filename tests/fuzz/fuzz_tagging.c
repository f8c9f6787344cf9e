/*
 * fuzz_tagging.c — libFuzzer target for the tags clients send: the
 * <Tagging> document of PutObjectTagging / PutBucketTagging and the
 * x-amz-tagging header (s3_tagging_parse_xml, s3_tagging_parse_header),
 * and the stored forms they become.
 *
 * The first byte picks the parser (even: the document, for an object when
 * bit 1 is clear, a bucket when set; odd: the header); the rest is the
 * input.  A set that parses must be within S3's limits, render to a
 * document that parses to a set rendering the same bytes, and survive the
 * trip through stored headers JSON unchanged.  A failure must name an S3
 * error code and leave nothing behind.
 */
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

static bool same(const s3_tagset *a, const s3_tagset *b) {
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->tags[i].key, b->tags[i].key) || strcmp(a->tags[i].value, b->tags[i].value)) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    bool header = data[0] & 1;
    int max = data[0] & 2 ? S3_TAGS_BUCKET_MAX : S3_TAGS_OBJECT_MAX;
    if (header) max = S3_TAGS_OBJECT_MAX;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    s3_tagset t;
    const char *code = NULL, *why = NULL;
    int rc = header ? s3_tagging_parse_header(in, len, &t, &code, &why)
                    : s3_tagging_parse_xml(in, len, max, &t, &code, &why);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc != 0) {
        if (t.n != 0 || t.tags) abort();
        if (rc == CAIRN_EINVAL && (!code || !why || !*why)) abort();
        if (rc == CAIRN_EINVAL && strcmp(code, "MalformedXML") && strcmp(code, "InvalidTag") &&
            strcmp(code, "InvalidArgument"))
            abort();
        return 0;
    }
    if (t.n < 0 || t.n > max) abort();
    for (int i = 0; i < t.n; i++) {
        size_t kl = strlen(t.tags[i].key);
        if (kl == 0 || kl > 128 * 4 || strlen(t.tags[i].value) > 256 * 4) abort();
    }
    /* the document: render, parse, render again */
    buf_t doc, again;
    buf_init(&doc);
    buf_init(&again);
    s3_tagging_render(&t, &doc);
    s3_tagset back;
    if (doc.oom || s3_tagging_parse_xml(doc.data, doc.len, max, &back, &code, &why) != 0) abort();
    if (!same(&t, &back)) abort();
    s3_tagging_render(&back, &again);
    if (again.len != doc.len || memcmp(again.data, doc.data, doc.len) != 0) abort();
    s3_tagset_free(&back);
    /* the stored headers: set, count, read back, remove */
    char *json = NULL;
    if (s3_headers_set_tags("{\"content-type\":\"a/b\"}", &t, &json) != 0) abort();
    if (s3_tag_count(json) != t.n) abort();
    if (s3_tagset_from_headers(json, &back) != 0 || !same(&t, &back)) abort();
    s3_tagset_free(&back);
    char *none = NULL;
    if (s3_headers_set_tags(json, NULL, &none) != 0 || s3_tag_count(none) != 0 || !strstr(none, "content-type"))
        abort();
    free(none);
    free(json);
    buf_free(&doc);
    buf_free(&again);
    s3_tagset_free(&t);
    return 0;
}
