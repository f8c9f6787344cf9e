/*
 * sigv4.c — AWS Signature Version 4 for S3: reading the credentials a request
 * carries, rebuilding the canonical request the client signed, and checking
 * the signature in constant time.  Also the client side (sigv4_sign,
 * sigv4_presign) so tools and tests can produce requests the verifier accepts.
 *
 * How it works.  A signature is HMAC-SHA256 over a "string to sign" whose last
 * line is the SHA-256 of the canonical request: method, canonical URI,
 * canonical query, the signed headers as "name:value" lines, the list of signed
 * header names and the payload hash.  The key is derived from the secret by an
 * HMAC chain over date, region, service and "aws4_request".  The verifier never
 * trusts the client's idea of the canonical form; it rebuilds it from the raw
 * request, so any byte the client changed after signing changes the hash.
 *
 * Canonicalisation choices (S3 flavour, which is what every S3 client signs):
 *  - URI: the raw path is percent-decoded once and re-encoded with the AWS
 *    rules ('/' kept).  No normalisation: S3 keys may contain "//" and "..".
 *  - Query: split on '&', name and value split on the first '=', each
 *    percent-decoded and re-encoded with the AWS rules ('/' encoded too), then
 *    sorted by name and value.  A literal '+' in the raw query is read as a
 *    space, as HTML forms and MinIO do: SDKs always send %2B for a real plus,
 *    so a raw '+' can only come from form-style encoding of a space.
 *  - Headers: values trimmed, inner runs of blanks collapsed, repeated
 *    headers joined with ',' in the order they arrived.
 *
 * Everything here is thread-safe: no shared state; secrets live on the stack
 * and are wiped after use.
 */
#include "auth/auth.h"
#include "auth/query.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGO "AWS4-HMAC-SHA256"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_EXPIRES 604800

/* S3 error codes used here (the s3 module maps them to HTTP statuses). */
static const char E_HDR[] = "AuthorizationHeaderMalformed";
static const char E_QRY[] = "AuthorizationQueryParametersError";
static const char E_ARG[] = "InvalidArgument";
static const char E_DENIED[] = "AccessDenied";
static const char E_SIG[] = "SignatureDoesNotMatch";
static const char E_SKEW[] = "RequestTimeTooSkewed";

/* Sets the S3 error code and message of a refusal.  code and msg are never
 * NULL: sigv4_parse and sigv4_verify require both (every caller, the gateway,
 * the tests and the fuzz targets, passes them). */
static int fail(int rc, const char **code, const char **msg, const char *c, const char *m) {
    *code = c;
    *msg = m;
    return rc;
}

/* ---- small crypto helpers ------------------------------------------------ *
 *
 * OpenSSL allocates inside its one-shot digest and HMAC calls, so they can
 * fail; each result is checked, and a failure is CAIRN_ENOMEM rather than a
 * signature made from whatever an output buffer held before. */

static bool sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL)) return false;
    hex_encode(md, 32, out);
    return true;
}

static bool hmac256(const void *key, size_t klen, const void *p, size_t n, unsigned char out[32]) {
    unsigned int len = 32;
    return HMAC(EVP_sha256(), key, (int)klen, p, n, out, &len) != NULL;
}

/* The signing key's HMAC chain; false (out unset) when it could not be computed. */
static bool derive_key(const char *secret, const char *date, const char *region,
                       const char *service, uint8_t out[32]) {
    size_t slen = strlen(secret);
    char *k = malloc(slen + 5);
    unsigned char a[32], b[32];
    if (!k) return false;
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, slen);
    bool ok = hmac256(k, slen + 4, date, strlen(date), a) &&
              hmac256(a, 32, region, strlen(region), b) &&
              hmac256(b, 32, service, strlen(service), a) &&
              hmac256(a, 32, "aws4_request", 12, out);
    OPENSSL_cleanse(k, slen + 4);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    free(k);
    return ok;
}

void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, uint8_t out[32]) {
    /* Cannot derive: hand back a key nobody can match. */
    if (!derive_key(secret, date, region, service, out)) rand_bytes(out, 32);
}

/* ---- string helpers -------------------------------------------------------- */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static void trim(const char **p, size_t *n) {
    while (*n && is_blank(**p)) { (*p)++; (*n)--; }
    while (*n && is_blank((*p)[*n - 1])) (*n)--;
}

