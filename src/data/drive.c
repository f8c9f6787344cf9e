/*
 * drive.c — a local drive directory (see drive.h):
 *   drive-id                    16 hex chars, random, written on first open
 *   objects/<vv>/<name>         committed shards (vv = first 2 hex of the name)
 *   tmp/<random>                shards being written
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

struct drive {
    char path[PATH_MAX - 160];
    char id[DATA_DRIVE_ID_LEN + 1];
    bool fsync;
};

struct shard_out {
    drive *d;
    int fd;
    uint64_t size, flushed;
    char name[48];
    char tmp[PATH_MAX];
};

struct shard_in {
    int fd;
    int64_t size;
};

bool drive_shard_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n < 34 || n > 35 || name[32] != '.') return false;
    for (int i = 0; i < 32; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
    const char *idx = name + 33;
    if (!(idx[0] >= '0' && idx[0] <= '9')) return false;
    if (idx[1] && !(idx[0] == '1' && idx[1] >= '0' && idx[1] <= '5' && !idx[2])) return false;
    return true;
}

static int err_from_errno(int e) { return e == ENOSPC || e == EDQUOT ? CAIRN_ENOSPC : CAIRN_EIO; }

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
    int rc = fsync(fd) == 0 ? 0 : CAIRN_EIO;
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

static int load_id(drive *d) {
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
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/drive-id.tmp", d->path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return CAIRN_EIO;
    char line[DATA_DRIVE_ID_LEN + 1];
    memcpy(line, d->id, DATA_DRIVE_ID_LEN);
    line[DATA_DRIVE_ID_LEN] = '\n';
    bool ok = write(fd, line, sizeof line) == (ssize_t)sizeof line && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) return CAIRN_EIO;
    return fsync_dir(d->path);
}

int drive_local_open(const char *path, bool do_fsync, drive **out, int *cleaned) {
    drive *d = calloc(1, sizeof *d);
    if (!d) return CAIRN_ENOMEM;
    d->fsync = do_fsync;
    if (strlen(path) >= sizeof d->path) {
        free(d);
        return CAIRN_EINVAL;
    }
    snprintf(d->path, sizeof d->path, "%s", path);
    char sub[PATH_MAX];
    int rc;
    snprintf(sub, sizeof sub, "%s/objects", path);
    if ((rc = mkdir_p(sub)) == 0) {
        snprintf(sub, sizeof sub, "%s/tmp", path);
        rc = mkdir_p(sub);
    }
    if (rc == 0) {
        int n = clean_tmp(sub);
        if (cleaned) *cleaned = n;
        rc = load_id(d);
    }
    if (rc != 0) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void drive_close(drive *d) { free(d); }
const char *drive_id(const drive *d) { return d->id; }
const char *drive_path(const drive *d) { return d->path; }

static void shard_path(const drive *d, const char *name, char *dir, size_t dn, char *path, size_t pn) {
    snprintf(dir, dn, "%s/objects/%.2s", d->path, name);
    snprintf(path, pn, "%s/%s", dir, name);
}

int drive_create(drive *d, const char *name, shard_out **out) {
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    shard_out *o = calloc(1, sizeof *o);
    if (!o) return CAIRN_ENOMEM;
    o->d = d;
    snprintf(o->name, sizeof o->name, "%s", name);
    char id[33];
    rand_hex_id(id, 16);
    snprintf(o->tmp, sizeof o->tmp, "%s/tmp/%s", d->path, id);
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (o->fd < 0) {
        int e = errno;
        /* A drive whose directories vanished (replaced disk) is recreated. */
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/tmp", d->path);
        if (e == ENOENT && mkdir_p(sub) == 0) o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (o->fd < 0) {
            free(o);
            return err_from_errno(e);
        }
    }
    *out = o;
    return 0;
}

