/*
 * event.c — the audit event's wire format (audit.h; docs/audit.md).
 *
 * An event is a flat JSON object of the fields below, no others.  A batch
 * is {"events":[...]} or a bare array.  Parsing is strict, since the store
 * answers a bad event with its index and field so the client can split its
 * batch and send the bad one to its dead-letter queue: a duplicate member
 * (jansson's JSON_REJECT_DUPLICATES), an unknown field, a wrong type, a
 * string over its bound or a missing required field is refused, naming
 * the first such field of the first such event.  The events of a parsed
 * batch borrow their strings from the jansson document the batch keeps.
 * One event alone (audit_event_parse: the shipper's journal records) goes
 * through a fast parser first, which decodes the usual shape into one
 * buffer and hands anything else to jansson (below).
 *
 * Memory: the document is at most the body, which the caller bounds
 * (audit_max_batch_bytes), plus jansson's per-value overhead; the event
 * array is bounded by max_events.
 */
#include "audit/audit.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

struct audit_events {
    json_t *doc;               /* the jansson document the events borrow from, or NULL */
    char *strs;                /* or the fast parser's decoded strings (audit_event_parse) */
    int n;
    audit_event *ev;
};

typedef enum { F_STR, F_INT, F_TIME } field_kind;

/* The fields of an event, in the order audit_event_to_json writes them. */
typedef struct {
    const char *name;
    field_kind kind;
    bool required;
    size_t max;                        /* strings: bytes */
    size_t off;                        /* offsetof into audit_event */
} field_def;

#define S(name, req, max) {#name, F_STR, req, max, offsetof(audit_event, name)}
#define N(name, req) {#name, F_INT, req, 0, offsetof(audit_event, name)}
static const field_def fields[] = {
    S(event_id, true, AUDIT_ID_LEN),
    {"time", F_TIME, true, 0, offsetof(audit_event, time_us)},
    S(request_id, true, AUDIT_STR_MAX),
    S(correlation_id, true, AUDIT_STR_MAX),
    S(principal, true, AUDIT_STR_MAX),
    S(user, false, AUDIT_STR_MAX),
    S(source_address, false, AUDIT_STR_MAX),
    S(action, true, AUDIT_STR_MAX),
    S(bucket, false, AUDIT_STR_MAX),
    S(key, false, AUDIT_KEY_MAX),
    S(version_id, false, AUDIT_STR_MAX),
    S(outcome, true, AUDIT_STR_MAX),
    N(status, true),
    S(error_code, false, AUDIT_STR_MAX),
    N(bytes_in, false),
    N(bytes_out, false),
    N(duration_us, false),
};
#undef S
#undef N
#define NFIELDS ((int)(sizeof fields / sizeof fields[0]))

static int refuse(audit_error *err, const char *field, const char *fmt, const char *arg) {
    if (err) {
        snprintf(err->field, sizeof err->field, "%s", field);
        snprintf(err->reason, sizeof err->reason, fmt, arg ? arg : "");
    }
    return CAIRN_EINVAL;
}

static const char **str_at(audit_event *e, const field_def *f) { return (const char **)((char *)e + f->off); }
static const char *const *cstr_at(const audit_event *e, const field_def *f) {
    return (const char *const *)((const char *)e + f->off);
}

/* ---- times ------------------------------------------------------------------------ */

static bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int64_t days_from_civil(int y, int m, int d) {
    /* Howard Hinnant's algorithm: days since 1970-01-01. */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int audit_time_parse(const char *s, int64_t *t_us) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec;
    if (!s || strnlen(s, 40) < 20) return CAIRN_EINVAL;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
        s[16] != ':' || !digits(s + 17, 2, &sec))
        return CAIRN_EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)) || h > 23 || mi > 59 ||
        sec > 59)
        return CAIRN_EINVAL;
    const char *p = s + 19;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (p[n] >= '0' && p[n] <= '9') {
            if (n < 6) frac_us = frac_us * 10 + (p[n] - '0');
            n++;
        }
        if (n == 0 || n > 9) return CAIRN_EINVAL;
        for (int i = n; i < 6; i++) frac_us *= 10;
        p += n;
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return CAIRN_EINVAL;
        offset_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return CAIRN_EINVAL;
    }
    if (*p) return CAIRN_EINVAL;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    if (secs < 0) return CAIRN_EINVAL;
    *t_us = secs * 1000000 + frac_us;
    return 0;
}

