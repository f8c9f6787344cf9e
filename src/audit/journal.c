/*
 * journal.c — the audit journal (journal.h): segments of checksummed
 * records, one writer thread doing group commit, recovery at open, the
 * shipper's reader and its committed cursor, the overflow spool.
 *
 * How a record gets to disk.  An appender encodes its record into the
 * shared queue (a buf_t) with a zero sequence and CRC and takes a ticket
 * (its place in the queue).  The writer thread wakes when a durable
 * appender waits, when the queue is half full, or sync_ms after the oldest
 * queued record; it swaps the queue for an empty one, then, without the
 * lock, numbers the records, computes their CRCs, writes the whole batch
 * with pwrite at the segment's end and fdatasyncs once.  Back under the
 * lock it records how it went for every waiter whose ticket the batch
 * covered, then lets go of the lock and wakes those waiters, only them.
 * The open segment is zeroed ahead of its end (64 KiB, then doubling up to
 * PREALLOC bytes at a time, in the batch that crosses it), so most batches overwrite blocks the file
 * already has and their fdatasync does not change the file's size: no
 * journal commit of the filesystem's own (an fdatasync that keeps the size
 * measured about a third cheaper here).  A segment is cut back to its
 * records when the writer leaves it and at close; one a crash left with
 * its zeros is cut at the next open (scan_file knows zeros from damage: no
 * record begins with a zero byte).
 * A failed write or sync truncates the segment back to its durable end and
 * the next batch starts a new segment (after a failed fsync the kernel's
 * idea of the file is not to be trusted); the batch's sequences are reused,
 * so sequences stay gap-free on disk.
 *
 * Only the writer thread touches the open segment's descriptor and size;
 * the segment list, the counters and the cursor are under mu.
 */
#include "audit/journal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>

/* ---- records ----------------------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* CRC-32C (Castagnoli) as usually defined, through ISA-L's raw register. */
static uint32_t crc32c(uint32_t crc, const void *p, size_t n) {
    uint32_t reg = ~crc;
    reg = crc32_iscsi((unsigned char *)(uintptr_t)p, (int)n, reg);
    return ~reg;
}

static uint32_t record_crc(const unsigned char *hdr, const void *payload, size_t len) {
    return crc32c(crc32c(0, hdr, 24), payload, len);
}

/* The header with seq and CRC filled in place (hdr points at a whole record). */
static void record_seal(unsigned char *hdr, uint64_t seq) {
    put64(hdr + 8, seq);
    size_t len = get32(hdr + 4);
    put32(hdr + 24, record_crc(hdr, hdr + AUDIT_RECORD_HEADER, len));
}

int audit_record_encode(buf_t *out, uint64_t seq, int64_t time_ms, const void *payload, size_t len) {
    if (len > AUDIT_RECORD_MAX_PAYLOAD) return CAIRN_EINVAL;
    unsigned char h[AUDIT_RECORD_HEADER];
    put32(h, AUDIT_RECORD_MAGIC);
    put32(h + 4, (uint32_t)len);
    put64(h + 8, seq);
    put64(h + 16, (uint64_t)time_ms);
    put32(h + 24, record_crc(h, payload, len));
    buf_append(out, h, sizeof h);
    buf_append(out, payload, len);
    return out->oom ? CAIRN_ENOMEM : 0;
}

int audit_record_parse(const void *buf, size_t n, audit_record *rec, size_t *size) {
    const unsigned char *p = buf;
    if (n < 4) return memcmp(p, "CAJ1", n) == 0 ? 1 : CAIRN_EINVAL;
    if (get32(p) != AUDIT_RECORD_MAGIC) return CAIRN_EINVAL;
    if (n < 8) return 1;
    uint32_t len = get32(p + 4);
    if (len > AUDIT_RECORD_MAX_PAYLOAD) return CAIRN_EINVAL;
    if (n < AUDIT_RECORD_HEADER + (size_t)len) return 1;
    if (record_crc(p, p + AUDIT_RECORD_HEADER, len) != get32(p + 24)) return CAIRN_EINVAL;
    rec->seq = get64(p + 8);
    rec->time_ms = (int64_t)get64(p + 16);
    rec->payload = (const char *)p + AUDIT_RECORD_HEADER;
    rec->len = len;
    *size = AUDIT_RECORD_HEADER + (size_t)len;
    return 0;
}

/* ---- scanning a file ------------------------------------------------------------------------ */

/* Called per good record at file offset off (size bytes); nonzero stops the scan after it. */
typedef int (*scan_fn)(void *ud, const audit_record *r, uint64_t off, size_t size);

#define SCAN_BUF (2 * (AUDIT_RECORD_MAX_PAYLOAD + AUDIT_RECORD_HEADER))

typedef struct {
    uint64_t good_end;          /* offset after the last good record (or where a bad one starts) */
    bool zero_tail;             /* the scan stopped at zeros that run to the end: preallocated, not damage */
    uint64_t corrupt;           /* bad regions skipped (stop_at_bad false) */
    bool bad_tail;              /* stop_at_bad: the scan stopped at bytes that are not a record */
    bool stopped;               /* fn asked to stop */
} scan_result;

/* The offset of fd's first nonzero byte in [from, end) (end when none);
 * -1 on a read error. */
static int64_t first_nonzero(int fd, uint64_t from, uint64_t end) {
    unsigned char b[16384];
    while (from < end) {
        size_t want = end - from < sizeof b ? (size_t)(end - from) : sizeof b;
        ssize_t got = pread(fd, b, want, (off_t)from);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) break;
        for (ssize_t k = 0; k < got; k++)
            if (b[k]) return (int64_t)(from + (uint64_t)k);
        from += (uint64_t)got;
    }
    return (int64_t)end;
}

/* Scans fd's records in [start, end).  stop_at_bad: the first bad or torn
 * record ends the scan (the last segment); else a bad region is counted and
 * skipped byte by byte to the next record that checks.  Either way, zeros
 * from where a record should begin to the end are a preallocated tail
 * (zero_tail), not damage: the scan ends there. */
