/*
 * test_meta.c — the metadata store's conformance suite, run on each backend.
 *
 * One source, two test programs (meson.build): test_meta runs every test on
 * real SQLite files; test_meta_pg runs the same tests with
 * CAIRN_TEST_METADATA=postgres against the PostgreSQL server that
 * CAIRN_TEST_POSTGRES_URL names (scripts/pg-test.sh starts one from
 * Debian's binaries; scripts/run-tests.sh does it for `meson test`).  Without
 * that server every PostgreSQL test fails: a missing database is never a
 * pass.
 *
 * Each test opens a fresh store: on SQLite a database in its own mkdtemp
 * directory; on PostgreSQL a database cloned (CREATE DATABASE ... TEMPLATE)
 * from a template that the runner migrates once before the first test and
 * drops after the last, and dropped by fx_close.  The template's default
 * collation is ICU's en-US (where the server has ICU), so any ordering that
 * leaned on the database's locale instead of bytes would show.  The tests
 * drive the public meta.h calls only and assert on what a caller can
 * observe: error codes, returned rows, listing order and paging.  A few
 * also reach into the database with the backend's own client (plant,
 * count_rows) to check what is stored (tables after a down-migration) or to
 * plant a state the API cannot create (a newer schema, rows that contradict
 * each other for meta_check).
 *
 * Tests marked SQLITE_ONLY exercise what only SQLite has (a database file,
 * its write lock held by another process, open-by-path); they are skipped
 * on PostgreSQL.  Tests marked PG_ONLY exercise the PostgreSQL backend's
 * pool, timeouts, reconnects and concurrent migrations; they are skipped on
 * SQLite.  Every other test runs on both.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "meta/meta.h"
#include "meta/pg_int.h"

/* ---- the backend under test ---------------------------------------------------- */

static bool on_pg(void) {
    const char *m = getenv("CAIRN_TEST_METADATA");
    return m && !strcmp(m, "postgres");
}

/* First statement of a test that only SQLite can run (say why). */
#define SQLITE_ONLY(why)                                      \
    do {                                                      \
        if (on_pg()) cr_skip_test("SQLite only: %s", why);    \
    } while (0)
/* First statement of a test of the PostgreSQL backend itself. */
#define PG_ONLY()                                             \
    do {                                                      \
        if (!on_pg()) cr_skip_test("PostgreSQL only");        \
    } while (0)

static void notice_discard(void *arg, const char *msg) {
    (void)arg;
    (void)msg;
}

/* The test server's URL with its database replaced by db. */
static void pg_url(const char *db, char *out, size_t cap) {
    const char *base = getenv("CAIRN_TEST_POSTGRES_URL");
    const char *auth = base ? strstr(base, "://") : NULL;
    cr_assert_not_null(auth, "CAIRN_TEST_POSTGRES_URL is not a postgres:// URL");
    const char *path = strchr(auth + 3, '/');
    const char *query = strchr(auth + 3, '?');
    size_t host_end = path ? (size_t)(path - base) : query ? (size_t)(query - base) : strlen(base);
    int n = snprintf(out, cap, "%.*s/%s%s", (int)host_end, base, db, query ? query : "");
    cr_assert(n > 0 && (size_t)n < cap);
}

/* A plain libpq connection to db (the tests' own client). */
static PGconn *pg_connect(const char *db) {
    char url[512];
    pg_url(db, url, sizeof url);
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect to %s: %s", db, PQerrorMessage(c));
    PQsetNoticeProcessor(c, notice_discard, NULL);
    return c;
}

/* Runs sql on db; returns the first column of the first row as a number
 * (0 when there is none). */
static long long pg_do(const char *db, const char *sql) {
    PGconn *c = pg_connect(db);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    long long v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* ---- the PostgreSQL template: made once per run, by the runner ------------------- */

/* Runs sql on the admin database outside any test (no asserts here). */
static bool runner_sql(const char *url, const char *sql, char *why, size_t whylen) {
    PGconn *c = PQconnectdb(url);
    PQsetNoticeProcessor(c, notice_discard, NULL);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    bool ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok) snprintf(why, whylen, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok;
}

static char template_name[64];

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
    (void)set;
    if (!on_pg()) return;
    char why[1024] = "";
    const char *base = getenv("CAIRN_TEST_POSTGRES_URL");
    if (!base || strncmp(base, "postgres", 8) != 0) {
        setenv("CAIRN_TEST_PG_ERROR",
               "CAIRN_TEST_POSTGRES_URL is not set: start a server with scripts/pg-test.sh start "
               "(scripts/run-tests.sh does it) and export its URL",
               1);
        return;
    }
    core_init();
    snprintf(template_name, sizeof template_name, "cairn_tpl_%d", (int)getpid());
    char sql[256], url[512];
    const char *auth = strstr(base, "://"), *path = auth ? strchr(auth + 3, '/') : NULL;
    snprintf(url, sizeof url, "%.*s/%s", (int)(path ? path - base : (long)strlen(base)), base, template_name);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", template_name);
    bool ok = runner_sql(base, sql, why, sizeof why);
    /* ICU's en-US as the default collation where the server has ICU. */
    snprintf(sql, sizeof sql,
             "CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
             template_name);
    if (ok && !runner_sql(base, sql, why, sizeof why)) {
        snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE template0", template_name);
        ok = runner_sql(base, sql, why, sizeof why);
    }
    meta_store *ms = NULL;
    if (ok && meta_open_url(url, NULL, NULL, true, &ms, why, sizeof why) != 0) ok = false;
    meta_close(ms);
    if (!ok) {
        setenv("CAIRN_TEST_PG_ERROR", why, 1);
        return;
    }
    setenv("CAIRN_TEST_PG_TEMPLATE", template_name, 1);
}

/* Drops the template and every clone a test left; a clone left by a run in
 * which every test passed is a leak in fx_close: that fails the run. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    if (!on_pg() || !template_name[0] || !getenv("CAIRN_TEST_POSTGRES_URL")) return;
    const char *base = getenv("CAIRN_TEST_POSTGRES_URL");
    char why[1024], sql[256];
    PGconn *c = PQconnectdb(base);
    PQsetNoticeProcessor(c, notice_discard, NULL);
    snprintf(sql, sizeof sql, "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%d\\_%%'", (int)getpid());
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    int leaked = r && PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
    for (int i = 0; i < leaked; i++) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", PQgetvalue(r, i, 0));
        runner_sql(base, sql, why, sizeof why);
    }
    PQclear(r);
    PQfinish(c);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", template_name);
    runner_sql(base, sql, why, sizeof why);
    if (leaked && stats->tests_failed == 0 && stats->tests_crashed == 0) {
        fprintf(stderr, "test_meta: %d test database(s) were left behind: fx_close leaks them\n", leaked);
        exit(1);
    }
}

/* ---- fixture ---------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char path[128];   /* SQLite: the database file */
    char db[64];      /* PostgreSQL: this test's database */
    char url[512];    /* PostgreSQL: its URL */
    int readers;
    meta_store *ms;
} fx;

static meta_options test_options(int readers) {
    meta_options o = {.readers = readers, .fsync = false, .busy_timeout_ms = 5000};
    return o;
}

/* The pool a test's store gets on PostgreSQL: as many connections as the
 * SQLite store would have readers, so the tests that prove no callback
 * holds a connection (one reader) prove it on both. */
static meta_pg_options test_pg_options(int readers) {
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.max_conns = readers;
    po.min_conns = 1;
    po.acquire_timeout_ms = 20000; /* a stuck checkout fails loudly, not in a timeout test's time */
    return po;
}

/* Opens (migrate) or opens raw the test's store; returns the result. */
static int fx_try_open(fx *f, int readers, bool migrate, meta_store **out) {
    meta_options o = test_options(readers);
    if (!on_pg()) return migrate ? meta_open(f->path, &o, out) : meta_open_raw(f->path, &o, out);
    meta_pg_options po = test_pg_options(readers);
    o.pg = &po;
    char why[512];
    return meta_open_url(f->url, NULL, &o, migrate, out, why, sizeof why);
}

/* A new, empty store location: a directory, or a database (cloned from the
 * migrated template when migrated, else empty). */
static void fx_make(fx *f, bool migrated) {
    memset(f, 0, sizeof *f);
    cr_assert_eq(core_init(), 0);
    strcpy(f->dir, "/tmp/cairn-test-meta-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/meta.db", f->dir);
    if (!on_pg()) return;
    const char *err = getenv("CAIRN_TEST_PG_ERROR");
    cr_assert_null(err, "PostgreSQL is not available: %s", err);
    const char *tpl = getenv("CAIRN_TEST_PG_TEMPLATE");
    cr_assert_not_null(tpl, "no template database (the runner's PRE_ALL hook did not run)");
    char id[13];
    rand_hex_id(id, 6);
    snprintf(f->db, sizeof f->db, "t_%d_%s", (int)getppid(), id);
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE %s", f->db, migrated ? tpl : "template0");
    pg_do("postgres", sql);
    pg_url(f->db, f->url, sizeof f->url);
}

static void fx_open(fx *f, int readers) {
    fx_make(f, true);
    f->readers = readers;
    cr_assert_eq(fx_try_open(f, readers, true, &f->ms), 0);
}

static void fx_reopen(fx *f) {
    meta_close(f->ms);
    f->ms = NULL;
    cr_assert_eq(fx_try_open(f, 2, true, &f->ms), 0);
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
    if (f->db[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", f->db);
        pg_do("postgres", sql);
        f->db[0] = '\0';
    }
}

/* Runs SQL on the test's database with the backend's own client: states no
 * meta call can create.  pg_sql is the same statement in PostgreSQL's
 * dialect, where it differs (NULL: the same text). */
static void plant2(const fx *f, const char *sqlite_sql, const char *pg_sql) {
    if (on_pg()) {
        pg_do(f->db, pg_sql ? pg_sql : sqlite_sql);
        return;
    }
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(f->path, &db), SQLITE_OK);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, sqlite_sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sqlite_sql, msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
}

static void plant(const fx *f, const char *sql) { plant2(f, sql, NULL); }

/* A number the database answers to sql (the first column of one row). */
static long long db_number(const fx *f, const char *sqlite_sql, const char *pg_sql) {
    if (on_pg()) return pg_do(f->db, pg_sql ? pg_sql : sqlite_sql);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sqlite_sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite_sql);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
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

/* ---- metadata URLs ------------------------------------------------------------ */

Test(url, metadata_urls_name_a_backend_or_say_what_is_wrong) {
    meta_url u;
    char why[256];
    cr_assert_eq(meta_url_parse("", "/srv/cairn", &u, why, sizeof why), 0);
    cr_expect_eq(u.backend, META_BACKEND_SQLITE);
    cr_expect_str_eq(u.path, "/srv/cairn/meta.db", "the default is data_dir/meta.db");
    cr_assert_eq(meta_url_parse("sqlite:///var/lib/cairn/m.db", NULL, &u, why, sizeof why), 0);
    cr_expect_str_eq(u.path, "/var/lib/cairn/m.db");
    cr_assert_eq(meta_url_parse("sqlite:///a%20b/%C3%A9%2fm.db", NULL, &u, why, sizeof why), 0);
    cr_expect_str_eq(u.path, "/a b/\xc3\xa9/m.db", "escapes decoded, either case");
    cr_assert_eq(meta_url_parse("postgres://u:p@db:5432/cairn?sslmode=require", NULL, &u, why, sizeof why), 0);
    cr_expect_eq(u.backend, META_BACKEND_POSTGRES);
    cr_expect_str_eq(u.conninfo, "postgres://u:p@db:5432/cairn?sslmode=require", "libpq reads the URL as given");
    cr_assert_eq(meta_url_parse("postgresql://db/cairn", NULL, &u, why, sizeof why), 0);
    cr_expect_eq(u.backend, META_BACKEND_POSTGRES);

    static const struct {
        const char *url, *why;
    } bad[] = {
        {"mysql://db/x", "not a sqlite:// or postgres:// URL"},
        {"sqlite://host/x.db", "sqlite URLs name an absolute path and no host: sqlite:///ABS/PATH"},
        {"sqlite://", "sqlite URLs name an absolute path and no host: sqlite:///ABS/PATH"},
        {"sqlite:///", "the sqlite URL names a directory, not a file"},
        {"sqlite:///var/lib/", "the sqlite URL names a directory, not a file"},
        {"sqlite:///x.db?mode=ro", "sqlite URLs take no query or fragment"},
        {"sqlite:///x.db#f", "sqlite URLs take no query or fragment"},
        {"sqlite:///x%2", "bad %-escape in the sqlite path"},
        {"sqlite:///x%zz", "bad %-escape in the sqlite path"},
        {"sqlite:///x%00y", "NUL in the sqlite path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        cr_expect_eq(meta_url_parse(bad[i].url, "/d", &u, why, sizeof why), CAIRN_EINVAL, "%s", bad[i].url);
        cr_expect_str_eq(why, bad[i].why, "%s", bad[i].url);
    }
    char long_url[2100];
    memset(long_url, 'a', sizeof long_url - 1);
    long_url[sizeof long_url - 1] = '\0';
    memcpy(long_url, "sqlite:///", 10);
    cr_expect_eq(meta_url_parse(long_url, NULL, &u, why, sizeof why), CAIRN_EINVAL);
    cr_expect_str_eq(why, "sqlite path too long");
    memcpy(long_url, "postgres://", 11);
    cr_expect_eq(meta_url_parse(long_url, NULL, &u, why, sizeof why), CAIRN_EINVAL);
    cr_expect_str_eq(why, "postgres URL too long");
    char long_dir[1100];
    memset(long_dir, 'd', sizeof long_dir - 1);
    long_dir[sizeof long_dir - 1] = '\0';
    cr_expect_eq(meta_url_parse("", long_dir, &u, why, sizeof why), CAIRN_EINVAL);
    cr_expect_str_eq(why, "data directory path too long");
    cr_expect_eq(meta_url_parse("", "", &u, why, sizeof why), CAIRN_EINVAL);
    cr_expect_str_eq(why, "no data directory for the default database");
    cr_expect_eq(meta_url_parse(NULL, "/d", &u, NULL, 0), CAIRN_EINVAL, "why may be NULL");
}

Test(url, opening_by_url_reaches_the_named_database) {
    SQLITE_ONLY("sqlite:// URLs and the data directory's default file");
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "here", 1);
    meta_close(f.ms);
    meta_options o = test_options(1);
    char url[300], why[1400];
    snprintf(url, sizeof url, "sqlite://%s", f.path);
    cr_assert_eq(meta_open_url(url, NULL, &o, true, &f.ms, why, sizeof why), 0, "%s", why);
    cr_expect_str_eq(meta_backend_name(f.ms), "sqlite");
    meta_bucket b;
    cr_expect_eq(meta_bucket_get(f.ms, "here", &b), 0);
    meta_close(f.ms);
    /* The default: meta.db under the data directory. */
    cr_assert_eq(meta_open_url("", f.dir, &o, true, &f.ms, why, sizeof why), 0, "%s", why);
    cr_expect_eq(meta_bucket_get(f.ms, "here", &b), 0);
    meta_close(f.ms);
    meta_store *none = (meta_store *)1;
    /* PostgreSQL is in the build: a server nobody runs is an I/O error that
     * says where it looked (never the password). */
    cr_expect_eq(meta_open_url("postgres://u:secret@127.0.0.1:1/x", NULL, &o, true, &none, why, sizeof why), CAIRN_EIO);
    cr_expect_null(none);
    cr_expect(strstr(why, "127.0.0.1") && strstr(why, "port 1") && !strstr(why, "secret"), "%s", why);
    snprintf(url, sizeof url, "sqlite://%s/no/such/dir/m.db", f.dir);
    cr_expect_eq(meta_open_url(url, NULL, &o, true, &none, why, sizeof why), CAIRN_EIO);
    cr_expect(strstr(why, "/no/such/dir/m.db: ") != NULL, "%s", why);
    cr_expect_eq(meta_open_url("mysql://x", NULL, &o, true, &none, why, sizeof why), CAIRN_EINVAL);
    cr_expect_str_eq(meta_backend_name(NULL), "none");
    f.ms = NULL;
    fx_close(&f);
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
    SQLITE_ONLY("meta_open takes a file path");
    meta_store *ms = NULL;
    cr_assert_eq(meta_open(NULL, NULL, &ms), CAIRN_EINVAL);
    cr_assert_eq(meta_open("", NULL, &ms), CAIRN_EINVAL);
    cr_assert_neq(meta_open("/nonexistent-dir-cairn/x/meta.db", NULL, &ms), 0);
    cr_assert_null(ms);
}

Test(meta, open_raw_leaves_empty_schema) {
    fx f;
    fx_make(&f, false);
    cr_assert_eq(fx_try_open(&f, 1, false, &f.ms), 0);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, 0);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "x", &b), CAIRN_EDB, "no tables yet");
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest()), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "x", &b), CAIRN_ENOTFOUND);
    fx_close(&f);
}

/* How many of the first migration's five tables exist. */
static int count_tables(const fx *f) {
    return (int)db_number(f,
                          "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                          " name IN ('users','access_keys','buckets','objects','object_data')",
                          "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
                          " AND table_name IN ('users','access_keys','buckets','objects','object_data')");
}

/* Rows in a table: inline bytes of replaced or deleted versions must not
 * linger in object_data. */
static int count_rows(const fx *f, const char *table) {
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    return (int)db_number(f, sql, NULL);
}

Test(meta, migrate_down_to_zero_and_up_again) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "before", 1);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "before", &b), 0); /* caches the reader statement */
    cr_assert_eq(count_tables(&f), 5);

    cr_assert_eq(meta_migrate(f.ms, 0), 0);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(count_tables(&f), 0, "down to 0 drops every table");
    cr_assert_eq(meta_bucket_get(f.ms, "before", &b), CAIRN_EDB);
    cr_assert_eq(meta_migrate(f.ms, 0), 0, "already there is a no-op");

    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest()), 0);
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, meta_schema_latest());
    cr_assert_eq(count_tables(&f), 5);
    cr_assert_eq(meta_bucket_get(f.ms, "before", &b), CAIRN_ENOTFOUND, "data went with the tables");
    mk_bucket(f.ms, "after", 1);
    cr_assert_eq(meta_bucket_get(f.ms, "after", &b), 0);

    cr_assert_eq(meta_migrate(f.ms, -1), CAIRN_EINVAL);
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest() + 1), CAIRN_EINVAL);
    fx_close(&f);
}

/* Records a schema version newer than this binary knows. */
static void plant_future_version(const fx *f) {
    char sql[160];
    snprintf(sql, sizeof sql,
             "INSERT INTO schema_migrations(version, name, applied_ms) VALUES (%d, 'future', 0)",
             meta_schema_latest() + 1);
    plant(f, sql);
}

Test(meta, open_refuses_newer_schema) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "keep", 1);
    meta_close(f.ms);
    f.ms = NULL;
    plant_future_version(&f);
    meta_store *ms = NULL;
    cr_assert_eq(fx_try_open(&f, 1, true, &ms), CAIRN_EDB);
    cr_assert_null(ms);
    cr_assert_eq(count_tables(&f), 5, "nothing was migrated down");
    fx_close(&f);
}

/* A version this binary has no migration for cannot be migrated down from
 * either: nothing is dropped. */
Test(meta, migrate_down_refuses_an_unknown_newer_schema) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "keep", 1);
    meta_close(f.ms);
    f.ms = NULL;
    plant_future_version(&f);
    cr_assert_eq(fx_try_open(&f, 1, false, &f.ms), 0);
    cr_expect_eq(meta_migrate(f.ms, 0), CAIRN_EDB);
    cr_expect_eq(meta_migrate(f.ms, meta_schema_latest()), CAIRN_EDB);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_expect_eq(v, meta_schema_latest() + 1);
    cr_expect_eq(count_tables(&f), 5, "nothing was dropped");
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

static int keep_two(void *ud, const meta_bucket *b) {
    meta_bucket *out = ud;
    int i = out[0].id ? 1 : 0;
    out[i] = *b;
    return i;
}

static int stop_after_two(void *ud, const meta_bucket *b) {
    collect *c = ud;
    bucket_list_cb(ud, b);
    return c->n >= 2;
}

/* Pages of buckets: by owner, after a name, within a prefix, limit rows
 * and whether another follows; both backends alike. */
static void page_of(meta_store *ms, int64_t owner, const char *prefix, const char *after, int limit, collect *c,
                    bool *more, const char *want) {
    collect_free(c);
    *more = true;
    cr_assert_eq(meta_bucket_list_page(ms, owner, prefix, after, limit, bucket_list_cb, c, more), 0);
    char got[512] = "";
    for (int i = 0; i < c->n; i++) {
        if (i) strcat(got, ",");
        strcat(got, c->keys[i]);
    }
    cr_assert_str_eq(got, want, "owner %lld prefix '%s' after '%s' limit %d", (long long)owner, prefix ? prefix : "",
                     after ? after : "", limit);
}

Test(meta, bucket_list_pages) {
    fx f;
    fx_open(&f, 2);
    const char *names[] = {"a-1", "a.2", "a1", "ab", "abc", "b", "b-z", "c"};
    for (int i = 0; i < 8; i++) mk_bucket(f.ms, names[i], i % 2 ? 2 : 1);
    collect c = {0};
    bool more;
    page_of(f.ms, -1, NULL, NULL, 3, &c, &more, "a-1,a.2,a1");
    cr_assert(more);
    page_of(f.ms, -1, NULL, "a1", 3, &c, &more, "ab,abc,b");
    cr_assert(more);
    page_of(f.ms, -1, "", "b", 3, &c, &more, "b-z,c");
    cr_assert_not(more);
    page_of(f.ms, -1, NULL, "c", 3, &c, &more, "");
    cr_assert_not(more);
    page_of(f.ms, -1, NULL, NULL, 8, &c, &more, "a-1,a.2,a1,ab,abc,b,b-z,c");
    cr_assert_not(more, "exactly a page: nothing follows");
    /* a prefix: its names only, the page cut at its end */
    page_of(f.ms, -1, "ab", NULL, 1, &c, &more, "ab");
    cr_assert(more);
    page_of(f.ms, -1, "ab", "ab", 1, &c, &more, "abc");
    cr_assert_not(more, "b follows, but not with the prefix");
    page_of(f.ms, -1, "a", "a1", 10, &c, &more, "ab,abc");
    page_of(f.ms, -1, "b", NULL, 10, &c, &more, "b,b-z");
    page_of(f.ms, -1, "zz", NULL, 10, &c, &more, "");
    cr_assert_not(more);
    /* a prefix no bucket name can have (not ASCII) finds none */
    page_of(f.ms, -1, "a\xc2\xbf", NULL, 10, &c, &more, "");
    cr_assert_not(more);
    page_of(f.ms, -1, "\xc3\xa9", NULL, 10, &c, &more, "");
    /* a start before the prefix starts at the prefix */
    page_of(f.ms, -1, "b", "a", 10, &c, &more, "b,b-z");
    /* one owner's */
    page_of(f.ms, 1, NULL, NULL, 2, &c, &more, "a-1,a1");
    cr_assert(more);
    page_of(f.ms, 1, NULL, "a1", 2, &c, &more, "abc,b-z");
    cr_assert_not(more);
    page_of(f.ms, 2, "a", NULL, 10, &c, &more, "a.2,ab");
    page_of(f.ms, 3, NULL, NULL, 10, &c, &more, "");
    /* a callback may stop the walk */
    collect_free(&c);
    cr_assert_eq(meta_bucket_list_page(f.ms, -1, NULL, NULL, 5, stop_after_two, &c, &more), 0);
    cr_assert_eq(c.n, 2);
    collect_free(&c);
    /* a page's rows are the buckets whole, as meta_bucket_get has them */
    cr_assert_eq(meta_bucket_set_public(f.ms, "ab", true), 0);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "ab", 0, META_VERSIONING_ENABLED), 0);
    meta_bucket whole[2] = {0};
    cr_assert_eq(meta_bucket_list_page(f.ms, -1, "ab", NULL, 2, keep_two, whole, &more), 0);
    for (int i = 0; i < 2; i++) {
        meta_bucket got;
        cr_assert_eq(meta_bucket_get(f.ms, whole[i].name, &got), 0);
        cr_assert(got.id == whole[i].id && got.owner_id == whole[i].owner_id &&
                      got.created_ms == whole[i].created_ms && got.public_read == whole[i].public_read &&
                      !strcmp(got.region, whole[i].region) && got.versioning == whole[i].versioning &&
                      got.object_lock == whole[i].object_lock,
                  "%s: the page's row differs from the bucket", got.name);
    }
    cr_assert(whole[0].public_read && whole[0].versioning == META_VERSIONING_ENABLED);
    cr_assert_str_eq(whole[0].region, "us-east-1");
    /* limits */
    cr_assert_eq(meta_bucket_list_page(f.ms, -1, NULL, NULL, 0, bucket_list_cb, &c, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_list_page(f.ms, -1, NULL, NULL, 100001, bucket_list_cb, &c, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_list_page(f.ms, -1, NULL, NULL, 1, NULL, &c, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_list_page(NULL, -1, NULL, NULL, 1, bucket_list_cb, &c, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_list_page(f.ms, -1, NULL, NULL, 100000, bucket_list_cb, &c, NULL), 0);
    cr_assert_eq(c.n, 8);
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

Test(meta, conditional_puts_hold_at_commit) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    meta_object o = mk_obj("b", "k", 1, 1);
    o.cond = META_PUT_IF_MATCH;
    strcpy(o.cond_etag, o.etag);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EPRECOND, "If-Match with no current version");
    o.cond = META_PUT_IF_ABSENT;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0, "If-None-Match: * on an absent key");
    meta_object again = mk_obj("b", "k", 1, 2);
    again.cond = META_PUT_IF_ABSENT;
    meta_object rep;
    bool had = true;
    cr_assert_eq(meta_object_put(f.ms, &again, &rep, &had), CAIRN_EPRECOND, "the key exists now");
    cr_assert_not(had, "a refused put replaced nothing");
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, o.version_id, "the refused put changed nothing");
    meta_object_clear(&got);
    again.cond = META_PUT_IF_MATCH;
    strcpy(again.cond_etag, "0123456789abcdef0123456789abcdef");
    cr_assert_eq(meta_object_put(f.ms, &again, NULL, NULL), CAIRN_EPRECOND, "another etag");
    strcpy(again.cond_etag, o.etag);
    cr_assert_eq(meta_object_put(f.ms, &again, &rep, &had), 0, "the current etag");
    cr_assert(had);
    cr_assert_str_eq(rep.version_id, o.version_id);
    meta_object_clear(&rep);
    again.cond = (meta_put_cond)7;
    cr_assert_eq(meta_object_put(f.ms, &again, NULL, NULL), CAIRN_EINVAL, "an unknown condition");
    fx_close(&f);
}

typedef struct {
    meta_store *ms;
    int wins, refused, other;
} cond_racer;

static void *cond_race_main(void *arg) {
    cond_racer *r = arg;
    meta_object o = mk_obj("b", "race", 4, 1);
    o.cond = META_PUT_IF_ABSENT;
    int rc = meta_object_put(r->ms, &o, NULL, NULL);
    if (rc == 0) r->wins++;
    else if (rc == CAIRN_EPRECOND) r->refused++;
    else r->other++;
    return NULL;
}

/* 16 writers of one absent key, each If-None-Match: *: exactly one wins. */
Test(meta, concurrent_if_absent_puts_have_one_winner, .timeout = 60) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    for (int round = 0; round < 5; round++) {
        pthread_t th[16];
        cond_racer r[16];
        memset(r, 0, sizeof r);
        for (int i = 0; i < 16; i++) {
            r[i].ms = f.ms;
            cr_assert_eq(pthread_create(&th[i], NULL, cond_race_main, &r[i]), 0);
        }
        int wins = 0, refused = 0, other = 0;
        for (int i = 0; i < 16; i++) {
            pthread_join(th[i], NULL);
            wins += r[i].wins;
            refused += r[i].refused;
            other += r[i].other;
        }
        cr_assert_eq(other, 0, "round %d: no other outcome", round);
        cr_assert_eq(wins, 1, "round %d: exactly one writer wins (%d did)", round, wins);
        cr_assert_eq(refused, 15, "round %d", round);
        meta_object del;
        cr_assert_eq(meta_object_delete(f.ms, "b", 0, "race", 4, &del), 0);
        meta_object_clear(&del);
    }
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
    cr_assert_eq(count_rows(&f, "object_data"), 0, "replaced inline bytes are gone");
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
    cr_assert_eq(count_rows(&f, "object_data"), 1, "only the empty object's row is left");
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

Test(jobs, claims_take_only_the_kinds_set_for_the_store) {
    fx f;
    fx_open(&f, 2);
    int64_t a = enqueue_job(f.ms, "mine", 0, 1000, NULL);
    int64_t other = enqueue_job(f.ms, "someone.else's", 9, 1000, NULL);
    int64_t quoted = enqueue_job(f.ms, "q\"uote", 0, 1100, NULL);
    int64_t b = enqueue_job(f.ms, "mine", 0, 1200, NULL);
    const char *kinds[] = {"mine", "q\"uote"};
    cr_assert_eq(meta_job_kinds_set(f.ms, kinds, 2), 0);
    /* The other kind's job has the highest priority and is never taken. */
    cr_expect_eq(claim_id(f.ms, "w", 5000, 1000), a);
    cr_expect_eq(claim_id(f.ms, "w", 5000, 1000), quoted);
    meta_job next;
    int frc = -99;
    cr_assert_eq(meta_job_finish_claim(f.ms, a, "w", "completed", 0, "", 5000, 1000, &frc, &next), 0);
    cr_expect_eq(frc, 0);
    cr_expect_eq(next.id, b);
    meta_job_clear(&next);
    cr_expect_eq(meta_job_finish_claim(f.ms, b, "w", "completed", 0, "", 5000, 1000, &frc, &next), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_job_claim(f.ms, "w", 5000, 1000, &next), CAIRN_ENOTFOUND);
    expect_state(f.ms, other, "available", 0);
    /* Every kind again. */
    cr_assert_eq(meta_job_kinds_set(f.ms, NULL, 0), 0);
    cr_expect_eq(claim_id(f.ms, "w", 5000, 1000), other);
    cr_expect_eq(meta_job_kinds_set(f.ms, NULL, 1), CAIRN_EINVAL);
    cr_expect_eq(meta_job_kinds_set(NULL, kinds, 1), CAIRN_EINVAL);
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

Test(uploads, part_checksums_round_trip_through_put_list_replace_and_complete) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload(f.ms, "b", id, "k", "up");
    const char *layout = "1+0:4096:0123456789abcdef";
    meta_part p1 = mk_part(1, 100, layout), p2 = mk_part(2, 50, layout), old;
    strcpy(p1.checksum, "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    bool had = true;
    cr_assert_eq(meta_part_put(f.ms, "up", &p1, &old, &had), 0);
    cr_assert_eq(meta_part_put(f.ms, "up", &p2, &old, &had), 0);
    part_list pl = {0};
    bool more = true;
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 100, keep_part, &pl, &more), 0);
    cr_assert_eq(pl.n, 2);
    cr_assert_str_eq(pl.p[0].checksum, p1.checksum);
    cr_assert_str_eq(pl.p[1].checksum, "", "a part without one has none");
    cr_assert_eq(pl.p[0].offset, 0);
    /* A re-upload replaces the checksum with the part, and reports the old one. */
    meta_part again = mk_part(1, 100, layout);
    strcpy(again.checksum, "crc64nvme:AAAAAAAAAAA=");
    cr_assert_eq(meta_part_put(f.ms, "up", &again, &old, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(old.checksum, p1.checksum);
    /* Complete moves them to the object's parts, from the upload's rows. */
    meta_part chosen[2] = {again, p2};
    chosen[0].checksum[0] = '\0';
    chosen[1].offset = 100;
    meta_object obj = mp_obj("b", id, "k", 150, 2), replaced;
    bool had_replaced;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "up", &obj, chosen, 2, &replaced, &had_replaced, ignore_part, &unused), 0);
    part_list op = {0};
    cr_assert_eq(meta_object_parts(f.ms, obj.version_id, keep_part, &op), 0);
    cr_assert_eq(op.n, 2);
    cr_assert_str_eq(op.p[0].checksum, "crc64nvme:AAAAAAAAAAA=", "the row's, not the caller's");
    cr_assert_str_eq(op.p[1].checksum, "");
    cr_assert_eq(op.p[1].offset, 100);
    fx_close(&f);
}

Test(uploads, a_conditional_complete_that_fails_leaves_the_upload) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    put_key(f.ms, "b", "k", 1);
    mk_upload(f.ms, "b", id, "k", "up");
    meta_part part = mk_part(1, 100, "1+0:4096:0123456789abcdef");
    meta_part old;
    bool had = false;
    cr_assert_eq(meta_part_put(f.ms, "up", &part, &old, &had), 0);
    meta_object obj = mp_obj("b", id, "k", 100, 1);
    obj.cond = META_PUT_IF_ABSENT;
    meta_object replaced;
    bool had_replaced = true;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "up", &obj, &part, 1, &replaced, &had_replaced, ignore_part, &unused),
                 CAIRN_EPRECOND);
    cr_assert_not(had_replaced);
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up", &u), 0, "the upload is intact, to complete without the condition");
    meta_upload_clear(&u);
    obj.cond = META_PUT_IF_MATCH;
    strcpy(obj.cond_etag, "d41d8cd98f00b204e9800998ecf8427e");
    cr_assert_eq(meta_upload_complete(f.ms, "up", &obj, &part, 1, &replaced, &had_replaced, ignore_part, &unused), 0);
    cr_assert(had_replaced);
    meta_object_clear(&replaced);
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

/* ==== every meta.h call: bad arguments, absent rows, paging, callbacks ======================
 *
 * The tests below drive each call of meta.h through its contract: the rows
 * it returns, the order and paging it promises, and every error a caller can
 * provoke without fault injection (NULL and out-of-range arguments, rows
 * that do not exist, conflicts, another process holding the write lock). */

/* Collects up to 32 short strings from a callback; stops after stop_after. */
typedef struct {
    char s[32][80];
    int n, stop_after;
} names;

static int names_add(names *l, const char *s, size_t len) {
    cr_assert_lt(l->n, 32);
    cr_assert_lt(len, sizeof l->s[0]);
    memcpy(l->s[l->n], s, len);
    l->s[l->n][len] = '\0';
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static void fx_mkdir(fx *f) { fx_make(f, false); }

static int64_t mk_user(meta_store *ms, const char *name) {
    meta_user u = {0};
    strcpy(u.name, name);
    cr_assert_eq(meta_user_create(ms, &u), 0, "create user %s", name);
    return u.id;
}

/* An upload initiated at initiated_ms, with headers. */
static void mk_upload_at(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                         const char *upload_id, int64_t initiated_ms) {
    meta_upload u = {.bucket_id = bucket_id, .owner_id = 3, .initiated_ms = initiated_ms};
    strcpy(u.upload_id, upload_id);
    strcpy(u.bucket, bucket);
    strcpy(u.key, key);
    u.key_len = strlen(key);
    u.headers_json = (char *)"{\"content-type\":\"a/b\"}";
    cr_assert_eq(meta_upload_create(ms, &u), 0, "create upload %s", upload_id);
}

static void put_part(meta_store *ms, const char *upload_id, const meta_part *p) {
    meta_part old;
    bool had = true;
    cr_assert_eq(meta_part_put(ms, upload_id, p, &old, &had), 0, "part %d of %s", p->part_number, upload_id);
}

/* Completes upload_id (one part p, of key) into a multipart object; returns it. */
static meta_object complete_one(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                                const char *upload_id, const meta_part *p, int64_t mtime_ms) {
    meta_object o = mp_obj(bucket, bucket_id, key, p->size, 1);
    o.mtime_ms = mtime_ms;
    meta_object replaced;
    bool had;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(ms, upload_id, &o, p, 1, &replaced, &had, ignore_part, &unused), 0,
                 "complete %s", upload_id);
    meta_object_clear(&replaced);
    return o;
}

/* ---- open, close, ping and schema: arguments and a busy database --------------------------- */

Test(meta, open_and_schema_calls_reject_bad_arguments) {
    SQLITE_ONLY("open-by-path arguments and the file it must not create");
    fx f;
    fx_mkdir(&f);
    meta_options o = test_options(1);
    meta_store *ms = NULL;
    cr_assert_eq(meta_open_raw(NULL, &o, &ms), CAIRN_EINVAL);
    cr_assert_eq(meta_open_raw("", &o, &ms), CAIRN_EINVAL);
    cr_assert_eq(meta_open_raw(":memory:", &o, &ms), CAIRN_EINVAL, "the readers could not see the writer's database");
    cr_assert_eq(meta_open(":memory:", &o, &ms), CAIRN_EINVAL);
    cr_assert_eq(meta_open_raw(f.path, &o, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_open(f.path, &o, NULL), CAIRN_EINVAL);
    cr_assert_null(ms);
    cr_assert_eq(access(f.path, F_OK), -1, "a refused open creates no file");
    meta_close(NULL); /* a no-op, like free(NULL) */
    cr_assert_eq(meta_ping(NULL), CAIRN_EINVAL);
    int v = -7;
    cr_assert_eq(meta_schema_version(NULL, &v), CAIRN_EINVAL);
    cr_assert_eq(v, -7);
    cr_assert_eq(meta_migrate(NULL, 0), CAIRN_EINVAL);

    /* NULL options: the defaults (durable commits, four readers) work. */
    cr_assert_eq(meta_open(f.path, NULL, &f.ms), 0);
    cr_assert_eq(meta_ping(f.ms), 0);
    cr_assert_eq(meta_schema_version(f.ms, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, meta_schema_latest());
    mk_bucket(f.ms, "b", 1);
    fx_close(&f);
}

Test(meta, open_refuses_a_file_that_is_not_a_database) {
    SQLITE_ONLY("a file that is not a database");
    fx f;
    fx_mkdir(&f);
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)('a' + i % 26);
    FILE *fp = fopen(f.path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
    fclose(fp);
    meta_options o = test_options(2);
    meta_store *ms = NULL;
    cr_assert_eq(meta_open(f.path, &o, &ms), CAIRN_EDB);
    cr_assert_null(ms);
    cr_assert_eq(meta_open_raw(f.path, &o, &ms), CAIRN_EDB);
    cr_assert_null(ms);
    char back[sizeof junk + 1];
    fp = fopen(f.path, "rb");
    cr_assert_not_null(fp);
    cr_assert_eq(fread(back, 1, sizeof back, fp), sizeof junk, "the file was neither grown nor truncated");
    fclose(fp);
    cr_assert_eq(memcmp(back, junk, sizeof junk), 0, "the file was not overwritten");
    fx_close(&f);
}

Test(meta, writes_report_busy_while_another_process_holds_the_write_lock, .timeout = 60) {
    SQLITE_ONLY("SQLite's single write lock, held by another process");
    fx f;
    fx_open(&f, 1);
    meta_close(f.ms);
    meta_options o = {.readers = 1, .fsync = false, .busy_timeout_ms = 20};
    cr_assert_eq(meta_open(f.path, &o, &f.ms), 0);
    mk_bucket(f.ms, "b", 1);
    int64_t uid = mk_user(f.ms, "u");
    meta_key k = {.user_id = uid, .active = true};
    strcpy(k.access_key, "AKIA1");
    strcpy(k.sealed_secret, "s");
    cr_assert_eq(meta_key_create(f.ms, &k), 0);
    cr_assert_eq(meta_node_upsert(f.ms, "aaaaaaaaaaaaaaaa", "http://n1"), 0);

    /* Another process (`cairn migrate`, an operator's sqlite3) holds the write lock. */
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(f.path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    cr_assert_eq(meta_ping(f.ms), CAIRN_EBUSY, "ping includes a write transaction");
    meta_bucket nb = {.owner_id = 1};
    strcpy(nb.name, "c");
    cr_assert_eq(meta_bucket_create(f.ms, &nb, NULL), CAIRN_EBUSY);
    meta_object obj = mk_obj("b", "k", 1, 1);
    bool had = true;
    cr_assert_eq(meta_object_put(f.ms, &obj, NULL, &had), CAIRN_EBUSY);
    cr_assert_not(had);
    strcpy(k.access_key, "AKIA2");
    cr_assert_eq(meta_key_create(f.ms, &k), CAIRN_EBUSY);
    cr_assert_eq(meta_key_set_active(f.ms, "AKIA1", false), CAIRN_EBUSY);
    cr_assert_eq(meta_node_seen(f.ms, "aaaaaaaaaaaaaaaa", false, "down"), CAIRN_EBUSY);
    meta_job j = {.run_at_ms = 1};
    strcpy(j.kind, "k");
    int64_t jid = 0;
    cr_assert_eq(meta_job_enqueue(f.ms, &j, &jid), CAIRN_EBUSY);
    cr_assert_eq(meta_migrate(f.ms, 0), CAIRN_EDB, "a migration step cannot begin either");

    /* Reads go on beside the other writer (WAL). */
    meta_bucket got;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, meta_schema_latest(), "the refused migration changed nothing");

    cr_assert_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* Nothing of the refused calls happened, and the store works again. */
    cr_assert_eq(meta_ping(f.ms), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "c", &got), CAIRN_ENOTFOUND);
    meta_object gone;
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, false, &gone), CAIRN_ENOTFOUND);
    meta_key kg;
    cr_assert_eq(meta_key_get(f.ms, "AKIA2", &kg), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_key_get(f.ms, "AKIA1", &kg), 0);
    cr_assert(kg.active);
    meta_node n;
    cr_assert_eq(meta_node_get(f.ms, "aaaaaaaaaaaaaaaa", &n), 0);
    cr_assert_str_eq(n.last_error, "");
    cr_assert_eq(meta_bucket_create(f.ms, &nb, NULL), 0);
    cr_assert_eq(meta_object_put(f.ms, &obj, NULL, NULL), 0);
    cr_assert_eq(meta_job_enqueue(f.ms, &j, &jid), 0);
    cr_assert_gt(jid, 0);
    fx_close(&f);
}

/* ---- users and keys ------------------------------------------------------------------------ */

Test(meta, user_calls_reject_bad_arguments_and_match_exact_names) {
    fx f;
    fx_open(&f, 1);
    meta_user u = {0}, got;
    cr_assert_eq(meta_user_create(NULL, &u), CAIRN_EINVAL);
    cr_assert_eq(meta_user_create(f.ms, NULL), CAIRN_EINVAL);
    memset(u.name, 'n', sizeof u.name); /* no room for the NUL */
    cr_assert_eq(meta_user_create(f.ms, &u), CAIRN_EINVAL);
    memset(&u, 0, sizeof u);
    strcpy(u.name, "ok");
    memset(u.display_name, 'd', sizeof u.display_name);
    cr_assert_eq(meta_user_create(f.ms, &u), CAIRN_EINVAL);

    memset(&u, 0, sizeof u);
    memset(u.name, 'n', sizeof u.name - 1); /* the longest name that fits */
    u.created_ms = 4242;
    cr_assert_eq(meta_user_create(f.ms, &u), 0);
    cr_assert_eq(meta_user_get_by_name(f.ms, u.name, &got), 0);
    cr_assert_eq(got.id, u.id);
    cr_assert_eq(strlen(got.name), sizeof u.name - 1);
    cr_assert_eq(got.created_ms, 4242, "a given creation time is kept");
    cr_assert_eq(meta_user_get_by_name(f.ms, "nnn", &got), CAIRN_ENOTFOUND, "no prefix match");
    cr_assert_eq(meta_user_get_by_name(f.ms, "", &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_user_get_by_name(NULL, "x", &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_get_by_name(f.ms, NULL, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_get_by_name(f.ms, u.name, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_user_get(NULL, u.id, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_get(f.ms, u.id, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_user_get(f.ms, 0, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_user_get(f.ms, -1, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_user_list(NULL, user_list_cb, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_user_list(f.ms, NULL, NULL), CAIRN_EINVAL);

    char long_name[130];
    memset(long_name, 'r', 129);
    long_name[129] = '\0';
    cr_assert_eq(meta_user_ensure_root(NULL, "root", &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_ensure_root(f.ms, NULL, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_ensure_root(f.ms, "", &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_ensure_root(f.ms, long_name, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_ensure_root(f.ms, "root", NULL), 0, "out may be NULL");
    cr_assert_eq(meta_user_get_by_name(f.ms, "root", &got), 0);
    cr_assert(got.is_root);

    collect c = {0};
    cr_assert_eq(meta_user_list(f.ms, user_list_cb, &c), 0);
    cr_assert_eq(c.n, 2, "the refused calls created nobody");
    collect_free(&c);
    fx_close(&f);
}

typedef struct {
    meta_key k[8];
    int n;
} key_rows;

static int keep_key(void *ud, const meta_key *k) {
    key_rows *r = ud;
    cr_assert_lt(r->n, 8);
    r->k[r->n++] = *k;
    return 0;
}

Test(meta, key_calls_reject_bad_arguments_and_list_whole_rows) {
    fx f;
    fx_open(&f, 1);
    int64_t a = mk_user(f.ms, "a"), b = mk_user(f.ms, "b");
    meta_key k = {.user_id = a, .active = true};
    strcpy(k.sealed_secret, "sealed");
    cr_assert_eq(meta_key_create(NULL, &k), CAIRN_EINVAL);
    cr_assert_eq(meta_key_create(f.ms, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_key_create(f.ms, &k), CAIRN_EINVAL, "empty access key");
    memset(k.access_key, 'A', sizeof k.access_key);
    cr_assert_eq(meta_key_create(f.ms, &k), CAIRN_EINVAL, "unterminated access key");
    strcpy(k.access_key, "AK1");
    k.sealed_secret[0] = '\0';
    cr_assert_eq(meta_key_create(f.ms, &k), CAIRN_EINVAL, "empty secret");
    strcpy(k.sealed_secret, "sealed-1");
    cr_assert_eq(meta_key_create(f.ms, &k), 0);
    meta_key k2 = {.user_id = a, .active = false, .created_ms = 1234};
    strcpy(k2.access_key, "AK2");
    strcpy(k2.sealed_secret, "sealed-2");
    cr_assert_eq(meta_key_create(f.ms, &k2), 0);

    meta_key got;
    cr_assert_eq(meta_key_get(NULL, "AK1", &got), CAIRN_EINVAL);
    cr_assert_eq(meta_key_get(f.ms, NULL, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_key_get(f.ms, "AK1", NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_key_get(f.ms, "ak1", &got), CAIRN_ENOTFOUND, "access keys are case-sensitive");

    key_rows r = {0};
    cr_assert_eq(meta_key_list(f.ms, a, keep_key, &r), 0);
    cr_assert_eq(r.n, 2);
    cr_assert_str_eq(r.k[0].access_key, "AK1");
    cr_assert_str_eq(r.k[0].sealed_secret, "sealed-1");
    cr_assert(r.k[0].active);
    cr_assert_eq(r.k[0].user_id, a);
    cr_assert_str_eq(r.k[1].access_key, "AK2");
    cr_assert_str_eq(r.k[1].sealed_secret, "sealed-2");
    cr_assert_not(r.k[1].active);
    cr_assert_eq(r.k[1].created_ms, 1234);
    collect c = {0};
    cr_assert_eq(meta_key_list(f.ms, b, key_list_cb, &c), 0);
    cr_assert_eq(c.n, 0, "a user without keys");
    cr_assert_eq(meta_key_list(f.ms, 0, key_list_cb, &c), 0);
    cr_assert_eq(c.n, 0, "user 0 is nobody, not everybody");
    c.stop_after = 1;
    cr_assert_eq(meta_key_list(f.ms, -1, key_list_cb, &c), 0);
    cr_assert_eq(c.n, 1, "the callback stops the listing");
    cr_assert_str_eq(c.keys[0], "AK1");
    collect_free(&c);
    cr_assert_eq(meta_key_list(NULL, -1, key_list_cb, &c), CAIRN_EINVAL);
    cr_assert_eq(meta_key_list(f.ms, -1, NULL, NULL), CAIRN_EINVAL);

    cr_assert_eq(meta_key_set_active(NULL, "AK1", false), CAIRN_EINVAL);
    cr_assert_eq(meta_key_set_active(f.ms, NULL, false), CAIRN_EINVAL);
    cr_assert_eq(meta_key_set_active(f.ms, "AK1", true), 0, "setting the current value still finds the key");
    cr_assert_eq(meta_key_set_active(f.ms, "AK2", true), 0);
    cr_assert_eq(meta_key_get(f.ms, "AK2", &got), 0);
    cr_assert(got.active);
    cr_assert_eq(meta_key_set_active(f.ms, "AK2", false), 0);
    cr_assert_eq(meta_key_get(f.ms, "AK2", &got), 0);
    cr_assert_not(got.active);
    cr_assert_eq(meta_key_get(f.ms, "AK1", &got), 0);
    cr_assert(got.active, "only the named key changed");
    fx_close(&f);
}

/* ---- buckets -------------------------------------------------------------------------------- */

typedef struct {
    meta_bucket b[8];
    int n, stop_after;
} bucket_rows;

static int keep_bucket(void *ud, const meta_bucket *b) {
    bucket_rows *r = ud;
    cr_assert_lt(r->n, 8);
    r->b[r->n++] = *b;
    return r->stop_after && r->n >= r->stop_after;
}

Test(meta, bucket_calls_reject_bad_arguments_and_list_whole_rows) {
    fx f;
    fx_open(&f, 1);
    meta_bucket b = {.owner_id = 5};
    cr_assert_eq(meta_bucket_create(NULL, &b, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_create(f.ms, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), CAIRN_EINVAL, "empty name");
    memset(b.name, 'x', sizeof b.name);
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), CAIRN_EINVAL, "unterminated name");
    memset(b.name, 'x', sizeof b.name - 1);
    b.name[sizeof b.name - 1] = '\0';
    memset(b.region, 'r', sizeof b.region);
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), CAIRN_EINVAL, "unterminated region");
    strcpy(b.region, "eu-west-1");
    b.public_read = true;
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), 0, "the longest name that fits");
    cr_assert_gt(b.id, 0);
    mk_bucket(f.ms, "a", 6);

    meta_bucket got;
    cr_assert_eq(meta_bucket_get(NULL, "a", &got), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_get(f.ms, NULL, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_get(f.ms, "a", NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_delete(NULL, "a", 0), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_delete(f.ms, NULL, 0), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_list(NULL, -1, bucket_list_cb, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_list(f.ms, -1, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_set_public(NULL, "a", true), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_set_public(f.ms, NULL, true), CAIRN_EINVAL);

    bucket_rows r = {0};
    cr_assert_eq(meta_bucket_list(f.ms, -1, keep_bucket, &r), 0);
    cr_assert_eq(r.n, 2, "the refused calls created nothing");
    cr_assert_str_eq(r.b[0].name, "a");
    cr_assert_eq(r.b[0].owner_id, 6);
    cr_assert_eq(r.b[0].created_ms, 1000);
    cr_assert_not(r.b[0].public_read);
    cr_assert_str_eq(r.b[1].name, b.name);
    cr_assert_eq(r.b[1].id, b.id);
    cr_assert_eq(r.b[1].owner_id, 5);
    cr_assert(r.b[1].public_read);
    cr_assert_str_eq(r.b[1].region, "eu-west-1");
    cr_assert_gt(r.b[1].created_ms, 0, "a creation time of 0 means now");
    bucket_rows none = {0};
    cr_assert_eq(meta_bucket_list(f.ms, 77, keep_bucket, &none), 0);
    cr_assert_eq(none.n, 0, "an owner without buckets");
    bucket_rows one = {.stop_after = 1};
    cr_assert_eq(meta_bucket_list(f.ms, -1, keep_bucket, &one), 0);
    cr_assert_eq(one.n, 1, "the callback stops the listing");

    cr_assert_eq(meta_bucket_set_public(f.ms, b.name, true), 0, "setting the current value still finds it");
    cr_assert_eq(meta_bucket_set_public(f.ms, b.name, false), 0);
    cr_assert_eq(meta_bucket_get(f.ms, b.name, &got), 0);
    cr_assert_not(got.public_read);
    cr_assert_eq(meta_bucket_get(f.ms, "a", &got), 0);
    cr_assert_not(got.public_read);
    fx_close(&f);
}

/* ---- objects: arguments ---------------------------------------------------------------------- */

Test(meta, object_calls_reject_bad_arguments) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    put_key(f.ms, "b", "k", 1);
    meta_object got;
    cr_assert_eq(meta_object_get(NULL, "b", 0, "k", 1, false, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_object_get(f.ms, NULL, 0, "k", 1, false, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, false, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, NULL, 1, false, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 0, false, &got), CAIRN_EINVAL);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k\0x", 3, false, &got), CAIRN_EINVAL);
    char long_key[1025];
    memset(long_key, 'k', sizeof long_key);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, long_key, 1025, false, &got), CAIRN_ENOTFOUND,
                 "a key too long to exist is absent");
    cr_assert_eq(meta_object_delete(NULL, "b", 0, "k", 1, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete(f.ms, NULL, 0, "k", 1, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, NULL, 1, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "k", 0, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, long_key, 1025, NULL), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, false, &got), 0, "the refused deletes removed nothing");
    meta_object_clear(&got);

    meta_object o = mk_obj("b", "n", 1, 1);
    cr_assert_eq(meta_object_put(NULL, &o, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_put(f.ms, NULL, NULL, NULL), CAIRN_EINVAL);
    o.bucket[0] = '\0';
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "no bucket");
    o = mk_obj("b", "n", 1, 1);
    o.version_id[0] = '\0';
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "no version id");
    o = mk_obj("b", "n", 1, -1);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "negative size");
    o = mk_obj("b", "n", 1, 1);
    o.storage = (meta_storage)7;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "unknown storage");
    o = mk_obj("b", "n", 1, 1);
    memset(o.etag, 'e', sizeof o.etag);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "unterminated etag");
    o = mk_obj("b", "n", 1, 3);
    o.storage = META_STORE_INLINE;
    o.data_len = 3;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "inline bytes missing");
    int64_t n = -1;
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 1, "none of the refused puts landed");
    cr_assert_eq(meta_object_count(NULL, "b", &n), CAIRN_EINVAL);
    cr_assert_eq(meta_object_count(f.ms, NULL, &n), CAIRN_EINVAL);
    cr_assert_eq(meta_object_count(f.ms, "b", NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_object_count(f.ms, "absent", &n), 0);
    cr_assert_eq(n, 0);

    collect c = {0};
    bool more = true;
    cr_assert_eq(meta_object_list(NULL, "b", 0, NULL, 0, NULL, 0, false, 10, collect_cb, &c, &more), CAIRN_EINVAL);
    cr_assert_not(more);
    more = true;
    cr_assert_eq(meta_object_list(f.ms, NULL, 0, NULL, 0, NULL, 0, false, 10, collect_cb, &c, &more), CAIRN_EINVAL);
    cr_assert_not(more);
    cr_assert_eq(meta_object_list(f.ms, "b", 0, NULL, 0, NULL, 0, false, 10, NULL, NULL, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_object_list(f.ms, "b", 0, NULL, 2, NULL, 0, false, 10, collect_cb, &c, &more), CAIRN_EINVAL,
                 "a prefix length without a prefix");
    cr_assert_eq(meta_object_list(f.ms, "b", 0, NULL, 0, NULL, 2, false, 10, collect_cb, &c, &more), CAIRN_EINVAL,
                 "a from length without from");
    cr_assert_eq(c.n, 0);
    cr_assert_eq(meta_object_list(f.ms, "b", 0, long_key, 1025, NULL, 0, false, 10, collect_cb, &c, &more), 0);
    cr_assert_eq(c.n, 0, "a prefix longer than any key matches nothing");
    cr_assert_not(more);

    bool referenced = false;
    cr_assert_eq(meta_version_referenced(NULL, "v", &referenced), CAIRN_EINVAL);
    cr_assert(referenced, "on an error the bytes are kept");
    referenced = false;
    cr_assert_eq(meta_version_referenced(f.ms, NULL, &referenced), CAIRN_EINVAL);
    cr_assert(referenced);
    cr_assert_eq(meta_version_referenced(f.ms, "v", NULL), CAIRN_EINVAL);

    meta_delete_item item = {.key = "k", .key_len = 1};
    cr_assert_eq(meta_object_delete_many(NULL, "b", 0, &item, 1), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete_many(f.ms, NULL, 0, &item, 1), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete_many(f.ms, "b", 0, &item, -1), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete_many(f.ms, "b", 0, NULL, 1), CAIRN_EINVAL);
    cr_assert_eq(meta_object_delete_many(f.ms, "b", 0, NULL, 0), 0, "an empty batch is nothing to do");
    cr_assert_eq(meta_object_count(f.ms, "b", &n), 0);
    cr_assert_eq(n, 1);
    meta_object_clear(NULL); /* a no-op */
    fx_close(&f);
}

Test(meta, version_referenced_sees_objects_upload_parts_and_object_parts) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    meta_object o = mk_obj("b", "plain", 5, 1);
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    const char *layout = "1+0:4096:0123456789abcdef";
    mk_upload(f.ms, "b", id, "live", "live");
    meta_part up = mk_part(1, 10, layout), op = mk_part(1, 20, layout);
    put_part(f.ms, "live", &up);
    mk_upload(f.ms, "b", id, "mp", "done");
    put_part(f.ms, "done", &op);
    meta_object mp = complete_one(f.ms, "b", id, "mp", "done", &op, 1000);
    const char *yes[] = {o.version_id, up.version_id, op.version_id, mp.version_id};
    for (int i = 0; i < 4; i++) {
        bool referenced = false;
        cr_assert_eq(meta_version_referenced(f.ms, yes[i], &referenced), 0);
        cr_assert(referenced, "version %d", i);
    }
    char other[33];
    rand_hex_id(other, 16);
    bool referenced = true;
    cr_assert_eq(meta_version_referenced(f.ms, other, &referenced), 0);
    cr_assert_not(referenced);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "plain", 5, NULL), 0);
    referenced = true;
    cr_assert_eq(meta_version_referenced(f.ms, o.version_id, &referenced), 0);
    cr_assert_not(referenced, "a deleted version is no longer referenced");
    fx_close(&f);
}

/* ---- the whole-store object scan ----------------------------------------------------------- */

typedef struct {
    char bucket[16][64];
    char key[16][64];
    size_t key_len[16];
    char version[16][33];
    int64_t size[16];
    meta_storage storage[16];
    char layout[16][64];
    int n, stop_after;
} scan_rows;

static int keep_scan(void *ud, const meta_scan_entry *e) {
    scan_rows *r = ud;
    cr_assert_lt(r->n, 16);
    cr_assert_lt(e->key_len, sizeof r->key[0]);
    strcpy(r->bucket[r->n], e->bucket);
    memcpy(r->key[r->n], e->key, e->key_len);
    r->key[r->n][e->key_len] = '\0';
    r->key_len[r->n] = e->key_len;
    strcpy(r->version[r->n], e->version_id);
    r->size[r->n] = e->size;
    r->storage[r->n] = e->storage;
    snprintf(r->layout[r->n], sizeof r->layout[0], "%s", e->layout);
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

static bool scan_is(const scan_rows *r, int i, const char *bucket, const char *key) {
    return i < r->n && !strcmp(r->bucket[i], bucket) && r->key_len[i] == strlen(key) &&
           !memcmp(r->key[i], key, r->key_len[i]);
}

Test(scan, walks_every_bucket_in_bucket_then_key_order) {
    fx f;
    fx_open(&f, 2);
    scan_rows r = {0};
    bool more = true;
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 10, keep_scan, &r, &more), 0);
    cr_assert_eq(r.n, 0, "an empty store");
    cr_assert_not(more);

    mk_bucket(f.ms, "b", 1);
    mk_bucket(f.ms, "a", 1);
    mk_bucket(f.ms, "empty", 1);
    /* "a" holds a key above every key of "b": the order is (bucket, key), not their concatenation. */
    put_key(f.ms, "b", "B", 1);
    put_key(f.ms, "b", "a", 1);
    meta_object big = mk_obj("a", "\xff\xfe", 2, 77);
    strcpy(big.layout, "2+1:4096:aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb,cccccccccccccccc");
    cr_assert_eq(meta_object_put(f.ms, &big, NULL, NULL), 0);
    meta_object small = mk_obj("a", "a/b", 3, 2);
    small.storage = META_STORE_INLINE;
    small.data = (uint8_t *)"hi";
    small.data_len = 2;
    cr_assert_eq(meta_object_put(f.ms, &small, NULL, NULL), 0);

    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 100, keep_scan, &r, &more), 0);
    cr_assert_eq(r.n, 4);
    cr_assert_not(more);
    cr_assert(scan_is(&r, 0, "a", "a/b"));
    cr_assert(scan_is(&r, 1, "a", "\xff\xfe"));
    cr_assert(scan_is(&r, 2, "b", "B"));
    cr_assert(scan_is(&r, 3, "b", "a"));
    cr_assert_eq(r.storage[0], META_STORE_INLINE);
    cr_assert_eq(r.size[0], 2);
    cr_assert_str_eq(r.version[0], small.version_id);
    cr_assert_str_eq(r.layout[0], "");
    cr_assert_eq(r.storage[1], META_STORE_FILE);
    cr_assert_eq(r.size[1], 77);
    cr_assert_str_eq(r.version[1], big.version_id);
    cr_assert_str_eq(r.layout[1], big.layout);

    /* Pages resume strictly after the last (bucket, key) seen. */
    scan_rows p = {0};
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 2, keep_scan, &p, &more), 0);
    cr_assert_eq(p.n, 2);
    cr_assert(more);
    scan_rows q = {0};
    cr_assert_eq(meta_object_scan(f.ms, p.bucket[1], p.key[1], p.key_len[1], 2, keep_scan, &q, &more), 0);
    cr_assert_eq(q.n, 2);
    cr_assert(scan_is(&q, 0, "b", "B"));
    cr_assert(scan_is(&q, 1, "b", "a"));
    cr_assert_not(more, "exactly limit rows were left");
    scan_rows z = {0};
    cr_assert_eq(meta_object_scan(f.ms, q.bucket[1], q.key[1], q.key_len[1], 2, keep_scan, &z, &more), 0);
    cr_assert_eq(z.n, 0);
    cr_assert_not(more);

    /* A bucket with an empty key starts at that bucket; a key absent starts at the next. */
    scan_rows s = {0};
    cr_assert_eq(meta_object_scan(f.ms, "b", "", 0, 100, keep_scan, &s, &more), 0);
    cr_assert_eq(s.n, 2);
    cr_assert(scan_is(&s, 0, "b", "B"));
    scan_rows t = {0};
    cr_assert_eq(meta_object_scan(f.ms, "a", "a/a", 3, 100, keep_scan, &t, &more), 0);
    cr_assert_eq(t.n, 4);
    cr_assert(scan_is(&t, 0, "a", "a/b"));
    scan_rows u = {0};
    cr_assert_eq(meta_object_scan(f.ms, "a", "\xff\xff", 2, 100, keep_scan, &u, &more), 0);
    cr_assert_eq(u.n, 2, "the next bucket follows the last key of the one before");
    cr_assert(scan_is(&u, 0, "b", "B"));
    scan_rows w = {0};
    cr_assert_eq(meta_object_scan(f.ms, "zzz", "", 0, 100, keep_scan, &w, &more), 0);
    cr_assert_eq(w.n, 0);

    /* limit 0 delivers nothing but says more exist; the callback stops early. */
    scan_rows none = {0};
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 0, keep_scan, &none, &more), 0);
    cr_assert_eq(none.n, 0);
    cr_assert(more);
    scan_rows one = {.stop_after = 1};
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 100, keep_scan, &one, NULL), 0, "more may be NULL");
    cr_assert_eq(one.n, 1);

    more = true;
    cr_assert_eq(meta_object_scan(NULL, "", "", 0, 10, keep_scan, &none, &more), CAIRN_EINVAL);
    cr_assert_not(more);
    cr_assert_eq(meta_object_scan(f.ms, NULL, "", 0, 10, keep_scan, &none, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_object_scan(f.ms, "", NULL, 0, 10, keep_scan, &none, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 10, NULL, NULL, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, -1, keep_scan, &none, &more), CAIRN_EINVAL);
    cr_assert_eq(none.n, 0);
    fx_close(&f);
}

/* ---- multipart uploads ------------------------------------------------------------------------ */

static int upload_names(void *ud, const meta_upload *u) {
    names *l = ud;
    char buf[80];
    int n = snprintf(buf, sizeof buf, "%.*s|%s", (int)u->key_len, u->key, u->upload_id);
    return names_add(l, buf, (size_t)n);
}

Test(uploads, create_and_get_round_trip_and_refuse_bad_uploads) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload_at(f.ms, "b", id, "dir/k", "up1", 5555);
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up1", &u), 0);
    cr_assert_str_eq(u.upload_id, "up1");
    cr_assert_str_eq(u.bucket, "b");
    cr_assert_eq(u.bucket_id, id);
    cr_assert_eq(u.key_len, 5);
    cr_assert_str_eq(u.key, "dir/k");
    cr_assert_eq(u.owner_id, 3);
    cr_assert_eq(u.initiated_ms, 5555);
    cr_assert_str_eq(u.headers_json, "{\"content-type\":\"a/b\"}");
    meta_upload_clear(&u);
    cr_assert_null(u.headers_json);
    meta_upload_clear(&u); /* twice is harmless, */
    meta_upload_clear(NULL); /* and NULL, as with meta_object_clear */

    /* By name (bucket_id 0): the row still gets the bucket's id; no headers is "{}". */
    meta_upload v = {.owner_id = 1, .initiated_ms = 1};
    strcpy(v.upload_id, "up2");
    strcpy(v.bucket, "b");
    strcpy(v.key, "k");
    v.key_len = 1;
    cr_assert_eq(meta_upload_create(f.ms, &v), 0);
    cr_assert_eq(meta_upload_get(f.ms, "up2", &u), 0);
    cr_assert_eq(u.bucket_id, id);
    cr_assert_str_eq(u.headers_json, "{}");
    meta_upload_clear(&u);

    cr_assert_eq(meta_upload_create(f.ms, &v), CAIRN_EEXIST, "upload ids are unique");
    meta_upload bad = v;
    strcpy(bad.upload_id, "up3");
    strcpy(bad.bucket, "absent");
    cr_assert_eq(meta_upload_create(f.ms, &bad), CAIRN_ENOTFOUND, "no such bucket");
    bad = v;
    bad.upload_id[0] = '\0';
    cr_assert_eq(meta_upload_create(f.ms, &bad), CAIRN_EINVAL, "no upload id");
    bad = v;
    memset(bad.upload_id, 'u', sizeof bad.upload_id);
    cr_assert_eq(meta_upload_create(f.ms, &bad), CAIRN_EINVAL, "unterminated upload id");
    bad = v;
    strcpy(bad.upload_id, "up3");
    bad.key_len = 0;
    cr_assert_eq(meta_upload_create(f.ms, &bad), CAIRN_EINVAL, "empty key");
    memcpy(bad.key, "a\0b", 3);
    bad.key_len = 3;
    cr_assert_eq(meta_upload_create(f.ms, &bad), CAIRN_EINVAL, "NUL in the key");
    bad.key_len = 1025;
    cr_assert_eq(meta_upload_create(f.ms, &bad), CAIRN_EINVAL, "key too long");
    cr_assert_eq(meta_upload_create(NULL, &v), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_create(f.ms, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_get(f.ms, "up3", &u), CAIRN_ENOTFOUND, "none of the refused creates landed");
    cr_assert_eq(meta_upload_get(NULL, "up1", &u), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_get(f.ms, NULL, &u), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_get(f.ms, "up1", NULL), CAIRN_EINVAL);
    fx_close(&f);
}

Test(uploads, list_orders_by_key_then_upload_id_and_pages_with_markers) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    mk_bucket(f.ms, "other", 1);
    int64_t id = bucket_id_of(f.ms, "b"), other = bucket_id_of(f.ms, "other");
    mk_upload_at(f.ms, "b", id, "k1", "u2", 1);
    mk_upload_at(f.ms, "b", id, "k2", "u3", 1);
    mk_upload_at(f.ms, "b", id, "k1", "u1", 1);
    mk_upload_at(f.ms, "b", id, "a/y", "u5", 1);
    mk_upload_at(f.ms, "b", id, "a/x", "u4", 1);
    mk_upload_at(f.ms, "b", id, "k", "u6", 1);
    mk_upload_at(f.ms, "other", other, "k1", "u9", 1);

    names l = {0};
    bool more = true;
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 100, upload_names, &l, &more), 0);
    const char *all[] = {"a/x|u4", "a/y|u5", "k|u6", "k1|u1", "k1|u2", "k2|u3"};
    cr_assert_eq(l.n, 6, "only this bucket's uploads");
    for (int i = 0; i < 6; i++) cr_assert_str_eq(l.s[i], all[i]);
    cr_assert_not(more);

    names p = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, "a/", 2, NULL, 0, NULL, 100, upload_names, &p, &more), 0);
    cr_assert_eq(p.n, 2);
    cr_assert_str_eq(p.s[1], "a/y|u5");
    names q = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, "k1", 2, NULL, 0, NULL, 100, upload_names, &q, &more), 0);
    cr_assert_eq(q.n, 2, "k is shorter than the prefix k1: not a match");
    cr_assert_str_eq(q.s[0], "k1|u1");
    names none = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, "k1/longer", 9, NULL, 0, NULL, 100, upload_names, &none, &more), 0);
    cr_assert_eq(none.n, 0);

    /* Markers: strictly after (key_marker, upload_id_marker). */
    names m1 = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, "k1", 2, "", 100, upload_names, &m1, &more), 0);
    cr_assert_eq(m1.n, 3, "an empty upload id marker starts at the key's first upload");
    cr_assert_str_eq(m1.s[0], "k1|u1");
    names m2 = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, "k1", 2, "u1", 100, upload_names, &m2, &more), 0);
    cr_assert_eq(m2.n, 2);
    cr_assert_str_eq(m2.s[0], "k1|u2");
    cr_assert_str_eq(m2.s[1], "k2|u3");
    names m3 = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, "k1", 2, "~", 100, upload_names, &m3, &more), 0);
    cr_assert_eq(m3.n, 1);
    cr_assert_str_eq(m3.s[0], "k2|u3");
    names m4 = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, "k", 1, "k1", 2, "u1", 100, upload_names, &m4, &more), 0);
    cr_assert_eq(m4.n, 2, "prefix and markers together");
    names m5 = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, "k2", 2, "u3", 100, upload_names, &m5, &more), 0);
    cr_assert_eq(m5.n, 0);
    cr_assert_not(more);

    /* Paging: more says whether rows beyond the limit exist. */
    names pg = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 4, upload_names, &pg, &more), 0);
    cr_assert_eq(pg.n, 4);
    cr_assert(more);
    names pg2 = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, "k1", 2, "u1", 2, upload_names, &pg2, &more), 0);
    cr_assert_eq(pg2.n, 2);
    cr_assert_not(more, "exactly limit rows were left");
    names zero = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 0, upload_names, &zero, &more), 0);
    cr_assert_eq(zero.n, 0);
    cr_assert(more, "limit 0 still says rows exist");
    names stop = {.stop_after = 2};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 100, upload_names, &stop, NULL), 0);
    cr_assert_eq(stop.n, 2, "the callback stops the listing");
    names gone = {0};
    cr_assert_eq(meta_upload_list(f.ms, id + 100, NULL, 0, NULL, 0, NULL, 100, upload_names, &gone, &more), 0);
    cr_assert_eq(gone.n, 0, "a bucket id nobody has lists nothing");

    more = true;
    cr_assert_eq(meta_upload_list(NULL, id, NULL, 0, NULL, 0, NULL, 10, upload_names, &gone, &more), CAIRN_EINVAL);
    cr_assert_not(more);
    cr_assert_eq(meta_upload_list(f.ms, 0, NULL, 0, NULL, 0, NULL, 10, upload_names, &gone, &more), CAIRN_EINVAL,
                 "uploads are listed by bucket id, never by whichever bucket has the name");
    cr_assert_eq(meta_upload_list(f.ms, -1, NULL, 0, NULL, 0, NULL, 10, upload_names, &gone, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 10, NULL, NULL, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, -1, upload_names, &gone, &more), CAIRN_EINVAL);
    cr_assert_eq(gone.n, 0);
    fx_close(&f);
}

typedef struct {
    meta_part p[16];
    int n, stop_after;
} parts_seen;

static int see_part(void *ud, const meta_part *p) {
    parts_seen *s = ud;
    cr_assert_lt(s->n, 16);
    s->p[s->n++] = *p;
    return s->stop_after && s->n >= s->stop_after;
}

static void see_part_v(void *ud, const meta_part *p) { see_part(ud, p); }

Test(uploads, part_put_and_part_list_page_by_part_number) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload(f.ms, "b", id, "k", "up");
    const char *layout = "1+0:4096:0123456789abcdef";
    int numbers[] = {10000, 3, 1, 5, 2};
    meta_part parts[5];
    for (int i = 0; i < 5; i++) {
        parts[i] = mk_part(numbers[i], 100 + numbers[i], layout);
        parts[i].mtime_ms = 7000 + i;
        put_part(f.ms, "up", &parts[i]);
    }
    parts_seen s = {0};
    bool more = true;
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 100, see_part, &s, &more), 0);
    cr_assert_eq(s.n, 5);
    cr_assert_not(more);
    int want[] = {1, 2, 3, 5, 10000};
    for (int i = 0; i < 5; i++) cr_assert_eq(s.p[i].part_number, want[i], "in part number order");
    /* Every column comes back: part 1 was parts[2]. */
    cr_assert_str_eq(s.p[0].version_id, parts[2].version_id);
    cr_assert_eq(s.p[0].size, 101);
    cr_assert_str_eq(s.p[0].etag, parts[2].etag);
    cr_assert_str_eq(s.p[0].layout, layout);
    cr_assert_eq(s.p[0].mtime_ms, 7002);

    parts_seen after = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 3, 100, see_part, &after, &more), 0);
    cr_assert_eq(after.n, 2, "strictly after the marker");
    cr_assert_eq(after.p[0].part_number, 5);
    parts_seen page = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 2, see_part, &page, &more), 0);
    cr_assert_eq(page.n, 2);
    cr_assert(more);
    parts_seen rest = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", page.p[1].part_number, 3, see_part, &rest, &more), 0);
    cr_assert_eq(rest.n, 3);
    cr_assert_not(more, "exactly limit rows were left");
    parts_seen zero = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 0, see_part, &zero, &more), 0);
    cr_assert_eq(zero.n, 0);
    cr_assert(more);
    parts_seen stop = {.stop_after = 1};
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 100, see_part, &stop, NULL), 0);
    cr_assert_eq(stop.n, 1);

    /* A re-upload replaces the part of that number and hands back the old one. */
    meta_part again = mk_part(3, 999, "1+0:4096:fedcba9876543210");
    meta_part old;
    bool had = false;
    cr_assert_eq(meta_part_put(f.ms, "up", &again, &old, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(old.version_id, parts[1].version_id);
    cr_assert_eq(old.size, 103);
    cr_assert_str_eq(old.layout, layout);
    parts_seen now = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 2, 1, see_part, &now, &more), 0);
    cr_assert_eq(now.n, 1);
    cr_assert_str_eq(now.p[0].version_id, again.version_id);
    cr_assert_eq(now.p[0].size, 999);

    parts_seen unknown = {0};
    cr_assert_eq(meta_part_list(f.ms, "no-such-upload", 0, 100, see_part, &unknown, &more), 0);
    cr_assert_eq(unknown.n, 0);
    cr_assert_not(more);
    had = true;
    cr_assert_eq(meta_part_put(f.ms, "no-such-upload", &again, &old, &had), CAIRN_ENOTFOUND);
    cr_assert_not(had);
    cr_assert_eq(meta_part_put(NULL, "up", &again, &old, &had), CAIRN_EINVAL);
    cr_assert_eq(meta_part_put(f.ms, NULL, &again, &old, &had), CAIRN_EINVAL);
    cr_assert_eq(meta_part_put(f.ms, "up", NULL, &old, &had), CAIRN_EINVAL);
    cr_assert_eq(meta_part_put(f.ms, "up", &again, NULL, &had), CAIRN_EINVAL);
    cr_assert_eq(meta_part_put(f.ms, "up", &again, &old, NULL), CAIRN_EINVAL);
    more = true;
    cr_assert_eq(meta_part_list(NULL, "up", 0, 10, see_part, &unknown, &more), CAIRN_EINVAL);
    cr_assert_not(more);
    cr_assert_eq(meta_part_list(f.ms, NULL, 0, 10, see_part, &unknown, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 10, NULL, NULL, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_part_list(f.ms, "up", 0, -1, see_part, &unknown, &more), CAIRN_EINVAL);
    cr_assert_eq(unknown.n, 0);
    fx_close(&f);
}

Test(uploads, abort_hands_every_current_part_to_the_callback_and_ends_the_upload) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload(f.ms, "b", id, "k", "up");
    mk_upload(f.ms, "b", id, "k", "other");
    mk_upload(f.ms, "b", id, "k", "empty");
    const char *layout = "1+0:4096:0123456789abcdef";
    meta_part p1 = mk_part(1, 10, layout), p2 = mk_part(2, 20, layout), p2b = mk_part(2, 21, layout),
              p3 = mk_part(3, 30, layout), keep = mk_part(1, 5, layout);
    put_part(f.ms, "up", &p3);
    put_part(f.ms, "up", &p1);
    put_part(f.ms, "up", &p2);
    put_part(f.ms, "up", &p2b); /* p2 was handed back by this put */
    put_part(f.ms, "other", &keep);

    parts_seen s = {0};
    cr_assert_eq(meta_upload_abort(f.ms, "up", see_part_v, &s), 0);
    cr_assert_eq(s.n, 3, "each current part, once");
    const meta_part *want[] = {&p1, &p2b, &p3};
    for (int i = 0; i < 3; i++) {
        bool found = false;
        for (int j = 0; j < s.n; j++)
            if (!strcmp(s.p[j].version_id, want[i]->version_id)) {
                found = true;
                cr_assert_str_eq(s.p[j].layout, layout, "the layout says where its bytes are");
                cr_assert_eq(s.p[j].size, want[i]->size);
                cr_assert_eq(s.p[j].part_number, want[i]->part_number);
            }
        cr_assert(found, "part %d handed over", i);
    }
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up", &u), CAIRN_ENOTFOUND);
    parts_seen left = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 100, see_part, &left, NULL), 0);
    cr_assert_eq(left.n, 0, "the part rows went with the upload");
    for (int i = 0; i < 3; i++) {
        bool referenced = true;
        cr_assert_eq(meta_version_referenced(f.ms, want[i]->version_id, &referenced), 0);
        cr_assert_not(referenced);
    }
    meta_part old;
    bool had;
    cr_assert_eq(meta_part_put(f.ms, "up", &p1, &old, &had), CAIRN_ENOTFOUND, "a part arriving late finds no upload");
    trash_seen t = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, see_trash, &t), 0);
    cr_assert_eq(t.n, 0, "the callback, not the trash, takes an aborted upload's parts");
    parts_seen again = {0};
    cr_assert_eq(meta_upload_abort(f.ms, "up", see_part_v, &again), CAIRN_ENOTFOUND);
    cr_assert_eq(again.n, 0);

    /* Other uploads are untouched; no parts means no calls; the callback may be NULL. */
    cr_assert_eq(meta_upload_get(f.ms, "other", &u), 0);
    meta_upload_clear(&u);
    parts_seen e = {0};
    cr_assert_eq(meta_upload_abort(f.ms, "empty", see_part_v, &e), 0);
    cr_assert_eq(e.n, 0);
    cr_assert_eq(meta_upload_abort(f.ms, "other", NULL, NULL), 0);
    cr_assert_eq(meta_upload_get(f.ms, "other", &u), CAIRN_ENOTFOUND);
    bool referenced = true;
    cr_assert_eq(meta_version_referenced(f.ms, keep.version_id, &referenced), 0);
    cr_assert_not(referenced);

    /* A completed upload cannot be aborted any more. */
    mk_upload(f.ms, "b", id, "k", "done");
    meta_part d = mk_part(1, 8, layout);
    put_part(f.ms, "done", &d);
    meta_object o = complete_one(f.ms, "b", id, "k", "done", &d, 1000);
    cr_assert_eq(meta_upload_abort(f.ms, "done", see_part_v, &e), CAIRN_ENOTFOUND);
    cr_assert_eq(e.n, 0);
    parts_seen op = {0};
    cr_assert_eq(meta_object_parts(f.ms, o.version_id, see_part, &op), 0);
    cr_assert_eq(op.n, 1, "the object's part is not given away");
    cr_assert_eq(meta_upload_abort(NULL, "x", NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_abort(f.ms, NULL, NULL, NULL), CAIRN_EINVAL);
    fx_close(&f);
}

Test(uploads, list_older_is_oldest_first_bounded_and_across_buckets) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    mk_bucket(f.ms, "c", 1);
    int64_t b = bucket_id_of(f.ms, "b"), c = bucket_id_of(f.ms, "c");
    mk_upload_at(f.ms, "b", b, "k", "t5000", 5000);
    mk_upload_at(f.ms, "b", b, "k", "t1000", 1000);
    mk_upload_at(f.ms, "c", c, "k", "t3000", 3000);
    mk_upload_at(f.ms, "b", b, "a", "t2000", 2000);
    mk_upload_at(f.ms, "b", b, "z", "t9000", 9000);
    names l = {0};
    cr_assert_eq(meta_upload_list_older(f.ms, 5000, 100, upload_names, &l), 0);
    cr_assert_eq(l.n, 3, "strictly older than the cutoff");
    cr_assert_str_eq(l.s[0], "k|t1000");
    cr_assert_str_eq(l.s[1], "a|t2000");
    cr_assert_str_eq(l.s[2], "k|t3000");
    names two = {0};
    cr_assert_eq(meta_upload_list_older(f.ms, 100000, 2, upload_names, &two), 0);
    cr_assert_eq(two.n, 2, "a limit takes the oldest");
    cr_assert_str_eq(two.s[1], "a|t2000");
    names none = {0};
    cr_assert_eq(meta_upload_list_older(f.ms, 1000, 100, upload_names, &none), 0);
    cr_assert_eq(none.n, 0);
    cr_assert_eq(meta_upload_list_older(f.ms, 100000, 0, upload_names, &none), 0);
    cr_assert_eq(none.n, 0, "limit 0 lists nothing");
    names stop = {.stop_after = 1};
    cr_assert_eq(meta_upload_list_older(f.ms, 100000, 100, upload_names, &stop), 0);
    cr_assert_eq(stop.n, 1, "the callback stops the listing");
    cr_assert_eq(meta_upload_list_older(NULL, 1, 10, upload_names, &none), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_list_older(f.ms, 1, 10, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_list_older(f.ms, 100000, -1, upload_names, &none), CAIRN_EINVAL,
                 "a negative limit is refused, not read as no limit");
    cr_assert_eq(none.n, 0);
    fx_close(&f);
}

static int keep_upload_headers(void *ud, const meta_upload *u) {
    names *l = ud;
    return names_add(l, u->headers_json, strlen(u->headers_json));
}

Test(uploads, list_rows_carry_headers_and_bucket_ids) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload_at(f.ms, "b", id, "k", "u", 10);
    names a = {0}, o = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 10, keep_upload_headers, &a, NULL), 0);
    cr_assert_eq(meta_upload_list_older(f.ms, 11, 10, keep_upload_headers, &o), 0);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(o.n, 1);
    cr_assert_str_eq(a.s[0], "{\"content-type\":\"a/b\"}");
    cr_assert_str_eq(o.s[0], "{\"content-type\":\"a/b\"}");
    fx_close(&f);
}

Test(uploads, replacing_a_multipart_version_forgets_only_its_parts) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const char *layout = "1+0:4096:0123456789abcdef";
    mk_upload(f.ms, "b", id, "a", "ua");
    meta_part a1 = mk_part(1, 10, layout), a2 = mk_part(2, 20, layout);
    put_part(f.ms, "ua", &a1);
    put_part(f.ms, "ua", &a2);
    meta_part chosen[2] = {a1, a2};
    meta_object A = mp_obj("b", id, "a", 30, 2);
    meta_object replaced;
    bool had;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "ua", &A, chosen, 2, &replaced, &had, ignore_part, &unused), 0);
    mk_upload(f.ms, "b", id, "b", "ub");
    meta_part b1 = mk_part(1, 5, layout);
    put_part(f.ms, "ub", &b1);
    meta_object B = complete_one(f.ms, "b", id, "b", "ub", &b1, 1000);

    /* A is replaced by a plain object: its part rows go in the same commit
     * (to the trash, whose emptier removes their bytes). */
    meta_object plain = mk_obj("b", "a", 1, 3);
    cr_assert_eq(meta_object_put(f.ms, &plain, &replaced, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(replaced.version_id, A.version_id);
    cr_assert_str_eq(replaced.layout, "mp:2");
    meta_object_clear(&replaced);
    parts_seen after = {0};
    cr_assert_eq(meta_object_parts(f.ms, A.version_id, see_part, &after), 0);
    cr_assert_eq(after.n, 0);
    bool referenced = true;
    cr_assert_eq(meta_version_referenced(f.ms, a1.version_id, &referenced), 0);
    cr_assert_not(referenced);
    cr_assert_eq(meta_version_referenced(f.ms, a2.version_id, &referenced), 0);
    cr_assert_not(referenced);
    int64_t refs = 0;
    cr_assert_eq(meta_layout_refs(f.ms, "0123456789abcdef", &refs), 0);
    cr_assert_eq(refs, 1, "only B's part is left");
    parts_seen bs = {0};
    cr_assert_eq(meta_object_parts(f.ms, B.version_id, see_part, &bs), 0);
    cr_assert_eq(bs.n, 1, "another version's parts are untouched");
    cr_assert_str_eq(bs.p[0].version_id, b1.version_id);

    /* meta_object_parts: an early stop, an unknown version, bad arguments. */
    mk_upload(f.ms, "b", id, "c", "uc");
    meta_part c1 = mk_part(1, 1, layout), c2 = mk_part(2, 2, layout), c3 = mk_part(3, 3, layout);
    put_part(f.ms, "uc", &c1);
    put_part(f.ms, "uc", &c2);
    put_part(f.ms, "uc", &c3);
    meta_part cc[3] = {c1, c2, c3};
    meta_object C = mp_obj("b", id, "c", 6, 3);
    cr_assert_eq(meta_upload_complete(f.ms, "uc", &C, cc, 3, &replaced, &had, ignore_part, &unused), 0);
    parts_seen stop = {.stop_after = 2};
    cr_assert_eq(meta_object_parts(f.ms, C.version_id, see_part, &stop), 0);
    cr_assert_eq(stop.n, 2, "the callback stops the listing");
    cr_assert_eq(stop.p[1].offset, 1);
    parts_seen none = {0};
    cr_assert_eq(meta_object_parts(f.ms, plain.version_id, see_part, &none), 0);
    cr_assert_eq(none.n, 0, "a plain object has no parts");
    cr_assert_eq(meta_object_parts(NULL, C.version_id, see_part, &none), CAIRN_EINVAL);
    cr_assert_eq(meta_object_parts(f.ms, NULL, see_part, &none), CAIRN_EINVAL);
    cr_assert_eq(meta_object_parts(f.ms, C.version_id, NULL, NULL), CAIRN_EINVAL);
    fx_close(&f);
}

Test(uploads, complete_refuses_bad_arguments_and_may_drop_the_replaced_version) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const char *layout = "1+0:4096:0123456789abcdef";
    mk_upload(f.ms, "b", id, "k", "up");
    meta_part p = mk_part(1, 4, layout);
    put_part(f.ms, "up", &p);
    meta_object o = mp_obj("b", id, "k", 4, 1);
    meta_object replaced;
    bool had;
    cr_assert_eq(meta_upload_complete(NULL, "up", &o, &p, 1, &replaced, &had, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_complete(f.ms, NULL, &o, &p, 1, &replaced, &had, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_complete(f.ms, "up", NULL, &p, 1, &replaced, &had, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &o, NULL, 1, &replaced, &had, NULL, NULL), CAIRN_EINVAL);
    meta_object bad = o;
    bad.key_len = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "up", &bad, &p, 1, &replaced, &had, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_complete(f.ms, "nope", &o, &p, 1, &replaced, &had, NULL, NULL), CAIRN_ENOTFOUND);
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up", &u), 0, "the upload survived every refusal");
    meta_upload_clear(&u);

    /* replaced and had_replaced may be NULL, as in meta_object_put. */
    put_key(f.ms, "b", "k", 1);
    cr_assert_eq(meta_upload_complete(f.ms, "up", &o, &p, 1, NULL, NULL, NULL, NULL), 0);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", id, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, o.version_id);
    cr_assert_str_eq(got.layout, "mp:1");
    meta_object_clear(&got);
    fx_close(&f);
}

Test(uploads, completed_uploads_are_pruned_by_age_within_a_limit) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const char *layout = "1+0:4096:0123456789abcdef";
    const char *ids[] = {"c300", "c100", "c200"};
    int64_t when[] = {300, 100, 200};
    for (int i = 0; i < 3; i++) {
        mk_upload(f.ms, "b", id, ids[i], ids[i]);
        meta_part p = mk_part(1, 1, layout);
        put_part(f.ms, ids[i], &p);
        complete_one(f.ms, "b", id, ids[i], ids[i], &p, when[i]);
    }
    meta_completed_upload c;
    cr_assert_eq(meta_upload_completed_get(f.ms, "c100", &c), 0);
    cr_assert_eq(c.completed_ms, 100);
    cr_assert_str_eq(c.key, "c100");
    cr_assert_str_eq(c.upload_id, "c100");
    cr_assert_eq(meta_upload_completed_get(NULL, "c100", &c), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_completed_get(f.ms, NULL, &c), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_completed_get(f.ms, "c100", NULL), CAIRN_EINVAL);
    int64_t n = -1;
    cr_assert_eq(meta_upload_completed_prune(f.ms, 1000, 2, &n), 0);
    cr_assert_eq(n, 2, "no more than the limit");
    int left = 0;
    for (int i = 0; i < 3; i++) left += meta_upload_completed_get(f.ms, ids[i], &c) == 0;
    cr_assert_eq(left, 1);
    cr_assert_eq(meta_upload_completed_prune(f.ms, 1000, 2, NULL), 0, "deleted may be NULL");
    for (int i = 0; i < 3; i++) cr_assert_eq(meta_upload_completed_get(f.ms, ids[i], &c), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_completed_prune(f.ms, 1000, 2, &n), 0);
    cr_assert_eq(n, 0);
    n = -1;
    cr_assert_eq(meta_upload_completed_prune(NULL, 1000, 2, &n), CAIRN_EINVAL);
    cr_assert_eq(n, 0);
    fx_close(&f);
}

/* ---- the storage node registry ------------------------------------------------------------- */

#define NODE_A "aaaaaaaaaaaaaaaa"
#define NODE_B "bbbbbbbbbbbbbbbb"
#define NODE_C "cccccccccccccccc"

typedef struct {
    meta_node n[8];
    int count, stop_after;
} node_rows;

static int keep_node(void *ud, const meta_node *n) {
    node_rows *r = ud;
    cr_assert_lt(r->count, 8);
    r->n[r->count++] = *n;
    return r->stop_after && r->count >= r->stop_after;
}

Test(nodes, upsert_get_and_list) {
    fx f;
    fx_open(&f, 2);
    node_rows empty = {0};
    cr_assert_eq(meta_node_list(f.ms, keep_node, &empty), 0);
    cr_assert_eq(empty.count, 0);
    int64_t before = time_now_ms();
    cr_assert_eq(meta_node_upsert(f.ms, NODE_B, "http://10.0.0.2:9000"), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_A, "http://10.0.0.1:9000"), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_C, "http://10.0.0.3:9000"), 0);
    int64_t after = time_now_ms();

    meta_node n;
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    cr_assert_str_eq(n.id, NODE_A);
    cr_assert_str_eq(n.url, "http://10.0.0.1:9000");
    cr_assert_str_eq(n.state, "active", "a new node is active");
    cr_assert(n.added_ms >= before && n.added_ms <= after);
    cr_assert_eq(n.last_seen_ms, 0);
    cr_assert_str_eq(n.last_error, "");
    meta_node by_url;
    cr_assert_eq(meta_node_get(f.ms, "http://10.0.0.1:9000", &by_url), 0);
    cr_assert_str_eq(by_url.id, NODE_A, "found by url too");
    cr_assert_eq(meta_node_get(f.ms, "dddddddddddddddd", &n), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_node_get(f.ms, "http://10.0.0.1", &n), CAIRN_ENOTFOUND, "no prefix match");

    node_rows r = {0};
    cr_assert_eq(meta_node_list(f.ms, keep_node, &r), 0);
    cr_assert_eq(r.count, 3);
    for (int i = 1; i < r.count; i++)
        cr_assert(r.n[i - 1].added_ms < r.n[i].added_ms ||
                      (r.n[i - 1].added_ms == r.n[i].added_ms && strcmp(r.n[i - 1].id, r.n[i].id) < 0),
                  "ordered by (added_ms, id)");
    node_rows one = {.stop_after = 1};
    cr_assert_eq(meta_node_list(f.ms, keep_node, &one), 0);
    cr_assert_eq(one.count, 1, "the callback stops the listing");

    /* Upserting a known id moves it to a new url and keeps its state and age. */
    cr_assert_eq(meta_node_set_state(f.ms, NODE_A, "draining"), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_A, "http://10.0.0.9:9000"), 0);
    meta_node moved;
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &moved), 0);
    cr_assert_str_eq(moved.url, "http://10.0.0.9:9000");
    cr_assert_str_eq(moved.state, "draining");
    cr_assert_eq(moved.added_ms, by_url.added_ms, "and its age");
    cr_assert_eq(meta_node_get(f.ms, "http://10.0.0.1:9000", &n), CAIRN_ENOTFOUND, "the old url is free");
    /* Two nodes cannot share a url. */
    cr_assert_eq(meta_node_upsert(f.ms, "dddddddddddddddd", "http://10.0.0.2:9000"), CAIRN_EEXIST);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_C, "http://10.0.0.2:9000"), CAIRN_EEXIST);
    cr_assert_eq(meta_node_get(f.ms, "dddddddddddddddd", &n), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_node_get(f.ms, "http://10.0.0.2:9000", &n), 0);
    cr_assert_str_eq(n.id, NODE_B);
    cr_assert_eq(meta_node_get(f.ms, NODE_C, &n), 0);
    cr_assert_str_eq(n.url, "http://10.0.0.3:9000");

    char url[300];
    memset(url, 'u', sizeof url);
    url[255] = '\0';
    cr_assert_eq(meta_node_upsert(f.ms, "eeeeeeeeeeeeeeee", url), 0, "a url of 255 bytes fits");
    cr_assert_eq(meta_node_get(f.ms, "eeeeeeeeeeeeeeee", &n), 0);
    cr_assert_eq(strlen(n.url), 255);
    url[255] = 'u';
    url[256] = '\0';
    cr_assert_eq(meta_node_upsert(f.ms, "ffffffffffffffff", url), CAIRN_EINVAL, "256 bytes do not");
    cr_assert_eq(meta_node_upsert(NULL, NODE_A, "http://x"), CAIRN_EINVAL);
    cr_assert_eq(meta_node_upsert(f.ms, NULL, "http://x"), CAIRN_EINVAL);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_A, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_node_upsert(f.ms, "aaaaaaaaaaaaaaa", "http://x"), CAIRN_EINVAL, "15 characters");
    cr_assert_eq(meta_node_upsert(f.ms, "aaaaaaaaaaaaaaaaa", "http://x"), CAIRN_EINVAL, "17 characters");
    cr_assert_eq(meta_node_get(f.ms, "http://x", &n), CAIRN_ENOTFOUND, "no refused upsert landed");
    cr_assert_eq(meta_node_get(NULL, NODE_A, &n), CAIRN_EINVAL);
    cr_assert_eq(meta_node_get(f.ms, NULL, &n), CAIRN_EINVAL);
    cr_assert_eq(meta_node_get(f.ms, NODE_A, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_node_list(NULL, keep_node, &r), CAIRN_EINVAL);
    cr_assert_eq(meta_node_list(f.ms, NULL, NULL), CAIRN_EINVAL);
    node_rows all = {0};
    cr_assert_eq(meta_node_list(f.ms, keep_node, &all), 0);
    cr_assert_eq(all.count, 4);
    fx_close(&f);
}

static void expect_node_state(meta_store *ms, const char *id, const char *state) {
    meta_node n;
    cr_assert_eq(meta_node_get(ms, id, &n), 0);
    cr_assert_str_eq(n.state, state, "node %s", id);
}

Test(nodes, states_move_between_active_draining_and_removed) {
    fx f;
    fx_open(&f, 1);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_A, "http://a"), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_B, "http://b"), 0);
    cr_assert_eq(meta_node_set_state(f.ms, NODE_A, "draining"), 0);
    expect_node_state(f.ms, NODE_A, "draining");
    cr_assert_eq(meta_node_set_state(f.ms, NODE_A, "removed"), 0);
    expect_node_state(f.ms, NODE_A, "removed");
    node_rows r = {0};
    cr_assert_eq(meta_node_list(f.ms, keep_node, &r), 0);
    cr_assert_eq(r.count, 2, "a removed node stays in the registry");
    cr_assert_eq(meta_node_set_state(f.ms, NODE_A, "active"), 0);
    expect_node_state(f.ms, NODE_A, "active");
    cr_assert_eq(meta_node_set_state(f.ms, NODE_A, "active"), 0, "the current state again is fine");
    expect_node_state(f.ms, NODE_B, "active");

    const char *bad[] = {"bogus", "", "Active", "draining ", "removedx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(meta_node_set_state(f.ms, NODE_A, bad[i]), CAIRN_EINVAL, "state '%s'", bad[i]);
        expect_node_state(f.ms, NODE_A, "active");
    }
    cr_assert_eq(meta_node_set_state(f.ms, NODE_A, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_node_set_state(f.ms, NULL, "active"), CAIRN_EINVAL);
    cr_assert_eq(meta_node_set_state(NULL, NODE_A, "active"), CAIRN_EINVAL);
    cr_assert_eq(meta_node_set_state(f.ms, "dddddddddddddddd", "draining"), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_node_set_state(f.ms, "http://a", "draining"), CAIRN_ENOTFOUND, "states are set by id only");
    expect_node_state(f.ms, NODE_A, "active");
    fx_close(&f);
}

Test(nodes, seen_records_heartbeats_and_bounded_errors) {
    fx f;
    fx_open(&f, 1);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_A, "http://a"), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_B, "http://b"), 0);
    int64_t before = time_now_ms();
    cr_assert_eq(meta_node_seen(f.ms, NODE_A, true, NULL), 0);
    int64_t after = time_now_ms();
    meta_node n;
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    cr_assert(n.last_seen_ms >= before && n.last_seen_ms <= after);
    int64_t seen = n.last_seen_ms;

    cr_assert_eq(meta_node_seen(f.ms, NODE_A, false, "connection refused"), 0);
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    cr_assert_str_eq(n.last_error, "connection refused");
    cr_assert_eq(n.last_seen_ms, seen, "a failed heartbeat does not count as seen");
    cr_assert_eq(meta_node_get(f.ms, NODE_B, &n), 0);
    cr_assert_str_eq(n.last_error, "", "only the named node");
    cr_assert_eq(n.last_seen_ms, 0);
    cr_assert_eq(meta_node_seen(f.ms, NODE_A, true, "ignored"), 0);
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    cr_assert_str_eq(n.last_error, "", "a good heartbeat clears the error");
    cr_assert_geq(n.last_seen_ms, seen);
    cr_assert_eq(meta_node_seen(f.ms, NODE_A, false, NULL), 0);
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    cr_assert_str_eq(n.last_error, "");

    /* An error longer than the column is cut at a character boundary. */
    char ascii[400];
    memset(ascii, 'e', sizeof ascii - 1);
    ascii[sizeof ascii - 1] = '\0';
    cr_assert_eq(meta_node_seen(f.ms, NODE_A, false, ascii), 0);
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    cr_assert_eq(strlen(n.last_error), sizeof n.last_error - 1);
    char utf8[401] = "";
    for (int i = 0; i < 200; i++) strcat(utf8, "\xc3\xa9");
    cr_assert_eq(meta_node_seen(f.ms, NODE_A, false, utf8), 0);
    cr_assert_eq(meta_node_get(f.ms, NODE_A, &n), 0);
    size_t len = strlen(n.last_error);
    cr_assert_eq(len, 190, "95 whole characters: half of one would be invalid UTF-8");
    cr_assert_eq(memcmp(n.last_error, utf8, len), 0);

    cr_assert_eq(meta_node_seen(f.ms, "dddddddddddddddd", true, NULL), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_node_seen(f.ms, "dddddddddddddddd", false, "x"), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_node_seen(NULL, NODE_A, true, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_node_seen(f.ms, NULL, true, NULL), CAIRN_EINVAL);
    fx_close(&f);
}

/* ---- the job queue ----------------------------------------------------------------------- */

typedef struct {
    int64_t id[16];
    char kind[16][64];
    char state[16][16];
    int n, stop_after;
} job_rows;

static int keep_job(void *ud, const meta_job *j) {
    job_rows *r = ud;
    cr_assert_lt(r->n, 16);
    r->id[r->n] = j->id;
    strcpy(r->kind[r->n], j->kind);
    strcpy(r->state[r->n], j->state);
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

Test(jobs, get_returns_the_whole_row_and_enqueue_refuses_bad_jobs) {
    fx f;
    fx_open(&f, 1);
    int64_t before = time_now_ms();
    meta_job in = {.priority = 7, .run_at_ms = 12345};
    strcpy(in.kind, "heal");
    strcpy(in.unique_key, "heal:x");
    int64_t id = 0;
    cr_assert_eq(meta_job_enqueue(f.ms, &in, &id), 0);
    meta_job j;
    cr_assert_eq(meta_job_get(f.ms, id, &j), 0);
    cr_assert_eq(j.id, id);
    cr_assert_str_eq(j.kind, "heal");
    cr_assert_str_eq(j.args, "{}", "no args is an empty object");
    cr_assert_eq(j.priority, 7);
    cr_assert_eq(j.run_at_ms, 12345);
    cr_assert_eq(j.attempts, 0);
    cr_assert_eq(j.max_attempts, 5, "0 means the default");
    cr_assert_str_eq(j.state, "available");
    cr_assert_str_eq(j.lease_owner, "");
    cr_assert_eq(j.lease_expires_ms, 0);
    cr_assert_str_eq(j.unique_key, "heal:x");
    cr_assert_str_eq(j.last_error, "");
    cr_assert_geq(j.created_ms, before);
    cr_assert_eq(j.finished_ms, 0);
    meta_job_clear(&j);
    cr_assert_null(j.args);
    meta_job_clear(&j); /* twice is harmless, */
    meta_job_clear(NULL); /* and NULL */

    meta_job bad = {.run_at_ms = 1};
    cr_assert_eq(meta_job_enqueue(f.ms, &bad, &id), CAIRN_EINVAL, "no kind");
    strcpy(bad.kind, "k");
    cr_assert_eq(meta_job_enqueue(NULL, &bad, &id), CAIRN_EINVAL);
    cr_assert_eq(meta_job_enqueue(f.ms, NULL, &id), CAIRN_EINVAL);
    cr_assert_eq(meta_job_enqueue(f.ms, &bad, NULL), 0, "id may be NULL");
    cr_assert_eq(meta_job_get(NULL, id, &j), CAIRN_EINVAL);
    cr_assert_eq(meta_job_get(f.ms, id, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_job_get(f.ms, 0, &j), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_claim(NULL, "w", 1, 1, &j), CAIRN_EINVAL);
    cr_assert_eq(meta_job_claim(f.ms, NULL, 1, 1, &j), CAIRN_EINVAL);
    cr_assert_eq(meta_job_claim(f.ms, "w", 1, 1, NULL), CAIRN_EINVAL);
    int frc = 0;
    cr_assert_eq(meta_job_finish_claim(f.ms, id, "w", "completed", 0, "", 1, 1, NULL, &j), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish_claim(f.ms, id, "w", "completed", 0, "", 1, 1, &frc, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish_claim(NULL, id, "w", "completed", 0, "", 1, 1, &frc, &j), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish_claim(f.ms, id, NULL, "completed", 0, "", 1, 1, &frc, &j), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish(NULL, id, "w", "completed", 0, ""), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish(f.ms, id, NULL, "completed", 0, ""), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish(f.ms, id, "w", NULL, 0, ""), CAIRN_EINVAL);
    cr_assert_eq(meta_job_finish(f.ms, id, "w", "running", 0, ""), CAIRN_EINVAL, "finishing is not running");
    cr_assert_eq(meta_job_finish(f.ms, id, "w", "cancelled", 0, ""), CAIRN_EINVAL, "cancel is meta_job_cancel");
    cr_assert_eq(meta_job_release(NULL, id, "w"), CAIRN_EINVAL);
    cr_assert_eq(meta_job_extend(NULL, id, "w", 1), CAIRN_EINVAL);
    cr_assert_eq(meta_job_cancel(NULL, id), CAIRN_EINVAL);
    cr_assert_eq(meta_job_retry(NULL, id), CAIRN_EINVAL);
    expect_state(f.ms, id, "available", 0);
    fx_close(&f);
}

Test(jobs, lifecycle_calls_on_absent_and_finished_jobs) {
    fx f;
    fx_open(&f, 1);
    cr_assert_eq(meta_job_cancel(f.ms, 4242), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_retry(f.ms, 4242), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_finish(f.ms, 4242, "w", "completed", 0, ""), CAIRN_ECONFLICT,
                 "nobody holds a lease on a job that is not there");
    cr_assert_eq(meta_job_release(f.ms, 4242, "w"), CAIRN_ECONFLICT);
    cr_assert_eq(meta_job_extend(f.ms, 4242, "w", 1), CAIRN_ECONFLICT);

    int64_t a = enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_eq(meta_job_release(f.ms, a, "w"), CAIRN_ECONFLICT, "not running: nothing to release");
    cr_assert_eq(meta_job_extend(f.ms, a, "w", 99999), CAIRN_ECONFLICT);
    cr_assert_eq(meta_job_finish(f.ms, a, "w", "completed", 0, ""), CAIRN_ECONFLICT);
    expect_state(f.ms, a, "available", 0);
    int64_t before = time_now_ms();
    cr_assert_eq(meta_job_cancel(f.ms, a), 0);
    meta_job j;
    cr_assert_eq(meta_job_get(f.ms, a, &j), 0);
    cr_assert_str_eq(j.state, "cancelled");
    cr_assert_geq(j.finished_ms, before, "a cancel is a finish");
    meta_job_clear(&j);
    cr_assert_eq(meta_job_cancel(f.ms, a), CAIRN_ECONFLICT, "already cancelled");

    /* A retryable job can be cancelled, or retried at once with its attempts reset. */
    int64_t b = enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_eq(claim_id(f.ms, "w", 2000, 100), b);
    cr_assert_eq(meta_job_finish(f.ms, b, "w", "retryable", 999999999999, "later"), 0);
    expect_state(f.ms, b, "retryable", 1);
    cr_assert_eq(meta_job_retry(f.ms, b), 0);
    expect_state(f.ms, b, "available", 0);
    cr_assert_eq(claim_id(f.ms, "w", time_now_ms() + 1000, 100), b, "due now, not at the retry time");
    cr_assert_eq(meta_job_finish(f.ms, b, "w", "retryable", 999999999999, "later"), 0);
    cr_assert_eq(meta_job_cancel(f.ms, b), 0);
    expect_state(f.ms, b, "cancelled", 1);
    fx_close(&f);
}

Test(jobs, list_filters_by_state_and_kind_newest_first) {
    fx f;
    fx_open(&f, 1);
    job_rows none = {0};
    cr_assert_eq(meta_job_list(f.ms, "", "", 100, keep_job, &none), 0);
    cr_assert_eq(none.n, 0);
    int64_t a = enqueue_job(f.ms, "x", 0, 1000, NULL);
    int64_t b = enqueue_job(f.ms, "y", 0, 1000, NULL);
    int64_t c = enqueue_job(f.ms, "x", 0, 1000, NULL);
    int64_t d = enqueue_job(f.ms, "x", 0, 1000, NULL);
    cr_assert_eq(meta_job_cancel(f.ms, d), 0);

    job_rows r = {0};
    cr_assert_eq(meta_job_list(f.ms, "", "", 100, keep_job, &r), 0);
    cr_assert_eq(r.n, 4);
    cr_assert_eq(r.id[0], d, "newest first");
    cr_assert_eq(r.id[1], c);
    cr_assert_eq(r.id[2], b);
    cr_assert_eq(r.id[3], a);
    cr_assert_str_eq(r.state[0], "cancelled");
    job_rows x = {0};
    cr_assert_eq(meta_job_list(f.ms, "available", "x", 100, keep_job, &x), 0);
    cr_assert_eq(x.n, 2);
    cr_assert_eq(x.id[0], c);
    cr_assert_eq(x.id[1], a);
    job_rows cancelled = {0};
    cr_assert_eq(meta_job_list(f.ms, "cancelled", NULL, 100, keep_job, &cancelled), 0, "NULL filters match any");
    cr_assert_eq(cancelled.n, 1);
    cr_assert_eq(cancelled.id[0], d);
    job_rows y = {0};
    cr_assert_eq(meta_job_list(f.ms, NULL, "y", 100, keep_job, &y), 0);
    cr_assert_eq(y.n, 1);
    cr_assert_str_eq(y.kind[0], "y");
    job_rows bogus = {0};
    cr_assert_eq(meta_job_list(f.ms, "bogus", "", 100, keep_job, &bogus), 0);
    cr_assert_eq(bogus.n, 0);
    job_rows two = {0};
    cr_assert_eq(meta_job_list(f.ms, "", "", 2, keep_job, &two), 0);
    cr_assert_eq(two.n, 2, "the limit keeps the newest");
    cr_assert_eq(two.id[1], c);
    job_rows zero = {0};
    cr_assert_eq(meta_job_list(f.ms, "", "", 0, keep_job, &zero), 0);
    cr_assert_eq(zero.n, 0);
    job_rows stop = {.stop_after = 1};
    cr_assert_eq(meta_job_list(f.ms, "", "", 100, keep_job, &stop), 0);
    cr_assert_eq(stop.n, 1, "the callback stops the listing");
    cr_assert_eq(meta_job_list(NULL, "", "", 10, keep_job, &zero), CAIRN_EINVAL);
    cr_assert_eq(meta_job_list(f.ms, "", "", 10, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_job_list(f.ms, "", "", -1, keep_job, &zero), CAIRN_EINVAL,
                 "a negative limit is refused, not read as no limit");
    cr_assert_eq(zero.n, 0);
    fx_close(&f);
}

typedef struct {
    char line[16][96];
    int n, stop_after;
} job_counts_seen;

static int keep_count(void *ud, const char *kind, const char *state, int64_t n) {
    job_counts_seen *r = ud;
    cr_assert_lt(r->n, 16);
    snprintf(r->line[r->n++], sizeof r->line[0], "%s/%s=%lld", kind, state, (long long)n);
    return r->stop_after && r->n >= r->stop_after;
}

static bool has_line(const job_counts_seen *r, const char *line) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->line[i], line)) return true;
    return false;
}

Test(jobs, counts_per_kind_and_state) {
    fx f;
    fx_open(&f, 1);
    job_counts_seen empty = {0};
    cr_assert_eq(meta_job_counts(f.ms, keep_count, &empty), 0);
    cr_assert_eq(empty.n, 0, "an empty queue has no rows");
    int64_t x1 = enqueue_job(f.ms, "x", 5, 1000, NULL);
    int64_t x2 = enqueue_job(f.ms, "x", 0, 1000, NULL);
    enqueue_job(f.ms, "x", 0, 1000, NULL);
    enqueue_job(f.ms, "y", 0, 1000, NULL);
    enqueue_job(f.ms, "y", 0, 1000, NULL);
    cr_assert_eq(claim_id(f.ms, "w", 2000, 100000), x1);
    cr_assert_eq(meta_job_cancel(f.ms, x2), 0);
    job_counts_seen r = {0};
    cr_assert_eq(meta_job_counts(f.ms, keep_count, &r), 0);
    cr_assert_eq(r.n, 4, "one row per (kind, state) that has jobs");
    cr_assert(has_line(&r, "x/available=1"));
    cr_assert(has_line(&r, "x/cancelled=1"));
    cr_assert(has_line(&r, "x/running=1"));
    cr_assert(has_line(&r, "y/available=2"));
    /* Finishing moves a job between rows. */
    cr_assert_eq(meta_job_finish(f.ms, x1, "w", "completed", 0, ""), 0);
    job_counts_seen after = {0};
    cr_assert_eq(meta_job_counts(f.ms, keep_count, &after), 0);
    cr_assert_eq(after.n, 4);
    cr_assert(has_line(&after, "x/completed=1"));
    cr_assert_not(has_line(&after, "x/running=1"));
    job_counts_seen stop = {.stop_after = 1};
    cr_assert_eq(meta_job_counts(f.ms, keep_count, &stop), 0);
    cr_assert_eq(stop.n, 1, "the callback stops the counting");
    cr_assert_eq(meta_job_counts(NULL, keep_count, &r), CAIRN_EINVAL);
    cr_assert_eq(meta_job_counts(f.ms, NULL, NULL), CAIRN_EINVAL);
    fx_close(&f);
}

Test(jobs, ids_are_never_reused) {
    fx f;
    fx_open(&f, 1);
    int64_t a = enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_eq(claim_id(f.ms, "w", 1000, 100), a);
    cr_assert_eq(meta_job_finish(f.ms, a, "w", "completed", 0, ""), 0);
    int64_t n = 0;
    cr_assert_eq(meta_job_prune(f.ms, time_now_ms() + 60000, 0, 10, &n), 0);
    cr_assert_eq(n, 1);
    meta_job j;
    cr_assert_eq(meta_job_get(f.ms, a, &j), CAIRN_ENOTFOUND);
    int64_t b = enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_gt(b, a, "the pruned job's id is not handed out again");
    fx_reopen(&f);
    cr_assert_gt(enqueue_job(f.ms, "k", 0, 1000, NULL), b);
    cr_assert_eq(meta_job_prune(NULL, 0, 0, 10, &n), CAIRN_EINVAL);
    fx_close(&f);
}

/* ---- trash and placements: arguments and ordering --------------------------------------------- */

typedef struct {
    meta_trash_entry e[16];
    int n, stop_after;
} trash_rows;

static int keep_trash(void *ud, const meta_trash_entry *e) {
    trash_rows *r = ud;
    cr_assert_lt(r->n, 16);
    r->e[r->n++] = *e;
    return r->stop_after && r->n >= r->stop_after;
}

/* Puts n parts in the trash by deleting a bucket with an upload of n parts. */
static void trash_parts(meta_store *ms, const char *bucket, int n) {
    mk_bucket(ms, bucket, 1);
    int64_t id = bucket_id_of(ms, bucket);
    mk_upload(ms, bucket, id, "k", bucket);
    for (int i = 1; i <= n; i++) {
        meta_part p = mk_part(i, 1, "1+0:4096:0123456789abcdef");
        put_part(ms, bucket, &p);
    }
    cr_assert_eq(meta_bucket_delete(ms, bucket, id), 0);
}

Test(trash, lists_oldest_first_and_forgets_what_it_is_told) {
    fx f;
    fx_open(&f, 1);
    trash_parts(f.ms, "one", 3);
    trash_parts(f.ms, "two", 2);
    trash_rows r = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, keep_trash, &r), 0);
    cr_assert_eq(r.n, 5);
    for (int i = 1; i < r.n; i++)
        cr_assert(r.e[i - 1].added_ms < r.e[i].added_ms ||
                      (r.e[i - 1].added_ms == r.e[i].added_ms && strcmp(r.e[i - 1].version_id, r.e[i].version_id) < 0),
                  "oldest first, then by version id");
    trash_rows stop = {.stop_after = 2};
    cr_assert_eq(meta_trash_list(f.ms, 100, keep_trash, &stop), 0);
    cr_assert_eq(stop.n, 2, "the callback stops the listing");
    const char *unknown = "00000000000000000000000000000000";
    cr_assert_eq(meta_trash_remove(f.ms, &unknown, 1), 0, "forgetting what is not there is harmless");
    const char *two[2] = {r.e[0].version_id, r.e[4].version_id};
    cr_assert_eq(meta_trash_remove(f.ms, two, 2), 0);
    trash_rows left = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, keep_trash, &left), 0);
    cr_assert_eq(left.n, 3);
    for (int i = 0; i < left.n; i++) {
        cr_assert_str_neq(left.e[i].version_id, two[0]);
        cr_assert_str_neq(left.e[i].version_id, two[1]);
    }
    cr_assert_eq(meta_trash_list(NULL, 10, keep_trash, &left), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_list(f.ms, 10, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_list(f.ms, -1, keep_trash, &left), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_remove(NULL, two, 1), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_remove(f.ms, two, -1), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_remove(f.ms, NULL, 1), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_remove(f.ms, NULL, 0), 0, "nothing to forget");
    trash_rows still = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, keep_trash, &still), 0);
    cr_assert_eq(still.n, 3);
    fx_close(&f);
}

typedef struct {
    int n, stop_after;
} counter;

static int count_place(void *ud, const meta_placement *p) {
    (void)p;
    counter *c = ud;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

Test(placement, scan_and_refs_reject_bad_arguments_and_stop_when_told) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    for (int i = 0; i < 5; i++) {
        char key[8];
        int len = snprintf(key, sizeof key, "k%d", i);
        meta_object o = mk_obj("b", key, (size_t)len, 1);
        strcpy(o.layout, "1+0:4096:0123456789abcdef");
        cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    }
    meta_place_cursor cur = {0};
    counter c = {.stop_after = 2};
    cr_assert_eq(meta_placement_scan(f.ms, &cur, 10, count_place, &c), 0);
    cr_assert_eq(c.n, 2, "the callback stops the delivery");
    meta_place_cursor all = {0};
    counter every = {0};
    while (!all.done) cr_assert_eq(meta_placement_scan(f.ms, &all, 2, count_place, &every), 0);
    cr_assert_eq(every.n, 5);
    cr_assert_eq(meta_placement_scan(NULL, &cur, 10, count_place, &c), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_scan(f.ms, NULL, 10, count_place, &c), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_scan(f.ms, &cur, 10, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_scan(f.ms, &cur, -1, count_place, &c), CAIRN_EINVAL);
    int64_t refs = -1;
    cr_assert_eq(meta_layout_refs(NULL, "0123456789abcdef", &refs), CAIRN_EINVAL);
    cr_assert_eq(meta_layout_refs(f.ms, NULL, &refs), CAIRN_EINVAL);
    cr_assert_eq(meta_layout_refs(f.ms, "0123456789abcdef", NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_layout_refs(f.ms, "0123456789abcdef", &refs), 0);
    cr_assert_eq(refs, 5);
    cr_assert_eq(meta_placement_set_layout(NULL, "v", "a", "b"), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_set_layout(f.ms, "v", NULL, "b"), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_set_layout(f.ms, "v", "a", NULL), CAIRN_EINVAL);
    fx_close(&f);
}

/* ---- limits at the edges of int ------------------------------------------------------------------ */

Test(limits, int_max_means_every_row_and_negative_is_refused) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    put_key(f.ms, "b", "k1", 2);
    put_key(f.ms, "b", "k2", 2);
    mk_upload(f.ms, "b", id, "k", "u1");
    mk_upload(f.ms, "b", id, "k", "u2");
    meta_part p1 = mk_part(1, 1, "1+0:4096:0123456789abcdef"), p2 = mk_part(2, 1, "1+0:4096:0123456789abcdef");
    put_part(f.ms, "u1", &p1);
    put_part(f.ms, "u1", &p2);
    enqueue_job(f.ms, "k", 0, 1000, NULL);

    bool more = true;
    int n = 0;
    cr_assert_eq(meta_object_list(f.ms, "b", id, NULL, 0, NULL, 0, false, INT_MAX, count_listed, &n, &more), 0);
    cr_assert_eq(n, 2);
    cr_assert_not(more);
    scan_rows s = {0};
    more = true;
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, INT_MAX, keep_scan, &s, &more), 0);
    cr_assert_eq(s.n, 2);
    cr_assert_not(more);
    names u = {0};
    more = true;
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, INT_MAX, upload_names, &u, &more), 0);
    cr_assert_eq(u.n, 2);
    cr_assert_not(more);
    parts_seen ps = {0};
    more = true;
    cr_assert_eq(meta_part_list(f.ms, "u1", 0, INT_MAX, see_part, &ps, &more), 0);
    cr_assert_eq(ps.n, 2);
    cr_assert_not(more);
    names old = {0};
    cr_assert_eq(meta_upload_list_older(f.ms, INT64_MAX, INT_MAX, upload_names, &old), 0);
    cr_assert_eq(old.n, 2);
    job_rows jr = {0};
    cr_assert_eq(meta_job_list(f.ms, "", "", INT_MAX, keep_job, &jr), 0);
    cr_assert_eq(jr.n, 1);
    trash_rows tr = {0};
    cr_assert_eq(meta_trash_list(f.ms, INT_MAX, keep_trash, &tr), 0);
    cr_assert_eq(tr.n, 0);
    meta_place_cursor cur = {0};
    counter pc = {0};
    cr_assert_eq(meta_placement_scan(f.ms, &cur, INT_MAX, count_place, &pc), 0);
    cr_assert_eq(pc.n, 2, "the two objects (then the parts, on later calls)");
    int64_t del = -1;
    cr_assert_eq(meta_job_prune(f.ms, 0, 0, INT_MAX, &del), 0);
    cr_assert_eq(del, 0);
    cr_assert_eq(meta_upload_completed_prune(f.ms, 0, INT_MAX, &del), 0);
    cr_assert_eq(del, 0);

    /* Limits below the smallest allowed value. */
    cr_assert_eq(meta_object_list(f.ms, "b", id, NULL, 0, NULL, 0, false, INT_MIN, count_listed, &n, &more),
                 CAIRN_EINVAL);
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, INT_MIN, keep_scan, &s, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, INT_MIN, upload_names, &u, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_part_list(f.ms, "u1", 0, INT_MIN, see_part, &ps, &more), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_list_older(f.ms, INT64_MAX, INT_MIN, upload_names, &old), CAIRN_EINVAL);
    cr_assert_eq(meta_job_list(f.ms, "", "", INT_MIN, keep_job, &jr), CAIRN_EINVAL);
    cr_assert_eq(meta_trash_list(f.ms, 0, keep_trash, &tr), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_scan(f.ms, &cur, 0, count_place, &pc), CAIRN_EINVAL);
    cr_assert_eq(meta_job_prune(f.ms, 0, 0, 0, &del), CAIRN_EINVAL);
    cr_assert_eq(meta_upload_completed_prune(f.ms, 0, 0, &del), CAIRN_EINVAL);
    fx_close(&f);
}

/* ---- callbacks that may call back into meta ----------------------------------------------------
 *
 * With one reader connection, a listing that still held it while calling
 * back would deadlock here; these calls copy their rows first (meta.h says
 * so for the trash and placements; the expiry job aborts uploads from inside
 * meta_upload_list_older's callback). */

typedef struct {
    meta_store *ms;
    int n;
} reenter;

static int reenter_user(void *ud, const meta_user *u) {
    reenter *r = ud;
    meta_user again;
    cr_assert_eq(meta_user_get(r->ms, u->id, &again), 0);
    cr_assert_str_eq(again.name, u->name);
    r->n++;
    return 0;
}

static int reenter_key(void *ud, const meta_key *k) {
    reenter *r = ud;
    cr_assert_eq(meta_key_set_active(r->ms, k->access_key, false), 0);
    r->n++;
    return 0;
}

static int reenter_bucket(void *ud, const meta_bucket *b) {
    reenter *r = ud;
    cr_assert_eq(meta_bucket_set_public(r->ms, b->name, true), 0);
    r->n++;
    return 0;
}

static int reenter_node(void *ud, const meta_node *n) {
    reenter *r = ud;
    cr_assert_eq(meta_node_set_state(r->ms, n->id, "draining"), 0);
    r->n++;
    return 0;
}

static int reenter_job(void *ud, const meta_job *j) {
    reenter *r = ud;
    cr_assert_eq(meta_job_cancel(r->ms, j->id), 0);
    r->n++;
    return 0;
}

static int reenter_upload(void *ud, const meta_upload *u) {
    reenter *r = ud;
    cr_assert_eq(meta_upload_abort(r->ms, u->upload_id, NULL, NULL), 0);
    r->n++;
    return 0;
}

static int reenter_object_part(void *ud, const meta_part *p) {
    reenter *r = ud;
    bool referenced = false;
    cr_assert_eq(meta_version_referenced(r->ms, p->version_id, &referenced), 0);
    cr_assert(referenced);
    r->n++;
    return 0;
}

static int reenter_trash(void *ud, const meta_trash_entry *e) {
    reenter *r = ud;
    const char *id = e->version_id;
    cr_assert_eq(meta_trash_remove(r->ms, &id, 1), 0);
    r->n++;
    return 0;
}

static int reenter_listed(void *ud, const meta_list_entry *e) {
    reenter *r = ud;
    meta_object o;
    cr_assert_eq(meta_object_get(r->ms, "b", 0, e->key, e->key_len, false, &o), 0);
    cr_assert_eq(o.size, e->size);
    meta_object_clear(&o);
    r->n++;
    return 0;
}

static int reenter_scanned(void *ud, const meta_scan_entry *e) {
    reenter *r = ud;
    bool referenced = false;
    cr_assert_eq(meta_version_referenced(r->ms, e->version_id, &referenced), 0);
    cr_assert(referenced);
    r->n++;
    return 0;
}

static int reenter_part(void *ud, const meta_part *p) {
    reenter *r = ud;
    meta_part again = *p, replaced;
    bool had = false;
    again.size = p->size + 1;
    cr_assert_eq(meta_part_put(r->ms, "open", &again, &replaced, &had), 0);
    cr_assert(had);
    r->n++;
    return 0;
}

static int reenter_count(void *ud, const char *kind, const char *state, int64_t n) {
    reenter *r = ud;
    (void)kind, (void)state;
    meta_job j;
    cr_assert_eq(meta_job_get(r->ms, 1, &j), 0);
    meta_job_clear(&j);
    r->n += (int)n;
    return 0;
}

static int reenter_place(void *ud, const meta_placement *p) {
    reenter *r = ud;
    char before[320];
    strcpy(before, p->layout);
    cr_assert_eq(meta_placement_set_layout(r->ms, p->version_id, p->layout, "1+0:4096:fedcba9876543210"), 0);
    cr_assert_str_eq(p->layout, before, "the row was copied before the callback");
    r->n++;
    return 0;
}

Test(reentry, list_callbacks_may_call_meta_with_one_reader, .timeout = 60) {
    fx f;
    fx_open(&f, 1);
    int64_t uid = mk_user(f.ms, "u");
    mk_user(f.ms, "v");
    meta_key k = {.user_id = uid, .active = true};
    strcpy(k.sealed_secret, "s");
    strcpy(k.access_key, "AK1");
    cr_assert_eq(meta_key_create(f.ms, &k), 0);
    strcpy(k.access_key, "AK2");
    cr_assert_eq(meta_key_create(f.ms, &k), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_A, "http://a"), 0);
    cr_assert_eq(meta_node_upsert(f.ms, NODE_B, "http://b"), 0);
    enqueue_job(f.ms, "k", 0, 1000, NULL);
    enqueue_job(f.ms, "k", 0, 1000, NULL);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    mk_upload_at(f.ms, "b", id, "k", "old1", 10);
    mk_upload_at(f.ms, "b", id, "k", "old2", 20);
    const char *layout = "1+0:4096:0123456789abcdef";
    mk_upload(f.ms, "b", id, "mp", "done");
    meta_part p1 = mk_part(1, 3, layout), p2 = mk_part(2, 4, layout);
    put_part(f.ms, "done", &p1);
    put_part(f.ms, "done", &p2);
    meta_part chosen[2] = {p1, p2};
    meta_object mp = mp_obj("b", id, "mp", 7, 2);
    meta_object replaced;
    bool had;
    int unused = 0;
    cr_assert_eq(meta_upload_complete(f.ms, "done", &mp, chosen, 2, &replaced, &had, ignore_part, &unused), 0);
    trash_parts(f.ms, "gone", 2);

    reenter r = {f.ms, 0};
    cr_assert_eq(meta_user_list(f.ms, reenter_user, &r), 0);
    cr_assert_eq(r.n, 2);
    r.n = 0;
    cr_assert_eq(meta_key_list(f.ms, -1, reenter_key, &r), 0);
    cr_assert_eq(r.n, 2);
    meta_key kg;
    cr_assert_eq(meta_key_get(f.ms, "AK2", &kg), 0);
    cr_assert_not(kg.active);
    r.n = 0;
    cr_assert_eq(meta_bucket_list(f.ms, -1, reenter_bucket, &r), 0);
    cr_assert_eq(r.n, 1);
    r.n = 0;
    cr_assert_eq(meta_node_list(f.ms, reenter_node, &r), 0);
    cr_assert_eq(r.n, 2);
    expect_node_state(f.ms, NODE_B, "draining");
    r.n = 0;
    cr_assert_eq(meta_job_list(f.ms, "available", "", 100, reenter_job, &r), 0);
    cr_assert_eq(r.n, 2);
    r.n = 0;
    cr_assert_eq(meta_upload_list_older(f.ms, 100, 100, reenter_upload, &r), 0);
    cr_assert_eq(r.n, 2, "the expiry job aborts from inside the listing");
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "old2", &u), CAIRN_ENOTFOUND);
    r.n = 0;
    cr_assert_eq(meta_object_parts(f.ms, mp.version_id, reenter_object_part, &r), 0);
    cr_assert_eq(r.n, 2);
    r.n = 0;
    cr_assert_eq(meta_trash_list(f.ms, 100, reenter_trash, &r), 0);
    cr_assert_eq(r.n, 2);
    trash_rows left = {0};
    cr_assert_eq(meta_trash_list(f.ms, 100, keep_trash, &left), 0);
    cr_assert_eq(left.n, 0, "each entry was forgotten from inside the listing");
    r.n = 0;
    meta_place_cursor cur = {0};
    while (!cur.done) cr_assert_eq(meta_placement_scan(f.ms, &cur, 1, reenter_place, &r), 0);
    cr_assert_eq(r.n, 2, "the two object parts");
    int64_t refs = -1;
    cr_assert_eq(meta_layout_refs(f.ms, "fedcba9876543210", &refs), 0);
    cr_assert_eq(refs, 2);

    /* The listings that page through their rows copy each batch out too. */
    put_key(f.ms, "b", "plain", 5);
    r.n = 0;
    cr_assert_eq(meta_object_list(f.ms, "b", id, NULL, 0, NULL, 0, false, 100, reenter_listed, &r, NULL), 0);
    cr_assert_eq(r.n, 2, "mp and plain");
    r.n = 0;
    bool more = true;
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, 100, reenter_scanned, &r, &more), 0);
    cr_assert_eq(r.n, 2);
    cr_assert_not(more);
    mk_upload(f.ms, "b", id, "k2", "open");
    put_part(f.ms, "open", &p1);
    put_part(f.ms, "open", &p2);
    r.n = 0;
    cr_assert_eq(meta_part_list(f.ms, "open", 0, 100, reenter_part, &r, NULL), 0);
    cr_assert_eq(r.n, 2);
    r.n = 0;
    cr_assert_eq(meta_upload_list(f.ms, id, NULL, 0, NULL, 0, NULL, 100, reenter_upload, &r, NULL), 0);
    cr_assert_eq(r.n, 1, "the upload is aborted from inside its listing");
    cr_assert_eq(meta_upload_get(f.ms, "open", &u), CAIRN_ENOTFOUND);
    r.n = 0;
    cr_assert_eq(meta_job_counts(f.ms, reenter_count, &r), 0);
    cr_assert_eq(r.n, 2, "the two jobs, counted");
    fx_close(&f);
}

/* ---- list calls page through their rows ------------------------------------------------------- */

static int part_numbers(void *ud, const meta_part *p) {
    collect *c = ud;
    char k[16];
    snprintf(k, sizeof k, "%05d", p->part_number);
    meta_list_entry e = {.key = k, .key_len = strlen(k)};
    return collect_cb(c, &e);
}

static int upload_keys(void *ud, const meta_upload *u) {
    collect *c = ud;
    meta_list_entry e = {.key = u->upload_id, .key_len = strlen(u->upload_id)};
    return collect_cb(c, &e);
}

static int scan_keys(void *ud, const meta_scan_entry *e) {
    collect *c = ud;
    meta_list_entry l = {.key = e->key, .key_len = e->key_len};
    return collect_cb(c, &l);
}

/* The rows of a list call reach the callback in batches (16, then doubling
 * up to 256): whatever the limit and wherever the callback stops, each row
 * comes once, in order, and `more` tells the truth. */
Test(paging, list_calls_deliver_each_row_once_across_batches, .timeout = 120) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const int N = 700;
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%05d", i);
        put_key(f.ms, "b", k, strlen(k));
    }
    static const int limits[] = {0, 1, 15, 16, 17, 48, 49, 300, 699, 700, 701, 1000};
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        int limit = limits[li];
        collect c = {0};
        bool more = false;
        cr_assert_eq(meta_object_list(f.ms, "b", id, "k", 1, NULL, 0, false, limit, collect_cb, &c, &more), 0);
        int want = limit < N ? limit : N;
        cr_assert_eq(c.n, want, "limit %d", limit);
        cr_assert_eq(more, limit < N, "limit %d: more", limit);
        for (int i = 0; i < c.n; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%05d", i);
            cr_assert(key_is(&c, i, k, strlen(k)), "limit %d: row %d is %s", limit, i, c.keys[i]);
        }
        collect_free(&c);
    }
    static const int stops[] = {1, 16, 17, 47, 48, 49, 500};
    for (size_t si = 0; si < sizeof stops / sizeof stops[0]; si++) {
        collect c = {.stop_after = stops[si]};
        cr_assert_eq(meta_object_list(f.ms, "b", id, NULL, 0, "k00100", 6, true, 1000, collect_cb, &c, NULL), 0);
        cr_assert_eq(c.n, stops[si], "stopped after %d", stops[si]);
        char k[16];
        snprintf(k, sizeof k, "k%05d", 100 + stops[si] - 1);
        cr_assert(key_is(&c, c.n - 1, k, strlen(k)), "the last row delivered is %s", c.keys[c.n - 1]);
        collect_free(&c);
    }
    /* The whole-store scan pages the same way. */
    collect sc = {0};
    bool more = true;
    cr_assert_eq(meta_object_scan(f.ms, "", "", 0, N, scan_keys, &sc, &more), 0);
    cr_assert_eq(sc.n, N);
    cr_assert_not(more);
    cr_assert(key_is(&sc, N - 1, "k00699", 6));
    collect_free(&sc);
    collect sc2 = {0};
    cr_assert_eq(meta_object_scan(f.ms, "b", "k00600", 6, 50, scan_keys, &sc2, &more), 0);
    cr_assert_eq(sc2.n, 50);
    cr_assert(more);
    cr_assert(key_is(&sc2, 0, "k00601", 6));
    collect_free(&sc2);

    /* Parts, by part number, across batches. */
    mk_upload(f.ms, "b", id, "big", "up");
    for (int i = 1; i <= 600; i++) {
        meta_part p = mk_part(i, i, "1+0:4096:0123456789abcdef");
        put_part(f.ms, "up", &p);
    }
    collect pc = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 10, 500, part_numbers, &pc, &more), 0);
    cr_assert_eq(pc.n, 500);
    cr_assert(more);
    cr_assert(key_is(&pc, 0, "00011", 5));
    cr_assert(key_is(&pc, 499, "00510", 5));
    collect_free(&pc);
    collect pc2 = {0};
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 10000, part_numbers, &pc2, &more), 0);
    cr_assert_eq(pc2.n, 600);
    cr_assert_not(more);
    collect_free(&pc2);

    /* Uploads of one key, ordered by upload id, across batches. */
    for (int i = 0; i < 300; i++) {
        char uid[16];
        snprintf(uid, sizeof uid, "u%04d", i);
        mk_upload(f.ms, "b", id, "same", uid);
    }
    collect uc = {0};
    cr_assert_eq(meta_upload_list(f.ms, id, "same", 4, "same", 4, "u0009", 280, upload_keys, &uc, &more), 0);
    cr_assert_eq(uc.n, 280);
    cr_assert(more, "u0290 to u0299 remain");
    cr_assert(key_is(&uc, 0, "u0010", 5));
    cr_assert(key_is(&uc, 279, "u0289", 5));
    collect_free(&uc);
    fx_close(&f);
}

/* ---- one placement by version id ---------------------------------------------------------- */

Test(placement, get_finds_each_kind_by_version_id) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const char *L = "2+1:4096:aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb,cccccccccccccccc";
    meta_object plain = mk_obj("b", "dir/plain", 9, 1234);
    strcpy(plain.layout, L);
    cr_assert_eq(meta_object_put(f.ms, &plain, NULL, NULL), 0);
    meta_object small = mk_obj("b", "inline", 6, 2);
    small.storage = META_STORE_INLINE;
    small.data = (uint8_t *)"hi";
    small.data_len = 2;
    cr_assert_eq(meta_object_put(f.ms, &small, NULL, NULL), 0);
    mk_upload(f.ms, "b", id, "mp", "done");
    meta_part op = mk_part(1, 600, L);
    put_part(f.ms, "done", &op);
    meta_object mp = complete_one(f.ms, "b", id, "mp", "done", &op, 1000);
    mk_upload(f.ms, "b", id, "live", "live");
    meta_part up = mk_part(4, 77, L);
    put_part(f.ms, "live", &up);

    meta_placement p;
    cr_assert_eq(meta_placement_get(f.ms, plain.version_id, &p), 0);
    cr_assert_eq(p.kind, META_PLACE_OBJECT);
    cr_assert_str_eq(p.version_id, plain.version_id);
    cr_assert_eq(p.size, 1234);
    cr_assert_str_eq(p.layout, L);
    cr_assert_str_eq(p.owner, "b");
    cr_assert_eq(p.key_len, 9);
    cr_assert_str_eq(p.key, "dir/plain");
    cr_assert_eq(meta_placement_get(f.ms, op.version_id, &p), 0);
    cr_assert_eq(p.kind, META_PLACE_OBJECT_PART);
    cr_assert_str_eq(p.owner, mp.version_id);
    cr_assert_eq(p.part_number, 1);
    cr_assert_eq(p.size, 600);
    cr_assert_eq(p.key_len, 0);
    cr_assert_eq(meta_placement_get(f.ms, up.version_id, &p), 0);
    cr_assert_eq(p.kind, META_PLACE_UPLOAD_PART);
    cr_assert_str_eq(p.owner, "live");
    cr_assert_eq(p.part_number, 4);
    cr_assert_str_eq(p.layout, L);

    cr_assert_eq(meta_placement_get(f.ms, small.version_id, &p), CAIRN_ENOTFOUND, "inline bytes have no shards");
    cr_assert_eq(meta_placement_get(f.ms, mp.version_id, &p), CAIRN_ENOTFOUND, "nor has a multipart object's row");
    cr_assert_eq(meta_placement_get(f.ms, "0123456789abcdef0123456789abcdef", &p), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_placement_get(NULL, plain.version_id, &p), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_get(f.ms, NULL, &p), CAIRN_EINVAL);
    cr_assert_eq(meta_placement_get(f.ms, plain.version_id, NULL), CAIRN_EINVAL);
    /* Moving a placement is seen at once; a completed upload's part becomes an object part. */
    cr_assert_eq(meta_placement_set_layout(f.ms, up.version_id, L, "1+0:4096:dddddddddddddddd"), 0);
    cr_assert_eq(meta_placement_get(f.ms, up.version_id, &p), 0);
    cr_assert_str_eq(p.layout, "1+0:4096:dddddddddddddddd");
    complete_one(f.ms, "b", id, "live", "live", &up, 1000);
    cr_assert_eq(meta_placement_get(f.ms, up.version_id, &p), 0);
    cr_assert_eq(p.kind, META_PLACE_OBJECT_PART);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "dir/plain", 9, NULL), 0);
    cr_assert_eq(meta_placement_get(f.ms, plain.version_id, &p), CAIRN_ENOTFOUND);
    fx_close(&f);
}

/* ---- consistency checks (fsck) ----------------------------------------------------------------- */

Test(check, problem_names_are_stable_and_distinct) {
    const char *want[META_PROBLEM__COUNT] = {
        [META_PROBLEM_UPLOAD_WITHOUT_BUCKET] = "upload_without_bucket",
        [META_PROBLEM_OBJECT_WITHOUT_BUCKET] = "object_without_bucket",
        [META_PROBLEM_PARTS_WITHOUT_UPLOAD] = "parts_without_upload",
        [META_PROBLEM_PARTS_WITHOUT_OBJECT] = "parts_without_object",
        [META_PROBLEM_MULTIPART_MISMATCH] = "multipart_mismatch",
        [META_PROBLEM_INLINE_WITHOUT_DATA] = "inline_without_data",
        [META_PROBLEM_DATA_WITHOUT_OBJECT] = "data_without_object",
        [META_PROBLEM_DUPLICATE_VERSION] = "duplicate_version",
    };
    for (int k = 0; k < META_PROBLEM__COUNT; k++) {
        cr_assert_not_null(want[k], "kind %d has an expected name here", k);
        cr_assert_str_eq(meta_problem_name((meta_problem_kind)k), want[k]);
    }
    cr_assert_str_eq(meta_problem_name(META_PROBLEM__COUNT), "unknown");
    cr_assert_str_eq(meta_problem_name((meta_problem_kind)-1), "unknown");
    cr_assert_str_eq(meta_problem_name((meta_problem_kind)1000), "unknown");
}

typedef struct {
    meta_problem p[16];
    int n, stop_after;
} problem_rows;

static int keep_problem(void *ud, const meta_problem *p) {
    problem_rows *r = ud;
    cr_assert_lt(r->n, 16);
    r->p[r->n++] = *p;
    return r->stop_after && r->n >= r->stop_after;
}

static const meta_problem *find_problem(const problem_rows *r, meta_problem_kind kind, const char *id) {
    for (int i = 0; i < r->n; i++)
        if (r->p[i].kind == kind && !strcmp(r->p[i].id, id)) return &r->p[i];
    return NULL;
}


typedef struct {
    char version[8][33];
    char layout[8][64];
    int n;
} drops;

static void keep_drop(void *ud, const char *version_id, const char *layout) {
    drops *d = ud;
    cr_assert_lt(d->n, 8);
    snprintf(d->version[d->n], sizeof d->version[0], "%s", version_id);
    snprintf(d->layout[d->n], sizeof d->layout[0], "%s", layout);
    d->n++;
}

static bool dropped(const drops *d, const char *version_id) {
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->version[i], version_id)) return true;
    return false;
}

/* A store with one problem of every kind beside healthy rows of each sort. */
typedef struct {
    fx f;
    int64_t bucket_id;
    meta_part orphan_parts[2];     /* of upload "orphan-up", whose bucket is gone */
    meta_object replaced_mp;       /* its row deleted by hand: its part rows remain */
    meta_part replaced_part;
    meta_object mismatch, inl, dup;
    meta_part live_part;
} broken;

static void mk_broken(broken *s) {
    fx_open(&s->f, 1);
    meta_store *ms = s->f.ms;
    const char *L = "1+0:4096:0123456789abcdef";
    mk_bucket(ms, "b", 1);
    s->bucket_id = bucket_id_of(ms, "b");
    int64_t id = s->bucket_id;
    /* Healthy: a multipart object, an upload with a part, an inline object. */
    mk_upload(ms, "b", id, "good-mp", "good-mp");
    meta_part gp = mk_part(1, 5, L);
    put_part(ms, "good-mp", &gp);
    complete_one(ms, "b", id, "good-mp", "good-mp", &gp, 1000);
    mk_upload(ms, "b", id, "live", "live");
    s->live_part = mk_part(1, 5, L);
    put_part(ms, "live", &s->live_part);
    meta_object ok = mk_obj("b", "ok-inline", 9, 3);
    ok.storage = META_STORE_INLINE;
    ok.data = (uint8_t *)"abc";
    ok.data_len = 3;
    cr_assert_eq(meta_object_put(ms, &ok, NULL, NULL), 0);
    problem_rows clean = {0};
    int64_t total = -1;
    cr_assert_eq(meta_check(ms, 100, keep_problem, &clean, &total), 0);
    cr_assert_eq(clean.n, 0, "a healthy store has no problems");
    cr_assert_eq(total, 0);

    /* The problems, one of each kind. */
    mk_upload(ms, "b", id, "k", "orphan-up");
    for (int i = 0; i < 2; i++) {
        s->orphan_parts[i] = mk_part(i + 1, 1, L);
        put_part(ms, "orphan-up", &s->orphan_parts[i]);
    }
    plant(&s->f, "UPDATE uploads SET bucket_id = 999999 WHERE upload_id = 'orphan-up'");
    plant(&s->f, "INSERT INTO objects(bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, layout)"
                     " VALUES ('ghost', 'gk', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1', 1, 'e', 1, 1, 1, '')");
    plant(&s->f, "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms)"
                     " VALUES ('lost', 1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2', 1, 'e', '1+0:4096:0123456789abcdef', 1)");
    mk_upload(ms, "b", id, "re", "re");
    s->replaced_part = mk_part(1, 4, L);
    put_part(ms, "re", &s->replaced_part);
    s->replaced_mp = complete_one(ms, "b", id, "re", "re", &s->replaced_part, 1000);
    /* The calls move a replaced version's parts to the trash with it; only a
     * hand-edited (or broken) database drops the row and keeps the parts. */
    char del[160];
    snprintf(del, sizeof del, "DELETE FROM objects WHERE version_id = '%s'", s->replaced_mp.version_id);
    plant(&s->f, del);
    mk_upload(ms, "b", id, "mm", "mm");
    meta_part mmp = mk_part(1, 4, L);
    put_part(ms, "mm", &mmp);
    s->mismatch = complete_one(ms, "b", id, "mm", "mm", &mmp, 1000);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE objects SET size = size + 1 WHERE version_id = '%s'", s->mismatch.version_id);
    plant(&s->f, sql);
    s->inl = mk_obj("b", "inl", 3, 2);
    s->inl.storage = META_STORE_INLINE;
    s->inl.data = (uint8_t *)"xy";
    s->inl.data_len = 2;
    cr_assert_eq(meta_object_put(ms, &s->inl, NULL, NULL), 0);
    snprintf(sql, sizeof sql, "DELETE FROM object_data WHERE version_id = '%s'", s->inl.version_id);
    plant(&s->f, sql);
    plant2(&s->f, "INSERT INTO object_data(version_id, data) VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3', x'01')",
           "INSERT INTO object_data(version_id, data) VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3', '\\x01')");
    s->dup = mk_obj("b", "dup", 3, 1);
    cr_assert_eq(meta_object_put(ms, &s->dup, NULL, NULL), 0);
    snprintf(sql, sizeof sql,
             "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms)"
             " VALUES ('live', 9, '%s', 1, 'e', 'x', 1)", s->dup.version_id);
    plant(&s->f, sql);
}

Test(check, finds_one_problem_of_every_kind_and_nothing_healthy) {
    broken s;
    mk_broken(&s);
    problem_rows r = {0};
    int64_t total = -1;
    cr_assert_eq(meta_check(s.f.ms, 100, keep_problem, &r, &total), 0);
    cr_assert_eq(r.n, META_PROBLEM__COUNT, "one each, nothing healthy reported");
    cr_assert_eq(total, META_PROBLEM__COUNT);
    cr_assert_not_null(find_problem(&r, META_PROBLEM_UPLOAD_WITHOUT_BUCKET, "orphan-up"));
    const meta_problem *ghost = find_problem(&r, META_PROBLEM_OBJECT_WITHOUT_BUCKET, "ghost");
    cr_assert_not_null(ghost);
    cr_assert_eq(ghost->key_len, 2);
    cr_assert_str_eq(ghost->key, "gk");
    cr_assert_not_null(find_problem(&r, META_PROBLEM_PARTS_WITHOUT_UPLOAD, "lost"));
    cr_assert_not_null(find_problem(&r, META_PROBLEM_PARTS_WITHOUT_OBJECT, s.replaced_mp.version_id),
                       "a multipart version's part rows without the version");
    const meta_problem *mm = find_problem(&r, META_PROBLEM_MULTIPART_MISMATCH, s.mismatch.version_id);
    cr_assert_not_null(mm);
    cr_assert_str_eq(mm->key, "mm");
    cr_assert_not_null(find_problem(&r, META_PROBLEM_INLINE_WITHOUT_DATA, s.inl.version_id));
    cr_assert_not_null(find_problem(&r, META_PROBLEM_DATA_WITHOUT_OBJECT, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3"));
    cr_assert_not_null(find_problem(&r, META_PROBLEM_DUPLICATE_VERSION, s.dup.version_id));

    /* A limit bounds what the callback hears, never the total. */
    problem_rows three = {0};
    cr_assert_eq(meta_check(s.f.ms, 3, keep_problem, &three, &total), 0);
    cr_assert_eq(three.n, 3);
    cr_assert_eq(total, META_PROBLEM__COUNT);
    problem_rows zero = {0};
    cr_assert_eq(meta_check(s.f.ms, 0, keep_problem, &zero, &total), 0);
    cr_assert_eq(zero.n, 0);
    cr_assert_eq(total, META_PROBLEM__COUNT, "limit 0 only counts");
    problem_rows stop = {.stop_after = 2};
    cr_assert_eq(meta_check(s.f.ms, 100, keep_problem, &stop, NULL), 0, "total may be NULL");
    cr_assert_eq(stop.n, 2, "the callback stops the report");
    total = -1;
    cr_assert_eq(meta_check(NULL, 10, keep_problem, &zero, &total), CAIRN_EINVAL);
    cr_assert_eq(total, 0);
    cr_assert_eq(meta_check(s.f.ms, 10, NULL, NULL, &total), CAIRN_EINVAL);
    cr_assert_eq(meta_check(s.f.ms, -1, keep_problem, &zero, &total), CAIRN_EINVAL);
    cr_assert_eq(zero.n, 0);
    fx_close(&s.f);
}

Test(check, repair_fixes_what_metadata_alone_can_and_hands_over_the_shards) {
    broken s;
    mk_broken(&s);
    meta_store *ms = s.f.ms;
    problem_rows r = {0};
    cr_assert_eq(meta_check(ms, 100, keep_problem, &r, NULL), 0);
    cr_assert_eq(r.n, META_PROBLEM__COUNT);

    /* An upload without a bucket is aborted; its parts are handed over. */
    drops d = {0};
    const meta_problem *p = find_problem(&r, META_PROBLEM_UPLOAD_WITHOUT_BUCKET, "orphan-up");
    cr_assert_eq(meta_repair(ms, p, keep_drop, &d), 0);
    cr_assert_eq(d.n, 2);
    cr_assert(dropped(&d, s.orphan_parts[0].version_id) && dropped(&d, s.orphan_parts[1].version_id));
    cr_assert_str_eq(d.layout[0], "1+0:4096:0123456789abcdef");
    meta_upload u;
    cr_assert_eq(meta_upload_get(ms, "orphan-up", &u), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_repair(ms, p, keep_drop, &d), CAIRN_ENOTFOUND, "already repaired");
    cr_assert_eq(d.n, 2);

    /* Part rows without their upload. */
    drops lost = {0};
    p = find_problem(&r, META_PROBLEM_PARTS_WITHOUT_UPLOAD, "lost");
    cr_assert_eq(meta_repair(ms, p, keep_drop, &lost), 0);
    cr_assert_eq(lost.n, 1);
    cr_assert_str_eq(lost.version[0], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2");
    bool referenced = true;
    cr_assert_eq(meta_version_referenced(ms, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2", &referenced), 0);
    cr_assert_not(referenced);
    drops again = {0};
    cr_assert_eq(meta_repair(ms, p, keep_drop, &again), 0, "a second repair finds nothing to do");
    cr_assert_eq(again.n, 0);

    /* Part rows without their object. */
    drops gone = {0};
    p = find_problem(&r, META_PROBLEM_PARTS_WITHOUT_OBJECT, s.replaced_mp.version_id);
    cr_assert_eq(meta_repair(ms, p, keep_drop, &gone), 0);
    cr_assert_eq(gone.n, 1);
    cr_assert_str_eq(gone.version[0], s.replaced_part.version_id);
    parts_seen ps = {0};
    cr_assert_eq(meta_object_parts(ms, s.replaced_mp.version_id, see_part, &ps), 0);
    cr_assert_eq(ps.n, 0);

    /* Bytes without an object: deleted, with no shards to hand over; drop may be NULL. */
    p = find_problem(&r, META_PROBLEM_DATA_WITHOUT_OBJECT, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3");
    cr_assert_eq(meta_repair(ms, p, NULL, NULL), 0);

    /* The rest describe data that is lost or ambiguous: nothing to repair here. */
    meta_problem_kind unrepairable[] = {META_PROBLEM_OBJECT_WITHOUT_BUCKET, META_PROBLEM_MULTIPART_MISMATCH,
                                        META_PROBLEM_INLINE_WITHOUT_DATA, META_PROBLEM_DUPLICATE_VERSION};
    for (size_t i = 0; i < sizeof unrepairable / sizeof unrepairable[0]; i++) {
        const meta_problem *q = NULL;
        for (int j = 0; j < r.n && !q; j++)
            if (r.p[j].kind == unrepairable[i]) q = &r.p[j];
        cr_assert_not_null(q);
        drops none = {0};
        cr_assert_eq(meta_repair(ms, q, keep_drop, &none), CAIRN_EINVAL, "%s", meta_problem_name(q->kind));
        cr_assert_eq(none.n, 0);
    }
    problem_rows after = {0};
    int64_t total = -1;
    cr_assert_eq(meta_check(ms, 100, keep_problem, &after, &total), 0);
    cr_assert_eq(total, 4, "only the unrepairable four are left");
    for (int i = 0; i < after.n; i++)
        cr_assert(after.p[i].kind == META_PROBLEM_OBJECT_WITHOUT_BUCKET ||
                      after.p[i].kind == META_PROBLEM_MULTIPART_MISMATCH ||
                      after.p[i].kind == META_PROBLEM_INLINE_WITHOUT_DATA ||
                      after.p[i].kind == META_PROBLEM_DUPLICATE_VERSION,
                  "left: %s", meta_problem_name(after.p[i].kind));

    cr_assert_eq(meta_repair(NULL, &r.p[0], NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_repair(ms, NULL, NULL, NULL), CAIRN_EINVAL);
    meta_problem bogus = {.kind = (meta_problem_kind)99};
    strcpy(bogus.id, "live");
    cr_assert_eq(meta_repair(ms, &bogus, NULL, NULL), CAIRN_EINVAL);
    fx_close(&s.f);
}

Test(check, repair_leaves_rows_whose_owner_exists) {
    broken s;
    mk_broken(&s);
    meta_store *ms = s.f.ms;
    /* Problems as a stale report would name them, for rows that have their owner. */
    meta_problem p = {.kind = META_PROBLEM_PARTS_WITHOUT_UPLOAD};
    strcpy(p.id, "live");
    drops d = {0};
    cr_assert_eq(meta_repair(ms, &p, keep_drop, &d), 0);
    cr_assert_eq(d.n, 0, "the upload exists: its parts are not given away");
    parts_seen ps = {0};
    cr_assert_eq(meta_part_list(ms, "live", 0, 100, see_part, &ps, NULL), 0);
    cr_assert_eq(ps.n, 2);
    meta_object good;
    cr_assert_eq(meta_object_get(ms, "b", 0, "good-mp", 7, false, &good), 0);
    p.kind = META_PROBLEM_PARTS_WITHOUT_OBJECT;
    strcpy(p.id, good.version_id);
    meta_object_clear(&good);
    cr_assert_eq(meta_repair(ms, &p, keep_drop, &d), 0);
    cr_assert_eq(d.n, 0, "the object exists: its parts stay");
    parts_seen gp = {0};
    cr_assert_eq(meta_object_parts(ms, p.id, see_part, &gp), 0);
    cr_assert_eq(gp.n, 1);
    meta_object inl;
    cr_assert_eq(meta_object_get(ms, "b", 0, "ok-inline", 9, true, &inl), 0);
    p.kind = META_PROBLEM_DATA_WITHOUT_OBJECT;
    strcpy(p.id, inl.version_id);
    meta_object_clear(&inl);
    cr_assert_eq(meta_repair(ms, &p, keep_drop, &d), 0);
    cr_assert_eq(meta_object_get(ms, "b", 0, "ok-inline", 9, true, &inl), 0, "the object's bytes stay");
    cr_assert_eq(inl.data_len, 3);
    cr_assert_eq(memcmp(inl.data, "abc", 3), 0);
    meta_object_clear(&inl);
    p.kind = META_PROBLEM_UPLOAD_WITHOUT_BUCKET;
    strcpy(p.id, "no-such-upload");
    cr_assert_eq(meta_repair(ms, &p, keep_drop, &d), CAIRN_ENOTFOUND);
    cr_assert_eq(d.n, 0);
    fx_close(&s.f);
}

static int repair_from_check(void *ud, const meta_problem *p) {
    reenter *r = ud;
    int rc = meta_repair(r->ms, p, NULL, NULL);
    cr_assert(rc == 0 || rc == CAIRN_EINVAL, "%s: %d", meta_problem_name(p->kind), rc);
    r->n += rc == 0;
    return 0;
}

Test(reentry, check_callback_may_repair_with_one_reader, .timeout = 60) {
    broken s;
    mk_broken(&s);
    reenter r = {s.f.ms, 0};
    int64_t total = 0;
    cr_assert_eq(meta_check(s.f.ms, 100, repair_from_check, &r, &total), 0);
    cr_assert_eq(total, META_PROBLEM__COUNT);
    cr_assert_eq(r.n, 4, "the four repairable problems, repaired from inside the check");
    cr_assert_eq(meta_check(s.f.ms, 100, keep_problem, &(problem_rows){0}, &total), 0);
    cr_assert_eq(total, 4);
    fx_close(&s.f);
}


Test(uploads, replacing_or_deleting_a_multipart_version_trashes_its_parts_atomically) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    int64_t id = bucket_id_of(f.ms, "b");
    const char *layout = "1+0:4096:0123456789abcdef";
    const char *keys[] = {"replaced", "deleted"};
    meta_object mps[2];
    meta_part parts[2];
    for (int i = 0; i < 2; i++) {
        mk_upload(f.ms, "b", id, keys[i], keys[i]);
        parts[i] = mk_part(1, 10, layout);
        meta_part old;
        bool had;
        cr_assert_eq(meta_part_put(f.ms, keys[i], &parts[i], &old, &had), 0);
        mps[i] = mp_obj("b", id, keys[i], 10, 1);
        meta_object rep;
        bool had_rep;
        int unused = 0;
        cr_assert_eq(meta_upload_complete(f.ms, keys[i], &mps[i], &parts[i], 1, &rep, &had_rep, ignore_part, &unused), 0);
    }
    meta_object plain = mk_obj("b", "replaced", 8, 1);
    plain.bucket_id = id;
    meta_object old;
    bool had = false;
    cr_assert_eq(meta_object_put(f.ms, &plain, &old, &had), 0);
    cr_assert(had);
    cr_assert_str_eq(old.version_id, mps[0].version_id);
    meta_object_clear(&old);
    cr_assert_eq(meta_object_delete(f.ms, "b", id, "deleted", 7, &old), 0);
    cr_assert_str_eq(old.version_id, mps[1].version_id);
    meta_object_clear(&old);
    /* In the same commits: no part rows left, both parts in the trash. */
    for (int i = 0; i < 2; i++) {
        part_list pl = {0};
        cr_assert_eq(meta_object_parts(f.ms, mps[i].version_id, keep_part, &pl), 0);
        cr_assert_eq(pl.n, 0, "part rows of %s", keys[i]);
    }
    trash_seen t = {0};
    cr_assert_eq(meta_trash_list(f.ms, 10, see_trash, &t), 0);
    cr_assert_eq(t.n, 2);
    bool seen0 = false, seen1 = false;
    for (int i = 0; i < t.n; i++) {
        seen0 |= !strcmp(t.ids[i], parts[0].version_id);
        seen1 |= !strcmp(t.ids[i], parts[1].version_id);
    }
    cr_assert(seen0 && seen1);
    int64_t total = -1;
    problem_rows r = {0};
    cr_assert_eq(meta_check(f.ms, 100, keep_problem, &r, &total), 0);
    cr_assert_eq(total, 0, "nothing contradicts anything");
    fx_close(&f);
}

/* ---- foreign rows: text longer than its field is an error, never a truncation ---------------- */

/*
 * Every row reader copies TEXT columns into fixed buffers.  Inputs are length-
 * checked on the way in, so a value that does not fit was written by someone
 * else (an operator's sqlite3, a newer build): the read fails CAIRN_EDB rather
 * than hand back a cut id, key or layout that would then name other data.
 * Each case plants one such value in a store holding one row of every sort and
 * reads it back through the public call; LONG_* is 600 characters.
 */
#define LONG_SQ "hex(zeroblob(300))"
#define LONG_PG_T "repeat('0', 600)"
#define LONG_PG_B "convert_to(repeat('0', 600), 'UTF8')"
/* head, 600 characters, tail; twice that (1200) with LONG2.  _T for a
 * text column, _B for one that is bytea on PostgreSQL (keys, headers,
 * error texts). */
#define LONG_T(head, tail) head LONG_SQ tail, head LONG_PG_T tail
#define LONG_B(head, tail) head LONG_SQ tail, head LONG_PG_B tail
#define LONG2_T(head, tail) head LONG_SQ " || " LONG_SQ tail, head LONG_PG_T " || " LONG_PG_T tail
#define LONG2_B(head, tail) head LONG_SQ " || " LONG_SQ tail, head LONG_PG_B " || " LONG_PG_B tail

typedef struct {
    fx f;
    meta_user root;
    int64_t bucket_id;
    char upload_id[40];
    char done_upload_id[40];
    int64_t job_id;
} foreign_fx;

static int stop_user(void *ud, const meta_user *u) { (void)ud; (void)u; return 0; }
static int stop_key(void *ud, const meta_key *k) { (void)ud; (void)k; return 0; }
static int stop_bucket(void *ud, const meta_bucket *b) { (void)ud; (void)b; return 0; }
static int stop_node(void *ud, const meta_node *n) { (void)ud; (void)n; return 0; }
static int stop_upload(void *ud, const meta_upload *u) { (void)ud; (void)u; return 0; }
static int stop_part(void *ud, const meta_part *p) { (void)ud; (void)p; return 0; }
static int stop_trash(void *ud, const meta_trash_entry *e) { (void)ud; (void)e; return 0; }
static int stop_job(void *ud, const meta_job *j) { (void)ud; (void)j; return 0; }
static int stop_place(void *ud, const meta_placement *p) { (void)ud; (void)p; return 0; }
static int stop_problem(void *ud, const meta_problem *p) { (void)ud; (void)p; return 0; }

static void foreign_open(foreign_fx *x) {
    fx_open(&x->f, 2);
    meta_store *ms = x->f.ms;
    cr_assert_eq(meta_user_ensure_root(ms, "root", &x->root), 0);
    meta_key k = {.user_id = x->root.id, .active = true};
    strcpy(k.access_key, "AKIAFOREIGN");
    strcpy(k.sealed_secret, "sealed:v1:abc");
    cr_assert_eq(meta_key_create(ms, &k), 0);
    mk_bucket(ms, "fb", x->root.id);
    x->bucket_id = bucket_id_of(ms, "fb");
    put_key(ms, "fb", "plain", 5);
    cr_assert_eq(meta_node_upsert(ms, "n000000000000001", "http://127.0.0.1:1"), 0);
    strcpy(x->upload_id, "up-foreign-1");
    mk_upload(ms, "fb", x->bucket_id, "mp-live", x->upload_id);
    meta_part p = mk_part(1, 10, "d:0");
    put_part(ms, x->upload_id, &p);
    strcpy(x->done_upload_id, "up-foreign-2");
    mk_upload(ms, "fb", x->bucket_id, "mp-done", x->done_upload_id);
    meta_part q = mk_part(1, 10, "d:0");
    put_part(ms, x->done_upload_id, &q);
    complete_one(ms, "fb", x->bucket_id, "mp-done", x->done_upload_id, &q, 2000);
    x->job_id = enqueue_job(ms, "foreign.kind", 0, 0, NULL);
    plant(&x->f, "INSERT INTO trash(version_id, layout, added_ms) VALUES ('aaaabbbbccccdddd', 'd:0', 1)");
}

/* Plants sql (which must change exactly the rows meant), in each dialect. */
static void foreign_plant(foreign_fx *x, const char *sqlite_sql, const char *pg_sql) {
    plant2(&x->f, sqlite_sql, pg_sql);
}

Test(foreign, a_user_name_too_long_for_its_field_is_refused) {
    foreign_fx x;
    foreign_open(&x);
    meta_user u;
    foreign_plant(&x, LONG_T("UPDATE users SET display_name = ", ""));
    cr_assert_eq(meta_user_get(x.f.ms, x.root.id, &u), CAIRN_EDB, "display name");
    foreign_plant(&x, LONG_T("UPDATE users SET name = ", ""));
    cr_assert_eq(meta_user_get(x.f.ms, x.root.id, &u), CAIRN_EDB, "name");
    cr_assert_eq(meta_user_list(x.f.ms, stop_user, NULL), CAIRN_EDB);
    fx_close(&x.f);
}

Test(foreign, an_access_key_row_too_long_is_refused) {
    foreign_fx x;
    foreign_open(&x);
    meta_key k;
    foreign_plant(&x, LONG2_T("UPDATE access_keys SET sealed_secret = ", ""));
    cr_assert_eq(meta_key_get(x.f.ms, "AKIAFOREIGN", &k), CAIRN_EDB, "sealed secret");
    foreign_plant(&x, LONG_T("UPDATE access_keys SET access_key = ", ""));
    cr_assert_eq(meta_key_list(x.f.ms, -1, stop_key, NULL), CAIRN_EDB, "access key");
    fx_close(&x.f);
}

Test(foreign, a_bucket_row_too_long_is_refused) {
    foreign_fx x;
    foreign_open(&x);
    meta_bucket b;
    foreign_plant(&x, LONG_T("UPDATE buckets SET region = ", ""));
    cr_assert_eq(meta_bucket_get(x.f.ms, "fb", &b), CAIRN_EDB, "region");
    foreign_plant(&x, LONG_T("UPDATE buckets SET name = ", ""));
    cr_assert_eq(meta_bucket_list(x.f.ms, -1, stop_bucket, NULL), CAIRN_EDB, "name");
    fx_close(&x.f);
}

Test(foreign, an_object_row_too_long_is_refused) {
    foreign_fx x;
    foreign_open(&x);
    meta_object o;
    foreign_plant(&x, LONG_T("UPDATE objects SET layout = ", " WHERE key = 'plain'"));
    cr_assert_eq(meta_object_get(x.f.ms, "fb", x.bucket_id, "plain", 5, false, &o), CAIRN_EDB, "layout");
    foreign_plant(&x, LONG_T("UPDATE objects SET etag = ", " WHERE key = 'plain'"));
    cr_assert_eq(meta_object_get(x.f.ms, "fb", x.bucket_id, "plain", 5, false, &o), CAIRN_EDB, "etag");
    foreign_plant(&x, LONG_T("UPDATE objects SET version_id = ", " WHERE key = 'plain'"));
    cr_assert_eq(meta_object_get(x.f.ms, "fb", x.bucket_id, "plain", 5, false, &o), CAIRN_EDB, "version id");
    meta_place_cursor cur;
    memset(&cur, 0, sizeof cur);
    cr_assert_eq(meta_placement_scan(x.f.ms, &cur, 10, stop_place, NULL), CAIRN_EDB, "placement version id");
    fx_close(&x.f);
}

Test(foreign, a_placement_row_too_long_is_refused) {
    foreign_fx x;
    foreign_open(&x);
    foreign_plant(&x, LONG2_B("UPDATE objects SET key = ", " WHERE key = 'plain'"));
    meta_place_cursor cur;
    memset(&cur, 0, sizeof cur);
    cr_assert_eq(meta_placement_scan(x.f.ms, &cur, 10, stop_place, NULL), CAIRN_EDB, "a key over 1024 bytes");
    fx_close(&x.f);
}

Test(foreign, a_node_row_too_long_is_refused) {
    foreign_fx x;
    foreign_open(&x);
    meta_node n;
    foreign_plant(&x, LONG_B("UPDATE nodes SET last_error = ", ""));
    cr_assert_eq(meta_node_get(x.f.ms, "n000000000000001", &n), CAIRN_EDB, "last error");
    foreign_plant(&x, LONG_T("UPDATE nodes SET id = ", ""));
    cr_assert_eq(meta_node_list(x.f.ms, stop_node, NULL), CAIRN_EDB, "id");
    fx_close(&x.f);
}

Test(foreign, upload_part_and_completed_rows_too_long_are_refused) {
    foreign_fx x;
    foreign_open(&x);
    meta_completed_upload c;
    foreign_plant(&x, LONG2_B("UPDATE completed_uploads SET key = ", ""));
    cr_assert_eq(meta_upload_completed_get(x.f.ms, x.done_upload_id, &c), CAIRN_EDB, "completed key");
    foreign_plant(&x, LONG_T("UPDATE upload_parts SET etag = ", ""));
    cr_assert_eq(meta_part_list(x.f.ms, x.upload_id, 0, 10, stop_part, NULL, NULL), CAIRN_EDB, "part etag");
    foreign_plant(&x, LONG_T("UPDATE upload_parts SET version_id = ", ""));
    cr_assert_eq(meta_part_list(x.f.ms, x.upload_id, 0, 10, stop_part, NULL, NULL), CAIRN_EDB, "part version");
    foreign_plant(&x, LONG2_B("UPDATE uploads SET key = ", ""));
    meta_upload u;
    cr_assert_eq(meta_upload_get(x.f.ms, x.upload_id, &u), CAIRN_EDB, "upload key");
    foreign_plant(&x, LONG_T("UPDATE uploads SET upload_id = ", ""));
    cr_assert_eq(meta_upload_list(x.f.ms, x.bucket_id, NULL, 0, NULL, 0, NULL, 10, stop_upload, NULL, NULL),
                 CAIRN_EDB, "upload id");
    fx_close(&x.f);
}

Test(foreign, trash_and_job_rows_too_long_are_refused) {
    foreign_fx x;
    foreign_open(&x);
    foreign_plant(&x, LONG_T("UPDATE trash SET layout = ", ""));
    cr_assert_eq(meta_trash_list(x.f.ms, 10, stop_trash, NULL), CAIRN_EDB, "trash layout");
    foreign_plant(&x, LONG_T("UPDATE trash SET version_id = ", ""));
    cr_assert_eq(meta_trash_list(x.f.ms, 10, stop_trash, NULL), CAIRN_EDB, "trash version");
    meta_job j;
    foreign_plant(&x, LONG_B("UPDATE jobs SET last_error = ", ""));
    cr_assert_eq(meta_job_get(x.f.ms, x.job_id, &j), CAIRN_EDB, "job last error");
    foreign_plant(&x, LONG_T("UPDATE jobs SET kind = ", ""));
    cr_assert_eq(meta_job_list(x.f.ms, "", "", 10, stop_job, NULL), CAIRN_EDB, "job kind");
    fx_close(&x.f);
}

Test(foreign, a_problem_row_too_long_is_refused_by_check) {
    foreign_fx x;
    foreign_open(&x);
    /* An upload whose bucket is gone, under an id no cairn would make. */
    foreign_plant(&x, LONG_T("UPDATE uploads SET bucket_id = 424242, upload_id = ", " WHERE upload_id = 'up-foreign-1'"));
    int64_t total = -1;
    cr_assert_eq(meta_check(x.f.ms, 10, stop_problem, NULL, &total), CAIRN_EDB);
    fx_close(&x.f);
}

/* ---- concurrency: what S3 needs from every backend ----------------------------------------- */

/* 32 writers over 8 connections put versions of one key at once.  The last
 * commit wins, and every other version is reported as replaced to exactly
 * one writer, which would delete its bytes: nothing lost, nothing orphaned. */
#define ONE_KEY_WRITERS 32
#define ONE_KEY_PUTS 10

typedef struct {
    meta_store *ms;
    char put[ONE_KEY_PUTS][33];
    char replaced[ONE_KEY_PUTS][33];
    int nreplaced, failures;
} key_writer;

static void *key_writer_main(void *arg) {
    key_writer *w = arg;
    for (int i = 0; i < ONE_KEY_PUTS; i++) {
        meta_object o = mk_obj("c", "hot", 3, i);
        if (i % 3 == 0) { /* inline versions too: their bytes live in the database */
            o.storage = META_STORE_INLINE;
            o.size = 1;
            o.data = (uint8_t *)"x";
            o.data_len = 1;
        }
        meta_object old;
        bool had = false;
        if (meta_object_put(w->ms, &o, &old, &had) != 0) {
            w->failures++;
            continue;
        }
        strcpy(w->put[i], o.version_id);
        if (had) strcpy(w->replaced[w->nreplaced++], old.version_id);
        meta_object_clear(&old);
    }
    return NULL;
}

static int cmp_version(const void *a, const void *b) { return strcmp(a, b); }

Test(concurrency, writers_to_one_key_last_commit_wins_and_every_replaced_version_is_reported_once, .timeout = 120) {
    fx f;
    fx_open(&f, 8);
    mk_bucket(f.ms, "c", 1);
    pthread_t th[ONE_KEY_WRITERS];
    static key_writer w[ONE_KEY_WRITERS];
    for (int i = 0; i < ONE_KEY_WRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].ms = f.ms;
        cr_assert_eq(pthread_create(&th[i], NULL, key_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < ONE_KEY_WRITERS; i++) pthread_join(th[i], NULL);
    static char put[ONE_KEY_WRITERS * ONE_KEY_PUTS][33], gone[ONE_KEY_WRITERS * ONE_KEY_PUTS + 1][33];
    int nput = 0, ngone = 0;
    for (int i = 0; i < ONE_KEY_WRITERS; i++) {
        cr_assert_eq(w[i].failures, 0, "writer %d", i);
        for (int j = 0; j < ONE_KEY_PUTS; j++) strcpy(put[nput++], w[i].put[j]);
        for (int j = 0; j < w[i].nreplaced; j++) strcpy(gone[ngone++], w[i].replaced[j]);
    }
    meta_object cur;
    cr_assert_eq(meta_object_get(f.ms, "c", 0, "hot", 3, true, &cur), 0);
    strcpy(gone[ngone++], cur.version_id);
    meta_object_clear(&cur);
    /* Replaced versions plus the current one are exactly the versions put. */
    cr_assert_eq(ngone, nput, "%d reported for %d put", ngone, nput);
    qsort(put, (size_t)nput, sizeof put[0], cmp_version);
    qsort(gone, (size_t)ngone, sizeof gone[0], cmp_version);
    for (int i = 0; i < nput; i++) cr_assert_str_eq(gone[i], put[i], "version %d", i);
    cr_assert_eq(count_rows(&f, "object_data"), cur.storage == META_STORE_INLINE ? 1 : 0, "no inline bytes linger");
    int64_t total = -1;
    cr_assert_eq(meta_check(f.ms, 10, keep_problem, &(problem_rows){0}, &total), 0);
    cr_assert_eq(total, 0);
    fx_close(&f);
}

/* Part uploads of one part number race the same way. */
typedef struct {
    meta_store *ms;
    char put[ONE_KEY_PUTS][33];
    char replaced[ONE_KEY_PUTS][33];
    int nreplaced, failures;
} part_writer;

static void *part_writer_main(void *arg) {
    part_writer *w = arg;
    for (int i = 0; i < ONE_KEY_PUTS; i++) {
        meta_part p = mk_part(7, 5, "1+0:4096:0123456789abcdef"), old;
        bool had = false;
        if (meta_part_put(w->ms, "up", &p, &old, &had) != 0) {
            w->failures++;
            continue;
        }
        strcpy(w->put[i], p.version_id);
        if (had) strcpy(w->replaced[w->nreplaced++], old.version_id);
    }
    return NULL;
}

static int keep_part_version(void *ud, const meta_part *p) {
    strcpy(ud, p->version_id);
    return 0;
}

Test(concurrency, part_uploads_of_one_number_report_every_replaced_part_once, .timeout = 120) {
    fx f;
    fx_open(&f, 4);
    mk_bucket(f.ms, "c", 1);
    mk_upload(f.ms, "c", bucket_id_of(f.ms, "c"), "k", "up");
    enum { N = 16 };
    pthread_t th[N];
    static part_writer w[N];
    for (int i = 0; i < N; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].ms = f.ms;
        cr_assert_eq(pthread_create(&th[i], NULL, part_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    static char put[N * ONE_KEY_PUTS][33], gone[N * ONE_KEY_PUTS][33];
    int nput = 0, ngone = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(w[i].failures, 0, "writer %d", i);
        for (int j = 0; j < ONE_KEY_PUTS; j++) strcpy(put[nput++], w[i].put[j]);
        for (int j = 0; j < w[i].nreplaced; j++) strcpy(gone[ngone++], w[i].replaced[j]);
    }
    cr_assert_eq(meta_part_list(f.ms, "up", 0, 10, keep_part_version, gone[ngone++], NULL), 0);
    cr_assert_eq(ngone, nput);
    qsort(put, (size_t)nput, sizeof put[0], cmp_version);
    qsort(gone, (size_t)ngone, sizeof gone[0], cmp_version);
    for (int i = 0; i < nput; i++) cr_assert_str_eq(gone[i], put[i], "part version %d", i);
    fx_close(&f);
}

/* Workers claiming from one queue at once: every job is claimed exactly once. */
#define CLAIM_JOBS 200
#define CLAIMERS 8

typedef struct {
    meta_store *ms;
    int id;
    int64_t got[CLAIM_JOBS];
    int n, failures;
} claimer;

static void *claimer_main(void *arg) {
    claimer *c = arg;
    char owner[16];
    snprintf(owner, sizeof owner, "w%d", c->id);
    for (;;) {
        meta_job j;
        int rc = meta_job_claim(c->ms, owner, 5000, 600000, &j);
        if (rc == CAIRN_ENOTFOUND) break;
        if (rc != 0) {
            c->failures++;
            break;
        }
        c->got[c->n++] = j.id;
        if (meta_job_finish(c->ms, j.id, owner, "completed", 0, "") != 0) c->failures++;
        meta_job_clear(&j);
    }
    return NULL;
}

Test(concurrency, claimers_take_every_job_exactly_once, .timeout = 120) {
    fx f;
    fx_open(&f, 4);
    for (int i = 0; i < CLAIM_JOBS; i++) enqueue_job(f.ms, "k", i % 3, 1000 + i, NULL);
    pthread_t th[CLAIMERS];
    static claimer c[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].ms = f.ms;
        c[i].id = i;
        cr_assert_eq(pthread_create(&th[i], NULL, claimer_main, &c[i]), 0);
    }
    for (int i = 0; i < CLAIMERS; i++) pthread_join(th[i], NULL);
    static int seen[CLAIM_JOBS + 1];
    memset(seen, 0, sizeof seen);
    int total = 0;
    for (int i = 0; i < CLAIMERS; i++) {
        cr_assert_eq(c[i].failures, 0, "claimer %d", i);
        for (int k = 0; k < c[i].n; k++) {
            cr_assert(c[i].got[k] >= 1 && c[i].got[k] <= CLAIM_JOBS);
            seen[c[i].got[k]]++;
            total++;
        }
    }
    cr_assert_eq(total, CLAIM_JOBS);
    for (int i = 1; i <= CLAIM_JOBS; i++) cr_assert_eq(seen[i], 1, "job %d claimed %d times", i, seen[i]);
    fx_close(&f);
}

/* Puts into a bucket while it is deleted: either the delete finds it not
 * empty, or the puts find no bucket — never an object without its bucket. */
typedef struct {
    meta_store *ms;
    int id, ok, refused, failures;
} bucket_putter;

static void *bucket_putter_main(void *arg) {
    bucket_putter *p = arg;
    for (int i = 0; i < 30; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "p%d/%d", p->id, i);
        meta_object o = mk_obj("doomed", key, (size_t)len, 1);
        int rc = meta_object_put(p->ms, &o, NULL, NULL);
        if (rc == 0) p->ok++;
        else if (rc == CAIRN_ENOTFOUND) p->refused++;
        else p->failures++;
    }
    return NULL;
}

Test(concurrency, a_bucket_deleted_under_puts_never_leaves_objects_without_it, .timeout = 120) {
    fx f;
    fx_open(&f, 6);
    for (int round = 0; round < 5; round++) {
        mk_bucket(f.ms, "doomed", 1);
        enum { N = 4 };
        pthread_t th[N];
        bucket_putter p[N];
        for (int i = 0; i < N; i++) {
            p[i] = (bucket_putter){.ms = f.ms, .id = i};
            cr_assert_eq(pthread_create(&th[i], NULL, bucket_putter_main, &p[i]), 0);
        }
        /* Delete as soon as it is empty of what has been put so far. */
        int rc = CAIRN_ENOTEMPTY;
        for (int tries = 0; tries < 1000 && rc == CAIRN_ENOTEMPTY; tries++) {
            rc = meta_bucket_delete(f.ms, "doomed", 0);
            if (rc == CAIRN_ENOTEMPTY) {
                collect c = {0};
                cr_assert_eq(list_all(f.ms, "doomed", NULL, 0, NULL, 0, false, 1000, &c, NULL), 0);
                for (int i = 0; i < c.n; i++) meta_object_delete(f.ms, "doomed", 0, c.keys[i], c.lens[i], NULL);
                collect_free(&c);
            }
        }
        for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < N; i++) cr_assert_eq(p[i].failures, 0);
        /* Whatever happened, no row names a bucket that is not there. */
        int64_t total = -1;
        problem_rows pr = {0};
        cr_assert_eq(meta_check(f.ms, 16, keep_problem, &pr, &total), 0);
        cr_assert_eq(total, 0, "round %d: %s", round, pr.n ? meta_problem_name(pr.p[0].kind) : "");
        if (rc == 0) {
            int64_t n = -1;
            cr_assert_eq(meta_object_count(f.ms, "doomed", &n), 0);
            cr_assert_eq(n, 0);
        } else {
            cr_assert_eq(rc, CAIRN_ENOTEMPTY);
            collect c = {0};
            cr_assert_eq(list_all(f.ms, "doomed", NULL, 0, NULL, 0, false, 1000, &c, NULL), 0);
            for (int i = 0; i < c.n; i++) meta_object_delete(f.ms, "doomed", 0, c.keys[i], c.lens[i], NULL);
            collect_free(&c);
            cr_assert_eq(meta_bucket_delete(f.ms, "doomed", 0), 0);
        }
    }
    fx_close(&f);
}

/* ---- migrations: several processes at once, and a step that fails ------------------------- */

typedef struct {
    fx *f;
    int rc;
} migrator;

static void *migrator_main(void *arg) {
    migrator *m = arg;
    meta_store *ms = NULL;
    m->rc = fx_try_open(m->f, 1, true, &ms);
    meta_close(ms);
    return NULL;
}

Test(migrations, stores_opening_one_empty_database_at_once_run_each_step_once, .timeout = 120) {
    fx f;
    fx_make(&f, false);
    enum { N = 6 };
    pthread_t th[N];
    migrator m[N];
    for (int i = 0; i < N; i++) {
        m[i] = (migrator){.f = &f, .rc = -100};
        cr_assert_eq(pthread_create(&th[i], NULL, migrator_main, &m[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) cr_assert_eq(m[i].rc, 0, "opener %d: %s", i, cairn_strerror(m[i].rc));
    cr_assert_eq(db_number(&f, "SELECT count(*) FROM schema_migrations", NULL), meta_schema_latest());
    cr_assert_eq(db_number(&f, "SELECT count(DISTINCT version) FROM schema_migrations", NULL), meta_schema_latest());
    cr_assert_eq(count_tables(&f), 5);
    fx_close(&f);
}

Test(migrations, a_failing_step_rolls_back_whole_and_keeps_the_version_before) {
    fx f;
    fx_make(&f, false);
    cr_assert_eq(fx_try_open(&f, 1, false, &f.ms), 0);
    cr_assert_eq(meta_migrate(f.ms, 3), 0);
    /* Step 4 creates uploads, upload_parts, then object_parts: make its last
     * statement fail. */
    plant(&f, "CREATE TABLE object_parts(x INTEGER)");
    char why[1024];
    cr_assert_eq(meta_migrate_to(f.ms, meta_schema_latest(), why, sizeof why), CAIRN_EDB);
    cr_expect(strstr(why, "migration 4 (multipart uploads and parts) failed up: ") && strstr(why, "object_parts") &&
                  strstr(why, "already exists"),
              "the error names the step and the database's reason: %s", why);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, 3, "step 4 is not recorded");
    cr_assert_eq(db_number(&f, "SELECT count(*) FROM sqlite_master WHERE name = 'uploads'",
                           "SELECT count(*) FROM information_schema.tables WHERE table_name = 'uploads'"),
                 0, "the tables step 4 made before failing are gone with it");
    plant(&f, "DROP TABLE object_parts");
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest()), 0);
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_assert_eq(v, meta_schema_latest());
    fx_close(&f);
}

/* Real processes, not threads: each child opens the store (migrating) once
 * all of them are ready, as gateways started together do. */
Test(migrations, processes_opening_one_empty_database_at_once_run_each_step_once, .timeout = 120) {
    fx f;
    fx_make(&f, false);
    enum { N = 6 };
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        cr_assert_geq(kids[i], 0);
        if (kids[i] == 0) {
            close(go[1]);
            char c;
            (void)!read(go[0], &c, 1); /* returns when the parent closes its end: all start at once */
            meta_store *ms = NULL;
            int rc = fx_try_open(&f, 1, true, &ms);
            meta_close(ms);
            _exit(rc == 0 ? 0 : 10 - rc);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < N; i++) {
        int status = 0;
        cr_assert_eq(waitpid(kids[i], &status, 0), kids[i]);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d: status %#x", i, status);
    }
    cr_assert_eq(db_number(&f, "SELECT count(*) FROM schema_migrations", NULL), meta_schema_latest());
    cr_assert_eq(db_number(&f, "SELECT count(DISTINCT version) FROM schema_migrations", NULL), meta_schema_latest());
    cr_assert_eq(db_number(&f, "SELECT count(*) FROM schema_migrations WHERE length(checksum) = 64", NULL),
                 meta_schema_latest());
    cr_assert_eq(count_tables(&f), 5);
    fx_close(&f);
}

/* ---- migrations: up, down and up again at every step, and the schema each leaves -------------- */

/* Every row of every column the query returns, as text: "a|b\n" a row. */
static void db_text(const fx *f, const char *sqlite_sql, const char *pg_sql, buf_t *out) {
    buf_reset(out);
    if (on_pg()) {
        PGconn *c = pg_connect(f->db);
        PGresult *r = PQexec(c, pg_sql);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", pg_sql, PQerrorMessage(c));
        for (int i = 0; i < PQntuples(r); i++) {
            for (int j = 0; j < PQnfields(r); j++) buf_printf(out, "%s%s", j ? "|" : "", PQgetvalue(r, i, j));
            buf_putc(out, '\n');
        }
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sqlite_sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sqlite_sql,
                 sqlite3_errmsg(db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int j = 0; j < sqlite3_column_count(st); j++) {
            const unsigned char *t = sqlite3_column_text(st, j);
            buf_printf(out, "%s%s", j ? "|" : "", t ? (const char *)t : "NULL");
        }
        buf_putc(out, '\n');
    }
    cr_assert_eq(rc, SQLITE_DONE, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/*
 * The schema as text.  SQLite: every row of sqlite_schema but rootpage (the
 * statements that made each table, index and trigger, as SQLite keeps
 * them).  PostgreSQL: the catalog's view of the tables in the schema: each
 * column with its position among the live ones, type, nullability, default
 * and collation; each index's and constraint's definition; each sequence
 * and the column that owns it.  (Column positions are ranks, not attnum:
 * a column dropped and added again leaves a hole PostgreSQL never reuses,
 * which changes no behaviour and which pg_dump does not show either.)
 */
static void schema_dump(const fx *f, buf_t *out) {
    db_text(f, "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name",
            "SELECT line FROM ("
            " SELECT 'column ' || c.relname || '.' || a.attname"
            "  || ' #' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)"
            "  || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
            "  || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')"
            "  || coalesce(' collate ' || co.collname, '') AS line"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
            " LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            " UNION ALL"
            " SELECT 'index ' || pg_get_indexdef(i.indexrelid)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema()"
            " UNION ALL"
            " SELECT 'constraint ' || c.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)"
            " FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema()"
            " UNION ALL"
            " SELECT 'sequence ' || s.relname || ' ' || format_type(q.seqtypid, NULL)"
            "  || coalesce(' owned by ' || t.relname || '.' || ta.attname, '')"
            " FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace JOIN pg_sequence q ON q.seqrelid = s.oid"
            " LEFT JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = s.oid"
            "  AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')"
            " LEFT JOIN pg_class t ON t.oid = dep.refobjid"
            " LEFT JOIN pg_attribute ta ON ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid"
            " WHERE n.nspname = current_schema() AND s.relkind = 'S'"
            ") x ORDER BY line",
            out);
    cr_assert_gt(out->len, 0, "an empty dump compares equal to anything");
}

/* "table=rows;" for every table of the schema but the bookkeeping. */
static void row_counts(const fx *f, buf_t *out) {
    buf_t tables;
    buf_init(&tables);
    db_text(f,
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name <> 'schema_migrations' ORDER BY name",
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name <> 'schema_migrations' ORDER BY table_name",
            &tables);
    buf_reset(out);
    char *save = NULL;
    for (char *t = tables.len ? strtok_r(tables.data, "\n", &save) : NULL; t; t = strtok_r(NULL, "\n", &save))
        buf_printf(out, "%s=%d;", t, count_rows(f, t));
    buf_free(&tables);
}

/* Whether every "table=n;" of sub is in all (the same table, the same rows). */
static bool counts_within(const char *sub, const char *all) {
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", sub);
    char *save = NULL;
    for (char *e = strtok_r(tmp, ";", &save); e; e = strtok_r(NULL, ";", &save)) {
        char want[160];
        snprintf(want, sizeof want, "%s;", e);
        /* table names are distinct and none is a suffix of another here */
        if (!strstr(all, want)) return false;
    }
    return true;
}

/* Rows for the tables of version v, in SQL both dialects take (booleans as
 * true/false, bytea from text literals); ON CONFLICT DO NOTHING, so seeding
 * a version twice adds nothing. */
static const char *const seed_rows[] = {
    [1] = "INSERT INTO users(name, created_ms) VALUES ('u1', 1) ON CONFLICT DO NOTHING;"
          "INSERT INTO access_keys(access_key, user_id, sealed_secret, active, created_ms)"
          " SELECT 'AK1', id, 'sealed', true, 1 FROM users WHERE name = 'u1' ON CONFLICT DO NOTHING;"
          "INSERT INTO buckets(name, owner_id, created_ms, public_read) VALUES ('b1', 1, 1, false)"
          " ON CONFLICT DO NOTHING;"
          "INSERT INTO objects(bucket, key, version_id, size, etag, mtime_ms, owner_id, storage)"
          " VALUES ('b1', 'k1', 'v1', 1, 'e', 1, 1, 0) ON CONFLICT DO NOTHING;"
          "INSERT INTO object_data(version_id, data) VALUES ('v1', 'x') ON CONFLICT DO NOTHING;",
    [2] = "INSERT INTO objects(bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, layout)"
          " VALUES ('b1', 'k2', 'v2', 1, 'e', 1, 1, 1, '4+2:1:d') ON CONFLICT DO NOTHING;",
    [3] = "INSERT INTO nodes(id, url, added_ms) VALUES ('n1', 'http://n1', 1) ON CONFLICT DO NOTHING;",
    [4] = "INSERT INTO uploads(upload_id, bucket, key, owner_id, initiated_ms) VALUES ('up1', 'b1', 'k3', 1, 1)"
          " ON CONFLICT DO NOTHING;"
          "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms)"
          " VALUES ('up1', 1, 'pv1', 1, 'e', 'l', 1) ON CONFLICT DO NOTHING;"
          "INSERT INTO object_parts(version_id, part_number, \"offset\", size, etag, part_version_id, layout)"
          " VALUES ('v2', 1, 0, 1, 'e', 'pv0', 'l') ON CONFLICT DO NOTHING;",
    [5] = "INSERT INTO jobs(kind, run_at_ms, created_ms, unique_key) VALUES ('noop', 1, 1, 'j1')"
          " ON CONFLICT DO NOTHING;",
    [6] = "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms)"
          " VALUES ('up1', 2, 'pv2', 1, 'e', 'l', 1) ON CONFLICT DO NOTHING;",
    [7] = "INSERT INTO buckets(name, owner_id, created_ms) VALUES ('b7', 1, 7) ON CONFLICT DO NOTHING;"
          "INSERT INTO uploads(upload_id, bucket, bucket_id, key, owner_id, initiated_ms)"
          " VALUES ('up7', 'b7', (SELECT id FROM buckets WHERE name = 'b7'), 'k7', 1, 7) ON CONFLICT DO NOTHING;",
    [8] = "INSERT INTO completed_uploads(upload_id, bucket_id, key, version_id, etag, completed_ms)"
          " VALUES ('up8', 1, 'k8', 'v8', 'e', 8) ON CONFLICT DO NOTHING;",
    [9] = "INSERT INTO trash(version_id, layout, added_ms) VALUES ('t9', 'l', 9) ON CONFLICT DO NOTHING;",
    [10] = "INSERT INTO leases(name, holder, acquired_ms, expires_ms) VALUES ('scrub', 'gw', 10, 20)"
           " ON CONFLICT DO NOTHING;",
    [11] = "INSERT INTO audit_events(event_id, time_us, request_id, correlation_id, principal, user_name,"
           " source_address, action, bucket, key, version_id, outcome, status, error_code, bytes_in, bytes_out,"
           " duration_us) VALUES ('0123456789abcdef0123456789abcdef', 11, 'r', 'c', 'p', '', '', 's3:GetObject',"
           " 'b1', 'k1', '', 'success', 200, '', 0, 0, 1) ON CONFLICT DO NOTHING;",
    [12] = "INSERT INTO notify_targets(name, url, secret, max_attempts, created_ms)"
           " VALUES ('t12', 'http://t', '', 3, 12) ON CONFLICT DO NOTHING;"
           "INSERT INTO bucket_notifications(bucket_id, config) VALUES (1, '[]') ON CONFLICT DO NOTHING;",
    [13] = "INSERT INTO bucket_configs(bucket_id, kind, body, updated_ms) VALUES (1, 'cors', '{}', 13)"
           " ON CONFLICT DO NOTHING;",
    [14] = "INSERT INTO buckets(name, owner_id, created_ms, versioning, object_lock) VALUES ('b14', 1, 14, 1, true)"
           " ON CONFLICT DO NOTHING;",
    [15] = "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms, checksum)"
           " VALUES ('up1', 15, 'pv15', 1, 'e', 'l', 15, 'crc32:AAAAAA==') ON CONFLICT DO NOTHING;"
           "INSERT INTO object_parts(version_id, part_number, \"offset\", size, etag, part_version_id, layout, checksum)"
           " VALUES ('v2', 15, 1, 1, 'e', 'pv15o', 'l', 'sha1:x') ON CONFLICT DO NOTHING;",
    [16] = "INSERT INTO rate_limits(scope, name, ops_per_s, bytes_per_s, updated_ms) VALUES ('key', 'AK16', 16, 0, 16)"
           " ON CONFLICT DO NOTHING;",
    /* 60 bytes of sealed material: a 60-character literal is 60 bytes as a bytea and as SQLite text. */
    [17] = "INSERT INTO kms_keys(id, description, created_ms) VALUES ('k17', 'd', 17) ON CONFLICT DO NOTHING;"
           "INSERT INTO kms_key_versions(key_id, version, sealed, created_ms)"
           " VALUES ('k17', 1, '012345678901234567890123456789012345678901234567890123456789', 17)"
           " ON CONFLICT DO NOTHING;",
    [18] = "INSERT INTO audit_outbox(id, origin, time_ms, event) VALUES (18, 'gw', 18, '{}') ON CONFLICT DO NOTHING;",
};

/*
 * What CI runs for every migration, on both backends: up, down and up
 * again, with rows in the tables.  The schema after up-down-up must be the
 * schema after the first up, and the rows of the tables the step did not
 * make must survive its down and its up.  At the end, the schema of a
 * database migrated this way must equal that of one migrated up once.
 */
Test(migrations, every_step_goes_up_down_and_up_again_with_rows_and_leaves_the_same_schema, .timeout = 300) {
    int latest = meta_schema_latest();
    cr_assert_eq((int)(sizeof seed_rows / sizeof seed_rows[0]), latest + 1,
                 "a new migration needs rows for its tables in seed_rows");
    fx f, once;
    fx_make(&f, false);
    fx_make(&once, false);
    cr_assert_eq(fx_try_open(&f, 1, false, &f.ms), 0);
    buf_t first, again, before_down, after_down, after_up;
    buf_init(&first);
    buf_init(&again);
    buf_init(&before_down);
    buf_init(&after_down);
    buf_init(&after_up);
    char why[1024];
    for (int v = 1; v <= latest; v++) {
        cr_assert_eq(meta_migrate_to(f.ms, v, why, sizeof why), 0, "up to %d: %s", v, why);
        plant(&f, seed_rows[v]);
        schema_dump(&f, &first);
        row_counts(&f, &before_down);

        cr_assert_eq(meta_migrate_to(f.ms, v - 1, why, sizeof why), 0, "down from %d with rows: %s", v, why);
        row_counts(&f, &after_down);
        cr_expect(counts_within(after_down.data ? after_down.data : "", before_down.data),
                  "down from %d changed the rows of the tables before it: %s, was %s", v, after_down.data, before_down.data);

        cr_assert_eq(meta_migrate_to(f.ms, v, why, sizeof why), 0, "up to %d again: %s", v, why);
        schema_dump(&f, &again);
        cr_assert_str_eq(again.data, first.data, "version %d: the schema after up, down and up differs from the "
                         "schema after up", v);
        row_counts(&f, &after_up);
        cr_expect(counts_within(after_down.data ? after_down.data : "", after_up.data),
                  "up to %d again changed the rows of the tables before it: %s, was %s", v, after_up.data, after_down.data);
        plant(&f, seed_rows[v]); /* the rows this step's own tables lost */
    }
    meta_close(f.ms);
    f.ms = NULL;

    cr_assert_eq(fx_try_open(&once, 1, true, &once.ms), 0);
    schema_dump(&once, &first);
    schema_dump(&f, &again);
    cr_assert_str_eq(again.data, first.data, "up-down-up at every step leaves another schema than one up");
    /* And the store works on it: the rows seeded are there. */
    cr_assert_eq(fx_try_open(&f, 1, true, &f.ms), 0);
    meta_bucket b;
    cr_expect_eq(meta_bucket_get(f.ms, "b7", &b), 0);
    cr_expect_eq(meta_bucket_get(f.ms, "b1", &b), 0);
    buf_free(&first);
    buf_free(&again);
    buf_free(&before_down);
    buf_free(&after_down);
    buf_free(&after_up);
    fx_close(&once);
    fx_close(&f);
}

/* ---- migrations: checksums and drift ------------------------------------------------------- */

static meta_backend backend_under_test(void) { return on_pg() ? META_BACKEND_POSTGRES : META_BACKEND_SQLITE; }

/* Opens the test's store by URL on either backend, so why says what failed. */
static int fx_open_why(fx *f, bool migrate, meta_store **out, char *why, size_t whylen) {
    meta_options o = test_options(1);
    meta_pg_options po = test_pg_options(1);
    o.pg = &po;
    char url[600];
    if (on_pg()) snprintf(url, sizeof url, "%s", f->url);
    else snprintf(url, sizeof url, "sqlite://%s", f->path);
    return meta_open_url(url, NULL, &o, migrate, out, why, whylen);
}

/* meta_migration_status, collected: states[v] and how many versions came. */
typedef struct {
    int n, last;
    meta_migration_state states[64];
    char names[64][129];
    char recorded[64][65];
} mig_status;

static int mig_status_cb(void *ud, const meta_migration_info *m) {
    mig_status *st = ud;
    cr_assert(m->version > st->last && m->version < 64, "versions come in order: %d after %d", m->version, st->last);
    st->last = m->version;
    st->n++;
    st->states[m->version] = m->state;
    snprintf(st->names[m->version], sizeof st->names[0], "%s", m->name ? m->name : "");
    snprintf(st->recorded[m->version], sizeof st->recorded[0], "%s", m->recorded);
    if (m->version <= meta_schema_latest()) {
        char want[65];
        cr_assert_eq(meta_migration_checksum(backend_under_test(), m->version, want), 0);
        cr_assert_str_eq(m->expected, want);
    } else {
        cr_assert_str_eq(m->expected, "");
    }
    if (m->state == META_MIG_PENDING || m->version <= meta_schema_latest())
        cr_assert_eq(m->applied_ms > 0, m->state != META_MIG_PENDING, "version %d: applied_ms %lld in state %d",
                     m->version, (long long)m->applied_ms, m->state);
    return 0;
}

static mig_status status_of(meta_store *ms) {
    mig_status st;
    memset(&st, 0, sizeof st);
    cr_assert_eq(meta_migration_status(ms, mig_status_cb, &st), 0);
    return st;
}

/* The checksum recorded for version v, read with the backend's own client. */
static void recorded_checksum(const fx *f, int v, char out[65]) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT checksum FROM schema_migrations WHERE version = %d", v);
    out[0] = '\0';
    if (on_pg()) {
        PGconn *c = pg_connect(f->db);
        PGresult *r = PQexec(c, sql);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
        if (PQntuples(r) == 1) snprintf(out, 65, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW) snprintf(out, 65, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

Test(migrations, every_applied_step_is_recorded_with_the_sha256_of_its_up_text) {
    fx f;
    fx_make(&f, false);
    cr_assert_eq(fx_try_open(&f, 1, true, &f.ms), 0);
    int latest = meta_schema_latest();
    for (int v = 1; v <= latest; v++) {
        char want[65], got[65];
        cr_assert_eq(meta_migration_checksum(backend_under_test(), v, want), 0);
        cr_assert_eq(strlen(want), 64);
        recorded_checksum(&f, v, got);
        cr_expect_str_eq(got, want, "version %d", v);
    }
    /* The checksum is of this backend's text, and known to the tests: the
     * SHA-256 of the empty string would mean no text was hashed. */
    char a[65], b[65];
    cr_assert_eq(meta_migration_checksum(META_BACKEND_SQLITE, 3, a), 0);
    cr_assert_eq(meta_migration_checksum(META_BACKEND_POSTGRES, 3, b), 0);
    cr_expect_str_neq(a, b, "each dialect's own text");
    cr_expect_str_neq(a, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_expect_eq(meta_migration_checksum(META_BACKEND_SQLITE, 0, a), CAIRN_EINVAL);
    cr_expect_eq(meta_migration_checksum(META_BACKEND_SQLITE, latest + 1, a), CAIRN_EINVAL);
    cr_expect_null(meta_migration_sql(META_BACKEND_POSTGRES, latest + 1, true));
    cr_expect_not_null(strstr(meta_migration_sql(META_BACKEND_POSTGRES, 3, true), "CREATE TABLE nodes"));
    cr_expect_str_eq(meta_migration_sql(META_BACKEND_SQLITE, 3, false), "DROP TABLE nodes;");

    mig_status st = status_of(f.ms);
    cr_assert_eq(st.n, latest);
    for (int v = 1; v <= latest; v++) cr_expect_eq(st.states[v], META_MIG_OK, "version %d", v);
    /* Down to 5: 6 and later are pending again, their rows gone. */
    cr_assert_eq(meta_migrate(f.ms, 5), 0);
    st = status_of(f.ms);
    for (int v = 1; v <= latest; v++) cr_expect_eq(st.states[v], v <= 5 ? META_MIG_OK : META_MIG_PENDING, "v %d", v);
    cr_assert_eq(meta_migration_status(NULL, mig_status_cb, &st), CAIRN_EINVAL);
    cr_assert_eq(meta_migration_status(f.ms, NULL, NULL), CAIRN_EINVAL);
    fx_close(&f);
}

/* An applied migration whose text has changed since (here: its recorded
 * checksum altered, as a binary with an edited migration would see it)
 * stops the start, and the error names it; nothing is migrated. */
Test(migrations, a_changed_migration_stops_the_start_and_names_the_migration) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "kept", 1);
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest() - 2), 0);
    meta_close(f.ms);
    f.ms = NULL;
    char saved[65];
    recorded_checksum(&f, 4, saved);
    plant(&f, "UPDATE schema_migrations SET checksum = "
              "'0000000000000000000000000000000000000000000000000000000000000000' WHERE version = 4");

    char why[1024] = "";
    meta_store *ms = (meta_store *)1;
    cr_assert_eq(fx_open_why(&f, true, &ms, why, sizeof why), CAIRN_EDB);
    cr_assert_null(ms);
    cr_expect(strstr(why, "migration 4 (multipart uploads and parts) has changed since it was applied: the database "
                          "recorded checksum 000000000000, this binary's is ") != NULL,
              "%s", why);
    cr_expect(strstr(why, on_pg() ? "postgres: " : "/meta.db: ") == why || strstr(why, "/meta.db: migration 4"),
              "%s", why);

    /* Opened without migrating: every migration refuses, up or down, and
     * the status names the changed one; nothing moved. */
    cr_assert_eq(fx_open_why(&f, false, &f.ms, why, sizeof why), 0, "%s", why);
    cr_expect_eq(meta_migrate_to(f.ms, meta_schema_latest(), why, sizeof why), CAIRN_EDB);
    cr_expect(strstr(why, "migration 4 (multipart uploads and parts) has changed since it was applied") == why, "%s",
              why);
    cr_expect_eq(meta_migrate_to(f.ms, 0, why, sizeof why), CAIRN_EDB);
    cr_expect_eq(meta_migrate(f.ms, 5), CAIRN_EDB);
    int v = -1;
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_expect_eq(v, meta_schema_latest() - 2);
    mig_status st = status_of(f.ms);
    for (int i = 1; i <= meta_schema_latest(); i++)
        cr_expect_eq(st.states[i], i == 4 ? META_MIG_CHANGED : i <= v ? META_MIG_OK : META_MIG_PENDING, "v %d", i);
    cr_expect_str_eq(st.recorded[4], "0000000000000000000000000000000000000000000000000000000000000000");
    meta_close(f.ms);
    f.ms = NULL;

    /* Put back, it opens and migrates as before, the data kept. */
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE schema_migrations SET checksum = '%s' WHERE version = 4", saved);
    plant(&f, sql);
    cr_assert_eq(fx_open_why(&f, true, &f.ms, why, sizeof why), 0, "%s", why);
    cr_assert_eq(meta_schema_version(f.ms, &v), 0);
    cr_expect_eq(v, meta_schema_latest());
    meta_bucket b;
    cr_expect_eq(meta_bucket_get(f.ms, "kept", &b), 0);
    fx_close(&f);
}

/* A database whose schema_migrations predates checksums (no such column):
 * its status reads, and the next migration adds the column and records
 * this binary's checksums in place.  A row an older binary adds later
 * (no checksum) is filled the same way. */
Test(migrations, a_database_from_before_checksums_upgrades_in_place) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "kept", 1);
    meta_close(f.ms);
    f.ms = NULL;
    plant2(&f,
           "CREATE TABLE old_sm(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL);"
           "INSERT INTO old_sm SELECT version, name, applied_ms FROM schema_migrations;"
           "DROP TABLE schema_migrations; ALTER TABLE old_sm RENAME TO schema_migrations;",
           "ALTER TABLE schema_migrations DROP COLUMN checksum");
    cr_assert_eq(fx_open_why(&f, false, &f.ms, NULL, 0), 0);
    mig_status st = status_of(f.ms);
    cr_assert_eq(st.n, meta_schema_latest());
    for (int v = 1; v <= meta_schema_latest(); v++) {
        cr_expect_eq(st.states[v], META_MIG_UNRECORDED, "version %d", v);
        cr_expect_str_eq(st.recorded[v], "");
    }
    meta_close(f.ms);
    f.ms = NULL;

    char why[1024] = "";
    cr_assert_eq(fx_open_why(&f, true, &f.ms, why, sizeof why), 0, "%s", why);
    st = status_of(f.ms);
    for (int v = 1; v <= meta_schema_latest(); v++) cr_expect_eq(st.states[v], META_MIG_OK, "version %d", v);
    meta_bucket b;
    cr_expect_eq(meta_bucket_get(f.ms, "kept", &b), 0);
    /* What an older binary would record: no checksum (the column's default). */
    cr_assert_eq(meta_migrate(f.ms, meta_schema_latest() - 1), 0);
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO schema_migrations(version, name, applied_ms) VALUES (%d, 'x', 1)",
             meta_schema_latest());
    meta_close(f.ms);
    f.ms = NULL;
    plant(&f, sql);
    /* ...and the schema that step made: its own up text. */
    plant2(&f, meta_migration_sql(META_BACKEND_SQLITE, meta_schema_latest(), true),
           meta_migration_sql(META_BACKEND_POSTGRES, meta_schema_latest(), true));
    cr_assert_eq(fx_open_why(&f, false, &f.ms, NULL, 0), 0);
    st = status_of(f.ms);
    cr_expect_eq(st.states[meta_schema_latest()], META_MIG_UNRECORDED);
    cr_assert_eq(meta_migrate_to(f.ms, meta_schema_latest(), why, sizeof why), 0, "%s", why);
    st = status_of(f.ms);
    cr_expect_eq(st.states[meta_schema_latest()], META_MIG_OK);
    fx_close(&f);
}

/* The bookkeeping cannot be brought up to date (schema_migrations is not a
 * table one can add a column to): nothing runs, and why says so. */
Test(migrations, a_migration_table_that_cannot_gain_checksums_stops_migrating) {
    fx f;
    fx_make(&f, false);
    plant(&f, "CREATE VIEW schema_migrations AS SELECT 1 AS version, 'x' AS name, 0 AS applied_ms");
    cr_assert_eq(fx_try_open(&f, 1, false, &f.ms), 0);
    char why[1024];
    cr_assert_eq(meta_migrate_to(f.ms, meta_schema_latest(), why, sizeof why), CAIRN_EDB);
    cr_expect(strstr(why, "the migration table cannot gain its checksum column: ") == why, "%s", why);
    cr_expect_eq(count_tables(&f), 0);
    fx_close(&f);
}

/* A database newer than this binary: status lists the version it does not
 * know under its recorded name, and opening says why it refuses. */
Test(migrations, a_newer_schema_is_listed_and_refused_with_the_reason) {
    fx f;
    fx_open(&f, 1);
    meta_close(f.ms);
    f.ms = NULL;
    plant_future_version(&f);
    char why[1024] = "";
    meta_store *ms = NULL;
    cr_assert_eq(fx_open_why(&f, true, &ms, why, sizeof why), CAIRN_EDB);
    char want[160];
    snprintf(want, sizeof want, "the schema is at version %d, newer than this binary's %d: refusing",
             meta_schema_latest() + 1, meta_schema_latest());
    cr_expect(strstr(why, want) != NULL, "%s", why);
    cr_assert_eq(fx_open_why(&f, false, &f.ms, why, sizeof why), 0);
    mig_status st = status_of(f.ms);
    cr_assert_eq(st.n, meta_schema_latest() + 1);
    cr_expect_eq(st.states[meta_schema_latest() + 1], META_MIG_UNKNOWN);
    cr_expect_str_eq(st.names[meta_schema_latest() + 1], "future");
    cr_expect_eq(meta_migrate_to(f.ms, 0, why, sizeof why), CAIRN_EDB);
    snprintf(want, sizeof want, "the schema is at version %d, which this binary does not know: it cannot migrate down",
             meta_schema_latest() + 1);
    cr_expect(strstr(why, want) == why, "%s", why);
    fx_close(&f);
}

/* Keys are bytes: ones that are not UTF-8 round-trip and list in byte order. */
Test(meta, keys_that_are_not_utf8_round_trip_in_byte_order) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    const char *keys[] = {"a\xff", "a\x80z", "a", "a\xc3\x28", "\xfe\xff", "B", "_b"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) put_key(f.ms, "b", keys[i], strlen(keys[i]));
    collect c = {0};
    cr_assert_eq(list_all(f.ms, "b", NULL, 0, NULL, 0, false, 100, &c, NULL), 0);
    const char *want[] = {"B", "_b", "a", "a\x80z", "a\xc3\x28", "a\xff", "\xfe\xff"};
    cr_assert_eq(c.n, 7);
    for (int i = 0; i < 7; i++) cr_assert(key_is(&c, i, want[i], strlen(want[i])), "position %d", i);
    collect_free(&c);
    cr_assert_eq(list_all(f.ms, "b", "a\xff", 2, NULL, 0, false, 100, &c, NULL), 0);
    cr_assert_eq(c.n, 1, "a prefix ending in 0xFF has no successor: the scan runs to the end");
    collect_free(&c);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "a\x80z", 3, false, &got), 0);
    cr_assert_eq(memcmp(got.key, "a\x80z", 3), 0);
    meta_object_clear(&got);
    fx_close(&f);
}

/* ---- the PostgreSQL backend's pool, timeouts and reconnects --------------------------------- */

static void fx_open_pg(fx *f, const meta_pg_options *po) {
    fx_make(f, true);
    meta_options o = test_options(1);
    o.pg = po;
    char why[512];
    cr_assert_eq(meta_open_url(f->url, NULL, &o, true, &f->ms, why, sizeof why), 0, "%s", why);
}

/* How many of the store's connections (application_name cairn) match cond. */
static long long store_backends(const fx *f, const char *cond) {
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'cairn'%s%s", f->db,
             cond ? " AND " : "", cond ? cond : "");
    return pg_do("postgres", sql);
}

/* Polls (deadline 10 s) until n of the store's connections wait on a lock. */
static void wait_lock_waiters(const fx *f, int n) {
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end; usleep(5000))
        if (store_backends(f, "wait_event_type = 'Lock'") >= n) return;
    cr_assert_fail("no %d connection(s) of the store came to wait on the lock", n);
}

/* Terminates every connection of the store and waits until they are gone. */
static void kill_store_backends(const fx *f) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s'"
             " AND application_name = 'cairn'", f->db);
    pg_do("postgres", sql);
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end; usleep(5000))
        if (store_backends(f, NULL) == 0) return;
    cr_assert_fail("the store's connections did not go");
}

/* Another session holding a row lock until blocker_end: sql locks it. */
static PGconn *blocker_begin(const fx *f, const char *sql) {
    PGconn *b = pg_connect(f->db);
    PGresult *r = PQexec(b, "BEGIN");
    PQclear(r);
    r = PQexec(b, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(b));
    cr_assert_eq(PQntuples(r), 1, "%s locks one row", sql);
    PQclear(r);
    return b;
}

static void blocker_end(PGconn *b) {
    PGresult *r = PQexec(b, "ROLLBACK");
    PQclear(r);
    PQfinish(b);
}

typedef struct {
    meta_store *ms;
    const char *key;
    int rc;
} bg_put;

static void *bg_put_main(void *arg) {
    bg_put *p = arg;
    meta_object o = mk_obj("b", p->key, strlen(p->key), 1);
    p->rc = meta_object_put(p->ms, &o, NULL, NULL);
    return NULL;
}

Test(pg, pool_options_are_checked_and_the_defaults_open) {
    PG_ONLY();
    meta_pg_options d;
    meta_pg_options_default(&d);
    cr_assert_eq(d.min_conns, 1);
    cr_assert_eq(d.max_conns, 8);
    cr_assert_eq(d.acquire_timeout_ms, 2000);
    cr_assert_eq(d.statement_timeout_ms, 5000);
    fx f;
    fx_make(&f, true);
    meta_pg_options bad[8];
    for (int i = 0; i < 8; i++) bad[i] = d;
    bad[0].max_conns = 0;
    bad[1].max_conns = 1001;
    bad[2].min_conns = -1;
    bad[3].min_conns = 9;
    bad[4].acquire_timeout_ms = -1;
    bad[5].statement_timeout_ms = -5;
    bad[6].lifetime_jitter_pct = 51;
    bad[7].lifetime_jitter_pct = -1;
    const char *why_want[8] = {"max_conns", "max_conns", "min_conns", "min_conns", "negative", "negative",
                               "jitter", "jitter"};
    for (int i = 0; i < 8; i++) {
        meta_options o = test_options(1);
        o.pg = &bad[i];
        meta_store *ms = (meta_store *)1;
        char why[256] = "";
        cr_expect_eq(meta_open_url(f.url, NULL, &o, true, &ms, why, sizeof why), CAIRN_EINVAL, "case %d", i);
        cr_expect_null(ms);
        cr_expect(strstr(why, why_want[i]) != NULL, "case %d: %s", i, why);
    }
    /* No options at all: the defaults. */
    char why[256];
    cr_assert_eq(meta_open_url(f.url, NULL, NULL, true, &f.ms, why, sizeof why), 0, "%s", why);
    cr_assert_str_eq(meta_backend_name(f.ms), "postgres");
    cr_assert_eq(meta_ping(f.ms), 0);
    mk_bucket(f.ms, "b", 1);
    pg_pool_stats st;
    pg_pool_stats_get(f.ms, &st);
    cr_assert_eq(st.open, 1, "min_conns of the defaults, and no more for one caller");
    cr_assert_eq(st.in_use, 0);
    cr_assert_eq(st.idle, 1);
    cr_assert_geq(st.acquires, 3);
    cr_assert_eq(st.connects, 1);
    fx_close(&f);
}

Test(pg, a_server_that_is_not_there_or_a_missing_database_is_an_io_error) {
    PG_ONLY();
    cr_assert_eq(core_init(), 0);
    meta_store *ms = (meta_store *)1;
    char why[512];
    cr_assert_eq(meta_open_url("postgres://cairn:hunter2@127.0.0.1:1/x?connect_timeout=2", NULL, NULL, true, &ms, why,
                               sizeof why),
                 CAIRN_EIO);
    cr_assert_null(ms);
    cr_assert(strstr(why, "postgres: ") == why && strstr(why, "port 1") && !strstr(why, "hunter2"), "%s", why);
    char url[512];
    pg_url("no_such_database_here", url, sizeof url);
    cr_assert_eq(meta_open_url(url, NULL, NULL, true, &ms, why, sizeof why), CAIRN_EIO);
    cr_assert(strstr(why, "no_such_database_here") && strstr(why, "does not exist"), "%s", why);
}

Test(pg, a_statement_past_its_timeout_is_etimedout_and_changes_nothing, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.statement_timeout_ms = 200;
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    meta_object v1 = mk_obj("b", "k", 1, 1);
    cr_assert_eq(meta_object_put(f.ms, &v1, NULL, NULL), 0);
    PGconn *b = blocker_begin(&f, "SELECT 1 FROM objects WHERE key = 'k' FOR UPDATE");
    meta_object v2 = mk_obj("b", "k", 1, 2);
    bool had = true;
    cr_assert_eq(meta_object_put(f.ms, &v2, NULL, &had), CAIRN_ETIMEDOUT);
    cr_assert_not(had);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "k", 1, NULL), CAIRN_ETIMEDOUT);
    blocker_end(b);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, v1.version_id, "the timed-out put was rolled back");
    meta_object_clear(&got);
    pg_pool_stats st;
    pg_pool_stats_get(f.ms, &st);
    cr_assert_geq(st.errors, 2, "each timeout is an error, logged");
    cr_assert_eq(meta_object_put(f.ms, &v2, NULL, &had), 0, "the connection is usable after a timeout");
    cr_assert(had);
    fx_close(&f);
}

Test(meta, a_sqlite_store_has_no_pool_to_report) {
    SQLITE_ONLY("SQLite's readers are a fixed set, not a pool");
    fx f;
    fx_open(&f, 2);
    meta_pool_stats st;
    st.max = 7;
    cr_assert_eq(meta_pool_stats_get(f.ms, &st), CAIRN_EINVAL);
    cr_assert_eq(st.max, 0, "zeroed");
    cr_assert_eq(meta_pool_stats_get(NULL, &st), CAIRN_EINVAL);
    fx_close(&f);
}

Test(pg, with_every_connection_busy_a_call_waits_then_gets_ebusy_and_long_holds_are_logged, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.max_conns = 1;
    po.acquire_timeout_ms = 150;
    po.long_hold_ms = 50;
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    char logpath[160];
    snprintf(logpath, sizeof logpath, "%s/log", f.dir);
    FILE *log = fopen(logpath, "w+");
    cr_assert_not_null(log);
    log_set_fd(fileno(log));
    /* A put holds the only connection while it waits for the bucket's row. */
    PGconn *b = blocker_begin(&f, "SELECT 1 FROM buckets WHERE name = 'b' FOR UPDATE");
    bg_put p = {.ms = f.ms, .key = "k", .rc = -100};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, bg_put_main, &p), 0);
    wait_lock_waiters(&f, 1);
    meta_bucket got;
    int64_t t0 = time_mono_ns();
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), CAIRN_EBUSY, "no connection within the acquire timeout");
    cr_assert_geq(time_mono_ns() - t0, 150000000LL, "it waited the acquire timeout first");
    pg_pool_stats st;
    pg_pool_stats_get(f.ms, &st);
    cr_assert_eq(st.in_use, 1);
    cr_assert_geq(st.waits, 1);
    cr_assert_geq(st.acquire_timeouts, 1);
    cr_assert_geq(st.wait_ns, 150000000ULL);
    /* The timed-out wait is one observation of the histogram, above 0.1 s. */
    cr_assert_eq(st.wait_count, 1);
    cr_assert_eq(st.wait_buckets[4], 0, "not within %g s", meta_pool_wait_bounds[4]);
    cr_assert_eq(st.wait_buckets[META_POOL_WAIT_BUCKETS - 1], 1, "within %g s",
                 meta_pool_wait_bounds[META_POOL_WAIT_BUCKETS - 1]);
    meta_pool_stats ms_st;
    cr_assert_eq(meta_pool_stats_get(f.ms, &ms_st), 0, "the interface reports the pool");
    cr_assert_eq(ms_st.max, 1);
    cr_assert_eq(ms_st.acquire_timeouts, st.acquire_timeouts);
    blocker_end(b);
    pthread_join(th, NULL);
    cr_assert_eq(p.rc, 0, "the put went through once the lock was gone");
    pg_pool_stats_get(f.ms, &st);
    cr_assert_geq(st.long_holds, 1);
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0);
    log_set_fd(2);
    fflush(log);
    char text[8192] = "";
    rewind(log);
    size_t n = fread(text, 1, sizeof text - 1, log);
    text[n] = '\0';
    fclose(log);
    unlink(logpath);
    cr_assert(strstr(text, "postgres connection held long") && strstr(text, "\"function\":\"pg_object_put\""),
              "the long hold names its call site: %s", text);
    fx_close(&f);
}

Test(pg, a_connection_the_server_ended_while_idle_is_replaced_on_checkout, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.health_check_ms = 600000; /* no pings: the idle socket's state alone must tell */
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    kill_store_backends(&f);
    meta_bucket got;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0, "served on a new connection");
    pg_pool_stats st;
    pg_pool_stats_get(f.ms, &st);
    cr_assert_eq(st.reconnects, 1);
    cr_assert_eq(st.errors, 0, "the caller never saw the dead connection");
    fx_close(&f);
}

typedef struct {
    meta_store *ms;
    meta_delete_item items[2];
    int rc;
} bg_delete_many;

static void *bg_delete_many_main(void *arg) {
    bg_delete_many *d = arg;
    d->rc = meta_object_delete_many(d->ms, "b", 0, d->items, 2);
    return NULL;
}

Test(pg, a_connection_lost_mid_batch_fails_the_batch_whole_and_the_pool_goes_on, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.statement_timeout_ms = 30000;
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    put_key(f.ms, "b", "a", 1);
    put_key(f.ms, "b", "z", 1);
    /* The batch deletes a, then waits for z's row; its connection dies there. */
    PGconn *b = blocker_begin(&f, "SELECT 1 FROM objects WHERE key = 'z' FOR UPDATE");
    bg_delete_many d = {.ms = f.ms, .items = {{.key = "z", .key_len = 1}, {.key = "a", .key_len = 1}}, .rc = -100};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, bg_delete_many_main, &d), 0);
    wait_lock_waiters(&f, 1);
    kill_store_backends(&f);
    pthread_join(th, NULL);
    blocker_end(b);
    cr_assert_eq(d.rc, CAIRN_EIO);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(d.items[i].rc, CAIRN_EIO, "item %d", i);
        cr_assert_eq(d.items[i].deleted.version_id[0], '\0', "item %d reports nothing deleted", i);
    }
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "a", 1, false, &got), 0, "a's delete went with the batch");
    meta_object_clear(&got);
    cr_assert_eq(meta_object_delete(f.ms, "b", 0, "z", 1, NULL), 0, "a new connection serves the next call");
    fx_close(&f);
}

Test(pg, a_database_that_refuses_connections_fails_calls_fast_and_service_comes_back_by_itself, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.min_conns = 2;
    po.connect_timeout_s = 2;
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", f.db);
    pg_do("postgres", sql);
    kill_store_backends(&f);
    meta_bucket got;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), CAIRN_EIO);
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), CAIRN_EIO, "and again, without waiting for anything");
    pg_pool_stats st;
    pg_pool_stats_get(f.ms, &st);
    cr_assert_geq(st.connect_errors, 2);
    cr_assert_eq(st.in_use, 0);
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", f.db);
    pg_do("postgres", sql);
    int rc = -1;
    for (int64_t end = time_mono_ns() + 10000000000LL; rc != 0 && time_mono_ns() < end; usleep(10000))
        rc = meta_bucket_get(f.ms, "b", &got);
    cr_assert_eq(rc, 0, "service came back without a restart");
    /* The pool refills to min_conns by itself too. */
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end; usleep(10000)) {
        pg_pool_stats_get(f.ms, &st);
        if (st.open == 2) break;
    }
    cr_assert_eq(st.open, 2);
    fx_close(&f);
}

Test(pg, idle_connections_above_the_minimum_are_closed_after_the_idle_timeout, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.min_conns = 1;
    po.max_conns = 4;
    po.idle_timeout_ms = 200;
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    /* Three puts waiting at once need three connections. */
    PGconn *b = blocker_begin(&f, "SELECT 1 FROM buckets WHERE name = 'b' FOR UPDATE");
    bg_put p[3] = {{f.ms, "k1", -100}, {f.ms, "k2", -100}, {f.ms, "k3", -100}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) cr_assert_eq(pthread_create(&th[i], NULL, bg_put_main, &p[i]), 0);
    wait_lock_waiters(&f, 3);
    blocker_end(b);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(p[i].rc, 0);
    }
    pg_pool_stats st;
    pg_pool_stats_get(f.ms, &st);
    cr_assert_eq(st.open, 3);
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end; usleep(20000)) {
        pg_pool_stats_get(f.ms, &st);
        if (st.open == 1) break;
    }
    cr_assert_eq(st.open, 1, "back to min_conns");
    cr_assert_eq(st.evicted, 2);
    cr_assert_eq(store_backends(&f, NULL), 1, "the server agrees");
    fx_close(&f);
}

Test(pg, connections_are_replaced_at_the_end_of_their_lifetime, .timeout = 60) {
    PG_ONLY();
    meta_pg_options po;
    meta_pg_options_default(&po);
    po.max_lifetime_ms = 100;
    po.lifetime_jitter_pct = 50;
    fx f;
    fx_open_pg(&f, &po);
    mk_bucket(f.ms, "b", 1);
    pg_pool_stats st;
    meta_bucket got;
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end; usleep(10000)) {
        cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0, "calls go on across replacements");
        pg_pool_stats_get(f.ms, &st);
        if (st.expired >= 3) break;
    }
    cr_assert_geq(st.expired, 3);
    /* A connection that expires as it is given back is replaced by the next
     * call's checkout: one more call, so the last expiry has its successor
     * (the loop may have stopped right after that release). */
    cr_assert_eq(meta_bucket_get(f.ms, "b", &got), 0);
    pg_pool_stats_get(f.ms, &st);
    cr_assert_geq(st.connects, 4, "each replaced by a new one");
    cr_assert_eq(st.errors, 0);
    fx_close(&f);
}

/* A complete racing the delete of its bucket: one of them wins, never a
 * deadlock (both take the bucket before the upload) and never rows that
 * contradict each other. */
typedef struct {
    meta_store *ms;
    int64_t bucket_id;
    meta_part part;
    int rc;
} bg_complete;

static void *bg_complete_main(void *arg) {
    bg_complete *b = arg;
    meta_object o = mp_obj("race", b->bucket_id, "k", b->part.size, 1);
    b->rc = meta_upload_complete(b->ms, "up", &o, &b->part, 1, NULL, NULL, NULL, NULL);
    return NULL;
}

Test(concurrency, a_complete_racing_its_bucket_delete_ends_one_way_or_the_other, .timeout = 120) {
    fx f;
    fx_open(&f, 4);
    for (int round = 0; round < 20; round++) {
        mk_bucket(f.ms, "race", 1);
        int64_t id = bucket_id_of(f.ms, "race");
        mk_upload(f.ms, "race", id, "k", "up");
        bg_complete b = {.ms = f.ms, .bucket_id = id, .part = mk_part(1, 5, "1+0:4096:0123456789abcdef"), .rc = -100};
        put_part(f.ms, "up", &b.part);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, bg_complete_main, &b), 0);
        int del = meta_bucket_delete(f.ms, "race", id);
        pthread_join(th, NULL);
        cr_assert(del == 0 || del == CAIRN_ENOTEMPTY, "round %d: delete %s", round, cairn_strerror(del));
        cr_assert(b.rc == 0 || b.rc == CAIRN_ENOTFOUND, "round %d: complete %s", round, cairn_strerror(b.rc));
        cr_assert((del == 0) != (b.rc == 0), "round %d: exactly one wins (delete %d, complete %d)", round, del, b.rc);
        int64_t total = -1;
        cr_assert_eq(meta_check(f.ms, 10, keep_problem, &(problem_rows){0}, &total), 0);
        cr_assert_eq(total, 0, "round %d", round);
        if (b.rc == 0) {
            cr_assert_eq(meta_object_delete(f.ms, "race", id, "k", 1, NULL), 0);
            cr_assert_eq(meta_bucket_delete(f.ms, "race", id), 0);
        }
        cr_assert_eq(meta_trash_remove(f.ms, (const char *const[]){b.part.version_id}, 1), 0);
    }
    fx_close(&f);
}

/* PostgreSQL's text is UTF-8: a name that is not is refused as a value the
 * column cannot hold (SQLite would store its bytes).  Keys, stored headers
 * and error texts are bytea there, and take any bytes. */
Test(pg, names_that_are_not_utf8_are_einval_while_keys_and_error_texts_take_any_bytes) {
    PG_ONLY();
    fx f;
    fx_open(&f, 1);
    meta_user u = {0};
    strcpy(u.name, "caf\xe9");
    cr_assert_eq(meta_user_create(f.ms, &u), CAIRN_EINVAL);
    meta_bucket b = {.owner_id = 1};
    strcpy(b.name, "b\xff");
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), CAIRN_EINVAL);
    mk_bucket(f.ms, "b", 1);
    meta_object o = mk_obj("b", "k\xff", 2, 1);
    o.headers_json = "{\"x-amz-meta-a\":\"\xe9\"}";
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "b", 0, "k\xff", 2, false, &got), 0);
    cr_assert_str_eq(got.headers_json, "{\"x-amz-meta-a\":\"\xe9\"}");
    meta_object_clear(&got);
    cr_assert_eq(meta_node_upsert(f.ms, "n000000000000001", "http://n1"), 0);
    cr_assert_eq(meta_node_seen(f.ms, "n000000000000001", false, "read k\xff: refused"), 0);
    meta_node n;
    cr_assert_eq(meta_node_get(f.ms, "n000000000000001", &n), 0);
    cr_assert_str_eq(n.last_error, "read k\xff: refused");
    fx_close(&f);
}

/* ---- leases ---------------------------------------------------------------------------- */

static bool take(meta_store *ms, const char *name, const char *holder, int64_t now, int64_t ttl) {
    bool held = true;
    cr_assert_eq(meta_lease_acquire(ms, name, holder, now, ttl, &held), 0, "%s takes %s at %lld", holder, name,
                 (long long)now);
    return held;
}

static void expect_lease(meta_store *ms, const char *name, const char *holder, int64_t acquired, int64_t expires) {
    meta_lease l;
    cr_assert_eq(meta_lease_get(ms, name, &l), 0, "lease %s", name);
    cr_expect_str_eq(l.name, name);
    cr_expect_str_eq(l.holder, holder, "%s held by %s, want %s", name, l.holder, holder);
    cr_expect_eq(l.acquired_ms, acquired, "%s acquired at %lld", name, (long long)l.acquired_ms);
    cr_expect_eq(l.expires_ms, expires, "%s expires at %lld", name, (long long)l.expires_ms);
}

Test(leases, one_holder_at_a_time_until_it_expires_or_is_released) {
    fx f;
    fx_open(&f, 2);
    meta_lease l;
    cr_assert_eq(meta_lease_get(f.ms, "scrub", &l), CAIRN_ENOTFOUND, "never taken");
    cr_assert(take(f.ms, "scrub", "gw-a", 1000, 500), "a free lease is taken");
    expect_lease(f.ms, "scrub", "gw-a", 1000, 1500);
    cr_assert(!take(f.ms, "scrub", "gw-b", 1200, 500), "held by another and not expired");
    cr_assert(take(f.ms, "scrub", "gw-a", 1300, 500), "its holder renews it");
    expect_lease(f.ms, "scrub", "gw-a", 1000, 1800);
    cr_assert(!take(f.ms, "scrub", "gw-b", 1799, 500), "a millisecond before it expires");
    cr_assert(take(f.ms, "scrub", "gw-b", 1800, 700), "expired: another takes it");
    expect_lease(f.ms, "scrub", "gw-b", 1800, 2500);
    cr_assert(!take(f.ms, "scrub", "gw-a", 1900, 500), "the old holder does not get it back");
    /* Names are independent. */
    cr_assert(take(f.ms, "membership", "gw-a", 1900, 500));
    expect_lease(f.ms, "membership", "gw-a", 1900, 2400);
    /* Only the holder releases; then anyone takes it at once. */
    cr_assert_eq(meta_lease_release(f.ms, "scrub", "gw-a"), CAIRN_ENOTFOUND);
    expect_lease(f.ms, "scrub", "gw-b", 1800, 2500);
    cr_assert_eq(meta_lease_release(f.ms, "scrub", "gw-b"), 0);
    cr_assert_eq(meta_lease_get(f.ms, "scrub", &l), CAIRN_ENOTFOUND, "released");
    cr_assert_eq(meta_lease_release(f.ms, "scrub", "gw-b"), CAIRN_ENOTFOUND, "released twice");
    cr_assert(take(f.ms, "scrub", "gw-a", 1901, 500), "a released lease is free");
    expect_lease(f.ms, "scrub", "gw-a", 1901, 2401);
    /* A holder that renews after its lease expired, nobody having taken it,
     * still holds it from when it took it. */
    cr_assert(take(f.ms, "scrub", "gw-a", 5000, 500));
    expect_lease(f.ms, "scrub", "gw-a", 1901, 5500);
    fx_close(&f);
}

Test(leases, bad_arguments_are_einval_and_nothing_is_taken) {
    fx f;
    fx_open(&f, 2);
    char name64[65], holder256[257];
    memset(name64, 'n', 64);
    name64[64] = '\0';
    memset(holder256, 'h', 256);
    holder256[256] = '\0';
    bool held = true;
    cr_expect_eq(meta_lease_acquire(NULL, "scrub", "a", 1, 1, &held), CAIRN_EINVAL);
    cr_expect(!held, "held is false after a refusal");
    cr_expect_eq(meta_lease_acquire(f.ms, "", "a", 1, 1, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, NULL, "a", 1, 1, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, name64, "a", 1, 1, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, "scrub", "", 1, 1, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, "scrub", holder256, 1, 1, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, "scrub", "a", 1, 0, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, "scrub", "a", 1, -5, &held), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_acquire(f.ms, "scrub", "a", 1, 1, NULL), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_release(f.ms, "", "a"), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_release(f.ms, "scrub", holder256), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_release(NULL, "scrub", "a"), CAIRN_EINVAL);
    meta_lease l;
    cr_expect_eq(meta_lease_get(f.ms, name64, &l), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_get(f.ms, "scrub", NULL), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_get(NULL, "scrub", &l), CAIRN_EINVAL);
    cr_expect_eq(meta_lease_get(f.ms, "scrub", &l), CAIRN_ENOTFOUND, "none was taken");
    /* The longest name and holder that fit are taken whole. */
    name64[63] = '\0';
    holder256[255] = '\0';
    cr_assert(take(f.ms, name64, holder256, 1, 10));
    expect_lease(f.ms, name64, holder256, 1, 11);
    fx_close(&f);
}

/* Gateways trying to take one free lease at the same moment: one gets it. */
#define LEASE_TAKERS 8
#define LEASE_ROUNDS 20

typedef struct {
    meta_store *ms;
    pthread_barrier_t *start;
    int id;
    int won[LEASE_ROUNDS];
    int failures;
} lease_taker;

static void *lease_taker_main(void *arg) {
    lease_taker *t = arg;
    char holder[16];
    snprintf(holder, sizeof holder, "gw-%d", t->id);
    for (int r = 0; r < LEASE_ROUNDS; r++) {
        char name[16];
        snprintf(name, sizeof name, "race-%d", r);
        pthread_barrier_wait(t->start);
        bool held = false;
        if (meta_lease_acquire(t->ms, name, holder, 1000, 60000, &held) != 0) t->failures++;
        t->won[r] = held;
    }
    return NULL;
}

Test(concurrency, takers_racing_for_a_free_lease_leave_it_to_one, .timeout = 120) {
    fx f;
    fx_open(&f, LEASE_TAKERS);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, LEASE_TAKERS);
    pthread_t th[LEASE_TAKERS];
    static lease_taker t[LEASE_TAKERS];
    for (int i = 0; i < LEASE_TAKERS; i++) {
        t[i] = (lease_taker){.ms = f.ms, .start = &start, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, lease_taker_main, &t[i]), 0);
    }
    for (int i = 0; i < LEASE_TAKERS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int r = 0; r < LEASE_ROUNDS; r++) {
        int winners = 0, winner = -1;
        for (int i = 0; i < LEASE_TAKERS; i++) {
            cr_assert_eq(t[i].failures, 0, "taker %d", i);
            if (t[i].won[r]) winners++, winner = i;
        }
        cr_assert_eq(winners, 1, "round %d: %d takers hold the lease", r, winners);
        char name[16], holder[16];
        snprintf(name, sizeof name, "race-%d", r);
        snprintf(holder, sizeof holder, "gw-%d", winner);
        expect_lease(f.ms, name, holder, 1000, 61000);
    }
    fx_close(&f);
}

/* ---- job notifications ------------------------------------------------------------------ */

Test(listener, sqlite_has_none_and_the_calls_take_null) {
    SQLITE_ONLY("SQLite has no notifications: one process, whose enqueues wake its own workers");
    fx f;
    fx_open(&f, 2);
    meta_listener *l = (meta_listener *)&f; /* must be cleared */
    cr_assert_eq(meta_job_listener_open(f.ms, &l), CAIRN_EINVAL);
    cr_assert_null(l);
    cr_assert_eq(meta_job_listener_open(NULL, &l), CAIRN_EINVAL);
    cr_assert_eq(meta_listener_fd(NULL), -1);
    cr_assert_eq(meta_listener_drain(NULL), CAIRN_EINVAL);
    meta_listener_close(NULL);
    fx_close(&f);
}

/* Waits (deadline 10 s) until notifications arrive; returns how many came
 * with the first batch, or a negative error from drain. */
static int wait_notified(meta_listener *l) {
    for (int64_t end = time_mono_ns() + 10000000000LL; time_mono_ns() < end;) {
        struct pollfd p = {.fd = meta_listener_fd(l), .events = POLLIN};
        cr_assert_geq(p.fd, 0);
        if (poll(&p, 1, 100) <= 0) continue;
        int n = meta_listener_drain(l);
        if (n != 0) return n;
    }
    return 0;
}

Test(listener, an_enqueue_is_heard_once_it_commits_and_a_duplicate_is_not) {
    PG_ONLY();
    fx f;
    fx_open(&f, 2);
    meta_listener *l = NULL;
    cr_assert_eq(meta_job_listener_open(f.ms, &l), 0);
    cr_assert_not_null(l);
    cr_assert_geq(meta_listener_fd(l), 0);
    cr_assert_eq(meta_listener_drain(l), 0, "nothing yet");
    enqueue_job(f.ms, "k", 0, 1000, "once");
    cr_assert_eq(wait_notified(l), 1);
    /* A key already held adds nothing and says nothing; the next job's
     * notification comes after where the duplicate's would have. */
    meta_job dup = {.run_at_ms = 1000};
    snprintf(dup.kind, sizeof dup.kind, "k");
    snprintf(dup.unique_key, sizeof dup.unique_key, "once");
    cr_assert_eq(meta_job_enqueue(f.ms, &dup, NULL), CAIRN_EEXIST);
    enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_eq(wait_notified(l), 1, "one notification: the new job's");
    cr_assert_eq(meta_listener_drain(l), 0);
    meta_listener_close(l);
    fx_close(&f);
}

Test(listener, a_lost_session_is_reported_and_a_new_listener_hears_again, .timeout = 60) {
    PG_ONLY();
    fx f;
    fx_open(&f, 2);
    meta_listener *l = NULL;
    cr_assert_eq(meta_job_listener_open(f.ms, &l), 0);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s'"
             " AND application_name = 'cairn-listener'", f.db);
    cr_assert_eq(pg_do("postgres", sql), 1, "the listener is a session of its own");
    cr_assert_lt(wait_notified(l), 0, "drain reports the lost session");
    meta_listener_close(l);
    /* The pool's connections were not touched. */
    cr_assert_eq(meta_job_listener_open(f.ms, &l), 0);
    enqueue_job(f.ms, "k", 0, 1000, NULL);
    cr_assert_eq(wait_notified(l), 1);
    meta_listener_close(l);
    fx_close(&f);
}

Test(listener, a_database_refusing_connections_fails_the_open, .timeout = 60) {
    PG_ONLY();
    fx f;
    fx_open(&f, 2);
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", f.db);
    pg_do("postgres", sql);
    meta_listener *l = (meta_listener *)&f;
    cr_assert_eq(meta_job_listener_open(f.ms, &l), CAIRN_EIO);
    cr_assert_null(l);
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", f.db);
    pg_do("postgres", sql);
    cr_assert_eq(meta_job_listener_open(f.ms, &l), 0);
    meta_listener_close(l);
    fx_close(&f);
}

/* The notification is part of the enqueue's transaction: if it cannot be
 * sent, the job is not added either. */
Test(listener, an_enqueue_whose_notification_fails_adds_no_job) {
    PG_ONLY();
    fx f;
    fx_open(&f, 2);
    char sql[300];
    plant(&f, "CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql"
              " AS $$ BEGIN RAISE EXCEPTION 'no notifications today'; END $$");
    snprintf(sql, sizeof sql, "ALTER DATABASE %s SET search_path = public, pg_catalog", f.db);
    pg_do("postgres", sql);
    fx_reopen(&f); /* connections made from now on find that pg_notify first */
    meta_job j = {.run_at_ms = 1000};
    snprintf(j.kind, sizeof j.kind, "k");
    cr_assert_eq(meta_job_enqueue(f.ms, &j, NULL), CAIRN_EDB);
    cr_assert_eq(count_rows(&f, "jobs"), 0);
    fx_close(&f);
}

/* Without the table (a database the calls do not match), every call is an
 * error, and a row the structure cannot hold is refused, never cut. */
Test(leases, a_missing_table_or_a_row_too_long_is_edb) {
    fx f;
    fx_open(&f, 2);
    plant2(&f, "INSERT INTO leases VALUES ('long', hex(zeroblob(150)), 1, 2)",
           "INSERT INTO leases VALUES ('long', repeat('h', 300), 1, 2)");
    meta_lease l;
    cr_expect_eq(meta_lease_get(f.ms, "long", &l), CAIRN_EDB, "a holder longer than 255 bytes");
    plant(&f, "DROP TABLE leases");
    bool held = true;
    cr_expect_eq(meta_lease_acquire(f.ms, "scrub", "gw-a", 1, 10, &held), CAIRN_EDB);
    cr_expect(!held);
    cr_expect_eq(meta_lease_release(f.ms, "scrub", "gw-a"), CAIRN_EDB);
    cr_expect_eq(meta_lease_get(f.ms, "scrub", &l), CAIRN_EDB);
    fx_close(&f);
}

/* ---- the audit store ------------------------------------------------------------------ */

/* An event with every field set from n (event ids are n in hex, so their
 * order is n's); time_us, bucket, principal, outcome etc. as given. */
typedef struct {
    char id[33], req[32], corr[32], key[64];
    meta_audit_event e;
} audit_ev;

static void audit_mk(audit_ev *a, int n, int64_t time_us, const char *corr, const char *principal,
                     const char *user, const char *bucket, const char *key, const char *outcome) {
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%032x", n);
    snprintf(a->req, sizeof a->req, "req-%d", n);
    snprintf(a->corr, sizeof a->corr, "%s", corr);
    snprintf(a->key, sizeof a->key, "%s", key);
    a->e = (meta_audit_event){.event_id = a->id, .time_us = time_us, .request_id = a->req,
                              .correlation_id = a->corr, .principal = principal, .user = user,
                              .source_address = "127.0.0.1", .action = "s3:PutObject", .bucket = bucket,
                              .key = a->key, .version_id = "v1", .outcome = outcome,
                              .status = !strcmp(outcome, "success") ? 200 : 403, .error_code = "",
                              .bytes_in = n, .bytes_out = 2 * n, .duration_us = 10 + n};
}

/* What a query delivered: the event ids in order ("id,id,"), and the last event whole. */
typedef struct {
    char ids[8192];
    int n;
    meta_audit_event last;
    char last_id[33], last_key[3073], last_req[257];
    int stop_after;
} audit_seen;

static int audit_collect(void *ud, const meta_audit_event *e) {
    audit_seen *s = ud;
    size_t l = strlen(s->ids);
    snprintf(s->ids + l, sizeof s->ids - l, "%d,", (int)strtol(e->event_id, NULL, 16));
    s->n++;
    s->last = *e;
    snprintf(s->last_id, sizeof s->last_id, "%s", e->event_id);
    snprintf(s->last_key, sizeof s->last_key, "%s", e->key);
    snprintf(s->last_req, sizeof s->last_req, "%s", e->request_id);
    return s->stop_after && s->n >= s->stop_after;
}

static const char *audit_ids(meta_store *ms, const meta_audit_filter *f, int limit) {
    static audit_seen s;
    memset(&s, 0, sizeof s);
    int count = -1;
    cr_assert_eq(meta_audit_query(ms, f, limit, audit_collect, &s, &count), 0);
    cr_assert_eq(count, s.n);
    return s.ids;
}

static int audit_insert_evs(meta_store *ms, audit_ev *a, int n, int *inserted) {
    meta_audit_event ev[64];
    cr_assert(n <= 64);
    for (int i = 0; i < n; i++) ev[i] = a[i].e;
    return meta_audit_insert(ms, ev, n, inserted);
}

Test(audit, a_batch_is_stored_once_however_often_it_is_retried) {
    fx f;
    fx_open(&f, 2);
    audit_ev a[4];
    for (int i = 0; i < 4; i++) audit_mk(&a[i], i + 1, 1000 + i, "c", "AK", "", "b", "k", "success");
    int ins = -1;
    cr_assert_eq(audit_insert_evs(f.ms, a, 3, &ins), 0);
    cr_expect_eq(ins, 3);
    cr_assert_eq(audit_insert_evs(f.ms, a, 3, &ins), 0, "a retried batch is accepted");
    cr_expect_eq(ins, 0, "and inserts nothing");
    cr_assert_eq(audit_insert_evs(f.ms, a, 4, &ins), 0);
    cr_expect_eq(ins, 1, "only the new event of a batch that overlaps one stored");
    audit_ev dup[2];
    audit_mk(&dup[0], 9, 5, "c", "AK", "", "b", "k", "success");
    audit_mk(&dup[1], 9, 5, "c", "AK", "", "b", "k", "success");
    cr_assert_eq(audit_insert_evs(f.ms, dup, 2, &ins), 0);
    cr_expect_eq(ins, 1, "a repeat inside one batch is stored once");
    meta_audit_filter all = {0};
    cr_expect_str_eq(audit_ids(f.ms, &all, 100), "9,1,2,3,4,");
    fx_close(&f);
}

Test(audit, every_field_comes_back_as_stored) {
    fx f;
    fx_open(&f, 2);
    char key[3073];
    memset(key, 'k', 3072);
    key[3072] = '\0';
    char big[257];
    memset(big, 'r', 256);
    big[256] = '\0';
    meta_audit_event e = {.event_id = "0123456789abcdef0123456789abcdef", .time_us = 1796060462123456LL,
                          .request_id = big, .correlation_id = "corr", .principal = "AKIA",
                          .user = "alice", .source_address = "::1", .action = "s3:GetObject",
                          .bucket = "bkt", .key = key, .version_id = "ver", .outcome = "error", .status = 404,
                          .error_code = "NoSuchKey", .bytes_in = 7, .bytes_out = 1LL << 40, .duration_us = 1234};
    int ins = 0;
    cr_assert_eq(meta_audit_insert(f.ms, &e, 1, &ins), 0);
    audit_seen s = {0};
    int count = 0;
    meta_audit_filter all = {0};
    cr_assert_eq(meta_audit_query(f.ms, &all, 10, audit_collect, &s, &count), 0);
    cr_assert_eq(count, 1);
    cr_expect_str_eq(s.last_id, e.event_id);
    cr_expect_eq(s.last.time_us, e.time_us);
    cr_expect_str_eq(s.last_req, big);
    cr_expect_str_eq(s.last_key, key);
    cr_expect_eq(s.last.status, 404);
    cr_expect_eq(s.last.bytes_in, 7);
    cr_expect_eq(s.last.bytes_out, 1LL << 40);
    cr_expect_eq(s.last.duration_us, 1234);
    fx_close(&f);
}

/* The strings of the last event are only valid during the callback: check
 * them there. */
static int audit_check_fields(void *ud, const meta_audit_event *e) {
    (void)ud;
    cr_expect_str_eq(e->correlation_id, "corr");
    cr_expect_str_eq(e->principal, "AKIA");
    cr_expect_str_eq(e->user, "alice");
    cr_expect_str_eq(e->source_address, "::1");
    cr_expect_str_eq(e->action, "s3:GetObject");
    cr_expect_str_eq(e->bucket, "bkt");
    cr_expect_str_eq(e->version_id, "ver");
    cr_expect_str_eq(e->outcome, "error");
    cr_expect_str_eq(e->error_code, "NoSuchKey");
    return 0;
}

Test(audit, string_fields_come_back_as_stored) {
    fx f;
    fx_open(&f, 2);
    meta_audit_event e = {.event_id = "0123456789abcdef0123456789abcdef", .time_us = 1, .request_id = "r",
                          .correlation_id = "corr", .principal = "AKIA", .user = "alice",
                          .source_address = "::1", .action = "s3:GetObject", .bucket = "bkt", .key = "k",
                          .version_id = "ver", .outcome = "error", .status = 404, .error_code = "NoSuchKey"};
    int ins = 0, count = 0;
    cr_assert_eq(meta_audit_insert(f.ms, &e, 1, &ins), 0);
    meta_audit_filter all = {0};
    cr_assert_eq(meta_audit_query(f.ms, &all, 10, audit_check_fields, NULL, &count), 0);
    cr_assert_eq(count, 1);
    fx_close(&f);
}

/* Strings that mean something in PostgreSQL's array syntax (the backend
 * sends a batch as one array per column), empty strings, and batches of
 * more than one statement's chunk (1000 events), with a duplicate in
 * another chunk: every string comes back byte for byte, every event once. */
static const char *const tricky[] = {"", "\"", "\\", "{a,b}", "NULL", "a\"b\\c", " lead and trail ", "x,y", "}{",
                                     "line\nbreak\ttab", "caf\xc3\xa9 \xe2\x82\xac", "'quote'", "\\\"\\"};
#define NTRICKY (sizeof tricky / sizeof tricky[0])

typedef struct {
    int n, bad;
} tricky_seen;

static int tricky_check(void *ud, const meta_audit_event *e) {
    tricky_seen *s = ud;
    int i = (int)strtol(e->event_id + 24, NULL, 16);
    const char *want = tricky[i % NTRICKY];
    if (strcmp(e->key, want) != 0 || strcmp(e->user, want) != 0 || strcmp(e->error_code, want) != 0 ||
        e->bytes_in != i || e->status != 200 + i % 300)
        s->bad++;
    s->n++;
    return 0;
}

Test(audit, strings_with_array_syntax_and_batches_over_a_chunk_come_back_as_stored, .timeout = 120) {
    fx f;
    fx_open(&f, 2);
    enum { N = 2500 };
    meta_audit_event *ev = calloc(N + 1, sizeof *ev);
    char (*ids)[33] = calloc(N + 1, sizeof *ids);
    cr_assert(ev && ids);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "00000000000000000000000000%06x", i);
        const char *t = tricky[i % NTRICKY];
        ev[i] = (meta_audit_event){.event_id = ids[i], .time_us = 1000 + i, .request_id = "r", .correlation_id = t,
                                   .principal = "AKIA", .user = t, .source_address = "::1", .action = "s3:PutObject",
                                   .bucket = "tricky", .key = t, .version_id = "", .outcome = "success",
                                   .status = 200 + i % 300, .error_code = t, .bytes_in = i, .bytes_out = 0};
    }
    ev[N] = ev[5]; /* the same event again, in the third chunk */
    int ins = 0;
    cr_assert_eq(meta_audit_insert(f.ms, ev, N + 1, &ins), 0);
    cr_expect_eq(ins, N, "the repeated event is stored once: %d", ins);
    tricky_seen s = {0};
    char cursor_id[33] = "";
    int64_t cursor_t = 0;
    for (int page = 0; page < 10; page++) {
        meta_audit_filter fl = {.bucket = "tricky", .after_set = cursor_id[0] != '\0', .after_time_us = cursor_t};
        snprintf(fl.after_id, sizeof fl.after_id, "%s", cursor_id);
        int count = 0;
        int before = s.n;
        cr_assert_eq(meta_audit_query(f.ms, &fl, 1000, tricky_check, &s, &count), 0);
        if (count == 0) break;
        int last = before + count - 1;
        cursor_t = 1000 + last;
        snprintf(cursor_id, sizeof cursor_id, "%s", ids[last]);
    }
    cr_expect_eq(s.n, N);
    cr_expect_eq(s.bad, 0, "%d events came back different", s.bad);
    /* The same strings filter exactly. */
    meta_audit_filter by_corr = {.correlation_id = "{a,b}"};
    tricky_seen c = {0};
    int count = 0;
    cr_assert_eq(meta_audit_query(f.ms, &by_corr, 1000, tricky_check, &c, &count), 0);
    int want = 0;
    for (int i = 0; i < N; i++) want += strcmp(tricky[i % NTRICKY], "{a,b}") == 0;
    cr_expect_eq(count, want);
    cr_expect_eq(c.bad, 0);
    free(ev);
    free(ids);
    fx_close(&f);
}

Test(audit, every_filter_selects_what_it_names_in_time_order) {
    fx f;
    fx_open(&f, 2);
    audit_ev a[8];
    audit_mk(&a[0], 1, 500, "c1", "AK1", "alice", "b1", "photos/a.jpg", "success");
    audit_mk(&a[1], 2, 100, "c1", "AK2", "bob", "b1", "photos/b.jpg", "error");
    audit_mk(&a[2], 3, 300, "c2", "AK1", "alice", "b2", "docs/x", "denied");
    audit_mk(&a[3], 4, 300, "c2", "anonymous", "", "b1", "photos", "denied");
    audit_mk(&a[4], 5, 900, "c3", "AK3", "AK1", "b2", "photos/c", "success");
    audit_mk(&a[5], 6, 700, "c1", "AK2", "bob", "b1", "photoz", "success");
    audit_mk(&a[6], 7, 300, "c1", "AK2", "bob", "b1", "\xc3\xa9t\xc3\xa9/1", "success");
    audit_mk(&a[7], 8, 300, "c1", "AK2", "bob", "b1", "\xc3\xa9t\xc3\xa9", "success");
    a[7].e.action = "s3:GetObject";
    int ins = 0;
    cr_assert_eq(audit_insert_evs(f.ms, a, 8, &ins), 0);
    cr_assert_eq(ins, 8);
    meta_audit_filter q = {0};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "2,3,4,7,8,1,6,5,", "(time, event_id) order");
    q = (meta_audit_filter){.correlation_id = "c1"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "2,7,8,1,6,");
    q = (meta_audit_filter){.request_id = "req-3"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "3,");
    q = (meta_audit_filter){.principal = "AK1"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "3,1,5,", "the principal or the user");
    q = (meta_audit_filter){.principal = "bob"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "2,7,8,6,");
    q = (meta_audit_filter){.action = "s3:GetObject"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "8,");
    q = (meta_audit_filter){.bucket = "b2"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "3,5,");
    q = (meta_audit_filter){.key_prefix = "photos/"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "2,1,5,");
    q = (meta_audit_filter){.key_prefix = "photo"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "2,4,1,6,5,");
    q = (meta_audit_filter){.key_prefix = "\xc3\xa9t\xc3\xa9/"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "7,", "a prefix of several-byte characters");
    q = (meta_audit_filter){.outcome = "denied"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "3,4,");
    q = (meta_audit_filter){.from_us = 300, .to_us = 700};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "3,4,7,8,1,", "from inclusive, to exclusive");
    q = (meta_audit_filter){.bucket = "b1", .outcome = "success", .principal = "bob", .from_us = 301};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "6,", "filters combine");
    q = (meta_audit_filter){.correlation_id = "nope"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "");
    /* After a row: strictly after (time, event_id), ties by event id. */
    q = (meta_audit_filter){.after_set = true, .after_time_us = 300};
    snprintf(q.after_id, sizeof q.after_id, "%032x", 4);
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "7,8,1,6,5,");
    q.correlation_id = "c1";
    cr_expect_str_eq(audit_ids(f.ms, &q, 2), "7,8,", "after and limit together: the next page");
    /* A principal that is also its own user: the event once. */
    audit_ev same;
    audit_mk(&same, 9, 50, "c9", "SELF", "SELF", "b1", "k", "success");
    cr_assert_eq(audit_insert_evs(f.ms, &same, 1, &ins), 0);
    q = (meta_audit_filter){.principal = "SELF"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 100), "9,");
    /* principal with a cursor and a limit: pages through both columns. */
    q = (meta_audit_filter){.principal = "AK1"};
    cr_expect_str_eq(audit_ids(f.ms, &q, 2), "3,1,");
    q.after_set = true;
    q.after_time_us = 500;
    snprintf(q.after_id, sizeof q.after_id, "%032x", 1);
    cr_expect_str_eq(audit_ids(f.ms, &q, 2), "5,");
    fx_close(&f);
}

Test(audit, pages_walk_every_event_once_with_equal_times) {
    fx f;
    fx_open(&f, 2);
    /* 150 events, 50 at each of three times, inserted out of order. */
    for (int base = 0; base < 150; base += 50) {
        audit_ev a[50];
        for (int i = 0; i < 50; i++) {
            int n = 150 - (base + i);
            audit_mk(&a[i], n, (n - 1) / 50, "c", "AK", "", "b", "k", "success");
        }
        int ins = 0;
        meta_audit_event ev[50];
        for (int i = 0; i < 50; i++) ev[i] = a[i].e;
        cr_assert_eq(meta_audit_insert(f.ms, ev, 50, &ins), 0);
        cr_assert_eq(ins, 50);
    }
    meta_audit_filter q = {0};
    int seen = 0, pages = 0;
    for (;;) {
        audit_seen s = {0};
        int count = 0;
        cr_assert_eq(meta_audit_query(f.ms, &q, 16, audit_collect, &s, &count), 0);
        pages++;
        /* each page continues exactly where the last one ended */
        char want[64];
        snprintf(want, sizeof want, "%d,", seen + 1);
        if (count) cr_assert(!strncmp(s.ids, want, strlen(want)), "page %d starts %s, wanted %s", pages, s.ids, want);
        seen += count;
        if (count < 16) break;
        q.after_set = true;
        q.after_time_us = s.last.time_us;
        snprintf(q.after_id, sizeof q.after_id, "%s", s.last_id);
    }
    cr_expect_eq(seen, 150);
    cr_expect_eq(pages, 10);
    fx_close(&f);
}

Test(audit, a_callback_that_stops_gets_no_more) {
    fx f;
    fx_open(&f, 1);
    audit_ev a[5];
    for (int i = 0; i < 5; i++) audit_mk(&a[i], i + 1, i, "c", "AK", "", "b", "k", "success");
    int ins = 0;
    cr_assert_eq(audit_insert_evs(f.ms, a, 5, &ins), 0);
    audit_seen s = {.stop_after = 2};
    int count = 0;
    meta_audit_filter all = {0};
    cr_assert_eq(meta_audit_query(f.ms, &all, 5, audit_collect, &s, &count), 0);
    cr_expect_eq(count, 2);
    cr_expect_str_eq(s.ids, "1,2,");
    fx_close(&f);
}

Test(audit, retention_deletes_only_older_events_a_batch_at_a_time) {
    fx f;
    fx_open(&f, 2);
    audit_ev a[10];
    for (int i = 0; i < 10; i++) audit_mk(&a[i], i + 1, 100 * (i + 1), "c", "AK", "", "b", "k", "success");
    int ins = 0;
    cr_assert_eq(audit_insert_evs(f.ms, a, 10, &ins), 0);
    int64_t del = -1;
    cr_assert_eq(meta_audit_delete_before(f.ms, 100, 10, &del), 0);
    cr_expect_eq(del, 0, "time 100 is not before 100");
    cr_assert_eq(meta_audit_delete_before(f.ms, 601, 3, &del), 0);
    cr_expect_eq(del, 3, "at most limit");
    meta_audit_filter all = {0};
    cr_expect_str_eq(audit_ids(f.ms, &all, 100), "4,5,6,7,8,9,10,", "the oldest went first");
    cr_assert_eq(meta_audit_delete_before(f.ms, 601, 10, &del), 0);
    cr_expect_eq(del, 3);
    cr_expect_str_eq(audit_ids(f.ms, &all, 100), "7,8,9,10,");
    fx_close(&f);
}

Test(audit, a_batch_that_fails_in_the_database_stores_nothing) {
    fx f;
    fx_open(&f, 2);
    /* The database refuses the third event of the batch. */
    plant2(&f,
           "CREATE TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.request_id = 'req-3'"
           " BEGIN SELECT RAISE(ABORT, 'refused'); END;",
           "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.request_id = 'req-3' THEN"
           " RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;"
           "CREATE TRIGGER refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse();");
    audit_ev a[5];
    for (int i = 0; i < 5; i++) audit_mk(&a[i], i + 1, i, "c", "AK", "", "b", "k", "success");
    int ins = -1;
    int rc = audit_insert_evs(f.ms, a, 5, &ins);
    cr_expect(rc != 0, "the batch fails");
    cr_expect_eq(ins, 0);
    meta_audit_filter all = {0};
    cr_expect_str_eq(audit_ids(f.ms, &all, 100), "", "none of it was stored");
    cr_assert_eq(audit_insert_evs(f.ms, a, 2, &ins), 0, "a batch without it goes in");
    cr_expect_eq(ins, 2);
    fx_close(&f);
}

Test(audit, bad_arguments_are_einval) {
    fx f;
    fx_open(&f, 2);
    audit_ev a;
    audit_mk(&a, 1, 1, "c", "AK", "", "b", "k", "success");
    int ins = 0, count = 0;
    int64_t del = 0;
    meta_audit_event e = a.e;
    cr_expect_eq(meta_audit_insert(NULL, &e, 1, &ins), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_insert(f.ms, NULL, 1, &ins), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_insert(f.ms, &e, 0, &ins), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_insert(f.ms, &e, 10001, &ins), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, NULL), CAIRN_EINVAL);
    e.event_id = "0123456789ABCDEF0123456789abcdef";
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL, "upper-case id");
    e = a.e;
    e.event_id = "0123";
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL, "short id");
    e = a.e;
    e.status = 600;
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL);
    e = a.e;
    e.bytes_in = -1;
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL);
    e = a.e;
    e.bucket = NULL;
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL);
    char long_key[3074];
    memset(long_key, 'k', 3073);
    long_key[3073] = '\0';
    e = a.e;
    e.key = long_key;
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL, "a key over 3072 bytes");
    e = a.e;
    e.action = long_key;
    cr_expect_eq(meta_audit_insert(f.ms, &e, 1, &ins), CAIRN_EINVAL, "a string over 256 bytes");
    meta_audit_filter q = {0};
    cr_expect_eq(meta_audit_query(f.ms, &q, 0, audit_collect, NULL, &count), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_query(f.ms, &q, META_AUDIT_QUERY_MAX + 1, audit_collect, NULL, &count), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_query(f.ms, NULL, 1, audit_collect, NULL, &count), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_query(f.ms, &q, 1, NULL, NULL, &count), CAIRN_EINVAL);
    q.after_set = true;
    cr_expect_eq(meta_audit_query(f.ms, &q, 1, audit_collect, NULL, &count), CAIRN_EINVAL, "after without an id");
    q = (meta_audit_filter){.bucket = long_key};
    cr_expect_eq(meta_audit_query(f.ms, &q, 1, audit_collect, NULL, &count), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_delete_before(f.ms, 1, 0, &del), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_delete_before(f.ms, 1, 1, NULL), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_delete_before(NULL, 1, 1, &del), CAIRN_EINVAL);
    meta_audit_filter all = {0};
    cr_expect_str_eq(audit_ids(f.ms, &all, 10), "", "nothing was stored");
    fx_close(&f);
}

Test(audit, a_missing_table_is_an_error_not_a_crash) {
    fx f;
    fx_open(&f, 2);
    plant(&f, "DROP TABLE audit_events");
    audit_ev a;
    audit_mk(&a, 1, 1, "c", "AK", "", "b", "k", "success");
    int ins = 0, count = 0;
    int64_t del = 0;
    cr_expect_eq(meta_audit_insert(f.ms, &a.e, 1, &ins), CAIRN_EDB);
    meta_audit_filter all = {0};
    cr_expect_eq(meta_audit_query(f.ms, &all, 10, audit_collect, NULL, &count), CAIRN_EDB);
    cr_expect_eq(meta_audit_delete_before(f.ms, 10, 10, &del), CAIRN_EDB);
    fx_close(&f);
}

Test(audit, the_audit_right_is_granted_revoked_and_kept_with_the_user) {
    fx f;
    fx_open(&f, 2);
    meta_user u = {0};
    strcpy(u.name, "auditor");
    u.audit = true;
    cr_assert_eq(meta_user_create(f.ms, &u), 0);
    meta_user got;
    cr_assert_eq(meta_user_get(f.ms, u.id, &got), 0);
    cr_expect(got.audit, "created with the right");
    meta_user plain = {0};
    strcpy(plain.name, "plain");
    cr_assert_eq(meta_user_create(f.ms, &plain), 0);
    cr_assert_eq(meta_user_get_by_name(f.ms, "plain", &got), 0);
    cr_expect(!got.audit, "without it by default");
    cr_assert_eq(meta_user_set_audit(f.ms, "plain", true), 0);
    cr_assert_eq(meta_user_get(f.ms, plain.id, &got), 0);
    cr_expect(got.audit, "granted");
    cr_assert_eq(meta_user_set_audit(f.ms, "auditor", false), 0);
    cr_assert_eq(meta_user_get_by_name(f.ms, "auditor", &got), 0);
    cr_expect(!got.audit, "revoked");
    cr_expect_eq(meta_user_set_audit(f.ms, "nobody", true), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_user_set_audit(f.ms, "", true), CAIRN_EINVAL);
    cr_expect_eq(meta_user_set_audit(NULL, "plain", true), CAIRN_EINVAL);
    fx_close(&f);
}

/* Eight writers insert the same 64 events at once, each batch rotated
 * differently: every event is stored once, counted once, and no batch
 * fails (on PostgreSQL, overlapping batches in different orders deadlocked
 * until a batch went in in event_id order). */
#define AUDIT_RACE_EVENTS 64
#define AUDIT_RACE_WRITERS 8

typedef struct {
    meta_store *ms;
    audit_ev *evs;
    int rotation, inserted, rc;
} audit_racer;

static void *audit_race(void *arg) {
    audit_racer *r = arg;
    meta_audit_event ev[AUDIT_RACE_EVENTS];
    for (int i = 0; i < AUDIT_RACE_EVENTS; i++) ev[i] = r->evs[(i + r->rotation) % AUDIT_RACE_EVENTS].e;
    r->rc = meta_audit_insert(r->ms, ev, AUDIT_RACE_EVENTS, &r->inserted);
    return NULL;
}

Test(audit, overlapping_batches_at_once_store_each_event_once, .timeout = 120) {
    fx f;
    fx_open(&f, AUDIT_RACE_WRITERS);
    static audit_ev evs[AUDIT_RACE_EVENTS];
    for (int i = 0; i < AUDIT_RACE_EVENTS; i++) audit_mk(&evs[i], i + 1, i, "race", "AK", "", "b", "k", "success");
    pthread_t t[AUDIT_RACE_WRITERS];
    audit_racer r[AUDIT_RACE_WRITERS];
    for (int i = 0; i < AUDIT_RACE_WRITERS; i++) {
        r[i] = (audit_racer){.ms = f.ms, .evs = evs, .rotation = i * 7};
        cr_assert_eq(pthread_create(&t[i], NULL, audit_race, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < AUDIT_RACE_WRITERS; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(r[i].rc, 0, "writer %d: %s", i, cairn_strerror(r[i].rc));
        total += r[i].inserted;
    }
    cr_expect_eq(total, AUDIT_RACE_EVENTS, "each event counted new exactly once");
    audit_seen s = {0};
    int count = 0;
    meta_audit_filter all = {0};
    cr_assert_eq(meta_audit_query(f.ms, &all, 100, audit_collect, &s, &count), 0);
    cr_expect_eq(count, AUDIT_RACE_EVENTS);
    fx_close(&f);
}

/* ---- bucket notifications ----------------------------------------------------------- */

static int count_target(void *ud, const meta_notify_target *t) {
    (void)t;
    (*(int *)ud)++;
    return 0;
}

Test(meta, notify_targets_add_get_list_remove) {
    fx f;
    fx_open(&f, 1);
    meta_notify_target t = {.max_attempts = 7, .created_ms = 5};
    strcpy(t.name, "hook-1");
    strcpy(t.url, "https://example.com/hook");
    strcpy(t.secret, "sealed-blob");
    cr_assert_eq(meta_notify_target_add(f.ms, &t), 0);
    cr_assert_eq(meta_notify_target_add(f.ms, &t), CAIRN_EEXIST);
    meta_notify_target bad = t;
    strcpy(bad.name, "no spaces");
    cr_assert_eq(meta_notify_target_add(f.ms, &bad), CAIRN_EINVAL);
    bad = t;
    strcpy(bad.name, "ftp");
    strcpy(bad.url, "ftp://x/");
    cr_assert_eq(meta_notify_target_add(f.ms, &bad), CAIRN_EINVAL);
    meta_notify_target got;
    cr_assert_eq(meta_notify_target_get(f.ms, "hook-1", &got), 0);
    cr_assert_str_eq(got.url, t.url);
    cr_assert_str_eq(got.secret, "sealed-blob");
    cr_assert_eq(got.max_attempts, 7);
    cr_assert_eq(meta_notify_target_get(f.ms, "nope", &got), CAIRN_ENOTFOUND);
    int n = 0;
    cr_assert_eq(meta_notify_target_list(f.ms, count_target, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(meta_notify_target_remove(f.ms, "hook-1"), 0);
    cr_assert_eq(meta_notify_target_remove(f.ms, "hook-1"), CAIRN_ENOTFOUND);
    fx_close(&f);
}

typedef struct {
    meta_limit l[8];
    int n;
} limits_seen;

static int collect_limit(void *ud, const meta_limit *l) {
    limits_seen *s = ud;
    if (s->n < 8) s->l[s->n++] = *l;
    return 0;
}

Test(meta, rate_limit_overrides_set_list_remove_and_go_with_their_bucket) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "hot", 1);
    meta_limit l = {.scope = "key", .name = "AKIDFAST", .ops_per_s = 50, .bytes_per_s = 0, .updated_ms = 1};
    cr_assert_eq(meta_limit_set(f.ms, &l), 0);
    l.ops_per_s = 60; /* replaced, not added */
    cr_assert_eq(meta_limit_set(f.ms, &l), 0);
    meta_limit b = {.scope = "bucket", .name = "hot", .ops_per_s = 0, .bytes_per_s = 1048576, .updated_ms = 2};
    cr_assert_eq(meta_limit_set(f.ms, &b), 0);
    meta_limit bad = l;
    strcpy(bad.scope, "ip");
    cr_assert_eq(meta_limit_set(f.ms, &bad), CAIRN_EINVAL, "only keys and buckets have overrides");
    bad = l;
    bad.ops_per_s = -1;
    cr_assert_eq(meta_limit_set(f.ms, &bad), CAIRN_EINVAL);
    bad = l;
    bad.name[0] = '\0';
    cr_assert_eq(meta_limit_set(f.ms, &bad), CAIRN_EINVAL);
    limits_seen s = {0};
    cr_assert_eq(meta_limit_list(f.ms, collect_limit, &s), 0);
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.l[0].scope, "bucket", "in (scope, name) order");
    cr_assert_str_eq(s.l[0].name, "hot");
    cr_assert_eq(s.l[0].bytes_per_s, 1048576);
    cr_assert_str_eq(s.l[1].name, "AKIDFAST");
    cr_assert_eq(s.l[1].ops_per_s, 60);
    cr_assert_eq(s.l[1].updated_ms, 1);
    /* The bucket's override goes with it: a later bucket of the name starts
     * from the defaults. */
    cr_assert_eq(meta_bucket_delete(f.ms, "hot", 0), 0);
    s.n = 0;
    cr_assert_eq(meta_limit_list(f.ms, collect_limit, &s), 0);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.l[0].scope, "key");
    cr_assert_eq(meta_limit_remove(f.ms, "key", "AKIDFAST"), 0);
    cr_assert_eq(meta_limit_remove(f.ms, "key", "AKIDFAST"), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_limit_remove(f.ms, "bucket", "hot"), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_limit_remove(f.ms, "nonsense", "x"), CAIRN_EINVAL);
    s.n = 0;
    cr_assert_eq(meta_limit_list(f.ms, collect_limit, &s), 0);
    cr_assert_eq(s.n, 0);
    fx_close(&f);
}

Test(meta, a_bucket_configuration_goes_with_its_bucket) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &b), 0);
    char *cfg = NULL;
    cr_assert_eq(meta_bucket_notification_get(f.ms, b.id, &cfg), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_bucket_notification_put(f.ms, b.id, "[1]"), 0);
    cr_assert_eq(meta_bucket_notification_put(f.ms, b.id, "[2]"), 0);
    cr_assert_eq(meta_bucket_notification_get(f.ms, b.id, &cfg), 0);
    cr_assert_str_eq(cfg, "[2]");
    free(cfg);
    cr_assert_eq(meta_bucket_notification_put(f.ms, b.id, ""), 0);
    cr_assert_eq(meta_bucket_notification_get(f.ms, b.id, &cfg), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_bucket_notification_put(f.ms, b.id, "[3]"), 0);
    cr_assert_eq(meta_bucket_delete(f.ms, "b", 0), 0);
    cr_assert_eq(meta_bucket_notification_get(f.ms, b.id, &cfg), CAIRN_ENOTFOUND, "deleted with its bucket");
    mk_bucket(f.ms, "b", 1);
    meta_bucket again;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &again), 0);
    cr_assert_neq(again.id, b.id);
    cr_assert_eq(meta_bucket_notification_get(f.ms, again.id, &cfg), CAIRN_ENOTFOUND, "a new bucket of the name has none");
    fx_close(&f);
}

Test(meta, bucket_configurations_by_kind_go_with_their_bucket) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "b", 1);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &b), 0);
    char *body = NULL;
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "cors", &body), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", b.id, "cors", "{\"a\":1}"), 0);
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", b.id, "cors", "{\"a\":2}"), 0);
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", b.id, "tagging", "[\"t\"]"), 0);
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "cors", &body), 0);
    cr_assert_str_eq(body, "{\"a\":2}", "a put replaces");
    free(body);
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "tagging", &body), 0);
    cr_assert_str_eq(body, "[\"t\"]", "kinds are apart");
    free(body);
    meta_bucket with;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &with), 0);
    cr_assert_eq(with.configs, META_CFG_CORS | META_CFG_TAGGING, "the record names the kinds it has: %#x", with.configs);
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", b.id, "cors", ""), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "b", &with), 0);
    cr_assert_eq(with.configs, META_CFG_TAGGING, "and no longer one removed");
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "cors", &body), CAIRN_ENOTFOUND, "\"\" removes");
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", b.id, "cors", NULL), 0, "removing what is absent is fine");
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "tagging", &body), 0, "removing one kind keeps the others");
    free(body);
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", b.id, "Bad-Kind", "x"), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "", &body), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_config_put(f.ms, "b", 0, "cors", "x"), CAIRN_EINVAL);
    cr_assert_eq(meta_bucket_delete(f.ms, "b", 0), 0);
    cr_assert_eq(meta_bucket_config_get(f.ms, b.id, "tagging", &body), CAIRN_ENOTFOUND, "deleted with its bucket");
    mk_bucket(f.ms, "b", 1);
    meta_bucket again;
    cr_assert_eq(meta_bucket_get(f.ms, "b", &again), 0);
    cr_assert_eq(meta_bucket_config_get(f.ms, again.id, "tagging", &body), CAIRN_ENOTFOUND,
                 "a new bucket of the name has none");
    fx_close(&f);
}

static meta_job notify_job(const char *target) {
    meta_job j;
    memset(&j, 0, sizeof j);
    strcpy(j.kind, "notify");
    static char args[2][128];
    static int k;
    char *a = args[k++ % 2];
    snprintf(a, sizeof args[0], "{\"target\":\"%s\",\"body\":\"{}\"}", target);
    j.args = a;
    j.max_attempts = 3;
    j.run_at_ms = 1;
    return j;
}

static int64_t pending(meta_store *ms, const char *target) {
    char needle[96];
    snprintf(needle, sizeof needle, "\"target\":\"%s\"", target);
    int64_t n = -1;
    cr_assert_eq(meta_job_pending_count(ms, "notify", needle, &n), 0);
    return n;
}

Test(meta, jobs_go_with_the_change_that_carries_them) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    meta_job j[2] = {notify_job("t1"), notify_job("t2")};
    /* a put with its jobs */
    meta_object o = mk_obj("b", "k", 1, 1);
    o.jobs = j;
    o.njobs = 2;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    cr_assert_eq(pending(f.ms, "t1"), 1);
    cr_assert_eq(pending(f.ms, "t2"), 1);
    /* a put that fails (no such bucket) enqueues nothing */
    meta_object gone = mk_obj("nobucket", "k", 1, 1);
    gone.jobs = j;
    gone.njobs = 1;
    cr_assert_eq(meta_object_put(f.ms, &gone, NULL, NULL), CAIRN_ENOTFOUND);
    cr_assert_eq(pending(f.ms, "t1"), 1);
    /* a delete of a key that is not there enqueues nothing; of one that is, its jobs */
    cr_assert_eq(meta_object_delete_jobs(f.ms, "b", 0, "absent", 6, j, 1, NULL), CAIRN_ENOTFOUND);
    cr_assert_eq(pending(f.ms, "t1"), 1);
    cr_assert_eq(meta_object_delete_jobs(f.ms, "b", 0, "k", 1, j, 1, NULL), 0);
    cr_assert_eq(pending(f.ms, "t1"), 2);
    /* DeleteObjects: only the keys that existed */
    put_key(f.ms, "b", "x", 1);
    meta_delete_item items[2] = {{.key = "x", .key_len = 1, .jobs = &j[1], .njobs = 1},
                                 {.key = "y", .key_len = 1, .jobs = &j[1], .njobs = 1}};
    cr_assert_eq(meta_object_delete_many(f.ms, "b", 0, items, 2), 0);
    meta_object_clear(&items[0].deleted);
    meta_object_clear(&items[1].deleted);
    cr_assert_eq(pending(f.ms, "t2"), 2, "x's removal only");
    fx_close(&f);
}

Test(meta, a_deferred_job_waits_and_its_run_does_not_count) {
    fx f;
    fx_open(&f, 2);
    meta_job j = notify_job("t");
    int64_t id1 = 0, id2 = 0;
    cr_assert_eq(meta_job_enqueue(f.ms, &j, &id1), 0);
    cr_assert_eq(meta_job_enqueue(f.ms, &j, &id2), 0);
    int64_t n = -1;
    cr_assert_eq(meta_job_pending_before(f.ms, "notify", "\"target\":\"t\"", id2, &n), 0);
    cr_assert_eq(n, 1, "the job before the second");
    cr_assert_eq(meta_job_pending_before(f.ms, "notify", "\"target\":\"t\"", id1, &n), 0);
    cr_assert_eq(n, 0, "none before the first");
    cr_assert_eq(meta_job_pending_before(f.ms, "notify", "x", 0, &n), CAIRN_EINVAL);
    meta_job got;
    cr_assert_eq(meta_job_claim(f.ms, "w", 1000, 60000, &got), 0);
    cr_assert_eq(got.attempts, 1);
    int64_t claimed = got.id;
    meta_job_clear(&got);
    cr_assert_eq(meta_job_defer(f.ms, claimed, "someone-else", 5000), CAIRN_ECONFLICT, "only its owner defers it");
    cr_assert_eq(meta_job_defer(f.ms, claimed, "w", 5000), 0);
    cr_assert_eq(meta_job_get(f.ms, claimed, &got), 0);
    cr_assert_str_eq(got.state, "available");
    cr_assert_eq(got.attempts, 0, "a deferred run is not an attempt");
    cr_assert_eq(got.run_at_ms, 5000);
    meta_job_clear(&got);
    /* before its time the other job is claimed; after it, this one again */
    cr_assert_eq(meta_job_claim(f.ms, "w", 2000, 60000, &got), 0);
    cr_assert_neq(got.id, claimed);
    meta_job_clear(&got);
    cr_assert_eq(meta_job_claim(f.ms, "w", 2000, 60000, &got), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_job_claim(f.ms, "w", 5000, 60000, &got), 0);
    cr_assert_eq(got.id, claimed);
    meta_job_clear(&got);
    fx_close(&f);
}

/* ---- versions (both backends) ---- */

typedef struct {
    int n;
    char keys[64][32];
    char ids[64][33];
    int64_t seqs[64];
    bool latest[64], marker[64], null[64];
} vcollect;

static int collect_version(void *ud, const meta_version_entry *e) {
    vcollect *c = ud;
    cr_assert_lt(c->n, 64);
    snprintf(c->keys[c->n], sizeof c->keys[0], "%.*s", (int)e->key_len, e->key);
    snprintf(c->ids[c->n], sizeof c->ids[0], "%s", e->version_id);
    c->seqs[c->n] = e->seq;
    c->latest[c->n] = e->is_latest;
    c->marker[c->n] = e->delete_marker;
    c->null[c->n] = e->null_version;
    c->n++;
    return 0;
}

static vcollect versions_of(meta_store *ms, const char *bucket, const char *prefix, const char *after_key,
                            int64_t after_seq, int limit, bool *more) {
    vcollect c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(meta_object_list_versions(ms, bucket, 0, prefix, prefix ? strlen(prefix) : 0, after_key,
                                           after_key ? strlen(after_key) : 0, after_seq, limit, collect_version, &c,
                                           more),
                 0);
    return c;
}

static void put_version(meta_store *ms, const char *bucket, const char *key, meta_object *o, bool *had,
                        meta_object *rep) {
    *o = mk_obj(bucket, key, strlen(key), 10);
    cr_assert_eq(meta_object_put(ms, o, rep, had), 0);
}

Test(versions, enabled_keeps_every_version_newest_first_and_the_current_one_reads) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    meta_object v0, v1, v2, rep;
    bool had;
    put_version(f.ms, "v", "k", &v0, &had, &rep);        /* before versioning: the null version */
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_bucket b;
    cr_assert_eq(meta_bucket_get(f.ms, "v", &b), 0);
    cr_assert_eq(b.versioning, META_VERSIONING_ENABLED);
    put_version(f.ms, "v", "k", &v1, &had, &rep);
    cr_assert_not(had, "enabled: nothing is replaced");
    put_version(f.ms, "v", "k", &v2, &had, &rep);
    cr_assert_not(had);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, v2.version_id);
    cr_assert(got.is_latest);
    cr_assert_not(got.null_version);
    meta_object_clear(&got);
    bool more = true;
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 3);
    cr_assert_not(more);
    cr_assert_str_eq(c.ids[0], v2.version_id);
    cr_assert_str_eq(c.ids[1], v1.version_id);
    cr_assert_str_eq(c.ids[2], v0.version_id);
    cr_assert(c.latest[0] && !c.latest[1] && !c.latest[2]);
    cr_assert(c.null[2] && !c.null[1] && !c.null[0], "the version from before versioning is the null one");
    cr_assert(c.seqs[0] > c.seqs[1] && c.seqs[1] > c.seqs[2]);
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, v1.version_id, false, &got), 0);
    cr_assert_not(got.is_latest);
    meta_object_clear(&got);
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, "null", false, &got), 0);
    cr_assert_str_eq(got.version_id, v0.version_id);
    meta_object_clear(&got);
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, "0123456789abcdef0123456789abcdef", false, &got),
                 CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, "not-an-id", false, &got), CAIRN_ENOTFOUND);
    int64_t n = -1;
    cr_assert_eq(meta_object_count(f.ms, "v", &n), 0);
    cr_assert_eq(n, 1, "one current object");
    cr_assert_eq(meta_bucket_delete(f.ms, "v", 0), CAIRN_ENOTEMPTY, "versions keep a bucket from being deleted");
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_OFF), CAIRN_EINVAL, "never back to off");
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "nope", 0, META_VERSIONING_ENABLED), CAIRN_ENOTFOUND);
    fx_close(&f);
}

Test(versions, object_lock_turns_on_for_good_only_where_versioning_is_enabled) {
    fx f;
    fx_open(&f, 1);
    mk_bucket(f.ms, "l", 1);
    meta_bucket b;
    cr_assert_eq(meta_bucket_enable_object_lock(f.ms, "l", 0), CAIRN_ECONFLICT, "versioning off");
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "l", 0, META_VERSIONING_ENABLED), 0);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "l", 0, META_VERSIONING_SUSPENDED), 0);
    cr_assert_eq(meta_bucket_enable_object_lock(f.ms, "l", 0), CAIRN_ECONFLICT, "versioning suspended");
    cr_assert_eq(meta_bucket_get(f.ms, "l", &b), 0);
    cr_assert_not(b.object_lock);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "l", 0, META_VERSIONING_ENABLED), 0);
    cr_assert_eq(meta_bucket_get(f.ms, "l", &b), 0);
    cr_assert_eq(meta_bucket_enable_object_lock(f.ms, "l", b.id + 1), CAIRN_ENOTFOUND, "another bucket of the name");
    cr_assert_eq(meta_bucket_enable_object_lock(f.ms, "l", b.id), 0);
    cr_assert_eq(meta_bucket_enable_object_lock(f.ms, "l", 0), 0, "again: nothing changes");
    cr_assert_eq(meta_bucket_get(f.ms, "l", &b), 0);
    cr_assert(b.object_lock);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "l", 0, META_VERSIONING_SUSPENDED), CAIRN_EINVAL, "for good");
    cr_assert_eq(meta_bucket_enable_object_lock(f.ms, "nope", 0), CAIRN_ENOTFOUND);
    fx_close(&f);
}

Test(versions, a_delete_marker_hides_the_key_and_removing_it_brings_the_object_back) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_object v1, rep;
    bool had;
    put_version(f.ms, "v", "k", &v1, &had, &rep);
    meta_delete_result res;
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, NULL, 7, NULL, 0, &res), 0);
    cr_assert_eq(res.removed.version_id[0], '\0', "a delete marker removes nothing");
    cr_assert_neq(res.marker.version_id[0], '\0');
    cr_assert(res.marker.delete_marker);
    char marker[33];
    strcpy(marker, res.marker.version_id);
    meta_delete_result_clear(&res);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), CAIRN_ENOTFOUND, "hidden by the marker");
    cr_assert_eq(meta_object_get_current(f.ms, "v", 0, "k", 1, false, &got), 0);
    cr_assert(got.delete_marker);
    cr_assert_eq(got.owner_id, 7);
    meta_object_clear(&got);
    collect lc = {0};
    bool more;
    cr_assert_eq(list_all(f.ms, "v", "", 0, NULL, 0, false, 100, &lc, &more), 0);
    cr_assert_eq(lc.n, 0, "a listing skips a key whose current version is a marker");
    collect_free(&lc);
    /* Deleting again stacks another marker, as S3 does. */
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, NULL, 7, NULL, 0, &res), 0);
    char marker2[33];
    strcpy(marker2, res.marker.version_id);
    meta_delete_result_clear(&res);
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 3);
    cr_assert(c.marker[0] && c.marker[1] && !c.marker[2]);
    /* Removing the markers by id promotes the object again. */
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, marker2, 0, NULL, 0, &res), 0);
    cr_assert(res.removed_marker);
    meta_delete_result_clear(&res);
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), CAIRN_ENOTFOUND, "the older marker is current");
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, marker, 0, NULL, 0, &res), 0);
    meta_delete_result_clear(&res);
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), 0, "the object is current again");
    cr_assert_str_eq(got.version_id, v1.version_id);
    cr_assert(got.is_latest);
    meta_object_clear(&got);
    /* Removing the last version for good empties the key and frees its bytes. */
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, v1.version_id, 0, NULL, 0, &res), 0);
    cr_assert_str_eq(res.removed.version_id, v1.version_id, "its bytes are the caller's to remove");
    meta_delete_result_clear(&res);
    c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, v1.version_id, 0, NULL, 0, &res), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_bucket_delete(f.ms, "v", 0), 0, "empty again");
    fx_close(&f);
}

Test(versions, deleting_the_current_version_by_id_promotes_the_newest_other) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_object v1, v2, v3, rep;
    bool had;
    put_version(f.ms, "v", "k", &v1, &had, &rep);
    put_version(f.ms, "v", "k", &v2, &had, &rep);
    put_version(f.ms, "v", "k", &v3, &had, &rep);
    meta_delete_result res;
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, v3.version_id, 0, NULL, 0, &res), 0);
    meta_delete_result_clear(&res);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, v2.version_id);
    meta_object_clear(&got);
    /* A noncurrent one goes without touching the current. */
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, v1.version_id, 0, NULL, 0, &res), 0);
    meta_delete_result_clear(&res);
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, v2.version_id);
    meta_object_clear(&got);
    /* A new version after a promotion still sorts newest. */
    meta_object v4;
    put_version(f.ms, "v", "k", &v4, &had, &rep);
    bool more;
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.ids[0], v4.version_id);
    cr_assert(c.latest[0] && !c.latest[1]);
    fx_close(&f);
}

Test(versions, suspended_writes_and_deletes_replace_the_null_version) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    meta_object n0, v1, n1, n2, rep;
    bool had;
    put_version(f.ms, "v", "k", &n0, &had, &rep);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    put_version(f.ms, "v", "k", &v1, &had, &rep);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_SUSPENDED), 0);
    /* The null version is noncurrent: the new null version removes it. */
    put_version(f.ms, "v", "k", &n1, &had, &rep);
    cr_assert(had, "the old null version is removed for good");
    cr_assert_str_eq(rep.version_id, n0.version_id);
    meta_object_clear(&rep);
    /* Now the null version is current: replaced in place. */
    put_version(f.ms, "v", "k", &n2, &had, &rep);
    cr_assert(had);
    cr_assert_str_eq(rep.version_id, n1.version_id);
    meta_object_clear(&rep);
    bool more;
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.ids[0], n2.version_id);
    cr_assert(c.null[0] && c.latest[0]);
    cr_assert_str_eq(c.ids[1], v1.version_id, "the enabled-era version stays");
    /* A delete makes a null marker, removing the null version. */
    meta_delete_result res;
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, NULL, 1, NULL, 0, &res), 0);
    cr_assert_str_eq(res.removed.version_id, n2.version_id);
    cr_assert(res.marker.null_version && res.marker.delete_marker);
    meta_delete_result_clear(&res);
    c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 2);
    cr_assert(c.marker[0] && c.null[0]);
    cr_assert_str_eq(c.ids[1], v1.version_id);
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, "null", 0, NULL, 0, &res), 0);
    cr_assert(res.removed_marker);
    meta_delete_result_clear(&res);
    meta_object got;
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, v1.version_id);
    meta_object_clear(&got);
    fx_close(&f);
}

/* A delete marker's id chosen by the caller (who names it in the
 * notifications queued with the delete, before the commit): the marker is
 * stored under it, on both backends, alone or in a DeleteObjects batch. */
Test(versions, a_delete_marker_takes_the_id_its_caller_chose) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_object v1, rep;
    bool had, more;
    put_version(f.ms, "v", "k", &v1, &had, &rep);
    const char *mine = "0123456789abcdef0123456789abcdef";
    meta_delete_result res;
    /* Ids no version could have are refused, and nothing changes. */
    const char *bad[] = {"null", "0123456789ABCDEF0123456789ABCDEF", "0123", "0123456789abcdef0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "k", 1, NULL, 7, bad[i], NULL, NULL, 0, &res),
                     CAIRN_EINVAL, "%s", bad[i]);
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "k", 1, NULL, 7, mine, NULL, NULL, 0, &res), 0);
    cr_assert_str_eq(res.marker.version_id, mine);
    cr_assert(res.marker.delete_marker && !res.marker.null_version);
    meta_delete_result_clear(&res);
    meta_object got;
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, mine, false, &got), 0);
    cr_assert(got.delete_marker && got.is_latest);
    meta_object_clear(&got);
    c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.ids[0], mine);
    cr_assert(c.marker[0] && c.latest[0]);
    /* A batch: each item's marker takes its own id; one bad id refuses the batch whole. */
    put_version(f.ms, "v", "a", &v1, &had, &rep);
    put_version(f.ms, "v", "b", &v1, &had, &rep);
    const char *ids[] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"};
    meta_delete_item items[2];
    memset(items, 0, sizeof items);
    items[0] = (meta_delete_item){.key = "a", .key_len = 1, .owner_id = 7, .marker_id = ids[0]};
    items[1] = (meta_delete_item){.key = "b", .key_len = 1, .owner_id = 7, .marker_id = "null"};
    cr_assert_eq(meta_object_delete_many(f.ms, "v", 0, items, 2), CAIRN_EINVAL);
    c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 4, "nothing was deleted");
    items[1].marker_id = ids[1];
    cr_assert_eq(meta_object_delete_many(f.ms, "v", 0, items, 2), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(items[i].rc, 0);
        cr_assert_str_eq(items[i].marker.version_id, ids[i]);
        meta_object_clear(&items[i].deleted);
        meta_object_clear(&items[i].marker);
        cr_assert_eq(meta_object_get_version(f.ms, "v", 0, i ? "b" : "a", 1, ids[i], false, &got), 0);
        cr_assert(got.delete_marker && got.is_latest);
        meta_object_clear(&got);
    }
    /* Suspended: the marker is the null version, kept under the chosen id. */
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_SUSPENDED), 0);
    const char *third = "cccccccccccccccccccccccccccccccc";
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "k", 1, NULL, 7, third, NULL, NULL, 0, &res), 0);
    cr_assert_str_eq(res.marker.version_id, third);
    cr_assert(res.marker.null_version);
    meta_delete_result_clear(&res);
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, "null", false, &got), 0);
    cr_assert(got.delete_marker);
    meta_object_clear(&got);
    /* Where no marker is made the id goes unused. */
    mk_bucket(f.ms, "u", 1);
    put_version(f.ms, "u", "k", &v1, &had, &rep);
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "u", 0, "k", 1, NULL, 7, mine, NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.marker.version_id[0], '\0');
    cr_assert_str_eq(res.removed.version_id, v1.version_id);
    meta_delete_result_clear(&res);
    fx_close(&f);
}

Test(versions, listing_pages_by_key_and_version_with_a_prefix) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    const char *keys[] = {"a/1", "a/2", "b/1"};
    meta_object o, rep;
    bool had;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++) put_version(f.ms, "v", keys[k], &o, &had, &rep);
    bool more;
    vcollect all = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(all.n, 9);
    /* Pages of two, each starting after the last row of the one before. */
    int seen = 0;
    char after_key[32] = "";
    int64_t after_seq = 0;
    bool first = true;
    do {
        vcollect p = versions_of(f.ms, "v", NULL, first ? NULL : after_key, after_seq, 2, &more);
        for (int i = 0; i < p.n; i++, seen++) {
            cr_assert_str_eq(p.keys[i], all.keys[seen]);
            cr_assert_str_eq(p.ids[i], all.ids[seen]);
        }
        if (p.n) {
            strcpy(after_key, p.keys[p.n - 1]);
            after_seq = p.seqs[p.n - 1];
        }
        first = false;
    } while (more);
    cr_assert_eq(seen, 9);
    vcollect a = versions_of(f.ms, "v", "a/", NULL, 0, 100, &more);
    cr_assert_eq(a.n, 6);
    vcollect after = versions_of(f.ms, "v", NULL, "a/2", 0, 100, &more);
    cr_assert_eq(after.n, 3, "after_seq 0: after every version of the key");
    cr_assert_str_eq(after.keys[0], "b/1");
    fx_close(&f);
}

typedef struct {
    meta_store *ms;
    int ok;
} vracer;

static void *vrace_main(void *arg) {
    vracer *r = arg;
    for (int i = 0; i < 10; i++) {
        meta_object o = mk_obj("v", "hot", 3, 1);
        if (meta_object_put(r->ms, &o, NULL, NULL) == 0) r->ok++;
    }
    return NULL;
}

/* Concurrent writes to one key of a versioned bucket each make their own
 * version, and exactly one of them is current. */
Test(versions, concurrent_puts_each_make_a_version_and_one_is_current, .timeout = 60) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    pthread_t th[6];
    vracer r[6];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 6; i++) {
        r[i].ms = f.ms;
        cr_assert_eq(pthread_create(&th[i], NULL, vrace_main, &r[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        ok += r[i].ok;
    }
    cr_assert_eq(ok, 60);
    bool more;
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 64, &more);
    cr_assert_eq(c.n, 60);
    int latest = 0;
    for (int i = 0; i < c.n; i++) {
        latest += c.latest[i];
        if (i) cr_assert_gt(c.seqs[i - 1], c.seqs[i], "newest first, no two alike");
    }
    cr_assert_eq(latest, 1);
    cr_assert(c.latest[0], "the current one is the newest");
    fx_close(&f);
}

Test(versions, set_headers_changes_one_version_and_only_its_headers) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_object v1, v2, rep;
    bool had;
    put_version(f.ms, "v", "k", &v1, &had, &rep);
    put_version(f.ms, "v", "k", &v2, &had, &rep);
    cr_assert_eq(meta_object_set_headers(f.ms, "v", 0, "k", 1, v1.version_id, "{\"x-amz-tagging\":\"a=1\"}"), 0);
    meta_object got;
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "k", 1, v1.version_id, false, &got), 0);
    cr_assert_str_eq(got.headers_json, "{\"x-amz-tagging\":\"a=1\"}");
    cr_assert_eq(got.size, v1.size);
    cr_assert_str_eq(got.etag, v1.etag);
    meta_object_clear(&got);
    cr_assert_eq(meta_object_get(f.ms, "v", 0, "k", 1, false, &got), 0);
    cr_assert_str_eq(got.version_id, v2.version_id, "the current version is another, untouched");
    cr_assert_str_eq(got.headers_json, "{\"content-type\":\"text/plain\"}");
    meta_object_clear(&got);
    cr_assert_eq(meta_object_set_headers(f.ms, "v", 0, "k", 1, "0123456789abcdef0123456789abcdef", "{}"),
                 CAIRN_ENOTFOUND);
    cr_assert_eq(meta_object_set_headers(f.ms, "v", 0, "other", 5, v1.version_id, "{}"), CAIRN_ENOTFOUND,
                 "the version of another key");
    int64_t wrong_id = bucket_id_of(f.ms, "v") + 1000;
    cr_assert_eq(meta_object_set_headers(f.ms, "v", wrong_id, "k", 1, v1.version_id, "{}"), CAIRN_ENOTFOUND,
                 "another bucket of the name");
    cr_assert_eq(meta_object_set_headers(f.ms, "v", 0, "k", 1, "", "{}"), CAIRN_EINVAL);
    fx_close(&f);
}

/* ---- object lock: enforced inside the delete's transaction ------------------------------------- */

/* A version of key carrying headers (its lock state), in an enabled bucket. */
static meta_object put_locked(meta_store *ms, const char *bucket, const char *key, const char *headers) {
    meta_object o = mk_obj(bucket, key, strlen(key), 10);
    o.headers_json = (char *)headers;
    meta_object rep;
    bool had;
    cr_assert_eq(meta_object_put(ms, &o, &rep, &had), 0);
    o.headers_json = NULL;
    return o;
}

#define T2030 "2030-01-01T00:00:00.000Z"
#define MS2030 1893456000000LL

Test(objectlock, lock_state_reads_the_reserved_members) {
    meta_lock_state st;
    cr_assert_eq(meta_lock_state_of(NULL, &st), 0);
    cr_assert_eq(st.mode, META_LOCK_NONE);
    cr_assert_eq(meta_lock_state_of("{\"x-amz-meta-a\":\"b\"}", &st), 0);
    cr_assert_eq(st.mode, META_LOCK_NONE);
    cr_assert_not(st.legal_hold);
    cr_assert_eq(meta_lock_state_of("{\"x-amz-object-lock-mode\":\"COMPLIANCE\","
                                    "\"x-amz-object-lock-retain-until-date\":\"" T2030 "\","
                                    "\"x-amz-object-lock-legal-hold\":\"ON\"}", &st), 0);
    cr_assert_eq(st.mode, META_LOCK_COMPLIANCE);
    cr_assert_eq(st.until_ms, MS2030);
    cr_assert(st.legal_hold);
    /* A user value that merely mentions the names is no lock. */
    cr_assert_eq(meta_lock_state_of("{\"x-amz-meta-a\":\"x-amz-object-lock-mode\"}", &st), 0);
    cr_assert_eq(st.mode, META_LOCK_NONE);
    /* Unreadable lock state is an error (enforcement fails closed on it). */
    cr_assert_eq(meta_lock_state_of("{\"x-amz-object-lock-mode\":\"GOVERNANCE\"}", &st), CAIRN_EINVAL);
    cr_assert_eq(meta_lock_state_of("{\"x-amz-object-lock-mode\":\"SOFT\","
                                    "\"x-amz-object-lock-retain-until-date\":\"" T2030 "\"}", &st), CAIRN_EINVAL);
    cr_assert_eq(meta_lock_state_of("{\"x-amz-object-lock-mode\":\"GOVERNANCE\","
                                    "\"x-amz-object-lock-retain-until-date\":\"soon\"}", &st), CAIRN_EINVAL);
    cr_assert_eq(meta_lock_state_of("{\"x-amz-object-lock-legal-hold\":\"MAYBE\"}", &st), CAIRN_EINVAL);
    cr_assert_eq(meta_lock_state_of("{\"x-amz-object-lock-legal-hold\":", &st), CAIRN_EINVAL);
    meta_lock_state gov = {.mode = META_LOCK_GOVERNANCE, .until_ms = 2000};
    meta_lock_check before = {.now_ms = 1999}, after = {.now_ms = 2000}, bypass = {.now_ms = 1999, .bypass_governance = true};
    cr_assert(meta_lock_forbids(&gov, &before));
    cr_assert_not(meta_lock_forbids(&gov, &after), "retention ends at its date");
    cr_assert_not(meta_lock_forbids(&gov, &bypass));
    meta_lock_state comp = {.mode = META_LOCK_COMPLIANCE, .until_ms = 2000};
    cr_assert(meta_lock_forbids(&comp, &bypass), "nothing bypasses COMPLIANCE");
    cr_assert_not(meta_lock_forbids(&comp, &after));
    meta_lock_state hold = {.legal_hold = true};
    cr_assert(meta_lock_forbids(&hold, &bypass), "nor a legal hold");
    meta_lock_state far = {.mode = META_LOCK_GOVERNANCE, .until_ms = MS2030};
    cr_assert(meta_lock_forbids(&far, NULL), "NULL: the clock, no bypass");
}

Test(objectlock, a_locked_version_is_not_removed_by_id) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_object gov = put_locked(f.ms, "v", "g", "{\"x-amz-object-lock-mode\":\"GOVERNANCE\","
                                                "\"x-amz-object-lock-retain-until-date\":\"" T2030 "\"}");
    meta_object comp = put_locked(f.ms, "v", "c", "{\"x-amz-object-lock-mode\":\"COMPLIANCE\","
                                                 "\"x-amz-object-lock-retain-until-date\":\"" T2030 "\"}");
    meta_object hold = put_locked(f.ms, "v", "h", "{\"x-amz-object-lock-legal-hold\":\"ON\"}");
    meta_object bad = put_locked(f.ms, "v", "x", "{\"x-amz-object-lock-mode\":\"GOVERNANCE\"}");
    meta_delete_result res;
    meta_lock_check now = {.now_ms = MS2030 - 1};
    meta_lock_check byp = {.now_ms = MS2030 - 1, .bypass_governance = true};
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "g", 1, gov.version_id, 0, NULL, 0, &res), CAIRN_ELOCKED,
                 "the plain call is the strictest");
    cr_assert_eq(res.removed.version_id[0], '\0');
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "g", 1, gov.version_id, 0, NULL, &now, NULL, 0, &res),
                 CAIRN_ELOCKED);
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "c", 1, comp.version_id, 0, NULL, &byp, NULL, 0, &res),
                 CAIRN_ELOCKED, "COMPLIANCE is never bypassed");
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "h", 1, hold.version_id, 0, NULL, &byp, NULL, 0, &res),
                 CAIRN_ELOCKED, "a legal hold is never bypassed");
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "x", 1, bad.version_id, 0, NULL, &byp, NULL, 0, &res),
                 CAIRN_ELOCKED, "unreadable lock state fails closed");
    meta_object got;
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "c", 1, comp.version_id, false, &got), 0, "still there");
    meta_object_clear(&got);
    /* A delete without an id only adds a marker: allowed. */
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "c", 1, NULL, 1, NULL, 0, &res), 0);
    cr_assert_neq(res.marker.version_id[0], '\0');
    meta_delete_result_clear(&res);
    /* GOVERNANCE yields to the bypass; the rest to their date passing. */
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "g", 1, gov.version_id, 0, NULL, &byp, NULL, 0, &res), 0);
    cr_assert_str_eq(res.removed.version_id, gov.version_id);
    meta_delete_result_clear(&res);
    meta_lock_check later = {.now_ms = MS2030};
    cr_assert_eq(meta_object_delete_version_lock(f.ms, "v", 0, "c", 1, comp.version_id, 0, NULL, &later, NULL, 0, &res), 0);
    meta_delete_result_clear(&res);
    /* Lifting the hold (compare-and-set on what was read) frees it. */
    const char *held = "{\"x-amz-object-lock-legal-hold\":\"ON\"}";
    cr_assert_eq(meta_object_set_headers_if(f.ms, "v", 0, "h", 1, hold.version_id, "{}",
                                            "{\"x-amz-object-lock-legal-hold\":\"OFF\"}"),
                 CAIRN_ENOTFOUND, "headers that changed since they were read are not overwritten");
    cr_assert_eq(meta_object_set_headers_if(f.ms, "v", 0, "h", 1, hold.version_id, held,
                                            "{\"x-amz-object-lock-legal-hold\":\"OFF\"}"), 0);
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "h", 1, hold.version_id, 0, NULL, 0, &res), 0);
    meta_delete_result_clear(&res);
    fx_close(&f);
}

Test(objectlock, delete_many_refuses_locked_versions_and_deletes_the_rest) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    meta_object gov = put_locked(f.ms, "v", "g", "{\"x-amz-object-lock-mode\":\"GOVERNANCE\","
                                                "\"x-amz-object-lock-retain-until-date\":\"" T2030 "\"}");
    meta_object plain = put_locked(f.ms, "v", "p", "{}");
    meta_object gov2 = put_locked(f.ms, "v", "g2", "{\"x-amz-object-lock-mode\":\"GOVERNANCE\","
                                                  "\"x-amz-object-lock-retain-until-date\":\"" T2030 "\"}");
    meta_delete_item items[3];
    memset(items, 0, sizeof items);
    items[0] = (meta_delete_item){.key = "g", .key_len = 1, .version_id = gov.version_id};
    items[1] = (meta_delete_item){.key = "p", .key_len = 1, .version_id = plain.version_id};
    items[2] = (meta_delete_item){.key = "g2", .key_len = 2, .version_id = gov2.version_id,
                                  .lock = {.bypass_governance = true}};
    cr_assert_eq(meta_object_delete_many(f.ms, "v", 0, items, 3), 0);
    cr_assert_eq(items[0].rc, CAIRN_ELOCKED);
    cr_assert_eq(items[0].deleted.version_id[0], '\0');
    cr_assert_eq(items[1].rc, 0);
    cr_assert_str_eq(items[1].deleted.version_id, plain.version_id);
    cr_assert_eq(items[2].rc, 0, "bypass is per item");
    for (int i = 0; i < 3; i++) {
        meta_object_clear(&items[i].deleted);
        meta_object_clear(&items[i].marker);
    }
    meta_object got;
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "g", 1, gov.version_id, false, &got), 0);
    meta_object_clear(&got);
    cr_assert_eq(meta_object_get_version(f.ms, "v", 0, "p", 1, plain.version_id, false, &got), CAIRN_ENOTFOUND);
    fx_close(&f);
}

Test(objectlock, no_removal_path_drops_a_locked_null_version) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "v", 1);
    /* Off: a locked version cannot be replaced or deleted in place. */
    put_locked(f.ms, "v", "k", "{\"x-amz-object-lock-legal-hold\":\"ON\"}");
    meta_object o = mk_obj("v", "k", 1, 10), rep;
    bool had;
    cr_assert_eq(meta_object_put(f.ms, &o, &rep, &had), CAIRN_ELOCKED);
    meta_object del;
    cr_assert_eq(meta_object_delete(f.ms, "v", 0, "k", 1, &del), CAIRN_ELOCKED);
    /* Suspended: neither a put nor a delete drops it as the null version. */
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_ENABLED), 0);
    put_locked(f.ms, "v", "k", "{}");
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "v", 0, META_VERSIONING_SUSPENDED), 0);
    o = mk_obj("v", "k", 1, 10);
    cr_assert_eq(meta_object_put(f.ms, &o, &rep, &had), CAIRN_ELOCKED);
    meta_delete_result res;
    cr_assert_eq(meta_object_delete_version(f.ms, "v", 0, "k", 1, NULL, 1, NULL, 0, &res), CAIRN_ELOCKED);
    bool more;
    vcollect c = versions_of(f.ms, "v", NULL, NULL, 0, 100, &more);
    cr_assert_eq(c.n, 2, "nothing changed");
    fx_close(&f);
}

/* ---- the audit outbox (migration 18) ------------------------------------------------------ */

static meta_audit_outbox outbox_row(const char *origin, const char *event, int64_t time_ms) {
    return (meta_audit_outbox){.origin = origin, .event = event, .len = strlen(event), .time_ms = time_ms};
}

/* The events of origin's rows (and adopted ones), in order, joined by '|'. */
static const char *outbox_events(meta_store *ms, const char *origin, int64_t adopt_before_ms, int limit,
                                 int64_t *ids, int *n) {
    static char out[4096];
    meta_outbox_row *rows = NULL;
    int got = -1;
    cr_assert_eq(meta_audit_outbox_read(ms, origin, adopt_before_ms, limit, &rows, &got), 0);
    out[0] = '\0';
    for (int i = 0; i < got; i++) {
        cr_assert_eq(rows[i].len, strlen(rows[i].event));
        strcat(out, rows[i].event);
        strcat(out, "|");
        if (ids) ids[i] = rows[i].id;
        if (i > 0) cr_assert_gt(rows[i].id, rows[i - 1].id, "rows come in id order");
    }
    if (n) *n = got;
    meta_outbox_rows_free(rows, got);
    return out;
}

Test(audit_outbox, a_write_stores_its_event_in_its_own_transaction_and_a_failed_one_none) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    meta_audit_outbox put_ev = outbox_row("gw-a", "{\"e\":\"put\"}", 100);
    meta_object o = mk_obj("b", "k", 1, 1);
    o.audit = &put_ev;
    cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    /* A put whose condition fails changes nothing: no event row either. */
    meta_audit_outbox failed = outbox_row("gw-a", "{\"e\":\"failed\"}", 101);
    meta_object c = mk_obj("b", "k", 1, 1);
    c.audit = &failed;
    c.cond = META_PUT_IF_ABSENT;
    cr_assert_eq(meta_object_put(f.ms, &c, NULL, NULL), CAIRN_EPRECOND);
    /* Nor does a put into a bucket that is not there. */
    meta_object gone = mk_obj("nobucket", "k", 1, 1);
    gone.audit = &failed;
    cr_assert_neq(meta_object_put(f.ms, &gone, NULL, NULL), 0);
    meta_audit_outbox del_ev = outbox_row("gw-a", "{\"e\":\"delete\"}", 102);
    meta_delete_result res;
    cr_assert_eq(meta_object_delete_audited(f.ms, "b", 0, "k", 1, NULL, 1, NULL, NULL, NULL, 0, &del_ev, &res), 0);
    meta_delete_result_clear(&res);
    cr_assert_neq(meta_object_delete_audited(f.ms, "nobucket", 0, "k", 1, NULL, 1, NULL, NULL, NULL, 0, &failed, &res),
                  0);
    meta_delete_result_clear(&res);
    int64_t count = -1, oldest = -1;
    cr_assert_eq(meta_audit_outbox_count(f.ms, "gw-a", &count, &oldest), 0);
    cr_expect_eq(count, 2);
    cr_expect_eq(oldest, 100);
    int64_t ids[16];
    int n = 0;
    cr_expect_str_eq(outbox_events(f.ms, "gw-a", 0, 100, ids, &n), "{\"e\":\"put\"}|{\"e\":\"delete\"}|");
    cr_assert_eq(n, 2);
    cr_assert_eq(meta_audit_outbox_delete(f.ms, ids, 1), 0);
    cr_expect_str_eq(outbox_events(f.ms, "gw-a", 0, 100, NULL, NULL), "{\"e\":\"delete\"}|");
    cr_assert_eq(meta_audit_outbox_delete(f.ms, ids, 2), 0, "ids already gone are no error");
    cr_assert_eq(meta_audit_outbox_count(f.ms, "gw-a", &count, &oldest), 0);
    cr_expect_eq(count, 0);
    cr_expect_eq(oldest, 0);
    fx_close(&f);
}

Test(audit_outbox, each_origin_reads_its_own_rows_and_adopts_only_old_ones_of_others) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    const char *origins[] = {"gw-a", "gw-b", "gw-a", "gw-b"};
    const int64_t times[] = {10, 20, 30, 40};
    for (int i = 0; i < 4; i++) {
        char ev[32];
        snprintf(ev, sizeof ev, "{\"n\":%d}", i);
        meta_audit_outbox a = outbox_row(origins[i], ev, times[i]);
        meta_object o = mk_obj("b", "k", 1, 1);
        o.audit = &a;
        cr_assert_eq(meta_object_put(f.ms, &o, NULL, NULL), 0);
    }
    cr_expect_str_eq(outbox_events(f.ms, "gw-a", 0, 100, NULL, NULL), "{\"n\":0}|{\"n\":2}|");
    cr_expect_str_eq(outbox_events(f.ms, "gw-a", 21, 100, NULL, NULL), "{\"n\":0}|{\"n\":1}|{\"n\":2}|",
                     "gw-b's row older than the adoption age");
    cr_expect_str_eq(outbox_events(f.ms, "gw-c", 0, 100, NULL, NULL), "");
    cr_expect_str_eq(outbox_events(f.ms, "gw-a", 100, 3, NULL, NULL), "{\"n\":0}|{\"n\":1}|{\"n\":2}|",
                     "at most limit rows");
    int64_t count = 0, oldest = 0;
    cr_assert_eq(meta_audit_outbox_count(f.ms, "gw-b", &count, &oldest), 0);
    cr_expect_eq(count, 2);
    cr_expect_eq(oldest, 20);
    fx_close(&f);
}

Test(audit_outbox, bad_arguments_are_refused_before_anything_is_written) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 1);
    char long_origin[META_OUTBOX_ORIGIN_MAX + 2];
    memset(long_origin, 'o', sizeof long_origin - 1);
    long_origin[sizeof long_origin - 1] = '\0';
    meta_audit_outbox bad[] = {
        outbox_row("", "{}", 1),
        outbox_row(long_origin, "{}", 1),
        {.origin = "gw", .event = NULL, .len = 2},
        {.origin = "gw", .event = "{}", .len = 0},
        {.origin = "gw", .event = "{}\0x", .len = 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        meta_object o = mk_obj("b", "k", 1, 1);
        o.audit = &bad[i];
        cr_expect_eq(meta_object_put(f.ms, &o, NULL, NULL), CAIRN_EINVAL, "bad row %zu", i);
        meta_delete_result res;
        cr_expect_eq(meta_object_delete_audited(f.ms, "b", 0, "k", 1, NULL, 1, NULL, NULL, NULL, 0, &bad[i], &res),
                     CAIRN_EINVAL, "bad row %zu", i);
    }
    meta_object o = mk_obj("b", "k", 1, 1);
    cr_expect_eq(meta_object_get(f.ms, "b", 0, "k", 1, false, &o), CAIRN_ENOTFOUND, "nothing was written");
    meta_outbox_row *rows = NULL;
    int n = 0;
    cr_expect_eq(meta_audit_outbox_read(f.ms, "", 0, 10, &rows, &n), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_outbox_read(f.ms, "gw", 0, 0, &rows, &n), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_outbox_read(f.ms, "gw", 0, 10001, &rows, &n), CAIRN_EINVAL);
    int64_t id = 1;
    cr_expect_eq(meta_audit_outbox_delete(f.ms, &id, 0), CAIRN_EINVAL);
    cr_expect_eq(meta_audit_outbox_delete(f.ms, NULL, 1), CAIRN_EINVAL);
    int64_t count, oldest;
    cr_expect_eq(meta_audit_outbox_count(f.ms, NULL, &count, &oldest), CAIRN_EINVAL);
    fx_close(&f);
}

/* ---- the key manager's keys (migration 17) ------------------------------------------------- */

static void fill_sealed(uint8_t s[META_KMS_SEALED], uint8_t v) { memset(s, v, META_KMS_SEALED); }

static int collect_kms_key(void *ud, const meta_kms_key *k) {
    buf_t *b = ud;
    buf_printf(b, "%s:%d:%d:%s;", k->id, k->enabled ? 1 : 0, k->version, k->description);
    return 0;
}

static int stop_at_first_kms_key(void *ud, const meta_kms_key *k) {
    (void)k;
    (*(int *)ud)++;
    return 1;
}

Test(meta, kms_keys_are_made_read_listed_disabled_and_rotated) {
    fx f;
    fx_open(&f, 2);
    uint8_t s1[META_KMS_SEALED], s2[META_KMS_SEALED], got[META_KMS_SEALED];
    fill_sealed(s1, 1);
    fill_sealed(s2, 2);
    cr_assert_eq(meta_kms_key_create(f.ms, "kb", "second", s1, 100), 0);
    cr_assert_eq(meta_kms_key_create(f.ms, "ka", "", s1, 200), 0);
    cr_expect_eq(meta_kms_key_create(f.ms, "ka", "again", s2, 300), CAIRN_EEXIST);
    cr_expect_eq(meta_kms_key_create(f.ms, "", "x", s1, 1), CAIRN_EINVAL);
    char longid[META_KMS_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    cr_expect_eq(meta_kms_key_create(f.ms, longid, "x", s1, 1), CAIRN_EINVAL);
    char longdesc[META_KMS_DESC_MAX + 2];
    memset(longdesc, 'd', sizeof longdesc - 1);
    longdesc[sizeof longdesc - 1] = 0;
    cr_expect_eq(meta_kms_key_create(f.ms, "kc", longdesc, s1, 1), CAIRN_EINVAL);

    meta_kms_key k;
    cr_assert_eq(meta_kms_key_get(f.ms, "kb", &k), 0);
    cr_expect_str_eq(k.id, "kb");
    cr_expect(k.enabled);
    cr_expect_str_eq(k.description, "second");
    cr_expect_eq(k.created_ms, 100);
    cr_expect_eq(k.version, 1);
    cr_expect_eq(meta_kms_key_get(f.ms, "none", &k), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_kms_key_get(f.ms, longid, &k), CAIRN_ENOTFOUND);

    cr_assert_eq(meta_kms_version_get(f.ms, "kb", 1, got), 0);
    cr_expect_eq(memcmp(got, s1, sizeof got), 0);
    cr_expect_eq(meta_kms_version_get(f.ms, "kb", 2, got), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_kms_version_get(f.ms, "kb", 0, got), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_kms_version_get(f.ms, "none", 1, got), CAIRN_ENOTFOUND);

    /* A rotation adds version 2; the same number again is a lost race. */
    cr_assert_eq(meta_kms_version_add(f.ms, "kb", 2, s2, 500), 0);
    cr_expect_eq(meta_kms_version_add(f.ms, "kb", 2, s1, 600), CAIRN_EEXIST);
    cr_expect_eq(meta_kms_version_add(f.ms, "none", 1, s1, 600), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_kms_version_add(f.ms, "kb", 0, s1, 600), CAIRN_EINVAL);
    cr_assert_eq(meta_kms_version_get(f.ms, "kb", 2, got), 0);
    cr_expect_eq(memcmp(got, s2, sizeof got), 0);
    cr_assert_eq(meta_kms_version_get(f.ms, "kb", 1, got), 0);
    cr_expect_eq(memcmp(got, s1, sizeof got), 0, "the old version stays");
    cr_assert_eq(meta_kms_key_get(f.ms, "kb", &k), 0);
    cr_expect_eq(k.version, 2);

    cr_assert_eq(meta_kms_key_set_enabled(f.ms, "ka", false), 0);
    cr_expect_eq(meta_kms_key_set_enabled(f.ms, "none", false), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_kms_key_get(f.ms, "ka", &k), 0);
    cr_expect_not(k.enabled);

    buf_t b;
    buf_init(&b);
    cr_assert_eq(meta_kms_key_list(f.ms, collect_kms_key, &b), 0);
    cr_expect_str_eq(b.data, "ka:0:1:;kb:1:2:second;");
    buf_free(&b);
    int seen = 0;
    cr_assert_eq(meta_kms_key_list(f.ms, stop_at_first_kms_key, &seen), 0);
    cr_expect_eq(seen, 1);
    cr_expect_eq(meta_kms_key_list(f.ms, NULL, NULL), CAIRN_EINVAL);
    cr_assert_eq(meta_kms_key_set_enabled(f.ms, "ka", true), 0);
    cr_assert_eq(meta_kms_key_get(f.ms, "ka", &k), 0);
    cr_expect(k.enabled);
    fx_close(&f);
}

/* A re-seal that changes every sealed value, counting calls. */
typedef struct {
    int materials, secrets, fail_at;
} reseal_ctx;

static int reseal_material_cb(void *ud, const char *key_id, int version, const uint8_t old[META_KMS_SEALED],
                              uint8_t out[META_KMS_SEALED]) {
    (void)key_id;
    (void)version;
    reseal_ctx *c = ud;
    if (++c->materials == c->fail_at) return CAIRN_EAUTH;
    for (int i = 0; i < META_KMS_SEALED; i++) out[i] = old[i] ^ 0xff;
    return 0;
}

static int reseal_secret_cb(void *ud, const char *what, const char *name, const char *old, char *out, size_t cap) {
    reseal_ctx *c = ud;
    c->secrets++;
    snprintf(out, cap, "%s:%s:%s", what[0] == 'a' ? "ak" : "nt", name, old);
    return 0;
}

Test(meta, master_reseal_rewrites_every_sealed_value_in_one_transaction) {
    fx f;
    fx_open(&f, 2);
    int64_t uid = mk_user(f.ms, "alice");
    meta_key ak = {.user_id = uid, .active = true};
    strcpy(ak.access_key, "AK1");
    strcpy(ak.sealed_secret, "old1");
    cr_assert_eq(meta_key_create(f.ms, &ak), 0);
    meta_notify_target t = {.max_attempts = 3};
    strcpy(t.name, "hook");
    strcpy(t.url, "http://127.0.0.1:1/x");
    strcpy(t.secret, "olds");
    cr_assert_eq(meta_notify_target_add(f.ms, &t), 0);
    strcpy(t.name, "plain");
    t.secret[0] = 0;
    cr_assert_eq(meta_notify_target_add(f.ms, &t), 0);
    uint8_t s[META_KMS_SEALED], got[META_KMS_SEALED];
    fill_sealed(s, 0x11);
    cr_assert_eq(meta_kms_key_create(f.ms, "k1", "", s, 1), 0);
    cr_assert_eq(meta_kms_version_add(f.ms, "k1", 2, s, 2), 0);

    /* A callback that fails rolls back everything, even what came before it. */
    reseal_ctx c = {.fail_at = 2};
    meta_reseal r = {reseal_material_cb, reseal_secret_cb, &c};
    int64_t n = -1;
    cr_expect_eq(meta_master_reseal(f.ms, &r, &n), CAIRN_EAUTH);
    cr_expect_eq(n, 0);
    cr_assert_eq(meta_kms_version_get(f.ms, "k1", 1, got), 0);
    cr_expect_eq(got[0], 0x11, "the first version's new seal was rolled back");

    c = (reseal_ctx){0};
    cr_assert_eq(meta_master_reseal(f.ms, &r, &n), 0);
    cr_expect_eq(n, 4, "two versions, one access key, one target with a secret");
    cr_expect_eq(c.materials, 2);
    cr_expect_eq(c.secrets, 2);
    for (int v = 1; v <= 2; v++) {
        cr_assert_eq(meta_kms_version_get(f.ms, "k1", v, got), 0);
        cr_expect_eq(got[0], 0xee);
    }
    meta_key k;
    cr_assert_eq(meta_key_get(f.ms, "AK1", &k), 0);
    cr_expect_str_eq(k.sealed_secret, "ak:AK1:old1");
    cr_assert_eq(meta_notify_target_get(f.ms, "hook", &t), 0);
    cr_expect_str_eq(t.secret, "nt:hook:olds");
    cr_assert_eq(meta_notify_target_get(f.ms, "plain", &t), 0);
    cr_expect_str_eq(t.secret, "", "an unsigned target stays unsigned");
    cr_expect_eq(meta_master_reseal(f.ms, NULL, NULL), CAIRN_EINVAL);
    fx_close(&f);
}

Test(meta, upload_headers_change_only_while_they_are_what_the_caller_read) {
    fx f;
    fx_open(&f, 2);
    mk_bucket(f.ms, "b", 3);
    mk_upload_at(f.ms, "b", 0, "k", "up1", 1);
    const char *was = "{\"content-type\":\"a/b\"}";
    cr_expect_eq(meta_upload_set_headers_if(f.ms, "up1", "{}", "{\"x\":\"1\"}"), CAIRN_ENOTFOUND);
    cr_assert_eq(meta_upload_set_headers_if(f.ms, "up1", was, "{\"x\":\"2\"}"), 0);
    cr_expect_eq(meta_upload_set_headers_if(f.ms, "up1", was, "{\"x\":\"3\"}"), CAIRN_ENOTFOUND, "lost to the first");
    cr_expect_eq(meta_upload_set_headers_if(f.ms, "none", was, "{}"), CAIRN_ENOTFOUND);
    cr_expect_eq(meta_upload_set_headers_if(f.ms, NULL, was, "{}"), CAIRN_EINVAL);
    meta_upload u;
    cr_assert_eq(meta_upload_get(f.ms, "up1", &u), 0);
    cr_expect_str_eq(u.headers_json, "{\"x\":\"2\"}");
    meta_upload_clear(&u);
    fx_close(&f);
}
