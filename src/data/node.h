/*
 * node.h — the storage node: the shard API (docs/shard-api.md) over the
 * node's local drives, served by http/.  Used by `cairn node`.
 *
 * Thread-safety: the node is shared by every connection thread; it holds only
 * drives (thread-safe) and immutable settings.
 */
#ifndef CAIRN_DATA_NODE_H
#define CAIRN_DATA_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"

typedef struct node_server node_server;

/* Opens the drives (creating them; *cleaned gets stale temp files removed).
 * secret: the cluster secret.  Free with node_server_free. */
int node_server_new(const char *const *drives, int ndrives, bool fsync, const char *secret,
                    node_server **out, int *cleaned);
void node_server_free(node_server *n);
const char *node_server_id(const node_server *n);
/* Callbacks for http_server_start with the node as app. */
const http_handler *node_http_handler(void);

/* Computes the request signature (hex, 65 bytes) for a method, target and
 * date: shared by the node (to check) and the gateway (to sign). */
void node_sign(const char *secret, const char *method, const char *target, const char *date,
               char out[65]);

#endif
