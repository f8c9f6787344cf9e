/*
 * test_http.c — the HTTP layer (src/http/server.c) with a small handler of
 * its own, over real sockets on loopback (IPv4 and IPv6).
 *
 * The handler picks what to do from the request path (see on_begin/on_end):
 * answer from the head, from the first body piece, at the end, with each of
 * the response setters, or not at all.  What it saw of the request comes
 * back in the response body, so every check is on bytes a client received.
 * Completion (the done callback and whether it reported completed_ok) is
 * counted in atomics and polled with a deadline.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http.h"

/* ---- the handler ---------------------------------------------------------------- */

static atomic_int dones, dones_ok, dones_failed;

static bool path_is(const http_req *r, const char *p) { return strcmp(r->raw_path, p) == 0; }

static void on_begin(void *app, http_req *r) {
    (void)app;
    r->api = "Test";
    if (path_is(r, "/begin-403")) {
        http_add_header(r, "Connection", "close");
        http_respond(r, 403, "refused from the head", 21);
    }
}

static void on_body(void *app, http_req *r, const char *data, size_t n) {
    (void)app;
    (void)data;
    (void)n;
    if (path_is(r, "/body-413")) http_respond(r, 413, "too much", 8);
}

static long stream_fn(void *ud, uint64_t pos, char *buf, size_t max) {
    const char *text = ud;
    size_t len = strlen(text);
    if (pos >= len) return -1;
    size_t n = len - pos < max ? len - pos : max;
    memcpy(buf, text + pos, n);
    return (long)n;
}

static long stream_fail(void *ud, uint64_t pos, char *buf, size_t max) {
    (void)ud;
    (void)buf;
    (void)max;
    if (pos == 0) {
        memcpy(buf, "part", 4);
        return 4;
    }
    return -1;
}

static atomic_int stream_freed;
static void stream_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&stream_freed, 1);
}

static void on_end(void *app, http_req *r) {
    (void)app;
    if (path_is(r, "/none")) return;   /* the server answers 500 for a handler that does not */
    if (path_is(r, "/take")) {
        char *body = strdup("taken body");
        http_respond_take(r, 200, body, strlen(body));
        return;
    }
    if (path_is(r, "/fd")) {
        FILE *f = tmpfile();
        fputs("0123456789", f);
        fflush(f);
        int fd = dup(fileno(f));
        fclose(f);
        http_respond_fd(r, 200, fd, 3, 4);
        return;
    }
    if (path_is(r, "/stream")) {
        http_respond_stream(r, 200, 12, stream_fn, "streamed 12b", stream_free);
        return;
    }
    if (path_is(r, "/stream-fail")) {
        http_respond_stream(r, 200, 100, stream_fail, NULL, stream_free);
        return;
    }
    if (path_is(r, "/headers")) {
        http_add_header(r, "X-Empty", "");
        http_add_header(r, "X-Bad", "a\r\nInjected: 1");
        http_add_header(r, "X-Good", "yes");
        http_respond(r, 204, "", 0);
        return;
    }
    /* Anything else: what the server made of the request. */
    char body[512];
    int n = snprintf(body, sizeof body,
                     "method=%s path=%s query=%s remote=%s cl=%lld chunked=%d nheaders=%zu many=%d in=%llu id=%s echo=[%s]",
                     r->method, r->raw_path, r->raw_query, r->remote_addr, (long long)r->content_length,
                     r->chunked_transfer, r->nheaders, r->too_many_headers, (unsigned long long)r->bytes_in,
                     r->request_id, http_header(r, "x-echo") ? http_header(r, "x-echo") : "(none)");
    int first = http_respond(r, 200, body, (size_t)n);
    int again = http_respond(r, 500, "second", 6);
    if (first != 0 || again != CAIRN_EINVAL) {
        /* Shows up as a wrong body: the first response stands either way. */
        r->api = "broken";
    }
    http_add_header(r, "X-Second-Respond", again == CAIRN_EINVAL ? "refused" : "accepted");
}

static void on_done(void *app, http_req *r, bool ok) {
    (void)app;
    (void)r;
    atomic_fetch_add(ok ? &dones_ok : &dones_failed, 1);
    atomic_fetch_add(&dones, 1);
}

/* The reply callback: counted; on /replace it swaps the response for a 503. */
static atomic_int replies, replies_sending, replies_refusal;

