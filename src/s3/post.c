/*
 * post.c — POST Object: browser uploads through an HTML form
 * (docs/post-object.md).
 *
 * The request is POST /bucket with a multipart/form-data body; what a PUT
 * carries in headers comes as form fields, the signature included: the
 * base64 policy document is signed with the SigV4 signing key, and the
 * policy says which field values the form may carry.  So the pipeline
 * admits the request unsigned (its route reads no credentials), and this
 * file authenticates from the fields.
 *
 * The body streams: form.c parses it incrementally; the fields before the
 * file (at most POST_PRE_DATA_MAX bytes of body) are kept; when the file
 * part's headers end, everything is judged at once — signature, policy,
 * expiration, conditions, extra fields, authorization, key, metadata, tags
 * — before any byte of the file is stored.  The file's bytes then go
 * through the same sink as a PUT of unknown length (object.c: inline up
 * to inline_max_size, else an erasure-coded writer), and the metadata
 * commit at the end is the only point at which the object appears.  Fields
 * after the file are ignored, as S3 ignores them.  Any error, or a client
 * that goes away, aborts the writer: no partial object, no temporary shard.
 */
#include "s3/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

/* The body bytes before the file's content that S3 takes (beyond them:
 * MaxPostPreDataLengthExceeded), and so the memory the fields may use. */
#define POST_PRE_DATA_MAX (20 * 1024)
/* Fields a form may have (the bytes above bound them too). */
#define POST_MAX_FIELDS 64
#define POST_MAX_USER_METADATA 2048

typedef struct {
    char *name;             /* lowercased */
    char *value;            /* NUL-terminated (a NUL inside is refused) */
    size_t len;
} post_field;

struct s3_post {
    s3_req *q;
    s3_form *form;
    post_field fields[POST_MAX_FIELDS];
    int nfields;
    char *cur_name;         /* the field being read; NULL: none */
    buf_t cur;
    bool in_file, file_done;
    uint64_t file_bytes;
    bool has_range;
    int64_t range_min, range_max;
    unsigned success_status;
    const char *redirect;
    char *headers;          /* the version's headers_json, its ACL stamped */
    bool has_md5;           /* a content-md5 field: the file's MD5 must be md5 */
    uint8_t md5[16];
};

static int refuse(s3_req *q, const char *code, const char *message) {
    s3_error(q, code, message);
    return CAIRN_EINVAL;
}

static const char *field(const s3_post *p, const char *name) {
    for (int i = 0; i < p->nfields; i++)
        if (!strcmp(p->fields[i].name, name)) return p->fields[i].value;
    return NULL;
}

static const post_field *field_entry(const s3_post *p, const char *name) {
    for (int i = 0; i < p->nfields; i++)
        if (!strcmp(p->fields[i].name, name)) return &p->fields[i];
    return NULL;
}

/* ---- the policy ---------------------------------------------------------------------------- */

/* "2007-12-01T12:00:00.000Z" (fraction optional): seconds since epoch, or -1. */
static int64_t parse_expiration(const char *s) {
    int y, mo, d, h, mi, se, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 19) return -1;
    const char *t = s + n;
    if (*t == '.') {
        t++;
        if (*t < '0' || *t > '9') return -1;
        while (*t >= '0' && *t <= '9') t++;
    }
    if (strcmp(t, "Z") != 0) return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = se};
    return (int64_t)timegm(&tm);
}

/* A condition as S3 quotes it in its refusal: ["eq", "$key", "value"]. */
static void condition_text(buf_t *b, const char *op, const char *name, const char *value) {
    buf_puts(b, "[\"");
    buf_puts(b, op);
    buf_puts(b, "\", \"$");
    buf_puts(b, name);
    buf_puts(b, "\", \"");
    buf_puts(b, value);
    buf_puts(b, "\"]");
}

/* The value a condition on name is checked against: the bucket's name for
 * "bucket", the key after ${filename}, else the field ("" when absent). */
