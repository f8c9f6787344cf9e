/*
 * store.c — the erasure-coded store described in data.h.
 *
 * Drive layout (each drive directory):
 *   drive-id                     16 hex chars, random, written on first open
 *   objects/<vv>/<version>.<i>   shard i of a version (vv = its first 2 hex)
 *   tmp/<random>                 shards being written
 *
 * Writer pipeline: the connection thread copies bytes into the current stripe
 * buffer; a full stripe goes to the writer's worker thread (started with the
 * first full stripe, so small objects never start one), which runs the tap
 * (hashing), encodes parity and appends the k+m blocks, while the connection
 * thread fills the other buffer.  A shard whose drive fails is dropped; the
 * write continues while write quorum (k+1, or k+m when m = 0) holds.
 */
#include "data/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "data/drive.h"
#include "data/ec.h"
#include "crypt/crypt.h"

#define DEFAULT_BLOCK (256u * 1024)
#define CRC_LEN 4
#define WRITEBACK_WINDOW (8u * 1024 * 1024)
#define HEAL_QUEUE_MAX 1024

typedef struct heal_item {
    char version_id[33];
    data_layout layout;
    int64_t size;
    struct heal_item *next;
} heal_item;

#define MAX_DRIVES 1024

struct data_store {
    /* Drives only ever get added (gateways add nodes at runtime): the table
     * has a fixed capacity and ndrives is published with release/acquire, so
     * readers need no lock and a drive pointer stays valid until close. */
    drive *drives[MAX_DRIVES];
    _Atomic int ndrives;
    _Atomic bool up[MAX_DRIVES];        /* answered its last health check */
    _Atomic bool placeable[MAX_DRIVES]; /* takes new shards (not draining) */
    _Atomic int64_t free_bytes[MAX_DRIVES], total_bytes[MAX_DRIVES]; /* at the last check */
    bool remote;
    const char *cluster_secret;
    const char *tls_ca;
    int shard_timeout_ms;
    pthread_mutex_t add_mu;
    int k, m;
    uint32_t block;
    bool fsync;
    pthread_mutex_t codec_mu;
    ec_codec *codecs[EC_MAX_SHARDS + 1][EC_MAX_SHARDS + 1];

    _Atomic uint64_t corrupt_blocks, missing_shards, degraded_reads, healed_shards,
        heal_failures, heals_dropped;

    pthread_mutex_t heal_mu;
    pthread_cond_t heal_cv;
    heal_item *heal_head, *heal_tail;
    int heal_len;
    bool heal_busy, heal_stop;
    pthread_t heal_thread;
    bool heal_started;
    bool (*still_exists)(void *, const char *);
    void *still_exists_ud;
    data_heal_sink_fn heal_sink;  /* set: heals go there (a durable queue) */
    void *heal_sink_ud;
};

/* ---- small helpers ---------------------------------------------------------------- */


static bool valid_version_id(const char *v) {
    size_t n = strlen(v);
    if (n < 8 || n > 32) return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) return false;
    return true;
}

static int drive_count(const data_store *ds) { return atomic_load_explicit(&ds->ndrives, memory_order_acquire); }

static int find_index(const data_store *ds, const char *id) {
    int n = drive_count(ds);
    for (int i = 0; i < n; i++)
        if (strcmp(drive_id(ds->drives[i]), id) == 0) return i;
    return -1;
}

static drive *find_drive(const data_store *ds, const char *id) {
    int i = find_index(ds, id);
    return i < 0 ? NULL : ds->drives[i];
}

static void shard_name(const char *version_id, int idx, char *out, size_t n) {
    snprintf(out, n, "%s.%d", version_id, idx);
}

/* Bytes of one shard file of an object of size bytes. */
static uint64_t shard_bytes(int64_t size, int k, uint32_t block) {
    uint64_t nstripes;
    uint32_t last;
    uint64_t stripe = (uint64_t)k * block;
    nstripes = size > 0 ? ((uint64_t)size + stripe - 1) / stripe : 0;
    if (nstripes == 0) return 0;
    uint64_t rem = (uint64_t)size - (nstripes - 1) * stripe;
    last = (uint32_t)((rem + (uint64_t)k - 1) / (uint64_t)k);
    return nstripes * CRC_LEN + (nstripes - 1) * block + last;
}

static ec_codec *codec_for(data_store *ds, int k, int m) {
    if (k < 1 || m < 0 || k + m > EC_MAX_SHARDS) return NULL;
    pthread_mutex_lock(&ds->codec_mu);
    ec_codec *c = ds->codecs[k][m];
    if (!c && ec_codec_new(k, m, &c) == 0) ds->codecs[k][m] = c;
    pthread_mutex_unlock(&ds->codec_mu);
    return c;
}

/* Stripe geometry of an object: how many stripes and the last one's block length. */
static void geometry(int64_t size, int k, uint32_t block, uint64_t *nstripes, uint32_t *last_len) {
    uint64_t stripe = (uint64_t)k * block;
    *nstripes = size > 0 ? ((uint64_t)size + stripe - 1) / stripe : 0;
    if (*nstripes == 0) { *last_len = 0; return; }
    uint64_t rem = (uint64_t)size - (*nstripes - 1) * stripe;
    *last_len = (uint32_t)((rem + (uint64_t)k - 1) / (uint64_t)k);
}

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t data_crc32c(uint32_t crc, const void *p, size_t n) { return ec_crc32c(crc, p, n); }

/* ---- layouts ----------------------------------------------------------------------------- */

int data_layout_format(const data_layout *l, char *out, size_t n) {
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "%d+%d:%u:", l->k, l->m, l->block);
    for (int i = 0; i < l->k + l->m; i++) {
        if (i) buf_putc(&b, ',');
        buf_puts(&b, l->drive_ids[i]);
    }
    if (l->sealed) buf_puts(&b, ":s");
    int rc = b.oom ? CAIRN_ENOMEM : b.len >= n ? CAIRN_EINVAL : 0;
    if (rc == 0) memcpy(out, b.data, b.len + 1);
    buf_free(&b);
    return rc;
}

int data_layout_parse(const char *s, data_layout *out) {
    memset(out, 0, sizeof *out);
    int k, m, used = 0;
    unsigned block;
    if (!s || sscanf(s, "%d+%d:%u:%n", &k, &m, &block, &used) != 3 || used == 0) return CAIRN_EINVAL;
    if (k < 1 || m < 0 || k + m > DATA_MAX_SHARDS || block == 0 || block > (64u << 20)) return CAIRN_EINVAL;
    out->k = k;
    out->m = m;
    out->block = block;
    const char *p = s + used;
    for (int i = 0; i < k + m; i++) {
        size_t len = strcspn(p, ",:");
        if (len != DATA_DRIVE_ID_LEN) return CAIRN_EINVAL;
        memcpy(out->drive_ids[i], p, len);
        out->drive_ids[i][len] = '\0';
        p += len;
        if (i + 1 < k + m) {
            if (*p != ',') return CAIRN_EINVAL;
            p++;
        }
    }
    if (!strcmp(p, ":s")) {
        out->sealed = true;
        p += 2;
    }
    return *p == '\0' ? 0 : CAIRN_EINVAL;
}

