/*
 * sqlite.c — the embedded metadata backend: meta.h on one SQLite file.
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

#define KEY_MAX 1024
#define READERS_DEFAULT 4
#define READERS_MAX 64
#define BUSY_DEFAULT_MS 5000

/* Object columns, in the order every object SELECT returns them. */
#define OBJ_COLS "bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout"
#define OBJ_COLS_O \
    "o.bucket, o.key, o.version_id, o.size, o.etag, o.mtime_ms, o.owner_id, o.storage, " \
    "o.headers_json, o.layout"
/* Requests name the bucket they resolved by id (?N > 0): a bucket deleted and
 * recreated under the same name by someone else then matches no row. */
#define BUCKET_IS(name_param, id_param) \
    "(" id_param " = 0 OR EXISTS (SELECT 1 FROM buckets WHERE name = " name_param " AND id = " id_param "))"
#define UPLOAD_COLS "upload_id, bucket, key, owner_id, initiated_ms, headers_json, bucket_id"
#define LIST_COLS "SELECT key, size, etag, mtime_ms, owner_id FROM objects WHERE " BUCKET_IS("?1", "?5") \
                  " AND bucket = ?1 AND "

typedef enum {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PING,
    ST_USER_INSERT,
    ST_USER_GET,
    ST_USER_GET_NAME,
    ST_USER_LIST,
    ST_USER_ROOT,
    ST_USER_RENAME,
    ST_KEY_INSERT,
    ST_KEY_GET,
    ST_KEY_LIST,
    ST_KEY_SET_ACTIVE,
    ST_BUCKET_INSERT,
    ST_BUCKET_GET,
    ST_BUCKET_EXISTS,
    ST_BUCKET_HAS_OBJECTS,
    ST_BUCKET_DELETE,
    ST_BUCKET_LIST,
    ST_BUCKET_SET_PUBLIC,
    ST_OBJ_GET,
    ST_VERSION_REFERENCED,
    ST_OBJ_SCAN,
    ST_JOB_INSERT,
    ST_JOB_BY_UNIQUE,
    ST_JOB_DROP_KEY,
    ST_JOB_PRUNE,
    ST_JOB_NEXT,
    ST_JOB_TAKE,
    ST_JOB_GET,
    ST_JOB_FINISH,
    ST_JOB_RELEASE,
    ST_JOB_EXTEND,
    ST_JOB_CANCEL,
    ST_JOB_RETRY,
    ST_JOB_LIST,
    ST_JOB_COUNTS,
    ST_UPLOAD_OLDER,
    ST_UPLOAD_INSERT,
    ST_UPLOAD_GET,
    ST_UPLOAD_LIST,
    ST_PART_UPSERT,
    ST_PART_GET,
    ST_PART_LIST,
    ST_UPLOAD_DELETE,
    ST_PARTS_DELETE,
    ST_OBJPART_INSERT,
    ST_OBJPART_LIST,
    ST_OBJPARTS_DELETE,
    ST_LAYOUT_REFS,
    ST_NODE_UPSERT,
    ST_NODE_LIST,
    ST_NODE_GET,
    ST_NODE_SET_STATE,
    ST_NODE_SEEN_OK,
    ST_NODE_SEEN_ERR,
    ST_OBJ_GET_DATA,
    ST_OBJ_UPSERT,
    ST_OBJ_DELETE,
    ST_DATA_INSERT,
    ST_DATA_DELETE,
    ST_OBJ_LIST_GT,
    ST_OBJ_LIST_GE,
    ST_OBJ_LIST_GT_UB,
    ST_OBJ_LIST_GE_UB,
    ST_OBJ_COUNT,
    ST_BUCKET_TRASH_PARTS,
    ST_BUCKET_DROP_PARTS,
    ST_BUCKET_DROP_UPLOADS,
    ST_BUCKET_DROP_COMPLETED,
    ST_COMPLETED_INSERT,
    ST_COMPLETED_GET,
    ST_COMPLETED_PRUNE,
    ST_TRASH_LIST,
    ST_TRASH_DELETE,
    ST_PLACE_OBJECTS,
    ST_PLACE_OBJECT_PARTS,
    ST_PLACE_UPLOAD_PARTS,
    ST_PLACE_SET_OBJECT,
    ST_PLACE_SET_OBJECT_PART,
    ST_PLACE_SET_UPLOAD_PART,
    ST_PLACE_GET,
    ST_OBJPARTS_TRASH,
    ST__COUNT
} stmt_id;

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PING] = "SELECT 1",
    [ST_USER_INSERT] = "INSERT INTO users(name, display_name, is_root, created_ms)"
                       " VALUES (?1, ?2, ?3, ?4)",
    [ST_USER_GET] = "SELECT id, name, display_name, is_root, created_ms FROM users WHERE id = ?1",
    [ST_USER_GET_NAME] = "SELECT id, name, display_name, is_root, created_ms FROM users"
                         " WHERE name = ?1",
    [ST_USER_LIST] = "SELECT id, name, display_name, is_root, created_ms FROM users ORDER BY id",
    [ST_USER_ROOT] = "SELECT id, name, display_name, is_root, created_ms FROM users"
                     " WHERE is_root = 1 ORDER BY id LIMIT 1",
    [ST_USER_RENAME] = "UPDATE users SET name = ?2 WHERE id = ?1",
    [ST_KEY_INSERT] = "INSERT INTO access_keys(access_key, user_id, sealed_secret, active,"
                      " created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_KEY_GET] = "SELECT access_key, user_id, sealed_secret, active, created_ms"
                   " FROM access_keys WHERE access_key = ?1",
    [ST_KEY_LIST] = "SELECT access_key, user_id, sealed_secret, active, created_ms"
                    " FROM access_keys WHERE ?1 < 0 OR user_id = ?1 ORDER BY access_key",
    [ST_KEY_SET_ACTIVE] = "UPDATE access_keys SET active = ?2 WHERE access_key = ?1",
    [ST_BUCKET_INSERT] = "INSERT INTO buckets(name, owner_id, created_ms, public_read, region)"
                         " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_BUCKET_GET] = "SELECT id, name, owner_id, created_ms, public_read, region FROM buckets"
                      " WHERE name = ?1",
    [ST_BUCKET_EXISTS] = "SELECT owner_id, id FROM buckets WHERE name = ?1",
    [ST_BUCKET_HAS_OBJECTS] = "SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1",
    [ST_BUCKET_DELETE] = "DELETE FROM buckets WHERE name = ?1",
    [ST_BUCKET_LIST] = "SELECT id, name, owner_id, created_ms, public_read, region FROM buckets"
                       " WHERE ?1 < 0 OR owner_id = ?1 ORDER BY name",
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
    [ST_OBJ_GET] = "SELECT " OBJ_COLS " FROM objects WHERE bucket = ?1 AND key = ?2 AND " BUCKET_IS("?1", "?3"),
    [ST_VERSION_REFERENCED] = "SELECT EXISTS(SELECT 1 FROM objects WHERE version_id = ?1)"
                              " OR EXISTS(SELECT 1 FROM upload_parts WHERE version_id = ?1)"
                              " OR EXISTS(SELECT 1 FROM object_parts WHERE part_version_id = ?1)",
    [ST_JOB_INSERT] = "INSERT INTO jobs(kind, args, priority, run_at_ms, max_attempts, unique_key, created_ms)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_JOB_BY_UNIQUE] = "SELECT id, state IN ('completed', 'cancelled', 'discarded') FROM jobs WHERE unique_key = ?1",
    [ST_JOB_DROP_KEY] = "UPDATE jobs SET unique_key = NULL WHERE id = ?1",
    [ST_JOB_PRUNE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE"
                     " (state IN ('completed', 'cancelled') AND finished_ms < ?1)"
                     " OR (state = 'discarded' AND finished_ms < ?2) LIMIT ?3)",
    [ST_JOB_NEXT] = "SELECT id FROM jobs WHERE ((state IN ('available', 'retryable') AND run_at_ms <= ?1)"
                    " OR (state = 'running' AND lease_expires_ms < ?1))"
                    " ORDER BY priority DESC, run_at_ms, id LIMIT 1",
    [ST_JOB_TAKE] = "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2,"
                    " lease_expires_ms = ?3 WHERE id = ?1",
    [ST_JOB_GET] = "SELECT id, kind, args, priority, run_at_ms, attempts, max_attempts, state, lease_owner,"
                   " lease_expires_ms, coalesce(unique_key, ''), last_error, created_ms, finished_ms FROM jobs WHERE id = ?1",
    [ST_JOB_FINISH] = "UPDATE jobs SET state = ?3, run_at_ms = ?4, last_error = ?5, lease_owner = '',"
                      " lease_expires_ms = 0, finished_ms = CASE WHEN ?3 = 'retryable' THEN 0 ELSE ?6 END"
                      " WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    [ST_JOB_RELEASE] = "UPDATE jobs SET state = 'available', attempts = max(attempts - 1, 0), lease_owner = '',"
                       " lease_expires_ms = 0 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
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
    [ST_PART_UPSERT] = "INSERT INTO upload_parts(upload_id, part_number, version_id, size, etag, layout, mtime_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(upload_id, part_number) DO UPDATE SET"
                       " version_id = excluded.version_id, size = excluded.size, etag = excluded.etag,"
                       " layout = excluded.layout, mtime_ms = excluded.mtime_ms",
    [ST_PART_GET] = "SELECT part_number, version_id, size, etag, layout, mtime_ms FROM upload_parts"
                    " WHERE upload_id = ?1 AND part_number = ?2",
    [ST_PART_LIST] = "SELECT part_number, version_id, size, etag, layout, mtime_ms FROM upload_parts"
                     " WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
    [ST_UPLOAD_DELETE] = "DELETE FROM uploads WHERE upload_id = ?1",
    [ST_PARTS_DELETE] = "DELETE FROM upload_parts WHERE upload_id = ?1",
    [ST_OBJPART_INSERT] = "INSERT OR REPLACE INTO object_parts(version_id, part_number, offset, size, etag,"
                          " part_version_id, layout) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_OBJPART_LIST] = "SELECT part_number, part_version_id, size, etag, layout, 0, offset FROM object_parts"
                        " WHERE version_id = ?1 ORDER BY part_number",
    [ST_OBJPARTS_DELETE] = "DELETE FROM object_parts WHERE version_id = ?1",
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
                    " WHERE (bucket, key) > (?1, ?2) ORDER BY bucket, key LIMIT ?3",
    [ST_OBJ_GET_DATA] = "SELECT " OBJ_COLS_O ", d.data FROM objects o"
                        " LEFT JOIN object_data d ON d.version_id = o.version_id"
                        " WHERE o.bucket = ?1 AND o.key = ?2 AND " BUCKET_IS("?1", "?3"),
    [ST_OBJ_UPSERT] =
        "INSERT INTO objects(" OBJ_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        " ON CONFLICT(bucket, key) DO UPDATE SET version_id = excluded.version_id,"
        " size = excluded.size, etag = excluded.etag, mtime_ms = excluded.mtime_ms,"
        " owner_id = excluded.owner_id, storage = excluded.storage,"
        " headers_json = excluded.headers_json, layout = excluded.layout",
    [ST_OBJ_DELETE] = "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
    [ST_DATA_INSERT] = "INSERT INTO object_data(version_id, data) VALUES (?1, ?2)",
    [ST_DATA_DELETE] = "DELETE FROM object_data WHERE version_id = ?1",
    [ST_OBJ_LIST_GT] = LIST_COLS "key > ?2 ORDER BY key LIMIT ?4",
    [ST_OBJ_LIST_GE] = LIST_COLS "key >= ?2 ORDER BY key LIMIT ?4",
    [ST_OBJ_LIST_GT_UB] = LIST_COLS "key > ?2 AND key < ?3 ORDER BY key LIMIT ?4",
    [ST_OBJ_LIST_GE_UB] = LIST_COLS "key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4",
    [ST_OBJ_COUNT] = "SELECT count(*) FROM objects WHERE bucket = ?1",
};

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
} conn;

/* One object put waiting for the group commit (see meta_object_put). */
typedef struct put_req {
    const meta_object *obj;
    meta_object old;
    bool had_old;
    int err;
    bool done;
    struct put_req *next;
} put_req;

struct meta_store {
    pthread_mutex_t gmu;   /* guards the group-commit queue below */
    pthread_cond_t gcv;    /* signalled when a batch has committed */
    put_req *qhead, *qtail;
    bool leader;           /* a thread is committing a batch */
    pthread_mutex_t wmu;   /* serializes every use of writer */
    conn writer;
    pthread_mutex_t rmu;   /* guards idle/nidle */
    pthread_cond_t rcv;    /* signalled when a reader is returned */
    conn *readers;
    conn **idle;
    int nreaders;
    int nidle;
};

/* ---- errors ----------------------------------------------------------------- */

