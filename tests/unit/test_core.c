/*
 * test_core.c — core helpers: buffers and escaping, dates, hex, URI coding.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/core.h"

Test(buf, grows_and_escapes) {
    buf_t b;
    buf_init(&b);
    for (int i = 0; i < 1000; i++) buf_printf(&b, "%d,", i);
    cr_expect(b.len > 3000 && !b.oom);
    buf_reset(&b);
    buf_xml_escape(&b, "a<b>&\"c'\x01", 9);
    cr_expect_str_eq(b.data, "a&lt;b&gt;&amp;&quot;c&apos;&#x1;");
    buf_reset(&b);
    buf_json_escape(&b, "q\"\\\n\x02", 5);
    cr_expect_str_eq(b.data, "q\\\"\\\\\\n\\u0002");
    buf_free(&b);
}

Test(buf, prometheus_label_values) {
    buf_t b;
    buf_init(&b);
    buf_prom_label(&b, "plain");
    cr_expect_str_eq(b.data, "plain");
    buf_reset(&b);
    buf_prom_label(&b, "a\"b\\c\nd}e");
    cr_expect_str_eq(b.data, "a\\\"b\\\\c\\nd}e");
    buf_free(&b);
}

Test(time, http_dates) {
    int64_t ms;
    cr_assert_eq(time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_assert_eq(time_parse_http("Sunday, 06-Nov-94 08:49:37 GMT", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_assert_eq(time_parse_http("Sun Nov  6 08:49:37 1994", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_expect_neq(time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT junk", &ms), 0);
    cr_expect_neq(time_parse_http("Sun, 32 Nov 1994 08:49:37 GMT", &ms), 0);
    cr_expect_neq(time_parse_http("yesterday", &ms), 0);
    char out[40];
    time_fmt_http(784111777000LL, out, sizeof out);
    cr_expect_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    time_fmt_iso8601(784111777123LL, out, sizeof out);
    cr_expect_str_eq(out, "1994-11-06T08:49:37.123Z");
}

Test(time, amz_dates) {
    int64_t s;
    cr_assert_eq(time_parse_amz("20150830T123600Z", &s), 0);
    cr_expect_eq(s, 1440938160LL);
    cr_expect_neq(time_parse_amz("20150830T123600", &s), 0);
    cr_expect_neq(time_parse_amz("2015083OT123600Z", &s), 0);
    cr_expect_neq(time_parse_amz("20151330T123600Z", &s), 0);
}

Test(encoding, hex_and_uri) {
    char hex[9];
    unsigned char raw[4] = {0xde, 0xad, 0xbe, 0xef}, back[4];
    size_t n;
    hex_encode(raw, 4, hex);
    cr_expect_str_eq(hex, "deadbeef");
    cr_assert_eq(hex_decode("DEADbeef", 8, back, 4, &n), 0);
    cr_expect(n == 4 && !memcmp(raw, back, 4));
    cr_expect_neq(hex_decode("zz", 2, back, 4, &n), 0);
    cr_expect_neq(hex_decode("abc", 3, back, 4, &n), 0);
    char dec[32];
    cr_expect_eq(url_decode("a%2Fb%20c+d", 11, dec), 7);
    cr_expect_str_eq(dec, "a/b c+d");
    cr_expect_lt(url_decode("bad%2", 5, dec), 0);
    cr_expect_lt(url_decode("bad%zz", 6, dec), 0);
    cr_expect_lt(url_decode("%", 1, dec), 0);
    buf_t b;
    buf_init(&b);
    buf_url_encode(&b, "a b/c~d+\xc3\xa9", 10, true);
    cr_expect_str_eq(b.data, "a%20b/c~d%2B%C3%A9");
    buf_reset(&b);
    buf_url_encode(&b, "a/b", 3, false);
    cr_expect_str_eq(b.data, "a%2Fb");
    buf_free(&b);
}
