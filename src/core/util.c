/*
 * util.c — small shared mechanisms: error names, growable buffers with XML and
 * JSON escaping, clocks and date formats, randomness, hex and URI encoding.
 *
 * Buffers latch an out-of-memory flag instead of failing every append, so the
 * builders of long responses (XML listings) check once at the end.
 */
#include "core/core.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

const char *cairn_strerror(int err) {
    switch (err) {
    case CAIRN_OK: return "ok";
    case CAIRN_EINVAL: return "invalid argument";
    case CAIRN_ENOMEM: return "out of memory";
    case CAIRN_EIO: return "I/O error";
    case CAIRN_ENOTFOUND: return "not found";
    case CAIRN_EEXIST: return "already exists";
    case CAIRN_EDB: return "database error";
    case CAIRN_ETOOBIG: return "too big";
    case CAIRN_ENOSPC: return "no space left";
    case CAIRN_ENOTEMPTY: return "not empty";
    case CAIRN_EAUTH: return "authentication failed";
    case CAIRN_ECONFLICT: return "conflict";
    case CAIRN_EBUSY: return "busy";
    case CAIRN_ETIMEDOUT: return "timed out";
    case CAIRN_EPRECOND: return "precondition failed";
    case CAIRN_ELOCKED: return "locked by object lock";
    case CAIRN_EPERM: return "not permitted";
    default: return "unknown error";
    }
}

int core_init(void) {
#ifdef CAIRN_FAULTS
    fault_init_from_env();
#endif
    return sodium_init() < 0 ? CAIRN_EIO : 0;
}

/* ---- buffers ------------------------------------------------------------ */

void buf_init(buf_t *b) { memset(b, 0, sizeof *b); }

void buf_free(buf_t *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void buf_reset(buf_t *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

int buf_reserve(buf_t *b, size_t extra) {
    if (b->oom) return CAIRN_ENOMEM;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) { b->oom = true; return CAIRN_ENOMEM; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) { b->oom = true; return CAIRN_ENOMEM; }
    b->data = p;
    b->cap = cap;
    return 0;
}

void buf_append(buf_t *b, const void *p, size_t n) {
    if (buf_reserve(b, n) != 0) return;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(buf_t *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_putc(buf_t *b, char c) { buf_append(b, &c, 1); }

void buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) { buf_append(b, tmp, (size_t)n); return; }
    if (buf_reserve(b, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_xml_escape(buf_t *b, const char *s, size_t n) {
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        char num[8];
        switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        default:
            /* XML 1.0 cannot carry most C0 controls even escaped; S3 clients expect
             * numeric references, which is what AWS emits. */
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                snprintf(num, sizeof num, "&#x%X;", c);
                rep = num;
            } else if (c == '\r' || c == '\n' || c == '\t') {
                snprintf(num, sizeof num, "&#x%X;", c);
                rep = num;
            }
        }
        if (rep) {
            buf_append(b, s + i - run, run);
            run = 0;
            buf_puts(b, rep);
        } else {
            run++;
        }
    }
    buf_append(b, s + n - run, run);
}

void buf_prom_label(buf_t *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') buf_puts(b, "\\\\");
        else if (*s == '"') buf_puts(b, "\\\"");
        else if (*s == '\n') buf_puts(b, "\\n");
        else buf_putc(b, *s);
    }
}

void buf_json_escape(buf_t *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) buf_printf(b, "\\u%04x", c);
            else buf_putc(b, (char)c);
        }
    }
}

char *buf_steal(buf_t *b) {
    char *p = b->data;
    if (!p) p = calloc(1, 1);
    memset(b, 0, sizeof *b);
    return p;
}

/* ---- time ---------------------------------------------------------------- */

