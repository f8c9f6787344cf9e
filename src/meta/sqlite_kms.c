/*
 * sqlite_kms.c — the SQLite backend (sqlite.c): the key manager's keys and
 * their sealed versions (migration 17), the one-transaction re-seal of
 * everything the master key seals (meta_master_reseal), and an upload's
 * headers (the re-wrap job's compare-and-set).
 */
#include "meta/sqlite_int.h"

#include <stdlib.h>
#include <string.h>

/* Columns: id, enabled, description, created_ms, newest version. */
static int row_kms_key(sqlite3_stmt *st, meta_kms_key *k) {
    memset(k, 0, sizeof *k);
    int err = sq_col_copy(st, 0, k->id, sizeof k->id);
    k->enabled = sqlite3_column_int(st, 1) != 0;
    if (err == 0) err = sq_col_copy(st, 2, k->description, sizeof k->description);
    k->created_ms = sqlite3_column_int64(st, 3);
    k->version = sqlite3_column_int(st, 4);
    return err;
}

static int version_insert(conn *w, const char *id, int version, const uint8_t *sealed, int64_t now_ms) {
    sqlite3_stmt *st = sq_stmt(w, ST_KMS_VERSION_INSERT);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, id) | sqlite3_bind_int(st, 2, version) |
            sqlite3_bind_blob(st, 3, sealed, META_KMS_SEALED, SQLITE_STATIC) | sqlite3_bind_int64(st, 4, now_ms);
    return sq_stmt_exec_bound(w, st, b, "kms version insert");
}

static int key_insert(conn *w, const char *id, const char *description, const uint8_t *sealed, int64_t now_ms) {
    sqlite3_stmt *st = sq_stmt(w, ST_KMS_KEY_INSERT);
    if (!st) return CAIRN_EDB;
    int b = sq_bind_str(st, 1, id) | sq_bind_str(st, 2, description) | sqlite3_bind_int64(st, 3, now_ms);
    int err = sq_stmt_exec_bound(w, st, b, "kms key insert");
    return err ? err : version_insert(w, id, 1, sealed, now_ms);
}

int sq_kms_key_create(meta_store *base_, const char *id, const char *description, const uint8_t *sealed,
                      int64_t now_ms) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    return sq_wtx_end(ms, key_insert(w, id, description, sealed, now_ms));
}

int sq_kms_key_get(meta_store *base_, const char *id, meta_kms_key *out) {
    sq_store *ms = SQ(base_);
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_KMS_KEY_GET);
    int err = st ? sq_bind_result(r, sq_bind_str(st, 1, id), "kms key get bind") : CAIRN_EDB;
    if (err == 0) {
        int rc = sqlite3_step(st);
        err = rc == SQLITE_ROW ? row_kms_key(st, out) : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                                                          : sq_db_fail(r, rc, "kms key get");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    return err;
}

int sq_kms_key_list(meta_store *base_, int (*cb)(void *ud, const meta_kms_key *k), void *ud) {
    sq_store *ms = SQ(base_);
    vec v = {.size = sizeof(meta_kms_key)};
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_KMS_KEY_LIST);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_kms_key *k = sq_vec_push(&v);
        err = k ? row_kms_key(st, k) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(r, rc, "kms key list");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    /* Rows are copied out before any callback runs (meta.h). */
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_kms_key *)v.items + i)) break;
    free(v.items);
    return err;
}

int sq_kms_key_set_enabled(meta_store *base_, const char *id, bool enabled) {
    return sq_update_one(SQ(base_), ST_KMS_KEY_SET_ENABLED, id, enabled, "kms key set enabled");
}

int sq_kms_version_add(meta_store *base_, const char *id, int version, const uint8_t *sealed, int64_t now_ms) {
    sq_store *ms = SQ(base_);
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    /* A missing key is the foreign key's verdict (ENOTFOUND), a version
     * taken by a concurrent rotation the primary key's (EEXIST). */
    return sq_wtx_end(ms, version_insert(w, id, version, sealed, now_ms));
}

int sq_kms_version_get(meta_store *base_, const char *id, int version, uint8_t *sealed) {
    sq_store *ms = SQ(base_);
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_KMS_VERSION_GET);
    int err = st ? sq_bind_result(r, sq_bind_str(st, 1, id) | sqlite3_bind_int(st, 2, version), "kms version bind")
                 : CAIRN_EDB;
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            /* The column's CHECK keeps it 60 bytes; a foreign row is refused. */
            if (sqlite3_column_bytes(st, 0) != META_KMS_SEALED) err = CAIRN_EDB;
            else memcpy(sealed, sqlite3_column_blob(st, 0), META_KMS_SEALED);
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(r, rc, "kms version get");
        }
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    return err;
}

/* ---- the master key's re-seal ---------------------------------------------------------- */

