/*
 * dlq.c — the audit dead-letter queue (dlq.h): a Redis stream when Redis is
 * configured and answers, else (and whenever an XADD fails) a synced spool
 * of CRC-checked records.
 *
 * A spool record's payload is the reason, a newline, then the event's JSON
 * (a reason never holds a newline: they are replaced).  dlq-held.pos holds
 * the byte offset the replayer reached, written whole and synced (a torn or
 * bad one counts as 0: a replay that starts over duplicates nothing, the
 * store being idempotent).
 */
#include "audit/dlq.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/journal.h"

#define REASON_MAX 512
/* The spool is read this much at a time (at least two of the largest
 * records): memory is bounded by it, never by the spool's size. */
#define SPOOL_CHUNK (4 * 1024 * 1024)

struct audit_dlq {
    char dir[1024];
    char stream[2][256];       /* [HELD], [REJECTED] */
    redis_target target;       /* redis_url, read */
    int timeout_ms;
    bool redis, fsync;

    pthread_mutex_t mu;        /* guards everything below */
    redisContext *rc;          /* NULL: connect on next use */
    int fd[2];                 /* spool files, O_APPEND */
    uint64_t seq[2];
    audit_dlq_stats st;
    uint64_t writes_redis, writes_spool;
    int64_t spooled[2];        /* records in the spool: held after the replay position, rejected */
};

static const char *const kind_name[] = {"held", "rejected"};

/* ---- the spool --------------------------------------------------------------------------- */

static void spool_path(const audit_dlq *d, int kind, const char *suffix, char *out, size_t n) {
    snprintf(out, n, "%s/dlq-%s.%s", d->dir, kind_name[kind], suffix);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return CAIRN_EIO;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Appends the events as records (d->mu held); synced before it returns. */
static int spool_put(audit_dlq *d, int kind, const char *const *events, const size_t *lens, int n,
                     const char *reason) {
    buf_t b;
    buf_init(&b);
    int rc = 0;
    int64_t now = time_now_ms();
    for (int i = 0; rc == 0 && i < n; i++) {
        buf_t p;
        buf_init(&p);
        buf_puts(&p, reason);
        buf_putc(&p, '\n');
        buf_append(&p, events[i], lens[i]);
        rc = p.oom ? CAIRN_ENOMEM : audit_record_encode(&b, ++d->seq[kind], now, p.data, p.len);
        buf_free(&p);
    }
    if (rc == 0 && b.oom) rc = CAIRN_ENOMEM;
    off_t at = lseek(d->fd[kind], 0, SEEK_END);
    if (rc == 0 && (fault_inject(FAULT_AUDIT_WRITE) || write_all(d->fd[kind], b.data, b.len) != 0)) rc = CAIRN_EIO;
    if (rc == 0 && d->fsync && (fault_inject(FAULT_AUDIT_FSYNC) || fdatasync(d->fd[kind]) != 0)) rc = CAIRN_EIO;
    if (rc == CAIRN_EIO && at >= 0 && ftruncate(d->fd[kind], at) != 0) {
        /* A torn tail stays; readers stop at it (the records check). */
    }
    buf_free(&b);
    return rc;
}

static uint64_t read_pos(const audit_dlq *d) {
    char path[1100];
    spool_path(d, AUDIT_DLQ_HELD, "pos", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    char end = 0;
    int got = fscanf(f, "%llu%c", &v, &end);
    fclose(f);
    return got == 2 && end == '\n' ? (uint64_t)v : 0;
}

static int write_pos(const audit_dlq *d, uint64_t pos) {
    char path[1100], tmp[1110];
    spool_path(d, AUDIT_DLQ_HELD, "pos", path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return CAIRN_EIO;
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)pos);
    int rc = write_all(fd, line, (size_t)n);
    if (rc == 0 && d->fsync && fdatasync(fd) != 0) rc = CAIRN_EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0) rc = CAIRN_EIO;
    if (rc != 0) unlink(tmp);
    return rc;
}

/* Reads up to SPOOL_CHUNK bytes of the spool file of kind from offset (d->mu
 * held). */
