/*
 * form.c — the multipart/form-data parser of POST Object (RFC 7578 over
 * RFC 2046's multipart syntax), for browser uploads.
 *
 * Incremental: bytes arrive a read at a time and are handed on as they
 * come; a part's bytes are never gathered, so a 5 GiB file goes through in
 * whatever reads the connection delivers.  A delimiter ("\r\n--" boundary)
 * split across reads is held as how many of its bytes matched so far: the
 * bytes themselves are the delimiter's, so nothing is buffered.  A boundary
 * is made of RFC 2046's bchars, none of which is '\r', so after a mismatch
 * only the current byte can start a new match (no KMP table needed), and a
 * run of bytes without '\r' is data in one memchr.
 *
 * Bounded: the only memory is the parser itself; a part's header block is
 * at most S3_FORM_HEADER_MAX bytes.  How many fields and how many bytes of
 * them the caller takes is the caller's limit (s3_form_offset tells where
 * the parser is).
 *
 * The body's preamble (before the first delimiter) and epilogue (after the
 * closing one) are ignored, as RFC 2046 says.  The first delimiter may open
 * the body without a CRLF before it: the parser starts as if the CRLF had
 * just matched.
 */
#include "s3/s3.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    F_PREAMBLE,          /* before the first delimiter */
    F_AFTER_DELIM,       /* a delimiter matched: "--", padding + CRLF next */
    F_AFTER_DASH,        /* one '-' of the closing "--" */
    F_AFTER_CR,          /* the CR of the delimiter line's CRLF */
    F_HEADERS,           /* a part's header block */
    F_BODY,              /* a part's content */
    F_DONE,              /* the closing delimiter was seen: the epilogue */
    F_STOPPED,           /* the sink asked to stop: everything after is ignored */
    F_FAILED,
};

struct s3_form {
    s3_form_sink sink;
    void *ud;
    char delim[4 + S3_FORM_BOUNDARY_MAX + 1];   /* "\r\n--" boundary */
    size_t dlen;
    size_t match;                /* bytes of delim matched, not yet handed on */
    int state;
    bool in_part;                /* a part began (part_begin ran) and has not ended */
    char hdr[S3_FORM_HEADER_MAX + 1];
    size_t hlen;
    uint64_t total;              /* bytes fed before this call */
    uint64_t pos;                /* offset of the byte being looked at */
    const char *why;
};

static bool bchar(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c && strchr("'()+_,-./:=? ", c));
}

int s3_form_boundary(const char *content_type, char out[S3_FORM_BOUNDARY_MAX + 1]) {
    if (!content_type) return CAIRN_EINVAL;
    const char *p = content_type;
    while (*p == ' ' || *p == '\t') p++;
    if (strncasecmp(p, "multipart/form-data", 19) != 0) return CAIRN_EINVAL;
    p += 19;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != ';' && *p != '\0') return CAIRN_EINVAL;
    /* parameters: ; name=value or ; name="value" */
    while (*p == ';') {
        p++;
        while (*p == ' ' || *p == '\t') p++;
        const char *name = p;
        size_t nl = strcspn(p, "=; \t");
        p += nl;
        if (*p != '=') {
            while (*p && *p != ';') p++;
            continue;
        }
        p++;
        char val[S3_FORM_BOUNDARY_MAX + 2];
        size_t vl = 0;
        bool toolong = false;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                if (vl <= S3_FORM_BOUNDARY_MAX) val[vl++] = *p;
                else toolong = true;
                p++;
            }
            if (*p != '"') return CAIRN_EINVAL;
            p++;
        } else {
            while (*p && *p != ';' && *p != ' ' && *p != '\t') {
                if (vl <= S3_FORM_BOUNDARY_MAX) val[vl++] = *p;
                else toolong = true;
                p++;
            }
        }
        while (*p == ' ' || *p == '\t') p++;
        if (nl == 8 && strncasecmp(name, "boundary", 8) == 0) {
            /* RFC 2046: 1..70 bchars, not ending in a space. */
            if (toolong || vl == 0 || vl > S3_FORM_BOUNDARY_MAX || val[vl - 1] == ' ') return CAIRN_EINVAL;
            for (size_t i = 0; i < vl; i++)
                if (!bchar(val[i])) return CAIRN_EINVAL;
            memcpy(out, val, vl);
            out[vl] = '\0';
            return 0;
        }
        while (*p && *p != ';') p++;
    }
    return CAIRN_EINVAL;
}