static const char *condition_subject(s3_post *p, const char *name) {
    s3_req *q = p->q;
    if (!strcmp(name, "bucket")) return q->bucket;
    if (!strcmp(name, "key")) return q->key;
    const char *v = field(p, name);
    return v ? v : "";
}

/* Marks name as named by a condition (for the extra-fields check). */
static void cover(bool covered[], const s3_post *p, const char *name) {
    for (int i = 0; i < p->nfields; i++)
        if (!strcmp(p->fields[i].name, name)) covered[i] = true;
}

static int policy_failed(s3_req *q, const char *op, const char *name, const char *value) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "Invalid according to Policy: Policy Condition failed: ");
    condition_text(&b, op, name, value);
    buf_putc(&b, '\0');
    int rc = refuse(q, "AccessDenied", b.oom ? "Invalid according to Policy: Policy Condition failed" : b.data);
    buf_free(&b);
    return rc;
}

static int bad_policy(s3_req *q, const char *why) { return refuse(q, "InvalidPolicyDocument", why); }

/* A field name as a condition gives it: "$name", lowercased into out. */
static bool condition_field(const char *s, char *out, size_t cap) {
    if (!s || s[0] != '$') return false;
    size_t n = strlen(s + 1);
    if (n == 0 || n >= cap) return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[1 + i];
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    return true;
}

static bool json_int_value(json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        long long x = strtoll(s, &end, 10);
        if (!*s || *end) return false;
        *out = x;
        return true;
    }
    return false;
}

