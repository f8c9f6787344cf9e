/*
 * node.h — the storage node: the shard API (docs/shard-api.md) over the
 * node's local drives, served by http/.  Used by `cairn node`.  What the
 * gateway's side shares with it (signatures, tags, nonces, response heads)
 * is data/shard_api.h.
 *
 * Thread-safety: the node is shared by every connection thread; it holds
 * drives (thread-safe), immutable settings and the replay table (locked).
 */
#ifndef CAIRN_NODE_H
#define CAIRN_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "data/data.h"
#include "data/shard_api.h"
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

/* ---- replays (docs/shard-api.md, "Authentication") ------------------------------------ */

#define NODE_CLOCK_WINDOW_MS 300000      /* a request's date may be this far from the node's clock */
#define NODE_REPLAY_WINDOW 4096          /* sequence numbers remembered per session (bits) */
#define NODE_REPLAY_SESSIONS 1024        /* sessions a node remembers */

/* The replay table: per gateway session (at most max_sessions of them, the
 * least recently used evicted), the highest sequence number admitted and a
 * bitmap of the NODE_REPLAY_WINDOW numbers below it.  floor_ms: requests of a
 * session the table does not hold must be dated after it; it rises to the
 * newest date of every session evicted.  Thread-safe.  Free with
 * node_replay_free. */
typedef struct node_replay node_replay;
int node_replay_new(size_t max_sessions, int64_t floor_ms, node_replay **out);
void node_replay_free(node_replay *rp);
/* Admits (session, seq) dated date_ms once: 0, or CAIRN_EAUTH when it was
 * admitted before, is NODE_REPLAY_WINDOW or more behind the session's highest,
 * or is not dated after the floor its session entry was created under. */
int node_replay_admit(node_replay *rp, const unsigned char session[SHARD_SESSION_BYTES], uint64_t seq,
                      int64_t date_ms);
int64_t node_replay_floor(node_replay *rp);

#endif
