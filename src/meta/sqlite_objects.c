/*
 * sqlite_objects.c — the SQLite backend (sqlite.c): objects: put (with the group commit), get, delete, DeleteObjects batches, listing and the scans.
 */
#include "meta/sqlite_int.h"
#include "crypt/crypt.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- objects ---------------------------------------------------------------- */

void meta_object_clear(meta_object *o) {
    if (!o) return;
    free(o->headers_json);
    free(o->data);
    o->headers_json = NULL;
    o->data = NULL;
    o->data_len = 0;
}

bool sq_key_ok(const char *key, size_t key_len) {
    return key && key_len >= 1 && key_len <= KEY_MAX && !memchr(key, '\0', key_len);
}

int sq_obj_validate(const meta_object *o) {
    if (!sq_name_ok(o->bucket, sizeof o->bucket) || !sq_key_ok(o->key, o->key_len) ||
        !sq_name_ok(o->version_id, sizeof o->version_id) ||
        strnlen(o->etag, sizeof o->etag) >= sizeof o->etag || o->size < 0)
        return CAIRN_EINVAL;
    if (o->storage != META_STORE_INLINE && o->storage != META_STORE_FILE) return CAIRN_EINVAL;
    if (o->cond != META_PUT_ALWAYS && o->cond != META_PUT_IF_ABSENT && o->cond != META_PUT_IF_MATCH) return CAIRN_EINVAL;
    if (o->cond == META_PUT_IF_MATCH && strnlen(o->cond_etag, sizeof o->cond_etag) >= sizeof o->cond_etag)
        return CAIRN_EINVAL;
    /* Inline bytes are the object: a size that disagrees would be served as
     * a wrong Content-Length.  Sealed bytes (the headers name their key,
     * crypt.h) are the object's packages, each with its tag. */
    bool sealed = o->headers_json && strstr(o->headers_json, "\"" CRYPT_SSE_MEMBER "\"");
    uint64_t want = sealed ? crypt_sealed_size((uint64_t)o->size) : (uint64_t)o->size;
    if (o->storage == META_STORE_INLINE && (want != o->data_len || (o->data_len && !o->data)))
        return CAIRN_EINVAL;
    return 0;
}

bool sq_obj_cond_holds(const meta_object *obj, const meta_object *cur) {
    switch (obj->cond) {
    case META_PUT_ALWAYS: return true;
    case META_PUT_IF_ABSENT: return cur == NULL;
    case META_PUT_IF_MATCH: return cur && !strcmp(cur->etag, obj->cond_etag);
    }
    assert(!"unknown put condition");
    return false;
}

/* Fills o from an object row (OBJ_COLS, then optionally the data column).
 * On error o is cleared; on success the caller owns headers_json and data. */
static int row_object(sqlite3_stmt *st, meta_object *o, bool data_col) {
    memset(o, 0, sizeof *o);
    int err = sq_col_copy(st, 0, o->bucket, sizeof o->bucket);
    if (err == 0) err = sq_col_copy(st, 1, o->key, sizeof o->key);
    o->key_len = (size_t)sqlite3_column_bytes(st, 1);
    if (err == 0) err = sq_col_copy(st, 2, o->version_id, sizeof o->version_id);
    o->size = sqlite3_column_int64(st, 3);
    if (err == 0) err = sq_col_copy(st, 4, o->etag, sizeof o->etag);
    o->mtime_ms = sqlite3_column_int64(st, 5);
    o->owner_id = sqlite3_column_int64(st, 6);
    o->storage = sqlite3_column_int(st, 7) == META_STORE_FILE ? META_STORE_FILE : META_STORE_INLINE;
    if (err == 0) {
        const char *h = (const char *)sqlite3_column_text(st, 8);
        o->headers_json = strdup(h ? h : "{}");
        if (!o->headers_json) err = CAIRN_ENOMEM;
    }
    if (err == 0) err = sq_col_copy(st, 9, o->layout, sizeof o->layout);
    o->seq = sqlite3_column_int64(st, 10);
    o->is_latest = sqlite3_column_int(st, 11) != 0;
    o->delete_marker = sqlite3_column_int(st, 12) != 0;
    o->null_version = sqlite3_column_int(st, 13) != 0;
    if (err == 0 && data_col && o->storage == META_STORE_INLINE && !o->delete_marker) {
        if (sqlite3_column_type(st, 14) == SQLITE_NULL) {
            log_write(LOG_ERROR, NULL, "meta: inline object has no data row", "version",
                      o->version_id, NULL);
            err = CAIRN_EDB;
        } else {
            const void *p = sqlite3_column_blob(st, 14);
            o->data_len = (size_t)sqlite3_column_bytes(st, 14);
            /* Never NULL for an inline object, even when empty. */
            o->data = malloc(o->data_len ? o->data_len : 1);
            if (!o->data) err = CAIRN_ENOMEM;
            else if (o->data_len) memcpy(o->data, p, o->data_len);
        }
    }
    if (err != 0) meta_object_clear(o);
    return err;
}

