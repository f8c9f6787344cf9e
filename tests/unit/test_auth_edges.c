/*
 * test_auth_edges.c — auth/ when memory runs out: signing, presigning,
 * verifying, decoding aws-chunked bodies and sealing secrets, looped
 * SQLite-style with the nth malloc, calloc or realloc of the process failing
 * (just that one, or every one from the nth on), for n = 1, 2, ... until the
 * operation no longer reaches the nth allocation.  OpenSSL allocates through
 * the same malloc, so its failures are part of the loop.
 *
 * What must hold for every n: the result is the one of an unhindered run, or a
 * clean CAIRN_ENOMEM — never success with a wrong signature, wrong bytes or a
 * partial output, and never a request accepted that should not be (a wrong
 * secret is refused whatever fails).  The chunked decoder may also answer
 * SignatureDoesNotMatch: sigv4_signing_key cannot report a failure, and hands
 * back a key nobody can match instead.
 *
 * Fault build only (fault_harness.h wraps malloc), not under ASan or TSan.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"

/* Outside the fault build (meson -Dfaults=true) the file holds no test. */
#if CAIRN_FAULT_BUILD

#include "fault_harness.h"

#define H(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}
#define NH(a) (sizeof(a) / sizeof((a)[0]))

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"
#define NOW 1369353600 /* 2013-05-24T00:00:00Z */
#define SH "host;x-amz-content-sha256;x-amz-date"
#define MAX_N 100000   /* far more allocations than any operation here makes */

static const auth_header v4_h[] = {H("Host", "examplebucket.s3.amazonaws.com"),
                                   H("x-amz-date", AMZ_DATE),
                                   H("x-amz-content-sha256", "UNSIGNED-PAYLOAD")};

static sigv4_request v4_req(const auth_header *h, size_t nh, const char *query) {
    return (sigv4_request){.method = "GET", .raw_path = "/b/some%20key", .raw_query = query,
                           .headers = h, .nheaders = nh};
}

/* One allocation-failure loop: op(ud) is run with the nth allocation failing
 * (both kinds), and check(ud, rc) judges the result. */
typedef int (*op_fn)(void *ud);
typedef void (*check_fn)(void *ud, int rc, long n);

static void alloc_loop(op_fn op, check_fn check, void *ud) {
    log_capture();
    const fail_kind kinds[] = {FAIL_ALLOC, FAIL_ALLOC_ALL};
    for (size_t k = 0; k < NH(kinds); k++) {
        failing = kinds[k];
        long n = 1;
        for (; n < MAX_N; n++) {
            alloc_arm(n);
            int rc = op(ud);
            bool reached = injected_at(NULL);
            alloc_arm(0);
            check(ud, rc, n);
            if (!reached) break;
        }
        cr_assert_lt(n, MAX_N, "the loop ended");
        cr_assert_gt(n, 1, "the operation allocates");
    }
    failing = FAIL_IO;
}

/* ---- SigV4 -------------------------------------------------------------------- */

typedef struct {
    sigv4_request r;
    const char *secret;
    buf_t out;
    const char *ref; /* the unhindered result */
    bool presign;
    const char *code, *msg;
} v4_case;

static int v4_sign_op(void *ud) {
    v4_case *c = ud;
    buf_free(&c->out); /* a buffer that ran out of memory stays so */
    buf_init(&c->out);
    if (c->presign)
        return sigv4_presign(&c->r, AK, c->secret, "us-east-1", "s3", AMZ_DATE, 3600, "host",
                             &c->out);
    return sigv4_sign(&c->r, AK, c->secret, "us-east-1", "s3", AMZ_DATE, SH, "UNSIGNED-PAYLOAD",
                      &c->out);
}

static void v4_sign_check(void *ud, int rc, long n) {
    v4_case *c = ud;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "n=%ld rc=%d", n, rc);
    if (rc == 0) cr_assert_str_eq(c->out.data, c->ref, "n=%ld: success means the right signature", n);
}

