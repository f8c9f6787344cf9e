/*
 * fault.c — fault injection and crash points for the fault-injection build
 * (meson -Dfaults=true, which defines CAIRN_FAULTS; without it every call
 * below is an inline no-op in core.h and this file compiles to nothing).
 *
 * The I/O calls that decide durability are sites (core.h: data.open,
 * data.write, data.fsync, data.rename, data.unlink; the same for meta, seen
 * through a SQLite VFS shim; net.send and net.recv for the shard API).  A
 * spec arms a counter over the sites it selects; the nth call counted (and,
 * with count > 1 or 0, the ones after it) fails with the chosen errno, or,
 * with action=abort, the process aborts right before it: a crash at step n
 * of whatever the process is doing.  A test loops n over every call an
 * operation makes, until a run ends without the fault being reached.
 *
 * Spec (';' or newline separated):  sites=data.*,meta.write  nth=N
 *   errno=EIO|ENOSPC  count=K (0 = every call from the nth on; default 1)
 *   action=fail|abort  pause=NAME:MS[:COUNT] (fault_point NAME sleeps MS ms,
 *   for tests that widen a race window; only its first COUNT times when
 *   given)  status=NAME:CODE[:COUNT] (fault_status NAME returns the HTTP
 *   status CODE, its first COUNT times when given: the audit store's test
 *   mode answers with it)  window=NAME (count only between the
 *   points NAME.begin and NAME.end, e.g. one rebalance pass, so a
 *   background thread's calls around it do not move the nth call)
 *   window_scope=thread|process (thread: count only the calls of the thread
 *   inside the window, e.g. one S3 request's, not the audit shipper's or a
 *   job worker's made meanwhile; default process).  Set at start by CAIRN_TEST_FAULT, or
 *   re-read from the file CAIRN_TEST_FAULT_FILE names on fault_reload()
 *   (the services call it on SIGUSR1), which also resets the counter.  Each
 *   injection is logged ("fault injected", with the site and call number) so
 *   a test can tell whether its run reached the fault.
 */
#include "core/core.h"

#ifdef CAIRN_FAULTS

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *const site_names[FAULT__COUNT] = {
    [FAULT_DATA_OPEN] = "data.open",     [FAULT_DATA_WRITE] = "data.write", [FAULT_DATA_FSYNC] = "data.fsync",
    [FAULT_DATA_RENAME] = "data.rename", [FAULT_DATA_UNLINK] = "data.unlink",
    [FAULT_META_OPEN] = "meta.open",     [FAULT_META_WRITE] = "meta.write", [FAULT_META_FSYNC] = "meta.fsync",
    [FAULT_META_UNLINK] = "meta.unlink", [FAULT_META_BIND] = "meta.bind",   [FAULT_META_WAL] = "meta.wal",
    [FAULT_NET_SEND] = "net.send",       [FAULT_NET_RECV] = "net.recv",     [FAULT_NODE_FLOOR] = "node.floor",
    [FAULT_AUDIT_WRITE] = "audit.write", [FAULT_AUDIT_FSYNC] = "audit.fsync",
    [FAULT_PG_SEND] = "pg.send",         [FAULT_PG_ANSWER] = "pg.answer",
};

#define MAX_PAUSES 8

typedef struct {
    bool sites[FAULT__COUNT];
    int64_t nth;
    int64_t count;             /* 0 = unlimited */
    int err;
    bool abort_process;
    struct {
        char name[64];
        int ms;
        int64_t left;          /* pauses still to make; -1 = every time */
    } pauses[MAX_PAUSES];
    int npauses;
    struct {
        char name[64];
        int status;
        int64_t left;          /* answers still to give; -1 = every time */
    } statuses[MAX_PAUSES];
    int nstatuses;
    char window[64];           /* "" = always counting */
    bool window_thread;        /* window_scope=thread: only the opening thread's calls */
} fault_spec;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fault_spec spec;
static atomic_bool armed;
static atomic_int_fast64_t calls;
static atomic_bool in_window;
/* window_scope=thread: a thread is inside the window while the generation it
 * opened it in is the current one (each spec armed is a new generation, so a
 * window a thread never closed does not outlive its spec). */
