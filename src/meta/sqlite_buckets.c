/*
 * sqlite_buckets.c — the SQLite backend (sqlite.c): buckets: create, look up, list, and delete with everything their uploads left.
 */
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buckets ---------------------------------------------------------------- */

static int row_bucket(sqlite3_stmt *st, meta_bucket *b) {
    memset(b, 0, sizeof *b);
    b->id = sqlite3_column_int64(st, 0);
    int err = sq_col_copy(st, 1, b->name, sizeof b->name);
    b->owner_id = sqlite3_column_int64(st, 2);
    b->created_ms = sqlite3_column_int64(st, 3);
    b->public_read = sqlite3_column_int(st, 4) != 0;
    if (err == 0) err = sq_col_copy(st, 5, b->region, sizeof b->region);
    b->versioning = (meta_versioning)sqlite3_column_int(st, 6);
    b->object_lock = sqlite3_column_int(st, 7) != 0;
    b->configs = meta_config_mask((const char *)sqlite3_column_text(st, 8));
    return err;
}

int sq_bucket_versioning(conn *c, const char *name, int64_t want_id, meta_versioning *state, bool *object_lock) {
    sqlite3_stmt *st = sq_stmt(c, ST_BUCKET_EXISTS);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, name);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "bucket");
    if (err == 0) {
        if (want_id > 0 && sqlite3_column_int64(st, 1) != want_id) err = CAIRN_ENOTFOUND;
        *state = (meta_versioning)sqlite3_column_int(st, 2);
        if (object_lock) *object_lock = sqlite3_column_int(st, 3) != 0;
    }
    sq_stmt_done(st);
    return err;
}

int sq_bucket_set_versioning(meta_store *base_, const char *name, int64_t bucket_id, meta_versioning state) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    meta_versioning now = META_VERSIONING_OFF;
    bool lock = false;
    err = sq_bucket_versioning(w, name, bucket_id, &now, &lock);
    /* Once on, versioning is only ever suspended; object lock keeps it on. */
    if (err == 0 && state == META_VERSIONING_OFF && now != META_VERSIONING_OFF) err = CAIRN_EINVAL;
    if (err == 0 && state == META_VERSIONING_SUSPENDED && lock) err = CAIRN_EINVAL;
    if (err == 0) {
        sqlite3_stmt *st = sq_stmt(w, ST_BUCKET_SET_VERSIONING);
        err = st ? sq_stmt_exec_bound(w, st, sq_bind_str(st, 1, name) | sqlite3_bind_int(st, 2, (int)state),
                                      "bucket set versioning")
                 : CAIRN_EDB;
    }
    return sq_wtx_end(ms, err);
}

int sq_bucket_enable_object_lock(meta_store *base_, const char *name, int64_t bucket_id) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    meta_versioning now = META_VERSIONING_OFF;
    bool lock = false;
    err = sq_bucket_versioning(w, name, bucket_id, &now, &lock);
    if (err == 0 && !lock && now != META_VERSIONING_ENABLED) err = CAIRN_ECONFLICT;
    if (err == 0 && !lock) {
        sqlite3_stmt *st = sq_stmt(w, ST_BUCKET_SET_OBJECT_LOCK);
        err = st ? sq_stmt_exec_bound(w, st, sq_bind_str(st, 1, name), "bucket enable object lock") : CAIRN_EDB;
    }
    return sq_wtx_end(ms, err);
}

/* Looks a bucket up inside the current connection: 0, ENOTFOUND (also when
 * want_id > 0 and the bucket of that name has another id) or an error.
 * owner and id may be NULL. */
int sq_bucket_lookup(conn *c, const char *name, int64_t want_id, int64_t *owner, int64_t *id) {
    sqlite3_stmt *st = sq_stmt(c, ST_BUCKET_EXISTS);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, name);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "bucket");
    if (err == 0) {
        int64_t found = sqlite3_column_int64(st, 1);
        if (owner) *owner = sqlite3_column_int64(st, 0);
        if (id) *id = found;
        if (want_id > 0 && found != want_id) err = CAIRN_ENOTFOUND;
    }
    sq_stmt_done(st);
    return err;
}

static int bucket_insert(conn *w, const meta_bucket *bk) {
    sqlite3_stmt *st = sq_stmt(w, ST_BUCKET_INSERT);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, bk->name);
    b |= sqlite3_bind_int64(st, 2, bk->owner_id);
    b |= sqlite3_bind_int64(st, 3, bk->created_ms ? bk->created_ms : time_now_ms());
    b |= sqlite3_bind_int(st, 4, bk->public_read);
    b |= sq_bind_str(st, 5, bk->region);
    b |= sqlite3_bind_int(st, 6, (int)bk->versioning);
    b |= sqlite3_bind_int(st, 7, bk->object_lock);
    return sq_stmt_exec_bound(w, st, b, "bucket insert");
}

int sq_bucket_create(meta_store *base_, meta_bucket *b, int64_t *existing_owner) {
    sq_store *ms = SQ(base_);
    if (!ms || !b || !sq_name_ok(b->name, sizeof b->name) ||
        strnlen(b->region, sizeof b->region) >= sizeof b->region)
        return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    int64_t owner = 0;
    err = sq_bucket_lookup(w, b->name, 0, &owner, NULL);
    if (err == 0) {
        if (existing_owner) *existing_owner = owner;
        err = CAIRN_EEXIST;
    } else if (err == CAIRN_ENOTFOUND) {
        err = bucket_insert(w, b);
        if (err == 0) b->id = sqlite3_last_insert_rowid(w->db);
    }
    return sq_wtx_end(ms, err);
}

