/*
 * admin.c — operator commands that work directly on a data directory's
 * metadata database (safe beside a running server: SQLite WAL serializes the
 * writers), plus the helpers server.c shares: configuration loading and the
 * master key that seals access-key secrets.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "cache/tiered.h"
#include "cmd/cmd.h"
#include "crypt/kms.h"
#include "data/data.h"
#include "jobs/jobs.h"
#include "s3/s3.h"

#include <jansson.h>
#include <sodium.h>


extern char **environ;

static void print_errors(const char *source, const config_errors *e) {
    for (int i = 0; i < e->count; i++)
        fprintf(stderr, "cairn: %s: %s: %s\n", source, e->items[i].key, e->items[i].reason);
    if (e->total > e->count) fprintf(stderr, "cairn: %s: ... and %d more\n", source, e->total - e->count);
}

static const struct { const char *flag, *key; } flag_keys[] = {
    {"--listen", "listen"}, {"--data", "data_dir"}, {"--domain", "domain"},
    {"--log-level", "log_level"}, {"--region", "region"}, {"--drives", "drives"}, {"--nodes", "nodes"},
    {"--metadata-url", "metadata_url"},
};

int cmd_load_config(int argc, char **argv, config_t *cfg, char **rest, int *nrest) {
    if (core_init() != 0) {
        fprintf(stderr, "cairn: cannot initialise libsodium\n");
        return 1;
    }
    if (argc > CMD_MAX_ARGS) {
        fprintf(stderr, "cairn: too many arguments\n");
        return 2;
    }
    config_defaults(cfg);
    const char *file = NULL;
    const char *flag_vals[sizeof flag_keys / sizeof flag_keys[0]] = {0};
    *nrest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        int matched = -1;
        size_t al = strcspn(a, "=");
        if (!strncmp(a, "--config", al) && al == 8) matched = 100;
        for (size_t k = 0; k < sizeof flag_keys / sizeof flag_keys[0]; k++)
            if (strlen(flag_keys[k].flag) == al && !strncmp(a, flag_keys[k].flag, al)) matched = (int)k;
        if (matched < 0) {
            rest[(*nrest)++] = argv[i];
            continue;
        }
        if (a[al] == '=') val = a + al + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            fprintf(stderr, "cairn: %.*s needs a value\n", (int)al, a);
            return 2;
        }
        if (matched == 100) file = val;
        else flag_vals[matched] = val;
    }
    if (!file && getenv("CAIRN_CONFIG") && *getenv("CAIRN_CONFIG")) file = getenv("CAIRN_CONFIG");
    config_errors errs = {0};
    if (file && config_load_file(cfg, file, &errs) != 0) {
        print_errors(file, &errs);
        return 2;
    }
    memset(&errs, 0, sizeof errs);
    if (config_load_env(cfg, environ, &errs) != 0) {
        print_errors("environment", &errs);
        return 2;
    }
    memset(&errs, 0, sizeof errs);
    for (size_t k = 0; k < sizeof flag_keys / sizeof flag_keys[0]; k++)
        if (flag_vals[k]) config_set(cfg, flag_keys[k].key, flag_vals[k], &errs);
    if (errs.total) {
        print_errors("flags", &errs);
        return 2;
    }
    if (config_validate(cfg, &errs) != 0) {
        print_errors("configuration", &errs);
        return 2;
    }
    /* What this process shows nodes that ask for a client certificate. */
    tls_client_identity_set(cfg->tls_client_cert, cfg->tls_client_key);
    return 0;
}

/* Reads a key file: 64 hex digits (a newline may follow). */
static int read_key_file(const char *path, unsigned char key[32]) {
    char hex[80] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? CAIRN_ENOTFOUND : CAIRN_EIO;
    ssize_t r = read(fd, hex, sizeof hex - 1);
    close(fd);
    size_t n = 0;
    bool ok = r >= 64 && (r == 64 || hex[64] == '\n' || hex[64] == '\r') && hex_decode(hex, 64, key, 32, &n) == 0 &&
              n == 32;
    sodium_memzero(hex, sizeof hex);
    return ok ? 0 : CAIRN_EINVAL;
}

/* The master key: master_key, else master_key_file (which must exist: a
 * cluster's gateways share it), else DATA/master.key, made on first use
 * (64 hex chars, mode 0600).  Prints why it cannot be had. */
static int load_master_key(const config_t *cfg, unsigned char key[32]) {
    size_t n = 0;
    if (cfg->master_key[0]) {
        if (hex_decode(cfg->master_key, strlen(cfg->master_key), key, 32, &n) == 0 && n == 32) return 0;
        fprintf(stderr, "cairn: master_key is not 64 hex digits\n");
        return CAIRN_EINVAL;
    }
    if (cfg->master_key_file[0]) {
        int rc = read_key_file(cfg->master_key_file, key);
        if (rc != 0)
            fprintf(stderr, "cairn: cannot read the master key from %s (master_key_file): %s\n", cfg->master_key_file,
                    rc == CAIRN_EINVAL ? "it does not hold 64 hex digits" : rc == CAIRN_ENOTFOUND ? "no such file"
                                                                                    : strerror(errno));
        return rc;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/master.key", cfg->data_dir);
    int rc = read_key_file(path, key);
    if (rc == CAIRN_ENOTFOUND) {
        char hex[80] = {0};
        rand_bytes(key, 32);
        hex_encode(key, 32, hex);
        hex[64] = '\n';
        /* Create only: if another process made the key first, use theirs. */
        rc = file_write_atomic(path, hex, 65, 0600, false);
        sodium_memzero(hex, sizeof hex);
        if (rc == CAIRN_EEXIST) rc = read_key_file(path, key);
    }
    if (rc != 0)
        fprintf(stderr, "cairn: cannot read or create the master key in %s (or master_key is invalid)\n", cfg->data_dir);
    return rc;
}

/* Every access key's secret is sealed with the master key: a process whose
 * key cannot open them would fail every signature, or worse, seal new ones
 * that the cluster's other gateways cannot open.  Checks up to MAX_CHECKED
 * stored secrets; CAIRN_EAUTH names the first it cannot open. */
#define MAX_CHECKED 1000

typedef struct {
    const unsigned char *key;
    int checked;
    char failed[129];
} unseal_check;

static int try_unseal(void *ud, const meta_key *k) {
    unseal_check *c = ud;
    buf_t plain;
    buf_init(&plain);
    int rc = auth_secret_open(c->key, k->sealed_secret, &plain);
    if (plain.data) sodium_memzero(plain.data, plain.len);
    buf_free(&plain);
    if (rc == CAIRN_EAUTH) {
        snprintf(c->failed, sizeof c->failed, "%s", k->access_key);
        return 1;
    }
    return ++c->checked >= MAX_CHECKED;
}

static int check_master_key_opens(meta_store *ms, const unsigned char key[32]) {
    unseal_check c = {.key = key};
    int rc = meta_key_list(ms, -1, try_unseal, &c);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot read the stored access keys: %s\n", cairn_strerror(rc));
        return rc;
    }
    if (!c.failed[0]) return 0;
    fprintf(stderr,
            "cairn: the master key cannot open the secrets stored in the metadata database (access key %s): "
            "every process of a cluster must use the key they were sealed with (master_key or master_key_file)\n",
            c.failed);
    return CAIRN_EAUTH;
}

