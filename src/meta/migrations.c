/*
 * migrations.c — versioned schema migrations for the SQLite metadata store.
 *
 * The schema is a static table of steps {version, name, up_sql, down_sql}.
 * Applied versions are recorded in schema_migrations (one row per applied
 * step, with the SHA-256 of the up text that ran: its checksum), so the
 * current version is max(version) and an empty database is 0.
 * meta_migrate moves one step per transaction (BEGIN EXCLUSIVE ... COMMIT):
 * a failing step rolls back completely and leaves the previous version in
 * place.  The current version is re-read inside each step's transaction, so
 * two processes migrating the same file at once cannot apply a step twice.
 * Each step's transaction also checks every applied step's checksum first
 * (schema.c: the drift rule) and refuses to go on when one has changed.
 *
 * Rules for adding a migration: append a row with the next version number,
 * never edit a released one (its checksum would no longer match, and every
 * database that ran it would refuse to start), and give it a down_sql that
 * restores the previous schema exactly (tests go up, down and up again at
 * every step, with rows in the tables, and compare the schema each time).
 */
#include "meta/meta.h"
#include "meta/sqlite_int.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int version;
    const char *name;
    const char *up_sql;
    const char *down_sql;
} migration;

/*
 * Version 1.  Notes on the choices:
 *  - users.id uses AUTOINCREMENT so an id is never reused: buckets and
 *    objects keep owner ids, and a recycled id would hand them to a stranger.
 *  - objects is WITHOUT ROWID, clustered on (bucket, key): a listing is one
 *    contiguous range scan of the table itself with no index-to-row hops,
 *    and rows are small (the inline bytes live in object_data).
 *  - key compares with BINARY collation (memcmp, then length), which is the
 *    byte order S3 lists in.
 *  - object_data is keyed by version_id, not (bucket, key), so replacing an
 *    object never collides with the bytes of the version it replaces.
 */
static const char up_v1[] =
    "CREATE TABLE users("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  display_name TEXT NOT NULL DEFAULT '',"
    "  is_root INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE access_keys("
    "  access_key TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed_secret TEXT NOT NULL,"
    "  active INTEGER NOT NULL DEFAULT 1,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE INDEX access_keys_user ON access_keys(user_id);"
    "CREATE TABLE buckets("
    "  name TEXT PRIMARY KEY,"
    "  owner_id INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  public_read INTEGER NOT NULL DEFAULT 0,"
    "  region TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX buckets_owner ON buckets(owner_id);"
    "CREATE TABLE objects("
    "  bucket TEXT NOT NULL,"
    "  key TEXT NOT NULL COLLATE BINARY,"
    "  version_id TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  owner_id INTEGER NOT NULL,"
    "  storage INTEGER NOT NULL CHECK (storage IN (0, 1)),"
    "  headers_json TEXT NOT NULL DEFAULT '{}',"
    "  PRIMARY KEY (bucket, key)) WITHOUT ROWID;"
    "CREATE TABLE object_data("
    "  version_id TEXT PRIMARY KEY,"
    "  data BLOB NOT NULL);";

static const char down_v1[] =
    "DROP TABLE object_data;"
    "DROP TABLE objects;"
    "DROP TABLE buckets;"
    "DROP TABLE access_keys;"
    "DROP TABLE users;"
    /* sqlite_sequence itself cannot be dropped; forget the users counter. */
    "DELETE FROM sqlite_sequence WHERE name = 'users';";

/* v2: where an object's erasure-coded shards are ("k+m:block:drive,...");
 * empty for objects stored inline. */
static const char up_v2[] =
    "ALTER TABLE objects ADD COLUMN layout TEXT NOT NULL DEFAULT '';"
    /* healing and GC ask "is this version still referenced?" */
    "CREATE INDEX objects_version ON objects(version_id);";
static const char down_v2[] =
    "DROP INDEX objects_version;"
    "ALTER TABLE objects DROP COLUMN layout;";

/* v3: the storage node registry (gateways share it through the database). */
static const char up_v3[] =
    "CREATE TABLE nodes("
    "  id TEXT PRIMARY KEY,"
    "  url TEXT NOT NULL UNIQUE,"
    "  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'removed')),"
    "  added_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT NOT NULL DEFAULT '');";
static const char down_v3[] = "DROP TABLE nodes;";