/* Case-insensitive compare of a counted string with a NUL-terminated one. */
static bool span_ieq(const char *a, size_t an, const char *b) {
    return strlen(b) == an && strncasecmp(a, b, an) == 0;
}

static bool span_eq(const char *a, size_t an, const char *b) {
    return strlen(b) == an && memcmp(a, b, an) == 0;
}

/* Copies a counted string into a fixed field; false when it does not fit. */
static bool copy_field(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

static bool all_digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return n > 0;
}

/* Stores a 64-hex-digit signature lowercased; false if it is not one. */
static bool take_signature(char out[65], const char *s, size_t n) {
    if (n != 64) return false;
    for (size_t i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)s[i])) return false;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[64] = '\0';
    return true;
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

/* ---- canonical request --------------------------------------------------- */

static int canonical_uri(const char *raw, buf_t *out) {
    size_t n = strlen(raw);
    if (n == 0) {
        buf_putc(out, '/');
        return 0;
    }
    char *tmp = malloc(n + 1);
    if (!tmp) return CAIRN_ENOMEM;
    long dl = url_decode(raw, n, tmp);
    if (dl >= 0) buf_url_encode(out, tmp, (size_t)dl, true);
    free(tmp);
    return dl < 0 ? CAIRN_EINVAL : 0;
}

typedef struct {
    size_t noff, nlen, voff, vlen; /* into the encoded-text buffer */
} qent;

static int qent_cmp(const void *a, const void *b, void *ctx) {
    const qent *x = a, *y = b;
    const char *base = ctx;
    size_t m = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = memcmp(base + x->noff, base + y->noff, m);
    if (c) return c;
    if (x->nlen != y->nlen) return x->nlen < y->nlen ? -1 : 1;
    m = x->vlen < y->vlen ? x->vlen : y->vlen;
    c = memcmp(base + x->voff, base + y->voff, m);
    if (c) return c;
    return x->vlen == y->vlen ? 0 : (x->vlen < y->vlen ? -1 : 1);
}

/* Encodes one query component into enc; records offset and length. */
static int encode_component(const char *s, size_t n, char *scratch, buf_t *enc, size_t *off,
                            size_t *len) {
    long dl = query_decode(s, n, scratch);
    if (dl < 0) return CAIRN_EINVAL;
    *off = enc->len;
    buf_url_encode(enc, scratch, (size_t)dl, false);
    *len = enc->len - *off;
    return 0;
}

static int canonical_query(const char *q, bool presigned, buf_t *out) {
    size_t qlen = strlen(q), count = 0, used = 0;
    const char *cur = q, *end = q + qlen;
    qparam p;
    while (query_next(&cur, end, &p)) count++;
    if (count == 0) return 0;

    qent *ents = calloc(count, sizeof *ents);
    char *scratch = malloc(qlen + 1);
    buf_t enc;
    buf_init(&enc);
    /* Reserving up front keeps enc.data non-NULL even if every component is empty. */
    int rc = (ents && scratch && buf_reserve(&enc, qlen + 1) == 0) ? 0 : CAIRN_ENOMEM;
    cur = q;
    while (rc == 0 && query_next(&cur, end, &p)) {
        qent *e = &ents[used];
        rc = encode_component(p.name, p.nlen, scratch, &enc, &e->noff, &e->nlen);
        if (rc == 0 && presigned && span_eq(enc.data + e->noff, e->nlen, "X-Amz-Signature")) {
            enc.len = e->noff; /* drop it: the signature cannot sign itself */
            continue;
        }
        if (rc == 0) rc = encode_component(p.val, p.vlen, scratch, &enc, &e->voff, &e->vlen);
        used++;
    }
    if (rc == 0 && enc.oom) rc = CAIRN_ENOMEM;
    if (rc == 0) {
        qsort_r(ents, used, sizeof *ents, qent_cmp, enc.data);
        for (size_t i = 0; i < used; i++) {
            if (i) buf_putc(out, '&');
            buf_append(out, enc.data + ents[i].noff, ents[i].nlen);
            buf_putc(out, '=');
            buf_append(out, enc.data + ents[i].voff, ents[i].vlen);
        }
    }
    buf_free(&enc);
    free(scratch);
    free(ents);
    return rc;
}

