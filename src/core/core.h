/*
 * core — the pieces every other module leans on: error codes, the JSON line
 * logger, growable byte buffers, time, randomness, hex, and the configuration
 * table.  Nothing here knows about HTTP, S3 or storage.
 *
 * Error convention: functions return 0 on success or a negative CAIRN_E* code.
 * Thread-safety: everything in this header is thread-safe unless its comment
 * says otherwise.
 */
#ifndef CAIRN_CORE_H
#define CAIRN_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- errors ----------------------------------------------------------- */

enum {
    CAIRN_OK = 0,
    CAIRN_EINVAL = -1,     /* bad argument / malformed input */
    CAIRN_ENOMEM = -2,
    CAIRN_EIO = -3,        /* I/O error on a file or socket */
    CAIRN_ENOTFOUND = -4,
    CAIRN_EEXIST = -5,
    CAIRN_EDB = -6,        /* metadata database error */
    CAIRN_ETOOBIG = -7,
    CAIRN_ENOSPC = -8,
    CAIRN_ENOTEMPTY = -9,
    CAIRN_EAUTH = -10,     /* authentication failed */
    CAIRN_ECONFLICT = -11, /* a concurrent change won */
    CAIRN_EBUSY = -12,
    CAIRN_ETIMEDOUT = -13,
    CAIRN_EPRECOND = -14,  /* a write's precondition does not hold (If-Match, If-None-Match) */
    CAIRN_ELOCKED = -15,   /* object lock: the version's retention or legal hold forbids it */
    CAIRN_EPERM = -16,     /* not permitted in its current state (a disabled KMS key) */
};

/* Returns a static, human-readable name for an error code. */
const char *cairn_strerror(int err);

/* ---- logging ---------------------------------------------------------- */

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the minimum level written; default LOG_INFO.  Not thread-safe: call at startup. */
void log_set_level(log_level lvl);
int log_level_parse(const char *s, log_level *out);
/* Redirects log output (default stderr).  Not thread-safe: call at startup. */
void log_set_fd(int fd);
/* A sink hears every line logged (the JSON object, no newline; ts_ms its
 * time), on the logging thread, after it was written: log shipping.  It
 * must not block.  NULL removes it; once log_set_sink returns, the old sink
 * is not called again.  Lines a sink logs itself do not reach it. */
typedef void (*log_sink_fn)(void *ud, log_level lvl, int64_t ts_ms, const char *line, size_t len);
void log_set_sink(log_sink_fn fn, void *ud);

/*
 * Writes one JSON object per line: {"ts":..,"level":..,"msg":..,"request_id":..,
 * plus fields}.  `fields` is a list of key/value pairs: "k1", "v1", "k2", "v2",
 * NULL — string values, escaped here.  request_id may be NULL.
 * Each line is written with one write(2), so concurrent lines never interleave.
 */
