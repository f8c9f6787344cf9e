/*
 * sqlite_uploads.c — the SQLite backend (sqlite.c): multipart uploads: uploads, parts, complete and abort, and the record of completed uploads.
 */
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- multipart uploads -------------------------------------------------------------- */

void meta_upload_clear(meta_upload *u) {
    if (!u) return;
    free(u->headers_json);
    u->headers_json = NULL;
}

int sq_row_upload(sqlite3_stmt *st, meta_upload *u) {
    memset(u, 0, sizeof *u);
    int err = sq_col_copy(st, 0, u->upload_id, sizeof u->upload_id);
    if (err == 0) err = sq_col_copy(st, 1, u->bucket, sizeof u->bucket);
    if (err == 0) err = sq_col_copy(st, 2, u->key, sizeof u->key);
    u->key_len = (size_t)sqlite3_column_bytes(st, 2);
    u->owner_id = sqlite3_column_int64(st, 3);
    u->initiated_ms = sqlite3_column_int64(st, 4);
    const char *h = (const char *)sqlite3_column_text(st, 5);
    u->bucket_id = sqlite3_column_int64(st, 6);
    if (err == 0 && !(u->headers_json = strdup(h ? h : "{}"))) err = CAIRN_ENOMEM;
    if (err != 0) meta_upload_clear(u);
    return err;
}

/* Columns: part_number, version_id, size, etag, layout, mtime_ms, offset
 * (0 for an upload's parts), checksum.  CAIRN_EDB for a row whose text does not fit (never written by us). */
static int row_part(sqlite3_stmt *st, meta_part *p, bool with_offset) {
    memset(p, 0, sizeof *p);
    p->part_number = sqlite3_column_int(st, 0);
    int err = sq_col_copy(st, 1, p->version_id, sizeof p->version_id);
    p->size = sqlite3_column_int64(st, 2);
    if (err == 0) err = sq_col_copy(st, 3, p->etag, sizeof p->etag);
    if (err == 0) err = sq_col_copy(st, 4, p->layout, sizeof p->layout);
    p->mtime_ms = sqlite3_column_int64(st, 5);
    if (with_offset) p->offset = sqlite3_column_int64(st, 6);
    if (err == 0) err = sq_col_copy(st, 7, p->checksum, sizeof p->checksum);
    return err;
}

int sq_upload_create(meta_store *base_, const meta_upload *u) {
    sq_store *ms = SQ(base_);
    if (!ms || !u || !sq_key_ok(u->key, u->key_len) || !sq_name_ok(u->upload_id, sizeof u->upload_id)) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    int64_t bucket_id = 0;
    err = sq_bucket_lookup(w, u->bucket, u->bucket_id, NULL, &bucket_id);
    sqlite3_stmt *st = err == 0 ? sq_stmt(w, ST_UPLOAD_INSERT) : NULL;
    if (err == 0 && !st) err = CAIRN_EDB;
    if (err == 0) {
        int b = sq_bind_str(st, 1, u->upload_id) | sq_bind_str(st, 2, u->bucket) |
                sq_bind_bytes_text(st, 3, u->key, u->key_len) | sqlite3_bind_int64(st, 4, u->owner_id) |
                sqlite3_bind_int64(st, 5, u->initiated_ms) | sq_bind_str(st, 6, u->headers_json ? u->headers_json : "{}") |
                sqlite3_bind_int64(st, 7, bucket_id);
        err = sq_stmt_exec_bound(w, st, b, "upload insert");
    }
    return sq_wtx_end(ms, err);
}

int sq_upload_get(meta_store *base_, const char *upload_id, meta_upload *out) {
    sq_store *ms = SQ(base_);
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms || !upload_id) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_UPLOAD_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, upload_id), "upload get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) err = sq_row_upload(st, out);
        else err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "upload get");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

typedef struct {
    int64_t bucket_id;
    const char *prefix, *key_marker, *upload_id_marker;
    size_t prefix_len, key_marker_len;
    int (*cb)(void *ud, const meta_upload *u);
    void *ud;
} upload_list_ctx;

static int upload_list_prepare(conn *c, void *ctx, const void *after, int fetch, sqlite3_stmt **out) {
    const upload_list_ctx *l = ctx;
    const meta_upload *a = after; /* its key and upload_id only: its headers are freed */
    sqlite3_stmt *st = *out = sq_stmt(c, ST_UPLOAD_LIST);
    if (!st) return CAIRN_EDB;
    int b = sqlite3_bind_int64(st, 1, l->bucket_id);
    b |= a ? sq_bind_str(st, 2, a->key) : sq_bind_bytes_text(st, 2, l->key_marker, l->key_marker_len);
    b |= sq_bind_str(st, 3, a ? a->upload_id : l->upload_id_marker);
    b |= sq_bind_bytes_text(st, 4, l->prefix, l->prefix_len);
    b |= sqlite3_bind_int64(st, 5, (int64_t)l->prefix_len);
    b |= sqlite3_bind_int64(st, 6, fetch);
    return sq_bind_result(c, b, "upload list bind");
}

