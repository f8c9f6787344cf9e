/*
 * emit.c — one audit event: its JSON (the wire format the audit store
 * validates, docs/audit.md) and its append to the journal.
 *
 * The encoder is hand-written rather than jansson: it runs once per
 * request on the request's thread and builds the text in one growing
 * buffer, with no intermediate tree.  Every string goes through one
 * escaper that produces valid JSON from any bytes: the JSON escapes,
 * control characters as \u00XX, and bytes that are not UTF-8 (a bucket
 * name taken from a Host header, a key refused as not UTF-8) as U+FFFD.
 */
#include "audit/journal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

static void json_string(buf_t *b, const char *s, size_t n) {
    buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
            i++;
            run++;
            continue;
        }
        if (run) buf_append(b, p + i - run, run);
        run = 0;
        if (c == '"') buf_puts(b, "\\\"");
        else if (c == '\\') buf_puts(b, "\\\\");
        else if (c == '\n') buf_puts(b, "\\n");
        else if (c == '\r') buf_puts(b, "\\r");
        else if (c == '\t') buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f) buf_printf(b, "\\u%04x", c);
        else {
            size_t l = utf8_seq(p + i, n - i);
            if (l) buf_append(b, p + i, l);
            else buf_puts(b, "\\ufffd");
            i += l ? l : 1;
            continue;
        }
        i++;
    }
    if (run) buf_append(b, p + i - run, run);
    buf_putc(b, '"');
}

static void field(buf_t *b, const char *name, const char *v) {
    buf_printf(b, ",\"%s\":", name);
    json_string(b, v ? v : "", v ? strlen(v) : 0);
}

const char *audit_outcome(unsigned status) {
    if (status == 401 || status == 403) return "denied";
    return status < 400 ? "success" : "error";
}

int audit_emit_encode(const audit_event_fields *e, const char event_id[33], buf_t *out) {
    char ts[40];
    time_t secs = (time_t)(e->time_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)(e->time_us % 1000000));
    const char *rid = e->request_id ? e->request_id : "";
    buf_puts(out, "{\"event_id\":");
    json_string(out, event_id, strlen(event_id));
    field(out, "time", ts);
    field(out, "request_id", rid);
    field(out, "correlation_id", e->correlation_id && e->correlation_id[0] ? e->correlation_id : rid);
    field(out, "principal", e->principal && e->principal[0] ? e->principal : "anonymous");
    field(out, "user", e->user);
    field(out, "source_address", e->source_address);
    field(out, "action", e->action && e->action[0] ? e->action : "s3:Unknown");
    field(out, "bucket", e->bucket);
    buf_puts(out, ",\"key\":");
    size_t kl = e->key ? (e->key_len ? e->key_len : strlen(e->key)) : 0;
    json_string(out, e->key, kl);
    field(out, "version_id", e->version_id);
    field(out, "outcome", audit_outcome(e->status));
    buf_printf(out, ",\"status\":%u", e->status);
    field(out, "error_code", e->error_code);
    buf_printf(out, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_us\":%llu}", (unsigned long long)e->bytes_in,
               (unsigned long long)e->bytes_out, (unsigned long long)e->duration_us);
    return out->oom ? CAIRN_ENOMEM : 0;
}

int audit_emit(audit_journal *j, const audit_event_fields *e, bool durable) {
    char id[33];
    rand_hex_id(id, 16);
    buf_t b;
    buf_init(&b);
    buf_t *out = &b;
    int rc = audit_emit_encode(e, id, out);
    if (rc == 0) rc = audit_journal_append(j, out->data, out->len, durable ? AUDIT_APPEND_DURABLE : 0);
    else log_write(LOG_ERROR, e->request_id, "audit event could not be encoded", NULL);
    buf_free(&b);
    return rc;
}

int audit_correlation_id_clean(const char *v, char out[129]) {
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > 128) return CAIRN_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e) return CAIRN_EINVAL;
    memcpy(out, v, n + 1);
    return 0;
}