/* Judges the form by its policy: 0, or answered. */
static int check_policy(s3_post *p, const char *policy_b64) {
    s3_req *q = p->q;
    size_t bl = strlen(policy_b64);
    uint8_t *raw = malloc(bl + 1);
    size_t rl = 0;
    if (!raw) return refuse(q, "InternalError", NULL);
    if (!s3_base64_decode(policy_b64, raw, bl, &rl)) {
        free(raw);
        return bad_policy(q, "Invalid Policy: Invalid Base64 Encoding.");
    }
    json_error_t err;
    json_t *doc = json_loadb((const char *)raw, rl, JSON_REJECT_DUPLICATES, &err);
    free(raw);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        return bad_policy(q, "Invalid Policy: Invalid JSON.");
    }
    int rc = 0;
    json_t *exp = json_object_get(doc, "expiration"), *conds = json_object_get(doc, "conditions");
    bool covered[POST_MAX_FIELDS] = {0};
    if (!exp) rc = bad_policy(q, "Invalid Policy: Policy missing expiration.");
    else if (!json_is_string(exp) || parse_expiration(json_string_value(exp)) < 0)
        rc = bad_policy(q, "Invalid Policy: Invalid 'expiration' value.");
    else if (!conds) rc = bad_policy(q, "Invalid Policy: Policy missing conditions.");
    else if (!json_is_array(conds)) rc = bad_policy(q, "Invalid Policy: Policy conditions must be an array.");
    else if (parse_expiration(json_string_value(exp)) < time_now_ms() / 1000)
        rc = refuse(q, "AccessDenied", "Invalid according to Policy: Policy expired.");
    size_t i;
    json_t *c;
    json_array_foreach(conds, i, c) {
        if (rc != 0) break;
        char name[128];
        if (json_is_object(c)) {
            /* {"field": "value"}: eq */
            const char *k;
            json_t *v;
            if (json_object_size(c) != 1) {
                rc = bad_policy(q, "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.");
                break;
            }
            json_object_foreach(c, k, v) {
                char dollar[130];
                snprintf(dollar, sizeof dollar, "$%s", k);
                if (!json_is_string(v) || !condition_field(dollar, name, sizeof name)) {
                    rc = bad_policy(q, "Invalid Policy: Invalid Simple-Condition: value must be a string.");
                    break;
                }
                cover(covered, p, name);
                if (strcmp(condition_subject(p, name), json_string_value(v)) != 0)
                    rc = policy_failed(q, "eq", name, json_string_value(v));
            }
            continue;
        }
        if (!json_is_array(c) || json_array_size(c) != 3 || !json_is_string(json_array_get(c, 0))) {
            rc = bad_policy(q, "Invalid Policy: Invalid Condition: a condition must be an object or an array of three.");
            break;
        }
        const char *op = json_string_value(json_array_get(c, 0));
        if (!strcasecmp(op, "content-length-range")) {
            int64_t lo, hi;
            if (!json_int_value(json_array_get(c, 1), &lo) || !json_int_value(json_array_get(c, 2), &hi) || lo < 0 ||
                hi < lo) {
                rc = bad_policy(q, "Invalid Policy: Invalid content-length-range: two integers, min <= max.");
                break;
            }
            p->has_range = true;
            p->range_min = lo;
            p->range_max = hi;
            continue;
        }
        bool eq = !strcasecmp(op, "eq"), sw = !strcasecmp(op, "starts-with");
        json_t *f = json_array_get(c, 1), *v = json_array_get(c, 2);
        if (!eq && !sw) {
            rc = bad_policy(q, "Invalid Policy: Invalid Condition: unknown operation (eq, starts-with, content-length-range).");
            break;
        }
        if (!json_is_string(f) || !json_is_string(v) || !condition_field(json_string_value(f), name, sizeof name)) {
            rc = bad_policy(q, "Invalid Policy: Invalid Condition: a field ($name) and a string value.");
            break;
        }
        cover(covered, p, name);
        const char *want = json_string_value(v), *have = condition_subject(p, name);
        bool ok = eq ? strcmp(have, want) == 0 : strncmp(have, want, strlen(want)) == 0;
        if (!ok) rc = policy_failed(q, eq ? "eq" : "starts-with", name, want);
    }
    if (rc == 0) {
        /* Every field but these must be named by a condition. */
        buf_t extra;
        buf_init(&extra);
        for (int k = 0; k < p->nfields; k++) {
            const char *n = p->fields[k].name;
            if (covered[k] || !strcmp(n, "x-amz-signature") || !strcmp(n, "policy") || !strcmp(n, "file") ||
                !strcmp(n, "signature") || !strcmp(n, "awsaccesskeyid") || !strncmp(n, "x-ignore-", 9))
                continue;
            buf_puts(&extra, extra.len ? ", " : "Invalid according to Policy: Extra input fields: ");
            buf_puts(&extra, n);
        }
        if (extra.len) {
            buf_putc(&extra, '\0');
            rc = refuse(q, "AccessDenied", extra.oom ? "Invalid according to Policy: Extra input fields" : extra.data);
        }
        buf_free(&extra);
    }
    json_decref(doc);
    return rc;
}

/* ---- judging the form, when the file comes -------------------------------------------------- */

static int missing_field(s3_req *q, const char *name) {
    char msg[160];
    snprintf(msg, sizeof msg, "Bucket POST must contain a field named '%s'.  If it is specified, please check the "
                              "order of the fields.", name);
    const char *elems[] = {"ArgumentName", name, "ArgumentValue", "", NULL};
    s3_error_elems(q, "InvalidArgument", msg, elems);
    return CAIRN_EINVAL;
}