void log_write(log_level lvl, const char *request_id, const char *msg, ...);
/* Like log_write but with printf formatting of msg and no extra fields. */
void log_msgf(log_level lvl, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds an integer field: use as a value in log_write's list via logf_int(). */
const char *log_int(char buf[24], long long v);

#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)

/* ---- buffers ---------------------------------------------------------- */

/* A growable byte buffer, always NUL-terminated (len excludes the NUL).
 * Owned by the caller; free with buf_free.  On allocation failure the buffer
 * latches `oom` and further appends are no-ops, so callers check once at the end. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);
int buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *p, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_putc(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with XML escaping of & < > " ' and control characters. */
void buf_xml_escape(buf_t *b, const char *s, size_t n);
/* Appends s as a JSON string body (no surrounding quotes). */
void buf_json_escape(buf_t *b, const char *s, size_t n);
/* Appends s as a Prometheus label value body (no quotes): backslash, double
 * quote and newline escaped as the text exposition format requires. */
void buf_prom_label(buf_t *b, const char *s);
/* Returns data and hands ownership to the caller (free()); buffer is reset. */
char *buf_steal(buf_t *b);

/* ---- arenas (arena.c) ---------------------------------------------------
 *
 * A bump allocator over a list of chunks, for memory that lives exactly as
 * long as one request: allocations are never freed one by one, the whole
 * arena goes at once.  Chunks are ARENA_CHUNK bytes (a larger allocation
 * gets a chunk of its own), and the chunks together never hold more than
 * the arena's max: past it an allocation fails, so memory per request is
 * bounded by whoever chose max, never by what a client sends.  Not
 * thread-safe: one request's thread at a time. */

#define ARENA_CHUNK 16384

typedef struct arena arena;

/* A new arena whose chunks never hold more than max bytes (the first chunk,
 * which holds the arena itself, included).  NULL when out of memory or max
 * is too small for a first chunk (under ARENA_MIN).  Free with arena_free. */
#define ARENA_MIN 256
arena *arena_new(size_t max);
/* Frees every chunk, and with them everything allocated.  NULL is a no-op. */
void arena_free(arena *a);
/* n bytes aligned for any type (max_align_t), or NULL: past the arena's max
 * (arena_exhausted is then true) or out of memory.  n == 0 gives a valid,
 * unique pointer. */
void *arena_alloc(arena *a, size_t n);
/* count * size zeroed bytes (NULL on overflow, as past the max). */
void *arena_calloc(arena *a, size_t count, size_t size);
/* A NUL-terminated copy of s[0..n) / of s. */
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_strdup(arena *a, const char *s);
/* Bytes of the chunks the arena holds now (<= its max). */
size_t arena_size(const arena *a);
/* True once an allocation failed for the max (not for the system's memory). */
bool arena_exhausted(const arena *a);

/* ---- request headers -------------------------------------------------- */

/* One header of a request as received: the name in any case, the value
 * untrimmed, not necessarily NUL-terminated (lengths rule).  Here because
 * both http/ (which collects them) and auth/ (which signs them) speak of
 * them, and neither depends on the other. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} header_field;

/* ---- time ------------------------------------------------------------- */

int64_t time_now_ms(void);      /* wall clock, ms since epoch */
int64_t time_now_us(void);      /* wall clock, µs since epoch */
int64_t time_mono_ns(void);     /* monotonic, ns */
/* The time ms from now on clock clk (CLOCK_REALTIME for a default condition
 * variable, CLOCK_MONOTONIC for one set so): a pthread wait's deadline. */
struct timespec time_deadline(clockid_t clk, int64_t ms);
/* RFC 3339 with milliseconds, UTC: 2026-11-21T10:00:00.000Z.  out >= 32. */
void time_fmt_iso8601(int64_t ms, char *out, size_t n);
/* RFC 7231 IMF-fixdate: Sat, 21 Nov 2026 10:00:00 GMT.  out >= 32. */
void time_fmt_http(int64_t ms, char *out, size_t n);
/* Parses IMF-fixdate, RFC 850 and asctime forms; returns 0 and ms, or CAIRN_EINVAL. */
int time_parse_http(const char *s, int64_t *ms_out);
/* Parses the ISO 8601 basic form 20150830T123600Z; returns 0 and seconds since epoch. */
int time_parse_amz(const char *s, int64_t *sec_out);
/* Parses RFC 3339 / ISO 8601 extended UTC times as S3 takes them
 * (2026-11-21T10:00:00Z, with any fraction of a second, and Z or a numeric
 * offset such as +02:00); returns 0 and ms since epoch (fraction cut to
 * ms), or CAIRN_EINVAL. */
int time_parse_iso8601(const char *s, int64_t *ms_out);

/* ---- randomness and encoding ------------------------------------------- */

/* Fills p with n cryptographically secure random bytes (libsodium). */
void rand_bytes(void *p, size_t n);
/* Exponential backoff with full jitter: uniform in [0, min(cap, base *
 * 2^attempt)] milliseconds, drawn from *seed (rand_r; seed it per process
 * with rand_bytes so that processes retrying together spread out). */
int64_t backoff_full_jitter(int attempt, int64_t base_ms, int64_t cap_ms, unsigned *seed);
/* Writes 2n lowercase hex digits and a NUL to out. */
void hex_encode(const void *p, size_t n, char *out);
/* CRC-64/NVME (S3's x-amz-checksum-crc64nvme: reflected polynomial
 * 0x9a6c9329ac4bc9b5, initial value and final XOR all ones).  Start with
 * crc = 0 and feed the bytes in any number of calls; the result of each
 * call is the checksum of everything so far.  Thread-safe. */
uint64_t crc64nvme(uint64_t crc, const void *p, size_t n);
/* The reflected polynomials of the CRCs S3 names (x-amz-checksum-crc32,
 * -crc32c, -crc64nvme), for crc_combine. */
#define CRC32_POLY 0xedb88320ULL
#define CRC32C_POLY 0x82f63b78ULL
#define CRC64NVME_POLY 0x9a6c9329ac4bc9b5ULL
/* The CRC of A followed by B, from crc_a (the CRC of A), crc_b (of B) and
 * len_b (B's length in bytes), for a reflected CRC of width bits (32 or 64)
 * with polynomial poly whose initial value and final XOR are all ones (CRC-32,
 * CRC-32C, CRC-64/NVME).  Costs O(width * log len_b), not a pass over B: a
 * multipart upload's full-object CRC comes from its parts' CRCs this way.
 * Thread-safe. */
uint64_t crc_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b, uint64_t poly, unsigned width);
/* Decodes 2n hex digits; returns 0 or CAIRN_EINVAL. */
int hex_decode(const char *hex, size_t hexlen, void *out, size_t outcap, size_t *outlen);
/* Whether the address addr (IPv4 or IPv6 text; an IPv4-mapped IPv6 address
 * counts as its IPv4) is one of list: comma-separated addresses or CIDR
 * blocks ("10.0.0.0/8, ::1").  1 yes, 0 no, -1 when an element of list is
 * not an address or block (*bad, if given, points at it). */
