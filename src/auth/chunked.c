/*
 * chunked.c — the aws-chunked body decoder: turns the framed body of a
 * streaming upload back into the object's bytes, checking each chunk's
 * signature on the way.
 *
 * Wire format (signed):   <hex-size>;chunk-signature=<64 hex>\r\n<data>\r\n ...
 *                         0;chunk-signature=<64 hex>\r\n
 *                         [trailer lines, x-amz-trailer-signature:<64 hex>]\r\n
 * Wire format (unsigned): <hex-size>\r\n<data>\r\n ... 0\r\n [trailer lines] \r\n
 *
 * Each chunk signature is HMAC(signing key, "AWS4-HMAC-SHA256-PAYLOAD\n" date
 * "\n" scope "\n" previous signature "\n" sha256("") "\n" sha256(data)), the
 * chain starting at the request's (seed) signature; the trailer signature uses
 * "AWS4-HMAC-SHA256-TRAILER" and the hash of the trailer lines "name:value\n".
 *
 * How it works.  A byte-driven state machine: header and trailer lines are
 * gathered in a fixed 4 KiB line buffer; chunk data is hashed incrementally and
 * handed to the sink as it arrives, never buffered, so memory is constant
 * whatever the chunk size.  Consequence: the sink sees a chunk's bytes before
 * its signature is checked (at the end of the chunk), so the caller must treat
 * everything as provisional until chunked_finish returns 0.  Errors are sticky.
 *
 * Tolerances, for the variants clients and AWS's own examples show: trailer
 * lines may end in "\n" or "\r\n"; an empty line may separate the final chunk
 * from the trailers; the body may end without the closing empty line once the
 * final chunk (and trailer signature, when signed) was verified.
 */
#include "auth/auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define LINE_MAX_BYTES 4096
#define MAX_TRAILERS 16
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef enum {
    ST_HEADER,   /* reading a chunk header line */
    ST_DATA,     /* passing chunk data through */
    ST_DATA_CR,  /* expecting the '\r' after the data */
    ST_DATA_LF,  /* expecting the '\n' after the data */
    ST_FINAL,    /* signed, no trailer: expecting the closing empty line */
    ST_TRAILER,  /* reading trailer lines */
    ST_DONE,
} state_t;

struct chunked_decoder {
    state_t state;
    bool is_signed, has_trailer;
    int err;                 /* sticky error, 0 while healthy */
    const char *err_code;
    uint8_t key[32];
    char amz_date[17];
    char scope[128];
    char prev_sig[65];       /* the chain: seed, then each verified chunk */
    char chunk_sig[65];      /* signature claimed for the chunk being read */
    uint64_t remaining;      /* data bytes left in the current chunk */
    uint64_t decoded;
    EVP_MD_CTX *md;          /* running hash of the current chunk */
    EVP_MD_CTX *tmd;         /* running hash of the canonical trailer lines */
    int ntrailers;
    bool leading_blank;      /* an empty line came right after the final chunk */
    bool trailer_sig_ok;
    char trailer_name[128];
    char trailer_value[512];
    bool have_trailer;
    size_t line_len;
    char line[LINE_MAX_BYTES];
};

static int set_err(chunked_decoder *d, int rc, const char *code) {
    d->err = rc;
    d->err_code = code;
    return rc;
}

static int bad_framing(chunked_decoder *d) { return set_err(d, CAIRN_EINVAL, "InvalidRequest"); }
static int bad_signature(chunked_decoder *d) { return set_err(d, CAIRN_EAUTH, "SignatureDoesNotMatch"); }

