/*
 * test_shard_api.c — the shard API's shared pieces (src/data/shard_api.h):
 * the parser of a node's response head (untrusted input for the gateway),
 * the nonce parser, the request signature, the split of a chunked PUT's body
 * into shard bytes and tag; and the node's replay table
 * (src/node/node.h).
 *
 * Heads are parsed from malloc'd buffers of exactly their length, so an ASan
 * build catches any read past the end; every refusal rule of shard_api.h has a
 * case.  The replay table is driven as a node drives it: admissions of
 * (session, sequence number, date), in order, out of order, repeated, too
 * far behind, across evictions and from many threads at once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "node/node.h"

/* ---- response heads -------------------------------------------------------------------- */

/* Parses s from a buffer of exactly strlen(s) bytes. */
static int parse(const char *s, shard_head *h) {
    size_t n = strlen(s);
    char *b = malloc(n ? n : 1);
    cr_assert(b);
    memcpy(b, s, n);
    int rc = shard_head_parse(b, n, h);
    free(b);
    return rc;
}

static void refused(const char *s) {
    shard_head h;
    cr_expect_eq(parse(s, &h), CAIRN_EINVAL, "accepted: %s", s);
}

Test(head, a_good_head_with_its_body_after_it) {
    const char *s = "HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nX-Cairn-Node-Id: 0123456789abcdef\r\n"
                    "Content-Range: bytes 0-4/10\r\n\r\nhello";
    shard_head h;
    cr_assert_eq(parse(s, &h), 0);
    cr_expect_eq(h.status, 206);
    cr_expect_eq(h.content_length, 5);
    cr_expect_eq(h.head_len, strlen(s) - 5);
    cr_expect_str_eq(h.node_id, "0123456789abcdef");
}

Test(head, minimal_forms) {
    shard_head h;
    cr_assert_eq(parse("HTTP/1.0 204\r\n\r\n", &h), 0);
    cr_expect_eq(h.status, 204);
    cr_expect_eq(h.content_length, -1);
    cr_expect_str_eq(h.node_id, "");
    cr_assert_eq(parse("HTTP/1.1 404 \r\ncontent-length:\t007 \r\nX-Empty:\r\n\r\n", &h), 0);
    cr_expect_eq(h.status, 404);
    cr_expect_eq(h.content_length, 7);
    cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &h), 0);
    cr_expect_eq(h.content_length, 3);
    cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n", &h), 0);
    cr_expect_eq(h.content_length, SHARD_MAX_CONTENT_LENGTH);
}

Test(head, every_prefix_of_a_head_asks_for_more) {
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: cairn\r\n\r\n";
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        char *b = malloc(i ? i : 1);
        memcpy(b, s, i);
        shard_head h;
        cr_expect_eq(shard_head_parse(b, i, &h), 0, "prefix %zu", i);
        cr_expect_eq(h.head_len, 0, "prefix %zu", i);
        free(b);
    }
    shard_head h;
    cr_assert_eq(parse(s, &h), 0);
    cr_expect_eq(h.head_len, n);
    cr_expect_eq(h.content_length, 12);
}

Test(head, status_lines_that_are_not_http_1_x_nnn) {
    refused("HTTP/2 200 OK\r\n\r\n");
    refused("HTTP/1.2 200 OK\r\n\r\n");
    refused("HTTP/1.1  200 OK\r\n\r\n");
    refused("HTTP/1.1 20 OK\r\n\r\n");
    refused("HTTP/1.1 2000 OK\r\n\r\n");
    refused("HTTP/1.1 200OK\r\n\r\n");
    refused("HTTP/1.1 099 Odd\r\n\r\n");
    refused("HTTP/1.1 100 Continue\r\n\r\n");
    refused("HTTP/1.1 600 Odd\r\n\r\n");
    refused("HTTP/1.1 2x0 OK\r\n\r\n");
    refused("http/1.1 200 OK\r\n\r\n");
    refused("ICY 200 OK\r\n\r\n");
    refused("HTTP/1.1 200 O\x01K\r\n\r\n");
    refused("\r\n\r\n");
    refused("HTTP/1.1\r\n\r\n");
}

Test(head, content_lengths_that_are_not_one_number) {
    refused("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 1099511627777\r\n\r\n");        /* over 1 TiB */
    refused("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n");  /* over INT64_MAX */
    refused("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n");
}

Test(head, malformed_lines) {
    refused("HTTP/1.1 200 OK\nContent-Length: 3\r\n\r\n");        /* bare LF */
    refused("HTTP/1.1 200 OK\r\nContent-Length: 3\n\r\n\r\n");    /* bare LF in a line */
    refused("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n");                /* bare CR */
    refused("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nA: b\r\n  folded\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n");
}

Test(head, a_nul_in_a_line_is_refused) {
    static const char s[] = "HTTP/1.1 200 OK\r\nA: \0b\r\n\r\n";
    shard_head h;
    char *b = malloc(sizeof s - 1);
    memcpy(b, s, sizeof s - 1);
    cr_expect_eq(shard_head_parse(b, sizeof s - 1, &h), CAIRN_EINVAL);
    free(b);
}

Test(head, node_ids) {
    refused("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: 0123456789ABCDEF\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: 0123456789abcde\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: 0123456789abcdef0\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: 0123456789abcdeg\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: 0123456789abcdef\r\nX-Cairn-Node-Id: 1123456789abcdef\r\n\r\n");
}

Test(head, a_head_that_does_not_end_within_the_limit) {
    size_t n = SHARD_HEAD_MAX + 100;
    char *b = malloc(n);
    memcpy(b, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(b + 20, 'a', n - 20);
    shard_head h;
    cr_expect_eq(shard_head_parse(b, SHARD_HEAD_MAX - 1, &h), 0);
    cr_expect_eq(h.head_len, 0);
    cr_expect_eq(shard_head_parse(b, SHARD_HEAD_MAX, &h), CAIRN_EINVAL);
    cr_expect_eq(shard_head_parse(b, n, &h), CAIRN_EINVAL);
    /* The end just past the limit does not count either. */
    memcpy(b + SHARD_HEAD_MAX - 2, "\r\n\r\n", 4);
    cr_expect_eq(shard_head_parse(b, n, &h), CAIRN_EINVAL);
    memcpy(b + SHARD_HEAD_MAX - 4, "\r\n\r\n", 4);
    cr_expect_eq(shard_head_parse(b, n, &h), 0);
    cr_expect_eq(h.head_len, SHARD_HEAD_MAX);
    free(b);
}

/* ---- nonces and signatures --------------------------------------------------------------- */

#define SESSION "00112233445566778899aabbccddeeff"

Test(nonce, parses_strictly) {
    unsigned char s[SHARD_SESSION_BYTES];
    uint64_t seq = 0;
    cr_assert_eq(shard_nonce_parse(SESSION ".42", s, &seq), 0);
    cr_expect_eq(seq, 42);
    cr_expect_eq(s[0], 0x00);
    cr_expect_eq(s[15], 0xff);
    cr_assert_eq(shard_nonce_parse(SESSION ".18446744073709551615", s, &seq), 0);
    cr_expect_eq(seq, UINT64_MAX);
    cr_assert_eq(shard_nonce_parse(SESSION ".0", s, &seq), 0);
    const char *bad[] = {SESSION ".18446744073709551616", SESSION ".042", SESSION ".", SESSION, SESSION ".1x",
                         SESSION ".-1", SESSION ".+1", SESSION ". 1", SESSION "0.1",
                         "00112233445566778899AABBCCDDEEFF.1", "0011223344556677889aabbccddeeff.1",
                         SESSION ".123456789012345678901", "", "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(shard_nonce_parse(bad[i], s, &seq), CAIRN_EINVAL, "accepted %s", bad[i]);
}

static void hmac_hex(const char *key, const char *msg, char out[65]) {
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), mac, &len);
    hex_encode(mac, 32, out);
}

Test(sign, signs_the_documented_string) {
    char got[65], want[65];
    cr_assert_eq(shard_sign("the-cluster-secret", "0123456789abcdef", "PUT", "/v1/shards/x.1", "1700000000000",
                           SESSION ".7", 1040, got), 0);
    hmac_hex("the-cluster-secret",
             "CAIRN-SHARD-2\n0123456789abcdef\nPUT\n/v1/shards/x.1\n1700000000000\n" SESSION ".7\n1040", want);
    cr_expect_str_eq(got, want);
    /* No body is not a zero-length body. */
    cr_assert_eq(shard_sign("the-cluster-secret", "0123456789abcdef", "GET", "/v1/info", "1", SESSION ".8", -1, got),
                 0);
    hmac_hex("the-cluster-secret", "CAIRN-SHARD-2\n0123456789abcdef\nGET\n/v1/info\n1\n" SESSION ".8\n", want);
    cr_expect_str_eq(got, want);
    /* The body key is an HMAC of the signature. */
    unsigned char key[32];
    cr_assert(shard_body_key("the-cluster-secret", got, key));
    char msg[128], kh[65], wk[65];
    snprintf(msg, sizeof msg, "CAIRN-SHARD-2-BODY\n%s", got);
    hmac_hex("the-cluster-secret", msg, wk);
    hex_encode(key, 32, kh);
    cr_expect_str_eq(kh, wk);
}

Test(sign, refuses_a_target_longer_than_the_api_has) {
    char *target = malloc(8192);
    memset(target, 'a', 8191);
    target[8191] = '\0';
    char sig[65];
    cr_expect_eq(shard_sign("the-cluster-secret", "0123456789abcdef", "GET", target, "1", SESSION ".1", -1, sig),
                 CAIRN_EINVAL);
    free(target);
}

Test(sign, a_chunked_body_signs_chunked_where_the_length_stands) {
    char got[65], want[65];
    cr_assert_eq(shard_sign("the-cluster-secret", "0123456789abcdef", "PUT", "/v1/shards/x.1", "1", SESSION ".9",
                           SHARD_LENGTH_CHUNKED, got), 0);
    hmac_hex("the-cluster-secret", "CAIRN-SHARD-2\n0123456789abcdef\nPUT\n/v1/shards/x.1\n1\n" SESSION ".9\nchunked",
             want);
    cr_expect_str_eq(got, want);
    /* Not the signature of the same head with no body or any length. */
    char other[65];
    cr_assert_eq(shard_sign("the-cluster-secret", "0123456789abcdef", "PUT", "/v1/shards/x.1", "1", SESSION ".9", -1,
                           other), 0);
    cr_expect_str_neq(got, other);
}

/* ---- the tag of a chunked body ---------------------------------------------------------------- */

/* Feeds body in pieces of the given sizes (cycled); checks that the bytes
 * released are body[0 .. len-16) in order and that the tail holds the rest. */
static void split_in_pieces(const unsigned char *body, size_t len, const size_t *sizes, size_t nsizes) {
    shard_tail t = {0};
    unsigned char *out = malloc(len + 1);
    cr_assert(out);
    size_t outn = 0, off = 0;
    for (size_t i = 0; off < len; i++) {
        size_t n = sizes[i % nsizes];
        if (n > len - off) n = len - off;
        unsigned char rel[SHARD_TAG_LEN];
        struct iovec iov[2];
        int cnt = shard_tail_feed(&t, body + off, n, rel, iov);
        cr_assert(cnt >= 0 && cnt <= 2);
        for (int k = 0; k < cnt; k++) {
            cr_assert(iov[k].iov_len > 0);
            memcpy(out + outn, iov[k].iov_base, iov[k].iov_len);
            outn += iov[k].iov_len;
        }
        off += n;
        cr_assert_leq(t.n, SHARD_TAG_LEN);
    }
    size_t want = len > SHARD_TAG_LEN ? len - SHARD_TAG_LEN : 0;
    cr_assert_eq(outn, want, "released %zu of %zu", outn, len);
    cr_expect(memcmp(out, body, outn) == 0);
    cr_assert_eq(t.n, len < SHARD_TAG_LEN ? len : SHARD_TAG_LEN);
    cr_expect(memcmp(t.b, body + want, t.n) == 0);
    free(out);
}

