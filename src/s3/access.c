/*
 * access.c — S3's access decision (access.h): bucket policies parsed and
 * judged, ACLs as grants, and the order S3 combines them in.
 *
 * A policy is kept as its parsed JSON (jansson) once validated, and judged
 * by walking its statements: a statement applies when its principal, its
 * action, its resource and every one of its conditions match; a Deny that
 * applies wins over everything, else an Allow that applies allows.
 *
 * Conditions: the operators StringEquals/NotEquals/EqualsIgnoreCase/
 * NotEqualsIgnoreCase/Like/NotLike, Numeric*, Date*, Bool, IpAddress,
 * NotIpAddress, Null and Arn*, each with IAM's "IfExists" suffix and
 * "ForAnyValue:"/"ForAllValues:" prefixes (every key here has one value).
 * A key the request lacks fails a condition, except under a negated
 * operator or IfExists, as in IAM.
 */
#include "s3/access.h"
#include "s3/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/tree.h>

/* In an expanded pattern: the next character is itself, not a wildcard. */
#define LITERAL '\x01'

struct access_policy {
    json_t *root;
    json_t *statements;          /* array */
    bool is_public;
};

/* ---- matching ------------------------------------------------------------------------------ */

bool access_wildcard(const char *pat, const char *s, size_t n, bool nocase) {
    /* Iterative glob with one backtrack point: linear in practice.  A
     * character after LITERAL matches only itself (expand's output). */
    size_t i = 0;
    const char *star = NULL;
    size_t star_i = 0;
    while (i < n) {
        bool lit = *pat == LITERAL && pat[1];
        const char *pp = lit ? pat + 1 : pat;
        char pc = *pp, sc = s[i];
        if (nocase) pc = (char)tolower((unsigned char)pc), sc = (char)tolower((unsigned char)sc);
        if (!lit && *pat == '*') {
            star = ++pat;
            star_i = i;
        } else if (*pp && ((!lit && *pp == '?') || pc == sc)) {
            pat = pp + 1;
            i++;
        } else if (star) {
            pat = star;
            i = ++star_i;
        } else {
            return false;
        }
    }
    while (*pat == '*') pat++;
    return *pat == '\0';
}

static bool wild(const char *pat, const char *s, bool nocase) { return access_wildcard(pat, s, strlen(s), nocase); }

/* ---- values of a policy ------------------------------------------------------------------- */

/* Calls fn on each string of v (a string or an array of strings); false
 * when v is neither or fn says stop with a match. */
typedef bool (*str_fn)(const char *s, const void *ud);

static bool any_string(const json_t *v, str_fn fn, const void *ud) {
    if (json_is_string(v)) return fn(json_string_value(v), ud);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) if (json_is_string(e) && fn(json_string_value(e), ud)) return true;
    return false;
}

static bool all_strings(const json_t *v) {
    if (json_is_string(v)) return true;
    if (!json_is_array(v) || json_array_size(v) == 0) return false;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) if (!json_is_string(e)) return false;
    return true;
}

/* ---- principals --------------------------------------------------------------------------- */

typedef struct {
    const access_ctx *c;
    const char *user_name;       /* looked up once, when a user ARN is named */
    bool name_looked;
} who_ctx;

static const char *user_name_of(who_ctx *w) {
    if (!w->name_looked) {
        w->name_looked = true;
        w->user_name = w->c->lookup ? w->c->lookup(w->c->ud, "aws:username") : NULL;
    }
    return w->user_name;
}

static bool id_is(const char *s, int64_t id) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)id);
    return strcmp(s, buf) == 0;
}

static bool aws_principal_matches(const char *s, const void *ud) {
    who_ctx *w = (who_ctx *)ud;
    if (!strcmp(s, "*")) return true;
    if (w->c->anonymous) return false;
    if (id_is(s, w->c->user_id)) return true;
    if (strncmp(s, "arn:aws:iam::", 13) != 0) return false;
    const char *acct = s + 13, *colon = strchr(acct, ':');
    if (!colon) return false;
    if (!strcmp(colon + 1, "root")) {
        char a[24];
        size_t al = (size_t)(colon - acct);
        if (al >= sizeof a) return false;
        memcpy(a, acct, al);
        a[al] = '\0';
        return id_is(a, w->c->user_id);
    }
    if (strncmp(colon + 1, "user/", 5) != 0) return false;
    const char *name = user_name_of(w);
    return name && strcmp(colon + 6, name) == 0;
}

static bool canonical_matches(const char *s, const void *ud) {
    const who_ctx *w = ud;
    return !w->c->anonymous && id_is(s, w->c->user_id);
}

static bool principal_matches(const json_t *p, who_ctx *w) {
    if (json_is_string(p)) return strcmp(json_string_value(p), "*") == 0;
    const json_t *aws = json_object_get(p, "AWS"), *cu = json_object_get(p, "CanonicalUser");
    return (aws && any_string(aws, aws_principal_matches, w)) || (cu && any_string(cu, canonical_matches, w));
}

/* ---- policy variables --------------------------------------------------------------------- */

static const char *context_value(const access_ctx *c, const char *key, char *buf, size_t n);

/* IAM's policy variables in a resource or a condition value: ${aws:username}
 * and the other keys become the request's value (a key it lacks makes the
 * value match nothing), ${*} ${?} ${$} the literal characters.  Returns pat
 * itself when it has none, else out (n bytes); NULL when it cannot match. */
