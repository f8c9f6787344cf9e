/*
 * journal.h — the audit journal: the gateway's local, checksummed,
 * append-only file of audit events, written with group commit, and the
 * reader the shipper drains it with.  audit.h (the module's public header,
 * being written with the audit store) is to include this file; until it
 * exists, s3/ and cmd/ include this one.
 *
 * On disk (docs/decisions/0015-audit-journal.md):
 *
 *   <dir>/journal-<n>.log   segments, n = 1, 2, ... (20 decimal digits)
 *   <dir>/cursor            what the shipper has committed (atomic rename)
 *   <dir>/spool-<n>.log     overflow (audit_overflow = spool), same records
 *
 * A record is a 28-byte header then the payload (the event's JSON):
 *
 *   u32 magic "CAJ1"  u32 payload length  u64 sequence  i64 time (ms)
 *   u32 CRC-32C of the header's first 24 bytes and the payload
 *
 * all little-endian.  Sequences start at 1 and grow by one per record.
 *
 * Writing.  audit_journal_append queues a record; one writer thread gives
 * the queued records their sequences and CRCs (off the request's thread),
 * writes those of all appenders with one write() and makes them
 * durable with one fdatasync(), then wakes every appender whose record that
 * sync covered (group commit).  An appender that asks for durability
 * (AUDIT_APPEND_DURABLE: a mutating request's event) returns only after
 * that sync; any other returns at once and its record is synced within
 * sync_ms.  The queue is bounded (AUDIT_QUEUE_MAX bytes): an appender that
 * finds it full waits for the writer, so memory is bounded by
 * configuration, never by load.
 *
 * Bounds.  The unshipped bytes (queued + in the segments after the
 * shipper's cursor) are bounded by max_bytes, and the age of the oldest
 * unshipped record by max_age_ms.  Past either the journal is full:
 * audit_journal_admit says so (CAIRN_EBUSY), and the gateway refuses new
 * requests with 503 SlowDown (overflow = reject) — or, with overflow =
 * spool, appends go to the spool file instead, synced one by one.  Appends
 * themselves may use a headroom of max_bytes / 16 (at least 1 MiB) past the
 * bound, so that the events of admitted and of refused requests still
 * land; past the headroom an append fails with CAIRN_EBUSY.  A record that
 * cannot be stored (write or sync error, past the headroom) is counted in
 * events_lost and logged — never dropped silently.
 *
 * Recovery.  audit_journal_open scans the segments after the cursor.  The
 * last segment ends at its first record that is torn or does not check
 * (a crash mid-write): it is truncated there.  A bad record in an earlier
 * segment cannot come from a crash; it is logged, counted (corrupt_records)
 * and skipped: the reader resynchronizes at the next offset where a record
 * checks.  Open never fails because of what a segment contains.
 *
 * Reading (the shipper).  A cursor names a position: the segment and the
 * byte offset after the last record consumed, and that record's sequence.
 * audit_journal_read returns the durable records after a cursor, at most
 * max of them, and the cursor after the last one.  audit_journal_commit
 * marks everything up to a cursor as shipped: the cursor file is replaced
 * atomically and synced, and segments wholly before it are deleted.
 * Nothing is removed before a commit: after a restart the shipper starts
 * again from audit_journal_shipped.  A shipper's loop:
 *
 *     audit_cursor c = audit_journal_shipped(j);
 *     for (;;) {
 *         audit_batch b;
 *         if (audit_journal_read(j, c, 500, &b) == 0 && b.n > 0 &&
 *             send(b.recs, b.n) == 0)              // the store took them all
 *             audit_journal_commit(j, c = b.next); // only now may they go
 *         audit_batch_free(&b);
 *         ... wait for the flush interval, or more events ...
 *     }
 *
 * A batch holds copies of its payloads: its memory is at most max records
 * of at most AUDIT_RECORD_MAX_PAYLOAD bytes (events are far smaller: about
 * 450 bytes for a 40-byte key).
 *
 * Thread-safety: every function on an open journal is thread-safe, except
 * open and close, which the owner calls once.
 */
#ifndef CAIRN_AUDIT_JOURNAL_H
#define CAIRN_AUDIT_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- records (pure: the journal, the dump command and the fuzz target) ---- */

#define AUDIT_RECORD_MAGIC 0x314A4143u      /* "CAJ1" little-endian */
#define AUDIT_RECORD_HEADER 28
#define AUDIT_RECORD_MAX_PAYLOAD (256 * 1024)
/* Queued bytes at most before appenders wait for the writer. */
#define AUDIT_QUEUE_MAX (4 * 1024 * 1024)

typedef struct {
    uint64_t seq;
    int64_t time_ms;
    const char *payload;       /* points into the parsed buffer */
    size_t len;
} audit_record;

