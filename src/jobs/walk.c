/*
 * walk.c — visiting every placement of the store, a batch at a time (jobs.h).
 *
 * A placement is a set of shards metadata references: an object's own
 * version, a part of a completed multipart object, or a part of an upload in
 * progress (meta.h).  The scrubber, drain and rebalance all walk the same
 * three kinds through this one function, so none of them can skip multipart
 * data.  Rows are copied out of the scan before the callback runs, so no
 * database connection is held while a job works on a placement (which may
 * take long: verifying or moving shards), and the cursor is the last version
 * id seen, so placements created or removed meanwhile never derail the walk.
 * Because a walk's rows can be stale by the time a job works on them, the
 * scrubber heals through jobs_heal_placement, which takes back what it
 * rewrote for a placement that a rebalance moved or a delete removed
 * meanwhile (on this gateway or another).
 */
#include "jobs/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_BATCH 64

typedef struct {
    int (*fn)(void *ud, const meta_placement *p);
    bool (*stop)(void *ud);
    void *ud;
    int seen;
    bool stopped;
} walk_ctx;

static int visit(void *ud, const meta_placement *p) {
    walk_ctx *w = ud;
    if (w->stop && w->stop(w->ud)) {
        w->stopped = true;
        return 1;
    }
    w->seen++;
    if (w->fn(w->ud, p)) {
        w->stopped = true;
        return 1;
    }
    return 0;
}

int jobs_walk(meta_store *ms, int (*fn)(void *ud, const meta_placement *p), bool (*stop)(void *ud), void *ud) {
    walk_ctx w = {fn, stop, ud, 0, false};
    meta_place_cursor cur = {0};
    int rc = 0;
    while (rc == 0 && !cur.done && !w.stopped && !(stop && stop(ud)))
        rc = meta_placement_scan(ms, &cur, WALK_BATCH, visit, &w);
    return rc != 0 ? rc : w.seen;
}

void jobs_describe(const meta_placement *p, char *out, size_t n) {
    static const char *const kinds[] = {"object", "object part", "upload part"};
    if (p->kind == META_PLACE_OBJECT)
        snprintf(out, n, "object %s/%.*s", p->owner, (int)(p->key_len > 200 ? 200 : p->key_len), p->key);
    else
        snprintf(out, n, "%s %d of %s", kinds[p->kind], p->part_number, p->owner);
}

int jobs_shard_referenced(meta_store *ms, const char *drive_id, const char *version_id, int index, bool *referenced) {
    *referenced = true;
    meta_placement p;
    int rc = meta_placement_get(ms, version_id, &p);
    if (rc == CAIRN_ENOTFOUND) {
        *referenced = false;
        return 0;
    }
    if (rc != 0) return rc;
    data_layout l;
    if (data_layout_parse(p.layout, &l) != 0) return 0; /* fsck reports the layout itself */
    *referenced = index >= 0 && index < l.k + l.m && strcmp(l.drive_ids[index], drive_id) == 0;
    return 0;
}

int jobs_heal_placement(meta_store *ms, data_store *ds, const meta_placement *p, const data_layout *l,
                        int *repaired) {
    int rc = data_heal(ds, p->version_id, l, p->size, repaired);
    if (*repaired == 0) return rc;
    /* The heal worked from a layout read before it began.  A rebalance (on
     * this gateway or another) that moved the version meanwhile, or a delete,
     * removed the copies it found; those the heal wrote after that belong to
     * nothing.  Whatever the other side does after this look, it does to
     * what the heal wrote as well. */
    meta_placement now;
    data_layout cur;
    int grc = meta_placement_get(ms, p->version_id, &now);
    int drc = 0;
    if (grc == CAIRN_ENOTFOUND) drc = data_delete(ds, p->version_id, l);
    else if (grc == 0 && strcmp(now.layout, p->layout) != 0 && data_layout_parse(now.layout, &cur) == 0)
        drc = data_delete_moved(ds, p->version_id, l, &cur);
    else return rc;
    char what[300];
    jobs_describe(p, what, sizeof what);
    log_write(drc == 0 ? LOG_INFO : LOG_WARN, NULL,
              drc == 0 ? "heal of a placement that moved or went meanwhile: its rewritten copies removed"
                       : "heal of a placement that moved or went meanwhile: its rewritten copies stay for orphan collection",
              "placement", what, "version_id", p->version_id, NULL);
    *repaired = 0;
    return grc == CAIRN_ENOTFOUND ? CAIRN_ENOTFOUND : rc;
}
