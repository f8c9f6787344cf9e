/*
 * hub.c — every WebSocket of the event stream, on one thread (events.h).
 *
 * A socket arrives from http/ after its 101 (events_hub_adopt, on the
 * request's thread, which then goes back to serving S3): it is made
 * non-blocking and added to the hub's epoll set.  From then on only the hub
 * thread reads and writes it.
 *
 * Messages.  The bus hands a stream message to events_hub_deliver (on its
 * own thread).  The message is framed once (an unmasked text frame: the same
 * bytes for every socket) into a reference-counted buffer, and a reference
 * is queued on each socket whose filter takes it; the hub thread, woken by
 * an eventfd, writes the queues out.  A socket's queue is bounded by
 * send_queue_bytes: a message that would pass it makes the socket a slow
 * consumer, which is closed (1008) — its queue dropped, a hangup and a
 * close frame sent if it reads them, cut after a grace otherwise — so one
 * stuck client costs the others nothing but the check.
 *
 * Reading.  Clients send control frames (pongs, pings, a close); ws.h's
 * parser validates everything, and a protocol error, bad UTF-8 or an
 * oversized message is answered with the close code it calls for.
 *
 * Heartbeats.  Every socket gets a ping every ping interval; a pong clears
 * its debt, and a ping unanswered for pong_timeout closes the socket
 * (1011).  The thread ticks at least every 250 ms for these deadlines.
 *
 * Closing.  A socket being closed gets its close frame, then its write side
 * shut (so the frame is not lost to a reset over unread bytes), then the
 * hub reads until the client's end or a grace of CLOSE_GRACE_MS, and hands
 * the socket back to http/ (http_upgraded_close).  A socket closed in the
 * middle of an epoll batch is only unlinked there and freed after the batch.
 *
 * Locking: one mutex over everything, held by the hub thread while it works
 * a batch and by deliverers while they queue.  Socket writes are
 * non-blocking, so the mutex is never held across a wait.
 */
#include "events/events.h"
#include "events/ws.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>


#define TICK_MS 250
#define CLOSE_GRACE_MS 2000
#define READ_CHUNK 4096
#define READ_MAX_PER_WAKE (64 * 1024)
#define SOCKET_SNDBUF (64 * 1024)

/* One framed message, shared by every socket it is queued on. */
typedef struct {
    atomic_int refs;
    int64_t sent_ns;           /* wall ns of its publication (0: a control frame: not measured) */
    size_t len;
    uint8_t bytes[];
} frame;

typedef struct qnode {
    struct qnode *next;
    frame *f;
} qnode;

enum { C_OPEN = 0, C_CLOSING, C_DRAINING, C_DEAD };

typedef struct conn {
    struct conn *prev, *next;  /* hub.conns */
    struct conn *ready_next;   /* hub.ready: has bytes queued since the last flush */
    bool ready;
    int fd;
    http_upgraded *u;          /* NULL once detached from http/ (the fd is ours) */
    events_filter filter;
    ws_parser parser;
    qnode *qhead, *qtail;
    size_t qbytes;             /* frames queued, in bytes */
    size_t head_off;           /* bytes of the head frame already written */
    bool want_out;             /* EPOLLOUT is set */
    int state;                 /* C_* */
    int64_t deadline_ns;       /* C_CLOSING / C_DRAINING: cut then */
    int64_t last_ping_ns;
    int64_t unanswered_ns;     /* the oldest ping without a pong since, 0: none */
    char request_id[40];
} conn;

