/*
 * fault_harness.h — what the fault-build unit tests share (test_meta_faults.c,
 * test_store_faults.c): the process's log captured in an unlinked temp file,
 * so a run can count the "fault injected" lines it caused, and malloc,
 * calloc and realloc wrapped so that the nth allocation of the process (or
 * every one from the nth on) returns NULL.  Include it once, in a test file
 * of the fault build only: it defines malloc.
 */
#ifndef CAIRN_TESTS_FAULT_HARNESS_H
#define CAIRN_TESTS_FAULT_HARNESS_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

static int log_fd = -1;

/* Points the process's log at an unlinked temp file (once per test process). */
static void log_capture(void) {
    if (log_fd >= 0) return;
    char path[] = "/tmp/cairn-test-faults-log-XXXXXX";
    log_fd = mkstemp(path);
    cr_assert_geq(log_fd, 0);
    unlink(path);
    /* Appending: after a truncation the logger's writes land at the start again. */
    cr_assert_eq(fcntl(log_fd, F_SETFL, O_APPEND), 0);
    log_set_fd(log_fd);
}

/* What a loop makes fail: the nth file call of the armed sites, or (where
 * the build lets the test wrap malloc) the nth memory allocation of the
 * process — just that one, or every one from the nth on until the call
 * returns (so that its cleanup runs out of memory too). */
typedef enum { FAIL_IO, FAIL_ALLOC, FAIL_ALLOC_ALL } fail_kind;
static fail_kind failing = FAIL_IO;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALLOC_FAILURES 0 /* their allocators would bypass the wrappers */
static void alloc_arm(long n) { (void)n; }
static bool alloc_hit(void) { return false; }
#else
#define ALLOC_FAILURES 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static _Atomic long alloc_fail_at, alloc_count;

static bool fail_this_one(void) {
    if (!atomic_load_explicit(&alloc_fail_at, memory_order_relaxed)) return false;
    long k = atomic_fetch_add(&alloc_count, 1) + 1;
    return failing == FAIL_ALLOC_ALL ? k >= atomic_load(&alloc_fail_at) : k == atomic_load(&alloc_fail_at);
}

void *malloc(size_t n) { return fail_this_one() ? NULL : __libc_malloc(n); }
void *calloc(size_t a, size_t b) { return fail_this_one() ? NULL : __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return fail_this_one() ? NULL : __libc_realloc(p, n); }

static void alloc_arm(long n) {
    atomic_store(&alloc_count, 0);
    atomic_store(&alloc_fail_at, n);
}

/* Whether the armed allocation was reached (allocates nothing). */
static bool alloc_hit(void) { return atomic_load(&alloc_count) >= atomic_load(&alloc_fail_at); }

/* pthread_create wrapped the same way: from the nth thread the process
 * creates on (0: none), creation fails with EAGAIN, as at the system's limit. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

static _Atomic long thread_fail_at, thread_count;

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "pthread_create");
    long at = atomic_load(&thread_fail_at);
    if (at && atomic_fetch_add(&thread_count, 1) + 1 >= at) return EAGAIN;
    return real(t, attr, fn, arg);
}

__attribute__((unused)) static void thread_arm(long n) {
    atomic_store(&thread_count, 0);
    atomic_store(&thread_fail_at, n);
}

/* Whether the armed creation was reached. */
__attribute__((unused)) static bool thread_hit(void) { return atomic_load(&thread_count) >= atomic_load(&thread_fail_at); }
#endif

/* How often pat occurs in the log since it was last truncated. */
__attribute__((unused)) static int logged_times(const char *pat) {
    off_t len = lseek(log_fd, 0, SEEK_END);
    char *text = malloc((size_t)len + 1);
    cr_assert_not_null(text);
    cr_assert_eq(pread(log_fd, text, (size_t)len, 0), len);
    text[len] = '\0';
    int n = 0;
    for (const char *p = text; (p = strstr(p, pat)); p++) n++;
    free(text);
    return n;
}

/* "fault injected" lines logged since the log was last truncated, at site
 * (NULL: any); with allocations failing, whether the armed one was reached. */
__attribute__((unused)) static int injected_at(const char *site) {
    if (failing != FAIL_IO) return site ? 0 : alloc_hit();
    char pat[96];
    if (site) snprintf(pat, sizeof pat, "\"msg\":\"fault injected\",\"site\":\"%s\"", site);
    else snprintf(pat, sizeof pat, "\"msg\":\"fault injected\"");
    return logged_times(pat);
}

#endif
