/*
 * tiered.c — the metadata cache over a meta_store (tiered.h): a decorator
 * with the backend's table of operations (meta/meta_int.h), which forwards
 * every call and adds the cache to the five reads and the invalidations to
 * the writes that change what they return.
 *
 * Cache keys: "b" NAME (a bucket record), "k" ACCESS_KEY (an access key, L1
 * only), "o" BUCKET "\0" KEY (an object's head, with its inline bytes), "u" ID
 * (a user: every request's audit event names its user), "c" ID ":" KIND (a
 * bucket configuration: a policy is read by every request on its bucket).
 * Values are the records as this binary lays them out, behind a tag with the
 * record's size, so another build's value in Redis is a miss, never a misread.
 */
#include "cache/tiered.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/l2.h"
#include "meta/meta_int.h"

/* Values larger than this stay out of Redis (an inline object's bytes). */
#define L2_MAX_VALUE (64 * 1024)
/* How long a read waits for this gateway's subscriber to apply the
 * invalidations up to the read's seq before it goes to the database. */
#define LAG_WAIT_MS 50
/* decode_object and c_object_get: the cached value cannot answer this read. */
#define NOT_CACHED 1

typedef struct {
    meta_store base;           /* ops = &t->ops */
    meta_ops ops;
    meta_store *inner;
    cache *l1;                 /* NULL: nothing is cached (an admin command) */
    l2 *l2;                    /* NULL: no Redis */
    int64_t ttl_ms;
    bool reader;
    /* SQLite's external-writer counter (a shared mapping), or NULL. */
    uint64_t *epoch;
    uint64_t epoch_seen;
    /* An invalidation Redis did not take: flush everything once it answers. */
    int l2_dirty;
    uint64_t backend_reads, l1_hits, l1_misses;
    uint64_t write_fills;      /* records a write put into L1 (write-through) */
    int load_delay_ms;         /* tests: each backend read of a cached kind takes this long more */
} tiered;

#define T(ms) ((tiered *)(ms))
#define IN(ms) (T(ms)->inner)

/* ---- values ------------------------------------------------------------------------------ */

typedef struct {
    char tag[4];               /* "B1", "K1", "O1" */
    uint32_t size;             /* sizeof the record */
    uint64_t headers_len, data_len;
    uint32_t has_data;
} value_head;

static void encode(buf_t *out, const char *tag, const void *rec, size_t size, const char *headers, size_t hlen,
                   const void *data, size_t dlen, bool has_data) {
    value_head h = {.size = (uint32_t)size, .headers_len = hlen, .data_len = dlen, .has_data = has_data};
    memcpy(h.tag, tag, 3);
    buf_append(out, &h, sizeof h);
    buf_append(out, rec, size);
    if (hlen) buf_append(out, headers, hlen);
    if (dlen) buf_append(out, data, dlen);
}

/* Checks the value's tag and size; returns the record or NULL. */
static const char *decode_head(const void *val, size_t len, const char *tag, size_t size, value_head *h) {
    if (len < sizeof *h) return NULL;
    memcpy(h, val, sizeof *h);
    if (memcmp(h->tag, tag, 3) != 0 || h->size != size ||
        len != sizeof *h + size + h->headers_len + h->data_len)
        return NULL;
    return (const char *)val + sizeof *h;
}

static void encode_object(buf_t *out, const meta_object *o) {
    meta_object rec = *o;
    rec.headers_json = NULL;
    rec.data = NULL;
    encode(out, "O1", &rec, sizeof rec, o->headers_json, o->headers_json ? strlen(o->headers_json) : 0, o->data,
           o->data ? o->data_len : 0, o->data != NULL);
}

/* Fills out from a cached object value; with_data: the inline bytes too.
 * NOT_CACHED when the value cannot answer (another layout, or the bytes
 * asked for are not in it). */
static int decode_object(const void *val, size_t len, bool with_data, meta_object *out) {
    value_head h;
    const char *rec = decode_head(val, len, "O1", sizeof *out, &h);
    if (!rec) return NOT_CACHED;
    meta_object o;
    memcpy(&o, rec, sizeof o);
    bool need = with_data && o.storage == META_STORE_INLINE;
    if (need && !h.has_data) return NOT_CACHED;
    o.headers_json = NULL;
    o.data = NULL;
    o.data_len = 0;
    o.jobs = NULL; /* a put's borrowed pointers mean nothing here */
    o.njobs = 0;
    const char *p = rec + sizeof o;
    if (h.headers_len && !(o.headers_json = strndup(p, h.headers_len))) return CAIRN_ENOMEM;
    if (need) {
        o.data = malloc(h.data_len ? h.data_len : 1);
        if (!o.data) {
            free(o.headers_json);
            return CAIRN_ENOMEM;
        }
        memcpy(o.data, p + h.headers_len, h.data_len);
        o.data_len = h.data_len;
    }
    *out = o;
    return 0;
}

int tiered_decode_value(const void *val, size_t len) {
    value_head h;
    meta_bucket b;
    meta_key k;
    meta_user u;
    if (decode_head(val, len, "B1", sizeof b, &h) || decode_head(val, len, "K1", sizeof k, &h) ||
        decode_head(val, len, "U1", sizeof u, &h) || decode_head(val, len, "C1", 0, &h))
        return 0;
    meta_object o;
    int rc = decode_object(val, len, true, &o);
    if (rc == 0) meta_object_clear(&o);
    else if (rc == NOT_CACHED && (rc = decode_object(val, len, false, &o)) == 0) meta_object_clear(&o);
    return rc == NOT_CACHED ? CAIRN_EINVAL : rc;
}

/* ---- the read path --------------------------------------------------------------------------- */

static void flush_l1(void *ud) {
    tiered *t = ud;
    if (t->l1) cache_invalidate_all(t->l1);
}

static void drop_l1(void *ud, const void *key, size_t klen) {
    tiered *t = ud;
    if (t->l1) cache_invalidate(t->l1, key, klen);
}

static void channel_changed(void *ud, bool up) {
    tiered *t = ud;
    if (t->l1) cache_set_bypass(t->l1, !up);
}

/* Tells Redis to forget everything after an invalidation it did not take. */
static void settle_dirty(tiered *t) {
    if (!__atomic_load_n(&t->l2_dirty, __ATOMIC_ACQUIRE)) return;
    if (l2_invalidate(t->l2, NULL, NULL, 0) == 0) {
        __atomic_store_n(&t->l2_dirty, 0, __ATOMIC_RELEASE);
        log_write(LOG_INFO, NULL, "redis answers again: every cached value written before was dropped", NULL);
    }
}

/* A request's reads share one seq check (tiered_scope_begin): every write
 * acknowledged before the request began is covered by the first. */
static __thread struct {
    bool active, checked, usable;
    const tiered *t;
    uint64_t epoch;
} scope;

void tiered_scope_begin(void) {
    scope.active = true;
    scope.checked = false;
}

void tiered_scope_end(void) { scope.active = scope.checked = false; }

static bool redis_usable(tiered *t, uint64_t *epoch) {
    if (l2_leases(t->l2)) {
        /* Under a lease: every write acknowledged before now was applied
         * here or waited this lease out (l2.h).  No round trip. */
        settle_dirty(t);
        if (__atomic_load_n(&t->l2_dirty, __ATOMIC_ACQUIRE)) return false;
        return l2_lease_usable(t->l2, epoch);
    }
    uint64_t seq;
    if (l2_sync(t->l2, &seq, epoch) != 0) return false;
    settle_dirty(t);
    if (__atomic_load_n(&t->l2_dirty, __ATOMIC_ACQUIRE)) return false;
    return l2_wait_applied(t->l2, seq, LAG_WAIT_MS);
}

