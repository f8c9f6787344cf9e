/*
 * dlq.h — the audit trail's dead-letter queue: where events go that the
 * store did not take, so that none is ever lost.
 *
 * Two kinds of entry:
 *   - held: the store could not be reached (5xx, timeouts, refused
 *     connections) through the shipper's last retry.  The replayer sends
 *     them again once the store is healthy (audit_dlq_replay); the store is
 *     idempotent on event id, so a replay never duplicates.
 *   - rejected: the store refused the event itself (400, with its reason).
 *     Sending it again cannot help: it is kept, with the reason, for an
 *     operator (`cairn admin audit dlq`), and never replayed by itself.
 *
 * Where.  With Redis (redis_url), each entry is one XADD to the stream
 * audit_dlq_stream (held) or "<audit_dlq_stream>:rejected", with the
 * fields "event" (its JSON), "reason" and "time" (ms).  Without Redis, or
 * when an XADD fails, the entry goes to the spool: append-only files in the
 * DLQ directory (dlq-held.log, dlq-rejected.log) of the journal's record
 * format (journal.h: CRC-checked, each append fdatasync'd), with a synced
 * "dlq-held.pos" saying how far the replayer got.  A Redis write that fails
 * is never silent: it falls back to the spool, is logged and counted
 * (redis_fallbacks).  A put fails only when the spool fails too; then the
 * caller keeps the events where they were (the journal: not committed).
 *
 * Thread-safety: every function is thread-safe.
 */
#ifndef CAIRN_AUDIT_DLQ_H
#define CAIRN_AUDIT_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct audit_dlq audit_dlq;

typedef struct {
    const char *dir;           /* the spool's directory (created if missing), e.g. <data_dir>/audit */
    const char *redis_url;     /* "" or NULL: the spool only */
    const char *stream;        /* audit_dlq_stream (default "cairn:audit:dlq") */
    int redis_timeout_ms;      /* connect and command timeout (default 250) */
    bool fsync;                /* false: no fdatasync (tests and benchmarks only) */
} audit_dlq_opts;

/* 0; CAIRN_EIO (the directory cannot be made or read); CAIRN_EINVAL (a bad
 * redis_url); CAIRN_ENOMEM.  An unreachable Redis is not an error here. */
int audit_dlq_open(const audit_dlq_opts *o, audit_dlq **out);
void audit_dlq_close(audit_dlq *d);

typedef enum { AUDIT_DLQ_HELD = 0, AUDIT_DLQ_REJECTED = 1 } audit_dlq_kind;

/* Puts n events (each its JSON, lens[i] bytes) of one kind with reason.
 * 0 once every one is durable in Redis or in the spool; CAIRN_EIO when the
 * spool failed (logged; the caller keeps them); CAIRN_EINVAL (an event over
 * the record maximum). */
int audit_dlq_put(audit_dlq *d, audit_dlq_kind kind, const char *const *events, const size_t *lens, int n,
                  const char *reason);

/* The replayer's sender: sends n events to the store.  0 when the store took
 * them all (or had them already); 1 when it refused them (400: they become
 * rejected entries, with reason filled); a negative CAIRN_E* when the store
 * cannot be reached now (the replay stops, to try again later). */
typedef int (*audit_dlq_send_fn)(void *ud, const char *const *events, const size_t *lens, int n, char *reason,
                                 size_t reasonlen);

/* Sends up to max held entries, oldest first (the spool's, then Redis's),
 * through send, in batches of at most batch; each batch the store took is
 * removed (XDEL; the spool's position advances, synced, and a drained spool
 * file is truncated).  *replayed counts the events taken.  0 (also when
 * nothing was held), or the sender's error (what was not sent stays). */
int audit_dlq_replay(audit_dlq *d, int max, int batch, audit_dlq_send_fn send, void *ud, int *replayed);

typedef struct {
    int64_t held, rejected;    /* entries now (Redis + spool); -1 when Redis cannot say */
    uint64_t puts, put_events; /* puts that succeeded, and their events */
    uint64_t redis_fallbacks;  /* puts that went to the spool because Redis failed */
    uint64_t spool_failures;   /* puts that failed (the spool failed too) */
    uint64_t replayed;         /* events the replayer delivered */
} audit_dlq_stats;

void audit_dlq_stats_get(audit_dlq *d, audit_dlq_stats *out);
/* cairn_audit_dlq_writes_total{to="redis"|"spool"}, cairn_audit_dlq_failures_total,
 * cairn_audit_dlq_replayed_total, cairn_audit_dlq_depth{kind="held"|"rejected"}. */
void audit_dlq_render_metrics(audit_dlq *d, buf_t *out);

/* Walks every entry of kind (spool, then Redis), oldest first: fn gets the
 * event, the reason and the time (ms); nonzero stops.  For `cairn admin
 * audit dlq` and the tests.  0, CAIRN_EIO. */
int audit_dlq_walk(audit_dlq *d, audit_dlq_kind kind,
                   int (*fn)(void *ud, const char *event, size_t len, const char *reason, int64_t time_ms), void *ud);

#endif
