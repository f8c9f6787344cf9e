/*
 * server.c — the libmicrohttpd wrapper described in http.h.
 *
 * MHD calls us in three places: the URI log callback (request line read: we
 * allocate the request and keep the raw target), the access handler (head,
 * then body pieces, then a final empty call), and the completion notifier
 * (always, also when the client vanished).  We turn those into the
 * begin/body/end/done callbacks of http_handler and queue exactly one response.
 *
 * We bind the listening socket ourselves so a bind failure has a precise
 * reason, and so the port is known when the caller asked for port 0.
 *
 * Framing.  Before a head reaches the handler we judge its framing from every
 * header MHD parsed (not only the HTTP_MAX_HEADERS we copy): at most one
 * Content-Length, at most one Transfer-Encoding, never both, Transfer-Encoding
 * only on HTTP/1.1 and only as exactly "chunked" (case-insensitive: the one
 * value MHD itself decodes as chunked; "chunked " or "gzip, chunked" MHD
 * would read as a body of unknown length), and field names that are tokens
 * ("Transfer-Encoding : chunked" is a different field to MHD and the framing
 * header to a lenient proxy).  Anything else is where request smuggling lives
 * (RFC 9112 6.3): MHD would use the first Content-Length and parse the rest
 * of the body as the next request.  Such a request is answered 400
 * InvalidRequest with Connection: close from the head call, which makes MHD
 * discard the rest and close, so nothing after it on the connection is read.
 * Content-Length values that are not a plain decimal never get here: MHD
 * answers those itself (400, or 413 past 2^64; its own HTML body) and closes;
 * on_completed logs them.  The head size (MHD counts request line, headers
 * and the empty line) is held to max_header_bytes the same way
 * (RequestHeaderSectionTooLarge, as S3 answers); a head past the
 * connection's memory pool (max_header_bytes + 256 KiB) is refused by MHD
 * itself (431).
 *
 * Slow clients.  MHD's connection_timeout only measures idle time, so a
 * client sending a header line every few seconds, or a body byte every few
 * seconds, would keep its connection, and with thread per connection its
 * thread, forever.  A watchdog thread therefore tracks every connection
 * (MHD_OPTION_NOTIFY_CONNECTION: started/closed) in a list under one mutex,
 * with the phase its current request is in:
 *
 *   HEAD   from accept (first request) or the first byte of the next request
 *          on a kept-alive connection, to the end of the head: must end
 *          within header_timeout (nginx's client_header_timeout);
 *   BUSY   a handler callback is running: no deadline (fsync, slow nodes);
 *   BODY   between body pieces: every window of body_rate_window seconds of
 *          client time must bring min_body_rate * window bytes (the first
 *          window is the grace); time spent inside the handler's body
 *          callback is not client time, so back-pressure from a slow disk or
 *          node never counts against the client;
 *   REPLY  the response is being produced or sent: MHD's idle timeout only;
 *   IDLE   between requests: MHD's idle timeout only.
 *
 * MHD reads bytes without telling us, so "the first byte of the next request"
 * comes from the kernel: the socket's tcpi_bytes_received (TCP_INFO) is noted
 * when a request completes, and a later tick that sees it grown starts the
 * head clock (or the request line's arrival does, whichever is first).  The
 * watchdog ticks every 250 ms; a connection past its deadline is cut with
 * shutdown(fd, SHUT_RDWR): MHD's thread sees the socket end, closes the
 * connection and reports the request as not completed, so handlers clean up
 * as for any vanished client.  No answer is sent (as nginx does for a head
 * timeout); one "connection cut" log line names the request id, the phase
 * and the reason.  The fd is only ever shut down under the mutex while the
 * connection is in the list, and MHD calls the closed notification (which
 * takes the mutex and unlinks it) before it closes the fd, so a shutdown
 * never hits an fd that was closed and reused; on_connection asserts the fd
 * is still open when notified.
 *
 * connection_limit_per_ip is MHD's own (MHD_OPTION_PER_IP_CONNECTION_LIMIT):
 * a connection over it is accepted and closed at once, before a thread is
 * spent on it; the client sees the connection reset and an SDK retries.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

/* tls.c */
extern const char *const HTTP_TLS_PRIORITIES;
int http_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                      const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
                      unsigned int *pcert_length, gnutls_privkey_t *pkey);
void http_tls_release_all(void);

/* The watchdog's record of one connection; all fields under server.mu. */
typedef struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    int phase;                  /* PH_* */
    bool cut;                   /* shut down by the watchdog */
    bool draining;              /* the body is read only to be discarded */
    int64_t head_start_ns;      /* PH_HEAD: when the head's clock started */
    uint64_t idle_mark;         /* PH_IDLE: tcpi_bytes_received when the last request ended */
    bool idle_mark_ok;          /* TCP_INFO worked for this socket */
    int64_t window_start_ns;    /* PH_BODY: the current rate window */
    uint64_t window_bytes;      /* body bytes at the window's start */
    int64_t busy_ns;            /* handler time inside the window */
    int64_t busy_since_ns;      /* nonzero while the handler's body callback runs */
    uint64_t bytes_in;          /* body bytes so far */
    char request_id[40];        /* the current request's id; "" before its request line */
    char remote[64];
} http_conn;

