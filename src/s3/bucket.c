/*
 * bucket.c — bucket operations and object listing (ListObjects V1 and V2).
 *
 * Listing walks the (bucket, key) index in binary order.  With a delimiter,
 * each common prefix found makes the walk seek past every key under it (to the
 * prefix's successor), so a page costs O(entries on the page) index seeks no
 * matter how many keys a prefix holds or how deep into the bucket the page is.
 */
#include "s3/internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- buckets -------------------------------------------------------------------- */

typedef struct {
    buf_t *b;
    const char *region;     /* bucket-region: only buckets there; NULL any */
    char last[64];          /* the last name seen: where the next page starts */
} list_buckets_ctx;

static int add_bucket(void *ud, const meta_bucket *bk) {
    list_buckets_ctx *c = ud;
    snprintf(c->last, sizeof c->last, "%s", bk->name);
    if (c->region && strcmp(c->region, bk->region) != 0) return 0;
    char ts[40];
    time_fmt_iso8601(bk->created_ms, ts, sizeof ts);
    buf_puts(c->b, "<Bucket><Name>");
    buf_xml_escape(c->b, bk->name, strlen(bk->name));
    buf_puts(c->b, "</Name><CreationDate>");
    buf_puts(c->b, ts);
    buf_puts(c->b, "</CreationDate><BucketRegion>");
    buf_xml_escape(c->b, bk->region, strlen(bk->region));
    buf_puts(c->b, "</BucketRegion></Bucket>");
    return 0;
}

/* Where a ListBuckets page starts: continuation-token (opaque: the last
 * name of the page before, as ListObjectsV2's tokens are made), empty
 * meaning none.  0, or answers InvalidArgument. */
static int list_buckets_start(s3_req *q, char after[64]) {
    after[0] = '\0';
    const char *tok = s3_param_get(q, "continuation-token");
    if (!tok || !*tok) return 0;
    char name[1025];
    size_t len = 0;
    bool prefix_token = false;
    if (s3_list_token_decode(tok, name, &len, &prefix_token) != 0 || prefix_token || len >= 64 ||
        !s3_bucket_name_valid(name)) {
        s3_error(q, "InvalidArgument", "The continuation token provided is incorrect");
        return -1;
    }
    memcpy(after, name, len + 1);
    return 0;
}

/*
 * ListBuckets.  Without max-buckets, continuation-token, prefix or
 * bucket-region it lists every bucket, as S3 did before it paginated;
 * with any of them it answers a page of max-buckets (1 .. 10000, default
 * 10000), and a ContinuationToken when more follow.  A page costs
 * O(max-buckets) (meta_bucket_list_page).
 */
void s3_list_buckets(s3_req *q) {
    const char *mb = s3_param_get(q, "max-buckets");
    const char *prefix = s3_param_get(q, "prefix");
    const char *region = s3_param_get(q, "bucket-region");
    bool paged = mb || prefix || region || s3_param_has(q, "continuation-token");
    int max = 10000;
    if (mb && (s3_parse_max(mb, 10000, 10001, &max) != 0 || max < 1 || max > 10000)) {
        s3_error(q, "InvalidArgument", "Argument max-buckets must be an integer between 1 and 10000.");
        return;
    }
    char after[64];
    if (list_buckets_start(q, after) != 0) return;
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s3_owner_xml(q, &b, q->who.user_id);
    buf_puts(&b, "<Buckets>");
    list_buckets_ctx c = {&b, region && *region ? region : NULL, ""};
    int64_t owner = q->who.is_root ? -1 : q->who.user_id;
    bool more = false;
    int rc = paged ? meta_bucket_list_page(q->gw->d.meta, owner, prefix, after, max, add_bucket, &c, &more)
                   : meta_bucket_list(q->gw->d.meta, owner, add_bucket, &c);
    if (rc != 0) {
        buf_free(&b);
        s3_meta_error(q, rc, "InternalError", "listing buckets failed");
        return;
    }
    buf_puts(&b, "</Buckets>");
    if (more) {
        char *t = s3_list_token_encode(c.last, strlen(c.last), false);
        if (!t) {
            buf_free(&b);
            s3_error(q, "InternalError", NULL);
            return;
        }
        buf_printf(&b, "<ContinuationToken>%s</ContinuationToken>", t);
        free(t);
    }
    if (prefix) {
        buf_puts(&b, "<Prefix>");
        buf_xml_escape(&b, prefix, strlen(prefix));
        buf_puts(&b, "</Prefix>");
    }
    buf_puts(&b, "</ListAllMyBucketsResult>");
    s3_respond_xml(q, 200, &b);
}

