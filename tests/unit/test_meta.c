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
    return meta_object_list(ms, bucket, 0, prefix, plen, from, flen, incl, limit, collect_cb, c, more);
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
    cr_assert_eq(meta_object_get(f.ms, "persist", 0, "a/b.txt", 7, false, &got), 0);
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
    cr_assert_eq(meta_bucket_delete(f.ms, "b", 0), CAIRN_ENOTEMPTY);
    meta_bucket got;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0, "still there");
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "k", 1, NULL), 0);
    cr_assert_eq(meta_bucket_delete(f.ms, "b", 0), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_bucket_delete(f.ms, "b", 0), CAIRN_ENOTFOUND);
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
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "dir/file.txt", 12, false, &got), 0);
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

    cr_assert_eq(meta_object_get(f.ms, "b", 0, "dir/file.tx", 11, false, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "other", 0, "dir/file.txt", 12, false, &got), CAIRN_ENOTFOUND);

    int64_t n = -1;
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 1);

    meta_object del;
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "dir/file.txt", 12, &del), 0);
    cr_assert_str_eq(del.version_id, o.version_id);
    cr_assert_eq(del.storage, META_STORE_FILE);
    meta_object_clear(&del);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "dir/file.txt", 12, &del), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "dir/file.txt", 12, false, &got), CAIRN_ENOTFOUND);
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
        cr_assert_eq(meta_object_get(f.ms, "b", 0, keys[i].k, keys[i].len, false, &got), 0,
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
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, true, &got), 0);
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
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, true, &got), 0);
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
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "bin", 3, true, &got), 0);
    cr_assert_eq(got.storage, META_STORE_INLINE);
    cr_assert_eq(got.data_len, sizeof bytes);
    cr_assert_eq(memcmp(got.data, bytes, sizeof bytes), 0);
    meta_object_clear(&got);
    cr_assert_null(got.data);
    cr_assert_eq(got.data_len, 0);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "bin", 3, false, &got), 0);
    cr_assert_null(got.data, "with_data=false loads no bytes");
    cr_assert_eq(got.size, (int64_t)sizeof bytes);
    meta_object_clear(&got);

    meta_object e = mk_obj("b", "empty", 5, 0);
    e.storage = META_STORE_INLINE;
    e.headers_json = NULL; /* stored as {} */
    cr_assert_eq(meta_object_put(f.ms, &e, NULL, NULL), 0);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "empty", 5, true, &got), 0);
    cr_assert_eq(got.data_len, 0);
    cr_assert_not_null(got.data, "inline data is never NULL when asked for");
    cr_assert_str_eq(got.headers_json, "{}");
    meta_object_clear(&got);

    meta_object del;
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "bin", 3, &del), 0);
    cr_assert_str_eq(del.version_id, o.version_id);
    meta_object_clear(&del);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "bin", 3, true, &got), CAIRN_ENOTFOUND);
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
        if (meta_object_get(w->ms, "c", 0, key, (size_t)len, false, &got) != 0 ||
            strcmp(got.version_id, o.version_id) != 0)
            w->failures++;
        meta_object_clear(&got);
        /* Another thread's shared key is overwritten concurrently: it must always exist. */
        meta_object s = mk_obj("c", "shared", 6, w->id);
        if (meta_object_put(w->ms, &s, NULL, NULL) != 0) w->failures++;
        if (meta_object_get(w->ms, "c", 0, "shared", 6, false, &got) != 0) w->failures++;
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

/* ---- bucket identity ---------------------------------------------------------------------- */

/* An upload of bucket (name, id) for key, with one part per version id given. */
static void mk_upload(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, const char *upload_id) {
    meta_upload u = {.bucket_id = bucket_id, .owner_id = 1, .initiated_ms = 1000};
    strcpy(u.upload_id, upload_id);
    strcpy(u.bucket, bucket);
    strcpy(u.key, key);
    u.key_len = strlen(key);
    cr_assert_eq(meta_upload_create(ms, &u), 0, "create upload %s", upload_id);
}

static meta_part mk_part(int number, int64_t size, const char *layout) {
    meta_part p = {.part_number = number, .size = size, .mtime_ms = 1000};
    rand_hex_id(p.version_id, 16);
    rand_hex_id(p.etag, 16);
    strcpy(p.layout, layout);
    return p;
}

static int64_t bucket_id_of(meta_store *ms, const char *name) {
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(ms, name, &b), 0);
    return b.id;
}

