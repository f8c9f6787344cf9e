/*
 * tagging.c — S3 tags: PutObjectTagging, GetObjectTagging and
 * DeleteObjectTagging (?tagging on an object, any version of it), the
 * x-amz-tagging header of PutObject, CreateMultipartUpload and CopyObject,
 * and Put/Get/DeleteBucketTagging (?tagging on a bucket).
 *
 * An object's tags belong to one version: they live in that version's
 * stored headers (headers_json) as one JSON object under the reserved member
 * S3_TAGS_MEMBER, written with the version by the calls that make it and
 * changed afterwards by meta_object_set_headers_if on that version alone, so
 * tagging the current version never touches an older one.  GET and HEAD
 * never send the member as a header; they say x-amz-tagging-count instead.
 *
 * A bucket's tags are a bucket configuration (meta_bucket_config, kind
 * "tagging") kept as the very document GetBucketTagging answers, so one
 * parser (s3_tagging_parse_xml, fuzzed with the header's) reads both what a
 * client sends and what the database holds.
 *
 * Validation is S3's: at most 10 tags on an object, 50 on a bucket; keys of
 * 1..128 and values of 0..256 Unicode characters (counted as code points,
 * not bytes), letters, digits, spaces and + - = . _ : / @; no key twice;
 * no key beginning with "aws:" (in any case).  Letters, digits and spaces
 * beyond ASCII are judged by the C library's C.UTF-8 character classes.
 */
#include "s3/internal.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#define PARSE_MAX (1024 * 1024)
#define KEY_MAX_CHARS 128
#define VALUE_MAX_CHARS 256

static const char *const malformed_msg =
    "The XML you provided was not well-formed or did not validate against our published schema";
static const char *const header_msg = "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query "
                                      "parameters without tag name duplicates.";

/* ---- the set ------------------------------------------------------------------------------------ */

void s3_tagset_free(s3_tagset *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) {
        free(t->tags[i].key);
        free(t->tags[i].value);
    }
    free(t->tags);
    t->tags = NULL;
    t->n = 0;
}

/* Appends (key, value), taking both (freed on failure). */
static int tagset_add(s3_tagset *t, char *key, char *value) {
    s3_tag *grown = key && value ? realloc(t->tags, (size_t)(t->n + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(key);
        free(value);
        return CAIRN_ENOMEM;
    }
    grown[t->n++] = (s3_tag){key, value};
    t->tags = grown;
    return 0;
}

/* ---- validation ---------------------------------------------------------------------------------- */

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_locale_init(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

/* Decodes one code point of well-formed UTF-8 at s (n > 0 bytes left):
 * its length, or 0 when malformed. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n || !s3_utf8_valid((const char *)s, len)) return 0;
    uint32_t c = s[0] & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) c = c << 6 | (s[i] & 0x3f);
    *cp = c;
    return len;
}

static bool allowed_char(uint32_t c) {
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' ||
               strchr("+-=._:/@", (int)c) != NULL;
    pthread_once(&utf8_once, utf8_locale_init);
    /* Without the locale (never on Debian) letters beyond ASCII cannot be
     * told apart: every printable one is taken rather than refused. */
    if (!utf8_locale) return c >= 0xa0;
    return iswalnum_l((wint_t)c, utf8_locale) || iswspace_l((wint_t)c, utf8_locale) || c == 0xa0;
}

/* Whether s is 1.. (or 0..) max_chars allowed characters. */
static bool text_valid(const char *s, size_t min_chars, size_t max_chars) {
    size_t n = strlen(s), chars = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t l = utf8_next(p + i, n - i, &c);
        if (l == 0 || !allowed_char(c)) return false;
        i += l;
        if (++chars > max_chars) return false;
    }
    return chars >= min_chars;
}

/* The limits of a set that parsed, in S3's order: the count, then each tag,
 * then repeated keys.  header: repeated keys are the header's
 * InvalidArgument. */
