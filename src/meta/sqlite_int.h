/*
 * sqlite_int.h — what the files of the SQLite backend share: the statement
 * ids, connections, the store, and the helpers every concern uses.  Not part
 * of the meta interface: only files in src/meta include it.
 *
 * The backend is split by concern: sqlite.c (statements, connections, the
 * group of write helpers, open and close, the table of operations),
 * sqlite_users.c, sqlite_buckets.c, sqlite_objects.c, sqlite_uploads.c,
 * sqlite_cluster.c (nodes, placements, trash), sqlite_jobs.c, sqlite_fsck.c,
 * and migrations.c (the schema).  sqlite.c's opening comment says how
 * connections, statements and transactions work.
 *
 * Migrations run DDL on the single writer connection, so they borrow it
 * through a lock/unlock pair exactly like the write calls do; that keeps
 * every write in the process serialized on one mutex.
 */
#ifndef CAIRN_META_SQLITE_INT_H
#define CAIRN_META_SQLITE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>

#include "meta/meta.h"
#include "meta/meta_int.h"

#define KEY_MAX 1024

typedef struct sq_store sq_store;

/* The backend's store behind the interface's (its first member). */
#define SQ(ms) ((sq_store *)(ms))

typedef enum {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PING,
    ST_USER_INSERT,
    ST_USER_GET,
    ST_USER_GET_NAME,
    ST_USER_LIST,
    ST_USER_ROOT,
    ST_USER_RENAME,
    ST_KEY_INSERT,
    ST_KEY_GET,
    ST_KEY_LIST,
    ST_KEY_SET_ACTIVE,
    ST_BUCKET_INSERT,
    ST_BUCKET_GET,
    ST_BUCKET_EXISTS,
    ST_BUCKET_HAS_OBJECTS,
    ST_BUCKET_DELETE,
    ST_BUCKET_LIST,
    ST_BUCKET_LIST_PAGE,
    ST_BUCKET_SET_PUBLIC,
    ST_OBJ_GET,
    ST_VERSION_REFERENCED,
    ST_OBJ_SCAN,
    ST_JOB_INSERT,
    ST_OUTBOX_INSERT,
    ST_JOB_BY_UNIQUE,
    ST_JOB_DROP_KEY,
    ST_JOB_PRUNE,
    ST_JOB_NEXT,
    ST_JOB_TAKE,
    ST_JOB_GET,
    ST_JOB_FINISH,
    ST_JOB_RELEASE,
    ST_JOB_EXTEND,
    ST_JOB_CANCEL,
    ST_JOB_RETRY,
    ST_JOB_LIST,
    ST_JOB_COUNTS,
    ST_UPLOAD_OLDER,
    ST_UPLOAD_INSERT,
    ST_UPLOAD_GET,
    ST_UPLOAD_LIST,
    ST_PART_UPSERT,
    ST_PART_GET,
    ST_PART_LIST,
    ST_UPLOAD_DELETE,
    ST_PARTS_DELETE,
    ST_OBJPART_INSERT,
    ST_OBJPART_LIST,
    ST_OBJPARTS_DELETE,
    ST_LAYOUT_REFS,
    ST_NODE_UPSERT,
    ST_NODE_LIST,
    ST_NODE_GET,
    ST_NODE_SET_STATE,
    ST_NODE_SEEN_OK,
    ST_NODE_SEEN_ERR,
    ST_OBJ_GET_DATA,
    ST_OBJ_INSERT,
    ST_OBJ_REPLACE,
    ST_OBJ_GET_VERSION,
    ST_OBJ_GET_NULL,
    ST_OBJ_NULL_NONCURRENT,
    ST_OBJ_DEMOTE,
    ST_OBJ_REMOVE,
    ST_OBJ_PROMOTE,
    ST_OBJ_SET_HEADERS,
    ST_OBJ_VLIST_KEY,
    ST_OBJ_VLIST_GT,
    ST_OBJ_VLIST_GE,
    ST_OBJ_VLIST_GT_UB,
    ST_OBJ_VLIST_GE_UB,
    ST_BUCKET_SET_VERSIONING,
    ST_BUCKET_SET_OBJECT_LOCK,
    ST_DATA_INSERT,
    ST_DATA_DELETE,
    ST_OBJ_LIST_GT,
    ST_OBJ_LIST_GE,
    ST_OBJ_LIST_GT_UB,
    ST_OBJ_LIST_GE_UB,
    ST_OBJ_COUNT,
    ST_BUCKET_TRASH_PARTS,
    ST_BUCKET_DROP_PARTS,
    ST_BUCKET_DROP_UPLOADS,
    ST_BUCKET_DROP_COMPLETED,
    ST_COMPLETED_INSERT,
    ST_COMPLETED_GET,
    ST_COMPLETED_PRUNE,
    ST_TRASH_LIST,
    ST_TRASH_DELETE,
    ST_PLACE_OBJECTS,
    ST_PLACE_OBJECT_PARTS,
    ST_PLACE_UPLOAD_PARTS,
    ST_PLACE_SET_OBJECT,
    ST_PLACE_SET_OBJECT_PART,
    ST_PLACE_SET_UPLOAD_PART,
    ST_PLACE_GET,
    ST_OBJPARTS_TRASH,
    ST_LEASE_ACQUIRE,
    ST_LEASE_RELEASE,
    ST_LEASE_GET,
    ST_NOTIFY_TARGET_ADD,
    ST_NOTIFY_TARGET_GET,
    ST_NOTIFY_TARGET_LIST,
    ST_NOTIFY_TARGET_REMOVE,
    ST_BUCKET_NOTIFY_GET,
    ST_BUCKET_NOTIFY_PUT,
    ST_BUCKET_NOTIFY_DELETE,
    ST_BUCKET_CONFIG_GET,
    ST_BUCKET_CONFIG_PUT,
    ST_BUCKET_CONFIG_DELETE,
    ST_BUCKET_CONFIG_DROP,
    ST_LIMIT_SET,
    ST_LIMIT_LIST,
    ST_LIMIT_REMOVE,
    ST_BUCKET_LIMIT_DROP,
    ST_JOB_PENDING_COUNT,
    ST_KMS_KEY_INSERT,
    ST_KMS_KEY_GET,
    ST_KMS_KEY_LIST,
    ST_KMS_KEY_SET_ENABLED,
    ST_KMS_VERSION_INSERT,
    ST_KMS_VERSION_GET,
    ST_KMS_VERSION_ALL,
    ST_KMS_VERSION_SET,
    ST_KEY_SECRETS,
    ST_KEY_SET_SECRET,
    ST_NOTIFY_SECRETS,
    ST_NOTIFY_SET_SECRET,
    ST_UPLOAD_SET_HEADERS,
    ST__COUNT
} stmt_id;

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
} conn;