static atomic_int_fast64_t generation;
static _Thread_local int_fast64_t thread_window_gen;

const char *fault_site_name(fault_site site) {
    return site >= 0 && site < FAULT__COUNT ? site_names[site] : "?";
}

/* Does pattern ("data.*", "*", "meta.write") select name? */
static bool site_matches(const char *pattern, size_t n, const char *name) {
    if (n == 1 && pattern[0] == '*') return true;
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        return strncmp(name, pattern, n - 1) == 0;
    return strlen(name) == n && strncmp(name, pattern, n) == 0;
}

static int parse_spec(const char *text, fault_spec *out) {
    memset(out, 0, sizeof *out);
    out->count = 1;
    out->err = EIO;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ";\n");
        char item[256];
        if (len >= sizeof item) return CAIRN_EINVAL;
        memcpy(item, p, len);
        item[len] = '\0';
        p += len;
        if (*p) p++;
        char *v = strchr(item, '=');
        if (!v) {
            if (item[0] && strspn(item, " \t\r") != strlen(item)) return CAIRN_EINVAL;
            continue;
        }
        *v++ = '\0';
        if (!strcmp(item, "sites")) {
            for (char *s = v; *s;) {
                size_t n = strcspn(s, ",");
                bool any = false;
                for (int i = 0; i < FAULT__COUNT; i++)
                    if (site_matches(s, n, site_names[i])) out->sites[i] = any = true;
                if (!any) return CAIRN_EINVAL;
                s += n;
                if (*s == ',') s++;
            }
        } else if (!strcmp(item, "nth")) {
            out->nth = strtoll(v, NULL, 10);
        } else if (!strcmp(item, "count")) {
            out->count = strtoll(v, NULL, 10);
        } else if (!strcmp(item, "errno")) {
            if (!strcasecmp(v, "EIO")) out->err = EIO;
            else if (!strcasecmp(v, "ENOSPC")) out->err = ENOSPC;
            else return CAIRN_EINVAL;
        } else if (!strcmp(item, "action")) {
            if (!strcmp(v, "abort")) out->abort_process = true;
            else if (strcmp(v, "fail") != 0) return CAIRN_EINVAL;
        } else if (!strcmp(item, "window")) {
            if (strlen(v) >= sizeof out->window) return CAIRN_EINVAL;
            snprintf(out->window, sizeof out->window, "%s", v);
        } else if (!strcmp(item, "window_scope")) {
            if (!strcmp(v, "thread")) out->window_thread = true;
            else if (strcmp(v, "process") != 0) return CAIRN_EINVAL;
        } else if (!strcmp(item, "pause") || !strcmp(item, "status")) {
            /* NAME:VALUE[:COUNT] (point names have no ':') */
            bool pause = !strcmp(item, "pause");
            char *c1 = strchr(v, ':');
            if (!c1 || (size_t)(c1 - v) >= sizeof out->pauses[0].name ||
                (pause ? out->npauses : out->nstatuses) == MAX_PAUSES)
                return CAIRN_EINVAL;
            *c1 = '\0';
            char *end = NULL;
            long value = strtol(c1 + 1, &end, 10);
            int64_t left = -1;
            if (*end == ':') {
                left = strtoll(end + 1, &end, 10);
                if (left <= 0) return CAIRN_EINVAL;
            }
            if (*end || end == c1 + 1 || value < 0 || (!pause && (value < 100 || value > 599)))
                return CAIRN_EINVAL;
            if (pause) {
                snprintf(out->pauses[out->npauses].name, sizeof out->pauses[0].name, "%s", v);
                out->pauses[out->npauses].ms = (int)value;
                out->pauses[out->npauses++].left = left;
            } else {
                snprintf(out->statuses[out->nstatuses].name, sizeof out->statuses[0].name, "%s", v);
                out->statuses[out->nstatuses].status = (int)value;
                out->statuses[out->nstatuses++].left = left;
            }
        } else {
            return CAIRN_EINVAL;
        }
    }
    return 0;
}

