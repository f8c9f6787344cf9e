/*
 * test_audit.c — the audit event's wire format (src/audit/event.c): every
 * field's validation, batches, times, the cursor and the encoding that
 * the store's GET returns and its POST takes back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/journal.h" /* audit_emit_encode: what the shipper parses */

#define GOOD_ID "0123456789abcdef0123456789abcdef"
#define GOOD                                                                                                   \
    "{\"event_id\":\"" GOOD_ID "\",\"time\":\"2026-11-30T17:41:02.123456Z\",\"request_id\":\"r1\","            \
    "\"correlation_id\":\"c1\",\"principal\":\"AK\",\"user\":\"alice\",\"source_address\":\"127.0.0.1\","       \
    "\"action\":\"s3:PutObject\",\"bucket\":\"b\",\"key\":\"k\",\"version_id\":\"v\",\"outcome\":\"success\","   \
    "\"status\":200,\"error_code\":\"\",\"bytes_in\":5,\"bytes_out\":0,\"duration_us\":1234}"

static void init(void) { cr_assert_eq(core_init(), 0); }

/* GOOD with the member name's value replaced by value (raw JSON), or the
 * member removed when value is NULL. */
static char *with(const char *name, const char *value) {
    static char out[8192];
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *at = strstr(GOOD, pat);
    cr_assert_not_null(at, "no member %s", name);
    const char *v = at + strlen(pat);
    const char *end = v;
    if (*end == '"') {
        end++;
        while (*end != '"') end++;
        end++;
    } else {
        while (*end != ',' && *end != '}') end++;
    }
    size_t head = (size_t)(at - GOOD);
    if (value) {
        snprintf(out, sizeof out, "%.*s%s%s%s", (int)head, GOOD, pat, value, end);
    } else {
        /* drop the member and its comma */
        if (*end == ',') end++;
        else if (head > 0 && GOOD[head - 1] == ',') head--;
        snprintf(out, sizeof out, "%.*s%s", (int)head, GOOD, end);
    }
    return out;
}

static void expect_refused(const char *json, const char *field, const char *why) {
    audit_events *b = NULL;
    audit_error err;
    int rc = audit_event_parse(json, strlen(json), &b, &err);
    cr_expect_eq(rc, CAIRN_EINVAL, "%s: accepted: %s", why, json);
    cr_expect_null(b);
    cr_expect_str_eq(err.field, field, "%s: field %s (%s)", why, err.field, err.reason);
    cr_expect(err.reason[0], "%s: a reason", why);
}

Test(audit_event, a_good_event_parses_with_every_field, .init = init) {
    audit_events *b = NULL;
    audit_error err;
    cr_assert_eq(audit_event_parse(GOOD, strlen(GOOD), &b, &err), 0, "%s: %s", err.field, err.reason);
    const audit_event *e = audit_events_list(b);
    cr_expect_str_eq(e->event_id, GOOD_ID);
    cr_expect_eq(e->time_us, 1796060462123456LL);
    cr_expect_str_eq(e->request_id, "r1");
    cr_expect_str_eq(e->correlation_id, "c1");
    cr_expect_str_eq(e->principal, "AK");
    cr_expect_str_eq(e->user, "alice");
    cr_expect_str_eq(e->source_address, "127.0.0.1");
    cr_expect_str_eq(e->action, "s3:PutObject");
    cr_expect_str_eq(e->bucket, "b");
    cr_expect_str_eq(e->key, "k");
    cr_expect_str_eq(e->version_id, "v");
    cr_expect_str_eq(e->outcome, "success");
    cr_expect_eq(e->status, 200);
    cr_expect_str_eq(e->error_code, "");
    cr_expect_eq(e->bytes_in, 5);
    cr_expect_eq(e->duration_us, 1234);
    /* Encoding gives back the same text. */
    buf_t o;
    buf_init(&o);
    audit_event_to_json(e, &o);
    cr_expect_str_eq(o.data, GOOD);
    buf_free(&o);
    audit_events_free(b);
}

