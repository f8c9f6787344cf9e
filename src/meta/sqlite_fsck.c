/*
 * sqlite_fsck.c — the SQLite backend (sqlite.c): consistency: the checks `cairn admin fsck` runs on the metadata, and their repairs.
 */
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- consistency (fsck) ------------------------------------------------------------- */

static const char *const problem_names[META_PROBLEM__COUNT] = {
    [META_PROBLEM_UPLOAD_WITHOUT_BUCKET] = "upload_without_bucket",
    [META_PROBLEM_OBJECT_WITHOUT_BUCKET] = "object_without_bucket",
    [META_PROBLEM_PARTS_WITHOUT_UPLOAD] = "parts_without_upload",
    [META_PROBLEM_PARTS_WITHOUT_OBJECT] = "parts_without_object",
    [META_PROBLEM_MULTIPART_MISMATCH] = "multipart_mismatch",
    [META_PROBLEM_INLINE_WITHOUT_DATA] = "inline_without_data",
    [META_PROBLEM_DATA_WITHOUT_OBJECT] = "data_without_object",
    [META_PROBLEM_DUPLICATE_VERSION] = "duplicate_version",
};

/* One query per kind; each returns (id, key).  Full scans: fsck's price. */
static const char *const problem_sql[META_PROBLEM__COUNT] = {
    [META_PROBLEM_UPLOAD_WITHOUT_BUCKET] =
        "SELECT upload_id, '' FROM uploads WHERE bucket_id NOT IN (SELECT id FROM buckets)",
    [META_PROBLEM_OBJECT_WITHOUT_BUCKET] =
        "SELECT bucket, key FROM objects WHERE bucket NOT IN (SELECT name FROM buckets)",
    [META_PROBLEM_PARTS_WITHOUT_UPLOAD] =
        "SELECT DISTINCT upload_id, '' FROM upload_parts WHERE upload_id NOT IN (SELECT upload_id FROM uploads)",
    [META_PROBLEM_PARTS_WITHOUT_OBJECT] =
        "SELECT DISTINCT version_id, '' FROM object_parts WHERE version_id NOT IN"
        " (SELECT version_id FROM objects WHERE substr(layout, 1, 3) = 'mp:')",
    [META_PROBLEM_MULTIPART_MISMATCH] =
        "SELECT o.version_id, o.key FROM objects o WHERE substr(o.layout, 1, 3) = 'mp:' AND ("
        " CAST(substr(o.layout, 4) AS INTEGER) <> (SELECT count(*) FROM object_parts p WHERE p.version_id = o.version_id)"
        " OR o.size <> (SELECT coalesce(sum(size), 0) FROM object_parts p WHERE p.version_id = o.version_id)"
        " OR EXISTS (SELECT 1 FROM object_parts p WHERE p.version_id = o.version_id AND p.offset <>"
        "   (SELECT coalesce(sum(q.size), 0) FROM object_parts q WHERE q.version_id = o.version_id"
        "    AND q.part_number < p.part_number)))",
    [META_PROBLEM_INLINE_WITHOUT_DATA] =
        "SELECT o.version_id, o.key FROM objects o LEFT JOIN object_data d ON d.version_id = o.version_id"
        " WHERE o.storage = 0 AND o.delete_marker = 0 AND (d.version_id IS NULL OR length(d.data) <>"
        "  CASE WHEN o.headers_json LIKE '%\"cairn-sse\"%' THEN o.size + 16 * CASE WHEN o.size = 0 THEN 1"
        "  ELSE (o.size + 65535) / 65536 END ELSE o.size END)",  /* sealed: packages and tags (crypt.h) */
    [META_PROBLEM_DATA_WITHOUT_OBJECT] =
        "SELECT version_id, '' FROM object_data WHERE version_id NOT IN (SELECT version_id FROM objects WHERE storage = 0)",
    [META_PROBLEM_DUPLICATE_VERSION] =
        "SELECT v, '' FROM (SELECT version_id AS v FROM objects UNION ALL SELECT part_version_id FROM object_parts"
        " UNION ALL SELECT version_id FROM upload_parts) GROUP BY v HAVING count(*) > 1",
};

const char *meta_problem_name(meta_problem_kind kind) {
    return kind >= 0 && kind < META_PROBLEM__COUNT ? problem_names[kind] : "unknown";
}

