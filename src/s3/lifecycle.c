/*
 * lifecycle.c — S3 bucket lifecycle (docs/lifecycle.md): Put, Get and
 * DeleteBucketLifecycleConfiguration (?lifecycle), the x-amz-expiration
 * header of GET and HEAD, and the jobs that carry the rules out.
 *
 * The configuration is validated (lifecycle_config.c) and kept as the
 * document GetBucketLifecycleConfiguration answers, a bucket configuration
 * of kind "lifecycle" (meta_bucket_config).
 *
 * Execution goes through the durable job queue.  "lifecycle_scan" (periodic,
 * every job_period_s, or `cairn admin lifecycle run`) enqueues one
 * "lifecycle" job per bucket that has a configuration, unique while
 * pending.  A "lifecycle" run walks the bucket's versions in key order,
 * newest first within a key, a page at a time, and for each:
 *
 *   current version     Expiration Days/Date due: on an unversioned bucket
 *                       the version is removed; on a versioned one a delete
 *                       marker is made (S3's DeleteObject without a version)
 *   current marker      ExpiredObjectDeleteMarker and no other version of
 *                       the key left: the marker is removed
 *   noncurrent version  NoncurrentDays after it became noncurrent (its
 *                       successor's time), and more than
 *                       NewerNoncurrentVersions newer noncurrent ones: removed
 *
 * then aborts the uploads that AbortIncompleteMultipartUpload makes due.
 * A page's removals are made by the metadata call a client's DeleteObjects
 * uses (meta_object_delete_many: one transaction, each key in its own
 * savepoint), with the strictest object lock check: a locked version
 * (retention of either mode, a legal hold) is never removed by lifecycle,
 * it is counted and left.
 *
 * Crashes: after each page the run saves where it is — the last key and
 * version seen, and what the walk knows of that key (how many noncurrent
 * versions it has passed, its successor's time) — as the bucket
 * configuration "lifecycle_cursor", and a run resumes from it.  Every step
 * is idempotent: a removal names the version by its own id (gone already:
 * nothing happens), and a delete marker is made only while the version
 * judged expired is still the current one.  The cursor is removed when a
 * run completes, and with the bucket.
 *
 * Before each page the run checks the stored configuration is still the one
 * it read: a change (or a delete) pauses it (JOBS_DEFER) and the next run
 * takes the new configuration from the cursor on.
 *
 * Pace: a run examines at most lifecycle_objects_per_second versions per
 * second (sleeping between pages), so a bucket of millions of objects is
 * worked through steadily without starving requests.
 */
#include "s3/internal.h"

#include "jobs/jobs.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#define PAGE 256
#define CURSOR_KIND "lifecycle_cursor"
#define CACHE_SLOTS 64
#define CACHE_TTL_MS 1000

/* ---- Put, Get, DeleteBucketLifecycleConfiguration ------------------------------------------------ */

static int64_t day_ms_of(const config_t *c) {
    return (int64_t)(c->lifecycle_day_seconds > 0 ? c->lifecycle_day_seconds : 86400) * 1000;
}

typedef struct {
    int64_t bucket_id;          /* 0: empty */
    int64_t fetched_ms;
    s3_lifecycle_config cfg;    /* n == 0: none */
} slot;

struct s3_lifecycle_cache {
    pthread_mutex_t mu;
    slot slots[CACHE_SLOTS];
};

int s3_lifecycle_cache_new(s3_lifecycle_cache **out) {
    s3_lifecycle_cache *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void s3_lifecycle_cache_free(s3_lifecycle_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SLOTS; i++) s3_lifecycle_config_free(&c->slots[i].cfg);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void forget(s3_lifecycle_cache *c, int64_t bucket_id) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[(uint64_t)bucket_id % CACHE_SLOTS];
    if (s->bucket_id == bucket_id) s->fetched_ms = 0;
    pthread_mutex_unlock(&c->mu);
}

/* Reads and parses a bucket's configuration: 0 with *cfg (empty when it has
 * none or the stored one does not read back, logged), or meta's error. */