/* PH_UPGRADED: handed over by an upgrade; no deadline of ours applies. */
enum { PH_HEAD = 0, PH_BUSY, PH_BODY, PH_REPLY, PH_IDLE, PH_UPGRADED };

/* An upgraded connection, from the upgrade to its owner's close. */
struct http_upgraded {
    struct http_upgraded *prev, *next;   /* server.ups, under server.mu */
    struct MHD_UpgradeResponseHandle *urh;
    http_server *s;
    int fd;                              /* MHD's socket */
};

/* What http_respond_upgrade leaves for the upgrade (r->upgrade_). */
typedef struct {
    http_upgrade_fn fn;
    void (*free_fn)(void *);
    void *ud;
} upgrade_handoff;

struct http_server {
    struct MHD_Daemon *daemon;
    const http_handler *h;
    void *app;
    atomic_int inflight;
    int listen_fd;
    int max_header_bytes;
    size_t arena_max;
    /* watchdog */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t watchdog;
    bool watchdog_running;
    bool stopping;              /* under mu */
    http_conn *conns;           /* under mu */
    int plain;                  /* tracked connections not upgraded, under mu */
    int connection_limit;       /* of plain connections; MHD's own limit adds upgraded_limit */
    http_upgraded *ups;         /* upgraded connections not closed yet, under mu */
    int nups;                   /* their count, under mu */
    int64_t header_timeout_ns;  /* 0 = off */
    int64_t window_ns;
    int64_t min_body_rate, min_drain_rate;
    bool tls;
    bool client_certs;          /* mutual TLS: every request's connection must show a verified certificate */
};

enum { ST_HEAD = 0, ST_BODY, ST_QUEUED };

/* Body bytes we read and discard after an early answer rather than reset. */
#define HTTP_DRAIN_LIMIT (64u * 1024 * 1024)

/* ---- request helpers ------------------------------------------------------ */

const char *http_header(const http_req *r, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == n && strncasecmp(r->headers[i].name, name, n) == 0)
            return r->headers[i].value;
    return NULL;
}

void http_add_header(http_req *r, const char *name, const char *value) {
    buf_append(&r->resp_headers_, name, strlen(name) + 1);
    buf_append(&r->resp_headers_, value, strlen(value) + 1);
}

bool http_responded(const http_req *r) { return r->resp_ != NULL || r->state_ == ST_QUEUED; }

static void upgrade_forget(http_req *r);

int http_response_discard(http_req *r) {
    if (!r->resp_ || r->state_ == ST_QUEUED) return CAIRN_EINVAL;
    upgrade_forget(r);
    MHD_destroy_response(r->resp_);
    r->resp_ = NULL;
    r->status_ = 0;
    r->resp_size_ = 0;
    buf_reset(&r->resp_headers_);
    return 0;
}

uint64_t http_response_size(const http_req *r) { return r->resp_size_; }
unsigned http_status(const http_req *r) { return r->status_; }

static int set_response(http_req *r, unsigned status, struct MHD_Response *resp, uint64_t size) {
    if (!resp) return CAIRN_ENOMEM;
    if (http_responded(r)) {
        MHD_destroy_response(resp);
        return CAIRN_EINVAL;
    }
    r->resp_ = resp;
    r->status_ = status;
    r->resp_size_ = size;
    return 0;
}

int http_respond(http_req *r, unsigned status, const void *body, size_t len) {
    return set_response(r, status,
                        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
                                                        MHD_RESPMEM_MUST_COPY), len);
}

int http_respond_take(http_req *r, unsigned status, char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(body);
    return set_response(r, status, resp, len);
}

int http_respond_fd(http_req *r, unsigned status, int fd, uint64_t offset, uint64_t len) {
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, offset);
    if (!resp) close(fd);
    return set_response(r, status, resp, len);
}

typedef struct {
    http_stream_fn fn;
    void (*free_fn)(void *);
    void *ud;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *c = cls;
    long n = c->fn(c->ud, pos, buf, max);
    return n > 0 ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls) {
    stream_ctx *c = cls;
    if (c->free_fn) c->free_fn(c->ud);
    free(c);
}

/* The body of a HEAD answer: never asked for. */
static long no_body(void *ud, uint64_t pos, char *buf, size_t max) {
    (void)ud, (void)pos, (void)buf, (void)max;
    return -1;
}

/* Buffer handed to the stream callback: a whole 4 x 256 KiB stripe fits, so
 * readers can fill it directly, and per-call overhead vanishes. */
#define STREAM_BLOCK (1024 * 1024)

int http_respond_stream(http_req *r, unsigned status, uint64_t size, http_stream_fn fn, void *ud,
                        void (*free_fn)(void *ud)) {
    stream_ctx *c = malloc(sizeof *c);
    if (!c) {
        if (free_fn) free_fn(ud);
        return CAIRN_ENOMEM;
    }
    *c = (stream_ctx){fn ? fn : no_body, free_fn, ud};
    /* MHD callocs the block with the response: a HEAD (no body) or a small
     * body gets a small one, not a zeroed MiB per request. */
    size_t block = !fn ? 64 : size < STREAM_BLOCK ? (size_t)(size + 4095) / 4096 * 4096 : STREAM_BLOCK;
    if (block == 0) block = 4096;
    struct MHD_Response *resp = MHD_create_response_from_callback(size, block, stream_read, c, stream_free);
    if (!resp) stream_free(c);
    return set_response(r, status, resp, size);
}

