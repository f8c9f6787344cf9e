/*
 * cairn-loadgen — the HTTP load generator behind `make bench`.
 *
 * It drives one operation (PUT, GET, HEAD, DELETE or ListObjectsV2 paging)
 * against one server, or several serving the same store (--url A,B: worker i
 * talks to server i mod N, so the load splits evenly), with N threads, each
 * owning one keep-alive HTTP/1.1 connection over a plain blocking socket, and
 * prints one machine-readable summary line:
 *
 *   op=put size=4096 conc=16 requests=20000 errors=0 seconds=5.001 rps=3999.2
 *   mbps=16.381 p50_ms=3.912 p99_ms=10.204
 *
 * Requests are signed with SigV4 header auth and an UNSIGNED-PAYLOAD body
 * (sigv4_sign from src/auth), or sent unsigned (--nosign) so the same client
 * can load nginx's WebDAV PUT/GET and the comparison is like for like.  Bodies
 * come from one shared read-only pattern buffer, so a 64 MiB PUT costs no
 * allocation and GET bodies are counted and discarded, never stored.  Only
 * list responses (and error bodies, for the message) are kept.
 *
 * Work is handed out through one atomic counter: request i touches key
 * prefix + %010u(i mod keys), so PUTs with --keys 0 create fresh keys and GETs
 * cycle over the keys a previous PUT created (HEAD and DELETE likewise).  A
 * run stops after --requests requests or --duration seconds, whichever comes
 * first.  Every non-2xx status, short body (a HEAD whose Content-Length is not
 * --size) or socket failure counts as an error, for every op; a valid
 * benchmark run has errors=0 (exit status 1 otherwise).
 *
 * For --op list one "request" is one walk of the bucket through
 * continuation tokens, 1000 keys a page; the latency of each page index is
 * recorded separately and the median of the pages named by --pages printed
 * (page1_ms=.. page50_ms=..), because a deep page of a large bucket is where a
 * naive ORDER BY/OFFSET listing gets slow.  --start-after K starts each walk
 * after key K (a jump straight to a deep page) and --max-pages N ends it
 * after N pages; --keys then checks the keys of those pages.
 *
 * This is a tool, not library code: it prints and exits, which only cmd/ and
 * tools may do.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "core/core.h"

#define BODY_CHUNK (1u << 20)      /* shared pattern buffer; PUT bodies repeat it */
#define RX_BUF (256u << 10)        /* per-connection receive buffer */
#define MAX_HEAD (64u << 10)       /* a response head larger than this is an error */
#define MAX_PAGES 4096             /* list walks: 4M keys at 1000 a page */
#define MAX_REPORT_PAGES 16
#define ERRORS_SHOWN 5             /* errors printed to stderr in full */
#define MAX_TARGETS 16             /* servers one run spreads its connections over */
#define IO_TIMEOUT_SEC 120

typedef enum { OP_PUT, OP_GET, OP_HEAD, OP_DELETE, OP_LIST, OP_MKBUCKET, OP_PROBE } lg_op;
static const char *const op_names[] = {"put", "get", "head", "delete", "list", "mkbucket", "probe"};
#define OP_COUNT ((int)(sizeof op_names / sizeof op_names[0]))

/* One server to talk to. */
typedef struct {
    char host[64];
    int port;
    char hostport[80];           /* Host header value */
} lg_target;

typedef struct {
    lg_target targets[MAX_TARGETS];
    int ntargets;                /* worker i uses targets[i % ntargets] */
    lg_op op;
    uint64_t size;
    int concurrency;
    uint64_t requests;           /* 0 = unbounded (duration rules) */
    double duration;             /* 0 = unbounded (requests rule) */
    char bucket[128];
    char prefix[256];
    uint64_t keys;               /* 0 = every request a new key */
    char access_key[129];
    char secret_key[257];
    char region[64];
    bool sign;
    char path_prefix[256];       /* e.g. /dav for nginx */
    char probe_path[512];
    int max_keys;                /* list page size */
    int max_pages;               /* list: stop a walk after this many pages; 0 = all */
    char start_after[512];       /* list: each walk starts after this key */
    int report_pages[MAX_REPORT_PAGES];
    int nreport_pages;
} lg_opts;

/* A growable array of latencies in microseconds. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} lat_vec;

/* What the threads share: options, the pattern buffer and the work counter. */
typedef struct {
    const lg_opts *o;
    const char *pattern;         /* BODY_CHUNK bytes, read-only after start */
    atomic_uint_fast64_t next;   /* next request index */
    atomic_uint errors_shown;
    int64_t deadline_ns;         /* 0 = none */
} lg_shared;