static int spool_read(const audit_dlq *d, int kind, uint64_t from, buf_t *out) {
    buf_reset(out);
    struct stat sb;
    if (fstat(d->fd[kind], &sb) != 0) return CAIRN_EIO;
    if ((uint64_t)sb.st_size <= from) return 0;
    uint64_t left = (uint64_t)sb.st_size - from;
    size_t n = left < SPOOL_CHUNK ? (size_t)left : SPOOL_CHUNK;
    if (buf_reserve(out, n) != 0) return CAIRN_ENOMEM;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(d->fd[kind], out->data + got, n - got, (off_t)(from + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return CAIRN_EIO;
        got += (size_t)r;
    }
    out->len = got;
    return 0;
}

/* Calls fn for every whole record of the spool file of kind from offset on,
 * a chunk at a time; fn's nonzero stops.  *end: the offset after the last
 * record fn saw.  d->mu is not held while fn runs. */
static int spool_iter(audit_dlq *d, int kind, uint64_t from, int (*fn)(void *ud, const audit_record *rec), void *ud,
                      uint64_t *end) {
    buf_t data;
    buf_init(&data);
    int rc = 0, stop = 0;
    uint64_t at = from;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        rc = spool_read(d, kind, at, &data);
        pthread_mutex_unlock(&d->mu);
        if (rc != 0 || data.len == 0) break;
        size_t off = 0;
        while (!stop && off < data.len) {
            audit_record rec;
            size_t size;
            if (audit_record_parse(data.data + off, data.len - off, &rec, &size) != 0) break;
            stop = fn(ud, &rec);
            off += size;
        }
        at += off;
        /* Stopped, or nothing whole in a chunk (a torn tail: no put after it
         * was acknowledged), or the end. */
        if (stop || off == 0 || data.len < SPOOL_CHUNK) break;
    }
    buf_free(&data);
    if (end) *end = at;
    return rc;
}

static int count_one(void *ud, const audit_record *rec) {
    (void)rec;
    (*(int64_t *)ud)++;
    return 0;
}

/* Splits a record's payload into reason and event. */
static bool split_payload(const audit_record *rec, const char **reason, size_t *rlen, const char **ev, size_t *elen) {
    const char *nl = memchr(rec->payload, '\n', rec->len);
    if (!nl) return false;
    *reason = rec->payload;
    *rlen = (size_t)(nl - rec->payload);
    *ev = nl + 1;
    *elen = rec->len - *rlen - 1;
    return true;
}

/* ---- Redis ------------------------------------------------------------------------------------ */

static void redis_drop(audit_dlq *d) {
    if (d->rc) redisFree(d->rc);
    d->rc = NULL;
}

/* The connection (d->mu held), or NULL. */
static redisContext *redis_get(audit_dlq *d) {
    if (!d->redis) return NULL;
    if (d->rc && !d->rc->err) return d->rc;
    redis_drop(d);
    d->rc = redis_open(&d->target, d->timeout_ms);
    return d->rc;
}

/* XADDs every event (pipelined); 0 when Redis took them all.  taken[i]
 * says whether event i is surely in the stream (its XADD answered an id):
 * an error answer, or no answer at all, leaves it false. */
static int redis_put(audit_dlq *d, int kind, const char *const *events, const size_t *lens, int n,
                     const char *reason, bool *taken) {
    memset(taken, 0, (size_t)n * sizeof *taken);
    redisContext *c = redis_get(d);
    if (!c) return CAIRN_EIO;
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms());
    for (int i = 0; i < n; i++) {
        const char *argv[] = {"XADD", d->stream[kind], "*", "event", events[i], "reason", reason, "time", ts};
        size_t al[] = {4, strlen(d->stream[kind]), 1, 5, lens[i], 6, strlen(reason), 4, strlen(ts)};
        if (redisAppendCommandArgv(c, 9, argv, al) != REDIS_OK) {
            redis_drop(d);
            return CAIRN_EIO;
        }
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK) {
            redis_drop(d);
            return CAIRN_EIO;
        }
        redisReply *rep = r;
        if (rep->type != REDIS_REPLY_STRING) rc = CAIRN_EIO; /* an error reply: the stream is not ours, OOM... */
        else taken[i] = true;
        freeReplyObject(rep);
    }
    return rc;
}

/* ---- the API ------------------------------------------------------------------------------------ */

