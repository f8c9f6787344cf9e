/*
 * test_audit_journal.c — the audit journal (src/audit/journal.h) on real
 * files, with real threads and real fdatasync.
 *
 * Each test gets its own mkdtemp directory.  Damage is done the way a crash
 * or a disk does it: a record cut in the middle at a segment's end, a byte
 * flipped inside an older segment.  What must hold: every record appended
 * and acknowledged is read back once, in order, with its payload; a torn
 * tail is cut at reopen and appends go on; corruption in an older segment
 * is skipped and counted, never a crash; a bound reached refuses (reject)
 * or spools (spool), and every record that could not be stored is counted
 * lost.  In the fault build, failed writes and syncs (audit.write,
 * audit.fsync) give the durable appender CAIRN_EIO and count the records
 * lost, and the journal works again afterwards.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/journal.h"

static char dir[256];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void setup(void) {
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cairn-audit-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    log_set_level(LOG_ERROR);
}

static void teardown(void) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

TestSuite(audit_journal, .init = setup, .fini = teardown);

static audit_journal_opts opts(void) {
    return (audit_journal_opts){.dir = dir, .max_bytes = 64 * 1024 * 1024, .max_age_ms = 0,
                                .segment_bytes = 1024 * 1024, .sync_ms = 5, .overflow = AUDIT_OVERFLOW_REJECT,
                                .fsync = true};
}

static audit_journal *open_j(const audit_journal_opts *o) {
    audit_journal *j = NULL;
    cr_assert_eq(audit_journal_open(o, &j), 0);
    return j;
}

static void payload(char *out, size_t n, int i) { snprintf(out, n, "{\"n\":%d,\"pad\":\"%0120d\"}", i, i); }

/* Reads every record after c in batches of batch; checks payloads are
 * first..first+count-1 in order; returns the cursor after them. */
static audit_cursor read_all(audit_journal *j, audit_cursor c, int batch, int first, int *count) {
    *count = 0;
    for (;;) {
        audit_batch b;
        cr_assert_eq(audit_journal_read(j, c, batch, &b), 0);
        for (int i = 0; i < b.n; i++) {
            char want[256];
            payload(want, sizeof want, first + *count);
            cr_assert_eq(b.recs[i].len, strlen(want), "record %d", first + *count);
            cr_assert_eq(memcmp(b.recs[i].payload, want, b.recs[i].len), 0, "record %d", first + *count);
            (*count)++;
        }
        int n = b.n;
        c = b.next;
        audit_batch_free(&b);
        if (n == 0) return c;
    }
}

static int count_files(const char *prefix) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static void append_n(audit_journal *j, int from, int n, int flags) {
    for (int i = from; i < from + n; i++) {
        char p[256];
        payload(p, sizeof p, i);
        cr_assert_eq(audit_journal_append(j, p, strlen(p), flags), 0, "append %d", i);
    }
}

Test(audit_journal, record_round_trip_and_damage) {
    buf_t b;
    buf_init(&b);
    cr_assert_eq(audit_record_encode(&b, 7, 1234, "hello", 5), 0);
    audit_record r;
    size_t size;
    cr_assert_eq(audit_record_parse(b.data, b.len, &r, &size), 0);
    cr_expect_eq(r.seq, 7);
    cr_expect_eq(r.time_ms, 1234);
    cr_expect_eq(r.len, 5);
    cr_expect_eq(memcmp(r.payload, "hello", 5), 0);
    cr_expect_eq(size, b.len);
    for (size_t n = 0; n < b.len; n++) cr_expect_eq(audit_record_parse(b.data, n, &r, &size), 1, "prefix %zu", n);
    for (size_t i = 0; i < b.len; i++) {
        b.data[i] ^= 0x20;
        int rc = audit_record_parse(b.data, b.len, &r, &size);
        /* A flipped length may make it look torn; it never checks. */
        cr_expect(rc == CAIRN_EINVAL || rc == 1, "flip at %zu gives %d", i, rc);
        b.data[i] ^= 0x20;
    }
    buf_free(&b);
    char big[16];
    memset(big, 0, sizeof big);
    cr_expect_eq(audit_record_encode(&b, 1, 1, big, AUDIT_RECORD_MAX_PAYLOAD + 1), CAIRN_EINVAL);
    buf_free(&b);
}