int64_t time_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct timespec time_deadline(clockid_t clk, int64_t ms) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    if (ms < 0) ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int64_t time_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void time_fmt_iso8601(int64_t ms, char *out, size_t n) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static const char *const wkday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void time_fmt_http(int64_t ms, char *out, size_t n) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", wkday[tm.tm_wday], tm.tm_mday,
             month[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int month_index(const char *m) {
    for (int i = 0; i < 12; i++)
        if (strncasecmp(m, month[i], 3) == 0) return i;
    return -1;
}

static int tm_valid(const struct tm *tm) {
    return tm->tm_mon >= 0 && tm->tm_mon < 12 && tm->tm_mday >= 1 && tm->tm_mday <= 31 &&
           tm->tm_hour >= 0 && tm->tm_hour < 24 && tm->tm_min >= 0 && tm->tm_min < 60 &&
           tm->tm_sec >= 0 && tm->tm_sec <= 60 && tm->tm_year >= 0 && tm->tm_year < 8100;
}

int time_parse_http(const char *s, int64_t *ms_out) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    char wd[16], mon[4];
    int day, year, hh, mm, ss, used = 0;
    if (!s || strlen(s) > 64) return CAIRN_EINVAL;
    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (sscanf(s, "%15[A-Za-z], %d %3s %d %d:%d:%d GMT%n", wd, &day, mon, &year, &hh, &mm, &ss,
               &used) == 7 && s[used] == '\0') {
    } else if (sscanf(s, "%15[A-Za-z], %d-%3s-%d %d:%d:%d GMT%n", wd, &day, mon, &year, &hh, &mm,
                      &ss, &used) == 7 && s[used] == '\0') {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        if (year < 100) year += year < 70 ? 2000 : 1900;
    } else if (sscanf(s, "%15[A-Za-z] %3s %d %d:%d:%d %d%n", wd, mon, &day, &hh, &mm, &ss, &year,
                      &used) == 7 && s[used] == '\0') {
        /* asctime: Sun Nov  6 08:49:37 1994 */
    } else {
        return CAIRN_EINVAL;
    }
    tm.tm_mon = month_index(mon);
    tm.tm_mday = day;
    tm.tm_year = year - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    if (!tm_valid(&tm)) return CAIRN_EINVAL;
    *ms_out = (int64_t)timegm(&tm) * 1000;
    return 0;
}

int time_parse_amz(const char *s, int64_t *sec_out) {
    if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z') return CAIRN_EINVAL;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)s[i])) return CAIRN_EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    char tmp[5];
    memcpy(tmp, s, 4); tmp[4] = 0; tm.tm_year = atoi(tmp) - 1900;
    memcpy(tmp, s + 4, 2); tmp[2] = 0; tm.tm_mon = atoi(tmp) - 1;
    memcpy(tmp, s + 6, 2); tm.tm_mday = atoi(tmp);
    memcpy(tmp, s + 9, 2); tm.tm_hour = atoi(tmp);
    memcpy(tmp, s + 11, 2); tm.tm_min = atoi(tmp);
    memcpy(tmp, s + 13, 2); tm.tm_sec = atoi(tmp);
    if (!tm_valid(&tm)) return CAIRN_EINVAL;
    *sec_out = (int64_t)timegm(&tm);
    return 0;
}

static bool digits(const char *s, int n) {
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

static int num(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    return v;
}

int time_parse_iso8601(const char *s, int64_t *ms_out) {
    if (!s || strlen(s) < 20) return CAIRN_EINVAL;
    if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
        s[16] != ':' || !digits(s + 17, 2))
        return CAIRN_EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = num(s, 4) - 1900;
    tm.tm_mon = num(s + 5, 2) - 1;
    tm.tm_mday = num(s + 8, 2);
    tm.tm_hour = num(s + 11, 2);
    tm.tm_min = num(s + 14, 2);
    tm.tm_sec = num(s + 17, 2);
    if (!tm_valid(&tm)) return CAIRN_EINVAL;
    const char *p = s + 19;
    int64_t frac_ms = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        for (; isdigit((unsigned char)*p); p++, n++)
            if (n < 3) frac_ms = frac_ms * 10 + (*p - '0');
        if (n == 0) return CAIRN_EINVAL;
        for (; n < 3; n++) frac_ms *= 10;
    }
    int64_t off_s = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        off_s = 0;
    } else if ((*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2) && p[6] == '\0') {
        int h = num(p + 1, 2), m = num(p + 4, 2);
        if (h > 23 || m > 59) return CAIRN_EINVAL;
        off_s = (int64_t)(h * 3600 + m * 60) * (*p == '+' ? 1 : -1);
    } else {
        return CAIRN_EINVAL;
    }
    *ms_out = ((int64_t)timegm(&tm) - off_s) * 1000 + frac_ms;
    return 0;
}

/* ---- randomness and encodings ------------------------------------------------- */

void rand_bytes(void *p, size_t n) { randombytes_buf(p, n); }

int64_t backoff_full_jitter(int attempt, int64_t base_ms, int64_t cap_ms, unsigned *seed) {
    if (base_ms < 1) base_ms = 1;
    if (cap_ms < base_ms) cap_ms = base_ms;
    int64_t ceil = base_ms;
    for (int i = 0; i < attempt && ceil < cap_ms; i++) ceil *= 2;
    if (ceil > cap_ms) ceil = cap_ms;
    uint64_t r = ((uint64_t)rand_r(seed) << 31) ^ (uint64_t)rand_r(seed);
    return (int64_t)(r % (uint64_t)(ceil + 1));
}

