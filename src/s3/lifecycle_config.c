/*
 * lifecycle_config.c — a bucket's lifecycle configuration as S3 validates
 * it (PutBucketLifecycleConfiguration), the stored form GetBucketLifecycle-
 * Configuration answers, and the questions the executor and GET ask of it:
 * does a rule's filter take this object, and when does an action fall due.
 *
 * Rules have an ID (at most 255 characters, unique; one is made up when
 * none is given, as S3 does), a Status (Enabled or Disabled), a filter
 * (the legacy rule-level Prefix, or a Filter holding one of Prefix, Tag,
 * ObjectSizeGreaterThan, ObjectSizeLessThan, or an And of a Prefix, Tags
 * and the sizes) and at least one action: Expiration (Days, Date or
 * ExpiredObjectDeleteMarker), NoncurrentVersionExpiration (NoncurrentDays,
 * NewerNoncurrentVersions) and AbortIncompleteMultipartUpload
 * (DaysAfterInitiation).  Transitions move objects to other storage
 * classes, which cairn does not have: they are refused with NotImplemented
 * (docs/lifecycle.md).
 *
 * Times: an action due N days after a time t falls due at t + N days
 * rounded up to the next midnight UTC, as S3 computes it; a "day" is
 * day_ms long (86400 s, or less when a test sets lifecycle_day_seconds).
 */
#include "s3/internal.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define PARSE_MAX (2 * 1024 * 1024)
#define ID_MAX 255
#define DAY_MS (86400LL * 1000)

static const char *const malformed_msg =
    "The XML you provided was not well-formed or did not validate against our published schema";

void s3_lifecycle_config_free(s3_lifecycle_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free(c->rules[i].id);
        free(c->rules[i].prefix);
        s3_tagset_free(&c->rules[i].tags);
    }
    free(c->rules);
    c->rules = NULL;
    c->n = 0;
}

/* ---- parsing --------------------------------------------------------------------------------- */

typedef struct {
    const char **code;
    const char **why;
} verdict;

static int fail(verdict *v, const char *code, const char *why) {
    *v->code = code;
    *v->why = why;
    return CAIRN_EINVAL;
}

static int malformed(verdict *v) { return fail(v, "MalformedXML", malformed_msg); }

/* An element's text, malloc'd; NULL with *rc set: CAIRN_EINVAL when it
 * holds elements, CAIRN_ENOMEM. */
static char *text_of(xmlNodePtr e, int *rc) {
    for (xmlNodePtr c = e->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE) {
            *rc = CAIRN_EINVAL;
            return NULL;
        }
    xmlChar *t = xmlNodeGetContent(e);
    char *s = t ? strdup((const char *)t) : NULL;
    xmlFree(t);
    *rc = s ? 0 : CAIRN_ENOMEM;
    return s;
}

/* A whole number of 0 .. max written in decimal digits only; false else. */
static bool number_of(xmlNodePtr e, int64_t max, int64_t *out) {
    int rc;
    char *t = text_of(e, &rc);
    if (!t) return false;
    bool ok = t[0] != '\0' && strlen(t) <= 19;
    for (const char *p = t; ok && *p; p++) ok = isdigit((unsigned char)*p);
    if (ok) {
        *out = strtoll(t, NULL, 10);
        ok = *out >= 0 && *out <= max;
    }
    free(t);
    return ok;
}

/* The same, where a minus sign is a value S3 judges (InvalidArgument for a
 * day count that is not positive) rather than bad XML: *negative is set. */
static bool signed_number_of(xmlNodePtr e, int64_t max, int64_t *out, bool *negative) {
    int rc;
    char *t = text_of(e, &rc);
    if (!t) return false;
    *negative = t[0] == '-';
    const char *d = *negative ? t + 1 : t;
    bool ok = d[0] != '\0' && strlen(d) <= 12;
    for (const char *p = d; ok && *p; p++) ok = isdigit((unsigned char)*p);
    if (ok) {
        *out = strtoll(d, NULL, 10);
        ok = *out <= max;
        if (*negative) *out = -*out;
    }
    free(t);
    return ok;
}

/* Calls for every element child; a repeated single element is bad XML. */
#define ONCE(flag)                            \
    do {                                      \
        if (flag) return malformed(v);        \
        flag = true;                          \
    } while (0)

