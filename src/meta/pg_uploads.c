/*
 * pg_uploads.c — the PostgreSQL backend (pg.c): multipart uploads: uploads,
 * parts, complete and abort, and the record of completed uploads.  Mirrors
 * sqlite_uploads.c.
 *
 * Locks.  A part put holds its upload's row FOR KEY SHARE (many parts of one
 * upload go in at once) and its part's row FOR UPDATE (two uploads of one
 * part number queue, and each reports the one it replaced).  Complete and
 * abort lock the upload's row FOR UPDATE before reading its parts, so they
 * wait for part puts in flight and see every part those committed; a part
 * put that comes after finds the upload gone (CAIRN_ENOTFOUND).  Nothing can
 * leave a part row, or bytes, that no one hears of.  Lock order, everywhere:
 * bucket, upload, object (a bucket delete: bucket, its uploads).
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

int pg_row_upload(const PGresult *r, int row, void *out) {
    meta_upload *u = out;
    memset(u, 0, sizeof *u);
    int err = pg_copy(r, row, 0, u->upload_id, sizeof u->upload_id);
    if (err == 0) err = pg_copy(r, row, 1, u->bucket, sizeof u->bucket);
    if (err == 0) err = pg_copy(r, row, 2, u->key, sizeof u->key);
    u->key_len = (size_t)PQgetlength(r, row, 2);
    u->owner_id = pg_int(r, row, 3);
    u->initiated_ms = pg_int(r, row, 4);
    u->bucket_id = pg_int(r, row, 6);
    if (err == 0 && !(u->headers_json = pg_strdup(r, row, 5, "{}"))) err = CAIRN_ENOMEM;
    if (err != 0) meta_upload_clear(u);
    return err;
}

static void clear_upload(void *row) { meta_upload_clear(row); }

/* Columns: part_number, version_id, size, etag, layout, mtime_ms, offset (0
 * for an upload's parts), checksum. */
static int row_part(const PGresult *r, int row, meta_part *p, bool with_offset) {
    memset(p, 0, sizeof *p);
    p->part_number = (int)pg_int(r, row, 0);
    int err = pg_copy(r, row, 1, p->version_id, sizeof p->version_id);
    p->size = pg_int(r, row, 2);
    if (err == 0) err = pg_copy(r, row, 3, p->etag, sizeof p->etag);
    if (err == 0) err = pg_copy(r, row, 4, p->layout, sizeof p->layout);
    p->mtime_ms = pg_int(r, row, 5);
    if (with_offset) p->offset = pg_int(r, row, 6);
    if (err == 0) err = pg_copy(r, row, 7, p->checksum, sizeof p->checksum);
    return err;
}

static int copy_part(const PGresult *r, int row, void *out) { return row_part(r, row, out, false); }
static int copy_part_offset(const PGresult *r, int row, void *out) { return row_part(r, row, out, true); }

static int upload_create_tx(pg_conn *c, const meta_upload *u) {
    int64_t bucket_id = 0;
    int err = pg_bucket_lookup(c, PS_BUCKET_SHARE, u->bucket, u->bucket_id, NULL, &bucket_id);
    if (err != 0) return err;
    pg_params p = {0};
    pgp_text(&p, u->upload_id);
    pgp_text(&p, u->bucket);
    pgp_bytes(&p, u->key, u->key_len);
    pgp_int(&p, u->owner_id);
    pgp_int(&p, u->initiated_ms);
    const char *h = u->headers_json ? u->headers_json : "{}";
    pgp_bytes(&p, h, strlen(h));
    pgp_int(&p, bucket_id);
    return pg_run(c, PS_UPLOAD_INSERT, &p, NULL, NULL, "upload insert");
}

int pg_upload_create(meta_store *base_, const meta_upload *u) {
    pg_store *ms = PG(base_);
    if (!u || !sq_key_ok(u->key, u->key_len) || !sq_name_ok(u->upload_id, sizeof u->upload_id)) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    return pg_tx_end(ms, c, upload_create_tx(c, u));
}

