/*
 * test_meta.c — the metadata store on real SQLite files.
 *
 * Each test opens a fresh database in its own mkdtemp directory and drives
 * the public meta.h calls only, asserting on what a caller can observe: error
 * codes, returned rows, listing order and paging.  A few tests also open the
 * file with plain SQLite to check what is on disk (tables after a
 * down-migration) or to plant a state the API cannot create (a newer schema).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meta/meta.h"

/* ---- fixture ---------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char path[128];
    meta_store *ms;
} fx;

static meta_options test_options(int readers) {
    meta_options o = {.readers = readers, .fsync = false, .busy_timeout_ms = 5000};
    return o;
}

static void fx_open(fx *f, int readers) {
    cr_assert_eq(core_init(), 0);
    strcpy(f->dir, "/tmp/cairn-test-meta-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/meta.db", f->dir);
    meta_options o = test_options(readers);
    cr_assert_eq(meta_open(f->path, &o, &f->ms), 0);
}

static void fx_reopen(fx *f) {
    meta_close(f->ms);
    meta_options o = test_options(2);
    cr_assert_eq(meta_open(f->path, &o, &f->ms), 0);
}

static void fx_close(fx *f) {
    meta_close(f->ms);
    f->ms = NULL;
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* ---- helpers ---------------------------------------------------------------- */

static void mk_bucket(meta_store *ms, const char *name, int64_t owner) {
    meta_bucket b = {.owner_id = owner, .created_ms = 1000};
    strcpy(b.name, name);
    strcpy(b.region, "us-east-1");
    cr_assert_eq(meta_bucket_create(ms, &b, NULL), 0, "create bucket %s", name);
}

/* A FILE-stored object with a fresh random version id. */
static meta_object mk_obj(const char *bucket, const char *key, size_t key_len, int64_t size) {
    meta_object o;
    memset(&o, 0, sizeof o);
    strcpy(o.bucket, bucket);
    memcpy(o.key, key, key_len);
    o.key_len = key_len;
    rand_hex_id(o.version_id, 16);
    o.size = size;
    strcpy(o.etag, "d41d8cd98f00b204e9800998ecf8427e");
    o.mtime_ms = 1700000000000;
    o.owner_id = 1;
    o.storage = META_STORE_FILE;
    o.headers_json = "{\"content-type\":\"text/plain\"}";
    return o;
}

static void put_key(meta_store *ms, const char *bucket, const char *key, size_t len) {
    meta_object o = mk_obj(bucket, key, len, 1);
    cr_assert_eq(meta_object_put(ms, &o, NULL, NULL), 0, "put key of %zu bytes", len);
}

/* Listing collector: copies keys so they outlive the callback. */
typedef struct {
    char **keys;
    size_t *lens;
    int n, cap, stop_after;
} collect;

static int collect_cb(void *ud, const meta_list_entry *e) {
    collect *c = ud;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->keys = realloc(c->keys, (size_t)c->cap * sizeof *c->keys);
        c->lens = realloc(c->lens, (size_t)c->cap * sizeof *c->lens);
    }
    c->keys[c->n] = malloc(e->key_len + 1);
    memcpy(c->keys[c->n], e->key, e->key_len);
    c->keys[c->n][e->key_len] = '\0';
    c->lens[c->n] = e->key_len;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void collect_free(collect *c) {
    for (int i = 0; i < c->n; i++) free(c->keys[i]);
    free(c->keys);
    free(c->lens);
    memset(c, 0, sizeof *c);
}

static int list_all(meta_store *ms, const char *bucket, const char *prefix, size_t plen,
                    const char *from, size_t flen, bool incl, int limit, collect *c, bool *more) {
    return meta_object_list(ms, bucket, prefix, plen, from, flen, incl, limit, collect_cb, c, more);
}

static bool key_is(const collect *c, int i, const char *key, size_t len) {
    return i < c->n && c->lens[i] == len && memcmp(c->keys[i], key, len) == 0;
}

/* ---- open, ping, schema ----------------------------------------------------- */

Test(meta, open_migrates_to_latest_and_pings) {
    fx f;
    fx_open(&f, 2);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_geq(meta_schema_latest(), 1);
    cr_assert_eq(v, meta_schema_latest());
    cr_assert_not_null(meta_migration_name(1));
    cr_assert_null(meta_migration_name(0));
    cr_assert_null(meta_migration_name(meta_schema_latest() + 1));
    cr_assert_eq(meta_ping(f.ms), 0);
    fx_close(&f);
}

Test(meta, open_rejects_bad_arguments) {
    meta_store *ms = NULL;
    cr_assert_eq(meta_open(NULL, NULL, &ms), CAIRN_EINVAL);
    cr_assert_eq(meta_open("", NULL, &ms), CAIRN_EINVAL);
    cr_assert_neq(meta_open("/nonexistent-dir-cairn/x/meta.db", NULL, &ms), 0);
    cr_assert_null(ms);
}

Test(meta, open_raw_leaves_empty_schema) {
    fx f;
    strcpy(f.dir, "/tmp/cairn-test-meta-XXXXXX");
    cr_assert_not_null(mkdtemp(f.dir));
    snprintf(f.path, sizeof f.path, "%s/meta.db", f.dir);
    meta_options o = test_options(1);
    cr_assert_eq(meta_open_raw(f.path, &o, &f.ms), 0);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, 0);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "x", &b), CAIRN_EDB, "no tables yet");
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest()), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "x", &b), CAIRN_ENOTFOUND);
    fx_close(&f);
}

static int count_tables(const char *path) {
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                                    " name IN ('users','access_keys','buckets','objects',"
                                    "'object_data')",
                                    -1, &st, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Rows in a table, read with plain SQLite: inline bytes of replaced or
 * deleted versions must not linger in object_data. */
static int count_rows(const char *path, const char *table) {
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

Test(meta, migrate_down_to_zero_and_up_again) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "before", 1);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "before", &b), 0); /* caches the reader statement */
    cr_assert_eq(count_tables(f.path), 5);

    cr_assert_eq(meta_migrate(f.ms, 0), 0);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(count_tables(f.path), 0, "down to 0 drops every table");
    cr_assert_eq(meta_bucket_get(f.ms, "before", &b), CAIRN_EDB);
    cr_assert_eq(meta_migrate(f.ms, 0), 0, "already there is a no-op");

    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest()), 0);
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, meta_schema_latest());
    cr_assert_eq(count_tables(f.path), 5);
    cr_assert_eq(meta_bucket_get(f.ms, "before", &b), CAIRN_ENOTFOUND, "data went with the tables");
    mk_bucket(f.ms, "after", 1);
    cr_assert_eq(meta_bucket_get(f.ms, "after", &b), 0);

    cr_assert_eq(meta_migrate(f.ms, -1), CAIRN_EINVAL);
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest() + 1), CAIRN_EINVAL);
    fx_close(&f);
}

