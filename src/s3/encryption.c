/*
 * encryption.c — a bucket's default encryption as S3 keeps it
 * (docs/bucket-encryption.md): PutBucketEncryption, GetBucketEncryption and
 * DeleteBucketEncryption (?encryption), and the question the object write
 * path asks of it, s3_bucket_sse_default.
 *
 * The document holds exactly one Rule: an ApplyServerSideEncryptionByDefault
 * with the SSEAlgorithm (AES256 or aws:kms) and, for aws:kms only, a
 * KMSMasterKeyID (a bare key id or a key ARN, kept as the bare id); and a
 * BucketKeyEnabled, stored and answered but not acted on (cairn wraps one
 * data key per object either way).  aws:kms:dsse, the dual-layer variant,
 * is refused as not implemented.
 *
 * What is stored (meta_bucket_config, kind "encryption") is the validated
 * configuration rendered as the very document GetBucketEncryption answers,
 * so one parser (s3_sse_config_parse, fuzzed) reads both what a client
 * sends and what the database holds, as cors.c does.
 *
 * The write path reads the configuration through a small cache per
 * gateway, per bucket id, like CORS's: 64 slots, each fresh for one second;
 * a change made through this gateway applies at once (the slot is
 * forgotten), one made through another gateway within a second.
 */
#include "s3/internal.h"
#include "crypt/kms.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define CACHE_SLOTS 64
#define CACHE_TTL_MS 1000
#define KIND "encryption"
_Static_assert(sizeof(((s3_sse_default *)0)->kms_key_id) == KMS_ID_MAX + 1, "a key id fits");

#define TEXT_MAX 2048           /* the longest element text read; a key ARN is far shorter */

static const char *const malformed_msg =
    "The XML you provided was not well-formed or did not validate against our published schema";

/* ---- the configuration: parse, render ------------------------------------------------------- */

typedef struct {
    const char **code;
    const char **why;
} verdict;

static int fail(verdict *v, const char *code, const char *why) {
    *v->code = code;
    *v->why = why;
    return CAIRN_EINVAL;
}

static int malformed(verdict *v) { return fail(v, "MalformedXML", malformed_msg); }

/* One ARN field: 1 .. 64 of [a-z0-9-] (a partition, a region; an account
 * is digits, which this takes too). */
static bool arn_field_valid(const char *s, size_t n) {
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) return false;
    return true;
}

const char *s3_kms_key_id_of(const char *v) {
    if (strncmp(v, "arn:", 4) != 0) return v;
    const char *p = v + 4;
    /* PARTITION, "kms", REGION, ACCOUNT: each ends at a ':' */
    for (int i = 0; i < 4; i++) {
        const char *colon = strchr(p, ':');
        if (!colon) return NULL;
        size_t n = (size_t)(colon - p);
        if (i == 1 ? n != 3 || strncmp(p, "kms", 3) != 0 : !arn_field_valid(p, n)) return NULL;
        p = colon + 1;
    }
    return strncmp(p, "key/", 4) == 0 ? p + 4 : NULL;
}

/* An element's text into out (TEXT_MAX bytes); false when it holds
 * elements or is longer. */
static bool text_of(xmlNodePtr e, char out[TEXT_MAX]) { return s3_xml_text(e, out, TEXT_MAX); }

/* ApplyServerSideEncryptionByDefault into out. */
static int parse_default(xmlNodePtr e, s3_sse_default *out, verdict *v) {
    char alg[TEXT_MAX] = "", key[TEXT_MAX] = "";
    bool have_alg = false, have_key = false;
    for (xmlNodePtr c = e->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "SSEAlgorithm") && !have_alg) {
            if (!text_of(c, alg)) return malformed(v);
            have_alg = true;
        } else if (s3_xml_is(c, "KMSMasterKeyID") && !have_key) {
            if (!text_of(c, key))
                return fail(v, "InvalidArgument", "KMSMasterKeyID is not a valid KMS key id or key ARN.");
            have_key = true;
        } else {
            return malformed(v);
        }
    }
    if (!have_alg) return malformed(v);
    if (!strcmp(alg, "AES256")) out->mode = 'S';
    else if (!strcmp(alg, "aws:kms")) out->mode = 'K';
    else if (!strcmp(alg, "aws:kms:dsse"))
        return fail(v, "NotImplemented",
                    "Dual-layer server-side encryption (aws:kms:dsse) is not supported: use AES256 or aws:kms.");
    else return malformed(v);
    if (!have_key) return 0;
    if (out->mode != 'K')
        return fail(v, "InvalidArgument",
                    "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse");
    const char *id = s3_kms_key_id_of(key);
    if (!id || !kms_id_valid(id))
        return fail(v, "InvalidArgument", "KMSMasterKeyID is not a valid KMS key id or key ARN.");
    snprintf(out->kms_key_id, sizeof out->kms_key_id, "%s", id);
    return 0;
}

