/*
 * event.c — the stream's messages and filters.
 *
 * An object event is rendered once, where it happened, as the whole stream
 * message {"type":"status","data":{"Records":[...]}}: the bus carries those
 * bytes unchanged (Redis included) and the hub sends them unchanged, so a
 * message costs one rendering however many sockets and gateways see it.
 * The record follows AWS's event message structure (version 2.1): clients
 * written for S3 notifications read it as they are.
 *
 * Filters are what a socket asked for in its query: a bucket, a key prefix
 * and event types, where a trailing '*' matches a family
 * (s3:ObjectCreated:* takes Put, Copy, CompleteMultipartUpload, Post).
 */
#include "events/events.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The event types this server emits, and the families a pattern may name. */
static const char *const known_types[] = {
    "s3:ObjectCreated:*",  "s3:ObjectCreated:Put", "s3:ObjectCreated:Post", "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload", "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated", "s3:LifecycleExpiration:*", "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated", "s3:*",
};

static void put_field(buf_t *b, const char *name, const char *value, bool comma) {
    buf_printf(b, "%s\"%s\":\"", comma ? "," : "", name);
    buf_json_escape(b, value ? value : "", value ? strlen(value) : 0);
    buf_putc(b, '"');
}

int events_render_object(buf_t *b, const events_object *e) {
    buf_puts(b, "{\"type\":\"status\",\"data\":");
    events_render_records(b, e);
    buf_putc(b, '}');
    return b->oom ? CAIRN_ENOMEM : 0;
}

int events_render_records(buf_t *b, const events_object *e) {
    char when[40], seq[24];
    time_fmt_iso8601(e->time_us / 1000, when, sizeof when);
    snprintf(seq, sizeof seq, "%016llX", (unsigned long long)e->sequencer);
    buf_puts(b, "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\"");
    put_field(b, "awsRegion", e->region, true);
    put_field(b, "eventTime", when, true);
    put_field(b, "eventName", e->name, true);
    buf_puts(b, ",\"userIdentity\":{");
    put_field(b, "principalId", e->principal, false);
    buf_puts(b, "},\"requestParameters\":{");
    put_field(b, "sourceIPAddress", e->source_ip, false);
    buf_puts(b, "},\"responseElements\":{");
    put_field(b, "x-amz-request-id", e->request_id, false);
    put_field(b, "x-amz-id-2", e->request_id, true);
    buf_puts(b, "},\"s3\":{\"s3SchemaVersion\":\"1.0\"");
    put_field(b, "configurationId", e->configuration_id ? e->configuration_id : "cairn-events", true);
    buf_puts(b, ",\"bucket\":{");
    put_field(b, "name", e->bucket, false);
    buf_puts(b, ",\"arn\":\"arn:aws:s3:::");
    buf_json_escape(b, e->bucket, strlen(e->bucket));
    buf_puts(b, "\"},\"object\":{\"key\":\"");
    buf_url_encode(b, e->key, e->key_len, true);   /* as S3 sends it: URL-encoded */
    buf_putc(b, '"');
    if (e->size >= 0) buf_printf(b, ",\"size\":%lld", (long long)e->size);
    if (e->etag && e->etag[0]) put_field(b, "eTag", e->etag, true);
    if (e->version_id && e->version_id[0]) put_field(b, "versionId", e->version_id, true);
    put_field(b, "sequencer", seq, true);
    buf_puts(b, "}}}]}");
    return b->oom ? CAIRN_ENOMEM : 0;
}

int events_render_status(buf_t *b, const char *type, const char *const *fields, const char *source) {
    char when[40];
    time_fmt_iso8601(time_now_ms(), when, sizeof when);
    buf_puts(b, "{\"type\":\"status\",\"data\":{");
    put_field(b, "event", type, false);
    put_field(b, "time", when, true);
    put_field(b, "source", source, true);
    for (int i = 0; fields && fields[i] && fields[i + 1]; i += 2) put_field(b, fields[i], fields[i + 1], true);
    buf_puts(b, "}}");
    return b->oom ? CAIRN_ENOMEM : 0;
}