/* Whether this read may use the cache, and under which L2 epoch. */
static bool cache_usable(tiered *t, uint64_t *epoch) {
    *epoch = 0;
    if (!t->l1) return false;
    if (t->l2) {
        if (!scope.active) return redis_usable(t, epoch);
        if (!scope.checked || scope.t != t) {
            scope.usable = redis_usable(t, &scope.epoch);
            scope.checked = true;
            scope.t = t;
        }
        *epoch = scope.epoch;
        return scope.usable;
    }
    if (t->epoch) {
        uint64_t e = __atomic_load_n(t->epoch, __ATOMIC_ACQUIRE);
        if (e != __atomic_load_n(&t->epoch_seen, __ATOMIC_ACQUIRE)) {
            cache_invalidate_all(t->l1);
            __atomic_store_n(&t->epoch_seen, e, __ATOMIC_RELEASE);
        }
    }
    return true;
}

/* Reads one record from the wrapped store into out (encoded). */
typedef int (*backend_read)(tiered *t, void *ctx, buf_t *out);

typedef struct {
    tiered *t;
    bool shared;               /* may live in Redis */
    uint64_t epoch;
    backend_read read;
    void *ctx;
} load_ctx;

static int read_backend(tiered *t, backend_read read, void *ctx, buf_t *out) {
    __atomic_add_fetch(&t->backend_reads, 1, __ATOMIC_RELAXED);
    int delay = __atomic_load_n(&t->load_delay_ms, __ATOMIC_RELAXED);
    if (delay > 0) usleep((useconds_t)delay * 1000);
    int rc = read(t, ctx, out);
    return rc == 0 && out->oom ? CAIRN_ENOMEM : rc;
}

/* Set by a load on this thread: the read was not an L1 hit. */
static __thread bool loaded_here;

/* An L1 miss: L2, then the database (filling L2 if nothing changed the key
 * since its generation was read). */
static int load_tiers(void *ud, const void *key, size_t klen, buf_t *out) {
    load_ctx *lc = ud;
    tiered *t = lc->t;
    loaded_here = true;
    __atomic_add_fetch(&t->l1_misses, 1, __ATOMIC_RELAXED);
    if (!t->l2 || !lc->shared) return read_backend(t, lc->read, lc->ctx, out);
    bool found = false;
    uint64_t gen = 0;
    int grc = l2_get(t->l2, key, klen, lc->epoch, out, &found, &gen);
    if (grc == 0) l2_count(t->l2, found);
    if (grc == 0 && found) return 0;
    buf_reset(out);
    int rc = read_backend(t, lc->read, lc->ctx, out);
    if (rc == 0 && grc == 0 && out->len <= L2_MAX_VALUE) {
        bool stored;
        l2_fill(t->l2, key, klen, lc->epoch, gen, out->data, out->len, t->ttl_ms, &stored);
    }
    return rc;
}

/* The record for key: from the cache when the read may use it, else from
 * the wrapped store.  *val is malloc'd (the caller frees it). */
static int cached_read(tiered *t, const void *key, size_t klen, bool shared, backend_read read, void *ctx,
                       void **val, size_t *vlen) {
    load_ctx lc = {.t = t, .shared = shared, .read = read, .ctx = ctx};
    if (cache_usable(t, &lc.epoch)) {
        loaded_here = false;
        int rc = cache_get_or_load(t->l1, key, klen, load_tiers, &lc, val, vlen);
        if (rc == 0 && !loaded_here) __atomic_add_fetch(&t->l1_hits, 1, __ATOMIC_RELAXED);
        return rc;
    }
    buf_t b;
    buf_init(&b);
    loaded_here = true;
    int rc = read_backend(t, read, ctx, &b);
    if (rc != 0) {
        buf_free(&b);
        return rc;
    }
    *vlen = b.len;
    *val = buf_steal(&b);
    return *val ? 0 : CAIRN_ENOMEM;
}

/* ---- the write path --------------------------------------------------------------------------- */

/* After a write that may have changed these records (whether it says it
 * succeeded or not: an unknown outcome may have committed).  fill (n == 1
 * only, else NULL): the record's new value, which L1 takes in place of the
 * old one unless another write of the key came after fill_version
 * (cache_invalidate_fill); other gateways only drop theirs. */
static void invalidate_fill(tiered *t, const void *const *keys, const size_t *lens, int n, const buf_t *fill,
                            uint64_t fill_version) {
    if (t->l1) {
        if (fill && n == 1 && !fill->oom) {
            /* It invalidates whatever it answers. */
            if (cache_invalidate_fill(t->l1, keys[0], lens[0], fill->data, fill->len, fill_version, t->ttl_ms) == 0)
                __atomic_add_fetch(&t->write_fills, 1, __ATOMIC_RELAXED);
        } else {
            for (int i = 0; i < n; i++) cache_invalidate(t->l1, keys[i], lens[i]);
        }
    }
    if (t->epoch && !t->reader) __atomic_add_fetch(t->epoch, 1, __ATOMIC_ACQ_REL);
    if (!t->l2) return;
    int rc = n > 0 || keys == NULL ? l2_invalidate(t->l2, keys, lens, n) : 0;
    if (rc != 0) {
        /* Other gateways cannot hear of it now: Redis is unreachable for us.
         * Everything goes from L2 at the first chance. */
        if (!__atomic_exchange_n(&t->l2_dirty, 1, __ATOMIC_ACQ_REL))
            log_write(LOG_WARN, NULL, "cache invalidation not published: redis unreachable; L2 is flushed once it answers",
                      "error", cairn_strerror(rc), NULL);
    }
}

static void invalidate(tiered *t, const void *const *keys, const size_t *lens, int n) {
    invalidate_fill(t, keys, lens, n, NULL, 0);
}

static void invalidate_all(tiered *t) {
    if (t->l1) cache_invalidate_all(t->l1);
    if (t->epoch && !t->reader) __atomic_add_fetch(t->epoch, 1, __ATOMIC_ACQ_REL);
    if (t->l2 && l2_invalidate(t->l2, NULL, NULL, 0) != 0) __atomic_store_n(&t->l2_dirty, 1, __ATOMIC_RELEASE);
}