static int map_rc(int rc) {
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
static int db_fail(const conn *c, int rc, const char *op) {
    int err = map_rc(rc);
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
static sqlite3_stmt *stmt(conn *c, stmt_id id) {
    if (c->st[id]) return c->st[id];
    int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
                                NULL);
    if (rc != SQLITE_OK) {
        db_fail(c, rc, stmt_sql[id]);
        c->st[id] = NULL;
    }
    return c->st[id];
}

/* Ends one use: ends the statement's read snapshot and drops bound pointers
 * (bindings use SQLITE_STATIC, so they must not outlive the caller's data). */
static void stmt_done(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no rows, then resets it. */
static int stmt_exec(conn *c, sqlite3_stmt *st, const char *op) {
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_DONE ? 0 : db_fail(c, rc, op);
    stmt_done(st);
    return err;
}

/* What a statement's binds left, their results ORed into bind_rc (SQLITE_OK
 * is 0): 0, or the error logged under op.  A bind fails only on a value over
 * SQLite's length limit or out of memory; the fault build makes the nth one
 * fail as too big (site meta.bind), so the callers' error paths are tested. */
static int bind_result(conn *c, int bind_rc, const char *op) {
    if (bind_rc == SQLITE_OK && fault_inject(FAULT_META_BIND)) bind_rc = SQLITE_TOOBIG;
    return bind_rc == SQLITE_OK ? 0 : db_fail(c, bind_rc, op);
}

/* stmt_exec after the binds (bind_rc as in bind_result); a failed bind resets st. */
static int stmt_exec_bound(conn *c, sqlite3_stmt *st, int bind_rc, const char *op) {
    int err = bind_result(c, bind_rc, op);
    if (err == 0) return stmt_exec(c, st, op);
    stmt_done(st);
    return err;
}

static int bind_str(sqlite3_stmt *st, int i, const char *s) {
    return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* Binds at most max - 1 bytes of s, cut at a UTF-8 character boundary: for
 * free-text columns read back into fixed buffers of max bytes (errors). */
static int bind_str_max(sqlite3_stmt *st, int i, const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n > max - 1) {
        n = max - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    return sqlite3_bind_text(st, i, n ? s : "", (int)n, SQLITE_TRANSIENT);
}

static int bind_bytes_text(sqlite3_stmt *st, int i, const char *s, size_t n) {
    return sqlite3_bind_text(st, i, n ? s : "", (int)n, SQLITE_STATIC);
}

/* Copies a TEXT column into a fixed buffer; CAIRN_EDB if it would not fit
 * (inputs are length-checked on the way in, so that means a foreign row). */
static int col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap) {
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
    return rc == SQLITE_OK ? 0 : db_fail(c, rc, sql);
}

/* Switches to WAL and checks it took: WAL is what lets readers run beside
 * the writer, so a filesystem that refuses it is an error, not a fallback. */
static int conn_enable_wal(conn *c) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK) return db_fail(c, rc, "journal_mode");
    rc = sqlite3_step(st);
    /* meta.wal (the fault build): the answer a filesystem without shared
     * memory would give, the mode left as it was. */
    bool wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0 &&
               !fault_inject(FAULT_META_WAL);
    int err = rc == SQLITE_ROW ? 0 : db_fail(c, rc, "journal_mode");
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
        if (c->db) db_fail(c, rc, "open");
        conn_close(c);
        int err = rc == SQLITE_CANTOPEN ? CAIRN_EIO : map_rc(rc);
        return err ? err : CAIRN_EDB;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, opt->busy_timeout_ms);
    int err = conn_pragma(c, "PRAGMA foreign_keys=ON");
    if (err == 0 && writer) err = conn_enable_wal(c);
    if (err == 0 && writer)
        err = conn_pragma(c, opt->fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    /* Readers are read-only by construction; query_only makes a stray write
     * on one an error instead of a second writer racing ours. */
    if (err == 0 && !writer) err = conn_pragma(c, "PRAGMA query_only=ON");
    /* The writer's ROLLBACK is prepared now, not when a transaction fails:
     * out of memory then, it could not be prepared, the transaction would
     * stay open, and every later write would join it and never commit. */
    if (err == 0 && writer && !stmt(c, ST_ROLLBACK)) err = CAIRN_ENOMEM;
    if (err != 0) conn_close(c);
    return err;
}

sqlite3 *meta_sqlite_writer_lock(meta_store *ms) {
    pthread_mutex_lock(&ms->wmu);
    return ms->writer.db;
}

void meta_sqlite_writer_unlock(meta_store *ms) { pthread_mutex_unlock(&ms->wmu); }

static conn *reader_get(meta_store *ms) {
    pthread_mutex_lock(&ms->rmu);
    while (ms->nidle == 0) pthread_cond_wait(&ms->rcv, &ms->rmu);
    conn *c = ms->idle[--ms->nidle];
    pthread_mutex_unlock(&ms->rmu);
    return c;
}

static void reader_put(meta_store *ms, conn *c) {
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

static void store_free(meta_store *ms) {
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

int meta_open_raw(const char *path, const meta_options *opt, meta_store **out) {
    if (!path || !out || !*path || strcmp(path, ":memory:") == 0) return CAIRN_EINVAL;
    *out = NULL;
    meta_fault_vfs_install();
    meta_options o = effective_options(opt);
    meta_store *ms = calloc(1, sizeof *ms);
    if (!ms) return CAIRN_ENOMEM;
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
    if (err != 0) {
        store_free(ms);
        return err;
    }
    *out = ms;
    return 0;
}

int meta_open(const char *path, const meta_options *opt, meta_store **out) {
    int err = meta_open_raw(path, opt, out);
    if (err != 0) return err;
    err = meta_migrate_up_to_latest(*out);
    if (err != 0) {
        meta_close(*out);
        *out = NULL;
    }
    return err;
}

void meta_close(meta_store *ms) {
    if (ms) store_free(ms);
}

int meta_ping(meta_store *ms) {
    if (!ms) return CAIRN_EINVAL;
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_PING);
    int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
    int err = rc == SQLITE_ROW ? 0 : st ? db_fail(r, rc, "ping") : CAIRN_EDB;
    if (st) stmt_done(st);
    reader_put(ms, r);
    if (err != 0) return err;

    conn *w = &ms->writer;
    pthread_mutex_lock(&ms->wmu);
    sqlite3_stmt *b = stmt(w, ST_BEGIN_IMMEDIATE), *c = stmt(w, ST_COMMIT);
    err = b && c ? stmt_exec(w, b, "ping begin") : CAIRN_EDB;
    if (err == 0) err = stmt_exec(w, c, "ping commit");
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

/* ---- write transactions ---------------------------------------------------- */

/* Locks the writer and opens BEGIN IMMEDIATE; on failure the lock is released. */
static int wtx_begin(meta_store *ms, conn **out) {
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = stmt(w, ST_BEGIN_IMMEDIATE);
    int err = st ? stmt_exec(w, st, "begin") : CAIRN_EDB;
    if (err != 0) {
        pthread_mutex_unlock(&ms->wmu);
        return err;
    }
    *out = w;
    return 0;
}

/* Commits when err == 0, else rolls back; unlocks; returns the outcome. */
static int wtx_end(meta_store *ms, int err) {
    conn *w = &ms->writer;
    if (err == 0) {
        sqlite3_stmt *st = stmt(w, ST_COMMIT);
        err = st ? stmt_exec(w, st, "commit") : CAIRN_EDB;
    }
    /* A failed COMMIT can leave the transaction open; ROLLBACK is then
     * required, and harmless (an error we ignore) if it already ended.  It
     * was prepared when the writer opened, so it needs no memory now. */
    if (err != 0 && !sqlite3_get_autocommit(w->db)) {
        sqlite3_stmt *st = w->st[ST_ROLLBACK];
        assert(st);
        sqlite3_step(st);
        stmt_done(st);
    }
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

/* ---- small growable arrays for list calls ----------------------------------- */

/* List calls collect rows first and call back after the connection is
 * returned, so a callback may safely call into meta again. */
typedef struct {
    void *items;
    size_t n, cap, size;
} vec;

static void *vec_push(vec *v) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void *p = realloc(v->items, cap * v->size);
        if (!p) return NULL;
        v->items = p;
        v->cap = cap;
    }
    return (char *)v->items + v->size * v->n++;
}

/* ---- users ------------------------------------------------------------------ */

static bool name_ok(const char *s, size_t cap) {
    return s && s[0] && strnlen(s, cap) < cap;
}

static int row_user(sqlite3_stmt *st, meta_user *u) {
    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, 0);
    int err = col_copy(st, 1, u->name, sizeof u->name);
    if (err == 0) err = col_copy(st, 2, u->display_name, sizeof u->display_name);
    u->is_root = sqlite3_column_int(st, 3) != 0;
    u->created_ms = sqlite3_column_int64(st, 4);
    return err;
}

/* Runs a statement expected to yield at most one user row. */
static int query_user(conn *c, sqlite3_stmt *st, meta_user *out, const char *op) {
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? (out ? row_user(st, out) : 0)
              : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                  : db_fail(c, rc, op);
    stmt_done(st);
    return err;
}

static int user_insert(conn *w, meta_user *u) {
    sqlite3_stmt *st = stmt(w, ST_USER_INSERT);
    if (!st) return CAIRN_EDB;
    if (u->created_ms == 0) u->created_ms = time_now_ms();
    int b = bind_str(st, 1, u->name);
    b |= bind_str(st, 2, u->display_name);
    b |= sqlite3_bind_int(st, 3, u->is_root);
    b |= sqlite3_bind_int64(st, 4, u->created_ms);
    int err = stmt_exec_bound(w, st, b, "user insert");
    if (err == 0) u->id = sqlite3_last_insert_rowid(w->db);
    return err;
}

int meta_user_create(meta_store *ms, meta_user *u) {
    if (!ms || !u || !name_ok(u->name, sizeof u->name) ||
        strnlen(u->display_name, sizeof u->display_name) >= sizeof u->display_name)
        return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    return wtx_end(ms, user_insert(w, u));
}

static int user_ensure_root_tx(conn *w, const char *name, meta_user *out) {
    sqlite3_stmt *st = stmt(w, ST_USER_ROOT);
    if (!st) return CAIRN_EDB;
    meta_user u;
    int err = query_user(w, st, &u, "user root");
    if (err == CAIRN_ENOTFOUND) {
        memset(&u, 0, sizeof u);
        strcpy(u.name, name);
        strcpy(u.display_name, name);
        u.is_root = true;
        err = user_insert(w, &u);
    } else if (err == 0 && strcmp(u.name, name) != 0) {
        st = stmt(w, ST_USER_RENAME);
        if (!st) return CAIRN_EDB;
        int b = sqlite3_bind_int64(st, 1, u.id) | bind_str(st, 2, name);
        err = stmt_exec_bound(w, st, b, "user rename");
        if (err == 0) strcpy(u.name, name);
    }
    if (err == 0 && out) *out = u;
    return err;
}

int meta_user_ensure_root(meta_store *ms, const char *name, meta_user *out) {
    if (!ms || !name_ok(name, sizeof out->name)) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    return wtx_end(ms, user_ensure_root_tx(w, name, out));
}

int meta_user_get(meta_store *ms, int64_t id, meta_user *out) {
    if (!ms || !out) return CAIRN_EINVAL;
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_USER_GET);
    int err = CAIRN_EDB;
    if (st) {
        int b = sqlite3_bind_int64(st, 1, id);
        if ((err = bind_result(r, b, "user get bind")) == 0) err = query_user(r, st, out, "user get");
        else stmt_done(st);
    }
    reader_put(ms, r);
    return err;
}

int meta_user_get_by_name(meta_store *ms, const char *name, meta_user *out) {
    if (!ms || !name || !out) return CAIRN_EINVAL;
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_USER_GET_NAME);
    int err = CAIRN_EDB;
    if (st) {
        int b = bind_str(st, 1, name);
        if ((err = bind_result(r, b, "user get bind")) == 0) err = query_user(r, st, out, "user get by name");
        else stmt_done(st);
    }
    reader_put(ms, r);
    return err;
}

int meta_user_list(meta_store *ms, int (*cb)(void *ud, const meta_user *u), void *ud) {
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_user)};
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_USER_LIST);
    int err = st ? 0 : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_user *u = vec_push(&v);
        err = u ? row_user(st, u) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = db_fail(r, rc, "user list");
    if (st) stmt_done(st);
    reader_put(ms, r);
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_user *)v.items + i)) break;
    free(v.items);
    return err;
}

/* ---- access keys ------------------------------------------------------------ */

static int row_key(sqlite3_stmt *st, meta_key *k) {
    memset(k, 0, sizeof *k);
    int err = col_copy(st, 0, k->access_key, sizeof k->access_key);
    k->user_id = sqlite3_column_int64(st, 1);
    if (err == 0) err = col_copy(st, 2, k->sealed_secret, sizeof k->sealed_secret);
    k->active = sqlite3_column_int(st, 3) != 0;
    k->created_ms = sqlite3_column_int64(st, 4);
    return err;
}

