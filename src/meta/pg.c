/*
 * pg.c — the shared metadata backend: meta.h on PostgreSQL, through libpq.
 * This file holds what every concern shares (statements, parameters,
 * errors, transactions, paged lists, open and close) and the backend's
 * table of operations; the operations live in the pg_*.c file of their
 * concern (pg_int.h lists them), the pool in pg_pool.c.
 *
 * Statements.  Every SQL text on the hot path lives in one table (pg_sql)
 * indexed by pg_stmt_id.  Each pooled connection prepares a statement the
 * first time it runs it (PQprepare, named "c<id>") and keeps it for its
 * lifetime, so a call costs one round trip (plus BEGIN/COMMIT for a
 * transaction).  Parameters and results are binary: every parameter is
 * cast in the SQL to the type its pgp_* binding sends, and columns are read
 * as raw bytes or network-order integers — no quoting, no escaping, no
 * text parsing on either side.  A statement whose table is missing (a
 * schema at version 0) fails when run, as on SQLite: CAIRN_EDB.
 *
 * Keys.  Object and upload keys are bytea, whose order is memcmp then
 * length: exactly SQLite's BINARY collation, so listing order, delimiters
 * and pagination are byte-identical on the two backends.  Other text
 * columns that are compared or ordered carry COLLATE "C" (pg_migrations.c).
 * Listing binds one lower and one upper bound computed in C, a range scan
 * of the (bucket, key) primary key.
 *
 * Transactions.  A single statement is its own transaction (autocommit); a
 * call that needs several runs them between BEGIN and COMMIT on one pooled
 * connection, at READ COMMITTED, and takes row locks where S3 needs a
 * decision to hold until commit: a put locks its bucket's row (FOR KEY
 * SHARE) and the object's row (FOR UPDATE); deleting a bucket locks the
 * bucket and its uploads (FOR UPDATE) before it looks for objects; parts lock
 * their upload.  So concurrent writers to one key commit one after the other,
 * the last commit wins, and each sees — and reports to its caller — the
 * version it replaced: nothing is lost, no bytes are orphaned.  Any failed
 * statement rolls the transaction back; batches (DeleteObjects) put each
 * item in a savepoint.
 *
 * Answers.  Statements are sent with libpq's asynchronous calls and their
 * answers awaited with poll, at most statement_timeout_ms plus
 * PG_ANSWER_MARGIN_MS (pg_int.h): a server that stops answering without
 * closing the connection (SIGSTOP, a network partition) costs a call that
 * long, and its connection is dropped (CAIRN_EIO), instead of holding the
 * calling thread forever.
 *
 * Errors.  SQLSTATEs map to CAIRN_E* codes (pg_fail): unique_violation is
 * CAIRN_EEXIST and foreign_key_violation CAIRN_ENOTFOUND, as on SQLite; a
 * lost or refused connection is CAIRN_EIO (the connection is then dropped
 * and the pool opens a new one); a statement timeout is CAIRN_ETIMEDOUT;
 * serialization failures, deadlocks and lock timeouts are CAIRN_EBUSY;
 * anything else unexpected is CAIRN_EDB.  Each unexpected error is logged
 * once, with the operation and SQLSTATE, never with the values involved.
 * Nothing here prints.
 */
#include "meta/meta.h"
#include "meta/pg_int.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Object columns, in the order every object SELECT returns them. */
#define OBJ_COLS \
    "bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout, seq, latest," \
    " delete_marker, null_version"
#define OBJ_COLS_O \
    "o.bucket, o.key, o.version_id, o.size, o.etag, o.mtime_ms, o.owner_id, o.storage, o.headers_json, o.layout," \
    " o.seq, o.latest, o.delete_marker, o.null_version"
/* Versions listing: $1 bucket, $2 key bound, $3 limit, $4 bucket id, $5 upper bound or seq. */
#define VLIST_COLS \
    "SELECT key, version_id, seq, latest, delete_marker, null_version, size, etag, mtime_ms, owner_id FROM objects" \
    " WHERE " BUCKET_IS("$1", "$4") " AND bucket = $1::text AND "
/* Requests name the bucket they resolved by id (> 0): a bucket deleted and
 * recreated under the same name by someone else then matches no row. */
#define BUCKET_IS(name_param, id_param)                                                                       \
    "(" id_param "::int8 = 0 OR EXISTS (SELECT 1 FROM buckets WHERE name = " name_param "::text AND id = " \
    id_param "::int8))"
#define UPLOAD_COLS "upload_id, bucket, key, owner_id, initiated_ms, headers_json, bucket_id"
#define JOB_COLS                                                                                              \
    "id, kind, args, priority, run_at_ms, attempts, max_attempts, state, lease_owner, lease_expires_ms,"    \
    " coalesce(unique_key, ''), last_error, created_ms, finished_ms"
/* Listing: $1 bucket, $2 lower bound, $3 limit, $4 bucket id, $5 upper bound. */
#define LIST_COLS \
    "SELECT key, size, etag, mtime_ms, owner_id FROM objects WHERE " BUCKET_IS("$1", "$4") " AND bucket = $1::text" \
    " AND latest AND NOT delete_marker AND "
#define PART_COLS "part_number, version_id, size, etag, layout, mtime_ms, 0, checksum"
#define NOT_MULTIPART "left(layout, 3) <> 'mp:'"
/* The kinds of configuration a bucket has (meta_bucket.configs). */
#define CONFIG_KINDS "(SELECT string_agg(kind, ',') FROM bucket_configs WHERE bucket_id = buckets.id)"