static int load_config(meta_store *ms, int64_t bucket_id, s3_lifecycle_config *cfg, char **text) {
    memset(cfg, 0, sizeof *cfg);
    char *doc = NULL;
    if (text) *text = NULL;
    int rc = meta_bucket_config_get(ms, bucket_id, "lifecycle", &doc);
    if (rc == CAIRN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    const char *code, *why;
    rc = s3_lifecycle_parse(doc, strlen(doc), cfg, &code, &why);
    if (text && rc == 0) *text = doc;
    else free(doc);
    if (rc == CAIRN_ENOMEM) return rc;
    if (rc != 0) log_write(LOG_ERROR, NULL, "a bucket's lifecycle configuration does not read back; ignored", "error",
                           why, NULL);
    return 0;
}

void s3_put_bucket_lifecycle(s3_req *q) {
    const char *body = q->body.data ? q->body.data : "";
    if (http_header(q->http, "content-md5") && s3_check_body_digest(q) != 0) return;
    if (q->body.len > S3_LIFECYCLE_MAX_BYTES) {
        s3_error(q, "MalformedXML", "The lifecycle configuration is limited to 1 MB.");
        return;
    }
    s3_lifecycle_config cfg;
    const char *code = NULL, *why = NULL;
    int rc = s3_lifecycle_parse(body, q->body.len, &cfg, &code, &why);
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
    s3_lifecycle_render(&cfg, &doc);
    s3_lifecycle_config_free(&cfg);
    rc = s3_store_bucket_config(q, "lifecycle", doc.oom ? NULL : doc.data, "the lifecycle configuration");
    buf_free(&doc);
    if (rc != 0) return;
    forget(q->gw->lifecycle, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

void s3_get_bucket_lifecycle(s3_req *q) {
    s3_answer_bucket_config(q, "lifecycle", "NoSuchLifecycleConfiguration");
}

void s3_delete_bucket_lifecycle(s3_req *q) {
    if (s3_drop_bucket_config(q, "lifecycle") != 0) return;
    /* An unfinished run's place goes too (best effort: a run that finds no
     * configuration drops it as well). */
    meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, CURSOR_KIND, "");
    forget(q->gw->lifecycle, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 204, "", 0);
}

/* ---- x-amz-expiration ------------------------------------------------------------------------------ */

void s3_lifecycle_expiration_header(s3_req *q, const meta_object *o) {
    s3_lifecycle_cache *c = q->gw->lifecycle;
    if (!c || o->delete_marker || q->bucket_id <= 0) return;
    int64_t now = time_now_ms();
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[(uint64_t)q->bucket_id % CACHE_SLOTS];
    bool fresh = s->bucket_id == q->bucket_id && now - s->fetched_ms < CACHE_TTL_MS;
    pthread_mutex_unlock(&c->mu);
    if (!fresh) {
        s3_lifecycle_config cfg;
        if (load_config(q->gw->d.meta, q->bucket_id, &cfg, NULL) != 0) return; /* the header is advice: none */
        pthread_mutex_lock(&c->mu);
        s3_lifecycle_config_free(&s->cfg);
        s->cfg = cfg;
        s->bucket_id = q->bucket_id;
        s->fetched_ms = now;
        pthread_mutex_unlock(&c->mu);
    }
    s3_tagset tags = {0};
    if (s3_tag_count(o->headers_json) > 0) s3_tagset_from_headers(o->headers_json, &tags);
    char value[400];
    value[0] = '\0';
    pthread_mutex_lock(&c->mu);
    if (s->bucket_id == q->bucket_id) {
        const char *id = NULL;
        int64_t due = s3_lifecycle_expiry(&s->cfg, q->key, q->key_len, o->size, o->mtime_ms, &tags,
                                          day_ms_of(&q->gw->cfg), &id);
        if (due > 0) {
            char date[40];
            time_fmt_http(due, date, sizeof date);
            buf_t b;
            buf_init(&b);
            buf_printf(&b, "expiry-date=\"%s\", rule-id=\"", date);
            /* a quote or a backslash in the ID is escaped, as in any quoted-string */
            for (const char *p = id; *p; p++) buf_printf(&b, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
            buf_puts(&b, "\"");
            if (!b.oom) snprintf(value, sizeof value, "%s", b.data);
            buf_free(&b);
        }
    }
    pthread_mutex_unlock(&c->mu);
    s3_tagset_free(&tags);
    if (value[0]) http_add_header(q->http, "x-amz-expiration", value);
}

/* ---- the jobs ------------------------------------------------------------------------------------- */

typedef struct {
    job_queue *q;
    meta_store *ms;
    data_store *ds;
    events_bus *bus;            /* the live event stream; NULL: events are off */
    char region[64];
    int64_t per_second;         /* versions examined per second; 0 = no limit */
    int64_t day_ms;
} lc_ctx;

/* One version of a page, copied out of the listing. */
typedef struct {
    char *key;
    size_t key_len;
    char version_id[33];
    int64_t seq;
    bool is_latest, delete_marker, null_version;
    int64_t size;
    int64_t mtime_ms;
} lc_entry;

typedef struct {
    lc_entry *v;
    int n;
    bool oom;
} lc_page;

/* What a run has done, for its log line. */
typedef struct {
    int64_t examined, expired, markers_made, markers_removed, noncurrent_removed, locked, uploads_aborted;
    bool trash;                 /* a multipart version went: its parts are in the trash */
} lc_counts;

/* Where a run is: the last version seen and what it knows of its key. */
typedef struct {
    char *key;                  /* NULL: from the start */
    size_t key_len;
    int64_t seq;
    int64_t noncurrent;         /* noncurrent versions of key passed so far */
    int64_t prev_mtime;         /* the time of the version seen before (the successor) */
} lc_cursor;

static int take_entry(void *ud, const meta_version_entry *e) {
    lc_page *p = ud;
    lc_entry *x = &p->v[p->n];
    memset(x, 0, sizeof *x);
    if (!(x->key = malloc(e->key_len + 1))) {
        p->oom = true;
        return 1;
    }
    memcpy(x->key, e->key, e->key_len);
    x->key[e->key_len] = '\0';
    x->key_len = e->key_len;
    snprintf(x->version_id, sizeof x->version_id, "%s", e->version_id);
    x->seq = e->seq;
    x->is_latest = e->is_latest;
    x->delete_marker = e->delete_marker;
    x->null_version = e->null_version;
    x->size = e->size;
    x->mtime_ms = e->mtime_ms;
    p->n++;
    return 0;
}

static void page_clear(lc_page *p) {
    for (int i = 0; i < p->n; i++) free(p->v[i].key);
    p->n = 0;
    p->oom = false;
}

/* ---- the cursor ---- */

static int cursor_load(meta_store *ms, int64_t bucket_id, lc_cursor *c) {
    memset(c, 0, sizeof *c);
    char *doc = NULL;
    int rc = meta_bucket_config_get(ms, bucket_id, CURSOR_KIND, &doc);
    if (rc == CAIRN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    json_t *j = json_loads(doc, 0, NULL);
    free(doc);
    const char *hex = j ? json_string_value(json_object_get(j, "key")) : NULL;
    if (hex && strlen(hex) <= 2048 && strlen(hex) % 2 == 0) {
        c->key = malloc(strlen(hex) / 2 + 1);
        size_t kl = 0;
        if (c->key && hex_decode(hex, strlen(hex), c->key, strlen(hex) / 2 + 1, &kl) == 0) {
            c->key[kl] = '\0';
            c->key_len = kl;
            c->seq = json_integer_value(json_object_get(j, "seq"));
            c->noncurrent = json_integer_value(json_object_get(j, "noncurrent"));
            c->prev_mtime = json_integer_value(json_object_get(j, "prev_mtime"));
        } else {
            free(c->key);
            c->key = NULL;
        }
    }
    json_decref(j);
    return 0;
}

static int cursor_save(meta_store *ms, const meta_bucket *b, const lc_cursor *c) {
    if (!c->key) return meta_bucket_config_put(ms, b->name, b->id, CURSOR_KIND, "");
    char *hex = malloc(c->key_len * 2 + 1);
    if (!hex) return CAIRN_ENOMEM;
    hex_encode(c->key, c->key_len, hex);
    json_t *j = json_pack("{s:s, s:I, s:I, s:I}", "key", hex, "seq", (json_int_t)c->seq, "noncurrent",
                          (json_int_t)c->noncurrent, "prev_mtime", (json_int_t)c->prev_mtime);
    free(hex);
    char *doc = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!doc) return CAIRN_ENOMEM;
    int rc = meta_bucket_config_put(ms, b->name, b->id, CURSOR_KIND, doc);
    free(doc);
    return rc;
}

/* ---- actions ---- */

static void drop_bytes(lc_ctx *x, const meta_object *o, lc_counts *n) {
    if (o->storage != META_STORE_FILE) return;
    if (!strncmp(o->layout, META_MULTIPART_PREFIX, strlen(META_MULTIPART_PREFIX))) {
        n->trash = true; /* the removal put its parts in the trash */
        return;
    }
    data_layout l;
    int rc = data_layout_parse(o->layout, &l);
    if (rc == 0) rc = data_delete(x->ds, o->version_id, &l);
    if (rc != 0) /* orphan collection takes what is left */
        log_write(LOG_WARN, NULL, "lifecycle could not remove an expired version's data", "version_id", o->version_id,
                  "error", cairn_strerror(rc), NULL);
}

/* What a page decided: removals (a version by its id) and delete markers
 * (version NULL, with the id drawn here), made in one metadata transaction
 * (meta_object_delete_many: one synced commit for the page, each item in
 * its own savepoint under the strictest object lock check).  Each item
 * carries the bucket notifications it owes, enqueued with it: a removal
 * that committed has its deliveries queued, one that did not (locked,
 * gone already) has none. */
typedef enum { DO_EXPIRE, DO_MARKER_REMOVE, DO_NONCURRENT } lc_do;

typedef struct {
    meta_delete_item items[PAGE];
    lc_do what[PAGE];
    char marker_ids[PAGE][33];
    int n;
    s3_notify_cache *notify;    /* the bucket's notification rules, for this run */
} lc_batch;

/* The webhook deliveries of a removal (it: its key, version and marker id
 * filled), as S3 names lifecycle's events, by "cairn:lifecycle". */
static int removal_jobs(lc_ctx *x, const meta_bucket *b, lc_batch *bt, const lc_entry *e, meta_delete_item *it) {
    bool versioned = b->versioning != META_VERSIONING_OFF;
    const char *vid = NULL;
    if (it->marker_id) vid = b->versioning == META_VERSIONING_SUSPENDED ? "null" : it->marker_id;
    else if (versioned) vid = e->null_version ? "null" : it->version_id;
    events_object ev = {
        .name = it->marker_id ? "LifecycleExpiration:DeleteMarkerCreated" : "LifecycleExpiration:Delete",
        .region = x->region,
        .bucket = b->name,
        .key = it->key,
        .key_len = it->key_len,
        .size = -1,
        .version_id = vid,
        .request_id = "",
        .principal = "cairn:lifecycle",
        .source_ip = "",
    };
    meta_job *jobs = NULL;
    int n = 0;
    int rc = s3_notify_jobs_of(bt->notify, x->ms, b->id, &ev, &jobs, &n);
    it->jobs = jobs;
    it->njobs = n;
    return rc;
}

static int queue_removal(lc_ctx *x, lc_batch *bt, const meta_bucket *b, const lc_entry *e, const char *version_id,
                         lc_do what) {
    assert(bt->n < PAGE);
    meta_delete_item *it = &bt->items[bt->n];
    memset(it, 0, sizeof *it);
    it->key = e->key;
    it->key_len = e->key_len;
    it->version_id = version_id;
    it->owner_id = b->owner_id;
    it->lock = (meta_lock_check){.now_ms = time_now_ms(), .bypass_governance = false};
    if (!version_id) {
        rand_hex_id(bt->marker_ids[bt->n], 16);
        it->marker_id = bt->marker_ids[bt->n];
    }
    int rc = removal_jobs(x, b, bt, e, it);
    if (rc != 0) return rc;     /* nothing queued: the item is not counted */
    bt->what[bt->n++] = what;
    return 0;
}

/* Publishes what a removal did on the bucket's live stream, as S3 names
 * lifecycle's events. */
static void publish(lc_ctx *x, const meta_bucket *b, const meta_delete_item *it) {
    if (!x->bus) return;
    const meta_object *o = it->marker.version_id[0] ? &it->marker : &it->deleted;
    bool versioned = b->versioning != META_VERSIONING_OFF;
    int64_t now = time_now_us();
    events_object e = {
        .name = it->marker.version_id[0] ? "LifecycleExpiration:DeleteMarkerCreated" : "LifecycleExpiration:Delete",
        .region = x->region,
        .bucket = b->name,
        .key = it->key,
        .key_len = it->key_len,
        .size = -1,
        .version_id = versioned ? (o->null_version ? "null" : o->version_id) : NULL,
        .request_id = "",
        .principal = "cairn:lifecycle",
        .source_ip = "",
        .time_us = now,
        .sequencer = events_sequencer(now),
    };
    buf_t m;
    buf_init(&m);
    char channel[80];
    snprintf(channel, sizeof channel, "cairn:bucket:%s", b->name);
    if (events_render_object(&m, &e) == 0) events_publish(x->bus, channel, m.data, m.len);
    buf_free(&m);
}

static int apply_batch(lc_ctx *x, const meta_bucket *b, lc_batch *bt, lc_counts *n) {
    if (bt->n == 0) return 0;
    int rc = meta_object_delete_many(x->ms, b->name, b->id, bt->items, bt->n);
    int queued = 0;
    for (int i = 0; i < bt->n; i++) {
        meta_delete_item *it = &bt->items[i];
        bool did = it->rc == 0 && (it->deleted.version_id[0] || it->marker.version_id[0]);
        if (did) queued += it->njobs;
        s3_notify_jobs_free((meta_job *)it->jobs, it->njobs);
        it->jobs = NULL;
        it->njobs = 0;
        if (it->rc == CAIRN_ELOCKED) n->locked++;
        else if (it->rc != 0 && it->rc != CAIRN_ENOTFOUND && rc == 0) rc = it->rc;
        if (did && bt->what[i] == DO_EXPIRE) n->expired++;
        if (did && bt->what[i] == DO_MARKER_REMOVE) n->markers_removed++;
        if (did && bt->what[i] == DO_NONCURRENT) n->noncurrent_removed++;
        if (did) publish(x, b, it);
        if (it->rc == 0 && it->marker.version_id[0]) n->markers_made++;
        if (it->rc == 0 && it->deleted.version_id[0]) drop_bytes(x, &it->deleted, n);
        meta_object_clear(&it->deleted);
        meta_object_clear(&it->marker);
    }
    bt->n = 0;
    if (queued > 0) jobs_wake(x->q);
    return rc;
}

static bool needs_tags(const s3_lifecycle_config *c) {
    for (int i = 0; i < c->n; i++)
        if (c->rules[i].enabled && c->rules[i].tags.n > 0) return true;
    return false;
}

/* The tags of one version (empty when it has none or is gone). */
static void tags_of(lc_ctx *x, const meta_bucket *b, const lc_entry *e, s3_tagset *tags) {
    memset(tags, 0, sizeof *tags);
    meta_object o;
    if (meta_object_get_version(x->ms, b->name, b->id, e->key, e->key_len, e->version_id, false, &o) != 0) return;
    s3_tagset_from_headers(o.headers_json, tags);
    meta_object_clear(&o);
}

/* Whether the key of a current delete marker has no other version. */
static int marker_alone(lc_ctx *x, const meta_bucket *b, const lc_entry *e, bool *alone) {
    lc_page p = {calloc(1, sizeof(lc_entry)), 0, false};
    if (!p.v) return CAIRN_ENOMEM;
    bool more = false;
    int rc = meta_object_list_versions(x->ms, b->name, b->id, e->key, e->key_len, e->key, e->key_len, e->seq, 1,
                                       take_entry, &p, &more);
    if (rc == 0 && p.oom) rc = CAIRN_ENOMEM;
    *alone = rc == 0 && !(p.n == 1 && p.v[0].key_len == e->key_len && !memcmp(p.v[0].key, e->key, e->key_len));
    page_clear(&p);
    free(p.v);
    return rc;
}

static int act_current(lc_ctx *x, const meta_bucket *b, const s3_lifecycle_config *cfg, const lc_entry *e,
                       bool tags_needed, int64_t now, lc_batch *bt) {
    if (e->delete_marker) {
        bool wanted = false;
        for (int i = 0; i < cfg->n && !wanted; i++) {
            const s3_lifecycle_rule *r = &cfg->rules[i];
            wanted = r->enabled && r->exp_delete_marker && s3_lifecycle_filter_match(r, e->key, e->key_len, 0, NULL);
        }
        if (!wanted) return 0;
        bool alone = false;
        int rc = marker_alone(x, b, e, &alone);
        if (rc != 0 || !alone) return rc;
        return queue_removal(x, bt, b, e, e->version_id, DO_MARKER_REMOVE);
    }
    s3_tagset tags = {0};
    if (tags_needed) tags_of(x, b, e, &tags);
    int64_t due = s3_lifecycle_expiry(cfg, e->key, e->key_len, e->size, e->mtime_ms, &tags, x->day_ms, NULL);
    s3_tagset_free(&tags);
    if (due == 0 || now < due) return 0;
    if (b->versioning == META_VERSIONING_OFF) return queue_removal(x, bt, b, e, e->version_id, DO_EXPIRE);
    /* A delete marker only while the version judged is still current: a
     * rerun, or a client's newer write, finds another there. */
    meta_object cur;
    int rc = meta_object_get_current(x->ms, b->name, b->id, e->key, e->key_len, false, &cur);
    bool same = rc == 0 && !cur.delete_marker && !strcmp(cur.version_id, e->version_id);
    meta_object_clear(&cur);
    if (rc == CAIRN_ENOTFOUND || (rc == 0 && !same)) return 0;
    if (rc != 0) return rc;
    return queue_removal(x, bt, b, e, NULL, DO_EXPIRE);
}

static int act_noncurrent(lc_ctx *x, const meta_bucket *b, const s3_lifecycle_config *cfg, const lc_entry *e,
                          const lc_cursor *st, bool tags_needed, int64_t now, lc_batch *bt) {
    s3_tagset tags = {0};
    bool loaded = false, due = false;
    for (int i = 0; i < cfg->n && !due; i++) {
        const s3_lifecycle_rule *r = &cfg->rules[i];
        if (!r->enabled || !r->has_noncurrent) continue;
        if (st->noncurrent <= r->nc_newer) continue; /* among the newest it keeps */
        if (now < s3_lifecycle_due(st->prev_mtime, r->nc_days, x->day_ms)) continue;
        if (r->tags.n > 0 && tags_needed && !loaded && !e->delete_marker) {
            tags_of(x, b, e, &tags);
            loaded = true;
        }
        due = s3_lifecycle_filter_match(r, e->key, e->key_len, e->size, &tags);
    }
    s3_tagset_free(&tags);
    return due ? queue_removal(x, bt, b, e, e->version_id, DO_NONCURRENT) : 0;
}

/* ---- pacing ---- */

/* Sleeps until a page of examined versions, begun at t0, has taken at
 * least examined / per_second: each page on its own, so a run that fell
 * behind (a busy database) never bursts to catch up.  True when the queue
 * is stopping (the run gives its job back). */
static bool pace(lc_ctx *x, int64_t t0_ns, int64_t examined) {
    if (x->per_second <= 0) return jobs_stopping(x->q);
    for (;;) {
        if (jobs_stopping(x->q)) return true;
        int64_t want_ms = examined * 1000 / x->per_second;
        int64_t spent_ms = (time_mono_ns() - t0_ns) / 1000000;
        if (spent_ms >= want_ms) return false;
        int64_t left = want_ms - spent_ms;
        usleep((useconds_t)((left > 50 ? 50 : left) * 1000));
    }
}

/* ---- a run ---- */

/* A page of uploads: those due, and where the next page starts. */
typedef struct {
    const s3_lifecycle_config *cfg;
    int64_t now, day_ms;
    char (*due)[65];
    int ndue;
    char key[1025];
    size_t key_len;
    char upload_id[65];
} abort_scan;

static int upload_seen(void *ud, const meta_upload *u) {
    abort_scan *a = ud;
    memcpy(a->key, u->key, u->key_len);
    a->key[u->key_len] = '\0';
    a->key_len = u->key_len;
    snprintf(a->upload_id, sizeof a->upload_id, "%s", u->upload_id);
    for (int i = 0; i < a->cfg->n; i++) {
        const s3_lifecycle_rule *r = &a->cfg->rules[i];
        /* An upload is judged by its key's prefix alone (it has no tags,
         * and no size yet). */
        size_t pl = strlen(r->prefix);
        if (!r->enabled || r->abort_days <= 0 || pl > u->key_len || memcmp(r->prefix, u->key, pl) != 0) continue;
        if (a->now >= s3_lifecycle_due(u->initiated_ms, r->abort_days, a->day_ms)) {
            snprintf(a->due[a->ndue++], 65, "%s", u->upload_id);
            break;
        }
    }
    return 0;
}

static void drop_part(void *ud, const meta_part *p) {
    lc_ctx *x = ud;
    data_layout l;
    if (data_layout_parse(p->layout, &l) == 0) data_delete(x->ds, p->version_id, &l);
}

/* Aborts the uploads an AbortIncompleteMultipartUpload rule makes due, and
 * removes their parts' bytes, as AbortMultipartUpload does. */
static int abort_uploads(lc_ctx *x, const meta_bucket *b, const s3_lifecycle_config *cfg, lc_counts *n) {
    bool any = false;
    for (int i = 0; i < cfg->n; i++) any |= cfg->rules[i].enabled && cfg->rules[i].abort_days > 0;
    if (!any) return 0;
    abort_scan *a = calloc(1, sizeof *a);
    char (*due)[65] = calloc(PAGE, 65);
    if (!a || !due) {
        free(a);
        free(due);
        return CAIRN_ENOMEM;
    }
    *a = (abort_scan){.cfg = cfg, .now = time_now_ms(), .day_ms = x->day_ms, .due = due};
    bool more = true;
    int rc = 0;
    while (rc == 0 && more && !jobs_stopping(x->q)) {
        a->ndue = 0;
        char key[1025], upload_id[65];
        size_t key_len = a->key_len;
        memcpy(key, a->key, key_len + 1);
        memcpy(upload_id, a->upload_id, sizeof upload_id);
        rc = meta_upload_list(x->ms, b->id, "", 0, key_len ? key : NULL, key_len, key_len ? upload_id : NULL, PAGE,
                              upload_seen, a, &more);
        for (int i = 0; rc == 0 && i < a->ndue; i++) {
            if (meta_upload_abort(x->ms, a->due[i], drop_part, x) == 0) {
                n->uploads_aborted++;
                log_write(LOG_INFO, NULL, "lifecycle aborted an incomplete multipart upload", "bucket", b->name,
                          "upload_id", a->due[i], NULL);
            }
        }
    }
    free(due);
    free(a);
    return rc;
}

/* Whether the bucket's configuration is still text (a page's look: a
 * configuration changed or deleted mid-run applies from the next page). */
static int config_unchanged(lc_ctx *x, const meta_bucket *b, const char *text, bool *same) {
    char *now = NULL;
    int rc = meta_bucket_config_get(x->ms, b->id, "lifecycle", &now);
    *same = rc == 0 && !strcmp(now, text);
    free(now);
    return rc == CAIRN_ENOTFOUND ? 0 : rc;
}

static int run_bucket(lc_ctx *x, const meta_bucket *b, const s3_lifecycle_config *cfg, const char *text,
                      lc_counts *n) {
    lc_cursor st;
    int rc = cursor_load(x->ms, b->id, &st);
    if (rc != 0) return rc;
    bool tags_needed = needs_tags(cfg);
    lc_page p = {calloc(PAGE, sizeof(lc_entry)), 0, false};
    lc_batch *bt = calloc(1, sizeof *bt);
    /* The notification rules are read through a cache of the run's own (a
     * change to them applies within its TTL). */
    if (!p.v || !bt || s3_notify_cache_new(&bt->notify) != 0) {
        free(p.v);
        if (bt) s3_notify_cache_free(bt->notify);
        free(bt);
        free(st.key);
        return CAIRN_ENOMEM;
    }
    bool more = true, stopped = false;
    while (rc == 0 && more && !stopped) {
        int64_t t0 = time_mono_ns();
        int64_t before = n->examined;
        rc = meta_object_list_versions(x->ms, b->name, b->id, "", 0, st.key, st.key_len, st.key ? st.seq : 0, PAGE,
                                       take_entry, &p, &more);
        if (rc == 0 && p.oom) rc = CAIRN_ENOMEM;
        int64_t now = time_now_ms();
        for (int i = 0; rc == 0 && i < p.n; i++) {
            lc_entry *e = &p.v[i];
            if (!st.key || st.key_len != e->key_len || memcmp(st.key, e->key, e->key_len) != 0) {
                char *k = malloc(e->key_len + 1);
                if (!k) {
                    rc = CAIRN_ENOMEM;
                    break;
                }
                memcpy(k, e->key, e->key_len + 1);
                free(st.key);
                st = (lc_cursor){.key = k, .key_len = e->key_len};
            }
            n->examined++;
            if (e->is_latest) {
                rc = act_current(x, b, cfg, e, tags_needed, now, bt);
            } else {
                st.noncurrent++;
                rc = act_noncurrent(x, b, cfg, e, &st, tags_needed, now, bt);
            }
            st.seq = e->seq;
            st.prev_mtime = e->mtime_ms;
        }
        int arc = apply_batch(x, b, bt, n); /* what was decided is applied even when the page stopped early */
        if (rc == 0) rc = arc;
        page_clear(&p);
        if (rc == 0) rc = cursor_save(x->ms, b, &st);
        if (rc == 0 && more) stopped = pace(x, t0, n->examined - before);
        bool same = true;
        if (rc == 0 && more && !stopped) rc = config_unchanged(x, b, text, &same);
        if (rc == 0 && !same) {
            /* The next run reads it and resumes from the cursor (or, with
             * none left, drops it). */
            free(p.v);
            s3_notify_cache_free(bt->notify);
            free(bt);
            free(st.key);
            return JOBS_DEFER;
        }
    }
    free(p.v);
    s3_notify_cache_free(bt->notify);
    free(bt);
    free(st.key);
    if (rc != 0) return rc;
    if (stopped) return JOBS_RELEASE;
    rc = abort_uploads(x, b, cfg, n);
    if (rc == 0 && jobs_stopping(x->q)) return JOBS_RELEASE;
    if (rc == 0) { /* done: the next run starts from the top */
        lc_cursor none = {0};
        rc = cursor_save(x->ms, b, &none);
    }
    return rc;
}

static int run_lifecycle(void *ud, const meta_job *job, char *err, size_t errlen) {
    lc_ctx *x = ud;
    json_t *a = json_loads(job->args, 0, NULL);
    const char *name = a ? json_string_value(json_object_get(a, "bucket")) : NULL;
    int64_t id = a ? json_integer_value(json_object_get(a, "bucket_id")) : 0;
    meta_bucket b;
    int rc = name && strlen(name) < sizeof b.name ? meta_bucket_get(x->ms, name, &b) : CAIRN_EINVAL;
    json_decref(a);
    if (rc == CAIRN_EINVAL) {
        snprintf(err, errlen, "lifecycle args need bucket and bucket_id");
        return rc;
    }
    if (rc == CAIRN_ENOTFOUND || (rc == 0 && b.id != id)) return 0; /* that bucket is gone */
    if (rc != 0) {
        snprintf(err, errlen, "reading the bucket: %s", cairn_strerror(rc));
        return rc;
    }
    s3_lifecycle_config cfg;
    char *text = NULL;
    rc = load_config(x->ms, b.id, &cfg, &text);
    if (rc == 0 && cfg.n == 0) {
        lc_cursor none = {0};
        return cursor_save(x->ms, &b, &none) == 0 ? 0 : CAIRN_EDB;
    }
    lc_counts n = {0};
    int64_t t0 = time_mono_ns();
    if (rc == 0) rc = run_bucket(x, &b, &cfg, text, &n);
    s3_lifecycle_config_free(&cfg);
    free(text);
    if (n.trash) jobs_enqueue_empty_trash(x->ms);
    char ex[24], e1[24], e2[24], e3[24], e4[24], lk[24], up[24], ms[24];
    log_write(rc == 0 || rc == JOBS_RELEASE || rc == JOBS_DEFER ? LOG_INFO : LOG_WARN, NULL,
              rc == 0                ? "lifecycle run done"
              : rc == JOBS_RELEASE   ? "lifecycle run paused: shutting down"
              : rc == JOBS_DEFER     ? "lifecycle run paused: the configuration changed; the next run resumes"
                                     : "lifecycle run failed; it resumes where it stopped",
              "bucket", b.name, "examined", log_int(ex, n.examined), "expired", log_int(e1, n.expired),
              "markers_made", log_int(e2, n.markers_made), "markers_removed", log_int(e3, n.markers_removed),
              "noncurrent_removed", log_int(e4, n.noncurrent_removed), "locked_skipped", log_int(lk, n.locked),
              "uploads_aborted", log_int(up, n.uploads_aborted), "duration_ms",
              log_int(ms, (time_mono_ns() - t0) / 1000000), NULL);
    if (rc != 0 && rc != JOBS_RELEASE && rc != JOBS_DEFER) snprintf(err, errlen, "lifecycle run: %s", cairn_strerror(rc));
    return rc;
}

int s3_lifecycle_enqueue(meta_store *ms, const char *bucket, int64_t bucket_id) {
    json_t *a = json_pack("{s:s, s:I}", "bucket", bucket, "bucket_id", (json_int_t)bucket_id);
    char *args = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!args) return CAIRN_ENOMEM;
    meta_job j = {.priority = 1, .max_attempts = 10, .run_at_ms = time_now_ms(), .unique_while_pending = true};
    snprintf(j.kind, sizeof j.kind, "lifecycle");
    snprintf(j.unique_key, sizeof j.unique_key, "lifecycle:%lld", (long long)bucket_id);
    j.args = args;
    int rc = meta_job_enqueue(ms, &j, NULL);
    free(args);
    return rc == CAIRN_EEXIST ? 0 : rc; /* one pending run per bucket covers it */
}

typedef struct {
    meta_store *ms;
    int queued;
    int rc;
} scan_ctx;

static int scan_bucket(void *ud, const meta_bucket *b) {
    scan_ctx *s = ud;
    char *doc = NULL;
    int rc = meta_bucket_config_get(s->ms, b->id, "lifecycle", &doc);
    free(doc);
    if (rc == 0) rc = s3_lifecycle_enqueue(s->ms, b->name, b->id);
    if (rc == 0) s->queued++;
    else if (rc != CAIRN_ENOTFOUND) s->rc = rc;
    return 0;
}

static int run_lifecycle_scan(void *ud, const meta_job *job, char *err, size_t errlen) {
    (void)job;
    lc_ctx *x = ud;
    scan_ctx s = {x->ms, 0, 0};
    int rc = meta_bucket_list(x->ms, -1, scan_bucket, &s);
    if (rc == 0) rc = s.rc;
    if (s.queued) jobs_wake(x->q);
    if (rc != 0) snprintf(err, errlen, "lifecycle scan: %s", cairn_strerror(rc));
    return rc;
}

int s3_lifecycle_register(job_queue *q, meta_store *ms, data_store *ds, events_bus *bus, const config_t *cfg) {
    lc_ctx *x = calloc(1, sizeof *x); /* the queue frees it */
    if (!x) return CAIRN_ENOMEM;
    *x = (lc_ctx){.q = q, .ms = ms, .ds = ds, .bus = bus, .per_second = cfg->lifecycle_objects_per_second,
                  .day_ms = day_ms_of(cfg)};
    snprintf(x->region, sizeof x->region, "%s", cfg->region);
    int rc = jobs_register_owned(q, "lifecycle", run_lifecycle, x);
    if (rc != 0) {
        free(x);
        return rc;
    }
    return jobs_register(q, "lifecycle_scan", run_lifecycle_scan, x);
}