static int count_listed(void *ud, const meta_list_entry *e) {
    (void)e;
    (*(int *)ud)++;
    return 0;
}

Test(identity, bucket_ids_are_never_reused) {
    fx f;
    fx_open(&f, 2);
    meta_bucket b = {.owner_id = 1};
    strcpy(b.name, "b");
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), 0);
    int64_t first = b.id;
    cr_assert_gt(first, 0);
    cr_assert_eq(bucket_id_of(f.ms, "b"), first);
    cr_assert_eq(meta_bucket_delete(f.ms, "b", first), 0);
    b.id = 0;
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), 0);
    cr_assert_gt(b.id, first, "a recreated bucket is another bucket");
    /* Deleting by a stale id finds nothing, even though the name exists. */
    cr_assert_eq(meta_bucket_delete(f.ms, "b", first), CAIRN_ENOTFOUND);
    cr_assert_eq(bucket_id_of(f.ms, "b"), b.id);
    fx_reopen(&f);
    mk_bucket(f.ms, "c", 1);
    cr_assert_gt(bucket_id_of(f.ms, "c"), b.id, "ids survive a reopen and keep growing");
    fx_close(&f);
}

Test(identity, nothing_of_a_deleted_bucket_reaches_its_successor) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t old_id = bucket_id_of(f.ms, "b");
    cr_assert_eq(meta_bucket_delete(f.ms, "b", old_id), 0);
    mk_bucket(f.ms, "b", 2);
    int64_t new_id = bucket_id_of(f.ms, "b");
    put_key(f.ms, "b", "k", 1);

    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", old_id, "k", 1, true, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "b", new_id, "k", 1, true, &got), 0);
    meta_object_clear(&got);
    int n = 0;
    cr_assert_eq(meta_object_list(f.ms, "b", old_id, NULL, 0, NULL, 0, false, 100, count_listed, &n, NULL), 0);
    cr_assert_eq(n, 0, "a stale id lists nothing");
    cr_assert_eq(meta_object_list(f.ms, "b", new_id, NULL, 0, NULL, 0, false, 100, count_listed, &n, NULL), 0);
    cr_assert_eq(n, 1);
    meta_object o = mk_obj("b", "k2", 2, 5);
    o.bucket_id = old_id;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_ENOTFOUND, "a put begun on the old bucket lands nowhere");
    cr_assert_eq(meta_object_delete(f.ms, "b", old_id, "k", 1, NULL), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "b", new_id, "k", 1, false, &got), 0, "the successor's object stays");
    meta_object_clear(&got);
    meta_upload u = {.bucket_id = old_id, .owner_id = 1};
    strcpy(u.upload_id, "u1");
    strcpy(u.bucket, "b");
    strcpy(u.key, "k");
    u.key_len = 1;
    cr_assert_eq(meta_upload_create(f.ms, &u), CAIRN_ENOTFOUND);
    fx_close(&f);
}

typedef struct {
    char ids[16][33];
    int n;
} trash_seen;

static int see_trash(void *ud, const meta_trash_entry *e) {
    trash_seen *t = ud;
    cr_assert_lt(t->n, 16);
    strcpy(t->ids[t->n++], e->version_id);
    cr_assert_str_eq(e->layout, "1+0:4096:0123456789abcdef");
    return 0;
}

static int count_uploads(void *ud, const meta_upload *u) {
    (void)u;
    (*(int *)ud)++;
    return 0;
}