static int scan_file(int fd, uint64_t start, uint64_t end, bool stop_at_bad, scan_fn fn, void *ud, scan_result *res) {
    memset(res, 0, sizeof *res);
    res->good_end = start;
    unsigned char *buf = malloc(SCAN_BUF);
    if (!buf) return CAIRN_ENOMEM;
    uint64_t base = start;      /* file offset of buf[0] */
    size_t have = 0, i = 0;
    bool in_bad = false, eof = false;
    uint64_t zeros_checked = 0;     /* zero bytes before it are known not to run to the end */
    int rc = 0;
    for (;;) {
        if (!eof && have - i < AUDIT_RECORD_MAX_PAYLOAD + AUDIT_RECORD_HEADER) {
            memmove(buf, buf + i, have - i);
            base += i;
            have -= i;
            i = 0;
            while (have < SCAN_BUF && base + have < end) {
                size_t want = SCAN_BUF - have;
                if (base + have + want > end) want = (size_t)(end - base - have);
                ssize_t got = pread(fd, buf + have, want, (off_t)(base + have));
                if (got < 0) {
                    if (errno == EINTR) continue;
                    rc = CAIRN_EIO;
                    goto out;
                }
                if (got == 0) break;
                have += (size_t)got;
            }
            eof = base + have >= end || have < SCAN_BUF;
        }
        if (i >= have) break;
        audit_record rec;
        size_t size = 0;
        int pr = audit_record_parse(buf + i, have - i, &rec, &size);
        if (pr == 0) {
            in_bad = false;
            res->good_end = base + i + size;
            int stop = fn ? fn(ud, &rec, base + i, size) : 0;
            i += size;
            if (stop) {
                res->stopped = true;
                break;
            }
            continue;
        }
        if (pr == 1 && !eof) continue;   /* refill: the record goes on */
        if (buf[i] == 0 && base + i >= zeros_checked) {
            int64_t nz = first_nonzero(fd, base + i, end);
            if (nz < 0) {
                rc = CAIRN_EIO;
                break;
            }
            if ((uint64_t)nz >= end) {
                res->zero_tail = true;
                break;
            }
            zeros_checked = (uint64_t)nz;   /* a run of zeros, then more: not a tail */
        }
        if (stop_at_bad) {
            res->bad_tail = true;
            break;
        }
        if (!in_bad) res->corrupt++;
        in_bad = true;
        i++;
    }
out:
    free(buf);
    return rc;
}

/* ---- the journal ---------------------------------------------------------------------------- */

typedef struct {
    uint64_t id;
    uint64_t size;              /* durable bytes */
} segment;

/* A durable appender waiting for its batch.  The writer posts each covered
 * waiter's own semaphore after it lets go of mu, so a batch wakes only the
 * appenders it made durable, and none of them then queues for the lock
 * (with one shared condition, every batch woke all of them; a PUT
 * benchmark spent its time in those wakeups).  w->rc is set under mu
 * before the post; sem_post is safe against the waiter returning (and its
 * frame going) as soon as sem_wait does. */
typedef struct waiter {
    uint64_t ticket;
    int rc;
    sem_t wake;
    struct waiter *next;
} waiter;

