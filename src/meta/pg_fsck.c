/*
 * pg_fsck.c — the PostgreSQL backend (pg.c): consistency: the checks `cairn
 * admin fsck` runs on the metadata, and their repairs.  The same checks as
 * sqlite_fsck.c, in PostgreSQL's dialect; each is one full scan, fsck's
 * price.  A check's rows are streamed and counted whole; up to the limit
 * are kept, and they reach the callback after the connection is back.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

/* One query per kind; each returns (id, key). */
static const char *const problem_sql[META_PROBLEM__COUNT] = {
    [META_PROBLEM_UPLOAD_WITHOUT_BUCKET] =
        "SELECT upload_id, ''::bytea FROM uploads WHERE bucket_id NOT IN (SELECT id FROM buckets)",
    [META_PROBLEM_OBJECT_WITHOUT_BUCKET] =
        "SELECT bucket, key FROM objects WHERE bucket NOT IN (SELECT name FROM buckets)",
    [META_PROBLEM_PARTS_WITHOUT_UPLOAD] =
        "SELECT DISTINCT upload_id, ''::bytea FROM upload_parts WHERE upload_id NOT IN (SELECT upload_id FROM uploads)",
    [META_PROBLEM_PARTS_WITHOUT_OBJECT] =
        "SELECT DISTINCT version_id, ''::bytea FROM object_parts WHERE version_id NOT IN"
        " (SELECT version_id FROM objects WHERE left(layout, 3) = 'mp:')",
    /* A part count that is not a number is a mismatch too (-1 parts). */
    [META_PROBLEM_MULTIPART_MISMATCH] =
        "SELECT o.version_id, o.key FROM objects o WHERE left(o.layout, 3) = 'mp:' AND ("
        " (CASE WHEN substr(o.layout, 4) ~ '^[0-9]{1,9}$' THEN substr(o.layout, 4)::int ELSE -1 END)"
        "   <> (SELECT count(*) FROM object_parts p WHERE p.version_id = o.version_id)"
        " OR o.size <> (SELECT coalesce(sum(size), 0) FROM object_parts p WHERE p.version_id = o.version_id)"
        " OR EXISTS (SELECT 1 FROM object_parts p WHERE p.version_id = o.version_id AND p.\"offset\" <>"
        "   (SELECT coalesce(sum(q.size), 0) FROM object_parts q WHERE q.version_id = o.version_id"
        "    AND q.part_number < p.part_number)))",
    [META_PROBLEM_INLINE_WITHOUT_DATA] =
        "SELECT o.version_id, o.key FROM objects o LEFT JOIN object_data d ON d.version_id = o.version_id"
        " WHERE o.storage = 0 AND NOT o.delete_marker AND (d.version_id IS NULL OR length(d.data) <>"
        "  CASE WHEN o.headers_json LIKE '%\"cairn-sse\"%' THEN o.size + 16 * CASE WHEN o.size = 0 THEN 1"
        "  ELSE (o.size + 65535) / 65536 END ELSE o.size END)",  /* sealed: packages and tags (crypt.h) */
    [META_PROBLEM_DATA_WITHOUT_OBJECT] =
        "SELECT version_id, ''::bytea FROM object_data WHERE version_id NOT IN"
        " (SELECT version_id FROM objects WHERE storage = 0)",
    [META_PROBLEM_DUPLICATE_VERSION] =
        "SELECT v, ''::bytea FROM (SELECT version_id AS v FROM objects UNION ALL SELECT part_version_id FROM object_parts"
        " UNION ALL SELECT version_id FROM upload_parts) s GROUP BY v HAVING count(*) > 1",
};

/* Runs one check on c, rows streamed one at a time (single-row mode): all
 * are counted into *total, the first keep are copied into *rows (grown as
 * they come, as SQLite's check does), so what it holds is bounded by the
 * caller's limit, not by how many problems there are.  The result is always
 * drained, so c is reusable whatever happens. */
static int run_check(pg_conn *c, int k, int keep, meta_problem **rows, int *kept, int64_t *total) {
    const char *op = meta_problem_name((meta_problem_kind)k);
    if (!PQsendQueryParams(c->db, problem_sql[k], 0, NULL, NULL, NULL, NULL, 1)) return pg_fail(c, NULL, op);
    PQsetSingleRowMode(c->db);
    int err = 0, cap = 0;
    PGresult *r;
    while ((r = PQgetResult(c->db)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            if (total) (*total)++;
            if (err == 0 && *kept < keep && *kept == cap) {
                int ncap = cap ? cap * 2 : 16;
                meta_problem *n = realloc(*rows, (size_t)ncap * sizeof *n);
                if (n) {
                    *rows = n;
                    cap = ncap;
                } else {
                    err = CAIRN_ENOMEM;
                }
            }
            if (err == 0 && *kept < keep) {
                meta_problem *p = &(*rows)[(*kept)++];
                memset(p, 0, sizeof *p);
                p->kind = (meta_problem_kind)k;
                err = pg_copy(r, 0, 0, p->id, sizeof p->id);
                if (err == 0) err = pg_copy(r, 0, 1, p->key, sizeof p->key);
                p->key_len = (size_t)PQgetlength(r, 0, 1);
            }
        } else if (st != PGRES_TUPLES_OK && err == 0) {
            err = pg_fail(c, r, op);
        }
        PQclear(r);
    }
    return err;
}

