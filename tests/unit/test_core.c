/*
 * test_core.c — core helpers: buffers and escaping, dates, hex, URI coding.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include "core/core.h"

Test(buf, grows_and_escapes) {
    buf_t b;
    buf_init(&b);
    for (int i = 0; i < 1000; i++) buf_printf(&b, "%d,", i);
    cr_expect(b.len > 3000 && !b.oom);
    buf_reset(&b);
    buf_xml_escape(&b, "a<b>&\"c'\x01", 9);
    cr_expect_str_eq(b.data, "a&lt;b&gt;&amp;&quot;c&apos;&#x1;");
    buf_reset(&b);
    buf_json_escape(&b, "q\"\\\n\x02", 5);
    cr_expect_str_eq(b.data, "q\\\"\\\\\\n\\u0002");
    buf_free(&b);
}

Test(buf, prometheus_label_values) {
    buf_t b;
    buf_init(&b);
    buf_prom_label(&b, "plain");
    cr_expect_str_eq(b.data, "plain");
    buf_reset(&b);
    buf_prom_label(&b, "a\"b\\c\nd}e");
    cr_expect_str_eq(b.data, "a\\\"b\\\\c\\nd}e");
    buf_free(&b);
}

Test(time, http_dates) {
    int64_t ms;
    cr_assert_eq(time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_assert_eq(time_parse_http("Sunday, 06-Nov-94 08:49:37 GMT", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_assert_eq(time_parse_http("Sun Nov  6 08:49:37 1994", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_expect_neq(time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT junk", &ms), 0);
    cr_expect_neq(time_parse_http("Sun, 32 Nov 1994 08:49:37 GMT", &ms), 0);
    cr_expect_neq(time_parse_http("yesterday", &ms), 0);
    char out[40];
    time_fmt_http(784111777000LL, out, sizeof out);
    cr_expect_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    time_fmt_iso8601(784111777123LL, out, sizeof out);
    cr_expect_str_eq(out, "1994-11-06T08:49:37.123Z");
}

Test(time, amz_dates) {
    int64_t s;
    cr_assert_eq(time_parse_amz("20150830T123600Z", &s), 0);
    cr_expect_eq(s, 1440938160LL);
    cr_expect_neq(time_parse_amz("20150830T123600", &s), 0);
    cr_expect_neq(time_parse_amz("2015083OT123600Z", &s), 0);
    cr_expect_neq(time_parse_amz("20151330T123600Z", &s), 0);
}

Test(encoding, hex_and_uri) {
    char hex[9];
    unsigned char raw[4] = {0xde, 0xad, 0xbe, 0xef}, back[4];
    size_t n;
    hex_encode(raw, 4, hex);
    cr_expect_str_eq(hex, "deadbeef");
    cr_assert_eq(hex_decode("DEADbeef", 8, back, 4, &n), 0);
    cr_expect(n == 4 && !memcmp(raw, back, 4));
    cr_expect_neq(hex_decode("zz", 2, back, 4, &n), 0);
    cr_expect_neq(hex_decode("abc", 3, back, 4, &n), 0);
    char dec[32];
    cr_expect_eq(url_decode("a%2Fb%20c+d", 11, dec), 7);
    cr_expect_str_eq(dec, "a/b c+d");
    cr_expect_lt(url_decode("bad%2", 5, dec), 0);
    cr_expect_lt(url_decode("bad%zz", 6, dec), 0);
    cr_expect_lt(url_decode("%", 1, dec), 0);
    buf_t b;
    buf_init(&b);
    buf_url_encode(&b, "a b/c~d+\xc3\xa9", 10, true);
    cr_expect_str_eq(b.data, "a%20b/c~d%2B%C3%A9");
    buf_reset(&b);
    buf_url_encode(&b, "a/b", 3, false);
    cr_expect_str_eq(b.data, "a%2Fb");
    buf_reset(&b);
    buf_url_encode(&b, "Az09-_.~ !*'()", 14, false);
    cr_expect_str_eq(b.data, "Az09-_.~%20%21%2A%27%28%29", "only A-Za-z0-9-_.~ are kept");
    buf_free(&b);
}

/* ---- error names -------------------------------------------------------------- */

