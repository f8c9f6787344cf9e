/*
 * test_tiered.c — the metadata cache over a real store (src/cache/tiered.h,
 * src/cache/l2.h): real SQLite files and a real redis-server started from
 * Debian's binary on a free port in a temp dir.
 *
 * Two stores opened on one database file stand for two gateways sharing a
 * metadata database (the cache does not care which backend is behind it;
 * the integration suite runs real gateways on PostgreSQL).  What must hold:
 * every read after a write, on either store, sees the write; a cached read
 * costs no backend read; N concurrent misses cost one; an admin command's
 * write reaches a SQLite server at once; a key revoked on one gateway is
 * refused on the other at once; with Redis stopped the stores serve from the
 * database, correctly, and use the cache again once it is back.
 */
#include <criterion/criterion.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stddef.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/l2.h"
#include "cache/tiered.h"
#include "meta/meta.h"
#include "meta/meta_int.h" /* the table of operations, to check every slot */

#include "redis_proc.h"

/* ---- stores ------------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    char path[128];
    char epoch[160];
} db_dir;

static void db_new(db_dir *d) {
    cr_assert_eq(core_init(), 0);
    strcpy(d->dir, "/tmp/cairn-test-tiered-XXXXXX");
    cr_assert_not_null(mkdtemp(d->dir));
    snprintf(d->path, sizeof d->path, "%s/meta.db", d->dir);
    snprintf(d->epoch, sizeof d->epoch, "%s-cache", d->path);
}

static void db_free(db_dir *d) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d->dir);
    cr_assert_eq(system(cmd), 0);
}

/* The cache lease stores open with (cache_lease_ms): leases by default, 0
 * for the tests of the seq read per request. */
static int lease_ms = 2000;

/* A store on d's database: a reader (server, gateway) or an admin command;
 * with Redis when url is not NULL. */
static meta_store *open_store(const db_dir *d, bool reader, const char *url) {
    meta_options o = {.readers = 2, .fsync = false, .busy_timeout_ms = 5000};
    meta_store *inner = NULL, *ms = NULL;
    cr_assert_eq(meta_open(d->path, &o, &inner), 0);
    tiered_options to = {.bytes = 1 << 20, .ttl_ms = 60000, .redis_url = url, .redis_timeout_ms = 200,
                         .redis_breaker_ms = 100, .lease_ms = lease_ms, .reader = reader, .epoch_path = d->epoch};
    char why[256];
    cr_assert_eq(tiered_wrap(inner, &to, &ms, why, sizeof why), 0, "%s", why);
    cr_assert(tiered_is(ms));
    return ms;
}

static bool channel_up(meta_store *ms) {
    bool configured, up;
    tiered_redis_state(ms, &configured, &up);
    return up;
}

static void wait_channel(meta_store *ms, bool want) {
    for (int i = 0; i < 1000 && channel_up(ms) != want; i++) usleep(10000);
    cr_assert_eq(channel_up(ms), want, "the invalidation channel did not go %s", want ? "up" : "down");
}

/* Two gateways: two stores on one database and one Redis, channels up. */
typedef struct {
    db_dir d;
    redis_proc r;
    meta_store *a, *b;
} gateways;

static void gateways_open(gateways *g) {
    db_new(&g->d);
    redis_new(&g->r);
    g->a = open_store(&g->d, true, g->r.url);
    g->b = open_store(&g->d, true, g->r.url);
    wait_channel(g->a, true);
    wait_channel(g->b, true);
}

static void gateways_close(gateways *g) {
    meta_close(g->a);
    if (g->b) meta_close(g->b);
    redis_free(&g->r);
    db_free(&g->d);
}

/* Whether Redis holds exactly n cache leases. */
static bool count_leases(const redis_proc *r, long long n) {
    redisContext *c = redisConnect("127.0.0.1", r->port);
    redisReply *rep = redisCommand(c, "HLEN cairn:leases");
    bool ok = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == n;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return ok;
}

static int64_t make_user(meta_store *ms) {
    meta_user u = {.created_ms = 1};
    snprintf(u.name, sizeof u.name, "keyowner");
    cr_assert_eq(meta_user_create(ms, &u), 0);
    return u.id;
}

static int64_t make_bucket(meta_store *ms, const char *name) {
    meta_bucket b = {.owner_id = 1, .created_ms = 1};
    snprintf(b.name, sizeof b.name, "%s", name);
    snprintf(b.region, sizeof b.region, "us-east-1");
    meta_user u = {.created_ms = 1};
    snprintf(u.name, sizeof u.name, "owner");
    meta_user_create(ms, &u);
    b.owner_id = u.id;
    cr_assert_eq(meta_bucket_create(ms, &b, NULL), 0);
    return b.id;
}

static void put_value(meta_store *ms, const char *bucket, int64_t bid, const char *key, const char *value) {
    meta_object o;
    memset(&o, 0, sizeof o);
    snprintf(o.bucket, sizeof o.bucket, "%s", bucket);
    o.bucket_id = bid;
    o.key_len = strlen(key);
    memcpy(o.key, key, o.key_len);
    rand_hex_id(o.version_id, 16);
    o.size = (int64_t)strlen(value);
    snprintf(o.etag, sizeof o.etag, "%s", value);
    o.mtime_ms = 1;
    o.owner_id = 1;
    o.storage = META_STORE_INLINE;
    o.headers_json = "{}";
    o.data = (uint8_t *)value;
    o.data_len = strlen(value);
    meta_object replaced;
    memset(&replaced, 0, sizeof replaced);
    bool had;
    cr_assert_eq(meta_object_put(ms, &o, &replaced, &had), 0);
    meta_object_clear(&replaced);
}

