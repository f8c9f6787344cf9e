/*
 * cors.c — cross-origin resource sharing as S3 does it (docs/cors.md):
 * PutBucketCors, GetBucketCors and DeleteBucketCors (?cors), the preflight
 * a browser sends before a cross-origin request (OPTIONS on a bucket or an
 * object), and the Access-Control-* headers of every other response.
 *
 * The configuration is validated as S3 validates it and kept in the
 * metadata (meta_bucket_config, kind "cors") as the very document
 * GetBucketCors answers, so one parser (s3_cors_parse, fuzzed) reads both
 * what a client sends and what the database holds.
 *
 * A rule matches a request when one of its AllowedOrigin patterns matches
 * the Origin header (one '*' for any run of characters), the method (or, on
 * a preflight and on an actual request that carries one, the
 * Access-Control-Request-Method header) is one of its AllowedMethod, and,
 * on a preflight only, every header of Access-Control-Request-Headers
 * matches one of its AllowedHeader patterns, without regard to case.  The
 * first rule that matches decides; none, and the preflight is refused (403
 * AccessForbidden) while an actual request is served without CORS headers
 * (the browser then keeps the answer from the page).
 *
 * The actual request's headers are added by one response filter (the
 * pipeline's stage 8), errors included.  It reads the configuration
 * through a small cache, per bucket id, like notify.c's: 64 slots, each
 * fresh for one second, so a request does not pay a metadata read; a
 * change made through this gateway applies at once (the slot is
 * forgotten), one made through another gateway within a second.  Memory is
 * bounded by the slots: each holds at most one parsed 64 KB document.
 */
#include "s3/internal.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define CACHE_SLOTS 64
#define CACHE_TTL_MS 1000
#define PARSE_MAX (1024 * 1024)
#define ID_MAX 255

static const char *const cors_methods[] = {"GET", "PUT", "POST", "DELETE", "HEAD"};

static const char *const not_allowed_msg =
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request "
    "method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the "
    "resource's CORS spec.";

/* The Vary of every answer that carries CORS headers: what decided them. */
static const char *const vary = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

/* ---- the configuration: parse, render, free ----------------------------------------------- */

static void free_list(char **l, int n) {
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

void s3_cors_config_free(s3_cors_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        s3_cors_rule *r = &c->rules[i];
        free(r->id);
        free_list(r->origins, r->norigins);
        free_list(r->headers, r->nheaders);
        free_list(r->expose, r->nexpose);
    }
    free(c->rules);
    c->rules = NULL;
    c->n = 0;
}

#define is_elem s3_xml_is

/* What parse_rule reports: CAIRN_EINVAL with the reason in why. */
typedef struct {
    char *why;
    size_t whylen;
    bool *invalid_request;
} verdict;

static int malformed(verdict *v, const char *msg) {
    snprintf(v->why, v->whylen, "%s", msg);
    return CAIRN_EINVAL;
}

static int invalid(verdict *v, const char *fmt, const char *value) {
    *v->invalid_request = true;
    snprintf(v->why, v->whylen, fmt, value);
    return CAIRN_EINVAL;
}

/* An element's text, malloc'd (xmlNodeGetContent's, copied so free() is
 * the one way to release it).  NULL: out of memory. */
static char *text_of(xmlNodePtr n) {
    xmlChar *t = xmlNodeGetContent(n);
    if (!t) return NULL;
    char *s = strdup((const char *)t);
    xmlFree(t);
    return s;
}

/* Control characters would end up in response headers (ExposeHeader) or
 * could never be matched by a header a browser sends. */
static bool has_control(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return true;
    return false;
}

static int append(char ***l, int *n, char *s) {
    char **grown = realloc(*l, (size_t)(*n + 1) * sizeof **l);
    if (!grown) {
        free(s);
        return CAIRN_ENOMEM;
    }
    grown[(*n)++] = s;
    *l = grown;
    return 0;
}