/* Reads an upload's row with statement id (PS_UPLOAD_GET or _LOCK) on c. */
static int upload_read(pg_conn *c, pg_stmt_id id, const char *upload_id, meta_upload *u) {
    pg_params p = {0};
    pgp_text(&p, upload_id);
    PGresult *r;
    int err = pg_run(c, id, &p, &r, NULL, "upload get");
    if (err != 0) return err;
    err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : pg_row_upload(r, 0, u);
    PQclear(r);
    return err;
}

int pg_upload_get(meta_store *base_, const char *upload_id, meta_upload *out) {
    pg_store *ms = PG(base_);
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!upload_id) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    err = upload_read(c, PS_UPLOAD_GET, upload_id, out);
    pg_release(ms, c);
    return err;
}

typedef struct {
    int64_t bucket_id;
    const char *prefix, *key_marker, *upload_id_marker;
    size_t prefix_len, key_marker_len;
    int (*cb)(void *ud, const meta_upload *u);
    void *ud;
} upload_list_ctx;

static int upload_list_query(pg_conn *c, void *ctx, const void *after, int fetch, PGresult **out) {
    const upload_list_ctx *l = ctx;
    const meta_upload *a = after; /* its key and upload_id only: its headers are freed */
    pg_params p = {0};
    pgp_int(&p, l->bucket_id);
    if (a) pgp_bytes(&p, a->key, a->key_len);
    else pgp_bytes(&p, l->key_marker, l->key_marker_len);
    pgp_text(&p, a ? a->upload_id : l->upload_id_marker);
    pgp_bytes(&p, l->prefix, l->prefix_len);
    pgp_int(&p, (int64_t)l->prefix_len);
    pgp_int(&p, fetch);
    return pg_run(c, PS_UPLOAD_LIST, &p, out, NULL, "upload list");
}

static int upload_list_deliver(void *ctx, const void *row) {
    const upload_list_ctx *l = ctx;
    return l->cb(l->ud, row);
}

static const pg_pager upload_pager = {sizeof(meta_upload), upload_list_query, pg_row_upload, upload_list_deliver,
                                      clear_upload};

int pg_upload_list(meta_store *base_, int64_t bucket_id, const char *prefix, size_t prefix_len,
                   const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit,
                   int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more) {
    if (more) *more = false;
    if (bucket_id <= 0 || !cb || limit < 0) return CAIRN_EINVAL;
    /* A prefix over the key limit matches nothing; its length must also fit
     * the statement's int4 substring length. */
    if (prefix && prefix_len > PG_KEY_MAX) return 0;
    upload_list_ctx l = {bucket_id, prefix ? prefix : "", key_marker ? key_marker : "",
                         upload_id_marker ? upload_id_marker : "", prefix ? prefix_len : 0,
                         key_marker ? key_marker_len : 0, cb, ud};
    return pg_page_rows(PG(base_), &upload_pager, &l, limit, more, "upload list");
}

static int upload_share(pg_conn *c, const char *upload_id) {
    pg_params p = {0};
    pgp_text(&p, upload_id);
    PGresult *r;
    int err = pg_run(c, PS_UPLOAD_SHARE, &p, &r, NULL, "upload exists");
    if (err != 0) return err;
    err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : 0;
    PQclear(r);
    return err;
}

static void bind_part(pg_params *q, const char *upload_id, const meta_part *p) {
    pgp_text(q, upload_id);
    pgp_int(q, p->part_number);
    pgp_text(q, p->version_id);
    pgp_int(q, p->size);
    pgp_text(q, p->etag);
    pgp_text(q, p->layout);
    pgp_int(q, p->mtime_ms);
    pgp_text(q, p->checksum);
}

