/*
 * test_logship.c — log shipping (src/audit/logship.h) into a real HTTP
 * endpoint: cairn's own HTTP server on a free loopback port, whose handler
 * records every POST and answers as the test sets (204, 500, 400, or after a
 * pause).  The test logs through log_write, as the server does.
 *
 * What must hold: under overload (the queue past half) debug and info lines
 * are sampled and counted while every warning and error arrives; a full
 * queue drops lines (counted) and never blocks the logging thread; the
 * flush timer fires on time while 16 threads log; the Loki encoding escapes
 * anything a line holds; a stop ships what is queued, or gives up at its
 * deadline and says how many lines it dropped.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/logship.h"
#include "http/http.h"

/* ---- the endpoint ---------------------------------------------------------------- */

enum { MODE_OK, MODE_FAIL, MODE_REJECT, MODE_SLOW };

static pthread_mutex_t rx_mu = PTHREAD_MUTEX_INITIALIZER;
static buf_t rx_all;               /* every body received, concatenated */
static atomic_int rx_posts, rx_mode, rx_slow_ms = 2000;
static atomic_bool rx_store = true;   /* false: bodies are only searched for "timer-mark" */
static atomic_int rx_marks;

static void rx_begin(void *app, http_req *r) {
    (void)app;
    r->api = "Receiver";
    r->ctx = calloc(1, sizeof(buf_t));
}

static void rx_body(void *app, http_req *r, const char *data, size_t n) {
    (void)app;
    buf_append(r->ctx, data, n);
}

static void rx_end(void *app, http_req *r) {
    (void)app;
    int mode = atomic_load(&rx_mode);
    if (mode == MODE_SLOW) usleep((useconds_t)atomic_load(&rx_slow_ms) * 1000);
    buf_t *b = r->ctx;
    buf_putc(b, '\0');
    for (const char *p = b->data; p && (p = strstr(p, "timer-mark")); p++) atomic_fetch_add(&rx_marks, 1);
    pthread_mutex_lock(&rx_mu);
    if (mode != MODE_FAIL && mode != MODE_REJECT && atomic_load(&rx_store)) {
        buf_append(&rx_all, b->data ? b->data : "", b->len - 1);
        buf_putc(&rx_all, '\n');
    }
    pthread_mutex_unlock(&rx_mu);
    atomic_fetch_add(&rx_posts, 1);
    http_respond(r, mode == MODE_FAIL ? 500 : mode == MODE_REJECT ? 400 : 204, "", 0);
}

static void rx_done(void *app, http_req *r, bool ok) {
    (void)app, (void)ok;
    buf_free(r->ctx);
    free(r->ctx);
}

static const http_handler rx_handler = {rx_begin, rx_body, rx_end, rx_done};

static http_server *rx_start(char *url, size_t cap) {
    http_options o = {.listen = "127.0.0.1:0", .connection_limit = 16, .connection_timeout = 30,
                      .max_header_bytes = 65536};
    http_server *s = NULL;
    int port = 0;
    char err[256] = "";
    cr_assert_eq(http_server_start(&o, &rx_handler, NULL, &s, &port, err, sizeof err), 0, "%s", err);
    snprintf(url, cap, "http://127.0.0.1:%d/loki/api/v1/push", port);
    buf_init(&rx_all);
    return s;
}

/* How many times marker occurs in what the endpoint accepted. */
static int rx_count(const char *marker) {
    int n = 0;
    pthread_mutex_lock(&rx_mu);
    for (const char *p = rx_all.data; p && (p = strstr(p, marker)); p++) n++;
    pthread_mutex_unlock(&rx_mu);
    return n;
}

static logship_options opts(const char *url) {
    return (logship_options){.url = url, .loki = true, .buffer_bytes = 64 * 1024, .batch_bytes = 1 << 20,
                             .batch_lines = 1000, .flush_ms = 50, .timeout_ms = 5000, .retry_max_ms = 200,
                             .sample = 10, .service = "test"};
}

static logship_stats stats(logship *ls) {
    logship_stats s;
    logship_stats_get(ls, &s);
    return s;
}

static void setup(void) {
    cr_assert_eq(core_init(), 0);
    log_set_fd(open("/dev/null", 1)); /* the lines still reach the sink */
    log_set_level(LOG_DEBUG);
}

/* ---- tests --------------------------------------------------------------------------- */