/* Who sent the form: 0 with q->who (anonymous without a signature), or answered. */
static int authenticate(s3_post *p) {
    s3_req *q = p->q;
    const char *policy = field(p, "policy"), *sig = field(p, "x-amz-signature");
    const char *v2_key = field(p, "awsaccesskeyid"), *v2_sig = field(p, "signature");
    auth_refusal why;
    int rc;
    if (v2_key || v2_sig) {
        /* SigV2: AWSAccessKeyId, policy and signature. */
        if (sig) return refuse(q, "InvalidArgument", "A form is signed with SigV2 or with SigV4, not both.");
        if (!v2_key) return missing_field(q, "AWSAccessKeyId");
        if (!policy) return missing_field(q, "policy");
        if (!v2_sig) return missing_field(q, "signature");
        rc = auth_post_form_v2(&q->gw->keys, v2_key, policy, v2_sig, &q->who, &why);
        if (rc != 0) {
            s3_meta_error(q, rc, why.code, why.message);
            return CAIRN_EINVAL;
        }
        snprintf(q->http->principal, sizeof q->http->principal, "%s", q->who.cred.access_key);
        return 0;
    }
    if (!policy && !sig) {
        q->who.anonymous = true;
        return 0;
    }
    if (!policy) return missing_field(q, "policy");
    if (!sig) return missing_field(q, "x-amz-signature");
    const char *algo = field(p, "x-amz-algorithm"), *cred = field(p, "x-amz-credential"),
               *date = field(p, "x-amz-date");
    if (!algo) return missing_field(q, "x-amz-algorithm");
    if (!cred) return missing_field(q, "x-amz-credential");
    if (!date) return missing_field(q, "x-amz-date");
    if (strcmp(algo, "AWS4-HMAC-SHA256") != 0)
        return refuse(q, "InvalidArgument", "The x-amz-algorithm field must be AWS4-HMAC-SHA256.");
    rc = auth_post_form(&q->gw->keys, cred, date, policy, sig, &q->who, &why);
    if (rc != 0) {
        s3_meta_error(q, rc, why.code, why.message);
        return CAIRN_EINVAL;
    }
    snprintf(q->http->principal, sizeof q->http->principal, "%s", q->who.cred.access_key);
    return 0;
}

/* The key field with ${filename} replaced by the file's name (its last
 * path component: old browsers send the whole path). */
static int set_key(s3_post *p, const char *filename) {
    s3_req *q = p->q;
    const char *key = field(p, "key");
    if (!key) return missing_field(q, "key");
    const char *base = filename ? filename : "";
    for (const char *s = base; *s; s++)
        if (*s == '/' || *s == '\\') base = s + 1;
    buf_t b;
    buf_init(&b);
    for (const char *s = key; *s;) {
        if (!strncmp(s, "${filename}", 11)) {
            buf_puts(&b, base);
            s += 11;
        } else {
            buf_putc(&b, *s++);
        }
    }
    int rc = 0;
    if (b.oom) rc = refuse(q, "InternalError", NULL);
    else if (b.len == 0) rc = refuse(q, "InvalidArgument", "User key must have a length greater than 0.");
    else if (b.len > 1024) rc = refuse(q, "KeyTooLongError", NULL);
    else if (!s3_utf8_valid(b.data, b.len)) rc = refuse(q, "InvalidArgument", "The key is not valid UTF-8.");
    else {
        memcpy(q->key, b.data, b.len);
        q->key[b.len] = '\0';
        q->key_len = b.len;
        q->has_key = true;
    }
    buf_free(&b);
    return rc;
}

static const char *const stored_fields[] = {
    "content-type", "cache-control", "content-disposition", "content-encoding", "content-language", "expires",
    "x-amz-website-redirect-location",
};

/* The version's stored headers from the fields (object.c's form of them),
 * with the tags of the tagging field; NULL = answered. */
