/*
 * pg_notify.c — the PostgreSQL backend (pg.c): bucket notifications'
 * records, as sqlite_notify.c keeps them on SQLite.
 */
#include "meta/pg_int.h"

#include <stdlib.h>
#include <string.h>

int pg_notify_target_add(meta_store *base_, const meta_notify_target *t) {
    pg_params p = {0};
    pgp_text(&p, t->name);
    pgp_text(&p, t->url);
    pgp_text(&p, t->secret);
    pgp_int(&p, t->max_attempts);
    pgp_int(&p, t->created_ms);
    pgp_bool(&p, t->ordered);
    return pg_read(PG(base_), PS_NOTIFY_TARGET_ADD, &p, NULL, NULL, "notify target add");
}

static int row_target(const PGresult *r, int row, void *out) {
    meta_notify_target *t = out;
    memset(t, 0, sizeof *t);
    int err = pg_copy(r, row, 0, t->name, sizeof t->name);
    if (err == 0) err = pg_copy(r, row, 1, t->url, sizeof t->url);
    if (err == 0) err = pg_copy(r, row, 2, t->secret, sizeof t->secret);
    t->max_attempts = (int)pg_int(r, row, 3);
    t->created_ms = pg_int(r, row, 4);
    t->ordered = pg_int(r, row, 5) != 0;
    return err;
}

int pg_notify_target_get(meta_store *base_, const char *name, meta_notify_target *out) {
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    int err = pg_read(PG(base_), PS_NOTIFY_TARGET_GET, &p, &r, NULL, "notify target get");
    if (err != 0) return err;
    err = PQntuples(r) ? row_target(r, 0, out) : CAIRN_ENOTFOUND;
    PQclear(r);
    return err;
}

int pg_notify_target_list(meta_store *base_, int (*cb)(void *ud, const meta_notify_target *t), void *ud) {
    PGresult *r;
    int err = pg_read(PG(base_), PS_NOTIFY_TARGET_LIST, NULL, &r, NULL, "notify target list");
    if (err != 0) return err;
    meta_notify_target *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_target, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_notify_target_remove(meta_store *base_, const char *name) {
    pg_params p = {0};
    pgp_text(&p, name);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_NOTIFY_TARGET_REMOVE, &p, NULL, &changes, "notify target remove");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int pg_bucket_notification_get(meta_store *base_, int64_t bucket_id, char **config) {
    pg_params p = {0};
    pgp_int(&p, bucket_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_BUCKET_NOTIFY_GET, &p, &r, NULL, "bucket notification get");
    if (err != 0) return err;
    if (!PQntuples(r)) err = CAIRN_ENOTFOUND;
    else if (!(*config = strdup(PQgetvalue(r, 0, 0)))) err = CAIRN_ENOMEM;
    PQclear(r);
    return err;
}

int pg_bucket_notification_put(meta_store *base_, int64_t bucket_id, const char *config) {
    pg_params p = {0};
    pgp_int(&p, bucket_id);
    if (config[0]) pgp_text(&p, config);
    return pg_read(PG(base_), config[0] ? PS_BUCKET_NOTIFY_PUT : PS_BUCKET_NOTIFY_DELETE, &p, NULL, NULL,
                   "bucket notification put");
}

int pg_bucket_config_get(meta_store *base_, int64_t bucket_id, const char *kind, char **body) {
    pg_params p = {0};
    pgp_int(&p, bucket_id);
    pgp_text(&p, kind);
    PGresult *r;
    int err = pg_read(PG(base_), PS_BUCKET_CONFIG_GET, &p, &r, NULL, "bucket config get");
    if (err != 0) return err;
    if (!PQntuples(r)) err = CAIRN_ENOTFOUND;
    else if (!(*body = strdup(PQgetvalue(r, 0, 0)))) err = CAIRN_ENOMEM;
    PQclear(r);
    return err;
}

int pg_bucket_config_put(meta_store *base_, const char *bucket, int64_t bucket_id, const char *kind, const char *body) {
    (void)bucket;
    pg_params p = {0};
    pgp_int(&p, bucket_id);
    pgp_text(&p, kind);
    if (body[0]) {
        pgp_text(&p, body);
        pgp_int(&p, time_now_ms());
    }
    return pg_read(PG(base_), body[0] ? PS_BUCKET_CONFIG_PUT : PS_BUCKET_CONFIG_DELETE, &p, NULL, NULL,
                   "bucket config put");
}

int pg_job_pending_count(meta_store *base_, const char *kind, const char *needle, int64_t before_id, int64_t *n) {
    pg_params p = {0};
    pgp_text(&p, kind);
    pgp_text(&p, needle);
    pgp_int(&p, before_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_JOB_PENDING_COUNT, &p, &r, NULL, "job pending count");
    if (err != 0) return err;
    *n = PQntuples(r) ? pg_int(r, 0, 0) : 0;
    PQclear(r);
    return 0;
}

/* ---- rate limit overrides ---------------------------------------------------------------------- */

int pg_limit_set(meta_store *base_, const meta_limit *l) {
    pg_params p = {0};
    pgp_text(&p, l->scope);
    pgp_text(&p, l->name);
    pgp_int(&p, l->ops_per_s);
    pgp_int(&p, l->bytes_per_s);
    pgp_int(&p, l->updated_ms);
    return pg_read(PG(base_), PS_LIMIT_SET, &p, NULL, NULL, "rate limit set");
}

static int row_limit(const PGresult *r, int row, void *out) {
    meta_limit *l = out;
    memset(l, 0, sizeof *l);
    int err = pg_copy(r, row, 0, l->scope, sizeof l->scope);
    if (err == 0) err = pg_copy(r, row, 1, l->name, sizeof l->name);
    l->ops_per_s = pg_int(r, row, 2);
    l->bytes_per_s = pg_int(r, row, 3);
    l->updated_ms = pg_int(r, row, 4);
    return err;
}

int pg_limit_list(meta_store *base_, int (*cb)(void *ud, const meta_limit *l), void *ud) {
    PGresult *r;
    int err = pg_read(PG(base_), PS_LIMIT_LIST, NULL, &r, NULL, "rate limit list");
    if (err != 0) return err;
    meta_limit *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_limit, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_limit_remove(meta_store *base_, const char *scope, const char *name) {
    pg_params p = {0};
    pgp_text(&p, scope);
    pgp_text(&p, name);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_LIMIT_REMOVE, &p, NULL, &changes, "rate limit remove");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}
