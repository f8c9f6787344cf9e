/*
 * test_ws_frame.c — the RFC 6455 framing of the event stream (events/ws.h):
 * the client-frame parser against the RFC's own examples, every close code
 * the parser can send (each 1002 cause, 1007 for text and close reasons,
 * 1009), fragmentation with control frames in between, the streaming
 * property (any split of the bytes gives the same events and error), UTF-8
 * edge cases in the style of RFC 3629 and Autobahn's 6.x, and the server-side
 * builders: frame headers, close frames, Sec-WebSocket-Accept.
 *
 * Client frames are built by put_header/put_payload below, which mask with a
 * key that changes every frame (so a parser using a stale key fails); the
 * masking itself is first checked against the RFC's masked "Hello".
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/core.h"
#include "events/ws.h"

#define N_CASES(a) (sizeof(a) / sizeof((a)[0]))
#define FIN 0x80
#define BIG (1u << 20) /* max_message for tests that do not test it */

/* ---- building client frames ------------------------------------------- */

static uint8_t cur_key[4];
static unsigned frames_built;

/* Appends a frame header: first byte b0 as given (FIN, RSV, opcode), the
 * mask bit when mask, the length in enc form (7, 16 or 64 bits; 0 picks the
 * shortest) and, when masked, a fresh masking key. */
static void put_header(buf_t *b, uint8_t b0, bool mask, int enc, uint64_t len) {
    uint8_t h[14];
    size_t k = 0;
    uint8_t m = mask ? 0x80 : 0;
    if (enc == 0) enc = len < 126 ? 7 : len <= 0xFFFF ? 16 : 64;
    h[k++] = b0;
    if (enc == 7) {
        h[k++] = m | (uint8_t)len;
    } else if (enc == 16) {
        h[k++] = m | 126;
        h[k++] = (uint8_t)(len >> 8);
        h[k++] = (uint8_t)len;
    } else {
        h[k++] = m | 127;
        for (int i = 7; i >= 0; i--) h[k++] = (uint8_t)(len >> (8 * i));
    }
    frames_built++;
    for (int i = 0; i < 4; i++) cur_key[i] = (uint8_t)(0x37 + 0x5b * i + 0x29 * frames_built);
    if (mask) {
        memcpy(h + k, cur_key, 4);
        k += 4;
    }
    buf_append(b, h, k);
}

/* Appends n payload bytes masked with the last header's key. */
static void put_payload(buf_t *b, const void *p, size_t n) {
    if (buf_reserve(b, n) != 0) cr_assert_fail("out of memory");
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) b->data[b->len + i] = (char)(s[i] ^ cur_key[i & 3]);
    b->len += n;
    b->data[b->len] = 0;
}

/* A whole masked frame in the shortest length encoding. */
static void put_frame(buf_t *b, uint8_t b0, const void *p, size_t n) {
    put_header(b, b0, true, 0, n);
    put_payload(b, p, n);
}

static void put_close(buf_t *b, unsigned code, const char *reason) {
    uint8_t pl[125];
    size_t rl = strlen(reason);
    pl[0] = (uint8_t)(code >> 8);
    pl[1] = (uint8_t)code;
    memcpy(pl + 2, reason, rl);
    put_frame(b, FIN | WS_OP_CLOSE, pl, 2 + rl);
}

/* ---- running the parser ------------------------------------------------ */

typedef struct {
    int opcode;
    size_t len;
    bool has_payload;
    uint8_t payload[125];
    unsigned code;
    size_t reason_len;
    char reason[125];
} rec;

typedef struct {
    rec ev[64];
    int nev;
    int rc;               /* WS_NEED_MORE at the end of the bytes, WS_ERROR, WS_EVENT after a close */
    unsigned error;
    const char *why;
    size_t consumed;      /* bytes taken before the run stopped */
} result;

static void record(result *r, const ws_event *ev) {
    cr_assert_lt(r->nev, (int)N_CASES(r->ev));
    rec *e = &r->ev[r->nev++];
    memset(e, 0, sizeof *e);
    e->opcode = ev->opcode;
    e->len = ev->len;
    e->has_payload = ev->payload != NULL;
    if (ev->payload) {
        cr_assert_leq(ev->len, 125);
        memcpy(e->payload, ev->payload, ev->len);
    }
    e->code = ev->close_code;
    e->reason_len = ev->reason_len;
    if (ev->reason_len) {
        cr_assert_leq(ev->reason_len, 123);
        memcpy(e->reason, ev->reason, ev->reason_len);
    }
}

/* Feeds s[0..n) to a fresh parser in pieces ending at cuts[0..ncuts) and at
 * n, like a reader would: after an event, the rest of the piece; it stops at
 * an error or after a close. */
static result run_cuts(uint64_t max, const uint8_t *s, size_t n, const size_t *cuts, size_t ncuts) {
    result r;
    memset(&r, 0, sizeof r);
    ws_parser p;
    ws_parser_init(&p, max);
    size_t off = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        cr_assert_geq(end, off);
        for (;;) {
            ws_event ev;
            size_t used = (size_t)-1;
            int rc = ws_parse(&p, s + off, end - off, &used, &ev);
            cr_assert_leq(used, end - off);
            off += used;
            r.consumed = off;
            if (rc == WS_NEED_MORE) {
                cr_assert_eq(off, end, "WS_NEED_MORE consumes everything");
                break;
            }
            if (rc == WS_ERROR) {
                r.rc = WS_ERROR;
                r.error = p.error;
                r.why = p.error_reason;
                cr_assert_neq(p.error, 0);
                cr_assert_not_null(p.error_reason);
                /* sticky, and takes nothing more */
                uint8_t z[4] = {FIN | WS_OP_PING, 0x80, 0, 0};
                used = 7;
                cr_assert_eq(ws_parse(&p, z, sizeof z, &used, &ev), WS_ERROR);
                cr_assert_eq(used, 0);
                cr_assert_eq(p.error, r.error);
                return r;
            }
            cr_assert_eq(rc, WS_EVENT);
            record(&r, &ev);
            if (ev.opcode == WS_OP_CLOSE) {
                r.rc = WS_EVENT;
                return r;
            }
            if (off == end) break;
        }
    }
    r.rc = WS_NEED_MORE;
    return r;
}

