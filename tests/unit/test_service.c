/*
 * test_service.c — the service registry (core.h, service.c): dependency
 * order on start and its reverse on stop, cycles and unknown names refused
 * before anything starts, a failed start undoing what started, and stops
 * held to their deadlines.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

/* What happened, in order: "+name" for a start, "-name" for a stop. */
static char trace[512];
static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;

static void note(char sign, const char *name) {
    pthread_mutex_lock(&trace_mu);
    size_t n = strlen(trace);
    snprintf(trace + n, sizeof trace - n, "%s%c%s", n ? " " : "", sign, name);
    pthread_mutex_unlock(&trace_mu);
}

typedef struct {
    const char *name;
    int start_rc;
} comp;

static int comp_start(void *ud) {
    comp *c = ud;
    note('+', c->name);
    return c->start_rc;
}

static void comp_stop(void *ud) { note('-', ((comp *)ud)->name); }

static void add(svc_registry *r, comp *c, const char *needs) {
    svc_def d = {.name = c->name, .needs = needs, .start = comp_start, .stop = comp_stop, .ud = c};
    cr_assert_eq(svc_add(r, &d), 0, "add %s", c->name);
}

static void reset(void) { trace[0] = '\0'; }

Test(service, starts_in_dependency_order_and_stops_in_reverse) {
    reset();
    svc_registry *r;
    cr_assert_eq(svc_registry_new(1000, &r), 0);
    comp http = {"http"}, gw = {"gateway"}, meta = {"meta"}, data = {"data"}, jobs = {"jobs"}, obs = {"obs"};
    add(r, &http, "gateway");
    add(r, &gw, "meta,data,obs");
    add(r, &jobs, "meta,data");
    add(r, &meta, NULL);
    add(r, &data, "meta");
    add(r, &obs, "");
    char why[128];
    cr_assert_eq(svc_start_all(r, why, sizeof why), 0, "%s", why);
    cr_expect_str_eq(trace, "+meta +data +jobs +obs +gateway +http",
                     "each after what it needs; ties in the order they were added");
    cr_expect_eq(svc_running(r), 6);
    cr_expect_str_eq(svc_started_name(r, 0), "meta");
    cr_expect_str_eq(svc_started_name(r, 5), "http");
    cr_expect_null(svc_started_name(r, 6));
    reset();
    cr_expect_eq(svc_stop_all(r), 0);
    cr_expect_str_eq(trace, "-http -gateway -obs -jobs -data -meta");
    cr_expect_eq(svc_running(r), 0);
    cr_expect_eq(svc_stop_all(r), 0, "stopping twice stops nothing");
    svc_registry_free(r);
}

