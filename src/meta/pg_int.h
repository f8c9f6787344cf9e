/*
 * pg_int.h — what the files of the PostgreSQL backend share: the statement
 * ids, pooled connections, the store, the pool's counters and the helpers
 * every concern uses.  Not part of the meta interface: only files in
 * src/meta (and the metadata tests, for the pool's counters) include it.
 *
 * The backend is split like the SQLite one: pg_pool.c (connections and the
 * pool), pg.c (statements, parameters, errors, transactions, paged lists,
 * open and close, the table of operations), pg_users.c, pg_buckets.c,
 * pg_objects.c, pg_uploads.c, pg_cluster.c (nodes, placements, trash),
 * pg_jobs.c, pg_fsck.c and pg_migrations.c (the schema).  pg.c's opening
 * comment says how statements and transactions work, pg_pool.c's how
 * connections are handed out.
 *
 * Values travel in binary both ways: every parameter of every statement
 * carries an explicit cast ($1::int8, $2::bytea, $3::text) that matches the
 * pgp_* call binding it, and every column is read as raw bytes (pg_copy) or
 * a network-order integer (pg_int).
 */
#ifndef CAIRN_META_PG_INT_H
#define CAIRN_META_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "meta/meta.h"
#include "meta/meta_int.h"

#define PG_KEY_MAX 1024

typedef struct pg_store pg_store;

/* The backend's store behind the interface's (its first member). */
#define PG(ms) ((pg_store *)(ms))