Test(identity, deleting_a_bucket_aborts_its_uploads_into_the_trash) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    mk_bucket(f.ms, "keep", 1);
    int64_t id = bucket_id_of(f.ms, "b"), keep = bucket_id_of(f.ms, "keep");
    mk_upload(f.ms, "b", id, "k1", "up1");
    mk_upload(f.ms, "b", id, "k2", "up2");
    mk_upload(f.ms, "keep", keep, "k", "up3");
    const char *layout = "1+0:4096:0123456789abcdef";
    meta_part p1 = mk_part(1, 10, layout), p2 = mk_part(2, 10, layout), p3 = mk_part(1, 10, layout),
              p4 = mk_part(1, 10, layout);
    meta_part old;
    bool had;
    cr_assert_eq(meta_part_put(f.ms, "up1", &p1, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "up1", &p2, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "up2", &p3, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "up3", &p4, &old, &had), 0);
    put_key(f.ms, "b", "obj", 3);
    cr_assert_eq(meta_bucket_delete(f.ms, "b", id), CAIRN_ENOTEMPTY, "objects still block the delete");
    cr_assert_eq(meta_object_delete(f.ms, "b", id, "obj", 3, NULL), 0);
    trash_seen t = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, see_trash, &t), 0);
    cr_assert_eq(t.n, 0);

    cr_assert_eq(meta_bucket_delete(f.ms, "b", id), 0, "uploads in progress do not block it");
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up1", &u), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_get(f.ms, "up2", &u), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_get(f.ms, "up3", &u), 0, "another bucket's upload stays");
    meta_upload_clear(&u);
    bool referenced = true;
    cr_assert_eq(meta_version_referenced(f.ms, p1.version_id, &referenced), 0);
    cr_assert_not(referenced);
    cr_assert_eq(meta_trash_list(f.ms, 100, see_trash, &t), 0);
    cr_assert_eq(t.n, 3, "the three parts are in the trash");
    bool seen[3] = {false};
    for (int i = 0; i < t.n; i++) {
        seen[0] |= !strcmp(t.ids[i], p1.version_id);
        seen[1] |= !strcmp(t.ids[i], p2.version_id);
        seen[2] |= !strcmp(t.ids[i], p3.version_id);
    }
    cr_assert(seen[0] && seen[1] && seen[2]);
    /* The trash is forgotten once emptied; a limit pages it. */
    trash_seen page = {0};
    cr_assert_eq(meta_trash_list(f.ms, 2, see_trash, &page), 0);
    cr_assert_eq(page.n, 2);
    const char *ids[3] = {t.ids[0], t.ids[1], t.ids[2]};
    cr_assert_eq(meta_trash_remove(f.ms, ids, 2), 0);
    trash_seen rest = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, see_trash, &rest), 0);
    cr_assert_eq(rest.n, 1);
    cr_assert_str_eq(rest.ids[0], t.ids[2]);
    cr_assert_eq(meta_trash_remove(f.ms, ids + 2, 1), 0);
    cr_assert_eq(meta_trash_remove(f.ms, ids, 0), 0);
    cr_assert_eq(meta_trash_list(f.ms, 0, see_trash, &rest), CAIRN_EINVAL);
    /* A new bucket of the same name has no uploads. */
    mk_bucket(f.ms, "b", 2);
    int n = 0;
    cr_assert_eq(meta_upload_list(f.ms, bucket_id_of(f.ms, "b"), NULL, 0, NULL, 0, NULL, 100, count_uploads, &n, NULL), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(meta_upload_list(f.ms, keep, NULL, 0, NULL, 0, NULL, 100, count_uploads, &n, NULL), 0);
    cr_assert_eq(n, 1);
    fx_close(&f);
}

/* ---- completing uploads ------------------------------------------------------------------ */

typedef struct {
    meta_part p[8];
    int n;
} part_list;

static int keep_part(void *ud, const meta_part *p) {
    part_list *l = ud;
    cr_assert_lt(l->n, 8);
    l->p[l->n++] = *p;
    return 0;
}

static meta_object mp_obj(const char *bucket, int64_t bucket_id, const char *key, int64_t size, int nparts) {
    meta_object o = mk_obj(bucket, key, strlen(key), size);
    o.bucket_id = bucket_id;
    snprintf(o.layout, sizeof o.layout, "mp:%d", nparts);
    strcpy(o.etag, "0123456789abcdef0123456789abcdef-1");
    return o;
}

static void ignore_part(void *ud, const meta_part *p) {
    (void)p;
    (*(int *)ud)++;
}

