/*
 * server.c — `cairn server`: the embedded default.  One process: the S3
 * gateway over HTTP, SQLite metadata at DATA/meta.db (or where metadata_url
 * says), object bytes under DATA/drives/d0.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken by the
 * main thread with sigwait, so shutdown runs in ordinary code: stop
 * accepting, let in-flight requests finish (up to shutdown_timeout), close
 * connections, close the database cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/logship.h"
#include "auth/auth.h"
#include "cmd/cmd.h"
#include "crypt/kms.h"
#include "data/data.h"
#include "events/events.h"
#include "events/ws.h"
#include "http/http.h"
#include "jobs/jobs.h"
#include "obs/obs.h"
#include "s3/s3.h"

#include <pthread.h>
#include <sodium.h>

typedef struct {
    char user[129];
    char password[257];
    bool generated;
    bool from_file;
} root_creds;

/* Parses DATA/root-credentials: lines CAIRN_ROOT_USER=... and CAIRN_ROOT_PASSWORD=... */
static int read_root_file(const char *path, root_creds *rc) {
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? CAIRN_ENOTFOUND : CAIRN_EIO;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "CAIRN_ROOT_USER=", 16)) snprintf(rc->user, sizeof rc->user, "%s", line + 16);
        else if (!strncmp(line, "CAIRN_ROOT_PASSWORD=", 20)) snprintf(rc->password, sizeof rc->password, "%s", line + 20);
    }
    fclose(f);
    return rc->user[0] && rc->password[0] ? 0 : CAIRN_EINVAL;
}

static int write_root_file(const char *path, const root_creds *rc) {
    char text[512];
    int n = snprintf(text, sizeof text, "CAIRN_ROOT_USER=%s\nCAIRN_ROOT_PASSWORD=%s\n", rc->user, rc->password);
    int r = file_write_atomic(path, text, (size_t)n, 0600, true);
    sodium_memzero(text, sizeof text);
    return r;
}