/* Reads (bucket, key) on connection c into out (may be NULL to only test);
 * bucket_id > 0: only if the bucket of that name is that one. */
static int object_read(conn *c, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                       bool with_data, meta_object *out) {
    sqlite3_stmt *st = sq_stmt(c, with_data ? ST_OBJ_GET_DATA : ST_OBJ_GET);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, bucket) | sq_bind_bytes_text(st, 2, key, key_len) | sqlite3_bind_int64(st, 3, bucket_id);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err;
    if (rc == SQLITE_ROW) {
        meta_object tmp;
        err = row_object(st, out ? out : &tmp, with_data);
        if (!out && err == 0) meta_object_clear(&tmp);
    } else {
        err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "object get");
    }
    sq_stmt_done(st);
    return err;
}

int sq_object_get(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                    bool with_data, meta_object *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !bucket || !out) return CAIRN_EINVAL;
    /* Zeroed on every outcome, so meta_object_clear(out) is always safe. */
    memset(out, 0, sizeof *out);
    if (!sq_key_ok(key, key_len)) return key && key_len > KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    int err = object_read(r, bucket, bucket_id, key, key_len, with_data, out);
    if (err == 0) out->bucket_id = bucket_id;
    sq_reader_put(ms, r);
    return err;
}

/* Deletes the inline bytes of version_id (no-op if there are none). */
static int data_delete(conn *w, const char *version_id) {
    sqlite3_stmt *st = sq_stmt(w, ST_DATA_DELETE);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, version_id);
    return sq_stmt_exec_bound(w, st, rc, "data delete");
}

static int data_insert(conn *w, const meta_object *o) {
    sqlite3_stmt *st = sq_stmt(w, ST_DATA_INSERT);
    if (!st) return CAIRN_EDB;
    /* A NULL pointer would bind SQL NULL; "" binds an empty blob. */
    const void *p = o->data_len ? (const void *)o->data : "";
    int b = sq_bind_str(st, 1, o->version_id);
    b |= sqlite3_bind_blob64(st, 2, p, o->data_len, SQLITE_STATIC);
    return sq_stmt_exec_bound(w, st, b, "data insert");
}

/* Binds every column of o (OBJ_COLS order) to ?1 .. ?14. */
static int bind_object(sqlite3_stmt *st, const meta_object *o) {
    int b = sq_bind_str(st, 1, o->bucket);
    b |= sq_bind_bytes_text(st, 2, o->key, o->key_len);
    b |= sq_bind_str(st, 3, o->version_id);
    b |= sqlite3_bind_int64(st, 4, o->size);
    b |= sq_bind_str(st, 5, o->etag);
    b |= sqlite3_bind_int64(st, 6, o->mtime_ms);
    b |= sqlite3_bind_int64(st, 7, o->owner_id);
    b |= sqlite3_bind_int(st, 8, (int)o->storage);
    b |= sq_bind_str(st, 9, o->headers_json ? o->headers_json : "{}");
    b |= sq_bind_str(st, 10, o->layout);
    b |= sqlite3_bind_int64(st, 11, o->seq);
    b |= sqlite3_bind_int(st, 12, o->is_latest);
    b |= sqlite3_bind_int(st, 13, o->delete_marker);
    b |= sqlite3_bind_int(st, 14, o->null_version);
    return b;
}

/* A multipart version that stops being current takes its parts to the trash
 * in the same transaction: no moment in which part rows outlive their object,
 * or bytes are gone under rows that still name them. */
