/*
 * remote.c — a storage node as a drive (drive.h), speaking the shard API
 * (docs/shard-api.md) over plain HTTP/1.1 sockets.
 *
 * Why blocking sockets and not libcurl's multi interface: each shard of an
 * upload is already fed by the writer's own thread, one append per stripe, and
 * a socket send buffer absorbs a block, so the k+m uploads proceed in
 * parallel without an event loop.  Every socket has SO_SNDTIMEO/SO_RCVTIMEO
 * of timeout_ms, so a dead or hung (SIGSTOPped) node costs at most one timeout
 * per call, after which the store treats that shard as lost and uses parity.
 *
 * An upload announces Content-Length when the store knows each shard's size
 * up front (the fast path: the node checks the length before the first
 * byte).  A shard of unknown size (an object whose body came without a
 * length: a chunked PUT, a POST form) is sent Transfer-Encoding: chunked,
 * one chunk per append, and ends with its tag as the last data chunk and
 * then the zero chunk: only a stream that ended that way can become a
 * shard, so an upload cut short at any byte leaves nothing on the node.
 * A shard read is one ranged GET streamed forward, re-issued only when the
 * reader jumps.
 *
 * Every request is signed for the node's id (learned from the unsigned
 * /health/live, or the registry's when the node is down) with a nonce: this
 * drive's session id, random per open, and the next number of its counter.
 * An upload's shard bytes are followed by their Poly1305 tag, computed as
 * they stream (node.c says why; docs/shard-api.md has the wire format).
 * Response heads are untrusted input, parsed by shard_head_parse.
 */
#include "data/drive.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "data/data.h"
#include "data/shard_api.h"

typedef struct {
    drive base;
    char host[256];
    char port[16];
    char url[300];
    char id[DATA_DRIVE_ID_LEN + 1];
    char secret[256];
    int timeout_ms;
    SSL_CTX *tls;       /* https:// nodes: verifies the node's certificate and name */
    EVP_MAC *poly;      /* Poly1305, for upload tags */
    char session[2 * SHARD_SESSION_BYTES + 1];
    atomic_uint_fast64_t seq;   /* the last sequence number used */
} remote_drive;

/* A connection to a node: a socket, with TLS on top for https:// nodes. */
typedef struct {
    int fd;
    SSL *ssl;
} rconn;

typedef struct {
    shard_out base;
    rconn c;
    uint64_t remaining;
    bool chunked;       /* size unknown: Transfer-Encoding: chunked, no remaining */
    bool failed;
    EVP_MAC_CTX *tag;   /* over the shard bytes sent so far */
} remote_out;

typedef struct {
    shard_in base;
    char name[48];
    int64_t size;
    rconn c;            /* an open GET streaming from pos, or c.fd == -1 */
    uint64_t pos;
    uint64_t left;      /* body bytes of that GET not consumed yet */
    char spill[SHARD_HEAD_MAX]; /* body bytes that arrived with the response head */
    size_t spill_len, spill_off;
} remote_in;

#define RD(x) ((remote_drive *)(x))

/* ---- sockets -------------------------------------------------------------------- */

static int tcp_connect(remote_drive *d) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(d->host, d->port, &hints, &ai) != 0) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return -1;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    if (rc != 0) {
        struct pollfd p = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&p, 1, d->timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            close(fd);
            return -1;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {d->timeout_ms / 1000, (d->timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void rconn_close(rconn *c) {
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* Connects (and, for https://, completes a verified TLS handshake). */
static int rconn_open(remote_drive *d, rconn *c) {
    c->ssl = NULL;
    c->fd = tcp_connect(d);
    if (c->fd < 0) return -1;
    if (!d->tls) return 0;
    c->ssl = SSL_new(d->tls);
    /* The certificate must name the node as it is addressed: an IP address
     * against the IP SANs (no SNI for literals), a host name against DNS. */
    unsigned char ipbuf[16];
    bool ip = inet_pton(AF_INET, d->host, ipbuf) == 1 || inet_pton(AF_INET6, d->host, ipbuf) == 1;
    bool named = c->ssl && (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), d->host) == 1
                               : SSL_set_tlsext_host_name(c->ssl, d->host) == 1 && SSL_set1_host(c->ssl, d->host) == 1);
    if (!c->ssl || !named || !SSL_set_fd(c->ssl, c->fd) || SSL_connect(c->ssl) != 1) {
        ERR_clear_error();
        rconn_close(c);
        return -1;
    }
    return 0;
}

static ssize_t rconn_recv(rconn *c, void *p, size_t n) {
    int e = fault_inject(FAULT_NET_RECV); /* a fault-injection site (core.h) */
    if (e) {
        errno = e;
        return -1;
    }
    if (!c->ssl) return recv(c->fd, p, n, 0);
    int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r <= 0) ERR_clear_error();
    return r;
}

static int send_all_tls(rconn *c, const struct iovec *iov, int iovcnt) {
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            int r = SSL_write(c->ssl, p, left > (1u << 30) ? (1 << 30) : (int)left);
            if (r <= 0) {
                ERR_clear_error();
                return CAIRN_EIO;
            }
            p += r;
            left -= (size_t)r;
        }
    }
    return 0;
}

