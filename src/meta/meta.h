/*
 * meta — the metadata store: users, access keys, buckets, objects and the
 * schema that holds them.  One interface over backends: each is a table of
 * operations (meta_int.h) that meta.c forwards every call to.  SQLite
 * (sqlite*.c) is the embedded backend; PostgreSQL (pg*.c, through libpq) is
 * the shared one, for several gateways.  docs/metadata.md compares them.
 *
 * Consistency: every call is its own transaction.  A successful
 * meta_object_put is visible to every later call on any thread (read-after-
 * write).  SQLite serializes writes on one writer connection and reads on a
 * pool of readers (WAL lets them run beside the writer); PostgreSQL runs
 * every call on a pooled connection and lets row locks order the writers.
 *
 * Thread-safety: every function taking a meta_store is thread-safe.
 *
 * Callbacks: every call that delivers rows to a callback copies them out
 * first and returns its connection to the pool before the callback runs,
 * so no callback ever holds a connection and any may call meta again.  The
 * long listings (objects, the scan, uploads, parts) copy their rows in
 * batches of at most a few hundred, each fetched after the last row of the
 * one before, so what a call holds is bounded whatever its limit.  The
 * callbacks of meta_upload_complete, meta_upload_abort and meta_repair run
 * after the commit, holding nothing.
 *
 * Strings in the structs below are NUL-terminated; object keys are arbitrary
 * UTF-8 without NUL, up to 1024 bytes, compared as bytes (binary order).
 */
#ifndef CAIRN_META_H
#define CAIRN_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct meta_store meta_store;

/*
 * PostgreSQL's connection pool (pg_pool.c).  meta_pg_options_default fills
 * the defaults shown; a caller changes what it needs.  Every call takes a
 * connection for its duration only (never across a callback), so
 * max_conns bounds the concurrent calls, not the callers.
 */
typedef struct {
    int min_conns;            /* opened at start and kept open (1); 0 .. max_conns */
    int max_conns;            /* at most this many (8); 1 .. 1000 */
    int acquire_timeout_ms;   /* wait for a free connection this long, then CAIRN_EBUSY (2000); 0 = no wait */
    int health_check_ms;      /* a connection idle longer than this is pinged on checkout (1000); 0 = always */
    int idle_timeout_ms;      /* idle connections above min_conns close after this (60000); 0 = never */
    int max_lifetime_ms;      /* a connection is replaced after this (1800000); 0 = never */
    int lifetime_jitter_pct;  /* each lifetime shortened by up to this percent, at random (10); 0 .. 50 */
    int statement_timeout_ms; /* SET statement_timeout on every connection (5000); 0 = none */
    int connect_timeout_s;    /* libpq connect_timeout, unless the URL sets one (5); 0 = none */
    int long_hold_ms;         /* a connection held longer is logged with its call site (1000); 0 = never */
} meta_pg_options;

/* Fills o with the defaults above. */
void meta_pg_options_default(meta_pg_options *o);

/* The wait-time histogram's upper bounds, in seconds (a wait longer than
 * the last counts in the +Inf bucket only). */
#define META_POOL_WAIT_BUCKETS 10
extern const double meta_pool_wait_bounds[META_POOL_WAIT_BUCKETS];

/* A connection pool's counters (totals since open) and gauges (now), for
 * metrics: meta_pool_stats_get.  Only the PostgreSQL backend has one. */
typedef struct {
    int open;                  /* connections open or being opened */
    int in_use;                /* checked out */
    int idle;                  /* in the idle list */
    int max;                   /* max_conns */
    uint64_t acquires;         /* checkouts that got a connection */
    uint64_t waits;            /* checkouts that had to wait for one */
    uint64_t wait_ns;          /* time those waited, in total (the waits that ended) */
    uint64_t wait_count;       /* waits that ended, with a connection or not */
    uint64_t wait_buckets[META_POOL_WAIT_BUCKETS]; /* waits of at most meta_pool_wait_bounds[i] (cumulative) */
    uint64_t acquire_timeouts; /* checkouts that gave up (CAIRN_EBUSY) */
    uint64_t connects;         /* connections opened */
    uint64_t connect_errors;   /* connections that could not be opened */
    uint64_t errors;           /* statements that failed unexpectedly (logged) */
    uint64_t reconnects;       /* broken connections found on checkout and replaced */
    uint64_t expired;          /* connections closed at the end of their lifetime */
    uint64_t evicted;          /* idle connections closed by idle_timeout_ms */
    uint64_t long_holds;       /* checkouts held longer than long_hold_ms (logged) */
} meta_pool_stats;

typedef struct {
    int readers;       /* SQLite: reader connections in the pool (>= 1) */
    bool fsync;        /* SQLite: synchronous=FULL when true, OFF when false (tests/bench only) */
    int busy_timeout_ms; /* SQLite */
    const meta_pg_options *pg; /* PostgreSQL: the pool (NULL = meta_pg_options_default) */
} meta_options;

/* Where the metadata lives, from metadata_url (CAIRN_METADATA_URL). */
typedef enum { META_BACKEND_SQLITE = 1, META_BACKEND_POSTGRES = 2 } meta_backend;

typedef struct {
    meta_backend backend;
    char path[1025];           /* SQLite: the database file, absolute or under data_dir */
    char conninfo[2048];       /* PostgreSQL: the URL as given (libpq reads it) */
} meta_url;

/* Parses a metadata URL: "" = SQLite at data_dir/meta.db;
 * sqlite:///ABS/PATH (an absolute path, %XX escapes decoded, no host, no
 * query); postgres://... or postgresql://... (passed to libpq as is).
 * CAIRN_EINVAL with why (may be NULL) saying what is wrong. */
int meta_url_parse(const char *url, const char *data_dir, meta_url *out, char *why, size_t whylen);
/* Opens the store url names (meta_url_parse), migrating it to the latest
 * schema when migrate is true.  On failure why says what went wrong (never
 * the URL's password).  PostgreSQL: CAIRN_EINVAL for bad pool options,
 * CAIRN_EIO when no connection can be made, CAIRN_EDB for a schema newer
 * than this binary or a failed migration. */
int meta_open_url(const char *url, const char *data_dir, const meta_options *opt, bool migrate, meta_store **out,
                  char *why, size_t whylen);
/* The store's backend: "sqlite" or "postgres". */
const char *meta_backend_name(const meta_store *ms);
/* The connection pool's figures (PostgreSQL).  CAIRN_EINVAL for a store
 * without one (SQLite: its readers are a fixed set).  Thread-safe. */
int meta_pool_stats_get(meta_store *ms, meta_pool_stats *out);

/* Opens (creating if needed) the database at path, in WAL mode, and migrates
 * the schema to the latest version.  Caller closes with meta_close. */
int meta_open(const char *path, const meta_options *opt, meta_store **out);
/* Opens without migrating (for `cairn migrate`). */
int meta_open_raw(const char *path, const meta_options *opt, meta_store **out);
void meta_close(meta_store *ms);
/* A cheap liveness query on a reader connection and a no-op write
 * transaction on the writer; returns 0 when both work.  (PostgreSQL: one
 * round trip on a pooled connection that also asks whether the server
 * takes writes: a standby in recovery is CAIRN_EDB.) */
int meta_ping(meta_store *ms);

/* ---- schema migrations -------------------------------------------------- */

/*
 * The schema is a list of versioned steps, each with an up and a down text
 * per backend.  Every applied step is a row of schema_migrations: version,
 * name, when, and the SHA-256 of the up text that ran (its checksum).  A
 * step whose text changed after it was applied (the recorded checksum is not
 * this binary's) is drift: every migration refuses to run, so opening with
 * migrate (cairn server, gateway, admin) fails naming the step.  A row
 * recorded before checksums existed (an older cairn) gets this binary's
 * checksum at the next migration, inside its transaction.
 */

