/*
 * test_s3.c — the S3 layer's pure rules: bucket names, Range, conditionals,
 * XML request bodies, the error table.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "s3/s3.h"

Test(bucket_names, valid) {
    const char *ok[] = {"abc", "my-bucket", "my.bucket.name", "a1b2c3", "123", "a-b.c-d",
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(s3_bucket_name_valid(ok[i]), "%s should be valid", ok[i]);
}

Test(bucket_names, invalid) {
    const char *bad[] = {"", "ab", "ABC", "my_bucket", "-abc", "abc-", ".abc", "abc.", "a..b",
                         "a.-b", "a-.b", "192.168.5.4", "xn--abc", "sthree-abc", "abc-s3alias",
                         "abc--ol-s3", "has space", "caf\xc3\xa9",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect(!s3_bucket_name_valid(bad[i]), "%s should be invalid", bad[i]);
}

static s3_range_result rng(const char *h, int64_t size, int64_t *s, int64_t *l) {
    *s = -1;
    *l = -1;
    return s3_parse_range(h, size, s, l);
}

Test(range, forms) {
    int64_t s, l;
    cr_assert_eq(rng("bytes=0-9", 100, &s, &l), S3_RANGE_OK);
    cr_expect(s == 0 && l == 10);
    cr_assert_eq(rng("bytes=90-", 100, &s, &l), S3_RANGE_OK);
    cr_expect(s == 90 && l == 10);
    cr_assert_eq(rng("bytes=-5", 100, &s, &l), S3_RANGE_OK);
    cr_expect(s == 95 && l == 5);
    cr_assert_eq(rng("bytes=50-1000", 100, &s, &l), S3_RANGE_OK, "end past size is clamped");
    cr_expect(s == 50 && l == 50);
    cr_assert_eq(rng("bytes=-1000", 100, &s, &l), S3_RANGE_OK, "suffix longer than object is whole");
    cr_expect(s == 0 && l == 100);
    cr_assert_eq(rng("bytes=99-99", 100, &s, &l), S3_RANGE_OK);
    cr_expect(s == 99 && l == 1);
}

Test(range, unsatisfiable) {
    int64_t s, l;
    cr_expect_eq(rng("bytes=100-", 100, &s, &l), S3_RANGE_UNSATISFIABLE);
    cr_expect_eq(rng("bytes=100-200", 100, &s, &l), S3_RANGE_UNSATISFIABLE);
    cr_expect_eq(rng("bytes=-0", 100, &s, &l), S3_RANGE_UNSATISFIABLE);
    cr_expect_eq(rng("bytes=0-", 0, &s, &l), S3_RANGE_UNSATISFIABLE);
    cr_expect_eq(rng("bytes=-5", 0, &s, &l), S3_RANGE_UNSATISFIABLE);
}

Test(range, ignored) {
    int64_t s, l;
    const char *ign[] = {NULL, "", "bytes=", "bytes=a-b", "items=0-5", "bytes=5-2", "bytes=0-1,3-4",
                         "bytes=--5", "bytes=1-2-3", "bytes= 0x1-2", "bytes=99999999999999999999-"};
    for (size_t i = 0; i < sizeof ign / sizeof ign[0]; i++)
        cr_expect_eq(rng(ign[i], 100, &s, &l), S3_RANGE_NONE, "'%s' should be ignored", ign[i] ? ign[i] : "(null)");
}

#define T0 "Sat, 21 Nov 2026 10:00:00 GMT"
#define T_BEFORE "Sat, 21 Nov 2026 09:00:00 GMT"
#define T_AFTER "Sat, 21 Nov 2026 11:00:00 GMT"
static const int64_t mtime = 1795255200000LL; /* 2026-11-21T10:00:00Z */

