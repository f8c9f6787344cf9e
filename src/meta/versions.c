/*
 * versions.c — S3's versioning, written once for both backends.
 *
 * Every version of a key is a row of objects, numbered by seq (1, 2, ...;
 * newer is larger) and flagged latest when it is the key's current one
 * (exactly one is, while the key has any row; a unique partial index holds
 * it to that).  What a put or a delete does depends on the bucket's
 * versioning, read in the same transaction:
 *
 *   off        a put replaces the current version in place (its seq kept);
 *              a delete removes it.  One row per key, as before versioning.
 *   enabled    a put demotes the current version and adds a new one at the
 *              next seq; a delete adds a delete marker the same way.
 *              Nothing is removed except by a delete naming a version.
 *   suspended  a put or a delete makes the null version (a delete: a null
 *              delete marker) current: a current null version is replaced
 *              in place, a noncurrent one removed, any other current one
 *              demoted.
 *
 * Removing the current version by its id makes the newest remaining one
 * current.  A version removed for good is reported to the caller (its
 * bytes go after the commit; what the database holds of them, inline bytes
 * and multipart parts, goes in the transaction).  The backends supply the
 * row operations (meta_vops), each run inside their open transaction;
 * PostgreSQL's current() locks the row, so writers of one key queue on it,
 * and an insert that finds the key taken by a concurrent first version
 * asks for the whole step to run again (META_V_RETRY).
 *
 * Object lock is enforced here too, so both backends enforce it alike and
 * atomically: every removal of a version first reads the lock state of the
 * very row it is about to remove (found in this transaction; on PostgreSQL
 * locked), and a locked one stops the step with CAIRN_ELOCKED, which the
 * backend rolls back.  No check made before the transaction could hold: a
 * retention set or a legal hold put on between it and the delete would be
 * missed.
 */
#include "meta/meta_int.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

void meta_delete_result_clear(meta_delete_result *r) {
    if (!r) return;
    meta_object_clear(&r->removed);
    meta_object_clear(&r->marker);
}

/* ---- object lock -------------------------------------------------------------------------- */

/* Lock members are rare: a document without their common prefix has none,
 * and costs no parse.  (A user metadata value holding that text only costs
 * the parse.) */
#define LOCK_PREFIX "x-amz-object-lock-"

int meta_lock_state_of(const char *headers_json, meta_lock_state *out) {
    memset(out, 0, sizeof *out);
    if (!headers_json || !strstr(headers_json, LOCK_PREFIX)) return 0;
    json_error_t jerr;
    json_t *o = json_loads(headers_json, 0, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return CAIRN_EINVAL;
    }
    int err = 0;
    json_t *mode = json_object_get(o, LOCK_PREFIX "mode");
    json_t *until = json_object_get(o, LOCK_PREFIX "retain-until-date");
    json_t *hold = json_object_get(o, LOCK_PREFIX "legal-hold");
    if (mode || until) {
        const char *m = json_string_value(mode), *u = json_string_value(until);
        if (!m || !u || time_parse_iso8601(u, &out->until_ms) != 0) err = CAIRN_EINVAL;
        else if (!strcmp(m, "GOVERNANCE")) out->mode = META_LOCK_GOVERNANCE;
        else if (!strcmp(m, "COMPLIANCE")) out->mode = META_LOCK_COMPLIANCE;
        else err = CAIRN_EINVAL;
    }
    if (hold) {
        const char *h = json_string_value(hold);
        if (h && !strcmp(h, "ON")) out->legal_hold = true;
        else if (!h || strcmp(h, "OFF") != 0) err = CAIRN_EINVAL;
    }
    json_decref(o);
    return err;
}

bool meta_lock_forbids(const meta_lock_state *st, const meta_lock_check *check) {
    if (st->legal_hold) return true;
    if (st->mode == META_LOCK_NONE) return false;
    int64_t now = check && check->now_ms > 0 ? check->now_ms : time_now_ms();
    if (now >= st->until_ms) return false;
    return st->mode == META_LOCK_COMPLIANCE || !check || !check->bypass_governance;
}

/* 0 when the row gone may be removed under lock, else CAIRN_ELOCKED (an
 * unreadable lock state too: fail closed). */
static int lock_allows(const meta_object *gone, const meta_lock_check *lock) {
    meta_lock_state st;
    if (meta_lock_state_of(gone->headers_json, &st) != 0) return CAIRN_ELOCKED;
    return meta_lock_forbids(&st, lock) ? CAIRN_ELOCKED : 0;
}

/* A removed version: its row, then what the database holds of its bytes. */
static int remove_version(const meta_vops *v, const meta_object *gone, const meta_lock_check *lock) {
    int err = lock_allows(gone, lock);
    if (err != 0) return err;
    err = v->remove(v->c, gone);
    return err == 0 ? v->release(v->c, gone) : err;
}

