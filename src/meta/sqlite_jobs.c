/*
 * sqlite_jobs.c — the SQLite backend (sqlite.c): the durable job queue: enqueue, claim with a lease, finish, retry, prune and counts.
 */
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the job queue ------------------------------------------------------------------- */

void meta_job_clear(meta_job *j) {
    if (!j) return;
    free(j->args);
    j->args = NULL;
}

static int row_job(sqlite3_stmt *st, meta_job *j) {
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(st, 0);
    int err = sq_col_copy(st, 1, j->kind, sizeof j->kind);
    j->priority = sqlite3_column_int(st, 3);
    j->run_at_ms = sqlite3_column_int64(st, 4);
    j->attempts = sqlite3_column_int(st, 5);
    j->max_attempts = sqlite3_column_int(st, 6);
    if (err == 0) err = sq_col_copy(st, 7, j->state, sizeof j->state);
    if (err == 0) err = sq_col_copy(st, 8, j->lease_owner, sizeof j->lease_owner);
    j->lease_expires_ms = sqlite3_column_int64(st, 9);
    if (err == 0) err = sq_col_copy(st, 10, j->unique_key, sizeof j->unique_key);
    if (err == 0) err = sq_col_copy(st, 11, j->last_error, sizeof j->last_error);
    j->created_ms = sqlite3_column_int64(st, 12);
    j->finished_ms = sqlite3_column_int64(st, 13);
    const char *a = (const char *)sqlite3_column_text(st, 2);
    if (err == 0 && !(j->args = strdup(a ? a : "{}"))) err = CAIRN_ENOMEM;
    return err;
}

static int job_read(conn *c, int64_t id, meta_job *out) {
    sqlite3_stmt *st = sq_stmt(c, ST_JOB_GET);
    if (!st) return CAIRN_EDB;
    int err = sq_bind_result(c, sqlite3_bind_int64(st, 1, id), "job get bind");
    if (err) {
        sq_stmt_done(st);
        return err;
    }
    int rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? row_job(st, out) : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : CAIRN_EDB;
    sq_stmt_done(st);
    return err;
}

static int job_insert(conn *w, const meta_job *j) {
    sqlite3_stmt *st = sq_stmt(w, ST_JOB_INSERT);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, j->kind) | sq_bind_str(st, 2, j->args ? j->args : "{}") | sqlite3_bind_int(st, 3, j->priority) |
            sqlite3_bind_int64(st, 4, j->run_at_ms) | sqlite3_bind_int(st, 5, j->max_attempts > 0 ? j->max_attempts : 5) |
            (j->unique_key[0] ? sq_bind_str(st, 6, j->unique_key) : sqlite3_bind_null(st, 6)) |
            sqlite3_bind_int64(st, 7, time_now_ms());
    return sq_stmt_exec_bound(w, st, b, "job insert");
}

int sq_job_enqueue(meta_store *base_, const meta_job *j, int64_t *id) {
    sq_store *ms = SQ(base_);
    if (!ms || !j || !j->kind[0]) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    if (j->unique_key[0]) {
        sqlite3_stmt *st = sq_stmt(w, ST_JOB_BY_UNIQUE);
        int64_t holder = 0;
        bool finished = false;
        if (!st) err = CAIRN_EDB;
        else if ((err = sq_bind_result(w, sq_bind_str(st, 1, j->unique_key), "job by unique key bind")) == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                holder = sqlite3_column_int64(st, 0);
                finished = sqlite3_column_int(st, 1) != 0;
            } else if (rc != SQLITE_DONE) {
                err = sq_db_fail(w, rc, "job by unique key");
            }
        }
        if (st) sq_stmt_done(st);
        if (err == 0 && holder && finished && j->unique_while_pending) {
            st = sq_stmt(w, ST_JOB_DROP_KEY);
            if (!st) err = CAIRN_EDB;
            else err = sq_stmt_exec_bound(w, st, sqlite3_bind_int64(st, 1, holder), "job drop key");
        } else if (err == 0 && holder) {
            if (id) *id = holder;
            err = CAIRN_EEXIST;
        }
    }
    if (err == 0) {
        err = job_insert(w, j);
        if (err == 0 && id) *id = sqlite3_last_insert_rowid(w->db);
    }
    int end = sq_wtx_end(ms, err == CAIRN_EEXIST ? 0 : err);
    return err ? err : end;
}

/* jobs[0..n) in the caller's write transaction: the deliveries a change
 * enqueues with itself (meta_object.jobs).  No unique keys here. */
int sq_jobs_insert_tx(conn *w, const meta_job *jobs, int n) {
    int err = 0;
    for (int i = 0; err == 0 && i < n; i++) err = jobs[i].kind[0] ? job_insert(w, &jobs[i]) : CAIRN_EINVAL;
    return err;
}

