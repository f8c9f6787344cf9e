/*
 * meta.c — the metadata interface (meta.h) over its backends: opening a store
 * by URL, and every meta_* call forwarded through the store's table of
 * operations (meta_int.h).  What holds whatever the backend is done here:
 * a NULL store is CAIRN_EINVAL, and the out-flags and counts a caller may
 * read after any result (more, had_replaced, deleted, total) start false or
 * zero before the backend runs (referenced starts true: on doubt, keep).
 */
#include "meta/meta.h"
#include "meta/meta_int.h"
#include "meta/pg_int.h"
#include "meta/sqlite_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

static int refuse(char *why, size_t whylen, const char *text) {
    if (why && whylen) snprintf(why, whylen, "%s", text);
    return CAIRN_EINVAL;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int meta_url_parse(const char *url, const char *data_dir, meta_url *out, char *why, size_t whylen) {
    if (!url || !out) return refuse(why, whylen, "no URL");
    memset(out, 0, sizeof *out);
    if (!*url) {
        if (!data_dir || !*data_dir) return refuse(why, whylen, "no data directory for the default database");
        out->backend = META_BACKEND_SQLITE;
        int n = snprintf(out->path, sizeof out->path, "%s/meta.db", data_dir);
        return n > 0 && (size_t)n < sizeof out->path ? 0 : refuse(why, whylen, "data directory path too long");
    }
    if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13)) {
        size_t n = strlen(url);
        if (n >= sizeof out->conninfo) return refuse(why, whylen, "postgres URL too long");
        out->backend = META_BACKEND_POSTGRES;
        memcpy(out->conninfo, url, n + 1);
        return 0;
    }
    if (strncmp(url, "sqlite://", 9) != 0) return refuse(why, whylen, "not a sqlite:// or postgres:// URL");
    const char *p = url + 9;
    if (*p != '/') return refuse(why, whylen, "sqlite URLs name an absolute path and no host: sqlite:///ABS/PATH");
    size_t n = 0;
    for (; *p; p++) {
        char c = *p;
        if (c == '?' || c == '#') return refuse(why, whylen, "sqlite URLs take no query or fragment");
        if (c == '%') {
            int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);
            if (lo < 0) return refuse(why, whylen, "bad %-escape in the sqlite path");
            c = (char)(hi * 16 + lo);
            if (!c) return refuse(why, whylen, "NUL in the sqlite path");
            p += 2;
        }
        if (n + 1 >= sizeof out->path) return refuse(why, whylen, "sqlite path too long");
        out->path[n++] = c;
    }
    out->path[n] = '\0';
    if (n < 2 || out->path[n - 1] == '/') return refuse(why, whylen, "the sqlite URL names a directory, not a file");
    out->backend = META_BACKEND_SQLITE;
    return 0;
}

int meta_open_url(const char *url, const char *data_dir, const meta_options *opt, bool migrate, meta_store **out,
                  char *why, size_t whylen) {
    if (why && whylen) why[0] = '\0';
    if (out) *out = NULL;
    meta_url u;
    int rc = meta_url_parse(url, data_dir, &u, why, whylen);
    if (rc != 0) return rc;
    if (u.backend == META_BACKEND_POSTGRES) return pg_open(u.conninfo, opt ? opt->pg : NULL, migrate, out, why, whylen);
    char detail[1024] = "";
    rc = sq_open(u.path, opt, migrate, out, detail, sizeof detail);
    if (rc != 0 && why && whylen) snprintf(why, whylen, "%s: %s", u.path, detail[0] ? detail : cairn_strerror(rc));
    return rc;
}

void meta_delete_items_start(meta_delete_item *items, int n, size_t key_max, bool (*key_ok)(const char *, size_t)) {
    for (int i = 0; i < n; i++) {
        memset(&items[i].deleted, 0, sizeof items[i].deleted);
        memset(&items[i].marker, 0, sizeof items[i].marker);
        items[i].deleted_marker = false;
        /* A key too long to exist is absent: nothing to delete. */
        items[i].rc = key_ok(items[i].key, items[i].key_len) || (items[i].key && items[i].key_len > key_max)
                          ? 0 : CAIRN_EINVAL;
    }
}

void meta_delete_items_undone(meta_delete_item *items, int n, int err) {
    for (int i = 0; i < n; i++) {
        meta_object_clear(&items[i].deleted);
        meta_object_clear(&items[i].marker);
        memset(&items[i].deleted, 0, sizeof items[i].deleted);
        memset(&items[i].marker, 0, sizeof items[i].marker);
        items[i].deleted_marker = false;
        if (items[i].rc == 0) items[i].rc = err;
    }
}

int meta_key_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

size_t meta_key_successor(const char *prefix, size_t n, char *out) {
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xFF) n--;
    if (n == 0) return 0;
    memcpy(out, prefix, n);
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    return n;
}

int meta_page_rows(const meta_pager *p, void *fetch_ud, void *ud, int limit, bool *more) {
    if (more) *more = false;
    char *rows = malloc(p->row_size * META_PAGE_MAX), *after = malloc(p->row_size);
    int err = rows && after ? 0 : CAIRN_ENOMEM;
    bool have_after = false;
    int delivered = 0, batch = META_PAGE_FIRST;
    while (err == 0) {
        int room = limit - delivered, fetch = room < batch ? room + 1 : batch, got = 0;
        err = p->fetch(fetch_ud, have_after ? after : NULL, fetch, rows, &got);
        /* The backend's connection is back: the rows go to the callback. */
        int deliver = got < room ? got : room;
        bool stopped = false;
        for (int i = 0; i < got; i++) {
            char *row = rows + p->row_size * (size_t)i;
            if (err == 0 && !stopped && i < deliver) stopped = p->deliver(ud, row) != 0;
            if (i == got - 1) memcpy(after, row, p->row_size); /* the next batch starts after it */
            if (p->clear) p->clear(row);
        }
        if (err != 0 || stopped) break;
        delivered += deliver;
        if (got > room) {
            if (more) *more = true;
            break;
        }
        if (got < fetch) break;
        have_after = true;
        batch = batch * 2 < META_PAGE_MAX ? batch * 2 : META_PAGE_MAX;
    }
    free(rows);
    free(after);
    return err;
}

const char *meta_backend_name(const meta_store *ms) { return ms ? ms->ops->name : "none"; }

