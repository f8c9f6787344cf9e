/*
 * fsck.c — `cairn admin fsck [--repair] [--json]`: checks that metadata and
 * the bytes on the drives or nodes agree, as Ceph's and Garage's fsck do, and
 * with --repair fixes what can be fixed.  It is also the oracle of every
 * fault test: after any failure, a consistent store is what fsck accepts.
 *
 * Four checks, each a stream (memory does not grow with the store):
 *  1. metadata rows that contradict each other (meta_check): uploads no
 *     bucket owns, part rows without their upload or object, multipart
 *     objects whose parts do not add up, inline objects without their bytes,
 *     bytes without their object, a version id used twice;
 *  2. every placement (objects, parts of multipart objects, parts of uploads
 *     in progress): every block of every shard is read and its checksum
 *     verified (data_check); a shard missing, corrupt or of the wrong length
 *     is damage parity can rebuild, a stripe with fewer than k good blocks is
 *     a lost version;
 *  3. every shard on every drive or node: one that no placement references
 *     at that drive and index is an orphan (a crash between writing shards
 *     and committing them, a move whose old copies could not be removed);
 *  4. temp files of interrupted uploads are removed when the drives open.
 * --repair aborts ownerless uploads, deletes ownerless rows, heals damaged
 * placements from parity, removes orphan shards and empties the trash, then
 * checks everything again: the exit status is that of the final check.
 *
 * fsck takes the data directory's lock: it refuses to run beside the server,
 * whose uploads in flight would look like orphans.  Exit 0 when consistent,
 * 1 when problems were found (or remain after --repair), 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd/cmd.h"
#include "data/data.h"
#include "jobs/jobs.h"
#include "meta/meta.h"

#define MAX_REPORTED 1000

typedef struct {
    meta_store *ms;
    data_store *ds;
    bool repair;
    bool json;
    json_t *problems;          /* --json: the reported problems */
    int64_t found, repairable, repaired, reported;
    int64_t placements, shards, orphans, drives_unreachable, temp_files;
} fsck_ctx;

/* Records one problem: printed (text) or appended (JSON), at most
 * MAX_REPORTED of them; every one is counted. */
static void problem(fsck_ctx *c, const char *kind, bool repairable, const char *version_id, const char *what,
                    const char *drive, int shard) {
    c->found++;
    if (repairable) c->repairable++;
    if (c->reported++ >= MAX_REPORTED) return;
    if (c->json) {
        json_t *p = json_pack("{s:s, s:b}", "kind", kind, "repairable", repairable);
        if (!p) return;
        if (version_id) json_object_set_new(p, "version_id", json_string(version_id));
        if (what) json_object_set_new(p, "what", json_stringn_nocheck(what, strlen(what)));
        if (drive) json_object_set_new(p, "drive", json_string(drive));
        if (shard >= 0) json_object_set_new(p, "shard", json_integer(shard));
        json_array_append_new(c->problems, p);
    } else {
        printf("problem: %s%s%s%s%s%s%s", kind, version_id ? " version " : "", version_id ? version_id : "",
               drive ? " drive " : "", drive ? drive : "", what ? " (" : "", what ? what : "");
        if (shard >= 0) printf("%sshard %d", what ? ", " : " (", shard);
        printf("%s%s\n", what || shard >= 0 ? ")" : "", repairable ? " [repairable]" : "");
    }
}

/* ---- 1. metadata ---------------------------------------------------------------------- */

/* Removes the shards of rows a repair deleted, unless something else still
 * references the version (a duplicated version id): on any doubt, keep. */
static void drop_shards(void *ud, const char *version_id, const char *layout) {
    fsck_ctx *c = ud;
    bool referenced = true;
    data_layout l;
    if (meta_version_referenced(c->ms, version_id, &referenced) == 0 && !referenced &&
        data_layout_parse(layout, &l) == 0)
        data_delete(c->ds, version_id, &l);
}