typedef enum {
    PS_PING,
    PS_XACT_LOCK,
    PS_USER_INSERT,
    PS_USER_GET,
    PS_USER_GET_NAME,
    PS_USER_LIST,
    PS_USER_ROOT,
    PS_USER_RENAME,
    PS_KEY_INSERT,
    PS_KEY_GET,
    PS_KEY_LIST,
    PS_KEY_SET_ACTIVE,
    PS_NAME_LOCK,
    PS_BUCKET_INSERT,
    PS_BUCKET_GET,
    PS_BUCKET_EXISTS,
    PS_BUCKET_SHARE,
    PS_BUCKET_LOCK,
    PS_BUCKET_HAS_OBJECTS,
    PS_BUCKET_DELETE,
    PS_BUCKET_LIST,
    PS_BUCKET_LIST_PAGE,
    PS_BUCKET_SET_PUBLIC,
    PS_BUCKET_LOCK_UPLOADS,
    PS_BUCKET_TRASH_PARTS,
    PS_BUCKET_DROP_PARTS,
    PS_BUCKET_DROP_UPLOADS,
    PS_BUCKET_DROP_COMPLETED,
    PS_OBJ_GET,
    PS_OBJ_GET_DATA,
    PS_OBJ_LOCK,
    PS_OBJ_INSERT,
    PS_OBJ_UPDATE,
    PS_OBJ_GET_VERSION,
    PS_OBJ_GET_NULL,
    PS_OBJ_LOCK_VERSION,
    PS_OBJ_LOCK_NULL,
    PS_OBJ_NULL_NONCURRENT,
    PS_OBJ_DEMOTE,
    PS_OBJ_REMOVE,
    PS_OBJ_PROMOTE,
    PS_OBJ_SET_HEADERS,
    PS_OBJ_VLIST_KEY,
    PS_OBJ_VLIST_GT,
    PS_OBJ_VLIST_GE,
    PS_OBJ_VLIST_GT_UB,
    PS_OBJ_VLIST_GE_UB,
    PS_BUCKET_VERSIONING,
    PS_BUCKET_VERSIONING_LOCK,
    PS_BUCKET_SET_VERSIONING,
    PS_BUCKET_SET_OBJECT_LOCK,
    PS_DATA_INSERT,
    PS_DATA_DELETE,
    PS_OBJPARTS_TRASH,
    PS_OBJPARTS_DELETE,
    PS_OBJ_LIST_GT,
    PS_OBJ_LIST_GE,
    PS_OBJ_LIST_GT_UB,
    PS_OBJ_LIST_GE_UB,
    PS_OBJ_COUNT,
    PS_OBJ_SCAN,
    PS_VERSION_REFERENCED,
    PS_UPLOAD_INSERT,
    PS_UPLOAD_GET,
    PS_UPLOAD_LOCK,
    PS_UPLOAD_SHARE,
    PS_UPLOAD_LIST,
    PS_UPLOAD_OLDER,
    PS_UPLOAD_DELETE,
    PS_PART_LOCK,
    PS_PART_INSERT,
    PS_PART_UPDATE,
    PS_PART_LIST,
    PS_PARTS_DELETE,
    PS_OBJPART_INSERT,
    PS_OBJPART_LIST,
    PS_COMPLETED_INSERT,
    PS_COMPLETED_GET,
    PS_COMPLETED_PRUNE,
    PS_TRASH_LIST,
    PS_TRASH_DELETE,
    PS_PLACE_OBJECTS,
    PS_PLACE_OBJECT_PARTS,
    PS_PLACE_UPLOAD_PARTS,
    PS_PLACE_SET_OBJECT,
    PS_PLACE_SET_OBJECT_PART,
    PS_PLACE_SET_UPLOAD_PART,
    PS_PLACE_GET,
    PS_LAYOUT_REFS,
    PS_NODE_UPSERT,
    PS_NODE_LIST,
    PS_NODE_GET,
    PS_NODE_SET_STATE,
    PS_NODE_SEEN_OK,
    PS_NODE_SEEN_ERR,
    PS_JOB_INSERT,
    PS_JOB_BY_UNIQUE,
    PS_JOB_DROP_KEY,
    PS_JOB_PRUNE,
    PS_JOB_CLAIM,
    PS_JOB_GET,
    PS_JOB_FINISH,
    PS_JOB_RELEASE,
    PS_JOB_EXTEND,
    PS_JOB_CANCEL,
    PS_JOB_RETRY,
    PS_JOB_LIST,
    PS_JOB_COUNTS,
    PS_JOB_NOTIFY,
    PS_LEASE_ACQUIRE,
    PS_LEASE_RELEASE,
    PS_LEASE_GET,
    PS_AUDIT_INSERT,
    PS_OUTBOX_INSERT,
    PS_USER_SET_AUDIT,
    PS_NOTIFY_TARGET_ADD,
    PS_NOTIFY_TARGET_GET,
    PS_NOTIFY_TARGET_LIST,
    PS_NOTIFY_TARGET_REMOVE,
    PS_BUCKET_NOTIFY_GET,
    PS_BUCKET_NOTIFY_PUT,
    PS_BUCKET_NOTIFY_DELETE,
    PS_BUCKET_CONFIG_GET,
    PS_BUCKET_CONFIG_PUT,
    PS_BUCKET_CONFIG_DELETE,
    PS_BUCKET_CONFIG_DROP,
    PS_LIMIT_SET,
    PS_LIMIT_LIST,
    PS_LIMIT_REMOVE,
    PS_BUCKET_LIMIT_DROP,
    PS_JOB_PENDING_COUNT,
    PS_KMS_KEY_INSERT,
    PS_KMS_KEY_GET,
    PS_KMS_KEY_LIST,
    PS_KMS_KEY_SET_ENABLED,
    PS_KMS_VERSION_INSERT,
    PS_KMS_VERSION_GET,
    PS_KMS_VERSION_ALL,
    PS_KMS_VERSION_SET,
    PS_KEY_SECRETS,
    PS_KEY_SET_SECRET,
    PS_NOTIFY_SECRETS,
    PS_NOTIFY_SET_SECRET,
    PS_UPLOAD_SET_HEADERS,
    PS__COUNT
} pg_stmt_id;

/* One pooled connection.  While it is checked out only its holder touches
 * it; in the idle list only the pool (under its mutex) does. */