static int resolve_root(const config_t *cfg, root_creds *rc) {
    memset(rc, 0, sizeof *rc);
    /* config_validate has refused one without the other and short values. */
    if (cfg->root_user[0]) {
        snprintf(rc->user, sizeof rc->user, "%s", cfg->root_user);
        snprintf(rc->password, sizeof rc->password, "%s", cfg->root_password);
        return 0;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/root-credentials", cfg->data_dir);
    int r = read_root_file(path, rc);
    if (r == 0) {
        rc->from_file = true;
        return 0;
    }
    if (r != CAIRN_ENOTFOUND) {
        fprintf(stderr, "cairn: %s is unreadable or malformed\n", path);
        return 1;
    }
    char ak[21], sk[41];
    auth_generate_key(ak, sk);
    snprintf(rc->user, sizeof rc->user, "%s", ak);
    snprintf(rc->password, sizeof rc->password, "%s", sk);
    if (write_root_file(path, rc) != 0) {
        fprintf(stderr, "cairn: cannot write %s\n", path);
        return 1;
    }
    rc->generated = true;
    return 0;
}

static void print_banner(const config_t *cfg, int port, const root_creds *rc, const char *what) {
    char host[128];
    snprintf(host, sizeof host, "%s", cfg->listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    if (!strcmp(host, "0.0.0.0") || !host[0]) snprintf(host, sizeof host, "127.0.0.1");
    const char *scheme = cfg->tls_cert[0] ? "https" : "http";
    printf("cairn %s listening on %s://%s:%d\n", what, scheme, host, port);
    printf("data directory: %s\n", cfg->data_dir);
    printf("access key: %s\n", rc->user);
    if (rc->generated)
        printf("secret key: %s\n(generated on first start and stored in %s/root-credentials, mode 0600)\n",
               rc->password, cfg->data_dir);
    else if (rc->from_file)
        printf("secret key: stored in %s/root-credentials\n", cfg->data_dir);
    else
        printf("secret key: from CAIRN_ROOT_PASSWORD\n");
    if (strcmp(what, "audit-server") != 0)
        printf("try: AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=... aws --endpoint-url %s://%s:%d s3 ls\n",
               rc->user, scheme, host, port);
    else
        printf("try: cairn admin audit query --url %s://%s:%d (CAIRN_ROOT_USER, CAIRN_ROOT_PASSWORD)\n", scheme,
               host, port);
    fflush(stdout);
}

char *cmd_read_pem(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    buf_t b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (1u << 20)) buf_append(&b, chunk, n);
    fclose(f);
    if (b.oom || b.len == 0 || b.len >= (1u << 20)) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

int cmd_load_tls(const config_t *cfg, char **cert, char **key) {
    *cert = *key = NULL;
    if (!cfg->tls_cert[0]) return 0;
    *cert = cmd_read_pem(cfg->tls_cert);
    *key = cmd_read_pem(cfg->tls_key);
    if (*cert && *key) return 0;
    fprintf(stderr, "cairn: cannot read %s (tls_%s)\n", *cert ? cfg->tls_key : cfg->tls_cert, *cert ? "key" : "cert");
    free(*cert);
    free(*key);
    *cert = *key = NULL;
    return 2;
}

int cmd_service_begin(int argc, char **argv, const char *name, const char *usage, sigset_t *sigs,
                      config_t *cfg) {
    cmd_block_signals(sigs);
    char *rest[CMD_MAX_ARGS];
    int nrest = 0;
    int rc = cmd_load_config(argc, argv, cfg, rest, &nrest);
    if (rc != 0) return rc;
    if (nrest > 0) {
        fprintf(stderr, "cairn %s: unknown argument '%s'\nusage: %s\n", name, rest[0], usage);
        return 2;
    }
    log_level lvl = LOG_INFO;
    log_level_parse(cfg->log_level, &lvl);
    log_set_level(lvl);
    return 0;
}

static int lock_file(const char *path, const char *what, const char *name, int *fd) {
    long holder = 0;
    int rc = file_lock_exclusive(path, fd, &holder);
    if (rc == CAIRN_EBUSY) {
        fprintf(stderr, "cairn: %s %s is in use by another cairn process (pid %ld); stop it first\n", what, name,
                holder);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot lock %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int cmd_lock_data_dir(const config_t *cfg, int fd[2]) {
    fd[0] = fd[1] = -1;
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn: cannot create data directory %s: %s\n", cfg->data_dir, strerror(errno));
        return 1;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/lock", cfg->data_dir);
    if (lock_file(path, "data directory", cfg->data_dir, &fd[0]) != 0) return 1;
    /* A SQLite database outside the data directory gets a lock of its own:
     * two servers with different data directories must not share it. */
    meta_url u;
    char dflt[1100];
    snprintf(dflt, sizeof dflt, "%s/meta.db", cfg->data_dir);
    if (meta_url_parse(cfg->metadata_url, cfg->data_dir, &u, NULL, 0) == 0 && u.backend == META_BACKEND_SQLITE &&
        strcmp(u.path, dflt) != 0) {
        char mpath[1100];
        snprintf(mpath, sizeof mpath, "%s.lock", u.path);
        if (lock_file(mpath, "metadata database", u.path, &fd[1]) != 0) {
            cmd_unlock_data_dir(fd);
            return 1;
        }
    }
    return 0;
}

void cmd_unlock_data_dir(int fd[2]) {
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0) close(fd[i]);
    fd[0] = fd[1] = -1;
}

int cmd_drive_paths(const config_t *cfg, char *buf, size_t bufsz, char **paths) {
    if (cfg->drives[0]) return cmd_split_list(cfg->drives, buf, bufsz, paths, 64);
    snprintf(buf, bufsz, "%s/drives/d0", cfg->data_dir);
    paths[0] = buf;
    return 1;
}

int cmd_split_list(const char *csv, char *buf, size_t bufsz, char **out, int max) {
    snprintf(buf, bufsz, "%s", csv);
    int n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p && n < max; p = strtok_r(NULL, ",", &save))
        out[n++] = p;
    return n;
}

int cmd_open_data(const config_t *cfg, meta_store *ms, data_store **ds, int *cleaned) {
    char list[sizeof cfg->drives > sizeof cfg->nodes ? sizeof cfg->drives : sizeof cfg->nodes];
    char *paths[64];
    int n = 0;
    bool remote = cfg->nodes[0] != '\0';
    if (remote) n = cmd_split_list(cfg->nodes, list, sizeof list, paths, 64);
    else n = cmd_drive_paths(cfg, list, sizeof list, paths);
    data_options o = {.k = cfg->ec_data, .m = cfg->ec_parity, .block = (uint32_t)cfg->ec_block_size,
                      .fsync = cfg->fsync, .cluster_secret = cfg->cluster_secret,
                      .shard_timeout_ms = cfg->shard_timeout_ms, .tls_ca = cfg->tls_ca};
    meta_node known[64];
    const char *known_ids[64];
    if (remote) {
        o.nodes = (const char *const *)paths;
        o.nnodes = n;
        /* Ids the registry holds let a node that is down now still be placed
         * in every layout that names it. */
        for (int i = 0; i < n; i++)
            known_ids[i] = meta_node_get(ms, paths[i], &known[i]) == 0 ? known[i].id : "";
        o.node_ids = known_ids;
    } else {
        o.drives = (const char *const *)paths;
        o.ndrives = n;
    }
    int rc = data_open(&o, ds, cleaned);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot open the %s (%s): %s\n", remote ? "storage nodes" : "data drives",
                remote ? cfg->nodes : cfg->drives[0] ? cfg->drives : list,
                rc == CAIRN_EEXIST ? "the same drive or node is listed twice" :
                rc == CAIRN_EBUSY ? "a drive is in use by another process (see the log line naming it)" :
                rc == CAIRN_EINVAL ? "ec_data + ec_parity exceeds the number of drives or nodes" :
                remote && rc == CAIRN_EIO ? "a node did not answer /v1/info (down, wrong URL or wrong cluster_secret)" :
                cairn_strerror(rc));
        return rc == CAIRN_EINVAL || rc == CAIRN_EEXIST ? 2 : 1;
    }
    /* Nodes added with `admin node add` are not in the configuration: open
     * them now, so no check, read or orphan pass runs without their shards. */
    if (remote) membership_apply_registry(ms, *ds, NULL);
    int k, m;
    uint32_t block;
    data_store_layout(*ds, &k, &m, &block);
    char geo[64], nd[16];
    snprintf(geo, sizeof geo, "%d+%d", k, m);
    snprintf(nd, sizeof nd, "%d", n);
    log_write(LOG_INFO, NULL, remote ? "storage nodes open" : "data drives open", remote ? "nodes" : "drives", nd,
              "erasure_coding", geo, NULL);
    return 0;
}

static void register_node(void *ud, const char *id, const char *url, bool up) {
    (void)up;
    meta_node_upsert(ud, id, url);
}

/* An object's version or a multipart part: the same question the heal job
 * and orphan collection ask.  On a lookup error it says yes: a spare shard is
 * cheaper than a lost one. */
static bool version_still_exists(void *ud, const char *version_id) {
    bool referenced = true;
    meta_version_referenced(ud, version_id, &referenced);
    return referenced;
}

