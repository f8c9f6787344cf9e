/*
 * http — the HTTP/1.1 server the S3 gateway sits on, a thin wrapper over
 * libmicrohttpd (MHD).
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION): handlers may
 * block on fsync and SQLite without stalling other clients, and the connection
 * limit bounds the thread count.  The raw request target (path and query
 * exactly as sent, needed for SigV4) is captured by MHD's URI log callback,
 * which is also where each request's state is born.
 *
 * A request moves through the handler's callbacks in order:
 *   begin (head parsed) -> body* (pieces of the body) -> end -> done.
 * Any callback may respond; once a response is set the remaining body is
 * drained/discarded and `end` is skipped.  `done` is always called once, with
 * completed_ok false when the client vanished or timed out, so handlers can
 * remove temporary data.
 *
 * The server also protects itself from clients (see server.c for how):
 * requests with conflicting or unsupported framing (two Content-Lengths,
 * Content-Length with Transfer-Encoding, a transfer coding other than exactly
 * "chunked", Transfer-Encoding on HTTP/1.0, whitespace in a field name) and
 * heads larger than max_header_bytes are answered 400 (an S3-style XML error)
 * without calling the handler, and the connection is closed; a head that is
 * not complete within header_timeout, or a body slower than min_body_rate
 * over a window, has its connection cut (done is called with completed_ok
 * false).
 *
 * Memory: each request has an arena (core.h), born with it and freed after
 * done returns, that holds the request itself and whatever a handler
 * allocates for it.  Its max is http_options.arena_max, so what a request
 * can take is set by configuration, never by what the client sends.
 *
 * Thread-safety: a request is touched by one thread at a time.  Server
 * functions are safe to call from any thread.
 */
#ifndef CAIRN_HTTP_H
#define CAIRN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define HTTP_MAX_HEADERS 128
#define HTTP_ARENA_MAX(max_header_bytes) (4 * (size_t)(max_header_bytes) + 64 * 1024)

typedef struct http_req {
    /* --- filled by the server; read-only for handlers --- */
    char request_id[40];
    char method[16];
    char *raw_target;          /* owned copy of the request target, split at '?' */
    const char *raw_path;      /* the path part as sent, percent-encoded */
    const char *raw_query;     /* after '?', "" when none */
    header_field headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    bool too_many_headers;
    int64_t content_length;    /* -1 when absent (or chunked transfer) */
    bool chunked_transfer;     /* Transfer-Encoding: chunked */
    int64_t start_ns;
    char remote_addr[64];

    /* The request's arena: allocations that live until done has returned
     * (then it is freed, and r with it).  NULL only for requests a test
     * hands a handler directly. */
    arena *arena;

    /* --- set by handlers --- */
    void *ctx;                 /* handler's per-request state */
    const char *api;           /* operation name for logs and metrics (static string) */
    char principal[130];       /* who made the request, for the access log */
    uint64_t bytes_in;         /* body bytes received (counted by the server) */
    const char *refusal;       /* the S3 error code of a request the server refused itself, else NULL */

    /* --- private to the server --- */
    void *conn_;
    void *resp_;
    unsigned status_;
    uint64_t resp_size_;
    buf_t resp_headers_;       /* "name\0value\0" pairs */
    int state_;
    void *conn_track_;         /* the connection's watchdog record */
    bool replied_;             /* the handler's reply callback ran */
    void *upgrade_;            /* http_respond_upgrade's handoff, until the upgrade or done */
    void *server_;
} http_req;

/* Looks up a request header (case-insensitive); returns its value (NUL-terminated,
 * valid for the request) or NULL.  Repeated headers: the first. */
const char *http_header(const http_req *r, const char *name);

/* Adds a response header to send with whatever response is set. */
void http_add_header(http_req *r, const char *name, const char *value);

/* Response setters: exactly one per request.  They copy or take what they say. */
/* Copies body (len bytes) into the response. */
int http_respond(http_req *r, unsigned status, const void *body, size_t len);
/* Takes ownership of body (malloc'd); frees it when sent. */
int http_respond_take(http_req *r, unsigned status, char *body, size_t len);
/* Sends len bytes of fd from offset (sendfile where possible); takes ownership of fd. */
int http_respond_fd(http_req *r, unsigned status, int fd, uint64_t offset, uint64_t len);
/* Streams size bytes produced by fn(ud, pos, buf, max), which returns how many
 * bytes it wrote (> 0) or a negative value to abort the connection (the status
 * line is already sent by then).  free_fn(ud) runs when the response is done.
 * For HEAD, fn is never called: pass NULL (the headers of a body of size,
 * and no buffer for one). */