typedef struct pg_conn {
    PGconn *db;
    pg_store *owner;          /* its pool, for the error counter */
    bool prepared[PS__COUNT]; /* statements prepared on this connection so far */
    bool broken;              /* a connection-level error: closed when released */
    bool unbounded;           /* pg_no_timeout ran: no answer deadline until released */
    char xid[24];             /* the open transaction's id (pg_tx_begin), for a lost COMMIT */
    int64_t born_ns, expires_ns, idle_since_ns, acquired_ns; /* time_mono_ns; expires 0 = never */
    const char *func;         /* the call site holding it (long-hold log) */
    int line;
    struct pg_conn *next;     /* the idle list */
} pg_conn;

/* The pool's counters and gauges: the interface's (meta.h). */
typedef meta_pool_stats pg_pool_stats;

struct pg_store {
    meta_store base;          /* ops = &pg_ops */
    char *conninfo;           /* the URL as given: never logged (it may hold a password) */
    meta_pg_options opt;
    pthread_mutex_t mu;       /* guards everything below */
    pthread_cond_t cv;        /* a connection came back, or a slot opened */
    pthread_cond_t maint_cv;  /* wakes the maintenance thread (close) */
    pg_conn *idle;            /* most recently returned first */
    int nidle, nopen, nbusy;
    bool closing, maint_running, down_logged;
    pthread_t maint;
    pg_pool_stats st;
};

/* ---- the pool (pg_pool.c) ------------------------------------------------- */

/* Validates o (CAIRN_EINVAL with why). */
int pg_options_check(const meta_pg_options *o, char *why, size_t whylen);
/* Opens the first connection (and up to min_conns); on failure why gets
 * libpq's message: CAIRN_EIO. */
int pg_pool_start(pg_store *ms, char *why, size_t whylen);
/* Stops the maintenance thread and closes every connection; every
 * connection must be back. */
void pg_pool_stop(pg_store *ms);
/* Checks a connection out: an idle one (health-checked, replaced when
 * broken or past its lifetime) or a new one while fewer than max_conns are
 * open; else waits up to acquire_timeout_ms.  CAIRN_EBUSY when none came,
 * CAIRN_EIO when one could not be opened.  Thread-safe. */
int pg_acquire_at(pg_store *ms, pg_conn **out, const char *func, int line);
#define pg_acquire(ms, out) pg_acquire_at((ms), (out), __func__, __LINE__)
/* Opens a connection outside the pool, for a caller that keeps it (the job
 * listener): statement_timeout set, application_name app.  Not counted in
 * the pool's figures.  CAIRN_EIO with why (libpq's reason) when it cannot
 * be made; the caller frees it with pg_conn_close. */
int pg_conn_open_own(pg_store *ms, const char *app, pg_conn **out, char *why, size_t whylen);
void pg_conn_close(pg_conn *c);
/* Gives it back (closing it if it broke or outlived its lifetime). */
void pg_release(pg_store *ms, pg_conn *c);
/* The pool's counters, for metrics and tests (the pool_stats operation):
 * 0, or CAIRN_EINVAL (out zeroed) for a store of another backend.
 * Thread-safe. */
int pg_pool_stats_get(meta_store *ms, pg_pool_stats *out);

/* ---- statements, values and errors (pg.c) --------------------------------- */

#define PG_PARAMS_MAX 20

/* A statement's parameters, all in binary: pgp_* appends the next one. */
typedef struct {
    int n;
    const char *values[PG_PARAMS_MAX];
    int lengths[PG_PARAMS_MAX];
    int formats[PG_PARAMS_MAX];
    char ints[PG_PARAMS_MAX][8];
} pg_params;

void pgp_int(pg_params *p, int64_t v);                   /* $n::int8 */
void pgp_bool(pg_params *p, bool v);                     /* $n::bool */
void pgp_text(pg_params *p, const char *s);              /* $n::text (NULL = "") */
void pgp_text_max(pg_params *p, const char *s, size_t max); /* at most max - 1 bytes, cut at a UTF-8 boundary */
void pgp_bytes(pg_params *p, const void *s, size_t n);   /* $n::bytea */
void pgp_bytes_max(pg_params *p, const char *s, size_t max); /* bytea of s, cut like pgp_text_max */
void pgp_null(pg_params *p);