Test(tail, holds_back_the_last_sixteen_bytes_however_the_body_is_cut) {
    unsigned char body[1000];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (unsigned char)(i * 37 + 11);
    const size_t ones[] = {1}, sevens[] = {7}, mixed[] = {3, 16, 1, 40, 15, 17, 0, 2}, whole[] = {1000},
                 tags[] = {16};
    size_t lens[] = {0, 1, 15, 16, 17, 31, 32, 33, 999, 1000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        split_in_pieces(body, lens[i], ones, 1);
        split_in_pieces(body, lens[i], sevens, 1);
        split_in_pieces(body, lens[i], mixed, 8);
        split_in_pieces(body, lens[i], whole, 1);
        split_in_pieces(body, lens[i], tags, 1);
    }
}

/* ---- the replay table --------------------------------------------------------------------- */

#define T0 1700000000000LL

static void session_id(unsigned char id[SHARD_SESSION_BYTES], int n) {
    memset(id, 0, SHARD_SESSION_BYTES);
    /* Distinct first bytes and distinct buckets, and a colliding pair too. */
    id[0] = (unsigned char)n;
    id[15] = (unsigned char)(n * 7 + 1);
}

static node_replay *table(size_t cap, int64_t floor_ms) {
    node_replay *rp = NULL;
    cr_assert_eq(node_replay_new(cap, floor_ms, &rp), 0);
    return rp;
}

Test(replay, admits_each_number_once_in_any_order) {
    node_replay *rp = table(8, T0);
    unsigned char s[SHARD_SESSION_BYTES];
    session_id(s, 1);
    uint64_t order[] = {5, 1, 3, 2, 9, 4, 8, 6, 7};
    for (size_t i = 0; i < 9; i++) cr_expect_eq(node_replay_admit(rp, s, order[i], T0 + 1), 0, "seq %lu", order[i]);
    for (uint64_t q = 1; q <= 9; q++) cr_expect_eq(node_replay_admit(rp, s, q, T0 + 2), CAIRN_EAUTH, "seq %lu", q);
    node_replay_free(rp);
}

Test(replay, a_number_a_window_behind_is_refused) {
    /* After a jump of d past 100 numbers, every number up to 100 is refused
     * (seen, or too far behind) and an unseen one is admitted exactly when
     * it is less than a window behind. */
    uint64_t jumps[] = {1, 2, 63, 64, 65, 127, 128, 1000, NODE_REPLAY_WINDOW - 1, NODE_REPLAY_WINDOW,
                        NODE_REPLAY_WINDOW + 1, 3 * NODE_REPLAY_WINDOW};
    for (size_t j = 0; j < sizeof jumps / sizeof jumps[0]; j++) {
        node_replay *rp = table(4, T0);
        unsigned char s[SHARD_SESSION_BYTES];
        session_id(s, 2);
        uint64_t d = jumps[j], top = 100 + d;
        for (uint64_t q = 1; q <= 100; q++) cr_assert_eq(node_replay_admit(rp, s, q, T0 + 1), 0);
        cr_assert_eq(node_replay_admit(rp, s, top, T0 + 1), 0);
        for (uint64_t q = 1; q <= 100; q++)
            cr_expect_eq(node_replay_admit(rp, s, q, T0 + 1), CAIRN_EAUTH, "jump %lu seq %lu", d, q);
        for (uint64_t q = top > NODE_REPLAY_WINDOW + 5 ? top - NODE_REPLAY_WINDOW - 5 : 101; q < top; q += 1) {
            if (q <= 100) continue;
            int want = top - q < NODE_REPLAY_WINDOW ? 0 : CAIRN_EAUTH;
            cr_expect_eq(node_replay_admit(rp, s, q, T0 + 1), want, "jump %lu seq %lu", d, q);
        }
        cr_expect_eq(node_replay_admit(rp, s, top, T0 + 1), CAIRN_EAUTH);
        node_replay_free(rp);
    }
}

Test(replay, a_session_it_does_not_hold_must_be_dated_after_the_floor) {
    node_replay *rp = table(4, T0);
    unsigned char s[SHARD_SESSION_BYTES];
    session_id(s, 3);
    cr_expect_eq(node_replay_admit(rp, s, 1, T0 - 5), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, s, 1, T0), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, s, 1, T0 + 1), 0);
    cr_expect_eq(node_replay_floor(rp), T0);
    node_replay_free(rp);
}

Test(replay, eviction_forgets_the_least_recent_session_and_raises_the_floor) {
    node_replay *rp = table(2, T0);
    unsigned char a[SHARD_SESSION_BYTES], b[SHARD_SESSION_BYTES], c[SHARD_SESSION_BYTES];
    session_id(a, 10);
    session_id(b, 11);
    session_id(c, 12);
    cr_assert_eq(node_replay_admit(rp, a, 1, T0 + 100), 0);
    cr_assert_eq(node_replay_admit(rp, a, 2, T0 + 150), 0);
    cr_assert_eq(node_replay_admit(rp, b, 1, T0 + 200), 0);
    cr_assert_eq(node_replay_admit(rp, a, 3, T0 + 160), 0); /* a is now the most recent */
    cr_assert_eq(node_replay_admit(rp, c, 1, T0 + 300), 0); /* evicts b */
    cr_expect_eq(node_replay_floor(rp), T0 + 200);
    /* b's requests up to its newest date are refused; later ones make it anew. */
    cr_expect_eq(node_replay_admit(rp, b, 1, T0 + 200), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, b, 2, T0 + 190), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, a, 3, T0 + 160), CAIRN_EAUTH); /* a was kept */
    cr_expect_eq(node_replay_admit(rp, a, 4, T0 + 170), 0);
    cr_expect_eq(node_replay_admit(rp, b, 3, T0 + 400), 0);          /* evicts c */
    cr_expect_eq(node_replay_floor(rp), T0 + 300);
    /* Re-made under the new floor: a lower number of b dated before it is
     * refused though the new entry never saw it. */
    cr_expect_eq(node_replay_admit(rp, b, 2, T0 + 250), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, b, 2, T0 + 301), 0);
    /* A new session dated at or before what the eviction would raise the
     * floor to is refused without evicting anyone. */
    cr_expect_eq(node_replay_admit(rp, c, 9, T0 + 170), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, a, 5, T0 + 180), 0);
    node_replay_free(rp);
}

Test(replay, many_sessions_in_one_bucket) {
    node_replay *rp = table(64, T0);
    unsigned char s[SHARD_SESSION_BYTES];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 200; i++) {
            memset(s, 0, sizeof s); /* same first four bytes: one hash bucket */
            s[8] = (unsigned char)i;
            s[9] = (unsigned char)(i >> 8);
            int64_t date = T0 + 1 + round * 1000 + i;
            cr_expect_eq(node_replay_admit(rp, s, (uint64_t)round + 1, date), 0, "round %d session %d", round, i);
            cr_expect_eq(node_replay_admit(rp, s, (uint64_t)round + 1, date), CAIRN_EAUTH);
        }
    node_replay_free(rp);
}

Test(replay, refuses_bad_sizes) {
    node_replay *rp = NULL;
    cr_expect_eq(node_replay_new(0, T0, &rp), CAIRN_EINVAL);
}

typedef struct {
    node_replay *rp;
    int thread;
    int admitted;
} worker;

/* 8 x 500 numbers: fewer than a window, so none can fall behind it. */
#define THREADS 8
#define PER_THREAD 500

/* Every thread admits its own numbers (interleaved with the others') and
 * tries everyone's: each number is admitted exactly once overall. */
static void *admit_many(void *arg) {
    worker *w = arg;
    unsigned char s[SHARD_SESSION_BYTES];
    session_id(s, 42);
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t seq = (uint64_t)i * THREADS + (uint64_t)w->thread + 1;
        if (node_replay_admit(w->rp, s, seq, T0 + 1) == 0) w->admitted++;
        uint64_t other = (uint64_t)i * THREADS + (uint64_t)((w->thread + 1) % THREADS) + 1;
        if (node_replay_admit(w->rp, s, other, T0 + 1) == 0) w->admitted++;
    }
    return NULL;
}

Test(replay, threads_racing_admit_each_number_once) {
    node_replay *rp = table(4, T0);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){rp, i, 0};
        pthread_create(&t[i], NULL, admit_many, &w[i]);
    }
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += w[i].admitted;
    }
    cr_expect_eq(total, THREADS * PER_THREAD);
    node_replay_free(rp);
}

/* ---- the two ends over real sockets ------------------------------------------------------ */

/*
 * The gateway's client (remote.c) and the node (node.c), both in this
 * process: a real node_server behind the real HTTP server on a loopback port,
 * and a scripted hostile node — a thread that answers each connection with
 * the bytes a test gave it for that request — to show the client refuses
 * every bad answer with an error instead of trusting it.
 */
#include <dirent.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "data/drive.h"

#define SHARD_MAX_TARGET 4096 /* node.c: the longest target a node signs */
#define SECRET "the-cluster-secret-0123"
#define FAKE_ID "0123456789abcdef"

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Connects to 127.0.0.1:port with a 5 s receive timeout. */
static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_bytes(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the peer may answer and close early */
        c += w;
        n -= (size_t)w;
    }
}

/* ---- a real node --------------------------------------------------------------------- */

typedef struct {
    char dir[64];
    node_server *n;
    http_server *s;
    int port;
    char url[64];
    char session[2 * SHARD_SESSION_BYTES + 1];
    uint64_t seq;
} live_node;

/* A node admits only requests dated after its start: lets the clock pass it. */
static void clock_past_start(void) {
    int64_t t = time_now_ms();
    while (time_now_ms() <= t + 1) usleep(200);
}

static void node_up(live_node *ln, int ndrives) {
    memset(ln, 0, sizeof *ln);
    snprintf(ln->dir, sizeof ln->dir, "/tmp/cairn-shard-api-XXXXXX");
    cr_assert(mkdtemp(ln->dir));
    char paths[4][96];
    const char *pv[4];
    for (int i = 0; i < ndrives; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/d%d", ln->dir, i);
        pv[i] = paths[i];
    }
    cr_assert_eq(node_server_new(pv, ndrives, false, SECRET, &ln->n, NULL), 0);
    http_options ho = {.listen = "127.0.0.1:0", .connection_limit = 64, .connection_timeout = 10,
                       .max_header_bytes = 16384};
    char err[256];
    cr_assert_eq(http_server_start(&ho, node_http_handler(), ln->n, &ln->s, &ln->port, err, sizeof err), 0, "%s", err);
    snprintf(ln->url, sizeof ln->url, "http://127.0.0.1:%d", ln->port);
    rand_hex_id(ln->session, SHARD_SESSION_BYTES);
    clock_past_start();
}

static void node_down(live_node *ln) {
    http_server_stop(ln->s);
    node_server_free(ln->n);
    rm_tree(ln->dir);
}

/* Sends raw and returns the answer's status (0: none); body_out, when given,
 * gets the whole answer. */
static int exchange(int port, const char *raw, size_t rawlen, buf_t *answer) {
    int fd = dial(port);
    send_bytes(fd, raw, rawlen);
    shutdown(fd, SHUT_WR);
    buf_t b;
    buf_init(&b);
    char tmp[4096];
    ssize_t r;
    while ((r = recv(fd, tmp, sizeof tmp, 0)) > 0) buf_append(&b, tmp, (size_t)r);
    close(fd);
    int status = 0;
    if (b.len >= 12 && !memcmp(b.data, "HTTP/1.", 7)) status = atoi(b.data + 9);
    if (answer) *answer = b;
    else buf_free(&b);
    return status;
}

typedef struct {
    const char *date;      /* NULL: now */
    const char *nonce;     /* NULL: the node's session and its next number */
    const char *sig;       /* NULL: the right one */
    const char *omit;      /* a header to leave out */
    const char *extra;     /* more header lines */
    int64_t length;        /* Content-Length, -1: none */
} req_opts;

