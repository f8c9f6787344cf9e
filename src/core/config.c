/*
 * config.c — cairn's configuration: one static table of options and the
 * loaders that fill a config_t from it.
 *
 * Every option is one row of `options[]`: its YAML key, its CAIRN_*
 * environment variable, its type (string, size, int, bool, enum), where it
 * lives in config_t, its valid range or check, its default (as text) and a
 * one-line description.  Everything else is driven by that table, so an
 * option cannot exist without a default, a description, validation and an
 * environment variable:
 *
 *   - config_defaults() parses each row's default text through the same code
 *     path as user input, so defaults are validated too;
 *   - the YAML loader walks libyaml's event stream (not its document tree),
 *     which lets it report duplicate keys, non-scalar values and syntax errors
 *     with line numbers, and skip nested junk without building it in memory;
 *   - config_load_env() maps CAIRN_* variables through the table and rejects
 *     unknown ones, so a typo in a deployment's environment is not silently
 *     ignored;
 *   - config_describe() renders the table as Markdown for docs/ and
 *     `cairn config describe`.
 *
 * Errors are collected, not returned one at a time: each loader appends every
 * problem it finds to a config_errors (key + reason) and keeps going, so an
 * operator fixes a file in one round.  A value that fails validation leaves
 * the field as it was.  Reasons never echo the value of a string option, so
 * a mistyped secret does not end up in a terminal or a log.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/core.h"

/* ---- the option table --------------------------------------------------- */

typedef enum { OPT_STRING, OPT_SIZE, OPT_INT, OPT_BOOL, OPT_ENUM, OPT_DURATION } opt_type;

/* Extra validation of a string option; on failure writes a reason and
 * returns false.  The value is always NUL-terminated and fits the field. */
typedef bool (*str_check_fn)(const char *v, char *reason, size_t rn);

typedef struct {
    const char *key;        /* YAML key and config_set name */
    const char *env;        /* environment variable */
    opt_type type;
    size_t offset;          /* field offset in config_t */
    size_t cap;             /* string/enum: field size including the NUL */
    int64_t min, max;       /* size/int: inclusive range */
    const char *choices;    /* enum: '|'-separated lowercase words */
    str_check_fn check;     /* string: extra check, may be NULL */
    const char *form;       /* string: what a value looks like, for describe */
    const char *def;        /* default, as text a user could write */
    const char *desc;       /* one line */
} option;

#define FIELD_CAP(f) sizeof(((config_t *)0)->f)

#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

static bool check_nodes(const char *v, char *reason, size_t rn)
{
    int n = 0;
    for (const char *p = v; *p;) {
        size_t len = strcspn(p, ",");
        size_t scheme = strncmp(p, "https://", 8) == 0 ? 8 : strncmp(p, "http://", 7) == 0 ? 7 : 0;
        if (len < 10 || !scheme || !memchr(p + scheme, ':', len - scheme)) {
            snprintf(reason, rn, "node %d is not http(s)://HOST:PORT", n + 1);
            return false;
        }
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n > 64) {
        snprintf(reason, rn, "at most 64 nodes");
        return false;
    }
    return true;
}

/* events_allowed_origins: comma-separated scheme://host[:port], as browsers
 * send Origin (RFC 6454); spaces around the commas are allowed. */
static bool check_origins(const char *v, char *reason, size_t rn)
{
    const char *p = v;
    while (*p) {
        p += strspn(p, " ");
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && p[t - 1] == ' ') t--;
        const char *sep = memmem(p, t, "://", 3);
        bool ok = t > 0 && sep && sep > p && (size_t)(sep - p) + 3 < t;
        for (size_t i = 0; ok && i < t; i++)
            if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f || (p[i] == '/' && (p + i < sep || p + i > sep + 2)))
                ok = false;
        if (!ok) {
            snprintf(reason, rn, "each origin must be scheme://host[:port] (no path), e.g. https://console.example.com");
            return false;
        }
        p += n;
        if (*p == ',') p++;
    }
    return true;
}

static bool check_proxies(const char *v, char *reason, size_t rn)
{
    const char *bad = NULL;
    if (net_addr_in_list(v, NULL, &bad) >= 0)
        return true;
    snprintf(reason, rn, "each element must be an IP address or a CIDR block (10.0.0.0/8, fd00::/8), not '%.*s'",
             (int)strcspn(bad, ","), bad);
    return false;
}

static bool check_redis_url(const char *v, char *reason, size_t rn)
{
    if (!*v || !strncmp(v, "redis://", 8))
        return true;
    snprintf(reason, rn, "must start with redis:// (or be empty)");
    return false;
}

static bool check_http_url(const char *v, char *reason, size_t rn)
{
    if (!*v || !strncmp(v, "http://", 7) || !strncmp(v, "https://", 8))
        return true;
    snprintf(reason, rn, "must start with http:// or https:// (or be empty)");
    return false;
}

/* The scheme only: meta_url_parse checks the rest when the store opens. */
static bool check_metadata_url(const char *v, char *reason, size_t rn)
{
    static const char *const schemes[] = {"sqlite://", "postgres://", "postgresql://"};
    if (!*v)
        return true;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (!strncmp(v, schemes[i], strlen(schemes[i])))
            return true;
    snprintf(reason, rn, "must start with sqlite:// or postgres:// (or be empty)");
    return false;
}

static bool check_cluster_secret(const char *v, char *reason, size_t rn)
{
    if (*v && strlen(v) < 16) {
        snprintf(reason, rn, "must be at least 16 characters (or empty)");
        return false;
    }
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            snprintf(reason, rn, "printable ASCII without spaces only");
            return false;
        }
    return true;
}

static bool check_drives(const char *v, char *reason, size_t rn)
{
    if (!*v)
        return true;
    int n = 0;
    for (const char *p = v;; p++) {
        size_t len = strcspn(p, ",");
        if (len == 0) {
            snprintf(reason, rn, "empty directory in the list (drive %d)", n + 1);
            return false;
        }
        n++;
        p += len;
        if (!*p)
            break;
    }
    if (n > 64) {
        snprintf(reason, rn, "at most 64 drives");
        return false;
    }
    return true;
}

static bool check_listen(const char *v, char *reason, size_t rn);
static bool check_nonempty(const char *v, char *reason, size_t rn);
static bool check_region(const char *v, char *reason, size_t rn);
static bool check_domain(const char *v, char *reason, size_t rn);
static bool check_user(const char *v, char *reason, size_t rn);
static bool check_password(const char *v, char *reason, size_t rn);
static bool check_master_key(const char *v, char *reason, size_t rn);
static bool check_drives(const char *v, char *reason, size_t rn);
static bool check_cluster_secret(const char *v, char *reason, size_t rn);
static bool check_nodes(const char *v, char *reason, size_t rn);