void cmd_pg_options(const config_t *cfg, meta_pg_options *pg) {
    meta_pg_options_default(pg);
    pg->min_conns = cfg->db_pool_min;
    pg->max_conns = cfg->db_pool_max;
    pg->acquire_timeout_ms = cfg->db_acquire_timeout_ms;
    pg->health_check_ms = cfg->db_health_check_ms;
    pg->idle_timeout_ms = cfg->db_idle_timeout_ms;
    pg->max_lifetime_ms = cfg->db_max_lifetime_ms;
    pg->statement_timeout_ms = cfg->db_statement_timeout_ms;
    pg->long_hold_ms = cfg->db_long_hold_ms;
}

/* Puts the metadata cache in front of the store (tiered.h): a reader reads
 * through it, any process invalidates what it writes. */
static int wrap_cache(const config_t *cfg, bool reader, meta_store **ms) {
    meta_url u;
    char epoch[1100] = "", why[512];
    if (meta_url_parse(cfg->metadata_url, cfg->data_dir, &u, NULL, 0) == 0 && u.backend == META_BACKEND_SQLITE)
        snprintf(epoch, sizeof epoch, "%s-cache", u.path);
    tiered_options to = {.bytes = (size_t)cfg->cache_bytes, .ttl_ms = cfg->cache_ttl_ms, .redis_url = cfg->redis_url,
                         .redis_timeout_ms = cfg->redis_timeout_ms, .redis_breaker_ms = cfg->redis_breaker_ms,
                         .lease_ms = cfg->cache_lease_ms,
                         .reader = reader, .epoch_path = epoch};
    meta_store *wrapped;
    int rc = tiered_wrap(*ms, &to, &wrapped, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot set up the metadata cache: %s\n", why[0] ? why : cairn_strerror(rc));
        return rc;
    }
    if (reader && cfg->cache_bytes > 0 && wrapped == *ms)
        log_write(LOG_INFO, NULL, "metadata cache off: PostgreSQL without redis_url cannot hear other gateways' writes",
                  NULL);
    *ms = wrapped;
    return 0;
}

int cmd_open_meta(const config_t *cfg, meta_store **ms, unsigned char master_key[32]) {
    return cmd_open_meta_for(cfg, false, ms, master_key);
}

int cmd_open_meta_for(const config_t *cfg, bool reader, meta_store **ms, unsigned char master_key[32]) {
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn: cannot create data directory %s: %s\n", cfg->data_dir, strerror(errno));
        return 1;
    }
    if (load_master_key(cfg, master_key) != 0) return 1;
    meta_pg_options pg;
    cmd_pg_options(cfg, &pg);
    meta_options mo = {.readers = cfg->db_readers, .fsync = cfg->fsync, .busy_timeout_ms = 5000, .pg = &pg};
    char why[1400];
    int rc = meta_open_url(cfg->metadata_url, cfg->data_dir, &mo, true, ms, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot open the metadata database: %s\n", why);
        return 1;
    }
    if (check_master_key_opens(*ms, master_key) != 0 || wrap_cache(cfg, reader, ms) != 0) {
        meta_close(*ms);
        *ms = NULL;
        return 1;
    }
    return 0;
}

int cmd_open_audit_meta(const config_t *cfg, meta_store *ms, meta_store **out) {
    *out = NULL;
    char url[sizeof cfg->audit_metadata_url + 16];
    if (cfg->audit_metadata_url[0]) {
        snprintf(url, sizeof url, "%s", cfg->audit_metadata_url);
    } else {
        meta_url u;
        if (meta_url_parse(cfg->metadata_url, cfg->data_dir, &u, NULL, 0) == 0 && u.backend == META_BACKEND_POSTGRES) {
            *out = ms;
            return 0;
        }
        url[0] = '\0'; /* below: data_dir/audit.db */
    }
    meta_pg_options pg;
    cmd_pg_options(cfg, &pg);
    meta_options mo = {.readers = cfg->db_readers, .fsync = cfg->fsync, .busy_timeout_ms = 5000, .pg = &pg};
    char why[1400], path[sizeof cfg->data_dir + 16];
    int rc;
    if (url[0]) {
        rc = meta_open_url(url, cfg->data_dir, &mo, true, out, why, sizeof why);
    } else {
        snprintf(path, sizeof path, "%s/audit.db", cfg->data_dir);
        rc = meta_open(path, &mo, out);
        snprintf(why, sizeof why, "%s: %s", path, cairn_strerror(rc));
    }
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot open the audit database: %s\n", why);
        *out = NULL;
        return 1;
    }
    return 0;
}

void cmd_close_audit_meta(meta_store *ms, meta_store *audit) {
    if (audit && audit != ms) meta_close(audit);
}

/* ---- admin subcommands ------------------------------------------------------------ */

/* Seals secret with the master key into dst (cap bytes): 0, or nonzero
 * when sealing failed or the sealed text does not fit. */
static int seal_into(const unsigned char mk[32], const char *secret, char *dst, size_t cap) {
    buf_t sealed;
    buf_init(&sealed);
    int rc = auth_secret_seal(mk, secret, &sealed) != 0 || sealed.len >= cap ? -1 : 0;
    if (rc == 0) memcpy(dst, sealed.data, sealed.len + 1);
    buf_free(&sealed);
    return rc;
}

static int create_key_for(meta_store *ms, const unsigned char mk[32], const meta_user *u) {
    char ak[21], sk[41];
    auth_generate_key(ak, sk);
    meta_key k = {0};
    snprintf(k.access_key, sizeof k.access_key, "%s", ak);
    k.user_id = u->id;
    k.active = true;
    k.created_ms = time_now_ms();
    if (seal_into(mk, sk, k.sealed_secret, sizeof k.sealed_secret) != 0) {
        fprintf(stderr, "cairn: sealing the secret failed\n");
        return 1;
    }
    int rc = meta_key_create(ms, &k);
    if (rc != 0) {
        fprintf(stderr, "cairn: storing the key failed: %s\n", cairn_strerror(rc));
        return 1;
    }
    printf("user: %s\naccess_key_id: %s\nsecret_access_key: %s\n", u->name, ak, sk);
    return 0;
}

static bool valid_user_name(const char *n) {
    size_t l = strlen(n);
    if (l < 1 || l > 128) return false;
    for (size_t i = 0; i < l; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == '@'))
            return false;
    }
    return true;
}

static int print_user(void *ud, const meta_user *u) {
    (void)ud;
    printf("%lld %s%s%s\n", (long long)u->id, u->name, u->is_root ? " root" : "", u->audit ? " audit" : "");
    return 0;
}

typedef struct {
    meta_store *ms;
} key_list_ctx;

static int print_key(void *ud, const meta_key *k) {
    key_list_ctx *c = ud;
    meta_user u = {0};
    if (meta_user_get(c->ms, k->user_id, &u) != 0) snprintf(u.name, sizeof u.name, "?");
    printf("%s %s %s\n", k->access_key, u.name, k->active ? "active" : "revoked");
    return 0;
}

/* "public-read": `bucket set-public` made it so (its policy statement, or
 * the flag of before bucket policies); " policy" when it has another policy. */
static int print_bucket(void *ud, const meta_bucket *b) {
    meta_store *ms = ud;
    char *policy = NULL;
    if (b->configs & META_CFG_POLICY) meta_bucket_config_get(ms, b->id, "policy", &policy);
    bool shortcut = policy && strstr(policy, "\"CairnPublicRead\"");
    printf("%s owner=%lld%s%s\n", b->name, (long long)b->owner_id, b->public_read || shortcut ? " public-read" : "",
           policy && !shortcut ? " policy" : "");
    free(policy);
    return 0;
}

