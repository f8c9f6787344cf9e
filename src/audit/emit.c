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

#include "meta/meta.h" /* the store's bounds: META_AUDIT_STR_MAX, META_AUDIT_KEY_MAX */

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

/* The longest prefix of s (n bytes) that is whole characters and whose
 * text, as json_string writes it (a byte that is not UTF-8 becomes U+FFFD,
 * three bytes), has at most max bytes: the store refuses a string over its
 * bound (docs/audit.md) and never truncates, so the event is cut here, where
 * it is made (a 300-byte ?versionId=, a bucket name taken from a long path). */
static size_t bounded_len(const char *s, size_t n, size_t max) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, out = 0;
    while (i < n) {
        size_t l = p[i] < 0x80 ? 1 : utf8_seq(p + i, n - i);
        size_t w = l ? l : 3;
        if (out + w > max) break;
        out += w;
        i += l ? l : 1;
    }
    return i;
}

/* name is a literal with its quotes and colon: ",\"user\":". */
#define FIELD(b, name, v) field((b), name, sizeof name - 1, (v))
static void field(buf_t *b, const char *name, size_t nlen, const char *v) {
    buf_append(b, name, nlen);
    size_t n = v ? strlen(v) : 0;
    json_string(b, v ? v : "", bounded_len(v, n, META_AUDIT_STR_MAX));
}

#define NUMBER(b, name, v) number((b), name, sizeof name - 1, (v))
static void number(buf_t *b, const char *name, size_t nlen, uint64_t v) {
    char d[24];
    int i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(b, name, nlen);
    buf_append(b, d + i, sizeof d - (size_t)i);
}

/* "2026-11-30T17:41:02.123456Z" from microseconds since the epoch, without
 * gmtime (days to a civil date: Howard Hinnant's algorithm). */
static void iso_time(int64_t us, char out[28]) {
    int64_t secs = us >= 0 ? us / 1000000 : 0, frac = us >= 0 ? us % 1000000 : 0;
    int64_t days = secs / 86400, rem = secs % 86400;
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    int64_t parts[7] = {y, m, d, rem / 3600, rem / 60 % 60, rem % 60, frac};
    static const int width[7] = {4, 2, 2, 2, 2, 2, 6};
    static const char sep[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    int o = 0;
    for (int k = 0; k < 7; k++) {
        int64_t v = parts[k];
        for (int w = width[k] - 1; w >= 0; w--) {
            out[o + w] = (char)('0' + v % 10);
            v /= 10;
        }
        o += width[k];
        out[o++] = sep[k];
    }
    out[o] = '\0';
}

const char *audit_outcome(unsigned status) {
    if (status == 401 || status == 403) return "denied";
    return status < 400 ? "success" : "error";
}

int audit_emit_encode(const audit_event_fields *e, const char event_id[33], buf_t *out) {
    char ts[28];
    iso_time(e->time_us, ts);
    const char *rid = e->request_id ? e->request_id : "";
    buf_append(out, "{\"event_id\":", 12);
    json_string(out, event_id, strlen(event_id));
    FIELD(out, ",\"time\":", ts);
    FIELD(out, ",\"request_id\":", rid);
    FIELD(out, ",\"correlation_id\":", e->correlation_id && e->correlation_id[0] ? e->correlation_id : rid);
    FIELD(out, ",\"principal\":", e->principal && e->principal[0] ? e->principal : "anonymous");
    FIELD(out, ",\"user\":", e->user);
    FIELD(out, ",\"source_address\":", e->source_address);
    FIELD(out, ",\"action\":", e->action && e->action[0] ? e->action : "s3:Unknown");
    FIELD(out, ",\"bucket\":", e->bucket);
    buf_append(out, ",\"key\":", 7);
    size_t kl = e->key ? (e->key_len ? e->key_len : strlen(e->key)) : 0;
    json_string(out, e->key, bounded_len(e->key, kl, META_AUDIT_KEY_MAX));
    FIELD(out, ",\"version_id\":", e->version_id);
    FIELD(out, ",\"outcome\":", audit_outcome(e->status));
    NUMBER(out, ",\"status\":", e->status);
    FIELD(out, ",\"error_code\":", e->error_code);
    NUMBER(out, ",\"bytes_in\":", e->bytes_in);
    NUMBER(out, ",\"bytes_out\":", e->bytes_out);
    NUMBER(out, ",\"duration_us\":", e->duration_us);
    buf_putc(out, '}');
    return out->oom ? CAIRN_ENOMEM : 0;
}

/* Event ids need to be unique, not secret: each thread draws them from its
 * own xoshiro256** generator, seeded once from the system's CSPRNG (a
 * getrandom per event cost more than the rest of the event). */
static _Thread_local uint64_t rng[4];
static _Thread_local bool rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void) {
    if (!rng_seeded) {
        do rand_bytes(rng, sizeof rng);
        while (!(rng[0] | rng[1] | rng[2] | rng[3]));
        rng_seeded = true;
    }
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

static void event_id(char out[33]) {
    unsigned char r[16];
    uint64_t a = rng_next(), c = rng_next();
    memcpy(r, &a, 8);
    memcpy(r + 8, &c, 8);
    time_hex_id_from(time_now_ms(), r, out);
}

int audit_emit(audit_journal *j, const audit_event_fields *e, bool durable) {
    char id[33];
    event_id(id);
    buf_t b;
    buf_init(&b);
    buf_reserve(&b, 1024); /* one allocation for a usual event */
    int rc = audit_emit_encode(e, id, &b);
    if (rc == 0) rc = audit_journal_append(j, b.data, b.len, durable ? AUDIT_APPEND_DURABLE : 0);
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