/* The null version when it is not the current one: removed, into *freed. */
static int drop_noncurrent_null(const meta_vops *v, const char *bucket, const char *key, size_t key_len,
                                const meta_lock_check *lock, meta_object *freed, bool *had_freed) {
    meta_object n = {0};
    int err = v->noncurrent_null(v->c, bucket, key, key_len, &n);
    if (err == CAIRN_ENOTFOUND) return 0;
    if (err == 0) err = remove_version(v, &n, lock);
    if (err == 0) {
        *freed = n;
        *had_freed = true;
    } else {
        meta_object_clear(&n);
    }
    return err;
}

/* One attempt at a put; META_V_RETRY when a concurrent first version won. */
static int put_once(const meta_vops *v, meta_versioning state, const meta_object *obj, meta_object *freed,
                    bool *had_freed) {
    meta_object cur = {0};
    int err = v->current(v->c, obj->bucket, obj->key, obj->key_len, &cur);
    if (err != 0 && err != CAIRN_ENOTFOUND) return err;
    bool had = err == 0;
    if (!sq_obj_cond_holds(obj, had && !cur.delete_marker ? &cur : NULL)) {
        meta_object_clear(&cur);
        return CAIRN_EPRECOND;
    }
    meta_object o = *obj;
    o.is_latest = true;
    o.delete_marker = false;
    o.null_version = state != META_VERSIONING_ENABLED;
    o.seq = had ? cur.seq + 1 : 1;
    if (had && (state == META_VERSIONING_OFF || (state == META_VERSIONING_SUSPENDED && cur.null_version))) {
        /* The current version is the one this put replaces. */
        o.seq = cur.seq;
        err = lock_allows(&cur, NULL);
        if (err == 0) err = v->replace(v->c, &cur, &o);
        if (err == 0) err = v->release(v->c, &cur);
        if (err == 0) {
            *freed = cur;
            *had_freed = true;
            return v->store_data(v->c, &o);
        }
        meta_object_clear(&cur);
        return err;
    }
    err = had ? v->demote(v->c, &cur) : 0;
    if (err == 0 && had && state == META_VERSIONING_SUSPENDED)
        err = drop_noncurrent_null(v, obj->bucket, obj->key, obj->key_len, NULL, freed, had_freed);
    meta_object_clear(&cur);
    if (err == 0) err = v->insert(v->c, &o);
    /* With a current version locked, no insert can lose a race. */
    assert(err != META_V_RETRY || !had);
    if (err == 0) err = v->store_data(v->c, &o);
    return err;
}

int meta_v_put(const meta_vops *v, meta_versioning state, const meta_object *obj, meta_object *freed,
               bool *had_freed) {
    *had_freed = false;
    memset(freed, 0, sizeof *freed);
    int err;
    while ((err = put_once(v, state, obj, freed, had_freed)) == META_V_RETRY) {
    }
    if (err != 0 && *had_freed) {
        meta_object_clear(freed);
        *had_freed = false;
    }
    return err;
}

/* A delete marker of (bucket, key) by owner_id, at seq, whose id is
 * marker_id (NULL: a new random one). */
static void make_marker(meta_object *m, const char *bucket, const char *key, size_t key_len, int64_t owner_id,
                        const char *marker_id, int64_t seq, bool null_version) {
    memset(m, 0, sizeof *m);
    snprintf(m->bucket, sizeof m->bucket, "%s", bucket);
    memcpy(m->key, key, key_len);
    m->key_len = key_len;
    if (marker_id) snprintf(m->version_id, sizeof m->version_id, "%s", marker_id);
    else rand_hex_id(m->version_id, 16);
    m->mtime_ms = time_now_ms();
    m->owner_id = owner_id;
    m->storage = META_STORE_INLINE;
    m->seq = seq;
    m->is_latest = true;
    m->delete_marker = true;
    m->null_version = null_version;
}

static int delete_current_once(const meta_vops *v, meta_versioning state, const char *bucket, const char *key,
                               size_t key_len, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                               meta_delete_result *res) {
    meta_object cur = {0};
    int err = v->current(v->c, bucket, key, key_len, &cur);
    if (err != 0 && err != CAIRN_ENOTFOUND) return err;
    bool had = err == 0;
    if (state == META_VERSIONING_OFF) {
        if (!had) return CAIRN_ENOTFOUND;
        err = remove_version(v, &cur, lock);
        if (err == 0) res->removed = cur;
        else meta_object_clear(&cur);
        return err;
    }
    bool freed = false;
    err = 0;
    if (had && state == META_VERSIONING_SUSPENDED && cur.null_version) {
        err = remove_version(v, &cur, lock);
        if (err == 0) {
            res->removed_marker = cur.delete_marker;
            res->removed = cur;
            freed = true;
        }
    } else if (had) {
        err = v->demote(v->c, &cur);
        if (err == 0 && state == META_VERSIONING_SUSPENDED) {
            bool had_freed = false;
            err = drop_noncurrent_null(v, bucket, key, key_len, lock, &res->removed, &had_freed);
            if (err == 0 && had_freed) res->removed_marker = res->removed.delete_marker;
        }
    }
    meta_object m;
    make_marker(&m, bucket, key, key_len, owner_id, marker_id, had ? cur.seq + 1 : 1,
                state == META_VERSIONING_SUSPENDED);
    if (!freed) meta_object_clear(&cur);
    if (err == 0) err = v->insert(v->c, &m);
    assert(err != META_V_RETRY || !had);
    if (err == 0) res->marker = m;
    return err;
}

