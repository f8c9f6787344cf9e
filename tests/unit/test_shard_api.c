/*
 * test_shard_api.c — the shard API's shared pieces (src/data/node.h): the
 * parser of a node's response head (untrusted input for the gateway), the
 * nonce parser, the request signature and the node's replay table.
 *
 * Heads are parsed from malloc'd buffers of exactly their length, so an ASan
 * build catches any read past the end; every refusal rule of node.h has a
 * case.  The replay table is driven as a node drives it: admissions of
 * (session, sequence number, date), in order, out of order, repeated, too
 * far behind, across evictions and from many threads at once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "data/node.h"

/* ---- response heads -------------------------------------------------------------------- */

/* Parses s from a buffer of exactly strlen(s) bytes. */
static int parse(const char *s, node_head *h) {
    size_t n = strlen(s);
    char *b = malloc(n ? n : 1);
    cr_assert(b);
    memcpy(b, s, n);
    int rc = node_head_parse(b, n, h);
    free(b);
    return rc;
}

static void refused(const char *s) {
    node_head h;
    cr_expect_eq(parse(s, &h), CAIRN_EINVAL, "accepted: %s", s);
}

Test(head, a_good_head_with_its_body_after_it) {
    const char *s = "HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nX-Cairn-Node-Id: 0123456789abcdef\r\n"
                    "Content-Range: bytes 0-4/10\r\n\r\nhello";
    node_head h;
    cr_assert_eq(parse(s, &h), 0);
    cr_expect_eq(h.status, 206);
    cr_expect_eq(h.content_length, 5);
    cr_expect_eq(h.head_len, strlen(s) - 5);
    cr_expect_str_eq(h.node_id, "0123456789abcdef");
}

Test(head, minimal_forms) {
    node_head h;
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
    cr_expect_eq(h.content_length, NODE_MAX_CONTENT_LENGTH);
}

Test(head, every_prefix_of_a_head_asks_for_more) {
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: cairn\r\n\r\n";
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        char *b = malloc(i ? i : 1);
        memcpy(b, s, i);
        node_head h;
        cr_expect_eq(node_head_parse(b, i, &h), 0, "prefix %zu", i);
        cr_expect_eq(h.head_len, 0, "prefix %zu", i);
        free(b);
    }
    node_head h;
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
    node_head h;
    char *b = malloc(sizeof s - 1);
    memcpy(b, s, sizeof s - 1);
    cr_expect_eq(node_head_parse(b, sizeof s - 1, &h), CAIRN_EINVAL);
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
    size_t n = NODE_HEAD_MAX + 100;
    char *b = malloc(n);
    memcpy(b, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(b + 20, 'a', n - 20);
    node_head h;
    cr_expect_eq(node_head_parse(b, NODE_HEAD_MAX - 1, &h), 0);
    cr_expect_eq(h.head_len, 0);
    cr_expect_eq(node_head_parse(b, NODE_HEAD_MAX, &h), CAIRN_EINVAL);
    cr_expect_eq(node_head_parse(b, n, &h), CAIRN_EINVAL);
    /* The end just past the limit does not count either. */
    memcpy(b + NODE_HEAD_MAX - 2, "\r\n\r\n", 4);
    cr_expect_eq(node_head_parse(b, n, &h), CAIRN_EINVAL);
    memcpy(b + NODE_HEAD_MAX - 4, "\r\n\r\n", 4);
    cr_expect_eq(node_head_parse(b, n, &h), 0);
    cr_expect_eq(h.head_len, NODE_HEAD_MAX);
    free(b);
}

/* ---- nonces and signatures --------------------------------------------------------------- */

#define SESSION "00112233445566778899aabbccddeeff"

Test(nonce, parses_strictly) {
    unsigned char s[NODE_SESSION_BYTES];
    uint64_t seq = 0;
    cr_assert_eq(node_nonce_parse(SESSION ".42", s, &seq), 0);
    cr_expect_eq(seq, 42);
    cr_expect_eq(s[0], 0x00);
    cr_expect_eq(s[15], 0xff);
    cr_assert_eq(node_nonce_parse(SESSION ".18446744073709551615", s, &seq), 0);
    cr_expect_eq(seq, UINT64_MAX);
    cr_assert_eq(node_nonce_parse(SESSION ".0", s, &seq), 0);
    const char *bad[] = {SESSION ".18446744073709551616", SESSION ".042", SESSION ".", SESSION, SESSION ".1x",
                         SESSION ".-1", SESSION ".+1", SESSION ". 1", SESSION "0.1",
                         "00112233445566778899AABBCCDDEEFF.1", "0011223344556677889aabbccddeeff.1",
                         SESSION ".123456789012345678901", "", "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(node_nonce_parse(bad[i], s, &seq), CAIRN_EINVAL, "accepted %s", bad[i]);
}

static void hmac_hex(const char *key, const char *msg, char out[65]) {
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), mac, &len);
    hex_encode(mac, 32, out);
}

Test(sign, signs_the_documented_string) {
    char got[65], want[65];
    cr_assert_eq(node_sign("the-cluster-secret", "0123456789abcdef", "PUT", "/v1/shards/x.1", "1700000000000",
                           SESSION ".7", 1040, got), 0);
    hmac_hex("the-cluster-secret",
             "CAIRN-SHARD-2\n0123456789abcdef\nPUT\n/v1/shards/x.1\n1700000000000\n" SESSION ".7\n1040", want);
    cr_expect_str_eq(got, want);
    /* No body is not a zero-length body. */
    cr_assert_eq(node_sign("the-cluster-secret", "0123456789abcdef", "GET", "/v1/info", "1", SESSION ".8", -1, got),
                 0);
    hmac_hex("the-cluster-secret", "CAIRN-SHARD-2\n0123456789abcdef\nGET\n/v1/info\n1\n" SESSION ".8\n", want);
    cr_expect_str_eq(got, want);
    /* The body key is an HMAC of the signature. */
    unsigned char key[32];
    node_body_key("the-cluster-secret", got, key);
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
    cr_expect_eq(node_sign("the-cluster-secret", "0123456789abcdef", "GET", target, "1", SESSION ".1", -1, sig),
                 CAIRN_EINVAL);
    free(target);
}

/* ---- the replay table --------------------------------------------------------------------- */

#define T0 1700000000000LL

static void session_id(unsigned char id[NODE_SESSION_BYTES], int n) {
    memset(id, 0, NODE_SESSION_BYTES);
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
    unsigned char s[NODE_SESSION_BYTES];
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
        unsigned char s[NODE_SESSION_BYTES];
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
    unsigned char s[NODE_SESSION_BYTES];
    session_id(s, 3);
    cr_expect_eq(node_replay_admit(rp, s, 1, T0 - 5), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, s, 1, T0), CAIRN_EAUTH);
    cr_expect_eq(node_replay_admit(rp, s, 1, T0 + 1), 0);
    cr_expect_eq(node_replay_floor(rp), T0);
    node_replay_free(rp);
}

Test(replay, eviction_forgets_the_least_recent_session_and_raises_the_floor) {
    node_replay *rp = table(2, T0);
    unsigned char a[NODE_SESSION_BYTES], b[NODE_SESSION_BYTES], c[NODE_SESSION_BYTES];
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
    unsigned char s[NODE_SESSION_BYTES];
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
    unsigned char s[NODE_SESSION_BYTES];
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
