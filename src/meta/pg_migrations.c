/*
 * pg_migrations.c — versioned schema migrations for the PostgreSQL metadata
 * store: the same versions, under the same names (meta_migration_name), as
 * migrations.c's SQLite schema, written in PostgreSQL's dialect.
 *
 * Each step is {up_sql, down_sql}; applied versions are recorded in
 * schema_migrations exactly as on SQLite (with the SHA-256 of the up text
 * that ran), so the current version is max(version) and an empty database
 * is 0.  meta_migrate moves one step per transaction: DDL is transactional
 * in PostgreSQL, so a failing step rolls back whole and leaves the previous
 * version in place.  Each step's transaction first takes a
 * transaction-level advisory lock (pg_advisory_xact_lock) and then reads the
 * version and checks every applied step's checksum (schema.c: the drift
 * rule): several processes migrating one database at once (gateways
 * starting together) queue on the lock, and each step runs exactly once.
 *
 * Dialect choices (the SQLite file explains the schema itself):
 *  - object keys, upload keys and completed-upload keys are bytea: their
 *    btree order is memcmp then length, SQLite's BINARY order, and they hold
 *    any bytes a client sends.  Stored headers (headers_json) and error texts
 *    (last_error) are bytea too: they carry a client's header bytes and
 *    messages that may quote keys, which need not be valid UTF-8.
 *  - every other text column that is compared or ordered is COLLATE "C", so
 *    ORDER BY and range scans are bytewise whatever the database's locale.
 *  - ids are bigserial: a sequence never hands out an id twice.
 *  - object_parts.offset is quoted: OFFSET is reserved in PostgreSQL.
 *
 * Rules for adding a migration: add it here and in migrations.c, under the
 * same version and name, and never edit a released one.
 */
#include "meta/meta.h"
#include "meta/pg_int.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *up_sql;
    const char *down_sql;
} pg_migration;

static const char up_v1[] =
    "CREATE TABLE users("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT COLLATE \"C\" NOT NULL UNIQUE,"
    "  display_name TEXT COLLATE \"C\" NOT NULL DEFAULT '',"
    "  is_root BOOLEAN NOT NULL DEFAULT false,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE access_keys("
    "  access_key TEXT COLLATE \"C\" PRIMARY KEY,"
    "  user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed_secret TEXT NOT NULL,"
    "  active BOOLEAN NOT NULL DEFAULT true,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE INDEX access_keys_user ON access_keys(user_id);"
    "CREATE TABLE buckets("
    "  name TEXT COLLATE \"C\" PRIMARY KEY,"
    "  owner_id BIGINT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  public_read BOOLEAN NOT NULL DEFAULT false,"
    "  region TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX buckets_owner ON buckets(owner_id);"
    "CREATE TABLE objects("
    "  bucket TEXT COLLATE \"C\" NOT NULL,"
    "  key BYTEA NOT NULL,"
    "  version_id TEXT COLLATE \"C\" NOT NULL,"
    "  size BIGINT NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms BIGINT NOT NULL,"
    "  owner_id BIGINT NOT NULL,"
    "  storage INTEGER NOT NULL CHECK (storage IN (0, 1)),"
    "  headers_json BYTEA NOT NULL DEFAULT '{}',"
    "  PRIMARY KEY (bucket, key));"
    "CREATE TABLE object_data("
    "  version_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  data BYTEA NOT NULL);";
static const char down_v1[] =
    "DROP TABLE object_data; DROP TABLE objects; DROP TABLE buckets; DROP TABLE access_keys; DROP TABLE users;";

static const char up_v2[] =
    "ALTER TABLE objects ADD COLUMN layout TEXT COLLATE \"C\" NOT NULL DEFAULT '';"
    "CREATE INDEX objects_version ON objects(version_id);";
static const char down_v2[] = "DROP INDEX objects_version; ALTER TABLE objects DROP COLUMN layout;";

static const char up_v3[] =
    "CREATE TABLE nodes("
    "  id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  url TEXT COLLATE \"C\" NOT NULL UNIQUE,"
    "  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'removed')),"
    "  added_ms BIGINT NOT NULL,"
    "  last_seen_ms BIGINT NOT NULL DEFAULT 0,"
    "  last_error BYTEA NOT NULL DEFAULT '');";