/* In pieces of step bytes; 0: in one piece. */
static result run_step(uint64_t max, const void *s, size_t n, size_t step) {
    size_t ncuts = 0;
    size_t *cuts = calloc(n + 1, sizeof *cuts);
    cr_assert_not_null(cuts);
    if (step)
        for (size_t k = step; k < n; k += step) cuts[ncuts++] = k;
    result r = run_cuts(max, s, n, cuts, ncuts);
    free(cuts);
    return r;
}

static result run1(const buf_t *b) { return run_step(BIG, b->data, b->len, 0); }

static void assert_same(const result *a, const result *b, const char *what) {
    cr_assert_eq(a->rc, b->rc, "%s: rc", what);
    cr_assert_eq(a->error, b->error, "%s: error %u vs %u", what, a->error, b->error);
    cr_assert((a->why == NULL && b->why == NULL) || (a->why && b->why && strcmp(a->why, b->why) == 0),
              "%s: reason", what);
    cr_assert_eq(a->consumed, b->consumed, "%s: consumed %zu vs %zu", what, a->consumed, b->consumed);
    cr_assert_eq(a->nev, b->nev, "%s: %d events vs %d", what, a->nev, b->nev);
    for (int i = 0; i < a->nev; i++)
        cr_assert(memcmp(&a->ev[i], &b->ev[i], sizeof a->ev[i]) == 0, "%s: event %d differs", what, i);
}

/* Asserts that the bytes end in error code with reason why, and that the
 * error comes at byte at (1-based: the byte that decides it), whatever the
 * split.  at 0: only checks the code. */
static void assert_error_at(const buf_t *b, uint64_t max, unsigned code, const char *why, size_t at) {
    result one = run_step(max, b->data, b->len, 0);
    cr_assert_eq(one.rc, WS_ERROR, "expected close code %u, got rc %d", code, one.rc);
    cr_assert_eq(one.error, code, "close code %u, expected %u (%s)", one.error, code, one.why);
    cr_assert_str_eq(one.why, why);
    if (at) cr_assert_eq(one.consumed, at, "decided at byte %zu, expected %zu", one.consumed, at);
    result bytes = run_step(max, b->data, b->len, 1);
    assert_same(&one, &bytes, "byte by byte");
    if (at) {
        /* and nothing after the deciding byte is needed */
        result prefix = run_step(max, b->data, at, 0);
        assert_same(&one, &prefix, "prefix");
        result short_prefix = run_step(max, b->data, at - 1, 0);
        cr_assert_eq(short_prefix.rc, WS_NEED_MORE, "one byte earlier is not yet an error");
    }
}

static void assert_error(const buf_t *b, unsigned code, const char *why) { assert_error_at(b, BIG, code, why, 0); }

/* ---- the RFC's examples ------------------------------------------------- */

Test(ws_frame, rfc_masked_hello) {
    /* RFC 6455 5.7: a single-frame masked text message "Hello" */
    const uint8_t s[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    result r = run_step(BIG, s, sizeof s, 0);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.nev, 1);
    cr_assert_eq(r.ev[0].opcode, WS_OP_TEXT);
    cr_assert_eq(r.ev[0].len, 5);
    cr_assert_not(r.ev[0].has_payload, "data payloads are not reported");
    cr_assert_eq(r.consumed, sizeof s);

    /* the helper masks the same way */
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_PING, "Hello", 5);
    r = run1(&b);
    cr_assert_eq(r.nev, 1);
    cr_assert_eq(r.ev[0].opcode, WS_OP_PING);
    cr_assert_eq(r.ev[0].len, 5);
    cr_assert(memcmp(r.ev[0].payload, "Hello", 5) == 0);
    buf_free(&b);
}

Test(ws_frame, rfc_masked_ping_payload_is_unmasked) {
    /* the RFC's "Hello" key applied to a ping */
    const uint8_t s[] = {0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    result r = run_step(BIG, s, sizeof s, 0);
    cr_assert_eq(r.nev, 1);
    cr_assert_eq(r.ev[0].opcode, WS_OP_PING);
    cr_assert_eq(r.ev[0].len, 5);
    cr_assert(memcmp(r.ev[0].payload, "Hello", 5) == 0);
}

/* ---- messages and control frames --------------------------------------- */

Test(ws_frame, binary_pong_and_empty_messages) {
    buf_t b;
    buf_init(&b);
    uint8_t bin[200];
    for (size_t i = 0; i < sizeof bin; i++) bin[i] = (uint8_t)(i * 7 + 0x80); /* not UTF-8: binary is not checked */
    put_frame(&b, FIN | WS_OP_BINARY, bin, sizeof bin);
    put_frame(&b, FIN | WS_OP_PONG, "pong!", 5);
    put_frame(&b, FIN | WS_OP_TEXT, "", 0);
    put_frame(&b, FIN | WS_OP_PING, "", 0);
    put_frame(&b, FIN | WS_OP_BINARY, "", 0);
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.nev, 5);
    cr_assert_eq(r.ev[0].opcode, WS_OP_BINARY);
    cr_assert_eq(r.ev[0].len, 200);
    cr_assert_eq(r.ev[1].opcode, WS_OP_PONG);
    cr_assert(memcmp(r.ev[1].payload, "pong!", 5) == 0);
    cr_assert_eq(r.ev[2].opcode, WS_OP_TEXT);
    cr_assert_eq(r.ev[2].len, 0);
    cr_assert_eq(r.ev[3].opcode, WS_OP_PING);
    cr_assert_eq(r.ev[3].len, 0);
    cr_assert(r.ev[3].has_payload);
    cr_assert_eq(r.ev[4].opcode, WS_OP_BINARY);
    cr_assert_eq(r.ev[4].len, 0);
    buf_free(&b);
}