/* A failed result as a CAIRN_E* code (SQLSTATE mapped), logged unless it is
 * an expected outcome (EEXIST, ENOTFOUND); a connection-level failure marks
 * c broken. */
int pg_fail(pg_conn *c, const PGresult *res, const char *op);
/* Runs statement id (prepared on c at first use) with p (may be NULL).
 * Rows: *out gets the result (caller PQclears; may be NULL to discard);
 * *changes (may be NULL) gets the rows changed. */
int pg_run(pg_conn *c, pg_stmt_id id, const pg_params *p, PGresult **out, int64_t *changes, const char *op);
/* Every statement waits for its answer at most statement_timeout_ms plus
 * this (the server cancels at statement_timeout_ms; the margin is for the
 * round trip), unless pg_no_timeout ran: a server that stops answering
 * without closing the connection (stopped, partitioned) costs a call that
 * long, never forever.  Past it the connection is dropped: CAIRN_EIO, as
 * for a lost one (a COMMIT's outcome is then unknown). */
#define PG_ANSWER_MARGIN_MS 2000
/* Sends sql (no parameters) and waits for its answer until deadline_ns
 * (time_mono_ns; 0 = no limit).  Returns the result (the first error, else
 * the last result; NULL when nothing came), or NULL with *late set when the
 * deadline passed: the connection is then unusable, and set nonblocking so
 * closing it waits on nothing.  For the pool's own round trips. */
PGresult *pg_exec_until(pg_conn *c, const char *sql, int64_t deadline_ns, bool *late);
/* Runs SQL text without parameters (BEGIN, SAVEPOINT, DDL...). */
int pg_exec_sql(pg_conn *c, const char *sql, const char *op);
/* Runs SQL text with parameters (binary), not prepared (fsck's queries). */
int pg_run_sql(pg_conn *c, const char *sql, const pg_params *p, PGresult **out, int64_t *changes, const char *op);

/* Columns of a binary result. */
int64_t pg_int(const PGresult *r, int row, int col);     /* int2/int4/int8/bool; NULL = 0 */
bool pg_bool(const PGresult *r, int row, int col);
/* Copies a text or bytea column into dst (NUL-terminated); CAIRN_EDB when
 * it would not fit (inputs are checked on the way in: a foreign row). */
int pg_copy(const PGresult *r, int row, int col, char *dst, size_t cap);
/* A malloc'd NUL-terminated copy of a column (NULL column: dflt). */
char *pg_strdup(const PGresult *r, int row, int col, const char *dflt);

/* Calls with one connection: acquire, run, release.  *out as in pg_run. */
int pg_read_at(pg_store *ms, pg_stmt_id id, const pg_params *p, PGresult **out, int64_t *changes, const char *op,
               const char *func, int line);
#define pg_read(ms, id, p, out, changes, op) pg_read_at((ms), (id), (p), (out), (changes), (op), __func__, __LINE__)

/* pg_read for the whole-table scans of operator tools (layout references,
 * counts): in a transaction without the statement timeout, which is meant
 * for request paths, not for a scan of every row. */
int pg_read_unbounded_at(pg_store *ms, pg_stmt_id id, const pg_params *p, PGresult **out, const char *op,
                         const char *func, int line);
#define pg_read_unbounded(ms, id, p, out, op) pg_read_unbounded_at((ms), (id), (p), (out), (op), __func__, __LINE__)
/* Inside a transaction: lifts statement_timeout until it ends (scans,
 * migrations, which may also wait for another migrator's lock). */
int pg_no_timeout(pg_conn *c);

/* Write transactions: a connection and BEGIN; pg_tx_end commits when err is
 * 0, else rolls back, gives the connection back and returns the outcome. */
int pg_tx_begin_at(pg_store *ms, pg_conn **out, const char *func, int line);
#define pg_tx_begin(ms, out) pg_tx_begin_at((ms), (out), __func__, __LINE__)
int pg_tx_end(pg_store *ms, pg_conn *c, int err);
/* SAVEPOINT / ROLLBACK TO / RELEASE around one item of a batch: after the
 * item, the transaction is usable again or the batch must fail. */