/* Current schema version (0 = empty database). */
int meta_schema_version(meta_store *ms, int *version);
/* Latest version this binary knows. */
int meta_schema_latest(void);
/* Migrates up or down to target, each step in its own transaction, recording
 * the version.  Returns 0 or CAIRN_EDB with the failing step logged. */
int meta_migrate(meta_store *ms, int target);
/* meta_migrate, and on failure why (may be NULL) says which step failed and
 * why: the database's message, or the drift ("migration 4 (multipart
 * uploads and parts) has changed since it was applied: ...").  CAIRN_EINVAL
 * for a target outside 0 .. meta_schema_latest(). */
int meta_migrate_to(meta_store *ms, int target, char *why, size_t whylen);
/* Name of migration v (1-based), or NULL. */
const char *meta_migration_name(int v);

/* What a migration is in one database, against this binary. */
typedef enum {
    META_MIG_PENDING = 0,  /* not applied */
    META_MIG_OK,           /* applied; its recorded checksum is this binary's */
    META_MIG_UNRECORDED,   /* applied by a cairn that recorded no checksum (filled at the next migration) */
    META_MIG_CHANGED,      /* applied, and its text has changed since: drift */
    META_MIG_UNKNOWN,      /* applied, but this binary has no such version (a newer cairn's) */
} meta_migration_state;

/* One version as meta_migration_status reports it; pointers valid only
 * during the callback. */
typedef struct {
    int version;
    const char *name;          /* this binary's name, or the recorded one for an unknown version */
    meta_migration_state state;
    int64_t applied_ms;        /* 0 when not applied */
    const char *recorded;      /* the checksum recorded when it was applied ("" if none) */
    const char *expected;      /* this binary's checksum of the up text ("" for an unknown version) */
} meta_migration_info;

/* Calls cb for versions 1 .. latest, then for any applied version beyond
 * (state UNKNOWN), in order.  Reads only: it never records a checksum.  cb
 * returns nonzero to stop. */
int meta_migration_status(meta_store *ms, int (*cb)(void *ud, const meta_migration_info *m), void *ud);
/* This binary's checksum of migration v on backend b: the hex SHA-256 of its
 * up text (64 digits and a NUL).  CAIRN_EINVAL for no such version. */
int meta_migration_checksum(meta_backend b, int v, char out[65]);
/* The SQL text of migration v on backend b, up or down (static), or NULL. */
const char *meta_migration_sql(meta_backend b, int v, bool up);
/* A dry run: appends to out the SQL meta_migrate would run on backend b to
 * go from version from to version to, one statement a line, each step in
 * its transaction, with its bookkeeping (the row it records or removes,
 * applied_ms written as now_ms).  CAIRN_EINVAL for versions outside
 * 0 .. latest. */
int meta_migration_script(meta_backend b, int from, int to, int64_t now_ms, buf_t *out);

/* ---- users and access keys ---------------------------------------------- */

typedef struct {
    int64_t id;
    char name[129];
    char display_name[129];
    bool is_root;
    bool audit;                /* may read and write the audit store (docs/audit.md) */
    int64_t created_ms;
} meta_user;

/* Creates a user; fills u->id.  CAIRN_EEXIST if the name is taken. */
int meta_user_create(meta_store *ms, meta_user *u);
/* Returns the root user's row, creating it (named name) if absent; if it
 * exists under another name it is renamed. */
int meta_user_ensure_root(meta_store *ms, const char *name, meta_user *out);
int meta_user_get(meta_store *ms, int64_t id, meta_user *out);           /* ENOTFOUND */
int meta_user_get_by_name(meta_store *ms, const char *name, meta_user *out);
/* Grants (audit = true) or revokes the audit right of the user named name.
 * CAIRN_ENOTFOUND when there is none. */
int meta_user_set_audit(meta_store *ms, const char *name, bool audit);
/* Calls cb for each user ordered by id; cb returns nonzero to stop. */
int meta_user_list(meta_store *ms, int (*cb)(void *ud, const meta_user *u), void *ud);

typedef struct {
    char access_key[129];
    int64_t user_id;
    char sealed_secret[512];   /* auth_secret_seal output */
    bool active;
    int64_t created_ms;
} meta_key;

int meta_key_create(meta_store *ms, const meta_key *k);                  /* EEXIST */
int meta_key_get(meta_store *ms, const char *access_key, meta_key *out); /* ENOTFOUND */
/* user_id < 0 lists every key. */
int meta_key_list(meta_store *ms, int64_t user_id,
                  int (*cb)(void *ud, const meta_key *k), void *ud);
int meta_key_set_active(meta_store *ms, const char *access_key, bool active); /* ENOTFOUND */

/* ---- buckets -------------------------------------------------------------- */

/*
 * A bucket's identity is its id, never reused; its name can be, by another
 * owner once it is deleted.  Every call that acts on a bucket's contents on
 * behalf of a request takes the id the request resolved (bucket_id > 0) and
 * finds nothing when the bucket of that name is now another one, so nothing
 * of a deleted bucket can surface in its successor.  0 means "whichever
 * bucket has the name" (operator tools).
 */
/* A bucket's versioning (S3's): never enabled, enabled, or suspended once
 * enabled (it never goes back to off). */
typedef enum {
    META_VERSIONING_OFF = 0,
    META_VERSIONING_ENABLED = 1,
    META_VERSIONING_SUSPENDED = 2,
} meta_versioning;

typedef struct {
    int64_t id;
    char name[64];
    int64_t owner_id;
    int64_t created_ms;
    bool public_read;
    char region[64];
    meta_versioning versioning;
    bool object_lock;          /* object lock enabled (versioning enabled with it, for good) */
    uint32_t configs;          /* META_CFG_*: the configurations it has (meta_bucket_config_*) */
} meta_bucket;

/* Bucket configuration kinds whose presence a bucket record carries, so a
 * request learns from the record it loads anyway whether there is one to
 * read (a bucket policy, say). */
enum {
    META_CFG_CORS = 1u << 0,
    META_CFG_TAGGING = 1u << 1,
    META_CFG_OWNERSHIP = 1u << 2,
    META_CFG_OBJECT_LOCK = 1u << 3,
    META_CFG_POLICY = 1u << 4,
    META_CFG_ACL = 1u << 5,
    META_CFG_PUBLIC_ACCESS_BLOCK = 1u << 6,
    META_CFG_LIFECYCLE = 1u << 7,
};
/* The META_CFG_* bit of a kind ("policy"), 0 for one without. */
uint32_t meta_config_bit(const char *kind);
/* The mask of a comma-separated list of kinds (NULL: none). */
uint32_t meta_config_mask(const char *kinds);

/* Fills b->id.  CAIRN_EEXIST if the name is taken; then existing_owner (if
 * not NULL) gets its owner. */
int meta_bucket_create(meta_store *ms, meta_bucket *b, int64_t *existing_owner);
int meta_bucket_get(meta_store *ms, const char *name, meta_bucket *out);  /* ENOTFOUND */
/* Deletes the bucket (id 0: whichever has the name) in one transaction that
 * also aborts every multipart upload in it: their part rows go, and their
 * shards are put in the trash (meta_trash_list) for removal; its completed
 * uploads are forgotten.  CAIRN_ENOTEMPTY if it holds objects,
 * CAIRN_ENOTFOUND if absent (or another bucket now). */
int meta_bucket_delete(meta_store *ms, const char *name, int64_t id);
/* owner_id < 0 lists all; ordered by name. */
int meta_bucket_list(meta_store *ms, int64_t owner_id,
                     int (*cb)(void *ud, const meta_bucket *b), void *ud);
