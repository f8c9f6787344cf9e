/*
 * ship.h — the audit shipper: the piece that drains the gateway's journal
 * into the audit store (docs/audit.md, "The shipper"; decision 0017).
 * audit.h includes it.
 *
 * One thread reads the journal after the committed cursor and sends a batch
 * when batch_size events are ready or flush_interval_ms has passed since
 * the oldest of them was appended, whichever comes first.  Once every event
 * of a batch is either in the store or in the dead-letter queue the cursor
 * is committed (audit_journal_commit); nothing leaves the journal before.
 *
 * Where events go:
 *   - embedded (url NULL or ""): meta_audit_insert into the gateway's own
 *     metadata database, one transaction per batch, idempotent on event_id;
 *     each record is parsed and validated with the store's own parser first.
 *   - remote (url): POST {"events":[...]} to <url>/audit/v1/events through
 *     the libcurl client (connect and total timeouts: timeout_ms), signed
 *     with SigV4 (service "s3", region) by access_key/secret_key.
 *
 * Failures.  5xx, a timeout, a refused connection (embedded: a database
 * that is busy or down) are retried with exponential backoff and full jitter
 * (seeded per process) up to max_retries; then the batch goes to the DLQ as
 * held entries.  A 400 (or 413) is never retried: the batch is split in two,
 * each half sent on its own, down to single events, so the good ones land
 * and each bad one goes to the DLQ as a rejected entry with the store's
 * answer as reason.  Any other 4xx (403: credentials) is not retried
 * either; the batch is held in the DLQ and replayed once the store takes
 * events again.  A DLQ put that fails leaves the batch in the journal
 * (not committed): logged, counted, backed off, tried again.
 *
 * Once a batch went to the DLQ the breaker is open: later batches get one
 * attempt each (no retries) until one lands, so a store that is down does
 * not slow the journal's draining to the pace of the retries.  The replayer
 * (the same thread) drains held DLQ entries back into the store every
 * replay_interval_ms while the breaker is closed (and probes with them
 * while it is open).
 *
 * The journal's overflow spool (audit_overflow: spool) is drained the same
 * way, a sealed file at a time, whenever the journal has nothing pending
 * and the store answers; each file is deleted once delivered.
 *
 * Memory: one batch of payloads (batch_size records) and its request body
 * (draining the spool: a 4 MiB read buffer).
 *
 * Thread-safety: every function may be called from any thread; close once.
 */
#ifndef CAIRN_AUDIT_SHIP_H
#define CAIRN_AUDIT_SHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/dlq.h"
#include "audit/journal.h"
#include "core/core.h"
#include "meta/meta.h"

typedef struct audit_shipper audit_shipper;

typedef struct {
    audit_journal *journal;    /* required; must outlive the shipper */
    meta_store *meta;          /* embedded mode: where events go (must outlive the shipper) */
    const char *url;           /* remote mode: the store's base URL (http://HOST:PORT); NULL or "" = embedded */
    const char *access_key, *secret_key, *region; /* remote: SigV4 credentials and region */
    int batch_size;            /* 1..AUDIT_BATCH_MAX events per batch */
    int flush_interval_ms;     /* >= 1 */
    int timeout_ms;            /* remote: connect and total timeout of one POST */
    const char *tls_ca;        /* remote https://: the CA bundle that verifies the store; NULL or "" = system CAs */
    int max_retries;           /* >= 0 */
    int backoff_base_ms;       /* first retry's ceiling (0: 100) */
    int backoff_max_ms;        /* largest ceiling (0: 10000) */
    int replay_interval_ms;    /* how often held DLQ entries are tried (0: 1000) */
    audit_dlq_opts dlq;        /* the DLQ the shipper opens and owns */
} audit_shipper_opts;

/* Opens the DLQ and starts the shipper's thread.  Strings are copied.
 * 0; CAIRN_EINVAL (bad options); CAIRN_EIO (the DLQ, the HTTP client, the
 * thread); CAIRN_ENOMEM.  Stop it with audit_shipper_close. */
int audit_shipper_start(const audit_shipper_opts *o, audit_shipper **out);

/* audit_close: stops intake (the caller has stopped what emits), makes the
 * journal's queued events durable, ships what the journal holds until it
 * is empty or deadline_ms passed, replays held DLQ entries when the store
 * answers, stops the thread, closes the DLQ and frees s.  Returns how many
 * events were left unshipped in the journal (they are shipped at the next
 * start), and logs it.  NULL is fine (returns 0). */
int64_t audit_shipper_close(audit_shipper *s, int deadline_ms);

/* Waits until every event durable in the journal when it is called has been
 * committed (stored, or in the DLQ), sending what is pending at once
 * instead of waiting for the flush interval.  0 or CAIRN_ETIMEDOUT.  For
 * tests, benchmarks and close. */
int audit_shipper_flush(audit_shipper *s, int timeout_ms);

typedef struct {
    uint64_t batches_sent;     /* batches the store took */
    uint64_t events_sent;      /* events the store took (new + duplicates) */
    uint64_t events_duplicate; /* of those, events it had already */
    uint64_t retries[4];       /* by cause: SHIP_CAUSE_* */
    uint64_t dlq_held;         /* events put in the DLQ as held */
    uint64_t dlq_rejected;     /* events put in the DLQ as rejected */
    uint64_t dlq_failures;     /* DLQ puts that failed (events kept in the journal) */
    uint64_t replayed;         /* held events the replayer delivered */
    uint64_t splits;           /* batches split after a 400 or 413 */
    uint64_t commits;          /* journal commits */
    uint64_t spool_drained;    /* events shipped from the journal's overflow spool */
    uint64_t committed_seq;    /* the last committed sequence */
    int breaker;               /* 0 closed, 1 open */
} audit_shipper_stats;

enum { SHIP_CAUSE_5XX = 0, SHIP_CAUSE_TIMEOUT = 1, SHIP_CAUSE_CONNECT = 2, SHIP_CAUSE_DB = 3 };

void audit_shipper_stats_get(audit_shipper *s, audit_shipper_stats *out);

/* cairn_audit_batches_sent_total, cairn_audit_events_sent_total,
 * cairn_audit_events_duplicate_total, cairn_audit_retries_total{cause},
 * cairn_audit_dlq_events_total{kind}, cairn_audit_dlq_put_failures_total,
 * cairn_audit_flush_seconds (histogram: one batch, from the decision to send
 * to its commit), cairn_audit_ship_delay_seconds (histogram: the oldest
 * event of a batch, from its append to its commit), cairn_audit_breaker_open
 * and the DLQ's own figures (audit_dlq_render_metrics).  s may be NULL
 * (audit off: nothing is written). */
void audit_shipper_render_metrics(audit_shipper *s, buf_t *out);

/* The DLQ the shipper uses (for tests); valid until close. */
audit_dlq *audit_shipper_dlq(audit_shipper *s);

#endif
