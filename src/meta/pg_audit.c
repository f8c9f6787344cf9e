/*
 * pg_audit.c — the PostgreSQL backend (pg.c): the audit store's events and
 * the audit right of users.  Mirrors sqlite_audit.c: a batch is one
 * transaction of INSERT ... ON CONFLICT (event_id) DO NOTHING, a chunk of
 * events per statement, counted by the rows it changed, so gateways retrying the same batch at
 * once insert each event once (the primary key decides); a query is built
 * per call (meta_audit_sql) and run unprepared, its rows copied out before
 * the connection goes back.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

int pg_user_set_audit(meta_store *base_, const char *name, bool audit) {
    pg_params p = {0};
    pgp_text(&p, name);
    pgp_bool(&p, audit);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_USER_SET_AUDIT, &p, NULL, &changes, "user set audit");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

/* A batch goes in chunks of CHUNK events, one statement each: every column
 * is one array in PostgreSQL's text form ({"v1","v2"} for text, {1,2} for
 * integers), sent as a text-format parameter.  One round trip per chunk
 * instead of one per event. */
#define CHUNK 1000
#define NCOLS 17

static void array_text(buf_t *b, const char *s) {
    if (b->len > 1) buf_putc(b, ','); /* after the '{', every element but the first */
    buf_putc(b, '"');
    for (const char *q = s ? s : ""; *q; q++) {
        if (*q == '"' || *q == '\\') buf_putc(b, '\\');
        buf_putc(b, *q);
    }
    buf_putc(b, '"');
}

static void array_int(buf_t *b, int64_t v) {
    if (b->len > 1) buf_putc(b, ',');
    buf_printf(b, "%lld", (long long)v);
}

static int insert_chunk(pg_conn *c, const meta_audit_event *const *ev, int n, buf_t col[NCOLS], int *inserted) {
    for (int k = 0; k < NCOLS; k++) {
        buf_reset(&col[k]);
        buf_putc(&col[k], '{');
    }
    for (int i = 0; i < n; i++) {
        const meta_audit_event *e = ev[i];
        array_text(&col[0], e->event_id);
        array_int(&col[1], e->time_us);
        array_text(&col[2], e->request_id);
        array_text(&col[3], e->correlation_id);
        array_text(&col[4], e->principal);
        array_text(&col[5], e->user);
        array_text(&col[6], e->source_address);
        array_text(&col[7], e->action);
        array_text(&col[8], e->bucket);
        array_text(&col[9], e->key);
        array_text(&col[10], e->version_id);
        array_text(&col[11], e->outcome);
        array_int(&col[12], e->status);
        array_text(&col[13], e->error_code);
        array_int(&col[14], e->bytes_in);
        array_int(&col[15], e->bytes_out);
        array_int(&col[16], e->duration_us);
    }
    pg_params p = {0};
    for (int k = 0; k < NCOLS; k++) {
        buf_putc(&col[k], '}');
        buf_putc(&col[k], '\0');
        if (col[k].oom) return CAIRN_ENOMEM;
        p.values[k] = col[k].data;
        p.lengths[k] = 0;
        p.formats[k] = 0; /* text: array_in parses it */
    }
    p.n = NCOLS;
    int64_t changes = 0;
    int err = pg_run(c, PS_AUDIT_INSERT, &p, NULL, &changes, "audit insert");
    if (err == 0) *inserted += (int)changes;
    return err;
}

static int by_event_id(const void *a, const void *b) {
    return strcmp((*(const meta_audit_event *const *)a)->event_id, (*(const meta_audit_event *const *)b)->event_id);
}

/* The events go in in event_id order: a batch waits on another's
 * uncommitted insert of the same id (the unique index), and two batches
 * that share ids in different orders would otherwise deadlock (two
 * gateways replaying overlapping batches at once). */
int pg_audit_insert(meta_store *base_, const meta_audit_event *ev, int n, int *inserted) {
    pg_store *ms = PG(base_);
    const meta_audit_event **order = malloc((size_t)n * sizeof *order);
    if (!order) return CAIRN_ENOMEM;
    for (int i = 0; i < n; i++) order[i] = &ev[i];
    qsort(order, (size_t)n, sizeof *order, by_event_id);
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) {
        free(order);
        return err;
    }
    buf_t col[NCOLS];
    for (int k = 0; k < NCOLS; k++) buf_init(&col[k]);
    int got = 0;
    for (int i = 0; i < n && err == 0; i += CHUNK) err = insert_chunk(c, order + i, n - i < CHUNK ? n - i : CHUNK, col, &got);
    for (int k = 0; k < NCOLS; k++) buf_free(&col[k]);
    free(order);
    err = pg_tx_end(ms, c, err);
    if (err == 0) *inserted = got;
    return err;
}

static int copy_row(const PGresult *r, int row, meta_audit_row *out) {
    const char *t[MA__COLUMNS] = {0};
    size_t len[MA__COLUMNS] = {0};
    int64_t ints[MA__COLUMNS] = {0};
    for (int c = 0; c < MA__COLUMNS; c++) {
        if (c == MA_TIME || c == MA_STATUS || c == MA_BYTES_IN || c == MA_BYTES_OUT || c == MA_DURATION) {
            ints[c] = pg_int(r, row, c);
            continue;
        }
        t[c] = PQgetvalue(r, row, c);
        len[c] = (size_t)PQgetlength(r, row, c);
    }
    return meta_audit_row_fill(out, t, len, ints);
}