#define OPT_STR(k, e, chk, form, d, text) \
    { #k, e, OPT_STRING, offsetof(config_t, k), FIELD_CAP(k), 0, 0, NULL, chk, form, d, text }
#define OPT_SZ(k, e, lo, hi, d, text) \
    { #k, e, OPT_SIZE, offsetof(config_t, k), 0, lo, hi, NULL, NULL, NULL, d, text }
/* A duration, kept in milliseconds (int64_t); lo and hi in milliseconds. */
#define OPT_DUR(k, e, lo, hi, d, text) \
    { #k, e, OPT_DURATION, offsetof(config_t, k), 0, lo, hi, NULL, NULL, NULL, d, text }
#define OPT_NUM(k, e, lo, hi, d, text) \
    { #k, e, OPT_INT, offsetof(config_t, k), 0, lo, hi, NULL, NULL, NULL, d, text }
#define OPT_BOOLEAN(k, e, d, text) \
    { #k, e, OPT_BOOL, offsetof(config_t, k), 0, 0, 0, NULL, NULL, NULL, d, text }
#define OPT_CHOICE(k, e, choices, d, text) \
    { #k, e, OPT_ENUM, offsetof(config_t, k), FIELD_CAP(k), 0, 0, choices, NULL, NULL, d, text }

static const option options[] = {
    OPT_STR(listen, "CAIRN_LISTEN", check_listen, "HOST:PORT", "127.0.0.1:9000",
            "Address and port the S3 API listens on; IPv6 in brackets, e.g. [::]:9000"),
    OPT_STR(data_dir, "CAIRN_DATA_DIR", check_nonempty, "path", "./data",
            "Directory holding object data, the metadata database and the key file"),
    OPT_STR(region, "CAIRN_REGION", check_region, "name of a-z, 0-9, -", "us-east-1",
            "Region name reported to clients and expected in SigV4 credential scopes"),
    OPT_STR(domain, "CAIRN_DOMAIN", check_domain, "hostname", "",
            "Base domain for virtual-host-style requests (BUCKET.DOMAIN); empty turns them off"),
    OPT_STR(root_user, "CAIRN_ROOT_USER", check_user, "access key id", "",
            "Root user's access key id (3+ printable characters); set with root_password"),
    OPT_STR(root_password, "CAIRN_ROOT_PASSWORD", check_password, "secret", "",
            "Root user's secret key (8+ printable characters); never logged"),
    OPT_STR(master_key, "CAIRN_MASTER_KEY", check_master_key, "64 hex digits", "",
            "Key that encrypts secrets at rest; empty = use master_key_file, or the key file in data_dir"),
    OPT_STR(master_key_file, "CAIRN_MASTER_KEY_FILE", NULL, "path", "",
            "File holding the master key (64 hex digits); every gateway of a cluster uses the same; empty = data_dir/master.key, made on first start"),
    OPT_CHOICE(log_level, "CAIRN_LOG_LEVEL", "debug|info|warn|error", "info",
               "Lowest level of log line written"),
    OPT_STR(log_ship_url, "CAIRN_LOG_SHIP_URL", check_http_url, "http(s)://HOST:PORT/PATH", "",
            "Ship every log line, batched, to this HTTP endpoint (Loki: .../loki/api/v1/push); empty = none"),
    OPT_CHOICE(log_ship_format, "CAIRN_LOG_SHIP_FORMAT", "loki|json", "loki",
               "Shipped batches: a Loki push (one stream per level), or JSON lines"),
    OPT_SZ(log_ship_buffer_bytes, "CAIRN_LOG_SHIP_BUFFER_BYTES", 64 * 1024, 1 * GIB, "8MiB",
           "Log lines waiting to be shipped, in bytes at most; past half of it debug and info lines are sampled"),
    OPT_NUM(log_ship_batch_lines, "CAIRN_LOG_SHIP_BATCH_LINES", 1, 100000, "1000",
            "Log lines in one shipped batch at most"),
    OPT_NUM(log_ship_flush_ms, "CAIRN_LOG_SHIP_FLUSH_MS", 10, 600000, "1000",
            "Milliseconds a log line waits at most for its batch to fill"),
    OPT_NUM(log_ship_timeout_ms, "CAIRN_LOG_SHIP_TIMEOUT_MS", 100, 600000, "5000",
            "Milliseconds one batch POST may take, connect included"),
    OPT_NUM(log_ship_retry_max_ms, "CAIRN_LOG_SHIP_RETRY_MAX_MS", 100, 3600000, "10000",
            "Cap of the backoff between retries of a failed batch (exponential from 100 ms, full jitter)"),
    OPT_NUM(log_ship_sample, "CAIRN_LOG_SHIP_SAMPLE", 1, 1000000, "10",
            "Under overload (the buffer over half full) keep one debug or info line in this many; warnings and errors are never sampled"),
    OPT_SZ(max_object_size, "CAIRN_MAX_OBJECT_SIZE", 1, 5 * TIB, "5TiB",
           "Largest object accepted (a single PUT is also capped at 5GiB, as in S3; multipart objects at 5TiB)"),
    OPT_SZ(inline_max_size, "CAIRN_INLINE_MAX_SIZE", 0, 1 * MIB, "16KiB",
           "Objects up to this size are stored inside the metadata database"),
    OPT_SZ(min_free_disk, "CAIRN_MIN_FREE_DISK", 0, INT64_MAX, "100MiB",
           "Readiness fails when free space in data_dir drops below this"),
    OPT_NUM(connection_limit, "CAIRN_CONNECTION_LIMIT", 1, 65536, "1024",
            "Most client connections served at once"),
    OPT_NUM(connection_timeout, "CAIRN_CONNECTION_TIMEOUT", 1, 86400, "60",
            "Seconds a connection may sit idle before it is closed"),
    OPT_NUM(shutdown_timeout, "CAIRN_SHUTDOWN_TIMEOUT", 0, 3600, "30",
            "Seconds in-flight requests get to finish on shutdown"),
    OPT_NUM(health_timeout_ms, "CAIRN_HEALTH_TIMEOUT_MS", 1, 60000, "2000",
            "Milliseconds /health/ready waits for its checks; one still running then is reported timed out"),
    OPT_NUM(health_max_age_ms, "CAIRN_HEALTH_MAX_AGE_MS", 0, 60000, "1000",
            "Milliseconds one readiness check result answers /health/ready; older, a fresh check runs"),
    OPT_NUM(max_header_bytes, "CAIRN_MAX_HEADER_BYTES", 4096, 1048576, "65536",
            "Largest request head (request line and headers) accepted, in bytes"),
    OPT_NUM(clock_skew, "CAIRN_CLOCK_SKEW", 1, 86400, "900",
            "Seconds a signed request's date may differ from the server clock"),
    OPT_STR(metadata_url, "CAIRN_METADATA_URL", check_metadata_url, "sqlite:///ABS/PATH | postgres://USER:PASS@HOST:PORT/DB", "",
            "Metadata database: sqlite:///absolute/path/meta.db or postgres://...; empty = sqlite at data_dir/meta.db"),
    OPT_NUM(db_readers, "CAIRN_DB_READERS", 1, 64, "4",
            "Read connections in the SQLite connection pool"),
    OPT_NUM(db_pool_min, "CAIRN_DB_POOL_MIN", 0, 1000, "1",
            "PostgreSQL: connections opened at start and kept open (at most db_pool_max)"),
    OPT_NUM(db_pool_max, "CAIRN_DB_POOL_MAX", 1, 1000, "8",
            "PostgreSQL: most connections open at once, so most metadata calls running at once"),
    OPT_NUM(db_acquire_timeout_ms, "CAIRN_DB_ACQUIRE_TIMEOUT_MS", 0, 600000, "2000",
            "PostgreSQL: milliseconds a call waits for a free connection, then the request gets 503 SlowDown"),
    OPT_NUM(db_health_check_ms, "CAIRN_DB_HEALTH_CHECK_MS", 0, 3600000, "1000",
            "PostgreSQL: an idle connection unused this many milliseconds is pinged before it is handed out; 0 = always"),
    OPT_NUM(db_idle_timeout_ms, "CAIRN_DB_IDLE_TIMEOUT_MS", 0, 86400000, "60000",
            "PostgreSQL: milliseconds after which idle connections above db_pool_min close; 0 = never"),
    OPT_NUM(db_max_lifetime_ms, "CAIRN_DB_MAX_LIFETIME_MS", 0, 86400000, "1800000",
            "PostgreSQL: milliseconds after which a connection is replaced (up to 10% sooner, at random); 0 = never"),
    OPT_NUM(db_statement_timeout_ms, "CAIRN_DB_STATEMENT_TIMEOUT_MS", 0, 86400000, "5000",
            "PostgreSQL: statement_timeout of request calls in milliseconds (a statement past it fails with 503); 0 = none"),
    OPT_NUM(db_long_hold_ms, "CAIRN_DB_LONG_HOLD_MS", 0, 3600000, "1000",
            "PostgreSQL: a connection held longer than this many milliseconds is logged with its call site and counted; 0 = never"),
    OPT_SZ(cache_bytes, "CAIRN_CACHE_BYTES", 0, INT64_MAX, "64MiB",
           "Metadata cache (L1) size in bytes: buckets, access keys and object heads; 0 = no cache"),
    OPT_NUM(cache_ttl_ms, "CAIRN_CACHE_TTL_MS", 1000, 86400000, "60000",
            "Milliseconds a cached metadata record lives in L1 and L2 at most"),
    OPT_STR(redis_url, "CAIRN_REDIS_URL", check_redis_url, "redis://[:PASSWORD@]HOST:PORT[/DB]", "",
            "Redis for the shared metadata cache (L2) and cross-gateway invalidation; empty = none (PostgreSQL then caches nothing)"),
    OPT_NUM(redis_timeout_ms, "CAIRN_REDIS_TIMEOUT_MS", 1, 60000, "250",
            "Milliseconds a Redis connect or command may take before it counts as failed"),
    OPT_NUM(redis_breaker_ms, "CAIRN_REDIS_BREAKER_MS", 1, 600000, "1000",
            "Milliseconds Redis is left alone after a failure (circuit breaker open) before one probe"),
    OPT_NUM(cache_lease_ms, "CAIRN_CACHE_LEASE_MS", 0, 60000, "2000",
            "With Redis: milliseconds of a gateway's cache lease; the L1 answers without asking Redis while it holds one, and a write waits at most this long for a gateway that stopped answering; 0 = one Redis read per request instead. The same on every gateway"),
    OPT_BOOLEAN(fsync, "CAIRN_FSYNC", "true",
                "fsync object data and metadata before acknowledging; turn off only for tests"),
    OPT_STR(drives, "CAIRN_DRIVES", check_drives, "DIR,DIR,...", "",
            "Directories to erasure-code objects across, one per drive; empty = data_dir/drives/d0"),
    OPT_NUM(ec_data, "CAIRN_EC_DATA", 0, 16, "0",
            "Data shards per stripe; 0 picks the default for the drive count (4+2 from six drives)"),
    OPT_NUM(ec_parity, "CAIRN_EC_PARITY", 0, 15, "0",
            "Parity shards per stripe (lost shards survivable); used when ec_data is set"),
    OPT_SZ(ec_block_size, "CAIRN_EC_BLOCK_SIZE", 4 * KIB, 16 * MIB, "256KiB",
           "Bytes of each shard block; a stripe holds ec_data blocks of object data"),
    OPT_NUM(scrub_interval, "CAIRN_SCRUB_INTERVAL", 0, 31536000, "86400",
            "Seconds from the start of one scrub pass (verify every block, heal) to the next; 0 = off"),
    OPT_SZ(scrub_rate, "CAIRN_SCRUB_RATE", 0, INT64_MAX, "64MiB",
           "Object bytes the scrubber verifies per second at most; 0 = no limit"),
    OPT_STR(cluster_secret, "CAIRN_CLUSTER_SECRET", check_cluster_secret, "secret", "",
            "Secret shared by gateways and storage nodes to sign shard API calls (16+ characters); never logged"),
    OPT_STR(nodes, "CAIRN_NODES", check_nodes, "http://HOST:PORT,...", "",
            "Storage nodes a gateway erasure-codes objects across (cairn gateway)"),
    OPT_NUM(shard_timeout_ms, "CAIRN_SHARD_TIMEOUT_MS", 100, 600000, "5000",
            "Milliseconds a gateway waits on a node before treating that shard as lost"),
    OPT_NUM(node_heartbeat_ms, "CAIRN_NODE_HEARTBEAT_MS", 50, 600000, "2000",
            "Milliseconds between a gateway's checks of its nodes and of the registry (joins, drains, rebalancing)"),
    OPT_NUM(leader_lease_ms, "CAIRN_LEADER_LEASE_MS", 300, 3600000, "15000",
            "Milliseconds a gateway's lease on work one gateway does for all (scrubbing, rebalancing) lasts unrenewed; another takes over after it"),
    OPT_STR(tls_cert, "CAIRN_TLS_CERT", NULL, "path", "",
            "PEM certificate chain: serve HTTPS (S3 API or shard API) instead of HTTP; with tls_key"),
    OPT_STR(tls_key, "CAIRN_TLS_KEY", NULL, "path", "",
            "PEM private key of tls_cert; never logged"),
    OPT_STR(tls_ca, "CAIRN_TLS_CA", NULL, "path", "",
            "CA bundle (PEM) that verifies https:// storage nodes, audit_url and log_ship_url (host names are checked); empty = system CAs"),
    OPT_STR(tls_client_ca, "CAIRN_TLS_CLIENT_CA", NULL, "path", "",
            "Mutual TLS on an HTTPS listener (a node's shard API): only clients with a certificate this CA bundle (PEM) signed are served, others get 403; empty = none asked"),
    OPT_BOOLEAN(sse_c_allow_insecure, "CAIRN_SSE_C_ALLOW_INSECURE", "false",
                "Take SSE-C (customer-provided keys) over plain HTTP, which S3 refuses because the key crosses the wire in the clear: for tests only"),
    OPT_STR(tls_client_cert, "CAIRN_TLS_CLIENT_CERT", NULL, "path", "",
            "PEM certificate chain a gateway (or cairn admin) shows https:// storage nodes that ask for one; with tls_client_key"),
    OPT_STR(tls_client_key, "CAIRN_TLS_CLIENT_KEY", NULL, "path", "",
            "PEM private key of tls_client_cert; never logged"),
    OPT_NUM(job_workers, "CAIRN_JOB_WORKERS", 1, 64, "2",
            "Threads running background jobs from the durable queue"),
    OPT_NUM(job_lease_ms, "CAIRN_JOB_LEASE_MS", 100, 86400000, "60000",
            "Milliseconds a job run holds its lease; a crashed worker's job runs again after it"),
    OPT_NUM(job_backoff_base_ms, "CAIRN_JOB_BACKOFF_BASE_MS", 1, 86400000, "1000",
            "Ceiling of the first retry delay; it doubles per attempt (full jitter below it)"),
    OPT_NUM(job_backoff_max_ms, "CAIRN_JOB_BACKOFF_MAX_MS", 1, 86400000, "3600000",
            "Largest retry delay ceiling"),
    OPT_NUM(job_poll_ms, "CAIRN_JOB_POLL_MS", 10, 3600000, "250",
            "Milliseconds between idle job workers' looks for due jobs; on PostgreSQL an enqueue anywhere also wakes them"),
    OPT_NUM(job_period_s, "CAIRN_JOB_PERIOD_S", 1, 86400, "3600",
            "Seconds between schedulings of periodic jobs (abandoned upload expiry, lifecycle scans)"),
    OPT_NUM(lifecycle_objects_per_second, "CAIRN_LIFECYCLE_OBJECTS_PER_SECOND", 0, 10000000, "1000",
            "Object versions a lifecycle run examines per second at most (docs/lifecycle.md); 0 = no limit"),
    OPT_NUM(lifecycle_day_seconds, "CAIRN_LIFECYCLE_DAY_SECONDS", 1, 86400, "86400",
            "Test knob: seconds in a lifecycle \"day\" (rule Days count these); leave at 86400 outside tests"),
    OPT_NUM(multipart_expiry, "CAIRN_MULTIPART_EXPIRY", 1, 31536000, "604800",
            "Seconds after which an unfinished multipart upload is aborted and its parts removed"),
    OPT_NUM(job_retention_s, "CAIRN_JOB_RETENTION_S", 1, 315360000, "604800",
            "Seconds a completed or cancelled job stays listed before it is deleted"),
    OPT_NUM(job_discarded_retention_s, "CAIRN_JOB_DISCARDED_RETENTION_S", 1, 315360000, "2592000",
            "Seconds a discarded job (a dead letter, with its last error) is kept before it is deleted"),
    OPT_NUM(client_header_timeout, "CAIRN_CLIENT_HEADER_TIMEOUT", 0, 3600, "30",
            "Seconds from a request's first byte (or the accept) to the end of its head; slower connections are cut; 0 = off"),
    OPT_SZ(min_body_rate, "CAIRN_MIN_BODY_RATE", 0, 1 * GIB, "1KiB",
           "Bytes per second a request body must average over each min_body_rate_window, or it is cut; 0 = off (cairn node: only bodies it refused)"),
    OPT_NUM(min_body_rate_window, "CAIRN_MIN_BODY_RATE_WINDOW", 1, 3600, "20",
            "Seconds of client time over which min_body_rate is judged; the first window is the grace"),
    OPT_NUM(connection_limit_per_ip, "CAIRN_CONNECTION_LIMIT_PER_IP", 0, 65536, "256",
            "Most connections from one client address, more are closed at once; 0 = no limit (not applied by cairn node)"),
    OPT_BOOLEAN(sigv2, "CAIRN_SIGV2", "true",
                "Accept AWS Signature Version 2 (HMAC-SHA1; aws cli v1 presigned URLs, s3cmd); false answers InvalidRequest"),
    OPT_BOOLEAN(audit_enabled, "CAIRN_AUDIT_ENABLED", "true",
                "Write one audit event per S3 request to the audit journal (data_dir/audit); a write is answered only once its event is durable"),
    OPT_NUM(audit_sync_ms, "CAIRN_AUDIT_SYNC_MS", 1, 10000, "50",
            "Milliseconds within which the audit event of a read (GET, HEAD) is made durable; writes wait for theirs"),
    OPT_SZ(audit_journal_max_bytes, "CAIRN_AUDIT_JOURNAL_MAX_BYTES", 1 * MIB, INT64_MAX, "1GiB",
           "Unshipped audit journal bytes at most; past it audit_overflow applies"),
    OPT_NUM(audit_journal_max_age, "CAIRN_AUDIT_JOURNAL_MAX_AGE", 0, 315360000, "604800",
            "Seconds the oldest unshipped audit event may wait; past it audit_overflow applies; 0 = no age bound"),
    OPT_SZ(audit_journal_segment_bytes, "CAIRN_AUDIT_JOURNAL_SEGMENT_BYTES", 64 * KIB, 1 * GIB, "64MiB",
           "Size at which an audit journal segment file is closed and the next begun"),
    OPT_CHOICE(audit_overflow, "CAIRN_AUDIT_OVERFLOW", "reject|spool", "reject",
               "When the audit journal is full: reject (new requests get 503 SlowDown) or spool (events go to data_dir/audit/spool-*.log)"),
    OPT_NUM(audit_retention_days, "CAIRN_AUDIT_RETENTION_DAYS", 0, 36500, "90",
            "Days the audit store keeps events; older ones are deleted by a periodic job; 0 = keep forever"),
    OPT_SZ(audit_max_batch_bytes, "CAIRN_AUDIT_MAX_BATCH_BYTES", 64 * 1024, 1 * GIB, "16MiB",
           "Largest body POST /audit/v1/events accepts (413 above it); bounds the memory of a batch"),
    OPT_STR(audit_url, "CAIRN_AUDIT_URL", check_http_url, "http(s)://HOST:PORT", "",
            "Audit store the shipper sends the journal to (POST URL/audit/v1/events); empty = embedded, into this server's audit database (audit_metadata_url)"),
    OPT_STR(audit_metadata_url, "CAIRN_AUDIT_METADATA_URL", check_metadata_url,
            "sqlite:///ABS/PATH | postgres://USER:PASS@HOST:PORT/DB", "",
            "Database of the audit store's events (embedded store, audit-server); empty = data_dir/audit.db with SQLite metadata, the metadata database itself with PostgreSQL"),
    OPT_NUM(audit_batch_size, "CAIRN_AUDIT_BATCH_SIZE", 1, 10000, "500",
            "Audit events the shipper sends in one batch at most; a full batch is sent at once"),
    OPT_NUM(audit_flush_interval, "CAIRN_AUDIT_FLUSH_INTERVAL", 1, 3600000, "1000",
            "Milliseconds an audit event waits at most for its batch to fill before the shipper sends it"),
    OPT_NUM(audit_timeout_ms, "CAIRN_AUDIT_TIMEOUT_MS", 100, 600000, "5000",
            "Connect and total timeout of one POST of the audit shipper (audit_url)"),
    OPT_NUM(audit_max_retries, "CAIRN_AUDIT_MAX_RETRIES", 0, 100, "5",
            "Retries of a batch the store could not take (5xx, timeout, no connection, database busy) before it goes to the dead-letter queue"),
    OPT_STR(audit_access_key, "CAIRN_AUDIT_ACCESS_KEY", NULL, "access key id", "",
            "Access key the shipper signs its POSTs to audit_url with (root or a user with the audit right); empty = root_user"),
    OPT_STR(audit_secret_key, "CAIRN_AUDIT_SECRET_KEY", NULL, "secret", "",
            "Secret key of audit_access_key; never logged; empty = root_password"),
    OPT_STR(audit_dlq_stream, "CAIRN_AUDIT_DLQ_STREAM", NULL, "Redis stream key", "cairn:audit:dlq",
            "Redis stream of the audit dead-letter queue (with redis_url); empty = the local spool only"),
    OPT_BOOLEAN(metrics_enabled, "CAIRN_METRICS_ENABLED", "true",
                "Collect metrics and serve them on /metrics; false answers /metrics 404 and collects nothing"),
    OPT_BOOLEAN(events_enabled, "CAIRN_EVENTS_ENABLED", "true",
                "Publish object and cluster events and serve the live stream GET /events/ws"),
    OPT_STR(events_allowed_origins, "CAIRN_EVENTS_ALLOWED_ORIGINS", check_origins, "ORIGIN,ORIGIN,...", "",
            "Origins (scheme://host[:port]) whose browsers may open /events/ws; others get 403; empty = any (a warning at start, cairn_events_insecure_origins 1)"),
    OPT_NUM(events_max_sockets, "CAIRN_EVENTS_MAX_SOCKETS", 1, 1000000, "10000",
            "Most event stream sockets open at once; more get 503 SlowDown before the upgrade"),
    OPT_SZ(events_send_queue_bytes, "CAIRN_EVENTS_SEND_QUEUE_BYTES", 4 * KIB, 1 * GIB, "1MiB",
           "Bytes waiting to be sent to one event stream socket at most; past it the client is a slow consumer and is closed (1008)"),
    OPT_DUR(events_ping_interval, "CAIRN_EVENTS_PING_INTERVAL", 10, 86400000, "30s",
            "Time between the server's pings on each event stream socket (a number alone is seconds; ms, s, m, h)"),
    OPT_DUR(events_pong_timeout, "CAIRN_EVENTS_PONG_TIMEOUT", 10, 86400000, "60s",
            "A socket whose ping has no pong within this long is closed (1011)"),
    OPT_DUR(events_redis_timeout, "CAIRN_EVENTS_REDIS_TIMEOUT", 1, 600000, "2s",
            "Longest a Redis call of the event bus may take (connect, publish, subscribe, the liveness ping)"),
    OPT_DUR(events_retry_max, "CAIRN_EVENTS_RETRY_MAX", 10, 3600000, "30s",
            "Cap of the delay between reconnects of a lost Redis subscription (exponential from 100ms, full jitter)"),
    OPT_NUM(events_retry_attempts, "CAIRN_EVENTS_RETRY_ATTEMPTS", 1, 1000000, "10",
            "Reconnects of a lost Redis subscription before the stream's sockets get a hangup (retrying goes on at the cap)"),
    OPT_NUM(notify_max_pending, "CAIRN_NOTIFY_MAX_PENDING", 0, INT32_MAX, "100000",
            "Bucket notifications waiting for one webhook target past which it is reported (log, cairn_notify_over_limit); they keep queueing, none is dropped; 0 = never reported"),
    OPT_NUM(notify_timeout_ms, "CAIRN_NOTIFY_TIMEOUT_MS", 100, 600000, "5000",
            "Milliseconds one webhook delivery (POST) may take, connect included; longer is a failed attempt"),
    OPT_NUM(ratelimit_key_ops_per_s, "CAIRN_RATELIMIT_KEY_OPS_PER_S", 0, INT32_MAX, "0",
            "S3 requests per second one access key may make (a burst of ratelimit_burst_s seconds' worth); more get 503 SlowDown with Retry-After; 0 = no limit"),
    OPT_SZ(ratelimit_key_bytes_per_s, "CAIRN_RATELIMIT_KEY_BYTES_PER_S", 0, INT64_MAX, "0",
           "Object body bytes per second (in and out) one access key may move; flows past it are slowed, new requests get 503 SlowDown; 0 = no limit"),
    OPT_NUM(ratelimit_ip_ops_per_s, "CAIRN_RATELIMIT_IP_OPS_PER_S", 0, INT32_MAX, "0",
            "S3 requests per second one client address may make; 0 = no limit"),
    OPT_SZ(ratelimit_ip_bytes_per_s, "CAIRN_RATELIMIT_IP_BYTES_PER_S", 0, INT64_MAX, "0",
           "Object body bytes per second one client address may move; 0 = no limit"),
    OPT_NUM(ratelimit_bucket_ops_per_s, "CAIRN_RATELIMIT_BUCKET_OPS_PER_S", 0, INT32_MAX, "0",
            "S3 requests per second on one bucket; 0 = no limit"),
    OPT_SZ(ratelimit_bucket_bytes_per_s, "CAIRN_RATELIMIT_BUCKET_BYTES_PER_S", 0, INT64_MAX, "0",
           "Object body bytes per second in and out of one bucket; 0 = no limit"),
    OPT_NUM(ratelimit_burst_s, "CAIRN_RATELIMIT_BURST_S", 1, 3600, "1",
            "Seconds of its rate each rate limit lets through at once after a quiet spell"),
    OPT_NUM(ratelimit_max_entries, "CAIRN_RATELIMIT_MAX_ENTRIES", 48, 100000000, "100000",
            "Keys, addresses and buckets the rate limiter remembers at most (its memory); idle ones are forgotten first"),
    OPT_STR(ratelimit_trusted_proxies, "CAIRN_RATELIMIT_TRUSTED_PROXIES", check_proxies, "ADDR|CIDR,...", "",
            "Proxies whose X-Forwarded-For names the client address the IP limits count (the nearest untrusted hop); empty = the peer address always"),
    OPT_NUM(max_requests_in_flight, "CAIRN_MAX_REQUESTS_IN_FLIGHT", 0, INT32_MAX, "0",
            "S3 requests served at once at most; more get 503 SlowDown with Retry-After (health checks and metrics exempt); 0 = no cap"),
};

#define NOPTIONS (sizeof options / sizeof options[0])

/* CAIRN_* variables that are not options but are used by tools and tests;
 * a trailing '*' matches a prefix. */
static const char *const env_allowlist[] = {
    "CAIRN_BIN", "CAIRN_CONFIG", "CAIRN_TEST_*", "CAIRN_BENCH_*",
};

/* ---- error collection ---------------------------------------------------- */

/* Copies s into dst (size n), keeping printable ASCII only, so a hostile key
 * or value cannot put escape sequences on an operator's terminal. */
static void copy_printable(char *dst, size_t n, const char *s, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[j] = '\0';
}

static void err_addn(config_errors *errs, const char *key, size_t keylen,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void err_addn(config_errors *errs, const char *key, size_t keylen,
                     const char *fmt, ...)
{
    /* errs is never NULL: every public entry point passes it through
     * scope_begin, which substitutes its scratch list for a NULL one. */
    errs->total++;
    if (errs->count >= (int)(sizeof errs->items / sizeof errs->items[0]))
        return;
    config_error *e = &errs->items[errs->count++];
    char reason[sizeof e->reason];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    copy_printable(e->key, sizeof e->key, key, keylen);
    copy_printable(e->reason, sizeof e->reason, reason, strlen(reason));
}

#define err_add(errs, key, ...) err_addn(errs, key, strlen(key), __VA_ARGS__)

/* Loaders report "did this call add errors"; with errs == NULL they count
 * into a scratch list so the return value is still right. */
typedef struct {
    config_errors *errs;
    config_errors scratch;
    int before;
} err_scope;

static config_errors *scope_begin(err_scope *s, config_errors *errs)
{
    if (!errs) {
        memset(&s->scratch, 0, sizeof s->scratch);
        errs = &s->scratch;
    }
    s->errs = errs;
    s->before = errs->total;
    return errs;
}

static int scope_end(const err_scope *s)
{
    return s->errs->total > s->before ? CAIRN_EINVAL : 0;
}

/* ---- value parsers -------------------------------------------------------- */

static void fmt_size(int64_t v, char *out, size_t n)
{
    static const struct { const char *unit; int64_t mult; } units[] = {
        {"TiB", TIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB},
    };
    for (size_t i = 0; v != 0 && i < sizeof units / sizeof units[0]; i++) {
        if (v % units[i].mult == 0) {
            snprintf(out, n, "%lld%s", (long long)(v / units[i].mult), units[i].unit);
            return;
        }
    }
    snprintf(out, n, "%lld", (long long)v);
}

/* Parses a non-negative decimal prefix; returns chars consumed, or -1 when
 * the number exceeds INT64_MAX. */
static long parse_digits(const char *s, int64_t *out)
{
    int64_t n = 0;
    long i = 0;
    for (; isdigit((unsigned char)s[i]); i++) {
        int d = s[i] - '0';
        if (n > (INT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return i;
}

static const struct { const char *name; int64_t mult; } size_units[] = {
    {"", 1},     {"k", KIB},   {"K", KIB},   {"KiB", KIB}, {"M", MIB}, {"MiB", MIB},
    {"G", GIB},  {"GiB", GIB}, {"T", TIB},   {"TiB", TIB},
};

static int size_parse(const char *s, int64_t *out, char *reason, size_t rn)
{
    if (!*s) {
        snprintf(reason, rn, "empty value; expected a size such as 64MiB");
        return CAIRN_EINVAL;
    }
    if (*s == '-') {
        snprintf(reason, rn, "must not be negative");
        return CAIRN_EINVAL;
    }
    if (!isdigit((unsigned char)*s)) {
        snprintf(reason, rn, "not a size; expected digits and an optional unit (k, KiB, M, MiB, G, GiB, T, TiB)");
        return CAIRN_EINVAL;
    }
    int64_t n;
    long used = parse_digits(s, &n);
    if (used < 0) {
        snprintf(reason, rn, "too large");
        return CAIRN_EINVAL;
    }
    const char *unit = s + used;
    if (*unit == ' ' && unit[strspn(unit, " ")] != '\0')
        unit += strspn(unit, " ");       /* "5 GiB" reads like "5GiB" */
    for (size_t i = 0; i < sizeof size_units / sizeof size_units[0]; i++) {
        if (strcmp(unit, size_units[i].name) != 0)
            continue;
        if (n > INT64_MAX / size_units[i].mult) {
            snprintf(reason, rn, "too large");
            return CAIRN_EINVAL;
        }
        *out = n * size_units[i].mult;
        return 0;
    }
    snprintf(reason, rn, "unknown unit \"%.16s\"; expected k, KiB, M, MiB, G, GiB, T or TiB", unit);
    return CAIRN_EINVAL;
}

static const struct { const char *name; int64_t mult; } duration_units[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
};

/* A duration in milliseconds: digits and a unit (ms, s, m, h); digits
 * alone are seconds. */
static int duration_parse(const char *s, int64_t *out, char *reason, size_t rn)
{
    if (!isdigit((unsigned char)*s)) {
        snprintf(reason, rn, "not a duration; expected digits and an optional unit (ms, s, m, h), e.g. 30s");
        return CAIRN_EINVAL;
    }
    int64_t n;
    long used = parse_digits(s, &n);
    if (used < 0) {
        snprintf(reason, rn, "too large");
        return CAIRN_EINVAL;
    }
    for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++) {
        if (strcmp(s + used, duration_units[i].name) != 0)
            continue;
        if (n > INT64_MAX / duration_units[i].mult) {
            snprintf(reason, rn, "too large");
            return CAIRN_EINVAL;
        }
        *out = n * duration_units[i].mult;
        return 0;
    }
    snprintf(reason, rn, "unknown unit \"%.16s\"; expected ms, s, m or h", s + used);
    return CAIRN_EINVAL;
}

static void fmt_duration(int64_t ms, char *out, size_t n)
{
    if (ms % 3600000 == 0 && ms) snprintf(out, n, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0 && ms) snprintf(out, n, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0) snprintf(out, n, "%llds", (long long)(ms / 1000));
    else snprintf(out, n, "%lldms", (long long)ms);
}

int config_parse_size(const char *s, int64_t *out)
{
    char reason[128];
    int64_t v;
    if (!s || !out || size_parse(s, &v, reason, sizeof reason) != 0)
        return CAIRN_EINVAL;
    *out = v;
    return 0;
}

static int int_parse(const char *s, int64_t *out, char *reason, size_t rn)
{
    const char *p = s + (*s == '-');
    if (!*s) {
        snprintf(reason, rn, "empty value; expected an integer");
        return CAIRN_EINVAL;
    }
    if (!isdigit((unsigned char)*p)) {
        snprintf(reason, rn, "not an integer");
        return CAIRN_EINVAL;
    }
    int64_t n;
    long used = parse_digits(p, &n);
    if (used < 0) {
        snprintf(reason, rn, "out of range");
        return CAIRN_EINVAL;
    }
    if (p[used] != '\0') {
        snprintf(reason, rn, "not an integer (trailing \"%.16s\")", p + used);
        return CAIRN_EINVAL;
    }
    *out = (*s == '-') ? -n : n;
    return 0;
}

static int bool_parse(const char *s, bool *out, char *reason, size_t rn)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    snprintf(reason, rn, "not a boolean; expected true, false, yes, no, on, off, 1 or 0");
    return CAIRN_EINVAL;
}

/* Finds s among the '|'-separated choices, case-insensitively; copies the
 * canonical spelling into canon (size n). */
static bool enum_match(const char *choices, const char *s, char *canon, size_t n)
{
    size_t slen = strlen(s);
    for (const char *p = choices; *p;) {
        size_t len = strcspn(p, "|");
        if (len == slen && strncasecmp(p, s, len) == 0) {
            snprintf(canon, n, "%.*s", (int)len, p);
            return true;
        }
        p += len + (p[len] == '|');
    }
    return false;
}

/* Writes "a, b or c" for the '|'-separated choices. */
static void choices_text(const char *choices, char *out, size_t n)
{
    size_t used = 0, count = 0, total = 1;
    for (const char *p = choices; *p; p++)
        total += *p == '|';
    out[0] = '\0';
    for (const char *p = choices; *p && used < n;) {
        size_t len = strcspn(p, "|");
        const char *sep = count == 0 ? "" : count + 1 == total ? " or " : ", ";
        int w = snprintf(out + used, n - used, "%s%.*s", sep, (int)len, p);
        used += w > 0 ? (size_t)w : 0;
        count++;
        p += len + (p[len] == '|');
    }
}

/* ---- string checks -------------------------------------------------------- */

static bool is_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-') {
            if (ch == '-' && label == 0)
                return false;
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

static bool check_port(const char *port, char *reason, size_t rn)
{
    size_t n = strlen(port);
    if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atoi(port) < 1 || atoi(port) > 65535) {
        snprintf(reason, rn, "port must be a number from 1 to 65535");
        return false;
    }
    return true;
}

static bool check_listen_host(const char *host, size_t len, char *reason, size_t rn)
{
    char buf[128];
    struct in_addr a4;
    if (len == 0) {
        snprintf(reason, rn, "host is empty; use 0.0.0.0 or [::] to listen on every address");
        return false;
    }
    if (len >= sizeof buf || !is_hostname(host, len)) {
        snprintf(reason, rn, "\"%.*s\" is not a hostname or IP address", (int)(len > 64 ? 64 : len), host);
        return false;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    /* All digits and dots: must then be a real dotted quad, not "999.1". */
    if (strspn(buf, "0123456789.") == len && inet_pton(AF_INET, buf, &a4) != 1) {
        snprintf(reason, rn, "\"%s\" is not a valid IPv4 address", buf);
        return false;
    }
    return true;
}

static bool check_listen(const char *v, char *reason, size_t rn)
{
    if (*v == '[') {
        const char *close = strchr(v, ']');
        char addr[64];
        struct in6_addr a6;
        if (!close) {
            snprintf(reason, rn, "missing ']' after IPv6 address");
            return false;
        }
        size_t len = (size_t)(close - v - 1);
        if (len >= sizeof addr) {
            snprintf(reason, rn, "IPv6 address too long");
            return false;
        }
        memcpy(addr, v + 1, len);
        addr[len] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1) {
            snprintf(reason, rn, "\"%s\" is not a valid IPv6 address", addr);
            return false;
        }
        if (close[1] != ':') {
            snprintf(reason, rn, "expected [IPV6]:PORT, e.g. [::1]:9000");
            return false;
        }
        return check_port(close + 2, reason, rn);
    }
    const char *colon = strrchr(v, ':');
    if (!colon) {
        snprintf(reason, rn, "expected HOST:PORT, e.g. 127.0.0.1:9000");
        return false;
    }
    if (memchr(v, ':', (size_t)(colon - v))) {
        snprintf(reason, rn, "IPv6 addresses must be in brackets, e.g. [::1]:9000");
        return false;
    }
    return check_listen_host(v, (size_t)(colon - v), reason, rn) && check_port(colon + 1, reason, rn);
}

static bool check_nonempty(const char *v, char *reason, size_t rn)
{
    if (*v)
        return true;
    snprintf(reason, rn, "must not be empty");
    return false;
}

static bool check_region(const char *v, char *reason, size_t rn)
{
    if (*v && strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(v))
        return true;
    snprintf(reason, rn, "must be non-empty and use only a-z, 0-9 and '-'");
    return false;
}

static bool check_domain(const char *v, char *reason, size_t rn)
{
    if (!*v || is_hostname(v, strlen(v)))
        return true;
    snprintf(reason, rn, "must be a hostname such as s3.example.com, or empty");
    return false;
}

/* Printable ASCII without spaces: credentials travel in headers and URLs. */
static bool check_credential(const char *v, size_t min, const char *what, char *reason, size_t rn)
{
    size_t n = strlen(v);
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        if (v[i] <= 0x20 || v[i] >= 0x7f) {
            snprintf(reason, rn, "%s may contain only printable ASCII without spaces", what);
            return false;
        }
    }
    if (n < min) {
        snprintf(reason, rn, "%s must be at least %zu characters", what, min);
        return false;
    }
    return true;
}

static bool check_user(const char *v, char *reason, size_t rn)
{
    return check_credential(v, 3, "root user", reason, rn);
}

static bool check_password(const char *v, char *reason, size_t rn)
{
    return check_credential(v, 8, "root password", reason, rn);
}

static bool check_master_key(const char *v, char *reason, size_t rn)
{
    size_t n = strlen(v);
    if (n == 0 || (n == 64 && strspn(v, "0123456789abcdefABCDEF") == 64))
        return true;
    snprintf(reason, rn, "must be exactly 64 hex digits (32 bytes), or empty");
    return false;
}

/* ---- applying one value ---------------------------------------------------- */

static const option *find_by_key(const char *key, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].key) == len && memcmp(options[i].key, key, len) == 0)
            return &options[i];
    return NULL;
}

static const option *find_by_env(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].env) == len && memcmp(options[i].env, name, len) == 0)
            return &options[i];
    return NULL;
}

