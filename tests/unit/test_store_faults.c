/*
 * test_store_faults.c — the erasure-coded store (src/data/data.h) under
 * failing drive calls and failing allocations.
 *
 * In the fault build (meson -Dfaults=true) every open, write, fsync, rename
 * and unlink of a shard file is a fault-injection site (src/data/drive.c).
 * Each store operation is looped SQLite-style on six local drives (4+2,
 * 4 KiB blocks, fsync on; seven to move a shard): for n = 1, 2, ... a fresh
 * store gets its state with nothing armed, then the nth data.* call fails —
 * just that one (count=1), two in a row (count=2, more than a 4+2 write can
 * lose), or every call from the nth on (count=0: the disk dies) — with EIO
 * or ENOSPC, and with nothing armed again:
 *
 *   - the operation returned 0 or a clean error (EIO, ENOSPC), never a
 *     crash and never ENOTFOUND for shards that are there;
 *   - a write that returned 0 reads back byte for byte, and after a heal
 *     has all six shards, verified; a read returns the written bytes or an
 *     error; a heal, a check or a move never loses a good shard;
 *   - a write that failed left no shard and no temp file, except one per
 *     failed unlink (a temp file goes at the next start, a shard to orphan
 *     collection): counted from the log;
 *   - after a restart no temp file is left anywhere, and the checks hold
 *     again.
 *
 * The loop stops at the first n the operation no longer reaches, found from
 * the log: every injection logs "fault injected" with its site
 * (src/core/fault.c), and the test points the log at a file of its own.
 * The same cases run again (suite store_allocs) with the nth malloc, calloc
 * or realloc of the process failing instead (not under ASan or TSan), where
 * CAIRN_ENOMEM is a clean result too; listing the shards and opening the
 * store, which make none of the site calls (they list directories and write
 * the drive id with file_write_atomic), are looped only there.
 *
 * Outside the fault build the file checks that the layer is a no-op.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "data/data.h"

#if !CAIRN_FAULT_BUILD

Test(store_faults, sites_are_no_ops_outside_the_fault_build) {
    for (int i = FAULT_DATA_OPEN; i <= FAULT_DATA_UNLINK; i++) cr_expect_eq(fault_inject((fault_site)i), 0);
}

#else

#define BLOCK 4096u
#define NDRIVES 6
#define K 4
#define M 2

#include "fault_harness.h"

static int injected(const char *site) { return injected_at(site); }

typedef struct {
    int count;          /* calls failed from the nth: 1, 2 or 0 (all) */
    int parity;         /* 0: EIO on odd n, 1: on even n */
} variant;

static const variant variants[] = {{1, 0}, {1, 1}, {2, 0}, {2, 1}, {0, 0}, {0, 1}};

static int errno_for(const variant *v, int n) { return (n + v->parity) % 2 ? EIO : ENOSPC; }

/* What failed, for messages. */
static const char *what(const variant *v, int n) {
    return failing == FAIL_ALLOC ? "no memory" : failing == FAIL_ALLOC_ALL ? "no memory from then on"
                                               : errno_for(v, n) == ENOSPC ? "ENOSPC" : "EIO";
}

static void arm(const variant *v, int n) {
    if (failing != FAIL_IO) {
        alloc_arm(n);
        return;
    }
    cr_assert_eq(ftruncate(log_fd, 0), 0);
    char spec[96];
    snprintf(spec, sizeof spec, "sites=data.*\nnth=%d\ncount=%d\nerrno=%s", n, v->count, what(v, n));
    cr_assert_eq(fault_configure(spec), 0);
}

static void disarm(void) {
    if (failing != FAIL_IO) alloc_arm(0);
    else cr_assert_eq(fault_configure(""), 0);
}

/* ---- drives and stores --------------------------------------------------------------------------- */

static char root[PATH_MAX];

