/*
 * walk.c — visiting every object of the store, a batch at a time (jobs.h).
 *
 * Rows are copied out of the scan before the callback runs, so no database
 * connection is held while a job works on an object (which may take long:
 * verifying or moving shards), and the cursor is the last (bucket, key) seen,
 * so objects created or deleted meanwhile never derail the walk.
 */
#include "jobs/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_BATCH 64

typedef struct {
    jobs_object *items;
    int n;
} batch;

static int collect(void *ud, const meta_scan_entry *e) {
    batch *b = ud;
    jobs_object *it = &b->items[b->n++];
    snprintf(it->bucket, sizeof it->bucket, "%s", e->bucket);
    it->key_len = e->key_len < sizeof it->key ? e->key_len : sizeof it->key - 1;
    memcpy(it->key, e->key, it->key_len);
    it->key[it->key_len] = '\0';
    snprintf(it->version_id, sizeof it->version_id, "%s", e->version_id);
    it->size = e->storage == META_STORE_FILE ? e->size : -1;
    snprintf(it->layout, sizeof it->layout, "%s", e->layout);
    return 0;
}

int jobs_walk(meta_store *ms, int (*fn)(void *ud, const jobs_object *o), bool (*stop)(void *ud), void *ud) {
    batch b = {calloc(WALK_BATCH, sizeof(jobs_object)), 0};
    if (!b.items) return CAIRN_ENOMEM;
    char after_bucket[64] = "", after_key[1025] = "";
    size_t after_len = 0;
    bool more = true;
    int seen = 0, rc = 0;
    while (more && rc == 0 && !(stop && stop(ud))) {
        b.n = 0;
        rc = meta_object_scan(ms, after_bucket, after_key, after_len, WALK_BATCH, collect, &b, &more);
        for (int i = 0; rc == 0 && i < b.n && !(stop && stop(ud)); i++) {
            seen++;
            if (fn(ud, &b.items[i])) more = false;
        }
        if (b.n) {
            jobs_object *last = &b.items[b.n - 1];
            memcpy(after_bucket, last->bucket, sizeof after_bucket);
            memcpy(after_key, last->key, last->key_len + 1);
            after_len = last->key_len;
        }
    }
    free(b.items);
    return rc != 0 ? rc : seen;
}
