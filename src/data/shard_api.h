/*
 * shard_api.h — the pieces of the shard API (docs/shard-api.md) that both
 * ends share: public to node/ (the node's server) and used here by the
 * gateway's side (remote.c).  The request signature, the body tag of a PUT,
 * the nonce, the decimal numbers as the API writes them, and the parser of
 * a node's response head.  All pure; unit tests and the fuzz target
 * (tests/fuzz/fuzz_shard.c) reach them here.
 */
#ifndef CAIRN_DATA_SHARD_API_H
#define CAIRN_DATA_SHARD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <openssl/evp.h>

#include "data/data.h"

/* ---- authentication (docs/shard-api.md, "Authentication") --------------------------- */

#define SHARD_SESSION_BYTES 16           /* a gateway session id: random, 32 hex in the nonce */
#define SHARD_NONCE_MAX 56               /* "<32 hex>.<seq>" and its NUL */
#define SHARD_TAG_LEN 16                 /* the Poly1305 tag after a PUT's shard bytes */
#define SHARD_MAX_TARGET 4096            /* the longest request target signed */
#define SHARD_LENGTH_CHUNKED (-2)        /* shard_sign: a body sent Transfer-Encoding: chunked */

/* The request signature (64 hex and a NUL): HMAC-SHA256(secret,
 * "CAIRN-SHARD-2\n" node_id "\n" method "\n" target "\n" date "\n" nonce "\n"
 * length), length being the decimal Content-Length, "chunked" for a body
 * of unknown length sent chunked (content_length == SHARD_LENGTH_CHUNKED), or
 * "" for no body (content_length == -1).
 * Shared by the node (to check) and the gateway (to sign).  CAIRN_EINVAL when
 * the parts are longer than a shard API request can be (4 KiB of target),
 * CAIRN_ENOMEM when the HMAC could not be computed (out[0] is then NUL). */
int shard_sign(const char *secret, const char *node_id, const char *method, const char *target,
               const char *date, const char *nonce, int64_t content_length, char out[65]);
/* The one-time Poly1305 key of a PUT's body tag: HMAC-SHA256(secret,
 * "CAIRN-SHARD-2-BODY\n" sig), sig being the request's 64-hex signature;
 * false when it could not be computed (out of memory). */
bool shard_body_key(const char *secret, const char *sig, unsigned char key[32]);
/* A Poly1305 context keyed with shard_body_key (poly: EVP_MAC_fetch(NULL,
 * "POLY1305", NULL), shared); NULL when out of memory.  The caller frees it
 * with EVP_MAC_CTX_free. */
EVP_MAC_CTX *shard_tag_new(EVP_MAC *poly, const char *secret, const char *sig);

/* The tag of a PUT sent chunked trails shard bytes of unknown count: the
 * node holds back the last SHARD_TAG_LEN bytes it has seen, so when the
 * stream ends properly they are the tag.  Zero-initialise. */
typedef struct {
    unsigned char b[SHARD_TAG_LEN];
    size_t n;                            /* bytes held, at most SHARD_TAG_LEN */
} shard_tail;
/* Feeds a body piece p[0..n): fills iov[0..return) with the bytes now known
 * to be shard bytes, in order (held bytes released are copied to rel, the
 * rest point into p), and holds back the newest SHARD_TAG_LEN bytes.  Returns
 * 0, 1 or 2.  Pure; the fuzz target checks it against a whole-body split. */
int shard_tail_feed(shard_tail *t, const void *p, size_t n, unsigned char rel[SHARD_TAG_LEN], struct iovec iov[2]);

/* Parses a nonce "<32 lowercase hex>.<decimal seq>" (no sign, no leading
 * zeros, at most UINT64_MAX); 0 or CAIRN_EINVAL. */
int shard_nonce_parse(const char *nonce, unsigned char session[SHARD_SESSION_BYTES], uint64_t *seq);

/* Decimal digits s[0..n): 1..maxdigits of them, no sign, no overflow of
 * uint64_t; a leading zero only when zeros is true (or for "0" itself). */
bool shard_decimal_parse(const char *s, size_t n, size_t maxdigits, bool zeros, uint64_t *out);

/* ---- a node's response head, as the gateway reads it ---------------------------------- */

#define SHARD_HEAD_MAX 8192                       /* a longer head is refused */
#define SHARD_MAX_CONTENT_LENGTH (1LL << 40)      /* 1 TiB: no shard API body comes near */

typedef struct {
    int status;              /* 200..599 */
    int64_t content_length;  /* -1 when absent */
    size_t head_len;         /* bytes up to and including the blank line; 0: incomplete */
    char node_id[DATA_DRIVE_ID_LEN + 1]; /* X-Cairn-Node-Id, "" when absent */
} shard_head;

/* Parses the response head at the start of buf[0..len) (no NUL needed; never
 * reads past len).  0 with h->head_len > 0 when a complete head was parsed
 * (the body starts at buf + head_len); 0 with h->head_len == 0 when more
 * bytes are needed; CAIRN_EINVAL when what is there cannot be a good head: a
 * status line other than "HTTP/1.0|1 NNN[ reason]" (200..599), a bare CR or
 * LF, a header line without a name or colon, a folded line, a
 * Content-Length that is not 1..19 digits, above SHARD_MAX_CONTENT_LENGTH or
 * repeated with another value, any Transfer-Encoding, an X-Cairn-Node-Id
 * that is not DATA_DRIVE_ID_LEN lowercase hex, or no end within
 * SHARD_HEAD_MAX bytes. */
int shard_head_parse(const char *buf, size_t len, shard_head *h);

#endif
