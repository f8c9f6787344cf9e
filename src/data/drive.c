/*
 * drive.c — a local drive directory (see drive.h):
 *   drive-id                    16 hex chars, random, written on first open
 *   lock                        held (flock) by the one process using the drive
 *   objects/<vv>/<name>         committed shards (vv = first 2 hex of the name)
 *   tmp/<random>                shards being written
 *
 * Opening a drive takes its lock before anything else: opening also empties
 * tmp/, which would delete another process's shards in flight, so a second
 * process on the same drive must fail instead (CAIRN_EBUSY).
 */
#include "data/drive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "data/data.h"

#define WRITEBACK_WINDOW (8u * 1024 * 1024)

typedef struct {
    drive base;
    char path[PATH_MAX - 160];
    char id[DATA_DRIVE_ID_LEN + 1];
    bool fsync;
    int lock_fd;                /* the drive's lock, held while open */
} local_drive;

typedef struct {
    shard_out base;
    int fd;
    uint64_t size, flushed;
    char name[48];
    char tmp[PATH_MAX];
} local_out;

typedef struct {
    shard_in base;
    int fd;
    int64_t size;
} local_in;

#define LD(x) ((local_drive *)(x))
#define LO(x) ((local_out *)(x))
#define LI(x) ((local_in *)(x))

bool drive_shard_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n < 34 || n > 35 || name[32] != '.') return false;
    for (int i = 0; i < 32; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
    const char *idx = name + 33;
    if (!(idx[0] >= '0' && idx[0] <= '9')) return false;
    if (idx[1] && !(idx[0] == '1' && idx[1] >= '0' && idx[1] <= '5')) return false; /* at most 2 digits */
    return true;
}

static int err_from_errno(int e) { return e == ENOSPC || e == EDQUOT ? CAIRN_ENOSPC : CAIRN_EIO; }

/* The durability-deciding calls, each a fault-injection site (core.h): in the
 * fault build a test can make any one of them fail or crash the process;
 * otherwise these are the plain system calls. */
static int f_open(const char *path, int flags, mode_t mode) {
    int e = fault_inject(FAULT_DATA_OPEN);
    if (e) {
        errno = e;
        return -1;
    }
    return open(path, flags, mode);
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    int e = fault_inject(FAULT_DATA_WRITE);
    if (e) {
        errno = e;
        return -1;
    }
    return pwritev(fd, iov, n, off);
}

static int f_sync(int fd, bool data_only) {
    int e = fault_inject(FAULT_DATA_FSYNC);
    if (e) {
        errno = e;
        return -1;
    }
    return data_only ? fdatasync(fd) : fsync(fd);
}

static int f_rename(const char *from, const char *to) {
    int e = fault_inject(FAULT_DATA_RENAME);
    if (e) {
        errno = e;
        return -1;
    }
    return rename(from, to);
}

static int f_unlink(const char *path) {
    int e = fault_inject(FAULT_DATA_UNLINK);
    if (e) {
        errno = e;
        return -1;
    }
    return unlink(path);
}

static int mkdir_p(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return CAIRN_EINVAL;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST) return CAIRN_EIO;
        *p = '/';
    }
    if (mkdir(buf, 0750) != 0 && errno != EEXIST) return CAIRN_EIO;
    return 0;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return CAIRN_EIO;
    int rc = f_sync(fd, false) == 0 ? 0 : CAIRN_EIO;
    close(fd);
    return rc;
}

static int clean_tmp(const char *tmp) {
    DIR *d = opendir(tmp);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && unlinkat(dirfd(d), e->d_name, 0) == 0) n++;
    closedir(d);
    return n;
}

/* Writes drive-id from the id in memory (atomically, synced). */
static int write_id(local_drive *d) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/drive-id", d->path);
    char line[DATA_DRIVE_ID_LEN + 1];
    memcpy(line, d->id, DATA_DRIVE_ID_LEN);
    line[DATA_DRIVE_ID_LEN] = '\n';
    return file_write_atomic(path, line, sizeof line, 0640, true);
}

/* A drive whose contents vanished while we run (a wiped or replaced disk) is
 * rebuilt in place: directories and, crucially, its id, or everything healed
 * onto it would belong to no drive after a restart. */
