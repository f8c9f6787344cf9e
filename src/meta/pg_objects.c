/*
 * pg_objects.c — the PostgreSQL backend (pg.c): objects: put, get, delete,
 * DeleteObjects batches, listing and the scans.  Mirrors sqlite_objects.c.
 *
 * Put.  One transaction: lock the bucket's row (FOR KEY SHARE: it cannot be
 * deleted under us), then the object's row (FOR UPDATE), which makes
 * concurrent puts of one key queue: each reads the version it replaces —
 * the one the put before it committed — reports it to its caller (who
 * removes its bytes) and installs its own.  The last commit wins and every
 * replaced version is reported exactly once.  A key with no row yet cannot
 * be locked, so the first writer inserts with ON CONFLICT DO NOTHING; one
 * that loses that race to a concurrent insert goes round again and finds
 * the winner's row to lock.  There is no group commit as on SQLite: each
 * put commits on its own connection and PostgreSQL groups WAL flushes
 * itself.
 *
 * DeleteObjects.  One transaction, each key in a savepoint; keys are taken
 * in byte order (duplicates in the order given), so two batches over the
 * same keys lock them in the same order and cannot deadlock.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

/* Fills o from an object row (the OBJ_COLS of pg.c, then optionally the
 * data column).  On error o is cleared; on success the caller owns
 * headers_json and data. */
static int row_object(const PGresult *r, int row, meta_object *o, bool data_col) {
    memset(o, 0, sizeof *o);
    int err = pg_copy(r, row, 0, o->bucket, sizeof o->bucket);
    if (err == 0) err = pg_copy(r, row, 1, o->key, sizeof o->key);
    o->key_len = (size_t)PQgetlength(r, row, 1);
    if (err == 0) err = pg_copy(r, row, 2, o->version_id, sizeof o->version_id);
    o->size = pg_int(r, row, 3);
    if (err == 0) err = pg_copy(r, row, 4, o->etag, sizeof o->etag);
    o->mtime_ms = pg_int(r, row, 5);
    o->owner_id = pg_int(r, row, 6);
    o->storage = pg_int(r, row, 7) == META_STORE_FILE ? META_STORE_FILE : META_STORE_INLINE;
    if (err == 0 && !(o->headers_json = pg_strdup(r, row, 8, "{}"))) err = CAIRN_ENOMEM;
    if (err == 0) err = pg_copy(r, row, 9, o->layout, sizeof o->layout);
    o->seq = pg_int(r, row, 10);
    o->is_latest = pg_bool(r, row, 11);
    o->delete_marker = pg_bool(r, row, 12);
    o->null_version = pg_bool(r, row, 13);
    if (err == 0 && data_col && o->storage == META_STORE_INLINE && !o->delete_marker) {
        if (PQgetisnull(r, row, 14)) {
            log_write(LOG_ERROR, NULL, "meta: inline object has no data row", "version", o->version_id, NULL);
            err = CAIRN_EDB;
        } else {
            o->data_len = (size_t)PQgetlength(r, row, 14);
            /* Never NULL for an inline object, even when empty. */
            o->data = malloc(o->data_len ? o->data_len : 1);
            if (!o->data) err = CAIRN_ENOMEM;
            else if (o->data_len) memcpy(o->data, PQgetvalue(r, row, 14), o->data_len);
        }
    }
    if (err != 0) meta_object_clear(o);
    return err;
}

/* Runs an object SELECT (or DELETE ... RETURNING) of (bucket, key) and
 * reads its row into out (may be NULL to only test): ENOTFOUND without one. */
static int object_one(pg_conn *c, pg_stmt_id id, const char *bucket, int64_t bucket_id, const char *key,
                      size_t key_len, bool with_data, meta_object *out, const char *op) {
    pg_params p = {0};
    pgp_text(&p, bucket);
    pgp_bytes(&p, key, key_len);
    if (id != PS_OBJ_LOCK) pgp_int(&p, bucket_id);
    PGresult *r;
    int err = pg_run(c, id, &p, &r, NULL, op);
    if (err != 0) return err;
    if (PQntuples(r) == 0) {
        err = CAIRN_ENOTFOUND;
    } else {
        meta_object tmp;
        err = row_object(r, 0, out ? out : &tmp, with_data);
        if (!out && err == 0) meta_object_clear(&tmp);
    }
    PQclear(r);
    return err;
}