static int parse_rule(xmlNodePtr rule, s3_sse_default *out, verdict *v) {
    bool have_default = false, have_bucket_key = false;
    for (xmlNodePtr c = rule->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "ApplyServerSideEncryptionByDefault") && !have_default) {
            int rc = parse_default(c, out, v);
            if (rc != 0) return rc;
            have_default = true;
        } else if (s3_xml_is(c, "BucketKeyEnabled") && !have_bucket_key) {
            char t[TEXT_MAX];
            if (!text_of(c, t) || (strcmp(t, "true") != 0 && strcmp(t, "false") != 0)) return malformed(v);
            out->bucket_key = !strcmp(t, "true");
            have_bucket_key = true;
        } else {
            return malformed(v);
        }
    }
    return have_default ? 0 : malformed(v);
}

int s3_sse_config_parse(const char *body, size_t len, s3_sse_default *out, const char **code, const char **why) {
    memset(out, 0, sizeof *out);
    verdict v = {code, why};
    malformed(&v);
    int rc;
    xmlDocPtr doc = s3_xml_read(body, len, S3_SSE_CONFIG_MAX_BYTES, "ServerSideEncryptionConfiguration", &rc);
    if (!doc) return rc;
    int rules = 0;
    for (xmlNodePtr c = xmlDocGetRootElement(doc)->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!s3_xml_is(c, "Rule") || ++rules > 1) rc = malformed(&v);
        else rc = parse_rule(c, out, &v);
    }
    if (rc == 0 && rules == 0) rc = malformed(&v);
    xmlFreeDoc(doc);
    if (rc != 0) memset(out, 0, sizeof *out);
    return rc;
}

void s3_sse_config_render(const s3_sse_default *c, buf_t *out) {
    assert(c->mode == 'S' || c->mode == 'K');
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                  "<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>");
    buf_puts(out, c->mode == 'K' ? "aws:kms" : "AES256");
    buf_puts(out, "</SSEAlgorithm>");
    if (c->mode == 'K' && c->kms_key_id[0]) {
        buf_puts(out, "<KMSMasterKeyID>");
        buf_xml_escape(out, c->kms_key_id, strlen(c->kms_key_id));
        buf_puts(out, "</KMSMasterKeyID>");
    }
    buf_printf(out, "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>%s</BucketKeyEnabled></Rule>"
                    "</ServerSideEncryptionConfiguration>",
               c->bucket_key ? "true" : "false");
}

/* ---- the cache ------------------------------------------------------------------------------- */

typedef struct {
    int64_t bucket_id;          /* 0: empty */
    int64_t fetched_ms;
    s3_sse_default cfg;         /* mode 0: the bucket has none */
} slot;

struct s3_sse_cache {
    pthread_mutex_t mu;
    slot slots[CACHE_SLOTS];
    uint64_t generation;        /* bumped by every forget: a read begun before one is not kept */
};