typedef long (*http_stream_fn)(void *ud, uint64_t pos, char *buf, size_t max);
int http_respond_stream(http_req *r, unsigned status, uint64_t size, http_stream_fn fn, void *ud,
                        void (*free_fn)(void *ud));
/*
 * Protocol upgrade (RFC 9110 7.8: the WebSocket handshake).  The handler
 * answers 101 with http_respond_upgrade (after adding the Upgrade header
 * and whatever else its protocol needs; MHD adds Connection: Upgrade).  Once
 * the head is on the wire, fn(ud, u, fd, extra, n) runs on the connection's
 * thread, before done, with the socket and the bytes the client sent after
 * its head (read as if from fd).  From then on the socket is the owner's:
 * http/ reads and writes nothing on it, the watchdog leaves it alone, the
 * connection no longer counts against connection_limit's request threads,
 * and no thread is held for it (plain sockets; with TLS, MHD keeps one
 * forwarding thread per upgraded connection).  The owner calls
 * http_upgraded_close(u) exactly once when it is done, never close(fd), and
 * must have closed every upgraded connection before http_server_stop.
 * When the 101 is never sent (the client left first, or the reply callback
 * replaced it), fn is not called and free_fn(ud) is (may be NULL).
 */
typedef struct http_upgraded http_upgraded;
typedef void (*http_upgrade_fn)(void *ud, http_upgraded *u, int fd, const char *extra, size_t extra_len);
int http_respond_upgrade(http_req *r, http_upgrade_fn fn, void *ud, void (*free_fn)(void *ud));
/* Closes an upgraded connection's socket and frees u.  Thread-safe. */
void http_upgraded_close(http_upgraded *u);
/* Takes the socket out of http/ altogether: on a plain connection *fd gets
 * a descriptor of it that the caller owns (it close()s it), MHD's
 * connection and its memory pool (max_header_bytes + 32 KiB, kept while
 * the connection is MHD's) are released now, and u is freed.  With TLS
 * MHD forwards the stream through a socketpair of its own: CAIRN_EINVAL,
 * and the caller keeps u and closes it with http_upgraded_close.  From
 * the upgrade callback only. */
int http_upgraded_detach(http_upgraded *u, int *fd);

/* True once a response is set. */
bool http_responded(const http_req *r);
/* Drops the response set (and the headers added) but not yet sent, so that
 * another can be set: only from the reply callback.  0, or CAIRN_EINVAL
 * when there is none or it is already queued. */
int http_response_discard(http_req *r);
/* Bytes of the body of the response set (its planned length; for a stream
 * or a file, the length it will send). */
uint64_t http_response_size(const http_req *r);
unsigned http_status(const http_req *r);

typedef struct {
    /* All callbacks get the app pointer given to http_server_start. */
    void (*begin)(void *app, http_req *r);
    /* Body piece; respond (an error) to stop reading. */
    void (*body)(void *app, http_req *r, const char *data, size_t n);
    /* The body is complete (or there was none); must respond. */
    void (*end)(void *app, http_req *r);
    /* Always called last; completed_ok is false when the client went away or
     * timed out before the response was sent.  Free r->ctx here. */
    void (*done)(void *app, http_req *r, bool completed_ok);
    /* May be NULL.  Called exactly once per request: right before its
     * response is queued (will_send true; also for requests the server
     * refuses itself, which the other callbacks never see, then with
     * r->ctx NULL), or, for a request that ends without a response of ours
     * (the client left, MHD refused the head), before done (will_send
     * false).  With will_send, it may replace the response
     * (http_response_discard, then respond anew); it may block. */
    void (*reply)(void *app, http_req *r, bool will_send);
} http_handler;