int meta_key_create(meta_store *ms, const meta_key *k) {
    if (!ms || !k || !name_ok(k->access_key, sizeof k->access_key) ||
        !name_ok(k->sealed_secret, sizeof k->sealed_secret))
        return CAIRN_EINVAL;
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = stmt(w, ST_KEY_INSERT);
    int err = CAIRN_EDB;
    if (st) {
        int b = bind_str(st, 1, k->access_key);
        b |= sqlite3_bind_int64(st, 2, k->user_id);
        b |= bind_str(st, 3, k->sealed_secret);
        b |= sqlite3_bind_int(st, 4, k->active);
        b |= sqlite3_bind_int64(st, 5, k->created_ms ? k->created_ms : time_now_ms());
        /* A missing user surfaces as a foreign-key violation: ENOTFOUND. */
        err = stmt_exec_bound(w, st, b, "key insert");
    }
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

int meta_key_get(meta_store *ms, const char *access_key, meta_key *out) {
    if (!ms || !access_key || !out) return CAIRN_EINVAL;
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_KEY_GET);
    int err = CAIRN_EDB;
    if (st) {
        int rc = bind_str(st, 1, access_key);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        err = rc == SQLITE_ROW ? row_key(st, out)
              : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                  : db_fail(r, rc, "key get");
        stmt_done(st);
    }
    reader_put(ms, r);
    return err;
}

int meta_key_list(meta_store *ms, int64_t user_id, int (*cb)(void *ud, const meta_key *k),
                  void *ud) {
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_key)};
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_KEY_LIST);
    int err = st ? map_rc(sqlite3_bind_int64(st, 1, user_id)) : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_key *k = vec_push(&v);
        err = k ? row_key(st, k) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = db_fail(r, rc, "key list");
    if (st) stmt_done(st);
    reader_put(ms, r);
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_key *)v.items + i)) break;
    free(v.items);
    return err;
}

/* Runs an UPDATE on the writer; ENOTFOUND when it touched no row. */
static int update_one(meta_store *ms, stmt_id id, const char *name, int value, const char *op) {
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = stmt(w, id);
    int err = CAIRN_EDB;
    if (st) {
        int b = bind_str(st, 1, name) | sqlite3_bind_int(st, 2, value);
        err = stmt_exec_bound(w, st, b, op);
        if (err == 0 && sqlite3_changes(w->db) == 0) err = CAIRN_ENOTFOUND;
    }
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

int meta_key_set_active(meta_store *ms, const char *access_key, bool active) {
    if (!ms || !access_key) return CAIRN_EINVAL;
    return update_one(ms, ST_KEY_SET_ACTIVE, access_key, active, "key set active");
}

/* ---- buckets ---------------------------------------------------------------- */

static int row_bucket(sqlite3_stmt *st, meta_bucket *b) {
    memset(b, 0, sizeof *b);
    b->id = sqlite3_column_int64(st, 0);
    int err = col_copy(st, 1, b->name, sizeof b->name);
    b->owner_id = sqlite3_column_int64(st, 2);
    b->created_ms = sqlite3_column_int64(st, 3);
    b->public_read = sqlite3_column_int(st, 4) != 0;
    if (err == 0) err = col_copy(st, 5, b->region, sizeof b->region);
    return err;
}

/* Looks a bucket up inside the current connection: 0, ENOTFOUND (also when
 * want_id > 0 and the bucket of that name has another id) or an error.
 * owner and id may be NULL. */
static int bucket_lookup(conn *c, const char *name, int64_t want_id, int64_t *owner, int64_t *id) {
    sqlite3_stmt *st = stmt(c, ST_BUCKET_EXISTS);
    if (!st) return CAIRN_EDB;
    int rc = bind_str(st, 1, name);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : db_fail(c, rc, "bucket");
    if (err == 0) {
        int64_t found = sqlite3_column_int64(st, 1);
        if (owner) *owner = sqlite3_column_int64(st, 0);
        if (id) *id = found;
        if (want_id > 0 && found != want_id) err = CAIRN_ENOTFOUND;
    }
    stmt_done(st);
    return err;
}

static int bucket_insert(conn *w, const meta_bucket *bk) {
    sqlite3_stmt *st = stmt(w, ST_BUCKET_INSERT);
    if (!st) return CAIRN_EDB;
    int b = bind_str(st, 1, bk->name);
    b |= sqlite3_bind_int64(st, 2, bk->owner_id);
    b |= sqlite3_bind_int64(st, 3, bk->created_ms ? bk->created_ms : time_now_ms());
    b |= sqlite3_bind_int(st, 4, bk->public_read);
    b |= bind_str(st, 5, bk->region);
    return stmt_exec_bound(w, st, b, "bucket insert");
}

int meta_bucket_create(meta_store *ms, meta_bucket *b, int64_t *existing_owner) {
    if (!ms || !b || !name_ok(b->name, sizeof b->name) ||
        strnlen(b->region, sizeof b->region) >= sizeof b->region)
        return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    int64_t owner = 0;
    err = bucket_lookup(w, b->name, 0, &owner, NULL);
    if (err == 0) {
        if (existing_owner) *existing_owner = owner;
        err = CAIRN_EEXIST;
    } else if (err == CAIRN_ENOTFOUND) {
        err = bucket_insert(w, b);
        if (err == 0) b->id = sqlite3_last_insert_rowid(w->db);
    }
    return wtx_end(ms, err);
}

int meta_bucket_get(meta_store *ms, const char *name, meta_bucket *out) {
    if (!ms || !name || !out) return CAIRN_EINVAL;
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_BUCKET_GET);
    int err = CAIRN_EDB;
    if (st) {
        int rc = bind_str(st, 1, name);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        err = rc == SQLITE_ROW ? row_bucket(st, out)
              : rc == SQLITE_DONE ? CAIRN_ENOTFOUND
                                  : db_fail(r, rc, "bucket get");
        stmt_done(st);
    }
    reader_put(ms, r);
    return err;
}

/* Runs a statement bound to one integer (and optionally a second). */
static int exec_int2(conn *w, stmt_id id, int64_t a, int64_t b, const char *op) {
    sqlite3_stmt *st = stmt(w, id);
    if (!st) return CAIRN_EDB;
    int rc = sqlite3_bind_int64(st, 1, a);
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= 2) rc = sqlite3_bind_int64(st, 2, b);
    return stmt_exec_bound(w, st, rc, op);
}

/* Inside the write transaction: ENOTFOUND, ENOTEMPTY, or deletes the bucket
 * with its uploads (their shards into the trash). */
static int bucket_delete_tx(conn *w, const char *name, int64_t want_id) {
    int64_t id = 0;
    int err = bucket_lookup(w, name, want_id, NULL, &id);
    if (err != 0) return err;
    sqlite3_stmt *st = stmt(w, ST_BUCKET_HAS_OBJECTS);
    if (!st) return CAIRN_EDB;
    int rc = bind_str(st, 1, name);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? CAIRN_ENOTEMPTY : rc == SQLITE_DONE ? 0 : db_fail(w, rc, "bucket empty");
    stmt_done(st);
    if (err != 0) return err;
    /* As in S3, deleting a bucket aborts the uploads in progress in it. */
    err = exec_int2(w, ST_BUCKET_TRASH_PARTS, id, time_now_ms(), "bucket trash parts");
    if (err == 0) err = exec_int2(w, ST_BUCKET_DROP_PARTS, id, 0, "bucket drop parts");
    if (err == 0) err = exec_int2(w, ST_BUCKET_DROP_UPLOADS, id, 0, "bucket drop uploads");
    if (err == 0) err = exec_int2(w, ST_BUCKET_DROP_COMPLETED, id, 0, "bucket drop completed uploads");
    if (err != 0) return err;
    st = stmt(w, ST_BUCKET_DELETE);
    if (!st) return CAIRN_EDB;
    rc = bind_str(st, 1, name);
    return stmt_exec_bound(w, st, rc, "bucket delete");
}

int meta_bucket_delete(meta_store *ms, const char *name, int64_t id) {
    if (!ms || !name) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    return wtx_end(ms, bucket_delete_tx(w, name, id));
}

int meta_bucket_list(meta_store *ms, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b),
                     void *ud) {
    if (!ms || !cb) return CAIRN_EINVAL;
    vec v = {.size = sizeof(meta_bucket)};
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_BUCKET_LIST);
    int err = st ? map_rc(sqlite3_bind_int64(st, 1, owner_id)) : CAIRN_EDB, rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        meta_bucket *b = vec_push(&v);
        err = b ? row_bucket(st, b) : CAIRN_ENOMEM;
    }
    if (err == 0 && rc != SQLITE_DONE) err = db_fail(r, rc, "bucket list");
    if (st) stmt_done(st);
    reader_put(ms, r);
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, (meta_bucket *)v.items + i)) break;
    free(v.items);
    return err;
}

int meta_bucket_set_public(meta_store *ms, const char *name, bool public_read) {
    if (!ms || !name) return CAIRN_EINVAL;
    return update_one(ms, ST_BUCKET_SET_PUBLIC, name, public_read, "bucket set public");
}

/* ---- objects ---------------------------------------------------------------- */

void meta_object_clear(meta_object *o) {
    if (!o) return;
    free(o->headers_json);
    free(o->data);
    o->headers_json = NULL;
    o->data = NULL;
    o->data_len = 0;
}

static bool key_ok(const char *key, size_t key_len) {
    return key && key_len >= 1 && key_len <= KEY_MAX && !memchr(key, '\0', key_len);
}

static int obj_validate(const meta_object *o) {
    if (!name_ok(o->bucket, sizeof o->bucket) || !key_ok(o->key, o->key_len) ||
        !name_ok(o->version_id, sizeof o->version_id) ||
        strnlen(o->etag, sizeof o->etag) >= sizeof o->etag || o->size < 0)
        return CAIRN_EINVAL;
    if (o->storage != META_STORE_INLINE && o->storage != META_STORE_FILE) return CAIRN_EINVAL;
    /* Inline bytes are the object: a size that disagrees would be served as
     * a wrong Content-Length. */
    if (o->storage == META_STORE_INLINE &&
        ((uint64_t)o->size != o->data_len || (o->data_len && !o->data)))
        return CAIRN_EINVAL;
    return 0;
}

/* Fills o from an object row (OBJ_COLS, then optionally the data column).
 * On error o is cleared; on success the caller owns headers_json and data. */
static int row_object(sqlite3_stmt *st, meta_object *o, bool data_col) {
    memset(o, 0, sizeof *o);
    int err = col_copy(st, 0, o->bucket, sizeof o->bucket);
    if (err == 0) err = col_copy(st, 1, o->key, sizeof o->key);
    o->key_len = (size_t)sqlite3_column_bytes(st, 1);
    if (err == 0) err = col_copy(st, 2, o->version_id, sizeof o->version_id);
    o->size = sqlite3_column_int64(st, 3);
    if (err == 0) err = col_copy(st, 4, o->etag, sizeof o->etag);
    o->mtime_ms = sqlite3_column_int64(st, 5);
    o->owner_id = sqlite3_column_int64(st, 6);
    o->storage = sqlite3_column_int(st, 7) == META_STORE_FILE ? META_STORE_FILE : META_STORE_INLINE;
    if (err == 0) {
        const char *h = (const char *)sqlite3_column_text(st, 8);
        o->headers_json = strdup(h ? h : "{}");
        if (!o->headers_json) err = CAIRN_ENOMEM;
    }
    if (err == 0) err = col_copy(st, 9, o->layout, sizeof o->layout);
    if (err == 0 && data_col && o->storage == META_STORE_INLINE) {
        if (sqlite3_column_type(st, 10) == SQLITE_NULL) {
            log_write(LOG_ERROR, NULL, "meta: inline object has no data row", "version",
                      o->version_id, NULL);
            err = CAIRN_EDB;
        } else {
            const void *p = sqlite3_column_blob(st, 10);
            o->data_len = (size_t)sqlite3_column_bytes(st, 10);
            /* Never NULL for an inline object, even when empty. */
            o->data = malloc(o->data_len ? o->data_len : 1);
            if (!o->data) err = CAIRN_ENOMEM;
            else if (o->data_len) memcpy(o->data, p, o->data_len);
        }
    }
    if (err != 0) meta_object_clear(o);
    return err;
}

/* Reads (bucket, key) on connection c into out (may be NULL to only test);
 * bucket_id > 0: only if the bucket of that name is that one. */
static int object_read(conn *c, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                       bool with_data, meta_object *out) {
    sqlite3_stmt *st = stmt(c, with_data ? ST_OBJ_GET_DATA : ST_OBJ_GET);
    if (!st) return CAIRN_EDB;
    int rc = bind_str(st, 1, bucket) | bind_bytes_text(st, 2, key, key_len) | sqlite3_bind_int64(st, 3, bucket_id);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err;
    if (rc == SQLITE_ROW) {
        meta_object tmp;
        err = row_object(st, out ? out : &tmp, with_data);
        if (!out && err == 0) meta_object_clear(&tmp);
    } else {
        err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : db_fail(c, rc, "object get");
    }
    stmt_done(st);
    return err;
}