Test(ws_frame, empty_frame_reported_by_the_call_that_ends_its_header) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_PING, "", 0);
    ws_parser p;
    ws_parser_init(&p, BIG);
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parse(&p, (uint8_t *)b.data, 5, &used, &ev), WS_NEED_MORE);
    cr_assert_eq(used, 5);
    cr_assert_eq(ws_parse(&p, (uint8_t *)b.data + 5, 1, &used, &ev), WS_EVENT);
    cr_assert_eq(used, 1);
    cr_assert_eq(ev.opcode, WS_OP_PING);
    cr_assert_eq(ws_parse(&p, NULL, 0, &used, &ev), WS_NEED_MORE);
    cr_assert_eq(used, 0);
    buf_free(&b);
}

Test(ws_frame, event_stops_the_call_and_the_rest_is_parsed_next) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_PING, "a", 1);
    size_t first = b.len;
    put_frame(&b, FIN | WS_OP_PING, "bc", 2);
    ws_parser p;
    ws_parser_init(&p, BIG);
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parse(&p, (uint8_t *)b.data, b.len, &used, &ev), WS_EVENT);
    cr_assert_eq(used, first);
    cr_assert_eq(ev.len, 1);
    cr_assert_eq(ev.payload[0], 'a');
    cr_assert_eq(ws_parse(&p, (uint8_t *)b.data + used, b.len - used, &used, &ev), WS_EVENT);
    cr_assert_eq(used, b.len - first);
    cr_assert_eq(ev.len, 2);
    cr_assert(memcmp(ev.payload, "bc", 2) == 0);
    buf_free(&b);
}

Test(ws_frame, text_in_three_fragments_with_a_ping_between) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, WS_OP_TEXT, "Hel", 3);
    put_frame(&b, FIN | WS_OP_PING, "are you there", 13);
    put_frame(&b, WS_OP_CONT, "lo, w", 5);
    put_frame(&b, FIN | WS_OP_PONG, "", 0);
    put_frame(&b, FIN | WS_OP_CONT, "orld", 4);
    put_frame(&b, FIN | WS_OP_BINARY, "x", 1);
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.nev, 4);
    cr_assert_eq(r.ev[0].opcode, WS_OP_PING);
    cr_assert_eq(r.ev[0].len, 13);
    cr_assert(memcmp(r.ev[0].payload, "are you there", 13) == 0);
    cr_assert_eq(r.ev[1].opcode, WS_OP_PONG);
    cr_assert_eq(r.ev[2].opcode, WS_OP_TEXT);
    cr_assert_eq(r.ev[2].len, 12, "the message's length over all fragments");
    cr_assert_eq(r.ev[3].opcode, WS_OP_BINARY, "a new message after the fragmented one ended");
    cr_assert_eq(r.ev[3].len, 1);
    buf_free(&b);
}

Test(ws_frame, close_without_payload_is_1005) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_CLOSE, "", 0);
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_EVENT);
    cr_assert_eq(r.nev, 1);
    cr_assert_eq(r.ev[0].opcode, WS_OP_CLOSE);
    cr_assert_eq(r.ev[0].code, WS_CLOSE_NO_STATUS);
    cr_assert_eq(r.ev[0].reason_len, 0);
    cr_assert_eq(r.ev[0].len, 0);
    buf_free(&b);
}

Test(ws_frame, close_with_code_and_reason) {
    buf_t b;
    buf_init(&b);
    put_close(&b, 1001, "going away \xe2\x82\xac");
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_EVENT);
    cr_assert_eq(r.nev, 1);
    cr_assert_eq(r.ev[0].opcode, WS_OP_CLOSE);
    cr_assert_eq(r.ev[0].code, 1001);
    cr_assert_eq(r.ev[0].reason_len, 14);
    cr_assert(memcmp(r.ev[0].reason, "going away \xe2\x82\xac", 14) == 0);
    cr_assert_eq(r.ev[0].len, 16, "len is the whole payload");
    buf_reset(&b);
    put_close(&b, 4999, "");
    r = run1(&b);
    cr_assert_eq(r.ev[0].code, 4999);
    cr_assert_eq(r.ev[0].reason_len, 0);
    buf_free(&b);
}

Test(ws_frame, close_between_fragments) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, WS_OP_TEXT, "\xe2\x82", 2); /* a sequence left open: not an error at a close */
    put_close(&b, 1000, "done");
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_EVENT);
    cr_assert_eq(r.nev, 1);
    cr_assert_eq(r.ev[0].code, 1000);
    cr_assert_eq(r.ev[0].reason_len, 4);
    buf_free(&b);
}

Test(ws_frame, sixteen_and_sixty_four_bit_lengths) {
    static const size_t lens[] = {125, 126, 127, 65535, 65536, 70000};
    uint8_t *data = malloc(70000);
    memset(data, 'a', 70000);
    for (size_t i = 0; i < N_CASES(lens); i++) {
        buf_t b;
        buf_init(&b);
        put_frame(&b, FIN | WS_OP_TEXT, data, lens[i]);
        put_frame(&b, FIN | WS_OP_BINARY, data, lens[i]);
        size_t hlen = lens[i] < 126 ? 6 : lens[i] <= 65535 ? 8 : 14;
        cr_assert_eq(b.len, 2 * (hlen + lens[i]), "the helper's encoding");
        result r = run1(&b);
        cr_assert_eq(r.rc, WS_NEED_MORE, "len %zu: %s", lens[i], r.why ? r.why : "");
        cr_assert_eq(r.nev, 2);
        cr_assert_eq(r.ev[0].opcode, WS_OP_TEXT);
        cr_assert_eq(r.ev[0].len, lens[i]);
        cr_assert_eq(r.ev[1].opcode, WS_OP_BINARY);
        cr_assert_eq(r.ev[1].len, lens[i]);
        result s = run_step(BIG, b.data, b.len, 4093);
        assert_same(&r, &s, "4093-byte reads");
        buf_free(&b);
    }
    free(data);
}