/* Appends a header value trimmed, with inner runs of blanks collapsed. */
static void put_header_value(buf_t *out, const char *v, size_t n) {
    trim(&v, &n);
    bool blank = false;
    for (size_t i = 0; i < n; i++) {
        if (is_blank(v[i])) {
            blank = true;
            continue;
        }
        if (blank) buf_putc(out, ' ');
        blank = false;
        buf_putc(out, v[i]);
    }
}

static int canonical_headers(const sigv4_request *r, const char *signed_headers, buf_t *out) {
    const char *s = signed_headers;
    while (*s) {
        const char *semi = strchr(s, ';');
        size_t n = semi ? (size_t)(semi - s) : strlen(s);
        bool found = false;
        buf_append(out, s, n);
        buf_putc(out, ':');
        for (size_t i = 0; i < r->nheaders; i++) {
            const auth_header *h = &r->headers[i];
            if (h->name_len != n || strncasecmp(h->name, s, n) != 0) continue;
            if (found) buf_putc(out, ',');
            put_header_value(out, h->value, h->value_len);
            found = true;
        }
        if (!found) return CAIRN_EINVAL;
        buf_putc(out, '\n');
        s += n;
        if (*s == ';') s++;
    }
    return 0;
}

static const char *payload_line(const sigv4_auth *a) {
    switch (a->payload) {
    case PAYLOAD_SHA256: return a->payload_hash[0] ? a->payload_hash : EMPTY_SHA256;
    case PAYLOAD_UNSIGNED: return "UNSIGNED-PAYLOAD";
    case PAYLOAD_STREAMING_SIGNED: return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    case PAYLOAD_STREAMING_SIGNED_TRAILER: return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
    case PAYLOAD_STREAMING_UNSIGNED_TRAILER: return "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
    }
    return "";
}

int sigv4_canonical_request(const sigv4_request *r, const sigv4_auth *a, buf_t *out) {
    int rc;
    buf_puts(out, r->method);
    buf_putc(out, '\n');
    if ((rc = canonical_uri(r->raw_path ? r->raw_path : "", out)) != 0) return rc;
    buf_putc(out, '\n');
    rc = canonical_query(r->raw_query ? r->raw_query : "", a->kind == SIGV4_PRESIGNED, out);
    if (rc != 0) return rc;
    buf_putc(out, '\n');
    if ((rc = canonical_headers(r, a->signed_headers, out)) != 0) return rc;
    buf_putc(out, '\n');
    buf_puts(out, a->signed_headers);
    buf_putc(out, '\n');
    buf_puts(out, payload_line(a));
    return out->oom ? CAIRN_ENOMEM : 0;
}

void sigv4_string_to_sign(const sigv4_auth *a, const char *canonical_request, size_t len,
                          buf_t *out) {
    char hash[65];
    if (!sha256_hex(canonical_request, len, hash)) {
        out->oom = true; /* what callers check after building into a buf_t */
        return;
    }
    buf_printf(out, ALGO "\n%s\n%s/%s/%s/aws4_request\n%s", a->amz_date, a->date, a->region,
               a->service, hash);
}

/* Computes the hex signature of the request described by r and a. */
static int compute_signature(const sigv4_request *r, const sigv4_auth *a, const char *secret,
                             char out[65]) {
    buf_t creq, sts;
    buf_init(&creq);
    buf_init(&sts);
    int rc = sigv4_canonical_request(r, a, &creq);
    if (rc == 0) {
        sigv4_string_to_sign(a, creq.data, creq.len, &sts);
        if (sts.oom) rc = CAIRN_ENOMEM;
    }
    if (rc == 0) {
        uint8_t key[32];
        unsigned char mac[32];
        if (derive_key(secret, a->date, a->region, a->service, key) &&
            hmac256(key, 32, sts.data, sts.len, mac))
            hex_encode(mac, 32, out);
        else
            rc = CAIRN_ENOMEM;
        OPENSSL_cleanse(key, sizeof key);
    }
    buf_free(&creq);
    buf_free(&sts);
    return rc;
}

/* ---- parsing ------------------------------------------------------------- */

/* "AK/20150830/us-east-1/s3/aws4_request": the access key is everything before
 * the last four '/'-separated parts, so keys are taken as they are. */