static void v4_sign_loop(bool presign) {
    /* "!" triples when encoded ("%21"): the canonical query outgrows its
     * first buffer and reallocates. */
    v4_case c = {.r = v4_req(v4_h, NH(v4_h), "prefix=a%2Fb&list-type=2&x=!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
                                             "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"),
                 .secret = SECRET, .presign = presign};
    buf_init(&c.out);
    cr_assert_eq(v4_sign_op(&c), 0);
    char *ref = strdup(c.out.data);
    c.ref = ref;
    alloc_loop(v4_sign_op, v4_sign_check, &c);
    free(ref);
    buf_free(&c.out);
}

Test(auth_allocs, sigv4_sign, .disabled = !ALLOC_FAILURES) { v4_sign_loop(false); }

Test(auth_allocs, sigv4_presign, .disabled = !ALLOC_FAILURES) { v4_sign_loop(true); }

/* Parses and verifies a request signed with SECRET, with c->secret. */
static int v4_verify_op(void *ud) {
    v4_case *c = ud;
    sigv4_auth a;
    c->code = c->msg = NULL;
    int rc = sigv4_parse(&c->r, &a, &c->code, &c->msg);
    if (rc == 0) rc = sigv4_verify(&c->r, &a, c->secret, NOW, 900, &c->code, &c->msg);
    return rc;
}

static void v4_verify_good(void *ud, int rc, long n) {
    v4_case *c = ud;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "n=%ld rc=%d %s: %s", n, rc, c->code ? c->code : "-",
              c->msg ? c->msg : "-");
}

static void v4_verify_wrong_secret(void *ud, int rc, long n) {
    v4_case *c = ud;
    cr_assert(rc == CAIRN_EAUTH || rc == CAIRN_ENOMEM, "n=%ld rc=%d: never accepted", n, rc);
    if (rc == CAIRN_EAUTH) cr_assert_str_eq(c->code, "SignatureDoesNotMatch", "n=%ld", n);
}

Test(auth_allocs, sigv4_verify_header_and_presigned, .disabled = !ALLOC_FAILURES) {
    sigv4_request r = v4_req(v4_h, NH(v4_h), "prefix=a%2Fb&list-type=2");
    buf_t authz, q;
    buf_init(&authz);
    buf_init(&q);
    cr_assert_eq(sigv4_sign(&r, AK, SECRET, "us-east-1", "s3", AMZ_DATE, SH, "UNSIGNED-PAYLOAD",
                            &authz), 0);
    cr_assert_eq(sigv4_presign(&r, AK, SECRET, "us-east-1", "s3", AMZ_DATE, 3600, "host", &q), 0);
    auth_header hs[4];
    memcpy(hs, v4_h, sizeof v4_h);
    hs[3] = (auth_header){"Authorization", 13, authz.data, authz.len};

    v4_case header = {.r = v4_req(hs, 4, "prefix=a%2Fb&list-type=2"), .secret = SECRET};
    v4_case presigned = {.r = v4_req(v4_h, 1, q.data), .secret = SECRET};
    cr_assert_eq(v4_verify_op(&header), 0);
    cr_assert_eq(v4_verify_op(&presigned), 0);
    alloc_loop(v4_verify_op, v4_verify_good, &header);
    alloc_loop(v4_verify_op, v4_verify_good, &presigned);
    header.secret = presigned.secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    alloc_loop(v4_verify_op, v4_verify_wrong_secret, &header);
    alloc_loop(v4_verify_op, v4_verify_wrong_secret, &presigned);
    buf_free(&authz);
    buf_free(&q);
}

/* ---- SigV2 ---------------------------------------------------------------------- */