int meta_object_get(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                    bool with_data, meta_object *out) {
    if (!ms || !bucket || !out) return CAIRN_EINVAL;
    /* Zeroed on every outcome, so meta_object_clear(out) is always safe. */
    memset(out, 0, sizeof *out);
    if (!key_ok(key, key_len)) return key && key_len > KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    conn *r = reader_get(ms);
    int err = object_read(r, bucket, bucket_id, key, key_len, with_data, out);
    if (err == 0) out->bucket_id = bucket_id;
    reader_put(ms, r);
    return err;
}

/* Deletes the inline bytes of version_id (no-op if there are none). */
static int data_delete(conn *w, const char *version_id) {
    sqlite3_stmt *st = stmt(w, ST_DATA_DELETE);
    if (!st) return CAIRN_EDB;
    int rc = bind_str(st, 1, version_id);
    return stmt_exec_bound(w, st, rc, "data delete");
}

static int data_insert(conn *w, const meta_object *o) {
    sqlite3_stmt *st = stmt(w, ST_DATA_INSERT);
    if (!st) return CAIRN_EDB;
    /* A NULL pointer would bind SQL NULL; "" binds an empty blob. */
    const void *p = o->data_len ? (const void *)o->data : "";
    int b = bind_str(st, 1, o->version_id);
    b |= sqlite3_bind_blob64(st, 2, p, o->data_len, SQLITE_STATIC);
    return stmt_exec_bound(w, st, b, "data insert");
}

static int object_upsert(conn *w, const meta_object *o) {
    sqlite3_stmt *st = stmt(w, ST_OBJ_UPSERT);
    if (!st) return CAIRN_EDB;
    int b = bind_str(st, 1, o->bucket);
    b |= bind_bytes_text(st, 2, o->key, o->key_len);
    b |= bind_str(st, 3, o->version_id);
    b |= sqlite3_bind_int64(st, 4, o->size);
    b |= bind_str(st, 5, o->etag);
    b |= sqlite3_bind_int64(st, 6, o->mtime_ms);
    b |= sqlite3_bind_int64(st, 7, o->owner_id);
    b |= sqlite3_bind_int(st, 8, (int)o->storage);
    b |= bind_str(st, 9, o->headers_json ? o->headers_json : "{}");
    b |= bind_str(st, 10, o->layout);
    return stmt_exec_bound(w, st, b, "object upsert");
}

static int exec_id(conn *w, stmt_id id, const char *text, const char *op);

/* A multipart version that stops being current takes its parts to the trash
 * in the same transaction: no moment in which part rows outlive their object,
 * or bytes are gone under rows that still name them. */
static int trash_parts_of(conn *w, const meta_object *old) {
    if (strncmp(old->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX)) != 0) return 0;
    sqlite3_stmt *st = stmt(w, ST_OBJPARTS_TRASH);
    if (!st) return CAIRN_EDB;
    int b = bind_str(st, 1, old->version_id) | sqlite3_bind_int64(st, 2, time_now_ms());
    int err = stmt_exec_bound(w, st, b, "object parts trash");
    if (err == 0) err = exec_id(w, ST_OBJPARTS_DELETE, old->version_id, "object parts delete");
    return err;
}

static int object_put_tx(conn *w, const meta_object *obj, meta_object *old, bool *had_old) {
    int err = bucket_lookup(w, obj->bucket, obj->bucket_id, NULL, NULL);
    if (err != 0) return err;
    err = object_read(w, obj->bucket, 0, obj->key, obj->key_len, false, old);
    if (err == 0) *had_old = true;
    else if (err != CAIRN_ENOTFOUND) return err;
    err = object_upsert(w, obj);
    /* Drop the replaced version's bytes before inserting the new ones, which
     * also covers a (never expected) rewrite under the same version id. */
    if (err == 0 && *had_old && old->storage == META_STORE_INLINE)
        err = data_delete(w, old->version_id);
    if (err == 0 && *had_old) err = trash_parts_of(w, old);
    if (err == 0 && obj->storage == META_STORE_INLINE) err = data_insert(w, obj);
    return err;
}

/*
 * Group commit.  A durable commit costs one fsync of the WAL (~0.2-0.5 ms
 * here), which would cap puts at a few thousand a second if each paid its
 * own.  So puts queue up; whoever finds no leader becomes it, takes the whole
 * queue and commits it as one transaction, each put inside its own SAVEPOINT
 * so that one failing put (its bucket just vanished) does not undo the others.
 * Every put returns only after the commit that contains it, so durability and
 * read-after-write are unchanged; under load many puts share one fsync.
 */
#define GROUP_MAX 128

static void run_batch(meta_store *ms, put_req *batch) {
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) {
        for (put_req *r = batch; r; r = r->next) r->err = err;
        return;
    }
    bool any_ok = false, lost = false;
    for (put_req *r = batch; r; r = r->next) {
        if (sqlite3_exec(w->db, "SAVEPOINT put", NULL, NULL, NULL) != SQLITE_OK) {
            r->err = db_fail(w, sqlite3_errcode(w->db), "savepoint");
        } else {
            r->err = object_put_tx(w, r->obj, &r->old, &r->had_old);
            if (r->err != 0 && sqlite3_exec(w->db, "ROLLBACK TO put", NULL, NULL, NULL) != SQLITE_OK)
                lost = true; /* the failed put's half would be committed with the others */
            sqlite3_exec(w->db, "RELEASE put", NULL, NULL, NULL);
        }
        any_ok |= r->err == 0;
        if (lost || sqlite3_get_autocommit(w->db)) {
            /* An I/O error, a full disk or no memory inside a statement
             * makes SQLite roll back the whole transaction, not just the
             * savepoint: the puts before this one are undone, and the ones
             * after would each run (and commit) on their own, outside the
             * transaction, while this batch reports them failed.  All of
             * it fails. */
            int e = r->err ? r->err : CAIRN_EDB;
            for (put_req *q = batch; q; q = q->next)
                if (q->err == 0) q->err = e;
            any_ok = false;
            break;
        }
    }
    err = wtx_end(ms, any_ok ? 0 : CAIRN_EINVAL);
    if (any_ok && err != 0)
        for (put_req *r = batch; r; r = r->next)
            if (r->err == 0) r->err = err;
}

int meta_object_put(meta_store *ms, const meta_object *obj, meta_object *replaced,
                    bool *had_replaced) {
    if (had_replaced) *had_replaced = false;
    if (!ms || !obj) return CAIRN_EINVAL;
    int err = obj_validate(obj);
    if (err != 0) return err;
    put_req me;
    memset(&me, 0, sizeof me);
    me.obj = obj;
    pthread_mutex_lock(&ms->gmu);
    if (ms->qtail) ms->qtail->next = &me;
    else ms->qhead = &me;
    ms->qtail = &me;
    while (!me.done) {
        if (ms->leader) {
            pthread_cond_wait(&ms->gcv, &ms->gmu);
            continue;
        }
        /* Lead: detach up to GROUP_MAX queued puts (ours is among them). */
        ms->leader = true;
        put_req *batch = ms->qhead, *last = batch;
        for (int n = 1; n < GROUP_MAX && last->next; n++) last = last->next;
        ms->qhead = last->next;
        if (!ms->qhead) ms->qtail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&ms->gmu);
        run_batch(ms, batch);
        pthread_mutex_lock(&ms->gmu);
        for (put_req *r = batch, *nx; r; r = nx) {
            nx = r->next;
            r->done = true;
        }
        ms->leader = false;
        pthread_cond_broadcast(&ms->gcv);
    }
    pthread_mutex_unlock(&ms->gmu);
    err = me.err;
    if (err != 0 || !me.had_old) {
        meta_object_clear(&me.old);
        me.had_old = false;
    }
    if (replaced) *replaced = me.old;
    else meta_object_clear(&me.old);
    if (had_replaced) *had_replaced = me.had_old;
    return err;
}

static int object_delete_tx(conn *w, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                            meta_object *old) {
    int err = object_read(w, bucket, bucket_id, key, key_len, false, old);
    if (err != 0) return err;
    sqlite3_stmt *st = stmt(w, ST_OBJ_DELETE);
    if (!st) return CAIRN_EDB;
    int b = bind_str(st, 1, bucket) | bind_bytes_text(st, 2, key, key_len);
    err = stmt_exec_bound(w, st, b, "object delete");
    if (err == 0 && old->storage == META_STORE_INLINE) err = data_delete(w, old->version_id);
    if (err == 0) err = trash_parts_of(w, old);
    return err;
}

int meta_object_delete(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                       meta_object *deleted) {
    if (!ms || !bucket) return CAIRN_EINVAL;
    if (!key_ok(key, key_len)) return key && key_len > KEY_MAX ? CAIRN_ENOTFOUND : CAIRN_EINVAL;
    meta_object old;
    memset(&old, 0, sizeof old);
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    err = wtx_end(ms, object_delete_tx(w, bucket, bucket_id, key, key_len, &old));
    if (err != 0) meta_object_clear(&old);
    if (deleted) *deleted = old;
    else meta_object_clear(&old);
    return err;
}

int meta_object_delete_many(meta_store *ms, const char *bucket, int64_t bucket_id, meta_delete_item *items, int n) {
    if (!ms || !bucket || n < 0 || n > 1000 || (n && !items)) return CAIRN_EINVAL;
    for (int i = 0; i < n; i++) {
        memset(&items[i].deleted, 0, sizeof items[i].deleted);
        /* A key too long to exist is absent: nothing to delete. */
        items[i].rc = key_ok(items[i].key, items[i].key_len) || (items[i].key && items[i].key_len > KEY_MAX)
                          ? 0 : CAIRN_EINVAL;
    }
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) {
        /* Callers read each key's outcome: none of them was deleted. */
        for (int i = 0; i < n; i++)
            if (items[i].rc == 0) items[i].rc = err;
        return err;
    }
    bool lost = false;
    for (int i = 0; i < n; i++) {
        if (items[i].rc != 0 || items[i].key_len > KEY_MAX) continue;
        /* Each key in its own savepoint: one failing key keeps the others. */
        int rc;
        if (sqlite3_exec(w->db, "SAVEPOINT del", NULL, NULL, NULL) != SQLITE_OK) {
            rc = db_fail(w, sqlite3_errcode(w->db), "savepoint");
        } else {
            rc = object_delete_tx(w, bucket, bucket_id, items[i].key, items[i].key_len, &items[i].deleted);
            if (rc != 0 && rc != CAIRN_ENOTFOUND &&
                sqlite3_exec(w->db, "ROLLBACK TO del", NULL, NULL, NULL) != SQLITE_OK)
                lost = true; /* the failed key's half would be committed with the others */
            sqlite3_exec(w->db, "RELEASE del", NULL, NULL, NULL);
        }
        if (rc != 0) {
            meta_object_clear(&items[i].deleted);
            memset(&items[i].deleted, 0, sizeof items[i].deleted);
        }
        items[i].rc = rc == CAIRN_ENOTFOUND ? 0 : rc;
        if (lost || sqlite3_get_autocommit(w->db)) {
            /* SQLite rolled the whole transaction back (an I/O error, a
             * full disk or no memory inside a statement): the keys before
             * this one are undone, and the ones after must not run (and
             * commit) one by one outside it.  The batch fails as a whole
             * (as it does when this key's own changes cannot be undone). */
            err = rc != 0 && rc != CAIRN_ENOTFOUND ? rc : CAIRN_EDB;
            break;
        }
    }
    err = wtx_end(ms, err);
    if (err != 0) {
        /* Nothing was deleted after all. */
        for (int i = 0; i < n; i++) {
            meta_object_clear(&items[i].deleted);
            memset(&items[i].deleted, 0, sizeof items[i].deleted);
            if (items[i].rc == 0) items[i].rc = err;
        }
    }
    return err;
}

/* Byte-wise comparison with the shorter string first on a common prefix:
 * the same order SQLite's BINARY collation gives. */
static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* The smallest string greater than every string starting with prefix:
 * drop trailing 0xFF bytes, then increment the last byte.  Returns its
 * length, or 0 when none exists (the prefix is all 0xFF: no upper bound). */
static size_t prefix_successor(const char *prefix, size_t n, char *out) {
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xFF) n--;
    if (n == 0) return 0;
    memcpy(out, prefix, n);
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    return n;
}

/* Steps the bound listing statement, delivering up to limit rows. */
static int list_rows(conn *r, sqlite3_stmt *st, int limit,
                     int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more) {
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            *more = true;
            return 0;
        }
        n++;
        /* text before bytes, as SQLite asks (initializers are unsequenced). */
        meta_list_entry e;
        e.key = (const char *)sqlite3_column_text(st, 0);
        e.key_len = (size_t)sqlite3_column_bytes(st, 0);
        e.size = sqlite3_column_int64(st, 1);
        e.etag = (const char *)sqlite3_column_text(st, 2);
        e.mtime_ms = sqlite3_column_int64(st, 3);
        e.owner_id = sqlite3_column_int64(st, 4);
        if (!e.key || !e.etag) return db_fail(r, SQLITE_NOMEM, "object list");
        if (cb(ud, &e)) return 0;
    }
    return rc == SQLITE_DONE ? 0 : db_fail(r, rc, "object list");
}

