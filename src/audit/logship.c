/*
 * logship.c — log shipping (logship.h): a bounded queue the log sink fills,
 * one thread that batches and POSTs it.
 */
#include "audit/logship.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"

#define BACKOFF_MIN_MS 100
#define OPEN_AFTER 3           /* failures in a row that open the breaker */

typedef struct qline {
    struct qline *next;
    log_level lvl;
    int64_t ts_ms;             /* when it was logged (wall clock, for the endpoint) */
    int64_t queued_ms;         /* when it was queued (monotonic, for the flush timer) */
    size_t len;
    char text[];
} qline;

struct logship {
    logship_options o;
    char *url, *service;
    http_client *hc;
    pthread_t th;
    unsigned seed;             /* the backoff's jitter, seeded per process */

    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t cv;         /* lines queued, or stop */
    qline *head, *tail;
    size_t qbytes;
    uint64_t qlines;
    uint64_t sample_n;
    bool stopping;
    int64_t deadline_ms;       /* monotonic: stop shipping then */
    int consecutive;           /* failed attempts in a row */
    logship_stats st;
};

static int64_t mono_ms(void) { return time_mono_ns() / 1000000; }

static void drop_line_locked(logship *ls, qline *l) {
    ls->qbytes -= l->len;
    ls->qlines--;
    free(l);
}

/* The sink: never blocks on anything but the queue's lock. */
static void sink(void *ud, log_level lvl, int64_t ts_ms, const char *text, size_t len) {
    logship *ls = ud;
    bool important = lvl >= LOG_WARN;
    if (len > ls->o.batch_bytes) len = ls->o.batch_bytes; /* one line never outgrows a batch */
    pthread_mutex_lock(&ls->mu);
    if (ls->stopping) {
        pthread_mutex_unlock(&ls->mu);
        return;
    }
    if (!important && ls->qbytes * 2 > ls->o.buffer_bytes && ls->o.sample > 1 &&
        ls->sample_n++ % (uint64_t)ls->o.sample != 0) {
        ls->st.sampled++;
        pthread_mutex_unlock(&ls->mu);
        return;
    }
    if (ls->qbytes + len > ls->o.buffer_bytes) {
        if (!important || len > ls->o.buffer_bytes) {
            ls->st.dropped++;
            pthread_mutex_unlock(&ls->mu);
            return;
        }
        /* A warning or error takes the place of the oldest debug or info
         * lines; of the oldest lines when there are none. */
        qline **pp = &ls->head, *prev = NULL;
        while (*pp && ls->qbytes + len > ls->o.buffer_bytes) {
            qline *l = *pp;
            if (l->lvl >= LOG_WARN) {
                prev = l;
                pp = &l->next;
                continue;
            }
            *pp = l->next;
            if (ls->tail == l) ls->tail = prev;
            drop_line_locked(ls, l);
            ls->st.dropped++;
        }
        while (ls->head && ls->qbytes + len > ls->o.buffer_bytes) {
            qline *old = ls->head;
            ls->head = old->next;
            if (!ls->head) ls->tail = NULL;
            drop_line_locked(ls, old);
            ls->st.dropped++;
        }
    }
    qline *l = malloc(sizeof *l + len);
    if (!l) {
        ls->st.dropped++;
        pthread_mutex_unlock(&ls->mu);
        return;
    }
    l->next = NULL;
    l->lvl = lvl;
    l->ts_ms = ts_ms;
    l->queued_ms = mono_ms();
    l->len = len;
    memcpy(l->text, text, len);
    if (ls->tail) ls->tail->next = l;
    else ls->head = l;
    ls->tail = l;
    ls->qbytes += len;
    ls->qlines++;
    if (ls->qlines == 1 || ls->qlines >= (uint64_t)ls->o.batch_lines) pthread_cond_signal(&ls->cv);
    pthread_mutex_unlock(&ls->mu);
}

/* ---- encoding --------------------------------------------------------------------------- */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    unsigned cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t i = 1; i < len; i++) cp = cp << 6 | (p[i] & 0x3f);
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0; /* overlong, surrogate */
    return len;
}