/* One parsed response.  The body goes to `keep` when non-NULL, else is counted. */
typedef struct {
    int status;
    int64_t content_length;      /* -1 when the response had none */
    uint64_t body_bytes;
    bool close;                  /* the server will close the connection */
} lg_resp;

typedef struct {
    lg_shared *sh;
    const lg_target *t;          /* the server this worker talks to */
    pthread_t tid;
    int fd;                      /* -1 when not connected */
    bool reused;                 /* fd has carried a request before */
    char *rx;                    /* RX_BUF bytes */
    size_t rx_off, rx_len;       /* unread bytes are rx[rx_off..rx_len) */
    buf_t head, auth, body, path, query;
    lat_vec lat;                 /* per request (per page for list) */
    lat_vec *pages;              /* list: MAX_PAGES vectors, one per page index */
    uint64_t ok, errors, bytes, keys_listed, walks_complete;
    int64_t rc;                  /* setup failure */
} lg_worker;

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int lat_push(lat_vec *l, int64_t ns) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        uint32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return CAIRN_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    int64_t us = ns / 1000;
    l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

static int lat_append(lat_vec *dst, const lat_vec *src) {
    for (size_t i = 0; i < src->n; i++)
        if (lat_push(dst, (int64_t)src->v[i] * 1000) != 0) return CAIRN_ENOMEM;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void lat_sort(lat_vec *l) {
    if (l->n) qsort(l->v, l->n, sizeof *l->v, cmp_u32);
}

/* Nearest-rank percentile in ms of a sorted vector; 0 when empty. */
static double lat_pct_ms(const lat_vec *l, double p) {
    if (l->n == 0) return 0;
    size_t rank = (size_t)(p / 100.0 * (double)l->n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > l->n) rank = l->n;
    return l->v[rank - 1] / 1000.0;
}

/* AWS-style URI encoding: unreserved characters kept, '/' kept when asked. */
static void url_encode(buf_t *b, const char *s, bool keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            buf_putc(b, (char)c);
        } else {
            buf_putc(b, '%');
            buf_putc(b, hex[c >> 4]);
            buf_putc(b, hex[c & 15]);
        }
    }
}

/* A buffer's text, "" when nothing was ever appended (data is NULL then). */
static const char *bstr(const buf_t *b) { return b->data ? b->data : ""; }

/* ---- connection --------------------------------------------------------- */

static void conn_close(lg_worker *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    w->reused = false;
    w->rx_off = w->rx_len = 0;
}

