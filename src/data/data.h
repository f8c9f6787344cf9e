/*
 * data — where object bytes live.  For now one local drive directory:
 *
 *   <drive>/objects/<vv>/<version_id>   committed object data (vv = first 2 hex)
 *   <drive>/tmp/<random>                 data being written
 *
 * Files are named by the object's random version id, never by the user's key,
 * so no user input becomes a path.  A writer streams into a temp file; commit
 * fsyncs it, renames it into place and fsyncs the directory, so a committed
 * file survives a crash.  Only the metadata commit that follows makes it
 * visible; a crash in between leaves an unreferenced file for GC.  Opening the
 * store removes leftover temp files (they belong to writes that never
 * committed).  Memory used is O(1) in the object size.
 *
 * Thread-safety: data_store functions are thread-safe; a data_writer belongs
 * to one request at a time.
 */
#ifndef CAIRN_DATA_H
#define CAIRN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct data_store data_store;
typedef struct data_writer data_writer;

/* Opens (creating) the drive at dir; removes stale temp files and reports how
 * many in *cleaned (may be NULL).  Caller frees with data_close. */
int data_open(const char *dir, bool fsync, data_store **out, int *cleaned);
void data_close(data_store *ds);

/* Starts writing a new object; caller must commit or abort, which frees w. */
int data_writer_open(data_store *ds, data_writer **w);
/* Appends bytes; CAIRN_ENOSPC on a full disk, CAIRN_EIO otherwise. */
int data_writer_write(data_writer *w, const void *p, size_t n);
uint64_t data_writer_size(const data_writer *w);
/* Opens the bytes written so far for reading (e.g. to hash them on another
 * thread while writing goes on); the caller closes the fd. */
int data_writer_open_reader(data_writer *w, int *fd);
/* Makes the bytes durable under version_id and frees w (also on error, after
 * removing the temp file). */
int data_writer_commit(data_writer *w, const char *version_id);
/* Removes the temp file and frees w. */
void data_writer_abort(data_writer *w);

/* Opens committed data for reading: fd (caller closes) and size. */
int data_open_read(data_store *ds, const char *version_id, int *fd, int64_t *size);
/* Removes committed data; a missing file is not an error. */
int data_delete(data_store *ds, const char *version_id);

/* Readiness: creates, writes, fsyncs and removes a probe file. */
int data_check_writable(data_store *ds);
int data_free_bytes(data_store *ds, int64_t *free_bytes);
/* Number of temp files currently present (tests and metrics). */
int data_tmp_count(data_store *ds);

#endif
