/*
 * sqlite_audit.c — the SQLite backend (sqlite.c): the audit store's events
 * and the audit right of users (docs/audit.md).
 *
 * A batch is one write transaction on the writer, one INSERT OR IGNORE per
 * event (a repeated event_id inserts nothing: retried batches are never
 * duplicated), counted by sqlite3_changes.  A query is built per call
 * (meta_audit_sql: only the filters given, so the planner picks the index
 * of the most selective one) and prepared on a reader without caching; its
 * rows are copied out before the reader goes back and any callback runs.
 */
#include "meta/sqlite_int.h"

#include <stdlib.h>
#include <string.h>

int sq_user_set_audit(meta_store *base_, const char *name, bool audit) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(w->db, "UPDATE users SET audit = ?2 WHERE name = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return sq_wtx_end(ms, sq_db_fail(w, rc, "user set audit"));
    err = sq_bind_result(w, sq_bind_str(st, 1, name) | sqlite3_bind_int(st, 2, audit), "user set audit bind");
    if (err == 0) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) err = sq_db_fail(w, rc, "user set audit");
        else if (sqlite3_changes(w->db) == 0) err = CAIRN_ENOTFOUND;
    }
    sqlite3_finalize(st);
    return sq_wtx_end(ms, err);
}

static const char insert_sql[] =
    "INSERT OR IGNORE INTO audit_events(event_id, time_us, request_id, correlation_id, principal, user_name,"
    " source_address, action, bucket, key, version_id, outcome, status, error_code, bytes_in, bytes_out,"
    " duration_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

static int insert_one(conn *w, sqlite3_stmt *st, const meta_audit_event *e, int *inserted) {
    int b = sq_bind_str(st, 1, e->event_id);
    b |= sqlite3_bind_int64(st, 2, e->time_us);
    b |= sq_bind_str(st, 3, e->request_id);
    b |= sq_bind_str(st, 4, e->correlation_id);
    b |= sq_bind_str(st, 5, e->principal);
    b |= sq_bind_str(st, 6, e->user);
    b |= sq_bind_str(st, 7, e->source_address);
    b |= sq_bind_str(st, 8, e->action);
    b |= sq_bind_str(st, 9, e->bucket);
    b |= sq_bind_str(st, 10, e->key);
    b |= sq_bind_str(st, 11, e->version_id);
    b |= sq_bind_str(st, 12, e->outcome);
    b |= sqlite3_bind_int(st, 13, e->status);
    b |= sq_bind_str(st, 14, e->error_code);
    b |= sqlite3_bind_int64(st, 15, e->bytes_in);
    b |= sqlite3_bind_int64(st, 16, e->bytes_out);
    b |= sqlite3_bind_int64(st, 17, e->duration_us);
    int err = sq_bind_result(w, b, "audit insert bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) *inserted += sqlite3_changes(w->db);
        else err = sq_db_fail(w, rc, "audit insert");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

int sq_audit_insert(meta_store *base_, const meta_audit_event *ev, int n, int *inserted) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(w->db, insert_sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return sq_wtx_end(ms, sq_db_fail(w, rc, "audit insert prepare"));
    int got = 0;
    for (int i = 0; i < n && err == 0; i++) err = insert_one(w, st, &ev[i], &got);
    sqlite3_finalize(st);
    err = sq_wtx_end(ms, err);
    if (err == 0) *inserted = got;
    return err;
}

static int copy_row(sqlite3_stmt *st, meta_audit_row *row) {
    const char *t[MA__COLUMNS] = {0};
    size_t len[MA__COLUMNS] = {0};
    int64_t ints[MA__COLUMNS] = {0};
    for (int c = 0; c < MA__COLUMNS; c++) {
        if (c == MA_TIME || c == MA_STATUS || c == MA_BYTES_IN || c == MA_BYTES_OUT || c == MA_DURATION) {
            ints[c] = sqlite3_column_int64(st, c);
            continue;
        }
        t[c] = (const char *)sqlite3_column_text(st, c);
        len[c] = (size_t)sqlite3_column_bytes(st, c);
        if (!t[c] && sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM) return CAIRN_ENOMEM;
    }
    return meta_audit_row_fill(row, t, len, ints);
}

int sq_audit_query(meta_store *base_, const meta_audit_filter *f, int limit,
                   int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count) {
    sq_store *ms = SQ(base_);
    buf_t sql;
    buf_init(&sql);
    meta_audit_args a;
    meta_audit_sql(f, limit, false, &sql, &a);
    if (sql.oom) {
        buf_free(&sql);
        return CAIRN_ENOMEM;
    }
    meta_audit_row *rows = calloc((size_t)limit, sizeof *rows);
    if (!rows) {
        buf_free(&sql);
        return CAIRN_ENOMEM;
    }
    int n = 0, err = 0;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(r->db, sql.data, -1, &st, NULL);
    if (rc != SQLITE_OK) err = sq_db_fail(r, rc, "audit query prepare");
    int b = 0;
    for (int i = 0; err == 0 && i < a.n; i++)
        b |= a.is_int[i] ? sqlite3_bind_int64(st, i + 1, a.i[i]) : sq_bind_str(st, i + 1, a.s[i]);
    if (err == 0) err = sq_bind_result(r, b, "audit query bind");
    while (err == 0 && n < limit) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = sq_db_fail(r, rc, "audit query");
            break;
        }
        if ((err = copy_row(st, &rows[n])) == 0) n++;
    }
    sqlite3_finalize(st);
    sq_reader_put(ms, r);
    buf_free(&sql);
    return meta_audit_rows_deliver(rows, n, err, cb, ud, count);
}