/* v4: multipart uploads.  An upload's parts are stored like objects (own
 * version ids and layouts); completing writes the object row with layout
 * "mp:<parts>" and moves the chosen parts to object_parts. */
static const char up_v4[] =
    "CREATE TABLE uploads("
    "  upload_id TEXT PRIMARY KEY,"
    "  bucket TEXT NOT NULL,"
    "  key TEXT NOT NULL COLLATE BINARY,"
    "  owner_id INTEGER NOT NULL,"
    "  initiated_ms INTEGER NOT NULL,"
    "  headers_json TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX uploads_by_key ON uploads(bucket, key, upload_id);"
    "CREATE TABLE upload_parts("
    "  upload_id TEXT NOT NULL,"
    "  part_number INTEGER NOT NULL,"
    "  version_id TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  layout TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (upload_id, part_number)) WITHOUT ROWID;"
    "CREATE TABLE object_parts("
    "  version_id TEXT NOT NULL,"
    "  part_number INTEGER NOT NULL,"
    "  offset INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  part_version_id TEXT NOT NULL,"
    "  layout TEXT NOT NULL,"
    "  PRIMARY KEY (version_id, part_number)) WITHOUT ROWID;";
static const char down_v4[] = "DROP TABLE object_parts; DROP TABLE upload_parts; DROP TABLE uploads;";

/* v5: the durable job queue. */
static const char up_v5[] =
    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind TEXT NOT NULL,"
    "  args TEXT NOT NULL DEFAULT '{}',"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  run_at_ms INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 5,"
    "  state TEXT NOT NULL DEFAULT 'available' CHECK (state IN"
    "    ('available', 'running', 'retryable', 'completed', 'cancelled', 'discarded')),"
    "  lease_owner TEXT NOT NULL DEFAULT '',"
    "  lease_expires_ms INTEGER NOT NULL DEFAULT 0,"
    "  unique_key TEXT UNIQUE,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX jobs_ready ON jobs(state, run_at_ms);";
static const char down_v5[] = "DROP TABLE jobs;";

/* v6: "is this version referenced anywhere?" for garbage collection. */
static const char up_v6[] =
    "CREATE INDEX upload_parts_version ON upload_parts(version_id);"
    "CREATE INDEX object_parts_version ON object_parts(part_version_id);";
static const char down_v6[] = "DROP INDEX upload_parts_version; DROP INDEX object_parts_version;";

/* v7: a bucket's identity is an id that is never reused, not its name.
 * Uploads belong to that id, so when a bucket is deleted and another owner
 * creates one of the same name, nothing of the old one (an upload, a part)
 * can surface in the new one.  The table is rebuilt because SQLite cannot
 * add an AUTOINCREMENT key in place; uploads of buckets already gone get id
 * 0, which no bucket has (fsck reports them, expiry removes them). */
static const char up_v7[] =
    "CREATE TABLE buckets_v7("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  owner_id INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  public_read INTEGER NOT NULL DEFAULT 0,"
    "  region TEXT NOT NULL DEFAULT '');"
    "INSERT INTO buckets_v7(name, owner_id, created_ms, public_read, region)"
    "  SELECT name, owner_id, created_ms, public_read, region FROM buckets ORDER BY created_ms, name;"
    "DROP TABLE buckets;"
    "ALTER TABLE buckets_v7 RENAME TO buckets;"
    "CREATE INDEX buckets_owner ON buckets(owner_id);"
    "ALTER TABLE uploads ADD COLUMN bucket_id INTEGER NOT NULL DEFAULT 0;"
    "UPDATE uploads SET bucket_id = coalesce((SELECT id FROM buckets WHERE buckets.name = uploads.bucket), 0);"
    "DROP INDEX uploads_by_key;"
    "CREATE INDEX uploads_by_key ON uploads(bucket_id, key, upload_id);";
static const char down_v7[] =
    "DROP INDEX uploads_by_key;"
    "ALTER TABLE uploads DROP COLUMN bucket_id;"
    "CREATE INDEX uploads_by_key ON uploads(bucket, key, upload_id);"
    "CREATE TABLE buckets_v6("
    "  name TEXT PRIMARY KEY,"
    "  owner_id INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  public_read INTEGER NOT NULL DEFAULT 0,"
    "  region TEXT NOT NULL DEFAULT '');"
    "INSERT INTO buckets_v6 SELECT name, owner_id, created_ms, public_read, region FROM buckets;"
    "DROP TABLE buckets;"
    "ALTER TABLE buckets_v6 RENAME TO buckets;"
    "CREATE INDEX buckets_owner ON buckets(owner_id);"
    "DELETE FROM sqlite_sequence WHERE name IN ('buckets', 'buckets_v7');";