static void suite_init(void) {
    cr_assert_eq(core_init(), 0);
    log_capture();
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/cairn-test-store-faults.XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb;
    (void)flag;
    (void)f;
    chmod(p, 0700);
    return remove(p);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void suite_fini(void) {
    if (root[0]) rm_tree(root);
}

TestSuite(store_faults, .init = suite_init, .fini = suite_fini, .timeout = 600);
TestSuite(store_allocs, .init = suite_init, .fini = suite_fini, .timeout = 600);

/* One run's drives, store and object. */
typedef struct {
    char dir[PATH_MAX];
    char path[NDRIVES + 1][PATH_MAX];
    const char *ptr[NDRIVES + 1];
    int ndrives;
    data_store *ds;
    char vid[33];
    data_layout l, want;
    unsigned char *data;
    size_t len;
    int refused;        /* heals the check refused (the loop heals explicitly) */
    int repaired;       /* what the op reported (healed, moved shards) */
    bool restarted;     /* the check runs after the restart */
    data_check_result res;
} run;

static bool refuse_heal(void *ud, const char *version_id) {
    (void)version_id;
    (*(int *)ud)++;
    return false;
}

static void run_open_store(run *r) {
    data_options o = {.drives = r->ptr, .ndrives = r->ndrives, .k = K, .m = M, .block = BLOCK, .fsync = true};
    int cleaned = -1;
    int rc = data_open(&o, &r->ds, &cleaned);
    cr_assert_eq(rc, 0, "data_open: %d", rc);
    data_set_heal_check(r->ds, refuse_heal, &r->refused);
}

static void run_init(run *r, const char *tag, int ndrives, int n) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s/%s-%d", root, tag, n);
    r->ndrives = ndrives;
    for (int i = 0; i < ndrives; i++) {
        snprintf(r->path[i], sizeof r->path[i], "%s/d%d", r->dir, i);
        r->ptr[i] = r->path[i];
    }
    run_open_store(r);
}

static void run_restart(run *r) {
    data_close(r->ds);
    run_open_store(r);
}

static void run_free(run *r) {
    data_close(r->ds);
    free(r->data);
    rm_tree(r->dir);
}

static unsigned char *random_bytes(size_t n, uint64_t seed) {
    unsigned char *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (unsigned char)(s >> 32);
    }
    return p;
}

/* Shard files of version vid across the drives. */
static int shard_files(const run *r, const char *vid) {
    int n = 0;
    for (int d = 0; d < r->ndrives; d++)
        for (int i = 0; i < K + M; i++) {
            char p[PATH_MAX * 2];
            snprintf(p, sizeof p, "%s/objects/%.2s/%s.%d", r->path[d], vid, vid, i);
            n += access(p, F_OK) == 0;
        }
    return n;
}

/* The drive directory holding the drive id. */
static const char *drive_dir(const run *r, const char *id) {
    for (int i = 0; i < r->ndrives; i++) {
        char p[PATH_MAX + 16], buf[64] = {0};
        snprintf(p, sizeof p, "%s/drive-id", r->path[i]);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (got >= DATA_DRIVE_ID_LEN && !strncmp(buf, id, DATA_DRIVE_ID_LEN)) return r->path[i];
    }
    return NULL;
}

static void shard_path(const run *r, const data_layout *l, int i, char *out, size_t n) {
    const char *dir = drive_dir(r, l->drive_ids[i]);
    cr_assert_not_null(dir);
    snprintf(out, n, "%s/objects/%.2s/%s.%d", dir, r->vid, r->vid, i);
}

/* Writes the object in uneven pieces and commits; returns the first error. */
static int write_object(data_store *ds, const char *vid, const unsigned char *data, size_t len, data_layout *out) {
    static const size_t pieces[] = {1, 777, 4096, 16384, 65539, 3, 100000};
    data_writer *w = NULL;
    int rc = data_writer_open(ds, vid, NULL, NULL, &w);
    if (rc != 0) return rc;
    size_t off = 0;
    for (int i = 0; off < len && rc == 0; i++) {
        size_t n = pieces[i % 7] < len - off ? pieces[i % 7] : len - off;
        rc = data_writer_write(w, data + off, n);
        off += n;
    }
    if (rc == 0) rc = data_writer_finish(w);
    if (rc != 0) {
        data_writer_abort(w);
        return rc;
    }
    return data_writer_commit(w, out);
}