/* One page of buckets, in name order: those of owner_id (< 0: every
 * owner's) whose name starts with prefix ("" or NULL: any) and sorts after
 * start_after ("" or NULL: from the first), at most limit (1 .. 100000) of
 * them; *more (may be NULL) tells whether another one follows.  Costs
 * O(limit) index reads however many buckets precede the page.  cb returning
 * nonzero stops the walk early (0 is still returned). */
int meta_bucket_list_page(meta_store *ms, int64_t owner_id, const char *prefix, const char *start_after, int limit,
                          int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more);
int meta_bucket_set_public(meta_store *ms, const char *name, bool public_read);
/* Sets the versioning of the bucket (bucket_id as in meta_bucket_delete).
 * CAIRN_ENOTFOUND without it; CAIRN_EINVAL for OFF once it was enabled (S3
 * only suspends), or SUSPENDED on a bucket with object lock. */
int meta_bucket_set_versioning(meta_store *ms, const char *name, int64_t bucket_id, meta_versioning state);
/* Turns object lock on for good on an existing bucket, as S3 allows since
 * 2023: 0 (also when it was on), CAIRN_ECONFLICT when versioning is not
 * enabled, CAIRN_ENOTFOUND. */
int meta_bucket_enable_object_lock(meta_store *ms, const char *name, int64_t bucket_id);

/* ---- objects ---------------------------------------------------------------- */

typedef enum {
    META_STORE_INLINE = 0,  /* bytes live in the database (small objects) */
    META_STORE_FILE = 1,    /* bytes live in a data file named by version_id */
} meta_storage;

/* What a put or a complete requires of the key's current version, checked
 * inside its transaction (S3's conditional writes): whichever of two
 * conditional writers commits first decides what the other finds. */
typedef enum {
    META_PUT_ALWAYS = 0,    /* no condition */
    META_PUT_IF_ABSENT,     /* no current version (If-None-Match: *) */
    META_PUT_IF_MATCH,      /* a current version whose etag is cond_etag (If-Match) */
} meta_put_cond;

typedef struct {
    char bucket[64];
    int64_t bucket_id;      /* puts: the bucket it must land in (0 = the one named) */
    char key[1025];
    size_t key_len;
    char version_id[33];    /* 32 lowercase hex, random per write */
    int64_t size;
    char etag[72];          /* without quotes: md5 hex, or "md5hex-N" for multipart */
    int64_t mtime_ms;
    int64_t owner_id;
    meta_storage storage;
    /* FILE objects: where the shards are, as data_layout_format writes it
     * ("k+m:block:drive,..."); empty for INLINE. */
    char layout[320];
    /* JSON object of the stored headers: {"content-type":..,"x-amz-meta-a":..}.
     * Owned by the struct (malloc); freed by meta_object_clear. */
    char *headers_json;
    /* Inline bytes when storage == INLINE and the getter asked for them.
     * Owned by the struct; freed by meta_object_clear. */
    uint8_t *data;
    size_t data_len;
    /* Puts and completes: jobs enqueued in the change's own transaction
     * (bucket notifications' deliveries: a committed change never lacks
     * them, a failed one never has them).  Borrowed, never stored or
     * returned; NULL/0: none. */
    const struct meta_job_s *jobs;
    int njobs;
    /* Puts: the request's audit event, inserted into the audit outbox in
     * the put's own transaction (docs/audit.md "The outbox"); borrowed,
     * never returned; NULL: none. */
    const struct meta_audit_outbox_s *audit;
    /* Puts and completes: the write's condition (never stored); when it
     * does not hold nothing changes and the call is CAIRN_EPRECOND.  A
     * current version that is a delete marker counts as no version. */
    meta_put_cond cond;
    char cond_etag[72];     /* META_PUT_IF_MATCH: the etag, unquoted */
    /* Versions (filled by reads; puts set none of them: the bucket's
     * versioning decides).  version_id above names the version's bytes; S3
     * calls a null version "null". */
    int64_t seq;            /* its place among the key's versions: 1, 2, ... newer is larger */
    bool is_latest;         /* the key's current version */
    bool delete_marker;     /* a delete marker: no bytes (INLINE, size 0, no data row) */
    bool null_version;      /* written while versioning was off or suspended: S3's version "null" */
} meta_object;

/* Frees the owned members and zeroes the pointers. */
void meta_object_clear(meta_object *o);

/*
 * Makes obj the current version of (bucket, key) in one transaction (grouped
 * with concurrent puts: one synced commit for many), as the bucket's
 * versioning says at commit time: off, it replaces the current version;
 * enabled, the current one becomes noncurrent and obj is a new version;
 * suspended, obj is the null version, replacing the null version wherever
 * it is among the versions.  When that removed a version, *replaced is
 * filled with it (without inline data) and *had_replaced set, so the
 * caller can delete its bytes; a replaced multipart version's parts are
 * moved to the trash by the same transaction.  CAIRN_ENOTFOUND if the bucket does not exist at commit time
 * (or obj->bucket_id > 0 and the bucket of that name is another one now).
 * CAIRN_EPRECOND when obj->cond does not hold at commit time (nothing
 * changed).
 */
int meta_object_put(meta_store *ms, const meta_object *obj, meta_object *replaced,
                    bool *had_replaced);
/* The key's current object; with_data: also load inline bytes.
 * CAIRN_ENOTFOUND if there is none, or its current version is a delete
 * marker (or bucket_id > 0 and the bucket of that name is not that one).
 * out is zeroed on every outcome. */
int meta_object_get(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                    bool with_data, meta_object *out);
/* The same, but a current delete marker is returned (out->delete_marker):
 * S3's GET answers it with x-amz-delete-marker. */
int meta_object_get_current(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            bool with_data, meta_object *out);
/* Removes (bucket, key); fills *deleted with the removed version (a
 * multipart version's parts go to the trash in the same transaction).
 * CAIRN_ENOTFOUND if absent (bucket_id as in meta_object_get). */
int meta_object_delete(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                       size_t key_len, meta_object *deleted);
/* The same, and when something was removed, jobs[0..njobs) are enqueued in
 * the same transaction (nothing removed: none is). */
int meta_object_delete_jobs(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                            size_t key_len, const struct meta_job_s *jobs, int njobs, meta_object *deleted);
/*
 * Object lock (S3's WORM).  A version's lock state lives in its
 * headers_json, under the names of the S3 headers that carry it (GET and
 * HEAD send them back as they are): "x-amz-object-lock-mode" ("GOVERNANCE"
 * or "COMPLIANCE"), "x-amz-object-lock-retain-until-date" (RFC 3339 UTC)
 * and "x-amz-object-lock-legal-hold" ("ON" or "OFF").  Every removal of a
 * version (a delete by version id, a delete that drops a null version)
 * checks it inside its own transaction, on the row it is about to remove:
 * while a retention is in force (now < retain-until) or a legal hold is ON
 * the removal is CAIRN_ELOCKED and nothing changes.  GOVERNANCE retention
 * yields to bypass_governance; COMPLIANCE and a legal hold yield to nothing.
 */
typedef enum {
    META_LOCK_NONE = 0,
    META_LOCK_GOVERNANCE = 1,
    META_LOCK_COMPLIANCE = 2,
} meta_lock_mode;

typedef struct {
    meta_lock_mode mode;       /* NONE: no retention */
    int64_t until_ms;          /* retain until (mode != NONE) */
    bool legal_hold;
} meta_lock_state;

/* What a removal is allowed: zeroed (or NULL) is the strictest, now by the
 * clock and no bypass. */
typedef struct {
    int64_t now_ms;            /* the request's time; 0: the clock when checked */
    bool bypass_governance;    /* the caller may bypass GOVERNANCE and asked to */
} meta_lock_check;

/* Reads the lock state out of a version's headers_json (NULL: none).
 * CAIRN_EINVAL when the document or a lock member cannot be read (callers
 * that enforce treat that as locked: fail closed).  Thread-safe. */
