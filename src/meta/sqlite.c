/*
 * sqlite.c — the embedded metadata backend: meta.h on one SQLite file.  This
 * file holds what every concern shares (statements, connections, write
 * transactions, open and close) and the backend's table of operations; the
 * operations themselves live in the sqlite_*.c file of their concern
 * (sqlite_int.h lists them).
 *
 * Connections.  The database runs in WAL mode.  All writes go through ONE
 * writer connection guarded by a mutex, so our own threads never race each
 * other for SQLite's write lock (no SQLITE_BUSY spinning in-process; the busy
 * timeout only matters when another process, e.g. `cairn migrate`, holds it).
 * Reads check out one of `readers` reader connections from a small pool
 * (mutex + condvar).  WAL lets readers run beside the writer, and because
 * every statement is reset right after use, a reader never keeps an old
 * snapshot open: each read starts a fresh read transaction and therefore sees
 * every write committed before it began (read-after-write across threads).
 *
 * Statements.  Every SQL text used on the hot path lives in one table
 * (stmt_sql) indexed by stmt_id.  Each connection prepares a statement the
 * first time it needs it (SQLITE_PREPARE_PERSISTENT) and keeps it for its
 * lifetime; use = bind, step, reset.  Lazy preparation also means a store
 * opened at schema version 0 works until a statement actually needs a table.
 *
 * Transactions.  Each meta call is one transaction: single statements are
 * implicitly atomic, and multi-statement writes run between BEGIN IMMEDIATE
 * and COMMIT on the writer.  Reads that need two tables (object + inline
 * bytes) do it in a single JOIN, which is a single snapshot.
 *
 * Keys.  Object keys are bound as TEXT with explicit lengths and compared
 * with BINARY collation (memcmp order).  Listing computes one lower bound
 * (max of `from` and the prefix) and one upper bound (the prefix successor)
 * in C so the query is a pure range scan of the (bucket, key) primary key:
 * cost O(rows returned), independent of how deep into the bucket it starts.
 *
 * Nothing here prints; database errors are logged once with log_write and
 * returned as CAIRN_E* codes.
 */
#include "meta/meta.h"
#include "meta/sqlite_int.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_MAX 1024
#define READERS_DEFAULT 4
#define READERS_MAX 64
#define BUSY_DEFAULT_MS 5000

/* Object columns, in the order every object SELECT returns them. */
#define OBJ_COLS \
    "bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout, seq, latest," \
    " delete_marker, null_version"
#define OBJ_COLS_O \
    "o.bucket, o.key, o.version_id, o.size, o.etag, o.mtime_ms, o.owner_id, o.storage, " \
    "o.headers_json, o.layout, o.seq, o.latest, o.delete_marker, o.null_version"
/* A versions listing's columns. */
#define VLIST_COLS \
    "SELECT key, version_id, seq, latest, delete_marker, null_version, size, etag, mtime_ms, owner_id FROM objects" \
    " WHERE " BUCKET_IS("?1", "?5") " AND bucket = ?1 AND "
/* Requests name the bucket they resolved by id (?N > 0): a bucket deleted and
 * recreated under the same name by someone else then matches no row. */
#define BUCKET_IS(name_param, id_param) \
    "(" id_param " = 0 OR EXISTS (SELECT 1 FROM buckets WHERE name = " name_param " AND id = " id_param "))"
#define UPLOAD_COLS "upload_id, bucket, key, owner_id, initiated_ms, headers_json, bucket_id"
#define LIST_COLS "SELECT key, size, etag, mtime_ms, owner_id FROM objects WHERE " BUCKET_IS("?1", "?5") \
                  " AND bucket = ?1 AND latest = 1 AND delete_marker = 0 AND "
