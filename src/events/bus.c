/*
 * bus.c — carries stream messages from where events happen to the hub of
 * every gateway (events.h).
 *
 * In process (no redis_url) a publish is a delivery: the hub queues the
 * message on its sockets right there, on the publisher's thread.
 *
 * With Redis two threads, each on its own connection:
 *
 *   the publisher takes messages from a bounded queue (publish_queue_bytes)
 *   and PUBLISHes them pipelined, a batch per round trip.  A publish never
 *   waits for Redis: when the queue is full (Redis slow or gone) the message
 *   is dropped and counted (cairn_events_publish_dropped_total), and the
 *   first drop of an outage is logged.
 *
 *   the subscriber PSUBSCRIBEs cairn:bucket:* and SUBSCRIBEs cairn:cluster
 *   and hands every message to the hub, this gateway's own included (so a
 *   socket sees one order, Redis's, whoever published).  It reads with
 *   poll() so that it can also check the connection: with nothing heard for
 *   a liveness interval it sends PING, and a PING unanswered within
 *   redis_timeout counts as a lost connection, as does any read error.
 *
 * A lost subscription reconnects after a delay drawn with full jitter below
 * min(retry_max, 100 ms * 2^attempt), from a generator seeded per process:
 * gateways that lost Redis together do not come back together.  After
 * retry_attempts reconnects that failed the hub hangs up every socket
 * (their clients know to reconnect elsewhere or later) and the bus reports
 * down (new sockets are refused) while it keeps trying at the cap.  Every
 * attempt is logged with its delay; reconnects are counted.
 */
#include "events/events.h"
#include "events/ws.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define BACKOFF_BASE_MS 100
#define PUBLISH_BATCH 256
/* With nothing heard from Redis for this long, the subscriber pings it. */
#define LIVENESS_MS 1000

typedef struct pub_msg {
    struct pub_msg *next;
    size_t len;
    char *channel;             /* points into data */
    char data[];               /* channel NUL, then the message */
} pub_msg;

struct events_bus {
    events_bus_options o;
    bool redis;
    redis_target target;
    char source[256];          /* this process, in status events */
    unsigned seed;             /* the reconnect jitter, seeded per process */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;             /* under mu */
    pub_msg *head, *tail;      /* the publisher's queue, under mu */
    size_t queued_bytes;       /* under mu */
    bool drop_logged;          /* under mu: this outage's first drop was logged */

    pthread_t pub_thread, sub_thread;
    bool pub_started, sub_started;

    atomic_bool given_up;      /* the subscription's retries ran out */
    atomic_bool subscribed;
    atomic_ullong published, dropped, publish_errors, received, reconnects;
};

/* ---- publishing ------------------------------------------------------------------------- */

int events_publish(events_bus *b, const char *channel, const char *msg, size_t len) {
    if (!b) return 0;
    if (!b->redis) {
        atomic_fetch_add(&b->published, 1);
        if (b->o.hub) events_hub_deliver(b->o.hub, channel, msg, len);
        return 0;
    }
    size_t cl = strlen(channel);
    pub_msg *m = malloc(sizeof *m + cl + 1 + len);
    if (!m) return CAIRN_ENOMEM;
    m->next = NULL;
    m->len = len;
    memcpy(m->data, channel, cl + 1);
    memcpy(m->data + cl + 1, msg, len);
    m->channel = m->data;
    size_t cost = sizeof *m + cl + 1 + len;
    pthread_mutex_lock(&b->mu);
    if (b->queued_bytes + cost > b->o.publish_queue_bytes || b->stopping) {
        bool first = !b->drop_logged;
        b->drop_logged = true;
        pthread_mutex_unlock(&b->mu);
        free(m);
        atomic_fetch_add(&b->dropped, 1);
        if (first)
            log_write(LOG_WARN, NULL, "event stream: the publish queue is full (Redis slow or unreachable); "
                      "events are dropped from the live stream until it drains", NULL);
        return CAIRN_EBUSY;
    }
    if (b->tail) b->tail->next = m;
    else b->head = m;
    b->tail = m;
    b->queued_bytes += cost;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void events_bus_status_sink(void *ud, const char *type, const char *const *fields) {
    events_bus *b = ud;
    buf_t m;
    buf_init(&m);
    if (events_render_status(&m, type, fields, b->source) == 0) events_publish(b, "cairn:cluster", m.data, m.len);
    buf_free(&m);
}

/* Waits up to ms or until stopping; true when stopping. */
static bool nap(events_bus *b, int64_t ms) {
    struct timespec ts = time_deadline(CLOCK_MONOTONIC, ms);
    pthread_mutex_lock(&b->mu);
    while (!b->stopping && pthread_cond_timedwait(&b->cv, &b->mu, &ts) != ETIMEDOUT) {
    }
    bool stop = b->stopping;
    pthread_mutex_unlock(&b->mu);
    return stop;
}

/* PUBLISHes a batch, pipelined: 0 when Redis answered every one. */
static int publish_batch(redisContext *c, pub_msg *batch) {
    int n = 0;
    for (pub_msg *m = batch; m; m = m->next, n++)
        if (redisAppendCommand(c, "PUBLISH %s %b", m->channel, m->data + strlen(m->channel) + 1, m->len) != REDIS_OK)
            return CAIRN_EIO;
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep) return CAIRN_EIO;
        bool err = rep->type == REDIS_REPLY_ERROR;
        freeReplyObject(rep);
        if (err) return CAIRN_EIO;
    }
    return 0;
}