static void on_reply(void *app, http_req *r, bool will_send) {
    (void)app;
    atomic_fetch_add(&replies, 1);
    if (will_send) atomic_fetch_add(&replies_sending, 1);
    if (r->refusal && !strcmp(r->refusal, "InvalidRequest")) atomic_fetch_add(&replies_refusal, 1);
    if (will_send && path_is(r, "/replace")) {
        if (http_response_discard(r) == 0 && http_response_discard(r) == CAIRN_EINVAL)
            http_respond(r, 503, "replaced", 8);
    }
}

static const http_handler handler = {on_begin, on_body, on_end, on_done, on_reply};

/* ---- server and client helpers ---------------------------------------------------- */

static http_options base_options(const char *listen) {
    return (http_options){
        .listen = listen,
        .connection_limit = 64,
        .connection_timeout = 30,
        .max_header_bytes = 65536,
    };
}

static http_server *start(const http_options *o, int *port) {
    http_server *s = NULL;
    char err[256] = "";
    int rc = http_server_start(o, &handler, NULL, &s, port, err, sizeof err);
    cr_assert_eq(rc, 0, "start on %s: %s", o->listen, err);
    return s;
}

static int dial(int family, int port) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_loopback};
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    }
    cr_assert_eq(rc, 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *data, size_t n) {
    while (n) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
        if (w <= 0) return;    /* the server may close first; what it sent is checked */
        data += w;
        n -= (size_t)w;
    }
}

/* Reads until the server closes the connection (or 10 s pass: a failure). */
static char *read_to_close(int fd, size_t *len) {
    static char buf[1 << 16];
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r == 0) break;
        if (r < 0) {
            cr_assert(errno == ECONNRESET, "recv: %s (connection still open?)", strerror(errno));
            break;
        }
        n += (size_t)r;
        cr_assert_lt(n, sizeof buf - 1);
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static char *exchange(int family, int port, const char *req, size_t reqlen) {
    int fd = dial(family, port);
    send_all(fd, req, reqlen);
    char *got = read_to_close(fd, NULL);
    close(fd);
    return got;
}

static char *exchange_str(int port, const char *req) { return exchange(AF_INET, port, req, strlen(req)); }

static int status_of(const char *resp) {
    int st = 0;
    cr_assert_eq(sscanf(resp, "HTTP/1.%*d %d", &st), 1, "no status line in %.200s", resp);
    return st;
}

static const char *body_of(const char *resp) {
    const char *b = strstr(resp, "\r\n\r\n");
    cr_assert_not_null(b, "no end of head in %.200s", resp);
    return b + 4;
}

static bool has_header(const char *resp, const char *line) {
    const char *end = strstr(resp, "\r\n\r\n");
    size_t n = strlen(line);
    for (const char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, line, n) == 0 && (p[2 + n] == '\r')) return true;
    return false;
}

static void wait_dones(int n) {
    int64_t deadline = time_mono_ns() + 10 * 1000000000LL;
    while (atomic_load(&dones) < n && time_mono_ns() < deadline) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_geq(atomic_load(&dones), n, "done called %d times, expected %d", atomic_load(&dones), n);
}

/* ---- requests and what the handler sees --------------------------------------------- */

static bool have_ipv6_loopback(void) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

Test(http, ipv6_listener_sees_ipv6_clients) {
    if (!have_ipv6_loopback()) cr_skip_test("no IPv6 loopback here");
    http_options o = base_options("[::1]:0");
    int port = 0;
    http_server *s = start(&o, &port);
    cr_assert_gt(port, 0, "the bound port is reported");
    const char *req = "GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    char *resp = exchange(AF_INET6, port, req, strlen(req));
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(body_of(resp), "method=GET path=/a%20b query=x=1 remote=::1 cl=-1") != NULL, "%s", resp);
    cr_expect(has_header(resp, "X-Second-Respond: refused"), "a second response is refused: %s", resp);
    http_server_stop(s);
}

