/*
 * local.c — the single-directory drive described in data.h.
 */
#include "data/data.h"

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

struct data_store {
    char dir[PATH_MAX];
    char objects[PATH_MAX];
    char tmp[PATH_MAX];
    bool fsync;
};

/* Writeback is started every this many bytes, so the fdatasync at commit
 * finds little left to flush (for 64 MiB objects it otherwise waits for all). */
#define WRITEBACK_WINDOW (8u * 1024 * 1024)

struct data_writer {
    data_store *ds;
    int fd;
    uint64_t size;
    uint64_t flushed;   /* bytes handed to writeback so far */
    char tmp_path[PATH_MAX];
};

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

static int err_from_errno(int e) { return e == ENOSPC || e == EDQUOT ? CAIRN_ENOSPC : CAIRN_EIO; }

static int clean_tmp(const char *tmp) {
    DIR *d = opendir(tmp);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) n++;
    }
    closedir(d);
    return n;
}

int data_open(const char *dir, bool do_fsync, data_store **out, int *cleaned) {
    data_store *ds = calloc(1, sizeof *ds);
    if (!ds) return CAIRN_ENOMEM;
    ds->fsync = do_fsync;
    /* Leaves room below PATH_MAX for the object and temp names appended later. */
    if (strlen(dir) > PATH_MAX - 128 || snprintf(ds->dir, sizeof ds->dir, "%s", dir) >= (int)sizeof ds->dir ||
        snprintf(ds->objects, sizeof ds->objects, "%s/objects", dir) >= (int)sizeof ds->objects ||
        snprintf(ds->tmp, sizeof ds->tmp, "%s/tmp", dir) >= (int)sizeof ds->tmp) {
        free(ds);
        return CAIRN_EINVAL;
    }
    if (mkdir_p(ds->objects) != 0 || mkdir_p(ds->tmp) != 0) {
        free(ds);
        return CAIRN_EIO;
    }
    int n = clean_tmp(ds->tmp);
    if (cleaned) *cleaned = n;
    *out = ds;
    return 0;
}

void data_close(data_store *ds) { free(ds); }

int data_writer_open(data_store *ds, data_writer **out) {
    data_writer *w = calloc(1, sizeof *w);
    if (!w) return CAIRN_ENOMEM;
    char id[33];
    rand_hex_id(id, 16);
    snprintf(w->tmp_path, sizeof w->tmp_path, "%s/%s", ds->tmp, id);
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        int e = errno;
        free(w);
        return err_from_errno(e);
    }
    w->ds = ds;
    *out = w;
    return 0;
}

int data_writer_write(data_writer *w, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return err_from_errno(errno);
        }
        c += k;
        n -= (size_t)k;
        w->size += (uint64_t)k;
    }
    if (w->ds->fsync && w->size - w->flushed >= WRITEBACK_WINDOW) {
        /* Asynchronous: queues the range for writeback and returns. */
        sync_file_range(w->fd, (off_t)w->flushed, (off_t)(w->size - w->flushed), SYNC_FILE_RANGE_WRITE);
        w->flushed = w->size;
    }
    return 0;
}

uint64_t data_writer_size(const data_writer *w) { return w->size; }

int data_writer_open_reader(data_writer *w, int *fd) {
    *fd = open(w->tmp_path, O_RDONLY | O_CLOEXEC);
    return *fd < 0 ? CAIRN_EIO : 0;
}

void data_writer_abort(data_writer *w) {
    if (!w) return;
    close(w->fd);
    unlink(w->tmp_path);
    free(w);
}

static void object_path(const data_store *ds, const char *version_id, char *out, size_t n,
                        char *dir_out, size_t dn) {
    snprintf(dir_out, dn, "%s/%.2s", ds->objects, version_id);
    snprintf(out, n, "%s/%s", dir_out, version_id);
}

static bool valid_version_id(const char *v) {
    size_t n = strlen(v);
    if (n < 8 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) return false;
    return true;
}

int data_writer_commit(data_writer *w, const char *version_id) {
    data_store *ds = w->ds;
    char path[PATH_MAX], dir[PATH_MAX];
    int rc = 0;
    if (!valid_version_id(version_id)) {
        rc = CAIRN_EINVAL;
        goto fail;
    }
    if (ds->fsync && fdatasync(w->fd) != 0) {
        rc = err_from_errno(errno);
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        rc = err_from_errno(errno);
        goto fail;
    }
    w->fd = -1;
    object_path(ds, version_id, path, sizeof path, dir, sizeof dir);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        rc = err_from_errno(errno);
        goto fail;
    }
    if (rename(w->tmp_path, path) != 0) {
        rc = err_from_errno(errno);
        goto fail;
    }
    if (ds->fsync && fsync_dir(dir) != 0) {
        unlink(path);
        rc = CAIRN_EIO;
        goto fail_nounlink;
    }
    free(w);
    return 0;
fail:
    unlink(w->tmp_path);
fail_nounlink:
    if (w->fd >= 0) close(w->fd);
    free(w);
    return rc;
}

int data_open_read(data_store *ds, const char *version_id, int *fd_out, int64_t *size) {
    if (!valid_version_id(version_id)) return CAIRN_EINVAL;
    char path[PATH_MAX], dir[PATH_MAX];
    object_path(ds, version_id, path, sizeof path, dir, sizeof dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? CAIRN_ENOTFOUND : CAIRN_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return CAIRN_EIO;
    }
    *fd_out = fd;
    *size = st.st_size;
    return 0;
}

int data_delete(data_store *ds, const char *version_id) {
    if (!valid_version_id(version_id)) return CAIRN_EINVAL;
    char path[PATH_MAX], dir[PATH_MAX];
    object_path(ds, version_id, path, sizeof path, dir, sizeof dir);
    if (unlink(path) != 0 && errno != ENOENT) return CAIRN_EIO;
    return 0;
}

int data_check_writable(data_store *ds) {
    data_writer *w;
    int rc = data_writer_open(ds, &w);
    if (rc != 0) return rc;
    rc = data_writer_write(w, "probe", 5);
    if (rc == 0 && fsync(w->fd) != 0) rc = CAIRN_EIO;
    data_writer_abort(w);
    return rc;
}

int data_free_bytes(data_store *ds, int64_t *free_bytes) {
    struct statvfs sv;
    if (statvfs(ds->dir, &sv) != 0) return CAIRN_EIO;
    *free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    return 0;
}

int data_tmp_count(data_store *ds) {
    DIR *d = opendir(ds->tmp);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}
