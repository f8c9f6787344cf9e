/*
 * util.c — pure helpers of the S3 layer: bucket-name rules, Range and
 * conditional-header evaluation, ETag quoting, base64, and parsing of
 * the small XML request bodies (DeleteObjects, CreateBucketConfiguration).
 *
 * XML input goes through libxml2 with network access and DTD loading off and
 * entity substitution off (no XXE), and bodies are size-capped by the caller.
 */
#include "s3/internal.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

bool s3_bucket_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n < 3 || n > 63) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return false;
    }
    if (!isalnum((unsigned char)name[0]) || !isalnum((unsigned char)name[n - 1])) return false;
    if (strstr(name, "..") || strstr(name, ".-") || strstr(name, "-.")) return false;
    if (strncmp(name, "xn--", 4) == 0 || strncmp(name, "sthree-", 7) == 0) return false;
    if (n >= 8 && strcmp(name + n - 8, "-s3alias") == 0) return false;
    if (n >= 7 && strcmp(name + n - 7, "--ol-s3") == 0) return false;
    /* Reserved: /health/... and /metrics are the operator endpoints. */
    if (!strcmp(name, "health") || !strcmp(name, "metrics")) return false;
    /* Not formatted as an IPv4 address. */
    int dots = 0, digits = 1;
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '.') dots++;
        else if (!isdigit((unsigned char)name[i])) digits = 0;
    }
    if (digits && dots == 3) return false;
    return true;
}

bool s3_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return false; /* a continuation byte first, an overlong lead, or > U+10FFFF */
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Percent-decodes a query component (s3_parse_query split the string at
 * every '&', so none is left in it); a literal '+' is a space (form
 * encoding), while "%2B" stays a plus.  dst holds n + 1 bytes. */
static long query_decode(const char *src, size_t n, char *dst) {
    long o = 0;
    for (size_t i = 0; i < n;) {
        size_t run = 0;
        while (i + run < n && src[i + run] != '+') run++;
        long k = url_decode(src + i, run, dst + o);
        if (k < 0) return k;
        o += k;
        i += run;
        if (i < n) { /* the run stopped at a '+' */
            dst[o++] = ' ';
            i++;
        }
    }
    dst[o] = '\0';
    if (memchr(dst, '\0', (size_t)o) || !s3_utf8_valid(dst, (size_t)o)) return CAIRN_EINVAL;
    return o;
}

int s3_parse_query(arena *a, const char *raw, s3_query_param *params, int max, int *n) {
    *n = 0;
    size_t len = strlen(raw);
    if (len == 0) return 0;
    /* Every decoded component is no longer than its encoding, plus a NUL. */
    char *out = arena_alloc(a, 2 * len + 2);
    if (!out) return CAIRN_ENOMEM;
    const char *p = raw, *end = raw + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp) amp = end;
        if (amp > p) {
            if (*n == max) return CAIRN_EINVAL;
            const char *eq = memchr(p, '=', (size_t)(amp - p));
            const char *ne = eq ? eq : amp;
            char *name = out;
            long nl = query_decode(p, (size_t)(ne - p), name);
            if (nl < 0) return CAIRN_EINVAL;
            out += nl + 1;
            char *value = out;
            long vl = eq ? query_decode(eq + 1, (size_t)(amp - eq - 1), value) : 0;
            if (vl < 0) return CAIRN_EINVAL;
            if (!eq) value[0] = '\0';
            out += vl + 1;
            params[(*n)++] = (s3_query_param){name, value};
        }
        p = amp + 1;
    }
    return 0;
}

/* The smallest string greater than every string starting with s: drop
 * trailing 0xff bytes, then increment the last byte.  False if none exists. */
static bool successor(char *s, size_t *len) {
    while (*len && (unsigned char)s[*len - 1] == 0xff) (*len)--;
    if (!*len) return false;
    s[*len - 1] = (char)((unsigned char)s[*len - 1] + 1);
    return true;
}

char *s3_list_token_encode(const char *key, size_t len, bool is_prefix) {
    uint8_t *raw = malloc(len + 1);
    if (!raw) return NULL;
    raw[0] = is_prefix ? 'P' : 'K';
    memcpy(raw + 1, key, len);
    size_t rl = len + 1;
    if (is_prefix) {
        /* resume at the successor of the prefix, inclusive */
        size_t kl = len;
        if (!successor((char *)raw + 1, &kl)) kl = 0;
        rl = kl + 1;
    }
    char *out = malloc(4 * ((rl + 2) / 3) + 1);
    if (out) s3_base64_encode(raw, rl, out);
    free(raw);
    return out;
}