int meta_lock_state_of(const char *headers_json, meta_lock_state *out);
/* Whether state forbids removing its version under check (NULL: strictest). */
bool meta_lock_forbids(const meta_lock_state *state, const meta_lock_check *check);

/* One key of a meta_object_delete_many batch. */
typedef struct {
    const char *key;
    size_t key_len;
    const char *version_id;    /* in: NULL the current version (as meta_object_delete_version), else that one */
    int64_t owner_id;          /* in: who deletes (a delete marker's owner) */
    const char *marker_id;     /* in: the id a marker made takes (NULL: drawn), as in meta_object_delete_version_lock */
    int rc;                    /* out: 0 deleted or absent, or an error */
    meta_object deleted;       /* out: the removed version (rc 0, version_id set) */
    meta_object marker;        /* out: the delete marker made (version_id set), as in meta_delete_result */
    bool deleted_marker;       /* out: the version removed was a delete marker */
    const struct meta_job_s *jobs; /* in: enqueued with the removal, if the key existed */
    int njobs;
    meta_lock_check lock;      /* in: what object lock allows (zeroed: strictest); a locked version is CAIRN_ELOCKED */
} meta_delete_item;

/* What a versioned delete did. */
typedef struct {
    meta_object removed;       /* a version now gone, whose bytes the caller removes (version_id "" = none) */
    bool removed_marker;       /* the version removed was a delete marker */
    meta_object marker;        /* the delete marker it made (version_id "" = none) */
} meta_delete_result;
/* Frees what a result owns. */
void meta_delete_result_clear(meta_delete_result *r);

/*
 * S3's DeleteObject, in one transaction.  version_id NULL: the current
 * version, as the bucket's versioning says: off, it is removed (absent:
 * CAIRN_ENOTFOUND); enabled, a delete marker (owned by owner_id) becomes
 * the current version, the current one noncurrent, nothing removed;
 * suspended, a null delete marker becomes current and the null version,
 * wherever it is, is removed.  version_id set ("null" for the null
 * version): that version is removed for good, and if it was current the
 * newest remaining one becomes current; CAIRN_ENOTFOUND without it.  jobs
 * are enqueued when anything changed.  The caller clears *res.
 */
int meta_object_delete_version(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                               size_t key_len, const char *version_id, int64_t owner_id,
                               const struct meta_job_s *jobs, int njobs, meta_delete_result *res);
/* The same under object lock's check (NULL: the strictest): a version it
 * would remove that is locked makes the call CAIRN_ELOCKED, nothing
 * changed.  marker_id: the id a delete marker it makes takes (NULL: one is
 * drawn), so a caller can name the marker in what it hands over with the
 * change (a notification's versionId) before the commit; 32 lowercase hex
 * digits (else CAIRN_EINVAL), unique as a drawn one is.  A null marker
 * (suspended versioning) keeps it as its row's id too, and is still named
 * "null".  meta_object_delete_version is this with NULLs. */
int meta_object_delete_version_lock(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                                    size_t key_len, const char *version_id, int64_t owner_id,
                                    const char *marker_id, const meta_lock_check *lock,
                                    const struct meta_job_s *jobs, int njobs, meta_delete_result *res);
/* The same, and audit (NULL: none) goes into the audit outbox in the same
 * transaction when the call succeeds (docs/audit.md "The outbox"). */
int meta_object_delete_audited(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                               size_t key_len, const char *version_id, int64_t owner_id, const char *marker_id,
                               const meta_lock_check *lock, const struct meta_job_s *jobs, int njobs,
                               const struct meta_audit_outbox_s *audit, meta_delete_result *res);
/* One version of (bucket, key) by its id ("null": the null version),
 * delete markers included (out->delete_marker).  CAIRN_ENOTFOUND without
 * it (bucket_id as in meta_object_get). */
int meta_object_get_version(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const char *version_id, bool with_data, meta_object *out);

/* Replaces the stored headers (headers_json) of one version of (bucket,
 * key), named by its own version_id (meta_object.version_id, never "null"):
 * what S3 changes after a write (tags, retention, legal hold) lives there.
 * Nothing else of the version changes.  CAIRN_ENOTFOUND when that version
 * is not there (bucket_id as in meta_object_get): a caller that read it
 * and lost it to a concurrent write reads again. */
int meta_object_set_headers(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const char *version_id, const char *headers_json);
/* The same, only while the version's headers are still exactly expected
 * (what the caller read): a read-modify-write that lost to a concurrent
 * one (another retention, legal hold or tag change) is CAIRN_ENOTFOUND
 * too, and reads again.  Object lock relies on it: a retention is never
 * shortened by a write that read it before it was extended. */
int meta_object_set_headers_if(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                               size_t key_len, const char *version_id, const char *expected,
                               const char *headers_json);

/* One row of a versions listing; pointers valid only during the callback. */
typedef struct {
    const char *key;
    size_t key_len;
    const char *version_id;
    int64_t seq;
    bool is_latest, delete_marker, null_version;
    int64_t size;
    const char *etag;
    int64_t mtime_ms;
    int64_t owner_id;
} meta_version_entry;

/*
 * ListObjectVersions: up to limit versions of bucket whose key starts with
 * prefix, in key order and newest first within a key, delete markers
 * included, starting after (after_key, after_seq): after_seq 0 means after
 * every version of after_key, -1 at its first (after_key included);
 * after_key NULL from the start.  O(rows
 * returned), as meta_object_list; cb and *more as there.
 */
int meta_object_list_versions(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix,
                              size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                              int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more);
/* Deletes up to 1000 keys of one bucket in one transaction (one synced
 * commit): DeleteObjects.  Each key runs in its own savepoint and gets its
 * own outcome (an absent key is rc 0 with no version_id); if the batch
 * fails as a whole (it cannot begin, SQLite rolls its transaction back, or
 * the commit fails), every item gets its error and nothing was deleted.
 * The caller clears each item's deleted. */
int meta_object_delete_many(meta_store *ms, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n);

/* One listing row; pointers valid only during the callback. */
typedef struct {
    const char *key;
    size_t key_len;
    int64_t size;
    const char *etag;
    int64_t mtime_ms;
    int64_t owner_id;
} meta_list_entry;

/*
 * Calls cb for up to limit objects of bucket, in binary key order, whose key
 * starts with prefix (prefix_len bytes, may be 0) and is > from (or >= from when
 * inclusive; from may be NULL for the start).  Cost is O(rows returned): it is
 * an index range scan.  cb returns nonzero to stop early; it may call meta
 * (see Callbacks above).  *more is set when rows beyond
 * those delivered exist (only meaningful if cb never stopped early).
 */
int meta_object_list(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix,
                     size_t prefix_len, const char *from, size_t from_len, bool inclusive,
                     int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud,
                     bool *more);
/* One row of a whole-store scan; pointers valid only during the callback. */
typedef struct {
    const char *bucket;
    const char *key;
    size_t key_len;
    const char *version_id;
    int64_t size;
    meta_storage storage;
    const char *layout;
} meta_scan_entry;

/* Calls cb for up to limit objects of every bucket in (bucket, key) order,
 * starting after (after_bucket, after_key) — both "" to start at the top.
 * Same rules as meta_object_list (callbacks; *more).  Nothing
 * outside meta and its tests calls it now: the jobs walk placements
 * (meta_placement_scan), which also cover multipart parts. */
int meta_object_scan(meta_store *ms, const char *after_bucket, const char *after_key,
                     size_t after_key_len, int limit,
                     int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more);

/*
 * Placements: every set of shards metadata references.  Three kinds hold
 * shards — an object's own version (not inline, not multipart), a part of a
 * completed multipart object, and a part of an upload in progress — and every
 * job that moves or verifies shards (scrub, drain and rebalance, the
 * reference count behind node removal, fsck) must see all three.  A
 * placement is named by its version id, which is random and unique across
 * all three tables.
 */