/* One object put waiting for the group commit (see meta_object_put). */
typedef struct put_req {
    const meta_object *obj;
    meta_object old;
    bool had_old;
    int err;
    bool done;
    struct put_req *next;
} put_req;

struct sq_store {
    meta_store base;       /* ops = &sq_ops */
    pthread_mutex_t gmu;   /* guards the group-commit queue below */
    pthread_cond_t gcv;    /* signalled when a batch has committed */
    put_req *qhead, *qtail;
    bool leader;           /* a thread is committing a batch */
    pthread_mutex_t wmu;   /* serializes every use of writer */
    conn writer;
    pthread_mutex_t rmu;   /* guards idle/nidle */
    pthread_cond_t rcv;    /* signalled when a reader is returned */
    conn *readers;
    conn **idle;
    int nreaders;
    int nidle;
};

/* List calls collect rows first and call back after the connection is
 * returned, so a callback may safely call into meta again. */
typedef struct {
    void *items;
    size_t n, cap, size;
} vec;

/* A list call that hands rows to a callback: rows are copied out of the
 * statement in batches, and each batch reaches the callback only after the
 * connection is back in the pool, so no callback ever holds one (and may
 * call into meta again).  The batch after the first starts after the last
 * row of the one before (keyset pagination), so a walk costs O(rows). */
typedef struct {
    size_t row_size;
    /* Prepares and binds *st for at most fetch rows, after the row `after`
     * (a copy of the last row of the batch before; NULL for the first). */
    int (*prepare)(conn *c, void *ctx, const void *after, int fetch, sqlite3_stmt **st);
    /* Copies the current row of st into row (row_size bytes). */
    int (*copy)(sqlite3_stmt *st, void *row);
    /* Hands one row to the caller's callback; nonzero stops the list. */
    int (*deliver)(void *ctx, const void *row);
    /* Frees what copy allocated in row, after delivery (may be NULL).  The
     * copy kept as `after` must need only the row's own bytes. */
    void (*clear)(void *row);
} sq_pager;