int s3_list_token_decode(const char *tok, char *key, size_t *len, bool *inclusive) {
    size_t n = strlen(tok);
    if (n == 0 || n > 4 * ((1025 + 2) / 3)) return CAIRN_EINVAL;
    uint8_t *raw = malloc(n);
    size_t rl = 0;
    if (!raw) return CAIRN_ENOMEM;
    int rc = CAIRN_EINVAL;
    if (s3_base64_decode(tok, raw, n, &rl) && rl >= 1 && (raw[0] == 'K' || raw[0] == 'P') && rl - 1 <= 1024 &&
        !memchr(raw + 1, '\0', rl - 1)) {
        memcpy(key, raw + 1, rl - 1);
        key[rl - 1] = '\0';
        *len = rl - 1;
        *inclusive = raw[0] == 'P';
        rc = 0;
    }
    free(raw);
    return rc;
}

/* Parses a non-negative decimal that must fill [s, end). */
static bool parse_num(const char *s, const char *end, int64_t *out) {
    if (s == end || end - s > 18) return false;
    int64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

s3_range_result s3_parse_range(const char *h, int64_t size, int64_t *start, int64_t *len) {
    if (!h) return S3_RANGE_NONE;
    while (*h == ' ') h++;
    if (strncasecmp(h, "bytes=", 6) != 0) return S3_RANGE_NONE;
    const char *spec = h + 6;
    while (*spec == ' ') spec++;
    if (strchr(spec, ',')) return S3_RANGE_NONE; /* S3 ignores multiple ranges */
    const char *end = spec + strlen(spec);
    while (end > spec && end[-1] == ' ') end--;
    const char *dash = memchr(spec, '-', (size_t)(end - spec));
    if (!dash) return S3_RANGE_NONE;
    int64_t a, b;
    if (dash == spec) {
        /* suffix: last n bytes */
        if (!parse_num(dash + 1, end, &b)) return S3_RANGE_NONE;
        if (b == 0) return S3_RANGE_UNSATISFIABLE;
        if (size == 0) return S3_RANGE_UNSATISFIABLE;
        if (b > size) b = size;
        *start = size - b;
        *len = b;
        return S3_RANGE_OK;
    }
    if (!parse_num(spec, dash, &a)) return S3_RANGE_NONE;
    if (dash + 1 == end) {
        b = INT64_MAX;
    } else {
        if (!parse_num(dash + 1, end, &b)) return S3_RANGE_NONE;
        if (b < a) return S3_RANGE_NONE; /* invalid per RFC 7233: ignored */
    }
    if (a >= size) return S3_RANGE_UNSATISFIABLE;
    if (b >= size) b = size - 1;
    *start = a;
    *len = b - a + 1;
    return S3_RANGE_OK;
}

int s3_parse_copy_range(const char *h, int64_t size, int64_t *start, int64_t *len) {
    if (!h || strncmp(h, "bytes=", 6) != 0) return CAIRN_EINVAL;
    const char *spec = h + 6, *end = spec + strlen(spec);
    const char *dash = memchr(spec, '-', (size_t)(end - spec));
    int64_t a, b;
    if (!dash || !parse_num(spec, dash, &a) || !parse_num(dash + 1, end, &b) || b < a) return CAIRN_EINVAL;
    if (b >= size) return CAIRN_ETOOBIG;
    *start = a;
    *len = b - a + 1;
    return 0;
}

int s3_parse_max(const char *v, int def, int cap, int *out) {
    if (!v) {
        *out = def;
        return 0;
    }
    /* Digits only; long runs of them are simply "more than cap". */
    size_t n = strlen(v);
    if (n == 0 || strspn(v, "0123456789") != n) return CAIRN_EINVAL;
    int64_t x = cap;
    if (n <= 18) (void)parse_num(v, v + n, &x); /* digits only: cannot fail */
    if (x > cap) x = cap;
    *out = (int)x;
    return 0;
}

/* True when the comma-separated ETag list in header matches etag ("*" matches all). */
static bool etag_list_matches(const char *header, const char *etag) {
    const char *p = header;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && e[-1] == ' ') e--;
        if (e - s >= 2 && s[0] == 'W' && s[1] == '/') s += 2;
        if (e - s == 1 && *s == '*') return true;
        if (e - s >= 2 && *s == '"' && e[-1] == '"') { s++; e--; }
        if ((size_t)(e - s) == elen && memcmp(s, etag, elen) == 0) return true;
    }
    return false;
}

int s3_eval_conditionals(const char *if_match, const char *if_none_match,
                         const char *if_modified_since, const char *if_unmodified_since,
                         const char *etag, int64_t mtime_ms) {
    int64_t t, mtime_s = mtime_ms / 1000;
    /* RFC 7232 section 6 order; S3 follows it: a true If-Match overrides a false
     * If-Unmodified-Since, a false If-None-Match overrides If-Modified-Since. */
    if (if_match) {
        if (!etag_list_matches(if_match, etag)) return 412;
    } else if (if_unmodified_since && time_parse_http(if_unmodified_since, &t) == 0) {
        if (mtime_s > t / 1000) return 412;
    }
    if (if_none_match) {
        if (etag_list_matches(if_none_match, etag)) return 304;
    } else if (if_modified_since && time_parse_http(if_modified_since, &t) == 0) {
        if (mtime_s <= t / 1000) return 304;
    }
    return 0;
}

