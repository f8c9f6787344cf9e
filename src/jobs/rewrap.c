/*
 * rewrap.c — the kms_rewrap job: after `cairn admin kms key rotate ID`,
 * moves every data key wrapped by an older version of key ID to its newest
 * version (docs/kms.md).
 *
 * It walks every version of every object (bucket by bucket, in the order
 * of meta_object_list_versions) and then the bucket's multipart uploads in
 * progress, reading each one's stored headers.  A row whose CRYPT_SSE_MEMBER
 * says SSE-S3 or SSE-KMS under key ID at a version older than the newest
 * gets its data key unwrapped with the old version, wrapped with the
 * newest, and stored with a compare-and-set on the headers it read
 * (meta_object_set_headers_if, meta_upload_set_headers_if): a concurrent
 * change (a tag, a retention) wins and the row is read again.  The object's
 * bytes are never read or rewritten: the data key does not change, only
 * how it is wrapped.  Multipart parts derive their keys from the object's
 * (crypt_part_key), so they need nothing.
 *
 * One run looks at a batch of rows and, if the walk is not through, enqueues
 * its continuation with the cursor in its args (the bucket, the phase, the
 * last key and seq or upload), then completes: a killed run is run again
 * from its own cursor, and whatever it had already moved is now at the
 * newest version, which the walk skips.  So the job is idempotent and
 * resumes.  A continuation's unique key names the key, the version the
 * chain moves to, and its place in the chain, so a run repeated after a
 * crash finds its continuation still pending and adds none.  (Repeated
 * after the continuation ran, it starts a second walk from its cursor:
 * wasted reads, never a wrong write.)
 */
#include "crypt/kms.h"
#include "jobs/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#define REWRAP_BATCH 500
#define REWRAP_PAGE 100
#define REWRAP_TRIES 5

typedef struct {
    char key_id[KMS_ID_MAX + 1];
    int target;                /* the newest version when the chain began (0: read it) */
    int64_t n;                 /* the run's place in the chain */
    char bucket[64];
    char phase;                /* in bucket: 'o' object versions, 'u' uploads, 'z' all done */
    bool has_key;              /* after (key, seq) / (key, upload) */
    char key[1025];
    size_t key_len;
    int64_t seq;
    char upload[65];
} cursor;

typedef struct {
    meta_store *ms;
    kms *k;
    const char *key_id;
    int newest;
    jobs_rewrap_stats *st;
    char *err;
    size_t errlen;
} walk;

static int parse_args(const char *args, cursor *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->phase = 'o';
    json_t *a = json_loads(args ? args : "", 0, NULL);
    const char *id = a ? json_string_value(json_object_get(a, "key_id")) : NULL;
    if (!id || !kms_id_valid(id)) {
        snprintf(err, errlen, "kms_rewrap args need a valid key_id");
        json_decref(a);
        return CAIRN_EINVAL;
    }
    snprintf(c->key_id, sizeof c->key_id, "%s", id);
    c->target = (int)json_integer_value(json_object_get(a, "target"));
    c->n = json_integer_value(json_object_get(a, "n"));
    const char *b = json_string_value(json_object_get(a, "bucket"));
    const char *ph = json_string_value(json_object_get(a, "phase"));
    const char *kh = json_string_value(json_object_get(a, "key"));
    const char *up = json_string_value(json_object_get(a, "upload"));
    int rc = 0;
    if (b) snprintf(c->bucket, sizeof c->bucket, "%s", b);
    if (ph && (ph[0] == 'o' || ph[0] == 'u' || ph[0] == 'z')) c->phase = ph[0];
    if (kh) {
        size_t n = 0;
        if (strlen(kh) > 2 * (sizeof c->key - 1) || hex_decode(kh, strlen(kh), c->key, sizeof c->key - 1, &n) != 0)
            rc = CAIRN_EINVAL;
        c->key_len = n;
        c->has_key = true;
    }
    c->seq = json_integer_value(json_object_get(a, "seq"));
    if (up) snprintf(c->upload, sizeof c->upload, "%s", up);
    json_decref(a);
    if (rc != 0) snprintf(err, errlen, "kms_rewrap args: a bad cursor key");
    return rc;
}