/* ---- protocol upgrade ----------------------------------------------------------- */

static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra, size_t extra_len,
                       MHD_socket sock, struct MHD_UpgradeResponseHandle *urh);

int http_respond_upgrade(http_req *r, http_upgrade_fn fn, void *ud, void (*free_fn)(void *ud)) {
    upgrade_handoff *h = malloc(sizeof *h);
    struct MHD_Response *resp = h ? MHD_create_response_for_upgrade(on_upgrade, r->server_) : NULL;
    int rc = resp ? set_response(r, 101, resp, 0) : CAIRN_ENOMEM;
    if (rc != 0) {
        free(h);
        if (free_fn) free_fn(ud);
        return rc;
    }
    *h = (upgrade_handoff){fn, free_fn, ud};
    r->upgrade_ = h;
    return 0;
}

/* The handoff dropped: the 101 was never sent (or was replaced). */
static void upgrade_forget(http_req *r) {
    upgrade_handoff *h = r->upgrade_;
    if (!h) return;
    r->upgrade_ = NULL;
    if (h->free_fn) h->free_fn(h->ud);
    free(h);
}

void http_upgraded_close(http_upgraded *u) {
    http_server *s = u->s;
    pthread_mutex_lock(&s->mu);
    if (u->prev) u->prev->next = u->next;
    else s->ups = u->next;
    if (u->next) u->next->prev = u->prev;
    s->nups--;
    pthread_mutex_unlock(&s->mu);
    MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(u);
}

int http_upgraded_detach(http_upgraded *u, int *fd) {
    if (u->s->tls) return CAIRN_EINVAL;
    int d = fcntl(u->fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) return CAIRN_EIO;
    *fd = d;
    http_upgraded_close(u);   /* MHD closes its descriptor; the socket lives on in ours */
    return 0;
}

int http_server_upgraded(http_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->nups;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- connection tracking and the watchdog ------------------------------------ */

#define WATCHDOG_TICK_NS (250 * 1000000LL)
#define WATCHDOG_MAX_CUTS 64    /* cuts logged per tick; the rest wait for the next */

/* The kernel's count of bytes received on a TCP socket. */
static bool tcp_bytes_received(int fd, uint64_t *out) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return false;
    *out = ti.tcpi_bytes_received;
    return true;
}

static http_conn *conn_of(const http_req *r) { return r ? r->conn_track_ : NULL; }

/* Moves a request's connection to phase.  Entering PH_BODY, or turning a
 * body into a drain, starts a new rate window (and so a new grace).  PH_HEAD
 * is entered only in on_uri and by the watchdog. */
static void track_phase(http_server *s, http_req *r, int phase, bool draining) {
    http_conn *hc = conn_of(r);
    if (!hc) return;
    int64_t now = time_mono_ns();
    pthread_mutex_lock(&s->mu);
    if (phase == PH_BODY && (hc->phase != PH_BODY || draining != hc->draining)) {
        hc->window_start_ns = now;
        hc->window_bytes = hc->bytes_in;
        hc->busy_ns = 0;
        hc->busy_since_ns = 0;
    }
    hc->phase = phase;
    hc->draining = draining;
    snprintf(hc->request_id, sizeof hc->request_id, "%s", r->request_id);
    pthread_mutex_unlock(&s->mu);
}

/* Brackets the handler's body callback: its time is not the client's. */
static void track_busy(http_server *s, http_req *r, bool begin) {
    http_conn *hc = conn_of(r);
    if (!hc) return;
    int64_t now = time_mono_ns();
    pthread_mutex_lock(&s->mu);
    hc->bytes_in = r->bytes_in;
    if (begin) {
        hc->busy_since_ns = now;
    } else if (hc->busy_since_ns) {
        hc->busy_ns += now - hc->busy_since_ns;
        hc->busy_since_ns = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

static void track_bytes(http_server *s, http_req *r) {
    http_conn *hc = conn_of(r);
    if (!hc) return;
    pthread_mutex_lock(&s->mu);
    hc->bytes_in = r->bytes_in;
    pthread_mutex_unlock(&s->mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        http_conn *hc = calloc(1, sizeof *hc);
        if (!hc) return;        /* untracked: MHD's idle timeout still applies */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        hc->fd = ci ? ci->connect_fd : -1;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, hc->remote, sizeof hc->remote);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, hc->remote, sizeof hc->remote);
        }
        hc->phase = PH_HEAD;
        hc->head_start_ns = time_mono_ns();
        pthread_mutex_lock(&s->mu);
        hc->next = s->conns;
        if (s->conns) s->conns->prev = hc;
        s->conns = hc;
        /* MHD's limit counts upgraded connections too (it has room for
         * upgraded_limit more): past connection_limit ordinary ones, this
         * one is closed at once, as MHD would have. */
        bool over = ++s->plain > s->connection_limit && hc->fd >= 0;
        if (over) {
            shutdown(hc->fd, SHUT_RDWR);
            hc->cut = true;
        }
        pthread_mutex_unlock(&s->mu);
        *socket_context = hc;
        if (over) log_write(LOG_WARN, NULL, "connection refused: connection_limit reached", "remote", hc->remote, NULL);
        return;
    }
    http_conn *hc = *socket_context;
    if (!hc) return;
    /* The watchdog may shut down only fds MHD has not closed: MHD notifies
     * before it closes, so the fd must still be open here. */
    assert(hc->fd < 0 || fcntl(hc->fd, F_GETFD) != -1);
    pthread_mutex_lock(&s->mu);
    if (hc->prev) hc->prev->next = hc->next;
    else s->conns = hc->next;
    if (hc->next) hc->next->prev = hc->prev;
    if (hc->phase != PH_UPGRADED) s->plain--;
    pthread_mutex_unlock(&s->mu);
    free(hc);
    *socket_context = NULL;
}