Test(uploads, complete_refuses_a_part_replaced_since_it_was_read) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload(f.ms, "b", id, "k", "up");
    const char *layout = "1+0:4096:0123456789abcdef";
    meta_part first = mk_part(1, 100, layout), again = mk_part(1, 100, layout);
    meta_part old;
    bool had = true;
    cr_assert_eq(meta_part_put(f.ms, "up", &first, &old, &had), 0);
    cr_assert_not(had);
    /* The complete read the part list (first), then a re-upload replaced it. */
    cr_assert_eq(meta_part_put(f.ms, "up", &again, &old, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(old.version_id, first.version_id, "the replaced part is reported for removal");
    meta_object obj = mp_obj("b", id, "k", 100, 1);
    meta_object replaced;
    bool had_replaced;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "up", &obj, &first, 1, &replaced, &had_replaced, ignore_part, &unused),
                 CAIRN_ECONFLICT, "the chosen bytes are gone: never commit a reference to them");
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", id, "k", 1, false, &got), CAIRN_ENOTFOUND, "nothing was committed");
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up", &u), 0, "the upload is intact");
    meta_upload_clear(&u);
    /* With the current part it commits, taking size, ETag and layout from the row. */
    meta_part chosen = again;
    strcpy(chosen.layout, "stale");
    cr_assert_eq(meta_upload_complete(f.ms, "up", &obj, &chosen, 1, &replaced, &had_replaced, ignore_part, &unused), 0);
    cr_assert_not(had_replaced);
    cr_assert_eq(unused, 0);
    cr_assert_eq(meta_object_get(f.ms, "b", id, "k", 1, false, &got), 0);
    meta_object_clear(&got);
    part_list pl = {0};
    cr_assert_eq(meta_object_parts(f.ms, obj.version_id, keep_part, &pl), 0);
    cr_assert_eq(pl.n, 1);
    cr_assert_str_eq(pl.p[0].version_id, again.version_id);
    cr_assert_str_eq(pl.p[0].layout, layout, "the layout comes from the upload's row, not the caller");
    cr_assert_str_eq(pl.p[0].etag, again.etag);
    cr_assert_eq(pl.p[0].offset, 0);
    /* The upload is remembered for a retried complete, then gone. */
    meta_completed_upload c;
    cr_assert_eq(meta_upload_completed_get(f.ms, "up", &c), 0);
    cr_assert_eq(c.bucket_id, id);
    cr_assert_str_eq(c.version_id, obj.version_id);
    cr_assert_str_eq(c.etag, obj.etag);
    cr_assert_eq(c.key_len, 1);
    cr_assert_eq(meta_upload_get(f.ms, "up", &u), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &obj, &chosen, 1, &replaced, &had_replaced, ignore_part, &unused),
                 CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_completed_get(f.ms, "nope", &c), CAIRN_ENOTFOUND);
    int64_t pruned = -1;
    cr_assert_eq(meta_upload_completed_prune(f.ms, obj.mtime_ms, 10, &pruned), 0);
    cr_assert_eq(pruned, 0, "not older than the cutoff");
    cr_assert_eq(meta_upload_completed_prune(f.ms, obj.mtime_ms + 1, 10, &pruned), 0);
    cr_assert_eq(pruned, 1);
    cr_assert_eq(meta_upload_completed_get(f.ms, "up", &c), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_completed_prune(f.ms, 0, 0, &pruned), CAIRN_EINVAL);
    fx_close(&f);
}

Test(uploads, complete_checks_the_bucket_key_and_sizes) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    mk_bucket(f.ms, "c", 1);
    int64_t id = bucket_id_of(f.ms, "b"), other = bucket_id_of(f.ms, "c");
    mk_upload(f.ms, "b", id, "k", "up");
    const char *layout = "1+0:4096:0123456789abcdef";
    meta_part p1 = mk_part(1, 100, layout), p2 = mk_part(2, 50, layout), p3 = mk_part(3, 7, layout);
    meta_part old;
    bool had;
    cr_assert_eq(meta_part_put(f.ms, "up", &p1, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "up", &p2, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "up", &p3, &old, &had), 0);
    meta_part chosen[2] = {p1, p3};
    meta_object replaced;
    bool had_replaced;
    int unused = 0;
    meta_object wrong_bucket = mp_obj("c", other, "k", 107, 2);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &wrong_bucket, chosen, 2, &replaced, &had_replaced, ignore_part,
                                      &unused), CAIRN_ENOTFOUND, "an upload completes only into its own bucket");
    meta_object wrong_key = mp_obj("b", id, "kk", 107, 2);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &wrong_key, chosen, 2, &replaced, &had_replaced, ignore_part,
                                      &unused), CAIRN_ENOTFOUND, "and under its own key");
    meta_object wrong_size = mp_obj("b", id, "k", 150, 2);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &wrong_size, chosen, 2, &replaced, &had_replaced, ignore_part,
                                      &unused), CAIRN_ECONFLICT, "sizes are checked against the rows");
    meta_object ok = mp_obj("b", id, "k", 107, 2);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &ok, chosen, 2, &replaced, &had_replaced, ignore_part, &unused), 0);
    cr_assert_eq(unused, 1, "part 2 was left out: its bytes are handed back");
    part_list pl = {0};
    cr_assert_eq(meta_object_parts(f.ms, ok.version_id, keep_part, &pl), 0);
    cr_assert_eq(pl.n, 2);
    cr_assert_eq(pl.p[0].part_number, 1);
    cr_assert_eq(pl.p[1].part_number, 3, "part numbers are kept as uploaded");
    cr_assert_eq(pl.p[1].offset, 100);
    fx_close(&f);
}