static const char *expand(const char *pat, const access_ctx *c, char *out, size_t n) {
    if (!strstr(pat, "${")) return pat;
    size_t o = 0;
    for (const char *p = pat; *p;) {
        const char *v = NULL, *end;
        char key[128], vb[64];
        if (p[0] == '$' && p[1] == '{' && (end = strchr(p + 2, '}')) && (size_t)(end - p - 2) < sizeof key) {
            memcpy(key, p + 2, (size_t)(end - p - 2));
            key[end - p - 2] = '\0';
            if (!strcmp(key, "*") || !strcmp(key, "?") || !strcmp(key, "$")) v = key;
            else if (!(v = context_value(c, key, vb, sizeof vb))) return NULL;
            p = end + 1;
        } else {
            key[0] = *p++, key[1] = '\0';
            v = key;
        }
        /* A variable's value is literal text; the pattern's own
         * characters keep their meaning. */
        bool lit = v != key || p[-1] == '}';
        for (; *v; v++) {
            if (o + 2 >= n) return NULL;
            if (lit && (*v == '*' || *v == '?' || *v == LITERAL)) out[o++] = LITERAL;
            out[o++] = *v;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- actions and resources ---------------------------------------------------------------- */

static bool action_matches(const char *pat, const void *ud) { return wild(pat, ud, true); }

typedef struct {
    const char *arn;
    size_t len;
    const access_ctx *c;
} arn_ref;

static bool resource_matches(const char *pat, const void *ud) {
    const arn_ref *r = ud;
    char buf[2048];
    const char *p = expand(pat, r->c, buf, sizeof buf);
    return p && access_wildcard(p, r->arn, r->len, false);
}

/* ---- conditions --------------------------------------------------------------------------- */

/* ISO 8601 (2026-12-01, 2026-12-01T10:00:00Z, with fractions or an offset)
 * or epoch seconds, into seconds; false when it is neither. */
static bool parse_date(const char *s, int64_t *out) {
    char *end;
    if (*s >= '0' && *s <= '9' && !strchr(s, '-')) {
        long long v = strtoll(s, &end, 10);
        if (*end) return false;
        *out = v;
        return true;
    }
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3) return false;
    const char *p = s + n;
    if (*p == 'T') {
        int m2 = 0;
        if (sscanf(p + 1, "%2d:%2d:%2d%n", &h, &mi, &se, &m2) != 3) return false;
        p += 1 + m2;
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') p++;
        }
    }
    int off = 0;
    if (*p == 'Z') p++;
    else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2) return false;
        off = (oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
    tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d, tm.tm_hour = h, tm.tm_min = mi, tm.tm_sec = se;
    *out = (int64_t)timegm(&tm) - off;
    return true;
}

static bool parse_number(const char *s, double *out) {
    char *end;
    if (!*s) return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

/* s in the CIDR block (or equal to the address) cidr. */
static bool ip_in(const char *cidr, const char *s) {
    char net[64];
    const char *slash = strchr(cidr, '/');
    size_t nl = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (nl >= sizeof net || !s) return false;
    memcpy(net, cidr, nl);
    net[nl] = '\0';
    unsigned char a[16], b[16];
    int fam = strchr(net, ':') ? AF_INET6 : AF_INET, len = fam == AF_INET6 ? 16 : 4;
    if (inet_pton(fam, net, a) != 1) return false;
    /* An IPv4 client seen through an IPv6 socket: ::ffff:a.b.c.d. */
    const char *addr = s;
    if (fam == AF_INET && !strncmp(addr, "::ffff:", 7)) addr += 7;
    if (inet_pton(fam, addr, b) != 1) return false;
    long bits = len * 8;
    if (slash) {
        char *end;
        bits = strtol(slash + 1, &end, 10);
        if (*end || bits < 0 || bits > len * 8) return false;
    }
    for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
        unsigned mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
        if ((a[i] & mask) != (b[i] & mask)) return false;
    }
    return true;
}

typedef enum { OP_STR_EQ, OP_STR_EQ_NOCASE, OP_STR_LIKE, OP_NUM_EQ, OP_NUM_LT, OP_NUM_LE, OP_NUM_GT, OP_NUM_GE,
               OP_DATE_EQ, OP_DATE_LT, OP_DATE_LE, OP_DATE_GT, OP_DATE_GE, OP_BOOL, OP_IP, OP_NULL } cond_base;

typedef struct {
    cond_base base;
    bool negated;
    bool if_exists;
} cond_op;

static const struct {
    const char *name;
    cond_base base;
    bool negated;
} cond_ops[] = {
    {"StringEquals", OP_STR_EQ, false}, {"StringNotEquals", OP_STR_EQ, true},
    {"StringEqualsIgnoreCase", OP_STR_EQ_NOCASE, false}, {"StringNotEqualsIgnoreCase", OP_STR_EQ_NOCASE, true},
    {"StringLike", OP_STR_LIKE, false}, {"StringNotLike", OP_STR_LIKE, true},
    {"NumericEquals", OP_NUM_EQ, false}, {"NumericNotEquals", OP_NUM_EQ, true},
    {"NumericLessThan", OP_NUM_LT, false}, {"NumericLessThanEquals", OP_NUM_LE, false},
    {"NumericGreaterThan", OP_NUM_GT, false}, {"NumericGreaterThanEquals", OP_NUM_GE, false},
    {"DateEquals", OP_DATE_EQ, false}, {"DateNotEquals", OP_DATE_EQ, true},
    {"DateLessThan", OP_DATE_LT, false}, {"DateLessThanEquals", OP_DATE_LE, false},
    {"DateGreaterThan", OP_DATE_GT, false}, {"DateGreaterThanEquals", OP_DATE_GE, false},
    {"Bool", OP_BOOL, false}, {"IpAddress", OP_IP, false}, {"NotIpAddress", OP_IP, true},
    {"Null", OP_NULL, false},
    {"ArnEquals", OP_STR_EQ, false}, {"ArnNotEquals", OP_STR_EQ, true},
    {"ArnLike", OP_STR_LIKE, false}, {"ArnNotLike", OP_STR_LIKE, true},
};

static bool cond_op_parse(const char *name, cond_op *op) {
    if (!strncmp(name, "ForAnyValue:", 12)) name += 12;
    else if (!strncmp(name, "ForAllValues:", 13)) name += 13;
    char base[64];
    size_t n = strlen(name);
    if (n >= sizeof base) return false;
    memcpy(base, name, n + 1);
    op->if_exists = n > 8 && !strcmp(base + n - 8, "IfExists");
    if (op->if_exists) base[n - 8] = '\0';
    for (size_t i = 0; i < sizeof cond_ops / sizeof cond_ops[0]; i++)
        if (!strcmp(base, cond_ops[i].name)) {
            op->base = cond_ops[i].base;
            op->negated = cond_ops[i].negated;
            return !(op->if_exists && op->base == OP_NULL);
        }
    return false;
}

/* One condition value against the request's value v (never NULL here). */
static bool cond_value_matches(cond_base base, const char *want, const char *v, const access_ctx *c) {
    char wb[1100];
    if ((base == OP_STR_EQ || base == OP_STR_EQ_NOCASE || base == OP_STR_LIKE) && !(want = expand(want, c, wb, sizeof wb)))
        return false;
    if (want == wb && base != OP_STR_LIKE) { /* no wildcards to keep literal: drop the marks */
        size_t o = 0;
        for (size_t i = 0; wb[i]; i++)
            if (wb[i] != LITERAL) wb[o++] = wb[i];
        wb[o] = '\0';
    }
    double a, b;
    int64_t da, db;
    switch (base) {
    case OP_STR_EQ: return strcmp(want, v) == 0;
    case OP_STR_EQ_NOCASE: return strcasecmp(want, v) == 0;
    case OP_STR_LIKE: return wild(want, v, false);
    case OP_BOOL: return strcasecmp(want, v) == 0;
    case OP_IP: return ip_in(want, v);
    case OP_NUM_EQ: case OP_NUM_LT: case OP_NUM_LE: case OP_NUM_GT: case OP_NUM_GE:
        if (!parse_number(v, &a) || !parse_number(want, &b)) return false;
        return base == OP_NUM_EQ ? a == b : base == OP_NUM_LT ? a < b : base == OP_NUM_LE ? a <= b
                                          : base == OP_NUM_GT ? a > b : a >= b;
    case OP_DATE_EQ: case OP_DATE_LT: case OP_DATE_LE: case OP_DATE_GT: case OP_DATE_GE:
        if (!parse_date(v, &da) || !parse_date(want, &db)) return false;
        return base == OP_DATE_EQ ? da == db : base == OP_DATE_LT ? da < db : base == OP_DATE_LE ? da <= db
                                             : base == OP_DATE_GT ? da > db : da >= db;
    case OP_NULL: return false;
    }
    return false;
}

/* A condition value as text: strings, numbers and booleans are all given
 * as strings or as JSON scalars. */
static const char *scalar_text(const json_t *v, char *buf, size_t n) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_true(v)) return "true";
    if (json_is_false(v)) return "false";
    if (json_is_integer(v)) {
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        snprintf(buf, n, "%.17g", json_real_value(v));
        return buf;
    }
    return NULL;
}