/* A signed request head for the live node (the target as sent). */
static void signed_head(live_node *ln, const char *method, const char *target, const req_opts *o, buf_t *out) {
    char date[24], nonce[SHARD_NONCE_MAX], sig[65];
    snprintf(date, sizeof date, "%lld", (long long)time_now_ms());
    snprintf(nonce, sizeof nonce, "%s.%llu", ln->session, (unsigned long long)++ln->seq);
    const char *d = o && o->date ? o->date : date, *nn = o && o->nonce ? o->nonce : nonce;
    int64_t len = o ? o->length : -1;
    cr_assert_eq(shard_sign(SECRET, node_server_id(ln->n), method, target, d, nn, len, sig), 0);
    const char *omit = o && o->omit ? o->omit : "";
    buf_init(out);
    buf_printf(out, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", method, target);
    if (strcmp(omit, "date")) buf_printf(out, "X-Cairn-Date: %s\r\n", d);
    if (strcmp(omit, "nonce")) buf_printf(out, "X-Cairn-Nonce: %s\r\n", nn);
    if (strcmp(omit, "sig")) buf_printf(out, "X-Cairn-Signature: %s\r\n", o && o->sig ? o->sig : sig);
    if (len >= 0) buf_printf(out, "Content-Length: %lld\r\n", (long long)len);
    if (o && o->extra) buf_puts(out, o->extra);
    buf_puts(out, "\r\n");
}

static int call(live_node *ln, const char *method, const char *target, const req_opts *o, buf_t *answer) {
    buf_t h;
    signed_head(ln, method, target, o, &h);
    int st = exchange(ln->port, h.data, h.len, answer);
    buf_free(&h);
    return st;
}

/* The body of an answer (after its head). */
static const char *body_of(const buf_t *b) {
    const char *p = b->data ? strstr(b->data, "\r\n\r\n") : NULL;
    return p ? p + 4 : "";
}

/* A signed PUT of shard bytes, head and body, into out (the caller frees
 * it), with the tag computed over tag_over (the shard itself when NULL). */
static void put_request(live_node *ln, const char *name, const char *shard, size_t n, const char *tag_over,
                        buf_t *out) {
    char target[96], date[24], nonce[SHARD_NONCE_MAX], sig[65];
    snprintf(target, sizeof target, "/v1/shards/%s", name);
    snprintf(date, sizeof date, "%lld", (long long)time_now_ms());
    snprintf(nonce, sizeof nonce, "%s.%llu", ln->session, (unsigned long long)++ln->seq);
    int64_t len = (int64_t)n + SHARD_TAG_LEN;
    cr_assert_eq(shard_sign(SECRET, node_server_id(ln->n), "PUT", target, date, nonce, len, sig), 0);
    EVP_MAC *poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC_CTX *t = shard_tag_new(poly, SECRET, sig);
    EVP_MAC_update(t, (const unsigned char *)(tag_over ? tag_over : shard), n);
    unsigned char tag[SHARD_TAG_LEN + 16];
    size_t tl = 0;
    cr_assert(EVP_MAC_final(t, tag, &tl, sizeof tag));
    EVP_MAC_CTX_free(t);
    EVP_MAC_free(poly);
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "PUT %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Cairn-Date: %s\r\nX-Cairn-Nonce: %s\r\n"
                   "X-Cairn-Signature: %s\r\nContent-Length: %lld\r\n\r\n", target, date, nonce, sig, (long long)len);
    buf_append(&b, shard, n);
    buf_append(&b, tag, SHARD_TAG_LEN);
    *out = b;
}

/* PUTs shard bytes with the tag computed over tag_over (the shard itself
 * when NULL); the answer's status. */
static int put_raw(live_node *ln, const char *name, const char *shard, size_t n, const char *tag_over) {
    buf_t b;
    put_request(ln, name, shard, n, tag_over, &b);
    int st = exchange(ln->port, b.data, b.len, NULL);
    buf_free(&b);
    return st;
}

#define SHARD_A "0123456789abcdef0123456789abcdef.0"
#define SHARD_B "0123456789abcdef0123456789abcdef.1"
#define SHARD_C "1123456789abcdef0123456789abcdef.2"

Test(node, the_gateway_client_round_trips_a_shard) {
    live_node ln;
    node_up(&ln, 2);
    drive *d = NULL;
    cr_assert_eq(drive_remote_open(ln.url, SECRET, NULL, 0, &d), 0);
    cr_expect_str_eq(drive_id(d), node_server_id(ln.n));
    cr_expect_str_eq(drive_path(d), ln.url);
    cr_expect_eq(drive_check_writable(d), 0);
    int64_t fb = -1, tb = -1;
    cr_expect_eq(drive_free_bytes(d, &fb, &tb), 0);
    cr_expect_gt(fb, 0);
    cr_expect_geq(tb, fb);
    cr_expect_eq(drive_tmp_count(d), 0);

    const char data[] = "abcdefghijklmnopqrstuvwxyz";
    shard_out *o;
    cr_assert_eq(drive_create(d, SHARD_A, 26, &o), 0);
    struct iovec two[2] = {{(void *)data, 10}, {(void *)(data + 10), 16}};
    cr_assert_eq(drive_append(o, two, 2), 0);
    drive_writeback(o);
    cr_assert_eq(drive_commit(o), 0);

    shard_in *in;
    cr_assert_eq(drive_open(d, SHARD_A, &in), 0);
    cr_expect_eq(drive_shard_size(in), 26);
    char got[32] = {0};
    struct iovec iv[2] = {{got, 4}, {got + 4, 4}};
    cr_expect_eq(drive_preadv(in, iv, 2, 0), 8);
    cr_expect_eq(memcmp(got, "abcdefgh", 8), 0);
    struct iovec one = {got, 3};
    cr_expect_eq(drive_preadv(in, &one, 1, 8), 3); /* continues the same GET */
    cr_expect_eq(memcmp(got, "ijk", 3), 0);
    cr_expect_eq(drive_preadv(in, &one, 1, 20), 3); /* a jump: a new ranged GET */
    cr_expect_eq(memcmp(got, "uvw", 3), 0);
    one.iov_len = 32;
    cr_expect_eq(drive_preadv(in, &one, 1, 23), 3); /* only what there is */
    cr_expect_eq(memcmp(got, "xyz", 3), 0);
    cr_expect_eq(drive_preadv(in, &one, 1, 26), 0);
    drive_close_shard(in);

    cr_expect_eq(drive_open(d, SHARD_B, &in), CAIRN_ENOTFOUND);
    cr_expect_eq(drive_open(d, "../x", &in), CAIRN_EINVAL);
    cr_expect_eq(drive_create(d, "../x", 1, &o), CAIRN_EINVAL);

    cr_expect_eq(drive_remove(d, SHARD_A), 0);
    cr_expect_eq(drive_remove(d, SHARD_A), 0); /* gone already: fine */
    cr_expect_eq(drive_open(d, SHARD_A, &in), CAIRN_ENOTFOUND);
    drive_close(d);
    node_down(&ln);
}

Test(node, uploads_that_break_their_promise_fail) {
    live_node ln;
    node_up(&ln, 1);
    drive *d = NULL;
    cr_assert_eq(drive_remote_open(ln.url, SECRET, NULL, 1000, &d), 0);
    shard_out *o;
    /* More than announced. */
    cr_assert_eq(drive_create(d, SHARD_A, 4, &o), 0);
    struct iovec v = {(void *)"abcdefgh", 8};
    cr_expect_eq(drive_append(o, &v, 1), CAIRN_EIO);
    drive_abort(o);
    /* Fewer than announced. */
    cr_assert_eq(drive_create(d, SHARD_A, 8, &o), 0);
    v.iov_len = 4;
    cr_expect_eq(drive_append(o, &v, 1), 0);
    cr_expect_eq(drive_commit(o), CAIRN_EIO);
    /* More pieces at once than a send takes: refused, and the upload with it. */
    cr_assert_eq(drive_create(d, SHARD_A, 9, &o), 0);
    struct iovec nine[9];
    for (int i = 0; i < 9; i++) nine[i] = (struct iovec){(void *)"x", 1};
    cr_expect_eq(drive_append(o, nine, 9), CAIRN_EINVAL);
    cr_expect_eq(drive_append(o, nine, 1), CAIRN_EIO);
    cr_expect_eq(drive_commit(o), CAIRN_EIO);
    shard_in *in;
    cr_expect_eq(drive_open(d, SHARD_A, &in), CAIRN_ENOTFOUND);
    drive_close(d);
    node_down(&ln);
}

/* Counts the walk's entries; stops with 7 at stop_at. */
typedef struct {
    int n, stop_at;
    char last[48];
    bool ordered;
} walk_count;

static int count_entry(void *ud, const drive_entry *e) {
    walk_count *w = ud;
    if (strcmp(e->name, w->last) <= 0) w->ordered = false;
    snprintf(w->last, sizeof w->last, "%s", e->name);
    if (++w->n == w->stop_at) return 7;
    return 0;
}

Test(node, listing_across_drives_names_a_shard_once) {
    live_node ln;
    /* The same shard on both drives (a leftover of a move), put there
     * before the node opens them. */
    memset(&ln, 0, sizeof ln);
    char dir[] = "/tmp/cairn-shard-api-pre-XXXXXX";
    cr_assert(mkdtemp(dir));
    for (int i = 0; i < 2; i++) {
        char p[96];
        snprintf(p, sizeof p, "%s/d%d", dir, i);
        drive *ld;
        cr_assert_eq(drive_local_open(p, false, &ld, NULL), 0);
        shard_out *o;
        cr_assert_eq(drive_create(ld, SHARD_B, 3, &o), 0);
        struct iovec v = {(void *)"abc", 3};
        cr_assert_eq(drive_append(o, &v, 1), 0);
        cr_assert_eq(drive_commit(o), 0);
        drive_close(ld);
    }
    char p0[96], p1[96];
    snprintf(p0, sizeof p0, "%s/d0", dir);
    snprintf(p1, sizeof p1, "%s/d1", dir);
    const char *pv[2] = {p0, p1};
    snprintf(ln.dir, sizeof ln.dir, "%s", dir);
    cr_assert_eq(node_server_new(pv, 2, false, SECRET, &ln.n, NULL), 0);
    http_options ho = {.listen = "127.0.0.1:0", .connection_limit = 64, .connection_timeout = 10,
                       .max_header_bytes = 16384};
    char err[256];
    cr_assert_eq(http_server_start(&ho, node_http_handler(), ln.n, &ln.s, &ln.port, err, sizeof err), 0);
    snprintf(ln.url, sizeof ln.url, "http://127.0.0.1:%d", ln.port);
    rand_hex_id(ln.session, SHARD_SESSION_BYTES);
    clock_past_start();

    cr_assert_eq(put_raw(&ln, SHARD_A, "aaaa", 4, NULL), 201);
    cr_assert_eq(put_raw(&ln, SHARD_C, "cccc", 4, NULL), 201);
    buf_t a;
    cr_assert_eq(call(&ln, "GET", "/v1/shards?limit=2", NULL, &a), 200);
    json_t *doc = json_loads(body_of(&a), 0, NULL);
    cr_assert(doc);
    json_t *list = json_object_get(doc, "shards");
    cr_expect_eq(json_array_size(list), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "name")), SHARD_A);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "name")), SHARD_B);
    cr_expect(json_is_true(json_object_get(doc, "truncated")));
    json_decref(doc);
    buf_free(&a);
    cr_assert_eq(call(&ln, "GET", "/v1/shards?after=" SHARD_B "&limit=5000", NULL, &a), 200);
    doc = json_loads(body_of(&a), 0, NULL);
    cr_assert(doc);
    cr_expect_eq(json_array_size(json_object_get(doc, "shards")), 1);
    cr_expect(json_is_false(json_object_get(doc, "truncated")));
    json_decref(doc);
    buf_free(&a);

    /* The client's walk sees each once, in order, and stops when told. */
    drive *d;
    cr_assert_eq(drive_remote_open(ln.url, SECRET, NULL, 0, &d), 0);
    walk_count w = {.ordered = true};
    cr_expect_eq(drive_walk(d, count_entry, &w), 0);
    cr_expect_eq(w.n, 3);
    cr_expect(w.ordered);
    w = (walk_count){.stop_at = 2, .ordered = true};
    cr_expect_eq(drive_walk(d, count_entry, &w), 7);
    cr_expect_eq(w.n, 2);
    /* Deleting removes it from both drives. */
    cr_expect_eq(drive_remove(d, SHARD_B), 0);
    w = (walk_count){.ordered = true};
    cr_expect_eq(drive_walk(d, count_entry, &w), 0);
    cr_expect_eq(w.n, 2);
    drive_close(d);
    node_down(&ln);
}