Test(audit_journal, append_read_commit_round_trip) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    append_n(j, 0, 60, 0);
    append_n(j, 60, 40, AUDIT_APPEND_DURABLE);
    cr_assert_eq(audit_journal_sync(j), 0);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.depth, 100);
    cr_expect_eq(st.appended, 100);
    cr_expect_eq(st.lost, 0);
    cr_expect_gt(st.oldest_unshipped_ms, 0);
    int n;
    audit_cursor c = read_all(j, audit_journal_shipped(j), 30, 0, &n);
    cr_expect_eq(n, 100);
    cr_expect_eq(c.seq, 100);
    /* Nothing is removed before a commit: a restart reads it all again. */
    audit_journal_close(j);
    j = open_j(&o);
    read_all(j, audit_journal_shipped(j), 7, 0, &n);
    cr_expect_eq(n, 100);
    cr_assert_eq(audit_journal_commit(j, c), 0);
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.depth, 0);
    cr_expect_eq(st.oldest_unshipped_ms, 0);
    /* A commit behind the committed cursor is refused. */
    cr_expect_eq(audit_journal_commit(j, (audit_cursor){0, 0, 0}), CAIRN_EINVAL);
    audit_journal_close(j);
    j = open_j(&o);
    audit_cursor s = audit_journal_shipped(j);
    cr_expect_eq(s.segment, c.segment);
    cr_expect_eq(s.offset, c.offset);
    cr_expect_eq(s.seq, 100);
    read_all(j, s, 10, 0, &n);
    cr_expect_eq(n, 0, "shipped records are not read again");
    append_n(j, 100, 5, AUDIT_APPEND_DURABLE);
    c = read_all(j, s, 10, 100, &n);
    cr_expect_eq(n, 5);
    cr_expect_eq(c.seq, 105, "sequences go on after a restart");
    audit_journal_close(j);
}

typedef struct {
    audit_journal *j;
    int id;
    int n;
    int bad;
} thr_arg;

static void *durable_appender(void *p) {
    thr_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        char pl[256];
        payload(pl, sizeof pl, a->id * 100000 + i);
        audit_journal_stats before, after;
        audit_journal_get_stats(a->j, &before);
        int rc = audit_journal_append(a->j, pl, strlen(pl), AUDIT_APPEND_DURABLE);
        audit_journal_get_stats(a->j, &after);
        /* Returned only after a sync that began after the append did. */
        if (rc != 0 || after.syncs <= before.syncs) a->bad++;
    }
    return NULL;
}

typedef struct {
    int seen[16][64];
} seen_set;

static int mark_seen(void *ud, const audit_record *r) {
    seen_set *s = ud;
    int n = atoi(r->payload + 5);
    int t = n / 100000, i = n % 100000;
    if (t >= 0 && t < 16 && i >= 0 && i < 64) s->seen[t][i]++;
    return 0;
}

Test(audit_journal, group_commit_many_threads) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    enum { T = 16, N = 40 };
    pthread_t th[T];
    thr_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (thr_arg){j, t, N, 0};
        cr_assert_eq(pthread_create(&th[t], NULL, durable_appender, &args[t]), 0);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++) cr_expect_eq(args[t].bad, 0, "thread %d", t);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.appended, T * N);
    cr_expect_leq(st.syncs, T * N);
    cr_log_info("group commit: %d durable appends, %llu fdatasyncs", T * N, (unsigned long long)st.syncs);
    audit_journal_close(j);
    seen_set *s = calloc(1, sizeof *s);
    uint64_t corrupt = 1;
    cr_assert_eq(audit_journal_scan(dir, true, mark_seen, s, &corrupt), 0);
    cr_expect_eq(corrupt, 0);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) cr_expect_eq(s->seen[t][i], 1, "thread %d record %d", t, i);
    free(s);
}

static char *last_segment(char *out, size_t n) {
    DIR *d = opendir(dir);
    char best[128] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "journal-", 8) && strcmp(e->d_name, best) > 0) snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    cr_assert(best[0]);
    snprintf(out, n, "%s/%s", dir, best);
    return out;
}