void time_hex_id_from(int64_t now_ms, const unsigned char rnd[10], char out[TIME_HEX_ID_LEN + 1]) {
    unsigned char b[16];
    uint64_t t = now_ms < 0 ? 0 : (uint64_t)now_ms;
    for (int i = 0; i < 6; i++) b[i] = (unsigned char)(t >> (40 - 8 * i));
    memcpy(b + 6, rnd, 10);
    hex_encode(b, 16, out);
}

void time_hex_id(char out[TIME_HEX_ID_LEN + 1]) {
    unsigned char r[10];
    rand_bytes(r, sizeof r);
    time_hex_id_from(time_now_ms(), r, out);
}

void hex_encode(const void *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *hex, size_t hexlen, void *out, size_t outcap, size_t *outlen) {
    if (hexlen % 2 || hexlen / 2 > outcap) return CAIRN_EINVAL;
    unsigned char *o = out;
    for (size_t i = 0; i < hexlen; i += 2) {
        int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0) return CAIRN_EINVAL;
        o[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    if (outlen) *outlen = hexlen / 2;
    return 0;
}

void rand_hex_id(char *out, size_t nbytes) {
    unsigned char tmp[64];
    if (nbytes > sizeof tmp) nbytes = sizeof tmp;
    rand_bytes(tmp, nbytes);
    hex_encode(tmp, nbytes, out);
}

long url_decode(const char *src, size_t n, char *dst) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '%') {
            if (i + 2 >= n) return CAIRN_EINVAL;
            int hi = hexval((unsigned char)src[i + 1]), lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0) return CAIRN_EINVAL;
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    dst[o] = '\0';
    return (long)o;
}

void buf_url_encode(buf_t *b, const char *s, size_t n, bool keep_slash) {
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', digits[c >> 4], digits[c & 15]};
            buf_append(b, e, 3);
        }
    }
}

/* ---- files ------------------------------------------------------------------------ */

int file_lock_exclusive(const char *path, int *fd_out, long *holder_pid) {
    if (holder_pid) *holder_pid = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return CAIRN_EIO;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK && holder_pid) {
            char buf[32] = {0};
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            if (n > 0) *holder_pid = strtol(buf, NULL, 10);
        }
        close(fd);
        return e == EWOULDBLOCK ? CAIRN_EBUSY : CAIRN_EIO;
    }
    /* The pid is for the message another process prints; the lock is what counts. */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* A full disk must not stop the process from running; it holds the lock. */
    }
    *fd_out = fd;
    return 0;
}

int file_write_atomic(const char *path, const void *data, size_t len, int mode, bool replace) {
    char tmp[4200];
    char suffix[17];
    rand_hex_id(suffix, 8);
    if (snprintf(tmp, sizeof tmp, "%s.%s.tmp", path, suffix) >= (int)sizeof tmp) return CAIRN_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return CAIRN_EIO;
    bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    int rc = ok ? 0 : CAIRN_EIO;
    if (rc == 0) {
        if (replace) rc = rename(tmp, path) == 0 ? 0 : CAIRN_EIO;
        else if (link(tmp, path) != 0) rc = errno == EEXIST ? CAIRN_EEXIST : CAIRN_EIO;
    }
    if (rc != 0 || !replace) unlink(tmp);
    if (rc == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0) rc = CAIRN_EIO;
            close(dfd);
        }
    }
    return rc;
}

/* ---- CRC-64/NVME ---- */

static uint64_t crc64nvme_table[8][256];
static pthread_once_t crc64nvme_once = PTHREAD_ONCE_INIT;

static void crc64nvme_init(void) {
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x9a6c9329ac4bc9b5ULL : c >> 1;
        crc64nvme_table[0][i] = c;
    }
    /* Slicing by 8: table[k][i] is the CRC of byte i followed by k zero bytes. */
    for (unsigned i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            crc64nvme_table[k][i] = (crc64nvme_table[k - 1][i] >> 8) ^ crc64nvme_table[0][crc64nvme_table[k - 1][i] & 0xff];
}