static const auth_header v2_h[] = {H("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                                   H("Content-Type", "text/plain"), H("x-amz-meta-b", "2"),
                                   H("x-amz-meta-a", "1")};

static int v2_sign_op(void *ud) {
    v4_case *c = ud;
    buf_free(&c->out); /* a buffer that ran out of memory stays so */
    buf_init(&c->out);
    if (c->presign) return sigv2_presign(&c->r, NULL, AK, c->secret, NOW + 60, &c->out);
    return sigv2_sign(&c->r, NULL, AK, c->secret, &c->out);
}

static void v2_sign_loop(bool presign) {
    v4_case c = {.r = v4_req(v2_h, NH(v2_h), "acl&versionId=3"), .secret = SECRET,
                 .presign = presign};
    buf_init(&c.out);
    cr_assert_eq(v2_sign_op(&c), 0);
    char *ref = strdup(c.out.data);
    c.ref = ref;
    alloc_loop(v2_sign_op, v4_sign_check, &c);
    free(ref);
    buf_free(&c.out);
}

Test(auth_allocs, sigv2_sign, .disabled = !ALLOC_FAILURES) { v2_sign_loop(false); }

Test(auth_allocs, sigv2_presign, .disabled = !ALLOC_FAILURES) { v2_sign_loop(true); }

static int v2_verify_op(void *ud) {
    v4_case *c = ud;
    sigv4_auth a;
    c->code = c->msg = NULL;
    int rc = sigv2_parse(&c->r, &a, &c->code, &c->msg);
    if (rc == 0) rc = sigv2_verify(&c->r, &a, NULL, c->secret, NOW, 900, &c->code, &c->msg);
    return rc;
}

Test(auth_allocs, sigv2_verify_header_and_presigned, .disabled = !ALLOC_FAILURES) {
    sigv4_request r = v4_req(v2_h, NH(v2_h), "acl&versionId=3");
    buf_t authz, q;
    buf_init(&authz);
    buf_init(&q);
    cr_assert_eq(sigv2_sign(&r, NULL, AK, SECRET, &authz), 0);
    cr_assert_eq(sigv2_presign(&r, NULL, AK, SECRET, NOW + 60, &q), 0);
    auth_header hs[5];
    memcpy(hs, v2_h, sizeof v2_h);
    hs[4] = (auth_header){"Authorization", 13, authz.data, authz.len};

    v4_case header = {.r = v4_req(hs, 5, "acl&versionId=3"), .secret = SECRET};
    v4_case presigned = {.r = v4_req(v2_h, NH(v2_h), q.data), .secret = SECRET};
    cr_assert_eq(v2_verify_op(&header), 0);
    cr_assert_eq(v2_verify_op(&presigned), 0);
    alloc_loop(v2_verify_op, v4_verify_good, &header);
    alloc_loop(v2_verify_op, v4_verify_good, &presigned);
    header.secret = presigned.secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    alloc_loop(v2_verify_op, v4_verify_wrong_secret, &header);
    alloc_loop(v2_verify_op, v4_verify_wrong_secret, &presigned);
    buf_free(&authz);
    buf_free(&q);
}

/* ---- aws-chunked ------------------------------------------------------------------ */

/* AWS's published streaming upload (65 KiB of 'a' in a 64 KiB and a 1 KiB
 * chunk, test_chunked.c), and an unsigned stream with a checksum trailer. */
#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG_FINAL "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"

typedef struct {
    sigv4_auth a;
    const char *body;
    size_t len, want; /* decoded bytes of an unhindered run */
    buf_t out;
    const char *code;
} chunk_case;

static int collect(void *ud, const char *p, size_t n) {
    buf_t *b = ud;
    buf_append(b, p, n);
    return b->oom ? CAIRN_ENOMEM : 0;
}

static int chunk_op(void *ud) {
    chunk_case *c = ud;
    buf_free(&c->out);
    buf_init(&c->out);
    c->code = NULL;
    chunked_decoder *d = chunked_new(&c->a, SECRET);
    if (!d) return CAIRN_ENOMEM;
    int rc = chunked_feed(d, c->body, c->len, collect, &c->out, &c->code);
    if (rc == 0) rc = chunked_finish(d, &c->code);
    chunked_free(d);
    return rc;
}

static void chunk_check(void *ud, int rc, long n) {
    chunk_case *c = ud;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM || rc == CAIRN_EAUTH, "n=%ld rc=%d", n, rc);
    if (rc == 0) {
        cr_assert_eq(c->out.len, c->want, "n=%ld", n);
        for (size_t i = 0; i < c->want; i++)
            if (c->out.data[i] != 'a') cr_assert_fail("n=%ld: byte %zu", n, i);
    } else if (rc == CAIRN_EAUTH) {
        /* Only the fallback key of a failed derivation, never a wrong chain. */
        cr_assert_str_eq(c->code, "SignatureDoesNotMatch", "n=%ld", n);
    }
}

