/*
 * data — where object bytes live: erasure-coded shards on drives.
 *
 * An object is cut into stripes of k data blocks (each `block` bytes; the last
 * stripe's blocks are shorter), ISA-L computes m parity blocks per stripe, and
 * shard i (of k+m) is the sequence of block i of every stripe, stored on its
 * own drive as  [crc32c | block] [crc32c | block] ...  so every block is
 * verified when read.  Which drives hold the shards is chosen by rendezvous
 * hashing of the version id over the drive ids and returned as a data_layout,
 * which the caller stores in metadata: reads never depend on the current
 * drive set.  1+0 on a single drive is the same code with no parity.
 *
 * Files are named by the object's random version id and shard index, never by
 * a user's key.  Shards are written to temp files, fsynced, renamed into place
 * and their directories fsynced by data_writer_commit; only the metadata commit
 * that follows makes the version visible, so a crash in between leaves garbage
 * for GC, never a partial object.  Opening the store removes temp files.
 *
 * Reads verify every block; a missing, short or corrupt block is rebuilt from
 * parity (up to m per stripe), counted, and the version is queued for healing,
 * which rewrites the bad shards in place.  More than m lost: CAIRN_EIO, never
 * wrong bytes.
 *
 * Memory: a writer holds two stripes ((k+m) x block each, double-buffered so
 * encoding and writing overlap receiving); a reader one stripe.
 *
 * Thread-safety: data_store functions are thread-safe; a writer or reader
 * belongs to one request at a time.
 */
#ifndef CAIRN_DATA_H
#define CAIRN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"

#define DATA_MAX_SHARDS 16
#define DATA_DRIVE_ID_LEN 16          /* hex characters */
#define DATA_LAYOUT_MAX 320           /* formatted layout text, with NUL */

/* Where one version's shards are: shard i lives on drive drive_ids[i]. */
typedef struct {
    int k, m;
    uint32_t block;
    char drive_ids[DATA_MAX_SHARDS][DATA_DRIVE_ID_LEN + 1];
    /* The stored stream is sealed (encryption at rest, crypt/crypt.h): it
     * holds crypt_sealed_size(size) bytes for an object of size bytes.
     * Every call below that takes a layout and a size takes the object's
     * size and stores or reads the sealed length; only s3/ opens the
     * packages, so healing, scrubbing and rebalancing never see a key. */
    bool sealed;
} data_layout;

/* "k+m:block:id,id,...", and ":s" when sealed — the text stored in metadata. */
int data_layout_format(const data_layout *l, char *out, size_t n);
int data_layout_parse(const char *s, data_layout *out);
/* The bytes stored for an object of size bytes under layout l. */
int64_t data_stored_size(const data_layout *l, int64_t size);

typedef struct data_store data_store;
typedef struct data_writer data_writer;
typedef struct data_reader data_reader;

typedef struct {
    const char *const *drives;  /* directories; created if absent */
    int ndrives;
    const char *const *nodes;   /* or storage node URLs (http://host:port); not both */
    int nnodes;
    const char *const *node_ids; /* ids the registry knows for nodes[i] (NULL or "" =
                                    unknown): a node that is down at start is then
                                    opened as down instead of failing the open */
    const char *cluster_secret; /* signs shard API calls to nodes */
    const char *tls_ca;         /* CA bundle for https:// nodes; NULL or "" = system CAs */
    int shard_timeout_ms;       /* bound on every wait for a node; 0 = 5000 */
    int k, m;                   /* 0, 0: the default for ndrives */
    uint32_t block;             /* shard block size; 0: 256 KiB */
    bool fsync;
} data_options;

/* Opens every drive (giving each a persistent random id on first use), removes
 * stale temp files (count in *cleaned, may be NULL) and starts the heal worker.
 * CAIRN_EINVAL when k+m exceeds the drive count, CAIRN_EEXIST when a drive
 * is listed twice, CAIRN_EBUSY when another process has a local drive open
 * (each drive's lock file).  Free with data_close. */
int data_open(const data_options *opt, data_store **out, int *cleaned);
void data_close(data_store *ds);
/* The layout new objects get. */
void data_store_layout(const data_store *ds, int *k, int *m, uint32_t *block);

/* ---- writing -------------------------------------------------------------------- */