Test(node, refuses_requests_without_a_good_signature) {
    live_node ln;
    node_up(&ln, 1);
    char old[24], ahead[24], nonce[SHARD_NONCE_MAX];
    snprintf(old, sizeof old, "%lld", (long long)(time_now_ms() - NODE_CLOCK_WINDOW_MS - 60000));
    snprintf(ahead, sizeof ahead, "%lld", (long long)(time_now_ms() + NODE_CLOCK_WINDOW_MS + 60000));
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.omit = "date", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.omit = "nonce", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.omit = "sig", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.sig = "abcd", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.date = "01", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.date = "12x", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.nonce = "nope", .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.date = old, .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.date = ahead, .length = -1}, NULL), 401);
    cr_expect_eq(call(&ln, "GET", "/v1/info",
                      &(req_opts){.sig = "0000000000000000000000000000000000000000000000000000000000000000",
                                  .length = -1}, NULL), 401);
    /* Once is fine, twice is a replay. */
    snprintf(nonce, sizeof nonce, "%s.%d", ln.session, 999);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.nonce = nonce, .length = -1}, NULL), 200);
    cr_expect_eq(call(&ln, "GET", "/v1/info", &(req_opts){.nonce = nonce, .length = -1}, NULL), 401);
    /* A target longer than the API signs. */
    char *target = malloc(SHARD_MAX_TARGET + 64);
    cr_assert_not_null(target);
    snprintf(target, SHARD_MAX_TARGET + 64, "/v1/shards/");
    memset(target + 11, 'a', SHARD_MAX_TARGET + 20);
    target[SHARD_MAX_TARGET + 31] = '\0';
    buf_t h;
    buf_init(&h);
    buf_printf(&h, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Cairn-Date: %lld\r\nX-Cairn-Nonce: %s.%d\r\n"
                   "X-Cairn-Signature: %064d\r\n\r\n", target, (long long)time_now_ms(), ln.session, 5000, 0);
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 414);
    buf_free(&h);
    free(target);
    /* Health needs no signature and names the node. */
    buf_t a;
    const char live[] = "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cr_expect_eq(exchange(ln.port, live, sizeof live - 1, &a), 200);
    cr_expect(a.data && strstr(a.data, node_server_id(ln.n)));
    buf_free(&a);
    node_down(&ln);
}

Test(node, refuses_bad_paths_methods_names_and_queries) {
    live_node ln;
    node_up(&ln, 1);
    cr_expect_eq(call(&ln, "GET", "/v1/other", NULL, NULL), 404);
    cr_expect_eq(call(&ln, "GET", "/v1/shards/..x", NULL, NULL), 400);
    cr_expect_eq(call(&ln, "POST", "/v1/shards/" SHARD_A, &(req_opts){.length = 0}, NULL), 405);
    buf_t h; /* a body shorter than its tag */
    signed_head(&ln, "PUT", "/v1/shards/" SHARD_A, &(req_opts){.length = 4}, &h);
    buf_puts(&h, "abcd");
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 400);
    buf_free(&h);
    const char *bad[] = {"/v1/shards?x", "/v1/shards?after", "/v1/shards?limit=", "/v1/shards?limit=0",
                         "/v1/shards?limit=12x", "/v1/shards?limit=12345678901234567", "/v1/shards?other=1",
                         "/v1/shards?after=..bad", "/v1/shards?after=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(call(&ln, "GET", bad[i], NULL, NULL), 400, "%s", bad[i]);
    cr_expect_eq(call(&ln, "GET", "/v1/shards?after=&limit=3", NULL, NULL), 200);
    node_down(&ln);
}

Test(node, puts_need_a_length_and_the_right_tag) {
    live_node ln;
    node_up(&ln, 1);
    /* No length and not chunked. */
    buf_t h;
    signed_head(&ln, "PUT", "/v1/shards/" SHARD_A, &(req_opts){.length = -1}, &h);
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 411);
    buf_free(&h);
    /* Chunked, but signed as a request without a body: the framing is signed. */
    signed_head(&ln, "PUT", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Transfer-Encoding: chunked\r\n"}, &h);
    buf_puts(&h, "0\r\n\r\n");
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 401);
    buf_free(&h);
    /* Chunked and signed so, but shorter than a tag. */
    signed_head(&ln, "PUT", "/v1/shards/" SHARD_A,
                &(req_opts){.length = SHARD_LENGTH_CHUNKED, .extra = "Transfer-Encoding: chunked\r\n"}, &h);
    buf_puts(&h, "5\r\n12345\r\n0\r\n\r\n");
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 400);
    buf_free(&h);
    /* The tag of other bytes. */
    cr_expect_eq(put_raw(&ln, SHARD_A, "good", 4, "evil"), 401);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 404);
    /* Cut short: nothing is kept. */
    signed_head(&ln, "PUT", "/v1/shards/" SHARD_A, &(req_opts){.length = 100}, &h);
    buf_puts(&h, "only a few bytes");
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 0);
    buf_free(&h);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 404);
    /* An empty shard is a shard. */
    cr_expect_eq(put_raw(&ln, SHARD_A, "", 0, NULL), 201);
    buf_t a;
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, NULL, &a), 200);
    cr_expect_str_eq(body_of(&a), "");
    buf_free(&a);
    node_down(&ln);
}

/* A signed chunked PUT of shard bytes and their tag (computed over tag_over,
 * the shard itself when NULL), in chunks of at most piece bytes; ended by the
 * zero chunk when end is true.  The caller frees out. */
static void chunked_put_request(live_node *ln, const char *name, const char *shard, size_t n, const char *tag_over,
                                size_t piece, bool end, buf_t *out) {
    char target[96], sig[65];
    snprintf(target, sizeof target, "/v1/shards/%s", name);
    req_opts o = {.length = SHARD_LENGTH_CHUNKED, .extra = "Transfer-Encoding: chunked\r\n"};
    signed_head(ln, "PUT", target, &o, out);
    const char *s = strstr(out->data, "X-Cairn-Signature: ");
    cr_assert(s);
    memcpy(sig, s + 19, 64);
    sig[64] = '\0';
    EVP_MAC *poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC_CTX *t = shard_tag_new(poly, SECRET, sig);
    EVP_MAC_update(t, (const unsigned char *)(tag_over ? tag_over : shard), n);
    unsigned char tag[SHARD_TAG_LEN + 16];
    size_t tl = 0;
    cr_assert(EVP_MAC_final(t, tag, &tl, sizeof tag));
    EVP_MAC_CTX_free(t);
    EVP_MAC_free(poly);
    /* The shard and its tag as one stream, cut into chunks anywhere. */
    char *all = malloc(n + SHARD_TAG_LEN);
    cr_assert(all);
    memcpy(all, shard, n);
    memcpy(all + n, tag, SHARD_TAG_LEN);
    for (size_t off = 0; off < n + SHARD_TAG_LEN;) {
        size_t k = n + SHARD_TAG_LEN - off < piece ? n + SHARD_TAG_LEN - off : piece;
        buf_printf(out, "%zx\r\n", k);
        buf_append(out, all + off, k);
        buf_puts(out, "\r\n");
        off += k;
    }
    free(all);
    if (end) buf_puts(out, "0\r\n\r\n");
}

static int chunked_put(live_node *ln, const char *name, const char *shard, size_t n, const char *tag_over,
                       size_t piece, bool end) {
    buf_t b;
    chunked_put_request(ln, name, shard, n, tag_over, piece, end, &b);
    int st = exchange(ln->port, b.data, b.len, NULL);
    buf_free(&b);
    return st;
}

/* Polls until the node's first drive holds no temp file (a cut-short
 * upload's is removed when the node sees the connection end). */
static int tmp_files_after_a_while(live_node *ln) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/d0/tmp", ln->dir);
    DIR *d = NULL;
    int n = 0;
    for (int i = 0; i < 500; i++) {
        n = 0;
        d = opendir(tmp);
        cr_assert_not_null(d, "%s", tmp);
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.') n++;
        closedir(d);
        if (n == 0) break;
        usleep(10000);
    }
    return n;
}

Test(node, takes_a_chunked_shard_only_whole_and_with_its_tag) {
    live_node ln;
    node_up(&ln, 1);
    char shard[3000];
    for (size_t i = 0; i < sizeof shard; i++) shard[i] = (char)(i * 7 + 3);
    /* Chunks of every size around the tag's: the tag split across chunks too. */
    const size_t pieces[] = {1, 7, 16, 17, 1000, 5000};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        cr_expect_eq(chunked_put(&ln, SHARD_A, shard, sizeof shard, NULL, pieces[i], true), 201, "chunks of %zu",
                     pieces[i]);
        buf_t a;
        cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, NULL, &a), 200);
        const char *b = body_of(&a);
        cr_expect_eq(a.len - (size_t)(b - a.data), sizeof shard);
        cr_expect(memcmp(b, shard, sizeof shard) == 0, "chunks of %zu: other bytes", pieces[i]);
        buf_free(&a);
        cr_expect_eq(call(&ln, "DELETE", "/v1/shards/" SHARD_A, NULL, NULL), 204);
    }
    /* An empty shard: the body is its tag alone. */
    cr_expect_eq(chunked_put(&ln, SHARD_B, "", 0, NULL, 5, true), 201);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_B, NULL, NULL), 200);
    /* The tag of other bytes. */
    char evil[sizeof shard];
    memcpy(evil, shard, sizeof shard);
    evil[100] ^= 1;
    cr_expect_eq(chunked_put(&ln, SHARD_A, shard, sizeof shard, evil, 64, true), 401);
    /* A stream that lost its middle and was ended properly, with a tag
     * captured from another request over the whole shard: refused. */
    char tag_of_all[SHARD_TAG_LEN];
    {
        buf_t b;
        chunked_put_request(&ln, SHARD_A, shard, sizeof shard, NULL, sizeof shard + SHARD_TAG_LEN, false, &b);
        memcpy(tag_of_all, b.data + b.len - 2 - SHARD_TAG_LEN, SHARD_TAG_LEN);
        buf_free(&b);
    }
    buf_t h;
    signed_head(&ln, "PUT", "/v1/shards/" SHARD_A,
                &(req_opts){.length = SHARD_LENGTH_CHUNKED, .extra = "Transfer-Encoding: chunked\r\n"}, &h);
    buf_printf(&h, "%x\r\n", 1000 + SHARD_TAG_LEN);
    buf_append(&h, shard, 1000);
    buf_append(&h, tag_of_all, SHARD_TAG_LEN);
    buf_puts(&h, "\r\n0\r\n\r\n");
    cr_expect_eq(exchange(ln.port, h.data, h.len, NULL), 401);
    buf_free(&h);
    /* Cut short, after whole chunks and the whole tag: no zero chunk, no shard. */
    cr_expect_eq(chunked_put(&ln, SHARD_A, shard, sizeof shard, NULL, 64, false), 0);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 404);
    cr_expect_eq(tmp_files_after_a_while(&ln), 0, "a refused or cut-short body left its temp file");
    node_down(&ln);
}

