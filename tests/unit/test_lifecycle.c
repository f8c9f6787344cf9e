/*
 * test_lifecycle.c — lifecycle configurations (src/s3/lifecycle_config.c):
 * documents parsed into rules and rendered back to the stored form (which
 * parses to the same bytes), the refusals with S3's codes, filters matched
 * against keys, sizes and tags, and the due times S3 computes (creation +
 * days, rounded up to the next midnight UTC).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "s3/s3.h"

#define DOC(rules) "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" rules \
                   "</LifecycleConfiguration>"
#define DAY (86400LL * 1000)

static void parse_ok(const char *doc, s3_lifecycle_config *c) {
    const char *code = NULL, *why = NULL;
    int rc = s3_lifecycle_parse(doc, strlen(doc), c, &code, &why);
    cr_assert_eq(rc, 0, "%s: %s %s", doc, code ? code : "", why ? why : "");
}

static void refused(const char *doc, const char *want) {
    s3_lifecycle_config c;
    const char *code = NULL, *why = NULL;
    int rc = s3_lifecycle_parse(doc, strlen(doc), &c, &code, &why);
    cr_expect_eq(rc, CAIRN_EINVAL, "%s", doc);
    cr_expect_str_eq(code ? code : "", want, "%s: %s", doc, why ? why : "");
    cr_expect(why && why[0], "a refusal says why");
    cr_expect_eq(c.n, 0);
    cr_expect_null(c.rules);
}

Test(lifecycle, every_field_parses_and_round_trips) {
    const char *doc = DOC(
        "<Rule><ID>a</ID><Filter><And><Prefix>p/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
        "<ObjectSizeGreaterThan>1</ObjectSizeGreaterThan><ObjectSizeLessThan>100</ObjectSizeLessThan></And></Filter>"
        "<Status>Enabled</Status><Expiration><Days>3</Days></Expiration>"
        "<NoncurrentVersionExpiration><NoncurrentDays>4</NoncurrentDays><NewerNoncurrentVersions>5"
        "</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>"
        "<Rule><ID>b</ID><Prefix>legacy/</Prefix><Status>Disabled</Status>"
        "<Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
        "</Rule>"
        "<Rule><ID>c</ID><Filter></Filter><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>");
    s3_lifecycle_config c;
    parse_ok(doc, &c);
    cr_assert_eq(c.n, 3);
    const s3_lifecycle_rule *a = &c.rules[0], *b = &c.rules[1], *m = &c.rules[2];
    cr_expect_str_eq(a->id, "a");
    cr_expect(a->enabled && a->and_form && !a->legacy_prefix);
    cr_expect_str_eq(a->prefix, "p/");
    cr_expect_eq(a->tags.n, 1);
    cr_expect_eq(a->size_gt, 1);
    cr_expect_eq(a->size_lt, 100);
    cr_expect_eq(a->exp_days, 3);
    cr_expect_eq(a->nc_days, 4);
    cr_expect_eq(a->nc_newer, 5);
    cr_expect(!b->enabled && b->legacy_prefix && b->has_exp_date);
    cr_expect_eq(b->abort_days, 2);
    cr_expect_str_eq(b->prefix, "legacy/");
    cr_expect(m->exp_delete_marker);
    cr_expect_str_eq(m->prefix, "");
    buf_t one, two;
    buf_init(&one);
    buf_init(&two);
    s3_lifecycle_render(&c, &one);
    s3_lifecycle_config back;
    parse_ok(one.data, &back);
    s3_lifecycle_render(&back, &two);
    cr_expect_str_eq(two.data, one.data);
    cr_expect(strstr(one.data, "<Date>2030-01-01T00:00:00.000Z</Date>") != NULL, "%s", one.data);
    s3_lifecycle_config_free(&back);
    s3_lifecycle_config_free(&c);
    buf_free(&one);
    buf_free(&two);
}

Test(lifecycle, a_rule_without_id_gets_one) {
    s3_lifecycle_config c;
    parse_ok(DOC("<Rule><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"), &c);
    cr_expect(strlen(c.rules[0].id) == 32);
    s3_lifecycle_config_free(&c);
}

Test(lifecycle, refusals) {
    const char *exp = "<Expiration><Days>1</Days></Expiration>";
    char doc[4096];
    refused("", "MalformedXML");
    refused("<a>", "MalformedXML");
    refused(DOC(""), "MalformedXML");
    snprintf(doc, sizeof doc, DOC("<Rule><Filter/><Status>Maybe</Status>%s</Rule>"), exp);
    refused(doc, "MalformedXML");
    snprintf(doc, sizeof doc, DOC("<Rule><Status>Enabled</Status>%s</Rule>"), exp);
    refused(doc, "MalformedXML");
    refused(DOC("<Rule><Filter/><Status>Enabled</Status><Expiration><Days>0</Days></Expiration></Rule>"),
            "InvalidArgument");
    refused(DOC("<Rule><Filter/><Status>Enabled</Status><Expiration><Date>2030-01-01T00:00:01Z</Date>"
                "</Expiration></Rule>"), "InvalidArgument");
    refused(DOC("<Rule><Filter/><Status>Enabled</Status><Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z"
                "</Date></Expiration></Rule>"), "MalformedXML");
    refused(DOC("<Rule><Filter/><Status>Enabled</Status></Rule>"), "InvalidRequest");
    refused(DOC("<Rule><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
                "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>"),
            "InvalidRequest");
    refused(DOC("<Rule><Filter/><Status>Enabled</Status><Transition><Days>1</Days></Transition></Rule>"),
            "NotImplemented");
    snprintf(doc, sizeof doc, DOC("<Rule><ID>x</ID><Filter/><Status>Enabled</Status>%s</Rule>"
                                  "<Rule><ID>x</ID><Filter/><Status>Enabled</Status>%s</Rule>"), exp, exp);
    refused(doc, "InvalidArgument");
    /* a DTD (entities) is refused before anything is expanded */
    refused("<!DOCTYPE x [<!ENTITY e \"a\">]><LifecycleConfiguration/>", "MalformedXML");
}

