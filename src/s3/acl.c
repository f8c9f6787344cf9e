/*
 * acl.c — access control of buckets and objects (docs/access-control.md):
 * the authorize stage's judgement of a request (s3_authorize), and the
 * S3 calls that set what it judges by: bucket policies
 * (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus), the public access
 * block (Put/Get/DeletePublicAccessBlock), and ACLs (Put/GetBucketAcl,
 * Put/GetObjectAcl, x-amz-acl and x-amz-grant-* on writes).
 *
 * Stored as bucket configurations (meta_bucket_config_*): "policy" the
 * policy's text as validated, "acl" the bucket's grants in access.c's text
 * form, "public_access_block" the PublicAccessBlockConfiguration document
 * as GET answers it.  An object's ACL, when it has one other than its
 * owner's full control, is the member "cairn-acl" of its version's
 * headers_json, in the same text form.  The bucket record says which
 * configurations exist (meta_bucket.configs), so a request on a bucket
 * without a policy reads nothing more to be judged.
 *
 * Policies are parsed once per change: a compiled policy is kept per bucket
 * (POLICY_SLOTS of them, direct-mapped by bucket id) and reused while the
 * stored text is the same.
 */
#include "s3/access.h"
#include "s3/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libxml/tree.h>

#define POLICY_KIND "policy"
#define ACL_KIND "acl"
#define PAB_KIND "public_access_block"
#define OBJECT_ACL_MEMBER S3_ACL_MEMBER

/* ---- compiled policies ------------------------------------------------------------------ */

#define POLICY_SLOTS 64

typedef struct policy_entry {
    int64_t bucket_id;
    char *text;
    access_policy *p;
    int refs;
    bool cached;
} policy_entry;

static pthread_mutex_t policy_mu = PTHREAD_MUTEX_INITIALIZER;
static policy_entry *policy_slots[POLICY_SLOTS];

static void entry_free(policy_entry *e) {
    access_policy_free(e->p);
    free(e->text);
    free(e);
}

static void policy_release(policy_entry *e) {
    if (!e) return;
    pthread_mutex_lock(&policy_mu);
    bool last = --e->refs == 0 && !e->cached;
    pthread_mutex_unlock(&policy_mu);
    if (last) entry_free(e);
}

/* The compiled form of bucket's stored policy text: 0 with *out (release
 * it), or the parse's error (a stored policy always parsed once). */
static int policy_compiled(int64_t bucket_id, const char *bucket, const char *text, policy_entry **out) {
    size_t slot = (size_t)bucket_id % POLICY_SLOTS;
    pthread_mutex_lock(&policy_mu);
    policy_entry *e = policy_slots[slot];
    if (e && e->bucket_id == bucket_id && strcmp(e->text, text) == 0) {
        e->refs++;
        pthread_mutex_unlock(&policy_mu);
        *out = e;
        return 0;
    }
    pthread_mutex_unlock(&policy_mu);
    e = calloc(1, sizeof *e);
    const char *why;
    int rc = e && (e->text = strdup(text)) ? access_policy_parse(text, strlen(text), bucket, &e->p, &why) : CAIRN_ENOMEM;
    if (rc != 0) {
        if (e) entry_free(e);
        return rc;
    }
    e->bucket_id = bucket_id;
    e->refs = 2; /* the caller's and the slot's */
    e->cached = true;
    pthread_mutex_lock(&policy_mu);
    policy_entry *old = policy_slots[slot];
    policy_slots[slot] = e;
    /* The slot's own reference to the entry it held goes with it: the
     * entry is freed now, or by its last user's release. */
    bool free_old = false;
    if (old) {
        old->cached = false;
        free_old = --old->refs == 0;
    }
    if (old && !free_old) old = NULL;
    pthread_mutex_unlock(&policy_mu);
    if (old) entry_free(old);
    *out = e;
    return 0;
}

/* ---- what a bucket's access is judged by -------------------------------------------------- */

typedef struct {
    access_bucket b;
    policy_entry *pe;
    access_acl acl;
} bucket_access;

static void access_done(bucket_access *a) { policy_release(a->pe); }

static bool pab_flag(const char *doc, const char *name) {
    char want[64];
    snprintf(want, sizeof want, "<%s>true</%s>", name, name);
    return strstr(doc, want) != NULL;
}

static int pab_of(const char *doc) {
    return (pab_flag(doc, "BlockPublicAcls") ? PAB_BLOCK_PUBLIC_ACLS : 0) |
           (pab_flag(doc, "IgnorePublicAcls") ? PAB_IGNORE_PUBLIC_ACLS : 0) |
           (pab_flag(doc, "BlockPublicPolicy") ? PAB_BLOCK_PUBLIC_POLICY : 0) |
           (pab_flag(doc, "RestrictPublicBuckets") ? PAB_RESTRICT_PUBLIC_BUCKETS : 0);
}

