/*
 * audit — the audit trail (issue 10).  This header includes journal.h (the
 * journal, the emit of events, journal.c and emit.c) and has two parts of
 * its own:
 *
 * event.c   The audit event's wire format, shared by whoever produces
 *           events (the gateway's audit client) and the store that takes
 *           them: parsing and validating a batch, encoding an event and a
 *           batch as JSON, event ids and times, and the store's opaque
 *           query cursor.  docs/audit.md lists the fields.
 * store.c   The audit store's HTTP API (POST and GET /audit/v1/events),
 *           served by `cairn audit-server` alone or embedded in `cairn
 *           server` and `cairn gateway` (audit_store_mux: /audit/v1/ is
 *           routed there, everything else to the S3 pipeline).  Callers
 *           authenticate with SigV4 as root or as a user with the audit
 *           right; events go to the metadata database (meta_audit_*).
 *
 * Depends on core, meta and http (and auth, for SigV4, which sits beside
 * meta).  Everything here is thread-safe unless it says otherwise.
 */
#ifndef CAIRN_AUDIT_H
#define CAIRN_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/journal.h" /* the journal and the emit (journal.h says why it is separate) */
#include "audit/ship.h"    /* the shipper: journal -> store, retries, DLQ */
#include "core/core.h"
#include "http/http.h"
#include "meta/meta.h"
#include "obs/obs.h"

/* ---- events (event.c) ------------------------------------------------------------- */

/* An event: the metadata store's record (meta.h, meta_audit_event), whose
 * strings are borrowed.  time_us is microseconds since the epoch, UTC. */
typedef meta_audit_event audit_event;

#define AUDIT_BATCH_MAX 10000          /* events in one POST */
#define AUDIT_ID_LEN META_AUDIT_ID_LEN  /* 32 lowercase hex digits */
#define AUDIT_KEY_MAX META_AUDIT_KEY_MAX
#define AUDIT_STR_MAX META_AUDIT_STR_MAX
#define AUDIT_TIME_LEN 27              /* "2026-11-30T17:41:02.123456Z" */

/* Why an event or a batch was refused: the first invalid field and the
 * event's index in its batch (-1: the batch itself, e.g. not JSON). */
typedef struct {
    int index;
    char field[64];                    /* "status", "events", an unknown member's name (cut) */
    char reason[200];
} audit_error;

/* Checks an event: event_id is 32 lowercase hex digits; request_id,
 * correlation_id, principal and action are non-empty; outcome is
 * "success", "error" or "denied"; status is 100..599; numbers are >= 0;
 * key has at most AUDIT_KEY_MAX bytes, every other string AUDIT_STR_MAX;
 * no string is NULL.  0, or CAIRN_EINVAL with err (index untouched). */
int audit_event_validate(const audit_event *e, audit_error *err);

/* A parsed batch: its events, whose strings live in the batch. */
typedef struct audit_events audit_events;
/* Parses and validates a batch, {"events":[...]} or a bare array, of at
 * most max_events (<= AUDIT_BATCH_MAX) events, each a JSON object with
 * exactly the fields of docs/audit.md (optional strings default to "",
 * optional numbers to 0; an unknown field, a duplicate, a wrong type is
 * refused).  0 and *out (free with audit_events_free); CAIRN_ETOOBIG when
 * it holds more than max_events (err says how many); CAIRN_EINVAL with
 * err naming the first invalid event and field; CAIRN_ENOMEM.  body need
 * not be NUL-terminated. */
int audit_events_parse(const char *body, size_t len, int max_events, audit_events **out, audit_error *err);
/* Parses one event object (the same rules; err->index is 0).  The usual
 * shape goes through a fast parser without a document (event.c); anything
 * else through jansson. */
int audit_event_parse(const char *json, size_t len, audit_events **out, audit_error *err);
/* The same through jansson alone: the reference the fast parser is checked
 * against (tests/unit/test_audit.c, tests/fuzz/fuzz_audit.c). */
int audit_event_parse_reference(const char *json, size_t len, audit_events **out, audit_error *err);
/* Tests: whether b came from audit_event_parse's fast parser. */
bool audit_events_parsed_fast(const audit_events *b);
int audit_events_count(const audit_events *b);
const audit_event *audit_events_list(const audit_events *b);
void audit_events_free(audit_events *b);

/* Appends e as one JSON object, every field present, time as
 * audit_time_format writes it (what GET returns and POST takes). */