static int print_node(void *ud, const meta_node *n) {
    meta_store *ms = ud;
    int64_t refs = 0;
    meta_layout_refs(ms, n->id, &refs);
    char seen[40] = "never";
    if (n->last_seen_ms) time_fmt_iso8601(n->last_seen_ms, seen, sizeof seen);
    printf("%s %s %s objects=%lld last_seen=%s%s%s\n", n->id, n->url, n->state, (long long)refs, seen,
           n->last_error[0] ? " error=" : "", n->last_error);
    return 0;
}

/* `admin node ...`: the storage node registry gateways follow. */
static int admin_node(meta_store *ms, const config_t *cfg, const char *verb, const char *arg) {
    meta_node n;
    if (!strcmp(verb, "list")) return meta_node_list(ms, print_node, ms) ? 1 : 0;
    if (!arg) return 2;
    if (!strcmp(verb, "add")) {
        char id[DATA_DRIVE_ID_LEN + 1];
        if (!cfg->cluster_secret[0]) {
            fprintf(stderr, "cairn: set cluster_secret (CAIRN_CLUSTER_SECRET) to reach the node\n");
            return 2;
        }
        if (data_probe_node(arg, cfg->cluster_secret, cfg->tls_ca, cfg->shard_timeout_ms, id) != 0) {
            fprintf(stderr, "cairn: %s did not answer /v1/info (down, wrong URL or wrong cluster_secret)\n", arg);
            return 1;
        }
        if (meta_node_upsert(ms, id, arg) != 0 || meta_node_set_state(ms, id, "active") != 0) {
            fprintf(stderr, "cairn: recording the node failed\n");
            return 1;
        }
        printf("node %s at %s added; gateways rebalance onto it within seconds\n", id, arg);
        return 0;
    }
    if (strcmp(verb, "drain") != 0 && strcmp(verb, "remove") != 0) return 2;
    if (meta_node_get(ms, arg, &n) != 0) {
        fprintf(stderr, "cairn: no node '%s' (give its id or url; see `cairn admin node list`)\n", arg);
        return 1;
    }
    if (!strcmp(verb, "drain")) {
        if (meta_node_set_state(ms, n.id, "draining") != 0) return 1;
        printf("node %s draining: gateways move its shards to other nodes; `node list` shows what is left\n", n.id);
        return 0;
    }
    if (!strcmp(verb, "remove")) {
        int64_t refs = 0;
        if (meta_layout_refs(ms, n.id, &refs) != 0) return 1;
        if (refs > 0) {
            fprintf(stderr, "cairn: node %s still holds shards of %lld object(s); drain it first and wait "
                            "until `node list` shows objects=0\n", n.id, (long long)refs);
            return 1;
        }
        if (meta_node_set_state(ms, n.id, "removed") != 0) return 1;
        printf("node %s removed\n", n.id);
        return 0;
    }
    return 2;
}

static int print_job(void *ud, const meta_job *j) {
    bool full = ud != NULL;
    char created[40], run_at[40];
    time_fmt_iso8601(j->created_ms, created, sizeof created);
    time_fmt_iso8601(j->run_at_ms, run_at, sizeof run_at);
    printf("%lld %s %s attempts=%d/%d run_at=%s%s%s\n", (long long)j->id, j->kind, j->state, j->attempts,
           j->max_attempts, run_at, j->last_error[0] ? " error=" : "", j->last_error);
    if (full)
        printf("  args=%s priority=%d unique_key=%s lease_owner=%s created=%s\n", j->args, j->priority,
               j->unique_key[0] ? j->unique_key : "-", j->lease_owner[0] ? j->lease_owner : "-", created);
    return 0;
}

bool cmd_parse_whole(const char *s, long long lo, long long hi, long long *out) {
    if (!s) return false;
    const char *d = *s == '-' ? s + 1 : s;
    if (!*d || strlen(d) > 18) return false;
    for (const char *p = d; *p; p++)
        if (*p < '0' || *p > '9') return false;
    long long v = strtoll(s, NULL, 10);
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* `admin jobs ...`: inspect and steer the durable job queue. */
static int admin_jobs(meta_store *ms, int argc, char **argv) {
    const char *verb = argc > 1 ? argv[1] : "";
    const char *state = "", *kind = "";
    int count = 1, max_attempts = 5;
    long long delay_ms = 0;
    for (int i = 2; i < argc; i++) {
        bool is_opt = !strcmp(argv[i], "--state") || !strcmp(argv[i], "--kind") || !strcmp(argv[i], "--count") ||
                      !strcmp(argv[i], "--max-attempts") || !strcmp(argv[i], "--delay-ms");
        if (!is_opt) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "cairn: %s needs a value\n", argv[i]);
            return 2;
        }
        const char *opt = argv[i], *v = argv[++i];
        if (!strcmp(opt, "--state")) state = v;
        else if (!strcmp(opt, "--kind")) kind = v;
        else {
            long long x;
            bool delay = !strcmp(opt, "--delay-ms");
            if (!cmd_parse_whole(v, 0, delay ? 100000000000LL : 1000000, &x)) {
                if (delay) fprintf(stderr, "cairn: --delay-ms wants a number of milliseconds >= 0\n");
                else fprintf(stderr, "cairn: %s wants a whole number from 0 (the default) to 1000000\n", opt);
                return 2;
            }
            if (delay) delay_ms = x;
            else if (!strcmp(opt, "--count")) count = (int)x;
            else max_attempts = (int)x;
        }
    }
    if (!strcmp(verb, "list")) return meta_job_list(ms, state, kind, 1000, print_job, NULL) ? 1 : 0;
    if (argc < 3) return 2;
    if (!strcmp(verb, "enqueue")) {
        meta_job j = {0};
        snprintf(j.kind, sizeof j.kind, "%s", argv[2]);
        j.args = (char *)(uintptr_t)(argc > 3 && argv[3][0] != '-' ? argv[3] : "{}");
        j.max_attempts = max_attempts > 0 ? max_attempts : 5;
        j.run_at_ms = time_now_ms() + delay_ms;
        for (int i = 0; i < (count > 0 ? count : 1); i++) {
            int64_t id = 0;
            if (meta_job_enqueue(ms, &j, &id) != 0) {
                fprintf(stderr, "cairn: enqueue failed\n");
                return 1;
            }
            if (count == 1) printf("%lld\n", (long long)id);
        }
        return 0;
    }
    char *end;
    long long id = strtoll(argv[2], &end, 10);
    if (*end) return 2;
    meta_job j;
    int rc;
    if (!strcmp(verb, "show")) {
        rc = meta_job_get(ms, id, &j);
        if (rc == 0) print_job(&j, &j);
        meta_job_clear(&j);
    } else if (!strcmp(verb, "retry")) {
        rc = meta_job_retry(ms, id);
    } else if (!strcmp(verb, "cancel")) {
        rc = meta_job_cancel(ms, id);
    } else {
        return 2;
    }
    if (rc == CAIRN_ENOTFOUND) fprintf(stderr, "cairn: no job %lld\n", id);
    else if (rc == CAIRN_ECONFLICT) fprintf(stderr, "cairn: job %lld cannot be %s in its state\n", id,
                                            !strcmp(verb, "retry") ? "retried" : "cancelled");
    else if (rc == 0 && strcmp(verb, "show")) printf("job %lld %s\n", id, !strcmp(verb, "retry") ? "will run again" : "cancelled");
    return rc ? 1 : 0;
}