void s3_create_bucket(s3_req *q) {
    if (!s3_bucket_name_valid(q->bucket)) {
        s3_error(q, "InvalidBucketName", NULL);
        return;
    }
    char location[64];
    int prc = s3_parse_create_bucket_xml(q->body.data ? q->body.data : "", q->body.len, location, sizeof location);
    if (prc != 0) {
        s3_error(q, prc == CAIRN_ENOMEM ? "InternalError" : "MalformedXML", NULL);
        return;
    }
    const char *region = q->gw->cfg.region;
    if (location[0] && strcmp(location, region) != 0) {
        s3_error(q, "InvalidLocationConstraint",
                 "The specified location-constraint is not valid for this endpoint.");
        return;
    }
    /* Object lock turns versioning on with it, for good (S3). */
    const char *lock = http_header(q->http, "x-amz-bucket-object-lock-enabled");
    if (lock && strcasecmp(lock, "true") != 0 && strcasecmp(lock, "false") != 0) {
        s3_error(q, "InvalidArgument", "x-amz-bucket-object-lock-enabled must be true or false.");
        return;
    }
    const char *ownership;
    if (s3_ownership_header(q, &ownership) != 0 || s3_bucket_acl_check_create(q, ownership) != 0) return;
    meta_bucket bk = {0};
    snprintf(bk.name, sizeof bk.name, "%s", q->bucket);
    bk.owner_id = q->who.user_id;
    bk.created_ms = time_now_ms();
    snprintf(bk.region, sizeof bk.region, "%s", region);
    bk.object_lock = lock && !strcasecmp(lock, "true");
    if (bk.object_lock) bk.versioning = META_VERSIONING_ENABLED;
    int64_t owner = 0;
    int rc = meta_bucket_create(q->gw->d.meta, &bk, &owner);
    if (rc == CAIRN_EEXIST) {
        s3_error(q, owner == q->who.user_id ? "BucketAlreadyOwnedByYou" : "BucketAlreadyExists", NULL);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "creating the bucket failed");
        return;
    }
    q->bucket_id = bk.id;
    /* S3 gives every new bucket its ObjectOwnership (ownership.c).  A
     * bucket without one is what S3's buckets older than that default look
     * like; rather than make one, the bucket goes again (it is empty: no
     * one else has been told it exists) and the client may retry. */
    rc = s3_ownership_store(q, bk.id, ownership);
    const char *what = "CreateBucket: storing its ownership controls failed";
    if (rc == 0 && (rc = s3_bucket_acl_from_create(q, bk.id, ownership)) != 0) what = "CreateBucket: storing its ACL failed";
    if (rc != 0) {
        int drc = meta_bucket_delete(q->gw->d.meta, bk.name, bk.id);
        log_write(LOG_ERROR, q->http->request_id, what,
                  "bucket", bk.name, "error", cairn_strerror(rc), "undo", drc ? cairn_strerror(drc) : "bucket removed",
                  NULL);
        s3_committed(q, NULL, 0); /* caches that heard of it hear it is gone */
        s3_meta_error(q, rc, "InternalError", "creating the bucket failed");
        return;
    }
    s3_committed(q, NULL, 0);
    char loc[300];
    snprintf(loc, sizeof loc, "/%s", q->bucket);
    http_add_header(q->http, "Location", loc);
    http_respond(q->http, 200, "", 0);
}

void s3_head_bucket(s3_req *q) {
    http_add_header(q->http, "x-amz-bucket-region", q->bk.region);
    http_respond(q->http, 200, "", 0);
}

