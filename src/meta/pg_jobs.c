/*
 * pg_jobs.c — the PostgreSQL backend (pg.c): the durable job queue:
 * enqueue, claim with a lease, finish, retry, prune and counts.  Mirrors
 * sqlite_jobs.c.
 *
 * Claims.  One UPDATE takes the next runnable job: its subquery picks the
 * first row in priority order FOR UPDATE SKIP LOCKED, so gateways claiming
 * at once each take a different job without waiting on one another, and a
 * job is never handed to two of them.  Unique keys.  The key's unique index
 * decides between concurrent enqueues (ON CONFLICT DO NOTHING); the loser
 * locks the holder's row to read it, and when the holder has finished and
 * the new job is unique only while pending, takes the key from it.
 *
 * Notifications.  An enqueue also runs pg_notify('cairn_jobs', kind) in its
 * transaction, so every LISTENing gateway hears of the job once it is
 * committed.  A listener (meta_job_listener_open) is a connection of its
 * own, outside the pool: a LISTEN lasts as long as its session, and a
 * pooled connection is handed to any call and may be replaced at any time.
 * It is read only when its socket turns readable (meta_listener_drain);
 * a lost session is reported, and the caller opens another.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

static int row_job(const PGresult *r, int row, void *out) {
    meta_job *j = out;
    memset(j, 0, sizeof *j);
    j->id = pg_int(r, row, 0);
    int err = pg_copy(r, row, 1, j->kind, sizeof j->kind);
    j->priority = (int)pg_int(r, row, 3);
    j->run_at_ms = pg_int(r, row, 4);
    j->attempts = (int)pg_int(r, row, 5);
    j->max_attempts = (int)pg_int(r, row, 6);
    if (err == 0) err = pg_copy(r, row, 7, j->state, sizeof j->state);
    if (err == 0) err = pg_copy(r, row, 8, j->lease_owner, sizeof j->lease_owner);
    j->lease_expires_ms = pg_int(r, row, 9);
    if (err == 0) err = pg_copy(r, row, 10, j->unique_key, sizeof j->unique_key);
    if (err == 0) err = pg_copy(r, row, 11, j->last_error, sizeof j->last_error);
    j->created_ms = pg_int(r, row, 12);
    j->finished_ms = pg_int(r, row, 13);
    if (err == 0 && !(j->args = pg_strdup(r, row, 2, "{}"))) err = CAIRN_ENOMEM;
    return err;
}

static void clear_job(void *row) { meta_job_clear(row); }

/* A result of at most one job row: ENOTFOUND without one. */
static int one_job(PGresult *r, meta_job *out) {
    int err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : row_job(r, 0, out);
    if (err != 0) meta_job_clear(out);
    PQclear(r);
    return err;
}

static int enqueue_tx(pg_conn *c, const meta_job *j, int64_t *id) {
    for (;;) {
        pg_params p = {0};
        pgp_text(&p, j->kind);
        pgp_text(&p, j->args ? j->args : "{}");
        pgp_int(&p, j->priority);
        pgp_int(&p, j->run_at_ms);
        pgp_int(&p, j->max_attempts > 0 ? j->max_attempts : 5);
        if (j->unique_key[0]) pgp_text(&p, j->unique_key);
        else pgp_null(&p);
        pgp_int(&p, time_now_ms());
        PGresult *r;
        int err = pg_run(c, PS_JOB_INSERT, &p, &r, NULL, "job insert");
        if (err != 0) return err;
        bool inserted = PQntuples(r) == 1;
        if (inserted && id) *id = pg_int(r, 0, 0);
        PQclear(r);
        /* Listeners hear it when this transaction commits, not before. */
        if (inserted) {
            pg_params n = {0};
            pgp_text(&n, j->kind);
            return pg_run(c, PS_JOB_NOTIFY, &n, NULL, NULL, "job notify");
        }
        /* The key is held: by whom, and is that job finished? */
        pg_params k = {0};
        pgp_text(&k, j->unique_key);
        if ((err = pg_run(c, PS_JOB_BY_UNIQUE, &k, &r, NULL, "job by unique key")) != 0) return err;
        int64_t holder = PQntuples(r) ? pg_int(r, 0, 0) : 0;
        bool finished = PQntuples(r) && pg_bool(r, 0, 1);
        PQclear(r);
        /* No holder: it was pruned after our insert lost; insert again. */
        if (!holder) continue;
        if (!finished || !j->unique_while_pending) {
            if (id) *id = holder;
            return CAIRN_EEXIST;
        }
        pg_params d = {0};
        pgp_int(&d, holder);
        if ((err = pg_run(c, PS_JOB_DROP_KEY, &d, NULL, NULL, "job drop key")) != 0) return err;
    }
}