static const char *const pg_sql[PS__COUNT] = {
    [PS_PING] = "SELECT NOT pg_is_in_recovery()",
    [PS_XACT_LOCK] = "SELECT pg_advisory_xact_lock($1::int8)",
    [PS_USER_INSERT] = "INSERT INTO users(name, display_name, is_root, created_ms, audit)"
                       " VALUES ($1::text, $2::text, $3::bool, $4::int8, $5::bool) RETURNING id",
    [PS_USER_GET] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users WHERE id = $1::int8",
    [PS_USER_GET_NAME] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users WHERE name = $1::text",
    [PS_USER_LIST] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users ORDER BY id",
    [PS_USER_ROOT] = "SELECT id, name, display_name, is_root, created_ms, audit FROM users WHERE is_root ORDER BY id LIMIT 1",
    [PS_USER_RENAME] = "UPDATE users SET name = $2::text WHERE id = $1::int8",
    [PS_KEY_INSERT] = "INSERT INTO access_keys(access_key, user_id, sealed_secret, active, created_ms)"
                      " VALUES ($1::text, $2::int8, $3::text, $4::bool, $5::int8)",
    [PS_KEY_GET] = "SELECT access_key, user_id, sealed_secret, active, created_ms FROM access_keys"
                   " WHERE access_key = $1::text",
    [PS_KEY_LIST] = "SELECT access_key, user_id, sealed_secret, active, created_ms FROM access_keys"
                    " WHERE $1::int8 < 0 OR user_id = $1::int8 ORDER BY access_key",
    [PS_KEY_SET_ACTIVE] = "UPDATE access_keys SET active = $2::bool WHERE access_key = $1::text",
    [PS_NAME_LOCK] = "SELECT pg_advisory_xact_lock(1, hashtext($1::text))",
    [PS_BUCKET_INSERT] = "INSERT INTO buckets(name, owner_id, created_ms, public_read, region, versioning, object_lock)"
                         " VALUES ($1::text, $2::int8, $3::int8, $4::bool, $5::text, $6::int8, $7::bool) RETURNING id",
    [PS_BUCKET_GET] = "SELECT id, name, owner_id, created_ms, public_read, region, versioning, object_lock, " CONFIG_KINDS " FROM buckets"
                      " WHERE name = $1::text",
    [PS_BUCKET_VERSIONING] = "SELECT owner_id, id, versioning, object_lock FROM buckets WHERE name = $1::text"
                             " FOR KEY SHARE",
    [PS_BUCKET_VERSIONING_LOCK] = "SELECT owner_id, id, versioning, object_lock FROM buckets WHERE name = $1::text"
                                  " FOR UPDATE",
    [PS_BUCKET_SET_VERSIONING] = "UPDATE buckets SET versioning = $2::int8 WHERE name = $1::text",
    [PS_BUCKET_SET_OBJECT_LOCK] = "UPDATE buckets SET object_lock = true WHERE name = $1::text",
    [PS_BUCKET_EXISTS] = "SELECT owner_id, id FROM buckets WHERE name = $1::text",
    [PS_BUCKET_SHARE] = "SELECT owner_id, id FROM buckets WHERE name = $1::text FOR KEY SHARE",
    [PS_BUCKET_LOCK] = "SELECT owner_id, id FROM buckets WHERE name = $1::text FOR UPDATE",
    [PS_BUCKET_HAS_OBJECTS] = "SELECT 1 FROM objects WHERE bucket = $1::text LIMIT 1",
    [PS_BUCKET_DELETE] = "DELETE FROM buckets WHERE name = $1::text",
    [PS_BUCKET_LIST] = "SELECT id, name, owner_id, created_ms, public_read, region, versioning, object_lock, " CONFIG_KINDS " FROM buckets"
                       " WHERE $1::int8 < 0 OR owner_id = $1::int8 ORDER BY name",
    /* name is COLLATE "C": byte order, the order of its index. */
    [PS_BUCKET_LIST_PAGE] = "SELECT id, name, owner_id, created_ms, public_read, region, versioning, object_lock, " CONFIG_KINDS
                            " FROM buckets"
                            " WHERE ($1::int8 < 0 OR owner_id = $1::int8) AND name > $2::text AND name >= $3::text"
                            " AND ($4::text = '' OR name < $4::text) ORDER BY name LIMIT $5::int8",
    [PS_BUCKET_SET_PUBLIC] = "UPDATE buckets SET public_read = $2::bool WHERE name = $1::text",
    [PS_BUCKET_LOCK_UPLOADS] = "SELECT count(*) FROM (SELECT 1 FROM uploads WHERE bucket_id = $1::int8 FOR UPDATE) s",
    [PS_BUCKET_TRASH_PARTS] = "INSERT INTO trash(version_id, layout, added_ms)"
                              " SELECT p.version_id, p.layout, $2::int8 FROM upload_parts p"
                              " JOIN uploads u ON u.upload_id = p.upload_id WHERE u.bucket_id = $1::int8"
                              " ON CONFLICT DO NOTHING",
    [PS_BUCKET_DROP_PARTS] = "DELETE FROM upload_parts WHERE upload_id IN"
                             " (SELECT upload_id FROM uploads WHERE bucket_id = $1::int8)",
    [PS_BUCKET_DROP_UPLOADS] = "DELETE FROM uploads WHERE bucket_id = $1::int8",
    [PS_BUCKET_DROP_COMPLETED] = "DELETE FROM completed_uploads WHERE bucket_id = $1::int8",
    [PS_OBJ_GET] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = $1::text AND key = $2::bytea AND latest AND "
                   BUCKET_IS("$1", "$3"),
    [PS_OBJ_GET_DATA] = "SELECT " OBJ_COLS_O ", d.data FROM objects o"
                        " LEFT JOIN object_data d ON d.version_id = o.version_id"
                        " WHERE o.bucket = $1::text AND o.key = $2::bytea AND o.latest AND " BUCKET_IS("$1", "$3"),
    [PS_OBJ_LOCK] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = $1::text AND key = $2::bytea AND latest"
                    " FOR UPDATE",
    /* Any unique index refuses it: the key's current version (a concurrent
     * first version) or its seq (a version the caller could not see). */
    [PS_OBJ_INSERT] = "INSERT INTO objects(" OBJ_COLS ") VALUES ($1::text, $2::bytea, $3::text, $4::int8, $5::text,"
                      " $6::int8, $7::int8, $8::int8, $9::bytea, $10::text, $11::int8, $12::bool, $13::bool,"
                      " $14::bool) ON CONFLICT DO NOTHING",
    [PS_OBJ_UPDATE] = "UPDATE objects SET version_id = $3::text, size = $4::int8, etag = $5::text, mtime_ms = $6::int8,"
                      " owner_id = $7::int8, storage = $8::int8, headers_json = $9::bytea, layout = $10::text,"
                      " latest = $12::bool, delete_marker = $13::bool, null_version = $14::bool"
                      " WHERE bucket = $1::text AND key = $2::bytea AND seq = $11::int8",
    [PS_OBJ_GET_VERSION] = "SELECT " OBJ_COLS_O ", d.data FROM objects o LEFT JOIN object_data d"
                           " ON d.version_id = o.version_id WHERE o.bucket = $1::text AND o.key = $2::bytea"
                           " AND o.version_id = $4::text AND " BUCKET_IS("$1", "$3"),
    [PS_OBJ_GET_NULL] = "SELECT " OBJ_COLS_O ", d.data FROM objects o LEFT JOIN object_data d"
                        " ON d.version_id = o.version_id WHERE o.bucket = $1::text AND o.key = $2::bytea"
                        " AND o.null_version AND " BUCKET_IS("$1", "$3"),
    [PS_OBJ_LOCK_VERSION] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = $1::text AND key = $2::bytea"
                            " AND version_id = $3::text FOR UPDATE",
    [PS_OBJ_LOCK_NULL] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = $1::text AND key = $2::bytea"
                         " AND null_version FOR UPDATE",
    [PS_OBJ_NULL_NONCURRENT] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = $1::text AND key = $2::bytea"
                               " AND null_version AND NOT latest FOR UPDATE",
    [PS_OBJ_DEMOTE] = "UPDATE objects SET latest = false WHERE bucket = $1::text AND key = $2::bytea AND seq = $3::int8",
    [PS_OBJ_REMOVE] = "DELETE FROM objects WHERE bucket = $1::text AND key = $2::bytea AND seq = $3::int8",
    [PS_OBJ_SET_HEADERS] = "UPDATE objects SET headers_json = $5::bytea WHERE bucket = $1::text AND key = $2::bytea"
                           " AND version_id = $4::text AND " BUCKET_IS("$1", "$3")
                           " AND ($6::bytea IS NULL OR headers_json = $6::bytea)",
    [PS_OBJ_PROMOTE] = "UPDATE objects SET latest = true WHERE bucket = $1::text AND key = $2::bytea AND seq ="
                       " (SELECT max(seq) FROM objects WHERE bucket = $1::text AND key = $2::bytea)",
    [PS_OBJ_VLIST_KEY] = VLIST_COLS "key = $2::bytea AND seq < $5::int8 ORDER BY seq DESC LIMIT $3::int8",
    [PS_OBJ_VLIST_GT] = VLIST_COLS "key > $2::bytea ORDER BY key, seq DESC LIMIT $3::int8",
    [PS_OBJ_VLIST_GE] = VLIST_COLS "key >= $2::bytea ORDER BY key, seq DESC LIMIT $3::int8",
    [PS_OBJ_VLIST_GT_UB] = VLIST_COLS "key > $2::bytea AND key < $5::bytea ORDER BY key, seq DESC LIMIT $3::int8",
    [PS_OBJ_VLIST_GE_UB] = VLIST_COLS "key >= $2::bytea AND key < $5::bytea ORDER BY key, seq DESC LIMIT $3::int8",
    [PS_DATA_INSERT] = "INSERT INTO object_data(version_id, data) VALUES ($1::text, $2::bytea)",
    [PS_DATA_DELETE] = "DELETE FROM object_data WHERE version_id = $1::text",
    [PS_OBJPARTS_TRASH] = "INSERT INTO trash(version_id, layout, added_ms)"
                          " SELECT part_version_id, layout, $2::int8 FROM object_parts WHERE version_id = $1::text"
                          " ON CONFLICT DO NOTHING",
    [PS_OBJPARTS_DELETE] = "DELETE FROM object_parts WHERE version_id = $1::text",
    [PS_OBJ_LIST_GT] = LIST_COLS "key > $2::bytea ORDER BY key LIMIT $3::int8",
    [PS_OBJ_LIST_GE] = LIST_COLS "key >= $2::bytea ORDER BY key LIMIT $3::int8",
    [PS_OBJ_LIST_GT_UB] = LIST_COLS "key > $2::bytea AND key < $5::bytea ORDER BY key LIMIT $3::int8",
    [PS_OBJ_LIST_GE_UB] = LIST_COLS "key >= $2::bytea AND key < $5::bytea ORDER BY key LIMIT $3::int8",
    [PS_OBJ_COUNT] = "SELECT count(*) FROM objects WHERE bucket = $1::text AND latest AND NOT delete_marker",
    [PS_OBJ_SCAN] = "SELECT bucket, key, version_id, size, storage, layout FROM objects"
                    " WHERE (bucket, key) > ($1::text, $2::bytea) AND latest ORDER BY bucket, key LIMIT $3::int8",
    [PS_VERSION_REFERENCED] = "SELECT EXISTS(SELECT 1 FROM objects WHERE version_id = $1::text)"
                              " OR EXISTS(SELECT 1 FROM upload_parts WHERE version_id = $1::text)"
                              " OR EXISTS(SELECT 1 FROM object_parts WHERE part_version_id = $1::text)",
    [PS_UPLOAD_INSERT] = "INSERT INTO uploads(" UPLOAD_COLS ") VALUES ($1::text, $2::text, $3::bytea, $4::int8,"
                         " $5::int8, $6::bytea, $7::int8)",
    [PS_UPLOAD_GET] = "SELECT " UPLOAD_COLS " FROM uploads WHERE upload_id = $1::text",
    [PS_UPLOAD_LOCK] = "SELECT " UPLOAD_COLS " FROM uploads WHERE upload_id = $1::text FOR UPDATE",
    [PS_UPLOAD_SHARE] = "SELECT 1 FROM uploads WHERE upload_id = $1::text FOR KEY SHARE",
    [PS_UPLOAD_LIST] = "SELECT " UPLOAD_COLS " FROM uploads WHERE bucket_id = $1::int8"
                       " AND (key > $2::bytea OR (key = $2::bytea AND upload_id > $3::text))"
                       " AND substring(key from 1 for ($5::int8)::int4) = $4::bytea"
                       " ORDER BY key, upload_id LIMIT $6::int8",
    [PS_UPLOAD_OLDER] = "SELECT " UPLOAD_COLS " FROM uploads WHERE initiated_ms < $1::int8"
                        " ORDER BY initiated_ms LIMIT $2::int8",
    [PS_UPLOAD_DELETE] = "DELETE FROM uploads WHERE upload_id = $1::text",
    [PS_PART_LOCK] = "SELECT " PART_COLS " FROM upload_parts WHERE upload_id = $1::text AND part_number = $2::int8"
                     " FOR UPDATE",
    [PS_PART_INSERT] = "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms,"
                       " checksum) VALUES ($1::text, $2::int8, $3::text, $4::int8, $5::text, $6::text, $7::int8,"
                       " $8::text) ON CONFLICT (upload_id, part_number) DO NOTHING",
    [PS_PART_UPDATE] = "UPDATE upload_parts SET version_id = $3::text, size = $4::int8, etag = $5::text,"
                       " layout = $6::text, mtime_ms = $7::int8, checksum = $8::text"
                       " WHERE upload_id = $1::text AND part_number = $2::int8",
    [PS_PART_LIST] = "SELECT " PART_COLS " FROM upload_parts WHERE upload_id = $1::text AND part_number > $2::int8"
                     " ORDER BY part_number LIMIT $3::int8",
    [PS_PARTS_DELETE] = "DELETE FROM upload_parts WHERE upload_id = $1::text",
    [PS_OBJPART_INSERT] = "INSERT INTO object_parts(version_id, part_number, \"offset\", size, etag, part_version_id,"
                          " layout, checksum) VALUES ($1::text, $2::int8, $3::int8, $4::int8, $5::text, $6::text,"
                          " $7::text, $8::text)"
                          " ON CONFLICT (version_id, part_number) DO UPDATE SET \"offset\" = excluded.\"offset\","
                          " size = excluded.size, etag = excluded.etag, part_version_id = excluded.part_version_id,"
                          " layout = excluded.layout, checksum = excluded.checksum",
    [PS_OBJPART_LIST] = "SELECT part_number, part_version_id, size, etag, layout, 0, \"offset\", checksum FROM object_parts"
                        " WHERE version_id = $1::text ORDER BY part_number",
    [PS_COMPLETED_INSERT] = "INSERT INTO completed_uploads(upload_id, bucket_id, key, version_id, etag, completed_ms)"
                            " VALUES ($1::text, $2::int8, $3::bytea, $4::text, $5::text, $6::int8)"
                            " ON CONFLICT (upload_id) DO UPDATE SET bucket_id = excluded.bucket_id,"
                            " key = excluded.key, version_id = excluded.version_id, etag = excluded.etag,"
                            " completed_ms = excluded.completed_ms",
    [PS_COMPLETED_GET] = "SELECT upload_id, bucket_id, key, version_id, etag, completed_ms FROM completed_uploads"
                         " WHERE upload_id = $1::text",
    [PS_COMPLETED_PRUNE] = "DELETE FROM completed_uploads WHERE upload_id IN (SELECT upload_id FROM completed_uploads"
                           " WHERE completed_ms < $1::int8 ORDER BY completed_ms LIMIT $2::int8)",
    [PS_TRASH_LIST] = "SELECT version_id, layout, added_ms FROM trash ORDER BY added_ms, version_id LIMIT $1::int8",
    [PS_TRASH_DELETE] = "DELETE FROM trash WHERE version_id = $1::text",
    [PS_PLACE_OBJECTS] = "SELECT version_id, size, layout, bucket, key, 0 FROM objects WHERE version_id > $1::text"
                         " AND storage = 1 AND " NOT_MULTIPART " ORDER BY version_id LIMIT $2::int8",
    [PS_PLACE_OBJECT_PARTS] = "SELECT part_version_id, size, layout, version_id, ''::bytea, part_number"
                              " FROM object_parts WHERE part_version_id > $1::text ORDER BY part_version_id"
                              " LIMIT $2::int8",
    [PS_PLACE_UPLOAD_PARTS] = "SELECT version_id, size, layout, upload_id, ''::bytea, part_number FROM upload_parts"
                              " WHERE version_id > $1::text ORDER BY version_id LIMIT $2::int8",
    [PS_PLACE_SET_OBJECT] = "UPDATE objects SET layout = $3::text WHERE version_id = $1::text AND layout = $2::text",
    [PS_PLACE_SET_OBJECT_PART] = "UPDATE object_parts SET layout = $3::text WHERE part_version_id = $1::text"
                                 " AND layout = $2::text",
    [PS_PLACE_SET_UPLOAD_PART] = "UPDATE upload_parts SET layout = $3::text WHERE version_id = $1::text"
                                 " AND layout = $2::text",
    [PS_PLACE_GET] = "SELECT version_id, size, layout, bucket, key, 0, 0 FROM objects WHERE version_id = $1::text"
                     " AND storage = 1 AND " NOT_MULTIPART
                     " UNION ALL SELECT part_version_id, size, layout, version_id, ''::bytea, part_number, 1"
                     " FROM object_parts WHERE part_version_id = $1::text"
                     " UNION ALL SELECT version_id, size, layout, upload_id, ''::bytea, part_number, 2"
                     " FROM upload_parts WHERE version_id = $1::text LIMIT 1",
    [PS_LAYOUT_REFS] = "SELECT (SELECT count(*) FROM objects WHERE strpos(layout, $1::text) > 0)"
                       " + (SELECT count(*) FROM object_parts WHERE strpos(layout, $1::text) > 0)"
                       " + (SELECT count(*) FROM upload_parts WHERE strpos(layout, $1::text) > 0)",
    [PS_NODE_UPSERT] = "INSERT INTO nodes(id, url, added_ms) VALUES ($1::text, $2::text, $3::int8)"
                       " ON CONFLICT (id) DO UPDATE SET url = excluded.url",
    [PS_NODE_LIST] = "SELECT id, url, state, added_ms, last_seen_ms, last_error FROM nodes ORDER BY added_ms, id",
    [PS_NODE_GET] = "SELECT id, url, state, added_ms, last_seen_ms, last_error FROM nodes"
                    " WHERE id = $1::text OR url = $1::text",
    [PS_NODE_SET_STATE] = "UPDATE nodes SET state = $2::text WHERE id = $1::text",
    [PS_NODE_SEEN_OK] = "UPDATE nodes SET last_seen_ms = $2::int8, last_error = ''::bytea WHERE id = $1::text",
    [PS_NODE_SEEN_ERR] = "UPDATE nodes SET last_error = $2::bytea WHERE id = $1::text",
    [PS_JOB_INSERT] = "INSERT INTO jobs(kind, args, priority, run_at_ms, max_attempts, unique_key, created_ms)"
                      " VALUES ($1::text, $2::text, $3::int8, $4::int8, $5::int8, $6::text, $7::int8)"
                      " ON CONFLICT (unique_key) DO NOTHING RETURNING id",
    [PS_JOB_BY_UNIQUE] = "SELECT id, state IN ('completed', 'cancelled', 'discarded') FROM jobs"
                         " WHERE unique_key = $1::text FOR UPDATE",
    [PS_JOB_DROP_KEY] = "UPDATE jobs SET unique_key = NULL WHERE id = $1::int8",
    [PS_JOB_PRUNE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE"
                     " (state IN ('completed', 'cancelled') AND finished_ms < $1::int8)"
                     " OR (state = 'discarded' AND finished_ms < $2::int8) LIMIT $3::int8)",
    /* One statement: the next runnable job, skipping rows another claimer
     * has locked, becomes running under $2 until $3. */
    [PS_JOB_CLAIM] = "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2::text,"
                     " lease_expires_ms = $3::int8 WHERE id = (SELECT id FROM jobs WHERE"
                     " ((state IN ('available', 'retryable') AND run_at_ms <= $1::int8)"
                     " OR (state = 'running' AND lease_expires_ms < $1::int8))"
                     " AND ($4::text IS NULL OR kind IN (SELECT json_array_elements_text($4::json)))"
                     " ORDER BY priority DESC, run_at_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING " JOB_COLS,
    [PS_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = $1::int8",
    [PS_JOB_FINISH] = "UPDATE jobs SET state = $3::text, run_at_ms = $4::int8, last_error = $5::bytea,"
                      " lease_owner = '', lease_expires_ms = 0,"
                      " finished_ms = CASE WHEN $3::text = 'retryable' THEN 0 ELSE $6::int8 END"
                      " WHERE id = $1::int8 AND state = 'running' AND lease_owner = $2::text",
    [PS_JOB_RELEASE] = "UPDATE jobs SET state = 'available', attempts = greatest(attempts - 1, 0), lease_owner = '',"
                       " lease_expires_ms = 0, run_at_ms = greatest(run_at_ms, $3::int8)"
                       " WHERE id = $1::int8 AND state = 'running' AND lease_owner = $2::text",
    [PS_JOB_EXTEND] = "UPDATE jobs SET lease_expires_ms = $3::int8 WHERE id = $1::int8 AND state = 'running'"
                      " AND lease_owner = $2::text",
    [PS_JOB_CANCEL] = "UPDATE jobs SET state = 'cancelled', finished_ms = $2::int8 WHERE id = $1::int8"
                      " AND state IN ('available', 'retryable')",
    [PS_JOB_RETRY] = "UPDATE jobs SET state = 'available', attempts = 0, run_at_ms = $2::int8, finished_ms = 0"
                     " WHERE id = $1::int8 AND state IN ('discarded', 'cancelled', 'retryable')",
    [PS_JOB_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE ($1::text = '' OR state = $1::text)"
                    " AND ($2::text = '' OR kind = $2::text) ORDER BY id DESC LIMIT $3::int8",
    [PS_JOB_COUNTS] = "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
    /* Sent when the enqueue's transaction commits (pg_jobs.c). */
    [PS_JOB_NOTIFY] = "SELECT pg_notify('cairn_jobs', $1::text)",
    /* Free, expired or ours: taken (or renewed, keeping when we took it).
     * Concurrent takers of a new name: one inserts, the others' ON CONFLICT
     * waits for it and then finds the row held. */
    [PS_LEASE_ACQUIRE] = "INSERT INTO leases(name, holder, acquired_ms, expires_ms)"
                         " VALUES ($1::text, $2::text, $3::int8, $3::int8 + $4::int8)"
                         " ON CONFLICT (name) DO UPDATE SET acquired_ms = CASE WHEN leases.holder = excluded.holder"
                         " THEN leases.acquired_ms ELSE excluded.acquired_ms END, holder = excluded.holder,"
                         " expires_ms = excluded.expires_ms"
                         " WHERE leases.holder = excluded.holder OR leases.expires_ms <= excluded.acquired_ms"
                         " RETURNING holder",
    [PS_LEASE_RELEASE] = "DELETE FROM leases WHERE name = $1::text AND holder = $2::text",
    /* A chunk of a batch in one statement: one text-format array per
     * column (pg_audit.c builds them), unnested in the arrays' order. */
    [PS_OUTBOX_INSERT] = "INSERT INTO audit_outbox(origin, time_ms, event) VALUES ($1::text, $2::int8, $3::text)",
    [PS_AUDIT_INSERT] = "INSERT INTO audit_events(event_id, time_us, request_id, correlation_id, principal, user_name,"
                        " source_address, action, bucket, key, version_id, outcome, status, error_code, bytes_in,"
                        " bytes_out, duration_us) SELECT e, t, r, c, p, u, s, a, b, k, v, o, st, ec, bi, bo, d FROM"
                        " unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
                        " $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], $14::text[],"
                        " $15::int8[], $16::int8[], $17::int8[]) WITH ORDINALITY"
                        " AS x(e, t, r, c, p, u, s, a, b, k, v, o, st, ec, bi, bo, d, n) ORDER BY n"
                        " ON CONFLICT (event_id) DO NOTHING",
    [PS_USER_SET_AUDIT] = "UPDATE users SET audit = $2::bool WHERE name = $1::text",
    [PS_LEASE_GET] = "SELECT name, holder, acquired_ms, expires_ms FROM leases WHERE name = $1::text",
    [PS_NOTIFY_TARGET_ADD] = "INSERT INTO notify_targets(name, url, secret, max_attempts, created_ms, ordered)"
                             " VALUES ($1::text, $2::text, $3::text, $4::int8, $5::int8, $6::bool)",
    [PS_NOTIFY_TARGET_GET] = "SELECT name, url, secret, max_attempts, created_ms, ordered FROM notify_targets"
                             " WHERE name = $1::text",
    [PS_NOTIFY_TARGET_LIST] = "SELECT name, url, secret, max_attempts, created_ms, ordered FROM notify_targets"
                              " ORDER BY name",
    [PS_NOTIFY_TARGET_REMOVE] = "DELETE FROM notify_targets WHERE name = $1::text",
    [PS_BUCKET_NOTIFY_GET] = "SELECT config FROM bucket_notifications WHERE bucket_id = $1::int8",
    [PS_BUCKET_NOTIFY_PUT] = "INSERT INTO bucket_notifications(bucket_id, config) VALUES ($1::int8, $2::text)"
                             " ON CONFLICT(bucket_id) DO UPDATE SET config = excluded.config",
    [PS_BUCKET_NOTIFY_DELETE] = "DELETE FROM bucket_notifications WHERE bucket_id = $1::int8",
    [PS_BUCKET_CONFIG_GET] = "SELECT body FROM bucket_configs WHERE bucket_id = $1::int8 AND kind = $2::text",
    [PS_BUCKET_CONFIG_PUT] = "INSERT INTO bucket_configs(bucket_id, kind, body, updated_ms)"
                             " VALUES ($1::int8, $2::text, $3::text, $4::int8)"
                             " ON CONFLICT(bucket_id, kind) DO UPDATE SET body = excluded.body,"
                             " updated_ms = excluded.updated_ms",
    [PS_BUCKET_CONFIG_DELETE] = "DELETE FROM bucket_configs WHERE bucket_id = $1::int8 AND kind = $2::text",
    [PS_BUCKET_CONFIG_DROP] = "DELETE FROM bucket_configs WHERE bucket_id = $1::int8",
    [PS_LIMIT_SET] = "INSERT INTO rate_limits(scope, name, ops_per_s, bytes_per_s, updated_ms)"
                     " VALUES ($1::text, $2::text, $3::int8, $4::int8, $5::int8)"
                     " ON CONFLICT (scope, name) DO UPDATE SET ops_per_s = excluded.ops_per_s,"
                     " bytes_per_s = excluded.bytes_per_s, updated_ms = excluded.updated_ms",
    [PS_LIMIT_LIST] = "SELECT scope, name, ops_per_s, bytes_per_s, updated_ms FROM rate_limits ORDER BY scope, name",
    [PS_LIMIT_REMOVE] = "DELETE FROM rate_limits WHERE scope = $1::text AND name = $2::text",
    [PS_BUCKET_LIMIT_DROP] = "DELETE FROM rate_limits WHERE scope = 'bucket' AND name = $1::text",
    [PS_JOB_PENDING_COUNT] = "SELECT count(*) FROM jobs WHERE state IN ('available', 'running', 'retryable')"
                             " AND kind = $1::text AND strpos(args, $2::text) > 0 AND id < $3::int8",
    [PS_KMS_KEY_INSERT] = "INSERT INTO kms_keys(id, enabled, description, created_ms)"
                          " VALUES ($1::text, true, $2::text, $3::int8)",
    [PS_KMS_KEY_GET] = "SELECT k.id, k.enabled, k.description, k.created_ms,"
                       " (SELECT max(version) FROM kms_key_versions v WHERE v.key_id = k.id)"
                       " FROM kms_keys k WHERE k.id = $1::text",
    [PS_KMS_KEY_LIST] = "SELECT k.id, k.enabled, k.description, k.created_ms,"
                        " (SELECT max(version) FROM kms_key_versions v WHERE v.key_id = k.id)"
                        " FROM kms_keys k ORDER BY k.id",
    [PS_KMS_KEY_SET_ENABLED] = "UPDATE kms_keys SET enabled = $2::bool WHERE id = $1::text",
    [PS_KMS_VERSION_INSERT] = "INSERT INTO kms_key_versions(key_id, version, sealed, created_ms)"
                              " VALUES ($1::text, $2::int8, $3::bytea, $4::int8)",
    [PS_KMS_VERSION_GET] = "SELECT sealed FROM kms_key_versions WHERE key_id = $1::text AND version = $2::int8",
    [PS_KMS_VERSION_ALL] = "SELECT key_id, version, sealed FROM kms_key_versions ORDER BY key_id, version FOR UPDATE",
    [PS_KMS_VERSION_SET] = "UPDATE kms_key_versions SET sealed = $3::bytea WHERE key_id = $1::text"
                           " AND version = $2::int8",
    [PS_KEY_SECRETS] = "SELECT access_key, sealed_secret FROM access_keys ORDER BY access_key FOR UPDATE",
    [PS_KEY_SET_SECRET] = "UPDATE access_keys SET sealed_secret = $2::text WHERE access_key = $1::text",
    [PS_NOTIFY_SECRETS] = "SELECT name, secret FROM notify_targets WHERE secret <> '' ORDER BY name FOR UPDATE",
    [PS_NOTIFY_SET_SECRET] = "UPDATE notify_targets SET secret = $2::text WHERE name = $1::text",
    [PS_UPLOAD_SET_HEADERS] = "UPDATE uploads SET headers_json = $3::bytea WHERE upload_id = $1::text"
                              " AND headers_json = $2::bytea",
};

/* ---- parameters ------------------------------------------------------------- */

static void push(pg_params *p, const char *v, int len) {
    assert(p->n < PG_PARAMS_MAX);
    p->values[p->n] = v;
    p->lengths[p->n] = len;
    p->formats[p->n] = 1;
    p->n++;
}

void pgp_int(pg_params *p, int64_t v) {
    assert(p->n < PG_PARAMS_MAX);
    uint64_t u = (uint64_t)v;
    char *b = p->ints[p->n];
    for (int i = 7; i >= 0; i--, u >>= 8) b[i] = (char)(u & 0xff);
    push(p, b, 8);
}

void pgp_bool(pg_params *p, bool v) {
    assert(p->n < PG_PARAMS_MAX);
    char *b = p->ints[p->n];
    b[0] = v ? 1 : 0;
    push(p, b, 1);
}

void pgp_text(pg_params *p, const char *s) {
    s = s ? s : "";
    push(p, s, (int)strlen(s));
}

/* The length of s cut to at most max - 1 bytes at a UTF-8 character
 * boundary (as sq_bind_str_max does). */
static size_t cut_len(const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n > max - 1) {
        n = max - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    return n;
}

void pgp_text_max(pg_params *p, const char *s, size_t max) { push(p, s ? s : "", (int)cut_len(s, max)); }

void pgp_bytes(pg_params *p, const void *s, size_t n) {
    /* libpq sends a NULL value as SQL NULL: an empty value needs a pointer. */
    push(p, n ? (const char *)s : "", (int)n);
}

void pgp_bytes_max(pg_params *p, const char *s, size_t max) { pgp_bytes(p, s ? s : "", cut_len(s, max)); }

void pgp_null(pg_params *p) { push(p, NULL, 0); }

/* ---- columns ----------------------------------------------------------------- */

enum { OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23 };

int64_t pg_int(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    Oid t = PQftype(r, col);
    assert((t == OID_INT8 && len == 8) || (t == OID_INT4 && len == 4) || (t == OID_INT2 && len == 2) ||
           (t == OID_BOOL && len == 1));
    (void)t;
    uint64_t u = 0;
    for (int i = 0; i < len; i++) u = u << 8 | v[i];
    if (len < 8 && (v[0] & 0x80)) u |= ~(uint64_t)0 << (8 * len); /* sign-extend */
    return (int64_t)u;
}

bool pg_bool(const PGresult *r, int row, int col) { return pg_int(r, row, col) != 0; }

int pg_copy(const PGresult *r, int row, int col, char *dst, size_t cap) {
    size_t n = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
    if (n >= cap) return CAIRN_EDB;
    if (n) memcpy(dst, PQgetvalue(r, row, col), n);
    dst[n] = '\0';
    return 0;
}

char *pg_strdup(const PGresult *r, int row, int col, const char *dflt) {
    if (PQgetisnull(r, row, col)) return strdup(dflt);
    size_t n = (size_t)PQgetlength(r, row, col);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, PQgetvalue(r, row, col), n);
    s[n] = '\0';
    return s;
}

/* ---- errors -------------------------------------------------------------------- */

static bool class_is(const char *state, const char *cls) { return state && !strncmp(state, cls, 2); }

static int map_sqlstate(const char *s) {
    if (!s) return CAIRN_EDB;
    if (!strcmp(s, "23505")) return CAIRN_EEXIST;    /* unique_violation */
    if (!strcmp(s, "23503")) return CAIRN_ENOTFOUND; /* foreign_key_violation: what it names is gone */
    if (class_is(s, "23")) return CAIRN_EINVAL;      /* other integrity constraints (check, not null) */
    if (class_is(s, "22")) return CAIRN_EINVAL;      /* data exceptions: a value the column cannot hold */
    if (!strcmp(s, "57014")) return CAIRN_ETIMEDOUT; /* query_canceled: statement_timeout */
    if (!strcmp(s, "40001") || !strcmp(s, "40P01") || !strcmp(s, "55P03"))
        return CAIRN_EBUSY;                          /* serialization failure, deadlock, lock timeout */
    if (!strcmp(s, "53100")) return CAIRN_ENOSPC;    /* disk_full */
    if (!strcmp(s, "53200")) return CAIRN_ENOMEM;    /* out_of_memory */
    if (!strcmp(s, "53300")) return CAIRN_EBUSY;     /* too_many_connections */
    if (class_is(s, "08") || !strcmp(s, "57P01") || !strcmp(s, "57P02") || !strcmp(s, "57P03") ||
        !strcmp(s, "58030"))
        return CAIRN_EIO;                            /* the connection or the server's I/O */
    return CAIRN_EDB;
}

int pg_fail(pg_conn *c, const PGresult *res, const char *op) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int err;
    if (state) err = map_sqlstate(state);
    else err = PQstatus(c->db) == CONNECTION_BAD ? CAIRN_EIO : res ? CAIRN_EDB : CAIRN_ENOMEM;
    if (err == CAIRN_EIO) c->broken = true;
    if (err != CAIRN_EEXIST && err != CAIRN_ENOTFOUND) {
        const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        char line[256];
        if (!msg) {
            /* libpq's own message (a lost connection): its first line. */
            const char *m = PQerrorMessage(c->db);
            snprintf(line, sizeof line, "%.*s", (int)strcspn(m, "\n"), m);
            msg = line;
        }
        log_write(LOG_ERROR, NULL, "meta: postgres error", "op", op, "sqlstate", state ? state : "", "error", msg,
                  NULL);
        pthread_mutex_lock(&c->owner->mu);
        c->owner->st.errors++;
        pthread_mutex_unlock(&c->owner->mu);
    }
    return err;
}

/* ---- running statements ---------------------------------------------------------- */

/* ---- sending and awaiting ------------------------------------------------------ */

/* Until the connection has a result ready, its input failed, or deadline_ns
 * (0 = none) passed: 0, or CAIRN_ETIMEDOUT for the deadline. */
static int wait_ready(pg_conn *c, int64_t deadline_ns) {
    for (;;) {
        int pending = PQflush(c->db); /* 0 all sent, 1 more to send, -1 failed */
        if (pending < 0 || (pending == 0 && !PQisBusy(c->db))) return 0;
        int timeout = -1;
        if (deadline_ns) {
            int64_t left = deadline_ns - time_mono_ns();
            if (left <= 0) return CAIRN_ETIMEDOUT;
            timeout = (int)((left + 999999) / 1000000);
        }
        struct pollfd p = {.fd = PQsocket(c->db), .events = POLLIN | (pending ? POLLOUT : 0)};
        if (p.fd < 0) return 0;
        int n = poll(&p, 1, timeout);
        if (n < 0 && errno != EINTR) return 0;
        /* A failed read leaves the connection bad: PQgetResult says so. */
        if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(c->db)) return 0;
    }
}