int pg_object_get(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                  bool with_data, meta_object *out) {
    pg_store *ms = PG(base_);
    if (!bucket || !out) return CAIRN_EINVAL;
    /* Zeroed on every outcome, so meta_object_clear(out) is always safe. */
    memset(out, 0, sizeof *out);
    if (!sq_key_ok(key, key_len)) return key && key_len > PG_KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    err = object_one(c, with_data ? PS_OBJ_GET_DATA : PS_OBJ_GET, bucket, bucket_id, key, key_len, with_data, out,
                     "object get");
    if (err == 0) out->bucket_id = bucket_id;
    pg_release(ms, c);
    return err;
}

static int exec_text(pg_conn *c, pg_stmt_id id, const char *text, const char *op) {
    pg_params p = {0};
    pgp_text(&p, text);
    return pg_run(c, id, &p, NULL, NULL, op);
}

static void bind_object(pg_params *p, const meta_object *o) {
    pgp_text(p, o->bucket);
    pgp_bytes(p, o->key, o->key_len);
    pgp_text(p, o->version_id);
    pgp_int(p, o->size);
    pgp_text(p, o->etag);
    pgp_int(p, o->mtime_ms);
    pgp_int(p, o->owner_id);
    pgp_int(p, (int64_t)o->storage);
    const char *h = o->headers_json ? o->headers_json : "{}";
    pgp_bytes(p, h, strlen(h));
    pgp_text(p, o->layout);
    pgp_int(p, o->seq);
    pgp_bool(p, o->is_latest);
    pgp_bool(p, o->delete_marker);
    pgp_bool(p, o->null_version);
}

/* A multipart version that stops being current takes its parts to the
 * trash in the same transaction (see sqlite_objects.c). */
static int trash_parts_of(pg_conn *c, const meta_object *old) {
    if (strncmp(old->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX)) != 0) return 0;
    pg_params p = {0};
    pgp_text(&p, old->version_id);
    pgp_int(&p, time_now_ms());
    int err = pg_run(c, PS_OBJPARTS_TRASH, &p, NULL, NULL, "object parts trash");
    if (err == 0) err = exec_text(c, PS_OBJPARTS_DELETE, old->version_id, "object parts delete");
    return err;
}

/* ---- the row operations of versions.c ---- */

static int v_current(void *c, const char *bucket, const char *key, size_t key_len, meta_object *out) {
    return object_one(c, PS_OBJ_LOCK, bucket, 0, key, key_len, false, out, "object lock");
}

/* Runs a locking SELECT of (bucket, key[, version_id]) into out. */
static int lock_one(pg_conn *c, pg_stmt_id id, const char *bucket, const char *key, size_t key_len,
                    const char *version_id, meta_object *out, const char *op) {
    pg_params p = {0};
    pgp_text(&p, bucket);
    pgp_bytes(&p, key, key_len);
    if (version_id) pgp_text(&p, version_id);
    PGresult *r;
    int err = pg_run(c, id, &p, &r, NULL, op);
    if (err != 0) return err;
    err = PQntuples(r) ? row_object(r, 0, out, false) : CAIRN_ENOTFOUND;
    PQclear(r);
    return err;
}

static int v_find(void *c, const char *bucket, const char *key, size_t key_len, const char *version_id,
                  meta_object *out) {
    bool null = !strcmp(version_id, "null");
    return lock_one(c, null ? PS_OBJ_LOCK_NULL : PS_OBJ_LOCK_VERSION, bucket, key, key_len, null ? NULL : version_id,
                    out, "object version lock");
}

static int v_noncurrent_null(void *c, const char *bucket, const char *key, size_t key_len, meta_object *out) {
    return lock_one(c, PS_OBJ_NULL_NONCURRENT, bucket, key, key_len, NULL, out, "object null version");
}