Test(meta, open_refuses_newer_schema) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "keep", 1);
    meta_close(f.ms);
    f.ms = NULL;
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(f.path, &db), SQLITE_OK);
    char sql[160];
    snprintf(sql, sizeof sql,
             "INSERT INTO schema_migrations(version, name, applied_ms) VALUES (%d, 'future', 0)",
             meta_schema_latest() + 1);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    meta_options o = test_options(1);
    meta_store *ms = NULL;
    cr_assert_eq(meta_open(f.path, &o, &ms), CAIRN_EDB);
    cr_assert_null(ms);
    cr_assert_eq(count_tables(f.path), 5, "nothing was migrated down");
    fx_close(&f);
}

Test(meta, reopen_sees_committed_data) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "persist", 7);
    meta_object o = mk_obj("persist", "a/b.txt", 7, 42);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    fx_reopen(&f);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "persist", &b), 0);
    cr_assert_eq(b.owner_id, 7);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "persist", "a/b.txt", 7, false, &got), 0);
    cr_assert_str_eq(got.version_id, o.version_id);
    cr_assert_eq(got.size, 42);
    meta_object_clear(&got);
    fx_close(&f);
}

/* ---- users and keys ------------------------------------------------------------ */

static int user_list_cb(void *ud, const meta_user *u) {
    collect *c = ud;
    meta_list_entry e = {.key = u->name, .key_len = strlen(u->name)};
    return collect_cb(c, &e);
}