typedef struct {
    const char *listen;        /* "127.0.0.1:9000", "[::1]:9000", "0.0.0.0:9000" */
    int connection_limit;      /* connections served at once, upgraded ones not counted */
    int upgraded_limit;        /* upgraded connections (WebSockets) at once, on top of connection_limit */
    int connection_timeout;    /* seconds a connection may be idle */
    int max_header_bytes;      /* request line + headers + the empty line, in bytes */
    /* Bytes each request's arena may hold; 0: HTTP_ARENA_MAX(max_header_bytes),
     * room for the request, its raw target and what a handler derives from
     * its head (a decoded path and query, copies of headers). */
    size_t arena_max;
    int connection_limit_per_ip; /* connections from one address; 0 = no limit */
    int header_timeout;        /* seconds from a request's first byte to the end of its head; 0 = off */
    int64_t min_body_rate;     /* bytes/s a body must average over each window; 0 = off */
    int64_t min_drain_rate;    /* the same for a body read only to be discarded after an early answer */
    int body_rate_window;      /* seconds per judged window (the first is the grace); 0 = 10 */
    const char *tls_cert_pem;  /* both set: serve HTTPS (GnuTLS inside MHD) */
    const char *tls_key_pem;
    const char *tls_client_ca_pem; /* with HTTPS: serve only clients whose certificate it signed (403 else) */
    bool have_listen_fd;       /* listen_fd is a socket from http_listener_open, taken over */
    int listen_fd;
} http_options;

/* Binds and listens on listen (HOST:PORT, as http_options.listen), so that
 * a process can take its port before it starts anything else and hand the
 * socket to http_server_start (have_listen_fd).  *port gets the bound port.
 * CAIRN_EINVAL (a bad address) or CAIRN_EIO (cannot bind) with errbuf
 * filled ("cannot listen on ADDR: why"). */
int http_listener_open(const char *listen, int *fd, int *port, char *errbuf, size_t errlen);

typedef struct http_server http_server;

/* Starts listening and serving.  Returns 0 or CAIRN_EIO (bind failure) with
 * errbuf filled.  bound_port receives the actual port (useful with port 0). */
int http_server_start(const http_options *opt, const http_handler *h, void *app,
                      http_server **out, int *bound_port, char *errbuf, size_t errlen);
/* Stops accepting new connections; in-flight requests continue. */
void http_server_quiesce(http_server *s);
/* Requests begun and not yet done. */
int http_server_inflight(http_server *s);
/* Upgraded connections not yet closed by their owners. */
int http_server_upgraded(http_server *s);
/* Closes all connections and frees the server. */
void http_server_stop(http_server *s);
/* Serves cert_pem (a chain) with key_pem from the next handshake on, on
 * this process's HTTPS listener (tls.c): connections already open keep
 * theirs.  0, or CAIRN_EINVAL with err (a chain or key that does not
 * parse, or a key that is not the certificate's: the old pair stays) or
 * CAIRN_ENOMEM.  Thread-safe. */
int http_tls_set(const char *cert_pem, const char *key_pem, char *err, size_t errlen);

/* ---- the outbound client (client.c, libcurl) ---------------------------------
 * One client is one connection kept alive between calls; use it from one
 * thread at a time.  Every call ends within connect_timeout_ms to connect
 * and timeout_ms in all. */
typedef struct http_client http_client;

/* max_response: bytes of an answer's body kept (0: 64 KiB); the rest is
 * read and dropped.  CAIRN_ENOMEM, CAIRN_EIO (libcurl cannot start). */
int http_client_new(int connect_timeout_ms, int timeout_ms, size_t max_response, http_client **out);
void http_client_free(http_client *c);
/* https:// peers are verified against the CA bundle in ca_file (PEM)
 * instead of the system CAs; NULL or "" = the system CAs again.  0 or
 * CAIRN_ENOMEM. */
int http_client_set_ca(http_client *c, const char *ca_file);
/* POSTs len bytes of body to url (http or https, no redirects) with the
 * Content-Type given and extra headers ("Name: value", NULL-terminated list,
 * or NULL).  0 with *status the HTTP status (whatever it is) and response
 * (may be NULL) its first bytes; CAIRN_ETIMEDOUT (a timeout), CAIRN_EIO (no
 * connection, a reset, a malformed answer), CAIRN_ENOMEM. */
int http_client_post(http_client *c, const char *url, const char *content_type, const char *const *headers,
                     const void *body, size_t len, long *status, buf_t *response);
/* The same, a GET without a body. */
int http_client_get(http_client *c, const char *url, const char *const *headers, long *status, buf_t *response);

#endif
