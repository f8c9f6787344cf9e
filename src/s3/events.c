/*
 * events.c — the S3 side of the event stream (docs/events.md): the
 * post-commit hook that publishes an object event for every object a
 * request created or removed, and GET /events/ws, which checks the
 * WebSocket handshake, the caller and what it asks to watch, all before the
 * 101, and hands the connection to the hub (events/hub.c).
 *
 * Refusals come before the upgrade, as S3 errors with the request id:
 * 403 for a caller who may not watch (unsigned, a bucket it cannot read,
 * the cluster channel without root, an Origin not on the allow-list), 400
 * for a malformed handshake or query, 404 for a bucket that does not exist,
 * 426 for a WebSocket version other than 13, 503 when the gateway holds
 * events_max_sockets already or the bus has lost Redis.
 */
#include "s3/internal.h"
#include "events/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- publishing ------------------------------------------------------------------------------ */

const char *s3_event_name(const char *api, s3_change change) {
    if (change == S3_CHANGE_REMOVED) return "ObjectRemoved:Delete";
    if (change == S3_CHANGE_MARKER) return "ObjectRemoved:DeleteMarkerCreated";
    if (!strcmp(api, "CopyObject")) return "ObjectCreated:Copy";
    if (!strcmp(api, "CompleteMultipartUpload")) return "ObjectCreated:CompleteMultipartUpload";
    if (!strcmp(api, "PostObject")) return "ObjectCreated:Post";
    return "ObjectCreated:Put";
}

void s3_events_hook(void *ud, const s3_commit *c) {
    s3_gateway *gw = ud;
    if (c->change == S3_CHANGE_NONE || !c->obj) return;
    int64_t now = time_now_us();
    events_object e = {
        .name = s3_event_name(c->api, c->change),
        .region = gw->cfg.region,
        .bucket = c->bucket,
        .key = c->key,
        .key_len = c->key_len,
        .size = c->change == S3_CHANGE_CREATED ? c->obj->size : -1,
        .etag = c->change == S3_CHANGE_CREATED ? c->obj->etag : NULL,
        /* S3 sends versionId only where versions are kept. */
        .version_id = c->obj->null_version && c->versioned == false ? NULL : s3_version_id(c->obj),
        .request_id = c->request_id,
        .principal = c->principal,
        .source_ip = c->source_ip,
        .time_us = now,
        .sequencer = events_sequencer(now),
    };
    buf_t m;
    buf_init(&m);
    char channel[80];
    snprintf(channel, sizeof channel, "cairn:bucket:%s", c->bucket);
    if (events_render_object(&m, &e) == 0) events_publish(gw->d.events, channel, m.data, m.len);
    buf_free(&m);
}

/* ---- GET /events/ws ---------------------------------------------------------------------------- */

/* Does the comma-separated header value list hold token (case-insensitive)? */
static bool has_token(const char *list, const char *token) {
    size_t tl = strlen(token);
    for (const char *p = list; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t')) t--;
        if (t == tl && strncasecmp(p, token, tl) == 0) return true;
        p += n;
    }
    return false;
}

/* Is origin on the comma-separated allow-list (exact, case-insensitive)? */
static bool origin_allowed(const char *list, const char *origin) { return has_token(list, origin); }

static int fail(s3_req *q, const char *code, const char *msg) {
    s3_error(q, code, msg);
    return -1;
}