int meta_object_list(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len,
                     const char *from, size_t from_len, bool inclusive, int limit,
                     int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more) {
    bool more_local = false;
    if (!more) more = &more_local;
    *more = false;
    if (!ms || !bucket || !cb || limit < 0 || (prefix_len && !prefix) || (from_len && !from))
        return CAIRN_EINVAL;
    /* No key is longer than KEY_MAX or contains NUL: such a prefix matches nothing. */
    if (prefix_len > KEY_MAX || (prefix_len && memchr(prefix, '\0', prefix_len))) return 0;
    if (!prefix) prefix = "";

    /* One lower bound: `from` when it sorts at or after the prefix, else the
     * prefix itself (inclusive).  Two separate lower bounds in SQL would let
     * the planner seek on the wrong one and scan from the prefix start. */
    const char *lo = prefix;
    size_t lo_len = prefix_len;
    bool lo_incl = true;
    if (from && bytes_cmp(from, from_len, prefix, prefix_len) >= 0) {
        lo = from;
        lo_len = from_len;
        lo_incl = inclusive;
    }
    char hi[KEY_MAX];
    size_t hi_len = prefix_len ? prefix_successor(prefix, prefix_len, hi) : 0;

    stmt_id id = hi_len ? (lo_incl ? ST_OBJ_LIST_GE_UB : ST_OBJ_LIST_GT_UB)
                        : (lo_incl ? ST_OBJ_LIST_GE : ST_OBJ_LIST_GT);
    /* One row past the limit tells whether more exist. */
    int64_t fetch = (int64_t)limit + 1;

    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, id);
    int err = CAIRN_EDB;
    if (st) {
        int b = bind_str(st, 1, bucket);
        b |= bind_bytes_text(st, 2, lo, lo_len);
        if (hi_len) b |= bind_bytes_text(st, 3, hi, hi_len);
        b |= sqlite3_bind_int64(st, 4, fetch);
        b |= sqlite3_bind_int64(st, 5, bucket_id);
        if ((err = bind_result(r, b, "object list bind")) == 0) err = list_rows(r, st, limit, cb, ud, more);
        stmt_done(st);
    }
    reader_put(ms, r);
    return err;
}

int meta_object_count(meta_store *ms, const char *bucket, int64_t *count) {
    if (!ms || !bucket || !count) return CAIRN_EINVAL;
    conn *r = reader_get(ms);
    sqlite3_stmt *st = stmt(r, ST_OBJ_COUNT);
    int err = CAIRN_EDB;
    if (st) {
        int rc = bind_str(st, 1, bucket);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *count = sqlite3_column_int64(st, 0);
            err = 0;
        } else {
            err = db_fail(r, rc, "object count");
        }
        stmt_done(st);
    }
    reader_put(ms, r);
    return err;
}

int meta_object_scan(meta_store *ms, const char *after_bucket, const char *after_key,
                     size_t after_key_len, int limit,
                     int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more) {
    if (more) *more = false;
    if (!ms || !cb || limit < 0 || !after_bucket || !after_key) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_OBJ_SCAN);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, after_bucket) | bind_bytes_text(st, 2, after_key, after_key_len) |
                     sqlite3_bind_int64(st, 3, (int64_t)limit + 1), "object scan bind");
    int n = 0;
    bool stopped = false;
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = db_fail(c, rc, "object scan");
            break;
        }
        if (n == limit) {
            if (more) *more = true;
            break;
        }
        n++;
        meta_scan_entry e = {
            (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (size_t)sqlite3_column_bytes(st, 1), (const char *)sqlite3_column_text(st, 2),
            sqlite3_column_int64(st, 3),
            sqlite3_column_int(st, 4) == META_STORE_FILE ? META_STORE_FILE : META_STORE_INLINE,
            (const char *)sqlite3_column_text(st, 5)};
        if (!e.bucket || !e.key || !e.version_id || !e.layout) continue;
        if (cb(ud, &e)) {
            stopped = true;
            break;
        }
    }
    (void)stopped;
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

/* ---- layouts and the node registry ---------------------------------------------------- */

/* Runs one single-statement write on the writer; *changes gets rows changed. */
static int write_one(meta_store *ms, stmt_id id, int (*bind)(sqlite3_stmt *, const void *), const void *args,
                     int *changes, const char *op) {
    pthread_mutex_lock(&ms->wmu);
    conn *w = &ms->writer;
    sqlite3_stmt *st = stmt(w, id);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = stmt_exec_bound(w, st, bind(st, args), op);
    if (changes) *changes = err == 0 ? sqlite3_changes(w->db) : 0;
    pthread_mutex_unlock(&ms->wmu);
    return err;
}

/* ---- placements ------------------------------------------------------------------------ */

static const stmt_id place_scan_stmt[] = {ST_PLACE_OBJECTS, ST_PLACE_OBJECT_PARTS, ST_PLACE_UPLOAD_PARTS};
static const stmt_id place_set_stmt[] = {ST_PLACE_SET_OBJECT, ST_PLACE_SET_OBJECT_PART, ST_PLACE_SET_UPLOAD_PART};

/* Columns: version id, size, layout, owner, key, part number. */
static int row_placement(sqlite3_stmt *st, meta_place_kind kind, meta_placement *p) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    int err = col_copy(st, 0, p->version_id, sizeof p->version_id);
    p->size = sqlite3_column_int64(st, 1);
    if (err == 0) err = col_copy(st, 2, p->layout, sizeof p->layout);
    if (err == 0) err = col_copy(st, 3, p->owner, sizeof p->owner);
    if (err == 0) err = col_copy(st, 4, p->key, sizeof p->key);
    p->key_len = (size_t)sqlite3_column_bytes(st, 4);
    p->part_number = sqlite3_column_int(st, 5);
    return err;
}

int meta_placement_scan(meta_store *ms, meta_place_cursor *cur, int limit,
                        int (*cb)(void *ud, const meta_placement *p), void *ud) {
    if (!ms || !cur || !cb || limit < 1) return CAIRN_EINVAL;
    int err = 0;
    while (!cur->done) {
        assert(cur->kind >= META_PLACE_OBJECT && cur->kind <= META_PLACE_UPLOAD_PART);
        vec v = {.size = sizeof(meta_placement)};
        conn *c = reader_get(ms);
        sqlite3_stmt *st = stmt(c, place_scan_stmt[cur->kind]);
        err = st ? 0 : CAIRN_EDB;
        if (err == 0) err = bind_result(c, bind_str(st, 1, cur->after) | sqlite3_bind_int(st, 2, limit), "placement scan bind");
        while (err == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) {
                err = db_fail(c, rc, "placement scan");
                break;
            }
            meta_placement *p = vec_push(&v);
            err = p ? row_placement(st, cur->kind, p) : CAIRN_ENOMEM;
        }
        if (st) stmt_done(st);
        reader_put(ms, c);
        meta_placement *rows = v.items;
        if (err == 0 && v.n) memcpy(cur->after, rows[v.n - 1].version_id, sizeof cur->after);
        if (err == 0 && v.n < (size_t)limit) {
            /* This kind is through: the next call starts the next one. */
            if (cur->kind == META_PLACE_UPLOAD_PART) cur->done = true;
            else cur->kind++;
            cur->after[0] = '\0';
        }
        bool stop = false;
        for (size_t i = 0; err == 0 && i < v.n && !stop; i++) stop = cb(ud, &rows[i]) != 0;
        free(rows);
        if (err != 0 || v.n > 0) break;
    }
    return err;
}

int meta_placement_get(meta_store *ms, const char *version_id, meta_placement *out) {
    if (!ms || !version_id || !out) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_PLACE_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, version_id), "placement get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int kind = sqlite3_column_int(st, 6);
            assert(kind >= META_PLACE_OBJECT && kind <= META_PLACE_UPLOAD_PART);
            err = row_placement(st, (meta_place_kind)kind, out);
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : db_fail(c, rc, "placement get");
        }
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

typedef struct { const char *version_id, *old_layout, *new_layout; } set_layout_args;

static int bind_set_layout(sqlite3_stmt *st, const void *p) {
    const set_layout_args *a = p;
    return bind_str(st, 1, a->version_id) | bind_str(st, 2, a->old_layout) | bind_str(st, 3, a->new_layout);
}

int meta_placement_set_layout(meta_store *ms, const char *version_id, const char *old_layout,
                              const char *new_layout) {
    if (!ms || !version_id || !old_layout || !new_layout) return CAIRN_EINVAL;
    set_layout_args a = {version_id, old_layout, new_layout};
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    /* A version id names one placement, whichever table holds it now (a part
     * moves from upload_parts to object_parts when its upload completes). */
    int changed = 0;
    for (size_t i = 0; err == 0 && i < sizeof place_set_stmt / sizeof place_set_stmt[0]; i++) {
        sqlite3_stmt *st = stmt(w, place_set_stmt[i]);
        if (!st) err = CAIRN_EDB;
        else if ((err = stmt_exec_bound(w, st, bind_set_layout(st, &a), "placement set layout")) == 0)
            changed += sqlite3_changes(w->db);
    }
    err = wtx_end(ms, err);
    if (err != 0 || changed > 0) return err;
    bool referenced = true;
    err = meta_version_referenced(ms, version_id, &referenced);
    return err ? err : referenced ? CAIRN_ECONFLICT : CAIRN_ENOTFOUND;
}

int meta_layout_refs(meta_store *ms, const char *id, int64_t *count) {
    if (!count) return CAIRN_EINVAL;
    *count = 0;
    if (!ms || !id || !*id) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_LAYOUT_REFS);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, id), "layout refs bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *count = sqlite3_column_int64(st, 0);
        else err = db_fail(c, rc, "layout refs");
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

typedef struct { const char *a, *b; int64_t n; } str2_args;

static int bind_node_upsert(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return bind_str(st, 1, a->a) | bind_str(st, 2, a->b) | sqlite3_bind_int64(st, 3, a->n);
}

int meta_node_upsert(meta_store *ms, const char *id, const char *url) {
    if (!ms || !id || !url || strlen(id) != 16 || strlen(url) >= 256) return CAIRN_EINVAL;
    str2_args a = {id, url, time_now_ms()};
    return write_one(ms, ST_NODE_UPSERT, bind_node_upsert, &a, NULL, "node upsert");
}

static int row_node(sqlite3_stmt *st, meta_node *n) {
    memset(n, 0, sizeof *n);
    int err = col_copy(st, 0, n->id, sizeof n->id);
    if (err == 0) err = col_copy(st, 1, n->url, sizeof n->url);
    if (err == 0) err = col_copy(st, 2, n->state, sizeof n->state);
    n->added_ms = sqlite3_column_int64(st, 3);
    n->last_seen_ms = sqlite3_column_int64(st, 4);
    if (err == 0) err = col_copy(st, 5, n->last_error, sizeof n->last_error);
    return err;
}

int meta_node_list(meta_store *ms, int (*cb)(void *ud, const meta_node *n), void *ud) {
    if (!ms || !cb) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_NODE_LIST);
    int err = st ? 0 : CAIRN_EDB;
    vec v = {.size = sizeof(meta_node)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "node list"); break; }
        meta_node *row = vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_node(st, row);
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    meta_node *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int meta_node_get(meta_store *ms, const char *id_or_url, meta_node *out) {
    if (!ms || !id_or_url || !out) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_NODE_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, id_or_url), "node get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) err = row_node(st, out);
        else if (rc == SQLITE_DONE) err = CAIRN_ENOTFOUND;
        else err = db_fail(c, rc, "node get");
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

static int bind_str2(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return bind_str(st, 1, a->a) | bind_str(st, 2, a->b);
}

static int bind_node_error(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return bind_str(st, 1, a->a) | bind_str_max(st, 2, a->b, sizeof((meta_node *)0)->last_error);
}

static int bind_str_int(sqlite3_stmt *st, const void *p) {
    const str2_args *a = p;
    return bind_str(st, 1, a->a) | sqlite3_bind_int64(st, 2, a->n);
}

