/*
 * gateway.c — the gateway's lifetime, the registries of its pipeline's
 * slots (post-commit hooks, response filters), the operator endpoints and
 * the small helpers every handler shares.  The request path itself is
 * pipeline.c.
 */
#include "s3/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int s3_gateway_new(const s3_deps *deps, s3_gateway **out) {
    s3_gateway *gw = calloc(1, sizeof *gw);
    if (!gw) return CAIRN_ENOMEM;
    gw->d = *deps;
    gw->cfg = *deps->cfg;
    gw->d.cfg = &gw->cfg;
    gw->keys = (auth_keys){.meta = gw->d.meta, .master_key = gw->d.master_key,
                           .root_access_key = gw->d.root_access_key, .root_secret = gw->d.root_secret,
                           .root_user_id = gw->d.root_user_id, .region = gw->cfg.region,
                           .clock_skew = gw->cfg.clock_skew, .sigv2 = gw->cfg.sigv2};
    int rc = s3_notify_cache_new(&gw->notify);
    if (rc == 0) rc = s3_cors_cache_new(&gw->cors);
    if (rc == 0) rc = s3_lifecycle_cache_new(&gw->lifecycle);
    if (rc == 0) rc = s3_sse_cache_new(&gw->sse);
    if (rc == 0) rc = s3_limits_new(gw);
    if (rc == 0 && gw->d.events) rc = s3_hook_add(gw, s3_events_hook, gw);
    if (rc == 0) rc = s3_health_start(gw, &gw->health);
    if (rc != 0) {
        s3_notify_cache_free(gw->notify);
        s3_cors_cache_free(gw->cors);
        s3_lifecycle_cache_free(gw->lifecycle);
        s3_sse_cache_free(gw->sse);
        rl_free(gw->limiter);
        free(gw);
        return rc;
    }
    *out = gw;
    return 0;
}

void s3_gateway_free(s3_gateway *gw) {
    if (!gw) return;
    s3_health_stop(gw->health);
    s3_notify_cache_free(gw->notify);
    s3_cors_cache_free(gw->cors);
    s3_lifecycle_cache_free(gw->lifecycle);
    s3_sse_cache_free(gw->sse);
    rl_free(gw->limiter);
    free(gw);
}

/* ---- the registries of the pipeline's slots ---------------------------------- */

static int callbacks_add(s3_callbacks *l, void (*fn)(void), void *ud) {
    assert(fn);
    if (l->n == S3_MAX_CALLBACKS) return CAIRN_ETOOBIG;
    l->at[l->n].fn = fn;
    l->at[l->n].ud = ud;
    l->n++;
    return 0;
}

int s3_hook_add(s3_gateway *gw, s3_hook_fn fn, void *ud) { return callbacks_add(&gw->hooks, (void (*)(void))fn, ud); }

int s3_filter_add(s3_gateway *gw, s3_filter_fn fn, void *ud) {
    return callbacks_add(&gw->filters, (void (*)(void))fn, ud);
}

/* ---- small shared helpers --------------------------------------------------- */

const char *s3_param_get(const s3_req *q, const char *name) {
    for (int i = 0; i < q->nparams; i++)
        if (strcmp(q->params[i].name, name) == 0) return q->params[i].value;
    return NULL;
}

bool s3_param_has(const s3_req *q, const char *name) { return s3_param_get(q, name) != NULL; }

void s3_respond_xml(s3_req *q, unsigned status, buf_t *b) {
    if (b->oom) {
        buf_free(b);
        s3_error(q, "InternalError", "out of memory building the response");
        return;
    }
    http_add_header(q->http, "Content-Type", "application/xml");
    size_t len = b->len;
    http_respond_take(q->http, status, buf_steal(b), len);
}

void s3_owner_xml(s3_req *q, buf_t *b, int64_t owner_id) {
    meta_user u;
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)owner_id);
    buf_puts(b, "<Owner><ID>");
    buf_puts(b, id);
    buf_puts(b, "</ID><DisplayName>");
    if (meta_user_get(q->gw->d.meta, owner_id, &u) == 0)
        buf_xml_escape(b, u.display_name[0] ? u.display_name : u.name,
                       strlen(u.display_name[0] ? u.display_name : u.name));
    buf_puts(b, "</DisplayName></Owner>");
}

/* ---- operator endpoints -------------------------------------------------------- */

void s3_serve_live(s3_req *q) {
    static const char live[] = "{\"status\":\"ok\"}\n";
    http_add_header(q->http, "Content-Type", "application/json");
    http_respond(q->http, 200, live, sizeof live - 1);
}

void s3_serve_metrics(s3_req *q) {
    if (!q->gw->cfg.metrics_enabled) {
        s3_error(q, "NoSuchKey", "Metrics are off (metrics_enabled: false).");
        return;
    }
    buf_t b;
    buf_init(&b);
    obs_render(q->gw->d.obs, &b);
    data_stats ds;
    data_get_stats(q->gw->d.data, &ds);
    buf_printf(&b, "# HELP cairn_data_corrupt_blocks_total Blocks whose checksum failed or that were short on read.\n"
                   "# TYPE cairn_data_corrupt_blocks_total counter\ncairn_data_corrupt_blocks_total %llu\n"
                   "# HELP cairn_data_missing_shards_total Shard files absent when an object was read.\n"
                   "# TYPE cairn_data_missing_shards_total counter\ncairn_data_missing_shards_total %llu\n"
                   "# HELP cairn_data_degraded_reads_total Object reads that needed parity.\n"
                   "# TYPE cairn_data_degraded_reads_total counter\ncairn_data_degraded_reads_total %llu\n"
                   "# HELP cairn_data_healed_shards_total Shards rewritten by healing.\n"
                   "# TYPE cairn_data_healed_shards_total counter\ncairn_data_healed_shards_total %llu\n"
                   "# HELP cairn_data_heal_failures_total Heals that could not complete.\n"
                   "# TYPE cairn_data_heal_failures_total counter\ncairn_data_heal_failures_total %llu\n",
               (unsigned long long)ds.corrupt_blocks, (unsigned long long)ds.missing_shards,
               (unsigned long long)ds.degraded_reads, (unsigned long long)ds.healed_shards,
               (unsigned long long)ds.heal_failures);
    data_render_metrics(q->gw->d.data, &b);
    const s3_jobs *jobs = &q->gw->d.jobs;
    if (jobs->render_metrics) jobs->render_metrics(jobs->ud, &b);
    s3_render_meta_metrics(q->gw->d.meta, &b);
    s3_render_limit_metrics(q->gw, &b);
    audit_journal_render_metrics(q->gw->d.audit, &b); /* zeros when audit is off: the lost counter always exists */
    http_add_header(q->http, "Content-Type", "text/plain; version=0.0.4");
    size_t len = b.len;
    http_respond_take(q->http, 200, buf_steal(&b), len);
}