/* Runs a statement of (bucket, key, seq). */
static int exec_version(pg_conn *c, pg_stmt_id id, const meta_object *o, const char *op) {
    pg_params p = {0};
    pgp_text(&p, o->bucket);
    pgp_bytes(&p, o->key, o->key_len);
    pgp_int(&p, o->seq);
    return pg_run(c, id, &p, NULL, NULL, op);
}

static int v_demote(void *c, const meta_object *cur) { return exec_version(c, PS_OBJ_DEMOTE, cur, "object demote"); }
static int v_remove(void *c, const meta_object *gone) { return exec_version(c, PS_OBJ_REMOVE, gone, "object remove"); }

static int v_insert(void *c, const meta_object *o) {
    pg_params p = {0};
    bind_object(&p, o);
    int64_t inserted = 0;
    int err = pg_run(c, PS_OBJ_INSERT, &p, NULL, &inserted, "object insert");
    return err == 0 && inserted != 1 ? META_V_RETRY : err;
}

static int v_replace(void *c, const meta_object *cur, const meta_object *o) {
    (void)cur; /* o carries cur's seq */
    pg_params p = {0};
    bind_object(&p, o);
    return pg_run(c, PS_OBJ_UPDATE, &p, NULL, NULL, "object update");
}

static int v_release(void *c, const meta_object *gone) {
    int err = gone->storage == META_STORE_INLINE ? exec_text(c, PS_DATA_DELETE, gone->version_id, "data delete") : 0;
    return err == 0 ? trash_parts_of(c, gone) : err;
}

static int v_store_data(void *c, const meta_object *o) {
    if (o->storage != META_STORE_INLINE || o->delete_marker) return 0;
    pg_params d = {0};
    pgp_text(&d, o->version_id);
    pgp_bytes(&d, o->data, o->data_len);
    return pg_run(c, PS_DATA_INSERT, &d, NULL, NULL, "data insert");
}

static int v_promote(void *c, const char *bucket, const char *key, size_t key_len) {
    pg_params p = {0};
    pgp_text(&p, bucket);
    pgp_bytes(&p, key, key_len);
    return pg_run(c, PS_OBJ_PROMOTE, &p, NULL, NULL, "object promote");
}

static meta_vops vops_of(pg_conn *c) {
    return (meta_vops){.c = c, .current = v_current, .find = v_find, .noncurrent_null = v_noncurrent_null,
                       .demote = v_demote, .insert = v_insert, .replace = v_replace, .remove = v_remove,
                       .release = v_release, .store_data = v_store_data, .promote = v_promote};
}

/* Inside the transaction: makes obj current as the bucket's versioning
 * says (versions.c), *old gets a version it removed.  The bucket's row is
 * held FOR KEY SHARE: it cannot be deleted under us. */
int pg_object_put_tx(pg_conn *c, const meta_object *obj, meta_object *old, bool *had_old) {
    meta_versioning state = META_VERSIONING_OFF;
    int err = pg_bucket_versioning(c, PS_BUCKET_VERSIONING, obj->bucket, obj->bucket_id, &state, NULL);
    if (err != 0) return err;
    meta_vops v = vops_of(c);
    err = meta_v_put(&v, state, obj, old, had_old);
    if (err == 0 && obj->njobs) err = pg_jobs_insert_tx(c, obj->jobs, obj->njobs);
    if (err == 0) err = pg_outbox_insert_tx(c, obj->audit);
    return err;
}

int pg_object_put(meta_store *base_, const meta_object *obj, meta_object *replaced, bool *had_replaced) {
    pg_store *ms = PG(base_);
    if (had_replaced) *had_replaced = false;
    if (!obj) return CAIRN_EINVAL;
    int err = sq_obj_validate(obj);
    if (err != 0) return err;
    meta_object old;
    memset(&old, 0, sizeof old);
    bool had_old = false;
    pg_conn *c;
    err = pg_tx_begin(ms, &c);
    if (err == 0) err = pg_tx_end(ms, c, pg_object_put_tx(c, obj, &old, &had_old));
    if (err != 0 || !had_old) {
        meta_object_clear(&old);
        memset(&old, 0, sizeof old);
        had_old = false;
    }
    if (replaced) *replaced = old;
    else meta_object_clear(&old);
    if (had_replaced) *had_replaced = had_old;
    return err;
}

