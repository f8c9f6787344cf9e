/*
 * test_chunked.c — the aws-chunked decoder against AWS's published streaming
 * examples (65 KiB of 'a' in a 64 KiB and a 1 KiB chunk, with and without a
 * signed checksum trailer), plus every framing and signature failure, and the
 * streaming property: however the body is split, the output is the same.
 *
 * Streams the examples do not cover are built by a small signer written here
 * straight from the documented string-to-sign (OpenSSL HMAC, not the decoder's
 * code); that signer is first checked against the published chunk signatures.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/auth.h"

#define NH_CASES(a) (sizeof(a) / sizeof((a)[0]))
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG_FINAL "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"

#define T_SEED "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define T_SIG1 "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
#define T_SIG2 "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
#define T_SIG_FINAL "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define T_TRAILER_SIG "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

static sigv4_auth auth_for(sigv4_payload p, const char *seed) {
    sigv4_auth a;
    memset(&a, 0, sizeof a);
    a.kind = SIGV4_HEADER;
    strcpy(a.access_key, "AKIAIOSFODNN7EXAMPLE");
    strcpy(a.date, "20130524");
    strcpy(a.amz_date, AMZ_DATE);
    strcpy(a.region, "us-east-1");
    strcpy(a.service, "s3");
    strcpy(a.signed_headers, "host");
    strcpy(a.signature, seed);
    a.payload = p;
    return a;
}

/* ---- an independent signer for building streams ------------------------- */

static void hmac(const void *k, size_t kl, const char *m, size_t ml, unsigned char out[32]) {
    unsigned int l = 32;
    HMAC(EVP_sha256(), k, (int)kl, (const unsigned char *)m, ml, out, &l);
}

static void to_hex(const unsigned char *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static void sha_hex(const void *p, size_t n, char out[65]) {
    unsigned char h[32];
    unsigned int l;
    EVP_Digest(p, n, h, &l, EVP_sha256(), NULL);
    to_hex(h, 32, out);
}

static void test_key(unsigned char key[32]) {
    unsigned char a[32], b[32];
    const char *k = "AWS4" SECRET;
    hmac(k, strlen(k), "20130524", 8, a);
    hmac(a, 32, "us-east-1", 9, b);
    hmac(b, 32, "s3", 2, a);
    hmac(a, 32, "aws4_request", 12, key);
}

/* Signs the next link; prev is updated to the new signature. */
static void sign_link(const char *algo, char prev[65], const char *hash_lines) {
    unsigned char key[32], mac[32];
    char sts[512];
    test_key(key);
    snprintf(sts, sizeof sts, "%s\n" AMZ_DATE "\n" SCOPE "\n%s\n%s", algo, prev, hash_lines);
    hmac(key, 32, sts, strlen(sts), mac);
    to_hex(mac, 32, prev);
}

static void sign_chunk(char prev[65], const char *data, size_t n) {
    char h[65], lines[140];
    sha_hex(data, n, h);
    snprintf(lines, sizeof lines, EMPTY_SHA "\n%s", h);
    sign_link("AWS4-HMAC-SHA256-PAYLOAD", prev, lines);
}

/* Builds a signed aws-chunked body of data cut into chunks of chunk bytes;
 * trailers (canonical "name:value\n" lines) are signed when not NULL. */
static void build_signed(buf_t *out, const char *seed, const char *data, size_t n, size_t chunk,
                         const char *trailers) {
    char prev[65];
    strcpy(prev, seed);
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        sign_chunk(prev, data + off, len);
        buf_printf(out, "%zx;chunk-signature=%s\r\n", len, prev);
        buf_append(out, data + off, len);
        buf_puts(out, "\r\n");
    }
    sign_chunk(prev, "", 0);
    buf_printf(out, "0;chunk-signature=%s\r\n", prev);
    if (trailers) {
        char h[65];
        sha_hex(trailers, strlen(trailers), h);
        sign_link("AWS4-HMAC-SHA256-TRAILER", prev, h);
        for (const char *s = trailers; *s;) { /* each "\n" becomes "\r\n" on the wire */
            const char *nl = strchr(s, '\n');
            buf_append(out, s, (size_t)(nl - s));
            buf_puts(out, "\r\n");
            s = nl + 1;
        }
        buf_printf(out, "x-amz-trailer-signature:%s\r\n", prev);
    }
    buf_puts(out, "\r\n");
}

/* ---- decoding helpers -------------------------------------------------- */

static int collect(void *ud, const char *p, size_t n) {
    buf_append(ud, p, n);
    return 0;
}

