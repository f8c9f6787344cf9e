/*
 * metrics.c — the metadata database's figures on GET /metrics: the
 * PostgreSQL connection pool's gauges, counters and wait-time histogram
 * (meta_pool_stats_get), rendered as Prometheus text at scrape time.  A
 * store without a pool (SQLite) adds nothing.  Reading the figures takes
 * the pool's mutex once; nothing here grows with the number of scrapes.
 */
#include "s3/internal.h"
#include "cache/tiered.h"

static void gauge(buf_t *b, const char *name, const char *help, long long v) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

static void counter(buf_t *b, const char *name, const char *help, uint64_t v) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

void s3_render_meta_metrics(meta_store *ms, buf_t *b) {
    tiered_render_metrics(ms, b); /* the metadata cache's tiers, if any */
    meta_pool_stats st;
    if (meta_pool_stats_get(ms, &st) != 0) return;
    gauge(b, "cairn_db_pool_connections_in_use", "Database connections checked out by a call now.", st.in_use);
    gauge(b, "cairn_db_pool_connections_idle", "Database connections open and idle in the pool now.", st.idle);
    gauge(b, "cairn_db_pool_connections_open", "Database connections open or being opened now.", st.open);
    gauge(b, "cairn_db_pool_connections_max", "Most database connections the pool opens (db_pool_max).", st.max);
    counter(b, "cairn_db_pool_acquires_total", "Checkouts that got a database connection.", st.acquires);
    counter(b, "cairn_db_pool_waits_total", "Checkouts that found every connection busy and waited.", st.waits);
    buf_puts(b, "# HELP cairn_db_pool_wait_seconds Time checkouts waited for a free database connection.\n"
                "# TYPE cairn_db_pool_wait_seconds histogram\n");
    for (int i = 0; i < META_POOL_WAIT_BUCKETS; i++)
        buf_printf(b, "cairn_db_pool_wait_seconds_bucket{le=\"%g\"} %llu\n", meta_pool_wait_bounds[i],
                   (unsigned long long)st.wait_buckets[i]);
    /* Observations are the waits that ended: one under way is in waits_total
     * already but has no duration yet. */
    uint64_t ended = st.wait_count;
    buf_printf(b, "cairn_db_pool_wait_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)ended);
    buf_printf(b, "cairn_db_pool_wait_seconds_sum %.6f\n", (double)st.wait_ns / 1e9);
    buf_printf(b, "cairn_db_pool_wait_seconds_count %llu\n", (unsigned long long)ended);
    counter(b, "cairn_db_pool_acquire_timeouts_total",
            "Checkouts that gave up after db_acquire_timeout_ms (answered 503 SlowDown).", st.acquire_timeouts);
    counter(b, "cairn_db_pool_errors_total", "Database statements that failed unexpectedly (each logged).", st.errors);
    counter(b, "cairn_db_pool_connects_total", "Database connections opened.", st.connects);
    counter(b, "cairn_db_pool_connect_errors_total", "Database connections that could not be opened.",
            st.connect_errors);
    counter(b, "cairn_db_pool_reconnects_total", "Broken database connections found on checkout and replaced.",
            st.reconnects);
    counter(b, "cairn_db_pool_expired_total", "Database connections closed at the end of their lifetime.",
            st.expired);
    counter(b, "cairn_db_pool_evicted_total", "Idle database connections closed by db_idle_timeout_ms.", st.evicted);
    counter(b, "cairn_db_pool_long_holds_total",
            "Checkouts that held a database connection longer than db_long_hold_ms (each logged with its call site).",
            st.long_holds);
}