/* jobs[0..n) in the caller's transaction: the deliveries a change enqueues
 * with itself (meta_object.jobs).  No unique keys here. */
int pg_jobs_insert_tx(pg_conn *c, const meta_job *jobs, int n) {
    int err = 0;
    for (int i = 0; err == 0 && i < n; i++) {
        if (!jobs[i].kind[0] || jobs[i].unique_key[0]) return CAIRN_EINVAL;
        err = enqueue_tx(c, &jobs[i], NULL);
    }
    return err;
}

int pg_job_enqueue(meta_store *base_, const meta_job *j, int64_t *id) {
    pg_store *ms = PG(base_);
    if (!j || !j->kind[0]) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    err = enqueue_tx(c, j, id);
    int end = pg_tx_end(ms, c, err == CAIRN_EEXIST ? 0 : err);
    return err ? err : end;
}

/* Takes the next runnable job into out on c (one statement). */
static int claim_on(pg_conn *c, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    pg_params p = {0};
    pgp_int(&p, now_ms);
    pgp_text(&p, owner);
    pgp_int(&p, now_ms + lease_ms);
    if (kinds) pgp_text(&p, kinds);
    else pgp_null(&p);
    PGresult *r;
    int err = pg_run(c, PS_JOB_CLAIM, &p, &r, NULL, "job claim");
    return err ? err : one_job(r, out);
}

int pg_job_claim(meta_store *base_, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    pg_store *ms = PG(base_);
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!owner) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    err = claim_on(c, kinds, owner, now_ms, lease_ms, out);
    pg_release(ms, c);
    return err;
}

static bool finish_state_ok(const char *state) {
    return state && (!strcmp(state, "completed") || !strcmp(state, "retryable") || !strcmp(state, "discarded"));
}

static void bind_finish(pg_params *p, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                        const char *error) {
    pgp_int(p, id);
    pgp_text(p, owner);
    pgp_text(p, state);
    pgp_int(p, run_at_ms);
    pgp_bytes_max(p, error ? error : "", sizeof((meta_job *)0)->last_error);
    pgp_int(p, time_now_ms());
}

int pg_job_finish(meta_store *base_, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                  const char *error) {
    if (!owner || !finish_state_ok(state)) return CAIRN_EINVAL;
    pg_params p = {0};
    bind_finish(&p, id, owner, state, run_at_ms, error);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_JOB_FINISH, &p, NULL, &changes, "job finish");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

int pg_job_finish_claim(meta_store *base_, const char *kinds, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                        const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next) {
    pg_store *ms = PG(base_);
    if (!finish_rc || !next) return CAIRN_EINVAL;
    memset(next, 0, sizeof *next);
    *finish_rc = CAIRN_EINVAL;
    if (!owner || !finish_state_ok(state)) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) {
        *finish_rc = err;
        return err;
    }
    pg_params p = {0};
    bind_finish(&p, id, owner, state, run_at_ms, error);
    int64_t changes = 0;
    err = pg_run(c, PS_JOB_FINISH, &p, NULL, &changes, "job finish");
    int fin = err ? err : changes ? 0 : CAIRN_ECONFLICT;
    int claim = err ? err : claim_on(c, kinds, owner, now_ms, lease_ms, next);
    int end = pg_tx_end(ms, c, claim == CAIRN_ENOTFOUND ? 0 : claim);
    if (end != 0) {
        /* Nothing of the transaction stands: not the finish either. */
        meta_job_clear(next);
        *finish_rc = end;
        return end;
    }
    if (claim != 0) meta_job_clear(next);
    *finish_rc = fin;
    return claim;
}

/* An UPDATE of a job held by owner: ECONFLICT when it no longer is. */
static int job_update_owned(pg_store *ms, pg_stmt_id id, int64_t job, const char *owner, const int64_t *value,
                            const char *op) {
    pg_params p = {0};
    pgp_int(&p, job);
    pgp_text(&p, owner);
    if (value) pgp_int(&p, *value);
    int64_t changes = 0;
    int err = pg_read(ms, id, &p, NULL, &changes, op);
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

int pg_job_release(meta_store *base_, int64_t id, const char *owner, int64_t run_at_ms) {
    return job_update_owned(PG(base_), PS_JOB_RELEASE, id, owner, &run_at_ms, "job release");
}

int pg_job_extend(meta_store *base_, int64_t id, const char *owner, int64_t lease_expires_ms) {
    return job_update_owned(PG(base_), PS_JOB_EXTEND, id, owner, &lease_expires_ms, "job extend");
}

int pg_job_prune(meta_store *base_, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted) {
    if (limit < 1) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, done_before_ms);
    pgp_int(&p, discarded_before_ms);
    pgp_int(&p, limit);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_JOB_PRUNE, &p, NULL, &changes, "job prune");
    if (deleted) *deleted = err ? 0 : changes;
    return err;
}