/* The answer to what was just sent (sent: the PQsend* call's result). */
static PGresult *await_answer(pg_conn *c, int sent, int64_t deadline_ns, bool *late) {
    *late = false;
    if (!sent) return NULL; /* not sent: PQerrorMessage says why */
    PGresult *keep = NULL;
    for (;;) {
        if (wait_ready(c, deadline_ns) != 0) {
            PQclear(keep);
            *late = true;
            /* Mid-statement, the connection cannot be reused; closing it
             * must not wait on the silent server either. */
            c->broken = true;
            PQsetnonblocking(c->db, 1);
            return NULL;
        }
        PGresult *r = PQgetResult(c->db);
        if (!r) break;
        /* As PQexec: the first error, else the last result. */
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
            PQclear(r);
        } else {
            PQclear(keep);
            keep = r;
        }
    }
    return keep;
}

PGresult *pg_exec_until(pg_conn *c, const char *sql, int64_t deadline_ns, bool *late) {
    return await_answer(c, PQsendQuery(c->db, sql), deadline_ns, late);
}

/* When a statement's answer is due (0 = no limit). */
static int64_t answer_deadline(const pg_conn *c) {
    int t = c->owner->opt.statement_timeout_ms;
    if (t <= 0 || c->unbounded) return 0;
    return time_mono_ns() + ((int64_t)t + PG_ANSWER_MARGIN_MS) * 1000000;
}