static int upload_list_copy(sqlite3_stmt *st, void *row) { return sq_row_upload(st, row); }

static int upload_list_deliver(void *ctx, const void *row) {
    const upload_list_ctx *l = ctx;
    return l->cb(l->ud, row);
}

static void upload_list_clear(void *row) { meta_upload_clear(row); }

static const sq_pager upload_pager = {sizeof(meta_upload), upload_list_prepare, upload_list_copy,
                                      upload_list_deliver, upload_list_clear};

int sq_upload_list(meta_store *base_, int64_t bucket_id, const char *prefix, size_t prefix_len,
                     const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit,
                     int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more) {
    sq_store *ms = SQ(base_);
    if (more) *more = false;
    if (!ms || bucket_id <= 0 || !cb || limit < 0) return CAIRN_EINVAL;
    upload_list_ctx l = {bucket_id, prefix ? prefix : "", key_marker ? key_marker : "",
                         upload_id_marker ? upload_id_marker : "", prefix ? prefix_len : 0,
                         key_marker ? key_marker_len : 0, cb, ud};
    return sq_page_rows(ms, &upload_pager, &l, limit, more, "upload list");
}

static int upload_exists(conn *w, const char *upload_id) {
    sqlite3_stmt *st = sq_stmt(w, ST_UPLOAD_GET);
    if (!st) return CAIRN_EDB;
    int err = sq_bind_result(w, sq_bind_str(st, 1, upload_id), "upload exists bind");
    int rc = err ? SQLITE_OK : sqlite3_step(st);
    sq_stmt_done(st);
    return err ? err : rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : CAIRN_EDB;
}

int sq_part_put(meta_store *base_, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced) {
    sq_store *ms = SQ(base_);
    if (had_replaced) *had_replaced = false;
    /* The replaced part's bytes are the caller's to remove: it must hear of them. */
    if (!ms || !upload_id || !p || !replaced || !had_replaced) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    err = upload_exists(w, upload_id);
    if (err == 0) {
        /* The part this one replaces: its bytes go once this commits.  A
         * failed read here must fail the put, or they would stay forever. */
        sqlite3_stmt *st = sq_stmt(w, ST_PART_GET);
        if (!st) err = CAIRN_EDB;
        else if ((err = sq_bind_result(w, sq_bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, p->part_number),
                                    "part get bind")) == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                err = row_part(st, replaced, false);
                *had_replaced = err == 0;
            } else if (rc != SQLITE_DONE) {
                err = sq_db_fail(w, rc, "part get");
            }
        }
        if (st) sq_stmt_done(st);
    }
    if (err == 0) {
        sqlite3_stmt *st = sq_stmt(w, ST_PART_UPSERT);
        if (!st) err = CAIRN_EDB;
        else {
            int b = sq_bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, p->part_number) | sq_bind_str(st, 3, p->version_id) |
                    sqlite3_bind_int64(st, 4, p->size) | sq_bind_str(st, 5, p->etag) | sq_bind_str(st, 6, p->layout) |
                    sqlite3_bind_int64(st, 7, p->mtime_ms) | sq_bind_str(st, 8, p->checksum);
            err = sq_stmt_exec_bound(w, st, b, "part upsert");
        }
    }
    err = sq_wtx_end(ms, err);
    if (err != 0) *had_replaced = false;
    return err;
}

typedef struct {
    const char *upload_id;
    int after;
    int (*cb)(void *ud, const meta_part *p);
    void *ud;
} part_list_ctx;

static int part_list_prepare(conn *c, void *ctx, const void *after, int fetch, sqlite3_stmt **out) {
    const part_list_ctx *l = ctx;
    const meta_part *a = after;
    sqlite3_stmt *st = *out = sq_stmt(c, ST_PART_LIST);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, l->upload_id) | sqlite3_bind_int(st, 2, a ? a->part_number : l->after) |
            sqlite3_bind_int64(st, 3, fetch);
    return sq_bind_result(c, b, "part list bind");
}

static int part_list_copy(sqlite3_stmt *st, void *row) { return row_part(st, row, false); }

static int part_list_deliver(void *ctx, const void *row) {
    const part_list_ctx *l = ctx;
    return l->cb(l->ud, row);
}

static const sq_pager part_pager = {sizeof(meta_part), part_list_prepare, part_list_copy, part_list_deliver, NULL};