typedef struct {
    char request_id[40];
    char remote[64];
    const char *phase;
    const char *reason;
    int64_t elapsed_ms;
    uint64_t bytes;
} cut_note;

/* Judges one connection at time now; returns the reason to cut it or NULL.
 * Called with s->mu held. */
static const char *judge(http_server *s, http_conn *hc, int64_t now, int64_t *elapsed_ns) {
    if (hc->phase == PH_IDLE && s->header_timeout_ns && hc->idle_mark_ok) {
        uint64_t got;
        if (tcp_bytes_received(hc->fd, &got) && got > hc->idle_mark) {
            hc->phase = PH_HEAD;            /* the next request has begun */
            hc->head_start_ns = now;
            hc->request_id[0] = '\0';
        }
    }
    if (hc->phase == PH_HEAD && s->header_timeout_ns) {
        *elapsed_ns = now - hc->head_start_ns;
        if (*elapsed_ns > s->header_timeout_ns) return "request head not complete within client_header_timeout";
        return NULL;
    }
    int64_t rate = hc->draining ? s->min_drain_rate : s->min_body_rate;
    if (hc->phase != PH_BODY || rate <= 0) return NULL;
    int64_t busy = hc->busy_ns + (hc->busy_since_ns ? now - hc->busy_since_ns : 0);
    int64_t client = now - hc->window_start_ns - busy;
    if (client < s->window_ns) return NULL;
    uint64_t need = (uint64_t)rate * (uint64_t)(s->window_ns / 1000000000LL);
    if (hc->bytes_in - hc->window_bytes < need) {
        *elapsed_ns = client;
        return hc->draining ? "discarded request body slower than min_body_rate"
                            : "request body slower than min_body_rate";
    }
    hc->window_start_ns = now;              /* a new window */
    hc->window_bytes = hc->bytes_in;
    hc->busy_ns = 0;
    if (hc->busy_since_ns) hc->busy_since_ns = now;
    return NULL;
}

static const char *phase_name(int phase) {
    return phase == PH_HEAD ? "head" : phase == PH_BODY ? "body" : "other";
}

static void *watchdog_main(void *arg) {
    pthread_setname_np(pthread_self(), "http-watchdog");
    http_server *s = arg;
    cut_note notes[WATCHDOG_MAX_CUTS];
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + WATCHDOG_TICK_NS;
        ts.tv_sec += ns / 1000000000LL;
        ts.tv_nsec = ns % 1000000000LL;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (s->stopping) break;
        int64_t now = time_mono_ns();
        int ncut = 0;
        for (http_conn *hc = s->conns; hc && ncut < WATCHDOG_MAX_CUTS; hc = hc->next) {
            if (hc->cut || hc->fd < 0) continue;
            int64_t elapsed = 0;
            const char *why = judge(s, hc, now, &elapsed);
            if (!why) continue;
            shutdown(hc->fd, SHUT_RDWR);
            hc->cut = true;
            cut_note *n = &notes[ncut++];
            snprintf(n->request_id, sizeof n->request_id, "%s", hc->request_id);
            snprintf(n->remote, sizeof n->remote, "%s", hc->remote);
            n->phase = phase_name(hc->phase);
            n->reason = why;
            n->elapsed_ms = elapsed / 1000000;
            n->bytes = hc->bytes_in;
        }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < ncut; i++) {
            char el[24], by[24];
            log_write(LOG_WARN, notes[i].request_id[0] ? notes[i].request_id : NULL, "connection cut",
                      "phase", notes[i].phase, "reason", notes[i].reason, "remote", notes[i].remote,
                      "elapsed_ms", log_int(el, notes[i].elapsed_ms),
                      "bytes_in", log_int(by, (long long)notes[i].bytes), NULL);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- framing and head checks ---------------------------------------------------- */

typedef struct {
    int ncl, nte;
    const char *cl, *te;
    size_t cl_len, te_len;
    bool bad_name;
} framing;

/* RFC 9110 tchar. */
static bool is_token(const char *p, size_t n) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              strchr("!#$%&'*+-.^_`|~", ch)) || ch == '\0')
            return false;
    }
    return true;
}