/* The request's value of a condition key, or NULL. */
static const char *context_value(const access_ctx *c, const char *key, char *buf, size_t n) {
    if (!strcasecmp(key, "aws:SourceIp")) return c->source_ip;
    if (!strcasecmp(key, "aws:SecureTransport")) return c->secure ? "true" : "false";
    if (!strcasecmp(key, "aws:CurrentTime")) {
        time_t t = (time_t)c->now_s;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
    }
    if (!strcasecmp(key, "aws:EpochTime")) {
        snprintf(buf, n, "%lld", (long long)c->now_s);
        return buf;
    }
    if (!strcasecmp(key, "aws:PrincipalType")) return c->anonymous ? "Anonymous" : "User";
    if (c->anonymous && (!strcasecmp(key, "aws:userid") || !strcasecmp(key, "aws:username") ||
                         !strcasecmp(key, "aws:PrincipalAccount")))
        return NULL;
    if (!strcasecmp(key, "aws:userid") || !strcasecmp(key, "aws:PrincipalAccount")) {
        snprintf(buf, n, "%lld", (long long)c->user_id);
        return buf;
    }
    return c->lookup ? c->lookup(c->ud, key) : NULL;
}

static bool condition_block_holds(const json_t *cond, const access_ctx *c) {
    const char *opname;
    json_t *keys;
    json_object_foreach((json_t *)cond, opname, keys) {
        cond_op op;
        if (!cond_op_parse(opname, &op)) return false; /* validated at parse: unreachable */
        const char *key;
        json_t *want;
        json_object_foreach(keys, key, want) {
            char buf[64], vb[64];
            const char *v = context_value(c, key, buf, sizeof buf);
            if (op.base == OP_NULL) {
                /* Null: "true" holds when the key is absent. */
                const char *w = json_is_array(want) ? scalar_text(json_array_get(want, 0), vb, sizeof vb)
                                                    : scalar_text(want, vb, sizeof vb);
                bool absent = v == NULL;
                if (!w || absent != (strcasecmp(w, "true") == 0)) return false;
                continue;
            }
            if (!v) {
                if (op.if_exists || op.negated) continue;
                return false;
            }
            bool any = false;
            if (json_is_array(want)) {
                size_t i;
                json_t *e;
                json_array_foreach(want, i, e) {
                    const char *w = scalar_text(e, vb, sizeof vb);
                    if (w && cond_value_matches(op.base, w, v, c)) { any = true; break; }
                }
            } else {
                const char *w = scalar_text(want, vb, sizeof vb);
                any = w && cond_value_matches(op.base, w, v, c);
            }
            if (any == op.negated) return false;
        }
    }
    return true;
}

/* ---- statements --------------------------------------------------------------------------- */