/* v8: completed multipart uploads are remembered for a while, so an SDK that
 * retries a CompleteMultipartUpload whose answer it lost (a timeout) gets the
 * same 200 and ETag instead of NoSuchUpload. */
static const char up_v8[] =
    "CREATE TABLE completed_uploads("
    "  upload_id TEXT PRIMARY KEY,"
    "  bucket_id INTEGER NOT NULL,"
    "  key TEXT NOT NULL COLLATE BINARY,"
    "  version_id TEXT NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  completed_ms INTEGER NOT NULL);"
    "CREATE INDEX completed_uploads_age ON completed_uploads(completed_ms);";
static const char down_v8[] = "DROP TABLE completed_uploads;";

/* v9: the trash.  Shards whose last reference a transaction removes in bulk
 * (the parts of every upload of a deleted bucket; since then also the parts
 * of a multipart object overwritten or deleted) are listed here in that
 * same transaction, so their bytes are removed afterwards even across a
 * crash, with memory bounded by a batch, not by how many there are. */
static const char up_v9[] =
    "CREATE TABLE trash("
    "  version_id TEXT PRIMARY KEY,"
    "  layout TEXT NOT NULL,"
    "  added_ms INTEGER NOT NULL);";
static const char down_v9[] = "DROP TABLE trash;";

/* v10: leases, so that work one process should do (the scrubber, node
 * bookkeeping and rebalancing) runs once however many gateways share the
 * database: the holder renews its lease; another takes it once it expires. */
static const char up_v10[] =
    "CREATE TABLE leases("
    "  name TEXT PRIMARY KEY,"
    "  holder TEXT NOT NULL,"
    "  acquired_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL);";
static const char down_v10[] = "DROP TABLE leases;";

/* v11: the audit store (docs/audit.md, decision 0014).  One row per event,
 * keyed by its event id (a retried batch inserts nothing twice).  Every
 * query reads in (time_us, event_id) order: the time index serves it, and
 * each exact-match filter with an index of its own leads that index, so a
 * page of one correlation id is a range of its index.  users.audit is the
 * right to use the store's API. */
static const char up_v11[] =
    "CREATE TABLE audit_events("
    "  event_id TEXT PRIMARY KEY,"
    "  time_us INTEGER NOT NULL,"
    "  request_id TEXT NOT NULL,"
    "  correlation_id TEXT NOT NULL,"
    "  principal TEXT NOT NULL,"
    "  user_name TEXT NOT NULL,"
    "  source_address TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  bucket TEXT NOT NULL,"
    "  key TEXT NOT NULL COLLATE BINARY,"
    "  version_id TEXT NOT NULL,"
    "  outcome TEXT NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  error_code TEXT NOT NULL,"
    "  bytes_in INTEGER NOT NULL,"
    "  bytes_out INTEGER NOT NULL,"
    "  duration_us INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX audit_events_time ON audit_events(time_us, event_id);"
    "CREATE INDEX audit_events_correlation ON audit_events(correlation_id, time_us, event_id);"
    "CREATE INDEX audit_events_request ON audit_events(request_id, time_us, event_id);"
    "CREATE INDEX audit_events_principal ON audit_events(principal, time_us, event_id);"
    "CREATE INDEX audit_events_user ON audit_events(user_name, time_us, event_id);"
    "CREATE INDEX audit_events_bucket ON audit_events(bucket, time_us, event_id);"
    "ALTER TABLE users ADD COLUMN audit INTEGER NOT NULL DEFAULT 0;";
static const char down_v11[] =
    "ALTER TABLE users DROP COLUMN audit;"
    "DROP TABLE audit_events;";

/* v12: bucket notifications (docs/notifications.md): the webhook targets
 * an admin defines (a target's secret sealed with the master key, as access
 * keys' are) and each bucket's notification configuration, by bucket id so
 * that a bucket deleted and made again under its name starts with none. */