static int parse_rule(xmlNodePtr rule, s3_cors_rule *r, verdict *v) {
    r->max_age = -1;
    bool have_age = false;
    for (xmlNodePtr c = rule->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        char *t = text_of(c);
        if (!t) return CAIRN_ENOMEM;
        int rc = 0;
        if (has_control(t)) {
            rc = malformed(v, "A CORS configuration value contains a control character.");
        } else if (is_elem(c, "AllowedOrigin")) {
            if (strchr(t, '*') != strrchr(t, '*'))
                rc = invalid(v, "AllowedOrigin \"%s\" can not have more than one wildcard.", t);
            else {
                rc = append(&r->origins, &r->norigins, t);
                t = NULL;
            }
        } else if (is_elem(c, "AllowedMethod")) {
            int k = 0;
            while (k < 5 && strcmp(t, cors_methods[k]) != 0) k++;
            if (k == 5) {
                rc = invalid(v, "Found unsupported HTTP method in CORS config. Unsupported method is %s", t);
            } else {
                bool seen = false;
                for (int i = 0; i < r->nmethods; i++) seen |= !strcmp(r->methods[i], t);
                if (!seen) snprintf(r->methods[r->nmethods++], sizeof r->methods[0], "%s", t);
            }
        } else if (is_elem(c, "AllowedHeader")) {
            if (strchr(t, '*') != strrchr(t, '*'))
                rc = invalid(v, "AllowedHeader \"%s\" can not have more than one wildcard.", t);
            else {
                rc = append(&r->headers, &r->nheaders, t);
                t = NULL;
            }
        } else if (is_elem(c, "ExposeHeader")) {
            if (strchr(t, '*'))
                rc = invalid(v, "ExposeHeader \"%s\" contains wildcard. We currently do not support wildcard for "
                                "ExposeHeader.", t);
            else {
                rc = append(&r->expose, &r->nexpose, t);
                t = NULL;
            }
        } else if (is_elem(c, "MaxAgeSeconds")) {
            char *end = NULL;
            long long age = isdigit((unsigned char)t[0]) ? strtoll(t, &end, 10) : -1;
            if (have_age || age < 0 || *end || age > INT32_MAX)
                rc = malformed(v, "MaxAgeSeconds is one integer from 0 to 2147483647.");
            r->max_age = age;
            have_age = true;
        } else if (is_elem(c, "ID")) {
            if (r->id || strlen(t) > ID_MAX) rc = malformed(v, "A CORSRule has at most one ID, of 255 characters at most.");
            else {
                r->id = t;
                t = NULL;
            }
        } else {
            rc = malformed(v, "The XML you provided was not well-formed or did not validate against our published "
                              "schema: unknown element in a CORSRule.");
        }
        free(t);
        if (rc != 0) return rc;
    }
    if (r->norigins == 0 || r->nmethods == 0)
        return malformed(v, "The XML you provided was not well-formed or did not validate against our published "
                            "schema: each CORSRule needs an AllowedOrigin and an AllowedMethod.");
    if (!r->id && !(r->id = strdup(""))) return CAIRN_ENOMEM;
    return 0;
}

int s3_cors_parse(const char *body, size_t len, s3_cors_config *out, char *why, size_t whylen,
                  bool *invalid_request) {
    memset(out, 0, sizeof *out);
    *invalid_request = false;
    verdict v = {why, whylen, invalid_request};
    malformed(&v, "The XML you provided was not well-formed or did not validate against our published schema");
    int rc;
    xmlDocPtr doc = s3_xml_read(body, len, PARSE_MAX, "CORSConfiguration", &rc);
    if (!doc) return rc;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr c = rc == 0 ? root->children : NULL; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!is_elem(c, "CORSRule")) {
            rc = CAIRN_EINVAL;
            break;
        }
        if (out->n == S3_CORS_MAX_RULES) {
            rc = malformed(&v, "The CORS configuration holds at most 100 rules.");
            break;
        }
        s3_cors_rule *grown = realloc(out->rules, (size_t)(out->n + 1) * sizeof *grown);
        if (!grown) {
            rc = CAIRN_ENOMEM;
            break;
        }
        out->rules = grown;
        memset(&out->rules[out->n], 0, sizeof *grown);
        rc = parse_rule(c, &out->rules[out->n], &v);
        out->n++;   /* counted even when it failed: freed below with the rest */
        if (rc != 0) break;
    }
    if (rc == 0 && out->n == 0) rc = CAIRN_EINVAL;
    xmlFreeDoc(doc);
    if (rc != 0) s3_cors_config_free(out);
    return rc;
}