/* Receives every byte written, in order, exactly once, before it is stored; for
 * large objects on the writer's own thread.  Used to hash bodies off the
 * connection thread. */
typedef void (*data_tap)(void *ud, const void *p, size_t n);

/* Starts writing a new version.  version_id: 32 lowercase hex (it decides the
 * placement).  tap may be NULL.  The caller must finish+commit or abort. */
int data_writer_open(data_store *ds, const char *version_id, data_tap tap, void *tap_ud,
                     data_writer **w);
/* The same for an object of exactly size bytes, or -1 = unknown.  Knowing it
 * lets storage nodes be told each shard's length up front (the fast path);
 * an unknown size is streamed to them chunked (remote.c). */
int data_writer_open_size(data_store *ds, const char *version_id, int64_t size, data_tap tap,
                          void *tap_ud, data_writer **w);
/* Appends bytes.  CAIRN_ENOSPC / CAIRN_EIO only when write quorum is lost. */
int data_writer_write(data_writer *w, const void *p, size_t n);
uint64_t data_writer_size(const data_writer *w);
/* Encodes and writes what remains and stops the writer's thread: after it
 * returns 0 the tap has seen every byte.  Nothing is durable yet. */
int data_writer_finish(data_writer *w);
/* Makes the shards durable and frees w (also on error, removing them); fills
 * the layout to store in metadata. */
int data_writer_commit(data_writer *w, data_layout *out);
/* Removes the temp shards and frees w (safe at any point before commit). */
void data_writer_abort(data_writer *w);

/* ---- reading --------------------------------------------------------------------- */

/* Opens a version of size bytes for reading.  CAIRN_ENOTFOUND when no shard
 * exists at all (deleted), CAIRN_EIO when fewer than k shards can be opened. */
int data_reader_open(data_store *ds, const char *version_id, const data_layout *l, int64_t size,
                     data_reader **r);
/* Reads up to n bytes at offset; returns the count (0 at the end) or a negative
 * CAIRN_E* (CAIRN_EIO when a stripe has fewer than k good blocks). */
ssize_t data_reader_read(data_reader *r, uint64_t offset, void *buf, size_t n);
/* The same without the copy: *p points at up to n verified bytes at offset
 * inside the reader's own stripe buffer, valid until the next call on r;
 * returns the count (0 at the end, fewer than n at a stripe's end) or a
 * negative CAIRN_E*. */
ssize_t data_reader_peek(data_reader *r, uint64_t offset, const void **p, size_t n);
/* Closes; queues a heal if the reads found missing or corrupt blocks. */
void data_reader_close(data_reader *r);

/* Removes every shard of a version (missing files are not an error). */
int data_delete(data_store *ds, const char *version_id, const data_layout *l);

/* What data_check found, per shard of the layout. */
typedef struct {
    int n;                                  /* shards in the layout (k + m) */
    bool missing[DATA_MAX_SHARDS];          /* absent on its drive */
    bool unreachable[DATA_MAX_SHARDS];      /* its drive unknown, down, or an I/O error */
    bool corrupt[DATA_MAX_SHARDS];          /* a block's checksum failed, or the wrong length */
    bool lost;                              /* some stripe has fewer than k good blocks */
} data_check_result;
/* Verifies every block of every shard of a version without changing
 * anything (fsck).  0 with out filled, or CAIRN_EINVAL / CAIRN_ENOMEM. */
int data_check(data_store *ds, const char *version_id, const data_layout *l, int64_t size, data_check_result *out);

/* Verifies every block of every shard and rewrites the shards that are
 * missing or damaged; *repaired gets how many.  CAIRN_EIO when more than m
 * shards are bad in some stripe.  Idempotent. */
int data_heal(data_store *ds, const char *version_id, const data_layout *l, int64_t size,
              int *repaired);

/* Heals queue here (readers add to it); a worker thread drains it.  The check
 * callback, if set, is asked before each heal whether the version still exists
 * (so a deleted object is not resurrected as orphan shards). */
void data_set_heal_check(data_store *ds, bool (*still_exists)(void *ud, const char *version_id),
                         void *ud);
/* Waits until the heal queue is empty (tests, shutdown). */
void data_heal_drain(data_store *ds);
/* data_heal with its outcome logged and counted (heal_failures); 0 also
 * when the version is gone.  For heal workers. */