static int object_delete_tx(pg_conn *c, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const char *version_id, int64_t owner_id, const char *marker_id,
                            const meta_lock_check *lock, const meta_job *jobs, int njobs,
                            const meta_audit_outbox *audit, meta_delete_result *res) {
    meta_versioning state = META_VERSIONING_OFF;
    int err = pg_bucket_versioning(c, PS_BUCKET_VERSIONING, bucket, bucket_id, &state, NULL);
    if (err != 0) return err;
    meta_vops v = vops_of(c);
    err = meta_v_delete(&v, state, bucket, key, key_len, version_id, owner_id, marker_id, lock, res);
    if (err == 0 && njobs) err = pg_jobs_insert_tx(c, jobs, njobs);
    if (err == 0) err = pg_outbox_insert_tx(c, audit);
    return err;
}

int pg_object_delete(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                     const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                     const meta_job *jobs, int njobs, const meta_audit_outbox *audit, meta_delete_result *res) {
    pg_store *ms = PG(base_);
    memset(res, 0, sizeof *res);
    if (!bucket) return CAIRN_EINVAL;
    if (!sq_key_ok(key, key_len)) return key && key_len > PG_KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    err = pg_tx_end(ms, c, object_delete_tx(c, bucket, bucket_id, key, key_len, version_id, owner_id, marker_id, lock,
                                            jobs, njobs, audit, res));
    if (err != 0) {
        meta_delete_result_clear(res);
        memset(res, 0, sizeof *res);
    }
    return err;
}

int pg_object_get_version(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, bool with_data, meta_object *out) {
    pg_store *ms = PG(base_);
    memset(out, 0, sizeof *out);
    if (!sq_key_ok(key, key_len)) return key && key_len > PG_KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    bool null = !strcmp(version_id, "null");
    pg_params p = {0};
    pgp_text(&p, bucket);
    pgp_bytes(&p, key, key_len);
    pgp_int(&p, bucket_id);
    if (!null) pgp_text(&p, version_id);
    PGresult *r;
    int err = pg_read(ms, null ? PS_OBJ_GET_NULL : PS_OBJ_GET_VERSION, &p, &r, NULL, "object version get");
    if (err != 0) return err;
    err = PQntuples(r) ? row_object(r, 0, out, with_data) : CAIRN_ENOTFOUND;
    PQclear(r);
    if (err == 0) out->bucket_id = bucket_id;
    return err;
}

/* The order DeleteObjects takes its keys in: bytes, then as given. */
static int item_order(const void *pa, const void *pb, void *arg) {
    const meta_delete_item *items = arg;
    int a = *(const int *)pa, b = *(const int *)pb;
    int c = meta_key_cmp(items[a].key, items[a].key_len, items[b].key, items[b].key_len);
    return c ? c : (a > b) - (a < b);
}

/* Fills order with the indexes of the items to run, in lock order; *m = count. */
static void lock_order(meta_delete_item *items, int n, int *order, int *m) {
    *m = 0;
    for (int i = 0; i < n; i++)
        if (items[i].rc == 0 && items[i].key_len <= PG_KEY_MAX) order[(*m)++] = i;
    qsort_r(order, (size_t)*m, sizeof *order, item_order, items);
}