/* Appends s with every byte that is not valid UTF-8 replaced by U+FFFD (an
 * endpoint refuses a batch holding one); escaped for a JSON string or raw. */
static void append_text(buf_t *out, const char *s, size_t n, bool escape) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        size_t l;
        while (run < n && (l = utf8_seq(p + run, n - run)) > 0) run += l;
        if (escape) buf_json_escape(out, s + i, run - i);
        else buf_append(out, s + i, run - i);
        if (run < n) {
            buf_puts(out, escape ? "\\ufffd" : "\xef\xbf\xbd");
            run++;
        }
        i = run;
    }
}

int logship_encode(bool loki, const char *service, const char *const *lines, const size_t *lens,
                   const log_level *lvls, const int64_t *ts_ms, int n, buf_t *out) {
    buf_reset(out);
    if (!loki) {
        for (int i = 0; i < n; i++) {
            append_text(out, lines[i], lens[i], false);
            buf_putc(out, '\n');
        }
        return out->oom ? CAIRN_ENOMEM : 0;
    }
    /* One stream per level (a Loki label), lines in order within each. */
    buf_puts(out, "{\"streams\":[");
    bool first_stream = true;
    for (int lv = LOG_DEBUG; lv <= LOG_ERROR; lv++) {
        bool any = false;
        for (int i = 0; i < n && !any; i++) any = (int)lvls[i] == lv;
        if (!any) continue;
        if (!first_stream) buf_putc(out, ',');
        first_stream = false;
        buf_puts(out, "{\"stream\":{\"job\":\"cairn\",\"service\":\"");
        buf_json_escape(out, service, strlen(service));
        buf_printf(out, "\",\"level\":\"%s\"},\"values\":[", level_names[lv]);
        bool first = true;
        for (int i = 0; i < n; i++) {
            if ((int)lvls[i] != lv) continue;
            if (!first) buf_putc(out, ',');
            first = false;
            buf_printf(out, "[\"%lld000000\",\"", (long long)ts_ms[i]);
            append_text(out, lines[i], lens[i], true);
            buf_puts(out, "\"]");
        }
        buf_puts(out, "]}");
    }
    buf_puts(out, "]}");
    return out->oom ? CAIRN_ENOMEM : 0;
}

/* ---- the shipper -------------------------------------------------------------------------- */

/* Waits until ms (monotonic) or a stop; true when stopping. */
static bool wait_until_locked(logship *ls, int64_t until_ms) {
    while (!ls->stopping) {
        int64_t left = until_ms - mono_ms();
        if (left <= 0) return false;
        struct timespec ts = time_deadline(CLOCK_REALTIME, left);
        pthread_cond_timedwait(&ls->cv, &ls->mu, &ts);
    }
    return true;
}

/* Sends one batch, retrying what may succeed later; false when it gave up
 * at the stop's deadline. */
static bool send_batch(logship *ls, const buf_t *body, int nlines) {
    const char *ctype = ls->o.loki ? "application/json" : "application/x-ndjson";
    for (int attempt = 0;; attempt++) {
        long status = 0;
        int rc = http_client_post(ls->hc, ls->url, ctype, NULL, body->data, body->len, &status, NULL);
        pthread_mutex_lock(&ls->mu);
        if (rc == 0 && status >= 200 && status < 300) {
            ls->st.lines_sent += (uint64_t)nlines;
            ls->st.batches_sent++;
            ls->consecutive = 0;
            ls->st.breaker = 0;
            pthread_mutex_unlock(&ls->mu);
            return true;
        }
        if (rc == 0 && status >= 400 && status < 500 && status != 408 && status != 429) {
            /* Refused as it is: sending it again cannot help. */
            ls->st.rejected_batches++;
            ls->st.rejected_lines += (uint64_t)nlines;
            ls->consecutive = 0;
            pthread_mutex_unlock(&ls->mu);
            return true;
        }
        ls->st.failures++;
        if (++ls->consecutive >= OPEN_AFTER) ls->st.breaker = 1;
        int64_t sleep_ms = backoff_full_jitter(attempt, BACKOFF_MIN_MS, ls->o.retry_max_ms, &ls->seed);
        int64_t until = mono_ms() + sleep_ms;
        if (ls->stopping && until > ls->deadline_ms) until = ls->deadline_ms;
        bool stop = wait_until_locked(ls, until);
        if (stop) {
            /* Stopping: keep trying until the deadline, at the same pace. */
            pthread_mutex_unlock(&ls->mu);
            while (mono_ms() < until) usleep(1000);
            pthread_mutex_lock(&ls->mu);
        }
        bool give_up = ls->stopping && mono_ms() >= ls->deadline_ms;
        if (!give_up) ls->st.retries++;
        pthread_mutex_unlock(&ls->mu);
        if (give_up) return false;
    }
}