static int conn_open(lg_worker *w) {
    const lg_target *t = w->t;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
    if (inet_pton(AF_INET, t->host, &sa.sin_addr) != 1) return CAIRN_EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return CAIRN_EIO;
    int one = 1;
    /* The head and a small body go out in one sendmsg, but a response must not
     * wait for a delayed ACK either. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_SEC};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return CAIRN_EIO;
    }
    w->fd = fd;
    w->reused = false;
    w->rx_off = w->rx_len = 0;
    return 0;
}

/* Sends the head, then body_len bytes of the repeating pattern. */
static int send_request(lg_worker *w, uint64_t body_len) {
    const char *head = w->head.data;
    size_t head_left = w->head.len;
    uint64_t body_left = body_len;
    size_t pat_off = 0;
    while (head_left > 0 || body_left > 0) {
        struct iovec iov[2];
        int n = 0;
        if (head_left > 0) iov[n++] = (struct iovec){(void *)head, head_left};
        if (body_left > 0) {
            size_t chunk = BODY_CHUNK - pat_off;
            if (chunk > body_left) chunk = (size_t)body_left;
            iov[n++] = (struct iovec){(void *)(w->sh->pattern + pat_off), chunk};
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t sent = sendmsg(w->fd, &mh, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return CAIRN_EIO;
        }
        size_t s = (size_t)sent;
        size_t from_head = s < head_left ? s : head_left;
        head += from_head;
        head_left -= from_head;
        s -= from_head;
        body_left -= s;
        pat_off = (pat_off + s) % BODY_CHUNK;
    }
    return 0;
}

/* Reads more bytes into rx after compacting; returns bytes read, 0 at EOF. */
static ssize_t rx_fill(lg_worker *w) {
    if (w->rx_off > 0) {
        memmove(w->rx, w->rx + w->rx_off, w->rx_len - w->rx_off);
        w->rx_len -= w->rx_off;
        w->rx_off = 0;
    }
    if (w->rx_len == RX_BUF) return -1;
    for (;;) {
        ssize_t n = recv(w->fd, w->rx + w->rx_len, RX_BUF - w->rx_len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) w->rx_len += (size_t)n;
        return n;
    }
}

/* Hands up to `want` buffered body bytes to the sink (kept or counted). */
static size_t rx_take(lg_worker *w, uint64_t want, buf_t *keep, lg_resp *r) {
    size_t avail = w->rx_len - w->rx_off;
    size_t n = want < avail ? (size_t)want : avail;
    if (keep) buf_append(keep, w->rx + w->rx_off, n);
    w->rx_off += n;
    r->body_bytes += n;
    return n;
}

/* Reads exactly len body bytes. */
static int read_fixed(lg_worker *w, uint64_t len, buf_t *keep, lg_resp *r) {
    while (len > 0) {
        if (w->rx_off == w->rx_len && rx_fill(w) <= 0) return CAIRN_EIO;
        len -= rx_take(w, len, keep, r);
    }
    return 0;
}

/* Returns a pointer to a complete CRLF-terminated line in rx (NUL-terminated
 * in place) and advances past it, reading more as needed. */
static char *rx_line(lg_worker *w) {
    for (;;) {
        char *start = w->rx + w->rx_off;
        char *eol = memmem(start, w->rx_len - w->rx_off, "\r\n", 2);
        if (eol) {
            *eol = '\0';
            w->rx_off = (size_t)(eol + 2 - w->rx);
            return start;
        }
        if (w->rx_len - w->rx_off >= MAX_HEAD || rx_fill(w) <= 0) return NULL;
    }
}

/* Transfer-Encoding: chunked: size line, data, CRLF ... 0, trailers, CRLF. */
static int read_chunked(lg_worker *w, buf_t *keep, lg_resp *r) {
    for (;;) {
        char *line = rx_line(w);
        if (!line) return CAIRN_EIO;
        char *end;
        errno = 0;
        unsigned long long len = strtoull(line, &end, 16);
        if (end == line || errno) return CAIRN_EIO;
        if (len == 0) break;
        if (read_fixed(w, len, keep, r) != 0) return CAIRN_EIO;
        line = rx_line(w);
        if (!line || *line) return CAIRN_EIO;
    }
    for (;;) {                   /* trailers up to the empty line */
        char *line = rx_line(w);
        if (!line) return CAIRN_EIO;
        if (!*line) return 0;
    }
}

static void read_until_close(lg_worker *w, buf_t *keep, lg_resp *r) {
    for (;;) {
        rx_take(w, UINT64_MAX, keep, r);
        if (rx_fill(w) <= 0) return;
    }
}

/* Parses the response head and reads the body as its framing says.  The body
 * is appended to keep when given (only for error statuses if errors_only). */
static int read_response(lg_worker *w, bool head_only, buf_t *keep, bool errors_only,
                         lg_resp *r) {
    *r = (lg_resp){.content_length = -1};
    char *line;
    do {                         /* skip any 1xx interim responses */
        line = rx_line(w);
        if (!line) return CAIRN_EIO;
        int minor = 1;
        if (sscanf(line, "HTTP/1.%d %d", &minor, &r->status) != 2) return CAIRN_EIO;
        r->close = minor == 0;
        int64_t clen = -1;
        bool chunked = false;
        while ((line = rx_line(w)) != NULL && *line) {
            char *colon = strchr(line, ':');
            if (!colon) return CAIRN_EIO;
            *colon = '\0';
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            if (strcasecmp(line, "content-length") == 0) clen = strtoll(v, NULL, 10);
            else if (strcasecmp(line, "transfer-encoding") == 0) chunked = strcasestr(v, "chunked") != NULL;
            else if (strcasecmp(line, "connection") == 0) {
                if (strcasestr(v, "close")) r->close = true;
                else if (strcasestr(v, "keep-alive")) r->close = false;
            }
        }
        if (!line) return CAIRN_EIO;
        if (r->status >= 100 && r->status < 200) continue;
        r->content_length = clen;
        if (head_only || r->status == 204 || r->status == 304) return 0;
        if (errors_only && r->status < 300) keep = NULL;
        if (chunked) return read_chunked(w, keep, r);
        if (clen >= 0) return read_fixed(w, (uint64_t)clen, keep, r);
        read_until_close(w, keep, r);
        r->close = true;
        return 0;
    } while (1);
}

/* ---- requests ----------------------------------------------------------- */

static void amz_now(char out[17]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Builds the request head in w->head for w->path / w->query. */
static int build_head(lg_worker *w, const char *method, uint64_t body_len, bool has_body) {
    const lg_opts *o = w->sh->o;
    buf_reset(&w->head);
    const char *hostport = w->t->hostport;
    buf_printf(&w->head, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n", method, bstr(&w->path),
               w->query.len ? "?" : "", bstr(&w->query), hostport);
    if (has_body) buf_printf(&w->head, "Content-Length: %" PRIu64 "\r\n", body_len);
    if (o->sign) {
        char amz_date[17];
        amz_now(amz_date);
        auth_header hs[3] = {
            {"host", 4, hostport, strlen(hostport)},
            {"x-amz-content-sha256", 20, "UNSIGNED-PAYLOAD", 16},
            {"x-amz-date", 10, amz_date, 16},
        };
        sigv4_request sr = {method, bstr(&w->path), bstr(&w->query), hs, 3};
        buf_reset(&w->auth);
        int rc = sigv4_sign(&sr, o->access_key, o->secret_key, o->region, "s3", amz_date,
                            "host;x-amz-content-sha256;x-amz-date", "UNSIGNED-PAYLOAD", &w->auth);
        if (rc != 0 || w->auth.oom) return rc ? rc : CAIRN_ENOMEM;
        buf_printf(&w->head, "x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: %s\r\n"
                   "Authorization: %s\r\n", amz_date, w->auth.data);
    }
    buf_puts(&w->head, "\r\n");
    return w->head.oom ? CAIRN_ENOMEM : 0;
}

/* One request/response exchange on the worker's connection.  A reused
 * keep-alive connection that the server closed meanwhile gets one retry on a
 * fresh connection; anything else failing is the caller's error. */
static int exchange(lg_worker *w, const char *method, uint64_t body_len, bool has_body,
                    buf_t *keep, bool errors_only, lg_resp *r) {
    int rc = build_head(w, method, body_len, has_body);
    if (rc != 0) return rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (w->fd < 0 && conn_open(w) != 0) return CAIRN_EIO;
        bool was_reused = w->reused;
        if (keep) buf_reset(keep);
        rc = send_request(w, has_body ? body_len : 0);
        /* Even when sending failed the server may have answered (e.g. 403
         * before reading the body); read what it said. */
        int rrc = read_response(w, strcmp(method, "HEAD") == 0, keep, errors_only, r);
        if (rrc == 0) {
            if (r->close) conn_close(w);
            else w->reused = true;
            return 0;
        }
        conn_close(w);
        if (!was_reused || r->status != 0) return rc ? rc : rrc;
    }
    return CAIRN_EIO;
}

static void set_object_path(lg_worker *w, uint64_t idx) {
    const lg_opts *o = w->sh->o;
    char key[300];
    snprintf(key, sizeof key, "%s%010" PRIu64, o->prefix, idx);
    buf_reset(&w->path);
    buf_puts(&w->path, o->path_prefix);
    buf_putc(&w->path, '/');
    url_encode(&w->path, o->bucket, false);
    buf_putc(&w->path, '/');
    url_encode(&w->path, key, true);
    buf_reset(&w->query);
}

/* Prints the first few errors in full so a broken run explains itself. */
static void report_error(lg_worker *w, const char *method, const lg_resp *r, int rc) {
    int saved_errno = errno;
    if (atomic_fetch_add(&w->sh->errors_shown, 1) >= ERRORS_SHOWN) return;
    if (r->status) {
        char msg[401];
        size_t n = w->body.len < 400 ? w->body.len : 400;
        for (size_t i = 0; i < n; i++) msg[i] = isprint((unsigned char)w->body.data[i]) ? w->body.data[i] : ' ';
        msg[n] = '\0';
        fprintf(stderr, "loadgen: %s %s -> %d %s\n", method, bstr(&w->path), r->status, msg);
    } else {
        fprintf(stderr, "loadgen: %s %s -> %s (%s)\n", method, bstr(&w->path), cairn_strerror(rc),
                saved_errno ? strerror(saved_errno) : "connection closed");
    }
}

/* PUT, GET, HEAD or DELETE of object idx; returns true when it succeeded. */
static bool object_op(lg_worker *w, uint64_t idx) {
    const lg_opts *o = w->sh->o;
    bool put = o->op == OP_PUT;
    static const char *const methods[] = {[OP_PUT] = "PUT", [OP_GET] = "GET", [OP_HEAD] = "HEAD",
                                          [OP_DELETE] = "DELETE"};
    assert(o->op <= OP_DELETE);
    const char *method = methods[o->op];
    set_object_path(w, idx);
    lg_resp r = {0};
    errno = 0;
    /* Bodies are kept only when the status says they are an error message. */
    int rc = exchange(w, method, put ? o->size : 0, put, &w->body, true, &r);
    bool ok = rc == 0 && r.status >= 200 && r.status < 300;
    /* What a reader was promised: every GET byte, and a HEAD's length. */
    bool short_read = o->op == OP_GET ? r.body_bytes != o->size
                      : o->op == OP_HEAD ? r.content_length < 0 || (uint64_t)r.content_length != o->size
                                         : false;
    if (ok && short_read) {
        if (atomic_fetch_add(&w->sh->errors_shown, 1) < ERRORS_SHOWN)
            fprintf(stderr, "loadgen: %s %s -> %" PRId64 " bytes, expected %" PRIu64 "\n", method,
                    bstr(&w->path), o->op == OP_HEAD ? r.content_length : (int64_t)r.body_bytes, o->size);
        return false;
    }
    if (!ok) {
        report_error(w, method, &r, rc);
        return false;
    }
    w->bytes += put ? o->size : r.body_bytes;
    return true;
}

/* Pulls the text between <tag> and </tag> out of a list response. */
static bool xml_field(const buf_t *b, const char *tag, char *out, size_t outcap) {
    char open[64], close_[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close_, sizeof close_, "</%s>", tag);
    const char *s = b->data ? strstr(b->data, open) : NULL;
    if (!s) return false;
    s += strlen(open);
    const char *e = strstr(s, close_);
    if (!e || (size_t)(e - s) >= outcap) return false;
    /* XML-unescape the five predefined entities; tokens rarely need more. */
    size_t n = 0;
    while (s < e) {
        static const struct { const char *ent; char c; } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        bool done = false;
        for (size_t i = 0; i < sizeof ents / sizeof ents[0] && !done; i++) {
            size_t l = strlen(ents[i].ent);
            if (strncmp(s, ents[i].ent, l) == 0) {
                out[n++] = ents[i].c;
                s += l;
                done = true;
            }
        }
        if (!done) out[n++] = *s++;
    }
    out[n] = '\0';
    return true;
}

static uint64_t count_keys(const buf_t *b) {
    uint64_t n = 0;
    for (const char *p = b->data; p && (p = strstr(p, "<Key>")) != NULL; p += 5) n++;
    return n;
}

/* Builds the ListObjectsV2 query for the next page. */
static void set_list_query(lg_worker *w, const char *token) {
    const lg_opts *o = w->sh->o;
    buf_reset(&w->path);
    buf_puts(&w->path, o->path_prefix);
    buf_putc(&w->path, '/');
    url_encode(&w->path, o->bucket, false);
    buf_reset(&w->query);
    if (token[0]) {
        buf_puts(&w->query, "continuation-token=");
        url_encode(&w->query, token, false);
        buf_putc(&w->query, '&');
    }
    buf_printf(&w->query, "list-type=2&max-keys=%d", o->max_keys);
    if (o->prefix[0]) {
        buf_puts(&w->query, "&prefix=");
        url_encode(&w->query, o->prefix, false);
    }
    if (!token[0] && o->start_after[0]) {
        buf_puts(&w->query, "&start-after=");
        url_encode(&w->query, o->start_after, false);
    }
}

/* One walk through the bucket; returns true when every page succeeded. */
static bool list_walk(lg_worker *w) {
    const lg_opts *o = w->sh->o;
    char token[4096] = "";
    uint64_t keys = 0;
    for (int page = 0; page < MAX_PAGES; page++) {
        set_list_query(w, token);
        lg_resp r = {0};
        errno = 0;
        int64_t t0 = now_ns();
        int rc = exchange(w, "GET", 0, false, &w->body, false, &r);
        int64_t dt = now_ns() - t0;
        if (rc != 0 || r.status < 200 || r.status >= 300) {
            report_error(w, "GET", &r, rc);
            return false;
        }
        if (lat_push(&w->pages[page], dt) != 0 || lat_push(&w->lat, dt) != 0) return false;
        keys += count_keys(&w->body);
        char trunc[16] = "";
        xml_field(&w->body, "IsTruncated", trunc, sizeof trunc);
        if (strcmp(trunc, "true") != 0) break;
        if (o->max_pages && page + 1 >= o->max_pages) break;
        if (!xml_field(&w->body, "NextContinuationToken", token, sizeof token) || !token[0]) {
            if (atomic_fetch_add(&w->sh->errors_shown, 1) < ERRORS_SHOWN)
                fprintf(stderr, "loadgen: list page %d truncated without a token\n", page + 1);
            return false;
        }
    }
    w->keys_listed += keys;
    w->walks_complete++;
    /* A walk cut at --max-pages checks the keys of the pages it read. */
    if (o->keys && keys != o->keys) {
        if (atomic_fetch_add(&w->sh->errors_shown, 1) < ERRORS_SHOWN)
            fprintf(stderr, "loadgen: listing returned %" PRIu64 " keys, expected %" PRIu64 "\n",
                    keys, o->keys);
        return false;
    }
    return true;
}

/* Claims the next request index; false when the run is over. */
static bool next_index(lg_shared *sh, uint64_t *idx) {
    if (sh->deadline_ns && now_ns() >= sh->deadline_ns) return false;
    uint64_t i = atomic_fetch_add(&sh->next, 1);
    if (sh->o->requests && i >= sh->o->requests) return false;
    *idx = i;
    return true;
}

static void *worker_main(void *arg) {
    lg_worker *w = arg;
    const lg_opts *o = w->sh->o;
    uint64_t idx;
    while (next_index(w->sh, &idx)) {
        int64_t t0 = now_ns();
        bool ok;
        if (o->op == OP_LIST) {
            ok = list_walk(w);
        } else {
            ok = object_op(w, o->keys ? idx % o->keys : idx);
            if (ok && lat_push(&w->lat, now_ns() - t0) != 0) ok = false;
        }
        if (ok) w->ok++;
        else w->errors++;
    }
    conn_close(w);
    return NULL;
}

/* ---- single requests: mkbucket and probe ---------------------------------- */

static int run_single(lg_shared *sh, lg_worker *w) {
    const lg_opts *o = sh->o;
    lg_resp r = {0};
    buf_reset(&w->path);
    buf_reset(&w->query);
    const char *method = "GET";
    if (o->op == OP_MKBUCKET) {
        method = "PUT";
        buf_puts(&w->path, o->path_prefix);
        buf_putc(&w->path, '/');
        url_encode(&w->path, o->bucket, false);
    } else {
        buf_puts(&w->path, o->probe_path);
    }
    errno = 0;
    int rc = exchange(w, method, 0, o->op == OP_MKBUCKET, &w->body, false, &r);
    conn_close(w);
    bool ok = rc == 0 && r.status >= 200 && r.status < 300;
    if (!ok && o->op == OP_MKBUCKET) report_error(w, method, &r, rc);
    if (o->op == OP_MKBUCKET) printf("op=mkbucket bucket=%s status=%d errors=%d\n", o->bucket, r.status, !ok);
    return ok ? 0 : 1;
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f) {
    fputs("usage: cairn-loadgen --url http://127.0.0.1:PORT[,http://...]\n"
          "         --op put|get|head|delete|list|mkbucket|probe\n"
          "         [--size BYTES] [--concurrency N] [--requests N] [--duration SEC]\n"
          "         [--bucket B] [--prefix P] [--keys N] [--access-key AK --secret-key SK]\n"
          "         [--region R] [--nosign] [--path-prefix /dav] [--path /health/live]\n"
          "         [--max-keys 1000] [--max-pages N] [--pages 1,50] [--start-after KEY]\n"
          "Prints one line: op=.. size=.. conc=.. requests=.. errors=.. seconds=.. rps=..\n"
          "mbps=.. (10^6 bytes/s) p50_ms=.. p99_ms=.. [pageN_ms=..] [targets=N];\n"
          "exit 1 when errors > 0.\n",
          f);
}

/* Parses one http://HOST:PORT (an IPv4 address; nothing after the port but
 * an optional '/') of len bytes into t. */
static int parse_target(lg_target *t, const char *url, size_t len) {
    char one[128];
    if (len >= sizeof one || len < 7 || strncmp(url, "http://", 7) != 0) return CAIRN_EINVAL;
    memcpy(one, url, len);
    one[len] = '\0';
    const char *h = one + 7;
    const char *colon = strchr(h, ':');
    if (!colon || (size_t)(colon - h) >= sizeof t->host) return CAIRN_EINVAL;
    memcpy(t->host, h, (size_t)(colon - h));
    t->host[colon - h] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port <= 0 || port > 65535 || (*end && strcmp(end, "/") != 0)) return CAIRN_EINVAL;
    t->port = (int)port;
    snprintf(t->hostport, sizeof t->hostport, "%.*s:%ld", (int)(colon - h), h, port);
    return 0;
}

/* --url: one URL or several, comma-separated; may be given more than once. */
static int parse_url(lg_opts *o, const char *urls) {
    while (*urls) {
        size_t len = strcspn(urls, ",");
        if (o->ntargets == MAX_TARGETS) return CAIRN_EINVAL;
        int rc = parse_target(&o->targets[o->ntargets], urls, len);
        if (rc != 0) return rc;
        o->ntargets++;
        urls += len;
        if (*urls == ',') urls++;
    }
    return 0;
}

static int parse_pages(lg_opts *o, const char *s) {
    o->nreport_pages = 0;
    while (*s) {
        char *end;
        long p = strtol(s, &end, 10);
        if (end == s || p < 1 || p > MAX_PAGES || o->nreport_pages == MAX_REPORT_PAGES) return CAIRN_EINVAL;
        o->report_pages[o->nreport_pages++] = (int)p;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return CAIRN_EINVAL;
    }
    return 0;
}

static int parse_op(const char *s, lg_op *op) {
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(s, op_names[i]) == 0) {
            *op = (lg_op)i;
            return 0;
        }
    return CAIRN_EINVAL;
}

