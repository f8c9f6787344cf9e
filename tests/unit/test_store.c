/*
 * test_store.c — the erasure-coded data store (src/data/data.h) on real files.
 *
 * Every test gets its own mkdtemp directory (under $TMPDIR or /tmp, removed by
 * the suite's fini; on /dev/shm for the two tests that make thousands of tiny
 * files) holding the drive directories.  Objects are written with a
 * small block size (4 KiB) so that a few MiB make hundreds of stripes, then
 * read back and compared byte for byte.  Damage is done the way a disk or an
 * operator does it: shard files (<drive>/objects/<vv>/<version>.<i>) deleted,
 * truncated or with one byte flipped, drive directories replaced by files.
 * What must hold: reads return exactly the written bytes or an error, never
 * wrong bytes; the stats count what was found; healing rewrites shards that are
 * byte-identical to the originals; no temp file outlives a writer or a restart.
 *
 * Tests that damage shards and check counts install a heal check that refuses
 * every heal, so the background healer cannot repair the damage mid-test; the
 * healer itself is tested with it enabled.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "data/data.h"
#include "data/drive.h"
#include "node/node.h"
#include "http/http.h"

#define BLOCK 4096u
#define MIB (1024u * 1024u)
#define CRC_LEN 4 /* the on-disk block is [crc32c (4 bytes) | data], see data.h */

/* ---- fixture: one temp directory per test process ------------------------------- */

static char root[PATH_MAX];

static void make_root(const char *base) {
    cr_assert_eq(core_init(), 0);
    snprintf(root, sizeof root, "%s/cairn-test-store.XXXXXX", base);
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static void suite_init(void) {
    const char *t = getenv("TMPDIR");
    make_root(t && *t ? t : "/tmp");
}

/* The placement and heal-queue tests create thousands of tiny files, which on this
 * disk (ext4 without a journal) costs 2-12 s; placement does not depend on the
 * filesystem, so it uses a tmpfs when there is one. */
static void suite_init_tmpfs(void) {
    if (access("/dev/shm", W_OK) == 0) make_root("/dev/shm");
    else suite_init();
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    chmod(p, 0700);
    return remove(p);
}

static void suite_fini(void) {
    if (root[0]) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(layout, .init = suite_init, .fini = suite_fini);
TestSuite(open, .init = suite_init, .fini = suite_fini);
TestSuite(rw, .init = suite_init, .fini = suite_fini, .timeout = 120);
TestSuite(placement, .init = suite_init_tmpfs, .fini = suite_fini, .timeout = 120);
TestSuite(healqueue, .init = suite_init_tmpfs, .fini = suite_fini, .timeout = 120);
TestSuite(degraded, .init = suite_init, .fini = suite_fini, .timeout = 120);
TestSuite(heal, .init = suite_init, .fini = suite_fini, .timeout = 120);
TestSuite(lifecycle, .init = suite_init, .fini = suite_fini);
TestSuite(baddrive, .init = suite_init, .fini = suite_fini, .timeout = 60);

/* A set of drive directories <root>/<tag>/d<i> (not created: data_open does). */
typedef struct {
    char path[32][PATH_MAX];
    const char *ptr[32];
    int n;
} drives;

static void drives_make(drives *d, const char *tag, int n) {
    cr_assert_leq(n, 32);
    d->n = n;
    for (int i = 0; i < n; i++) {
        snprintf(d->path[i], sizeof d->path[i], "%s/%s/d%d", root, tag, i);
        d->ptr[i] = d->path[i];
    }
}

static data_store *store_open(const drives *d, int ndrives, int k, int m, uint32_t block, bool fsync,
                              int *cleaned) {
    data_options o = {.drives = d->ptr, .ndrives = ndrives, .k = k, .m = m, .block = block, .fsync = fsync};
    data_store *ds = NULL;
    int rc = data_open(&o, &ds, cleaned);
    cr_assert_eq(rc, 0, "data_open: %d", rc);
    cr_assert_not_null(ds);
    return ds;
}

static bool refuse_heal(void *ud, const char *version_id) {
    (void)version_id;
    if (ud) (*(int *)ud)++;
    return false;
}

/* ---- data and files ----------------------------------------------------------------- */

static unsigned char *random_bytes(size_t n, uint64_t seed) {
    unsigned char *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (unsigned char)(s >> 32);
    }
    return p;
}

static void new_version(char vid[33]) { rand_hex_id(vid, 16); }

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "create %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void flip_byte(const char *path, off_t off) {
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, off), 1, "%s has no byte at %lld", path, (long long)off);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* Offset in a shard file of byte `at` of the data of block `stripe`. */
static off_t block_byte(uint64_t stripe, uint32_t block, uint32_t at) {
    return (off_t)(stripe * (CRC_LEN + block) + CRC_LEN + at);
}

/* The directory of the drive whose persistent id is `id`. */
static const char *drive_dir(const drives *d, const char *id) {
    for (int i = 0; i < d->n; i++) {
        char p[PATH_MAX + 16], buf[64] = {0};
        snprintf(p, sizeof p, "%s/drive-id", d->path[i]);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (got >= DATA_DRIVE_ID_LEN && strncmp(buf, id, DATA_DRIVE_ID_LEN) == 0) return d->path[i];
    }
    return NULL;
}

static void shard_file(const drives *d, const data_layout *l, const char *vid, int i, char *out, size_t n) {
    const char *dir = drive_dir(d, l->drive_ids[i]);
    cr_assert_not_null(dir, "no drive with id %s", l->drive_ids[i]);
    snprintf(out, n, "%s/objects/%.2s/%s.%d", dir, vid, vid, i);
}

/* Regular files under every drive's objects/ directory. */
static int count_object_files(const drives *d) {
    int n = 0;
    for (int i = 0; i < d->n; i++) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s/objects", d->path[i]);
        DIR *top = opendir(p);
        if (!top) continue;
        struct dirent *e;
        while ((e = readdir(top))) {
            if (e->d_name[0] == '.') continue;
            char sub[2 * PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", p, e->d_name);
            DIR *s = opendir(sub);
            if (!s) continue;
            struct dirent *f;
            while ((f = readdir(s)))
                if (f->d_name[0] != '.') n++;
            closedir(s);
        }
        closedir(top);
    }
    return n;
}

/* ---- writing and reading helpers ------------------------------------------------------- */

/* The tap must see exactly the written bytes, in order, once: it compares
 * each piece against the expected bytes and also hashes the stream. */
typedef struct {
    const unsigned char *expect;
    size_t len, pos;
    bool mismatch;
    uint64_t hash;
} tap_state;

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}
#define FNV_INIT 1469598103934665603ULL

static void tap_fn(void *ud, const void *p, size_t n) {
    tap_state *t = ud;
    if (t->pos + n > t->len || memcmp(t->expect + t->pos, p, n) != 0) t->mismatch = true;
    t->hash = fnv1a(t->hash, p, n);
    t->pos += n;
}

/* Writes data in uneven pieces (so pieces straddle block and stripe edges),
 * checks the tap, commits.  Returns the commit's result. */
static int write_object(data_store *ds, const char *vid, const unsigned char *data, size_t len,
                        data_layout *out) {
    static const size_t pieces[] = {1, 777, 4096, 16384, 65539, 3, 100000};
    tap_state t = {.expect = data, .len = len, .hash = FNV_INIT};
    data_writer *w = NULL;
    int rc = data_writer_open(ds, vid, tap_fn, &t, &w);
    if (rc != 0) return rc;
    size_t off = 0;
    for (int i = 0; off < len; i++) {
        size_t n = pieces[i % 7];
        if (n > len - off) n = len - off;
        rc = data_writer_write(w, data + off, n);
        if (rc != 0) {
            data_writer_abort(w);
            return rc;
        }
        off += n;
    }
    cr_assert_eq(data_writer_size(w), len);
    rc = data_writer_finish(w);
    if (rc != 0) {
        data_writer_abort(w);
        return rc;
    }
    cr_expect(!t.mismatch, "tap saw bytes out of order or wrong");
    cr_expect_eq(t.pos, len, "tap saw %zu of %zu bytes", t.pos, len);
    cr_expect_eq(t.hash, fnv1a(FNV_INIT, data, len), "tap stream hash differs");
    return data_writer_commit(w, out);
}

/* Reads n bytes at off (looping over short reads); returns the count or the
 * first negative result. */
static ssize_t read_range(data_reader *r, uint64_t off, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = data_reader_read(r, off + got, buf + got, n - got);
        if (k < 0) return k;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* Reads the whole object in pieces of `piece` bytes and compares. */
static void expect_object(data_store *ds, const char *vid, const data_layout *l, const unsigned char *data,
                          size_t len, size_t piece) {
    data_reader *r = NULL;
    int rc = data_reader_open(ds, vid, l, (int64_t)len, &r);
    cr_assert_eq(rc, 0, "reader_open: %d", rc);
    unsigned char *buf = malloc(piece);
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        ssize_t got = read_range(r, off, buf, n);
        cr_assert_eq(got, (ssize_t)n, "read at %zu: %zd", off, got);
        cr_assert(memcmp(buf, data + off, n) == 0, "bytes differ in [%zu, %zu)", off, off + n);
    }
    cr_assert_eq(data_reader_read(r, len, buf, piece), 0, "read at the end");
    free(buf);
    data_reader_close(r);
}

static void expect_object_all(data_store *ds, const char *vid, const data_layout *l,
                              const unsigned char *data, size_t len) {
    expect_object(ds, vid, l, data, len, 10007);                 /* unaligned pieces */
    if (len) expect_object(ds, vid, l, data, len, (size_t)l->k * l->block); /* whole stripes */
}

static void check_layout(const drives *d, const data_layout *l, int k, int m, uint32_t block) {
    cr_expect_eq(l->k, k);
    cr_expect_eq(l->m, m);
    cr_expect_eq(l->block, block);
    for (int i = 0; i < k + m; i++) {
        cr_expect_eq(strlen(l->drive_ids[i]), DATA_DRIVE_ID_LEN);
        const char *dir = drive_dir(d, l->drive_ids[i]);
        cr_expect_not_null(dir, "shard %d on unknown drive %s", i, l->drive_ids[i]);
        for (int j = 0; j < i; j++)
            cr_expect_str_neq(l->drive_ids[i], l->drive_ids[j], "shards %d and %d on one drive", j, i);
    }
}

/* ======================================================================================= */
/* layout text                                                                               */
/* ======================================================================================= */

static void fill_ids(data_layout *l) {
    for (int i = 0; i < l->k + l->m && i < DATA_MAX_SHARDS; i++)
        snprintf(l->drive_ids[i], sizeof l->drive_ids[i], "%016x", 0xabc00 + i);
}

/* The x-amz-checksum-crc32c algorithm (CRC-32C), shared with the S3 layer. */
Test(layout, crc32c_reference_and_chaining) {
    cr_expect_eq(data_crc32c(0, "123456789", 9), 0xE3069283u);
    cr_expect_eq(data_crc32c(0, "", 0), 0u);
    uint32_t c = data_crc32c(0, "1234", 4);
    cr_expect_eq(data_crc32c(c, "56789", 5), 0xE3069283u, "chained from a partial CRC");
}

Test(layout, round_trip) {
    const int km[][2] = {{1, 0}, {1, 1}, {4, 2}, {12, 4}, {16, 0}};
    for (int t = 0; t < 5; t++) {
        data_layout l = {.k = km[t][0], .m = km[t][1], .block = t == 4 ? (64u << 20) : 262144};
        fill_ids(&l);
        char s[DATA_LAYOUT_MAX];
        cr_assert_eq(data_layout_format(&l, s, sizeof s), 0);
        data_layout back;
        cr_assert_eq(data_layout_parse(s, &back), 0, "%s", s);
        cr_expect_eq(back.k, l.k);
        cr_expect_eq(back.m, l.m);
        cr_expect_eq(back.block, l.block);
        for (int i = 0; i < l.k + l.m; i++) cr_expect_str_eq(back.drive_ids[i], l.drive_ids[i]);
        char again[DATA_LAYOUT_MAX];
        cr_assert_eq(data_layout_format(&back, again, sizeof again), 0);
        cr_expect_str_eq(again, s);
    }
    data_layout l = {.k = 2, .m = 1, .block = 4096};
    fill_ids(&l);
    char s[DATA_LAYOUT_MAX];
    cr_assert_eq(data_layout_format(&l, s, sizeof s), 0);
    cr_expect_str_eq(s, "2+1:4096:00000000000abc00,00000000000abc01,00000000000abc02");
}