typedef enum {
    META_PLACE_OBJECT = 0,     /* objects row; owner = bucket, key = key */
    META_PLACE_OBJECT_PART,    /* object_parts row; owner = the multipart object's version id */
    META_PLACE_UPLOAD_PART,    /* upload_parts row; owner = the upload id */
} meta_place_kind;

typedef struct {
    meta_place_kind kind;
    char version_id[33];
    int64_t size;
    char layout[320];
    char owner[65];            /* bucket name, object version id or upload id (see kind) */
    char key[1025];            /* META_PLACE_OBJECT: the object's key */
    size_t key_len;
    int part_number;           /* parts */
} meta_placement;

/* Where a placement scan resumes: kind, then version id ("" = the start). */
typedef struct {
    meta_place_kind kind;
    char after[33];
    bool done;
} meta_place_cursor;

/* Delivers up to limit placements after *cur, kind by kind, each kind in
 * version id order, and advances *cur (cur->done once every kind is
 * through).  Rows are copied before cb runs, so cb may call meta. */
int meta_placement_scan(meta_store *ms, meta_place_cursor *cur, int limit,
                        int (*cb)(void *ud, const meta_placement *p), void *ud);
/* Points the placement version_id at new_layout, only if its layout is still
 * old_layout (a rebalance must not clobber a concurrent change):
 * CAIRN_ECONFLICT otherwise, CAIRN_ENOTFOUND if nothing references it now. */
int meta_placement_set_layout(meta_store *ms, const char *version_id, const char *old_layout,
                              const char *new_layout);
/* Counts placements (of all three kinds) whose layout mentions a drive or
 * node id: `cairn admin node remove` refuses while it is not 0. */
int meta_layout_refs(meta_store *ms, const char *id, int64_t *count);
/* The placement named by version_id (any kind).  CAIRN_ENOTFOUND. */
int meta_placement_get(meta_store *ms, const char *version_id, meta_placement *out);

/* ---- consistency (fsck) ---------------------------------------------------------------
 * Rows that contradict each other.  None of these can arise from the calls
 * above (each is one transaction); they are what a bug, a crash in a
 * backend that lost a transaction, or a hand-edited database leaves. */
typedef enum {
    META_PROBLEM_UPLOAD_WITHOUT_BUCKET = 0, /* id: upload id (its bucket id names no bucket) */
    META_PROBLEM_OBJECT_WITHOUT_BUCKET,     /* id: bucket name, key: the object's key */
    META_PROBLEM_PARTS_WITHOUT_UPLOAD,      /* id: an upload id that upload_parts rows name */
    META_PROBLEM_PARTS_WITHOUT_OBJECT,      /* id: a version id that object_parts rows name */
    META_PROBLEM_MULTIPART_MISMATCH,        /* id: an "mp:N" object's version: parts do not add up */
    META_PROBLEM_INLINE_WITHOUT_DATA,       /* id: an inline object's version: bytes absent or of another size */
    META_PROBLEM_DATA_WITHOUT_OBJECT,       /* id: inline bytes no object owns */
    META_PROBLEM_DUPLICATE_VERSION,         /* id: a version id used by more than one placement or object */
    META_PROBLEM__COUNT
} meta_problem_kind;

typedef struct {
    meta_problem_kind kind;
    char id[72];
    char key[1025];
    size_t key_len;
} meta_problem;

/* Stable names for reports ("upload_without_bucket"...). */
const char *meta_problem_name(meta_problem_kind kind);
/* Runs every consistency check; cb hears at most limit problems (rows copied
 * first: cb may call meta), *total gets how many there are. */
int meta_check(meta_store *ms, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total);
/* Repairs one problem where the metadata alone can: an upload without a
 * bucket is aborted; part rows without their upload or object, and inline
 * bytes without an object, are deleted.  drop(ud, version_id, layout) hears
 * each part whose shards should go (after the commit).  CAIRN_EINVAL for the
 * kinds nothing can repair (the data they describe is lost or ambiguous). */
int meta_repair(meta_store *ms, const meta_problem *p,
                void (*drop)(void *ud, const char *version_id, const char *layout), void *ud);

/* ---- multipart uploads ------------------------------------------------------------
 *
 * A completed multipart object is an objects row whose layout is "mp:<N>";
 * its parts (each stored like an object: own version id and layout) are in
 * object_parts, found with meta_object_parts.  When such a version is replaced
 * or deleted, the same transaction moves its parts to the trash
 * (meta_trash_list), whose emptier removes their bytes: no crash can leave
 * part rows without their object or rows naming removed bytes.
 */

#define META_MULTIPART_PREFIX "mp:"

typedef struct {
    char upload_id[65];
    char bucket[64];
    int64_t bucket_id;         /* the bucket it belongs to (see meta_bucket) */
    char key[1025];
    size_t key_len;
    int64_t owner_id;
    int64_t initiated_ms;
    char *headers_json;        /* owned; meta_upload_clear */
} meta_upload;

typedef struct {
    int part_number;
    char version_id[33];
    int64_t size;
    char etag[72];
    char layout[320];
    int64_t mtime_ms;
    int64_t offset;            /* completed objects only: where the part starts */
    /* The part's checksum as "<algorithm>:<base64 value>" (algorithm as in
     * x-amz-checksum-<algorithm>, e.g. "crc32c:yZRlqg=="), "" for none. */
    char checksum[128];
} meta_part;

void meta_upload_clear(meta_upload *u);
/* CAIRN_ENOTFOUND when the bucket u->bucket_id (or, if 0, u->bucket) is gone. */
int meta_upload_create(meta_store *ms, const meta_upload *u);
int meta_upload_get(meta_store *ms, const char *upload_id, meta_upload *out);   /* ENOTFOUND */
/* Uploads of the bucket with id bucket_id (> 0, else CAIRN_EINVAL) in (key,
 * upload_id) order after the markers, keys starting with prefix.  *more as
 * in meta_object_list. */
int meta_upload_list(meta_store *ms, int64_t bucket_id, const char *prefix, size_t prefix_len,
                     const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit,
                     int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more);
/* Records a part (replacing one with the same number: *replaced filled, so
 * the caller removes its bytes; both out pointers are required).
 * CAIRN_ENOTFOUND when the upload is gone (aborted or completed meanwhile). */
int meta_part_put(meta_store *ms, const char *upload_id, const meta_part *p, meta_part *replaced,
                  bool *had_replaced);
/* Up to limit parts of an upload with part_number > after, in order; *more
 * as in meta_object_list. */
int meta_part_list(meta_store *ms, const char *upload_id, int after, int limit,
                   int (*cb)(void *ud, const meta_part *p), void *ud, bool *more);
/* Completes an upload in one transaction: obj becomes the current version
 * (layout "mp:<n>"; replaced and had_replaced as in meta_object_put), parts
 * (n, in order, offsets set) become its object_parts, and the upload and its
 * part rows go; the upload is remembered (meta_upload_completed_get).  Each
 * chosen part must still be the upload's current part of that number (same
 * version_id): if a re-upload replaced one since the caller read the list,
 * nothing happens and CAIRN_ECONFLICT says to read it again.  Sizes, ETags
 * and layouts are taken from the rows inside the transaction.  unused(ud,
 * part) hears every uploaded part not in the list (after the commit) so its
 * bytes can be removed.  CAIRN_ENOTFOUND: no upload, or not in obj's bucket
 * (obj->bucket_id) under obj's key. */
int meta_upload_complete(meta_store *ms, const char *upload_id, const meta_object *obj, const meta_part *parts,
                         int n, meta_object *replaced, bool *had_replaced,
                         void (*unused)(void *ud, const meta_part *p), void *ud);