static char *headers_json(s3_post *p) {
    s3_req *q = p->q;
    buf_t b;
    buf_init(&b);
    buf_putc(&b, '{');
    size_t meta = 0;
    for (int i = 0; i < p->nfields; i++) {
        const post_field *f = &p->fields[i];
        bool user = !strncmp(f->name, "x-amz-meta-", 11) && f->name[11];
        bool stored = user;
        for (size_t k = 0; k < sizeof stored_fields / sizeof stored_fields[0] && !stored; k++)
            stored = !strcmp(f->name, stored_fields[k]);
        if (!stored) continue;
        if (!s3_utf8_valid(f->value, f->len)) {
            buf_free(&b);
            refuse(q, "InvalidArgument", "A form field stored with the object is not valid UTF-8.");
            return NULL;
        }
        if (user) meta += strlen(f->name) - 11 + f->len;
        buf_puts(&b, b.len > 1 ? ",\"" : "\"");
        buf_json_escape(&b, f->name, strlen(f->name));
        buf_puts(&b, "\":\"");
        buf_json_escape(&b, f->value, f->len);
        buf_putc(&b, '"');
    }
    if (meta > POST_MAX_USER_METADATA) {
        buf_free(&b);
        refuse(q, "MetadataTooLarge", NULL);
        return NULL;
    }
    const post_field *t = field_entry(p, "tagging");
    if (t) {
        s3_tagset tags = {0};
        const char *code = NULL, *why = NULL;
        int rc = s3_tagging_parse_xml(t->value, t->len, S3_TAGS_OBJECT_MAX, &tags, &code, &why);
        if (rc != 0) {
            buf_free(&b);
            refuse(q, rc == CAIRN_ENOMEM ? "InternalError" : code, rc == CAIRN_ENOMEM ? NULL : why);
            return NULL;
        }
        if (tags.n > 0) {
            buf_puts(&b, b.len > 1 ? ",\"" S3_TAGS_MEMBER "\":" : "\"" S3_TAGS_MEMBER "\":");
            s3_tagset_json(&tags, &b);
        }
        s3_tagset_free(&tags);
    }
    buf_putc(&b, '}');
    char *json = b.oom ? NULL : arena_strndup(q->http->arena, b.data, b.len);
    buf_free(&b);
    if (!json) s3_error_nomem(q);
    return json;
}

/* The options the form sets for its answer. */
static int read_options(s3_post *p) {
    s3_req *q = p->q;
    const char *md5 = field(p, "content-md5");
    uint8_t raw[20];
    size_t rl = 0;
    if (md5 && (!s3_base64_decode(md5, raw, sizeof raw, &rl) || rl != 16))
        return refuse(q, "InvalidDigest", "The Content-MD5 you specified was invalid.");
    if (md5) memcpy(p->md5, raw, 16);
    p->has_md5 = md5 != NULL;
    const char *st = field(p, "success_action_status");
    p->success_status = 204;
    if (st && (!strcmp(st, "200") || !strcmp(st, "201"))) p->success_status = (unsigned)atoi(st);
    const char *redir = field(p, "success_action_redirect");
    if (!redir) redir = field(p, "redirect");
    if (redir && *redir) p->redirect = redir;
    return 0;
}

/* An x-amz-checksum-<algorithm> field: the file's checksum is computed as
 * it streams and compared at the end (x-amz-checksum-algorithm alone
 * asks for nothing to be checked).  0, or answered. */
static int start_checksum(s3_post *p) {
    s3_req *q = p->q;
    for (int i = 0; i < p->nfields; i++) {
        const post_field *f = &p->fields[i];
        if (strncmp(f->name, "x-amz-checksum-", 15) != 0 || !strcmp(f->name, "x-amz-checksum-algorithm")) continue;
        if (q->checksum_name)
            return refuse(q, "InvalidRequest", "Expecting a single x-amz-checksum- field.");
        int rc = s3_checksum_begin(q, f->name, f->value);
        if (rc == CAIRN_EINVAL) {
            char msg[160];
            snprintf(msg, sizeof msg, "%.64s is not a checksum algorithm this server knows.", f->name);
            return refuse(q, "InvalidRequest", msg);
        }
        if (rc != 0) return refuse(q, "InternalError", NULL);
    }
    return 0;
}

/* The file's headers ended: everything is judged now, before any of its
 * bytes is stored. */
