/*
 * test_cors.c — the CORS configuration's matching (src/s3/cors.c): which
 * rule, if any, allows a request from an origin with a method and, for a
 * preflight, requested headers.  A table of cases over one configuration
 * parsed from XML, as PutBucketCors would store it; then the wildcard
 * matcher alone, and the stored form read back.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "s3/s3.h"

static const char config[] =
    "<CORSConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    /* rule 0 */
    "<CORSRule><ID>exact</ID><AllowedOrigin>https://app.example.com</AllowedOrigin>"
    "<AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod>"
    "<AllowedHeader>X-Amz-*</AllowedHeader><AllowedHeader>content-type</AllowedHeader>"
    "<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule>"
    /* rule 1 */
    "<CORSRule><AllowedOrigin>http://*.example.org</AllowedOrigin><AllowedOrigin>https://*</AllowedOrigin>"
    "<AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader></CORSRule>"
    /* rule 2 */
    "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>DELETE</AllowedMethod></CORSRule>"
    "</CORSConfiguration>";

typedef struct {
    const char *origin, *method, *headers;   /* headers NULL: an actual request */
    int rule;                                /* -1: none matches */
    const char *matched;                     /* the AllowedOrigin that matched */
} match_case;

Test(cors, the_first_matching_rule_decides) {
    static const match_case cases[] = {
        /* exact origins */
        {"https://app.example.com", "GET", NULL, 0, "https://app.example.com"},
        {"https://app.example.com", "PUT", "x-amz-date", 0, "https://app.example.com"},
        {"https://app.example.com/", "GET", NULL, 1, "https://*"},      /* not exact: rule 1's wildcard */
        {"http://app.example.com", "GET", NULL, -1, NULL},
        /* wildcard origins: anchored, '*' matches any run, the empty one too */
        {"http://a.example.org", "GET", NULL, 1, "http://*.example.org"},
        {"http://a.b.example.org", "HEAD", NULL, 1, "http://*.example.org"},
        {"http://.example.org", "GET", NULL, 1, "http://*.example.org"},
        {"http://example.org", "GET", NULL, -1, NULL},
        {"http://a.example.org.evil", "GET", NULL, -1, NULL},
        {"http://A.EXAMPLE.ORG", "GET", NULL, -1, NULL},                 /* origins exactly */
        {"https://anything", "HEAD", NULL, 1, "https://*"},
        {"", "GET", NULL, -1, NULL},
        {"", "DELETE", NULL, 2, "*"},
        {"null", "DELETE", NULL, 2, "*"},
        /* methods: exact, and only the rule's */
        {"https://app.example.com", "DELETE", NULL, 2, "*"},
        {"https://app.example.com", "get", NULL, -1, NULL},
        {"https://app.example.com", "POST", NULL, -1, NULL},
        {"https://app.example.com", "PATCH", NULL, -1, NULL},
        {"http://a.example.org", "PUT", NULL, -1, NULL},
        /* requested headers: each must be allowed, without regard to case */
        {"https://app.example.com", "PUT", "X-AMZ-DATE, Content-Type", 0, "https://app.example.com"},
        {"https://app.example.com", "PUT", "x-amz-content-sha256,content-type", 0, "https://app.example.com"},
        {"https://app.example.com", "PUT", " , x-amz-meta-a ,, ", 0, "https://app.example.com"},
        {"https://app.example.com", "PUT", "", 0, "https://app.example.com"},
        {"https://app.example.com", "PUT", "authorization", -1, NULL},
        {"https://app.example.com", "PUT", "x-amz-date, authorization", -1, NULL},
        {"https://app.example.com", "PUT", "x-am", -1, NULL},
        {"https://app.example.com", "GET", "authorization", 1, "https://*"},   /* rule 1 allows any header */
        {"https://app.example.com", "DELETE", "x-amz-date", -1, NULL},         /* rule 2 allows none */
        {"https://app.example.com", "DELETE", "", 2, "*"},
    };
    s3_cors_config c;
    char why[256];
    bool inval;
    cr_assert_eq(s3_cors_parse(config, strlen(config), &c, why, sizeof why, &inval), 0, "%s", why);
    cr_assert_eq(c.n, 3);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const match_case *t = &cases[i];
        const char *o = NULL;
        const s3_cors_rule *r = s3_cors_match(&c, t->origin, t->method, t->headers, &o);
        int got = r ? (int)(r - c.rules) : -1;
        cr_expect_eq(got, t->rule, "case %zu: %s %s [%s]: rule %d, want %d", i, t->origin, t->method,
                     t->headers ? t->headers : "actual", got, t->rule);
        if (r && t->matched) cr_expect_str_eq(o, t->matched, "case %zu", i);
    }
    cr_expect_str_eq(c.rules[0].id, "exact");
    cr_expect_eq(c.rules[0].max_age, 600);
    cr_expect_eq(c.rules[1].max_age, -1);
    s3_cors_config_free(&c);
}