Test(layout, sealed_streams_are_marked_and_store_their_sealed_length) {
    data_layout l = {.k = 2, .m = 1, .block = 4096, .sealed = true};
    fill_ids(&l);
    char s[DATA_LAYOUT_MAX];
    cr_assert_eq(data_layout_format(&l, s, sizeof s), 0);
    cr_expect_str_eq(s, "2+1:4096:00000000000abc00,00000000000abc01,00000000000abc02:s");
    data_layout back;
    cr_assert_eq(data_layout_parse(s, &back), 0);
    cr_expect(back.sealed);
    cr_expect_str_eq(back.drive_ids[2], "00000000000abc02");
    /* the longest layout (16 shards, 64 MiB blocks) still fits, marked */
    data_layout big = {.k = 12, .m = 4, .block = 64u << 20, .sealed = true};
    fill_ids(&big);
    cr_assert_eq(data_layout_format(&big, s, sizeof s), 0);
    /* n bytes stored as n + 16 per 64 KiB package (an empty stream is one package) */
    cr_expect_eq(data_stored_size(&back, 0), 16);
    cr_expect_eq(data_stored_size(&back, 65536), 65536 + 16);
    cr_expect_eq(data_stored_size(&back, 65537), 65537 + 32);
    back.sealed = false;
    cr_expect_eq(data_stored_size(&back, 65537), 65537);
}

Test(layout, format_needs_room) {
    data_layout l = {.k = 4, .m = 2, .block = 4096};
    fill_ids(&l);
    char full[DATA_LAYOUT_MAX];
    cr_assert_eq(data_layout_format(&l, full, sizeof full), 0);
    char small[DATA_LAYOUT_MAX];
    cr_expect_eq(data_layout_format(&l, small, strlen(full)), CAIRN_EINVAL); /* no room for the NUL */
    cr_expect_eq(data_layout_format(&l, small, strlen(full) + 1), 0);
    cr_expect_str_eq(small, full);
}

Test(layout, rejects_malformed) {
    const char *id = "0123456789abcdef";
    char ok[DATA_LAYOUT_MAX];
    snprintf(ok, sizeof ok, "2+1:4096:%s,%s,%s", id, id, id);
    data_layout l;
    cr_assert_eq(data_layout_parse(ok, &l), 0);
    const char *bad[] = {
        "",
        "2+1",
        "2+1:4096",
        "2+1:4096:",                                                        /* missing ids */
        "2+1:4096:0123456789abcdef",                                        /* too few ids */
        "2+1:4096:0123456789abcdef,0123456789abcdef",                       /* too few ids */
        "2+1:4096:0123456789abcdef,0123456789abcdef,",                      /* empty last id */
        "2+1:4096:0123456789abcdef,,0123456789abcdef",                      /* empty middle id */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcde",       /* id 15 chars */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef0",     /* id 17 chars */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef,",     /* trailing comma */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef,0123456789abcdef", /* extra id */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdefX",     /* trailing junk */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef\n",    /* trailing newline */
        "0+1:4096:0123456789abcdef",                                        /* k = 0 */
        "-1+1:4096:0123456789abcdef",                                       /* k < 0 */
        "1+-1:4096:0123456789abcdef",                                       /* m < 0 */
        "17+0:4096:0123456789abcdef",                                       /* k + m > 16 */
        "13+4:4096:0123456789abcdef",                                       /* k + m > 16 */
        "2+1:0:0123456789abcdef,0123456789abcdef,0123456789abcdef",         /* block 0 */
        "2+1:4096;0123456789abcdef,0123456789abcdef,0123456789abcdef",      /* wrong separator */
        "2-1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef",
        "x+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef",
        "2+1:40x96:0123456789abcdef,0123456789abcdef,0123456789abcdef",
        "2+1:4096:0123456789abcdef;0123456789abcdef;0123456789abcdef",
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef:",     /* a sealed mark cut short */
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef:S",
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef:s:s",
        "2+1:4096:0123456789abcdef,0123456789abcdef,0123456789abcdef:ss",
        "2+1:4096:0123456789abcdef:s,0123456789abcdef,0123456789abcdef",    /* the mark among the ids */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(data_layout_parse(bad[i], &l), CAIRN_EINVAL, "accepted \"%s\"", bad[i]);
    cr_expect_eq(data_layout_parse(NULL, &l), CAIRN_EINVAL);
}

/* A shard's file name is <32 hex version id>.<index 0..15>: anything else is
 * refused before it reaches a path (a node takes names off the wire). */
Test(layout, shard_names) {
    const char *v = "0123456789abcdef0123456789abcdef";
    char name[64];
    const char *good[] = {"0", "9", "10", "15"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", v, good[i]);
        cr_expect(drive_shard_name_valid(name), "refused \"%s\"", name);
    }
    const char *bad_index[] = {"", "x", "16", "19", "1a", "20", "01", "100", "-1", "1 "};
    for (size_t i = 0; i < sizeof bad_index / sizeof bad_index[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", v, bad_index[i]);
        cr_expect(!drive_shard_name_valid(name), "accepted \"%s\"", name);
    }
    const char *bad[] = {
        "0123456789abcdef0123456789abcde.0",    /* 31 hex digits */
        "0123456789abcdef0123456789abcdef0.0",  /* 33 */
        "0123456789abcdef0123456789abcdef_0",   /* no dot */
        "0123456789ABCDEF0123456789abcdef.0",   /* upper case */
        "0123456789abcdef0123456789abcdeg.0",   /* not hex */
        "../3456789abcdef0123456789abcdef.0",   /* a path */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect(!drive_shard_name_valid(bad[i]), "accepted \"%s\"", bad[i]);
}

/* ======================================================================================= */
/* opening                                                                                    */
/* ======================================================================================= */

Test(open, default_layout_per_drive_count) {
    const int counts[] = {1, 4, 6};
    const int want[][2] = {{1, 0}, {2, 2}, {4, 2}};
    for (int t = 0; t < 3; t++) {
        drives d;
        char tag[16];
        snprintf(tag, sizeof tag, "n%d", counts[t]);
        drives_make(&d, tag, counts[t]);
        int cleaned = -1;
        data_store *ds = store_open(&d, counts[t], 0, 0, 0, false, &cleaned);
        cr_expect_eq(cleaned, 0);
        int k, m;
        uint32_t block;
        data_store_layout(ds, &k, &m, &block);
        cr_expect(k == want[t][0] && m == want[t][1], "%d drives: %d+%d", counts[t], k, m);
        cr_expect_eq(block, 256u * 1024);
        /* An object goes to k+m distinct drives and reads back. */
        char vid[33];
        new_version(vid);
        unsigned char *data = random_bytes(300000, (uint64_t)t);
        data_layout l;
        cr_assert_eq(write_object(ds, vid, data, 300000, &l), 0);
        check_layout(&d, &l, k, m, block);
        expect_object_all(ds, vid, &l, data, 300000);
        free(data);
        data_close(ds);
    }
}

Test(open, explicit_layout_and_block) {
    drives d;
    drives_make(&d, "x", 5);
    data_store *ds = store_open(&d, 5, 3, 1, 8192, false, NULL);
    int k, m;
    uint32_t block;
    data_store_layout(ds, &k, &m, &block);
    cr_expect(k == 3 && m == 1 && block == 8192);
    data_close(ds);
}

Test(open, rejects_more_shards_than_drives) {
    drives d;
    drives_make(&d, "few", 17);
    data_store *ds = NULL;
    data_options o = {.drives = d.ptr, .ndrives = 5, .k = 4, .m = 2, .block = BLOCK};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    o = (data_options){.drives = d.ptr, .ndrives = 2, .k = 3, .m = 0};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    o = (data_options){.drives = d.ptr, .ndrives = 17, .k = 16, .m = 1};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);  /* more than 16 shards */
    o = (data_options){.drives = d.ptr, .ndrives = 4, .k = 2, .m = -1};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    o = (data_options){.drives = d.ptr, .ndrives = 0};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    cr_expect_eq(data_open(NULL, &ds, NULL), CAIRN_EINVAL);
}

Test(open, same_directory_twice) {
    drives d;
    drives_make(&d, "dup", 4);
    snprintf(d.path[3], sizeof d.path[3], "%s", d.path[1]);
    data_store *ds = NULL;
    data_options o = {.drives = d.ptr, .ndrives = 4, .k = 2, .m = 1};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EEXIST);
    /* Spelled differently, still the same drive. */
    snprintf(d.path[3], sizeof d.path[3], "%s/./", d.path[1]);
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EEXIST);
    /* A symlink to it, too. */
    snprintf(d.path[3], sizeof d.path[3], "%s/dup/link", root);
    cr_assert_eq(symlink(d.path[1], d.path[3]), 0);
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EEXIST);
}

Test(open, drive_that_is_a_file) {
    drives d;
    drives_make(&d, "f", 3);
    char parent[PATH_MAX + 8];
    snprintf(parent, sizeof parent, "%s/f", root);
    cr_assert_eq(mkdir(parent, 0755), 0);
    spit(d.path[2], "x", 1);
    data_store *ds = NULL;
    data_options o = {.drives = d.ptr, .ndrives = 3, .k = 2, .m = 1};
    int rc = data_open(&o, &ds, NULL);
    cr_expect_lt(rc, 0, "a file as a drive was accepted");
    if (rc == 0) data_close(ds);
}

/* A drive's id file that is not 16 lower-case hex digits, or cannot be read,
 * refuses the open: a made-up id would orphan every shard the drive holds. */
Test(open, a_damaged_drive_id_refuses_the_open) {
    drives d;
    drives_make(&d, "badid", 1);
    data_store *ds = NULL;
    data_options o = {.drives = d.ptr, .ndrives = 1, .k = 1, .m = 0};
    cr_assert_eq(data_open(&o, &ds, NULL), 0);
    data_close(ds);
    char id[PATH_MAX + 16];
    snprintf(id, sizeof id, "%s/drive-id", d.path[0]);
    const char *bad[] = {"0123abcd\n", "0123456789ABCDEF\n", "0123456789abcdeg\n", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spit(id, bad[i], strlen(bad[i]));
        ds = NULL;
        cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EIO, "drive-id \"%s\" accepted", bad[i]);
        cr_expect_null(ds);
    }
    cr_assert_eq(unlink(id), 0);
    cr_assert_eq(symlink(id, id), 0); /* ELOOP: neither readable nor absent */
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EIO);
    /* A path longer than any drive path can be. */
    char longp[PATH_MAX + 64];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    const char *lp[] = {longp};
    data_options lo = {.drives = lp, .ndrives = 1, .k = 1, .m = 0};
    cr_expect_eq(data_open(&lo, &ds, NULL), CAIRN_EINVAL);
}

Test(open, drive_ids_persist_and_order_does_not_matter) {
    drives d;
    drives_make(&d, "p", 4);
    data_store *ds = store_open(&d, 4, 2, 2, BLOCK, false, NULL);
    char ids[4][64];
    for (int i = 0; i < 4; i++) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s/drive-id", d.path[i]);
        size_t n;
        unsigned char *c = slurp(p, &n);
        cr_assert_geq(n, DATA_DRIVE_ID_LEN);
        memcpy(ids[i], c, DATA_DRIVE_ID_LEN);
        ids[i][DATA_DRIVE_ID_LEN] = '\0';
        free(c);
        for (int j = 0; j < i; j++) cr_expect_str_neq(ids[i], ids[j]);
    }
    char vid[33];
    new_version(vid);
    size_t len = 100000;
    unsigned char *data = random_bytes(len, 7);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    for (int i = 0; i < 4; i++) {
        bool found = false;
        for (int j = 0; j < 4; j++) found |= !strcmp(l.drive_ids[i], ids[j]);
        cr_expect(found, "layout names drive %s, which is not one of ours", l.drive_ids[i]);
    }
    data_close(ds);

    /* Reopen: same ids, same object. */
    ds = store_open(&d, 4, 2, 2, BLOCK, false, NULL);
    for (int i = 0; i < 4; i++) cr_expect_not_null(drive_dir(&d, ids[i]));
    expect_object_all(ds, vid, &l, data, len);
    data_close(ds);

    /* Reopen with the drives listed in another order: the layout names drives
     * by id, so the object still reads back. */
    drives rev = d;
    for (int i = 0; i < 4; i++) rev.ptr[i] = d.path[3 - i];
    ds = store_open(&rev, 4, 2, 2, BLOCK, false, NULL);
    expect_object_all(ds, vid, &l, data, len);
    data_stats st;
    data_get_stats(ds, &st);
    cr_expect_eq(st.missing_shards, 0);
    cr_expect_eq(st.degraded_reads, 0);
    data_close(ds);
    free(data);
}

/* A layout carries its own geometry: objects written as 4+2 with 4 KiB
 * blocks still read (and heal) after the store reopens as 2+1 with 16 KiB. */