void s3_quote_etag(const char *etag, char *out, size_t n) { snprintf(out, n, "\"%s\"", etag); }

bool s3_base64_decode(const char *in, uint8_t *out, size_t cap, size_t *outlen) {
    size_t n = strlen(in);
    /* EVP_DecodeBlock writes three bytes for every four characters, padding
     * included, before we subtract the padding: the whole of that must fit. */
    if (n % 4 != 0 || (n / 4) * 3 > cap) return false;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0) return false;
    if (n >= 1 && in[n - 1] == '=') len--;
    if (n >= 2 && in[n - 2] == '=') len--;
    /* (n / 4) * 3 <= cap bounds what the decoder wrote; this bounds what the
     * caller is told, whatever the decoder makes of odd padding. */
    if (len < 0 || (size_t)len > cap) return false;
    *outlen = (size_t)len;
    return true;
}

void s3_base64_encode(const uint8_t *in, size_t n, char *out) {
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* ---- XML input ---------------------------------------------------------------- */

static void xml_quiet(void *ctx, const char *msg, ...) { (void)ctx, (void)msg; }

/* Parses a request body.  Only a document the parser read to its end counts:
 * libxml2 can hand back a partial tree after an error (an allocation failing
 * mid-parse leaves a CompleteMultipartUpload with fewer parts than were
 * sent), so anything not well-formed is refused.  CAIRN_ENOMEM when the
 * parser ran out of memory, CAIRN_EINVAL for bad XML. */
static int read_xml(const char *body, size_t len, size_t max, bool refuse_dtd, xmlDocPtr *out) {
    *out = NULL;
    if (len == 0 || len > max) return CAIRN_EINVAL;
    /* libxml2 prints some errors (allocation failures) despite NOERROR. */
    xmlSetGenericErrorFunc(NULL, xml_quiet);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) return CAIRN_ENOMEM;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, body, (int)len, "body.xml", NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    int rc = 0;
    if (!doc || !ctxt->wellFormed || ctxt->errNo != 0)
        rc = ctxt->errNo == XML_ERR_NO_MEMORY ? CAIRN_ENOMEM : CAIRN_EINVAL;
    xmlFreeParserCtxt(ctxt);
    /* S3's documents have no DTD; one could only declare entities, whose
     * expansion is a cost (and, external, a read) for nobody's benefit. */
    if (rc == 0 && refuse_dtd && (doc->intSubset || doc->extSubset)) rc = CAIRN_EINVAL;
    if (rc != 0) {
        xmlFreeDoc(doc);
        return rc;
    }
    *out = doc;
    return 0;
}

static int parse_xml(const char *body, size_t len, xmlDocPtr *out) {
    return read_xml(body, len, 8 * 1024 * 1024, false, out);
}

struct _xmlDoc *s3_xml_read(const char *body, size_t len, size_t max, const char *root, int *rc) {
    xmlDocPtr doc;
    *rc = read_xml(body, len, max, true, &doc);
    if (*rc != 0) return NULL;
    xmlNodePtr r = xmlDocGetRootElement(doc);
    if (!r || !s3_xml_is(r, root)) {
        xmlFreeDoc(doc);
        *rc = CAIRN_EINVAL;
        return NULL;
    }
    return doc;
}