static bool statement_applies(const json_t *st, const access_ctx *c, const arn_ref *arn, who_ctx *w) {
    const json_t *p = json_object_get(st, "Principal"), *np = json_object_get(st, "NotPrincipal");
    if (p ? !principal_matches(p, w) : principal_matches(np, w)) return false;
    const json_t *a = json_object_get(st, "Action"), *na = json_object_get(st, "NotAction");
    if (a ? !any_string(a, action_matches, c->action) : any_string(na, action_matches, c->action)) return false;
    const json_t *r = json_object_get(st, "Resource"), *nr = json_object_get(st, "NotResource");
    if (r ? !any_string(r, resource_matches, arn) : any_string(nr, resource_matches, arn)) return false;
    const json_t *cond = json_object_get(st, "Condition");
    return !cond || condition_block_holds(cond, c);
}

/* The ARN of what c acts on, in buf (n bytes) or NULL when too long. */
static const char *request_arn(const access_ctx *c, char *buf, size_t n, size_t *len) {
    int l = c->key ? snprintf(buf, n, "arn:aws:s3:::%s/%.*s", c->bucket, (int)c->key_len, c->key)
                   : snprintf(buf, n, "arn:aws:s3:::%s", c->bucket);
    if (l < 0 || (size_t)l >= n) return NULL;
    *len = (size_t)l;
    return buf;
}

access_effect access_policy_eval(const access_policy *p, const access_ctx *c) {
    if (!p) return ACCESS_NONE;
    char buf[13 + 64 + 1 + 1025 + 8];
    arn_ref arn = {.c = c};
    if (!(arn.arn = request_arn(c, buf, sizeof buf, &arn.len))) return ACCESS_NONE;
    who_ctx w = {.c = c};
    access_effect out = ACCESS_NONE;
    size_t i;
    json_t *st;
    json_array_foreach(p->statements, i, st) {
        if (!statement_applies(st, c, &arn, &w)) continue;
        if (!strcmp(json_string_value(json_object_get(st, "Effect")), "Deny")) return ACCESS_DENY;
        out = ACCESS_ALLOW;
    }
    return out;
}

/* ---- validation --------------------------------------------------------------------------- */

static bool action_valid(const char *s, const void *ud) {
    (void)ud;
    return !(strcmp(s, "*") == 0 || (strncasecmp(s, "s3:", 3) == 0 && s[3]));
}

static bool resource_invalid(const char *s, const void *ud) {
    const char *bucket = ud;
    if (strncmp(s, "arn:aws:s3:::", 13) != 0) return true;
    const char *b = s + 13, *slash = strchr(b, '/');
    char part[256];
    size_t l = slash ? (size_t)(slash - b) : strlen(b);
    if (l == 0 || l >= sizeof part) return true;
    memcpy(part, b, l);
    part[l] = '\0';
    return !wild(part, bucket, false);
}

static bool principal_invalid(const char *s, const void *ud) {
    (void)ud;
    if (!strcmp(s, "*")) return false;
    bool digits = *s != '\0';
    for (const char *p = s; *p; p++) digits = digits && *p >= '0' && *p <= '9';
    if (digits) return false;
    if (strncmp(s, "arn:aws:iam::", 13) != 0) return true;
    const char *colon = strchr(s + 13, ':');
    return !colon || colon == s + 13 || (strcmp(colon + 1, "root") != 0 && (strncmp(colon + 1, "user/", 5) != 0 || !colon[6]));
}

static bool canonical_invalid(const char *s, const void *ud) {
    (void)ud;
    if (!*s) return true;
    for (; *s; s++) if (*s < '0' || *s > '9') return true;
    return false;
}

static const char *principal_error(const json_t *p) {
    if (json_is_string(p)) return strcmp(json_string_value(p), "*") == 0 ? NULL : "Invalid principal in policy";
    if (!json_is_object(p) || json_object_size(p) == 0) return "Invalid principal in policy";
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)p, k, v) {
        if (!all_strings(v)) return "Invalid principal in policy";
        if (!strcmp(k, "AWS")) {
            if (any_string(v, principal_invalid, NULL)) return "Invalid principal in policy";
        } else if (!strcmp(k, "CanonicalUser")) {
            if (any_string(v, canonical_invalid, NULL)) return "Invalid principal in policy";
        } else {
            return "Invalid principal in policy";
        }
    }
    return NULL;
}

static const char *condition_error(const json_t *cond) {
    if (!json_is_object(cond)) return "Invalid Condition: the Condition block must be an object";
    const char *opname;
    json_t *keys;
    json_object_foreach((json_t *)cond, opname, keys) {
        cond_op op;
        if (!cond_op_parse(opname, &op)) return "Invalid Condition type";
        if (!json_is_object(keys) || json_object_size(keys) == 0) return "Invalid Condition: an operator must name keys";
        const char *key;
        json_t *want;
        json_object_foreach(keys, key, want) {
            if (strncasecmp(key, "aws:", 4) != 0 && strncasecmp(key, "s3:", 3) != 0)
                return "Policy has an invalid condition key";
            char vb[64];
            if (json_is_array(want)) {
                if (json_array_size(want) == 0) return "Invalid Condition: a key must have a value";
                size_t i;
                json_t *e;
                json_array_foreach(want, i, e) if (!scalar_text(e, vb, sizeof vb)) return "Invalid Condition value";
            } else if (!scalar_text(want, vb, sizeof vb)) {
                return "Invalid Condition value";
            }
        }
    }
    return NULL;
}

static bool pins_caller(const char *key) {
    static const char *const pinning[] = {"aws:SourceIp", "aws:SourceVpc", "aws:SourceVpce", "aws:SourceAccount",
                                          "aws:SourceArn", "aws:PrincipalOrgID", "aws:PrincipalAccount",
                                          "aws:PrincipalArn", "aws:userid", "aws:username", "s3:DataAccessPointAccount",
                                          NULL};
    for (const char *const *p = pinning; *p; p++)
        if (!strcasecmp(key, *p)) return true;
    return false;
}