/* cairn admin notify target add NAME URL [--secret S] [--max-attempts N] [--ordered] |
 * list | remove NAME: the webhook targets bucket notifications name by ARN
 * (arn:cairn:sqs::NAME:webhook).  A secret is sealed with the master key. */
static int print_target(void *ud, const meta_notify_target *t) {
    (void)ud;
    char when[40];
    time_fmt_iso8601(t->created_ms, when, sizeof when);
    printf("target=%s arn=arn:cairn:sqs::%s:webhook url=%s signed=%s max_attempts=%d ordered=%s created=%s\n", t->name,
           t->name, t->url, t->secret[0] ? "yes" : "no", t->max_attempts, t->ordered ? "yes" : "no", when);
    return 0;
}

static int admin_notify(meta_store *ms, const unsigned char mk[32], int argc, char **argv) {
    if (argc < 3 || strcmp(argv[1], "target") != 0) return 2;
    const char *verb = argv[2];
    if (!strcmp(verb, "list") && argc == 3) return meta_notify_target_list(ms, print_target, NULL) ? 1 : 0;
    if (!strcmp(verb, "remove") && argc == 4) {
        int rc = meta_notify_target_remove(ms, argv[3]);
        if (rc == CAIRN_ENOTFOUND) fprintf(stderr, "cairn: no notification target '%s'\n", argv[3]);
        else if (rc != 0) fprintf(stderr, "cairn: removing the target failed: %s\n", cairn_strerror(rc));
        else printf("removed target %s\n", argv[3]);
        return rc ? 1 : 0;
    }
    if (strcmp(verb, "add") != 0 || argc < 5) return 2;
    meta_notify_target t = {.max_attempts = 10, .created_ms = time_now_ms()};
    const char *secret = NULL;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--secret") && i + 1 < argc) secret = argv[++i];
        else if (!strcmp(argv[i], "--ordered")) t.ordered = true;
        else if (!strcmp(argv[i], "--max-attempts") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "cairn: --max-attempts takes 1 to 1000\n");
                return 2;
            }
            t.max_attempts = (int)v;
        } else {
            return 2;
        }
    }
    if (strlen(argv[3]) >= sizeof t.name || strlen(argv[4]) >= sizeof t.url) {
        fprintf(stderr, "cairn: the name (at most 63) or the URL (at most 1023 bytes) is too long\n");
        return 2;
    }
    snprintf(t.name, sizeof t.name, "%s", argv[3]);
    snprintf(t.url, sizeof t.url, "%s", argv[4]);
    if (secret && (!secret[0] || seal_into(mk, secret, t.secret, sizeof t.secret) != 0)) {
        fprintf(stderr, "cairn: the secret is empty, too long, or could not be sealed\n");
        return 2;
    }
    int rc = meta_notify_target_add(ms, &t);
    if (rc == CAIRN_EEXIST) fprintf(stderr, "cairn: a notification target '%s' exists already\n", t.name);
    else if (rc == CAIRN_EINVAL)
        fprintf(stderr, "cairn: a target name is letters, digits, '-' and '_'; its URL http:// or https://\n");
    else if (rc != 0) fprintf(stderr, "cairn: adding the target failed: %s\n", cairn_strerror(rc));
    else printf("target=%s arn=arn:cairn:sqs::%s:webhook\n", t.name, t.name);
    return rc == 0 ? 0 : rc == CAIRN_EINVAL ? 2 : 1;
}

/* cairn admin limits set (--key AK | --bucket NAME) [--ops N] [--bytes N] |
 * get (--key AK | --bucket NAME) | list | remove (--key AK | --bucket NAME):
 * the overrides of one key's or one bucket's rate limits
 * (docs/rate-limiting.md); every gateway applies a change within a second.
 * An option left out of set is 0: no limit of that kind for the subject. */
static void print_limit_values(const char *scope, const char *name, int64_t ops, int64_t bytes, const char *source) {
    printf("scope=%s name=%s ops_per_s=%lld bytes_per_s=%lld source=%s\n", scope, name, (long long)ops,
           (long long)bytes, source);
}

static int print_limit(void *ud, const meta_limit *l) {
    (void)ud;
    print_limit_values(l->scope, l->name, l->ops_per_s, l->bytes_per_s, "override");
    return 0;
}

typedef struct {
    const char *scope, *name;
    meta_limit found;
    bool hit;
} limit_find;

static int find_limit(void *ud, const meta_limit *l) {
    limit_find *f = ud;
    if (strcmp(l->scope, f->scope) || strcmp(l->name, f->name)) return 0;
    f->found = *l;
    f->hit = true;
    return 1;
}

static int admin_limits(meta_store *ms, int argc, char **argv) {
    if (argc < 2) return 2;
    const char *verb = argv[1];
    if (!strcmp(verb, "list") && argc == 2) return meta_limit_list(ms, print_limit, NULL) ? 1 : 0;
    if (argc < 4 || (strcmp(argv[2], "--key") && strcmp(argv[2], "--bucket"))) return 2;
    const char *scope = !strcmp(argv[2], "--key") ? "key" : "bucket", *name = argv[3];
    if (!strcmp(verb, "get") && argc == 4) {
        limit_find f = {scope, name, .hit = false};
        int rc = meta_limit_list(ms, find_limit, &f);
        if (rc != 0) {
            fprintf(stderr, "cairn: reading the limits failed: %s\n", cairn_strerror(rc));
            return 1;
        }
        /* Without an override the gateways' configured defaults apply
         * (ratelimit_*_per_s: their configuration, not necessarily this
         * command's). */
        if (f.hit) print_limit(NULL, &f.found);
        else printf("scope=%s name=%s source=default\n", scope, name);
        return 0;
    }
    if (!strcmp(verb, "remove") && argc == 4) {
        int rc = meta_limit_remove(ms, scope, name);
        if (rc == CAIRN_ENOTFOUND) fprintf(stderr, "cairn: no override of %s '%s'\n", scope, name);
        else if (rc != 0) fprintf(stderr, "cairn: removing the override failed: %s\n", cairn_strerror(rc));
        else printf("removed the override of %s %s: the defaults apply\n", scope, name);
        return rc ? 1 : 0;
    }
    if (strcmp(verb, "set") != 0) return 2;
    meta_limit l = {.updated_ms = time_now_ms()};
    snprintf(l.scope, sizeof l.scope, "%s", scope);
    if (strlen(name) >= sizeof l.name || !name[0]) {
        fprintf(stderr, "cairn: the name is empty or longer than 255 bytes\n");
        return 2;
    }
    snprintf(l.name, sizeof l.name, "%s", name);
    for (int i = 4; i < argc; i++) {
        bool ops = !strcmp(argv[i], "--ops"), bytes = !strcmp(argv[i], "--bytes");
        if ((!ops && !bytes) || i + 1 >= argc) return 2;
        int64_t v = -1;
        char *end = NULL;
        if (ops) {
            long long n = strtoll(argv[++i], &end, 10);
            if (*end == '\0' && end != argv[i] && n >= 0 && n <= INT32_MAX) v = n;
        } else if (config_parse_size(argv[++i], &v) != 0) {
            v = -1;
        }
        if (v < 0) {
            fprintf(stderr, "cairn: %s wants %s >= 0 (0 = no limit)\n", ops ? "--ops" : "--bytes",
                    ops ? "a number of requests per second" : "bytes per second (10MiB, 1048576)");
            return 2;
        }
        if (ops) l.ops_per_s = v;
        else l.bytes_per_s = v;
    }
    if (!strcmp(scope, "bucket")) {
        meta_bucket b;
        int rc = meta_bucket_get(ms, name, &b);
        if (rc == CAIRN_ENOTFOUND) {
            fprintf(stderr, "cairn: no bucket '%s'\n", name);
            return 1;
        }
    }
    int rc = meta_limit_set(ms, &l);
    if (rc != 0) {
        fprintf(stderr, "cairn: setting the override failed: %s\n", cairn_strerror(rc));
        return 1;
    }
    print_limit(NULL, &l);
    return 0;
}

