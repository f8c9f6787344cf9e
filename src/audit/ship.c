/*
 * ship.c — the audit shipper (ship.h): one thread that drains the journal
 * into the audit store, with retries, a breaker, the dead-letter queue and
 * its replayer.
 *
 * The loop keeps one pending batch: the records read after the cursor of
 * the last commit, at most batch_size of them, copied.  It reads more while
 * the batch is short, sends it when it is full or its oldest record is
 * flush_interval_ms old (the record's append time, so a restart ships old
 * records at once), and waits on the journal's group-commit signal in
 * between, never longer than the flush deadline: the timer fires on time
 * however busy the journal is, because a busy journal fills the batch.
 *
 * deliver() is where a batch's fate is decided: stored (embedded insert or
 * POST), split on 400/413 down to the bad events (rejected in the DLQ),
 * retried with backoff on transient failures, or held in the DLQ.  Only
 * when deliver() says every event is in one of those places is the cursor
 * committed.
 */
#include "audit/audit.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"

#define BACKOFF_BASE_DEFAULT 100
#define BACKOFF_MAX_DEFAULT 10000
#define REPLAY_INTERVAL_DEFAULT 1000
#define IDLE_WAIT_MS 100       /* the longest wait on the journal: close and flush are seen this fast */
#define REASON_MAX 400

static const double flush_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double delay_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30, 60, 300};
#define NFLUSH (sizeof flush_buckets / sizeof flush_buckets[0])
#define NDELAY (sizeof delay_buckets / sizeof delay_buckets[0])

typedef struct {
    buf_t data;                /* payloads back to back */
    size_t *offs, *lens;
    int64_t first_ms;          /* append time of the first record (wall clock) */
    int64_t first_seen_ns;     /* when the shipper read it (monotonic: a clock step cannot delay a batch) */
    int n;
    audit_cursor next;         /* the cursor after the last record */
} pending;

struct audit_shipper {
    audit_shipper_opts o;
    char *url, *events_url, *host, *access_key, *secret_key, *region;
    audit_dlq *dlq;
    http_client *hc;
    pthread_t th;
    unsigned seed;
    pending p;
    buf_t body, resp;

    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t cv;         /* stop, flush requests, commits */
    bool stopping;
    int64_t deadline_ns;       /* monotonic: give up sending then (stopping) */
    uint64_t flush_upto;       /* a flush wants everything up to this sequence committed */
    bool done;                 /* the thread has ended */
    audit_shipper_stats st;
    uint64_t flush_hist[NFLUSH + 1], delay_hist[NDELAY + 1];
    double flush_sum, delay_sum;
    uint64_t flush_count, delay_count;
};

typedef enum { SENT = 0, REJECTED, REFUSED, TRANSIENT } send_result;

static int64_t mono_ns(void) { return time_mono_ns(); }

/* ---- sending one batch ------------------------------------------------------------------- */