static int parse_tag(xmlNodePtr e, s3_tagset *tags, verdict *v) {
    char *key = NULL, *value = NULL;
    int rc = 0;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        char **slot = s3_xml_is(c, "Key") ? &key : s3_xml_is(c, "Value") ? &value : NULL;
        if (!slot || *slot) {
            rc = malformed(v);
            break;
        }
        *slot = text_of(c, &rc);
        if (rc == CAIRN_EINVAL) rc = malformed(v);
    }
    if (rc == 0 && (!key || !value)) rc = malformed(v);
    if (rc == 0 && (key[0] == '\0' || strlen(key) > 128 * 4 || strlen(value) > 256 * 4))
        rc = fail(v, "InvalidTag", "The TagKey you have provided is invalid");
    for (int i = 0; rc == 0 && i < tags->n; i++)
        if (!strcmp(tags->tags[i].key, key)) rc = fail(v, "InvalidRequest", "Duplicate Tag Keys are not allowed.");
    if (rc == 0) {
        s3_tag *grown = realloc(tags->tags, (size_t)(tags->n + 1) * sizeof *grown);
        if (!grown) rc = CAIRN_ENOMEM;
        else {
            grown[tags->n++] = (s3_tag){key, value};
            tags->tags = grown;
            return 0;
        }
    }
    free(key);
    free(value);
    return rc;
}

static int parse_size(xmlNodePtr c, int64_t *slot, verdict *v) {
    if (*slot >= 0) return malformed(v);
    if (!number_of(c, INT64_MAX, slot)) return malformed(v);
    return 0;
}

static int set_prefix(s3_lifecycle_rule *r, xmlNodePtr c, verdict *v) {
    if (r->prefix) return malformed(v);
    int rc;
    r->prefix = text_of(c, &rc);
    r->prefix_given = true;
    return rc == CAIRN_EINVAL ? malformed(v) : rc;
}

static int parse_and(xmlNodePtr e, s3_lifecycle_rule *r, verdict *v) {
    int rc = 0;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "Prefix")) rc = set_prefix(r, c, v);
        else if (s3_xml_is(c, "Tag")) rc = parse_tag(c, &r->tags, v);
        else if (s3_xml_is(c, "ObjectSizeGreaterThan")) rc = parse_size(c, &r->size_gt, v);
        else if (s3_xml_is(c, "ObjectSizeLessThan")) rc = parse_size(c, &r->size_lt, v);
        else rc = malformed(v);
    }
    return rc;
}

static int parse_filter(xmlNodePtr e, s3_lifecycle_rule *r, verdict *v) {
    int rc = 0, seen = 0;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (++seen > 1) return malformed(v);  /* one predicate, or an And of several */
        if (s3_xml_is(c, "Prefix")) rc = set_prefix(r, c, v);
        else if (s3_xml_is(c, "Tag")) rc = parse_tag(c, &r->tags, v);
        else if (s3_xml_is(c, "ObjectSizeGreaterThan")) rc = parse_size(c, &r->size_gt, v);
        else if (s3_xml_is(c, "ObjectSizeLessThan")) rc = parse_size(c, &r->size_lt, v);
        else if (s3_xml_is(c, "And")) {
            r->and_form = true;
            rc = parse_and(c, r, v);
        } else rc = malformed(v);
    }
    return rc;
}

/* Days: a positive count S3 keeps to 32 bits. */
static int parse_days(xmlNodePtr c, int *out, const char *not_positive, verdict *v) {
    int64_t n;
    bool neg;
    if (*out != 0) return malformed(v);
    if (!signed_number_of(c, INT32_MAX, &n, &neg)) return malformed(v);
    if (n <= 0) return fail(v, "InvalidArgument", not_positive);
    *out = (int)n;
    return 0;
}

