/*
 * sigv2.c — AWS Signature Version 2 for S3: the "Authorization: AWS
 * AccessKeyId:Signature" header and the AWSAccessKeyId / Signature / Expires
 * query of presigned URLs, as the aws cli v1 (`aws s3 presign`), boto2 and
 * s3cmd still make them.  Also the client side (sigv2_sign, sigv2_presign)
 * for tests and tools.
 *
 * How it works.  The signature is base64(HMAC-SHA1(secret, StringToSign)):
 *
 *   HTTP-Verb \n Content-MD5 \n Content-Type \n Date \n
 *   CanonicalizedAmzHeaders CanonicalizedResource
 *
 * following "Signing and authenticating REST requests" of the S3 reference:
 *  - Date is the Date header as sent, or empty when x-amz-date is present
 *    (the rule the reference states and boto2, s3cmd and Ceph RGW follow; the
 *    reference's own Delete example contradicts it, see test_sigv2.c).  For
 *    query auth it is the Expires parameter.
 *  - CanonicalizedAmzHeaders: every x-amz-* header, name lowercased, sorted by
 *    name, repeated headers joined with ',' in arrival order, values trimmed
 *    and unfolded (a line break with its surrounding blanks becomes one space),
 *    one "name:value\n" each.  Every x-amz-* header is signed, so none can be
 *    added or changed after signing.
 *  - CanonicalizedResource: "/" + bucket when the Host header named the bucket
 *    (the caller says so: only it knows the configured domain), then the path
 *    exactly as sent ("/bucket" of a path-style bucket request is signed as
 *    "/bucket/", as S3 does), then the sub-resources among the query parameters,
 *    sorted by name (stable), "name" or "name=value" with the value decoded.
 *    The list of sub-resources is the one botocore signs, which contains the
 *    reference's (acl, lifecycle, location, ... website, the response-*
 *    overrides, delete) and cors, tagging, restore, select, ...  Names are
 *    compared after percent-decoding, as the gateway reads them, so "?%61cl"
 *    cannot smuggle an unsigned "acl" past the signature.
 *
 * What V2 does not sign: the body (Content-MD5, checked elsewhere, covers it
 * when given), the Host header, and query parameters outside the list (a
 * signed listing can be replayed with another prefix).  That is the protocol;
 * the `sigv2` option turns it off where that matters.
 *
 * The verifier rebuilds the string from the raw request, never from what the
 * client claims, and compares the decoded 20-byte MAC with CRYPTO_memcmp.
 * Everything here is thread-safe: no shared state; MACs are wiped after use.
 */
#include "auth/auth.h"
#include "auth/query.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#define MAC_LEN 20
#define SIG_B64_LEN 28

static const char E_ARG[] = "InvalidArgument";
static const char E_DENIED[] = "AccessDenied";
static const char E_SIG[] = "SignatureDoesNotMatch";
static const char E_SKEW[] = "RequestTimeTooSkewed";

static const char M_NEED_DATE[] = "AWS authentication requires a valid Date or x-amz-date header";
static const char M_QUERY_PARAMS[] =
    "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters";
static const char M_BAD_HEADER[] = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature";
static const char M_MISMATCH[] = "The request signature we calculated does not match the signature you "
                                 "provided. Check your key and signing method.";

/* Query parameters that belong in the CanonicalizedResource: botocore's list
 * (HmacV1Auth.QSAOfInterest), a superset of the S3 reference's. */
static const char *const subresources[] = {
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
    "lifecycle", "location", "logging", "metrics", "notification", "object-lock", "partNumber",
    "policy", "replication", "requestPayment", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires", "restore", "select", "select-type",
    "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
    "versions", "website",
};

/* Sets the S3 error code and message of a refusal.  code and msg are never
 * NULL: sigv2_parse and sigv2_verify require both (every caller, the gateway,
 * the tests and the fuzz targets, passes them). */
