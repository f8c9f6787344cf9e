/*
 * test_tagging.c — tag sets as S3 validates them (src/s3/tagging.c): a
 * table of <Tagging> documents and x-amz-tagging headers, each valid (with
 * how many tags it holds) or refused (with S3's error code and message);
 * then the stored forms read back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "s3/s3.h"

#define DOC(tags) "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>" tags "</TagSet></Tagging>"
#define TAG(k, v) "<Tag><Key>" k "</Key><Value>" v "</Value></Tag>"

typedef struct {
    const char *doc;
    int max;                /* S3_TAGS_OBJECT_MAX or S3_TAGS_BUCKET_MAX */
    int n;                  /* tags when valid, -1 when refused */
    const char *code, *why; /* when refused (why NULL: any message) */
} xml_case;

static char *repeat_tags(int n, const char *fmt_key) {
    static char doc[16384];
    size_t o = (size_t)snprintf(doc, sizeof doc, "<Tagging><TagSet>");
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, fmt_key, i);
        o += (size_t)snprintf(doc + o, sizeof doc - o, "<Tag><Key>%s</Key><Value>v</Value></Tag>", k);
    }
    snprintf(doc + o, sizeof doc - o, "</TagSet></Tagging>");
    return doc;
}

static void check_xml(const xml_case *c, size_t i) {
    s3_tagset t;
    const char *code = NULL, *why = NULL;
    int rc = s3_tagging_parse_xml(c->doc, strlen(c->doc), c->max, &t, &code, &why);
    if (c->n >= 0) {
        cr_expect_eq(rc, 0, "case %zu: %s (%s: %s)", i, c->doc, code, why);
        cr_expect_eq(t.n, c->n, "case %zu", i);
    } else {
        cr_expect_eq(rc, CAIRN_EINVAL, "case %zu: %s", i, c->doc);
        cr_expect_eq(t.n, 0);
        cr_expect_null(t.tags);
        if (rc == CAIRN_EINVAL) {
            cr_expect_str_eq(code, c->code, "case %zu: %s", i, c->doc);
            if (c->why) cr_expect_str_eq(why, c->why, "case %zu", i);
        }
    }
    s3_tagset_free(&t);
}