bool s3_xml_is(struct _xmlNode *n, const char *name) {
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* Text content of an element; CAIRN_ENOMEM when libxml2 could not give it. */
static int xml_text_of(xmlNodePtr n, xmlChar **out) {
    *out = xmlNodeGetContent(n);
    return *out ? 0 : CAIRN_ENOMEM;
}

#define is_elem s3_xml_is

void s3_delete_req_free(s3_delete_req *d) {
    for (int i = 0; i < d->count; i++) {
        free(d->objects[i].key);
        free(d->objects[i].version_id);
    }
    free(d->objects);
    memset(d, 0, sizeof *d);
}

int s3_parse_delete_xml(const char *body, size_t len, s3_delete_req *out) {
    memset(out, 0, sizeof *out);
    xmlDocPtr doc;
    int rc = parse_xml(body, len, &doc);
    if (rc != 0) return rc;
    rc = CAIRN_EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root || !is_elem(root, "Delete")) goto done;
    int n = 0;
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (is_elem(c, "Object")) n++;
    if (n == 0 || n > 1000) goto done;
    out->objects = calloc((size_t)n, sizeof *out->objects);
    if (!out->objects) { rc = CAIRN_ENOMEM; goto done; }
    for (xmlNodePtr c = root->children; c; c = c->next) {
        if (is_elem(c, "Quiet")) {
            xmlChar *v;
            if ((rc = xml_text_of(c, &v)) != 0) goto bad;
            out->quiet = strcasecmp((const char *)v, "true") == 0;
            xmlFree(v);
            rc = CAIRN_EINVAL;
        } else if (is_elem(c, "Object")) {
            xmlChar *key = NULL;
            xmlNodePtr key_node = NULL, version_node = NULL;
            for (xmlNodePtr k = c->children; k; k = k->next) {
                if (is_elem(k, "Key") && !key_node) key_node = k;
                else if (is_elem(k, "VersionId") && !version_node) version_node = k;
            }
            if (!key_node) goto bad;
            if (version_node) {
                xmlChar *v;
                if ((rc = xml_text_of(version_node, &v)) != 0) goto bad;
                out->objects[out->count].version_id = strdup((const char *)v);
                xmlFree(v);
                rc = CAIRN_EINVAL;
                if (!out->objects[out->count].version_id) { rc = CAIRN_ENOMEM; goto bad; }
            }
            if ((rc = xml_text_of(key_node, &key)) != 0) goto bad;
            rc = CAIRN_EINVAL;
            size_t kl = strlen((const char *)key);
            out->objects[out->count].key = strdup((const char *)key);
            out->objects[out->count].key_len = kl;
            xmlFree(key);
            if (!out->objects[out->count].key) { rc = CAIRN_ENOMEM; goto bad; }
            out->count++;
        } else if (c->type == XML_ELEMENT_NODE) {
            goto bad;
        }
    }
    rc = 0;
    goto done;
bad:
    s3_delete_req_free(out);
done:
    xmlFreeDoc(doc);
    return rc;
}

#define MAX_PARTS 10000

/* One <Part>: both fields, a number in range, an ETag that fits: 0,
 * CAIRN_EINVAL or CAIRN_ENOMEM. */
static int parse_part(xmlNodePtr c, s3_complete_part *w) {
    bool have_num = false, have_etag = false;
    for (xmlNodePtr f = c->children; f; f = f->next) {
        if (f->type != XML_ELEMENT_NODE) continue;
        xmlChar *v;
        if (xml_text_of(f, &v) != 0) return CAIRN_ENOMEM;
        const char *t = (const char *)v;
        if (is_elem(f, "PartNumber")) {
            int64_t num;
            if (parse_num(t, t + strlen(t), &num) && num >= 1 && num <= MAX_PARTS) {
                w->number = (int)num;
                have_num = true;
            }
        } else if (is_elem(f, "ETag")) {
            /* Clients send it quoted (sometimes escaped); compare unquoted. */
            const char *s = t;
            size_t l = strlen(s);
            if (l >= 2 && s[0] == '"' && s[l - 1] == '"') { s++; l -= 2; }
            if (l < sizeof w->etag) { memcpy(w->etag, s, l); w->etag[l] = '\0'; have_etag = true; }
        } else {
            static const char *const sums[] = {"crc32", "crc32c", "sha1", "sha256", "crc64nvme"};
            const char *name = (const char *)f->name;
            for (size_t i = 0; i < sizeof sums / sizeof sums[0]; i++) {
                if (strncmp(name, "Checksum", 8) != 0 || strcasecmp(name + 8, sums[i]) != 0) continue;
                size_t l = strlen(t), al = strlen(sums[i]);
                if (al + 1 + l < sizeof w->checksum) snprintf(w->checksum, sizeof w->checksum, "%s:%s", sums[i], t);
                else snprintf(w->checksum, sizeof w->checksum, "%s:?", sums[i]);
            }
        }
        xmlFree(v);
    }
    return have_num && have_etag ? 0 : CAIRN_EINVAL;
}

int s3_parse_complete_xml(const char *body, size_t len, s3_complete_part **out) {
    *out = NULL;
    xmlDocPtr doc;
    int n = parse_xml(body, len, &doc);
    if (n != 0) return n;
    n = CAIRN_EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root && is_elem(root, "CompleteMultipartUpload")) {
        int count = 0;
        for (xmlNodePtr c = root->children; c; c = c->next)
            if (is_elem(c, "Part")) count++;
        s3_complete_part *parts = NULL;
        if (count > 0 && count <= MAX_PARTS) {
            parts = calloc((size_t)count, sizeof *parts);
            if (!parts) n = CAIRN_ENOMEM;
        }
        if (parts) {
            n = 0;
            for (xmlNodePtr c = root->children; c && n >= 0; c = c->next) {
                if (!is_elem(c, "Part")) continue;
                int prc = parse_part(c, &parts[n]);
                n = prc == 0 ? n + 1 : prc;
            }
            assert(n != 0);
            if (n > 0) *out = parts;
            else free(parts);
        }
    }
    xmlFreeDoc(doc);
    return n;
}