/* The object's ETag (our test value) or "" when absent; with_data: also
 * checks the inline bytes say the same. */
static void get_value(meta_store *ms, const char *bucket, int64_t bid, const char *key, bool with_data, char *out,
                      size_t cap) {
    meta_object o;
    memset(&o, 0, sizeof o);
    int rc = meta_object_get(ms, bucket, bid, key, strlen(key), with_data, &o);
    if (rc == CAIRN_ENOTFOUND) {
        out[0] = '\0';
        return;
    }
    cr_assert_eq(rc, 0, "object_get: %d", rc);
    snprintf(out, cap, "%s", o.etag);
    if (with_data) {
        cr_assert_eq(o.data_len, strlen(o.etag));
        cr_assert(o.data_len == 0 || !memcmp(o.data, o.etag, o.data_len));
    }
    cr_assert_not_null(o.headers_json);
    meta_object_clear(&o);
}

static tiered_counts counts(meta_store *ms) {
    tiered_counts c;
    tiered_counts_get(ms, &c);
    return c;
}

/* ---- SQLite, one server ---------------------------------------------------------------- */

Test(tiered, a_second_read_is_an_l1_hit_and_a_write_is_seen_at_once) {
    db_dir d;
    db_new(&d);
    meta_store *ms = open_store(&d, true, NULL);
    int64_t bid = make_bucket(ms, "bkt");
    char v[80];
    put_value(ms, "bkt", bid, "k", "v1");
    get_value(ms, "bkt", bid, "k", true, v, sizeof v);
    cr_assert_str_eq(v, "v1");
    uint64_t reads = counts(ms).backend_reads;
    for (int i = 0; i < 5; i++) {
        get_value(ms, "bkt", bid, "k", i % 2, v, sizeof v);
        cr_assert_str_eq(v, "v1");
    }
    cr_assert_eq(counts(ms).backend_reads, reads, "cached reads went to the database");
    cr_assert_geq(counts(ms).l1_hits, 5);
    put_value(ms, "bkt", bid, "k", "v2");
    get_value(ms, "bkt", bid, "k", false, v, sizeof v);
    cr_assert_str_eq(v, "v2");
    meta_object del;
    memset(&del, 0, sizeof del);
    cr_assert_eq(meta_object_delete(ms, "bkt", bid, "k", 1, &del), 0);
    meta_object_clear(&del);
    get_value(ms, "bkt", bid, "k", false, v, sizeof v);
    cr_assert_str_eq(v, "");
    /* A request for another bucket of the same name finds nothing. */
    put_value(ms, "bkt", bid, "k", "v3");
    get_value(ms, "bkt", bid, "k", false, v, sizeof v);
    get_value(ms, "bkt", bid + 100, "k", false, v, sizeof v);
    cr_assert_str_eq(v, "");
    meta_close(ms);
    db_free(&d);
}

/* Write-through: the record a put committed is this store's L1 entry, and
 * a read of it is exactly what the database returns, field by field. */
static void expect_same_object(const meta_object *a, const meta_object *b) {
    cr_expect_str_eq(a->bucket, b->bucket);
    cr_expect_eq(a->bucket_id, b->bucket_id);
    cr_expect_eq(a->key_len, b->key_len);
    cr_expect(!memcmp(a->key, b->key, a->key_len));
    cr_expect_str_eq(a->version_id, b->version_id);
    cr_expect_eq(a->size, b->size);
    cr_expect_str_eq(a->etag, b->etag);
    cr_expect_eq(a->mtime_ms, b->mtime_ms);
    cr_expect_eq(a->owner_id, b->owner_id);
    cr_expect_eq(a->storage, b->storage);
    cr_expect_str_eq(a->layout, b->layout);
    cr_expect_str_eq(a->headers_json ? a->headers_json : "(null)", b->headers_json ? b->headers_json : "(null)");
    cr_expect_eq(a->data_len, b->data_len);
    cr_expect(a->data_len == 0 || (a->data && b->data && !memcmp(a->data, b->data, a->data_len)));
}