/* ---- any split gives the same answer ----------------------------------- */

static void stream_of_everything(buf_t *b) {
    put_frame(b, FIN | WS_OP_TEXT, "h\xc3\xa9llo", 6);
    put_frame(b, WS_OP_TEXT, "\xf0\x9f", 2);                /* U+1F600 over three frames */
    put_frame(b, FIN | WS_OP_PING, "p", 1);
    put_frame(b, WS_OP_CONT, "\x98", 1);
    put_frame(b, FIN | WS_OP_CONT, "\x80!", 2);
    uint8_t bin[130];
    memset(bin, 0xff, sizeof bin);
    put_frame(b, FIN | WS_OP_BINARY, bin, sizeof bin);      /* a 16-bit length */
    put_frame(b, FIN | WS_OP_PONG, "", 0);
    put_frame(b, WS_OP_BINARY, "", 0);
    put_frame(b, FIN | WS_OP_CONT, "ab", 2);
}

Test(ws_frame, every_split_of_a_valid_stream) {
    buf_t b;
    buf_init(&b);
    stream_of_everything(&b);
    put_close(&b, 1000, "bye \xe2\x82\xac");
    result one = run1(&b);
    cr_assert_eq(one.rc, WS_EVENT);
    cr_assert_eq(one.nev, 7);
    cr_assert_eq(one.ev[0].opcode, WS_OP_TEXT);
    cr_assert_eq(one.ev[0].len, 6);
    cr_assert_eq(one.ev[1].opcode, WS_OP_PING);
    cr_assert_eq(one.ev[2].opcode, WS_OP_TEXT);
    cr_assert_eq(one.ev[2].len, 5);
    cr_assert_eq(one.ev[3].len, 130);
    cr_assert_eq(one.ev[4].opcode, WS_OP_PONG);
    cr_assert_eq(one.ev[5].opcode, WS_OP_BINARY);
    cr_assert_eq(one.ev[5].len, 2);
    cr_assert_eq(one.ev[6].opcode, WS_OP_CLOSE);
    cr_assert_eq(one.ev[6].code, 1000);
    cr_assert_eq(one.ev[6].reason_len, 7);
    cr_assert_eq(one.consumed, b.len, "the close is the last frame");

    result bytes = run_step(BIG, b.data, b.len, 1);
    assert_same(&one, &bytes, "byte by byte");
    for (size_t k = 0; k <= b.len; k++) {
        result r = run_cuts(BIG, (uint8_t *)b.data, b.len, &k, 1);
        char what[32];
        snprintf(what, sizeof what, "cut at %zu", k);
        assert_same(&one, &r, what);
    }
    buf_free(&b);
}

Test(ws_frame, every_two_cut_split_of_a_stream_ending_in_an_error) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_PING, "x", 1);
    put_frame(&b, WS_OP_TEXT, "ok \xe2", 4);
    put_frame(&b, FIN | WS_OP_PONG, "y", 1);
    put_frame(&b, FIN | WS_OP_CONT, "\x82\x28zzz", 5); /* 0x28 is no continuation */
    result one = run1(&b);
    cr_assert_eq(one.rc, WS_ERROR);
    cr_assert_eq(one.error, WS_CLOSE_INVALID_DATA);
    cr_assert_eq(one.nev, 2);
    cr_assert_eq(one.consumed, b.len - 3, "decided at the 0x28");
    for (size_t i = 0; i <= b.len; i++)
        for (size_t j = i; j <= b.len; j++) {
            size_t cuts[2] = {i, j};
            result r = run_cuts(BIG, (uint8_t *)b.data, b.len, cuts, 2);
            char what[48];
            snprintf(what, sizeof what, "cuts at %zu and %zu", i, j);
            assert_same(&one, &r, what);
        }
    buf_free(&b);
}

/* ---- 1002: protocol errors --------------------------------------------- */

Test(ws_frame, unmasked_client_frame) {
    buf_t b;
    buf_init(&b);
    put_header(&b, FIN | WS_OP_TEXT, false, 0, 5);
    buf_append(&b, "Hello", 5);
    assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "unmasked client frame", 2);
    buf_free(&b);
}

Test(ws_frame, reserved_bits) {
    static const uint8_t rsv[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < N_CASES(rsv); i++) {
        buf_t b;
        buf_init(&b);
        put_frame(&b, FIN | rsv[i] | WS_OP_TEXT, "a", 1);
        assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "reserved bit set", 1);
        buf_free(&b);
    }
}

Test(ws_frame, unknown_opcodes) {
    static const uint8_t ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < N_CASES(ops); i++) {
        buf_t b;
        buf_init(&b);
        put_frame(&b, FIN | WS_OP_PING, "", 0);
        put_frame(&b, FIN | ops[i], "", 0);
        assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "unknown opcode", 7);
        buf_free(&b);
    }
}

Test(ws_frame, fragmented_control_frames) {
    static const uint8_t ops[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};
    for (size_t i = 0; i < N_CASES(ops); i++) {
        buf_t b;
        buf_init(&b);
        put_frame(&b, ops[i], "a", 1);
        assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "fragmented control frame", 1);
        buf_free(&b);
    }
}

Test(ws_frame, control_frame_longer_than_125) {
    uint8_t pl[126];
    memset(pl, 'p', sizeof pl);
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_PING, pl, 125); /* 125 is fine */
    put_frame(&b, FIN | WS_OP_PING, pl, 126);
    assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes", 6 + 125 + 2);
    buf_reset(&b);
    put_header(&b, FIN | WS_OP_CLOSE, true, 64, 65536);
    assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes", 2);
    buf_free(&b);
}