/* Removes an upload and its part rows; parts(ud, part) hears each part after
 * the commit so its bytes can go.  CAIRN_ENOTFOUND when there is no such
 * upload. */
int meta_upload_abort(meta_store *ms, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud);
/* Parts of a completed multipart version, in order (offsets set). */
int meta_object_parts(meta_store *ms, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud);

/* A completed upload as remembered for retried completes. */
typedef struct {
    char upload_id[65];
    int64_t bucket_id;
    char key[1025];
    size_t key_len;
    char version_id[33];
    char etag[72];
    int64_t completed_ms;
} meta_completed_upload;
int meta_upload_completed_get(meta_store *ms, const char *upload_id, meta_completed_upload *out); /* ENOTFOUND */
/* Forgets up to limit completed uploads older than before_ms (the prune_jobs
 * job passes the multipart expiry); *deleted gets how many. */
int meta_upload_completed_prune(meta_store *ms, int64_t before_ms, int limit, int64_t *deleted);

/* ---- the trash ------------------------------------------------------------------------
 * Shards whose last reference a transaction removed — the parts of every
 * upload of a deleted bucket (meta_bucket_delete), the parts of a multipart
 * version replaced or deleted (meta_object_put, meta_object_delete[_many],
 * meta_upload_complete) — listed by that same transaction, so their bytes
 * are removed afterwards even across a crash, and then forgotten. */
typedef struct {
    char version_id[33];
    char layout[320];
    int64_t added_ms;
} meta_trash_entry;
/* Up to limit entries, oldest first; cb may call meta. */
int meta_trash_list(meta_store *ms, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud);
/* Forgets n entries (their shards are gone) in one transaction. */
int meta_trash_remove(meta_store *ms, const char *const *version_ids, int n);

/* ---- the durable job queue ------------------------------------------------------------ */

typedef struct meta_job_s {
    int64_t id;
    char kind[64];
    char *args;                /* JSON text, owned; meta_job_clear */
    int priority;              /* higher runs first */
    int64_t run_at_ms;
    int attempts;              /* runs started so far */
    int max_attempts;
    char state[16];            /* available running retryable completed cancelled discarded */
    char lease_owner[64];
    int64_t lease_expires_ms;
    char unique_key[128];      /* "" = none */
    bool unique_while_pending; /* enqueue: a finished job holding the key gives it up */
    char last_error[256];
    int64_t created_ms;
    int64_t finished_ms;
} meta_job;

void meta_job_clear(meta_job *j);
/* Enqueues; *id gets the new id.  With a unique key that a job already holds,
 * nothing is added: CAIRN_EEXIST and *id is that job's — unless
 * unique_while_pending is set and that job has finished (completed,
 * cancelled, discarded): then it gives the key up and the new job is added. */
int meta_job_enqueue(meta_store *ms, const meta_job *j, int64_t *id);
/* Claims the next runnable job (available or retryable and due, or running
 * with an expired lease), highest priority first, in one write transaction:
 * it becomes running under owner until now + lease_ms, attempts + 1.
 * CAIRN_ENOTFOUND when there is none. */
int meta_job_claim(meta_store *ms, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out);
/* Claims through ms (meta_job_claim, meta_job_finish_claim) take only jobs
 * of these n kinds from now on: the kinds this process has handlers for,
 * so a process sharing the database with others (an audit-server beside
 * gateways, a gateway of an older version) never takes a job it cannot
 * run.  n = 0: every kind again.  Set it before claims begin (the job
 * queue does, at jobs_queue_start).  0, CAIRN_EINVAL or CAIRN_ENOMEM. */
int meta_job_kinds_set(meta_store *ms, const char *const *kinds, int n);
/* Ends a run held by owner: state "completed", "retryable" (run again at
 * run_at_ms) or "discarded", keeping error.  CAIRN_ECONFLICT when owner no
 * longer holds the lease (it expired and another worker took the job). */
int meta_job_finish(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                    const char *error);
/* meta_job_finish and then meta_job_claim in one write transaction (one
 * synced commit per job instead of two): *finish_rc gets the finish's result
 * (0 or CAIRN_ECONFLICT); returns the claim's (0 with next filled, or
 * CAIRN_ENOTFOUND).  On a database error neither happened (the finish is
 * rolled back with a failed claim) and both say so. */
int meta_job_finish_claim(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                          const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next);
/* Gives a claimed job back untouched (graceful shutdown): available again. */
int meta_job_release(meta_store *ms, int64_t id, const char *owner);
/* The same, not before run_at_ms: the run did not count as an attempt (a
 * job that must wait for another, JOBS_DEFER). */
int meta_job_defer(meta_store *ms, int64_t id, const char *owner, int64_t run_at_ms);
/* Extends the lease of a long run. */
int meta_job_extend(meta_store *ms, int64_t id, const char *owner, int64_t lease_expires_ms);
/* Cancels a job that is not running or finished (CAIRN_ECONFLICT otherwise). */
int meta_job_cancel(meta_store *ms, int64_t id);
/* Makes a discarded, cancelled or retryable job available now with its
 * attempts reset (CAIRN_ECONFLICT when running or completed). */
int meta_job_retry(meta_store *ms, int64_t id);
int meta_job_get(meta_store *ms, int64_t id, meta_job *out);   /* ENOTFOUND */
/* Jobs newest first; state and kind ("" = any) filter. */
int meta_job_list(meta_store *ms, const char *state, const char *kind, int limit,
                  int (*cb)(void *ud, const meta_job *j), void *ud);
/* Deletes up to limit jobs that finished as completed or cancelled before
 * done_before_ms, or as discarded before discarded_before_ms; *deleted gets
 * how many. */
int meta_job_prune(meta_store *ms, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted);
/* Calls cb with the number of jobs per (kind, state), ordered by kind and
 * state; cb returns nonzero to stop. */
int meta_job_counts(meta_store *ms, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud);
/* Uploads initiated before before_ms, oldest first (expiry of abandoned uploads). */
int meta_upload_list_older(meta_store *ms, int64_t before_ms, int limit,
                           int (*cb)(void *ud, const meta_upload *u), void *ud);

/* ---- bucket notifications (docs/notifications.md) ------------------------------------- */

/* A webhook target, defined by an admin (cairn admin notify target add). */
typedef struct {
    char name[64];             /* [A-Za-z0-9_-], the NAME of arn:cairn:sqs::NAME:webhook */
    char url[1024];            /* http(s)://... the events are POSTed to */
    char secret[512];          /* sealed with the master key (auth_secret_seal); "" = unsigned */
    int max_attempts;          /* deliveries tried before the event is a dead letter */
    bool ordered;              /* the events of one key are delivered in commit order */
    int64_t created_ms;
} meta_notify_target;

/* CAIRN_EEXIST for a name taken, CAIRN_EINVAL for a bad name or URL. */
int meta_notify_target_add(meta_store *ms, const meta_notify_target *t);
int meta_notify_target_get(meta_store *ms, const char *name, meta_notify_target *out); /* ENOTFOUND */
int meta_notify_target_list(meta_store *ms, int (*cb)(void *ud, const meta_notify_target *t), void *ud);
int meta_notify_target_remove(meta_store *ms, const char *name);                      /* ENOTFOUND */
/* ---- rate limit overrides (docs/rate-limiting.md) ---- */

/* One key's or one bucket's limits, replacing the configured defaults. */
typedef struct {
    char scope[8];             /* "key" or "bucket" */
    char name[256];            /* the access key id, or the bucket's name */
    int64_t ops_per_s;         /* requests per second; 0 = no limit */
    int64_t bytes_per_s;       /* body bytes per second; 0 = no limit */
    int64_t updated_ms;
} meta_limit;