Test(audit_journal, torn_tail_is_truncated_at_reopen) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    append_n(j, 0, 10, AUDIT_APPEND_DURABLE);
    audit_journal_close(j);
    char path[512];
    last_segment(path, sizeof path);
    struct stat st0;
    cr_assert_eq(stat(path, &st0), 0);
    /* A crash mid-write: half of a record, then nothing. */
    buf_t b;
    buf_init(&b);
    audit_record_encode(&b, 11, 1, "{\"torn\":true,\"pad\":\"xxxxxxxxxxxxxxxx\"}", 38);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, b.data, b.len / 2), (ssize_t)(b.len / 2));
    close(fd);
    buf_free(&b);
    j = open_j(&o);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_gt(st.truncated_bytes, 0);
    cr_expect_eq(st.depth, 10);
    struct stat st1;
    cr_assert_eq(stat(path, &st1), 0);
    cr_expect_eq(st1.st_size, st0.st_size, "cut back to the last whole record");
    append_n(j, 10, 3, AUDIT_APPEND_DURABLE);
    int n;
    read_all(j, audit_journal_shipped(j), 4, 0, &n);
    cr_expect_eq(n, 13);
    audit_journal_close(j);
    /* Garbage (not a record at all) at the tail: also cut. */
    fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_eq(write(fd, "garbage!garbage!", 16), 16);
    close(fd);
    j = open_j(&o);
    read_all(j, audit_journal_shipped(j), 100, 0, &n);
    cr_expect_eq(n, 13);
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.corrupt_records, 0, "a bad tail of the last segment is a crash, not corruption");
    audit_journal_close(j);
}

static off_t file_size(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return st.st_size;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out);
    char b[65536];
    size_t n;
    while ((n = fread(b, 1, sizeof b, in)) > 0) cr_assert_eq(fwrite(b, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* The open segment is zeroed ahead of its records (so a batch's fdatasync
 * does not change the file's size); a close cuts it back, and a journal
 * killed with its zeros (a copy of its files taken while open) opens with
 * every record, nothing counted torn or corrupt, and the zeros cut. */
Test(audit_journal, preallocated_zeros_are_not_damage) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    append_n(j, 0, 30, AUDIT_APPEND_DURABLE);
    char path[512], saved[600];
    last_segment(path, sizeof path);
    off_t open_size = file_size(path);
    cr_expect_geq(open_size, 64 * 1024, "zeroed ahead while open (%lld bytes)", (long long)open_size);
    snprintf(saved, sizeof saved, "%s.killed", path);
    copy_file(path, saved);           /* the file as a kill -9 would leave it */
    audit_journal_close(j);
    off_t records = file_size(path);
    cr_expect_lt(records, open_size, "cut back to its records at close");
    off_t want = 0;
    for (int i = 0; i < 30; i++) {
        char p[256];
        payload(p, sizeof p, i);
        want += (off_t)(AUDIT_RECORD_HEADER + strlen(p));
    }
    cr_expect_eq(records, want, "only the records");
    cr_assert_eq(rename(saved, path), 0);
    j = open_j(&o);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.truncated_bytes, 0, "zeros are not a torn tail");
    cr_expect_eq(st.corrupt_records, 0);
    cr_expect_eq(st.depth, 30);
    cr_expect_eq(file_size(path), records, "the zeros were cut at open");
    append_n(j, 30, 5, AUDIT_APPEND_DURABLE);
    int n;
    read_all(j, audit_journal_shipped(j), 8, 0, &n);
    cr_expect_eq(n, 35);
    audit_journal_close(j);
}

/* A crash right after the writer moved to a new segment, before it cut the
 * old one: an older segment with zeros at its end.  Not corruption; cut. */
Test(audit_journal, zeros_at_the_end_of_an_older_segment_are_cut) {
    audit_journal_opts o = opts();
    o.segment_bytes = 4096;
    audit_journal *j = open_j(&o);
    for (int i = 0; i < 60; i++) append_n(j, i, 1, AUDIT_APPEND_DURABLE);
    audit_journal_close(j);
    cr_assert_geq(count_files("journal-"), 2);
    char first[512];
    snprintf(first, sizeof first, "%s/journal-%020d.log", dir, 1);
    off_t size = file_size(first);
    cr_assert_eq(truncate(first, size + 3000), 0);
    /* And zeros inside a segment that are followed by more bytes are damage. */
    j = open_j(&o);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.corrupt_records, 0);
    cr_expect_eq(st.truncated_bytes, 0);
    cr_expect_eq(file_size(first), size);
    int n;
    read_all(j, audit_journal_shipped(j), 16, 0, &n);
    cr_expect_eq(n, 60);
    audit_journal_close(j);
    int fd = open(first, O_RDWR);
    cr_assert_geq(fd, 0);
    static const char zeros[64];
    cr_assert_eq(pwrite(fd, zeros, sizeof zeros, size / 2), (ssize_t)sizeof zeros);
    close(fd);
    j = open_j(&o);
    audit_journal_get_stats(j, &st);
    cr_expect_geq(st.corrupt_records, 1, "zeros with records after them are counted");
    audit_journal_close(j);
}

