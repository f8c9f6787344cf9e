/*
 * test_node_faults.c — the shard API's own allocations failing: the body tag
 * of a PUT, the replay table and opening a node from the gateway side, looped
 * SQLite-style with the nth malloc, calloc or realloc of the process failing
 * (just that one, or every one from the nth on), for n = 1, 2, ... until the
 * call no longer reaches the nth allocation.  OpenSSL allocates through the
 * same malloc, so its failures are part of the loop.
 *
 * What must hold for every n: the unhindered result or a clean failure
 * (NULL, CAIRN_ENOMEM) — never a tag context keyed with anything but the
 * request's key, never a half-built table.
 *
 * Fault build only (fault_harness.h wraps malloc), not under ASan or TSan.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <openssl/evp.h>

#include "data/drive.h"
#include "node/node.h"

/* Outside the fault build (meson -Dfaults=true) the file holds no test. */
#if CAIRN_FAULT_BUILD

#include "fault_harness.h"

#if ALLOC_FAILURES /* not under a sanitizer: its allocator bypasses the wrappers */

#define SECRET "the-cluster-secret-for-node-faults"

/* EVP_MAC_init wrapped: Poly1305's init allocates nothing, so no allocation
 * failure reaches its error path; fail_mac_init makes it fail as the API
 * allows, for the one test of what shard_tag_new does then.  (The wrapper
 * also sees libcrypto's own calls, HMAC()'s among them.) */
#include <dlfcn.h>

static bool fail_mac_init;

int EVP_MAC_init(EVP_MAC_CTX *ctx, const unsigned char *key, size_t keylen, const OSSL_PARAM params[]) {
    static int (*real)(EVP_MAC_CTX *, const unsigned char *, size_t, const OSSL_PARAM[]);
    /* HMAC() inits through it too: only Poly1305 (the body tag) fails. */
    if (fail_mac_init && EVP_MAC_is_a(EVP_MAC_CTX_get0_mac(ctx), "POLY1305")) return 0;
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "EVP_MAC_init");
    return real(ctx, key, keylen, params);
}
#define SIG "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MAX_N 100000

/* The tag of body under a context; false if it could not be computed. */
static bool tag_of(EVP_MAC_CTX *c, const char *body, unsigned char out[SHARD_TAG_LEN]) {
    unsigned char tag[SHARD_TAG_LEN + 16];
    size_t tl = 0;
    if (!EVP_MAC_update(c, (const unsigned char *)body, strlen(body)) || !EVP_MAC_final(c, tag, &tl, sizeof tag) ||
        tl != SHARD_TAG_LEN)
        return false;
    memcpy(out, tag, SHARD_TAG_LEN);
    return true;
}

static const fail_kind kinds[] = {FAIL_ALLOC, FAIL_ALLOC_ALL};

/* The log (out-of-memory lines) goes to a temp file, not the test's output. */
TestSuite(node_allocs, .init = log_capture);

Test(node_allocs, a_body_tag_context_is_keyed_right_or_not_made) {
    EVP_MAC *poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    cr_assert_not_null(poly);
    unsigned char want[SHARD_TAG_LEN];
    EVP_MAC_CTX *c = shard_tag_new(poly, SECRET, SIG);
    cr_assert_not_null(c);
    cr_assert(tag_of(c, "the shard's bytes", want));
    EVP_MAC_CTX_free(c);
    int failed = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        failing = kinds[k];
        int n = 1;
        for (; n < MAX_N; n++) {
            alloc_arm(n);
            c = shard_tag_new(poly, SECRET, SIG);
            bool hit = injected_at(NULL);
            alloc_arm(0);
            if (c) {
                unsigned char got[SHARD_TAG_LEN];
                cr_assert(tag_of(c, "the shard's bytes", got), "allocation %d: a context that cannot tag", n);
                cr_assert(memcmp(got, want, SHARD_TAG_LEN) == 0,
                          "allocation %d failing: a context keyed with something else than the request's key", n);
                EVP_MAC_CTX_free(c);
            } else {
                cr_assert(hit, "allocation %d: NULL with nothing failing", n);
                failed++;
            }
            if (!hit) break;
        }
        cr_assert_lt(n, MAX_N);
    }
    failing = FAIL_IO;
    cr_expect_gt(failed, 0, "no allocation failure ever reached shard_tag_new");
    /* A context that cannot be keyed is freed, not handed out. */
    fail_mac_init = true;
    cr_expect_null(shard_tag_new(poly, SECRET, SIG));
    fail_mac_init = false;
    c = shard_tag_new(poly, SECRET, SIG);
    cr_assert_not_null(c, "a failed init costs nothing lasting");
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(poly);
}