#define NBUCKETS 12
static const double sync_buckets[NBUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

struct audit_journal {
    audit_journal_opts o;
    char dir[PATH_MAX];
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_mutex_t commit_mu;  /* one audit_journal_commit at a time (the cursor file outside mu) */
    pthread_cond_t work;        /* the writer waits for records */
    pthread_cond_t done;        /* durable appenders wait for their batch */
    pthread_cond_t room;        /* appenders wait for room in the queue */
    bool closing;

    /* the queue (under mu) */
    buf_t queue, spare;
    int queued;                 /* records in queue */
    int64_t queue_first_ns;     /* monotonic time of its first record */
    uint64_t tickets;           /* records ever queued */
    uint64_t tickets_done;      /* records whose batch has been written (or failed) */
    waiter *waiters;

    /* the files */
    segment *segs;              /* oldest first; under mu */
    size_t nsegs, capsegs;
    int fd;                     /* open segment (writer only) */
    uint64_t cur_id;            /* its number: written by the writer under mu */
    uint64_t cur_size;          /* its durable size (writer only) */
    uint64_t alloc_end;         /* the bytes it has, zeros after cur_size (writer only) */
    bool rotate_next;           /* writer only */
    uint64_t next_seq;          /* writer only after open */
    uint64_t last_seq;          /* durable (under mu) */
    audit_cursor shipped;       /* under mu */
    int64_t oldest_ms;          /* time of the oldest unshipped record; 0 = none (under mu) */

    /* the spool */
    pthread_mutex_t spool_mu;
    int spool_fd;
    uint64_t spool_id, spool_seq;

    /* Whether the journal is full, for audit_journal_admit without the lock:
     * recomputed under mu after every change of the unshipped bytes or the
     * oldest record (full_bytes), and the oldest record's time (age). */
    atomic_bool full_bytes;
    atomic_int_fast64_t oldest_atomic;

    /* figures */
    atomic_uint_fast64_t appended, lost, syncs, corrupt, truncated, refusals, spooled;
    atomic_uint_fast64_t sync_hist[NBUCKETS + 1];
    atomic_uint_fast64_t sync_ns_total;
};

static void seg_path(const audit_journal *j, const char *kind, uint64_t id, char *out, size_t n) {
    snprintf(out, n, "%s/%s-%020llu.log", j->dir, kind, (unsigned long long)id);
}

static int seg_push(audit_journal *j, uint64_t id, uint64_t size) {
    if (j->nsegs == j->capsegs) {
        size_t cap = j->capsegs ? j->capsegs * 2 : 16;
        segment *s = realloc(j->segs, cap * sizeof *s);
        if (!s) return CAIRN_ENOMEM;
        j->segs = s;
        j->capsegs = cap;
    }
    j->segs[j->nsegs++] = (segment){id, size};
    return 0;
}

static segment *seg_find(audit_journal *j, uint64_t id) {
    for (size_t i = 0; i < j->nsegs; i++)
        if (j->segs[i].id == id) return &j->segs[i];
    return NULL;
}

static int fsync_dir(const audit_journal *j) {
    if (!j->o.fsync) return 0;
    int d = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return CAIRN_EIO;
    int rc = fsync(d) == 0 ? 0 : CAIRN_EIO;
    close(d);
    return rc;
}

/* Unshipped bytes on disk and queued (under mu). */
static int64_t unshipped_bytes(const audit_journal *j) {
    int64_t n = (int64_t)j->queue.len;
    for (size_t i = 0; i < j->nsegs; i++) {
        if (j->segs[i].id > j->shipped.segment) n += (int64_t)j->segs[i].size;
        else if (j->segs[i].id == j->shipped.segment && j->segs[i].size > j->shipped.offset)
            n += (int64_t)(j->segs[i].size - j->shipped.offset);
    }
    return n;
}

static int64_t headroom(const audit_journal *j) {
    int64_t h = j->o.max_bytes / 16;
    return h < 1024 * 1024 ? 1024 * 1024 : h;
}

static bool too_old(const audit_journal *j) {
    return j->o.max_age_ms > 0 && j->oldest_ms > 0 && time_now_ms() - j->oldest_ms > j->o.max_age_ms;
}

/* Refreshes the lock-free view admission reads (under mu). */
static void refresh_full(audit_journal *j) {
    atomic_store(&j->full_bytes, unshipped_bytes(j) >= j->o.max_bytes);
    atomic_store(&j->oldest_atomic, j->oldest_ms);
}

static void count_lost(audit_journal *j, uint64_t n, const char *why) {
    atomic_fetch_add(&j->lost, n);
    char c[24];
    log_write(LOG_ERROR, NULL, "audit events lost", "count", log_int(c, (long long)n), "reason", why, NULL);
}

/* ---- the writer ------------------------------------------------------------------------------ */

static int open_segment(audit_journal *j, uint64_t id) {
    char path[PATH_MAX + 64];
    seg_path(j, "journal", id, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return CAIRN_EIO;
    if (fsync_dir(j) != 0) {
        close(fd);
        return CAIRN_EIO;
    }
    if (j->fd >= 0) {
        /* The segment left: cut back to its records (a crash before this
         * leaves zeros that the next open cuts). */
        if (ftruncate(j->fd, (off_t)j->cur_size) != 0) { /* the next open cuts it */ }
        close(j->fd);
    }
    j->fd = fd;
    j->cur_size = 0;
    j->alloc_end = 0;
    pthread_mutex_lock(&j->mu);
    j->cur_id = id;             /* commit reads it under mu: never deletes the open segment */
    segment *s = seg_find(j, id);
    int rc = s ? 0 : seg_push(j, id, 0);
    if (s) s->size = 0;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static void observe_sync(audit_journal *j, int64_t ns) {
    double secs = (double)ns / 1e9;
    int b = 0;
    while (b < NBUCKETS && secs > sync_buckets[b]) b++;
    atomic_fetch_add(&j->sync_hist[b], 1);
    atomic_fetch_add(&j->sync_ns_total, (uint64_t)ns);
    atomic_fetch_add(&j->syncs, 1);
}

#define PREALLOC_MIN (64 * 1024)
#define PREALLOC (1024 * 1024)

/* Zeros from the open segment's allocated end to at least need, as much
 * again as the segment has (64 KiB first: a short-lived process writes
 * little), PREALLOC at most at a time, never past the segment's size
 * (unless need is); synced with the batch that needed them.  0 or an
 * errno (the caller writes the batch anyway). */
static int preallocate(audit_journal *j, uint64_t need) {
    uint64_t step = j->alloc_end < PREALLOC_MIN ? PREALLOC_MIN : j->alloc_end < PREALLOC ? j->alloc_end : PREALLOC;
    uint64_t to = j->alloc_end + step;
    if (to > (uint64_t)j->o.segment_bytes) to = (uint64_t)j->o.segment_bytes;
    if (to < need) to = need;
    static const unsigned char zeros[65536];
    for (uint64_t at = j->alloc_end; at < to;) {
        size_t n = to - at < sizeof zeros ? (size_t)(to - at) : sizeof zeros;
        ssize_t w = pwrite(j->fd, zeros, n, (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : EIO;
        at += (uint64_t)w;
    }
    j->alloc_end = to;
    return 0;
}

/* Numbers, seals, writes and syncs one batch.  0 or CAIRN_EIO. */
static int write_batch(audit_journal *j, buf_t *b) {
    if (j->fd < 0 || j->rotate_next || (j->cur_size > 0 && j->cur_size + b->len > (uint64_t)j->o.segment_bytes)) {
        if (open_segment(j, j->cur_id + 1) != 0) {
            j->rotate_next = true;
            return CAIRN_EIO;
        }
        j->rotate_next = false;
    }
    uint64_t seq = j->next_seq;
    for (size_t off = 0; off < b->len;) {
        unsigned char *h = (unsigned char *)b->data + off;
        record_seal(h, seq++);
        off += AUDIT_RECORD_HEADER + get32(h + 4);
    }
    int err = fault_inject(FAULT_AUDIT_WRITE);
    if (!err && j->cur_size + b->len > j->alloc_end && preallocate(j, j->cur_size + b->len) != 0)
        j->alloc_end = j->cur_size; /* no room ahead (a full disk): the batch alone may fit; zeros left are cut later */
    size_t done = 0;
    while (!err && done < b->len) {
        ssize_t w = pwrite(j->fd, b->data + done, b->len - done, (off_t)(j->cur_size + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) err = w < 0 ? errno : EIO;
        else done += (size_t)w;
    }
    if (!err && j->o.fsync) {
        int64_t t0 = time_mono_ns();
        err = fault_inject(FAULT_AUDIT_FSYNC);
        if (!err && fdatasync(j->fd) != 0) err = errno;
        if (!err) observe_sync(j, time_mono_ns() - t0);
    }
    if (err) {
        /* Back to the durable end; the next batch goes to a new segment. */
        if (ftruncate(j->fd, (off_t)j->cur_size) != 0) { /* recovery skips what is left */ }
        j->alloc_end = j->cur_size;
        j->rotate_next = true;
        log_write(LOG_ERROR, NULL, "audit journal write failed", "error", strerror(err), NULL);
        return CAIRN_EIO;
    }
    j->next_seq = seq;
    j->cur_size += b->len;
    return 0;
}

static void *writer_main(void *arg) {
    pthread_setname_np(pthread_self(), "audit-journal");
    audit_journal *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->queued && !j->closing) pthread_cond_wait(&j->work, &j->mu);
        if (!j->queued) break;          /* closing, nothing left */
        if (!j->waiters && !j->closing && j->queue.len < AUDIT_QUEUE_MAX / 2) {
            int64_t due = j->queue_first_ns + (int64_t)j->o.sync_ms * 1000000;
            int64_t now = time_mono_ns();
            if (now < due) {
                struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
                pthread_cond_timedwait(&j->work, &j->mu, &ts);
                continue;
            }
        }
        buf_t batch = j->queue;
        j->queue = j->spare;
        buf_reset(&j->queue);
        int n = j->queued;
        j->queued = 0;
        uint64_t last_ticket = j->tickets;
        pthread_cond_broadcast(&j->room);
        pthread_mutex_unlock(&j->mu);

        int rc = write_batch(j, &batch);

        pthread_mutex_lock(&j->mu);
        if (rc == 0) {
            segment *s = seg_find(j, j->cur_id);
            assert(s);
            s->size = j->cur_size;
            j->last_seq = j->next_seq - 1;
        } else {
            count_lost(j, (uint64_t)n, "the journal write or sync failed");
        }
        if (!j->queued && j->last_seq <= j->shipped.seq) j->oldest_ms = 0;
        refresh_full(j);
        j->tickets_done = last_ticket;
        waiter *wake = NULL;
        for (waiter **w = &j->waiters; *w;) {
            if ((*w)->ticket <= last_ticket) {
                waiter *x = *w;
                *w = x->next;
                x->rc = rc;
                x->next = wake;
                wake = x;
            } else {
                w = &(*w)->next;
            }
        }
        pthread_cond_broadcast(&j->done);   /* audit_journal_wait's callers */
        j->spare = batch;
        if (wake) {
            pthread_mutex_unlock(&j->mu);
            while (wake) {
                waiter *x = wake;
                wake = x->next;     /* read before the post: x may be gone after it */
                sem_post(&x->wake);
            }
            pthread_mutex_lock(&j->mu);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- the spool -------------------------------------------------------------------------------- */

static int spool_append(audit_journal *j, const void *payload, size_t len, int64_t now_ms) {
    buf_t b;
    buf_init(&b);
    pthread_mutex_lock(&j->spool_mu);
    int rc = 0;
    if (j->spool_fd < 0) {
        char path[PATH_MAX + 64];
        seg_path(j, "spool", j->spool_id, path, sizeof path);
        j->spool_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (j->spool_fd < 0 || fsync_dir(j) != 0) rc = CAIRN_EIO;
    }
    if (rc == 0) rc = audit_record_encode(&b, ++j->spool_seq, now_ms, payload, len);
    int err = rc == 0 ? fault_inject(FAULT_AUDIT_WRITE) : 0;
    if (rc == 0 && (err || write(j->spool_fd, b.data, b.len) != (ssize_t)b.len)) rc = CAIRN_EIO;
    if (rc == 0 && j->o.fsync && (fault_inject(FAULT_AUDIT_FSYNC) || fdatasync(j->spool_fd) != 0)) rc = CAIRN_EIO;
    pthread_mutex_unlock(&j->spool_mu);
    buf_free(&b);
    if (rc == 0) atomic_fetch_add(&j->spooled, 1);
    else count_lost(j, 1, "the journal is full and the spool write failed");
    return rc;
}

static int list_ids(const char *dir, const char *kind, uint64_t **out, size_t *n);

/* Reads one sealed spool file and hands its records to fn, max at a time. */
static int spool_drain_file(audit_journal *j, const char *path, int max,
                            int (*fn)(void *ud, const audit_record *recs, int n), void *ud, uint64_t *drained) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : CAIRN_EIO;
    enum { CHUNK = 4 * 1024 * 1024 };
    char *buf = malloc(CHUNK);
    audit_record *recs = calloc((size_t)max, sizeof *recs);
    int rc = buf && recs ? 0 : CAIRN_ENOMEM;
    size_t have = 0;
    uint64_t corrupt = 0;
    bool eof = false;
    while (rc == 0) {
        if (!eof && have < CHUNK) {
            ssize_t r = read(fd, buf + have, CHUNK - have);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                rc = CAIRN_EIO;
                break;
            }
            if (r == 0) eof = true;
            have += (size_t)r;
            if (r > 0 && have < CHUNK) continue;
        }
        size_t off = 0;
        int n = 0;
        while (rc == 0 && off < have) {
            size_t size = 0;
            int pr = audit_record_parse(buf + off, have - off, &recs[n], &size);
            if (pr == 1) break; /* incomplete: more to read, or a torn tail */
            if (pr != 0) {
                corrupt++;
                off++;
                continue;
            }
            off += size;
            if (++n == max) {
                rc = fn(ud, recs, n);
                if (rc == 0) *drained += (uint64_t)n;
                n = 0;
            }
        }
        if (rc == 0 && n) {
            rc = fn(ud, recs, n);
            if (rc == 0) *drained += (uint64_t)n;
        }
        if (rc != 0) break;
        memmove(buf, buf + off, have - off);
        have -= off;
        if (eof) break; /* what is left is a torn tail: no append after it was acknowledged */
    }
    close(fd);
    free(buf);
    free(recs);
    if (corrupt) {
        atomic_fetch_add(&j->corrupt, corrupt);
        log_write(LOG_ERROR, NULL, "audit spool: corrupt bytes skipped while draining", "path", path, NULL);
    }
    if (rc == 0 && (unlink(path) != 0 || fsync_dir(j) != 0)) rc = CAIRN_EIO;
    return rc;
}

int audit_journal_spool_drain(audit_journal *j, int max, int (*fn)(void *ud, const audit_record *recs, int n),
                              void *ud, uint64_t *drained) {
    *drained = 0;
    if (max < 1) return CAIRN_EINVAL;
    pthread_mutex_lock(&j->spool_mu);
    if (j->spool_fd >= 0) {
        close(j->spool_fd);
        j->spool_fd = -1;
        j->spool_id++;
    }
    uint64_t sealed = j->spool_id - 1; /* files up to this one are written no more */
    pthread_mutex_unlock(&j->spool_mu);
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc = list_ids(j->dir, "spool", &ids, &n);
    for (size_t i = 0; rc == 0 && i < n && ids[i] <= sealed; i++) {
        char path[PATH_MAX + 64];
        seg_path(j, "spool", ids[i], path, sizeof path);
        rc = spool_drain_file(j, path, max, fn, ud, drained);
    }
    free(ids);
    return rc;
}

/* ---- appending -------------------------------------------------------------------------------- */

/* Called with mu held, which it lets go: waits until the batch holding
 * ticket is written and synced (or failed); its result. */
static int wait_durable(audit_journal *j, uint64_t ticket) {
    waiter w = {.ticket = ticket, .next = j->waiters};
    if (sem_init(&w.wake, 0, 0) != 0) {      /* cannot happen on Linux (pshared 0) */
        pthread_mutex_unlock(&j->mu);
        return CAIRN_EIO;
    }
    j->waiters = &w;
    pthread_cond_signal(&j->work);
    pthread_mutex_unlock(&j->mu);
    while (sem_wait(&w.wake) != 0) { /* EINTR */ }
    sem_destroy(&w.wake);
    return w.rc;
}

int audit_journal_append(audit_journal *j, const void *payload, size_t len, int flags) {
    if (len > AUDIT_RECORD_MAX_PAYLOAD) {
        count_lost(j, 1, "event larger than a record may be");
        return CAIRN_EINVAL;
    }
    size_t size = AUDIT_RECORD_HEADER + len;
    int64_t now = time_now_ms();
    pthread_mutex_lock(&j->mu);
    while (!j->closing && j->queue.len + size > AUDIT_QUEUE_MAX && j->queued) {
        pthread_cond_signal(&j->work);
        pthread_cond_wait(&j->room, &j->mu);
    }
    if (j->closing) {
        pthread_mutex_unlock(&j->mu);
        count_lost(j, 1, "the journal is closed");
        return CAIRN_EINVAL;
    }
    int64_t used = unshipped_bytes(j) + (int64_t)size;
    if (j->o.overflow == AUDIT_OVERFLOW_SPOOL && (used > j->o.max_bytes || too_old(j))) {
        pthread_mutex_unlock(&j->mu);
        return spool_append(j, payload, len, now);
    }
    if (used > j->o.max_bytes + headroom(j)) {
        pthread_mutex_unlock(&j->mu);
        count_lost(j, 1, "the journal is full past its headroom (audit_journal_max_bytes)");
        return CAIRN_EBUSY;
    }
    if (buf_reserve(&j->queue, size) != 0) {
        /* realloc failed and left the queue as it was: only this record is refused. */
        j->queue.oom = false;
        pthread_mutex_unlock(&j->mu);
        count_lost(j, 1, "out of memory queueing an event");
        return CAIRN_ENOMEM;
    }
    /* The header without sequence and CRC: the writer seals it (record_seal). */
    unsigned char h[AUDIT_RECORD_HEADER] = {0};
    put32(h, AUDIT_RECORD_MAGIC);
    put32(h + 4, (uint32_t)len);
    put64(h + 16, (uint64_t)now);
    buf_append(&j->queue, h, sizeof h);
    buf_append(&j->queue, payload, len);
    assert(!j->queue.oom);
    if (!j->queued) j->queue_first_ns = time_mono_ns();
    if (!j->oldest_ms) j->oldest_ms = now;
    j->queued++;
    refresh_full(j);
    uint64_t ticket = ++j->tickets;
    atomic_fetch_add(&j->appended, 1);
    if (!(flags & AUDIT_APPEND_DURABLE)) {
        if (j->queued == 1) pthread_cond_signal(&j->work);
        pthread_mutex_unlock(&j->mu);
        return 0;
    }
    return wait_durable(j, ticket);
}

int audit_journal_sync(audit_journal *j) {
    pthread_mutex_lock(&j->mu);
    if (j->tickets_done == j->tickets) {
        pthread_mutex_unlock(&j->mu);
        return 0;
    }
    return wait_durable(j, j->tickets);
}

int audit_journal_admit(audit_journal *j) {
    int64_t oldest = atomic_load(&j->oldest_atomic);
    bool full = atomic_load(&j->full_bytes) ||
                (j->o.max_age_ms > 0 && oldest > 0 && time_now_ms() - oldest > j->o.max_age_ms);
    if (!full || j->o.overflow == AUDIT_OVERFLOW_SPOOL) return 0;
    atomic_fetch_add(&j->refusals, 1);
    return CAIRN_EBUSY;
}

/* ---- open, recovery, close --------------------------------------------------------------------- */

static int mkdir_p(const char *dir) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return CAIRN_EINVAL;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return CAIRN_EIO;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return CAIRN_EIO;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The ids of dir's files named <kind>-<digits>.log, sorted; *out malloc'd. */
static int list_ids(const char *dir, const char *kind, uint64_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : CAIRN_EIO;
    size_t cap = 0, klen = strlen(kind);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strncmp(nm, kind, klen) != 0 || nm[klen] != '-') continue;
        char *end;
        errno = 0;
        unsigned long long id = strtoull(nm + klen + 1, &end, 10);
        if (errno || end == nm + klen + 1 || strcmp(end, ".log") != 0 || id == 0) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(*out, cap * sizeof *p);
            if (!p) { rc = CAIRN_ENOMEM; break; }
            *out = p;
        }
        (*out)[(*n)++] = id;
    }
    closedir(d);
    if (rc == 0 && *n) qsort(*out, *n, sizeof **out, cmp_u64);
    return rc;
}

static void cursor_path(const char *dir, char *out, size_t n) { snprintf(out, n, "%s/cursor", dir); }

/* Reads the committed cursor; a missing file is the start, a malformed one
 * is logged and also the start (everything is shipped again: the store is
 * idempotent on event ids). */
static audit_cursor read_cursor(const char *dir) {
    audit_cursor c = {0, 0, 0};
    char path[PATH_MAX + 16], text[128];
    cursor_path(dir, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return c;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    unsigned long long s, o, q;
    if (n > 0) {
        text[n] = '\0';
        if (sscanf(text, "cairn-audit-cursor 1 %llu %llu %llu", &s, &o, &q) == 3) return (audit_cursor){s, o, q};
    }
    log_write(LOG_ERROR, NULL, "audit journal cursor unreadable: shipping everything again", "path", path, NULL);
    return c;
}

typedef struct {
    audit_journal *j;
    uint64_t seg;
    uint64_t max_seq;
} recover_ctx;

static int recover_record(void *ud, const audit_record *r, uint64_t off, size_t size) {
    (void)size;
    recover_ctx *c = ud;
    audit_journal *j = c->j;
    if (r->seq > c->max_seq) c->max_seq = r->seq;
    bool unshipped = c->seg > j->shipped.segment || (c->seg == j->shipped.segment && off >= j->shipped.offset);
    if (unshipped && !j->oldest_ms) j->oldest_ms = r->time_ms > 0 ? r->time_ms : 1;
    return 0;
}

static int recover(audit_journal *j) {
    j->shipped = read_cursor(j->dir);
    uint64_t *ids;
    size_t n;
    int rc = list_ids(j->dir, "journal", &ids, &n);
    if (rc != 0) return rc;
    recover_ctx c = {j, 0, j->shipped.seq};
    uint64_t last_id = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX + 64];
        seg_path(j, "journal", ids[i], path, sizeof path);
        if (ids[i] < j->shipped.segment) {   /* shipped; a crash came before its deletion */
            unlink(path);
            continue;
        }
        bool last = i == n - 1;
        int fd = open(path, last ? O_RDWR | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            if (fd >= 0) close(fd);
            log_write(LOG_ERROR, NULL, "cannot open an audit journal segment", "path", path, NULL);
            rc = CAIRN_EIO;
            break;
        }
        c.seg = ids[i];
        scan_result sr;
        rc = scan_file(fd, 0, (uint64_t)st.st_size, last, recover_record, &c, &sr);
        uint64_t size = (uint64_t)st.st_size;
        if (rc == 0 && sr.zero_tail) {
            /* Zeroed ahead and never written (a crash, or a kill, before
             * the writer cut it): not a torn tail, nothing lost. */
            if ((last ? ftruncate(fd, (off_t)sr.good_end) : truncate(path, (off_t)sr.good_end)) != 0 ||
                (j->o.fsync && last && fsync(fd) != 0))
                rc = CAIRN_EIO;
            size = sr.good_end;
        }
        if (rc == 0 && last && sr.good_end < size) {
            /* A torn tail: the crash came mid-write.  Cut it. */
            char cut[24];
            log_write(LOG_WARN, NULL, "audit journal: torn tail truncated", "path", path,
                      "bytes", log_int(cut, (long long)(size - sr.good_end)), NULL);
            atomic_fetch_add(&j->truncated, size - sr.good_end);
            if (ftruncate(fd, (off_t)sr.good_end) != 0 || (j->o.fsync && fsync(fd) != 0)) rc = CAIRN_EIO;
            size = sr.good_end;
        }
        if (rc == 0 && sr.corrupt) {
            char cn[24];
            log_write(LOG_ERROR, NULL, "audit journal: corrupt records skipped", "path", path,
                      "regions", log_int(cn, (long long)sr.corrupt), NULL);
            atomic_fetch_add(&j->corrupt, sr.corrupt);
        }
        if (rc == 0) rc = seg_push(j, ids[i], size);
        if (rc == 0 && last) {
            j->fd = fd;
            j->cur_id = ids[i];
            j->cur_size = size;
            j->alloc_end = size;
            j->rotate_next = size >= (uint64_t)j->o.segment_bytes;
        } else {
            close(fd);
        }
        last_id = ids[i];
    }
    free(ids);
    if (rc != 0) return rc;
    if (!j->nsegs) j->cur_id = j->shipped.segment > last_id ? j->shipped.segment : last_id;
    j->next_seq = c.max_seq + 1;
    j->last_seq = c.max_seq;
    if (j->last_seq <= j->shipped.seq) j->oldest_ms = 0;
    refresh_full(j);

    uint64_t *sp;
    size_t ns;
    if (list_ids(j->dir, "spool", &sp, &ns) == 0) {
        j->spool_id = ns ? sp[ns - 1] + 1 : 1;
        free(sp);
    }
    return 0;
}

int audit_journal_open(const audit_journal_opts *o, audit_journal **out) {
    *out = NULL;
    if (!o->dir || !o->dir[0] || o->max_bytes <= 0 || o->segment_bytes <= 0 || o->sync_ms < 1 || o->max_age_ms < 0)
        return CAIRN_EINVAL;
    audit_journal *j = calloc(1, sizeof *j);
    if (!j) return CAIRN_ENOMEM;
    j->o = *o;
    snprintf(j->dir, sizeof j->dir, "%s", o->dir);
    j->o.dir = j->dir;
    j->fd = -1;
    j->spool_fd = -1;
    buf_init(&j->queue);
    buf_init(&j->spare);
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->commit_mu, NULL);
    pthread_mutex_init(&j->spool_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&j->done, NULL);
    pthread_cond_init(&j->room, NULL);
    int rc = mkdir_p(j->dir);
    if (rc != 0) log_write(LOG_ERROR, NULL, "cannot create the audit journal directory", "path", j->dir, NULL);
    if (rc == 0) rc = recover(j);
    if (rc == 0 && pthread_create(&j->writer, NULL, writer_main, j) != 0) rc = CAIRN_EIO;
    if (rc != 0) {
        if (j->fd >= 0) close(j->fd);
        free(j->segs);
        pthread_mutex_destroy(&j->mu);
        pthread_mutex_destroy(&j->commit_mu);
        pthread_mutex_destroy(&j->spool_mu);
        pthread_cond_destroy(&j->work);
        pthread_cond_destroy(&j->done);
        pthread_cond_destroy(&j->room);
        free(j);
        return rc;
    }
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    char b[24], d[24], s[24];
    log_write(LOG_INFO, NULL, "audit journal open", "dir", j->dir, "unshipped_events", log_int(d, st.depth),
              "unshipped_bytes", log_int(b, st.bytes), "segments", log_int(s, (long long)st.segments), NULL);
    *out = j;
    return 0;
}