Test(cors, wildcards) {
    static const struct {
        const char *pattern, *s;
        bool nocase, match;
    } cases[] = {
        {"*", "", false, true},
        {"*", "anything", false, true},
        {"", "", false, true},
        {"", "a", false, false},
        {"a*", "a", false, true},
        {"a*", "ba", false, false},
        {"*a", "ba", false, true},
        {"*a", "ab", false, false},
        {"a*c", "abbbc", false, true},
        {"a*c", "abbbcd", false, false},
        {"a*c", "ac", false, true},
        {"X-Amz-*", "x-amz-date", true, true},
        {"X-Amz-*", "x-amz-date", false, false},
        {"a*b*c", "aXbYc", false, true},       /* the matcher takes several; the parser allows one */
        {"a*b*c", "aXcYb", false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(s3_cors_wildcard_match(cases[i].pattern, cases[i].s, cases[i].nocase), cases[i].match,
                     "%s ~ %s", cases[i].pattern, cases[i].s);
}

Test(cors, the_stored_form_reads_back_the_same) {
    s3_cors_config c, back;
    char why[256];
    bool inval;
    cr_assert_eq(s3_cors_parse(config, strlen(config), &c, why, sizeof why, &inval), 0);
    buf_t doc, again;
    buf_init(&doc);
    buf_init(&again);
    s3_cors_render(&c, &doc);
    cr_assert_eq(s3_cors_parse(doc.data, doc.len, &back, why, sizeof why, &inval), 0, "%s", why);
    s3_cors_render(&back, &again);
    cr_expect_eq(doc.len, again.len);
    cr_expect_eq(memcmp(doc.data, again.data, doc.len), 0);
    cr_expect_eq(back.n, 3);
    cr_expect_str_eq(back.rules[1].origins[1], "https://*");
    buf_free(&doc);
    buf_free(&again);
    s3_cors_config_free(&c);
    s3_cors_config_free(&back);
}

Test(cors, refusals_say_why) {
    static const struct {
        const char *xml;
        bool invalid_request;
        const char *why;
    } cases[] = {
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>COPY</AllowedMethod>"
         "</CORSRule></CORSConfiguration>",
         true, "Found unsupported HTTP method in CORS config. Unsupported method is COPY"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>**</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
         "</CORSRule></CORSConfiguration>",
         true, "AllowedOrigin \"**\" can not have more than one wildcard."},
        {"<CORSConfiguration/>", false, NULL},
        {"<CORSConfiguration><CORSRule/></CORSConfiguration>", false, NULL},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>", false, NULL},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
         "<MaxAgeSeconds>1e3</MaxAgeSeconds></CORSRule></CORSConfiguration>",
         false, NULL},
        {"<CORSConfiguration><CORSRule>", false, NULL},
        {"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><CORSConfiguration><CORSRule><AllowedOrigin>&e;"
         "</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
         false, NULL},   /* a DTD: refused, its entities never expanded */
        {"<!DOCTYPE CORSConfiguration><CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
         "<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
         false, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s3_cors_config c;
        char why[256] = "";
        bool inval = false;
        int rc = s3_cors_parse(cases[i].xml, strlen(cases[i].xml), &c, why, sizeof why, &inval);
        if (rc == 0) s3_cors_config_free(&c);
        cr_expect_eq(rc, CAIRN_EINVAL, "case %zu", i);
        cr_expect_eq(inval, cases[i].invalid_request, "case %zu", i);
        cr_expect_eq(c.n, 0);
        if (cases[i].why) cr_expect_str_eq(why, cases[i].why, "case %zu", i);
        else cr_expect(why[0], "case %zu says why", i);
    }
}