static void *shipper_main(void *arg) {
    pthread_setname_np(pthread_self(), "log-ship");
    logship *ls = arg;
    int cap = ls->o.batch_lines;
    const char **lines = calloc((size_t)cap, sizeof *lines);
    size_t *lens = calloc((size_t)cap, sizeof *lens);
    log_level *lvls = calloc((size_t)cap, sizeof *lvls);
    int64_t *ts = calloc((size_t)cap, sizeof *ts);
    qline **taken = calloc((size_t)cap, sizeof *taken);
    buf_t body;
    buf_init(&body);
    bool gave_up = false;
    pthread_mutex_lock(&ls->mu);
    for (;;) {
        /* Wait for a full batch, or the oldest line's flush time, or a stop. */
        while (!ls->stopping && ls->qlines < (uint64_t)cap) {
            if (!ls->head) {
                pthread_cond_wait(&ls->cv, &ls->mu);
                continue;
            }
            int64_t due = ls->head->queued_ms + ls->o.flush_ms;
            if (mono_ms() >= due) break;
            wait_until_locked(ls, due);
        }
        if (!ls->head || gave_up || !lines || !lens || !lvls || !ts || !taken) break;
        int n = 0;
        size_t bytes = 0;
        while (ls->head && n < cap && (n == 0 || bytes + ls->head->len <= ls->o.batch_bytes)) {
            qline *l = ls->head;
            ls->head = l->next;
            if (!ls->head) ls->tail = NULL;
            ls->qbytes -= l->len;
            ls->qlines--;
            bytes += l->len;
            taken[n] = l;
            lines[n] = l->text;
            lens[n] = l->len;
            lvls[n] = l->lvl;
            ts[n] = l->ts_ms;
            n++;
        }
        pthread_mutex_unlock(&ls->mu);
        bool ok = logship_encode(ls->o.loki, ls->service, lines, lens, lvls, ts, n, &body) == 0 &&
                  send_batch(ls, &body, n);
        for (int i = 0; i < n; i++) free(taken[i]);
        pthread_mutex_lock(&ls->mu);
        if (!ok) {
            ls->st.dropped += (uint64_t)n;
            gave_up = ls->stopping;
        }
    }
    /* Stopped (or out of memory): whatever is left is dropped, and counted. */
    while (ls->head) {
        qline *l = ls->head;
        ls->head = l->next;
        drop_line_locked(ls, l);
        ls->st.dropped++;
    }
    ls->tail = NULL;
    pthread_mutex_unlock(&ls->mu);
    buf_free(&body);
    free(lines);
    free(lens);
    free(lvls);
    free(ts);
    free(taken);
    return NULL;
}

/* ---- life ---------------------------------------------------------------------------------- */

static void release(logship *ls) {
    http_client_free(ls->hc);
    free(ls->url);
    free(ls->service);
    pthread_cond_destroy(&ls->cv);
    pthread_mutex_destroy(&ls->mu);
    free(ls);
}