int net_addr_in_list(const char *list, const char *addr, const char **bad);
/* The certificate and key files (PEM) this process shows TLS servers that
 * ask for one (mutual TLS to storage nodes: tls_client_cert,
 * tls_client_key).  Set once at start, before any connection; the strings
 * are copied.  get gives "" for none. */
void tls_client_identity_set(const char *cert_path, const char *key_path);
void tls_client_identity_get(const char **cert_path, const char **key_path);
/* Fills out (>= 2n+1) with a random lowercase hex id of n random bytes. */
void rand_hex_id(char *out, size_t nbytes);
/* Time-ordered ids: 32 lowercase hex digits and a NUL, 48 bits of
 * milliseconds since the epoch (big-endian) then 80 random bits (the layout
 * of a UUIDv7).  Ids made close in time sort together, so an index over
 * them grows at its end rather than at random pages; they are unique by
 * their random part.  time_hex_id_from takes the time and the 10 random
 * bytes; time_hex_id uses the wall clock and rand_bytes. */
#define TIME_HEX_ID_LEN 32
void time_hex_id_from(int64_t now_ms, const unsigned char rnd[10], char out[TIME_HEX_ID_LEN + 1]);
void time_hex_id(char out[TIME_HEX_ID_LEN + 1]);
/* Percent-decodes src (n bytes) into dst (>= n+1); '+' is kept as '+'.
 * Returns decoded length or CAIRN_EINVAL on a bad escape. */
long url_decode(const char *src, size_t n, char *dst);
/* Appends the AWS-style URI encoding of s: unreserved A-Za-z0-9-_.~ kept,
 * '/' kept when keep_slash, everything else %XX uppercase. */
void buf_url_encode(buf_t *b, const char *s, size_t n, bool keep_slash);