int meta_pool_stats_get(meta_store *ms, meta_pool_stats *out) {
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms || !ms->ops->pool_stats) return CAIRN_EINVAL;
    return ms->ops->pool_stats(ms, out);
}

int meta_open(const char *path, const meta_options *opt, meta_store **out) {
    return sq_open(path, opt, true, out, NULL, 0);
}

int meta_open_raw(const char *path, const meta_options *opt, meta_store **out) {
    return sq_open(path, opt, false, out, NULL, 0);
}

void meta_close(meta_store *ms) {
    if (!ms) return;
    for (meta_kinds *k = atomic_exchange(&ms->job_kinds, NULL), *prev; k; k = prev) {
        prev = k->prev;
        free(k);
    }
    ms->ops->close(ms);
}

int meta_job_kinds_set(meta_store *ms, const char *const *kinds, int n) {
    if (!ms || n < 0 || (n > 0 && !kinds)) return CAIRN_EINVAL;
    buf_t b;
    buf_init(&b);
    if (n > 0) {
        buf_putc(&b, '[');
        for (int i = 0; i < n; i++) {
            if (i) buf_putc(&b, ',');
            buf_putc(&b, '"');
            buf_json_escape(&b, kinds[i], strlen(kinds[i]));
            buf_putc(&b, '"');
        }
        buf_putc(&b, ']');
    }
    meta_kinds *k = malloc(sizeof *k + b.len + 1);
    if (!k || b.oom) {
        free(k);
        buf_free(&b);
        return CAIRN_ENOMEM;
    }
    if (b.len) memcpy(k->json, b.data, b.len);
    k->json[b.len] = '\0';
    buf_free(&b);
    /* The old value is kept, not freed: a claim running now may read it. */
    k->prev = atomic_exchange(&ms->job_kinds, k);
    return 0;
}

/* The kinds claims take (NULL: every kind). */
static const char *job_kinds(meta_store *ms) {
    meta_kinds *k = atomic_load(&ms->job_kinds);
    return k && k->json[0] ? k->json : NULL;
}

int meta_ping(meta_store *ms) {
    return ms ? ms->ops->ping(ms) : CAIRN_EINVAL;
}

int meta_schema_version(meta_store *ms, int *version) {
    return ms ? ms->ops->schema_version(ms, version) : CAIRN_EINVAL;
}

int meta_migrate(meta_store *ms, int target) {
    return ms ? ms->ops->migrate(ms, target, NULL, 0) : CAIRN_EINVAL;
}

int meta_migrate_to(meta_store *ms, int target, char *why, size_t whylen) {
    if (why && whylen) why[0] = '\0';
    return ms ? ms->ops->migrate(ms, target, why, whylen) : CAIRN_EINVAL;
}

int meta_user_create(meta_store *ms, meta_user *u) {
    return ms ? ms->ops->user_create(ms, u) : CAIRN_EINVAL;
}

int meta_user_ensure_root(meta_store *ms, const char *name, meta_user *out) {
    return ms ? ms->ops->user_ensure_root(ms, name, out) : CAIRN_EINVAL;
}

int meta_user_get(meta_store *ms, int64_t id, meta_user *out) {
    return ms ? ms->ops->user_get(ms, id, out) : CAIRN_EINVAL;
}

int meta_user_get_by_name(meta_store *ms, const char *name, meta_user *out) {
    return ms ? ms->ops->user_get_by_name(ms, name, out) : CAIRN_EINVAL;
}

int meta_user_list(meta_store *ms, int (*cb)(void *ud, const meta_user *u), void *ud) {
    return ms ? ms->ops->user_list(ms, cb, ud) : CAIRN_EINVAL;
}

int meta_key_create(meta_store *ms, const meta_key *k) {
    return ms ? ms->ops->key_create(ms, k) : CAIRN_EINVAL;
}

int meta_key_get(meta_store *ms, const char *access_key, meta_key *out) {
    return ms ? ms->ops->key_get(ms, access_key, out) : CAIRN_EINVAL;
}

int meta_key_list(meta_store *ms, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud) {
    return ms ? ms->ops->key_list(ms, user_id, cb, ud) : CAIRN_EINVAL;
}

int meta_key_set_active(meta_store *ms, const char *access_key, bool active) {
    return ms ? ms->ops->key_set_active(ms, access_key, active) : CAIRN_EINVAL;
}

int meta_bucket_create(meta_store *ms, meta_bucket *b, int64_t *existing_owner) {
    return ms ? ms->ops->bucket_create(ms, b, existing_owner) : CAIRN_EINVAL;
}

int meta_bucket_get(meta_store *ms, const char *name, meta_bucket *out) {
    return ms ? ms->ops->bucket_get(ms, name, out) : CAIRN_EINVAL;
}

int meta_bucket_delete(meta_store *ms, const char *name, int64_t id) {
    return ms ? ms->ops->bucket_delete(ms, name, id) : CAIRN_EINVAL;
}

int meta_bucket_list(meta_store *ms, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud) {
    return ms ? ms->ops->bucket_list(ms, owner_id, cb, ud) : CAIRN_EINVAL;
}

/* A page's rows, cut where the names leave the prefix (only needed when the
 * prefix has no upper bound the backends can take, see below). */
typedef struct {
    const char *prefix;
    size_t prefix_len;
    bool past;
    int (*cb)(void *ud, const meta_bucket *b);
    void *ud;
} bucket_page;

static int bucket_page_row(void *ud, const meta_bucket *b) {
    bucket_page *p = ud;
    if (strncmp(b->name, p->prefix, p->prefix_len) != 0) {
        p->past = true;
        return 1;
    }
    return p->cb(p->ud, b);
}

int meta_bucket_list_page(meta_store *ms, int64_t owner_id, const char *prefix, const char *start_after, int limit,
                          int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more) {
    if (more) *more = false;
    if (!ms || !cb || limit < 1 || limit > 100000) return CAIRN_EINVAL;
    if (!prefix) prefix = "";
    if (!start_after) start_after = "";
    /* The names with this prefix lie in [prefix, successor(prefix)), the
     * successor being the prefix with its last byte incremented.  Bucket
     * names are ASCII; for a prefix whose last byte is not (no bucket has
     * it), the successor might not be UTF-8, which PostgreSQL refuses as
     * text: then there is no upper bound and the rows are cut here. */
    size_t n = strlen(prefix);
    char *hi = malloc(n + 1);
    if (!hi) return CAIRN_ENOMEM;
    memcpy(hi, prefix, n + 1);
    bool bounded = n && (unsigned char)hi[n - 1] < 0x7f;
    if (bounded) hi[n - 1] = (char)(hi[n - 1] + 1);
    else hi[0] = '\0';
    bucket_page p = {prefix, n, false, cb, ud};
    int rc = ms->ops->bucket_list_page(ms, owner_id, start_after, prefix, hi, limit, bounded ? cb : bucket_page_row,
                                       bounded ? ud : &p, more);
    if (p.past && more) *more = false;
    free(hi);
    return rc;
}