static bool parse_credential(const char *s, size_t n, sigv4_auth *out) {
    const char *cut[4];
    size_t k = 0;
    for (size_t i = n; i-- > 0 && k < 4;)
        if (s[i] == '/') cut[k++] = s + i;
    if (k < 4) return false;
    const char *ak = s, *date = cut[3] + 1, *region = cut[2] + 1, *svc = cut[1] + 1,
               *term = cut[0] + 1;
    size_t aklen = (size_t)(cut[3] - ak), dlen = (size_t)(cut[2] - date),
           rlen = (size_t)(cut[1] - region), slen = (size_t)(cut[0] - svc),
           tlen = (size_t)(s + n - term);
    if (aklen == 0 || dlen != 8 || !all_digits(date, 8) || rlen == 0 || slen == 0) return false;
    if (!span_eq(term, tlen, "aws4_request")) return false;
    for (size_t i = 0; i < aklen; i++)
        if ((unsigned char)ak[i] <= ' ' || ak[i] == 0x7f) return false;
    return copy_field(out->access_key, sizeof out->access_key, ak, aklen) &&
           copy_field(out->date, sizeof out->date, date, dlen) &&
           copy_field(out->region, sizeof out->region, region, rlen) &&
           copy_field(out->service, sizeof out->service, svc, slen);
}

/* Signed header names: lowercase tokens joined by ';', "host" among them. */
static bool parse_signed_headers(const char *s, size_t n, sigv4_auth *out) {
    if (!copy_field(out->signed_headers, sizeof out->signed_headers, s, n) || n == 0) return false;
    bool host = false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == ';') {
            if (i == start) return false;
            if (span_eq(s + start, i - start, "host")) host = true;
            start = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == ':' || isupper(c)) return false;
    }
    return host;
}

/* Reads an x-amz-content-sha256 value; false when it is none of the forms S3 knows. */
static bool parse_payload(const char *v, size_t n, sigv4_auth *out) {
    static const struct {
        const char *s;
        sigv4_payload p;
    } kinds[] = {
        {"UNSIGNED-PAYLOAD", PAYLOAD_UNSIGNED},
        {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PAYLOAD_STREAMING_SIGNED},
        {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PAYLOAD_STREAMING_SIGNED_TRAILER},
        {"STREAMING-UNSIGNED-PAYLOAD-TRAILER", PAYLOAD_STREAMING_UNSIGNED_TRAILER},
    };
    out->payload_hash[0] = '\0';
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (span_eq(v, n, kinds[i].s)) {
            out->payload = kinds[i].p;
            return true;
        }
    }
    if (n != 64) return false;
    for (size_t i = 0; i < 64; i++)
        if (!isdigit((unsigned char)v[i]) && !(v[i] >= 'a' && v[i] <= 'f')) return false;
    out->payload = PAYLOAD_SHA256;
    memcpy(out->payload_hash, v, 64);
    out->payload_hash[64] = '\0';
    return true;
}

static void fmt_amz(int64_t sec, char out[17]) {
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16) out[0] = '\0';
}

/* Request time of header auth: x-amz-date, else Date (converted to the basic form). */
static bool header_date(const sigv4_request *r, char out[17]) {
    const auth_header *h = find_header(r, "x-amz-date", NULL);
    char tmp[80];
    int64_t t;
    if (h) {
        const char *v = h->value;
        size_t n = h->value_len;
        trim(&v, &n);
        return copy_field(tmp, sizeof tmp, v, n) && time_parse_amz(tmp, &t) == 0 &&
               copy_field(out, 17, tmp, n);
    }
    h = find_header(r, "date", NULL);
    if (!h) return false;
    const char *v = h->value;
    size_t n = h->value_len;
    trim(&v, &n);
    if (!copy_field(tmp, sizeof tmp, v, n) || time_parse_http(tmp, &t) != 0) return false;
    fmt_amz(t / 1000, out);
    return out[0] != '\0';
}

/* Splits "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." into
 * its three parts, tolerating the spacing variants SDKs emit. */
