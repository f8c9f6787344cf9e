/*
 * meta_int.h — the contract between meta.h and a metadata backend.  Not part
 * of the meta interface: only files in src/meta include it.
 *
 * A backend is a table of operations, the way a drive is (data/drive.h):
 * each backend's store struct begins with a meta_store, whose ops point at
 * its functions, and meta.c forwards every meta_* call through the table
 * after the checks that hold whatever the backend.  Each operation has the
 * contract meta.h documents for the meta_* call of the same name.
 */
#ifndef CAIRN_META_INT_H
#define CAIRN_META_INT_H

#include "meta/meta.h"

#include <stdatomic.h>

/*
 * A backend's migrations (migrations.c, pg_migrations.c): the same versions
 * under the same names (meta_migration_name), each backend's SQL in its own
 * dialect.  schema.c does what both share with it: the checksums, the drift
 * rule, the status rows and the scripts dry runs print.
 */
typedef struct meta_migration_set {
    meta_backend backend;
    int count;                     /* == meta_schema_latest() */
    /* The SQL of step v (1 .. count), up or down. */
    const char *(*sql)(int v, bool up);
    /* How each step's transaction begins and what it runs before the step,
     * as a dry run prints it (';'-separated statements). */
    const char *begin_sql;
    const char *bootstrap_sql;
} meta_migration_set;

/* One row of schema_migrations, as a backend reads it.  checksum is "" for
 * a row recorded before checksums were (an older cairn). */
typedef struct {
    int version;
    char name[129];
    int64_t applied_ms;
    char checksum[65];
} meta_migration_row;

/* The hex SHA-256 of step v's up text on set s (out gets 64 digits and a NUL);
 * CAIRN_EINVAL for a version s does not have. */
int meta_migration_sum(const meta_migration_set *s, int v, char out[65]);
/* The drift rule, inside a migrating transaction: given the recorded
 * checksum of applied version v, *fill is set when the row has none yet (a
 * row an older cairn recorded: the caller records this binary's, in the same
 * transaction), and CAIRN_EDB is returned, with why naming the migration,
 * when it differs from this binary's: the text was changed after it was
 * applied.  Versions beyond s->count (a newer binary's) are not checked here. */
int meta_migration_check(const meta_migration_set *s, int v, const char *recorded, bool *fill, char *why,
                         size_t whylen);