static int send_all(rconn *c, const struct iovec *iov_in, int iovcnt) {
    if (fault_inject(FAULT_NET_SEND)) return CAIRN_EIO; /* a fault-injection site (core.h) */
    if (c->ssl) return send_all_tls(c, iov_in, iovcnt);
    int fd = c->fd;
    struct iovec iov[8];
    if (iovcnt > 8) return CAIRN_EINVAL;
    memcpy(iov, iov_in, sizeof *iov * (size_t)iovcnt);
    int first = 0;
    while (first < iovcnt) {
        struct msghdr m = {.msg_iov = iov + first, .msg_iovlen = (size_t)(iovcnt - first)};
        ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return CAIRN_EIO; /* includes the send timeout */
        drive_iov_advance(iov, iovcnt, &first, (size_t)r);
    }
    return 0;
}

/* Sends a signed request head (sig_out, when given, gets its signature). */
static int send_head(remote_drive *d, rconn *c, const char *method, const char *target, int64_t content_length,
                     const char *extra, char *sig_out) {
    char date[24], nonce[SHARD_NONCE_MAX], sig[65];
    snprintf(date, sizeof date, "%lld", (long long)time_now_ms());
    unsigned long long seq = (unsigned long long)atomic_fetch_add(&d->seq, 1) + 1;
    snprintf(nonce, sizeof nonce, "%s.%llu", d->session, seq);
    int rc = shard_sign(d->secret, d->id, method, target, date, nonce, content_length, sig);
    if (rc != 0) return rc;
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s:%s\r\nX-Cairn-Date: %s\r\nX-Cairn-Nonce: %s\r\n"
                     "X-Cairn-Signature: %s\r\nConnection: close\r\n%s",
                     method, target, d->host, d->port, date, nonce, sig, extra ? extra : "");
    if (n < 0 || n >= (int)sizeof head - 48) return CAIRN_EINVAL;
    if (content_length >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %lld\r\n", (long long)content_length);
    else if (content_length == SHARD_LENGTH_CHUNKED) n += snprintf(head + n, sizeof head - (size_t)n, "Transfer-Encoding: chunked\r\n");
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (sig_out) memcpy(sig_out, sig, sizeof sig);
    struct iovec iov = {head, (size_t)n};
    return send_all(c, &iov, 1);
}

/* Reads the response head into *h (shard_head_parse); returns the status or
 * -1.  Body bytes read past the head (at most SHARD_HEAD_MAX) are copied to
 * spill/spill_len. */
static int read_head(rconn *c, shard_head *h, char spill[SHARD_HEAD_MAX], size_t *spill_len) {
    char buf[SHARD_HEAD_MAX];
    size_t have = 0;
    *spill_len = 0;
    for (;;) {
        if (have == sizeof buf) return -1;
        ssize_t r = rconn_recv(c, buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR && !c->ssl) continue;
        if (r <= 0) return -1;
        have += (size_t)r;
        if (shard_head_parse(buf, have, h) != 0) return -1;
        if (h->head_len == 0) continue;
        assert(h->head_len <= have && have - h->head_len <= SHARD_HEAD_MAX);
        *spill_len = have - h->head_len;
        memcpy(spill, buf + h->head_len, *spill_len);
        return h->status;
    }
}