void audit_time_format(int64_t t_us, char out[AUDIT_TIME_LEN + 1]) {
    if (t_us < 0) t_us = 0;
    time_t secs = (time_t)(t_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, AUDIT_TIME_LEN + 1, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", (tm.tm_year + 1900) % 10000,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(t_us % 1000000));
}

void audit_event_id_new(char out[AUDIT_ID_LEN + 1]) { time_hex_id(out); }

/* ---- validation ------------------------------------------------------------------- */

static bool is_lower_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

int audit_event_validate(const audit_event *e, audit_error *err) {
    if (!e) return refuse(err, "", "no event", NULL);
    for (int i = 0; i < NFIELDS; i++) {
        const field_def *f = &fields[i];
        if (f->kind != F_STR) continue;
        const char *v = *cstr_at(e, f);
        if (!v) return refuse(err, f->name, "missing", NULL);
        size_t n = strnlen(v, f->max + 1);
        if (n > f->max) {
            char max[24];
            snprintf(max, sizeof max, "%zu", f->max);
            return refuse(err, f->name, "longer than %s bytes", max);
        }
        if (f->required && n == 0) return refuse(err, f->name, "must not be empty", NULL);
    }
    if (strlen(e->event_id) != AUDIT_ID_LEN || !is_lower_hex(e->event_id, AUDIT_ID_LEN))
        return refuse(err, "event_id", "must be 32 lowercase hex digits", NULL);
    if (e->time_us <= 0) return refuse(err, "time", "must be an RFC 3339 time after 1970", NULL);
    if (strcmp(e->outcome, "success") && strcmp(e->outcome, "error") && strcmp(e->outcome, "denied"))
        return refuse(err, "outcome", "must be \"success\", \"error\" or \"denied\"", NULL);
    if (e->status < 100 || e->status > 599) return refuse(err, "status", "must be an HTTP status, 100 to 599", NULL);
    if (e->bytes_in < 0) return refuse(err, "bytes_in", "must not be negative", NULL);
    if (e->bytes_out < 0) return refuse(err, "bytes_out", "must not be negative", NULL);
    if (e->duration_us < 0) return refuse(err, "duration_us", "must not be negative", NULL);
    return 0;
}

/* ---- parsing ---------------------------------------------------------------------- */

static const field_def *field_named(const char *name) {
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].name, name)) return &fields[i];
    return NULL;
}

/* One member's value, whichever parser read it. */
typedef enum { V_ABSENT = 0, V_NULL, V_STR, V_INT, V_OTHER } value_type;
typedef struct {
    value_type type;
    const char *s;             /* V_STR: NUL-terminated; len bytes (a NUL inside is refused) */
    size_t len;
    int64_t i;                 /* V_INT */
} field_val;

/* Fills e from the members' values, in the fields' order: the checks both
 * parsers share, so both refuse the same event with the same words. */
static int event_fill(const field_val *vals, audit_event *e, audit_error *err) {
    memset(e, 0, sizeof *e);
    for (int i = 0; i < NFIELDS; i++)
        if (fields[i].kind == F_STR) *str_at(e, &fields[i]) = "";
    for (int i = 0; i < NFIELDS; i++) {
        const field_def *f = &fields[i];
        const field_val *v = &vals[i];
        if (v->type == V_ABSENT || v->type == V_NULL) {
            if (f->required) return refuse(err, f->name, "missing", NULL);
            continue;
        }
        switch (f->kind) {
        case F_STR:
            if (v->type != V_STR) return refuse(err, f->name, "must be a string", NULL);
            if (strlen(v->s) != v->len) return refuse(err, f->name, "must not contain NUL", NULL);
            *str_at(e, f) = v->s;
            break;
        case F_TIME:
            if (v->type != V_STR) return refuse(err, f->name, "must be an RFC 3339 string", NULL);
            if (audit_time_parse(v->s, &e->time_us) != 0)
                return refuse(err, f->name, "not an RFC 3339 time (2026-11-30T17:41:02.123456Z)", NULL);
            break;
        case F_INT:
            if (v->type != V_INT) return refuse(err, f->name, "must be an integer", NULL);
            if (f->off == offsetof(audit_event, status)) {
                if (v->i < 100 || v->i > 599) return refuse(err, f->name, "must be an HTTP status, 100 to 599", NULL);
                e->status = (int)v->i;
            } else {
                if (v->i < 0) return refuse(err, f->name, "must not be negative", NULL);
                *(int64_t *)((char *)e + f->off) = v->i;
            }
            break;
        }
    }
    return audit_event_validate(e, err);
}