/* The Poly1305 method is fetched by a process's first open of a node: out of
 * memory then, the open is CAIRN_ENOMEM.  (This test runs in a process of
 * its own, so no open came before it; opening_a_node_out_of_memory_is_enomem
 * warms the method first and so never reaches this.) */
Test(node_allocs, a_first_open_that_cannot_fetch_poly1305_is_enomem) {
    int enomem = 0;
    failing = FAIL_ALLOC;
    for (int n = 1; n < MAX_N; n++) {
        drive *d = NULL;
        alloc_arm(n);
        int rc = drive_remote_open("http://:9000", SECRET, NULL, 500, &d);
        bool hit = injected_at(NULL);
        alloc_arm(0);
        cr_assert_null(d);
        cr_assert(rc == CAIRN_EINVAL || rc == CAIRN_ENOMEM, "allocation %d: %d", n, rc);
        if (rc == CAIRN_ENOMEM) enomem++;
        if (!hit || rc == CAIRN_EINVAL) break; /* the method is fetched: past the point */
    }
    failing = FAIL_IO;
    cr_expect_gt(enomem, 1, "the open's own allocation, then the method's fetch");
}

Test(node_allocs, a_replay_table_is_whole_or_not_made) {
    unsigned char session[SHARD_SESSION_BYTES];
    memset(session, 7, sizeof session);
    int refused = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        failing = kinds[k];
        int n = 1;
        for (; n < MAX_N; n++) {
            node_replay *rp = NULL;
            alloc_arm(n);
            int rc = node_replay_new(100, 0, &rp);
            bool hit = injected_at(NULL);
            alloc_arm(0);
            if (rc == 0) {
                cr_assert_not_null(rp);
                cr_assert_eq(node_replay_admit(rp, session, 1, 1000), 0, "allocation %d: a table that admits nothing", n);
                cr_assert_eq(node_replay_admit(rp, session, 1, 1000), CAIRN_EAUTH,
                             "allocation %d: a table that forgets", n);
                node_replay_free(rp);
            } else {
                cr_assert_eq(rc, CAIRN_ENOMEM, "allocation %d: %d", n, rc);
                cr_assert(hit);
                refused++;
            }
            if (!hit) break;
        }
        cr_assert_lt(n, MAX_N);
    }
    failing = FAIL_IO;
    cr_expect_gt(refused, 0);
}

/* Opening a node from the gateway side allocates before it parses the URL:
 * out of memory is CAIRN_ENOMEM, and once memory is there again a bad URL is
 * refused as before — a shortage costs nothing lasting (OpenSSL would fail
 * every Poly1305 fetch after one that ran out of memory: the method is
 * fetched once, here by a first open as by a gateway's start). */
Test(node_allocs, opening_a_node_out_of_memory_is_enomem) {
    drive *warm = NULL;
    cr_assert_eq(drive_remote_open("http://:9000", SECRET, NULL, 500, &warm), CAIRN_EINVAL);
    int enomem = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        failing = kinds[k];
        int n = 1;
        for (; n < MAX_N; n++) {
            drive *d = NULL;
            alloc_arm(n);
            int rc = drive_remote_open("http://:9000", SECRET, NULL, 500, &d);
            bool hit = injected_at(NULL);
            alloc_arm(0);
            cr_assert_null(d);
            cr_assert(rc == CAIRN_EINVAL || rc == CAIRN_ENOMEM, "allocation %d: %d", n, rc);
            if (rc == CAIRN_ENOMEM) {
                cr_assert(hit, "allocation %d (%s): ENOMEM with nothing failing", n, k ? "from then on" : "once");
                enomem++;
            }
            if (!hit) break;
        }
        cr_assert_lt(n, MAX_N);
    }
    failing = FAIL_IO;
    cr_expect_gt(enomem, 0);
    cr_expect_eq(drive_remote_open("http://:9000", SECRET, NULL, 500, &warm), CAIRN_EINVAL, "a lasting failure");
}

#endif /* ALLOC_FAILURES */

#else

Test(node_allocs, the_file_needs_the_fault_build) {
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0, "outside the fault build the sites are no-ops");
}

#endif