/* ---- placements --------------------------------------------------------------------------- */

typedef struct {
    meta_placement p[64];
    int n;
} place_list;

static int keep_place(void *ud, const meta_placement *p) {
    place_list *l = ud;
    cr_assert_lt(l->n, 64);
    l->p[l->n++] = *p;
    return 0;
}

static const meta_placement *find_place(const place_list *l, const char *version_id) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->p[i].version_id, version_id)) return &l->p[i];
    return NULL;
}

/* Walks every placement in pages of page_size. */
static void scan_all(meta_store *ms, int page_size, place_list *out) {
    meta_place_cursor cur = {0};
    int calls = 0;
    while (!cur.done) {
        cr_assert_eq(meta_placement_scan(ms, &cur, page_size, keep_place, out), 0);
        cr_assert_lt(++calls, 100);
    }
}

Test(placement, scan_sees_objects_object_parts_and_upload_parts) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const char *L1 = "4+2:4096:aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb,cccccccccccccccc,dddddddddddddddd,eeeeeeeeeeeeeeee,ffffffffffffffff";
    meta_object plain = mk_obj("b", "plain", 5, 1000);
    strcpy(plain.layout, L1);
    cr_assert_eq(meta_object_put(f.ms, &plain, NULL, NULL), 0);
    meta_object small = mk_obj("b", "inline", 6, 2);
    small.storage = META_STORE_INLINE;
    small.data = (uint8_t *)"hi";
    small.data_len = 2;
    cr_assert_eq(meta_object_put(f.ms, &small, NULL, NULL), 0);
    /* A completed multipart object (parts p1, p2) and an upload with part p3. */
    mk_upload(f.ms, "b", id, "mp", "done");
    meta_part p1 = mk_part(1, 600, L1), p2 = mk_part(2, 400, L1), p3 = mk_part(1, 77, L1);
    meta_part old;
    bool had;
    cr_assert_eq(meta_part_put(f.ms, "done", &p1, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "done", &p2, &old, &had), 0);
    meta_part chosen[2] = {p1, p2};
    meta_object mp = mp_obj("b", id, "mp", 1000, 2);
    meta_object replaced;
    bool had_replaced;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "done", &mp, chosen, 2, &replaced, &had_replaced, ignore_part, &unused), 0);
    mk_upload(f.ms, "b", id, "live", "live");
    cr_assert_eq(meta_part_put(f.ms, "live", &p3, &old, &had), 0);

    for (int page = 1; page <= 5; page += 4) {
        place_list l = {0};
        scan_all(f.ms, page, &l);
        cr_assert_eq(l.n, 4, "plain, two object parts, one upload part (page %d)", page);
        const meta_placement *a = find_place(&l, plain.version_id), *b1 = find_place(&l, p1.version_id),
                             *b2 = find_place(&l, p2.version_id), *c = find_place(&l, p3.version_id);
        cr_assert(a && b1 && b2 && c);
        cr_assert_null(find_place(&l, small.version_id), "inline objects have no shards");
        cr_assert_null(find_place(&l, mp.version_id), "a multipart object's own row has no shards");
        cr_assert_eq(a->kind, META_PLACE_OBJECT);
        cr_assert_str_eq(a->owner, "b");
        cr_assert_eq(a->key_len, 5);
        cr_assert_eq(memcmp(a->key, "plain", 5), 0);
        cr_assert_eq(a->size, 1000);
        cr_assert_eq(b1->kind, META_PLACE_OBJECT_PART);
        cr_assert_str_eq(b1->owner, mp.version_id);
        cr_assert_eq(b2->part_number, 2);
        cr_assert_eq(b2->size, 400);
        cr_assert_eq(c->kind, META_PLACE_UPLOAD_PART);
        cr_assert_str_eq(c->owner, "live");
        cr_assert_str_eq(c->layout, L1);
    }
    meta_place_cursor done = {.done = true};
    place_list none = {0};
    cr_assert_eq(meta_placement_scan(f.ms, &done, 10, keep_place, &none), 0);
    cr_assert_eq(none.n, 0);
    cr_assert_eq(meta_placement_scan(f.ms, &done, 0, keep_place, &none), CAIRN_EINVAL);

    /* Every kind counts toward a node's references. */
    int64_t refs = -1;
    cr_assert_eq(meta_layout_refs(f.ms, "cccccccccccccccc", &refs), 0);
    cr_assert_eq(refs, 4);
    cr_assert_eq(meta_layout_refs(f.ms, "9999999999999999", &refs), 0);
    cr_assert_eq(refs, 0);
    cr_assert_eq(meta_layout_refs(f.ms, "", &refs), CAIRN_EINVAL);

    /* Moving each kind: compare-and-set on the layout. */
    const char *L2 = "4+2:4096:aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb,9999999999999999,dddddddddddddddd,eeeeeeeeeeeeeeee,ffffffffffffffff";
    const char *ids[] = {plain.version_id, p1.version_id, p2.version_id, p3.version_id};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(meta_placement_set_layout(f.ms, ids[i], L1, L2), 0, "placement %d", i);
        cr_assert_eq(meta_placement_set_layout(f.ms, ids[i], L1, L2), CAIRN_ECONFLICT, "layout changed meanwhile");
    }
    cr_assert_eq(meta_layout_refs(f.ms, "cccccccccccccccc", &refs), 0);
    cr_assert_eq(refs, 0);
    cr_assert_eq(meta_layout_refs(f.ms, "9999999999999999", &refs), 0);
    cr_assert_eq(refs, 4);
    char gone[33];
    rand_hex_id(gone, 16);
    cr_assert_eq(meta_placement_set_layout(f.ms, gone, L1, L2), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_placement_set_layout(f.ms, NULL, L1, L2), CAIRN_EINVAL);
    /* A part moved while its upload was in progress keeps its new layout
     * through the complete that makes it an object part. */
    meta_part live_chosen = p3;
    meta_object live = mp_obj("b", id, "live", 77, 1);
    cr_assert_eq(meta_upload_complete(f.ms, "live", &live, &live_chosen, 1, &replaced, &had_replaced, ignore_part,
                                      &unused), 0);
    part_list pl = {0};
    cr_assert_eq(meta_object_parts(f.ms, live.version_id, keep_part, &pl), 0);
    cr_assert_eq(pl.n, 1);
    cr_assert_str_eq(pl.p[0].layout, L2);
    fx_close(&f);
}