/* cairn admin lifecycle run [--bucket NAME]: asks the gateway's job workers
 * for a lifecycle run now (docs/lifecycle.md): of one bucket, or of every
 * bucket with a configuration (lifecycle_scan). */
static int admin_lifecycle(meta_store *ms, int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "run") != 0) return 2;
    if (argc == 2) {
        meta_job j = {.max_attempts = 3, .run_at_ms = time_now_ms(), .priority = 1};
        snprintf(j.kind, sizeof j.kind, "lifecycle_scan");
        j.args = (char *)(uintptr_t)"{}";
        int64_t id = 0;
        int rc = meta_job_enqueue(ms, &j, &id);
        if (rc != 0) fprintf(stderr, "cairn: enqueue failed: %s\n", cairn_strerror(rc));
        else printf("lifecycle scan queued (job %lld)\n", (long long)id);
        return rc ? 1 : 0;
    }
    if (argc != 4 || strcmp(argv[2], "--bucket") != 0) return 2;
    meta_bucket b;
    int rc = meta_bucket_get(ms, argv[3], &b);
    if (rc == CAIRN_ENOTFOUND) {
        fprintf(stderr, "cairn: no bucket '%s'\n", argv[3]);
        return 1;
    }
    if (rc == 0) rc = s3_lifecycle_enqueue(ms, b.name, b.id);
    if (rc != 0) fprintf(stderr, "cairn: enqueue failed: %s\n", cairn_strerror(rc));
    else printf("lifecycle run of %s queued\n", b.name);
    return rc ? 1 : 0;
}

/* `bucket set-public`: a shortcut that writes the bucket policy statement
 * "CairnPublicRead" (anyone may list the bucket and read its objects), or
 * takes it out again, keeping the policy's other statements
 * (docs/access-control.md). */
#define PUBLIC_SID "CairnPublicRead"

static int set_public_policy(meta_store *ms, const meta_bucket *b, bool on) {
    char *text = NULL;
    int rc = meta_bucket_config_get(ms, b->id, "policy", &text);
    if (rc != 0 && rc != CAIRN_ENOTFOUND) return rc;
    json_error_t err;
    json_t *p = text ? json_loads(text, 0, &err) : json_pack("{s:s}", "Version", "2012-10-17");
    free(text);
    json_t *st = json_object_get(p, "Statement");
    if (json_is_object(st)) { /* one statement: make it a list */
        json_t *arr = json_array();
        json_array_append(arr, st);
        json_object_set_new(p, "Statement", arr);
        st = arr;
    }
    if (!st) {
        st = json_array();
        json_object_set_new(p, "Statement", st);
    }
    if (!json_is_array(st)) {
        json_decref(p);
        return CAIRN_EINVAL;
    }
    for (size_t i = json_array_size(st); i-- > 0;)
        if (!strcmp(json_string_value(json_object_get(json_array_get(st, i), "Sid")) ?: "", PUBLIC_SID))
            json_array_remove(st, i);
    if (on) {
        char bucket_arn[128], objects_arn[128];
        snprintf(bucket_arn, sizeof bucket_arn, "arn:aws:s3:::%s", b->name);
        snprintf(objects_arn, sizeof objects_arn, "arn:aws:s3:::%s/*", b->name);
        json_array_append_new(st, json_pack("{s:s,s:s,s:s,s:[s,s,s],s:[s,s]}", "Sid", PUBLIC_SID, "Effect", "Allow",
                                            "Principal", "*", "Action", "s3:GetObject", "s3:ListBucket",
                                            "s3:GetBucketLocation", "Resource", bucket_arn, objects_arn));
    }
    size_t n = json_array_size(st);
    char *out = n ? json_dumps(p, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(p);
    if (n && !out) return CAIRN_ENOMEM;
    rc = meta_bucket_config_put(ms, b->name, b->id, "policy", out ? out : "");
    free(out);
    return rc;
}

/* ---- cairn admin kms ... (docs/kms.md) ---- */

static int print_kms_key(void *ud, const meta_kms_key *k) {
    json_t *arr = ud;
    char when[40];
    time_fmt_iso8601(k->created_ms, when, sizeof when);
    if (arr) {
        json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:s,s:s}", "id", k->id, "state",
                                             k->enabled ? "enabled" : "disabled", "version", k->version, "created",
                                             when, "description", k->description));
        return 0;
    }
    printf("%s %s v%d %s%s%s\n", k->id, k->enabled ? "enabled" : "disabled", k->version, when,
           k->description[0] ? " " : "", k->description);
    return 0;
}

static void kms_error(const char *what, const char *id, int rc) {
    if (rc == CAIRN_ENOTFOUND) fprintf(stderr, "cairn: no KMS key '%s'\n", id);
    else if (rc == CAIRN_EEXIST) fprintf(stderr, "cairn: KMS key '%s' already exists\n", id);
    else if (rc == CAIRN_EAUTH)
        fprintf(stderr, "cairn: %s: the master key does not open KMS key '%s' (was it sealed under another?)\n", what,
                id);
    else fprintf(stderr, "cairn: %s '%s' failed: %s\n", what, id, cairn_strerror(rc));
}

/* Re-seals one value under the new master key (meta_master_reseal). */
typedef struct {
    const unsigned char *old_key, *new_key;
    char failed[160];
} reseal_keys;

static int reseal_material(void *ud, const char *key_id, int version, const uint8_t old[META_KMS_SEALED],
                           uint8_t out[META_KMS_SEALED]) {
    reseal_keys *r = ud;
    uint8_t m[CRYPT_KEY];
    int rc = kms_material_open(r->old_key, key_id, version, old, m);
    if (rc == 0) rc = kms_material_seal(r->new_key, key_id, version, m, out);
    sodium_memzero(m, sizeof m);
    if (rc != 0) snprintf(r->failed, sizeof r->failed, "KMS key %s version %d", key_id, version);
    return rc;
}

static int reseal_secret(void *ud, const char *what, const char *name, const char *old, char *out, size_t cap) {
    reseal_keys *r = ud;
    buf_t plain, sealed;
    buf_init(&plain);
    buf_init(&sealed);
    int rc = auth_secret_open(r->old_key, old, &plain);
    if (rc == 0) buf_append(&plain, "", 1); /* NUL-terminated for the seal */
    if (rc == 0 && plain.oom) rc = CAIRN_ENOMEM;
    if (rc == 0) rc = auth_secret_seal(r->new_key, (const char *)plain.data, &sealed);
    if (rc == 0 && sealed.len + 1 > cap) rc = CAIRN_ETOOBIG;
    if (rc == 0) {
        memcpy(out, sealed.data, sealed.len);
        out[sealed.len] = '\0';
    }
    if (plain.data) sodium_memzero(plain.data, plain.len);
    buf_free(&plain);
    buf_free(&sealed);
    if (rc != 0) snprintf(r->failed, sizeof r->failed, "%s %s", what, name);
    return rc;
}