Test(node, the_gateway_client_streams_a_shard_of_unknown_size) {
    live_node ln;
    node_up(&ln, 1);
    drive *d = NULL;
    cr_assert_eq(drive_remote_open(ln.url, SECRET, NULL, 2000, &d), 0);
    static char data[200000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 13 + i / 251);
    shard_out *o;
    cr_assert_eq(drive_create(d, SHARD_A, DRIVE_SIZE_UNKNOWN, &o), 0);
    size_t off = 0;
    const size_t steps[] = {3, 0, 16, 4096, 65536, 9, 70000};
    for (size_t i = 0; off < sizeof data; i++) {
        size_t k = steps[i % 7];
        if (k > sizeof data - off) k = sizeof data - off;
        struct iovec two[2] = {{data + off, k / 2}, {data + off + k / 2, k - k / 2}};
        cr_assert_eq(drive_append(o, two, 2), 0);
        off += k;
    }
    cr_assert_eq(drive_commit(o), 0);
    shard_in *in;
    cr_assert_eq(drive_open(d, SHARD_A, &in), 0);
    cr_expect_eq(drive_shard_size(in), (int64_t)sizeof data);
    static char got[sizeof data];
    struct iovec all = {got, sizeof got};
    cr_expect_eq(drive_preadv(in, &all, 1, 0), (ssize_t)sizeof data);
    cr_expect(memcmp(got, data, sizeof data) == 0);
    drive_close_shard(in);
    /* Aborted mid-stream: the node never sees the zero chunk, keeps nothing. */
    cr_assert_eq(drive_create(d, SHARD_B, DRIVE_SIZE_UNKNOWN, &o), 0);
    struct iovec v = {data, 50000};
    cr_assert_eq(drive_append(o, &v, 1), 0);
    drive_abort(o);
    cr_expect_eq(tmp_files_after_a_while(&ln), 0, "an aborted upload left its temp file");
    cr_expect_eq(drive_open(d, SHARD_B, &in), CAIRN_ENOTFOUND);
    drive_close(d);
    node_down(&ln);
}

Test(node, serves_ranges) {
    live_node ln;
    node_up(&ln, 1);
    cr_assert_eq(put_raw(&ln, SHARD_A, "0123456789", 10, NULL), 201);
    buf_t a;
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=2-4\r\n"}, &a), 206);
    cr_expect_str_eq(body_of(&a), "234");
    cr_expect(strstr(a.data, "bytes 2-4/10"));
    buf_free(&a);
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=7-99\r\n"}, &a), 206);
    cr_expect_str_eq(body_of(&a), "789");
    buf_free(&a);
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=10-12\r\n"}, NULL), 416);
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=5-3\r\n"}, NULL), 416);
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=-1-3\r\n"}, NULL), 416);
    /* Not the one form the API uses: the whole shard. */
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=3-\r\n"}, &a), 200);
    cr_expect_str_eq(body_of(&a), "0123456789");
    buf_free(&a);
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=1-2x\r\n"}, &a), 200);
    buf_free(&a);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, &(req_opts){.length = -1, .extra = "Range: bytes=1-2\r\n"}, &a), 206);
    cr_expect(strstr(a.data, "Content-Length: 2"));
    buf_free(&a);
    node_down(&ln);
}

/* ---- a hostile node ---------------------------------------------------------------------- */

/* Answers by request: the bytes to send back for health, info, HEAD, GET,
 * PUT, DELETE and listing pages (NULL: close without a word).  split: send
 * the answer a byte at a time, so heads arrive in pieces. */
typedef struct {
    int lfd, port;
    pthread_t thread;
    atomic_bool stop;
    const char *health, *info, *head, *get, *put, *del;
    const char *list[4];
    int pages, gets;
    const char *greeting; /* sent at once instead of reading a request */
    bool split;
    size_t info_pad;   /* send this many x's after info, then "} */
    char url[64];
} fake_node;

#define FAKE_HEALTH "HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: " FAKE_ID "\r\nContent-Length: 3\r\n\r\nok\n"
#define FAKE_INFO_BODY "{\"node_id\":\"" FAKE_ID "\",\"drives\":[{\"free_bytes\":100,\"total_bytes\":1000},{\"free_bytes\":50,\"total_bytes\":2000},{\"free_bytes\":70,\"total_bytes\":0}]}"
#define JSON_ANSWER(body) "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" body

/* Reads a request head and its Content-Length body; false at EOF. */
static bool fake_read_request(int fd, char *method, char *target) {
    char buf[8192];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof buf - 1) return false;
        ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (r <= 0) return false;
        have += (size_t)r;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (sscanf(buf, "%15s %255s", method, target) != 2) return false;
    long long cl = 0;
    const char *c = strcasestr(buf, "\r\nContent-Length:");
    if (c) cl = atoll(c + 17);
    long long left = cl - (long long)(have - (size_t)(end + 4 - buf));
    while (left > 0) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0) return false;
        left -= r;
    }
    return true;
}

static void fake_answer(fake_node *f, int fd) {
    char method[16], target[256];
    if (!fake_read_request(fd, method, target)) return;
    const char *a = NULL;
    if (!strcmp(target, "/health/live")) a = f->health;
    else if (!strcmp(target, "/v1/info")) a = f->info;
    else if (!strncmp(target, "/v1/shards?", 11)) a = f->pages < 4 ? f->list[f->pages++] : NULL;
    else if (!strcmp(method, "HEAD")) a = f->head;
    else if (!strcmp(method, "GET")) {
        a = f->get;
        f->gets++;
    }
    else if (!strcmp(method, "PUT")) a = f->put;
    else if (!strcmp(method, "DELETE")) a = f->del;
    if (!a) return;
    if (f->split)
        for (size_t i = 0; a[i]; i++) send_bytes(fd, a + i, 1);
    else
        send_bytes(fd, a, strlen(a));
    if (a == f->info && f->info_pad) {
        char pad[4096];
        memset(pad, 'x', sizeof pad);
        for (size_t sent = 0; sent < f->info_pad; sent += sizeof pad) send_bytes(fd, pad, sizeof pad);
        send_bytes(fd, "\"}", 2);
    }
}

static void *fake_main(void *arg) {
    fake_node *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 20) != 1) continue;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (f->greeting) send_bytes(fd, f->greeting, strlen(f->greeting));
        else fake_answer(f, fd);
        shutdown(fd, SHUT_WR);
        char drain[256];
        while (recv(fd, drain, sizeof drain, 0) > 0) {}
        close(fd);
    }
    return NULL;
}

/* A node that answers health and info well and everything else not at all. */
static void fake_init(fake_node *f) {
    memset(f, 0, sizeof *f);
    f->health = FAKE_HEALTH;
    f->info = JSON_ANSWER(FAKE_INFO_BODY);
}

static void fake_start(fake_node *f) {
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(f->lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(f->lfd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(f->lfd, (struct sockaddr *)&a, &al);
    f->port = ntohs(a.sin_port);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    atomic_init(&f->stop, false);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_node *f) {
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

/* Opens the fake with health and info as given: the open's result. */
static int open_with(const char *health, const char *info, bool split) {
    fake_node f;
    fake_init(&f);
    f.health = health;
    f.info = info;
    f.split = split;
    fake_start(&f);
    drive *d = NULL;
    int rc = drive_remote_open(f.url, SECRET, NULL, 2000, &d);
    if (rc == 0) drive_close(d);
    fake_stop(&f);
    return rc;
}

Test(remote, believes_only_a_node_that_names_itself) {
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER(FAKE_INFO_BODY), false), 0);
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER(FAKE_INFO_BODY), true), 0); /* heads in pieces */
    /* Health: refused, unnamed, malformed, silent. */
    cr_expect_eq(open_with("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", JSON_ANSWER(FAKE_INFO_BODY), false), CAIRN_EIO);
    cr_expect_eq(open_with("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", JSON_ANSWER(FAKE_INFO_BODY), false), CAIRN_EIO);
    cr_expect_eq(open_with("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: xyz\r\n\r\n", JSON_ANSWER(FAKE_INFO_BODY), false), CAIRN_EIO);
    cr_expect_eq(open_with("SSH-2.0-OpenSSH\r\n\r\n", JSON_ANSWER(FAKE_INFO_BODY), false), CAIRN_EIO);
    cr_expect_eq(open_with(NULL, JSON_ANSWER(FAKE_INFO_BODY), false), CAIRN_EIO);
    /* Info: refused, not JSON, another node, no drives, silent. */
    cr_expect_eq(open_with(FAKE_HEALTH, "HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n", false), CAIRN_EIO);
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER("<html>"), false), CAIRN_EIO);
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER("{\"node_id\":\"1123456789abcdef\",\"drives\":[]}"), false), CAIRN_EIO);
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER("{\"node_id\":\"" FAKE_ID "\",\"drives\":{}}"), false), CAIRN_EIO);
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER("{\"drives\":[]}"), false), CAIRN_EIO);
    cr_expect_eq(open_with(FAKE_HEALTH, NULL, false), CAIRN_EIO);
    cr_expect_eq(open_with(FAKE_HEALTH, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false), CAIRN_EIO);
    /* An info body without a length is read to the end, up to 1 MiB: the
     * same document with a string of 1.2 MiB in it is cut off. */
    cr_expect_eq(open_with(FAKE_HEALTH, JSON_ANSWER("{\"node_id\":\"" FAKE_ID "\",\"drives\":[],\"pad\":\"x\"}"), false), 0);
    fake_node f;
    fake_init(&f);
    f.info = JSON_ANSWER("{\"node_id\":\"" FAKE_ID "\",\"drives\":[],\"pad\":\"");
    f.info_pad = 1200 * 1024;
    fake_start(&f);
    drive *d = NULL;
    cr_expect_eq(drive_remote_open(f.url, SECRET, NULL, 2000, &d), CAIRN_EIO);
    fake_stop(&f);
}

Test(remote, sums_the_drives_of_a_node) {
    fake_node f;
    fake_init(&f);
    fake_start(&f);
    drive *d = NULL;
    cr_assert_eq(drive_remote_open(f.url + 7, NULL, NULL, 0, &d), 0); /* no scheme: plain HTTP */
    cr_expect_str_eq(drive_id(d), FAKE_ID);
    cr_expect_str_eq(drive_path(d), f.url);
    int64_t fb = 0, tb = 0;
    cr_expect_eq(drive_free_bytes(d, &fb, &tb), 0);
    cr_expect_eq(fb, 50);
    cr_expect_eq(tb, 3000);
    drive_close(d);
    fake_stop(&f);
}