/* One configuration of bk into *body (NULL when it has none). */
static int config_of(s3_req *q, const meta_bucket *bk, uint32_t bit, const char *kind, char **body) {
    *body = NULL;
    if (!(bk->configs & bit)) return 0;
    int rc = meta_bucket_config_get(q->gw->d.meta, bk->id, kind, body);
    return rc == CAIRN_ENOTFOUND ? 0 : rc;
}

/* Reads what bk's access is judged by first into *a: its policy and its
 * public access block; ACLs stay off until access_load_acls.  0, or the
 * metadata error (nothing to release). */
static int access_load(s3_req *q, const meta_bucket *bk, bucket_access *a) {
    memset(a, 0, sizeof *a);
    a->b.legacy_public_read = bk->public_read;
    char *policy = NULL, *pab = NULL;
    int rc = config_of(q, bk, META_CFG_POLICY, POLICY_KIND, &policy);
    if (rc == 0) rc = config_of(q, bk, META_CFG_PUBLIC_ACCESS_BLOCK, PAB_KIND, &pab);
    if (rc == 0 && policy) rc = policy_compiled(bk->id, bk->name, policy, &a->pe);
    if (pab) a->b.pab = pab_of(pab);
    a->b.policy = a->pe ? a->pe->p : NULL;
    free(policy);
    free(pab);
    if (rc != 0) access_done(a);
    return rc;
}

/* The rest, read only when the policy and ownership did not decide: the
 * bucket's ObjectOwnership and, where ACLs apply, its ACL.  0, or the
 * metadata error (and *a released). */
static int access_load_acls(s3_req *q, const meta_bucket *bk, bucket_access *a) {
    char *own = NULL, *acl = NULL;
    int rc = config_of(q, bk, META_CFG_OWNERSHIP, "ownership", &own);
    /* No ownership controls at all is S3's ObjectWriter: ACLs apply. */
    a->b.acls_enabled = !own || strcmp(own, "BucketOwnerEnforced") != 0;
    if (rc == 0 && a->b.acls_enabled) rc = config_of(q, bk, META_CFG_ACL, ACL_KIND, &acl);
    if (rc == 0 && acl && access_acl_from_text(acl, &a->acl) == 0) a->b.bucket_acl = &a->acl;
    free(own);
    free(acl);
    if (rc != 0) access_done(a);
    return rc;
}

/* What a condition key's value is looked up with (request_value). */
typedef struct {
    s3_req *q;
    const meta_bucket *bk;
    const char *key;
    size_t key_len;
    char name[129];
    bool named;
    int failed;    /* a value could not be read (the metadata's error): no verdict stands */
} lookup_ud;

/* access_decide over a, reading the ACLs only when they could change the
 * answer (nothing else granted it).  0, or the metadata error (and *a
 * released). */
static int decide_loaded(s3_req *q, const meta_bucket *bk, bucket_access *a, const access_ctx *c, access_verdict *v) {
    const lookup_ud *u = c->ud;
    *v = access_decide(c, &a->b);
    int rc = u->failed;
    if (rc == 0 && *v != ACCESS_GRANTED && !a->b.acls_enabled) {
        rc = access_load_acls(q, bk, a);
        if (rc == 0 && a->b.acls_enabled) *v = access_decide(c, &a->b);
        if (rc == 0) rc = u->failed;
        else return rc;
    }
    /* A condition whose value could not be read decided nothing. */
    if (rc != 0) access_done(a);
    return rc;
}

static void access_unreadable(s3_req *q, int rc) {
    s3_meta_error(q, rc, "InternalError", "reading the bucket's access configuration failed");
}

/* ---- condition keys of the request -------------------------------------------------------- */


/* A tag of the object the request names (the version it names, else the
 * current one), as s3:ExistingObjectTag/<k> asks. */
static const char *existing_tag(lookup_ud *u, const char *tag) {
    s3_req *q = u->q;
    if (!u->key) return NULL;
    meta_object o;
    memset(&o, 0, sizeof o);
    const char *vid = s3_param_get(q, "versionId");
    int rc = vid ? meta_object_get_version(q->gw->d.meta, u->bk->name, u->bk->id, u->key, u->key_len, vid, false, &o)
                 : meta_object_get(q->gw->d.meta, u->bk->name, u->bk->id, u->key, u->key_len, false, &o);
    if (rc != 0 && rc != CAIRN_ENOTFOUND && !u->failed) u->failed = rc;
    const char *out = NULL;
    s3_tagset t;
    if (rc == 0 && s3_tagset_from_headers(o.headers_json, &t) == 0) {
        for (int i = 0; i < t.n && !out; i++)
            if (!strcmp(t.tags[i].key, tag)) out = arena_strdup(q->http->arena, t.tags[i].value);
        s3_tagset_free(&t);
    }
    meta_object_clear(&o);
    return out;
}