Test(tiered, a_put_is_this_stores_l1_hit_and_reads_as_the_database_stored_it) {
    db_dir d;
    db_new(&d);
    meta_store *ms = open_store(&d, true, NULL);
    meta_store *plain = NULL;
    meta_options po = {.readers = 1, .fsync = false, .busy_timeout_ms = 5000};
    cr_assert_eq(meta_open(d.path, &po, &plain), 0);
    int64_t bid = make_bucket(ms, "bkt");
    /* A request loads its bucket before it puts (the pipeline): the put's
     * look at the bucket's versioning is then a hit. */
    meta_bucket bk;
    cr_assert_eq(meta_bucket_get(ms, "bkt", &bk), 0);
    for (int kind = 0; kind < 3; kind++) {
        meta_object o;
        memset(&o, 0, sizeof o);
        snprintf(o.bucket, sizeof o.bucket, "bkt");
        o.bucket_id = bid;
        o.key_len = (size_t)snprintf(o.key, sizeof o.key, "dir/k%d\xc3\xa9", kind);
        rand_hex_id(o.version_id, 16);
        o.mtime_ms = 1796060462123 + kind;
        o.owner_id = 7;
        o.headers_json = "{\"content-type\":\"text/plain\",\"x-amz-meta-a\":\"b \\\"c\\\"\"}";
        if (kind == 0) { /* inline bytes */
            o.storage = META_STORE_INLINE;
            o.data = (uint8_t *)"hello\0world";
            o.data_len = 11;
        } else if (kind == 1) { /* an empty inline object */
            o.storage = META_STORE_INLINE;
        } else { /* bytes in shards */
            o.storage = META_STORE_FILE;
            snprintf(o.layout, sizeof o.layout, "4+2:1048576:d0,d1,d2,d3,d4,d5");
        }
        o.size = kind == 2 ? 5 << 20 : (int64_t)o.data_len;
        snprintf(o.etag, sizeof o.etag, "0123456789abcdef0123456789abcde%d", kind);
        meta_object replaced;
        memset(&replaced, 0, sizeof replaced);
        bool had;
        tiered_counts before = counts(ms);
        cr_assert_eq(meta_object_put(ms, &o, &replaced, &had), 0);
        meta_object_clear(&replaced);
        cr_expect_eq(counts(ms).write_fills, before.write_fills + 1, "kind %d: the put did not fill L1", kind);
        meta_object cached, stored;
        memset(&cached, 0, sizeof cached);
        memset(&stored, 0, sizeof stored);
        cr_assert_eq(meta_object_get(ms, "bkt", bid, o.key, o.key_len, true, &cached), 0);
        cr_expect_eq(counts(ms).backend_reads, before.backend_reads, "kind %d: the read after the put was a miss", kind);
        cr_assert_eq(meta_object_get(plain, "bkt", bid, o.key, o.key_len, true, &stored), 0);
        expect_same_object(&cached, &stored);
        meta_object_clear(&cached);
        meta_object_clear(&stored);
    }
    /* A put that does not name its bucket's id only invalidates. */
    tiered_counts before = counts(ms);
    put_value(ms, "bkt", 0, "dir/k0\xc3\xa9", "other");
    cr_expect_eq(counts(ms).write_fills, before.write_fills);
    char v[80];
    get_value(ms, "bkt", bid, "dir/k0\xc3\xa9", true, v, sizeof v);
    cr_expect_str_eq(v, "other");
    cr_expect_eq(counts(ms).backend_reads, before.backend_reads + 1);
    /* A put that fails (no such bucket) fills nothing. */
    meta_object nob;
    memset(&nob, 0, sizeof nob);
    snprintf(nob.bucket, sizeof nob.bucket, "bkt");
    nob.bucket_id = bid + 100;
    nob.key_len = 1;
    nob.key[0] = 'z';
    rand_hex_id(nob.version_id, 16);
    nob.headers_json = "{}";
    bool had;
    meta_object replaced;
    memset(&replaced, 0, sizeof replaced);
    cr_expect_eq(meta_object_put(ms, &nob, &replaced, &had), CAIRN_ENOTFOUND);
    cr_expect_eq(counts(ms).write_fills, before.write_fills);
    meta_close(plain);
    meta_close(ms);
    db_free(&d);
}