#define NBUCKETS 11
static const double lat_bounds[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

struct events_hub {
    events_hub_options o;
    int ep, efd;
    pthread_t thread;
    bool started;

    pthread_mutex_t mu;
    pthread_cond_t cv;         /* nconns reached 0 */
    conn *conns;
    conn *ready;
    conn *dead;                /* killed in this batch, freed after it */
    int nconns, reserved;
    bool refusing;             /* shutting down: no new sockets */
    bool stop;                 /* the thread ends */
    /* figures, under mu */
    uint64_t forwarded, slow, unanswered_pings, closed_protocol, opened;
    uint64_t lat_count, lat_bucket[NBUCKETS];
    double lat_sum;
};

/* ---- frames ---------------------------------------------------------------------------- */

static frame *frame_new(int opcode, const void *payload, size_t len, int64_t sent_ns) {
    uint8_t head[WS_HEADER_MAX];
    size_t hl = ws_frame_header(head, opcode, len);
    frame *f = malloc(sizeof *f + hl + len);
    if (!f) return NULL;
    atomic_init(&f->refs, 1);
    f->sent_ns = sent_ns;
    f->len = hl + len;
    memcpy(f->bytes, head, hl);
    if (len) memcpy(f->bytes + hl, payload, len);
    return f;
}

static void frame_put(frame *f) {
    if (atomic_fetch_sub(&f->refs, 1) == 1) free(f);
}

/* ---- one socket (h->mu held) ------------------------------------------------------------ */

static void set_out(events_hub *h, conn *c, bool on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(h->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->want_out = on;
}

static void mark_ready(events_hub *h, conn *c) {
    if (c->ready) return;
    c->ready = true;
    c->ready_next = h->ready;
    h->ready = c;
}

static void drop_queue(conn *c, bool keep_partial) {
    qnode *keep = keep_partial && c->head_off ? c->qhead : NULL;
    qnode *n = keep ? keep->next : c->qhead;
    while (n) {
        qnode *next = n->next;
        frame_put(n->f);
        free(n);
        n = next;
    }
    c->qhead = c->qtail = keep;
    if (keep) keep->next = NULL;
    c->qbytes = keep ? keep->f->len : 0;
    if (!keep) c->head_off = 0;
}

/* Queues f (taking a reference) on c. */
static bool enqueue(events_hub *h, conn *c, frame *f) {
    qnode *n = malloc(sizeof *n);
    if (!n) return false;
    atomic_fetch_add(&f->refs, 1);
    n->f = f;
    n->next = NULL;
    if (c->qtail) c->qtail->next = n;
    else c->qhead = n;
    c->qtail = n;
    c->qbytes += f->len;
    mark_ready(h, c);
    return true;
}

static void enqueue_new(events_hub *h, conn *c, frame *f) {
    if (!f) return;
    enqueue(h, c, f);
    frame_put(f);
}

static void kill_conn(events_hub *h, conn *c) {
    if (c->state == C_DEAD) return;
    c->state = C_DEAD;
    epoll_ctl(h->ep, EPOLL_CTL_DEL, c->fd, NULL);
    drop_queue(c, false);
    if (c->u) http_upgraded_close(c->u);
    else close(c->fd);
    c->u = NULL;
    if (c->prev) c->prev->next = c->next;
    else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = h->dead;
    h->dead = c;
    if (--h->nconns == 0) pthread_cond_broadcast(&h->cv);
}

/* Queues the close frame (code 0: none) and starts the grace in which the
 * socket is closed whatever the client does. */
static void queue_close(events_hub *h, conn *c, unsigned code, const char *reason) {
    uint8_t cf[WS_CLOSE_FRAME_MAX];
    size_t n = ws_close_frame(cf, code, reason);
    frame *f = malloc(sizeof *f + n);
    if (f) {
        atomic_init(&f->refs, 1);
        f->sent_ns = 0;
        f->len = n;
        memcpy(f->bytes, cf, n);
        enqueue_new(h, c, f);
    }
    c->state = C_CLOSING;
    c->deadline_ns = time_mono_ns() + (int64_t)CLOSE_GRACE_MS * 1000000;
}

/* Begins closing c with code: its queue is dropped (a frame half written is
 * finished first), then an optional hangup message and the close frame. */
static void start_close(events_hub *h, conn *c, unsigned code, const char *reason, const char *hangup) {
    if (c->state != C_OPEN) return;
    drop_queue(c, true);
    if (hangup) {
        buf_t m;
        buf_init(&m);
        buf_puts(&m, "{\"type\":\"hangup\",\"reason\":\"");
        buf_json_escape(&m, hangup, strlen(hangup));
        buf_puts(&m, "\"}");
        if (!m.oom) enqueue_new(h, c, frame_new(WS_OP_TEXT, m.data, m.len, 0));
        buf_free(&m);
    }
    queue_close(h, c, code, reason);
    char cs[24];
    log_write(code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ? LOG_INFO : LOG_WARN, c->request_id,
              "event stream socket closing", "code", log_int(cs, code), "reason", reason ? reason : "", NULL);
}

static void note_latency(events_hub *h, int64_t sent_ns) {
    double s = (double)(time_now_us() * 1000 - sent_ns) / 1e9;
    if (s < 0) s = 0;
    h->lat_count++;
    h->lat_sum += s;
    for (int i = 0; i < NBUCKETS; i++)
        if (s <= lat_bounds[i]) h->lat_bucket[i]++;
}

/* Writes what c has queued, as far as the socket takes it. */
static void flush(events_hub *h, conn *c) {
    while (c->qhead && c->state != C_DEAD) {
        frame *f = c->qhead->f;
        ssize_t n = send(c->fd, f->bytes + c->head_off, f->len - c->head_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(h, c, true);
                return;
            }
            if (errno == EINTR) continue;
            kill_conn(h, c);       /* reset, or gone */
            return;
        }
        c->head_off += (size_t)n;
        if (c->head_off < f->len) continue;
        if (f->sent_ns) {
            h->forwarded++;
            note_latency(h, f->sent_ns);
        }
        qnode *q = c->qhead;
        c->qhead = q->next;
        if (!c->qhead) c->qtail = NULL;
        c->qbytes -= f->len;
        c->head_off = 0;
        frame_put(f);
        free(q);
    }
    if (c->state == C_DEAD) return;
    set_out(h, c, false);
    if (c->state == C_CLOSING) {
        /* The close frame is out: shut our side, wait for the client's end. */
        shutdown(c->fd, SHUT_WR);
        c->state = C_DRAINING;
    }
}

static void on_frame(events_hub *h, conn *c, const ws_event *ev) {
    switch (ev->opcode) {
    case WS_OP_PING:
        enqueue_new(h, c, frame_new(WS_OP_PONG, ev->payload, ev->len, 0));
        break;
    case WS_OP_PONG:
        c->unanswered_ns = 0;
        break;
    case WS_OP_CLOSE: {
        /* Echo the client's code (RFC 6455 5.5.1), then close. */
        unsigned code = ev->close_code == WS_CLOSE_NO_STATUS ? 0 : ev->close_code;
        drop_queue(c, true);
        queue_close(h, c, code, NULL);
        break;
    }
    default:
        break;                  /* data messages: validated, not used */
    }
}

/* Reads what c sent: frames while open, anything after (discarded) while closing. */
static void read_conn(events_hub *h, conn *c) {
    uint8_t buf[READ_CHUNK];
    size_t total = 0;
    while (c->state != C_DEAD && total < READ_MAX_PER_WAKE) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {                  /* the client's end, or an error */
            kill_conn(h, c);
            return;
        }
        total += (size_t)n;
        size_t off = 0;
        while (c->state == C_OPEN && off < (size_t)n) {
            size_t used = 0;
            ws_event ev;
            int rc = ws_parse(&c->parser, buf + off, (size_t)n - off, &used, &ev);
            off += used;
            if (rc == WS_EVENT) {
                on_frame(h, c, &ev);
            } else if (rc == WS_ERROR) {
                h->closed_protocol++;
                start_close(h, c, c->parser.error, c->parser.error_reason, NULL);
            } else {
                break;
            }
        }
    }
}