static const char down_v3[] = "DROP TABLE nodes;";

static const char up_v4[] =
    "CREATE TABLE uploads("
    "  upload_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  bucket TEXT COLLATE \"C\" NOT NULL,"
    "  key BYTEA NOT NULL,"
    "  owner_id BIGINT NOT NULL,"
    "  initiated_ms BIGINT NOT NULL,"
    "  headers_json BYTEA NOT NULL DEFAULT '{}');"
    "CREATE INDEX uploads_by_key ON uploads(bucket, key, upload_id);"
    "CREATE TABLE upload_parts("
    "  upload_id TEXT COLLATE \"C\" NOT NULL,"
    "  part_number INTEGER NOT NULL,"
    "  version_id TEXT COLLATE \"C\" NOT NULL,"
    "  size BIGINT NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  layout TEXT COLLATE \"C\" NOT NULL,"
    "  mtime_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (upload_id, part_number));"
    "CREATE TABLE object_parts("
    "  version_id TEXT COLLATE \"C\" NOT NULL,"
    "  part_number INTEGER NOT NULL,"
    "  \"offset\" BIGINT NOT NULL,"
    "  size BIGINT NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  part_version_id TEXT COLLATE \"C\" NOT NULL,"
    "  layout TEXT COLLATE \"C\" NOT NULL,"
    "  PRIMARY KEY (version_id, part_number));";
static const char down_v4[] = "DROP TABLE object_parts; DROP TABLE upload_parts; DROP TABLE uploads;";

static const char up_v5[] =
    "CREATE TABLE jobs("
    "  id BIGSERIAL PRIMARY KEY,"
    "  kind TEXT COLLATE \"C\" NOT NULL,"
    "  args TEXT NOT NULL DEFAULT '{}',"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  run_at_ms BIGINT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 5,"
    "  state TEXT COLLATE \"C\" NOT NULL DEFAULT 'available' CHECK (state IN"
    "    ('available', 'running', 'retryable', 'completed', 'cancelled', 'discarded')),"
    "  lease_owner TEXT COLLATE \"C\" NOT NULL DEFAULT '',"
    "  lease_expires_ms BIGINT NOT NULL DEFAULT 0,"
    "  unique_key TEXT COLLATE \"C\" UNIQUE,"
    "  last_error BYTEA NOT NULL DEFAULT '',"
    "  created_ms BIGINT NOT NULL,"
    "  finished_ms BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX jobs_ready ON jobs(state, run_at_ms);";
static const char down_v5[] = "DROP TABLE jobs;";

static const char up_v6[] =
    "CREATE INDEX upload_parts_version ON upload_parts(version_id);"
    "CREATE INDEX object_parts_version ON object_parts(part_version_id);";
static const char down_v6[] = "DROP INDEX upload_parts_version; DROP INDEX object_parts_version;";

/* v7: bucket ids, numbered in creation order as on SQLite; the name stays
 * unique.  Uploads of buckets already gone get id 0, which no bucket has. */
static const char up_v7[] =
    "CREATE SEQUENCE buckets_id_seq;"
    "ALTER TABLE buckets ADD COLUMN id BIGINT;"
    "UPDATE buckets b SET id = r.n FROM"
    "  (SELECT name, row_number() OVER (ORDER BY created_ms, name) AS n FROM buckets) r WHERE r.name = b.name;"
    "SELECT setval('buckets_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM buckets), false);"
    "ALTER TABLE buckets ALTER COLUMN id SET DEFAULT nextval('buckets_id_seq'), ALTER COLUMN id SET NOT NULL;"
    "ALTER SEQUENCE buckets_id_seq OWNED BY buckets.id;"
    "ALTER TABLE buckets DROP CONSTRAINT buckets_pkey;"
    "ALTER TABLE buckets ADD PRIMARY KEY (id);"
    "ALTER TABLE buckets ADD CONSTRAINT buckets_name_key UNIQUE (name);"
    "ALTER TABLE uploads ADD COLUMN bucket_id BIGINT NOT NULL DEFAULT 0;"
    "UPDATE uploads u SET bucket_id = b.id FROM buckets b WHERE b.name = u.bucket;"
    "DROP INDEX uploads_by_key;"
    "CREATE INDEX uploads_by_key ON uploads(bucket_id, key, upload_id);";