static int trash_parts_of(conn *w, const meta_object *old) {
    if (strncmp(old->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX)) != 0) return 0;
    sqlite3_stmt *st = sq_stmt(w, ST_OBJPARTS_TRASH);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, old->version_id) | sqlite3_bind_int64(st, 2, time_now_ms());
    int err = sq_stmt_exec_bound(w, st, b, "object parts trash");
    if (err == 0) err = sq_exec_id(w, ST_OBJPARTS_DELETE, old->version_id, "object parts delete");
    return err;
}

/* ---- the row operations of versions.c ---- */

static int v_current(void *c, const char *bucket, const char *key, size_t key_len, meta_object *out) {
    return object_read(c, bucket, 0, key, key_len, false, out);
}

/* A version of (bucket, key) by S3 id, with or without its inline bytes. */
static int version_read(conn *c, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                        const char *version_id, bool with_data, meta_object *out) {
    bool null = !strcmp(version_id, "null");
    sqlite3_stmt *st = sq_stmt(c, null ? ST_OBJ_GET_NULL : ST_OBJ_GET_VERSION);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, bucket) | sq_bind_bytes_text(st, 2, key, key_len) | sqlite3_bind_int64(st, 3, bucket_id);
    if (!null) rc |= sq_bind_str(st, 4, version_id);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? row_object(st, out, with_data)
                               : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "object version get");
    sq_stmt_done(st);
    return err;
}

static int v_find(void *c, const char *bucket, const char *key, size_t key_len, const char *version_id,
                  meta_object *out) {
    return version_read(c, bucket, 0, key, key_len, version_id, false, out);
}

static int v_noncurrent_null(void *c, const char *bucket, const char *key, size_t key_len, meta_object *out) {
    sqlite3_stmt *st = sq_stmt(c, ST_OBJ_NULL_NONCURRENT);
    if (!st) return CAIRN_EDB;
    int rc = sq_bind_str(st, 1, bucket) | sq_bind_bytes_text(st, 2, key, key_len);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? row_object(st, out, false)
                               : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "object null version");
    sq_stmt_done(st);
    return err;
}

/* Runs a statement of (bucket, key, seq). */
static int exec_version(conn *w, stmt_id id, const meta_object *o, const char *op) {
    sqlite3_stmt *st = sq_stmt(w, id);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, o->bucket) | sq_bind_bytes_text(st, 2, o->key, o->key_len) |
            sqlite3_bind_int64(st, 3, o->seq);
    return sq_stmt_exec_bound(w, st, b, op);
}

static int v_demote(void *c, const meta_object *cur) { return exec_version(c, ST_OBJ_DEMOTE, cur, "object demote"); }
static int v_remove(void *c, const meta_object *gone) { return exec_version(c, ST_OBJ_REMOVE, gone, "object remove"); }

static int v_insert(void *c, const meta_object *o) {
    conn *w = c;
    sqlite3_stmt *st = sq_stmt(w, ST_OBJ_INSERT);
    return st ? sq_stmt_exec_bound(w, st, bind_object(st, o), "object insert") : CAIRN_EDB;
}

static int v_replace(void *c, const meta_object *cur, const meta_object *o) {
    (void)cur; /* o carries cur's seq */
    conn *w = c;
    sqlite3_stmt *st = sq_stmt(w, ST_OBJ_REPLACE);
    return st ? sq_stmt_exec_bound(w, st, bind_object(st, o), "object replace") : CAIRN_EDB;
}

static int v_release(void *c, const meta_object *gone) {
    int err = gone->storage == META_STORE_INLINE ? data_delete(c, gone->version_id) : 0;
    return err == 0 ? trash_parts_of(c, gone) : err;
}

static int v_store_data(void *c, const meta_object *o) {
    return o->storage == META_STORE_INLINE && !o->delete_marker ? data_insert(c, o) : 0;
}

static int v_promote(void *c, const char *bucket, const char *key, size_t key_len) {
    conn *w = c;
    sqlite3_stmt *st = sq_stmt(w, ST_OBJ_PROMOTE);
    if (!st) return CAIRN_EDB;
    return sq_stmt_exec_bound(w, st, sq_bind_str(st, 1, bucket) | sq_bind_bytes_text(st, 2, key, key_len),
                              "object promote");
}