Test(open, old_layouts_read_after_the_geometry_changes) {
    drives d;
    drives_make(&d, "geo", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    size_t len = 7 * 4 * BLOCK + 99;
    unsigned char *data = random_bytes(len, 11);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    data_close(ds);
    ds = store_open(&d, 6, 2, 1, 4 * BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    expect_object_all(ds, vid, &l, data, len);
    char p[PATH_MAX * 2];
    shard_file(&d, &l, vid, 5, p, sizeof p);
    cr_assert_eq(unlink(p), 0);
    shard_file(&d, &l, vid, 0, p, sizeof p);
    flip_byte(p, block_byte(6, BLOCK, 7));
    expect_object_all(ds, vid, &l, data, len);
    int repaired = -1;
    cr_expect_eq(data_heal(ds, vid, &l, (int64_t)len, &repaired), 0);
    cr_expect_eq(repaired, 2);
    /* New objects get the new layout. */
    char vid2[33];
    new_version(vid2);
    data_layout l2;
    cr_assert_eq(write_object(ds, vid2, data, len, &l2), 0);
    check_layout(&d, &l2, 2, 1, 4 * BLOCK);
    expect_object_all(ds, vid2, &l2, data, len);
    free(data);
    data_close(ds);
}

/* ======================================================================================= */
/* writing and reading                                                                        */
/* ======================================================================================= */

static void sizes_round_trip(const char *tag, int ndrives, int k, int m, size_t big) {
    drives d;
    drives_make(&d, tag, ndrives);
    data_store *ds = store_open(&d, ndrives, k, m, BLOCK, false, NULL);
    int sk, sm;
    uint32_t sb;
    data_store_layout(ds, &sk, &sm, &sb);
    cr_assert(sk == k && sm == m && sb == BLOCK);
    size_t stripe = (size_t)k * BLOCK;
    const size_t sizes[] = {0, 1, BLOCK - 1, BLOCK, BLOCK + 1, stripe - 1, stripe, stripe + 1,
                            3 * stripe + BLOCK + 5, big};
    int files = 0;
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t len = sizes[t];
        char vid[33];
        new_version(vid);
        unsigned char *data = random_bytes(len, t + 100);
        data_layout l;
        int rc = write_object(ds, vid, data, len, &l);
        cr_assert_eq(rc, 0, "%s: write of %zu bytes: %d", tag, len, rc);
        check_layout(&d, &l, k, m, BLOCK);
        for (int i = 0; i < k + m; i++) {
            char p[PATH_MAX * 2];
            shard_file(&d, &l, vid, i, p, sizeof p);
            cr_expect(exists(p), "%s: shard %d of a %zu-byte object missing", tag, i, len);
        }
        files += k + m;
        cr_expect_eq(data_tmp_count(ds), 0, "temp files left after commit");
        expect_object_all(ds, vid, &l, data, len);
        free(data);
    }
    cr_expect_eq(count_object_files(&d), files);
    data_stats st;
    data_get_stats(ds, &st);
    cr_expect(st.corrupt_blocks == 0 && st.missing_shards == 0 && st.degraded_reads == 0,
              "a clean store reported damage");
    data_close(ds);
}

Test(rw, sizes_4_plus_2) { sizes_round_trip("s42", 6, 4, 2, 5 * MIB + 333); }
Test(rw, sizes_1_plus_0) { sizes_round_trip("s10", 1, 1, 0, 2 * MIB + 1); }
Test(rw, sizes_2_plus_2) { sizes_round_trip("s22", 4, 2, 2, 1 * MIB + 7); }
Test(rw, sizes_2_plus_1) { sizes_round_trip("s21", 3, 2, 1, 1 * MIB + 9); }
Test(rw, sizes_12_plus_4) { sizes_round_trip("s124", 16, 12, 4, 1 * MIB + 11); }

/* Reads of every length at every interesting offset, from a fresh reader and
 * from one reader reused across offsets (its cached stripe). */
Test(rw, reads_at_every_offset) {
    drives d;
    drives_make(&d, "off", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    const size_t stripe = 4 * BLOCK, len = 10 * stripe + 5000;
    unsigned char *data = random_bytes(len, 42);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    const size_t offs[] = {0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 17, stripe - 1, stripe, stripe + 1,
                           3 * stripe - 1, 3 * stripe + 2 * BLOCK, 10 * stripe - 1, 10 * stripe,
                           10 * stripe + 1250, 10 * stripe + 1251, 10 * stripe + 2500, len - 2, len - 1};
    const size_t lens[] = {1, 100, BLOCK, stripe, stripe + 1, 3 * stripe + 3, len};
    unsigned char *buf = malloc(len + 64);
    data_reader *shared;
    cr_assert_eq(data_reader_open(ds, vid, &l, (int64_t)len, &shared), 0);
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
            size_t off = offs[i], want = lens[j] < len - off ? lens[j] : len - off;
            data_reader *fresh;
            cr_assert_eq(data_reader_open(ds, vid, &l, (int64_t)len, &fresh), 0);
            data_reader *rs[2] = {fresh, shared};
            for (int x = 0; x < 2; x++) {
                memset(buf, 0xEE, len + 64);
                ssize_t got = read_range(rs[x], off, buf, lens[j]);
                cr_assert_eq(got, (ssize_t)want, "off %zu len %zu: got %zd", off, lens[j], got);
                cr_assert(memcmp(buf, data + off, want) == 0, "off %zu len %zu: wrong bytes", off, lens[j]);
                /* Nothing written past what was returned. */
                if (want < lens[j]) cr_assert_eq(buf[want], 0xEE, "off %zu: wrote past the end", off);
            }
            /* A single call never returns more than asked, nor bytes past the end. */
            ssize_t one = data_reader_read(fresh, off, buf, lens[j]);
            cr_assert(one > 0 && (size_t)one <= want, "off %zu len %zu: single read %zd", off, lens[j], one);
            cr_assert(memcmp(buf, data + off, (size_t)one) == 0);
            /* A peek sees the same bytes in place, never past its stripe's end. */
            const void *in = NULL;
            ssize_t pk = data_reader_peek(fresh, off, &in, lens[j]);
            cr_assert(pk > 0 && (size_t)pk <= want && (size_t)pk <= stripe - off % stripe, "off %zu: peek %zd", off, pk);
            cr_assert(memcmp(in, data + off, (size_t)pk) == 0, "off %zu len %zu: peeked wrong bytes", off, lens[j]);
            data_reader_close(fresh);
        }
    }
    /* At and past the end: 0. */
    const uint64_t past[] = {len, len + 1, len + stripe, (uint64_t)1 << 40};
    for (int i = 0; i < 4; i++) cr_expect_eq(data_reader_read(shared, past[i], buf, 100), 0);
    cr_expect_eq(data_reader_read(shared, 0, buf, 0), 0);
    const void *none = buf;
    cr_expect_eq(data_reader_peek(shared, len, &none, 100), 0);
    cr_expect_null(none);
    cr_expect_eq(data_reader_peek(shared, 0, &none, 0), 0);
    data_reader_close(shared);
    data_stats st;
    data_get_stats(ds, &st);
    cr_expect_eq(st.degraded_reads, 0);
    free(buf);
    free(data);
    data_close(ds);
}