static const char down_v7[] =
    "DROP INDEX uploads_by_key;"
    "ALTER TABLE uploads DROP COLUMN bucket_id;"
    "CREATE INDEX uploads_by_key ON uploads(bucket, key, upload_id);"
    "ALTER TABLE buckets DROP CONSTRAINT buckets_name_key;"
    "ALTER TABLE buckets DROP CONSTRAINT buckets_pkey;"
    "ALTER TABLE buckets DROP COLUMN id;" /* its sequence goes with it */
    "ALTER TABLE buckets ADD PRIMARY KEY (name);";

static const char up_v8[] =
    "CREATE TABLE completed_uploads("
    "  upload_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  bucket_id BIGINT NOT NULL,"
    "  key BYTEA NOT NULL,"
    "  version_id TEXT COLLATE \"C\" NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  completed_ms BIGINT NOT NULL);"
    "CREATE INDEX completed_uploads_age ON completed_uploads(completed_ms);";
static const char down_v8[] = "DROP TABLE completed_uploads;";

static const char up_v9[] =
    "CREATE TABLE trash("
    "  version_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  layout TEXT COLLATE \"C\" NOT NULL,"
    "  added_ms BIGINT NOT NULL);";
static const char down_v9[] = "DROP TABLE trash;";

static const char up_v10[] =
    "CREATE TABLE leases("
    "  name TEXT COLLATE \"C\" PRIMARY KEY,"
    "  holder TEXT COLLATE \"C\" NOT NULL,"
    "  acquired_ms BIGINT NOT NULL,"
    "  expires_ms BIGINT NOT NULL);";
static const char down_v10[] = "DROP TABLE leases;";

/* v11: the audit store (migrations.c says why these indexes). */
static const char up_v11[] =
    "CREATE TABLE audit_events("
    "  event_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  time_us BIGINT NOT NULL,"
    "  request_id TEXT COLLATE \"C\" NOT NULL,"
    "  correlation_id TEXT COLLATE \"C\" NOT NULL,"
    "  principal TEXT COLLATE \"C\" NOT NULL,"
    "  user_name TEXT COLLATE \"C\" NOT NULL,"
    "  source_address TEXT COLLATE \"C\" NOT NULL,"
    "  action TEXT COLLATE \"C\" NOT NULL,"
    "  bucket TEXT COLLATE \"C\" NOT NULL,"
    "  key TEXT COLLATE \"C\" NOT NULL,"
    "  version_id TEXT COLLATE \"C\" NOT NULL,"
    "  outcome TEXT COLLATE \"C\" NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  error_code TEXT COLLATE \"C\" NOT NULL,"
    "  bytes_in BIGINT NOT NULL,"
    "  bytes_out BIGINT NOT NULL,"
    "  duration_us BIGINT NOT NULL);"
    "CREATE INDEX audit_events_time ON audit_events(time_us, event_id);"
    "CREATE INDEX audit_events_correlation ON audit_events(correlation_id, time_us, event_id);"
    "CREATE INDEX audit_events_request ON audit_events(request_id, time_us, event_id);"
    "CREATE INDEX audit_events_principal ON audit_events(principal, time_us, event_id);"
    "CREATE INDEX audit_events_user ON audit_events(user_name, time_us, event_id);"
    "CREATE INDEX audit_events_bucket ON audit_events(bucket, time_us, event_id);"
    "ALTER TABLE users ADD COLUMN audit BOOLEAN NOT NULL DEFAULT false;";
static const char down_v11[] =
    "ALTER TABLE users DROP COLUMN audit;"
    "DROP TABLE audit_events;";

/* v12: bucket notifications (migrations.c says why). */
static const char up_v12[] =
    "CREATE TABLE notify_targets("
    "  name TEXT COLLATE \"C\" PRIMARY KEY,"
    "  url TEXT NOT NULL,"
    "  secret TEXT NOT NULL DEFAULT '',"
    "  max_attempts INTEGER NOT NULL DEFAULT 10,"
    "  ordered BOOLEAN NOT NULL DEFAULT false,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE bucket_notifications("
    "  bucket_id BIGINT PRIMARY KEY,"
    "  config TEXT NOT NULL);"
    "CREATE INDEX jobs_due ON jobs(priority DESC, run_at_ms, id) WHERE state IN ('available', 'retryable');"
    "CREATE INDEX jobs_leased ON jobs(lease_expires_ms) WHERE state = 'running';";