Test(ws_frame, continuation_with_no_message) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_CONT, "a", 1);
    assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "continuation with no message begun", 1);
    /* nor after a message has ended */
    buf_reset(&b);
    put_frame(&b, WS_OP_BINARY, "a", 1);
    put_frame(&b, FIN | WS_OP_CONT, "b", 1);
    size_t at = b.len + 1;
    put_frame(&b, FIN | WS_OP_CONT, "c", 1);
    assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "continuation with no message begun", at);
    buf_free(&b);
}

Test(ws_frame, new_data_frame_inside_a_fragmented_message) {
    static const uint8_t ops[] = {WS_OP_TEXT, WS_OP_BINARY};
    for (size_t i = 0; i < N_CASES(ops); i++) {
        buf_t b;
        buf_init(&b);
        put_frame(&b, WS_OP_TEXT, "a", 1);
        put_frame(&b, FIN | WS_OP_PING, "", 0);
        size_t at = b.len + 1;
        put_frame(&b, FIN | ops[i], "b", 1);
        assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "new data frame inside a fragmented message", at);
        buf_free(&b);
    }
}

Test(ws_frame, sixty_four_bit_length_with_top_bit) {
    buf_t b;
    buf_init(&b);
    put_header(&b, FIN | WS_OP_BINARY, true, 64, (uint64_t)1 << 63);
    assert_error_at(&b, UINT64_MAX, WS_CLOSE_PROTOCOL, "64-bit length with its top bit set", 10);
    buf_reset(&b);
    put_header(&b, FIN | WS_OP_BINARY, true, 64, UINT64_MAX);
    assert_error_at(&b, UINT64_MAX, WS_CLOSE_PROTOCOL, "64-bit length with its top bit set", 10);
    buf_free(&b);
}

Test(ws_frame, lengths_not_in_shortest_encoding) {
    static const struct { int enc; uint64_t len; size_t at; } bad[] = {
        {16, 0, 4}, {16, 125, 4}, {64, 0, 10}, {64, 125, 10}, {64, 126, 10}, {64, 65535, 10},
    };
    for (size_t i = 0; i < N_CASES(bad); i++) {
        buf_t b;
        buf_init(&b);
        put_header(&b, FIN | WS_OP_BINARY, true, bad[i].enc, bad[i].len);
        assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "length not in its shortest encoding", bad[i].at);
        buf_free(&b);
    }
    /* the smallest length of each encoding is fine */
    buf_t b;
    buf_init(&b);
    put_header(&b, FIN | WS_OP_BINARY, true, 16, 126);
    put_payload(&b, "0123456789", 10);
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.consumed, b.len);
    buf_reset(&b);
    put_header(&b, FIN | WS_OP_BINARY, true, 64, 65536);
    r = run1(&b);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    buf_free(&b);
}

Test(ws_frame, close_payload_of_one_byte) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_CLOSE, "\x03", 1);
    assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "close payload of 1 byte", 2);
    buf_free(&b);
}

Test(ws_frame, close_codes_that_may_not_be_sent) {
    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < N_CASES(bad); i++) {
        buf_t b;
        buf_init(&b);
        put_close(&b, bad[i], "reason");
        /* decided by the code's second byte, before the reason arrives */
        assert_error_at(&b, BIG, WS_CLOSE_PROTOCOL, "close code that may not be sent", 8);
        buf_free(&b);
    }
    /* the code is checked before the reason */
    buf_t b;
    buf_init(&b);
    put_close(&b, 1005, "\xff");
    assert_error(&b, WS_CLOSE_PROTOCOL, "close code that may not be sent");
    buf_free(&b);
}

Test(ws_frame, first_error_wins) {
    /* unmasked, with a 126-byte ping: the mask bit is checked first */
    buf_t b;
    buf_init(&b);
    put_header(&b, FIN | WS_OP_PING, false, 16, 126);
    assert_error(&b, WS_CLOSE_PROTOCOL, "unmasked client frame");
    /* a reserved bit on a fragmented control frame with an unknown opcode */
    buf_reset(&b);
    put_frame(&b, 0x40 | 0xB, "", 0);
    assert_error(&b, WS_CLOSE_PROTOCOL, "reserved bit set");
    /* too big and not minimal: the encoding first */
    buf_reset(&b);
    put_header(&b, FIN | WS_OP_BINARY, true, 64, 200);
    assert_error_at(&b, 10, WS_CLOSE_PROTOCOL, "length not in its shortest encoding", 10);
    buf_free(&b);
}

/* ---- 1009: too big ------------------------------------------------------ */

Test(ws_frame, message_too_big_as_soon_as_announced) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_TEXT, "0123456789", 10); /* exactly max_message */
    result r = run_step(10, b.data, b.len, 0);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.ev[0].len, 10);
    buf_reset(&b);
    put_frame(&b, FIN | WS_OP_BINARY, "0123456789a", 11);
    assert_error_at(&b, 10, WS_CLOSE_TOO_BIG, "message too big", 2);
    buf_reset(&b);
    put_header(&b, FIN | WS_OP_BINARY, true, 64, (uint64_t)1 << 40);
    assert_error_at(&b, 1u << 20, WS_CLOSE_TOO_BIG, "message too big", 10);
    buf_free(&b);
}

