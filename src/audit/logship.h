/*
 * logship.h — log shipping: every log line, batched, to an HTTP endpoint
 * (log_ship_url), as a Loki push or as JSON lines.
 *
 * The logging thread only appends the line to a bounded in-memory queue
 * (log_ship_buffer_bytes) and returns: nothing a request does waits on the
 * endpoint.  One shipper thread takes a batch (log_ship_batch_lines lines,
 * or whatever is queued once log_ship_flush_ms passed since the oldest) and
 * POSTs it.  A 5xx, 429, a timeout or a refused connection is retried with
 * exponential backoff and full jitter (from 100 ms, capped at
 * log_ship_retry_max_ms), the batch kept in hand meanwhile; after three
 * failures in a row the breaker is open (the state on /metrics) and the
 * endpoint is tried only at the backoff's pace.  Any other 4xx is the
 * endpoint refusing the batch: it is dropped and counted, never retried.
 *
 * Overload.  Once the queue is more than half full, debug and info lines are
 * sampled (one in log_ship_sample kept, the rest counted); warnings and
 * errors never are.  A full queue drops the oldest line to take a warning
 * or an error, and drops a debug or info line itself; both are counted.
 * Memory: the queue, plus one batch in hand (at most log_ship_batch_bytes).
 *
 * Thread-safety: logship_* may be called from any thread; the sink runs on
 * whatever thread logs.
 */
#ifndef CAIRN_AUDIT_LOGSHIP_H
#define CAIRN_AUDIT_LOGSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct logship logship;

typedef struct {
    const char *url;           /* http(s)://... (Loki: .../loki/api/v1/push) */
    bool loki;                 /* true: Loki push API; false: JSON lines (application/x-ndjson) */
    size_t buffer_bytes;       /* queued lines at most (bytes of their text) */
    size_t batch_bytes;        /* a batch's lines at most */
    int batch_lines;
    int flush_ms;              /* a line waits this long at most for its batch to fill */
    int timeout_ms;            /* one POST, connect included */
    const char *tls_ca;        /* https://: the CA bundle that verifies the endpoint; NULL or "" = system CAs */
    int retry_max_ms;          /* the backoff's cap */
    int sample;                /* under overload, keep one debug/info line in this many */
    const char *service;       /* the Loki label "service" (e.g. "gateway") */
} logship_options;

typedef struct {
    uint64_t lines_sent, batches_sent, failures, retries, rejected_batches, rejected_lines;
    uint64_t dropped, sampled;
    uint64_t queued_lines, queued_bytes;
    int breaker;               /* 0 closed, 1 open */
} logship_stats;

/* Starts the shipper thread and installs the log sink.  CAIRN_EINVAL (no
 * url), CAIRN_ENOMEM, CAIRN_EIO (the HTTP client). */
int logship_start(const logship_options *o, logship **out);
/* Removes the sink, then keeps shipping what is queued until it is empty or
 * deadline_ms passed; returns how many lines were left unsent (dropped). */
uint64_t logship_stop(logship *ls, int deadline_ms);
void logship_stats_get(logship *ls, logship_stats *out);
/* Appends the figures to /metrics text. */
void logship_render_metrics(logship *ls, buf_t *out);

/* The body of a batch, as it is sent (tests, fuzzing of the escaping):
 * lines (n of them, each a log line of level lvls[i] at ts_ms[i]). */
int logship_encode(bool loki, const char *service, const char *const *lines, const size_t *lens,
                   const log_level *lvls, const int64_t *ts_ms, int n, buf_t *out);

#endif