/* "b" NAME, "k" ACCESS_KEY */
static size_t name_key(char *out, size_t cap, char kind, const char *name) {
    int n = snprintf(out, cap, "%c%s", kind, name);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* "o" BUCKET "\0" KEY; out holds 1 + 64 + 1 + 1025 bytes. */
#define OBJ_KEY_MAX (1 + 64 + 1 + 1025)
static size_t object_key(char *out, const char *bucket, const char *key, size_t key_len) {
    size_t bl = strnlen(bucket, 63);
    if (key_len > 1025) key_len = 1025;
    out[0] = 'o';
    memcpy(out + 1, bucket, bl);
    out[1 + bl] = '\0';
    memcpy(out + 2 + bl, key, key_len);
    return 2 + bl + key_len;
}

static void invalidate_one(tiered *t, const char *key, size_t len) {
    const void *keys[1] = {key};
    invalidate(t, keys, &len, 1);
}

static void invalidate_name(tiered *t, char kind, const char *name) {
    char k[200];
    size_t n = name_key(k, sizeof k, kind, name);
    invalidate_one(t, k, n);
}

static void invalidate_object(tiered *t, const char *bucket, const char *key, size_t key_len) {
    char k[OBJ_KEY_MAX];
    invalidate_one(t, k, object_key(k, bucket, key, key_len));
}

/* ---- everything else goes to the wrapped store ---------------------------------------------- */

static int f_ping(meta_store *ms) {
    return IN(ms)->ops->ping(IN(ms));
}
static int f_schema_version(meta_store *ms, int *version) {
    return IN(ms)->ops->schema_version(IN(ms), version);
}
static int f_migration_rows(meta_store *ms, meta_migration_row **rows, int *n) {
    return IN(ms)->ops->migration_rows(IN(ms), rows, n);
}
static int f_user_get_by_name(meta_store *ms, const char *name, meta_user *out) {
    return IN(ms)->ops->user_get_by_name(IN(ms), name, out);
}
static int f_user_list(meta_store *ms, int (*cb)(void *ud, const meta_user *u), void *ud) {
    return IN(ms)->ops->user_list(IN(ms), cb, ud);
}
static int f_key_list(meta_store *ms, int64_t user_id, int (*cb)(void *ud, const meta_key *k), void *ud) {
    return IN(ms)->ops->key_list(IN(ms), user_id, cb, ud);
}
static int f_bucket_list(meta_store *ms, int64_t owner_id, int (*cb)(void *ud, const meta_bucket *b), void *ud) {
    return IN(ms)->ops->bucket_list(IN(ms), owner_id, cb, ud);
}
static int f_bucket_list_page(meta_store *ms, int64_t owner_id, const char *after, const char *lo, const char *hi,
                              int limit, int (*cb)(void *ud, const meta_bucket *b), void *ud, bool *more) {
    return IN(ms)->ops->bucket_list_page(IN(ms), owner_id, after, lo, hi, limit, cb, ud, more);
}
static int f_object_list(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *from, size_t from_len, bool inclusive, int limit, int (*cb)(void *ud, const meta_list_entry *e), void *ud, bool *more) {
    return IN(ms)->ops->object_list(IN(ms), bucket, bucket_id, prefix, prefix_len, from, from_len, inclusive, limit, cb, ud, more);
}
static int f_object_scan(meta_store *ms, const char *after_bucket, const char *after_key, size_t after_key_len, int limit, int (*cb)(void *ud, const meta_scan_entry *e), void *ud, bool *more) {
    return IN(ms)->ops->object_scan(IN(ms), after_bucket, after_key, after_key_len, limit, cb, ud, more);
}
static int f_placement_scan(meta_store *ms, meta_place_cursor *cur, int limit, int (*cb)(void *ud, const meta_placement *p), void *ud) {
    return IN(ms)->ops->placement_scan(IN(ms), cur, limit, cb, ud);
}
static int f_layout_refs(meta_store *ms, const char *id, int64_t *count) {
    return IN(ms)->ops->layout_refs(IN(ms), id, count);
}
static int f_placement_get(meta_store *ms, const char *version_id, meta_placement *out) {
    return IN(ms)->ops->placement_get(IN(ms), version_id, out);
}
static int f_check(meta_store *ms, int limit, int (*cb)(void *ud, const meta_problem *p), void *ud, int64_t *total) {
    return IN(ms)->ops->check(IN(ms), limit, cb, ud, total);
}
static int f_upload_create(meta_store *ms, const meta_upload *u) {
    return IN(ms)->ops->upload_create(IN(ms), u);
}
static int f_upload_get(meta_store *ms, const char *upload_id, meta_upload *out) {
    return IN(ms)->ops->upload_get(IN(ms), upload_id, out);
}
static int f_upload_list(meta_store *ms, int64_t bucket_id, const char *prefix, size_t prefix_len, const char *key_marker, size_t key_marker_len, const char *upload_id_marker, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud, bool *more) {
    return IN(ms)->ops->upload_list(IN(ms), bucket_id, prefix, prefix_len, key_marker, key_marker_len, upload_id_marker, limit, cb, ud, more);
}
static int f_part_put(meta_store *ms, const char *upload_id, const meta_part *p, meta_part *replaced, bool *had_replaced) {
    return IN(ms)->ops->part_put(IN(ms), upload_id, p, replaced, had_replaced);
}
static int f_part_list(meta_store *ms, const char *upload_id, int after, int limit, int (*cb)(void *ud, const meta_part *p), void *ud, bool *more) {
    return IN(ms)->ops->part_list(IN(ms), upload_id, after, limit, cb, ud, more);
}
static int f_upload_abort(meta_store *ms, const char *upload_id, void (*parts)(void *ud, const meta_part *p), void *ud) {
    return IN(ms)->ops->upload_abort(IN(ms), upload_id, parts, ud);
}
static int f_object_parts(meta_store *ms, const char *version_id, int (*cb)(void *ud, const meta_part *p), void *ud) {
    return IN(ms)->ops->object_parts(IN(ms), version_id, cb, ud);
}
static int f_upload_completed_get(meta_store *ms, const char *upload_id, meta_completed_upload *out) {
    return IN(ms)->ops->upload_completed_get(IN(ms), upload_id, out);
}
static int f_upload_completed_prune(meta_store *ms, int64_t before_ms, int limit, int64_t *deleted) {
    return IN(ms)->ops->upload_completed_prune(IN(ms), before_ms, limit, deleted);
}
static int f_trash_list(meta_store *ms, int limit, int (*cb)(void *ud, const meta_trash_entry *e), void *ud) {
    return IN(ms)->ops->trash_list(IN(ms), limit, cb, ud);
}
static int f_trash_remove(meta_store *ms, const char *const *version_ids, int n) {
    return IN(ms)->ops->trash_remove(IN(ms), version_ids, n);
}
static int f_job_enqueue(meta_store *ms, const meta_job *j, int64_t *id) {
    return IN(ms)->ops->job_enqueue(IN(ms), j, id);
}
static int f_job_claim(meta_store *ms, const char *kinds, const char *owner, int64_t now_ms, int64_t lease_ms, meta_job *out) {
    return IN(ms)->ops->job_claim(IN(ms), kinds, owner, now_ms, lease_ms, out);
}
static int f_job_finish(meta_store *ms, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error) {
    return IN(ms)->ops->job_finish(IN(ms), id, owner, state, run_at_ms, error);
}
static int f_job_finish_claim(meta_store *ms, const char *kinds, int64_t id, const char *owner, const char *state, int64_t run_at_ms, const char *error, int64_t now_ms, int64_t lease_ms, int *finish_rc, meta_job *next) {
    return IN(ms)->ops->job_finish_claim(IN(ms), kinds, id, owner, state, run_at_ms, error, now_ms, lease_ms, finish_rc, next);
}
static int f_job_release(meta_store *ms, int64_t id, const char *owner, int64_t run_at_ms) {
    return IN(ms)->ops->job_release(IN(ms), id, owner, run_at_ms);
}
static int f_job_extend(meta_store *ms, int64_t id, const char *owner, int64_t lease_expires_ms) {
    return IN(ms)->ops->job_extend(IN(ms), id, owner, lease_expires_ms);
}
static int f_job_cancel(meta_store *ms, int64_t id) {
    return IN(ms)->ops->job_cancel(IN(ms), id);
}
static int f_job_retry(meta_store *ms, int64_t id) {
    return IN(ms)->ops->job_retry(IN(ms), id);
}
static int f_job_get(meta_store *ms, int64_t id, meta_job *out) {
    return IN(ms)->ops->job_get(IN(ms), id, out);
}
static int f_job_list(meta_store *ms, const char *state, const char *kind, int limit, int (*cb)(void *ud, const meta_job *j), void *ud) {
    return IN(ms)->ops->job_list(IN(ms), state, kind, limit, cb, ud);
}
static int f_job_prune(meta_store *ms, int64_t done_before_ms, int64_t discarded_before_ms, int limit, int64_t *deleted) {
    return IN(ms)->ops->job_prune(IN(ms), done_before_ms, discarded_before_ms, limit, deleted);
}
static int f_job_counts(meta_store *ms, int (*cb)(void *ud, const char *kind, const char *state, int64_t n), void *ud) {
    return IN(ms)->ops->job_counts(IN(ms), cb, ud);
}
static int f_upload_list_older(meta_store *ms, int64_t before_ms, int limit, int (*cb)(void *ud, const meta_upload *u), void *ud) {
    return IN(ms)->ops->upload_list_older(IN(ms), before_ms, limit, cb, ud);
}
static int f_node_upsert(meta_store *ms, const char *id, const char *url) {
    return IN(ms)->ops->node_upsert(IN(ms), id, url);
}
static int f_node_list(meta_store *ms, int (*cb)(void *ud, const meta_node *n), void *ud) {
    return IN(ms)->ops->node_list(IN(ms), cb, ud);
}
static int f_node_get(meta_store *ms, const char *id_or_url, meta_node *out) {
    return IN(ms)->ops->node_get(IN(ms), id_or_url, out);
}
static int f_node_set_state(meta_store *ms, const char *id, const char *state) {
    return IN(ms)->ops->node_set_state(IN(ms), id, state);
}
static int f_node_seen(meta_store *ms, const char *id, bool ok, const char *error) {
    return IN(ms)->ops->node_seen(IN(ms), id, ok, error);
}
static int f_version_referenced(meta_store *ms, const char *version_id, bool *referenced) {
    return IN(ms)->ops->version_referenced(IN(ms), version_id, referenced);
}
static int f_object_count(meta_store *ms, const char *bucket, int64_t *count) {
    return IN(ms)->ops->object_count(IN(ms), bucket, count);
}

/* ---- the cached reads ----------------------------------------------------------------------- */

static int read_bucket(tiered *t, void *ctx, buf_t *out) {
    meta_bucket b;
    int rc = t->inner->ops->bucket_get(t->inner, ctx, &b);
    if (rc == 0) encode(out, "B1", &b, sizeof b, NULL, 0, NULL, 0, false);
    return rc;
}

static int read_key(tiered *t, void *ctx, buf_t *out) {
    meta_key k;
    int rc = t->inner->ops->key_get(t->inner, ctx, &k);
    if (rc == 0) encode(out, "K1", &k, sizeof k, NULL, 0, NULL, 0, false);
    return rc;
}

/* A fixed-size record named by kind and name: from the cache, into out
 * (size bytes).  NOT_CACHED when the cached value is not one (the caller
 * asks the store). */
static int named_record(meta_store *ms, char kind, const char *name, bool shared, backend_read read,
                        const char *tag, void *out, size_t size) {
    char k[200];
    size_t kl = name_key(k, sizeof k, kind, name);
    void *val;
    size_t vlen;
    int rc = cached_read(T(ms), k, kl, shared, read, (void *)name, &val, &vlen);
    if (rc != 0) return rc;
    value_head h;
    const char *rec = decode_head(val, vlen, tag, size, &h);
    if (rec) memcpy(out, rec, size);
    sodium_memzero(val, vlen); /* a key's record holds its sealed secret */
    free(val);
    return rec ? 0 : NOT_CACHED;
}

static int read_user(tiered *t, void *ctx, buf_t *out) {
    meta_user u;
    int rc = t->inner->ops->user_get(t->inner, *(const int64_t *)ctx, &u);
    if (rc == 0) encode(out, "U1", &u, sizeof u, NULL, 0, NULL, 0, false);
    return rc;
}

/* "u" ID: a user's record (every request's audit event names its user). */
static size_t user_key(char *out, size_t cap, int64_t id) {
    char n[24];
    snprintf(n, sizeof n, "%lld", (long long)id);
    return name_key(out, cap, 'u', n);
}

static int c_user_get(meta_store *ms, int64_t id, meta_user *out) {
    char k[40];
    size_t kl = user_key(k, sizeof k, id);
    void *val;
    size_t vlen;
    int rc = cached_read(T(ms), k, kl, true, read_user, &id, &val, &vlen);
    if (rc == 0) {
        value_head h;
        const char *rec = decode_head(val, vlen, "U1", sizeof *out, &h);
        if (rec) memcpy(out, rec, sizeof *out);
        free(val);
        if (rec) return 0;
        rc = NOT_CACHED;
    }
    return rc != NOT_CACHED ? rc : IN(ms)->ops->user_get(IN(ms), id, out);
}

static int c_bucket_get(meta_store *ms, const char *name, meta_bucket *out) {
    int rc = named_record(ms, 'b', name, true, read_bucket, "B1", out, sizeof *out);
    return rc != NOT_CACHED ? rc : IN(ms)->ops->bucket_get(IN(ms), name, out);
}

static int c_key_get(meta_store *ms, const char *access_key, meta_key *out) {
    /* L1 only: a secret, even sealed, is not shared beyond the process. */
    int rc = named_record(ms, 'k', access_key, false, read_key, "K1", out, sizeof *out);
    return rc != NOT_CACHED ? rc : IN(ms)->ops->key_get(IN(ms), access_key, out);
}

typedef struct {
    const char *bucket;
    int64_t bucket_id;
    const char *key;
    size_t key_len;
} object_ref;

static int read_object(tiered *t, void *ctx, buf_t *out) {
    object_ref *r = ctx;
    meta_object o;
    memset(&o, 0, sizeof o);
    /* With the inline bytes: a GET after a HEAD finds them. */
    int rc = t->inner->ops->object_get(t->inner, r->bucket, r->bucket_id, r->key, r->key_len, true, &o);
    if (rc == 0) encode_object(out, &o);
    meta_object_clear(&o);
    return rc;
}

static int c_object_get(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                        bool with_data, meta_object *out) {
    /* Zeroed on every outcome, as the backends leave it (a cached absence
     * included), so meta_object_clear(out) is always safe. */
    memset(out, 0, sizeof *out);
    char k[OBJ_KEY_MAX];
    size_t kl = object_key(k, bucket, key, key_len);
    object_ref r = {.bucket = bucket, .bucket_id = bucket_id, .key = key, .key_len = key_len};
    void *val;
    size_t vlen;
    int rc = key_len <= 1025 && strlen(bucket) < 64 ? cached_read(T(ms), k, kl, true, read_object, &r, &val, &vlen)
                                                    : NOT_CACHED;
    if (rc == 0) {
        rc = decode_object(val, vlen, with_data, out);
        free(val);
        /* Read for another bucket of that name (or for whichever): this
         * request's bucket must answer for itself. */
        if (rc == 0 && out->bucket_id != bucket_id) {
            meta_object_clear(out);
            rc = NOT_CACHED;
        }
    }
    /* Another caller's load, for another bucket of the name, found nothing. */
    if (rc == CAIRN_ENOTFOUND && !loaded_here) rc = NOT_CACHED;
    if (rc != NOT_CACHED) return rc;
    return IN(ms)->ops->object_get(IN(ms), bucket, bucket_id, key, key_len, with_data, out);
}

/* ---- the writes that invalidate ----------------------------------------------------------------- */

static void invalidate_user(tiered *t, int64_t id) {
    char k[40];
    size_t kl = user_key(k, sizeof k, id);
    invalidate_one(t, k, kl);
}

static int c_user_create(meta_store *ms, meta_user *u) {
    int rc = IN(ms)->ops->user_create(IN(ms), u);
    if (rc == 0) invalidate_user(T(ms), u->id); /* a miss on a new id may be cached nowhere, but be sure */
    return rc;
}

static int c_user_ensure_root(meta_store *ms, const char *name, meta_user *out) {
    int rc = IN(ms)->ops->user_ensure_root(IN(ms), name, out);
    if (rc == 0) invalidate_user(T(ms), out->id);
    return rc;
}

static int c_user_set_audit(meta_store *ms, const char *name, bool audit) {
    int rc = IN(ms)->ops->user_set_audit(IN(ms), name, audit);
    meta_user u;
    /* Whatever it says: an unknown outcome may have committed. */
    if (IN(ms)->ops->user_get_by_name(IN(ms), name, &u) == 0) invalidate_user(T(ms), u.id);
    return rc;
}

static int c_key_create(meta_store *ms, const meta_key *k) {
    int rc = IN(ms)->ops->key_create(IN(ms), k);
    invalidate_name(T(ms), 'k', k->access_key);
    return rc;
}

static int c_key_set_active(meta_store *ms, const char *access_key, bool active) {
    int rc = IN(ms)->ops->key_set_active(IN(ms), access_key, active);
    invalidate_name(T(ms), 'k', access_key);
    return rc;
}

static int c_bucket_create(meta_store *ms, meta_bucket *b, int64_t *existing_owner) {
    int rc = IN(ms)->ops->bucket_create(IN(ms), b, existing_owner);
    invalidate_name(T(ms), 'b', b->name);
    return rc;
}

static int c_bucket_delete(meta_store *ms, const char *name, int64_t id) {
    int rc = IN(ms)->ops->bucket_delete(IN(ms), name, id);
    invalidate_name(T(ms), 'b', name);
    return rc;
}

static int c_bucket_set_public(meta_store *ms, const char *name, bool public_read) {
    int rc = IN(ms)->ops->bucket_set_public(IN(ms), name, public_read);
    invalidate_name(T(ms), 'b', name);
    return rc;
}

static int c_object_set_headers(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                                const char *version_id, const char *expected, const char *headers_json) {
    int rc = IN(ms)->ops->object_set_headers(IN(ms), bucket, bucket_id, key, key_len, version_id, expected,
                                             headers_json);
    invalidate_object(T(ms), bucket, key, key_len);
    return rc;
}

static int c_bucket_enable_object_lock(meta_store *ms, const char *name, int64_t bucket_id) {
    int rc = IN(ms)->ops->bucket_enable_object_lock(IN(ms), name, bucket_id);
    invalidate_name(T(ms), 'b', name);
    return rc;
}

static int c_bucket_set_versioning(meta_store *ms, const char *name, int64_t bucket_id, meta_versioning state) {
    int rc = IN(ms)->ops->bucket_set_versioning(IN(ms), name, bucket_id, state);
    invalidate_name(T(ms), 'b', name);
    return rc;
}

/* Write-through: the committed record goes into this gateway's L1 in place
 * of the old one (a GET right after a PUT is a hit, not three round trips),
 * under the version taken before the commit, so a later write of the key
 * by another thread here (or one heard from another gateway) wins.  Only
 * for a put naming its bucket's id into a bucket without versioning: the
 * record is then exactly what the backend stores (meta_object_put stores
 * obj as given, the current null version); where versions are kept the
 * backend numbers them, and the next read fills the entry. */
static int c_object_put(meta_store *ms, const meta_object *obj, meta_object *replaced, bool *had_replaced) {
    tiered *t = T(ms);
    bool through = t->l1 && obj->bucket_id > 0 && obj->key_len <= 1025 && strlen(obj->bucket) < 64 &&
                   (obj->storage != META_STORE_INLINE || obj->data || obj->data_len == 0);
    meta_bucket b;
    if (through) through = c_bucket_get(ms, obj->bucket, &b) == 0 && b.id == obj->bucket_id &&
                           b.versioning == META_VERSIONING_OFF;
    uint64_t version = through ? cache_version_begin(t->l1) : 0;
    int rc = IN(ms)->ops->object_put(IN(ms), obj, replaced, had_replaced);
    char k[OBJ_KEY_MAX];
    size_t kl = object_key(k, obj->bucket, obj->key, obj->key_len);
    const void *keys[1] = {k};
    if (rc != 0 || !through) {
        invalidate(t, keys, &kl, 1);
        return rc;
    }
    buf_t val;
    buf_init(&val);
    meta_object rec = *obj;
    rec.is_latest = rec.null_version = true;
    rec.delete_marker = false;
    rec.jobs = NULL;
    rec.njobs = 0;
    rec.cond = META_PUT_ALWAYS;
    encode_object(&val, &rec);
    invalidate_fill(t, keys, &kl, 1, &val, version);
    buf_free(&val);
    return rc;
}

static int c_object_delete(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key, size_t key_len,
                           const char *version_id, int64_t owner_id, const char *marker_id,
                           const meta_lock_check *lock, const meta_job *jobs, int njobs,
                           const meta_audit_outbox *audit, meta_delete_result *res) {
    int rc = IN(ms)->ops->object_delete(IN(ms), bucket, bucket_id, key, key_len, version_id, owner_id, marker_id,
                                        lock, jobs, njobs, audit, res);
    invalidate_object(T(ms), bucket, key, key_len);
    return rc;
}

static int c_object_delete_many(meta_store *ms, const char *bucket, int64_t bucket_id, meta_delete_item *items,
                                int n) {
    int rc = IN(ms)->ops->object_delete_many(IN(ms), bucket, bucket_id, items, n);
    if (n <= 0) return rc;
    char *keys = malloc((size_t)n * OBJ_KEY_MAX);
    const void **kp = calloc((size_t)n, sizeof *kp);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    if (!keys || !kp || !lens) {
        invalidate_all(T(ms)); /* cannot name them: drop everything */
    } else {
        for (int i = 0; i < n; i++) {
            kp[i] = keys + (size_t)i * OBJ_KEY_MAX;
            lens[i] = object_key(keys + (size_t)i * OBJ_KEY_MAX, bucket, items[i].key, items[i].key_len);
        }
        invalidate(T(ms), kp, lens, n);
    }
    free(keys);
    free(kp);
    free(lens);
    return rc;
}

static int c_upload_complete(meta_store *ms, const char *upload_id, const meta_object *obj, const meta_part *parts,
                             int n, meta_object *replaced, bool *had_replaced,
                             void (*unused)(void *ud, const meta_part *p), void *ud) {
    int rc = IN(ms)->ops->upload_complete(IN(ms), upload_id, obj, parts, n, replaced, had_replaced, unused, ud);
    invalidate_object(T(ms), obj->bucket, obj->key, obj->key_len);
    return rc;
}

static int c_placement_set_layout(meta_store *ms, const char *version_id, const char *old_layout,
                                  const char *new_layout) {
    meta_placement p;
    int grc = IN(ms)->ops->placement_get(IN(ms), version_id, &p);
    int rc = IN(ms)->ops->placement_set_layout(IN(ms), version_id, old_layout, new_layout);
    if (grc == 0 && p.kind == META_PLACE_OBJECT) invalidate_object(T(ms), p.owner, p.key, p.key_len);
    else if (grc != 0 && grc != CAIRN_ENOTFOUND) invalidate_all(T(ms));
    return rc;
}

static int c_repair(meta_store *ms, const meta_problem *p, void (*drop)(void *ud, const char *version_id,
                                                                       const char *layout), void *ud) {
    int rc = IN(ms)->ops->repair(IN(ms), p, drop, ud);
    invalidate_all(T(ms));
    return rc;
}

static int c_migrate(meta_store *ms, int target, char *why, size_t whylen) {
    int rc = IN(ms)->ops->migrate(IN(ms), target, why, whylen);
    invalidate_all(T(ms));
    return rc;
}

static int f_lease_acquire(meta_store *ms, const char *name, const char *holder, int64_t now_ms, int64_t ttl_ms,
                           bool *held) {
    return IN(ms)->ops->lease_acquire(IN(ms), name, holder, now_ms, ttl_ms, held);
}
static int f_lease_release(meta_store *ms, const char *name, const char *holder) {
    return IN(ms)->ops->lease_release(IN(ms), name, holder);
}
static int f_notify_target_add(meta_store *ms, const meta_notify_target *t) {
    return IN(ms)->ops->notify_target_add(IN(ms), t);
}
static int f_notify_target_get(meta_store *ms, const char *name, meta_notify_target *out) {
    return IN(ms)->ops->notify_target_get(IN(ms), name, out);
}
static int f_notify_target_list(meta_store *ms, int (*cb)(void *ud, const meta_notify_target *t), void *ud) {
    return IN(ms)->ops->notify_target_list(IN(ms), cb, ud);
}
static int f_notify_target_remove(meta_store *ms, const char *name) {
    return IN(ms)->ops->notify_target_remove(IN(ms), name);
}
/* Rate limit overrides: every gateway reads them whole, once a second
 * (s3/limits.c); nothing to cache. */
static int f_limit_set(meta_store *ms, const meta_limit *l) { return IN(ms)->ops->limit_set(IN(ms), l); }
static int f_limit_list(meta_store *ms, int (*cb)(void *ud, const meta_limit *l), void *ud) {
    return IN(ms)->ops->limit_list(IN(ms), cb, ud);
}
static int f_limit_remove(meta_store *ms, const char *kind, const char *name) {
    return IN(ms)->ops->limit_remove(IN(ms), kind, name);
}
static int f_bucket_notification_get(meta_store *ms, int64_t bucket_id, char **config) {
    return IN(ms)->ops->bucket_notification_get(IN(ms), bucket_id, config);
}
static int f_bucket_notification_put(meta_store *ms, int64_t bucket_id, const char *config) {
    return IN(ms)->ops->bucket_notification_put(IN(ms), bucket_id, config);
}

/* "c" ID ":" KIND: a bucket's configuration of one kind (its policy is
 * read by every request on the bucket; decision 0020). */
typedef struct {
    int64_t bucket_id;
    const char *kind;
} config_ref;

static size_t config_key(char *out, size_t cap, int64_t bucket_id, const char *kind) {
    char n[80];
    snprintf(n, sizeof n, "%lld:%s", (long long)bucket_id, kind);
    return name_key(out, cap, 'c', n);
}

static int read_config(tiered *t, void *ctx, buf_t *out) {
    config_ref *r = ctx;
    char *body = NULL;
    int rc = t->inner->ops->bucket_config_get(t->inner, r->bucket_id, r->kind, &body);
    if (rc == 0) encode(out, "C1", "", 0, body, strlen(body), NULL, 0, false);
    free(body);
    return rc;
}

static int c_bucket_config_get(meta_store *ms, int64_t bucket_id, const char *kind, char **body) {
    char k[120];
    size_t kl = config_key(k, sizeof k, bucket_id, kind);
    config_ref ref = {bucket_id, kind};
    void *val;
    size_t vlen;
    int rc = cached_read(T(ms), k, kl, true, read_config, &ref, &val, &vlen);
    if (rc != 0) return rc;
    value_head h;
    const char *rec = decode_head(val, vlen, "C1", 0, &h);
    if (!rec) {
        free(val);
        return IN(ms)->ops->bucket_config_get(IN(ms), bucket_id, kind, body);
    }
    /* The document is handed out in the value's own buffer (a policy is
     * read on every request of its bucket: one copy, not two).  The value
     * holds the head, then the body without its NUL: room for one. */
    memmove(val, rec, h.headers_len);
    ((char *)val)[h.headers_len] = '\0';
    *body = val;
    return rc;
}
/* The bucket record carries which configurations it has (meta_bucket.configs). */
static int f_bucket_config_put(meta_store *ms, const char *bucket, int64_t bucket_id, const char *kind, const char *body) {
    int rc = IN(ms)->ops->bucket_config_put(IN(ms), bucket, bucket_id, kind, body);
    char k[120];
    invalidate_one(T(ms), k, config_key(k, sizeof k, bucket_id, kind));
    if (meta_config_bit(kind)) invalidate_name(T(ms), 'b', bucket);
    return rc;
}

static int f_object_get_version(meta_store *ms, const char *bucket, int64_t bucket_id, const char *key,
                                size_t key_len, const char *version_id, bool with_data, meta_object *out) {
    return IN(ms)->ops->object_get_version(IN(ms), bucket, bucket_id, key, key_len, version_id, with_data, out);
}
static int f_object_list_versions(meta_store *ms, const char *bucket, int64_t bucket_id, const char *prefix,
                                  size_t prefix_len, const char *after_key, size_t after_key_len, int64_t after_seq,
                                  int limit, int (*cb)(void *ud, const meta_version_entry *e), void *ud, bool *more) {
    return IN(ms)->ops->object_list_versions(IN(ms), bucket, bucket_id, prefix, prefix_len, after_key, after_key_len,
                                             after_seq, limit, cb, ud, more);
}

static int f_job_pending_count(meta_store *ms, const char *kind, const char *needle, int64_t before_id, int64_t *n) {
    return IN(ms)->ops->job_pending_count(IN(ms), kind, needle, before_id, n);
}

static int f_lease_get(meta_store *ms, const char *name, meta_lease *out) {
    return IN(ms)->ops->lease_get(IN(ms), name, out);
}

static int f_audit_insert(meta_store *ms, const meta_audit_event *ev, int n, int *inserted) {
    return IN(ms)->ops->audit_insert(IN(ms), ev, n, inserted);
}
static int f_audit_query(meta_store *ms, const meta_audit_filter *f, int limit,
                         int (*cb)(void *ud, const meta_audit_event *e), void *ud, int *count) {
    return IN(ms)->ops->audit_query(IN(ms), f, limit, cb, ud, count);
}
static int f_audit_delete_before(meta_store *ms, int64_t before_us, int limit, int64_t *deleted) {
    return IN(ms)->ops->audit_delete_before(IN(ms), before_us, limit, deleted);
}
static int f_audit_outbox_read(meta_store *ms, const char *origin, int64_t adopt_before_ms, int limit,
                               meta_outbox_row **rows, int *n) {
    return IN(ms)->ops->audit_outbox_read(IN(ms), origin, adopt_before_ms, limit, rows, n);
}
static int f_audit_outbox_delete(meta_store *ms, const int64_t *ids, int n) {
    return IN(ms)->ops->audit_outbox_delete(IN(ms), ids, n);
}
static int f_audit_outbox_count(meta_store *ms, const char *origin, int64_t *count, int64_t *oldest_ms) {
    return IN(ms)->ops->audit_outbox_count(IN(ms), origin, count, oldest_ms);
}

static int c_job_listener_open(meta_store *ms, meta_listener **out) {
    return IN(ms)->ops->job_listener_open(IN(ms), out);
}

static int c_pool_stats(meta_store *ms, meta_pool_stats *out) {
    return IN(ms)->ops->pool_stats(IN(ms), out);
}

static void c_close(meta_store *ms) {
    tiered *t = T(ms);
    l2_free(t->l2); /* first: its subscriber calls into the L1 */
    cache_free(t->l1);
    if (t->epoch) munmap(t->epoch, sizeof *t->epoch);
    meta_close(t->inner);
    free(t);
}

/* ---- life ------------------------------------------------------------------------------------------ */

static int map_epoch(const char *path, uint64_t **out, char *why, size_t whylen) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (st.st_size < (off_t)sizeof(uint64_t) && ftruncate(fd, sizeof(uint64_t)) != 0)) {
        snprintf(why, whylen, "cannot open the cache's counter file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return CAIRN_EIO;
    }
    void *m = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(why, whylen, "cannot map the cache's counter file %s: %s", path, strerror(errno));
        return CAIRN_EIO;
    }
    *out = m;
    return 0;
}