static int parse_authorization(const char *v, size_t n, sigv4_auth *out, const char **code,
                               const char **msg) {
    trim(&v, &n);
    size_t al = strlen(ALGO);
    if (n < al || memcmp(v, ALGO, al) != 0 || (n > al && !is_blank(v[al])))
        return fail(CAIRN_EINVAL, code, msg, E_DENIED,
                    "Unsupported authorization type; only AWS4-HMAC-SHA256 is accepted");
    const char *s = v + al, *end = v + n;
    bool cred = false, sh = false, sig = false;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        const char *part = s;
        size_t plen = (size_t)(e - s);
        s = comma ? comma + 1 : end;
        trim(&part, &plen);
        if (plen == 0) continue;
        const char *eq = memchr(part, '=', plen);
        if (!eq) return fail(CAIRN_EINVAL, code, msg, E_HDR, "Authorization part without '='");
        size_t kl = (size_t)(eq - part), vl = plen - kl - 1;
        const char *val = eq + 1;
        bool ok, *seen;
        if (span_eq(part, kl, "Credential")) {
            seen = &cred;
            ok = parse_credential(val, vl, out);
        } else if (span_eq(part, kl, "SignedHeaders")) {
            seen = &sh;
            ok = parse_signed_headers(val, vl, out);
        } else if (span_eq(part, kl, "Signature")) {
            seen = &sig;
            ok = take_signature(out->signature, val, vl);
        } else {
            return fail(CAIRN_EINVAL, code, msg, E_HDR, "Unknown part in the Authorization header");
        }
        if (*seen) return fail(CAIRN_EINVAL, code, msg, E_HDR, "Repeated Authorization part");
        if (!ok) {
            return fail(CAIRN_EINVAL, code, msg, E_HDR,
                        seen == &cred ? "Malformed Credential"
                        : seen == &sh ? "Malformed SignedHeaders (host must be signed)"
                                      : "Malformed Signature");
        }
        *seen = true;
    }
    if (!cred || !sh || !sig)
        return fail(CAIRN_EINVAL, code, msg, E_HDR,
                    "Authorization needs Credential, SignedHeaders and Signature");
    return 0;
}

static int parse_header_auth(const sigv4_request *r, const auth_header *h, sigv4_auth *out,
                             const char **code, const char **msg) {
    out->kind = SIGV4_HEADER;
    int rc = parse_authorization(h->value, h->value_len, out, code, msg);
    if (rc != 0) return rc;
    if (!header_date(r, out->amz_date))
        return fail(CAIRN_EINVAL, code, msg, E_DENIED,
                    "AWS authentication requires a valid Date or x-amz-date header");
    if (memcmp(out->amz_date, out->date, 8) != 0)
        return fail(CAIRN_EINVAL, code, msg, E_HDR,
                    "Invalid credential date: it is not the date of the request");
    int np = 0;
    const auth_header *p = find_header(r, "x-amz-content-sha256", &np);
    /* Two copies could let the body be checked against another hash than the
     * one that was signed. */
    if (np > 1)
        return fail(CAIRN_EINVAL, code, msg, E_ARG, "More than one x-amz-content-sha256 header");
    if (!p) {
        if (strcmp(out->service, "s3") == 0)
            return fail(CAIRN_EINVAL, code, msg, E_ARG,
                        "Missing required header for this request: x-amz-content-sha256");
        /* Other services hash the body themselves; callers with a body set
         * payload_hash before verifying. */
        out->payload = PAYLOAD_SHA256;
        strcpy(out->payload_hash, EMPTY_SHA256);
        return 0;
    }
    const char *v = p->value;
    size_t n = p->value_len;
    trim(&v, &n);
    if (!parse_payload(v, n, out))
        return fail(CAIRN_EINVAL, code, msg, E_ARG,
                    "x-amz-content-sha256 must be a hex SHA-256 or a known payload mode");
    return 0;
}

/* The presigned parameters, raw (still percent-encoded) as found in the query. */
typedef struct {
    qparam algo, cred, date, expires, signed_headers, sig, sha;
    bool has_algo, has_cred, has_date, has_expires, has_sh, has_sig, has_sha, dup, sigv2;
} presigned_params;

static void collect_params(const char *q, presigned_params *pp) {
    static const char *const names[] = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                                        "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
                                        "X-Amz-Content-Sha256"};
    qparam *slots[] = {&pp->algo, &pp->cred, &pp->date, &pp->expires,
                       &pp->signed_headers, &pp->sig, &pp->sha};
    bool *flags[] = {&pp->has_algo, &pp->has_cred, &pp->has_date, &pp->has_expires,
                     &pp->has_sh, &pp->has_sig, &pp->has_sha};
    const char *cur = q, *end = q + strlen(q);
    qparam p;
    char name[64];
    while (query_next(&cur, end, &p)) {
        if (p.nlen >= sizeof name) continue; /* longer than any name we look for, even encoded */
        long nl = query_decode(p.name, p.nlen, name);
        if (nl < 0) continue;
        if (span_eq(name, (size_t)nl, "AWSAccessKeyId")) pp->sigv2 = true;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (!span_eq(name, (size_t)nl, names[i])) continue;
            if (*flags[i]) pp->dup = true;
            *flags[i] = true;
            *slots[i] = p;
        }
    }
}