/* Writes a small file so that a crash leaves either the old file or the whole
 * new one: temp file, write, fsync, then rename (replace) or link (create
 * only: CAIRN_EEXIST if path exists), then fsync of the directory. */
int file_write_atomic(const char *path, const void *data, size_t len, int mode, bool replace);

/* Takes an exclusive advisory lock (flock) on path, creating the file, and
 * writes this process's pid into it; *fd gets the open file, which holds the
 * lock until it is closed.  CAIRN_EBUSY when another process (or another open
 * of the file in this one) holds it, with *holder_pid (0 if unknown; may be
 * NULL); CAIRN_EIO when the file cannot be opened. */
int file_lock_exclusive(const char *path, int *fd, long *holder_pid);

/* ---- fault injection (the fault-injection build only; see fault.c) ------- */

typedef enum {
    FAULT_DATA_OPEN = 0, FAULT_DATA_WRITE, FAULT_DATA_FSYNC, FAULT_DATA_RENAME, FAULT_DATA_UNLINK,
    FAULT_META_OPEN, FAULT_META_WRITE, FAULT_META_FSYNC, FAULT_META_UNLINK, FAULT_META_BIND, FAULT_META_WAL,
    FAULT_NET_SEND, FAULT_NET_RECV, FAULT_NODE_FLOOR,
    FAULT_AUDIT_WRITE, FAULT_AUDIT_FSYNC, FAULT_PG_SEND, FAULT_PG_ANSWER,
    FAULT__COUNT
} fault_site;

#ifdef CAIRN_FAULTS
/* 0, or the errno the call at this site must fail with (it may also abort the
 * process: a crash point).  Thread-safe. */
int fault_inject(fault_site site);
/* A named point where a test may ask for a pause (pause=NAME:MS[:COUNT]). */
void fault_point(const char *name);
/* A named point where a test may ask for an HTTP answer
 * (status=NAME:CODE[:COUNT]): the status to answer with, or 0. */
int fault_status(const char *name);
/* Arms (or disarms, with "") from a spec; resets the call counter. */
int fault_configure(const char *spec);
/* Re-reads the spec from $CAIRN_TEST_FAULT_FILE (services: on SIGUSR1). */
int fault_reload(void);
/* Arms from $CAIRN_TEST_FAULT, if set (core_init calls it). */
void fault_init_from_env(void);
const char *fault_site_name(fault_site site);
#define CAIRN_FAULT_BUILD 1
#else
static inline int fault_inject(fault_site site) { (void)site; return 0; }
static inline void fault_point(const char *name) { (void)name; }
static inline int fault_status(const char *name) { (void)name; return 0; }
static inline int fault_reload(void) { return 0; }
#define CAIRN_FAULT_BUILD 0
#endif

/* Returns the process-wide library init (libsodium); call once from main. */
int core_init(void);

/* ---- cluster status events (status.c) ----------------------------------------
 * What operators watch live (docs/events.md): status_emit("node:Down",
 * "node", url, "error", why, NULL) — a type and name/value pairs (at most
 * STATUS_MAX_FIELDS) — goes to the one sink set, the event bus, which
 * publishes it on cairn:cluster.  Types: node:Up, node:Down, node:Draining,
 * node:Drained, rebalance:Progress, rebalance:Done, heal:Done, heal:Failed,
 * job:Failed, disk:Full, disk:Ok.  Thread-safe; emit never blocks for long
 * (the sink queues). */
#define STATUS_MAX_FIELDS 12
typedef void (*status_sink_fn)(void *ud, const char *type, const char *const *fields);
/* Sets the sink (NULL: none).  Not concurrent with itself. */
void status_set_sink(status_sink_fn fn, void *ud);
void status_emit(const char *type, ...) __attribute__((sentinel));

/* ---- Redis (redis.c) -------------------------------------------------------
 * redis_url read once, the same way for every part that uses Redis. */