/* Fills e from the object o (its strings stay in o). */
static int event_from_json(json_t *o, audit_event *e, audit_error *err) {
    if (!json_is_object(o)) {
        memset(e, 0, sizeof *e);
        return refuse(err, "", "an event must be a JSON object", NULL);
    }
    /* Unknown members first: a misspelt field is named as such, not as the
     * required one it was meant to be. */
    const char *name;
    json_t *v;
    json_object_foreach(o, name, v) {
        if (!field_named(name)) {
            memset(e, 0, sizeof *e);
            return refuse(err, name, "unknown field", NULL);
        }
    }
    field_val vals[NFIELDS];
    memset(vals, 0, sizeof vals);
    for (int i = 0; i < NFIELDS; i++) {
        v = json_object_get(o, fields[i].name);
        field_val *fv = &vals[i];
        if (!v) fv->type = V_ABSENT;
        else if (json_is_null(v)) fv->type = V_NULL;
        else if (json_is_string(v)) *fv = (field_val){V_STR, json_string_value(v), json_string_length(v), 0};
        else if (json_is_integer(v)) *fv = (field_val){V_INT, NULL, 0, (int64_t)json_integer_value(v)};
        else fv->type = V_OTHER;
    }
    return event_fill(vals, e, err);
}

/* ---- the fast path for one event ---------------------------------------------------------- */

/* The shipper parses every journal record, which cairn wrote itself: a flat
 * object of known members with string and integer values.  This parser
 * reads exactly that, decoding the strings into one buffer (no allocation
 * per value, unlike a jansson document), and answers "not mine" (false) for
 * anything else: another shape, a real number, true/false, a duplicate or
 * unknown member, an escape in a name, \u0000, a lone surrogate, a control
 * character or invalid UTF-8, an integer of more than 18 digits.  Those go
 * to jansson, which accepts or refuses them with its words; for what this
 * parser accepts, both give the same values (fuzz_audit checks it). */

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int hex4(const char *p, const char *end) {
    if (end - p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* The length of the valid UTF-8 sequence at p (first byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
    size_t n;
    uint32_t cp;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) n = 2, cp = p[0] & 0x1F;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF) n = 3, cp = p[0] & 0x0F;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4) n = 4, cp = p[0] & 0x07;
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static char *put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) *o++ = (char)(0xC0 | cp >> 6), *o++ = (char)(0x80 | (cp & 0x3F));
    else if (cp < 0x10000)
        *o++ = (char)(0xE0 | cp >> 12), *o++ = (char)(0x80 | ((cp >> 6) & 0x3F)), *o++ = (char)(0x80 | (cp & 0x3F));
    else
        *o++ = (char)(0xF0 | cp >> 18), *o++ = (char)(0x80 | ((cp >> 12) & 0x3F)),
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F)), *o++ = (char)(0x80 | (cp & 0x3F));
    return o;
}

/* A string at p (after its opening quote) into *o; returns the position
 * after the closing quote, or NULL (not mine). */
static const char *fast_string(const char *p, const char *end, char **o) {
    char *w = *o;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *w++ = '\0';
            *o = w;
            return p + 1;
        }
        if (c < 0x20) return NULL;
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (!n) return NULL;
            memcpy(w, p, n);
            w += n;
            p += n;
            continue;
        }
        if (c != '\\') {
            *w++ = (char)c;
            p++;
            continue;
        }
        if (++p >= end) return NULL;
        switch (*p++) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            int u = hex4(p, end);
            if (u <= 0) return NULL; /* bad digits, or \u0000 */
            p += 4;
            uint32_t cp = (uint32_t)u;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return NULL;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return NULL;
                int lo = hex4(p + 2, end);
                if (lo < 0xDC00 || lo > 0xDFFF) return NULL;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (uint32_t)(lo - 0xDC00);
            }
            w = put_utf8(w, cp);
            break;
        }
        default: return NULL;
        }
    }
    return NULL;
}

/* The object in [in, in + len) into vals, its strings decoded into strs
 * (len + NFIELDS bytes at least).  false: not mine (jansson decides). */
