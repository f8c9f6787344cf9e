/*
 * fuzz_audit.c — libFuzzer target for the audit store's parsers of untrusted
 * input (src/audit/event.c): a POST body (audit_events_parse), one event
 * (audit_event_parse, whose fast parser must agree with jansson's
 * audit_event_parse_reference on every input), and the GET's cursor and
 * times (audit_query_cursor_decode, audit_time_parse).
 *
 * Properties checked: a batch that parses is valid event by event, and its
 * encoding (what GET returns) parses again to the same events; a cursor
 * that decodes encodes back to the same text; a parsed time formats and
 * parses back to itself (to the microsecond).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

static void same_events(const audit_event *a, const audit_event *b) {
    if (strcmp(a->event_id, b->event_id) || a->time_us != b->time_us || strcmp(a->request_id, b->request_id) ||
        strcmp(a->correlation_id, b->correlation_id) || strcmp(a->principal, b->principal) ||
        strcmp(a->user, b->user) || strcmp(a->source_address, b->source_address) || strcmp(a->action, b->action) ||
        strcmp(a->bucket, b->bucket) || strcmp(a->key, b->key) || strcmp(a->version_id, b->version_id) ||
        strcmp(a->outcome, b->outcome) || a->status != b->status || strcmp(a->error_code, b->error_code) ||
        a->bytes_in != b->bytes_in || a->bytes_out != b->bytes_out || a->duration_us != b->duration_us)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int inited;
    if (!inited) {
        core_init();
        log_set_level(LOG_ERROR);
        inited = 1;
    }
    audit_events *b = NULL;
    audit_error err;
    int rc = audit_events_parse((const char *)data, size, 100, &b, &err);
    if (rc == 0) {
        int n = audit_events_count(b);
        const audit_event *ev = audit_events_list(b);
        for (int i = 0; i < n; i++)
            if (audit_event_validate(&ev[i], &err) != 0) abort();
        buf_t out;
        buf_init(&out);
        audit_events_to_json(ev, n, &out);
        audit_events *again = NULL;
        if (!out.oom) {
            if (audit_events_parse(out.data, out.len, 100, &again, &err) != 0) abort();
            if (audit_events_count(again) != n) abort();
            for (int i = 0; i < n; i++) same_events(&ev[i], &audit_events_list(again)[i]);
        }
        audit_events_free(again);
        buf_free(&out);
        audit_events_free(b);
    } else if (b) {
        abort(); /* a refusal leaves nothing */
    }
    /* One event (the shipper's path): the fast parser and jansson agree on
     * whether it parses, on the error, and on every field. */
    audit_events *fast = NULL, *ref = NULL;
    audit_error fe, re;
    int frc = audit_event_parse((const char *)data, size, &fast, &fe);
    int rrc = audit_event_parse_reference((const char *)data, size, &ref, &re);
    if (frc != rrc) abort();
    if (frc == 0) same_events(&audit_events_list(fast)[0], &audit_events_list(ref)[0]);
    else if (strcmp(fe.field, re.field) || strcmp(fe.reason, re.reason) || fast || ref) abort();
    audit_events_free(fast);
    audit_events_free(ref);
    char s[80];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    int64_t t;
    char id[AUDIT_ID_LEN + 1];
    if (audit_query_cursor_decode(s, &t, id) == 0) {
        char c[AUDIT_QUERY_CURSOR_LEN + 1];
        audit_query_cursor_encode(t, id, c);
        if (strcmp(c, s) != 0) abort();
    }
    if (audit_time_parse(s, &t) == 0 && t > 0 && t < 253402300800000000LL) {
        char f[AUDIT_TIME_LEN + 1];
        int64_t back;
        audit_time_format(t, f);
        if (audit_time_parse(f, &back) != 0 || back != t) abort();
    }
    return 0;
}