int meta_bucket_set_public(meta_store *ms, const char *name, bool public_read) {
    return ms ? ms->ops->bucket_set_public(ms, name, public_read) : CAIRN_EINVAL;
}

int meta_object_put(meta_store *ms, const meta_object *obj, meta_object *replaced, bool *had_replaced) {
    if (had_replaced) *had_replaced = false;
    if (!ms || !obj || !meta_audit_outbox_ok(obj->audit)) return CAIRN_EINVAL;
    return ms->ops->object_put(ms, obj, replaced, had_replaced);
}

int meta_object_get(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, bool with_data, meta_object *out) {
    int rc = meta_object_get_current(ms, bucket, bucket_id, key, key_len, with_data, out);
    if (rc == 0 && out->delete_marker) {
        meta_object_clear(out);
        memset(out, 0, sizeof *out);
        rc = CAIRN_ENOTFOUND;
    }
    return rc;
}

int meta_object_get_current(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            bool with_data, meta_object *out) {
    return ms ? ms->ops->object_get(ms, bucket, bucket_id, key, key_len, with_data, out) : CAIRN_EINVAL;
}

int meta_object_delete(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, meta_object *deleted) {
    return meta_object_delete_jobs(ms, bucket, bucket_id, key, key_len, NULL, 0, deleted);
}

int meta_object_delete_jobs(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const meta_job *jobs, int njobs, meta_object *deleted) {
    if (deleted) memset(deleted, 0, sizeof *deleted);
    meta_delete_result res;
    int rc = meta_object_delete_version(ms, bucket, bucket_id, key, key_len, NULL, 0, jobs, njobs, &res);
    meta_object_clear(&res.marker);
    if (deleted) *deleted = res.removed;
    else meta_object_clear(&res.removed);
    return rc;
}

/* A delete marker's id a caller chose: none, or one a version can have
 * (32 lowercase hex digits; never "null", which the bucket's state gives). */
static bool marker_id_ok(const char *marker_id) {
    return !marker_id || (strcmp(marker_id, "null") != 0 && meta_v_id_ok(marker_id));
}

int meta_object_delete_version(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                               size_t key_len, const char *version_id, int64_t owner_id, const meta_job *jobs,
                               int njobs, meta_delete_result *res) {
    return meta_object_delete_version_lock(ms, bucket, bucket_id, key, key_len, version_id, owner_id, NULL, NULL,
                                           jobs, njobs, res);
}

int meta_object_delete_version_lock(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                                    size_t key_len, const char *version_id, int64_t owner_id,
                                    const char *marker_id, const meta_lock_check *lock, const meta_job *jobs,
                                    int njobs, meta_delete_result *res) {
    return meta_object_delete_audited(ms, bucket, bucket_id, key, key_len, version_id, owner_id, marker_id, lock,
                                      jobs, njobs, NULL, res);
}

int meta_object_delete_audited(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                               size_t key_len, const char *version_id, int64_t owner_id, const char *marker_id,
                               const meta_lock_check *lock, const meta_job *jobs, int njobs,
                               const meta_audit_outbox *audit, meta_delete_result *res) {
    meta_delete_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (!ms || !bucket || njobs < 0 || (njobs && !jobs) || !marker_id_ok(marker_id) || !meta_audit_outbox_ok(audit))
        return CAIRN_EINVAL;
    /* An id no version can have names none. */
    if (version_id && !meta_v_id_ok(version_id)) return CAIRN_ENOTFOUND;
    int rc = ms->ops->object_delete(ms, bucket, bucket_id, key, key_len, version_id, owner_id, marker_id, lock, jobs,
                                    njobs, audit, res);
    if (res == &local) meta_delete_result_clear(&local);
    return rc;
}

int meta_object_get_version(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const char *version_id, bool with_data, meta_object *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!ms || !bucket || !out || !version_id) return CAIRN_EINVAL;
    if (!meta_v_id_ok(version_id)) return CAIRN_ENOTFOUND;
    return ms->ops->object_get_version(ms, bucket, bucket_id, key, key_len, version_id, with_data, out);
}

int meta_object_list_versions(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix,
                              size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                              int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more) {
    if (more) *more = false;
    if (!ms || !bucket || !cb || limit < 0 || after_seq < -1 || (prefix_len && !prefix) || (after_key_len && !after_key))
        return CAIRN_EINVAL;
    return ms->ops->object_list_versions(ms, bucket, bucket_id, prefix, prefix_len, after_key, after_key_len,
                                         after_seq, limit, cb, ud, more);
}

int meta_object_set_headers(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            const char *version_id, const char *headers_json) {
    return meta_object_set_headers_if(ms, bucket, bucket_id, key, key_len, version_id, NULL, headers_json);
}

int meta_object_set_headers_if(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                               size_t key_len, const char *version_id, const char *expected,
                               const char *headers_json) {
    if (!ms || !bucket || !key || !version_id || !headers_json || !*version_id) return CAIRN_EINVAL;
    return ms->ops->object_set_headers(ms, bucket, bucket_id, key, key_len, version_id, expected, headers_json);
}

int meta_bucket_enable_object_lock(meta_store *ms, const char *name, int64_t bucket_id) {
    return ms && name ? ms->ops->bucket_enable_object_lock(ms, name, bucket_id) : CAIRN_EINVAL;
}

int meta_bucket_set_versioning(meta_store *ms, const char *name, int64_t bucket_id, meta_versioning state) {
    if (!ms || !name || (state != META_VERSIONING_OFF && state != META_VERSIONING_ENABLED &&
                         state != META_VERSIONING_SUSPENDED))
        return CAIRN_EINVAL;
    return ms->ops->bucket_set_versioning(ms, name, bucket_id, state);
}