int pg_check(meta_store *base_, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total) {
    pg_store *ms = PG(base_);
    if (total) *total = 0;
    if (!cb || limit < 0) return CAIRN_EINVAL;
    int err = 0, delivered = 0;
    bool stop = false;
    for (int k = 0; err == 0 && k < META_PROBLEM__COUNT; k++) {
        /* A check scans whole tables: fsck's price, not bounded by the
         * statement timeout meant for requests. */
        pg_conn *c;
        if ((err = pg_tx_begin(ms, &c)) != 0) break;
        meta_problem *rows = NULL;
        int kept = 0;
        err = pg_no_timeout(c);
        if (err == 0) err = run_check(c, k, limit - delivered, &rows, &kept, total);
        err = pg_tx_end(ms, c, err);
        for (int i = 0; err == 0 && i < kept && !stop; i++, delivered++) stop = cb(ud, &rows[i]) != 0;
        free(rows);
    }
    return err;
}

/* Inside the transaction: collects (version_id, layout) of the rows
 * select_sql finds for id, then runs delete_sql on id. */
static int take_rows(pg_conn *c, const char *select_sql, const char *delete_sql, const char *id,
                     meta_trash_entry **rows, int *n) {
    pg_params p = {0};
    pgp_text(&p, id);
    PGresult *r;
    int err = pg_run_sql(c, select_sql, &p, &r, NULL, "repair select");
    if (err != 0) return err;
    int nr = PQntuples(r);
    *rows = nr ? calloc((size_t)nr, sizeof **rows) : NULL;
    if (nr && !*rows) err = CAIRN_ENOMEM;
    for (int i = 0; err == 0 && i < nr; i++) {
        err = pg_copy(r, i, 0, (*rows)[i].version_id, sizeof (*rows)[i].version_id);
        if (err == 0) err = pg_copy(r, i, 1, (*rows)[i].layout, sizeof (*rows)[i].layout);
    }
    PQclear(r);
    *n = err == 0 ? nr : 0;
    if (err == 0) err = pg_run_sql(c, delete_sql, &p, NULL, NULL, "repair delete");
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

int pg_repair(meta_store *base_, const meta_problem *p,
              void (*drop)(void *ud, const char *version_id, const char *layout), void *ud) {
    pg_store *ms = PG(base_);
    if (!p) return CAIRN_EINVAL;
    const char *select_sql = NULL, *delete_sql = NULL;
    switch (p->kind) {
    case META_PROBLEM_UPLOAD_WITHOUT_BUCKET: {
        drop_adapter a = {drop, ud};
        return pg_upload_abort(base_, p->id, drop_upload_part, &a);
    }
    case META_PROBLEM_PARTS_WITHOUT_UPLOAD:
        /* The conditions are checked again in the transaction: a row that
         * gained its owner since the check is left alone. */
        select_sql = "SELECT version_id, layout FROM upload_parts WHERE upload_id = $1::text"
                     " AND upload_id NOT IN (SELECT upload_id FROM uploads) FOR UPDATE";
        delete_sql = "DELETE FROM upload_parts WHERE upload_id = $1::text"
                     " AND upload_id NOT IN (SELECT upload_id FROM uploads)";
        break;
    case META_PROBLEM_PARTS_WITHOUT_OBJECT:
        select_sql = "SELECT part_version_id, layout FROM object_parts WHERE version_id = $1::text"
                     " AND version_id NOT IN (SELECT version_id FROM objects) FOR UPDATE";
        delete_sql = "DELETE FROM object_parts WHERE version_id = $1::text"
                     " AND version_id NOT IN (SELECT version_id FROM objects)";
        break;
    case META_PROBLEM_DATA_WITHOUT_OBJECT:
        select_sql = "SELECT version_id, '' FROM object_data WHERE version_id = $1::text AND false"; /* no shards */
        delete_sql = "DELETE FROM object_data WHERE version_id = $1::text"
                     " AND version_id NOT IN (SELECT version_id FROM objects WHERE storage = 0)";
        break;
    default:
        return CAIRN_EINVAL;
    }
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    meta_trash_entry *rows = NULL;
    int n = 0;
    err = pg_tx_end(ms, c, take_rows(c, select_sql, delete_sql, p->id, &rows, &n));
    for (int i = 0; err == 0 && drop && i < n; i++) drop(ud, rows[i].version_id, rows[i].layout);
    free(rows);
    return err;
}