/* The filter the query asks for; answers and returns nonzero when it is not one. */
static int read_filter(s3_req *q, events_filter *f) {
    const char *channel = s3_param_get(q, "channel"), *bucket = s3_param_get(q, "bucket");
    const char *prefix = s3_param_get(q, "prefix"), *types = s3_param_get(q, "events");
    if (channel) {
        if (strcmp(channel, "cluster") != 0) return fail(q, "InvalidArgument", "channel= may only be cluster.");
        if (bucket || prefix || types)
            return fail(q, "InvalidArgument", "channel=cluster takes no bucket=, prefix= or events=.");
        if (!q->who.is_root) return fail(q, "AccessDenied", "The cluster channel is for the root user.");
        f->cluster = true;
        return 0;
    }
    if (!bucket || !*bucket) return fail(q, "InvalidArgument", "Name bucket= (object events) or channel=cluster.");
    if (!s3_bucket_name_valid(bucket)) return fail(q, "NoSuchBucket", NULL);
    snprintf(q->bucket, sizeof q->bucket, "%s", bucket);
    int rc = meta_bucket_get(q->gw->d.meta, bucket, &q->bk);
    if (rc == CAIRN_ENOTFOUND) return fail(q, "NoSuchBucket", NULL);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "metadata lookup failed");
        return -1;
    }
    q->bucket_id = q->bk.id;
    if (!s3_authorized(q, &q->bk, true)) return fail(q, "AccessDenied", "You may watch only buckets you can read.");
    snprintf(f->bucket, sizeof f->bucket, "%s", bucket);
    if (prefix && *prefix) {
        size_t pl = strlen(prefix);
        if (pl > 1024) return fail(q, "KeyTooLongError", "prefix= is longer than a key can be.");
        if (!(f->prefix = strdup(prefix))) return fail(q, "InternalError", NULL);
        f->prefix_len = pl;
    }
    const char *why = NULL;
    if (types && events_filter_parse_types(f, types, &why) != 0) return fail(q, "InvalidArgument", why);
    return 0;
}

void s3_events_ws(s3_req *q) {
    s3_gateway *gw = q->gw;
    http_req *r = q->http;
    if (!gw->d.events_hub) {
        s3_error(q, "NotImplemented", "The event stream is off (events_enabled: false).");
        return;
    }
    /* The handshake (RFC 6455 4.2.1). */
    const char *key = http_header(r, "sec-websocket-key"), *version = http_header(r, "sec-websocket-version");
    char accept[29];
    if (!has_token(http_header(r, "connection"), "upgrade") || !key) {
        s3_error(q, "InvalidRequest", "A WebSocket handshake needs Connection: Upgrade and Sec-WebSocket-Key.");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        http_add_header(r, "Sec-WebSocket-Version", "13");
        s3_error(q, "UpgradeRequired", NULL);
        return;
    }
    if (ws_accept_key(key, accept) != 0) {
        s3_error(q, "InvalidRequest", "Sec-WebSocket-Key must be the base64 of 16 bytes.");
        return;
    }
    /* Browsers send Origin; a page from an origin not allowed may not
     * borrow its user's presigned URL.  Clients that are not browsers send
     * none and are judged by their signature alone. */
    const char *origin = http_header(r, "origin");
    if (origin && gw->cfg.events_allowed_origins[0] && !origin_allowed(gw->cfg.events_allowed_origins, origin)) {
        s3_error(q, "AccessDenied", "This Origin may not open the event stream (events_allowed_origins).");
        return;
    }
    int qrc = s3_parse_query(r->arena, r->raw_query, q->params, S3_MAX_QUERY, &q->nparams);
    if (qrc != 0) {
        s3_error(q, qrc == CAIRN_ENOMEM ? "InternalError" : "InvalidURI", "The query string is malformed.");
        return;
    }
    events_sub *sub = calloc(1, sizeof *sub);
    if (!sub) {
        s3_error_nomem(q);
        return;
    }
    if (read_filter(q, &sub->filter) != 0) {
        events_sub_free(sub);
        return;
    }
    if (!events_bus_up(gw->d.events)) {
        events_sub_free(sub);
        http_add_header(r, "Retry-After", "5");
        s3_error(q, "ServiceUnavailable", "The event bus has lost Redis; retry later.");
        return;
    }
    if (events_hub_reserve(gw->d.events_hub) != 0) {
        events_sub_free(sub);
        http_add_header(r, "Retry-After", "1");
        s3_error(q, "SlowDown", "This gateway holds all the event stream sockets it may (events_max_sockets).");
        return;
    }
    sub->hub = gw->d.events_hub;
    snprintf(sub->request_id, sizeof sub->request_id, "%s", r->request_id);
    snprintf(sub->principal, sizeof sub->principal, "%s", r->principal);
    http_add_header(r, "Upgrade", "websocket");
    http_add_header(r, "Sec-WebSocket-Accept", accept);
    if (http_respond_upgrade(r, events_hub_adopt, sub, events_sub_free) != 0) s3_error_nomem(q);
}