void audit_journal_close(audit_journal *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->closing = true;
    pthread_cond_broadcast(&j->work);
    pthread_cond_broadcast(&j->room);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->writer, NULL);   /* it writes and syncs what is queued first */
    assert(!j->waiters);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    char d[24], b[24], l[24];
    log_write(LOG_INFO, NULL, "audit journal closed", "pending_events", log_int(d, st.depth),
              "pending_bytes", log_int(b, st.bytes), "events_lost", log_int(l, (long long)st.lost), NULL);
    if (j->fd >= 0) {
        /* Cut back to the records (the writer is gone); else the next open does. */
        if (ftruncate(j->fd, (off_t)j->cur_size) != 0) { /* the next open cuts it */ }
        close(j->fd);
    }
    if (j->spool_fd >= 0) close(j->spool_fd);
    buf_free(&j->queue);
    buf_free(&j->spare);
    free(j->segs);
    pthread_mutex_destroy(&j->mu);
    pthread_mutex_destroy(&j->commit_mu);
    pthread_mutex_destroy(&j->spool_mu);
    pthread_cond_destroy(&j->work);
    pthread_cond_destroy(&j->done);
    pthread_cond_destroy(&j->room);
    free(j);
}

/* ---- reading and committing ----------------------------------------------------------------------- */