int audit_dlq_put(audit_dlq *d, audit_dlq_kind kind, const char *const *events, const size_t *lens, int n,
                  const char *reason) {
    if (n <= 0) return 0;
    char why[REASON_MAX];
    snprintf(why, sizeof why, "%s", reason ? reason : "");
    for (char *p = why; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    for (int i = 0; i < n; i++)
        if (lens[i] + strlen(why) + 1 > AUDIT_RECORD_MAX_PAYLOAD) return CAIRN_EINVAL;
    /* What Redis did not surely take goes to the spool: the events
     * compacted in place of copies (rest[], restl[]). */
    bool *taken = d->redis ? calloc((size_t)n, sizeof *taken) : NULL;
    const char **rest = malloc((size_t)n * sizeof *rest);
    size_t *restl = malloc((size_t)n * sizeof *restl);
    if ((d->redis && !taken) || !rest || !restl) {
        free(taken);
        free(rest);
        free(restl);
        return CAIRN_ENOMEM;
    }
    pthread_mutex_lock(&d->mu);
    int rc = CAIRN_EIO, m = n;
    if (d->redis) {
        rc = redis_put(d, kind, events, lens, n, why, taken);
        int in = 0;
        for (int i = 0; i < n; i++) in += taken[i];
        d->writes_redis += (uint64_t)in;
        if (rc != 0) {
            /* Only what Redis did not answer with an id goes to the spool
             * (an XADD whose answer was lost may be in both: its replay's
             * duplicate is absorbed by the store). */
            d->st.redis_fallbacks++;
            char a[24], b[24];
            log_write(LOG_WARN, NULL, "audit dead-letter queue: redis refused the events; they go to the spool",
                      "stream", d->stream[kind], "taken", log_int(a, in), "spooled", log_int(b, n - in), NULL);
        }
        m = 0;
        for (int i = 0; i < n; i++)
            if (!taken[i]) rest[m] = events[i], restl[m++] = lens[i];
    } else {
        for (int i = 0; i < n; i++) rest[i] = events[i], restl[i] = lens[i];
    }
    if (rc != 0) {
        rc = spool_put(d, kind, rest, restl, m, why);
        if (rc == 0) {
            d->writes_spool += (uint64_t)m;
            d->spooled[kind] += m;
        }
    }
    free(taken);
    free(rest);
    free(restl);
    if (rc == 0) {
        d->st.puts++;
        d->st.put_events += (uint64_t)n;
    } else {
        d->st.spool_failures++;
        log_write(LOG_ERROR, NULL, "audit dead-letter queue: the spool failed too; the events stay where they were",
                  "dir", d->dir, "error", cairn_strerror(rc), NULL);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* A batch of the spool's records being replayed: copies of their events. */
typedef struct {
    audit_dlq *d;
    int max, batch, *replayed;
    audit_dlq_send_fn send;
    void *ud;
    buf_t events;              /* the batch's events, back to back */
    size_t offs[10000], lens[10000];
    int n, rc;
    uint64_t pos;              /* the replay position: after the last record sent */
    uint64_t next;             /* after the last record in the batch */
} spool_replay;

/* Sends the batch and moves the position past it. */
static int flush_replay(spool_replay *r) {
    if (r->n == 0) return 0;
    audit_dlq *d = r->d;
    const char *evs[10000];
    for (int i = 0; i < r->n; i++) evs[i] = r->events.data + r->offs[i];
    char reason[REASON_MAX] = "";
    int s = r->send(r->ud, evs, r->lens, r->n, reason, sizeof reason);
    if (s < 0) return s;
    int rc = s == 1 ? audit_dlq_put(d, AUDIT_DLQ_REJECTED, evs, r->lens, r->n, reason) : 0;
    if (rc != 0) return rc;
    pthread_mutex_lock(&d->mu);
    rc = write_pos(d, r->next);
    if (rc == 0) {
        r->pos = r->next;
        d->spooled[AUDIT_DLQ_HELD] -= r->n;
        if (s == 0) {
            *r->replayed += r->n;
            d->st.replayed += (uint64_t)r->n;
        }
    }
    pthread_mutex_unlock(&d->mu);
    r->n = 0;
    buf_reset(&r->events);
    return rc;
}

static int replay_one(void *ud, const audit_record *rec) {
    spool_replay *r = ud;
    const char *why, *ev;
    size_t wl, el;
    if (split_payload(rec, &why, &wl, &ev, &el)) {
        r->offs[r->n] = r->events.len;
        r->lens[r->n] = el;
        buf_append(&r->events, ev, el);
        if (r->events.oom) {
            r->rc = CAIRN_ENOMEM;
            return 1;
        }
        r->n++;
    }
    r->next += AUDIT_RECORD_HEADER + rec->len;
    if (r->n >= r->batch || *r->replayed + r->n >= r->max) {
        r->rc = flush_replay(r);
        if (r->rc != 0 || *r->replayed >= r->max) return 1;
    }
    return 0;
}

/* Replays the spool's held records from its position. */
static int replay_spool(audit_dlq *d, int max, int batch, audit_dlq_send_fn send, void *ud, int *replayed) {
    spool_replay *r = calloc(1, sizeof *r);
    if (!r) return CAIRN_ENOMEM;
    *r = (spool_replay){.d = d, .max = max, .batch = batch, .replayed = replayed, .send = send, .ud = ud};
    buf_init(&r->events);
    pthread_mutex_lock(&d->mu);
    r->pos = read_pos(d);
    struct stat sb;
    if (fstat(d->fd[AUDIT_DLQ_HELD], &sb) == 0 && r->pos > (uint64_t)sb.st_size) r->pos = 0; /* see below */
    r->next = r->pos;
    pthread_mutex_unlock(&d->mu);
    int rc = spool_iter(d, AUDIT_DLQ_HELD, r->pos, replay_one, r, NULL);
    if (rc == 0) rc = r->rc;
    if (rc == 0) rc = flush_replay(r);
    /* Drained: the file starts over, truncated first (a position past the
     * end reads as 0). */
    pthread_mutex_lock(&d->mu);
    if (rc == 0 && r->pos > 0 && fstat(d->fd[AUDIT_DLQ_HELD], &sb) == 0 && (uint64_t)sb.st_size == r->pos) {
        if (ftruncate(d->fd[AUDIT_DLQ_HELD], 0) == 0 && (!d->fsync || fdatasync(d->fd[AUDIT_DLQ_HELD]) == 0))
            rc = write_pos(d, 0);
        else
            rc = CAIRN_EIO;
    }
    pthread_mutex_unlock(&d->mu);
    buf_free(&r->events);
    free(r);
    return rc;
}

/* Replays the stream's entries, oldest first. */
static int replay_redis(audit_dlq *d, int max, int batch, audit_dlq_send_fn send, void *ud, int *replayed) {
    int rc = 0;
    while (rc == 0 && *replayed < max) {
        pthread_mutex_lock(&d->mu);
        redisContext *c = redis_get(d);
        redisReply *rep = c ? redisCommand(c, "XRANGE %s - + COUNT %d", d->stream[AUDIT_DLQ_HELD], batch) : NULL;
        if (!rep && c) redis_drop(d);
        pthread_mutex_unlock(&d->mu);
        if (!rep) return d->redis ? CAIRN_EIO : 0;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
            int type = rep->type;
            freeReplyObject(rep);
            return type == REDIS_REPLY_ARRAY ? 0 : CAIRN_EIO;
        }
        int n = 0;
        const char *evs[rep->elements];
        size_t lens[rep->elements];
        const char *ids[rep->elements];
        for (size_t i = 0; i < rep->elements; i++) {
            redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            ids[n] = e->element[0]->str;
            evs[n] = NULL;
            redisReply *f = e->element[1];
            for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
                if (!strcmp(f->element[k]->str, "event")) {
                    evs[n] = f->element[k + 1]->str;
                    lens[n] = f->element[k + 1]->len;
                }
            if (evs[n]) n++;
        }
        char reason[REASON_MAX] = "";
        int s = n ? send(ud, evs, lens, n, reason, sizeof reason) : 0;
        if (s < 0) rc = s;
        else if (s == 1) rc = audit_dlq_put(d, AUDIT_DLQ_REJECTED, evs, lens, n, reason);
        if (rc == 0) {
            pthread_mutex_lock(&d->mu);
            c = redis_get(d);
            for (int i = 0; c && i < n; i++) {
                redisReply *x = redisCommand(c, "XDEL %s %s", d->stream[AUDIT_DLQ_HELD], ids[i]);
                if (!x) {
                    redis_drop(d);
                    c = NULL;
                    rc = CAIRN_EIO; /* not removed: replayed again later, a duplicate the store absorbs */
                } else {
                    freeReplyObject(x);
                }
            }
            if (!c && rc == 0) rc = CAIRN_EIO;
            if (rc == 0 && s == 0) {
                *replayed += n;
                d->st.replayed += (uint64_t)n;
            }
            pthread_mutex_unlock(&d->mu);
        }
        size_t got = rep->elements;
        freeReplyObject(rep);
        if ((int)got < batch) break;
    }
    return rc;
}

int audit_dlq_replay(audit_dlq *d, int max, int batch, audit_dlq_send_fn send, void *ud, int *replayed) {
    *replayed = 0;
    if (batch < 1) batch = 1;
    if (batch > 10000) batch = 10000;
    int rc = replay_spool(d, max, batch, send, ud, replayed);
    if (rc == 0 && d->redis) rc = replay_redis(d, max, batch, send, ud, replayed);
    return rc;
}

typedef struct {
    int (*fn)(void *ud, const char *event, size_t len, const char *reason, int64_t time_ms);
    void *ud;
    int stop;
} walk_ctx;

static int walk_one(void *ud, const audit_record *rec) {
    walk_ctx *w = ud;
    const char *why, *ev;
    size_t wl, el;
    if (!split_payload(rec, &why, &wl, &ev, &el)) return 0;
    char reason[REASON_MAX];
    snprintf(reason, sizeof reason, "%.*s", (int)wl, why);
    return w->stop = w->fn(w->ud, ev, el, reason, rec->time_ms);
}

int audit_dlq_walk(audit_dlq *d, audit_dlq_kind kind,
                   int (*fn)(void *ud, const char *event, size_t len, const char *reason, int64_t time_ms), void *ud) {
    pthread_mutex_lock(&d->mu);
    uint64_t from = kind == AUDIT_DLQ_HELD ? read_pos(d) : 0;
    pthread_mutex_unlock(&d->mu);
    walk_ctx w = {fn, ud, 0};
    int rc = spool_iter(d, kind, from, walk_one, &w, NULL);
    int stop = w.stop;
    if (rc != 0 || stop || !d->redis) return rc;
    pthread_mutex_lock(&d->mu);
    redisContext *c = redis_get(d);
    redisReply *rep = c ? redisCommand(c, "XRANGE %s - +", d->stream[kind]) : NULL;
    if (!rep && c) redis_drop(d);
    pthread_mutex_unlock(&d->mu);
    if (!rep) return CAIRN_EIO;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements && !stop; i++) {
        redisReply *f = rep->element[i]->type == REDIS_REPLY_ARRAY && rep->element[i]->elements == 2
                            ? rep->element[i]->element[1]
                            : NULL;
        const char *ev = NULL, *why = "";
        size_t el = 0;
        int64_t t = 0;
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            if (!strcmp(f->element[k]->str, "event")) {
                ev = f->element[k + 1]->str;
                el = f->element[k + 1]->len;
            } else if (!strcmp(f->element[k]->str, "reason")) {
                why = f->element[k + 1]->str;
            } else if (!strcmp(f->element[k]->str, "time")) {
                t = strtoll(f->element[k + 1]->str, NULL, 10);
            }
        }
        if (ev) stop = fn(ud, ev, el, why, t);
    }
    freeReplyObject(rep);
    return 0;
}