static int part_put_tx(pg_conn *c, const char *upload_id, const meta_part *p, meta_part *replaced,
                       bool *had_replaced) {
    int err = upload_share(c, upload_id);
    if (err != 0) return err;
    pg_params q = {0};
    bind_part(&q, upload_id, p);
    /* As for objects (pg_objects.c): lock the part's row, or insert it; a
     * lost insert race goes round to lock the winner's row.  The part this
     * one replaces is the caller's to remove, so a failed read fails the put. */
    for (;;) {
        pg_params k = {0};
        pgp_text(&k, upload_id);
        pgp_int(&k, p->part_number);
        PGresult *r;
        if ((err = pg_run(c, PS_PART_LOCK, &k, &r, NULL, "part get")) != 0) return err;
        if (PQntuples(r) > 0) {
            err = row_part(r, 0, replaced, false);
            PQclear(r);
            *had_replaced = err == 0;
            if (err == 0) err = pg_run(c, PS_PART_UPDATE, &q, NULL, NULL, "part update");
            return err;
        }
        PQclear(r);
        int64_t inserted = 0;
        err = pg_run(c, PS_PART_INSERT, &q, NULL, &inserted, "part insert");
        if (err != 0 || inserted == 1) return err;
    }
}

int pg_part_put(meta_store *base_, const char *upload_id, const meta_part *p, meta_part *replaced,
                bool *had_replaced) {
    pg_store *ms = PG(base_);
    if (had_replaced) *had_replaced = false;
    /* The replaced part's bytes are the caller's to remove: it must hear of them. */
    if (!upload_id || !p || !replaced || !had_replaced) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    err = pg_tx_end(ms, c, part_put_tx(c, upload_id, p, replaced, had_replaced));
    if (err != 0) *had_replaced = false;
    return err;
}

typedef struct {
    const char *upload_id;
    int after;
    int (*cb)(void *ud, const meta_part *p);
    void *ud;
} part_list_ctx;

static int part_list_query(pg_conn *c, void *ctx, const void *after, int fetch, PGresult **out) {
    const part_list_ctx *l = ctx;
    const meta_part *a = after;
    pg_params p = {0};
    pgp_text(&p, l->upload_id);
    pgp_int(&p, a ? a->part_number : l->after);
    pgp_int(&p, fetch);
    return pg_run(c, PS_PART_LIST, &p, out, NULL, "part list");
}

static int part_list_deliver(void *ctx, const void *row) {
    const part_list_ctx *l = ctx;
    return l->cb(l->ud, row);
}

static const pg_pager part_pager = {sizeof(meta_part), part_list_query, copy_part, part_list_deliver, NULL};

int pg_part_list(meta_store *base_, const char *upload_id, int after, int limit,
                 int (*cb)(void *ud, const meta_part *p), void *ud, bool *more) {
    if (more) *more = false;
    if (!upload_id || !cb || limit < 0) return CAIRN_EINVAL;
    part_list_ctx l = {upload_id, after, cb, ud};
    return pg_page_rows(PG(base_), &part_pager, &l, limit, more, "part list");
}

static int exec_text(pg_conn *c, pg_stmt_id id, const char *text, const char *op) {
    pg_params p = {0};
    pgp_text(&p, text);
    return pg_run(c, id, &p, NULL, NULL, op);
}

/* Inside the transaction, with the upload's row locked: reads its parts
 * (all of them: S3 allows 10,000), then removes the upload and its part
 * rows (complete and abort both end an upload so). */
static int take_parts(pg_conn *c, const char *upload_id, meta_part **parts, int *n) {
    pg_params p = {0};
    pgp_text(&p, upload_id);
    pgp_int(&p, 0);
    pgp_int(&p, 100000);
    PGresult *r;
    int err = pg_run(c, PS_PART_LIST, &p, &r, NULL, "all parts");
    if (err != 0) return err;
    err = pg_rows(r, sizeof **parts, copy_part, NULL, (void **)parts, n);
    PQclear(r);
    if (err == 0) err = exec_text(c, PS_PARTS_DELETE, upload_id, "upload parts delete");
    if (err == 0) err = exec_text(c, PS_UPLOAD_DELETE, upload_id, "upload delete");
    return err;
}