static int fail(int rc, const char **code, const char **msg, const char *c, const char *m) {
    *code = c;
    *msg = m;
    return rc;
}

/* ---- small helpers ----------------------------------------------------------- */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static void trim(const char **p, size_t *n) {
    while (*n && is_space(**p)) { (*p)++; (*n)--; }
    while (*n && is_space((*p)[*n - 1])) (*n)--;
}

static bool span_ieq(const char *a, size_t an, const char *b) {
    return strlen(b) == an && strncasecmp(a, b, an) == 0;
}

static bool span_eq(const char *a, size_t an, const char *b) {
    return strlen(b) == an && memcmp(a, b, an) == 0;
}

static const auth_header *find_header(const sigv4_request *r, const char *name, int *count) {
    const auth_header *first = NULL;
    int c = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (span_ieq(r->headers[i].name, r->headers[i].name_len, name)) {
            if (!first) first = &r->headers[i];
            c++;
        }
    }
    if (count) *count = c;
    return first;
}

/* Appends a header value trimmed, with every line fold (a run of blanks that
 * holds a CR or LF) replaced by one space; other inner blanks are kept. */
static void put_value(buf_t *out, const char *v, size_t n) {
    trim(&v, &n);
    for (size_t i = 0; i < n;) {
        if (!is_space(v[i])) {
            buf_putc(out, v[i++]);
            continue;
        }
        size_t j = i;
        bool fold = false;
        for (; j < n && is_space(v[j]); j++)
            if (v[j] == '\r' || v[j] == '\n') fold = true;
        if (fold) buf_putc(out, ' ');
        else buf_append(out, v + i, j - i);
        i = j;
    }
}

/* Appends every value of the named header, joined with ','. */
static void put_header(buf_t *out, const sigv4_request *r, const char *name) {
    bool first = true;
    for (size_t i = 0; i < r->nheaders; i++) {
        const auth_header *h = &r->headers[i];
        if (!span_ieq(h->name, h->name_len, name)) continue;
        if (!first) buf_putc(out, ',');
        put_value(out, h->value, h->value_len);
        first = false;
    }
}

/* ---- query strings ------------------------------------------------------------ */

/* True when the raw query component decodes to exactly want. */
static bool name_is(const char *s, size_t n, const char *want) {
    char tmp[64];
    if (n >= sizeof tmp) return false; /* longer than any name looked for, even encoded */
    long dl = query_decode(s, n, tmp);
    return dl >= 0 && span_eq(tmp, (size_t)dl, want);
}

/* The credential parameters of a V2 presigned URL, raw. */
typedef struct {
    qparam ak, sig, expires;
    int n_ak, n_sig, n_expires;
    bool v4; /* X-Amz-Algorithm: a SigV4 presigned URL */
} v2_params;

static void collect_params(const char *q, v2_params *pp) {
    const char *cur = q, *end = q + strlen(q);
    qparam p;
    memset(pp, 0, sizeof *pp);
    while (query_next(&cur, end, &p)) {
        if (name_is(p.name, p.nlen, "AWSAccessKeyId")) pp->ak = p, pp->n_ak++;
        else if (name_is(p.name, p.nlen, "Signature")) pp->sig = p, pp->n_sig++;
        else if (name_is(p.name, p.nlen, "Expires")) pp->expires = p, pp->n_expires++;
        else if (name_is(p.name, p.nlen, "X-Amz-Algorithm")) pp->v4 = true;
    }
}

/* Decodes a parameter value into dst (cap bytes); false if malformed or too long.
 * A signature is base64, where '+' is a plus, never a space: keep it. */
static bool decode_value(const qparam *p, char *dst, size_t cap, size_t *len, bool plus_is_plus) {
    if (p->vlen >= cap) return false;
    long n = plus_is_plus ? url_decode(p->val, p->vlen, dst) : query_decode(p->val, p->vlen, dst);
    if (n < 0) return false;
    *len = (size_t)n;
    return true;
}