int sq_part_list(meta_store *base_, const char *upload_id, int after, int limit,
                   int (*cb)(void *ud, const meta_part *p), void *ud, bool *more) {
    sq_store *ms = SQ(base_);
    if (more) *more = false;
    if (!ms || !upload_id || !cb || limit < 0) return CAIRN_EINVAL;
    part_list_ctx l = {upload_id, after, cb, ud};
    return sq_page_rows(ms, &part_pager, &l, limit, more, "part list");
}

/* Reads every part row of an upload (inside the writer's transaction). */
static int all_parts(conn *w, const char *upload_id, meta_part **out, int *n) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = sq_stmt(w, ST_PART_LIST);
    if (!st) return CAIRN_EDB;
    int err = sq_bind_result(w, sq_bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, 0) | sqlite3_bind_int(st, 3, 100000),
                          "all parts bind");
    if (err) {
        sq_stmt_done(st);
        return err;
    }
    vec v = {.size = sizeof(meta_part)};
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = CAIRN_EDB; break; }
        meta_part *row = sq_vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        if ((err = row_part(st, row, false)) != 0) break;
    }
    sq_stmt_done(st);
    *out = v.items;
    *n = (int)v.n;
    return err;
}

int sq_exec_id(conn *w, stmt_id id, const char *text, const char *op) {
    sqlite3_stmt *st = sq_stmt(w, id);
    if (!st) return CAIRN_EDB;
    return sq_stmt_exec_bound(w, st, sq_bind_str(st, 1, text), op);
}

/* Reads an upload's row inside the writer's transaction; ENOTFOUND. */
static int upload_read(conn *w, const char *upload_id, meta_upload *u) {
    sqlite3_stmt *st = sq_stmt(w, ST_UPLOAD_GET);
    if (!st) return CAIRN_EDB;
    int err = sq_bind_result(w, sq_bind_str(st, 1, upload_id), "upload get bind");
    if (err) {
        sq_stmt_done(st);
        return err;
    }
    int rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? sq_row_upload(st, u) : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(w, rc, "upload get");
    sq_stmt_done(st);
    return err;
}

/* Inside the writer's transaction: reads an upload's parts, then removes the
 * upload and its part rows (complete and abort both end an upload so). */
static int take_upload(conn *w, const char *upload_id, meta_part **parts, int *n) {
    int err = upload_exists(w, upload_id);
    if (err == 0) err = all_parts(w, upload_id, parts, n);
    if (err == 0) err = sq_exec_id(w, ST_PARTS_DELETE, upload_id, "upload parts delete");
    if (err == 0) err = sq_exec_id(w, ST_UPLOAD_DELETE, upload_id, "upload delete");
    return err;
}

/* The uploaded part a complete chose, as it is now: the same version, or
 * NULL when a re-upload replaced it (or it is gone) since the list was read. */
static const meta_part *current_part(const meta_part *uploaded, int nup, const meta_part *chosen) {
    for (int i = 0; i < nup; i++)
        if (uploaded[i].part_number == chosen->part_number)
            return strcmp(uploaded[i].version_id, chosen->version_id) == 0 ? &uploaded[i] : NULL;
    return NULL;
}

static int record_completed(conn *w, const char *upload_id, const meta_object *obj, int64_t bucket_id) {
    sqlite3_stmt *st = sq_stmt(w, ST_COMPLETED_INSERT);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, upload_id) | sqlite3_bind_int64(st, 2, bucket_id) |
            sq_bind_bytes_text(st, 3, obj->key, obj->key_len) | sq_bind_str(st, 4, obj->version_id) |
            sq_bind_str(st, 5, obj->etag) | sqlite3_bind_int64(st, 6, obj->mtime_ms);
    return sq_stmt_exec_bound(w, st, b, "completed upload insert");
}

/* Inside the writer's transaction: the whole of a complete (see meta.h). */
static int complete_tx(conn *w, const char *upload_id, const meta_object *obj, const meta_part *parts, int n,
                       meta_part **uploaded, int *nup, meta_object *replaced, bool *had_replaced) {
    meta_upload u;
    int err = upload_read(w, upload_id, &u);
    if (err != 0) return err;
    bool mine = (obj->bucket_id == 0 || u.bucket_id == obj->bucket_id) && u.key_len == obj->key_len &&
                memcmp(u.key, obj->key, obj->key_len) == 0;
    int64_t bucket_id = u.bucket_id;
    meta_upload_clear(&u);
    if (!mine) return CAIRN_ENOTFOUND;
    err = take_upload(w, upload_id, uploaded, nup);
    if (err == 0) err = sq_object_put_tx(w, obj, replaced, had_replaced);
    int64_t offset = 0;
    for (int i = 0; err == 0 && i < n; i++) {
        const meta_part *p = current_part(*uploaded, *nup, &parts[i]);
        if (!p) {
            err = CAIRN_ECONFLICT;
            break;
        }
        sqlite3_stmt *st = sq_stmt(w, ST_OBJPART_INSERT);
        if (!st) { err = CAIRN_EDB; break; }
        int b = sq_bind_str(st, 1, obj->version_id) | sqlite3_bind_int(st, 2, p->part_number) |
                sqlite3_bind_int64(st, 3, offset) | sqlite3_bind_int64(st, 4, p->size) |
                sq_bind_str(st, 5, p->etag) | sq_bind_str(st, 6, p->version_id) | sq_bind_str(st, 7, p->layout) |
                sq_bind_str(st, 8, p->checksum);
        err = sq_stmt_exec_bound(w, st, b, "object part insert");
        offset += p->size;
    }
    /* The object's size was computed from the same rows the caller read. */
    if (err == 0 && offset != obj->size) err = CAIRN_ECONFLICT;
    if (err == 0) err = record_completed(w, upload_id, obj, bucket_id);
    return err;
}