int pg_upload_take(pg_conn *c, const char *upload_id, meta_part **parts, int *n) {
    *parts = NULL;
    *n = 0;
    meta_upload u;
    int err = upload_read(c, PS_UPLOAD_LOCK, upload_id, &u);
    if (err != 0) return err;
    meta_upload_clear(&u);
    return take_parts(c, upload_id, parts, n);
}

/* The uploaded part a complete chose, as it is now (see sqlite_uploads.c). */
static const meta_part *current_part(const meta_part *uploaded, int nup, const meta_part *chosen) {
    for (int i = 0; i < nup; i++)
        if (uploaded[i].part_number == chosen->part_number)
            return strcmp(uploaded[i].version_id, chosen->version_id) == 0 ? &uploaded[i] : NULL;
    return NULL;
}

static int record_completed(pg_conn *c, const char *upload_id, const meta_object *obj, int64_t bucket_id) {
    pg_params p = {0};
    pgp_text(&p, upload_id);
    pgp_int(&p, bucket_id);
    pgp_bytes(&p, obj->key, obj->key_len);
    pgp_text(&p, obj->version_id);
    pgp_text(&p, obj->etag);
    pgp_int(&p, obj->mtime_ms);
    return pg_run(c, PS_COMPLETED_INSERT, &p, NULL, NULL, "completed upload insert");
}

/* Inside the transaction: the whole of a complete (see meta.h). */
static int complete_tx(pg_conn *c, const char *upload_id, const meta_object *obj, const meta_part *parts, int n,
                       meta_part **uploaded, int *nup, meta_object *replaced, bool *had_replaced) {
    /* The bucket first, then the upload, as a bucket delete takes them (its
     * row, then its uploads): the other order could deadlock with it.  A
     * missing bucket is ENOTFOUND either way, as a missing upload is. */
    int err = pg_bucket_lookup(c, PS_BUCKET_SHARE, obj->bucket, obj->bucket_id, NULL, NULL);
    if (err != 0) return err;
    meta_upload u;
    err = upload_read(c, PS_UPLOAD_LOCK, upload_id, &u);
    if (err != 0) return err;
    bool mine = (obj->bucket_id == 0 || u.bucket_id == obj->bucket_id) && u.key_len == obj->key_len &&
                memcmp(u.key, obj->key, obj->key_len) == 0;
    int64_t bucket_id = u.bucket_id;
    meta_upload_clear(&u);
    if (!mine) return CAIRN_ENOTFOUND;
    err = take_parts(c, upload_id, uploaded, nup);
    if (err == 0) err = pg_object_put_tx(c, obj, replaced, had_replaced);
    int64_t offset = 0;
    for (int i = 0; err == 0 && i < n; i++) {
        const meta_part *p = current_part(*uploaded, *nup, &parts[i]);
        if (!p) {
            err = CAIRN_ECONFLICT;
            break;
        }
        pg_params q = {0};
        pgp_text(&q, obj->version_id);
        pgp_int(&q, p->part_number);
        pgp_int(&q, offset);
        pgp_int(&q, p->size);
        pgp_text(&q, p->etag);
        pgp_text(&q, p->version_id);
        pgp_text(&q, p->layout);
        pgp_text(&q, p->checksum);
        err = pg_run(c, PS_OBJPART_INSERT, &q, NULL, NULL, "object part insert");
        offset += p->size;
    }
    /* The object's size was computed from the same rows the caller read. */
    if (err == 0 && offset != obj->size) err = CAIRN_ECONFLICT;
    if (err == 0) err = record_completed(c, upload_id, obj, bucket_id);
    return err;
}

