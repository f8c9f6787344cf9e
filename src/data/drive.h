/*
 * drive.h — one place shards live, behind a small set of operations so the
 * store does not care whether a drive is a local directory (drive.c) or a
 * storage node reached over the shard API (remote.c).  Private to data/,
 * but for node/, whose server is the other end of the shard API: it serves
 * its local drives through this interface.
 *
 * Shards are named "<version_id>.<index>"; a shard is written once, as an
 * append-only stream, and becomes visible under its name only when committed
 * (durable: data and directory entry synced).  Reads are positional.
 *
 * Thread-safety: a drive is shared by all threads; a shard_out or shard_in
 * belongs to one thread at a time.
 */
#ifndef CAIRN_DATA_DRIVE_H
#define CAIRN_DATA_DRIVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/core.h"

typedef struct drive drive;
typedef struct shard_out shard_out;
typedef struct shard_in shard_in;
typedef struct drive_ops drive_ops;

/* One committed shard as listed: its name and age in milliseconds (from its
 * mtime, by the clock of the machine that holds it: a duration, so clocks
 * need not agree). */
typedef struct {
    char name[48];
    int64_t age_ms;
} drive_entry;
/* Called per listed shard; nonzero stops the listing (and is returned). */
typedef int (*drive_entry_fn)(void *ud, const drive_entry *e);

/* Base parts: each implementation's structs begin with these. */
struct drive { const drive_ops *ops; };
struct shard_out { drive *d; };
struct shard_in { drive *d; };

/* The operations behind a drive. */
struct drive_ops {
    void (*close)(drive *d);
    const char *(*id)(const drive *d);
    const char *(*path)(const drive *d);
    int (*create)(drive *d, const char *name, uint64_t size, shard_out **out);
    int (*append)(shard_out *o, const struct iovec *iov, int iovcnt);
    void (*writeback)(shard_out *o);
    int (*commit)(shard_out *o);
    void (*abort)(shard_out *o);
    int (*open)(drive *d, const char *name, shard_in **out);
    ssize_t (*preadv)(shard_in *in, const struct iovec *iov, int iovcnt, uint64_t off);
    int64_t (*shard_size)(shard_in *in);
    void (*close_shard)(shard_in *in);
    int (*remove)(drive *d, const char *name);
    int (*check_writable)(drive *d);
    int (*free_bytes)(drive *d, int64_t *free_bytes, int64_t *total_bytes);
    int (*tmp_count)(drive *d);
    int (*walk)(drive *d, drive_entry_fn cb, void *ud);
};

/* Advances iov[*first..iovcnt) past n bytes written, moving *first past the
 * entries that are done (for partial writev/sendmsg). */
static inline void drive_iov_advance(struct iovec *iov, int iovcnt, int *first, size_t n) {
    while (n && *first < iovcnt) {
        size_t take = n < iov[*first].iov_len ? n : iov[*first].iov_len;
        iov[*first].iov_base = (char *)iov[*first].iov_base + take;
        iov[*first].iov_len -= take;
        n -= take;
        if (iov[*first].iov_len == 0) (*first)++;
    }
    while (*first < iovcnt && iov[*first].iov_len == 0) (*first)++;
}

/* True for "<32 lowercase hex>.<0..15>". */
bool drive_shard_name_valid(const char *name);

/* ---- local directories (drive.c) and storage nodes (remote.c) ------------------------ */

/* A storage node as a drive: url "http://host:port" or "https://host:port"
 * (then verified against tls_ca, or the system CAs, hostname included); the
 * node's id is fetched
 * from /v1/info (CAIRN_EIO when unreachable).  timeout_ms bounds every network
 * wait of every call, so a hung node turns into a failed shard, not a hung
 * request. */
int drive_remote_open(const char *url, const char *secret, const char *tls_ca, int timeout_ms, drive **out);
/* The same, but when the node does not answer and known_id (its id from the
 * registry) is given, returns a drive with that id whose calls fail until the
 * node is back: reads use parity meanwhile, placement avoids it.  *answered
 * says which happened. */
int drive_remote_open_known(const char *url, const char *secret, const char *tls_ca, int timeout_ms,
                            const char *known_id, drive **out, bool *answered);

/* Opens (creating) a drive directory: takes its lock (CAIRN_EBUSY when another
 * process uses the drive), objects/, tmp/ (emptied: returns how many stale temp
 * files in *cleaned) and a persistent random id in drive-id. */
int drive_local_open(const char *path, bool fsync, drive **out, int *cleaned);
void drive_close(drive *d);
const char *drive_id(const drive *d);
const char *drive_path(const drive *d);

/* Starts a shard of exactly size bytes (remote drives announce it), or of a
 * size not known yet (DRIVE_SIZE_UNKNOWN: a remote drive sends it chunked). */
#define DRIVE_SIZE_UNKNOWN UINT64_MAX
int drive_create(drive *d, const char *name, uint64_t size, shard_out **out);
/* Appends; CAIRN_ENOSPC / CAIRN_EIO. */
int drive_append(shard_out *o, const struct iovec *iov, int iovcnt);
/* Asks the kernel to start writing back what was appended (a hint). */
void drive_writeback(shard_out *o);
/* fdatasync, rename into place, fsync the directory; frees o (on error the
 * temp file is removed). */
int drive_commit(shard_out *o);
void drive_abort(shard_out *o);

/* CAIRN_ENOTFOUND when the shard does not exist. */
int drive_open(drive *d, const char *name, shard_in **out);
ssize_t drive_preadv(shard_in *in, const struct iovec *iov, int iovcnt, uint64_t off);
int64_t drive_shard_size(shard_in *in);
void drive_close_shard(shard_in *in);
/* Missing is not an error. */
int drive_remove(drive *d, const char *name);

int drive_check_writable(drive *d);
int drive_free_bytes(drive *d, int64_t *free_bytes, int64_t *total_bytes);
int drive_tmp_count(drive *d);
/* Visits every committed shard (for garbage collection; a remote drive pages
 * through the node's listing).  0, cb's nonzero result, or CAIRN_EIO. */
int drive_walk(drive *d, drive_entry_fn cb, void *ud);

/* A local drive's committed shards with names after `after` ("" = from the
 * first), in name order, at most limit of them.  Reads one fan-out directory
 * at a time, so memory is bounded by the largest directory.  0 or cb's result. */
int drive_local_list(drive *d, const char *after, long limit, drive_entry_fn cb, void *ud);

#endif