static void range_text(const option *o, char *out, size_t n)
{
    char lo[32], hi[32];
    if (o->type == OPT_SIZE) {
        fmt_size(o->min, lo, sizeof lo);
        fmt_size(o->max, hi, sizeof hi);
    } else if (o->type == OPT_DURATION) {
        fmt_duration(o->min, lo, sizeof lo);
        fmt_duration(o->max, hi, sizeof hi);
    } else {
        snprintf(lo, sizeof lo, "%lld", (long long)o->min);
        snprintf(hi, sizeof hi, "%lld", (long long)o->max);
    }
    if (o->max == INT64_MAX)
        snprintf(out, n, "at least %s", lo);
    else
        snprintf(out, n, "from %s to %s", lo, hi);
}

static bool in_range(const option *o, int64_t v, char *reason, size_t rn)
{
    if (v >= o->min && v <= o->max)
        return true;
    char range[80];
    range_text(o, range, sizeof range);
    snprintf(reason, rn, "must be %s", range);
    return false;
}

/* Validates v (len bytes, may contain NULs) for option o and stores it in c.
 * Returns 0, or CAIRN_EINVAL with a reason and c untouched. */
static int option_apply(config_t *c, const option *o, const char *v, size_t len,
                        char *reason, size_t rn)
{
    char *field = (char *)c + o->offset;
    char text[1100], canon[96];
    if (memchr(v, '\0', len)) {
        snprintf(reason, rn, "contains a NUL byte");
        return CAIRN_EINVAL;
    }
    size_t limit = o->cap ? o->cap - 1 : 64;
    if (len > limit || len >= sizeof text) {
        snprintf(reason, rn, "too long (%zu bytes; at most %zu)", len, limit);
        return CAIRN_EINVAL;
    }
    memcpy(text, v, len);
    text[len] = '\0';

    int64_t n;
    bool b;
    switch (o->type) {
    case OPT_STRING:
        if (o->check && !o->check(text, reason, rn))
            return CAIRN_EINVAL;
        memcpy(field, text, len + 1);
        return 0;
    case OPT_ENUM:
        if (!enum_match(o->choices, text, field, o->cap)) {
            choices_text(o->choices, canon, sizeof canon);
            snprintf(reason, rn, "must be %s", canon);
            return CAIRN_EINVAL;
        }
        return 0;
    case OPT_SIZE:
        if (size_parse(text, &n, reason, rn) != 0 || !in_range(o, n, reason, rn))
            return CAIRN_EINVAL;
        *(int64_t *)(void *)field = n;
        return 0;
    case OPT_INT:
        if (int_parse(text, &n, reason, rn) != 0 || !in_range(o, n, reason, rn))
            return CAIRN_EINVAL;
        *(int *)(void *)field = (int)n;
        return 0;
    case OPT_DURATION:
        if (duration_parse(text, &n, reason, rn) != 0 || !in_range(o, n, reason, rn))
            return CAIRN_EINVAL;
        *(int64_t *)(void *)field = n;
        return 0;
    case OPT_BOOL:
        if (bool_parse(text, &b, reason, rn) != 0)
            return CAIRN_EINVAL;
        *(bool *)(void *)field = b;
        return 0;
    }
    return CAIRN_EINVAL;
}

