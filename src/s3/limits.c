/*
 * limits.c — the rate limit stage of the pipeline (docs/rate-limiting.md):
 * who a request counts against (its access key, its client address, its
 * bucket), its admission by the gateway's limiter (auth/ratelimit.c), the
 * bytes of object bodies charged as they flow, and the limiter's metrics.
 *
 * A request over a limit is answered 503 SlowDown with Retry-After (whole
 * seconds, at least 1), which every SDK backs off on, before its body is
 * read.  The client address is the peer's, or, when the peer is one of
 * ratelimit_trusted_proxies, the nearest hop of X-Forwarded-For that is
 * not (a client cannot name itself another address through a proxy that
 * appends).  Operator endpoints (health, metrics) are exempt; storage
 * nodes' traffic never comes through here.
 *
 * Bytes are charged as they pass: a request body piece by piece as it
 * arrives, a GET body piece by piece as it is sent.  When a limit's bucket
 * is empty the flow sleeps on its own connection's thread (MHD runs one
 * per connection; the slow-client watchdog counts that time as the
 * server's, not the client's) for exactly as long as the rate asks.
 */
#include "s3/internal.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int s3_limits_new(s3_gateway *gw) {
    const config_t *c = &gw->cfg;
    rl_config rc = {
        .ops_per_s = {c->ratelimit_key_ops_per_s, c->ratelimit_ip_ops_per_s, c->ratelimit_bucket_ops_per_s},
        .bytes_per_s = {c->ratelimit_key_bytes_per_s, c->ratelimit_ip_bytes_per_s, c->ratelimit_bucket_bytes_per_s},
        .burst_s = c->ratelimit_burst_s,
        .max_in_flight = c->max_requests_in_flight,
        .max_entries = c->ratelimit_max_entries,
    };
    int err = rl_new(&rc, &gw->limiter);
    if (err != 0 || !c->redis_url[0]) return err;
    /* With Redis, every gateway shares the limits (ratelimit_redis.c). */
    rl_shared sh = {.redis_url = c->redis_url, .timeout_ms = c->redis_timeout_ms, .breaker_ms = c->redis_breaker_ms};
    char why[160];
    err = rl_share(gw->limiter, &sh, why, sizeof why);
    if (err != 0) log_write(LOG_ERROR, NULL, "rate limits cannot use redis_url", "error", why, NULL);
    return err;
}

void s3_client_address(const char *peer, const char *xff, const char *trusted, char *out, size_t cap) {
    snprintf(out, cap, "%s", peer);
    if (!xff || !trusted[0] || net_addr_in_list(trusted, peer, NULL) != 1) return;
    /* From the right: each hop was appended by the one before it. */
    size_t end = strlen(xff);
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',') start--;
        size_t a = start, b = end;
        while (a < b && (xff[a] == ' ' || xff[a] == '\t')) a++;
        while (b > a && (xff[b - 1] == ' ' || xff[b - 1] == '\t')) b--;
        char hop[64];
        if (b - a == 0 || b - a >= sizeof hop) return; /* malformed: the last trusted hop stands */
        memcpy(hop, xff + a, b - a);
        hop[b - a] = '\0';
        int t = net_addr_in_list(trusted, hop, NULL);
        uint8_t probe[16];
        bool is_addr = inet_pton(AF_INET, hop, probe) == 1 || inet_pton(AF_INET6, hop, probe) == 1;
        if (!is_addr) return;
        snprintf(out, cap, "%s", hop);
        if (t != 1) return;
        end = start > 0 ? start - 1 : 0;
    }
}

/* The overrides (cairn admin limits), read whole at most once a second by
 * whichever request comes first after that second: a change made on any
 * gateway applies everywhere within about a second.  A failed read keeps
 * the overrides it had (logged). */
typedef struct {
    meta_limit *rows;
    size_t n, cap;
    bool oom;
} limit_rows;