typedef struct meta_ops {
    const char *name; /* "sqlite", "postgres" */
    void (*close)(meta_store *ms);
    int (*ping)(meta_store *ms);
    int (*schema_version)(meta_store *ms, int *version);
    int (*migrate)(meta_store *ms, int target, char *why, size_t whylen);
    /* Every row of schema_migrations in version order, copied out
     * (malloc'd; the caller frees *rows); none when the table is absent. */
    int (*migration_rows)(meta_store *ms, meta_migration_row **rows, int *n);
    const meta_migration_set *migrations;
    int (*user_create)(meta_store *ms, meta_user *u);
    int (*user_ensure_root)(meta_store *ms, const char *name, meta_user *out);
    int (*user_get)(meta_store *ms, int64_t id, meta_user *out);
    int (*user_get_by_name)(meta_store *ms, const char *name, meta_user *out);
    int (*user_list)(meta_store *ms, int (*cb)(void *ud, const meta_user *u), void *ud);
    int (*key_create)(meta_store *ms, const meta_key *k);
    int (*key_get)(meta_store *ms, const char *access_key, meta_key *out);
    int (*key_list)(meta_store *ms, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud);
    int (*key_set_active)(meta_store *ms, const char *access_key, bool active);
    int (*bucket_create)(meta_store *ms, meta_bucket *b, int64_t *existing_owner);
    int (*bucket_get)(meta_store *ms, const char *name, meta_bucket *out);
    int (*bucket_delete)(meta_store *ms, const char *name, int64_t id);
    int (*bucket_list)(meta_store *ms, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud);
    /* lo: the prefix (inclusive), hi: its successor (exclusive; "" none),
     * after: exclusive ("" none); limit rows at most, *more if one follows. */
    int (*bucket_list_page)(meta_store *ms, int64_t owner_id, const char *after, const char *lo, const char *hi,
                            int limit, int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more);
    int (*bucket_set_public)(meta_store *ms, const char *name, bool public_read);
    int (*object_put)(meta_store *ms, const meta_object *obj, meta_object *replaced, bool *had_replaced);
    int (*object_get)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, bool with_data, meta_object *out);
    int (*object_delete)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock, const meta_job *jobs, int njobs, const meta_audit_outbox *audit, meta_delete_result *res);
    int (*object_get_version)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, const char *version_id, bool with_data, meta_object *out);
    int (*object_list_versions)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq, int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more);
    int (*bucket_set_versioning)(meta_store *ms, const char *name, int64_t bucket_id, meta_versioning state);
    int (*bucket_enable_object_lock)(meta_store *ms, const char *name, int64_t bucket_id);
    /* expected NULL: unconditionally; else only while headers_json is exactly that. */
    int (*object_set_headers)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, const char *version_id, const char *expected, const char *headers_json);
    int (*object_delete_many)(meta_store *ms, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n);
    int (*object_list)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *from, size_t from_len, bool inclusive, int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more);
    int (*object_scan)(meta_store *ms, const char *after_bucket, const char *after_key, size_t after_key_len, int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more);
    int (*placement_scan)(meta_store *ms, meta_place_cursor *cur, int limit, int (*cb)(void *ud, const meta_placement *p), void *ud);
    int (*placement_set_layout)(meta_store *ms, const char *version_id, const char *old_layout, const char *new_layout);
    int (*layout_refs)(meta_store *ms, const char *id, int64_t *count);
    int (*placement_get)(meta_store *ms, const char *version_id, meta_placement *out);
    int (*check)(meta_store *ms, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total);
    int (*repair)(meta_store *ms, const meta_problem *p, void (*drop)(void *ud, const char *version_id, const char *layout), void *ud);
    int (*upload_create)(meta_store *ms, const meta_upload *u);
    int (*upload_get)(meta_store *ms, const char *upload_id, meta_upload *out);
    int (*upload_list)(meta_store *ms, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more);
    int (*part_put)(meta_store *ms, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced);
    int (*part_list)(meta_store *ms, const char *upload_id, int after, int limit, int (*cb)(void *ud, const meta_part *p), void *ud, bool *more);
    int (*upload_complete)(meta_store *ms, const char *upload_id, const meta_object *obj, const meta_part *parts, int n, meta_object *replaced, bool *had_replaced, void (*unused)(void *ud, const meta_part *p), void *ud);
    int (*upload_abort)(meta_store *ms, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud);
    int (*object_parts)(meta_store *ms, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud);
    int (*upload_completed_get)(meta_store *ms, const char *upload_id, meta_completed_upload *out);
    int (*upload_completed_prune)(meta_store *ms, int64_t before_ms, int limit, int64_t *deleted);
    int (*trash_list)(meta_store *ms, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud);
    int (*trash_remove)(meta_store *ms, const char *const *version_ids, int n);
    int (*job_enqueue)(meta_store *ms, const meta_job *j, int64_t *id);
    int (*job_claim)(meta_store *ms, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out);
    int (*job_finish)(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error);
    int (*job_finish_claim)(meta_store *ms, const char *kinds, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next);
    int (*job_release)(meta_store *ms, int64_t id, const char *owner, int64_t run_at_ms);
    int (*job_extend)(meta_store *ms, int64_t id, const char *owner, int64_t lease_expires_ms);
    int (*job_cancel)(meta_store *ms, int64_t id);
    int (*job_retry)(meta_store *ms, int64_t id);
    int (*job_get)(meta_store *ms, int64_t id, meta_job *out);
    int (*job_list)(meta_store *ms, const char *state, const char *kind, int limit, int (*cb)(void *ud, const meta_job *j), void *ud);
    int (*job_prune)(meta_store *ms, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted);
    int (*job_counts)(meta_store *ms, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud);
    int (*upload_list_older)(meta_store *ms, int64_t before_ms, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud);
    int (*node_upsert)(meta_store *ms, const char *id, const char *url);
    int (*node_list)(meta_store *ms, int (*cb)(void *ud, const meta_node *n), void *ud);
    int (*node_get)(meta_store *ms, const char *id_or_url, meta_node *out);
    int (*node_set_state)(meta_store *ms, const char *id, const char *state);
    int (*node_seen)(meta_store *ms, const char *id, bool ok, const char *error);
    int (*version_referenced)(meta_store *ms, const char *version_id, bool *referenced);
    int (*object_count)(meta_store *ms, const char *bucket, int64_t *count);
    int (*lease_acquire)(meta_store *ms, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms, bool *held);
    int (*lease_release)(meta_store *ms, const char *name, const char *holder);
    int (*lease_get)(meta_store *ms, const char *name, meta_lease *out);
    int (*user_set_audit)(meta_store *ms, const char *name, bool audit);
    int (*audit_insert)(meta_store *ms, const meta_audit_event *ev, int n, int *inserted);
    int (*audit_query)(meta_store *ms, const meta_audit_filter *f, int limit,
                       int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count);
    int (*audit_delete_before)(meta_store *ms, int64_t before_us, int limit, int64_t *deleted);
    int (*audit_outbox_read)(meta_store *ms, const char *origin, int64_t adopt_before_ms, int limit,
                             meta_outbox_row **rows, int *n);
    int (*audit_outbox_delete)(meta_store *ms, const int64_t *ids, int n);
    int (*audit_outbox_count)(meta_store *ms, const char *origin, int64_t *count, int64_t *oldest_ms);
    int (*notify_target_add)(meta_store *ms, const meta_notify_target *t);
    int (*notify_target_get)(meta_store *ms, const char *name, meta_notify_target *out);
    int (*notify_target_list)(meta_store *ms, int (*cb)(void *ud, const meta_notify_target *t), void *ud);
    int (*notify_target_remove)(meta_store *ms, const char *name);
    int (*limit_set)(meta_store *ms, const meta_limit *l);
    int (*limit_list)(meta_store *ms, int (*cb)(void *ud, const meta_limit *l), void *ud);
    int (*limit_remove)(meta_store *ms, const char *scope, const char *name);
    int (*bucket_notification_get)(meta_store *ms, int64_t bucket_id, char **config);
    int (*bucket_notification_put)(meta_store *ms, int64_t bucket_id, const char *config);
    int (*bucket_config_get)(meta_store *ms, int64_t bucket_id, const char *kind, char **body);
    int (*bucket_config_put)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *kind, const char *body);
    int (*job_pending_count)(meta_store *ms, const char *kind, const char *needle, int64_t before_id, int64_t *n);
    int (*kms_key_create)(meta_store *ms, const char *id, const char *description, const uint8_t *sealed, int64_t now_ms);
    int (*kms_key_get)(meta_store *ms, const char *id, meta_kms_key *out);
    int (*kms_key_list)(meta_store *ms, int (*cb)(void *ud, const meta_kms_key *k), void *ud);
    int (*kms_key_set_enabled)(meta_store *ms, const char *id, bool enabled);
    int (*kms_version_add)(meta_store *ms, const char *id, int version, const uint8_t *sealed, int64_t now_ms);
    int (*kms_version_get)(meta_store *ms, const char *id, int version, uint8_t *sealed);
    int (*master_reseal)(meta_store *ms, const meta_reseal *r, int64_t *count);
    int (*upload_set_headers_if)(meta_store *ms, const char *upload_id, const char *expected, const char *headers_json);
    /* Optional (NULL: the backend has no notifications). */
    int (*job_listener_open)(meta_store *ms, meta_listener **out);
    /* Optional (NULL: the backend has no pool to report). */
    int (*pool_stats)(meta_store *ms, meta_pool_stats *out);
} meta_ops;