/* Encodes one record (header + payload) at the end of out.  0, CAIRN_EINVAL
 * (payload over AUDIT_RECORD_MAX_PAYLOAD), CAIRN_ENOMEM. */
int audit_record_encode(buf_t *out, uint64_t seq, int64_t time_ms, const void *payload, size_t len);

/* Parses the record at the start of buf (n bytes, untrusted).  0 with rec
 * and *size (header + payload) filled when a whole record checks; 1 when
 * buf holds only the beginning of what may be a record (a torn tail: the
 * header is incomplete, or its length runs past n); CAIRN_EINVAL when the
 * bytes are not a record (bad magic, length over the maximum, bad CRC). */
int audit_record_parse(const void *buf, size_t n, audit_record *rec, size_t *size);

/* ---- the journal ---------------------------------------------------------- */

typedef enum { AUDIT_OVERFLOW_REJECT = 0, AUDIT_OVERFLOW_SPOOL = 1 } audit_overflow_policy;

typedef struct {
    const char *dir;            /* created if missing (e.g. <data_dir>/audit) */
    int64_t max_bytes;          /* unshipped bytes bound (> 0) */
    int64_t max_age_ms;         /* oldest unshipped record's age bound; 0 = none */
    int64_t segment_bytes;      /* a segment is rotated once it holds this much (> 0) */
    int sync_ms;                /* non-durable appends are synced within this (>= 1) */
    audit_overflow_policy overflow;
    bool fsync;                 /* false: no fdatasync (tests and benchmarks only) */
} audit_journal_opts;

typedef struct audit_journal audit_journal;

/* Opens (recovers) the journal in o->dir and starts its writer thread.
 * 0; CAIRN_EIO (cannot create or read the directory or a segment, or start
 * the thread) with a log line; CAIRN_EINVAL (bad options); CAIRN_ENOMEM.
 * The caller closes it with audit_journal_close. */
int audit_journal_open(const audit_journal_opts *o, audit_journal **out);

/* Stops intake (appends then fail with CAIRN_EINVAL, counted lost), writes
 * and syncs everything queued, stops the writer, logs how many events are
 * unshipped, and frees j.  NULL is fine. */
void audit_journal_close(audit_journal *j);

enum {
    AUDIT_APPEND_DURABLE = 1,   /* return only once the record is synced */
};

/* Appends one record (payload: len bytes, copied; its time is now).  The
 * writer assigns its sequence when it writes it.  0: queued (or, with
 * AUDIT_APPEND_DURABLE, durable; or written to the spool).  CAIRN_EBUSY: full past the headroom (reject
 * policy); CAIRN_EIO: the write or the sync failed (durable appends only:
 * a non-durable append that fails later is counted lost and logged);
 * CAIRN_EINVAL: closed, or payload too large.  Every failure is counted in
 * events_lost and logged. */
int audit_journal_append(audit_journal *j, const void *payload, size_t len, int flags);

/* Whether a new request may be admitted: 0, or CAIRN_EBUSY when the
 * journal is full and the policy is reject (counted in overflow_refusals). */
int audit_journal_admit(audit_journal *j);

/* Waits until everything appended so far is durable: 0 or CAIRN_EIO. */
int audit_journal_sync(audit_journal *j);

/* ---- reading (the shipper) ------------------------------------------------ */

typedef struct {
    uint64_t segment;           /* segment number; 0 = before everything */
    uint64_t offset;            /* byte offset in it after the last record consumed */
    uint64_t seq;               /* that record's sequence; 0 = none yet */
} audit_cursor;

typedef struct {
    audit_record *recs;         /* n records; payloads point into data */
    int n;
    audit_cursor next;          /* the cursor after recs[n - 1] (== from when n == 0) */
    char *data;                 /* owned */
} audit_batch;

/* The cursor the last commit persisted (where a new shipper starts). */
audit_cursor audit_journal_shipped(audit_journal *j);

/* Reads up to max (>= 1) durable records after from into out (which the
 * caller frees with audit_batch_free, also after an error).  Records that
 * do not check are skipped (counted in corrupt_records).  0 (n may be 0:
 * nothing new); CAIRN_EIO; CAIRN_ENOMEM. */
int audit_journal_read(audit_journal *j, audit_cursor from, int max, audit_batch *out);
void audit_batch_free(audit_batch *b);

/* Marks everything up to upto (a cursor read returned) as shipped: persists
 * it (atomic replace + fsync) and deletes the segments wholly before it.
 * 0; CAIRN_EINVAL (upto is behind the committed cursor or past what is
 * durable); CAIRN_EIO. */
int audit_journal_commit(audit_journal *j, audit_cursor upto);

/* The sequence of the last durable record (0: none yet). */
uint64_t audit_journal_durable_seq(audit_journal *j);

