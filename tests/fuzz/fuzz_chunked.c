/*
 * fuzz_chunked.c — libFuzzer target for the aws-chunked decoder with random
 * framing.
 *
 * The first input byte picks the payload kind (signed, signed with trailer,
 * unsigned with trailer) and a split seed; the rest is the body.  The body is
 * decoded twice, once in one piece and once cut into pseudo-random pieces,
 * and both runs must agree on the result, the error code and the output
 * bytes: the decoder's answer may not depend on how the network split the body.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

typedef struct {
    int rc;
    const char *code;
    buf_t out;
    uint64_t decoded;
} run;

static int sink(void *ud, const char *p, size_t n) {
    buf_t *b = ud;
    if (b->len + n > (1u << 20)) return CAIRN_ETOOBIG;
    buf_append(b, p, n);
    return 0;
}

static run decode(const sigv4_auth *a, const uint8_t *body, size_t n, uint32_t seed) {
    run r = {0};
    buf_init(&r.out);
    chunked_decoder *d = chunked_new(a, "secret");
    if (!d) abort();
    size_t off = 0;
    while (off < n && r.rc == 0) {
        size_t len = n - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t cut = 1 + (seed >> 16) % 97;
            if (cut < len) len = cut;
        }
        r.rc = chunked_feed(d, (const char *)body + off, len, sink, &r.out, &r.code);
        off += len;
    }
    if (r.rc == 0) r.rc = chunked_finish(d, &r.code);
    r.decoded = chunked_decoded_bytes(d);
    if ((chunked_trailer_name(d) == NULL) != (chunked_trailer_value(d) == NULL)) abort();
    chunked_free(d);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    static const sigv4_payload kinds[] = {PAYLOAD_STREAMING_SIGNED, PAYLOAD_STREAMING_SIGNED_TRAILER,
                                          PAYLOAD_STREAMING_UNSIGNED_TRAILER};
    sigv4_auth a;
    memset(&a, 0, sizeof a);
    a.kind = SIGV4_HEADER;
    strcpy(a.date, "20130524");
    strcpy(a.amz_date, "20130524T000000Z");
    strcpy(a.region, "us-east-1");
    strcpy(a.service, "s3");
    memset(a.signature, 'a', 64);
    a.payload = kinds[data[0] % 3];

    run one = decode(&a, data + 1, size - 1, 0);
    run many = decode(&a, data + 1, size - 1, (uint32_t)data[0] * 2654435761u | 1);
    bool same_rc = one.rc == many.rc;
    bool same_code = (one.code == NULL) == (many.code == NULL) &&
                     (!one.code || strcmp(one.code, many.code) == 0);
    /* On success the whole output must match; on failure, what was passed on
     * before the failure may differ only by where the cut fell. */
    bool same_out = one.rc != 0 || (one.out.len == many.out.len &&
                                    (one.out.len == 0 ||
                                     memcmp(one.out.data, many.out.data, one.out.len) == 0));
    if (!same_rc || !same_code || !same_out) abort();
    if (one.rc == 0 && one.decoded != one.out.len) abort();
    buf_free(&one.out);
    buf_free(&many.out);
    return 0;
}