int64_t data_stored_size(const data_layout *l, int64_t size) {
    return l->sealed && size >= 0 ? (int64_t)crypt_sealed_size((uint64_t)size) : size;
}

/* Rendezvous hashing: every drive gets a score for this version; the k+m
 * highest win.  Adding or removing a drive changes few placements, and the
 * chosen drives are recorded, so reads never recompute this. */
static uint64_t score(const char *version_id, const char *drive_id) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then a 64-bit finalizer */
    for (const char *p = version_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *p = drive_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Ranks candidate drives for a version; fills out with the n best.  New
 * writes prefer drives that are up and placeable; with too few of those it
 * falls back to placeable ones, then to all (writes to a down drive fail and
 * count against write quorum). */
static void place_among(const data_store *ds, const char *version_id, int n, int *out, bool need_up) {
    int nd = drive_count(ds);
    uint64_t sc[MAX_DRIVES];
    bool cand[MAX_DRIVES];
    int ncand = 0;
    for (int pass = 0; pass < 3 && ncand < n; pass++) {
        ncand = 0;
        for (int i = 0; i < nd; i++) {
            bool ok = pass == 2 || (atomic_load(&ds->placeable[i]) && (pass == 1 || !need_up || atomic_load(&ds->up[i])));
            cand[i] = ok;
            ncand += ok;
        }
    }
    for (int i = 0; i < nd; i++) sc[i] = cand[i] ? score(version_id, drive_id(ds->drives[i])) : 0;
    bool used[MAX_DRIVES] = {false};
    for (int s = 0; s < n; s++) {
        int best = -1;
        for (int i = 0; i < nd; i++)
            if (cand[i] && !used[i] && (best < 0 || sc[i] > sc[best])) best = i;
        if (best < 0) best = 0; /* cannot happen: k+m <= drives checked at open */
        used[best] = true;
        out[s] = best;
    }
}

static void place(const data_store *ds, const char *version_id, int n, int *out) {
    place_among(ds, version_id, n, out, true);
}

/* ---- opening ---------------------------------------------------------------------------- */

static void *heal_main(void *arg);

int data_open(const data_options *opt, data_store **out, int *cleaned) {
    int n = opt ? opt->ndrives + opt->nnodes : 0;
    if (!opt || n < 1 || n > MAX_DRIVES || (opt->ndrives && opt->nnodes)) return CAIRN_EINVAL;
    data_store *ds = calloc(1, sizeof *ds);
    if (!ds) return CAIRN_ENOMEM;
    pthread_mutex_init(&ds->add_mu, NULL);
    ds->remote = opt->nnodes > 0;
    ds->cluster_secret = opt->cluster_secret;
    ds->tls_ca = opt->tls_ca;
    ds->shard_timeout_ms = opt->shard_timeout_ms;
    pthread_mutex_init(&ds->codec_mu, NULL);
    pthread_mutex_init(&ds->heal_mu, NULL);
    pthread_cond_init(&ds->heal_cv, NULL);
    ds->fsync = opt->fsync;
    ds->block = opt->block ? opt->block : DEFAULT_BLOCK;
    ds->k = opt->k;
    ds->m = opt->m;
    if (ds->k == 0) ec_default_layout(n, &ds->k, &ds->m);
    int rc = 0;
    if (ds->k < 1 || ds->m < 0 || ds->k + ds->m > n || ds->k + ds->m > DATA_MAX_SHARDS) rc = CAIRN_EINVAL;
    int total_cleaned = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        drive *d = NULL;
        int c = 0;
        bool answered = true;
        if (opt->nnodes)
            rc = drive_remote_open_known(opt->nodes[i], opt->cluster_secret, opt->tls_ca, opt->shard_timeout_ms,
                                         opt->node_ids ? opt->node_ids[i] : NULL, &d, &answered);
        else
            rc = drive_local_open(opt->drives[i], opt->fsync, &d, &c);
        if (rc == CAIRN_EBUSY && !opt->nnodes) {
            /* Locked by ourselves: the same directory listed twice. */
            struct stat a, b;
            for (int j = 0; j < i; j++)
                if (stat(opt->drives[i], &a) == 0 && stat(drive_path(ds->drives[j]), &b) == 0 &&
                    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
                    rc = CAIRN_EEXIST;
        }
        if (rc != 0) break;
        total_cleaned += c;
        for (int j = 0; j < i; j++)
            if (!strcmp(drive_id(ds->drives[j]), drive_id(d))) rc = CAIRN_EEXIST; /* listed twice */
        ds->drives[i] = d;
        atomic_store(&ds->up[i], answered);
        atomic_store(&ds->placeable[i], true);
        atomic_store_explicit(&ds->ndrives, i + 1, memory_order_release);
        if (!answered)
            log_write(LOG_WARN, NULL, "storage node down at start; using its registered id until it returns",
                      "url", opt->nodes[i], "node_id", drive_id(d), NULL);
    }
    if (rc == 0 && !codec_for(ds, ds->k, ds->m)) rc = CAIRN_ENOMEM;
    if (rc == 0) {
        if (pthread_create(&ds->heal_thread, NULL, heal_main, ds) != 0) rc = CAIRN_ENOMEM;
        else ds->heal_started = true;
    }
    if (rc != 0) {
        data_close(ds);
        return rc;
    }
    if (cleaned) *cleaned = total_cleaned;
    *out = ds;
    return 0;
}

void data_close(data_store *ds) {
    if (!ds) return;
    if (ds->heal_started) {
        pthread_mutex_lock(&ds->heal_mu);
        ds->heal_stop = true;
        pthread_cond_broadcast(&ds->heal_cv);
        pthread_mutex_unlock(&ds->heal_mu);
        pthread_join(ds->heal_thread, NULL);
    }
    while (ds->heal_head) {
        heal_item *h = ds->heal_head;
        ds->heal_head = h->next;
        free(h);
    }
    for (int k = 0; k <= EC_MAX_SHARDS; k++)
        for (int m = 0; m <= EC_MAX_SHARDS; m++) ec_codec_free(ds->codecs[k][m]);
    pthread_mutex_destroy(&ds->codec_mu);
    pthread_mutex_destroy(&ds->heal_mu);
    pthread_cond_destroy(&ds->heal_cv);
    for (int i = 0; i < drive_count(ds); i++) drive_close(ds->drives[i]);
    pthread_mutex_destroy(&ds->add_mu);
    free(ds);
}

void data_store_layout(const data_store *ds, int *k, int *m, uint32_t *block) {
    *k = ds->k;
    *m = ds->m;
    *block = ds->block;
}

/* ---- writer ------------------------------------------------------------------------------- */

struct data_writer {
    data_store *ds;
    ec_codec *codec;
    int k, m, n;
    uint32_t block;
    char version_id[33];
    int drive_idx[DATA_MAX_SHARDS];
    shard_out *out[DATA_MAX_SHARDS];  /* NULL once the shard failed */
    _Atomic int shard_err;            /* the first shard failure (set by the worker) */
    _Atomic int alive;
    uint64_t size;                    /* object bytes accepted */
    data_tap tap;
    void *tap_ud;

    unsigned char *stripe[2];         /* (k+m) x block each */
    int cur;
    size_t fill;

    /* Worker threads: one encodes and writes stripes, one runs the tap over
     * the same stripes (the data region is read-only to both), so hashing,
     * encoding and receiving all overlap.  Job j uses stripe[j % 2]. */
    bool threaded;
    int nthreads;
    pthread_t thread[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t submitted;               /* jobs handed out */
    size_t job_len[2];
    int in_flight[2];                 /* threads still using stripe[i] */
    bool stop;
    bool finished;
};

typedef struct {
    data_writer *w;
    bool tap;                         /* this thread runs the tap, else it writes */
} worker_arg;

static int write_quorum(int k, int m) { return m == 0 ? k : k + 1; }

static void drop_shard(data_writer *w, int i, int err) {
    drive_abort(w->out[i]);
    w->out[i] = NULL;
    w->alive--;
    if (!w->shard_err) w->shard_err = err;
}

/* Encodes one stripe holding len (> 0) object bytes and appends its blocks. */
static void encode_and_write(data_writer *w, unsigned char *s, size_t len) {
    size_t blen = (len + (size_t)w->k - 1) / (size_t)w->k;
    memset(s + len, 0, (size_t)w->k * blen - len);
    unsigned char *data[EC_MAX_SHARDS], *parity[EC_MAX_SHARDS];
    for (int i = 0; i < w->k; i++) data[i] = s + (size_t)i * blen;
    for (int j = 0; j < w->m; j++) parity[j] = s + (size_t)(w->k + j) * blen;
    ec_encode(w->codec, blen, data, parity);
    for (int i = 0; i < w->n; i++) {
        if (!w->out[i]) continue;
        unsigned char *blk = i < w->k ? data[i] : parity[i - w->k];
        unsigned char crc[CRC_LEN];
        put_le32(crc, ec_crc32c(0, blk, blen));
        struct iovec iov[2] = {{crc, CRC_LEN}, {blk, blen}};
        int rc = drive_append(w->out[i], iov, 2);
        if (rc != 0) drop_shard(w, i, rc);
        else drive_writeback(w->out[i]);
    }
}

static void encode_and_write(data_writer *w, unsigned char *s, size_t len);

static void *writer_main(void *arg) {
    pthread_setname_np(pthread_self(), "drive-writer");
    worker_arg *wa = arg;
    data_writer *w = wa->w;
    bool tap = wa->tap;
    free(wa);
    uint64_t done = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (done == w->submitted && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (done == w->submitted) break;
        int idx = (int)(done % 2);
        size_t len = w->job_len[idx];
        pthread_mutex_unlock(&w->mu);
        if (tap) w->tap(w->tap_ud, w->stripe[idx], len);
        else encode_and_write(w, w->stripe[idx], len);
        pthread_mutex_lock(&w->mu);
        done++;
        w->in_flight[idx]--;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Waits until no worker thread (running: submit started them) uses stripe[idx]. */
static void wait_free(data_writer *w, int idx) {
    pthread_mutex_lock(&w->mu);
    while (w->in_flight[idx] > 0) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static bool start_workers(data_writer *w) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int want = w->tap ? 2 : 1;
    for (int t = 0; t < want; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        wa->w = w;
        wa->tap = t == 1;
        if (pthread_create(&w->thread[t], &attr, writer_main, wa) != 0) {
            free(wa);
            break;
        }
        w->nthreads++;
    }
    pthread_attr_destroy(&attr);
    if (w->nthreads == want) return true;
    /* Partial start: stop what started and work inline. */
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int t = 0; t < w->nthreads; t++) pthread_join(w->thread[t], NULL);
    w->nthreads = 0;
    w->stop = false;
    return false;
}

/* Processes a non-empty stripe on this thread (tap, then encode and write). */
static void process_stripe(data_writer *w, unsigned char *s, size_t len) {
    if (w->tap) w->tap(w->tap_ud, s, len);
    encode_and_write(w, s, len);
}

/* Hands the current stripe to the workers (starting them on first use), or
 * processes it here when no thread can be had. */
static void submit(data_writer *w, size_t len) {
    if (!w->threaded) w->threaded = start_workers(w);
    if (!w->threaded) {
        process_stripe(w, w->stripe[w->cur], len);
        w->fill = 0;
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->job_len[w->cur] = len;
    w->in_flight[w->cur] = w->nthreads;
    w->submitted++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    w->cur ^= 1;
    w->fill = 0;
    wait_free(w, w->cur);
}

static void stop_worker(data_writer *w) {
    if (!w->threaded) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int t = 0; t < w->nthreads; t++) pthread_join(w->thread[t], NULL);
    w->threaded = false;
    w->nthreads = 0;
}

int data_writer_open(data_store *ds, const char *version_id, data_tap tap, void *tap_ud,
                     data_writer **out) {
    return data_writer_open_size(ds, version_id, -1, tap, tap_ud, out);
}

int data_writer_open_size(data_store *ds, const char *version_id, int64_t size, data_tap tap,
                          void *tap_ud, data_writer **out) {
    if (!valid_version_id(version_id)) return CAIRN_EINVAL;
    data_writer *w = calloc(1, sizeof *w);
    if (!w) return CAIRN_ENOMEM;
    w->ds = ds;
    w->k = ds->k;
    w->m = ds->m;
    w->n = ds->k + ds->m;
    w->block = ds->block;
    w->codec = codec_for(ds, w->k, w->m);
    w->tap = tap;
    w->tap_ud = tap_ud;
    snprintf(w->version_id, sizeof w->version_id, "%s", version_id);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    size_t sz = (size_t)w->n * w->block;
    w->stripe[0] = malloc(sz);
    if (!w->codec || !w->stripe[0]) {
        free(w->stripe[0]);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return CAIRN_ENOMEM;
    }
    place(ds, version_id, w->n, w->drive_idx);
    int rc = 0;
    uint64_t sbytes = size >= 0 ? shard_bytes(size, w->k, w->block) : DRIVE_SIZE_UNKNOWN;
    for (int i = 0; i < w->n; i++) {
        char name[48];
        shard_name(version_id, i, name, sizeof name);
        int e = drive_create(ds->drives[w->drive_idx[i]], name, sbytes, &w->out[i]);
        if (e != 0) {
            w->out[i] = NULL;
            if (!rc) rc = e;
            if (!w->shard_err) w->shard_err = e;
        } else {
            w->alive++;
        }
    }
    if (w->alive < write_quorum(w->k, w->m)) {
        data_writer_abort(w);
        return rc ? rc : CAIRN_EIO;
    }
    *out = w;
    return 0;
}

int data_writer_write(data_writer *w, const void *p, size_t n) {
    const unsigned char *c = p;
    size_t stripe_data = (size_t)w->k * w->block;
    while (n) {
        if (!w->stripe[w->cur]) {
            w->stripe[w->cur] = malloc((size_t)w->n * w->block);
            if (!w->stripe[w->cur]) return CAIRN_ENOMEM;
        }
        size_t take = stripe_data - w->fill;
        if (take > n) take = n;
        memcpy(w->stripe[w->cur] + w->fill, c, take);
        w->fill += take;
        w->size += take;
        c += take;
        n -= take;
        if (w->fill == stripe_data) submit(w, w->fill);
    }
    /* A failure seen by the worker surfaces on a later write or at finish. */
    if (w->alive < write_quorum(w->k, w->m)) return w->shard_err ? w->shard_err : CAIRN_EIO;
    return 0;
}

uint64_t data_writer_size(const data_writer *w) { return w->size; }

int data_writer_finish(data_writer *w) {
    if (!w->finished) {
        stop_worker(w);
        if (w->fill) process_stripe(w, w->stripe[w->cur], w->fill);
        w->fill = 0;
        w->finished = true;
    }
    if (w->alive < write_quorum(w->k, w->m)) return w->shard_err ? w->shard_err : CAIRN_EIO;
    return 0;
}

static void writer_free(data_writer *w) {
    stop_worker(w);
    for (int i = 0; i < w->n; i++)
        if (w->out[i]) drive_abort(w->out[i]);
    free(w->stripe[0]);
    free(w->stripe[1]);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

void data_writer_abort(data_writer *w) {
    if (w) writer_free(w);
}

int data_writer_commit(data_writer *w, data_layout *out) {
    int rc = data_writer_finish(w);
    data_store *ds = w->ds;
    bool committed[DATA_MAX_SHARDS] = {false};
    int ncommitted = 0;
    for (int i = 0; rc == 0 && i < w->n; i++) {
        if (!w->out[i]) continue;
        shard_out *o = w->out[i];
        w->out[i] = NULL; /* commit frees it either way */
        int e = drive_commit(o);
        if (e == 0) {
            committed[i] = true;
            ncommitted++;
        } else {
            w->alive--;
            if (!w->shard_err) w->shard_err = e;
        }
    }
    if (rc == 0 && ncommitted < write_quorum(w->k, w->m)) rc = w->shard_err ? w->shard_err : CAIRN_EIO;
    if (rc != 0) {
        /* Not enough durable shards: take back the ones that were. */
        for (int i = 0; i < w->n; i++) {
            if (!committed[i]) continue;
            char name[48];
            shard_name(w->version_id, i, name, sizeof name);
            drive_remove(ds->drives[w->drive_idx[i]], name);
        }
    } else if (out) {
        memset(out, 0, sizeof *out);
        out->k = w->k;
        out->m = w->m;
        out->block = w->block;
        for (int i = 0; i < w->n; i++)
            memcpy(out->drive_ids[i], drive_id(ds->drives[w->drive_idx[i]]), DATA_DRIVE_ID_LEN + 1);
    }
    writer_free(w);
    return rc;
}

/* ---- reader ------------------------------------------------------------------------------ */

struct data_reader {
    data_store *ds;
    ec_codec *codec;
    data_layout layout;
    char version_id[33];
    int64_t size;                     /* bytes stored (sealed: crypt_sealed_size of meta_size) */
    int64_t meta_size;                /* the size the caller gave (metadata's) */
    int k, m, n;
    uint64_t nstripes;
    uint32_t last_len;
    shard_in *in[DATA_MAX_SHARDS];
    /* Shards that cannot be read at all (absent, unreachable, I/O error).  A
     * corrupt block condemns only itself: the shard's other blocks are still
     * tried, so damage spread over shards in different stripes stays
     * readable as long as no stripe has more than m bad blocks. */
    bool bad[DATA_MAX_SHARDS];
    bool no_heal;                     /* a healer's own reader queues nothing */
    int64_t failed_stripe;            /* blocks of this stripe already found bad: */
    uint32_t failed_mask;             /* not read (or counted) twice */
    unsigned char *buf;               /* (k+m) x block */
    int64_t cached;                   /* stripe whose data blocks are in buf, -1 none */
    uint32_t cached_len;
    bool degraded;
};

/* A reader over whatever shards of the version can be opened (the others
 * marked bad): *opened, *missing (absent) and *failed (drive unknown or an
 * I/O error) say how many.  CAIRN_EINVAL / CAIRN_ENOMEM only. */
static int reader_new(data_store *ds, const char *version_id, const data_layout *l, int64_t size, data_reader **out,
                      int *opened, int *missing, int *failed, int why[DATA_MAX_SHARDS]) {
    if (!valid_version_id(version_id) || size < 0 || l->k < 1 || l->m < 0 || l->k + l->m > DATA_MAX_SHARDS) return CAIRN_EINVAL;
    data_reader *r = calloc(1, sizeof *r);
    if (!r) return CAIRN_ENOMEM;
    r->ds = ds;
    r->layout = *l;
    r->k = l->k;
    r->m = l->m;
    r->n = l->k + l->m;
    r->meta_size = size;
    size = data_stored_size(l, size);
    r->size = size;
    r->cached = -1;
    r->failed_stripe = -1;
    snprintf(r->version_id, sizeof r->version_id, "%s", version_id);
    geometry(size, r->k, l->block, &r->nstripes, &r->last_len);
    r->codec = codec_for(ds, r->k, r->m);
    r->buf = malloc((size_t)r->n * l->block);
    if (!r->codec || !r->buf) {
        free(r->buf);
        free(r);
        return CAIRN_ENOMEM;
    }
    *opened = *missing = *failed = 0;
    for (int i = 0; i < r->n; i++) {
        r->in[i] = NULL;
        drive *d = find_drive(ds, l->drive_ids[i]);
        int e = CAIRN_EIO;
        if (d) {
            char name[48];
            shard_name(version_id, i, name, sizeof name);
            e = drive_open(d, name, &r->in[i]);
        }
        if (why) why[i] = e;
        if (e != 0) {
            r->in[i] = NULL;
            r->bad[i] = true;
            if (e == CAIRN_ENOTFOUND) (*missing)++;
            else (*failed)++;
        } else {
            (*opened)++;
        }
    }
    *out = r;
    return 0;
}

int data_reader_open(data_store *ds, const char *version_id, const data_layout *l, int64_t size,
                     data_reader **out) {
    data_reader *r;
    int opened, missing, failed;
    int rc = reader_new(ds, version_id, l, size, &r, &opened, &missing, &failed, NULL);
    if (rc != 0) return rc;
    if (opened == 0) {
        data_reader_close(r);
        /* Unreachable drives are not proof the object is gone. */
        return failed ? CAIRN_EIO : CAIRN_ENOTFOUND;
    }
    if (missing + failed) {
        atomic_fetch_add(&ds->missing_shards, (uint64_t)(missing + failed));
        r->degraded = true;
    }
    if (opened < r->k) {
        data_reader_close(r);
        return CAIRN_EIO;
    }
    *out = r;
    return 0;
}

/* Reads and verifies block `stripe` of shard i into dst; false if bad.  An
 * I/O error writes the whole shard off; a bad checksum or a short shard only
 * this block. */
static bool read_block(data_reader *r, int i, uint64_t stripe, uint32_t blen, unsigned char *dst) {
    if (r->bad[i]) return false;
    if (r->failed_stripe == (int64_t)stripe && (r->failed_mask & (1u << i))) return false;
    unsigned char crc[CRC_LEN];
    uint64_t off = stripe * (CRC_LEN + (uint64_t)r->layout.block);
    struct iovec iov[2] = {{crc, CRC_LEN}, {dst, blen}};
    size_t want = CRC_LEN + blen;
    ssize_t got = drive_preadv(r->in[i], iov, 2, off);
    if (got == (ssize_t)want && get_le32(crc) == ec_crc32c(0, dst, blen)) return true;
    if (got < 0) r->bad[i] = true;
    if (r->failed_stripe != (int64_t)stripe) {
        r->failed_stripe = (int64_t)stripe;
        r->failed_mask = 0;
    }
    r->failed_mask |= 1u << i;
    atomic_fetch_add(&r->ds->corrupt_blocks, 1);
    r->degraded = true;
    return false;
}

/* Makes the data blocks of one stripe available in r->buf (contiguous). */
static int load_stripe(data_reader *r, uint64_t s) {
    if (r->cached == (int64_t)s) return 0;
    uint32_t blen = s + 1 == r->nstripes ? r->last_len : r->layout.block;
    unsigned char *shards[EC_MAX_SHARDS];
    bool present[EC_MAX_SHARDS] = {false};
    int have = 0;
    for (int i = 0; i < r->n; i++) shards[i] = r->buf + (size_t)i * blen;
    /* Data shards first; parity only for what is missing. */
    for (int i = 0; i < r->k; i++)
        if (read_block(r, i, s, blen, shards[i])) { present[i] = true; have++; }
    for (int i = r->k; i < r->n && have < r->k; i++)
        if (read_block(r, i, s, blen, shards[i])) { present[i] = true; have++; }
    if (have < r->k) {
        r->cached = -1;
        return CAIRN_EIO;
    }
    if (have < r->n) {
        bool lost_data = false;
        for (int i = 0; i < r->k; i++) lost_data |= !present[i];
        if (lost_data) {
            /* Only the data blocks are needed; mark parity we did not read as
             * present-but-unneeded by rebuilding data from what we have. */
            bool pres[EC_MAX_SHARDS];
            memcpy(pres, present, sizeof pres);
            int rc = ec_reconstruct(r->codec, blen, shards, pres);
            if (rc != 0) return rc;
        }
    }
    r->cached = (int64_t)s;
    r->cached_len = blen;
    return 0;
}

ssize_t data_reader_peek(data_reader *r, uint64_t offset, const void **p, size_t n) {
    *p = NULL;
    if (offset >= (uint64_t)r->size || n == 0) return 0;
    uint64_t stripe_data = (uint64_t)r->k * r->layout.block;
    uint64_t s = offset / stripe_data;
    int rc = load_stripe(r, s);
    if (rc != 0) return rc;
    uint64_t stripe_start = s * stripe_data;
    uint64_t stripe_bytes = (uint64_t)r->size - stripe_start;
    if (stripe_bytes > stripe_data) stripe_bytes = stripe_data;
    uint64_t within = offset - stripe_start;
    size_t take = (size_t)(stripe_bytes - within);
    *p = r->buf + within;
    return (ssize_t)(take < n ? take : n);
}

ssize_t data_reader_read(data_reader *r, uint64_t offset, void *buf, size_t n) {
    if (offset >= (uint64_t)r->size || n == 0) return 0;
    uint64_t stripe_data = (uint64_t)r->k * r->layout.block;
    uint64_t s = offset / stripe_data;
    /* Fast path: a whole stripe wanted and room for it: read the data blocks
     * straight into the caller's buffer (verified), skipping a copy.  Any bad
     * block falls back to the reconstructing path below. */
    uint32_t blen = s + 1 == r->nstripes ? r->last_len : r->layout.block;
    if (offset == s * stripe_data && n >= (size_t)r->k * blen && r->cached != (int64_t)s) {
        bool ok = true;
        for (int i = 0; i < r->k && ok; i++)
            ok = read_block(r, i, s, blen, (unsigned char *)buf + (size_t)i * blen);
        if (ok) {
            uint64_t bytes = (uint64_t)r->size - offset;
            return (ssize_t)(bytes < stripe_data ? bytes : stripe_data);
        }
    }
    int rc = load_stripe(r, s);
    if (rc != 0) return rc;
    uint64_t stripe_start = s * stripe_data;
    uint64_t stripe_bytes = (uint64_t)r->size - stripe_start;
    if (stripe_bytes > stripe_data) stripe_bytes = stripe_data;
    uint64_t within = offset - stripe_start;
    size_t take = (size_t)(stripe_bytes - within);
    if (take > n) take = n;
    memcpy(buf, r->buf + within, take);
    return (ssize_t)take;
}

static void heal_enqueue(data_store *ds, const char *version_id, const data_layout *l, int64_t size);

void data_reader_close(data_reader *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) drive_close_shard(r->in[i]);
    if (r->degraded && !r->no_heal) {
        atomic_fetch_add(&r->ds->degraded_reads, 1);
        heal_enqueue(r->ds, r->version_id, &r->layout, r->meta_size);
    }
    free(r->buf);
    free(r);
}

int data_delete(data_store *ds, const char *version_id, const data_layout *l) {
    if (!valid_version_id(version_id)) return CAIRN_EINVAL;
    int rc = 0;
    for (int i = 0; i < l->k + l->m; i++) {
        drive *d = find_drive(ds, l->drive_ids[i]);
        if (!d) continue;
        char name[48];
        shard_name(version_id, i, name, sizeof name);
        if (drive_remove(d, name) != 0) rc = CAIRN_EIO;
    }
    return rc;
}

/* ---- healing -------------------------------------------------------------------------------- */

/* Writes shard i of r's version anew onto targets[i] (NULL: leave it) for
 * every stripe, from whichever blocks verify (at least k per stripe), and
 * commits them.  Shared by healing (same drive) and relocation (new drive).
 * *written gets how many shards were committed. */
static int rebuild_shards(data_store *ds, data_reader *r, drive *const *targets, int *written) {
    *written = 0;
    int rc = 0;
    shard_out *outs[EC_MAX_SHARDS] = {NULL};
    uint64_t sbytes = shard_bytes(r->size, r->k, r->layout.block);
    for (int i = 0; rc == 0 && i < r->n; i++) {
        if (!targets[i]) continue;
        char name[48];
        shard_name(r->version_id, i, name, sizeof name);
        rc = drive_create(targets[i], name, sbytes, &outs[i]);
    }
    for (uint64_t s = 0; rc == 0 && s < r->nstripes; s++) {
        uint32_t blen = s + 1 == r->nstripes ? r->last_len : r->layout.block;
        /* Per stripe: every block that verifies counts, also those of shards
         * being rewritten, so damage spread over shards in different stripes
         * heals as long as each stripe keeps k good blocks. */
        unsigned char *shards[EC_MAX_SHARDS];
        bool present[EC_MAX_SHARDS];
        int have = 0;
        for (int i = 0; i < r->n; i++) {
            shards[i] = r->buf + (size_t)i * blen;
            present[i] = read_block(r, i, s, blen, shards[i]);
            have += present[i];
        }
        if (have < r->k || ec_reconstruct(r->codec, blen, shards, present) != 0) { rc = CAIRN_EIO; break; }
        for (int i = 0; i < r->n && rc == 0; i++) {
            if (!outs[i]) continue;
            unsigned char crc[CRC_LEN];
            put_le32(crc, ec_crc32c(0, shards[i], blen));
            struct iovec iov[2] = {{crc, CRC_LEN}, {shards[i], blen}};
            rc = drive_append(outs[i], iov, 2);
        }
    }
    for (int i = 0; i < r->n; i++) {
        if (!outs[i]) continue;
        if (rc != 0) drive_abort(outs[i]);
        else if (drive_commit(outs[i]) == 0) (*written)++;
        else rc = CAIRN_EIO;
    }
    (void)ds;
    return rc;
}

int data_check(data_store *ds, const char *version_id, const data_layout *l, int64_t size, data_check_result *out) {
    memset(out, 0, sizeof *out);
    data_reader *r;
    int opened, missing, failed, why[DATA_MAX_SHARDS];
    int rc = reader_new(ds, version_id, l, size, &r, &opened, &missing, &failed, why);
    if (rc != 0) return rc;
    r->no_heal = true;
    out->n = r->n;
    uint64_t expect = shard_bytes(r->size, r->k, l->block);
    for (int i = 0; i < r->n; i++) {
        out->missing[i] = why[i] == CAIRN_ENOTFOUND;
        out->unreachable[i] = why[i] != 0 && why[i] != CAIRN_ENOTFOUND;
        /* A shard of another length than the geometry gives is damage too
         * (a short one fails its last block anyway; a long one would not). */
        if (r->in[i] && (uint64_t)drive_shard_size(r->in[i]) != expect) out->corrupt[i] = true;
    }
    unsigned char *scratch = malloc(l->block);
    if (!scratch) {
        data_reader_close(r);
        return CAIRN_ENOMEM;
    }
    for (uint64_t s = 0; s < r->nstripes; s++) {
        uint32_t blen = s + 1 == r->nstripes ? r->last_len : l->block;
        int good = 0;
        for (int i = 0; i < r->n; i++) {
            bool written_off = r->bad[i];
            if (read_block(r, i, s, blen, scratch)) good++;
            else if (r->in[i] && !written_off) {
                /* read_block writes a shard off on an I/O error; a bad
                 * checksum or a short read condemns only the block. */
                if (r->bad[i]) out->unreachable[i] = true;
                else out->corrupt[i] = true;
            }
        }
        if (good < r->k) out->lost = true;
    }
    if (r->nstripes == 0 && opened < r->k) out->lost = true;
    free(scratch);
    data_reader_close(r);
    return 0;
}

int data_heal(data_store *ds, const char *version_id, const data_layout *l, int64_t size, int *repaired) {
    *repaired = 0;
    data_reader *r;
    int rc = data_reader_open(ds, version_id, l, size, &r);
    if (rc != 0) return rc;
    r->no_heal = true;
    /* Pass 1: verify every block of every shard; a shard with any bad block,
     * or of another length than the geometry gives, is rewritten whole. */
    bool bad[EC_MAX_SHARDS];
    uint64_t expect = shard_bytes(r->size, r->k, l->block);
    for (int i = 0; i < r->n; i++) bad[i] = r->bad[i] || (uint64_t)drive_shard_size(r->in[i]) != expect;
    unsigned char *scratch = malloc(l->block);
    if (!scratch) { data_reader_close(r); return CAIRN_ENOMEM; }
    for (uint64_t s = 0; s < r->nstripes; s++) {
        uint32_t blen = s + 1 == r->nstripes ? r->last_len : l->block;
        for (int i = 0; i < r->n; i++)
            if (!bad[i] && !read_block(r, i, s, blen, scratch)) bad[i] = true;
    }
    free(scratch);
    drive *targets[EC_MAX_SHARDS] = {NULL};
    int nbad = 0;
    for (int i = 0; i < r->n; i++) {
        if (!bad[i]) continue;
        nbad++;
        targets[i] = find_drive(ds, l->drive_ids[i]);
        if (!targets[i]) rc = CAIRN_EIO; /* its drive is gone: relocation's job */
    }
    if (nbad == 0 || rc != 0) {
        data_reader_close(r);
        return rc;
    }
    /* Pass 2: rebuild the bad shards on their own drives. */
    rc = rebuild_shards(ds, r, targets, repaired);
    data_reader_close(r);
    if (*repaired) atomic_fetch_add(&ds->healed_shards, (uint64_t)*repaired);
    return rc;
}

/* ---- membership: nodes, placement changes, relocation ------------------------------------ */

int data_probe_node(const char *url, const char *secret, const char *tls_ca, int timeout_ms,
                    char id_out[DATA_DRIVE_ID_LEN + 1]) {
    drive *d;
    int rc = drive_remote_open(url, secret, tls_ca, timeout_ms, &d);
    if (rc != 0) return rc;
    snprintf(id_out, DATA_DRIVE_ID_LEN + 1, "%s", drive_id(d));
    drive_close(d);
    return 0;
}

int data_add_node(data_store *ds, const char *url, char id_out[DATA_DRIVE_ID_LEN + 1]) {
    if (!ds->remote) return CAIRN_EINVAL;
    drive *d;
    int rc = drive_remote_open(url, ds->cluster_secret, ds->tls_ca, ds->shard_timeout_ms, &d);
    if (rc != 0) return rc;
    pthread_mutex_lock(&ds->add_mu);
    int n = drive_count(ds), existing = find_index(ds, drive_id(d));
    if (existing >= 0 || n == MAX_DRIVES) {
        pthread_mutex_unlock(&ds->add_mu);
        if (id_out) snprintf(id_out, DATA_DRIVE_ID_LEN + 1, "%s", drive_id(d));
        drive_close(d);
        return existing >= 0 ? CAIRN_EEXIST : CAIRN_ENOSPC;
    }
    ds->drives[n] = d;
    atomic_store(&ds->up[n], true);
    atomic_store(&ds->placeable[n], true);
    atomic_store_explicit(&ds->ndrives, n + 1, memory_order_release);
    pthread_mutex_unlock(&ds->add_mu);
    if (id_out) snprintf(id_out, DATA_DRIVE_ID_LEN + 1, "%s", drive_id(d));
    return 0;
}

int data_set_placeable(data_store *ds, const char *id, bool placeable) {
    int i = find_index(ds, id);
    if (i < 0) return CAIRN_ENOTFOUND;
    atomic_store(&ds->placeable[i], placeable);
    return 0;
}

int data_check_drives(data_store *ds, void (*cb)(void *ud, const char *id, const char *where, bool up), void *ud) {
    int n = drive_count(ds), up = 0;
    for (int i = 0; i < n; i++) {
        bool ok = drive_check_writable(ds->drives[i]) == 0;
        int64_t f = -1, t = -1;
        if (ok && drive_free_bytes(ds->drives[i], &f, &t) == 0) {
            atomic_store(&ds->free_bytes[i], f);
            atomic_store(&ds->total_bytes[i], t);
        }
        atomic_store(&ds->up[i], ok);
        up += ok;
        if (cb) cb(ud, drive_id(ds->drives[i]), drive_path(ds->drives[i]), ok);
    }
    return up;
}

/* One gauge line per drive or node; ids are hex today, escaped all the same. */
static void node_gauge(buf_t *out, const char *name, const char *id, long long v) {
    buf_printf(out, "%s{node=\"", name);
    buf_prom_label(out, id);
    buf_printf(out, "\"} %lld\n", v);
}

void data_render_metrics(data_store *ds, buf_t *out) {
    int n = drive_count(ds);
    buf_puts(out, "# HELP cairn_node_up Whether a drive or storage node answered its last health check.\n"
                  "# TYPE cairn_node_up gauge\n");
    for (int i = 0; i < n; i++)
        node_gauge(out, "cairn_node_up", drive_id(ds->drives[i]), atomic_load(&ds->up[i]) ? 1 : 0);
    buf_puts(out, "# HELP cairn_node_free_bytes Free bytes of a drive or node at its last health check.\n"
                  "# TYPE cairn_node_free_bytes gauge\n");
    for (int i = 0; i < n; i++)
        node_gauge(out, "cairn_node_free_bytes", drive_id(ds->drives[i]), (long long)atomic_load(&ds->free_bytes[i]));
    buf_puts(out, "# HELP cairn_node_total_bytes Capacity of a drive or node at its last health check.\n"
                  "# TYPE cairn_node_total_bytes gauge\n");
    for (int i = 0; i < n; i++)
        node_gauge(out, "cairn_node_total_bytes", drive_id(ds->drives[i]), (long long)atomic_load(&ds->total_bytes[i]));
}

bool data_desired_layout(data_store *ds, const char *version_id, const data_layout *cur, data_layout *want) {
    *want = *cur;
    int n = cur->k + cur->m;
    int best[DATA_MAX_SHARDS];
    /* The set comes from rendezvous hashing over placeable drives, up or not:
     * a node that is merely down keeps its shards (healing and reads cope);
     * draining and removal move them. */
    place_among(ds, version_id, n, best, false);
    bool in_want[MAX_DRIVES] = {false}, taken[MAX_DRIVES] = {false};
    for (int s = 0; s < n; s++) in_want[best[s]] = true;
    /* Shards already on a wanted drive stay put: only the others move. */
    bool keep[DATA_MAX_SHARDS] = {false};
    for (int i = 0; i < n; i++) {
        int di = find_index(ds, cur->drive_ids[i]);
        if (di >= 0 && in_want[di] && !taken[di]) {
            keep[i] = true;
            taken[di] = true;
        }
    }
    bool changed = false;
    int next = 0;
    for (int i = 0; i < n; i++) {
        if (keep[i]) continue;
        while (next < n && taken[best[next]]) next++;
        if (next == n) break;
        taken[best[next]] = true;
        memcpy(want->drive_ids[i], drive_id(ds->drives[best[next]]), DATA_DRIVE_ID_LEN + 1);
        changed = true;
    }
    return changed;
}

int data_relocate(data_store *ds, const char *version_id, int64_t size, const data_layout *cur,
                  const data_layout *want, int *moved) {
    *moved = 0;
    data_reader *r;
    int rc = data_reader_open(ds, version_id, cur, size, &r);
    if (rc != 0) return rc;
    r->no_heal = true;
    drive *targets[EC_MAX_SHARDS] = {NULL};
    for (int i = 0; i < r->n; i++) {
        if (!strcmp(cur->drive_ids[i], want->drive_ids[i])) continue;
        targets[i] = find_drive(ds, want->drive_ids[i]);
        if (!targets[i]) rc = CAIRN_EINVAL;
    }
    if (rc == 0) rc = rebuild_shards(ds, r, targets, moved);
    data_reader_close(r);
    return rc;
}

int data_delete_moved(data_store *ds, const char *version_id, const data_layout *from, const data_layout *to) {
    int rc = 0;
    for (int i = 0; i < from->k + from->m; i++) {
        if (!strcmp(from->drive_ids[i], to->drive_ids[i])) continue;
        drive *d = find_drive(ds, from->drive_ids[i]);
        if (!d) continue;
        char name[48];
        shard_name(version_id, i, name, sizeof name);
        if (drive_remove(d, name) != 0) rc = CAIRN_EIO;
    }
    return rc;
}

/* Called by every reader that found damage, on its request's thread: it only
 * queues (no I/O, one short critical section), so degraded reads during a node
 * outage never wait on each other or on the database.  The heal thread hands
 * each item to the sink (the durable job queue) or heals it itself. */
static void heal_enqueue(data_store *ds, const char *version_id, const data_layout *l, int64_t size) {
    pthread_mutex_lock(&ds->heal_mu);
    bool dup = false;
    for (heal_item *h = ds->heal_head; h && !dup; h = h->next) dup = !strcmp(h->version_id, version_id);
    if (!dup && ds->heal_len >= HEAL_QUEUE_MAX) {
        atomic_fetch_add(&ds->heals_dropped, 1);
    } else if (!dup) {
        heal_item *h = calloc(1, sizeof *h);
        if (h) {
            snprintf(h->version_id, sizeof h->version_id, "%s", version_id);
            h->layout = *l;
            h->size = size;
            if (ds->heal_tail) ds->heal_tail->next = h;
            else ds->heal_head = h;
            ds->heal_tail = h;
            ds->heal_len++;
            pthread_cond_signal(&ds->heal_cv);
        } else {
            atomic_fetch_add(&ds->heals_dropped, 1);
        }
    }
    pthread_mutex_unlock(&ds->heal_mu);
}

int data_heal_logged(data_store *ds, const char *version_id, const data_layout *l, int64_t size) {
    int repaired = 0;
    int rc = data_heal(ds, version_id, l, size, &repaired);
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        atomic_fetch_add(&ds->heal_failures, 1);
        log_write(LOG_WARN, NULL, "heal failed", "version_id", version_id, "error", cairn_strerror(rc), NULL);
        status_emit("heal:Failed", "version_id", version_id, "error", cairn_strerror(rc), NULL);
    } else if (repaired) {
        char n[24];
        log_write(LOG_INFO, NULL, "healed shards", "version_id", version_id, "shards", log_int(n, repaired), NULL);
        status_emit("heal:Done", "version_id", version_id, "shards", n, NULL);
    }
    return rc == CAIRN_ENOTFOUND ? 0 : rc;
}

void data_set_heal_sink(data_store *ds, data_heal_sink_fn sink, void *ud) {
    pthread_mutex_lock(&ds->heal_mu);
    /* The heal thread calls the sink outside the lock: wait out a call in
     * flight, so the caller may free what ud points to once this returns. */
    while (ds->heal_busy && !ds->heal_stop) pthread_cond_wait(&ds->heal_cv, &ds->heal_mu);
    ds->heal_sink = sink;
    ds->heal_sink_ud = ud;
    pthread_mutex_unlock(&ds->heal_mu);
}

static void *heal_main(void *arg) {
    pthread_setname_np(pthread_self(), "healer");
    data_store *ds = arg;
    pthread_mutex_lock(&ds->heal_mu);
    for (;;) {
        while (!ds->heal_head && !ds->heal_stop) pthread_cond_wait(&ds->heal_cv, &ds->heal_mu);
        if (ds->heal_stop) break;
        heal_item *h = ds->heal_head;
        ds->heal_head = h->next;
        if (!ds->heal_head) ds->heal_tail = NULL;
        ds->heal_len--;
        ds->heal_busy = true;
        bool (*check)(void *, const char *) = ds->still_exists;
        void *ud = ds->still_exists_ud;
        data_heal_sink_fn sink = ds->heal_sink;
        void *sink_ud = ds->heal_sink_ud;
        pthread_mutex_unlock(&ds->heal_mu);
        fault_point("heal.before_sink"); /* tests/fault/test_races.py */
        /* A sink (the durable job queue) takes the heal and retries it while
         * a node is down; without one, or when it fails, heal here. */
        if (!sink || sink(sink_ud, h->version_id, &h->layout, h->size) != 0)
            if (!check || check(ud, h->version_id)) data_heal_logged(ds, h->version_id, &h->layout, h->size);
        free(h);
        pthread_mutex_lock(&ds->heal_mu);
        ds->heal_busy = false;
        pthread_cond_broadcast(&ds->heal_cv);
    }
    pthread_mutex_unlock(&ds->heal_mu);
    return NULL;
}

void data_set_heal_check(data_store *ds, bool (*still_exists)(void *, const char *), void *ud) {
    pthread_mutex_lock(&ds->heal_mu);
    ds->still_exists = still_exists;
    ds->still_exists_ud = ud;
    pthread_mutex_unlock(&ds->heal_mu);
}

void data_heal_drain(data_store *ds) {
    pthread_mutex_lock(&ds->heal_mu);
    while ((ds->heal_head || ds->heal_busy) && !ds->heal_stop) pthread_cond_wait(&ds->heal_cv, &ds->heal_mu);
    pthread_mutex_unlock(&ds->heal_mu);
}

void data_get_stats(data_store *ds, data_stats *o) {
    o->corrupt_blocks = atomic_load(&ds->corrupt_blocks);
    o->missing_shards = atomic_load(&ds->missing_shards);
    o->degraded_reads = atomic_load(&ds->degraded_reads);
    o->healed_shards = atomic_load(&ds->healed_shards);
    o->heal_failures = atomic_load(&ds->heal_failures);
    o->heals_dropped = atomic_load(&ds->heals_dropped);
}

/* ---- health ----------------------------------------------------------------------------------- */

int data_check_writable(data_store *ds) {
    /* A store is writable while write quorum can be met on live drives. */
    int ok = 0, nd = drive_count(ds);
    for (int i = 0; i < nd; i++) ok += drive_check_writable(ds->drives[i]) == 0;
    return ok >= write_quorum(ds->k, ds->m) && (ok == nd || ds->remote) ? 0 : CAIRN_EIO;
}

int data_free_bytes(data_store *ds, int64_t *free_bytes) {
    int64_t min = -1;
    int nd = drive_count(ds);
    for (int i = 0; i < nd; i++) {
        int64_t f = 0, t = 0;
        if (drive_free_bytes(ds->drives[i], &f, &t) != 0) {
            if (ds->remote) continue; /* a down node is the heartbeat's business */
            return CAIRN_EIO;
        }
        atomic_store(&ds->free_bytes[i], f);
        atomic_store(&ds->total_bytes[i], t);
        if (min < 0 || f < min) min = f;
    }
    if (min < 0) return CAIRN_EIO;
    *free_bytes = min;
    return 0;
}

int data_tmp_count(data_store *ds) {
    int n = 0;
    for (int i = 0; i < drive_count(ds); i++) n += drive_tmp_count(ds->drives[i]);
    return n;
}

/* ---- garbage collection --------------------------------------------------------------- */

typedef struct {
    const char *drive_id;
    int (*cb)(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms);
    void *ud;
} walk_adapter;

static int walk_entry(void *ud, const drive_entry *e) {
    walk_adapter *w = ud;
    char vid[33];
    memcpy(vid, e->name, 32);
    vid[32] = '\0';
    return w->cb(w->ud, w->drive_id, vid, atoi(e->name + 33), e->age_ms);
}

int data_walk_shards(data_store *ds,
                     int (*cb)(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms),
                     void *ud, int *unreachable) {
    int bad = 0, rc = 0;
    for (int i = 0; i < drive_count(ds) && rc == 0; i++) {
        walk_adapter w = {drive_id(ds->drives[i]), cb, ud};
        int e = drive_walk(ds->drives[i], walk_entry, &w);
        if (e == CAIRN_EIO) bad++;
        else rc = e;
    }
    if (unreachable) *unreachable = bad;
    return rc;
}

int data_remove_shard(data_store *ds, const char *drive_id, const char *version_id, int index) {
    drive *d = find_drive(ds, drive_id);
    if (!d) return CAIRN_ENOTFOUND;
    char name[48];
    shard_name(version_id, index, name, sizeof name);
    return drive_remove(d, name);
}