static enum MHD_Result scan_framing(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                    const char *value, size_t value_size) {
    (void)kind;
    framing *f = cls;
    if (!key || !is_token(key, key_size)) f->bad_name = true;
    if (!key) return MHD_YES;
    if (key_size == 14 && strncasecmp(key, "content-length", 14) == 0) {
        f->ncl++;
        f->cl = value ? value : "";
        f->cl_len = value ? value_size : 0;
    } else if (key_size == 17 && strncasecmp(key, "transfer-encoding", 17) == 0) {
        f->nte++;
        f->te = value ? value : "";
        f->te_len = value ? value_size : 0;
    }
    return MHD_YES;
}

/* Returns NULL when the request's framing is sound, else why it is not.
 * Reads MHD's values as parsed, before read_head trims them. */
static const char *framing_error(struct MHD_Connection *c, const char *version) {
    framing f = {0};
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, scan_framing, &f);
    if (f.bad_name) return "A header field name is not a token (whitespace before the colon?).";
    if (f.ncl > 1) return "The request has more than one Content-Length header.";
    if (f.nte > 1) return "The request has more than one Transfer-Encoding header.";
    if (f.ncl && f.nte) return "The request has both Content-Length and Transfer-Encoding.";
    if (f.nte && version && strcmp(version, MHD_HTTP_VERSION_1_1) != 0)
        return "Transfer-Encoding is only allowed in HTTP/1.1 requests.";
    if (f.nte && !(f.te_len == 7 && strncasecmp(f.te, "chunked", 7) == 0))
        return "The only transfer coding supported is chunked, alone.";
    if (f.ncl) {
        /* MHD has already refused anything else; this keeps it true. */
        bool digits = f.cl_len > 0 && f.cl_len <= 19;
        for (size_t i = 0; digits && i < f.cl_len; i++) digits = f.cl[i] >= '0' && f.cl[i] <= '9';
        if (!digits) return "Content-Length must be a decimal number.";
    }
    return NULL;
}

/* Answers a request the server refuses from its head alone: an S3-style XML
 * error, the connection closed after it.  Logged here, since the handler
 * never sees the request. */
static void refuse_status(http_req *r, unsigned status, const char *code, const char *message) {
    r->refusal = code;
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>", code);
    buf_xml_escape(&b, message, strlen(message));
    buf_printf(&b, "</Message><RequestId>%s</RequestId></Error>", r->request_id);
    http_add_header(r, "Content-Type", "application/xml");
    http_add_header(r, "Connection", "close");
    size_t len = b.len;
    if (b.oom) {
        buf_free(&b);
        http_respond(r, status, "", 0);
    } else {
        http_respond_take(r, status, buf_steal(&b), len);
    }
    char st[16];
    snprintf(st, sizeof st, "%u", status);
    log_write(LOG_INFO, r->request_id, "request refused", "status", st, "error", code, "reason", message,
              "remote", r->remote_addr, NULL);
}

static void refuse(http_req *r, const char *code, const char *message) { refuse_status(r, 400, code, message); }

/* ---- MHD callbacks ------------------------------------------------------------ */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    http_server *s = cls;
    /* The request lives in its own arena.  Failing here (out of memory: the
     * max always has room for a head) makes MHD close the connection. */
    arena *a = arena_new(s->arena_max);
    http_req *r = a ? arena_calloc(a, 1, sizeof *r) : NULL;
    if (r) r->raw_target = arena_strdup(a, uri ? uri : "/");
    if (!r || !r->raw_target) {
        arena_free(a);
        return NULL;
    }
    r->arena = a;
    char *q = strchr(r->raw_target, '?');
    if (q) { *q = '\0'; r->raw_query = q + 1; } else r->raw_query = "";
    r->raw_path = r->raw_target;
    r->start_ns = time_mono_ns();
    r->content_length = -1;
    r->conn_ = c;
    r->server_ = s;
    r->api = "Unknown";
    buf_init(&r->resp_headers_);
    time_hex_id(r->request_id); /* time-ordered: the audit store's request id index grows at its end */
    for (char *p = r->request_id; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->remote_addr, sizeof r->remote_addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->remote_addr, sizeof r->remote_addr);
    }
    const union MHD_ConnectionInfo *sc = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    http_conn *hc = sc ? sc->socket_context : NULL;
    if (hc) {
        r->conn_track_ = hc;
        int64_t now = time_mono_ns();
        pthread_mutex_lock(&s->mu);
        if (hc->phase == PH_IDLE) {             /* a kept-alive connection's next request */
            hc->phase = PH_HEAD;
            hc->head_start_ns = now;
        }
        snprintf(hc->request_id, sizeof hc->request_id, "%s", r->request_id);
        pthread_mutex_unlock(&s->mu);
    }
    atomic_fetch_add(&s->inflight, 1);
    return r;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size) {
    (void)kind;
    http_req *r = cls;
    if (r->nheaders >= HTTP_MAX_HEADERS) {
        r->too_many_headers = true;
        return MHD_NO;
    }
    if (value) {
        /* HTTP field values exclude trailing whitespace (RFC 9110 5.5); MHD keeps
         * it.  Trim in place: the bytes are this request's, and values are used
         * both as C strings and with lengths. */
        while (value_size && (value[value_size - 1] == ' ' || value[value_size - 1] == '\t'))
            ((char *)(uintptr_t)value)[--value_size] = '\0';
    }
    r->headers[r->nheaders++] = (header_field){key, key_size, value ? value : "", value ? value_size : 0};
    return MHD_YES;
}

