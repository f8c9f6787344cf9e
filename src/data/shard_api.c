/*
 * shard_api.c — the pieces of the shard API (docs/shard-api.md) that both
 * ends share: the request signature and the body tag of a PUT, the nonce,
 * the numbers as the API writes them, and the parser of a node's response
 * head.  The gateway's side is remote.c; the node's is node/.
 */
#include "data/shard_api.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* ---- signatures, tags and nonces -------------------------------------------------------------- */

int shard_sign(const char *secret, const char *node_id, const char *method, const char *target, const char *date,
              const char *nonce, int64_t content_length, char out[65]) {
    char msg[SHARD_MAX_TARGET + 512], len[24] = "";
    assert(content_length >= -1 || content_length == SHARD_LENGTH_CHUNKED);
    if (content_length >= 0) snprintf(len, sizeof len, "%lld", (long long)content_length);
    else if (content_length == SHARD_LENGTH_CHUNKED) snprintf(len, sizeof len, "chunked");
    int n = snprintf(msg, sizeof msg, "CAIRN-SHARD-2\n%s\n%s\n%s\n%s\n%s\n%s", node_id, method, target, date, nonce,
                     len);
    if (n < 0 || n >= (int)sizeof msg) {
        out[0] = '\0';
        return CAIRN_EINVAL;
    }
    unsigned char mac[32];
    unsigned int maclen = 0;
    /* HMAC allocates and can fail: then mac holds nothing to send or compare. */
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n, mac, &maclen)) {
        out[0] = '\0';
        return CAIRN_ENOMEM;
    }
    hex_encode(mac, 32, out);
    return 0;
}

bool shard_body_key(const char *secret, const char *sig, unsigned char key[32]) {
    char msg[96];
    int n = snprintf(msg, sizeof msg, "CAIRN-SHARD-2-BODY\n%.64s", sig);
    unsigned int len = 0;
    /* HMAC allocates and can fail: then key holds nothing to use. */
    return HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n, key, &len) != NULL;
}

EVP_MAC_CTX *shard_tag_new(EVP_MAC *poly, const char *secret, const char *sig) {
    unsigned char key[32];
    if (!shard_body_key(secret, sig, key)) return NULL;
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(poly);
    if (c && !EVP_MAC_init(c, key, sizeof key, NULL)) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    OPENSSL_cleanse(key, sizeof key);
    return c;
}

