/*
 * node.c — `cairn node`: a storage node serving the shard API
 * (docs/shard-api.md) from its drives.  Gateways reach it with the cluster
 * secret; it keeps no metadata of its own beyond the drives' ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "node/node.h"

int cmd_node(int argc, char **argv) {
    sigset_t sigs;
    config_t cfg;
    int rc = cmd_service_begin(argc, argv, "node",
                               "cairn node --listen ADDR:PORT --drives DIR[,DIR...] (CAIRN_CLUSTER_SECRET set)", &sigs, &cfg);
    if (rc != 0) return rc;
    if (!cfg.cluster_secret[0]) {
        fprintf(stderr, "cairn node: set cluster_secret (CAIRN_CLUSTER_SECRET), the secret gateways sign with\n");
        return 2;
    }
    char list[sizeof cfg.drives];
    char *paths[64];
    int n = cmd_drive_paths(&cfg, list, sizeof list, paths);
    node_server *node = NULL;
    int cleaned = 0;
    if ((rc = node_server_new((const char *const *)paths, n, cfg.fsync, cfg.cluster_secret, &node, &cleaned)) != 0) {
        fprintf(stderr, "cairn node: cannot open the drives: %s\n",
                rc == CAIRN_EBUSY ? "a drive is in use by another process (see the log line naming it)"
                                  : cairn_strerror(rc));
        return 1;
    }
    char *tls_cert = NULL, *tls_key = NULL;
    if ((rc = cmd_load_tls(&cfg, &tls_cert, &tls_key)) != 0) {
        node_server_free(node);
        return rc;
    }
    /* A node's clients are gateways: one address for all of a gateway's
     * connections, and bodies paced by the gateway's own clients.  So no
     * per-address limit, and the body rate only for bodies it refused. */
    http_options ho = {.listen = cfg.listen, .connection_limit = cfg.connection_limit,
                       .connection_timeout = cfg.connection_timeout, .max_header_bytes = cfg.max_header_bytes,
                       .header_timeout = cfg.client_header_timeout, .min_drain_rate = cfg.min_body_rate,
                       .body_rate_window = cfg.min_body_rate_window,
                       .tls_cert_pem = tls_cert, .tls_key_pem = tls_key};
    http_server *srv = NULL;
    int port = 0;
    char err[256];
    int started = http_server_start(&ho, node_http_handler(), node, &srv, &port, err, sizeof err);
    free(tls_cert);
    free(tls_key);
    if (started != 0) {
        fprintf(stderr, "cairn node: %s\n", err);
        node_server_free(node);
        return 1;
    }
    char portstr[16], nd[16], cl[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(nd, sizeof nd, "%d", n);
    snprintf(cl, sizeof cl, "%d", cleaned);
    log_write(LOG_INFO, NULL, "node listening", "listen", cfg.listen, "port", portstr, "node_id",
              node_server_id(node), "drives", nd, "temp_files_removed", cl, NULL);
    printf("cairn node %s listening on %s (port %d, %s), %d drive(s)\n", node_server_id(node), cfg.listen, port,
           cfg.tls_cert[0] ? "https" : "http", n);
    fflush(stdout);
    cmd_serve_until_signal(srv, &sigs, cfg.shutdown_timeout);
    node_server_free(node);
    log_write(LOG_INFO, NULL, "node stopped", NULL);
    return 0;
}