int meta_object_delete_many(meta_store *ms, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n) {
    if (!ms || n < 0 || n > 1000) return CAIRN_EINVAL;    /* the batch's bound, before items[] is read */
    for (int i = 0; items && i < n; i++)
        if (!marker_id_ok(items[i].marker_id)) return CAIRN_EINVAL;
    return ms->ops->object_delete_many(ms, bucket, bucket_id, items, n);
}

int meta_object_list(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *from, size_t from_len, bool inclusive, int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more) {
    if (more) *more = false;
    return ms ? ms->ops->object_list(ms, bucket, bucket_id, prefix, prefix_len, from, from_len, inclusive, limit, cb, ud, more) : CAIRN_EINVAL;
}

int meta_object_scan(meta_store *ms, const char *after_bucket, const char *after_key, size_t after_key_len, int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more) {
    if (more) *more = false;
    return ms ? ms->ops->object_scan(ms, after_bucket, after_key, after_key_len, limit, cb, ud, more) : CAIRN_EINVAL;
}

int meta_placement_scan(meta_store *ms, meta_place_cursor *cur, int limit, int (*cb)(void *ud, const meta_placement *p), void *ud) {
    return ms ? ms->ops->placement_scan(ms, cur, limit, cb, ud) : CAIRN_EINVAL;
}

int meta_placement_set_layout(meta_store *ms, const char *version_id, const char *old_layout, const char *new_layout) {
    return ms ? ms->ops->placement_set_layout(ms, version_id, old_layout, new_layout) : CAIRN_EINVAL;
}

int meta_layout_refs(meta_store *ms, const char *id, int64_t *count) {
    return ms ? ms->ops->layout_refs(ms, id, count) : CAIRN_EINVAL;
}

int meta_placement_get(meta_store *ms, const char *version_id, meta_placement *out) {
    return ms ? ms->ops->placement_get(ms, version_id, out) : CAIRN_EINVAL;
}

int meta_check(meta_store *ms, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total) {
    if (total) *total = 0;
    return ms ? ms->ops->check(ms, limit, cb, ud, total) : CAIRN_EINVAL;
}

int meta_repair(meta_store *ms, const meta_problem *p, void (*drop)(void *ud, const char *version_id, const char *layout), void *ud) {
    return ms ? ms->ops->repair(ms, p, drop, ud) : CAIRN_EINVAL;
}

int meta_upload_create(meta_store *ms, const meta_upload *u) {
    return ms ? ms->ops->upload_create(ms, u) : CAIRN_EINVAL;
}

int meta_upload_get(meta_store *ms, const char *upload_id, meta_upload *out) {
    return ms ? ms->ops->upload_get(ms, upload_id, out) : CAIRN_EINVAL;
}

int meta_upload_list(meta_store *ms, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more) {
    if (more) *more = false;
    return ms ? ms->ops->upload_list(ms, bucket_id, prefix, prefix_len, key_marker, key_marker_len, upload_id_marker, limit, cb, ud, more) : CAIRN_EINVAL;
}

int meta_part_put(meta_store *ms, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced) {
    if (had_replaced) *had_replaced = false;
    return ms ? ms->ops->part_put(ms, upload_id, p, replaced, had_replaced) : CAIRN_EINVAL;
}

int meta_part_list(meta_store *ms, const char *upload_id, int after, int limit, int (*cb)(void *ud, const meta_part *p), void *ud, bool *more) {
    if (more) *more = false;
    return ms ? ms->ops->part_list(ms, upload_id, after, limit, cb, ud, more) : CAIRN_EINVAL;
}

int meta_upload_complete(meta_store *ms, const char *upload_id, const meta_object *obj, const meta_part *parts, int n, meta_object *replaced, bool *had_replaced, void (*unused)(void *ud, const meta_part *p), void *ud) {
    return ms ? ms->ops->upload_complete(ms, upload_id, obj, parts, n, replaced, had_replaced, unused, ud) : CAIRN_EINVAL;
}

int meta_upload_abort(meta_store *ms, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud) {
    return ms ? ms->ops->upload_abort(ms, upload_id, parts, ud) : CAIRN_EINVAL;
}

int meta_object_parts(meta_store *ms, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud) {
    return ms ? ms->ops->object_parts(ms, version_id, cb, ud) : CAIRN_EINVAL;
}

int meta_upload_completed_get(meta_store *ms, const char *upload_id, meta_completed_upload *out) {
    return ms ? ms->ops->upload_completed_get(ms, upload_id, out) : CAIRN_EINVAL;
}

int meta_upload_completed_prune(meta_store *ms, int64_t before_ms, int limit, int64_t *deleted) {
    if (deleted) *deleted = 0;
    return ms ? ms->ops->upload_completed_prune(ms, before_ms, limit, deleted) : CAIRN_EINVAL;
}

int meta_trash_list(meta_store *ms, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud) {
    return ms ? ms->ops->trash_list(ms, limit, cb, ud) : CAIRN_EINVAL;
}

int meta_trash_remove(meta_store *ms, const char *const *version_ids, int n) {
    return ms ? ms->ops->trash_remove(ms, version_ids, n) : CAIRN_EINVAL;
}

int meta_job_enqueue(meta_store *ms, const meta_job *j, int64_t *id) {
    return ms ? ms->ops->job_enqueue(ms, j, id) : CAIRN_EINVAL;
}

int meta_job_claim(meta_store *ms, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    return ms ? ms->ops->job_claim(ms, job_kinds(ms), owner, now_ms, lease_ms, out) : CAIRN_EINVAL;
}

int meta_job_finish(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error) {
    return ms ? ms->ops->job_finish(ms, id, owner, state, run_at_ms, error) : CAIRN_EINVAL;
}

int meta_job_finish_claim(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next) {
    return ms ? ms->ops->job_finish_claim(ms, job_kinds(ms), id, owner, state, run_at_ms, error, now_ms, lease_ms, finish_rc, next) : CAIRN_EINVAL;
}

int meta_job_release(meta_store *ms, int64_t id, const char *owner) {
    return ms ? ms->ops->job_release(ms, id, owner, 0) : CAIRN_EINVAL;
}

int meta_job_defer(meta_store *ms, int64_t id, const char *owner, int64_t run_at_ms) {
    return ms ? ms->ops->job_release(ms, id, owner, run_at_ms) : CAIRN_EINVAL;
}