Test(rw, zero_byte_object) {
    drives d;
    drives_make(&d, "z", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    char vid[33];
    new_version(vid);
    data_layout l;
    data_writer *w;
    cr_assert_eq(data_writer_open(ds, vid, NULL, NULL, &w), 0);
    cr_assert_eq(data_writer_commit(w, &l), 0);
    data_reader *r;
    cr_assert_eq(data_reader_open(ds, vid, &l, 0, &r), 0);
    unsigned char b[8];
    cr_expect_eq(data_reader_read(r, 0, b, sizeof b), 0);
    data_reader_close(r);
    data_close(ds);
}

Test(rw, with_fsync) {
    drives d;
    drives_make(&d, "fs", 3);
    data_store *ds = store_open(&d, 3, 2, 1, 0, true, NULL);
    size_t len = 9 * MIB + 3; /* past the 8 MiB write-back window */
    unsigned char *data = random_bytes(len, 3);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    expect_object_all(ds, vid, &l, data, len);
    cr_expect_eq(data_check_writable(ds), 0);
    int64_t fb = -1;
    cr_expect_eq(data_free_bytes(ds, &fb), 0);
    cr_expect_gt(fb, 0);
    free(data);
    data_close(ds);
}

Test(rw, rejects_bad_arguments) {
    drives d;
    drives_make(&d, "ba", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    data_writer *w = NULL;
    const char *bad[] = {"", "abc", "0123456789ABCDEF0123456789abcdef", "../../etc/passwd",
                         "0123456789abcdef0123456789abcdef0", "01234567/abcdef", "0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(data_writer_open(ds, bad[i], NULL, NULL, &w), CAIRN_EINVAL, "accepted \"%s\"", bad[i]);
    data_layout l = {.k = 2, .m = 1, .block = BLOCK};
    data_reader *r = NULL;
    cr_expect_eq(data_reader_open(ds, "../x", &l, 10, &r), CAIRN_EINVAL);
    char vid[33];
    new_version(vid);
    cr_expect_eq(data_reader_open(ds, vid, &l, -1, &r), CAIRN_EINVAL);
    cr_expect_eq(data_delete(ds, "../../x", &l), CAIRN_EINVAL);
    cr_expect_eq(data_tmp_count(ds), 0);
    data_close(ds);
}

typedef struct {
    data_store *ds;
    int seed;
    int failures;
} worker_ctx;

static void *rw_worker(void *arg) {
    worker_ctx *c = arg;
    for (int i = 0; i < 4; i++) {
        size_t len = 150000 + (size_t)c->seed * 1000 + (size_t)i * 4097;
        unsigned char *data = random_bytes(len, (uint64_t)c->seed * 10 + (uint64_t)i);
        char vid[33];
        new_version(vid);
        data_writer *w;
        data_layout l;
        if (data_writer_open(c->ds, vid, NULL, NULL, &w) != 0) { c->failures++; free(data); continue; }
        if (data_writer_write(w, data, len) != 0 || data_writer_commit(w, &l) != 0) { c->failures++; free(data); continue; }
        data_reader *r;
        unsigned char *back = malloc(len);
        if (data_reader_open(c->ds, vid, &l, (int64_t)len, &r) != 0) c->failures++;
        else {
            if (read_range(r, 0, back, len) != (ssize_t)len || memcmp(back, data, len) != 0) c->failures++;
            data_reader_close(r);
        }
        if (data_delete(c->ds, vid, &l) != 0) c->failures++;
        free(back);
        free(data);
    }
    return NULL;
}

Test(rw, concurrent_writers_and_readers) {
    drives d;
    drives_make(&d, "cc", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    pthread_t t[4];
    worker_ctx c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (worker_ctx){.ds = ds, .seed = i + 1};
        cr_assert_eq(pthread_create(&t[i], NULL, rw_worker, &c[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) cr_expect_eq(c[i].failures, 0, "worker %d: %d failures", i, c[i].failures);
    cr_expect_eq(count_object_files(&d), 0);
    cr_expect_eq(data_tmp_count(ds), 0);
    data_close(ds);
}

/* ======================================================================================= */
/* placement                                                                                  */
/* ======================================================================================= */

Test(placement, distinct_drives_and_even_spread) {
    drives d;
    drives_make(&d, "pl", 8);
    data_store *ds = store_open(&d, 8, 4, 2, BLOCK, false, NULL);
    char ids[8][DATA_DRIVE_ID_LEN + 1];
    for (int i = 0; i < 8; i++) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s/drive-id", d.path[i]);
        size_t n;
        unsigned char *c = slurp(p, &n);
        memcpy(ids[i], c, DATA_DRIVE_ID_LEN);
        ids[i][DATA_DRIVE_ID_LEN] = '\0';
        free(c);
    }
    enum { N = 2000 };
    int per_drive[8] = {0}, first_shard[8] = {0};
    for (int v = 0; v < N; v++) {
        char vid[33];
        new_version(vid);
        data_writer *w;
        data_layout l;
        cr_assert_eq(data_writer_open(ds, vid, NULL, NULL, &w), 0);
        cr_assert_eq(data_writer_commit(w, &l), 0);
        for (int i = 0; i < 6; i++) {
            int which = -1;
            for (int j = 0; j < 8; j++)
                if (!strcmp(l.drive_ids[i], ids[j])) which = j;
            cr_assert_geq(which, 0, "unknown drive id in layout");
            per_drive[which]++;
            if (i == 0) first_shard[which]++;
            for (int j = 0; j < i; j++) cr_assert_str_neq(l.drive_ids[i], l.drive_ids[j]);
        }
        cr_assert_eq(data_delete(ds, vid, &l), 0);
    }
    /* Expected 2000 * 6 / 8 = 1500 shards per drive (sd ~19) and 250 first
     * shards (sd ~15); the bounds are loose enough never to flake. */
    for (int j = 0; j < 8; j++) {
        cr_expect(per_drive[j] > 1300 && per_drive[j] < 1700, "drive %d got %d shards", j, per_drive[j]);
        cr_expect(first_shard[j] > 150 && first_shard[j] < 350, "drive %d got %d first shards", j, first_shard[j]);
    }
    cr_expect_eq(count_object_files(&d), 0);
    data_close(ds);
}

/* ======================================================================================= */
/* damage: missing and corrupt shards                                                       */
/* ======================================================================================= */

/* One object on 4+2 with saved copies of its shard files. */
typedef struct {
    drives d;
    data_store *ds;
    char vid[33];
    data_layout l;
    unsigned char *data;
    size_t len;
    char path[DATA_MAX_SHARDS][PATH_MAX * 2];
    unsigned char *saved[DATA_MAX_SHARDS];
    size_t saved_len[DATA_MAX_SHARDS];
    int refused_heals;
} damaged;

static void damaged_setup(damaged *x, const char *tag, int ndrives, int k, int m, size_t len, bool allow_heal) {
    memset(x, 0, sizeof *x);
    drives_make(&x->d, tag, ndrives);
    x->ds = store_open(&x->d, ndrives, k, m, BLOCK, false, NULL);
    if (!allow_heal) data_set_heal_check(x->ds, refuse_heal, &x->refused_heals);
    new_version(x->vid);
    x->len = len;
    x->data = random_bytes(len, 1234);
    cr_assert_eq(write_object(x->ds, x->vid, x->data, len, &x->l), 0);
    for (int i = 0; i < k + m; i++) {
        shard_file(&x->d, &x->l, x->vid, i, x->path[i], sizeof x->path[i]);
        x->saved[i] = slurp(x->path[i], &x->saved_len[i]);
    }
}

static void damaged_restore(damaged *x) {
    for (int i = 0; i < x->l.k + x->l.m; i++) spit(x->path[i], x->saved[i], x->saved_len[i]);
}

static void expect_shards_original(damaged *x) {
    for (int i = 0; i < x->l.k + x->l.m; i++) {
        cr_assert(exists(x->path[i]), "shard %d missing", i);
        size_t n;
        unsigned char *now = slurp(x->path[i], &n);
        cr_expect(n == x->saved_len[i] && memcmp(now, x->saved[i], n) == 0, "shard %d differs from the original", i);
        free(now);
    }
}

static void damaged_teardown(damaged *x) {
    for (int i = 0; i < x->l.k + x->l.m; i++) free(x->saved[i]);
    free(x->data);
    data_close(x->ds);
}

/* Every subset of up to m deleted shards: exact bytes, counted. */
Test(degraded, missing_shards_every_subset) {
    damaged x;
    damaged_setup(&x, "miss", 6, 4, 2, 13 * 4 * BLOCK + 3000, false);
    int subsets = 0;
    for (unsigned mask = 0; mask < 64; mask++) {
        int n = __builtin_popcount(mask);
        if (n > 2) continue;
        for (int i = 0; i < 6; i++)
            if (mask & (1u << i)) cr_assert_eq(unlink(x.path[i]), 0);
        data_stats a, b;
        data_get_stats(x.ds, &a);
        expect_object(x.ds, x.vid, &x.l, x.data, x.len, 10007);
        data_get_stats(x.ds, &b);
        cr_expect_eq(b.missing_shards - a.missing_shards, (uint64_t)n, "mask %#x", mask);
        cr_expect_eq(b.degraded_reads - a.degraded_reads, n ? 1u : 0u, "mask %#x", mask);
        cr_expect_eq(b.corrupt_blocks, a.corrupt_blocks, "mask %#x", mask);
        damaged_restore(&x);
        subsets++;
    }
    cr_expect_eq(subsets, 22);
    damaged_teardown(&x);
}

/* The 5 MiB, many-stripe case with two data shards gone. */
Test(degraded, large_object_two_data_shards_missing) {
    damaged x;
    damaged_setup(&x, "big", 6, 4, 2, 5 * MIB + 77, false);
    cr_assert_eq(unlink(x.path[0]), 0);
    cr_assert_eq(unlink(x.path[3]), 0);
    expect_object_all(x.ds, x.vid, &x.l, x.data, x.len);
    data_stats st;
    data_get_stats(x.ds, &st);
    cr_expect_eq(st.missing_shards, 4); /* two readers, two each */
    cr_expect_eq(st.degraded_reads, 2);
    damaged_teardown(&x);
}

/* A flipped byte inside a block is caught by its checksum and rebuilt. */
Test(degraded, flipped_byte_in_a_data_block) {
    damaged x;
    damaged_setup(&x, "flip", 6, 4, 2, 20 * 4 * BLOCK + 999, false);
    flip_byte(x.path[1], block_byte(7, BLOCK, 123));
    data_stats a, b;
    data_get_stats(x.ds, &a);
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 10007);
    data_get_stats(x.ds, &b);
    cr_expect_eq(b.corrupt_blocks - a.corrupt_blocks, 1);
    cr_expect_eq(b.degraded_reads - a.degraded_reads, 1);
    cr_expect_eq(b.missing_shards, a.missing_shards);
    /* Whole-stripe reads (the direct-to-caller path) too: one bad block, one count. */
    data_get_stats(x.ds, &a);
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 4 * BLOCK);
    data_get_stats(x.ds, &b);
    cr_expect_eq(b.corrupt_blocks - a.corrupt_blocks, 1);
    /* Only the damaged stripe, from the middle. */
    data_reader *r;
    cr_assert_eq(data_reader_open(x.ds, x.vid, &x.l, (int64_t)x.len, &r), 0);
    unsigned char buf[300];
    uint64_t off = 7 * 4 * BLOCK + BLOCK + 50;
    cr_assert_eq(read_range(r, off, buf, sizeof buf), (ssize_t)sizeof buf);
    cr_expect(memcmp(buf, x.data + off, sizeof buf) == 0);
    data_reader_close(r);
    damaged_teardown(&x);
}

/* The checksum itself damaged, a shard truncated, the last (short) block damaged. */
Test(degraded, flipped_checksum_truncated_shard_and_last_block) {
    damaged x;
    damaged_setup(&x, "crc", 6, 4, 2, 9 * 4 * BLOCK + 5001, false);
    flip_byte(x.path[2], (off_t)(4 * (CRC_LEN + BLOCK) + 1)); /* stripe 4's CRC */
    expect_object_all(x.ds, x.vid, &x.l, x.data, x.len);
    damaged_restore(&x);

    cr_assert_eq(truncate(x.path[0], (off_t)(3 * (CRC_LEN + BLOCK) + 100)), 0);
    expect_object_all(x.ds, x.vid, &x.l, x.data, x.len);
    damaged_restore(&x);

    /* Last stripe: 5001 bytes over 4 blocks of 1251. */
    flip_byte(x.path[3], block_byte(9, BLOCK, 1250));
    expect_object_all(x.ds, x.vid, &x.l, x.data, x.len);
    damaged_restore(&x);

    cr_assert_eq(truncate(x.path[1], (off_t)x.saved_len[1] - 1), 0);
    expect_object_all(x.ds, x.vid, &x.l, x.data, x.len);
    damaged_restore(&x);

    data_stats st;
    data_get_stats(x.ds, &st);
    cr_expect_geq(st.corrupt_blocks, 4);
    damaged_teardown(&x);
}

/* Damage to parity alone does not slow or fail a read. */
Test(degraded, damaged_parity_alone) {
    damaged x;
    damaged_setup(&x, "par", 6, 4, 2, 6 * 4 * BLOCK, false);
    cr_assert_eq(unlink(x.path[4]), 0);
    flip_byte(x.path[5], block_byte(2, BLOCK, 9));
    expect_object_all(x.ds, x.vid, &x.l, x.data, x.len);
    damaged_teardown(&x);
}

/* Reads the whole object with single data_reader_read calls; every byte
 * returned must be the stored byte.  A failed read skips to the next stripe.
 * Returns the first error (0 if none) and counts the failed reads. */
static int read_all_checked(damaged *x, int *eio_reads) {
    data_reader *r;
    int rc = data_reader_open(x->ds, x->vid, &x->l, (int64_t)x->len, &r);
    if (rc != 0) return rc;
    const size_t piece = 10007, stripe = (size_t)x->l.k * x->l.block;
    unsigned char *buf = malloc(piece);
    *eio_reads = 0;
    int first_err = 0;
    size_t off = 0;
    while (off < x->len) {
        size_t n = x->len - off < piece ? x->len - off : piece;
        ssize_t got = data_reader_read(r, off, buf, n);
        if (got < 0) {
            cr_expect_eq(got, CAIRN_EIO);
            (*eio_reads)++;
            if (!first_err) first_err = (int)got;
            off = (off / stripe + 1) * stripe;
            continue;
        }
        cr_assert(got > 0 && (size_t)got <= n, "read at %zu returned %zd", off, got);
        cr_assert(memcmp(buf, x->data + off, (size_t)got) == 0, "wrong bytes at %zu", off);
        off += (size_t)got;
    }
    free(buf);
    data_reader_close(r);
    return first_err;
}

Test(degraded, more_than_m_missing) {
    damaged x;
    damaged_setup(&x, "lost", 6, 4, 2, 11 * 4 * BLOCK + 1, false);
    for (int i = 0; i < 6; i++) {
        for (int j = i + 1; j < 6; j++)
            for (int z = j + 1; z < 6; z++) {
                unlink(x.path[i]);
                unlink(x.path[j]);
                unlink(x.path[z]);
                data_reader *r = NULL;
                int eio = 0;
                int rc = data_reader_open(x.ds, x.vid, &x.l, (int64_t)x.len, &r);
                if (rc == 0) {
                    data_reader_close(r);
                    rc = read_all_checked(&x, &eio);
                    cr_expect(eio > 0, "shards %d,%d,%d gone but every read succeeded", i, j, z);
                }
                cr_expect_eq(rc, CAIRN_EIO, "shards %d,%d,%d gone: %d", i, j, z, rc);
                damaged_restore(&x);
            }
    }
    /* Every shard gone: the version does not exist. */
    for (int i = 0; i < 6; i++) unlink(x.path[i]);
    data_reader *r = NULL;
    cr_expect_eq(data_reader_open(x.ds, x.vid, &x.l, (int64_t)x.len, &r), CAIRN_ENOTFOUND);
    damaged_teardown(&x);
}

/* Three bad blocks in one stripe of 4+2: that stripe fails with CAIRN_EIO,
 * the other stripes still read exact. */
Test(degraded, more_than_m_corrupt_in_one_stripe) {
    damaged x;
    damaged_setup(&x, "c3", 6, 4, 2, 12 * 4 * BLOCK, false);
    const int bad[] = {0, 2, 5};
    for (int i = 0; i < 3; i++) flip_byte(x.path[bad[i]], block_byte(5, BLOCK, 100));
    int eio = 0;
    cr_expect_eq(read_all_checked(&x, &eio), CAIRN_EIO);
    cr_expect_gt(eio, 0);
    /* Reads that do not touch stripe 5 are exact. */
    data_reader *r;
    cr_assert_eq(data_reader_open(x.ds, x.vid, &x.l, (int64_t)x.len, &r), 0);
    unsigned char *buf = malloc(4 * BLOCK);
    cr_expect_eq(read_range(r, 0, buf, 4 * BLOCK), (ssize_t)(4 * BLOCK));
    cr_expect(memcmp(buf, x.data, 4 * BLOCK) == 0);
    cr_expect_eq(data_reader_read(r, 5 * 4 * BLOCK + 10, buf, 100), CAIRN_EIO);
    /* data.h: CAIRN_EIO "when a stripe has fewer than k good blocks": the
     * stripes after the lost one are still readable through the same reader. */
    ssize_t got = read_range(r, 6 * 4 * BLOCK, buf, 4 * BLOCK);
    cr_expect_eq(got, (ssize_t)(4 * BLOCK), "stripe 6 after the lost stripe 5: %zd", got);
    if (got == (ssize_t)(4 * BLOCK)) cr_expect(memcmp(buf, x.data + 6 * 4 * BLOCK, 4 * BLOCK) == 0);
    free(buf);
    data_reader_close(r);
    damaged_teardown(&x);
}

/* 1+0 has no redundancy: a corrupt block is an error, not wrong bytes. */
Test(degraded, single_drive_corruption_is_an_error) {
    damaged x;
    damaged_setup(&x, "one", 1, 1, 0, 10 * BLOCK + 5, false);
    flip_byte(x.path[0], block_byte(3, BLOCK, 0));
    int eio = 0;
    cr_expect_eq(read_all_checked(&x, &eio), CAIRN_EIO);
    damaged_restore(&x);
    cr_assert_eq(unlink(x.path[0]), 0);
    data_reader *r = NULL;
    cr_expect_eq(data_reader_open(x.ds, x.vid, &x.l, (int64_t)x.len, &r), CAIRN_ENOTFOUND);
    damaged_teardown(&x);
}

/* data.h: "a missing, short or corrupt block is rebuilt from parity (up to m
 * per stripe)".  One bad block in each of several stripes, on a different
 * shard each time, is at most m per stripe. */
Test(degraded, up_to_m_bad_blocks_per_stripe_on_different_shards) {
    damaged x;
    damaged_setup(&x, "ps", 3, 2, 1, 8 * 2 * BLOCK + 10, false);
    flip_byte(x.path[0], block_byte(1, BLOCK, 5));   /* stripe 1: data shard 0 */
    flip_byte(x.path[1], block_byte(4, BLOCK, 5));   /* stripe 4: data shard 1 */
    flip_byte(x.path[2], block_byte(6, BLOCK, 5));   /* stripe 6: parity */
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 10007);
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 2 * BLOCK);
    int repaired = -1;
    cr_expect_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), 0);
    cr_expect_eq(repaired, 3);
    expect_shards_original(&x);
    damaged_teardown(&x);
}