static void read_head(http_req *r, const char *method) {
    snprintf(r->method, sizeof r->method, "%s", method);
    MHD_get_connection_values_n(r->conn_, MHD_HEADER_KIND, collect_header, r);
    const char *cl = http_header(r, "content-length");
    if (cl) {
        char *end;
        errno = 0;
        long long v = strtoll(cl, &end, 10);
        if (errno == 0 && end != cl && *end == '\0' && v >= 0) r->content_length = v;
    }
    /* framing_error() has made sure this is exactly "chunked". */
    if (http_header(r, "transfer-encoding")) r->chunked_transfer = true;
    const char *rid = http_header(r, "x-request-id");
    if (rid && *rid) {
        /* Honour an incoming id, keeping only characters safe in headers and logs. */
        size_t o = 0;
        for (const char *p = rid; *p && o < sizeof r->request_id - 1; p++)
            if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                *p == '-' || *p == '_' || *p == '.')
                r->request_id[o++] = *p;
        if (o) r->request_id[o] = '\0';
    }
}

static const char fallback_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>"
    "<Message>We encountered an internal error. Please try again.</Message></Error>";

/* The handler's reply callback, once per request (http.h). */
static void reply(http_server *s, http_req *r, bool will_send) {
    if (r->replied_ || !s->h->reply) return;
    r->replied_ = true;
    s->h->reply(s->app, r, will_send);
    if (will_send && !r->resp_) http_respond(r, 500, fallback_body, sizeof fallback_body - 1);
}

static enum MHD_Result queue(http_server *s, http_req *r) {
    reply(s, r, true);
    struct MHD_Response *resp = r->resp_;
    MHD_add_response_header(resp, "x-amz-request-id", r->request_id);
    MHD_add_response_header(resp, "Server", "cairn");
    const char *p = r->resp_headers_.data, *end = p + r->resp_headers_.len;
    while (p && p < end) {
        const char *name = p;
        const char *value = name + strlen(name) + 1;
        /* MHD refuses an empty value; a lone space is sent as "name:  " and
         * read back as empty (field values exclude surrounding whitespace),
         * so an empty x-amz-meta-* header survives the round trip. */
        if (MHD_add_response_header(resp, name, value[0] ? value : " ") != MHD_YES)
            log_write(LOG_WARN, r->request_id, "response header dropped", "header", name, NULL);
        p = value + strlen(value) + 1;
    }
    enum MHD_Result ret = MHD_queue_response(r->conn_, r->status_, resp);
    MHD_destroy_response(resp);
    r->resp_ = NULL;
    r->state_ = ST_QUEUED;
    return ret;
}

/* Mutual TLS: whether the connection's client showed a certificate that
 * verifies against the listener's client CA (MHD asked for one, with
 * MHD_OPTION_HTTPS_MEM_TRUST, but serves a client that shows none). */
static bool client_verified(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return false;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    unsigned int n = 0;
    if (!gnutls_certificate_get_peers(session, &n) || n == 0) return false;
    unsigned int status = 0;
    return gnutls_certificate_verify_peers2(session, &status) == 0 && status == 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
    (void)url;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return MHD_NO;
    if (r->state_ == ST_HEAD) {
        r->state_ = ST_BODY;
        const char *bad = framing_error(c, version);   /* before read_head trims values */
        const union MHD_ConnectionInfo *hi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        read_head(r, method);
        track_phase(s, r, PH_BUSY, false);      /* the head is in: its clock stops */
        if (bad || (hi && hi->header_size > (size_t)s->max_header_bytes)) {
            if (bad) refuse(r, "InvalidRequest", bad);
            else refuse(r, "RequestHeaderSectionTooLarge", "Your request header section exceeds the maximum allowed size.");
            track_phase(s, r, PH_REPLY, false);
            return queue(s, r);
        }
        if (s->client_certs && !client_verified(c)) {
            refuse_status(r, 403, "AccessDenied", "This server serves only clients with a certificate its CA signed.");
            track_phase(s, r, PH_REPLY, false);
            return queue(s, r);
        }
        s->h->begin(s->app, r);
        if (!http_responded(r)) {
            track_phase(s, r, PH_BODY, false);
            return MHD_YES;
        }
        /* Answered from the head alone.  A client that asked for 100-continue
         * has not sent its body and will not; one that did not is sending it
         * now, and closing on unread bytes resets the connection before it
         * reads our answer.  So a small body is read and dropped first; a large
         * one (over the drain limit) is cut short. */
        const char *expect = http_header(r, "expect");
        bool waits = expect && strcasecmp(expect, "100-continue") == 0;
        if (!waits && r->content_length > 0 && (uint64_t)r->content_length <= HTTP_DRAIN_LIMIT) {
            track_phase(s, r, PH_BODY, true);
            return MHD_YES;
        }
        track_phase(s, r, PH_REPLY, false);
        return queue(s, r);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->bytes_in += n;
        if (r->state_ == ST_QUEUED) {
            track_bytes(s, r);
            return MHD_YES;
        }
        if (!http_responded(r)) {
            track_busy(s, r, true);
            s->h->body(s->app, r, upload_data, n);
            track_busy(s, r, false);
            if (!http_responded(r)) return MHD_YES;
        } else {
            track_bytes(s, r);
        }
        /* Answered mid-body: MHD cannot send while a body arrives, and closing on unread bytes
         * resets the connection, so read and drop the rest when small (a chunked body: while the
         * whole stays within the limit); a large remainder is cut short, unanswered. */
        if ((r->content_length >= 0 ? (uint64_t)r->content_length - r->bytes_in : r->bytes_in) <= HTTP_DRAIN_LIMIT) {
            track_phase(s, r, PH_BODY, true);
            return MHD_YES;
        }
        track_phase(s, r, PH_REPLY, false);
        return queue(s, r);
    }
    if (r->state_ == ST_QUEUED) return MHD_YES;
    track_phase(s, r, PH_REPLY, false);
    if (!http_responded(r)) s->h->end(s->app, r);
    if (!http_responded(r))
        http_respond(r, 500, fallback_body, sizeof fallback_body - 1);
    return queue(s, r);
}