/* The kinds of configuration a bucket has (meta_bucket.configs). */
#define CONFIG_KINDS "(SELECT group_concat(kind) FROM bucket_configs WHERE bucket_id = buckets.id)"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PING] = "SELECT 1",
    [ST_USER_INSERT] = "INSERT INTO users(name, display_name, is_root, created_ms, audit)"
                       " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_USER_GET] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users WHERE id = ?1",
    [ST_USER_GET_NAME] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users"
                         " WHERE name = ?1",
    [ST_USER_LIST] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users ORDER BY id",
    [ST_USER_ROOT] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users"
                     " WHERE is_root = 1 ORDER BY id LIMIT 1",
    [ST_USER_RENAME] = "UPDATE users SET name = ?2 WHERE id = ?1",
    [ST_KEY_INSERT] = "INSERT INTO access_keys(access_key, user_id, sealed_secret, active,"
                      " created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_KEY_GET] = "SELECT access_key, user_id, sealed_secret, active, created_ms"
                   " FROM access_keys WHERE access_key = ?1",
    [ST_KEY_LIST] = "SELECT access_key, user_id, sealed_secret, active, created_ms"
                    " FROM access_keys WHERE ?1 < 0 OR user_id = ?1 ORDER BY access_key",
    [ST_KEY_SET_ACTIVE] = "UPDATE access_keys SET active = ?2 WHERE access_key = ?1",
    [ST_BUCKET_INSERT] = "INSERT INTO buckets(name, owner_id, created_ms, public_read, region, versioning, object_lock)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_BUCKET_GET] = "SELECT id, name, owner_id, created_ms, public_read, region, versioning, object_lock, " CONFIG_KINDS " FROM buckets"
                      " WHERE name = ?1",
    [ST_BUCKET_EXISTS] = "SELECT owner_id, id, versioning, object_lock FROM buckets WHERE name = ?1",
    [ST_BUCKET_SET_VERSIONING] = "UPDATE buckets SET versioning = ?2 WHERE name = ?1",
    [ST_BUCKET_SET_OBJECT_LOCK] = "UPDATE buckets SET object_lock = 1 WHERE name = ?1",
    [ST_BUCKET_HAS_OBJECTS] = "SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1",
    [ST_BUCKET_DELETE] = "DELETE FROM buckets WHERE name = ?1",
    [ST_BUCKET_LIST] = "SELECT id, name, owner_id, created_ms, public_read, region, versioning, object_lock, " CONFIG_KINDS " FROM buckets"
                       " WHERE ?1 < 0 OR owner_id = ?1 ORDER BY name",
    /* Names compare as bytes (BINARY), the order of the name index. */
    [ST_BUCKET_LIST_PAGE] = "SELECT id, name, owner_id, created_ms, public_read, region, versioning, object_lock, " CONFIG_KINDS
                            " FROM buckets"
                            " WHERE (?1 < 0 OR owner_id = ?1) AND name > ?2 AND name >= ?3 AND (?4 = '' OR name < ?4)"
                            " ORDER BY name LIMIT ?5",
    [ST_BUCKET_TRASH_PARTS] = "INSERT OR IGNORE INTO trash(version_id, layout, added_ms)"
                              " SELECT p.version_id, p.layout, ?2 FROM upload_parts p"
                              " JOIN uploads u ON u.upload_id = p.upload_id WHERE u.bucket_id = ?1",
    [ST_BUCKET_DROP_PARTS] = "DELETE FROM upload_parts WHERE upload_id IN"
                             " (SELECT upload_id FROM uploads WHERE bucket_id = ?1)",
    [ST_BUCKET_DROP_UPLOADS] = "DELETE FROM uploads WHERE bucket_id = ?1",
    [ST_BUCKET_DROP_COMPLETED] = "DELETE FROM completed_uploads WHERE bucket_id = ?1",
    [ST_COMPLETED_INSERT] = "INSERT OR REPLACE INTO completed_uploads(upload_id, bucket_id, key, version_id, etag,"
                            " completed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_COMPLETED_GET] = "SELECT upload_id, bucket_id, key, version_id, etag, completed_ms FROM completed_uploads"
                         " WHERE upload_id = ?1",
    [ST_COMPLETED_PRUNE] = "DELETE FROM completed_uploads WHERE upload_id IN (SELECT upload_id FROM"
                           " completed_uploads WHERE completed_ms < ?1 ORDER BY completed_ms LIMIT ?2)",
    [ST_TRASH_LIST] = "SELECT version_id, layout, added_ms FROM trash ORDER BY added_ms, version_id LIMIT ?1",
    [ST_TRASH_DELETE] = "DELETE FROM trash WHERE version_id = ?1",
    [ST_PLACE_OBJECTS] = "SELECT version_id, size, layout, bucket, key, 0 FROM objects WHERE version_id > ?1"
                         " AND storage = 1 AND substr(layout, 1, 3) <> 'mp:' ORDER BY version_id LIMIT ?2",
    [ST_PLACE_OBJECT_PARTS] = "SELECT part_version_id, size, layout, version_id, '', part_number FROM object_parts"
                              " WHERE part_version_id > ?1 ORDER BY part_version_id LIMIT ?2",
    [ST_PLACE_UPLOAD_PARTS] = "SELECT version_id, size, layout, upload_id, '', part_number FROM upload_parts"
                              " WHERE version_id > ?1 ORDER BY version_id LIMIT ?2",
    [ST_PLACE_SET_OBJECT] = "UPDATE objects SET layout = ?3 WHERE version_id = ?1 AND layout = ?2",
    [ST_PLACE_SET_OBJECT_PART] = "UPDATE object_parts SET layout = ?3 WHERE part_version_id = ?1 AND layout = ?2",
    [ST_PLACE_SET_UPLOAD_PART] = "UPDATE upload_parts SET layout = ?3 WHERE version_id = ?1 AND layout = ?2",
    [ST_PLACE_GET] = "SELECT version_id, size, layout, bucket, key, 0, 0 FROM objects WHERE version_id = ?1"
                     " AND storage = 1 AND substr(layout, 1, 3) <> 'mp:'"
                     " UNION ALL SELECT part_version_id, size, layout, version_id, '', part_number, 1 FROM object_parts"
                     " WHERE part_version_id = ?1"
                     " UNION ALL SELECT version_id, size, layout, upload_id, '', part_number, 2 FROM upload_parts"
                     " WHERE version_id = ?1 LIMIT 1",
    [ST_BUCKET_SET_PUBLIC] = "UPDATE buckets SET public_read = ?2 WHERE name = ?1",
    [ST_OBJ_GET] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = ?1 AND key = ?2 AND latest = 1 AND "
                   BUCKET_IS("?1", "?3"),
    [ST_OBJ_GET_VERSION] = "SELECT " OBJ_COLS_O ", d.data FROM objects o"
                           " LEFT JOIN object_data d ON d.version_id = o.version_id"
                           " WHERE o.bucket = ?1 AND o.key = ?2 AND o.version_id = ?4 AND " BUCKET_IS("?1", "?3"),
    [ST_OBJ_GET_NULL] = "SELECT " OBJ_COLS_O ", d.data FROM objects o"
                        " LEFT JOIN object_data d ON d.version_id = o.version_id"
                        " WHERE o.bucket = ?1 AND o.key = ?2 AND o.null_version = 1 AND " BUCKET_IS("?1", "?3"),
    [ST_OBJ_NULL_NONCURRENT] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = ?1 AND key = ?2 AND null_version = 1"
                               " AND latest = 0",
    [ST_OBJ_DEMOTE] = "UPDATE objects SET latest = 0 WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
    [ST_OBJ_REMOVE] = "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
    [ST_OBJ_SET_HEADERS] = "UPDATE objects SET headers_json = ?5 WHERE bucket = ?1 AND key = ?2 AND version_id = ?4"
                          " AND (?6 IS NULL OR headers_json = ?6)"
                           " AND " BUCKET_IS("?1", "?3"),
    [ST_OBJ_PROMOTE] = "UPDATE objects SET latest = 1 WHERE bucket = ?1 AND key = ?2"
                       " AND seq = (SELECT max(seq) FROM objects WHERE bucket = ?1 AND key = ?2)",
    [ST_OBJ_VLIST_KEY] = VLIST_COLS "key = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
    [ST_OBJ_VLIST_GT] = VLIST_COLS "key > ?2 ORDER BY key, seq DESC LIMIT ?4",
    [ST_OBJ_VLIST_GE] = VLIST_COLS "key >= ?2 ORDER BY key, seq DESC LIMIT ?4",
    [ST_OBJ_VLIST_GT_UB] = VLIST_COLS "key > ?2 AND key < ?6 ORDER BY key, seq DESC LIMIT ?4",
    [ST_OBJ_VLIST_GE_UB] = VLIST_COLS "key >= ?2 AND key < ?6 ORDER BY key, seq DESC LIMIT ?4",
    [ST_VERSION_REFERENCED] = "SELECT EXISTS(SELECT 1 FROM objects WHERE version_id = ?1)"
                              " OR EXISTS(SELECT 1 FROM upload_parts WHERE version_id = ?1)"
                              " OR EXISTS(SELECT 1 FROM object_parts WHERE part_version_id = ?1)",
    [ST_JOB_INSERT] = "INSERT INTO jobs(kind, args, priority, run_at_ms, max_attempts, unique_key, created_ms)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_OUTBOX_INSERT] = "INSERT INTO audit_outbox(origin, time_ms, event) VALUES (?1, ?2, ?3)",
    [ST_JOB_BY_UNIQUE] = "SELECT id, state IN ('completed', 'cancelled', 'discarded') FROM jobs WHERE unique_key = ?1",
    [ST_JOB_DROP_KEY] = "UPDATE jobs SET unique_key = NULL WHERE id = ?1",
    [ST_JOB_PRUNE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE"
                     " (state IN ('completed', 'cancelled') AND finished_ms < ?1)"
                     " OR (state = 'discarded' AND finished_ms < ?2) LIMIT ?3)",
    /* The first due job and the first whose lease ran out, each by its
     * partial index (migration 12), then the better of the two. */
    [ST_JOB_NEXT] = "SELECT id FROM ("
                    " SELECT * FROM (SELECT id, priority, run_at_ms FROM jobs INDEXED BY jobs_due"
                    "  WHERE state IN ('available', 'retryable') AND run_at_ms <= ?1"
                    "  AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))"
                    "  ORDER BY priority DESC, run_at_ms, id LIMIT 1)"
                    " UNION ALL"
                    " SELECT * FROM (SELECT id, priority, run_at_ms FROM jobs INDEXED BY jobs_leased"
                    "  WHERE state = 'running' AND lease_expires_ms < ?1"
                    "  AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))"
                    "  ORDER BY priority DESC, run_at_ms, id LIMIT 1)"
                    ") ORDER BY priority DESC, run_at_ms, id LIMIT 1",
    [ST_JOB_TAKE] = "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2,"
                    " lease_expires_ms = ?3 WHERE id = ?1",
    [ST_JOB_GET] = "SELECT id, kind, args, priority, run_at_ms, attempts, max_attempts, state, lease_owner,"
                   " lease_expires_ms, coalesce(unique_key, ''), last_error, created_ms, finished_ms FROM jobs WHERE id = ?1",
    [ST_JOB_FINISH] = "UPDATE jobs SET state = ?3, run_at_ms = ?4, last_error = ?5, lease_owner = '',"
                      " lease_expires_ms = 0, finished_ms = CASE WHEN ?3 = 'retryable' THEN 0 ELSE ?6 END"
                      " WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    [ST_JOB_RELEASE] = "UPDATE jobs SET state = 'available', attempts = max(attempts - 1, 0), lease_owner = '',"
                       " lease_expires_ms = 0, run_at_ms = max(run_at_ms, ?3)"
                       " WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    [ST_JOB_EXTEND] = "UPDATE jobs SET lease_expires_ms = ?3 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    [ST_JOB_CANCEL] = "UPDATE jobs SET state = 'cancelled', finished_ms = ?2 WHERE id = ?1"
                      " AND state IN ('available', 'retryable')",
    [ST_JOB_RETRY] = "UPDATE jobs SET state = 'available', attempts = 0, run_at_ms = ?2, finished_ms = 0"
                     " WHERE id = ?1 AND state IN ('discarded', 'cancelled', 'retryable')",
    [ST_JOB_LIST] = "SELECT id, kind, args, priority, run_at_ms, attempts, max_attempts, state, lease_owner,"
                    " lease_expires_ms, coalesce(unique_key, ''), last_error, created_ms, finished_ms FROM jobs"
                    " WHERE (?1 = '' OR state = ?1) AND (?2 = '' OR kind = ?2) ORDER BY id DESC LIMIT ?3",
    [ST_JOB_COUNTS] = "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
    [ST_UPLOAD_OLDER] = "SELECT " UPLOAD_COLS " FROM uploads"
                        " WHERE initiated_ms < ?1 ORDER BY initiated_ms LIMIT ?2",
    [ST_UPLOAD_INSERT] = "INSERT INTO uploads(upload_id, bucket, key, owner_id, initiated_ms, headers_json, bucket_id)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_UPLOAD_GET] = "SELECT " UPLOAD_COLS " FROM uploads WHERE upload_id = ?1",
    [ST_UPLOAD_LIST] = "SELECT " UPLOAD_COLS " FROM uploads"
                       " WHERE bucket_id = ?1 AND (key > ?2 OR (key = ?2 AND upload_id > ?3))"
                       " AND substr(CAST(key AS BLOB), 1, ?5) = CAST(?4 AS BLOB)"
                       " ORDER BY key, upload_id LIMIT ?6",
    [ST_PART_UPSERT] = "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms,"
                       " checksum) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(upload_id, part_number)"
                       " DO UPDATE SET version_id = excluded.version_id, size = excluded.size, etag = excluded.etag,"
                       " layout = excluded.layout, mtime_ms = excluded.mtime_ms, checksum = excluded.checksum",
    [ST_PART_GET] = "SELECT part_number, version_id, size, etag, layout, mtime_ms, 0, checksum FROM upload_parts"
                    " WHERE upload_id = ?1 AND part_number = ?2",
    [ST_PART_LIST] = "SELECT part_number, version_id, size, etag, layout, mtime_ms, 0, checksum FROM upload_parts"
                     " WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
    [ST_UPLOAD_DELETE] = "DELETE FROM uploads WHERE upload_id = ?1",
    [ST_PARTS_DELETE] = "DELETE FROM upload_parts WHERE upload_id = ?1",
    [ST_OBJPART_INSERT] = "INSERT OR REPLACE INTO object_parts(version_id, part_number, offset, size, etag,"
                          " part_version_id, layout, checksum) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_OBJPART_LIST] = "SELECT part_number, part_version_id, size, etag, layout, 0, offset, checksum FROM object_parts"
                        " WHERE version_id = ?1 ORDER BY part_number",
    [ST_OBJPARTS_DELETE] = "DELETE FROM object_parts WHERE version_id = ?1",
    /* Free, expired or ours: taken (or renewed, keeping when we took it). */
    [ST_LEASE_ACQUIRE] = "INSERT INTO leases(name, holder, acquired_ms, expires_ms) VALUES (?1, ?2, ?3, ?3 + ?4)"
                         " ON CONFLICT(name) DO UPDATE SET acquired_ms = CASE WHEN leases.holder = excluded.holder"
                         " THEN leases.acquired_ms ELSE excluded.acquired_ms END, holder = excluded.holder,"
                         " expires_ms = excluded.expires_ms"
                         " WHERE leases.holder = excluded.holder OR leases.expires_ms <= excluded.acquired_ms"
                         " RETURNING holder",
    [ST_LEASE_RELEASE] = "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
    [ST_LEASE_GET] = "SELECT name, holder, acquired_ms, expires_ms FROM leases WHERE name = ?1",
    [ST_NOTIFY_TARGET_ADD] = "INSERT INTO notify_targets(name, url, secret, max_attempts, created_ms, ordered)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_NOTIFY_TARGET_GET] = "SELECT name, url, secret, max_attempts, created_ms, ordered FROM notify_targets"
                             " WHERE name = ?1",
    [ST_NOTIFY_TARGET_LIST] = "SELECT name, url, secret, max_attempts, created_ms, ordered FROM notify_targets"
                              " ORDER BY name",
    [ST_NOTIFY_TARGET_REMOVE] = "DELETE FROM notify_targets WHERE name = ?1",
    [ST_BUCKET_NOTIFY_GET] = "SELECT config FROM bucket_notifications WHERE bucket_id = ?1",
    [ST_BUCKET_NOTIFY_PUT] = "INSERT INTO bucket_notifications(bucket_id, config) VALUES (?1, ?2)"
                             " ON CONFLICT(bucket_id) DO UPDATE SET config = excluded.config",
    [ST_BUCKET_NOTIFY_DELETE] = "DELETE FROM bucket_notifications WHERE bucket_id = ?1",
    [ST_BUCKET_CONFIG_GET] = "SELECT body FROM bucket_configs WHERE bucket_id = ?1 AND kind = ?2",
    [ST_BUCKET_CONFIG_PUT] = "INSERT INTO bucket_configs(bucket_id, kind, body, updated_ms) VALUES (?1, ?2, ?3, ?4)"
                             " ON CONFLICT(bucket_id, kind) DO UPDATE SET body = excluded.body,"
                             " updated_ms = excluded.updated_ms",
    [ST_BUCKET_CONFIG_DELETE] = "DELETE FROM bucket_configs WHERE bucket_id = ?1 AND kind = ?2",
    [ST_BUCKET_CONFIG_DROP] = "DELETE FROM bucket_configs WHERE bucket_id = ?1",
    [ST_LIMIT_SET] = "INSERT INTO rate_limits(scope, name, ops_per_s, bytes_per_s, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
                     " ON CONFLICT (scope, name) DO UPDATE SET ops_per_s = excluded.ops_per_s,"
                     " bytes_per_s = excluded.bytes_per_s, updated_ms = excluded.updated_ms",
    [ST_LIMIT_LIST] = "SELECT scope, name, ops_per_s, bytes_per_s, updated_ms FROM rate_limits ORDER BY scope, name",
    [ST_LIMIT_REMOVE] = "DELETE FROM rate_limits WHERE scope = ?1 AND name = ?2",
    [ST_BUCKET_LIMIT_DROP] = "DELETE FROM rate_limits WHERE scope = 'bucket' AND name = ?1",
    [ST_JOB_PENDING_COUNT] = "SELECT count(*) FROM jobs WHERE state IN ('available', 'running', 'retryable')"
                             " AND kind = ?1 AND instr(args, ?2) > 0 AND id < ?3",
    [ST_KMS_KEY_INSERT] = "INSERT INTO kms_keys(id, enabled, description, created_ms) VALUES (?1, 1, ?2, ?3)",
    [ST_KMS_KEY_GET] = "SELECT k.id, k.enabled, k.description, k.created_ms,"
                       " (SELECT max(version) FROM kms_key_versions v WHERE v.key_id = k.id)"
                       " FROM kms_keys k WHERE k.id = ?1",
    [ST_KMS_KEY_LIST] = "SELECT k.id, k.enabled, k.description, k.created_ms,"
                        " (SELECT max(version) FROM kms_key_versions v WHERE v.key_id = k.id)"
                        " FROM kms_keys k ORDER BY k.id",
    [ST_KMS_KEY_SET_ENABLED] = "UPDATE kms_keys SET enabled = ?2 WHERE id = ?1",
    [ST_KMS_VERSION_INSERT] = "INSERT INTO kms_key_versions(key_id, version, sealed, created_ms) VALUES (?1, ?2, ?3, ?4)",
    [ST_KMS_VERSION_GET] = "SELECT sealed FROM kms_key_versions WHERE key_id = ?1 AND version = ?2",
    [ST_KMS_VERSION_ALL] = "SELECT key_id, version, sealed FROM kms_key_versions ORDER BY key_id, version",
    [ST_KMS_VERSION_SET] = "UPDATE kms_key_versions SET sealed = ?3 WHERE key_id = ?1 AND version = ?2",
    [ST_KEY_SECRETS] = "SELECT access_key, sealed_secret FROM access_keys ORDER BY access_key",
    [ST_KEY_SET_SECRET] = "UPDATE access_keys SET sealed_secret = ?2 WHERE access_key = ?1",
    [ST_NOTIFY_SECRETS] = "SELECT name, secret FROM notify_targets WHERE secret <> '' ORDER BY name",
    [ST_NOTIFY_SET_SECRET] = "UPDATE notify_targets SET secret = ?2 WHERE name = ?1",
    [ST_UPLOAD_SET_HEADERS] = "UPDATE uploads SET headers_json = ?3 WHERE upload_id = ?1 AND headers_json = ?2",
    [ST_OBJPARTS_TRASH] = "INSERT OR IGNORE INTO trash(version_id, layout, added_ms)"
                          " SELECT part_version_id, layout, ?2 FROM object_parts WHERE version_id = ?1",
    [ST_LAYOUT_REFS] = "SELECT (SELECT count(*) FROM objects WHERE instr(layout, ?1) > 0)"
                       " + (SELECT count(*) FROM object_parts WHERE instr(layout, ?1) > 0)"
                       " + (SELECT count(*) FROM upload_parts WHERE instr(layout, ?1) > 0)",
    [ST_NODE_UPSERT] = "INSERT INTO nodes(id, url, added_ms) VALUES (?1, ?2, ?3)"
                       " ON CONFLICT(id) DO UPDATE SET url = excluded.url",
    [ST_NODE_LIST] = "SELECT id, url, state, added_ms, last_seen_ms, last_error FROM nodes ORDER BY added_ms, id",
    [ST_NODE_GET] = "SELECT id, url, state, added_ms, last_seen_ms, last_error FROM nodes WHERE id = ?1 OR url = ?1",
    [ST_NODE_SET_STATE] = "UPDATE nodes SET state = ?2 WHERE id = ?1",
    [ST_NODE_SEEN_OK] = "UPDATE nodes SET last_seen_ms = ?2, last_error = '' WHERE id = ?1",
    [ST_NODE_SEEN_ERR] = "UPDATE nodes SET last_error = ?2 WHERE id = ?1",
    [ST_OBJ_SCAN] = "SELECT bucket, key, version_id, size, storage, layout FROM objects"
                    " WHERE (bucket, key) > (?1, ?2) AND latest = 1 ORDER BY bucket, key LIMIT ?3",
    [ST_OBJ_GET_DATA] = "SELECT " OBJ_COLS_O ", d.data FROM objects o"
                        " LEFT JOIN object_data d ON d.version_id = o.version_id"
                        " WHERE o.bucket = ?1 AND o.key = ?2 AND o.latest = 1 AND " BUCKET_IS("?1", "?3"),
    [ST_OBJ_INSERT] = "INSERT INTO objects(" OBJ_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                      " ?13, ?14)",
    [ST_OBJ_REPLACE] = "UPDATE objects SET version_id = ?3, size = ?4, etag = ?5, mtime_ms = ?6, owner_id = ?7,"
                       " storage = ?8, headers_json = ?9, layout = ?10, latest = ?12, delete_marker = ?13,"
                       " null_version = ?14 WHERE bucket = ?1 AND key = ?2 AND seq = ?11",
    [ST_DATA_INSERT] = "INSERT INTO object_data(version_id, data) VALUES (?1, ?2)",
    [ST_DATA_DELETE] = "DELETE FROM object_data WHERE version_id = ?1",
    [ST_OBJ_LIST_GT] = LIST_COLS "key > ?2 ORDER BY key LIMIT ?4",
    [ST_OBJ_LIST_GE] = LIST_COLS "key >= ?2 ORDER BY key LIMIT ?4",
    [ST_OBJ_LIST_GT_UB] = LIST_COLS "key > ?2 AND key < ?3 ORDER BY key LIMIT ?4",
    [ST_OBJ_LIST_GE_UB] = LIST_COLS "key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4",
    [ST_OBJ_COUNT] = "SELECT count(*) FROM objects WHERE bucket = ?1 AND latest = 1 AND delete_marker = 0",
};