void s3_delete_bucket(s3_req *q) {
    int rc = meta_bucket_delete(q->gw->d.meta, q->bucket, q->bucket_id);
    if (rc == CAIRN_ENOTEMPTY) s3_error(q, "BucketNotEmpty", NULL);
    else if (rc == CAIRN_ENOTFOUND) s3_error(q, "NoSuchBucket", NULL);
    else if (rc != 0) s3_meta_error(q, rc, "InternalError", "deleting the bucket failed");
    else {
        s3_committed(q, NULL, 0);
        /* Its uploads were aborted with it; their parts' shards are in the
         * trash, which a job empties (durably: a crash leaves them listed). */
        const s3_jobs *jobs = &q->gw->d.jobs;
        if (jobs->empty_trash_later) jobs->empty_trash_later(jobs->ud);
        http_respond(q->http, 204, "", 0);
    }
}

void s3_get_bucket_location(s3_req *q) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    /* S3 answers an empty constraint for us-east-1. */
    if (strcmp(q->bk.region, "us-east-1") != 0) buf_xml_escape(&b, q->bk.region, strlen(q->bk.region));
    buf_puts(&b, "</LocationConstraint>");
    s3_respond_xml(q, 200, &b);
}

/* GET on bucket subresources we do not store yet: answer as S3 does for a bucket
 * without that configuration, so clients that probe them keep working. */
void s3_bucket_subresource(s3_req *q) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if (q->op == OP_GET_BUCKET_VERSIONING) {
        /* Never enabled: no Status, as S3 answers. */
        if (q->bk.versioning == META_VERSIONING_OFF)
            buf_puts(&b, "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>");
        else
            buf_printf(&b, "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                           "<Status>%s</Status></VersioningConfiguration>",
                       q->bk.versioning == META_VERSIONING_ENABLED ? "Enabled" : "Suspended");
    } else if (s3_param_has(q, "logging")) { /* logging off: no LoggingEnabled */
        buf_puts(&b, "<BucketLoggingStatus xmlns=\"http://doc.s3.amazonaws.com/2006-03-01\"/>");
    } else if (s3_param_has(q, "notification")) {
        buf_puts(&b, "<NotificationConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>");
    } else if (s3_param_has(q, "accelerate")) { /* never enabled: no Status */
        buf_puts(&b, "<AccelerateConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>");
    } else if (s3_param_has(q, "requestPayment")) {
        buf_puts(&b, "<RequestPaymentConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                     "<Payer>BucketOwner</Payer></RequestPaymentConfiguration>");
    } else {
        buf_free(&b);
        const char *code = "NotImplemented";
        if (s3_param_has(q, "policy")) code = "NoSuchBucketPolicy";
        else if (s3_param_has(q, "lifecycle")) code = "NoSuchLifecycleConfiguration";
        else if (s3_param_has(q, "cors")) code = "NoSuchCORSConfiguration";
        else if (s3_param_has(q, "tagging")) code = "NoSuchTagSet";
        else if (s3_param_has(q, "encryption")) code = "ServerSideEncryptionConfigurationNotFoundError";
        else if (s3_param_has(q, "object-lock")) code = "ObjectLockConfigurationNotFoundError";
        else if (s3_param_has(q, "website")) code = "NoSuchWebsiteConfiguration";
        else if (s3_param_has(q, "replication")) code = "ReplicationConfigurationNotFoundError";
        else if (s3_param_has(q, "publicAccessBlock")) code = "NoSuchPublicAccessBlockConfiguration";
        s3_error(q, code, NULL);
        return;
    }
    s3_respond_xml(q, 200, &b);
}

/* ---- listing ---------------------------------------------------------------------------- */

typedef struct {
    char *key;          /* owned */
    size_t key_len;
    bool is_prefix;
    int64_t size;
    char etag[72];
    int64_t mtime_ms;
    int64_t owner_id;
} list_item;

typedef struct {
    list_item *items;
    int n, max;
    const char *prefix;
    size_t prefix_len;
    const char *delim;
    size_t delim_len;
    const char *marker;     /* V1 marker / V2 start-after: a prefix equal to it is skipped */
    size_t marker_len;
    /* where the next batch starts */
    char *from;
    size_t from_len;
    bool inclusive;
    bool restart;           /* a common prefix was taken: seek past it */
    bool truncated;
    bool stop;              /* nothing can follow (prefix of only 0xff bytes) */
    bool oom;
} list_walk;

/* The smallest string greater than every string starting with s: drop trailing
 * 0xff bytes, then increment the last byte.  Returns false if none exists. */