int fault_configure(const char *text) {
    fault_spec s;
    if (!text) text = "";
    int rc = parse_spec(text, &s);
    if (rc != 0) {
        log_write(LOG_ERROR, NULL, "fault spec not understood", "spec", text, NULL);
        return rc;
    }
    pthread_mutex_lock(&mu);
    spec = s;
    atomic_store(&calls, 0);
    atomic_store(&in_window, false);
    atomic_fetch_add(&generation, 1);
    atomic_store(&armed, s.nth > 0 || s.npauses > 0 || s.nstatuses > 0);
    pthread_mutex_unlock(&mu);
    log_write(LOG_WARN, NULL, "fault injection armed", "spec", text, NULL);
    return 0;
}

int fault_reload(void) {
    const char *path = getenv("CAIRN_TEST_FAULT_FILE");
    if (!path || !*path) return CAIRN_ENOTFOUND;
    FILE *f = fopen(path, "r");
    if (!f) return CAIRN_EIO;
    char text[2048];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return fault_configure(text);
}

void fault_init_from_env(void) {
    const char *s = getenv("CAIRN_TEST_FAULT");
    if (s && *s) fault_configure(s);
}

int fault_inject(fault_site site) {
    if (!atomic_load_explicit(&armed, memory_order_relaxed)) return 0;
    pthread_mutex_lock(&mu);
    bool inside = !spec.window[0] ||
                  (spec.window_thread ? thread_window_gen == atomic_load(&generation) : atomic_load(&in_window));
    bool selected = site >= 0 && site < FAULT__COUNT && spec.sites[site] && spec.nth > 0 && inside;
    int64_t nth = spec.nth, count = spec.count;
    int err = spec.err;
    bool abort_process = spec.abort_process;
    pthread_mutex_unlock(&mu);
    if (!selected) return 0;
    int64_t n = atomic_fetch_add(&calls, 1) + 1;
    if (n < nth || (count > 0 && n >= nth + count)) return 0;
    char cn[24];
    log_write(LOG_WARN, NULL, abort_process ? "fault injected: aborting" : "fault injected", "site",
              site_names[site], "call", log_int(cn, n), "errno", err == ENOSPC ? "ENOSPC" : "EIO", NULL);
    if (abort_process) abort();
    return err;
}

void fault_point(const char *name) {
    if (!atomic_load_explicit(&armed, memory_order_relaxed)) return;
    int ms = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < spec.npauses; i++)
        if (!strcmp(spec.pauses[i].name, name) && spec.pauses[i].left != 0) {
            ms = spec.pauses[i].ms;
            if (spec.pauses[i].left > 0) spec.pauses[i].left--;
        }
    size_t wl = strlen(spec.window);
    if (wl && !strncmp(name, spec.window, wl)) {
        if (!strcmp(name + wl, ".begin")) {
            atomic_store(&in_window, true);
            thread_window_gen = atomic_load(&generation);
        } else if (!strcmp(name + wl, ".end")) {
            atomic_store(&in_window, false);
            thread_window_gen = 0;
        }
    }
    pthread_mutex_unlock(&mu);
    if (ms <= 0) return;
    log_write(LOG_WARN, NULL, "fault point: pausing", "point", name, NULL);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int fault_status(const char *name) {
    if (!atomic_load_explicit(&armed, memory_order_relaxed)) return 0;
    int status = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < spec.nstatuses; i++)
        if (!strcmp(spec.statuses[i].name, name) && spec.statuses[i].left != 0) {
            status = spec.statuses[i].status;
            if (spec.statuses[i].left > 0) spec.statuses[i].left--;
        }
    pthread_mutex_unlock(&mu);
    if (status) {
        char st[24];
        log_write(LOG_WARN, NULL, "fault point: answering", "point", name, "status", log_int(st, status), NULL);
    }
    return status;
}

#endif
