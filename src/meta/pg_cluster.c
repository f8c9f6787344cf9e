/*
 * pg_cluster.c — the PostgreSQL backend (pg.c): the cluster's records: the
 * node registry, placements (which drives hold a version's shards, as
 * rebalancing moves them), the trash of shards to remove and the leases of
 * work one gateway does for all.  Mirrors sqlite_cluster.c.
 */
#include "meta/pg_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- placements ------------------------------------------------------------------------ */

static const pg_stmt_id place_scan_stmt[] = {PS_PLACE_OBJECTS, PS_PLACE_OBJECT_PARTS, PS_PLACE_UPLOAD_PARTS};
static const pg_stmt_id place_set_stmt[] = {PS_PLACE_SET_OBJECT, PS_PLACE_SET_OBJECT_PART, PS_PLACE_SET_UPLOAD_PART};

/* Columns: version id, size, layout, owner, key, part number. */
static int row_placement(const PGresult *r, int row, meta_place_kind kind, meta_placement *p) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    int err = pg_copy(r, row, 0, p->version_id, sizeof p->version_id);
    p->size = pg_int(r, row, 1);
    if (err == 0) err = pg_copy(r, row, 2, p->layout, sizeof p->layout);
    if (err == 0) err = pg_copy(r, row, 3, p->owner, sizeof p->owner);
    if (err == 0) err = pg_copy(r, row, 4, p->key, sizeof p->key);
    p->key_len = (size_t)PQgetlength(r, row, 4);
    p->part_number = (int)pg_int(r, row, 5);
    return err;
}

int pg_placement_scan(meta_store *base_, meta_place_cursor *cur, int limit,
                      int (*cb)(void *ud, const meta_placement *p), void *ud) {
    pg_store *ms = PG(base_);
    if (!cur || !cb || limit < 1) return CAIRN_EINVAL;
    int err = 0;
    while (!cur->done) {
        assert(cur->kind >= META_PLACE_OBJECT && cur->kind <= META_PLACE_UPLOAD_PART);
        pg_params p = {0};
        pgp_text(&p, cur->after);
        pgp_int(&p, limit);
        PGresult *r;
        if ((err = pg_read(ms, place_scan_stmt[cur->kind], &p, &r, NULL, "placement scan")) != 0) break;
        int n = PQntuples(r);
        meta_placement *rows = n ? calloc((size_t)n, sizeof *rows) : NULL;
        if (n && !rows) err = CAIRN_ENOMEM;
        for (int i = 0; err == 0 && i < n; i++) err = row_placement(r, i, cur->kind, &rows[i]);
        PQclear(r);
        if (err == 0 && n) memcpy(cur->after, rows[n - 1].version_id, sizeof cur->after);
        if (err == 0 && n < limit) {
            /* This kind is through: the next call starts the next one. */
            if (cur->kind == META_PLACE_UPLOAD_PART) cur->done = true;
            else cur->kind++;
            cur->after[0] = '\0';
        }
        bool stop = false;
        for (int i = 0; err == 0 && i < n && !stop; i++) stop = cb(ud, &rows[i]) != 0;
        free(rows);
        if (err != 0 || n > 0) break;
    }
    return err;
}

int pg_placement_get(meta_store *base_, const char *version_id, meta_placement *out) {
    if (!version_id || !out) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, version_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_PLACE_GET, &p, &r, NULL, "placement get");
    if (err != 0) return err;
    if (PQntuples(r) == 0) {
        err = CAIRN_ENOTFOUND;
    } else {
        int kind = (int)pg_int(r, 0, 6);
        assert(kind >= META_PLACE_OBJECT && kind <= META_PLACE_UPLOAD_PART);
        err = row_placement(r, 0, (meta_place_kind)kind, out);
    }
    PQclear(r);
    return err;
}