static bool wildcard_cidr(const char *s, const void *ud) {
    (void)ud;
    const char *slash = strchr(s, '/');
    return slash && strtol(slash + 1, NULL, 10) == 0;
}

static bool star_string(const char *s, const void *ud) {
    (void)ud;
    return strcmp(s, "*") == 0;
}

/* An Allow to everyone, unless a condition pins the caller to fixed values
 * (a positive operator, no wildcard value).  NotPrincipal in an Allow
 * counts as everyone. */
static bool statement_public(const json_t *st) {
    if (strcmp(json_string_value(json_object_get(st, "Effect")), "Allow") != 0) return false;
    const json_t *p = json_object_get(st, "Principal");
    if (p) {
        const json_t *aws = json_is_string(p) ? p : json_object_get(p, "AWS");
        if (!aws || !any_string(aws, star_string, NULL)) return false;
    }
    const json_t *cond = json_object_get(st, "Condition");
    const char *opname;
    json_t *keys;
    json_object_foreach((json_t *)cond, opname, keys) {
        cond_op op;
        if (!cond_op_parse(opname, &op) || op.negated || op.if_exists || op.base == OP_NULL) continue;
        const char *key;
        json_t *want;
        json_object_foreach(keys, key, want) {
            if (!pins_caller(key)) continue;
            if (op.base == OP_STR_LIKE && any_string(want, star_string, NULL)) continue;
            if (op.base == OP_IP && any_string(want, wildcard_cidr, NULL)) continue;
            return false;
        }
    }
    return true;
}

static const char *statement_error(const json_t *st, const char *bucket, json_t *sids) {
    if (!json_is_object(st)) return "Statement must be an object";
    static const char *const known[] = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                                        "Resource", "NotResource", "Condition", NULL};
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)st, k, v) {
        bool ok = false;
        for (const char *const *p = known; *p && !ok; p++) ok = strcmp(k, *p) == 0;
        if (!ok) return "Policy has an invalid field in a statement";
    }
    const json_t *sid = json_object_get(st, "Sid");
    if (sid) {
        if (!json_is_string(sid)) return "Statement Id must be a string";
        if (json_object_get(sids, json_string_value(sid))) return "Statement IDs (SID) must be unique";
        if (json_object_set_new(sids, json_string_value(sid), json_true()) != 0) return "out of memory";
    }
    const json_t *eff = json_object_get(st, "Effect");
    if (!eff) return "Missing required field Effect";
    if (!json_is_string(eff) || (strcmp(json_string_value(eff), "Allow") && strcmp(json_string_value(eff), "Deny")))
        return "Invalid effect";
    const json_t *p = json_object_get(st, "Principal"), *np = json_object_get(st, "NotPrincipal");
    if (!p == !np) return p ? "Statement may not have both Principal and NotPrincipal" : "Missing required field Principal";
    const char *pe = principal_error(p ? p : np);
    if (pe) return pe;
    const json_t *a = json_object_get(st, "Action"), *na = json_object_get(st, "NotAction");
    if (!a == !na) return a ? "Statement may not have both Action and NotAction" : "Missing required field Action";
    if (!all_strings(a ? a : na) || any_string(a ? a : na, action_valid, NULL)) return "Policy has invalid action";
    const json_t *r = json_object_get(st, "Resource"), *nr = json_object_get(st, "NotResource");
    if (!r == !nr) return r ? "Statement may not have both Resource and NotResource" : "Missing required field Resource";
    if (!all_strings(r ? r : nr) || any_string(r ? r : nr, resource_invalid, bucket)) return "Policy has invalid resource";
    const json_t *cond = json_object_get(st, "Condition");
    return cond ? condition_error(cond) : NULL;
}

int access_policy_parse(const char *text, size_t len, const char *bucket, access_policy **out, const char **why) {
    *out = NULL;
    *why = NULL;
    if (len > ACCESS_POLICY_MAX) {
        *why = "Policy exceeds the maximum allowed document size.";
        return CAIRN_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        *why = "Policies must be valid JSON and the first byte must be '{'";
        return CAIRN_EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "Version") && strcmp(k, "Id") && strcmp(k, "Statement")) {
            *why = "Policy has an invalid field";
            json_decref(root);
            return CAIRN_EINVAL;
        }
    }
    const json_t *ver = json_object_get(root, "Version");
    if (ver && (!json_is_string(ver) || (strcmp(json_string_value(ver), "2012-10-17") &&
                                         strcmp(json_string_value(ver), "2008-10-17")))) {
        *why = "The policy must contain a valid version string";
        json_decref(root);
        return CAIRN_EINVAL;
    }
    json_t *st = json_object_get(root, "Statement");
    json_t *arr = NULL;
    if (json_is_object(st)) {
        arr = json_array();
        if (arr && json_array_append(arr, st) != 0) json_decref(arr), arr = NULL;
        if (!arr) { json_decref(root); return CAIRN_ENOMEM; }
    } else if (json_is_array(st) && json_array_size(st) > 0) {
        arr = json_incref(st);
    } else {
        *why = "Missing required field Statement";
        json_decref(root);
        return CAIRN_EINVAL;
    }
    json_t *sids = json_object();
    access_policy *p = calloc(1, sizeof *p);
    if (!sids || !p) {
        json_decref(sids);
        json_decref(arr);
        json_decref(root);
        free(p);
        return CAIRN_ENOMEM;
    }
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s) {
        const char *e = statement_error(s, bucket, sids);
        if (e) {
            *why = e;
            break;
        }
        if (statement_public(s)) p->is_public = true;
    }
    json_decref(sids);
    if (*why) {
        json_decref(arr);
        json_decref(root);
        free(p);
        return strcmp(*why, "out of memory") == 0 ? CAIRN_ENOMEM : CAIRN_EINVAL;
    }
    p->root = root;
    p->statements = arr;
    *out = p;
    return 0;
}

