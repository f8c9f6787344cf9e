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
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

struct http_server {
    struct MHD_Daemon *daemon;
    const http_handler *h;
    void *app;
    atomic_int inflight;
    int listen_fd;
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
    *c = (stream_ctx){fn, free_fn, ud};
    struct MHD_Response *resp = MHD_create_response_from_callback(size, STREAM_BLOCK, stream_read, c, stream_free);
    if (!resp) stream_free(c);
    return set_response(r, status, resp, size);
}

/* ---- MHD callbacks ------------------------------------------------------------ */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    http_server *s = cls;
    http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->raw_target = strdup(uri ? uri : "/");
    if (!r->raw_target) { free(r); return NULL; }
    char *q = strchr(r->raw_target, '?');
    if (q) { *q = '\0'; r->raw_query = q + 1; } else r->raw_query = "";
    r->raw_path = r->raw_target;
    r->start_ns = time_mono_ns();
    r->content_length = -1;
    r->conn_ = c;
    r->api = "Unknown";
    buf_init(&r->resp_headers_);
    rand_hex_id(r->request_id, 8);
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
    r->headers[r->nheaders++] = (auth_header){key, key_size, value ? value : "", value ? value_size : 0};
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
    const char *te = http_header(r, "transfer-encoding");
    if (te && strcasestr(te, "chunked")) r->chunked_transfer = true;
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

static enum MHD_Result queue(http_req *r) {
    struct MHD_Response *resp = r->resp_;
    MHD_add_response_header(resp, "x-amz-request-id", r->request_id);
    MHD_add_response_header(resp, "Server", "cairn");
    const char *p = r->resp_headers_.data, *end = p + r->resp_headers_.len;
    while (p && p < end) {
        const char *name = p;
        const char *value = name + strlen(name) + 1;
        MHD_add_response_header(resp, name, value);
        p = value + strlen(value) + 1;
    }
    enum MHD_Result ret = MHD_queue_response(r->conn_, r->status_, resp);
    MHD_destroy_response(resp);
    r->resp_ = NULL;
    r->state_ = ST_QUEUED;
    return ret;
}

static const char fallback_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>"
    "<Message>We encountered an internal error. Please try again.</Message></Error>";

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
    (void)c; (void)url; (void)version;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return MHD_NO;
    if (r->state_ == ST_HEAD) {
        r->state_ = ST_BODY;
        read_head(r, method);
        s->h->begin(s->app, r);
        if (!http_responded(r)) return MHD_YES;
        /* Answered from the head alone.  A client that asked for 100-continue
         * has not sent its body and will not; one that did not is sending it
         * now, and closing on unread bytes resets the connection before it
         * reads our answer.  So a small body is read and dropped first; a large
         * one (over the drain limit) is cut short. */
        const char *expect = http_header(r, "expect");
        bool waits = expect && strcasecmp(expect, "100-continue") == 0;
        if (!waits && r->content_length > 0 && (uint64_t)r->content_length <= HTTP_DRAIN_LIMIT) return MHD_YES;
        return queue(r);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->bytes_in += n;
        if (r->state_ == ST_QUEUED) return MHD_YES;
        if (!http_responded(r)) {
            s->h->body(s->app, r, upload_data, n);
            if (!http_responded(r)) return MHD_YES;
        }
        /* Answered mid-body.  Closing with unread bytes in flight makes TCP reset
         * the connection and the client may never see the answer, so read and
         * drop the rest when it is small; a large remainder is cut short. */
        if (r->content_length >= 0 && (uint64_t)r->content_length - r->bytes_in <= HTTP_DRAIN_LIMIT)
            return MHD_YES;
        return queue(r);
    }
    if (r->state_ == ST_QUEUED) return MHD_YES;
    if (!http_responded(r)) s->h->end(s->app, r);
    if (!http_responded(r))
        http_respond(r, 500, fallback_body, sizeof fallback_body - 1);
    return queue(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)c;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return;
    s->h->done(s->app, r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->state_ == ST_QUEUED);
    if (r->resp_) MHD_destroy_response(r->resp_);
    buf_free(&r->resp_headers_);
    free(r->raw_target);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    log_write(LOG_DEBUG, NULL, "http", "detail", msg, NULL);
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

int http_server_start(const http_options *opt, const http_handler *h, void *app,
                      http_server **out, int *bound_port, char *errbuf, size_t errlen) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    s->h = h;
    s->app = app;
    bool ipv6 = false;
    int port = 0;
    int rc = open_listener(opt->listen, &s->listen_fd, &port, &ipv6, errbuf, errlen);
    if (rc != 0) { free(s); return rc; }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ipv6) flags |= MHD_USE_IPv6;
    bool tls = opt->tls_cert_pem && opt->tls_key_pem;
    if (tls) flags |= MHD_USE_TLS;
    /* The pool holds the head and the read buffer; a larger buffer hands the
     * body over in bigger pieces (fewer syscalls and callbacks per MiB). */
    size_t mem = (size_t)opt->max_header_bytes + 256 * 1024;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s,
        MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)opt->connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, opt->tls_cert_pem,
        MHD_OPTION_HTTPS_MEM_KEY, opt->tls_key_pem,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(errbuf, errlen, "cannot start HTTP server on %s", opt->listen);
        close(s->listen_fd);
        free(s);
        return CAIRN_EIO;
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
    MHD_stop_daemon(s->daemon);
    free(s);
}