/* A statement whose answer did not come in time: logged, counted, and the
 * connection (marked broken) is closed when released. */
static int answer_late(pg_conn *c, const char *op) {
    char ms[24];
    log_write(LOG_ERROR, NULL, "meta: postgres did not answer in time; connection dropped", "op", op, "waited_ms",
              log_int(ms, (long long)c->owner->opt.statement_timeout_ms + PG_ANSWER_MARGIN_MS), NULL);
    pthread_mutex_lock(&c->owner->mu);
    c->owner->st.errors++;
    pthread_mutex_unlock(&c->owner->mu);
    return CAIRN_EIO;
}

/* The fault build's sites on the connection (docs/fault-injection.md), as
 * when a network drops: pg.send, lost before a statement is sent (nothing of
 * it ran); pg.answer, lost after PostgreSQL ran it and answered (a COMMIT has
 * committed).  Either way the caller hears CAIRN_EIO and the connection is
 * broken: closed on release, which rolls back what it still had open.  True
 * when injected. */
static bool connection_lost(pg_conn *c, fault_site site, const char *op) {
    if (!fault_inject(site)) return false;
    c->broken = true;
    log_write(LOG_ERROR, NULL,
              site == FAULT_PG_SEND ? "meta: postgres connection lost before the statement was sent (fault injected)"
                                    : "meta: postgres connection lost before its answer (fault injected)",
              "op", op, NULL);
    return true;
}
#define send_lost(c, op) connection_lost((c), FAULT_PG_SEND, (op))