/* One signed request without a body to send and with a small answer. */
static int simple_call(remote_drive *d, const char *method, const char *target, const char *extra,
                       buf_t *body_out, int64_t *content_length) {
    rconn c;
    if (rconn_open(d, &c) != 0) return -1;
    int status = -1;
    char spill[SHARD_HEAD_MAX];
    size_t sl = 0;
    shard_head h = {.content_length = -1};
    if (send_head(d, &c, method, target, -1, extra, NULL) == 0) status = read_head(&c, &h, spill, &sl);
    int64_t cl = h.content_length;
    if (status > 0 && body_out) {
        buf_append(body_out, spill, sl);
        while (cl < 0 || (int64_t)body_out->len < cl) {
            char tmp[8192];
            ssize_t r = rconn_recv(&c, tmp, sizeof tmp);
            if (r <= 0) break;
            buf_append(body_out, tmp, (size_t)r);
            if (body_out->len > (1u << 20)) break;
        }
    }
    if (content_length) *content_length = cl;
    rconn_close(&c);
    return status;
}

static void shard_target(const char *name, char *out, size_t n) { snprintf(out, n, "/v1/shards/%s", name); }

/* ---- the drive operations ---------------------------------------------------------------- */

static void remote_close(drive *d) {
    if (RD(d)->tls) SSL_CTX_free(RD(d)->tls);
    EVP_MAC_free(RD(d)->poly);
    free(RD(d));
}
static const char *remote_id(const drive *d) { return ((const remote_drive *)d)->id; }
static const char *remote_path(const drive *d) { return ((const remote_drive *)d)->url; }

static int remote_create(drive *dd, const char *name, uint64_t size, shard_out **out) {
    remote_drive *d = RD(dd);
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    remote_out *o = calloc(1, sizeof *o);
    if (!o) return CAIRN_ENOMEM;
    o->base.d = dd;
    o->chunked = size == DRIVE_SIZE_UNKNOWN;
    o->remaining = o->chunked ? 0 : size;
    char target[80], sig[65];
    shard_target(name, target, sizeof target);
    o->c.fd = -1;
    int rc = CAIRN_EIO;
    int64_t cl = o->chunked ? SHARD_LENGTH_CHUNKED : (int64_t)(size + SHARD_TAG_LEN);
    if (rconn_open(d, &o->c) == 0 && send_head(d, &o->c, "PUT", target, cl, NULL, sig) == 0)
        rc = (o->tag = shard_tag_new(d->poly, d->secret, sig)) ? 0 : CAIRN_ENOMEM;
    if (rc != 0) {
        rconn_close(&o->c); /* the node discards a body cut short */
        free(o);
        return rc;
    }
    *out = &o->base;
    return 0;
}

/* Sends iov as one chunk of a chunked body: size line, bytes, CRLF. */
static int send_chunk(rconn *c, const struct iovec *iov, int iovcnt, size_t n) {
    assert(n > 0); /* a zero-size chunk would end the body */
    if (iovcnt > 6) return CAIRN_EINVAL;
    char line[24];
    struct iovec v[8];
    v[0] = (struct iovec){line, (size_t)snprintf(line, sizeof line, "%zx\r\n", n)};
    memcpy(v + 1, iov, sizeof *iov * (size_t)iovcnt);
    v[iovcnt + 1] = (struct iovec){(void *)"\r\n", 2};
    return send_all(c, v, iovcnt + 2);
}

static int remote_append(shard_out *oo, const struct iovec *iov, int iovcnt) {
    remote_out *o = (remote_out *)oo;
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++) n += iov[i].iov_len;
    if (o->failed || (!o->chunked && n > o->remaining)) return CAIRN_EIO;
    if (n == 0) return 0;
    for (int i = 0; i < iovcnt; i++) EVP_MAC_update(o->tag, iov[i].iov_base, iov[i].iov_len);
    int rc = o->chunked ? send_chunk(&o->c, iov, iovcnt, n) : send_all(&o->c, iov, iovcnt);
    if (rc != 0) {
        o->failed = true;
        return rc;
    }
    if (!o->chunked) o->remaining -= n;
    return 0;
}

static void remote_writeback(shard_out *o) { (void)o; }

static void remote_abort(shard_out *oo) {
    remote_out *o = (remote_out *)oo;
    /* Closing before the announced length, or before a chunked body's zero
     * chunk, leaves the node a cut-short body, which it discards. */
    rconn_close(&o->c);
    EVP_MAC_CTX_free(o->tag);
    free(o);
}