typedef struct {
    int feed_rc, finish_rc;
    const char *code;
    buf_t out;
    uint64_t decoded;
    char tname[128], tvalue[512];
} result;

/* Decodes body fed in pieces of step bytes (0 = all at once). */
static result decode(const sigv4_auth *a, const char *secret, const char *body, size_t n,
                     size_t step) {
    result r;
    memset(&r, 0, sizeof r);
    buf_init(&r.out);
    chunked_decoder *d = chunked_new(a, secret);
    cr_assert_not_null(d);
    if (step == 0) step = n ? n : 1;
    for (size_t off = 0; off < n && r.feed_rc == 0; off += step) {
        size_t len = n - off < step ? n - off : step;
        r.feed_rc = chunked_feed(d, body + off, len, collect, &r.out, &r.code);
    }
    if (r.feed_rc == 0) r.finish_rc = chunked_finish(d, &r.code);
    r.decoded = chunked_decoded_bytes(d);
    if (chunked_trailer_name(d)) {
        strcpy(r.tname, chunked_trailer_name(d));
        strcpy(r.tvalue, chunked_trailer_value(d));
    }
    chunked_free(d);
    return r;
}

static int rc_of(const result *r) { return r->feed_rc ? r->feed_rc : r->finish_rc; }

static char *as(size_t n) {
    char *p = malloc(n + 1);
    memset(p, 'a', n);
    p[n] = 0;
    return p;
}

/* The published example body, with the final chunk line given by the caller. */
static void aws_body(buf_t *b, const char *s1, const char *s2, const char *sf, const char *tail) {
    char *a1 = as(65536);
    buf_printf(b, "10000;chunk-signature=%s\r\n", s1);
    buf_append(b, a1, 65536);
    buf_printf(b, "\r\n400;chunk-signature=%s\r\n", s2);
    buf_append(b, a1, 1024);
    buf_printf(b, "\r\n0;chunk-signature=%s\r\n%s", sf, tail);
    free(a1);
}

static void assert_aaa(const result *r, size_t n) {
    cr_assert_eq(rc_of(r), 0, "rc %d code %s", rc_of(r), r->code ? r->code : "-");
    cr_assert_eq(r->out.len, n);
    cr_assert_eq(r->decoded, n);
    for (size_t i = 0; i < n; i++)
        if (r->out.data[i] != 'a') cr_assert_fail("byte %zu is not 'a'", i);
}

/* ---- the published examples ------------------------------------------- */

Test(chunked, test_signer_matches_published_chunk_signatures) {
    char prev[65] = SEED;
    char *a = as(65536);
    sign_chunk(prev, a, 65536);
    cr_assert_str_eq(prev, SIG1);
    sign_chunk(prev, a, 1024);
    cr_assert_str_eq(prev, SIG2);
    sign_chunk(prev, "", 0);
    cr_assert_str_eq(prev, SIG_FINAL);
    strcpy(prev, T_SEED);
    sign_chunk(prev, a, 65536);
    cr_assert_str_eq(prev, T_SIG1);
    sign_chunk(prev, a, 1024);
    cr_assert_str_eq(prev, T_SIG2);
    sign_chunk(prev, "", 0);
    cr_assert_str_eq(prev, T_SIG_FINAL);
    char h[65];
    sha_hex("x-amz-checksum-crc32c:sOO8/Q==\n", 31, h);
    sign_link("AWS4-HMAC-SHA256-TRAILER", prev, h);
    cr_assert_str_eq(prev, T_TRAILER_SIG);
    free(a);
}

Test(chunked, aws_signed_example_one_shot) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    buf_t b;
    buf_init(&b);
    aws_body(&b, SIG1, SIG2, SIG_FINAL, "\r\n");
    cr_assert_eq(b.len, 66824, "Content-Length of the published example");
    result r = decode(&a, SECRET, b.data, b.len, 0);
    assert_aaa(&r, 66560);
    cr_assert_str_eq(r.tname, "", "no trailer");
    buf_free(&r.out);
    buf_free(&b);
}

Test(chunked, aws_signed_example_byte_by_byte_and_odd_splits) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    buf_t b;
    buf_init(&b);
    aws_body(&b, SIG1, SIG2, SIG_FINAL, "\r\n");
    size_t steps[] = {1, 2, 3, 7, 85, 86, 87, 4096, 65621, 65622};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        result r = decode(&a, SECRET, b.data, b.len, steps[i]);
        assert_aaa(&r, 66560);
        buf_free(&r.out);
    }
    buf_free(&b);
}