/* Checks the value already in c for option o (used by config_validate, so a
 * config_t filled by hand is held to the same rules). */
static bool option_check_current(const config_t *c, const option *o, char *reason, size_t rn)
{
    const char *field = (const char *)c + o->offset;
    char canon[96];
    switch (o->type) {
    case OPT_STRING:
        if (!memchr(field, '\0', o->cap)) {
            snprintf(reason, rn, "not NUL-terminated");
            return false;
        }
        return !o->check || o->check(field, reason, rn);
    case OPT_ENUM:
        if (memchr(field, '\0', o->cap) && enum_match(o->choices, field, canon, sizeof canon))
            return true;
        choices_text(o->choices, canon, sizeof canon);
        snprintf(reason, rn, "must be %s", canon);
        return false;
    case OPT_SIZE:
    case OPT_DURATION:
        return in_range(o, *(const int64_t *)(const void *)field, reason, rn);
    case OPT_INT:
        return in_range(o, *(const int *)(const void *)field, reason, rn);
    case OPT_BOOL:
        return true;
    }
    return false;
}

/* ---- public: defaults, set, validate ------------------------------------- */

void config_defaults(config_t *c)
{
    char reason[192];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTIONS; i++) {
        int rc = option_apply(c, &options[i], options[i].def, strlen(options[i].def),
                              reason, sizeof reason);
        assert(rc == 0 && "a default in the option table does not validate");
        (void)rc;
    }
}