static int remote_commit(shard_out *oo) {
    remote_out *o = (remote_out *)oo;
    int rc = CAIRN_EIO;
    unsigned char tag[SHARD_TAG_LEN + 16];
    size_t tl = 0;
    if (!o->failed && o->remaining == 0 && EVP_MAC_final(o->tag, tag, &tl, sizeof tag) && tl == SHARD_TAG_LEN) {
        shard_head h;
        char spill[SHARD_HEAD_MAX];
        size_t sl;
        /* Chunked: the tag as the last data chunk, then the zero chunk
         * (no trailer) that ends the body. */
        char line[8];
        int ll = snprintf(line, sizeof line, "%x\r\n", SHARD_TAG_LEN);
        struct iovec plain = {tag, SHARD_TAG_LEN};
        struct iovec chunked[3] = {{line, (size_t)ll}, {tag, SHARD_TAG_LEN}, {(void *)"\r\n0\r\n\r\n", 7}};
        int sent = o->chunked ? send_all(&o->c, chunked, 3) : send_all(&o->c, &plain, 1);
        int status = sent == 0 ? read_head(&o->c, &h, spill, &sl) : -1;
        rc = status == 201 ? 0 : status == 507 ? CAIRN_ENOSPC : CAIRN_EIO;
    }
    rconn_close(&o->c);
    EVP_MAC_CTX_free(o->tag);
    free(o);
    return rc;
}

static int remote_open(drive *dd, const char *name, shard_in **out) {
    remote_drive *d = RD(dd);
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    char target[80];
    shard_target(name, target, sizeof target);
    int64_t cl = -1;
    int status = simple_call(d, "HEAD", target, NULL, NULL, &cl);
    if (status == 404) return CAIRN_ENOTFOUND;
    if (status != 200 || cl < 0) return CAIRN_EIO;
    remote_in *in = calloc(1, sizeof *in);
    if (!in) return CAIRN_ENOMEM;
    in->base.d = dd;
    snprintf(in->name, sizeof in->name, "%s", name);
    in->size = cl;
    in->c.fd = -1;
    *out = &in->base;
    return 0;
}

/* (Re)starts a ranged GET at off. */
static int restart_get(remote_in *in, uint64_t off) {
    remote_drive *d = RD(in->base.d);
    rconn_close(&in->c);
    if (rconn_open(d, &in->c) != 0) return CAIRN_EIO;
    char target[80], range[96];
    shard_target(in->name, target, sizeof target);
    snprintf(range, sizeof range, "Range: bytes=%llu-%lld\r\n", (unsigned long long)off, (long long)in->size - 1);
    shard_head h = {.content_length = -1};
    size_t sl = 0;
    int status = send_head(d, &in->c, "GET", target, -1, range, NULL) == 0 ? read_head(&in->c, &h, in->spill, &sl) : -1;
    int64_t cl = h.content_length;
    if ((status != 206 && (status != 200 || off != 0)) || cl < 0 || (uint64_t)sl > (uint64_t)cl) {
        rconn_close(&in->c);
        return CAIRN_EIO;
    }
    in->pos = off;
    in->left = (uint64_t)cl;
    in->spill_len = sl;
    in->spill_off = 0;
    return 0;
}

static ssize_t remote_preadv(shard_in *ii, const struct iovec *iov, int iovcnt, uint64_t off) {
    remote_in *in = (remote_in *)ii;
    if (off >= (uint64_t)in->size) return 0;
    if (in->c.fd < 0 || in->pos != off || in->left == 0)
        if (restart_get(in, off) != 0) return CAIRN_EIO;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t got = 0;
        while (got < iov[i].iov_len && in->left > 0) {
            size_t want = iov[i].iov_len - got;
            if (want > in->left) want = (size_t)in->left;
            ssize_t r;
            if (in->spill_off < in->spill_len) {
                r = (ssize_t)(in->spill_len - in->spill_off < want ? in->spill_len - in->spill_off : want);
                memcpy((char *)iov[i].iov_base + got, in->spill + in->spill_off, (size_t)r);
                in->spill_off += (size_t)r;
            } else {
                r = rconn_recv(&in->c, (char *)iov[i].iov_base + got, want);
            }
            if (r < 0 && errno == EINTR && !in->c.ssl) continue;
            if (r <= 0) {
                rconn_close(&in->c);
                return total + got ? (ssize_t)(total + got) : CAIRN_EIO;
            }
            got += (size_t)r;
            in->left -= (uint64_t)r;
            in->pos += (uint64_t)r;
        }
        total += got;
        if (got < iov[i].iov_len) break;
    }
    return (ssize_t)total;
}

static int64_t remote_shard_size(shard_in *in) { return ((remote_in *)in)->size; }

