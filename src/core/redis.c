/*
 * redis.c — the one reading of redis_url and the one way to open a
 * connection to it (hiredis), shared by the metadata cache (cache/l2.c), the
 * audit dead-letter queue (audit/dlq.c) and the event bus (events/bus.c).
 *
 * A connection is opened with the connect timeout and given the same
 * timeout for every command (SO_RCVTIMEO/SO_SNDTIMEO), then AUTH and SELECT
 * as the URL says: a caller gets a connection ready for its commands, or
 * NULL.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

int redis_target_parse(const char *url, redis_target *t, char *why, size_t whylen) {
    char *host = t->host, *password = t->password;
    size_t hostlen = sizeof t->host, pwlen = sizeof t->password;
    int *port = &t->port, *db = &t->db;
    const char *p = url;
    *port = 6379;
    *db = 0;
    password[0] = '\0';
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(why, whylen, "redis_url must start with redis://");
        return CAIRN_EINVAL;
    }
    p += 8;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p; /* redis://:PASSWORD@ or redis://PASSWORD@ */
        size_t n = (size_t)(at - pw);
        if (n >= pwlen) {
            snprintf(why, whylen, "the password in redis_url is too long");
            return CAIRN_EINVAL;
        }
        memcpy(password, pw, n);
        password[n] = '\0';
        p = at + 1;
    }
    size_t hn = strcspn(p, ":/");
    if (hn == 0 || hn >= hostlen) {
        snprintf(why, whylen, "redis_url needs a host");
        return CAIRN_EINVAL;
    }
    memcpy(host, p, hn);
    host[hn] = '\0';
    p += hn;
    if (*p == ':') {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535 || (*end && *end != '/')) {
            snprintf(why, whylen, "bad port in redis_url");
            return CAIRN_EINVAL;
        }
        *port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || v < 0 || v > 1000000) {
            snprintf(why, whylen, "bad database number in redis_url");
            return CAIRN_EINVAL;
        }
        *db = (int)v;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(why, whylen, "unexpected text in redis_url after the host");
        return CAIRN_EINVAL;
    }
    return 0;
}

struct timeval redis_timeval(int64_t ms) {
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* One setup command; false (logged) when Redis refused it or did not answer. */
static bool setup_command(redisContext *c, int argc, const char **argv) {
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep && !ok) log_write(LOG_WARN, NULL, "redis refused a connection's setup", "command", argv[0], "error", rep->str, NULL);
    if (rep) freeReplyObject(rep);
    return ok;
}

redisContext *redis_open(const redis_target *t, int64_t timeout_ms) {
    struct timeval tv = redis_timeval(timeout_ms);
    redisContext *c = redisConnectWithTimeout(t->host, t->port, tv);
    if (!c) return NULL;
    bool ok = !c->err && redisSetTimeout(c, tv) == REDIS_OK;
    if (ok && t->password[0]) {
        const char *argv[] = {"AUTH", t->password};
        ok = setup_command(c, 2, argv);
    }
    if (ok && t->db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", t->db);
        const char *argv[] = {"SELECT", dbs};
        ok = setup_command(c, 2, argv);
    }
    if (ok) return c;
    redisFree(c);
    return NULL;
}