static meta_vops vops_of(conn *w) {
    return (meta_vops){.c = w, .current = v_current, .find = v_find, .noncurrent_null = v_noncurrent_null,
                       .demote = v_demote, .insert = v_insert, .replace = v_replace, .remove = v_remove,
                       .release = v_release, .store_data = v_store_data, .promote = v_promote};
}

int sq_object_put_tx(conn *w, const meta_object *obj, meta_object *old, bool *had_old) {
    meta_versioning state = META_VERSIONING_OFF;
    int err = sq_bucket_versioning(w, obj->bucket, obj->bucket_id, &state, NULL);
    if (err != 0) return err;
    meta_vops v = vops_of(w);
    err = meta_v_put(&v, state, obj, old, had_old);
    if (err == 0 && obj->njobs) err = sq_jobs_insert_tx(w, obj->jobs, obj->njobs);
    if (err == 0) err = sq_outbox_insert_tx(w, obj->audit);
    return err;
}

/*
 * Group commit.  A durable commit costs one fsync of the WAL (~0.2-0.5 ms
 * here), which would cap puts at a few thousand a second if each paid its
 * own.  So puts queue up; whoever finds no leader becomes it, takes the whole
 * queue and commits it as one transaction, each put inside its own SAVEPOINT
 * so that one failing put (its bucket just vanished) does not undo the others.
 * Every put returns only after the commit that contains it, so durability and
 * read-after-write are unchanged; under load many puts share one fsync.
 */
#define GROUP_MAX 128

static void run_batch(sq_store *ms, put_req *batch) {
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) {
        for (put_req *r = batch; r; r = r->next) r->err = err;
        return;
    }
    bool any_ok = false, lost = false;
    for (put_req *r = batch; r; r = r->next) {
        if (sqlite3_exec(w->db, "SAVEPOINT put", NULL, NULL, NULL) != SQLITE_OK) {
            r->err = sq_db_fail(w, sqlite3_errcode(w->db), "savepoint");
        } else {
            r->err = sq_object_put_tx(w, r->obj, &r->old, &r->had_old);
            if (r->err != 0 && sqlite3_exec(w->db, "ROLLBACK TO put", NULL, NULL, NULL) != SQLITE_OK)
                lost = true; /* the failed put's half would be committed with the others */
            sqlite3_exec(w->db, "RELEASE put", NULL, NULL, NULL);
        }
        any_ok |= r->err == 0;
        if (lost || sqlite3_get_autocommit(w->db)) {
            /* An I/O error, a full disk or no memory inside a statement
             * makes SQLite roll back the whole transaction, not just the
             * savepoint: the puts before this one are undone, and the ones
             * after would each run (and commit) on their own, outside the
             * transaction, while this batch reports them failed.  All of
             * it fails. */
            int e = r->err ? r->err : CAIRN_EDB;
            for (put_req *q = batch; q; q = q->next)
                if (q->err == 0) q->err = e;
            any_ok = false;
            break;
        }
    }
    err = sq_wtx_end(ms, any_ok ? 0 : CAIRN_EINVAL);
    if (any_ok && err != 0)
        for (put_req *r = batch; r; r = r->next)
            if (r->err == 0) r->err = err;
}

int sq_object_put(meta_store *base_, const meta_object *obj, meta_object *replaced,
                    bool *had_replaced) {
    sq_store *ms = SQ(base_);
    if (had_replaced) *had_replaced = false;
    if (!ms || !obj) return CAIRN_EINVAL;
    int err = sq_obj_validate(obj);
    if (err != 0) return err;
    put_req me;
    memset(&me, 0, sizeof me);
    me.obj = obj;
    pthread_mutex_lock(&ms->gmu);
    if (ms->qtail) ms->qtail->next = &me;
    else ms->qhead = &me;
    ms->qtail = &me;
    while (!me.done) {
        if (ms->leader) {
            pthread_cond_wait(&ms->gcv, &ms->gmu);
            continue;
        }
        /* Lead: detach up to GROUP_MAX queued puts (ours is among them). */
        ms->leader = true;
        put_req *batch = ms->qhead, *last = batch;
        for (int n = 1; n < GROUP_MAX && last->next; n++) last = last->next;
        ms->qhead = last->next;
        if (!ms->qhead) ms->qtail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&ms->gmu);
        run_batch(ms, batch);
        pthread_mutex_lock(&ms->gmu);
        for (put_req *r = batch, *nx; r; r = nx) {
            nx = r->next;
            r->done = true;
        }
        ms->leader = false;
        pthread_cond_broadcast(&ms->gcv);
    }
    pthread_mutex_unlock(&ms->gmu);
    err = me.err;
    if (err != 0 || !me.had_old) {
        meta_object_clear(&me.old);
        me.had_old = false;
    }
    if (replaced) *replaced = me.old;
    else meta_object_clear(&me.old);
    if (had_replaced) *had_replaced = me.had_old;
    return err;
}