/* ---- errors ----------------------------------------------------------------- */

int sq_map_rc(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return 0;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
            return CAIRN_EEXIST;
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return CAIRN_ENOTFOUND;
        return CAIRN_EINVAL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return CAIRN_EBUSY;
    case SQLITE_FULL: return CAIRN_ENOSPC;
    case SQLITE_IOERR: return CAIRN_EIO;
    case SQLITE_NOMEM: return CAIRN_ENOMEM;
    default: return CAIRN_EDB;
    }
}

/* Maps a failed SQLite result, logging it unless it is an expected outcome
 * (a uniqueness or reference violation the caller turns into EEXIST etc.). */
int sq_db_fail(const conn *c, int rc, const char *op) {
    int err = sq_map_rc(rc);
    if (err == 0) err = CAIRN_EDB; /* a row/done where none was expected */
    if (err != CAIRN_EEXIST && err != CAIRN_ENOTFOUND) {
        char code[24];
        log_write(LOG_ERROR, NULL, "meta: sqlite error", "op", op, "code", log_int(code, rc),
                  "error", sqlite3_errmsg(c->db), NULL);
    }
    return err;
}

/* ---- statements ------------------------------------------------------------- */

/* Returns the connection's cached statement id, preparing it on first use. */
sqlite3_stmt *sq_stmt(conn *c, stmt_id id) {
    if (c->st[id]) return c->st[id];
    int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
                                NULL);
    if (rc != SQLITE_OK) {
        sq_db_fail(c, rc, stmt_sql[id]);
        c->st[id] = NULL;
    }
    return c->st[id];
}

