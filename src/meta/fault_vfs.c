/*
 * fault_vfs.c — the metadata database's I/O as fault-injection sites (the
 * fault build only; see src/core/fault.c).
 *
 * A SQLite VFS that wraps the default one and, before each open, write, sync
 * and delete, asks fault_inject() whether this call should fail (or the
 * process abort there): a failed write or sync comes back to SQLite as the
 * I/O error a real disk would give (SQLITE_FULL for ENOSPC), so the tests
 * drive SQLite's own error handling and ours above it.  Everything else
 * passes straight through.  Installed as the default VFS by meta_open.
 */
#include "meta/sqlite_int.h"

#ifdef CAIRN_FAULTS

#include <errno.h>
#include <pthread.h>
#include <string.h>

typedef struct {
    sqlite3_file base;         /* pMethods = the shim's methods */
    sqlite3_file *real;        /* the wrapped file, allocated right after us */
} shim_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim_vfs;
static sqlite3_io_methods shim_methods;

#define REAL(f) (((shim_file *)(f))->real)

static int io_error(int e, int code) { return e == ENOSPC ? SQLITE_FULL : code; }

static int x_close(sqlite3_file *f) {
    int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
    f->pMethods = NULL;
    return rc;
}
static int x_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off) { return REAL(f)->pMethods->xRead(REAL(f), p, n, off); }
static int x_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) {
    int e = fault_inject(FAULT_META_WRITE);
    if (e) return io_error(e, SQLITE_IOERR_WRITE);
    return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}
static int x_truncate(sqlite3_file *f, sqlite3_int64 size) { return REAL(f)->pMethods->xTruncate(REAL(f), size); }
static int x_sync(sqlite3_file *f, int flags) {
    int e = fault_inject(FAULT_META_FSYNC);
    if (e) return io_error(e, SQLITE_IOERR_FSYNC);
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int x_file_size(sqlite3_file *f, sqlite3_int64 *size) { return REAL(f)->pMethods->xFileSize(REAL(f), size); }
static int x_lock(sqlite3_file *f, int level) { return REAL(f)->pMethods->xLock(REAL(f), level); }
static int x_unlock(sqlite3_file *f, int level) { return REAL(f)->pMethods->xUnlock(REAL(f), level); }
static int x_check_reserved(sqlite3_file *f, int *out) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out); }
static int x_file_control(sqlite3_file *f, int op, void *arg) { return REAL(f)->pMethods->xFileControl(REAL(f), op, arg); }
static int x_sector_size(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int x_device_chars(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int x_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp) {
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int x_shm_lock(sqlite3_file *f, int off, int n, int flags) { return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags); }
static void x_shm_barrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int x_shm_unmap(sqlite3_file *f, int del) { return REAL(f)->pMethods->xShmUnmap(REAL(f), del); }
static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) { return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp); }
static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) { return REAL(f)->pMethods->xUnfetch(REAL(f), off, p); }

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags) {
    (void)vfs;
    shim_file *s = (shim_file *)f;
    s->base.pMethods = NULL;
    int e = fault_inject(FAULT_META_OPEN);
    if (e) return SQLITE_CANTOPEN;
    s->real = (sqlite3_file *)(s + 1);
    int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out_flags);
    if (s->real->pMethods) {
        /* The shim mirrors the real file's method version (WAL needs 2+). */
        shim_methods.iVersion = s->real->pMethods->iVersion;
        s->base.pMethods = &shim_methods;
    }
    return rc;
}
static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
    (void)vfs;
    int e = fault_inject(FAULT_META_UNLINK);
    if (e) return io_error(e, SQLITE_IOERR_DELETE);
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) { (void)vfs; return real_vfs->xAccess(real_vfs, name, flags, out); }
static int v_full(sqlite3_vfs *vfs, const char *name, int n, char *out) { (void)vfs; return real_vfs->xFullPathname(real_vfs, name, n, out); }
static void *v_dlopen(sqlite3_vfs *vfs, const char *name) { (void)vfs; return real_vfs->xDlOpen(real_vfs, name); }
static void v_dlerror(sqlite3_vfs *vfs, int n, char *msg) { (void)vfs; real_vfs->xDlError(real_vfs, n, msg); }
static void (*v_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void) { (void)vfs; return real_vfs->xDlSym(real_vfs, h, sym); }
static void v_dlclose(sqlite3_vfs *vfs, void *h) { (void)vfs; real_vfs->xDlClose(real_vfs, h); }
static int v_random(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; return real_vfs->xRandomness(real_vfs, n, out); }
static int v_sleep(sqlite3_vfs *vfs, int us) { (void)vfs; return real_vfs->xSleep(real_vfs, us); }
static int v_time(sqlite3_vfs *vfs, double *t) { (void)vfs; return real_vfs->xCurrentTime(real_vfs, t); }
static int v_last_error(sqlite3_vfs *vfs, int n, char *s) { (void)vfs; return real_vfs->xGetLastError(real_vfs, n, s); }
static int v_time64(sqlite3_vfs *vfs, sqlite3_int64 *t) { (void)vfs; return real_vfs->xCurrentTimeInt64(real_vfs, t); }

static void install(void) {
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs) return;
    shim_methods = (sqlite3_io_methods){
        3, x_close, x_read, x_write, x_truncate, x_sync, x_file_size, x_lock, x_unlock, x_check_reserved,
        x_file_control, x_sector_size, x_device_chars, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap,
        x_fetch, x_unfetch,
    };
    shim_vfs = (sqlite3_vfs){
        .iVersion = 2, .szOsFile = (int)sizeof(shim_file) + real_vfs->szOsFile, .mxPathname = real_vfs->mxPathname,
        .zName = "cairn-fault", .xOpen = v_open, .xDelete = v_delete, .xAccess = v_access,
        .xFullPathname = v_full, .xDlOpen = v_dlopen, .xDlError = v_dlerror, .xDlSym = v_dlsym,
        .xDlClose = v_dlclose, .xRandomness = v_random, .xSleep = v_sleep, .xCurrentTime = v_time,
        .xGetLastError = v_last_error, .xCurrentTimeInt64 = v_time64,
    };
    sqlite3_vfs_register(&shim_vfs, 1);
}

void meta_fault_vfs_install(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install);
}

#else

void meta_fault_vfs_install(void) {}

#endif