static void remote_close_shard(shard_in *ii) {
    remote_in *in = (remote_in *)ii;
    rconn_close(&in->c);
    free(in);
}

static int remote_remove(drive *dd, const char *name) {
    char target[80];
    shard_target(name, target, sizeof target);
    int status = simple_call(RD(dd), "DELETE", target, NULL, NULL, NULL);
    return status == 204 || status == 404 ? 0 : CAIRN_EIO;
}

/* Asks the node its id: an unsigned GET /health/live, answered with
 * X-Cairn-Node-Id.  A forged answer only makes our signatures fail. */
static int probe_id(remote_drive *d) {
    rconn c;
    if (rconn_open(d, &c) != 0) return CAIRN_EIO;
    char head[600], spill[SHARD_HEAD_MAX];
    int n = snprintf(head, sizeof head, "GET /health/live HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n",
                     d->host, d->port);
    struct iovec iov = {head, (size_t)n};
    shard_head h;
    size_t sl;
    int status = n > 0 && n < (int)sizeof head && send_all(&c, &iov, 1) == 0 ? read_head(&c, &h, spill, &sl) : -1;
    rconn_close(&c);
    if (status != 200 || !h.node_id[0]) return CAIRN_EIO;
    memcpy(d->id, h.node_id, sizeof d->id);
    return 0;
}

/* Fetches /v1/info (which must name the node we signed for); fills the
 * smallest free space of the node's drives and their total. */
static int fetch_info(remote_drive *d, int64_t *free_min, int64_t *total_sum) {
    buf_t b;
    buf_init(&b);
    int status = simple_call(d, "GET", "/v1/info", NULL, &b, NULL);
    int rc = CAIRN_EIO;
    json_t *doc = status == 200 && b.data ? json_loads(b.data, 0, NULL) : NULL;
    if (doc) {
        const char *nid = json_string_value(json_object_get(doc, "node_id"));
        json_t *drives = json_object_get(doc, "drives");
        if (nid && strcmp(nid, d->id) == 0 && json_is_array(drives)) {
            int64_t fmin = -1, tsum = 0;
            size_t i;
            json_t *dv;
            json_array_foreach(drives, i, dv) {
                int64_t f = json_integer_value(json_object_get(dv, "free_bytes"));
                tsum += json_integer_value(json_object_get(dv, "total_bytes"));
                if (fmin < 0 || f < fmin) fmin = f;
            }
            if (free_min) *free_min = fmin;
            if (total_sum) *total_sum = tsum;
            rc = 0;
        }
        json_decref(doc);
    }
    buf_free(&b);
    return rc;
}

static int remote_check_writable(drive *dd) { return fetch_info(RD(dd), NULL, NULL); }
static int remote_free_bytes(drive *dd, int64_t *f, int64_t *t) { return fetch_info(RD(dd), f, t); }
static int remote_tmp_count(drive *dd) { (void)dd; return 0; }

/* Pages through GET /v1/shards?after=&limit= (docs/shard-api.md). */
#define LIST_PAGE 1000
static int remote_walk(drive *dd, drive_entry_fn cb, void *ud) {
    char after[48] = "";
    for (;;) {
        char target[160];
        snprintf(target, sizeof target, "/v1/shards?limit=%d&after=%s", LIST_PAGE, after);
        buf_t b;
        buf_init(&b);
        int status = simple_call(RD(dd), "GET", target, NULL, &b, NULL);
        json_t *doc = status == 200 && b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
        buf_free(&b);
        json_t *list = doc ? json_object_get(doc, "shards") : NULL;
        if (!json_is_array(list)) {
            json_decref(doc);
            return CAIRN_EIO;
        }
        bool more = json_is_true(json_object_get(doc, "truncated"));
        int rc = 0;
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            const char *name = json_string_value(json_object_get(v, "name"));
            /* age_ms from nodes that send it; whole seconds from older ones. */
            json_t *age_ms = json_object_get(v, "age_ms"), *age = json_object_get(v, "age_s");
            if (!name || !drive_shard_name_valid(name) || !(json_is_integer(age_ms) || json_is_integer(age)) ||
                strcmp(name, after) <= 0) {
                rc = CAIRN_EIO; /* a node answering out of order would loop us */
                break;
            }
            drive_entry e;
            snprintf(e.name, sizeof e.name, "%s", name);
            e.age_ms = json_is_integer(age_ms) ? json_integer_value(age_ms) : json_integer_value(age) * 1000;
            snprintf(after, sizeof after, "%s", name);
            if ((rc = cb(ud, &e)) != 0) break;
        }
        bool empty = json_array_size(list) == 0;
        json_decref(doc);
        if (rc != 0 || !more || empty) return rc;
    }
}

