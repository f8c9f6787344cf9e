/*
 * test_faults.c — the fault-injection layer itself, and allocation failures.
 *
 * In an ordinary build fault_inject is an inline no-op, which is checked.  In
 * the fault build (meson -Dfaults=true, make test-faults) the spec language is
 * checked (which call fails, how many, which sites, windows), and every
 * malloc/calloc/realloc of the process goes through the wrappers below, so a
 * test can make the nth allocation fail: each parser and constructor is run
 * with n = 1, 2, ... until it no longer allocates n times, and every run must
 * end in success or a clean error code, never a crash.  (Not under ASan or
 * TSan, whose allocators the wrappers would bypass.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/core.h"
#include "s3/s3.h"

#if !CAIRN_FAULT_BUILD

Test(faults, sites_are_no_ops_outside_the_fault_build) {
    for (int i = 0; i < FAULT__COUNT; i++) cr_expect_eq(fault_inject((fault_site)i), 0);
    fault_point("anything");
    cr_expect_eq(fault_status("audit.store.post"), 0);
    cr_expect_eq(fault_reload(), 0);
}

#else

static void arm(const char *spec) { cr_assert_eq(fault_configure(spec), 0, "spec %s", spec); }

Test(faults, the_nth_call_of_the_chosen_sites_fails) {
    arm("sites=data.write,meta.*\nnth=3\nerrno=ENOSPC");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0);
    cr_expect_eq(fault_inject(FAULT_DATA_FSYNC), 0, "not a chosen site: not counted");
    cr_expect_eq(fault_inject(FAULT_META_FSYNC), 0);
    cr_expect_eq(fault_inject(FAULT_META_WRITE), ENOSPC, "the third counted call");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0, "count=1 by default: only that one");
    arm("sites=*;nth=2;count=0;errno=EIO");
    cr_expect_eq(fault_inject(FAULT_NET_SEND), 0);
    for (int i = 0; i < 5; i++) cr_expect_eq(fault_inject(FAULT_NET_RECV), EIO, "count=0: every call from the nth on");
    arm("sites=data.*\nnth=1\ncount=2");
    cr_expect_eq(fault_inject(FAULT_DATA_OPEN), EIO);
    cr_expect_eq(fault_inject(FAULT_DATA_UNLINK), EIO);
    cr_expect_eq(fault_inject(FAULT_DATA_RENAME), 0);
    arm("");
    cr_expect_eq(fault_inject(FAULT_DATA_OPEN), 0, "an empty spec disarms");
    cr_expect_str_eq(fault_site_name(FAULT_NET_RECV), "net.recv");
}

Test(faults, windows_count_only_between_their_points) {
    arm("sites=*\nnth=1\nwindow=pass");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0, "outside the window");
    fault_point("pass.begin");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), EIO);
    fault_point("pass.end");
    arm("sites=*\nnth=2\nwindow=pass");
    fault_point("pass.begin");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0);
    fault_point("pass.end");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0, "the second call is outside: not counted");
    arm("");
}

static void *call_data_write(void *arg) {
    *(int *)arg = fault_inject(FAULT_DATA_WRITE);
    return NULL;
}

static int call_from_another_thread(void) {
    int rc = -1;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, call_data_write, &rc), 0);
    pthread_join(t, NULL);
    return rc;
}

Test(faults, a_thread_window_counts_only_its_own_thread) {
    arm("sites=*\nnth=1\nwindow=req\nwindow_scope=thread");
    fault_point("req.begin");
    cr_expect_eq(call_from_another_thread(), 0, "another thread while the window is open: not counted");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), EIO, "the window's own thread: the first call counted");
    fault_point("req.end");
    arm("sites=*\nnth=1\nwindow=req\nwindow_scope=process");
    fault_point("req.begin");
    cr_expect_eq(call_from_another_thread(), EIO, "process scope: any thread's call counts");
    fault_point("req.end");
    arm("sites=*\nnth=1\nwindow=req\nwindow_scope=thread");
    fault_point("req.begin");
    arm("sites=*\nnth=1\nwindow=req\nwindow_scope=thread");
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0, "a window opened under the previous spec is not this one's");
    cr_expect_eq(fault_configure("window=req\nwindow_scope=request"), CAIRN_EINVAL);
    arm("");
}

Test(faults, status_points_answer_their_code_count_times) {
    arm("status=audit.store.post:503:2;status=audit.store.get:400");
    cr_expect_eq(fault_status("audit.store.post"), 503);
    cr_expect_eq(fault_status("other.point"), 0, "another point");
    cr_expect_eq(fault_status("audit.store.post"), 503);
    cr_expect_eq(fault_status("audit.store.post"), 0, "only the first two");
    for (int i = 0; i < 3; i++) cr_expect_eq(fault_status("audit.store.get"), 400, "no count: every time");
    arm("pause=audit.store.post:1:1");
    int64_t t0 = time_mono_ns();
    fault_point("audit.store.post");
    cr_expect_geq(time_mono_ns() - t0, 1000000, "the first pause sleeps");
    fault_point("audit.store.post"); /* the second does not; nothing to assert on time */
    arm("");
    cr_expect_eq(fault_status("audit.store.get"), 0, "disarmed");
}

