/*
 * pg_users.c — the PostgreSQL backend (pg.c): users and their access keys.
 * Mirrors sqlite_users.c; what differs is how concurrency is settled: a
 * duplicate name or key is the unique index's verdict (CAIRN_EEXIST), and
 * ensure-root serializes on an advisory lock, since several gateways may
 * run it at once at start.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

/* The advisory lock meta_user_ensure_root holds: "cairnusr". */
#define ROOT_LOCK INT64_C(0x636169726e757372)

/* ---- users ------------------------------------------------------------------ */

static int row_user(const PGresult *r, int row, void *out) {
    meta_user *u = out;
    memset(u, 0, sizeof *u);
    u->id = pg_int(r, row, 0);
    int err = pg_copy(r, row, 1, u->name, sizeof u->name);
    if (err == 0) err = pg_copy(r, row, 2, u->display_name, sizeof u->display_name);
    u->is_root = pg_bool(r, row, 3);
    u->created_ms = pg_int(r, row, 4);
    u->audit = pg_bool(r, row, 5);
    return err;
}

/* A result expected to hold at most one user row. */
static int one_user(PGresult *r, meta_user *out) {
    int err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : out ? row_user(r, 0, out) : 0;
    PQclear(r);
    return err;
}

static int user_insert(pg_conn *c, meta_user *u) {
    if (u->created_ms == 0) u->created_ms = time_now_ms();
    pg_params p = {0};
    pgp_text(&p, u->name);
    pgp_text(&p, u->display_name);
    pgp_bool(&p, u->is_root);
    pgp_int(&p, u->created_ms);
    pgp_bool(&p, u->audit);
    PGresult *r;
    int err = pg_run(c, PS_USER_INSERT, &p, &r, NULL, "user insert");
    if (err == 0) {
        u->id = pg_int(r, 0, 0);
        PQclear(r);
    }
    return err;
}

int pg_user_create(meta_store *base_, meta_user *u) {
    pg_store *ms = PG(base_);
    if (!u || !sq_name_ok(u->name, sizeof u->name) ||
        strnlen(u->display_name, sizeof u->display_name) >= sizeof u->display_name)
        return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    err = user_insert(c, u);
    pg_release(ms, c);
    return err;
}

static int ensure_root_tx(pg_conn *c, const char *name, meta_user *out) {
    pg_params lock = {0};
    pgp_int(&lock, ROOT_LOCK);
    int err = pg_run(c, PS_XACT_LOCK, &lock, NULL, NULL, "user root lock");
    PGresult *r = NULL;
    if (err == 0) err = pg_run(c, PS_USER_ROOT, NULL, &r, NULL, "user root");
    if (err != 0) return err;
    meta_user u;
    err = one_user(r, &u);
    if (err == CAIRN_ENOTFOUND) {
        memset(&u, 0, sizeof u);
        strcpy(u.name, name);
        strcpy(u.display_name, name);
        u.is_root = true;
        err = user_insert(c, &u);
    } else if (err == 0 && strcmp(u.name, name) != 0) {
        pg_params p = {0};
        pgp_int(&p, u.id);
        pgp_text(&p, name);
        err = pg_run(c, PS_USER_RENAME, &p, NULL, NULL, "user rename");
        if (err == 0) strcpy(u.name, name);
    }
    if (err == 0 && out) *out = u;
    return err;
}

int pg_user_ensure_root(meta_store *base_, const char *name, meta_user *out) {
    pg_store *ms = PG(base_);
    if (!sq_name_ok(name, sizeof out->name)) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    return pg_tx_end(ms, c, ensure_root_tx(c, name, out));
}

int pg_user_get(meta_store *base_, int64_t id, meta_user *out) {
    if (!out) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_USER_GET, &p, &r, NULL, "user get");
    return err ? err : one_user(r, out);
}

int pg_user_get_by_name(meta_store *base_, const char *name, meta_user *out) {
    if (!name || !out) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    int err = pg_read(PG(base_), PS_USER_GET_NAME, &p, &r, NULL, "user get by name");
    return err ? err : one_user(r, out);
}

int pg_user_list(meta_store *base_, int (*cb)(void *ud, const meta_user *u), void *ud) {
    if (!cb) return CAIRN_EINVAL;
    PGresult *r;
    int err = pg_read(PG(base_), PS_USER_LIST, NULL, &r, NULL, "user list");
    if (err != 0) return err;
    meta_user *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_user, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

/* ---- access keys ------------------------------------------------------------ */

static int row_key(const PGresult *r, int row, void *out) {
    meta_key *k = out;
    memset(k, 0, sizeof *k);
    int err = pg_copy(r, row, 0, k->access_key, sizeof k->access_key);
    k->user_id = pg_int(r, row, 1);
    if (err == 0) err = pg_copy(r, row, 2, k->sealed_secret, sizeof k->sealed_secret);
    k->active = pg_bool(r, row, 3);
    k->created_ms = pg_int(r, row, 4);
    return err;
}

int pg_key_create(meta_store *base_, const meta_key *k) {
    if (!k || !sq_name_ok(k->access_key, sizeof k->access_key) || !sq_name_ok(k->sealed_secret, sizeof k->sealed_secret))
        return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, k->access_key);
    pgp_int(&p, k->user_id);
    pgp_text(&p, k->sealed_secret);
    pgp_bool(&p, k->active);
    pgp_int(&p, k->created_ms ? k->created_ms : time_now_ms());
    /* A missing user surfaces as a foreign-key violation: ENOTFOUND. */
    return pg_read(PG(base_), PS_KEY_INSERT, &p, NULL, NULL, "key insert");
}

int pg_key_get(meta_store *base_, const char *access_key, meta_key *out) {
    if (!access_key || !out) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, access_key);
    PGresult *r;
    int err = pg_read(PG(base_), PS_KEY_GET, &p, &r, NULL, "key get");
    if (err != 0) return err;
    err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : row_key(r, 0, out);
    PQclear(r);
    return err;
}

int pg_key_list(meta_store *base_, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud) {
    if (!cb) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, user_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_KEY_LIST, &p, &r, NULL, "key list");
    if (err != 0) return err;
    meta_key *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_key, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

/* One UPDATE of a row by name to a boolean; ENOTFOUND when it touched none. */
static int set_flag(pg_store *ms, pg_stmt_id id, const char *name, bool value, const char *op) {
    pg_params p = {0};
    pgp_text(&p, name);
    pgp_bool(&p, value);
    int64_t changes = 0;
    int err = pg_read(ms, id, &p, NULL, &changes, op);
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int pg_key_set_active(meta_store *base_, const char *access_key, bool active) {
    if (!access_key) return CAIRN_EINVAL;
    return set_flag(PG(base_), PS_KEY_SET_ACTIVE, access_key, active, "key set active");
}

int pg_bucket_set_public(meta_store *base_, const char *name, bool public_read) {
    if (!name) return CAIRN_EINVAL;
    return set_flag(PG(base_), PS_BUCKET_SET_PUBLIC, name, public_read, "bucket set public");
}
