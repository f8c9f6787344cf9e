/*
 * events — what changed, as it happens: object events in the S3 event
 * message format and cluster status events, carried by a bus (Redis pub/sub
 * across gateways, or in process) to the WebSocket stream GET /events/ws.
 * docs/events.md is the operator's and client's view.
 *
 *   publisher (s3/ post-commit hook, status_emit)
 *      -> events_publish: the message {"type":"status","data":{...}}, on
 *         channel cairn:bucket:<name> or cairn:cluster
 *      -> bus: in process, straight to the hub; with Redis, a publisher
 *         thread PUBLISHes (bounded queue, pipelined) and a subscriber
 *         thread (PSUBSCRIBE cairn:bucket:*, SUBSCRIBE cairn:cluster) hands
 *         every gateway's messages to its hub
 *      -> hub (hub.c): one epoll thread owns every socket; a message is
 *         framed once and queued, by reference, on each socket whose filter
 *         takes it; each socket's queue is bounded (a slow consumer is
 *         closed, 1008), pings go out every ping interval (no pong in time:
 *         closed, 1011), and no S3 request thread is held by a socket.
 *
 * The stream is live, not durable: a message published while Redis is down,
 * or to a socket that is gone, is not kept (bucket notifications are the
 * durable path).  Losses are counted, never silent.
 *
 * Thread-safety: every function is thread-safe unless it says otherwise.
 */
#ifndef CAIRN_EVENTS_H
#define CAIRN_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "http/http.h"
#include "meta/meta.h"

typedef struct events_bus events_bus;
typedef struct events_hub events_hub;

/* ---- event messages (event.c) ---------------------------------------------- */

/* One object change, as the S3 event message format has it. */
typedef struct {
    const char *name;          /* "ObjectCreated:Put", "ObjectRemoved:Delete", ... (without "s3:") */
    const char *region;
    const char *bucket;
    const char *key;           /* key_len bytes, not NUL-terminated */
    size_t key_len;
    int64_t size;              /* bytes; creations only (-1: leave out) */
    const char *etag;          /* unquoted; NULL or "" for removals */
    const char *version_id;    /* NULL or "": none */
    const char *request_id;
    const char *principal;     /* the access key, or "anonymous" */
    const char *source_ip;
    int64_t time_us;           /* when it committed, Unix microseconds */
    uint64_t sequencer;        /* orders the events of one key */
    const char *configuration_id; /* the notification rule's Id; NULL: "cairn-events" (the stream) */
} events_object;

/* Appends the stream message {"type":"status","data":{"Records":[...]}} of e
 * to out (the S3 event message: eventVersion 2.1, eventSource aws:s3, key
 * URL-encoded).  0 or CAIRN_ENOMEM. */
int events_render_object(buf_t *out, const events_object *e);
/* Appends the S3 event message itself, {"Records":[...]}: what a bucket
 * notification POSTs.  0 or CAIRN_ENOMEM. */
int events_render_records(buf_t *out, const events_object *e);

/* Appends the stream message of a cluster status event:
 * {"type":"status","data":{"event":TYPE,"time":...,"source":HOST, NAME:VALUE...}}
 * (fields: NULL-terminated name/value pairs).  0 or CAIRN_ENOMEM. */
int events_render_status(buf_t *out, const char *type, const char *const *fields, const char *source);

/* The sequencer of an event committed now: microseconds since the epoch,
 * shifted left 8, plus a per-process counter, so that the events of one key
 * from one gateway are in order and those of two gateways in time order. */
uint64_t events_sequencer(int64_t time_us);

/* Reads back what a filter needs of an object event message (one that came
 * over the bus: from any process with access to Redis): its event name as
 * "s3:" + eventName into name (nn bytes), its key decoded into *key
 * (malloc'd, *klen bytes; the caller frees it) and its commit time in Unix
 * nanoseconds from the sequencer (0 when absent).  0, CAIRN_EINVAL (not an
 * object event, or a key that does not decode), CAIRN_ENOMEM. */
int events_object_fields(const char *msg, size_t len, char *name, size_t nn, char **key, size_t *klen,
                         int64_t *sent_ns);

/* ---- filters (event.c) ------------------------------------------------------ */

#define EVENTS_MAX_PATTERNS 16

/* What one socket asked for. */
typedef struct {
    bool cluster;              /* channel=cluster: status events only */
    char bucket[64];           /* bucket=: object events of this bucket */
    char *prefix;              /* prefix= (owned, NUL-terminated; NULL: any key) */
    size_t prefix_len;
    int npatterns;             /* events=: 0 = every event type */
    char patterns[EVENTS_MAX_PATTERNS][48]; /* "s3:ObjectCreated:*" (a trailing * is a prefix match) */
} events_filter;

/* Parses the events= list (comma-separated; s3:ObjectCreated:*, s3:ObjectRemoved:Delete, ...) into f.
 * CAIRN_EINVAL with why (a static string) for a type that is not one of
 * ours or too many of them. */
int events_filter_parse_types(events_filter *f, const char *list, const char **why);
/* Does an event of this name ("s3:ObjectCreated:Put") on this key pass f? */
bool events_filter_match(const events_filter *f, const char *name, const char *key, size_t key_len);
void events_filter_free(events_filter *f);