int sq_check(meta_store *base_, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total) {
    sq_store *ms = SQ(base_);
    if (total) *total = 0;
    if (!ms || !cb || limit < 0) return CAIRN_EINVAL;
    int err = 0;
    int delivered = 0;
    bool stop = false;
    for (int k = 0; err == 0 && k < META_PROBLEM__COUNT; k++) {
        vec v = {.size = sizeof(meta_problem)};
        conn *c = sq_reader_get(ms);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, problem_sql[k], -1, &st, NULL);
        if (rc != SQLITE_OK) err = sq_db_fail(c, rc, problem_names[k]);
        while (err == 0) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) {
                err = sq_db_fail(c, rc, problem_names[k]);
                break;
            }
            if (total) (*total)++;
            if (delivered + (int)v.n >= limit) continue; /* counted, not kept */
            meta_problem *p = sq_vec_push(&v);
            if (!p) {
                err = CAIRN_ENOMEM;
                break;
            }
            memset(p, 0, sizeof *p);
            p->kind = (meta_problem_kind)k;
            err = sq_col_copy(st, 0, p->id, sizeof p->id);
            if (err == 0) err = sq_col_copy(st, 1, p->key, sizeof p->key);
            p->key_len = (size_t)sqlite3_column_bytes(st, 1);
        }
        sqlite3_finalize(st);
        sq_reader_put(ms, c);
        meta_problem *rows = v.items;
        for (size_t i = 0; err == 0 && i < v.n && !stop; i++, delivered++) stop = cb(ud, &rows[i]) != 0;
        free(rows);
    }
    return err;
}

/* Inside a write transaction: collects (version_id, layout) of the rows
 * `select_sql` finds for id, then runs `delete_sql` on id. */
static int take_rows(conn *w, const char *select_sql, const char *delete_sql, const char *id, vec *out) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(w->db, select_sql, -1, &st, NULL);
    int err = rc == SQLITE_OK ? 0 : sq_db_fail(w, rc, "repair select");
    if (err == 0) err = sq_bind_result(w, sq_bind_str(st, 1, id), "repair bind");
    while (err == 0) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = sq_db_fail(w, rc, "repair select");
            break;
        }
        meta_trash_entry *e = sq_vec_push(out);
        if (!e) {
            err = CAIRN_ENOMEM;
            break;
        }
        memset(e, 0, sizeof *e);
        err = sq_col_copy(st, 0, e->version_id, sizeof e->version_id);
        if (err == 0) err = sq_col_copy(st, 1, e->layout, sizeof e->layout);
    }
    sqlite3_finalize(st);
    if (err == 0) {
        rc = sqlite3_prepare_v2(w->db, delete_sql, -1, &st, NULL);
        err = rc == SQLITE_OK ? 0 : sq_db_fail(w, rc, "repair delete");
        if (err == 0) err = sq_bind_result(w, sq_bind_str(st, 1, id), "repair bind");
        if (err == 0 && (rc = sqlite3_step(st)) != SQLITE_DONE) err = sq_db_fail(w, rc, "repair delete");
        sqlite3_finalize(st);
    }
    return err;
}

typedef struct {
    void (*drop)(void *ud, const char *version_id, const char *layout);
    void *ud;
} drop_adapter;

static void drop_upload_part(void *ud, const meta_part *p) {
    drop_adapter *a = ud;
    if (a->drop) a->drop(a->ud, p->version_id, p->layout);
}

int sq_repair(meta_store *base_, const meta_problem *p,
                void (*drop)(void *ud, const char *version_id, const char *layout), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !p) return CAIRN_EINVAL;
    const char *select_sql = NULL, *delete_sql = NULL;
    switch (p->kind) {
    case META_PROBLEM_UPLOAD_WITHOUT_BUCKET: {
        drop_adapter a = {drop, ud};
        return sq_upload_abort(&ms->base, p->id, drop_upload_part, &a);
    }
    case META_PROBLEM_PARTS_WITHOUT_UPLOAD:
        /* The conditions are checked again in the transaction: a row that
         * gained its owner since the check is left alone. */
        select_sql = "SELECT version_id, layout FROM upload_parts WHERE upload_id = ?1"
                     " AND upload_id NOT IN (SELECT upload_id FROM uploads)";
        delete_sql = "DELETE FROM upload_parts WHERE upload_id = ?1 AND upload_id NOT IN (SELECT upload_id FROM uploads)";
        break;
    case META_PROBLEM_PARTS_WITHOUT_OBJECT:
        select_sql = "SELECT part_version_id, layout FROM object_parts WHERE version_id = ?1"
                     " AND version_id NOT IN (SELECT version_id FROM objects)";
        delete_sql = "DELETE FROM object_parts WHERE version_id = ?1 AND version_id NOT IN (SELECT version_id FROM objects)";
        break;
    case META_PROBLEM_DATA_WITHOUT_OBJECT:
        select_sql = "SELECT version_id, '' FROM object_data WHERE version_id = ?1 AND 0"; /* no shards */
        delete_sql = "DELETE FROM object_data WHERE version_id = ?1"
                     " AND version_id NOT IN (SELECT version_id FROM objects WHERE storage = 0)";
        break;
    default:
        return CAIRN_EINVAL;
    }
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    vec v = {.size = sizeof(meta_trash_entry)};
    err = sq_wtx_end(ms, take_rows(w, select_sql, delete_sql, p->id, &v));
    meta_trash_entry *rows = v.items;
    for (size_t i = 0; err == 0 && drop && i < v.n; i++) drop(ud, rows[i].version_id, rows[i].layout);
    free(rows);
    return err;
}