Test(auth_allocs, chunked_decode, .disabled = !ALLOC_FAILURES) {
    static char data[65536];
    memset(data, 'a', sizeof data);
    buf_t body;
    buf_init(&body);
    buf_printf(&body, "10000;chunk-signature=" SIG1 "\r\n");
    buf_append(&body, data, 65536);
    buf_printf(&body, "\r\n400;chunk-signature=" SIG2 "\r\n");
    buf_append(&body, data, 1024);
    buf_printf(&body, "\r\n0;chunk-signature=" SIG_FINAL "\r\n\r\n");
    cr_assert(!body.oom);

    chunk_case s = {.body = body.data, .len = body.len, .want = 66560};
    s.a.payload = PAYLOAD_STREAMING_SIGNED;
    strcpy(s.a.date, "20130524");
    strcpy(s.a.amz_date, AMZ_DATE);
    strcpy(s.a.region, "us-east-1");
    strcpy(s.a.service, "s3");
    strcpy(s.a.signature, SEED);
    buf_init(&s.out);
    cr_assert_eq(chunk_op(&s), 0);
    alloc_loop(chunk_op, chunk_check, &s);
    buf_free(&s.out);

    chunk_case u = {.body = "5\r\naaaaa\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n", .want = 5};
    u.len = strlen(u.body);
    u.a.payload = PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    buf_init(&u.out);
    cr_assert_eq(chunk_op(&u), 0);
    alloc_loop(chunk_op, chunk_check, &u);
    buf_free(&u.out);
    buf_free(&body);
}

/* ---- secrets ------------------------------------------------------------------------ */

static const uint8_t master[AUTH_MASTER_KEY_LEN] = {7, 7, 7};

typedef struct {
    buf_t sealed, plain;
    bool open;
} seal_case;

static int seal_op(void *ud) {
    seal_case *c = ud;
    if (c->open) {
        buf_free(&c->plain);
        buf_init(&c->plain);
        return auth_secret_open(master, c->sealed.data, &c->plain);
    }
    buf_free(&c->sealed);
    buf_init(&c->sealed);
    return auth_secret_seal(master, "s3cr3t-value", &c->sealed);
}

static void seal_check(void *ud, int rc, long n) {
    seal_case *c = ud;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "n=%ld rc=%d", n, rc);
    if (rc != 0) return;
    if (c->open) {
        cr_assert_eq(c->plain.len, 12, "n=%ld", n);
        cr_assert_eq(memcmp(c->plain.data, "s3cr3t-value", 12), 0, "n=%ld", n);
        return;
    }
    buf_t p;
    buf_init(&p);
    cr_assert_eq(auth_secret_open(master, c->sealed.data, &p), 0, "n=%ld: what was sealed opens", n);
    cr_assert_eq(p.len, 12);
    cr_assert_eq(memcmp(p.data, "s3cr3t-value", 12), 0);
    buf_free(&p);
}

Test(auth_allocs, secret_seal_and_open, .disabled = !ALLOC_FAILURES) {
    cr_assert_eq(core_init(), 0);
    seal_case c = {.open = false};
    buf_init(&c.sealed);
    buf_init(&c.plain);
    alloc_loop(seal_op, seal_check, &c);
    cr_assert_eq(seal_op(&c), 0);
    c.open = true;
    alloc_loop(seal_op, seal_check, &c);
    buf_free(&c.sealed);
    buf_free(&c.plain);
}

#endif