Test(remote, refuses_urls_it_cannot_reach) {
    drive *d = NULL;
    const char *bad[] = {"http://:9000", "http://127.0.0.1", "http://127.0.0.1/x:1", "http://127.0.0.1:",
                         "http://127.0.0.1:/", "http://127.0.0.1:12345678901234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(drive_remote_open(bad[i], SECRET, NULL, 500, &d), CAIRN_EINVAL, "%s", bad[i]);
    char longhost[400] = "http://";
    memset(longhost + 7, 'h', 300);
    strcpy(longhost + 307, ":9000");
    cr_expect_eq(drive_remote_open(longhost, SECRET, NULL, 500, &d), CAIRN_EINVAL);
    /* A port that is no number nor service: nothing to connect to. */
    cr_expect_eq(drive_remote_open("http://127.0.0.1:no-such-service", SECRET, NULL, 500, &d), CAIRN_EIO);
    /* An address no TCP connection can go to: connect fails at once. */
    cr_expect_eq(drive_remote_open("http://255.255.255.255:9", SECRET, NULL, 500, &d), CAIRN_EIO);
    /* No descriptor left for a socket (the process at its open-file limit). */
    struct rlimit was;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
    int lowest = dup(0); /* the lowest free descriptor: the limit leaves none from here */
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit none = {.rlim_cur = (rlim_t)lowest, .rlim_max = was.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
    int rc = drive_remote_open("http://127.0.0.1:9", SECRET, NULL, 500, &d);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
    cr_expect_eq(rc, CAIRN_EIO);
    /* A CA file that is not there. */
    cr_expect_eq(drive_remote_open("https://127.0.0.1:9", SECRET, "/nonexistent/ca.pem", 500, &d), CAIRN_EINVAL);
}

Test(remote, a_node_that_is_down_is_opened_with_its_known_id) {
    /* A port nobody listens on: take one and close it. */
    fake_node f;
    fake_init(&f);
    fake_start(&f);
    fake_stop(&f);
    drive *d = NULL;
    bool answered = true;
    cr_expect_eq(drive_remote_open_known(f.url, SECRET, NULL, 500, NULL, &d, &answered), CAIRN_EIO);
    cr_expect_not(answered);
    cr_expect_eq(drive_remote_open_known(f.url, SECRET, NULL, 500, "short", &d, &answered), CAIRN_EIO);
    cr_assert_eq(drive_remote_open_known(f.url, SECRET, NULL, 500, FAKE_ID, &d, &answered), 0);
    cr_expect_not(answered);
    cr_expect_str_eq(drive_id(d), FAKE_ID);
    /* Every call fails cleanly. */
    shard_in *in;
    shard_out *o;
    cr_expect_eq(drive_open(d, SHARD_A, &in), CAIRN_EIO);
    cr_expect_eq(drive_create(d, SHARD_A, 1, &o), CAIRN_EIO);
    cr_expect_eq(drive_remove(d, SHARD_A), CAIRN_EIO);
    cr_expect_eq(drive_check_writable(d), CAIRN_EIO);
    walk_count w = {.ordered = true};
    cr_expect_eq(drive_walk(d, count_entry, &w), CAIRN_EIO);
    drive_close(d);
}

/* A drive on a fake configured by the caller after fake_init. */
static drive *fake_drive(fake_node *f) {
    fake_start(f);
    drive *d = NULL;
    cr_assert_eq(drive_remote_open(f->url, SECRET, NULL, 2000, &d), 0);
    return d;
}

Test(remote, stats_of_a_shard_must_be_a_200_with_a_length) {
    struct { const char *head; int want; } cases[] = {
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", CAIRN_ENOTFOUND},
        {"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", CAIRN_EIO},
        {"HTTP/1.1 200 OK\r\n\r\n", CAIRN_EIO},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", CAIRN_EIO},
        {NULL, CAIRN_EIO},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_node f;
        fake_init(&f);
        f.head = cases[i].head;
        drive *d = fake_drive(&f);
        shard_in *in = NULL;
        cr_expect_eq(drive_open(d, SHARD_A, &in), cases[i].want, "case %zu", i);
        if (in) {
            cr_expect_eq(drive_shard_size(in), 10);
            drive_close_shard(in);
        }
        drive_close(d);
        fake_stop(&f);
    }
}

/* Opens SHARD_A (10 bytes) on a fake answering GET with get; reads n at off. */
static ssize_t read_from(const char *get, uint64_t off, char *out, size_t n) {
    fake_node f;
    fake_init(&f);
    f.head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    f.get = get;
    drive *d = fake_drive(&f);
    shard_in *in = NULL;
    cr_assert_eq(drive_open(d, SHARD_A, &in), 0);
    struct iovec iov[2] = {{out, n / 2}, {out + n / 2, n - n / 2}};
    ssize_t got = drive_preadv(in, iov, 2, off);
    drive_close_shard(in);
    drive_close(d);
    fake_stop(&f);
    return got;
}

Test(remote, reads_take_only_a_well_framed_answer) {
    char b[16] = {0};
    cr_expect_eq(read_from("HTTP/1.1 206 Partial\r\nContent-Length: 10\r\n\r\n0123456789", 0, b, 10), 10);
    cr_expect_eq(memcmp(b, "0123456789", 10), 0);
    cr_expect_eq(read_from("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 0, b, 10), 10);
    /* A whole-shard 200 for a read from the middle is not the bytes asked for. */
    cr_expect_eq(read_from("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 4, b, 6), CAIRN_EIO);
    cr_expect_eq(read_from("HTTP/1.1 416 No\r\nContent-Length: 0\r\n\r\n", 4, b, 6), CAIRN_EIO);
    cr_expect_eq(read_from("HTTP/1.1 206 Partial\r\n\r\n0123456789", 0, b, 10), CAIRN_EIO);
    cr_expect_eq(read_from("HTTP/1.1 206 Partial\r\nContent-Length: 2\r\n\r\n0123456789", 0, b, 10), CAIRN_EIO);
    cr_expect_eq(read_from("HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\n\r\n", 0, b, 10), CAIRN_EIO);
    cr_expect_eq(read_from(NULL, 0, b, 10), CAIRN_EIO);
    /* Cut short: what came, then an error. */
    memset(b, 0, sizeof b);
    cr_expect_eq(read_from("HTTP/1.1 206 Partial\r\nContent-Length: 10\r\n\r\n0123", 0, b, 10), 4);
    cr_expect_eq(memcmp(b, "0123", 4), 0);
    cr_expect_eq(read_from("HTTP/1.1 206 Partial\r\nContent-Length: 10\r\n\r\n", 0, b, 10), CAIRN_EIO);
    /* Past the end: nothing, without asking. */
    cr_expect_eq(read_from(NULL, 10, b, 4), 0);
}

/* Uploads "abcd" to a fake answering PUT with put. */
static int upload_to(const char *put) {
    fake_node f;
    fake_init(&f);
    f.put = put;
    drive *d = fake_drive(&f);
    shard_out *o;
    cr_assert_eq(drive_create(d, SHARD_A, 4, &o), 0);
    struct iovec v = {(void *)"abcd", 4};
    cr_assert_eq(drive_append(o, &v, 1), 0);
    int rc = drive_commit(o);
    drive_close(d);
    fake_stop(&f);
    return rc;
}

Test(remote, an_upload_counts_only_when_the_node_says_created) {
    cr_expect_eq(upload_to("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"), 0);
    cr_expect_eq(upload_to("HTTP/1.1 507 Full\r\nContent-Length: 0\r\n\r\n"), CAIRN_ENOSPC);
    cr_expect_eq(upload_to("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), CAIRN_EIO);
    cr_expect_eq(upload_to("HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n"), CAIRN_EIO);
    cr_expect_eq(upload_to("HTTP/1.1 201\r\nContent-Length: x\r\n\r\n"), CAIRN_EIO);
    cr_expect_eq(upload_to(NULL), CAIRN_EIO);
}

static int delete_on(const char *del) {
    fake_node f;
    fake_init(&f);
    f.del = del;
    drive *d = fake_drive(&f);
    int rc = drive_remove(d, SHARD_A);
    drive_close(d);
    fake_stop(&f);
    return rc;
}

Test(remote, a_delete_succeeds_when_the_shard_is_gone) {
    cr_expect_eq(delete_on("HTTP/1.1 204 No Content\r\n\r\n"), 0);
    cr_expect_eq(delete_on("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), 0);
    cr_expect_eq(delete_on("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"), CAIRN_EIO);
    cr_expect_eq(delete_on("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), CAIRN_EIO);
    cr_expect_eq(delete_on(NULL), CAIRN_EIO);
}

/* Walks a fake whose listing pages are p0.. (NULL-ended); fills *w. */
static int walk_pages(const char *p0, const char *p1, const char *p2, walk_count *w) {
    fake_node f;
    fake_init(&f);
    f.list[0] = p0;
    f.list[1] = p1;
    f.list[2] = p2;
    drive *d = fake_drive(&f);
    *w = (walk_count){.ordered = true};
    int rc = drive_walk(d, count_entry, w);
    drive_close(d);
    fake_stop(&f);
    return rc;
}

#define ENTRY(name, age) "{\"name\":\"" name "\",\"age_ms\":" #age "}"

Test(remote, a_walk_pages_through_a_well_formed_listing) {
    walk_count w;
    cr_expect_eq(walk_pages(JSON_ANSWER("{\"shards\":[" ENTRY(SHARD_A, 5) "],\"truncated\":true}"),
                            JSON_ANSWER("{\"shards\":[{\"name\":\"" SHARD_B "\",\"age_s\":3}],\"truncated\":true}"),
                            JSON_ANSWER("{\"shards\":[],\"truncated\":true}"), &w), 0);
    cr_expect_eq(w.n, 2);
    cr_expect_str_eq(w.last, SHARD_B);
    cr_expect_eq(walk_pages(JSON_ANSWER("{\"shards\":[]}"), NULL, NULL, &w), 0);
    cr_expect_eq(w.n, 0);
}

Test(remote, a_walk_refuses_a_listing_it_cannot_trust) {
    walk_count w;
    const char *bad[] = {
        "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        JSON_ANSWER("not json"),
        JSON_ANSWER("{\"shards\":{}}"),
        JSON_ANSWER("[]"),
        JSON_ANSWER("{\"shards\":[{\"age_ms\":1}]}"),
        JSON_ANSWER("{\"shards\":[{\"name\":7,\"age_ms\":1}]}"),
        JSON_ANSWER("{\"shards\":[{\"name\":\"../etc\",\"age_ms\":1}]}"),
        JSON_ANSWER("{\"shards\":[{\"name\":\"" SHARD_A "\"}]}"),
        JSON_ANSWER("{\"shards\":[{\"name\":\"" SHARD_A "\",\"age_ms\":\"1\"}]}"),
        JSON_ANSWER("{\"shards\":[{\"name\":\"" SHARD_A "\",\"age_s\":1.5}]}"),
        JSON_ANSWER("{\"shards\":[" ENTRY(SHARD_B, 1) "," ENTRY(SHARD_A, 1) "]}"), /* out of order */
        JSON_ANSWER("{\"shards\":[" ENTRY(SHARD_A, 1) "," ENTRY(SHARD_A, 1) "]}"), /* repeated */
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(walk_pages(bad[i], NULL, NULL, &w), CAIRN_EIO, "case %zu", i);
    /* A second page that goes back to the first one's names would loop. */
    cr_expect_eq(walk_pages(JSON_ANSWER("{\"shards\":[" ENTRY(SHARD_B, 5) "],\"truncated\":true}"),
                            JSON_ANSWER("{\"shards\":[" ENTRY(SHARD_A, 5) "],\"truncated\":true}"), NULL, &w),
                 CAIRN_EIO);
    cr_expect_eq(w.n, 1);
    cr_expect_eq(walk_pages(JSON_ANSWER("{\"shards\":[" ENTRY(SHARD_A, 5) "],\"truncated\":true}"),
                            "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", NULL, &w),
                 CAIRN_EIO);
}

/* ---- the shard API over TLS ----------------------------------------------------------------- */

#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* A self-signed certificate for localhost, 127.0.0.1 and ::1 (its own CA),
 * as PEM strings the caller frees. */
static void make_cert(char **cert_pem, char **key_pem) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cr_assert(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"cairn test node", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    const char *ext[][2] = {{"subjectAltName", "DNS:localhost,IP:127.0.0.1,IP:::1"}, {"basicConstraints", "critical,CA:TRUE"},
                            {"keyUsage", "critical,digitalSignature,keyCertSign"}};
    for (size_t i = 0; i < 3; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, ext[i][0], ext[i][1]);
        cr_assert(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    cr_assert(X509_sign(x, key, EVP_sha256()));
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *cert_pem = strndup(p, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &p);
    *key_pem = strndup(p, (size_t)n);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* A node serving HTTPS with a certificate of its own; ca gets the path of
 * the CA file that verifies it, url the node's https URL. */
typedef struct {
    live_node ln;
    char ca[128], url[64];
    char *cert, *key;
} tls_node;

static void tls_node_up(tls_node *t) {
    memset(t, 0, sizeof *t);
    live_node *ln = &t->ln;
    snprintf(ln->dir, sizeof ln->dir, "/tmp/cairn-shard-api-XXXXXX");
    cr_assert(mkdtemp(ln->dir));
    char d0[96];
    snprintf(d0, sizeof d0, "%s/d0", ln->dir);
    const char *pv[1] = {d0};
    cr_assert_eq(node_server_new(pv, 1, false, SECRET, &ln->n, NULL), 0);
    make_cert(&t->cert, &t->key);
    snprintf(t->ca, sizeof t->ca, "%s/ca.pem", ln->dir);
    FILE *f = fopen(t->ca, "w");
    cr_assert(f);
    fputs(t->cert, f);
    fclose(f);
    /* localhost on both ends: the same address whichever family it is. */
    http_options ho = {.listen = "localhost:0", .connection_limit = 64, .connection_timeout = 10,
                       .max_header_bytes = 16384, .tls_cert_pem = t->cert, .tls_key_pem = t->key};
    char err[256];
    cr_assert_eq(http_server_start(&ho, node_http_handler(), ln->n, &ln->s, &ln->port, err, sizeof err), 0, "%s",
                 err);
    snprintf(t->url, sizeof t->url, "https://localhost:%d", ln->port);
    clock_past_start();
}

/* Stops the node if it still runs (s: NULL once stopped). */
static void tls_node_down(tls_node *t) {
    free(t->cert);
    free(t->key);
    http_server_stop(t->ln.s);
    node_server_free(t->ln.n);
    rm_tree(t->ln.dir);
}

Test(tls, the_client_verifies_the_node_and_speaks_through_tls) {
    tls_node t;
    tls_node_up(&t);
    live_node ln = t.ln;
    const char *url = t.url, *ca = t.ca;
    drive *d = NULL;
    /* Not trusted by the system's CAs; and not spoken to in plain HTTP. */
    cr_expect_eq(drive_remote_open(url, SECRET, "", 2000, &d), CAIRN_EIO);
    /* By name, through the CA that signed it. */
    cr_assert_eq(drive_remote_open(url, SECRET, ca, 2000, &d), 0);
    cr_expect_str_eq(drive_id(d), node_server_id(ln.n));
    cr_expect_str_eq(drive_path(d), url);
    shard_out *o;
    cr_assert_eq(drive_create(d, SHARD_A, 6, &o), 0);
    struct iovec v = {(void *)"secret", 6};
    cr_assert_eq(drive_append(o, &v, 1), 0);
    cr_assert_eq(drive_commit(o), 0);
    shard_in *in;
    cr_assert_eq(drive_open(d, SHARD_A, &in), 0);
    char got[8] = {0};
    struct iovec r = {got, 6};
    cr_expect_eq(drive_preadv(in, &r, 1, 0), 6);
    cr_expect_str_eq(got, "secret");
    drive_close_shard(in);
    walk_count w = {.ordered = true};
    cr_expect_eq(drive_walk(d, count_entry, &w), 0);
    cr_expect_eq(w.n, 1);
    drive_close(d);
    tls_node_down(&t);
}

/* A node that goes away in the middle of an upload over TLS: the next
 * writes fail with CAIRN_EIO (the store then counts that shard lost).  The
 * writes go through OpenSSL's socket BIO, which uses write(): a process that
 * left SIGPIPE at its default (cairn admin does) must not die of it, so this
 * test leaves it there. */
Test(tls, a_node_gone_mid_upload_fails_the_write_and_the_process_lives) {
    signal(SIGPIPE, SIG_DFL);
    tls_node t;
    tls_node_up(&t);
    drive *d = NULL;
    cr_assert_eq(drive_remote_open(t.url, SECRET, t.ca, 2000, &d), 0);
    static char chunk[1 << 16];
    memset(chunk, 'c', sizeof chunk);
    const int chunks = 256;
    shard_out *o;
    cr_assert_eq(drive_create(d, SHARD_A, (uint64_t)chunks * sizeof chunk, &o), 0);
    struct iovec v = {chunk, sizeof chunk};
    cr_assert_eq(drive_append(o, &v, 1), 0);
    http_server_stop(t.ln.s); /* closes every connection */
    t.ln.s = NULL;
    int rc = 0, i = 1;
    for (; i < chunks && rc == 0; i++) rc = drive_append(o, &v, 1);
    cr_expect_eq(rc, CAIRN_EIO, "%d chunks written to a node that is gone", i);
    cr_expect_eq(drive_append(o, &v, 1), CAIRN_EIO, "a failed upload takes nothing more");
    drive_abort(o);
    drive_close(d);
    tls_node_down(&t);
}

/* ---- the node's own failures and its start ---------------------------------------------- */

static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

Test(node, a_damaged_drive_answers_500_and_keeps_nothing) {
    live_node ln;
    node_up(&ln, 1);
    char p[256];
    /* A file where a fan-out directory belongs: the drive cannot be listed
     * (rather than listed as empty). */
    snprintf(p, sizeof p, "%s/d0/objects/00", ln.dir);
    put_file(p, "x");
    buf_t a;
    cr_expect_eq(call(&ln, "GET", "/v1/shards", NULL, &a), 500);
    cr_expect_str_eq(body_of(&a), "listing failed\n");
    buf_free(&a);
    /* ... and a shard cannot be committed under it. */
    snprintf(p, sizeof p, "%s/d0/objects/01", ln.dir);
    put_file(p, "x");
    cr_expect_eq(put_raw(&ln, SHARD_A, "abcd", 4, NULL), 500);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 404);
    /* A directory in a shard's place cannot be deleted. */
    snprintf(p, sizeof p, "%s/d0/objects/11", ln.dir);
    cr_assert_eq(mkdir(p, 0750), 0);
    snprintf(p, sizeof p, "%s/d0/objects/11/" SHARD_C, ln.dir);
    cr_assert_eq(mkdir(p, 0750), 0);
    snprintf(p, sizeof p, "%s/d0/objects/11/" SHARD_C "/x", ln.dir);
    put_file(p, "x");
    cr_expect_eq(call(&ln, "DELETE", "/v1/shards/" SHARD_C, NULL, NULL), 500);
    /* No temp directory (a file in its place): nothing can be created. */
    snprintf(p, sizeof p, "%s/d0/tmp", ln.dir);
    cr_assert_eq(rmdir(p), 0);
    put_file(p, "x");
    cr_expect_eq(put_raw(&ln, SHARD_B, "abcd", 4, NULL), 500);
    node_down(&ln);
}

Test(node, refuses_to_start_without_drives_or_a_real_secret) {
    node_server *n = NULL;
    const char *pv[1] = {"/tmp/cairn-shard-api-never"};
    cr_expect_eq(node_server_new(pv, 0, false, SECRET, &n, NULL), CAIRN_EINVAL);
    cr_expect_eq(node_server_new(pv, 65, false, SECRET, &n, NULL), CAIRN_EINVAL);
    cr_expect_eq(node_server_new(pv, 1, false, NULL, &n, NULL), CAIRN_EINVAL);
    cr_expect_eq(node_server_new(pv, 1, false, "short", &n, NULL), CAIRN_EINVAL);
    char *huge = malloc(4096);
    memset(huge, 's', 4095);
    huge[4095] = '\0';
    cr_expect_eq(node_server_new(pv, 1, false, huge, &n, NULL), CAIRN_EINVAL);
    free(huge);
    node_server_free(NULL);
}

/* Starts a node on a drive whose request-floor file already says floor;
 * returns the status of a request dated now. */
static int status_after_floor(const char *floor) {
    char dir[] = "/tmp/cairn-shard-api-floor-XXXXXX";
    cr_assert(mkdtemp(dir));
    char d0[96], p[160];
    snprintf(d0, sizeof d0, "%s/d0", dir);
    drive *ld;
    cr_assert_eq(drive_local_open(d0, false, &ld, NULL), 0);
    drive_close(ld);
    snprintf(p, sizeof p, "%s/request-floor", d0);
    put_file(p, floor);
    live_node ln;
    memset(&ln, 0, sizeof ln);
    snprintf(ln.dir, sizeof ln.dir, "%s", dir);
    const char *pv[1] = {d0};
    int cleaned = -1;
    cr_assert_eq(node_server_new(pv, 1, false, SECRET, &ln.n, &cleaned), 0);
    cr_expect_eq(cleaned, 0);
    http_options ho = {.listen = "127.0.0.1:0", .connection_limit = 8, .connection_timeout = 10, .max_header_bytes = 16384};
    char err[256];
    cr_assert_eq(http_server_start(&ho, node_http_handler(), ln.n, &ln.s, &ln.port, err, sizeof err), 0);
    rand_hex_id(ln.session, SHARD_SESSION_BYTES);
    clock_past_start();
    int st = call(&ln, "GET", "/v1/info", NULL, NULL);
    node_down(&ln);
    return st;
}

Test(node, a_request_floor_it_cannot_read_is_no_floor) {
    char ahead[32];
    snprintf(ahead, sizeof ahead, "%020lld\n", (long long)(time_now_ms() + 60000));
    cr_expect_eq(status_after_floor(ahead), 401); /* dated before what it admitted last run */
    cr_expect_eq(status_after_floor(""), 200);
    cr_expect_eq(status_after_floor("garbage\n"), 200);
    cr_expect_eq(status_after_floor("18446744073709551615\n"), 200); /* past int64 */
    cr_expect_eq(status_after_floor("00000000000000000001\n"), 200);
}

Test(node, lists_with_only_known_query_keys) {
    live_node ln;
    node_up(&ln, 1);
    cr_expect_eq(call(&ln, "GET", "/v1/shards?x=1", NULL, NULL), 400);
    cr_expect_eq(call(&ln, "GET", "/v1/shards?afterx=1", NULL, NULL), 400);
    cr_expect_eq(call(&ln, "GET", "/v1/shards?limit=1&after=" SHARD_A, NULL, NULL), 200);
    node_down(&ln);
}

Test(head, more_field_forms) {
    shard_head h;
    cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Lengtx: 5\r\n\r\n", &h), 0); /* not the length */
    cr_expect_eq(h.content_length, -1);
    cr_assert_eq(parse("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: " FAKE_ID "\r\nX-Cairn-Node-Id: " FAKE_ID "\r\n\r\n", &h), 0);
    cr_expect_str_eq(h.node_id, FAKE_ID);
    refused("HTTP/1.1 200 OK\r\nJustAName\r\n\r\n");
    refused("HTTP/1.1x200 OK\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-Cairn-Node-Id: 01234567\x01" "9abcdef\r\n\r\n");
    static const char s[] = "HTTP/1.1 200 OK\r\nA\0b: c\r\n\r\n";
    char *b = malloc(sizeof s - 1);
    memcpy(b, s, sizeof s - 1);
    cr_expect_eq(shard_head_parse(b, sizeof s - 1, &h), CAIRN_EINVAL);
    free(b);
}

Test(replay, evicting_a_session_older_than_the_floor_keeps_the_floor) {
    node_replay *rp = table(2, T0);
    unsigned char a[SHARD_SESSION_BYTES], b[SHARD_SESSION_BYTES], c[SHARD_SESSION_BYTES], d[SHARD_SESSION_BYTES];
    session_id(a, 20);
    session_id(b, 21);
    session_id(c, 22);
    session_id(d, 23);
    cr_assert_eq(node_replay_admit(rp, a, 1, T0 + 500), 0);
    cr_assert_eq(node_replay_admit(rp, b, 1, T0 + 100), 0);
    cr_assert_eq(node_replay_admit(rp, c, 1, T0 + 600), 0); /* evicts a: the floor is its newest */
    cr_expect_eq(node_replay_floor(rp), T0 + 500);
    cr_assert_eq(node_replay_admit(rp, d, 1, T0 + 700), 0); /* evicts b, older than the floor */
    cr_expect_eq(node_replay_floor(rp), T0 + 500);
    node_replay_free(rp);
}

Test(remote, a_short_partial_answer_makes_the_next_read_ask_again) {
    fake_node f;
    fake_init(&f);
    f.head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    f.get = "HTTP/1.1 206 Partial\r\nContent-Length: 4\r\n\r\nabcd"; /* 4 of the 10 asked */
    drive *d = fake_drive(&f);
    shard_in *in = NULL;
    cr_assert_eq(drive_open(d, SHARD_A, &in), 0);
    char b[8] = {0};
    struct iovec v = {b, 8};
    cr_expect_eq(drive_preadv(in, &v, 1, 0), 4); /* what the answer had */
    cr_expect_eq(memcmp(b, "abcd", 4), 0);
    v.iov_len = 4;
    cr_expect_eq(drive_preadv(in, &v, 1, 4), 4); /* the answer is used up: a new GET */
    drive_close_shard(in);
    drive_close(d);
    fake_stop(&f);
    cr_expect_eq(f.gets, 2);
}

Test(remote, https_to_a_node_that_speaks_plain_http_fails) {
    fake_node f;
    fake_init(&f);
    f.greeting = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
    fake_start(&f);
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", f.port);
    drive *d = NULL;
    cr_expect_eq(drive_remote_open(url, SECRET, NULL, 2000, &d), CAIRN_EIO);
    fake_stop(&f);
}

#include <microhttpd.h>

static int files_in(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- the node's handler, handed what the HTTP layer never passes on ------------------------ */

/* A PUT as the HTTP layer hands it to the handler, signed for the live node. */
typedef struct {
    http_req r;
    char target[96], date[24], nonce[SHARD_NONCE_MAX], sig[65];
} handed_req;

static void hand_put(live_node *ln, handed_req *h, const char *name, int64_t len) {
    memset(h, 0, sizeof *h);
    snprintf(h->target, sizeof h->target, "/v1/shards/%s", name);
    snprintf(h->date, sizeof h->date, "%lld", (long long)time_now_ms());
    snprintf(h->nonce, sizeof h->nonce, "%s.%llu", ln->session, (unsigned long long)++ln->seq);
    cr_assert_eq(shard_sign(SECRET, node_server_id(ln->n), "PUT", h->target, h->date, h->nonce, len, h->sig), 0);
    http_req *r = &h->r;
    strcpy(r->request_id, "handed-request");
    strcpy(r->method, "PUT");
    r->raw_path = h->target;
    r->raw_query = "";
    r->content_length = len;
    r->start_ns = time_mono_ns();
    const char *names[] = {"X-Cairn-Date", "X-Cairn-Nonce", "X-Cairn-Signature"};
    const char *values[] = {h->date, h->nonce, h->sig};
    for (int i = 0; i < 3; i++)
        r->headers[i] = (header_field){names[i], strlen(names[i]), values[i], strlen(values[i])};
    r->nheaders = 3;
    buf_init(&r->resp_headers_);
    node_http_handler()->begin(ln->n, r);
    cr_assert_not(http_responded(r), "the handler refused a good head: %u", http_status(r));
}

/* Ends the request as the HTTP layer does, and frees its response. */
static void hand_done(live_node *ln, handed_req *h) {
    node_http_handler()->done(ln->n, &h->r, http_responded(&h->r));
    cr_expect_null(h->r.ctx);
    if (h->r.resp_) MHD_destroy_response(h->r.resp_);
    buf_free(&h->r.resp_headers_);
}

/* The HTTP layer passes on no more than Content-Length announced, and ends
 * a request only once all of it came; the handler does not count on that:
 * a body longer than announced is refused before a byte of it lands past
 * the tag's buffer, and one cut short is refused at its end, each 400 with
 * nothing of the shard kept. */
Test(node, the_handler_refuses_a_body_other_than_announced_whatever_it_is_handed) {
    live_node ln;
    node_up(&ln, 1);
    char body[64];
    memset(body, 'b', sizeof body);
    const int64_t len = 4 + SHARD_TAG_LEN;
    handed_req h;
    hand_put(&ln, &h, SHARD_A, len);
    node_http_handler()->body(ln.n, &h.r, body, 2);
    cr_assert_not(http_responded(&h.r));
    node_http_handler()->body(ln.n, &h.r, body, (size_t)len - 1);
    cr_expect_eq(http_status(&h.r), 400, "a body past its length");
    node_http_handler()->body(ln.n, &h.r, body, 1); /* more after the answer: ignored */
    hand_done(&ln, &h);

    hand_put(&ln, &h, SHARD_B, len);
    node_http_handler()->body(ln.n, &h.r, body, (size_t)len - 1);
    node_http_handler()->end(ln.n, &h.r);
    cr_expect_eq(http_status(&h.r), 400, "a body short of its length");
    hand_done(&ln, &h);

    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 404);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_B, NULL, NULL), 404);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/d0/tmp", ln.dir);
    cr_expect_eq(files_in(tmp), 0, "a refused body left its temp file");
    cr_expect_eq(put_raw(&ln, SHARD_A, "abcd", 4, NULL), 201, "the next upload is taken");
    node_down(&ln);
}

#if CAIRN_FAULT_BUILD

/* A drive write that fails mid-upload (the fault build's data.write site):
 * 507 when the drive is full, 500 for any other error, and nothing of the
 * shard is kept, neither the shard nor its temp file. */
Test(node, a_drive_write_that_fails_answers_507_or_500_and_keeps_nothing) {
    live_node ln;
    node_up(&ln, 1);
    cr_assert_eq(fault_configure("sites=data.write\nnth=1\nerrno=ENOSPC"), 0);
    cr_expect_eq(put_raw(&ln, SHARD_A, "abcd", 4, NULL), 507, "a full drive");
    cr_assert_eq(fault_configure("sites=data.write\nnth=1\nerrno=EIO"), 0);
    cr_expect_eq(put_raw(&ln, SHARD_B, "abcd", 4, NULL), 500, "an I/O error");
    cr_assert_eq(fault_configure(""), 0);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 404);
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_B, NULL, NULL), 404);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/d0/tmp", ln.dir);
    cr_expect_eq(files_in(tmp), 0, "a failed upload left its temp file");
    cr_expect_eq(put_raw(&ln, SHARD_A, "abcd", 4, NULL), 201, "the drive takes the next upload");
    node_down(&ln);
}

#include "fault_harness.h"

/* The request floor, as the node's first drive holds it (0: none yet). */
static long long floor_in(const live_node *ln) {
    char p[160], b[32] = {0};
    snprintf(p, sizeof p, "%s/d0/request-floor", ln->dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    size_t got = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    return got ? atoll(b) : 0;
}

/* The floor (the newest date admitted, for the next start to refuse
 * anything older) is recorded without a sync and only as a precaution
 * against a clock set back: a write of it that fails (the fault build's
 * node.floor site) is logged and the requests are served all the same;
 * the next request whose write works records it. */
Test(node, a_floor_that_cannot_be_recorded_is_logged_and_serving_goes_on) {
    log_capture();
    live_node ln;
    node_up(&ln, 1);
    long long before = floor_in(&ln);
    cr_assert_eq(ftruncate(log_fd, 0), 0);
    cr_assert_eq(fault_configure("sites=node.floor\nnth=1\ncount=0"), 0);
    cr_expect_eq(put_raw(&ln, SHARD_A, "abcd", 4, NULL), 201);
    buf_t a;
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_A, NULL, &a), 200);
    cr_expect_str_eq(body_of(&a), "abcd");
    buf_free(&a);
    cr_assert_eq(fault_configure(""), 0);
    cr_expect_geq(injected_at("node.floor"), 1);
    cr_expect_eq(logged_times("\"msg\":\"cannot record the request floor\""), injected_at("node.floor"));
    cr_expect_eq(floor_in(&ln), before, "a floor written while its writes fail");
    clock_past_start();
    cr_expect_eq(call(&ln, "HEAD", "/v1/shards/" SHARD_A, NULL, NULL), 200);
    cr_expect_gt(floor_in(&ln), before, "the floor is recorded again once it can be");
    node_down(&ln);
}

#if ALLOC_FAILURES

/* Sends raw on a connection made before the loop armed anything and reads
 * the answer into ans (NUL-terminated), allocating nothing; the status, 0
 * when the node closed without one. */
static int exchange_fixed(int fd, const char *raw, size_t rawlen, char *ans, size_t cap) {
    send_bytes(fd, raw, rawlen);
    shutdown(fd, SHUT_WR);
    size_t got = 0;
    ssize_t r;
    while (got < cap - 1 && (r = recv(fd, ans + got, cap - 1 - got, 0)) > 0) got += (size_t)r;
    ans[got] = '\0';
    close(fd);
    return got >= 12 && !memcmp(ans, "HTTP/1.", 7) ? atoi(ans + 9) : 0;
}

static const char *answer_body(const char *ans) {
    const char *p = strstr(ans, "\r\n\r\n");
    return p ? p + 4 : "";
}

/* A request made again and again with the nth allocation of the process
 * failing (the node's own, MHD's and OpenSSL's under it), n = 1, 2, ...
 * until one run no longer reaches the nth.  Every answer must be the right
 * one (want_status, and want_body if given), an error, or a closed
 * connection.  Returns how often the node answered oom_status saying
 * "out of memory". */
typedef void (*make_request)(live_node *ln, buf_t *out);

static int loop_allocs(live_node *ln, make_request make, int want_status, const char *want_body, int oom_status) {
    static char ans[65536];
    int oom = 0, n = 1;
    failing = FAIL_ALLOC;
    for (; n < 20000; n++) {
        buf_t req;
        make(ln, &req);
        int fd = dial(ln->port);
        alloc_arm(n);
        int st = exchange_fixed(fd, req.data, req.len, ans, sizeof ans);
        bool hit = alloc_hit();
        alloc_arm(0);
        buf_free(&req);
        if (st == oom_status && !strcmp(answer_body(ans), "out of memory\n")) oom++;
        else if (st == want_status && want_body)
            cr_assert_str_eq(answer_body(ans), want_body, "allocation %d failing: other bytes", n);
        else cr_assert(st == 0 || st == want_status || st >= 500, "allocation %d failing: %d %s", n, st, ans);
        if (!hit) {
            cr_assert_eq(st, want_status, "nothing failing: %s", ans);
            break;
        }
    }
    failing = FAIL_IO;
    cr_assert_lt(n, 20000);
    return oom;
}

#define LOOP_BYTES "the shard's bytes, stored and served out of memory or not"

static void get_request(live_node *ln, buf_t *out) { signed_head(ln, "GET", "/v1/shards/" SHARD_A, NULL, out); }

static void put_request_b(live_node *ln, buf_t *out) {
    put_request(ln, SHARD_B, LOOP_BYTES, strlen(LOOP_BYTES), NULL, out);
}

/* Out of memory, a node serving a shard answers 500 "out of memory" (or
 * MHD drops the connection) and serves the next request whole; one taking
 * a shard answers 503 where it cannot make the body's tag context, and
 * keeps nothing of a shard it did not take. */
Test(node_allocs, a_node_out_of_memory_answers_an_error_and_keeps_nothing_half_made, .timeout = 600) {
    log_capture();
    live_node ln;
    node_up(&ln, 1);
    cr_assert_eq(put_raw(&ln, SHARD_A, LOOP_BYTES, strlen(LOOP_BYTES), NULL), 201);
    /* The nth allocation is the process's: the node's threads and MHD's
     * allocate beside the request, so which one fails shifts from run to
     * run (under load a whole loop can miss the node's own).  Every answer
     * is checked on each pass; a pass with no "out of memory" is run again. */
    int oom = 0;
    for (int pass = 0; pass < 3 && oom == 0; pass++) oom = loop_allocs(&ln, get_request, 200, LOOP_BYTES, 500);
    cr_expect_gt(oom, 0, "serving never ran out of memory");
    oom = 0;
    for (int pass = 0; pass < 3 && oom == 0; pass++) oom = loop_allocs(&ln, put_request_b, 201, NULL, 503);
    cr_expect_gt(oom, 0, "taking a shard never ran out of memory");
    buf_t a;
    cr_expect_eq(call(&ln, "GET", "/v1/shards/" SHARD_B, NULL, &a), 200);
    cr_expect_str_eq(body_of(&a), LOOP_BYTES);
    buf_free(&a);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/d0/tmp", ln.dir);
    cr_expect_eq(files_in(tmp), 0, "a failed upload left its temp file");
    node_down(&ln);
}

#endif /* ALLOC_FAILURES */
#endif