/* Reads the whole object with layout l; 0 when the bytes are exactly data. */
static int read_object(data_store *ds, const char *vid, const data_layout *l, const unsigned char *data, size_t len) {
    data_reader *rd = NULL;
    int rc = data_reader_open(ds, vid, l, (int64_t)len, &rd);
    if (rc != 0) return rc;
    /* Not allocated here: the allocation loop fails only the store's own. */
    static unsigned char buf[1 << 20];
    cr_assert_leq(len, sizeof buf);
    size_t got = 0;
    while (rc == 0 && got < len) {
        ssize_t k = data_reader_read(rd, got, buf + got, len - got < 10007 ? len - got : 10007);
        if (k < 0) rc = (int)k;
        else if (k == 0) break;
        else got += (size_t)k;
    }
    if (rc == 0) cr_assert(got == len && !memcmp(buf, data, len), "a read returned other bytes than were written");
    data_reader_close(rd);
    return rc;
}

/* Every shard of the layout is there and verifies. */
static void expect_clean(run *r, const data_layout *l, const char *why) {
    data_check_result res;
    cr_assert_eq(data_check(r->ds, r->vid, l, (int64_t)r->len, &res), 0);
    for (int i = 0; i < K + M; i++) {
        cr_assert(!res.missing[i] && !res.unreachable[i] && !res.corrupt[i], "%s: shard %d bad", why, i);
        char p[PATH_MAX * 2];
        shard_path(r, l, i, p, sizeof p);
        cr_assert_eq(access(p, F_OK), 0, "%s: shard %d absent", why, i);
    }
    cr_assert_not(res.lost);
}

/* With nothing armed: the object reads back, a heal restores every shard,
 * and a check then finds all of them good. */
static void expect_whole(run *r, const data_layout *l, const char *why) {
    int rc = read_object(r->ds, r->vid, l, r->data, r->len);
    cr_assert_eq(rc, 0, "%s: the object does not read back (%d)", why, rc);
    int repaired = -1;
    rc = data_heal(r->ds, r->vid, l, (int64_t)r->len, &repaired);
    cr_assert_eq(rc, 0, "%s: heal with nothing failing: %d", why, rc);
    expect_clean(r, l, why);
}

static bool clean_error(int rc) {
    return rc == CAIRN_EIO || rc == CAIRN_ENOSPC || (failing != FAIL_IO && rc == CAIRN_ENOMEM);
}

/* ---- the loop ------------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int ndrives;
    size_t len;                  /* object size; 0: no object set up */
    void (*setup)(run *r);       /* after the object is written; may be NULL */
    int (*op)(run *r);
    /* Checks the outcome with nothing armed; unlinks: how many unlink
     * calls failed. */
    void (*check)(run *r, int rc, int unlinks, const char *why);
    bool recheck;                /* check again after a restart (r->restarted set) */
} store_case;