typedef struct {
    char host[256];
    int port;                  /* 6379 when the URL names none */
    char password[256];        /* "" = no AUTH */
    int db;                    /* from the URL's path: redis://host:6379/2; 0 = none given */
} redis_target;
/* Parses redis://[:PASSWORD@]HOST[:PORT][/DB]: 0, or CAIRN_EINVAL with why. */
int redis_target_parse(const char *url, redis_target *t, char *why, size_t whylen);
struct redisContext;
struct timeval;
/* A connection ready for commands (connected within timeout_ms, every
 * command given the same timeout, AUTH and SELECT done), or NULL.  The
 * caller frees it with redisFree. */
struct redisContext *redis_open(const redis_target *t, int64_t timeout_ms);
struct timeval redis_timeval(int64_t ms);

/* ---- service registry (service.c) ---------------------------------------
 *
 * Every long-lived component of a process (the metadata store, the data
 * store, the gateway, the HTTP server, the job workers, membership...) is a
 * service with a start, a stop and the services it needs.  The registry
 * starts them in dependency order and stops them in reverse; a dependency
 * cycle or an unknown name is an error before anything starts; a start that
 * fails stops what already started; every stop has a deadline.  Not
 * thread-safe: one thread registers, starts and stops. */

typedef struct svc_registry svc_registry;

typedef struct {
    const char *name;          /* unique; the registry copies it */
    const char *needs;         /* comma-separated names started before this one; NULL or "" = none */
    int (*start)(void *ud);    /* 0 or a CAIRN_E* code, having undone its own work
                                  (its stop is not called); NULL = nothing to do */
    void (*stop)(void *ud);    /* NULL = nothing to do */
    void *ud;
    int stop_timeout_ms;       /* 0 = the registry's default */
} svc_def;

/* default_stop_timeout_ms > 0.  Caller frees with svc_registry_free. */
int svc_registry_new(int default_stop_timeout_ms, svc_registry **out);
/* Frees the registry; stops nothing (call svc_stop_all first). */
void svc_registry_free(svc_registry *r);
/* Adds a service (before svc_start_all): CAIRN_EEXIST for a name taken,
 * CAIRN_EINVAL for a missing name or one with a comma, CAIRN_ENOMEM. */
int svc_add(svc_registry *r, const svc_def *d);
/* Starts every service, each after the ones it needs.  A cycle or a need
 * that names no service: CAIRN_EINVAL before anything starts.  A start that
 * fails: the services started before it are stopped, newest first, and its
 * error is returned.  why (may be NULL) says which service and what; the
 * registry logs nothing of it (the caller reports it, or the start did). */
int svc_start_all(svc_registry *r, char *why, size_t whylen);
/* Stops the started services, newest first, each within its timeout (its
 * stop runs on a thread of its own).  A stop that overruns is logged and
 * left running, and nothing it needs is stopped after it (it may still use
 * it); the result is then CAIRN_ETIMEDOUT, else 0. */
int svc_stop_all(svc_registry *r);
/* How many services are running, and the name of the ith in start order. */
int svc_running(const svc_registry *r);
const char *svc_started_name(const svc_registry *r, int i);

/* ---- configuration ------------------------------------------------------
 *
 * Every option lives in one table in config.c: name (the YAML key), the
 * CAIRN_* environment variable, type, default, one-line description and its
 * validation.  Sources apply in order defaults < YAML file < environment <
 * command-line flags; each later source overrides the earlier.
 */