static int job_change(pg_store *ms, int64_t id, pg_stmt_id which, const char *op) {
    pg_params p = {0};
    pgp_int(&p, id);
    pgp_int(&p, time_now_ms());
    int64_t changes = 0;
    int err = pg_read(ms, which, &p, NULL, &changes, op);
    if (err || changes) return err;
    meta_job j;
    err = pg_job_get(&ms->base, id, &j);
    meta_job_clear(&j);
    return err == CAIRN_ENOTFOUND ? CAIRN_ENOTFOUND : CAIRN_ECONFLICT;
}

int pg_job_cancel(meta_store *ms, int64_t id) { return job_change(PG(ms), id, PS_JOB_CANCEL, "job cancel"); }
int pg_job_retry(meta_store *ms, int64_t id) { return job_change(PG(ms), id, PS_JOB_RETRY, "job retry"); }

int pg_job_get(meta_store *base_, int64_t id, meta_job *out) {
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    pg_params p = {0};
    pgp_int(&p, id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_JOB_GET, &p, &r, NULL, "job get");
    return err ? err : one_job(r, out);
}

int pg_job_list(meta_store *base_, const char *state, const char *kind, int limit,
                int (*cb)(void *ud, const meta_job *j), void *ud) {
    if (!cb || limit < 0) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, state ? state : "");
    pgp_text(&p, kind ? kind : "");
    pgp_int(&p, limit);
    PGresult *r;
    int err = pg_read(PG(base_), PS_JOB_LIST, &p, &r, NULL, "job list");
    if (err != 0) return err;
    meta_job *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_job, clear_job, (void **)&rows, &n);
    PQclear(r);
    bool stop = false;
    for (int i = 0; i < n; i++) {
        if (err == 0 && !stop) stop = cb(ud, &rows[i]) != 0;
        meta_job_clear(&rows[i]);
    }
    free(rows);
    return err;
}

/* One (kind, state) count, copied out. */
typedef struct {
    char kind[64];
    char state[16];
    int64_t n;
} count_row;

static int row_count(const PGresult *r, int row, void *out) {
    count_row *c = out;
    int err = pg_copy(r, row, 0, c->kind, sizeof c->kind);
    if (err == 0) err = pg_copy(r, row, 1, c->state, sizeof c->state);
    c->n = pg_int(r, row, 2);
    return err;
}

int pg_job_counts(meta_store *base_, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud) {
    if (!cb) return CAIRN_EINVAL;
    PGresult *r;
    int err = pg_read(PG(base_), PS_JOB_COUNTS, NULL, &r, NULL, "job counts");
    if (err != 0) return err;
    count_row *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_count, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, rows[i].kind, rows[i].state, rows[i].n)) break;
    free(rows);
    return err;
}

/* ---- notifications ------------------------------------------------------------------ */

typedef struct {
    meta_listener base;
    pg_conn *c;
} pg_listener;

static int listener_fd(const meta_listener *l) { return PQsocket(((const pg_listener *)l)->c->db); }

static int listener_drain(meta_listener *l) {
    PGconn *db = ((pg_listener *)l)->c->db;
    /* A server that ended the session (restart, pg_terminate_backend) makes
     * the socket readable: its goodbye, then the end of the stream. */
    if (!PQconsumeInput(db) || PQstatus(db) != CONNECTION_OK) return CAIRN_EIO;
    int n = 0;
    for (PGnotify *nf; (nf = PQnotifies(db)) != NULL; n++) PQfreemem(nf);
    return n;
}

static void listener_close(meta_listener *l) {
    if (!l) return;
    pg_conn_close(((pg_listener *)l)->c);
    free(l);
}

int pg_job_listener_open(meta_store *base_, meta_listener **out) {
    pg_store *ms = PG(base_);
    pg_listener *l = calloc(1, sizeof *l);
    if (!l) return CAIRN_ENOMEM;
    l->base = (meta_listener){listener_fd, listener_drain, listener_close};
    char why[256] = "";
    int err = pg_conn_open_own(ms, "cairn-listener", &l->c, why, sizeof why);
    if (err == 0 && pg_exec_sql(l->c, "LISTEN cairn_jobs", "job listen") != 0) err = CAIRN_EIO;
    if (err != 0) {
        if (why[0]) log_write(LOG_WARN, NULL, "meta: job listener cannot connect to postgres", "error", why, NULL);
        listener_close(&l->base);
        return err;
    }
    *out = &l->base;
    return 0;
}