chunked_decoder *chunked_new(const sigv4_auth *a, const char *secret) {
    bool is_signed = a->payload == PAYLOAD_STREAMING_SIGNED ||
                     a->payload == PAYLOAD_STREAMING_SIGNED_TRAILER;
    if (!is_signed && a->payload != PAYLOAD_STREAMING_UNSIGNED_TRAILER) return NULL;
    if (is_signed && !secret) return NULL;
    chunked_decoder *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->is_signed = is_signed;
    d->has_trailer = a->payload != PAYLOAD_STREAMING_SIGNED;
    d->md = EVP_MD_CTX_new();
    d->tmd = EVP_MD_CTX_new();
    if (!d->md || !d->tmd || !EVP_DigestInit_ex(d->tmd, EVP_sha256(), NULL)) {
        chunked_free(d);
        return NULL;
    }
    if (is_signed) {
        memcpy(d->amz_date, a->amz_date, sizeof d->amz_date);
        memcpy(d->prev_sig, a->signature, sizeof d->prev_sig);
        d->amz_date[16] = d->prev_sig[64] = '\0';
        snprintf(d->scope, sizeof d->scope, "%.8s/%.63s/%.31s/aws4_request", a->date, a->region,
                 a->service);
        sigv4_signing_key(secret, a->date, a->region, a->service, d->key);
    }
    return d;
}

void chunked_free(chunked_decoder *d) {
    if (!d) return;
    EVP_MD_CTX_free(d->md);
    EVP_MD_CTX_free(d->tmd);
    OPENSSL_cleanse(d, sizeof *d);
    free(d);
}

uint64_t chunked_decoded_bytes(const chunked_decoder *d) { return d->decoded; }

const char *chunked_trailer_name(const chunked_decoder *d) {
    return d->have_trailer ? d->trailer_name : NULL;
}

const char *chunked_trailer_value(const chunked_decoder *d) {
    return d->have_trailer ? d->trailer_value : NULL;
}

/* ---- signatures ---------------------------------------------------------- */

/* Checks claimed against HMAC of the string to sign for this link of the chain
 * and, when it matches, makes it the previous signature of the next link. */
static int check_link(chunked_decoder *d, const char *kind, const char *hash_lines,
                      const char *claimed) {
    char sts[512];
    int n = snprintf(sts, sizeof sts, "%s\n%s\n%s\n%s\n%s", kind, d->amz_date, d->scope,
                     d->prev_sig, hash_lines);
    if (n < 0 || (size_t)n >= sizeof sts) return bad_signature(d);
    unsigned char mac[32];
    unsigned int mlen = 32;
    char hex[65];
    /* HMAC allocates and can fail: never compare what mac held before. */
    if (!HMAC(EVP_sha256(), d->key, 32, (const unsigned char *)sts, (size_t)n, mac, &mlen))
        return set_err(d, CAIRN_ENOMEM, "InternalError");
    hex_encode(mac, 32, hex);
    if (CRYPTO_memcmp(hex, claimed, 64) != 0) return bad_signature(d);
    memcpy(d->prev_sig, hex, 65);
    return 0;
}

static void digest_hex(EVP_MD_CTX *md, char out[65]) {
    unsigned char h[32];
    unsigned int len = 32;
    EVP_DigestFinal_ex(md, h, &len);
    hex_encode(h, 32, out);
}

static int verify_chunk(chunked_decoder *d) {
    char lines[160], h[65];
    digest_hex(d->md, h);
    snprintf(lines, sizeof lines, "%s\n%s", EMPTY_SHA256, h);
    return check_link(d, "AWS4-HMAC-SHA256-PAYLOAD", lines, d->chunk_sig);
}