static void elem(buf_t *b, const char *name, const char *value) {
    buf_printf(b, "<%s>", name);
    buf_xml_escape(b, value, strlen(value));
    buf_printf(b, "</%s>", name);
}

void s3_cors_render(const s3_cors_config *c, buf_t *out) {
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<CORSConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < c->n; i++) {
        const s3_cors_rule *r = &c->rules[i];
        buf_puts(out, "<CORSRule>");
        if (r->id && r->id[0]) elem(out, "ID", r->id);
        for (int k = 0; k < r->nheaders; k++) elem(out, "AllowedHeader", r->headers[k]);
        for (int k = 0; k < r->nmethods; k++) elem(out, "AllowedMethod", r->methods[k]);
        for (int k = 0; k < r->norigins; k++) elem(out, "AllowedOrigin", r->origins[k]);
        for (int k = 0; k < r->nexpose; k++) elem(out, "ExposeHeader", r->expose[k]);
        if (r->max_age >= 0) buf_printf(out, "<MaxAgeSeconds>%lld</MaxAgeSeconds>", (long long)r->max_age);
        buf_puts(out, "</CORSRule>");
    }
    buf_puts(out, "</CORSConfiguration>");
}

/* ---- matching ---------------------------------------------------------------------------------- */

static bool char_eq(char a, char b, bool nocase) {
    return nocase ? tolower((unsigned char)a) == tolower((unsigned char)b) : a == b;
}

/* Iterative glob with one backtrack point: O(len(pattern) * len(s)) at
 * worst, whatever the input. */
bool s3_cors_wildcard_match(const char *p, const char *s, bool nocase) {
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p && char_eq(*p, *s, nocase)) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*') p++;
    return *p == '\0';
}

/* Calls fn for each element of a comma-separated list, spaces and tabs
 * around it trimmed, empty elements skipped (RFC 9110 5.6.1); stops at the
 * first false. */
static bool each_listed(const char *list, bool (*fn)(void *ud, const char *name, size_t n), void *ud) {
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *z = end;
        while (a < z && (*a == ' ' || *a == '\t')) a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t')) z--;
        if (z > a && !fn(ud, a, (size_t)(z - a))) return false;
        p = *end ? end + 1 : end;
    }
    return true;
}

static bool header_allowed(void *ud, const char *name, size_t n) {
    const s3_cors_rule *r = ud;
    char h[256];
    if (n >= sizeof h) return false;   /* no header a browser sends is that long */
    memcpy(h, name, n);
    h[n] = '\0';
    for (int i = 0; i < r->nheaders; i++)
        if (s3_cors_wildcard_match(r->headers[i], h, true)) return true;
    return false;
}

const s3_cors_rule *s3_cors_match(const s3_cors_config *c, const char *origin, const char *method,
                                  const char *req_headers, const char **matched_origin) {
    for (int i = 0; i < c->n; i++) {
        const s3_cors_rule *r = &c->rules[i];
        const char *o = NULL;
        for (int k = 0; k < r->norigins && !o; k++)
            if (s3_cors_wildcard_match(r->origins[k], origin, false)) o = r->origins[k];
        if (!o) continue;
        bool m = false;
        for (int k = 0; k < r->nmethods && !m; k++) m = !strcmp(r->methods[k], method);
        if (!m) continue;
        if (req_headers && !each_listed(req_headers, header_allowed, (void *)r)) continue;
        if (matched_origin) *matched_origin = o;
        return r;
    }
    return NULL;
}