int sq_bucket_get(meta_store *base_, const char *name, meta_bucket *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !name || !out) return CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_BUCKET_GET);
    int err = CAIRN_EDB;
    if (st) {
        int rc = sq_bind_str(st, 1, name);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        err = rc == SQLITE_ROW ? row_bucket(st, out)
              : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                  : sq_db_fail(r, rc, "bucket get");
        sq_stmt_done(st);
    }
    sq_reader_put(ms, r);
    return err;
}

/* Runs a statement bound to one integer (and optionally a second). */
static int exec_int2(conn *w, stmt_id id, int64_t a, int64_t b, const char *op) {
    sqlite3_stmt *st = sq_stmt(w, id);
    if (!st) return CAIRN_EDB;
    int rc = sqlite3_bind_int64(st, 1, a);
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= 2) rc = sqlite3_bind_int64(st, 2, b);
    return sq_stmt_exec_bound(w, st, rc, op);
}

/* Inside the write transaction: ENOTFOUND, ENOTEMPTY, or deletes the bucket
 * with its uploads (their shards into the trash). */
static int bucket_delete_tx(conn *w, const char *name, int64_t want_id) {
    int64_t id = 0;
    int err = sq_bucket_lookup(w, name, want_id, NULL, &id);
    if (err != 0) return err;
    sqlite3_stmt *st = sq_stmt(w, ST_BUCKET_HAS_OBJECTS);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, name);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? CAIRN_ENOTEMPTY : rc == SQLITE_DONE ? 0 : sq_db_fail(w, rc, "bucket empty");
    sq_stmt_done(st);
    if (err != 0) return err;
    /* As in S3, deleting a bucket aborts the uploads in progress in it. */
    err = exec_int2(w, ST_BUCKET_TRASH_PARTS, id, time_now_ms(), "bucket trash parts");
    if (err == 0) err = exec_int2(w, ST_BUCKET_DROP_PARTS, id, 0, "bucket drop parts");
    if (err == 0) err = exec_int2(w, ST_BUCKET_DROP_UPLOADS, id, 0, "bucket drop uploads");
    if (err == 0) err = exec_int2(w, ST_BUCKET_DROP_COMPLETED, id, 0, "bucket drop completed uploads");
    if (err == 0) err = exec_int2(w, ST_BUCKET_NOTIFY_DELETE, id, 0, "bucket drop notification configuration");
    if (err == 0) err = exec_int2(w, ST_BUCKET_CONFIG_DROP, id, 0, "bucket drop configurations");
    if (err != 0) return err;
    st = sq_stmt(w, ST_BUCKET_LIMIT_DROP);
    if (!st) return CAIRN_EDB;
    if ((err = sq_stmt_exec_bound(w, st, sq_bind_str(st, 1, name), "bucket drop rate limit")) != 0) return err;
    st = sq_stmt(w, ST_BUCKET_DELETE);
    if (!st) return CAIRN_EDB;
    rc = sq_bind_str(st, 1, name);
    return sq_stmt_exec_bound(w, st, rc, "bucket delete");
}

int sq_bucket_delete(meta_store *base_, const char *name, int64_t id) {
    sq_store *ms = SQ(base_);
    if (!ms || !name) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    return sq_wtx_end(ms, bucket_delete_tx(w, name, id));
}

int sq_bucket_list(meta_store *base_, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b),
                     void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_bucket)};
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_BUCKET_LIST);
    int err = st ? sq_map_rc(sqlite3_bind_int64(st, 1, owner_id)) : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_bucket *b = sq_vec_push(&v);
        err = b ? row_bucket(st, b) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(r, rc, "bucket list");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_bucket *)v.items + i)) break;
    free(v.items);
    return err;
}

int sq_bucket_list_page(meta_store *base_, int64_t owner_id, const char *after, const char *lo, const char *hi, int limit,
                        int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_bucket)};
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_BUCKET_LIST_PAGE);
    int err = CAIRN_EDB, rc = SQLITE_DONE;
    if (st) {
        /* One row past the page says whether another follows. */
        int b = sqlite3_bind_int64(st, 1, owner_id);
        b |= sq_bind_str(st, 2, after);
        b |= sq_bind_str(st, 3, lo);
        b |= sq_bind_str(st, 4, hi);
        b |= sqlite3_bind_int64(st, 5, (int64_t)limit + 1);
        err = sq_map_rc(b);
    }
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_bucket *b = sq_vec_push(&v);
        err = b ? row_bucket(st, b) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(r, rc, "bucket list page");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    if (err == 0 && v.n > (size_t)limit) {
        v.n = (size_t)limit;
        if (more) *more = true;
    }
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_bucket *)v.items + i)) break;
    free(v.items);
    return err;
}

int sq_bucket_set_public(meta_store *base_, const char *name, bool public_read) {
    sq_store *ms = SQ(base_);
    if (!ms || !name) return CAIRN_EINVAL;
    return sq_update_one(ms, ST_BUCKET_SET_PUBLIC, name, public_read, "bucket set public");
}