static int collect(void *ud, const meta_limit *l) {
    limit_rows *r = ud;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        meta_limit *rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) {
            r->oom = true;
            return 1;
        }
        r->rows = rows;
        r->cap = cap;
    }
    r->rows[r->n++] = *l;
    return 0;
}

static void read_overrides(s3_gateway *gw) {
    int64_t now = time_mono_ns(), last = atomic_load(&gw->limits_read_ns);
    if (last && now - last < 1000000000LL) return;
    if (!atomic_compare_exchange_strong(&gw->limits_read_ns, &last, now)) return; /* another request reads them */
    limit_rows r = {0};
    int rc = meta_limit_list(gw->d.meta, collect, &r);
    if (rc == 0 && r.oom) rc = CAIRN_ENOMEM;
    rl_override_entry *e = rc == 0 && r.n ? calloc(r.n, sizeof *e) : NULL;
    if (rc == 0 && r.n && !e) rc = CAIRN_ENOMEM;
    for (size_t i = 0; rc == 0 && i < r.n; i++)
        e[i] = (rl_override_entry){!strcmp(r.rows[i].scope, "key") ? RL_KEY : RL_BUCKET, r.rows[i].name,
                                   {r.rows[i].ops_per_s, r.rows[i].bytes_per_s}};
    if (rc == 0) rc = rl_overrides_replace(gw->limiter, e, r.n);
    /* Logged when reading starts failing, not every second it goes on
     * failing (a database outage says so elsewhere). */
    bool failed_before = atomic_exchange(&gw->limits_read_failing, rc != 0);
    if (rc != 0 && !failed_before)
        log_write(LOG_WARN, NULL, "reading the rate limit overrides failed: the ones read before apply", "error",
                  cairn_strerror(rc), NULL);
    free(e);
    free(r.rows);
}

void s3_rate_subject_fix(s3_rate *r) {
    r->s.name[RL_KEY] = r->key[0] ? r->key : NULL;
    r->s.name[RL_IP] = r->ip[0] ? r->ip : NULL;
    r->s.name[RL_BUCKET] = r->bucket[0] ? r->bucket : NULL;
}

int s3_rate_admit(s3_req *q) {
    rl_limiter *l = q->gw->limiter;
    read_overrides(q->gw);
    if (!rl_enabled(l)) return 0;
    s3_rate *r = &q->rate;
    if (!q->who.anonymous && q->who.cred.access_key[0])
        snprintf(r->key, sizeof r->key, "%s", q->who.cred.access_key);
    s3_client_address(q->http->remote_addr, http_header(q->http, "x-forwarded-for"),
                      q->gw->cfg.ratelimit_trusted_proxies, r->ip, sizeof r->ip);
    if (q->route->bucket && q->bucket[0]) snprintf(r->bucket, sizeof r->bucket, "%s", q->bucket);
    s3_rate_subject_fix(r);
    rl_refusal why;
    if (rl_admit(l, &r->s, time_mono_ns(), &why) == 0) {
        r->l = l;
        return 0;
    }
    char secs[24], ms[24];
    long long s = (why.retry_after_ms + 999) / 1000;
    snprintf(secs, sizeof secs, "%lld", s < 1 ? 1 : s);
    log_write(LOG_INFO, q->http->request_id, "rate limited", "limiter", rl_dim_name(why.dim), "retry_after_ms",
              log_int(ms, why.retry_after_ms), NULL);
    http_add_header(q->http, "Retry-After", secs);
    s3_error(q, "SlowDown", "Please reduce your request rate.");
    return -1;
}

/* Bytes are charged in pieces of at least this many (one Redis call each
 * when the limits are shared), and the rest when the request ends. */
#define CHARGE_PIECE (256 * 1024)