/* ---- the cache ------------------------------------------------------------------------------------ */

typedef struct {
    int64_t bucket_id;          /* 0: empty */
    int64_t fetched_ms;
    uint64_t generation;        /* of the gateway's forgets when fetched: a forget meanwhile wins */
    s3_cors_config cfg;         /* n == 0: the bucket has none */
} slot;

struct s3_cors_cache {
    pthread_mutex_t mu;
    slot slots[CACHE_SLOTS];
    uint64_t generation;        /* bumped by every forget */
};

int s3_cors_cache_new(s3_cors_cache **out) {
    s3_cors_cache *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void s3_cors_cache_free(s3_cors_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SLOTS; i++) s3_cors_config_free(&c->slots[i].cfg);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void forget(s3_cors_cache *c, int64_t bucket_id) {
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[(uint64_t)bucket_id % CACHE_SLOTS];
    if (s->bucket_id == bucket_id) s->fetched_ms = 0;
    c->generation++;
    pthread_mutex_unlock(&c->mu);
}

/* Reads the bucket's configuration from the metadata: 0 with *cfg (empty
 * when it has none), or the metadata's error.  A stored document that does
 * not parse (it never should: we wrote it) counts as none, logged. */
static int fetch(s3_gateway *gw, int64_t bucket_id, const char *request_id, s3_cors_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char *doc = NULL;
    int rc = meta_bucket_config_get(gw->d.meta, bucket_id, "cors", &doc);
    if (rc == CAIRN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    char why[160];
    bool inval;
    rc = s3_cors_parse(doc, strlen(doc), cfg, why, sizeof why, &inval);
    free(doc);
    if (rc == CAIRN_ENOMEM) return rc;
    if (rc != 0) log_write(LOG_ERROR, request_id, "a bucket's CORS configuration does not read back; ignored",
                           "error", why, NULL);
    return 0;
}

/* What a request needs of a matching rule, copied into the request's
 * arena so the cache's lock is not held while the answer is built. */
typedef struct {
    bool found;                 /* the bucket has a configuration */
    bool matched;
    bool any_origin;            /* the rule's origin was "*" */
    const char *methods;        /* "GET, PUT" */
    const char *expose;         /* "" when none */
    int64_t max_age;
} decision;

static const char *join(arena *a, char **l, int n, const char (*fixed)[8]) {
    buf_t b;
    buf_init(&b);
    for (int i = 0; i < n; i++) {
        if (i) buf_puts(&b, ", ");
        buf_puts(&b, fixed ? fixed[i] : l[i]);
    }
    const char *s = b.oom ? NULL : arena_strndup(a, b.data ? b.data : "", b.len);
    buf_free(&b);
    return s;
}

/* The decision of a request against cfg (see decide). */
static int decide_with(const s3_cors_config *cfg, http_req *r, const char *origin, const char *method,
                       const char *req_headers, decision *d) {
    memset(d, 0, sizeof *d);
    if (cfg->n == 0) return 0;
    d->found = true;
    const char *o = NULL;
    const s3_cors_rule *rule = s3_cors_match(cfg, origin, method, req_headers, &o);
    if (!rule) return 0;
    d->matched = true;
    d->any_origin = !strcmp(o, "*");
    d->methods = join(r->arena, NULL, rule->nmethods, rule->methods);
    d->expose = join(r->arena, rule->expose, rule->nexpose, NULL);
    d->max_age = rule->max_age;
    return d->methods && d->expose ? 0 : CAIRN_ENOMEM;
}

/* Decides a request from origin with method (and, for a preflight,
 * req_headers) against the bucket's configuration, through the cache.
 * 0, or the metadata's error / CAIRN_ENOMEM. */
static int decide(s3_gateway *gw, http_req *r, int64_t bucket_id, const char *origin, const char *method,
                  const char *req_headers, decision *d) {
    s3_cors_cache *c = gw->cors;
    slot *s = &c->slots[(uint64_t)bucket_id % CACHE_SLOTS];
    pthread_mutex_lock(&c->mu);
    int64_t now = time_now_ms();
    if (s->bucket_id == bucket_id && now - s->fetched_ms < CACHE_TTL_MS) {
        int rc = decide_with(&s->cfg, r, origin, method, req_headers, d);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    uint64_t gen = c->generation;
    pthread_mutex_unlock(&c->mu);
    /* Read without the lock: a slow database must not hold up the requests
     * of every other bucket.  What this request read is right for it (the
     * read began after the request did); it is kept for others only when
     * no change was made through this gateway meanwhile, since the read
     * may have begun before that change committed. */
    s3_cors_config cfg;
    int rc = fetch(gw, bucket_id, r->request_id, &cfg);
    if (rc != 0) return rc;
    rc = decide_with(&cfg, r, origin, method, req_headers, d);
    pthread_mutex_lock(&c->mu);
    if (c->generation == gen) {
        s3_cors_config_free(&s->cfg);
        *s = (slot){bucket_id, now, gen, cfg};
    } else {
        s3_cors_config_free(&cfg);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- the answers ------------------------------------------------------------------------------- */

static bool lower_into(void *ud, const char *name, size_t n) {
    buf_t *b = ud;
    if (b->len) buf_puts(b, ", ");
    for (size_t i = 0; i < n; i++) buf_putc(b, (char)tolower((unsigned char)name[i]));
    return true;
}

/* The Access-Control-* headers of a request the rule d allows.
 * allow_headers: a preflight's Access-Control-Request-Headers, answered
 * lowercase as S3 does, or NULL. */
static int add_headers(http_req *r, const decision *d, const char *origin, const char *allow_headers) {
    http_add_header(r, "Access-Control-Allow-Origin", d->any_origin ? "*" : origin);
    http_add_header(r, "Access-Control-Allow-Methods", d->methods);
    if (allow_headers) {
        buf_t b;
        buf_init(&b);
        each_listed(allow_headers, lower_into, &b);
        if (b.oom) {
            buf_free(&b);
            return CAIRN_ENOMEM;
        }
        if (b.len) http_add_header(r, "Access-Control-Allow-Headers", b.data);
        buf_free(&b);
    }
    if (d->expose[0]) http_add_header(r, "Access-Control-Expose-Headers", d->expose);
    if (d->max_age >= 0) {
        char age[24];
        snprintf(age, sizeof age, "%lld", (long long)d->max_age);
        http_add_header(r, "Access-Control-Max-Age", age);
    }
    /* A page may send its cookies and credentials only to a named origin;
     * the Fetch standard forbids them with "*". */
    if (!d->any_origin) http_add_header(r, "Access-Control-Allow-Credentials", "true");
    http_add_header(r, "Vary", vary);
    return 0;
}

/*
 * OPTIONS on a bucket or an object: a browser asks whether it may send a
 * request with this method and these headers from this origin.  No
 * credentials come with it.  The order of the refusals is S3's: no Origin
 * is 400 whatever the bucket; a bucket that does not exist, or has no
 * configuration, is 403 before the method is looked at; then a missing
 * method is 400; then no rule matching is 403.
 */
void s3_cors_preflight(s3_req *q) {
    http_req *r = q->http;
    const char *origin = http_header(r, "origin");
    const char *method = http_header(r, "access-control-request-method");
    const char *req_headers = http_header(r, "access-control-request-headers");
    if (!origin) {
        s3_error(q, "BadRequest", "Insufficient information. Origin request header needed.");
        return;
    }
    const char *elems[] = {"Method", method ? method : "OPTIONS", "ResourceType", "BUCKET", NULL};
    meta_bucket bk;
    int rc = s3_bucket_name_valid(q->bucket) ? meta_bucket_get(q->gw->d.meta, q->bucket, &bk) : CAIRN_ENOTFOUND;
    if (rc == CAIRN_ENOTFOUND) {
        s3_error_elems(q, "AccessForbidden", "CORSResponse: Bucket not found", elems);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "metadata lookup failed");
        return;
    }
    q->bucket_id = bk.id;
    decision d;
    rc = decide(q->gw, r, bk.id, origin, method ? method : "", req_headers, &d);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "reading the CORS configuration failed");
        return;
    }
    if (!d.found) {
        s3_error_elems(q, "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", elems);
        return;
    }
    if (!method) {
        s3_error(q, "BadRequest", "Invalid Access-Control-Request-Method: null");
        return;
    }
    if (!d.matched) {
        elems[3] = q->has_key ? "OBJECT" : "BUCKET";
        s3_error_elems(q, "AccessForbidden", not_allowed_msg, elems);
        return;
    }
    if (add_headers(r, &d, origin, req_headers ? req_headers : NULL) != 0) {
        s3_error_nomem(q);
        return;
    }
    http_respond(r, 200, "", 0);
}

/*
 * The response filter: any other response to a request with an Origin, to
 * a bucket whose configuration has a rule for that origin and the method
 * (the Access-Control-Request-Method header's when the request carries
 * one, as S3 matches), gets that rule's headers — errors included, so a
 * page can read why its request failed.  A request answered before its
 * bucket was loaded (a refused signature) costs one bucket lookup, and
 * only when it carries an Origin.
 */
void s3_cors_filter(void *ud, const s3_response *resp) {
    s3_gateway *gw = ud;
    http_req *r = resp->http;
    const char *origin = http_header(r, "origin");
    if (!origin || !resp->bucket || !resp->bucket[0] || !strcmp(r->method, "OPTIONS")) return;
    int64_t id = resp->bucket_id;
    if (id <= 0) {
        meta_bucket bk;
        if (!s3_bucket_name_valid(resp->bucket) || meta_bucket_get(gw->d.meta, resp->bucket, &bk) != 0) return;
        id = bk.id;
    }
    const char *acrm = http_header(r, "access-control-request-method");
    decision d;
    int rc = decide(gw, r, id, origin, acrm ? acrm : r->method, NULL, &d);
    if (rc == 0 && d.matched) rc = add_headers(r, &d, origin, NULL);
    if (rc != 0)
        log_write(LOG_WARN, r->request_id, "CORS configuration not read: answered without CORS headers", "error",
                  cairn_strerror(rc), NULL);
}

/* ---- PutBucketCors, GetBucketCors, DeleteBucketCors ---------------------------------------------- */

void s3_put_bucket_cors(s3_req *q) {
    const char *body = q->body.data ? q->body.data : "";
    /* Content-MD5, when sent, as DeleteObjects checks it.  S3 requires it
     * (or an x-amz-checksum-*), which every SDK sends. */
    if (http_header(q->http, "content-md5") && s3_check_body_digest(q) != 0) return;
    if (q->body.len > S3_CORS_MAX_BYTES) {
        s3_error(q, "MalformedXML", "The CORS configuration is limited to 64 KB.");
        return;
    }
    s3_cors_config cfg;
    char why[512];
    bool inval = false;
    int rc = s3_cors_parse(body, q->body.len, &cfg, why, sizeof why, &inval);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return;
    }
    if (rc != 0) {
        s3_error(q, inval ? "InvalidRequest" : "MalformedXML", why);
        return;
    }
    buf_t doc;
    buf_init(&doc);
    s3_cors_render(&cfg, &doc);
    s3_cors_config_free(&cfg);
    rc = s3_store_bucket_config(q, "cors", doc.oom ? NULL : doc.data, "the CORS configuration");
    buf_free(&doc);
    if (rc != 0) return;
    forget(q->gw->cors, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

void s3_get_bucket_cors(s3_req *q) { s3_answer_bucket_config(q, "cors", "NoSuchCORSConfiguration"); }

void s3_delete_bucket_cors(s3_req *q) {
    if (s3_drop_bucket_config(q, "cors") != 0) return;
    forget(q->gw->cors, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}