Test(audit_journal, corruption_in_an_older_segment_is_skipped_and_counted) {
    audit_journal_opts o = opts();
    o.segment_bytes = 4096;
    audit_journal *j = open_j(&o);
    for (int i = 0; i < 120; i++) append_n(j, i, 1, AUDIT_APPEND_DURABLE); /* one batch each: segments fill evenly */
    audit_journal_close(j);
    cr_assert_geq(count_files("journal-"), 3);
    /* Flip a byte in the payload of a record in the middle of the first segment. */
    char path[512];
    snprintf(path, sizeof path, "%s/journal-%020d.log", dir, 1);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    struct stat st0;
    fstat(fd, &st0);
    off_t at = st0.st_size / 2;
    char c;
    cr_assert_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x01;
    cr_assert_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
    j = open_j(&o);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.corrupt_records, 1);
    cr_expect_eq(st.truncated_bytes, 0);
    /* The reader skips the bad record and goes on with the next. */
    audit_cursor cur = audit_journal_shipped(j);
    int got = 0, missing = -1, expect = 0;
    for (;;) {
        audit_batch b;
        cr_assert_eq(audit_journal_read(j, cur, 16, &b), 0);
        for (int i = 0; i < b.n; i++) {
            int v = atoi(b.recs[i].payload + 5);
            if (v != expect) {
                cr_expect_eq(missing, -1, "only one record is lost to one flipped byte");
                missing = expect;
                expect = v;
            }
            expect++;
            got++;
        }
        int n = b.n;
        cur = b.next;
        audit_batch_free(&b);
        if (!n) break;
    }
    cr_expect_eq(got, 119);
    cr_expect_geq(missing, 0);
    audit_journal_get_stats(j, &st);
    cr_expect_geq(st.corrupt_records, 2, "the reader counted it again");
    audit_journal_close(j);
}

Test(audit_journal, segments_rotate_and_go_after_commit) {
    audit_journal_opts o = opts();
    o.segment_bytes = 4096;
    audit_journal *j = open_j(&o);
    for (int i = 0; i < 200; i++) append_n(j, i, 1, AUDIT_APPEND_DURABLE);
    int files = count_files("journal-");
    cr_expect_geq(files, 8);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.segments, (uint64_t)files);
    /* Ship half and commit: the segments wholly before the cursor go. */
    audit_cursor c = audit_journal_shipped(j);
    int shipped = 0;
    while (shipped < 100) {
        audit_batch b;
        cr_assert_eq(audit_journal_read(j, c, 25, &b), 0);
        shipped += b.n;
        c = b.next;
        audit_batch_free(&b);
    }
    cr_assert_eq(audit_journal_commit(j, c), 0);
    int after_half = count_files("journal-");
    cr_expect_lt(after_half, files);
    cr_expect_gt(after_half, 1);
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.depth, 100);
    int n;
    c = read_all(j, c, 33, 100, &n);
    cr_expect_eq(n, 100);
    cr_assert_eq(audit_journal_commit(j, c), 0);
    cr_expect_eq(count_files("journal-"), 1, "only the segment being written stays");
    audit_journal_close(j);
    j = open_j(&o);
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.depth, 0);
    cr_expect_eq(st.bytes, 0);
    audit_journal_close(j);
}