static int parse_expiration(xmlNodePtr e, s3_lifecycle_rule *r, verdict *v) {
    int rc = 0;
    bool date = false, marker = false;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "Days")) {
            rc = parse_days(c, &r->exp_days, "'Days' for Expiration action must be a positive integer", v);
        } else if (s3_xml_is(c, "Date")) {
            ONCE(date);
            char *t = text_of(c, &rc);
            if (!t) return rc == CAIRN_EINVAL ? malformed(v) : rc;
            int64_t ms;
            bool ok = time_parse_iso8601(t, &ms) == 0;
            free(t);
            if (!ok) return fail(v, "InvalidArgument", "Invalid date: the Date must be in ISO 8601 format");
            if (ms % DAY_MS != 0) return fail(v, "InvalidArgument", "'Date' must be at midnight GMT");
            r->exp_date_ms = ms;
            r->has_exp_date = true;
        } else if (s3_xml_is(c, "ExpiredObjectDeleteMarker")) {
            ONCE(marker);
            char *t = text_of(c, &rc);
            if (!t) return rc == CAIRN_EINVAL ? malformed(v) : rc;
            bool yes = !strcmp(t, "true"), no = !strcmp(t, "false");
            free(t);
            if (!yes && !no) return malformed(v);
            r->exp_delete_marker = yes;
            r->has_exp_delete_marker = true;
        } else {
            rc = malformed(v);
        }
    }
    if (rc != 0) return rc;
    /* Exactly one of the three (S3 answers MalformedXML to any pair). */
    int given = (r->exp_days > 0) + date + marker;
    if (given != 1) return malformed(v);
    r->has_expiration = true;
    return 0;
}

static int parse_noncurrent(xmlNodePtr e, s3_lifecycle_rule *r, verdict *v) {
    int rc = 0;
    bool newer = false;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "NoncurrentDays")) {
            rc = parse_days(c, &r->nc_days,
                            "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer", v);
        } else if (s3_xml_is(c, "NewerNoncurrentVersions")) {
            ONCE(newer);
            int64_t n;
            bool neg;
            if (!signed_number_of(c, INT32_MAX, &n, &neg)) return malformed(v);
            if (n < 1 || n > S3_LIFECYCLE_MAX_NEWER)
                return fail(v, "InvalidArgument", "NewerNoncurrentVersions must be between 1 and 100");
            r->nc_newer = (int)n;
        } else {
            rc = malformed(v);
        }
    }
    if (rc == 0 && r->nc_days == 0) rc = malformed(v);
    if (rc == 0) r->has_noncurrent = true;
    return rc;
}

static int parse_abort(xmlNodePtr e, s3_lifecycle_rule *r, verdict *v) {
    int rc = 0;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "DaysAfterInitiation"))
            rc = parse_days(c, &r->abort_days,
                            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer",
                            v);
        else rc = malformed(v);
    }
    if (rc == 0 && r->abort_days == 0) rc = malformed(v);
    return rc;
}

static int parse_rule(xmlNodePtr e, s3_lifecycle_rule *r, verdict *v) {
    bool id = false, status = false, prefix = false, filter = false, exp = false, nc = false, ab = false;
    int rc = 0;
    for (xmlNodePtr c = e->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (s3_xml_is(c, "ID")) {
            ONCE(id);
            r->id = text_of(c, &rc);
            if (rc == CAIRN_EINVAL) rc = malformed(v);
            else if (rc == 0 && strlen(r->id) > ID_MAX)
                rc = fail(v, "InvalidArgument", "ID length should not exceed allowed limit of 255");
        } else if (s3_xml_is(c, "Status")) {
            ONCE(status);
            char *t = text_of(c, &rc);
            if (!t) return rc == CAIRN_EINVAL ? malformed(v) : rc;
            bool on = !strcmp(t, "Enabled"), off = !strcmp(t, "Disabled");
            free(t);
            if (!on && !off) return malformed(v);
            r->enabled = on;
        } else if (s3_xml_is(c, "Prefix")) {
            ONCE(prefix);
            r->legacy_prefix = true;
            rc = set_prefix(r, c, v);
        } else if (s3_xml_is(c, "Filter")) {
            ONCE(filter);
            rc = parse_filter(c, r, v);
        } else if (s3_xml_is(c, "Expiration")) {
            ONCE(exp);
            rc = parse_expiration(c, r, v);
        } else if (s3_xml_is(c, "NoncurrentVersionExpiration")) {
            ONCE(nc);
            rc = parse_noncurrent(c, r, v);
        } else if (s3_xml_is(c, "AbortIncompleteMultipartUpload")) {
            ONCE(ab);
            rc = parse_abort(c, r, v);
        } else if (s3_xml_is(c, "Transition") || s3_xml_is(c, "NoncurrentVersionTransition")) {
            rc = fail(v, "NotImplemented", "Transitions to other storage classes are not supported: cairn has one "
                                           "storage class (STANDARD)");
        } else {
            rc = malformed(v);
        }
    }
    if (rc != 0) return rc;
    /* A Status, and the filter one way or the other. */
    if (!status || prefix == filter) return malformed(v);
    if (!r->prefix && !(r->prefix = strdup(""))) return CAIRN_ENOMEM;
    if (!exp && !nc && !ab)
        return fail(v, "InvalidRequest", "At least one action needs to be specified in a rule");
    if (r->size_gt >= 0 && r->size_lt >= 0 && r->size_gt >= r->size_lt)
        return fail(v, "InvalidArgument", "ObjectSizeGreaterThan must be less than ObjectSizeLessThan");
    if (r->size_lt == 0) return fail(v, "InvalidArgument", "ObjectSizeLessThan must be greater than 0");
    if (r->tags.n > 0 && r->exp_delete_marker)
        return fail(v, "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tag filter.");
    if (r->tags.n > 0 && r->abort_days > 0)
        return fail(v, "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags.");
    if (!r->id) {
        /* S3 names an unnamed rule. */
        if (!(r->id = malloc(33))) return CAIRN_ENOMEM;
        rand_hex_id(r->id, 16);
    }
    return 0;
}