Test(tiered, every_write_of_a_cached_record_invalidates_it) {
    db_dir d;
    db_new(&d);
    meta_store *ms = open_store(&d, true, NULL);
    int64_t bid = make_bucket(ms, "bkt");
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(ms, "bkt", &b), 0);
    cr_assert_not(b.public_read);
    cr_assert_eq(meta_bucket_set_public(ms, "bkt", true), 0);
    cr_assert_eq(meta_bucket_get(ms, "bkt", &b), 0);
    cr_assert(b.public_read, "bucket_set_public was not seen");
    cr_assert_eq(meta_bucket_config_put(ms, "bkt", bid, "policy", "{}"), 0);
    cr_assert_eq(meta_bucket_get(ms, "bkt", &b), 0);
    cr_assert_eq(b.configs, META_CFG_POLICY, "a bucket configuration put was not seen");
    cr_assert_eq(meta_bucket_config_put(ms, "bkt", bid, "policy", NULL), 0);
    cr_assert_eq(meta_bucket_get(ms, "bkt", &b), 0);
    cr_assert_eq(b.configs, 0, "a bucket configuration removal was not seen");

    char v[80];
    put_value(ms, "bkt", bid, "a", "1");
    put_value(ms, "bkt", bid, "b", "2");
    get_value(ms, "bkt", bid, "a", false, v, sizeof v);
    get_value(ms, "bkt", bid, "b", false, v, sizeof v);
    meta_delete_item items[2] = {{.key = "a", .key_len = 1}, {.key = "b", .key_len = 1}};
    cr_assert_eq(meta_object_delete_many(ms, "bkt", bid, items, 2), 0);
    for (int i = 0; i < 2; i++) meta_object_clear(&items[i].deleted);
    get_value(ms, "bkt", bid, "a", false, v, sizeof v);
    cr_assert_str_eq(v, "", "delete_many was not seen");
    get_value(ms, "bkt", bid, "b", false, v, sizeof v);
    cr_assert_str_eq(v, "");

    /* A rebalance repoints a file object's shards. */
    meta_object o;
    memset(&o, 0, sizeof o);
    snprintf(o.bucket, sizeof o.bucket, "bkt");
    o.bucket_id = bid;
    memcpy(o.key, "f", 2);
    o.key_len = 1;
    rand_hex_id(o.version_id, 16);
    o.size = 10;
    snprintf(o.etag, sizeof o.etag, "e");
    o.storage = META_STORE_FILE;
    snprintf(o.layout, sizeof o.layout, "4+2:1048576:a,b,c,d,e,f");
    bool had;
    meta_object rep;
    memset(&rep, 0, sizeof rep);
    cr_assert_eq(meta_object_put(ms, &o, &rep, &had), 0);
    meta_object got;
    memset(&got, 0, sizeof got);
    cr_assert_eq(meta_object_get(ms, "bkt", bid, "f", 1, false, &got), 0);
    meta_object_clear(&got);
    cr_assert_eq(meta_placement_set_layout(ms, o.version_id, o.layout, "4+2:1048576:a,b,c,d,e,g"), 0);
    cr_assert_eq(meta_object_get(ms, "bkt", bid, "f", 1, false, &got), 0);
    cr_assert_str_eq(got.layout, "4+2:1048576:a,b,c,d,e,g", "a moved shard was not seen");
    meta_object_clear(&got);
    cr_assert_eq(meta_object_delete(ms, "bkt", bid, "f", 1, &rep), 0);
    meta_object_clear(&rep);

    cr_assert_eq(meta_bucket_delete(ms, "bkt", bid), 0);
    cr_assert_eq(meta_bucket_get(ms, "bkt", &b), CAIRN_ENOTFOUND, "a deleted bucket was still found");

    meta_key k = {.user_id = 1, .active = true, .created_ms = 1};
    snprintf(k.access_key, sizeof k.access_key, "AKTEST");
    snprintf(k.sealed_secret, sizeof k.sealed_secret, "sealed");
    cr_assert_eq(meta_key_create(ms, &k), 0);
    meta_key gk;
    cr_assert_eq(meta_key_get(ms, "AKTEST", &gk), 0);
    cr_assert(gk.active);
    cr_assert_eq(meta_key_set_active(ms, "AKTEST", false), 0);
    cr_assert_eq(meta_key_get(ms, "AKTEST", &gk), 0);
    cr_assert_not(gk.active, "a revoked key was still active");
    meta_close(ms);
    db_free(&d);
}

Test(tiered, an_admin_commands_write_reaches_the_running_server_at_once) {
    db_dir d;
    db_new(&d);
    meta_store *server = open_store(&d, true, NULL);
    meta_store *admin = open_store(&d, false, NULL);
    meta_key k = {.user_id = make_user(admin), .active = true, .created_ms = 1};
    snprintf(k.access_key, sizeof k.access_key, "AKADMIN");
    snprintf(k.sealed_secret, sizeof k.sealed_secret, "sealed");
    cr_assert_eq(meta_key_create(admin, &k), 0);
    meta_key gk;
    for (int i = 0; i < 3; i++) cr_assert_eq(meta_key_get(server, "AKADMIN", &gk), 0);
    cr_assert(gk.active);
    uint64_t reads = counts(server).backend_reads;
    cr_assert_eq(meta_key_set_active(admin, "AKADMIN", false), 0); /* `cairn admin key revoke` */
    cr_assert_eq(meta_key_get(server, "AKADMIN", &gk), 0);
    cr_assert_not(gk.active, "the server still accepted a key the admin command revoked");
    cr_assert_eq(counts(server).backend_reads, reads + 1);
    meta_close(admin);
    meta_close(server);
    db_free(&d);
}

typedef struct {
    meta_store *ms;
    int64_t bid;
    pthread_barrier_t *start;
    char got[80];
} reader_arg;

static void *read_once(void *arg) {
    reader_arg *a = arg;
    pthread_barrier_wait(a->start);
    get_value(a->ms, "bkt", a->bid, "hot", false, a->got, sizeof a->got);
    return NULL;
}