/* Sets (inserts or replaces) an override.  CAIRN_EINVAL for a scope other
 * than key/bucket, an empty or overlong name, or a negative rate. */
int meta_limit_set(meta_store *ms, const meta_limit *l);
/* Every override, in (scope, name) order; rows are copied out first. */
int meta_limit_list(meta_store *ms, int (*cb)(void *ud, const meta_limit *l), void *ud);
/* CAIRN_ENOTFOUND when there is none.  A bucket's delete removes its
 * override in the same transaction. */
int meta_limit_remove(meta_store *ms, const char *scope, const char *name);

/* A bucket's notification configuration (the JSON s3/ keeps: its rules),
 * by bucket id: *config malloc'd (the caller frees), CAIRN_ENOTFOUND when
 * it has none.  put with "" removes it.  A bucket's delete removes its
 * configuration in the same transaction. */
int meta_bucket_notification_get(meta_store *ms, int64_t bucket_id, char **config);
int meta_bucket_notification_put(meta_store *ms, int64_t bucket_id, const char *config);
/* How many jobs of kind are pending (available, running or retryable) whose
 * args contain needle (a notify target's "\"target\":\"NAME\""): a scan of
 * the pending jobs of that kind, for occasional checks, not per request. */
int meta_job_pending_count(meta_store *ms, const char *kind, const char *needle, int64_t *n);
/* The same, among the jobs with an id below before_id (enqueued earlier). */
int meta_job_pending_before(meta_store *ms, const char *kind, const char *needle, int64_t before_id, int64_t *n);

/* ---- bucket configurations ------------------------------------------------------ */

/*
 * A bucket's other configurations, one document per kind ("cors",
 * "tagging", "lifecycle", "policy", "ownership", "public_access_block",
 * "object_lock": 1 .. 31 of [a-z_]), in the form s3/ keeps each (what it
 * validated, never the raw request).  By bucket id: a bucket deleted and
 * made again under its name starts with none, and a bucket's delete removes
 * its configurations in the same transaction.  get: *body malloc'd (the
 * caller frees), CAIRN_ENOTFOUND when it has none of that kind.  put with
 * "" (or NULL) removes it (absent already: 0).  CAIRN_EINVAL for a bad kind.
 */
int meta_bucket_config_get(meta_store *ms, int64_t bucket_id, const char *kind, char **body);
int meta_bucket_config_put(meta_store *ms, const char *bucket, int64_t bucket_id, const char *kind, const char *body);

/* ---- job notifications ------------------------------------------------------------ */

/*
 * On PostgreSQL an enqueue also notifies (pg_notify on the channel
 * "cairn_jobs", in the enqueue's own transaction, so it is sent only when
 * the job is committed), and every gateway keeps a listener: a connection
 * of its own, never a pooled one, that LISTENs on the channel.  A worker
 * waiting for its next poll is woken as soon as a job is added anywhere.
 * Notifications are only a hint (one may be missed while a listener
 * reconnects): workers still poll, and a claim decides what runs.  SQLite
 * has no listeners: one process, whose enqueues wake its own workers.
 */
typedef struct meta_listener meta_listener;

/* Opens a listener (caller closes it with meta_listener_close).
 * CAIRN_EINVAL for a store without notifications (SQLite); CAIRN_EIO when
 * no connection can be made or LISTEN fails. */
int meta_job_listener_open(meta_store *ms, meta_listener **out);
/* The socket to poll for input (POLLIN), then call meta_listener_drain. */
int meta_listener_fd(const meta_listener *l);
/* Reads what arrived; returns how many notifications (0 or more), or
 * CAIRN_EIO when the connection is lost (close it and open another). */
int meta_listener_drain(meta_listener *l);
void meta_listener_close(meta_listener *l);

/* ---- leases: work one process of many does ----------------------------------------- */

/*
 * A lease names work that one process at a time should do, however many
 * gateways share the database (the scrubber; node bookkeeping and
 * rebalancing).  Its holder renews it well before it expires; a holder that
 * dies loses it ttl later, when another takes it.  Times are the callers'
 * wall clocks in milliseconds, so the gateways' clocks must agree to well
 * within a ttl (NTP).  A lease only keeps work from being done twice: what
 * it guards stays correct if two processes ever do it at once (a holder
 * stalled past its expiry), by compare-and-set writes and idempotent steps.
 */
typedef struct {
    char name[64];
    char holder[256];
    int64_t acquired_ms;       /* when holder took it (renewals keep it) */
    int64_t expires_ms;
} meta_lease;

/* Takes lease name for holder until now_ms + ttl_ms if it is free, expired
 * (expires_ms <= now_ms) or holder's already (a renewal), in one statement;
 * *held says whether holder has it now.  CAIRN_EINVAL for a name or holder
 * that is empty or too long (63 and 255 bytes at most), or ttl_ms <= 0. */
int meta_lease_acquire(meta_store *ms, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms,
                       bool *held);
/* Gives lease name up if holder has it, so another takes it at once;
 * CAIRN_ENOTFOUND when holder does not hold it. */
int meta_lease_release(meta_store *ms, const char *name, const char *holder);
/* The lease's row, expired or not; CAIRN_ENOTFOUND when nobody holds it
 * (never taken, or released). */
int meta_lease_get(meta_store *ms, const char *name, meta_lease *out);

/* ---- storage node registry -------------------------------------------------------- */

typedef struct {
    char id[17];
    char url[256];
    char state[16];            /* active | draining | removed */
    int64_t added_ms;
    int64_t last_seen_ms;
    char last_error[192];
} meta_node;

/* Records a node (by id) at url; an existing row keeps its state. */
int meta_node_upsert(meta_store *ms, const char *id, const char *url);
int meta_node_list(meta_store *ms, int (*cb)(void *ud, const meta_node *n), void *ud);
/* Finds a node by id or url.  CAIRN_ENOTFOUND. */
int meta_node_get(meta_store *ms, const char *id_or_url, meta_node *out);
int meta_node_set_state(meta_store *ms, const char *id, const char *state);
/* Heartbeat bookkeeping: ok updates last_seen_ms; error text is stored. */
int meta_node_seen(meta_store *ms, const char *id, bool ok, const char *error);

/* Sets *referenced to whether version_id is any object's current version, an
 * uploaded part, or a part of a completed multipart object (heals skip
 * versions that are gone; fsck --repair keeps shards a version still names).
 * Orphan collection and fsck's orphan check ask more: whether a shard sits
 * where its placement's layout puts it (jobs_shard_referenced). */
int meta_version_referenced(meta_store *ms, const char *version_id, bool *referenced);

/* Counts objects in the bucket by name (count(*) over the bucket's rows, not
 * bounded; only tests call it). */
int meta_object_count(meta_store *ms, const char *bucket, int64_t *count);

/* ---- the audit store (docs/audit.md) ----------------------------------------------- */

/*
 * One audit event as the store keeps it.  Strings are borrowed (the caller's
 * for inserts; the call's, valid during the callback, for queries), never
 * NULL, and within the bounds below (meta_audit_insert refuses longer ones
 * with CAIRN_EINVAL: a store never truncates).  time_us is microseconds
 * since the epoch (UTC); the order of events is (time_us, event_id).
 */
#define META_AUDIT_ID_LEN 32          /* event_id: 32 lowercase hex digits */
/* bytes of key: an S3 key has at most 1024 bytes, but one that is not UTF-8
 * reaches the store with each bad byte as U+FFFD (three bytes). */
#define META_AUDIT_KEY_MAX 3072
#define META_AUDIT_STR_MAX 256        /* bytes of every other string */
#define META_AUDIT_QUERY_MAX 1001     /* rows one query may ask for (a page of 1000 and one to see past it) */

