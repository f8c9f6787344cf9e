/*
 * sqlite_cluster.c — the SQLite backend (sqlite.c): the cluster's records: the node registry, placements (which drives hold a version's shards, as rebalancing moves them), the trash of shards to remove and the leases of work one gateway does for all.
 */
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- layouts and the node registry ---------------------------------------------------- */

/* Runs one single-statement write on the writer; *changes gets rows changed. */
int sq_write_one(sq_store *ms, stmt_id id, int (*bind)(sqlite3_stmt *, const void *), const void *args,
                     int *changes, const char *op) {
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = sq_stmt(w, id);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_stmt_exec_bound(w, st, bind(st, args), op);
    if (changes) *changes = err == 0 ? sqlite3_changes(w->db) : 0;
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

/* ---- placements ------------------------------------------------------------------------ */

static const stmt_id place_scan_stmt[] = {ST_PLACE_OBJECTS, ST_PLACE_OBJECT_PARTS, ST_PLACE_UPLOAD_PARTS};
static const stmt_id place_set_stmt[] = {ST_PLACE_SET_OBJECT, ST_PLACE_SET_OBJECT_PART, ST_PLACE_SET_UPLOAD_PART};

/* Columns: version id, size, layout, owner, key, part number. */
static int row_placement(sqlite3_stmt *st, meta_place_kind kind, meta_placement *p) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    int err = sq_col_copy(st, 0, p->version_id, sizeof p->version_id);
    p->size = sqlite3_column_int64(st, 1);
    if (err == 0) err = sq_col_copy(st, 2, p->layout, sizeof p->layout);
    if (err == 0) err = sq_col_copy(st, 3, p->owner, sizeof p->owner);
    if (err == 0) err = sq_col_copy(st, 4, p->key, sizeof p->key);
    p->key_len = (size_t)sqlite3_column_bytes(st, 4);
    p->part_number = sqlite3_column_int(st, 5);
    return err;
}

int sq_placement_scan(meta_store *base_, meta_place_cursor *cur, int limit,
                        int (*cb)(void *ud, const meta_placement *p), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cur || !cb || limit < 1) return CAIRN_EINVAL;
    int err = 0;
    while (!cur->done) {
        assert(cur->kind >= META_PLACE_OBJECT && cur->kind <= META_PLACE_UPLOAD_PART);
        vec v = {.size = sizeof(meta_placement)};
        conn *c = sq_reader_get(ms);
        sqlite3_stmt *st = sq_stmt(c, place_scan_stmt[cur->kind]);
        err = st ? 0 : CAIRN_EDB;
        if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, cur->after) | sqlite3_bind_int(st, 2, limit), "placement scan bind");
        while (err == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) {
                err = sq_db_fail(c, rc, "placement scan");
                break;
            }
            meta_placement *p = sq_vec_push(&v);
            err = p ? row_placement(st, cur->kind, p) : CAIRN_ENOMEM;
        }
        if (st) sq_stmt_done(st);
        sq_reader_put(ms, c);
        meta_placement *rows = v.items;
        if (err == 0 && v.n) memcpy(cur->after, rows[v.n - 1].version_id, sizeof cur->after);
        if (err == 0 && v.n < (size_t)limit) {
            /* This kind is through: the next call starts the next one. */
            if (cur->kind == META_PLACE_UPLOAD_PART) cur->done = true;
            else cur->kind++;
            cur->after[0] = '\0';
        }
        bool stop = false;
        for (size_t i = 0; err == 0 && i < v.n && !stop; i++) stop = cb(ud, &rows[i]) != 0;
        free(rows);
        if (err != 0 || v.n > 0) break;
    }
    return err;
}

int sq_placement_get(meta_store *base_, const char *version_id, meta_placement *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !version_id || !out) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_PLACE_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, version_id), "placement get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int kind = sqlite3_column_int(st, 6);
            assert(kind >= META_PLACE_OBJECT && kind <= META_PLACE_UPLOAD_PART);
            err = row_placement(st, (meta_place_kind)kind, out);
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "placement get");
        }
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

typedef struct { const char *version_id, *old_layout, *new_layout; } set_layout_args;

static int bind_set_layout(sqlite3_stmt *st, const void *p) {
    const set_layout_args *a = p;
    return sq_bind_str(st, 1, a->version_id) | sq_bind_str(st, 2, a->old_layout) | sq_bind_str(st, 3, a->new_layout);
}

