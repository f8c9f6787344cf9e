/*
 * pg_buckets.c — the PostgreSQL backend (pg.c): buckets: create, look up,
 * list, and delete with everything their uploads left.
 *
 * Locks.  Writes into a bucket (puts, new uploads) lock its row FOR KEY
 * SHARE until they commit; deleting the bucket locks it FOR UPDATE, then
 * its uploads FOR UPDATE (part puts hold them FOR KEY SHARE), and only then
 * looks for objects and collects parts.  Whichever comes second sees what
 * the first committed: a put after the delete finds no bucket, a delete
 * after a put finds the bucket not empty, and no part row can slip in
 * between the delete's collecting of parts and its removal of the upload.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

static int row_bucket(const PGresult *r, int row, void *out) {
    meta_bucket *b = out;
    memset(b, 0, sizeof *b);
    b->id = pg_int(r, row, 0);
    int err = pg_copy(r, row, 1, b->name, sizeof b->name);
    b->owner_id = pg_int(r, row, 2);
    b->created_ms = pg_int(r, row, 3);
    b->public_read = pg_bool(r, row, 4);
    if (err == 0) err = pg_copy(r, row, 5, b->region, sizeof b->region);
    b->versioning = (meta_versioning)pg_int(r, row, 6);
    b->object_lock = pg_bool(r, row, 7);
    b->configs = meta_config_mask(PQgetisnull(r, row, 8) ? NULL : PQgetvalue(r, row, 8));
    return err;
}

int pg_bucket_versioning(pg_conn *c, pg_stmt_id id, const char *name, int64_t want_id, meta_versioning *state,
                         bool *object_lock) {
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    int err = pg_run(c, id, &p, &r, NULL, "bucket versioning");
    if (err != 0) return err;
    if (PQntuples(r) == 0 || (want_id > 0 && pg_int(r, 0, 1) != want_id)) {
        err = CAIRN_ENOTFOUND;
    } else {
        *state = (meta_versioning)pg_int(r, 0, 2);
        if (object_lock) *object_lock = pg_bool(r, 0, 3);
    }
    PQclear(r);
    return err;
}

static int set_versioning_tx(pg_conn *c, const char *name, int64_t bucket_id, meta_versioning state) {
    meta_versioning now = META_VERSIONING_OFF;
    bool lock = false;
    int err = pg_bucket_versioning(c, PS_BUCKET_VERSIONING_LOCK, name, bucket_id, &now, &lock);
    /* Once on, versioning is only ever suspended; object lock keeps it on. */
    if (err == 0 && state == META_VERSIONING_OFF && now != META_VERSIONING_OFF) err = CAIRN_EINVAL;
    if (err == 0 && state == META_VERSIONING_SUSPENDED && lock) err = CAIRN_EINVAL;
    if (err == 0) {
        pg_params p = {0};
        pgp_text(&p, name);
        pgp_int(&p, (int64_t)state);
        err = pg_run(c, PS_BUCKET_SET_VERSIONING, &p, NULL, NULL, "bucket set versioning");
    }
    return err;
}

int pg_bucket_set_versioning(meta_store *base_, const char *name, int64_t bucket_id, meta_versioning state) {
    pg_store *ms = PG(base_);
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    return pg_tx_end(ms, c, set_versioning_tx(c, name, bucket_id, state));
}

static int enable_object_lock_tx(pg_conn *c, const char *name, int64_t bucket_id) {
    meta_versioning now = META_VERSIONING_OFF;
    bool lock = false;
    int err = pg_bucket_versioning(c, PS_BUCKET_VERSIONING_LOCK, name, bucket_id, &now, &lock);
    if (err == 0 && !lock && now != META_VERSIONING_ENABLED) err = CAIRN_ECONFLICT;
    if (err == 0 && !lock) {
        pg_params p = {0};
        pgp_text(&p, name);
        err = pg_run(c, PS_BUCKET_SET_OBJECT_LOCK, &p, NULL, NULL, "bucket enable object lock");
    }
    return err;
}

int pg_bucket_enable_object_lock(meta_store *base_, const char *name, int64_t bucket_id) {
    pg_store *ms = PG(base_);
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    return pg_tx_end(ms, c, enable_object_lock_tx(c, name, bucket_id));
}

/* Looks a bucket up on c with statement id (PS_BUCKET_EXISTS, _SHARE or
 * _LOCK): 0, ENOTFOUND (also when want_id > 0 and the bucket of that name
 * has another id) or an error.  owner and bid may be NULL. */
int pg_bucket_lookup(pg_conn *c, pg_stmt_id id, const char *name, int64_t want_id, int64_t *owner, int64_t *bid) {
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    int err = pg_run(c, id, &p, &r, NULL, "bucket");
    if (err != 0) return err;
    if (PQntuples(r) == 0) {
        err = CAIRN_ENOTFOUND;
    } else {
        int64_t found = pg_int(r, 0, 1);
        if (owner) *owner = pg_int(r, 0, 0);
        if (bid) *bid = found;
        if (want_id > 0 && found != want_id) err = CAIRN_ENOTFOUND;
    }
    PQclear(r);
    return err;
}

/* Creates of one name queue on an advisory lock keyed by its hash, so the
 * look-up and the insert are one decision (a collision only makes two names
 * queue together). */