uint64_t crc64nvme(uint64_t crc, const void *p, size_t n) {
    pthread_once(&crc64nvme_once, crc64nvme_init);
    const unsigned char *b = p;
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t w = c ^ ((uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24 |
                          (uint64_t)b[4] << 32 | (uint64_t)b[5] << 40 | (uint64_t)b[6] << 48 | (uint64_t)b[7] << 56);
        c = crc64nvme_table[7][w & 0xff] ^ crc64nvme_table[6][(w >> 8) & 0xff] ^ crc64nvme_table[5][(w >> 16) & 0xff] ^
            crc64nvme_table[4][(w >> 24) & 0xff] ^ crc64nvme_table[3][(w >> 32) & 0xff] ^
            crc64nvme_table[2][(w >> 40) & 0xff] ^ crc64nvme_table[1][(w >> 48) & 0xff] ^ crc64nvme_table[0][w >> 56];
        b += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc64nvme_table[0][(c ^ *b++) & 0xff];
    return ~c;
}

/* ---- combining CRCs ---- */

/*
 * Appending len bytes to a message multiplies its CRC register by
 * x^(8 len) modulo the polynomial (the all-ones initial value and final XOR
 * cancel out between the two CRCs), so crc(AB) = crc(A) x^(8|B|) + crc(B)
 * over GF(2).  Polynomials are in the reflected bit order the CRCs use: the
 * top bit of a width-bit word is x^0.  (Mark Adler's crc32_combine, zlib,
 * for any width up to 64 and without its table.)
 */
static uint64_t gf2_mulmod(uint64_t a, uint64_t b, uint64_t poly, unsigned width) {
    uint64_t m = 1ULL << (width - 1), p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ poly : b >> 1;
    }
    return p;
}

uint64_t crc_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b, uint64_t poly, unsigned width) {
    assert(width == 32 || width == 64);
    uint64_t x = 1ULL << (width - 1);      /* x^0 */
    uint64_t sq = x >> 8;                  /* x^8: one byte */
    while (len_b) {
        if (len_b & 1) x = gf2_mulmod(sq, x, poly, width);
        len_b >>= 1;
        if (len_b) sq = gf2_mulmod(sq, sq, poly, width);
    }
    return gf2_mulmod(x, crc_a, poly, width) ^ crc_b;
}

/* ---- addresses ------------------------------------------------------------------------------ */

/* addr's 16 bytes (IPv4 as ::ffff:a.b.c.d) and whether it was written as IPv4. */
static bool addr_bytes(const char *s, size_t n, uint8_t out[16], bool *v4) {
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    /* IPv6 text, an IPv4-mapped one included: its prefix counts in bits of
     * 128, and it compares with IPv4 addresses as their mapped form. */
    if (inet_pton(AF_INET6, tmp, out) != 1) return false;
    *v4 = false;
    return true;
}

int net_addr_in_list(const char *list, const char *addr, const char **bad) {
    uint8_t a[16];
    bool av4 = false;
    bool have = addr && addr_bytes(addr, strlen(addr), a, &av4);
    int found = 0;
    for (const char *p = list; *p;) {
        p += strspn(p, " ");
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && p[t - 1] == ' ') t--;
        if (t) {
            const char *slash = memchr(p, '/', t);
            size_t al = slash ? (size_t)(slash - p) : t;
            uint8_t net[16];
            bool nv4;
            long bits = -1;
            bool ok = addr_bytes(p, al, net, &nv4);
            if (ok && slash) {
                char *end = NULL;
                char num[8] = "";
                size_t nl = t - al - 1;
                ok = nl > 0 && nl < sizeof num;
                if (ok) {
                    memcpy(num, slash + 1, nl);
                    num[nl] = '\0';
                    bits = strtol(num, &end, 10);
                    ok = *end == '\0' && isdigit((unsigned char)num[0]) && bits >= 0 && bits <= (nv4 ? 32 : 128);
                }
            }
            if (!ok) {
                if (bad) *bad = p;
                return -1;
            }
            long prefix = bits < 0 ? 128 : nv4 ? bits + 96 : bits;
            bool match = have;
            for (long i = 0; match && i < prefix; i++) {
                uint8_t m = (uint8_t)(0x80 >> (i % 8));
                match = (a[i / 8] & m) == (net[i / 8] & m);
            }
            if (match) found = 1;
        }
        p += n;
        if (*p == ',') p++;
    }
    return found;
}

/* ---- the TLS client identity (a process-wide registry, set once at start) -------------------- */

static char tls_id_cert[1024], tls_id_key[1024];

void tls_client_identity_set(const char *cert_path, const char *key_path) {
    snprintf(tls_id_cert, sizeof tls_id_cert, "%s", cert_path ? cert_path : "");
    snprintf(tls_id_key, sizeof tls_id_key, "%s", key_path ? key_path : "");
}

void tls_client_identity_get(const char **cert_path, const char **key_path) {
    *cert_path = tls_id_cert;
    *key_path = tls_id_key;
}