int sq_upload_complete(meta_store *base_, const char *upload_id, const meta_object *obj, const meta_part *parts,
                         int n, meta_object *replaced, bool *had_replaced,
                         void (*unused)(void *ud, const meta_part *p), void *ud) {
    sq_store *ms = SQ(base_);
    /* Both may be NULL, as in meta_object_put: the replaced version is then dropped. */
    meta_object replaced_local;
    bool had_local;
    if (!replaced) replaced = &replaced_local;
    if (!had_replaced) had_replaced = &had_local;
    *had_replaced = false;
    memset(replaced, 0, sizeof *replaced);
    if (!ms || !upload_id || !obj || (n > 0 && !parts)) return CAIRN_EINVAL;
    int err = sq_obj_validate(obj);
    if (err != 0) return err;
    conn *w;
    err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    meta_part *uploaded = NULL;
    int nup = 0;
    err = sq_wtx_end(ms, complete_tx(w, upload_id, obj, parts, n, &uploaded, &nup, replaced, had_replaced));
    if (err == 0 && unused) {
        for (int i = 0; i < nup; i++) {
            bool chosen = false;
            for (int j = 0; j < n && !chosen; j++)
                chosen = parts[j].part_number == uploaded[i].part_number && !strcmp(parts[j].version_id, uploaded[i].version_id);
            if (!chosen) unused(ud, &uploaded[i]);
        }
    }
    if (err != 0) {
        meta_object_clear(replaced);
        *had_replaced = false;
    }
    free(uploaded);
    if (replaced == &replaced_local) meta_object_clear(&replaced_local);
    return err;
}

int sq_upload_abort(meta_store *base_, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !upload_id) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    meta_part *uploaded = NULL;
    int nup = 0;
    err = take_upload(w, upload_id, &uploaded, &nup);
    err = sq_wtx_end(ms, err);
    if (err == 0 && parts)
        for (int i = 0; i < nup; i++) parts(ud, &uploaded[i]);
    free(uploaded);
    return err;
}

int sq_object_parts(meta_store *base_, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !version_id || !cb) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_OBJPART_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, version_id), "object parts bind");
    vec v = {.size = sizeof(meta_part)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = sq_db_fail(c, rc, "object parts"); break; }
        meta_part *row = sq_vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_part(st, row, true);
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    meta_part *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}


int sq_upload_completed_get(meta_store *base_, const char *upload_id, meta_completed_upload *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !upload_id || !out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_COMPLETED_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, upload_id), "completed get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            err = sq_col_copy(st, 0, out->upload_id, sizeof out->upload_id);
            out->bucket_id = sqlite3_column_int64(st, 1);
            if (err == 0) err = sq_col_copy(st, 2, out->key, sizeof out->key);
            out->key_len = (size_t)sqlite3_column_bytes(st, 2);
            if (err == 0) err = sq_col_copy(st, 3, out->version_id, sizeof out->version_id);
            if (err == 0) err = sq_col_copy(st, 4, out->etag, sizeof out->etag);
            out->completed_ms = sqlite3_column_int64(st, 5);
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "completed get");
        }
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

typedef struct { int64_t before; int limit; } prune_args;

static int bind_prune(sqlite3_stmt *st, const void *p) {
    const prune_args *a = p;
    return sqlite3_bind_int64(st, 1, a->before) | sqlite3_bind_int(st, 2, a->limit);
}

int sq_upload_completed_prune(meta_store *base_, int64_t before_ms, int limit, int64_t *deleted) {
    sq_store *ms = SQ(base_);
    if (deleted) *deleted = 0;
    if (!ms || limit < 1) return CAIRN_EINVAL;
    prune_args a = {before_ms, limit};
    int changes = 0;
    int err = sq_write_one(ms, ST_COMPLETED_PRUNE, bind_prune, &a, &changes, "completed uploads prune");
    if (deleted) *deleted = err ? 0 : changes;
    return err;
}