int meta_node_set_state(meta_store *ms, const char *id, const char *state) {
    if (!ms || !id || !state ||
        (strcmp(state, "active") && strcmp(state, "draining") && strcmp(state, "removed")))
        return CAIRN_EINVAL;
    str2_args a = {id, state, 0};
    int changes = 0;
    int err = write_one(ms, ST_NODE_SET_STATE, bind_str2, &a, &changes, "node set state");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

int meta_node_seen(meta_store *ms, const char *id, bool ok, const char *error) {
    if (!ms || !id) return CAIRN_EINVAL;
    str2_args a = {id, error ? error : "", time_now_ms()};
    int changes = 0;
    int err = ok ? write_one(ms, ST_NODE_SEEN_OK, bind_str_int, &a, &changes, "node seen")
                 : write_one(ms, ST_NODE_SEEN_ERR, bind_node_error, &a, &changes, "node error");
    return err ? err : changes ? 0 : CAIRN_ENOTFOUND;
}

/* ---- multipart uploads -------------------------------------------------------------- */

void meta_upload_clear(meta_upload *u) {
    if (!u) return;
    free(u->headers_json);
    u->headers_json = NULL;
}

static int row_upload(sqlite3_stmt *st, meta_upload *u) {
    memset(u, 0, sizeof *u);
    int err = col_copy(st, 0, u->upload_id, sizeof u->upload_id);
    if (err == 0) err = col_copy(st, 1, u->bucket, sizeof u->bucket);
    if (err == 0) err = col_copy(st, 2, u->key, sizeof u->key);
    u->key_len = (size_t)sqlite3_column_bytes(st, 2);
    u->owner_id = sqlite3_column_int64(st, 3);
    u->initiated_ms = sqlite3_column_int64(st, 4);
    const char *h = (const char *)sqlite3_column_text(st, 5);
    u->bucket_id = sqlite3_column_int64(st, 6);
    if (err == 0 && !(u->headers_json = strdup(h ? h : "{}"))) err = CAIRN_ENOMEM;
    if (err != 0) meta_upload_clear(u);
    return err;
}

/* Columns: part_number, version_id, size, etag, layout, mtime_ms[, offset].
 * CAIRN_EDB for a row whose text does not fit (never written by us). */
static int row_part(sqlite3_stmt *st, meta_part *p, bool with_offset) {
    memset(p, 0, sizeof *p);
    p->part_number = sqlite3_column_int(st, 0);
    int err = col_copy(st, 1, p->version_id, sizeof p->version_id);
    p->size = sqlite3_column_int64(st, 2);
    if (err == 0) err = col_copy(st, 3, p->etag, sizeof p->etag);
    if (err == 0) err = col_copy(st, 4, p->layout, sizeof p->layout);
    p->mtime_ms = sqlite3_column_int64(st, 5);
    if (with_offset) p->offset = sqlite3_column_int64(st, 6);
    return err;
}

int meta_upload_create(meta_store *ms, const meta_upload *u) {
    if (!ms || !u || !key_ok(u->key, u->key_len) || !name_ok(u->upload_id, sizeof u->upload_id)) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    int64_t bucket_id = 0;
    err = bucket_lookup(w, u->bucket, u->bucket_id, NULL, &bucket_id);
    sqlite3_stmt *st = err == 0 ? stmt(w, ST_UPLOAD_INSERT) : NULL;
    if (err == 0 && !st) err = CAIRN_EDB;
    if (err == 0) {
        int b = bind_str(st, 1, u->upload_id) | bind_str(st, 2, u->bucket) |
                bind_bytes_text(st, 3, u->key, u->key_len) | sqlite3_bind_int64(st, 4, u->owner_id) |
                sqlite3_bind_int64(st, 5, u->initiated_ms) | bind_str(st, 6, u->headers_json ? u->headers_json : "{}") |
                sqlite3_bind_int64(st, 7, bucket_id);
        err = stmt_exec_bound(w, st, b, "upload insert");
    }
    return wtx_end(ms, err);
}

int meta_upload_get(meta_store *ms, const char *upload_id, meta_upload *out) {
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms || !upload_id) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_UPLOAD_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, upload_id), "upload get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) err = row_upload(st, out);
        else err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : db_fail(c, rc, "upload get");
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

int meta_upload_list(meta_store *ms, int64_t bucket_id, const char *prefix, size_t prefix_len,
                     const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit,
                     int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more) {
    if (more) *more = false;
    if (!ms || bucket_id <= 0 || !cb || limit < 0) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_UPLOAD_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, sqlite3_bind_int64(st, 1, bucket_id) | bind_bytes_text(st, 2, key_marker ? key_marker : "", key_marker ? key_marker_len : 0) |
                     bind_str(st, 3, upload_id_marker ? upload_id_marker : "") |
                     bind_bytes_text(st, 4, prefix ? prefix : "", prefix ? prefix_len : 0) |
                     sqlite3_bind_int64(st, 5, (int64_t)(prefix ? prefix_len : 0)) | sqlite3_bind_int64(st, 6, (int64_t)limit + 1), "upload list bind");
    int n = 0;
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "upload list"); break; }
        if (n == limit) { if (more) *more = true; break; }
        n++;
        meta_upload u;
        err = row_upload(st, &u);
        int stop = err == 0 ? cb(ud, &u) : 1;
        meta_upload_clear(&u);
        if (stop) break;
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

static int upload_exists(conn *w, const char *upload_id) {
    sqlite3_stmt *st = stmt(w, ST_UPLOAD_GET);
    if (!st) return CAIRN_EDB;
    int err = bind_result(w, bind_str(st, 1, upload_id), "upload exists bind");
    int rc = err ? SQLITE_OK : sqlite3_step(st);
    stmt_done(st);
    return err ? err : rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : CAIRN_EDB;
}

int meta_part_put(meta_store *ms, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced) {
    if (had_replaced) *had_replaced = false;
    /* The replaced part's bytes are the caller's to remove: it must hear of them. */
    if (!ms || !upload_id || !p || !replaced || !had_replaced) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    err = upload_exists(w, upload_id);
    if (err == 0) {
        /* The part this one replaces: its bytes go once this commits.  A
         * failed read here must fail the put, or they would stay forever. */
        sqlite3_stmt *st = stmt(w, ST_PART_GET);
        if (!st) err = CAIRN_EDB;
        else if ((err = bind_result(w, bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, p->part_number),
                                    "part get bind")) == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                err = row_part(st, replaced, false);
                *had_replaced = err == 0;
            } else if (rc != SQLITE_DONE) {
                err = db_fail(w, rc, "part get");
            }
        }
        if (st) stmt_done(st);
    }
    if (err == 0) {
        sqlite3_stmt *st = stmt(w, ST_PART_UPSERT);
        if (!st) err = CAIRN_EDB;
        else {
            int b = bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, p->part_number) | bind_str(st, 3, p->version_id) |
                    sqlite3_bind_int64(st, 4, p->size) | bind_str(st, 5, p->etag) | bind_str(st, 6, p->layout) |
                    sqlite3_bind_int64(st, 7, p->mtime_ms);
            err = stmt_exec_bound(w, st, b, "part upsert");
        }
    }
    err = wtx_end(ms, err);
    if (err != 0) *had_replaced = false;
    return err;
}

int meta_part_list(meta_store *ms, const char *upload_id, int after, int limit,
                   int (*cb)(void *ud, const meta_part *p), void *ud, bool *more) {
    if (more) *more = false;
    if (!ms || !upload_id || !cb || limit < 0) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_PART_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, after) | sqlite3_bind_int64(st, 3, (int64_t)limit + 1), "part list bind");
    int n = 0;
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "part list"); break; }
        if (n == limit) { if (more) *more = true; break; }
        n++;
        meta_part p;
        err = row_part(st, &p, false);
        if (err == 0 && cb(ud, &p)) break;
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

/* Reads every part row of an upload (inside the writer's transaction). */
static int all_parts(conn *w, const char *upload_id, meta_part **out, int *n) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(w, ST_PART_LIST);
    if (!st) return CAIRN_EDB;
    int err = bind_result(w, bind_str(st, 1, upload_id) | sqlite3_bind_int(st, 2, 0) | sqlite3_bind_int(st, 3, 100000),
                          "all parts bind");
    if (err) {
        stmt_done(st);
        return err;
    }
    vec v = {.size = sizeof(meta_part)};
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = CAIRN_EDB; break; }
        meta_part *row = vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        if ((err = row_part(st, row, false)) != 0) break;
    }
    stmt_done(st);
    *out = v.items;
    *n = (int)v.n;
    return err;
}

static int exec_id(conn *w, stmt_id id, const char *text, const char *op) {
    sqlite3_stmt *st = stmt(w, id);
    if (!st) return CAIRN_EDB;
    return stmt_exec_bound(w, st, bind_str(st, 1, text), op);
}

/* Reads an upload's row inside the writer's transaction; ENOTFOUND. */
static int upload_read(conn *w, const char *upload_id, meta_upload *u) {
    sqlite3_stmt *st = stmt(w, ST_UPLOAD_GET);
    if (!st) return CAIRN_EDB;
    int err = bind_result(w, bind_str(st, 1, upload_id), "upload get bind");
    if (err) {
        stmt_done(st);
        return err;
    }
    int rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? row_upload(st, u) : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : db_fail(w, rc, "upload get");
    stmt_done(st);
    return err;
}

/* Inside the writer's transaction: reads an upload's parts, then removes the
 * upload and its part rows (complete and abort both end an upload so). */
static int take_upload(conn *w, const char *upload_id, meta_part **parts, int *n) {
    int err = upload_exists(w, upload_id);
    if (err == 0) err = all_parts(w, upload_id, parts, n);
    if (err == 0) err = exec_id(w, ST_PARTS_DELETE, upload_id, "upload parts delete");
    if (err == 0) err = exec_id(w, ST_UPLOAD_DELETE, upload_id, "upload delete");
    return err;
}

/* The uploaded part a complete chose, as it is now: the same version, or
 * NULL when a re-upload replaced it (or it is gone) since the list was read. */
static const meta_part *current_part(const meta_part *uploaded, int nup, const meta_part *chosen) {
    for (int i = 0; i < nup; i++)
        if (uploaded[i].part_number == chosen->part_number)
            return strcmp(uploaded[i].version_id, chosen->version_id) == 0 ? &uploaded[i] : NULL;
    return NULL;
}

static int record_completed(conn *w, const char *upload_id, const meta_object *obj, int64_t bucket_id) {
    sqlite3_stmt *st = stmt(w, ST_COMPLETED_INSERT);
    if (!st) return CAIRN_EDB;
    int b = bind_str(st, 1, upload_id) | sqlite3_bind_int64(st, 2, bucket_id) |
            bind_bytes_text(st, 3, obj->key, obj->key_len) | bind_str(st, 4, obj->version_id) |
            bind_str(st, 5, obj->etag) | sqlite3_bind_int64(st, 6, obj->mtime_ms);
    return stmt_exec_bound(w, st, b, "completed upload insert");
}

/* Inside the writer's transaction: the whole of a complete (see meta.h). */
static int complete_tx(conn *w, const char *upload_id, const meta_object *obj, const meta_part *parts, int n,
                       meta_part **uploaded, int *nup, meta_object *replaced, bool *had_replaced) {
    meta_upload u;
    int err = upload_read(w, upload_id, &u);
    if (err != 0) return err;
    bool mine = (obj->bucket_id == 0 || u.bucket_id == obj->bucket_id) && u.key_len == obj->key_len &&
                memcmp(u.key, obj->key, obj->key_len) == 0;
    int64_t bucket_id = u.bucket_id;
    meta_upload_clear(&u);
    if (!mine) return CAIRN_ENOTFOUND;
    err = take_upload(w, upload_id, uploaded, nup);
    if (err == 0) err = object_put_tx(w, obj, replaced, had_replaced);
    int64_t offset = 0;
    for (int i = 0; err == 0 && i < n; i++) {
        const meta_part *p = current_part(*uploaded, *nup, &parts[i]);
        if (!p) {
            err = CAIRN_ECONFLICT;
            break;
        }
        sqlite3_stmt *st = stmt(w, ST_OBJPART_INSERT);
        if (!st) { err = CAIRN_EDB; break; }
        int b = bind_str(st, 1, obj->version_id) | sqlite3_bind_int(st, 2, p->part_number) |
                sqlite3_bind_int64(st, 3, offset) | sqlite3_bind_int64(st, 4, p->size) |
                bind_str(st, 5, p->etag) | bind_str(st, 6, p->version_id) | bind_str(st, 7, p->layout);
        err = stmt_exec_bound(w, st, b, "object part insert");
        offset += p->size;
    }
    /* The object's size was computed from the same rows the caller read. */
    if (err == 0 && offset != obj->size) err = CAIRN_ECONFLICT;
    if (err == 0) err = record_completed(w, upload_id, obj, bucket_id);
    return err;
}

int meta_upload_complete(meta_store *ms, const char *upload_id, const meta_object *obj, const meta_part *parts,
                         int n, meta_object *replaced, bool *had_replaced,
                         void (*unused)(void *ud, const meta_part *p), void *ud) {
    /* Both may be NULL, as in meta_object_put: the replaced version is then dropped. */
    meta_object replaced_local;
    bool had_local;
    if (!replaced) replaced = &replaced_local;
    if (!had_replaced) had_replaced = &had_local;
    *had_replaced = false;
    memset(replaced, 0, sizeof *replaced);
    if (!ms || !upload_id || !obj || (n > 0 && !parts)) return CAIRN_EINVAL;
    int err = obj_validate(obj);
    if (err != 0) return err;
    conn *w;
    err = wtx_begin(ms, &w);
    if (err != 0) return err;
    meta_part *uploaded = NULL;
    int nup = 0;
    err = wtx_end(ms, complete_tx(w, upload_id, obj, parts, n, &uploaded, &nup, replaced, had_replaced));
    if (err == 0 && unused) {
        for (int i = 0; i < nup; i++) {
            bool chosen = false;
            for (int j = 0; j < n && !chosen; j++)
                chosen = parts[j].part_number == uploaded[i].part_number && !strcmp(parts[j].version_id, uploaded[i].version_id);
            if (!chosen) unused(ud, &uploaded[i]);
        }
    }
    if (err != 0) {
        meta_object_clear(replaced);
        *had_replaced = false;
    }
    free(uploaded);
    if (replaced == &replaced_local) meta_object_clear(&replaced_local);
    return err;
}