int pg_savepoint(pg_conn *c);
int pg_savepoint_end(pg_conn *c, bool rollback);

/* Paged list calls: the same contract as sq_pager (sqlite_int.h).  query
 * runs the batch after `after` (NULL for the first) of at most fetch rows;
 * the connection is back in the pool before copy and deliver run. */
typedef struct {
    size_t row_size;
    int (*query)(pg_conn *c, void *ctx, const void *after, int fetch, PGresult **res);
    int (*copy)(const PGresult *r, int row, void *out);
    int (*deliver)(void *ctx, const void *row);
    void (*clear)(void *row);
} pg_pager;
int pg_page_rows(pg_store *ms, const pg_pager *p, void *ctx, int limit, bool *more, const char *op);

/* Copies every row of r with copy into a malloc'd array (*rows, *n), or
 * none on error: the non-paged lists copy whole, then deliver. */
int pg_rows(const PGresult *r, size_t row_size, int (*copy)(const PGresult *, int, void *), void (*clear)(void *),
            void **rows, int *n);

/* Argument checks shared with the SQLite backend (its files define them). */
bool sq_name_ok(const char *s, size_t cap);
bool sq_key_ok(const char *key, size_t key_len);
int sq_obj_validate(const meta_object *o);
bool sq_obj_cond_holds(const meta_object *obj, const meta_object *cur);

/* Shared writes and reads (the file named). */
int pg_bucket_lookup(pg_conn *c, pg_stmt_id id, const char *name, int64_t want_id, int64_t *owner, int64_t *bid); /* buckets */
int pg_object_put_tx(pg_conn *c, const meta_object *obj, meta_object *old, bool *had_old); /* objects */
int pg_jobs_insert_tx(pg_conn *c, const meta_job *jobs, int n);                      /* jobs */
int pg_notify_target_add(meta_store *base_, const meta_notify_target *t);
int pg_notify_target_get(meta_store *base_, const char *name, meta_notify_target *out);
int pg_notify_target_list(meta_store *base_, int (*cb)(void *ud, const meta_notify_target *t), void *ud);
int pg_notify_target_remove(meta_store *base_, const char *name);
int pg_limit_set(meta_store *base_, const meta_limit *l);
int pg_limit_list(meta_store *base_, int (*cb)(void *ud, const meta_limit *l), void *ud);
int pg_limit_remove(meta_store *base_, const char *scope, const char *name);
int pg_bucket_notification_get(meta_store *base_, int64_t bucket_id, char **config);
int pg_bucket_notification_put(meta_store *base_, int64_t bucket_id, const char *config);
int pg_bucket_config_get(meta_store *base_, int64_t bucket_id, const char *kind, char **body);
int pg_bucket_config_put(meta_store *base_, const char *bucket, int64_t bucket_id, const char *kind, const char *body);
int pg_job_pending_count(meta_store *base_, const char *kind, const char *needle, int64_t before_id, int64_t *n);
int pg_row_upload(const PGresult *r, int row, void *out);                             /* uploads */
int pg_upload_take(pg_conn *c, const char *upload_id, meta_part **parts, int *n);     /* uploads */

/* ---- open, migrations ----------------------------------------------------- */

/* The PostgreSQL backend's table of operations (pg.c). */
extern const meta_ops pg_ops;

/* Opens a store on conninfo (meta_open_url), migrating up when migrate. */
int pg_open(const char *conninfo, const meta_pg_options *opt, bool migrate, meta_store **out, char *why,
            size_t whylen);
/* Migrates up to the latest version, refusing a newer schema (CAIRN_EDB). */
int pg_migrate_up_to_latest(pg_store *ms, char *why, size_t whylen);
/* The PostgreSQL migrations (pg_migrations.c). */
extern const meta_migration_set pg_migration_set;
/* The number of PostgreSQL migrations: always meta_schema_latest(). */
int pg_schema_latest(void);