int pg_object_delete_many(meta_store *base_, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n) {
    pg_store *ms = PG(base_);
    if (!bucket || n < 0 || n > 1000 || (n && !items)) return CAIRN_EINVAL;
    meta_delete_items_start(items, n, PG_KEY_MAX, sq_key_ok);
    int order[1000], m = 0;
    lock_order(items, n, order, &m);
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) {
        /* Callers read each key's outcome: none of them was deleted. */
        meta_delete_items_undone(items, n, err);
        return err;
    }
    for (int k = 0; k < m; k++) {
        meta_delete_item *it = &items[order[k]];
        /* Each key in its own savepoint: one failing key keeps the others. */
        int rc = pg_savepoint(c);
        bool lost = rc != 0;
        if (rc == 0) {
            meta_delete_result res;
            memset(&res, 0, sizeof res);
            rc = object_delete_tx(c, bucket, bucket_id, it->key, it->key_len, it->version_id, it->owner_id,
                                  it->marker_id, &it->lock, it->jobs, it->njobs, NULL, &res);
            it->deleted = res.removed;
            it->marker = res.marker;
            it->deleted_marker = res.removed_marker;
            /* ENOTFOUND comes from no statement failing: nothing to undo. */
            lost = pg_savepoint_end(c, rc != 0 && rc != CAIRN_ENOTFOUND) != 0;
        }
        if (rc != 0) {
            meta_object_clear(&it->deleted);
            meta_object_clear(&it->marker);
            memset(&it->deleted, 0, sizeof it->deleted);
            memset(&it->marker, 0, sizeof it->marker);
            it->deleted_marker = false;
        }
        it->rc = rc == CAIRN_ENOTFOUND ? 0 : rc;
        if (lost) {
            /* The transaction cannot go on (the connection is gone, or the
             * savepoint would not undo this key's half): the batch fails. */
            err = rc != 0 && rc != CAIRN_ENOTFOUND ? rc : CAIRN_EDB;
            break;
        }
    }
    err = pg_tx_end(ms, c, err);
    if (err != 0) meta_delete_items_undone(items, n, err); /* nothing was deleted after all */
    return err;
}


/* One object of a listing, copied out (pg_page_rows), and the query's bounds (meta_int.h). */
typedef meta_list_row list_row;
typedef meta_list_ctx list_ctx;
_Static_assert(PG_KEY_MAX == META_LIST_KEY_MAX, "a listed key fits its row");

static int list_query(pg_conn *c, void *ctx, const void *after, int fetch, PGresult **out) {
    const list_ctx *l = ctx;
    const list_row *a = after;
    const char *lo = a ? a->key : l->lo;
    size_t lo_len = a ? a->key_len : l->lo_len;
    bool incl = a ? false : l->lo_incl;
    pg_stmt_id id = l->hi_len ? (incl ? PS_OBJ_LIST_GE_UB : PS_OBJ_LIST_GT_UB) : (incl ? PS_OBJ_LIST_GE : PS_OBJ_LIST_GT);
    pg_params p = {0};
    pgp_text(&p, l->bucket);
    pgp_bytes(&p, lo, lo_len);
    pgp_int(&p, fetch);
    pgp_int(&p, l->bucket_id);
    if (l->hi_len) pgp_bytes(&p, l->hi, l->hi_len);
    return pg_run(c, id, &p, out, NULL, "object list");
}

static int list_copy(const PGresult *r, int row, void *out) {
    list_row *l = out;
    size_t n = (size_t)PQgetlength(r, row, 0);
    if (n > PG_KEY_MAX) return CAIRN_EDB;
    memcpy(l->key, PQgetvalue(r, row, 0), n);
    l->key[n] = '\0';
    l->key_len = n;
    l->size = pg_int(r, row, 1);
    int err = pg_copy(r, row, 2, l->etag, sizeof l->etag);
    l->mtime_ms = pg_int(r, row, 3);
    l->owner_id = pg_int(r, row, 4);
    return err;
}

static int list_deliver(void *ctx, const void *row) {
    const list_ctx *l = ctx;
    const list_row *r = row;
    meta_list_entry e = {.key = r->key, .key_len = r->key_len, .size = r->size, .etag = r->etag,
                         .mtime_ms = r->mtime_ms, .owner_id = r->owner_id};
    return l->cb(l->ud, &e);
}

static const pg_pager list_pager = {sizeof(list_row), list_query, list_copy, list_deliver, NULL};