Test(tiered, concurrent_misses_on_one_key_read_the_database_once) {
    db_dir d;
    db_new(&d);
    meta_store *ms = open_store(&d, true, NULL);
    int64_t bid = make_bucket(ms, "bkt");
    put_value(ms, "bkt", 0, "hot", "value"); /* bucket id 0: no write-through, the key is not cached */
    tiered_set_load_delay_ms(ms, 200); /* the first load is still running when the others miss */
    uint64_t before = counts(ms).backend_reads;
    enum { N = 16 };
    pthread_t th[N];
    reader_arg args[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        args[i] = (reader_arg){.ms = ms, .bid = bid, .start = &start};
        cr_assert_eq(pthread_create(&th[i], NULL, read_once, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_assert_str_eq(args[i].got, "value");
    }
    cr_assert_eq(counts(ms).backend_reads - before, 1, "%d misses read the database %llu times", N,
                 (unsigned long long)(counts(ms).backend_reads - before));
    pthread_barrier_destroy(&start);
    meta_close(ms);
    db_free(&d);
}

Test(tiered, the_wrapper_forwards_every_operation) {
    db_dir d;
    db_new(&d);
    meta_store *ms = open_store(&d, true, NULL);
    /* Every slot of the table (function or data pointer) is set: an
     * operation added to meta_ops and not forwarded would be NULL here. */
    const void *const *slot = (const void *const *)ms->ops;
    size_t n = sizeof(meta_ops) / sizeof(void *);
    /* NULL on SQLite, and so on its wrapper too */
    size_t pool = offsetof(meta_ops, pool_stats) / sizeof(void *);
    size_t listener = offsetof(meta_ops, job_listener_open) / sizeof(void *);
    for (size_t i = 0; i < n; i++)
        if (i != pool && i != listener) cr_assert_not_null(slot[i], "meta_ops slot %zu is not forwarded", i);
    cr_assert_str_eq(meta_backend_name(ms), "sqlite");
    meta_close(ms);
    db_free(&d);
}

Test(tiered, what_cannot_be_cached_is_not_wrapped) {
    db_dir d;
    db_new(&d);
    meta_options o = {.readers = 1, .fsync = false, .busy_timeout_ms = 5000};
    meta_store *inner = NULL, *ms = NULL;
    cr_assert_eq(meta_open(d.path, &o, &inner), 0);
    tiered_options off = {.bytes = 0, .reader = true};
    cr_assert_eq(tiered_wrap(inner, &off, &ms, NULL, 0), 0);
    cr_assert_eq(ms, inner, "a cache of 0 bytes wrapped the store");
    char why[200];
    tiered_options bad = {.bytes = 1 << 20, .reader = true, .redis_url = "http://x"};
    cr_assert_eq(tiered_wrap(inner, &bad, &ms, why, sizeof why), CAIRN_EINVAL);
    cr_assert(strstr(why, "redis://"), "%s", why);
    tiered_options badport = {.bytes = 1 << 20, .reader = true, .redis_url = "redis://h:99999"};
    cr_assert_eq(tiered_wrap(inner, &badport, &ms, why, sizeof why), CAIRN_EINVAL);
    tiered_options noepoch = {.bytes = 1 << 20, .reader = true, .epoch_path = "/nonexistent/dir/x-cache"};
    cr_assert_eq(tiered_wrap(inner, &noepoch, &ms, why, sizeof why), CAIRN_EIO);
    cr_assert(strstr(why, "counter file"), "%s", why);
    meta_close(inner);
    db_free(&d);
}

Test(tiered, redis_urls_parse) {
    redis_target t;
    char why[128];
    cr_assert_eq(redis_target_parse("redis://127.0.0.1:6380/2", &t, why, sizeof why), 0);
    cr_assert_str_eq(t.host, "127.0.0.1");
    cr_assert_eq(t.port, 6380);
    cr_assert_eq(t.db, 2);
    cr_assert_str_eq(t.password, "");
    cr_assert_eq(redis_target_parse("redis://:s3cret@cache.local", &t, why, sizeof why), 0);
    cr_assert_str_eq(t.host, "cache.local");
    cr_assert_eq(t.port, 6379);
    cr_assert_str_eq(t.password, "s3cret");
    const char *bad[] = {"", "redis://", "redis://h:0", "redis://h:x", "redis://h/x", "redis://h:1/2/3", "rediss://h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(redis_target_parse(bad[i], &t, why, sizeof why), CAIRN_EINVAL, "%s was accepted", bad[i]);
}

/* ---- two gateways and Redis -------------------------------------------------------------- */

static void read_after_write_rounds(int rounds) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    char v[80], want[32];
    for (int i = 0; i < rounds; i++) {
        /* b reads first, so its L1 (and L2) hold the value a replaces. */
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        if (i % 10 == 9) {
            meta_object del;
            memset(&del, 0, sizeof del);
            meta_object_delete(a, "bkt", bid, "k", 1, &del);
            meta_object_clear(&del);
            want[0] = '\0';
        } else {
            snprintf(want, sizeof want, "v%d", i);
            put_value(a, "bkt", bid, "k", want);
        }
        get_value(b, "bkt", bid, "k", i % 2, v, sizeof v);
        cr_assert_str_eq(v, want, "round %d: gateway b read '%s' after a wrote '%s'", i, v, want);
    }
    tiered_counts cb = counts(b);
    cr_assert_gt(cb.l1_hits + cb.l2_hits, 0, "the cache was never used: the test proves nothing");
    gateways_close(&g);
}

Test(tiered, read_after_write_across_two_gateways_ten_thousand_times, .timeout = 240) {
    read_after_write_rounds(10000);
}

Test(tiered, read_after_write_across_two_gateways_with_a_seq_read_per_request, .timeout = 240) {
    lease_ms = 0;
    read_after_write_rounds(2000);
}

/* b caches k, then falls behind (its subscriber stops reading while it
 * keeps renewing its lease): a's write must not be answered stale by b. */
Test(tiered, a_gateway_that_fell_behind_never_answers_stale, .timeout = 60) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    char v[80];
    put_value(a, "bkt", bid, "k", "old");
    get_value(b, "bkt", bid, "k", false, v, sizeof v);
    uint64_t hits = counts(b).l1_hits;
    get_value(b, "bkt", bid, "k", false, v, sizeof v);
    cr_assert_eq(counts(b).l1_hits, hits + 1, "b did not cache k: the test proves nothing");
    l2_test_pause(tiered_test_l2(b), true);
    put_value(a, "bkt", bid, "k", "new"); /* waits for b: no acknowledgement, so until b's lease ran out */
    l2_stats st;
    l2_stats_get(tiered_test_l2(a), &st);
    cr_assert_geq(st.lease_timeouts, 1, "a acknowledged without b's acknowledgement or b's lease running out");
    for (int i = 0; i < 20; i++) {
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, "new", "b answered from a lease it renewed without applying the write");
    }
    /* Caught up, b trusts its L1 again. */
    l2_test_pause(tiered_test_l2(b), false);
    hits = counts(b).l1_hits;
    for (int i = 0; i < 300 && counts(b).l1_hits == hits; i++) {
        usleep(10000);
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, "new");
    }
    cr_assert_gt(counts(b).l1_hits, hits, "b never used its L1 again after catching up");
    gateways_close(&g);
}