static bool answer_lost(pg_conn *c, PGresult **r, const char *op) {
    if (!connection_lost(c, FAULT_PG_ANSWER, op)) return false;
    PQclear(*r);
    *r = NULL;
    return true;
}

static int result_done(pg_conn *c, PGresult *r, PGresult **out, int64_t *changes, const char *op) {
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
        if (changes) *changes = strtoll(PQcmdTuples(r), NULL, 10);
        if (out) *out = r;
        else PQclear(r);
        return 0;
    }
    int err = pg_fail(c, r, op);
    PQclear(r);
    return err;
}

int pg_run(pg_conn *c, pg_stmt_id id, const pg_params *p, PGresult **out, int64_t *changes, const char *op) {
    assert(id >= 0 && id < PS__COUNT && pg_sql[id]);
    if (out) *out = NULL;
    if (changes) *changes = 0;
    char name[16];
    snprintf(name, sizeof name, "c%d", (int)id);
    if (c->broken) return CAIRN_EIO; /* lost or silent: nothing more is sent on it */
    bool late;
    if (!c->prepared[id]) {
        /* Prepared statements are not transactional: one prepared inside a
         * transaction that rolls back stays prepared. */
        PGresult *r = await_answer(c, PQsendPrepare(c->db, name, pg_sql[id], 0, NULL), answer_deadline(c), &late);
        if (late) return answer_late(c, op);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            int err = pg_fail(c, r, op);
            PQclear(r);
            return err;
        }
        PQclear(r);
        c->prepared[id] = true;
    }
    if (send_lost(c, op)) return CAIRN_EIO;
    int sent = PQsendQueryPrepared(c->db, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
                                   p ? p->formats : NULL, 1);
    PGresult *r = await_answer(c, sent, answer_deadline(c), &late);
    if (late) return answer_late(c, op);
    if (answer_lost(c, &r, op)) return CAIRN_EIO;
    return result_done(c, r, out, changes, op);
}