/* Ends one use: ends the statement's read snapshot and drops bound pointers
 * (bindings use SQLITE_STATIC, so they must not outlive the caller's data). */
void sq_stmt_done(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no rows, then resets it. */
static int stmt_exec(conn *c, sqlite3_stmt *st, const char *op) {
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_DONE ? 0 : sq_db_fail(c, rc, op);
    sq_stmt_done(st);
    return err;
}

/* What a statement's binds left, their results ORed into bind_rc (SQLITE_OK
 * is 0): 0, or the error logged under op.  A bind fails only on a value over
 * SQLite's length limit or out of memory; the fault build makes the nth one
 * fail as too big (site meta.bind), so the callers' error paths are tested. */
int sq_bind_result(conn *c, int bind_rc, const char *op) {
    if (bind_rc == SQLITE_OK && fault_inject(FAULT_META_BIND)) bind_rc = SQLITE_TOOBIG;
    return bind_rc == SQLITE_OK ? 0 : sq_db_fail(c, bind_rc, op);
}

/* stmt_exec after the binds (bind_rc as in sq_bind_result); a failed bind resets st. */
int sq_stmt_exec_bound(conn *c, sqlite3_stmt *st, int bind_rc, const char *op) {
    int err = sq_bind_result(c, bind_rc, op);
    if (err == 0) return stmt_exec(c, st, op);
    sq_stmt_done(st);
    return err;
}

int sq_bind_str(sqlite3_stmt *st, int i, const char *s) {
    return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* Binds at most max - 1 bytes of s, cut at a UTF-8 character boundary: for
 * free-text columns read back into fixed buffers of max bytes (errors). */
int sq_bind_str_max(sqlite3_stmt *st, int i, const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n > max - 1) {
        n = max - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    return sqlite3_bind_text(st, i, n ? s : "", (int)n, SQLITE_TRANSIENT);
}

int sq_bind_bytes_text(sqlite3_stmt *st, int i, const char *s, size_t n) {
    return sqlite3_bind_text(st, i, n ? s : "", (int)n, SQLITE_STATIC);
}

/* Copies a TEXT column into a fixed buffer; CAIRN_EDB if it would not fit
 * (inputs are length-checked on the way in, so that means a foreign row). */
int sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap) {
    const unsigned char *s = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (n >= cap) return CAIRN_EDB;
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* ---- connections ------------------------------------------------------------ */

static void conn_close(conn *c) {
    for (int i = 0; i < ST__COUNT; i++) {
        sqlite3_finalize(c->st[i]);
        c->st[i] = NULL;
    }
    if (c->db) sqlite3_close_v2(c->db);
    c->db = NULL;
}

static int conn_pragma(conn *c, const char *sql) {
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_db_fail(c, rc, sql);
}

/* Switches to WAL and checks it took: WAL is what lets readers run beside
 * the writer, so a filesystem that refuses it is an error, not a fallback. */
/* Switching a new database to WAL needs it to itself; SQLite answers BUSY
 * at once, without its busy handler, when another process holds a lock it
 * waits on (processes opening one new database together), so the switch is
 * retried here for up to busy_timeout_ms. */
static int conn_enable_wal(conn *c, int busy_timeout_ms) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK) return sq_db_fail(c, rc, "journal_mode");
    int64_t until = time_mono_ns() + (int64_t)busy_timeout_ms * 1000000;
    useconds_t pause = 1000;
    while ((rc = sqlite3_step(st)) == SQLITE_BUSY && time_mono_ns() < until) {
        sqlite3_reset(st);
        usleep(pause);
        if (pause < 32000) pause *= 2;
    }
    /* meta.wal (the fault build): the answer a filesystem without shared
     * memory would give, the mode left as it was. */
    bool wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0 &&
               !fault_inject(FAULT_META_WAL);
    int err = rc == SQLITE_ROW ? 0 : sq_db_fail(c, rc, "journal_mode");
    sqlite3_finalize(st);
    if (err == 0 && !wal) {
        log_write(LOG_ERROR, NULL, "meta: database refused WAL journal mode", NULL);
        err = CAIRN_EDB;
    }
    return err;
}

