/*
 * flight.c — single flight for the L1 cache (cache_get_or_load): however
 * many callers miss on one key at once, the backend is read once.
 *
 * How it works.  Under the shard's lock a caller that misses looks for a
 * load of the key in progress (the shard's list of flights).  If there is
 * one it joins it — takes a reference and waits on the shard's condition
 * variable, up to load_wait_ms — and copies out the result.  Otherwise it
 * becomes the leader: it takes the version stamp, links a new flight, lets
 * go of the lock, runs the loader, fills the cache with that stamp (so an
 * invalidation during the load refuses the fill), then, under the lock
 * again, publishes the result, unlinks the flight and wakes the waiters.
 * The last reference frees the flight and its value; a leader with no
 * waiters hands its value to its caller without a copy.
 *
 * An invalidation of the key detaches its flight (l1_flights_detach): the
 * callers already waiting overlapped the write and may take the old read,
 * but a caller that arrives after the invalidation starts a fresh load.
 */
#include "cache/l1_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static l1_flight *flight_find(l1_shard *sh, uint64_t h, const void *key, size_t klen) {
    for (l1_flight *f = sh->flights; f; f = f->next)
        if (f->hash == h && f->klen == klen && memcmp(f->key, key, klen) == 0) return f;
    return NULL;
}

static void flight_unlink(l1_shard *sh, l1_flight *f) {
    l1_flight **p = &sh->flights;
    while (*p != f) {
        assert(*p);
        p = &(*p)->next;
    }
    *p = f->next;
    f->next = NULL;
    f->linked = false;
}

void l1_flights_detach(l1_shard *sh, uint64_t h, const void *key, size_t klen, bool all) {
    for (l1_flight *f = sh->flights, *next; f; f = next) {
        next = f->next;
        if (all || (f->hash == h && f->klen == klen && memcmp(f->key, key, klen) == 0)) flight_unlink(sh, f);
    }
}

/* Drops one reference; the last frees. */
static void flight_release(l1_flight *f) {
    assert(f->refs > 0);
    if (--f->refs) return;
    assert(f->done && !f->linked);
    free(f->val);
    free(f);
}

static struct timespec deadline_after(int64_t ms) { return time_deadline(CLOCK_MONOTONIC, ms); }

/* Called with the lock held, returns with it released: waits for f's
 * result and copies it out. */
static int flight_wait(cache *c, l1_shard *sh, l1_flight *f, void **val, size_t *vlen) {
    f->refs++;
    sh->st.load_waits++;
    struct timespec until = deadline_after(c->o.load_wait_ms);
    while (!f->done)
        if (pthread_cond_timedwait(&sh->loaded, &sh->mu, &until) == ETIMEDOUT) break;
    int rc;
    if (!f->done) {
        rc = CAIRN_ETIMEDOUT;
        sh->st.load_timeouts++;
    } else if ((rc = f->rc) == 0) {
        rc = l1_dup(f->val, f->vlen, val, vlen);
    }
    flight_release(f);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* Runs the loader into a malloc'd value (never NULL on success). */
static int run_loader(cache_loader_fn load, void *ud, const void *key, size_t klen, unsigned char **val,
                      size_t *vlen) {
    buf_t b;
    buf_init(&b);
    int rc = load(ud, key, klen, &b);
    if (rc == 0 && b.oom) rc = CAIRN_ENOMEM;
    if (rc > 0) rc = CAIRN_EIO; /* a loader that broke the convention still fails */
    if (rc) {
        buf_free(&b);
        return rc;
    }
    *vlen = b.len;
    *val = (unsigned char *)buf_steal(&b);
    return *val ? 0 : CAIRN_ENOMEM;
}

int cache_get_or_load(cache *c, const void *key, size_t klen, cache_loader_fn load, void *ud, void **val,
                      size_t *vlen) {
    if (!c || !key || !load || !val || !vlen) return CAIRN_EINVAL;
    uint64_t h = l1_hash(c, key, klen);
    l1_shard *sh = l1_shard_of(c, h);
    pthread_mutex_lock(&sh->mu);
    l1_entry *e = l1_lookup(c, sh, h, key, klen);
    if (e) {
        int rc = l1_dup(e->kv + e->klen, e->vlen, val, vlen);
        pthread_mutex_unlock(&sh->mu);
        return rc;
    }
    l1_flight *f = flight_find(sh, h, key, klen);
    if (f) return flight_wait(c, sh, f, val, vlen);

    f = malloc(sizeof *f + klen);
    if (!f) {
        pthread_mutex_unlock(&sh->mu);
        return CAIRN_ENOMEM;
    }
    memset(f, 0, sizeof *f);
    f->hash = h;
    f->klen = klen;
    memcpy(f->key, key, klen);
    f->refs = 1;
    f->linked = true;
    f->next = sh->flights;
    sh->flights = f;
    uint64_t version = cache_version_begin(c);
    sh->st.loads++;
    pthread_mutex_unlock(&sh->mu);

    unsigned char *v = NULL;
    size_t n = 0;
    int rc = run_loader(load, ud, key, klen, &v, &n);
    /* A refused fill (stale, bypass, too big, out of memory) still returns
     * the value: it is what the backend said when this load began. */
    if (rc == 0) (void)cache_fill(c, key, klen, v, n, version, 0);

    pthread_mutex_lock(&sh->mu);
    if (rc) sh->st.load_errors++;
    if (f->linked) flight_unlink(sh, f);
    f->done = true;
    f->rc = rc;
    f->val = v;
    f->vlen = n;
    pthread_cond_broadcast(&sh->loaded);
    if (rc == 0) {
        if (f->refs == 1) { /* nobody else will read it: hand it over */
            *val = f->val;
            *vlen = f->vlen;
            f->val = NULL;
        } else {
            rc = l1_dup(v, n, val, vlen);
        }
    }
    flight_release(f);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}