s3_form *s3_form_new(const char *boundary, const s3_form_sink *sink, void *ud) {
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > S3_FORM_BOUNDARY_MAX || strchr(boundary, '\r')) return NULL;
    s3_form *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->sink = *sink;
    f->ud = ud;
    memcpy(f->delim, "\r\n--", 4);
    memcpy(f->delim + 4, boundary, bl);
    f->dlen = 4 + bl;
    f->state = F_PREAMBLE;
    f->match = 2; /* the body may open with "--boundary": as if its CRLF had matched */
    return f;
}

void s3_form_free(s3_form *f) { free(f); }

uint64_t s3_form_offset(const s3_form *f) { return f->pos; }

static int fail(s3_form *f, const char *why) {
    f->state = F_FAILED;
    f->why = why;
    return CAIRN_EINVAL;
}

/* Hands content bytes of the current part on (the preamble's are dropped). */
static int emit(s3_form *f, const char *p, size_t n) {
    if (f->state != F_BODY || n == 0 || !f->sink.part_data) return 0;
    return f->sink.part_data(f->ud, p, n);
}

/* The value of parameter name in a Content-Disposition value (after
 * "form-data"), copied into out (NUL-terminated, cap bytes) or false when
 * absent.  A quoted value may escape with '\' (RFC 2616's quoted-string);
 * browsers percent-encode '"' instead, which stays as sent. */
static int disposition_param(const char *v, const char *name, char *out, size_t cap, bool *found) {
    size_t want = strlen(name);
    *found = false;
    const char *p = v;
    while (*p) {
        if (*p != ';') { p++; continue; }
        p++;
        while (*p == ' ' || *p == '\t') p++;
        const char *n = p;
        size_t nl = strcspn(p, "=; \t");
        p += nl;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != '=') continue;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        size_t ol = 0;
        bool match = nl == want && strncasecmp(n, name, want) == 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                if (match) {
                    if (ol + 1 >= cap) return CAIRN_EINVAL;
                    out[ol++] = *p;
                }
                p++;
            }
            if (*p != '"') return CAIRN_EINVAL;
            p++;
        } else {
            while (*p && *p != ';' && *p != ' ' && *p != '\t') {
                if (match) {
                    if (ol + 1 >= cap) return CAIRN_EINVAL;
                    out[ol++] = *p;
                }
                p++;
            }
        }
        if (match) {
            out[ol] = '\0';
            *found = true;
            return 0;
        }
    }
    return 0;
}

/* The part's header block is in hdr (ending in an empty line): its name,
 * filename and type go to part_begin. */
static int headers_done(s3_form *f) {
    char *name = NULL, *filename = NULL, *ctype = NULL;
    bool disposition = false;
    f->hdr[f->hlen] = '\0';
    if (memchr(f->hdr, '\0', f->hlen)) return fail(f, "A part's headers hold a NUL byte.");
    /* Values are copied behind the block (which ends in "\r\n\r\n" or is
     * "\r\n"): each is at most as long as its line, so the space the line
     * held is reused in place. */
    char *line = f->hdr;
    while (*line && !(line[0] == '\r' && line[1] == '\n')) {
        char *eol = strstr(line, "\r\n");
        if (!eol) return fail(f, "A part's header line is not terminated.");
        *eol = '\0';
        char *colon = strchr(line, ':');
        if (!colon) return fail(f, "A part's header line has no colon.");
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) v[--vl] = '\0';
        if (strcasecmp(line, "content-disposition") == 0) {
            if (disposition) return fail(f, "A part has two Content-Disposition headers.");
            disposition = true;
            if (strncasecmp(v, "form-data", 9) != 0 || (v[9] && v[9] != ';' && v[9] != ' ' && v[9] != '\t'))
                return fail(f, "A part's Content-Disposition is not form-data.");
            /* The values are no longer than v: they go into v's own line,
             * name first at the line's start, filename after it. */
            size_t cap = vl + 1;
            char *tmp = malloc(2 * cap);
            if (!tmp) return fail(f, "out of memory");
            bool has_name = false, has_file = false;
            int rc = disposition_param(v, "name", tmp, cap, &has_name);
            if (rc == 0) rc = disposition_param(v, "filename", tmp + cap, cap, &has_file);
            if (rc != 0) {
                free(tmp);
                return fail(f, "A part's Content-Disposition is malformed.");
            }
            if (!has_name) {
                free(tmp);
                return fail(f, "A part's Content-Disposition has no name.");
            }
            /* line .. eol holds "content-disposition\0" v: room for both */
            size_t nl = strlen(tmp), fl = has_file ? strlen(tmp + cap) : 0;
            assert(nl + 1 + fl + 1 <= (size_t)(eol - line) + 1);
            name = line;
            memcpy(name, tmp, nl + 1);
            if (has_file) {
                filename = name + nl + 1;
                memcpy(filename, tmp + cap, fl + 1);
            }
            free(tmp);
        } else if (strcasecmp(line, "content-type") == 0) {
            ctype = v;
        }
        line = eol + 2;
    }
    if (!disposition) return fail(f, "A part has no Content-Disposition.");
    f->in_part = true;
    int rc = f->sink.part_begin ? f->sink.part_begin(f->ud, name, filename, ctype) : 0;
    if (rc == S3_FORM_STOP) {
        f->state = F_STOPPED;
        return 0;
    }
    return rc;
}

