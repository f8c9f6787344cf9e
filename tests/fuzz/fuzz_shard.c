/*
 * fuzz_shard.c — libFuzzer target for the shard API's parsers of untrusted
 * input (src/data/shard_api.h): shard_head_parse (a node's response head, as the
 * gateway reads it) and shard_nonce_parse (a request's X-Cairn-Nonce, as the
 * node reads it).
 *
 * The input is copied into a buffer of exactly its size, so ASan flags any
 * read past it.  The head is parsed whole and then fed as a growing prefix,
 * the way remote.c's read_head sees it arrive, with checks of the contract:
 * an accepted head ends with CRLFCRLF within SHARD_HEAD_MAX bytes, its status
 * is 200..599 and its Content-Length -1 or 0..SHARD_MAX_CONTENT_LENGTH; a
 * prefix never parses as complete before the whole head, and once the
 * whole head is in, the answer does not depend on the bytes after it.
 *
 * A third mode feeds the input as a chunked PUT's body to shard_tail_feed
 * (the node's split of shard bytes from the trailing tag), in pieces whose
 * sizes the input's own bytes choose, and checks the split against the
 * whole: the bytes released are the body but its last 16, in order, and the
 * tail holds those 16 (or the whole body when shorter).
 *
 * The first byte picks the mode: bit 0 set, a head; else bit 1 set, a body
 * split; else a nonce.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"

static void check_head(const char *b, size_t n) {
    shard_head h;
    int rc = shard_head_parse(b, n, &h);
    if (rc != 0 && rc != CAIRN_EINVAL) abort();
    if (rc != 0) return;
    if (h.head_len == 0) {
        if (n >= SHARD_HEAD_MAX) abort();
        return;
    }
    if (h.head_len < 4 || h.head_len > n || h.head_len > SHARD_HEAD_MAX) abort();
    if (memcmp(b + h.head_len - 4, "\r\n\r\n", 4) != 0) abort();
    if (h.status < 200 || h.status > 599) abort();
    if (h.content_length < -1 || h.content_length > SHARD_MAX_CONTENT_LENGTH) abort();
    if (h.node_id[0] && strlen(h.node_id) != DATA_DRIVE_ID_LEN) abort();
    /* The head alone gives the same answer. */
    shard_head again;
    if (shard_head_parse(b, h.head_len, &again) != 0 || again.head_len != h.head_len ||
        again.status != h.status || again.content_length != h.content_length ||
        strcmp(again.node_id, h.node_id) != 0)
        abort();
    /* Every shorter prefix asks for more or is refused, never complete. */
    for (size_t i = 0; i < h.head_len; i += 1 + i / 8) {
        shard_head p;
        int prc = shard_head_parse(b, i, &p);
        if (prc == 0 && p.head_len != 0) abort();
    }
}

static void check_tail(const unsigned char *b, size_t n) {
    shard_tail t = {0};
    unsigned char *out = malloc(n ? n : 1);
    if (!out) abort();
    size_t outn = 0, off = 0, step = 0;
    bool last_empty = false;
    while (off < n) {
        size_t piece = b[step++ % n] % 41;   /* 0..40: around a tag's length */
        if (piece == 0 && last_empty) piece = 1; /* an empty piece, but never two in a row: progress */
        last_empty = piece == 0;
        if (piece > n - off) piece = n - off;
        unsigned char rel[SHARD_TAG_LEN];
        struct iovec iov[2];
        int cnt = shard_tail_feed(&t, b + off, piece, rel, iov);
        if (cnt < 0 || cnt > 2) abort();
        for (int k = 0; k < cnt; k++) {
            if (iov[k].iov_len == 0 || outn + iov[k].iov_len > n) abort();
            memcpy(out + outn, iov[k].iov_base, iov[k].iov_len);
            outn += iov[k].iov_len;
        }
        if (t.n > SHARD_TAG_LEN) abort();
        off += piece;
    }
    size_t want = n > SHARD_TAG_LEN ? n - SHARD_TAG_LEN : 0;
    if (outn != want || memcmp(out, b, outn) != 0) abort();
    if (t.n != n - want || memcmp(t.b, b + want, t.n) != 0) abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 3 * SHARD_HEAD_MAX) return 0;
    char *b = malloc(size - 1 ? size - 1 : 1);
    if (!b) return 0;
    memcpy(b, data + 1, size - 1);
    if (data[0] & 1) {
        check_head(b, size - 1);
    } else if (data[0] & 2) {
        check_tail((const unsigned char *)b, size - 1);
    } else {
        /* The nonce arrives as a NUL-terminated header value. */
        char *s = malloc(size);
        if (!s) abort();
        memcpy(s, b, size - 1);
        s[size - 1] = '\0';
        unsigned char session[SHARD_SESSION_BYTES];
        uint64_t seq;
        int rc = shard_nonce_parse(s, session, &seq);
        if (rc != 0 && rc != CAIRN_EINVAL) abort();
        if (rc == 0) {
            /* Accepted nonces print back to themselves. */
            char hex[2 * SHARD_SESSION_BYTES + 1], again[SHARD_NONCE_MAX + 8];
            hex_encode(session, SHARD_SESSION_BYTES, hex);
            snprintf(again, sizeof again, "%s.%llu", hex, (unsigned long long)seq);
            if (strcmp(again, s) != 0) abort();
        }
        free(s);
    }
    free(b);
    return 0;
}