/* The key manager's rows are read by kms.c's own cache (kms.h): never
 * cached here, only passed through. */
static int f_kms_key_create(meta_store *ms, const char *id, const char *description, const uint8_t *sealed,
                            int64_t now_ms) {
    return IN(ms)->ops->kms_key_create(IN(ms), id, description, sealed, now_ms);
}
static int f_kms_key_get(meta_store *ms, const char *id, meta_kms_key *out) {
    return IN(ms)->ops->kms_key_get(IN(ms), id, out);
}
static int f_kms_key_list(meta_store *ms, int (*cb)(void *ud, const meta_kms_key *k), void *ud) {
    return IN(ms)->ops->kms_key_list(IN(ms), cb, ud);
}
static int f_kms_key_set_enabled(meta_store *ms, const char *id, bool enabled) {
    return IN(ms)->ops->kms_key_set_enabled(IN(ms), id, enabled);
}
static int f_kms_version_add(meta_store *ms, const char *id, int version, const uint8_t *sealed, int64_t now_ms) {
    return IN(ms)->ops->kms_version_add(IN(ms), id, version, sealed, now_ms);
}
static int f_kms_version_get(meta_store *ms, const char *id, int version, uint8_t *sealed) {
    return IN(ms)->ops->kms_version_get(IN(ms), id, version, sealed);
}
static int f_upload_set_headers_if(meta_store *ms, const char *upload_id, const char *expected, const char *headers_json) {
    return IN(ms)->ops->upload_set_headers_if(IN(ms), upload_id, expected, headers_json);
}