/* Inside the writer's transaction: meta_object_delete_version. */
static int object_delete_tx(conn *w, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const char *version_id, int64_t owner_id, const char *marker_id,
                            const meta_lock_check *lock, const meta_job *jobs, int njobs,
                            const meta_audit_outbox *audit, meta_delete_result *res) {
    meta_versioning state = META_VERSIONING_OFF;
    int err = sq_bucket_versioning(w, bucket, bucket_id, &state, NULL);
    if (err != 0) return err;
    meta_vops v = vops_of(w);
    err = meta_v_delete(&v, state, bucket, key, key_len, version_id, owner_id, marker_id, lock, res);
    if (err == 0 && njobs) err = sq_jobs_insert_tx(w, jobs, njobs);
    if (err == 0) err = sq_outbox_insert_tx(w, audit);
    return err;
}

int sq_object_delete(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                     const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                     const meta_job *jobs, int njobs, const meta_audit_outbox *audit, meta_delete_result *res) {
    sq_store *ms = SQ(base_);
    memset(res, 0, sizeof *res);
    if (!ms || !bucket) return CAIRN_EINVAL;
    if (!sq_key_ok(key, key_len)) return key && key_len > KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    err = sq_wtx_end(ms, object_delete_tx(w, bucket, bucket_id, key, key_len, version_id, owner_id, marker_id, lock,
                                          jobs, njobs, audit, res));
    if (err != 0) {
        meta_delete_result_clear(res);
        memset(res, 0, sizeof *res);
    }
    return err;
}

int sq_object_get_version(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, bool with_data, meta_object *out) {
    sq_store *ms = SQ(base_);
    memset(out, 0, sizeof *out);
    if (!sq_key_ok(key, key_len)) return key && key_len > KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    int err = version_read(r, bucket, bucket_id, key, key_len, version_id, with_data, out);
    if (err == 0) out->bucket_id = bucket_id;
    sq_reader_put(ms, r);
    return err;
}

int sq_object_delete_many(meta_store *base_, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n) {
    sq_store *ms = SQ(base_);
    if (!ms || !bucket || n < 0 || n > 1000 || (n && !items)) return CAIRN_EINVAL;
    meta_delete_items_start(items, n, KEY_MAX, sq_key_ok);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) {
        /* Callers read each key's outcome: none of them was deleted. */
        meta_delete_items_undone(items, n, err);
        return err;
    }
    bool lost = false;
    for (int i = 0; i < n; i++) {
        if (items[i].rc != 0 || items[i].key_len > KEY_MAX) continue;
        /* Each key in its own savepoint: one failing key keeps the others. */
        int rc;
        if (sqlite3_exec(w->db, "SAVEPOINT del", NULL, NULL, NULL) != SQLITE_OK) {
            rc = sq_db_fail(w, sqlite3_errcode(w->db), "savepoint");
        } else {
            meta_delete_result res;
            memset(&res, 0, sizeof res);
            rc = object_delete_tx(w, bucket, bucket_id, items[i].key, items[i].key_len, items[i].version_id,
                                  items[i].owner_id, items[i].marker_id, &items[i].lock, items[i].jobs,
                                  items[i].njobs, NULL, &res);
            items[i].deleted = res.removed;
            items[i].marker = res.marker;
            items[i].deleted_marker = res.removed_marker;
            if (rc != 0 && rc != CAIRN_ENOTFOUND &&
                sqlite3_exec(w->db, "ROLLBACK TO del", NULL, NULL, NULL) != SQLITE_OK)
                lost = true; /* the failed key's half would be committed with the others */
            sqlite3_exec(w->db, "RELEASE del", NULL, NULL, NULL);
        }
        if (rc != 0) {
            meta_object_clear(&items[i].deleted);
            meta_object_clear(&items[i].marker);
            memset(&items[i].deleted, 0, sizeof items[i].deleted);
            memset(&items[i].marker, 0, sizeof items[i].marker);
            items[i].deleted_marker = false;
        }
        items[i].rc = rc == CAIRN_ENOTFOUND ? 0 : rc;
        if (lost || sqlite3_get_autocommit(w->db)) {
            /* SQLite rolled the whole transaction back (an I/O error, a
             * full disk or no memory inside a statement): the keys before
             * this one are undone, and the ones after must not run (and
             * commit) one by one outside it.  The batch fails as a whole
             * (as it does when this key's own changes cannot be undone). */
            err = rc != 0 && rc != CAIRN_ENOTFOUND ? rc : CAIRN_EDB;
            break;
        }
    }
    err = sq_wtx_end(ms, err);
    if (err != 0) meta_delete_items_undone(items, n, err); /* nothing was deleted after all */
    return err;
}



