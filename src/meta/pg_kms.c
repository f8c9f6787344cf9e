/*
 * pg_kms.c — the PostgreSQL backend (pg.c): the key manager's keys and
 * their sealed versions, the one-transaction re-seal under a new master
 * key, and an upload's headers.  Mirrors sqlite_kms.c; concurrent
 * rotations are settled by the primary key (CAIRN_EEXIST for the loser),
 * and the re-seal locks every row it rewrites (FOR UPDATE) before it reads
 * it, so a secret written meanwhile waits for the commit.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

/* Columns: id, enabled, description, created_ms, newest version. */
static int row_kms_key(const PGresult *r, int row, void *out) {
    meta_kms_key *k = out;
    memset(k, 0, sizeof *k);
    int err = pg_copy(r, row, 0, k->id, sizeof k->id);
    k->enabled = pg_bool(r, row, 1);
    if (err == 0) err = pg_copy(r, row, 2, k->description, sizeof k->description);
    k->created_ms = pg_int(r, row, 3);
    k->version = (int)pg_int(r, row, 4);
    return err;
}

static int version_insert(pg_conn *c, const char *id, int version, const uint8_t *sealed, int64_t now_ms) {
    pg_params p = {0};
    pgp_text(&p, id);
    pgp_int(&p, version);
    pgp_bytes(&p, sealed, META_KMS_SEALED);
    pgp_int(&p, now_ms);
    return pg_run(c, PS_KMS_VERSION_INSERT, &p, NULL, NULL, "kms version insert");
}

int pg_kms_key_create(meta_store *base_, const char *id, const char *description, const uint8_t *sealed,
                      int64_t now_ms) {
    pg_store *ms = PG(base_);
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    pg_params p = {0};
    pgp_text(&p, id);
    pgp_text(&p, description);
    pgp_int(&p, now_ms);
    err = pg_run(c, PS_KMS_KEY_INSERT, &p, NULL, NULL, "kms key insert");
    if (err == 0) err = version_insert(c, id, 1, sealed, now_ms);
    return pg_tx_end(ms, c, err);
}

int pg_kms_key_get(meta_store *base_, const char *id, meta_kms_key *out) {
    pg_params p = {0};
    pgp_text(&p, id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_KMS_KEY_GET, &p, &r, NULL, "kms key get");
    if (err != 0) return err;
    err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : row_kms_key(r, 0, out);
    PQclear(r);
    return err;
}

int pg_kms_key_list(meta_store *base_, int (*cb)(void *ud, const meta_kms_key *k), void *ud) {
    PGresult *r;
    int err = pg_read(PG(base_), PS_KMS_KEY_LIST, NULL, &r, NULL, "kms key list");
    if (err != 0) return err;
    meta_kms_key *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_kms_key, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_kms_key_set_enabled(meta_store *base_, const char *id, bool enabled) {
    pg_params p = {0};
    pgp_text(&p, id);
    pgp_bool(&p, enabled);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_KMS_KEY_SET_ENABLED, &p, NULL, &changes, "kms key set enabled");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int pg_kms_version_add(meta_store *base_, const char *id, int version, const uint8_t *sealed, int64_t now_ms) {
    pg_store *ms = PG(base_);
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    /* A missing key is the foreign key's verdict (ENOTFOUND), a version
     * taken by a concurrent rotation the primary key's (EEXIST). */
    err = version_insert(c, id, version, sealed, now_ms);
    pg_release(ms, c);
    return err;
}

int pg_kms_version_get(meta_store *base_, const char *id, int version, uint8_t *sealed) {
    pg_params p = {0};
    pgp_text(&p, id);
    pgp_int(&p, version);
    PGresult *r;
    int err = pg_read(PG(base_), PS_KMS_VERSION_GET, &p, &r, NULL, "kms version get");
    if (err != 0) return err;
    if (PQntuples(r) == 0) err = CAIRN_ENOTFOUND;
    else if (PQgetlength(r, 0, 0) != META_KMS_SEALED) err = CAIRN_EDB; /* the CHECK forbids it: a foreign row */
    else memcpy(sealed, PQgetvalue(r, 0, 0), META_KMS_SEALED);
    PQclear(r);
    return err;
}

/* ---- the master key's re-seal ---------------------------------------------------------- */

static int reseal_material(pg_conn *c, const meta_reseal *rs, int64_t *count) {
    PGresult *r;
    int err = pg_run(c, PS_KMS_VERSION_ALL, NULL, &r, NULL, "kms reseal list");
    if (err != 0) return err;
    for (int i = 0; err == 0 && i < PQntuples(r); i++) {
        char id[META_KMS_ID_MAX + 1];
        err = pg_copy(r, i, 0, id, sizeof id);
        int version = (int)pg_int(r, i, 1);
        if (err == 0 && PQgetlength(r, i, 2) != META_KMS_SEALED) err = CAIRN_EDB;
        uint8_t fresh[META_KMS_SEALED];
        if (err == 0) err = rs->material(rs->ud, id, version, (const uint8_t *)PQgetvalue(r, i, 2), fresh);
        if (err != 0) break;
        pg_params p = {0};
        pgp_text(&p, id);
        pgp_int(&p, version);
        pgp_bytes(&p, fresh, sizeof fresh);
        err = pg_run(c, PS_KMS_VERSION_SET, &p, NULL, NULL, "kms reseal set");
        if (err == 0) (*count)++;
    }
    PQclear(r);
    return err;
}

static int reseal_secrets(pg_conn *c, const meta_reseal *rs, pg_stmt_id list, pg_stmt_id set, const char *what,
                          int64_t *count) {
    PGresult *r;
    int err = pg_run(c, list, NULL, &r, NULL, "reseal secrets list");
    if (err != 0) return err;
    char fresh[512];
    for (int i = 0; err == 0 && i < PQntuples(r); i++) {
        char name[256];
        char *old = pg_strdup(r, i, 1, "");
        err = old ? pg_copy(r, i, 0, name, sizeof name) : CAIRN_ENOMEM;
        if (err == 0) err = rs->secret(rs->ud, what, name, old, fresh, sizeof fresh);
        free(old);
        if (err != 0) break;
        pg_params p = {0};
        pgp_text(&p, name);
        pgp_text(&p, fresh);
        err = pg_run(c, set, &p, NULL, NULL, "reseal secret set");
        if (err == 0) (*count)++;
    }
    PQclear(r);
    return err;
}

int pg_master_reseal(meta_store *base_, const meta_reseal *rs, int64_t *count) {
    pg_store *ms = PG(base_);
    int64_t n = 0;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    /* An operator's command over every key and secret: not bound by the
     * request paths' statement timeout. */
    err = pg_no_timeout(c);
    if (err == 0) err = reseal_material(c, rs, &n);
    if (err == 0) err = reseal_secrets(c, rs, PS_KEY_SECRETS, PS_KEY_SET_SECRET, "access_key", &n);
    if (err == 0) err = reseal_secrets(c, rs, PS_NOTIFY_SECRETS, PS_NOTIFY_SET_SECRET, "notify_target", &n);
    err = pg_tx_end(ms, c, err);
    if (err == 0 && count) *count = n;
    return err;
}

/* ---- uploads' headers ------------------------------------------------------------------ */

int pg_upload_set_headers_if(meta_store *base_, const char *upload_id, const char *expected, const char *headers_json) {
    pg_params p = {0};
    pgp_text(&p, upload_id);
    pgp_bytes(&p, expected, strlen(expected));
    pgp_bytes(&p, headers_json, strlen(headers_json));
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_UPLOAD_SET_HEADERS, &p, NULL, &changes, "upload set headers");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}