static bool fast_event(const char *in, size_t len, char *strs, field_val *vals) {
    const char *p = skip_ws(in, in + len), *end = in + len;
    memset(vals, 0, NFIELDS * sizeof *vals);
    if (p >= end || *p++ != '{') return false;
    p = skip_ws(p, end);
    if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
    char *w = strs;
    for (;;) {
        if (p >= end || *p++ != '"') return false;
        const char *name = p;
        while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
        if (p >= end || *p != '"') return false;
        int idx = -1;
        for (int i = 0; i < NFIELDS && idx < 0; i++)
            if (strlen(fields[i].name) == (size_t)(p - name) && !memcmp(fields[i].name, name, (size_t)(p - name))) idx = i;
        if (idx < 0 || vals[idx].type != V_ABSENT) return false; /* unknown, or a duplicate */
        p = skip_ws(p + 1, end);
        if (p >= end || *p++ != ':') return false;
        p = skip_ws(p, end);
        if (p >= end) return false;
        field_val *v = &vals[idx];
        if (*p == '"') {
            char *start = w;
            if (!(p = fast_string(p + 1, end, &w))) return false;
            *v = (field_val){V_STR, start, (size_t)(w - start - 1), 0};
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            bool neg = *p == '-';
            if (neg) p++;
            const char *d = p;
            int64_t n = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (p - d < 18) n = n * 10 + (*p - '0'); /* past 18 digits: refused below, never overflowed */
                p++;
            }
            size_t nd = (size_t)(p - d);
            if (nd == 0 || nd > 18 || (nd > 1 && *d == '0')) return false;
            if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return false;
            *v = (field_val){V_INT, NULL, 0, neg ? -n : n};
        } else if (end - p >= 4 && !memcmp(p, "null", 4)) {
            v->type = V_NULL;
            p += 4;
        } else {
            return false;
        }
        p = skip_ws(p, end);
        if (p >= end) return false;
        if (*p == '}') return skip_ws(p + 1, end) == end;
        if (*p++ != ',') return false;
        p = skip_ws(p, end);
    }
}

static int load(const char *body, size_t len, json_t **out, audit_error *err) {
    json_error_t je;
    *out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (*out) return 0;
    if (je.text[0] && strstr(je.text, "out of memory")) return CAIRN_ENOMEM;
    err->index = -1;
    refuse(err, "", "not JSON: %s", je.text);
    return CAIRN_EINVAL;
}

int audit_events_parse(const char *body, size_t len, int max_events, audit_events **out, audit_error *err) {
    audit_error dummy;
    if (!err) err = &dummy;
    memset(err, 0, sizeof *err);
    err->index = -1;
    *out = NULL;
    if (!body || max_events < 0 || max_events > AUDIT_BATCH_MAX) return CAIRN_EINVAL;
    json_t *doc;
    int rc = load(body, len, &doc, err);
    if (rc != 0) return rc;
    json_t *arr = doc;
    if (json_is_object(doc)) {
        arr = json_object_get(doc, "events");
        if (json_object_size(doc) != 1 || !arr) {
            json_decref(doc);
            return refuse(err, "events", "a batch is {\"events\":[...]} (or a bare array)", NULL);
        }
    }
    if (!json_is_array(arr)) {
        json_decref(doc);
        return refuse(err, "events", "must be an array of events", NULL);
    }
    size_t n = json_array_size(arr);
    if (n > (size_t)max_events) {
        char got[48];
        snprintf(got, sizeof got, "%zu events; at most %d", n, max_events);
        json_decref(doc);
        refuse(err, "events", "too many: %s", got);
        return CAIRN_ETOOBIG;
    }
    audit_events *b = calloc(1, sizeof *b);
    if (b) b->ev = calloc(n ? n : 1, sizeof *b->ev);
    if (!b || !b->ev) {
        free(b);
        json_decref(doc);
        return CAIRN_ENOMEM;
    }
    b->doc = doc;
    b->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        if ((rc = event_from_json(json_array_get(arr, i), &b->ev[i], err)) != 0) {
            err->index = (int)i;
            audit_events_free(b);
            return rc;
        }
    }
    *out = b;
    return 0;
}