Test(ws_frame, message_too_big_counting_all_fragments) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, WS_OP_TEXT, "01234", 5);
    put_frame(&b, FIN | WS_OP_PING, "not counted, control", 20);
    put_frame(&b, WS_OP_CONT, "5678", 4);
    size_t at = b.len + 2;
    put_frame(&b, FIN | WS_OP_CONT, "9a", 2);
    result r = run_step(11, b.data, b.len, 0);
    cr_assert_eq(r.rc, WS_NEED_MORE, "11 bytes fit in 11");
    cr_assert_eq(r.ev[1].len, 11);
    assert_error_at(&b, 10, WS_CLOSE_TOO_BIG, "message too big", at);
    /* the count starts again with the next message */
    buf_reset(&b);
    put_frame(&b, FIN | WS_OP_BINARY, "0123456789", 10);
    put_frame(&b, FIN | WS_OP_BINARY, "0123456789", 10);
    r = run_step(10, b.data, b.len, 0);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.nev, 2);
    buf_free(&b);
}

Test(ws_frame, max_message_zero_takes_only_empty_messages) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_TEXT, "", 0);
    put_frame(&b, FIN | WS_OP_PING, "ping", 4);
    result r = run_step(0, b.data, b.len, 0);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.nev, 2);
    put_frame(&b, FIN | WS_OP_TEXT, "a", 1);
    assert_error_at(&b, 0, WS_CLOSE_TOO_BIG, "message too big", b.len - 5);
    buf_free(&b);
}

/* ---- 1007 and UTF-8 ------------------------------------------------------ */

static const struct {
    const char *s;
    size_t n;
    bool valid;
    size_t bad_at; /* invalid: 1-based index of the byte that decides it, 0 = the end */
} utf8_cases[] = {
    {"", 0, true, 0},
    {"plain ascii \x7f", 13, true, 0},
    {"\xc2\xa2", 2, true, 0},                 /* U+00A2, 2 bytes */
    {"\xdf\xbf", 2, true, 0},                 /* U+07FF */
    {"\xe0\xa0\x80", 3, true, 0},             /* U+0800, the smallest 3-byte */
    {"\xe2\x82\xac", 3, true, 0},             /* U+20AC */
    {"\xed\x9f\xbf", 3, true, 0},             /* U+D7FF, just below the surrogates */
    {"\xee\x80\x80", 3, true, 0},             /* U+E000, just above */
    {"\xef\xbf\xbf", 3, true, 0},             /* U+FFFF */
    {"\xf0\x90\x80\x80", 4, true, 0},         /* U+10000, the smallest 4-byte */
    {"\xf0\x9f\x98\x80", 4, true, 0},         /* U+1F600 */
    {"\xf4\x8f\xbf\xbf", 4, true, 0},         /* U+10FFFF, the largest */
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, true, 0}, /* Autobahn 6.2: "kosme" */
    {"\xc0\xaf", 2, false, 1},                /* overlong '/' */
    {"\xc1\xbf", 2, false, 1},                /* overlong 2-byte */
    {"\xe0\x80\xaf", 3, false, 2},            /* overlong 3-byte */
    {"\xe0\x9f\xbf", 3, false, 2},            /* overlong U+07FF */
    {"\xf0\x80\x80\xaf", 4, false, 2},        /* overlong 4-byte */
    {"\xf0\x8f\xbf\xbf", 4, false, 2},        /* overlong U+FFFF */
    {"\xed\xa0\x80", 3, false, 2},            /* U+D800 */
    {"\xed\xbf\xbf", 3, false, 2},            /* U+DFFF */
    {"\xed\xa0\x80\xed\xb0\x80", 6, false, 2}, /* a surrogate pair, CESU-style */
    {"\xf4\x90\x80\x80", 4, false, 2},        /* U+110000 */
    {"\xf5\x80\x80\x80", 4, false, 1},        /* past U+10FFFF by its lead byte */
    {"\xf7\xbf\xbf\xbf", 4, false, 1},
    {"\xfe", 1, false, 1},
    {"\xff", 1, false, 1},
    {"\x80", 1, false, 1},                    /* a lone continuation */
    {"a\xbf", 2, false, 2},
    {"\xc2\x41", 2, false, 2},                /* lead, then no continuation */
    {"\xe2\x82\x41", 3, false, 3},
    {"\xf0\x9f\x98\x41", 4, false, 4},
    {"\xc2\xa2\xa2", 3, false, 3},            /* one continuation too many */
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", 20, false, 13}, /* Autobahn 6.3 */
    {"\xc2", 1, false, 0},                    /* cut short at the end */
    {"\xe2\x82", 2, false, 0},
    {"\xf0\x9f\x98", 3, false, 0},
    {"ok\xf4", 3, false, 0},
};

Test(ws_frame, utf8_valid_table) {
    for (size_t i = 0; i < N_CASES(utf8_cases); i++)
        cr_assert_eq(ws_utf8_valid(utf8_cases[i].s, utf8_cases[i].n), utf8_cases[i].valid, "case %zu", i);
}

Test(ws_frame, utf8_in_text_messages) {
    for (size_t i = 0; i < N_CASES(utf8_cases); i++) {
        buf_t b;
        buf_init(&b);
        put_frame(&b, FIN | WS_OP_TEXT, utf8_cases[i].s, utf8_cases[i].n);
        if (utf8_cases[i].valid) {
            result r = run1(&b);
            cr_assert_eq(r.rc, WS_NEED_MORE, "case %zu: %s", i, r.why ? r.why : "");
            cr_assert_eq(r.nev, 1);
            cr_assert_eq(r.ev[0].len, utf8_cases[i].n);
        } else if (utf8_cases[i].bad_at) {
            assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message is not UTF-8", 6 + utf8_cases[i].bad_at);
        } else {
            assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence",
                            b.len);
        }
        /* binary carries anything */
        buf_reset(&b);
        put_frame(&b, FIN | WS_OP_BINARY, utf8_cases[i].s, utf8_cases[i].n);
        result r = run1(&b);
        cr_assert_eq(r.rc, WS_NEED_MORE, "binary case %zu", i);
        cr_assert_eq(r.nev, 1);
        buf_free(&b);
    }
}