Test(errors, every_code_has_its_own_name) {
    static const struct { int code; const char *name; } names[] = {
        {CAIRN_OK, "ok"},
        {CAIRN_EINVAL, "invalid argument"},
        {CAIRN_ENOMEM, "out of memory"},
        {CAIRN_EIO, "I/O error"},
        {CAIRN_ENOTFOUND, "not found"},
        {CAIRN_EEXIST, "already exists"},
        {CAIRN_EDB, "database error"},
        {CAIRN_ETOOBIG, "too big"},
        {CAIRN_ENOSPC, "no space left"},
        {CAIRN_ENOTEMPTY, "not empty"},
        {CAIRN_EAUTH, "authentication failed"},
        {CAIRN_ECONFLICT, "conflict"},
        {CAIRN_EBUSY, "busy"},
        {CAIRN_ETIMEDOUT, "timed out"},
        {-999, "unknown error"},
        {7, "unknown error"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect_str_eq(cairn_strerror(names[i].code), names[i].name, "code %d", names[i].code);
}

/* ---- buffers: the edges ------------------------------------------------------- */

Test(buf, an_impossible_reservation_latches_oom) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "kept");
    cr_expect_eq(buf_reserve(&b, SIZE_MAX / 2 + 1), CAIRN_ENOMEM);
    cr_expect(b.oom);
    /* Latched: later appends, small or long, are no-ops and keep what was there. */
    buf_puts(&b, "dropped");
    char longer[600];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    buf_printf(&b, "%s", longer);
    cr_expect_eq(b.len, 4);
    cr_expect_str_eq(b.data, "kept");
    cr_expect_eq(buf_reserve(&b, 1), CAIRN_ENOMEM);
    buf_free(&b);
    cr_expect(!b.oom && b.data == NULL, "buf_free resets the latch");
}

Test(buf, printf_longer_than_the_stack_chunk) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<");
    buf_printf(&b, "%0300d>", 7);
    cr_expect_eq(b.len, 302);
    cr_expect_eq(b.data[0], '<');
    cr_expect_eq(b.data[299], '0');
    cr_expect_str_eq(b.data + 300, "7>");
    buf_free(&b);
}

Test(buf, printf_encoding_error_appends_nothing) {
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "ab");
    /* U+0100 has no encoding in the C locale: vsnprintf fails and nothing is appended. */
    wchar_t wide[] = {0x100, 0};
    buf_printf(&b, "%ls", wide);
    cr_expect_eq(b.len, 2);
    cr_expect_str_eq(b.data, "ab");
    cr_expect(!b.oom);
    buf_free(&b);
}

Test(buf, xml_escapes_tab_cr_lf_as_numeric_references) {
    buf_t b;
    buf_init(&b);
    buf_xml_escape(&b, "a\tb\nc\rd\x1f" "e \x7f", 11);
    cr_expect_str_eq(b.data, "a&#x9;b&#xA;c&#xD;d&#x1F;e \x7f");
    buf_free(&b);
}

Test(buf, json_escapes_every_control_character) {
    buf_t b;
    buf_init(&b);
    buf_json_escape(&b, "\r\t\x7f\x1f" "ok/\xc3\xa9", 9);
    cr_expect_str_eq(b.data, "\\r\\t\\u007f\\u001fok/\xc3\xa9");
    buf_free(&b);
}

Test(buf, steal_hands_over_the_bytes_or_an_empty_string) {
    buf_t b;
    buf_init(&b);
    char *empty = buf_steal(&b);
    cr_assert_not_null(empty);
    cr_expect_str_eq(empty, "");
    free(empty);
    buf_puts(&b, "body");
    char *p = buf_steal(&b);
    cr_expect_str_eq(p, "body");
    cr_expect(b.data == NULL && b.len == 0 && b.cap == 0, "the buffer is reset");
    free(p);
}

/* ---- dates: the edges ----------------------------------------------------------- */