Test(meta, users) {
    fx f;
    fx_open(&f, 2);
    meta_user u = {0};
    strcpy(u.name, "alice");
    strcpy(u.display_name, "Alice A.");
    cr_assert_eq(meta_user_create(f.ms, &u), 0);
    cr_assert_gt(u.id, 0);
    cr_assert_gt(u.created_ms, 0);

    meta_user dup = {0};
    strcpy(dup.name, "alice");
    cr_assert_eq(meta_user_create(f.ms, &dup), CAIRN_EEXIST);

    meta_user bob = {0};
    strcpy(bob.name, "bob");
    cr_assert_eq(meta_user_create(f.ms, &bob), 0);
    cr_assert_gt(bob.id, u.id);

    meta_user got;
    cr_assert_eq(meta_user_get(f.ms, u.id, &got), 0);
    cr_assert_str_eq(got.name, "alice");
    cr_assert_str_eq(got.display_name, "Alice A.");
    cr_assert_not(got.is_root);
    cr_assert_eq(meta_user_get_by_name(f.ms, "bob", &got), 0);
    cr_assert_eq(got.id, bob.id);
    cr_assert_eq(meta_user_get(f.ms, 9999, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_user_get_by_name(f.ms, "carol", &got), CAIRN_ENOTFOUND);

    meta_user empty = {0};
    cr_assert_eq(meta_user_create(f.ms, &empty), CAIRN_EINVAL);

    collect c = {0};
    cr_assert_eq(meta_user_list(f.ms, user_list_cb, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.keys[0], "alice");
    cr_assert_str_eq(c.keys[1], "bob");
    collect_free(&c);
    c.stop_after = 1;
    cr_assert_eq(meta_user_list(f.ms, user_list_cb, &c), 0);
    cr_assert_eq(c.n, 1, "callback stops the listing");
    collect_free(&c);
    fx_close(&f);
}

Test(meta, ensure_root_creates_renames_and_is_idempotent) {
    fx f;
    fx_open(&f, 1);
    meta_user r1, r2, r3;
    cr_assert_eq(meta_user_ensure_root(f.ms, "admin", &r1), 0);
    cr_assert(r1.is_root);
    cr_assert_str_eq(r1.name, "admin");
    cr_assert_eq(meta_user_ensure_root(f.ms, "admin", &r2), 0);
    cr_assert_eq(r2.id, r1.id);
    cr_assert_eq(meta_user_ensure_root(f.ms, "boss", &r3), 0);
    cr_assert_eq(r3.id, r1.id, "renamed, not a second root");
    cr_assert_str_eq(r3.name, "boss");
    meta_user got;
    cr_assert_eq(meta_user_get_by_name(f.ms, "admin", &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_user_get_by_name(f.ms, "boss", &got), 0);
    cr_assert(got.is_root);

    meta_user other = {0};
    strcpy(other.name, "taken");
    cr_assert_eq(meta_user_create(f.ms, &other), 0);
    cr_assert_eq(meta_user_ensure_root(f.ms, "taken", &r3), CAIRN_EEXIST);
    cr_assert_eq(meta_user_get(f.ms, r1.id, &got), 0);
    cr_assert_str_eq(got.name, "boss", "failed rename rolled back");
    fx_close(&f);
}

static int key_list_cb(void *ud, const meta_key *k) {
    collect *c = ud;
    meta_list_entry e = {.key = k->access_key, .key_len = strlen(k->access_key)};
    return collect_cb(c, &e);
}

Test(meta, access_keys) {
    fx f;
    fx_open(&f, 2);
    meta_user a = {0}, b = {0};
    strcpy(a.name, "a");
    strcpy(b.name, "b");
    cr_assert_eq(meta_user_create(f.ms, &a), 0);
    cr_assert_eq(meta_user_create(f.ms, &b), 0);

    meta_key k = {.user_id = a.id, .active = true};
    strcpy(k.access_key, "AKIAZZZ");
    strcpy(k.sealed_secret, "sealed:v1:abcdef");
    cr_assert_eq(meta_key_create(f.ms, &k), 0);
    cr_assert_eq(meta_key_create(f.ms, &k), CAIRN_EEXIST);
    strcpy(k.access_key, "AKIAAAA");
    cr_assert_eq(meta_key_create(f.ms, &k), 0);
    meta_key kb = {.user_id = b.id, .active = true};
    strcpy(kb.access_key, "AKIAB");
    strcpy(kb.sealed_secret, "sealed:v1:b");
    cr_assert_eq(meta_key_create(f.ms, &kb), 0);
    meta_key orphan = {.user_id = 4242, .active = true};
    strcpy(orphan.access_key, "AKIAORPHAN");
    strcpy(orphan.sealed_secret, "x");
    cr_assert_eq(meta_key_create(f.ms, &orphan), CAIRN_ENOTFOUND, "user must exist");

    meta_key got;
    cr_assert_eq(meta_key_get(f.ms, "AKIAZZZ", &got), 0);
    cr_assert_eq(got.user_id, a.id);
    cr_assert_str_eq(got.sealed_secret, "sealed:v1:abcdef");
    cr_assert(got.active);
    cr_assert_gt(got.created_ms, 0);
    cr_assert_eq(meta_key_get(f.ms, "AKIANONE", &got), CAIRN_ENOTFOUND);

    cr_assert_eq(meta_key_set_active(f.ms, "AKIAZZZ", false), 0);
    cr_assert_eq(meta_key_get(f.ms, "AKIAZZZ", &got), 0);
    cr_assert_not(got.active);
    cr_assert_eq(meta_key_set_active(f.ms, "AKIANONE", true), CAIRN_ENOTFOUND);

    collect c = {0};
    cr_assert_eq(meta_key_list(f.ms, a.id, key_list_cb, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.keys[0], "AKIAAAA");
    cr_assert_str_eq(c.keys[1], "AKIAZZZ");
    collect_free(&c);
    cr_assert_eq(meta_key_list(f.ms, -1, key_list_cb, &c), 0);
    cr_assert_eq(c.n, 3);
    collect_free(&c);
    fx_close(&f);
}

/* ---- buckets -------------------------------------------------------------------- */

static int bucket_list_cb(void *ud, const meta_bucket *b) {
    collect *c = ud;
    meta_list_entry e = {.key = b->name, .key_len = strlen(b->name)};
    return collect_cb(c, &e);
}

Test(meta, buckets) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "zeta", 1);
    mk_bucket(f.ms, "alpha", 2);
    mk_bucket(f.ms, "mid", 1);

    meta_bucket dup = {.owner_id = 9};
    strcpy(dup.name, "alpha");
    int64_t owner = 0;
    cr_assert_eq(meta_bucket_create(f.ms, &dup, &owner), CAIRN_EEXIST);
    cr_assert_eq(owner, 2, "existing owner reported");
    cr_assert_eq(meta_bucket_create(f.ms, &dup, NULL), CAIRN_EEXIST);

    meta_bucket got;
    cr_assert_eq(meta_bucket_get(f.ms, "alpha", &got), 0);
    cr_assert_eq(got.owner_id, 2);
    cr_assert_eq(got.created_ms, 1000);
    cr_assert_str_eq(got.region, "us-east-1");
    cr_assert_not(got.public_read);
    cr_assert_eq(meta_bucket_get(f.ms, "nope", &got), CAIRN_ENOTFOUND);

    cr_assert_eq(meta_bucket_set_public(f.ms, "alpha", true), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "alpha", &got), 0);
    cr_assert(got.public_read);
    cr_assert_eq(meta_bucket_set_public(f.ms, "nope", true), CAIRN_ENOTFOUND);

    collect c = {0};
    cr_assert_eq(meta_bucket_list(f.ms, -1, bucket_list_cb, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert_str_eq(c.keys[0], "alpha");
    cr_assert_str_eq(c.keys[1], "mid");
    cr_assert_str_eq(c.keys[2], "zeta");
    collect_free(&c);
    cr_assert_eq(meta_bucket_list(f.ms, 1, bucket_list_cb, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.keys[0], "mid");
    cr_assert_str_eq(c.keys[1], "zeta");
    collect_free(&c);
    fx_close(&f);
}

Test(meta, bucket_delete_not_empty_then_empty) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    put_key(f.ms, "b", "k", 1);
    cr_assert_eq(meta_bucket_delete(f.ms, "b"), CAIRN_ENOTEMPTY);
    meta_bucket got;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0, "still there");
    cr_assert_eq(meta_object_delete(f.ms, "b", "k", 1, NULL), 0);
    cr_assert_eq(meta_bucket_delete(f.ms, "b"), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_bucket_delete(f.ms, "b"), CAIRN_ENOTFOUND);
    meta_object o = mk_obj("b", "k", 1, 1);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_ENOTFOUND, "bucket is gone");
    fx_close(&f);
}

/* A callback that calls back into meta must not deadlock, even with one reader. */
static int reentrant_cb(void *ud, const meta_bucket *b) {
    meta_store *ms = ud;
    meta_bucket again;
    cr_assert_eq(meta_bucket_get(ms, b->name, &again), 0);
    return 0;
}

Test(meta, list_callbacks_may_reenter, .timeout = 30) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "one", 1);
    mk_bucket(f.ms, "two", 1);
    cr_assert_eq(meta_bucket_list(f.ms, -1, reentrant_cb, f.ms), 0);
    fx_close(&f);
}

/* ---- objects -------------------------------------------------------------------- */