Test(http, wildcard_host_listens_on_every_address) {
    http_options o = base_options(":0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(resp, "remote=127.0.0.1") != NULL, "%s", resp);
    http_server_stop(s);
}

Test(http, bad_listen_addresses_are_reported) {
    http_server *s = NULL;
    char err[256];
    int port = 0;
    const struct {
        const char *listen;
        int rc;
        const char *msg;
    } cases[] = {
        {"[::1]", CAIRN_EINVAL, "is not HOST:PORT"},
        {"[::1", CAIRN_EINVAL, "is not HOST:PORT"},
        {"localhost", CAIRN_EINVAL, "is not HOST:PORT"},
        {"127.0.0.1:no-such-service", CAIRN_EINVAL, "cannot resolve 127.0.0.1:no-such-service"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_options o = base_options(cases[i].listen);
        err[0] = '\0';
        cr_expect_eq(http_server_start(&o, &handler, NULL, &s, &port, err, sizeof err), cases[i].rc, "%s", cases[i].listen);
        cr_expect(strstr(err, cases[i].msg) != NULL, "%s: %s", cases[i].listen, err);
    }
    /* A port someone else listens on. */
    http_options o = base_options("127.0.0.1:0");
    int taken = 0;
    http_server *first = start(&o, &taken);
    char busy[32];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", taken);
    o.listen = busy;
    cr_expect_eq(http_server_start(&o, &handler, NULL, &s, NULL, err, sizeof err), CAIRN_EIO);
    cr_expect(strstr(err, "cannot listen on") != NULL && strstr(err, "in use") != NULL, "%s", err);
    http_server_stop(first);
}

/* A socket bound before the server starts (a process taking its port
 * before anything else) is served as if the server had bound it. */
Test(http, a_listener_opened_first_is_handed_over) {
    int fd = -1, port = 0;
    char err[256] = "";
    cr_expect_eq(http_listener_open("127.0.0.1:no-such-service", &fd, &port, err, sizeof err), CAIRN_EINVAL);
    cr_expect(strstr(err, "cannot resolve") != NULL, "%s", err);
    cr_expect_eq(http_listener_open(NULL, &fd, &port, err, sizeof err), CAIRN_EINVAL);
    cr_assert_eq(http_listener_open("127.0.0.1:0", &fd, &port, err, sizeof err), 0, "%s", err);
    cr_assert_gt(port, 0);
    /* Taken already: the second open says so. */
    char busy[32];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", port);
    int fd2 = -1, port2 = 0;
    cr_expect_eq(http_listener_open(busy, &fd2, &port2, err, sizeof err), CAIRN_EIO);
    cr_expect(strstr(err, "cannot listen on") != NULL && strstr(err, "in use") != NULL, "%s", err);
    http_options o = base_options("ignored:0");
    o.have_listen_fd = true;
    o.listen_fd = fd;
    http_server *s = NULL;
    int served = 0;
    cr_assert_eq(http_server_start(&o, &handler, NULL, &s, &served, err, sizeof err), 0, "%s", err);
    cr_expect_eq(served, port, "the port of the socket handed over");
    char *resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    http_server_stop(s);
    /* Something that is not a socket is refused (and closed). */
    int not_socket = open("/dev/null", O_RDONLY);
    cr_assert_geq(not_socket, 0);
    o.listen_fd = not_socket;
    cr_expect_eq(http_server_start(&o, &handler, NULL, &s, NULL, err, sizeof err), CAIRN_EINVAL);
    cr_expect_str_eq(err, "the listening socket handed over is not one");
    cr_expect_eq(fcntl(not_socket, F_GETFD), -1, "taken over: closed");
}

Test(http, tls_with_a_bad_certificate_does_not_start) {
    http_options o = base_options("127.0.0.1:0");
    o.tls_cert_pem = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
    o.tls_key_pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
    http_server *s = NULL;
    char err[256] = "";
    cr_expect_eq(http_server_start(&o, &handler, NULL, &s, NULL, err, sizeof err), CAIRN_EINVAL);
    cr_expect(strstr(err, "the certificate does not parse") != NULL, "%s", err);
}

Test(http, only_a_certificate_serves_plain_http) {
    http_options o = base_options("127.0.0.1:0");
    o.tls_cert_pem = "half a pair";
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    http_server_stop(s);
}

Test(http, request_ids_from_the_client_are_sanitised) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nX-Request-Id: ab<c>d.e_f-1\r\nConnection: close\r\n\r\n");
    cr_expect(has_header(resp, "x-amz-request-id: abcd.e_f-1"), "%s", resp);
    /* Nothing usable: a generated id is kept, 32 upper-case hex digits
     * whose first 12 are the time in milliseconds (time-ordered ids). */
    int64_t before = time_now_ms();
    resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nX-Request-Id: <>!!\r\nConnection: close\r\n\r\n");
    int64_t after = time_now_ms();
    const char *id = strstr(resp, "x-amz-request-id: ");
    if (!id) id = strstr(resp, "X-Amz-Request-Id: ");
    cr_assert_not_null(id, "%s", resp);
    cr_expect_eq(strspn(id + 18, "0123456789ABCDEF"), 32, "%s", resp);
    char ms_hex[13];
    memcpy(ms_hex, id + 18, 12);
    ms_hex[12] = '\0';
    long long ms = strtoll(ms_hex, NULL, 16);
    cr_expect(ms >= before && ms <= after, "the id's time %lld is not within [%lld, %lld]: %s", ms, (long long)before,
              (long long)after, resp);
    resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nX-Request-Id:\r\nConnection: close\r\n\r\n");
    cr_expect(strstr(body_of(resp), "id=") != NULL && status_of(resp) == 200, "an empty id is ignored: %s", resp);
    /* Longer than the id field: cut to 39 characters. */
    resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nX-Request-Id: "
                              "0123456789012345678901234567890123456789abcdef\r\nConnection: close\r\n\r\n");
    cr_expect(has_header(resp, "x-amz-request-id: 012345678901234567890123456789012345678"), "%s", resp);
    http_server_stop(s);
}