Test(chunked, aws_signed_trailer_example_layouts) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED_TRAILER, T_SEED);
    const char *tails[] = {
        /* what SDKs send */
        "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG "\r\n\r\n",
        /* the documentation's layout, an empty line before the trailers */
        "\r\nx-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG "\r\n",
        /* no closing line at all */
        "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG,
        /* bare LF line ends */
        "x-amz-checksum-crc32c:sOO8/Q==\nx-amz-trailer-signature:" T_TRAILER_SIG "\n\n",
    };
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        buf_t b;
        buf_init(&b);
        aws_body(&b, T_SIG1, T_SIG2, T_SIG_FINAL, tails[i]);
        for (size_t step = 0; step < 2; step++) {
            result r = decode(&a, SECRET, b.data, b.len, step);
            assert_aaa(&r, 66560);
            cr_assert_str_eq(r.tname, "x-amz-checksum-crc32c", "layout %zu", i);
            cr_assert_str_eq(r.tvalue, "sOO8/Q==");
            buf_free(&r.out);
        }
        buf_free(&b);
    }
}

Test(chunked, aws_trailer_example_seed_request) {
    /* The seed signature of the trailer example is the request's signature. */
    static const char *names[] = {"Host", "x-amz-date", "x-amz-storage-class",
                                  "x-amz-content-sha256", "Content-Encoding",
                                  "x-amz-decoded-content-length", "x-amz-trailer",
                                  "Content-Length"};
    static const char *vals[] = {"s3.amazonaws.com", AMZ_DATE, "REDUCED_REDUNDANCY",
                                 "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "aws-chunked",
                                 "66560", "x-amz-checksum-crc32c", "66824"};
    auth_header h[9];
    for (int i = 0; i < 8; i++)
        h[i] = (auth_header){names[i], strlen(names[i]), vals[i], strlen(vals[i])};
    const char *authz = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                        "aws4_request,SignedHeaders=content-encoding;host;"
                        "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                        "x-amz-storage-class;x-amz-trailer,Signature=" T_SEED;
    h[8] = (auth_header){"Authorization", 13, authz, strlen(authz)};
    sigv4_request rq = {.method = "PUT", .raw_path = "/examplebucket/chunkObject.txt",
                        .raw_query = "", .headers = h, .nheaders = 9};
    sigv4_auth a;
    const char *code, *msg;
    cr_assert_eq(sigv4_parse(&rq, &a, &code, &msg), 0);
    cr_assert_eq(a.payload, PAYLOAD_STREAMING_SIGNED_TRAILER);
    cr_assert_eq(sigv4_verify(&rq, &a, SECRET, 1369353600, 900, &code, &msg), 0, "%s",
                 code ? code : "-");
    /* And the decoder chains from what verify accepted. */
    buf_t b;
    buf_init(&b);
    aws_body(&b, T_SIG1, T_SIG2, T_SIG_FINAL,
             "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG "\r\n\r\n");
    result r = decode(&a, SECRET, b.data, b.len, 0);
    assert_aaa(&r, 66560);
    buf_free(&r.out);
    buf_free(&b);
}

/* ---- signature failures ------------------------------------------------- */

Test(chunked, tampered_data_fails) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    buf_t b;
    buf_init(&b);
    aws_body(&b, SIG1, SIG2, SIG_FINAL, "\r\n");
    b.data[86 + 30000] = 'b'; /* inside the first chunk's data */
    for (size_t step = 0; step < 2; step++) {
        result r = decode(&a, SECRET, b.data, b.len, step);
        cr_assert_eq(r.feed_rc, CAIRN_EAUTH);
        cr_assert_str_eq(r.code, "SignatureDoesNotMatch");
        buf_free(&r.out);
    }
    buf_free(&b);
}

Test(chunked, wrong_signatures_fail) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    struct {
        const char *s1, *s2, *sf;
    } cases[] = {
        {SIG2, SIG2, SIG_FINAL},                                                 /* wrong first */
        {SIG1, SIG1, SIG_FINAL},                                                 /* replayed sig */
        {SIG1, SIG2, SIG1},                                                      /* wrong final */
        {SIG1, SIG2, "0000000000000000000000000000000000000000000000000000000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b;
        buf_init(&b);
        aws_body(&b, cases[i].s1, cases[i].s2, cases[i].sf, "\r\n");
        result r = decode(&a, SECRET, b.data, b.len, 0);
        cr_assert_eq(rc_of(&r), CAIRN_EAUTH, "case %zu", i);
        cr_assert_str_eq(r.code, "SignatureDoesNotMatch");
        buf_free(&r.out);
        buf_free(&b);
    }
    /* Right stream, wrong secret; and a seed that verify did not produce. */
    buf_t b;
    buf_init(&b);
    aws_body(&b, SIG1, SIG2, SIG_FINAL, "\r\n");
    result r = decode(&a, "wrong-secret", b.data, b.len, 0);
    cr_assert_eq(rc_of(&r), CAIRN_EAUTH);
    buf_free(&r.out);
    sigv4_auth other = auth_for(PAYLOAD_STREAMING_SIGNED, T_SEED);
    r = decode(&other, SECRET, b.data, b.len, 0);
    cr_assert_eq(rc_of(&r), CAIRN_EAUTH);
    buf_free(&r.out);
    buf_free(&b);
}