int meta_v_delete(const meta_vops *v, meta_versioning state, const char *bucket, const char *key, size_t key_len,
                  const char *version_id, int64_t owner_id, const char *marker_id, const meta_lock_check *lock,
                  meta_delete_result *res) {
    assert(!marker_id || (meta_v_id_ok(marker_id) && strcmp(marker_id, "null") != 0));
    memset(res, 0, sizeof *res);
    int err;
    if (!version_id) {
        while ((err = delete_current_once(v, state, bucket, key, key_len, owner_id, marker_id, lock, res)) ==
               META_V_RETRY)
            meta_delete_result_clear(res), memset(res, 0, sizeof *res);
    } else {
        meta_object gone = {0};
        err = v->find(v->c, bucket, key, key_len, version_id, &gone);
        if (err == 0) err = remove_version(v, &gone, lock);
        if (err == 0 && gone.is_latest) err = v->promote(v->c, bucket, key, key_len);
        if (err == 0) {
            res->removed_marker = gone.delete_marker;
            res->removed = gone;
        } else {
            meta_object_clear(&gone);
        }
    }
    if (err != 0) {
        meta_delete_result_clear(res);
        memset(res, 0, sizeof *res);
    }
    return err;
}

bool meta_v_id_ok(const char *version_id) {
    if (!strcmp(version_id, "null")) return true;
    size_t n = strlen(version_id);
    if (n != 32) return false;
    for (size_t i = 0; i < n; i++)
        if (!((version_id[i] >= '0' && version_id[i] <= '9') || (version_id[i] >= 'a' && version_id[i] <= 'f')))
            return false;
    return true;
}

/* ---- versions listing, shared by the backends ---- */

static int vlist_deliver(void *ud, const void *row) {
    const meta_vlist *l = ud;
    const meta_vlist_row *r = row;
    meta_version_entry e = {.key = r->key, .key_len = r->key_len, .version_id = r->version_id, .seq = r->seq,
                            .is_latest = r->is_latest, .delete_marker = r->delete_marker,
                            .null_version = r->null_version, .size = r->size, .etag = r->etag,
                            .mtime_ms = r->mtime_ms, .owner_id = r->owner_id};
    return l->cb(l->ud, &e);
}

void meta_vlist_start(const meta_vlist *l, const meta_vlist_row *after, const char **key, size_t *key_len,
                      int64_t *seq, bool *incl) {
    *key = after ? after->key : l->lo;
    *key_len = after ? after->key_len : l->lo_len;
    *seq = after ? after->seq : l->lo_seq;
    *incl = after ? false : l->lo_incl;
}

int meta_vlist_run(meta_vlist *l, const char *prefix, size_t prefix_len, const char *after_key, size_t after_key_len,
                   int64_t after_seq, int limit, int (*fetch)(void *l, const void *after, int n, char *rows, int *got),
                   bool *more) {
    /* No key is longer than 1024 bytes or holds a NUL: such a prefix matches nothing. */
    if (prefix_len > sizeof l->hi_buf || (prefix_len && memchr(prefix, '\0', prefix_len))) return 0;
    if (!prefix) prefix = "";
    l->lo = prefix;
    l->lo_len = prefix_len;
    l->lo_incl = true;
    l->lo_seq = 0;
    /* One lower bound: the marker when it sorts at or after the prefix. */
    if (after_key && meta_key_cmp(after_key, after_key_len, prefix, prefix_len) >= 0) {
        if (after_key_len > sizeof l->hi_buf) return 0;
        l->lo = after_key;
        l->lo_len = after_key_len;
        l->lo_incl = after_seq < 0;
        l->lo_seq = after_seq > 0 ? after_seq : 0;
    }
    l->hi = l->hi_buf;
    l->hi_len = prefix_len ? meta_key_successor(prefix, prefix_len, l->hi_buf) : 0;
    meta_pager mp = {sizeof(meta_vlist_row), fetch, vlist_deliver, NULL};
    return meta_page_rows(&mp, l, l, limit, more);
}