Test(http, more_headers_than_the_table_holds_are_flagged) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    buf_t req;
    buf_init(&req);
    buf_puts(&req, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS + 5; i++) buf_printf(&req, "X-H%d: %d\r\n", i, i);
    buf_puts(&req, "\r\n");
    char *resp = exchange(AF_INET, port, req.data, req.len);
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(body_of(resp), "nheaders=128 many=1") != NULL, "%s", resp);
    buf_free(&req);
    http_server_stop(s);
}

/* ---- framing the server refuses itself ------------------------------------------------ */

static void expect_refused(int port, const char *req, const char *why) {
    char *resp = exchange_str(port, req);
    cr_expect_eq(status_of(resp), 400, "%s", resp);
    cr_expect(has_header(resp, "Connection: close"), "%s", resp);
    cr_expect(strstr(body_of(resp), "<Code>InvalidRequest</Code>") != NULL, "%s", resp);
    cr_expect(strstr(body_of(resp), why) != NULL, "expected \"%s\" in %s", why, resp);
}

Test(http, framing_edges_are_refused) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int before = atomic_load(&dones);
    /* Seven letters, but not "chunked". */
    expect_refused(port, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunkee\r\n\r\n0\r\n\r\n",
                   "The only transfer coding supported is chunked, alone.");
    /* More digits than any length has: MHD takes the leading zeros, cairn does not. */
    expect_refused(port, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 00000000000000000001\r\n\r\nx",
                   "Content-Length must be a decimal number.");
    /* Field names that are not tokens. */
    expect_refused(port, "GET /x HTTP/1.1\r\nHost: h\r\nX(Y): 1\r\n\r\n", "A header field name is not a token");
    expect_refused(port, "GET /x HTTP/1.1\r\nHost: h\r\nX\x01Y: 1\r\n\r\n", "A header field name is not a token");
    wait_dones(before + 4);
    http_server_stop(s);
}

/* A chunked body's length is unknown, so an answer given mid-body is held
 * until the rest is read and dropped (up to the drain limit): MHD cannot send
 * a response while a body is still arriving, and closing instead would leave
 * the client with a reset and no answer. */
Test(http, chunked_body_answered_mid_body_gets_its_answer) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int ok = atomic_load(&dones_ok);
    char *resp = exchange_str(port, "POST /body-413 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n"
                                    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    cr_expect_eq(status_of(resp), 413, "%s", resp);
    cr_expect_str_eq(body_of(resp), "too much");
    wait_dones(1);
    cr_expect_eq(atomic_load(&dones_ok), ok + 1, "the answer was sent: completed");
    http_server_stop(s);
}

/* Past the drain limit the connection is cut rather than read to its end. */
Test(http, large_remainder_after_a_mid_body_answer_is_cut) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int failed = atomic_load(&dones_failed);
    int fd = dial(AF_INET, port);
    const char *req = "PUT /body-413 HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\nhello";
    send_all(fd, req, strlen(req));
    read_to_close(fd, NULL);     /* closed by the server, long before 100 MB were sent */
    close(fd);
    wait_dones(1);
    cr_expect_eq(atomic_load(&dones_failed), failed + 1, "not completed: the body was cut short");
    http_server_stop(s);
}