Test(meta, object_put_get_delete_and_errors) {
    fx f;
    fx_open(&f, 2);
    meta_object o = mk_obj("nobucket", "k", 1, 1);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_ENOTFOUND);

    mk_bucket(f.ms, "b", 1);
    o = mk_obj("b", "dir/file.txt", 12, 123);
    strcpy(o.etag, "0123456789abcdef0123456789abcdef-3");
    bool had = true;
    meta_object rep;
    cr_assert_eq(meta_object_put(f.ms, &o, &rep, &had), 0);
    cr_assert_not(had, "first put replaces nothing");

    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", "dir/file.txt", 12, false, &got), 0);
    cr_assert_str_eq(got.bucket, "b");
    cr_assert_eq(got.key_len, 12);
    cr_assert_str_eq(got.key, "dir/file.txt");
    cr_assert_str_eq(got.version_id, o.version_id);
    cr_assert_eq(got.size, 123);
    cr_assert_str_eq(got.etag, "0123456789abcdef0123456789abcdef-3");
    cr_assert_eq(got.mtime_ms, o.mtime_ms);
    cr_assert_eq(got.owner_id, 1);
    cr_assert_eq(got.storage, META_STORE_FILE);
    cr_assert_str_eq(got.headers_json, "{\"content-type\":\"text/plain\"}");
    cr_assert_null(got.data);
    meta_object_clear(&got);
    cr_assert_null(got.headers_json);

    cr_assert_eq(meta_object_get(f.ms, "b", "dir/file.tx", 11, false, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "other", "dir/file.txt", 12, false, &got), CAIRN_ENOTFOUND);

    int64_t n = -1;
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 1);

    meta_object del;
    cr_assert_eq(meta_object_delete(f.ms, "b", "dir/file.txt", 12, &del), 0);
    cr_assert_str_eq(del.version_id, o.version_id);
    cr_assert_eq(del.storage, META_STORE_FILE);
    meta_object_clear(&del);
    cr_assert_eq(meta_object_delete(f.ms, "b", "dir/file.txt", 12, &del), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "b", "dir/file.txt", 12, false, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 0);

    /* Invalid objects are refused before touching the database. */
    o = mk_obj("b", "x", 0, 1);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "empty key");
    o = mk_obj("b", "a\0b", 3, 1);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "NUL in key");
    o = mk_obj("b", "x", 1, 1);
    o.key_len = 1025;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "key too long");
    o = mk_obj("b", "x", 1, 5);
    o.storage = META_STORE_INLINE;
    o.data = (uint8_t *)"abc";
    o.data_len = 3;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "size != inline bytes");
    fx_close(&f);
}

Test(meta, odd_keys_round_trip) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    char long_key[1024];
    memset(long_key, 'k', sizeof long_key);
    struct {
        const char *k;
        size_t len; /* 0: use strlen */
    } keys[] = {
        {"a/b/c", 0},          {"a//b", 0},         {"../etc/passwd", 0}, {"with space", 0},
        {"100%25 %zz", 0},     {"\xc3\xa9t\xc3\xa9/\xe2\x82\xac", 0}, {"/", 0},
        {"trailing/", 0},      {"\xf0\x9f\x98\x80", 0}, {"\x7f\x01\x1f", 0}, {long_key, 1024},
    };
    size_t nkeys = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < nkeys; i++)
        if (!keys[i].len) keys[i].len = strlen(keys[i].k);
    for (size_t i = 0; i < nkeys; i++) put_key(f.ms, "b", keys[i].k, keys[i].len);
    for (size_t i = 0; i < nkeys; i++) {
        meta_object got;
        cr_assert_eq(meta_object_get(f.ms, "b", keys[i].k, keys[i].len, false, &got), 0,
                     "key %zu", i);
        cr_assert_eq(got.key_len, keys[i].len);
        cr_assert_eq(memcmp(got.key, keys[i].k, keys[i].len), 0);
        cr_assert_eq(got.key[got.key_len], '\0');
        meta_object_clear(&got);
    }
    collect c = {0};
    bool more = true;
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 1000, &c, &more), 0);
    cr_assert_eq(c.n, (int)nkeys);
    cr_assert_not(more);
    collect_free(&c);
    /* Each odd key is also found as its own prefix. */
    for (size_t i = 0; i < nkeys; i++) {
        cr_assert_eq(list_all(f.ms, "b", keys[i].k, keys[i].len, NULL, 0, false, 1000, &c, NULL),
                     0);
        cr_assert_geq(c.n, 1);
        cr_assert(key_is(&c, 0, keys[i].k, keys[i].len), "prefix %zu", i);
        collect_free(&c);
    }
    fx_close(&f);
}

Test(meta, listing_is_binary_byte_order) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    /* Inserted shuffled; expected order is memcmp order, shorter first on ties. */
    const char *sorted[] = {"A", "Z", "a", "a/", "a/b", "a0", "b", "\x7f", "\xc3\xa9", "\xff"};
    const int order[] = {6, 3, 9, 0, 8, 2, 5, 1, 7, 4};
    for (int i = 0; i < 10; i++) put_key(f.ms, "b", sorted[order[i]], strlen(sorted[order[i]]));
    mk_bucket(f.ms, "other", 1);
    put_key(f.ms, "other", "a", 1); /* another bucket's keys never leak in */
    collect c = {0};
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 10);
    for (int i = 0; i < 10; i++)
        cr_assert(key_is(&c, i, sorted[i], strlen(sorted[i])), "position %d is %s", i, c.keys[i]);
    collect_free(&c);
    fx_close(&f);
}