static const char up_v12[] =
    "CREATE TABLE notify_targets("
    "  name TEXT PRIMARY KEY,"
    "  url TEXT NOT NULL,"
    "  secret TEXT NOT NULL DEFAULT '',"
    "  max_attempts INTEGER NOT NULL DEFAULT 10,"
    "  ordered INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE bucket_notifications("
    "  bucket_id INTEGER PRIMARY KEY,"
    "  config TEXT NOT NULL);"
    /* A claim walks these in its order and stops at the first due job,
     * instead of sorting every waiting one (a target that is down can
     * leave 100,000 waiting: 11 ms a claim became 10 us). */
    "CREATE INDEX jobs_due ON jobs(priority DESC, run_at_ms, id) WHERE state IN ('available', 'retryable');"
    "CREATE INDEX jobs_leased ON jobs(lease_expires_ms) WHERE state = 'running';";
static const char down_v12[] =
    "DROP INDEX jobs_leased;"
    "DROP INDEX jobs_due;"
    "DROP TABLE bucket_notifications;"
    "DROP TABLE notify_targets;";

/* v13: a bucket's other configurations (CORS, tagging, lifecycle, policy,
 * ownership controls, public access block, object lock, ...), one row per
 * (bucket id, kind), each the document s3/ keeps for it.  By bucket id, as
 * bucket_notifications, and removed with the bucket in its transaction. */
static const char up_v13[] =
    "CREATE TABLE bucket_configs("
    "  bucket_id INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  body TEXT NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (bucket_id, kind)) WITHOUT ROWID;";
static const char down_v13[] = "DROP TABLE bucket_configs;";

/* v14: versions.  Every version of a key is a row, numbered by seq (newer
 * is larger) and clustered newest first under its key, so a versions
 * listing is one range scan; latest marks the current one, and the unique
 * partial index both enforces one per key and serves every read of current
 * objects (GET, listings) without touching older versions.  Delete markers
 * are rows without bytes; null_version is S3's version "null" (every row
 * written before versioning is one).  Buckets record their versioning and
 * whether object lock is on.  Down keeps only current objects: what it
 * drops leaves shards that fsck and the orphan pass remove. */
static const char up_v14[] =
    "CREATE TABLE objects_v14("
    "  bucket TEXT NOT NULL,"
    "  key TEXT NOT NULL COLLATE BINARY,"
    "  seq INTEGER NOT NULL DEFAULT 1,"
    "  version_id TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  owner_id INTEGER NOT NULL,"
    "  storage INTEGER NOT NULL CHECK (storage IN (0, 1)),"
    "  headers_json TEXT NOT NULL DEFAULT '{}',"
    "  layout TEXT NOT NULL DEFAULT '',"
    "  latest INTEGER NOT NULL DEFAULT 1,"
    "  delete_marker INTEGER NOT NULL DEFAULT 0,"
    "  null_version INTEGER NOT NULL DEFAULT 1,"
    "  PRIMARY KEY (bucket, key, seq DESC)) WITHOUT ROWID;"
    "INSERT INTO objects_v14(bucket, key, seq, version_id, size, etag, mtime_ms, owner_id, storage, headers_json,"
    "  layout) SELECT bucket, key, 1, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout"
    "  FROM objects;"
    "DROP TABLE objects;"
    "ALTER TABLE objects_v14 RENAME TO objects;"
    "CREATE INDEX objects_version ON objects(version_id);"
    "CREATE UNIQUE INDEX objects_latest ON objects(bucket, key) WHERE latest = 1;"
    "ALTER TABLE buckets ADD COLUMN versioning INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE buckets ADD COLUMN object_lock INTEGER NOT NULL DEFAULT 0;";
static const char down_v14[] =
    "ALTER TABLE buckets DROP COLUMN object_lock;"
    "ALTER TABLE buckets DROP COLUMN versioning;"
    "CREATE TABLE objects_v13("
    "  bucket TEXT NOT NULL,"
    "  key TEXT NOT NULL COLLATE BINARY,"
    "  version_id TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  owner_id INTEGER NOT NULL,"
    "  storage INTEGER NOT NULL CHECK (storage IN (0, 1)),"
    "  headers_json TEXT NOT NULL DEFAULT '{}',"
    "  layout TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (bucket, key)) WITHOUT ROWID;"
    "INSERT INTO objects_v13 SELECT bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json,"
    "  layout FROM objects WHERE latest = 1 AND delete_marker = 0;"
    "DROP TABLE objects;"
    "ALTER TABLE objects_v13 RENAME TO objects;"
    "CREATE INDEX objects_version ON objects(version_id);";

