/*
 * test_post_form.c — the multipart/form-data parser of POST Object
 * (src/s3/form.c): the boundary from a Content-Type, then bodies fed
 * whole and split at every offset (a delimiter cut across reads must
 * parse the same), content that looks almost like a delimiter, the
 * refusals (malformed boundary lines, header blocks, a missing closing
 * boundary), the header limit, S3_FORM_STOP and sink errors.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "s3/s3.h"

/* What the sink saw, as text: [name|filename|type]content; ... */
typedef struct {
    char out[8192];
    size_t len;
    int stop_after_parts;   /* > 0: S3_FORM_STOP from that part's end */
    int parts;
    int fail_data;          /* nonzero: part_data returns this */
} record;

static void put(record *r, const char *s, size_t n) {
    cr_assert_lt(r->len + n, sizeof r->out);
    memcpy(r->out + r->len, s, n);
    r->len += n;
    r->out[r->len] = '\0';
}

static int rec_begin(void *ud, const char *name, const char *filename, const char *type) {
    record *r = ud;
    char b[512];
    int n = snprintf(b, sizeof b, "[%s|%s|%s]", name, filename ? filename : "-", type ? type : "-");
    put(r, b, (size_t)n);
    return 0;
}

static int rec_data(void *ud, const char *d, size_t n) {
    record *r = ud;
    if (r->fail_data) return r->fail_data;
    put(r, d, n);
    return 0;
}

static int rec_end(void *ud) {
    record *r = ud;
    put(r, ";", 1);
    r->parts++;
    return r->stop_after_parts && r->parts == r->stop_after_parts ? S3_FORM_STOP : 0;
}

static const s3_form_sink sink = {rec_begin, rec_data, rec_end};

/* Parses body in pieces of step bytes (0: whole); returns feed/finish's rc. */
static int parse(const char *boundary, const char *body, size_t len, size_t step, record *r, const char **why) {
    s3_form *f = s3_form_new(boundary, &sink, r);
    cr_assert_not_null(f);
    int rc = 0;
    size_t off = 0;
    while (off < len && rc == 0) {
        size_t n = step && step < len - off ? step : len - off;
        rc = s3_form_feed(f, body + off, n, why);
        off += n;
    }
    if (rc == 0) rc = s3_form_finish(f, why);
    s3_form_free(f);
    return rc;
}

#define FORM                                                                                \
    "preamble ignored\r\n"                                                                  \
    "--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/${filename}\r\n" \
    "--XyZ\r\ncontent-disposition: form-data; name=policy\r\n\r\n\r\n"                      \
    "--XyZ  \r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".txt\"\r\n" \
    "Content-Type: text/plain\r\n\r\nline1\r\n--Xyz\r\n-\r\n--X\r\r\n\r--XyZ\r\n"         \
    "--XyZ--\r\nepilogue --XyZ garbage"

static const char expected[] = "[key|-|-]uploads/${filename};[policy|-|-];"
                               "[file|a \"b\".txt|text/plain]line1\r\n--Xyz\r\n-\r\n--X\r\r\n\r--XyZ;";

Test(post_form, parses_whole_and_split_at_every_offset) {
    const char body[] = FORM;
    for (size_t step = 0; step <= sizeof body; step++) {
        record r = {0};
        const char *why = NULL;
        int rc = parse("XyZ", body, sizeof body - 1, step, &r, &why);
        cr_assert_eq(rc, 0, "step %zu: %s", step, why ? why : "");
        cr_assert_str_eq(r.out, expected, "step %zu", step);
    }
}

Test(post_form, body_opening_without_preamble_and_empty_parts) {
    const char body[] = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--";
    record r = {0};
    cr_assert_eq(parse("b", body, sizeof body - 1, 1, &r, NULL), 0);
    cr_assert_str_eq(r.out, "[a|-|-];");
}

Test(post_form, refusals) {
    static const struct { const char *body, *why; } cases[] = {
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx", "The form ends before its closing boundary."},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b", "The form ends before its closing boundary."},
        {"no boundary at all", "The form ends before its closing boundary."},
        {"--bx", "A boundary line is malformed."},
        {"--b-x", "A boundary line is malformed."},
        {"--b\rx", "A boundary line is malformed."},
        {"--b\r\n\r\nx\r\n--b--", "A part has no Content-Disposition."},
        {"--b\r\nX: y\r\n\r\nx\r\n--b--", "A part has no Content-Disposition."},
        {"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--", "A part's Content-Disposition is not form-data."},
        {"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "A part's Content-Disposition has no name."},
        {"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--", "A part's Content-Disposition is malformed."},
        {"--b\r\nno colon\r\n\r\nx\r\n--b--", "A part's header line has no colon."},
        {"--b\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n\r\n--b--",
         "A part has two Content-Disposition headers."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 0; step < 3; step++) {
            record r = {0};
            const char *why = NULL;
            int rc = parse("b", cases[i].body, strlen(cases[i].body), step, &r, &why);
            cr_assert_eq(rc, CAIRN_EINVAL, "case %zu", i);
            cr_assert_str_eq(why, cases[i].why, "case %zu step %zu", i, step);
        }
    }
}