/* Runs a paged list of at most limit rows; *more (may be NULL) is set when
 * rows beyond limit exist (meaningless if the callback stopped early).
 * Holds at most META_PAGE_MAX rows (meta_int.h) at a time. */
int sq_page_rows(sq_store *ms, const sq_pager *p, void *ctx, int limit, bool *more, const char *op);

/* The SQLite backend's table of operations (sqlite.c). */
extern const meta_ops sq_ops;

/* Opens (creating if needed) the database at path in WAL mode and, when
 * migrate is true, migrates it to the latest schema (meta_open).  When a
 * migration fails, why (may be NULL) says which and why. */
int sq_open(const char *path, const meta_options *opt, bool migrate, meta_store **out, char *why, size_t whylen);

/* Locks the writer mutex and returns the writer connection (never NULL). */
sqlite3 *meta_sqlite_writer_lock(sq_store *ms);
void meta_sqlite_writer_unlock(sq_store *ms);

/* Migrates up to the latest version, refusing (CAIRN_EDB, logged) when the
 * database carries a newer schema than this binary knows: opening with an
 * old binary must never run down-migrations and drop data.  (migrations.c) */
int meta_migrate_up_to_latest(sq_store *ms, char *why, size_t whylen);
/* The SQLite migrations (migrations.c). */
extern const meta_migration_set sq_migration_set;

/* Makes the fault-injection VFS the default (fault build; else a no-op).
 * (fault_vfs.c) */
void meta_fault_vfs_install(void);

/* ---- helpers (each file's comment at its definition says more) ---------- */

/* Errors (sqlite.c): a SQLite result as a CAIRN_E* code; a failure logged. */
int sq_map_rc(int rc);
int sq_db_fail(const conn *c, int rc, const char *op);

/* Statements (sqlite.c): prepared once per connection; bind, step, reset. */
sqlite3_stmt *sq_stmt(conn *c, stmt_id id);
void sq_stmt_done(sqlite3_stmt *st);
int sq_bind_result(conn *c, int bind_rc, const char *op);
int sq_stmt_exec_bound(conn *c, sqlite3_stmt *st, int bind_rc, const char *op);
int sq_bind_str(sqlite3_stmt *st, int i, const char *s);
int sq_bind_str_max(sqlite3_stmt *st, int i, const char *s, size_t max);
int sq_bind_bytes_text(sqlite3_stmt *st, int i, const char *s, size_t n);
int sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap);

/* Connections and write transactions (sqlite.c). */
conn *sq_reader_get(sq_store *ms);
void sq_reader_put(sq_store *ms, conn *c);
int sq_wtx_begin(sq_store *ms, conn **out);
int sq_wtx_end(sq_store *ms, int err);
void *sq_vec_push(vec *v);

/* Argument checks and shared writes (the file named). */
bool sq_name_ok(const char *s, size_t cap);                                   /* users */
int sq_update_one(sq_store *ms, stmt_id id, const char *name, int value, const char *op); /* users */
int sq_bucket_lookup(conn *c, const char *name, int64_t want_id, int64_t *owner, int64_t *id); /* buckets */
bool sq_key_ok(const char *key, size_t key_len);                              /* objects */
int sq_obj_validate(const meta_object *o);
/* Whether obj->cond holds with cur the key's current version (NULL: none). */
bool sq_obj_cond_holds(const meta_object *obj, const meta_object *cur);                                    /* objects */
int sq_object_put_tx(conn *w, const meta_object *obj, meta_object *old, bool *had_old); /* objects */
int sq_jobs_insert_tx(conn *w, const meta_job *jobs, int n);                   /* jobs */
int sq_notify_target_add(meta_store *base_, const meta_notify_target *t);
int sq_notify_target_get(meta_store *base_, const char *name, meta_notify_target *out);
int sq_notify_target_list(meta_store *base_, int (*cb)(void *ud, const meta_notify_target *t), void *ud);
int sq_notify_target_remove(meta_store *base_, const char *name);
int sq_limit_set(meta_store *base_, const meta_limit *l);
int sq_limit_list(meta_store *base_, int (*cb)(void *ud, const meta_limit *l), void *ud);
int sq_limit_remove(meta_store *base_, const char *scope, const char *name);
int sq_bucket_notification_get(meta_store *base_, int64_t bucket_id, char **config);
int sq_bucket_notification_put(meta_store *base_, int64_t bucket_id, const char *config);
int sq_bucket_config_get(meta_store *base_, int64_t bucket_id, const char *kind, char **body);
int sq_bucket_config_put(meta_store *base_, const char *bucket, int64_t bucket_id, const char *kind, const char *body);
int sq_job_pending_count(meta_store *base_, const char *kind, const char *needle, int64_t before_id, int64_t *n);
int sq_write_one(sq_store *ms, stmt_id id, int (*bind)(sqlite3_stmt *, const void *), const void *args,
                 int *changes, const char *op);                               /* cluster */