/* ---- dates ------------------------------------------------------------------------- */

/* Parses a Date / x-amz-date value: the RFC 2616 forms, also with a numeric
 * zone ("+0000", as the reference's examples and s3cmd write it) or "UTC",
 * and the ISO 8601 basic form.  Dates before 1970 are refused. */
static bool parse_date(const char *v, size_t n, int64_t *out) {
    char tmp[80];
    trim(&v, &n);
    if (n == 0 || n >= sizeof tmp - 4) return false;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    int64_t ms, sec;
    if (time_parse_http(tmp, &ms) == 0) {
        *out = ms / 1000;
        return ms >= 0;
    }
    if (time_parse_amz(tmp, &sec) == 0) {
        *out = sec;
        return sec >= 0;
    }
    /* "..., 27 Mar 2007 19:36:42 +0000": swap the zone for GMT and correct. */
    int64_t offset = 0;
    size_t cut;
    if (n > 6 && tmp[n - 6] == ' ' && (tmp[n - 5] == '+' || tmp[n - 5] == '-') &&
        isdigit((unsigned char)tmp[n - 4]) && isdigit((unsigned char)tmp[n - 3]) &&
        isdigit((unsigned char)tmp[n - 2]) && isdigit((unsigned char)tmp[n - 1])) {
        int hh = (tmp[n - 4] - '0') * 10 + (tmp[n - 3] - '0');
        int mm = (tmp[n - 2] - '0') * 10 + (tmp[n - 1] - '0');
        if (hh > 23 || mm > 59) return false;
        offset = (int64_t)(hh * 3600 + mm * 60) * (tmp[n - 5] == '-' ? -1 : 1);
        cut = n - 5;
    } else if (n > 4 && strcmp(tmp + n - 4, " UTC") == 0) {
        cut = n - 3;
    } else {
        return false;
    }
    memcpy(tmp + cut, "GMT", 4);
    if (time_parse_http(tmp, &ms) != 0) return false;
    *out = ms / 1000 - offset;
    return *out >= 0;
}

/* ---- the string to sign ----------------------------------------------------------- */

typedef struct {
    size_t idx;       /* header index, or parameter order */
    const char *name; /* header: raw name; sub-resource: decoded name in scratch */
    size_t nlen;
    const char *val;  /* sub-resource: decoded value, NULL when bare */
    size_t vlen;
} entry;

static int entry_cmp_header(const void *a, const void *b) {
    const entry *x = a, *y = b;
    size_t m = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = strncasecmp(x->name, y->name, m);
    if (c) return c;
    if (x->nlen != y->nlen) return x->nlen < y->nlen ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* stable: arrival order */
}

static int entry_cmp_name(const void *a, const void *b) {
    const entry *x = a, *y = b;
    size_t m = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = memcmp(x->name, y->name, m);
    if (c) return c;
    if (x->nlen != y->nlen) return x->nlen < y->nlen ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int put_amz_headers(const sigv4_request *r, buf_t *out) {
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len >= 6 && strncasecmp(r->headers[i].name, "x-amz-", 6) == 0) n++;
    if (n == 0) return 0;
    entry *e = calloc(n, sizeof *e);
    if (!e) return CAIRN_ENOMEM;
    n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const auth_header *h = &r->headers[i];
        if (h->name_len >= 6 && strncasecmp(h->name, "x-amz-", 6) == 0)
            e[n++] = (entry){.idx = i, .name = h->name, .nlen = h->name_len};
    }
    qsort(e, n, sizeof *e, entry_cmp_header);
    for (size_t i = 0; i < n; i++) {
        bool same = i > 0 && e[i].nlen == e[i - 1].nlen &&
                    strncasecmp(e[i].name, e[i - 1].name, e[i].nlen) == 0;
        const auth_header *h = &r->headers[e[i].idx];
        if (same) {
            buf_putc(out, ',');
        } else {
            if (i > 0) buf_putc(out, '\n');
            for (size_t k = 0; k < h->name_len; k++)
                buf_putc(out, (char)tolower((unsigned char)h->name[k]));
            buf_putc(out, ':');
        }
        put_value(out, h->value, h->value_len);
    }
    buf_putc(out, '\n');
    free(e);
    return 0;
}