static int run_case(const store_case *sc, const variant *v) {
    int runs = 0;
    /* Every call; past the first 256 allocations a geometric sample. */
    for (int n = 1; n < 100000; n = failing != FAIL_IO && n >= 256 ? n + n / 8 : n + 1) {
        run r;
        char tag[64];
        if (failing != FAIL_IO) snprintf(tag, sizeof tag, "alloc");
        else snprintf(tag, sizeof tag, "c%d-%d", v->count, v->parity);
        run_init(&r, tag, sc->ndrives, n);
        rand_hex_id(r.vid, 16);
        if (sc->len) {
            r.len = sc->len;
            r.data = random_bytes(r.len, (uint64_t)n);
            cr_assert_eq(write_object(r.ds, r.vid, r.data, r.len, &r.l), 0);
        }
        if (sc->setup) sc->setup(&r);
        arm(v, n);
        int rc = sc->op(&r);
        int hits = injected(NULL), unlinks = injected("data.unlink");
        disarm();
        if (!r.ds) run_open_store(&r); /* the op was an open that failed */
        char why[160];
        if (failing != FAIL_IO) snprintf(why, sizeof why, "%s, allocation %d failing (%s)", sc->name, n, what(v, n));
        else snprintf(why, sizeof why, "%s, call %d failing (count %d, %s)", sc->name, n, v->count, what(v, n));
        cr_assert(rc == 0 || clean_error(rc), "%s: returned %d (%s)", why, rc, cairn_strerror(rc));
        if (!hits) cr_assert_eq(rc, 0, "%s with nothing failing: %d", sc->name, rc);
        cr_assert_leq(data_tmp_count(r.ds), unlinks, "%s: temp files left beyond the failed unlinks", why);
        sc->check(&r, rc, unlinks, why);
        run_restart(&r);
        cr_assert_eq(data_tmp_count(r.ds), 0, "%s: temp files outlive a restart", why);
        if (sc->recheck) {
            r.restarted = true;
            strcat(why, ", after a restart");
            sc->check(&r, rc, unlinks, why);
        }
        run_free(&r);
        if (!hits) break;
        runs++;
    }
    return runs;
}

static void run_cases(const store_case *sc) {
    int total = 0;
    if (failing != FAIL_IO) total = run_case(sc, &variants[0]);
    else
        for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) total += run_case(sc, &variants[i]);
    /* (Some operations allocate nothing: removing shards.) */
    if (failing == FAIL_IO) cr_expect_gt(total, 0, "%s never reached a fault", sc->name);
    cr_log_info("%s: %d runs", sc->name, total);
}

/* The I/O test of a list of cases, and (where malloc can be wrapped) its
 * allocation test. */
#define CASE_TESTS(name, ...)                                                                  \
    static void name(void) {                                                                   \
        static const store_case cases_[] = {__VA_ARGS__};                                      \
        for (size_t i = 0; i < sizeof cases_ / sizeof cases_[0]; i++) run_cases(&cases_[i]);   \
    }                                                                                          \
    Test(store_faults, name) { name(); }                                                       \
    Test(store_allocs, name, .disabled = !ALLOC_FAILURES) {                                    \
        failing = FAIL_ALLOC;                                                                  \
        name();                                                                                \
        failing = FAIL_ALLOC_ALL;                                                              \
        name();                                                                                \
    }

/* ---- writing -------------------------------------------------------------------------------------- */

static void setup_small(run *r) {
    r->len = 3 * BLOCK + 5;     /* one short stripe, written at finish on the caller's thread */
    r->data = random_bytes(r->len, 7);
}

static void setup_large(run *r) {
    r->len = 5 * K * BLOCK + 333; /* six stripes, through the writer's threads */
    r->data = random_bytes(r->len, 8);
}

static int op_put(run *r) { return write_object(r->ds, r->vid, r->data, r->len, &r->l); }

static void check_put(run *r, int rc, int unlinks, const char *why) {
    int files = shard_files(r, r->vid);
    if (rc == 0) {
        cr_assert_geq(files, K + 1, "%s: a write acknowledged with %d shards", why, files);
        expect_whole(r, &r->l, why);
        cr_assert_eq(shard_files(r, r->vid), K + M, "%s", why);
    } else {
        cr_assert_leq(files + data_tmp_count(r->ds), unlinks, "%s: a failed write left %d shards and %d temp files",
                      why, files, data_tmp_count(r->ds));
    }
}

CASE_TESTS(put,
           {"put a small object", NDRIVES, 0, setup_small, op_put, check_put, true},
           {"put a large object", NDRIVES, 0, setup_large, op_put, check_put, true})