void cmd_block_signals(sigset_t *sigs) {
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    /* SIGHUP reloads the HTTPS listener's certificate (cmd_tls_reload_on_sighup). */
    sigaddset(sigs, SIGHUP);
    /* The fault build re-arms fault injection on SIGUSR1 (fault_reload). */
    if (CAIRN_FAULT_BUILD) sigaddset(sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The configuration whose tls_cert and tls_key SIGHUP reads again; NULL:
 * the process serves no HTTPS. */
static const config_t *tls_reload_cfg;

void cmd_tls_reload_on_sighup(const config_t *cfg) { tls_reload_cfg = cfg; }

/* SIGHUP: the certificate and key files read again and served from the
 * next handshake on; connections already open keep theirs.  A pair that
 * cannot be read or does not match keeps the old one. */
static void tls_reload(void) {
    if (!tls_reload_cfg || !tls_reload_cfg->tls_cert[0]) {
        log_write(LOG_INFO, NULL, "SIGHUP: no TLS certificate to reload", NULL);
        return;
    }
    char *cert = NULL, *key = NULL, err[200] = "";
    int rc = cmd_load_tls(tls_reload_cfg, &cert, &key);
    if (rc == 0) rc = http_tls_set(cert, key, err, sizeof err);
    else snprintf(err, sizeof err, "cannot read %s or %s", tls_reload_cfg->tls_cert, tls_reload_cfg->tls_key);
    if (key) sodium_memzero(key, strlen(key));
    free(cert);
    free(key);
    if (rc == 0) log_write(LOG_INFO, NULL, "TLS certificate reloaded", "tls_cert", tls_reload_cfg->tls_cert, NULL);
    else log_write(LOG_ERROR, NULL, "TLS certificate not reloaded: the old one is still served", "error", err, NULL);
}

/* Waits for SIGTERM or SIGINT (SIGHUP reloads the TLS certificate meanwhile;
 * the fault build re-arms on SIGUSR1). */
static int wait_for_stop_signal(const sigset_t *sigs) {
    int sig = 0;
    for (;;) {
        sigwait(sigs, &sig);
        if (sig == SIGHUP) tls_reload();
        else if (sig == SIGUSR1) fault_reload();
        else break;
    }
    log_write(LOG_INFO, NULL, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    return sig;
}

/* Stops accepting, waits for in-flight requests up to shutdown_timeout
 * seconds, stops the server; returns how many were still running. */
static int drain_and_stop(http_server *srv, int shutdown_timeout) {
    http_server_quiesce(srv);
    int64_t deadline = time_mono_ns() + (int64_t)shutdown_timeout * 1000000000LL;
    while (http_server_inflight(srv) > 0 && time_mono_ns() < deadline) usleep(20 * 1000);
    int left = http_server_inflight(srv);
    http_server_stop(srv);
    return left;
}

int cmd_wait_stop_signal(const sigset_t *sigs) { return wait_for_stop_signal(sigs); }

int cmd_drain_and_stop(http_server *srv, int shutdown_timeout) { return drain_and_stop(srv, shutdown_timeout); }

int cmd_logship_start(const config_t *c, const char *service, logship **out) {
    *out = NULL;
    if (!c->log_ship_url[0]) return 0;
    logship_options o = {.url = c->log_ship_url, .loki = !strcmp(c->log_ship_format, "loki"),
                         .buffer_bytes = (size_t)c->log_ship_buffer_bytes, .batch_bytes = 1 << 20,
                         .batch_lines = c->log_ship_batch_lines, .flush_ms = c->log_ship_flush_ms,
                         .timeout_ms = c->log_ship_timeout_ms, .retry_max_ms = c->log_ship_retry_max_ms,
                         .tls_ca = c->tls_ca, .sample = c->log_ship_sample, .service = service};
    int rc = logship_start(&o, out);
    if (rc != 0) fprintf(stderr, "cairn: cannot start log shipping: %s\n", cairn_strerror(rc));
    return rc;
}

void cmd_logship_stop(const config_t *c, logship *ls) {
    if (!ls) return;
    /* Within the stop's deadline; what is left is counted (and said on stderr). */
    uint64_t left = logship_stop(ls, c->log_ship_timeout_ms * 2);
    char n[24];
    if (left) log_write(LOG_WARN, NULL, "log shipping stopped with lines unsent", "lines", log_int(n, (long long)left), NULL);
}

/* ---- the server as services ---------------------------------------------------------- */

/* Everything a server or gateway runs; each service's start fills its part
 * and its stop frees it.  exit_code is what the process returns when a start
 * fails (the start printed why). */
typedef struct {
    config_t cfg;
    bool gateway;
    bool audit_only;           /* cairn audit-server: the audit store alone */
    int exit_code;
    int64_t started_ms;
    meta_store *ms;
    meta_store *audit_ms;      /* the audit store's events (audit_metadata_url): audit.db, or ms itself */
    unsigned char mk[32];
    root_creds root;
    meta_user root_user;
    data_store *ds;
    obs_registry *obs;
    s3_gateway *gw;
    audit_journal *audit;      /* NULL when audit_enabled is false */
    audit_shipper *shipper;    /* drains the journal into the store (NULL when audit is off) */
    audit_store *astore;       /* the audit store's API (docs/audit.md) */
    audit_mux *mux;            /* the audit store's paths in front of the S3 pipeline (server, gateway) */
    char *tls_cert, *tls_key;  /* PEM text, until the HTTP server has read it */
    int listen_fd;             /* the bound socket, until the HTTP server takes it (-1) */
    http_server *srv;
    int port;
    int abandoned;             /* requests still running when http stopped */
    scrubber *scrub;
    job_queue *jobs;
    membership *members;
    char holder[256];          /* this process in leases: "host:data_dir", the same across restarts */
    logship *logs;             /* log shipping (log_ship_url), or NULL */
    events_bus *bus;           /* the event bus (NULL: events_enabled is false) */
    events_hub *hub;           /* the event stream's sockets */
    events_notify *notify;     /* bucket notifications' delivery (the "notify" jobs) */
    kms *kms;                  /* the key manager (SSE-S3, SSE-KMS; the kms_rewrap jobs) */
} server;

static int fail_with(server *sv, int exit_code) {
    sv->exit_code = exit_code;
    return CAIRN_EINVAL;
}

static void metadata_stop(void *ud) {
    server *sv = ud;
    cmd_close_audit_meta(sv->ms, sv->audit_ms);
    sv->audit_ms = NULL;
    meta_close(sv->ms);
    sv->ms = NULL;
    sodium_memzero(sv->root.password, sizeof sv->root.password);
}

static int metadata_start(void *ud) {
    server *sv = ud;
    int rc = cmd_open_meta_for(&sv->cfg, true, &sv->ms, sv->mk);
    if (rc != 0) return fail_with(sv, rc);
    if ((rc = resolve_root(&sv->cfg, &sv->root)) == 0 &&
        meta_user_ensure_root(sv->ms, sv->root.user, &sv->root_user) != 0) {
        fprintf(stderr, "cairn: cannot record the root user\n");
        rc = 1;
    }
    if (rc == 0) rc = cmd_open_audit_meta(&sv->cfg, sv->ms, &sv->audit_ms);
    if (rc == 0) return 0;
    metadata_stop(sv); /* a start that fails leaves nothing open: its stop is not called */
    return fail_with(sv, rc);
}

static int data_start(void *ud) {
    server *sv = ud;
    int cleaned = 0;
    int rc = cmd_open_data(&sv->cfg, sv->ms, &sv->ds, &cleaned);
    if (rc != 0) return fail_with(sv, rc);
    data_set_heal_check(sv->ds, version_still_exists, sv->ms);
    if (cleaned) {
        char n[24];
        log_write(LOG_INFO, NULL, "removed temporary files of interrupted uploads", "count", log_int(n, cleaned), NULL);
    }
    return 0;
}

static void data_stop(void *ud) {
    server *sv = ud;
    data_close(sv->ds);
    sv->ds = NULL;
}

static int obs_start(void *ud) {
    server *sv = ud;
    if ((sv->obs = obs_new())) {
        if (!sv->cfg.metrics_enabled) obs_set_enabled(sv->obs, false);
        return 0;
    }
    fprintf(stderr, "cairn: out of memory\n");
    return fail_with(sv, 1);
}

static void obs_stop(void *ud) {
    server *sv = ud;
    obs_free(sv->obs);
    sv->obs = NULL;
}

/* The audit journal (docs/audit.md): started before the gateway, which
 * emits into it, and stopped after HTTP, so every request's event is in
 * and synced before it closes. */
static int audit_start(void *ud) {
    server *sv = ud;
    const config_t *c = &sv->cfg;
    if (!c->audit_enabled) {
        log_write(LOG_WARN, NULL, "audit trail off (audit_enabled: false): requests are not audited", NULL);
        return 0;
    }
    char dir[sizeof c->data_dir + 16];
    snprintf(dir, sizeof dir, "%s/audit", c->data_dir);
    audit_journal_opts o = {.dir = dir, .max_bytes = c->audit_journal_max_bytes,
                            .max_age_ms = (int64_t)c->audit_journal_max_age * 1000,
                            .segment_bytes = c->audit_journal_segment_bytes, .sync_ms = c->audit_sync_ms,
                            .overflow = strcmp(c->audit_overflow, "spool") == 0 ? AUDIT_OVERFLOW_SPOOL : AUDIT_OVERFLOW_REJECT,
                            .fsync = c->fsync};
    int rc = audit_journal_open(&o, &sv->audit);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn: cannot open the audit journal in %s: %s\n", dir, cairn_strerror(rc));
    return fail_with(sv, 1);
}

static void audit_stop(void *ud) {
    server *sv = ud;
    audit_journal_close(sv->audit); /* syncs what is queued; logs the unshipped count */
    sv->audit = NULL;
}

/* The audit shipper (docs/audit.md, "The shipper"): after the journal and
 * the metadata, before HTTP, so it stops after the last request's event is
 * in the journal and ships it before the journal closes. */
static int shipper_start(void *ud) {
    server *sv = ud;
    const config_t *c = &sv->cfg;
    if (!sv->audit) return 0;
    char dir[sizeof c->data_dir + 16];
    snprintf(dir, sizeof dir, "%s/audit", c->data_dir);
    bool own_keys = c->audit_access_key[0] != '\0';
    audit_shipper_opts o = {.journal = sv->audit, .meta = sv->audit_ms, .url = c->audit_url,
                            .access_key = own_keys ? c->audit_access_key : sv->root.user,
                            .secret_key = own_keys ? c->audit_secret_key : sv->root.password,
                            .region = c->region, .batch_size = c->audit_batch_size,
                            .flush_interval_ms = c->audit_flush_interval, .timeout_ms = c->audit_timeout_ms,
                            .tls_ca = c->tls_ca,
                            .max_retries = c->audit_max_retries,
                            .dlq = {.dir = dir, .redis_url = c->audit_dlq_stream[0] ? c->redis_url : "",
                                    .stream = c->audit_dlq_stream, .redis_timeout_ms = c->redis_timeout_ms,
                                    .fsync = c->fsync}};
    int rc = audit_shipper_start(&o, &sv->shipper);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn: cannot start the audit shipper: %s\n", cairn_strerror(rc));
    return fail_with(sv, 1);
}

static void shipper_stop(void *ud) {
    server *sv = ud;
    /* whatever is not sent by then stays in the journal for the next start */
    audit_shipper_close(sv->shipper, sv->cfg.shutdown_timeout * 1000);
    sv->shipper = NULL;
}

/* The event bus and the stream's hub (docs/events.md): up before everything
 * that publishes (the gateway's hook, status events from membership, jobs
 * and healing), down after them.  The hub's sockets are hung up when HTTP
 * stops (http_stop), before the HTTP server goes. */
static int events_start(void *ud) {
    server *sv = ud;
    const config_t *c = &sv->cfg;
    if (!c->events_enabled) return 0;
    bool insecure = !c->events_allowed_origins[0];
    events_hub_options ho = {.max_sockets = c->events_max_sockets, .send_queue_bytes = (size_t)c->events_send_queue_bytes,
                             .ping_interval_ms = c->events_ping_interval, .pong_timeout_ms = c->events_pong_timeout,
                             .insecure_origins = insecure};
    char why[200] = "";
    int rc = events_hub_new(&ho, &sv->hub);
    events_bus_options bo = {.redis_url = c->redis_url, .redis_timeout_ms = c->events_redis_timeout,
                             .retry_max_ms = c->events_retry_max, .retry_attempts = c->events_retry_attempts,
                             .hub = sv->hub};
    if (rc == 0) rc = events_bus_new(&bo, &sv->bus, why, sizeof why);
    if (rc == 0) {
        status_set_sink(events_bus_status_sink, sv->bus);
        return 0;
    }
    events_hub_free(sv->hub);
    sv->hub = NULL;
    fprintf(stderr, "cairn: cannot start the event stream: %s\n", why[0] ? why : cairn_strerror(rc));
    return fail_with(sv, 1);
}

static void events_stop(void *ud) {
    server *sv = ud;
    status_set_sink(NULL, NULL);
    events_bus_free(sv->bus);
    events_hub_free(sv->hub);
    sv->bus = NULL;
    sv->hub = NULL;
}

/* What the gateway asks of the job queue (s3_jobs), over the server's stores. */
static void gateway_job_metrics(void *ud, buf_t *out) {
    server *sv = ud;
    jobs_render_metrics(sv->ms, out);
    logship_render_metrics(sv->logs, out);
    audit_shipper_render_metrics(sv->shipper, out);
    events_bus_render_metrics(sv->bus, out);
    events_hub_render_metrics(sv->hub, out);
    events_notify_render_metrics(sv->notify, out);
}

static int gateway_empty_trash(void *ud, int max_batches, int *removed) {
    server *sv = ud;
    return jobs_empty_trash(sv->ms, sv->ds, max_batches, removed);
}

static int gateway_empty_trash_later(void *ud) { return jobs_enqueue_empty_trash(((server *)ud)->ms); }

static void gateway_jobs_wake(void *ud) { jobs_wake(((server *)ud)->jobs); }

static int gateway_start(void *ud) {
    server *sv = ud;
    s3_deps deps = {.cfg = &sv->cfg, .meta = sv->ms, .data = sv->ds, .obs = sv->obs, .root_access_key = sv->root.user,
                    .root_secret = sv->root.password, .root_user_id = sv->root_user.id,
                    .jobs = {sv, gateway_job_metrics, gateway_empty_trash, gateway_empty_trash_later, gateway_jobs_wake},
                    .audit = sv->audit, .events = sv->bus, .events_hub = sv->hub, .kms = sv->kms};
    memcpy(deps.master_key, sv->mk, 32);
    int rc = s3_gateway_new(&deps, &sv->gw);
    sodium_memzero(deps.master_key, sizeof deps.master_key);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn: out of memory\n");
    return fail_with(sv, 1);
}

/* The key manager: opened after the metadata, closed after everything
 * that wraps with it (the gateway, the jobs) has stopped. */
static int kms_start(void *ud) {
    server *sv = ud;
    int rc = kms_open(sv->ms, sv->mk, &sv->kms);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn: cannot start the key manager: %s\n", cairn_strerror(rc));
    return fail_with(sv, 1);
}

static void kms_stop(void *ud) {
    server *sv = ud;
    kms_close(sv->kms);
    sv->kms = NULL;
}

static void gateway_stop(void *ud) {
    server *sv = ud;
    s3_gateway_free(sv->gw);
    sv->gw = NULL;
}

/* The audit store (docs/audit.md): alone for cairn audit-server, else in
 * front of the S3 pipeline, on /audit/v1/. */
static int auditstore_start(void *ud) {
    server *sv = ud;
    audit_store_options ao = {.meta = sv->ms, .events = sv->audit_ms, .obs = sv->obs, .master_key = sv->mk,
                              .root_access_key = sv->root.user, .root_secret = sv->root.password,
                              .root_user_id = sv->root_user.id, .region = sv->cfg.region,
                              .clock_skew = sv->cfg.clock_skew, .max_body_bytes = sv->cfg.audit_max_batch_bytes,
                              .journal = sv->audit, .record_direct = sv->audit_only && sv->cfg.audit_enabled};
    int rc = audit_store_new(&ao, &sv->astore);
    if (rc == 0 && !sv->audit_only) rc = audit_mux_new(sv->astore, s3_http_handler(), sv->gw, sv->cfg.domain, &sv->mux);
    if (rc == 0) return 0;
    audit_store_free(sv->astore);
    sv->astore = NULL;
    fprintf(stderr, "cairn: cannot start the audit store: %s\n", cairn_strerror(rc));
    return fail_with(sv, 1);
}

static void auditstore_stop(void *ud) {
    server *sv = ud;
    audit_mux_free(sv->mux);
    audit_store_free(sv->astore);
    sv->mux = NULL;
    sv->astore = NULL;
}

/* Background work is best effort at start: a part that cannot start is
 * logged and the server serves without it, as before the registry. */
static int scrubber_start(void *ud) {
    server *sv = ud;
    jobs_lease_options lo = {.holder = sv->holder, .ttl_ms = sv->cfg.leader_lease_ms};
    int rc = scrub_start(sv->ms, sv->ds, sv->obs, sv->cfg.scrub_interval, sv->cfg.scrub_rate, &lo, &sv->scrub);
    if (rc != 0) log_write(LOG_WARN, NULL, "scrubber not started", "error", cairn_strerror(rc), NULL);
    return 0;
}

static void scrubber_stop(void *ud) {
    server *sv = ud;
    scrub_stop(sv->scrub);
    sv->scrub = NULL;
}

/* The age below which the start-up orphan pass leaves an unreferenced shard
 * alone (jobs_enqueue_startup_orphans).  A server's drives, and the nodes of
 * a gateway on SQLite (one process per database: its lock), are written by
 * this process only, so whatever is unreferenced and older than this start
 * is what a crash left: 0.  Gateways sharing a PostgreSQL database share
 * their nodes: a shard another gateway wrote just before this start may be
 * waiting for its commit.  That wait is bounded by a shard call's timeout
 * (the slowest node's answer) and a commit's (a free connection, then its
 * statements): twice their sum covers it.  With no statement timeout the
 * commit has no bound, and the periodic pass's hour is used.  Decision 0013. */
static int64_t startup_orphan_age_ms(const server *sv) {
    const config_t *c = &sv->cfg;
    if (!sv->gateway || strcmp(meta_backend_name(sv->ms), "postgres") != 0) return 0;
    if (c->db_statement_timeout_ms <= 0) return 3600 * 1000;
    return 2 * ((int64_t)c->shard_timeout_ms + c->db_acquire_timeout_ms + c->db_statement_timeout_ms + 2000);
}

/* Opens a webhook target's sealed secret with the master key. */
static int open_target_secret(void *ud, const char *sealed, buf_t *out) {
    return auth_secret_open(((server *)ud)->mk, sealed, out);
}

static int jobs_start(void *ud) {
    server *sv = ud;
    const config_t *c = &sv->cfg;
    job_options jo = {.workers = c->job_workers, .lease_ms = c->job_lease_ms, .backoff_base_ms = c->job_backoff_base_ms,
                      .backoff_max_ms = c->job_backoff_max_ms, .poll_ms = c->job_poll_ms, .periodic_s = c->job_period_s};
    jobs_builtin_options jbo = {.multipart_expiry_s = c->multipart_expiry, .retention_s = c->job_retention_s,
                                .discarded_retention_s = c->job_discarded_retention_s};
    if (sv->audit_only) {
        /* The audit store's own kind and the pruning of finished jobs:
         * it has no data to collect, heal or expire. */
        if (jobs_queue_new(sv->ms, sv->obs, &jo, &sv->jobs) != 0 ||
            jobs_register_audit(sv->jobs, sv->audit_ms, c->audit_retention_days) != 0 ||
            jobs_register_prune(sv->jobs, sv->ms, &jbo) != 0 || jobs_queue_start(sv->jobs) != 0)
            log_write(LOG_WARN, NULL, "job queue not fully started: out of memory", NULL);
        return 0;
    }
    events_notify_options no = {.meta = sv->ms, .timeout_ms = c->notify_timeout_ms, .max_pending = c->notify_max_pending,
                                .tls_ca = c->tls_ca, .open_secret = open_target_secret, .secret_ud = sv};
    if (jobs_queue_new(sv->ms, sv->obs, &jo, &sv->jobs) != 0 || jobs_register_builtin(sv->jobs, sv->ms, sv->ds, &jbo) != 0 ||
        jobs_register_audit(sv->jobs, sv->audit_ms, c->audit_retention_days) != 0 ||
        events_notify_new(&no, &sv->notify) != 0 || jobs_register(sv->jobs, "notify", events_notify_job, sv->notify) != 0 ||
        s3_lifecycle_register(sv->jobs, sv->ms, sv->ds, sv->bus, c) != 0 ||
        jobs_register_kms_rewrap(sv->jobs, sv->ms, sv->kms) != 0 || jobs_queue_start(sv->jobs) != 0)
        log_write(LOG_WARN, NULL, "job queue not fully started: out of memory", NULL);
    else
        data_set_heal_sink(sv->ds, jobs_enqueue_heal, sv->ms); /* heals become durable, retried jobs */
    /* What a crash left goes now, not at the next period: the trash, and the
     * shards written but never committed before this start. */
    jobs_enqueue_empty_trash(sv->ms);
    jobs_enqueue_startup_orphans(sv->ms, sv->started_ms, startup_orphan_age_ms(sv));
    return 0;
}

static void jobs_stop(void *ud) {
    server *sv = ud;
    /* Heals that reads queued go to the durable queue before it is
     * withdrawn: none is dropped or run inline by the exit. */
    if (sv->ds) {
        data_heal_drain(sv->ds);
        data_set_heal_sink(sv->ds, NULL, NULL);
    }
    jobs_queue_free(sv->jobs);
    sv->jobs = NULL;
    events_notify_free(sv->notify);     /* its workers are gone with the queue */
    sv->notify = NULL;
}

static int membership_run(void *ud) {
    server *sv = ud;
    /* The configured nodes join the registry, where admins add, drain and
     * remove nodes for every gateway sharing this database. */
    data_check_drives(sv->ds, register_node, sv->ms);
    jobs_lease_options lo = {.holder = sv->holder, .ttl_ms = sv->cfg.leader_lease_ms};
    int rc = membership_start(sv->ms, sv->ds, sv->obs, sv->cfg.node_heartbeat_ms, &lo, &sv->members);
    if (rc != 0) log_write(LOG_WARN, NULL, "membership thread not started", "error", cairn_strerror(rc), NULL);
    return 0;
}

static void membership_end(void *ud) {
    server *sv = ud;
    membership_stop(sv->members);
    sv->members = NULL;
}

/* The TLS files and the port come first: a server that cannot have them
 * refuses to start before it opens or runs anything else. */
static int tls_start(void *ud) {
    server *sv = ud;
    int rc = cmd_load_tls(&sv->cfg, &sv->tls_cert, &sv->tls_key);
    return rc == 0 ? 0 : fail_with(sv, rc);
}

static void tls_forget(server *sv) {
    if (sv->tls_key) sodium_memzero(sv->tls_key, strlen(sv->tls_key));
    free(sv->tls_cert);
    free(sv->tls_key);
    sv->tls_cert = sv->tls_key = NULL;
}

static void tls_stop(void *ud) { tls_forget(ud); }

static int listener_start(void *ud) {
    server *sv = ud;
    char err[256];
    if (http_listener_open(sv->cfg.listen, &sv->listen_fd, &sv->port, err, sizeof err) == 0) return 0;
    sv->listen_fd = -1;
    fprintf(stderr, "cairn: %s\n", err);
    return fail_with(sv, 1);
}

static void listener_stop(void *ud) {
    server *sv = ud;
    if (sv->listen_fd >= 0) close(sv->listen_fd);
    sv->listen_fd = -1;
}

static int http_start(void *ud) {
    server *sv = ud;
    const config_t *c = &sv->cfg;
    http_options ho = {.listen = c->listen, .connection_limit = c->connection_limit,
                       .upgraded_limit = sv->hub ? c->events_max_sockets : 0,
                       .connection_timeout = c->connection_timeout, .max_header_bytes = c->max_header_bytes,
                       .connection_limit_per_ip = c->connection_limit_per_ip, .header_timeout = c->client_header_timeout,
                       .min_body_rate = c->min_body_rate, .min_drain_rate = c->min_body_rate,
                       .body_rate_window = c->min_body_rate_window, .tls_cert_pem = sv->tls_cert,
                       .tls_key_pem = sv->tls_key, .have_listen_fd = true, .listen_fd = sv->listen_fd};
    char err[256];
    sv->listen_fd = -1; /* the server takes it, whatever happens */
    /* Said when the stream is about to be served, not before a start that fails. */
    if (sv->hub && !c->events_allowed_origins[0])
        log_write(LOG_WARN, NULL, "events_allowed_origins is empty: a page of any origin may open /events/ws "
                  "with a presigned URL it holds", NULL);
    int rc = sv->audit_only ? http_server_start(&ho, audit_store_handler(), sv->astore, &sv->srv, NULL, err, sizeof err)
                            : http_server_start(&ho, audit_mux_handler(), sv->mux, &sv->srv, NULL, err, sizeof err);
    tls_forget(sv); /* read by now */
    if (rc == 0 && sv->cfg.tls_cert[0]) cmd_tls_reload_on_sighup(&sv->cfg);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn: %s\n", err);
    return fail_with(sv, 1);
}

static void http_stop(void *ud) {
    server *sv = ud;
    /* Upgraded connections are their owner's to close before the server
     * stops (http.h): every stream socket gets its hangup first. */
    events_hub_hangup_all(sv->hub, WS_CLOSE_GOING_AWAY, "server shutting down", true);
    sv->abandoned = drain_and_stop(sv->srv, sv->cfg.shutdown_timeout);
    sv->srv = NULL;
}

/* Log shipping: first up and last down, so it carries every line between. */
static int logship_svc_start(void *ud) {
    server *sv = ud;
    const char *service = sv->audit_only ? "audit-server" : sv->gateway ? "gateway" : "server";
    return cmd_logship_start(&sv->cfg, service, &sv->logs) == 0 ? 0 : fail_with(sv, 1);
}

static void logship_svc_stop(void *ud) {
    server *sv = ud;
    cmd_logship_stop(&sv->cfg, sv->logs);
    sv->logs = NULL;
}

/* The services of a server or gateway and what each needs.  The HTTP server
 * starts last, once everything it may call on runs, and so stops first. */
static int register_services(svc_registry *r, server *sv) {
    const svc_def defs[] = {
        {"logship", NULL, logship_svc_start, logship_svc_stop, sv, 0},
        {"tls", NULL, tls_start, tls_stop, sv, 0},
        {"listener", NULL, listener_start, listener_stop, sv, 0},
        {"events", NULL, events_start, events_stop, sv, 0},
        {"metadata", NULL, metadata_start, metadata_stop, sv, 0},
        {"data", "metadata", data_start, data_stop, sv, 0},
        {"obs", NULL, obs_start, obs_stop, sv, 0},
        {"audit", NULL, audit_start, audit_stop, sv, 0},
        {"kms", "metadata", kms_start, kms_stop, sv, 0},
        {"gateway", "metadata,kms,data,obs,audit,events", gateway_start, gateway_stop, sv, 0},
        {"auditstore", "metadata,obs,gateway,audit", auditstore_start, auditstore_stop, sv, 0},
        {"shipper", "metadata,audit", shipper_start, shipper_stop, sv, sv->cfg.shutdown_timeout * 1000 + 5000},
        {"scrubber", "metadata,data,obs,events", scrubber_start, scrubber_stop, sv, 0},
        {"jobs", "metadata,kms,data,obs,events", jobs_start, jobs_stop, sv, 0},
        {"membership", "metadata,data,obs,events", membership_run, membership_end, sv, 0},
        {"http",
         sv->gateway ? "tls,listener,gateway,audit,auditstore,shipper,scrubber,jobs,membership"
                     : "tls,listener,gateway,audit,auditstore,shipper,scrubber,jobs",
         http_start, http_stop, sv,
         /* in-flight requests get shutdown_timeout, the stop a little more */
         sv->cfg.shutdown_timeout * 1000 + 10000},
    };
    /* cairn audit-server: the store, its metadata and its retention job. */
    const svc_def alone[] = {
        {"logship", NULL, logship_svc_start, logship_svc_stop, sv, 0},
        {"tls", NULL, tls_start, tls_stop, sv, 0},
        {"listener", NULL, listener_start, listener_stop, sv, 0},
        {"metadata", NULL, metadata_start, metadata_stop, sv, 0},
        {"obs", NULL, obs_start, obs_stop, sv, 0},
        {"auditstore", "metadata,obs", auditstore_start, auditstore_stop, sv, 0},
        {"jobs", "metadata,obs", jobs_start, jobs_stop, sv, 0},
        {"http", "tls,listener,auditstore,jobs", http_start, http_stop, sv, sv->cfg.shutdown_timeout * 1000 + 10000},
    };
    const svc_def *use = sv->audit_only ? alone : defs;
    size_t n = sv->audit_only ? sizeof alone / sizeof alone[0] : sizeof defs / sizeof defs[0];
    for (size_t i = 0; i < n; i++) {
        if (!sv->gateway && !strcmp(use[i].name, "membership")) continue;
        int rc = svc_add(r, &use[i]);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Who this process is in leases: the host and the data directory, which
 * the directory's lock gives to one process at a time.  The same across
 * restarts, so a gateway killed and restarted takes its leases back at once
 * instead of waiting for them to expire. */
static void lease_holder(const config_t *cfg, char *out, size_t n) {
    char host[256] = "", dir[PATH_MAX];
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    if (!realpath(cfg->data_dir, dir)) snprintf(dir, sizeof dir, "%s", cfg->data_dir);
    snprintf(out, n, "%.64s:%s", host, dir);
}

typedef enum { RUN_SERVER, RUN_GATEWAY, RUN_AUDIT } run_mode;

static int run(int argc, char **argv, run_mode mode);

int cmd_server(int argc, char **argv) { return run(argc, argv, RUN_SERVER); }
int cmd_gateway(int argc, char **argv) { return run(argc, argv, RUN_GATEWAY); }
int cmd_audit_server(int argc, char **argv) { return run(argc, argv, RUN_AUDIT); }

/* Stops that outlast this are left running and the process exits with them. */
#define SERVICE_STOP_TIMEOUT_MS 60000

static int run(int argc, char **argv, run_mode mode) {
    bool gateway = mode == RUN_GATEWAY, audit_only = mode == RUN_AUDIT;
    const char *name = audit_only ? "audit-server" : gateway ? "gateway" : "server";
    sigset_t sigs;
    server *sv = calloc(1, sizeof *sv);
    if (!sv) {
        fprintf(stderr, "cairn: out of memory\n");
        return 1;
    }
    int rc = cmd_service_begin(argc, argv, name,
                               audit_only ? "cairn audit-server [--listen ADDR:PORT] [--data DIR] [--config FILE]"
                               : gateway  ? "cairn gateway [--listen ADDR:PORT] [--data DIR] [--config FILE] --nodes URL,URL,..."
                                          : "cairn server [--listen ADDR:PORT] [--data DIR] [--config FILE] [--drives DIR,...]",
                               &sigs, &sv->cfg);
    if (rc == 0 && gateway && (!sv->cfg.nodes[0] || !sv->cfg.cluster_secret[0])) {
        fprintf(stderr, "cairn gateway: set nodes (--nodes URL,...) and cluster_secret (CAIRN_CLUSTER_SECRET)\n");
        rc = 2;
    }
    if (rc == 0 && audit_only && (sv->cfg.nodes[0] || sv->cfg.drives[0])) {
        fprintf(stderr, "cairn audit-server: it stores audit events only; nodes and drives are for the gateway\n");
        rc = 2;
    }
    if (rc == 0 && !gateway && !audit_only && sv->cfg.nodes[0]) {
        fprintf(stderr, "cairn server: nodes are for `cairn gateway`; the server keeps data on --drives\n");
        rc = 2;
    }
    int lock_fd[2] = {-1, -1};
    if (rc == 0) rc = cmd_lock_data_dir(&sv->cfg, lock_fd);
    if (rc != 0) {
        free(sv);
        return rc;
    }
    sv->gateway = gateway;
    sv->audit_only = audit_only;
    sv->listen_fd = -1;
    sv->started_ms = time_now_ms();
    lease_holder(&sv->cfg, sv->holder, sizeof sv->holder);
    svc_registry *services = NULL;
    char why[256];
    rc = svc_registry_new(SERVICE_STOP_TIMEOUT_MS, &services);
    if (rc == 0) rc = register_services(services, sv);
    if (rc == 0) rc = svc_start_all(services, why, sizeof why);
    if (rc != 0) {
        /* A start that failed printed why (exit_code); anything else is ours. */
        if (!sv->exit_code) fprintf(stderr, "cairn: cannot start: %s\n", why[0] ? why : cairn_strerror(rc));
        rc = sv->exit_code ? sv->exit_code : 1;
        svc_registry_free(services);
        cmd_unlock_data_dir(lock_fd);
        free(sv);
        return rc;
    }
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", sv->port);
    log_write(LOG_INFO, NULL, "listening", "listen", sv->cfg.listen, "port", portstr, "data_dir", sv->cfg.data_dir, NULL);
    print_banner(&sv->cfg, sv->port, &sv->root, name);

    wait_for_stop_signal(&sigs);
    int stopped = svc_stop_all(services);
    svc_registry_free(services);
    char left[24];
    log_write(LOG_INFO, NULL, "stopped", "abandoned_requests", log_int(left, sv->abandoned), NULL);
    if (stopped != 0) {
        /* A stop still runs: what it may use stays allocated; exit now. */
        return 1;
    }
    cmd_unlock_data_dir(lock_fd);
    sodium_memzero(sv, sizeof *sv);
    free(sv);
    return 0;
}