Test(service, cycles_and_unknown_names_are_refused_before_anything_starts) {
    static const struct {
        const char *a_needs, *b_needs, *c_needs, *why;
    } cases[] = {
        {"b", "c", "a", "a dependency cycle among the services, through a"},
        {"b", "a", NULL, "a dependency cycle among the services, through a"},
        {NULL, "c", "b", "a dependency cycle among the services, through b"},
        {"a", NULL, NULL, "a needs itself"},
        {"b", "nosuch", NULL, "b needs nosuch, which is not a service"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reset();
        svc_registry *r;
        cr_assert_eq(svc_registry_new(1000, &r), 0);
        comp a = {"a"}, b = {"b"}, c = {"c"};
        add(r, &a, cases[i].a_needs);
        add(r, &b, cases[i].b_needs);
        add(r, &c, cases[i].c_needs);
        char why[128];
        cr_expect_eq(svc_start_all(r, why, sizeof why), CAIRN_EINVAL, "case %zu", i);
        cr_expect_str_eq(why, cases[i].why, "case %zu", i);
        cr_expect_str_eq(trace, "", "case %zu: nothing started", i);
        cr_expect_eq(svc_running(r), 0);
        svc_registry_free(r);
    }
}

Test(service, a_start_that_fails_stops_what_started_before_it) {
    reset();
    svc_registry *r;
    cr_assert_eq(svc_registry_new(1000, &r), 0);
    comp meta = {"meta"}, data = {"data", CAIRN_EIO}, http = {"http"}, obs = {"obs"};
    add(r, &meta, NULL);
    add(r, &obs, NULL);
    add(r, &data, "meta");
    add(r, &http, "data");
    char why[128];
    cr_expect_eq(svc_start_all(r, why, sizeof why), CAIRN_EIO);
    cr_expect_str_eq(why, "data did not start: I/O error");
    cr_expect_str_eq(trace, "+meta +obs +data -obs -meta", "http never started; data's start undid nothing of its own");
    cr_expect_eq(svc_running(r), 0);
    /* Fixed, it starts whole. */
    data.start_rc = 0;
    reset();
    cr_expect_eq(svc_start_all(r, NULL, 0), 0, "why may be NULL");
    cr_expect_str_eq(trace, "+meta +obs +data +http");
    cr_expect_eq(svc_add(r, &(svc_def){.name = "late"}), CAIRN_EINVAL, "the order is fixed once started");
    svc_stop_all(r);
    svc_registry_free(r);
}

Test(service, bad_definitions_are_refused) {
    svc_registry *r;
    cr_expect_eq(svc_registry_new(0, &r), CAIRN_EINVAL);
    cr_expect_eq(svc_registry_new(10, NULL), CAIRN_EINVAL);
    cr_assert_eq(svc_registry_new(10, &r), 0);
    cr_expect_eq(svc_add(r, NULL), CAIRN_EINVAL);
    cr_expect_eq(svc_add(NULL, &(svc_def){.name = "x"}), CAIRN_EINVAL);
    cr_expect_eq(svc_add(r, &(svc_def){.name = NULL}), CAIRN_EINVAL);
    cr_expect_eq(svc_add(r, &(svc_def){.name = ""}), CAIRN_EINVAL);
    cr_expect_eq(svc_add(r, &(svc_def){.name = "a,b"}), CAIRN_EINVAL);
    char longname[80];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_expect_eq(svc_add(r, &(svc_def){.name = longname}), CAIRN_EINVAL);
    cr_expect_eq(svc_add(r, &(svc_def){.name = "x", .needs = "a,,b"}), CAIRN_EINVAL, "an empty need");
    cr_expect_eq(svc_add(r, &(svc_def){.name = "x", .needs = longname}), CAIRN_EINVAL);
    cr_expect_eq(svc_add(r, &(svc_def){.name = "x"}), 0, "no start, no stop: nothing to do");
    cr_expect_eq(svc_add(r, &(svc_def){.name = "x"}), CAIRN_EEXIST);
    int added = 1;
    for (; added < 64; added++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", added);
        cr_assert_eq(svc_add(r, &(svc_def){.name = name}), 0);
    }
    cr_expect_eq(svc_add(r, &(svc_def){.name = "one-too-many"}), CAIRN_ETOOBIG);
    cr_expect_eq(svc_start_all(r, NULL, 0), 0);
    cr_expect_eq(svc_running(r), 64);
    cr_expect_eq(svc_start_all(r, NULL, 0), CAIRN_EINVAL, "started already");
    cr_expect_eq(svc_start_all(NULL, NULL, 0), CAIRN_EINVAL);
    cr_expect_eq(svc_stop_all(r), 0);
    cr_expect_eq(svc_stop_all(NULL), 0);
    cr_expect_eq(svc_running(NULL), 0);
    cr_expect_null(svc_started_name(NULL, 0));
    cr_expect_null(svc_started_name(r, -1));
    svc_registry_free(r);
    svc_registry_free(NULL);
}

/* A stop that waits for the test to let it go. */
typedef struct {
    const char *name;
    atomic_bool release, finished;
} stuck;

static void stuck_stop(void *ud) {
    stuck *s = ud;
    note('-', s->name);
    while (!atomic_load(&s->release)) usleep(1000);
    atomic_store(&s->finished, true);
}

/* A stop past its deadline is left running, and what it needs is not
 * stopped under it; the others stop as usual. */
Test(service, a_stop_past_its_deadline_is_left_running_with_what_it_needs) {
    reset();
    svc_registry *r;
    cr_assert_eq(svc_registry_new(5000, &r), 0);
    comp meta = {"meta"}, obs = {"obs"}, http = {"http"};
    stuck jobs = {.name = "jobs"};
    add(r, &meta, NULL);
    add(r, &obs, NULL);
    cr_assert_eq(svc_add(r, &(svc_def){.name = "jobs", .needs = "meta", .stop = stuck_stop, .ud = &jobs,
                                       .stop_timeout_ms = 50}),
                 0);
    add(r, &http, "jobs");
    cr_assert_eq(svc_start_all(r, NULL, 0), 0);
    reset();
    cr_expect_eq(svc_stop_all(r), CAIRN_ETIMEDOUT);
    cr_expect_not(atomic_load(&jobs.finished), "the stop is still running");
    cr_expect_str_eq(trace, "-http -jobs -obs", "meta, which jobs needs, stays up");
    atomic_store(&jobs.release, true);
    for (int i = 0; i < 5000 && !atomic_load(&jobs.finished); i++) usleep(1000);
    cr_expect(atomic_load(&jobs.finished));
    svc_registry_free(r);
}

/* A stop within its deadline is waited for, however long it takes. */
Test(service, a_stop_within_its_deadline_is_waited_for) {
    reset();
    svc_registry *r;
    cr_assert_eq(svc_registry_new(10000, &r), 0);
    stuck slow = {.name = "slow"};
    cr_assert_eq(svc_add(r, &(svc_def){.name = "slow", .stop = stuck_stop, .ud = &slow}), 0);
    cr_assert_eq(svc_start_all(r, NULL, 0), 0);
    atomic_store(&slow.release, true);
    cr_expect_eq(svc_stop_all(r), 0);
    cr_expect(atomic_load(&slow.finished), "stop_all returned before the stop ended");
    svc_registry_free(r);
}

#if CAIRN_FAULT_BUILD
#include "fault_harness.h"

#if ALLOC_FAILURES
/* No thread (or no memory) for a stop: it runs on the caller's thread, with
 * no deadline, and every service is still stopped in order. */
Test(service, stops_run_inline_when_no_thread_or_memory_can_be_had) {
    log_capture();
    for (int mode = 0; mode < 2; mode++) {
        reset();
        svc_registry *r;
        cr_assert_eq(svc_registry_new(1000, &r), 0);
        comp a = {"a"}, b = {"b"};
        add(r, &a, NULL);
        add(r, &b, "a");
        cr_assert_eq(svc_start_all(r, NULL, 0), 0);
        reset();
        cr_assert_eq(ftruncate(log_fd, 0), 0);
        if (mode == 0) thread_arm(1);
        else {
            failing = FAIL_ALLOC_ALL;
            alloc_arm(1);
        }
        int rc = svc_stop_all(r);
        bool hit = mode == 0 ? thread_hit() : alloc_hit();
        thread_arm(0);
        alloc_arm(0);
        failing = FAIL_IO;
        cr_expect(hit, "mode %d: nothing failed", mode);
        cr_expect_eq(rc, 0);
        cr_expect_str_eq(trace, "-b -a", "mode %d", mode);
        /* (Out of memory, the log line itself may not be written.) */
        if (mode == 0)
            cr_expect_eq(logged_times("\"msg\":\"stopping a service without its deadline: no thread for it\""), 2);
        svc_registry_free(r);
    }
}

/* Out of memory, a registry or a service is not made, and nothing is half
 * made: the nth allocation failing, n = 1, 2, ... */
Test(service, out_of_memory_makes_nothing_half) {
    failing = FAIL_ALLOC;
    int refused = 0, n = 1;
    for (; n < 100; n++) {
        svc_registry *r = NULL;
        alloc_arm(n);
        int rc = svc_registry_new(1000, &r);
        if (rc == 0) rc = svc_add(r, &(svc_def){.name = "one"});
        bool hit = alloc_hit();
        alloc_arm(0);
        if (rc != 0) {
            cr_assert_eq(rc, CAIRN_ENOMEM, "allocation %d: %d", n, rc);
            refused++;
        } else {
            cr_assert_eq(svc_start_all(r, NULL, 0), 0);
            cr_assert_eq(svc_running(r), 1);
            svc_stop_all(r);
        }
        svc_registry_free(r);
        if (!hit) break;
    }
    failing = FAIL_IO;
    cr_expect_eq(refused, 2, "the registry, then the service");
}
#endif
#endif