Test(ws_frame, utf8_each_case_cut_into_one_byte_fragments) {
    for (size_t i = 0; i < N_CASES(utf8_cases); i++) {
        if (utf8_cases[i].n == 0) continue;
        buf_t b;
        buf_init(&b);
        size_t at = 0;
        for (size_t k = 0; k < utf8_cases[i].n; k++) {
            bool last = k + 1 == utf8_cases[i].n;
            put_frame(&b, (last ? FIN : 0) | (k == 0 ? WS_OP_TEXT : WS_OP_CONT), utf8_cases[i].s + k, 1);
            put_frame(&b, FIN | WS_OP_PONG, "", 0);
            if (k + 1 == utf8_cases[i].bad_at) at = b.len - 6; /* the byte itself, last of its frame */
        }
        if (utf8_cases[i].valid) {
            result r = run1(&b);
            cr_assert_eq(r.rc, WS_NEED_MORE, "case %zu", i);
            cr_assert_eq(r.ev[r.nev - 2].opcode, WS_OP_TEXT);
            cr_assert_eq(r.ev[r.nev - 2].len, utf8_cases[i].n);
        } else if (utf8_cases[i].bad_at) {
            assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message is not UTF-8", at);
        } else {
            assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence",
                            b.len - 6);
        }
        buf_free(&b);
    }
}

Test(ws_frame, invalid_sequence_split_across_two_frames_fails_at_its_byte) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, WS_OP_TEXT, "abc\xed", 4);
    size_t at = b.len + 6 + 1;              /* the 0xA0 opening the next frame's payload */
    put_frame(&b, FIN | WS_OP_CONT, "\xa0\x80 more text", 12);
    assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message is not UTF-8", at);
    /* the valid sequence cut the same way is fine */
    buf_reset(&b);
    put_frame(&b, WS_OP_TEXT, "abc\xed", 4);
    put_frame(&b, FIN | WS_OP_CONT, "\x9f\xbf more text", 12);
    result r = run1(&b);
    cr_assert_eq(r.rc, WS_NEED_MORE);
    cr_assert_eq(r.ev[0].len, 16);
    buf_free(&b);
}

Test(ws_frame, invalid_byte_fails_before_the_frame_ends) {
    char big[5000];
    memset(big, 'a', sizeof big);
    big[1000] = '\xff';
    buf_t b;
    buf_init(&b);
    put_frame(&b, FIN | WS_OP_TEXT, big, sizeof big);
    assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message is not UTF-8", 8 + 1001);
    buf_free(&b);
}

Test(ws_frame, truncated_sequence_at_the_end_of_a_fragmented_message) {
    buf_t b;
    buf_init(&b);
    put_frame(&b, WS_OP_TEXT, "\xf0\x9f", 2);
    put_frame(&b, FIN | WS_OP_CONT, "\x98", 1);
    assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence", b.len);
    /* an empty final fragment ends the message too */
    buf_reset(&b);
    put_frame(&b, WS_OP_TEXT, "\xf0\x9f\x98", 3);
    put_frame(&b, FIN | WS_OP_CONT, "", 0);
    assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence", b.len);
    buf_free(&b);
}

Test(ws_frame, close_reason_must_be_utf8) {
    buf_t b;
    buf_init(&b);
    put_close(&b, 1000, "ok \xc0\xaf then more");
    assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8", 6 + 2 + 4);
    buf_reset(&b);
    put_close(&b, 1000, "cut \xe2\x82");
    assert_error_at(&b, BIG, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8", b.len);
    buf_reset(&b);
    put_close(&b, 3000, "\xed\xa0\x80");
    assert_error(&b, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
    buf_free(&b);
}

/* ---- what the server sends ----------------------------------------------- */

Test(ws_frame, frame_header_lengths) {
    static const struct { uint64_t len; size_t n; uint8_t h[10]; } cases[] = {
        {0, 2, {0x81, 0}},
        {125, 2, {0x81, 125}},
        {126, 4, {0x81, 126, 0x00, 0x7e}},
        {65535, 4, {0x81, 126, 0xff, 0xff}},
        {65536, 10, {0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}},
        {0x123456789aULL, 10, {0x81, 127, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a}},
    };
    for (size_t i = 0; i < N_CASES(cases); i++) {
        uint8_t out[WS_HEADER_MAX];
        memset(out, 0xee, sizeof out);
        size_t n = ws_frame_header(out, WS_OP_TEXT, cases[i].len);
        cr_assert_eq(n, cases[i].n, "len %llu", (unsigned long long)cases[i].len);
        cr_assert(memcmp(out, cases[i].h, n) == 0, "bytes for len %llu", (unsigned long long)cases[i].len);
    }
    uint8_t out[WS_HEADER_MAX];
    cr_assert_eq(ws_frame_header(out, WS_OP_PONG, 3), 2);
    cr_assert_eq(out[0], 0x8a);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(ws_frame_header(out, WS_OP_BINARY, 200), 4);
    cr_assert_eq(out[0], 0x82);
}

/* Parses a server-built close frame as if a client had sent it. */
static result parse_server_close(const uint8_t *f, size_t n) {
    cr_assert_geq(n, 2);
    cr_assert_eq(f[0], 0x88);
    cr_assert_eq(f[1], n - 2, "the length byte");
    buf_t b;
    buf_init(&b);
    put_frame(&b, f[0], f + 2, n - 2);
    result r = run1(&b);
    buf_free(&b);
    return r;
}

Test(ws_frame, close_frame_building) {
    uint8_t out[WS_CLOSE_FRAME_MAX];
    size_t n = ws_close_frame(out, 0, "ignored");
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], 0x88);
    cr_assert_eq(out[1], 0);
    result r = parse_server_close(out, n);
    cr_assert_eq(r.ev[0].code, WS_CLOSE_NO_STATUS);

    n = ws_close_frame(out, WS_CLOSE_POLICY, NULL);
    cr_assert_eq(n, 4);
    cr_assert(memcmp(out, "\x88\x02\x03\xf0", 4) == 0);

    n = ws_close_frame(out, WS_CLOSE_TOO_BIG, "message too big");
    cr_assert_eq(n, 4 + 15);
    cr_assert(memcmp(out, "\x88\x11\x03\xf1message too big", n) == 0);
    r = parse_server_close(out, n);
    cr_assert_eq(r.rc, WS_EVENT);
    cr_assert_eq(r.ev[0].code, 1009);
    cr_assert_eq(r.ev[0].reason_len, 15);
}

