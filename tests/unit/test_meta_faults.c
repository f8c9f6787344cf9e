/*
 * test_meta_faults.c — every call of the metadata store under a failing
 * disk and under failing allocations.
 *
 * In the fault build (meson -Dfaults=true) SQLite's file calls go through
 * the fault VFS (src/meta/fault_vfs.c), so a test can make the nth open,
 * write, sync or delete of the database, its WAL or its journals fail.  Each
 * call that writes is run in a loop, SQLite-style: for n = 1, 2, ... a fresh
 * store is set up with nothing armed, reopened (fresh connections, WAL
 * checkpointed), the nth meta.* call made to fail (EIO and ENOSPC, each n
 * with both), the call run, and then, with nothing armed:
 *
 *   - the call returned its usual result, or EIO / ENOSPC / EDB: never a
 *     crash, and never a result that lies about the data (ENOTFOUND for a
 *     row that is there);
 *   - its effect is wholly there or wholly absent: there when it returned
 *     its usual result, absent on the live store when it returned an error
 *     (callers undo their side of the work on an error), and what the live
 *     store showed survives a reopen;
 *   - meta_check finds nothing, and the store still takes a write (no
 *     latched error).
 *
 * The loop stops at the first n the call no longer reaches, found from the
 * log: every injection logs "fault injected" (src/core/fault.c), and the
 * test points the log at a file of its own.  The read calls are looped the
 * same way: their only file call is the WAL open of a fresh reader
 * connection, and a failure there must come back as an error and leave the
 * reader usable.
 *
 * The same tables of cases run again (suite meta_allocs) with the nth
 * malloc, calloc or realloc of the process failing instead — SQLite's and
 * ours — through wrappers like test_faults.c's (not under ASan or TSan),
 * where CAIRN_ENOMEM is a clean result too.
 *
 * A few error returns no failing call reaches (a batch that cannot begin,
 * inline bytes gone from a damaged database) are checked in every build;
 * outside the fault build the file also checks that the layer is a no-op.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/core.h"
#include "meta/meta.h"

/* ---- error returns no disk failure reaches (every build) ----------------------------------- */

typedef struct {
    char dir[64];
    char path[128];
    meta_store *ms;
} plain_store;

static void plain_open(plain_store *p) {
    cr_assert_eq(core_init(), 0);
    strcpy(p->dir, "/tmp/cairn-test-metaf-XXXXXX");
    cr_assert_not_null(mkdtemp(p->dir));
    snprintf(p->path, sizeof p->path, "%s/meta.db", p->dir);
    meta_options o = {.readers = 1, .fsync = false, .busy_timeout_ms = 20};
    cr_assert_eq(meta_open(p->path, &o, &p->ms), 0);
}

static void plain_remove(plain_store *p) {
    meta_close(p->ms);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char f[160];
        snprintf(f, sizeof f, "%s%s", p->path, suffix[i]);
        unlink(f);
    }
    rmdir(p->dir);
}

static meta_object plain_obj(const char *key, const char *data, size_t len) {
    meta_object o;
    memset(&o, 0, sizeof o);
    strcpy(o.bucket, "b");
    strcpy(o.key, key);
    o.key_len = strlen(key);
    rand_hex_id(o.version_id, 16);
    o.size = (int64_t)len;
    strcpy(o.etag, "d41d8cd98f00b204e9800998ecf8427e");
    o.owner_id = 1;
    o.storage = data ? META_STORE_INLINE : META_STORE_FILE;
    o.data = (uint8_t *)data;
    o.data_len = data ? len : 0;
    return o;
}

static void plain_bucket(plain_store *p) {
    meta_bucket b = {.owner_id = 1};
    strcpy(b.name, "b");
    cr_assert_eq(meta_bucket_create(p->ms, &b, NULL), 0);
}

/* A batch that cannot even begin (another process holds the write lock)
 * reports its error on every key: DeleteObjects answers per key from them. */
Test(meta_errors, a_delete_batch_that_cannot_begin_fails_every_key) {
    plain_store p;
    plain_open(&p);
    plain_bucket(&p);
    meta_object a = plain_obj("a", NULL, 1), b = plain_obj("b", "xy", 2);
    cr_assert_eq(meta_object_put(p.ms, &a, NULL, NULL), 0);
    cr_assert_eq(meta_object_put(p.ms, &b, NULL, NULL), 0);
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(p.path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    meta_delete_item items[3] = {
        {.key = "a", .key_len = 1}, {.key = "b", .key_len = 1}, {.key = "absent", .key_len = 6}};
    cr_assert_eq(meta_object_delete_many(p.ms, "b", 0, items, 3), CAIRN_EBUSY);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(items[i].rc, CAIRN_EBUSY, "key %d reports %d: nothing was deleted", i, items[i].rc);
        cr_expect_eq(items[i].deleted.version_id[0], '\0');
    }
    /* The same holds for a job run's finish and next claim. */
    int finish_rc = 0;
    meta_job next;
    cr_assert_eq(meta_job_finish_claim(p.ms, 1, "w", "completed", 0, NULL, 0, 1000, &finish_rc, &next), CAIRN_EBUSY);
    cr_expect_eq(finish_rc, CAIRN_EBUSY);
    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    meta_object got;
    cr_assert_eq(meta_object_get(p.ms, "b", 0, "a", 1, false, &got), 0);
    meta_object_clear(&got);
    cr_assert_eq(meta_object_delete_many(p.ms, "b", 0, items, 3), 0);
    for (int i = 0; i < 3; i++) cr_expect_eq(items[i].rc, 0);
    for (int i = 0; i < 3; i++) meta_object_clear(&items[i].deleted);
    plain_remove(&p);
}

/* An inline object whose bytes are gone (a damaged database, or one edited
 * by hand) is an error when read with its bytes, never an empty body. */
Test(meta_errors, inline_object_without_its_bytes) {
    plain_store p;
    plain_open(&p);
    plain_bucket(&p);
    meta_object o = plain_obj("i", "bytes", 5);
    cr_assert_eq(meta_object_put(p.ms, &o, NULL, NULL), 0);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p.path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "DELETE FROM object_data", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    meta_object got;
    cr_assert_eq(meta_object_get(p.ms, "b", 0, "i", 1, true, &got), CAIRN_EDB);
    cr_assert_null(got.data);
    cr_assert_eq(meta_object_get(p.ms, "b", 0, "i", 1, false, &got), 0, "the row itself reads");
    meta_object_clear(&got);
    plain_remove(&p);
}

#if !CAIRN_FAULT_BUILD

Test(meta_faults, sites_are_no_ops_outside_the_fault_build) {
    for (int i = FAULT_META_OPEN; i <= FAULT_META_WAL; i++) cr_expect_eq(fault_inject((fault_site)i), 0);
}

#else

#include "fault_harness.h"

static int injected(void) { return injected_at(NULL); }

/* Makes the nth meta.* call fail with err (EIO or ENOSPC), or the nth allocation. */
static void arm(int n, int err) {
    if (failing != FAIL_IO) {
        alloc_arm(n);
        return;
    }
    cr_assert_eq(ftruncate(log_fd, 0), 0);
    char spec[96];
    snprintf(spec, sizeof spec, "sites=meta.*\nnth=%d\nerrno=%s", n, err == ENOSPC ? "ENOSPC" : "EIO");
    cr_assert_eq(fault_configure(spec), 0);
}

static void disarm(void) {
    if (failing != FAIL_IO) {
        alloc_arm(0);
        return;
    }
    cr_assert_eq(fault_configure(""), 0);
}

/* What failed, for messages. */
static const char *what(int err) {
    return failing == FAIL_ALLOC ? "no memory" : failing == FAIL_ALLOC_ALL ? "no memory from then on"
                                               : err == ENOSPC ? "ENOSPC" : "EIO";
}

/* ---- fixture ------------------------------------------------------------------------------- */

/* One run's store and what its setup made, for the op and the checks. */
typedef struct {
    char dir[64];
    char path[128];
    meta_store *ms;
    int64_t bucket_id, job_id, job2_id;
    meta_object obj;             /* what the op writes */
    char old_vid[33];            /* the version the op replaces or removes */
    meta_part parts[3];
    char part_vids[3][33];       /* parts whose rows the op moves to the trash */
    int nparts;
    meta_problem problem;
    meta_delete_item items[5];
    char keys[5][16];
    int heard;                   /* callbacks the op heard */
    int64_t count;               /* what the op reported (deleted rows...) */
    meta_object replaced;
    bool had_replaced;
    int finish_rc;
    int schema_from;             /* schema cases: the version before the op */
} ctx;

static meta_options store_options(void) {
    /* fsync on: commits sync the WAL, so syncs are sites too. */
    meta_options o = {.readers = 1, .fsync = true, .busy_timeout_ms = 5000};
    return o;
}

static void ctx_init(ctx *c) {
    memset(c, 0, sizeof *c);
    cr_assert_eq(core_init(), 0);
    log_capture();
    strcpy(c->dir, "/tmp/cairn-test-metaf-XXXXXX");
    cr_assert_not_null(mkdtemp(c->dir));
    snprintf(c->path, sizeof c->path, "%s/meta.db", c->dir);
}

static void ctx_open(ctx *c) {
    meta_options o = store_options();
    int rc = meta_open(c->path, &o, &c->ms);
    cr_assert_eq(rc, 0, "meta_open with nothing armed: %d", rc);
}

static void ctx_open_raw(ctx *c) {
    meta_options o = store_options();
    int rc = meta_open_raw(c->path, &o, &c->ms);
    cr_assert_eq(rc, 0, "meta_open_raw with nothing armed: %d", rc);
}

static void ctx_close(ctx *c) {
    meta_close(c->ms);
    c->ms = NULL;
}

/* A migrated, empty database made once per test process: each run starts
 * from a copy instead of running every migration (with its syncs) again. */
static char template_path[128];

static void copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert(in >= 0 && out >= 0, "copy %s to %s: %s", from, to, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) cr_assert_eq(write(out, buf, (size_t)n), n);
    cr_assert_eq(n, 0);
    close(in);
    close(out);
}

/* Opens a new, empty store at c->path. */
static void ctx_create(ctx *c) {
    if (!template_path[0]) {
        ctx t;
        ctx_init(&t);
        ctx_open(&t);
        ctx_close(&t); /* checkpoints the WAL into the file and removes it */
        snprintf(template_path, sizeof template_path, "%s", t.path);
    }
    copy_file(template_path, c->path);
    ctx_open(c);
}

/* Removes the template (suite fini). */
static void template_remove(void) {
    if (!template_path[0]) return;
    unlink(template_path);
    char *slash = strrchr(template_path, '/');
    *slash = '\0';
    rmdir(template_path);
    template_path[0] = '\0';
}

TestSuite(meta_faults, .fini = template_remove);
TestSuite(meta_allocs, .fini = template_remove);

static void ctx_remove(ctx *c) {
    ctx_close(c);
    meta_object_clear(&c->replaced);
    for (int i = 0; i < 5; i++) meta_object_clear(&c->items[i].deleted);
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", c->path, suffix[i]);
        unlink(p);
    }
    rmdir(c->dir);
}