/* Edit distance between two short strings, capped: enough to turn a typo
 * like "regoin" into a suggestion. */
static size_t edit_distance(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t row[64];
    if (alen >= 64 || blen >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= blen; j++)
        row[j] = j;
    for (size_t i = 1; i <= alen; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[blen];
}

/* The option an unknown key was probably meant to be: the same key in
 * another case or with '-' for '_', or one within two typos. */
static const option *find_similar(const char *key, size_t len)
{
    char norm[64];
    if (len >= sizeof norm)
        return NULL;
    for (size_t i = 0; i < len; i++)
        norm[i] = key[i] == '-' ? '_' : (char)tolower((unsigned char)key[i]);
    const option *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NOPTIONS; i++) {
        size_t d = edit_distance(norm, len, options[i].key, strlen(options[i].key));
        if (d < best_d) {
            best_d = d;
            best = &options[i];
        }
    }
    return best;
}

static void err_unknown_key(config_errors *errs, const char *key, size_t len, const char *prefix)
{
    const option *like = find_similar(key, len);
    if (like)
        err_addn(errs, key, len, "%sunknown key; did you mean %s?", prefix, like->key);
    else
        err_addn(errs, key, len, "%sunknown key (`cairn config describe` lists them)", prefix);
}

int config_set(config_t *c, const char *key, const char *value, config_errors *errs)
{
    err_scope scope;
    errs = scope_begin(&scope, errs);
    const option *o = find_by_key(key, strlen(key));
    char reason[192];
    if (!o)
        err_unknown_key(errs, key, strlen(key), "");
    else if (option_apply(c, o, value, strlen(value), reason, sizeof reason) != 0)
        err_add(errs, key, "%s", reason);
    return scope_end(&scope);
}