int s3_parse_create_bucket_xml(const char *body, size_t len, char *location, size_t loclen) {
    location[0] = '\0';
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i])) i++;
    if (i == len) return 0;
    xmlDocPtr doc;
    int rc = parse_xml(body, len, &doc);
    if (rc != 0) return rc;
    rc = CAIRN_EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root && is_elem(root, "CreateBucketConfiguration")) {
        rc = 0;
        for (xmlNodePtr c = root->children; c; c = c->next) {
            if (!is_elem(c, "LocationConstraint")) continue;
            xmlChar *v;
            if ((rc = xml_text_of(c, &v)) != 0) break;
            snprintf(location, loclen, "%s", (const char *)v);
            xmlFree(v);
        }
    }
    xmlFreeDoc(doc);
    return rc;
}

/* ---- bucket notification configurations ---------------------------------------------- */

/* The text of n's only child element called name, or NULL (not found, or
 * there are two: *dup set). */
static xmlNodePtr only_child(xmlNodePtr n, const char *name, bool *dup) {
    xmlNodePtr found = NULL;
    for (xmlNodePtr c = n->children; c; c = c->next)
        if (is_elem(c, name)) {
            if (found) *dup = true;
            found = c;
        }
    return found;
}

/* Copies n's text into dst (cap bytes); false when it does not fit. */
static bool copy_text(xmlNodePtr n, char *dst, size_t cap, int *rc) {
    xmlChar *v;
    if ((*rc = xml_text_of(n, &v)) != 0) return false;
    size_t l = strlen((const char *)v);
    bool ok = l < cap;
    if (ok) memcpy(dst, v, l + 1);
    xmlFree(v);
    return ok;
}