static int invalidate_key_row(void *ud, const meta_key *k) {
    invalidate_name(ud, 'k', k->access_key);
    return 0;
}

/* A re-seal rewrites every access key's sealed secret: the cached rows go,
 * whatever the outcome (an unknown one may have committed). */
static int c_master_reseal(meta_store *ms, const meta_reseal *r, int64_t *count) {
    int rc = IN(ms)->ops->master_reseal(IN(ms), r, count);
    IN(ms)->ops->key_list(IN(ms), -1, invalidate_key_row, T(ms));
    return rc;
}

static void set_ops(tiered *t) {
    meta_ops *o = &t->ops;
    *o = *t->inner->ops; /* the name and the migrations; every function is replaced below */
#define F(n) o->n = f_##n
    F(ping); F(schema_version); F(migration_rows);
    F(user_get_by_name); F(user_list); F(key_list); F(bucket_list); F(object_list); F(object_scan);
    F(placement_scan); F(layout_refs); F(placement_get); F(check); F(upload_create); F(upload_get);
    F(upload_list); F(part_put); F(part_list); F(upload_abort); F(object_parts); F(upload_completed_get);
    F(upload_completed_prune); F(trash_list); F(trash_remove); F(job_enqueue); F(job_claim); F(job_finish);
    F(job_finish_claim); F(job_release); F(job_extend); F(job_cancel); F(job_retry); F(job_get); F(job_list);
    F(job_prune); F(job_counts); F(upload_list_older); F(node_upsert); F(node_list); F(node_get);
    F(node_set_state); F(node_seen); F(version_referenced); F(object_count); F(lease_acquire); F(lease_release);
    F(lease_get); F(audit_insert); F(audit_query); F(audit_delete_before); F(audit_outbox_read); F(audit_outbox_delete); F(audit_outbox_count); F(notify_target_add);
    F(notify_target_get); F(notify_target_list); F(notify_target_remove); F(bucket_notification_get);
    F(bucket_notification_put); F(job_pending_count); F(bucket_config_put); F(limit_set); F(limit_list);
    F(limit_remove);
    F(object_get_version); F(object_list_versions);
    F(bucket_list_page);
    F(kms_key_create); F(kms_key_get); F(kms_key_list); F(kms_key_set_enabled); F(kms_version_add);
    F(kms_version_get); F(upload_set_headers_if);
#undef F
#define C(n) o->n = c_##n
    C(close); C(migrate); C(key_create); C(key_get); C(key_set_active); C(bucket_create); C(bucket_get); C(bucket_config_get);
    C(bucket_delete); C(bucket_set_public); C(object_put); C(object_get); C(object_delete); C(object_delete_many);
    C(placement_set_layout); C(repair); C(upload_complete); C(user_get); C(user_create); C(user_ensure_root);
    C(user_set_audit); C(bucket_set_versioning); C(bucket_enable_object_lock); C(object_set_headers);
    C(master_reseal);
#undef C
    o->pool_stats = t->inner->ops->pool_stats ? c_pool_stats : NULL;
    o->job_listener_open = t->inner->ops->job_listener_open ? c_job_listener_open : NULL;
}