int s3_lifecycle_parse(const char *body, size_t len, s3_lifecycle_config *out, const char **code, const char **why) {
    memset(out, 0, sizeof *out);
    verdict v = {code, why};
    malformed(&v);
    int rc;
    xmlDocPtr doc = s3_xml_read(body, len, PARSE_MAX, "LifecycleConfiguration", &rc);
    if (!doc) return rc == CAIRN_ENOMEM ? rc : malformed(&v);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!s3_xml_is(c, "Rule")) {
            rc = malformed(&v);
            break;
        }
        if (out->n == S3_LIFECYCLE_MAX_RULES) {
            rc = fail(&v, "InvalidRequest", "The number of lifecycle rules should not exceed allowed limit of 1000 rules");
            break;
        }
        s3_lifecycle_rule *grown = realloc(out->rules, (size_t)(out->n + 1) * sizeof *grown);
        if (!grown) {
            rc = CAIRN_ENOMEM;
            break;
        }
        out->rules = grown;
        s3_lifecycle_rule *r = &out->rules[out->n++]; /* counted now: freed with the rest on failure */
        memset(r, 0, sizeof *r);
        r->size_gt = r->size_lt = -1;
        rc = parse_rule(c, r, &v);
    }
    if (rc == 0 && out->n == 0) rc = malformed(&v);
    for (int i = 0; rc == 0 && i < out->n; i++)
        for (int k = 0; k < i && rc == 0; k++)
            if (!strcmp(out->rules[i].id, out->rules[k].id))
                rc = fail(&v, "InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule");
    xmlFreeDoc(doc);
    if (rc != 0) s3_lifecycle_config_free(out);
    return rc;
}

/* ---- rendering ------------------------------------------------------------------------------------ */

static void elem(buf_t *b, const char *name, const char *value) {
    buf_printf(b, "<%s>", name);
    buf_xml_escape(b, value, strlen(value));
    buf_printf(b, "</%s>", name);
}

static void render_filter(buf_t *b, const s3_lifecycle_rule *r) {
    if (r->legacy_prefix) {
        elem(b, "Prefix", r->prefix);
        return;
    }
    buf_puts(b, "<Filter>");
    if (r->and_form) buf_puts(b, "<And>");
    if (r->prefix_given) elem(b, "Prefix", r->prefix);
    for (int i = 0; i < r->tags.n; i++) {
        buf_puts(b, "<Tag>");
        elem(b, "Key", r->tags.tags[i].key);
        elem(b, "Value", r->tags.tags[i].value);
        buf_puts(b, "</Tag>");
    }
    if (r->size_gt >= 0) buf_printf(b, "<ObjectSizeGreaterThan>%lld</ObjectSizeGreaterThan>", (long long)r->size_gt);
    if (r->size_lt >= 0) buf_printf(b, "<ObjectSizeLessThan>%lld</ObjectSizeLessThan>", (long long)r->size_lt);
    if (r->and_form) buf_puts(b, "</And>");
    buf_puts(b, "</Filter>");
}