static int file_begins(s3_post *p, const char *filename) {
    s3_req *q = p->q;
    if (authenticate(p) != 0 || set_key(p, filename) != 0) return CAIRN_EINVAL;
    const char *policy = field(p, "policy");
    if (policy && check_policy(p, policy) != 0) return CAIRN_EINVAL;
    /* The signer's (or anonymous) s3:PutObject on the key, as the bucket's
     * policy and ACLs judge it (acl.c). */
    if (s3_authorize(q, &q->bk, "s3:PutObject", q->key, q->key_len) != 0) return CAIRN_EINVAL;
    if (read_options(p) != 0) return CAIRN_EINVAL;
    /* Validated now, stored with the commit. */
    p->headers = headers_json(p);
    /* The x-amz-server-side-encryption* fields (or the bucket's default). */
    if (!p->headers || s3_acl_stamp(q, &p->headers) != 0 || s3_sse_begin_write(q) != 0 ||
        s3_sse_headers_set(q, &p->headers) != 0)
        return CAIRN_EINVAL;
    /* The x-amz-object-lock-* fields are judged now (stamped at the
     * commit, with the bucket's default retention where they set none). */
    char *probe = p->headers;
    if (s3_lock_stamp(q, &probe, time_now_ms(), S3_LOCK_HEADERS) != 0) return CAIRN_EINVAL;
    /* The body's length is the form's, not the file's: a PUT of unknown
     * length (object.c), inline until it outgrows inline_max_size. */
    q->size_unknown = true;
    q->inline_object = true;
    q->md5 = EVP_MD_CTX_new();
    if (!q->md5 || !EVP_DigestInit_ex(q->md5, EVP_md5(), NULL)) return refuse(q, "InternalError", NULL);
    if (start_checksum(p) != 0) return CAIRN_EINVAL;
    p->in_file = true;
    return 0;
}

/* ---- the form's sink ------------------------------------------------------------------------ */

static int too_much(s3_req *q) {
    return refuse(q, "MaxPostPreDataLengthExceededError", NULL);
}

static int on_part_begin(void *ud, const char *name, const char *filename, const char *content_type) {
    (void)content_type;
    s3_post *p = ud;
    s3_req *q = p->q;
    if (s3_form_offset(p->form) > POST_PRE_DATA_MAX) return too_much(q);
    if (!strcasecmp(name, "file")) return file_begins(p, filename);
    if (p->nfields >= POST_MAX_FIELDS) return too_much(q);
    size_t n = strlen(name);
    char *lower = arena_alloc(q->http->arena, n + 1);
    if (!lower) return refuse(q, "InternalError", NULL);
    for (size_t i = 0; i <= n; i++) lower[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] - 'A' + 'a') : name[i];
    if (field(p, lower)) {
        char msg[160];
        snprintf(msg, sizeof msg, "The form has the field '%.64s' more than once.", lower);
        return refuse(q, "InvalidArgument", msg);
    }
    p->cur_name = lower;
    buf_reset(&p->cur);
    return 0;
}

static int store_error(s3_req *q, int rc) {
    if (rc == CAIRN_ETOOBIG) return refuse(q, "EntityTooLarge", NULL);
    if (rc == CAIRN_ENOSPC) return refuse(q, "InsufficientStorage", "The storage is full.");
    return refuse(q, "InternalError", "storing the file failed");
}