bool tiered_is(const meta_store *ms) { return ms && ms->ops->close == c_close; }

int tiered_wrap(meta_store *inner, const tiered_options *o, meta_store **out, char *why, size_t whylen) {
    *out = inner;
    if (why && whylen) why[0] = '\0';
    bool redis = o->redis_url && o->redis_url[0];
    bool sqlite = !strcmp(meta_backend_name(inner), "sqlite");
    bool epoch = sqlite && o->epoch_path && o->epoch_path[0];
    /* Caching needs a way to hear of every other writer. */
    bool l1 = o->reader && o->bytes > 0 && (redis || sqlite);
    if (!l1 && !redis && !epoch) return 0;
    if (o->reader && !l1 && !redis) return 0;
    tiered *t = calloc(1, sizeof *t);
    if (!t) return CAIRN_ENOMEM;
    t->inner = inner;
    t->reader = o->reader;
    t->ttl_ms = o->ttl_ms > 0 ? o->ttl_ms : 60000;
    int rc = 0;
    if (l1) {
        cache_options co;
        cache_options_default(&co);
        co.capacity = o->bytes < 64 * 1024 ? 64 * 1024 : o->bytes;
        co.ttl_ms = t->ttl_ms;
        rc = cache_new(&co, &t->l1);
        if (rc != 0) snprintf(why, whylen, "cannot create the metadata cache: %s", cairn_strerror(rc));
    }
    if (rc == 0 && epoch) rc = map_epoch(o->epoch_path, &t->epoch, why, whylen);
    if (rc == 0 && t->epoch) t->epoch_seen = __atomic_load_n(t->epoch, __ATOMIC_ACQUIRE);
    if (rc == 0 && redis) {
        /* Until the channel is up nothing other gateways wrote can be ruled out. */
        if (t->l1) cache_set_bypass(t->l1, true);
        l2_options lo = {.url = o->redis_url, .timeout_ms = o->redis_timeout_ms, .breaker_ms = o->redis_breaker_ms,
                         .lease_ms = o->lease_ms, .subscribe = t->l1 != NULL, .invalidate = drop_l1, .flush = flush_l1,
                         .channel = channel_changed, .ud = t};
        rc = l2_new(&lo, &t->l2, why, whylen);
    }
    if (rc != 0) {
        l2_free(t->l2);
        cache_free(t->l1);
        if (t->epoch) munmap(t->epoch, sizeof *t->epoch);
        free(t);
        return rc;
    }
    set_ops(t);
    t->base.ops = &t->ops;
    *out = &t->base;
    return 0;
}