/* A database that will not switch to WAL (as SQLite answers on a filesystem
 * without shared memory: the mode left as it was) is refused, not run in
 * another journal mode, where readers would block the writer. */
Test(meta_faults, a_database_refusing_wal_is_not_opened) {
    ctx c;
    ctx_init(&c);
    cr_assert_eq(ftruncate(log_fd, 0), 0);
    cr_assert_eq(fault_configure("sites=meta.wal\nnth=1"), 0);
    meta_options o = store_options();
    cr_expect_eq(meta_open(c.path, &o, &c.ms), CAIRN_EDB);
    cr_expect_null(c.ms);
    disarm();
    cr_expect_eq(injected_at("meta.wal"), 1);
    cr_expect_eq(logged_times("meta: database refused WAL journal mode"), 1);
    /* Nothing lasting: the next open switches and migrates as usual. */
    ctx_open(&c);
    int v = -1;
    cr_expect_eq(meta_schema_version(c.ms, &v), 0);
    cr_expect_eq(v, meta_schema_latest());
    ctx_remove(&c);
}

/* ---- building state ----------------------------------------------------------------------- */

#define LAYOUT                                                                                     \
    "4+2:4096:0123456789abcdef,1123456789abcdef,2123456789abcdef,3123456789abcdef,4123456789abcdef," \
    "5123456789abcdef"
#define PROBE_NODE "fffffffffffffff0"

static int64_t mk_bucket(meta_store *ms, const char *name) {
    meta_bucket b = {.owner_id = 1, .created_ms = 1000};
    strcpy(b.name, name);
    strcpy(b.region, "us-east-1");
    cr_assert_eq(meta_bucket_create(ms, &b, NULL), 0, "create bucket %s", name);
    return b.id;
}

static meta_object mk_obj(const char *bucket, int64_t bucket_id, const char *key, int64_t size) {
    meta_object o;
    memset(&o, 0, sizeof o);
    strcpy(o.bucket, bucket);
    o.bucket_id = bucket_id;
    strcpy(o.key, key);
    o.key_len = strlen(key);
    rand_hex_id(o.version_id, 16);
    o.size = size;
    strcpy(o.etag, "d41d8cd98f00b204e9800998ecf8427e");
    o.mtime_ms = 1700000000000;
    o.owner_id = 1;
    o.storage = META_STORE_FILE;
    strcpy(o.layout, LAYOUT);
    o.headers_json = "{\"content-type\":\"text/plain\"}";
    return o;
}

static meta_object mk_inline(const char *bucket, int64_t bucket_id, const char *key, const void *data, size_t len) {
    meta_object o = mk_obj(bucket, bucket_id, key, (int64_t)len);
    o.storage = META_STORE_INLINE;
    o.layout[0] = '\0';
    o.data = (uint8_t *)data;
    o.data_len = len;
    return o;
}

static void put(meta_store *ms, const meta_object *o) {
    cr_assert_eq(meta_object_put(ms, o, NULL, NULL), 0, "put %s", o->key);
}

static void mk_upload(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, const char *upload_id) {
    meta_upload u = {.bucket_id = bucket_id, .owner_id = 1, .initiated_ms = 1000};
    strcpy(u.upload_id, upload_id);
    strcpy(u.bucket, bucket);
    strcpy(u.key, key);
    u.key_len = strlen(key);
    u.headers_json = (char *)"{\"content-type\":\"a/b\"}";
    cr_assert_eq(meta_upload_create(ms, &u), 0, "create upload %s", upload_id);
}

static meta_part mk_part(int number, int64_t size) {
    meta_part p = {.part_number = number, .size = size, .mtime_ms = 1000};
    rand_hex_id(p.version_id, 16);
    rand_hex_id(p.etag, 16);
    strcpy(p.layout, LAYOUT);
    return p;
}

static void put_part(meta_store *ms, const char *upload_id, const meta_part *p) {
    meta_part old;
    bool had = true;
    cr_assert_eq(meta_part_put(ms, upload_id, p, &old, &had), 0, "part %d of %s", p->part_number, upload_id);
}

static void count_part(void *ud, const meta_part *p) {
    (void)p;
    (*(int *)ud)++;
}

/* A multipart object at key made of n parts (upload upload_id); their
 * version ids go to c->part_vids, the object's to c->old_vid. */
static void mk_multipart(ctx *c, const char *key, const char *upload_id, int n) {
    mk_upload(c->ms, "b", c->bucket_id, key, upload_id);
    meta_part ps[3];
    int64_t size = 0;
    for (int i = 0; i < n; i++) {
        ps[i] = mk_part(i + 1, 10 + i);
        size += ps[i].size;
        put_part(c->ms, upload_id, &ps[i]);
        strcpy(c->part_vids[i], ps[i].version_id);
    }
    c->nparts = n;
    meta_object o = mk_obj("b", c->bucket_id, key, size);
    snprintf(o.layout, sizeof o.layout, "mp:%d", n);
    strcpy(o.etag, "0123456789abcdef0123456789abcdef-2");
    int unused = 0;
    cr_assert_eq(meta_upload_complete(c->ms, upload_id, &o, ps, n, NULL, NULL, count_part, &unused), 0);
    strcpy(c->old_vid, o.version_id);
}

/* ---- reading state back --------------------------------------------------------------------- */

/* The current version of key in bucket "b" ("" when absent). */
static void vid_of(ctx *c, const char *key, char out[33]) {
    meta_object o;
    int rc = meta_object_get(c->ms, "b", 0, key, strlen(key), false, &o);
    cr_assert(rc == 0 || rc == CAIRN_ENOTFOUND, "object get: %d", rc);
    strcpy(out, rc == 0 ? o.version_id : "");
    meta_object_clear(&o);
}

static bool has_version(ctx *c, const char *key, const char *vid) {
    char v[33];
    vid_of(c, key, v);
    return !strcmp(v, vid);
}

static int count_trash_cb(void *ud, const meta_trash_entry *e) {
    (void)e;
    (*(int *)ud)++;
    return 0;
}

static int trash_count(ctx *c) {
    int n = 0;
    cr_assert_eq(meta_trash_list(c->ms, 1000, count_trash_cb, &n), 0);
    return n;
}

typedef struct {
    const char *vid;
    bool found;
} find_vid;

static int find_trash_cb(void *ud, const meta_trash_entry *e) {
    find_vid *f = ud;
    if (!strcmp(e->version_id, f->vid)) f->found = true;
    return 0;
}

static bool in_trash(ctx *c, const char *vid) {
    find_vid f = {vid, false};
    cr_assert_eq(meta_trash_list(c->ms, 1000, find_trash_cb, &f), 0);
    return f.found;
}

/* Whether every one of c->part_vids is in the trash (1), none is (0), or some (-1). */
static int parts_in_trash(ctx *c) {
    int in = 0;
    for (int i = 0; i < c->nparts; i++) in += in_trash(c, c->part_vids[i]);
    return in == c->nparts ? 1 : in == 0 ? 0 : -1;
}

static int count_parts_cb(void *ud, const meta_part *p) {
    (void)p;
    (*(int *)ud)++;
    return 0;
}

static int object_parts(ctx *c, const char *vid) {
    int n = 0;
    cr_assert_eq(meta_object_parts(c->ms, vid, count_parts_cb, &n), 0);
    return n;
}

/* Parts of an upload, or -1 when the upload is gone. */
static int upload_parts(ctx *c, const char *upload_id) {
    meta_upload u;
    int rc = meta_upload_get(c->ms, upload_id, &u);
    meta_upload_clear(&u);
    cr_assert(rc == 0 || rc == CAIRN_ENOTFOUND, "upload get: %d", rc);
    if (rc == CAIRN_ENOTFOUND) return -1;
    int n = 0;
    cr_assert_eq(meta_part_list(c->ms, upload_id, 0, 100, count_parts_cb, &n, NULL), 0);
    return n;
}

static int count_jobs_cb(void *ud, const meta_job *j) {
    (void)j;
    (*(int *)ud)++;
    return 0;
}

static int job_count(ctx *c, const char *state) {
    int n = 0;
    cr_assert_eq(meta_job_list(c->ms, state, "", 1000, count_jobs_cb, &n), 0);
    return n;
}

static meta_job job_get(ctx *c, int64_t id) {
    meta_job j;
    cr_assert_eq(meta_job_get(c->ms, id, &j), 0, "job %lld", (long long)id);
    meta_job_clear(&j);
    return j;
}

static bool job_is(ctx *c, int64_t id, const char *state, int attempts) {
    meta_job j = job_get(c, id);
    return !strcmp(j.state, state) && j.attempts == attempts;
}

static int64_t enqueue(ctx *c, const char *kind, const char *unique) {
    meta_job j = {.max_attempts = 3};
    strcpy(j.kind, kind);
    if (unique) strcpy(j.unique_key, unique);
    int64_t id = 0;
    cr_assert_eq(meta_job_enqueue(c->ms, &j, &id), 0);
    return id;
}

static int keep_problem_cb(void *ud, const meta_problem *p) {
    meta_problem *out = ud;
    if (!out->id[0]) *out = *p;
    return 0;
}

static int64_t problems(ctx *c) {
    meta_problem first = {0};
    int64_t total = -1;
    int rc = meta_check(c->ms, 100, keep_problem_cb, &first, &total);
    cr_assert_eq(rc, 0, "meta_check: %d", rc);
    return total;
}

/* ---- the loop -------------------------------------------------------------------------------- */

enum { S_BAD = -1, S_OLD = 0, S_NEW = 1, S_MID = 2 /* between: allowed only after an error */ };

enum {
    F_NO_STORE = 1,  /* the op opens the store itself (setup leaves it closed) */
    F_SCHEMA = 2,    /* the op migrates: reopened raw, checked only at the latest version */
    F_PROBLEM = 4,   /* setup planted a problem (the state counts it): no meta_check */
    F_SAMPLE = 8,    /* thousands of calls: n sampled geometrically after the first 16 */
    F_KEEP_WAL = 16, /* no reopen between setup and op: the op starts with the setup's WAL */
    F_SAME = 32,     /* old and new state are the same (the op changes nothing a reader sees) */
};

typedef struct {
    const char *name;
    void (*setup)(ctx *c);       /* builds the state, nothing armed; may be NULL */
    int (*op)(ctx *c);           /* the call under test */
    int (*state)(ctx *c, int rc); /* S_OLD, S_NEW, S_MID or S_BAD, read with nothing armed */
    int clean_rc;                /* what op returns when nothing fails */
    unsigned flags;
} fault_case;

static bool is_error(int rc) {
    return rc == CAIRN_EIO || rc == CAIRN_ENOSPC || rc == CAIRN_EDB || (failing != FAIL_IO && rc == CAIRN_ENOMEM);
}