int pg_audit_query(meta_store *base_, const meta_audit_filter *f, int limit,
                   int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count) {
    pg_store *ms = PG(base_);
    buf_t sql;
    buf_init(&sql);
    meta_audit_args a;
    meta_audit_sql(f, limit, true, &sql, &a);
    if (sql.oom) {
        buf_free(&sql);
        return CAIRN_ENOMEM;
    }
    pg_params p = {0};
    for (int i = 0; i < a.n; i++) {
        if (a.is_int[i]) pgp_int(&p, a.i[i]);
        else pgp_text(&p, a.s[i]);
    }
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    PGresult *res = NULL;
    if (err == 0) {
        err = pg_run_sql(c, sql.data, &p, &res, NULL, "audit query");
        pg_release(ms, c);
    }
    buf_free(&sql);
    if (err != 0) return err;
    int n = PQntuples(res);
    if (n > limit) n = limit;
    meta_audit_row *rows = calloc((size_t)(n ? n : 1), sizeof *rows);
    if (!rows) err = CAIRN_ENOMEM;
    int copied = 0;
    for (int i = 0; err == 0 && i < n; i++)
        if ((err = copy_row(res, i, &rows[i])) == 0) copied++;
    PQclear(res);
    return meta_audit_rows_deliver(rows, copied, err, cb, ud, count);
}

int pg_audit_delete_before(meta_store *base_, int64_t before_us, int limit, int64_t *deleted) {
    pg_params p = {0};
    pgp_int(&p, before_us);
    pgp_int(&p, limit);
    pg_conn *c;
    int err = pg_acquire(PG(base_), &c);
    if (err != 0) return err;
    int64_t changes = 0;
    err = pg_run_sql(c,
                     "DELETE FROM audit_events WHERE event_id IN (SELECT event_id FROM audit_events"
                     " WHERE time_us < $1::int8 ORDER BY time_us, event_id LIMIT $2::int8)",
                     &p, NULL, &changes, "audit delete");
    pg_release(PG(base_), c);
    if (err == 0) *deleted = changes;
    return err;
}

/* ---- the audit outbox ------------------------------------------------------------------------ */

int pg_outbox_insert_tx(pg_conn *c, const meta_audit_outbox *a) {
    if (!a) return 0;
    pg_params p = {0};
    pgp_text(&p, a->origin);
    pgp_int(&p, a->time_ms);
    pgp_text(&p, a->event); /* NUL-free and NUL-terminated: the pipeline's buffer */
    return pg_run(c, PS_OUTBOX_INSERT, &p, NULL, NULL, "audit outbox insert");
}

int pg_audit_outbox_read(meta_store *base_, const char *origin, int64_t adopt_before_ms, int limit,
                         meta_outbox_row **rows, int *n) {
    pg_params p = {0};
    pgp_text(&p, origin);
    pgp_int(&p, adopt_before_ms);
    pgp_int(&p, limit);
    pg_conn *c;
    int err = pg_acquire(PG(base_), &c);
    if (err != 0) return err;
    PGresult *r = NULL;
    err = pg_run_sql(c,
                     "SELECT id, time_ms, event FROM audit_outbox WHERE origin = $1::text OR time_ms < $2::int8"
                     " ORDER BY id LIMIT $3::int8",
                     &p, &r, NULL, "audit outbox read");
    pg_release(PG(base_), c);
    if (err != 0) return err;
    int got = PQntuples(r);
    meta_outbox_row *out = calloc(got ? (size_t)got : 1, sizeof *out);
    if (!out) err = CAIRN_ENOMEM;
    for (int i = 0; err == 0 && i < got; i++) {
        out[i].id = pg_int(r, i, 0);
        out[i].time_ms = pg_int(r, i, 1);
        out[i].event = pg_strdup(r, i, 2, "");
        if (!out[i].event) err = CAIRN_ENOMEM;
        else out[i].len = strlen(out[i].event);
    }
    PQclear(r);
    if (err != 0) {
        meta_outbox_rows_free(out, got);
        return err;
    }
    *rows = out;
    *n = got;
    return 0;
}

int pg_audit_outbox_delete(meta_store *base_, const int64_t *ids, int n) {
    pg_params p = {0};
    buf_t list;
    buf_init(&list);
    buf_putc(&list, '{');
    for (int i = 0; i < n; i++) buf_printf(&list, "%s%lld", i ? "," : "", (long long)ids[i]);
    buf_putc(&list, '}');
    if (list.oom) {
        buf_free(&list);
        return CAIRN_ENOMEM;
    }
    pgp_text(&p, list.data);
    pg_conn *c;
    int err = pg_acquire(PG(base_), &c);
    if (err == 0) {
        err = pg_run_sql(c, "DELETE FROM audit_outbox WHERE id = ANY($1::text::int8[])", &p, NULL, NULL,
                         "audit outbox delete");
        pg_release(PG(base_), c);
    }
    buf_free(&list);
    return err;
}

int pg_audit_outbox_count(meta_store *base_, const char *origin, int64_t *count, int64_t *oldest_ms) {
    pg_params p = {0};
    pgp_text(&p, origin);
    pg_conn *c;
    int err = pg_acquire(PG(base_), &c);
    if (err != 0) return err;
    PGresult *r = NULL;
    err = pg_run_sql(c, "SELECT count(*)::int8, coalesce(min(time_ms), 0)::int8 FROM audit_outbox WHERE origin = $1::text",
                     &p, &r, NULL, "audit outbox count");
    pg_release(PG(base_), c);
    if (err != 0) return err;
    *count = pg_int(r, 0, 0);
    *oldest_ms = pg_int(r, 0, 1);
    PQclear(r);
    return 0;
}