/* Pings and deadlines, every tick. */
static void tick(events_hub *h, int64_t now) {
    for (conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != C_OPEN) {
            if (now > c->deadline_ns) kill_conn(h, c);
            continue;
        }
        if (c->unanswered_ns && now - c->unanswered_ns > h->o.pong_timeout_ms * 1000000) {
            h->unanswered_pings++;
            start_close(h, c, WS_CLOSE_INTERNAL, "no pong within events_pong_timeout", "no pong within events_pong_timeout");
            continue;
        }
        if (now - c->last_ping_ns >= h->o.ping_interval_ms * 1000000) {
            uint8_t p[8];
            memcpy(p, &now, sizeof p);
            enqueue_new(h, c, frame_new(WS_OP_PING, p, sizeof p, 0));
            c->last_ping_ns = now;
            if (!c->unanswered_ns) c->unanswered_ns = now;
        }
    }
}

static void free_dead(events_hub *h) {
    while (h->dead) {
        conn *c = h->dead;
        h->dead = c->next;
        events_filter_free(&c->filter);
        free(c);
    }
}

static void *hub_main(void *arg) {
    pthread_setname_np(pthread_self(), "events-hub");
    events_hub *h = arg;
    struct epoll_event evs[64];
    int64_t next_tick = time_mono_ns();
    for (;;) {
        int n = epoll_wait(h->ep, evs, 64, TICK_MS);
        pthread_mutex_lock(&h->mu);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                while (read(h->efd, &v, sizeof v) == (ssize_t)sizeof v) {
                }
                continue;
            }
            conn *c = evs[i].data.ptr;
            if (c->state == C_DEAD) continue;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_conn(h, c);
            if (c->state != C_DEAD && (evs[i].events & EPOLLOUT)) flush(h, c);
        }
        while (h->ready) {
            conn *c = h->ready;
            h->ready = c->ready_next;
            c->ready = false;
            if (c->state != C_DEAD) flush(h, c);
        }
        int64_t now = time_mono_ns();
        if (now >= next_tick) {
            tick(h, now);
            next_tick = now + (int64_t)TICK_MS * 1000000;
            while (h->ready) {
                conn *c = h->ready;
                h->ready = c->ready_next;
                c->ready = false;
                if (c->state != C_DEAD) flush(h, c);
            }
        }
        free_dead(h);
        bool stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop) break;
    }
    return NULL;
}