int data_heal_logged(data_store *ds, const char *version_id, const data_layout *l, int64_t size);
/* Where heals go (a durable job queue, which retries a heal that fails while
 * a node is down).  Readers only queue in memory; the heal thread hands each
 * heal to the sink, outside any lock readers take, and heals it itself when
 * there is no sink or the sink returns nonzero.  NULL removes the sink; once
 * this returns no call into the old one is in flight. */
typedef int (*data_heal_sink_fn)(void *ud, const char *version_id, const data_layout *l, int64_t size);
void data_set_heal_sink(data_store *ds, data_heal_sink_fn sink, void *ud);

/* ---- membership (gateways over storage nodes) ------------------------------------- */

/* Asks a storage node for its id (GET /v1/info, signed): CAIRN_EIO when it
 * does not answer or refuses the secret. */
int data_probe_node(const char *url, const char *secret, const char *tls_ca, int timeout_ms,
                    char id_out[DATA_DRIVE_ID_LEN + 1]);
/* Adds a storage node while running; id_out gets its id.  CAIRN_EEXIST if it
 * is already known (id_out still filled), CAIRN_EIO if it does not answer. */
int data_add_node(data_store *ds, const char *url, char id_out[DATA_DRIVE_ID_LEN + 1]);
/* Whether a drive or node takes new shards (false while draining). */
int data_set_placeable(data_store *ds, const char *id, bool placeable);
/* Appends Prometheus lines per drive or node: cairn_node_up, and the free and
 * total bytes last reported (nodes) or measured (local drives). */
void data_render_metrics(data_store *ds, buf_t *out);
/* Health-checks every drive or node, recording which are up (new writes go
 * to those); cb (may be NULL) hears each result.  Returns how many are up. */
int data_check_drives(data_store *ds, void (*cb)(void *ud, const char *id, const char *where, bool up), void *ud);
/* Where a version's shards belong now: rendezvous placement over placeable
 * drives, keeping every shard already on a wanted drive.  Returns true (and
 * fills want) when some shard should move. */
bool data_desired_layout(data_store *ds, const char *version_id, const data_layout *cur, data_layout *want);
/* Writes the shards whose drive differs between cur and want onto their new
 * drives (rebuilt from any k good blocks per stripe); *moved gets how many.
 * The caller then points metadata at want and removes the old copies with
 * data_delete_moved(ds, vid, cur, want) — or, if metadata moved on, removes
 * the new ones with data_delete_moved(ds, vid, want, cur). */
int data_relocate(data_store *ds, const char *version_id, int64_t size, const data_layout *cur,
                  const data_layout *want, int *moved);
int data_delete_moved(data_store *ds, const char *version_id, const data_layout *from, const data_layout *to);

typedef struct {
    uint64_t corrupt_blocks;    /* blocks whose checksum failed or that were short */
    uint64_t missing_shards;    /* shard files absent when a reader opened them */
    uint64_t degraded_reads;    /* readers that needed parity */
    uint64_t healed_shards;     /* shards rewritten by healing */
    uint64_t heal_failures;
    uint64_t heals_dropped;     /* queue full */
} data_stats;
void data_get_stats(data_store *ds, data_stats *out);

/* Calls cb for every committed shard on every drive, local or storage node
 * (nodes are paged through their listing call): its drive, version id, shard
 * index and age in milliseconds (a duration on the drive's own clock).  cb returns nonzero to stop (and that is
 * returned).  Drives that cannot be listed are skipped and counted in
 * *unreachable.  For garbage collection. */
int data_walk_shards(data_store *ds,
                     int (*cb)(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms),
                     void *ud, int *unreachable);
/* Removes one shard of a version from a drive (GC). */
int data_remove_shard(data_store *ds, const char *drive_id, const char *version_id, int index);

/* CRC-32C (Castagnoli, the x-amz-checksum-crc32c algorithm) of n bytes,
 * continuing from crc (0 to start), computed by ISA-L.  Thread-safe. */
uint32_t data_crc32c(uint32_t crc, const void *p, size_t n);

/* ---- health -------------------------------------------------------------------------- */

/* Creates, writes, fsyncs and removes a probe file on every drive. */
int data_check_writable(data_store *ds);
/* The smallest free space among the drives. */
int data_free_bytes(data_store *ds, int64_t *free_bytes);
/* Temp files present across drives (tests). */
int data_tmp_count(data_store *ds);

#endif