Test(meta, delete_many_in_one_transaction) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    put_key(f.ms, "b", "a", 1);
    put_key(f.ms, "b", "c", 1);
    char long_key[1100];
    memset(long_key, 'x', sizeof long_key);
    meta_delete_item items[4] = {{.key = "a", .key_len = 1}, {.key = "b", .key_len = 1},
                                 {.key = long_key, .key_len = sizeof long_key}, {.key = "c", .key_len = 1}};
    cr_assert_eq(meta_object_delete_many(f.ms, "b", id, items, 4), 0);
    cr_assert_eq(items[0].rc, 0);
    cr_assert_neq(items[0].deleted.version_id[0], '\0', "deleted version reported");
    cr_assert_eq(items[1].rc, 0, "absent counts as deleted");
    cr_assert_eq(items[1].deleted.version_id[0], '\0');
    cr_assert_eq(items[2].rc, 0, "a key too long to exist is absent");
    cr_assert_eq(items[3].rc, 0);
    for (int i = 0; i < 4; i++) meta_object_clear(&items[i].deleted);
    int64_t n = -1;
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 0);
    /* A stale bucket id deletes nothing. */
    put_key(f.ms, "b", "a", 1);
    meta_delete_item stale = {.key = "a", .key_len = 1};
    cr_assert_eq(meta_object_delete_many(f.ms, "b", id + 100, &stale, 1), 0);
    cr_assert_eq(stale.rc, 0);
    cr_assert_eq(stale.deleted.version_id[0], '\0');
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(meta_object_delete_many(f.ms, "b", id, items, 1001), CAIRN_EINVAL);
    meta_delete_item nul = {.key = "a\0b", .key_len = 3};
    cr_assert_eq(meta_object_delete_many(f.ms, "b", id, &nul, 1), 0);
    cr_assert_eq(nul.rc, CAIRN_EINVAL);
    fx_close(&f);
}