/* A list call's rows in batches (every backend's list calls): each batch is
 * fetched and copied out by the backend, which gives its connection back
 * before fetch returns; only then do the rows reach the caller's callback.
 * The batch after the first starts after the last row of the one before
 * (keyset pagination).  The first batch is small (a caller that stops at
 * once pays for few rows), then each doubles up to META_PAGE_MAX, which
 * bounds what a call holds whatever its limit. */
#define META_PAGE_FIRST 16
#define META_PAGE_MAX 256

typedef struct {
    size_t row_size;
    /* Copies at most fetch rows, after the row `after` (NULL for the first
     * batch), into rows (fetch * row_size bytes); *got says how many.  A
     * row it fails to copy it clears itself. */
    int (*fetch)(void *fetch_ud, const void *after, int fetch, char *rows, int *got);
    /* Hands one row to the caller's callback; nonzero stops the list. */
    int (*deliver)(void *ud, const void *row);
    /* Frees what fetch allocated in a row, after delivery (may be NULL).
     * The copy kept as `after` must need only the row's own bytes. */
    void (*clear)(void *row);
} meta_pager;

/* Runs a paged list of at most limit rows; *more (may be NULL) is set when
 * rows beyond limit exist (meaningless if the callback stopped early). */
int meta_page_rows(const meta_pager *p, void *fetch_ud, void *ud, int limit, bool *more);

/* An object listing on either backend (its paged fetch, meta_page_rows):
 * one object copied out, and what the query needs.  META_LIST_KEY_MAX is
 * both backends' longest key (PG_KEY_MAX, KEY_MAX). */