static int set_layout_tx(pg_conn *c, const char *version_id, const char *old_layout, const char *new_layout,
                         int64_t *changed) {
    /* A version id names one placement, whichever table holds it now (a part
     * moves from upload_parts to object_parts when its upload completes). */
    int err = 0;
    for (size_t i = 0; err == 0 && i < sizeof place_set_stmt / sizeof place_set_stmt[0]; i++) {
        pg_params p = {0};
        pgp_text(&p, version_id);
        pgp_text(&p, old_layout);
        pgp_text(&p, new_layout);
        int64_t n = 0;
        err = pg_run(c, place_set_stmt[i], &p, NULL, &n, "placement set layout");
        *changed += n;
    }
    return err;
}

int pg_placement_set_layout(meta_store *base_, const char *version_id, const char *old_layout,
                            const char *new_layout) {
    pg_store *ms = PG(base_);
    if (!version_id || !old_layout || !new_layout) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    int64_t changed = 0;
    err = pg_tx_end(ms, c, set_layout_tx(c, version_id, old_layout, new_layout, &changed));
    if (err != 0 || changed > 0) return err;
    bool referenced = true;
    err = pg_version_referenced(base_, version_id, &referenced);
    return err ? err : referenced ? CAIRN_ECONFLICT : CAIRN_ENOTFOUND;
}

int pg_layout_refs(meta_store *base_, const char *id, int64_t *count) {
    if (!count) return CAIRN_EINVAL;
    *count = 0;
    if (!id || !*id) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, id);
    PGresult *r;
    int err = pg_read_unbounded(PG(base_), PS_LAYOUT_REFS, &p, &r, "layout refs");
    if (err != 0) return err;
    *count = pg_int(r, 0, 0);
    PQclear(r);
    return 0;
}

int pg_version_referenced(meta_store *base_, const char *version_id, bool *referenced) {
    if (!referenced) return CAIRN_EINVAL;
    *referenced = true; /* on any doubt, keep the bytes */
    if (!version_id) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, version_id);
    PGresult *r;
    int err = pg_read(PG(base_), PS_VERSION_REFERENCED, &p, &r, NULL, "version referenced");
    if (err != 0) return err;
    *referenced = pg_bool(r, 0, 0);
    PQclear(r);
    return 0;
}

/* ---- the node registry ------------------------------------------------------------------ */

int pg_node_upsert(meta_store *base_, const char *id, const char *url) {
    if (!id || !url || strlen(id) != 16 || strlen(url) >= 256) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, id);
    pgp_text(&p, url);
    pgp_int(&p, time_now_ms());
    return pg_read(PG(base_), PS_NODE_UPSERT, &p, NULL, NULL, "node upsert");
}

static int row_node(const PGresult *r, int row, void *out) {
    meta_node *n = out;
    memset(n, 0, sizeof *n);
    int err = pg_copy(r, row, 0, n->id, sizeof n->id);
    if (err == 0) err = pg_copy(r, row, 1, n->url, sizeof n->url);
    if (err == 0) err = pg_copy(r, row, 2, n->state, sizeof n->state);
    n->added_ms = pg_int(r, row, 3);
    n->last_seen_ms = pg_int(r, row, 4);
    if (err == 0) err = pg_copy(r, row, 5, n->last_error, sizeof n->last_error);
    return err;
}

int pg_node_list(meta_store *base_, int (*cb)(void *ud, const meta_node *n), void *ud) {
    if (!cb) return CAIRN_EINVAL;
    PGresult *r;
    int err = pg_read(PG(base_), PS_NODE_LIST, NULL, &r, NULL, "node list");
    if (err != 0) return err;
    meta_node *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_node, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_node_get(meta_store *base_, const char *id_or_url, meta_node *out) {
    if (!id_or_url || !out) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, id_or_url);
    PGresult *r;
    int err = pg_read(PG(base_), PS_NODE_GET, &p, &r, NULL, "node get");
    if (err != 0) return err;
    err = PQntuples(r) == 0 ? CAIRN_ENOTFOUND : row_node(r, 0, out);
    PQclear(r);
    return err;
}