audit_cursor audit_journal_shipped(audit_journal *j) {
    pthread_mutex_lock(&j->mu);
    audit_cursor c = j->shipped;
    pthread_mutex_unlock(&j->mu);
    return c;
}

typedef struct {
    audit_batch *b;
    buf_t data;
    uint64_t *offs;             /* payload offsets in data, per record */
    int max;
    uint64_t seg;
} read_ctx;

static int read_record(void *ud, const audit_record *r, uint64_t off, size_t size) {
    read_ctx *c = ud;
    audit_batch *b = c->b;
    c->offs[b->n] = c->data.len;
    buf_append(&c->data, r->payload, r->len);
    b->recs[b->n] = (audit_record){r->seq, r->time_ms, NULL, r->len};
    b->n++;
    b->next = (audit_cursor){c->seg, off + size, r->seq};
    return b->n >= c->max || c->data.oom;
}

int audit_journal_read(audit_journal *j, audit_cursor from, int max, audit_batch *out) {
    memset(out, 0, sizeof *out);
    out->next = from;
    if (max < 1) return CAIRN_EINVAL;
    out->recs = calloc((size_t)max, sizeof *out->recs);
    read_ctx c = {out, {0}, calloc((size_t)max, sizeof(uint64_t)), max, 0};
    buf_init(&c.data);
    if (!out->recs || !c.offs) {
        free(c.offs);
        return CAIRN_ENOMEM;
    }
    /* A snapshot of the segments and their durable sizes. */
    pthread_mutex_lock(&j->mu);
    size_t n = j->nsegs;
    segment *segs = n ? malloc(n * sizeof *segs) : NULL;
    if (segs) memcpy(segs, j->segs, n * sizeof *segs);
    pthread_mutex_unlock(&j->mu);
    if (n && !segs) {
        free(c.offs);
        return CAIRN_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && out->n < max && rc == 0; i++) {
        if (segs[i].id < from.segment) continue;
        uint64_t start = segs[i].id == from.segment ? from.offset : 0;
        if (start >= segs[i].size) continue;
        char path[PATH_MAX + 64];
        seg_path(j, "journal", segs[i].id, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = CAIRN_EIO;
            break;
        }
        c.seg = segs[i].id;
        scan_result sr;
        rc = scan_file(fd, start, segs[i].size, false, read_record, &c, &sr);
        close(fd);
        if (sr.corrupt) {
            atomic_fetch_add(&j->corrupt, sr.corrupt);
            log_write(LOG_ERROR, NULL, "audit journal: corrupt records skipped while reading", "path", path, NULL);
        }
        if (rc == 0 && !sr.stopped && out->n == 0) {
            /* Nothing good in the rest of this segment: the cursor moves past it. */
            out->next = (audit_cursor){segs[i].id, segs[i].size, from.seq};
        }
    }
    free(segs);
    if (rc == 0 && c.data.oom) rc = CAIRN_ENOMEM;
    if (rc == 0) {
        out->data = buf_steal(&c.data);
        for (int k = 0; k < out->n; k++) out->recs[k].payload = out->data + c.offs[k];
    } else {
        buf_free(&c.data);
        out->n = 0;
    }
    free(c.offs);
    return rc;
}