static char *format_args(const cursor *c) {
    json_t *a = json_object();
    if (!a) return NULL;
    json_object_set_new(a, "key_id", json_string(c->key_id));
    json_object_set_new(a, "target", json_integer(c->target));
    json_object_set_new(a, "n", json_integer(c->n));
    json_object_set_new(a, "bucket", json_string(c->bucket));
    char phase[2] = {c->phase, 0};
    json_object_set_new(a, "phase", json_string(phase));
    if (c->has_key) {
        char *hex = malloc(2 * c->key_len + 1);
        if (!hex) {
            json_decref(a);
            return NULL;
        }
        hex_encode(c->key, c->key_len, hex);
        json_object_set_new(a, "key", json_string(hex));
        free(hex);
        json_object_set_new(a, "seq", json_integer(c->seq));
        json_object_set_new(a, "upload", json_string(c->upload));
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* The headers with the data key moved to the newest version: *out
 * malloc'd, or NULL when this row needs nothing. */
static int rewrap_headers(walk *w, const char *headers, char **out) {
    *out = NULL;
    if (!headers || !strstr(headers, CRYPT_SSE_MEMBER)) return 0;
    json_t *root = json_loads(headers, 0, NULL);
    const char *text = root ? json_string_value(json_object_get(root, CRYPT_SSE_MEMBER)) : NULL;
    crypt_sse s;
    if (!text || crypt_sse_parse(text, &s) != 0 || (s.mode != 'S' && s.mode != 'K') ||
        strcmp(s.key_id, w->key_id) != 0 || s.key_version >= w->newest) {
        json_decref(root);
        return 0;
    }
    uint8_t dk[CRYPT_KEY];
    int rc = kms_unwrap(w->k, w->key_id, s.key_version, s.wrapped, dk);
    if (rc == 0) rc = kms_wrap_at(w->k, w->key_id, w->newest, dk, s.wrapped);
    OPENSSL_cleanse(dk, sizeof dk);
    char fmt[CRYPT_SSE_MAX];
    if (rc == 0) {
        s.key_version = w->newest;
        rc = crypt_sse_format(&s, fmt, sizeof fmt);
    }
    if (rc == 0 && json_object_set_new(root, CRYPT_SSE_MEMBER, json_string(fmt)) != 0) rc = CAIRN_ENOMEM;
    if (rc == 0 && !(*out = json_dumps(root, JSON_COMPACT))) rc = CAIRN_ENOMEM;
    json_decref(root);
    return rc;
}

/* A row whose data key cannot be moved: a disabled key stops the run (it
 * is retried later); anything else (a wrapped key that does not open) is
 * logged and left where it is. */
static int row_failed(walk *w, int rc, const char *what, const char *name) {
    if (rc == CAIRN_EPERM || rc == CAIRN_ENOMEM || rc == CAIRN_EDB || rc == CAIRN_EBUSY || rc == CAIRN_EIO) {
        snprintf(w->err, w->errlen, "%s %s: %s", what, name, cairn_strerror(rc));
        return rc;
    }
    w->st->skipped++;
    log_write(LOG_WARN, NULL, "kms_rewrap: a data key could not be moved", "kind", what, "name", name, "key_id",
              w->key_id, "error", cairn_strerror(rc), NULL);
    return 0;
}

static int rewrap_object(walk *w, const meta_bucket *b, const meta_version_entry *e) {
    for (int tries = 0; tries < REWRAP_TRIES; tries++) {
        meta_object o;
        int rc = meta_object_get_version(w->ms, b->name, b->id, e->key, e->key_len, e->version_id, false, &o);
        if (rc == CAIRN_ENOTFOUND) return 0; /* gone meanwhile */
        if (rc != 0) return row_failed(w, rc, "object version", e->version_id);
        char *next = NULL;
        rc = rewrap_headers(w, o.headers_json, &next);
        if (rc == 0 && next)
            rc = meta_object_set_headers_if(w->ms, b->name, b->id, e->key, e->key_len, o.version_id, o.headers_json,
                                            next);
        bool changed = next != NULL;
        free(next);
        meta_object_clear(&o);
        if (rc == 0) {
            if (changed) w->st->rewrapped++;
            return 0;
        }
        if (rc != CAIRN_ENOTFOUND) return row_failed(w, rc, "object version", e->version_id);
        w->st->conflicts++; /* a concurrent change won: read it again */
    }
    return row_failed(w, CAIRN_ECONFLICT, "object version", e->version_id);
}

static int rewrap_upload(walk *w, const meta_upload *first) {
    meta_upload u = {0};
    const meta_upload *cur = first;
    for (int tries = 0; tries < REWRAP_TRIES; tries++) {
        char *next = NULL;
        int rc = rewrap_headers(w, cur->headers_json, &next);
        if (rc == 0 && next) rc = meta_upload_set_headers_if(w->ms, cur->upload_id, cur->headers_json, next);
        bool changed = next != NULL;
        free(next);
        if (rc == 0) {
            if (changed) w->st->rewrapped++;
            meta_upload_clear(&u);
            return 0;
        }
        if (rc != CAIRN_ENOTFOUND) {
            meta_upload_clear(&u);
            return row_failed(w, rc, "upload", first->upload_id);
        }
        w->st->conflicts++;
        meta_upload_clear(&u);
        rc = meta_upload_get(w->ms, first->upload_id, &u);
        if (rc == CAIRN_ENOTFOUND) return 0; /* completed or aborted meanwhile */
        if (rc != 0) return row_failed(w, rc, "upload", first->upload_id);
        cur = &u;
    }
    meta_upload_clear(&u);
    return row_failed(w, CAIRN_ECONFLICT, "upload", first->upload_id);
}

/* ---- the walk ---- */

typedef struct {
    meta_bucket *items;
    size_t n, cap;
} bucket_vec;

static int collect_bucket(void *ud, const meta_bucket *b) {
    bucket_vec *v = ud;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        meta_bucket *p = realloc(v->items, cap * sizeof *p);
        if (!p) return 1;
        v->items = p;
        v->cap = cap;
    }
    v->items[v->n++] = *b;
    return 0;
}

/* A page of version entries, copied (the callback's pointers are borrowed). */
typedef struct {
    char key[1025];
    size_t key_len;
    char version_id[33];
    int64_t seq;
    bool delete_marker;
} vrow;

typedef struct {
    vrow rows[REWRAP_PAGE];
    int n;
} vpage;

static int collect_version(void *ud, const meta_version_entry *e) {
    vpage *p = ud;
    if (p->n >= REWRAP_PAGE) return 0; /* the limit keeps it from happening */
    vrow *r = &p->rows[p->n++];
    memcpy(r->key, e->key, e->key_len);
    r->key[e->key_len] = 0;
    r->key_len = e->key_len;
    snprintf(r->version_id, sizeof r->version_id, "%s", e->version_id);
    r->seq = e->seq;
    r->delete_marker = e->delete_marker;
    return 0;
}

typedef struct {
    meta_upload rows[REWRAP_PAGE];
    int n;
    bool oom;
} upage;

static int collect_upload(void *ud, const meta_upload *u) {
    upage *p = ud;
    if (p->n >= REWRAP_PAGE) return 0;
    meta_upload *r = &p->rows[p->n++];
    *r = *u;
    r->headers_json = u->headers_json ? strdup(u->headers_json) : NULL;
    if (u->headers_json && !r->headers_json) p->oom = true;
    return 0;
}

static void cursor_restart(cursor *c, char phase) {
    c->phase = phase;
    c->has_key = false;
    c->key_len = 0;
    c->key[0] = 0;
    c->seq = 0;
    c->upload[0] = 0;
}

/* The object versions of bucket b after the cursor, *budget rows at most;
 * *through once they are all seen. */
static int walk_versions(walk *w, const meta_bucket *b, cursor *c, int *budget, bool *through) {
    *through = false;
    while (*budget > 0 && !*through) {
        vpage *p = calloc(1, sizeof *p);
        if (!p) return CAIRN_ENOMEM;
        int limit = *budget < REWRAP_PAGE ? *budget : REWRAP_PAGE;
        bool more = false;
        int rc = meta_object_list_versions(w->ms, b->name, b->id, "", 0, c->has_key ? c->key : NULL,
                                           c->has_key ? c->key_len : 0, c->has_key ? c->seq : 0, limit,
                                           collect_version, p, &more);
        if (rc == CAIRN_ENOTFOUND) { /* the bucket was deleted meanwhile: nothing left in it */
            free(p);
            *through = true;
            return 0;
        }
        if (rc != 0) snprintf(w->err, w->errlen, "listing versions of %s: %s", b->name, cairn_strerror(rc));
        for (int i = 0; rc == 0 && i < p->n; i++) {
            const vrow *r = &p->rows[i];
            w->st->seen++;
            (*budget)--;
            if (!r->delete_marker) {
                meta_version_entry e = {.key = r->key, .key_len = r->key_len, .version_id = r->version_id,
                                        .seq = r->seq};
                rc = rewrap_object(w, b, &e);
            }
            if (rc == 0) {
                memcpy(c->key, r->key, r->key_len + 1);
                c->key_len = r->key_len;
                c->seq = r->seq;
                c->has_key = true;
            }
        }
        *through = rc == 0 && !more;
        free(p);
        if (rc != 0) return rc;
    }
    return 0;
}

static int walk_uploads(walk *w, const meta_bucket *b, cursor *c, int *budget, bool *through) {
    *through = false;
    while (*budget > 0 && !*through) {
        upage *p = calloc(1, sizeof *p);
        if (!p) return CAIRN_ENOMEM;
        int limit = *budget < REWRAP_PAGE ? *budget : REWRAP_PAGE;
        bool more = false;
        int rc = meta_upload_list(w->ms, b->id, "", 0, c->has_key ? c->key : NULL, c->has_key ? c->key_len : 0,
                                  c->has_key ? c->upload : NULL, limit, collect_upload, p, &more);
        if (rc == CAIRN_ENOTFOUND) { /* the bucket was deleted meanwhile */
            for (int i = 0; i < p->n; i++) meta_upload_clear(&p->rows[i]);
            free(p);
            *through = true;
            return 0;
        }
        if (rc == 0 && p->oom) rc = CAIRN_ENOMEM;
        if (rc != 0) snprintf(w->err, w->errlen, "listing uploads of %s: %s", b->name, cairn_strerror(rc));
        for (int i = 0; rc == 0 && i < p->n; i++) {
            const meta_upload *u = &p->rows[i];
            w->st->seen++;
            (*budget)--;
            rc = rewrap_upload(w, u);
            if (rc == 0) {
                memcpy(c->key, u->key, u->key_len);
                c->key[u->key_len] = 0;
                c->key_len = u->key_len;
                snprintf(c->upload, sizeof c->upload, "%s", u->upload_id);
                c->has_key = true;
            }
        }
        *through = rc == 0 && !more;
        for (int i = 0; i < p->n; i++) meta_upload_clear(&p->rows[i]);
        free(p);
        if (rc != 0) return rc;
    }
    return 0;
}

int jobs_kms_rewrap_batch(meta_store *ms, struct kms *k, const char *args, int batch, char **next,
                          jobs_rewrap_stats *st, char *err, size_t errlen) {
    *next = NULL;
    err[0] = 0;
    cursor c;
    int rc = parse_args(args, &c, err, errlen);
    if (rc != 0) return rc;
    meta_kms_key key;
    rc = meta_kms_key_get(ms, c.key_id, &key); /* the row itself: never a cached newest version */
    if (rc != 0) {
        snprintf(err, errlen, "key %s: %s", c.key_id, cairn_strerror(rc));
        return rc;
    }
    if (key.version <= 1) return 0; /* nothing can be wrapped by an older version */
    if (c.target == 0) c.target = key.version;
    walk w = {.ms = ms, .k = k, .key_id = c.key_id, .newest = key.version, .st = st, .err = err, .errlen = errlen};
    bucket_vec bv = {0};
    rc = meta_bucket_list(ms, -1, collect_bucket, &bv);
    if (rc != 0) snprintf(err, errlen, "listing buckets: %s", cairn_strerror(rc));
    int budget = batch > 0 ? batch : REWRAP_BATCH;
    bool stopped = false;
    for (size_t i = 0; rc == 0 && i < bv.n && !stopped; i++) {
        const meta_bucket *b = &bv.items[i];
        int cmp = strcmp(b->name, c.bucket);
        if (cmp < 0 || (cmp == 0 && c.phase == 'z')) continue; /* before the cursor, or finished */
        if (cmp > 0) {
            snprintf(c.bucket, sizeof c.bucket, "%s", b->name);
            cursor_restart(&c, 'o');
        }
        if (budget == 0) {
            stopped = true;
            break;
        }
        bool through = false;
        if (c.phase == 'o') {
            rc = walk_versions(&w, b, &c, &budget, &through);
            if (rc != 0) break;
            if (!through) {
                stopped = true;
                break;
            }
            cursor_restart(&c, 'u');
        }
        rc = walk_uploads(&w, b, &c, &budget, &through);
        if (rc != 0) break;
        if (!through) {
            stopped = true;
            break;
        }
        cursor_restart(&c, 'z'); /* this bucket is done */
    }
    free(bv.items);
    if (rc != 0 || !stopped) return rc;
    c.n++;
    *next = format_args(&c);
    return *next ? 0 : CAIRN_ENOMEM;
}

int jobs_enqueue_kms_rewrap(meta_store *ms, const char *key_id, int64_t *id) {
    if (!kms_id_valid(key_id)) return CAIRN_EINVAL;
    json_t *a = json_pack("{s:s}", "key_id", key_id);
    char *args = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!args) return CAIRN_ENOMEM;
    meta_job j = {.priority = 1, .max_attempts = 20, .run_at_ms = time_now_ms(), .args = args};
    snprintf(j.kind, sizeof j.kind, "kms_rewrap");
    int rc = meta_job_enqueue(ms, &j, id);
    free(args);
    return rc;
}