static int conn_open(conn *c, const char *path, const meta_options *opt, bool writer) {
    memset(c, 0, sizeof *c);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        if (c->db) sq_db_fail(c, rc, "open");
        conn_close(c);
        int err = rc == SQLITE_CANTOPEN ? CAIRN_EIO : sq_map_rc(rc);
        return err ? err : CAIRN_EDB;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, opt->busy_timeout_ms);
    int err = conn_pragma(c, "PRAGMA foreign_keys=ON");
    if (err == 0 && writer) err = conn_enable_wal(c, opt->busy_timeout_ms);
    if (err == 0 && writer)
        err = conn_pragma(c, opt->fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    /* Readers are read-only by construction; query_only makes a stray write
     * on one an error instead of a second writer racing ours. */
    if (err == 0 && !writer) err = conn_pragma(c, "PRAGMA query_only=ON");
    /* The writer's ROLLBACK is prepared now, not when a transaction fails:
     * out of memory then, it could not be prepared, the transaction would
     * stay open, and every later write would join it and never commit. */
    if (err == 0 && writer && !sq_stmt(c, ST_ROLLBACK)) err = CAIRN_ENOMEM;
    if (err != 0) conn_close(c);
    return err;
}

sqlite3 *meta_sqlite_writer_lock(sq_store *ms) {
    pthread_mutex_lock(&ms->wmu);
    return ms->writer.db;
}