Test(audit_event, optional_fields_default_to_empty_and_zero, .init = init) {
    const char *j = "{\"event_id\":\"" GOOD_ID "\",\"time\":\"2026-11-30T17:41:02Z\",\"request_id\":\"r\","
                    "\"correlation_id\":\"c\",\"principal\":\"anonymous\",\"action\":\"s3:GetObject\","
                    "\"outcome\":\"denied\",\"status\":403}";
    audit_events *b = NULL;
    audit_error err;
    cr_assert_eq(audit_event_parse(j, strlen(j), &b, &err), 0, "%s: %s", err.field, err.reason);
    const audit_event *e = audit_events_list(b);
    cr_expect_str_eq(e->user, "");
    cr_expect_str_eq(e->bucket, "");
    cr_expect_str_eq(e->key, "");
    cr_expect_str_eq(e->version_id, "");
    cr_expect_str_eq(e->source_address, "");
    cr_expect_str_eq(e->error_code, "");
    cr_expect_eq(e->bytes_in, 0);
    cr_expect_eq(e->bytes_out, 0);
    cr_expect_eq(e->duration_us, 0);
    audit_events_free(b);
    /* null is the same as absent for optional fields */
    const char *n = with("user", "null");
    cr_assert_eq(audit_event_parse(n, strlen(n), &b, &err), 0);
    audit_events_free(b);
}

Test(audit_event, every_required_field_must_be_present, .init = init) {
    const char *req[] = {"event_id", "time", "request_id", "correlation_id", "principal", "action", "outcome", "status"};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) expect_refused(with(req[i], NULL), req[i], "missing");
    const char *nonempty[] = {"request_id", "correlation_id", "principal", "action"};
    for (size_t i = 0; i < sizeof nonempty / sizeof nonempty[0]; i++)
        expect_refused(with(nonempty[i], "\"\""), nonempty[i], "empty");
    expect_refused(with("event_id", "null"), "event_id", "null required");
}

Test(audit_event, every_field_is_checked, .init = init) {
    expect_refused(with("event_id", "\"0123456789ABCDEF0123456789abcdef\""), "event_id", "upper case");
    expect_refused(with("event_id", "\"0123456789abcdef0123456789abcde\""), "event_id", "31 digits");
    expect_refused(with("event_id", "\"0123456789abcdef0123456789abcdef0\""), "event_id", "33 digits");
    expect_refused(with("event_id", "\"0123456789abcdef0123456789abcdeg\""), "event_id", "not hex");
    expect_refused(with("event_id", "12"), "event_id", "a number");
    expect_refused(with("time", "\"2026-11-30 17:41:02Z\""), "time", "space for T");
    expect_refused(with("time", "\"2026-11-30T17:41:02\""), "time", "no zone");
    expect_refused(with("time", "\"2026-02-30T17:41:02Z\""), "time", "no such day");
    expect_refused(with("time", "\"2026-11-30T24:00:00Z\""), "time", "hour 24");
    expect_refused(with("time", "\"2026-11-30T17:41:02.Z\""), "time", "empty fraction");
    expect_refused(with("time", "\"2026-11-30T17:41:02.1234567890Z\""), "time", "ten fraction digits");
    expect_refused(with("time", "\"1969-12-31T23:59:59Z\""), "time", "before 1970");
    expect_refused(with("time", "\"2026-11-30T17:41:02Zjunk\""), "time", "trailing");
    expect_refused(with("time", "1796060462"), "time", "a number");
    expect_refused(with("outcome", "\"ok\""), "outcome", "not one of three");
    expect_refused(with("status", "99"), "status", "below 100");
    expect_refused(with("status", "600"), "status", "above 599");
    expect_refused(with("status", "200.0"), "status", "a real");
    expect_refused(with("status", "\"200\""), "status", "a string");
    expect_refused(with("bytes_in", "-1"), "bytes_in", "negative");
    expect_refused(with("bytes_out", "-1"), "bytes_out", "negative");
    expect_refused(with("duration_us", "-1"), "duration_us", "negative");
    expect_refused(with("duration_us", "true"), "duration_us", "a bool");
    const char *strs[] = {"request_id", "correlation_id", "principal", "user", "source_address", "action",
                          "bucket", "key", "version_id", "error_code"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        expect_refused(with(strs[i], "7"), strs[i], "a number for a string");
        expect_refused(with(strs[i], "[\"x\"]"), strs[i], "an array for a string");
    }
    expect_refused(with("user", "\"a\\u0000b\""), "", "NUL inside a string is not JSON jansson takes");
}

