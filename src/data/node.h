/*
 * node.h — the storage node: the shard API (docs/shard-api.md) over the
 * node's local drives, served by http/.  Used by `cairn node`.
 *
 * Also the pieces of the shard API that both ends share (the gateway side is
 * remote.c): the request signature, the body tag of a PUT, the node's replay
 * table, and the parser of a node's response head.  They are here, and not
 * static, so unit tests and the fuzz target (tests/fuzz/fuzz_shard.c) reach
 * them.
 *
 * Thread-safety: the node is shared by every connection thread; it holds
 * drives (thread-safe), immutable settings and the replay table (locked).
 * node_sign, node_body_key, node_nonce_parse and node_head_parse are pure.
 */
#ifndef CAIRN_DATA_NODE_H
#define CAIRN_DATA_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "data/data.h"
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

/* ---- authentication (docs/shard-api.md, "Authentication") --------------------------- */

#define NODE_CLOCK_WINDOW_MS 300000      /* a request's date may be this far from the node's clock */
#define NODE_SESSION_BYTES 16            /* a gateway session id: random, 32 hex in the nonce */
#define NODE_NONCE_MAX 56                /* "<32 hex>.<seq>" and its NUL */
#define NODE_TAG_LEN 16                  /* the Poly1305 tag after a PUT's shard bytes */
#define NODE_REPLAY_WINDOW 4096          /* sequence numbers remembered per session (bits) */
#define NODE_REPLAY_SESSIONS 1024        /* sessions a node remembers */

/* The request signature (64 hex and a NUL): HMAC-SHA256(secret,
 * "CAIRN-SHARD-2\n" node_id "\n" method "\n" target "\n" date "\n" nonce "\n"
 * length), length being the decimal Content-Length or "" (content_length < 0).
 * Shared by the node (to check) and the gateway (to sign).  CAIRN_EINVAL when
 * the parts are longer than a shard API request can be (4 KiB of target),
 * CAIRN_ENOMEM when the HMAC could not be computed (out[0] is then NUL). */
int node_sign(const char *secret, const char *node_id, const char *method, const char *target,
               const char *date, const char *nonce, int64_t content_length, char out[65]);
/* The one-time Poly1305 key of a PUT's body tag: HMAC-SHA256(secret,
 * "CAIRN-SHARD-2-BODY\n" sig), sig being the request's 64-hex signature;
 * false when it could not be computed (out of memory). */
bool node_body_key(const char *secret, const char *sig, unsigned char key[32]);
/* A Poly1305 context keyed with node_body_key (poly: EVP_MAC_fetch(NULL,
 * "POLY1305", NULL), shared); NULL when out of memory.  The caller frees it
 * with EVP_MAC_CTX_free. */
EVP_MAC_CTX *node_tag_new(EVP_MAC *poly, const char *secret, const char *sig);

/* Parses a nonce "<32 lowercase hex>.<decimal seq>" (no sign, no leading
 * zeros, at most UINT64_MAX); 0 or CAIRN_EINVAL. */
int node_nonce_parse(const char *nonce, unsigned char session[NODE_SESSION_BYTES], uint64_t *seq);

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
int node_replay_admit(node_replay *rp, const unsigned char session[NODE_SESSION_BYTES], uint64_t seq,
                      int64_t date_ms);
int64_t node_replay_floor(node_replay *rp);

/* ---- a node's response head, as the gateway reads it ---------------------------------- */

#define NODE_HEAD_MAX 8192                       /* a longer head is refused */
#define NODE_MAX_CONTENT_LENGTH (1LL << 40)      /* 1 TiB: no shard API body comes near */

typedef struct {
    int status;              /* 200..599 */
    int64_t content_length;  /* -1 when absent */
    size_t head_len;         /* bytes up to and including the blank line; 0: incomplete */
    char node_id[DATA_DRIVE_ID_LEN + 1]; /* X-Cairn-Node-Id, "" when absent */
} node_head;

/* Parses the response head at the start of buf[0..len) (no NUL needed; never
 * reads past len).  0 with h->head_len > 0 when a complete head was parsed
 * (the body starts at buf + head_len); 0 with h->head_len == 0 when more
 * bytes are needed; CAIRN_EINVAL when what is there cannot be a good head: a
 * status line other than "HTTP/1.0|1 NNN[ reason]" (200..599), a bare CR or
 * LF, a header line without a name or colon, a folded line, a
 * Content-Length that is not 1..19 digits, above NODE_MAX_CONTENT_LENGTH or
 * repeated with another value, any Transfer-Encoding, an X-Cairn-Node-Id
 * that is not DATA_DRIVE_ID_LEN lowercase hex, or no end within
 * NODE_HEAD_MAX bytes. */
int node_head_parse(const char *buf, size_t len, node_head *h);

#endif