void access_policy_free(access_policy *p) {
    if (!p) return;
    json_decref(p->statements);
    json_decref(p->root);
    free(p);
}

bool access_policy_is_public(const access_policy *p) { return p && p->is_public; }

/* ---- ACLs ------------------------------------------------------------------------------------ */

static const char *const perm_names[] = {[ACL_READ] = "READ", [ACL_WRITE] = "WRITE", [ACL_READ_ACP] = "READ_ACP",
                                         [ACL_WRITE_ACP] = "WRITE_ACP", [ACL_FULL_CONTROL] = "FULL_CONTROL"};

static int perm_of(const char *s) {
    for (int i = 1; i < (int)(sizeof perm_names / sizeof perm_names[0]); i++)
        if (perm_names[i] && !strcmp(perm_names[i], s)) return i;
    return 0;
}

#define URI_ALL "http://acs.amazonaws.com/groups/global/AllUsers"
#define URI_AUTH "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
#define URI_LOG "http://acs.amazonaws.com/groups/s3/LogDelivery"

static int grantee_of_uri(const char *uri) {
    if (!strcmp(uri, URI_ALL)) return GRANTEE_ALL_USERS;
    if (!strcmp(uri, URI_AUTH)) return GRANTEE_AUTH_USERS;
    if (!strcmp(uri, URI_LOG)) return GRANTEE_LOG_DELIVERY;
    return 0;
}

static int add_grant(access_acl *a, uint8_t grantee, uint8_t perm, int64_t id) {
    for (int i = 0; i < a->n; i++)
        if (a->g[i].grantee == grantee && a->g[i].perm == perm && a->g[i].id == id) return 0;
    if (a->n >= ACCESS_MAX_GRANTS) return CAIRN_EINVAL;
    a->g[a->n++] = (access_grant){grantee, perm, id};
    return 0;
}

int access_acl_canned(const char *name, bool object, int64_t owner, int64_t bucket_owner, access_acl *out) {
    memset(out, 0, sizeof *out);
    out->owner = owner;
    add_grant(out, GRANTEE_USER, ACL_FULL_CONTROL, owner);
    if (!strcmp(name, "private")) return 0;
    if (!strcmp(name, "public-read")) return add_grant(out, GRANTEE_ALL_USERS, ACL_READ, 0);
    if (!strcmp(name, "public-read-write")) {
        add_grant(out, GRANTEE_ALL_USERS, ACL_READ, 0);
        return add_grant(out, GRANTEE_ALL_USERS, ACL_WRITE, 0);
    }
    if (!strcmp(name, "authenticated-read")) return add_grant(out, GRANTEE_AUTH_USERS, ACL_READ, 0);
    if (!strcmp(name, "aws-exec-read")) return 0;
    if (!strcmp(name, "log-delivery-write") && !object) {
        add_grant(out, GRANTEE_LOG_DELIVERY, ACL_WRITE, 0);
        return add_grant(out, GRANTEE_LOG_DELIVERY, ACL_READ_ACP, 0);
    }
    /* On a bucket these two mean private, as S3 takes them. */
    if (!strcmp(name, "bucket-owner-read"))
        return object && bucket_owner != owner ? add_grant(out, GRANTEE_USER, ACL_READ, bucket_owner) : 0;
    if (!strcmp(name, "bucket-owner-full-control"))
        return object && bucket_owner != owner ? add_grant(out, GRANTEE_USER, ACL_FULL_CONTROL, bucket_owner) : 0;
    return CAIRN_EINVAL;
}

int access_acl_add_header(access_acl *a, uint8_t perm, const char *value, const char **code, const char **why) {
    const char *p = value;
    *code = "InvalidArgument";
    *why = "Invalid grant header: expected id=\"...\", uri=\"...\" or emailAddress=\"...\"";
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) return 0;
        const char *eq = strchr(p, '=');
        if (!eq) return CAIRN_EINVAL;
        char key[16], val[256];
        size_t kl = (size_t)(eq - p);
        while (kl && p[kl - 1] == ' ') kl--;
        if (kl == 0 || kl >= sizeof key) return CAIRN_EINVAL;
        memcpy(key, p, kl);
        key[kl] = '\0';
        const char *v = eq + 1, *end;
        while (*v == ' ') v++;
        size_t vl;
        if (*v == '"') {
            if (!(end = strchr(v + 1, '"'))) return CAIRN_EINVAL;
            vl = (size_t)(end - v - 1);
            v++;
            p = end + 1;
        } else {
            end = v + strcspn(v, ",");
            vl = (size_t)(end - v);
            while (vl && v[vl - 1] == ' ') vl--;
            p = end;
        }
        if (vl >= sizeof val) return CAIRN_EINVAL;
        memcpy(val, v, vl);
        val[vl] = '\0';
        int rc;
        if (!strcasecmp(key, "id")) {
            if (canonical_invalid(val, NULL)) {
                *why = "Invalid id";
                return CAIRN_EINVAL;
            }
            rc = add_grant(a, GRANTEE_USER, perm, strtoll(val, NULL, 10));
        } else if (!strcasecmp(key, "uri")) {
            int g = grantee_of_uri(val);
            if (!g) {
                *why = "Invalid group uri";
                return CAIRN_EINVAL;
            }
            rc = add_grant(a, (uint8_t)g, perm, 0);
        } else if (!strcasecmp(key, "emailAddress")) {
            *code = "UnresolvableGrantByEmailAddress";
            *why = "The e-mail address you provided does not match any account on record.";
            return CAIRN_EINVAL;
        } else {
            return CAIRN_EINVAL;
        }
        if (rc != 0) {
            *why = "Too many grants";
            return CAIRN_EINVAL;
        }
    }
}