#define META_LIST_KEY_MAX 1024
typedef struct {
    char key[META_LIST_KEY_MAX + 1];
    size_t key_len;
    char etag[72];
    int64_t size, mtime_ms, owner_id;
} meta_list_row;

typedef struct {
    const char *bucket;
    int64_t bucket_id;
    const char *lo, *hi; /* the first batch's lower bound; the prefix successor */
    size_t lo_len, hi_len;
    bool lo_incl;
    int (*cb)(void *ud, const meta_list_entry *e);
    void *ud;
} meta_list_ctx;

/* DeleteObjects on either backend (meta.c): items_start clears each item's
 * results and sets its rc (0, or CAIRN_EINVAL for a key that is not valid;
 * a key longer than key_max is valid and absent); items_undone, after a
 * batch that did not commit (or never began), clears what was reported
 * deleted and gives err to every key that had no error of its own. */
void meta_delete_items_start(meta_delete_item *items, int n, size_t key_max, bool (*key_ok)(const char *, size_t));
void meta_delete_items_undone(meta_delete_item *items, int n, int err);

/* Keys compare as bytes: memcmp, then the shorter first (meta.c). */
int meta_key_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* ---- versions (versions.c) ---- */

/* An insert that lost the key to a concurrent first version: run the step again. */
#define META_V_RETRY 1

/* A backend's row operations for versions.c, each inside its open
 * transaction on connection c.  Rows are the objects table's; a version is
 * named by (bucket, key, seq). */
typedef struct {
    void *c;
    /* The key's current version (PostgreSQL: locked): 0 or CAIRN_ENOTFOUND. */
    int (*current)(void *c, const char *bucket, const char *key, size_t key_len, meta_object *out);
    /* A version by its S3 id ("null": the null version; PostgreSQL: locked). */
    int (*find)(void *c, const char *bucket, const char *key, size_t key_len, const char *version_id,
                meta_object *out);
    /* The null version when it is not the current one: 0 or CAIRN_ENOTFOUND. */
    int (*noncurrent_null)(void *c, const char *bucket, const char *key, size_t key_len, meta_object *out);
    /* cur stops being the current version. */
    int (*demote)(void *c, const meta_object *cur);
    /* o becomes a row (every column, latest included); META_V_RETRY when
     * its key has a current version after all (a concurrent insert). */
    int (*insert)(void *c, const meta_object *o);
    /* cur's row takes o's columns (the seq stays). */
    int (*replace)(void *c, const meta_object *cur, const meta_object *o);
    /* gone's row goes. */
    int (*remove)(void *c, const meta_object *gone);
    /* What the database holds of a version's bytes that no row names any
     * more: its inline bytes, its multipart parts (into the trash). */
    int (*release)(void *c, const meta_object *gone);
    /* o's inline bytes, when it has them. */
    int (*store_data)(void *c, const meta_object *o);
    /* The newest version of the key becomes its current one. */
    int (*promote)(void *c, const char *bucket, const char *key, size_t key_len);
} meta_vops;

/* The put and the delete of meta.h (meta_object_put, meta_object_delete_version)
 * under the bucket's versioning state, inside the backend's transaction. */
int meta_v_put(const meta_vops *v, meta_versioning state, const meta_object *obj, meta_object *freed,
               bool *had_freed);
/* lock: what object lock allows (NULL: the strictest); a version this
 * would remove that it forbids makes the step CAIRN_ELOCKED.  marker_id:
 * the id a delete marker it makes takes (NULL: one is drawn). */
int meta_v_delete(const meta_vops *v, meta_versioning state, const char *bucket, const char *key, size_t key_len,
                  const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                  meta_delete_result *res);
/* A versions listing (meta_object_list_versions), shared by the backends:
 * each fetches a batch into meta_vlist_rows (the rest of the key the last
 * batch ended in, then the keys after it, from lo on the first), and
 * meta_vlist_run does the bounds, the batching and the delivery. */
