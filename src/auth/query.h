/*
 * query.h — private to auth/: stepping through a raw query string, which
 * SigV4's canonical request and SigV2's string to sign both read.
 */
#ifndef CAIRN_AUTH_QUERY_H
#define CAIRN_AUTH_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/core.h"

typedef struct {
    const char *name, *val; /* raw, still percent-encoded */
    size_t nlen, vlen;
    bool has_eq;            /* "a=" (empty value) rather than "a" */
} qparam;

/* Steps to the next non-empty '&'-separated parameter of [*cur, end). */
static inline bool query_next(const char **cur, const char *end, qparam *p) {
    while (*cur < end) {
        const char *s = *cur;
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        *cur = amp ? amp + 1 : end;
        if (e == s) continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        p->name = s;
        p->nlen = (size_t)((eq ? eq : e) - s);
        p->val = eq ? eq + 1 : e;
        p->vlen = eq ? (size_t)(e - eq - 1) : 0;
        p->has_eq = eq != NULL;
        return true;
    }
    return false;
}

/* Percent-decodes a query component into dst (>= n+1 bytes), reading '+' as
 * a space as the gateway does.  Returns the decoded length or CAIRN_EINVAL. */
static inline long query_decode(const char *s, size_t n, char *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = s[i] == '+' ? ' ' : s[i];
    return url_decode(dst, n, dst); /* in place: the write index never passes the read index */
}

#endif