static bool is_subresource(const char *s, size_t n) {
    for (size_t i = 0; i < sizeof subresources / sizeof subresources[0]; i++)
        if (span_eq(s, n, subresources[i])) return true;
    return false;
}

static int put_resource(const sigv4_request *r, const char *vhost_bucket, buf_t *out) {
    if (vhost_bucket && vhost_bucket[0]) {
        buf_putc(out, '/');
        buf_puts(out, vhost_bucket);
    }
    const char *path = r->raw_path ? r->raw_path : "";
    buf_puts(out, path[0] ? path : "/");
    /* A path-style request for a bucket alone ("/bucket") names the resource
     * "/bucket/": S3 signs it so, and botocore, boto2 and s3cmd with it. */
    if (!(vhost_bucket && vhost_bucket[0]) && path[0] == '/' && path[1] && !strchr(path + 1, '/'))
        buf_putc(out, '/');

    const char *q = r->raw_query ? r->raw_query : "";
    size_t qlen = strlen(q), count = 0;
    const char *cur = q, *end = q + qlen;
    qparam p;
    while (query_next(&cur, end, &p)) count++;
    if (count == 0) return 0;
    entry *e = calloc(count, sizeof *e);
    char *scratch = malloc(qlen + 1);
    int rc = e && scratch ? 0 : CAIRN_ENOMEM;
    size_t used = 0, off = 0;
    cur = q;
    while (rc == 0 && query_next(&cur, end, &p)) {
        char *name = scratch + off;
        long nl = query_decode(p.name, p.nlen, name);
        if (nl < 0) { rc = CAIRN_EINVAL; break; }
        if (!is_subresource(name, (size_t)nl)) continue;
        off += (size_t)nl;
        entry *x = &e[used];
        *x = (entry){.idx = used, .name = name, .nlen = (size_t)nl};
        if (p.has_eq) {
            char *val = scratch + off;
            long vl = query_decode(p.val, p.vlen, val);
            if (vl < 0) { rc = CAIRN_EINVAL; break; }
            off += (size_t)vl;
            x->val = val;
            x->vlen = (size_t)vl;
        }
        used++;
    }
    if (rc == 0 && used > 0) {
        qsort(e, used, sizeof *e, entry_cmp_name);
        for (size_t i = 0; i < used; i++) {
            buf_putc(out, i ? '&' : '?');
            buf_append(out, e[i].name, e[i].nlen);
            if (e[i].val) {
                buf_putc(out, '=');
                buf_append(out, e[i].val, e[i].vlen);
            }
        }
    }
    free(scratch);
    free(e);
    return rc;
}

int sigv2_string_to_sign(const sigv4_request *r, const sigv4_auth *a, const char *vhost_bucket,
                         buf_t *out) {
    if (a->kind != SIGV2_HEADER && a->kind != SIGV2_PRESIGNED) return CAIRN_EINVAL;
    buf_puts(out, r->method);
    buf_putc(out, '\n');
    put_header(out, r, "content-md5");
    buf_putc(out, '\n');
    put_header(out, r, "content-type");
    buf_putc(out, '\n');
    if (a->kind == SIGV2_PRESIGNED) {
        v2_params pp;
        char v[32];
        size_t n;
        collect_params(r->raw_query ? r->raw_query : "", &pp);
        if (pp.n_expires != 1 || !decode_value(&pp.expires, v, sizeof v, &n, false))
            return CAIRN_EINVAL;
        buf_append(out, v, n);
    } else if (!find_header(r, "x-amz-date", NULL)) {
        put_header(out, r, "date");
    }
    buf_putc(out, '\n');
    int rc = put_amz_headers(r, out);
    if (rc == 0) rc = put_resource(r, vhost_bucket, out);
    if (rc == 0 && out->oom) rc = CAIRN_ENOMEM;
    return rc;
}