static int on_part_data(void *ud, const char *data, size_t n) {
    s3_post *p = ud;
    s3_req *q = p->q;
    if (p->in_file) {
        p->file_bytes += n;
        if (p->has_range && (int64_t)p->file_bytes > p->range_max) {
            char prop[24], max[24];
            snprintf(prop, sizeof prop, "%llu", (unsigned long long)p->file_bytes);
            snprintf(max, sizeof max, "%lld", (long long)p->range_max);
            const char *elems[] = {"ProposedSize", prop, "MaxSizeAllowed", max, NULL};
            s3_error_elems(q, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", elems);
            return CAIRN_EINVAL;
        }
        q->payload_bytes = p->file_bytes; /* what s3_object_sink counts */
        int rc = s3_object_sink(q, data, n);
        return rc == 0 ? 0 : store_error(q, rc);
    }
    if (s3_form_offset(p->form) + n > POST_PRE_DATA_MAX) return too_much(q);
    buf_append(&p->cur, data, n);
    return p->cur.oom ? refuse(q, "InternalError", NULL) : 0;
}

static int on_part_end(void *ud) {
    s3_post *p = ud;
    s3_req *q = p->q;
    if (p->in_file) {
        p->in_file = false;
        p->file_done = true;
        return S3_FORM_STOP; /* fields after the file are ignored */
    }
    if (memchr(p->cur.data ? p->cur.data : "", '\0', p->cur.len))
        return refuse(q, "InvalidArgument", "A form field holds a NUL byte.");
    char *v = arena_strndup(q->http->arena, p->cur.data ? p->cur.data : "", p->cur.len);
    if (!v) return refuse(q, "InternalError", NULL);
    p->fields[p->nfields++] = (post_field){p->cur_name, v, p->cur.len};
    p->cur_name = NULL;
    return 0;
}

static const s3_form_sink form_sink = {on_part_begin, on_part_data, on_part_end};

/* ---- the pipeline's calls -------------------------------------------------------------------- */

int s3_post_begin(s3_req *q) {
    char boundary[S3_FORM_BOUNDARY_MAX + 1];
    if (s3_form_boundary(http_header(q->http, "content-type"), boundary) != 0) {
        const char *elems[] = {"Condition", "Bucket POST must be of the enclosure-type multipart/form-data", NULL};
        s3_error_elems(q, "PreconditionFailed", NULL, elems);
        return -1;
    }
    /* The route loads no bucket (the pipeline would judge access before
     * the form says who is asking): it is loaded here. */
    if (!s3_bucket_name_valid(q->bucket)) {
        s3_error(q, "NoSuchBucket", NULL);
        return -1;
    }
    int rc = meta_bucket_get(q->gw->d.meta, q->bucket, &q->bk);
    if (rc != 0) {
        s3_meta_error(q, rc, rc == CAIRN_ENOTFOUND ? "NoSuchBucket" : "InternalError",
                      rc == CAIRN_ENOTFOUND ? NULL : "metadata lookup failed");
        return -1;
    }
    q->bucket_id = q->bk.id;
    s3_post *p = arena_calloc(q->http->arena, 1, sizeof *p);
    if (!p) {
        s3_error_nomem(q);
        return -1;
    }
    p->q = q;
    buf_init(&p->cur);
    p->form = s3_form_new(boundary, &form_sink, p);
    if (!p->form) {
        s3_error(q, "InternalError", NULL);
        return -1;
    }
    q->post = p;
    return 0;
}

int s3_post_sink(s3_req *q, const char *data, size_t n) {
    s3_post *p = q->post;
    assert(p);
    q->payload_bytes = p->file_bytes; /* the pipeline counted the form's bytes */
    const char *why = NULL;
    int rc = s3_form_feed(p->form, data, n, &why);
    if (rc != 0 && !http_responded(q->http)) refuse(q, "MalformedPOSTRequest", why);
    return rc == 0 ? 0 : CAIRN_EINVAL;
}

/* The PostResponse document and the Location of the new object. */
static void location(s3_req *q, buf_t *b) {
    const char *host = http_header(q->http, "host");
    buf_puts(b, q->gw->cfg.tls_cert[0] ? "https://" : "http://");
    buf_puts(b, host ? host : "localhost");
    buf_putc(b, '/');
    if (!q->vhost) {
        buf_url_encode(b, q->bucket, strlen(q->bucket), false);
        buf_putc(b, '/');
    }
    buf_url_encode(b, q->key, q->key_len, true);
}

static void answer(s3_post *p, const meta_object *obj) {
    s3_req *q = p->q;
    char etag[80];
    s3_quote_etag(obj->etag, etag, sizeof etag);
    http_add_header(q->http, "ETag", etag);
    s3_new_version_header(q, obj);
    s3_sse_add_headers(q, obj->headers_json);
    if (q->checksum_name && q->checksum_expected[0]) http_add_header(q->http, q->checksum_name, q->checksum_expected);
    buf_t loc;
    buf_init(&loc);
    location(q, &loc);
    buf_putc(&loc, '\0');
    if (p->redirect) {
        buf_t u;
        buf_init(&u);
        buf_puts(&u, p->redirect);
        buf_putc(&u, strchr(p->redirect, '?') ? '&' : '?');
        buf_puts(&u, "bucket=");
        buf_url_encode(&u, q->bucket, strlen(q->bucket), false);
        buf_puts(&u, "&key=");
        buf_url_encode(&u, q->key, q->key_len, false);
        buf_puts(&u, "&etag=");
        buf_url_encode(&u, etag, strlen(etag), false);
        buf_putc(&u, '\0');
        if (u.oom || loc.oom) s3_error(q, "InternalError", NULL);
        else {
            http_add_header(q->http, "Location", u.data);
            http_respond(q->http, 303, "", 0);
        }
        buf_free(&u);
        buf_free(&loc);
        return;
    }
    if (!loc.oom) http_add_header(q->http, "Location", loc.data);
    if (p->success_status != 201) {
        http_respond(q->http, p->success_status, "", 0);
        buf_free(&loc);
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>");
    buf_xml_escape(&b, loc.data ? loc.data : "", loc.len ? loc.len - 1 : 0);
    buf_puts(&b, "</Location><Bucket>");
    buf_xml_escape(&b, q->bucket, strlen(q->bucket));
    buf_puts(&b, "</Bucket><Key>");
    buf_xml_escape(&b, q->key, q->key_len);
    buf_puts(&b, "</Key><ETag>");
    buf_xml_escape(&b, etag, strlen(etag));
    buf_puts(&b, "</ETag></PostResponse>");
    buf_free(&loc);
    s3_respond_xml(q, 201, &b);
}

void s3_post_object(s3_req *q) {
    s3_post *p = q->post;
    const char *why = NULL;
    if (s3_form_finish(p->form, &why) != 0) {
        s3_error(q, "MalformedPOSTRequest", why);
        return;
    }
    if (!p->file_done) {
        const char *elems[] = {"ArgumentName", "file", "ArgumentValue", "0", NULL};
        s3_error_elems(q, "InvalidArgument", "POST requires exactly one file upload per request.", elems);
        return;
    }
    q->payload_bytes = p->file_bytes;
    if (s3_object_body_end(q) != 0) return;
    if (p->has_range && (int64_t)p->file_bytes < p->range_min) {
        char prop[24], min[24];
        snprintf(prop, sizeof prop, "%llu", (unsigned long long)p->file_bytes);
        snprintf(min, sizeof min, "%lld", (long long)p->range_min);
        const char *elems[] = {"ProposedSize", prop, "MinSizeAllowed", min, NULL};
        s3_error_elems(q, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size", elems);
        return;
    }
    unsigned char md5[16];
    unsigned dl = 0;
    EVP_DigestFinal_ex(q->md5, md5, &dl);
    if (p->has_md5 && memcmp(md5, p->md5, 16) != 0) {
        s3_error(q, "BadDigest", "The Content-MD5 you specified did not match what was received.");
        return;
    }
    if (!s3_checksum_ok(q)) {
        s3_error(q, "BadDigest", "The checksum you specified did not match what we received.");
        return;
    }
    meta_object obj = {0};
    snprintf(obj.bucket, sizeof obj.bucket, "%s", q->bucket);
    obj.bucket_id = q->bucket_id;
    memcpy(obj.key, q->key, q->key_len);
    obj.key_len = q->key_len;
    obj.mtime_ms = time_now_ms();
    obj.owner_id = q->who.user_id;
    if (s3_object_take_body(q, md5, &obj) != 0) return;
    obj.headers_json = p->headers;
    if (!obj.headers_json ||
        s3_lock_stamp(q, &obj.headers_json, obj.mtime_ms, S3_LOCK_HEADERS | S3_LOCK_DEFAULT) != 0) {
        s3_drop_version_data(q, &obj);
        return;
    }
    if (s3_object_publish(q, &obj) != 0) return;
    answer(p, &obj);
}

const char *s3_request_value(s3_req *q, const char *name) {
    return q->post ? field(q->post, name) : http_header(q->http, name);
}

void s3_post_cleanup(s3_req *q) {
    s3_post *p = q->post;
    if (!p) return;
    s3_form_free(p->form);
    buf_free(&p->cur);
    q->post = NULL;
}
