/*
 * test_s3.c — the S3 layer's pure rules: bucket names, Range, conditionals,
 * XML request bodies, the error table.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
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
    cr_expect_eq(s3_error_status("ReplicationConfigurationNotFoundError"), 404);
    cr_expect_eq(s3_error_status("OwnershipControlsNotFoundError"), 404);
    cr_expect_eq(s3_error_status("NoSuchPublicAccessBlockConfiguration"), 404);
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

/* ---- the edges of the pure helpers -------------------------------------------------------- */

Test(bucket_names, reserved_operator_paths) {
    /* /health/... and /metrics are the operator endpoints: never buckets. */
    cr_expect(!s3_bucket_name_valid("health"));
    cr_expect(!s3_bucket_name_valid("metrics"));
    cr_expect(s3_bucket_name_valid("healthy"));
    cr_expect(s3_bucket_name_valid("1.2.3"), "three dots short of an IPv4 address");
    cr_expect(s3_bucket_name_valid("1.2.3.a"));
}

Test(health, ready_status_fails_on_required_and_degrades_on_optional) {
    const bool req[3] = {true, true, false};
    cr_expect_str_eq(s3_ready_status(3, req, (const int[]){0, 0, 0}), "ok");
    cr_expect_str_eq(s3_ready_status(3, req, (const int[]){0, 0, -3}), "degraded", "only the optional one is down");
    cr_expect_str_eq(s3_ready_status(3, req, (const int[]){-3, 0, 0}), "fail", "the database is required");
    cr_expect_str_eq(s3_ready_status(3, req, (const int[]){0, -13, -3}), "fail", "a required one decides");
    cr_expect_str_eq(s3_ready_status(0, req, NULL), "ok");
}

