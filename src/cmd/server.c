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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "cmd/cmd.h"
#include "data/data.h"
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

static void print_banner(const config_t *cfg, int port, const root_creds *rc, bool gateway) {
    char host[128];
    snprintf(host, sizeof host, "%s", cfg->listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    if (!strcmp(host, "0.0.0.0") || !host[0]) snprintf(host, sizeof host, "127.0.0.1");
    const char *scheme = cfg->tls_cert[0] ? "https" : "http";
    printf("cairn %s listening on %s://%s:%d\n", gateway ? "gateway" : "server", scheme, host, port);
    printf("data directory: %s\n", cfg->data_dir);
    printf("access key: %s\n", rc->user);
    if (rc->generated)
        printf("secret key: %s\n(generated on first start and stored in %s/root-credentials, mode 0600)\n",
               rc->password, cfg->data_dir);
    else if (rc->from_file)
        printf("secret key: stored in %s/root-credentials\n", cfg->data_dir);
    else
        printf("secret key: from CAIRN_ROOT_PASSWORD\n");
    printf("try: AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=... aws --endpoint-url %s://%s:%d s3 ls\n",
           rc->user, scheme, host, port);
    fflush(stdout);
}

static char *read_pem(const char *path) {
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
    *cert = read_pem(cfg->tls_cert);
    *key = read_pem(cfg->tls_key);
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
    /* The fault build re-arms fault injection on SIGUSR1 (fault_reload). */
    if (CAIRN_FAULT_BUILD) sigaddset(sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cmd_serve_until_signal(http_server *srv, const sigset_t *sigs, int shutdown_timeout) {
    int sig = 0;
    for (;;) {
        sigwait(sigs, &sig);
        if (sig != SIGUSR1) break;
        fault_reload();
    }
    log_write(LOG_INFO, NULL, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    http_server_quiesce(srv);
    int64_t deadline = time_mono_ns() + (int64_t)shutdown_timeout * 1000000000LL;
    while (http_server_inflight(srv) > 0 && time_mono_ns() < deadline) usleep(20 * 1000);
    int left = http_server_inflight(srv);
    http_server_stop(srv);
    return left;
}

static int run(int argc, char **argv, bool gateway);

int cmd_server(int argc, char **argv) { return run(argc, argv, false); }
int cmd_gateway(int argc, char **argv) { return run(argc, argv, true); }

static int run(int argc, char **argv, bool gateway) {
    sigset_t sigs;
    config_t cfg;
    int rc = cmd_service_begin(argc, argv, gateway ? "gateway" : "server",
                               gateway ? "cairn gateway [--listen ADDR:PORT] [--data DIR] [--config FILE] --nodes URL,URL,..."
                                       : "cairn server [--listen ADDR:PORT] [--data DIR] [--config FILE] [--drives DIR,...]",
                               &sigs, &cfg);
    if (rc != 0) return rc;
    if (gateway && (!cfg.nodes[0] || !cfg.cluster_secret[0])) {
        fprintf(stderr, "cairn gateway: set nodes (--nodes URL,...) and cluster_secret (CAIRN_CLUSTER_SECRET)\n");
        return 2;
    }
    if (!gateway && cfg.nodes[0]) {
        fprintf(stderr, "cairn server: nodes are for `cairn gateway`; the server keeps data on --drives\n");
        return 2;
    }

    int64_t started_ms = time_now_ms();
    int lock_fd[2] = {-1, -1};
    if ((rc = cmd_lock_data_dir(&cfg, lock_fd)) != 0) return rc;
    meta_store *ms = NULL;
    unsigned char mk[32];
    if ((rc = cmd_open_meta(&cfg, &ms, mk)) != 0) return rc;
    root_creds root;
    if ((rc = resolve_root(&cfg, &root)) != 0) {
        meta_close(ms);
        return rc;
    }
    meta_user root_user;
    if (meta_user_ensure_root(ms, root.user, &root_user) != 0) {
        fprintf(stderr, "cairn: cannot record the root user\n");
        meta_close(ms);
        return 1;
    }
    data_store *ds = NULL;
    int cleaned = 0;
    if ((rc = cmd_open_data(&cfg, ms, &ds, &cleaned)) != 0) {
        meta_close(ms);
        return rc;
    }
    data_set_heal_check(ds, version_still_exists, ms);
    if (cleaned) {
        char n[24];
        log_write(LOG_INFO, NULL, "removed temporary files of interrupted uploads", "count", log_int(n, cleaned), NULL);
    }
    obs_registry *obs = obs_new();
    s3_deps deps = {.cfg = &cfg, .meta = ms, .data = ds, .obs = obs, .root_access_key = root.user,
                    .root_secret = root.password, .root_user_id = root_user.id};
    memcpy(deps.master_key, mk, 32);
    s3_gateway *gw = NULL;
    if (!obs || s3_gateway_new(&deps, &gw) != 0) {
        fprintf(stderr, "cairn: out of memory\n");
        return 1;
    }
    char *tls_cert = NULL, *tls_key = NULL;
    if ((rc = cmd_load_tls(&cfg, &tls_cert, &tls_key)) != 0) return rc;
    http_options ho = {.listen = cfg.listen, .connection_limit = cfg.connection_limit,
                       .connection_timeout = cfg.connection_timeout, .max_header_bytes = cfg.max_header_bytes,
                       .connection_limit_per_ip = cfg.connection_limit_per_ip,
                       .header_timeout = cfg.client_header_timeout, .min_body_rate = cfg.min_body_rate,
                       .min_drain_rate = cfg.min_body_rate, .body_rate_window = cfg.min_body_rate_window,
                       .tls_cert_pem = tls_cert, .tls_key_pem = tls_key};
    http_server *srv = NULL;
    int port = 0;
    char err[256];
    int started = http_server_start(&ho, s3_http_handler(), gw, &srv, &port, err, sizeof err);
    if (tls_key) sodium_memzero(tls_key, strlen(tls_key));
    free(tls_cert);
    free(tls_key);
    if (started != 0) {
        fprintf(stderr, "cairn: %s\n", err);
        s3_gateway_free(gw);
        data_close(ds);
        meta_close(ms);
        obs_free(obs);
        return 1;
    }
    scrubber *scrub = NULL;
    if (scrub_start(ms, ds, obs, cfg.scrub_interval, cfg.scrub_rate, &scrub) != 0)
        log_write(LOG_WARN, NULL, "scrubber not started: out of memory", NULL);
    job_queue *jobs = NULL;
    job_options jo = {.workers = cfg.job_workers, .lease_ms = cfg.job_lease_ms,
                      .backoff_base_ms = cfg.job_backoff_base_ms, .backoff_max_ms = cfg.job_backoff_max_ms,
                      .poll_ms = 250, .periodic_s = cfg.job_period_s};
    jobs_builtin_options jbo = {.multipart_expiry_s = cfg.multipart_expiry, .retention_s = cfg.job_retention_s,
                                .discarded_retention_s = cfg.job_discarded_retention_s};
    if (jobs_queue_new(ms, obs, &jo, &jobs) != 0 || jobs_register_builtin(jobs, ms, ds, &jbo) != 0 ||
        jobs_queue_start(jobs) != 0)
        log_write(LOG_WARN, NULL, "job queue not fully started: out of memory", NULL);
    else
        data_set_heal_sink(ds, jobs_enqueue_heal, ms); /* heals become durable, retried jobs */
    /* What a crash left goes now, not at the next period: the trash, and the
     * shards written but never committed before this start. */
    jobs_enqueue_empty_trash(ms);
    jobs_enqueue_startup_orphans(ms, started_ms);
    membership *members = NULL;
    if (gateway) {
        /* The configured nodes join the registry, where admins add, drain and
         * remove nodes for every gateway sharing this database. */
        data_check_drives(ds, register_node, ms);
        if (membership_start(ms, ds, obs, cfg.node_heartbeat_ms, &members) != 0)
            log_write(LOG_WARN, NULL, "membership thread not started: out of memory", NULL);
    }
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    log_write(LOG_INFO, NULL, "listening", "listen", cfg.listen, "port", portstr, "data_dir", cfg.data_dir, NULL);
    print_banner(&cfg, port, &root, gateway);

    int inflight = cmd_serve_until_signal(srv, &sigs, cfg.shutdown_timeout);
    char left[24];
    membership_stop(members);
    scrub_stop(scrub);
    /* Heals that reads queued go to the durable queue before it is
     * withdrawn: none is dropped or run inline by the exit. */
    data_heal_drain(ds);
    data_set_heal_sink(ds, NULL, NULL);
    jobs_queue_free(jobs);
    s3_gateway_free(gw);
    data_close(ds);
    meta_close(ms);
    obs_free(obs);
    sodium_memzero(root.password, sizeof root.password);
    cmd_unlock_data_dir(lock_fd);
    log_write(LOG_INFO, NULL, "stopped", "abandoned_requests", log_int(left, inflight), NULL);
    return 0;
}