static void check_state(const fault_case *fc, int n, int err, int rc, int s, const char *when) {
    const char *e = what(err);
    cr_assert_neq(s, S_BAD, "%s, call %d failing with %s: rc %d and the %s state is neither old nor new", fc->name, n,
                  e, rc, when);
    if (rc == fc->clean_rc)
        cr_assert_eq(s, S_NEW, "%s, call %d failing with %s: reported %d (success) but the %s state is %s", fc->name,
                     n, e, rc, when, s == S_OLD ? "the old one" : "partial");
    /* A caller that hears an error undoes its side of the work (the S3
     * layer removes the new version's shards), so on the live store an
     * error must mean nothing happened.  (After a reopen the WAL may hold
     * a commit whose sync failed: there either state is allowed; and a
     * migration commits step by step.) */
    else if (!strcmp(when, "live") && !(fc->flags & (F_SAME | F_SCHEMA)))
        cr_assert_neq(s, S_NEW, "%s, call %d failing with %s: reported %d (%s) but it happened", fc->name, n, e, rc,
                      cairn_strerror(rc));
}

static void check_consistent(const fault_case *fc, ctx *c, int n, int err, bool at_latest) {
    if ((fc->flags & F_PROBLEM) || !at_latest) return;
    int64_t p = problems(c);
    cr_assert_eq(p, 0, "%s, call %d failing with %s: meta_check finds %lld problems", fc->name, n, what(err),
                 (long long)p);
    /* A write after the failure works, and commits: a reader sees it. */
    char url[64];
    snprintf(url, sizeof url, "http://probe/%d", n);
    int rc = meta_node_upsert(c->ms, PROBE_NODE, url);
    cr_assert_eq(rc, 0, "%s, call %d failing with %s: the next write fails too (%d): a latched error", fc->name, n,
                 what(err), rc);
    meta_node probe;
    cr_assert_eq(meta_node_get(c->ms, PROBE_NODE, &probe), 0, "%s, call %d failing with %s: the next write did not "
                 "commit", fc->name, n, what(err));
    cr_assert_str_eq(probe.url, url, "%s, call %d failing with %s: the next write did not commit", fc->name, n,
                     what(err));
}

static bool at_latest(ctx *c) {
    int v = -1;
    cr_assert_eq(meta_schema_version(c->ms, &v), 0);
    return v == meta_schema_latest();
}

static void reopen(const fault_case *fc, ctx *c) {
    ctx_close(c);
    if (fc->flags & F_SCHEMA) ctx_open_raw(c);
    else ctx_open(c);
}

/* The next call to fail: every one, except past the first few hundred
 * allocations, or with F_SAMPLE past the first 16 file calls, where a
 * geometric sample keeps the loop short. */
static int next_n(const fault_case *fc, int n) {
    if (failing != FAIL_IO) return n >= 256 ? n + n / 8 : n + 1;
    return (fc->flags & F_SAMPLE) && n >= 16 ? n + n / 6 : n + 1;
}

/* Runs fc with its nth call failing for n = 1, 2, ... (errno alternating,
 * starting with EIO when parity is 0) until a run does not reach call n;
 * returns how many runs reached their fault. */
static int run_case(const fault_case *fc, int parity) {
    int runs = 0;
    for (int n = 1; n < 100000; n = next_n(fc, n)) {
        int err = (n + parity) % 2 ? EIO : ENOSPC;
        ctx c;
        ctx_init(&c);
        if (!(fc->flags & F_NO_STORE)) {
            ctx_create(&c);
            c.bucket_id = mk_bucket(c.ms, "b");
        }
        if (fc->setup) fc->setup(&c);
        /* Fresh connections and an empty WAL, so the op's own file calls
         * are counted.  (Not for allocations: preparing every statement
         * again would make most of the op's allocations SQLite's parser's;
         * the reads test fails those.) */
        if (c.ms && !(fc->flags & F_KEEP_WAL) && failing == FAIL_IO) reopen(fc, &c);
        arm(n, err);
        int rc = fc->op(&c);
        int hits = injected();
        disarm();
        cr_assert(rc == fc->clean_rc || is_error(rc), "%s, call %d failing with %s: returned %d (%s)", fc->name, n,
                  what(err), rc, cairn_strerror(rc));
        if (!hits) cr_assert_eq(rc, fc->clean_rc, "%s with nothing failing: %d", fc->name, rc);
        if (!c.ms) {
            if (fc->flags & F_SCHEMA) ctx_open_raw(&c);
            else ctx_open(&c);
        }
        int live = fc->state(&c, rc);
        check_state(fc, n, err, rc, live, "live");
        check_consistent(fc, &c, n, err, !(fc->flags & F_SCHEMA) || at_latest(&c));
        reopen(fc, &c);
        int after = fc->state(&c, rc);
        check_state(fc, n, err, rc, after, "reopened");
        if (live == S_NEW)
            cr_assert_eq(after, S_NEW, "%s, call %d failing: what the live store showed was lost in a reopen", fc->name,
                         n);
        check_consistent(fc, &c, n, err, !(fc->flags & F_SCHEMA) || at_latest(&c));
        ctx_remove(&c);
        if (!hits) break;
        runs++;
    }
    return runs;
}

static void run_cases(const fault_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int runs = run_case(&cases[i], 0);
        if (failing == FAIL_IO) runs += run_case(&cases[i], 1);
        cr_expect_gt(runs, 0, "%s never reached a fault", cases[i].name);
        cr_log_info("%s: %d runs", cases[i].name, runs);
    }
}

/* Runs a table (or the reads) with allocations failing, one and then all
 * from the nth on. */
static void run_allocs(void (*run)(const fault_case *, size_t), const fault_case *cases, size_t n) {
    failing = FAIL_ALLOC;
    run(cases, n);
    failing = FAIL_ALLOC_ALL;
    run(cases, n);
}

/* The I/O test of a table of cases, and (where malloc can be wrapped) its
 * allocation test. */