Test(audit_event, strings_are_bounded, .init = init) {
    char big[1100];
    memset(big, 'x', sizeof big);
    /* 256 bytes fit, 257 do not; the key takes 3072 (a 1024-byte key of bad UTF-8 as U+FFFD), not 3073 */
    snprintf(big, sizeof big, "\"%.*s\"", 256, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    audit_events *b = NULL;
    audit_error err;
    char *j = with("action", big);
    cr_expect_eq(audit_event_parse(j, strlen(j), &b, &err), 0, "256 bytes: %s", err.reason);
    audit_events_free(b);
    char s257[300], k1024[3100], k1025[3100];
    s257[0] = '"';
    memset(s257 + 1, 'y', 257);
    strcpy(s257 + 258, "\"");
    expect_refused(with("action", s257), "action", "257 bytes");
    expect_refused(with("user", s257), "user", "257 bytes");
    k1024[0] = '"';
    memset(k1024 + 1, 'k', 3072);
    strcpy(k1024 + 3073, "\"");
    j = with("key", k1024);
    cr_expect_eq(audit_event_parse(j, strlen(j), &b, &err), 0, "a key of 3072 bytes");
    audit_events_free(b);
    k1025[0] = '"';
    memset(k1025 + 1, 'k', 3073);
    strcpy(k1025 + 3074, "\"");
    expect_refused(with("key", k1025), "key", "3073 bytes");
}

Test(audit_event, unknown_and_repeated_members_are_refused, .init = init) {
    char j[4096];
    snprintf(j, sizeof j, "%.*s,\"colour\":\"red\"}", (int)strlen(GOOD) - 1, GOOD);
    expect_refused(j, "colour", "unknown");
    snprintf(j, sizeof j, "%.*s,\"status\":201}", (int)strlen(GOOD) - 1, GOOD);
    audit_events *b = NULL;
    audit_error err;
    cr_expect_eq(audit_event_parse(j, strlen(j), &b, &err), CAIRN_EINVAL, "a repeated member");
    expect_refused("[1]", "", "not an object");
    expect_refused("{", "", "not JSON");
}

Test(audit_events, both_forms_parse_and_a_bad_event_is_named_by_index, .init = init) {
    char j[16384];
    snprintf(j, sizeof j, "{\"events\":[%s,%s]}", GOOD, GOOD);
    audit_events *b = NULL;
    audit_error err;
    cr_assert_eq(audit_events_parse(j, strlen(j), AUDIT_BATCH_MAX, &b, &err), 0);
    cr_expect_eq(audit_events_count(b), 2);
    audit_events_free(b);
    snprintf(j, sizeof j, "[%s]", GOOD);
    cr_assert_eq(audit_events_parse(j, strlen(j), AUDIT_BATCH_MAX, &b, &err), 0, "a bare array");
    cr_expect_eq(audit_events_count(b), 1);
    audit_events_free(b);
    cr_assert_eq(audit_events_parse("[]", 2, AUDIT_BATCH_MAX, &b, &err), 0, "an empty batch");
    cr_expect_eq(audit_events_count(b), 0);
    audit_events_free(b);
    snprintf(j, sizeof j, "{\"events\":[%s,%s,%s,%s]}", GOOD, GOOD, GOOD, with("status", "700"));
    cr_expect_eq(audit_events_parse(j, strlen(j), AUDIT_BATCH_MAX, &b, &err), CAIRN_EINVAL);
    cr_expect_null(b);
    cr_expect_eq(err.index, 3);
    cr_expect_str_eq(err.field, "status");
    /* the batch's own shape */
    const char *bad[] = {"{}", "{\"events\":{}}", "{\"events\":[],\"more\":1}", "7", "\"x\"", "{\"evnts\":[]}", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(audit_events_parse(bad[i], strlen(bad[i]), AUDIT_BATCH_MAX, &b, &err), CAIRN_EINVAL, "%s", bad[i]);
        cr_expect_eq(err.index, -1, "%s", bad[i]);
    }
    /* not NUL-terminated input is read only to its length */
    snprintf(j, sizeof j, "[%s]garbage", GOOD);
    cr_expect_eq(audit_events_parse(j, strlen(GOOD) + 2, AUDIT_BATCH_MAX, &b, &err), 0);
    audit_events_free(b);
}

Test(audit_events, more_than_the_maximum_is_too_big, .init = init) {
    char j[16384];
    snprintf(j, sizeof j, "[%s,%s,%s]", GOOD, GOOD, GOOD);
    audit_events *b = NULL;
    audit_error err;
    cr_expect_eq(audit_events_parse(j, strlen(j), 2, &b, &err), CAIRN_ETOOBIG);
    cr_expect_null(b);
    cr_expect_str_eq(err.field, "events");
    cr_expect_eq(audit_events_parse(j, strlen(j), 3, &b, &err), 0);
    audit_events_free(b);
    cr_expect_eq(audit_events_parse(j, strlen(j), AUDIT_BATCH_MAX + 1, &b, &err), CAIRN_EINVAL);
}

Test(audit_events, encoding_round_trips, .init = init) {
    char j[16384];
    const char *weird = with("key", "\"caf\\u00e9 \\\"quoted\\\"\\n\\\\/\"");
    snprintf(j, sizeof j, "[%s,%s]", GOOD, weird);
    audit_events *b = NULL;
    audit_error err;
    cr_assert_eq(audit_events_parse(j, strlen(j), 10, &b, &err), 0, "%s", err.reason);
    cr_expect_str_eq(audit_events_list(b)[1].key, "caf\xc3\xa9 \"quoted\"\n\\/");
    buf_t o;
    buf_init(&o);
    audit_events_to_json(audit_events_list(b), 2, &o);
    audit_events *again = NULL;
    cr_assert_eq(audit_events_parse(o.data, o.len, 10, &again, &err), 0, "%s", o.data);
    cr_expect_str_eq(audit_events_list(again)[1].key, audit_events_list(b)[1].key);
    cr_expect_eq(audit_events_list(again)[0].time_us, audit_events_list(b)[0].time_us);
    audit_events_free(again);
    audit_events_free(b);
    buf_free(&o);
}

Test(audit_time, rfc3339_parses_to_utc_microseconds, .init = init) {
    int64_t t = 0;
    cr_assert_eq(audit_time_parse("1970-01-01T00:00:00.000001Z", &t), 0);
    cr_expect_eq(t, 1);
    cr_assert_eq(audit_time_parse("2026-11-30T18:41:02.5+01:00", &t), 0);
    cr_expect_eq(t, 1796060462500000LL, "an offset is made UTC");
    cr_assert_eq(audit_time_parse("2026-11-30T17:41:02.123456789Z", &t), 0);
    cr_expect_eq(t, 1796060462123456LL, "nanoseconds are cut");
    cr_assert_eq(audit_time_parse("2024-02-29T00:00:00Z", &t), 0, "a leap day");
    cr_expect_eq(audit_time_parse("2023-02-29T00:00:00Z", &t), CAIRN_EINVAL);
    cr_expect_eq(audit_time_parse("2026-11-30T17:41:02+1:00", &t), CAIRN_EINVAL);
    cr_expect_eq(audit_time_parse("", &t), CAIRN_EINVAL);
    cr_expect_eq(audit_time_parse(NULL, &t), CAIRN_EINVAL);
    char out[AUDIT_TIME_LEN + 1];
    audit_time_format(1796060462000007LL, out);
    cr_expect_str_eq(out, "2026-11-30T17:41:02.000007Z");
    cr_assert_eq(audit_time_parse(out, &t), 0);
    cr_expect_eq(t, 1796060462000007LL);
}

Test(audit_cursor, round_trips_and_refuses_what_it_did_not_write, .init = init) {
    char c[AUDIT_QUERY_CURSOR_LEN + 1];
    audit_query_cursor_encode(1796060462123456LL, GOOD_ID, c);
    cr_expect_eq(strlen(c), AUDIT_QUERY_CURSOR_LEN);
    int64_t t = 0;
    char id[AUDIT_ID_LEN + 1];
    cr_assert_eq(audit_query_cursor_decode(c, &t, id), 0);
    cr_expect_eq(t, 1796060462123456LL);
    cr_expect_str_eq(id, GOOD_ID);
    cr_expect_eq(audit_query_cursor_decode("", &t, id), CAIRN_EINVAL);
    cr_expect_eq(audit_query_cursor_decode("abc", &t, id), CAIRN_EINVAL);
    char bad[AUDIT_QUERY_CURSOR_LEN + 2];
    snprintf(bad, sizeof bad, "%s", c);
    bad[5] = '+';
    cr_expect_eq(audit_query_cursor_decode(bad, &t, id), CAIRN_EINVAL, "not base64url");
    bad[5] = (char)0x9f;
    cr_expect_eq(audit_query_cursor_decode(bad, &t, id), CAIRN_EINVAL, "a byte outside the alphabet (found by fuzz_audit)");
    snprintf(bad, sizeof bad, "%sA", c);
    cr_expect_eq(audit_query_cursor_decode(bad, &t, id), CAIRN_EINVAL, "too long");
    memset(bad, '_', AUDIT_QUERY_CURSOR_LEN);
    bad[AUDIT_QUERY_CURSOR_LEN] = '\0';
    cr_expect_eq(audit_query_cursor_decode(bad, &t, id), CAIRN_EINVAL, "a time past INT64_MAX");
}

Test(audit_event, validate_checks_a_struct_the_client_built, .init = init) {
    audit_event e = {.event_id = GOOD_ID, .time_us = 1, .request_id = "r", .correlation_id = "c", .principal = "p",
                     .user = "", .source_address = "", .action = "a", .bucket = "", .key = "", .version_id = "",
                     .outcome = "error", .status = 500, .error_code = "InternalError"};
    audit_error err;
    cr_expect_eq(audit_event_validate(&e, &err), 0);
    audit_event bad = e;
    bad.user = NULL;
    cr_expect_eq(audit_event_validate(&bad, &err), CAIRN_EINVAL);
    cr_expect_str_eq(err.field, "user");
    bad = e;
    bad.time_us = 0;
    cr_expect_eq(audit_event_validate(&bad, &err), CAIRN_EINVAL);
    cr_expect_str_eq(err.field, "time");
    bad = e;
    bad.status = 42;
    cr_expect_eq(audit_event_validate(&bad, &err), CAIRN_EINVAL);
    cr_expect_str_eq(err.field, "status");
    char id[AUDIT_ID_LEN + 1];
    audit_event_id_new(id);
    bad = e;
    bad.event_id = id;
    cr_expect_eq(audit_event_validate(&bad, &err), 0, "a new id is valid: %s", id);
}

/* ---- the fast parser of one event (audit_event_parse) against jansson ---------------------------- */

static bool same_event(const audit_event *a, const audit_event *b) {
    return !strcmp(a->event_id, b->event_id) && a->time_us == b->time_us && !strcmp(a->request_id, b->request_id) &&
           !strcmp(a->correlation_id, b->correlation_id) && !strcmp(a->principal, b->principal) &&
           !strcmp(a->user, b->user) && !strcmp(a->source_address, b->source_address) &&
           !strcmp(a->action, b->action) && !strcmp(a->bucket, b->bucket) && !strcmp(a->key, b->key) &&
           !strcmp(a->version_id, b->version_id) && !strcmp(a->outcome, b->outcome) && a->status == b->status &&
           !strcmp(a->error_code, b->error_code) && a->bytes_in == b->bytes_in && a->bytes_out == b->bytes_out &&
           a->duration_us == b->duration_us;
}

/* Both parsers on json: the same answer, the same error, the same event.
 * Returns whether the fast parser took it. */
static bool both_agree(const char *json, size_t len) {
    audit_events *f = NULL, *r = NULL;
    audit_error fe, re;
    int frc = audit_event_parse(json, len, &f, &fe);
    int rrc = audit_event_parse_reference(json, len, &r, &re);
    cr_expect_eq(frc, rrc, "fast %d, jansson %d: %.*s", frc, rrc, (int)len, json);
    bool fast = audit_events_parsed_fast(f);
    if (frc == 0 && rrc == 0) {
        cr_expect(same_event(&audit_events_list(f)[0], &audit_events_list(r)[0]), "different events: %.*s", (int)len,
                  json);
    } else if (frc != 0 && rrc != 0) {
        cr_expect_str_eq(fe.field, re.field, "%.*s", (int)len, json);
        cr_expect_str_eq(fe.reason, re.reason, "%.*s", (int)len, json);
        cr_expect_eq(fe.index, re.index);
    }
    audit_events_free(f);
    audit_events_free(r);
    return fast;
}

Test(audit_fast, what_the_gateway_writes_takes_the_fast_path_and_reads_the_same, .init = init) {
    const char *keys[] = {"k", "dir/sub/file.txt", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                          "quote\" back\\ slash/ ctl\x01\x1f\x7f tab\t nl\n", "\xff\xfe not utf-8 \xc3",
                          "", "<>&'"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        audit_event_fields e = {.time_us = 1796060462123456LL, .request_id = "019ACF5E7A3B4F0C9D21E6A8B3C47D15",
                                .correlation_id = i % 2 ? "order-\"42\"" : NULL, .principal = i % 3 ? "AKIA" : NULL,
                                .user = "alice", .source_address = "::1", .action = "s3:PutObject", .bucket = "bkt",
                                .key = keys[i], .version_id = "", .status = i % 2 ? 404 : 200,
                                .error_code = i % 2 ? "NoSuchKey" : "", .bytes_in = i * 1000000007ULL,
                                .bytes_out = 0, .duration_us = 999999999999ULL};
        buf_t b;
        buf_init(&b);
        cr_assert_eq(audit_emit_encode(&e, GOOD_ID, &b), 0);
        cr_expect(both_agree(b.data, b.len), "the gateway's own event went to jansson: %.*s", (int)b.len, b.data);
        buf_free(&b);
    }
    cr_expect(both_agree(GOOD, strlen(GOOD)));
}

Test(audit_fast, anything_else_gets_the_same_answer_as_jansson, .init = init) {
    const char *odd[] = {
        /* shapes */
        "", "   ", "{}", "[]", "{", "}", "null", "{\"event_id\"}", "{\"event_id\":}", "{,}", GOOD " x", GOOD ",",
        " \t\r\n" GOOD " \n",
        /* values */
        "{\"status\":true}", "{\"status\":1.5}", "{\"status\":1e3}", "{\"status\":-0}", "{\"status\":007}",
        "{\"status\":99999999999999999999999}", "{\"status\":-}", "{\"key\":{}}", "{\"key\":[1]}",
        "{\"key\":nul}", "{\"key\":null}",
        /* strings */
        "{\"key\":\"a\\u0000b\"}", "{\"key\":\"\\ud800\"}", "{\"key\":\"\\udc00\"}",
        "{\"key\":\"\\ud83d\\ude00\"}", "{\"key\":\"\\ud83d\\u0041\"}", "{\"key\":\"\\u00e9\\u20AC\"}",
        "{\"key\":\"\\x\"}", "{\"key\":\"\\u12\"}", "{\"key\":\"a\x01\"}", "{\"key\":\"\xc0\xaf\"}",
        "{\"key\":\"\xed\xa0\x80\"}", "{\"key\":\"\xf4\x90\x80\x80\"}", "{\"key\":\"\xe2\x82\"}",
        "{\"key\":\"unterminated}",
        /* names */
        "{\"nope\":1}", "{\"ke\\u0079\":\"k\"}", "{\"key\":\"a\",\"key\":\"b\"}",
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) both_agree(odd[i], strlen(odd[i]));
    /* Every member of GOOD replaced by each odd value, and removed. */
    const char *names[] = {"event_id", "time", "request_id", "correlation_id", "principal", "user",
                           "source_address", "action", "bucket", "key", "version_id", "outcome",
                           "status", "error_code", "bytes_in", "bytes_out", "duration_us"};
    const char *values[] = {"null", "1", "-1", "0", "\"\"", "\"x\"", "1.0", "true", "\"\\u00e9\"", "600", "99",
                            "\"2026-11-30T17:41:02Z\"", "\"" GOOD_ID "\"", "123456789012345678"};
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        both_agree(with(names[n], NULL), strlen(with(names[n], NULL)));
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            const char *j = with(names[n], values[v]);
            both_agree(j, strlen(j));
        }
    }
}

Test(audit_fast, a_json_that_is_not_nul_terminated_is_read_within_its_length, .init = init) {
    char buf[2048];
    size_t n = strlen(GOOD);
    memcpy(buf, GOOD, n);
    memset(buf + n, '}', sizeof buf - n); /* garbage right after the object, past len */
    cr_expect(both_agree(buf, n));
    cr_expect(!both_agree(buf, n - 1), "a cut object is not the fast parser's");
}