Test(audit_journal, full_journal_rejects_and_counts) {
    audit_journal_opts o = opts();
    o.max_bytes = 16 * 1024;      /* headroom: 1 MiB */
    audit_journal *j = open_j(&o);
    cr_expect_eq(audit_journal_admit(j), 0);
    int appended = 0;
    while (audit_journal_admit(j) == 0) {
        append_n(j, appended, 1, 0);
        appended++;
        cr_assert_lt(appended, 10000);
    }
    cr_expect_gt(appended, 50);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.overflow_refusals, 1);
    cr_expect_geq(st.bytes, o.max_bytes);
    /* Admitted requests' events still land, in the headroom ... */
    append_n(j, appended, 10, AUDIT_APPEND_DURABLE);
    appended += 10;
    /* ... until it too is full: then the append fails, counted lost. */
    char big[AUDIT_RECORD_MAX_PAYLOAD];
    memset(big, 'x', sizeof big);
    int busy = 0;
    for (int i = 0; i < 8; i++) busy += audit_journal_append(j, big, sizeof big, AUDIT_APPEND_DURABLE) == CAIRN_EBUSY;
    cr_expect_gt(busy, 0);
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.lost, (uint64_t)busy, "every event refused is counted lost");
    cr_expect_eq(count_files("spool-"), 0);
    /* Shipping makes room again. */
    audit_batch b;
    cr_assert_eq(audit_journal_read(j, audit_journal_shipped(j), 100000, &b), 0);
    cr_expect_eq(b.n, appended + 8 - busy);
    cr_assert_eq(audit_journal_commit(j, b.next), 0);
    audit_batch_free(&b);
    cr_expect_eq(audit_journal_admit(j), 0);
    audit_journal_close(j);
}

static int count_spooled(const char *path) {
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    static char buf[1 << 20];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    int recs = 0;
    for (size_t off = 0; off < (size_t)n;) {
        audit_record r;
        size_t size;
        cr_assert_eq(audit_record_parse(buf + off, (size_t)n - off, &r, &size), 0);
        off += size;
        recs++;
    }
    return recs;
}

Test(audit_journal, full_journal_spools_when_configured) {
    audit_journal_opts o = opts();
    o.max_bytes = 8 * 1024;
    o.overflow = AUDIT_OVERFLOW_SPOOL;
    audit_journal *j = open_j(&o);
    append_n(j, 0, 200, AUDIT_APPEND_DURABLE);
    cr_expect_eq(audit_journal_admit(j), 0, "the spool policy never refuses");
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_gt(st.spooled, 0);
    cr_expect_eq(st.lost, 0);
    cr_expect_leq(st.bytes, o.max_bytes);
    audit_journal_close(j);
    cr_assert_eq(count_files("spool-"), 1);
    char path[512];
    snprintf(path, sizeof path, "%s/spool-%020d.log", dir, 1);
    cr_expect_eq((uint64_t)count_spooled(path), st.spooled);
    /* Journal + spool hold every event. */
    j = open_j(&o);
    int n;
    read_all(j, audit_journal_shipped(j), 1000, 0, &n);
    cr_expect_eq((uint64_t)n + st.spooled, 200);
    audit_journal_close(j);
}

Test(audit_journal, age_bound_makes_it_full) {
    audit_journal_opts o = opts();
    o.max_age_ms = 30;
    audit_journal *j = open_j(&o);
    cr_expect_eq(audit_journal_admit(j), 0);
    append_n(j, 0, 1, AUDIT_APPEND_DURABLE);
    int64_t deadline = time_mono_ns() + 10LL * 1000000000;
    while (audit_journal_admit(j) == 0 && time_mono_ns() < deadline) usleep(5000);
    cr_expect_eq(audit_journal_admit(j), CAIRN_EBUSY, "an unshipped event older than max_age refuses");
    audit_batch b;
    cr_assert_eq(audit_journal_read(j, audit_journal_shipped(j), 10, &b), 0);
    cr_assert_eq(audit_journal_commit(j, b.next), 0);
    audit_batch_free(&b);
    cr_expect_eq(audit_journal_admit(j), 0);
    audit_journal_close(j);
}

Test(audit_journal, reads_are_synced_within_sync_ms) {
    audit_journal_opts o = opts();
    o.sync_ms = 20;
    audit_journal *j = open_j(&o);
    append_n(j, 0, 3, 0);
    /* Not waited for; the writer syncs them within sync_ms: poll until the
     * reader (which sees only durable records) has them. */
    int64_t deadline = time_mono_ns() + 10LL * 1000000000;
    int n = 0;
    while (n < 3 && time_mono_ns() < deadline) {
        read_all(j, (audit_cursor){0, 0, 0}, 10, 0, &n);
        if (n < 3) usleep(2000);
    }
    cr_expect_eq(n, 3);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_geq(st.syncs, 1);
    audit_journal_close(j);
}