static bool successor(char *s, size_t *len) {
    while (*len && (unsigned char)s[*len - 1] == 0xff) (*len)--;
    if (!*len) return false;
    s[*len - 1] = (char)((unsigned char)s[*len - 1] + 1);
    return true;
}

static bool push_item(list_walk *w, const char *key, size_t kl, bool is_prefix, const meta_list_entry *e) {
    list_item *it = &w->items[w->n];
    it->key = malloc(kl + 1);
    if (!it->key) { w->oom = true; return false; }
    memcpy(it->key, key, kl);
    it->key[kl] = '\0';
    it->key_len = kl;
    it->is_prefix = is_prefix;
    if (e) {
        it->size = e->size;
        snprintf(it->etag, sizeof it->etag, "%s", e->etag);
        it->mtime_ms = e->mtime_ms;
        it->owner_id = e->owner_id;
    }
    w->n++;
    return true;
}

static bool set_from(list_walk *w, const char *k, size_t kl, bool inclusive) {
    char *f = realloc(w->from, kl + 1);
    if (!f) { w->oom = true; return false; }
    memcpy(f, k, kl);
    f[kl] = '\0';
    w->from = f;
    w->from_len = kl;
    w->inclusive = inclusive;
    return true;
}

static int walk_entry(void *ud, const meta_list_entry *e) {
    list_walk *w = ud;
    if (w->delim_len) {
        const char *rest = e->key + w->prefix_len;
        size_t rl = e->key_len - w->prefix_len;
        const char *d = memmem(rest, rl, w->delim, w->delim_len);
        if (d) {
            size_t cpl = (size_t)(d - e->key) + w->delim_len;
            bool is_marker = w->marker && cpl == w->marker_len && memcmp(e->key, w->marker, cpl) == 0;
            if (!is_marker) {
                if (w->n == w->max) { w->truncated = true; return 1; }
                if (!push_item(w, e->key, cpl, true, NULL)) return 1;
            }
            /* Seek past every key under this prefix. */
            if (!set_from(w, e->key, cpl, true)) return 1;
            if (!successor(w->from, &w->from_len)) { w->stop = true; return 1; }
            w->restart = true;
            return 1;
        }
    }
    if (w->n == w->max) { w->truncated = true; return 1; }
    if (!push_item(w, e->key, e->key_len, false, e)) return 1;
    return set_from(w, e->key, e->key_len, false) ? 0 : 1;
}

/* Runs the walk until the page is full or the keys run out. */
static int walk(s3_req *q, list_walk *w) {
    for (;;) {
        w->restart = false;
        bool more = false;
        int want = w->max - w->n + 1;
        int rc = meta_object_list(q->gw->d.meta, q->bucket, q->bucket_id, w->prefix, w->prefix_len,
                                  w->from_len || w->from ? w->from : NULL, w->from_len, w->inclusive,
                                  want, walk_entry, w, &more);
        if (rc != 0) return rc;
        if (w->oom) return CAIRN_ENOMEM;
        if (w->truncated || w->stop) return 0;
        if (w->restart) continue;
        if (!more) return 0;
    }
}

static int parse_token(const char *tok, list_walk *w) {
    char key[1025];
    size_t len = 0;
    bool inclusive = false;
    int rc = s3_list_token_decode(tok, key, &len, &inclusive);
    if (rc != 0) return rc;
    return set_from(w, key, len, inclusive) ? 0 : CAIRN_ENOMEM;
}

static void put_enc(buf_t *b, const char *s, size_t n, bool url) {
    if (url) {
        buf_t e;
        buf_init(&e);
        buf_url_encode(&e, s, n, true);
        buf_xml_escape(b, e.data ? e.data : "", e.len);
        buf_free(&e);
    } else {
        buf_xml_escape(b, s, n);
    }
}

static void put_elem(buf_t *b, const char *name, const char *v, size_t n, bool url) {
    buf_printf(b, "<%s>", name);
    put_enc(b, v, n, url);
    buf_printf(b, "</%s>", name);
}