Test(chunked, signed_trailer_failures) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED_TRAILER, T_SEED);
    struct {
        const char *tail;
        int rc;
        const char *code;
    } cases[] = {
        {"x-amz-checksum-crc32c:sOO8/Q=A\r\nx-amz-trailer-signature:" T_TRAILER_SIG "\r\n\r\n",
         CAIRN_EAUTH, "SignatureDoesNotMatch"},
        {"x-amz-checksum-crc32:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG "\r\n\r\n",
         CAIRN_EAUTH, "SignatureDoesNotMatch"},
        {"x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n", CAIRN_EAUTH, "SignatureDoesNotMatch"},
        {"x-amz-checksum-crc32c:sOO8/Q==\r\n", CAIRN_EAUTH, "SignatureDoesNotMatch"},
        {"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:abc\r\n\r\n", CAIRN_EAUTH,
         "SignatureDoesNotMatch"},
        {"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG
         "\r\nx-amz-meta-x:1\r\n\r\n",
         CAIRN_EINVAL, "InvalidRequest"},
        {"x-amz-checksum-crc32c sOO8/Q==\r\n\r\n", CAIRN_EINVAL, "InvalidRequest"},
        {"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" T_TRAILER_SIG "\r\n\r\nX",
         CAIRN_EINVAL, "InvalidRequest"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b;
        buf_init(&b);
        aws_body(&b, T_SIG1, T_SIG2, T_SIG_FINAL, cases[i].tail);
        result r = decode(&a, SECRET, b.data, b.len, 0);
        cr_assert_eq(rc_of(&r), cases[i].rc, "case %zu rc %d", i, rc_of(&r));
        cr_assert_str_eq(r.code, cases[i].code, "case %zu", i);
        buf_free(&r.out);
        buf_free(&b);
    }
}

Test(chunked, built_signed_streams_roundtrip) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    sigv4_auth at = auth_for(PAYLOAD_STREAMING_SIGNED_TRAILER, SEED);
    char data[20000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 131 + 7);
    size_t sizes[] = {0, 1, 8192, 8193, 20000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        buf_t b, bt;
        buf_init(&b);
        buf_init(&bt);
        build_signed(&b, SEED, data, sizes[i], 8192, NULL);
        build_signed(&bt, SEED, data, sizes[i], 8192,
                     "x-amz-checksum-sha256:abc=\nx-amz-checksum-crc32:AAAAAA==\n");
        for (size_t step = 0; step < 3; step++) {
            result r = decode(&a, SECRET, b.data, b.len, step * 3);
            cr_assert_eq(rc_of(&r), 0, "size %zu step %zu: %s", sizes[i], step, r.code ? r.code : "-");
            cr_assert_eq(r.out.len, sizes[i]);
            cr_assert_eq(memcmp(r.out.data ? r.out.data : "", data, sizes[i]), 0);
            buf_free(&r.out);
            r = decode(&at, SECRET, bt.data, bt.len, step * 3);
            cr_assert_eq(rc_of(&r), 0, "trailer size %zu: %s", sizes[i], r.code ? r.code : "-");
            cr_assert_eq(r.out.len, sizes[i]);
            cr_assert_str_eq(r.tname, "x-amz-checksum-sha256", "the first trailer is reported");
            cr_assert_str_eq(r.tvalue, "abc=");
            buf_free(&r.out);
        }
        buf_free(&b);
        buf_free(&bt);
    }
}

/* ---- framing failures ---------------------------------------------------- */

