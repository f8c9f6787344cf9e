/*
 * sqlite_notify.c — the SQLite backend (sqlite.c): bucket notifications'
 * records: the webhook targets and each bucket's configuration.  Their
 * deliveries are jobs (sqlite_jobs.c), enqueued in the object change's own
 * transaction (sqlite_objects.c).
 */
#include "meta/sqlite_int.h"

#include <stdlib.h>
#include <string.h>

static int bind_target(sqlite3_stmt *st, const void *p) {
    const meta_notify_target *t = p;
    return sq_bind_str(st, 1, t->name) | sq_bind_str(st, 2, t->url) | sq_bind_str(st, 3, t->secret) |
           sqlite3_bind_int(st, 4, t->max_attempts) | sqlite3_bind_int64(st, 5, t->created_ms) |
           sqlite3_bind_int(st, 6, t->ordered ? 1 : 0);
}

int sq_notify_target_add(meta_store *base_, const meta_notify_target *t) {
    return sq_write_one(SQ(base_), ST_NOTIFY_TARGET_ADD, bind_target, t, NULL, "notify target add");
}

static int row_target(sqlite3_stmt *st, meta_notify_target *t) {
    memset(t, 0, sizeof *t);
    int err = sq_col_copy(st, 0, t->name, sizeof t->name);
    if (err == 0) err = sq_col_copy(st, 1, t->url, sizeof t->url);
    if (err == 0) err = sq_col_copy(st, 2, t->secret, sizeof t->secret);
    t->max_attempts = sqlite3_column_int(st, 3);
    t->created_ms = sqlite3_column_int64(st, 4);
    t->ordered = sqlite3_column_int(st, 5) != 0;
    return err;
}

int sq_notify_target_get(meta_store *base_, const char *name, meta_notify_target *out) {
    sq_store *ms = SQ(base_);
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_NOTIFY_TARGET_GET);
    int err = st ? sq_bind_result(c, sq_bind_str(st, 1, name), "notify target get bind") : CAIRN_EDB;
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) err = row_target(st, out);
        else err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "notify target get");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

int sq_notify_target_list(meta_store *base_, int (*cb)(void *ud, const meta_notify_target *t), void *ud) {
    sq_store *ms = SQ(base_);
    vec v = {.size = sizeof(meta_notify_target)};
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_NOTIFY_TARGET_LIST);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_notify_target *t = sq_vec_push(&v);
        err = t ? row_target(st, t) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(c, rc, "notify target list");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    /* Rows are copied out before any callback runs (meta_int.h). */
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_notify_target *)v.items + i)) break;
    free(v.items);
    return err;
}

static int bind_name(sqlite3_stmt *st, const void *p) { return sq_bind_str(st, 1, p); }

int sq_notify_target_remove(meta_store *base_, const char *name) {
    int changes = 0;
    int err = sq_write_one(SQ(base_), ST_NOTIFY_TARGET_REMOVE, bind_name, name, &changes, "notify target remove");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int sq_bucket_notification_get(meta_store *base_, int64_t bucket_id, char **config) {
    sq_store *ms = SQ(base_);
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_BUCKET_NOTIFY_GET);
    int err = st ? sq_bind_result(c, sqlite3_bind_int64(st, 1, bucket_id), "bucket notification bind") : CAIRN_EDB;
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *text = (const char *)sqlite3_column_text(st, 0);
            *config = strdup(text ? text : "");
            if (!*config) err = CAIRN_ENOMEM;
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "bucket notification get");
        }
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

typedef struct {
    int64_t id;
    const char *config;
} config_args;

static int bind_config(sqlite3_stmt *st, const void *p) {
    const config_args *a = p;
    int rc = sqlite3_bind_int64(st, 1, a->id);
    if (sqlite3_bind_parameter_count(st) >= 2) rc |= sq_bind_str(st, 2, a->config);
    return rc;
}

int sq_bucket_notification_put(meta_store *base_, int64_t bucket_id, const char *config) {
    config_args a = {bucket_id, config};
    return sq_write_one(SQ(base_), config[0] ? ST_BUCKET_NOTIFY_PUT : ST_BUCKET_NOTIFY_DELETE, bind_config, &a, NULL,
                        "bucket notification put");
}