/* Inside a write transaction: takes the next runnable job into out. */
static int claim_in_tx(conn *w, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    int err = 0;
    int64_t id = 0;
    sqlite3_stmt *st = sq_stmt(w, ST_JOB_NEXT);
    if (!st) err = CAIRN_EDB;
    else {
        int b = sqlite3_bind_int64(st, 1, now_ms) | (kinds ? sq_bind_str(st, 2, kinds) : sqlite3_bind_null(st, 2));
        if ((err = sq_bind_result(w, b, "job next bind")) == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
            else err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : CAIRN_EDB;
        }
        sq_stmt_done(st);
    }
    if (err == 0) {
        st = sq_stmt(w, ST_JOB_TAKE);
        if (!st) err = CAIRN_EDB;
        else {
            int b = sqlite3_bind_int64(st, 1, id) | sq_bind_str(st, 2, owner) | sqlite3_bind_int64(st, 3, now_ms + lease_ms);
            err = sq_stmt_exec_bound(w, st, b, "job take");
        }
    }
    if (err == 0) err = job_read(w, id, out);
    return err;
}

int sq_job_claim(meta_store *base_, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    sq_store *ms = SQ(base_);
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms || !owner) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    err = claim_in_tx(w, kinds, owner, now_ms, lease_ms, out);
    int end = sq_wtx_end(ms, err == CAIRN_ENOTFOUND ? 0 : err);
    if (err != 0 || end != 0) meta_job_clear(out);
    return err ? err : end;
}

typedef struct { int64_t id; const char *owner, *state, *error; int64_t run_at, now; } job_finish_args;

static int bind_job_finish(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return sqlite3_bind_int64(st, 1, a->id) | sq_bind_str(st, 2, a->owner) | sq_bind_str(st, 3, a->state) |
           sqlite3_bind_int64(st, 4, a->run_at) | sq_bind_str_max(st, 5, a->error, sizeof((meta_job *)0)->last_error) |
           sqlite3_bind_int64(st, 6, a->now);
}