int meta_job_extend(meta_store *ms, int64_t id, const char *owner, int64_t lease_expires_ms) {
    return ms ? ms->ops->job_extend(ms, id, owner, lease_expires_ms) : CAIRN_EINVAL;
}

int meta_job_cancel(meta_store *ms, int64_t id) {
    return ms ? ms->ops->job_cancel(ms, id) : CAIRN_EINVAL;
}

int meta_job_retry(meta_store *ms, int64_t id) {
    return ms ? ms->ops->job_retry(ms, id) : CAIRN_EINVAL;
}

int meta_job_get(meta_store *ms, int64_t id, meta_job *out) {
    return ms ? ms->ops->job_get(ms, id, out) : CAIRN_EINVAL;
}

int meta_job_list(meta_store *ms, const char *state, const char *kind, int limit, int (*cb)(void *ud, const meta_job *j), void *ud) {
    return ms ? ms->ops->job_list(ms, state, kind, limit, cb, ud) : CAIRN_EINVAL;
}

int meta_job_prune(meta_store *ms, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted) {
    if (deleted) *deleted = 0;
    return ms ? ms->ops->job_prune(ms, done_before_ms, discarded_before_ms, limit, deleted) : CAIRN_EINVAL;
}

int meta_job_counts(meta_store *ms, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud) {
    return ms ? ms->ops->job_counts(ms, cb, ud) : CAIRN_EINVAL;
}

int meta_upload_list_older(meta_store *ms, int64_t before_ms, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud) {
    return ms ? ms->ops->upload_list_older(ms, before_ms, limit, cb, ud) : CAIRN_EINVAL;
}

int meta_node_upsert(meta_store *ms, const char *id, const char *url) {
    return ms ? ms->ops->node_upsert(ms, id, url) : CAIRN_EINVAL;
}

/* ---- bucket notifications ---- */

/* Target names go into ARNs and logs: letters, digits, '-' and '_'. */
static bool notify_name_ok(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= sizeof((meta_notify_target *)0)->name) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_') return false;
    return true;
}

int meta_notify_target_add(meta_store *ms, const meta_notify_target *t) {
    if (!ms || !t || !notify_name_ok(t->name) || (strncmp(t->url, "http://", 7) && strncmp(t->url, "https://", 8)) ||
        t->max_attempts < 1)
        return CAIRN_EINVAL;
    return ms->ops->notify_target_add(ms, t);
}

int meta_notify_target_get(meta_store *ms, const char *name, meta_notify_target *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!ms || !out) return CAIRN_EINVAL;
    if (!notify_name_ok(name)) return CAIRN_ENOTFOUND;
    return ms->ops->notify_target_get(ms, name, out);
}

int meta_notify_target_list(meta_store *ms, int (*cb)(void *ud, const meta_notify_target *t), void *ud) {
    return ms && cb ? ms->ops->notify_target_list(ms, cb, ud) : CAIRN_EINVAL;
}

int meta_notify_target_remove(meta_store *ms, const char *name) {
    if (!ms) return CAIRN_EINVAL;
    if (!notify_name_ok(name)) return CAIRN_ENOTFOUND;
    return ms->ops->notify_target_remove(ms, name);
}

/* ---- rate limit overrides ---- */

static bool limit_scope_ok(const char *scope) { return scope && (!strcmp(scope, "key") || !strcmp(scope, "bucket")); }

static bool limit_name_ok(const char *name) {
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n < sizeof((meta_limit *)0)->name;
}

int meta_limit_set(meta_store *ms, const meta_limit *l) {
    if (!ms || !l || !limit_scope_ok(l->scope) || !limit_name_ok(l->name) || l->ops_per_s < 0 || l->bytes_per_s < 0)
        return CAIRN_EINVAL;
    return ms->ops->limit_set(ms, l);
}

int meta_limit_list(meta_store *ms, int (*cb)(void *ud, const meta_limit *l), void *ud) {
    return ms && cb ? ms->ops->limit_list(ms, cb, ud) : CAIRN_EINVAL;
}

int meta_limit_remove(meta_store *ms, const char *scope, const char *name) {
    if (!ms || !limit_scope_ok(scope)) return CAIRN_EINVAL;
    if (!limit_name_ok(name)) return CAIRN_ENOTFOUND;
    return ms->ops->limit_remove(ms, scope, name);
}

int meta_bucket_notification_get(meta_store *ms, int64_t bucket_id, char **config) {
    if (config) *config = NULL;
    if (!ms || !config || bucket_id <= 0) return CAIRN_EINVAL;
    return ms->ops->bucket_notification_get(ms, bucket_id, config);
}

int meta_bucket_notification_put(meta_store *ms, int64_t bucket_id, const char *config) {
    if (!ms || bucket_id <= 0) return CAIRN_EINVAL;
    return ms->ops->bucket_notification_put(ms, bucket_id, config ? config : "");
}

/* A configuration kind: 1 .. 31 of [a-z_]. */
static bool config_kind_ok(const char *kind) {
    size_t n = kind ? strlen(kind) : 0;
    if (n == 0 || n > 31) return false;
    for (size_t i = 0; i < n; i++)
        if (!((kind[i] >= 'a' && kind[i] <= 'z') || kind[i] == '_')) return false;
    return true;
}

int meta_bucket_config_get(meta_store *ms, int64_t bucket_id, const char *kind, char **body) {
    if (body) *body = NULL;
    if (!ms || !body || bucket_id <= 0 || !config_kind_ok(kind)) return CAIRN_EINVAL;
    return ms->ops->bucket_config_get(ms, bucket_id, kind, body);
}

int meta_bucket_config_put(meta_store *ms, const char *bucket, int64_t bucket_id, const char *kind, const char *body) {
    if (!ms || !bucket || bucket_id <= 0 || !config_kind_ok(kind)) return CAIRN_EINVAL;
    return ms->ops->bucket_config_put(ms, bucket, bucket_id, kind, body ? body : "");
}

static const struct {
    const char *kind;
    uint32_t bit;
} config_bits[] = {
    {"cors", META_CFG_CORS}, {"tagging", META_CFG_TAGGING}, {"ownership", META_CFG_OWNERSHIP},
    {"object_lock", META_CFG_OBJECT_LOCK}, {"policy", META_CFG_POLICY}, {"acl", META_CFG_ACL},
    {"public_access_block", META_CFG_PUBLIC_ACCESS_BLOCK}, {"lifecycle", META_CFG_LIFECYCLE},
};