void s3_lifecycle_render(const s3_lifecycle_config *c, buf_t *out) {
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < c->n; i++) {
        const s3_lifecycle_rule *r = &c->rules[i];
        buf_puts(out, "<Rule>");
        elem(out, "ID", r->id);
        render_filter(out, r);
        buf_printf(out, "<Status>%s</Status>", r->enabled ? "Enabled" : "Disabled");
        if (r->has_expiration) {
            buf_puts(out, "<Expiration>");
            if (r->exp_days > 0) buf_printf(out, "<Days>%d</Days>", r->exp_days);
            if (r->has_exp_date) {
                char ts[40];
                time_fmt_iso8601(r->exp_date_ms, ts, sizeof ts);
                buf_printf(out, "<Date>%s</Date>", ts);
            }
            if (r->has_exp_delete_marker)
                buf_printf(out, "<ExpiredObjectDeleteMarker>%s</ExpiredObjectDeleteMarker>",
                           r->exp_delete_marker ? "true" : "false");
            buf_puts(out, "</Expiration>");
        }
        if (r->has_noncurrent) {
            buf_printf(out, "<NoncurrentVersionExpiration><NoncurrentDays>%d</NoncurrentDays>", r->nc_days);
            if (r->nc_newer > 0) buf_printf(out, "<NewerNoncurrentVersions>%d</NewerNoncurrentVersions>", r->nc_newer);
            buf_puts(out, "</NoncurrentVersionExpiration>");
        }
        if (r->abort_days > 0)
            buf_printf(out, "<AbortIncompleteMultipartUpload><DaysAfterInitiation>%d</DaysAfterInitiation>"
                            "</AbortIncompleteMultipartUpload>", r->abort_days);
        buf_puts(out, "</Rule>");
    }
    buf_puts(out, "</LifecycleConfiguration>");
}

/* ---- matching and time ------------------------------------------------------------------------------ */

bool s3_lifecycle_filter_match(const s3_lifecycle_rule *r, const char *key, size_t key_len, int64_t size,
                               const s3_tagset *tags) {
    size_t pl = strlen(r->prefix);
    if (pl > key_len || memcmp(r->prefix, key, pl) != 0) return false;
    if (r->size_gt >= 0 && !(size > r->size_gt)) return false;
    if (r->size_lt >= 0 && !(size < r->size_lt)) return false;
    for (int i = 0; i < r->tags.n; i++) {
        bool found = false;
        for (int k = 0; tags && k < tags->n && !found; k++)
            found = !strcmp(tags->tags[k].key, r->tags.tags[i].key) && !strcmp(tags->tags[k].value, r->tags.tags[i].value);
        if (!found) return false;
    }
    return true;
}

int64_t s3_lifecycle_due(int64_t since_ms, int days, int64_t day_ms) {
    assert(day_ms > 0 && days > 0);
    int64_t t = since_ms + (int64_t)days * day_ms;
    /* rounded up to the next "midnight": a multiple of the day since the epoch */
    return ((t + day_ms - 1) / day_ms) * day_ms;
}

int64_t s3_lifecycle_expiry(const s3_lifecycle_config *c, const char *key, size_t key_len, int64_t size,
                            int64_t mtime_ms, const s3_tagset *tags, int64_t day_ms, const char **rule_id) {
    int64_t best = 0;
    for (int i = 0; i < c->n; i++) {
        const s3_lifecycle_rule *r = &c->rules[i];
        if (!r->enabled || !r->has_expiration || (r->exp_days == 0 && !r->has_exp_date)) continue;
        if (!s3_lifecycle_filter_match(r, key, key_len, size, tags)) continue;
        int64_t due = r->exp_days > 0 ? s3_lifecycle_due(mtime_ms, r->exp_days, day_ms) : r->exp_date_ms;
        if (best == 0 || due < best) {
            best = due;
            if (rule_id) *rule_id = r->id;
        }
    }
    return best;
}