void meta_sqlite_writer_unlock(sq_store *ms) { pthread_mutex_unlock(&ms->wmu); }

conn *sq_reader_get(sq_store *ms) {
    pthread_mutex_lock(&ms->rmu);
    while (ms->nidle == 0) pthread_cond_wait(&ms->rcv, &ms->rmu);
    conn *c = ms->idle[--ms->nidle];
    pthread_mutex_unlock(&ms->rmu);
    return c;
}

void sq_reader_put(sq_store *ms, conn *c) {
    pthread_mutex_lock(&ms->rmu);
    ms->idle[ms->nidle++] = c;
    pthread_cond_signal(&ms->rcv);
    pthread_mutex_unlock(&ms->rmu);
}

/* ---- open / close ----------------------------------------------------------- */

static meta_options effective_options(const meta_options *opt) {
    meta_options o = {.readers = READERS_DEFAULT, .fsync = true, .busy_timeout_ms = BUSY_DEFAULT_MS};
    if (opt) {
        o.fsync = opt->fsync;
        if (opt->readers > 0) o.readers = opt->readers < READERS_MAX ? opt->readers : READERS_MAX;
        if (opt->busy_timeout_ms > 0) o.busy_timeout_ms = opt->busy_timeout_ms;
    }
    return o;
}