int config_validate(const config_t *c, config_errors *errs)
{
    err_scope scope;
    errs = scope_begin(&scope, errs);
    char reason[192];
    for (size_t i = 0; i < NOPTIONS; i++)
        if (!option_check_current(c, &options[i], reason, sizeof reason))
            err_add(errs, options[i].key, "%s", reason);
    /* Credentials come as a pair: one without the other is a half-configured
     * root account, which is never what the operator meant. */
    if (c->master_key[0] && c->master_key_file[0])
        err_add(errs, "master_key_file", "set master_key or master_key_file, not both");
    if (c->root_user[0] && !c->root_password[0])
        err_add(errs, "root_password", "must be set when root_user is set");
    if (!c->root_user[0] && c->root_password[0])
        err_add(errs, "root_user", "must be set when root_password is set");
    if (!c->audit_access_key[0] != !c->audit_secret_key[0])
        err_add(errs, c->audit_access_key[0] ? "audit_secret_key" : "audit_access_key",
                "audit_access_key and audit_secret_key go together");
    if (!c->tls_cert[0] != !c->tls_key[0])
        err_add(errs, c->tls_cert[0] ? "tls_key" : "tls_cert", "tls_cert and tls_key go together");
    if (!c->tls_client_cert[0] != !c->tls_client_key[0])
        err_add(errs, c->tls_client_cert[0] ? "tls_client_key" : "tls_client_cert",
                "tls_client_cert and tls_client_key go together");
    if (c->tls_client_ca[0] && !c->tls_cert[0])
        err_add(errs, "tls_client_ca", "client certificates are asked for over HTTPS only: set tls_cert and tls_key");
    if (c->db_pool_min > c->db_pool_max)
        err_add(errs, "db_pool_min", "must be at most db_pool_max (%d)", c->db_pool_max);
    /* Erasure-coding geometry must fit the drives it spreads over. */
    if (c->ec_data == 0 && c->ec_parity != 0)
        err_add(errs, "ec_parity", "set ec_data too (ec_data 0 means the default layout)");
    if (c->ec_data + c->ec_parity > 16)
        err_add(errs, "ec_data", "ec_data + ec_parity must be at most 16");
    if (c->ec_data > 0) {
        int ndrives = 1;
        if (c->drives[0])
            for (const char *p = c->drives; *p; p++)
                ndrives += *p == ',';
        if (c->ec_data + c->ec_parity > ndrives)
            err_add(errs, "ec_data", "ec_data + ec_parity (%d) exceeds the number of drives (%d)",
                    c->ec_data + c->ec_parity, ndrives);
    }
    return scope_end(&scope);
}