static int validate(const s3_tagset *t, int max_tags, bool header, const char **code, const char **why) {
    *code = "InvalidTag";
    if (t->n > max_tags) {
        *why = max_tags == S3_TAGS_BUCKET_MAX ? "Bucket tag count cannot be greater than 50"
                                              : "Object tags cannot be greater than 10";
        return CAIRN_EINVAL;
    }
    for (int i = 0; i < t->n; i++) {
        if (!strncasecmp(t->tags[i].key, "aws:", 4)) {
            *why = max_tags == S3_TAGS_BUCKET_MAX ? "System tags cannot be added/updated by requester"
                                                  : "Your TagKey cannot be prefixed with aws:";
            return CAIRN_EINVAL;
        }
        if (!text_valid(t->tags[i].key, 1, KEY_MAX_CHARS)) {
            *why = "The TagKey you have provided is invalid";
            return CAIRN_EINVAL;
        }
        if (!text_valid(t->tags[i].value, 0, VALUE_MAX_CHARS)) {
            *why = "The TagValue you have provided is invalid";
            return CAIRN_EINVAL;
        }
    }
    /* n <= 50: quadratic is cheaper than anything cleverer */
    for (int i = 0; i < t->n; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(t->tags[i].key, t->tags[k].key)) {
                if (header) {
                    *code = "InvalidArgument";
                    *why = header_msg;
                } else {
                    *why = "Cannot provide multiple Tags with the same key";
                }
                return CAIRN_EINVAL;
            }
    return 0;
}

/* ---- the XML document ------------------------------------------------------------------------------ */

#define is_elem s3_xml_is

/* The only element child of n named name, or NULL when there is none, or
 * more than one, or any other element (*ok false then). */
static xmlNodePtr only_child(xmlNodePtr n, const char *name, bool *ok) {
    xmlNodePtr found = NULL;
    for (xmlNodePtr c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!is_elem(c, name) || found) {
            *ok = false;
            return NULL;
        }
        found = c;
    }
    if (!found) *ok = false;
    return found;
}

/* An element's text, malloc'd; NULL: out of memory. */
static char *text_of(xmlNodePtr n) {
    xmlChar *t = xmlNodeGetContent(n);
    char *s = strdup(t ? (const char *)t : "");
    xmlFree(t);
    return s;
}

/* One <Tag>: exactly one Key and one Value, nothing else. */
static int parse_tag(xmlNodePtr tag, s3_tagset *out) {
    xmlNodePtr key = NULL, value = NULL;
    for (xmlNodePtr c = tag->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (is_elem(c, "Key") && !key) key = c;
        else if (is_elem(c, "Value") && !value) value = c;
        else return CAIRN_EINVAL;
    }
    if (!key || !value) return CAIRN_EINVAL;
    return tagset_add(out, text_of(key), text_of(value));
}

int s3_tagging_parse_xml(const char *body, size_t len, int max_tags, s3_tagset *out, const char **code,
                         const char **why) {
    memset(out, 0, sizeof *out);
    *code = "MalformedXML";
    *why = malformed_msg;
    int rc;
    xmlDocPtr doc = s3_xml_read(body, len, PARSE_MAX, "Tagging", &rc);
    if (!doc) return rc;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    bool ok = true;
    xmlNodePtr set = rc == 0 ? only_child(root, "TagSet", &ok) : NULL;
    if (rc == 0 && !ok) rc = CAIRN_EINVAL;
    for (xmlNodePtr c = set ? set->children : NULL; rc == 0 && c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        /* A set far past any limit is refused before it is all copied. */
        if (!is_elem(c, "Tag") || out->n > S3_TAGS_BUCKET_MAX) rc = CAIRN_EINVAL;
        else rc = parse_tag(c, out);
    }
    xmlFreeDoc(doc);
    if (rc == CAIRN_EINVAL && out->n > S3_TAGS_BUCKET_MAX) {
        *code = "InvalidTag";
        *why = max_tags == S3_TAGS_BUCKET_MAX ? "Bucket tag count cannot be greater than 50"
                                              : "Object tags cannot be greater than 10";
    }
    if (rc == 0) rc = validate(out, max_tags, false, code, why);
    if (rc != 0) s3_tagset_free(out);
    return rc;
}