/* ---- the bus (bus.c) --------------------------------------------------------- */

typedef struct {
    const char *redis_url;     /* "" or NULL: in process (this process's sockets only) */
    int64_t redis_timeout_ms;  /* every Redis call (connect, PUBLISH, the liveness ping) */
    int64_t retry_max_ms;      /* cap of the reconnect delay (exponential from 100 ms, full jitter) */
    int retry_attempts;        /* reconnects of a lost subscription before hub gets a hangup */
    size_t publish_queue_bytes; /* messages waiting for the publisher at most (Redis); 0: 4 MiB */
    events_hub *hub;           /* where messages are delivered (may be NULL: publish only) */
} events_bus_options;

/* Starts the bus (with Redis: its threads; an unreachable Redis is not an
 * error, the threads retry).  CAIRN_EINVAL (bad URL, why says), CAIRN_ENOMEM. */
int events_bus_new(const events_bus_options *o, events_bus **out, char *why, size_t whylen);
/* Stops the threads and frees the bus; NULL is fine. */
void events_bus_free(events_bus *b);
/* Publishes msg (len bytes, a stream message) on channel.  Never blocks for
 * long: in process the hub queues it; with Redis it goes to the publisher's
 * queue, and when that is full it is dropped and counted.  0, CAIRN_EBUSY
 * (dropped), CAIRN_ENOMEM. */
int events_publish(events_bus *b, const char *channel, const char *msg, size_t len);
/* The status sink for status_set_sink (ud: the bus). */
void events_bus_status_sink(void *ud, const char *type, const char *const *fields);
/* Is the bus able to deliver (in process: always; Redis: subscribed, or
 * still retrying)?  False once the retries ran out, until it is back. */
bool events_bus_up(const events_bus *b);
/* Appends the bus's figures to /metrics text. */
void events_bus_render_metrics(const events_bus *b, buf_t *out);

/* ---- the hub: every socket of the stream (hub.c) ----------------------------- */

typedef struct {
    int max_sockets;
    size_t send_queue_bytes;   /* one socket's unsent bytes at most */
    int64_t ping_interval_ms;
    int64_t pong_timeout_ms;
    uint64_t max_message;      /* largest message a client may send (0: 64 KiB) */
    bool insecure_origins;     /* for the gauge: every origin is accepted */
} events_hub_options;

int events_hub_new(const events_hub_options *o, events_hub **out);
/* Hangs up every socket (events_hub_shutdown) if not done, stops the
 * thread, frees the hub; NULL is fine.  Must run before the HTTP server
 * stops (http.h: upgraded connections are closed by their owner). */
void events_hub_free(events_hub *h);
/* Takes a socket slot for an upgrade about to be answered: 0, or
 * CAIRN_EBUSY (max_sockets open, or shutting down). */
int events_hub_reserve(events_hub *h);
void events_hub_unreserve(events_hub *h);
/* The http_upgrade_fn of a reserved socket: ud is an events_sub (below),
 * which the hub takes (and frees, with events_sub_free as free_fn when the
 * upgrade never happens, which also returns the slot). */
typedef struct {
    events_hub *hub;
    events_filter filter;
    char request_id[40];
    char principal[130];
} events_sub;
void events_hub_adopt(void *ud, http_upgraded *u, int fd, const char *extra, size_t extra_len);
void events_sub_free(void *ud);
/* Delivers a stream message that arrived on channel to every socket whose
 * filter takes it (called by the bus). */
void events_hub_deliver(events_hub *h, const char *channel, const char *msg, size_t len);
/* Sends {"type":"hangup","reason":reason} and a close frame (code) to every
 * socket and closes them (within a second or two; a socket that takes no
 * bytes is cut).  stop: refuse new sockets from now on (shutdown). */
void events_hub_hangup_all(events_hub *h, unsigned code, const char *reason, bool stop);
/* Open sockets now. */
int events_hub_sockets(const events_hub *h);
/* Appends the hub's figures to /metrics text. */
void events_hub_render_metrics(const events_hub *h, buf_t *out);

/* ---- bucket notifications' delivery (notify.c) ----------------------------- */

typedef struct events_notify events_notify;

typedef struct {
    meta_store *meta;          /* the targets, and the pending counts */
    int timeout_ms;            /* one POST, connect included */
    int64_t max_pending;       /* notify_max_pending: past it a target is reported (never dropped) */
    const char *tls_ca;        /* verifies https:// targets; "" = system CAs */
    /* Opens a target's sealed secret into out (the master key is cmd/'s). */
    int (*open_secret)(void *ud, const char *sealed, buf_t *out);
    void *secret_ud;
} events_notify_options;

int events_notify_new(const events_notify_options *o, events_notify **out);
/* After the job queue that runs it is freed. */
void events_notify_free(events_notify *n);
/* The job_handler of kind "notify" (jobs.h), ud the events_notify. */
int events_notify_job(void *ud, const meta_job *job, char *err, size_t errlen);
void events_notify_render_metrics(events_notify *n, buf_t *out);

#endif