static int revive(local_drive *d) {
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/tmp", d->path);
    if (mkdir_p(sub) != 0) return CAIRN_EIO;
    snprintf(sub, sizeof sub, "%s/objects", d->path);
    if (mkdir_p(sub) != 0) return CAIRN_EIO;
    char id[PATH_MAX];
    snprintf(id, sizeof id, "%s/drive-id", d->path);
    if (access(id, F_OK) != 0 && write_id(d) != 0) return CAIRN_EIO;
    log_write(LOG_WARN, NULL, "drive directories were missing; recreated them", "drive", d->path, "drive_id", d->id, NULL);
    return 0;
}

static int load_id(local_drive *d) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/drive-id", d->path);
    char buf[64] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r < DATA_DRIVE_ID_LEN) return CAIRN_EIO;
        for (int i = 0; i < DATA_DRIVE_ID_LEN; i++)
            if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f'))) return CAIRN_EIO;
        memcpy(d->id, buf, DATA_DRIVE_ID_LEN);
        d->id[DATA_DRIVE_ID_LEN] = '\0';
        return 0;
    }
    if (errno != ENOENT) return CAIRN_EIO;
    rand_hex_id(d->id, DATA_DRIVE_ID_LEN / 2);
    return write_id(d);
}

static const drive_ops local_ops;

int drive_local_open(const char *path, bool do_fsync, drive **out, int *cleaned) {
    local_drive *d = calloc(1, sizeof *d);
    if (!d) return CAIRN_ENOMEM;
    d->base.ops = &local_ops;
    d->fsync = do_fsync;
    if (strlen(path) >= sizeof d->path) {
        free(d);
        return CAIRN_EINVAL;
    }
    snprintf(d->path, sizeof d->path, "%s", path);
    d->lock_fd = -1;
    char sub[PATH_MAX];
    int rc;
    snprintf(sub, sizeof sub, "%s/objects", path);
    if ((rc = mkdir_p(sub)) == 0) {
        char lock[PATH_MAX];
        snprintf(lock, sizeof lock, "%s/lock", path);
        long holder = 0;
        rc = file_lock_exclusive(lock, &d->lock_fd, &holder);
        if (rc == CAIRN_EBUSY) {
            char pid[24];
            log_write(LOG_ERROR, NULL, "drive is in use by another process", "drive", path, "pid",
                      log_int(pid, holder), NULL);
        }
    }
    if (rc == 0) {
        snprintf(sub, sizeof sub, "%s/tmp", path);
        rc = mkdir_p(sub);
    }
    if (rc == 0) {
        int n = clean_tmp(sub);
        if (cleaned) *cleaned = n;
        rc = load_id(d);
    }
    if (rc != 0) {
        if (d->lock_fd >= 0) close(d->lock_fd);
        free(d);
        return rc;
    }
    *out = &d->base;
    return 0;
}

static void local_close(drive *d) {
    close(LD(d)->lock_fd); /* held by every open drive */
    free(LD(d));
}
static const char *local_id(const drive *d) { return ((const local_drive *)d)->id; }
static const char *local_path(const drive *d) { return ((const local_drive *)d)->path; }

static void shard_path(const local_drive *d, const char *name, char *dir, size_t dn, char *path, size_t pn) {
    snprintf(dir, dn, "%s/objects/%.2s", d->path, name);
    snprintf(path, pn, "%s/%s", dir, name);
}

static int local_create(drive *dd, const char *name, uint64_t size, shard_out **out) {
    (void)size;
    local_drive *d = LD(dd);
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    local_out *o = calloc(1, sizeof *o);
    if (!o) return CAIRN_ENOMEM;
    o->base.d = dd;
    snprintf(o->name, sizeof o->name, "%s", name);
    char id[33];
    rand_hex_id(id, 16);
    snprintf(o->tmp, sizeof o->tmp, "%s/tmp/%s", d->path, id);
    o->fd = f_open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (o->fd < 0) {
        int e = errno;
        if (e == ENOENT && revive(d) == 0) o->fd = f_open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (o->fd < 0) {
            free(o);
            return err_from_errno(e);
        }
    }
    *out = &o->base;
    return 0;
}