int shard_tail_feed(shard_tail *t, const void *p, size_t n, unsigned char rel[SHARD_TAG_LEN], struct iovec iov[2]) {
    assert(t->n <= SHARD_TAG_LEN);
    const unsigned char *c = p;
    int cnt = 0;
    if (t->n + n > SHARD_TAG_LEN) {
        size_t out = t->n + n - SHARD_TAG_LEN;          /* bytes no longer among the last 16 */
        size_t from_held = out < t->n ? out : t->n, from_p = out - from_held;
        if (from_held) {
            memcpy(rel, t->b, from_held);
            memmove(t->b, t->b + from_held, t->n - from_held);
            t->n -= from_held;
            iov[cnt++] = (struct iovec){rel, from_held};
        }
        if (from_p) {
            iov[cnt++] = (struct iovec){(void *)(uintptr_t)c, from_p};
            c += from_p;
            n -= from_p;
        }
        assert(t->n + n == SHARD_TAG_LEN);
    }
    if (n) memcpy(t->b + t->n, c, n);
    t->n += n;
    return cnt;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool shard_decimal_parse(const char *s, size_t n, size_t maxdigits, bool zeros, uint64_t *out) {
    if (n == 0 || n > maxdigits || (!zeros && n > 1 && s[0] == '0')) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int shard_nonce_parse(const char *nonce, unsigned char session[SHARD_SESSION_BYTES], uint64_t *seq) {
    size_t n = strnlen(nonce, SHARD_NONCE_MAX);
    if (n == SHARD_NONCE_MAX || n < 2 * SHARD_SESSION_BYTES + 2 || nonce[2 * SHARD_SESSION_BYTES] != '.')
        return CAIRN_EINVAL;
    for (int i = 0; i < SHARD_SESSION_BYTES; i++) {
        int hi = hexval(nonce[2 * i]), lo = hexval(nonce[2 * i + 1]);
        if (hi < 0 || lo < 0) return CAIRN_EINVAL;
        session[i] = (unsigned char)(hi << 4 | lo);
    }
    const char *num = nonce + 2 * SHARD_SESSION_BYTES + 1;
    return shard_decimal_parse(num, n - 2 * SHARD_SESSION_BYTES - 1, 20, false, seq) ? 0 : CAIRN_EINVAL;
}

/* ---- the response head parser (the gateway's side, remote.c) ------------------------------- */

static bool is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value or reason phrase byte: visible, space, tab or obs-text. */
static bool is_vbyte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static bool name_is(const char *p, size_t n, const char *want) {
    return strlen(want) == n && strncasecmp(p, want, n) == 0;
}

/* One header line [p, p+n) (no CRLF) into h. */
static int parse_field(const char *p, size_t n, shard_head *h) {
    size_t nl = 0;
    while (nl < n && is_tchar((unsigned char)p[nl])) nl++;
    if (nl == 0 || nl == n || p[nl] != ':') return CAIRN_EINVAL;
    const char *v = p + nl + 1, *end = p + n;
    for (const char *q = v; q < end; q++)
        if (!is_vbyte((unsigned char)*q)) return CAIRN_EINVAL;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t vl = (size_t)(end - v);
    if (name_is(p, nl, "content-length")) {
        uint64_t len;
        if (!shard_decimal_parse(v, vl, 19, true, &len)) return CAIRN_EINVAL;
        if (len > (uint64_t)SHARD_MAX_CONTENT_LENGTH) return CAIRN_EINVAL;
        if (h->content_length >= 0 && (uint64_t)h->content_length != len) return CAIRN_EINVAL;
        h->content_length = (int64_t)len;
    } else if (name_is(p, nl, "transfer-encoding")) {
        return CAIRN_EINVAL; /* a node frames every answer with Content-Length */
    } else if (name_is(p, nl, "x-cairn-node-id")) {
        if (vl != DATA_DRIVE_ID_LEN) return CAIRN_EINVAL;
        for (size_t i = 0; i < vl; i++)
            if (hexval(v[i]) < 0) return CAIRN_EINVAL;
        if (h->node_id[0] && memcmp(h->node_id, v, vl) != 0) return CAIRN_EINVAL;
        memcpy(h->node_id, v, vl);
        h->node_id[vl] = '\0';
    }
    return 0;
}

/* The status line [p, p+n): "HTTP/1.x NNN" and an optional " reason". */
static int parse_status(const char *p, size_t n, shard_head *h) {
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') return CAIRN_EINVAL;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return CAIRN_EINVAL;
        st = st * 10 + (p[i] - '0');
    }
    if (st < 200 || st > 599 || (n > 12 && p[12] != ' ')) return CAIRN_EINVAL;
    for (size_t i = 12; i < n; i++)
        if (!is_vbyte((unsigned char)p[i])) return CAIRN_EINVAL;
    h->status = st;
    return 0;
}

int shard_head_parse(const char *buf, size_t len, shard_head *h) {
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    size_t lim = len < SHARD_HEAD_MAX ? len : SHARD_HEAD_MAX;
    const char *end = memmem(buf, lim, "\r\n\r\n", 4);
    if (!end) return len >= SHARD_HEAD_MAX ? CAIRN_EINVAL : 0;
    size_t head_len = (size_t)(end - buf) + 4;
    /* Lines [p, eol), each ended by CRLF; the last one before the blank line. */
    const char *p = buf, *stop = end + 2;
    bool first = true;
    while (p < stop) {
        const char *eol = memchr(p, '\r', (size_t)(stop - p));
        assert(eol && eol + 1 < stop); /* stop - 2 is a CR, stop - 1 its LF */
        if (eol[1] != '\n') return CAIRN_EINVAL; /* a bare CR */
        size_t n = (size_t)(eol - p);
        if (memchr(p, '\n', n)) return CAIRN_EINVAL; /* a bare LF */
        int rc = first ? parse_status(p, n, h) : parse_field(p, n, h);
        if (rc != 0) {
            h->status = 0;
            return rc;
        }
        first = false;
        p = eol + 2;
    }
    h->head_len = head_len;
    return 0;
}