/* out is "" when OpenSSL could not compute the MAC (it allocates, and can fail). */
void sigv2_signature(const char *secret, const char *sts, size_t len, char out[29]) {
    unsigned char mac[MAC_LEN];
    unsigned int ml = MAC_LEN;
    if (!HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)sts, len, mac, &ml)) {
        out[0] = '\0';
        return;
    }
    sodium_bin2base64(out, SIG_B64_LEN + 1, mac, MAC_LEN, sodium_base64_VARIANT_ORIGINAL);
    OPENSSL_cleanse(mac, sizeof mac);
}

/* ---- parsing ------------------------------------------------------------------------ */

bool sigv2_present(const sigv4_request *r) {
    const auth_header *h = find_header(r, "authorization", NULL);
    if (h) {
        const char *v = h->value;
        size_t n = h->value_len;
        trim(&v, &n);
        return n >= 4 && memcmp(v, "AWS", 3) == 0 && v[3] == ' ';
    }
    v2_params pp;
    collect_params(r->raw_query ? r->raw_query : "", &pp);
    return !pp.v4 && (pp.n_ak > 0 || pp.n_sig > 0);
}

/* Access key ids: printable, no blanks, at most 128 bytes. */
static bool take_access_key(char out[129], const char *s, size_t n) {
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f) return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* Keeps the signature as sent (it is decoded when verified); one longer than a
 * base64 MAC with room to spare cannot match and is refused here. */
static bool take_signature(char out[65], const char *s, size_t n) {
    if (n == 0 || n > 64) return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

static int parse_header(const sigv4_request *r, const auth_header *h, sigv4_auth *out,
                        const char **code, const char **msg) {
    const char *v = h->value;
    size_t n = h->value_len;
    trim(&v, &n);
    v += 4; /* "AWS " (sigv2_present checked it) */
    n -= 4;
    if (n > 0 && is_space(v[0]))
        return fail(CAIRN_EINVAL, code, msg, E_ARG,
                    "Authorization header is invalid -- one and only one ' ' (space) required");
    const char *colon = NULL;
    for (size_t i = n; i-- > 0;)
        if (v[i] == ':') { colon = v + i; break; }
    if (!colon || !take_access_key(out->access_key, v, (size_t)(colon - v)))
        return fail(CAIRN_EINVAL, code, msg, E_ARG, M_BAD_HEADER);
    const char *sig = colon + 1;
    size_t slen = n - (size_t)(sig - v);
    for (size_t i = 0; i < slen; i++)
        if (is_space(sig[i])) return fail(CAIRN_EINVAL, code, msg, E_ARG, M_BAD_HEADER);
    if (slen == 0) return fail(CAIRN_EINVAL, code, msg, E_ARG, M_BAD_HEADER);
    if (!take_signature(out->signature, sig, slen))
        return fail(CAIRN_EINVAL, code, msg, E_SIG, M_MISMATCH);

    /* The request time: x-amz-date wins over Date.  Two of either would let the
     * checked time differ from the signed one. */
    int nd = 0, nx = 0;
    const auth_header *d = find_header(r, "date", &nd);
    const auth_header *x = find_header(r, "x-amz-date", &nx);
    const auth_header *t = x ? x : d;
    if (!t || nd > 1 || nx > 1 || !parse_date(t->value, t->value_len, &out->request_time))
        return fail(CAIRN_EINVAL, code, msg, E_DENIED, M_NEED_DATE);
    out->kind = SIGV2_HEADER;
    return 0;
}

static int parse_query(const v2_params *pp, sigv4_auth *out, const char **code, const char **msg) {
    char v[512]; /* room for a 128-byte key even if every byte is escaped */
    size_t n;
    if (pp->n_ak != 1 || pp->n_sig != 1 || pp->n_expires != 1)
        return fail(CAIRN_EINVAL, code, msg, E_DENIED, M_QUERY_PARAMS);
    if (!decode_value(&pp->ak, v, sizeof v, &n, false) || !take_access_key(out->access_key, v, n))
        return fail(CAIRN_EINVAL, code, msg, E_DENIED, "Malformed AWSAccessKeyId");
    if (!decode_value(&pp->expires, v, sizeof v, &n, false) || n == 0 || n > 12)
        return fail(CAIRN_EINVAL, code, msg, E_DENIED, "Invalid date (should be seconds since epoch)");
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)v[i]))
            return fail(CAIRN_EINVAL, code, msg, E_DENIED,
                        "Invalid date (should be seconds since epoch)");
    v[n] = '\0';
    out->expires = strtoll(v, NULL, 10);
    if (!decode_value(&pp->sig, v, sizeof v, &n, true) || !take_signature(out->signature, v, n))
        return fail(CAIRN_EINVAL, code, msg, E_SIG, M_MISMATCH);
    out->kind = SIGV2_PRESIGNED;
    return 0;
}