static int event_parse(const char *json, size_t len, bool fast, audit_events **out, audit_error *err) {
    audit_error dummy;
    if (!err) err = &dummy;
    memset(err, 0, sizeof *err);
    err->index = -1;
    *out = NULL;
    if (!json) return CAIRN_EINVAL;
    audit_events *b = calloc(1, sizeof *b);
    if (b) b->ev = calloc(1, sizeof *b->ev);
    if (b && b->ev && len <= SIZE_MAX - NFIELDS - 1) b->strs = malloc(len + NFIELDS + 1);
    if (!b || !b->ev || !b->strs) {
        if (b) free(b->ev);
        free(b);
        return CAIRN_ENOMEM;
    }
    b->n = 1;
    field_val vals[NFIELDS];
    int rc;
    if (fast && fast_event(json, len, b->strs, vals)) {
        err->index = 0;
        rc = event_fill(vals, &b->ev[0], err);
    } else {
        free(b->strs);
        b->strs = NULL;
        if ((rc = load(json, len, &b->doc, err)) == 0) {
            err->index = 0;
            rc = event_from_json(b->doc, &b->ev[0], err);
        }
    }
    if (rc != 0) {
        audit_events_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int audit_event_parse(const char *json, size_t len, audit_events **out, audit_error *err) {
    return event_parse(json, len, true, out, err);
}

int audit_event_parse_reference(const char *json, size_t len, audit_events **out, audit_error *err) {
    return event_parse(json, len, false, out, err);
}

bool audit_events_parsed_fast(const audit_events *b) { return b && b->strs; }

int audit_events_count(const audit_events *b) { return b ? b->n : 0; }
const audit_event *audit_events_list(const audit_events *b) { return b ? b->ev : NULL; }

void audit_events_free(audit_events *b) {
    if (!b) return;
    json_decref(b->doc);
    free(b->strs);
    free(b->ev);
    free(b);
}

/* ---- encoding --------------------------------------------------------------------- */

void audit_event_to_json(const audit_event *e, buf_t *out) {
    buf_putc(out, '{');
    for (int i = 0; i < NFIELDS; i++) {
        const field_def *f = &fields[i];
        buf_printf(out, "%s\"%s\":", i ? "," : "", f->name);
        if (f->kind == F_STR) {
            const char *v = *cstr_at(e, f);
            buf_putc(out, '"');
            if (v) buf_json_escape(out, v, strlen(v));
            buf_putc(out, '"');
        } else if (f->kind == F_TIME) {
            char t[AUDIT_TIME_LEN + 1];
            audit_time_format(e->time_us, t);
            buf_printf(out, "\"%s\"", t);
        } else if (f->off == offsetof(audit_event, status)) {
            buf_printf(out, "%d", e->status);
        } else {
            buf_printf(out, "%lld", (long long)*(const int64_t *)((const char *)e + f->off));
        }
    }
    buf_putc(out, '}');
}

void audit_events_to_json(const audit_event *ev, int n, buf_t *out) {
    buf_puts(out, "{\"events\":[");
    for (int i = 0; i < n; i++) {
        if (i) buf_putc(out, ',');
        audit_event_to_json(&ev[i], out);
    }
    buf_puts(out, "]}");
}

/* ---- the cursor ------------------------------------------------------------------- */

/* 8 bytes of time (big-endian) and the 16 bytes of the id: 24 bytes, 32
 * base64url characters without padding. */
void audit_query_cursor_encode(int64_t time_us, const char *event_id, char out[AUDIT_QUERY_CURSOR_LEN + 1]) {
    unsigned char raw[24];
    for (int i = 0; i < 8; i++) raw[i] = (unsigned char)((uint64_t)time_us >> (56 - 8 * i));
    size_t got = 0;
    int rc = hex_decode(event_id, AUDIT_ID_LEN, raw + 8, 16, &got);
    assert(rc == 0 && got == 16);
    (void)rc;
    sodium_bin2base64(out, AUDIT_QUERY_CURSOR_LEN + 1, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int audit_query_cursor_decode(const char *cursor, int64_t *time_us, char event_id[AUDIT_ID_LEN + 1]) {
    if (!cursor || strnlen(cursor, AUDIT_QUERY_CURSOR_LEN + 1) != AUDIT_QUERY_CURSOR_LEN) return CAIRN_EINVAL;
    /* The alphabet first: libsodium's decoder is not to be trusted with
     * bytes outside it (it took 0x9f for a letter; fuzz_audit found it). */
    for (int i = 0; i < AUDIT_QUERY_CURSOR_LEN; i++) {
        char c = cursor[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return CAIRN_EINVAL;
    }
    unsigned char raw[24];
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(raw, sizeof raw, cursor, AUDIT_QUERY_CURSOR_LEN, NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != sizeof raw || end != cursor + AUDIT_QUERY_CURSOR_LEN)
        return CAIRN_EINVAL;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++) t = t << 8 | raw[i];
    if (t > (uint64_t)INT64_MAX) return CAIRN_EINVAL;
    *time_us = (int64_t)t;
    hex_encode(raw + 8, 16, event_id);
    return 0;
}