/* One object of a listing, copied out (sq_page_rows), and the query's bounds (meta_int.h). */
typedef meta_list_row list_row;
typedef meta_list_ctx list_ctx;
_Static_assert(KEY_MAX == META_LIST_KEY_MAX, "a listed key fits its row");

static int list_prepare(conn *c, void *ctx, const void *after, int fetch, sqlite3_stmt **out) {
    const list_ctx *l = ctx;
    const list_row *a = after;
    const char *lo = a ? a->key : l->lo;
    size_t lo_len = a ? a->key_len : l->lo_len;
    bool incl = a ? false : l->lo_incl;
    stmt_id id = l->hi_len ? (incl ? ST_OBJ_LIST_GE_UB : ST_OBJ_LIST_GT_UB) : (incl ? ST_OBJ_LIST_GE : ST_OBJ_LIST_GT);
    sqlite3_stmt *st = *out = sq_stmt(c, id);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, l->bucket);
    b |= sq_bind_bytes_text(st, 2, lo, lo_len);
    if (l->hi_len) b |= sq_bind_bytes_text(st, 3, l->hi, l->hi_len);
    b |= sqlite3_bind_int64(st, 4, fetch);
    b |= sqlite3_bind_int64(st, 5, l->bucket_id);
    return sq_bind_result(c, b, "object list bind");
}

static int list_copy(sqlite3_stmt *st, void *row) {
    list_row *r = row;
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    const char *key = (const char *)sqlite3_column_text(st, 0);
    if (!key) return CAIRN_ENOMEM;
    if (n > KEY_MAX) return CAIRN_EDB;
    memcpy(r->key, key, n);
    r->key[n] = '\0';
    r->key_len = n;
    r->size = sqlite3_column_int64(st, 1);
    int err = sq_col_copy(st, 2, r->etag, sizeof r->etag);
    r->mtime_ms = sqlite3_column_int64(st, 3);
    r->owner_id = sqlite3_column_int64(st, 4);
    return err;
}

static int list_deliver(void *ctx, const void *row) {
    const list_ctx *l = ctx;
    const list_row *r = row;
    meta_list_entry e = {.key = r->key, .key_len = r->key_len, .size = r->size, .etag = r->etag,
                         .mtime_ms = r->mtime_ms, .owner_id = r->owner_id};
    return l->cb(l->ud, &e);
}

static const sq_pager list_pager = {sizeof(list_row), list_prepare, list_copy, list_deliver, NULL};