#define CASE_TESTS(table, ...)                                                                    \
    Test(meta_faults, table, ##__VA_ARGS__) { run_cases(table, sizeof table / sizeof table[0]); } \
    Test(meta_allocs, table, ##__VA_ARGS__, .disabled = !ALLOC_FAILURES) {                         \
        run_allocs(run_cases, table, sizeof table / sizeof table[0]);                             \
    }

/* ---- objects ------------------------------------------------------------------------------ */

static int op_put(ctx *c) {
    return meta_object_put(c->ms, &c->obj, &c->replaced, &c->had_replaced);
}

static void setup_put_new(ctx *c) { c->obj = mk_obj("b", c->bucket_id, "k", 100); }

static int state_put_new(ctx *c, int rc) {
    if (rc == 0) cr_assert_not(c->had_replaced);
    char v[33];
    vid_of(c, "k", v);
    return !v[0] ? S_OLD : !strcmp(v, c->obj.version_id) ? S_NEW : S_BAD;
}

/* Inline bytes large enough (past SQLite's 2 MB page cache) that the
 * statement spills pages to the WAL before the commit: the failure can hit
 * inside the transaction, not only at its commit. */
#define BIG (3u << 20)
static uint8_t big[BIG];

static void setup_put_big_inline(ctx *c) {
    for (size_t i = 0; i < BIG; i++) big[i] = (uint8_t)(i * 131 + (i >> 12));
    meta_object old = mk_inline("b", c->bucket_id, "k", "old bytes", 9);
    put(c->ms, &old);
    strcpy(c->old_vid, old.version_id);
    c->obj = mk_inline("b", c->bucket_id, "k", big, BIG);
}

static int state_put_big_inline(ctx *c, int rc) {
    if (rc == 0) cr_assert(c->had_replaced && !strcmp(c->replaced.version_id, c->old_vid));
    if (rc != 0) cr_assert_not(c->had_replaced, "a failed put reported a replaced version");
    meta_object o;
    cr_assert_eq(meta_object_get(c->ms, "b", 0, "k", 1, true, &o), 0);
    int s = S_BAD;
    if (!strcmp(o.version_id, c->old_vid) && o.data_len == 9 && !memcmp(o.data, "old bytes", 9)) s = S_OLD;
    if (!strcmp(o.version_id, c->obj.version_id) && o.data_len == BIG && !memcmp(o.data, big, BIG)) s = S_NEW;
    meta_object_clear(&o);
    return s;
}

static void setup_put_over_multipart(ctx *c) {
    mk_multipart(c, "k", "up-old", 2);
    c->obj = mk_obj("b", c->bucket_id, "k", 5);
}

/* A multipart version replaced or deleted: its part rows and the trash move together. */
static int state_multipart_gone(ctx *c, const char *new_vid) {
    bool old = has_version(c, "k", c->old_vid), now = has_version(c, "k", new_vid);
    int parts = object_parts(c, c->old_vid), trash = parts_in_trash(c);
    if (old && parts == c->nparts && trash == 0) return S_OLD;
    if (now && parts == 0 && trash == 1) return S_NEW;
    return S_BAD;
}

static int state_put_over_multipart(ctx *c, int rc) {
    if (rc == 0) cr_assert(c->had_replaced && !strcmp(c->replaced.version_id, c->old_vid));
    return state_multipart_gone(c, c->obj.version_id);
}

static int op_delete(ctx *c) {
    int rc = meta_object_delete(c->ms, "b", c->bucket_id, "k", 1, &c->replaced);
    c->had_replaced = rc == 0;
    return rc;
}

static void setup_delete_file(ctx *c) {
    meta_object o = mk_obj("b", c->bucket_id, "k", 7);
    put(c->ms, &o);
    strcpy(c->old_vid, o.version_id);
}

static void setup_delete_inline(ctx *c) {
    meta_object o = mk_inline("b", c->bucket_id, "k", "inline", 6);
    put(c->ms, &o);
    strcpy(c->old_vid, o.version_id);
}

static int state_deleted(ctx *c, int rc) {
    if (rc == 0) cr_assert_str_eq(c->replaced.version_id, c->old_vid, "delete reports what it removed");
    char v[33];
    vid_of(c, "k", v);
    return !strcmp(v, c->old_vid) ? S_OLD : !v[0] ? S_NEW : S_BAD;
}

static void setup_delete_multipart(ctx *c) { mk_multipart(c, "k", "up-old", 3); }

static int state_delete_multipart(ctx *c, int rc) {
    if (rc == 0) cr_assert_str_eq(c->replaced.version_id, c->old_vid);
    return state_multipart_gone(c, "");
}

static void setup_delete_many(ctx *c) {
    const char *keys[5] = {"a", "b-inline", "k", "c", "absent"};
    for (int i = 0; i < 5; i++) {
        strcpy(c->keys[i], keys[i]);
        c->items[i].key = c->keys[i];
        c->items[i].key_len = strlen(keys[i]);
    }
    meta_object a = mk_obj("b", c->bucket_id, "a", 1), cc = mk_obj("b", c->bucket_id, "c", 3);
    meta_object bi = mk_inline("b", c->bucket_id, "b-inline", "xy", 2);
    put(c->ms, &a);
    put(c->ms, &bi);
    put(c->ms, &cc);
    mk_multipart(c, "k", "up-old", 2);
}

static int op_delete_many(ctx *c) { return meta_object_delete_many(c->ms, "b", c->bucket_id, c->items, 5); }

/* Each key's outcome is what happened to it (deleted when its rc is 0,
 * there when it is an error; all there when the batch failed), and the
 * multipart object's parts moved to the trash with it or not at all. */
static int state_delete_many(ctx *c, int rc) {
    bool ok = true;
    for (int i = 0; i < 5; i++) {
        if (rc != 0)
            cr_assert(c->items[i].rc != 0 && !c->items[i].deleted.version_id[0], "item %d of a failed batch", i);
        if (i == 4) {
            ok &= c->items[i].rc != 0 || !c->items[i].deleted.version_id[0];
            continue;
        }
        char v[33];
        vid_of(c, c->keys[i], v);
        ok &= (v[0] != 0) == (c->items[i].rc != 0);
    }
    bool mp_gone = c->items[2].rc == 0;
    int parts = object_parts(c, c->old_vid), trash = parts_in_trash(c);
    ok &= mp_gone ? parts == 0 && trash == 1 : parts == 2 && trash == 0;
    if (!ok)
        cr_log_error("rc %d; items a %d, b-inline %d, k %d, c %d; parts of k %d, in the trash %d", rc, c->items[0].rc,
                     c->items[1].rc, c->items[2].rc, c->items[3].rc, parts, trash);
    return !ok ? S_BAD : rc == 0 ? S_NEW : S_OLD;
}

static const fault_case object_writes[] = {
    {"put a new object", setup_put_new, op_put, state_put_new, 0, 0},
    {"put over a multipart object", setup_put_over_multipart, op_put, state_put_over_multipart, 0, 0},
    {"delete a file object", setup_delete_file, op_delete, state_deleted, 0, 0},
    {"delete an inline object", setup_delete_inline, op_delete, state_deleted, 0, 0},
    {"delete a multipart object", setup_delete_multipart, op_delete, state_delete_multipart, 0, 0},
    {"delete many", setup_delete_many, op_delete_many, state_delete_many, 0, 0}
};
CASE_TESTS(object_writes, .timeout = 600)

/* Deleting big inline bytes dirties every page they held (this SQLite
 * overwrites freed pages: secure_delete), so the batch spills to the WAL in
 * the middle of its second key. */
static void setup_delete_many_big(ctx *c) {
    setup_put_big_inline(c);
    put(c->ms, &c->obj);
    const char *keys[3] = {"a", "k", "c"};
    for (int i = 0; i < 3; i++) {
        strcpy(c->keys[i], keys[i]);
        c->items[i].key = c->keys[i];
        c->items[i].key_len = 1;
    }
    meta_object a = mk_obj("b", c->bucket_id, "a", 1), cc = mk_obj("b", c->bucket_id, "c", 3);
    put(c->ms, &a);
    put(c->ms, &cc);
}

static int op_delete_many_big(ctx *c) { return meta_object_delete_many(c->ms, "b", c->bucket_id, c->items, 3); }

/* Each key's outcome must be what happened to it: deleted when its rc is 0,
 * there when it is an error (and all there when the batch failed). */
static int state_delete_many_big(ctx *c, int rc) {
    bool ok = true;
    char outcome[64] = "";
    for (int i = 0; i < 3; i++) {
        char v[33];
        vid_of(c, c->keys[i], v);
        bool there = v[0] != 0;
        if (rc != 0)
            cr_assert(c->items[i].rc != 0 && !c->items[i].deleted.version_id[0], "item %d of a failed batch", i);
        ok &= there == (c->items[i].rc != 0);
        snprintf(outcome + strlen(outcome), sizeof outcome - strlen(outcome), " %s:%d:%s", c->keys[i], c->items[i].rc,
                 there ? "there" : "gone");
    }
    if (!ok) cr_log_error("rc %d, items (key:rc:row)%s", rc, outcome);
    return !ok ? S_BAD : rc == 0 ? S_NEW : S_OLD;
}

static const fault_case writes_that_spill_before_their_commit[] = {
    {"put big inline bytes over inline bytes", setup_put_big_inline, op_put, state_put_big_inline, 0, F_SAMPLE},
    {"delete many with big inline bytes", setup_delete_many_big, op_delete_many_big, state_delete_many_big, 0,
     F_SAMPLE}
};
CASE_TESTS(writes_that_spill_before_their_commit, .timeout = 600)

/* ---- a group commit of several puts ---------------------------------------------------- */

/*
 * Concurrent puts share one transaction, each in its own savepoint
 * (meta_object_put).  An I/O error inside a statement makes SQLite roll the
 * whole transaction back, not just the savepoint: the puts of the batch
 * must then all fail, and none may run on outside the transaction.  To get
 * two big puts into one batch, another connection holds the write lock
 * while a first put (to a bucket that does not exist: no file call) leads
 * a batch of its own and waits for the lock; the two big puts queue behind
 * it and are let go together.
 */
typedef struct {
    meta_store *ms;
    meta_object obj;
    int rc;
    _Atomic pid_t tid;
} putter;

static void *putter_main(void *arg) {
    putter *p = arg;
    atomic_store(&p->tid, (pid_t)syscall(SYS_gettid));
    p->rc = meta_object_put(p->ms, &p->obj, NULL, NULL);
    return NULL;
}

/* Waits until the putter's thread sleeps: the leader in SQLite's busy wait,
 * the others queued for the group commit (nothing else blocks them). */
static void wait_asleep(putter *p) {
    int64_t deadline = time_mono_ns() + 10 * 1000000000LL;
    for (;;) {
        pid_t tid = atomic_load(&p->tid);
        if (tid) {
            char path[64], stat[256] = {0};
            snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
            FILE *f = fopen(path, "r");
            if (f) {
                size_t got = fread(stat, 1, sizeof stat - 1, f);
                fclose(f);
                const char *close_paren = got ? strrchr(stat, ')') : NULL;
                if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'S') return;
            }
        }
        cr_assert_lt(time_mono_ns(), deadline, "a put never blocked");
        sched_yield();
    }
}

static int run_batch_case(int n, int err) {
    ctx c;
    ctx_init(&c);
    ctx_create(&c);
    c.bucket_id = mk_bucket(c.ms, "b");
    setup_put_big_inline(&c); /* fills big[] */
    putter p[3];
    memset(p, 0, sizeof p);
    for (int i = 0; i < 3; i++) p[i].ms = c.ms;
    p[0].obj = mk_obj("nobucket", 0, "a", 1);
    p[1].obj = mk_inline("b", c.bucket_id, "x", big, BIG);
    p[2].obj = mk_inline("b", c.bucket_id, "y", big, BIG / 2);
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(c.path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, putter_main, &p[i]), 0);
        wait_asleep(&p[i]);
    }
    arm(n, err);
    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    int hits = injected();
    disarm();
    sqlite3_close(other);
    cr_assert_eq(p[0].rc, CAIRN_ENOTFOUND);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < 3; i++) {
            cr_assert(p[i].rc == 0 || is_error(p[i].rc), "put %d, call %d failing: %d", i, n, p[i].rc);
            if (!hits) cr_assert_eq(p[i].rc, 0);
            bool there = has_version(&c, p[i].obj.key, p[i].obj.version_id);
            if (p[i].rc == 0)
                cr_assert(there, "put %d, call %d failing with %s: acknowledged, not there%s", i, n,
                          err == ENOSPC ? "ENOSPC" : "EIO", pass ? " after a reopen" : "");
            else if (pass == 0)
                cr_assert_not(there, "put %d, call %d failing with %s: reported %d (%s), yet it happened", i, n,
                              err == ENOSPC ? "ENOSPC" : "EIO", p[i].rc, cairn_strerror(p[i].rc));
        }
        cr_assert_eq(problems(&c), 0);
        cr_assert_eq(meta_node_upsert(c.ms, PROBE_NODE, "http://probe"), 0, "a latched error");
        ctx_close(&c);
        ctx_open(&c);
    }
    ctx_remove(&c);
    return hits;
}

Test(meta_faults, a_failed_group_commit_commits_none_of_its_puts, .timeout = 600) {
    int runs = 0;
    for (int parity = 0; parity < 2; parity++)
        for (int n = 1; n < 100000; n = n >= 16 ? n + n / 6 : n + 1) {
            if (!run_batch_case(n, (n + parity) % 2 ? EIO : ENOSPC)) break;
            runs++;
        }
    cr_expect_gt(runs, 0);
    cr_log_info("batch of two big puts: %d runs", runs);
}

/* ---- buckets, users and access keys ------------------------------------------------------- */

static int op_bucket_create(ctx *c) {
    meta_bucket b = {.owner_id = 7, .created_ms = 1000};
    strcpy(b.name, "new");
    int64_t owner = 0;
    int rc = meta_bucket_create(c->ms, &b, &owner);
    c->count = b.id;
    return rc;
}

static int state_bucket_create(ctx *c, int rc) {
    meta_bucket b;
    int got = meta_bucket_get(c->ms, "new", &b);
    cr_assert(got == 0 || got == CAIRN_ENOTFOUND);
    if (got == 0 && rc == 0) cr_assert_eq(b.id, c->count, "the id returned is the bucket's");
    return got == CAIRN_ENOTFOUND ? S_OLD : b.owner_id == 7 ? S_NEW : S_BAD;
}

static void setup_bucket_delete(ctx *c) {
    /* Deleting a bucket aborts its uploads: their parts go to the trash. */
    mk_upload(c->ms, "b", c->bucket_id, "k", "up");
    for (int i = 0; i < 2; i++) {
        meta_part p = mk_part(i + 1, 5);
        put_part(c->ms, "up", &p);
        strcpy(c->part_vids[i], p.version_id);
    }
    c->nparts = 2;
}

static int op_bucket_delete(ctx *c) { return meta_bucket_delete(c->ms, "b", c->bucket_id); }

static int state_bucket_delete(ctx *c, int rc) {
    (void)rc;
    meta_bucket b;
    int got = meta_bucket_get(c->ms, "b", &b);
    int parts = upload_parts(c, "up"), trash = parts_in_trash(c);
    if (got == 0 && parts == 2 && trash == 0) return S_OLD;
    if (got == CAIRN_ENOTFOUND && parts == -1 && trash == 1) return S_NEW;
    return S_BAD;
}

static int op_bucket_set_public(ctx *c) { return meta_bucket_set_public(c->ms, "b", true); }

static int state_bucket_public(ctx *c, int rc) {
    (void)rc;
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(c->ms, "b", &b), 0);
    return b.public_read ? S_NEW : S_OLD;
}

static int op_user_create(ctx *c) {
    meta_user u = {0};
    strcpy(u.name, "alice");
    strcpy(u.display_name, "Alice");
    int rc = meta_user_create(c->ms, &u);
    c->count = u.id;
    return rc;
}

static int state_user(ctx *c, const char *name, bool root) {
    meta_user u;
    int rc = meta_user_get_by_name(c->ms, name, &u);
    cr_assert(rc == 0 || rc == CAIRN_ENOTFOUND, "user get: %d", rc);
    return rc == 0 && u.is_root == root;
}

