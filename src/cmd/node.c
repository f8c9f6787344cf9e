/*
 * node.c — `cairn node`: a storage node serving the shard API
 * (docs/shard-api.md) from its drives.  Gateways reach it with the cluster
 * secret; it keeps no metadata of its own beyond the drives' ids.
 *
 * Its parts are services of the registry (core/service.c), as a server's
 * are: log shipping first up and last down, the drives, the TLS material,
 * and HTTP last up and first down (in-flight requests drain within
 * shutdown_timeout before the drives close).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "node/node.h"

/* How long a stop may take at most: HTTP gets shutdown_timeout, then this. */
#define NODE_STOP_SLACK_MS 10000

typedef struct {
    config_t cfg;
    logship *logs;
    char list[sizeof((config_t *)0)->drives];
    char *paths[64];
    int ndrives, cleaned;
    node_server *node;
    char *tls_cert, *tls_key;
    http_server *srv;
    int port;
    int exit_code;             /* what the process returns when a start fails (the start said why) */
} node_proc;

static int fail_with(node_proc *np, int code) {
    np->exit_code = code;
    return CAIRN_EIO;
}

static int logs_start(void *ud) {
    node_proc *np = ud;
    return cmd_logship_start(&np->cfg, "node", &np->logs) == 0 ? 0 : fail_with(np, 1);
}

static void logs_stop(void *ud) {
    node_proc *np = ud;
    cmd_logship_stop(&np->cfg, np->logs);
    np->logs = NULL;
}

static int drives_start(void *ud) {
    node_proc *np = ud;
    np->ndrives = cmd_drive_paths(&np->cfg, np->list, sizeof np->list, np->paths);
    int rc = node_server_new((const char *const *)np->paths, np->ndrives, np->cfg.fsync, np->cfg.cluster_secret,
                             &np->node, &np->cleaned);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn node: cannot open the drives: %s\n",
            rc == CAIRN_EBUSY ? "a drive is in use by another process (see the log line naming it)" : cairn_strerror(rc));
    return fail_with(np, 1);
}

static void drives_stop(void *ud) {
    node_proc *np = ud;
    node_server_free(np->node);
    np->node = NULL;
}

static int tls_start(void *ud) {
    node_proc *np = ud;
    int rc = cmd_load_tls(&np->cfg, &np->tls_cert, &np->tls_key);
    return rc == 0 ? 0 : fail_with(np, rc);
}

static void tls_stop(void *ud) {
    node_proc *np = ud;
    free(np->tls_cert);
    free(np->tls_key);
    np->tls_cert = np->tls_key = NULL;
}

static int http_start(void *ud) {
    node_proc *np = ud;
    const config_t *c = &np->cfg;
    /* A node's clients are gateways: one address for all of a gateway's
     * connections, and bodies paced by the gateway's own clients.  So no
     * per-address limit, and the body rate only for bodies it refused. */
    http_options ho = {.listen = c->listen, .connection_limit = c->connection_limit,
                       .connection_timeout = c->connection_timeout, .max_header_bytes = c->max_header_bytes,
                       .header_timeout = c->client_header_timeout, .min_drain_rate = c->min_body_rate,
                       .body_rate_window = c->min_body_rate_window,
                       .tls_cert_pem = np->tls_cert, .tls_key_pem = np->tls_key};
    char err[256];
    char *client_ca = NULL;
    if (c->tls_client_ca[0] && !(client_ca = cmd_read_pem(c->tls_client_ca))) {
        fprintf(stderr, "cairn node: cannot read %s (tls_client_ca)\n", c->tls_client_ca);
        tls_stop(np);
        return fail_with(np, 2);
    }
    ho.tls_client_ca_pem = client_ca;
    int rc = http_server_start(&ho, node_http_handler(), np->node, &np->srv, &np->port, err, sizeof err);
    tls_stop(np); /* the server has read them */
    free(client_ca);
    if (rc == 0 && c->tls_cert[0]) cmd_tls_reload_on_sighup(&np->cfg);
    if (rc == 0) return 0;
    fprintf(stderr, "cairn node: %s\n", err);
    return fail_with(np, 1);
}

static void http_stop(void *ud) {
    node_proc *np = ud;
    int left = cmd_drain_and_stop(np->srv, np->cfg.shutdown_timeout);
    np->srv = NULL;
    char n[24];
    log_write(LOG_INFO, NULL, "node stopped", "abandoned_requests", log_int(n, left), NULL);
}

int cmd_node(int argc, char **argv) {
    sigset_t sigs;
    node_proc *np = calloc(1, sizeof *np);
    if (!np) {
        fprintf(stderr, "cairn node: out of memory\n");
        return 1;
    }
    int rc = cmd_service_begin(argc, argv, "node",
                               "cairn node --listen ADDR:PORT --drives DIR[,DIR...] (CAIRN_CLUSTER_SECRET set)", &sigs,
                               &np->cfg);
    if (rc == 0 && !np->cfg.cluster_secret[0]) {
        fprintf(stderr, "cairn node: set cluster_secret (CAIRN_CLUSTER_SECRET), the secret gateways sign with\n");
        rc = 2;
    }
    if (rc != 0) {
        free(np);
        return rc;
    }
    const svc_def defs[] = {
        {"logship", NULL, logs_start, logs_stop, np, 0},
        {"drives", NULL, drives_start, drives_stop, np, 0},
        {"tls", NULL, tls_start, tls_stop, np, 0},
        {"http", "drives,tls", http_start, http_stop, np, np->cfg.shutdown_timeout * 1000 + NODE_STOP_SLACK_MS},
    };
    svc_registry *services = NULL;
    char why[256] = "";
    rc = svc_registry_new(NODE_STOP_SLACK_MS, &services);
    for (size_t i = 0; rc == 0 && i < sizeof defs / sizeof defs[0]; i++) rc = svc_add(services, &defs[i]);
    if (rc == 0) rc = svc_start_all(services, why, sizeof why);
    if (rc != 0) {
        if (!np->exit_code) fprintf(stderr, "cairn node: cannot start: %s\n", why[0] ? why : cairn_strerror(rc));
        rc = np->exit_code ? np->exit_code : 1;
        svc_registry_free(services);
        free(np);
        return rc;
    }
    char portstr[16], nd[16], cl[16];
    snprintf(portstr, sizeof portstr, "%d", np->port);
    snprintf(nd, sizeof nd, "%d", np->ndrives);
    snprintf(cl, sizeof cl, "%d", np->cleaned);
    log_write(LOG_INFO, NULL, "node listening", "listen", np->cfg.listen, "port", portstr, "node_id",
              node_server_id(np->node), "drives", nd, "temp_files_removed", cl, NULL);
    printf("cairn node %s listening on %s (port %d, %s), %d drive(s)\n", node_server_id(np->node), np->cfg.listen,
           np->port, np->cfg.tls_cert[0] ? "https" : "http", np->ndrives);
    fflush(stdout);
    cmd_wait_stop_signal(&sigs);
    int stopped = svc_stop_all(services);
    svc_registry_free(services);
    if (stopped != 0) return 1; /* a stop still runs: what it may use stays allocated */
    free(np);
    return 0;
}