Test(tagging, documents) {
    const int O = S3_TAGS_OBJECT_MAX, B = S3_TAGS_BUCKET_MAX;
    const xml_case cases[] = {
        {DOC(""), O, 0},
        {DOC(TAG("a", "1")), O, 1},
        {"<Tagging><TagSet>" TAG("a", "1") TAG("b", "") "</TagSet></Tagging>", O, 2},
        {DOC(TAG("Key with spaces", "value + - = . _ : / @")), O, 1},
        {DOC(TAG("\xc3\xa9t\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac")), O, 1},   /* letters beyond ASCII */
        {DOC("<Tag><Value>1</Value><Key>a</Key></Tag>"), O, 1},             /* any order */
        {DOC(TAG("a", "<![CDATA[x y]]>")), O, 1},
        {DOC(TAG("a", "&amp;")), O, -1, "InvalidTag", "The TagValue you have provided is invalid"},
        /* structure: MalformedXML */
        {"", O, -1, "MalformedXML", NULL},
        {"<Tagging>", O, -1, "MalformedXML", NULL},
        {"<Tagging></Tagging>", O, -1, "MalformedXML", NULL},
        {"<Other><TagSet/></Other>", O, -1, "MalformedXML", NULL},
        {"<Tagging><TagSet/><TagSet/></Tagging>", O, -1, "MalformedXML", NULL},
        {"<Tagging><TagSet/><Extra/></Tagging>", O, -1, "MalformedXML", NULL},
        {DOC("<Tag><Key>a</Key></Tag>"), O, -1, "MalformedXML", NULL},
        {DOC("<Tag><Value>a</Value></Tag>"), O, -1, "MalformedXML", NULL},
        {DOC("<Tag><Key>a</Key><Key>b</Key><Value>1</Value></Tag>"), O, -1, "MalformedXML", NULL},
        {DOC("<Tag><Key>a</Key><Value>1</Value><Other/></Tag>"), O, -1, "MalformedXML", NULL},
        {DOC("<NotTag/>"), O, -1, "MalformedXML", NULL},
        {"<!DOCTYPE t [<!ENTITY e \"x\">]>" DOC(TAG("a", "&e;")), O, -1, "MalformedXML", NULL},
        /* keys and values */
        {DOC(TAG("", "1")), O, -1, "InvalidTag", "The TagKey you have provided is invalid"},
        {DOC(TAG("a!", "1")), O, -1, "InvalidTag", "The TagKey you have provided is invalid"},
        {DOC(TAG("a\tb", "1")), O, -1, "InvalidTag", "The TagKey you have provided is invalid"},
        {DOC(TAG("a", "x?y")), O, -1, "InvalidTag", "The TagValue you have provided is invalid"},
        {DOC(TAG("a", "\xe2\x82\xac")), O, -1, "InvalidTag", "The TagValue you have provided is invalid"},
        {DOC(TAG("aws:x", "1")), O, -1, "InvalidTag", "Your TagKey cannot be prefixed with aws:"},
        {DOC(TAG("AWS:x", "1")), O, -1, "InvalidTag", NULL},
        {DOC(TAG("aws:x", "1")), B, -1, "InvalidTag", "System tags cannot be added/updated by requester"},
        {DOC(TAG("awsx", "1")), O, 1},
        {DOC(TAG("a", "1") TAG("a", "2")), O, -1, "InvalidTag", "Cannot provide multiple Tags with the same key"},
        {DOC(TAG("a", "1") TAG("A", "2")), O, 2},                          /* case matters */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_xml(&cases[i], i);
}

Test(tagging, lengths_count_characters_not_bytes) {
    char key[1024], value[2048], doc[4096];
    /* 128 two-byte characters: 256 bytes, a valid key; 129 is one too many */
    for (int chars = 128; chars <= 129; chars++) {
        key[0] = '\0';
        for (int i = 0; i < chars; i++) strcat(key, "\xc3\xa9");
        snprintf(doc, sizeof doc, DOC("<Tag><Key>%s</Key><Value>v</Value></Tag>"), key);
        xml_case c = {doc, S3_TAGS_OBJECT_MAX, chars == 128 ? 1 : -1, "InvalidTag",
                      "The TagKey you have provided is invalid"};
        check_xml(&c, (size_t)chars);
    }
    for (int chars = 256; chars <= 257; chars++) {
        value[0] = '\0';
        for (int i = 0; i < chars; i++) strcat(value, "\xe6\x97\xa5");
        snprintf(doc, sizeof doc, DOC("<Tag><Key>k</Key><Value>%s</Value></Tag>"), value);
        xml_case c = {doc, S3_TAGS_OBJECT_MAX, chars == 256 ? 1 : -1, "InvalidTag",
                      "The TagValue you have provided is invalid"};
        check_xml(&c, (size_t)chars);
    }
}

Test(tagging, counts) {
    xml_case c10 = {repeat_tags(10, "k%d"), S3_TAGS_OBJECT_MAX, 10};
    check_xml(&c10, 10);
    xml_case c11 = {repeat_tags(11, "k%d"), S3_TAGS_OBJECT_MAX, -1, "InvalidTag", "Object tags cannot be greater than 10"};
    check_xml(&c11, 11);
    /* the count is judged before the tags */
    xml_case c11bad = {repeat_tags(11, "k!%d"), S3_TAGS_OBJECT_MAX, -1, "InvalidTag",
                       "Object tags cannot be greater than 10"};
    check_xml(&c11bad, 12);
    xml_case b50 = {repeat_tags(50, "k%d"), S3_TAGS_BUCKET_MAX, 50};
    check_xml(&b50, 50);
    xml_case b51 = {repeat_tags(51, "k%d"), S3_TAGS_BUCKET_MAX, -1, "InvalidTag",
                    "Bucket tag count cannot be greater than 50"};
    check_xml(&b51, 51);
    xml_case o200 = {repeat_tags(200, "k%d"), S3_TAGS_OBJECT_MAX, -1, "InvalidTag",
                     "Object tags cannot be greater than 10"};
    check_xml(&o200, 200);
}

typedef struct {
    const char *header;
    int n;
    const char *code;
    const char *first_key, *first_value;
} header_case;

Test(tagging, headers) {
    const header_case cases[] = {
        {"", 0},
        {"a=1", 1, NULL, "a", "1"},
        {"a=1&b=2", 2, NULL, "a", "1"},
        {"a", 1, NULL, "a", ""},
        {"a=", 1, NULL, "a", ""},
        {"a=1&&b=2&", 2, NULL, "a", "1"},
        {"my%20key=a+b", 1, NULL, "my key", "a b"},
        {"k=%2B%2F%3A%40", 1, NULL, "k", "+/:@"},
        {"k=a=b", 1, NULL, "k", "a=b"},
        {"%C3%A9=x", 1, NULL, "\xc3\xa9", "x"},
        {"=v", -1, "InvalidArgument"},
        {"a=%zz", -1, "InvalidArgument"},
        {"a=%4", -1, "InvalidArgument"},
        {"a=%00", -1, "InvalidArgument"},
        {"a=%C3", -1, "InvalidArgument"},                 /* not UTF-8 */
        {"a=1&a=2", -1, "InvalidArgument"},               /* a key twice */
        {"a!=1", -1, "InvalidTag"},
        {"a=%3F", -1, "InvalidTag"},
        {"aws%3Ax=1", -1, "InvalidTag"},
        {"a=1&b=1&c=1&d=1&e=1&f=1&g=1&h=1&i=1&j=1", 10},
        {"a=1&b=1&c=1&d=1&e=1&f=1&g=1&h=1&i=1&j=1&k=1", -1, "InvalidTag"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const header_case *c = &cases[i];
        s3_tagset t;
        const char *code = NULL, *why = NULL;
        int rc = s3_tagging_parse_header(c->header, strlen(c->header), &t, &code, &why);
        if (c->n >= 0) {
            cr_expect_eq(rc, 0, "%s: %s", c->header, why);
            cr_expect_eq(t.n, c->n, "%s", c->header);
            if (c->first_key && t.n > 0) {
                cr_expect_str_eq(t.tags[0].key, c->first_key, "%s", c->header);
                cr_expect_str_eq(t.tags[0].value, c->first_value, "%s", c->header);
            }
        } else {
            cr_expect_eq(rc, CAIRN_EINVAL, "%s", c->header);
            cr_expect_eq(t.n, 0);
            if (rc == CAIRN_EINVAL) cr_expect_str_eq(code, c->code, "%s", c->header);
        }
        s3_tagset_free(&t);
    }
}

Test(tagging, stored_headers_keep_tags_apart) {
    s3_tagset t;
    const char *code, *why;
    cr_assert_eq(s3_tagging_parse_header("b=2&a=1", 7, &t, &code, &why), 0);
    char *json = NULL;
    cr_assert_eq(s3_headers_set_tags("{\"content-type\":\"text/plain\"}", &t, &json), 0);
    cr_expect_eq(s3_tag_count(json), 2);
    s3_tagset back;
    cr_assert_eq(s3_tagset_from_headers(json, &back), 0);
    cr_assert_eq(back.n, 2);
    cr_expect_str_eq(back.tags[0].key, "b", "the client's order is kept");
    cr_expect_str_eq(back.tags[1].value, "1");
    s3_tagset_free(&back);
    char *none = NULL;
    cr_assert_eq(s3_headers_set_tags(json, NULL, &none), 0);
    cr_expect_str_eq(none, "{\"content-type\":\"text/plain\"}");
    cr_expect_eq(s3_tag_count(none), 0);
    cr_expect_eq(s3_tag_count(NULL), 0);
    cr_expect_eq(s3_tagset_from_headers(NULL, &back), 0);
    cr_expect_eq(back.n, 0);
    cr_expect_eq(s3_tagset_from_headers("not json", &back), CAIRN_EINVAL);
    free(none);
    cr_expect_eq(s3_headers_set_tags("[1]", &t, &none), CAIRN_EINVAL);
    cr_expect_null(none, "a refusal hands back nothing");
    free(json);
    buf_t doc;
    buf_init(&doc);
    s3_tagging_render(&t, &doc);
    cr_assert_eq(s3_tagging_parse_xml(doc.data, doc.len, S3_TAGS_OBJECT_MAX, &back, &code, &why), 0);
    cr_expect_eq(back.n, 2);
    s3_tagset_free(&back);
    buf_free(&doc);
    s3_tagset_free(&t);
}