static int bucket_create_tx(pg_conn *c, meta_bucket *b, int64_t *existing_owner) {
    pg_params k = {0};
    pgp_text(&k, b->name);
    int err = pg_run(c, PS_NAME_LOCK, &k, NULL, NULL, "bucket name lock");
    int64_t owner = 0;
    if (err == 0) err = pg_bucket_lookup(c, PS_BUCKET_EXISTS, b->name, 0, &owner, NULL);
    if (err == 0) {
        if (existing_owner) *existing_owner = owner;
        return CAIRN_EEXIST;
    }
    if (err != CAIRN_ENOTFOUND) return err;
    pg_params p = {0};
    pgp_text(&p, b->name);
    pgp_int(&p, b->owner_id);
    pgp_int(&p, b->created_ms ? b->created_ms : time_now_ms());
    pgp_bool(&p, b->public_read);
    pgp_text(&p, b->region);
    pgp_int(&p, (int64_t)b->versioning);
    pgp_bool(&p, b->object_lock);
    PGresult *r;
    err = pg_run(c, PS_BUCKET_INSERT, &p, &r, NULL, "bucket insert");
    if (err == 0) {
        b->id = pg_int(r, 0, 0);
        PQclear(r);
    }
    return err;
}

int pg_bucket_create(meta_store *base_, meta_bucket *b, int64_t *existing_owner) {
    pg_store *ms = PG(base_);
    if (!b || !sq_name_ok(b->name, sizeof b->name) || strnlen(b->region, sizeof b->region) >= sizeof b->region)
        return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    err = bucket_create_tx(c, b, existing_owner);
    /* EEXIST is an answer, not a failure: nothing was written either way. */
    int end = pg_tx_end(ms, c, err == CAIRN_EEXIST ? 0 : err);
    return err ? err : end;
}

int pg_bucket_get(meta_store *base_, const char *name, meta_bucket *out) {
    if (!name || !out) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    int err = pg_read(PG(base_), PS_BUCKET_GET, &p, &r, NULL, "bucket get");
    if (err != 0) return err;
    err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : row_bucket(r, 0, out);
    PQclear(r);
    return err;
}

static int exec_ids(pg_conn *c, pg_stmt_id id, int64_t a, const int64_t *b, const char *op) {
    pg_params p = {0};
    pgp_int(&p, a);
    if (b) pgp_int(&p, *b);
    return pg_run(c, id, &p, NULL, NULL, op);
}

/* Inside the transaction: ENOTFOUND, ENOTEMPTY, or deletes the bucket with
 * its uploads (their shards into the trash). */
static int bucket_delete_tx(pg_conn *c, const char *name, int64_t want_id) {
    int64_t id = 0;
    int err = pg_bucket_lookup(c, PS_BUCKET_LOCK, name, want_id, NULL, &id);
    if (err == 0) err = exec_ids(c, PS_BUCKET_LOCK_UPLOADS, id, NULL, "bucket lock uploads");
    if (err != 0) return err;
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    if ((err = pg_run(c, PS_BUCKET_HAS_OBJECTS, &p, &r, NULL, "bucket empty")) != 0) return err;
    bool has_objects = PQntuples(r) > 0;
    PQclear(r);
    if (has_objects) return CAIRN_ENOTEMPTY;
    /* As in S3, deleting a bucket aborts the uploads in progress in it. */
    int64_t now = time_now_ms();
    err = exec_ids(c, PS_BUCKET_TRASH_PARTS, id, &now, "bucket trash parts");
    if (err == 0) err = exec_ids(c, PS_BUCKET_DROP_PARTS, id, NULL, "bucket drop parts");
    if (err == 0) err = exec_ids(c, PS_BUCKET_DROP_UPLOADS, id, NULL, "bucket drop uploads");
    if (err == 0) err = exec_ids(c, PS_BUCKET_DROP_COMPLETED, id, NULL, "bucket drop completed uploads");
    if (err == 0) err = exec_ids(c, PS_BUCKET_NOTIFY_DELETE, id, NULL, "bucket drop notification configuration");
    if (err == 0) err = exec_ids(c, PS_BUCKET_CONFIG_DROP, id, NULL, "bucket drop configurations");
    if (err == 0) err = pg_run(c, PS_BUCKET_LIMIT_DROP, &p, NULL, NULL, "bucket drop rate limit");
    if (err == 0) err = pg_run(c, PS_BUCKET_DELETE, &p, NULL, NULL, "bucket delete");
    return err;
}

int pg_bucket_delete(meta_store *base_, const char *name, int64_t id) {
    pg_store *ms = PG(base_);
    if (!name) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    return pg_tx_end(ms, c, bucket_delete_tx(c, name, id));
}

int pg_bucket_list(meta_store *base_, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud) {
    if (!cb) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, owner_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_BUCKET_LIST, &p, &r, NULL, "bucket list");
    if (err != 0) return err;
    meta_bucket *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_bucket, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_bucket_list_page(meta_store *base_, int64_t owner_id, const char *after, const char *lo, const char *hi, int limit,
                        int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more) {
    if (!cb) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, owner_id);
    pgp_text(&p, after);
    pgp_text(&p, lo);
    pgp_text(&p, hi);
    pgp_int(&p, (int64_t)limit + 1); /* one row past the page says whether another follows */
    PGresult *r;
    int err = pg_read(PG(base_), PS_BUCKET_LIST_PAGE, &p, &r, NULL, "bucket list page");
    if (err != 0) return err;
    meta_bucket *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_bucket, NULL, (void **)&rows, &n);
    PQclear(r);
    if (err == 0 && n > limit) {
        n = limit;
        if (more) *more = true;
    }
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}