/* ---- chunk headers --------------------------------------------------------- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses "<hex>[;chunk-signature=<sig>]" (CRLF already removed). */
static int parse_chunk_header(chunked_decoder *d, const char *s, size_t n, uint64_t *size) {
    size_t i = 0;
    uint64_t v = 0;
    for (; i < n && hexval((unsigned char)s[i]) >= 0; i++) {
        if (i >= 15) return bad_framing(d); /* sizes beyond 2^60 are not real */
        v = v << 4 | (uint64_t)hexval((unsigned char)s[i]);
    }
    if (i == 0) return bad_framing(d);
    *size = v;
    const char *ext = s + i;
    size_t elen = n - i;
    if (!d->is_signed) /* unsigned: extensions, if any, carry nothing we check */
        return (elen == 0 || ext[0] == ';') ? 0 : bad_framing(d);
    static const char pfx[] = ";chunk-signature=";
    size_t pl = sizeof pfx - 1;
    if (elen != pl + 64 || memcmp(ext, pfx, pl) != 0) return bad_framing(d);
    for (size_t k = 0; k < 64; k++) {
        int c = (unsigned char)ext[pl + k];
        if (!isxdigit(c)) return bad_framing(d);
        d->chunk_sig[k] = (char)tolower(c);
    }
    d->chunk_sig[64] = '\0';
    return 0;
}

static int on_header_line(chunked_decoder *d) {
    if (d->line_len == 0 || d->line[d->line_len - 1] != '\r') return bad_framing(d);
    uint64_t size;
    int rc = parse_chunk_header(d, d->line, d->line_len - 1, &size);
    if (rc) return rc;
    if (!EVP_DigestInit_ex(d->md, EVP_sha256(), NULL)) return set_err(d, CAIRN_ENOMEM, "InternalError");
    if (size > 0) {
        d->remaining = size;
        d->state = ST_DATA;
        return 0;
    }
    /* The final, empty chunk: its signature closes the data part of the chain. */
    if (d->is_signed && (rc = verify_chunk(d)) != 0) return rc;
    d->state = d->has_trailer ? ST_TRAILER : ST_FINAL;
    return 0;
}

/* ---- trailers -------------------------------------------------------------- */

static int on_trailer_signature(chunked_decoder *d, const char *v, size_t n) {
    if (!d->is_signed) return 0; /* nothing to check it with; harmless */
    if (n != 64) return bad_signature(d);
    char claimed[65], lines[65];
    for (size_t i = 0; i < 64; i++) claimed[i] = (char)tolower((unsigned char)v[i]);
    claimed[64] = '\0';
    digest_hex(d->tmd, lines);
    int rc = check_link(d, "AWS4-HMAC-SHA256-TRAILER", lines, claimed);
    if (rc == 0) d->trailer_sig_ok = true;
    return rc;
}

static int on_trailer(chunked_decoder *d, const char *s, size_t n) {
    if (d->trailer_sig_ok) return bad_framing(d); /* nothing may follow the signature */
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s) return bad_framing(d);
    size_t nl = (size_t)(colon - s);
    char name[128];
    if (nl >= sizeof name) return bad_framing(d);
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f) return bad_framing(d);
        name[i] = (char)tolower(c);
    }
    name[nl] = '\0';
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) { v++; vl--; }
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;

    if (strcmp(name, "x-amz-trailer-signature") == 0) return on_trailer_signature(d, v, vl);
    if (++d->ntrailers > MAX_TRAILERS || vl >= sizeof d->trailer_value) return bad_framing(d);
    EVP_DigestUpdate(d->tmd, name, nl);
    EVP_DigestUpdate(d->tmd, ":", 1);
    EVP_DigestUpdate(d->tmd, v, vl);
    EVP_DigestUpdate(d->tmd, "\n", 1);
    if (!d->have_trailer) {
        memcpy(d->trailer_name, name, nl + 1);
        memcpy(d->trailer_value, v, vl);
        d->trailer_value[vl] = '\0';
        d->have_trailer = true;
    }
    return 0;
}

/* The trailer section is over: signed streams must have proven it. */
static int end_trailers(chunked_decoder *d) {
    if (d->is_signed && !d->trailer_sig_ok) return bad_signature(d);
    d->state = ST_DONE;
    return 0;
}

static int on_trailer_line(chunked_decoder *d) {
    size_t n = d->line_len;
    if (n && d->line[n - 1] == '\r') n--;
    if (n > 0) return on_trailer(d, d->line, n);
    if (d->ntrailers == 0 && !d->trailer_sig_ok && !d->leading_blank) {
        d->leading_blank = true; /* "0\r\n\r\n" then maybe trailers (AWS's example layout) */
        return 0;
    }
    return end_trailers(d);
}