/* MHD: the 101 head is on the wire.  The connection goes to the owner. */
static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra, size_t extra_len,
                       MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
    (void)c;
    http_server *s = cls;
    http_req *r = con_cls;
    upgrade_handoff *h = r ? r->upgrade_ : NULL;
    http_upgraded *u = h ? calloc(1, sizeof *u) : NULL;
    if (!u) {
        /* Nobody to hand it to: close it (the client sees the socket end). */
        if (r) upgrade_forget(r);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    r->upgrade_ = NULL;
    u->urh = urh;
    u->s = s;
    u->fd = sock;
    http_conn *hc = conn_of(r);
    pthread_mutex_lock(&s->mu);
    if (hc && hc->phase != PH_UPGRADED) {
        hc->phase = PH_UPGRADED;
        s->plain--;
    }
    u->next = s->ups;
    if (s->ups) s->ups->prev = u;
    s->ups = u;
    s->nups++;
    pthread_mutex_unlock(&s->mu);
    h->fn(h->ud, u, sock, extra, extra_len);
    free(h);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return;
    if (r->state_ == ST_HEAD) {
        /* The head never reached on_access: MHD refused it itself (a
         * Content-Length that is not a number, a head past the memory pool)
         * or the client left mid-head.  Say which, with the request id. */
        const union MHD_ConnectionInfo *st = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (st && st->http_status) {
            char code[24];
            r->status_ = st->http_status;
            log_write(LOG_INFO, r->request_id, "request refused", "status", log_int(code, st->http_status),
                      "reason", "malformed request head (refused by the HTTP parser)", "remote", r->remote_addr,
                      NULL);
        }
    }
    http_conn *hc = conn_of(r);
    if (hc) {
        uint64_t mark = 0;
        bool ok = tcp_bytes_received(hc->fd, &mark);
        pthread_mutex_lock(&s->mu);
        if (hc->phase != PH_UPGRADED) hc->phase = PH_IDLE;
        hc->idle_mark = mark;
        hc->idle_mark_ok = ok;
        hc->draining = false;
        pthread_mutex_unlock(&s->mu);
    }
    reply(s, r, false);
    upgrade_forget(r);
    s->h->done(s->app, r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->state_ == ST_QUEUED);
    if (r->resp_) MHD_destroy_response(r->resp_);
    buf_free(&r->resp_headers_);
    arena_free(r->arena);       /* r itself is in it */
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    /* A connection turned away at accept (connection_limit or
     * connection_limit_per_ip) is something an operator should see. */
    if (strstr(msg, "connection limit")) log_write(LOG_WARN, NULL, "connection refused", "detail", msg, NULL);
    else log_write(LOG_DEBUG, NULL, "http", "detail", msg, NULL);
}

/* ---- listening ------------------------------------------------------------------ */

static int split_host_port(const char *listen, char *host, size_t hostlen, char *port, size_t portlen) {
    const char *colon;
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':') return CAIRN_EINVAL;
        snprintf(host, hostlen, "%.*s", (int)(rb - listen - 1), listen + 1);
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon) return CAIRN_EINVAL;
        snprintf(host, hostlen, "%.*s", (int)(colon - listen), listen);
    }
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

