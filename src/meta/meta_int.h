/*
 * meta_int.h — the contract between meta.h and a metadata backend.  Not part
 * of the meta interface: only files in src/meta include it.
 *
 * A backend is a table of operations, the way a drive is (data/drive.h):
 * each backend's store struct begins with a meta_store, whose ops point at
 * its functions, and meta.c forwards every meta_* call through the table
 * after the checks that hold whatever the backend.  Each operation has the
 * contract meta.h documents for the meta_* call of the same name.
 */
#ifndef CAIRN_META_INT_H
#define CAIRN_META_INT_H

#include "meta/meta.h"

typedef struct meta_ops {
    const char *name; /* "sqlite", "postgres" */
    void (*close)(meta_store *ms);
    int (*ping)(meta_store *ms);
    int (*schema_version)(meta_store *ms, int *version);
    int (*migrate)(meta_store *ms, int target);
    int (*user_create)(meta_store *ms, meta_user *u);
    int (*user_ensure_root)(meta_store *ms, const char *name, meta_user *out);
    int (*user_get)(meta_store *ms, int64_t id, meta_user *out);
    int (*user_get_by_name)(meta_store *ms, const char *name, meta_user *out);
    int (*user_list)(meta_store *ms, int (*cb)(void *ud, const meta_user *u), void *ud);
    int (*key_create)(meta_store *ms, const meta_key *k);
    int (*key_get)(meta_store *ms, const char *access_key, meta_key *out);
    int (*key_list)(meta_store *ms, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud);
    int (*key_set_active)(meta_store *ms, const char *access_key, bool active);
    int (*bucket_create)(meta_store *ms, meta_bucket *b, int64_t *existing_owner);
    int (*bucket_get)(meta_store *ms, const char *name, meta_bucket *out);
    int (*bucket_delete)(meta_store *ms, const char *name, int64_t id);
    int (*bucket_list)(meta_store *ms, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud);
    int (*bucket_set_public)(meta_store *ms, const char *name, bool public_read);
    int (*object_put)(meta_store *ms, const meta_object *obj, meta_object *replaced, bool *had_replaced);
    int (*object_get)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, bool with_data, meta_object *out);
    int (*object_delete)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len, meta_object *deleted);
    int (*object_delete_many)(meta_store *ms, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n);
    int (*object_list)(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *from, size_t from_len, bool inclusive, int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more);
    int (*object_scan)(meta_store *ms, const char *after_bucket, const char *after_key, size_t after_key_len, int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more);
    int (*placement_scan)(meta_store *ms, meta_place_cursor *cur, int limit, int (*cb)(void *ud, const meta_placement *p), void *ud);
    int (*placement_set_layout)(meta_store *ms, const char *version_id, const char *old_layout, const char *new_layout);
    int (*layout_refs)(meta_store *ms, const char *id, int64_t *count);
    int (*placement_get)(meta_store *ms, const char *version_id, meta_placement *out);
    int (*check)(meta_store *ms, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total);
    int (*repair)(meta_store *ms, const meta_problem *p, void (*drop)(void *ud, const char *version_id, const char *layout), void *ud);
    int (*upload_create)(meta_store *ms, const meta_upload *u);
    int (*upload_get)(meta_store *ms, const char *upload_id, meta_upload *out);
    int (*upload_list)(meta_store *ms, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more);
    int (*part_put)(meta_store *ms, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced);
    int (*part_list)(meta_store *ms, const char *upload_id, int after, int limit, int (*cb)(void *ud, const meta_part *p), void *ud, bool *more);
    int (*upload_complete)(meta_store *ms, const char *upload_id, const meta_object *obj, const meta_part *parts, int n, meta_object *replaced, bool *had_replaced, void (*unused)(void *ud, const meta_part *p), void *ud);
    int (*upload_abort)(meta_store *ms, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud);
    int (*object_parts)(meta_store *ms, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud);
    int (*upload_completed_get)(meta_store *ms, const char *upload_id, meta_completed_upload *out);
    int (*upload_completed_prune)(meta_store *ms, int64_t before_ms, int limit, int64_t *deleted);
    int (*trash_list)(meta_store *ms, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud);
    int (*trash_remove)(meta_store *ms, const char *const *version_ids, int n);
    int (*job_enqueue)(meta_store *ms, const meta_job *j, int64_t *id);
    int (*job_claim)(meta_store *ms, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out);
    int (*job_finish)(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error);
    int (*job_finish_claim)(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next);
    int (*job_release)(meta_store *ms, int64_t id, const char *owner);
    int (*job_extend)(meta_store *ms, int64_t id, const char *owner, int64_t lease_expires_ms);
    int (*job_cancel)(meta_store *ms, int64_t id);
    int (*job_retry)(meta_store *ms, int64_t id);
    int (*job_get)(meta_store *ms, int64_t id, meta_job *out);
    int (*job_list)(meta_store *ms, const char *state, const char *kind, int limit, int (*cb)(void *ud, const meta_job *j), void *ud);
    int (*job_prune)(meta_store *ms, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted);
    int (*job_counts)(meta_store *ms, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud);
    int (*upload_list_older)(meta_store *ms, int64_t before_ms, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud);
    int (*node_upsert)(meta_store *ms, const char *id, const char *url);
    int (*node_list)(meta_store *ms, int (*cb)(void *ud, const meta_node *n), void *ud);
    int (*node_get)(meta_store *ms, const char *id_or_url, meta_node *out);
    int (*node_set_state)(meta_store *ms, const char *id, const char *state);
    int (*node_seen)(meta_store *ms, const char *id, bool ok, const char *error);
    int (*version_referenced)(meta_store *ms, const char *version_id, bool *referenced);
    int (*object_count)(meta_store *ms, const char *bucket, int64_t *count);
    /* Optional (NULL: the backend has no pool to report). */
    int (*pool_stats)(meta_store *ms, meta_pool_stats *out);
} meta_ops;

/* The first member of every backend's store. */
struct meta_store {
    const meta_ops *ops;
};

#endif