Test(utf8, overlongs_surrogates_and_range) {
    cr_expect(s3_utf8_valid("", 0));
    cr_expect(s3_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    cr_expect(!s3_utf8_valid("\xe0\x80\xaf", 3), "overlong 3-byte");
    cr_expect(!s3_utf8_valid("\xf0\x80\x80\xaf", 4), "overlong 4-byte");
    cr_expect(!s3_utf8_valid("\xf4\x90\x80\x80", 4), "past U+10FFFF");
    cr_expect(!s3_utf8_valid("\xed\xa0\x80", 3), "surrogate");
    cr_expect(!s3_utf8_valid("\xc0\xaf", 2), "overlong 2-byte lead");
    cr_expect(!s3_utf8_valid("\xc3", 1), "truncated");
    cr_expect(!s3_utf8_valid("\xe2\x28\xa1", 3), "bad continuation");
    cr_expect(!s3_utf8_valid("\x80", 1), "lone continuation");
    cr_expect(s3_utf8_valid("\xf4\x8f\xbf\xbf", 4), "U+10FFFF itself");
}

static int query(const char *raw, s3_query_param *p, int max, int *n) {
    arena *a = arena_new(1 << 16);
    cr_assert_not_null(a);
    int rc = s3_parse_query(a, raw, p, max, n);
    /* keep the strings for the caller's checks: copy them out of buf */
    static char keep[8][64];
    for (int i = 0; rc == 0 && i < *n && i < 8; i++) {
        snprintf(keep[i], 32, "%s", p[i].name);
        snprintf(keep[i] + 32, 32, "%s", p[i].value);
        p[i].name = keep[i];
        p[i].value = keep[i] + 32;
    }
    arena_free(a);
    return rc;
}

Test(query, decoding) {
    s3_query_param p[8];
    int n = -1;
    cr_assert_eq(query("", p, 8, &n), 0);
    cr_expect_eq(n, 0);
    cr_assert_eq(query("prefix=a+b%2Bc&list-type=2&acl", p, 8, &n), 0);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(p[0].name, "prefix");
    cr_expect_str_eq(p[0].value, "a b+c", "'+' is a space, %%2B a plus");
    cr_expect_str_eq(p[1].value, "2");
    cr_expect_str_eq(p[2].name, "acl");
    cr_expect_str_eq(p[2].value, "", "a parameter without '=' has an empty value");
    cr_assert_eq(query("&&a=1&&b=x=y&", p, 8, &n), 0, "empty parameters are skipped");
    cr_assert_eq(n, 2);
    cr_expect_str_eq(p[0].name, "a");
    cr_expect_str_eq(p[1].value, "x=y", "only the first '=' splits");
    cr_assert_eq(query("a+b+=+", p, 8, &n), 0);
    cr_expect_str_eq(p[0].name, "a b ");
    cr_expect_str_eq(p[0].value, " ");
}

Test(query, malformed) {
    s3_query_param p[4];
    int n;
    cr_expect_eq(query("a&b&c", p, 2, &n), CAIRN_EINVAL, "more than max parameters");
    cr_expect_eq(query("a&b", p, 2, &n), 0, "exactly max is fine");
    cr_expect_eq(query("%zz=1", p, 4, &n), CAIRN_EINVAL, "bad escape in a name");
    cr_expect_eq(query("a=%zz", p, 4, &n), CAIRN_EINVAL, "bad escape in a value");
    cr_expect_eq(query("a%00b=1", p, 4, &n), CAIRN_EINVAL, "NUL in a name");
    cr_expect_eq(query("a=%ff", p, 4, &n), CAIRN_EINVAL, "invalid UTF-8 in a value");
    cr_expect_eq(query("a=1&%c3", p, 4, &n), CAIRN_EINVAL, "truncated UTF-8 in a name");
}

static void token_roundtrip(const char *key, size_t len, bool is_prefix, const char *want, size_t wantlen,
                            bool want_inclusive) {
    char *t = s3_list_token_encode(key, len, is_prefix);
    cr_assert_not_null(t);
    char out[1025];
    size_t ol = 999;
    bool inc = !want_inclusive;
    cr_assert_eq(s3_list_token_decode(t, out, &ol, &inc), 0, "token %s", t);
    cr_expect_eq(ol, wantlen);
    cr_expect(memcmp(out, want, wantlen) == 0);
    cr_expect_eq(out[ol], '\0');
    cr_expect_eq(inc, want_inclusive);
    free(t);
}

Test(list_token, roundtrips) {
    token_roundtrip("photos/2026", 11, false, "photos/2026", 11, false);
    /* A common prefix resumes at its successor, inclusively. */
    token_roundtrip("photos/", 7, true, "photos0", 7, true);
    token_roundtrip("a\xff\xff", 3, true, "b", 1, true);
    /* Nothing follows a prefix of only 0xff bytes: resume at "" (the caller's
     * walk then stops on its own). */
    token_roundtrip("\xff\xff", 2, true, "", 0, true);
    token_roundtrip("", 0, false, "", 0, false);
}

Test(list_token, refuses_what_we_did_not_make) {
    char key[1025];
    size_t len;
    bool inc;
    cr_expect_eq(s3_list_token_decode("", key, &len, &inc), CAIRN_EINVAL);
    cr_expect_eq(s3_list_token_decode("WGFiYw==", key, &len, &inc), CAIRN_EINVAL, "'X' tag");
    cr_expect_eq(s3_list_token_decode("S2EAYg==", key, &len, &inc), CAIRN_EINVAL, "NUL in the key");
    cr_expect_eq(s3_list_token_decode("S2E", key, &len, &inc), CAIRN_EINVAL, "not base64");
    /* 'K' + 1025 bytes: a key longer than any key. */
    uint8_t raw[1026];
    raw[0] = 'K';
    memset(raw + 1, 'a', 1025);
    char tok[1400];
    s3_base64_encode(raw, sizeof raw, tok);
    cr_expect_eq(s3_list_token_decode(tok, key, &len, &inc), CAIRN_EINVAL, "key too long");
    s3_base64_encode(raw, 1025, tok);
    cr_expect_eq(s3_list_token_decode(tok, key, &len, &inc), 0, "1024 is the longest key");
    cr_expect_eq(len, 1024);
    char big[1500];
    memset(big, 'A', 1372);
    big[1372] = '\0';
    cr_expect_eq(s3_list_token_decode(big, key, &len, &inc), CAIRN_EINVAL, "longer than any token");
}

Test(range, whitespace_and_case) {
    int64_t s, l;
    cr_assert_eq(rng("  bytes=2-4", 10, &s, &l), S3_RANGE_OK);
    cr_expect(s == 2 && l == 3);
    cr_assert_eq(rng("BYTES= 2-4  ", 10, &s, &l), S3_RANGE_OK);
    cr_expect(s == 2 && l == 3);
    cr_expect_eq(rng("bytes=5", 10, &s, &l), S3_RANGE_NONE, "no dash");
    cr_expect_eq(rng("bytes=-", 10, &s, &l), S3_RANGE_NONE, "no suffix length");
    cr_expect_eq(rng("bytes=-x", 10, &s, &l), S3_RANGE_NONE);
    cr_expect_eq(rng("bytes=1-x", 10, &s, &l), S3_RANGE_NONE);
    cr_expect_eq(rng("bytes=   ", 10, &s, &l), S3_RANGE_NONE);
}

Test(copy_range, forms) {
    int64_t s = -1, l = -1;
    cr_assert_eq(s3_parse_copy_range("bytes=0-9", 10, &s, &l), 0);
    cr_expect(s == 0 && l == 10);
    cr_assert_eq(s3_parse_copy_range("bytes=3-3", 10, &s, &l), 0);
    cr_expect(s == 3 && l == 1);
    cr_expect_eq(s3_parse_copy_range("bytes=0-10", 10, &s, &l), CAIRN_ETOOBIG, "past the end: InvalidRange");
    cr_expect_eq(s3_parse_copy_range("bytes=10-10", 10, &s, &l), CAIRN_ETOOBIG);
    const char *bad[] = {NULL, "", "bytes 0-1", "bytes=", "bytes=5", "bytes=-5", "bytes=5-",
                         "bytes=a-1", "bytes=1-b", "bytes=5-3", "bytes=0-1,3-4", "bytes=1234567890123456789-1234567890123456790"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(s3_parse_copy_range(bad[i], 10, &s, &l), CAIRN_EINVAL, "'%s'", bad[i] ? bad[i] : "(null)");
}

Test(parse_max, values) {
    int v = -1;
    cr_expect_eq(s3_parse_max(NULL, 1000, 1000, &v), 0);
    cr_expect_eq(v, 1000, "absent gives the default");
    cr_expect_eq(s3_parse_max("0", 1000, 1000, &v), 0);
    cr_expect_eq(v, 0);
    cr_expect_eq(s3_parse_max("17", 1000, 1000, &v), 0);
    cr_expect_eq(v, 17);
    cr_expect_eq(s3_parse_max("1001", 1000, 1000, &v), 0);
    cr_expect_eq(v, 1000, "capped");
    cr_expect_eq(s3_parse_max("123456789012345678", 5, 1000, &v), 0);
    cr_expect_eq(v, 1000);
    cr_expect_eq(s3_parse_max("99999999999999999999999999", 5, 10000, &v), 0);
    cr_expect_eq(v, 10000, "a long run of digits is more than cap");
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1e3", "0x10", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(s3_parse_max(bad[i], 5, 10, &v), CAIRN_EINVAL, "'%s'", bad[i]);
}

Test(conditionals, etag_list_forms) {
    const char *e = "abc";
    cr_expect_eq(s3_eval_conditionals("W/\"abc\"", NULL, NULL, NULL, e, mtime), 0, "weak tag");
    cr_expect_eq(s3_eval_conditionals(" \"x\" , \"abc\" ", NULL, NULL, NULL, e, mtime), 0, "spaces");
    cr_expect_eq(s3_eval_conditionals("\"x\",,", NULL, NULL, NULL, e, mtime), 412, "trailing commas");
    cr_expect_eq(s3_eval_conditionals(", ", NULL, NULL, NULL, e, mtime), 412, "empty list");
    cr_expect_eq(s3_eval_conditionals("", NULL, NULL, NULL, e, mtime), 412, "empty header");
    cr_expect_eq(s3_eval_conditionals("\"abc", NULL, NULL, NULL, e, mtime), 412, "unbalanced quote");
    cr_expect_eq(s3_eval_conditionals("a", NULL, NULL, NULL, "a", mtime), 0, "one-character tag");
    cr_expect_eq(s3_eval_conditionals("\"", NULL, NULL, NULL, e, mtime), 412);
    cr_expect_eq(s3_eval_conditionals("W/", NULL, NULL, NULL, e, mtime), 412);
    cr_expect_eq(s3_eval_conditionals("\"Wx\"", NULL, NULL, NULL, "Wx", mtime), 0, "W not followed by /");
    cr_expect_eq(s3_eval_conditionals("Wx", NULL, NULL, NULL, "Wx", mtime), 0);
    cr_expect_eq(s3_eval_conditionals(NULL, "\"x\", W/\"abc\"", NULL, NULL, e, mtime), 304);
    cr_expect_eq(s3_eval_conditionals(NULL, "\"x\", ", NULL, NULL, e, mtime), 0);
}

Test(base64, edges) {
    uint8_t d[8];
    size_t n = 99;
    cr_expect(s3_base64_decode("", d, sizeof d, &n), "the empty string is zero bytes");
    cr_expect_eq(n, 0);
    cr_expect(s3_base64_decode("YQ==", d, sizeof d, &n));
    cr_expect(n == 1 && d[0] == 'a');
    cr_expect(s3_base64_decode("YWI=", d, sizeof d, &n));
    cr_expect(n == 2 && d[0] == 'a' && d[1] == 'b');
    cr_expect(!s3_base64_decode("YWJjZA==", d, 5, &n), "the decoding must fit before padding is dropped");
    char enc[8];
    s3_base64_encode((const uint8_t *)"", 0, enc);
    cr_expect_str_eq(enc, "");
}

Test(xml, delete_objects_shapes) {
    /* Comments are not elements; <Key> need not come first in <Object>. */
    const char *body = "<Delete><!-- c --><Object><VersionId>null</VersionId><Key>k1</Key></Object>"
                       "<Quiet>false</Quiet><Object><Key></Key></Object></Delete>";
    s3_delete_req d;
    cr_assert_eq(s3_parse_delete_xml(body, strlen(body), &d), 0);
    cr_expect(!d.quiet);
    cr_assert_eq(d.count, 2);
    cr_expect_str_eq(d.objects[0].key, "k1");
    cr_expect_eq(d.objects[1].key_len, 0);
    s3_delete_req_free(&d);
    cr_expect_eq(d.count, 0);
    const char *quiet = "<Delete><Quiet>TRUE</Quiet><Object><Key>a</Key></Object></Delete>";
    cr_assert_eq(s3_parse_delete_xml(quiet, strlen(quiet), &d), 0);
    cr_expect(d.quiet, "Quiet is case-insensitive");
    s3_delete_req_free(&d);
    const char *first_bad = "<Delete><Object><Key>a</Key></Object><Object><Nope/></Object></Delete>";
    cr_expect_eq(s3_parse_delete_xml(first_bad, strlen(first_bad), &d), CAIRN_EINVAL);
    cr_expect_eq(d.count, 0);
    cr_expect_null(d.objects);
}

Test(xml, complete_multipart) {
    const char *body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><!-- x -->"
                       "<Part><ETag>\"aaa\"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>x</ChecksumCRC32></Part>"
                       "<Part><!-- y --><PartNumber>3</PartNumber><ETag>&quot;bbb&quot;</ETag></Part>"
                       "<Part><PartNumber>10000</PartNumber><ETag>\"ccc</ETag></Part></CompleteMultipartUpload>";
    s3_complete_part *p = NULL;
    cr_assert_eq(s3_parse_complete_xml(body, strlen(body), &p), 3);
    cr_expect(p[0].number == 1 && !strcmp(p[0].etag, "aaa"));
    cr_expect(p[1].number == 3 && !strcmp(p[1].etag, "bbb"));
    cr_expect(p[2].number == 10000 && !strcmp(p[2].etag, "\"ccc"), "half-quoted kept as is");
    cr_expect_str_eq(p[0].checksum, "crc32:x");
    cr_expect_str_eq(p[1].checksum, "");
    free(p);
}

Test(xml, complete_multipart_part_checksums) {
    char body[600];
    snprintf(body, sizeof body, "<CompleteMultipartUpload>"
             "<Part><PartNumber>1</PartNumber><ETag>a</ETag><ChecksumSHA256>47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
             "</ChecksumSHA256></Part>"
             "<Part><PartNumber>2</PartNumber><ETag>b</ETag><ChecksumCRC64NVME>AAAAAAAAAAA=</ChecksumCRC64NVME></Part>"
             "<Part><PartNumber>3</PartNumber><ETag>c</ETag><ChecksumCRC32C>%0100d</ChecksumCRC32C></Part>"
             "<Part><PartNumber>4</PartNumber><ETag>d</ETag><ChecksumMD5>x</ChecksumMD5></Part>"
             "</CompleteMultipartUpload>", 0);
    s3_complete_part *p = NULL;
    cr_assert_eq(s3_parse_complete_xml(body, strlen(body), &p), 4);
    cr_expect_str_eq(p[0].checksum, "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    cr_expect_str_eq(p[1].checksum, "crc64nvme:AAAAAAAAAAA=");
    cr_expect_str_eq(p[2].checksum, "crc32c:?", "too long for any checksum: never matches one");
    cr_expect_str_eq(p[3].checksum, "", "not an algorithm S3 has");
    free(p);
}

Test(xml, complete_multipart_malformed) {
    char longtag[200];
    snprintf(longtag, sizeof longtag, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%072d</ETag>"
             "</Part></CompleteMultipartUpload>", 0);
    const char *bad[] = {
        "", "<a", "<Other><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part></Other>",
        "<CompleteMultipartUpload></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Other/></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><ETag>a</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part><Part/></CompleteMultipartUpload>",
        longtag,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s3_complete_part *p = (s3_complete_part *)1;
        cr_expect_eq(s3_parse_complete_xml(bad[i], strlen(bad[i]), &p), CAIRN_EINVAL, "case %zu", i);
        cr_expect_null(p, "case %zu", i);
    }
}

Test(xml, complete_multipart_part_limit) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<CompleteMultipartUpload>");
    for (int i = 1; i <= 10001; i++) buf_printf(&b, "<Part><PartNumber>%d</PartNumber><ETag>e</ETag></Part>", i > 10000 ? 1 : i);
    buf_puts(&b, "</CompleteMultipartUpload>");
    s3_complete_part *p = NULL;
    cr_expect_eq(s3_parse_complete_xml(b.data, b.len, &p), CAIRN_EINVAL, "10001 parts is too many");
    cr_expect_null(p);
    buf_free(&b);
}

Test(xml, create_bucket_shapes) {
    char loc[16];
    cr_expect_eq(s3_parse_create_bucket_xml(" \r\n\t ", 5, loc, sizeof loc), 0, "whitespace is an empty body");
    cr_expect_str_eq(loc, "");
    const char *other = "<CreateBucketConfiguration><!-- c --><Bucket><Type>Directory</Type></Bucket>"
                        "<LocationConstraint>ap-southeast-2</LocationConstraint></CreateBucketConfiguration>";
    cr_expect_eq(s3_parse_create_bucket_xml(other, strlen(other), loc, sizeof loc), 0);
    cr_expect_str_eq(loc, "ap-southeast-2");
    const char *none = "<CreateBucketConfiguration/>";
    cr_expect_eq(s3_parse_create_bucket_xml(none, strlen(none), loc, sizeof loc), 0);
    cr_expect_str_eq(loc, "");
    char small[8];
    const char *longloc = "<CreateBucketConfiguration><LocationConstraint>aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                          "</LocationConstraint></CreateBucketConfiguration>";
    cr_expect_eq(s3_parse_create_bucket_xml(longloc, strlen(longloc), small, sizeof small), 0);
    cr_expect_str_eq(small, "aaaaaaa", "bounded by the caller's buffer");
}

static int copy_src(const char *src, char *bucket, size_t blen, char *key, size_t *klen, char *ver, size_t vlen,
                    bool *has) {
    *klen = 0;
    *has = true;
    return s3_parse_copy_source(src, bucket, blen, key, klen, ver, vlen, has);
}

Test(copy_source, forms) {
    char b[64], k[1025], v[64];
    size_t kl;
    bool hv;
    cr_assert_eq(copy_src("/bkt/a/b%20c", b, sizeof b, k, &kl, v, sizeof v, &hv), 0);
    cr_expect_str_eq(b, "bkt");
    cr_expect_str_eq(k, "a/b c");
    cr_expect_eq(kl, 5);
    cr_expect(!hv);
    cr_assert_eq(copy_src("bkt/k?versionId=v%2B1", b, sizeof b, k, &kl, v, sizeof v, &hv), 0);
    cr_expect_str_eq(k, "k");
    cr_expect(hv);
    cr_expect_str_eq(v, "v+1");
    cr_assert_eq(copy_src("%2Fbkt%2Fk", b, sizeof b, k, &kl, v, sizeof v, &hv), 0, "an encoded leading slash");
    cr_expect_str_eq(b, "bkt");
}

Test(copy_source, malformed) {
    char b[8], k[1025], v[8];
    size_t kl;
    bool hv;
    char longkey[1100];
    snprintf(longkey, sizeof longkey, "/b/%01025d", 0);
    const char *bad[] = {
        NULL, "", "/", "/bkt", "/bkt/", "//k", "bkt",
        "/bucket-name-too-long/k",     /* does not fit the caller's buffer */
        "/bkt/k?partNumber=1", "/bkt/k?versionid=1",
        "/bkt/k?versionId=12345678", /* longer than the caller's buffer */
        "/bkt/k?versionId=a%00", "/bkt/k?versionId=%zz",
        "/bkt/%zz", "/bkt/a%00b", "/b%00t/k", "/bkt/%ff", longkey,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(copy_src(bad[i], b, sizeof b, k, &kl, v, sizeof v, &hv), CAIRN_EINVAL, "case %zu: %s", i,
                     bad[i] ? bad[i] : "(null)");
    cr_expect_eq(copy_src("/bkt/k", b, sizeof b, k, &kl, v, 0, &hv), CAIRN_EINVAL, "no room for a version");
    cr_expect(!hv);
    snprintf(longkey, sizeof longkey, "/b/%01024d", 0);
    cr_expect_eq(copy_src(longkey, b, sizeof b, k, &kl, v, sizeof v, &hv), 0, "1024 is the longest key");
    cr_expect_eq(kl, 1024);
}

/* ---- the smaller surface's parsers -------------------------------------------------------- */

Test(xml, ownership_controls) {
    char v[32];
    const char *ok = "<OwnershipControls xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule>"
                     "<ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>";
    cr_assert_eq(s3_parse_ownership_xml(ok, strlen(ok), v, sizeof v), 0);
    cr_assert_str_eq(v, "ObjectWriter");
    const char *bad[] = {
        "", "<OwnershipControls/>", "<OwnershipControls><Rule/></OwnershipControls>",
        "<OwnershipControls><Rule><ObjectOwnership>Writer</ObjectOwnership></Rule></OwnershipControls>",
        "<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule>"
        "<Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>",
        "<X><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></X>",
        "<OwnershipControls><Rule><ObjectOwnership>ObjectWriterObjectWriterObjectWriter</ObjectOwnership>"
        "</Rule></OwnershipControls>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(s3_parse_ownership_xml(bad[i], strlen(bad[i]), v, sizeof v), CAIRN_EINVAL, "%s", bad[i]);
    cr_expect(s3_object_ownership_valid("BucketOwnerEnforced"));
    cr_expect_not(s3_object_ownership_valid("bucketownerenforced"));
    cr_expect_not(s3_object_ownership_valid(NULL));
}

static const char *decode(const char *in, bool rfc2047) {
    static char out[512];
    size_t n = s3_header_value_decode(in, strlen(in), rfc2047, out);
    cr_assert_eq(strlen(out), n);
    return out;
}

Test(header_values, utf8_latin1_and_encoded_words) {
    cr_expect_str_eq(decode("plain", true), "plain");
    cr_expect_str_eq(decode("caf\xc3\xa9", true), "caf\xc3\xa9");          /* UTF-8 kept */
    cr_expect_str_eq(decode("caf\xe9", false), "caf\xc3\xa9");             /* ISO-8859-1 read as such */
    cr_expect_str_eq(decode("=?UTF-8?B?Y2Fmw6k=?=", true), "caf\xc3\xa9");
    cr_expect_str_eq(decode("=?UTF-8?B?Y2Fmw6k=?=", false), "=?UTF-8?B?Y2Fmw6k=?=");
    cr_expect_str_eq(decode("=?utf-8?q?caf=C3=A9_x?=", true), "caf\xc3\xa9 x");
    cr_expect_str_eq(decode("=?ISO-8859-1?Q?caf=E9?=", true), "caf\xc3\xa9");
    cr_expect_str_eq(decode("=?UTF-8?B?YQ==?= \t =?UTF-8?B?Yg==?=", true), "ab");
    const char *kept[] = {"=?UTF-8?B?/w==?=", "=?UTF-8?Q?a=00?=", "=?UTF-8?Q?a=0?=", "=?UTF-8?X?a?=",
                          "=?KOI8-R?B?YQ==?=", "=?UTF-8?B?" "?=", "=?UTF-8?B?YQ==?= b", "=?UTF-8?B?YQ==", "=?"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) cr_expect_str_eq(decode(kept[i], true), kept[i]);
}

Test(header_values, encoded_on_the_wire) {
    buf_t b;
    buf_init(&b);
    s3_meta_value_encode(&b, "plain\tascii", 11);
    buf_putc(&b, '\0');
    cr_expect_str_eq(b.data, "plain\tascii");
    buf_reset(&b);
    s3_meta_value_encode(&b, "caf\xc3\xa9", 5);
    buf_putc(&b, '\0');
    cr_expect_str_eq(b.data, "=?UTF-8?B?Y2Fmw6k=?=");
    buf_reset(&b);
    s3_meta_value_encode(&b, "a\nb", 3); /* a control character cannot go in a header */
    buf_putc(&b, '\0');
    cr_expect_str_eq(b.data, "=?UTF-8?B?YQpi?=");
    buf_free(&b);
}

Test(object_attributes, lists) {
    unsigned a;
    cr_expect_eq(s3_parse_object_attributes("ETag", &a), 0);
    cr_expect_eq(a, 1u);
    cr_expect_eq(s3_parse_object_attributes("ETag,Checksum, ObjectParts ,StorageClass,ObjectSize", &a), 0);
    cr_expect_eq(a, 31u);
    const char *bad[] = {"", ",", "ETag,", ",ETag", "ETag,,ObjectSize", "etag", "Size", "ETag;ObjectSize"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(s3_parse_object_attributes(bad[i], &a), CAIRN_EINVAL, "'%s'", bad[i]);
    cr_expect_eq(s3_parse_object_attributes(NULL, &a), CAIRN_EINVAL);
}