static int state_user_create(ctx *c, int rc) {
    if (rc == 0) {
        meta_user u;
        cr_assert_eq(meta_user_get(c->ms, c->count, &u), 0, "the id returned is the user's");
    }
    return state_user(c, "alice", false) ? S_NEW : S_OLD;
}

static int op_ensure_root(ctx *c) {
    meta_user u;
    return meta_user_ensure_root(c->ms, "root", &u);
}

static int state_root_created(ctx *c, int rc) {
    (void)rc;
    return state_user(c, "root", true) ? S_NEW : S_OLD;
}

static void setup_root_admin(ctx *c) {
    meta_user u;
    cr_assert_eq(meta_user_ensure_root(c->ms, "admin", &u), 0);
}

static int state_root_renamed(ctx *c, int rc) {
    (void)rc;
    bool now = state_user(c, "root", true), before = state_user(c, "admin", true);
    return now && !before ? S_NEW : before && !now ? S_OLD : S_BAD;
}

static void setup_user(ctx *c) {
    meta_user u = {0};
    strcpy(u.name, "alice");
    cr_assert_eq(meta_user_create(c->ms, &u), 0);
    c->count = u.id;
}

static int op_key_create(ctx *c) {
    meta_key k = {.user_id = c->count, .active = true};
    strcpy(k.access_key, "AKIDEXAMPLE");
    strcpy(k.sealed_secret, "sealed");
    return meta_key_create(c->ms, &k);
}

static int state_key(ctx *c, int rc) {
    (void)rc;
    meta_key k;
    int got = meta_key_get(c->ms, "AKIDEXAMPLE", &k);
    cr_assert(got == 0 || got == CAIRN_ENOTFOUND);
    return got == CAIRN_ENOTFOUND ? S_OLD : k.active && k.user_id == c->count ? S_NEW : S_BAD;
}

static void setup_key(ctx *c) {
    setup_user(c);
    cr_assert_eq(op_key_create(c), 0);
}

static int op_key_deactivate(ctx *c) { return meta_key_set_active(c->ms, "AKIDEXAMPLE", false); }

static int state_key_inactive(ctx *c, int rc) {
    (void)rc;
    meta_key k;
    cr_assert_eq(meta_key_get(c->ms, "AKIDEXAMPLE", &k), 0);
    return k.active ? S_OLD : S_NEW;
}

static const fault_case bucket_user_and_key_writes[] = {
    {"create a bucket", NULL, op_bucket_create, state_bucket_create, 0, 0},
    {"delete a bucket with an upload", setup_bucket_delete, op_bucket_delete, state_bucket_delete, 0, 0},
    {"make a bucket public", NULL, op_bucket_set_public, state_bucket_public, 0, 0},
    {"create a user", NULL, op_user_create, state_user_create, 0, 0},
    {"create the root user", NULL, op_ensure_root, state_root_created, 0, 0},
    {"rename the root user", setup_root_admin, op_ensure_root, state_root_renamed, 0, 0},
    {"create an access key", setup_user, op_key_create, state_key, 0, 0},
    {"revoke an access key", setup_key, op_key_deactivate, state_key_inactive, 0, 0}
};
CASE_TESTS(bucket_user_and_key_writes, .timeout = 600)

/* ---- multipart uploads -------------------------------------------------------------------- */

static int op_upload_create(ctx *c) {
    meta_upload u = {.bucket_id = c->bucket_id, .owner_id = 1, .initiated_ms = 1000};
    strcpy(u.upload_id, "up");
    strcpy(u.bucket, "b");
    strcpy(u.key, "k");
    u.key_len = 1;
    return meta_upload_create(c->ms, &u);
}

static int state_upload_create(ctx *c, int rc) {
    (void)rc;
    int parts = upload_parts(c, "up");
    return parts == -1 ? S_OLD : parts == 0 ? S_NEW : S_BAD;
}

static void setup_upload(ctx *c) {
    mk_upload(c->ms, "b", c->bucket_id, "k", "up");
    c->parts[0] = mk_part(1, 100);
}

static int op_part_put(ctx *c) {
    meta_part replaced;
    int rc = meta_part_put(c->ms, "up", &c->parts[0], &replaced, &c->had_replaced);
    strcpy(c->old_vid, c->had_replaced ? replaced.version_id : "");
    return rc;
}

/* The version of part 1 of upload "up" ("" when none). */
static int first_part_cb(void *ud, const meta_part *p) {
    strcpy(ud, p->version_id);
    return 1;
}

static void part1(ctx *c, char out[33]) {
    out[0] = '\0';
    cr_assert_eq(meta_part_list(c->ms, "up", 0, 1, first_part_cb, out, NULL), 0);
}

static int state_part_new(ctx *c, int rc) {
    (void)rc;
    cr_assert_not(c->had_replaced);
    char v[33];
    part1(c, v);
    return !v[0] ? S_OLD : !strcmp(v, c->parts[0].version_id) ? S_NEW : S_BAD;
}

static void setup_part_replace(ctx *c) {
    setup_upload(c);
    meta_part first = mk_part(1, 50);
    put_part(c->ms, "up", &first);
    strcpy(c->part_vids[0], first.version_id);
}

static int state_part_replace(ctx *c, int rc) {
    if (rc == 0) cr_assert(c->had_replaced && !strcmp(c->old_vid, c->part_vids[0]), "the replaced part is reported");
    else cr_assert_not(c->had_replaced, "a failed part put reported a replaced part");
    char v[33];
    part1(c, v);
    return !strcmp(v, c->part_vids[0]) ? S_OLD : !strcmp(v, c->parts[0].version_id) ? S_NEW : S_BAD;
}

/* An upload of three parts; the complete chooses the first two. */
static void setup_complete(ctx *c) {
    mk_upload(c->ms, "b", c->bucket_id, "k", "up");
    for (int i = 0; i < 3; i++) {
        c->parts[i] = mk_part(i + 1, 1000 + i);
        put_part(c->ms, "up", &c->parts[i]);
    }
    c->obj = mk_obj("b", c->bucket_id, "k", c->parts[0].size + c->parts[1].size);
    strcpy(c->obj.layout, "mp:2");
    strcpy(c->obj.etag, "0123456789abcdef0123456789abcdef-2");
}

static int op_complete(ctx *c) {
    return meta_upload_complete(c->ms, "up", &c->obj, c->parts, 2, &c->replaced, &c->had_replaced, count_part,
                                &c->heard);
}

static int state_complete(ctx *c, int rc) {
    cr_assert_eq(c->heard, rc == 0 ? 1 : 0, "the unused part is heard after a commit, and only then");
    meta_completed_upload done;
    int remembered = meta_upload_completed_get(c->ms, "up", &done);
    cr_assert(remembered == 0 || remembered == CAIRN_ENOTFOUND);
    int parts = upload_parts(c, "up"), oparts = object_parts(c, c->obj.version_id);
    bool now = has_version(c, "k", c->obj.version_id), none = has_version(c, "k", "");
    if (parts == 3 && none && oparts == 0 && remembered == CAIRN_ENOTFOUND) return S_OLD;
    if (parts == -1 && now && oparts == 2 && remembered == 0) return S_NEW;
    return S_BAD;
}

/* A complete that replaces a multipart object: the old parts go to the trash. */
static void setup_complete_over_multipart(ctx *c) {
    mk_multipart(c, "k", "up-old", 2);
    setup_complete(c);
}

static int state_complete_over_multipart(ctx *c, int rc) {
    if (rc == 0) cr_assert(c->had_replaced && !strcmp(c->replaced.version_id, c->old_vid));
    int s = state_multipart_gone(c, c->obj.version_id);
    int parts = upload_parts(c, "up");
    if (s == S_OLD && parts == 3) return S_OLD;
    if (s == S_NEW && parts == -1 && object_parts(c, c->obj.version_id) == 2) return S_NEW;
    return S_BAD;
}

static int op_abort(ctx *c) { return meta_upload_abort(c->ms, "up", count_part, &c->heard); }

static int state_abort(ctx *c, int rc) {
    cr_assert_eq(c->heard, rc == 0 ? 3 : 0, "the parts are heard after a commit, and only then");
    int parts = upload_parts(c, "up");
    return parts == 3 ? S_OLD : parts == -1 ? S_NEW : S_BAD;
}

static void setup_prune(ctx *c) {
    setup_complete(c);
    cr_assert_eq(op_complete(c), 0);
    c->heard = 0;
    meta_object_clear(&c->replaced);
}

static int op_prune(ctx *c) { return meta_upload_completed_prune(c->ms, c->obj.mtime_ms + 1, 10, &c->count); }

static int state_prune(ctx *c, int rc) {
    cr_assert_eq(c->count, rc == 0 ? 1 : 0);
    meta_completed_upload done;
    int got = meta_upload_completed_get(c->ms, "up", &done);
    return got == 0 ? S_OLD : got == CAIRN_ENOTFOUND ? S_NEW : S_BAD;
}

static const fault_case upload_writes[] = {
    {"create an upload", NULL, op_upload_create, state_upload_create, 0, 0},
    {"put a part", setup_upload, op_part_put, state_part_new, 0, 0},
    {"put a part again", setup_part_replace, op_part_put, state_part_replace, 0, 0},
    {"complete an upload", setup_complete, op_complete, state_complete, 0, 0},
    {"complete over a multipart object", setup_complete_over_multipart, op_complete,
     state_complete_over_multipart, 0, 0},
    {"abort an upload", setup_complete, op_abort, state_abort, 0, 0},
    {"forget completed uploads", setup_prune, op_prune, state_prune, 0, 0}
};
CASE_TESTS(upload_writes, .timeout = 600)

/* ---- placements, nodes and the trash ------------------------------------------------------- */

static void setup_layout_object(ctx *c) {
    c->obj = mk_obj("b", c->bucket_id, "k", 9);
    put(c->ms, &c->obj);
}

static int op_set_layout(ctx *c) { return meta_placement_set_layout(c->ms, c->obj.version_id, LAYOUT, "new-layout"); }

static int state_layout(ctx *c, int rc) {
    (void)rc;
    meta_placement p;
    cr_assert_eq(meta_placement_get(c->ms, c->obj.version_id, &p), 0);
    return !strcmp(p.layout, LAYOUT) ? S_OLD : !strcmp(p.layout, "new-layout") ? S_NEW : S_BAD;
}

static void setup_layout_part(ctx *c) {
    mk_upload(c->ms, "b", c->bucket_id, "k", "up");
    meta_part p = mk_part(1, 5);
    put_part(c->ms, "up", &p);
    strcpy(c->obj.version_id, p.version_id);
}

/* A layout that changed meanwhile: nothing is written, and the call reads to
 * tell a conflict from a placement that is gone. */
static int op_set_layout_stale(ctx *c) {
    return meta_placement_set_layout(c->ms, c->obj.version_id, "stale", "new-layout");
}

static int state_layout_unchanged(ctx *c, int rc) {
    (void)rc;
    return state_layout(c, rc) == S_OLD ? S_NEW : S_BAD;
}