int pg_run_sql(pg_conn *c, const char *sql, const pg_params *p, PGresult **out, int64_t *changes, const char *op) {
    if (out) *out = NULL;
    if (changes) *changes = 0;
    if (c->broken || send_lost(c, op)) return CAIRN_EIO;
    int sent = PQsendQueryParams(c->db, sql, p ? p->n : 0, NULL, p ? p->values : NULL, p ? p->lengths : NULL,
                                 p ? p->formats : NULL, 1);
    bool late;
    PGresult *r = await_answer(c, sent, answer_deadline(c), &late);
    if (late) return answer_late(c, op);
    if (answer_lost(c, &r, op)) return CAIRN_EIO;
    return result_done(c, r, out, changes, op);
}

/* pg_exec_sql with the result (*out as in pg_run). */
static int exec_sql(pg_conn *c, const char *sql, PGresult **out, const char *op) {
    if (out) *out = NULL;
    if (c->broken || send_lost(c, op)) return CAIRN_EIO;
    bool late;
    PGresult *r = pg_exec_until(c, sql, answer_deadline(c), &late);
    if (late) return answer_late(c, op);
    if (answer_lost(c, &r, op)) return CAIRN_EIO;
    return result_done(c, r, out, NULL, op);
}

int pg_exec_sql(pg_conn *c, const char *sql, const char *op) { return exec_sql(c, sql, NULL, op); }