typedef struct {
    char name[META_KMS_ID_MAX + 1];
    int version;
    uint8_t sealed[META_KMS_SEALED];
} sealed_row;

typedef struct {
    char name[256];
    char *secret;               /* malloc'd */
} secret_row;

static int reseal_material(conn *w, const meta_reseal *r, int64_t *count) {
    vec v = {.size = sizeof(sealed_row)};
    sqlite3_stmt *st = sq_stmt(w, ST_KMS_VERSION_ALL);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        sealed_row *row = sq_vec_push(&v);
        if (!row) {
            err = CAIRN_ENOMEM;
            break;
        }
        err = sq_col_copy(st, 0, row->name, sizeof row->name);
        row->version = sqlite3_column_int(st, 1);
        if (err == 0 && sqlite3_column_bytes(st, 2) != META_KMS_SEALED) err = CAIRN_EDB;
        if (err == 0) memcpy(row->sealed, sqlite3_column_blob(st, 2), META_KMS_SEALED);
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(w, rc, "kms reseal list");
    if (st) sq_stmt_done(st);
    for (size_t i = 0; err == 0 && i < v.n; i++) {
        sealed_row *row = (sealed_row *)v.items + i;
        uint8_t fresh[META_KMS_SEALED];
        err = r->material(r->ud, row->name, row->version, row->sealed, fresh);
        if (err != 0) break;
        st = sq_stmt(w, ST_KMS_VERSION_SET);
        if (!st) {
            err = CAIRN_EDB;
            break;
        }
        int b = sq_bind_str(st, 1, row->name) | sqlite3_bind_int(st, 2, row->version) |
                sqlite3_bind_blob(st, 3, fresh, META_KMS_SEALED, SQLITE_TRANSIENT);
        err = sq_stmt_exec_bound(w, st, b, "kms reseal set");
        if (err == 0) (*count)++;
    }
    free(v.items);
    return err;
}

/* The secrets of one table (access keys or notify targets): read, open
 * and seal again through r->secret, write back. */
static int reseal_secrets(conn *w, const meta_reseal *r, stmt_id list, stmt_id set, const char *what,
                          int64_t *count) {
    vec v = {.size = sizeof(secret_row)};
    sqlite3_stmt *st = sq_stmt(w, list);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        secret_row *row = sq_vec_push(&v);
        if (!row) {
            err = CAIRN_ENOMEM;
            break;
        }
        err = sq_col_copy(st, 0, row->name, sizeof row->name);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        row->secret = strdup(text ? text : "");
        if (err == 0 && !row->secret) err = CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(w, rc, "reseal secrets list");
    if (st) sq_stmt_done(st);
    char fresh[512];
    for (size_t i = 0; err == 0 && i < v.n; i++) {
        secret_row *row = (secret_row *)v.items + i;
        err = r->secret(r->ud, what, row->name, row->secret, fresh, sizeof fresh);
        if (err != 0) break;
        st = sq_stmt(w, set);
        if (!st) {
            err = CAIRN_EDB;
            break;
        }
        int b = sq_bind_str(st, 1, row->name) | sqlite3_bind_text(st, 2, fresh, -1, SQLITE_TRANSIENT);
        err = sq_stmt_exec_bound(w, st, b, "reseal secret set");
        if (err == 0) (*count)++;
    }
    for (size_t i = 0; i < v.n; i++) free(((secret_row *)v.items)[i].secret);
    free(v.items);
    return err;
}

int sq_master_reseal(meta_store *base_, const meta_reseal *r, int64_t *count) {
    sq_store *ms = SQ(base_);
    int64_t n = 0;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    err = reseal_material(w, r, &n);
    if (err == 0) err = reseal_secrets(w, r, ST_KEY_SECRETS, ST_KEY_SET_SECRET, "access_key", &n);
    if (err == 0) err = reseal_secrets(w, r, ST_NOTIFY_SECRETS, ST_NOTIFY_SET_SECRET, "notify_target", &n);
    err = sq_wtx_end(ms, err);
    if (err == 0 && count) *count = n;
    return err;
}

/* ---- uploads' headers ------------------------------------------------------------------ */

typedef struct {
    const char *id, *expected, *headers;
} upload_headers_args;

static int bind_upload_headers(sqlite3_stmt *st, const void *p) {
    const upload_headers_args *a = p;
    return sq_bind_str(st, 1, a->id) | sq_bind_str(st, 2, a->expected) | sq_bind_str(st, 3, a->headers);
}

int sq_upload_set_headers_if(meta_store *base_, const char *upload_id, const char *expected, const char *headers_json) {
    upload_headers_args a = {upload_id, expected, headers_json};
    int changes = 0;
    int err = sq_write_one(SQ(base_), ST_UPLOAD_SET_HEADERS, bind_upload_headers, &a, &changes, "upload set headers");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}
