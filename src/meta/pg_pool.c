/*
 * pg_pool.c — the PostgreSQL backend's connection pool.
 *
 * A connection is checked out for one meta call (pg_acquire) and given back
 * when the call ends (pg_release), never across a callback, so max_conns
 * bounds how many calls run against the database at once.  The idle list is
 * last-in first-out: the connection used most recently goes out next, which
 * keeps the working set small and lets the others age into idle eviction.
 *
 * Checkout.  An idle connection is checked before it is handed out: libpq
 * must still think it is up, and nothing may have arrived on its socket
 * while it sat idle (a server that terminated the session says so, then
 * closes: the socket turns readable).  One idle longer than health_check_ms
 * also makes a round trip (an empty query).  A connection that fails either
 * check, or is past its lifetime, is replaced by a new one in the same slot.
 * With every connection in use and max_conns open, the caller waits on a
 * condition variable up to acquire_timeout_ms and then gets CAIRN_EBUSY
 * (the S3 layer answers 503 SlowDown): a stalled database turns into quick
 * refusals, never into a pile of threads blocked for ever.
 *
 * Lifetimes.  Each connection's lifetime is max_lifetime_ms shortened by a
 * random part of lifetime_jitter_pct, so connections opened together (at
 * start, after an outage) are not all replaced in the same second.
 *
 * Maintenance.  A thread wakes a few times per idle timeout (at most once a
 * second): it closes idle connections past idle_timeout_ms while more than
 * min_conns are open, closes idle ones past their lifetime, and opens
 * connections up to min_conns — which is also how the pool comes back by
 * itself after the database was down.  A failed connect is logged once per
 * outage, and the recovery once.
 *
 * Long holds.  pg_release measures how long the connection was out; past
 * long_hold_ms it logs the call site that held it (function and line, which
 * the pg_acquire macro records) and counts it.
 *
 * Every counter is in pg_pool_stats (pg_pool_stats_get), for metrics.
 * Thread-safety: everything here is; the mutex guards the lists and
 * counters, and no connect, query or close runs while it is held.
 */
#include "meta/pg_int.h"

#include <assert.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void meta_pg_options_default(meta_pg_options *o) {
    if (!o) return;
    *o = (meta_pg_options){
        .min_conns = 1,
        .max_conns = 8,
        .acquire_timeout_ms = 2000,
        .health_check_ms = 1000,
        .idle_timeout_ms = 60000,
        .max_lifetime_ms = 1800000,
        .lifetime_jitter_pct = 10,
        .statement_timeout_ms = 5000,
        .connect_timeout_s = 5,
        .long_hold_ms = 1000,
    };
}

static int refuse(char *why, size_t whylen, const char *text) {
    if (why && whylen) snprintf(why, whylen, "%s", text);
    return CAIRN_EINVAL;
}

int pg_options_check(const meta_pg_options *o, char *why, size_t whylen) {
    if (o->max_conns < 1 || o->max_conns > 1000) return refuse(why, whylen, "postgres pool: max_conns must be 1..1000");
    if (o->min_conns < 0 || o->min_conns > o->max_conns)
        return refuse(why, whylen, "postgres pool: min_conns must be 0..max_conns");
    if (o->acquire_timeout_ms < 0 || o->health_check_ms < 0 || o->idle_timeout_ms < 0 || o->max_lifetime_ms < 0 ||
        o->statement_timeout_ms < 0 || o->connect_timeout_s < 0 || o->long_hold_ms < 0)
        return refuse(why, whylen, "postgres pool: timeouts cannot be negative");
    if (o->lifetime_jitter_pct < 0 || o->lifetime_jitter_pct > 50)
        return refuse(why, whylen, "postgres pool: lifetime_jitter_pct must be 0..50");
    return 0;
}

/* ---- one connection -------------------------------------------------------- */

/* libpq prints notices (NOTICE: relation already exists...) to stderr by
 * default; this module never prints. */