int pg_read_at(pg_store *ms, pg_stmt_id id, const pg_params *p, PGresult **out, int64_t *changes, const char *op,
               const char *func, int line) {
    if (out) *out = NULL;
    pg_conn *c;
    int err = pg_acquire_at(ms, &c, func, line);
    if (err != 0) return err;
    err = pg_run(c, id, p, out, changes, op);
    pg_release(ms, c);
    return err;
}

int pg_read_unbounded_at(pg_store *ms, pg_stmt_id id, const pg_params *p, PGresult **out, const char *op,
                         const char *func, int line) {
    if (out) *out = NULL;
    pg_conn *c;
    int err = pg_tx_begin_at(ms, &c, func, line);
    if (err != 0) return err;
    err = pg_no_timeout(c);
    if (err == 0) err = pg_run(c, id, p, out, NULL, op);
    err = pg_tx_end(ms, c, err);
    if (err != 0 && out) {
        PQclear(*out);
        *out = NULL;
    }
    return err;
}

/* ---- transactions ---------------------------------------------------------------- */

int pg_no_timeout(pg_conn *c) {
    int err = pg_exec_sql(c, "SET LOCAL statement_timeout = 0", "no statement timeout");
    /* No deadline of ours either, until the connection goes back. */
    if (err == 0) c->unbounded = true;
    return err;
}