typedef struct {
    char key[1025];
    size_t key_len;
    char version_id[33];
    int64_t seq;
    bool is_latest, delete_marker, null_version;
    int64_t size;
    char etag[72];
    int64_t mtime_ms, owner_id;
} meta_vlist_row;
typedef struct {
    void *store;               /* the backend's store */
    const char *bucket;
    int64_t bucket_id;
    const char *lo, *hi;       /* the first batch's lower bound; the prefix successor (hi_len 0: none) */
    size_t lo_len, hi_len;
    bool lo_incl;              /* lo itself, all its versions, on the first batch */
    int64_t lo_seq;            /* else: lo's versions older than this first (0: none of them) */
    char hi_buf[1024];
    int (*cb)(void *ud, const meta_version_entry *e);
    void *ud;
} meta_vlist;
/* Fills the bounds and runs the listing with fetch (meta_pager's). */
int meta_vlist_run(meta_vlist *l, const char *prefix, size_t prefix_len, const char *after_key, size_t after_key_len,
                   int64_t after_seq, int limit, int (*fetch)(void *l, const void *after, int n, char *rows, int *got),
                   bool *more);
/* Where a batch starts: the key and seq after the row `after` (NULL: the
 * first batch), and whether the key itself is included. */
void meta_vlist_start(const meta_vlist *l, const meta_vlist_row *after, const char **key, size_t *key_len,
                      int64_t *seq, bool *incl);

/* A version id a request may name: "null" or 32 lowercase hex digits. */
bool meta_v_id_ok(const char *version_id);
/* Whether obj->cond holds with cur the key's current version (NULL: none). */
bool sq_obj_cond_holds(const meta_object *obj, const meta_object *cur);
/* The smallest string greater than every string starting with prefix (n
 * bytes): drop trailing 0xFF bytes, then increment the last one, into out
 * (n bytes).  Its length, or 0 when none exists (no upper bound). */
size_t meta_key_successor(const char *prefix, size_t n, char *out);

/* The audit store's checks both backends share (meta.c): an event within
 * its bounds (CAIRN_EINVAL otherwise), and a filter's strings. */
int meta_audit_event_ok(const meta_audit_event *e);
int meta_audit_filter_ok(const meta_audit_filter *f);

/* The query both backends run, in each one's dialect (pg: $n::type
 * placeholders, else ?n): the text into sql and its parameters, in order,
 * into args (strings borrowed from f). */
#define META_AUDIT_ARGS_MAX 12
typedef struct {
    int n;
    bool is_int[META_AUDIT_ARGS_MAX];
    const char *s[META_AUDIT_ARGS_MAX];
    int64_t i[META_AUDIT_ARGS_MAX];
} meta_audit_args;
void meta_audit_sql(const meta_audit_filter *f, int limit, bool pg, buf_t *sql, meta_audit_args *args);
/* The columns meta_audit_sql selects, in order. */
enum { MA_EVENT_ID, MA_TIME, MA_REQUEST_ID, MA_CORRELATION_ID, MA_PRINCIPAL, MA_USER, MA_SOURCE, MA_ACTION,
       MA_BUCKET, MA_KEY, MA_VERSION_ID, MA_OUTCOME, MA_STATUS, MA_ERROR_CODE, MA_BYTES_IN, MA_BYTES_OUT,
       MA_DURATION, MA__COLUMNS };
/* A row copied out of a result: the event, its strings in mem (malloc'd,
 * freed with meta_audit_row_clear). */
typedef struct {
    meta_audit_event e;
    char *mem;
} meta_audit_row;
/* Fills r from the text columns texts[MA_*] (lengths lens) and the integers
 * ints[MA_*] (only the integer columns are read).  CAIRN_ENOMEM, or
 * CAIRN_EDB for a stored value over its bound (a foreign row). */
int meta_audit_row_fill(meta_audit_row *r, const char *const *texts, const size_t *lens, const int64_t *ints);
void meta_audit_row_clear(meta_audit_row *r);
/* The end of a backend's audit query, its rows copied out (no connection
 * held): hands rows[0..n) to cb until it says stop (not after err), clears
 * and frees them, sets *count to how many cb got, and returns err. */
int meta_audit_rows_deliver(meta_audit_row *rows, int n, int err, int (*cb)(void *ud, const meta_audit_event *e),
                            void *ud, int *count);

/* The first member of every backend's listener (meta_job_listener_open). */
struct meta_listener {
    int (*fd)(const meta_listener *l);
    int (*drain)(meta_listener *l);
    void (*close)(meta_listener *l);
};

/* One value of meta_job_kinds_set.  A value replaced stays allocated
 * (prev) until meta_close: a worker's claim may be reading it. */
typedef struct meta_kinds {
    struct meta_kinds *prev;
    char json[];                /* a JSON array of the kinds claims take */
} meta_kinds;

/* The first member of every backend's store. */
struct meta_store {
    const meta_ops *ops;
    _Atomic(meta_kinds *) job_kinds; /* meta_job_kinds_set; NULL (or an empty json) = every kind */
};

#endif