static int local_append(shard_out *oo, const struct iovec *iov_in, int iovcnt) {
    local_out *o = LO(oo);
    struct iovec iov[8];
    if (iovcnt > 8) return CAIRN_EINVAL;
    memcpy(iov, iov_in, sizeof *iov * (size_t)iovcnt);
    size_t want = 0;
    for (int i = 0; i < iovcnt; i++) want += iov[i].iov_len;
    size_t done = 0;
    int first = 0;
    while (done < want) {
        ssize_t r = f_pwritev(o->fd, iov + first, iovcnt - first, (off_t)(o->size + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return err_from_errno(r < 0 ? errno : EIO);
        done += (size_t)r;
        drive_iov_advance(iov, iovcnt, &first, (size_t)r);
    }
    o->size += want;
    return 0;
}

static void local_writeback(shard_out *oo) {
    local_out *o = LO(oo);
    if (!LD(oo->d)->fsync || o->size - o->flushed < WRITEBACK_WINDOW) return;
    sync_file_range(o->fd, (off_t)o->flushed, (off_t)(o->size - o->flushed), SYNC_FILE_RANGE_WRITE);
    o->flushed = o->size;
}

static void local_abort(shard_out *oo) {
    local_out *o = LO(oo);
    close(o->fd);
    /* A temp file that cannot go now goes at the next start (tmp/ is emptied). */
    f_unlink(o->tmp);
    free(o);
}

static int local_commit(shard_out *oo) {
    local_out *o = LO(oo);
    local_drive *d = LD(oo->d);
    char dir[PATH_MAX], path[PATH_MAX];
    shard_path(d, o->name, dir, sizeof dir, path, sizeof path);
    int rc = 0;
    if (d->fsync && f_sync(o->fd, true) != 0) rc = err_from_errno(errno);
    if (rc == 0 && mkdir(dir, 0750) != 0 && errno != EEXIST) {
        /* objects/ itself may be gone with a wiped disk */
        rc = revive(d) == 0 && mkdir_p(dir) == 0 ? 0 : CAIRN_EIO;
    }
    if (rc == 0 && f_rename(o->tmp, path) != 0) rc = err_from_errno(errno);
    if (rc == 0 && d->fsync && fsync_dir(dir) != 0) {
        f_unlink(path);
        rc = CAIRN_EIO;
    }
    close(o->fd);
    if (rc != 0) f_unlink(o->tmp);
    free(o);
    return rc;
}

static int local_open(drive *dd, const char *name, shard_in **out) {
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    char dir[PATH_MAX], path[PATH_MAX];
    shard_path(LD(dd), name, dir, sizeof dir, path, sizeof path);
    int fd = f_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? CAIRN_ENOTFOUND : CAIRN_EIO;
    struct stat st;
    local_in *in = malloc(sizeof *in);
    if (!in || fstat(fd, &st) != 0) {
        free(in);
        close(fd);
        return in ? CAIRN_EIO : CAIRN_ENOMEM;
    }
    in->base.d = dd;
    in->fd = fd;
    in->size = st.st_size;
    *out = &in->base;
    return 0;
}

static ssize_t local_preadv(shard_in *in, const struct iovec *iov, int iovcnt, uint64_t off) {
    ssize_t r;
    do r = preadv(LI(in)->fd, iov, iovcnt, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? CAIRN_EIO : r;
}

static int64_t local_shard_size(shard_in *in) { return LI(in)->size; }

static void local_close_shard(shard_in *in) {
    close(LI(in)->fd);
    free(LI(in));
}

static int local_remove(drive *dd, const char *name) {
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    char dir[PATH_MAX], path[PATH_MAX];
    shard_path(LD(dd), name, dir, sizeof dir, path, sizeof path);
    if (f_unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR) return CAIRN_EIO;
    return 0;
}

static int local_check_writable(drive *dd) {
    char path[PATH_MAX], id[17];
    rand_hex_id(id, 8);
    snprintf(path, sizeof path, "%s/tmp/probe-%s", LD(dd)->path, id);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) return err_from_errno(errno);
    int rc = write(fd, "probe", 5) == 5 && fsync(fd) == 0 ? 0 : CAIRN_EIO;
    close(fd);
    unlink(path);
    return rc;
}

static int local_free_bytes(drive *dd, int64_t *free_bytes, int64_t *total_bytes) {
    struct statvfs sv;
    if (statvfs(LD(dd)->path, &sv) != 0) return CAIRN_EIO;
    *free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    if (total_bytes) *total_bytes = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize;
    return 0;
}

static int local_tmp_count(drive *dd) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp", LD(dd)->path);
    DIR *dir = opendir(path);
    if (!dir) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.') n++;
    closedir(dir);
    return n;
}

static int drive_local_walk_all(drive *d, drive_entry_fn cb, void *ud);

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const drive_entry *)a)->name, ((const drive_entry *)b)->name);
}

/* The shards of one fan-out directory (its two hex digits: fan) named after
 * `after`, sorted.  A file in a directory its name does not belong to is not
 * a shard: nothing reads or removes it there. */