static const char *request_value(void *ud, const char *key) {
    lookup_ud *u = ud;
    s3_req *q = u->q;
    if (!strcasecmp(key, "aws:username")) {
        if (!u->named) {
            u->named = true;
            meta_user usr;
            int rc = meta_user_get(q->gw->d.meta, q->who.user_id, &usr);
            if (rc == 0) snprintf(u->name, sizeof u->name, "%s", usr.name);
            else if (rc != CAIRN_ENOTFOUND && !u->failed) u->failed = rc;
        }
        return u->name[0] ? u->name : NULL;
    }
    static const struct { const char *key, *param; } params[] = {
        {"s3:prefix", "prefix"}, {"s3:delimiter", "delimiter"}, {"s3:max-keys", "max-keys"}, {"s3:VersionId", "versionId"},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (!strcasecmp(key, params[i].key)) return s3_param_get(q, params[i].param);
    static const struct { const char *key, *header; } headers[] = {
        {"s3:x-amz-acl", "x-amz-acl"}, {"aws:Referer", "referer"}, {"aws:UserAgent", "user-agent"},
        {"s3:x-amz-content-sha256", "x-amz-content-sha256"}, {"s3:x-amz-copy-source", "x-amz-copy-source"},
        {"s3:x-amz-metadata-directive", "x-amz-metadata-directive"},
        {"s3:x-amz-server-side-encryption", "x-amz-server-side-encryption"},
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        if (!strcasecmp(key, headers[i].key)) return http_header(q->http, headers[i].header);
    if (!strncasecmp(key, "s3:ExistingObjectTag/", 21)) return existing_tag(u, key + 21);
    if (!strncasecmp(key, "s3:RequestObjectTag/", 20)) {
        s3_tagset t;
        const char *h = http_header(q->http, "x-amz-tagging"), *code, *why, *out = NULL;
        if (h && s3_tagging_parse_header(h, strlen(h), &t, &code, &why) == 0) {
            for (int i = 0; i < t.n && !out; i++)
                if (!strcmp(t.tags[i].key, key + 20)) out = arena_strdup(q->http->arena, t.tags[i].value);
            s3_tagset_free(&t);
        }
        return out;
    }
    return NULL;
}

/* The IAM action of the request: the route's, refined as S3 does when a
 * version is named. */
static const char *request_action(const s3_req *q) {
    const char *a = s3_route_action(q->route, q->params, q->nparams);
    if (!s3_param_has(q, "versionId")) return a;
    static const struct { const char *plain, *version; } by_version[] = {
        {"s3:GetObject", "s3:GetObjectVersion"}, {"s3:DeleteObject", "s3:DeleteObjectVersion"},
        {"s3:GetObjectAcl", "s3:GetObjectVersionAcl"}, {"s3:PutObjectAcl", "s3:PutObjectVersionAcl"},
        {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"}, {"s3:PutObjectTagging", "s3:PutObjectVersionTagging"},
        {"s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"},
        {"s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"},
    };
    for (size_t i = 0; i < sizeof by_version / sizeof by_version[0]; i++)
        if (!strcmp(a, by_version[i].plain)) return by_version[i].version;
    return a;
}

static void fill_ctx(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len,
                     lookup_ud *u, access_ctx *c) {
    memset(u, 0, sizeof *u);
    u->q = q, u->bk = bk, u->key = key, u->key_len = key_len;
    *c = (access_ctx){
        .anonymous = q->who.anonymous,
        .is_root = q->who.is_root,
        .user_id = q->who.user_id,
        .action = action,
        .bucket = bk->name,
        .bucket_owner = bk->owner_id,
        .key = key,
        .key_len = key_len,
        .source_ip = q->http->remote_addr,
        /* The S3 listener serves HTTPS alone when tls_cert is set: every
         * request then came over TLS (aws:SecureTransport). */
        .secure = q->gw->cfg.tls_cert[0] != '\0',
        .now_s = time_now_ms() / 1000,
        .lookup = request_value,
        .ud = u,
    };
}

/* ---- the judgement ------------------------------------------------------------------------ */

/* The verdict on the caller doing action to key of bk, into *v.  0, or the
 * metadata error that kept the configuration from being read (nothing
 * answered). */
static int judge(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len,
                 access_verdict *v) {
    /* Nothing to read: root, or the owner of a bucket without a policy. */
    if (!q->who.anonymous && (q->who.is_root || (q->who.user_id == bk->owner_id && !(bk->configs & META_CFG_POLICY)))) {
        *v = ACCESS_GRANTED;
        return 0;
    }
    bucket_access a;
    int rc = access_load(q, bk, &a);
    if (rc != 0) return rc;
    lookup_ud u;
    access_ctx c;
    fill_ctx(q, bk, action, key, key_len, &u, &c);
    if ((rc = decide_loaded(q, bk, &a, &c, v)) != 0) return rc;
    q->acls_enabled = a.b.acls_enabled;
    q->pab = a.b.pab;
    access_done(&a);
    return 0;
}

int s3_authorize_object(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len,
                        bool *pending) {
    access_verdict v;
    int rc = judge(q, bk, action, key, key_len, &v);
    if (rc != 0) {
        access_unreadable(q, rc);
        return -1;
    }
    if (pending) *pending = v == ACCESS_OBJECT_ACL;
    if (v == ACCESS_GRANTED || (pending && v == ACCESS_OBJECT_ACL)) return 0;
    log_write(LOG_INFO, q->http->request_id, "access denied", "action", action, "bucket", bk->name, NULL);
    s3_error(q, "AccessDenied", NULL);
    return -1;
}

int s3_authorize(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len) {
    return s3_authorize_object(q, bk, action, key, key_len, NULL);
}

int s3_authorize_keys(s3_req *q, const s3_delete_req *d, bool *allowed) {
    if (!q->who.anonymous && (q->who.is_root || (q->who.user_id == q->bk.owner_id && !(q->bk.configs & META_CFG_POLICY)))) {
        for (int i = 0; i < d->count; i++) allowed[i] = true;
        return 0;
    }
    bucket_access a;
    int rc = access_load(q, &q->bk, &a);
    if (rc != 0) {
        access_unreadable(q, rc);
        return -1;
    }
    for (int i = 0; i < d->count; i++) {
        lookup_ud u;
        access_ctx c;
        const char *action = d->objects[i].version_id ? "s3:DeleteObjectVersion" : "s3:DeleteObject";
        fill_ctx(q, &q->bk, action, d->objects[i].key, d->objects[i].key_len, &u, &c);
        access_verdict v;
        if ((rc = decide_loaded(q, &q->bk, &a, &c, &v)) != 0) {
            access_unreadable(q, rc);
            return -1;
        }
        allowed[i] = v == ACCESS_GRANTED;
    }
    access_done(&a);
    return 0;
}

int s3_authorize_request(s3_req *q) {
    const char *action = request_action(q);
    access_verdict v;
    int rc = judge(q, &q->bk, action, q->has_key ? q->key : NULL, q->key_len, &v);
    if (rc != 0) {
        access_unreadable(q, rc);
        return -1;
    }
    if (v == ACCESS_GRANTED) return 0;
    /* DeleteObjects names its keys in its body: where a policy may grant
     * some of them, each is judged there (s3_authorize_keys), each refusal
     * an AccessDenied of its own. */
    if (q->op == OP_DELETE_OBJECTS && (q->bk.configs & META_CFG_POLICY)) return 0;
    if (v == ACCESS_OBJECT_ACL) {
        /* The object's own ACL may grant it: the handler judges. */
        q->object_acl_pending = true;
        return 0;
    }
    log_write(LOG_INFO, q->http->request_id, "access denied", "action", action, "bucket", q->bk.name, NULL);
    s3_error(q, "AccessDenied", NULL);
    return -1;
}

bool s3_may(s3_req *q, const meta_bucket *bk, const char *action, const char *key, size_t key_len) {
    access_verdict v;
    return judge(q, bk, action, key, key_len, &v) == 0 && v == ACCESS_GRANTED;
}

bool s3_authorized(s3_req *q, const meta_bucket *b, bool read_only) {
    access_verdict v;
    const char *action = read_only ? "s3:ListBucket" : "s3:PutObject";
    return judge(q, b, action, NULL, 0, &v) == 0 && v == ACCESS_GRANTED;
}

/* The ACL of an object version (its stored one, or its owner's full
 * control by the bucket owner). */
static void object_acl_of(const meta_bucket *bk, const char *headers_json, access_acl *acl) {
    json_error_t err;
    json_t *h = json_loads(headers_json ? headers_json : "{}", 0, &err);
    const char *text = json_string_value(json_object_get(h, OBJECT_ACL_MEMBER));
    if (!text || access_acl_from_text(text, acl) != 0) access_acl_canned("private", true, bk->owner_id, bk->owner_id, acl);
    json_decref(h);
}

/* Whether bk's ACLs apply (its ObjectOwnership is not BucketOwnerEnforced)
 * and its public access block.  0, or the metadata error. */
static int acl_settings(s3_req *q, const meta_bucket *bk, bool *enabled, int *pab) {
    char *own = NULL, *doc = NULL;
    int rc = config_of(q, bk, META_CFG_OWNERSHIP, "ownership", &own);
    if (rc == 0) rc = config_of(q, bk, META_CFG_PUBLIC_ACCESS_BLOCK, PAB_KIND, &doc);
    *enabled = !own || strcmp(own, "BucketOwnerEnforced") != 0;
    *pab = doc ? pab_of(doc) : 0;
    free(own);
    free(doc);
    return rc;
}

int s3_object_check(s3_req *q, const meta_bucket *bk, const char *action, bool pending, const meta_object *o) {
    if (!pending) {
        /* Granted at the bucket (its owner, its policy or its ACL): that
         * reaches the objects the bucket owner owns.  One another writer
         * owns (ObjectWriter: ACLs apply) is read, and its ACL read or
         * changed, only as its own ACL allows, as S3 does.  Only versions
         * written by someone other than the bucket owner, or with an
         * explicit ACL, carry one: the rest pass without a parse. */
        if ((q->who.is_root && !q->who.anonymous) || !access_object_acl_need(action) || !o->headers_json ||
            !strstr(o->headers_json, "\"" OBJECT_ACL_MEMBER "\""))
            return 0;
    }
    access_acl acl;
    object_acl_of(bk, o->headers_json, &acl);
    if (!pending && acl.owner == bk->owner_id) return 0;
    access_bucket b = {.acls_enabled = q->acls_enabled, .pab = q->pab};
    if (!pending || bk != &q->bk) {
        int rc = acl_settings(q, bk, &b.acls_enabled, &b.pab);
        if (rc != 0) {
            access_unreadable(q, rc);
            return -1;
        }
        /* BucketOwnerEnforced: the bucket owner owns every object. */
        if (!pending && !b.acls_enabled) return 0;
    }
    lookup_ud u;
    access_ctx c;
    fill_ctx(q, bk, action, o->key, o->key_len, &u, &c);
    if (access_object_allows(&c, &b, &acl)) return 0;
    log_write(LOG_INFO, q->http->request_id, "access denied by the object's ACL", "action", action, "bucket", bk->name,
              NULL);
    s3_error(q, "AccessDenied", NULL);
    return -1;
}

int s3_object_acl_check(s3_req *q, const meta_object *o) {
    return s3_object_check(q, &q->bk, request_action(q), q->object_acl_pending, o);
}

/* ---- bucket policies ---------------------------------------------------------------------- */

void s3_put_bucket_policy(s3_req *q) {
    const char *why;
    access_policy *p;
    if (q->body.len == 0) {
        s3_error(q, "MalformedPolicy", "Policies must be valid JSON and the first byte must be '{'");
        return;
    }
    int rc = access_policy_parse(q->body.data, q->body.len, q->bk.name, &p, &why);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return;
    }
    if (rc != 0) {
        s3_error(q, "MalformedPolicy", why);
        return;
    }
    bool pub = access_policy_is_public(p);
    access_policy_free(p);
    bucket_access a;
    rc = access_load(q, &q->bk, &a);
    if (rc != 0) {
        access_unreadable(q, rc);
        return;
    }
    int pab = a.b.pab;
    access_done(&a);
    if (pub && (pab & PAB_BLOCK_PUBLIC_POLICY)) {
        s3_error(q, "AccessDenied", "The bucket's public access block forbids public policies (BlockPublicPolicy).");
        return;
    }
    char *text = arena_strndup(q->http->arena, q->body.data, q->body.len);
    if (!text) {
        s3_error_nomem(q);
        return;
    }
    rc = meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, POLICY_KIND, text);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the bucket policy failed");
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}

/* The stored policy text into *text (the caller frees it).  0, or
 * answered (404 NoSuchBucketPolicy without one). */
static int stored_policy(s3_req *q, char **text) {
    *text = NULL;
    int rc = meta_bucket_config_get(q->gw->d.meta, q->bucket_id, POLICY_KIND, text);
    if (rc == CAIRN_ENOTFOUND) s3_error(q, "NoSuchBucketPolicy", NULL);
    else if (rc != 0) s3_meta_error(q, rc, "InternalError", "reading the bucket policy failed");
    return rc == 0 ? 0 : -1;
}

void s3_get_bucket_policy(s3_req *q) {
    char *text;
    if (stored_policy(q, &text) != 0) return;
    http_add_header(q->http, "Content-Type", "application/json");
    http_respond(q->http, 200, text, strlen(text));
    free(text);
}

void s3_delete_bucket_policy(s3_req *q) {
    if (s3_drop_bucket_config(q, POLICY_KIND) != 0) return;
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}

void s3_get_bucket_policy_status(s3_req *q) {
    char *text;
    if (stored_policy(q, &text) != 0) return;
    access_policy *p = NULL;
    const char *why;
    int rc = access_policy_parse(text, strlen(text), q->bk.name, &p, &why);
    free(text);
    if (rc != 0) {
        s3_error(q, "InternalError", "the stored policy does not parse");
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<PolicyStatus xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsPublic>%s</IsPublic></PolicyStatus>",
               access_policy_is_public(p) ? "true" : "false");
    access_policy_free(p);
    s3_respond_xml(q, 200, &b);
}

/* ---- the public access block -------------------------------------------------------------- */

void s3_put_public_access_block(s3_req *q) {
    if (s3_check_body_digest(q) != 0) return;
    int rc;
    xmlDocPtr d = s3_xml_read(q->body.data ? q->body.data : "", q->body.len, 4096, "PublicAccessBlockConfiguration", &rc);
    if (!d) {
        if (rc == CAIRN_ENOMEM) s3_error_nomem(q);
        else s3_error(q, "MalformedXML", NULL);
        return;
    }
    static const char *const names[] = {"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                        "RestrictPublicBuckets"};
    bool v[4] = {false, false, false, false};
    bool ok = true;
    for (xmlNodePtr n = xmlDocGetRootElement(d)->children; n && ok; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        int i = 0;
        while (i < 4 && !s3_xml_is(n, names[i])) i++;
        xmlChar *t = i < 4 ? xmlNodeGetContent(n) : NULL;
        if (!t || (strcmp((char *)t, "true") && strcmp((char *)t, "false"))) ok = false;
        else v[i] = strcmp((char *)t, "true") == 0;
        xmlFree(t);
    }
    xmlFreeDoc(d);
    if (!ok) {
        s3_error(q, "MalformedXML", NULL);
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < 4; i++) buf_printf(&b, "<%s>%s</%s>", names[i], v[i] ? "true" : "false", names[i]);
    buf_puts(&b, "</PublicAccessBlockConfiguration>");
    rc = b.oom ? CAIRN_ENOMEM : meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, PAB_KIND, b.data);
    buf_free(&b);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the public access block failed");
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

void s3_get_public_access_block(s3_req *q) {
    s3_answer_bucket_config(q, PAB_KIND, "NoSuchPublicAccessBlockConfiguration");
}

void s3_delete_public_access_block(s3_req *q) {
    if (s3_drop_bucket_config(q, PAB_KIND) != 0) return;
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}

/* ---- ACLs ----------------------------------------------------------------------------------- */

static const struct {
    const char *header;
    uint8_t perm;
} grant_headers[] = {
    {"x-amz-grant-read", ACL_READ}, {"x-amz-grant-write", ACL_WRITE}, {"x-amz-grant-read-acp", ACL_READ_ACP},
    {"x-amz-grant-write-acp", ACL_WRITE_ACP}, {"x-amz-grant-full-control", ACL_FULL_CONTROL},
};

/* The ACL a request's headers ask for (x-amz-acl or x-amz-grant-*), for a
 * bucket (object false) or an object owned by owner.  Returns 1 with *acl
 * set, 0 when the request names none, -1 answered. */
static int acl_from_headers(s3_req *q, bool object, int64_t owner, access_acl *acl) {
    /* A POST form names its ACL in its acl field; its headers are not read. */
    const char *canned = s3_request_value(q, q->post ? "acl" : "x-amz-acl");
    bool grants = false;
    for (size_t i = 0; !q->post && i < sizeof grant_headers / sizeof grant_headers[0]; i++)
        grants = grants || http_header(q->http, grant_headers[i].header);
    if (!canned && !grants) return 0;
    if (canned && grants) {
        s3_error(q, "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed");
        return -1;
    }
    if (canned) {
        if (access_acl_canned(canned, object, owner, q->bk.owner_id ? q->bk.owner_id : owner, acl) != 0) {
            s3_error(q, "InvalidArgument", "Invalid canned ACL.");
            return -1;
        }
        return 1;
    }
    memset(acl, 0, sizeof *acl);
    acl->owner = owner;
    for (size_t i = 0; i < sizeof grant_headers / sizeof grant_headers[0]; i++) {
        const char *v = http_header(q->http, grant_headers[i].header), *code, *why;
        if (v && access_acl_add_header(acl, grant_headers[i].perm, v, &code, &why) != 0) {
            s3_error(q, code, why);
            return -1;
        }
    }
    return 1;
}

/* Whether ACLs are disabled on the bucket (BucketOwnerEnforced), and a
 * request setting acl is then refused: only the owner's full control (or
 * bucket-owner-full-control on an object) is accepted, as S3 does.
 * Returns 0 to go on (*enabled says whether to store), or answered. */
static int acl_allowed(s3_req *q, int64_t bucket_id, const access_acl *acl, bool *enabled, int *pab) {
    char *own = NULL, *pabdoc = NULL;
    int rc = meta_bucket_config_get(q->gw->d.meta, bucket_id, "ownership", &own);
    if (rc == 0 || rc == CAIRN_ENOTFOUND) {
        int r2 = meta_bucket_config_get(q->gw->d.meta, bucket_id, PAB_KIND, &pabdoc);
        rc = r2 == CAIRN_ENOTFOUND ? 0 : r2;
    }
    if (rc != 0) {
        free(own);
        s3_meta_error(q, rc, "InternalError", "reading the bucket's access configuration failed");
        return -1;
    }
    *enabled = !own || strcmp(own, "BucketOwnerEnforced") != 0;
    *pab = pabdoc ? pab_of(pabdoc) : 0;
    free(own);
    free(pabdoc);
    if (!*enabled && acl) {
        /* Full control to the owner, and to the bucket owner (as
         * bucket-owner-full-control asks), is what BucketOwnerEnforced
         * means already: accepted, nothing stored. */
        bool plain = true;
        for (int i = 0; i < acl->n; i++)
            plain = plain && acl->g[i].grantee == GRANTEE_USER && acl->g[i].perm == ACL_FULL_CONTROL &&
                    (acl->g[i].id == q->bk.owner_id || acl->g[i].id == acl->owner);
        if (!plain) {
            s3_error(q, "AccessControlListNotSupported", "The bucket does not allow ACLs");
            return -1;
        }
    }
    if (acl && (*pab & PAB_BLOCK_PUBLIC_ACLS) && access_acl_is_public(acl)) {
        s3_error(q, "AccessDenied", "The bucket's public access block forbids public ACLs (BlockPublicAcls).");
        return -1;
    }
    return 0;
}

/* The ACL of a PutBucketAcl or PutObjectAcl: the headers', or the body's
 * AccessControlPolicy.  1 with *acl, -1 answered. */
static int acl_of_put(s3_req *q, bool object, int64_t owner, access_acl *acl) {
    int h = acl_from_headers(q, object, owner, acl);
    if (h != 0) {
        if (h > 0 && q->body.len > 0) {
            s3_error(q, "UnexpectedContent", "This request does not support content with ACL headers.");
            return -1;
        }
        return h;
    }
    if (q->body.len == 0) {
        s3_error(q, "MissingSecurityHeader", "Your request is missing a required header: an ACL or an AccessControlPolicy.");
        return -1;
    }
    const char *code, *why;
    int rc = access_acl_parse_xml(q->body.data, q->body.len, acl, &code, &why);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return -1;
    }
    if (rc != 0) {
        s3_error(q, code, why);
        return -1;
    }
    if (acl->owner != owner) {
        s3_error(q, "AccessDenied", "The Owner of an AccessControlPolicy cannot be changed.");
        return -1;
    }
    return 1;
}

void s3_put_bucket_acl(s3_req *q) {
    access_acl acl;
    bool enabled;
    int pab;
    if (acl_of_put(q, false, q->bk.owner_id, &acl) < 0 || acl_allowed(q, q->bucket_id, &acl, &enabled, &pab) != 0)
        return;
    buf_t b;
    buf_init(&b);
    access_acl_to_text(&acl, &b);
    int rc = b.oom ? CAIRN_ENOMEM : meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, ACL_KIND, b.data);
    buf_free(&b);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the bucket ACL failed");
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

/* CreateBucket's x-amz-acl or x-amz-grant-*, checked before the bucket is
 * made (s3_bucket_acl_check_create) and stored once it is. */
int s3_bucket_acl_from_create(s3_req *q, int64_t bucket_id, const char *ownership) {
    access_acl acl;
    if (strcmp(ownership, "BucketOwnerEnforced") == 0) return 0;
    int h = acl_from_headers(q, false, q->who.user_id, &acl);
    if (h <= 0) return h;
    buf_t b;
    buf_init(&b);
    access_acl_to_text(&acl, &b);
    int rc = b.oom ? CAIRN_ENOMEM : meta_bucket_config_put(q->gw->d.meta, q->bucket, bucket_id, ACL_KIND, b.data);
    buf_free(&b);
    return rc;
}

int s3_bucket_acl_check_create(s3_req *q, const char *ownership) {
    access_acl acl;
    int h = acl_from_headers(q, false, q->who.user_id, &acl);
    if (h <= 0) return h;
    if (strcmp(ownership, "BucketOwnerEnforced") != 0) return 0;
    for (int i = 0; i < acl.n; i++)
        if (!(acl.g[i].grantee == GRANTEE_USER && acl.g[i].perm == ACL_FULL_CONTROL && acl.g[i].id == acl.owner)) {
            s3_error(q, "InvalidBucketAclWithObjectOwnership",
                     "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting");
            return -1;
        }
    return 0;
}

void s3_get_bucket_acl(s3_req *q) {
    access_acl acl;
    char *text = NULL;
    int rc = meta_bucket_config_get(q->gw->d.meta, q->bucket_id, ACL_KIND, &text);
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        s3_meta_error(q, rc, "InternalError", "reading the bucket ACL failed");
        return;
    }
    if (!text || access_acl_from_text(text, &acl) != 0) {
        access_acl_canned(q->bk.public_read ? "public-read" : "private", false, q->bk.owner_id, q->bk.owner_id, &acl);
    }
    free(text);
    buf_t b;
    buf_init(&b);
    access_acl_to_xml(&acl, &b);
    s3_respond_xml(q, 200, &b);
}