int pg_upload_complete(meta_store *base_, const char *upload_id, const meta_object *obj, const meta_part *parts,
                       int n, meta_object *replaced, bool *had_replaced,
                       void (*unused)(void *ud, const meta_part *p), void *ud) {
    pg_store *ms = PG(base_);
    /* Both may be NULL, as in meta_object_put: the replaced version is then dropped. */
    meta_object replaced_local;
    bool had_local;
    if (!replaced) replaced = &replaced_local;
    if (!had_replaced) had_replaced = &had_local;
    *had_replaced = false;
    memset(replaced, 0, sizeof *replaced);
    if (!upload_id || !obj || (n > 0 && !parts)) return CAIRN_EINVAL;
    int err = sq_obj_validate(obj);
    if (err != 0) return err;
    pg_conn *c;
    err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    meta_part *uploaded = NULL;
    int nup = 0;
    err = pg_tx_end(ms, c, complete_tx(c, upload_id, obj, parts, n, &uploaded, &nup, replaced, had_replaced));
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

int pg_upload_abort(meta_store *base_, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud) {
    pg_store *ms = PG(base_);
    if (!upload_id) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    meta_part *uploaded = NULL;
    int nup = 0;
    err = pg_tx_end(ms, c, pg_upload_take(c, upload_id, &uploaded, &nup));
    if (err == 0 && parts)
        for (int i = 0; i < nup; i++) parts(ud, &uploaded[i]);
    free(uploaded);
    return err;
}

int pg_object_parts(meta_store *base_, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud) {
    if (!version_id || !cb) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, version_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_OBJPART_LIST, &p, &r, NULL, "object parts");
    if (err != 0) return err;
    meta_part *rows;
    int n;
    err = pg_rows(r, sizeof *rows, copy_part_offset, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_upload_completed_get(meta_store *base_, const char *upload_id, meta_completed_upload *out) {
    if (!upload_id || !out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    pg_params p = {0};
    pgp_text(&p, upload_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_COMPLETED_GET, &p, &r, NULL, "completed get");
    if (err != 0) return err;
    if (PQntuples(r) == 0) {
        err = CAIRN_ENOTFOUND;
    } else {
        err = pg_copy(r, 0, 0, out->upload_id, sizeof out->upload_id);
        out->bucket_id = pg_int(r, 0, 1);
        if (err == 0) err = pg_copy(r, 0, 2, out->key, sizeof out->key);
        out->key_len = (size_t)PQgetlength(r, 0, 2);
        if (err == 0) err = pg_copy(r, 0, 3, out->version_id, sizeof out->version_id);
        if (err == 0) err = pg_copy(r, 0, 4, out->etag, sizeof out->etag);
        out->completed_ms = pg_int(r, 0, 5);
    }
    PQclear(r);
    return err;
}

int pg_upload_completed_prune(meta_store *base_, int64_t before_ms, int limit, int64_t *deleted) {
    if (deleted) *deleted = 0;
    if (limit < 1) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, before_ms);
    pgp_int(&p, limit);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_COMPLETED_PRUNE, &p, NULL, &changes, "completed uploads prune");
    if (deleted) *deleted = err ? 0 : changes;
    return err;
}

int pg_upload_list_older(meta_store *base_, int64_t before_ms, int limit,
                         int (*cb)(void *ud, const meta_upload *u), void *ud) {
    if (!cb || limit < 0) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, before_ms);
    pgp_int(&p, limit);
    PGresult *r;
    int err = pg_read(PG(base_), PS_UPLOAD_OLDER, &p, &r, NULL, "upload older");
    if (err != 0) return err;
    meta_upload *rows;
    int n;
    err = pg_rows(r, sizeof *rows, pg_row_upload, clear_upload, (void **)&rows, &n);
    PQclear(r);
    bool stop = false;
    for (int i = 0; i < n; i++) {
        if (err == 0 && !stop) stop = cb(ud, &rows[i]) != 0;
        meta_upload_clear(&rows[i]);
    }
    free(rows);
    return err;
}