/* The operations, as meta_int.h lists them. */
void pg_close(meta_store *base_);
int pg_user_set_audit(meta_store *base_, const char *name, bool audit);
int pg_audit_insert(meta_store *base_, const meta_audit_event *ev, int n, int *inserted);
int pg_audit_query(meta_store *base_, const meta_audit_filter *f, int limit,
                   int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count);
int pg_audit_delete_before(meta_store *base_, int64_t before_us, int limit, int64_t *deleted);
/* Inside a transaction: the write's audit event into the outbox (NULL: none). */
int pg_outbox_insert_tx(pg_conn *c, const meta_audit_outbox *a);
int pg_audit_outbox_read(meta_store *base_, const char *origin, int64_t adopt_before_ms, int limit,
                         meta_outbox_row **rows, int *n);
int pg_audit_outbox_delete(meta_store *base_, const int64_t *ids, int n);
int pg_audit_outbox_count(meta_store *base_, const char *origin, int64_t *count, int64_t *oldest_ms);
int pg_ping(meta_store *base_);
int pg_schema_version(meta_store *base_, int *version);
int pg_migrate(meta_store *base_, int target, char *why, size_t whylen);
int pg_migration_rows(meta_store *base_, meta_migration_row **rows, int *n);
int pg_user_create(meta_store *base_, meta_user *u);
int pg_user_ensure_root(meta_store *base_, const char *name, meta_user *out);
int pg_user_get(meta_store *base_, int64_t id, meta_user *out);
int pg_user_get_by_name(meta_store *base_, const char *name, meta_user *out);
int pg_user_list(meta_store *base_, int (*cb)(void *ud, const meta_user *u), void *ud);
int pg_key_create(meta_store *base_, const meta_key *k);
int pg_key_get(meta_store *base_, const char *access_key, meta_key *out);
int pg_key_list(meta_store *base_, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud);
int pg_key_set_active(meta_store *base_, const char *access_key, bool active);
int pg_bucket_create(meta_store *base_, meta_bucket *b, int64_t *existing_owner);
int pg_bucket_get(meta_store *base_, const char *name, meta_bucket *out);
int pg_bucket_delete(meta_store *base_, const char *name, int64_t id);
int pg_bucket_list(meta_store *base_, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud);
int pg_bucket_list_page(meta_store *base_, int64_t owner_id, const char *after, const char *lo, const char *hi, int limit,
                       int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more);
int pg_bucket_set_public(meta_store *base_, const char *name, bool public_read);
int pg_object_put(meta_store *base_, const meta_object *obj, meta_object *replaced, bool *had_replaced);
int pg_object_get(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, bool with_data, meta_object *out);
int pg_object_delete(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                     const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                     const meta_job *jobs, int njobs, const meta_audit_outbox *audit, meta_delete_result *res);
int pg_object_get_version(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, bool with_data, meta_object *out);
int pg_object_list_versions(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix,
                            size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                            int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more);
int pg_bucket_set_versioning(meta_store *base_, const char *name, int64_t bucket_id, meta_versioning state);
int pg_bucket_enable_object_lock(meta_store *base_, const char *name, int64_t bucket_id);
int pg_object_set_headers(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, const char *expected, const char *headers_json);
/* The versioning of a bucket, by PS_BUCKET_VERSIONING (FOR KEY SHARE) or
 * PS_BUCKET_VERSIONING_LOCK; want_id as in pg_bucket_lookup. */
int pg_bucket_versioning(pg_conn *c, pg_stmt_id id, const char *name, int64_t want_id, meta_versioning *state,
                         bool *object_lock);