int meta_upload_abort(meta_store *ms, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud) {
    if (!ms || !upload_id) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    meta_part *uploaded = NULL;
    int nup = 0;
    err = take_upload(w, upload_id, &uploaded, &nup);
    err = wtx_end(ms, err);
    if (err == 0 && parts)
        for (int i = 0; i < nup; i++) parts(ud, &uploaded[i]);
    free(uploaded);
    return err;
}

int meta_object_parts(meta_store *ms, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud) {
    if (!ms || !version_id || !cb) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_OBJPART_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, version_id), "object parts bind");
    vec v = {.size = sizeof(meta_part)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "object parts"); break; }
        meta_part *row = vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_part(st, row, true);
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    meta_part *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}


int meta_upload_completed_get(meta_store *ms, const char *upload_id, meta_completed_upload *out) {
    if (!ms || !upload_id || !out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_COMPLETED_GET);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, upload_id), "completed get bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            err = col_copy(st, 0, out->upload_id, sizeof out->upload_id);
            out->bucket_id = sqlite3_column_int64(st, 1);
            if (err == 0) err = col_copy(st, 2, out->key, sizeof out->key);
            out->key_len = (size_t)sqlite3_column_bytes(st, 2);
            if (err == 0) err = col_copy(st, 3, out->version_id, sizeof out->version_id);
            if (err == 0) err = col_copy(st, 4, out->etag, sizeof out->etag);
            out->completed_ms = sqlite3_column_int64(st, 5);
        } else {
            err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : db_fail(c, rc, "completed get");
        }
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

typedef struct { int64_t before; int limit; } prune_args;

static int bind_prune(sqlite3_stmt *st, const void *p) {
    const prune_args *a = p;
    return sqlite3_bind_int64(st, 1, a->before) | sqlite3_bind_int(st, 2, a->limit);
}

int meta_upload_completed_prune(meta_store *ms, int64_t before_ms, int limit, int64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!ms || limit < 1) return CAIRN_EINVAL;
    prune_args a = {before_ms, limit};
    int changes = 0;
    int err = write_one(ms, ST_COMPLETED_PRUNE, bind_prune, &a, &changes, "completed uploads prune");
    if (deleted) *deleted = err ? 0 : changes;
    return err;
}

/* ---- the trash ------------------------------------------------------------------------ */

int meta_trash_list(meta_store *ms, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud) {
    if (!ms || !cb || limit < 1) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_TRASH_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, sqlite3_bind_int(st, 1, limit), "trash list bind");
    vec v = {.size = sizeof(meta_trash_entry)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "trash list"); break; }
        meta_trash_entry *e = vec_push(&v);
        if (!e) { err = CAIRN_ENOMEM; break; }
        memset(e, 0, sizeof *e);
        err = col_copy(st, 0, e->version_id, sizeof e->version_id);
        if (err == 0) err = col_copy(st, 1, e->layout, sizeof e->layout);
        e->added_ms = sqlite3_column_int64(st, 2);
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    meta_trash_entry *rows = v.items;
    for (size_t i = 0; err == 0 && i < v.n; i++)
        if (cb(ud, &rows[i])) break;
    free(rows);
    return err;
}

int meta_trash_remove(meta_store *ms, const char *const *version_ids, int n) {
    if (!ms || n < 0 || (n && !version_ids)) return CAIRN_EINVAL;
    if (n == 0) return 0;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    for (int i = 0; err == 0 && i < n; i++) err = exec_id(w, ST_TRASH_DELETE, version_ids[i], "trash delete");
    return wtx_end(ms, err);
}

/* ---- the job queue ------------------------------------------------------------------- */

void meta_job_clear(meta_job *j) {
    if (!j) return;
    free(j->args);
    j->args = NULL;
}

static int row_job(sqlite3_stmt *st, meta_job *j) {
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(st, 0);
    int err = col_copy(st, 1, j->kind, sizeof j->kind);
    j->priority = sqlite3_column_int(st, 3);
    j->run_at_ms = sqlite3_column_int64(st, 4);
    j->attempts = sqlite3_column_int(st, 5);
    j->max_attempts = sqlite3_column_int(st, 6);
    if (err == 0) err = col_copy(st, 7, j->state, sizeof j->state);
    if (err == 0) err = col_copy(st, 8, j->lease_owner, sizeof j->lease_owner);
    j->lease_expires_ms = sqlite3_column_int64(st, 9);
    if (err == 0) err = col_copy(st, 10, j->unique_key, sizeof j->unique_key);
    if (err == 0) err = col_copy(st, 11, j->last_error, sizeof j->last_error);
    j->created_ms = sqlite3_column_int64(st, 12);
    j->finished_ms = sqlite3_column_int64(st, 13);
    const char *a = (const char *)sqlite3_column_text(st, 2);
    if (err == 0 && !(j->args = strdup(a ? a : "{}"))) err = CAIRN_ENOMEM;
    return err;
}

static int job_read(conn *c, int64_t id, meta_job *out) {
    sqlite3_stmt *st = stmt(c, ST_JOB_GET);
    if (!st) return CAIRN_EDB;
    int err = bind_result(c, sqlite3_bind_int64(st, 1, id), "job get bind");
    if (err) {
        stmt_done(st);
        return err;
    }
    int rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? row_job(st, out) : rc == SQLITE_DONE ? CAIRN_ENOTFOUND : CAIRN_EDB;
    stmt_done(st);
    return err;
}

int meta_job_enqueue(meta_store *ms, const meta_job *j, int64_t *id) {
    if (!ms || !j || !j->kind[0]) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    if (j->unique_key[0]) {
        sqlite3_stmt *st = stmt(w, ST_JOB_BY_UNIQUE);
        int64_t holder = 0;
        bool finished = false;
        if (!st) err = CAIRN_EDB;
        else if ((err = bind_result(w, bind_str(st, 1, j->unique_key), "job by unique key bind")) == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                holder = sqlite3_column_int64(st, 0);
                finished = sqlite3_column_int(st, 1) != 0;
            } else if (rc != SQLITE_DONE) {
                err = db_fail(w, rc, "job by unique key");
            }
        }
        if (st) stmt_done(st);
        if (err == 0 && holder && finished && j->unique_while_pending) {
            st = stmt(w, ST_JOB_DROP_KEY);
            if (!st) err = CAIRN_EDB;
            else err = stmt_exec_bound(w, st, sqlite3_bind_int64(st, 1, holder), "job drop key");
        } else if (err == 0 && holder) {
            if (id) *id = holder;
            err = CAIRN_EEXIST;
        }
    }
    if (err == 0) {
        sqlite3_stmt *st = stmt(w, ST_JOB_INSERT);
        if (!st) err = CAIRN_EDB;
        else {
            int b = bind_str(st, 1, j->kind) | bind_str(st, 2, j->args ? j->args : "{}") | sqlite3_bind_int(st, 3, j->priority) |
                    sqlite3_bind_int64(st, 4, j->run_at_ms) | sqlite3_bind_int(st, 5, j->max_attempts > 0 ? j->max_attempts : 5) |
                    (j->unique_key[0] ? bind_str(st, 6, j->unique_key) : sqlite3_bind_null(st, 6)) |
                    sqlite3_bind_int64(st, 7, time_now_ms());
            err = stmt_exec_bound(w, st, b, "job insert");
            if (err == 0 && id) *id = sqlite3_last_insert_rowid(w->db);
        }
    }
    int end = wtx_end(ms, err == CAIRN_EEXIST ? 0 : err);
    return err ? err : end;
}

/* Inside a write transaction: takes the next runnable job into out. */
static int claim_in_tx(conn *w, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    int err = 0;
    int64_t id = 0;
    sqlite3_stmt *st = stmt(w, ST_JOB_NEXT);
    if (!st) err = CAIRN_EDB;
    else {
        if ((err = bind_result(w, sqlite3_bind_int64(st, 1, now_ms), "job next bind")) == 0) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
            else err = rc == SQLITE_DONE ? CAIRN_ENOTFOUND : CAIRN_EDB;
        }
        stmt_done(st);
    }
    if (err == 0) {
        st = stmt(w, ST_JOB_TAKE);
        if (!st) err = CAIRN_EDB;
        else {
            int b = sqlite3_bind_int64(st, 1, id) | bind_str(st, 2, owner) | sqlite3_bind_int64(st, 3, now_ms + lease_ms);
            err = stmt_exec_bound(w, st, b, "job take");
        }
    }
    if (err == 0) err = job_read(w, id, out);
    return err;
}

int meta_job_claim(meta_store *ms, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms || !owner) return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    err = claim_in_tx(w, owner, now_ms, lease_ms, out);
    int end = wtx_end(ms, err == CAIRN_ENOTFOUND ? 0 : err);
    if (err != 0 || end != 0) meta_job_clear(out);
    return err ? err : end;
}

typedef struct { int64_t id; const char *owner, *state, *error; int64_t run_at, now; } job_finish_args;

static int bind_job_finish(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return sqlite3_bind_int64(st, 1, a->id) | bind_str(st, 2, a->owner) | bind_str(st, 3, a->state) |
           sqlite3_bind_int64(st, 4, a->run_at) | bind_str_max(st, 5, a->error, sizeof((meta_job *)0)->last_error) |
           sqlite3_bind_int64(st, 6, a->now);
}

int meta_job_finish(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                    const char *error) {
    if (!ms || !owner || !state ||
        (strcmp(state, "completed") && strcmp(state, "retryable") && strcmp(state, "discarded")))
        return CAIRN_EINVAL;
    job_finish_args a = {id, owner, state, error, run_at_ms, time_now_ms()};
    int changes = 0;
    int err = write_one(ms, ST_JOB_FINISH, bind_job_finish, &a, &changes, "job finish");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

int meta_job_finish_claim(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms,
                          const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next) {
    if (!finish_rc || !next) return CAIRN_EINVAL;
    memset(next, 0, sizeof *next);
    *finish_rc = CAIRN_EINVAL;
    if (!ms || !owner || !state ||
        (strcmp(state, "completed") && strcmp(state, "retryable") && strcmp(state, "discarded")))
        return CAIRN_EINVAL;
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) {
        *finish_rc = err;
        return err;
    }
    job_finish_args a = {id, owner, state, error, run_at_ms, time_now_ms()};
    sqlite3_stmt *st = stmt(w, ST_JOB_FINISH);
    if (!st) err = CAIRN_EDB;
    else err = stmt_exec_bound(w, st, bind_job_finish(st, &a), "job finish");
    int fin = err ? err : sqlite3_changes(w->db) ? 0 : CAIRN_ECONFLICT;
    int claim = err ? err : claim_in_tx(w, owner, now_ms, lease_ms, next);
    int end = wtx_end(ms, claim == CAIRN_ENOTFOUND ? 0 : claim);
    if (end != 0) {
        /* Nothing of the transaction stands: not the finish either. */
        meta_job_clear(next);
        *finish_rc = end;
        return end;
    }
    if (claim != 0) meta_job_clear(next);
    *finish_rc = fin;
    return claim;
}

static int bind_id_owner(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return sqlite3_bind_int64(st, 1, a->id) | bind_str(st, 2, a->owner);
}

static int bind_id_owner_time(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return bind_id_owner(st, p) | sqlite3_bind_int64(st, 3, a->run_at);
}

typedef struct { int64_t done_before, discarded_before; int limit; } job_prune_args;

static int bind_job_prune(sqlite3_stmt *st, const void *p) {
    const job_prune_args *a = p;
    return sqlite3_bind_int64(st, 1, a->done_before) | sqlite3_bind_int64(st, 2, a->discarded_before) |
           sqlite3_bind_int(st, 3, a->limit);
}

int meta_job_prune(meta_store *ms, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted) {
    if (!ms || limit < 1) return CAIRN_EINVAL;
    job_prune_args a = {done_before_ms, discarded_before_ms, limit};
    int changes = 0;
    int err = write_one(ms, ST_JOB_PRUNE, bind_job_prune, &a, &changes, "job prune");
    if (deleted) *deleted = err ? 0 : changes;
    return err;
}