int s3_sse_cache_new(s3_sse_cache **out) {
    s3_sse_cache *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void s3_sse_cache_free(s3_sse_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void forget(s3_sse_cache *c, int64_t bucket_id) {
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[(uint64_t)bucket_id % CACHE_SLOTS];
    if (s->bucket_id == bucket_id) s->fetched_ms = 0;
    c->generation++;
    pthread_mutex_unlock(&c->mu);
}

/* Reads the bucket's configuration from the metadata: 0 with *cfg (mode 0
 * when it has none), the metadata's error, or CAIRN_EINVAL for a stored
 * document that does not read back (it never should: we wrote it).  That
 * one is an error, not "none": objects must not be written in the clear
 * because a configuration asking for encryption could not be read. */
static int fetch(s3_gateway *gw, int64_t bucket_id, const char *request_id, s3_sse_default *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char *doc = NULL;
    int rc = meta_bucket_config_get(gw->d.meta, bucket_id, KIND, &doc);
    if (rc == CAIRN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    const char *code = NULL, *why = NULL;
    rc = s3_sse_config_parse(doc, strlen(doc), cfg, &code, &why);
    free(doc);
    if (rc == CAIRN_EINVAL)
        log_write(LOG_ERROR, request_id, "a bucket's default encryption does not read back", "error", why, NULL);
    return rc;
}

int s3_bucket_sse_default(s3_req *q, s3_sse_default *out) {
    assert(q->bucket_id > 0);
    s3_sse_cache *c = q->gw->sse;
    slot *s = &c->slots[(uint64_t)q->bucket_id % CACHE_SLOTS];
    pthread_mutex_lock(&c->mu);
    int64_t now = time_now_ms();
    if (s->bucket_id == q->bucket_id && now - s->fetched_ms < CACHE_TTL_MS) {
        *out = s->cfg;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    uint64_t gen = c->generation;
    pthread_mutex_unlock(&c->mu);
    /* Read without the lock, as cors.c does: kept for others only when no
     * change went through this gateway meanwhile. */
    int rc = fetch(q->gw, q->bucket_id, q->http->request_id, out);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return -1;
    }
    if (rc == CAIRN_EINVAL) {
        s3_error(q, "InternalError", "The bucket's default encryption configuration could not be read.");
        return -1;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "reading the bucket's default encryption failed");
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    if (c->generation == gen) *s = (slot){q->bucket_id, now, *out};
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* ---- PutBucketEncryption, GetBucketEncryption, DeleteBucketEncryption ------------------------ */

/* Whether the request carries a digest of its body (Content-MD5 or an
 * x-amz-checksum-* value): checked when it does, as PutBucketCors checks
 * Content-MD5; SDKs send one or the other. */
static bool has_digest(s3_req *q) {
    if (http_header(q->http, "content-md5")) return true;
    const http_req *r = q->http;
    for (size_t i = 0; i < r->nheaders; i++) {
        const header_field *h = &r->headers[i];
        if (h->name_len > 15 && !strncasecmp(h->name, "x-amz-checksum-", 15) &&
            !(h->name_len == 19 && !strncasecmp(h->name, "x-amz-checksum-type", 19)))
            return true;
    }
    return false;
}

void s3_put_bucket_encryption(s3_req *q) {
    if (has_digest(q) && s3_check_body_digest(q) != 0) return;
    if (q->body.len > S3_SSE_CONFIG_MAX_BYTES) {
        s3_error(q, "MalformedXML", "The server side encryption configuration is limited to 64 KB.");
        return;
    }
    s3_sse_default cfg;
    const char *code = NULL, *why = NULL;
    int rc = s3_sse_config_parse(q->body.data ? q->body.data : "", q->body.len, &cfg, &code, &why);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return;
    }
    if (rc != 0) {
        s3_error(q, code, why);
        return;
    }
    buf_t doc;
    buf_init(&doc);
    s3_sse_config_render(&cfg, &doc);
    rc = s3_store_bucket_config(q, KIND, doc.oom ? NULL : doc.data, "the default encryption configuration");
    buf_free(&doc);
    if (rc != 0) return;
    forget(q->gw->sse, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

void s3_get_bucket_encryption(s3_req *q) {
    s3_answer_bucket_config(q, KIND, "ServerSideEncryptionConfigurationNotFoundError");
}

void s3_delete_bucket_encryption(s3_req *q) {
    if (s3_drop_bucket_config(q, KIND) != 0) return;
    forget(q->gw->sse, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}