static void *publisher_main(void *arg) {
    pthread_setname_np(pthread_self(), "events-publish");
    events_bus *b = arg;
    redisContext *c = NULL;
    int attempt = 0;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (!b->head && !b->stopping) pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head) {                 /* stopping, and nothing left */
            pthread_mutex_unlock(&b->mu);
            break;
        }
        pub_msg *batch = b->head, *last = batch;
        size_t bytes = 0;
        int n = 1;
        for (; last->next && n < PUBLISH_BATCH; n++) last = last->next;
        b->head = last->next;
        if (!b->head) b->tail = NULL;
        last->next = NULL;
        for (pub_msg *m = batch; m; m = m->next) bytes += sizeof *m + strlen(m->channel) + 1 + m->len;
        b->queued_bytes -= bytes;
        bool stopping = b->stopping;
        pthread_mutex_unlock(&b->mu);

        bool reused = c != NULL;
        if (!c) c = redis_open(&b->target, b->o.redis_timeout_ms);
        int rc = c ? publish_batch(c, batch) : CAIRN_EIO;
        if (rc != 0 && reused) {
            /* A connection idle across a Redis restart fails its first use:
             * one retry on a new one (a batch Redis took in part may then be
             * streamed twice; none is lost to a stale connection). */
            redisFree(c);
            c = redis_open(&b->target, b->o.redis_timeout_ms);
            rc = c ? publish_batch(c, batch) : CAIRN_EIO;
        }
        if (rc == 0) {
            atomic_fetch_add(&b->published, (unsigned long long)n);
            if (attempt) {
                log_write(LOG_INFO, NULL, "event stream: publishing to Redis again", NULL);
                pthread_mutex_lock(&b->mu);
                b->drop_logged = false;
                pthread_mutex_unlock(&b->mu);
            }
            attempt = 0;
        } else {
            atomic_fetch_add(&b->publish_errors, (unsigned long long)n);
            atomic_fetch_add(&b->dropped, (unsigned long long)n);
            if (c) redisFree(c);
            c = NULL;
            int64_t delay = backoff_full_jitter(attempt, BACKOFF_BASE_MS, b->o.retry_max_ms, &b->seed);
            char d[24], a[24];
            if (attempt++ == 0)
                log_write(LOG_WARN, NULL, "event stream: cannot publish to Redis; these events are not streamed",
                          "events", log_int(a, n), "retry_in_ms", log_int(d, delay), NULL);
            if (!stopping && nap(b, delay)) stopping = true;
        }
        while (batch) {
            pub_msg *next = batch->next;
            free(batch);
            batch = next;
        }
        if (rc != 0 && stopping) {
            /* Stopping with Redis gone: what is still queued would cost a
             * connect timeout a batch.  It is dropped, counted. */
            pthread_mutex_lock(&b->mu);
            pub_msg *rest = b->head;
            b->head = b->tail = NULL;
            b->queued_bytes = 0;
            pthread_mutex_unlock(&b->mu);
            for (pub_msg *next; rest; rest = next) {
                next = rest->next;
                free(rest);
                atomic_fetch_add(&b->dropped, 1);
            }
        }
    }
    if (c) redisFree(c);
    return NULL;
}