static const char down_v12[] =
    "DROP INDEX jobs_leased;"
    "DROP INDEX jobs_due;"
    "DROP TABLE bucket_notifications;"
    "DROP TABLE notify_targets;";

/* v13: bucket configurations (migrations.c says why). */
static const char up_v13[] =
    "CREATE TABLE bucket_configs("
    "  bucket_id BIGINT NOT NULL,"
    "  kind TEXT COLLATE \"C\" NOT NULL,"
    "  body TEXT NOT NULL,"
    "  updated_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (bucket_id, kind));";
static const char down_v13[] = "DROP TABLE bucket_configs;";

/* v14: versions (migrations.c says why).  objects_versions orders a key's
 * versions newest first, as listings read them. */
static const char up_v14[] =
    "ALTER TABLE objects ADD COLUMN seq BIGINT NOT NULL DEFAULT 1;"
    "ALTER TABLE objects ADD COLUMN latest BOOLEAN NOT NULL DEFAULT true;"
    "ALTER TABLE objects ADD COLUMN delete_marker BOOLEAN NOT NULL DEFAULT false;"
    "ALTER TABLE objects ADD COLUMN null_version BOOLEAN NOT NULL DEFAULT true;"
    "ALTER TABLE objects DROP CONSTRAINT objects_pkey;"
    "CREATE UNIQUE INDEX objects_versions ON objects(bucket, key, seq DESC);"
    "CREATE UNIQUE INDEX objects_latest ON objects(bucket, key) WHERE latest;"
    "ALTER TABLE buckets ADD COLUMN versioning INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE buckets ADD COLUMN object_lock BOOLEAN NOT NULL DEFAULT false;";
static const char down_v14[] =
    "ALTER TABLE buckets DROP COLUMN object_lock;"
    "ALTER TABLE buckets DROP COLUMN versioning;"
    "DELETE FROM objects WHERE NOT latest OR delete_marker;"
    "DROP INDEX objects_latest;"
    "DROP INDEX objects_versions;"
    "ALTER TABLE objects ADD PRIMARY KEY (bucket, key);"
    "ALTER TABLE objects DROP COLUMN null_version;"
    "ALTER TABLE objects DROP COLUMN delete_marker;"
    "ALTER TABLE objects DROP COLUMN latest;"
    "ALTER TABLE objects DROP COLUMN seq;";

/* v15: part checksums (migrations.c says why). */
static const char up_v15[] =
    "ALTER TABLE upload_parts ADD COLUMN checksum TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE object_parts ADD COLUMN checksum TEXT NOT NULL DEFAULT '';";
static const char down_v15[] =
    "ALTER TABLE object_parts DROP COLUMN checksum;"
    "ALTER TABLE upload_parts DROP COLUMN checksum;";

/* v16: rate limit overrides (migrations.c says why). */
static const char up_v16[] =
    "CREATE TABLE rate_limits("
    "  scope TEXT COLLATE \"C\" NOT NULL CHECK (scope IN ('key', 'bucket')),"
    "  name TEXT COLLATE \"C\" NOT NULL,"
    "  ops_per_s BIGINT NOT NULL,"
    "  bytes_per_s BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (scope, name));";
static const char down_v16[] = "DROP TABLE rate_limits;";

/* v17: the key manager's keys and versions (migrations.c says why). */
static const char up_v17[] =
    "CREATE TABLE kms_keys("
    "  id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  enabled BOOLEAN NOT NULL DEFAULT true,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE kms_key_versions("
    "  key_id TEXT COLLATE \"C\" NOT NULL REFERENCES kms_keys(id),"
    "  version INTEGER NOT NULL CHECK (version >= 1),"
    "  sealed BYTEA NOT NULL CHECK (length(sealed) = 60),"
    "  created_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (key_id, version));";
static const char down_v17[] =
    "DROP TABLE kms_key_versions;"
    "DROP TABLE kms_keys;";