/* Stamps the ACL a write's headers ask for into the new version's
 * headers_json (object owner: the writer, or the bucket owner when the
 * bucket enforces ownership or prefers it and is given full control).
 * 0, or answered. */
int s3_acl_stamp(s3_req *q, char **headers_json) {
    access_acl acl;
    int64_t writer = q->who.anonymous ? q->bk.owner_id : q->who.user_id;
    int h = acl_from_headers(q, true, writer, &acl);
    if (h < 0) return -1;
    /* A copy's headers may hold its source's ACL, which is not the copy's. */
    bool had = *headers_json && strstr(*headers_json, "\"" OBJECT_ACL_MEMBER "\"");
    bool store = false;
    if (h > 0 || writer != q->bk.owner_id) {
        bool enabled;
        int pab;
        if (acl_allowed(q, q->bucket_id, h > 0 ? &acl : NULL, &enabled, &pab) != 0) return -1;
        store = enabled;
        if (store && h == 0) access_acl_canned("private", true, writer, q->bk.owner_id, &acl);
        /* BucketOwnerPreferred: given full control, the bucket owner owns it. */
        if (store && acl.owner != q->bk.owner_id && q->bk.owner_id) {
            char *own = NULL;
            if (meta_bucket_config_get(q->gw->d.meta, q->bucket_id, "ownership", &own) == 0 &&
                !strcmp(own, "BucketOwnerPreferred"))
                for (int i = 0; i < acl.n; i++)
                    if (acl.g[i].grantee == GRANTEE_USER && acl.g[i].id == q->bk.owner_id &&
                        acl.g[i].perm == ACL_FULL_CONTROL)
                        acl.owner = q->bk.owner_id;
            free(own);
        }
    }
    if (!store && !had) return 0;
    json_error_t err;
    json_t *j = json_loads(*headers_json ? *headers_json : "{}", 0, &err);
    int rc = json_is_object(j) ? 0 : CAIRN_ENOMEM;
    if (rc == 0) json_object_del(j, OBJECT_ACL_MEMBER);
    if (rc == 0 && store) {
        buf_t b;
        buf_init(&b);
        access_acl_to_text(&acl, &b);
        rc = b.oom ? CAIRN_ENOMEM : json_object_set_new(j, OBJECT_ACL_MEMBER, json_string(b.data));
        buf_free(&b);
    }
    char *out = rc == 0 ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    char *copy = out ? arena_strdup(q->http->arena, out) : NULL;
    free(out);
    if (!copy) {
        s3_error_nomem(q);
        return -1;
    }
    *headers_json = copy;
    return 0;
}