void audit_dlq_stats_get(audit_dlq *d, audit_dlq_stats *out) {
    pthread_mutex_lock(&d->mu);
    *out = d->st;
    out->held = d->spooled[AUDIT_DLQ_HELD];
    out->rejected = d->spooled[AUDIT_DLQ_REJECTED];
    redisContext *c = redis_get(d);
    for (int k = 0; c && k < 2; k++) {
        redisReply *rep = redisCommand(c, "XLEN %s", d->stream[k]);
        if (!rep) {
            redis_drop(d);
            c = NULL;
        } else {
            if (rep->type == REDIS_REPLY_INTEGER) *(k ? &out->rejected : &out->held) += rep->integer;
            freeReplyObject(rep);
        }
    }
    if (d->redis && !c) out->held = out->rejected = -1;
    pthread_mutex_unlock(&d->mu);
}

void audit_dlq_render_metrics(audit_dlq *d, buf_t *b) {
    if (!d) return;
    audit_dlq_stats s;
    audit_dlq_stats_get(d, &s);
    pthread_mutex_lock(&d->mu);
    unsigned long long wr = d->writes_redis, ws = d->writes_spool;
    pthread_mutex_unlock(&d->mu);
    buf_printf(b,
               "# HELP cairn_audit_dlq_writes_total Audit events written to the dead-letter queue, by where.\n"
               "# TYPE cairn_audit_dlq_writes_total counter\n"
               "cairn_audit_dlq_writes_total{to=\"redis\"} %llu\ncairn_audit_dlq_writes_total{to=\"spool\"} %llu\n"
               "# HELP cairn_audit_dlq_redis_fallbacks_total Dead-letter writes Redis refused, sent to the spool.\n"
               "# TYPE cairn_audit_dlq_redis_fallbacks_total counter\ncairn_audit_dlq_redis_fallbacks_total %llu\n"
               "# HELP cairn_audit_dlq_failures_total Dead-letter writes that failed (the spool too): the events stayed in the journal.\n"
               "# TYPE cairn_audit_dlq_failures_total counter\ncairn_audit_dlq_failures_total %llu\n"
               "# HELP cairn_audit_dlq_replayed_total Audit events the replayer delivered to the store.\n"
               "# TYPE cairn_audit_dlq_replayed_total counter\ncairn_audit_dlq_replayed_total %llu\n"
               "# HELP cairn_audit_dlq_depth Audit events in the dead-letter queue (-1: Redis cannot say).\n"
               "# TYPE cairn_audit_dlq_depth gauge\n"
               "cairn_audit_dlq_depth{kind=\"held\"} %lld\ncairn_audit_dlq_depth{kind=\"rejected\"} %lld\n",
               wr, ws, (unsigned long long)s.redis_fallbacks, (unsigned long long)s.spool_failures,
               (unsigned long long)s.replayed, (long long)s.held, (long long)s.rejected);
}