/* ---- YAML ------------------------------------------------------------------ */

typedef struct {
    yaml_parser_t parser;
    const char *text;           /* the input, to place reader errors */
    size_t len;
    config_t *c;
    config_errors *errs;
    int seen_line[NOPTIONS];    /* line where each option was set, 0 = not yet */
} yaml_walk;

#define YAML_DOC_KEY "<yaml>"
#define YAML_MAX_DEPTH 64

/* Pulls the next event; on a syntax error reports it and returns -1. */
static int yaml_next(yaml_walk *w, yaml_event_t *ev)
{
    if (yaml_parser_parse(&w->parser, ev))
        return 0;
    const yaml_parser_t *p = &w->parser;
    const char *problem = p->problem ? p->problem : "syntax error";
    size_t line = p->problem_mark.line + 1, column = p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) {
        /* The reader (bad UTF-8, control characters) only knows a byte
         * offset; count lines up to it so every syntax error reads alike. */
        line = 1, column = 1;
        for (size_t i = 0; i < p->problem_offset && i < w->len; i++, column++)
            if (w->text[i] == '\n')
                line++, column = 0;
    }
    if (p->context)
        err_add(w->errs, YAML_DOC_KEY, "line %zu, column %zu: %s %s", line, column, problem, p->context);
    else
        err_add(w->errs, YAML_DOC_KEY, "line %zu, column %zu: %s", line, column, problem);
    return -1;
}

static size_t ev_line(const yaml_event_t *ev)
{
    return ev->start_mark.line + 1;
}

/* Events that may appear where a node is expected.  libyaml hands out
 * YAML_NO_EVENT forever after the stream ends, so every loop here stops on
 * anything else rather than trusting the walk to be in step. */
static bool is_node_event(yaml_event_type_t t)
{
    return t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT ||
           t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT;
}

/* Consumes the rest of a node whose first event is ev (already pulled). */
static int yaml_skip_node(yaml_walk *w, const yaml_event_t *first)
{
    if (first->type != YAML_MAPPING_START_EVENT && first->type != YAML_SEQUENCE_START_EVENT)
        return 0;
    for (long depth = 1; depth > 0;) {
        yaml_event_t ev;
        if (yaml_next(w, &ev) != 0)
            return -1;
        yaml_event_type_t type = ev.type;
        yaml_event_delete(&ev);
        if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) {
            /* libyaml's scanner slows down quadratically with nesting depth,
             * and a flat config never nests: stop early on deep input. */
            if (++depth > YAML_MAX_DEPTH) {
                err_add(w->errs, YAML_DOC_KEY, "line %zu: nested more than %d levels deep",
                        first->start_mark.line + 1, YAML_MAX_DEPTH);
                return -1;
            }
        } else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT)
            depth--;
        else if (!is_node_event(type))
            return -1;     /* cannot happen inside a node; never spin on it */
    }
    return 0;
}

/* YAML's null spellings mean "empty" for our purposes: `domain:` and
 * `domain: ~` both switch virtual hosts off. */
static bool scalar_is_null(const yaml_event_t *ev)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (ev->data.scalar.length == strlen(nulls[i]) &&
            memcmp(ev->data.scalar.value, nulls[i], ev->data.scalar.length) == 0)
            return true;
    return false;
}

static const char *node_kind(yaml_event_type_t t)
{
    switch (t) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_ALIAS_EVENT: return "an alias";
    default: return "not a scalar";
    }
}

/* Applies one `key: value` pair; key is the scalar event, val the value's
 * first event (its remaining events, if any, are consumed here). */
static int yaml_pair(yaml_walk *w, const yaml_event_t *key, const yaml_event_t *val)
{
    const char *k = (const char *)key->data.scalar.value;
    size_t klen = key->data.scalar.length;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "line %zu: ", ev_line(key));

    const option *o = find_by_key(k, klen);
    if (!o) {
        err_unknown_key(w->errs, k, klen, prefix);
        return yaml_skip_node(w, val);
    }
    if (val->type != YAML_SCALAR_EVENT) {
        err_addn(w->errs, k, klen, "%svalue must be a single value, not %s%s", prefix,
                 node_kind(val->type),
                 val->type == YAML_ALIAS_EVENT ? "" : " (quote values that start with [ or {)");
        return yaml_skip_node(w, val);
    }
    int *seen = &w->seen_line[o - options];
    if (*seen) {
        err_addn(w->errs, k, klen, "%sduplicate key (first set on line %d)", prefix, *seen);
        return 0;
    }
    *seen = (int)ev_line(key);
    bool null = scalar_is_null(val);
    const char *v = null ? "" : (const char *)val->data.scalar.value;
    size_t vlen = null ? 0 : val->data.scalar.length;
    char reason[160];
    if (option_apply(w->c, o, v, vlen, reason, sizeof reason) != 0)
        err_addn(w->errs, k, klen, "%s%s", prefix, reason);
    return 0;
}