/* The version an object ACL call names into *o, judged by its own ACL
 * where the authorize stage left that to it.  0, or answered. */
static int acl_target(s3_req *q, meta_object *o) {
    if (s3_named_version(q, o) != 0) return -1;
    if (s3_object_acl_check(q, o) == 0) return 0;
    meta_object_clear(o);
    return -1;
}

void s3_get_object_acl(s3_req *q) {
    meta_object o;
    if (acl_target(q, &o) != 0) return;
    access_acl acl;
    object_acl_of(&q->bk, o.headers_json, &acl);
    if (q->bk.versioning != META_VERSIONING_OFF) http_add_header(q->http, "x-amz-version-id", s3_version_id(&o));
    meta_object_clear(&o);
    buf_t b;
    buf_init(&b);
    access_acl_to_xml(&acl, &b);
    s3_respond_xml(q, 200, &b);
}

void s3_put_object_acl(s3_req *q) {
    meta_object o;
    if (acl_target(q, &o) != 0) return;
    access_acl cur, acl;
    object_acl_of(&q->bk, o.headers_json, &cur);
    bool enabled;
    int pab;
    int rc = acl_of_put(q, true, cur.owner, &acl) < 0 ? -1 : acl_allowed(q, q->bucket_id, &acl, &enabled, &pab);
    if (rc != 0) {
        meta_object_clear(&o);
        return;
    }
    buf_t b;
    buf_init(&b);
    access_acl_to_text(&acl, &b);
    json_error_t err;
    json_t *j = json_loads(o.headers_json ? o.headers_json : "{}", 0, &err);
    char *out = NULL;
    if (json_is_object(j) && !b.oom && json_object_set_new(j, OBJECT_ACL_MEMBER, json_string(b.data)) == 0)
        out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    buf_free(&b);
    rc = out ? meta_object_set_headers_if(q->gw->d.meta, q->bk.name, q->bucket_id, q->key, q->key_len, o.version_id,
                                          o.headers_json, out)
             : CAIRN_ENOMEM;
    free(out);
    if (q->bk.versioning != META_VERSIONING_OFF) http_add_header(q->http, "x-amz-version-id", s3_version_id(&o));
    meta_object_clear(&o);
    if (rc == CAIRN_ECONFLICT) {
        s3_error(q, "OperationAborted", "A conflicting operation is in progress against this resource. Please try again.");
        return;
    }
    if (rc == CAIRN_ENOTFOUND) {
        s3_error(q, "NoSuchKey", NULL);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the object ACL failed");
        return;
    }
    s3_committed(q, q->key, q->key_len);
    http_respond(q->http, 200, "", 0);
}