Test(audit_journal, close_syncs_what_is_queued_and_then_refuses) {
    audit_journal_opts o = opts();
    o.sync_ms = 60000;             /* only close can have synced them */
    audit_journal *j = open_j(&o);
    append_n(j, 0, 25, 0);
    audit_journal_close(j);
    j = open_j(&o);
    int n;
    read_all(j, audit_journal_shipped(j), 100, 0, &n);
    cr_expect_eq(n, 25);
    audit_journal_close(j);
}

Test(audit_journal, bad_options) {
    audit_journal_opts o = opts();
    audit_journal *j = NULL;
    o.max_bytes = 0;
    cr_expect_eq(audit_journal_open(&o, &j), CAIRN_EINVAL);
    o = opts();
    o.sync_ms = 0;
    cr_expect_eq(audit_journal_open(&o, &j), CAIRN_EINVAL);
    o = opts();
    char file[300];
    snprintf(file, sizeof file, "%s/file", dir);
    close(open(file, O_CREAT | O_WRONLY, 0644));
    snprintf(file, sizeof file, "%s/file/sub", dir);
    o.dir = file;
    cr_expect_eq(audit_journal_open(&o, &j), CAIRN_EIO);
    cr_expect_null(j);
}

/* ---- events ---------------------------------------------------------------------------------- */

Test(audit_journal, event_json_has_every_field) {
    audit_event_fields e = {.time_us = 1796060462123456LL, .request_id = "ABC123", .correlation_id = NULL,
                            .principal = "AKIA1", .user = "alice", .source_address = "127.0.0.1",
                            .action = "s3:PutObject", .bucket = "bkt", .key = "a/\"b\"\\\n\x01\xff\xc3\xa9",
                            .version_id = "v1", .status = 403, .error_code = "AccessDenied",
                            .bytes_in = 5, .bytes_out = 243, .duration_us = 1234};
    buf_t b;
    buf_init(&b);
    cr_assert_eq(audit_emit_encode(&e, "0123456789abcdef0123456789abcdef", &b), 0);
    json_error_t err;
    json_t *o = json_loadb(b.data, b.len, 0, &err);
    cr_assert_not_null(o, "not JSON: %s (%s)", b.data, err.text);
    cr_expect_str_eq(json_string_value(json_object_get(o, "event_id")), "0123456789abcdef0123456789abcdef");
    cr_expect_str_eq(json_string_value(json_object_get(o, "time")), "2026-11-30T17:41:02.123456Z");
    cr_expect_str_eq(json_string_value(json_object_get(o, "request_id")), "ABC123");
    cr_expect_str_eq(json_string_value(json_object_get(o, "correlation_id")), "ABC123");
    cr_expect_str_eq(json_string_value(json_object_get(o, "principal")), "AKIA1");
    cr_expect_str_eq(json_string_value(json_object_get(o, "user")), "alice");
    cr_expect_str_eq(json_string_value(json_object_get(o, "source_address")), "127.0.0.1");
    cr_expect_str_eq(json_string_value(json_object_get(o, "action")), "s3:PutObject");
    cr_expect_str_eq(json_string_value(json_object_get(o, "bucket")), "bkt");
    cr_expect_str_eq(json_string_value(json_object_get(o, "key")), "a/\"b\"\\\n\x01\xef\xbf\xbd\xc3\xa9");
    cr_expect_str_eq(json_string_value(json_object_get(o, "version_id")), "v1");
    cr_expect_str_eq(json_string_value(json_object_get(o, "outcome")), "denied");
    cr_expect_eq(json_integer_value(json_object_get(o, "status")), 403);
    cr_expect_str_eq(json_string_value(json_object_get(o, "error_code")), "AccessDenied");
    cr_expect_eq(json_integer_value(json_object_get(o, "bytes_in")), 5);
    cr_expect_eq(json_integer_value(json_object_get(o, "bytes_out")), 243);
    cr_expect_eq(json_integer_value(json_object_get(o, "duration_us")), 1234);
    cr_expect_eq(json_object_size(o), 17);
    json_decref(o);
    buf_free(&b);
    cr_expect_str_eq(audit_outcome(200), "success");
    cr_expect_str_eq(audit_outcome(304), "success");
    cr_expect_str_eq(audit_outcome(401), "denied");
    cr_expect_str_eq(audit_outcome(404), "error");
    cr_expect_str_eq(audit_outcome(503), "error");
    /* Defaults: anonymous, s3:Unknown. */
    audit_event_fields d = {.request_id = "R", .correlation_id = "corr-1", .status = 200};
    buf_init(&b);
    cr_assert_eq(audit_emit_encode(&d, "00000000000000000000000000000000", &b), 0);
    o = json_loadb(b.data, b.len, 0, &err);
    cr_assert_not_null(o);
    cr_expect_str_eq(json_string_value(json_object_get(o, "principal")), "anonymous");
    cr_expect_str_eq(json_string_value(json_object_get(o, "action")), "s3:Unknown");
    cr_expect_str_eq(json_string_value(json_object_get(o, "correlation_id")), "corr-1");
    cr_expect_str_eq(json_string_value(json_object_get(o, "key")), "");
    json_decref(o);
    buf_free(&b);
}