uint32_t meta_config_bit(const char *kind) {
    for (size_t i = 0; i < sizeof config_bits / sizeof config_bits[0]; i++)
        if (!strcmp(config_bits[i].kind, kind)) return config_bits[i].bit;
    return 0;
}

uint32_t meta_config_mask(const char *kinds) {
    uint32_t m = 0;
    while (kinds && *kinds) {
        size_t n = strcspn(kinds, ",");
        char k[32];
        if (n < sizeof k) {
            memcpy(k, kinds, n);
            k[n] = '\0';
            m |= meta_config_bit(k);
        }
        kinds += n + (kinds[n] == ',');
    }
    return m;
}

int meta_job_pending_count(meta_store *ms, const char *kind, const char *needle, int64_t *n) {
    if (n) *n = 0;
    if (!ms || !kind || !needle || !n) return CAIRN_EINVAL;
    return ms->ops->job_pending_count(ms, kind, needle, INT64_MAX, n);
}

int meta_job_pending_before(meta_store *ms, const char *kind, const char *needle, int64_t before_id, int64_t *n) {
    if (n) *n = 0;
    if (!ms || !kind || !needle || !n || before_id <= 0) return CAIRN_EINVAL;
    return ms->ops->job_pending_count(ms, kind, needle, before_id, n);
}

int meta_node_list(meta_store *ms, int (*cb)(void *ud, const meta_node *n), void *ud) {
    return ms ? ms->ops->node_list(ms, cb, ud) : CAIRN_EINVAL;
}

int meta_node_get(meta_store *ms, const char *id_or_url, meta_node *out) {
    return ms ? ms->ops->node_get(ms, id_or_url, out) : CAIRN_EINVAL;
}

int meta_node_set_state(meta_store *ms, const char *id, const char *state) {
    return ms ? ms->ops->node_set_state(ms, id, state) : CAIRN_EINVAL;
}

int meta_node_seen(meta_store *ms, const char *id, bool ok, const char *error) {
    return ms ? ms->ops->node_seen(ms, id, ok, error) : CAIRN_EINVAL;
}

int meta_version_referenced(meta_store *ms, const char *version_id, bool *referenced) {
    if (referenced) *referenced = true; /* on any doubt, keep the bytes */
    return ms ? ms->ops->version_referenced(ms, version_id, referenced) : CAIRN_EINVAL;
}

int meta_object_count(meta_store *ms, const char *bucket, int64_t *count) {
    return ms ? ms->ops->object_count(ms, bucket, count) : CAIRN_EINVAL;
}

/* ---- leases and job notifications ---------------------------------------------------- */

/* A lease's name and holder: non-empty and within their columns. */
static bool lease_args_ok(const char *name, const char *holder) {
    return name && holder && name[0] && holder[0] && strlen(name) < sizeof((meta_lease *)0)->name &&
           strlen(holder) < sizeof((meta_lease *)0)->holder;
}

int meta_lease_acquire(meta_store *ms, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms,
                       bool *held) {
    if (held) *held = false;
    if (!ms || !held || !lease_args_ok(name, holder) || ttl_ms <= 0) return CAIRN_EINVAL;
    return ms->ops->lease_acquire(ms, name, holder, now_ms, ttl_ms, held);
}

int meta_lease_release(meta_store *ms, const char *name, const char *holder) {
    if (!ms || !lease_args_ok(name, holder)) return CAIRN_EINVAL;
    return ms->ops->lease_release(ms, name, holder);
}

int meta_lease_get(meta_store *ms, const char *name, meta_lease *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!ms || !out || !lease_args_ok(name, "-")) return CAIRN_EINVAL;
    return ms->ops->lease_get(ms, name, out);
}

int meta_job_listener_open(meta_store *ms, meta_listener **out) {
    if (out) *out = NULL;
    if (!ms || !out || !ms->ops->job_listener_open) return CAIRN_EINVAL;
    return ms->ops->job_listener_open(ms, out);
}

int meta_listener_fd(const meta_listener *l) { return l ? l->fd(l) : -1; }

int meta_listener_drain(meta_listener *l) { return l ? l->drain(l) : CAIRN_EINVAL; }

void meta_listener_close(meta_listener *l) {
    if (l) l->close(l);
}

/* ---- the audit store ------------------------------------------------------------------ */

int meta_user_set_audit(meta_store *ms, const char *name, bool audit) {
    if (!ms || !name || !name[0] || strlen(name) >= sizeof((meta_user *)0)->name) return CAIRN_EINVAL;
    return ms->ops->user_set_audit(ms, name, audit);
}

static bool audit_str_ok(const char *s, size_t max) { return s && strnlen(s, max + 1) <= max; }

int meta_audit_event_ok(const meta_audit_event *e) {
    if (!e || !e->event_id || strlen(e->event_id) != META_AUDIT_ID_LEN) return CAIRN_EINVAL;
    for (int i = 0; i < META_AUDIT_ID_LEN; i++) {
        char c = e->event_id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return CAIRN_EINVAL;
    }
    const char *const s[] = {e->request_id, e->correlation_id, e->principal, e->user, e->source_address, e->action,
                             e->bucket, e->version_id, e->outcome, e->error_code};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (!audit_str_ok(s[i], META_AUDIT_STR_MAX)) return CAIRN_EINVAL;
    if (!audit_str_ok(e->key, META_AUDIT_KEY_MAX)) return CAIRN_EINVAL;
    if (e->status < 100 || e->status > 599 || e->bytes_in < 0 || e->bytes_out < 0 || e->duration_us < 0 ||
        e->time_us < 0)
        return CAIRN_EINVAL;
    return 0;
}

int meta_audit_filter_ok(const meta_audit_filter *f) {
    if (!f) return CAIRN_EINVAL;
    const char *const s[] = {f->correlation_id, f->request_id, f->principal, f->action, f->bucket, f->outcome};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (s[i] && !audit_str_ok(s[i], META_AUDIT_STR_MAX)) return CAIRN_EINVAL;
    if (f->key_prefix && !audit_str_ok(f->key_prefix, META_AUDIT_KEY_MAX)) return CAIRN_EINVAL;
    if (f->after_set && strlen(f->after_id) != META_AUDIT_ID_LEN) return CAIRN_EINVAL;
    return 0;
}