Test(http, chunked_body_is_counted) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "PUT /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(body_of(resp), "method=PUT path=/x query= remote=127.0.0.1 cl=-1 chunked=1") != NULL, "%s", resp);
    cr_expect(strstr(body_of(resp), "in=11") != NULL, "%s", resp);
    http_server_stop(s);
}

/* ---- early answers and Expect ----------------------------------------------------------- */

Test(http, early_answer_with_100_continue_skips_the_body) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    /* The client waits for 100 Continue and never sends the body: the answer comes at once. */
    int fd = dial(AF_INET, port);
    const char *req = "PUT /begin-403 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    send_all(fd, req, strlen(req));
    char *resp = read_to_close(fd, NULL);
    close(fd);
    cr_expect_eq(status_of(resp), 403, "%s", resp);
    cr_expect(strstr(resp, "100 Continue") == NULL, "no 100 Continue before a refusal: %s", resp);
    cr_expect_str_eq(body_of(resp), "refused from the head");
    http_server_stop(s);
}

Test(http, early_answer_with_another_expectation_drains_the_body) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "PUT /begin-403 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: something-else\r\n\r\n"
                                    "0123456789");
    cr_expect_eq(status_of(resp), 403, "%s", resp);
    cr_expect_str_eq(body_of(resp), "refused from the head");
    http_server_stop(s);
}

Test(http, client_leaving_while_its_body_is_drained_is_not_completed) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int before = atomic_load(&dones), failed = atomic_load(&dones_failed);
    int fd = dial(AF_INET, port);
    const char *req = "PUT /begin-403 HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nonly some";
    send_all(fd, req, strlen(req));
    close(fd);
    wait_dones(before + 1);
    cr_expect_eq(atomic_load(&dones_failed), failed + 1, "done reports the request as not completed");
    http_server_stop(s);
}

/* The reply callback runs exactly once per request: before an answer is
 * queued (also one the server gives itself), or before done for a request
 * that ends without one; and it can replace the answer. */
Test(http, reply_runs_once_per_request_and_may_replace_the_answer) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int d0 = atomic_load(&dones), r0 = atomic_load(&replies), s0 = atomic_load(&replies_sending);
    int f0 = atomic_load(&replies_refusal);
    char *resp = exchange_str(port, "GET /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    resp = exchange_str(port, "GET /replace HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 503, "%s", resp);
    cr_expect_str_eq(body_of(resp), "replaced");
    expect_refused(port, "GET /x HTTP/1.1\r\nHost: h\r\nX(Y): 1\r\n\r\n", "A header field name is not a token");
    int fd = dial(AF_INET, port);
    const char *req = "PUT /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nonly some";
    send_all(fd, req, strlen(req));
    close(fd);
    wait_dones(d0 + 4);
    cr_expect_eq(atomic_load(&replies) - r0, 4, "one reply per request");
    cr_expect_eq(atomic_load(&replies_sending) - s0, 3, "the client that left got no answer");
    cr_expect_eq(atomic_load(&replies_refusal) - f0, 1, "the server's own refusal names its code");
    http_server_stop(s);
}

Test(http, client_leaving_mid_head_is_not_completed) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int before = atomic_load(&dones), failed = atomic_load(&dones_failed);
    int fd = dial(AF_INET, port);
    const char *req = "GET /x HTTP/1.1\r\nHost: h\r\nX-Partial: ";
    send_all(fd, req, strlen(req));
    close(fd);
    wait_dones(before + 1);
    cr_expect_eq(atomic_load(&dones_failed), failed + 1);
    http_server_stop(s);
}

/* ---- response setters --------------------------------------------------------------------- */