int sigv2_parse(const sigv4_request *r, sigv4_auth *out, const char **s3_code,
                const char **message) {
    memset(out, 0, sizeof *out);
    out->payload = PAYLOAD_UNSIGNED;
    v2_params pp;
    collect_params(r->raw_query ? r->raw_query : "", &pp);
    int nauth = 0;
    const auth_header *h = find_header(r, "authorization", &nauth);
    if (h && (pp.v4 || pp.n_ak || pp.n_sig))
        return fail(CAIRN_EINVAL, s3_code, message, E_DENIED,
                    "Only one auth mechanism allowed; only the AWSAccessKeyId / X-Amz-Algorithm "
                    "query parameters or the Authorization header should be specified");
    if (nauth > 1)
        return fail(CAIRN_EINVAL, s3_code, message, E_ARG, "More than one Authorization header");
    /* aws-chunked bodies carry SigV4 chunk signatures a V2 request has no seed
     * for; without this the framing would be stored as the object. */
    const auth_header *p = find_header(r, "x-amz-content-sha256", NULL);
    if (p && p->value_len >= 10 && strncmp(p->value, "STREAMING-", 10) == 0)
        return fail(CAIRN_EINVAL, s3_code, message, E_ARG,
                    "aws-chunked uploads require AWS4-HMAC-SHA256");
    int rc = h ? parse_header(r, h, out, s3_code, message) : parse_query(&pp, out, s3_code, message);
    if (rc != 0) out->kind = SIGV4_ANONYMOUS;
    return rc;
}

/* ---- verification ---------------------------------------------------------------------- */

int sigv2_verify(const sigv4_request *r, const sigv4_auth *a, const char *vhost_bucket,
                 const char *secret, int64_t now, int skew_sec, const char **s3_code,
                 const char **message) {
    if (a->kind == SIGV2_HEADER) {
        int64_t d = now > a->request_time ? now - a->request_time : a->request_time - now;
        if (d > skew_sec)
            return fail(CAIRN_EAUTH, s3_code, message, E_SKEW,
                        "The difference between the request time and the server's time is too "
                        "large");
    } else if (a->kind == SIGV2_PRESIGNED) {
        if (now > a->expires)
            return fail(CAIRN_EAUTH, s3_code, message, E_DENIED, "Request has expired");
    } else {
        return fail(CAIRN_EAUTH, s3_code, message, E_DENIED, "Request is not signed with SigV2");
    }

    unsigned char got[MAC_LEN + 3];
    size_t got_len = 0;
    const char *b64_end = NULL;
    size_t slen = strlen(a->signature);
    if (sodium_base642bin(got, sizeof got, a->signature, slen, NULL, &got_len, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        b64_end != a->signature + slen || got_len != MAC_LEN)
        return fail(CAIRN_EAUTH, s3_code, message, E_SIG, M_MISMATCH);

    buf_t sts;
    buf_init(&sts);
    int rc = sigv2_string_to_sign(r, a, vhost_bucket, &sts);
    if (rc == CAIRN_ENOMEM) {
        buf_free(&sts);
        return rc;
    }
    if (rc != 0) {
        buf_free(&sts);
        return fail(CAIRN_EAUTH, s3_code, message, E_SIG, "The request URI is malformed");
    }
    unsigned char want[MAC_LEN];
    unsigned int wl = MAC_LEN;
    bool computed = HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)sts.data,
                         sts.len, want, &wl) != NULL;
    buf_free(&sts);
    if (!computed) return CAIRN_ENOMEM;
    bool ok = CRYPTO_memcmp(want, got, MAC_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!ok) return fail(CAIRN_EAUTH, s3_code, message, E_SIG, M_MISMATCH);
    return 0;
}