int sq_exec_id(conn *w, stmt_id id, const char *text, const char *op);        /* uploads */
int sq_row_upload(sqlite3_stmt *st, meta_upload *u);                          /* uploads */

/* The operations, as meta_int.h lists them. */
void sq_close(meta_store *base_);
int sq_ping(meta_store *base_);
int sq_schema_version(meta_store *base_, int *version);
int sq_migrate(meta_store *base_, int target, char *why, size_t whylen);
int sq_migration_rows(meta_store *base_, meta_migration_row **rows, int *n);
int sq_user_create(meta_store *base_, meta_user *u);
int sq_user_ensure_root(meta_store *base_, const char *name, meta_user *out);
int sq_user_get(meta_store *base_, int64_t id, meta_user *out);
int sq_user_get_by_name(meta_store *base_, const char *name, meta_user *out);
int sq_user_list(meta_store *base_, int (*cb)(void *ud, const meta_user *u), void *ud);
int sq_key_create(meta_store *base_, const meta_key *k);
int sq_key_get(meta_store *base_, const char *access_key, meta_key *out);
int sq_key_list(meta_store *base_, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud);
int sq_key_set_active(meta_store *base_, const char *access_key, bool active);
int sq_bucket_create(meta_store *base_, meta_bucket *b, int64_t *existing_owner);
int sq_bucket_get(meta_store *base_, const char *name, meta_bucket *out);
int sq_bucket_delete(meta_store *base_, const char *name, int64_t id);
int sq_bucket_list(meta_store *base_, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud);
int sq_bucket_list_page(meta_store *base_, int64_t owner_id, const char *after, const char *lo, const char *hi, int limit,
                       int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more);
int sq_bucket_set_public(meta_store *base_, const char *name, bool public_read);
int sq_object_put(meta_store *base_, const meta_object *obj, meta_object *replaced, bool *had_replaced);
int sq_object_get(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, bool with_data, meta_object *out);
int sq_object_delete(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                     const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                     const meta_job *jobs, int njobs, const meta_audit_outbox *audit, meta_delete_result *res);
int sq_object_get_version(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, bool with_data, meta_object *out);
int sq_object_list_versions(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix,
                            size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                            int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more);