Test(http, every_kind_of_response_body) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "GET /take HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200);
    cr_expect_str_eq(body_of(resp), "taken body");
    resp = exchange_str(port, "GET /fd HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200);
    cr_expect_str_eq(body_of(resp), "3456", "four bytes from offset 3");
    resp = exchange_str(port, "GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200);
    cr_expect_str_eq(body_of(resp), "streamed 12b");
    resp = exchange_str(port, "GET /none HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 500, "a handler that never answers gets the fallback: %s", resp);
    cr_expect(strstr(body_of(resp), "<Code>InternalError</Code>") != NULL, "%s", resp);
    int64_t deadline = time_mono_ns() + 10 * 1000000000LL;
    while (atomic_load(&stream_freed) < 1 && time_mono_ns() < deadline) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_expect_eq(atomic_load(&stream_freed), 1, "the stream's free_fn ran once");
    http_server_stop(s);
}

Test(http, a_failing_stream_cuts_the_connection_short) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int failed = atomic_load(&dones_failed);
    size_t n = 0;
    int fd = dial(AF_INET, port);
    const char *req = "GET /stream-fail HTTP/1.1\r\nHost: h\r\n\r\n";
    send_all(fd, req, strlen(req));
    char *resp = read_to_close(fd, &n);
    close(fd);
    cr_expect_eq(status_of(resp), 200);
    cr_expect(has_header(resp, "Content-Length: 100"), "%s", resp);
    cr_expect_lt(strlen(body_of(resp)), 100, "the body ends early: the client can tell");
    wait_dones(1);
    cr_expect_eq(atomic_load(&dones_failed), failed + 1, "and done says it did not complete");
    http_server_stop(s);
}

Test(http, response_headers_empty_and_refused_values) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "GET /headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 204, "%s", resp);
    cr_expect(strstr(resp, "X-Empty:") != NULL, "an empty value is still sent: %s", resp);
    cr_expect(strstr(resp, "Injected") == NULL, "a value with CR LF is dropped, not sent: %s", resp);
    cr_expect(has_header(resp, "X-Good: yes"), "%s", resp);
    http_server_stop(s);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

Test(http, quiesce_stops_accepting) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    cr_expect_eq(http_server_inflight(s), 0);
    http_server_quiesce(s);
    /* The listening socket goes once libmicrohttpd's thread has left its poll
     * on it (it holds the socket until then): connects are refused soon. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = 0, err = 0;
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        err = errno;
        close(fd);
        if (rc != 0) break;
        usleep(10000);
    }
    cr_expect_neq(rc, 0, "still accepting 5 s after quiesce");
    cr_expect_eq(err, ECONNREFUSED);
    http_server_stop(s);
    http_server_stop(NULL);
}

/* ---- the watchdog --------------------------------------------------------------------------- */

static int log_to_tmp(void) {
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    int fd = dup(fileno(f));
    fclose(f);
    log_set_fd(fd);
    return fd;
}

static bool wait_log(int fd, const char *needle, char *text, size_t cap) {
    int64_t deadline = time_mono_ns() + 15 * 1000000000LL;
    do {
        ssize_t n = pread(fd, text, cap - 1, 0);
        text[n > 0 ? n : 0] = '\0';
        if (strstr(text, needle)) return true;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    } while (time_mono_ns() < deadline);
    return false;
}

Test(http, a_silent_connection_is_cut_in_its_head_phase) {
    int lfd = log_to_tmp();
    http_options o = base_options("127.0.0.1:0");
    o.header_timeout = 1;
    int port = 0;
    http_server *s = start(&o, &port);
    int fd = dial(AF_INET, port); /* says nothing at all */
    char *got = read_to_close(fd, NULL);
    close(fd);
    cr_expect_str_eq(got, "", "cut without an answer");
    static char text[8192];
    cr_assert(wait_log(lfd, "\"msg\":\"connection cut\"", text, sizeof text), "%s", text);
    cr_expect(strstr(text, "\"msg\":\"connection cut\",\"phase\":\"head\"") != NULL,
              "no request id before a request line: %s", text);
    cr_expect(strstr(text, "\"remote\":\"127.0.0.1\"") != NULL, "%s", text);
    http_server_stop(s);
    close(lfd);
}

Test(http, a_slow_discarded_body_is_cut_at_the_drain_rate) {
    int lfd = log_to_tmp();
    http_options o = base_options("127.0.0.1:0");
    o.min_drain_rate = 1000;      /* judged only for bodies read to be discarded */
    o.body_rate_window = 1;
    int port = 0;
    http_server *s = start(&o, &port);
    int fd = dial(AF_INET, port);
    const char *req = "PUT /begin-403 HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\nabc";
    send_all(fd, req, strlen(req));
    char *resp = read_to_close(fd, NULL);   /* nothing more is sent: the watchdog cuts */
    close(fd);
    cr_expect(resp[0] == '\0' || status_of(resp) == 403, "%s", resp);
    static char text[8192];
    cr_assert(wait_log(lfd, "discarded request body slower than min_body_rate", text, sizeof text), "%s", text);
    cr_expect(strstr(text, "\"phase\":\"body\"") != NULL, "%s", text);
    http_server_stop(s);
    close(lfd);
}

/* ---- keep-alive, look-alike headers, early answers by size ------------------------------------ */

/* Reads one response whose body length is given by Content-Length, leaving
 * the connection open. */
static char *read_one(int fd) {
    static char buf[1 << 14];
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        cr_assert_gt(r, 0, "connection closed or timed out mid-response");
        n += (size_t)r;
        buf[n] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length: ");
        if (end && cl && cl < end && n >= (size_t)(end + 4 - buf) + strtoul(cl + 18, NULL, 10)) return buf;
    }
}