int sq_object_list(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len,
                     const char *from, size_t from_len, bool inclusive, int limit,
                     int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more) {
    sq_store *ms = SQ(base_);
    if (more) *more = false;
    if (!ms || !bucket || !cb || limit < 0 || (prefix_len && !prefix) || (from_len && !from))
        return CAIRN_EINVAL;
    /* No key is longer than KEY_MAX or contains NUL: such a prefix matches nothing. */
    if (prefix_len > KEY_MAX || (prefix_len && memchr(prefix, '\0', prefix_len))) return 0;
    if (!prefix) prefix = "";

    /* One lower bound: `from` when it sorts at or after the prefix, else the
     * prefix itself (inclusive).  Two separate lower bounds in SQL would let
     * the planner seek on the wrong one and scan from the prefix start. */
    list_ctx l = {.bucket = bucket, .bucket_id = bucket_id, .lo = prefix, .lo_len = prefix_len, .lo_incl = true,
                  .cb = cb, .ud = ud};
    if (from && meta_key_cmp(from, from_len, prefix, prefix_len) >= 0) {
        l.lo = from;
        l.lo_len = from_len;
        l.lo_incl = inclusive;
    }
    char hi[KEY_MAX];
    l.hi = hi;
    l.hi_len = prefix_len ? meta_key_successor(prefix, prefix_len, hi) : 0;
    return sq_page_rows(ms, &list_pager, &l, limit, more, "object list");
}

int sq_object_count(meta_store *base_, const char *bucket, int64_t *count) {
    sq_store *ms = SQ(base_);
    if (!ms || !bucket || !count) return CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_OBJ_COUNT);
    int err = CAIRN_EDB;
    if (st) {
        int rc = sq_bind_str(st, 1, bucket);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *count = sqlite3_column_int64(st, 0);
            err = 0;
        } else {
            err = sq_db_fail(r, rc, "object count");
        }
        sq_stmt_done(st);
    }
    sq_reader_put(ms, r);
    return err;
}

/* One object of a whole-store scan, copied out. */
typedef struct {
    char bucket[64];
    char key[KEY_MAX + 1];
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

static int scan_prepare(conn *c, void *ctx, const void *after, int fetch, sqlite3_stmt **out) {
    const scan_ctx *sc = ctx;
    const scan_row *a = after;
    sqlite3_stmt *st = *out = sq_stmt(c, ST_OBJ_SCAN);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, a ? a->bucket : sc->after_bucket);
    b |= sq_bind_bytes_text(st, 2, a ? a->key : sc->after_key, a ? a->key_len : sc->after_key_len);
    b |= sqlite3_bind_int64(st, 3, fetch);
    return sq_bind_result(c, b, "object scan bind");
}

static int scan_copy(sqlite3_stmt *st, void *row) {
    scan_row *r = row;
    size_t n = (size_t)sqlite3_column_bytes(st, 1);
    const char *key = (const char *)sqlite3_column_text(st, 1);
    if (!key) return CAIRN_ENOMEM;
    if (n > KEY_MAX) return CAIRN_EDB;
    memcpy(r->key, key, n);
    r->key[n] = '\0';
    r->key_len = n;
    int err = sq_col_copy(st, 0, r->bucket, sizeof r->bucket);
    if (err == 0) err = sq_col_copy(st, 2, r->version_id, sizeof r->version_id);
    r->size = sqlite3_column_int64(st, 3);
    r->storage = sqlite3_column_int(st, 4) == META_STORE_FILE ? META_STORE_FILE : META_STORE_INLINE;
    if (err == 0) err = sq_col_copy(st, 5, r->layout, sizeof r->layout);
    return err;
}

static int scan_deliver(void *ctx, const void *row) {
    const scan_ctx *sc = ctx;
    const scan_row *r = row;
    meta_scan_entry e = {r->bucket, r->key, r->key_len, r->version_id, r->size, r->storage, r->layout};
    return sc->cb(sc->ud, &e);
}

static const sq_pager scan_pager = {sizeof(scan_row), scan_prepare, scan_copy, scan_deliver, NULL};

int sq_object_scan(meta_store *base_, const char *after_bucket, const char *after_key,
                     size_t after_key_len, int limit,
                     int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more) {
    sq_store *ms = SQ(base_);
    if (more) *more = false;
    if (!ms || !cb || limit < 0 || !after_bucket || !after_key) return CAIRN_EINVAL;
    scan_ctx sc = {after_bucket, after_key, after_key_len, cb, ud};
    return sq_page_rows(ms, &scan_pager, &sc, limit, more, "object scan");
}

/* ---- versions listing (the bounds and batching: versions.c) ---- */