Test(conditionals, etags) {
    const char *e = "abc123";
    cr_expect_eq(s3_eval_conditionals("\"abc123\"", NULL, NULL, NULL, e, mtime), 0);
    cr_expect_eq(s3_eval_conditionals("abc123", NULL, NULL, NULL, e, mtime), 0, "unquoted accepted");
    cr_expect_eq(s3_eval_conditionals("\"x\", \"abc123\"", NULL, NULL, NULL, e, mtime), 0, "list");
    cr_expect_eq(s3_eval_conditionals("*", NULL, NULL, NULL, e, mtime), 0);
    cr_expect_eq(s3_eval_conditionals("\"nope\"", NULL, NULL, NULL, e, mtime), 412);
    cr_expect_eq(s3_eval_conditionals(NULL, "\"abc123\"", NULL, NULL, e, mtime), 304);
    cr_expect_eq(s3_eval_conditionals(NULL, "*", NULL, NULL, e, mtime), 304);
    cr_expect_eq(s3_eval_conditionals(NULL, "\"other\"", NULL, NULL, e, mtime), 0);
}

Test(conditionals, dates) {
    const char *e = "abc";
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, T_BEFORE, NULL, e, mtime), 0, "modified since earlier");
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, T0, NULL, e, mtime), 304, "not modified since same time");
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, T_AFTER, NULL, e, mtime), 304);
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, NULL, T_AFTER, e, mtime), 0);
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, NULL, T0, e, mtime), 0);
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, NULL, T_BEFORE, e, mtime), 412);
    cr_expect_eq(s3_eval_conditionals(NULL, NULL, "garbage", "garbage", e, mtime), 0, "bad dates ignored");
}

Test(conditionals, precedence) {
    const char *e = "abc";
    /* If-Match true wins over a false If-Unmodified-Since (S3 docs). */
    cr_expect_eq(s3_eval_conditionals("\"abc\"", NULL, NULL, T_BEFORE, e, mtime), 0);
    /* If-None-Match false (etag matches) gives 304 even if modified since. */
    cr_expect_eq(s3_eval_conditionals(NULL, "\"abc\"", T_BEFORE, NULL, e, mtime), 304);
    /* If-None-Match true overrides If-Modified-Since false. */
    cr_expect_eq(s3_eval_conditionals(NULL, "\"zzz\"", T_AFTER, NULL, e, mtime), 0);
    /* Failed If-Match beats everything. */
    cr_expect_eq(s3_eval_conditionals("\"zzz\"", "\"abc\"", NULL, NULL, e, mtime), 412);
}

Test(xml, delete_objects) {
    const char *body = "<?xml version=\"1.0\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                       "<Quiet>true</Quiet><Object><Key>a/b</Key></Object>"
                       "<Object><Key>caf&#xE9; &amp; &lt;x&gt;</Key><VersionId>1</VersionId></Object></Delete>";
    s3_delete_req d;
    cr_assert_eq(s3_parse_delete_xml(body, strlen(body), &d), 0);
    cr_expect(d.quiet);
    cr_assert_eq(d.count, 2);
    cr_expect_str_eq(d.objects[0].key, "a/b");
    cr_expect_str_eq(d.objects[1].key, "caf\xc3\xa9 & <x>");
    s3_delete_req_free(&d);
}

Test(xml, delete_objects_malformed) {
    const char *bad[] = {"", "<Delete>", "<Delete></Delete>", "<Other><Object><Key>a</Key></Object></Other>",
                         "<Delete><Object></Object></Delete>", "<Delete><Bogus/><Object><Key>a</Key></Object></Delete>",
                         "not xml at all",
                         "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Delete><Object><Key>&x;</Key></Object></Delete>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s3_delete_req d;
        int rc = s3_parse_delete_xml(bad[i], strlen(bad[i]), &d);
        if (rc == 0) {
            /* The external entity must never be expanded into a key. */
            for (int k = 0; k < d.count; k++) cr_expect(strstr(d.objects[k].key, "root:") == NULL);
            s3_delete_req_free(&d);
            cr_expect(i == 7, "case %zu should be rejected", i);
        }
    }
}