Test(http, keep_alive_serves_the_next_request_on_the_connection) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    int fd = dial(AF_INET, port);
    const char *req = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
    send_all(fd, req, strlen(req));
    char *resp = read_one(fd);
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(resp, "path=/one") != NULL, "%s", resp);
    req = "GET /two HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    resp = read_to_close(fd, NULL);
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(resp, "path=/two") != NULL, "%s", resp);
    close(fd);
    http_server_stop(s);
}

Test(http, an_idle_connection_that_starts_a_head_is_held_to_the_header_timeout) {
    int lfd = log_to_tmp();
    http_options o = base_options("127.0.0.1:0");
    o.header_timeout = 1;
    int port = 0;
    http_server *s = start(&o, &port);
    int fd = dial(AF_INET, port);
    const char *req = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
    send_all(fd, req, strlen(req));
    char *resp = read_one(fd);
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    /* Idle between requests is not timed by the watchdog: let a tick or two see it idle. */
    struct timespec ts = {0, 600 * 1000000L};
    nanosleep(&ts, NULL);
    /* Two bytes of a next request line: MHD has no request yet, the kernel's byte count tells. */
    send_all(fd, "GE", 2);
    char *got = read_to_close(fd, NULL);
    close(fd);
    cr_expect_str_eq(got, "", "cut without an answer");
    static char text[8192];
    cr_assert(wait_log(lfd, "\"msg\":\"connection cut\"", text, sizeof text), "%s", text);
    cr_expect(strstr(text, "\"msg\":\"connection cut\",\"phase\":\"head\",\"reason\":\"request head not complete within "
                           "client_header_timeout\"") != NULL, "%s", text);
    http_server_stop(s);
    close(lfd);
}

Test(http, headers_that_only_look_like_framing_are_ignored_and_values_trimmed) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    /* Same lengths as Content-Length and Transfer-Encoding, other names. */
    char *resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Lengtx: 5\r\n"
                                    "Transfer-Encodinx: gzip\r\nX-Echo: a b \t \r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    cr_expect(strstr(body_of(resp), "cl=-1 chunked=0") != NULL, "%s", resp);
    cr_expect(strstr(body_of(resp), "echo=[a b]") != NULL, "trailing whitespace is not part of a value: %s", resp);
    http_server_stop(s);
}

Test(http, early_answers_with_no_body_or_too_big_a_body_are_sent_at_once) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    char *resp = exchange_str(port, "PUT /begin-403 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    cr_expect_eq(status_of(resp), 403, "%s", resp);
    cr_expect_str_eq(body_of(resp), "refused from the head");
    /* 100 MB is past the drain limit: answered without reading it. */
    resp = exchange_str(port, "PUT /begin-403 HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\nsome");
    cr_expect_eq(status_of(resp), 403, "%s", resp);
    cr_expect_str_eq(body_of(resp), "refused from the head");
    http_server_stop(s);
}

Test(http, a_fixed_port_without_reporting_it) {
    http_options o = base_options("127.0.0.1:0");
    int port = 0;
    http_server *s = start(&o, &port);
    http_server_stop(s);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    o.listen = listen;
    o.min_body_rate = 1;        /* the watchdog runs for the body rate alone */
    char err[256] = "";
    cr_assert_eq(http_server_start(&o, &handler, NULL, &s, NULL, err, sizeof err), 0, "%s", err);
    char *resp = exchange_str(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cr_expect_eq(status_of(resp), 200, "%s", resp);
    http_server_stop(s);
}