Test(chunked, truncated_streams_are_incomplete) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    buf_t b;
    buf_init(&b);
    aws_body(&b, SIG1, SIG2, SIG_FINAL, "\r\n");
    size_t cuts[] = {0, 10, 86, 30000, 65622, 65623, 65624, 65700, b.len - 90, b.len - 3};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        result r = decode(&a, SECRET, b.data, cuts[i], 0);
        cr_assert_eq(r.feed_rc, 0, "cut %zu", cuts[i]);
        cr_assert_eq(r.finish_rc, CAIRN_EINVAL, "cut %zu", cuts[i]);
        cr_assert_str_eq(r.code, "IncompleteBody");
        buf_free(&r.out);
    }
    /* Cut right after the verified final chunk: the data is complete. */
    result r = decode(&a, SECRET, b.data, b.len - 2, 0);
    assert_aaa(&r, 66560);
    buf_free(&r.out);
    buf_free(&b);
}

static result decode_str(sigv4_payload p, const char *body, size_t step) {
    sigv4_auth a = auth_for(p, SEED);
    return decode(&a, SECRET, body, strlen(body), step);
}

Test(chunked, malformed_framing) {
    const char *sig = ";chunk-signature=" SIG1;
    char bodies[8][256];
    snprintf(bodies[0], 256, "zz%s\r\nhello\r\n", sig);             /* not hex */
    snprintf(bodies[1], 256, "5%s\nhello\r\n", sig);                /* LF without CR */
    snprintf(bodies[2], 256, "3%s\r\nhello\r\n", sig);              /* data overruns */
    snprintf(bodies[3], 256, "5\r\nhello\r\n");                     /* unsigned header */
    snprintf(bodies[4], 256, "5;chunk-signature=abc\r\nhello\r\n"); /* short signature */
    snprintf(bodies[5], 256, "10000000000000000%s\r\n", sig);       /* absurd size */
    snprintf(bodies[6], 256, "\r\n");                               /* empty header */
    snprintf(bodies[7], 256, "5%s;x=y\r\nhello\r\n", sig);          /* trailing junk */
    for (int i = 0; i < 8; i++) {
        for (size_t step = 0; step < 2; step++) {
            result r = decode_str(PAYLOAD_STREAMING_SIGNED, bodies[i], step);
            cr_assert_eq(r.feed_rc, CAIRN_EINVAL, "body %d step %zu rc %d", i, step, r.feed_rc);
            cr_assert_str_eq(r.code, "InvalidRequest");
            buf_free(&r.out);
        }
    }
}

Test(chunked, oversized_header_line) {
    char *body = malloc(6000);
    memset(body, '0', 5000);
    strcpy(body + 5000, "1;chunk-signature=x\r\n");
    for (size_t step = 0; step < 2; step++) {
        result r = decode_str(PAYLOAD_STREAMING_SIGNED, body, step);
        cr_assert_eq(r.feed_rc, CAIRN_EINVAL);
        cr_assert_str_eq(r.code, "InvalidRequest");
        buf_free(&r.out);
        r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, body, step);
        cr_assert_eq(r.feed_rc, CAIRN_EINVAL);
        buf_free(&r.out);
    }
    /* A header line without a newline is rejected once past 4 KiB, not buffered on. */
    memset(body, '0', 5000);
    body[5000] = 0;
    result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, body, 1);
    cr_assert_eq(r.feed_rc, CAIRN_EINVAL);
    buf_free(&r.out);
    free(body);
}

Test(chunked, errors_are_sticky_and_extra_bytes_rejected) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_UNSIGNED_TRAILER, SEED);
    chunked_decoder *d = chunked_new(&a, NULL);
    const char *code = NULL;
    cr_assert_eq(chunked_feed(d, "xyz\r\n", 5, NULL, NULL, &code), CAIRN_EINVAL);
    code = NULL;
    cr_assert_eq(chunked_feed(d, "0\r\n\r\n", 5, NULL, NULL, &code), CAIRN_EINVAL);
    cr_assert_str_eq(code, "InvalidRequest");
    cr_assert_eq(chunked_finish(d, &code), CAIRN_EINVAL);
    chunked_free(d);

    result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, "0\r\n\r\n\r\nmore", 0);
    cr_assert_eq(r.feed_rc, CAIRN_EINVAL);
    buf_free(&r.out);
}

/* ---- unsigned trailer streams -------------------------------------------- */