static void store_free(sq_store *ms) {
    for (int i = 0; i < ms->nreaders; i++) conn_close(&ms->readers[i]);
    conn_close(&ms->writer);
    free(ms->readers);
    free(ms->idle);
    pthread_cond_destroy(&ms->rcv);
    pthread_mutex_destroy(&ms->rmu);
    pthread_mutex_destroy(&ms->wmu);
    pthread_mutex_destroy(&ms->gmu);
    pthread_cond_destroy(&ms->gcv);
    free(ms);
}

int sq_open(const char *path, const meta_options *opt, bool migrate, meta_store **out, char *why, size_t whylen) {
    if (!path || !out || !*path || strcmp(path, ":memory:") == 0) return CAIRN_EINVAL;
    *out = NULL;
    meta_fault_vfs_install();
    meta_options o = effective_options(opt);
    sq_store *ms = calloc(1, sizeof *ms);
    if (!ms) return CAIRN_ENOMEM;
    ms->base.ops = &sq_ops;
    pthread_mutex_init(&ms->wmu, NULL);
    pthread_mutex_init(&ms->gmu, NULL);
    pthread_cond_init(&ms->gcv, NULL);
    pthread_mutex_init(&ms->rmu, NULL);
    pthread_cond_init(&ms->rcv, NULL);
    ms->readers = calloc((size_t)o.readers, sizeof *ms->readers);
    ms->idle = calloc((size_t)o.readers, sizeof *ms->idle);
    if (!ms->readers || !ms->idle) {
        store_free(ms);
        return CAIRN_ENOMEM;
    }
    /* The writer goes first: it creates the file and switches it to WAL,
     * which is persistent, so the readers open an existing WAL database. */
    int err = conn_open(&ms->writer, path, &o, true);
    for (int i = 0; err == 0 && i < o.readers; i++) {
        err = conn_open(&ms->readers[i], path, &o, false);
        if (err == 0) {
            ms->idle[ms->nidle++] = &ms->readers[i];
            ms->nreaders++;
        }
    }
    if (err == 0 && migrate) err = meta_migrate_up_to_latest(ms, why, whylen);
    if (err != 0) {
        store_free(ms);
        return err;
    }
    *out = &ms->base;
    return 0;
}

void sq_close(meta_store *base_) {
    sq_store *ms = SQ(base_);
    if (ms) store_free(ms);
}

int sq_ping(meta_store *base_) {
    sq_store *ms = SQ(base_);
    if (!ms) return CAIRN_EINVAL;
    conn *r = sq_reader_get(ms);
    sqlite3_stmt *st = sq_stmt(r, ST_PING);
    int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
    int err = rc == SQLITE_ROW ? 0 : st ? sq_db_fail(r, rc, "ping") : CAIRN_EDB;
    if (st) sq_stmt_done(st);
    sq_reader_put(ms, r);
    if (err != 0) return err;

    conn *w = &ms->writer;
    pthread_mutex_lock(&ms->wmu);
    sqlite3_stmt *b = sq_stmt(w, ST_BEGIN_IMMEDIATE), *c = sq_stmt(w, ST_COMMIT);
    err = b && c ? stmt_exec(w, b, "ping begin") : CAIRN_EDB;
    if (err == 0) err = stmt_exec(w, c, "ping commit");
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

/* ---- write transactions ---------------------------------------------------- */

/* Locks the writer and opens BEGIN IMMEDIATE; on failure the lock is released. */
int sq_wtx_begin(sq_store *ms, conn **out) {
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = sq_stmt(w, ST_BEGIN_IMMEDIATE);
    int err = st ? stmt_exec(w, st, "begin") : CAIRN_EDB;
    if (err != 0) {
        pthread_mutex_unlock(&ms->wmu);
        return err;
    }
    *out = w;
    return 0;
}

/* Commits when err == 0, else rolls back; unlocks; returns the outcome. */
int sq_wtx_end(sq_store *ms, int err) {
    conn *w = &ms->writer;
    if (err == 0) {
        sqlite3_stmt *st = sq_stmt(w, ST_COMMIT);
        err = st ? stmt_exec(w, st, "commit") : CAIRN_EDB;
    }
    /* A failed COMMIT can leave the transaction open; ROLLBACK is then
     * required, and harmless (an error we ignore) if it already ended.  It
     * was prepared when the writer opened, so it needs no memory now. */
    if (err != 0 && !sqlite3_get_autocommit(w->db)) {
        sqlite3_stmt *st = w->st[ST_ROLLBACK];
        assert(st);
        sqlite3_step(st);
        sq_stmt_done(st);
    }
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

/* ---- small growable arrays for list calls ----------------------------------- */

/* List calls collect rows first and call back after the connection is
 * returned, so a callback may safely call into meta again. */

void *sq_vec_push(vec *v) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void *p = realloc(v->items, cap * v->size);
        if (!p) return NULL;
        v->items = p;
        v->cap = cap;
    }
    return (char *)v->items + v->size * v->n++;
}