/* arn:cairn:sqs:[REGION]:NAME:webhook -> NAME. */
static bool target_of_arn(const char *arn, char *name, size_t cap) {
    const char *p = arn;
    static const char *const head[] = {"arn", "cairn", "sqs"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(head[i]);
        if (strncmp(p, head[i], l) != 0 || p[l] != ':') return false;
        p += l + 1;
    }
    p = strchr(p, ':');         /* the region: any, or none */
    if (!p) return false;
    p++;
    const char *end = strchr(p, ':');
    if (!end || end == p || (size_t)(end - p) >= cap || strcmp(end + 1, "webhook") != 0) return false;
    for (const char *c = p; c < end; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') return false;
    memcpy(name, p, (size_t)(end - p));
    name[end - p] = '\0';
    return true;
}

static int parse_rule(xmlNodePtr qc, s3_notify_rule *r, const char **why, bool *inval) {
    bool dup = false;
    int rc = 0;
    xmlNodePtr id = only_child(qc, "Id", &dup), queue = only_child(qc, "Queue", &dup);
    if (dup) { *why = "A QueueConfiguration has one Id and one Queue."; return CAIRN_EINVAL; }
    if (id && !copy_text(id, r->id, sizeof r->id, &rc)) {
        *why = "The notification configuration Id is too long.";
        return rc ? rc : CAIRN_EINVAL;
    }
    char arn[256];
    if (!queue || !copy_text(queue, arn, sizeof arn, &rc) || !target_of_arn(arn, r->target, sizeof r->target)) {
        if (rc) return rc;
        *inval = true;
        *why = "Unable to validate the following destination configurations: Queue must be arn:cairn:sqs::NAME:webhook.";
        return CAIRN_EINVAL;
    }
    for (xmlNodePtr c = qc->children; c; c = c->next) {
        if (is_elem(c, "Event")) {
            if (r->nevents == 16) { *inval = true; *why = "Too many Event elements."; return CAIRN_EINVAL; }
            char ev[48];
            events_filter f = {0};
            const char *ewhy;
            if (!copy_text(c, ev, sizeof ev, &rc) || events_filter_parse_types(&f, ev, &ewhy) != 0 || f.npatterns != 1) {
                if (rc) return rc;
                *inval = true;
                *why = "The event is not valid.";
                return CAIRN_EINVAL;
            }
            snprintf(r->events[r->nevents++], sizeof r->events[0], "%s", ev);
        } else if (is_elem(c, "Filter")) {
            bool d2 = false;
            xmlNodePtr key = only_child(c, "S3Key", &d2);
            if (d2) { *why = "A Filter has one S3Key."; return CAIRN_EINVAL; }
            bool have_prefix = false, have_suffix = false;
            for (xmlNodePtr fr = key ? key->children : NULL; fr; fr = fr->next) {
                if (!is_elem(fr, "FilterRule")) continue;
                bool d3 = false;
                xmlNodePtr name = only_child(fr, "Name", &d3), value = only_child(fr, "Value", &d3);
                char nm[16];
                if (d3 || !name || !value || !copy_text(name, nm, sizeof nm, &rc)) {
                    if (rc) return rc;
                    *inval = true;
                    *why = "A FilterRule has one Name (prefix or suffix) and one Value.";
                    return CAIRN_EINVAL;
                }
                bool prefix = !strcasecmp(nm, "prefix"), suffix = !strcasecmp(nm, "suffix");
                if ((!prefix && !suffix) || (prefix && have_prefix) || (suffix && have_suffix)) {
                    *inval = true;
                    *why = prefix || suffix ? "Cannot specify more than one prefix or suffix rule in a filter."
                                            : "FilterRule names are prefix or suffix.";
                    return CAIRN_EINVAL;
                }
                if (!copy_text(value, prefix ? r->prefix : r->suffix, sizeof r->prefix, &rc)) {
                    if (rc) return rc;
                    *inval = true;
                    *why = "A FilterRule value is longer than a key.";
                    return CAIRN_EINVAL;
                }
                have_prefix |= prefix;
                have_suffix |= suffix;
            }
        } else if (c->type == XML_ELEMENT_NODE && !is_elem(c, "Id") && !is_elem(c, "Queue")) {
            *why = "Unknown element in a QueueConfiguration.";
            return CAIRN_EINVAL;
        }
    }
    if (r->nevents == 0) { *inval = true; *why = "A QueueConfiguration needs at least one Event."; return CAIRN_EINVAL; }
    if (!r->id[0]) {
        char rnd[17];
        rand_hex_id(rnd, 8);
        snprintf(r->id, sizeof r->id, "notify-%s", rnd);
    }
    return 0;
}

int s3_parse_notification_xml(const char *body, size_t len, s3_notify_rule **rules, int *n, const char **why,
                              bool *invalid_argument) {
    *rules = NULL;
    *n = 0;
    *invalid_argument = false;
    *why = "The XML you provided was not well-formed or did not validate against our published schema.";
    xmlDocPtr doc;
    int rc = parse_xml(body, len, &doc);
    if (rc != 0) return rc;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    s3_notify_rule *out = NULL;
    int count = 0;
    rc = CAIRN_EINVAL;
    if (!root || !is_elem(root, "NotificationConfiguration")) goto done;
    for (xmlNodePtr c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (is_elem(c, "TopicConfiguration") || is_elem(c, "CloudFunctionConfiguration") ||
            is_elem(c, "EventBridgeConfiguration")) {
            *invalid_argument = true;
            *why = "Unable to validate the following destination configurations: only QueueConfiguration "
                   "(arn:cairn:sqs::NAME:webhook) is served.";
            goto done;
        }
        if (!is_elem(c, "QueueConfiguration")) goto done;
        if (count == S3_NOTIFY_MAX_RULES) {
            *invalid_argument = true;
            *why = "Too many notification configurations (at most 100).";
            goto done;
        }
        s3_notify_rule *grown = realloc(out, (size_t)(count + 1) * sizeof *out);
        if (!grown) { rc = CAIRN_ENOMEM; goto done; }
        out = grown;
        memset(&out[count], 0, sizeof *out);
        if ((rc = parse_rule(c, &out[count], why, invalid_argument)) != 0) goto done;
        rc = CAIRN_EINVAL;
        for (int i = 0; i < count; i++)
            if (!strcmp(out[i].id, out[count].id)) {
                *invalid_argument = true;
                *why = "Two notification configurations have the same Id.";
                goto done;
            }
        count++;
    }
    rc = 0;
done:
    xmlFreeDoc(doc);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *rules = out;
    *n = count;
    return 0;
}

int s3_notify_rules_to_json(const s3_notify_rule *rules, int n, buf_t *out) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        const s3_notify_rule *r = &rules[i];
        json_t *ev = json_array();
        for (int k = 0; ev && k < r->nevents; k++) json_array_append_new(ev, json_string(r->events[k]));
        json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:s}", "id", r->id, "target", r->target, "events", ev,
                              "prefix", r->prefix, "suffix", r->suffix);
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!text) return CAIRN_ENOMEM;
    buf_puts(out, text);
    free(text);
    return out->oom ? CAIRN_ENOMEM : 0;
}

/* Copies a JSON string member into dst; false when absent, not a string or too long. */
static bool json_str_into(json_t *o, const char *name, char *dst, size_t cap) {
    const char *v = json_string_value(json_object_get(o, name));
    if (!v || strlen(v) >= cap) return false;
    memcpy(dst, v, strlen(v) + 1);
    return true;
}