Test(lifecycle, filters_match_prefix_sizes_and_tags) {
    s3_lifecycle_config c;
    parse_ok(DOC("<Rule><Filter><And><Prefix>logs/</Prefix><Tag><Key>t</Key><Value>1</Value></Tag>"
                 "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>20</ObjectSizeLessThan>"
                 "</And></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"), &c);
    const s3_lifecycle_rule *r = &c.rules[0];
    s3_tag tv[] = {{(char *)"x", (char *)"y"}, {(char *)"t", (char *)"1"}};
    s3_tagset tags = {tv, 2}, wrong = {tv, 1};
    cr_expect(s3_lifecycle_filter_match(r, "logs/a", 6, 15, &tags));
    cr_expect(!s3_lifecycle_filter_match(r, "logs/a", 6, 15, &wrong), "a tag missing");
    cr_expect(!s3_lifecycle_filter_match(r, "logs/a", 6, 15, NULL), "no tags at all");
    cr_expect(!s3_lifecycle_filter_match(r, "logs/a", 6, 10, &tags), "greater than is strict");
    cr_expect(!s3_lifecycle_filter_match(r, "logs/a", 6, 20, &tags), "less than is strict");
    cr_expect(!s3_lifecycle_filter_match(r, "log", 3, 15, &tags), "a key shorter than the prefix");
    cr_expect(!s3_lifecycle_filter_match(r, "other/logs/a", 12, 15, &tags));
    s3_lifecycle_config_free(&c);
}

Test(lifecycle, due_is_rounded_up_to_midnight_utc) {
    /* 2014-01-15 10:30 UTC + 3 days -> 2014-01-19 00:00 UTC (S3's example) */
    int64_t created = 1389781800000LL, want = 1390089600000LL;
    cr_expect_eq(s3_lifecycle_due(created, 3, DAY), want);
    /* exactly at midnight stays there */
    cr_expect_eq(s3_lifecycle_due(want - 3 * DAY, 3, DAY), want);
    /* a shortened day (the test knob) rounds to its own multiples */
    cr_expect_eq(s3_lifecycle_due(1500, 1, 1000), 3000);
}

Test(lifecycle, expiry_picks_the_earliest_enabled_rule) {
    s3_lifecycle_config c;
    parse_ok(DOC("<Rule><ID>late</ID><Filter/><Status>Enabled</Status><Expiration><Days>10</Days></Expiration></Rule>"
                 "<Rule><ID>off</ID><Filter/><Status>Disabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
                 "<Rule><ID>soon</ID><Filter><Prefix>a</Prefix></Filter><Status>Enabled</Status>"
                 "<Expiration><Days>2</Days></Expiration></Rule>"
                 "<Rule><ID>nc</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration>"
                 "<NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule>"), &c);
    const char *id = NULL;
    cr_expect_eq(s3_lifecycle_expiry(&c, "a1", 2, 1, 0, NULL, DAY, &id), 2 * DAY);
    cr_expect_str_eq(id, "soon");
    cr_expect_eq(s3_lifecycle_expiry(&c, "b1", 2, 1, 0, NULL, DAY, &id), 10 * DAY);
    cr_expect_str_eq(id, "late");
    s3_lifecycle_config_free(&c);
}