static int op_node_upsert(ctx *c) { return meta_node_upsert(c->ms, "0123456789abcdef", "http://n1:9100"); }

static int node_state(ctx *c, meta_node *out) {
    int rc = meta_node_get(c->ms, "0123456789abcdef", out);
    cr_assert(rc == 0 || rc == CAIRN_ENOTFOUND);
    return rc;
}

static int state_node_upsert(ctx *c, int rc) {
    (void)rc;
    meta_node n;
    return node_state(c, &n) == CAIRN_ENOTFOUND ? S_OLD : !strcmp(n.url, "http://n1:9100") ? S_NEW : S_BAD;
}

static void setup_node(ctx *c) { cr_assert_eq(op_node_upsert(c), 0); }

static int op_node_drain(ctx *c) { return meta_node_set_state(c->ms, "0123456789abcdef", "draining"); }

static int state_node_drain(ctx *c, int rc) {
    (void)rc;
    meta_node n;
    cr_assert_eq(node_state(c, &n), 0);
    return !strcmp(n.state, "active") ? S_OLD : !strcmp(n.state, "draining") ? S_NEW : S_BAD;
}

static int op_node_seen_ok(ctx *c) { return meta_node_seen(c->ms, "0123456789abcdef", true, NULL); }

static int state_node_seen_ok(ctx *c, int rc) {
    (void)rc;
    meta_node n;
    cr_assert_eq(node_state(c, &n), 0);
    return n.last_seen_ms ? S_NEW : S_OLD;
}

static int op_node_seen_error(ctx *c) { return meta_node_seen(c->ms, "0123456789abcdef", false, "refused"); }

static int state_node_seen_error(ctx *c, int rc) {
    (void)rc;
    meta_node n;
    cr_assert_eq(node_state(c, &n), 0);
    return !strcmp(n.last_error, "refused") ? S_NEW : !n.last_error[0] ? S_OLD : S_BAD;
}

static void setup_trash(ctx *c) {
    setup_delete_multipart(c);
    meta_object gone;
    cr_assert_eq(meta_object_delete(c->ms, "b", c->bucket_id, "k", 1, &gone), 0);
    meta_object_clear(&gone);
    cr_assert_eq(parts_in_trash(c), 1);
}

static int op_trash_remove(ctx *c) {
    const char *ids[3] = {c->part_vids[0], c->part_vids[1], c->part_vids[2]};
    return meta_trash_remove(c->ms, ids, c->nparts);
}

static int state_trash_remove(ctx *c, int rc) {
    (void)rc;
    int n = trash_count(c);
    return n == c->nparts ? S_OLD : n == 0 ? S_NEW : S_BAD;
}

static const fault_case placement_node_and_trash_writes[] = {
    {"point an object at a new layout", setup_layout_object, op_set_layout, state_layout, 0, 0},
    {"point an upload part at a new layout", setup_layout_part, op_set_layout, state_layout, 0, 0},
    {"a stale layout change", setup_layout_object, op_set_layout_stale, state_layout_unchanged,
     CAIRN_ECONFLICT, F_SAME},
    {"register a node", NULL, op_node_upsert, state_node_upsert, 0, 0},
    {"drain a node", setup_node, op_node_drain, state_node_drain, 0, 0},
    {"a node's heartbeat", setup_node, op_node_seen_ok, state_node_seen_ok, 0, 0},
    {"a node's failed heartbeat", setup_node, op_node_seen_error, state_node_seen_error, 0, 0},
    {"empty the trash", setup_trash, op_trash_remove, state_trash_remove, 0, 0}
};
CASE_TESTS(placement_node_and_trash_writes, .timeout = 600)

/* ---- the job queue ------------------------------------------------------------------------ */

static int op_enqueue(ctx *c) {
    meta_job j = {.max_attempts = 3, .priority = 5};
    strcpy(j.kind, "scrub");
    strcpy(j.unique_key, "scrub-all");
    j.unique_while_pending = true;
    return meta_job_enqueue(c->ms, &j, &c->job2_id);
}

static int state_enqueue(ctx *c, int rc) {
    int n = job_count(c, "available");
    if (rc == 0) cr_assert_gt(c->job2_id, 0);
    return n == 0 ? S_OLD : n == 1 ? S_NEW : S_BAD;
}

/* A finished job holds the unique key: the enqueue takes it over. */
static void setup_enqueue_over_finished(ctx *c) {
    c->job_id = enqueue(c, "scrub", "scrub-all");
    meta_job j;
    cr_assert_eq(meta_job_claim(c->ms, "w1", time_now_ms(), 60000, &j), 0);
    meta_job_clear(&j);
    cr_assert_eq(meta_job_finish(c->ms, c->job_id, "w1", "completed", 0, NULL), 0);
}

static int state_enqueue_over_finished(ctx *c, int rc) {
    int s = state_enqueue(c, rc);
    meta_job old = job_get(c, c->job_id);
    if (s == S_OLD && !strcmp(old.unique_key, "scrub-all")) return S_OLD;
    if (s == S_NEW && !old.unique_key[0]) return S_NEW;
    return S_BAD;
}

static void setup_jobs(ctx *c) {
    c->job_id = enqueue(c, "scrub", NULL);
    c->job2_id = enqueue(c, "heal", NULL);
}

static int op_claim(ctx *c) {
    meta_job j;
    int rc = meta_job_claim(c->ms, "w1", time_now_ms(), 60000, &j);
    if (rc == 0) cr_assert_eq(j.id, c->job_id, "claims the oldest of equal priority");
    meta_job_clear(&j);
    return rc;
}

static int state_claim(ctx *c, int rc) {
    (void)rc;
    if (job_is(c, c->job_id, "available", 0)) return S_OLD;
    if (job_is(c, c->job_id, "running", 1)) return S_NEW;
    return S_BAD;
}

static void setup_claimed(ctx *c) {
    setup_jobs(c);
    cr_assert_eq(op_claim(c), 0);
}

static int op_finish(ctx *c) { return meta_job_finish(c->ms, c->job_id, "w1", "completed", 0, NULL); }

static int state_finish(ctx *c, int rc) {
    (void)rc;
    if (job_is(c, c->job_id, "running", 1)) return S_OLD;
    if (job_is(c, c->job_id, "completed", 1)) return S_NEW;
    return S_BAD;
}

static int op_finish_claim(ctx *c) {
    meta_job next;
    int rc = meta_job_finish_claim(c->ms, c->job_id, "w1", "retryable", time_now_ms() + 60000, "try later",
                                   time_now_ms(), 60000, &c->finish_rc, &next);
    if (rc == 0) cr_assert_eq(next.id, c->job2_id);
    meta_job_clear(&next);
    return rc;
}

static int state_finish_claim(ctx *c, int rc) {
    if (rc == 0) cr_assert_eq(c->finish_rc, 0);
    else cr_assert_eq(c->finish_rc, rc, "a failed transaction says the finish failed too");
    bool first_running = job_is(c, c->job_id, "running", 1), second_available = job_is(c, c->job2_id, "available", 0);
    if (first_running && second_available) return S_OLD;
    if (job_is(c, c->job_id, "retryable", 1) && job_is(c, c->job2_id, "running", 1)) return S_NEW;
    return S_BAD;
}

static int op_release(ctx *c) { return meta_job_release(c->ms, c->job_id, "w1"); }

static int state_release(ctx *c, int rc) {
    (void)rc;
    if (job_is(c, c->job_id, "running", 1)) return S_OLD;
    if (job_is(c, c->job_id, "available", 0)) return S_NEW;
    return S_BAD;
}

static int op_extend(ctx *c) { return meta_job_extend(c->ms, c->job_id, "w1", 4102444800000); }

static int state_extend(ctx *c, int rc) {
    (void)rc;
    meta_job j = job_get(c, c->job_id);
    return j.lease_expires_ms == 4102444800000 ? S_NEW : S_OLD;
}

static int op_cancel(ctx *c) { return meta_job_cancel(c->ms, c->job2_id); }

static int state_cancel(ctx *c, int rc) {
    (void)rc;
    if (job_is(c, c->job2_id, "available", 0)) return S_OLD;
    if (job_is(c, c->job2_id, "cancelled", 0)) return S_NEW;
    return S_BAD;
}

/* Cancelling a running job is refused after a read that tells it from a missing one. */
static int op_cancel_running(ctx *c) { return meta_job_cancel(c->ms, c->job_id); }

static int state_unchanged_running(ctx *c, int rc) {
    (void)rc;
    return job_is(c, c->job_id, "running", 1) ? S_NEW : S_BAD;
}

static void setup_discarded(ctx *c) {
    setup_claimed(c);
    cr_assert_eq(meta_job_finish(c->ms, c->job_id, "w1", "discarded", 0, "gave up"), 0);
}

static int op_retry(ctx *c) { return meta_job_retry(c->ms, c->job_id); }

static int state_retry(ctx *c, int rc) {
    (void)rc;
    if (job_is(c, c->job_id, "discarded", 1)) return S_OLD;
    if (job_is(c, c->job_id, "available", 0)) return S_NEW;
    return S_BAD;
}

static void setup_completed(ctx *c) {
    setup_claimed(c);
    cr_assert_eq(op_finish(c), 0);
}

static int op_job_prune(ctx *c) { return meta_job_prune(c->ms, time_now_ms() + 1000, 0, 10, &c->count); }

static int state_job_prune(ctx *c, int rc) {
    cr_assert_eq(c->count, rc == 0 ? 1 : 0);
    meta_job j;
    int got = meta_job_get(c->ms, c->job_id, &j);
    meta_job_clear(&j);
    return got == 0 ? S_OLD : got == CAIRN_ENOTFOUND ? S_NEW : S_BAD;
}

static const fault_case job_queue_writes[] = {
    {"enqueue a job", NULL, op_enqueue, state_enqueue, 0, 0},
    {"enqueue over a finished job's unique key", setup_enqueue_over_finished, op_enqueue,
     state_enqueue_over_finished, 0, 0},
    {"claim a job", setup_jobs, op_claim, state_claim, 0, 0},
    {"finish a job", setup_claimed, op_finish, state_finish, 0, 0},
    {"finish a job and claim the next", setup_claimed, op_finish_claim, state_finish_claim, 0, 0},
    {"release a job", setup_claimed, op_release, state_release, 0, 0},
    {"extend a lease", setup_claimed, op_extend, state_extend, 0, 0},
    {"cancel a job", setup_claimed, op_cancel, state_cancel, 0, 0},
    {"cancel a running job", setup_claimed, op_cancel_running, state_unchanged_running, CAIRN_ECONFLICT, F_SAME},
    {"retry a discarded job", setup_discarded, op_retry, state_retry, 0, 0},
    {"prune finished jobs", setup_completed, op_job_prune, state_job_prune, 0, 0}
};
CASE_TESTS(job_queue_writes, .timeout = 600)

/* ---- the audit store ------------------------------------------------------------------------ */