Test(meta, listing_prefix_filter) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    const char *keys[] = {"a",        "a/",       "a/1",      "a/2/x",    "a0",
                          "a\xfe",    "a\xff",    "a\xff\x00", "a\xff\x01", "a\xff\xff",
                          "a\xff\xff\xff", "b",   "\xff\xfe", "\xff\xff", "\xff\xff\x01"};
    size_t lens[15];
    for (int i = 0; i < 15; i++) lens[i] = strlen(keys[i]);
    lens[7] = 0; /* "a\xff\x00" would contain NUL: skip it */
    for (int i = 0; i < 15; i++)
        if (lens[i]) put_key(f.ms, "b", keys[i], lens[i]);

    collect c = {0};
    cr_assert_eq(list_all(f.ms, "b", "a/", 2, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 3);
    cr_assert(key_is(&c, 0, "a/", 2));
    cr_assert(key_is(&c, 1, "a/1", 3));
    cr_assert(key_is(&c, 2, "a/2/x", 5));
    collect_free(&c);

    /* A prefix ending in 0xFF: its successor is "b", not "a\x100". */
    cr_assert_eq(list_all(f.ms, "b", "a\xff", 2, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 4);
    cr_assert(key_is(&c, 0, "a\xff", 2));
    cr_assert(key_is(&c, 1, "a\xff\x01", 3));
    cr_assert(key_is(&c, 2, "a\xff\xff", 3));
    cr_assert(key_is(&c, 3, "a\xff\xff\xff", 4));
    collect_free(&c);

    /* All-0xFF prefix: no upper bound at all. */
    cr_assert_eq(list_all(f.ms, "b", "\xff\xff", 2, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 2);
    cr_assert(key_is(&c, 0, "\xff\xff", 2));
    cr_assert(key_is(&c, 1, "\xff\xff\x01", 3));
    collect_free(&c);

    cr_assert_eq(list_all(f.ms, "b", "nothing", 7, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(list_all(f.ms, "b", "a\0", 2, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 0, "a prefix with NUL matches nothing");
    fx_close(&f);
}

Test(meta, listing_from_exclusive_inclusive_and_more) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    const char *keys[] = {"p/a", "p/b", "p/c", "p/d", "q"};
    for (int i = 0; i < 5; i++) put_key(f.ms, "b", keys[i], strlen(keys[i]));

    collect c = {0};
    bool more = false;
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, "p/b", 3, false, 100, &c, &more), 0);
    cr_assert_eq(c.n, 3);
    cr_assert(key_is(&c, 0, "p/c", 3), "exclusive skips from itself");
    cr_assert_not(more);
    collect_free(&c);

    cr_assert_eq(list_all(f.ms, "b", NULL, 0, "p/b", 3, true, 100, &c, &more), 0);
    cr_assert_eq(c.n, 4);
    cr_assert(key_is(&c, 0, "p/b", 3), "inclusive starts at from");
    collect_free(&c);

    cr_assert_eq(list_all(f.ms, "b", NULL, 0, "p/bb", 4, true, 100, &c, &more), 0);
    cr_assert(key_is(&c, 0, "p/c", 3), "absent from starts at the next key");
    collect_free(&c);

    /* from before the prefix: the prefix wins; after the prefix range: empty. */
    cr_assert_eq(list_all(f.ms, "b", "p/", 2, "a", 1, false, 100, &c, &more), 0);
    cr_assert_eq(c.n, 4);
    collect_free(&c);
    cr_assert_eq(list_all(f.ms, "b", "p/", 2, "p/c", 3, false, 100, &c, &more), 0);
    cr_assert_eq(c.n, 1);
    cr_assert(key_is(&c, 0, "p/d", 3));
    cr_assert_not(more, "q is outside the prefix");
    collect_free(&c);
    cr_assert_eq(list_all(f.ms, "b", "p/", 2, "p/z", 3, false, 100, &c, &more), 0);
    cr_assert_eq(c.n, 0);
    cr_assert_not(more);
    collect_free(&c);

    /* more: exactly limit rows delivered when more exist. */
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 2, &c, &more), 0);
    cr_assert_eq(c.n, 2);
    cr_assert(more);
    collect_free(&c);
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 5, &c, &more), 0);
    cr_assert_eq(c.n, 5);
    cr_assert_not(more, "exactly limit rows exist");
    collect_free(&c);
    cr_assert_eq(list_all(f.ms, "b", "p/", 2, NULL, 0, false, 3, &c, &more), 0);
    cr_assert_eq(c.n, 3);
    cr_assert(more);
    collect_free(&c);
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 0, &c, &more), 0);
    cr_assert_eq(c.n, 0);
    cr_assert(more, "limit 0 still reports that rows exist");
    collect_free(&c);

    c.stop_after = 2;
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 100, &c, &more), 0);
    cr_assert_eq(c.n, 2, "callback stops the listing");
    collect_free(&c);

    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, -1, &c, &more), CAIRN_EINVAL);
    fx_close(&f);
}

Test(meta, paging_10000_objects_in_pages_of_1000, .timeout = 120) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "big", 1);
    char key[32];
    /* Inserted in a scrambled order (7919 is prime, coprime with 10000). */
    for (int i = 0; i < 10000; i++) {
        int n = (int)(((long)i * 7919) % 10000);
        int len = snprintf(key, sizeof key, "obj/%05d", n);
        put_key(f.ms, "big", key, (size_t)len);
    }
    int64_t count = 0;
    cr_assert_eq(meta_object_count(f.ms, "big", &count), 0);
    cr_assert_eq(count, 10000);

    char last[32] = "";
    size_t last_len = 0;
    int seen = 0, pages = 0;
    bool more = true;
    while (more) {
        collect c = {0};
        cr_assert_eq(list_all(f.ms, "big", "obj/", 4, seen ? last : NULL, last_len, false, 1000,
                              &c, &more),
                     0);
        cr_assert_leq(c.n, 1000);
        for (int i = 0; i < c.n; i++) {
            char want[32];
            snprintf(want, sizeof want, "obj/%05d", seen + i);
            cr_assert_str_eq(c.keys[i], want, "each key exactly once, in order");
        }
        seen += c.n;
        if (c.n) {
            memcpy(last, c.keys[c.n - 1], c.lens[c.n - 1]);
            last_len = c.lens[c.n - 1];
        }
        pages++;
        collect_free(&c);
        cr_assert_leq(pages, 11);
    }
    cr_assert_eq(seen, 10000);
    cr_assert_eq(pages, 10, "the 10th page says no more");
    fx_close(&f);
}

/* ---- replacement and inline data ---------------------------------------------- */

