/*
 * sqlite_users.c — the SQLite backend (sqlite.c): users and their access keys.
 */
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- users ------------------------------------------------------------------ */

bool sq_name_ok(const char *s, size_t cap) {
    return s && s[0] && strnlen(s, cap) < cap;
}

static int row_user(sqlite3_stmt *st, meta_user *u) {
    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, 0);
    int err = sq_col_copy(st, 1, u->name, sizeof u->name);
    if (err == 0) err = sq_col_copy(st, 2, u->display_name, sizeof u->display_name);
    u->is_root = sqlite3_column_int(st, 3) != 0;
    u->created_ms = sqlite3_column_int64(st, 4);
    u->audit = sqlite3_column_int(st, 5) != 0;
    return err;
}

/* Runs a statement expected to yield at most one user row. */
static int query_user(conn *c, sqlite3_stmt *st, meta_user *out, const char *op) {
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? (out ? row_user(st, out) : 0)
              : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                  : sq_db_fail(c, rc, op);
    sq_stmt_done(st);
    return err;
}

static int user_insert(conn *w, meta_user *u) {
    sqlite3_stmt *st = sq_stmt(w, ST_USER_INSERT);
    if (!st) return CAIRN_EDB;
    if (u->created_ms == 0) u->created_ms = time_now_ms();
    int b = sq_bind_str(st, 1, u->name);
    b |= sq_bind_str(st, 2, u->display_name);
    b |= sqlite3_bind_int(st, 3, u->is_root);
    b |= sqlite3_bind_int64(st, 4, u->created_ms);
    b |= sqlite3_bind_int(st, 5, u->audit);
    int err = sq_stmt_exec_bound(w, st, b, "user insert");
    if (err == 0) u->id = sqlite3_last_insert_rowid(w->db);
    return err;
}

int sq_user_create(meta_store *base_, meta_user *u) {
    sq_store *ms = SQ(base_);
    if (!ms || !u || !sq_name_ok(u->name, sizeof u->name) ||
        strnlen(u->display_name, sizeof u->display_name) >= sizeof u->display_name)
        return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    return sq_wtx_end(ms, user_insert(w, u));
}

static int user_ensure_root_tx(conn *w, const char *name, meta_user *out) {
    sqlite3_stmt *st = sq_stmt(w, ST_USER_ROOT);
    if (!st) return CAIRN_EDB;
    meta_user u;
    int err = query_user(w, st, &u, "user root");
    if (err == CAIRN_ENOTFOUND) {
        memset(&u, 0, sizeof u);
        strcpy(u.name, name);
        strcpy(u.display_name, name);
        u.is_root = true;
        err = user_insert(w, &u);
    } else if (err == 0 && strcmp(u.name, name) != 0) {
        st = sq_stmt(w, ST_USER_RENAME);
        if (!st) return CAIRN_EDB;
        int b = sqlite3_bind_int64(st, 1, u.id) | sq_bind_str(st, 2, name);
        err = sq_stmt_exec_bound(w, st, b, "user rename");
        if (err == 0) strcpy(u.name, name);
    }
    if (err == 0 && out) *out = u;
    return err;
}

int sq_user_ensure_root(meta_store *base_, const char *name, meta_user *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !sq_name_ok(name, sizeof out->name)) return CAIRN_EINVAL;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    return sq_wtx_end(ms, user_ensure_root_tx(w, name, out));
}

int sq_user_get(meta_store *base_, int64_t id, meta_user *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !out) return CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_USER_GET);
    int err = CAIRN_EDB;
    if (st) {
        int b = sqlite3_bind_int64(st, 1, id);
        if ((err = sq_bind_result(r, b, "user get bind")) == 0) err = query_user(r, st, out, "user get");
        else sq_stmt_done(st);
    }
    sq_reader_put(ms, r);
    return err;
}