Test(ws_frame, close_frame_reason_cut_at_a_utf8_boundary) {
    static const struct { size_t pad; const char *tail; size_t want; } cases[] = {
        {123, "", 123},                   /* exactly the most */
        {200, "", 123},                   /* ASCII: cut at 123 */
        {120, "\xe2\x82\xac", 123},       /* a 3-byte sequence ending at 123 stays */
        {121, "\xe2\x82\xac", 121},       /* straddling 123: dropped whole */
        {122, "\xe2\x82\xac", 122},
        {119, "\xf0\x9f\x98\x80z", 123},
        {120, "\xf0\x9f\x98\x80", 120},
        {122, "\xc3\xa9", 122},
        {121, "\xc3\xa9", 123},
    };
    for (size_t i = 0; i < N_CASES(cases); i++) {
        char reason[256];
        memset(reason, 'r', cases[i].pad);
        strcpy(reason + cases[i].pad, cases[i].tail);
        uint8_t out[WS_CLOSE_FRAME_MAX];
        size_t n = ws_close_frame(out, WS_CLOSE_GOING_AWAY, reason);
        cr_assert_eq(n, 4 + cases[i].want, "case %zu: %zu bytes", i, n);
        cr_assert_leq(n, WS_CLOSE_FRAME_MAX);
        cr_assert(memcmp(out + 4, reason, cases[i].want) == 0, "case %zu: a prefix", i);
        cr_assert(ws_utf8_valid((char *)out + 4, n - 4), "case %zu: still UTF-8", i);
        result r = parse_server_close(out, n);
        cr_assert_eq(r.rc, WS_EVENT, "case %zu: %s", i, r.why ? r.why : "");
        cr_assert_eq(r.ev[0].code, WS_CLOSE_GOING_AWAY);
        cr_assert_eq(r.ev[0].reason_len, cases[i].want);
    }
}

Test(ws_frame, close_code_valid_edges) {
    static const struct { unsigned code; bool ok; } cases[] = {
        {0, false},    {999, false},  {1000, true},  {1001, true},  {1002, true},  {1003, true},
        {1004, false}, {1005, false}, {1006, false}, {1007, true},  {1011, true},  {1014, true},
        {1015, false}, {1016, false}, {2999, false}, {3000, true},  {3999, true},  {4000, true},
        {4999, true},  {5000, false}, {65535, false}, {0x103e8, false},
    };
    for (size_t i = 0; i < N_CASES(cases); i++)
        cr_assert_eq(ws_close_code_valid(cases[i].code), cases[i].ok, "code %u", cases[i].code);
}

/* ---- the handshake ------------------------------------------------------- */

Test(ws_frame, accept_key_rfc_example) {
    char out[29];
    memset(out, 'x', sizeof out);
    /* RFC 6455 1.3: the SHA-1 is 0xb3 0x7a 0x4f 0x2c 0xc0 0x62 0x4f 0x16 0x90
     * 0xf6 0x46 0x06 0xcf 0x38 0x59 0x45 0xb2 0xbe 0xc4 0xea, which is
     * "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in base64. */
    cr_assert_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws_frame, accept_key_matches_an_independent_computation) {
    for (int i = 0; i < 64; i++) {
        uint8_t raw[16];
        for (int k = 0; k < 16; k++) raw[k] = (uint8_t)(i * 37 + k * 101 + (k == 15 ? i * 3 : 0));
        char key[25], want[29], got[29], cat[64];
        cr_assert_eq(EVP_EncodeBlock((unsigned char *)key, raw, 16), 24);
        snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        unsigned char md[20];
        unsigned int ml = 0;
        cr_assert(EVP_Digest(cat, strlen(cat), md, &ml, EVP_sha1(), NULL));
        EVP_EncodeBlock((unsigned char *)want, md, 20);
        cr_assert_eq(ws_accept_key(key, got), 0, "key %s", key);
        cr_assert_str_eq(got, want);
    }
}

Test(ws_frame, accept_key_refuses_what_is_not_16_bytes) {
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===",    /* 25 */
        "dGhlIHNhbXBsZSBub25jZQ",       /* no padding */
        "dGhlIHNhbXBsZSBub25jZQAA",     /* 18 bytes */
        "dGhlIHNhbXBsZSBub25j",         /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZS4=",     /* 17 bytes */
        "dGhlIHNhbXBsZSBub25jZQ=!",
        "dGhlIHNhbXBsZSBub25j*Q==",     /* not base64 */
        "dGhlIHNhbXBsZSBub25j-Q==",     /* base64url is not base64 */
        "dGhlIHNhbXBsZSBub25j_Q==",
        " dGhlIHNhbXBsZSBub25jZQ==",    /* whitespace is the caller's to trim */
        "dGhlIHNhbXBsZSBub25jZQ== ",
        "dGhlIHNhbXBsZSBub25jZR==",     /* stray bits in the last character */
        "dGhlIHNhbXBsZSBub25jZ===",
        "dGhlIHNhbXBsZSBub25=ZQ==",
    };
    for (size_t i = 0; i < N_CASES(bad); i++) {
        char out[29] = "untouched";
        cr_assert_eq(ws_accept_key(bad[i], out), CAIRN_EINVAL, "key \"%s\"", bad[i]);
    }
}