int pg_node_set_state(meta_store *base_, const char *id, const char *state) {
    if (!id || !state || (strcmp(state, "active") && strcmp(state, "draining") && strcmp(state, "removed")))
        return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, id);
    pgp_text(&p, state);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_NODE_SET_STATE, &p, NULL, &changes, "node set state");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int pg_node_seen(meta_store *base_, const char *id, bool ok, const char *error) {
    if (!id) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_text(&p, id);
    if (ok) pgp_int(&p, time_now_ms());
    else pgp_bytes_max(&p, error ? error : "", sizeof((meta_node *)0)->last_error);
    int64_t changes = 0;
    int err = pg_read(PG(base_), ok ? PS_NODE_SEEN_OK : PS_NODE_SEEN_ERR, &p, NULL, &changes,
                      ok ? "node seen" : "node error");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

/* ---- the trash ------------------------------------------------------------------------ */

static int row_trash(const PGresult *r, int row, void *out) {
    meta_trash_entry *e = out;
    memset(e, 0, sizeof *e);
    int err = pg_copy(r, row, 0, e->version_id, sizeof e->version_id);
    if (err == 0) err = pg_copy(r, row, 1, e->layout, sizeof e->layout);
    e->added_ms = pg_int(r, row, 2);
    return err;
}

int pg_trash_list(meta_store *base_, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud) {
    if (!cb || limit < 1) return CAIRN_EINVAL;
    pg_params p = {0};
    pgp_int(&p, limit);
    PGresult *r;
    int err = pg_read(PG(base_), PS_TRASH_LIST, &p, &r, NULL, "trash list");
    if (err != 0) return err;
    meta_trash_entry *rows;
    int n;
    err = pg_rows(r, sizeof *rows, row_trash, NULL, (void **)&rows, &n);
    PQclear(r);
    for (int i = 0; err == 0 && i < n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int pg_trash_remove(meta_store *base_, const char *const *version_ids, int n) {
    pg_store *ms = PG(base_);
    if (n < 0 || (n && !version_ids)) return CAIRN_EINVAL;
    if (n == 0) return 0;
    pg_conn *c;
    int err = pg_tx_begin(ms, &c);
    if (err != 0) return err;
    for (int i = 0; err == 0 && i < n; i++) {
        pg_params p = {0};
        pgp_text(&p, version_ids[i]);
        err = pg_run(c, PS_TRASH_DELETE, &p, NULL, NULL, "trash delete");
    }
    return pg_tx_end(ms, c, err);
}

/* ---- leases ------------------------------------------------------------------------- */

int pg_lease_acquire(meta_store *base_, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms,
                     bool *held) {
    pg_params p = {0};
    pgp_text(&p, name);
    pgp_text(&p, holder);
    pgp_int(&p, now_ms);
    pgp_int(&p, ttl_ms);
    PGresult *r;
    int err = pg_read(PG(base_), PS_LEASE_ACQUIRE, &p, &r, NULL, "lease acquire");
    if (err != 0) return err;
    /* A row comes back only when the insert or the update happened. */
    *held = PQntuples(r) == 1;
    PQclear(r);
    return 0;
}

int pg_lease_release(meta_store *base_, const char *name, const char *holder) {
    pg_params p = {0};
    pgp_text(&p, name);
    pgp_text(&p, holder);
    int64_t changes = 0;
    int err = pg_read(PG(base_), PS_LEASE_RELEASE, &p, NULL, &changes, "lease release");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int pg_lease_get(meta_store *base_, const char *name, meta_lease *out) {
    pg_params p = {0};
    pgp_text(&p, name);
    PGresult *r;
    int err = pg_read(PG(base_), PS_LEASE_GET, &p, &r, NULL, "lease get");
    if (err != 0) return err;
    if (PQntuples(r) == 0) {
        err = CAIRN_ENOTFOUND;
    } else {
        err = pg_copy(r, 0, 0, out->name, sizeof out->name);
        if (err == 0) err = pg_copy(r, 0, 1, out->holder, sizeof out->holder);
        out->acquired_ms = pg_int(r, 0, 2);
        out->expires_ms = pg_int(r, 0, 3);
    }
    PQclear(r);
    return err;
}