Test(meta, overwrite_returns_replaced_version) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    meta_object v1 = mk_obj("b", "k", 1, 3);
    v1.storage = META_STORE_INLINE;
    v1.data = (uint8_t *)"one";
    v1.data_len = 3;
    cr_assert_eq(meta_object_put(f.ms, &v1, NULL, NULL), 0);

    meta_object v2 = mk_obj("b", "k", 1, 1000000);
    v2.headers_json = "{\"x-amz-meta-v\":\"2\"}";
    meta_object rep;
    bool had = false;
    cr_assert_eq(meta_object_put(f.ms, &v2, &rep, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(rep.version_id, v1.version_id);
    cr_assert_eq(rep.storage, META_STORE_INLINE);
    cr_assert_eq(rep.size, 3);
    cr_assert_null(rep.data, "replaced comes without inline data");
    cr_assert_eq(count_rows(f.path, "object_data"), 0, "replaced inline bytes are gone");
    cr_assert_str_eq(rep.headers_json, "{\"content-type\":\"text/plain\"}");
    meta_object_clear(&rep);

    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", "k", 1, true, &got), 0);
    cr_assert_str_eq(got.version_id, v2.version_id);
    cr_assert_eq(got.storage, META_STORE_FILE);
    cr_assert_null(got.data, "file-stored objects carry no inline bytes");
    cr_assert_str_eq(got.headers_json, "{\"x-amz-meta-v\":\"2\"}");
    meta_object_clear(&got);

    meta_object v3 = mk_obj("b", "k", 1, 5);
    v3.storage = META_STORE_INLINE;
    v3.data = (uint8_t *)"three";
    v3.data_len = 5;
    cr_assert_eq(meta_object_put(f.ms, &v3, &rep, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(rep.version_id, v2.version_id);
    cr_assert_eq(rep.storage, META_STORE_FILE);
    meta_object_clear(&rep);
    cr_assert_eq(meta_object_get(f.ms, "b", "k", 1, true, &got), 0);
    cr_assert_eq(got.data_len, 5);
    cr_assert_eq(memcmp(got.data, "three", 5), 0);
    meta_object_clear(&got);
    cr_assert_eq(meta_object_put(f.ms, &v3, NULL, &had), 0, "NULL replaced is allowed");
    cr_assert(had);
    int64_t n = 0;
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 1);
    fx_close(&f);
}

Test(meta, inline_data_round_trip) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    uint8_t bytes[4096];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 31 + 7);
    bytes[10] = 0; /* binary, with NULs */
    meta_object o = mk_obj("b", "bin", 3, sizeof bytes);
    o.storage = META_STORE_INLINE;
    o.data = bytes;
    o.data_len = sizeof bytes;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);

    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", "bin", 3, true, &got), 0);
    cr_assert_eq(got.storage, META_STORE_INLINE);
    cr_assert_eq(got.data_len, sizeof bytes);
    cr_assert_eq(memcmp(got.data, bytes, sizeof bytes), 0);
    meta_object_clear(&got);
    cr_assert_null(got.data);
    cr_assert_eq(got.data_len, 0);
    cr_assert_eq(meta_object_get(f.ms, "b", "bin", 3, false, &got), 0);
    cr_assert_null(got.data, "with_data=false loads no bytes");
    cr_assert_eq(got.size, (int64_t)sizeof bytes);
    meta_object_clear(&got);

    meta_object e = mk_obj("b", "empty", 5, 0);
    e.storage = META_STORE_INLINE;
    e.headers_json = NULL; /* stored as {} */
    cr_assert_eq(meta_object_put(f.ms, &e, NULL, NULL), 0);
    cr_assert_eq(meta_object_get(f.ms, "b", "empty", 5, true, &got), 0);
    cr_assert_eq(got.data_len, 0);
    cr_assert_not_null(got.data, "inline data is never NULL when asked for");
    cr_assert_str_eq(got.headers_json, "{}");
    meta_object_clear(&got);

    meta_object del;
    cr_assert_eq(meta_object_delete(f.ms, "b", "bin", 3, &del), 0);
    cr_assert_str_eq(del.version_id, o.version_id);
    meta_object_clear(&del);
    cr_assert_eq(meta_object_get(f.ms, "b", "bin", 3, true, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(count_rows(f.path, "object_data"), 1, "only the empty object's row is left");
    fx_close(&f);
}

/* ---- concurrency ---------------------------------------------------------------- */

typedef struct {
    meta_store *ms;
    int id;
    int failures;
} worker;

#define WORKER_PUTS 250

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < WORKER_PUTS; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "t%d/%04d", w->id, i);
        meta_object o = mk_obj("c", key, (size_t)len, i);
        if (meta_object_put(w->ms, &o, NULL, NULL) != 0) {
            w->failures++;
            continue;
        }
        /* Read-after-write: the get runs on a reader connection, not the writer. */
        meta_object got;
        if (meta_object_get(w->ms, "c", key, (size_t)len, false, &got) != 0 ||
            strcmp(got.version_id, o.version_id) != 0)
            w->failures++;
        meta_object_clear(&got);
        /* Another thread's shared key is overwritten concurrently: it must always exist. */
        meta_object s = mk_obj("c", "shared", 6, w->id);
        if (meta_object_put(w->ms, &s, NULL, NULL) != 0) w->failures++;
        if (meta_object_get(w->ms, "c", "shared", 6, false, &got) != 0) w->failures++;
        meta_object_clear(&got);
        if (i % 50 == 49) {
            char prefix[8];
            int plen = snprintf(prefix, sizeof prefix, "t%d/", w->id);
            collect c = {0};
            bool more = true;
            if (list_all(w->ms, "c", prefix, (size_t)plen, NULL, 0, false, 1000, &c, &more) != 0 ||
                c.n != i + 1 || more)
                w->failures++;
            collect_free(&c);
        }
    }
    return NULL;
}

Test(meta, concurrent_writers_and_readers_read_after_write, .timeout = 120) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "c", 1);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.ms = f.ms, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) cr_assert_eq(w[i].failures, 0, "worker %d", i);
    int64_t n = 0;
    cr_assert_eq(meta_object_count(f.ms, "c", &n), 0);
    cr_assert_eq(n, 4 * WORKER_PUTS + 1);
    fx_close(&f);
}

/* ---- the durable job queue ------------------------------------------------------------ */

static int64_t enqueue_job(meta_store *ms, const char *kind, int priority, int64_t run_at, const char *unique) {
    meta_job j = {.priority = priority, .run_at_ms = run_at, .max_attempts = 3};
    snprintf(j.kind, sizeof j.kind, "%s", kind);
    j.args = (char *)"{\"n\":1}";
    if (unique) snprintf(j.unique_key, sizeof j.unique_key, "%s", unique);
    int64_t id = 0;
    cr_assert_eq(meta_job_enqueue(ms, &j, &id), 0, "enqueue %s", kind);
    cr_assert_gt(id, 0);
    return id;
}

/* Claims (which must succeed) and returns the claimed job's id. */
static int64_t claim_id(meta_store *ms, const char *owner, int64_t now, int64_t lease) {
    meta_job j;
    cr_assert_eq(meta_job_claim(ms, owner, now, lease, &j), 0, "%s claims at %lld", owner, (long long)now);
    int64_t id = j.id;
    meta_job_clear(&j);
    return id;
}