uint64_t audit_journal_durable_seq(audit_journal *j) {
    pthread_mutex_lock(&j->mu);
    uint64_t s = j->last_seq;
    pthread_mutex_unlock(&j->mu);
    return s;
}

uint64_t audit_journal_wait(audit_journal *j, uint64_t after, int timeout_ms) {
    /* done is a CLOCK_REALTIME condition (the appenders wait untimed). */
    struct timespec ts = time_deadline(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&j->mu);
    while (j->last_seq <= after && !j->closing)
        if (pthread_cond_timedwait(&j->done, &j->mu, &ts) == ETIMEDOUT) break;
    uint64_t s = j->last_seq;
    pthread_mutex_unlock(&j->mu);
    return s;
}

void audit_batch_free(audit_batch *b) {
    free(b->recs);
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* The time of the first record at or after c (under mu); 0 = none on disk. */
static int64_t first_time_after(audit_journal *j, audit_cursor c) {
    for (size_t i = 0; i < j->nsegs; i++) {
        if (j->segs[i].id < c.segment) continue;
        uint64_t off = j->segs[i].id == c.segment ? c.offset : 0;
        if (off >= j->segs[i].size) continue;
        char path[PATH_MAX + 64];
        seg_path(j, "journal", j->segs[i].id, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        unsigned char h[AUDIT_RECORD_HEADER];
        bool ok = fd >= 0 && pread(fd, h, sizeof h, (off_t)off) == (ssize_t)sizeof h;
        if (fd >= 0) close(fd);
        if (ok && get32(h) == AUDIT_RECORD_MAGIC) return (int64_t)get64(h + 16);
        return time_now_ms(); /* unreadable: count its age from now */
    }
    return 0;
}

/* The cursor file is written and synced outside mu, so appenders (every
 * request's emit) and the writer's wakeups never wait on its two fsyncs;
 * commit_mu keeps commits one at a time, so nothing but this call moves
 * j->shipped or drops segments meanwhile.  The shipped segments' files
 * are unlinked after mu too (they left the list under it). */
int audit_journal_commit(audit_journal *j, audit_cursor upto) {
    pthread_mutex_lock(&j->commit_mu);
    pthread_mutex_lock(&j->mu);
    const audit_cursor old = j->shipped;
    segment *s = seg_find(j, upto.segment);
    bool behind = upto.segment < old.segment || (upto.segment == old.segment && upto.offset < old.offset);
    bool past = upto.segment && (!s || upto.offset > s->size);
    pthread_mutex_unlock(&j->mu);
    if (behind || past) {
        pthread_mutex_unlock(&j->commit_mu);
        return CAIRN_EINVAL;
    }
    char path[PATH_MAX + 16], text[128];
    cursor_path(j->dir, path, sizeof path);
    int len = snprintf(text, sizeof text, "cairn-audit-cursor 1 %llu %llu %llu\n", (unsigned long long)upto.segment,
                       (unsigned long long)upto.offset, (unsigned long long)upto.seq);
    if (file_write_atomic(path, text, (size_t)len, 0644, true) != 0) {
        pthread_mutex_unlock(&j->commit_mu);
        log_write(LOG_ERROR, NULL, "cannot persist the audit journal cursor", "path", path, NULL);
        return CAIRN_EIO;
    }
    fault_point("audit.cursor.written"); /* test_audit_journal.c: appends go on meanwhile */
    pthread_mutex_lock(&j->mu);
    j->shipped = upto;
    /* Segments wholly shipped go, but never the one being written. */
    uint64_t *gone = malloc(j->nsegs * sizeof *gone);
    size_t keep = 0, ngone = 0;
    for (size_t i = 0; i < j->nsegs; i++) {
        segment *g = &j->segs[i];
        bool shipped = g->id < upto.segment || (g->id == upto.segment && upto.offset >= g->size);
        if (shipped && g->id != j->cur_id && gone) {
            gone[ngone++] = g->id;
            continue;
        }
        j->segs[keep++] = *g;
    }
    j->nsegs = keep;
    int64_t t = first_time_after(j, upto);
    if (!t && j->queued) t = time_now_ms();
    j->oldest_ms = t;
    refresh_full(j);
    pthread_mutex_unlock(&j->mu);
    /* (Without memory for the list they stay, listed, until the next commit.) */
    for (size_t i = 0; i < ngone; i++) {
        char sp[PATH_MAX + 64];
        seg_path(j, "journal", gone[i], sp, sizeof sp);
        if (unlink(sp) != 0 && errno != ENOENT)
            log_write(LOG_WARN, NULL, "cannot delete a shipped audit journal segment", "path", sp, NULL);
    }
    free(gone);
    pthread_mutex_unlock(&j->commit_mu);
    return 0;
}

/* ---- figures ------------------------------------------------------------------------------------ */

void audit_journal_get_stats(audit_journal *j, audit_journal_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&j->mu);
    out->bytes = unshipped_bytes(j);
    int64_t depth = (int64_t)(j->last_seq - (j->shipped.seq < j->last_seq ? j->shipped.seq : j->last_seq));
    out->depth = depth + j->queued;
    out->oldest_unshipped_ms = out->depth ? j->oldest_ms : 0;
    out->segments = j->nsegs;
    pthread_mutex_unlock(&j->mu);
    out->appended = atomic_load(&j->appended);
    out->lost = atomic_load(&j->lost);
    out->syncs = atomic_load(&j->syncs);
    out->corrupt_records = atomic_load(&j->corrupt);
    out->truncated_bytes = atomic_load(&j->truncated);
    out->overflow_refusals = atomic_load(&j->refusals);
    out->spooled = atomic_load(&j->spooled);
}

void audit_journal_render_metrics(audit_journal *j, buf_t *out) {
    audit_journal_stats st = {0};
    if (j) audit_journal_get_stats(j, &st);
    int64_t now = time_now_ms();
    double age = st.oldest_unshipped_ms && now > st.oldest_unshipped_ms ? (double)(now - st.oldest_unshipped_ms) / 1e3 : 0;
    buf_printf(out,
               "# HELP cairn_audit_journal_bytes Unshipped bytes in the audit journal (queued included).\n"
               "# TYPE cairn_audit_journal_bytes gauge\ncairn_audit_journal_bytes %lld\n"
               "# HELP cairn_audit_journal_depth Unshipped events in the audit journal.\n"
               "# TYPE cairn_audit_journal_depth gauge\ncairn_audit_journal_depth %lld\n"
               "# HELP cairn_audit_oldest_unshipped_seconds Age of the oldest unshipped audit event.\n"
               "# TYPE cairn_audit_oldest_unshipped_seconds gauge\ncairn_audit_oldest_unshipped_seconds %.3f\n"
               "# HELP cairn_audit_events_emitted_total Audit events accepted into the journal.\n"
               "# TYPE cairn_audit_events_emitted_total counter\ncairn_audit_events_emitted_total %llu\n"
               "# HELP cairn_audit_events_lost_total Audit events that could not be stored (must stay 0).\n"
               "# TYPE cairn_audit_events_lost_total counter\ncairn_audit_events_lost_total %llu\n"
               "# HELP cairn_audit_overflow_refusals_total Requests refused 503 because the audit journal was full.\n"
               "# TYPE cairn_audit_overflow_refusals_total counter\ncairn_audit_overflow_refusals_total %llu\n"
               "# HELP cairn_audit_spooled_total Audit events written to the overflow spool.\n"
               "# TYPE cairn_audit_spooled_total counter\ncairn_audit_spooled_total %llu\n"
               "# HELP cairn_audit_journal_corrupt_records_total Corrupt regions skipped in audit journal segments.\n"
               "# TYPE cairn_audit_journal_corrupt_records_total counter\ncairn_audit_journal_corrupt_records_total %llu\n"
               "# HELP cairn_audit_journal_segments Audit journal segment files.\n"
               "# TYPE cairn_audit_journal_segments gauge\ncairn_audit_journal_segments %llu\n",
               (long long)st.bytes, (long long)st.depth, age, (unsigned long long)st.appended,
               (unsigned long long)st.lost, (unsigned long long)st.overflow_refusals, (unsigned long long)st.spooled,
               (unsigned long long)st.corrupt_records, (unsigned long long)st.segments);
    buf_puts(out, "# HELP cairn_audit_journal_sync_seconds Time of one audit journal fdatasync (one group commit).\n"
                  "# TYPE cairn_audit_journal_sync_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b <= NBUCKETS; b++) {
        cum += j ? atomic_load(&j->sync_hist[b]) : 0;
        if (b < NBUCKETS) buf_printf(out, "cairn_audit_journal_sync_seconds_bucket{le=\"%g\"} %llu\n", sync_buckets[b], (unsigned long long)cum);
        else buf_printf(out, "cairn_audit_journal_sync_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    buf_printf(out, "cairn_audit_journal_sync_seconds_sum %.6f\ncairn_audit_journal_sync_seconds_count %llu\n",
               j ? (double)atomic_load(&j->sync_ns_total) / 1e9 : 0.0, (unsigned long long)cum);
}

/* ---- offline scan --------------------------------------------------------------------------------- */

typedef struct {
    int (*fn)(void *ud, const audit_record *r);
    void *ud;
    int rc;
} dump_ctx;

static int dump_record(void *ud, const audit_record *r, uint64_t off, size_t size) {
    (void)off;
    (void)size;
    dump_ctx *c = ud;
    c->rc = c->fn(c->ud, r);
    return c->rc != 0;
}

/* The files of kind ("journal" or "spool") from cur on, in order. */
static int scan_kind(const char *dir, const char *kind, audit_cursor cur, int (*fn)(void *ud, const audit_record *r),
                     void *ud, uint64_t *corrupt) {
    if (corrupt) *corrupt = 0;
    uint64_t *ids;
    size_t n;
    int rc = list_ids(dir, kind, &ids, &n);
    if (rc != 0) return rc;
    dump_ctx c = {fn, ud, 0};
    for (size_t i = 0; i < n && rc == 0 && c.rc == 0; i++) {
        if (ids[i] < cur.segment) continue;
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s-%020llu.log", dir, kind, (unsigned long long)ids[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            if (fd >= 0) close(fd);
            rc = CAIRN_EIO;
            break;
        }
        scan_result sr;
        rc = scan_file(fd, ids[i] == cur.segment ? cur.offset : 0, (uint64_t)st.st_size, false, dump_record, &c, &sr);
        close(fd);
        if (corrupt) *corrupt += sr.corrupt;
    }
    free(ids);
    return rc ? rc : c.rc;
}

int audit_journal_scan(const char *dir, bool all, int (*fn)(void *ud, const audit_record *r), void *ud,
                       uint64_t *corrupt) {
    return scan_kind(dir, "journal", all ? (audit_cursor){0, 0, 0} : read_cursor(dir), fn, ud, corrupt);
}

int audit_spool_scan(const char *dir, int (*fn)(void *ud, const audit_record *r), void *ud, uint64_t *corrupt) {
    return scan_kind(dir, "spool", (audit_cursor){0, 0, 0}, fn, ud, corrupt);
}
