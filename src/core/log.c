/*
 * log.c — one JSON object per line: {"ts","level","msg","request_id", fields...}.
 *
 * A line is formatted into a stack buffer (spilling to the heap only for huge
 * fields) and written with a single write(2), so lines from many threads never
 * interleave and logging takes no lock.  Callers are responsible for never
 * passing secrets as fields; the access log passes only vetted fields.
 */
#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static log_level g_level = LOG_INFO;
static int g_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The sink (log shipping): called with every line written, under a read
 * lock that log_set_sink takes for writing, so a sink is never called after
 * it was removed.  A sink that logs does not hear its own lines. */
static pthread_rwlock_t sink_lock = PTHREAD_RWLOCK_INITIALIZER;
static log_sink_fn g_sink;
static void *g_sink_ud;
static int g_has_sink;
static __thread bool in_sink;

void log_set_sink(log_sink_fn fn, void *ud) {
    pthread_rwlock_wrlock(&sink_lock);
    g_sink = fn;
    g_sink_ud = ud;
    __atomic_store_n(&g_has_sink, fn != NULL, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&sink_lock);
}

static void to_sink(log_level lvl, int64_t ts_ms, const char *line, size_t len) {
    if (!__atomic_load_n(&g_has_sink, __ATOMIC_ACQUIRE) || in_sink) return;
    pthread_rwlock_rdlock(&sink_lock);
    if (g_sink) {
        in_sink = true;
        g_sink(g_sink_ud, lvl, ts_ms, line, len);
        in_sink = false;
    }
    pthread_rwlock_unlock(&sink_lock);
}

void log_set_level(log_level lvl) { g_level = lvl; }
void log_set_fd(int fd) { g_fd = fd; }

int log_level_parse(const char *s, log_level *out) {
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0) { *out = (log_level)i; return 0; }
    return CAIRN_EINVAL;
}

const char *log_int(char buf[24], long long v) {
    snprintf(buf, 24, "%lld", v);
    return buf;
}

static void emit(log_level lvl, const char *request_id, const char *msg, va_list ap) {
    buf_t b;
    buf_init(&b);
    buf_reserve(&b, 512);
    char ts[40];
    int64_t now_ms = time_now_ms();
    time_fmt_iso8601(now_ms, ts, sizeof ts);
    buf_puts(&b, "{\"ts\":\"");
    buf_puts(&b, ts);
    buf_puts(&b, "\",\"level\":\"");
    buf_puts(&b, level_names[lvl]);
    buf_puts(&b, "\",\"msg\":\"");
    buf_json_escape(&b, msg, strlen(msg));
    buf_putc(&b, '"');
    if (request_id && *request_id) {
        buf_puts(&b, ",\"request_id\":\"");
        buf_json_escape(&b, request_id, strlen(request_id));
        buf_putc(&b, '"');
    }
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        buf_puts(&b, ",\"");
        buf_json_escape(&b, k, strlen(k));
        buf_puts(&b, "\":\"");
        if (v) buf_json_escape(&b, v, strlen(v));
        buf_putc(&b, '"');
    }
    buf_puts(&b, "}\n");
    if (!b.oom) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t w = write(g_fd, b.data + off, b.len - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
        to_sink(lvl, now_ms, b.data, b.len - 1); /* without the newline */
    }
    buf_free(&b);
}

void log_write(log_level lvl, const char *request_id, const char *msg, ...) {
    if (lvl < g_level) return;
    va_list ap;
    va_start(ap, msg);
    emit(lvl, request_id, msg, ap);
    va_end(ap);
}

static void emit_plain(log_level lvl, const char *request_id, const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    emit(lvl, request_id, msg, ap);
    va_end(ap);
}

void log_msgf(log_level lvl, const char *request_id, const char *fmt, ...) {
    if (lvl < g_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit_plain(lvl, request_id, msg, NULL);
}