typedef struct {
    job_queue *q;
    meta_store *ms;
    kms *k;
} rewrap_ctx;

static int run_kms_rewrap(void *ud, const meta_job *job, char *err, size_t errlen) {
    rewrap_ctx *c = ud;
    jobs_rewrap_stats st = {0};
    char *next = NULL;
    int rc = jobs_kms_rewrap_batch(c->ms, c->k, job->args, REWRAP_BATCH, &next, &st, err, errlen);
    if (rc == CAIRN_ENOTFOUND || rc == CAIRN_EINVAL) {
        /* No such key (or bad args): nothing to move, ever. */
        log_write(LOG_WARN, NULL, "kms_rewrap: nothing to do", "error", err, NULL);
        return 0;
    }
    if (rc != 0) return rc;
    char seen[24], moved[24];
    snprintf(seen, sizeof seen, "%lld", (long long)st.seen);
    snprintf(moved, sizeof moved, "%lld", (long long)st.rewrapped);
    log_write(LOG_INFO, NULL, next ? "kms_rewrap: batch done" : "kms_rewrap: done", "rows_seen", seen,
              "data_keys_moved", moved, NULL);
    if (!next) return 0;
    /* The continuation, named by the chain's key, target and place: a run
     * repeated after a crash finds it enqueued already. */
    json_t *a = json_loads(next, 0, NULL);
    char unique[128];
    snprintf(unique, sizeof unique, "kms_rewrap:%s:%lld:%lld",
             a ? json_string_value(json_object_get(a, "key_id")) : "",
             a ? (long long)json_integer_value(json_object_get(a, "target")) : 0LL,
             a ? (long long)json_integer_value(json_object_get(a, "n")) : 0LL);
    json_decref(a);
    meta_job j = {.priority = 1, .max_attempts = 20, .run_at_ms = time_now_ms(), .args = next,
                  .unique_while_pending = true};
    snprintf(j.kind, sizeof j.kind, "kms_rewrap");
    snprintf(j.unique_key, sizeof j.unique_key, "%s", unique);
    rc = meta_job_enqueue(c->ms, &j, NULL);
    free(next);
    if (rc == CAIRN_EEXIST) rc = 0;
    if (rc != 0) snprintf(err, errlen, "enqueueing the continuation: %s", cairn_strerror(rc));
    else jobs_wake(c->q);
    return rc;
}

int jobs_register_kms_rewrap(job_queue *q, meta_store *ms, struct kms *k) {
    rewrap_ctx *c = calloc(1, sizeof *c); /* the queue frees it */
    if (!c) return CAIRN_ENOMEM;
    *c = (rewrap_ctx){q, ms, k};
    int rc = jobs_register_owned(q, "kms_rewrap", run_kms_rewrap, c);
    if (rc != 0) free(c);
    return rc;
}