Test(logship, under_overload_info_is_sampled_and_every_warning_arrives, .init = setup, .timeout = 60) {
    char url[128];
    http_server *s = rx_start(url, sizeof url);
    atomic_store(&rx_mode, MODE_SLOW); /* the shipper sits in a 2 s POST while the queue fills */
    logship_options o = opts(url);
    o.sample = 5;
    logship *ls;
    cr_assert_eq(logship_start(&o, &ls), 0);
    log_write(LOG_INFO, NULL, "first", NULL);
    for (int i = 0; i < 200 && atomic_load(&rx_posts) == 0 && stats(ls).queued_lines > 0; i++) usleep(10000);
    char n[24];
    for (int i = 0; i < 3000; i++) {
        log_write(LOG_INFO, NULL, "flood-info", "i", log_int(n, i), NULL);
        if (i % 100 == 0) log_write(LOG_WARN, NULL, "flood-warn", "i", log_int(n, i), NULL);
        if (i % 300 == 0) log_write(LOG_ERROR, NULL, "flood-error", "i", log_int(n, i), NULL);
    }
    logship_stats st = stats(ls);
    cr_assert_gt(st.sampled, 0, "3000 lines never took the queue past half: sampling untested");
    cr_assert_leq(st.queued_bytes, o.buffer_bytes);
    atomic_store(&rx_mode, MODE_OK);
    uint64_t left = logship_stop(ls, 20000);
    cr_assert_eq(left, 0);
    cr_assert_eq(rx_count("flood-warn"), 30, "a warning was sampled or dropped: %d arrived", rx_count("flood-warn"));
    cr_assert_eq(rx_count("flood-error"), 10, "an error was sampled or dropped");
    cr_assert_lt(rx_count("flood-info"), 3000);
    http_server_stop(s);
}

Test(logship, a_full_queue_drops_and_counts_and_never_blocks, .init = setup, .timeout = 60) {
    char url[128];
    http_server *s = rx_start(url, sizeof url);
    atomic_store(&rx_slow_ms, 3000);
    atomic_store(&rx_mode, MODE_SLOW);
    logship_options o = opts(url);
    o.sample = 1; /* no sampling: the queue fills */
    logship *ls;
    cr_assert_eq(logship_start(&o, &ls), 0);
    log_write(LOG_INFO, NULL, "first", NULL);
    for (int i = 0; i < 200 && stats(ls).queued_lines > 0; i++) usleep(10000);
    int64_t t0 = time_mono_ns();
    for (int i = 0; i < 20000; i++) log_write(LOG_INFO, NULL, "filler line with some length to it", NULL);
    int64_t took_ms = (time_mono_ns() - t0) / 1000000;
    logship_stats st = stats(ls);
    cr_assert_gt(st.dropped, 0);
    cr_assert_leq(st.queued_bytes, o.buffer_bytes);
    /* Not a speed assertion: the endpoint holds the shipper for 3 s, and
     * logging waited for none of it. */
    cr_assert_lt(took_ms, 3000, "logging waited for the endpoint (%lld ms)", (long long)took_ms);
    atomic_store(&rx_mode, MODE_OK);
    logship_stop(ls, 20000);
    http_server_stop(s);
}

typedef struct {
    int id;
    atomic_bool *stop;
} emitter;

static void *emit_main(void *arg) {
    emitter *e = arg;
    char n[24];
    while (!atomic_load(e->stop)) log_write(LOG_DEBUG, NULL, "busy", "thread", log_int(n, e->id), NULL);
    return NULL;
}

Test(logship, the_flush_timer_fires_while_16_threads_log, .init = setup, .timeout = 120) {
    char url[128];
    http_server *s = rx_start(url, sizeof url);
    atomic_store(&rx_store, false);
    logship_options o = opts(url);
    o.batch_lines = 100000; /* rarely full: the timer sends */
    o.buffer_bytes = 1 << 20;
    o.flush_ms = 200;
    logship *ls;
    cr_assert_eq(logship_start(&o, &ls), 0);
    atomic_bool stop = false;
    pthread_t th[16];
    emitter em[16];
    for (int i = 0; i < 16; i++) {
        em[i] = (emitter){i, &stop};
        pthread_create(&th[i], NULL, emit_main, &em[i]);
    }
    /* Each marked line (a warning: never sampled) must be shipped by a
     * batch the timer sent, while the threads go on logging. */
    char n[24];
    for (int i = 0; i < 5; i++) {
        int before = atomic_load(&rx_marks);
        log_write(LOG_WARN, NULL, "timer-mark", "i", log_int(n, i), NULL);
        int64_t t0 = time_mono_ns();
        while (atomic_load(&rx_marks) == before && (time_mono_ns() - t0) / 1000000 < 15000) usleep(5000);
        cr_assert_eq(atomic_load(&rx_marks), before + 1, "mark %d not shipped within 15 s while 16 threads logged", i);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 16; i++) pthread_join(th[i], NULL);
    cr_assert_gt(stats(ls).lines_sent, 1000, "the threads' lines did not flow: the load proves nothing");
    logship_stop(ls, 20000);
    http_server_stop(s);
}