int pg_object_delete_many(meta_store *base_, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n);
int pg_object_list(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *from, size_t from_len, bool inclusive, int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more);
int pg_object_scan(meta_store *base_, const char *after_bucket, const char *after_key, size_t after_key_len, int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more);
int pg_placement_scan(meta_store *base_, meta_place_cursor *cur, int limit, int (*cb)(void *ud, const meta_placement *p), void *ud);
int pg_placement_set_layout(meta_store *base_, const char *version_id, const char *old_layout, const char *new_layout);
int pg_layout_refs(meta_store *base_, const char *id, int64_t *count);
int pg_placement_get(meta_store *base_, const char *version_id, meta_placement *out);
int pg_check(meta_store *base_, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total);
int pg_repair(meta_store *base_, const meta_problem *p, void (*drop)(void *ud, const char *version_id, const char *layout), void *ud);
int pg_upload_create(meta_store *base_, const meta_upload *u);
int pg_upload_get(meta_store *base_, const char *upload_id, meta_upload *out);
int pg_upload_list(meta_store *base_, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more);
int pg_part_put(meta_store *base_, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced);
int pg_part_list(meta_store *base_, const char *upload_id, int after, int limit, int (*cb)(void *ud, const meta_part *p), void *ud, bool *more);
int pg_upload_complete(meta_store *base_, const char *upload_id, const meta_object *obj, const meta_part *parts, int n, meta_object *replaced, bool *had_replaced, void (*unused)(void *ud, const meta_part *p), void *ud);
int pg_upload_abort(meta_store *base_, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud);
int pg_object_parts(meta_store *base_, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud);
int pg_upload_completed_get(meta_store *base_, const char *upload_id, meta_completed_upload *out);
int pg_upload_completed_prune(meta_store *base_, int64_t before_ms, int limit, int64_t *deleted);
int pg_trash_list(meta_store *base_, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud);
int pg_trash_remove(meta_store *base_, const char *const *version_ids, int n);
int pg_job_enqueue(meta_store *base_, const meta_job *j, int64_t *id);
int pg_job_claim(meta_store *base_, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out);
int pg_job_finish(meta_store *base_, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error);
int pg_job_finish_claim(meta_store *base_, const char *kinds, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next);
int pg_job_release(meta_store *base_, int64_t id, const char *owner, int64_t run_at_ms);
int pg_job_extend(meta_store *base_, int64_t id, const char *owner, int64_t lease_expires_ms);
int pg_job_cancel(meta_store *base_, int64_t id);
int pg_job_retry(meta_store *base_, int64_t id);
int pg_job_get(meta_store *base_, int64_t id, meta_job *out);
int pg_job_list(meta_store *base_, const char *state, const char *kind, int limit, int (*cb)(void *ud, const meta_job *j), void *ud);
int pg_job_prune(meta_store *base_, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted);
int pg_job_counts(meta_store *base_, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud);
int pg_upload_list_older(meta_store *base_, int64_t before_ms, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud);
int pg_node_upsert(meta_store *base_, const char *id, const char *url);
int pg_node_list(meta_store *base_, int (*cb)(void *ud, const meta_node *n), void *ud);
int pg_node_get(meta_store *base_, const char *id_or_url, meta_node *out);
int pg_node_set_state(meta_store *base_, const char *id, const char *state);
int pg_node_seen(meta_store *base_, const char *id, bool ok, const char *error);
int pg_version_referenced(meta_store *base_, const char *version_id, bool *referenced);
int pg_object_count(meta_store *base_, const char *bucket, int64_t *count);
int pg_lease_acquire(meta_store *base_, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms, bool *held);
int pg_lease_release(meta_store *base_, const char *name, const char *holder);
int pg_lease_get(meta_store *base_, const char *name, meta_lease *out);
int pg_job_listener_open(meta_store *base_, meta_listener **out);
int pg_kms_key_create(meta_store *base_, const char *id, const char *description, const uint8_t *sealed, int64_t now_ms);
int pg_kms_key_get(meta_store *base_, const char *id, meta_kms_key *out);
int pg_kms_key_list(meta_store *base_, int (*cb)(void *ud, const meta_kms_key *k), void *ud);
int pg_kms_key_set_enabled(meta_store *base_, const char *id, bool enabled);
int pg_kms_version_add(meta_store *base_, const char *id, int version, const uint8_t *sealed, int64_t now_ms);
int pg_kms_version_get(meta_store *base_, const char *id, int version, uint8_t *sealed);
int pg_master_reseal(meta_store *base_, const meta_reseal *r, int64_t *count);
int pg_upload_set_headers_if(meta_store *base_, const char *upload_id, const char *expected, const char *headers_json);

#endif