/* ---- figures ------------------------------------------------------------------------------------- */

void tiered_redis_state(meta_store *ms, bool *configured, bool *up) {
    *configured = *up = false;
    if (!tiered_is(ms) || !T(ms)->l2) return;
    l2_stats st;
    l2_stats_get(T(ms)->l2, &st);
    *configured = true;
    *up = st.channel_up && st.breaker == 0;
}

l2 *tiered_test_l2(meta_store *ms) { return tiered_is(ms) ? T(ms)->l2 : NULL; }

void tiered_set_load_delay_ms(meta_store *ms, int delay_ms) {
    if (tiered_is(ms)) __atomic_store_n(&T(ms)->load_delay_ms, delay_ms, __ATOMIC_RELAXED);
}

void tiered_counts_get(meta_store *ms, tiered_counts *out) {
    memset(out, 0, sizeof *out);
    if (!tiered_is(ms)) return;
    tiered *t = T(ms);
    out->l1_hits = __atomic_load_n(&t->l1_hits, __ATOMIC_RELAXED);
    out->l1_misses = __atomic_load_n(&t->l1_misses, __ATOMIC_RELAXED);
    out->backend_reads = __atomic_load_n(&t->backend_reads, __ATOMIC_RELAXED);
    out->write_fills = __atomic_load_n(&t->write_fills, __ATOMIC_RELAXED);
    if (t->l2) {
        l2_stats st;
        l2_stats_get(t->l2, &st);
        out->l2_hits = st.hits;
        out->l2_misses = st.misses;
    }
}