static int vlist_copy(sqlite3_stmt *st, meta_vlist_row *r) {
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    const char *key = (const char *)sqlite3_column_text(st, 0);
    if (!key) return CAIRN_ENOMEM;
    if (n > KEY_MAX) return CAIRN_EDB;
    memcpy(r->key, key, n);
    r->key[n] = '\0';
    r->key_len = n;
    int err = sq_col_copy(st, 1, r->version_id, sizeof r->version_id);
    r->seq = sqlite3_column_int64(st, 2);
    r->is_latest = sqlite3_column_int(st, 3) != 0;
    r->delete_marker = sqlite3_column_int(st, 4) != 0;
    r->null_version = sqlite3_column_int(st, 5) != 0;
    r->size = sqlite3_column_int64(st, 6);
    if (err == 0) err = sq_col_copy(st, 7, r->etag, sizeof r->etag);
    r->mtime_ms = sqlite3_column_int64(st, 8);
    r->owner_id = sqlite3_column_int64(st, 9);
    return err;
}

/* Runs one listing statement, appending up to fetch - *got rows. */
static int vlist_run(conn *c, const meta_vlist *l, stmt_id id, const char *key, size_t key_len, int64_t seq, int fetch,
                     meta_vlist_row *rows, int *got) {
    sqlite3_stmt *st = sq_stmt(c, id);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, l->bucket) | sq_bind_bytes_text(st, 2, key, key_len) |
            sqlite3_bind_int64(st, 4, fetch - *got) | sqlite3_bind_int64(st, 5, l->bucket_id);
    if (id == ST_OBJ_VLIST_KEY) b |= sqlite3_bind_int64(st, 3, seq);
    if (id == ST_OBJ_VLIST_GT_UB || id == ST_OBJ_VLIST_GE_UB) b |= sq_bind_bytes_text(st, 6, l->hi, l->hi_len);
    int err = sq_bind_result(c, b, "object versions bind");
    while (err == 0 && *got < fetch) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = sq_db_fail(c, rc, "object versions");
            break;
        }
        if ((err = vlist_copy(st, &rows[*got])) == 0) (*got)++;
    }
    sq_stmt_done(st);
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
    conn *c = sq_reader_get(l->store);
    int err = 0;
    if (!incl && seq > 0) err = vlist_run(c, l, ST_OBJ_VLIST_KEY, key, key_len, seq, fetch, rows, got);
    if (err == 0 && *got < fetch) {
        stmt_id id = l->hi_len ? (incl ? ST_OBJ_VLIST_GE_UB : ST_OBJ_VLIST_GT_UB)
                               : (incl ? ST_OBJ_VLIST_GE : ST_OBJ_VLIST_GT);
        err = vlist_run(c, l, id, key, key_len, 0, fetch, rows, got);
    }
    sq_reader_put(l->store, c);
    return err;
}

int sq_object_list_versions(meta_store *base_, const char *bucket, int64_t bucket_id, const char *prefix,
                            size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                            int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more) {
    meta_vlist l = {.store = SQ(base_), .bucket = bucket, .bucket_id = bucket_id, .cb = cb, .ud = ud};
    return meta_vlist_run(&l, prefix, prefix_len, after_key, after_key_len, after_seq, limit, vlist_fetch, more);
}

int sq_object_set_headers(meta_store *base_, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                          const char *version_id, const char *expected, const char *headers_json) {
    sq_store *ms = SQ(base_);
    if (!sq_key_ok(key, key_len)) return key_len > KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    sqlite3_stmt *st = sq_stmt(w, ST_OBJ_SET_HEADERS);
    if (!st) err = CAIRN_EDB;
    if (err == 0) {
        int b = sq_bind_str(st, 1, bucket) | sq_bind_bytes_text(st, 2, key, key_len) |
                sqlite3_bind_int64(st, 3, bucket_id) | sq_bind_str(st, 4, version_id) | sq_bind_str(st, 5, headers_json) |
                (expected ? sq_bind_str(st, 6, expected) : sqlite3_bind_null(st, 6));
        err = sq_stmt_exec_bound(w, st, b, "object set headers");
        if (err == 0 && sqlite3_changes(w->db) == 0) err = CAIRN_ENOTFOUND;
    }
    return sq_wtx_end(ms, err);
}