int pg_tx_begin_at(pg_store *ms, pg_conn **out, const char *func, int line) {
    *out = NULL;
    pg_conn *c;
    int err = pg_acquire_at(ms, &c, func, line);
    if (err != 0) return err;
    /* The transaction's id comes with the BEGIN, in the same round trip:
     * what tells a lost COMMIT's outcome (commit_outcome). */
    PGresult *r;
    err = exec_sql(c, "BEGIN; SELECT txid_current()::text", &r, "begin");
    c->xid[0] = '\0';
    if (err == 0 && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        snprintf(c->xid, sizeof c->xid, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (err != 0) {
        pg_release(ms, c);
        return err;
    }
    *out = c;
    return 0;
}

/* How long a lost COMMIT's outcome is asked after (commit_outcome): a
 * request waits this much longer at most before its 503. */
#define OUTCOME_WAIT_MS 3000

/* One question of commit_outcome on c, answered by the deadline: the first
 * column of its one row (text), or "" when none came. */
static void ask(pg_conn *c, const char *sql, int64_t deadline_ns, char *out, size_t cap) {
    bool late;
    PGresult *r = pg_exec_until(c, sql, deadline_ns, &late);
    if (late) c->broken = true;
    else if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* The outcome of a COMMIT whose answer was lost with its connection (a
 * network drop, a server that stopped answering in time): PostgreSQL knows
 * it, by the transaction id its BEGIN returned (docs/metadata.md, "A lost
 * COMMIT").  A backend still holding that
 * transaction open (the COMMIT never reached it, and it has not noticed its
 * client is gone) is ended first, so that the answer becomes final:
 * committed (0) or aborted (err).  When it cannot be learnt within
 * OUTCOME_WAIT_MS (PostgreSQL unreachable or frozen), err stands and the
 * caller treats the outcome as unknown: a write keeps its new bytes
 * (s3_commit_failed_drop_ok), which orphan collection takes if the commit
 * did not happen. */
static int commit_outcome(pg_store *ms, const char *xid, int err) {
    if (!xid[0] || strspn(xid, "0123456789") != strlen(xid) || strlen(xid) > 20) return err;
    int64_t deadline = time_mono_ns() + (int64_t)OUTCOME_WAIT_MS * 1000000;
    char end_sql[200], status_sql[120];
    /* backend_xid is the 32-bit xid of the 64-bit transaction id. */
    snprintf(end_sql, sizeof end_sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_xid::text = '%llu'",
             (unsigned long long)(strtoull(xid, NULL, 10) & 0xffffffffULL));
    snprintf(status_sql, sizeof status_sql, "SELECT coalesce(txid_status(%s), 'unknown')", xid);
    for (;;) {
        char status[32] = "", ended[24] = "";
        pg_conn *c;
        if (pg_acquire(ms, &c) == 0) {
            ask(c, end_sql, deadline, ended, sizeof ended);
            if (!c->broken) ask(c, status_sql, deadline, status, sizeof status);
            pg_release(ms, c);
        }
        bool final = !strcmp(status, "committed") || !strcmp(status, "aborted") || !strcmp(status, "unknown");
        if (final || time_mono_ns() >= deadline) {
            log_write(!strcmp(status, "committed") ? LOG_WARN : LOG_ERROR, NULL,
                      "meta: the outcome of a commit whose answer was lost", "xid", xid, "outcome",
                      final ? status : "not learnt", NULL);
            return !strcmp(status, "committed") ? 0 : err;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

int pg_tx_end(pg_store *ms, pg_conn *c, int err) {
    /* A failed statement aborts the transaction, and every call returns its
     * error: committing one would silently roll back. */
    assert(err != 0 || PQtransactionStatus(c->db) == PQTRANS_INTRANS);
    char xid[sizeof c->xid];
    memcpy(xid, c->xid, sizeof xid);
    c->xid[0] = '\0';
    bool committing = false;
    if (err == 0) {
        committing = true;
        err = pg_exec_sql(c, "COMMIT", "commit");
    }
    /* A failed COMMIT ends the transaction itself; anything else still in
     * one is rolled back here (a lost connection is dropped on release). */
    PGTransactionStatusType ts = PQtransactionStatus(c->db);
    if (!c->broken && (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)) {
        bool late;
        PQclear(pg_exec_until(c, "ROLLBACK", answer_deadline(c), &late));
        if (late) answer_late(c, "rollback");
    }
    bool lost = committing && err != 0 && c->broken && xid[0];
    pg_release(ms, c);
    return lost ? commit_outcome(ms, xid, err) : err;
}

int pg_savepoint(pg_conn *c) { return pg_exec_sql(c, "SAVEPOINT item", "savepoint"); }

int pg_savepoint_end(pg_conn *c, bool rollback) {
    int err = rollback ? pg_exec_sql(c, "ROLLBACK TO SAVEPOINT item", "rollback to savepoint") : 0;
    if (err == 0) err = pg_exec_sql(c, "RELEASE SAVEPOINT item", "release savepoint");
    return err;
}

/* ---- list calls: rows copied out in batches ---------------------------------------- */

/* The batching itself is meta_page_rows (meta.c), shared with SQLite. */

/* One batch of a paged list (meta_page_rows): the connection only for the
 * query; the rows are copied from its result after it is back. */
typedef struct {
    pg_store *ms;
    const pg_pager *p;
    void *ctx;
} pg_fetch_ud;

static int pg_fetch(void *fud, const void *after, int fetch, char *rows, int *got) {
    pg_fetch_ud *f = fud;
    pg_conn *c;
    PGresult *r = NULL;
    *got = 0;
    int err = pg_acquire(f->ms, &c);
    if (err != 0) return err;
    err = f->p->query(c, f->ctx, after, fetch, &r);
    pg_release(f->ms, c);
    int nr = err == 0 ? PQntuples(r) : 0;
    for (int i = 0; err == 0 && i < nr && *got < fetch; i++) {
        char *row = rows + f->p->row_size * (size_t)*got;
        if ((err = f->p->copy(r, i, row)) == 0) (*got)++;
        else if (f->p->clear) f->p->clear(row); /* what it copied before failing */
    }
    PQclear(r);
    return err;
}

int pg_page_rows(pg_store *ms, const pg_pager *p, void *ctx, int limit, bool *more, const char *op) {
    (void)op;
    pg_fetch_ud f = {ms, p, ctx};
    meta_pager mp = {p->row_size, pg_fetch, p->deliver, p->clear};
    return meta_page_rows(&mp, &f, ctx, limit, more);
}

int pg_rows(const PGresult *r, size_t row_size, int (*copy)(const PGresult *, int, void *), void (*clear)(void *),
            void **rows, int *n) {
    *rows = NULL;
    *n = 0;
    int nr = PQntuples(r);
    if (nr == 0) return 0;
    char *a = calloc((size_t)nr, row_size);
    if (!a) return CAIRN_ENOMEM;
    int err = 0, i;
    for (i = 0; i < nr; i++)
        if ((err = copy(r, i, a + row_size * (size_t)i)) != 0) break;
    if (err != 0) {
        /* A copy that fails leaves its row holding nothing: clear those before. */
        for (int j = 0; clear && j < i; j++) clear(a + row_size * (size_t)j);
        free(a);
        return err;
    }
    *rows = a;
    *n = nr;
    return 0;
}

/* ---- open / close ---------------------------------------------------------------- */

static void store_free(pg_store *ms) {
    pg_pool_stop(ms);
    pthread_cond_destroy(&ms->maint_cv);
    pthread_cond_destroy(&ms->cv);
    pthread_mutex_destroy(&ms->mu);
    free(ms->conninfo);
    free(ms);
}

int pg_open(const char *conninfo, const meta_pg_options *opt, bool migrate, meta_store **out, char *why,
            size_t whylen) {
    if (!out || !conninfo) return CAIRN_EINVAL;
    *out = NULL;
    meta_pg_options o;
    if (opt) o = *opt;
    else meta_pg_options_default(&o);
    int err = pg_options_check(&o, why, whylen);
    if (err != 0) return err;
    /* One schema, two dialects: the same versions under the same names. */
    assert(pg_schema_latest() == meta_schema_latest());
    pg_store *ms = calloc(1, sizeof *ms);
    if (!ms) return CAIRN_ENOMEM;
    ms->base.ops = &pg_ops;
    ms->opt = o;
    pthread_mutex_init(&ms->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ms->cv, &ca);
    pthread_cond_init(&ms->maint_cv, &ca);
    pthread_condattr_destroy(&ca);
    ms->conninfo = strdup(conninfo);
    err = ms->conninfo ? pg_pool_start(ms, why, whylen) : CAIRN_ENOMEM;
    if (err == 0 && migrate) {
        char detail[1024] = "";
        err = pg_migrate_up_to_latest(ms, detail, sizeof detail);
        if (err != 0 && why && whylen)
            snprintf(why, whylen, "postgres: %s", detail[0] ? detail : cairn_strerror(err));
    }
    if (err != 0) {
        store_free(ms);
        return err;
    }
    *out = &ms->base;
    return 0;
}

void pg_close(meta_store *base_) {
    if (base_) store_free(PG(base_));
}

int pg_ping(meta_store *base_) {
    pg_store *ms = PG(base_);
    PGresult *r;
    int err = pg_read(ms, PS_PING, NULL, &r, NULL, "ping");
    if (err != 0) return err;
    /* A server in recovery (a standby) answers reads and refuses every write. */
    bool writable = PQntuples(r) == 1 && pg_bool(r, 0, 0);
    PQclear(r);
    if (!writable) log_write(LOG_ERROR, NULL, "meta: postgres is read-only (in recovery)", NULL);
    return writable ? 0 : CAIRN_EDB;
}

/* ---- the table ------------------------------------------------------------- */

const meta_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .ping = pg_ping,
    .schema_version = pg_schema_version,
    .migrate = pg_migrate,
    .migration_rows = pg_migration_rows,
    .migrations = &pg_migration_set,
    .user_create = pg_user_create,
    .user_ensure_root = pg_user_ensure_root,
    .user_get = pg_user_get,
    .user_get_by_name = pg_user_get_by_name,
    .user_list = pg_user_list,
    .key_create = pg_key_create,
    .key_get = pg_key_get,
    .key_list = pg_key_list,
    .key_set_active = pg_key_set_active,
    .bucket_create = pg_bucket_create,
    .bucket_get = pg_bucket_get,
    .bucket_delete = pg_bucket_delete,
    .bucket_list = pg_bucket_list,
    .bucket_list_page = pg_bucket_list_page,
    .bucket_set_public = pg_bucket_set_public,
    .object_put = pg_object_put,
    .object_get = pg_object_get,
    .object_delete = pg_object_delete,
    .object_get_version = pg_object_get_version,
    .object_list_versions = pg_object_list_versions,
    .bucket_set_versioning = pg_bucket_set_versioning,
    .bucket_enable_object_lock = pg_bucket_enable_object_lock,
    .object_set_headers = pg_object_set_headers,
    .notify_target_add = pg_notify_target_add,
    .notify_target_get = pg_notify_target_get,
    .notify_target_list = pg_notify_target_list,
    .notify_target_remove = pg_notify_target_remove,
    .limit_set = pg_limit_set,
    .kms_key_create = pg_kms_key_create,
    .kms_key_get = pg_kms_key_get,
    .kms_key_list = pg_kms_key_list,
    .kms_key_set_enabled = pg_kms_key_set_enabled,
    .kms_version_add = pg_kms_version_add,
    .kms_version_get = pg_kms_version_get,
    .master_reseal = pg_master_reseal,
    .upload_set_headers_if = pg_upload_set_headers_if,
    .limit_list = pg_limit_list,
    .limit_remove = pg_limit_remove,
    .bucket_notification_get = pg_bucket_notification_get,
    .bucket_notification_put = pg_bucket_notification_put,
    .bucket_config_get = pg_bucket_config_get,
    .bucket_config_put = pg_bucket_config_put,
    .job_pending_count = pg_job_pending_count,
    .object_delete_many = pg_object_delete_many,
    .object_list = pg_object_list,
    .object_scan = pg_object_scan,
    .placement_scan = pg_placement_scan,
    .placement_set_layout = pg_placement_set_layout,
    .layout_refs = pg_layout_refs,
    .placement_get = pg_placement_get,
    .check = pg_check,
    .repair = pg_repair,
    .upload_create = pg_upload_create,
    .upload_get = pg_upload_get,
    .upload_list = pg_upload_list,
    .part_put = pg_part_put,
    .part_list = pg_part_list,
    .upload_complete = pg_upload_complete,
    .upload_abort = pg_upload_abort,
    .object_parts = pg_object_parts,
    .upload_completed_get = pg_upload_completed_get,
    .upload_completed_prune = pg_upload_completed_prune,
    .trash_list = pg_trash_list,
    .trash_remove = pg_trash_remove,
    .job_enqueue = pg_job_enqueue,
    .job_claim = pg_job_claim,
    .job_finish = pg_job_finish,
    .job_finish_claim = pg_job_finish_claim,
    .job_release = pg_job_release,
    .job_extend = pg_job_extend,
    .job_cancel = pg_job_cancel,
    .job_retry = pg_job_retry,
    .job_get = pg_job_get,
    .job_list = pg_job_list,
    .job_prune = pg_job_prune,
    .job_counts = pg_job_counts,
    .upload_list_older = pg_upload_list_older,
    .node_upsert = pg_node_upsert,
    .node_list = pg_node_list,
    .node_get = pg_node_get,
    .node_set_state = pg_node_set_state,
    .node_seen = pg_node_seen,
    .version_referenced = pg_version_referenced,
    .object_count = pg_object_count,
    .lease_acquire = pg_lease_acquire,
    .lease_release = pg_lease_release,
    .lease_get = pg_lease_get,
    .user_set_audit = pg_user_set_audit,
    .audit_insert = pg_audit_insert,
    .audit_query = pg_audit_query,
    .audit_delete_before = pg_audit_delete_before,
    .audit_outbox_read = pg_audit_outbox_read,
    .audit_outbox_delete = pg_audit_outbox_delete,
    .audit_outbox_count = pg_audit_outbox_count,
    .job_listener_open = pg_job_listener_open,
    .pool_stats = pg_pool_stats_get,
};