/* A gateway's own invalidation message comes back on the channel: it must
 * not drop the record the put just stored (write-through), while another
 * gateway's message, and one in the format of older gateways (no sender
 * token), still drops it. */
Test(tiered, a_gateways_own_message_keeps_its_write_through_and_others_drop_it, .timeout = 60) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    char v[80];
    l2_stats st;
    l2_stats_get(tiered_test_l2(a), &st);
    uint64_t msgs = st.messages;
    put_value(a, "bkt", bid, "k", "mine");
    for (int i = 0; i < 500 && (l2_stats_get(tiered_test_l2(a), &st), st.messages == msgs); i++) usleep(10000);
    cr_assert_gt(st.messages, msgs, "a never heard its own message: the test proves nothing");
    uint64_t reads = counts(a).backend_reads;
    get_value(a, "bkt", bid, "k", true, v, sizeof v);
    cr_assert_str_eq(v, "mine");
    cr_expect_eq(counts(a).backend_reads, reads, "a's own message dropped the record its put stored");
    /* b writes: a's entry goes (or a reads b's value from the database). */
    put_value(b, "bkt", bid, "k", "theirs");
    get_value(a, "bkt", bid, "k", true, v, sizeof v);
    cr_assert_str_eq(v, "theirs");
    /* An older gateway's message (no sender token) is applied whole. */
    put_value(a, "bkt", bid, "k2", "cached");
    get_value(a, "bkt", bid, "k2", false, v, sizeof v);
    reads = counts(a).backend_reads;
    l2_stats_get(tiered_test_l2(a), &st);
    msgs = st.messages;
    redisContext *c = redisConnect("127.0.0.1", g.r.port);
    cr_assert(c && !c->err);
    /* "o" "bkt" NUL "k2" in hex, from a seq the subscriber has not seen. */
    redisReply *rep = redisCommand(c, "PUBLISH cairn:inval %s", "999999 6f626b7400" "6b32");
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 1);
    freeReplyObject(rep);
    redisFree(c);
    for (int i = 0; i < 500 && (l2_stats_get(tiered_test_l2(a), &st), st.messages == msgs); i++) usleep(10000);
    cr_assert_gt(st.messages, msgs);
    get_value(a, "bkt", bid, "k2", false, v, sizeof v);
    cr_expect_str_eq(v, "cached");
    cr_expect_eq(counts(a).backend_reads, reads + 1, "an old-format message was not applied");
    gateways_close(&g);
}

/* A writer that does not subscribe (cairn admin) waits for the gateways'
 * acknowledgements through the acks hash. */
Test(tiered, an_admin_write_through_redis_is_seen_by_a_caching_gateway_at_once) {
    gateways g;
    gateways_open(&g);
    meta_store *b = g.b;
    meta_store *admin = open_store(&g.d, false, g.r.url);
    int64_t bid = make_bucket(admin, "bkt");
    char v[80], want[16];
    for (int i = 0; i < 200; i++) {
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        snprintf(want, sizeof want, "adm%d", i);
        put_value(admin, "bkt", bid, "k", want);
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, want, "round %d: b read '%s' after the admin command wrote '%s'", i, v, want);
    }
    cr_assert_gt(counts(b).l1_hits, 0, "b never used its cache: the test proves nothing");
    l2_stats st;
    l2_stats_get(tiered_test_l2(admin), &st);
    cr_assert_eq(st.lease_timeouts, 0, "the admin writer never heard b's acknowledgements");
    meta_close(admin);
    gateways_close(&g);
}

/* A gateway that closes gives its lease back: writers do not wait it out. */
Test(tiered, a_closed_gateway_gives_its_lease_back) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a;
    int64_t bid = make_bucket(a, "bkt"); /* (waits out the young instance's lease) */
    for (int i = 0; i < 300 && !count_leases(&g.r, 2); i++) usleep(10000);
    cr_assert(count_leases(&g.r, 2), "the two gateways never held their leases");
    l2_stats before, st;
    l2_stats_get(tiered_test_l2(a), &before);
    meta_close(g.b);
    g.b = NULL;
    cr_assert(count_leases(&g.r, 1), "b's lease outlived b");
    put_value(a, "bkt", bid, "k", "v");
    l2_stats_get(tiered_test_l2(a), &st);
    cr_assert_eq(st.write_waits, before.write_waits, "a waited for a gateway that had closed");
    gateways_close(&g);
}

/* A Redis younger than a lease (restarted or flushed: the leases it had
 * are gone) makes a writer wait one out. */
