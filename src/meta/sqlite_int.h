/*
 * sqlite_int.h — private glue between the SQLite backend (sqlite.c) and the
 * schema migrations (migrations.c).  Not part of the meta interface: only
 * files in src/meta include it.
 *
 * Migrations run DDL on the single writer connection, so they borrow it
 * through this lock/unlock pair exactly like the write calls in sqlite.c do;
 * that keeps every write in the process serialized on one mutex.
 */
#ifndef CAIRN_META_SQLITE_INT_H
#define CAIRN_META_SQLITE_INT_H

#include <sqlite3.h>

#include "meta/meta.h"

/* Locks the writer mutex and returns the writer connection (never NULL). */
sqlite3 *meta_sqlite_writer_lock(meta_store *ms);
void meta_sqlite_writer_unlock(meta_store *ms);

/* Migrates up to the latest version, refusing (CAIRN_EDB, logged) when the
 * database carries a newer schema than this binary knows: opening with an
 * old binary must never run down-migrations and drop data.  (migrations.c) */
int meta_migrate_up_to_latest(meta_store *ms);

/* Makes the fault-injection VFS the default (fault build; else a no-op).
 * (fault_vfs.c) */
void meta_fault_vfs_install(void);

#endif