Test(chunked, unsigned_trailer_streams) {
    struct {
        const char *body, *out, *tname, *tvalue;
    } cases[] = {
        {"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n", "hello", "x-amz-checksum-crc32",
         "NhCmhg=="},
        {"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Amz-Checksum-CRC32C: abc== \r\n\r\n", "hello world",
         "x-amz-checksum-crc32c", "abc=="},
        {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789", "", ""},
        {"0\r\n\r\n", "", "", ""},
        {"0\r\n", "", "", ""},
        {"4\r\na\r\nb\r\n0\r\nx-amz-checksum-sha1:q==\r\n", "a\r\nb", "x-amz-checksum-sha1", "q=="},
        {"3;ext=1\r\nabc\r\n0\r\n\r\n", "abc", "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 0; step < 2; step++) {
            sigv4_auth a = auth_for(PAYLOAD_STREAMING_UNSIGNED_TRAILER, SEED);
            result r = decode(&a, NULL, cases[i].body, strlen(cases[i].body), step);
            cr_assert_eq(rc_of(&r), 0, "case %zu: %s", i, r.code ? r.code : "-");
            cr_assert_eq(r.out.len, strlen(cases[i].out), "case %zu", i);
            cr_assert_eq(memcmp(r.out.data ? r.out.data : "", cases[i].out, r.out.len), 0);
            cr_assert_str_eq(r.tname, cases[i].tname, "case %zu", i);
            cr_assert_str_eq(r.tvalue, cases[i].tvalue, "case %zu", i);
            buf_free(&r.out);
        }
    }
    const char *bad[] = {"5\r\nhello\r\n", "5\r\nhel", "5\r\nhello\r\n0\r\nno-colon\r\n\r\n",
                         "5\r\nhelloX\r\n0\r\n\r\n"};
    int want[] = {CAIRN_EINVAL, CAIRN_EINVAL, CAIRN_EINVAL, CAIRN_EINVAL};
    const char *codes[] = {"IncompleteBody", "IncompleteBody", "InvalidRequest", "InvalidRequest"};
    for (size_t i = 0; i < 4; i++) {
        result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, bad[i], 0);
        cr_assert_eq(rc_of(&r), want[i], "bad %zu", i);
        cr_assert_str_eq(r.code, codes[i], "bad %zu", i);
        buf_free(&r.out);
    }
    char many[2048] = "0\r\n";
    for (int i = 0; i < 20; i++) strcat(many, "x-amz-meta-a:1\r\n");
    strcat(many, "\r\n");
    result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, many, 0);
    cr_assert_eq(rc_of(&r), CAIRN_EINVAL, "too many trailer lines");
    buf_free(&r.out);
}

/* ---- streaming and API contract ------------------------------------------ */

static int count_sink(void *ud, const char *p, size_t n) {
    (void)p;
    *(size_t *)ud += n;
    return 0;
}

Test(chunked, data_streams_before_the_chunk_ends) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    buf_t b;
    buf_init(&b);
    aws_body(&b, SIG1, SIG2, SIG_FINAL, "\r\n");
    chunked_decoder *d = chunked_new(&a, SECRET);
    size_t seen = 0;
    const char *code;
    cr_assert_eq(chunked_feed(d, b.data, 88 + 1000, count_sink, &seen, &code), 0);
    cr_assert_eq(seen, 1000, "bytes are passed on as they arrive");
    cr_assert_eq(chunked_decoded_bytes(d), 1000);
    cr_assert_eq(chunked_feed(d, b.data + 1088, b.len - 1088, count_sink, &seen, &code), 0);
    cr_assert_eq(chunked_finish(d, &code), 0);
    cr_assert_eq(seen, 66560);
    cr_assert_null(chunked_trailer_name(d));
    cr_assert_null(chunked_trailer_value(d));
    chunked_free(d);
    buf_free(&b);
}

static int failing_sink(void *ud, const char *p, size_t n) {
    (void)ud;
    (void)p;
    (void)n;
    return CAIRN_ENOSPC;
}

Test(chunked, sink_error_aborts) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_UNSIGNED_TRAILER, SEED);
    chunked_decoder *d = chunked_new(&a, NULL);
    const char *code = NULL;
    cr_assert_eq(chunked_feed(d, "5\r\nhello\r\n", 10, failing_sink, NULL, &code), CAIRN_ENOSPC);
    cr_assert_eq(chunked_feed(d, "0\r\n\r\n", 5, collect, NULL, &code), CAIRN_ENOSPC);
    cr_assert_eq(chunked_finish(d, &code), CAIRN_ENOSPC);
    chunked_free(d);
}

Test(chunked, constructor_contract) {
    sigv4_auth a = auth_for(PAYLOAD_SHA256, SEED);
    cr_assert_null(chunked_new(&a, SECRET), "not a streaming payload");
    a = auth_for(PAYLOAD_UNSIGNED, SEED);
    cr_assert_null(chunked_new(&a, SECRET));
    a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    cr_assert_null(chunked_new(&a, NULL), "signed streams need the secret");
    chunked_free(NULL);
}