Test(audit_journal, correlation_ids_are_bounded_and_printable) {
    char out[129];
    cr_expect_eq(audit_correlation_id_clean("abc-123 x", out), 0);
    cr_expect_str_eq(out, "abc-123 x");
    cr_expect_eq(audit_correlation_id_clean("", out), CAIRN_EINVAL);
    cr_expect_eq(audit_correlation_id_clean(NULL, out), CAIRN_EINVAL);
    cr_expect_eq(audit_correlation_id_clean("a\x01", out), CAIRN_EINVAL);
    cr_expect_eq(audit_correlation_id_clean("caf\xc3\xa9", out), CAIRN_EINVAL);
    char longv[200];
    memset(longv, 'a', sizeof longv);
    longv[128] = '\0';
    cr_expect_eq(audit_correlation_id_clean(longv, out), 0);
    longv[128] = 'a';
    longv[129] = '\0';
    cr_expect_eq(audit_correlation_id_clean(longv, out), CAIRN_EINVAL);
}

Test(audit_journal, emitted_events_have_unique_ids) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    audit_event_fields e = {.time_us = 1, .request_id = "R", .status = 200};
    for (int i = 0; i < 50; i++) cr_assert_eq(audit_emit(j, &e, i % 2 == 0), 0);
    cr_assert_eq(audit_journal_sync(j), 0);
    audit_batch b;
    cr_assert_eq(audit_journal_read(j, (audit_cursor){0, 0, 0}, 100, &b), 0);
    cr_assert_eq(b.n, 50);
    char ids[50][33];
    for (int i = 0; i < 50; i++) {
        json_t *v = json_loadb(b.recs[i].payload, b.recs[i].len, 0, NULL);
        cr_assert_not_null(v);
        const char *id = json_string_value(json_object_get(v, "event_id"));
        cr_assert_eq(strlen(id), 32);
        cr_expect_eq(strspn(id, "0123456789abcdef"), 32);
        snprintf(ids[i], 33, "%s", id);
        for (int k = 0; k < i; k++) cr_expect_str_neq(ids[k], ids[i]);
        json_decref(v);
    }
    audit_batch_free(&b);
    audit_journal_close(j);
}

/* ---- failures (the fault build) -------------------------------------------------------------- */

#if CAIRN_FAULT_BUILD

static void fault_case(const char *spec) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    append_n(j, 0, 5, AUDIT_APPEND_DURABLE);
    cr_assert_eq(fault_configure(spec), 0);
    char p[256];
    payload(p, sizeof p, 5);
    cr_expect_eq(audit_journal_append(j, p, strlen(p), AUDIT_APPEND_DURABLE), CAIRN_EIO);
    cr_assert_eq(fault_configure(""), 0);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.lost, 1, "the failed event is counted");
    /* A non-durable append whose batch fails: counted too. */
    cr_assert_eq(fault_configure(spec), 0);
    cr_expect_eq(audit_journal_append(j, p, strlen(p), 0), 0);
    cr_expect_eq(audit_journal_sync(j), CAIRN_EIO);
    cr_assert_eq(fault_configure(""), 0);
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.lost, 2);
    /* The journal works again, on a fresh segment, with no gap in the sequences. */
    append_n(j, 5, 5, AUDIT_APPEND_DURABLE);
    int n;
    audit_cursor c = read_all(j, (audit_cursor){0, 0, 0}, 3, 0, &n);
    cr_expect_eq(n, 10);
    cr_expect_eq(c.seq, 10);
    audit_journal_close(j);
    j = open_j(&o);
    read_all(j, audit_journal_shipped(j), 100, 0, &n);
    cr_expect_eq(n, 10, "after a restart: exactly the records acknowledged");
    audit_journal_close(j);
}