int sq_placement_set_layout(meta_store *base_, const char *version_id, const char *old_layout,
                              const char *new_layout) {
    sq_store *ms = SQ(base_);
    if (!ms || !version_id || !old_layout || !new_layout) return CAIRN_EINVAL;
    set_layout_args a = {version_id, old_layout, new_layout};
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    /* A version id names one placement, whichever table holds it now (a part
     * moves from upload_parts to object_parts when its upload completes). */
    int changed = 0;
    for (size_t i = 0; err == 0 && i < sizeof place_set_stmt / sizeof place_set_stmt[0]; i++) {
        sqlite3_stmt *st = sq_stmt(w, place_set_stmt[i]);
        if (!st) err = CAIRN_EDB;
        else if ((err = sq_stmt_exec_bound(w, st, bind_set_layout(st, &a), "placement set layout")) == 0)
            changed += sqlite3_changes(w->db);
    }
    err = sq_wtx_end(ms, err);
    if (err != 0 || changed > 0) return err;
    bool referenced = true;
    err = sq_version_referenced(&ms->base, version_id, &referenced);
    return err ? err : referenced ? CAIRN_ECONFLICT : CAIRN_ENOTFOUND;
}

int sq_layout_refs(meta_store *base_, const char *id, int64_t *count) {
    sq_store *ms = SQ(base_);
    if (!count) return CAIRN_EINVAL;
    *count = 0;
    if (!ms || !id || !*id) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_LAYOUT_REFS);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, id), "layout refs bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *count = sqlite3_column_int64(st, 0);
        else err = sq_db_fail(c, rc, "layout refs");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

typedef struct { const char *a, *b; int64_t n; } str2_args;

static int bind_node_upsert(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return sq_bind_str(st, 1, a->a) | sq_bind_str(st, 2, a->b) | sqlite3_bind_int64(st, 3, a->n);
}

int sq_node_upsert(meta_store *base_, const char *id, const char *url) {
    sq_store *ms = SQ(base_);
    if (!ms || !id || !url || strlen(id) != 16 || strlen(url) >= 256) return CAIRN_EINVAL;
    str2_args a = {id, url, time_now_ms()};
    return sq_write_one(ms, ST_NODE_UPSERT, bind_node_upsert, &a, NULL, "node upsert");
}

static int row_node(sqlite3_stmt *st, meta_node *n) {
    memset(n, 0, sizeof *n);
    int err = sq_col_copy(st, 0, n->id, sizeof n->id);
    if (err == 0) err = sq_col_copy(st, 1, n->url, sizeof n->url);
    if (err == 0) err = sq_col_copy(st, 2, n->state, sizeof n->state);
    n->added_ms = sqlite3_column_int64(st, 3);
    n->last_seen_ms = sqlite3_column_int64(st, 4);
    if (err == 0) err = sq_col_copy(st, 5, n->last_error, sizeof n->last_error);
    return err;
}

int sq_node_list(meta_store *base_, int (*cb)(void *ud, const meta_node *n), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_NODE_LIST);
    int err = st ? 0 : CAIRN_EDB;
    vec v = {.size = sizeof(meta_node)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = sq_db_fail(c, rc, "node list"); break; }
        meta_node *row = sq_vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_node(st, row);
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    meta_node *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int sq_node_get(meta_store *base_, const char *id_or_url, meta_node *out) {
    sq_store *ms = SQ(base_);
    if (!ms || !id_or_url || !out) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_NODE_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, id_or_url), "node get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) err = row_node(st, out);
        else if (rc == SQLITE_DONE) err = CAIRN_ENOTFOUND;
        else err = sq_db_fail(c, rc, "node get");
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

static int bind_str2(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return sq_bind_str(st, 1, a->a) | sq_bind_str(st, 2, a->b);
}

static int bind_node_error(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return sq_bind_str(st, 1, a->a) | sq_bind_str_max(st, 2, a->b, sizeof((meta_node *)0)->last_error);
}

static int bind_str_int(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return sq_bind_str(st, 1, a->a) | sqlite3_bind_int64(st, 2, a->n);
}