uint64_t events_sequencer(int64_t time_us) {
    static atomic_uint counter;
    return ((uint64_t)time_us << 8) | (atomic_fetch_add(&counter, 1) & 0xff);
}

/* ---- filters ------------------------------------------------------------------------ */

static bool known_type(const char *t, size_t n) {
    for (size_t i = 0; i < sizeof known_types / sizeof known_types[0]; i++)
        if (strlen(known_types[i]) == n && memcmp(known_types[i], t, n) == 0) return true;
    return false;
}

int events_filter_parse_types(events_filter *f, const char *list, const char **why) {
    f->npatterns = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n) {
            if (!known_type(p, n)) {
                *why = "events= names an event type this server does not emit (s3:ObjectCreated:*, "
                       "s3:ObjectCreated:Put|Post|Copy|CompleteMultipartUpload, s3:ObjectRemoved:*, "
                       "s3:ObjectRemoved:Delete|DeleteMarkerCreated, s3:LifecycleExpiration:*, "
                       "s3:LifecycleExpiration:Delete|DeleteMarkerCreated)";
                return CAIRN_EINVAL;
            }
            if (f->npatterns == EVENTS_MAX_PATTERNS) {
                *why = "events= lists too many event types";
                return CAIRN_EINVAL;
            }
            memcpy(f->patterns[f->npatterns], p, n);
            f->patterns[f->npatterns++][n] = '\0';
        }
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

bool events_filter_match(const events_filter *f, const char *name, const char *key, size_t key_len) {
    if (f->prefix && (key_len < f->prefix_len || memcmp(key, f->prefix, f->prefix_len) != 0)) return false;
    if (f->npatterns == 0) return true;
    for (int i = 0; i < f->npatterns; i++) {
        const char *pat = f->patterns[i];
        size_t pl = strlen(pat);
        if (pl && pat[pl - 1] == '*' ? strncmp(name, pat, pl - 1) == 0 : strcmp(name, pat) == 0) return true;
    }
    return false;
}

void events_filter_free(events_filter *f) {
    free(f->prefix);
    f->prefix = NULL;
}

int events_object_fields(const char *msg, size_t len, char *name, size_t nn, char **key, size_t *klen,
                         int64_t *sent_ns) {
    *key = NULL;
    *klen = 0;
    *sent_ns = 0;
    json_t *root = json_loadb(msg, len, 0, NULL);
    if (!root) return CAIRN_EINVAL;
    json_t *rec = json_array_get(json_object_get(json_object_get(root, "data"), "Records"), 0);
    const char *ev = json_string_value(json_object_get(rec, "eventName"));
    json_t *obj = json_object_get(json_object_get(rec, "s3"), "object");
    const char *k = json_string_value(json_object_get(obj, "key"));
    const char *seq = json_string_value(json_object_get(obj, "sequencer"));
    int rc = ev && k ? 0 : CAIRN_EINVAL;
    if (rc == 0) {
        snprintf(name, nn, "s3:%s", ev);
        size_t kl = strlen(k);
        *key = malloc(kl + 1);
        long dl = *key ? url_decode(k, kl, *key) : -1;
        if (dl < 0) {
            rc = *key ? CAIRN_EINVAL : CAIRN_ENOMEM;
            free(*key);
            *key = NULL;
        } else {
            *klen = (size_t)dl;
        }
        /* The sequencer is the commit time in microseconds, shifted left 8. */
        uint64_t us = seq ? strtoull(seq, NULL, 16) >> 8 : 0;
        if (us <= (uint64_t)INT64_MAX / 1000) *sent_ns = (int64_t)us * 1000;   /* else: not ours; unknown */
    }
    json_decref(root);
    return rc;
}