static bool text_into(xmlNodePtr e, char *out, size_t n) {
    size_t used = 0;
    for (xmlNodePtr c = e->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) return false;
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) continue;
        size_t l = strlen((const char *)c->content);
        if (used + l >= n) return false;
        memcpy(out + used, c->content, l);
        used += l;
    }
    out[used] = '\0';
    return true;
}

static xmlNodePtr child(xmlNodePtr e, const char *name) {
    for (xmlNodePtr c = e->children; c; c = c->next)
        if (s3_xml_is(c, name)) return c;
    return NULL;
}

/* One <Grant>: its grantee and permission into a. */
static int parse_grant(xmlNodePtr g, access_acl *a, const char **code, const char **why) {
    xmlNodePtr ge = child(g, "Grantee"), pe = child(g, "Permission");
    char perm[32], v[256];
    if (!ge || !pe || !text_into(pe, perm, sizeof perm)) { *why = "A Grant needs a Grantee and a Permission"; return CAIRN_EINVAL; }
    int pm = perm_of(perm);
    if (!pm) { *code = "MalformedACLError"; *why = "Invalid Permission"; return CAIRN_EINVAL; }
    xmlNodePtr id = child(ge, "ID"), uri = child(ge, "URI"), mail = child(ge, "EmailAddress");
    if (id && text_into(id, v, sizeof v)) {
        if (canonical_invalid(v, NULL)) { *code = "InvalidArgument"; *why = "Invalid id"; return CAIRN_EINVAL; }
        if (add_grant(a, GRANTEE_USER, (uint8_t)pm, strtoll(v, NULL, 10)) != 0) { *why = "Too many grants"; return CAIRN_EINVAL; }
        return 0;
    }
    if (uri && text_into(uri, v, sizeof v)) {
        int gr = grantee_of_uri(v);
        if (!gr) { *code = "InvalidArgument"; *why = "Invalid group uri"; return CAIRN_EINVAL; }
        if (add_grant(a, (uint8_t)gr, (uint8_t)pm, 0) != 0) { *why = "Too many grants"; return CAIRN_EINVAL; }
        return 0;
    }
    if (mail) {
        *code = "UnresolvableGrantByEmailAddress";
        *why = "The e-mail address you provided does not match any account on record.";
        return CAIRN_EINVAL;
    }
    *why = "A Grantee needs an ID or a URI";
    return CAIRN_EINVAL;
}

int access_acl_parse_xml(const char *doc, size_t len, access_acl *out, const char **code, const char **why) {
    memset(out, 0, sizeof *out);
    *code = "MalformedACLError";
    *why = "The XML you provided was not well-formed or did not validate against our published schema.";
    int rc;
    xmlDocPtr d = s3_xml_read(doc, len, 64 * 1024, "AccessControlPolicy", &rc);
    if (!d) return rc;
    xmlNodePtr root = xmlDocGetRootElement(d);
    xmlNodePtr owner = child(root, "Owner"), list = child(root, "AccessControlList");
    char v[64];
    rc = CAIRN_EINVAL;
    xmlNodePtr oid = owner ? child(owner, "ID") : NULL;
    if (oid && text_into(oid, v, sizeof v) && !canonical_invalid(v, NULL) && list) {
        out->owner = strtoll(v, NULL, 10);
        rc = 0;
        for (xmlNodePtr g = list->children; g && rc == 0; g = g->next) {
            if (g->type != XML_ELEMENT_NODE) continue;
            if (!s3_xml_is(g, "Grant")) { rc = CAIRN_EINVAL; break; }
            rc = parse_grant(g, out, code, why);
        }
    }
    xmlFreeDoc(d);
    return rc;
}

void access_acl_to_text(const access_acl *a, buf_t *out) {
    buf_printf(out, "owner %lld\n", (long long)a->owner);
    for (int i = 0; i < a->n; i++) {
        const access_grant *g = &a->g[i];
        if (g->grantee == GRANTEE_USER) buf_printf(out, "%s u:%lld\n", perm_names[g->perm], (long long)g->id);
        else buf_printf(out, "%s %s\n", perm_names[g->perm],
                        g->grantee == GRANTEE_ALL_USERS ? "all" : g->grantee == GRANTEE_AUTH_USERS ? "auth" : "log");
    }
}

int access_acl_from_text(const char *text, access_acl *out) {
    memset(out, 0, sizeof *out);
    long long owner;
    int n = 0;
    if (sscanf(text, "owner %lld\n%n", &owner, &n) != 1 || n == 0) return CAIRN_EINVAL;
    out->owner = owner;
    const char *p = text + n;
    while (*p) {
        char perm[16], who[32];
        int m = 0;
        if (sscanf(p, "%15s %31s\n%n", perm, who, &m) != 2 || m == 0) return CAIRN_EINVAL;
        int pm = perm_of(perm);
        if (!pm) return CAIRN_EINVAL;
        int rc;
        if (!strncmp(who, "u:", 2)) rc = add_grant(out, GRANTEE_USER, (uint8_t)pm, strtoll(who + 2, NULL, 10));
        else if (!strcmp(who, "all")) rc = add_grant(out, GRANTEE_ALL_USERS, (uint8_t)pm, 0);
        else if (!strcmp(who, "auth")) rc = add_grant(out, GRANTEE_AUTH_USERS, (uint8_t)pm, 0);
        else if (!strcmp(who, "log")) rc = add_grant(out, GRANTEE_LOG_DELIVERY, (uint8_t)pm, 0);
        else return CAIRN_EINVAL;
        if (rc != 0) return rc;
        p += m;
    }
    return 0;
}

