/*
 * fuzz_cache.c — libFuzzer target for what the metadata cache reads from
 * Redis and from its configuration: cached values (tiered_decode_value),
 * the invalidation channel's messages (l2_apply_message) and redis_url
 * (redis_target_parse).
 *
 * The first byte picks the parser, the rest is its input.  Whatever it is,
 * nothing may crash or read out of bounds; a value either decodes to a
 * record of this binary's layout or is a miss; every key a message names
 * is at most what a cache key can be; a refused URL says why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/l2.h"
#include "cache/tiered.h"

static size_t longest;

static void on_key(void *ud, const void *key, size_t klen) {
    (void)ud;
    (void)key;
    if (klen > longest) longest = klen;
}

static void on_flush(void *ud) { (void)ud; }
static void on_channel(void *ud, bool up) {
    (void)ud;
    (void)up;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static l2 *r;
    if (!r) {
        l2_options o = {.url = "redis://127.0.0.1:1", .invalidate = on_key, .flush = on_flush, .channel = on_channel};
        char why[128];
        if (core_init() != 0 || l2_new(&o, &r, why, sizeof why) != 0) abort();
    }
    if (size < 1 || size > 1 << 16) return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        int rc = tiered_decode_value(in, n);
        if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
        break;
    }
    case 1:
        longest = 0;
        l2_apply_message(r, in, n);
        if (longest > 2048) abort();
        break;
    default: {
        if (memchr(in, '\0', n)) return 0;
        char *url = strndup(in, n), why[128] = "";
        redis_target t;
        if (!url) abort();
        int rc = redis_target_parse(url, &t, why, sizeof why);
        if (rc != 0 && (rc != CAIRN_EINVAL || !why[0])) abort();
        if (rc == 0 && (!t.host[0] || t.port < 1 || t.port > 65535 || t.db < 0)) abort();
        free(url);
        break;
    }
    }
    return 0;
}