int meta_audit_insert(meta_store *ms, const meta_audit_event *ev, int n, int *inserted) {
    if (inserted) *inserted = 0;
    if (!ms || !ev || !inserted || n < 1 || n > 10000) return CAIRN_EINVAL;
    for (int i = 0; i < n; i++)
        if (meta_audit_event_ok(&ev[i]) != 0) return CAIRN_EINVAL;
    return ms->ops->audit_insert(ms, ev, n, inserted);
}

int meta_audit_query(meta_store *ms, const meta_audit_filter *f, int limit,
                     int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count) {
    if (count) *count = 0;
    if (!ms || !cb || !count || limit < 1 || limit > META_AUDIT_QUERY_MAX || meta_audit_filter_ok(f) != 0)
        return CAIRN_EINVAL;
    return ms->ops->audit_query(ms, f, limit, cb, ud, count);
}

int meta_audit_delete_before(meta_store *ms, int64_t before_us, int limit, int64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!ms || !deleted || limit < 1 || limit > 100000) return CAIRN_EINVAL;
    return ms->ops->audit_delete_before(ms, before_us, limit, deleted);
}

static bool outbox_origin_ok(const char *origin) {
    size_t n = origin ? strlen(origin) : 0;
    return n >= 1 && n <= META_OUTBOX_ORIGIN_MAX;
}

bool meta_audit_outbox_ok(const meta_audit_outbox *a) {
    return !a || (outbox_origin_ok(a->origin) && a->event && a->len >= 1 && a->len <= META_OUTBOX_EVENT_MAX &&
                  strlen(a->event) == a->len);
}

int meta_audit_outbox_read(meta_store *ms, const char *origin, int64_t adopt_before_ms, int limit,
                           meta_outbox_row **rows, int *n) {
    if (rows) *rows = NULL;
    if (n) *n = 0;
    if (!ms || !rows || !n || !outbox_origin_ok(origin) || limit < 1 || limit > 10000) return CAIRN_EINVAL;
    return ms->ops->audit_outbox_read(ms, origin, adopt_before_ms, limit, rows, n);
}

void meta_outbox_rows_free(meta_outbox_row *rows, int n) {
    for (int i = 0; rows && i < n; i++) free(rows[i].event);
    free(rows);
}

int meta_audit_outbox_delete(meta_store *ms, const int64_t *ids, int n) {
    if (!ms || !ids || n < 1 || n > 10000) return CAIRN_EINVAL;
    return ms->ops->audit_outbox_delete(ms, ids, n);
}

int meta_audit_outbox_count(meta_store *ms, const char *origin, int64_t *count, int64_t *oldest_ms) {
    if (count) *count = 0;
    if (oldest_ms) *oldest_ms = 0;
    if (!ms || !count || !oldest_ms || !outbox_origin_ok(origin)) return CAIRN_EINVAL;
    return ms->ops->audit_outbox_count(ms, origin, count, oldest_ms);
}

static void audit_arg_str(bool pg, buf_t *sql, meta_audit_args *a, const char *s) {
    assert(a->n < META_AUDIT_ARGS_MAX);
    a->s[a->n] = s;
    a->is_int[a->n] = false;
    a->n++;
    buf_printf(sql, pg ? "$%d::text" : "?%d", a->n);
}

static void audit_arg_int(bool pg, buf_t *sql, meta_audit_args *a, int64_t v) {
    assert(a->n < META_AUDIT_ARGS_MAX);
    a->i[a->n] = v;
    a->is_int[a->n] = true;
    a->n++;
    buf_printf(sql, pg ? "$%d::int8" : "?%d", a->n);
}

static bool audit_set(const char *s) { return s && s[0]; }

#define AUDIT_COLUMNS                                                                                   \
    "event_id, time_us, request_id, correlation_id, principal, user_name, source_address, action, bucket, key," \
    " version_id, outcome, status, error_code, bytes_in, bytes_out, duration_us"

void meta_audit_sql(const meta_audit_filter *f, int limit, bool pg, buf_t *sql, meta_audit_args *a) {
    memset(a, 0, sizeof *a);
    /* The conditions every arm shares, with their parameters numbered once. */
    buf_t w;
    buf_init(&w);
    const struct {
        const char *col, *val;
    } eq[] = {{"correlation_id", f->correlation_id}, {"request_id", f->request_id}, {"action", f->action},
              {"bucket", f->bucket}, {"outcome", f->outcome}};
    for (size_t i = 0; i < sizeof eq / sizeof eq[0]; i++) {
        if (!audit_set(eq[i].val)) continue;
        buf_printf(&w, " AND %s = ", eq[i].col);
        audit_arg_str(pg, &w, a, eq[i].val);
    }
    if (audit_set(f->key_prefix)) {
        /* The lower bound lets an index range start at the prefix; the
         * comparison of the first characters is exact on both backends
         * (no successor string, which need not be valid UTF-8). */
        buf_puts(&w, " AND key >= ");
        audit_arg_str(pg, &w, a, f->key_prefix);
        buf_printf(&w, pg ? " AND substr(key, 1, length($%d::text)) = $%d::text" : " AND substr(key, 1, length(?%d)) = ?%d",
                   a->n, a->n);
    }
    if (f->from_us > 0) {
        buf_puts(&w, " AND time_us >= ");
        audit_arg_int(pg, &w, a, f->from_us);
    }
    if (f->to_us > 0) {
        buf_puts(&w, " AND time_us < ");
        audit_arg_int(pg, &w, a, f->to_us);
    }
    if (f->after_set) {
        buf_puts(&w, " AND (time_us, event_id) > (");
        audit_arg_int(pg, &w, a, f->after_time_us);
        buf_puts(&w, ", ");
        audit_arg_str(pg, &w, a, f->after_id);
        buf_puts(&w, ")");
    }
    const char *where = w.data ? w.data : "";
    if (w.oom) sql->oom = true;
    if (!audit_set(f->principal)) {
        buf_printf(sql, "SELECT " AUDIT_COLUMNS " FROM audit_events WHERE true%s ORDER BY time_us, event_id LIMIT %d",
                   where, limit);
        buf_free(&w);
        return;
    }
    /* principal matches either column: one ordered range per column's
     * index, each at most a page, merged, so a page still costs a page
     * (an OR would read every event of the principal and sort them). */
    char p[24];
    buf_t arg;
    buf_init(&arg);
    audit_arg_str(pg, &arg, a, f->principal);
    snprintf(p, sizeof p, "%s", arg.data ? arg.data : "");
    if (arg.oom) sql->oom = true;
    buf_free(&arg);
    buf_printf(sql,
               "SELECT " AUDIT_COLUMNS " FROM ("
               "SELECT " AUDIT_COLUMNS " FROM (SELECT " AUDIT_COLUMNS " FROM audit_events WHERE principal = %s%s"
               " ORDER BY time_us, event_id LIMIT %d) AS by_principal"
               " UNION "
               "SELECT " AUDIT_COLUMNS " FROM (SELECT " AUDIT_COLUMNS " FROM audit_events WHERE user_name = %s%s"
               " ORDER BY time_us, event_id LIMIT %d) AS by_user"
               ") AS either ORDER BY time_us, event_id LIMIT %d",
               p, where, limit, p, where, limit, limit);
    buf_free(&w);
}