static int meta_problem_seen(void *ud, const meta_problem *p) {
    fsck_ctx *c = ud;
    bool repairable = p->kind == META_PROBLEM_UPLOAD_WITHOUT_BUCKET || p->kind == META_PROBLEM_PARTS_WITHOUT_UPLOAD ||
                      p->kind == META_PROBLEM_PARTS_WITHOUT_OBJECT || p->kind == META_PROBLEM_DATA_WITHOUT_OBJECT;
    char what[1200];
    snprintf(what, sizeof what, "%s%s%.*s", p->id, p->key_len ? " key " : "", (int)p->key_len, p->key);
    problem(c, meta_problem_name(p->kind), repairable, NULL, what, NULL, -1);
    if (c->repair && repairable && meta_repair(c->ms, p, drop_shards, c) == 0) c->repaired++;
    return 0;
}

/* ---- 2. placements -------------------------------------------------------------------- */

static int placement_seen(void *ud, const meta_placement *p) {
    fsck_ctx *c = ud;
    c->placements++;
    char what[300];
    jobs_describe(p, what, sizeof what);
    data_layout l;
    if (data_layout_parse(p->layout, &l) != 0) {
        problem(c, "bad_layout", false, p->version_id, what, NULL, -1);
        return 0;
    }
    data_check_result r;
    int rc = data_check(c->ds, p->version_id, &l, p->size, &r);
    if (rc != 0) {
        problem(c, "check_failed", false, p->version_id, what, NULL, -1);
        return 0;
    }
    bool damaged = false, unreachable = false;
    for (int i = 0; i < r.n; i++) {
        const char *kind = r.missing[i] ? "missing_shard" : r.corrupt[i] ? "corrupt_shard"
                         : r.unreachable[i] ? "unreachable_shard" : NULL;
        if (!kind) continue;
        bool fixable = !r.lost && !r.unreachable[i];
        problem(c, kind, fixable, p->version_id, what, l.drive_ids[i], i);
        damaged |= !r.unreachable[i];
        unreachable |= r.unreachable[i];
    }
    if (r.lost) problem(c, "lost_version", false, p->version_id, what, NULL, -1);
    if (c->repair && damaged && !r.lost && !unreachable) {
        int repaired = 0;
        if (data_heal(c->ds, p->version_id, &l, p->size, &repaired) == 0) c->repaired += repaired;
    }
    return 0;
}

/* ---- 3. orphans ----------------------------------------------------------------------- */

static int shard_seen(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms) {
    (void)age_ms;
    fsck_ctx *c = ud;
    c->shards++;
    bool referenced;
    if (jobs_shard_referenced(c->ms, drive_id, version_id, index, &referenced) != 0) {
        problem(c, "check_failed", false, version_id, "placement lookup failed", drive_id, index);
        return 0;
    }
    if (referenced) return 0;
    c->orphans++;
    problem(c, "orphan_shard", true, version_id, NULL, drive_id, index);
    if (c->repair && data_remove_shard(c->ds, drive_id, version_id, index) == 0) c->repaired++;
    return 0;
}

/* ---- the passes ------------------------------------------------------------------------- */

static int run_pass(fsck_ctx *c) {
    int64_t total = 0;
    int rc = meta_check(c->ms, MAX_REPORTED, meta_problem_seen, c, &total);
    if (rc == 0 && total > MAX_REPORTED) {
        /* Past the report's limit: counted, and repaired on the next run. */
        c->found += total - MAX_REPORTED;
    }
    if (rc == 0) {
        int seen = jobs_walk(c->ms, placement_seen, NULL, c);
        if (seen < 0) rc = seen;
    }
    if (rc == 0 && c->repair) {
        int removed = 0;
        if (jobs_empty_trash(c->ms, c->ds, 0, &removed) == 0) c->repaired += removed;
    }
    if (rc == 0) {
        int unreachable = 0;
        rc = data_walk_shards(c->ds, shard_seen, c, &unreachable);
        c->drives_unreachable = unreachable;
        for (int i = 0; i < unreachable; i++) problem(c, "drive_unreachable", false, NULL, NULL, NULL, -1);
    }
    return rc;
}