Test(audit_journal, write_failure_fails_the_durable_append) { fault_case("sites=audit.write\nnth=1\nerrno=EIO"); }
Test(audit_journal, sync_failure_fails_the_durable_append) { fault_case("sites=audit.fsync\nnth=1\nerrno=EIO"); }
Test(audit_journal, full_disk_fails_the_durable_append) { fault_case("sites=audit.write\nnth=1\nerrno=ENOSPC"); }

typedef struct {
    audit_journal *j;
    audit_cursor c;
    int rc;
    atomic_bool done;
} commit_arg;

static void *committer(void *p) {
    commit_arg *a = p;
    a->rc = audit_journal_commit(a->j, a->c);
    atomic_store(&a->done, true);
    return NULL;
}

static bool cursor_file_says(uint64_t seq) {
    char path[300], text[128], want[64];
    snprintf(path, sizeof path, "%s/cursor", dir);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    snprintf(want, sizeof want, " %llu\n", (unsigned long long)seq);
    return n >= strlen(want) && !strcmp(text + n - strlen(want), want);
}

/* The shipper's commit writes and syncs the cursor file without the
 * journal's lock: a request's append (durable, even) is not held up by it.
 * Before, appenders queued behind those two fsyncs on every commit. */
Test(audit_journal, appends_go_on_while_a_commit_writes_the_cursor) {
    audit_journal_opts o = opts();
    audit_journal *j = open_j(&o);
    append_n(j, 0, 20, AUDIT_APPEND_DURABLE);
    int n;
    commit_arg a = {.j = j, .c = read_all(j, audit_journal_shipped(j), 100, 0, &n)};
    cr_assert_eq(n, 20);
    cr_assert_eq(fault_configure("pause=audit.cursor.written:5000:1"), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, committer, &a), 0);
    int64_t until = time_mono_ns() + 10 * 1000000000LL;
    while (!cursor_file_says(20) && time_mono_ns() < until) usleep(1000);
    cr_assert(cursor_file_says(20), "the commit wrote the cursor file");
    append_n(j, 20, 3, AUDIT_APPEND_DURABLE);
    cr_expect_not(atomic_load(&a.done), "the durable appends finished while the commit held its pause");
    pthread_join(t, NULL);
    cr_assert_eq(fault_configure(""), 0);
    cr_expect_eq(a.rc, 0);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.depth, 3, "the commit counted; the three appended after it are not shipped");
    read_all(j, audit_journal_shipped(j), 100, 20, &n);
    cr_expect_eq(n, 3);
    audit_journal_close(j);
}

Test(audit_journal, spool_failure_is_counted_lost) {
    audit_journal_opts o = opts();
    o.max_bytes = 1024;
    o.overflow = AUDIT_OVERFLOW_SPOOL;
    audit_journal *j = open_j(&o);
    append_n(j, 0, 10, AUDIT_APPEND_DURABLE);
    cr_assert_eq(fault_configure("sites=audit.*\nnth=1\ncount=0"), 0);
    char p[256];
    payload(p, sizeof p, 10);
    cr_expect_eq(audit_journal_append(j, p, strlen(p), AUDIT_APPEND_DURABLE), CAIRN_EIO);
    cr_assert_eq(fault_configure(""), 0);
    audit_journal_stats st;
    audit_journal_get_stats(j, &st);
    cr_expect_eq(st.lost, 1);
    audit_journal_close(j);
}

#else

Test(audit_journal, fault_sites_are_no_ops_outside_the_fault_build) {
    cr_expect_eq(fault_inject(FAULT_AUDIT_WRITE), 0);
    cr_expect_eq(fault_inject(FAULT_AUDIT_FSYNC), 0);
}

#endif