int sq_node_set_state(meta_store *base_, const char *id, const char *state) {
    sq_store *ms = SQ(base_);
    if (!ms || !id || !state ||
        (strcmp(state, "active") && strcmp(state, "draining") && strcmp(state, "removed")))
        return CAIRN_EINVAL;
    str2_args a = {id, state, 0};
    int changes = 0;
    int err = sq_write_one(ms, ST_NODE_SET_STATE, bind_str2, &a, &changes, "node set state");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int sq_node_seen(meta_store *base_, const char *id, bool ok, const char *error) {
    sq_store *ms = SQ(base_);
    if (!ms || !id) return CAIRN_EINVAL;
    str2_args a = {id, error ? error : "", time_now_ms()};
    int changes = 0;
    int err = ok ? sq_write_one(ms, ST_NODE_SEEN_OK, bind_str_int, &a, &changes, "node seen")
                 : sq_write_one(ms, ST_NODE_SEEN_ERR, bind_node_error, &a, &changes, "node error");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

/* ---- leases ------------------------------------------------------------------------- */

int sq_lease_acquire(meta_store *base_, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms,
                     bool *held) {
    sq_store *ms = SQ(base_);
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_LEASE_ACQUIRE);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0)
        err = sq_bind_result(w, sq_bind_str(st, 1, name) | sq_bind_str(st, 2, holder) |
                                    sqlite3_bind_int64(st, 3, now_ms) | sqlite3_bind_int64(st, 4, ttl_ms),
                             "lease acquire bind");
    if (err == 0) {
        /* A row comes back only when the insert or the update happened. */
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *held = true;
        else if (rc != SQLITE_DONE) err = sq_db_fail(w, rc, "lease acquire");
        /* The reset ends the statement; a RETURNING statement may fail only then. */
        rc = sqlite3_reset(st);
        if (err == 0 && rc != SQLITE_OK) err = sq_db_fail(w, rc, "lease acquire");
        if (err != 0) *held = false;
    }
    if (st) sq_stmt_done(st);
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

int sq_lease_release(meta_store *base_, const char *name, const char *holder) {
    str2_args a = {name, holder, 0};
    int changes = 0;
    int err = sq_write_one(SQ(base_), ST_LEASE_RELEASE, bind_str2, &a, &changes, "lease release");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int sq_lease_get(meta_store *base_, const char *name, meta_lease *out) {
    sq_store *ms = SQ(base_);
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_LEASE_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sq_bind_str(st, 1, name), "lease get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            err = sq_col_copy(st, 0, out->name, sizeof out->name);
            if (err == 0) err = sq_col_copy(st, 1, out->holder, sizeof out->holder);
            out->acquired_ms = sqlite3_column_int64(st, 2);
            out->expires_ms = sqlite3_column_int64(st, 3);
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : sq_db_fail(c, rc, "lease get");
        }
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    return err;
}

/* ---- the trash ------------------------------------------------------------------------ */

int sq_trash_list(meta_store *base_, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud) {
    sq_store *ms = SQ(base_);
    if (!ms || !cb || limit < 1) return CAIRN_EINVAL;
    conn *c = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(c, ST_TRASH_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = sq_bind_result(c, sqlite3_bind_int(st, 1, limit), "trash list bind");
    vec v = {.size = sizeof(meta_trash_entry)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = sq_db_fail(c, rc, "trash list"); break; }
        meta_trash_entry *e = sq_vec_push(&v);
        if (!e) { err = CAIRN_ENOMEM; break; }
        memset(e, 0, sizeof *e);
        err = sq_col_copy(st, 0, e->version_id, sizeof e->version_id);
        if (err == 0) err = sq_col_copy(st, 1, e->layout, sizeof e->layout);
        e->added_ms = sqlite3_column_int64(st, 2);
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, c);
    meta_trash_entry *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int sq_trash_remove(meta_store *base_, const char *const *version_ids, int n) {
    sq_store *ms = SQ(base_);
    if (!ms || n < 0 || (n && !version_ids)) return CAIRN_EINVAL;
    if (n == 0) return 0;
    conn *w;
    int err = sq_wtx_begin(ms, &w);
    if (err != 0) return err;
    for (int i = 0; err == 0 && i < n; i++) err = sq_exec_id(w, ST_TRASH_DELETE, version_ids[i], "trash delete");
    return sq_wtx_end(ms, err);
}