int audit_dlq_open(const audit_dlq_opts *o, audit_dlq **out) {
    *out = NULL;
    audit_dlq *d = calloc(1, sizeof *d);
    if (!d) return CAIRN_ENOMEM;
    pthread_mutex_init(&d->mu, NULL);
    d->fd[0] = d->fd[1] = -1;
    snprintf(d->dir, sizeof d->dir, "%s", o->dir);
    const char *stream = o->stream && o->stream[0] ? o->stream : "cairn:audit:dlq";
    snprintf(d->stream[AUDIT_DLQ_HELD], sizeof d->stream[0], "%s", stream);
    snprintf(d->stream[AUDIT_DLQ_REJECTED], sizeof d->stream[1], "%s:rejected", stream);
    d->timeout_ms = o->redis_timeout_ms > 0 ? o->redis_timeout_ms : 250;
    d->fsync = o->fsync;
    int rc = 0;
    if (o->redis_url && o->redis_url[0]) {
        char why[200];
        rc = redis_target_parse(o->redis_url, &d->target, why, sizeof why);
        if (rc != 0) log_write(LOG_ERROR, NULL, "audit dead-letter queue: bad redis_url", "error", why, NULL);
        d->redis = rc == 0;
    }
    if (rc == 0 && mkdir(d->dir, 0700) != 0 && errno != EEXIST) rc = CAIRN_EIO;
    for (int k = 0; rc == 0 && k < 2; k++) {
        char path[1100];
        spool_path(d, k, "log", path, sizeof path);
        d->fd[k] = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (d->fd[k] < 0) rc = CAIRN_EIO;
    }
    if (rc != 0) {
        if (rc == CAIRN_EIO) log_write(LOG_ERROR, NULL, "audit dead-letter queue: cannot open its spool", "dir", d->dir, NULL);
        audit_dlq_close(d);
        return rc;
    }
    /* What the spool holds, and the sequences go on from its last records. */
    for (int k = 0; k < 2; k++) {
        pthread_mutex_lock(&d->mu);
        uint64_t from = k == AUDIT_DLQ_HELD ? read_pos(d) : 0;
        struct stat sb;
        if (fstat(d->fd[k], &sb) == 0 && from > (uint64_t)sb.st_size) from = 0;
        pthread_mutex_unlock(&d->mu);
        uint64_t all = 0;
        rc = spool_iter(d, k, from, count_one, &d->spooled[k], NULL);
        if (rc == 0) rc = spool_iter(d, k, 0, count_one, &(int64_t){0}, &all);
        d->seq[k] = all; /* unique and growing is all a sequence needs here */
        if (rc != 0) {
            audit_dlq_close(d);
            return rc;
        }
    }
    *out = d;
    return 0;
}

void audit_dlq_close(audit_dlq *d) {
    if (!d) return;
    for (int k = 0; k < 2; k++)
        if (d->fd[k] >= 0) close(d->fd[k]);
    redis_drop(d);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