static void elem(buf_t *b, const char *name, const char *value) {
    buf_printf(b, "<%s>", name);
    buf_xml_escape(b, value, strlen(value));
    buf_printf(b, "</%s>", name);
}

void s3_tagging_render(const s3_tagset *t, buf_t *out) {
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>");
    for (int i = 0; i < t->n; i++) {
        buf_puts(out, "<Tag>");
        elem(out, "Key", t->tags[i].key);
        elem(out, "Value", t->tags[i].value);
        buf_puts(out, "</Tag>");
    }
    buf_puts(out, "</TagSet></Tagging>");
}

/* ---- the header ------------------------------------------------------------------------------------ */

/* Decodes one URL-query component ('+' a space): malloc'd, or NULL with
 * *rc (CAIRN_EINVAL: a bad escape, a NUL, not UTF-8). */
static char *decode_component(const char *s, size_t n, int *rc) {
    char *plus = malloc(n + 1), *out = malloc(n + 1);
    *rc = plus && out ? 0 : CAIRN_ENOMEM;
    if (*rc == 0) {
        for (size_t i = 0; i < n; i++) plus[i] = s[i] == '+' ? ' ' : s[i];
        long l = url_decode(plus, n, out);
        if (l < 0 || memchr(out, '\0', (size_t)l) || !s3_utf8_valid(out, (size_t)l)) *rc = CAIRN_EINVAL;
    }
    free(plus);
    if (*rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

int s3_tagging_parse_header(const char *value, size_t len, s3_tagset *out, const char **code, const char **why) {
    memset(out, 0, sizeof *out);
    *code = "InvalidArgument";
    *why = header_msg;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const char *seg = value + i;
        const char *amp = memchr(seg, '&', len - i);
        size_t sl = amp ? (size_t)(amp - seg) : len - i;
        i += sl + 1;
        if (sl == 0) continue;   /* "a=1&&b=2": nothing between */
        if (out->n > S3_TAGS_BUCKET_MAX) {
            /* far past the limit: refused without decoding the rest */
            *code = "InvalidTag";
            *why = "Object tags cannot be greater than 10";
            rc = CAIRN_EINVAL;
            break;
        }
        const char *eq = memchr(seg, '=', sl);
        size_t kl = eq ? (size_t)(eq - seg) : sl;
        if (kl == 0) {
            rc = CAIRN_EINVAL;
            break;
        }
        int krc = 0, vrc = 0;
        char *k = decode_component(seg, kl, &krc);
        char *v = eq ? decode_component(eq + 1, sl - kl - 1, &vrc) : strdup("");
        if (krc || vrc || !v || !k) {
            rc = krc == CAIRN_ENOMEM || vrc == CAIRN_ENOMEM || (!v && !vrc) ? CAIRN_ENOMEM : CAIRN_EINVAL;
            free(k);
            free(v);
            break;
        }
        rc = tagset_add(out, k, v);
    }
    if (rc == 0) rc = validate(out, S3_TAGS_OBJECT_MAX, true, code, why);
    if (rc != 0) s3_tagset_free(out);
    return rc;
}

/* ---- the stored form ------------------------------------------------------------------------------- */

void s3_tagset_json(const s3_tagset *t, buf_t *out) {
    buf_putc(out, '{');
    for (int i = 0; i < t->n; i++) {
        buf_puts(out, i ? ",\"" : "\"");
        buf_json_escape(out, t->tags[i].key, strlen(t->tags[i].key));
        buf_puts(out, "\":\"");
        buf_json_escape(out, t->tags[i].value, strlen(t->tags[i].value));
        buf_putc(out, '"');
    }
    buf_putc(out, '}');
}

int s3_tagset_from_headers(const char *headers_json, s3_tagset *out) {
    memset(out, 0, sizeof *out);
    if (!headers_json) return 0;
    json_error_t err;
    json_t *h = json_loads(headers_json, 0, &err);
    if (!json_is_object(h)) {
        json_decref(h);
        return CAIRN_EINVAL;
    }
    json_t *tags = json_object_get(h, S3_TAGS_MEMBER);
    const char *k;
    json_t *v;
    int rc = 0;
    /* jansson keeps a JSON object's members in the order they came in:
     * the order the client gave. */
    if (json_is_object(tags))
        json_object_foreach(tags, k, v) {
            if (!json_is_string(v)) continue;
            if ((rc = tagset_add(out, strdup(k), strdup(json_string_value(v)))) != 0) break;
        }
    json_decref(h);
    if (rc != 0) s3_tagset_free(out);
    return rc;
}

int s3_tag_count(const char *headers_json) {
    if (!headers_json || !strstr(headers_json, "\"" S3_TAGS_MEMBER "\"")) return 0;
    json_error_t err;
    json_t *h = json_loads(headers_json, 0, &err);
    json_t *tags = json_object_get(h, S3_TAGS_MEMBER);
    int n = json_is_object(tags) ? (int)json_object_size(tags) : 0;
    json_decref(h);
    return n;
}

int s3_headers_set_tags(const char *headers_json, const s3_tagset *tags, char **out) {
    *out = NULL;
    json_error_t err;
    json_t *h = json_loads(headers_json ? headers_json : "{}", 0, &err);
    if (!json_is_object(h)) {
        json_decref(h);
        return CAIRN_EINVAL;
    }
    int rc = 0;
    json_object_del(h, S3_TAGS_MEMBER);
    if (tags && tags->n > 0) {
        json_t *t = json_object();
        for (int i = 0; t && i < tags->n; i++)
            if (json_object_set_new(t, tags->tags[i].key, json_string(tags->tags[i].value)) != 0) rc = CAIRN_ENOMEM;
        if (!t || json_object_set_new(h, S3_TAGS_MEMBER, t) != 0) rc = CAIRN_ENOMEM;
    }
    if (rc == 0 && !(*out = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER))) rc = CAIRN_ENOMEM;
    json_decref(h);
    return rc;
}