/* ---- the subscription ------------------------------------------------------------------- */

/* One reply of the subscribed connection: a message goes to the hub. */
static void on_reply(events_bus *b, redisReply *rep) {
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING) return;
    const char *kind = rep->element[0]->str;
    redisReply *ch = NULL, *payload = NULL;
    if (!strcmp(kind, "pmessage") && rep->elements == 4) {
        ch = rep->element[2];
        payload = rep->element[3];
    } else if (!strcmp(kind, "message")) {
        ch = rep->element[1];
        payload = rep->element[2];
    }
    if (!ch || !payload || ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING) return;
    atomic_fetch_add(&b->received, 1);
    if (b->o.hub) events_hub_deliver(b->o.hub, ch->str, payload->str, payload->len);
}

/* Subscribes on c and reads until the connection is lost or the bus stops.
 * Returns true when stopping. */
static bool subscribed_loop(events_bus *b, redisContext *c, bool again) {
    if (redisAppendCommand(c, "PSUBSCRIBE cairn:bucket:*") != REDIS_OK ||
        redisAppendCommand(c, "SUBSCRIBE cairn:cluster") != REDIS_OK)
        return false;
    int done = 0;
    while (!done) {
        if (redisBufferWrite(c, &done) != REDIS_OK) return false;
    }
    int64_t heard = time_mono_ns(), ping_sent = 0;
    int confirmations = 0;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        bool stop = b->stopping;
        pthread_mutex_unlock(&b->mu);
        if (stop) return true;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, 100);      /* short: the stop flag is looked at between */
        int64_t now = time_mono_ns();
        if (r < 0 && errno != EINTR) return false;
        if (r > 0) {
            if (redisBufferRead(c) != REDIS_OK) return false;
            void *rep = NULL;
            for (;;) {
                if (redisGetReplyFromReader(c, &rep) != REDIS_OK) return false;
                if (!rep) break;
                redisReply *rr = rep;
                if (rr->type == REDIS_REPLY_ARRAY && rr->elements >= 1 && rr->element[0]->type == REDIS_REPLY_STRING &&
                    (!strcmp(rr->element[0]->str, "psubscribe") || !strcmp(rr->element[0]->str, "subscribe"))) {
                    if (++confirmations == 2) {
                        atomic_store(&b->subscribed, true);
                        atomic_store(&b->given_up, false);
                        if (again) log_write(LOG_INFO, NULL, "event stream: subscribed to Redis again", NULL);
                    }
                } else if (rr->type == REDIS_REPLY_ERROR) {
                    log_write(LOG_WARN, NULL, "event stream: Redis refused the subscription", "error", rr->str, NULL);
                    freeReplyObject(rep);
                    return false;
                } else {
                    on_reply(b, rr);
                }
                freeReplyObject(rep);
            }
            heard = now;
            ping_sent = 0;
            continue;
        }
        if (ping_sent && now - ping_sent > b->o.redis_timeout_ms * 1000000) {
            log_write(LOG_WARN, NULL, "event stream: Redis did not answer a ping within events_redis_timeout", NULL);
            return false;
        }
        if (!ping_sent && now - heard > (int64_t)LIVENESS_MS * 1000000) {
            if (redisAppendCommand(c, "PING") != REDIS_OK) return false;
            done = 0;
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK) return false;
            ping_sent = now;
        }
    }
}