/* ======================================================================================= */
/* healing                                                                                   */
/* ======================================================================================= */

Test(heal, rewrites_missing_and_corrupt_shards) {
    damaged x;
    damaged_setup(&x, "h", 6, 4, 2, 5 * MIB + 321, false);
    cr_assert_eq(unlink(x.path[1]), 0);                 /* a data shard gone */
    flip_byte(x.path[4], block_byte(77, BLOCK, 4000));  /* a parity block rotten */
    int repaired = -1;
    cr_assert_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), 0);
    cr_expect_eq(repaired, 2);
    expect_shards_original(&x);
    data_stats st;
    data_get_stats(x.ds, &st);
    cr_expect_eq(st.healed_shards, 2);
    /* Idempotent. */
    cr_assert_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), 0);
    cr_expect_eq(repaired, 0);
    expect_shards_original(&x);
    cr_expect_eq(data_tmp_count(x.ds), 0);
    /* And a clean read needs no parity. */
    data_stats a, b;
    data_get_stats(x.ds, &a);
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 65536);
    data_get_stats(x.ds, &b);
    cr_expect_eq(b.degraded_reads, a.degraded_reads);
    cr_expect_eq(b.corrupt_blocks, a.corrupt_blocks);
    damaged_teardown(&x);
}

Test(heal, check_reports_damage_without_changing_anything) {
    damaged x;
    damaged_setup(&x, "chk", 6, 4, 2, 40 * 4 * BLOCK + 99, false);
    data_check_result r;
    cr_assert_eq(data_check(x.ds, x.vid, &x.l, (int64_t)x.len, &r), 0);
    cr_assert_eq(r.n, 6);
    for (int i = 0; i < 6; i++) cr_expect(!r.missing[i] && !r.corrupt[i] && !r.unreachable[i], "shard %d", i);
    cr_expect_not(r.lost);
    cr_assert_eq(unlink(x.path[0]), 0);                      /* missing */
    flip_byte(x.path[2], block_byte(13, BLOCK, 7));          /* corrupt */
    int fd = open(x.path[5], O_WRONLY | O_APPEND);           /* too long */
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "junk", 4), 4);
    close(fd);
    cr_assert_eq(data_check(x.ds, x.vid, &x.l, (int64_t)x.len, &r), 0);
    cr_expect(r.missing[0]);
    cr_expect(r.corrupt[2]);
    cr_expect(r.corrupt[5], "a shard longer than its geometry is damage");
    cr_expect(!r.missing[1] && !r.corrupt[1] && !r.corrupt[3] && !r.corrupt[4]);
    cr_expect_not(r.lost, "three bad shards, but never more than two in one stripe");
    cr_expect_not(exists(x.path[0]), "check repairs nothing");
    /* Heal fixes all three, the long one included. */
    int repaired = -1;
    cr_assert_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), 0);
    cr_expect_eq(repaired, 3);
    expect_shards_original(&x);
    cr_assert_eq(data_check(x.ds, x.vid, &x.l, (int64_t)x.len, &r), 0);
    for (int i = 0; i < 6; i++) cr_expect(!r.missing[i] && !r.corrupt[i], "shard %d after heal", i);
    /* A third shard gone in the same stripes: lost. */
    cr_assert_eq(unlink(x.path[0]), 0);
    cr_assert_eq(unlink(x.path[1]), 0);
    cr_assert_eq(unlink(x.path[3]), 0);
    cr_assert_eq(data_check(x.ds, x.vid, &x.l, (int64_t)x.len, &r), 0);
    cr_expect(r.lost);
    char bad[33] = "not a version";
    cr_expect_eq(data_check(x.ds, bad, &x.l, (int64_t)x.len, &r), CAIRN_EINVAL);
    damaged_teardown(&x);
}

Test(heal, truncated_shard_and_whole_drive_wiped) {
    damaged x;
    damaged_setup(&x, "hw", 6, 4, 2, 30 * 4 * BLOCK + 17, false);
    cr_assert_eq(truncate(x.path[3], 5), 0);
    /* The drive of shard 5 loses its whole objects/<vv> directory. */
    char dir[PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s", x.path[5]);
    *strrchr(dir, '/') = '\0';
    cr_assert_eq(unlink(x.path[5]), 0);
    cr_assert_eq(rmdir(dir), 0, "%s: %s", dir, strerror(errno));
    int repaired = -1;
    cr_assert_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), 0);
    cr_expect_eq(repaired, 2);
    expect_shards_original(&x);
    damaged_teardown(&x);
}

Test(heal, more_than_m_bad_fails_and_changes_nothing) {
    damaged x;
    damaged_setup(&x, "hf", 6, 4, 2, 7 * 4 * BLOCK + 1, false);
    cr_assert_eq(unlink(x.path[0]), 0);
    cr_assert_eq(unlink(x.path[2]), 0);
    flip_byte(x.path[5], block_byte(1, BLOCK, 1));
    int repaired = -1;
    cr_expect_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), CAIRN_EIO);
    cr_expect_eq(repaired, 0);
    cr_expect(!exists(x.path[0]) && !exists(x.path[2]));
    cr_expect_eq(data_tmp_count(x.ds), 0);
    for (int i = 1; i < 6; i++) {
        if (i == 2) continue;
        size_t n;
        unsigned char *now = slurp(x.path[i], &n);
        if (i == 5) cr_expect(memcmp(now, x.saved[i], n) != 0, "the damaged shard was silently replaced");
        else cr_expect(n == x.saved_len[i] && memcmp(now, x.saved[i], n) == 0, "shard %d changed", i);
        free(now);
    }
    damaged_teardown(&x);
}

Test(heal, zero_byte_object) {
    damaged x;
    damaged_setup(&x, "h0", 3, 2, 1, 0, false);
    cr_assert_eq(unlink(x.path[1]), 0);
    int repaired = -1;
    cr_assert_eq(data_heal(x.ds, x.vid, &x.l, 0, &repaired), 0);
    cr_expect_eq(repaired, 1);
    expect_shards_original(&x);
    damaged_teardown(&x);
}

/* A degraded read queues the version; the background healer fixes it. */
Test(heal, background_after_degraded_read) {
    damaged x;
    damaged_setup(&x, "hb", 6, 4, 2, 40 * 4 * BLOCK + 3, true);
    cr_assert_eq(unlink(x.path[2]), 0);
    flip_byte(x.path[0], block_byte(11, BLOCK, 11));
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 10007);
    data_heal_drain(x.ds);
    expect_shards_original(&x);
    data_stats st;
    data_get_stats(x.ds, &st);
    cr_expect_eq(st.healed_shards, 2);
    cr_expect_eq(st.heal_failures, 0);
    cr_expect_eq(data_tmp_count(x.ds), 0);
    damaged_teardown(&x);
}

/* An explicit heal (the scrubber's call) repairs what it finds itself: it
 * must not queue the same version for the background healer, nor have a
 * failure counted twice. */
Test(heal, explicit_heal_queues_nothing) {
    damaged x;
    damaged_setup(&x, "hq", 6, 4, 2, 9 * 4 * BLOCK + 100, false);
    flip_byte(x.path[2], block_byte(4, BLOCK, 64));
    int repaired = -1;
    cr_assert_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), 0);
    cr_expect_eq(repaired, 1);
    data_heal_drain(x.ds);
    cr_expect_eq(x.refused_heals, 0, "a successful heal queued another heal of the version");
    /* Beyond repair: data_heal says so; nothing is queued to fail again. */
    flip_byte(x.path[0], block_byte(3, BLOCK, 1));
    flip_byte(x.path[1], block_byte(3, BLOCK, 2));
    flip_byte(x.path[4], block_byte(3, BLOCK, 3));
    cr_expect_eq(data_heal(x.ds, x.vid, &x.l, (int64_t)x.len, &repaired), CAIRN_EIO);
    data_heal_drain(x.ds);
    cr_expect_eq(x.refused_heals, 0, "a failed heal queued another heal of the version");
    damaged_teardown(&x);
}

/* The heal check can veto a heal (a deleted object must not come back). */
Test(heal, check_callback_vetoes) {
    damaged x;
    damaged_setup(&x, "hv", 6, 4, 2, 5 * 4 * BLOCK, false);
    cr_assert_eq(unlink(x.path[1]), 0);
    expect_object(x.ds, x.vid, &x.l, x.data, x.len, 10007);
    data_heal_drain(x.ds);
    cr_expect_eq(x.refused_heals, 1);
    cr_expect(!exists(x.path[1]), "a vetoed heal rewrote the shard");
    data_stats st;
    data_get_stats(x.ds, &st);
    cr_expect_eq(st.healed_shards, 0);
    damaged_teardown(&x);
}

/* The heal queue: a version is queued once however often it is read, and a
 * full queue drops (and counts) rather than grows.  The heal check blocks the
 * healer until released, so the queue's contents are deterministic. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, released;
    int calls;
} gate;

static bool gate_check(void *ud, const char *version_id) {
    (void)version_id;
    gate *g = ud;
    pthread_mutex_lock(&g->mu);
    g->calls++;
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->released) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return false;
}

Test(healqueue, dedupes_and_is_bounded) {
    drives d;
    drives_make(&d, "q", 2);
    data_store *ds = store_open(&d, 2, 1, 1, BLOCK, false, NULL);
    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    data_set_heal_check(ds, gate_check, &g);
    enum { N = 1 + 1024 + 3 }; /* one in the healer, a full queue, three over */
    static char vids[N][33];
    static data_layout ls[N];
    for (int i = 0; i < N; i++) {
        new_version(vids[i]);
        data_writer *w;
        cr_assert_eq(data_writer_open(ds, vids[i], NULL, NULL, &w), 0);
        cr_assert_eq(data_writer_write(w, "x", 1), 0);
        cr_assert_eq(data_writer_commit(w, &ls[i]), 0);
        char p[PATH_MAX * 2];
        shard_file(&d, &ls[i], vids[i], 1, p, sizeof p);
        cr_assert_eq(unlink(p), 0);
    }
    unsigned char b;
    for (int i = 0; i < N; i++) {
        /* Once the healer holds vids[0], a few versions are read three times. */
        for (int rep = 0; rep < (i >= 1 && i <= 5 ? 3 : 1); rep++) {
            data_reader *r;
            cr_assert_eq(data_reader_open(ds, vids[i], &ls[i], 1, &r), 0);
            cr_assert_eq(data_reader_read(r, 0, &b, 1), 1);
            cr_assert_eq(b, 'x');
            data_reader_close(r);
        }
        if (i == 0) { /* wait (no deadline needed: it is a condition) until the healer holds it */
            pthread_mutex_lock(&g.mu);
            while (!g.entered) pthread_cond_wait(&g.cv, &g.mu);
            pthread_mutex_unlock(&g.mu);
        }
    }
    data_stats st;
    data_get_stats(ds, &st);
    cr_expect_eq(st.heals_dropped, 3);
    pthread_mutex_lock(&g.mu);
    g.released = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    data_heal_drain(ds);
    cr_expect_eq(g.calls, 1 + 1024, "the healer was asked %d times", g.calls);
    data_close(ds);
}

/* ======================================================================================= */
/* delete, abort, temp files                                                                 */
/* ======================================================================================= */