void audit_event_to_json(const audit_event *e, buf_t *out);
/* Appends {"events":[...]} of n events. */
void audit_events_to_json(const audit_event *ev, int n, buf_t *out);

/* Writes t (microseconds since the epoch) as RFC 3339 UTC with six
 * fraction digits: out gets AUDIT_TIME_LEN characters and a NUL. */
void audit_time_format(int64_t t_us, char out[AUDIT_TIME_LEN + 1]);
/* Parses RFC 3339 (date 'T' time, fraction of 0 to 9 digits, 'Z' or
 * +hh:mm / -hh:mm) into microseconds since the epoch, UTC; a fraction
 * finer than a microsecond is cut.  Years 1970..9999.  0 or CAIRN_EINVAL. */
int audit_time_parse(const char *s, int64_t *t_us);
/* A new event id: a time-ordered id (core.h's time_hex_id: milliseconds,
 * then 80 random bits; 32 lowercase hex digits and a NUL). */
void audit_event_id_new(char out[AUDIT_ID_LEN + 1]);

/* The store's cursor: the position after the event (time_us, event_id),
 * as 32 base64url characters.  Opaque to clients. */
#define AUDIT_QUERY_CURSOR_LEN 32
void audit_query_cursor_encode(int64_t time_us, const char *event_id, char out[AUDIT_QUERY_CURSOR_LEN + 1]);
/* 0, or CAIRN_EINVAL for anything audit_query_cursor_encode did not write. */
int audit_query_cursor_decode(const char *cursor, int64_t *time_us, char event_id[AUDIT_ID_LEN + 1]);

/* ---- the store's HTTP API (store.c) ----------------------------------------------- */

#define AUDIT_PATH_PREFIX "/audit/v1/"
#define AUDIT_EVENTS_PATH "/audit/v1/events"
#define AUDIT_QUERY_LIMIT_DEFAULT 100
#define AUDIT_QUERY_LIMIT_MAX 1000

typedef struct audit_store audit_store;

typedef struct {
    meta_store *meta;                  /* users and keys (who may call); must outlive the store */
    meta_store *events;                /* where events go (audit_metadata_url); NULL = meta */
    obs_registry *obs;                 /* counters (may be NULL) */
    const uint8_t *master_key;         /* 32 bytes: opens access keys' secrets */
    const char *root_access_key;       /* root's key and secret (configuration) */
    const char *root_secret;
    int64_t root_user_id;
    const char *region;                /* SigV4 scopes must name it (service "s3") */
    int clock_skew;                    /* seconds */
    int64_t max_body_bytes;            /* a POST body over this is 413 (audit_max_batch_bytes) */
    /* The store's own requests are audit events too.  journal: the
     * gateway's (embedded), where they go like S3 requests' (a POST waits
     * for its event to be durable); else record_direct: straight into
     * events, one transaction each (audit-server, as admin commands do);
     * neither: not audited (audit_enabled false). */
    audit_journal *journal;
    bool record_direct;
} audit_store_options;

/* A store serving the API over o->meta.  The strings and the key are
 * copied.  0, CAIRN_EINVAL or CAIRN_ENOMEM. */
int audit_store_new(const audit_store_options *o, audit_store **out);
void audit_store_free(audit_store *s);

/* The HTTP handler of the store alone (`cairn audit-server`); app is the
 * audit_store.  Every path but /audit/v1/events is 404 JSON, except
 * /health/live and /health/ready. */
const http_handler *audit_store_handler(void);

/* A handler that serves the store's paths (AUDIT_PATH_PREFIX) and hands
 * every other request to next (with next_app): `cairn server` and `cairn
 * gateway`, where /audit/v1/ is therefore a reserved path prefix (a
 * path-style S3 request for bucket "audit" and a key under "v1/" reaches
 * the store; virtual-host-style requests, whose Host is under domain (the
 * S3 domain; "" = none), always go to next).  The mux must outlive the
 * HTTP server; free with audit_mux_free. */
typedef struct audit_mux audit_mux;
int audit_mux_new(audit_store *s, const http_handler *next, void *next_app, const char *domain, audit_mux **out);
const http_handler *audit_mux_handler(void);
void audit_mux_free(audit_mux *m);

/* Whether a raw request path is the store's (starts with AUDIT_PATH_PREFIX). */
bool audit_path_is_store(const char *raw_path);

#endif