static int fsync_dir_of(const char *path) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return CAIRN_EIO;
    int rc = fsync(fd) == 0 ? 0 : CAIRN_EIO;
    close(fd);
    return rc;
}

/*
 * cairn admin kms rotate-master [--new-key-file PATH]: every sealed value
 * (KMS key versions, access-key and notify-target secrets) re-sealed under
 * a new master key in one transaction.  The new key is written durably
 * first, to "<key file>.new" (or DATA/master.key.new when the key comes
 * from master_key / CAIRN_MASTER_KEY), so a crash at any point leaves the
 * key that opens the database on disk: before the commit the old one still
 * does; after it, the .new file does until it is moved into place.
 */
static int kms_rotate_master(meta_store *ms, const config_t *cfg, const unsigned char mk[32], const char *new_file) {
    unsigned char nk[32];
    if (new_file) {
        int rc = read_key_file(new_file, nk);
        if (rc != 0) {
            fprintf(stderr, "cairn: cannot read the new master key from %s: %s\n", new_file,
                    rc == CAIRN_EINVAL ? "it does not hold 64 hex digits" : rc == CAIRN_ENOTFOUND ? "no such file"
                                                                                                 : strerror(errno));
            return 1;
        }
    } else {
        rand_bytes(nk, sizeof nk);
    }
    if (sodium_memcmp(nk, mk, 32) == 0) {
        fprintf(stderr, "cairn: the new master key is the current one\n");
        sodium_memzero(nk, sizeof nk);
        return 1;
    }
    bool inline_key = cfg->master_key[0] != '\0';
    char key_path[1100], staged[1120];
    if (cfg->master_key_file[0]) snprintf(key_path, sizeof key_path, "%s", cfg->master_key_file);
    else snprintf(key_path, sizeof key_path, "%s/master.key", cfg->data_dir);
    snprintf(staged, sizeof staged, "%s.new", key_path);
    char hex[80] = {0};
    hex_encode(nk, 32, hex);
    hex[64] = '\n';
    /* Create only: a .new file left by an interrupted run may be the only
     * copy of the key that opens the database now. */
    int rc = file_write_atomic(staged, hex, 65, 0600, false);
    if (rc == CAIRN_EEXIST)
        fprintf(stderr, "cairn: %s exists: an earlier rotate-master may have been interrupted (docs/kms.md says how "
                        "to recover); nothing was changed\n", staged);
    else if (rc != 0)
        fprintf(stderr, "cairn: cannot write the new master key to %s: %s (nothing was changed)\n", staged,
                cairn_strerror(rc));
    if (rc != 0) {
        sodium_memzero(hex, sizeof hex);
        sodium_memzero(nk, sizeof nk);
        return 1;
    }
    reseal_keys r = {.old_key = mk, .new_key = nk};
    meta_reseal rs = {reseal_material, reseal_secret, &r};
    int64_t n = 0;
    rc = meta_master_reseal(ms, &rs, &n);
    sodium_memzero(nk, sizeof nk);
    if (rc != 0) {
        unlink(staged);
        if (r.failed[0])
            fprintf(stderr, "cairn: rotate-master: %s does not open under the current master key: %s; nothing was "
                            "changed (if an earlier rotate-master was interrupted after its commit, %s holds the key "
                            "that opens them)\n",
                    r.failed, cairn_strerror(rc), staged);
        else fprintf(stderr, "cairn: rotate-master failed: %s; nothing was changed\n", cairn_strerror(rc));
        sodium_memzero(hex, sizeof hex);
        return 1;
    }
    /* Committed: the database opens only under the new key now. */
    if (inline_key) {
        hex[64] = '\0';
        printf("master key rotated: %lld sealed values re-sealed\n", (long long)n);
        printf("new master key: %s\n", hex);
        printf("it is also in %s (mode 0600): set master_key (CAIRN_MASTER_KEY) to it and restart every gateway, "
               "then delete that file\n",
               staged);
        sodium_memzero(hex, sizeof hex);
        return 0;
    }
    sodium_memzero(hex, sizeof hex);
    if (rename(staged, key_path) != 0 || fsync_dir_of(key_path) != 0) {
        fprintf(stderr,
                "cairn: the master key was rotated but %s could not be moved to %s: %s; move it there by hand "
                "before anything restarts\n",
                staged, key_path, strerror(errno));
        return 1;
    }
    printf("master key rotated: %lld sealed values re-sealed; the new key is in %s\n", (long long)n, key_path);
    printf("restart every gateway (each must read the new key: copy %s to every host that has its own copy)\n",
           key_path);
    return 0;
}

/* cairn admin kms key create [--id ID] [--description TEXT] | key list [--json] |
 * key rotate ID | key disable ID | key enable ID | rotate-master [--new-key-file PATH]. */
static int admin_kms(meta_store *ms, const config_t *cfg, const unsigned char mk[32], int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "", *verb = argc > 2 ? argv[2] : "";
    if (!strcmp(what, "rotate-master")) {
        const char *file = NULL;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--new-key-file") && i + 1 < argc) file = argv[++i];
            else return 2;
        }
        return kms_rotate_master(ms, cfg, mk, file);
    }
    if (strcmp(what, "key") != 0) return 2;
    if (!strcmp(verb, "create")) {
        const char *id = NULL, *desc = "";
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--id") && i + 1 < argc) id = argv[++i];
            else if (!strcmp(argv[i], "--description") && i + 1 < argc) desc = argv[++i];
            else return 2;
        }
        char made[33];
        if (!id) {
            rand_hex_id(made, 16);
            id = made;
        }
        if (!kms_id_valid(id)) {
            fprintf(stderr, "cairn: invalid KMS key id '%s' (1-%d of A-Z a-z 0-9 - _)\n", id, KMS_ID_MAX);
            return 2;
        }
        if (strlen(desc) > META_KMS_DESC_MAX) {
            fprintf(stderr, "cairn: the description is longer than %d bytes\n", META_KMS_DESC_MAX);
            return 2;
        }
        kms *k;
        int rc = kms_open(ms, mk, &k);
        if (rc == 0) rc = kms_key_create(k, id, desc);
        kms_close(k);
        if (rc != 0) {
            kms_error("creating KMS key", id, rc);
            return 1;
        }
        printf("%s\n", id);
        return 0;
    }
    if (!strcmp(verb, "list")) {
        bool json = argc > 3 && !strcmp(argv[3], "--json");
        if (argc > (json ? 4 : 3)) return 2;
        json_t *arr = json ? json_array() : NULL;
        int rc = meta_kms_key_list(ms, print_kms_key, arr);
        if (rc == 0 && arr) {
            char *text = json_dumps(arr, JSON_COMPACT);
            if (text) printf("%s\n", text);
            else rc = CAIRN_ENOMEM;
            free(text);
        }
        json_decref(arr);
        if (rc != 0) fprintf(stderr, "cairn: listing KMS keys failed: %s\n", cairn_strerror(rc));
        return rc ? 1 : 0;
    }
    const char *id = argc > 3 ? argv[3] : NULL;
    if (!id || argc > 4) return 2;
    if (!strcmp(verb, "rotate")) {
        kms *k;
        int version = 0;
        int rc = kms_open(ms, mk, &k);
        if (rc == 0) rc = kms_key_rotate(k, id, &version);
        kms_close(k);
        if (rc != 0) {
            kms_error("rotating KMS key", id, rc);
            return 1;
        }
        int64_t job = 0;
        rc = jobs_enqueue_kms_rewrap(ms, id, &job);
        if (rc != 0) {
            fprintf(stderr, "cairn: KMS key %s is at version %d, but its re-wrap job could not be enqueued: %s "
                            "(enqueue it with: cairn admin jobs enqueue kms_rewrap '{\"key_id\":\"%s\"}')\n",
                    id, version, cairn_strerror(rc), id);
            return 1;
        }
        printf("KMS key %s rotated to version %d; re-wrap job %lld enqueued\n", id, version, (long long)job);
        return 0;
    }
    if (!strcmp(verb, "disable") || !strcmp(verb, "enable")) {
        bool on = !strcmp(verb, "enable");
        int rc = meta_kms_key_set_enabled(ms, id, on);
        if (rc != 0) {
            kms_error(on ? "enabling KMS key" : "disabling KMS key", id, rc);
            return 1;
        }
        printf("KMS key %s %s (every gateway within %d ms)\n", id, on ? "enabled" : "disabled", KMS_CACHE_MS);
        return 0;
    }
    return 2;
}