Test(lifecycle, delete_removes_every_shard) {
    drives d;
    drives_make(&d, "del", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    char vid[33];
    new_version(vid);
    size_t len = 100000;
    unsigned char *data = random_bytes(len, 1);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    cr_expect_eq(count_object_files(&d), 6);
    cr_assert_eq(data_delete(ds, vid, &l), 0);
    cr_expect_eq(count_object_files(&d), 0);
    data_reader *r = NULL;
    cr_expect_eq(data_reader_open(ds, vid, &l, (int64_t)len, &r), CAIRN_ENOTFOUND);
    cr_expect_eq(data_delete(ds, vid, &l), 0); /* already gone: fine */
    free(data);
    data_close(ds);
}

Test(lifecycle, abort_leaves_nothing) {
    drives d;
    drives_make(&d, "ab", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    size_t len = 50 * 4 * BLOCK + 9;
    unsigned char *data = random_bytes(len, 2);
    for (int when = 0; when < 4; when++) {
        char vid[33];
        new_version(vid);
        tap_state t = {.expect = data, .len = len, .hash = FNV_INIT};
        data_writer *w;
        cr_assert_eq(data_writer_open(ds, vid, tap_fn, &t, &w), 0);
        cr_expect_eq(data_tmp_count(ds), 6);
        if (when >= 1) cr_assert_eq(data_writer_write(w, data, len / 2), 0);  /* pipeline running */
        if (when >= 2) cr_assert_eq(data_writer_write(w, data + len / 2, len - len / 2), 0);
        if (when >= 3) cr_assert_eq(data_writer_finish(w), 0);
        data_writer_abort(w);
        cr_expect_eq(data_tmp_count(ds), 0, "abort after step %d left temp files", when);
        cr_expect_eq(count_object_files(&d), 0);
    }
    free(data);
    data_close(ds);
}

Test(lifecycle, reopen_removes_stale_temp_files) {
    drives d;
    drives_make(&d, "re", 4);
    int cleaned = -1;
    data_store *ds = store_open(&d, 4, 2, 2, BLOCK, false, &cleaned);
    cr_expect_eq(cleaned, 0);
    /* A crash mid-write leaves temp shards; simulate three. */
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/tmp/deadbeef00", d.path[0]);
    spit(p, "half a shard", 12);
    snprintf(p, sizeof p, "%s/tmp/deadbeef01", d.path[0]);
    spit(p, "", 0);
    snprintf(p, sizeof p, "%s/tmp/deadbeef02", d.path[3]);
    spit(p, "x", 1);
    cr_expect_eq(data_tmp_count(ds), 3);
    /* And a committed object that must survive the cleanup. */
    char vid[33];
    new_version(vid);
    unsigned char *data = random_bytes(70000, 9);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, 70000, &l), 0);
    data_close(ds);
    ds = store_open(&d, 4, 2, 2, BLOCK, false, &cleaned);
    cr_expect_eq(cleaned, 3);
    cr_expect_eq(data_tmp_count(ds), 0);
    expect_object_all(ds, vid, &l, data, 70000);
    data_close(ds);
    ds = store_open(&d, 4, 2, 2, BLOCK, false, &cleaned);
    cr_expect_eq(cleaned, 0);
    data_close(ds);
    free(data);
}

/* Every drive failing mid-write (here: the file size limit, so every shard's
 * pwritev fails with EFBIG): the write reports an error, and after abort
 * nothing is left on any drive. */
Test(baddrive, every_drive_fails_mid_write) {
    drives d;
    drives_make(&d, "all", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    size_t len = 2 * MIB;
    unsigned char *data = random_bytes(len, 4);
    char vid[33];
    new_version(vid);
    data_writer *w;
    cr_assert_eq(data_writer_open(ds, vid, NULL, NULL, &w), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim = {.rlim_cur = 100000, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += 65536) rc = data_writer_write(w, data + off, 65536);
    if (rc == 0) rc = data_writer_finish(w);
    setrlimit(RLIMIT_FSIZE, &old);
    cr_expect_lt(rc, 0, "a write whose every shard failed reported success");
    data_writer_abort(w);
    cr_expect_eq(data_tmp_count(ds), 0);
    cr_expect_eq(count_object_files(&d), 0);
    free(data);
    data_close(ds);
}

/* ======================================================================================= */
/* failing drives                                                                             */
/* ======================================================================================= */

/* Replaces a directory with a regular file of the same name. */
static void dir_to_file(const char *path) {
    char aside[PATH_MAX + 16];
    snprintf(aside, sizeof aside, "%s.aside", path);
    cr_assert_eq(rename(path, aside), 0, "%s: %s", path, strerror(errno));
    spit(path, "not a directory", 15);
}

static void file_to_dir(const char *path) {
    char aside[PATH_MAX + 16];
    snprintf(aside, sizeof aside, "%s.aside", path);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rename(aside, path), 0);
}

Test(baddrive, one_drive_gone_before_the_write) {
    drives d;
    drives_make(&d, "bd", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    dir_to_file(d.path[2]);  /* every 4+2 placement on 6 drives uses drive 2 */
    size_t len = 30 * 4 * BLOCK + 77;
    unsigned char *data = random_bytes(len, 5);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0, "one bad drive of six lost a 4+2 write");
    cr_expect_eq(data_tmp_count(ds), 0);
    cr_expect_eq(count_object_files(&d), 5);
    expect_object_all(ds, vid, &l, data, len);
    cr_expect_lt(data_check_writable(ds), 0);

    /* A second bad drive: below write quorum (k+1 = 5). */
    dir_to_file(d.path[4]);
    char vid2[33];
    new_version(vid2);
    data_writer *w = NULL;
    int rc = data_writer_open(ds, vid2, NULL, NULL, &w);
    cr_expect_lt(rc, 0, "4+2 write opened with two of six drives gone");
    if (rc == 0) data_writer_abort(w);
    cr_expect_eq(data_tmp_count(ds), 0);
    /* The earlier object still reads. */
    expect_object(ds, vid, &l, data, len, 10007);

    /* Drives back: heal restores the shard the write could not place. */
    file_to_dir(d.path[2]);
    file_to_dir(d.path[4]);
    cr_expect_eq(count_object_files(&d), 5, "the refused write left shards behind");
    int repaired = -1;
    cr_expect_eq(data_heal(ds, vid, &l, (int64_t)len, &repaired), 0);
    cr_expect_eq(repaired, 1);
    cr_expect_eq(count_object_files(&d), 6);
    free(data);
    data_close(ds);
}

Test(baddrive, temp_dir_replaced_by_a_file) {
    drives d;
    drives_make(&d, "bt", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s/tmp", d.path[5]);
    dir_to_file(tmp);
    size_t len = 12345;
    unsigned char *data = random_bytes(len, 6);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    expect_object_all(ds, vid, &l, data, len);
    free(data);
    data_close(ds);
}

/* A drive that fails between open and commit (its objects/ directory becomes
 * unusable) is dropped at commit; with two such drives the commit fails and
 * leaves neither shards nor temp files. */
Test(baddrive, drive_fails_during_the_write) {
    drives d;
    drives_make(&d, "bw", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    size_t len = 20 * 4 * BLOCK + 1;
    unsigned char *data = random_bytes(len, 8);
    char objs[2][PATH_MAX + 16];
    snprintf(objs[0], sizeof objs[0], "%s/objects", d.path[1]);
    snprintf(objs[1], sizeof objs[1], "%s/objects", d.path[3]);

    char vid[33];
    new_version(vid);
    data_writer *w;
    cr_assert_eq(data_writer_open(ds, vid, NULL, NULL, &w), 0);
    cr_assert_eq(data_writer_write(w, data, len / 2), 0);
    dir_to_file(objs[0]);
    cr_assert_eq(data_writer_write(w, data + len / 2, len - len / 2), 0);
    data_layout l;
    cr_assert_eq(data_writer_commit(w, &l), 0, "one failed drive of six lost a 4+2 write");
    file_to_dir(objs[0]);
    cr_expect_eq(data_tmp_count(ds), 0);
    cr_expect_eq(count_object_files(&d), 5);
    expect_object_all(ds, vid, &l, data, len);

    char vid2[33];
    new_version(vid2);
    cr_assert_eq(data_writer_open(ds, vid2, NULL, NULL, &w), 0);
    cr_assert_eq(data_writer_write(w, data, len), 0);
    dir_to_file(objs[0]);
    dir_to_file(objs[1]);
    data_layout l2;
    cr_expect_lt(data_writer_commit(w, &l2), 0, "commit succeeded on 4 of 6 drives");
    file_to_dir(objs[0]);
    file_to_dir(objs[1]);
    cr_expect_eq(data_tmp_count(ds), 0);
    cr_expect_eq(count_object_files(&d), 5, "a failed commit left shards behind");
    free(data);
    data_close(ds);
}

static int count_walked(void *ud, const char *drive_id, const char *version_id, int index, int64_t age_ms) {
    (void)drive_id;
    (void)version_id;
    (void)index;
    (void)age_ms;
    (*(int *)ud)++;
    return 0;
}

/* A fan-out directory that cannot be read (here a file where the directory
 * belongs) makes its drive unreachable for the walk: it used to be read as
 * empty, so fsck and orphan collection saw fewer shards than there are. */
Test(baddrive, unreadable_fanout_directory_makes_the_drive_unreachable) {
    drives d;
    drives_make(&d, "fan", 6);
    data_store *ds = store_open(&d, 6, 4, 2, BLOCK, false, NULL);
    unsigned char *data = random_bytes(3 * BLOCK, 9);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, 3 * BLOCK, &l), 0);
    int walked = 0, unreachable = -1;
    cr_assert_eq(data_walk_shards(ds, count_walked, &walked, &unreachable), 0);
    cr_expect_eq(walked, 6);
    cr_expect_eq(unreachable, 0);
    char fan[PATH_MAX + 16];
    snprintf(fan, sizeof fan, "%s/objects/%c%c", d.path[0], vid[0] == '0' ? '1' : '0', '0');
    FILE *f = fopen(fan, "w");
    cr_assert_not_null(f);
    fclose(f);
    walked = 0;
    cr_assert_eq(data_walk_shards(ds, count_walked, &walked, &unreachable), 0);
    cr_expect_eq(unreachable, 1, "a drive with an unreadable fan-out directory was listed as complete");
    free(data);
    data_close(ds);
}

/* ======================================================================================= */
/* edges: options, foreign ids, optional outputs, other filesystems and storage nodes       */
/* ======================================================================================= */

TestSuite(edges, .init = suite_init, .fini = suite_fini, .timeout = 60);

/* The ids and directories of a store's drives, in the store's order. */
typedef struct {
    char id[32][DATA_DRIVE_ID_LEN + 1];
    int n, up;
} drive_ids;

static void note_drive(void *ud, const char *id, const char *where, bool up) {
    (void)where;
    drive_ids *x = ud;
    snprintf(x->id[x->n++], sizeof x->id[0], "%s", id);
    x->up += up;
}

static int list_drives(data_store *ds, drive_ids *x) {
    memset(x, 0, sizeof *x);
    return data_check_drives(ds, note_drive, x);
}

#define FOREIGN_ID "fedcba9876543210" /* a drive no store here has */

Test(layout, block_over_64_mib_is_rejected) {
    data_layout l;
    cr_expect_eq(data_layout_parse("1+0:67108864:0123456789abcdef", &l), 0);
    cr_expect_eq(l.block, 64u << 20);
    cr_expect_eq(data_layout_parse("1+0:67108865:0123456789abcdef", &l), CAIRN_EINVAL);
}

Test(edges, open_rejects_options_that_cannot_work) {
    drives d;
    drives_make(&d, "opts", 4);
    const char *nodes[] = {"http://127.0.0.1:1"};
    data_store *ds = NULL;
    /* Drives and nodes at once. */
    data_options o = {.drives = d.ptr, .ndrives = 1, .nodes = nodes, .nnodes = 1, .k = 1, .m = 0};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    /* More drives than a store can hold (checked before any is opened). */
    o = (data_options){.drives = d.ptr, .ndrives = 1025};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    /* A negative k is not "the default". */
    o = (data_options){.drives = d.ptr, .ndrives = 4, .k = -1, .m = 1};
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EINVAL);
    cr_expect_null(ds);
    cr_expect_not(exists(d.path[0]), "a refused open created a drive");
}

/* Two directories carrying one drive id (a copied disk): the second one is
 * the same drive as far as every layout is concerned, so the open fails. */
Test(edges, two_directories_with_one_drive_id) {
    drives d;
    drives_make(&d, "cloned", 2);
    data_store *ds = store_open(&d, 2, 1, 1, BLOCK, false, NULL);
    data_close(ds);
    char id0[PATH_MAX + 16], id1[PATH_MAX + 16];
    snprintf(id0, sizeof id0, "%s/drive-id", d.path[0]);
    snprintf(id1, sizeof id1, "%s/drive-id", d.path[1]);
    size_t n0, n1;
    unsigned char *own = slurp(id1, &n1), *copy = slurp(id0, &n0);
    spit(id1, copy, n0);
    data_options o = {.drives = d.ptr, .ndrives = 2, .k = 1, .m = 1, .block = BLOCK};
    ds = NULL;
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EEXIST);
    cr_expect_null(ds);
    spit(id1, own, n1);
    ds = store_open(&d, 2, 1, 1, BLOCK, false, NULL);
    drive_ids x;
    cr_expect_eq(list_drives(ds, &x), 2);
    cr_expect_str_neq(x.id[0], x.id[1]);
    data_close(ds);
    free(own);
    free(copy);
}

/* A drive held by another opener is busy, not "listed twice", even when an
 * earlier drive of the list sits on another filesystem. */