static void wake(events_hub *h) {
    uint64_t one = 1;
    ssize_t w = write(h->efd, &one, sizeof one);
    (void)w;                   /* a full counter is still a wake-up */
}

/* ---- the interface ---------------------------------------------------------------------- */

int events_hub_new(const events_hub_options *o, events_hub **out) {
    events_hub *h = calloc(1, sizeof *h);
    if (!h) return CAIRN_ENOMEM;
    h->o = *o;
    if (!h->o.max_message) h->o.max_message = 64 * 1024;
    if (h->o.ping_interval_ms <= 0) h->o.ping_interval_ms = 30000;
    if (h->o.pong_timeout_ms <= 0) h->o.pong_timeout_ms = 60000;
    if (!h->o.send_queue_bytes) h->o.send_queue_bytes = 1u << 20;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    int rc = h->ep >= 0 && h->efd >= 0 && epoll_ctl(h->ep, EPOLL_CTL_ADD, h->efd, &ev) == 0 ? 0 : CAIRN_EIO;
    if (rc == 0 && pthread_create(&h->thread, NULL, hub_main, h) != 0) rc = CAIRN_ENOMEM;
    if (rc != 0) {
        if (h->ep >= 0) close(h->ep);
        if (h->efd >= 0) close(h->efd);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
        return rc;
    }
    h->started = true;
    *out = h;
    return 0;
}

void events_hub_hangup_all(events_hub *h, unsigned code, const char *reason, bool stop) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (stop) h->refusing = true;
    for (conn *c = h->conns; c; c = c->next) start_close(h, c, code, reason, reason);
    pthread_mutex_unlock(&h->mu);
    wake(h);
    if (!stop) return;
    /* Shutting down: wait for the sockets to go (each is cut after its grace). */
    struct timespec ts = time_deadline(CLOCK_REALTIME, CLOSE_GRACE_MS + 1000);
    pthread_mutex_lock(&h->mu);
    while (h->nconns > 0 && pthread_cond_timedwait(&h->cv, &h->mu, &ts) != ETIMEDOUT) {
    }
    for (conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        kill_conn(h, c);
    }
    pthread_mutex_unlock(&h->mu);
}