Test(logship, a_stop_gives_up_at_its_deadline_and_says_how_much, .init = setup, .timeout = 60) {
    char url[128];
    http_server *s = rx_start(url, sizeof url);
    atomic_store(&rx_mode, MODE_FAIL);
    logship *ls;
    logship_options o = opts(url);
    cr_assert_eq(logship_start(&o, &ls), 0);
    for (int i = 0; i < 10; i++) log_write(LOG_INFO, NULL, "doomed", NULL);
    for (int i = 0; i < 300 && stats(ls).failures < 2; i++) usleep(10000);
    cr_assert_geq(stats(ls).failures, 2);
    uint64_t left = logship_stop(ls, 300);
    cr_assert_eq(left, 10, "the stop said %llu lines were left", (unsigned long long)left);
    http_server_stop(s);
}

Test(logship, a_rejected_batch_is_not_retried, .init = setup, .timeout = 60) {
    char url[128];
    http_server *s = rx_start(url, sizeof url);
    atomic_store(&rx_mode, MODE_REJECT);
    logship *ls;
    logship_options o = opts(url);
    cr_assert_eq(logship_start(&o, &ls), 0);
    log_write(LOG_INFO, NULL, "refused", NULL);
    for (int i = 0; i < 300 && stats(ls).rejected_lines == 0; i++) usleep(10000);
    logship_stats st = stats(ls);
    cr_assert_eq(st.rejected_lines, 1);
    cr_assert_eq(st.retries, 0);
    cr_assert_eq(atomic_load(&rx_posts), 1);
    logship_stop(ls, 1000);
    http_server_stop(s);
}

Test(logship, loki_bodies_are_valid_json_whatever_the_lines_hold) {
    const char *lines[] = {"{\"msg\":\"quote \\\" and backslash \\\\\"}", "ctl \x01\x1f tab\t nl\n",
                           "utf8 \xc3\xa9 and invalid \xff\xfe", ""};
    size_t lens[] = {strlen(lines[0]), strlen(lines[1]), strlen(lines[2]), 0};
    log_level lv[] = {LOG_INFO, LOG_WARN, LOG_INFO, LOG_ERROR};
    int64_t ts[] = {1, 2, 3, 4};
    buf_t b;
    buf_init(&b);
    cr_assert_eq(logship_encode(true, "svc\"x", lines, lens, lv, ts, 4, &b), 0);
    json_error_t err;
    json_t *doc = json_loadb(b.data, b.len, 0, &err);
    cr_assert_not_null(doc, "not JSON: %s in %.*s", err.text, (int)b.len, b.data);
    json_t *streams = json_object_get(doc, "streams");
    cr_assert_eq(json_array_size(streams), 3, "one stream per level present");
    size_t values = 0;
    for (size_t i = 0; i < json_array_size(streams); i++)
        values += json_array_size(json_object_get(json_array_get(streams, i), "values"));
    cr_assert_eq(values, 4);
    json_t *first = json_array_get(json_object_get(json_array_get(streams, 0), "values"), 0);
    cr_assert_str_eq(json_string_value(json_array_get(first, 0)), "1000000");
    cr_assert_str_eq(json_string_value(json_array_get(first, 1)), lines[0]);
    json_t *third = json_array_get(json_object_get(json_array_get(streams, 0), "values"), 1);
    cr_assert_str_eq(json_string_value(json_array_get(third, 1)), "utf8 \xc3\xa9 and invalid \xef\xbf\xbd\xef\xbf\xbd");
    json_decref(doc);
    cr_assert_eq(logship_encode(false, "svc", lines, lens, lv, ts, 2, &b), 0);
    cr_assert_eq(b.len, lens[0] + lens[1] + 2);
    buf_free(&b);
}