int sq_job_finish(meta_store *base_, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                    const char *error) {
    sq_store *ms = SQ(base_);
    if (!ms || !owner || !state ||
        (strcmp(state, "completed") && strcmp(state, "retryable") && strcmp(state, "discarded")))
        return CAIRN_EINVAL;
    job_finish_args a = {id, owner, state, error, run_at_ms, time_now_ms()};
    int changes = 0;
    int err = sq_write_one(ms, ST_JOB_FINISH, bind_job_finish, &a, &changes, "job finish");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

int sq_job_finish_claim(meta_store *base_, const char *kinds, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                          const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next) {
    sq_store *ms = SQ(base_);
    if (!finish_rc || !next) return CAIRN_EINVAL;
    memset(next, 0, sizeof *next);
    *finish_rc = CAIRN_EINVAL;
    if (!ms || !owner || !state ||
        (strcmp(state, "completed") && strcmp(state, "retryable") && strcmp(state, "discarded")))
        return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) {
        *finish_rc = err;
        return err;
    }
    job_finish_args a = {id, owner, state, error, run_at_ms, time_now_ms()};
    sqlite3_stmt *st = sq_stmt(w, ST_JOB_FINISH);
    if (!st) err = CAIRN_EDB;
    else err = sq_stmt_exec_bound(w, st, bind_job_finish(st, &a), "job finish");
    int fin = err ? err : sqlite3_changes(w->db) ? 0 : CAIRN_ECONFLICT;
    int claim = err ? err : claim_in_tx(w, kinds, owner, now_ms, lease_ms, next);
    int end = sq_wtx_end(ms, claim == CAIRN_ENOTFOUND ? 0 : claim);
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

static int bind_id_owner(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return sqlite3_bind_int64(st, 1, a->id) | sq_bind_str(st, 2, a->owner);
}

static int bind_id_owner_time(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return bind_id_owner(st, p) | sqlite3_bind_int64(st, 3, a->run_at);
}

typedef struct { int64_t done_before, discarded_before; int limit; } job_prune_args;

static int bind_job_prune(sqlite3_stmt *st, const void *p) {
    const job_prune_args *a = p;
    return sqlite3_bind_int64(st, 1, a->done_before) | sqlite3_bind_int64(st, 2, a->discarded_before) |
           sqlite3_bind_int(st, 3, a->limit);
}

int sq_job_prune(meta_store *base_, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted) {
    sq_store *ms = SQ(base_);
    if (!ms || limit < 1) return CAIRN_EINVAL;
    job_prune_args a = {done_before_ms, discarded_before_ms, limit};
    int changes = 0;
    int err = sq_write_one(ms, ST_JOB_PRUNE, bind_job_prune, &a, &changes, "job prune");
    if (deleted) *deleted = err ? 0 : changes;
    return err;
}

int sq_job_release(meta_store *base_, int64_t id, const char *owner, int64_t run_at_ms) {
    sq_store *ms = SQ(base_);
    if (!ms) return CAIRN_EINVAL;
    job_finish_args a = {id, owner, NULL, NULL, run_at_ms, 0};
    int changes = 0;
    int err = sq_write_one(ms, ST_JOB_RELEASE, bind_id_owner_time, &a, &changes, "job release");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

int sq_job_extend(meta_store *base_, int64_t id, const char *owner, int64_t lease_expires_ms) {
    sq_store *ms = SQ(base_);
    if (!ms) return CAIRN_EINVAL;
    job_finish_args a = {id, owner, NULL, NULL, lease_expires_ms, 0};
    int changes = 0;
    int err = sq_write_one(ms, ST_JOB_EXTEND, bind_id_owner_time, &a, &changes, "job extend");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

static int bind_id_time(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return sqlite3_bind_int64(st, 1, a->id) | sqlite3_bind_int64(st, 2, a->now);
}

static int job_change(sq_store *ms, int64_t id, stmt_id which, const char *op) {
    if (!ms) return CAIRN_EINVAL;
    job_finish_args a = {id, NULL, NULL, NULL, 0, time_now_ms()};
    int changes = 0;
    int err = sq_write_one(ms, which, bind_id_time, &a, &changes, op);
    if (err || changes) return err;
    meta_job j;
    err = sq_job_get(&ms->base, id, &j);
    meta_job_clear(&j);
    return err == CAIRN_ENOTFOUND ? CAIRN_ENOTFOUND : CAIRN_ECONFLICT;
}

int sq_job_cancel(meta_store *ms, int64_t id) { return job_change(SQ(ms), id, ST_JOB_CANCEL, "job cancel"); }
int sq_job_retry(meta_store *ms, int64_t id) { return job_change(SQ(ms), id, ST_JOB_RETRY, "job retry"); }

int sq_job_get(meta_store *base_, int64_t id, meta_job *out) {
    sq_store *ms = SQ(base_);
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    int err = job_read(c, id, out);
    sq_reader_put(ms, c);
    return err;
}

int sq_job_list(meta_store *base_, const char *state, const char *kind, int limit,
                  int (*cb)(void *ud, const meta_job *j), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb || limit < 0) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_JOB_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, state ? state : "") | sq_bind_str(st, 2, kind ? kind : "") | sqlite3_bind_int(st, 3, limit), "job list bind");
    vec v = {.size = sizeof(meta_job)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = sq_db_fail(c, rc, "job list"); break; }
        meta_job *row = sq_vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_job(st, row);
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    meta_job *rows = v.items;
    bool stop = false;
    for (size_t i = 0; i < v.n; i++) {
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

int sq_job_counts(meta_store *base_, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb) return CAIRN_EINVAL;
    /* As many rows as kinds times states: the counts are copied out whole
     * and reach cb after the reader is back in the pool. */
    vec v = {.size = sizeof(count_row)};
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_JOB_COUNTS);
    int err = st ? 0 : CAIRN_EDB;
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = sq_db_fail(c, rc, "job counts");
            break;
        }
        count_row *r = sq_vec_push(&v);
        if (!r) {
            err = CAIRN_ENOMEM;
            break;
        }
        err = sq_col_copy(st, 0, r->kind, sizeof r->kind);
        if (err == 0) err = sq_col_copy(st, 1, r->state, sizeof r->state);
        r->n = sqlite3_column_int64(st, 2);
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    const count_row *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, rows[i].kind, rows[i].state, rows[i].n)) break;
    free(v.items);
    return err;
}

int sq_upload_list_older(meta_store *base_, int64_t before_ms, int limit,
                           int (*cb)(void *ud, const meta_upload *u), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb || limit < 0) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_UPLOAD_OLDER);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sqlite3_bind_int64(st, 1, before_ms) | sqlite3_bind_int(st, 2, limit), "upload older bind");
    vec v = {.size = sizeof(meta_upload)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = sq_db_fail(c, rc, "upload older"); break; }
        meta_upload *row = sq_vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = sq_row_upload(st, row);
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    meta_upload *rows = v.items;
    bool stop = false;
    for (size_t i = 0; i < v.n; i++) {
        if (err == 0 && !stop) stop = cb(ud, &rows[i]) != 0;
        meta_upload_clear(&rows[i]);
    }
    free(rows);
    return err;
}

int sq_version_referenced(meta_store *base_, const char *version_id, bool *referenced) {
    sq_store *ms = SQ(base_);
    if (!referenced) return CAIRN_EINVAL;
    *referenced = true; /* on any doubt, keep the bytes */
    if (!ms || !version_id) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_VERSION_REFERENCED);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, version_id), "version referenced bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *referenced = sqlite3_column_int(st, 0) != 0;
        else err = sq_db_fail(c, rc, "version referenced");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}