int sq_bucket_set_versioning(meta_store *base_, const char *name, int64_t bucket_id, meta_versioning state);
int sq_bucket_enable_object_lock(meta_store *base_, const char *name, int64_t bucket_id);
int sq_object_set_headers(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, const char *expected, const char *headers_json);
/* The versioning of a bucket (want_id as in sq_bucket_lookup); object_lock may be NULL. */
int sq_bucket_versioning(conn *c, const char *name, int64_t want_id, meta_versioning *state, bool *object_lock);
int sq_object_delete_many(meta_store *base_, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n);
int sq_object_list(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *from, size_t from_len, bool inclusive, int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more);
int sq_object_scan(meta_store *base_, const char *after_bucket, const char *after_key, size_t after_key_len, int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more);
int sq_placement_scan(meta_store *base_, meta_place_cursor *cur, int limit, int (*cb)(void *ud, const meta_placement *p), void *ud);
int sq_placement_set_layout(meta_store *base_, const char *version_id, const char *old_layout, const char *new_layout);
int sq_layout_refs(meta_store *base_, const char *id, int64_t *count);
int sq_placement_get(meta_store *base_, const char *version_id, meta_placement *out);
int sq_check(meta_store *base_, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total);
int sq_repair(meta_store *base_, const meta_problem *p, void (*drop)(void *ud, const char *version_id, const char *layout), void *ud);
int sq_upload_create(meta_store *base_, const meta_upload *u);
int sq_upload_get(meta_store *base_, const char *upload_id, meta_upload *out);
int sq_upload_list(meta_store *base_, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more);
int sq_part_put(meta_store *base_, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced);
int sq_part_list(meta_store *base_, const char *upload_id, int after, int limit, int (*cb)(void *ud, const meta_part *p), void *ud, bool *more);
int sq_upload_complete(meta_store *base_, const char *upload_id, const meta_object *obj, const meta_part *parts, int n, meta_object *replaced, bool *had_replaced, void (*unused)(void *ud, const meta_part *p), void *ud);
int sq_upload_abort(meta_store *base_, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud);
int sq_object_parts(meta_store *base_, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud);
int sq_upload_completed_get(meta_store *base_, const char *upload_id, meta_completed_upload *out);
int sq_upload_completed_prune(meta_store *base_, int64_t before_ms, int limit, int64_t *deleted);
int sq_trash_list(meta_store *base_, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud);
int sq_trash_remove(meta_store *base_, const char *const *version_ids, int n);
int sq_job_enqueue(meta_store *base_, const meta_job *j, int64_t *id);
int sq_job_claim(meta_store *base_, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out);
int sq_job_finish(meta_store *base_, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error);
int sq_job_finish_claim(meta_store *base_, const char *kinds, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next);
int sq_job_release(meta_store *base_, int64_t id, const char *owner, int64_t run_at_ms);
int sq_job_extend(meta_store *base_, int64_t id, const char *owner, int64_t lease_expires_ms);
int sq_job_cancel(meta_store *base_, int64_t id);
int sq_job_retry(meta_store *base_, int64_t id);
int sq_job_get(meta_store *base_, int64_t id, meta_job *out);
int sq_job_list(meta_store *base_, const char *state, const char *kind, int limit, int (*cb)(void *ud, const meta_job *j), void *ud);
int sq_job_prune(meta_store *base_, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted);
int sq_job_counts(meta_store *base_, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud);
int sq_upload_list_older(meta_store *base_, int64_t before_ms, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud);
int sq_node_upsert(meta_store *base_, const char *id, const char *url);
int sq_node_list(meta_store *base_, int (*cb)(void *ud, const meta_node *n), void *ud);
int sq_node_get(meta_store *base_, const char *id_or_url, meta_node *out);
int sq_node_set_state(meta_store *base_, const char *id, const char *state);
int sq_node_seen(meta_store *base_, const char *id, bool ok, const char *error);
int sq_lease_acquire(meta_store *base_, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms, bool *held);
int sq_lease_release(meta_store *base_, const char *name, const char *holder);
int sq_lease_get(meta_store *base_, const char *name, meta_lease *out);
int sq_version_referenced(meta_store *base_, const char *version_id, bool *referenced);
int sq_object_count(meta_store *base_, const char *bucket, int64_t *count);
int sq_user_set_audit(meta_store *base_, const char *name, bool audit);
int sq_audit_insert(meta_store *base_, const meta_audit_event *ev, int n, int *inserted);
int sq_audit_query(meta_store *base_, const meta_audit_filter *f, int limit,
                   int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count);
int sq_audit_delete_before(meta_store *base_, int64_t before_us, int limit, int64_t *deleted);
/* Inside the writer's transaction: the write's audit event into the outbox (NULL: none). */
int sq_outbox_insert_tx(conn *w, const meta_audit_outbox *a);
int sq_audit_outbox_read(meta_store *base_, const char *origin, int64_t adopt_before_ms, int limit,
                         meta_outbox_row **rows, int *n);
int sq_audit_outbox_delete(meta_store *base_, const int64_t *ids, int n);
int sq_audit_outbox_count(meta_store *base_, const char *origin, int64_t *count, int64_t *oldest_ms);
int sq_kms_key_create(meta_store *base_, const char *id, const char *description, const uint8_t *sealed, int64_t now_ms);
int sq_kms_key_get(meta_store *base_, const char *id, meta_kms_key *out);
int sq_kms_key_list(meta_store *base_, int (*cb)(void *ud, const meta_kms_key *k), void *ud);
int sq_kms_key_set_enabled(meta_store *base_, const char *id, bool enabled);
int sq_kms_version_add(meta_store *base_, const char *id, int version, const uint8_t *sealed, int64_t now_ms);
int sq_kms_version_get(meta_store *base_, const char *id, int version, uint8_t *sealed);
int sq_master_reseal(meta_store *base_, const meta_reseal *r, int64_t *count);
int sq_upload_set_headers_if(meta_store *base_, const char *upload_id, const char *expected, const char *headers_json);

#endif