static int admin_run(meta_store *ms, const config_t *cfg, const unsigned char mk[32], int argc, char **argv) {
    const char *what = argc > 0 ? argv[0] : "", *verb = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : NULL;
    meta_user u = {0};
    int rc;
    if (!strcmp(what, "user") && !strcmp(verb, "create") && arg &&
        (argc == 3 || (argc == 4 && !strcmp(argv[3], "--audit")))) {
        u.audit = argc == 4;
        if (!valid_user_name(arg)) {
            fprintf(stderr, "cairn: invalid user name '%s' (1-128 of A-Z a-z 0-9 - _ . @)\n", arg);
            return 2;
        }
        snprintf(u.name, sizeof u.name, "%s", arg);
        snprintf(u.display_name, sizeof u.display_name, "%s", arg);
        u.created_ms = time_now_ms();
        rc = meta_user_create(ms, &u);
        if (rc == CAIRN_EEXIST) {
            fprintf(stderr, "cairn: user '%s' already exists\n", arg);
            return 1;
        }
        if (rc != 0) {
            fprintf(stderr, "cairn: creating the user failed: %s\n", cairn_strerror(rc));
            return 1;
        }
        return create_key_for(ms, mk, &u);
    }
    if (!strcmp(what, "user") && !strcmp(verb, "list")) return meta_user_list(ms, print_user, NULL) ? 1 : 0;
    if (!strcmp(what, "user") && !strcmp(verb, "audit") && arg && argc == 4 &&
        (!strcmp(argv[3], "--grant") || !strcmp(argv[3], "--revoke"))) {
        bool grant = !strcmp(argv[3], "--grant");
        rc = meta_user_set_audit(ms, arg, grant);
        if (rc == CAIRN_ENOTFOUND || rc == CAIRN_EINVAL) {
            fprintf(stderr, "cairn: no user '%s'\n", arg);
            return 1;
        }
        if (rc != 0) {
            fprintf(stderr, "cairn: changing the audit right failed: %s\n", cairn_strerror(rc));
            return 1;
        }
        printf("user %s %s the audit right\n", arg, grant ? "has" : "no longer has");
        return 0;
    }
    if (!strcmp(what, "audit")) return cmd_admin_audit(cfg, ms, argc, argv);
    if (!strcmp(what, "key") && !strcmp(verb, "create") && arg) {
        if (meta_user_get_by_name(ms, arg, &u) != 0) {
            fprintf(stderr, "cairn: no user '%s'\n", arg);
            return 1;
        }
        return create_key_for(ms, mk, &u);
    }
    if (!strcmp(what, "key") && !strcmp(verb, "list")) {
        int64_t uid = -1;
        if (arg) {
            if (meta_user_get_by_name(ms, arg, &u) != 0) {
                fprintf(stderr, "cairn: no user '%s'\n", arg);
                return 1;
            }
            uid = u.id;
        }
        key_list_ctx c = {ms};
        return meta_key_list(ms, uid, print_key, &c) ? 1 : 0;
    }
    if (!strcmp(what, "key") && !strcmp(verb, "revoke") && arg) {
        rc = meta_key_set_active(ms, arg, false);
        if (rc == CAIRN_ENOTFOUND) {
            fprintf(stderr, "cairn: no access key '%s'\n", arg);
            return 1;
        }
        if (rc == 0) printf("revoked %s\n", arg);
        return rc ? 1 : 0;
    }
    if (!strcmp(what, "bucket") && !strcmp(verb, "set-public") && arg) {
        bool off = argc > 3 && !strcmp(argv[3], "--off");
        meta_bucket b;
        rc = meta_bucket_get(ms, arg, &b);
        if (rc == CAIRN_ENOTFOUND) {
            fprintf(stderr, "cairn: no bucket '%s'\n", arg);
            return 1;
        }
        if (rc == 0) rc = set_public_policy(ms, &b, !off);
        /* The flag of before bucket policies goes: the policy says it now. */
        if (rc == 0 && b.public_read) rc = meta_bucket_set_public(ms, arg, false);
        if (rc == 0) printf("bucket %s is %s\n", arg, off ? "private" : "public-read");
        else fprintf(stderr, "cairn: %s\n", cairn_strerror(rc));
        return rc ? 1 : 0;
    }
    if (!strcmp(what, "bucket") && !strcmp(verb, "list")) return meta_bucket_list(ms, -1, print_bucket, ms) ? 1 : 0;
    if (!strcmp(what, "node")) {
        rc = admin_node(ms, cfg, verb, arg);
        if (rc != 2) return rc;
    }
    if (!strcmp(what, "jobs")) {
        rc = admin_jobs(ms, argc, argv);
        if (rc != 2) return rc;
    }
    if (!strcmp(what, "notify")) {
        rc = admin_notify(ms, mk, argc, argv);
        if (rc != 2) return rc;
    }
    if (!strcmp(what, "lifecycle")) {
        rc = admin_lifecycle(ms, argc, argv);
        if (rc != 2) return rc;
    }
    if (!strcmp(what, "limits")) {
        rc = admin_limits(ms, argc, argv);
        if (rc != 2) return rc;
    }
    if (!strcmp(what, "kms")) {
        rc = admin_kms(ms, cfg, mk, argc, argv);
        if (rc != 2) return rc;
    }
    fprintf(stderr,
            "usage: cairn admin [--data DIR] user create NAME [--audit] | user list | user audit NAME --grant|--revoke\n"
            "       cairn admin [--data DIR] audit query [--correlation-id X] [--principal X] ... [--url URL]\n"
            "       cairn admin [--data DIR] key create NAME | key list [NAME] | key revoke ACCESS_KEY\n"
            "       cairn admin [--data DIR] bucket set-public NAME [--off] | bucket list\n"
            "       cairn admin [--data DIR] node list | add URL | drain ID|URL | remove ID|URL\n"
            "       cairn admin [--data DIR] jobs list [--state S] [--kind K] | show ID | retry ID | cancel ID\n"
            "       cairn admin [--data DIR] jobs enqueue KIND [JSON] [--count N] [--max-attempts N] [--delay-ms MS]\n"
            "       cairn admin [--data DIR] notify target add NAME URL [--secret S] [--max-attempts N] [--ordered] |\n"
            "                                target list |\n"
            "                                target remove NAME\n"
            "       cairn admin [--data DIR] lifecycle run [--bucket NAME]\n"
            "       cairn admin [--data DIR] limits set --key AK|--bucket NAME [--ops N] [--bytes N] |\n"
            "                                get --key AK|--bucket NAME | list | remove --key AK|--bucket NAME\n"
            "       cairn admin [--data DIR] kms key create [--id ID] [--description TEXT] | key list [--json] |\n"
            "                                key rotate ID | key disable ID | key enable ID\n"
            "       cairn admin [--data DIR] kms rotate-master [--new-key-file PATH]\n"
            "       cairn admin [--data DIR] fsck [--repair] [--json]\n"
            "       cairn admin [--data DIR] audit journal-dump [--all | --spool]\n"
            "       cairn admin [--data DIR] audit dlq [--rejected]\n");
    return 2;
}