/* ---- reading and checking ------------------------------------------------------------------------ */

static int op_read(run *r) { return read_object(r->ds, r->vid, &r->l, r->data, r->len); }

static void check_read(run *r, int rc, int unlinks, const char *why) {
    (void)rc;
    (void)unlinks;
    cr_assert_eq(shard_files(r, r->vid), K + M, "%s: a read changed the shards", why);
    expect_whole(r, &r->l, why);
}

static void setup_one_missing(run *r) {
    char p[PATH_MAX * 2];
    shard_path(r, &r->l, 3, p, sizeof p);
    cr_assert_eq(unlink(p), 0);
}

/* A degraded read queues a heal (refused here: the check heals). */
static void check_read_missing(run *r, int rc, int unlinks, const char *why) {
    (void)rc;
    (void)unlinks;
    if (!r->restarted) cr_assert_eq(shard_files(r, r->vid), K + M - 1, "%s: a read changed the shards", why);
    expect_whole(r, &r->l, why);
}

static int op_check(run *r) { return data_check(r->ds, r->vid, &r->l, (int64_t)r->len, &r->res); }

static void check_check(run *r, int rc, int unlinks, const char *why) {
    (void)unlinks;
    cr_assert(rc == 0 || (failing != FAIL_IO && rc == CAIRN_ENOMEM),
              "%s: data_check fails only on bad arguments or memory: %d", why, rc);
    if (rc != 0) return check_read(r, rc, unlinks, why);
    int unreachable = 0;
    for (int i = 0; i < K + M; i++) {
        cr_assert(!r->res.missing[i] && !r->res.corrupt[i], "%s: a shard that failed to open is reported %s", why,
                  r->res.missing[i] ? "missing" : "corrupt");
        unreachable += r->res.unreachable[i];
    }
    cr_assert_eq(r->res.lost, unreachable > M, "%s: %d unreachable shards, lost %d", why, unreachable, r->res.lost);
    check_read(r, rc, unlinks, why);
}

CASE_TESTS(read_and_check,
           {"read", NDRIVES, 5 * K * BLOCK + 333, NULL, op_read, check_read, true},
           {"read with a shard missing", NDRIVES, 5 * K * BLOCK + 333, setup_one_missing, op_read, check_read_missing,
            true},
           {"check", NDRIVES, 5 * K * BLOCK + 333, NULL, op_check, check_check, false})

/* ---- healing -------------------------------------------------------------------------------------- */

static void setup_two_missing(run *r) {
    char p[PATH_MAX * 2];
    shard_path(r, &r->l, 0, p, sizeof p);
    cr_assert_eq(unlink(p), 0);
    shard_path(r, &r->l, 5, p, sizeof p);
    cr_assert_eq(unlink(p), 0);
}