Test(post_form, a_nul_in_headers_is_refused) {
    const char body[] = "--b\r\nContent-Disposition: form-data; name=a\0b\r\n\r\nx\r\n--b--";
    record r = {0};
    const char *why = NULL;
    cr_assert_eq(parse("b", body, sizeof body - 1, 0, &r, &why), CAIRN_EINVAL);
    cr_assert_str_eq(why, "A part's headers hold a NUL byte.");
}

Test(post_form, header_block_is_bounded) {
    static char body[S3_FORM_HEADER_MAX + 200];
    int n = snprintf(body, sizeof body, "--b\r\nContent-Disposition: form-data; name=a\r\nX: ");
    memset(body + n, 'a', S3_FORM_HEADER_MAX);
    record r = {0};
    const char *why = NULL;
    cr_assert_eq(parse("b", body, (size_t)n + S3_FORM_HEADER_MAX, 0, &r, &why), CAIRN_EINVAL);
    cr_assert_str_eq(why, "A part's headers are too large.");
    /* just under the limit is taken */
    const char *head = "--b\r\nContent-Disposition: form-data; name=a\r\nX: ";
    size_t hl = strlen(head), fill = S3_FORM_HEADER_MAX - hl - 4;
    memcpy(body, head, hl);
    memset(body + hl, 'a', fill);
    memcpy(body + hl + fill, "\r\n\r\nv\r\n--b--", 13);
    record ok = {0};
    cr_assert_eq(parse("b", body, hl + fill + 13, 7, &ok, &why), 0, "%s", why);
    cr_assert_str_eq(ok.out, "[a|-|-]v;");
}

Test(post_form, stop_ignores_the_rest) {
    const char body[] = "--b\r\nContent-Disposition: form-data; name=file\r\n\r\nF\r\n--b\r\ngarbage that is not a part";
    record r = {.stop_after_parts = 1};
    cr_assert_eq(parse("b", body, sizeof body - 1, 2, &r, NULL), 0);
    cr_assert_str_eq(r.out, "[file|-|-]F;");
}

Test(post_form, a_sink_error_stops_the_parse) {
    const char body[] = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nxyz\r\n--b--";
    record r = {.fail_data = CAIRN_ENOSPC};
    s3_form *f = s3_form_new("b", &sink, &r);
    const char *why = NULL;
    cr_assert_eq(s3_form_feed(f, body, sizeof body - 1, &why), CAIRN_ENOSPC);
    cr_assert_eq(s3_form_feed(f, "x", 1, &why), CAIRN_EINVAL);
    cr_assert_eq(s3_form_finish(f, &why), CAIRN_EINVAL);
    s3_form_free(f);
}

Test(post_form, offset_counts_bytes_fed) {
    record r = {0};
    s3_form *f = s3_form_new("b", &sink, &r);
    cr_assert_eq(s3_form_feed(f, "--b\r\n", 5, NULL), 0);
    cr_assert_eq(s3_form_offset(f), 5);
    s3_form_free(f);
}

Test(post_form, boundary_from_content_type) {
    static const struct { const char *ct, *boundary; } cases[] = {
        {"multipart/form-data; boundary=abc", "abc"},
        {"Multipart/Form-Data;boundary=\"a b:c\"", "a b:c"},
        {"multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundaryx7", "----WebKitFormBoundaryx7"},
        {"multipart/form-data; boundary=0123456789012345678901234567890123456789012345678901234567890123456789",
         "0123456789012345678901234567890123456789012345678901234567890123456789"},
        {"multipart/form-data; boundary=01234567890123456789012345678901234567890123456789012345678901234567890", NULL},
        {"multipart/form-data", NULL},
        {"multipart/form-data; boundary=", NULL},
        {"multipart/form-data; boundary=\"a\r\"", NULL},
        {"multipart/form-data; boundary=\"ends \"", NULL},
        {"multipart/form-data; boundary=a<b", NULL},
        {"multipart/mixed; boundary=abc", NULL},
        {"text/plain", NULL},
        {"multipart/form-datax; boundary=abc", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char b[S3_FORM_BOUNDARY_MAX + 1];
        int rc = s3_form_boundary(cases[i].ct, b);
        if (cases[i].boundary) {
            cr_assert_eq(rc, 0, "%s", cases[i].ct);
            cr_assert_str_eq(b, cases[i].boundary);
        } else {
            cr_assert_eq(rc, CAIRN_EINVAL, "%s", cases[i].ct);
        }
    }
    cr_assert_eq(s3_form_boundary(NULL, (char[S3_FORM_BOUNDARY_MAX + 1]){0}), CAIRN_EINVAL);
    record r = {0};
    cr_assert_null(s3_form_new("", &sink, &r));
    cr_assert_null(s3_form_new("a\rb", &sink, &r));
}