static int open_listener(const char *listen_addr, int *fd_out, int *port_out, bool *ipv6,
                         char *errbuf, size_t errlen) {
    char host[256], port[16];
    if (split_host_port(listen_addr, host, sizeof host, port, sizeof port) != 0) {
        snprintf(errbuf, errlen, "listen address %s is not HOST:PORT", listen_addr);
        return CAIRN_EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot resolve %s: %s", listen_addr, gai_strerror(rc));
        return CAIRN_EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(errbuf, errlen, "cannot listen on %s: %s", listen_addr, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return CAIRN_EIO;
    }
    *ipv6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

int http_listener_open(const char *listen_addr, int *fd, int *port, char *errbuf, size_t errlen) {
    bool ipv6 = false;
    if (!listen_addr || !fd || !port) return CAIRN_EINVAL;
    return open_listener(listen_addr, fd, port, &ipv6, errbuf, errlen);
}

/* What a socket handed over is: its family and bound port. */
static int adopt_listener(int fd, int *port_out, bool *ipv6, char *errbuf, size_t errlen) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(errbuf, errlen, "the listening socket handed over is not one");
        if (fd >= 0) close(fd);
        return CAIRN_EINVAL;
    }
    *ipv6 = ss.ss_family == AF_INET6;
    *port_out = ntohs(*ipv6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static void server_free(http_server *s) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int http_server_start(const http_options *opt, const http_handler *h, void *app,
                      http_server **out, int *bound_port, char *errbuf, size_t errlen) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    s->h = h;
    s->app = app;
    s->max_header_bytes = opt->max_header_bytes;
    s->arena_max = opt->arena_max ? opt->arena_max : HTTP_ARENA_MAX(opt->max_header_bytes);
    s->header_timeout_ns = (int64_t)(opt->header_timeout > 0 ? opt->header_timeout : 0) * 1000000000LL;
    s->window_ns = (int64_t)(opt->body_rate_window > 0 ? opt->body_rate_window : 10) * 1000000000LL;
    s->min_body_rate = opt->min_body_rate > 0 ? opt->min_body_rate : 0;
    s->min_drain_rate = opt->min_drain_rate > 0 ? opt->min_drain_rate : 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    bool ipv6 = false;
    int port = 0;
    int rc = opt->have_listen_fd ? adopt_listener(s->listen_fd = opt->listen_fd, &port, &ipv6, errbuf, errlen)
                                 : open_listener(opt->listen, &s->listen_fd, &port, &ipv6, errbuf, errlen);
    if (rc != 0) { server_free(s); return rc; }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
    s->connection_limit = opt->connection_limit;
    if (ipv6) flags |= MHD_USE_IPv6;
    bool tls = opt->tls_cert_pem && opt->tls_key_pem;
    if (tls) flags |= MHD_USE_TLS;
    s->tls = tls;
    s->client_certs = tls && opt->tls_client_ca_pem && opt->tls_client_ca_pem[0];
    /* The certificate through a callback, so that SIGHUP can replace it
     * without a restart (tls.c). */
    if (tls && (rc = http_tls_set(opt->tls_cert_pem, opt->tls_key_pem, errbuf, errlen)) != 0) {
        close(s->listen_fd);
        server_free(s);
        return rc;
    }
    /* The pool holds the head and the read buffer.  libmicrohttpd 0.9.75
     * zero-fills the pool's free part when it shrinks the read buffer for
     * the reply and again when it resets the pool between keep-alive
     * requests, so every byte here costs every small request (a 256 KiB
     * read buffer made memset 8% of a 4 KiB GET's CPU).  32 KiB of read
     * buffer streams a 64 MiB PUT as fast as 256 KiB did (measured). */
    size_t mem = (size_t)opt->max_header_bytes + 32 * 1024;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(opt->connection_limit + (opt->upgraded_limit > 0 ? opt->upgraded_limit : 0)),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(opt->connection_limit_per_ip > 0 ? opt->connection_limit_per_ip : 0),
        tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, http_tls_retrieve,
        MHD_OPTION_HTTPS_PRIORITIES, HTTP_TLS_PRIORITIES,
        s->client_certs ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, opt->tls_client_ca_pem,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(errbuf, errlen, "cannot start HTTP server on %s", opt->listen);
        close(s->listen_fd);
        server_free(s);
        return CAIRN_EIO;
    }
    if (s->header_timeout_ns || s->min_body_rate || s->min_drain_rate) {
        if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
            snprintf(errbuf, errlen, "cannot start the HTTP watchdog thread");
            MHD_stop_daemon(s->daemon);
            server_free(s);
            return CAIRN_ENOMEM;
        }
        s->watchdog_running = true;
    }
    if (bound_port) *bound_port = port;
    *out = s;
    return 0;
}

void http_server_quiesce(http_server *s) {
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

int http_server_inflight(http_server *s) { return atomic_load(&s->inflight); }

void http_server_stop(http_server *s) {
    if (!s) return;
    if (s->watchdog_running) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->watchdog, NULL);
    }
    /* Owners close theirs first (http.h); whatever is left is closed here,
     * and its owner's handle is a bug. */
    pthread_mutex_lock(&s->mu);
    int left = s->nups;
    pthread_mutex_unlock(&s->mu);
    assert(left == 0 && "an upgraded connection outlived its owner");
    if (left) log_write(LOG_ERROR, NULL, "upgraded connections still open at stop", NULL);
    MHD_stop_daemon(s->daemon);     /* closed notifications free every http_conn */
    if (s->tls) http_tls_release_all(); /* no handshake can ask for the pair any more */
    assert(s->conns == NULL);
    server_free(s);
}