typedef struct {
    char listen[128];          /* listen: ADDR:PORT, default 127.0.0.1:9000 */
    char data_dir[1024];       /* data_dir: default ./data */
    char region[64];           /* region: default us-east-1 */
    char domain[256];          /* domain: for virtual-host style; empty = off */
    char root_user[128];       /* root_user: CAIRN_ROOT_USER */
    char root_password[256];   /* root_password: CAIRN_ROOT_PASSWORD */
    char master_key[128];      /* master_key: 64 hex chars; empty = key file in data dir */
    char master_key_file[1024]; /* master_key_file: file holding the key; empty = DATA/master.key */
    char log_level[16];        /* log_level: debug|info|warn|error */
    char log_ship_url[512];    /* log_ship_url: "" = no log shipping */
    char log_ship_format[8];   /* log_ship_format: loki|json */
    int64_t log_ship_buffer_bytes;
    int log_ship_batch_lines;
    int log_ship_flush_ms;
    int log_ship_timeout_ms;
    int log_ship_retry_max_ms;
    int log_ship_sample;
    int64_t max_object_size;   /* max_object_size: bytes, <= 5 GiB */
    int64_t inline_max_size;   /* inline_max_size: objects up to this many bytes live in the DB */
    int64_t min_free_disk;     /* min_free_disk: bytes; readiness fails below */
    int connection_limit;      /* connection_limit */
    int connection_timeout;    /* connection_timeout: seconds idle before a slow client is cut */
    int shutdown_timeout;      /* shutdown_timeout: seconds to finish in-flight requests */
    int health_timeout_ms;     /* health_timeout_ms: per readiness check */
    int health_max_age_ms;     /* health_max_age_ms: a readiness result is reused this long */
    int max_header_bytes;      /* max_header_bytes: request head limit per connection */
    int clock_skew;            /* clock_skew: seconds of SigV4 skew accepted, default 900 */
    char metadata_url[2048];   /* metadata_url: sqlite:///ABS/PATH or postgres://...; empty = DATA/meta.db */
    int db_readers;            /* db_readers: read connections in the SQLite pool */
    int db_pool_min;           /* db_pool_min: PostgreSQL connections kept open */
    int db_pool_max;           /* db_pool_max: PostgreSQL connections at most (>= db_pool_min) */
    int db_acquire_timeout_ms; /* db_acquire_timeout_ms: wait for a pooled connection, then 503 SlowDown */
    int db_health_check_ms;    /* db_health_check_ms: an idle connection older than this is pinged on checkout */
    int db_idle_timeout_ms;    /* db_idle_timeout_ms: idle connections above the minimum close after this; 0 = never */
    int db_max_lifetime_ms;    /* db_max_lifetime_ms: a connection is replaced after this (with jitter); 0 = never */
    int db_statement_timeout_ms; /* db_statement_timeout_ms: PostgreSQL statement_timeout; 0 = none */
    int db_long_hold_ms;       /* db_long_hold_ms: a connection held longer is logged and counted; 0 = never */
    int64_t cache_bytes;       /* cache_bytes: metadata L1 capacity; 0 = no cache */
    int cache_ttl_ms;          /* cache_ttl_ms: a cached record's lifetime */
    char redis_url[1024];      /* redis_url: the shared L2 and invalidation channel; empty = none */
    int redis_timeout_ms;      /* redis_timeout_ms: connect and command timeout */
    int redis_breaker_ms;      /* redis_breaker_ms: Redis left alone this long after a failure */
    int cache_lease_ms;        /* cache_lease_ms: a gateway's cache lease in Redis (0: a seq read per request) */
    bool fsync;                /* fsync: fsync object data and metadata (default true) */
    char drives[4096];         /* drives: comma-separated directories; empty = DATA/drives/d0 */
    int ec_data;               /* ec_data: data shards per stripe; 0 = default for the drive count */
    int ec_parity;             /* ec_parity: parity shards per stripe (with ec_data) */
    int64_t ec_block_size;     /* ec_block_size: bytes per shard block */
    int scrub_interval;        /* scrub_interval: seconds between scrub passes; 0 = off */
    int64_t scrub_rate;        /* scrub_rate: bytes verified per second at most */
    char cluster_secret[256];  /* cluster_secret: shared by gateways and nodes (shard API HMAC) */
    char nodes[4096];          /* nodes: comma-separated storage node URLs (gateway) */
    int shard_timeout_ms;      /* shard_timeout_ms: bound on each wait for a node */
    int node_heartbeat_ms;     /* node_heartbeat_ms: how often a gateway checks its nodes and the registry */
    int leader_lease_ms;       /* leader_lease_ms: how long a lease of work one gateway does for all lasts unrenewed */
    char tls_cert[1024];       /* tls_cert: PEM certificate (chain) to serve HTTPS with */
    char tls_key[1024];        /* tls_key: PEM private key of tls_cert */
    char tls_ca[1024];         /* tls_ca: CA bundle that verifies https:// nodes; empty = system CAs */
    bool sse_c_allow_insecure; /* sse_c_allow_insecure: SSE-C over plain HTTP (tests only) */
    char tls_client_ca[1024];  /* tls_client_ca: a node asks its clients for a certificate this CA signed */
    char tls_client_cert[1024]; /* tls_client_cert: the certificate a gateway shows https:// nodes */
    char tls_client_key[1024]; /* tls_client_key: its private key */
    int job_workers;           /* job_workers: threads running background jobs */
    int job_lease_ms;          /* job_lease_ms: a run's lease; a crashed worker's job reruns after it */
    int job_backoff_base_ms;   /* job_backoff_base_ms: first retry delay ceiling */
    int job_backoff_max_ms;    /* job_backoff_max_ms: largest retry delay ceiling */
    int job_poll_ms;           /* job_poll_ms: how often idle workers look for due jobs */
    int job_period_s;          /* job_period_s: how often periodic jobs are scheduled */
    int lifecycle_objects_per_second; /* lifecycle_objects_per_second: versions a lifecycle run examines per second; 0 = no limit */
    int lifecycle_day_seconds; /* lifecycle_day_seconds: test knob, seconds in a lifecycle day */
    int multipart_expiry;      /* multipart_expiry: seconds after which an unfinished upload is aborted */
    int job_retention_s;       /* job_retention_s: completed/cancelled jobs are deleted after this */
    int job_discarded_retention_s; /* job_discarded_retention_s: discarded jobs are deleted after this */
    int client_header_timeout; /* client_header_timeout: seconds for a whole request head; 0 = off */
    int64_t min_body_rate;     /* min_body_rate: bytes/s a request body must keep up; 0 = off */
    int min_body_rate_window;  /* min_body_rate_window: seconds per judged window of a body */
    int connection_limit_per_ip; /* connection_limit_per_ip: connections from one address; 0 = no limit */
    bool sigv2;                /* sigv2: accept AWS Signature Version 2 (default true) */
    bool audit_enabled;        /* audit_enabled: one audit event per request, in the journal (default true) */
    int audit_sync_ms;         /* audit_sync_ms: a read's event is durable within this */
    int64_t audit_journal_max_bytes; /* audit_journal_max_bytes: unshipped journal bytes at most */
    int audit_journal_max_age; /* audit_journal_max_age: seconds the oldest unshipped event may wait; 0 = no bound */
    int64_t audit_journal_segment_bytes; /* audit_journal_segment_bytes: a segment is rotated at this size */
    char audit_overflow[8];    /* audit_overflow: reject|spool, when the journal is full */
    int audit_retention_days;  /* audit_retention_days: the audit store keeps events this long; 0 = forever */
    int64_t audit_max_batch_bytes; /* audit_max_batch_bytes: largest POST /audit/v1/events body */
    char audit_url[512];       /* audit_url: the audit store the shipper sends to; empty = embedded */
    char audit_metadata_url[2048]; /* audit_metadata_url: where the audit store keeps events; empty = DATA/audit.db (SQLite) or metadata_url (PostgreSQL) */
    int audit_batch_size;      /* audit_batch_size: events per batch at most */
    int audit_flush_interval;  /* audit_flush_interval: ms an event waits at most for its batch */
    int audit_timeout_ms;      /* audit_timeout_ms: connect and total timeout of one POST */
    int audit_max_retries;     /* audit_max_retries: retries before the dead-letter queue */
    char audit_access_key[128]; /* audit_access_key: signs the POSTs; empty = root_user */
    char audit_secret_key[256]; /* audit_secret_key: empty = root_password */
    char audit_dlq_stream[256]; /* audit_dlq_stream: Redis stream of the DLQ; empty = spool only */
    bool metrics_enabled;      /* metrics_enabled: false = no /metrics (404), nothing collected */
    bool events_enabled;       /* events_enabled: publish events, serve /events/ws */
    char events_allowed_origins[2048]; /* events_allowed_origins: comma-separated; empty = any */
    int events_max_sockets;    /* events_max_sockets: open event stream sockets at most */
    int64_t events_send_queue_bytes; /* events_send_queue_bytes: one socket's unsent bytes at most */
    int64_t events_ping_interval; /* events_ping_interval: ms between pings */
    int64_t events_pong_timeout; /* events_pong_timeout: ms a ping waits for its pong */
    int64_t events_redis_timeout; /* events_redis_timeout: ms one Redis call of the bus may take */
    int64_t events_retry_max;  /* events_retry_max: cap of the reconnect delay, ms */
    int events_retry_attempts; /* events_retry_attempts: reconnects before the sockets get a hangup */
    int notify_max_pending;    /* notify_max_pending: a target's waiting events past which it is reported */
    int notify_timeout_ms;     /* notify_timeout_ms: one webhook POST */
    int ratelimit_key_ops_per_s;     /* ratelimit_key_ops_per_s: requests per access key per second; 0 = no limit */
    int64_t ratelimit_key_bytes_per_s; /* ratelimit_key_bytes_per_s: body bytes per access key per second; 0 = no limit */
    int ratelimit_ip_ops_per_s;      /* ratelimit_ip_ops_per_s: requests per client address per second */
    int64_t ratelimit_ip_bytes_per_s; /* ratelimit_ip_bytes_per_s: body bytes per client address per second */
    int ratelimit_bucket_ops_per_s;  /* ratelimit_bucket_ops_per_s: requests per bucket per second */
    int64_t ratelimit_bucket_bytes_per_s; /* ratelimit_bucket_bytes_per_s: body bytes per bucket per second */
    int ratelimit_burst_s;           /* ratelimit_burst_s: seconds of its rate a bucket holds */
    int ratelimit_max_entries;       /* ratelimit_max_entries: subjects the limiter remembers at most */
    char ratelimit_trusted_proxies[1024]; /* ratelimit_trusted_proxies: addresses/CIDRs whose X-Forwarded-For is believed */
    int max_requests_in_flight;      /* max_requests_in_flight: S3 requests served at once; 0 = no cap */
} config_t;