void events_hub_free(events_hub *h) {
    if (!h) return;
    if (!h->refusing || h->nconns) events_hub_hangup_all(h, WS_CLOSE_GOING_AWAY, "server shutting down", true);
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_mutex_unlock(&h->mu);
    wake(h);
    pthread_join(h->thread, NULL);
    assert(h->nconns == 0 && h->conns == NULL);
    free_dead(h);
    close(h->ep);
    close(h->efd);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

int events_hub_reserve(events_hub *h) {
    pthread_mutex_lock(&h->mu);
    int rc = h->refusing || h->nconns + h->reserved >= h->o.max_sockets ? CAIRN_EBUSY : 0;
    if (rc == 0) h->reserved++;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void events_hub_unreserve(events_hub *h) {
    pthread_mutex_lock(&h->mu);
    assert(h->reserved > 0);
    h->reserved--;
    pthread_mutex_unlock(&h->mu);
}

void events_sub_free(void *ud) {
    events_sub *s = ud;
    if (!s) return;
    if (s->hub) events_hub_unreserve(s->hub);
    events_filter_free(&s->filter);
    free(s);
}

void events_hub_adopt(void *ud, http_upgraded *u, int fd, const char *extra, size_t extra_len) {
    events_sub *s = ud;
    events_hub *h = s->hub;
    conn *c = calloc(1, sizeof *c);
    /* The kernel's share of a socket's backlog is fixed too: autotuned send
     * buffers grow to megabytes, which a stuck client would hold, and which
     * would hide it from the send queue's bound for as long. */
    int sndbuf = SOCKET_SNDBUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (!c || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        free(c);
        http_upgraded_close(u);
        events_sub_free(s);
        return;
    }
    /* Plain sockets leave http/ at once, with the memory MHD kept for the
     * connection; TLS ones stay MHD's (it forwards them). */
    int own = -1;
    if (http_upgraded_detach(u, &own) == 0) {
        fd = own;
        u = NULL;
    }
    c->fd = fd;
    c->u = u;
    c->filter = s->filter;         /* takes the prefix */
    s->filter.prefix = NULL;
    snprintf(c->request_id, sizeof c->request_id, "%s", s->request_id);
    ws_parser_init(&c->parser, h->o.max_message);
    int64_t now = time_mono_ns();
    c->last_ping_ns = now;
    pthread_mutex_lock(&h->mu);
    h->reserved--;
    s->hub = NULL;
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    h->opened++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(h->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        kill_conn(h, c);
    } else {
        /* Bytes the client sent right behind its head. */
        size_t off = 0;
        while (c->state == C_OPEN && off < extra_len) {
            size_t used = 0;
            ws_event wev;
            int rc = ws_parse(&c->parser, (const uint8_t *)extra + off, extra_len - off, &used, &wev);
            off += used;
            if (rc == WS_EVENT) on_frame(h, c, &wev);
            else if (rc == WS_ERROR) start_close(h, c, c->parser.error, c->parser.error_reason, NULL);
            else break;
        }
        if (h->refusing) start_close(h, c, WS_CLOSE_GOING_AWAY, "server shutting down", "server shutting down");
    }
    bool any = h->ready != NULL;
    pthread_mutex_unlock(&h->mu);
    events_sub_free(s);
    if (any) wake(h);
}

void events_hub_deliver(events_hub *h, const char *channel, const char *msg, size_t len) {
    if (!h) return;
    const char *bucket = NULL;
    bool cluster = strcmp(channel, "cairn:cluster") == 0;
    if (!cluster) {
        if (strncmp(channel, "cairn:bucket:", 13) != 0) return;
        bucket = channel + 13;
    }
    char name[64] = "";
    char *key = NULL;
    size_t klen = 0;
    int64_t sent_ns = time_now_us() * 1000;
    bool parsed = false, any = false;
    frame *f = NULL;
    pthread_mutex_lock(&h->mu);
    for (conn *c = h->conns; c; c = c->next) {
        if (c->state != C_OPEN || c->filter.cluster != cluster) continue;
        if (!cluster) {
            if (strcmp(c->filter.bucket, bucket) != 0) continue;
            if (!parsed) {
                parsed = true;
                int64_t at = 0;
                if (events_object_fields(msg, len, name, sizeof name, &key, &klen, &at) != 0) break;
                if (at > 0) sent_ns = at;
            }
            if (!events_filter_match(&c->filter, name, key, klen)) continue;
        }
        if (!f && !(f = frame_new(WS_OP_TEXT, msg, len, sent_ns))) break;
        if (c->qbytes + f->len > h->o.send_queue_bytes) {
            h->slow++;
            start_close(h, c, WS_CLOSE_POLICY, "slow consumer: send queue full", "slow consumer: send queue full");
        } else {
            enqueue(h, c, f);
        }
        any = true;
    }
    pthread_mutex_unlock(&h->mu);
    if (f) frame_put(f);
    free(key);
    if (any) wake(h);
}

int events_hub_sockets(const events_hub *h) {
    if (!h) return 0;
    events_hub *m = (events_hub *)h;
    pthread_mutex_lock(&m->mu);
    int n = m->nconns;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void events_hub_render_metrics(const events_hub *h, buf_t *out) {
    if (!h) return;
    events_hub *m = (events_hub *)h;
    pthread_mutex_lock(&m->mu);
    buf_printf(out,
               "# HELP cairn_events_sockets Event stream WebSockets open.\n"
               "# TYPE cairn_events_sockets gauge\ncairn_events_sockets %d\n"
               "# HELP cairn_events_sockets_opened_total Event stream WebSockets opened.\n"
               "# TYPE cairn_events_sockets_opened_total counter\ncairn_events_sockets_opened_total %llu\n"
               "# HELP cairn_events_messages_forwarded_total Event messages written to stream sockets.\n"
               "# TYPE cairn_events_messages_forwarded_total counter\ncairn_events_messages_forwarded_total %llu\n"
               "# HELP cairn_events_slow_consumers_total Stream sockets closed because their send queue was full.\n"
               "# TYPE cairn_events_slow_consumers_total counter\ncairn_events_slow_consumers_total %llu\n"
               "# HELP cairn_events_pings_unanswered_total Stream sockets closed because a ping got no pong in time.\n"
               "# TYPE cairn_events_pings_unanswered_total counter\ncairn_events_pings_unanswered_total %llu\n"
               "# HELP cairn_events_protocol_errors_total Stream sockets closed for a malformed, oversized or non-UTF-8 frame.\n"
               "# TYPE cairn_events_protocol_errors_total counter\ncairn_events_protocol_errors_total %llu\n"
               "# HELP cairn_events_insecure_origins 1 when events_allowed_origins is empty (every Origin accepted).\n"
               "# TYPE cairn_events_insecure_origins gauge\ncairn_events_insecure_origins %d\n"
               "# HELP cairn_events_publish_to_send_seconds From an event's commit to its last byte written to a socket.\n"
               "# TYPE cairn_events_publish_to_send_seconds histogram\n",
               m->nconns, (unsigned long long)m->opened, (unsigned long long)m->forwarded,
               (unsigned long long)m->slow, (unsigned long long)m->unanswered_pings,
               (unsigned long long)m->closed_protocol, m->o.insecure_origins ? 1 : 0);
    for (int i = 0; i < NBUCKETS; i++)
        buf_printf(out, "cairn_events_publish_to_send_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[i],
                   (unsigned long long)m->lat_bucket[i]);
    buf_printf(out,
               "cairn_events_publish_to_send_seconds_bucket{le=\"+Inf\"} %llu\n"
               "cairn_events_publish_to_send_seconds_sum %.6f\ncairn_events_publish_to_send_seconds_count %llu\n",
               (unsigned long long)m->lat_count, m->lat_sum, (unsigned long long)m->lat_count);
    pthread_mutex_unlock(&m->mu);
}