/* ---- client side ------------------------------------------------------------------------- */

int sigv2_sign(const sigv4_request *r, const char *vhost_bucket, const char *access_key,
               const char *secret, buf_t *authorization) {
    sigv4_auth a;
    memset(&a, 0, sizeof a);
    a.kind = SIGV2_HEADER;
    if (!take_access_key(a.access_key, access_key, strlen(access_key))) return CAIRN_EINVAL;
    if (!find_header(r, "date", NULL) && !find_header(r, "x-amz-date", NULL)) return CAIRN_EINVAL;
    buf_t sts;
    buf_init(&sts);
    int rc = sigv2_string_to_sign(r, &a, vhost_bucket, &sts);
    if (rc == 0) {
        char sig[SIG_B64_LEN + 1];
        sigv2_signature(secret, sts.data, sts.len, sig);
        if (sig[0]) buf_printf(authorization, "AWS %s:%s", a.access_key, sig);
        if (!sig[0] || authorization->oom) rc = CAIRN_ENOMEM;
    }
    buf_free(&sts);
    return rc;
}

int sigv2_presign(const sigv4_request *r, const char *vhost_bucket, const char *access_key,
                  const char *secret, int64_t expires_at, buf_t *query_out) {
    sigv4_auth a;
    memset(&a, 0, sizeof a);
    a.kind = SIGV2_PRESIGNED;
    if (!take_access_key(a.access_key, access_key, strlen(access_key)) || expires_at < 0 ||
        expires_at > 999999999999LL)
        return CAIRN_EINVAL;
    const char *orig = r->raw_query ? r->raw_query : "";
    v2_params pp;
    collect_params(orig, &pp);
    if (pp.n_ak || pp.n_sig || pp.n_expires || pp.v4) return CAIRN_EINVAL;

    buf_t q, sts;
    buf_init(&q);
    buf_init(&sts);
    buf_puts(&q, orig);
    if (orig[0]) buf_putc(&q, '&');
    buf_puts(&q, "AWSAccessKeyId=");
    buf_url_encode(&q, a.access_key, strlen(a.access_key), false);
    buf_printf(&q, "&Expires=%lld", (long long)expires_at);
    int rc = q.oom ? CAIRN_ENOMEM : 0;
    if (rc == 0) {
        sigv4_request pr = *r;
        pr.raw_query = q.data;
        rc = sigv2_string_to_sign(&pr, &a, vhost_bucket, &sts);
    }
    char sig[SIG_B64_LEN + 1] = "";
    if (rc == 0) sigv2_signature(secret, sts.data, sts.len, sig);
    if (rc == 0 && !sig[0]) rc = CAIRN_ENOMEM;
    if (rc == 0) {
        buf_append(query_out, q.data, q.len);
        buf_puts(query_out, "&Signature=");
        buf_url_encode(query_out, sig, strlen(sig), false);
        if (query_out->oom) rc = CAIRN_ENOMEM;
    }
    buf_free(&q);
    buf_free(&sts);
    return rc;
}