static const drive_ops remote_ops = {
    remote_close, remote_id, remote_path, remote_create, remote_append, remote_writeback, remote_commit,
    remote_abort, remote_open, remote_preadv, remote_shard_size, remote_close_shard, remote_remove,
    remote_check_writable, remote_free_bytes, remote_tmp_count, remote_walk,
};

int drive_remote_open(const char *url, const char *secret, const char *tls_ca, int timeout_ms, drive **out) {
    bool answered;
    return drive_remote_open_known(url, secret, tls_ca, timeout_ms, NULL, out, &answered);
}

/* OpenSSL's socket BIO writes with write(), not send(MSG_NOSIGNAL): writing
 * to a node that went away raises SIGPIPE, whose default ends the process.
 * The servers ignore it (cmd_block_signals); any other process that opens a
 * TLS drive (cairn admin fsck --repair) has it ignored here, unless it
 * handles the signal itself. */
static void ignore_sigpipe(void) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    pthread_mutex_unlock(&mu);
}

/* A client context that verifies nodes against tls_ca (or the system CAs). */
static SSL_CTX *tls_client(const char *tls_ca) {
    ignore_sigpipe();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = tls_ca && *tls_ca ? SSL_CTX_load_verify_locations(ctx, tls_ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    /* Mutual TLS: the certificate this process shows nodes that ask. */
    const char *cert, *key;
    tls_client_identity_get(&cert, &key);
    if (ok == 1 && cert[0])
        ok = SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 &&
                     SSL_CTX_check_private_key(ctx) == 1
                 ? 1
                 : 0;
    if (ok != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The Poly1305 method every remote drive tags bodies with, fetched once and
 * kept: OpenSSL 3 fails every later fetch of it in the process once one
 * fetch ran out of memory, so a brief shortage while a node is opened must
 * not cost the gateway Poly1305 (test_node_faults.c).  A new reference, or
 * NULL. */
static EVP_MAC *poly_method(void) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static EVP_MAC *poly;
    pthread_mutex_lock(&mu);
    if (!poly) poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    EVP_MAC *p = poly && EVP_MAC_up_ref(poly) ? poly : NULL;
    pthread_mutex_unlock(&mu);
    return p;
}

int drive_remote_open_known(const char *url, const char *secret, const char *tls_ca, int timeout_ms,
                            const char *known_id, drive **out, bool *answered) {
    remote_drive *d = calloc(1, sizeof *d);
    if (!d) return CAIRN_ENOMEM;
    d->base.ops = &remote_ops;
    d->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    snprintf(d->secret, sizeof d->secret, "%s", secret ? secret : "");
    rand_hex_id(d->session, SHARD_SESSION_BYTES);
    atomic_init(&d->seq, 0);
    if (!(d->poly = poly_method())) {
        free(d);
        return CAIRN_ENOMEM;
    }
    const char *p = url;
    bool https = strncmp(p, "https://", 8) == 0;
    if (https) p += 8;
    else if (strncmp(p, "http://", 7) == 0) p += 7;
    if (https && !(d->tls = tls_client(tls_ca))) {
        remote_close(&d->base);
        return CAIRN_EINVAL;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof d->host || p[hl] != ':') {
        remote_close(&d->base);
        return CAIRN_EINVAL;
    }
    memcpy(d->host, p, hl);
    d->host[hl] = '\0';
    size_t pl = strcspn(p + hl + 1, "/");
    if (pl == 0 || pl >= sizeof d->port) {
        remote_close(&d->base);
        return CAIRN_EINVAL;
    }
    memcpy(d->port, p + hl + 1, pl);
    d->port[pl] = '\0';
    snprintf(d->url, sizeof d->url, "%s://%s:%s", https ? "https" : "http", d->host, d->port);
    int rc = probe_id(d);
    if (rc == 0) rc = fetch_info(d, NULL, NULL);
    *answered = rc == 0;
    if (rc != 0 && known_id && strlen(known_id) == DATA_DRIVE_ID_LEN) {
        memcpy(d->id, known_id, DATA_DRIVE_ID_LEN + 1);
        rc = 0;
    }
    if (rc != 0) {
        remote_close(&d->base);
        return rc;
    }
    *out = &d->base;
    return 0;
}