void access_acl_to_xml(const access_acl *a, buf_t *b) {
    buf_puts(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<AccessControlPolicy xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    buf_printf(b, "<Owner><ID>%lld</ID></Owner><AccessControlList>", (long long)a->owner);
    for (int i = 0; i < a->n; i++) {
        const access_grant *g = &a->g[i];
        buf_puts(b, "<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ");
        if (g->grantee == GRANTEE_USER) buf_printf(b, "xsi:type=\"CanonicalUser\"><ID>%lld</ID>", (long long)g->id);
        else buf_printf(b, "xsi:type=\"Group\"><URI>%s</URI>",
                        g->grantee == GRANTEE_ALL_USERS ? URI_ALL : g->grantee == GRANTEE_AUTH_USERS ? URI_AUTH : URI_LOG);
        buf_printf(b, "</Grantee><Permission>%s</Permission></Grant>", perm_names[g->perm]);
    }
    buf_puts(b, "</AccessControlList></AccessControlPolicy>");
}

bool access_acl_is_public(const access_acl *a) {
    for (int i = 0; a && i < a->n; i++)
        if (a->g[i].grantee == GRANTEE_ALL_USERS || a->g[i].grantee == GRANTEE_AUTH_USERS) return true;
    return false;
}

uint8_t access_acl_perms(const access_acl *a, const access_ctx *c, bool ignore_public) {
    uint8_t p = 0;
    for (int i = 0; a && i < a->n; i++) {
        const access_grant *g = &a->g[i];
        bool to_me = g->grantee == GRANTEE_ALL_USERS ? !ignore_public
                   : g->grantee == GRANTEE_AUTH_USERS ? !ignore_public && !c->anonymous
                   : g->grantee == GRANTEE_USER ? !c->anonymous && g->id == c->user_id
                                                : false;
        if (to_me) p |= g->perm;
    }
    return p;
}

uint8_t access_bucket_acl_need(const char *action) {
    static const struct { const char *action; uint8_t perm; } needs[] = {
        {"s3:ListBucket", ACL_READ}, {"s3:ListBucketVersions", ACL_READ}, {"s3:ListBucketMultipartUploads", ACL_READ},
        {"s3:PutObject", ACL_WRITE}, {"s3:DeleteObject", ACL_WRITE}, {"s3:DeleteObjectVersion", ACL_WRITE},
        {"s3:AbortMultipartUpload", ACL_WRITE}, {"s3:ListMultipartUploadParts", ACL_WRITE},
        {"s3:GetBucketAcl", ACL_READ_ACP}, {"s3:PutBucketAcl", ACL_WRITE_ACP},
    };
    for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++)
        if (!strcmp(needs[i].action, action)) return needs[i].perm;
    return 0;
}

uint8_t access_object_acl_need(const char *action) {
    static const struct { const char *action; uint8_t perm; } needs[] = {
        {"s3:GetObject", ACL_READ}, {"s3:GetObjectVersion", ACL_READ},
        {"s3:GetObjectAcl", ACL_READ_ACP}, {"s3:GetObjectVersionAcl", ACL_READ_ACP},
        {"s3:PutObjectAcl", ACL_WRITE_ACP}, {"s3:PutObjectVersionAcl", ACL_WRITE_ACP},
    };
    for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++)
        if (!strcmp(needs[i].action, action)) return needs[i].perm;
    return 0;
}

/* ---- the decision ------------------------------------------------------------------------- */

static bool manages_policy(const char *action) {
    return !strcmp(action, "s3:GetBucketPolicy") || !strcmp(action, "s3:PutBucketPolicy") ||
           !strcmp(action, "s3:DeleteBucketPolicy");
}

static bool legacy_public_action(const char *action) {
    return !strcmp(action, "s3:GetObject") || !strcmp(action, "s3:ListBucket") ||
           !strcmp(action, "s3:ListBucketVersions") || !strcmp(action, "s3:GetBucketLocation");
}

access_verdict access_decide(const access_ctx *c, const access_bucket *b) {
    if (!c->anonymous && c->is_root) return ACCESS_GRANTED;
    bool owner = !c->anonymous && c->user_id == c->bucket_owner;
    access_effect pe = access_policy_eval(b->policy, c);
    if (pe == ACCESS_DENY) return owner && manages_policy(c->action) ? ACCESS_GRANTED : ACCESS_DENIED;
    /* RestrictPublicBuckets: a public policy grants only the owner. */
    bool restricted = (b->pab & PAB_RESTRICT_PUBLIC_BUCKETS) && access_policy_is_public(b->policy);
    if (pe == ACCESS_ALLOW && (!restricted || owner)) return ACCESS_GRANTED;
    if (owner) return ACCESS_GRANTED;
    bool ignore_public = (b->pab & PAB_IGNORE_PUBLIC_ACLS) != 0;
    if (b->legacy_public_read && !ignore_public && !(b->pab & PAB_RESTRICT_PUBLIC_BUCKETS) &&
        legacy_public_action(c->action))
        return ACCESS_GRANTED;
    if (!b->acls_enabled) return ACCESS_DENIED;
    uint8_t need = access_bucket_acl_need(c->action);
    if (need && c->key && (need == ACL_READ_ACP || need == ACL_WRITE_ACP)) need = 0;
    if (need && (access_acl_perms(b->bucket_acl, c, ignore_public) & need) == need) return ACCESS_GRANTED;
    return c->key && access_object_acl_need(c->action) ? ACCESS_OBJECT_ACL : ACCESS_DENIED;
}

bool access_object_allows(const access_ctx *c, const access_bucket *b, const access_acl *object_acl) {
    uint8_t need = access_object_acl_need(c->action);
    if (!need || !b->acls_enabled || !object_acl) return false;
    if (!c->anonymous && object_acl->owner == c->user_id) return true;
    return (access_acl_perms(object_acl, c, (b->pab & PAB_IGNORE_PUBLIC_ACLS) != 0) & need) == need;
}