int pg_object_list(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len,
                   const char *from, size_t from_len, bool inclusive, int limit,
                   int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more) {
    pg_store *ms = PG(base_);
    if (more) *more = false;
    if (!bucket || !cb || limit < 0 || (prefix_len && !prefix) || (from_len && !from)) return CAIRN_EINVAL;
    /* No key is longer than PG_KEY_MAX or contains NUL: such a prefix matches nothing. */
    if (prefix_len > PG_KEY_MAX || (prefix_len && memchr(prefix, '\0', prefix_len))) return 0;
    if (!prefix) prefix = "";
    /* One lower bound: `from` when it sorts at or after the prefix, else the
     * prefix itself (inclusive), so the scan seeks once. */
    list_ctx l = {.bucket = bucket, .bucket_id = bucket_id, .lo = prefix, .lo_len = prefix_len, .lo_incl = true,
                  .cb = cb, .ud = ud};
    if (from && meta_key_cmp(from, from_len, prefix, prefix_len) >= 0) {
        l.lo = from;
        l.lo_len = from_len;
        l.lo_incl = inclusive;
    }
    char hi[PG_KEY_MAX];
    l.hi = hi;
    l.hi_len = prefix_len ? meta_key_successor(prefix, prefix_len, hi) : 0;
    return pg_page_rows(ms, &list_pager, &l, limit, more, "object list");
}

int pg_object_count(meta_store *base_, const char *bucket, int64_t *count) {
    if (!bucket || !count) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, bucket);
    PGresult *r;
    int err = pg_read_unbounded(PG(base_), PS_OBJ_COUNT, &p, &r, "object count");
    if (err != 0) return err;
    *count = pg_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* One object of a whole-store scan, copied out. */
typedef struct {
    char bucket[64];
    char key[PG_KEY_MAX + 1];
    size_t key_len;
    char version_id[33];
    int64_t size;
    meta_storage storage;
    char layout[320];
} scan_row;

typedef struct {
    const char *after_bucket, *after_key;
    size_t after_key_len;
    int (*cb)(void *ud, const meta_scan_entry *e);
    void *ud;
} scan_ctx;

static int scan_query(pg_conn *c, void *ctx, const void *after, int fetch, PGresult **out) {
    const scan_ctx *sc = ctx;
    const scan_row *a = after;
    pg_params p = {0};
    pgp_text(&p, a ? a->bucket : sc->after_bucket);
    pgp_bytes(&p, a ? a->key : sc->after_key, a ? a->key_len : sc->after_key_len);
    pgp_int(&p, fetch);
    return pg_run(c, PS_OBJ_SCAN, &p, out, NULL, "object scan");
}

static int scan_copy(const PGresult *r, int row, void *out) {
    scan_row *s = out;
    size_t n = (size_t)PQgetlength(r, row, 1);
    if (n > PG_KEY_MAX) return CAIRN_EDB;
    memcpy(s->key, PQgetvalue(r, row, 1), n);
    s->key[n] = '\0';
    s->key_len = n;
    int err = pg_copy(r, row, 0, s->bucket, sizeof s->bucket);
    if (err == 0) err = pg_copy(r, row, 2, s->version_id, sizeof s->version_id);
    s->size = pg_int(r, row, 3);
    s->storage = pg_int(r, row, 4) == META_STORE_FILE ? META_STORE_FILE : META_STORE_INLINE;
    if (err == 0) err = pg_copy(r, row, 5, s->layout, sizeof s->layout);
    return err;
}

static int scan_deliver(void *ctx, const void *row) {
    const scan_ctx *sc = ctx;
    const scan_row *r = row;
    meta_scan_entry e = {r->bucket, r->key, r->key_len, r->version_id, r->size, r->storage, r->layout};
    return sc->cb(sc->ud, &e);
}

static const pg_pager scan_pager = {sizeof(scan_row), scan_query, scan_copy, scan_deliver, NULL};

int pg_object_scan(meta_store *base_, const char *after_bucket, const char *after_key, size_t after_key_len,
                   int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more) {
    if (more) *more = false;
    if (!cb || limit < 0 || !after_bucket || !after_key) return CAIRN_EINVAL;
    scan_ctx sc = {after_bucket, after_key, after_key_len, cb, ud};
    return pg_page_rows(PG(base_), &scan_pager, &sc, limit, more, "object scan");
}

/* ---- versions listing (the bounds and batching: versions.c) ---- */