static void list_objects(s3_req *q, bool v2) {
    const char *prefix = s3_param_get(q, "prefix");
    const char *delim = s3_param_get(q, "delimiter");
    const char *mk = s3_param_get(q, "max-keys");
    const char *enc = s3_param_get(q, "encoding-type");
    const char *token = v2 ? s3_param_get(q, "continuation-token") : NULL;
    const char *start_after = v2 ? s3_param_get(q, "start-after") : s3_param_get(q, "marker");
    bool fetch_owner = !v2 || (s3_param_get(q, "fetch-owner") && !strcmp(s3_param_get(q, "fetch-owner"), "true"));
    if (enc && strcmp(enc, "url") != 0) {
        s3_error(q, "InvalidArgument", "Invalid Encoding Method specified in Request");
        return;
    }
    bool url = enc != NULL;
    int max = 1000;
    if (s3_parse_max(mk, 1000, 1000, &max) != 0) {
        s3_error(q, "InvalidArgument", "Provided max-keys not an integer or within integer range");
        return;
    }
    /* S3 treats an empty continuation-token as none. */
    if (token && !*token) token = NULL;
    if (delim && !*delim) delim = NULL;
    list_walk w = {0};
    w.max = max;
    w.prefix = prefix ? prefix : "";
    w.prefix_len = strlen(w.prefix);
    w.delim = delim;
    w.delim_len = delim ? strlen(delim) : 0;
    w.items = calloc((size_t)max + 1, sizeof *w.items);
    if (!w.items) { s3_error(q, "InternalError", NULL); return; }
    int rc = 0;
    if (token) {
        rc = parse_token(token, &w);
        if (rc == CAIRN_EINVAL) {
            free(w.items);
            s3_error(q, "InvalidArgument", "The continuation token provided is incorrect");
            return;
        }
    } else if (start_after && *start_after) {
        set_from(&w, start_after, strlen(start_after), false);
        w.marker = start_after;
        w.marker_len = strlen(start_after);
    }
    /* max-keys=0 answers no keys and IsTruncated false, as S3 does. */
    if (rc == 0 && max > 0) rc = walk(q, &w);
    if (rc != 0) {
        for (int i = 0; i < w.n; i++) free(w.items[i].key);
        free(w.items);
        free(w.from);
        s3_meta_error(q, rc, "InternalError", "listing failed");
        return;
    }

    buf_t b;
    buf_init(&b);
    buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<%s xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
               v2 ? "ListBucketResult" : "ListBucketResult");
    put_elem(&b, "Name", q->bucket, strlen(q->bucket), false);
    put_elem(&b, "Prefix", w.prefix, w.prefix_len, url);
    if (v2) {
        if (token) put_elem(&b, "ContinuationToken", token, strlen(token), false);
        if (start_after) put_elem(&b, "StartAfter", start_after, strlen(start_after), url);
        int keycount = w.n;
        buf_printf(&b, "<KeyCount>%d</KeyCount>", keycount);
    } else {
        put_elem(&b, "Marker", start_after ? start_after : "", start_after ? strlen(start_after) : 0, url);
    }
    buf_printf(&b, "<MaxKeys>%d</MaxKeys>", max);
    if (delim) put_elem(&b, "Delimiter", delim, strlen(delim), url);
    if (url) buf_puts(&b, "<EncodingType>url</EncodingType>");
    buf_printf(&b, "<IsTruncated>%s</IsTruncated>", w.truncated ? "true" : "false");
    if (w.truncated) { /* only ever set on a full page: w.n == max > 0 */
        const list_item *last = &w.items[w.n - 1];
        if (v2) {
            char *t = s3_list_token_encode(last->key, last->key_len, last->is_prefix);
            if (t) put_elem(&b, "NextContinuationToken", t, strlen(t), false);
            free(t);
        } else {
            put_elem(&b, "NextMarker", last->key, last->key_len, url);
        }
    }
    int64_t cached_owner = -1;
    buf_t owner_xml;
    buf_init(&owner_xml);
    for (int i = 0; i < w.n; i++) {
        list_item *it = &w.items[i];
        if (it->is_prefix) continue;
        char ts[40];
        time_fmt_iso8601(it->mtime_ms, ts, sizeof ts);
        buf_puts(&b, "<Contents>");
        put_elem(&b, "Key", it->key, it->key_len, url);
        buf_printf(&b, "<LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag><Size>%lld</Size>",
                   ts, it->etag, (long long)it->size);
        if (fetch_owner) {
            if (it->owner_id != cached_owner) {
                buf_reset(&owner_xml);
                s3_owner_xml(q, &owner_xml, it->owner_id);
                cached_owner = it->owner_id;
            }
            buf_append(&b, owner_xml.data, owner_xml.len);
        }
        buf_puts(&b, "<StorageClass>STANDARD</StorageClass></Contents>");
    }
    for (int i = 0; i < w.n; i++) {
        list_item *it = &w.items[i];
        if (!it->is_prefix) continue;
        buf_puts(&b, "<CommonPrefixes>");
        put_elem(&b, "Prefix", it->key, it->key_len, url);
        buf_puts(&b, "</CommonPrefixes>");
    }
    buf_puts(&b, "</ListBucketResult>");
    buf_free(&owner_xml);
    for (int i = 0; i < w.n; i++) free(w.items[i].key);
    free(w.items);
    free(w.from);
    s3_respond_xml(q, 200, &b);
}