/* A delimiter matched: the current part (if any) ends. */
static int delimiter(s3_form *f) {
    f->match = 0;
    int was = f->state;
    f->state = F_AFTER_DELIM;
    if (was == F_BODY && f->in_part) {
        f->in_part = false;
        int rc = f->sink.part_end ? f->sink.part_end(f->ud) : 0;
        if (rc == S3_FORM_STOP) {
            f->state = F_STOPPED;
            return 0;
        }
        return rc;
    }
    return 0;
}

int s3_form_feed(s3_form *f, const char *p, size_t n, const char **why) {
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        f->pos = f->total + i;
        switch (f->state) {
        case F_PREAMBLE:
        case F_BODY:
            if (f->match == 0) {
                const char *cr = memchr(p + i, '\r', n - i);
                size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
                if (run) {
                    rc = emit(f, p + i, run);
                    i += run;
                    break;
                }
                f->match = 1;
                i++;
                break;
            }
            if (p[i] == f->delim[f->match]) {
                f->match++;
                i++;
                if (f->match == f->dlen) rc = delimiter(f);
                break;
            }
            /* The bytes that matched were content after all; p[i] is
             * looked at again, as a possible start. */
            rc = emit(f, f->delim, f->match);
            f->match = 0;
            break;
        case F_AFTER_DELIM:
            if (p[i] == '-') f->state = F_AFTER_DASH;
            else if (p[i] == '\r') f->state = F_AFTER_CR;
            else if (p[i] != ' ' && p[i] != '\t') rc = fail(f, "A boundary line is malformed.");
            i++;
            break;
        case F_AFTER_DASH:
            if (p[i] != '-') rc = fail(f, "A boundary line is malformed.");
            else f->state = F_DONE;
            i++;
            break;
        case F_AFTER_CR:
            if (p[i] != '\n') rc = fail(f, "A boundary line is malformed.");
            else {
                f->state = F_HEADERS;
                f->hlen = 0;
            }
            i++;
            break;
        case F_HEADERS:
            if (f->hlen >= S3_FORM_HEADER_MAX) {
                rc = fail(f, "A part's headers are too large.");
                break;
            }
            f->hdr[f->hlen++] = p[i++];
            if ((f->hlen == 2 && f->hdr[0] == '\r' && f->hdr[1] == '\n') ||
                (f->hlen >= 4 && memcmp(f->hdr + f->hlen - 4, "\r\n\r\n", 4) == 0)) {
                f->state = F_BODY;
                rc = headers_done(f);
            }
            break;
        case F_DONE:
        case F_STOPPED:
            i = n;
            break;
        case F_FAILED:
            rc = CAIRN_EINVAL;
            break;
        }
    }
    f->total += n;
    f->pos = f->total;
    if (rc != 0 && f->state != F_FAILED) {
        f->state = F_FAILED;
        if (!f->why) f->why = "The form was refused.";
    }
    if (rc != 0 && why) *why = f->why;
    return rc;
}

int s3_form_finish(s3_form *f, const char **why) {
    if (f->state == F_DONE || f->state == F_STOPPED) return 0;
    if (f->state != F_FAILED) fail(f, "The form ends before its closing boundary.");
    if (why) *why = f->why;
    return CAIRN_EINVAL;
}