/* ---- the byte pump ----------------------------------------------------------- */

/* Gathers a line; returns the bytes consumed, and sets *done when '\n' arrived. */
static size_t take_line(chunked_decoder *d, const char *in, size_t n, bool *done, int *rc) {
    const char *nl = memchr(in, '\n', n);
    size_t take = nl ? (size_t)(nl - in) : n;
    *done = nl != NULL;
    *rc = 0;
    if (d->line_len + take > LINE_MAX_BYTES) {
        *rc = bad_framing(d);
        return 0;
    }
    memcpy(d->line + d->line_len, in, take);
    d->line_len += take;
    return take + (nl ? 1 : 0);
}

static int expect_byte(chunked_decoder *d, char got, char want, state_t next) {
    if (got != want) return bad_framing(d);
    d->state = next;
    return 0;
}

static int pass_data(chunked_decoder *d, const char *in, size_t take, chunked_sink sink, void *ud) {
    EVP_DigestUpdate(d->md, in, take);
    d->remaining -= take;
    d->decoded += take;
    int rc = sink ? sink(ud, in, take) : 0;
    if (rc) return set_err(d, rc, NULL);
    if (d->remaining == 0) d->state = ST_DATA_CR;
    return 0;
}

/* s3_code is never NULL here and in chunked_finish: every caller (the gateway,
 * the tests and the fuzz target) passes it. */
int chunked_feed(chunked_decoder *d, const char *in, size_t n, chunked_sink sink, void *ud,
                 const char **s3_code) {
    size_t i = 0;
    int rc = d->err;
    while (rc == 0 && i < n) {
        switch (d->state) {
        case ST_HEADER:
        case ST_TRAILER: {
            bool done;
            i += take_line(d, in + i, n - i, &done, &rc);
            if (rc || !done) break;
            rc = d->state == ST_HEADER ? on_header_line(d) : on_trailer_line(d);
            d->line_len = 0;
            break;
        }
        case ST_DATA: {
            size_t take = n - i;
            if ((uint64_t)take > d->remaining) take = (size_t)d->remaining;
            rc = pass_data(d, in + i, take, sink, ud);
            i += take;
            break;
        }
        case ST_DATA_CR:
            rc = expect_byte(d, in[i++], '\r', ST_DATA_LF);
            break;
        case ST_DATA_LF:
            rc = expect_byte(d, in[i++], '\n', ST_HEADER);
            if (rc == 0 && d->is_signed) rc = verify_chunk(d);
            break;
        case ST_FINAL:
            if (d->line_len == 0) {
                rc = expect_byte(d, in[i++], '\r', ST_FINAL);
                d->line_len = 1;
            } else {
                rc = expect_byte(d, in[i++], '\n', ST_DONE);
                d->line_len = 0;
            }
            break;
        case ST_DONE:
            rc = bad_framing(d); /* bytes after the end of the body */
            break;
        }
    }
    if (rc) *s3_code = d->err_code;
    return rc;
}

int chunked_finish(chunked_decoder *d, const char **s3_code) {
    int rc = d->err;
    if (rc == 0 && d->state == ST_TRAILER) {
        /* The body ended without the closing empty line: take what is there. */
        if (d->line_len) rc = on_trailer_line(d);
        d->line_len = 0;
        if (rc == 0 && d->state != ST_DONE) rc = end_trailers(d);
    } else if (rc == 0 && d->state == ST_FINAL) {
        d->state = ST_DONE; /* final chunk verified; the closing CRLF carries nothing */
    }
    if (rc == 0 && d->state != ST_DONE) rc = set_err(d, CAIRN_EINVAL, "IncompleteBody");
    if (rc) *s3_code = d->err_code;
    return rc;
}