/* cairn admin audit journal-dump [--all | --spool]: the audit journal's events, one
 * JSON object per line, oldest first; without --all only those not yet
 * shipped.  Reads the files only (no lock): it works on a running server's
 * directory and on a dead one's.  Corrupt records are skipped and counted
 * on stderr (docs/audit.md). */
static int print_record(void *ud, const audit_record *r) {
    (void)ud;
    fwrite(r->payload, 1, r->len, stdout);
    fputc('\n', stdout);
    return 0;
}

static int admin_audit_dump(const config_t *cfg, int argc, char **argv) {
    bool all = false, spool = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--all")) all = true;
        else if (!strcmp(argv[i], "--spool")) spool = true;
        else {
            fprintf(stderr, "usage: cairn admin [--data DIR] audit journal-dump [--all | --spool]\n");
            return 2;
        }
    }
    if (all && spool) {
        fprintf(stderr, "usage: cairn admin [--data DIR] audit journal-dump [--all | --spool]\n");
        return 2;
    }
    char dir[sizeof cfg->data_dir + 16];
    snprintf(dir, sizeof dir, "%s/audit", cfg->data_dir);
    uint64_t corrupt = 0;
    int rc = spool ? audit_spool_scan(dir, print_record, NULL, &corrupt)
                   : audit_journal_scan(dir, all, print_record, NULL, &corrupt);
    fflush(stdout);
    if (corrupt) fprintf(stderr, "cairn: %llu corrupt region(s) skipped\n", (unsigned long long)corrupt);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot read the audit journal in %s: %s\n", dir, cairn_strerror(rc));
        return 1;
    }
    return 0;
}

/* The audit event of an admin command (docs/audit.md): straight into the
 * audit store's database (audit_metadata_url), durable before the command
 * exits.  action is
 * "admin:" and the words of the command (user create: admin:UserCreate);
 * the principal is "admin", the user the operating-system account, the
 * source "local"; status 200, 400 for a refused command (usage), 500 for
 * one that failed. */
static void action_word(buf_t *b, const char *w) {
    bool up = true;
    for (const char *p = w; *p; p++) {
        if (*p == '-' || *p == '_') {
            up = true;
            continue;
        }
        if ((*p < 'a' || *p > 'z') && (*p < 'A' || *p > 'Z') && (*p < '0' || *p > '9')) break;
        buf_putc(b, up && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p);
        up = false;
    }
}

static int admin_audit_event(meta_store *ms, int argc, char **argv, int rc, int64_t started_ns, int64_t started_us) {
    buf_t action;
    buf_init(&action);
    buf_puts(&action, "admin:");
    for (int i = 0; i < argc && i < 2 && argv[i][0] != '-'; i++) action_word(&action, argv[i]);
    if (action.len == 6) buf_puts(&action, "Unknown");
    char id[AUDIT_ID_LEN + 1], rid[AUDIT_ID_LEN + 1];
    audit_event_id_new(id);
    memcpy(rid, id, sizeof rid); /* a request id as the gateway makes them: the same time-ordered digits, upper case */
    for (char *p = rid; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
    struct passwd *pw = getpwuid(getuid());
    char who[META_AUDIT_STR_MAX];
    snprintf(who, sizeof who, "%s", pw && pw->pw_name ? pw->pw_name : "");
    const char *bucket = argc > 2 && !strcmp(argv[0], "bucket") ? argv[2] : "";
    char bk[META_AUDIT_STR_MAX];
    snprintf(bk, sizeof bk, "%s", bucket);
    meta_audit_event e = {.event_id = id,
                          .time_us = started_us,
                          .request_id = rid,
                          .correlation_id = rid,
                          .principal = "admin",
                          .user = who,
                          .source_address = "local",
                          .action = action.oom ? "admin:Unknown" : action.data,
                          .bucket = bk,
                          .key = "",
                          .version_id = "",
                          .outcome = rc == 0 ? "success" : "error",
                          .error_code = "",
                          .status = rc == 0 ? 200 : rc == 2 ? 400 : 500,
                          .duration_us = (time_mono_ns() - started_ns) / 1000};
    int inserted = 0;
    int arc = meta_audit_insert(ms, &e, 1, &inserted);
    buf_free(&action);
    if (arc != 0) fprintf(stderr, "cairn: the audit event of this command could not be recorded: %s\n", cairn_strerror(arc));
    return arc;
}

int cmd_admin_record(const config_t *cfg, meta_store *ms, int argc, char **argv, int rc, int64_t started_ns,
                     int64_t started_us) {
    meta_store *ams = NULL;
    int arc = cmd_open_audit_meta(cfg, ms, &ams);
    if (arc == 0) arc = admin_audit_event(ams, argc, argv, rc, started_ns, started_us);
    cmd_close_audit_meta(ms, ams);
    return arc;
}

int cmd_admin(int argc, char **argv) {
    config_t cfg;
    char *rest[CMD_MAX_ARGS];
    int nrest = 0;
    int rc = cmd_load_config(argc, argv, &cfg, rest, &nrest);
    if (rc != 0) return rc;
    /* fsck opens the store itself, under the data directory's lock. */
    if (nrest > 0 && !strcmp(rest[0], "fsck")) return cmd_fsck(&cfg, nrest, rest);
    if (nrest > 1 && !strcmp(rest[0], "audit") && !strcmp(rest[1], "journal-dump")) return admin_audit_dump(&cfg, nrest, rest);
    /* The dead-letter queue is files (and Redis): no database either. */
    if (nrest > 1 && !strcmp(rest[0], "audit") && !strcmp(rest[1], "dlq")) return cmd_admin_audit(&cfg, NULL, nrest, rest);
    /* A remote audit query needs no local database. */
    if (cmd_admin_audit_remote(nrest, rest)) return cmd_admin_audit(&cfg, NULL, nrest, rest);
    meta_store *ms;
    unsigned char mk[32];
    if ((rc = cmd_open_meta(&cfg, &ms, mk)) != 0) return rc;
    int64_t t0 = time_mono_ns(), t0_us = time_now_us();
    rc = admin_run(ms, &cfg, mk, nrest, rest);
    fflush(stdout);
    if (cmd_admin_record(&cfg, ms, nrest, rest, rc, t0, t0_us) != 0 && rc == 0) rc = 1;
    meta_close(ms);
    return rc;
}