static void expect_state(meta_store *ms, int64_t id, const char *state, int attempts) {
    meta_job j;
    cr_assert_eq(meta_job_get(ms, id, &j), 0);
    cr_expect_str_eq(j.state, state, "job %lld", (long long)id);
    cr_expect_eq(j.attempts, attempts, "job %lld attempts %d", (long long)id, j.attempts);
    meta_job_clear(&j);
}

Test(jobs, claims_by_priority_then_run_at_and_waits_for_due_time) {
    fx f;
    fx_open(&f, 2);
    int64_t late = enqueue_job(f.ms, "k", 0, 2000, NULL);
    int64_t early = enqueue_job(f.ms, "k", 0, 1000, NULL);
    int64_t urgent = enqueue_job(f.ms, "k", 5, 1500, NULL);
    int64_t future = enqueue_job(f.ms, "k", 9, 100000, NULL);
    meta_job j;
    int64_t order[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(meta_job_claim(f.ms, "w1", 5000, 1000, &j), 0);
        order[i] = j.id;
        cr_expect_str_eq(j.state, "running");
        cr_expect_str_eq(j.args, "{\"n\":1}");
        cr_expect_eq(j.attempts, 1);
        meta_job_clear(&j);
    }
    cr_expect_eq(order[0], urgent);
    cr_expect_eq(order[1], early);
    cr_expect_eq(order[2], late);
    /* The delayed one is not due at 5000, whatever its priority. */
    cr_expect_eq(meta_job_claim(f.ms, "w1", 5000, 1000, &j), CAIRN_ENOTFOUND);
    cr_expect_eq(claim_id(f.ms, "w1", 100000, 1000000), future);
    fx_close(&f);
}

Test(jobs, unique_key_dedups_until_the_row_is_gone) {
    fx f;
    fx_open(&f, 2);
    int64_t a = enqueue_job(f.ms, "k", 0, 1000, "period:1");
    meta_job j = {.run_at_ms = 1000, .max_attempts = 3};
    strcpy(j.kind, "k");
    j.args = (char *)"{}";
    strcpy(j.unique_key, "period:1");
    int64_t id = 0;
    cr_expect_eq(meta_job_enqueue(f.ms, &j, &id), CAIRN_EEXIST);
    cr_expect_eq(id, a);
    cr_expect_neq(enqueue_job(f.ms, "k", 0, 1000, "period:2"), a);
    /* A plain unique key stays taken after its job completes (periodic jobs:
     * once per period)... */
    meta_job c;
    cr_assert_eq(meta_job_claim(f.ms, "w", 5000, 1000, &c), 0);
    cr_assert_eq(c.id, a);
    meta_job_clear(&c);
    cr_assert_eq(meta_job_finish(f.ms, a, "w", "completed", 0, ""), 0);
    cr_expect_eq(meta_job_enqueue(f.ms, &j, &id), CAIRN_EEXIST);
    /* ...while unique_while_pending only dedups against a job still to run. */
    j.unique_while_pending = true;
    strcpy(j.unique_key, "heal:v1");
    int64_t h1 = 0, h2 = 0, h3 = 0;
    cr_assert_eq(meta_job_enqueue(f.ms, &j, &h1), 0);
    cr_expect_eq(meta_job_enqueue(f.ms, &j, &h2), CAIRN_EEXIST);
    cr_expect_eq(h2, h1);
    cr_assert_eq(meta_job_cancel(f.ms, h1), 0);
    cr_assert_eq(meta_job_enqueue(f.ms, &j, &h3), 0);
    cr_expect_neq(h3, h1);
    meta_job old;
    cr_assert_eq(meta_job_get(f.ms, h1, &old), 0);
    cr_expect_str_eq(old.unique_key, "");
    cr_expect_str_eq(old.state, "cancelled");
    meta_job_clear(&old);
    fx_close(&f);
}

Test(jobs, finish_retry_discard_and_lost_leases) {
    fx f;
    fx_open(&f, 2);
    int64_t id = enqueue_job(f.ms, "k", 0, 1000, NULL);
    meta_job j;
    claim_id(f.ms, "w1", 1000, 500);
    /* w1's lease lapses at 1500; w2 takes the job over, and w1's late finish loses. */
    cr_expect_eq(meta_job_claim(f.ms, "w2", 1400, 500, &j), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_claim(f.ms, "w2", 1600, 500, &j), 0);
    cr_expect_eq(j.id, id);
    cr_expect_str_eq(j.lease_owner, "w2");
    meta_job_clear(&j);
    expect_state(f.ms, id, "running", 2);
    cr_expect_eq(meta_job_finish(f.ms, id, "w1", "completed", 0, ""), CAIRN_ECONFLICT);
    cr_expect_eq(meta_job_extend(f.ms, id, "w1", 99999), CAIRN_ECONFLICT);
    /* w2 extends, so the job is not claimable at 2200 any more. */
    cr_assert_eq(meta_job_extend(f.ms, id, "w2", 5000), 0);
    cr_expect_eq(meta_job_claim(f.ms, "w3", 2200, 500, &j), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_finish(f.ms, id, "w2", "retryable", 3000, "boom"), 0);
    cr_assert_eq(meta_job_get(f.ms, id, &j), 0);
    cr_expect_str_eq(j.state, "retryable");
    cr_expect_str_eq(j.last_error, "boom");
    cr_expect_str_eq(j.lease_owner, "");
    meta_job_clear(&j);
    cr_expect_eq(meta_job_claim(f.ms, "w3", 2999, 500, &j), CAIRN_ENOTFOUND);
    claim_id(f.ms, "w3", 3000, 500);
    cr_assert_eq(meta_job_finish(f.ms, id, "w3", "discarded", 0, "boom again"), 0);
    expect_state(f.ms, id, "discarded", 3);
    cr_expect_eq(meta_job_claim(f.ms, "w3", 100000, 500, &j), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_job_finish(f.ms, id, "w3", "bogus", 0, ""), CAIRN_EINVAL);
    /* retry: available now, attempts reset; completed cannot be retried or cancelled. */
    cr_assert_eq(meta_job_retry(f.ms, id), 0);
    expect_state(f.ms, id, "available", 0);
    claim_id(f.ms, "w4", time_now_ms() + 1000, 500);  /* retry uses the clock */
    cr_expect_eq(meta_job_cancel(f.ms, id), CAIRN_ECONFLICT);   /* running */
    cr_assert_eq(meta_job_finish(f.ms, id, "w4", "completed", 0, ""), 0);
    cr_expect_eq(meta_job_retry(f.ms, id), CAIRN_ECONFLICT);
    cr_expect_eq(meta_job_cancel(f.ms, id), CAIRN_ECONFLICT);
    cr_expect_eq(meta_job_get(f.ms, 424242, &j), CAIRN_ENOTFOUND);
    fx_close(&f);
}