/* ---- one byte at a time wrong ------------------------------------------------- */

Test(chunked, framing_bytes_each_wrong) {
    char sig63[80];
    snprintf(sig63, sizeof sig63, "%.63sg", SIG1); /* 64 characters, the last not hex */
    char b_nonhex[256], b_prefix[256];
    snprintf(b_nonhex, sizeof b_nonhex, "5;chunk-signature=%s\r\nhello\r\n", sig63);
    snprintf(b_prefix, sizeof b_prefix, "5;chunk-signaturX=%s\r\nhello\r\n", SIG1);
    const struct {
        sigv4_payload p;
        const char *body;
    } cases[] = {
        {PAYLOAD_STREAMING_SIGNED, b_nonhex},                 /* signature not hex */
        {PAYLOAD_STREAMING_SIGNED, b_prefix},                 /* not chunk-signature= */
        {PAYLOAD_STREAMING_SIGNED, "\n"},                     /* an empty header line, no CR */
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "5x\r\nhello\r\n"},  /* junk after the size */
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "5\r\nhello\rX"},    /* no LF after the data */
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "5\r\nhelloX"},      /* no CR after the data */
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "0\r\nbad trailer\r\n\r\n"},
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "0\r\n:v\r\n\r\n"},  /* an empty trailer name */
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "0\r\nx\x01y:v\r\n\r\n"},
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "0\r\nx\x7fy:v\r\n\r\n"},
        {PAYLOAD_STREAMING_UNSIGNED_TRAILER, "0\r\nx y:v\r\n\r\n"},
    };
    for (size_t i = 0; i < NH_CASES(cases); i++) {
        for (size_t step = 0; step < 2; step++) {
            result r = decode_str(cases[i].p, cases[i].body, step);
            cr_assert_eq(r.feed_rc, CAIRN_EINVAL, "case %zu step %zu rc %d", i, step, r.feed_rc);
            cr_assert_str_eq(r.code, "InvalidRequest", "case %zu", i);
            buf_free(&r.out);
        }
    }
}

Test(chunked, closing_line_of_signed_stream_each_wrong) {
    /* After the final chunk of a stream without trailer: "\r\n" and nothing else. */
    const char *tails[] = {"X", "\rX", "\r\nX"};
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    for (size_t i = 0; i < NH_CASES(tails); i++) {
        buf_t b;
        buf_init(&b);
        aws_body(&b, SIG1, SIG2, SIG_FINAL, tails[i]);
        result r = decode(&a, SECRET, b.data, b.len, 0);
        cr_assert_eq(r.feed_rc, CAIRN_EINVAL, "case %zu", i);
        cr_assert_str_eq(r.code, "InvalidRequest");
        cr_assert_eq(r.decoded, 66560, "the data before was decoded");
        buf_free(&r.out);
        buf_free(&b);
    }
}

Test(chunked, uppercase_chunk_signatures_verify) {
    char data[100];
    memset(data, 'z', sizeof data);
    buf_t b;
    buf_init(&b);
    build_signed(&b, SEED, data, sizeof data, 40, NULL);
    /* Upper-case every signature's hex digits. */
    for (char *p = b.data; (p = strstr(p, "chunk-signature=")) != NULL;) {
        p += 16;
        for (int k = 0; k < 64; k++, p++) *p = (char)toupper((unsigned char)*p);
    }
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED, SEED);
    result r = decode(&a, SECRET, b.data, b.len, 7);
    cr_assert_eq(rc_of(&r), 0, "rc %d", rc_of(&r));
    cr_assert_eq(r.out.len, sizeof data);
    cr_assert_eq(memcmp(r.out.data, data, sizeof data), 0);
    buf_free(&r.out);
    buf_free(&b);
}

Test(chunked, signed_trailer_section_with_only_the_signature) {
    /* No trailer header at all, just its (signed, empty) signature. */
    buf_t b;
    buf_init(&b);
    build_signed(&b, SEED, "hello", 5, 5, "");
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_SIGNED_TRAILER, SEED);
    result r = decode(&a, SECRET, b.data, b.len, 0);
    cr_assert_eq(rc_of(&r), 0, "rc %d %s", rc_of(&r), r.code ? r.code : "-");
    cr_assert_eq(r.out.len, 5);
    cr_assert_str_eq(r.tname, "", "no trailer reported");
    buf_free(&r.out);
    buf_free(&b);
}