static int read_fanout(const char *dir, const char *fan, const char *after, drive_entry **out, size_t *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    /* Missing: no shard was ever written there.  Anything else (a file in
     * its place, EIO, EACCES) means shards may be there unseen: the drive
     * cannot be listed, rather than listed as having none. */
    if (!d) return errno == ENOENT ? 0 : CAIRN_EIO;
    size_t cap = 0;
    int64_t now = time_now_ms();
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!drive_shard_name_valid(e->d_name) || strncmp(e->d_name, fan, 2) != 0 || strcmp(e->d_name, after) <= 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) != 0) continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            drive_entry *g = realloc(*out, nc * sizeof *g);
            if (!g) {
                closedir(d);
                free(*out);
                *out = NULL;
                *n = 0;
                return CAIRN_ENOMEM;
            }
            *out = g;
            cap = nc;
        }
        snprintf((*out)[*n].name, sizeof (*out)[*n].name, "%s", e->d_name);
        (*out)[*n].age_ms = now - ((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
        (*n)++;
    }
    closedir(d);
    if (*n > 1) qsort(*out, *n, sizeof **out, cmp_entry);
    return 0;
}

int drive_local_list(drive *dd, const char *after, long limit, drive_entry_fn cb, void *ud) {
    static const char hex[] = "0123456789abcdef";
    if (dd->ops->walk != drive_local_walk_all) return CAIRN_EINVAL;
    int first = 0;
    if (after && after[0]) {
        const char *a = strchr(hex, after[0]), *b = after[1] ? strchr(hex, after[1]) : NULL;
        if (!a || !b) return CAIRN_EINVAL;
        first = (int)(a - hex) * 16 + (int)(b - hex);
    }
    long sent = 0;
    for (int i = first; i < 256 && sent < limit; i++) {
        char dir[PATH_MAX];
        char fan[3] = {hex[i / 16], hex[i % 16], '\0'};
        snprintf(dir, sizeof dir, "%s/objects/%s", LD(dd)->path, fan);
        drive_entry *v;
        size_t n;
        int rc = read_fanout(dir, fan, after ? after : "", &v, &n);
        for (size_t j = 0; rc == 0 && j < n && sent < limit; j++, sent++) rc = cb(ud, &v[j]);
        free(v);
        if (rc != 0) return rc;
    }
    return 0;
}

static int drive_local_walk_all(drive *d, drive_entry_fn cb, void *ud) {
    return drive_local_list(d, "", LONG_MAX, cb, ud);
}

static const drive_ops local_ops = {
    local_close, local_id, local_path, local_create, local_append, local_writeback, local_commit,
    local_abort, local_open, local_preadv, local_shard_size, local_close_shard, local_remove,
    local_check_writable, local_free_bytes, local_tmp_count, drive_local_walk_all,
};

/* ---- dispatch ----------------------------------------------------------------------- */


void drive_close(drive *d) { if (d) d->ops->close(d); }
const char *drive_id(const drive *d) { return d->ops->id(d); }
const char *drive_path(const drive *d) { return d->ops->path(d); }
int drive_create(drive *d, const char *name, uint64_t size, shard_out **out) { return d->ops->create(d, name, size, out); }
int drive_append(shard_out *o, const struct iovec *iov, int n) { return o->d->ops->append(o, iov, n); }
void drive_writeback(shard_out *o) { o->d->ops->writeback(o); }
int drive_commit(shard_out *o) { return o->d->ops->commit(o); }
void drive_abort(shard_out *o) { if (o) o->d->ops->abort(o); }
int drive_open(drive *d, const char *name, shard_in **out) { return d->ops->open(d, name, out); }
ssize_t drive_preadv(shard_in *in, const struct iovec *iov, int n, uint64_t off) { return in->d->ops->preadv(in, iov, n, off); }
int64_t drive_shard_size(shard_in *in) { return in->d->ops->shard_size(in); }
void drive_close_shard(shard_in *in) { if (in) in->d->ops->close_shard(in); }
int drive_remove(drive *d, const char *name) { return d->ops->remove(d, name); }
int drive_check_writable(drive *d) { return d->ops->check_writable(d); }
int drive_free_bytes(drive *d, int64_t *f, int64_t *t) { return d->ops->free_bytes(d, f, t); }
int drive_tmp_count(drive *d) { return d->ops->tmp_count(d); }
int drive_walk(drive *d, drive_entry_fn cb, void *ud) { return d->ops->walk(d, cb, ud); }