int sq_audit_delete_before(meta_store *base_, int64_t before_us, int limit, int64_t *deleted) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(w->db,
                                "DELETE FROM audit_events WHERE event_id IN (SELECT event_id FROM audit_events"
                                " WHERE time_us < ?1 ORDER BY time_us, event_id LIMIT ?2)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return sq_wtx_end(ms, sq_db_fail(w, rc, "audit delete prepare"));
    err = sq_bind_result(w, sqlite3_bind_int64(st, 1, before_us) | sqlite3_bind_int(st, 2, limit), "audit delete bind");
    int64_t n = 0;
    if (err == 0) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) n = sqlite3_changes(w->db);
        else err = sq_db_fail(w, rc, "audit delete");
    }
    sqlite3_finalize(st);
    err = sq_wtx_end(ms, err);
    if (err == 0) *deleted = n;
    return err;
}

/* ---- the audit outbox ------------------------------------------------------------------------ */

int sq_outbox_insert_tx(conn *w, const meta_audit_outbox *a) {
    if (!a) return 0;
    sqlite3_stmt *st = sq_stmt(w, ST_OUTBOX_INSERT);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, a->origin) | sqlite3_bind_int64(st, 2, a->time_ms) |
            sq_bind_bytes_text(st, 3, a->event, a->len);
    return sq_stmt_exec_bound(w, st, b, "audit outbox insert");
}

int sq_audit_outbox_read(meta_store *base_, const char *origin, int64_t adopt_before_ms, int limit,
                         meta_outbox_row **rows, int *n) {
    sq_store *ms = SQ(base_);
    meta_outbox_row *out = calloc((size_t)limit, sizeof *out);
    if (!out) return CAIRN_ENOMEM;
    int got = 0, err = 0;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(r->db,
                                "SELECT id, time_ms, event FROM audit_outbox WHERE origin = ?1 OR time_ms < ?2"
                                " ORDER BY id LIMIT ?3",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) err = sq_db_fail(r, rc, "audit outbox read prepare");
    else
        err = sq_bind_result(r, sq_bind_str(st, 1, origin) | sqlite3_bind_int64(st, 2, adopt_before_ms) |
                                    sqlite3_bind_int(st, 3, limit),
                             "audit outbox read bind");
    while (err == 0 && got < limit) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = sq_db_fail(r, rc, "audit outbox read");
            break;
        }
        const char *ev = (const char *)sqlite3_column_text(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        out[got].event = malloc(len + 1);
        if (!out[got].event) {
            err = CAIRN_ENOMEM;
            break;
        }
        memcpy(out[got].event, ev ? ev : "", len);
        out[got].event[len] = '\0';
        out[got].len = len;
        out[got].id = sqlite3_column_int64(st, 0);
        out[got].time_ms = sqlite3_column_int64(st, 1);
        got++;
    }
    sqlite3_finalize(st);
    sq_reader_put(ms, r);
    if (err != 0) {
        meta_outbox_rows_free(out, got);
        return err;
    }
    *rows = out;
    *n = got;
    return 0;
}

int sq_audit_outbox_delete(meta_store *base_, const int64_t *ids, int n) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(w->db, "DELETE FROM audit_outbox WHERE id = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return sq_wtx_end(ms, sq_db_fail(w, rc, "audit outbox delete prepare"));
    for (int i = 0; err == 0 && i < n; i++) {
        err = sq_stmt_exec_bound(w, st, sqlite3_bind_int64(st, 1, ids[i]), "audit outbox delete");
    }
    sqlite3_finalize(st);
    return sq_wtx_end(ms, err);
}

int sq_audit_outbox_count(meta_store *base_, const char *origin, int64_t *count, int64_t *oldest_ms) {
    sq_store *ms = SQ(base_);
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = NULL;
    int err = 0;
    int rc = sqlite3_prepare_v2(r->db, "SELECT count(*), coalesce(min(time_ms), 0) FROM audit_outbox WHERE origin = ?1",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) err = sq_db_fail(r, rc, "audit outbox count prepare");
    else err = sq_bind_result(r, sq_bind_str(st, 1, origin), "audit outbox count bind");
    if (err == 0) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *count = sqlite3_column_int64(st, 0);
            *oldest_ms = sqlite3_column_int64(st, 1);
        } else {
            err = sq_db_fail(r, rc, "audit outbox count");
        }
    }
    sqlite3_finalize(st);
    sq_reader_put(ms, r);
    return err;
}