Test(chunked, unsigned_trailer_edges) {
    struct {
        const char *body;
        int rc;
        const char *tname, *tvalue;
    } cases[] = {
        /* A trailer signature on an unsigned stream carries nothing to check: ignored. */
        {"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-trailer-signature:abc\r\n\r\n", 0,
         "x-amz-checksum-crc32", "NhCmhg=="},
        /* Tabs around the value are trimmed. */
        {"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:\t NhCmhg==\t\r\n\r\n", 0, "x-amz-checksum-crc32",
         "NhCmhg=="},
        /* A value of blanks only is empty. */
        {"5\r\nhello\r\n0\r\nx-amz-meta-e: \t \r\n\r\n", 0, "x-amz-meta-e", ""},
        /* The body ends on the CR of the closing line: the trailer is complete. */
        {"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r", 0, "x-amz-checksum-crc32",
         "NhCmhg=="},
        /* The body ends in the middle of a malformed trailer line. */
        {"5\r\nhello\r\n0\r\nno colon", CAIRN_EINVAL, "", ""},
        /* A blank line after the final chunk, then a second one ends the section. */
        {"5\r\nhello\r\n0\r\n\r\n\r\n", 0, "", ""},
    };
    for (size_t i = 0; i < NH_CASES(cases); i++) {
        result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, cases[i].body, 0);
        cr_assert_eq(rc_of(&r), cases[i].rc, "case %zu rc %d", i, rc_of(&r));
        if (cases[i].rc == 0) {
            cr_assert_eq(r.out.len, 5, "case %zu", i);
            cr_assert_str_eq(r.tname, cases[i].tname, "case %zu", i);
            cr_assert_str_eq(r.tvalue, cases[i].tvalue, "case %zu", i);
        } else {
            cr_assert_str_eq(r.code, "InvalidRequest", "case %zu", i);
        }
        buf_free(&r.out);
    }
}

Test(chunked, trailer_limits) {
    buf_t b;
    /* A name of 127 bytes fits, 128 does not. */
    for (size_t len = 127; len <= 128; len++) {
        buf_init(&b);
        buf_puts(&b, "0\r\n");
        for (size_t k = 0; k < len; k++) buf_putc(&b, 'n');
        buf_puts(&b, ":v\r\n\r\n");
        result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, b.data, 0);
        cr_assert_eq(rc_of(&r), len == 127 ? 0 : CAIRN_EINVAL, "name of %zu", len);
        buf_free(&r.out);
        buf_free(&b);
    }
    /* A value of 511 bytes fits, 512 does not. */
    for (size_t len = 511; len <= 512; len++) {
        buf_init(&b);
        buf_puts(&b, "0\r\nx-amz-checksum-sha256:");
        for (size_t k = 0; k < len; k++) buf_putc(&b, 'v');
        buf_puts(&b, "\r\n\r\n");
        result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, b.data, 0);
        cr_assert_eq(rc_of(&r), len == 511 ? 0 : CAIRN_EINVAL, "value of %zu", len);
        if (len == 511) cr_assert_eq(strlen(r.tvalue), 511);
        buf_free(&r.out);
        buf_free(&b);
    }
    /* Sixteen trailers are accepted, the first is reported; seventeen are not. */
    for (int n = 16; n <= 17; n++) {
        buf_init(&b);
        buf_puts(&b, "0\r\n");
        for (int k = 0; k < n; k++) buf_printf(&b, "x-amz-meta-%d:%d\r\n", k, k);
        buf_puts(&b, "\r\n");
        result r = decode_str(PAYLOAD_STREAMING_UNSIGNED_TRAILER, b.data, 0);
        cr_assert_eq(rc_of(&r), n == 16 ? 0 : CAIRN_EINVAL, "%d trailers", n);
        if (n == 16) {
            cr_assert_str_eq(r.tname, "x-amz-meta-0");
            cr_assert_str_eq(r.tvalue, "0");
        }
        buf_free(&r.out);
        buf_free(&b);
    }
}

Test(chunked, null_sink_counts_bytes) {
    sigv4_auth a = auth_for(PAYLOAD_STREAMING_UNSIGNED_TRAILER, SEED);
    chunked_decoder *d = chunked_new(&a, NULL);
    cr_assert_not_null(d);
    const char *code = NULL;
    const char body[] = "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
    cr_assert_eq(chunked_feed(d, body, sizeof body - 1, NULL, NULL, &code), 0);
    cr_assert_eq(chunked_finish(d, &code), 0);
    cr_assert_eq(chunked_decoded_bytes(d), 8);
    cr_assert_null(chunked_trailer_name(d));
    cr_assert_null(chunked_trailer_value(d));
    chunked_free(d);
}