/* Waits until a record after sequence after is durable, the journal is
 * closing, or timeout_ms passed: returns the last durable sequence.  The
 * shipper's wait between reads (the writer wakes it after every group
 * commit, so it never polls a quiet journal). */
uint64_t audit_journal_wait(audit_journal *j, uint64_t after, int timeout_ms);

/* The overflow spool, drained by the shipper.  Seals the spool file being
 * written (the next spilled event starts a new one), then reads every
 * sealed spool file, oldest first, and hands its records to fn, at most max
 * (>= 1) at a time (payloads valid during the call).  A file whose records
 * fn all took (returned 0) is deleted; fn's nonzero stops, the file stays
 * and is read again from its start next time (the store is idempotent).
 * Torn or corrupt bytes are skipped (counted in corrupt_records).  0, fn's
 * result, CAIRN_EIO or CAIRN_ENOMEM; *drained gets the records fn took. */
int audit_journal_spool_drain(audit_journal *j, int max, int (*fn)(void *ud, const audit_record *recs, int n),
                              void *ud, uint64_t *drained);

/* ---- figures --------------------------------------------------------------- */

typedef struct {
    int64_t bytes;              /* unshipped bytes on disk and queued */
    int64_t depth;              /* unshipped events */
    int64_t oldest_unshipped_ms; /* its time; 0 = none */
    uint64_t appended;          /* records accepted since open */
    uint64_t lost;              /* events that could not be stored */
    uint64_t syncs;             /* fdatasync calls of the journal */
    uint64_t corrupt_records;   /* bad records found in non-last segments */
    uint64_t truncated_bytes;   /* torn tail removed at open */
    uint64_t overflow_refusals; /* admissions refused (reject policy) */
    uint64_t spooled;           /* records written to the spool */
    uint64_t segments;          /* segment files present */
} audit_journal_stats;

void audit_journal_get_stats(audit_journal *j, audit_journal_stats *out);

/* Appends the journal's Prometheus figures (cairn_audit_journal_bytes,
 * cairn_audit_journal_depth, cairn_audit_events_emitted_total,
 * cairn_audit_events_lost_total, cairn_audit_journal_sync_seconds,
 * cairn_audit_oldest_unshipped_seconds, cairn_audit_overflow_refusals_total,
 * ...).  j may be NULL (audit off): the counters are rendered as 0. */
void audit_journal_render_metrics(audit_journal *j, buf_t *out);

/* ---- offline reading (cairn admin audit journal-dump) ---------------------- */

/* Calls fn for every record of the journal in dir, shipped ones included
 * when all, else only those after the cursor, in order, without opening
 * it for writing (the directory need not be the server's).  Bad records
 * are skipped and counted in *corrupt (may be NULL).  0 or CAIRN_EIO. */
int audit_journal_scan(const char *dir, bool all, int (*fn)(void *ud, const audit_record *r), void *ud,
                       uint64_t *corrupt);
/* The same over the overflow spool's files (audit_overflow: spool), oldest
 * first: the events waiting there (a file the shipper is in the middle of
 * delivering is read whole). */
int audit_spool_scan(const char *dir, int (*fn)(void *ud, const audit_record *r), void *ud, uint64_t *corrupt);

/* ---- events (emit.c) ------------------------------------------------------- */

/* One audit event's fields (docs/audit.md).  Strings may be NULL (""). */
typedef struct {
    int64_t time_us;            /* wall clock, microseconds since the epoch */
    const char *request_id;
    const char *correlation_id; /* NULL or "": the request id */
    const char *principal;      /* NULL or "": "anonymous" */
    const char *user;
    const char *source_address;
    const char *action;         /* NULL: "s3:Unknown" */
    const char *bucket;
    const char *key;
    size_t key_len;             /* keys may hold any UTF-8; 0 with key set: strlen */
    const char *version_id;
    unsigned status;
    const char *error_code;
    uint64_t bytes_in, bytes_out, duration_us;
} audit_event_fields;

/* "success" (status < 400), "denied" (401, 403) or "error". */
const char *audit_outcome(unsigned status);

/* Writes the event's JSON object (one line, no newline) with event_id (32
 * lowercase hex) at the end of out.  Strings are escaped as JSON requires;
 * bytes that are not UTF-8 become U+FFFD.  0 or CAIRN_ENOMEM. */
int audit_emit_encode(const audit_event_fields *e, const char event_id[33], buf_t *out);

/* Makes a fresh random event id, assigns it and appends the event to j
 * (durable: wait for the sync).  Returns audit_journal_append's result. */
int audit_emit(audit_journal *j, const audit_event_fields *e, bool durable);

/* Keeps an X-Correlation-Id value when it is 1..128 printable ASCII
 * characters: 0 with out (129 bytes) filled, else CAIRN_EINVAL. */
int audit_correlation_id_clean(const char *v, char out[129]);

#endif