Test(tiered, a_writer_waits_out_a_lease_on_a_young_redis) {
    redis_proc r;
    redis_new(&r);
    l2_options o = {.url = r.url, .timeout_ms = 500, .breaker_ms = 100, .lease_ms = 300};
    l2 *c = NULL;
    char why[128];
    cr_assert_eq(core_init(), 0);
    cr_assert_eq(l2_new(&o, &c, why, sizeof why), 0, "%s", why);
    const void *keys[] = {"key"};
    size_t lens[] = {3};
    cr_assert_eq(l2_invalidate(c, keys, lens, 1), 0); /* no boot token: nobody joined this instance yet */
    l2_stats st;
    l2_stats_get(c, &st);
    cr_assert_eq(st.write_waits, 1, "a write on an instance nobody joined did not wait out a lease");
    l2_free(c);
    redis_free(&r);
}
Test(tiered, one_gateways_fill_is_the_others_l2_hit) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    put_value(a, "bkt", 0, "k", "shared"); /* bucket id 0: no write-through into a's L1 */
    char v[80];
    get_value(a, "bkt", bid, "k", true, v, sizeof v); /* a misses both tiers and fills them */
    uint64_t reads = counts(b).backend_reads;
    get_value(b, "bkt", bid, "k", true, v, sizeof v);
    cr_assert_str_eq(v, "shared");
    cr_assert_eq(counts(b).backend_reads, reads, "b read the database though a had filled L2");
    cr_assert_eq(counts(b).l2_hits, 1);
    gateways_close(&g);
}

Test(tiered, a_key_revoked_on_one_gateway_is_refused_on_the_other_at_once) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    meta_key k = {.user_id = make_user(a), .active = true, .created_ms = 1};
    snprintf(k.access_key, sizeof k.access_key, "AKREVOKE");
    snprintf(k.sealed_secret, sizeof k.sealed_secret, "sealed");
    cr_assert_eq(meta_key_create(a, &k), 0);
    meta_key gk;
    for (int i = 0; i < 3; i++) cr_assert_eq(meta_key_get(b, "AKREVOKE", &gk), 0);
    cr_assert(gk.active);
    cr_assert_eq(meta_key_set_active(a, "AKREVOKE", false), 0);
    cr_assert_eq(meta_key_get(b, "AKREVOKE", &gk), 0);
    cr_assert_not(gk.active, "gateway b still accepted a key revoked on a");
    /* Secrets stay out of Redis. */
    redisContext *c = redisConnect("127.0.0.1", g.r.port);
    redisReply *rep = redisCommand(c, "KEYS *");
    for (size_t i = 0; i < rep->elements; i++)
        cr_assert_null(strstr(rep->element[i]->str, "c:0:6b414b"), "an access key was stored in redis: %s",
                       rep->element[i]->str);
    freeReplyObject(rep);
    redisFree(c);
    gateways_close(&g);
}

Test(tiered, with_redis_stopped_the_gateways_serve_from_the_database_and_recover, .timeout = 120) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    char v[80];
    put_value(a, "bkt", bid, "k", "before");
    get_value(b, "bkt", bid, "k", false, v, sizeof v);
    get_value(b, "bkt", bid, "k", false, v, sizeof v);

    redis_stop(&g.r);
    wait_channel(b, false);
    /* Writes go on, and every read sees them, from the database. */
    for (int i = 0; i < 50; i++) {
        char want[16];
        snprintf(want, sizeof want, "down%d", i);
        put_value(a, "bkt", bid, "k", want);
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, want);
    }
    l2_stats none;
    (void)none;
    bool configured, up;
    tiered_redis_state(b, &configured, &up);
    cr_assert(configured);
    cr_assert_not(up);
    /* The breaker keeps a read from waiting on Redis each time: 200 reads
     * with a 200 ms command timeout would take 40 s without it. */
    int64_t t0 = time_mono_ns();
    for (int i = 0; i < 200; i++) get_value(b, "bkt", bid, "k", false, v, sizeof v);
    cr_assert_lt((time_mono_ns() - t0) / 1000000, 20000, "reads waited on a stopped redis");

    redis_start(&g.r);
    wait_channel(a, true);
    wait_channel(b, true);
    put_value(a, "bkt", bid, "k", "after");
    /* Back to the cache, and still right. */
    uint64_t hits = counts(b).l1_hits;
    for (int i = 0; i < 20; i++) {
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, "after");
    }
    for (int i = 0; i < 200 && counts(b).l1_hits == hits; i++) {
        usleep(10000); /* the breaker's probe may fail once while redis starts */
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
    }
    cr_assert_gt(counts(b).l1_hits, hits, "the L1 was not used again after redis came back");
    gateways_close(&g);
}

Test(tiered, an_invalidation_redis_missed_flushes_l2_when_it_answers_again, .timeout = 60) {
    db_dir d;
    db_new(&d);
    redis_proc r;
    redis_new(&r);
    meta_store *a = open_store(&d, true, r.url);
    wait_channel(a, true);
    int64_t bid = make_bucket(a, "bkt");
    char v[80];
    redis_stop(&r);
    wait_channel(a, false);
    put_value(a, "bkt", bid, "k", "unpublished"); /* the invalidation fails: a remembers */
    redis_start(&r);
    wait_channel(a, true);
    for (int i = 0; i < 300; i++) {
        get_value(a, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, "unpublished");
        redisContext *c = redisConnect("127.0.0.1", r.port);
        redisReply *rep = redisCommand(c, "GET cairn:epoch");
        bool flushed = rep && rep->type == REDIS_REPLY_STRING && atoi(rep->str) >= 1;
        if (rep) freeReplyObject(rep);
        redisFree(c);
        if (flushed) break;
        cr_assert_lt(i, 299, "the L2 was never flushed after an invalidation it missed");
        usleep(10000);
    }
    meta_close(a);
    redis_free(&r);
    db_free(&d);
}