Test(time, http_dates_other_forms_and_years) {
    int64_t ms;
    /* RFC 850 with a year before 1970 and after 2000 in two digits, and four digits. */
    cr_assert_eq(time_parse_http("Thursday, 01-Jan-70 00:00:00 GMT", &ms), 0);
    cr_expect_eq(ms, 0);
    cr_assert_eq(time_parse_http("Saturday, 01-Jan-00 00:00:00 GMT", &ms), 0);
    cr_expect_eq(ms, 946684800000LL);
    cr_assert_eq(time_parse_http("Sunday, 06-Nov-1994 08:49:37 GMT", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    /* Month names are matched without regard to case. */
    cr_assert_eq(time_parse_http("Sun, 06 NOV 1994 08:49:37 GMT", &ms), 0);
    cr_expect_eq(ms, 784111777000LL);
    cr_assert_eq(time_parse_http("Fri, 31 Dec 1999 23:59:60 GMT", &ms), 0, "a leap second parses");
}

Test(time, http_dates_out_of_range_fields_are_refused) {
    int64_t ms = 42;
    const char *bad[] = {
        NULL,
        "Sun, 06 Nov 1994 08:49:37 GMT and then a great deal more text after it......",
        "Sun, 06 Foo 1994 08:49:37 GMT",   /* no such month */
        "Sun, 00 Nov 1994 08:49:37 GMT",   /* day 0 */
        "Sun, 06 Nov 1994 24:49:37 GMT",   /* hour 24 */
        "Sun, 06 Nov 1994 -1:49:37 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",   /* minute 60 */
        "Sun, 06 Nov 1994 08:-1:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",   /* second 61 */
        "Sun, 06 Nov 1994 08:49:-1 GMT",
        "Sun, 06 Nov 1899 08:49:37 GMT",   /* before 1900 */
        "Sun, 06 Nov 10000 08:49:37 GMT",  /* past 9999 */
        "Sunday, 06-Nov-94 08:49:37 GMT+1",
        "Sun Nov  6 08:49:37 1994 UTC",
        "Sun Nov 32 08:49:37 1994",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(time_parse_http(bad[i], &ms), CAIRN_EINVAL, "%s", bad[i] ? bad[i] : "(null)");
    cr_expect_eq(ms, 42, "a refused date leaves the output alone");
}

Test(time, amz_dates_shape_and_range) {
    int64_t s = 42;
    const char *bad[] = {
        NULL,
        "20150830X123600Z",  /* no T */
        "20150830T123600z",  /* lower-case z */
        "20150830T1236000",  /* no Z */
        "20150830T123600ZZ", /* too long */
        "20150800T123600Z",  /* day 0 */
        "20150800T123600Z",
        "20150832T123600Z",  /* day 32 */
        "20150830T243600Z",  /* hour 24 */
        "20150830T126000Z",  /* minute 60 */
        "20150830T123661Z",  /* second 61 */
        "20150030T123600Z",  /* month 0 */
        "18991231T235959Z",  /* before 1900 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(time_parse_amz(bad[i], &s), CAIRN_EINVAL, "%s", bad[i] ? bad[i] : "(null)");
    cr_expect_eq(s, 42);
    cr_assert_eq(time_parse_amz("19700101T000000Z", &s), 0);
    cr_expect_eq(s, 0);
}

Test(encoding, hex_decode_bounds_and_optional_length) {
    unsigned char out[2];
    size_t n = 99;
    cr_expect_eq(hex_decode("aabbcc", 6, out, 2, &n), CAIRN_EINVAL, "three bytes do not fit in two");
    cr_expect_eq(n, 99);
    cr_expect_eq(hex_decode("aG", 2, out, 2, &n), CAIRN_EINVAL, "bad low digit");
    cr_assert_eq(hex_decode("0aF0", 4, out, 2, NULL), 0, "the length output is optional");
    cr_expect(out[0] == 0x0a && out[1] == 0xf0);
    cr_assert_eq(hex_decode("", 0, out, 0, &n), 0);
    cr_expect_eq(n, 0);
    char id[2 * 64 + 1];
    memset(id, 'z', sizeof id);
    rand_hex_id(id, 100); /* capped at 64 random bytes */
    cr_expect_eq(strlen(id), 128);
    cr_expect_eq(strspn(id, "0123456789abcdef"), 128);
}

Test(core, time_hex_ids_lead_with_the_milliseconds_and_sort_by_them) {
    const unsigned char r1[10] = {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66};
    const unsigned char r0[10] = {0};
    char a[TIME_HEX_ID_LEN + 1], b[TIME_HEX_ID_LEN + 1];
    time_hex_id_from(0x0123456789abLL, r1, a);
    cr_expect_str_eq(a, "0123456789abffeeddccbbaa99887766");
    /* A later millisecond sorts after, whatever the random part. */
    time_hex_id_from(0x0123456789acLL, r0, b);
    cr_expect_str_eq(b, "0123456789ac00000000000000000000");
    cr_expect_lt(strcmp(a, b), 0);
    /* A time before the epoch is clamped, never wraps to the far future. */
    time_hex_id_from(-5, r0, b);
    cr_expect_str_eq(b, "00000000000000000000000000000000");
    /* The wall clock version: now's milliseconds, and distinct ids. */
    int64_t before = time_now_ms();
    time_hex_id(a);
    time_hex_id(b);
    int64_t after = time_now_ms();
    cr_expect_eq(strlen(a), TIME_HEX_ID_LEN);
    cr_expect_eq(strspn(a, "0123456789abcdef"), TIME_HEX_ID_LEN);
    cr_expect_str_neq(a, b);
    char ms_hex[13];
    memcpy(ms_hex, a, 12);
    ms_hex[12] = '\0';
    long long ms = strtoll(ms_hex, NULL, 16);
    cr_expect(ms >= before && ms <= after, "%lld not in [%lld, %lld]", ms, (long long)before, (long long)after);
}

/* ---- files ---------------------------------------------------------------------- */

static void tmpdir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/cairn-test-core-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

Test(files, lock_is_exclusive_and_names_its_holder) {
    char dir[64], path[128];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = -1, fd2 = -1;
    long holder = -1;
    cr_assert_eq(file_lock_exclusive(path, &fd, &holder), 0);
    cr_expect_eq(holder, 0, "no holder reported when the lock is taken");
    cr_expect_eq(strtol(slurp(path), NULL, 10), (long)getpid(), "the file holds our pid");
    /* A second open file description conflicts even in the same process. */
    cr_expect_eq(file_lock_exclusive(path, &fd2, &holder), CAIRN_EBUSY);
    cr_expect_eq(holder, (long)getpid());
    cr_expect_eq(file_lock_exclusive(path, &fd2, NULL), CAIRN_EBUSY, "the holder output is optional");
    close(fd);
    cr_assert_eq(file_lock_exclusive(path, &fd2, NULL), 0, "free again once the holder closes");
    close(fd2);
    /* A holder that never wrote its pid (another program's flock): unknown, 0. */
    char other[160];
    snprintf(other, sizeof other, "%s/OTHER", dir);
    int ofd = open(other, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(ofd, 0);
    cr_assert_eq(flock(ofd, LOCK_EX), 0);
    holder = -1;
    cr_expect_eq(file_lock_exclusive(other, &fd2, &holder), CAIRN_EBUSY);
    cr_expect_eq(holder, 0);
    close(ofd);
    unlink(other);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no/such/dir/LOCK", dir);
    cr_expect_eq(file_lock_exclusive(missing, &fd2, &holder), CAIRN_EIO);
    cr_expect_eq(holder, 0);
    unlink(path);
    rmdir(dir);
}

Test(files, atomic_write_replace_create_and_failures) {
    char dir[64], path[128], sub[128];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f", dir);
    cr_assert_eq(file_write_atomic(path, "one", 3, 0600, false), 0, "create-only on a new name");
    cr_expect_str_eq(slurp(path), "one");
    cr_expect_eq(file_write_atomic(path, "two", 3, 0600, false), CAIRN_EEXIST);
    cr_expect_str_eq(slurp(path), "one", "create-only leaves an existing file alone");
    cr_assert_eq(file_write_atomic(path, "three", 5, 0600, true), 0);
    cr_expect_str_eq(slurp(path), "three");
    /* Replacing a directory fails, and no temp file is left behind. */
    snprintf(sub, sizeof sub, "%s/d", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    cr_expect_eq(file_write_atomic(sub, "x", 1, 0600, true), CAIRN_EIO);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no/such/f", dir);
    cr_expect_eq(file_write_atomic(missing, "x", 1, 0600, true), CAIRN_EIO);
    char longpath[4300];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    cr_expect_eq(file_write_atomic(longpath, "x", 1, 0600, true), CAIRN_EINVAL, "a name too long for the temp file");
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') entries++;
    closedir(d);
    cr_expect_eq(entries, 2, "only f and d: no temp file left");
    rmdir(sub);
    unlink(path);
    rmdir(dir);
}

/* ---- the logger ----------------------------------------------------------------- */

/* Points the logger at a fresh temp file; read it back with log_text(). */
static int log_to_tmp(void) {
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    int fd = dup(fileno(f));
    fclose(f);
    log_set_fd(fd);
    return fd;
}

static const char *log_text(int fd) {
    static char text[8192];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    return text;
}

Test(log, levels_parse_by_name_only) {
    log_level l = LOG_ERROR;
    cr_expect_eq(log_level_parse("WARN", &l), 0);
    cr_expect_eq(l, LOG_WARN);
    cr_expect_eq(log_level_parse("debug", &l), 0);
    cr_expect_eq(l, LOG_DEBUG);
    cr_expect_eq(log_level_parse("loud", &l), CAIRN_EINVAL);
    cr_expect_eq(log_level_parse("", &l), CAIRN_EINVAL);
    cr_expect_eq(l, LOG_DEBUG, "a refused name leaves the level alone");
}

Test(log, lines_are_json_with_optional_request_id_and_fields) {
    int fd = log_to_tmp();
    log_write(LOG_INFO, "", "no id", "k", NULL, NULL);
    log_write(LOG_WARN, "req\"1", "with id", "path", "a\nb", NULL);
    const char *t = log_text(fd);
    cr_expect(strstr(t, "\"level\":\"info\",\"msg\":\"no id\",\"k\":\"\"}\n") != NULL, "%s", t);
    cr_expect(strstr(t, "\"no id\",\"request_id\"") == NULL, "an empty request id is left out");
    cr_expect(strstr(t, "\"level\":\"warn\",\"msg\":\"with id\",\"request_id\":\"req\\\"1\",\"path\":\"a\\nb\"}\n") != NULL,
              "%s", t);
    close(fd);
}

Test(log, below_the_level_nothing_is_written) {
    int fd = log_to_tmp();
    log_set_level(LOG_WARN);
    log_msgf(LOG_INFO, NULL, "quiet %d", 1);
    log_write(LOG_DEBUG, NULL, "quiet too", NULL);
    log_msgf(LOG_ERROR, "r1", "loud %d%%", 2);
    const char *t = log_text(fd);
    cr_expect(strstr(t, "quiet") == NULL, "%s", t);
    cr_expect(strstr(t, "\"level\":\"error\",\"msg\":\"loud 2%\",\"request_id\":\"r1\"}") != NULL, "%s", t);
    log_set_level(LOG_INFO);
    close(fd);
}

Test(log, an_unwritable_fd_drops_the_line_and_the_next_fd_works) {
    int bad = open("/dev/null", O_RDONLY);
    cr_assert_geq(bad, 0);
    log_set_fd(bad);
    log_write(LOG_ERROR, NULL, "lost", NULL); /* write fails: the line is dropped, not retried forever */
    close(bad);
    int fd = log_to_tmp();
    log_write(LOG_ERROR, NULL, "kept", NULL);
    const char *t = log_text(fd);
    cr_expect(strstr(t, "lost") == NULL && strstr(t, "\"msg\":\"kept\"") != NULL, "%s", t);
    close(fd);
}

/* ---- fault injection: the spec language's edges (fault build only) ----------------- */

#if CAIRN_FAULT_BUILD

Test(faults_spec, site_names_and_patterns) {
    cr_expect_str_eq(fault_site_name(FAULT_DATA_OPEN), "data.open");
    cr_expect_str_eq(fault_site_name(FAULT__COUNT), "?");
    cr_expect_str_eq(fault_site_name((fault_site)-1), "?");
    cr_expect_eq(fault_configure("sites=data*"), CAIRN_EINVAL, "a star needs a dot before it");
    cr_expect_eq(fault_configure("sites=d"), CAIRN_EINVAL);
    cr_expect_eq(fault_configure("sites=net.send,,"), CAIRN_EINVAL, "an empty pattern selects nothing");
    cr_assert_eq(fault_configure("sites=net.*;nth=1;count=0"), 0);
    cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0);
    cr_expect_eq(fault_inject(FAULT_NET_RECV), EIO);
    cr_expect_eq(fault_inject(FAULT__COUNT), 0, "an out-of-range site is never selected");
    cr_assert_eq(fault_configure(NULL), 0, "NULL disarms like an empty spec");
    cr_expect_eq(fault_inject(FAULT_NET_RECV), 0);
}

Test(faults_spec, blank_items_and_limits) {
    cr_assert_eq(fault_configure("\n \t\r\n;;sites=meta.write\n\nnth=1\n"), 0, "blank items are skipped");
    cr_expect_eq(fault_inject(FAULT_META_WRITE), EIO);
    char item[300];
    memset(item, 'x', sizeof item - 1);
    item[sizeof item - 1] = '\0';
    memcpy(item, "window=", 7);
    cr_expect_eq(fault_configure(item), CAIRN_EINVAL, "an item longer than 255 bytes");
    char w[80];
    memset(w, 'w', sizeof w - 1);
    w[sizeof w - 1] = '\0';
    memcpy(w, "window=", 7);
    cr_expect_eq(fault_configure(w), CAIRN_EINVAL, "a window name longer than 63 bytes");
    char p[90];
    memset(p, 'p', sizeof p - 1);
    p[sizeof p - 1] = '\0';
    memcpy(p, "pause=", 6);
    p[sizeof p - 3] = ':';
    p[sizeof p - 2] = '5';
    cr_expect_eq(fault_configure(p), CAIRN_EINVAL, "a pause name longer than 63 bytes");
    cr_expect_eq(fault_configure("pause=a:1;pause=b:1;pause=c:1;pause=d:1;pause=e:1;pause=f:1;pause=g:1;pause=h:1"), 0);
    cr_expect_eq(fault_configure("pause=a:1;pause=b:1;pause=c:1;pause=d:1;pause=e:1;pause=f:1;pause=g:1;pause=h:1;pause=i:1"),
                 CAIRN_EINVAL, "at most eight pauses");
    cr_expect_eq(fault_configure(" junk "), CAIRN_EINVAL, "a word that is not blank and has no '='");
    fault_configure("");
}

Test(faults_spec, pauses_and_windows_by_name) {
    int fd = log_to_tmp();
    cr_assert_eq(fault_configure("pause=slow.point:1;sites=*;nth=1;window=pass"), 0);
    fault_point("other.point");
    fault_point("slow.point");
    fault_point("pass.middle"); /* the window's prefix, but neither .begin nor .end */
    cr_expect_eq(fault_inject(FAULT_DATA_OPEN), 0, "still outside the window");
    fault_point("pass.begin");
    cr_expect_eq(fault_inject(FAULT_DATA_OPEN), EIO);
    const char *t = log_text(fd);
    cr_expect(strstr(t, "\"msg\":\"fault point: pausing\",\"point\":\"slow.point\"") != NULL, "%s", t);
    cr_expect(strstr(t, "\"point\":\"other.point\"") == NULL, "%s", t);
    cr_expect(strstr(t, "\"msg\":\"fault injected\",\"site\":\"data.open\",\"call\":\"1\",\"errno\":\"EIO\"") != NULL, "%s", t);
    fault_configure("");
    close(fd);
}

Test(faults_spec, a_pause_only_spec_fails_no_call) {
    int fd = log_to_tmp();
    fault_point("before.arming"); /* disarmed: nothing happens */
    cr_assert_eq(fault_configure("sites=*;pause=p:0"), 0, "armed by the pause, with no nth");
    for (int i = 0; i < 3; i++) cr_expect_eq(fault_inject(FAULT_DATA_WRITE), 0);
    fault_point("p");             /* 0 ms: no pause, nothing logged */
    const char *t = log_text(fd);
    cr_expect(strstr(t, "fault injected") == NULL && strstr(t, "pausing") == NULL, "%s", t);
    cr_expect(strstr(t, "\"msg\":\"fault injection armed\",\"spec\":\"sites=*;pause=p:0\"") != NULL, "%s", t);
    fault_configure("");
    close(fd);
}

Test(faults_spec, enospc_is_logged_by_name) {
    int fd = log_to_tmp();
    cr_assert_eq(fault_configure("sites=data.fsync;nth=2;errno=enospc;action=fail"), 0);
    cr_expect_eq(fault_inject(FAULT_DATA_FSYNC), 0);
    cr_expect_eq(fault_inject(FAULT_DATA_FSYNC), ENOSPC);
    const char *t = log_text(fd);
    cr_expect(strstr(t, "\"site\":\"data.fsync\",\"call\":\"2\",\"errno\":\"ENOSPC\"") != NULL, "%s", t);
    fault_configure("");
    close(fd);
}

Test(faults_spec, abort_action_aborts_at_the_nth_call, .signal = SIGABRT) {
    cr_assert_eq(fault_configure("sites=data.write;nth=2;action=abort"), 0);
    cr_assert_eq(fault_inject(FAULT_DATA_WRITE), 0, "the first call passes");
    fault_inject(FAULT_DATA_WRITE);
    cr_assert_fail("the second call should have aborted the process");
}

Test(faults_spec, reload_reads_the_file_the_environment_names) {
    unsetenv("CAIRN_TEST_FAULT_FILE");
    cr_expect_eq(fault_reload(), CAIRN_ENOTFOUND);
    setenv("CAIRN_TEST_FAULT_FILE", "", 1);
    cr_expect_eq(fault_reload(), CAIRN_ENOTFOUND);
    char dir[64], path[128];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/spec", dir);
    setenv("CAIRN_TEST_FAULT_FILE", path, 1);
    cr_expect_eq(fault_reload(), CAIRN_EIO, "a missing file");
    cr_assert_eq(file_write_atomic(path, "sites=meta.open\nnth=1\n", 22, 0600, true), 0);
    cr_assert_eq(fault_reload(), 0);
    cr_expect_eq(fault_inject(FAULT_META_OPEN), EIO);
    cr_assert_eq(file_write_atomic(path, "errno=EPERM\n", 12, 0600, true), 0);
    cr_expect_eq(fault_reload(), CAIRN_EINVAL, "a bad spec in the file is refused");
    unlink(path);
    rmdir(dir);
    unsetenv("CAIRN_TEST_FAULT_FILE");
    fault_configure("");
}

Test(faults_spec, init_from_the_environment) {
    setenv("CAIRN_TEST_FAULT", "", 1);
    fault_init_from_env();
    cr_expect_eq(fault_inject(FAULT_NET_SEND), 0, "an empty variable arms nothing");
    setenv("CAIRN_TEST_FAULT", "sites=net.send;nth=1", 1);
    cr_assert_eq(core_init(), 0);
    cr_expect_eq(fault_inject(FAULT_NET_SEND), EIO, "core_init arms from CAIRN_TEST_FAULT");
    unsetenv("CAIRN_TEST_FAULT");
    fault_configure("");
}

#endif

/* ---- metrics registry ---------------------------------------------------------- */

#include "obs/obs.h"

static bool has_line(const buf_t *b, const char *line) {
    size_t n = strlen(line);
    for (const char *p = b->data; p && (p = strstr(p, line)); p++)
        if ((p == b->data || p[-1] == '\n') && (p[n] == '\n')) return true;
    return false;
}

Test(metrics, apis_are_matched_by_name_not_pointer) {
    obs_registry *o = obs_new();
    cr_assert_not_null(o);
    char a1[] = "GetObject", a2[] = "GetObject";
    obs_request(o, "", 404, 100.0, 3, 0); /* an empty name, slower than every bucket */
    obs_request(o, a1, 200, 0.001, 0, 10);
    obs_request(o, a2, 200, 0.001, 0, 10);
    obs_inflight(o, 2);
    obs_inflight(o, -1);
    buf_t b;
    buf_init(&b);
    obs_render(o, &b);
    cr_expect(has_line(&b, "cairn_http_requests_total{api=\"GetObject\",code=\"200\"} 2"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_http_requests_total{api=\"\",code=\"404\"} 1"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_http_request_duration_seconds_bucket{api=\"\",le=\"60\"} 0"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_http_request_duration_seconds_bucket{api=\"\",le=\"+Inf\"} 1"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_http_request_duration_seconds_bucket{api=\"GetObject\",le=\"0.001\"} 2"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_http_received_bytes_total 3"));
    cr_expect(has_line(&b, "cairn_http_sent_bytes_total 20"));
    cr_expect(has_line(&b, "cairn_http_requests_in_flight 1"));
    cr_expect(strstr(b.data, "process_resident_memory_bytes ") != NULL);
    cr_expect(strstr(b.data, "process_open_fds ") != NULL);
    buf_free(&b);
    obs_free(o);
    obs_free(NULL);
}

Test(metrics, gauges_of_one_name_share_one_help_line_and_are_bounded) {
    obs_registry *o = obs_new();
    obs_gauge_set(o, "cairn_leader", "role=\"scrub\"", "Leases held.", 1);
    obs_gauge_set(o, "cairn_other", "", "Another gauge.", 7);
    obs_gauge_set(o, "cairn_leader", "role=\"membership\"", "Leases held.", 1);
    obs_gauge_set(o, "cairn_leader", "role=\"scrub\"", "Leases held.", 0); /* set, not added */
    char long_labels[80];
    memset(long_labels, 'x', sizeof long_labels - 1);
    long_labels[sizeof long_labels - 1] = '\0';
    obs_gauge_set(o, "cairn_other", long_labels, "Another gauge.", 1); /* too long: not kept */
    static char names[20][32];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "cairn_test_g%02d", i);
        obs_gauge_set(o, names[i], "", "help", i);
    }
    buf_t b;
    buf_init(&b);
    obs_render(o, &b);
    cr_expect(has_line(&b, "cairn_leader{role=\"scrub\"} 0"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_leader{role=\"membership\"} 1"), "%s", b.data);
    cr_expect(has_line(&b, "cairn_other 7"), "%s", b.data);
    const char *help = strstr(b.data, "# HELP cairn_leader ");
    cr_expect(help && !strstr(help + 1, "# HELP cairn_leader "), "one HELP line per name: %s", b.data);
    cr_expect(help && strstr(help, "cairn_leader{role=\"scrub\"}") && strstr(help, "cairn_leader{role=\"membership\"}"),
              "both under it: %s", b.data);
    cr_expect(has_line(&b, "cairn_test_g12 12"), "16 gauges in all");
    cr_expect(strstr(b.data, "cairn_test_g13") == NULL, "the 17th gauge is not tracked");
    cr_expect(strstr(b.data, "xxxxx") == NULL, "labels longer than 63 bytes are not kept");
    buf_free(&b);
    obs_free(o);
}

Test(metrics, tables_are_bounded) {
    obs_registry *o = obs_new();
    static char names[70][16];
    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof names[i], "Api%02d", i);
        obs_request(o, names[i], 200, 0.01, 1, 0);
    }
    for (unsigned code = 200; code < 220; code++) obs_request(o, "Api00", code, 0.01, 0, 0);
    static char counters[40][32];
    for (int i = 0; i < 40; i++) {
        snprintf(counters[i], sizeof counters[i], "cairn_test_c%02d_total", i);
        obs_counter_add(o, counters[i], "help", 1);
        obs_counter_add(o, counters[i], "help", 2);
    }
    buf_t b;
    buf_init(&b);
    obs_render(o, &b);
    cr_expect(has_line(&b, "cairn_http_requests_total{api=\"Api63\",code=\"200\"} 1"));
    cr_expect(strstr(b.data, "Api64") == NULL, "the 65th API is not tracked");
    cr_expect(has_line(&b, "cairn_http_received_bytes_total 70"), "bytes still count");
    cr_expect(has_line(&b, "cairn_http_requests_total{api=\"Api00\",code=\"200\"} 2"));
    cr_expect(has_line(&b, "cairn_http_requests_total{api=\"Api00\",code=\"215\"} 1"), "16 codes per API");
    cr_expect(strstr(b.data, "code=\"216\"") == NULL, "the 17th code is not tracked");
    cr_expect(has_line(&b, "cairn_http_request_duration_seconds_count{api=\"Api00\"} 21"), "but the request is");
    cr_expect(has_line(&b, "cairn_test_c31_total 3"));
    cr_expect(strstr(b.data, "cairn_test_c32_total") == NULL, "the 33rd counter is not tracked");
    buf_free(&b);
    obs_free(o);
}

Test(time, now_in_microseconds_agrees_with_milliseconds) {
    int64_t ms0 = time_now_ms();
    int64_t us = time_now_us();
    int64_t ms1 = time_now_ms();
    cr_expect(us / 1000 >= ms0 && us / 1000 <= ms1, "%lld us not within [%lld, %lld] ms", (long long)us,
              (long long)ms0, (long long)ms1);
    cr_expect_gt(us, 1700000000LL * 1000000, "a wall clock after 2023");
}

Test(core, crc64nvme_matches_the_catalogue_and_is_incremental) {
    /* The CRC catalogue's check value of CRC-64/NVME: "123456789". */
    cr_assert_eq(crc64nvme(0, "123456789", 9), 0xae8b14860a799888ULL);
    cr_assert_eq(crc64nvme(0, "", 0), 0);
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 131 + 7);
    uint64_t whole = crc64nvme(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 37) {
        uint64_t c = crc64nvme(0, buf, cut);
        c = crc64nvme(c, buf + cut, sizeof buf - cut);
        cr_assert_eq(c, whole, "split at %zu", cut);
    }
    /* byte by byte (the unsliced path) too */
    uint64_t c = 0;
    for (size_t i = 0; i < sizeof buf; i++) c = crc64nvme(c, buf + i, 1);
    cr_assert_eq(c, whole);
}

/* A bitwise reference CRC: reflected, all-ones initial value and final XOR. */
static uint64_t crc_bitwise(const unsigned char *p, size_t n, uint64_t poly, unsigned width) {
    uint64_t mask = width == 64 ? ~0ULL : (1ULL << width) - 1, c = mask;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ poly : c >> 1;
    }
    return c ^ mask;
}

Test(core, crc_combine_equals_the_crc_of_the_whole_buffer) {
    static const struct { uint64_t poly; unsigned width; uint64_t check; } crcs[] = {
        {CRC32_POLY, 32, 0xcbf43926ULL},      /* the catalogue's check values ("123456789") */
        {CRC32C_POLY, 32, 0xe3069283ULL},
        {CRC64NVME_POLY, 64, 0xae8b14860a799888ULL},
    };
    static unsigned char buf[70000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    for (size_t a = 0; a < sizeof crcs / sizeof crcs[0]; a++) {
        uint64_t poly = crcs[a].poly;
        unsigned w = crcs[a].width;
        cr_assert_eq(crc_bitwise((const unsigned char *)"123456789", 9, poly, w), crcs[a].check);
        uint64_t whole = crc_bitwise(buf, sizeof buf, poly, w);
        /* Two pieces split anywhere, including empty ones. */
        static const size_t cuts[] = {0, 1, 7, 8, 255, 4096, 65537, sizeof buf - 1, sizeof buf};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            size_t cut = cuts[k];
            uint64_t c = crc_combine(crc_bitwise(buf, cut, poly, w), crc_bitwise(buf + cut, sizeof buf - cut, poly, w),
                                     sizeof buf - cut, poly, w);
            cr_assert_eq(c, whole, "width %u split at %zu", w, cut);
        }
        /* Many unequal parts folded left to right, as a multipart upload's. */
        uint64_t acc = 0;
        size_t off = 0;
        for (size_t len = 1; off < sizeof buf; len = len * 3 + 11) {
            size_t n = len < sizeof buf - off ? len : sizeof buf - off;
            acc = off == 0 ? crc_bitwise(buf, n, poly, w)
                           : crc_combine(acc, crc_bitwise(buf + off, n, poly, w), n, poly, w);
            off += n;
        }
        cr_assert_eq(acc, whole, "width %u folded", w);
    }
    /* crc64nvme (the sliced implementation) agrees with the reference. */
    cr_assert_eq(crc64nvme(0, buf, sizeof buf), crc_bitwise(buf, sizeof buf, CRC64NVME_POLY, 64));
}

Test(time, iso8601_as_s3_sends_it) {
    int64_t ms = 0;
    cr_assert_eq(time_parse_iso8601("2030-01-01T00:00:00Z", &ms), 0);
    cr_assert_eq(ms, 1893456000000LL);
    cr_assert_eq(time_parse_iso8601("2030-01-01T00:00:00.123456Z", &ms), 0);
    cr_assert_eq(ms, 1893456000123LL, "the fraction is cut to milliseconds");
    cr_assert_eq(time_parse_iso8601("2030-01-01T00:00:00.5Z", &ms), 0);
    cr_assert_eq(ms, 1893456000500LL);
    cr_assert_eq(time_parse_iso8601("2030-01-01T02:00:00+02:00", &ms), 0);
    cr_assert_eq(ms, 1893456000000LL);
    cr_assert_eq(time_parse_iso8601("2029-12-31T23:00:00-01:00", &ms), 0);
    cr_assert_eq(ms, 1893456000000LL);
    char out[40];
    time_fmt_iso8601(1893456000123LL, out, sizeof out);
    cr_assert_eq(time_parse_iso8601(out, &ms), 0);
    cr_assert_eq(ms, 1893456000123LL, "what cairn writes it reads");
    const char *bad[] = {"", "2030-01-01", "2030-01-01T00:00:00", "2030-01-01 00:00:00Z", "2030-13-01T00:00:00Z",
                         "2030-01-01T24:00:00Z", "2030-01-01T00:00:00.Z", "2030-01-01T00:00:00Zjunk",
                         "2030-01-01T00:00:00+0200", "20300101T000000Z", "2030-01-01T00:00:00+24:00", NULL};
    for (int i = 0; bad[i]; i++) cr_assert_eq(time_parse_iso8601(bad[i], &ms), CAIRN_EINVAL, "%s", bad[i]);
    cr_assert_eq(time_parse_iso8601(NULL, &ms), CAIRN_EINVAL);
}