int meta_job_release(meta_store *ms, int64_t id, const char *owner) {
    if (!ms) return CAIRN_EINVAL;
    job_finish_args a = {id, owner, NULL, NULL, 0, 0};
    int changes = 0;
    int err = write_one(ms, ST_JOB_RELEASE, bind_id_owner, &a, &changes, "job release");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

int meta_job_extend(meta_store *ms, int64_t id, const char *owner, int64_t lease_expires_ms) {
    if (!ms) return CAIRN_EINVAL;
    job_finish_args a = {id, owner, NULL, NULL, lease_expires_ms, 0};
    int changes = 0;
    int err = write_one(ms, ST_JOB_EXTEND, bind_id_owner_time, &a, &changes, "job extend");
    return err ? err : changes ? 0 : CAIRN_ECONFLICT;
}

static int bind_id_time(sqlite3_stmt *st, const void *p) {
    const job_finish_args *a = p;
    return sqlite3_bind_int64(st, 1, a->id) | sqlite3_bind_int64(st, 2, a->now);
}

static int job_change(meta_store *ms, int64_t id, stmt_id which, const char *op) {
    if (!ms) return CAIRN_EINVAL;
    job_finish_args a = {id, NULL, NULL, NULL, 0, time_now_ms()};
    int changes = 0;
    int err = write_one(ms, which, bind_id_time, &a, &changes, op);
    if (err || changes) return err;
    meta_job j;
    err = meta_job_get(ms, id, &j);
    meta_job_clear(&j);
    return err == CAIRN_ENOTFOUND ? CAIRN_ENOTFOUND : CAIRN_ECONFLICT;
}

int meta_job_cancel(meta_store *ms, int64_t id) { return job_change(ms, id, ST_JOB_CANCEL, "job cancel"); }
int meta_job_retry(meta_store *ms, int64_t id) { return job_change(ms, id, ST_JOB_RETRY, "job retry"); }

int meta_job_get(meta_store *ms, int64_t id, meta_job *out) {
    if (!out) return CAIRN_EINVAL;
    memset(out, 0, sizeof *out);
    if (!ms) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    int err = job_read(c, id, out);
    reader_put(ms, c);
    return err;
}

int meta_job_list(meta_store *ms, const char *state, const char *kind, int limit,
                  int (*cb)(void *ud, const meta_job *j), void *ud) {
    if (!ms || !cb || limit < 0) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_JOB_LIST);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, state ? state : "") | bind_str(st, 2, kind ? kind : "") | sqlite3_bind_int(st, 3, limit), "job list bind");
    vec v = {.size = sizeof(meta_job)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "job list"); break; }
        meta_job *row = vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_job(st, row);
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    meta_job *rows = v.items;
    bool stop = false;
    for (size_t i = 0; i < v.n; i++) {
        if (err == 0 && !stop) stop = cb(ud, &rows[i]) != 0;
        meta_job_clear(&rows[i]);
    }
    free(rows);
    return err;
}

int meta_job_counts(meta_store *ms, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud) {
    if (!ms || !cb) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_JOB_COUNTS);
    int err = st ? 0 : CAIRN_EDB;
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "job counts"); break; }
        if (cb(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
               sqlite3_column_int64(st, 2)))
            break;
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

int meta_upload_list_older(meta_store *ms, int64_t before_ms, int limit,
                           int (*cb)(void *ud, const meta_upload *u), void *ud) {
    if (!ms || !cb || limit < 0) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_UPLOAD_OLDER);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, sqlite3_bind_int64(st, 1, before_ms) | sqlite3_bind_int(st, 2, limit), "upload older bind");
    vec v = {.size = sizeof(meta_upload)};
    while (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) { err = db_fail(c, rc, "upload older"); break; }
        meta_upload *row = vec_push(&v);
        if (!row) { err = CAIRN_ENOMEM; break; }
        err = row_upload(st, row);
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    meta_upload *rows = v.items;
    bool stop = false;
    for (size_t i = 0; i < v.n; i++) {
        if (err == 0 && !stop) stop = cb(ud, &rows[i]) != 0;
        meta_upload_clear(&rows[i]);
    }
    free(rows);
    return err;
}

int meta_version_referenced(meta_store *ms, const char *version_id, bool *referenced) {
    if (!referenced) return CAIRN_EINVAL;
    *referenced = true; /* on any doubt, keep the bytes */
    if (!ms || !version_id) return CAIRN_EINVAL;
    conn *c = reader_get(ms);
    sqlite3_stmt *st = stmt(c, ST_VERSION_REFERENCED);
    int err = st ? 0 : CAIRN_EDB;
    if (err == 0) err = bind_result(c, bind_str(st, 1, version_id), "version referenced bind");
    if (err == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *referenced = sqlite3_column_int(st, 0) != 0;
        else err = db_fail(c, rc, "version referenced");
    }
    if (st) stmt_done(st);
    reader_put(ms, c);
    return err;
}

/* ---- consistency (fsck) ------------------------------------------------------------- */

static const char *const problem_names[META_PROBLEM__COUNT] = {
    [META_PROBLEM_UPLOAD_WITHOUT_BUCKET] = "upload_without_bucket",
    [META_PROBLEM_OBJECT_WITHOUT_BUCKET] = "object_without_bucket",
    [META_PROBLEM_PARTS_WITHOUT_UPLOAD] = "parts_without_upload",
    [META_PROBLEM_PARTS_WITHOUT_OBJECT] = "parts_without_object",
    [META_PROBLEM_MULTIPART_MISMATCH] = "multipart_mismatch",
    [META_PROBLEM_INLINE_WITHOUT_DATA] = "inline_without_data",
    [META_PROBLEM_DATA_WITHOUT_OBJECT] = "data_without_object",
    [META_PROBLEM_DUPLICATE_VERSION] = "duplicate_version",
};

/* One query per kind; each returns (id, key).  Full scans: fsck's price. */
static const char *const problem_sql[META_PROBLEM__COUNT] = {
    [META_PROBLEM_UPLOAD_WITHOUT_BUCKET] =
        "SELECT upload_id, '' FROM uploads WHERE bucket_id NOT IN (SELECT id FROM buckets)",
    [META_PROBLEM_OBJECT_WITHOUT_BUCKET] =
        "SELECT bucket, key FROM objects WHERE bucket NOT IN (SELECT name FROM buckets)",
    [META_PROBLEM_PARTS_WITHOUT_UPLOAD] =
        "SELECT DISTINCT upload_id, '' FROM upload_parts WHERE upload_id NOT IN (SELECT upload_id FROM uploads)",
    [META_PROBLEM_PARTS_WITHOUT_OBJECT] =
        "SELECT DISTINCT version_id, '' FROM object_parts WHERE version_id NOT IN"
        " (SELECT version_id FROM objects WHERE substr(layout, 1, 3) = 'mp:')",
    [META_PROBLEM_MULTIPART_MISMATCH] =
        "SELECT o.version_id, o.key FROM objects o WHERE substr(o.layout, 1, 3) = 'mp:' AND ("
        " CAST(substr(o.layout, 4) AS INTEGER) <> (SELECT count(*) FROM object_parts p WHERE p.version_id = o.version_id)"
        " OR o.size <> (SELECT coalesce(sum(size), 0) FROM object_parts p WHERE p.version_id = o.version_id)"
        " OR EXISTS (SELECT 1 FROM object_parts p WHERE p.version_id = o.version_id AND p.offset <>"
        "   (SELECT coalesce(sum(q.size), 0) FROM object_parts q WHERE q.version_id = o.version_id"
        "    AND q.part_number < p.part_number)))",
    [META_PROBLEM_INLINE_WITHOUT_DATA] =
        "SELECT o.version_id, o.key FROM objects o LEFT JOIN object_data d ON d.version_id = o.version_id"
        " WHERE o.storage = 0 AND (d.version_id IS NULL OR length(d.data) <> o.size)",
    [META_PROBLEM_DATA_WITHOUT_OBJECT] =
        "SELECT version_id, '' FROM object_data WHERE version_id NOT IN (SELECT version_id FROM objects WHERE storage = 0)",
    [META_PROBLEM_DUPLICATE_VERSION] =
        "SELECT v, '' FROM (SELECT version_id AS v FROM objects UNION ALL SELECT part_version_id FROM object_parts"
        " UNION ALL SELECT version_id FROM upload_parts) GROUP BY v HAVING count(*) > 1",
};

const char *meta_problem_name(meta_problem_kind kind) {
    return kind >= 0 && kind < META_PROBLEM__COUNT ? problem_names[kind] : "unknown";
}

int meta_check(meta_store *ms, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total) {
    if (total) *total = 0;
    if (!ms || !cb || limit < 0) return CAIRN_EINVAL;
    int err = 0;
    int delivered = 0;
    bool stop = false;
    for (int k = 0; err == 0 && k < META_PROBLEM__COUNT; k++) {
        vec v = {.size = sizeof(meta_problem)};
        conn *c = reader_get(ms);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, problem_sql[k], -1, &st, NULL);
        if (rc != SQLITE_OK) err = db_fail(c, rc, problem_names[k]);
        while (err == 0) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) {
                err = db_fail(c, rc, problem_names[k]);
                break;
            }
            if (total) (*total)++;
            if (delivered + (int)v.n >= limit) continue; /* counted, not kept */
            meta_problem *p = vec_push(&v);
            if (!p) {
                err = CAIRN_ENOMEM;
                break;
            }
            memset(p, 0, sizeof *p);
            p->kind = (meta_problem_kind)k;
            err = col_copy(st, 0, p->id, sizeof p->id);
            if (err == 0) err = col_copy(st, 1, p->key, sizeof p->key);
            p->key_len = (size_t)sqlite3_column_bytes(st, 1);
        }
        sqlite3_finalize(st);
        reader_put(ms, c);
        meta_problem *rows = v.items;
        for (size_t i = 0; err == 0 && i < v.n && !stop; i++, delivered++) stop = cb(ud, &rows[i]) != 0;
        free(rows);
    }
    return err;
}

/* Inside a write transaction: collects (version_id, layout) of the rows
 * `select_sql` finds for id, then runs `delete_sql` on id. */
static int take_rows(conn *w, const char *select_sql, const char *delete_sql, const char *id, vec *out) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(w->db, select_sql, -1, &st, NULL);
    int err = rc == SQLITE_OK ? 0 : db_fail(w, rc, "repair select");
    if (err == 0) err = bind_result(w, bind_str(st, 1, id), "repair bind");
    while (err == 0) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            err = db_fail(w, rc, "repair select");
            break;
        }
        meta_trash_entry *e = vec_push(out);
        if (!e) {
            err = CAIRN_ENOMEM;
            break;
        }
        memset(e, 0, sizeof *e);
        err = col_copy(st, 0, e->version_id, sizeof e->version_id);
        if (err == 0) err = col_copy(st, 1, e->layout, sizeof e->layout);
    }
    sqlite3_finalize(st);
    if (err == 0) {
        rc = sqlite3_prepare_v2(w->db, delete_sql, -1, &st, NULL);
        err = rc == SQLITE_OK ? 0 : db_fail(w, rc, "repair delete");
        if (err == 0) err = bind_result(w, bind_str(st, 1, id), "repair bind");
        if (err == 0 && (rc = sqlite3_step(st)) != SQLITE_DONE) err = db_fail(w, rc, "repair delete");
        sqlite3_finalize(st);
    }
    return err;
}

typedef struct {
    void (*drop)(void *ud, const char *version_id, const char *layout);
    void *ud;
} drop_adapter;

static void drop_upload_part(void *ud, const meta_part *p) {
    drop_adapter *a = ud;
    if (a->drop) a->drop(a->ud, p->version_id, p->layout);
}

int meta_repair(meta_store *ms, const meta_problem *p,
                void (*drop)(void *ud, const char *version_id, const char *layout), void *ud) {
    if (!ms || !p) return CAIRN_EINVAL;
    const char *select_sql = NULL, *delete_sql = NULL;
    switch (p->kind) {
    case META_PROBLEM_UPLOAD_WITHOUT_BUCKET: {
        drop_adapter a = {drop, ud};
        return meta_upload_abort(ms, p->id, drop_upload_part, &a);
    }
    case META_PROBLEM_PARTS_WITHOUT_UPLOAD:
        /* The conditions are checked again in the transaction: a row that
         * gained its owner since the check is left alone. */
        select_sql = "SELECT version_id, layout FROM upload_parts WHERE upload_id = ?1"
                     " AND upload_id NOT IN (SELECT upload_id FROM uploads)";
        delete_sql = "DELETE FROM upload_parts WHERE upload_id = ?1 AND upload_id NOT IN (SELECT upload_id FROM uploads)";
        break;
    case META_PROBLEM_PARTS_WITHOUT_OBJECT:
        select_sql = "SELECT part_version_id, layout FROM object_parts WHERE version_id = ?1"
                     " AND version_id NOT IN (SELECT version_id FROM objects)";
        delete_sql = "DELETE FROM object_parts WHERE version_id = ?1 AND version_id NOT IN (SELECT version_id FROM objects)";
        break;
    case META_PROBLEM_DATA_WITHOUT_OBJECT:
        select_sql = "SELECT version_id, '' FROM object_data WHERE version_id = ?1 AND 0"; /* no shards */
        delete_sql = "DELETE FROM object_data WHERE version_id = ?1"
                     " AND version_id NOT IN (SELECT version_id FROM objects WHERE storage = 0)";
        break;
    default:
        return CAIRN_EINVAL;
    }
    conn *w;
    int err = wtx_begin(ms, &w);
    if (err != 0) return err;
    vec v = {.size = sizeof(meta_trash_entry)};
    err = wtx_end(ms, take_rows(w, select_sql, delete_sql, p->id, &v));
    meta_trash_entry *rows = v.items;
    for (size_t i = 0; err == 0 && drop && i < v.n; i++) drop(ud, rows[i].version_id, rows[i].layout);
    free(rows);
    return err;
}