/* A scalar key: pull its value and apply the pair. */
static int yaml_scalar_key(yaml_walk *w, const yaml_event_t *key)
{
    yaml_event_t val;
    if (yaml_next(w, &val) != 0)
        return -1;
    if (!is_node_event(val.type)) {
        yaml_event_delete(&val);
        return -1;
    }
    int rc = yaml_pair(w, key, &val);
    yaml_event_delete(&val);
    return rc;
}

/* A mapping, list or alias used as a key: report it, then consume the key
 * node and the value node that follows it. */
static int yaml_bad_key(yaml_walk *w, const yaml_event_t *key)
{
    err_add(w->errs, YAML_DOC_KEY, "line %zu: keys must be plain words, not %s",
            ev_line(key), node_kind(key->type));
    yaml_event_t val;
    if (yaml_skip_node(w, key) != 0 || yaml_next(w, &val) != 0)
        return -1;
    int rc = is_node_event(val.type) ? yaml_skip_node(w, &val) : -1;
    yaml_event_delete(&val);
    return rc;
}

/* Walks the pairs of the top-level mapping up to its end event. */
static int yaml_mapping(yaml_walk *w)
{
    for (;;) {
        yaml_event_t key;
        if (yaml_next(w, &key) != 0)
            return -1;
        if (!is_node_event(key.type)) {
            yaml_event_type_t type = key.type;
            yaml_event_delete(&key);
            return type == YAML_MAPPING_END_EVENT ? 0 : -1;
        }
        int rc = key.type == YAML_SCALAR_EVENT ? yaml_scalar_key(w, &key) : yaml_bad_key(w, &key);
        yaml_event_delete(&key);
        if (rc != 0)
            return rc;
    }
}

/* Handles the root node of the (single) document. */
static int yaml_root(yaml_walk *w, const yaml_event_t *root)
{
    switch (root->type) {
    case YAML_MAPPING_START_EVENT:
        return yaml_mapping(w);
    case YAML_SCALAR_EVENT:
        if (scalar_is_null(root))
            return 0;          /* an empty document sets nothing */
        break;
    default:
        break;
    }
    err_add(w->errs, YAML_DOC_KEY, "line %zu: the file must be a mapping of key: value lines, not %s",
            ev_line(root), root->type == YAML_SCALAR_EVENT ? "a single value" : node_kind(root->type));
    return yaml_skip_node(w, root);
}

/* Walks the whole stream: STREAM-START, at most one document, STREAM-END. */
static void yaml_stream(yaml_walk *w)
{
    int docs = 0;
    for (;;) {
        yaml_event_t ev;
        if (yaml_next(w, &ev) != 0)
            return;
        yaml_event_type_t type = ev.type;
        size_t line = ev_line(&ev);
        int rc = 0;
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            err_add(w->errs, YAML_DOC_KEY, "line %zu: only one YAML document is allowed", line);
            yaml_event_delete(&ev);
            return;
        }
        if (type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_t root;
            if ((rc = yaml_next(w, &root)) == 0) {
                rc = yaml_root(w, &root);
                yaml_event_delete(&root);
            }
        }
        yaml_event_delete(&ev);
        if (rc != 0 || type == YAML_STREAM_END_EVENT || type == YAML_NO_EVENT)
            return;
    }
}

int config_load_yaml(config_t *c, const char *text, size_t len, config_errors *errs)
{
    err_scope scope;
    yaml_walk *w = calloc(1, sizeof *w);
    if (!w)
        return CAIRN_ENOMEM;
    w->c = c;
    w->text = text;
    w->len = len;
    w->errs = scope_begin(&scope, errs);
    if (!yaml_parser_initialize(&w->parser)) {
        free(w);
        return CAIRN_ENOMEM;
    }
    yaml_parser_set_input_string(&w->parser, (const unsigned char *)text, len);
    yaml_stream(w);
    yaml_parser_delete(&w->parser);
    free(w);
    return scope_end(&scope);
}

#define CONFIG_FILE_MAX (1024 * 1024)

/* Reads a whole small file; returns a malloc'd buffer (caller frees) or
 * NULL with a reason. */
static char *read_small_file(const char *path, size_t *len, char *reason, size_t rn)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char ebuf[128];
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(reason, rn, "cannot open: %s", strerror_r(errno, ebuf, sizeof ebuf));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
        snprintf(reason, rn, S_ISREG(st.st_mode) ? "file is larger than 1 MiB" : "not a regular file");
        close(fd);
        return NULL;
    }
    char *data = malloc((size_t)st.st_size + 1);
    if (!data)
        snprintf(reason, rn, "out of memory");
    size_t got = 0;
    while (data && got < (size_t)st.st_size) {
        ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(reason, rn, "cannot read: %s", r < 0 ? strerror_r(errno, ebuf, sizeof ebuf) : "file shrank");
            free(data);
            data = NULL;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return data;
}

int config_load_file(config_t *c, const char *path, config_errors *errs)
{
    err_scope scope;
    errs = scope_begin(&scope, errs);
    char reason[160];
    size_t len = 0;
    char *data = read_small_file(path, &len, reason, sizeof reason);
    if (!data) {
        err_add(errs, "<file>", "%s", reason);
        return scope_end(&scope);
    }
    int rc = config_load_yaml(c, data, len, errs);
    free(data);
    return rc == CAIRN_ENOMEM ? rc : scope_end(&scope);
}

/* ---- environment ------------------------------------------------------------ */

static bool env_allowed(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof env_allowlist / sizeof env_allowlist[0]; i++) {
        const char *a = env_allowlist[i];
        size_t alen = strlen(a);
        if (a[alen - 1] == '*' ? (len >= alen - 1 && memcmp(a, name, alen - 1) == 0)
                               : (len == alen && memcmp(a, name, len) == 0))
            return true;
    }
    return false;
}

int config_load_env(config_t *c, char *const *envp, config_errors *errs)
{
    err_scope scope;
    errs = scope_begin(&scope, errs);
    char reason[192];
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *e = envp[i];
        const char *eq = strchr(e, '=');
        if (strncmp(e, "CAIRN_", 6) != 0 || !eq)
            continue;
        size_t nlen = (size_t)(eq - e);
        const option *o = find_by_env(e, nlen);
        if (!o) {
            if (!env_allowed(e, nlen))
                err_addn(errs, e, nlen, "unknown CAIRN_ environment variable");
            continue;
        }
        if (option_apply(c, o, eq + 1, strlen(eq + 1), reason, sizeof reason) != 0)
            err_addn(errs, e, nlen, "%s", reason);
    }
    return scope_end(&scope);
}

/* ---- describe ----------------------------------------------------------------- */

/* Appends s as a Markdown table cell body: '|' would end the cell. */
static void md_cell(buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            buf_puts(out, "\\|");
        else
            buf_putc(out, *s);
    }
}

static void type_text(const option *o, char *out, size_t n)
{
    char range[80];
    switch (o->type) {
    case OPT_STRING:
        snprintf(out, n, "%s", o->form);
        return;
    case OPT_ENUM:
        choices_text(o->choices, out, n);
        return;
    case OPT_BOOL:
        snprintf(out, n, "true / false");
        return;
    case OPT_SIZE:
    case OPT_INT:
        range_text(o, range, sizeof range);
        snprintf(out, n, "%s, %s", o->type == OPT_SIZE ? "size" : "integer", range);
        return;
    case OPT_DURATION:
        range_text(o, range, sizeof range);
        snprintf(out, n, "duration, %s", range);
        return;
    }
    out[0] = '\0';
}

void config_describe(buf_t *out)
{
    char type[128];
    buf_puts(out, "| Key | Environment variable | Type | Default | Description |\n");
    buf_puts(out, "| --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        type_text(o, type, sizeof type);
        buf_printf(out, "| `%s` | `%s` | ", o->key, o->env);
        md_cell(out, type);
        buf_puts(out, " | ");
        if (o->def[0]) {
            buf_putc(out, '`');
            md_cell(out, o->def);
            buf_putc(out, '`');
        } else {
            buf_puts(out, "(empty)");
        }
        buf_puts(out, " | ");
        md_cell(out, o->desc);
        buf_puts(out, " |\n");
    }
}