static meta_audit_event audit_ev(const char *id, int64_t time_us) {
    return (meta_audit_event){.event_id = id, .time_us = time_us, .request_id = "r", .correlation_id = "c",
                              .principal = "p", .user = "", .source_address = "", .action = "a", .bucket = "b",
                              .key = "k", .version_id = "", .outcome = "success", .status = 200, .error_code = ""};
}

static const char *const audit_ids[] = {"00000000000000000000000000000001", "00000000000000000000000000000002",
                                        "00000000000000000000000000000003"};

static int count_audit_cb(void *ud, const meta_audit_event *e) {
    (void)e;
    (*(int *)ud)++;
    return 0;
}

static int audit_rows(ctx *c) {
    int n = 0, got = 0;
    meta_audit_filter all = {0};
    cr_assert_eq(meta_audit_query(c->ms, &all, 100, count_audit_cb, &n, &got), 0);
    return n;
}

static void setup_audit_one(ctx *c) {
    meta_audit_event e = audit_ev(audit_ids[0], 100);
    int ins = 0;
    cr_assert_eq(meta_audit_insert(c->ms, &e, 1, &ins), 0);
}

/* A batch of three, one of them stored already: one transaction. */
static int op_audit_insert(ctx *c) {
    meta_audit_event ev[3] = {audit_ev(audit_ids[0], 100), audit_ev(audit_ids[1], 200), audit_ev(audit_ids[2], 300)};
    int ins = 0;
    int rc = meta_audit_insert(c->ms, ev, 3, &ins);
    if (rc == 0) cr_assert_eq(ins, 2, "two new, one duplicate");
    return rc;
}

static int state_audit_insert(ctx *c, int rc) {
    (void)rc;
    int n = audit_rows(c);
    return n == 1 ? S_OLD : n == 3 ? S_NEW : S_BAD;
}

static void setup_audit_three(ctx *c) {
    meta_audit_event ev[3] = {audit_ev(audit_ids[0], 100), audit_ev(audit_ids[1], 200), audit_ev(audit_ids[2], 300)};
    int ins = 0;
    cr_assert_eq(meta_audit_insert(c->ms, ev, 3, &ins), 0);
}

static int op_audit_delete(ctx *c) { return meta_audit_delete_before(c->ms, 250, 10, &c->count); }

static int state_audit_delete(ctx *c, int rc) {
    int n = audit_rows(c);
    if (rc == 0) cr_assert_eq(c->count, 2);
    return n == 3 ? S_OLD : n == 1 ? S_NEW : S_BAD;
}

static void setup_audit_user(ctx *c) {
    meta_user u = {0};
    strcpy(u.name, "auditor");
    cr_assert_eq(meta_user_create(c->ms, &u), 0);
}

static int op_audit_grant(ctx *c) { return meta_user_set_audit(c->ms, "auditor", true); }

static int state_audit_grant(ctx *c, int rc) {
    (void)rc;
    meta_user u;
    cr_assert_eq(meta_user_get_by_name(c->ms, "auditor", &u), 0);
    return u.audit ? S_NEW : S_OLD;
}

static const fault_case audit_writes[] = {
    {"insert an audit batch", setup_audit_one, op_audit_insert, state_audit_insert, 0, 0},
    {"delete audit events past retention", setup_audit_three, op_audit_delete, state_audit_delete, 0, 0},
    {"grant the audit right", setup_audit_user, op_audit_grant, state_audit_grant, 0, 0},
};
CASE_TESTS(audit_writes, .timeout = 600)

/* ---- fsck repairs --------------------------------------------------------------------------- */

/* Runs SQL on the file with plain SQLite: a state no meta call can create. */
static void plant(ctx *c, const char *sql) {
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(c->path, &db), SQLITE_OK);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
}

static void find_problem(ctx *c) {
    memset(&c->problem, 0, sizeof c->problem);
    int64_t total = -1;
    cr_assert_eq(meta_check(c->ms, 100, keep_problem_cb, &c->problem, &total), 0);
    cr_assert_eq(total, 1, "one problem planted, %lld found", (long long)total);
}

static void setup_upload_without_bucket(ctx *c) {
    setup_bucket_delete(c);
    plant(c, "UPDATE uploads SET bucket_id = 999999");
    find_problem(c);
}

static void setup_parts_without_upload(ctx *c) {
    setup_bucket_delete(c);
    plant(c, "DELETE FROM uploads");
    find_problem(c);
}

static void setup_parts_without_object(ctx *c) {
    mk_multipart(c, "k", "up-old", 2);
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM objects WHERE version_id = '%s'", c->old_vid);
    plant(c, sql);
    find_problem(c);
}

static void setup_data_without_object(ctx *c) {
    plant(c, "INSERT INTO object_data(version_id, data) VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3', x'01')");
    find_problem(c);
}

static void drop_cb(void *ud, const char *version_id, const char *layout) {
    (void)version_id;
    (void)layout;
    (*(int *)ud)++;
}

static int op_repair(ctx *c) { return meta_repair(c->ms, &c->problem, drop_cb, &c->heard); }

static int state_repaired(ctx *c, int rc) {
    int dropped = c->problem.kind == META_PROBLEM_DATA_WITHOUT_OBJECT ? 0 : 2;
    cr_assert_eq(c->heard, rc == 0 ? dropped : 0, "shards to drop are heard after a commit, and only then");
    int64_t p = problems(c);
    return p == 1 ? S_OLD : p == 0 ? S_NEW : S_BAD;
}

static const fault_case fsck_repairs[] = {
    {"repair an upload without a bucket", setup_upload_without_bucket, op_repair, state_repaired, 0, F_PROBLEM},
    {"repair parts without an upload", setup_parts_without_upload, op_repair, state_repaired, 0, F_PROBLEM},
    {"repair parts without an object", setup_parts_without_object, op_repair, state_repaired, 0, F_PROBLEM},
    {"repair bytes without an object", setup_data_without_object, op_repair, state_repaired, 0, F_PROBLEM}
};
CASE_TESTS(fsck_repairs, .timeout = 600)

/* ---- opening, closing and the schema --------------------------------------------------------- */

/* Some of everything, committed (and checkpointed by the reopen before the op). */
static void setup_contents(ctx *c) {
    meta_object o = mk_inline("b", c->bucket_id, "k", "inline", 6);
    put(c->ms, &o);
    strcpy(c->old_vid, o.version_id);
    mk_upload(c->ms, "b", c->bucket_id, "u", "up");
    c->job_id = enqueue(c, "scrub", NULL);
}

static int state_contents(ctx *c, int rc) {
    (void)rc;
    bool all = has_version(c, "k", c->old_vid) && upload_parts(c, "up") == 0 && job_is(c, c->job_id, "available", 0);
    return all ? S_NEW : S_BAD;
}

static int op_open_new(ctx *c) {
    meta_options o = store_options();
    return meta_open(c->path, &o, &c->ms);
}

/* A store opened after a failed first open is whole. */
static int state_opened_new(ctx *c, int rc) {
    (void)rc;
    int v = -1;
    cr_assert_eq(meta_schema_version(c->ms, &v), 0);
    return v == meta_schema_latest() && problems(c) == 0 ? S_NEW : S_BAD;
}

static void setup_closed(ctx *c) {
    ctx_create(c);
    c->bucket_id = mk_bucket(c->ms, "b");
    setup_contents(c);
    ctx_close(c);
}

/* Closing checkpoints the WAL (holding the setup's writes) into the
 * database and removes it. */
static int op_close(ctx *c) {
    ctx_close(c);
    return 0;
}

static void setup_at_zero(ctx *c) {
    ctx_close(c);
    ctx_open_raw(c);
    cr_assert_eq(meta_migrate(c->ms, 0), 0);
    c->schema_from = 0;
}

static int op_migrate_up(ctx *c) { return meta_migrate(c->ms, meta_schema_latest()); }

static int state_schema(ctx *c, int rc, int target) {
    (void)rc;
    int v = -1;
    cr_assert_eq(meta_schema_version(c->ms, &v), 0);
    if (v == target) return S_NEW;
    if (v == c->schema_from) return S_OLD;
    int lo = target < c->schema_from ? target : c->schema_from, hi = target + c->schema_from - lo;
    /* Each step is its own transaction: a failed migration stops between. */
    return v > lo && v < hi ? S_MID : S_BAD;
}

static int state_migrated_up(ctx *c, int rc) { return state_schema(c, rc, meta_schema_latest()); }

static void setup_at_latest(ctx *c) {
    ctx_close(c);
    ctx_open_raw(c);
    c->schema_from = meta_schema_latest();
}

static int op_migrate_down(ctx *c) { return meta_migrate(c->ms, 0); }

static int state_migrated_down(ctx *c, int rc) { return state_schema(c, rc, 0); }

static const fault_case open_close_ping_and_migrate[] = {
    {"open a new store", NULL, op_open_new, state_opened_new, 0, F_NO_STORE | F_SAME},
    {"open a store", setup_closed, op_open_new, state_contents, 0, F_NO_STORE | F_SAME},
    {"close a store", setup_contents, op_close, state_contents, 0, F_KEEP_WAL | F_SAME},
    {"migrate up from an empty schema", setup_at_zero, op_migrate_up, state_migrated_up, 0, F_SCHEMA},
    {"migrate down to an empty schema", setup_at_latest, op_migrate_down, state_migrated_down, 0, F_SCHEMA}
};
CASE_TESTS(open_close_ping_and_migrate, .timeout = 600)

/* ---- reads ------------------------------------------------------------------------------------ */

/*
 * A store with a row of every kind.  Each read is run on freshly opened
 * connections with the nth file call failing: the reader's first file call
 * (opening the WAL to load the schema) fails, the read must say so with an
 * error, and the same read with nothing failing must then work on the same
 * connection.
 */
static void setup_everything(ctx *c) {
    ctx_init(c);
    ctx_create(c);
    c->bucket_id = mk_bucket(c->ms, "b");
    setup_key(c);
    meta_user root;
    cr_assert_eq(meta_user_ensure_root(c->ms, "root", &root), 0);
    meta_object i = mk_inline("b", c->bucket_id, "i", "inline", 6);
    put(c->ms, &i);
    c->obj = mk_obj("b", c->bucket_id, "f", 9);
    put(c->ms, &c->obj);
    /* A deleted multipart object (its parts in the trash), then a live one. */
    mk_multipart(c, "gone", "up-gone", 2);
    meta_object gone;
    cr_assert_eq(meta_object_delete(c->ms, "b", c->bucket_id, "gone", 4, &gone), 0);
    meta_object_clear(&gone);
    mk_multipart(c, "m", "up-m", 2);
    mk_upload(c->ms, "b", c->bucket_id, "u", "up");
    c->parts[0] = mk_part(1, 5);
    put_part(c->ms, "up", &c->parts[0]);
    setup_jobs(c);
    setup_node(c);
    ctx_close(c);
}

static int count_any(void *ud, const void *row) {
    (void)row;
    (*(int *)ud)++;
    return 0;
}