/* Decodes a presigned parameter value into dst (cap bytes); false if bad or too long. */
static bool decode_param(const qparam *p, char *dst, size_t cap, size_t *len) {
    if (p->vlen >= cap) return false;
    long n = query_decode(p->val, p->vlen, dst);
    if (n < 0) return false;
    *len = (size_t)n;
    return true;
}

static int parse_presigned(const presigned_params *pp, sigv4_auth *out, const char **code,
                           const char **msg) {
    char v[1024];
    size_t n;
    out->kind = SIGV4_PRESIGNED;
    if (!decode_param(&pp->algo, v, sizeof v, &n) || !span_eq(v, n, ALGO))
        return fail(CAIRN_EINVAL, code, msg, E_DENIED,
                    "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"");
    if (pp->dup)
        return fail(CAIRN_EINVAL, code, msg, E_QRY, "Repeated X-Amz-* query parameter");
    if (!pp->has_cred || !pp->has_date || !pp->has_expires || !pp->has_sh || !pp->has_sig)
        return fail(CAIRN_EINVAL, code, msg, E_QRY,
                    "Query-string authentication requires the X-Amz-Algorithm, "
                    "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                    "and X-Amz-Expires parameters");
    if (!decode_param(&pp->cred, v, sizeof v, &n) || !parse_credential(v, n, out))
        return fail(CAIRN_EINVAL, code, msg, E_QRY, "Malformed X-Amz-Credential");
    int64_t t;
    if (!decode_param(&pp->date, v, sizeof v, &n) || n != 16 || time_parse_amz(v, &t) != 0)
        return fail(CAIRN_EINVAL, code, msg, E_QRY, "X-Amz-Date must be in the ISO8601 basic format");
    memcpy(out->amz_date, v, 17);
    if (memcmp(out->amz_date, out->date, 8) != 0)
        return fail(CAIRN_EINVAL, code, msg, E_QRY,
                    "Invalid credential date: it is not the date of X-Amz-Date");
    /* As S3 answers: an X-Amz-Expires that is not a number is malformed, one
     * out of range (zero, negative, over a week) is access denied. */
    bool negative = decode_param(&pp->expires, v, sizeof v, &n) && n > 1 && v[0] == '-' && all_digits(v + 1, n - 1);
    if (!negative && (!decode_param(&pp->expires, v, sizeof v, &n) || n == 0 || !all_digits(v, n)))
        return fail(CAIRN_EINVAL, code, msg, E_QRY, "X-Amz-Expires should be a number");
    out->expires = negative || n > 7 ? -1 : strtoll(v, NULL, 10);
    if (out->expires < 1 || out->expires > MAX_EXPIRES)
        return fail(CAIRN_EINVAL, code, msg, E_DENIED,
                    "X-Amz-Expires must be between 1 and 604800 seconds (one week)");
    if (!decode_param(&pp->signed_headers, v, sizeof v, &n) || !parse_signed_headers(v, n, out))
        return fail(CAIRN_EINVAL, code, msg, E_QRY,
                    "Malformed X-Amz-SignedHeaders (host must be signed)");
    if (!decode_param(&pp->sig, v, sizeof v, &n) || !take_signature(out->signature, v, n))
        return fail(CAIRN_EINVAL, code, msg, E_QRY, "Malformed X-Amz-Signature");
    out->payload = PAYLOAD_UNSIGNED;
    if (pp->has_sha &&
        (!decode_param(&pp->sha, v, sizeof v, &n) || !parse_payload(v, n, out)))
        return fail(CAIRN_EINVAL, code, msg, E_ARG, "X-Amz-Content-Sha256 is malformed");
    return 0;
}

int sigv4_parse(const sigv4_request *r, sigv4_auth *out, const char **s3_code,
                const char **message) {
    memset(out, 0, sizeof *out);
    presigned_params pp;
    memset(&pp, 0, sizeof pp);
    collect_params(r->raw_query ? r->raw_query : "", &pp);
    int nauth = 0;
    const auth_header *h = find_header(r, "authorization", &nauth);

    if (h && pp.has_algo)
        return fail(CAIRN_EINVAL, s3_code, message, E_DENIED,
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
                    "or the Authorization header should be specified");
    if (nauth > 1)
        return fail(CAIRN_EINVAL, s3_code, message, E_HDR, "More than one Authorization header");
    if (h) return parse_header_auth(r, h, out, s3_code, message);
    if (pp.has_algo) return parse_presigned(&pp, out, s3_code, message);
    if (pp.sigv2)
        return fail(CAIRN_EINVAL, s3_code, message, E_DENIED,
                    "Signature Version 2 is not supported; use AWS4-HMAC-SHA256");
    out->kind = SIGV4_ANONYMOUS;
    return 0;
}

/* ---- verification ---------------------------------------------------------- */

static int check_time(const sigv4_auth *a, int64_t now, int skew, const char **code,
                      const char **msg) {
    int64_t t;
    if (time_parse_amz(a->amz_date, &t) != 0 || strncmp(a->amz_date, a->date, 8) != 0)
        return fail(CAIRN_EAUTH, code, msg, E_DENIED, "Invalid request date");
    if (a->kind == SIGV4_HEADER) {
        int64_t d = now > t ? now - t : t - now;
        if (d > skew)
            return fail(CAIRN_EAUTH, code, msg, E_SKEW,
                        "The difference between the request time and the server's time is too "
                        "large");
        return 0;
    }
    if (a->expires < 1 || a->expires > MAX_EXPIRES)
        return fail(CAIRN_EAUTH, code, msg, E_DENIED,
                    "X-Amz-Expires must be between 1 and 604800 seconds (one week)");
    if (t - skew > now) return fail(CAIRN_EAUTH, code, msg, E_DENIED, "Request is not valid yet");
    if (now > t + a->expires) return fail(CAIRN_EAUTH, code, msg, E_DENIED, "Request has expired");
    return 0;
}

/* True when name (n bytes, any case) is in the ';'-joined lowercase list. */
static bool header_listed(const char *list, const char *name, size_t n) {
    for (const char *s = list; *s;) {
        size_t len = strcspn(s, ";");
        if (len == n && strncasecmp(s, name, n) == 0) return true;
        s += len;
        if (*s == ';') s++;
    }
    return false;
}

/* Every x-amz-* header present must be signed: an unsigned one could be
 * added by whoever holds a presigned URL or a captured request (an
 * x-amz-copy-source turning a PUT into a copy of someone else's object, an
 * x-amz-meta-* stored as if the signer had sent it), and S3 refuses it. */
static int check_unsigned_amz_headers(const sigv4_request *r, const sigv4_auth *a, const char **code,
                                      const char **msg) {
    for (size_t i = 0; i < r->nheaders; i++) {
        const auth_header *h = &r->headers[i];
        if (h->name_len < 6 || strncasecmp(h->name, "x-amz-", 6) != 0) continue;
        if (!header_listed(a->signed_headers, h->name, h->name_len))
            return fail(CAIRN_EAUTH, code, msg, E_DENIED,
                        "There were headers present in the request which were not signed");
    }
    return 0;
}

int sigv4_verify(const sigv4_request *r, const sigv4_auth *a, const char *secret, int64_t now,
                 int skew_sec, const char **s3_code, const char **message) {
    if (a->kind != SIGV4_HEADER && a->kind != SIGV4_PRESIGNED)
        return fail(CAIRN_EAUTH, s3_code, message, E_DENIED, "Request is not signed");
    int rc = check_time(a, now, skew_sec, s3_code, message);
    if (rc != 0) return rc;
    char want[65];
    rc = compute_signature(r, a, secret, want);
    if (rc == CAIRN_ENOMEM) return rc;
    if (rc != 0)
        return fail(CAIRN_EAUTH, s3_code, message, E_SIG,
                    "A signed header is missing or the request URI is malformed");
    if (CRYPTO_memcmp(want, a->signature, 64) != 0)
        return fail(CAIRN_EAUTH, s3_code, message, E_SIG,
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method.");
    return check_unsigned_amz_headers(r, a, s3_code, message);
}

/* ---- client side ------------------------------------------------------------ */

/* Fills the auth fields every signer needs; false if an argument does not fit. */
static bool fill_client_auth(sigv4_auth *a, const char *access_key, const char *region,
                             const char *service, const char *amz_date, const char *signed_headers) {
    int64_t t;
    memset(a, 0, sizeof *a);
    if (!amz_date || strlen(amz_date) != 16 || time_parse_amz(amz_date, &t) != 0) return false;
    memcpy(a->amz_date, amz_date, 17);
    memcpy(a->date, amz_date, 8);
    return copy_field(a->access_key, sizeof a->access_key, access_key, strlen(access_key)) &&
           copy_field(a->region, sizeof a->region, region, strlen(region)) &&
           copy_field(a->service, sizeof a->service, service, strlen(service)) &&
           copy_field(a->signed_headers, sizeof a->signed_headers, signed_headers,
                      strlen(signed_headers)) &&
           a->signed_headers[0] != '\0';
}

int sigv4_sign(const sigv4_request *r, const char *access_key, const char *secret,
               const char *region, const char *service, const char *amz_date,
               const char *signed_headers, const char *payload_hash, buf_t *authorization) {
    sigv4_auth a;
    if (!fill_client_auth(&a, access_key, region, service, amz_date, signed_headers))
        return CAIRN_EINVAL;
    a.kind = SIGV4_HEADER;
    if (!payload_hash) payload_hash = EMPTY_SHA256;
    if (!parse_payload(payload_hash, strlen(payload_hash), &a)) return CAIRN_EINVAL;
    int rc = compute_signature(r, &a, secret, a.signature);
    if (rc != 0) return rc;
    buf_printf(authorization, ALGO " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
               a.access_key, a.date, a.region, a.service, a.signed_headers, a.signature);
    return authorization->oom ? CAIRN_ENOMEM : 0;
}

int sigv4_presign(const sigv4_request *r, const char *access_key, const char *secret,
                  const char *region, const char *service, const char *amz_date, int64_t expires,
                  const char *signed_headers, buf_t *query_out) {
    sigv4_auth a;
    if (!fill_client_auth(&a, access_key, region, service, amz_date, signed_headers))
        return CAIRN_EINVAL;
    if (expires < 1 || expires > MAX_EXPIRES) return CAIRN_EINVAL;
    a.kind = SIGV4_PRESIGNED;
    a.expires = expires;
    a.payload = PAYLOAD_UNSIGNED;
    /* A payload hash the caller put in the query is signed, as the verifier expects. */
    presigned_params pp;
    memset(&pp, 0, sizeof pp);
    collect_params(r->raw_query ? r->raw_query : "", &pp);
    if (pp.has_algo || pp.has_sig) return CAIRN_EINVAL;
    if (pp.has_sha) {
        char v[1024];
        size_t n;
        if (!decode_param(&pp.sha, v, sizeof v, &n) || !parse_payload(v, n, &a)) return CAIRN_EINVAL;
    }

    buf_t q, cred;
    buf_init(&q);
    buf_init(&cred);
    const char *orig = r->raw_query ? r->raw_query : "";
    buf_puts(&q, orig);
    if (orig[0]) buf_putc(&q, '&');
    buf_printf(&cred, "%s/%s/%s/%s/aws4_request", a.access_key, a.date, a.region, a.service);
    buf_puts(&q, "X-Amz-Algorithm=" ALGO "&X-Amz-Credential=");
    buf_url_encode(&q, cred.data ? cred.data : "", cred.len, false);
    buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%lld&X-Amz-SignedHeaders=", a.amz_date,
               (long long)expires);
    buf_url_encode(&q, a.signed_headers, strlen(a.signed_headers), false);
    int rc = q.oom || cred.oom ? CAIRN_ENOMEM : 0;
    if (rc == 0) {
        sigv4_request pr = *r;
        pr.raw_query = q.data;
        rc = compute_signature(&pr, &a, secret, a.signature);
    }
    if (rc == 0) {
        buf_append(query_out, q.data, q.len);
        buf_printf(query_out, "&X-Amz-Signature=%s", a.signature);
        if (query_out->oom) rc = CAIRN_ENOMEM;
    }
    buf_free(&q);
    buf_free(&cred);
    return rc;
}