/* One counter family with a sample per tier present (l1 and l2 may be NULL). */
static void family(buf_t *b, const char *name, const char *help, const uint64_t *v1, const uint64_t *v2) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    if (v1) buf_printf(b, "%s{tier=\"l1\"} %llu\n", name, (unsigned long long)*v1);
    if (v2) buf_printf(b, "%s{tier=\"l2\"} %llu\n", name, (unsigned long long)*v2);
}

static void gauge(buf_t *b, const char *name, const char *help, long long v) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

void tiered_render_metrics(meta_store *ms, buf_t *b) {
    if (!tiered_is(ms)) return;
    tiered *t = T(ms);
    cache_stats s;
    memset(&s, 0, sizeof s);
    l2_stats st;
    memset(&st, 0, sizeof st);
    if (t->l1) cache_stats_get(t->l1, &s);
    if (t->l2) l2_stats_get(t->l2, &st);
    uint64_t evicted = s.evictions + s.expirations;
#define TIERS(a, b2) (t->l1 ? &(a) : NULL), (t->l2 ? &(b2) : NULL)
    family(b, "cairn_cache_hits_total", "Metadata cache reads the tier answered.", TIERS(s.hits, st.hits));
    family(b, "cairn_cache_misses_total", "Metadata cache reads the tier could not answer.", TIERS(s.misses, st.misses));
    family(b, "cairn_cache_fills_total", "Values stored in the tier.", TIERS(s.fills, st.fills));
    family(b, "cairn_cache_stale_fills_total", "Fills refused as older than an invalidation.",
           TIERS(s.stale_fills, st.stale_fills));
    family(b, "cairn_cache_invalidations_total", "Keys invalidated in the tier (flushes not included).",
           TIERS(s.invalidations, st.invalidations));
    family(b, "cairn_cache_flushes_total", "Flushes of the whole tier.", TIERS(s.flushes, st.flushes));
    family(b, "cairn_cache_evictions_total", "Values the L1 dropped to make room or past their TTL.",
           t->l1 ? &evicted : NULL, NULL);
#undef TIERS
    if (t->l1) {
        gauge(b, "cairn_cache_bytes", "Bytes of values in the L1 now.", (long long)s.bytes);
        gauge(b, "cairn_cache_bypass", "1 while the L1 is bypassed (the invalidation channel is down).",
              cache_bypassed(t->l1) ? 1 : 0);
        uint64_t wf = __atomic_load_n(&t->write_fills, __ATOMIC_RELAXED);
        family(b, "cairn_cache_write_fills_total", "Object records a PUT stored in the L1 as it committed them.", &wf,
               NULL);
    }
    if (t->l2) {
        family(b, "cairn_cache_redis_errors_total", "Redis commands that failed.", NULL, &st.errors);
        gauge(b, "cairn_cache_breaker_state", "The Redis circuit breaker: 0 closed, 1 open, 2 half-open.", st.breaker);
        family(b, "cairn_cache_breaker_opens_total", "Times the Redis circuit breaker opened.", NULL,
               &st.breaker_opens);
        gauge(b, "cairn_cache_channel_up", "1 while the invalidation channel is subscribed.", st.channel_up ? 1 : 0);
        family(b, "cairn_cache_channel_drops_total", "Times the invalidation channel was lost.", NULL,
               &st.channel_drops);
        if (l2_leases(t->l2)) {
            gauge(b, "cairn_cache_lease_held", "1 while this gateway holds its cache lease in Redis.",
                  st.lease_held ? 1 : 0);
            family(b, "cairn_cache_lease_renewals_total", "Renewals of this gateway's cache lease.", NULL,
                   &st.lease_renewals);
            family(b, "cairn_cache_lease_lapses_total", "Times this gateway's cache lease ran out before its renewal.",
                   NULL, &st.lease_lapses);
            family(b, "cairn_cache_write_waits_total",
                   "Writes that waited for another gateway to apply their invalidation.", NULL, &st.write_waits);
            family(b, "cairn_cache_lease_timeouts_total",
                   "Writes that stopped waiting for a gateway because its lease ran out.", NULL, &st.lease_timeouts);
        }
    }
}