static void copy_reason(char *reason, size_t rl, const char *what, const char *detail, size_t dlen) {
    size_t n = dlen;
    while (n > 0 && (detail[n - 1] == '\n' || detail[n - 1] == '\r')) n--;
    snprintf(reason, rl, "%s%s%.*s", what, dlen ? ": " : "", (int)(n > 300 ? 300 : n), detail);
    for (char *c = reason; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

static send_result send_embedded(audit_shipper *s, const char *const *evs, const size_t *lens, int n,
                                 uint64_t *dups, int *cause, char *reason, size_t rl) {
    audit_events **parsed = calloc((size_t)n, sizeof *parsed);
    meta_audit_event *list = calloc((size_t)n, sizeof *list);
    send_result r = SENT;
    if (!parsed || !list) {
        *cause = SHIP_CAUSE_DB;
        copy_reason(reason, rl, "out of memory", "", 0);
        r = TRANSIENT;
    }
    for (int i = 0; r == SENT && i < n; i++) {
        audit_error err = {0};
        int rc = audit_event_parse(evs[i], lens[i], &parsed[i], &err);
        if (rc == CAIRN_ENOMEM) {
            *cause = SHIP_CAUSE_DB;
            copy_reason(reason, rl, "out of memory", "", 0);
            r = TRANSIENT;
        } else if (rc != 0) {
            char d[300];
            int dl = snprintf(d, sizeof d, "{\"error\":\"invalid event\",\"field\":\"%s\",\"reason\":\"%s\"}", err.field,
                              err.reason);
            copy_reason(reason, rl, "invalid event", d, (size_t)(dl < (int)sizeof d ? dl : (int)sizeof d - 1));
            r = REJECTED;
        } else {
            list[i] = audit_events_list(parsed[i])[0];
        }
    }
    if (r == SENT) {
        int inserted = 0;
        int rc = meta_audit_insert(s->o.meta, list, n, &inserted);
        if (rc == 0) {
            *dups = (uint64_t)(n - inserted);
        } else if (rc == CAIRN_EINVAL) {
            copy_reason(reason, rl, "the database refused the event", cairn_strerror(rc), strlen(cairn_strerror(rc)));
            r = REJECTED;
        } else {
            *cause = SHIP_CAUSE_DB;
            copy_reason(reason, rl, "the database failed", cairn_strerror(rc), strlen(cairn_strerror(rc)));
            r = TRANSIENT;
        }
    }
    for (int i = 0; parsed && i < n; i++) audit_events_free(parsed[i]);
    free(parsed);
    free(list);
    return r;
}

static void sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
    hex_encode(md, 32, out);
    out[64] = '\0';
}

static send_result send_remote(audit_shipper *s, const char *const *evs, const size_t *lens, int n, uint64_t *dups,
                               int *cause, char *reason, size_t rl) {
    buf_t *b = &s->body;
    buf_reset(b);
    buf_puts(b, "{\"events\":[");
    for (int i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        buf_append(b, evs[i], lens[i]);
    }
    buf_puts(b, "]}");
    if (b->oom) {
        *cause = SHIP_CAUSE_CONNECT;
        copy_reason(reason, rl, "out of memory", "", 0);
        return TRANSIENT;
    }
    char hash[65], amz_date[17];
    sha256_hex(b->data, b->len, hash);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    auth_header hdrs[3] = {{"host", 4, s->host, strlen(s->host)},
                           {"x-amz-content-sha256", 20, hash, 64},
                           {"x-amz-date", 10, amz_date, 16}};
    /* The canonical path: the URL's own path (if any) then /audit/v1/events. */
    const char *after_scheme = strstr(s->events_url, "://") + 3;
    const char *raw_path = strchr(after_scheme, '/');
    sigv4_request sr = {"POST", raw_path, "", hdrs, 3};
    buf_t authz;
    buf_init(&authz);
    int rc = sigv4_sign(&sr, s->access_key, s->secret_key, s->region, "s3", amz_date,
                        "host;x-amz-content-sha256;x-amz-date", hash, &authz);
    if (rc != 0 || authz.oom) {
        buf_free(&authz);
        *cause = SHIP_CAUSE_CONNECT;
        copy_reason(reason, rl, "cannot sign the request", "", 0);
        return TRANSIENT;
    }
    char h_host[320], h_date[40], h_sha[100];
    snprintf(h_host, sizeof h_host, "Host: %s", s->host);
    snprintf(h_date, sizeof h_date, "x-amz-date: %s", amz_date);
    snprintf(h_sha, sizeof h_sha, "x-amz-content-sha256: %s", hash);
    buf_t h_auth;
    buf_init(&h_auth);
    buf_puts(&h_auth, "Authorization: ");
    buf_append(&h_auth, authz.data, authz.len);
    buf_putc(&h_auth, '\0');
    buf_free(&authz);
    const char *headers[] = {h_host, h_date, h_sha, h_auth.data, NULL};
    long status = 0;
    rc = h_auth.oom ? CAIRN_ENOMEM
                    : http_client_post(s->hc, s->events_url, "application/json", headers, b->data, b->len, &status,
                                       &s->resp);
    buf_free(&h_auth);
    const char *rt = s->resp.data ? s->resp.data : "";
    size_t rlen = s->resp.data ? s->resp.len : 0;
    if (rc == CAIRN_ETIMEDOUT) {
        *cause = SHIP_CAUSE_TIMEOUT;
        copy_reason(reason, rl, "timed out", "", 0);
        return TRANSIENT;
    }
    if (rc != 0) {
        *cause = SHIP_CAUSE_CONNECT;
        copy_reason(reason, rl, "cannot reach the audit store", cairn_strerror(rc), strlen(cairn_strerror(rc)));
        return TRANSIENT;
    }
    char what[64];
    snprintf(what, sizeof what, "HTTP %ld", status);
    if (status == 200) {
        const char *d = rlen ? strstr(rt, "\"duplicates\":") : NULL;
        if (d) *dups = strtoull(d + 13, NULL, 10);
        return SENT;
    }
    copy_reason(reason, rl, what, rt, rlen);
    if (status >= 500) {
        *cause = SHIP_CAUSE_5XX;
        return TRANSIENT;
    }
    if (status == 400 || status == 413) return REJECTED;
    return REFUSED; /* 403, 404, ...: never retried */
}

static send_result send_once(audit_shipper *s, const char *const *evs, const size_t *lens, int n, uint64_t *dups,
                             int *cause, char *reason, size_t rl) {
    *dups = 0;
    return s->url ? send_remote(s, evs, lens, n, dups, cause, reason, rl)
                  : send_embedded(s, evs, lens, n, dups, cause, reason, rl);
}

/* ---- waiting --------------------------------------------------------------------------------- */

/* Sleeps ms (s->mu not held) unless close's deadline would pass first:
 * false then (the caller gives up and leaves its events in the journal). */
static bool sleep_unless_deadline(audit_shipper *s, int64_t ms) {
    int64_t until = mono_ns() + ms * 1000000;
    pthread_mutex_lock(&s->mu);
    bool ok = true;
    for (;;) {
        if (s->stopping && until > s->deadline_ns) {
            ok = false;
            break;
        }
        int64_t now = mono_ns();
        if (now >= until) break;
        int64_t step = until - now;
        if (step > (int64_t)IDLE_WAIT_MS * 1000000) step = (int64_t)IDLE_WAIT_MS * 1000000;
        struct timespec ts = time_deadline(CLOCK_MONOTONIC, step / 1000000 + 1);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
static int64_t backoff_ms(audit_shipper *s, int attempt) {
    return backoff_full_jitter(attempt, s->o.backoff_base_ms, s->o.backoff_max_ms, &s->seed);
}

static bool breaker_open(audit_shipper *s) {
    pthread_mutex_lock(&s->mu);
    bool b = s->st.breaker;
    pthread_mutex_unlock(&s->mu);
    return b;
}

static void set_breaker(audit_shipper *s, int open) {
    pthread_mutex_lock(&s->mu);
    int was = s->st.breaker;
    s->st.breaker = open;
    pthread_mutex_unlock(&s->mu);
    if (was != open)
        log_write(open ? LOG_WARN : LOG_INFO, NULL,
                  open ? "audit shipper: the store is unavailable; batches go to the dead-letter queue"
                       : "audit shipper: the store takes events again",
                  NULL);
}

/* ---- deciding a batch's fate ---------------------------------------------------------------- */

typedef struct {
    int retries;               /* attempts after the first, at most */
    bool hold;                 /* on a last failure: put held in the DLQ (else: return the error) */
} deliver_mode;

static int dlq_put(audit_shipper *s, audit_dlq_kind kind, const char *const *evs, const size_t *lens, int n,
                   const char *reason) {
    int rc = audit_dlq_put(s->dlq, kind, evs, lens, n, reason);
    pthread_mutex_lock(&s->mu);
    if (rc == 0) {
        if (kind == AUDIT_DLQ_HELD) s->st.dlq_held += (uint64_t)n;
        else s->st.dlq_rejected += (uint64_t)n;
    } else {
        s->st.dlq_failures++;
    }
    pthread_mutex_unlock(&s->mu);
    char c[24];
    if (rc != 0)
        log_write(LOG_ERROR, NULL, "audit shipper: the dead-letter queue refused events; they stay in the journal",
                  "events", log_int(c, n), "error", cairn_strerror(rc), NULL);
    else
        log_write(kind == AUDIT_DLQ_HELD ? LOG_WARN : LOG_ERROR, NULL,
                  kind == AUDIT_DLQ_HELD ? "audit events held in the dead-letter queue"
                                         : "audit events rejected by the store, kept in the dead-letter queue",
                  "events", log_int(c, n), "reason", reason, NULL);
    return rc;
}

/* Puts every event of the batch in the store or the DLQ.  0 when done;
 * CAIRN_EIO (a DLQ put failed), CAIRN_ETIMEDOUT (close's deadline), or,
 * without m.hold, CAIRN_EBUSY (the store cannot take them now). */
static int deliver(audit_shipper *s, const char *const *evs, const size_t *lens, int n, deliver_mode m) {
    for (int attempt = 0;; attempt++) {
        char reason[REASON_MAX] = "";
        uint64_t dups = 0;
        int cause = SHIP_CAUSE_CONNECT;
        send_result r = send_once(s, evs, lens, n, &dups, &cause, reason, sizeof reason);
        if (r == SENT) {
            pthread_mutex_lock(&s->mu);
            s->st.events_sent += (uint64_t)n;
            s->st.events_duplicate += dups;
            pthread_mutex_unlock(&s->mu);
            set_breaker(s, 0);
            return 0;
        }
        if (r == REJECTED) {
            /* The store answered: it is up.  Never retried: split until the
             * bad events stand alone. */
            set_breaker(s, 0);
            if (n == 1) return dlq_put(s, AUDIT_DLQ_REJECTED, evs, lens, 1, reason);
            pthread_mutex_lock(&s->mu);
            s->st.splits++;
            pthread_mutex_unlock(&s->mu);
            int h = n / 2;
            int rc = deliver(s, evs, lens, h, m);
            return rc ? rc : deliver(s, evs + h, lens + h, n - h, m);
        }
        if (r == REFUSED) {
            char st[24];
            log_write(LOG_ERROR, NULL, "audit shipper: the store refused the batch (not retried)", "events",
                      log_int(st, n), "reason", reason, NULL);
            set_breaker(s, 1);
            return m.hold ? dlq_put(s, AUDIT_DLQ_HELD, evs, lens, n, reason) : CAIRN_EBUSY;
        }
        /* TRANSIENT */
        if (attempt >= m.retries) {
            if (m.hold) {
                char c[24];
                log_write(LOG_WARN, NULL, "audit shipper: batch failed after its retries", "events", log_int(c, n),
                          "reason", reason, NULL);
                set_breaker(s, 1);
                return dlq_put(s, AUDIT_DLQ_HELD, evs, lens, n, reason);
            }
            return CAIRN_EBUSY;
        }
        pthread_mutex_lock(&s->mu);
        s->st.retries[cause]++;
        pthread_mutex_unlock(&s->mu);
        if (!sleep_unless_deadline(s, backoff_ms(s, attempt))) return CAIRN_ETIMEDOUT;
    }
}

/* The replayer's sender (audit_dlq_replay): no retries of its own (the
 * replay is tried again later), 400s split as for new batches. */
static int replay_send(void *ud, const char *const *events, const size_t *lens, int n, char *reason, size_t rl) {
    (void)reason; /* rejected events are put in the DLQ by deliver itself, with their reasons */
    (void)rl;
    deliver_mode m = {0, false};
    return deliver(ud, events, lens, n, m);
}

/* ---- the pending batch ----------------------------------------------------------------------- */

static void pending_clear(pending *p) {
    buf_reset(&p->data);
    p->n = 0;
    p->first_ms = 0;
}

/* Reads more records after p->next.  0 with *got (how many); CAIRN_E*. */
static int pending_fill(audit_shipper *s, int *got) {
    pending *p = &s->p;
    *got = 0;
    int want = s->o.batch_size - p->n;
    if (want <= 0) return 0;
    audit_batch b;
    int rc = audit_journal_read(s->o.journal, p->next, want, &b);
    if (rc == 0) {
        for (int i = 0; i < b.n; i++) {
            if (p->n == 0) {
                p->first_ms = b.recs[i].time_ms;
                p->first_seen_ns = mono_ns();
            }
            p->offs[p->n] = p->data.len;
            p->lens[p->n] = b.recs[i].len;
            buf_append(&p->data, b.recs[i].payload, b.recs[i].len);
            p->n++;
        }
        if (p->data.oom) rc = CAIRN_ENOMEM;
        else p->next = b.next;
        *got = b.n;
    }
    audit_batch_free(&b);
    if (rc != 0) {
        pending_clear(p); /* p->next is untouched: read again */
        log_write(LOG_ERROR, NULL, "audit shipper: cannot read the journal", "error", cairn_strerror(rc), NULL);
    }
    return rc;
}

static void observe(uint64_t *hist, const double *bounds, size_t nb, double *sum, uint64_t *count, double v) {
    size_t b = 0;
    while (b < nb && v > bounds[b]) b++;
    hist[b]++;
    *sum += v;
    (*count)++;
}

/* Sends the pending batch and commits.  0, or an error (the batch stays
 * pending: sent again after a backoff). */
static int pending_ship(audit_shipper *s) {
    pending *p = &s->p;
    int64_t t0 = mono_ns();
    const char **evs = malloc((size_t)p->n * sizeof *evs);
    if (!evs) return CAIRN_ENOMEM;
    for (int i = 0; i < p->n; i++) evs[i] = p->data.data + p->offs[i];
    deliver_mode m = {breaker_open(s) ? 0 : s->o.max_retries, true};
    int rc = deliver(s, evs, p->lens, p->n, m);
    free(evs);
    if (rc != 0) return rc;
    int crc = audit_journal_commit(s->o.journal, p->next);
    if (crc != 0)
        log_write(LOG_ERROR, NULL, "audit shipper: cannot commit the journal cursor (events may be sent again)",
                  "error", cairn_strerror(crc), NULL);
    double secs = (double)(mono_ns() - t0) / 1e9;
    double delay = (double)(time_now_ms() - p->first_ms) / 1e3;
    pthread_mutex_lock(&s->mu);
    s->st.batches_sent++;
    if (crc == 0) s->st.commits++;
    s->st.committed_seq = p->next.seq;
    observe(s->flush_hist, flush_buckets, NFLUSH, &s->flush_sum, &s->flush_count, secs);
    observe(s->delay_hist, delay_buckets, NDELAY, &s->delay_sum, &s->delay_count, delay < 0 ? 0 : delay);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pending_clear(p);
    return 0;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void replay(audit_shipper *s) {
    audit_dlq_stats ds;
    audit_dlq_stats_get(s->dlq, &ds);
    if (ds.held == 0) return;
    int replayed = 0;
    int rc = audit_dlq_replay(s->dlq, 10 * s->o.batch_size, s->o.batch_size, replay_send, s, &replayed);
    if (replayed) {
        pthread_mutex_lock(&s->mu);
        s->st.replayed += (uint64_t)replayed;
        pthread_mutex_unlock(&s->mu);
        char c[24];
        log_write(LOG_INFO, NULL, "audit shipper: dead-letter events replayed into the store", "events",
                  log_int(c, replayed), NULL);
    }
    (void)rc; /* what was not sent stays held: tried again at the next interval */
}

/* Milliseconds until the pending batch is due by the flush interval: from
 * its oldest record's append time (a restart ships old records at once), or
 * from when the shipper first saw it, whichever comes first. */
static int64_t flush_left_ms(audit_shipper *s) {
    int64_t by_wall = s->p.first_ms + s->o.flush_interval_ms - time_now_ms();
    int64_t by_mono = (s->p.first_seen_ns - mono_ns()) / 1000000 + s->o.flush_interval_ms;
    return by_wall < by_mono ? by_wall : by_mono;
}

/* The journal's overflow spool (audit_overflow: spool): its sealed files
 * are delivered as batches are (store, or DLQ), then deleted. */
static int spool_send(void *ud, const audit_record *recs, int n) {
    audit_shipper *s = ud;
    const char **evs = malloc((size_t)n * sizeof *evs);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    int rc = evs && lens ? 0 : CAIRN_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++) {
        evs[i] = recs[i].payload;
        lens[i] = recs[i].len;
    }
    deliver_mode m = {breaker_open(s) ? 0 : s->o.max_retries, true};
    if (rc == 0) rc = deliver(s, evs, lens, n, m);
    free(evs);
    free(lens);
    return rc;
}

static void drain_spool(audit_shipper *s) {
    uint64_t drained = 0;
    int rc = audit_journal_spool_drain(s->o.journal, s->o.batch_size, spool_send, s, &drained);
    if (drained) {
        pthread_mutex_lock(&s->mu);
        s->st.spool_drained += drained;
        pthread_mutex_unlock(&s->mu);
        char c[24];
        log_write(LOG_INFO, NULL, "audit shipper: overflow spool drained", "events", log_int(c, (long long)drained),
                  NULL);
    }
    if (rc != 0 && rc != CAIRN_ETIMEDOUT)
        log_write(LOG_WARN, NULL, "audit shipper: the overflow spool is not drained yet", "error", cairn_strerror(rc),
                  NULL);
}

static void *ship_main(void *arg) {
    pthread_setname_np(pthread_self(), "audit-ship");
    audit_shipper *s = arg;
    audit_journal *j = s->o.journal;
    int64_t next_replay = 0;
    int fails = 0;
    uint64_t seen = 0;         /* the last durable sequence a wait returned */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        int64_t deadline = s->deadline_ns;
        bool flush = s->flush_upto > s->st.committed_seq;
        pthread_mutex_unlock(&s->mu);
        if (stopping && mono_ns() >= deadline) break;

        int got = 0;
        int rc = pending_fill(s, &got);
        bool due = s->p.n > 0 && (s->p.n >= s->o.batch_size || flush_left_ms(s) <= 0 || stopping || flush);
        if (rc == 0 && due) {
            rc = pending_ship(s);
            if (rc == 0) {
                fails = 0;
                continue;
            }
        }
        if (rc != 0) {
            /* A read, a DLQ put or close's deadline: back off, try again. */
            if (!sleep_unless_deadline(s, backoff_ms(s, fails < 8 ? fails++ : fails))) break;
            continue;
        }
        if (s->p.n == 0 && got == 0) {
            /* Nothing pending: the journal is drained up to what is durable. */
            if (stopping) {
                if (!breaker_open(s)) {
                    replay(s);
                    drain_spool(s);
                }
                break;
            }
        }
        if (mono_ns() >= next_replay) {
            replay(s); /* while the breaker is open this is the probe */
            if (s->p.n == 0 && !breaker_open(s)) drain_spool(s);
            next_replay = mono_ns() + (int64_t)s->o.replay_interval_ms * 1000000;
            continue;
        }
        if (got > 0) continue; /* maybe more durable records: read again before waiting */
        int64_t wait = IDLE_WAIT_MS;
        if (s->p.n > 0) {
            int64_t left = flush_left_ms(s);
            if (left < wait) wait = left < 1 ? 1 : left;
        }
        /* After a read that found nothing, wait for a sequence past the one
         * the last wait saw: a durable record the reader skips (corrupt)
         * must not turn this into a busy loop. */
        seen = audit_journal_wait(j, seen > s->p.next.seq ? seen : s->p.next.seq, (int)wait);
    }
    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- life -------------------------------------------------------------------------------------- */

/* Splits url into the events URL and the Host header ("host[:port]"). */
static int parse_url(audit_shipper *s, const char *url) {
    const char *hp = !strncmp(url, "http://", 7) ? url + 7 : !strncmp(url, "https://", 8) ? url + 8 : NULL;
    if (!hp || !*hp || *hp == '/') return CAIRN_EINVAL;
    size_t hl = strcspn(hp, "/?#");
    if (hp[hl] == '?' || hp[hl] == '#') return CAIRN_EINVAL;
    size_t ul = strlen(url);
    while (ul > (size_t)(hp - url) + hl && url[ul - 1] == '/') ul--; /* no trailing slash before /audit/v1 */
    buf_t b;
    buf_init(&b);
    buf_append(&b, url, ul);
    buf_puts(&b, AUDIT_EVENTS_PATH);
    buf_putc(&b, '\0');
    if (b.oom) return CAIRN_ENOMEM;
    s->events_url = b.data;
    s->host = strndup(hp, hl);
    s->url = strndup(url, ul);
    return s->host && s->url ? 0 : CAIRN_ENOMEM;
}

static void shipper_free(audit_shipper *s) {
    if (!s) return;
    if (s->dlq) audit_dlq_close(s->dlq);
    http_client_free(s->hc);
    free(s->url);
    free(s->events_url);
    free(s->host);
    if (s->secret_key) explicit_bzero(s->secret_key, strlen(s->secret_key));
    free(s->access_key);
    free(s->secret_key);
    free(s->region);
    buf_free(&s->p.data);
    free(s->p.offs);
    free(s->p.lens);
    buf_free(&s->body);
    buf_free(&s->resp);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int audit_shipper_start(const audit_shipper_opts *o, audit_shipper **out) {
    *out = NULL;
    bool remote = o->url && o->url[0];
    if (!o->journal || o->batch_size < 1 || o->batch_size > AUDIT_BATCH_MAX || o->flush_interval_ms < 1 ||
        o->max_retries < 0 || (!remote && !o->meta) ||
        (remote && (!o->access_key || !o->access_key[0] || !o->secret_key || !o->secret_key[0] || o->timeout_ms < 1)))
        return CAIRN_EINVAL;
    audit_shipper *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    s->o = *o;
    if (!s->o.backoff_base_ms) s->o.backoff_base_ms = BACKOFF_BASE_DEFAULT;
    if (!s->o.backoff_max_ms) s->o.backoff_max_ms = BACKOFF_MAX_DEFAULT;
    if (s->o.backoff_max_ms < s->o.backoff_base_ms) s->o.backoff_max_ms = s->o.backoff_base_ms;
    if (!s->o.replay_interval_ms) s->o.replay_interval_ms = REPLAY_INTERVAL_DEFAULT;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    buf_init(&s->p.data);
    buf_init(&s->body);
    buf_init(&s->resp);
    rand_bytes(&s->seed, sizeof s->seed);
    s->p.offs = calloc((size_t)o->batch_size, sizeof *s->p.offs);
    s->p.lens = calloc((size_t)o->batch_size, sizeof *s->p.lens);
    int rc = s->p.offs && s->p.lens ? 0 : CAIRN_ENOMEM;
    if (rc == 0 && remote) {
        rc = parse_url(s, o->url);
        s->access_key = strdup(o->access_key);
        s->secret_key = strdup(o->secret_key);
        s->region = strdup(o->region && o->region[0] ? o->region : "us-east-1");
        if (rc == 0 && (!s->access_key || !s->secret_key || !s->region)) rc = CAIRN_ENOMEM;
        if (rc == 0) rc = http_client_new(o->timeout_ms, o->timeout_ms, 64 * 1024, &s->hc);
        if (rc == 0) rc = http_client_set_ca(s->hc, o->tls_ca);
    }
    s->o.tls_ca = NULL;
    s->o.url = NULL; /* the copies above are used */
    s->o.access_key = s->o.secret_key = s->o.region = NULL;
    if (rc == 0) rc = audit_dlq_open(&o->dlq, &s->dlq);
    s->o.dlq.dir = s->o.dlq.redis_url = s->o.dlq.stream = NULL;
    s->p.next = audit_journal_shipped(o->journal);
    s->st.committed_seq = s->p.next.seq;
    if (rc == 0 && pthread_create(&s->th, NULL, ship_main, s) != 0) rc = CAIRN_EIO;
    if (rc != 0) {
        shipper_free(s);
        return rc;
    }
    char n[24];
    audit_journal_stats js;
    audit_journal_get_stats(o->journal, &js);
    log_write(LOG_INFO, NULL, "audit shipper started", "mode", remote ? "remote" : "embedded", "pending_events",
              log_int(n, (long long)js.depth), NULL);
    *out = s;
    return 0;
}

int audit_shipper_flush(audit_shipper *s, int timeout_ms) {
    audit_journal_sync(s->o.journal);
    uint64_t target = audit_journal_durable_seq(s->o.journal);
    struct timespec ts = time_deadline(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&s->mu);
    if (target > s->flush_upto) s->flush_upto = target;
    int rc = 0;
    while (s->st.committed_seq < target && !s->done)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) {
            rc = CAIRN_ETIMEDOUT;
            break;
        }
    if (s->st.committed_seq < target) rc = CAIRN_ETIMEDOUT;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int64_t audit_shipper_close(audit_shipper *s, int deadline_ms) {
    if (!s) return 0;
    audit_journal_sync(s->o.journal); /* reads' events queued by the last requests */
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->deadline_ns = mono_ns() + (int64_t)deadline_ms * 1000000;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    audit_journal_stats js;
    audit_journal_get_stats(s->o.journal, &js);
    audit_dlq_stats ds;
    audit_dlq_stats_get(s->dlq, &ds);
    char a[24], b[24], c[24];
    log_write(js.depth ? LOG_WARN : LOG_INFO, NULL, "audit shipper closed", "pending_events",
              log_int(a, (long long)js.depth), "dlq_held", log_int(b, (long long)ds.held), "dlq_rejected",
              log_int(c, (long long)ds.rejected), NULL);
    shipper_free(s);
    return js.depth;
}

void audit_shipper_stats_get(audit_shipper *s, audit_shipper_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

audit_dlq *audit_shipper_dlq(audit_shipper *s) { return s->dlq; }

static void render_hist(buf_t *b, const char *name, const char *help, const uint64_t *hist, const double *bounds,
                        size_t nb, double sum, uint64_t count) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += hist[i];
        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    cum += hist[nb];
    buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name, sum,
               name, (unsigned long long)count);
}

void audit_shipper_render_metrics(audit_shipper *s, buf_t *b) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    audit_shipper_stats st = s->st;
    uint64_t fh[NFLUSH + 1], dh[NDELAY + 1];
    memcpy(fh, s->flush_hist, sizeof fh);
    memcpy(dh, s->delay_hist, sizeof dh);
    double fs = s->flush_sum, ds = s->delay_sum;
    uint64_t fc = s->flush_count, dc = s->delay_count;
    pthread_mutex_unlock(&s->mu);
    buf_printf(b,
               "# HELP cairn_audit_batches_sent_total Audit batches the store took.\n"
               "# TYPE cairn_audit_batches_sent_total counter\ncairn_audit_batches_sent_total %llu\n"
               "# HELP cairn_audit_events_sent_total Audit events the store took (new and already stored).\n"
               "# TYPE cairn_audit_events_sent_total counter\ncairn_audit_events_sent_total %llu\n"
               "# HELP cairn_audit_events_duplicate_total Audit events the store already had (sent again).\n"
               "# TYPE cairn_audit_events_duplicate_total counter\ncairn_audit_events_duplicate_total %llu\n",
               (unsigned long long)st.batches_sent, (unsigned long long)st.events_sent,
               (unsigned long long)st.events_duplicate);
    static const char *const causes[] = {"5xx", "timeout", "connect", "db"};
    buf_puts(b, "# HELP cairn_audit_retries_total Audit batch retries, by cause.\n"
                "# TYPE cairn_audit_retries_total counter\n");
    for (int i = 0; i < 4; i++)
        buf_printf(b, "cairn_audit_retries_total{cause=\"%s\"} %llu\n", causes[i], (unsigned long long)st.retries[i]);
    buf_printf(b,
               "# HELP cairn_audit_dlq_events_total Audit events the shipper put in the dead-letter queue, by kind.\n"
               "# TYPE cairn_audit_dlq_events_total counter\n"
               "cairn_audit_dlq_events_total{kind=\"held\"} %llu\ncairn_audit_dlq_events_total{kind=\"rejected\"} %llu\n"
               "# HELP cairn_audit_dlq_put_failures_total Dead-letter puts that failed (the events stayed in the journal).\n"
               "# TYPE cairn_audit_dlq_put_failures_total counter\ncairn_audit_dlq_put_failures_total %llu\n"
               "# HELP cairn_audit_batch_splits_total Audit batches split after the store refused them (400, 413).\n"
               "# TYPE cairn_audit_batch_splits_total counter\ncairn_audit_batch_splits_total %llu\n"
               "# HELP cairn_audit_spool_drained_total Audit events shipped from the journal's overflow spool.\n"
               "# TYPE cairn_audit_spool_drained_total counter\ncairn_audit_spool_drained_total %llu\n"
               "# HELP cairn_audit_breaker_open Whether the shipper treats the store as down (1).\n"
               "# TYPE cairn_audit_breaker_open gauge\ncairn_audit_breaker_open %d\n",
               (unsigned long long)st.dlq_held, (unsigned long long)st.dlq_rejected,
               (unsigned long long)st.dlq_failures, (unsigned long long)st.splits,
               (unsigned long long)st.spool_drained, st.breaker);
    render_hist(b, "cairn_audit_flush_seconds", "Time to deliver and commit one audit batch.", fh, flush_buckets,
                NFLUSH, fs, fc);
    render_hist(b, "cairn_audit_ship_delay_seconds",
                "Age of a batch's oldest audit event when the batch was committed.", dh, delay_buckets, NDELAY, ds,
                dc);
    audit_dlq_render_metrics(s->dlq, b);
}