/* ---- the request's header ------------------------------------------------------------------------- */

int s3_tagging_header(s3_req *q, s3_tagset *tags) {
    memset(tags, 0, sizeof *tags);
    const char *h = http_header(q->http, "x-amz-tagging");
    if (!h) return 0;
    const char *code, *why;
    int rc = s3_tagging_parse_header(h, strlen(h), tags, &code, &why);
    if (rc == CAIRN_ENOMEM) s3_error_nomem(q);
    else if (rc != 0) s3_error(q, code, why);
    return rc != 0 ? -1 : 0;
}

char *s3_headers_json_tagged(s3_req *q, const char *headers_json, const s3_tagset *tags) {
    char *json = NULL;
    int rc = s3_headers_set_tags(headers_json, tags, &json);
    char *copy = rc == 0 ? arena_strndup(q->http->arena, json, strlen(json)) : NULL;
    free(json);
    if (rc == CAIRN_EINVAL) s3_error(q, "InternalError", "the version's stored headers do not read back");
    else if (!copy) s3_error_nomem(q);
    return copy;
}

/* ---- Put/Get/DeleteObjectTagging --------------------------------------------------------------------- */

static void version_header(s3_req *q, const char *version, const meta_object *o) {
    if (version || q->bk.versioning != META_VERSIONING_OFF)
        http_add_header(q->http, "x-amz-version-id", s3_version_id(o));
}

/* Sets the named version's tags (tags NULL: removes them) and answers
 * status.  A version replaced between the read and the write (the null
 * version overwritten, the key deleted) is read again, a few times. */