/* One problem found while loading: key name and reason. */
typedef struct {
    char key[64];
    char reason[192];
} config_error;

typedef struct {
    config_error items[32];
    int count;                 /* number stored (capped at 32) */
    int total;                 /* number found */
} config_errors;

/* Fills every field with its default. */
void config_defaults(config_t *c);
/* Applies a YAML file (a flat mapping of key: value).  Every unknown key and
 * every invalid value is added to errs; returns 0 if none, else CAIRN_EINVAL.
 * A missing or unreadable file is reported as key "<file>". */
int config_load_file(config_t *c, const char *path, config_errors *errs);
/* Same, from a buffer (used by the fuzz target and tests). */
int config_load_yaml(config_t *c, const char *text, size_t len, config_errors *errs);
/* Applies CAIRN_* environment variables from envp (NULL-terminated "K=V"). */
int config_load_env(config_t *c, char *const *envp, config_errors *errs);
/* Sets one option by YAML key name from a string (flags use this). */
int config_set(config_t *c, const char *key, const char *value, config_errors *errs);
/* Cross-field validation after all sources are applied. */
int config_validate(const config_t *c, config_errors *errs);
/* Writes the option table (key, env var, default, description) as Markdown. */
void config_describe(buf_t *out);
/* Parses sizes like "5GiB", "64MiB", "4096", "1k" into bytes. */
int config_parse_size(const char *s, int64_t *out);

#endif