/* v15: checksums of parts (x-amz-checksum-*), as "<algorithm>:<base64>",
 * on an upload's parts and on a completed object's: ListParts,
 * CompleteMultipartUpload and GetObjectAttributes answer with them.  An
 * object's own checksum is kept with its stored headers (decision 0023). */
static const char up_v15[] =
    "ALTER TABLE upload_parts ADD COLUMN checksum TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE object_parts ADD COLUMN checksum TEXT NOT NULL DEFAULT '';";
static const char down_v15[] =
    "ALTER TABLE object_parts DROP COLUMN checksum;"
    "ALTER TABLE upload_parts DROP COLUMN checksum;";

/* v16: rate limit overrides (cairn admin limits, docs/rate-limiting.md):
 * one row per (scope, name), scope 'key' (an access key id) or 'bucket' (a
 * bucket's name, removed with the bucket so a later bucket of that name
 * starts from the defaults).  Few rows: every gateway reads them all. */
static const char up_v16[] =
    "CREATE TABLE rate_limits("
    "  scope TEXT NOT NULL CHECK (scope IN ('key', 'bucket')),"
    "  name TEXT NOT NULL,"
    "  ops_per_s INTEGER NOT NULL,"
    "  bytes_per_s INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (scope, name)) WITHOUT ROWID;";
static const char down_v16[] = "DROP TABLE rate_limits;";

/* v17: the built-in key manager's keys (src/crypt/kms.h, docs/kms.md): a
 * key is a name and a state; its material, one row per version (1, 2, ...
 * a rotation adds the next), is stored only sealed by the master key
 * (crypt_key_wrap: 60 bytes).  A version is never removed while a data key
 * may be wrapped by it; the key's newest version is max(version). */
static const char up_v17[] =
    "CREATE TABLE kms_keys("
    "  id TEXT PRIMARY KEY,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE kms_key_versions("
    "  key_id TEXT NOT NULL REFERENCES kms_keys(id),"
    "  version INTEGER NOT NULL CHECK (version >= 1),"
    "  sealed BLOB NOT NULL CHECK (length(sealed) = 60),"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (key_id, version)) WITHOUT ROWID;";
static const char down_v17[] =
    "DROP TABLE kms_key_versions;"
    "DROP TABLE kms_keys;";

/* v18: the audit outbox (docs/audit.md "The outbox"): a write's audit
 * event, inserted in the write's own transaction so that its commit makes
 * the event durable; the shipper delivers the rows and deletes them, so the
 * table holds only what is on its way (read in id order, whole). */
static const char up_v18[] =
    "CREATE TABLE audit_outbox("
    "  id INTEGER PRIMARY KEY,"
    "  origin TEXT NOT NULL,"
    "  time_ms INTEGER NOT NULL,"
    "  event TEXT NOT NULL);";
static const char down_v18[] = "DROP TABLE audit_outbox;";