Test(edges, busy_drive_next_to_one_on_another_filesystem) {
    struct stat shm, tmp;
    cr_assert_eq(stat(root, &tmp), 0);
    if (stat("/dev/shm", &shm) != 0 || access("/dev/shm", W_OK) != 0 || shm.st_dev == tmp.st_dev)
        cr_skip_test("no second filesystem at /dev/shm");
    char shm_dir[] = "/dev/shm/cairn-test-store-busy.XXXXXX";
    cr_assert_not_null(mkdtemp(shm_dir));
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof a, "%s/d0", shm_dir);
    snprintf(b, sizeof b, "%s/busy/d1", root);
    drive *held = NULL;
    cr_assert_eq(drive_local_open(b, false, &held, NULL), 0);
    const char *list[] = {a, b};
    data_options o = {.drives = list, .ndrives = 2, .k = 1, .m = 1, .block = BLOCK};
    data_store *ds = NULL;
    cr_expect_eq(data_open(&o, &ds, NULL), CAIRN_EBUSY);
    drive_close(held);
    /* Released: the list opens (in either order), and free space is the
     * smaller of the two. */
    const char *reversed[] = {b, a};
    o.drives = reversed;
    cr_assert_eq(data_open(&o, &ds, NULL), 0);
    int64_t f = -1;
    cr_assert_eq(data_free_bytes(ds, &f), 0);
    struct statvfs va, vb;
    cr_assert_eq(statvfs(a, &va), 0);
    cr_assert_eq(statvfs(b, &vb), 0);
    int64_t fa = (int64_t)va.f_bavail * (int64_t)va.f_frsize, fb = (int64_t)vb.f_bavail * (int64_t)vb.f_frsize;
    int64_t lo = fa < fb ? fa : fb;
    /* Other processes write meanwhile: within 64 MiB of a fresh look. */
    cr_expect(f > lo - (64 << 20) && f < lo + (64 << 20), "free %lld, smaller drive %lld", (long long)f,
              (long long)lo);
    data_close(ds);
    nftw(shm_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A drive whose directory vanished cannot say how much room it has: free
 * space is unknown (an error), not the other drives' minimum. */
Test(edges, free_bytes_fails_when_a_drive_directory_is_gone) {
    drives d;
    drives_make(&d, "gone", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    int64_t f = -1;
    cr_assert_eq(data_free_bytes(ds, &f), 0);
    cr_expect_gt(f, 0);
    char aside[PATH_MAX + 16];
    snprintf(aside, sizeof aside, "%s.aside", d.path[1]);
    cr_assert_eq(rename(d.path[1], aside), 0);
    f = -1;
    cr_expect_eq(data_free_bytes(ds, &f), CAIRN_EIO);
    cr_expect_eq(f, -1);
    drive_ids x;
    cr_expect_eq(list_drives(ds, &x), 2);
    cr_expect_eq(data_check_drives(ds, NULL, NULL), 2, "the count without a callback");
    cr_assert_eq(rename(aside, d.path[1]), 0);
    cr_expect_eq(data_check_drives(ds, NULL, NULL), 3);
    data_close(ds);
}

/* Layouts whose geometry no store could have written are refused. */
Test(edges, readers_refuse_impossible_geometry) {
    drives d;
    drives_make(&d, "geo", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    char vid[33];
    new_version(vid);
    data_layout l = {.k = 0, .m = 1, .block = BLOCK};
    fill_ids(&l);
    data_reader *r = NULL;
    cr_expect_eq(data_reader_open(ds, vid, &l, 10, &r), CAIRN_EINVAL);
    l = (data_layout){.k = 10, .m = 10, .block = BLOCK};
    fill_ids(&l);
    cr_expect_eq(data_reader_open(ds, vid, &l, 10, &r), CAIRN_EINVAL);
    l = (data_layout){.k = 3, .m = -1, .block = BLOCK};
    fill_ids(&l);
    cr_expect_eq(data_reader_open(ds, vid, &l, 10, &r), CAIRN_EINVAL, "a negative parity count");
    data_check_result res;
    cr_expect_eq(data_check(ds, vid, &l, 10, &res), CAIRN_EINVAL);
    cr_expect_null(r);
    data_close(ds);
}

/* With fewer placeable drives than shards, a write still goes to every drive
 * (a drained one included) rather than failing. */
Test(edges, too_few_placeable_drives_fall_back_to_all) {
    drives d;
    drives_make(&d, "drain", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    drive_ids x;
    cr_assert_eq(list_drives(ds, &x), 3);
    cr_assert_eq(data_set_placeable(ds, x.id[1], false), 0);
    cr_expect_eq(data_set_placeable(ds, FOREIGN_ID, false), CAIRN_ENOTFOUND);
    size_t len = 3 * 2 * BLOCK + 11;
    unsigned char *data = random_bytes(len, 21);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    check_layout(&d, &l, 2, 1, BLOCK);
    bool on_drained = false;
    for (int i = 0; i < 3; i++) on_drained |= !strcmp(l.drive_ids[i], x.id[1]);
    cr_expect(on_drained, "the drained drive was not used though every drive was needed");
    expect_object_all(ds, vid, &l, data, len);
    free(data);
    data_close(ds);
}

/* Commit after a write that lost quorum returns the error and keeps
 * nothing; a commit may also be told to return no layout. */
Test(edges, commit_after_a_failed_write_and_without_a_layout) {
    drives d;
    drives_make(&d, "cmt", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    size_t len = 2 * MIB;
    unsigned char *data = random_bytes(len, 22);
    char vid[33];
    new_version(vid);
    data_writer *w;
    cr_assert_eq(data_writer_open(ds, vid, NULL, NULL, &w), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = (struct rlimit){.rlim_cur = 100000, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (size_t off = 0; off < len; off += 65536) (void)data_writer_write(w, data + off, 65536);
    int frc = data_writer_finish(w);
    setrlimit(RLIMIT_FSIZE, &old);
    cr_expect_lt(frc, 0);
    data_layout l;
    memset(&l, 0x5a, sizeof l);
    cr_expect_eq(data_writer_commit(w, &l), frc, "commit after a failed finish");
    cr_expect_eq(l.k, 0x5a5a5a5a, "a failed commit filled the layout");
    cr_expect_eq(data_tmp_count(ds), 0);
    cr_expect_eq(count_object_files(&d), 0);

    new_version(vid);
    cr_assert_eq(data_writer_open(ds, vid, NULL, NULL, &w), 0);
    cr_assert_eq(data_writer_write(w, data, 5000), 0);
    cr_expect_eq(data_writer_commit(w, NULL), 0);
    cr_expect_eq(count_object_files(&d), 3);
    cr_expect_eq(data_tmp_count(ds), 0);
    free(data);
    data_close(ds);
}

/* A zero-byte object has no stripes: check judges it by how many shards
 * open, and a heal of one that is gone altogether is no failure. */
Test(edges, check_and_heal_of_a_zero_byte_object) {
    drives d;
    drives_make(&d, "zero", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, (const unsigned char *)"", 0, &l), 0);
    data_check_result res;
    cr_assert_eq(data_check(ds, vid, &l, 0, &res), 0);
    cr_expect_not(res.lost);
    for (int i = 0; i < 3; i++) cr_expect(!res.missing[i] && !res.corrupt[i] && !res.unreachable[i]);
    char p[PATH_MAX * 2];
    for (int i = 0; i < 2; i++) {
        shard_file(&d, &l, vid, i, p, sizeof p);
        cr_assert_eq(unlink(p), 0);
    }
    cr_assert_eq(data_check(ds, vid, &l, 0, &res), 0);
    cr_expect(res.missing[0] && res.missing[1] && !res.missing[2]);
    cr_expect(res.lost, "one of three shards of a 2+1 object is not enough");
    shard_file(&d, &l, vid, 2, p, sizeof p);
    cr_assert_eq(unlink(p), 0);
    data_stats before, after;
    data_get_stats(ds, &before);
    cr_expect_eq(data_heal_logged(ds, vid, &l, 0), 0, "a heal of an object that is gone");
    data_get_stats(ds, &after);
    cr_expect_eq(after.heal_failures, before.heal_failures);
    data_close(ds);
}

/* A shard that opens but cannot be read (here a directory where the file
 * belongs: every read fails) is unreachable, and the object still reads. */
Test(edges, shard_that_cannot_be_read) {
    drives d;
    drives_make(&d, "eisdir", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    size_t len = 4 * 2 * BLOCK + 99;
    unsigned char *data = random_bytes(len, 23);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);
    char p[PATH_MAX * 2];
    shard_file(&d, &l, vid, 0, p, sizeof p);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(mkdir(p, 0750), 0);
    data_check_result res;
    cr_assert_eq(data_check(ds, vid, &l, (int64_t)len, &res), 0);
    cr_expect(res.unreachable[0], "a shard no read succeeds on is not unreachable");
    cr_expect(!res.missing[0]);
    cr_expect(!res.unreachable[1] && !res.unreachable[2] && !res.corrupt[1] && !res.corrupt[2]);
    cr_expect_not(res.lost);
    expect_object_all(ds, vid, &l, data, len);
    cr_assert_eq(rmdir(p), 0);
    free(data);
    data_close(ds);
}

/* Layouts naming a drive the store does not have (a removed node): each
 * operation does what it can with the drives it has. */
Test(edges, layouts_naming_an_unknown_drive) {
    drives d;
    drives_make(&d, "foreign", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    size_t len = 2 * 2 * BLOCK + 5;
    unsigned char *data = random_bytes(len, 24);
    char vid[33];
    new_version(vid);
    data_layout l, want;
    cr_assert_eq(write_object(ds, vid, data, len, &l), 0);

    /* Desired: a shard on an unknown drive moves to the drive left over. */
    data_layout lost = l;
    snprintf(lost.drive_ids[0], sizeof lost.drive_ids[0], "%s", FOREIGN_ID);
    cr_expect(data_desired_layout(ds, vid, &lost, &want));
    for (int i = 0; i < 3; i++) cr_expect_str_eq(want.drive_ids[i], l.drive_ids[i]);
    /* Two shards listed on one drive: the second moves. */
    data_layout twice = l;
    memcpy(twice.drive_ids[1], l.drive_ids[0], sizeof twice.drive_ids[1]);
    cr_expect(data_desired_layout(ds, vid, &twice, &want));
    for (int i = 0; i < 3; i++) cr_expect_str_eq(want.drive_ids[i], l.drive_ids[i]);
    cr_expect_not(data_desired_layout(ds, vid, &l, &want), "a layout where it belongs moves");

    /* Moving onto an unknown drive is refused before anything is written. */
    int moved = -1;
    cr_expect_eq(data_relocate(ds, vid, (int64_t)len, &l, &lost, &moved), CAIRN_EINVAL);
    cr_expect_eq(moved, 0);
    cr_expect_eq(count_object_files(&d), 3);
    cr_expect_eq(data_tmp_count(ds), 0);
    /* Deleting moved shards from an unknown drive removes nothing. */
    cr_expect_eq(data_delete_moved(ds, vid, &lost, &l), 0);
    cr_expect_eq(count_object_files(&d), 3);
    cr_expect_eq(data_remove_shard(ds, FOREIGN_ID, vid, 0), CAIRN_ENOTFOUND);
    cr_expect_eq(count_object_files(&d), 3);
    /* Delete removes the shards on known drives and skips the other. */
    cr_expect_eq(data_delete(ds, vid, &lost), 0);
    cr_expect_eq(count_object_files(&d), 1);
    char p[PATH_MAX * 2];
    shard_file(&d, &l, vid, 0, p, sizeof p);
    cr_expect(exists(p), "the shard the layout did not name went");
    int walked = 0;
    cr_expect_eq(data_walk_shards(ds, count_walked, &walked, NULL), 0);
    cr_expect_eq(walked, 1);
    free(data);
    data_close(ds);
}

/* A fan-out directory replaced by a file holds no shard to remove: removing
 * one there succeeds (the shard is not there), like an absent one. */
Test(edges, remove_where_the_fanout_is_a_file) {
    drives d;
    drives_make(&d, "fanfile", 3);
    data_store *ds = store_open(&d, 3, 2, 1, BLOCK, false, NULL);
    data_set_heal_check(ds, refuse_heal, NULL);
    unsigned char *data = random_bytes(777, 25);
    char vid[33];
    new_version(vid);
    data_layout l;
    cr_assert_eq(write_object(ds, vid, data, 777, &l), 0);
    char fan[PATH_MAX + 16];
    snprintf(fan, sizeof fan, "%s/objects/%.2s", drive_dir(&d, l.drive_ids[1]), vid);
    dir_to_file(fan);
    cr_expect_eq(data_remove_shard(ds, l.drive_ids[1], vid, 1), 0);
    file_to_dir(fan);
    char p[PATH_MAX * 2];
    shard_file(&d, &l, vid, 1, p, sizeof p);
    cr_expect(exists(p), "the shard went after all");
    cr_expect_eq(data_remove_shard(ds, l.drive_ids[1], vid, 1), 0);
    cr_expect_not(exists(p));
    free(data);
    data_close(ds);
}

/* A drive path below a regular file cannot be created. */
Test(edges, drive_below_a_file) {
    char file[PATH_MAX], drive_path[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/below", root);
    spit(file, "x", 1);
    snprintf(drive_path, sizeof drive_path, "%s/sub/d0", file);
    drive *dr = NULL;
    cr_expect_eq(drive_local_open(drive_path, false, &dr, NULL), CAIRN_EIO);
    cr_expect_null(dr);
}

/* ---- one local drive, through drive.h ------------------------------------------------- */

/* Counts listed entries, checking that they come in name order. */
typedef struct {
    int n;
    char last[48];
    bool unordered;
} listing;

static int collect_entry(void *ud, const drive_entry *e) {
    listing *x = ud;
    if (x->n && strcmp(x->last, e->name) >= 0) x->unordered = true;
    snprintf(x->last, sizeof x->last, "%s", e->name);
    x->n++;
    return 0;
}

static void shard_name_of(char *out, size_t n, const char *fan, int i, int idx) {
    snprintf(out, n, "%s%030x.%d", fan, i, idx);
}

Test(edges, drive_refuses_bad_names_and_lists_by_fanout) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/one", root);
    drive *dr = NULL;
    int cleaned = -1;
    cr_assert_eq(drive_local_open(path, false, &dr, &cleaned), 0);
    cr_expect_eq(cleaned, 0);
    shard_out *o = NULL;
    shard_in *in = NULL;
    cr_expect_eq(drive_create(dr, "not-a-shard", 0, &o), CAIRN_EINVAL);
    cr_expect_eq(drive_open(dr, "not-a-shard", &in), CAIRN_EINVAL);
    cr_expect_eq(drive_remove(dr, "not-a-shard"), CAIRN_EINVAL);
    cr_expect_null(o);
    cr_expect_null(in);

    /* At most 8 pieces per append. */
    char name[48];
    shard_name_of(name, sizeof name, "ab", 1, 0);
    cr_assert_eq(drive_create(dr, name, 0, &o), 0);
    char byte = 'x';
    struct iovec iov[9];
    for (int i = 0; i < 9; i++) iov[i] = (struct iovec){&byte, 1};
    cr_expect_eq(drive_append(o, iov, 9), CAIRN_EINVAL);
    cr_expect_eq(drive_append(o, iov, 8), 0);
    cr_assert_eq(drive_commit(o), 0);

    /* 70 shards in one fan-out directory (more than the first listing
     * buffer holds), and one in a directory it does not belong to. */
    char dir[PATH_MAX + 32], f[PATH_MAX + 96];
    snprintf(dir, sizeof dir, "%s/objects/ab", path);
    for (int i = 2; i <= 70; i++) {
        shard_name_of(name, sizeof name, "ab", i, 3);
        snprintf(f, sizeof f, "%s/%s", dir, name);
        spit(f, "", 0);
    }
    shard_name_of(name, sizeof name, "cd", 1, 0);
    snprintf(f, sizeof f, "%s/%s", dir, name);
    spit(f, "", 0);
    listing x = {0};
    cr_expect_eq(drive_walk(dr, collect_entry, &x), 0);
    cr_expect_not(x.unordered);
    cr_expect_eq(x.n, 70, "a misfiled shard was listed or shards were missed");
    x = (listing){0};
    cr_expect_eq(drive_local_list(dr, NULL, 1000, collect_entry, &x), 0);
    cr_expect_eq(x.n, 70);
    x = (listing){0};
    shard_name_of(name, sizeof name, "ab", 60, 3);
    cr_expect_eq(drive_local_list(dr, name, 1000, collect_entry, &x), 0);
    cr_expect_eq(x.n, 10, "listing after the 60th shard");
    cr_expect_eq(drive_local_list(dr, "a", 1000, collect_entry, &x), CAIRN_EINVAL);
    cr_expect_eq(drive_local_list(dr, "g0", 1000, collect_entry, &x), CAIRN_EINVAL);
    cr_expect_eq(drive_local_list(dr, "0g", 1000, collect_entry, &x), CAIRN_EINVAL);
    drive_close(dr);

    /* Reopening empties tmp/ of files only: a directory there is no shard. */
    char t[PATH_MAX + 64];
    snprintf(t, sizeof t, "%s/tmp/stale-1", path);
    spit(t, "a", 1);
    snprintf(t, sizeof t, "%s/tmp/stale-2", path);
    spit(t, "b", 1);
    snprintf(t, sizeof t, "%s/tmp/subdir", path);
    cr_assert_eq(mkdir(t, 0750), 0);
    cr_assert_eq(drive_local_open(path, false, &dr, &cleaned), 0);
    cr_expect_eq(cleaned, 2);
    cr_expect(exists(t));
    cr_expect_eq(drive_tmp_count(dr), 1);
    drive_close(dr);
}

/* ---- a store of storage nodes (in-process node servers on loopback) ------------------- */

#define NODE_SECRET "the-cluster-secret-0123"

typedef struct {
    char dir[PATH_MAX];
    node_server *n;
    http_server *s;
    char url[64];
} test_node;

static void test_node_up(test_node *tn, const char *tag) {
    memset(tn, 0, sizeof *tn);
    snprintf(tn->dir, sizeof tn->dir, "%s/%s", root, tag);
    const char *pv[] = {tn->dir};
    cr_assert_eq(node_server_new(pv, 1, false, NODE_SECRET, &tn->n, NULL), 0);
    http_options ho = {.listen = "127.0.0.1:0", .connection_limit = 64, .connection_timeout = 10,
                       .max_header_bytes = 16384};
    char err[256];
    int port = 0;
    cr_assert_eq(http_server_start(&ho, node_http_handler(), tn->n, &tn->s, &port, err, sizeof err), 0, "%s", err);
    snprintf(tn->url, sizeof tn->url, "http://127.0.0.1:%d", port);
    /* A node admits only requests dated after its start. */
    int64_t t = time_now_ms();
    while (time_now_ms() <= t + 1) usleep(200);
}

static void test_node_down(test_node *tn) {
    if (tn->s) http_server_stop(tn->s);
    if (tn->n) node_server_free(tn->n);
    tn->s = NULL;
    tn->n = NULL;
}

/* A port nothing listens on: bound, then closed. */
static void dead_url(char *out, size_t n) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    snprintf(out, n, "http://127.0.0.1:%d", ntohs(a.sin_port));
}

Test(edges, nodes_join_once_and_a_down_node_is_tolerated) {
    test_node a, b, c;
    test_node_up(&a, "node-a");
    test_node_up(&b, "node-b");
    test_node_up(&c, "node-c");
    const char *nodes[] = {a.url, b.url};
    data_options o = {.nodes = nodes, .nnodes = 2, .cluster_secret = NODE_SECRET, .shard_timeout_ms = 2000,
                      .k = 1, .m = 1, .block = BLOCK};
    data_store *ds = NULL;
    cr_assert_eq(data_open(&o, &ds, NULL), 0);

    /* A node already in the store joins no second time; its id comes back. */
    char id[DATA_DRIVE_ID_LEN + 1] = "";
    cr_expect_eq(data_add_node(ds, a.url, id), CAIRN_EEXIST);
    cr_expect_str_eq(id, node_server_id(a.n));
    cr_expect_eq(data_add_node(ds, b.url, NULL), CAIRN_EEXIST);
    char dead[64];
    dead_url(dead, sizeof dead);
    cr_expect_neq(data_add_node(ds, dead, id), 0, "a node that does not answer joined");
    cr_expect_eq(data_add_node(ds, c.url, NULL), 0);
    drive_ids x;
    cr_expect_eq(list_drives(ds, &x), 3);
    cr_expect_str_eq(x.id[2], node_server_id(c.n));

    /* Only remote stores take nodes. */
    drives d;
    drives_make(&d, "local-only", 1);
    data_store *local = store_open(&d, 1, 1, 0, BLOCK, false, NULL);
    cr_expect_eq(data_add_node(local, c.url, id), CAIRN_EINVAL);
    /* A node is no local drive to list. */
    drive *rd = NULL;
    cr_assert_eq(drive_remote_open(c.url, NODE_SECRET, NULL, 2000, &rd), 0);
    listing l = {0};
    cr_expect_eq(drive_local_list(rd, "", 10, collect_entry, &l), CAIRN_EINVAL);
    drive_close(rd);
    data_close(local);

    /* One node down: still writable (quorum 2 of 3 for 1+1), and free space
     * comes from the nodes that answer. */
    test_node_down(&b);
    cr_expect_eq(list_drives(ds, &x), 2);
    cr_expect_eq(data_check_writable(ds), 0);
    int64_t f = -1;
    cr_expect_eq(data_free_bytes(ds, &f), 0);
    cr_expect_gt(f, 0);
    data_close(ds);
    test_node_down(&a);
    test_node_down(&c);
}

Test(edges, a_node_down_at_start_opens_under_its_known_id) {
    char dead[64];
    dead_url(dead, sizeof dead);
    const char *nodes[] = {dead};
    const char *ids[] = {"00000000000000aa"};
    data_options o = {.nodes = nodes, .nnodes = 1, .node_ids = ids, .cluster_secret = NODE_SECRET,
                      .shard_timeout_ms = 1000, .k = 1, .m = 0, .block = BLOCK};
    data_store *ds = NULL;
    cr_assert_eq(data_open(&o, &ds, NULL), 0);
    drive_ids x;
    cr_expect_eq(list_drives(ds, &x), 0);
    cr_expect_str_eq(x.id[0], "00000000000000aa");
    int64_t f = -1;
    cr_expect_eq(data_free_bytes(ds, &f), CAIRN_EIO, "free space of a store whose only node is down");
    cr_expect_eq(data_check_writable(ds), CAIRN_EIO);
    data_close(ds);
    /* Without a known id the open fails. */
    o.node_ids = NULL;
    ds = NULL;
    cr_expect_neq(data_open(&o, &ds, NULL), 0);
    cr_expect_null(ds);
}

/* ---- directories that refuse new entries (the immutable attribute) ---------------------- */

/* Sets or clears the immutable attribute of a directory: nothing can be
 * created in it, not even by root.  False where the filesystem or the
 * process cannot (tmpfs, no CAP_LINUX_IMMUTABLE). */
static bool set_immutable(const char *path, bool on) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    int flags = 0;
    bool ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (ok) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    close(fd);
    return ok;
}

static int append_text(shard_out *o, const char *text) {
    struct iovec iov = {(void *)text, strlen(text)};
    return drive_append(o, &iov, 1);
}

/* A drive whose directories went missing is rebuilt on the next write; when
 * that cannot be done (the drive directory refuses new entries) the write
 * fails cleanly, and works again once the directory takes entries. */
Test(edges, a_drive_that_cannot_be_rebuilt_fails_the_write) {
    char path[PATH_MAX + 16], sub[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/frozen", root);
    drive *dr = NULL;
    cr_assert_eq(drive_local_open(path, false, &dr, NULL), 0);
    if (!set_immutable(path, false)) {
        drive_close(dr);
        cr_skip_test("the filesystem has no immutable attribute");
    }
    char name[48];
    shard_name_of(name, sizeof name, "ab", 7, 0);
    shard_out *o = NULL;

    /* tmp/ gone, and it cannot be made again. */
    snprintf(sub, sizeof sub, "%s/tmp", path);
    cr_assert_eq(rmdir(sub), 0);
    cr_assert(set_immutable(path, true));
    int rc = drive_create(dr, name, 0, &o);
    cr_assert(set_immutable(path, false));
    cr_expect_eq(rc, CAIRN_EIO);
    cr_expect_null(o);
    cr_assert_eq(drive_create(dr, name, 0, &o), 0, "tmp/ was not made again");
    cr_expect(exists(sub));

    /* objects/ gone before the commit, and it cannot be made again. */
    cr_assert_eq(append_text(o, "shard bytes"), 0);
    snprintf(sub, sizeof sub, "%s/objects", path);
    cr_assert_eq(rmdir(sub), 0);
    cr_assert(set_immutable(path, true));
    rc = drive_commit(o);
    cr_assert(set_immutable(path, false));
    cr_expect_eq(rc, CAIRN_EIO);
    cr_expect_eq(drive_tmp_count(dr), 0, "a failed commit left its temp file");

    /* objects/ there but refusing the shard's fan-out directory. */
    cr_assert_eq(mkdir(sub, 0750), 0);
    cr_assert_eq(drive_create(dr, name, 0, &o), 0);
    cr_assert_eq(append_text(o, "shard bytes"), 0);
    cr_assert(set_immutable(sub, true));
    rc = drive_commit(o);
    cr_assert(set_immutable(sub, false));
    cr_expect_eq(rc, CAIRN_EIO);
    cr_expect_eq(drive_tmp_count(dr), 0);

    /* Both back: the shard commits and reads. */
    cr_assert_eq(drive_create(dr, name, 0, &o), 0);
    cr_assert_eq(append_text(o, "shard bytes"), 0);
    cr_expect_eq(drive_commit(o), 0);
    shard_in *in = NULL;
    cr_assert_eq(drive_open(dr, name, &in), 0);
    cr_expect_eq(drive_shard_size(in), 11);
    drive_close_shard(in);
    drive_close(dr);
}