static void notice_discard(void *arg, const char *msg) {
    (void)arg;
    (void)msg;
}

/* libpq's message up to its first line break: it names the host and port
 * and what failed, never the password. */
static void first_line(char *why, size_t whylen, const char *msg) {
    if (!why || !whylen) return;
    size_t n = strcspn(msg ? msg : "", "\n");
    snprintf(why, whylen, "%.*s", (int)n, msg ? msg : "");
}

static void conn_free(pg_conn *c) {
    if (!c) return;
    if (c->db) PQfinish(c->db);
    free(c);
}

static int64_t lifetime_ns(const meta_pg_options *o) {
    if (o->max_lifetime_ms <= 0) return 0;
    int64_t life = (int64_t)o->max_lifetime_ms * 1000000;
    uint32_t r = 0;
    rand_bytes(&r, sizeof r);
    int64_t cut = o->lifetime_jitter_pct > 0 ? (int64_t)((double)life * o->lifetime_jitter_pct / 100.0 * (r / 4294967296.0)) : 0;
    return life - cut;
}

/* The pool's own round trips (a connection's SET, a health check) wait as
 * long as a connect may take, at most: a server that accepts connections
 * but no longer answers is found out as broken, not waited on forever. */
static int64_t round_trip_deadline(const meta_pg_options *o) {
    int s = o->connect_timeout_s > 0 ? o->connect_timeout_s : 5;
    return time_mono_ns() + (int64_t)s * 1000000000;
}

/* Opens one connection, with statement_timeout set and application_name
 * app (unless the URL sets its own).  No lock is held. */