int logship_start(const logship_options *o, logship **out) {
    *out = NULL;
    if (!o->url || !o->url[0]) return CAIRN_EINVAL;
    logship *ls = calloc(1, sizeof *ls);
    if (!ls) return CAIRN_ENOMEM;
    ls->o = *o;
    if (ls->o.buffer_bytes < 64 * 1024) ls->o.buffer_bytes = 64 * 1024;
    if (ls->o.batch_lines < 1) ls->o.batch_lines = 1000;
    if (ls->o.batch_bytes < 4096) ls->o.batch_bytes = 1 << 20;
    if (ls->o.flush_ms < 1) ls->o.flush_ms = 1000;
    if (ls->o.timeout_ms < 1) ls->o.timeout_ms = 5000;
    if (ls->o.sample < 1) ls->o.sample = 1;
    ls->url = strdup(o->url);
    ls->service = strdup(o->service && o->service[0] ? o->service : "cairn");
    rand_bytes(&ls->seed, sizeof ls->seed);
    pthread_mutex_init(&ls->mu, NULL);
    pthread_cond_init(&ls->cv, NULL);
    int rc = ls->url && ls->service ? http_client_new(ls->o.timeout_ms, ls->o.timeout_ms, 4096, &ls->hc) : CAIRN_ENOMEM;
    if (rc == 0) rc = http_client_set_ca(ls->hc, o->tls_ca);
    ls->o.tls_ca = NULL;
    if (rc == 0 && pthread_create(&ls->th, NULL, shipper_main, ls) != 0) rc = CAIRN_ENOMEM;
    if (rc != 0) {
        release(ls);
        return rc;
    }
    log_set_sink(sink, ls);
    *out = ls;
    return 0;
}

uint64_t logship_stop(logship *ls, int deadline_ms) {
    if (!ls) return 0;
    log_set_sink(NULL, NULL);
    pthread_mutex_lock(&ls->mu);
    ls->stopping = true;
    ls->deadline_ms = mono_ms() + (deadline_ms > 0 ? deadline_ms : 0);
    pthread_cond_broadcast(&ls->cv);
    uint64_t dropped_before = ls->st.dropped;
    pthread_mutex_unlock(&ls->mu);
    pthread_join(ls->th, NULL);
    uint64_t left = ls->st.dropped - dropped_before;
    release(ls);
    return left;
}

void logship_stats_get(logship *ls, logship_stats *out) {
    pthread_mutex_lock(&ls->mu);
    *out = ls->st;
    out->queued_lines = ls->qlines;
    out->queued_bytes = ls->qbytes;
    pthread_mutex_unlock(&ls->mu);
}

void logship_render_metrics(logship *ls, buf_t *b) {
    if (!ls) return;
    logship_stats s;
    logship_stats_get(ls, &s);
    struct {
        const char *name, *help;
        uint64_t v;
        bool gauge;
    } m[] = {
        {"cairn_log_ship_lines_total", "Log lines the endpoint accepted.", s.lines_sent, false},
        {"cairn_log_ship_batches_total", "Batches of log lines the endpoint accepted.", s.batches_sent, false},
        {"cairn_log_ship_failures_total", "Batch sends that failed (5xx, 429, timeout, no connection).", s.failures,
         false},
        {"cairn_log_ship_retries_total", "Batch sends retried after a failure.", s.retries, false},
        {"cairn_log_ship_rejected_lines_total", "Log lines in batches the endpoint refused with a 4xx (not retried).",
         s.rejected_lines, false},
        {"cairn_log_ship_dropped_total", "Log lines dropped: the queue was full, or the stop's deadline passed.",
         s.dropped, false},
        {"cairn_log_ship_sampled_total", "Debug and info lines left out by sampling under overload.", s.sampled, false},
        {"cairn_log_ship_queued_lines", "Log lines waiting to be shipped.", s.queued_lines, true},
        {"cairn_log_ship_queued_bytes", "Bytes of log lines waiting to be shipped.", s.queued_bytes, true},
        {"cairn_log_ship_breaker_state", "The log endpoint's breaker: 0 closed, 1 open (failing, retried with backoff).",
         (uint64_t)s.breaker, true},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m[i].name, m[i].help, m[i].name,
                   m[i].gauge ? "gauge" : "counter", m[i].name, (unsigned long long)m[i].v);
}