static int vlist_copy(const PGresult *r, int row, meta_vlist_row *v) {
    size_t n = (size_t)PQgetlength(r, row, 0);
    if (n > PG_KEY_MAX) return CAIRN_EDB;
    memcpy(v->key, PQgetvalue(r, row, 0), n);
    v->key[n] = '\0';
    v->key_len = n;
    int err = pg_copy(r, row, 1, v->version_id, sizeof v->version_id);
    v->seq = pg_int(r, row, 2);
    v->is_latest = pg_bool(r, row, 3);
    v->delete_marker = pg_bool(r, row, 4);
    v->null_version = pg_bool(r, row, 5);
    v->size = pg_int(r, row, 6);
    if (err == 0) err = pg_copy(r, row, 7, v->etag, sizeof v->etag);
    v->mtime_ms = pg_int(r, row, 8);
    v->owner_id = pg_int(r, row, 9);
    return err;
}

/* Runs one listing statement on c, appending up to fetch - *got rows. */
static int vlist_run(pg_conn *c, const meta_vlist *l, pg_stmt_id id, const char *key, size_t key_len, int64_t seq,
                     int fetch, meta_vlist_row *rows, int *got) {
    pg_params p = {0};
    pgp_text(&p, l->bucket);
    pgp_bytes(&p, key, key_len);
    pgp_int(&p, fetch - *got);
    pgp_int(&p, l->bucket_id);
    if (id == PS_OBJ_VLIST_KEY) pgp_int(&p, seq);
    else if (id == PS_OBJ_VLIST_GT_UB || id == PS_OBJ_VLIST_GE_UB) pgp_bytes(&p, l->hi, l->hi_len);
    PGresult *r;
    int err = pg_run(c, id, &p, &r, NULL, "object versions");
    if (err != 0) return err;
    int nr = PQntuples(r);
    for (int i = 0; err == 0 && i < nr && *got < fetch; i++)
        if ((err = vlist_copy(r, i, &rows[*got])) == 0) (*got)++;
    PQclear(r);
    return err;
}

static int vlist_fetch(void *fud, const void *after, int fetch, char *rows_, int *got) {
    const meta_vlist *l = fud;
    meta_vlist_row *rows = (meta_vlist_row *)rows_;
    *got = 0;
    const char *key;
    size_t key_len;
    int64_t seq;
    bool incl;
    meta_vlist_start(l, after, &key, &key_len, &seq, &incl);
    pg_conn *c;
    int err = pg_acquire(l->store, &c);
    if (err != 0) return err;
    if (!incl && seq > 0) err = vlist_run(c, l, PS_OBJ_VLIST_KEY, key, key_len, seq, fetch, rows, got);
    if (err == 0 && *got < fetch) {
        pg_stmt_id id = l->hi_len ? (incl ? PS_OBJ_VLIST_GE_UB : PS_OBJ_VLIST_GT_UB)
                                  : (incl ? PS_OBJ_VLIST_GE : PS_OBJ_VLIST_GT);
        err = vlist_run(c, l, id, key, key_len, 0, fetch, rows, got);
    }
    pg_release(l->store, c);
    return err;
}

int pg_object_list_versions(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix,
                            size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                            int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more) {
    meta_vlist l = {.store = PG(base_), .bucket = bucket, .bucket_id = bucket_id, .cb = cb, .ud = ud};
    return meta_vlist_run(&l, prefix, prefix_len, after_key, after_key_len, after_seq, limit, vlist_fetch, more);
}

int pg_object_set_headers(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, const char *expected, const char *headers_json) {
    if (!sq_key_ok(key, key_len)) return key_len > PG_KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, bucket);
    pgp_bytes(&p, key, key_len);
    pgp_int(&p, bucket_id);
    pgp_text(&p, version_id);
    pgp_bytes(&p, headers_json, strlen(headers_json));
    if (expected) pgp_bytes(&p, expected, strlen(expected));
    else pgp_null(&p);
    int64_t changed = 0;
    int err = pg_read(PG(base_), PS_OBJ_SET_HEADERS, &p, NULL, &changed, "object set headers");
    return err == 0 && changed == 0 ? CAIRN_ENOTFOUND : err;
}