int s3_notify_rules_from_json(const char *text, s3_notify_rule **rules, int *n) {
    *rules = NULL;
    *n = 0;
    json_t *a = json_loads(text, 0, NULL);
    if (!json_is_array(a) || json_array_size(a) > S3_NOTIFY_MAX_RULES) {
        json_decref(a);
        return CAIRN_EINVAL;
    }
    size_t count = json_array_size(a);
    s3_notify_rule *out = count ? calloc(count, sizeof *out) : NULL;
    int rc = count && !out ? CAIRN_ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        json_t *o = json_array_get(a, i), *ev = json_object_get(o, "events");
        s3_notify_rule *r = &out[i];
        if (!json_str_into(o, "id", r->id, sizeof r->id) || !json_str_into(o, "target", r->target, sizeof r->target) ||
            !json_str_into(o, "prefix", r->prefix, sizeof r->prefix) ||
            !json_str_into(o, "suffix", r->suffix, sizeof r->suffix) || !json_is_array(ev) || json_array_size(ev) > 16) {
            rc = CAIRN_EINVAL;
            break;
        }
        for (size_t k = 0; rc == 0 && k < json_array_size(ev); k++) {
            const char *v = json_string_value(json_array_get(ev, k));
            if (!v || strlen(v) >= sizeof r->events[0]) rc = CAIRN_EINVAL;
            else snprintf(r->events[r->nevents++], sizeof r->events[0], "%s", v);
        }
    }
    json_decref(a);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *rules = out;
    *n = (int)count;
    return 0;
}

bool s3_notify_rule_match(const s3_notify_rule *r, const char *event, const char *key, size_t key_len) {
    size_t pl = strlen(r->prefix), sl = strlen(r->suffix);
    if (key_len < pl || memcmp(key, r->prefix, pl) != 0) return false;
    if (key_len < sl || memcmp(key + key_len - sl, r->suffix, sl) != 0) return false;
    for (int i = 0; i < r->nevents; i++) {
        const char *p = r->events[i];
        size_t l = strlen(p);
        if (l && p[l - 1] == '*' ? strncmp(event, p, l - 1) == 0 : strcmp(event, p) == 0) return true;
    }
    return false;
}

/* ---- ownership controls ------------------------------------------------------------ */

bool s3_object_ownership_valid(const char *v) {
    return v && (!strcmp(v, "BucketOwnerEnforced") || !strcmp(v, "BucketOwnerPreferred") || !strcmp(v, "ObjectWriter"));
}

int s3_parse_ownership_xml(const char *body, size_t len, char *out, size_t outlen) {
    assert(outlen >= 32);
    out[0] = '\0';
    xmlDocPtr doc;
    int rc = parse_xml(body, len, &doc);
    if (rc != 0) return rc;
    rc = CAIRN_EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    bool dup = false;
    xmlNodePtr rule = root && is_elem(root, "OwnershipControls") ? only_child(root, "Rule", &dup) : NULL;
    xmlNodePtr oo = rule && !dup ? only_child(rule, "ObjectOwnership", &dup) : NULL;
    /* Anything else in the document is not the schema's. */
    for (xmlNodePtr c = root ? root->children : NULL; oo && c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && c != rule) oo = NULL;
    for (xmlNodePtr c = rule ? rule->children : NULL; oo && c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && c != oo) oo = NULL;
    if (oo && !dup) {
        char v[32];
        if (copy_text(oo, v, sizeof v, &rc) && s3_object_ownership_valid(v)) {
            snprintf(out, outlen, "%s", v);
            rc = 0;
        } else if (rc == 0) {
            rc = CAIRN_EINVAL;
        }
    }
    xmlFreeDoc(doc);
    return rc;
}

/* ---- header values: UTF-8, RFC 2047 ----------------------------------------------------- */

/* Appends ISO-8859-1 bytes as UTF-8. */
static size_t latin1_to_utf8(const unsigned char *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] < 0x80) {
            out[o++] = (char)in[i];
        } else {
            out[o++] = (char)(0xC0 | (in[i] >> 6));
            out[o++] = (char)(0x80 | (in[i] & 0x3F));
        }
    }
    return o;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* One encoded word at p (=?charset?enc?text?=), decoded into out as UTF-8:
 * its length, the word's end in *end; -1 when p is not one we decode. */
