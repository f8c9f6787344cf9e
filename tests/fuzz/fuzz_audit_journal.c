/*
 * fuzz_audit_journal.c — libFuzzer target for the audit journal's record
 * reader (src/audit/journal.c), which reads files a crash or a disk may
 * have torn or corrupted.
 *
 * The first input byte picks the mode; the rest is file content.
 *   even: the bytes are parsed as records in a loop the way the reader
 *         resynchronizes (skip a byte after a bad one); every record that
 *         parses must fit the input, re-encode to the same bytes, and a
 *         torn answer (1) may only come at the end.
 *   odd:  the bytes become the journal's segments (split in two at a point
 *         the second byte picks) in a scratch directory; the journal is
 *         opened (recovery: the last segment's bad tail is cut, the other's
 *         corruption skipped), read to the end, given one more record,
 *         closed and opened again: that record must be the last one read,
 *         and nothing may crash or leak.
 */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/journal.h"

static char dir[64];

static void write_file(const char *name, const uint8_t *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) abort();
    if (n && write(fd, p, n) != (ssize_t)n) abort();
    close(fd);
}

static void parse_all(const uint8_t *p, size_t n) {
    size_t off = 0;
    while (off < n) {
        audit_record r;
        size_t size = 0;
        int rc = audit_record_parse(p + off, n - off, &r, &size);
        if (rc == 0) {
            assert(size >= AUDIT_RECORD_HEADER && size <= n - off);
            assert(r.len == size - AUDIT_RECORD_HEADER && r.len <= AUDIT_RECORD_MAX_PAYLOAD);
            buf_t b;
            buf_init(&b);
            if (audit_record_encode(&b, r.seq, r.time_ms, r.payload, r.len) != 0) abort();
            assert(b.len == size && memcmp(b.data, p + off, size) == 0);
            buf_free(&b);
            off += size;
        } else {
            assert(rc == 1 || rc == CAIRN_EINVAL);
            off++;
        }
    }
}

static int last_is_marker(void *ud, const audit_record *r) {
    int *found = ud;
    *found = r->len == 6 && memcmp(r->payload, "marker", 6) == 0;
    return 0;
}

static void recover(const uint8_t *p, size_t n, uint8_t split) {
    size_t cut = n ? (size_t)split * n / 256 : 0;
    write_file("journal-00000000000000000001.log", p, cut);
    write_file("journal-00000000000000000002.log", p + cut, n - cut);
    unlink("cursor");
    audit_journal_opts o = {.dir = dir, .max_bytes = 64 << 20, .segment_bytes = 1 << 20, .sync_ms = 1,
                            .overflow = AUDIT_OVERFLOW_REJECT, .fsync = false};
    audit_journal *j;
    if (audit_journal_open(&o, &j) != 0) abort();
    audit_cursor c = audit_journal_shipped(j);
    for (;;) {
        audit_batch b;
        if (audit_journal_read(j, c, 64, &b) != 0) abort();
        int got = b.n;
        c = b.next;
        audit_batch_free(&b);
        if (!got) break;
    }
    if (audit_journal_append(j, "marker", 6, AUDIT_APPEND_DURABLE) != 0) abort();
    audit_journal_close(j);
    int found = 0;
    if (audit_journal_scan(dir, true, last_is_marker, &found, NULL) != 0) abort();
    assert(found);
    char path[128];
    for (int i = 1; i <= 3; i++) {
        snprintf(path, sizeof path, "%s/journal-%020d.log", dir, i);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/cursor", dir);
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/cairn-fuzz-audit-XXXXXX");
    if (!mkdtemp(dir)) abort();
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) log_set_fd(devnull);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if (data[0] % 2 == 0) parse_all(data + 1, size - 1);
    else recover(data + 2, size - 2, data[1]);
    return 0;
}