#define COUNTER(name, type) \
    static int name(void *ud, const type *row) { return count_any(ud, row); }
COUNTER(count_user, meta_user)
COUNTER(count_key, meta_key)
COUNTER(count_bucket, meta_bucket)
COUNTER(count_entry, meta_list_entry)
COUNTER(count_scan, meta_scan_entry)
COUNTER(count_place, meta_placement)
COUNTER(count_node, meta_node)
COUNTER(count_upload, meta_upload)
COUNTER(count_job, meta_job)
COUNTER(count_problem, meta_problem)

static int count_jobs_by_kind(void *ud, const char *kind, const char *state, int64_t n) {
    (void)kind;
    (void)state;
    *(int *)ud += (int)n;
    return 0;
}

/* Each returns the call's result and, when it is 0, checks what came back. */
static int rd_user_get(ctx *c) {
    meta_user u;
    int rc = meta_user_get(c->ms, c->count, &u);
    if (rc == 0) cr_assert_str_eq(u.name, "alice");
    return rc;
}

static int rd_user_by_name(ctx *c) {
    meta_user u;
    int rc = meta_user_get_by_name(c->ms, "root", &u);
    if (rc == 0) cr_assert(u.is_root);
    return rc;
}

static int rd_user_list(ctx *c) {
    int n = 0;
    int rc = meta_user_list(c->ms, count_user, &n);
    if (rc == 0) cr_assert_eq(n, 2);
    return rc;
}

static int rd_key_get(ctx *c) {
    meta_key k;
    int rc = meta_key_get(c->ms, "AKIDEXAMPLE", &k);
    if (rc == 0) cr_assert_eq(k.user_id, c->count);
    return rc;
}

static int rd_key_list(ctx *c) {
    int n = 0;
    int rc = meta_key_list(c->ms, -1, count_key, &n);
    if (rc == 0) cr_assert_eq(n, 1);
    return rc;
}

static int rd_bucket_get(ctx *c) {
    meta_bucket b;
    int rc = meta_bucket_get(c->ms, "b", &b);
    if (rc == 0) cr_assert_eq(b.id, c->bucket_id);
    return rc;
}

static int rd_bucket_list(ctx *c) {
    int n = 0;
    int rc = meta_bucket_list(c->ms, -1, count_bucket, &n);
    if (rc == 0) cr_assert_eq(n, 1);
    return rc;
}

static int rd_object_get(ctx *c) {
    meta_object o;
    int rc = meta_object_get(c->ms, "b", c->bucket_id, "f", 1, false, &o);
    if (rc == 0) cr_assert_str_eq(o.version_id, c->obj.version_id);
    meta_object_clear(&o);
    return rc;
}

static int rd_object_get_data(ctx *c) {
    meta_object o;
    int rc = meta_object_get(c->ms, "b", c->bucket_id, "i", 1, true, &o);
    if (rc == 0) cr_assert(o.data_len == 6 && !memcmp(o.data, "inline", 6));
    meta_object_clear(&o);
    return rc;
}

static int rd_object_list(ctx *c) {
    int n = 0;
    bool more = true;
    int rc = meta_object_list(c->ms, "b", c->bucket_id, NULL, 0, NULL, 0, false, 100, count_entry, &n, &more);
    if (rc == 0) cr_assert(n == 3 && !more, "listed %d", n);
    return rc;
}

static int rd_object_count(ctx *c) {
    int64_t n = 0;
    int rc = meta_object_count(c->ms, "b", &n);
    if (rc == 0) cr_assert_eq(n, 3);
    return rc;
}

static int rd_object_scan(ctx *c) {
    int n = 0;
    bool more = true;
    int rc = meta_object_scan(c->ms, "", "", 0, 100, count_scan, &n, &more);
    if (rc == 0) cr_assert(n == 3 && !more);
    return rc;
}

static int rd_placement_scan(ctx *c) {
    int n = 0;
    meta_place_cursor cur = {0};
    int rc = 0;
    while (rc == 0 && !cur.done) rc = meta_placement_scan(c->ms, &cur, 100, count_place, &n);
    /* the file object, the live multipart object's two parts, one upload part */
    if (rc == 0) cr_assert_eq(n, 4);
    return rc;
}

static int rd_placement_get(ctx *c) {
    meta_placement p;
    int rc = meta_placement_get(c->ms, c->obj.version_id, &p);
    if (rc == 0) cr_assert_eq(p.kind, META_PLACE_OBJECT);
    return rc;
}

static int rd_layout_refs(ctx *c) {
    int64_t n = 0;
    int rc = meta_layout_refs(c->ms, "0123456789abcdef", &n);
    if (rc == 0) cr_assert_eq(n, 4);
    return rc;
}

static int rd_version_referenced(ctx *c) {
    bool ref = false;
    int rc = meta_version_referenced(c->ms, c->parts[0].version_id, &ref);
    if (rc == 0) cr_assert(ref);
    return rc;
}

static int rd_node_list(ctx *c) {
    int n = 0;
    int rc = meta_node_list(c->ms, count_node, &n);
    if (rc == 0) cr_assert_eq(n, 1);
    return rc;
}

static int rd_node_get(ctx *c) {
    meta_node n;
    int rc = meta_node_get(c->ms, "http://n1:9100", &n);
    if (rc == 0) cr_assert_str_eq(n.id, "0123456789abcdef");
    return rc;
}

static int rd_upload_get(ctx *c) {
    meta_upload u;
    int rc = meta_upload_get(c->ms, "up", &u);
    if (rc == 0) cr_assert_eq(u.bucket_id, c->bucket_id);
    meta_upload_clear(&u);
    return rc;
}

static int rd_upload_list(ctx *c) {
    int n = 0;
    bool more = true;
    int rc = meta_upload_list(c->ms, c->bucket_id, "", 0, "", 0, "", 100, count_upload, &n, &more);
    if (rc == 0) cr_assert(n == 1 && !more);
    return rc;
}

static int rd_upload_older(ctx *c) {
    int n = 0;
    int rc = meta_upload_list_older(c->ms, 2000, 100, count_upload, &n);
    if (rc == 0) cr_assert_eq(n, 1);
    return rc;
}

static int rd_part_list(ctx *c) {
    int n = 0;
    bool more = true;
    int rc = meta_part_list(c->ms, "up", 0, 100, count_parts_cb, &n, &more);
    if (rc == 0) cr_assert(n == 1 && !more);
    return rc;
}

static int rd_object_parts(ctx *c) {
    int n = 0;
    int rc = meta_object_parts(c->ms, c->old_vid, count_parts_cb, &n);
    if (rc == 0) cr_assert_eq(n, 2);
    return rc;
}

static int rd_completed_get(ctx *c) {
    meta_completed_upload done;
    int rc = meta_upload_completed_get(c->ms, "up-m", &done);
    if (rc == 0) cr_assert_str_eq(done.version_id, c->old_vid);
    return rc;
}

static int rd_trash_list(ctx *c) {
    int n = 0;
    int rc = meta_trash_list(c->ms, 100, count_trash_cb, &n);
    if (rc == 0) cr_assert_eq(n, 2);
    return rc;
}

static int rd_job_get(ctx *c) {
    meta_job j;
    int rc = meta_job_get(c->ms, c->job_id, &j);
    if (rc == 0) cr_assert_str_eq(j.kind, "scrub");
    meta_job_clear(&j);
    return rc;
}

static int rd_job_list(ctx *c) {
    int n = 0;
    int rc = meta_job_list(c->ms, "", "", 100, count_job, &n);
    if (rc == 0) cr_assert_eq(n, 2);
    return rc;
}

static int rd_job_counts(ctx *c) {
    int n = 0;
    int rc = meta_job_counts(c->ms, count_jobs_by_kind, &n);
    if (rc == 0) cr_assert_eq(n, 2);
    return rc;
}

static int rd_check(ctx *c) {
    int n = 0;
    int64_t total = -1;
    int rc = meta_check(c->ms, 100, count_problem, &n, &total);
    if (rc == 0) cr_assert(n == 0 && total == 0);
    return rc;
}

typedef struct {
    const char *name;
    int (*read)(ctx *c);
} read_case;

static int run_read(ctx *c, const read_case *rc_case, int parity) {
    int runs = 0;
    for (int n = 1; n < 100000; n++) {
        int err = (n + parity) % 2 ? EIO : ENOSPC;
        if (failing == FAIL_IO) {
            ctx_close(c);
            ctx_open(c);
        } else {
            cr_assert_eq(rc_case->read(c), 0); /* statements prepared: the read's own allocations */
        }
        arm(n, err);
        int rc = rc_case->read(c);
        int hits = injected();
        disarm();
        cr_assert(rc == 0 || is_error(rc), "%s, call %d failing with %s: returned %d (%s)", rc_case->name, n,
                  what(err), rc, cairn_strerror(rc));
        if (!hits) cr_assert_eq(rc, 0, "%s with nothing failing: %d", rc_case->name, rc);
        rc = rc_case->read(c);
        cr_assert_eq(rc, 0, "%s, call %d failing: the same read afterwards fails too (%d)", rc_case->name, n, rc);
        if (!hits) break;
        runs++;
    }
    return runs;
}

static void run_reads(void) {
    static const read_case reads[] = {
        {"user get", rd_user_get},           {"user get by name", rd_user_by_name},
        {"user list", rd_user_list},         {"key get", rd_key_get},
        {"key list", rd_key_list},           {"bucket get", rd_bucket_get},
        {"bucket list", rd_bucket_list},     {"object get", rd_object_get},
        {"object get with bytes", rd_object_get_data}, {"object list", rd_object_list},
        {"object count", rd_object_count},   {"object scan", rd_object_scan},
        {"placement scan", rd_placement_scan}, {"placement get", rd_placement_get},
        {"layout refs", rd_layout_refs},     {"version referenced", rd_version_referenced},
        {"node list", rd_node_list},         {"node get", rd_node_get},
        {"upload get", rd_upload_get},       {"upload list", rd_upload_list},
        {"uploads older than", rd_upload_older}, {"part list", rd_part_list},
        {"object parts", rd_object_parts},   {"completed upload get", rd_completed_get},
        {"trash list", rd_trash_list},       {"job get", rd_job_get},
        {"job list", rd_job_list},           {"job counts", rd_job_counts},
        {"check", rd_check},
    };
    ctx c;
    setup_everything(&c);
    ctx_open(&c);
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        int runs = run_read(&c, &reads[i], 0) + (failing == FAIL_IO ? run_read(&c, &reads[i], 1) : 0);
        cr_expect_gt(runs, 0, "%s never reached a fault", reads[i].name);
        cr_log_info("%s: %d runs", reads[i].name, runs);
    }
    ctx_remove(&c);
}

Test(meta_faults, reads, .timeout = 600) { run_reads(); }

static void run_reads_table(const fault_case *cases, size_t n) {
    (void)cases;
    (void)n;
    run_reads();
}

Test(meta_allocs, reads, .timeout = 600, .disabled = !ALLOC_FAILURES) { run_allocs(run_reads_table, NULL, 0); }

#endif