Test(xml, delete_objects_limit) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<Delete>");
    for (int i = 0; i < 1001; i++) buf_printf(&b, "<Object><Key>k%d</Key></Object>", i);
    buf_puts(&b, "</Delete>");
    s3_delete_req d;
    cr_expect_neq(s3_parse_delete_xml(b.data, b.len, &d), 0, "1001 objects is too many");
    buf_free(&b);
}

Test(xml, create_bucket) {
    char loc[64];
    cr_expect_eq(s3_parse_create_bucket_xml("", 0, loc, sizeof loc), 0);
    cr_expect_str_eq(loc, "");
    const char *b = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
    cr_expect_eq(s3_parse_create_bucket_xml(b, strlen(b), loc, sizeof loc), 0);
    cr_expect_str_eq(loc, "eu-west-1");
    cr_expect_neq(s3_parse_create_bucket_xml("<Nope/>", 7, loc, sizeof loc), 0);
    cr_expect_neq(s3_parse_create_bucket_xml("<a", 2, loc, sizeof loc), 0);
}

Test(errors, statuses) {
    cr_expect_eq(s3_error_status("NoSuchKey"), 404);
    cr_expect_eq(s3_error_status("NoSuchBucket"), 404);
    cr_expect_eq(s3_error_status("AccessDenied"), 403);
    cr_expect_eq(s3_error_status("SignatureDoesNotMatch"), 403);
    cr_expect_eq(s3_error_status("InvalidRange"), 416);
    cr_expect_eq(s3_error_status("BucketNotEmpty"), 409);
    cr_expect_eq(s3_error_status("MissingContentLength"), 411);
    cr_expect_eq(s3_error_status("MethodNotAllowed"), 405);
    cr_expect_eq(s3_error_status("PreconditionFailed"), 412);
    cr_expect_eq(s3_error_status("NotImplemented"), 501);
    cr_expect_eq(s3_error_status("NoSuchThing"), 500);
}

/* Content-MD5 and continuation tokens are decoded into fixed buffers: the
 * decoder must never write past cap, whatever the input's length. */
Test(base64, never_writes_past_cap) {
    const char *inputs[] = {"AAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 28 chars: 21 bytes */
                            "AAAAAAAAAAAAAAAAAAAAAAAA",       /* 24 chars: 18 bytes */
                            "AAAAAAAAAAAAAAAAAAAAAA==",       /* 16 bytes, padded */
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t cap = 0; cap <= 24; cap++) {
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
            uint8_t buf[64];
            memset(buf, 0xA5, sizeof buf);
            size_t n = 99;
            bool ok = s3_base64_decode(inputs[i], buf, cap, &n);
            for (size_t j = cap; j < sizeof buf; j++)
                cr_assert_eq(buf[j], 0xA5, "byte %zu written with cap %zu for %s", j, cap, inputs[i]);
            if (ok) cr_expect_leq(n, cap);
        }
    }
}

Test(base64, decodes_content_md5) {
    uint8_t d[20];
    size_t n = 0;
    /* MD5("") = d41d8cd98f00b204e9800998ecf8427e */
    cr_assert(s3_base64_decode("1B2M2Y8AsgTpgAmY7PhCfg==", d, sizeof d, &n));
    cr_assert_eq(n, 16);
    cr_expect_eq(d[0], 0xd4);
    cr_expect_eq(d[15], 0x7e);
    cr_expect(!s3_base64_decode("1B2M2Y8AsgTpgAmY7PhCfg=", d, sizeof d, &n), "length not a multiple of 4");
    cr_expect(!s3_base64_decode("1B2M2Y8AsgTpgAmY7P!Cfg==", d, sizeof d, &n), "bad character");
    char enc[32];
    s3_base64_encode(d, 16, enc);
    cr_expect_str_eq(enc, "1B2M2Y8AsgTpgAmY7PhCfg==");
}