static void copy_opt(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src); }

static int parse_args(int argc, char **argv, lg_opts *o) {
    static const struct option longs[] = {
        {"url", 1, 0, 'u'},         {"op", 1, 0, 'o'},          {"size", 1, 0, 's'},
        {"concurrency", 1, 0, 'c'}, {"requests", 1, 0, 'n'},    {"duration", 1, 0, 'd'},
        {"bucket", 1, 0, 'b'},      {"prefix", 1, 0, 'p'},      {"keys", 1, 0, 'k'},
        {"access-key", 1, 0, 'A'},  {"secret-key", 1, 0, 'S'},  {"region", 1, 0, 'r'},
        {"nosign", 0, 0, 'N'},      {"path-prefix", 1, 0, 'P'}, {"path", 1, 0, 'h'},
        {"max-keys", 1, 0, 'm'},    {"max-pages", 1, 0, 'M'},   {"pages", 1, 0, 'g'},
        {"start-after", 1, 0, 'a'}, {"help", 0, 0, '?'},        {0, 0, 0, 0}};
    *o = (lg_opts){.concurrency = 1, .size = 4096, .sign = true, .max_keys = 1000, .op = OP_PUT};
    copy_opt(o->region, sizeof o->region, "us-east-1");
    copy_opt(o->bucket, sizeof o->bucket, "bench");
    copy_opt(o->probe_path, sizeof o->probe_path, "/health/live");
    bool url = false;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'u': url = true; rc = parse_url(o, optarg); break;
        case 'o': rc = parse_op(optarg, &o->op); break;
        case 's': o->size = strtoull(optarg, NULL, 10); break;
        case 'c': o->concurrency = atoi(optarg); break;
        case 'n': o->requests = strtoull(optarg, NULL, 10); break;
        case 'd': o->duration = atof(optarg); break;
        case 'b': copy_opt(o->bucket, sizeof o->bucket, optarg); break;
        case 'p': copy_opt(o->prefix, sizeof o->prefix, optarg); break;
        case 'k': o->keys = strtoull(optarg, NULL, 10); break;
        case 'A': copy_opt(o->access_key, sizeof o->access_key, optarg); break;
        case 'S': copy_opt(o->secret_key, sizeof o->secret_key, optarg); break;
        case 'r': copy_opt(o->region, sizeof o->region, optarg); break;
        case 'N': o->sign = false; break;
        case 'P': copy_opt(o->path_prefix, sizeof o->path_prefix, optarg); break;
        case 'h': copy_opt(o->probe_path, sizeof o->probe_path, optarg); break;
        case 'm': o->max_keys = atoi(optarg); break;
        case 'M': o->max_pages = atoi(optarg); break;
        case 'g': rc = parse_pages(o, optarg); break;
        case 'a': copy_opt(o->start_after, sizeof o->start_after, optarg); break;
        default: return CAIRN_EINVAL;
        }
        if (rc != 0) return rc;
    }
    if (optind != argc || !url || o->ntargets < 1) return CAIRN_EINVAL;
    if (o->concurrency < 1 || o->concurrency > 1024 || o->max_keys < 1) return CAIRN_EINVAL;
    if (o->op == OP_PROBE) o->sign = false;
    if (o->sign && (!o->access_key[0] || !o->secret_key[0])) return CAIRN_EINVAL;
    bool load = o->op != OP_MKBUCKET && o->op != OP_PROBE;
    if (load && !o->requests && o->duration <= 0) o->requests = o->op == OP_LIST ? 1 : 1000;
    /* Reads and deletes need keys that exist. */
    if ((o->op == OP_GET || o->op == OP_HEAD || o->op == OP_DELETE) && !o->keys) return CAIRN_EINVAL;
    size_t n = strlen(o->path_prefix);
    while (n > 0 && o->path_prefix[n - 1] == '/') o->path_prefix[--n] = '\0';
    return 0;
}