int drive_append(shard_out *o, const struct iovec *iov_in, int iovcnt) {
    struct iovec iov[8];
    if (iovcnt > 8) return CAIRN_EINVAL;
    memcpy(iov, iov_in, sizeof *iov * (size_t)iovcnt);
    size_t want = 0;
    for (int i = 0; i < iovcnt; i++) want += iov[i].iov_len;
    size_t done = 0;
    int first = 0;
    while (done < want) {
        ssize_t r = pwritev(o->fd, iov + first, iovcnt - first, (off_t)(o->size + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return err_from_errno(r < 0 ? errno : EIO);
        done += (size_t)r;
        size_t adv = (size_t)r;
        while (adv && first < iovcnt) {
            size_t take = adv < iov[first].iov_len ? adv : iov[first].iov_len;
            iov[first].iov_base = (char *)iov[first].iov_base + take;
            iov[first].iov_len -= take;
            adv -= take;
            if (iov[first].iov_len == 0) first++;
        }
    }
    o->size += want;
    return 0;
}

void drive_writeback(shard_out *o) {
    if (!o->d->fsync || o->size - o->flushed < WRITEBACK_WINDOW) return;
    sync_file_range(o->fd, (off_t)o->flushed, (off_t)(o->size - o->flushed), SYNC_FILE_RANGE_WRITE);
    o->flushed = o->size;
}

void drive_abort(shard_out *o) {
    if (!o) return;
    close(o->fd);
    unlink(o->tmp);
    free(o);
}

int drive_commit(shard_out *o) {
    char dir[PATH_MAX], path[PATH_MAX];
    shard_path(o->d, o->name, dir, sizeof dir, path, sizeof path);
    int rc = 0;
    if (o->d->fsync && fdatasync(o->fd) != 0) rc = err_from_errno(errno);
    if (rc == 0 && mkdir(dir, 0750) != 0 && errno != EEXIST) {
        /* objects/ itself may be gone with a replaced disk */
        rc = mkdir_p(dir) == 0 ? 0 : CAIRN_EIO;
    }
    if (rc == 0 && rename(o->tmp, path) != 0) rc = err_from_errno(errno);
    if (rc == 0 && o->d->fsync && fsync_dir(dir) != 0) {
        unlink(path);
        rc = CAIRN_EIO;
    }
    close(o->fd);
    if (rc != 0) unlink(o->tmp);
    free(o);
    return rc;
}

int drive_open(drive *d, const char *name, shard_in **out) {
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    char dir[PATH_MAX], path[PATH_MAX];
    shard_path(d, name, dir, sizeof dir, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? CAIRN_ENOTFOUND : CAIRN_EIO;
    struct stat st;
    shard_in *in = malloc(sizeof *in);
    if (!in || fstat(fd, &st) != 0) {
        free(in);
        close(fd);
        return in ? CAIRN_EIO : CAIRN_ENOMEM;
    }
    in->fd = fd;
    in->size = st.st_size;
    *out = in;
    return 0;
}

ssize_t drive_preadv(shard_in *in, const struct iovec *iov, int iovcnt, uint64_t off) {
    ssize_t r;
    do r = preadv(in->fd, iov, iovcnt, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? CAIRN_EIO : r;
}

int64_t drive_shard_size(shard_in *in) { return in->size; }

void drive_close_shard(shard_in *in) {
    if (!in) return;
    close(in->fd);
    free(in);
}

int drive_remove(drive *d, const char *name) {
    if (!drive_shard_name_valid(name)) return CAIRN_EINVAL;
    char dir[PATH_MAX], path[PATH_MAX];
    shard_path(d, name, dir, sizeof dir, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR) return CAIRN_EIO;
    return 0;
}

int drive_check_writable(drive *d) {
    char path[PATH_MAX], id[17];
    rand_hex_id(id, 8);
    snprintf(path, sizeof path, "%s/tmp/probe-%s", d->path, id);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) return err_from_errno(errno);
    int rc = write(fd, "probe", 5) == 5 && fsync(fd) == 0 ? 0 : CAIRN_EIO;
    close(fd);
    unlink(path);
    return rc;
}

int drive_free_bytes(drive *d, int64_t *free_bytes, int64_t *total_bytes) {
    struct statvfs sv;
    if (statvfs(d->path, &sv) != 0) return CAIRN_EIO;
    *free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    if (total_bytes) *total_bytes = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize;
    return 0;
}

int drive_tmp_count(drive *d) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp", d->path);
    DIR *dd = opendir(path);
    if (!dd) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dd)))
        if (e->d_name[0] != '.') n++;
    closedir(dd);
    return n;
}