typedef struct {
    const char *event_id;
    int64_t time_us;
    const char *request_id, *correlation_id, *principal, *user, *source_address, *action, *bucket, *key,
        *version_id, *outcome, *error_code;
    int status;
    int64_t bytes_in, bytes_out, duration_us;
} meta_audit_event;

/* What a query asks for: NULL or "" strings do not filter.  principal
 * matches the principal or the user column.  key_prefix matches keys that
 * begin with it.  Times: from_us <= time_us < to_us (0: unbounded).  After
 * (after_set): only events past (after_time_us, after_id) in the order. */
typedef struct {
    const char *correlation_id, *request_id, *principal, *action, *bucket, *key_prefix, *outcome;
    int64_t from_us, to_us;
    bool after_set;
    int64_t after_time_us;
    char after_id[META_AUDIT_ID_LEN + 1];
} meta_audit_filter;

/* Inserts n events (1 .. 10000) in one transaction, skipping those whose
 * event_id is stored already (a retried batch, or a repeat inside this one):
 * *inserted gets how many were new.  All or nothing: on any error none is
 * stored.  CAIRN_EINVAL for a malformed event (the caller validated it). */
int meta_audit_insert(meta_store *ms, const meta_audit_event *ev, int n, int *inserted);
/* Calls cb for at most limit (1 .. META_AUDIT_QUERY_MAX) events that match
 * f, in (time_us, event_id) order, after the rows are copied out and the
 * connection is given back; cb returns nonzero to stop.  *count gets how
 * many were delivered.  Served by an index whose order is the result's, so
 * a page costs what it returns (plus the rows a filter without an index of
 * its own skips). */
int meta_audit_query(meta_store *ms, const meta_audit_filter *f, int limit,
                     int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count);
/* Deletes at most limit (1 .. 100000) of the oldest events with time_us <
 * before_us, in one transaction; *deleted gets how many went (retention
 * calls it until fewer than limit go). */
int meta_audit_delete_before(meta_store *ms, int64_t before_us, int limit, int64_t *deleted);

/* ---- the audit outbox (docs/audit.md "The outbox") ----------------------------------- */

/*
 * A write's audit event, stored in the write's own transaction, so that the
 * write's commit makes its event durable too (no journal sync on its path):
 * a committed write never lacks its event, a failed one never has it.  The
 * shipper reads the rows, delivers them like journal records and deletes
 * them.  origin names the gateway that wrote the row (its journal's id):
 * each shipper takes its own rows, and another gateway's only once they are
 * older than its adoption age (a gateway gone for good).
 */
#define META_OUTBOX_ORIGIN_MAX 64     /* bytes of origin */
#define META_OUTBOX_EVENT_MAX 65536   /* bytes of one event's JSON */

typedef struct meta_audit_outbox_s {
    const char *origin;    /* 1 .. META_OUTBOX_ORIGIN_MAX bytes */
    const char *event;     /* the event's JSON (what the journal would hold), 1 .. META_OUTBOX_EVENT_MAX bytes, NUL at len */
    size_t len;
    int64_t time_ms;       /* when it was made */
} meta_audit_outbox;

typedef struct {
    int64_t id;            /* the row's id: rows are read in id order */
    int64_t time_ms;
    char *event;           /* malloc'd, NUL-terminated; freed by meta_outbox_rows_free */
    size_t len;
} meta_outbox_row;

/* At most limit (1 .. 10000) rows in id order whose origin is origin, or
 * whose time_ms < adopt_before_ms (anyone's, old), copied into *rows (n of
 * them; free with meta_outbox_rows_free). */
int meta_audit_outbox_read(meta_store *ms, const char *origin, int64_t adopt_before_ms, int limit,
                           meta_outbox_row **rows, int *n);
void meta_outbox_rows_free(meta_outbox_row *rows, int n);
/* Deletes the rows ids[0..n) (1 .. 10000; ids already gone are no error),
 * in one transaction. */
int meta_audit_outbox_delete(meta_store *ms, const int64_t *ids, int n);
/* origin's rows: how many, and the oldest one's time_ms (0: none). */
int meta_audit_outbox_count(meta_store *ms, const char *origin, int64_t *count, int64_t *oldest_ms);
/* For the backends: is this outbox row insertable (NULL is: none)? */
bool meta_audit_outbox_ok(const meta_audit_outbox *a);

/* ---- the key manager's keys (src/crypt/kms.h, docs/kms.md) ---------------------------- */

/*
 * A KMS key: an id, a state, and versions 1 .. n of key material, each
 * stored only sealed by the master key (META_KMS_SEALED bytes: kms.c seals
 * and opens them; meta never sees material).  Few rows: read by id.
 */
#define META_KMS_SEALED 60             /* crypt.h's CRYPT_WRAPPED, without including it */
#define META_KMS_ID_MAX 64             /* bytes of an id */
#define META_KMS_DESC_MAX 256          /* bytes of a description */

typedef struct {
    char id[META_KMS_ID_MAX + 1];
    bool enabled;
    char description[META_KMS_DESC_MAX + 1];
    int64_t created_ms;
    int version;                       /* the newest version (1 .. ) */
} meta_kms_key;

/* Creates key id, enabled, with version 1 sealed as given, in one
 * transaction.  CAIRN_EEXIST when the id is taken; CAIRN_EINVAL for an
 * empty or overlong id or description. */
int meta_kms_key_create(meta_store *ms, const char *id, const char *description,
                        const uint8_t sealed[META_KMS_SEALED], int64_t now_ms);
int meta_kms_key_get(meta_store *ms, const char *id, meta_kms_key *out);      /* ENOTFOUND */
/* Every key in id order; rows are copied out before cb runs (nonzero stops). */
int meta_kms_key_list(meta_store *ms, int (*cb)(void *ud, const meta_kms_key *k), void *ud);
int meta_kms_key_set_enabled(meta_store *ms, const char *id, bool enabled);   /* ENOTFOUND */
/* Adds version (a rotation: the newest + 1).  CAIRN_EEXIST when that
 * version exists already (a concurrent rotation won: read the key again),
 * CAIRN_ENOTFOUND without the key, CAIRN_EINVAL for version < 1. */
int meta_kms_version_add(meta_store *ms, const char *id, int version, const uint8_t sealed[META_KMS_SEALED],
                         int64_t now_ms);
/* The sealed material of one version.  CAIRN_ENOTFOUND. */
int meta_kms_version_get(meta_store *ms, const char *id, int version, uint8_t sealed[META_KMS_SEALED]);

/*
 * What a new master key needs re-sealed, in ONE write transaction (`cairn
 * admin kms rotate-master`): every KMS key version's material, every access
 * key's sealed secret and every notify target's sealed secret.  The
 * callbacks run inside the transaction, holding its connection (the one
 * exception to "Callbacks" above): they must not call meta, only open with
 * the old key and seal with the new.  material(ud, key id, version, old,
 * new) and secret(ud, what, name, old, out, cap) — what is "access_key" or
 * "notify_target"; the new sealed secret goes into out (cap bytes, NUL
 * terminated).  A nonzero return from either rolls everything back and is
 * the call's result.  *count (may be NULL) gets how many rows changed.
 */
typedef struct {
    int (*material)(void *ud, const char *key_id, int version, const uint8_t old[META_KMS_SEALED],
                    uint8_t out[META_KMS_SEALED]);
    int (*secret)(void *ud, const char *what, const char *name, const char *old, char *out, size_t cap);
    void *ud;
} meta_reseal;
int meta_master_reseal(meta_store *ms, const meta_reseal *r, int64_t *count);

/* Replaces an upload's stored headers while they are still exactly
 * expected (meta_object_set_headers_if's rule).  CAIRN_ENOTFOUND when the
 * upload is gone or its headers changed. */
int meta_upload_set_headers_if(meta_store *ms, const char *upload_id, const char *expected, const char *headers_json);

#endif