/* ---- run and report ----------------------------------------------------- */

static int worker_init(lg_worker *w, lg_shared *sh, int index) {
    *w = (lg_worker){.sh = sh, .fd = -1, .t = &sh->o->targets[index % sh->o->ntargets]};
    buf_init(&w->head);
    buf_init(&w->auth);
    buf_init(&w->body);
    buf_init(&w->path);
    buf_init(&w->query);
    w->rx = malloc(RX_BUF);
    if (sh->o->op == OP_LIST) w->pages = calloc(MAX_PAGES, sizeof *w->pages);
    if (!w->rx || (sh->o->op == OP_LIST && !w->pages)) return CAIRN_ENOMEM;
    return 0;
}

static void worker_free(lg_worker *w) {
    buf_free(&w->head);
    buf_free(&w->auth);
    buf_free(&w->body);
    buf_free(&w->path);
    buf_free(&w->query);
    free(w->rx);
    free(w->lat.v);
    if (w->pages)
        for (int i = 0; i < MAX_PAGES; i++) free(w->pages[i].v);
    free(w->pages);
}


/* Merges the workers' figures and prints the summary line; returns the exit
 * status (0 clean, 1 some request failed, 2 out of memory). */
static int report(const lg_opts *o, lg_worker *ws, double seconds) {
    uint64_t ok = 0, errors = 0, bytes = 0, keys_listed = 0;
    lat_vec all = {0};
    for (int i = 0; i < o->concurrency; i++) {
        ok += ws[i].ok;
        errors += ws[i].errors;
        bytes += ws[i].bytes;
        keys_listed += ws[i].keys_listed;
        if (lat_append(&all, &ws[i].lat) != 0) return 2;
    }
    lat_sort(&all);
    uint64_t done = ok + errors;
    printf("op=%s size=%" PRIu64 " conc=%d requests=%" PRIu64 " errors=%" PRIu64
           " seconds=%.3f rps=%.1f mbps=%.2f p50_ms=%.3f p99_ms=%.3f",
           op_names[o->op], o->op == OP_LIST ? 0 : o->size, o->concurrency, done, errors, seconds,
           (double)(o->op == OP_LIST ? all.n : done) / seconds, (double)bytes / 1e6 / seconds,
           lat_pct_ms(&all, 50), lat_pct_ms(&all, 99));
    free(all.v);
    if (o->op == OP_LIST) {
        int npages = 0;
        for (int p = 0; p < MAX_PAGES; p++)
            for (int i = 0; i < o->concurrency; i++)
                if (ws[i].pages[p].n) npages = p + 1;
        printf(" pages=%d keys_listed=%" PRIu64, npages, keys_listed);
        for (int j = 0; j < o->nreport_pages; j++) {
            int p = o->report_pages[j] - 1;
            lat_vec pv = {0};
            for (int i = 0; i < o->concurrency; i++)
                if (lat_append(&pv, &ws[i].pages[p]) != 0) return 2;
            lat_sort(&pv);
            if (pv.n) printf(" page%d_ms=%.3f", p + 1, lat_pct_ms(&pv, 50));
            else printf(" page%d_ms=NA", p + 1);
            free(pv.v);
        }
    }
    if (o->ntargets > 1) printf(" targets=%d", o->ntargets);
    printf("\n");
    fflush(stdout);
    return errors ? 1 : 0;
}