Test(tiered, a_fill_after_an_invalidation_is_refused_by_redis) {
    redis_proc r;
    redis_new(&r);
    l2_options o = {.url = r.url, .timeout_ms = 500, .breaker_ms = 100};
    l2 *c = NULL;
    char why[128];
    cr_assert_eq(core_init(), 0);
    cr_assert_eq(l2_new(&o, &c, why, sizeof why), 0, "%s", why);
    buf_t val;
    buf_init(&val);
    bool found, stored;
    uint64_t gen;
    cr_assert_eq(l2_get(c, "key", 3, 0, &val, &found, &gen), 0);
    cr_assert_not(found);
    /* A write between the reader's generation read and its fill. */
    const void *keys[] = {"key"};
    size_t lens[] = {3};
    cr_assert_eq(l2_invalidate(c, keys, lens, 1), 0);
    cr_assert_eq(l2_fill(c, "key", 3, 0, gen, "old", 3, 60000, &stored), 0);
    cr_assert_not(stored, "a fill that read before an invalidation landed");
    cr_assert_eq(l2_get(c, "key", 3, 0, &val, &found, &gen), 0);
    cr_assert_not(found);
    cr_assert_eq(l2_fill(c, "key", 3, 0, gen, "new", 3, 60000, &stored), 0);
    cr_assert(stored);
    cr_assert_eq(l2_get(c, "key", 3, 0, &val, &found, &gen), 0);
    cr_assert(found);
    cr_assert_eq(val.len, 3);
    cr_assert_eq(memcmp(val.data, "new", 3), 0);
    /* A flush (epoch) refuses fills of the old epoch and hides its values. */
    cr_assert_eq(l2_invalidate(c, NULL, NULL, 0), 0);
    uint64_t seq, epoch;
    cr_assert_eq(l2_sync(c, &seq, &epoch), CAIRN_ECONFLICT); /* no subscriber: not usable for L1 */
    cr_assert_eq(l2_get(c, "key", 3, 1, &val, &found, &gen), 0);
    cr_assert_not(found);
    cr_assert_eq(l2_fill(c, "key", 3, 0, gen, "stale", 5, 60000, &stored), 0);
    cr_assert_not(stored);
    /* A stopped Redis: the first command fails, then the breaker answers at once. */
    redis_stop(&r);
    cr_assert_neq(l2_get(c, "key", 3, 1, &val, &found, &gen), 0);
    cr_assert_eq(l2_get(c, "key", 3, 1, &val, &found, &gen), CAIRN_EBUSY);
    l2_stats st;
    l2_stats_get(c, &st);
    cr_assert_eq(st.breaker, 1);
    cr_assert_geq(st.breaker_opens, 1);
    buf_free(&val);
    l2_free(c);
    redis_free(&r);
}

Test(tiered, a_counter_that_went_backwards_is_not_trusted, .timeout = 60) {
    lease_ms = 0; /* a seq read per request: the read finds out */
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    char v[80];
    put_value(a, "bkt", bid, "k", "v1");
    get_value(b, "bkt", bid, "k", false, v, sizeof v);
    get_value(b, "bkt", bid, "k", false, v, sizeof v);
    /* The counter evicted (allkeys-lru) or reset: b must not take it for one
     * it has caught up with. */
    redisContext *c = redisConnect("127.0.0.1", g.r.port);
    freeReplyObject(redisCommand(c, "SET cairn:seq 0"));
    redisFree(c);
    uint64_t reads = counts(b).backend_reads;
    get_value(b, "bkt", bid, "k", false, v, sizeof v);
    cr_assert_str_eq(v, "v1");
    cr_assert_eq(counts(b).backend_reads, reads + 1, "b answered from its cache against a counter gone backwards");
    /* It joins the instance anew and caches again. */
    put_value(a, "bkt", bid, "k", "v2");
    uint64_t hits = counts(b).l1_hits;
    for (int i = 0; i < 300 && counts(b).l1_hits == hits; i++) {
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, "v2");
        usleep(10000);
    }
    cr_assert_gt(counts(b).l1_hits, hits, "b never trusted its cache again");
    gateways_close(&g);
}

/* With leases the writer finds out: an old acknowledgement must not answer
 * for a write published under a counter that went backwards. */
Test(tiered, a_counter_that_went_backwards_does_not_fool_a_writer, .timeout = 60) {
    gateways g;
    gateways_open(&g);
    meta_store *a = g.a, *b = g.b;
    int64_t bid = make_bucket(a, "bkt");
    char v[80], want[16];
    for (int i = 0; i < 20; i++) { /* b acknowledges seqs well above 0 */
        snprintf(want, sizeof want, "v%d", i);
        put_value(a, "bkt", bid, "k", want);
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
    }
    redisContext *c = redisConnect("127.0.0.1", g.r.port);
    freeReplyObject(redisCommand(c, "SET cairn:seq 0"));
    redisFree(c);
    for (int i = 0; i < 50; i++) {
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        snprintf(want, sizeof want, "w%d", i);
        put_value(a, "bkt", bid, "k", want);
        get_value(b, "bkt", bid, "k", false, v, sizeof v);
        cr_assert_str_eq(v, want, "round %d: b read '%s' after a wrote '%s'", i, v, want);
    }
    gateways_close(&g);
}