int sq_user_get_by_name(meta_store *base_, const char *name, meta_user *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !name || !out) return CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_USER_GET_NAME);
    int err = CAIRN_EDB;
    if (st) {
        int b = sq_bind_str(st, 1, name);
        if ((err = sq_bind_result(r, b, "user get bind")) == 0) err = query_user(r, st, out, "user get by name");
        else sq_stmt_done(st);
    }
    sq_reader_put(ms, r);
    return err;
}

int sq_user_list(meta_store *base_, int (*cb)(void *ud, const meta_user *u), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_user)};
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_USER_LIST);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_user *u = sq_vec_push(&v);
        err = u ? row_user(st, u) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(r, rc, "user list");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_user *)v.items + i)) break;
    free(v.items);
    return err;
}

/* ---- access keys ------------------------------------------------------------ */

static int row_key(sqlite3_stmt *st, meta_key *k) {
    memset(k, 0, sizeof *k);
    int err = sq_col_copy(st, 0, k->access_key, sizeof k->access_key);
    k->user_id = sqlite3_column_int64(st, 1);
    if (err == 0) err = sq_col_copy(st, 2, k->sealed_secret, sizeof k->sealed_secret);
    k->active = sqlite3_column_int(st, 3) != 0;
    k->created_ms = sqlite3_column_int64(st, 4);
    return err;
}

int sq_key_create(meta_store *base_, const meta_key *k) {
    sq_store *ms = SQ(base_);
    if (!ms || !k || !sq_name_ok(k->access_key, sizeof k->access_key) ||
        !sq_name_ok(k->sealed_secret, sizeof k->sealed_secret))
        return CAIRN_EINVAL;
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_KEY_INSERT);
    int err = CAIRN_EDB;
    if (st) {
        int b = sq_bind_str(st, 1, k->access_key);
        b |= sqlite3_bind_int64(st, 2, k->user_id);
        b |= sq_bind_str(st, 3, k->sealed_secret);
        b |= sqlite3_bind_int(st, 4, k->active);
        b |= sqlite3_bind_int64(st, 5, k->created_ms ? k->created_ms : time_now_ms());
        /* A missing user surfaces as a foreign-key violation: ENOTFOUND. */
        err = sq_stmt_exec_bound(w, st, b, "key insert");
    }
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

int sq_key_get(meta_store *base_, const char *access_key, meta_key *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !access_key || !out) return CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_KEY_GET);
    int err = CAIRN_EDB;
    if (st) {
        int rc = sq_bind_str(st, 1, access_key);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        err = rc == SQLITE_ROW ? row_key(st, out)
              : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                  : sq_db_fail(r, rc, "key get");
        sq_stmt_done(st);
    }
    sq_reader_put(ms, r);
    return err;
}

int sq_key_list(meta_store *base_, int64_t user_id, int (*cb)(void *ud, const meta_key *k),
                  void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_key)};
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_KEY_LIST);
    int err = st ? sq_map_rc(sqlite3_bind_int64(st, 1, user_id)) : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_key *k = sq_vec_push(&v);
        err = k ? row_key(st, k) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(r, rc, "key list");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_key *)v.items + i)) break;
    free(v.items);
    return err;
}

/* Runs an UPDATE on the writer; ENOTFOUND when it touched no row. */
int sq_update_one(sq_store *ms, stmt_id id, const char *name, int value, const char *op) {
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = sq_stmt(w, id);
    int err = CAIRN_EDB;
    if (st) {
        int b = sq_bind_str(st, 1, name) | sqlite3_bind_int(st, 2, value);
        err = sq_stmt_exec_bound(w, st, b, op);
        if (err == 0 && sqlite3_changes(w->db) == 0) err = CAIRN_ENOTFOUND;
    }
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

int sq_key_set_active(meta_store *base_, const char *access_key, bool active) {
    sq_store *ms = SQ(base_);
    if (!ms || !access_key) return CAIRN_EINVAL;
    return sq_update_one(ms, ST_KEY_SET_ACTIVE, access_key, active, "key set active");
}