static int run_load(lg_shared *sh) {
    const lg_opts *o = sh->o;
    lg_worker *ws = calloc((size_t)o->concurrency, sizeof *ws);
    if (!ws) return 2;
    int rc = 0, started = 0;
    for (int i = 0; i < o->concurrency && rc == 0; i++) rc = worker_init(&ws[i], sh, i);
    int64_t t0 = now_ns();
    if (o->duration > 0) sh->deadline_ns = t0 + (int64_t)(o->duration * 1e9);
    for (; rc == 0 && started < o->concurrency; started++)
        if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0) rc = CAIRN_ENOMEM;
    for (int i = 0; i < started; i++) pthread_join(ws[i].tid, NULL);
    double seconds = (double)(now_ns() - t0) / 1e9;
    int exit_code = rc == 0 ? report(o, ws, seconds) : 2;
    if (rc != 0) fprintf(stderr, "loadgen: setup failed: %s\n", cairn_strerror(rc));
    for (int i = 0; i < o->concurrency; i++) worker_free(&ws[i]);
    free(ws);
    return exit_code;
}

int main(int argc, char **argv) {
    lg_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    char *pattern = malloc(BODY_CHUNK);
    if (!pattern) return 2;
    /* A non-constant pattern so no layer can shortcut zero pages. */
    for (size_t i = 0; i < BODY_CHUNK; i++) pattern[i] = (char)('a' + (i * 7 + i / 4093) % 26);
    lg_shared sh = {.o = &o, .pattern = pattern};
    atomic_init(&sh.next, 0);
    atomic_init(&sh.errors_shown, 0);
    int code;
    if (o.op == OP_MKBUCKET || o.op == OP_PROBE) {
        lg_worker w;
        code = worker_init(&w, &sh, 0) == 0 ? run_single(&sh, &w) : 2;
        worker_free(&w);
    } else {
        code = run_load(&sh);
    }
    free(pattern);
    return code;
}