static long decode_word(const char *p, const char *lim, char *out, const char **end) {
    if (lim - p < 8 || p[0] != '=' || p[1] != '?') return -1;
    const char *cs = p + 2, *q1 = memchr(cs, '?', (size_t)(lim - cs));
    if (!q1 || lim - q1 < 4 || q1[2] != '?') return -1;
    char enc = q1[1];
    const char *text = q1 + 3, *tend = NULL;
    for (const char *t = text; t + 1 < lim; t++)
        if (t[0] == '?' && t[1] == '=') { tend = t; break; }
    if (!tend) return -1;
    size_t csl = (size_t)(q1 - cs);
    bool utf8 = (csl == 5 && !strncasecmp(cs, "UTF-8", 5)) || (csl == 4 && !strncasecmp(cs, "UTF8", 4));
    bool latin1 = (csl == 10 && !strncasecmp(cs, "ISO-8859-1", 10)) || (csl == 8 && !strncasecmp(cs, "US-ASCII", 8));
    if (!utf8 && !latin1) return -1;
    size_t tl = (size_t)(tend - text);
    unsigned char *raw = malloc(tl + 3);
    if (!raw) return -1;
    size_t rl = 0;
    bool ok = true;
    if (enc == 'B' || enc == 'b') {
        char *b64 = malloc(tl + 1);
        ok = b64 != NULL;
        if (ok) {
            memcpy(b64, text, tl);
            b64[tl] = '\0';
            ok = tl > 0 && s3_base64_decode(b64, raw, tl + 3, &rl);
            free(b64);
        }
    } else if (enc == 'Q' || enc == 'q') {
        for (size_t i = 0; ok && i < tl; i++) {
            char c = text[i];
            if (c == '_') {
                raw[rl++] = ' ';
            } else if (c == '=') {
                int h = i + 2 < tl ? hexval(text[i + 1]) : -1, l = i + 2 < tl ? hexval(text[i + 2]) : -1;
                ok = h >= 0 && l >= 0;
                if (ok) raw[rl++] = (unsigned char)(h * 16 + l);
                i += 2;
            } else {
                ok = (unsigned char)c > 0x20 && (unsigned char)c < 0x7f;
                raw[rl++] = (unsigned char)c;
            }
        }
    } else {
        ok = false;
    }
    if (ok) ok = !memchr(raw, '\0', rl) && (latin1 || s3_utf8_valid((const char *)raw, rl));
    long o = -1;
    if (ok) {
        /* UTF-8 words only shrink; ISO-8859-1 ones at most double, and
         * their text (at least as long as what it holds) leaves room. */
        o = latin1 ? (long)latin1_to_utf8(raw, rl, out) : (memcpy(out, raw, rl), (long)rl);
        *end = tend + 2;
    }
    free(raw);
    return o;
}

size_t s3_header_value_decode(const char *in, size_t n, bool rfc2047, char *out) {
    if (rfc2047 && n >= 8 && in[0] == '=' && in[1] == '?') {
        /* Only a value made wholly of encoded words; the whitespace between
         * two words is dropped (RFC 2047 section 6.2). */
        const char *p = in, *lim = in + n, *end = NULL;
        size_t o = 0;
        bool ok = true;
        while (ok && p < lim) {
            long k = decode_word(p, lim, out + o, &end);
            if (k < 0) { ok = false; break; }
            o += (size_t)k;
            p = end;
            while (p < lim && (*p == ' ' || *p == '\t')) p++;
        }
        if (ok) {
            out[o] = '\0';
            return o;
        }
    }
    size_t o;
    if (s3_utf8_valid(in, n)) {
        memcpy(out, in, n);
        o = n;
    } else {
        o = latin1_to_utf8((const unsigned char *)in, n, out);
    }
    out[o] = '\0';
    return o;
}

void s3_meta_value_encode(buf_t *b, const char *v, size_t n) {
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++)
        plain = v[i] == '\t' || ((unsigned char)v[i] >= 0x20 && (unsigned char)v[i] < 0x7f);
    if (plain) {
        buf_append(b, v, n);
        return;
    }
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    if (!b64) {
        b->oom = true;
        return;
    }
    s3_base64_encode((const uint8_t *)v, n, b64);
    buf_puts(b, "=?UTF-8?B?");
    buf_puts(b, b64);
    buf_puts(b, "?=");
    free(b64);
}

int s3_parse_versioning_xml(const char *body, size_t len, int *status, bool *mfa_delete, bool *illegal) {
    *status = 0;
    *mfa_delete = false;
    *illegal = false;
    xmlDocPtr doc;
    int rc = parse_xml(body, len, &doc);
    if (rc != 0) return rc;
    rc = CAIRN_EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root || !is_elem(root, "VersioningConfiguration")) goto done;
    for (xmlNodePtr c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        bool is_status = is_elem(c, "Status"), is_mfa = is_elem(c, "MfaDelete");
        if (!is_status && !is_mfa) goto done;
        xmlChar *v;
        if ((rc = xml_text_of(c, &v)) != 0) goto done;
        rc = CAIRN_EINVAL;
        const char *t = (const char *)v;
        if (is_status && !strcmp(t, "Enabled")) *status = 1;
        else if (is_status && !strcmp(t, "Suspended")) *status = 2;
        else if (is_mfa && !strcmp(t, "Enabled")) *mfa_delete = true;
        else if (!(is_mfa && !strcmp(t, "Disabled"))) *illegal = true;
        xmlFree(v);
        if (*illegal) goto done;
    }
    rc = 0;
done:
    xmlFreeDoc(doc);
    return rc;
}