static void change_tags(s3_req *q, const s3_tagset *tags, unsigned status) {
    const char *version = s3_param_get(q, "versionId");
    for (int attempt = 0; attempt < 4; attempt++) {
        meta_object o;
        if (s3_named_version(q, &o) != 0) return;
        char *json = s3_headers_json_tagged(q, o.headers_json, tags);
        /* Only over the headers it read: a retention or legal hold changed
         * meanwhile is never put back as it was (read again instead). */
        int rc = json ? meta_object_set_headers_if(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len,
                                                   o.version_id, o.headers_json ? o.headers_json : "{}", json)
                      : 0;
        if (json && rc == 0) {
            version_header(q, version, &o);
            s3_committed(q, q->key, q->key_len);
            http_respond(q->http, status, "", 0);
        }
        meta_object_clear(&o);
        if (!json || rc == 0) return;
        if (rc != CAIRN_ENOTFOUND) {
            s3_meta_error(q, rc, "InternalError", "storing the tags failed");
            return;
        }
    }
    s3_error(q, version ? "NoSuchVersion" : "NoSuchKey", NULL);
}

void s3_put_object_tagging(s3_req *q) {
    if (http_header(q->http, "content-md5") && s3_check_body_digest(q) != 0) return;
    s3_tagset tags;
    const char *code, *why;
    int rc = s3_tagging_parse_xml(q->body.data ? q->body.data : "", q->body.len, S3_TAGS_OBJECT_MAX, &tags, &code,
                                  &why);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return;
    }
    if (rc != 0) {
        s3_error(q, code, why);
        return;
    }
    change_tags(q, &tags, 200);
    s3_tagset_free(&tags);
}

void s3_delete_object_tagging(s3_req *q) { change_tags(q, NULL, 204); }

void s3_get_object_tagging(s3_req *q) {
    const char *version = s3_param_get(q, "versionId");
    meta_object o;
    if (s3_named_version(q, &o) != 0) return;
    s3_tagset tags;
    int rc = s3_tagset_from_headers(o.headers_json, &tags);
    if (rc == CAIRN_EINVAL) {
        /* never: the stored headers are JSON we wrote */
        log_write(LOG_ERROR, q->http->request_id, "a version's stored headers do not read back: no tags", NULL);
        rc = 0;
    }
    if (rc != 0) {
        meta_object_clear(&o);
        s3_error_nomem(q);
        return;
    }
    version_header(q, version, &o);
    meta_object_clear(&o);
    buf_t b;
    buf_init(&b);
    s3_tagging_render(&tags, &b);
    s3_tagset_free(&tags);
    s3_respond_xml(q, 200, &b);
}

/* ---- Put/Get/DeleteBucketTagging ---------------------------------------------------------------------- */

void s3_put_bucket_tagging(s3_req *q) {
    /* S3 requires Content-MD5 (or an x-amz-checksum-*), which every SDK sends. */
    if (s3_check_body_digest(q) != 0) return;
    s3_tagset tags;
    const char *code, *why;
    int rc = s3_tagging_parse_xml(q->body.data ? q->body.data : "", q->body.len, S3_TAGS_BUCKET_MAX, &tags, &code,
                                  &why);
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
    s3_tagging_render(&tags, &doc);
    /* An empty set leaves the bucket without tags, as a delete does. */
    rc = s3_store_bucket_config(q, "tagging", doc.oom ? NULL : tags.n ? doc.data : "", "the bucket's tags");
    s3_tagset_free(&tags);
    buf_free(&doc);
    if (rc != 0) return;
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}

void s3_get_bucket_tagging(s3_req *q) { s3_answer_bucket_config(q, "tagging", "NoSuchTagSet"); }

void s3_delete_bucket_tagging(s3_req *q) {
    if (s3_drop_bucket_config(q, "tagging") != 0) return;
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}
