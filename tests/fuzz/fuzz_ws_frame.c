/*
 * fuzz_ws_frame.c — libFuzzer target for the WebSocket frame parser and the
 * UTF-8 and close-frame helpers (events/ws.h).
 *
 * The first input byte picks max_message and a split seed; the rest is a
 * client byte stream, parsed twice, once in one piece and once cut into
 * pseudo-random pieces.  Both runs must report the same events (opcode,
 * length, close code, payload and reason bytes), stop at the same byte and
 * end with the same result and close code: the parser's answer may not
 * depend on how the network split the stream.  Then the same bytes are
 * checked as UTF-8 against a plain decoder written here, sent as a masked
 * text message in fragments (reported iff ws_utf8_valid said yes), and a
 * prefix of them used as a close reason whose frame must parse back.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/ws.h"

typedef struct {
    int rc;                  /* WS_NEED_MORE, WS_ERROR, or WS_EVENT for a close */
    unsigned error;
    const char *why;
    size_t consumed;
    buf_t events;            /* every event, serialised */
} run;

static void check_event(const ws_event *ev) {
    switch (ev->opcode) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (ev->payload) abort();
        return;
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!ev->payload || ev->len > 125) abort();
        return;
    case WS_OP_CLOSE:
        if (!ev->payload || ev->len > 125 || ev->len == 1) abort();
        if (ev->len == 0) {
            if (ev->close_code != WS_CLOSE_NO_STATUS || ev->reason_len) abort();
            return;
        }
        if (!ws_close_code_valid(ev->close_code) || ev->reason_len != ev->len - 2) abort();
        if (ev->reason_len && ev->reason != (const char *)ev->payload + 2) abort();
        if (!ws_utf8_valid(ev->reason, ev->reason_len)) abort();
        return;
    default:
        abort();
    }
}

static void record(buf_t *b, const ws_event *ev) {
    uint64_t head[3] = {(uint64_t)ev->opcode, ev->len, ev->close_code};
    buf_append(b, head, sizeof head);
    if (ev->payload) buf_append(b, ev->payload, ev->len);
    if (ev->reason_len) buf_append(b, ev->reason, ev->reason_len);
}

static uint32_t next_cut(uint32_t *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return 1 + (*seed >> 16) % 23;
}

/* Parses s[0..n) in pieces (seed 0: one piece) until an error or a close. */
static run parse(uint64_t max, const uint8_t *s, size_t n, uint32_t seed) {
    run r = {.rc = WS_NEED_MORE};
    buf_init(&r.events);
    ws_parser p;
    ws_parser_init(&p, max);
    size_t off = 0;
    while (off < n) {
        size_t end = n;
        if (seed) {
            size_t cut = next_cut(&seed);
            if (cut < n - off) end = off + cut;
        }
        while (off < end) {
            ws_event ev;
            size_t used = 0;
            int rc = ws_parse(&p, s + off, end - off, &used, &ev);
            if (used > end - off) abort();
            off += used;
            r.consumed = off;
            if (rc == WS_NEED_MORE) {
                if (off != end) abort();
                break;
            }
            if (rc == WS_ERROR) {
                if (p.error != WS_CLOSE_PROTOCOL && p.error != WS_CLOSE_INVALID_DATA &&
                    p.error != WS_CLOSE_TOO_BIG)
                    abort();
                if (!p.error_reason || used == 0) abort();
                size_t again = 1;
                if (ws_parse(&p, s, n, &again, &ev) != WS_ERROR || again != 0) abort();
                r.rc = WS_ERROR;
                r.error = p.error;
                r.why = p.error_reason;
                return r;
            }
            if (rc != WS_EVENT) abort();
            check_event(&ev);
            record(&r.events, &ev);
            if (ev.opcode == WS_OP_CLOSE) {
                r.rc = WS_EVENT;
                return r;
            }
        }
    }
    return r;
}

/* A plain UTF-8 decoder: whole code points, then their range. */
static bool utf8_reference(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        uint32_t cp = len == 1 ? b : len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

static void put_masked_frame(buf_t *b, uint8_t b0, const uint8_t *p, size_t n, uint32_t key) {
    uint8_t h[14];
    size_t k = 0;
    h[k++] = b0;
    if (n < 126) {
        h[k++] = 0x80 | (uint8_t)n;
    } else {
        h[k++] = 0x80 | 126; /* n stays below 65536 here */
        h[k++] = (uint8_t)(n >> 8);
        h[k++] = (uint8_t)n;
    }
    uint8_t m[4] = {(uint8_t)key, (uint8_t)(key >> 8), (uint8_t)(key >> 16), (uint8_t)(key >> 24)};
    memcpy(h + k, m, 4);
    buf_append(b, h, k + 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i] ^ m[i & 3];
        buf_append(b, &c, 1);
    }
}