/* ---- list calls: rows copied out in batches --------------------------------- */

/* One batch of a paged list (meta_page_rows): a reader for as long as the
 * rows take to copy. */
typedef struct {
    sq_store *ms;
    const sq_pager *p;
    void *ctx;
    const char *op;
} sq_fetch_ud;

static int sq_fetch(void *fud, const void *after, int fetch, char *rows, int *got) {
    sq_fetch_ud *f = fud;
    conn *c = sq_reader_get(f->ms);
    sqlite3_stmt *st = NULL;
    int err = f->p->prepare(c, f->ctx, after, fetch, &st);
    *got = 0;
    while (err == 0 && *got < fetch) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = sq_db_fail(c, rc, f->op);
            break;
        }
        char *row = rows + f->p->row_size * (size_t)*got;
        if ((err = f->p->copy(st, row)) == 0) (*got)++;
        else if (f->p->clear) f->p->clear(row); /* what it copied before failing */
    }
    if (st) sq_stmt_done(st);
    sq_reader_put(f->ms, c);
    return err;
}

int sq_page_rows(sq_store *ms, const sq_pager *p, void *ctx, int limit, bool *more, const char *op) {
    sq_fetch_ud f = {ms, p, ctx, op};
    meta_pager mp = {p->row_size, sq_fetch, p->deliver, p->clear};
    return meta_page_rows(&mp, &f, ctx, limit, more);
}

/* ---- the table ------------------------------------------------------------- */

const meta_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .ping = sq_ping,
    .schema_version = sq_schema_version,
    .migrate = sq_migrate,
    .migration_rows = sq_migration_rows,
    .migrations = &sq_migration_set,
    .user_create = sq_user_create,
    .user_ensure_root = sq_user_ensure_root,
    .user_get = sq_user_get,
    .user_get_by_name = sq_user_get_by_name,
    .user_list = sq_user_list,
    .key_create = sq_key_create,
    .key_get = sq_key_get,
    .key_list = sq_key_list,
    .key_set_active = sq_key_set_active,
    .bucket_create = sq_bucket_create,
    .bucket_get = sq_bucket_get,
    .bucket_delete = sq_bucket_delete,
    .bucket_list = sq_bucket_list,
    .bucket_list_page = sq_bucket_list_page,
    .bucket_set_public = sq_bucket_set_public,
    .object_put = sq_object_put,
    .object_get = sq_object_get,
    .object_delete = sq_object_delete,
    .object_get_version = sq_object_get_version,
    .object_list_versions = sq_object_list_versions,
    .bucket_set_versioning = sq_bucket_set_versioning,
    .bucket_enable_object_lock = sq_bucket_enable_object_lock,
    .object_set_headers = sq_object_set_headers,
    .notify_target_add = sq_notify_target_add,
    .notify_target_get = sq_notify_target_get,
    .notify_target_list = sq_notify_target_list,
    .notify_target_remove = sq_notify_target_remove,
    .limit_set = sq_limit_set,
    .kms_key_create = sq_kms_key_create,
    .kms_key_get = sq_kms_key_get,
    .kms_key_list = sq_kms_key_list,
    .kms_key_set_enabled = sq_kms_key_set_enabled,
    .kms_version_add = sq_kms_version_add,
    .kms_version_get = sq_kms_version_get,
    .master_reseal = sq_master_reseal,
    .upload_set_headers_if = sq_upload_set_headers_if,
    .limit_list = sq_limit_list,
    .limit_remove = sq_limit_remove,
    .bucket_notification_get = sq_bucket_notification_get,
    .bucket_notification_put = sq_bucket_notification_put,
    .bucket_config_get = sq_bucket_config_get,
    .bucket_config_put = sq_bucket_config_put,
    .job_pending_count = sq_job_pending_count,
    .object_delete_many = sq_object_delete_many,
    .object_list = sq_object_list,
    .object_scan = sq_object_scan,
    .placement_scan = sq_placement_scan,
    .placement_set_layout = sq_placement_set_layout,
    .layout_refs = sq_layout_refs,
    .placement_get = sq_placement_get,
    .check = sq_check,
    .repair = sq_repair,
    .upload_create = sq_upload_create,
    .upload_get = sq_upload_get,
    .upload_list = sq_upload_list,
    .part_put = sq_part_put,
    .part_list = sq_part_list,
    .upload_complete = sq_upload_complete,
    .upload_abort = sq_upload_abort,
    .object_parts = sq_object_parts,
    .upload_completed_get = sq_upload_completed_get,
    .upload_completed_prune = sq_upload_completed_prune,
    .trash_list = sq_trash_list,
    .trash_remove = sq_trash_remove,
    .job_enqueue = sq_job_enqueue,
    .job_claim = sq_job_claim,
    .job_finish = sq_job_finish,
    .job_finish_claim = sq_job_finish_claim,
    .job_release = sq_job_release,
    .job_extend = sq_job_extend,
    .job_cancel = sq_job_cancel,
    .job_retry = sq_job_retry,
    .job_get = sq_job_get,
    .job_list = sq_job_list,
    .job_prune = sq_job_prune,
    .job_counts = sq_job_counts,
    .upload_list_older = sq_upload_list_older,
    .node_upsert = sq_node_upsert,
    .node_list = sq_node_list,
    .node_get = sq_node_get,
    .node_set_state = sq_node_set_state,
    .node_seen = sq_node_seen,
    .version_referenced = sq_version_referenced,
    .object_count = sq_object_count,
    .lease_acquire = sq_lease_acquire,
    .lease_release = sq_lease_release,
    .lease_get = sq_lease_get,
    .user_set_audit = sq_user_set_audit,
    .audit_insert = sq_audit_insert,
    .audit_query = sq_audit_query,
    .audit_delete_before = sq_audit_delete_before,
    .audit_outbox_read = sq_audit_outbox_read,
    .audit_outbox_delete = sq_audit_outbox_delete,
    .audit_outbox_count = sq_audit_outbox_count,
};