static void setup_corrupt(run *r) {
    char p[PATH_MAX * 2];
    shard_path(r, &r->l, 1, p, sizeof p);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char c = 0;
    off_t off = 2 * (4 + BLOCK) + 4 + 100; /* a data byte of the third block */
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static int op_heal(run *r) { return data_heal(r->ds, r->vid, &r->l, (int64_t)r->len, &r->repaired); }

static void check_heal(run *r, int rc, int unlinks, const char *why) {
    (void)unlinks;
    int files = shard_files(r, r->vid);
    cr_assert_geq(files, K, "%s: a heal removed good shards", why);
    if (rc == 0 && !r->restarted) {
        cr_assert_geq(r->repaired, 1, "%s: heal reported success, repaired none", why);
        expect_clean(r, &r->l, why);
    }
    expect_whole(r, &r->l, why);
}

CASE_TESTS(heal,
           {"heal two missing shards", NDRIVES, 5 * K * BLOCK + 333, setup_two_missing, op_heal, check_heal, true},
           {"heal a corrupt shard", NDRIVES, 5 * K * BLOCK + 333, setup_corrupt, op_heal, check_heal, true})

/* ---- removing ----------------------------------------------------------------------------------- */

static int op_delete(run *r) { return data_delete(r->ds, r->vid, &r->l); }

static void check_delete(run *r, int rc, int unlinks, const char *why) {
    int files = shard_files(r, r->vid);
    if (rc == 0) cr_assert_eq(files, 0, "%s: delete reported success with %d shards left", why, files);
    else cr_assert_leq(files, unlinks, "%s", why);
    cr_assert_eq(data_delete(r->ds, r->vid, &r->l), 0, "%s: delete again", why);
    cr_assert_eq(shard_files(r, r->vid), 0, "%s", why);
}

static int op_remove_shard(run *r) { return data_remove_shard(r->ds, r->l.drive_ids[2], r->vid, 2); }

static void check_remove_shard(run *r, int rc, int unlinks, const char *why) {
    (void)unlinks;
    char p[PATH_MAX * 2];
    shard_path(r, &r->l, 2, p, sizeof p);
    bool there = access(p, F_OK) == 0;
    if (rc == 0) cr_assert_not(there, "%s: remove reported success, the shard is there", why);
    else cr_assert(there, "%s: remove failed and the shard is gone", why);
    cr_assert_eq(shard_files(r, r->vid), K + M - (there ? 0 : 1), "%s: other shards touched", why);
    cr_assert_eq(read_object(r->ds, r->vid, &r->l, r->data, r->len), 0, "%s", why);
    cr_assert_eq(data_remove_shard(r->ds, r->l.drive_ids[2], r->vid, 2), 0, "%s: remove again", why);
    cr_assert_neq(access(p, F_OK), 0, "%s", why);
}

CASE_TESTS(delete_and_remove_shard,
           {"delete", NDRIVES, 2 * K * BLOCK + 9, NULL, op_delete, check_delete, false},
           {"remove a shard", NDRIVES, 2 * K * BLOCK + 9, NULL, op_remove_shard, check_remove_shard, false})

/* ---- moving shards (seven drives: one that holds none of the object) ------------------------------ */

/* Drains the drive of shard 0: the desired layout moves it to the seventh. */
static void setup_move(run *r) {
    cr_assert_eq(data_set_placeable(r->ds, r->l.drive_ids[0], false), 0);
    cr_assert(data_desired_layout(r->ds, r->vid, &r->l, &r->want));
    for (int i = 1; i < K + M; i++) cr_assert_str_eq(r->want.drive_ids[i], r->l.drive_ids[i]);
}

/* Shard 0's file on the drive want names. */
static bool moved_copy(run *r) {
    char p[PATH_MAX * 2];
    shard_path(r, &r->want, 0, p, sizeof p);
    return access(p, F_OK) == 0;
}

static int op_relocate(run *r) { return data_relocate(r->ds, r->vid, (int64_t)r->len, &r->l, &r->want, &r->repaired); }

static void check_relocate(run *r, int rc, int unlinks, const char *why) {
    bool copy = moved_copy(r);
    if (rc == 0) {
        cr_assert(copy, "%s: relocate reported success, no copy on the new drive", why);
        if (!r->restarted) {
            cr_assert_eq(r->repaired, 1, "%s", why);
            expect_clean(r, &r->want, why);
        }
        expect_whole(r, &r->want, why);
    } else {
        cr_assert_leq(copy, unlinks, "%s: a failed relocate left its copy", why);
    }
    /* The old layout is intact whatever happened. */
    expect_whole(r, &r->l, why);
}

static void setup_moved(run *r) {
    setup_move(r);
    cr_assert_eq(op_relocate(r), 0);
    cr_assert(moved_copy(r));
}

static int op_delete_moved(run *r) { return data_delete_moved(r->ds, r->vid, &r->l, &r->want); }

static void check_delete_moved(run *r, int rc, int unlinks, const char *why) {
    (void)unlinks;
    char p[PATH_MAX * 2];
    shard_path(r, &r->l, 0, p, sizeof p);
    bool old = access(p, F_OK) == 0;
    if (rc == 0) cr_assert_not(old, "%s: delete reported success, the old copy is there", why);
    else cr_assert(old, "%s: failed, yet the old copy is gone", why);
    cr_assert(moved_copy(r), "%s: the new copy went too", why);
    expect_whole(r, &r->want, why);
}

CASE_TESTS(relocate_and_delete_moved,
           {"relocate a shard", NDRIVES + 1, 5 * K * BLOCK + 333, setup_move, op_relocate, check_relocate, true},
           {"delete moved shards", NDRIVES + 1, 5 * K * BLOCK + 333, setup_moved, op_delete_moved, check_delete_moved,
            true})

/* ---- listing and opening: no file call is a site, but they allocate ----------------------------- */

static int count_shard(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms) {
    (void)drive_id;
    (void)version_id;
    (void)index;
    (void)age_ms;
    (*(int *)ud)++;
    return 0;
}

static int op_walk(run *r) {
    int unreachable = -1;
    r->repaired = 0;
    int rc = data_walk_shards(r->ds, count_shard, &r->repaired, &unreachable);
    if (rc == 0) cr_assert_leq(r->repaired, K + M);
    return rc;
}

static void check_walk(run *r, int rc, int unlinks, const char *why) {
    (void)rc;
    (void)unlinks;
    cr_assert_eq(op_walk(r), 0, "%s: walk again", why);
    cr_assert_eq(r->repaired, K + M, "%s: walk again", why);
}

static void setup_closed(run *r) {
    data_close(r->ds);
    r->ds = NULL;
}

static int op_open(run *r) {
    data_options o = {.drives = r->ptr, .ndrives = r->ndrives, .k = K, .m = M, .block = BLOCK, .fsync = true};
    int rc = data_open(&o, &r->ds, NULL);
    if (rc != 0) r->ds = NULL;
    else data_set_heal_check(r->ds, refuse_heal, &r->refused);
    return rc;
}

static void check_open(run *r, int rc, int unlinks, const char *why) {
    (void)rc;
    (void)unlinks;
    expect_whole(r, &r->l, why);
}

static void walk_and_open(void) {
    static const store_case walk = {"walk the shards", NDRIVES, 2 * K * BLOCK + 9, NULL, op_walk, check_walk, true};
    static const store_case open_store = {"open a store", NDRIVES, 2 * K * BLOCK + 9, setup_closed, op_open,
                                          check_open, true};
    run_cases(&walk);
    run_cases(&open_store);
}

Test(store_allocs, walk_and_open, .disabled = !ALLOC_FAILURES) {
    failing = FAIL_ALLOC;
    walk_and_open();
    failing = FAIL_ALLOC_ALL;
    walk_and_open();
}

/* ---- other geometries and layout text under failing allocations ---------------------------------- */

/* An object written with another geometry than the store's (4+2 here, the
 * store reopened as 2+1) needs a codec of its own, made on first read: when
 * that allocation fails the read says so (no memory), and a later read works. */
Test(store_allocs, reading_another_geometry, .disabled = !ALLOC_FAILURES) {
    failing = FAIL_ALLOC;
    run r;
    run_init(&r, "geometry", NDRIVES, 0);
    rand_hex_id(r.vid, 16);
    r.len = 3 * K * BLOCK + 17;
    r.data = random_bytes(r.len, 31);
    cr_assert_eq(write_object(r.ds, r.vid, r.data, r.len, &r.l), 0);
    int nomem = 0;
    for (int n = 1; n < 64; n++) {
        data_close(r.ds);
        data_options o = {.drives = r.ptr, .ndrives = r.ndrives, .k = 2, .m = 1, .block = BLOCK};
        cr_assert_eq(data_open(&o, &r.ds, NULL), 0);
        data_set_heal_check(r.ds, refuse_heal, &r.refused);
        data_reader *rd = NULL;
        alloc_arm(n);
        int rc = data_reader_open(r.ds, r.vid, &r.l, (int64_t)r.len, &rd);
        bool hit = alloc_hit();
        alloc_arm(0);
        cr_assert(rc == 0 || rc == CAIRN_ENOMEM, "allocation %d failing: %d", n, rc);
        if (rc == 0) data_reader_close(rd);
        else nomem++;
        cr_assert_eq(read_object(r.ds, r.vid, &r.l, r.data, r.len), 0, "allocation %d failing, then read", n);
        if (!hit) break;
    }
    cr_expect_geq(nomem, 3, "the reader, its codec and its buffer each failed once");
    run_free(&r);
}

/* What a writer's tap saw: the bytes in order, counted against the object. */
typedef struct {
    const unsigned char *want;
    size_t seen;
    bool in_order;
} tap_seen;

static void tap_check(void *ud, const void *p, size_t n) {
    tap_seen *t = ud;
    if (memcmp(p, t->want + t->seen, n) != 0) t->in_order = false;
    t->seen += n;
}

/* A writer whose threads cannot be had (the nth thread creation failing,
 * and every one after it, as at the system's limit) encodes, taps and
 * writes on the caller's thread: the object is whole and the tap saw every
 * byte in order.  With a tap it wants two threads; when only the second
 * fails, the first is stopped and joined before the writer goes on alone. */
Test(store_allocs, writing_without_threads, .disabled = !ALLOC_FAILURES) {
    int inline_runs = 0;
    for (int n = 1; n < 16; n++) {
        run r;
        run_init(&r, "threads", NDRIVES, n);
        rand_hex_id(r.vid, 16);
        r.len = 5 * K * BLOCK + 17;
        r.data = random_bytes(r.len, (uint64_t)n);
        tap_seen t = {.want = r.data, .in_order = true};
        data_writer *w = NULL;
        cr_assert_eq(data_writer_open(r.ds, r.vid, tap_check, &t, &w), 0);
        thread_arm(n);
        int rc = 0;
        for (size_t off = 0; off < r.len && rc == 0; off += 65536)
            rc = data_writer_write(w, r.data + off, r.len - off < 65536 ? r.len - off : 65536);
        if (rc == 0) rc = data_writer_finish(w);
        bool hit = thread_hit();
        thread_arm(0);
        cr_assert_eq(rc, 0, "thread %d failing: %d", n, rc);
        cr_assert_eq(data_writer_commit(w, &r.l), 0);
        cr_assert_eq(t.seen, r.len, "thread %d failing: the tap saw %zu of %zu bytes", n, t.seen, r.len);
        cr_assert(t.in_order, "thread %d failing: the tap saw other bytes", n);
        expect_whole(&r, &r.l, "written without threads");
        inline_runs += hit;
        run_free(&r);
        if (!hit) break;
    }
    cr_expect_eq(inline_runs, 2, "the first and the second thread each failed once");
}

/* Formatting a layout runs out of memory as that, not as a layout too long
 * for the buffer. */
Test(store_allocs, formatting_a_layout, .disabled = !ALLOC_FAILURES) {
    failing = FAIL_ALLOC_ALL;
    data_layout l = {.k = K, .m = M, .block = BLOCK};
    for (int i = 0; i < K + M; i++) snprintf(l.drive_ids[i], sizeof l.drive_ids[i], "%016x", 0x5a00 + i);
    char out[320];
    alloc_arm(1);
    int rc = data_layout_format(&l, out, sizeof out);
    bool hit = alloc_hit();
    alloc_arm(0);
    cr_assert(hit, "formatting allocates nothing any more: the test needs another failure");
    cr_expect_eq(rc, CAIRN_ENOMEM);
    cr_expect_eq(data_layout_format(&l, out, sizeof out), 0);
    cr_expect_eq(data_layout_format(&l, out, 20), CAIRN_EINVAL, "too long for the buffer");
}

#endif