int meta_audit_row_fill(meta_audit_row *r, const char *const *t, const size_t *len, const int64_t *ints) {
    memset(r, 0, sizeof *r);
    static const int cols[] = {MA_EVENT_ID, MA_REQUEST_ID, MA_CORRELATION_ID, MA_PRINCIPAL, MA_USER, MA_SOURCE,
                               MA_ACTION, MA_BUCKET, MA_KEY, MA_VERSION_ID, MA_OUTCOME, MA_ERROR_CODE};
    size_t total = 0;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        size_t max = cols[i] == MA_KEY ? META_AUDIT_KEY_MAX : cols[i] == MA_EVENT_ID ? META_AUDIT_ID_LEN : META_AUDIT_STR_MAX;
        if (len[cols[i]] > max) return CAIRN_EDB;
        total += len[cols[i]] + 1;
    }
    if (!(r->mem = malloc(total))) return CAIRN_ENOMEM;
    const char **dst[MA__COLUMNS] = {
        [MA_EVENT_ID] = &r->e.event_id, [MA_REQUEST_ID] = &r->e.request_id,
        [MA_CORRELATION_ID] = &r->e.correlation_id, [MA_PRINCIPAL] = &r->e.principal, [MA_USER] = &r->e.user,
        [MA_SOURCE] = &r->e.source_address, [MA_ACTION] = &r->e.action, [MA_BUCKET] = &r->e.bucket,
        [MA_KEY] = &r->e.key, [MA_VERSION_ID] = &r->e.version_id, [MA_OUTCOME] = &r->e.outcome,
        [MA_ERROR_CODE] = &r->e.error_code};
    char *p = r->mem;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        int c = cols[i];
        if (len[c]) memcpy(p, t[c], len[c]);
        p[len[c]] = '\0';
        *dst[c] = p;
        p += len[c] + 1;
    }
    r->e.time_us = ints[MA_TIME];
    r->e.status = (int)ints[MA_STATUS];
    r->e.bytes_in = ints[MA_BYTES_IN];
    r->e.bytes_out = ints[MA_BYTES_OUT];
    r->e.duration_us = ints[MA_DURATION];
    return 0;
}

void meta_audit_row_clear(meta_audit_row *r) {
    free(r->mem);
    r->mem = NULL;
}

int meta_audit_rows_deliver(meta_audit_row *rows, int n, int err, int (*cb)(void *ud, const meta_audit_event *e),
                            void *ud, int *count) {
    int delivered = 0;
    bool stop = err != 0;
    for (int i = 0; i < n; i++) {
        if (!stop) {
            delivered++;
            stop = cb(ud, &rows[i].e) != 0;
        }
        meta_audit_row_clear(&rows[i]);
    }
    free(rows);
    *count = delivered;
    return err;
}

/* ---- the key manager's keys ---- */

static bool kms_id_ok(const char *id) {
    size_t n = id ? strnlen(id, META_KMS_ID_MAX + 1) : 0;
    return n > 0 && n <= META_KMS_ID_MAX;
}

int meta_kms_key_create(meta_store *ms, const char *id, const char *description,
                        const uint8_t sealed[META_KMS_SEALED], int64_t now_ms) {
    if (!ms || !kms_id_ok(id) || !sealed || (description && strnlen(description, META_KMS_DESC_MAX + 1) > META_KMS_DESC_MAX))
        return CAIRN_EINVAL;
    return ms->ops->kms_key_create(ms, id, description ? description : "", sealed, now_ms);
}

int meta_kms_key_get(meta_store *ms, const char *id, meta_kms_key *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!ms || !out) return CAIRN_EINVAL;
    if (!kms_id_ok(id)) return CAIRN_ENOTFOUND;
    return ms->ops->kms_key_get(ms, id, out);
}

int meta_kms_key_list(meta_store *ms, int (*cb)(void *ud, const meta_kms_key *k), void *ud) {
    return ms && cb ? ms->ops->kms_key_list(ms, cb, ud) : CAIRN_EINVAL;
}

int meta_kms_key_set_enabled(meta_store *ms, const char *id, bool enabled) {
    if (!ms) return CAIRN_EINVAL;
    if (!kms_id_ok(id)) return CAIRN_ENOTFOUND;
    return ms->ops->kms_key_set_enabled(ms, id, enabled);
}

int meta_kms_version_add(meta_store *ms, const char *id, int version, const uint8_t sealed[META_KMS_SEALED],
                         int64_t now_ms) {
    if (!ms || !sealed || version < 1) return CAIRN_EINVAL;
    if (!kms_id_ok(id)) return CAIRN_ENOTFOUND;
    return ms->ops->kms_version_add(ms, id, version, sealed, now_ms);
}

int meta_kms_version_get(meta_store *ms, const char *id, int version, uint8_t sealed[META_KMS_SEALED]) {
    if (!ms || !sealed) return CAIRN_EINVAL;
    if (!kms_id_ok(id) || version < 1) return CAIRN_ENOTFOUND;
    return ms->ops->kms_version_get(ms, id, version, sealed);
}

int meta_master_reseal(meta_store *ms, const meta_reseal *r, int64_t *count) {
    if (count) *count = 0;
    if (!ms || !r || !r->material || !r->secret) return CAIRN_EINVAL;
    return ms->ops->master_reseal(ms, r, count);
}

int meta_upload_set_headers_if(meta_store *ms, const char *upload_id, const char *expected, const char *headers_json) {
    if (!ms || !upload_id || !expected || !headers_json) return CAIRN_EINVAL;
    return ms->ops->upload_set_headers_if(ms, upload_id, expected, headers_json);
}