static int conn_open_as(pg_store *ms, const char *app, pg_conn **out, char *why, size_t whylen) {
    *out = NULL;
    pg_conn *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    c->owner = ms;
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", ms->opt.connect_timeout_s);
    /* Later entries override earlier ones: the URL (dbname, expanded) may
     * set its own connect_timeout and application_name; the encoding is
     * ours, since text travels in binary and is read as UTF-8. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", "client_encoding", NULL};
    const char *vals[] = {timeout, app, ms->conninfo, "UTF8", NULL};
    c->db = PQconnectdbParams(keys, vals, 1);
    if (!c->db) {
        free(c);
        return CAIRN_ENOMEM;
    }
    PQsetNoticeProcessor(c->db, notice_discard, NULL);
    if (PQstatus(c->db) != CONNECTION_OK) {
        first_line(why, whylen, PQerrorMessage(c->db));
        conn_free(c);
        return CAIRN_EIO;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d", ms->opt.statement_timeout_ms);
    bool late;
    PGresult *r = pg_exec_until(c, sql, round_trip_deadline(&ms->opt), &late);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (late) first_line(why, whylen, "postgres accepted the connection but did not answer");
    else if (!ok) first_line(why, whylen, PQerrorMessage(c->db));
    PQclear(r);
    if (!ok) {
        conn_free(c);
        return CAIRN_EIO;
    }
    int64_t now = time_mono_ns();
    int64_t life = lifetime_ns(&ms->opt);
    c->born_ns = c->idle_since_ns = now;
    c->expires_ns = life ? now + life : 0;
    *out = c;
    return 0;
}

static int conn_open(pg_store *ms, pg_conn **out, char *why, size_t whylen) {
    return conn_open_as(ms, "cairn", out, why, whylen);
}

int pg_conn_open_own(pg_store *ms, const char *app, pg_conn **out, char *why, size_t whylen) {
    return conn_open_as(ms, app, out, why, whylen);
}

void pg_conn_close(pg_conn *c) { conn_free(c); }

/* Whether an idle connection can be handed out (see the opening comment). */
static bool conn_healthy(const pg_store *ms, pg_conn *c, int64_t now) {
    if (PQstatus(c->db) != CONNECTION_OK) return false;
    struct pollfd p = {.fd = PQsocket(c->db), .events = POLLIN};
    int ready = p.fd < 0 ? -1 : poll(&p, 1, 0);
    if (ready == 0 && now - c->idle_since_ns < (int64_t)ms->opt.health_check_ms * 1000000) return true;
    bool late;
    PGresult *r = pg_exec_until(c, "", round_trip_deadline(&ms->opt), &late);
    bool ok = !late && r && PQresultStatus(r) == PGRES_EMPTY_QUERY;
    PQclear(r);
    return ok && PQstatus(c->db) == CONNECTION_OK && PQtransactionStatus(c->db) == PQTRANS_IDLE;
}

/* A failed connect: logged once until a connect succeeds again. */
static void note_connect(pg_store *ms, int err, const char *why) {
    pthread_mutex_lock(&ms->mu);
    bool first_failure = err != 0 && !ms->down_logged, recovered = err == 0 && ms->down_logged;
    if (err != 0) {
        ms->st.connect_errors++;
        ms->down_logged = true;
    } else {
        ms->st.connects++;
        ms->down_logged = false;
    }
    pthread_mutex_unlock(&ms->mu);
    if (first_failure)
        log_write(LOG_ERROR, NULL, "meta: cannot connect to postgres", "error", why, "code", cairn_strerror(err), NULL);
    if (recovered) log_write(LOG_INFO, NULL, "meta: connected to postgres again", NULL);
}

/* ---- checkout and return ----------------------------------------------------------- */

const double meta_pool_wait_bounds[META_POOL_WAIT_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05,
                                                              0.1,   0.25,  0.5,  1,     2.5};

/* Under the mutex: one wait of ns ended (with a connection or not). */
static void note_wait(pg_store *ms, int64_t ns) {
    ms->st.wait_ns += (uint64_t)ns;
    ms->st.wait_count++;
    double s = (double)ns / 1e9;
    for (int i = 0; i < META_POOL_WAIT_BUCKETS; i++)
        if (s <= meta_pool_wait_bounds[i]) ms->st.wait_buckets[i]++;
}

static struct timespec mono_deadline(int64_t deadline_ns) {
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    return ts;
}

/* Opens a connection into a slot the caller reserved (nopen and nbusy
 * counted); on failure the slot is given back. */
static int fill_slot(pg_store *ms, pg_conn **out) {
    char why[256] = "";
    int err = conn_open(ms, out, why, sizeof why);
    note_connect(ms, err, why);
    if (err != 0) {
        pthread_mutex_lock(&ms->mu);
        ms->nopen--;
        ms->nbusy--;
        pthread_cond_signal(&ms->cv);
        pthread_mutex_unlock(&ms->mu);
    }
    return err;
}

int pg_acquire_at(pg_store *ms, pg_conn **out, const char *func, int line) {
    *out = NULL;
    int64_t start = time_mono_ns(), deadline = start + (int64_t)ms->opt.acquire_timeout_ms * 1000000;
    bool waited = false;
    pg_conn *c = NULL;
    bool fresh = false;
    pthread_mutex_lock(&ms->mu);
    for (;;) {
        assert(!ms->closing);
        if (ms->idle) {
            c = ms->idle;
            ms->idle = c->next;
            ms->nidle--;
            ms->nbusy++;
            break;
        }
        if (ms->nopen < ms->opt.max_conns) {
            ms->nopen++;
            ms->nbusy++;
            fresh = true;
            break;
        }
        if (!waited) {
            waited = true;
            ms->st.waits++;
        }
        if (time_mono_ns() >= deadline) {
            ms->st.acquire_timeouts++;
            note_wait(ms, time_mono_ns() - start);
            pthread_mutex_unlock(&ms->mu);
            return CAIRN_EBUSY;
        }
        struct timespec ts = mono_deadline(deadline);
        pthread_cond_timedwait(&ms->cv, &ms->mu, &ts);
    }
    /* The wait ends with a connection or a slot to open one in; opening is
     * connect time, not waiting. */
    if (waited) note_wait(ms, time_mono_ns() - start);
    pthread_mutex_unlock(&ms->mu);

    int err = 0;
    if (!fresh) {
        int64_t now = time_mono_ns();
        bool expired = c->expires_ns && now >= c->expires_ns;
        bool healthy = !expired && conn_healthy(ms, c, now);
        if (!healthy) {
            conn_free(c);
            c = NULL;
            pthread_mutex_lock(&ms->mu);
            if (expired) ms->st.expired++;
            else ms->st.reconnects++;
            pthread_mutex_unlock(&ms->mu);
            fresh = true;
        }
    }
    if (fresh) err = fill_slot(ms, &c);
    if (err != 0) return err;
    int64_t now = time_mono_ns();
    c->acquired_ns = now;
    c->func = func;
    c->line = line;
    c->broken = false;
    c->unbounded = false;
    pthread_mutex_lock(&ms->mu);
    ms->st.acquires++;
    pthread_mutex_unlock(&ms->mu);
    *out = c;
    return 0;
}

void pg_release(pg_store *ms, pg_conn *c) {
    if (!c) return;
    int64_t now = time_mono_ns(), held = now - c->acquired_ns;
    bool long_hold = ms->opt.long_hold_ms > 0 && held > (int64_t)ms->opt.long_hold_ms * 1000000;
    if (long_hold) {
        char lbuf[24], hbuf[24];
        log_write(LOG_WARN, NULL, "meta: postgres connection held long", "function", c->func, "line",
                  log_int(lbuf, c->line), "held_ms", log_int(hbuf, held / 1000000), NULL);
    }
    /* A call always ends its transaction; a connection that is still in one
     * lost its server mid-way (or the ROLLBACK could not be sent). */
    bool drop = c->broken || PQstatus(c->db) != CONNECTION_OK || PQtransactionStatus(c->db) != PQTRANS_IDLE;
    bool expired = !drop && c->expires_ns && now >= c->expires_ns;
    pthread_mutex_lock(&ms->mu);
    ms->nbusy--;
    if (long_hold) ms->st.long_holds++;
    if (drop || expired) {
        ms->nopen--;
        if (expired) ms->st.expired++;
    } else {
        c->idle_since_ns = now;
        c->func = NULL;
        c->next = ms->idle;
        ms->idle = c;
        ms->nidle++;
    }
    pthread_cond_signal(&ms->cv);
    pthread_mutex_unlock(&ms->mu);
    if (drop || expired) conn_free(c);
}

int pg_pool_stats_get(meta_store *base_, pg_pool_stats *out) {
    pg_store *ms = PG(base_);
    memset(out, 0, sizeof *out);
    if (!ms || base_->ops != &pg_ops) return CAIRN_EINVAL;
    pthread_mutex_lock(&ms->mu);
    *out = ms->st;
    out->open = ms->nopen;
    out->in_use = ms->nbusy;
    out->idle = ms->nidle;
    out->max = ms->opt.max_conns;
    pthread_mutex_unlock(&ms->mu);
    return 0;
}

/* ---- maintenance ------------------------------------------------------------------- */

static int64_t maint_period_ns(const meta_pg_options *o) {
    int64_t ms = 1000;
    if (o->idle_timeout_ms > 0 && o->idle_timeout_ms / 4 < ms) ms = o->idle_timeout_ms / 4;
    if (o->max_lifetime_ms > 0 && o->max_lifetime_ms / 4 < ms) ms = o->max_lifetime_ms / 4;
    return (ms < 10 ? 10 : ms) * 1000000;
}

/* Under the mutex: unlinks the idle connections to close into *drop. */
static void collect_stale(pg_store *ms, int64_t now, pg_conn **drop) {
    int64_t idle_ns = (int64_t)ms->opt.idle_timeout_ms * 1000000;
    for (pg_conn **pp = &ms->idle; *pp;) {
        pg_conn *c = *pp;
        bool expired = c->expires_ns && now >= c->expires_ns;
        bool stale = idle_ns > 0 && now - c->idle_since_ns >= idle_ns && ms->nopen > ms->opt.min_conns;
        if (!expired && !stale) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        ms->nidle--;
        ms->nopen--;
        if (expired) ms->st.expired++;
        else ms->st.evicted++;
        c->next = *drop;
        *drop = c;
    }
}

static void *maint_main(void *arg) {
    pthread_setname_np(pthread_self(), "pg-pool");
    pg_store *ms = arg;
    int64_t period = maint_period_ns(&ms->opt);
    pthread_mutex_lock(&ms->mu);
    while (!ms->closing) {
        struct timespec ts = mono_deadline(time_mono_ns() + period);
        pthread_cond_timedwait(&ms->maint_cv, &ms->mu, &ts);
        if (ms->closing) break;
        pg_conn *drop = NULL;
        collect_stale(ms, time_mono_ns(), &drop);
        int want = ms->opt.min_conns - ms->nopen;
        if (want > 0) ms->nopen += want; /* reserved: no checkout can overshoot max_conns */
        pthread_mutex_unlock(&ms->mu);
        while (drop) {
            pg_conn *next = drop->next;
            conn_free(drop);
            drop = next;
        }
        bool failed = false;
        for (int i = 0; i < want; i++) {
            pg_conn *c = NULL;
            char why[256] = "";
            /* After one failure the rest of this round's slots are given
             * back untried: the next round tries again. */
            int err = failed ? CAIRN_EIO : conn_open(ms, &c, why, sizeof why);
            if (!failed) note_connect(ms, err, why);
            failed |= err != 0;
            pthread_mutex_lock(&ms->mu);
            if (err == 0) {
                c->next = ms->idle;
                ms->idle = c;
                ms->nidle++;
            } else {
                ms->nopen--;
            }
            pthread_cond_signal(&ms->cv);
            pthread_mutex_unlock(&ms->mu);
        }
        pthread_mutex_lock(&ms->mu);
    }
    pthread_mutex_unlock(&ms->mu);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------- */

int pg_pool_start(pg_store *ms, char *why, size_t whylen) {
    /* At least one connection now, even with min_conns 0: an unreachable
     * or misnamed database is an error at open, not at the first request. */
    int first = ms->opt.min_conns > 0 ? ms->opt.min_conns : 1;
    for (int i = 0; i < first; i++) {
        pg_conn *c = NULL;
        char msg[256] = "";
        int err = conn_open(ms, &c, msg, sizeof msg);
        if (err != 0) {
            if (why && whylen) snprintf(why, whylen, "postgres: %s", msg);
            pthread_mutex_lock(&ms->mu);
            ms->st.connect_errors++;
            pthread_mutex_unlock(&ms->mu);
            return err;
        }
        pthread_mutex_lock(&ms->mu);
        ms->st.connects++;
        c->next = ms->idle;
        ms->idle = c;
        ms->nidle++;
        ms->nopen++;
        pthread_mutex_unlock(&ms->mu);
    }
    if (pthread_create(&ms->maint, NULL, maint_main, ms) != 0) {
        if (why && whylen) snprintf(why, whylen, "postgres: cannot start the pool's thread");
        return CAIRN_ENOMEM;
    }
    ms->maint_running = true;
    return 0;
}

void pg_pool_stop(pg_store *ms) {
    pthread_mutex_lock(&ms->mu);
    ms->closing = true;
    pthread_cond_broadcast(&ms->maint_cv);
    pthread_mutex_unlock(&ms->mu);
    if (ms->maint_running) pthread_join(ms->maint, NULL);
    ms->maint_running = false;
    pthread_mutex_lock(&ms->mu);
    assert(ms->nbusy == 0); /* closing a store with a call in flight is a caller's bug */
    pg_conn *c = ms->idle;
    ms->idle = NULL;
    ms->nopen -= ms->nidle;
    ms->nidle = 0;
    pthread_mutex_unlock(&ms->mu);
    while (c) {
        pg_conn *next = c->next;
        conn_free(c);
        c = next;
    }
}