/* The bytes as a text message in fragments, with a ping between each. */
static void check_text_message(const uint8_t *s, size_t n, uint32_t seed, bool valid) {
    buf_t b;
    buf_init(&b);
    size_t off = 0;
    bool first = true;
    do {
        size_t len = n - off, cut = next_cut(&seed) - 1;
        if (cut < len) len = cut;
        bool fin = off + len == n;
        put_masked_frame(&b, (uint8_t)((fin ? 0x80 : 0) | (first ? WS_OP_TEXT : WS_OP_CONT)), s + off, len, seed);
        if (!fin) put_masked_frame(&b, 0x80 | WS_OP_PING, (const uint8_t *)"p", 1, ~seed);
        off += len;
        first = false;
    } while (off < n);
    run r = parse(UINT64_MAX >> 1, (const uint8_t *)b.data, b.len, seed | 1);
    if (valid) {
        /* the last event is the message, of n bytes */
        if (r.rc != WS_NEED_MORE || r.consumed != b.len || r.events.len < 24) abort();
        uint64_t head[3];
        memcpy(head, r.events.data + r.events.len - 24, 24);
        if (head[0] != WS_OP_TEXT || head[1] != n) abort();
    } else if (r.rc != WS_ERROR || r.error != WS_CLOSE_INVALID_DATA) {
        abort();
    }
    buf_free(&r.events);
    buf_free(&b);
}

/* A prefix of the bytes as the reason of a server close frame. */
static void check_close_frame(const uint8_t *s, size_t n, uint8_t pick) {
    static const unsigned codes[] = {0, 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1014, 3000, 4999};
    unsigned code = codes[pick % (sizeof codes / sizeof codes[0])];
    char reason[256];
    size_t rn = n < sizeof reason - 1 ? n : sizeof reason - 1;
    memcpy(reason, s, rn);
    reason[rn] = '\0';
    rn = strlen(reason);
    uint8_t out[WS_CLOSE_FRAME_MAX];
    size_t len = ws_close_frame(out, code, reason);
    if (len < 2 || len > WS_CLOSE_FRAME_MAX || out[0] != 0x88 || out[1] != len - 2) abort();
    if (code == 0) {
        if (len != 2) abort();
    } else {
        size_t kept = len - 4;
        if (kept > 123 || (rn <= 123 && kept != rn) || (rn > 123 && kept + 3 < 123)) abort();
        if (memcmp(out + 4, reason, kept) != 0 || ((out[2] << 8) | out[3]) != (int)code) abort();
    }
    buf_t b;
    buf_init(&b);
    put_masked_frame(&b, out[0], out + 2, len - 2, 0x9e3779b9u * pick);
    run r = parse(0, (const uint8_t *)b.data, b.len, 0);
    bool valid = ws_utf8_valid(reason, rn);
    if (valid && (r.rc != WS_EVENT || r.consumed != b.len)) abort();
    if (!valid && r.rc == WS_ERROR && r.error != WS_CLOSE_INVALID_DATA) abort();
    buf_free(&r.events);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    static const uint64_t maxes[8] = {0, 1, 16, 125, 126, 1000, 65536, UINT64_MAX >> 1};
    uint64_t max = maxes[data[0] & 7];
    uint32_t seed = (uint32_t)data[0] * 2654435761u | 1;
    const uint8_t *s = data + 1;
    size_t n = size - 1;

    run one = parse(max, s, n, 0);
    run many = parse(max, s, n, seed);
    if (one.rc != many.rc || one.error != many.error || one.consumed != many.consumed) abort();
    if ((one.why == NULL) != (many.why == NULL) || (one.why && strcmp(one.why, many.why) != 0)) abort();
    if (one.events.len != many.events.len ||
        (one.events.len && memcmp(one.events.data, many.events.data, one.events.len) != 0))
        abort();
    if (one.events.oom || many.events.oom) abort();
    buf_free(&one.events);
    buf_free(&many.events);

    bool valid = ws_utf8_valid((const char *)s, n);
    if (valid != utf8_reference(s, n)) abort();
    check_text_message(s, n, seed, valid);
    check_close_frame(s, n, data[0]);
    return 0;
}