int sq_bucket_config_get(meta_store *base_, int64_t bucket_id, const char *kind, char **body) {
    sq_store *ms = SQ(base_);
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_BUCKET_CONFIG_GET);
    int err = st ? sq_bind_result(c, sqlite3_bind_int64(st, 1, bucket_id) | sq_bind_str(st, 2, kind),
                                  "bucket config bind")
                 : CAIRN_EDB;
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *text = (const char *)sqlite3_column_text(st, 0);
            *body = strdup(text ? text : "");
            if (!*body) err = CAIRN_ENOMEM;
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "bucket config get");
        }
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

typedef struct {
    int64_t id;
    const char *kind, *body;
} bucket_config_args;

static int bind_bucket_config(sqlite3_stmt *st, const void *p) {
    const bucket_config_args *a = p;
    int rc = sqlite3_bind_int64(st, 1, a->id) | sq_bind_str(st, 2, a->kind);
    if (sqlite3_bind_parameter_count(st) >= 3)
        rc |= sq_bind_str(st, 3, a->body) | sqlite3_bind_int64(st, 4, time_now_ms());
    return rc;
}

int sq_bucket_config_put(meta_store *base_, const char *bucket, int64_t bucket_id, const char *kind, const char *body) {
    (void)bucket;
    bucket_config_args a = {bucket_id, kind, body};
    return sq_write_one(SQ(base_), body[0] ? ST_BUCKET_CONFIG_PUT : ST_BUCKET_CONFIG_DELETE, bind_bucket_config, &a,
                        NULL, "bucket config put");
}

int sq_job_pending_count(meta_store *base_, const char *kind, const char *needle, int64_t before_id, int64_t *n) {
    sq_store *ms = SQ(base_);
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_JOB_PENDING_COUNT);
    int err = st ? sq_bind_result(c, sq_bind_str(st, 1, kind) | sq_bind_str(st, 2, needle) | sqlite3_bind_int64(st, 3, before_id),
                                  "job pending count bind")
                 : CAIRN_EDB;
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
        else err = sq_db_fail(c, rc, "job pending count");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

/* ---- rate limit overrides ---------------------------------------------------------------------- */

static int bind_limit(sqlite3_stmt *st, const void *p) {
    const meta_limit *l = p;
    return sq_bind_str(st, 1, l->scope) | sq_bind_str(st, 2, l->name) | sqlite3_bind_int64(st, 3, l->ops_per_s) |
           sqlite3_bind_int64(st, 4, l->bytes_per_s) | sqlite3_bind_int64(st, 5, l->updated_ms);
}

int sq_limit_set(meta_store *base_, const meta_limit *l) {
    return sq_write_one(SQ(base_), ST_LIMIT_SET, bind_limit, l, NULL, "rate limit set");
}

int sq_limit_list(meta_store *base_, int (*cb)(void *ud, const meta_limit *l), void *ud) {
    sq_store *ms = SQ(base_);
    vec v = {.size = sizeof(meta_limit)};
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_LIMIT_LIST);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_limit *l = sq_vec_push(&v);
        if (!l) {
            err = CAIRN_ENOMEM;
            break;
        }
        memset(l, 0, sizeof *l);
        err = sq_col_copy(st, 0, l->scope, sizeof l->scope);
        if (err == 0) err = sq_col_copy(st, 1, l->name, sizeof l->name);
        l->ops_per_s = sqlite3_column_int64(st, 2);
        l->bytes_per_s = sqlite3_column_int64(st, 3);
        l->updated_ms = sqlite3_column_int64(st, 4);
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_db_fail(c, rc, "rate limit list");
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    /* Rows are copied out before any callback runs (meta_int.h). */
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_limit *)v.items + i)) break;
    free(v.items);
    return err;
}

typedef struct {
    const char *scope, *name;
} limit_key;

static int bind_limit_key(sqlite3_stmt *st, const void *p) {
    const limit_key *k = p;
    return sq_bind_str(st, 1, k->scope) | sq_bind_str(st, 2, k->name);
}

int sq_limit_remove(meta_store *base_, const char *scope, const char *name) {
    int changes = 0;
    limit_key k = {scope, name};
    int err = sq_write_one(SQ(base_), ST_LIMIT_REMOVE, bind_limit_key, &k, &changes, "rate limit remove");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}