/* v18: the audit outbox (migrations.c says why). */
static const char up_v18[] =
    "CREATE TABLE audit_outbox("
    "  id BIGSERIAL PRIMARY KEY,"
    "  origin TEXT COLLATE \"C\" NOT NULL,"
    "  time_ms BIGINT NOT NULL,"
    "  event TEXT NOT NULL);";
static const char down_v18[] = "DROP TABLE audit_outbox;";

static const pg_migration migrations[] = {
    {up_v1, down_v1}, {up_v2, down_v2}, {up_v3, down_v3}, {up_v4, down_v4}, {up_v5, down_v5},
    {up_v6, down_v6}, {up_v7, down_v7}, {up_v8, down_v8}, {up_v9, down_v9},
    {up_v10, down_v10}, {up_v11, down_v11}, {up_v12, down_v12}, {up_v13, down_v13}, {up_v14, down_v14},
    {up_v15, down_v15}, {up_v16, down_v16}, {up_v17, down_v17},
    {up_v18, down_v18},
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

/* The bookkeeping, as on SQLite (migrations.c): a table made before
 * checksums were gains the column in place (check_applied). */
static const char bootstrap_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations("
    "  version INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  applied_ms BIGINT NOT NULL,"
    "  checksum TEXT NOT NULL DEFAULT '')";

/* The advisory lock every migration step takes: "cairnmig" in ASCII. */
#define MIGRATE_LOCK INT64_C(0x636169726e6d6967)

/* How a step's transaction begins (pg_tx_begin, pg_no_timeout, the lock),
 * as a dry run prints it. */
static const char begin_sql[] =
    "BEGIN; SET LOCAL statement_timeout = 0; SELECT pg_advisory_xact_lock(7161120822695651687)";

static const char *step_sql(int v, bool up) { return up ? migrations[v - 1].up_sql : migrations[v - 1].down_sql; }

const meta_migration_set pg_migration_set = {
    .backend = META_BACKEND_POSTGRES,
    .count = MIGRATION_COUNT,
    .sql = step_sql,
    .begin_sql = begin_sql,
    .bootstrap_sql = bootstrap_sql,
};

int pg_schema_latest(void) { return MIGRATION_COUNT; }

static int say(char *why, size_t whylen, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int say(char *why, size_t whylen, int err, const char *fmt, ...) {
    if (why && whylen && !why[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* The server's message for the statement that just failed on c: its first
 * line, without libpq's "ERROR:  ". */
static const char *last_error(pg_conn *c, char *buf, size_t cap) {
    const char *m = PQerrorMessage(c->db);
    if (!strncmp(m, "ERROR:  ", 8)) m += 8;
    snprintf(buf, cap, "%.*s", (int)strcspn(m, "\n"), m);
    return buf;
}

/* Whether schema_migrations exists, and whether it has its checksum column. */
static int probe(pg_conn *c, bool *exists, bool *sums) {
    PGresult *r = NULL;
    int err = pg_run_sql(c,
                         "SELECT to_regclass('schema_migrations') IS NOT NULL,"
                         " EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations')"
                         " AND attname = 'checksum' AND NOT attisdropped)",
                         NULL, &r, NULL, "schema probe");
    *exists = err == 0 && PQntuples(r) == 1 && pg_bool(r, 0, 0);
    *sums = err == 0 && PQntuples(r) == 1 && pg_bool(r, 0, 1);
    PQclear(r);
    return err;
}

/* Reads max(version) on c; 0 when schema_migrations does not exist yet. */
static int read_version(pg_conn *c, int *version) {
    bool exists = false, sums = false;
    int err = probe(c, &exists, &sums);
    if (err != 0 || !exists) {
        if (err == 0) *version = 0;
        return err;
    }
    PGresult *r = NULL;
    err = pg_run_sql(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", NULL, &r, NULL, "schema version");
    if (err == 0) *version = (int)pg_int(r, 0, 0);
    PQclear(r);
    return err;
}

int pg_schema_version(meta_store *base_, int *version) {
    pg_store *ms = PG(base_);
    if (!version) return CAIRN_EINVAL;
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    err = read_version(c, version);
    pg_release(ms, c);
    return err;
}

static int row_copy(const PGresult *r, int row, void *out) {
    meta_migration_row *m = out;
    memset(m, 0, sizeof *m);
    m->version = (int)pg_int(r, row, 0);
    m->applied_ms = pg_int(r, row, 2);
    int err = pg_copy(r, row, 1, m->name, sizeof m->name);
    return err == 0 ? pg_copy(r, row, 3, m->checksum, sizeof m->checksum) : err;
}

int pg_migration_rows(meta_store *base_, meta_migration_row **rows, int *n) {
    pg_store *ms = PG(base_);
    if (!rows || !n) return CAIRN_EINVAL;
    *rows = NULL;
    *n = 0;
    pg_conn *c;
    int err = pg_acquire(ms, &c);
    if (err != 0) return err;
    bool exists = false, sums = false;
    PGresult *r = NULL;
    err = probe(c, &exists, &sums);
    if (err == 0 && exists)
        err = pg_run_sql(c,
                         sums ? "SELECT version::int8, name, applied_ms, checksum FROM schema_migrations ORDER BY version"
                              : "SELECT version::int8, name, applied_ms, ''::text FROM schema_migrations ORDER BY version",
                         NULL, &r, NULL, "migration rows");
    pg_release(ms, c);
    if (err == 0 && r) {
        void *out = NULL;
        err = pg_rows(r, sizeof(meta_migration_row), row_copy, NULL, &out, n);
        *rows = out;
    }
    PQclear(r);
    return err;
}

static void log_step(const char *msg, int version) {
    char vbuf[24];
    log_write(LOG_ERROR, NULL, msg, "version", log_int(vbuf, version), "backend", "postgres", NULL);
}

/*
 * Inside the step's transaction, holding the lock: brings the bookkeeping up
 * to date (the checksum column, the checksums of rows recorded before it),
 * reads the current version into *cur and applies the drift rule to every
 * applied step (meta_migration_check): CAIRN_EDB, with why, when one has
 * changed.
 */
static int check_applied(pg_conn *c, int *cur, char *why, size_t whylen) {
    char msg[512];
    bool exists = false, sums = false;
    int err = probe(c, &exists, &sums);
    if (err == 0 && !sums) {
        err = pg_exec_sql(c, "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT NOT NULL DEFAULT ''",
                          "migration checksums");
        if (err != 0)
            return say(why, whylen, err, "the migration table cannot gain its checksum column: %s",
                       last_error(c, msg, sizeof msg));
        log_write(LOG_INFO, NULL, "meta: schema_migrations now records checksums", "backend", "postgres", NULL);
    }
    PGresult *r = NULL;
    if (err == 0)
        err = pg_run_sql(c, "SELECT version::int8, checksum FROM schema_migrations ORDER BY version", NULL, &r, NULL,
                         "migration checksums");
    if (err != 0) {
        PQclear(r);
        return say(why, whylen, err, "the migration table cannot be read: %s", last_error(c, msg, sizeof msg));
    }
    int fills[MIGRATION_COUNT], nfill = 0;
    *cur = 0;
    for (int i = 0; err == 0 && i < PQntuples(r); i++) {
        int v = (int)pg_int(r, i, 0);
        char sum[65] = "";
        bool fill = false;
        if (v > *cur) *cur = v;
        if (pg_copy(r, i, 1, sum, sizeof sum) != 0) sum[0] = '?'; /* too long: not ours, so changed */
        err = meta_migration_check(&pg_migration_set, v, sum, &fill, why, whylen);
        if (fill) {
            assert(nfill < MIGRATION_COUNT); /* versions are distinct and 1 .. MIGRATION_COUNT */
            fills[nfill++] = v;
        }
    }
    PQclear(r);
    /* Rows recorded before checksums were: trusted as they are (a released
     * step is never edited), and given this binary's checksum from now on. */
    for (int i = 0; err == 0 && i < nfill; i++) {
        char sum[65];
        pg_params q = {0};
        err = meta_migration_sum(&pg_migration_set, fills[i], sum);
        pgp_text(&q, sum);
        pgp_int(&q, fills[i]);
        if (err == 0)
            err = pg_run_sql(c, "UPDATE schema_migrations SET checksum = $1::text WHERE version = $2::int8", &q, NULL,
                             NULL, "migration checksums");
        if (err != 0) say(why, whylen, err, "the migration table cannot be updated: %s", last_error(c, msg, sizeof msg));
    }
    if (err == 0 && nfill > 0) {
        char nbuf[24];
        log_write(LOG_INFO, NULL, "meta: recorded the checksums of migrations applied before checksums were kept",
                  "count", log_int(nbuf, nfill), "backend", "postgres", NULL);
    }
    return err;
}

/* One step toward target inside the open transaction on c; *done when the
 * database already is at target. */
static int migrate_step_tx(pg_conn *c, int target, bool allow_down, bool *done, char *why, size_t whylen) {
    char msg[512];
    pg_params p = {0};
    pgp_int(&p, MIGRATE_LOCK);
    int cur = 0;
    /* A step may rewrite a large table, and wait for another migrator. */
    int err = pg_no_timeout(c);
    if (err == 0) err = pg_run(c, PS_XACT_LOCK, &p, NULL, NULL, "migration lock");
    if (err == 0) err = pg_exec_sql(c, bootstrap_sql, "schema_migrations");
    if (err != 0) return say(why, whylen, err, "a migration cannot begin: %s", last_error(c, msg, sizeof msg));
    if ((err = check_applied(c, &cur, why, whylen)) != 0) return err;
    if (cur == target) {
        *done = true;
        return 0;
    }
    if (cur > target && !allow_down) {
        log_step("meta: database schema is newer than this binary; refusing", cur);
        return say(why, whylen, CAIRN_EDB, "the schema is at version %d, newer than this binary's %d: refusing", cur,
                   MIGRATION_COUNT);
    }
    if (cur > MIGRATION_COUNT) {
        log_step("meta: unknown schema version, cannot migrate down from it", cur);
        return say(why, whylen, CAIRN_EDB,
                   "the schema is at version %d, which this binary does not know: it cannot migrate down from it", cur);
    }
    bool up = cur < target;
    int v = up ? cur + 1 : cur;
    err = pg_exec_sql(c, step_sql(v, up), up ? "migration up" : "migration down");
    if (err == 0) {
        char sum[65] = "";
        pg_params q = {0};
        pgp_int(&q, v);
        if (up) {
            err = meta_migration_sum(&pg_migration_set, v, sum);
            pgp_text(&q, meta_migration_name(v));
            pgp_int(&q, time_now_ms());
            pgp_text(&q, sum);
        }
        if (err == 0)
            err = pg_run_sql(c,
                             up ? "INSERT INTO schema_migrations(version, name, applied_ms, checksum)"
                                  " VALUES ($1::int8, $2::text, $3::int8, $4::text)"
                                : "DELETE FROM schema_migrations WHERE version = $1::int8",
                             &q, NULL, NULL, "migration record");
    }
    if (err != 0) {
        log_step(up ? "meta: migration up failed" : "meta: migration down failed", v);
        say(why, whylen, err, "migration %d (%s) failed %s: %s", v, meta_migration_name(v), up ? "up" : "down",
            last_error(c, msg, sizeof msg));
    }
    return err;
}

static int migrate_to(pg_store *ms, int target, bool allow_down, char *why, size_t whylen) {
    if (why && whylen) why[0] = '\0';
    if (!ms || target < 0 || target > MIGRATION_COUNT) return CAIRN_EINVAL;
    int err = 0;
    /* Bounded: each step moves one version closer to target. */
    for (int i = 0; i <= MIGRATION_COUNT + 1; i++) {
        pg_conn *c;
        bool done = false;
        if ((err = pg_tx_begin(ms, &c)) != 0) {
            say(why, whylen, err, "no connection for a migration: %s", cairn_strerror(err));
            break;
        }
        err = pg_tx_end(ms, c, migrate_step_tx(c, target, allow_down, &done, why, whylen));
        if (err != 0) {
            say(why, whylen, err, "a migration could not commit: %s", cairn_strerror(err));
            break;
        }
        if (done) break;
    }
    return err;
}

int pg_migrate(meta_store *ms, int target, char *why, size_t whylen) {
    return migrate_to(PG(ms), target, true, why, whylen);
}

int pg_migrate_up_to_latest(pg_store *ms, char *why, size_t whylen) {
    return migrate_to(ms, MIGRATION_COUNT, false, why, whylen);
}
