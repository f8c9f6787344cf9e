/*
 * fuzz_events.c — libFuzzer target for what the event stream reads from
 * outside: the events= type list of a socket's query
 * (events_filter_parse_types), a message that came over the bus
 * (events_object_fields: anything a process with Redis access publishes),
 * and the round trip of an object event through rendering and reading back.
 *
 * The first byte picks the part; the rest is the input.  Checks: a type list
 * that parses holds only patterns that match themselves; a rendered event
 * is JSON that reads back with the same key (whatever bytes the key has) and
 * event name; reading never crashes or leaks.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "events/events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t pick = data[0] % 3;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (pick) {
    case 0: {
        char *list = strndup(in, n);
        if (!list) abort();
        events_filter f = {0};
        const char *why = NULL;
        int rc = events_filter_parse_types(&f, list, &why);
        if (rc != 0 && (rc != CAIRN_EINVAL || !why)) abort();
        if (rc == 0) {
            if (f.npatterns < 0 || f.npatterns > EVENTS_MAX_PATTERNS) abort();
            for (int i = 0; i < f.npatterns; i++) {
                const char *p = f.patterns[i];
                size_t pl = strlen(p);
                /* a pattern's own name (a family with its * dropped and a
                 * member appended) passes the filter */
                char name[64];
                snprintf(name, sizeof name, "%.*sX", (int)(pl && p[pl - 1] == '*' ? pl - 1 : pl), p);
                if (pl && p[pl - 1] == '*' && !events_filter_match(&f, name, "k", 1)) abort();
                if (!(pl && p[pl - 1] == '*') && !events_filter_match(&f, p, "k", 1)) abort();
            }
        }
        events_filter_free(&f);
        free(list);
        break;
    }
    case 1: {
        char name[64], *key = NULL;
        size_t klen = 0;
        int64_t at = 0;
        int rc = events_object_fields(in, n, name, sizeof name, &key, &klen, &at);
        if (rc == 0 && (!key || strncmp(name, "s3:", 3) != 0)) abort();
        if (rc != 0 && key) abort();
        free(key);
        break;
    }
    default: {
        /* the input is a key: render, then read back */
        events_object e = {.name = "ObjectCreated:Put", .region = "us-east-1", .bucket = "b", .key = in,
                           .key_len = n, .size = (int64_t)n, .etag = "0123", .request_id = "R",
                           .principal = "P\"\\", .source_ip = "127.0.0.1", .time_us = 1, .sequencer = 0x1234};
        buf_t b;
        buf_init(&b);
        if (events_render_object(&b, &e) != 0) abort();
        json_error_t err;
        json_t *j = json_loadb(b.data, b.len, 0, &err);
        if (!j) abort();   /* whatever the key's bytes, the message is JSON */
        json_decref(j);
        char name[64], *key = NULL;
        size_t klen = 0;
        int64_t at = 0;
        if (events_object_fields(b.data, b.len, name, sizeof name, &key, &klen, &at) == 0) {
            if (strcmp(name, "s3:ObjectCreated:Put") != 0 || klen != n || memcmp(key, in, n) != 0) abort();
            if (at != (0x1234 >> 8) * 1000) abort();
        } else if (!memchr(in, '\0', n)) {
            abort();   /* only a key with a NUL (which S3 keys never have) may not read back */
        }
        free(key);
        buf_free(&b);
        break;
    }
    }
    return 0;
}