Test(jobs, release_gives_the_job_back_without_counting_the_attempt) {
    fx f;
    fx_open(&f, 2);
    int64_t id = enqueue_job(f.ms, "k", 0, 1000, NULL);
    meta_job j;
    claim_id(f.ms, "w1", 1000, 60000);
    cr_expect_eq(meta_job_release(f.ms, id, "someone-else"), CAIRN_ECONFLICT);
    cr_assert_eq(meta_job_release(f.ms, id, "w1"), 0);
    expect_state(f.ms, id, "available", 0);
    /* Claimable at once, long before the 60 s lease would have lapsed. */
    cr_assert_eq(meta_job_claim(f.ms, "w2", 1001, 60000, &j), 0);
    cr_expect_eq(j.id, id);
    cr_expect_eq(j.attempts, 1);
    meta_job_clear(&j);
    fx_close(&f);
}

Test(jobs, cancel_list_and_counts) {
    fx f;
    fx_open(&f, 2);
    int64_t a = enqueue_job(f.ms, "one", 0, 1000, NULL);
    int64_t b = enqueue_job(f.ms, "two", 0, 1000, NULL);
    cr_assert_eq(meta_job_cancel(f.ms, a), 0);
    meta_job j;
    cr_assert_eq(meta_job_claim(f.ms, "w", 2000, 100, &j), 0);
    cr_expect_eq(j.id, b);   /* the cancelled job is never claimed */
    meta_job_clear(&j);
    cr_expect_eq(meta_job_claim(f.ms, "w", 2000, 100, &j), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_retry(f.ms, a), 0);   /* a cancelled job can be revived */
    expect_state(f.ms, a, "available", 0);
    fx_close(&f);
}

Test(jobs, prune_deletes_only_finished_jobs_past_their_retention) {
    fx f;
    fx_open(&f, 2);
    int64_t done = enqueue_job(f.ms, "k", 9, 1000, NULL);
    int64_t dead = enqueue_job(f.ms, "k", 8, 1000, NULL);
    int64_t cancelled = enqueue_job(f.ms, "k", 0, 1000, NULL);
    int64_t waiting = enqueue_job(f.ms, "k", 0, 1000, NULL);
    meta_job j;
    cr_assert_eq(claim_id(f.ms, "w", 1000, 1000), done);
    cr_assert_eq(meta_job_finish(f.ms, done, "w", "completed", 0, ""), 0);
    cr_assert_eq(claim_id(f.ms, "w", 1000, 1000), dead);
    cr_assert_eq(meta_job_finish(f.ms, dead, "w", "discarded", 0, "gave up"), 0);
    cr_assert_eq(meta_job_cancel(f.ms, cancelled), 0);
    int64_t now = time_now_ms(), n = -1;
    /* Nothing finished before the cut-offs yet. */
    cr_assert_eq(meta_job_prune(f.ms, now - 60000, now - 60000, 1000, &n), 0);
    cr_expect_eq(n, 0);
    /* Completed and cancelled past retention go; the discarded one has a longer one. */
    cr_assert_eq(meta_job_prune(f.ms, now + 60000, now - 60000, 1000, &n), 0);
    cr_expect_eq(n, 2);
    cr_expect_eq(meta_job_get(f.ms, done, &j), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_job_get(f.ms, cancelled, &j), CAIRN_ENOTFOUND);
    expect_state(f.ms, dead, "discarded", 1);
    cr_assert_eq(meta_job_prune(f.ms, now + 60000, now + 60000, 1000, &n), 0);
    cr_expect_eq(n, 1);
    expect_state(f.ms, waiting, "available", 0);   /* never pruned */
    cr_expect_eq(meta_job_prune(f.ms, 0, 0, 0, &n), CAIRN_EINVAL);
    fx_close(&f);
}

Test(jobs, finish_claim_ends_one_run_and_takes_the_next_in_one_go) {
    fx f;
    fx_open(&f, 2);
    int64_t a = enqueue_job(f.ms, "k", 2, 1000, NULL);
    int64_t b = enqueue_job(f.ms, "k", 1, 1000, NULL);
    meta_job next;
    cr_assert_eq(claim_id(f.ms, "w", 1000, 1000), a);
    int frc = -99;
    cr_assert_eq(meta_job_finish_claim(f.ms, a, "w", "completed", 0, "", 1000, 1000, &frc, &next), 0);
    cr_expect_eq(frc, 0);
    cr_expect_eq(next.id, b);
    cr_expect_str_eq(next.state, "running");
    cr_expect_str_eq(next.lease_owner, "w");
    meta_job_clear(&next);
    expect_state(f.ms, a, "completed", 1);
    /* Nothing left: the finish still lands. */
    cr_assert_eq(meta_job_finish_claim(f.ms, b, "w", "retryable", 50000, "later", 1000, 1000, &frc, &next),
                 CAIRN_ENOTFOUND);
    cr_expect_eq(frc, 0);
    expect_state(f.ms, b, "retryable", 1);
    /* A lost lease: the finish conflicts, the claim still happens. */
    claim_id(f.ms, "w1", 50000, 100);
    claim_id(f.ms, "w2", 60000, 100000);   /* w1's lease lapsed */
    int64_t c = enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_eq(meta_job_finish_claim(f.ms, b, "w1", "completed", 0, "", 60000, 1000, &frc, &next), 0);
    cr_expect_eq(frc, CAIRN_ECONFLICT);
    cr_expect_eq(next.id, c);
    meta_job_clear(&next);
    expect_state(f.ms, b, "running", 3);   /* w, w1, w2 */
    cr_expect_eq(meta_job_finish_claim(f.ms, b, "w2", "bogus", 0, "", 0, 0, &frc, &next), CAIRN_EINVAL);
    fx_close(&f);
}