static void charge(s3_rate *r, bool wait_for_it) {
    uint64_t n = r->pending;
    r->pending = 0;
    if (!r->l || n == 0) return;
    int64_t wait = rl_charge(r->l, &r->s, n, time_mono_ns());
    if (wait <= 0 || !wait_for_it) return;
    struct timespec ts = {(time_t)(wait / 1000000000LL), (long)(wait % 1000000000LL)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void s3_rate_flow(s3_rate *r, size_t n) {
    if (!r->l) return;
    r->pending += n;
    if (r->pending >= CHARGE_PIECE) charge(r, true);
}

void s3_rate_flush(s3_rate *r) { charge(r, false); }

void s3_rate_done(s3_req *q) {
    s3_rate_flush(&q->rate);
    if (q->rate.l) rl_release(q->rate.l);
    q->rate.l = NULL;
}

void s3_render_limit_metrics(s3_gateway *gw, buf_t *b) {
    if (!rl_enabled(gw->limiter)) return;
    rl_stats st;
    rl_stats_get(gw->limiter, &st);
    buf_puts(b, "# HELP cairn_ratelimit_admitted_total Requests each rate limiter admitted.\n"
                "# TYPE cairn_ratelimit_admitted_total counter\n");
    for (int d = 0; d <= RL__DIMS; d++)
        buf_printf(b, "cairn_ratelimit_admitted_total{limiter=\"%s\"} %llu\n", rl_dim_name(d),
                   (unsigned long long)st.admitted[d]);
    buf_puts(b, "# HELP cairn_ratelimit_limited_total Requests each rate limiter answered 503 SlowDown.\n"
                "# TYPE cairn_ratelimit_limited_total counter\n");
    for (int d = 0; d <= RL__DIMS; d++)
        buf_printf(b, "cairn_ratelimit_limited_total{limiter=\"%s\"} %llu\n", rl_dim_name(d),
                   (unsigned long long)st.limited[d]);
    buf_puts(b, "# HELP cairn_ratelimit_bytes_total Body bytes each byte limit counted.\n"
                "# TYPE cairn_ratelimit_bytes_total counter\n");
    for (int d = 0; d < RL__DIMS; d++)
        buf_printf(b, "cairn_ratelimit_bytes_total{limiter=\"%s\"} %llu\n", rl_dim_name(d),
                   (unsigned long long)st.bytes[d]);
    buf_puts(b, "# HELP cairn_ratelimit_throttled_seconds_total Time flows were held back by each byte limit.\n"
                "# TYPE cairn_ratelimit_throttled_seconds_total counter\n");
    for (int d = 0; d < RL__DIMS; d++)
        buf_printf(b, "cairn_ratelimit_throttled_seconds_total{limiter=\"%s\"} %.6f\n", rl_dim_name(d),
                   (double)st.throttled_ns[d] / 1e9);
    buf_printf(b, "# HELP cairn_ratelimit_evictions_total Subjects forgotten while they owed, to bound memory.\n"
                  "# TYPE cairn_ratelimit_evictions_total counter\ncairn_ratelimit_evictions_total %llu\n",
               (unsigned long long)st.evictions);
    buf_printf(b, "# HELP cairn_ratelimit_shared Whether the rate limits are shared by the gateways through Redis "
                  "now (1), or this gateway enforces its share alone (0).\n# TYPE cairn_ratelimit_shared gauge\n"
                  "cairn_ratelimit_shared %d\n", st.shared && st.redis_up ? 1 : 0);
    buf_printf(b, "# HELP cairn_ratelimit_gateways Gateways sharing the limits when Redis last answered.\n"
                  "# TYPE cairn_ratelimit_gateways gauge\ncairn_ratelimit_gateways %d\n", st.gateways);
    buf_printf(b, "# HELP cairn_ratelimit_fallback_total Checks this gateway decided alone, at its share, because "
                  "Redis did not answer.\n# TYPE cairn_ratelimit_fallback_total counter\n"
                  "cairn_ratelimit_fallback_total %llu\n", (unsigned long long)st.fallback_checks);
    buf_printf(b, "# HELP cairn_requests_admitted_in_flight S3 requests holding a slot of max_requests_in_flight.\n"
                  "# TYPE cairn_requests_admitted_in_flight gauge\ncairn_requests_admitted_in_flight %lld\n",
               (long long)st.in_flight);
}