static void summary(const fsck_ctx *c, const char *label) {
    printf("fsck%s: %lld placements, %lld shards: ", label, (long long)c->placements, (long long)c->shards);
    if (c->found == 0) printf("consistent\n");
    else printf("%lld problem(s), %lld repairable\n", (long long)c->found, (long long)c->repairable);
}

static json_t *pass_json(const fsck_ctx *c) {
    return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:O}", "ok", c->found == 0, "placements", (json_int_t)c->placements,
                     "shards", (json_int_t)c->shards, "problems_found", (json_int_t)c->found, "repairable",
                     (json_int_t)c->repairable, "orphans", (json_int_t)c->orphans, "problems", c->problems);
}

int cmd_fsck(const config_t *cfg, int argc, char **argv) {
    bool repair = false, json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repair")) repair = true;
        else if (!strcmp(argv[i], "--json")) json = true;
        else {
            fprintf(stderr, "usage: cairn admin [--data DIR] fsck [--repair] [--json]\n");
            return 2;
        }
    }
    int64_t t0 = time_mono_ns(), t0_us = time_now_us();
    int lock_fd[2] = {-1, -1};
    int rc = cmd_lock_data_dir(cfg, lock_fd);
    if (rc != 0) return rc;
    meta_store *ms = NULL;
    unsigned char mk[32];
    if ((rc = cmd_open_meta(cfg, &ms, mk)) != 0) {
        cmd_unlock_data_dir(lock_fd);
        return rc;
    }
    data_store *ds = NULL;
    int cleaned = 0;
    if ((rc = cmd_open_data(cfg, ms, &ds, &cleaned)) != 0) {
        meta_close(ms);
        cmd_unlock_data_dir(lock_fd);
        return rc;
    }
    fsck_ctx c = {.ms = ms, .ds = ds, .repair = repair, .json = json, .problems = json_array(), .temp_files = cleaned};
    rc = run_pass(&c);
    json_t *out = json ? json_object() : NULL;
    if (rc == 0 && json) json_object_set_new(out, "check", pass_json(&c));
    if (rc == 0 && !json) summary(&c, "");
    bool ok = rc == 0 && c.found == 0;
    if (rc == 0 && repair && c.found > 0) {
        int64_t repaired = c.repaired;
        /* Everything again, checking only: what --repair left is what counts. */
        json_decref(c.problems);
        fsck_ctx after = {.ms = ms, .ds = ds, .json = json, .problems = json_array()};
        rc = run_pass(&after);
        ok = rc == 0 && after.found == 0;
        if (rc == 0 && json) {
            json_object_set_new(out, "repaired", json_integer(repaired));
            json_object_set_new(out, "after_repair", pass_json(&after));
        } else if (rc == 0) {
            printf("fsck: repaired %lld\n", (long long)repaired);
            summary(&after, " after repair");
        }
        c.problems = after.problems;
    }
    if (json && out) {
        json_object_set_new(out, "ok", json_boolean(ok));
        json_object_set_new(out, "temp_files_removed", json_integer(cleaned));
        char *text = json_dumps(out, JSON_COMPACT);
        if (text) puts(text);
        free(text);
        json_decref(out);
    } else if (cleaned) {
        printf("fsck: removed %d temp file(s) of interrupted uploads\n", cleaned);
    }
    json_decref(c.problems);
    if (rc != 0) fprintf(stderr, "cairn: fsck could not finish: %s\n", cairn_strerror(rc));
    int code = rc != 0 ? 1 : ok ? 0 : 1;
    data_close(ds);
    /* Its audit event (admin:Fsck), as every admin command's.  A failure to
     * record it is said on stderr (cmd_admin_record) but leaves the exit
     * code alone: fsck's says whether the store is consistent, and the
     * fault suite's oracle reads it with faults still armed. */
    (void)cmd_admin_record(cfg, ms, argc, argv, code, t0, t0_us);
    meta_close(ms);
    cmd_unlock_data_dir(lock_fd);
    return code;
}