static const migration migrations[] = {
    {1, "initial schema: users, access keys, buckets, objects, inline data", up_v1, down_v1},
    {2, "object layout: erasure-coding geometry and shard placement", up_v2, down_v2},
    {3, "storage node registry", up_v3, down_v3},
    {4, "multipart uploads and parts", up_v4, down_v4},
    {5, "durable job queue", up_v5, down_v5},
    {6, "indexes for garbage collection of unreferenced shards", up_v6, down_v6},
    {7, "bucket identity: ids never reused; uploads belong to a bucket id", up_v7, down_v7},
    {8, "completed multipart uploads remembered for retried completes", up_v8, down_v8},
    {9, "trash: shards to remove after bulk deletions", up_v9, down_v9},
    {10, "leases: work one gateway of many does", up_v10, down_v10},
    {11, "audit store: events, and the audit right of users", up_v11, down_v11},
    {12, "bucket notifications: webhook targets and bucket configurations; job claims by index", up_v12, down_v12},
    {13, "bucket configurations: CORS, tagging, lifecycle, policies and the rest, by bucket id", up_v13, down_v13},
    {14, "versions: every version of a key a row, delete markers, the current one by index; bucket versioning", up_v14, down_v14},
    {15, "part checksums: the x-amz-checksum-* of each part of uploads and of completed objects", up_v15, down_v15},
    {16, "rate limits: the overrides of one access key's or one bucket's limits", up_v16, down_v16},
    {17, "key manager: KMS keys and their versions of sealed key material", up_v17, down_v17},
    {18, "audit outbox: writes' audit events, stored in the writes' own transactions", up_v18, down_v18},
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

/* The bookkeeping: one row per applied step.  checksum (the SHA-256 of the
 * step's up text, schema.c) came later: a table made before it gains the
 * column in place (check_applied) and its rows their checksums at
 * the next migration. */
static const char bootstrap_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations("
    "  version INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  applied_ms INTEGER NOT NULL,"
    "  checksum TEXT NOT NULL DEFAULT '')";

/* EXCLUSIVE, not DEFERRED: the step must hold the write lock before it reads
 * the version, or two processes could both read 3 and both run step 4.  (In
 * WAL mode EXCLUSIVE takes the same lock IMMEDIATE does; readers go on.) */
static const char begin_sql[] = "BEGIN EXCLUSIVE";

static const char *step_sql(int v, bool up) { return up ? migrations[v - 1].up_sql : migrations[v - 1].down_sql; }

const meta_migration_set sq_migration_set = {
    .backend = META_BACKEND_SQLITE,
    .count = MIGRATION_COUNT,
    .sql = step_sql,
    .begin_sql = begin_sql,
    .bootstrap_sql = bootstrap_sql,
};

int meta_schema_latest(void) { return MIGRATION_COUNT; }

const char *meta_migration_name(int v) {
    if (v < 1 || v > MIGRATION_COUNT) return NULL;
    return migrations[v - 1].name;
}

static void log_db(const char *msg, sqlite3 *db, int version) {
    char vbuf[24];
    log_write(LOG_ERROR, NULL, msg, "version", log_int(vbuf, version),
              "error", sqlite3_errmsg(db), NULL);
}

/* A number the query answers (its first column), or CAIRN_EDB. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return CAIRN_EDB;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : CAIRN_EDB;
}

static int table_exists(sqlite3 *db, bool *exists) {
    int64_t n = 0;
    int err = query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                        &n);
    *exists = n > 0;
    return err;
}

static int has_checksum_column(sqlite3 *db, bool *has) {
    int64_t n = 0;
    int err = query_int(db, "SELECT count(*) FROM pragma_table_info('schema_migrations') WHERE name = 'checksum'", &n);
    *has = n > 0;
    return err;
}

/* Reads max(version); 0 when schema_migrations does not exist yet. */
static int read_version(sqlite3 *db, int *version) {
    /* SQLite resolves table names at prepare time, so probe for the table
     * first and only then prepare the statement that reads it. */
    bool exists = false;
    int err = table_exists(db, &exists);
    if (err != 0 || !exists) {
        if (err == 0) *version = 0;
        return err;
    }
    int64_t v = 0;
    err = query_int(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", &v);
    if (err == 0) *version = (int)v;
    return err;
}

int sq_schema_version(meta_store *base_, int *version) {
    sq_store *ms = SQ(base_);
    if (!ms || !version) return CAIRN_EINVAL;
    sqlite3 *db = meta_sqlite_writer_lock(ms);
    int rc = read_version(db, version);
    meta_sqlite_writer_unlock(ms);
    return rc;
}

int sq_migration_rows(meta_store *base_, meta_migration_row **rows, int *n) {
    sq_store *ms = SQ(base_);
    if (!ms || !rows || !n) return CAIRN_EINVAL;
    *rows = NULL;
    *n = 0;
    sqlite3 *db = meta_sqlite_writer_lock(ms);
    bool exists = false, sums = false;
    int err = table_exists(db, &exists);
    if (err == 0 && exists) err = has_checksum_column(db, &sums);
    sqlite3_stmt *st = NULL;
    if (err == 0 && exists &&
        sqlite3_prepare_v2(db,
                           sums ? "SELECT version, name, applied_ms, checksum FROM schema_migrations ORDER BY version"
                                : "SELECT version, name, applied_ms, '' FROM schema_migrations ORDER BY version",
                           -1, &st, NULL) != SQLITE_OK)
        err = CAIRN_EDB;
    int cap = 0, rc = SQLITE_DONE;
    while (err == 0 && st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            meta_migration_row *more = realloc(*rows, (size_t)cap * sizeof *more);
            if (!more) {
                err = CAIRN_ENOMEM;
                break;
            }
            *rows = more;
        }
        meta_migration_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        r->version = sqlite3_column_int(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1), *sum = (const char *)sqlite3_column_text(st, 3);
        snprintf(r->name, sizeof r->name, "%s", name ? name : "");
        r->applied_ms = sqlite3_column_int64(st, 2);
        snprintf(r->checksum, sizeof r->checksum, "%s", sum ? sum : "");
    }
    if (err == 0 && rc != SQLITE_DONE) err = CAIRN_EDB;
    sqlite3_finalize(st);
    meta_sqlite_writer_unlock(ms);
    if (err != 0) {
        free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return err;
}

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

/*
 * Inside the step's transaction: brings the bookkeeping up to date (the
 * checksum column, the checksums of rows recorded before it), reads the
 * current version into *cur and applies the drift rule to every applied
 * step (meta_migration_check): CAIRN_EDB, with why, when one has changed.
 */
static int check_applied(sqlite3 *db, int *cur, char *why, size_t whylen) {
    bool sums = false;
    int err = has_checksum_column(db, &sums);
    if (err == 0 && !sums) {
        if (sqlite3_exec(db, "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT NOT NULL DEFAULT ''", NULL, NULL,
                         NULL) != SQLITE_OK)
            return say(why, whylen, CAIRN_EDB, "the migration table cannot gain its checksum column: %s",
                       sqlite3_errmsg(db));
        log_write(LOG_INFO, NULL, "meta: schema_migrations now records checksums", "backend", "sqlite", NULL);
    }
    sqlite3_stmt *st = NULL;
    if (err == 0 && sqlite3_prepare_v2(db, "SELECT version, checksum FROM schema_migrations ORDER BY version", -1, &st,
                                       NULL) != SQLITE_OK)
        err = CAIRN_EDB;
    int fills[MIGRATION_COUNT], nfill = 0, rc = SQLITE_DONE;
    *cur = 0;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int v = sqlite3_column_int(st, 0);
        const char *sum = (const char *)sqlite3_column_text(st, 1);
        bool fill = false;
        if (v > *cur) *cur = v;
        err = meta_migration_check(&sq_migration_set, v, sum ? sum : "", &fill, why, whylen);
        if (fill) {
            assert(nfill < MIGRATION_COUNT); /* versions are distinct and 1 .. MIGRATION_COUNT */
            fills[nfill++] = v;
        }
    }
    if (err == 0 && rc != SQLITE_DONE) err = CAIRN_EDB;
    sqlite3_finalize(st);
    /* Rows recorded before checksums were: trusted as they are (a released
     * step is never edited), and given this binary's checksum from now on. */
    for (int i = 0; err == 0 && i < nfill; i++) {
        char sum[65];
        err = meta_migration_sum(&sq_migration_set, fills[i], sum);
        if (err == 0 && (sqlite3_prepare_v2(db, "UPDATE schema_migrations SET checksum = ?1 WHERE version = ?2", -1,
                                            &st, NULL) != SQLITE_OK))
            err = CAIRN_EDB;
        if (err == 0) {
            int b = sqlite3_bind_text(st, 1, sum, -1, SQLITE_TRANSIENT) | sqlite3_bind_int(st, 2, fills[i]);
            if (b != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) err = CAIRN_EDB;
            sqlite3_finalize(st);
        }
    }
    if (err == 0 && nfill > 0) {
        char nbuf[24];
        log_write(LOG_INFO, NULL, "meta: recorded the checksums of migrations applied before checksums were kept",
                  "count", log_int(nbuf, nfill), "backend", "sqlite", NULL);
    }
    if (err != 0 && err != CAIRN_EDB) return err;
    return err == 0 ? 0 : say(why, whylen, err, "the migration table cannot be read: %s", sqlite3_errmsg(db));
}

/* Records (up) or forgets (down) version v inside the open transaction. */
static int record_step(sqlite3 *db, int v, bool up) {
    char sum[65] = "";
    if (up && meta_migration_sum(&sq_migration_set, v, sum) != 0) return CAIRN_EDB;
    sqlite3_stmt *st = NULL;
    const char *sql = up ? "INSERT INTO schema_migrations(version, name, applied_ms, checksum)"
                           " VALUES (?1, ?2, ?3, ?4)"
                         : "DELETE FROM schema_migrations WHERE version = ?1";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return CAIRN_EDB;
    int b = sqlite3_bind_int(st, 1, v);
    if (up) {
        b |= sqlite3_bind_text(st, 2, migrations[v - 1].name, -1, SQLITE_STATIC);
        b |= sqlite3_bind_int64(st, 3, time_now_ms());
        b |= sqlite3_bind_text(st, 4, sum, -1, SQLITE_TRANSIENT);
    }
    int rc = b == SQLITE_OK ? sqlite3_step(st) : SQLITE_ERROR;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : CAIRN_EDB;
}

/*
 * One step toward target in its own transaction.  Sets *done when the
 * database already is at target.  allow_down=false refuses to touch a
 * database whose version is above target.
 */
static int migrate_step(sqlite3 *db, int target, bool allow_down, bool *done, char *why, size_t whylen) {
    int cur = 0;
    *done = false;
    /* Prepared before the transaction begins: out of memory later, a
     * ROLLBACK that could not be prepared would leave it open, and every
     * later write would join it and never commit. */
    sqlite3_stmt *rollback = NULL;
    if (sqlite3_prepare_v2(db, "ROLLBACK", -1, &rollback, NULL) != SQLITE_OK) {
        log_db("meta: cannot prepare a migration", db, target);
        return say(why, whylen, CAIRN_EDB, "a migration cannot be prepared: %s", sqlite3_errmsg(db));
    }
    if (sqlite3_exec(db, begin_sql, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_finalize(rollback);
        log_db("meta: cannot begin migration", db, target);
        return say(why, whylen, CAIRN_EDB, "a migration cannot begin: %s", sqlite3_errmsg(db));
    }
    int rc = 0;
    if (sqlite3_exec(db, bootstrap_sql, NULL, NULL, NULL) != SQLITE_OK) {
        log_db("meta: cannot create the migration table", db, target);
        rc = say(why, whylen, CAIRN_EDB, "the migration table cannot be created: %s", sqlite3_errmsg(db));
    }
    if (rc == 0) rc = check_applied(db, &cur, why, whylen);
    if (rc != 0) {
        /* check_applied said why (and logged a drift) */
    } else if (cur == target) {
        *done = true;
    } else if (cur > target && !allow_down) {
        char vbuf[24];
        log_write(LOG_ERROR, NULL, "meta: database schema is newer than this binary; refusing",
                  "version", log_int(vbuf, cur), NULL);
        rc = say(why, whylen, CAIRN_EDB, "the schema is at version %d, newer than this binary's %d: refusing", cur,
                 MIGRATION_COUNT);
    } else if (cur > MIGRATION_COUNT) {
        log_db("meta: unknown schema version, cannot migrate down from it", db, cur);
        rc = say(why, whylen, CAIRN_EDB, "the schema is at version %d, which this binary does not know: it cannot "
                 "migrate down from it", cur);
    } else {
        bool up = cur < target;
        int v = up ? cur + 1 : cur;
        const char *sql = step_sql(v, up);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK || record_step(db, v, up) != 0) {
            log_db(up ? "meta: migration up failed" : "meta: migration down failed", db, v);
            rc = say(why, whylen, CAIRN_EDB, "migration %d (%s) failed %s: %s", v, meta_migration_name(v),
                     up ? "up" : "down", sqlite3_errmsg(db));
        }
    }
    if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        log_db("meta: migration commit failed", db, target);
        rc = say(why, whylen, CAIRN_EDB, "a migration could not commit: %s", sqlite3_errmsg(db));
    }
    if (rc != 0 && !sqlite3_get_autocommit(db)) sqlite3_step(rollback);
    sqlite3_finalize(rollback);
    return rc;
}

static int migrate_to(sq_store *ms, int target, bool allow_down, char *why, size_t whylen) {
    if (why && whylen) why[0] = '\0';
    if (!ms || target < 0 || target > MIGRATION_COUNT) return CAIRN_EINVAL;
    sqlite3 *db = meta_sqlite_writer_lock(ms);
    int rc = 0;
    /* Bounded: each step moves one version closer to target. */
    for (int i = 0; i <= MIGRATION_COUNT + 1; i++) {
        bool done = false;
        rc = migrate_step(db, target, allow_down, &done, why, whylen);
        if (rc != 0 || done) break;
    }
    meta_sqlite_writer_unlock(ms);
    return rc;
}

int sq_migrate(meta_store *ms, int target, char *why, size_t whylen) {
    return migrate_to(SQ(ms), target, true, why, whylen);
}

int meta_migrate_up_to_latest(sq_store *ms, char *why, size_t whylen) {
    return migrate_to(ms, MIGRATION_COUNT, false, why, whylen);
}