void s3_list_objects_v1(s3_req *q) { list_objects(q, false); }
void s3_list_objects_v2(s3_req *q) { list_objects(q, true); }

/* ---- versioning ---------------------------------------------------------------------------------- */

void s3_put_bucket_versioning(s3_req *q) {
    int status = 0;
    bool mfa = false, illegal = false;
    int rc = s3_parse_versioning_xml(q->body.data ? q->body.data : "", q->body.len, &status, &mfa, &illegal);
    if (rc == CAIRN_ENOMEM) {
        s3_error(q, "InternalError", NULL);
        return;
    }
    if (rc != 0 || status == 0) {
        s3_error(q, illegal ? "IllegalVersioningConfigurationException" : "MalformedXML",
                 illegal ? "The versioning configuration specified in the request is invalid." : NULL);
        return;
    }
    if (mfa) {
        /* MFA delete needs an MFA device and the x-amz-mfa header: cairn has neither. */
        s3_error(q, "NotImplemented", "MfaDelete is not supported.");
        return;
    }
    meta_versioning state = status == 1 ? META_VERSIONING_ENABLED : META_VERSIONING_SUSPENDED;
    rc = meta_bucket_set_versioning(q->gw->d.meta, q->bucket, q->bucket_id, state);
    if (rc == CAIRN_EINVAL) {
        /* Suspending a bucket with object lock. */
        s3_error(q, "InvalidBucketState", "An Object Lock configuration is present on this bucket, so the "
                                          "versioning state cannot be changed.");
        return;
    }
    if (rc == CAIRN_ENOTFOUND) {
        s3_error(q, "NoSuchBucket", NULL);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", NULL);
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

const char *s3_version_id(const meta_object *o) { return o->null_version ? "null" : o->version_id; }

/* One row of a versions page: a version, a delete marker or a common prefix. */
typedef struct {
    char *key;
    size_t key_len;
    bool is_prefix, is_latest, delete_marker;
    char version_id[33];        /* as S3 shows it ("null") */
    int64_t size, mtime_ms, owner_id;
    char etag[72];
} version_item;

typedef struct {
    version_item *items;
    int n, max;
    const char *prefix;
    size_t prefix_len;
    const char *delim;
    size_t delim_len;
    const char *marker;         /* key-marker: a common prefix equal to it is skipped */
    size_t marker_len;
    char *from;                 /* where the next batch starts */
    size_t from_len;
    int64_t from_seq;           /* meta_object_list_versions' after_seq */
    bool have_from, restart, truncated, stop, oom;
} version_walk;

static bool vw_from(version_walk *w, const char *k, size_t kl, int64_t seq) {
    char *f = realloc(w->from, kl + 1);
    if (!f) { w->oom = true; return false; }
    memcpy(f, k, kl);
    f[kl] = '\0';
    w->from = f;
    w->from_len = kl;
    w->from_seq = seq;
    w->have_from = true;
    return true;
}

static bool vw_push(version_walk *w, const char *key, size_t kl, const meta_version_entry *e) {
    version_item *it = &w->items[w->n];
    memset(it, 0, sizeof *it);
    if (!(it->key = malloc(kl + 1))) { w->oom = true; return false; }
    memcpy(it->key, key, kl);
    it->key[kl] = '\0';
    it->key_len = kl;
    it->is_prefix = e == NULL;
    if (e) {
        it->is_latest = e->is_latest;
        it->delete_marker = e->delete_marker;
        snprintf(it->version_id, sizeof it->version_id, "%s", e->null_version ? "null" : e->version_id);
        it->size = e->size;
        it->mtime_ms = e->mtime_ms;
        it->owner_id = e->owner_id;
        snprintf(it->etag, sizeof it->etag, "%s", e->etag);
    }
    w->n++;
    return true;
}

static int version_entry(void *ud, const meta_version_entry *e) {
    version_walk *w = ud;
    if (w->delim_len) {
        const char *d = memmem(e->key + w->prefix_len, e->key_len - w->prefix_len, w->delim, w->delim_len);
        if (d) {
            size_t cpl = (size_t)(d - e->key) + w->delim_len;
            bool is_marker = w->marker && cpl == w->marker_len && memcmp(e->key, w->marker, cpl) == 0;
            if (!is_marker) {
                if (w->n == w->max) { w->truncated = true; return 1; }
                if (!vw_push(w, e->key, cpl, NULL)) return 1;
            }
            /* Seek to the prefix's successor: no key under it comes again. */
            if (!vw_from(w, e->key, cpl, -1)) return 1;
            if (!successor(w->from, &w->from_len)) { w->stop = true; return 1; }
            w->restart = true;
            return 1;
        }
    }
    if (w->n == w->max) { w->truncated = true; return 1; }
    if (!vw_push(w, e->key, e->key_len, e)) return 1;
    return vw_from(w, e->key, e->key_len, e->seq) ? 0 : 1;
}

static int version_walk_run(s3_req *q, version_walk *w) {
    for (;;) {
        w->restart = false;
        bool more = false;
        int rc = meta_object_list_versions(q->gw->d.meta, q->bucket, q->bucket_id, w->prefix, w->prefix_len,
                                           w->have_from ? w->from : NULL, w->from_len, w->from_seq,
                                           w->max - w->n + 1, version_entry, w, &more);
        if (rc != 0) return rc;
        if (w->oom) return CAIRN_ENOMEM;
        if (w->truncated || w->stop) return 0;
        if (w->restart) continue;
        if (!more) return 0;
    }
}

void s3_list_object_versions(s3_req *q) {
    const char *prefix = s3_param_get(q, "prefix");
    const char *delim = s3_param_get(q, "delimiter");
    const char *enc = s3_param_get(q, "encoding-type");
    const char *key_marker = s3_param_get(q, "key-marker");
    const char *vid_marker = s3_param_get(q, "version-id-marker");
    if (enc && strcmp(enc, "url") != 0) {
        s3_error(q, "InvalidArgument", "Invalid Encoding Method specified in Request");
        return;
    }
    bool url = enc != NULL;
    int max = 1000;
    if (s3_parse_max(s3_param_get(q, "max-keys"), 1000, 1000, &max) != 0) {
        s3_error(q, "InvalidArgument", "Provided max-keys not an integer or within integer range");
        return;
    }
    if (delim && !*delim) delim = NULL;
    if (key_marker && !*key_marker) key_marker = NULL;
    if (vid_marker && !*vid_marker) vid_marker = NULL;
    if (vid_marker && !key_marker) {
        s3_error(q, "InvalidArgument", "A version-id marker cannot be specified without a key marker.");
        return;
    }
    version_walk w = {0};
    w.max = max;
    w.prefix = prefix ? prefix : "";
    w.prefix_len = strlen(w.prefix);
    w.delim = delim;
    w.delim_len = delim ? strlen(delim) : 0;
    int rc = 0;
    if (key_marker) {
        int64_t seq = 0;  /* after every version of the key marker */
        if (vid_marker) {
            meta_object m = {0};
            rc = meta_object_get_version(q->gw->d.meta, q->bucket, q->bucket_id, key_marker, strlen(key_marker),
                                         vid_marker, false, &m);
            seq = m.seq;
            meta_object_clear(&m);
            if (rc == CAIRN_ENOTFOUND) {
                s3_error(q, "InvalidArgument", "Invalid version id specified");
                return;
            }
            if (rc != 0) {
                s3_meta_error(q, rc, "InternalError", NULL);
                return;
            }
        }
        w.marker = key_marker;
        w.marker_len = strlen(key_marker);
        if (!vw_from(&w, key_marker, w.marker_len, seq)) rc = CAIRN_ENOMEM;
    }
    w.items = calloc((size_t)max + 1, sizeof *w.items);
    if (!w.items) rc = CAIRN_ENOMEM;
    if (rc == 0 && max > 0) rc = version_walk_run(q, &w);
    if (rc != 0) {
        for (int i = 0; i < w.n; i++) free(w.items[i].key);
        free(w.items);
        free(w.from);
        s3_meta_error(q, rc, "InternalError", "listing versions failed");
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<ListVersionsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    put_elem(&b, "Name", q->bucket, strlen(q->bucket), false);
    put_elem(&b, "Prefix", w.prefix, w.prefix_len, url);
    put_elem(&b, "KeyMarker", key_marker ? key_marker : "", key_marker ? strlen(key_marker) : 0, url);
    put_elem(&b, "VersionIdMarker", vid_marker ? vid_marker : "", vid_marker ? strlen(vid_marker) : 0, false);
    if (w.truncated) {
        const version_item *last = &w.items[w.n - 1];
        put_elem(&b, "NextKeyMarker", last->key, last->key_len, url);
        if (!last->is_prefix) put_elem(&b, "NextVersionIdMarker", last->version_id, strlen(last->version_id), false);
    }
    buf_printf(&b, "<MaxKeys>%d</MaxKeys>", max);
    if (delim) put_elem(&b, "Delimiter", delim, strlen(delim), url);
    if (url) buf_puts(&b, "<EncodingType>url</EncodingType>");
    buf_printf(&b, "<IsTruncated>%s</IsTruncated>", w.truncated ? "true" : "false");
    for (int i = 0; i < w.n; i++) {
        const version_item *it = &w.items[i];
        if (it->is_prefix) continue;
        char ts[40];
        time_fmt_iso8601(it->mtime_ms, ts, sizeof ts);
        const char *tag = it->delete_marker ? "DeleteMarker" : "Version";
        buf_printf(&b, "<%s>", tag);
        put_elem(&b, "Key", it->key, it->key_len, url);
        buf_printf(&b, "<VersionId>%s</VersionId><IsLatest>%s</IsLatest><LastModified>%s</LastModified>",
                   it->version_id, it->is_latest ? "true" : "false", ts);
        if (!it->delete_marker)
            buf_printf(&b, "<ETag>&quot;%s&quot;</ETag><Size>%lld</Size><StorageClass>STANDARD</StorageClass>",
                       it->etag, (long long)it->size);
        s3_owner_xml(q, &b, it->owner_id);
        buf_printf(&b, "</%s>", tag);
    }
    for (int i = 0; i < w.n; i++) {
        const version_item *it = &w.items[i];
        if (!it->is_prefix) continue;
        buf_puts(&b, "<CommonPrefixes>");
        put_elem(&b, "Prefix", it->key, it->key_len, url);
        buf_puts(&b, "</CommonPrefixes>");
    }
    buf_puts(&b, "</ListVersionsResult>");
    for (int i = 0; i < w.n; i++) free(w.items[i].key);
    free(w.items);
    free(w.from);
    s3_respond_xml(q, 200, &b);
}

/* ---- stored bucket configurations ---------------------------------------------------------------- */

void s3_answer_bucket_config(s3_req *q, const char *kind, const char *missing_code) {
    char *doc = NULL;
    int rc = meta_bucket_config_get(q->gw->d.meta, q->bucket_id, kind, &doc);
    if (rc == CAIRN_ENOTFOUND) {
        s3_error(q, missing_code, NULL);
        return;
    }
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "reading the bucket's configuration failed");
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, doc);
    free(doc);
    s3_respond_xml(q, 200, &b);
}

int s3_store_bucket_config(s3_req *q, const char *kind, const char *text, const char *what) {
    int rc = text ? meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, kind, text) : CAIRN_ENOMEM;
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return -1;
    }
    if (rc != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "storing %s failed", what);
        s3_meta_error(q, rc, "InternalError", msg);
        return -1;
    }
    return 0;
}

int s3_drop_bucket_config(s3_req *q, const char *kind) {
    int rc = meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, kind, "");
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "removing the bucket's configuration failed");
        return -1;
    }
    return 0;
}