static void *subscriber_main(void *arg) {
    pthread_setname_np(pthread_self(), "events-subscribe");
    events_bus *b = arg;
    int attempt = 0;              /* reconnects since the subscription was last up */
    bool was_up = false;
    for (;;) {
        redisContext *c = redis_open(&b->target, b->o.redis_timeout_ms);
        if (c) {
            if (was_up || attempt) atomic_fetch_add(&b->reconnects, 1);
            bool stop = subscribed_loop(b, c, was_up || attempt);
            bool got_up = atomic_load(&b->subscribed);
            redisFree(c);
            atomic_store(&b->subscribed, false);
            if (stop) break;
            if (got_up) {
                attempt = 0;
                was_up = true;
                log_write(LOG_WARN, NULL, "event stream: lost the Redis subscription; reconnecting", NULL);
            }
        }
        if (attempt == b->o.retry_attempts && !atomic_load(&b->given_up) && (was_up || attempt > 0)) {
            atomic_store(&b->given_up, true);
            char n[24];
            log_write(LOG_ERROR, NULL, "event stream: Redis reconnects ran out; hanging up every socket",
                      "attempts", log_int(n, attempt), NULL);
            if (b->o.hub) events_hub_hangup_all(b->o.hub, WS_CLOSE_INTERNAL, "the event bus lost Redis", false);
        }
        int64_t delay = backoff_full_jitter(attempt, BACKOFF_BASE_MS, b->o.retry_max_ms, &b->seed);
        char d[24], a[24];
        log_write(LOG_INFO, NULL, "event stream: Redis reconnect scheduled", "attempt", log_int(a, attempt + 1),
                  "delay_ms", log_int(d, delay), NULL);
        attempt++;
        if (nap(b, delay)) break;
    }
    return NULL;
}

/* ---- life ------------------------------------------------------------------------------- */

bool events_bus_up(const events_bus *b) { return !b || !b->redis || !atomic_load(&b->given_up); }

int events_bus_new(const events_bus_options *o, events_bus **out, char *why, size_t whylen) {
    events_bus *b = calloc(1, sizeof *b);
    if (!b) return CAIRN_ENOMEM;
    b->o = *o;
    if (!b->o.publish_queue_bytes) b->o.publish_queue_bytes = 4u << 20;
    if (b->o.redis_timeout_ms <= 0) b->o.redis_timeout_ms = 2000;
    if (b->o.retry_max_ms <= 0) b->o.retry_max_ms = 30000;
    if (b->o.retry_attempts <= 0) b->o.retry_attempts = 10;
    b->redis = o->redis_url && o->redis_url[0];
    if (gethostname(b->source, sizeof b->source - 1) != 0) snprintf(b->source, sizeof b->source, "localhost");
    rand_bytes(&b->seed, sizeof b->seed);
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = b->redis ? redis_target_parse(o->redis_url, &b->target, why, whylen) : 0;
    if (rc == 0 && b->redis) {
        if (pthread_create(&b->pub_thread, NULL, publisher_main, b) != 0) rc = CAIRN_ENOMEM;
        else b->pub_started = true;
        if (rc == 0 && pthread_create(&b->sub_thread, NULL, subscriber_main, b) != 0) rc = CAIRN_ENOMEM;
        else if (rc == 0) b->sub_started = true;
    }
    if (rc != 0) {
        events_bus_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

void events_bus_free(events_bus *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->pub_started) pthread_join(b->pub_thread, NULL);
    if (b->sub_started) pthread_join(b->sub_thread, NULL);
    while (b->head) {
        pub_msg *n = b->head->next;
        free(b->head);
        b->head = n;
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void events_bus_render_metrics(const events_bus *b, buf_t *out) {
    if (!b) return;
    events_bus *m = (events_bus *)b;
    buf_printf(out,
               "# HELP cairn_events_published_total Stream messages published (handed to Redis, or delivered in process).\n"
               "# TYPE cairn_events_published_total counter\ncairn_events_published_total %llu\n"
               "# HELP cairn_events_publish_dropped_total Stream messages not published: the queue was full or Redis failed.\n"
               "# TYPE cairn_events_publish_dropped_total counter\ncairn_events_publish_dropped_total %llu\n"
               "# HELP cairn_events_redis_reconnects_total Reconnects of the event bus's Redis subscription.\n"
               "# TYPE cairn_events_redis_reconnects_total counter\ncairn_events_redis_reconnects_total %llu\n"
               "# HELP cairn_events_bus_up 1 while the event bus delivers (in process, or subscribed to Redis).\n"
               "# TYPE cairn_events_bus_up gauge\ncairn_events_bus_up %d\n",
               (unsigned long long)atomic_load(&m->published), (unsigned long long)atomic_load(&m->dropped),
               (unsigned long long)atomic_load(&m->reconnects),
               !m->redis || atomic_load(&m->subscribed) ? 1 : 0);
}