Test(faults, bad_specs_are_refused) {
    const char *bad[] = {"sites=disk.write", "errno=EPERM\nnth=1", "action=explode", "nonsense=1",
                         "pause=nocolon", "garbage", "status=x:99", "status=x:600", "status=x", "status=x:503:0",
                         "status=x:503:-1", "pause=x:10:0", "status=x:5o3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(fault_configure(bad[i]), CAIRN_EINVAL, "%s", bad[i]);
    arm("");
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

/* ---- allocation failures ------------------------------------------------------------- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static long alloc_fail_at, alloc_count;

static bool fail_this_one(void) { return alloc_fail_at && ++alloc_count == alloc_fail_at; }

void *malloc(size_t n) { return fail_this_one() ? NULL : __libc_malloc(n); }
void *calloc(size_t a, size_t b) { return fail_this_one() ? NULL : __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return fail_this_one() ? NULL : __libc_realloc(p, n); }

/* Runs fn with the 1st, 2nd, ... allocation failing until a run makes fewer
 * allocations than that; fn checks its own outcome.  Returns the runs. */
static int each_allocation(void (*fn)(bool failing)) {
    int runs = 0;
    for (long n = 1; n < 100000; n++) {
        alloc_count = 0;
        alloc_fail_at = n;
        fn(true);
        bool reached = alloc_count >= n;
        alloc_fail_at = 0;
        if (!reached) return runs;
        runs++;
    }
    cr_assert_fail("never ran out of allocations to fail");
    return runs;
}

static void parse_complete(bool failing) {
    (void)failing;
    static const char xml[] = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>"
                              "<Part><PartNumber>2</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>";
    s3_complete_part *parts = NULL;
    int n = s3_parse_complete_xml(xml, sizeof xml - 1, &parts);
    /* libxml2 may report its own allocation failure as a parse error. */
    cr_assert(n == 2 || n == CAIRN_ENOMEM || n == CAIRN_EINVAL, "got %d", n);
    if (n == 2) cr_assert_eq(parts[1].number, 2);
    free(parts);
}

static void parse_delete(bool failing) {
    (void)failing;
    static const char xml[] = "<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object><Object><Key>b/c</Key></Object></Delete>";
    s3_delete_req d;
    int rc = s3_parse_delete_xml(xml, sizeof xml - 1, &d);
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM || rc == CAIRN_EINVAL, "got %d at allocation %ld", rc, alloc_fail_at);
    if (rc == 0) {
        cr_assert_eq(d.count, 2, "count %d at allocation %ld", d.count, alloc_fail_at);
        cr_assert_str_eq(d.objects[1].key, "b/c");
        s3_delete_req_free(&d);
    }
}

static void parse_query_and_tokens(bool failing) {
    (void)failing;
    s3_query_param params[8];
    int n = 0;
    arena *a = arena_new(1 << 16);
    int rc = a ? s3_parse_query(a, "list-type=2&prefix=a%2Fb&max-keys=10", params, 8, &n) : CAIRN_ENOMEM;
    cr_assert(rc == 0 || rc == CAIRN_ENOMEM);
    if (rc == 0) cr_assert_eq(n, 3);
    arena_free(a);
    char *tok = s3_list_token_encode("some/key", 8, false);
    if (tok) {
        char key[1025];
        size_t len = 0;
        bool incl = true;
        rc = s3_list_token_decode(tok, key, &len, &incl);
        cr_assert(rc == 0 || rc == CAIRN_ENOMEM);
        if (rc == 0) cr_assert_eq(len, 8);
        free(tok);
    }
}

static void buffers(bool failing) {
    (void)failing;
    buf_t b;
    buf_init(&b);
    for (int i = 0; i < 200; i++) buf_printf(&b, "line %d of a buffer that grows\n", i);
    buf_xml_escape(&b, "<&>", 3);
    if (b.oom) {
        cr_assert_eq(buf_reserve(&b, 1), CAIRN_ENOMEM, "an out-of-memory buffer stays latched");
    } else {
        cr_assert(strstr(b.data, "line 199") != NULL);
        cr_assert(strstr(b.data, "&lt;&amp;&gt;") != NULL);
    }
    buf_free(&b);
}

static void aws_chunked_decoder(bool failing) {
    (void)failing;
    sigv4_auth a = {.kind = SIGV4_HEADER, .payload = PAYLOAD_STREAMING_UNSIGNED_TRAILER};
    chunked_decoder *d = chunked_new(&a, NULL);
    if (d) chunked_free(d);
}

Test(alloc, every_allocation_of_the_parsers_can_fail) {
    cr_expect_gt(each_allocation(parse_complete), 3);
    cr_expect_gt(each_allocation(parse_delete), 3);
    cr_expect_gt(each_allocation(parse_query_and_tokens), 1);
    cr_expect_gt(each_allocation(buffers), 1);
    cr_expect_geq(each_allocation(aws_chunked_decoder), 1);
}

#endif
#endif
