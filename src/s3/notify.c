/*
 * notify.c — bucket notifications on the S3 side (docs/notifications.md):
 * PutBucketNotificationConfiguration and GetBucketNotificationConfiguration,
 * and the jobs a change enqueues with itself.
 *
 * A handler about to commit an object change asks s3_notify_jobs for the
 * deliveries it owes (lifecycle, which has no request, asks
 * s3_notify_jobs_of): every rule of the bucket's configuration that the
 * event (its type, its key's prefix and suffix) matches gives one job of
 * kind "notify" carrying the target's name and the S3 event message to
 * POST.  The handler hands them to the metadata call, which enqueues them
 * in the change's own transaction (meta_object.jobs, meta_delete_item.jobs):
 * a change that committed has its deliveries queued, one that did not has
 * none, and a crash in between cannot separate them.  The message is
 * rendered before the commit, so all it names must be known then: a new
 * version's id, and a delete marker's, are drawn by the caller and handed
 * to the commit.  Delivery is events/notify.c's.
 *
 * Configurations and targets are read through a small cache (one second):
 * a write does not pay a database read for them, and a configuration
 * changed on another gateway applies here within a second.  A change made
 * through this gateway applies at once.
 */
#include "s3/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define CACHE_SLOTS 64
#define CACHE_TTL_MS 1000
#define DEFAULT_MAX_ATTEMPTS 10

typedef struct {
    int64_t bucket_id;         /* 0: empty */
    int64_t fetched_ms;
    s3_notify_rule *rules;
    int n;
} slot;

struct s3_notify_cache {
    pthread_mutex_t mu;
    slot slots[CACHE_SLOTS];
    meta_notify_target *targets;
    int ntargets;
    int64_t targets_ms;
};

int s3_notify_cache_new(s3_notify_cache **out) {
    s3_notify_cache *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void s3_notify_cache_free(s3_notify_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SLOTS; i++) free(c->slots[i].rules);
    free(c->targets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void forget(s3_notify_cache *c, int64_t bucket_id) {
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[(uint64_t)bucket_id % CACHE_SLOTS];
    if (s->bucket_id == bucket_id) s->fetched_ms = 0;
    c->targets_ms = 0;
    pthread_mutex_unlock(&c->mu);
}

/* The bucket's rules, fresh within the TTL (c->mu held).  0 (maybe none),
 * or the metadata's error. */
static int rules_locked(s3_notify_cache *c, meta_store *ms, int64_t bucket_id, slot **out) {
    slot *s = &c->slots[(uint64_t)bucket_id % CACHE_SLOTS];
    int64_t now = time_now_ms();
    if (s->bucket_id == bucket_id && now - s->fetched_ms < CACHE_TTL_MS) {
        *out = s;
        return 0;
    }
    char *json = NULL;
    int rc = meta_bucket_notification_get(ms, bucket_id, &json);
    s3_notify_rule *rules = NULL;
    int n = 0;
    if (rc == 0 && s3_notify_rules_from_json(json, &rules, &n) != 0) {
        log_write(LOG_ERROR, NULL, "a bucket's notification configuration does not read back; ignored", NULL);
        rules = NULL, n = 0;
    }
    free(json);
    if (rc != 0 && rc != CAIRN_ENOTFOUND) return rc;
    free(s->rules);
    *s = (slot){bucket_id, now, rules, n};
    *out = s;
    return 0;
}

typedef struct {
    meta_notify_target *l;
    int n;
} target_acc;

/* Collects the targets (the list is copied out before this runs), without
 * their sealed secrets, which nothing here needs. */
static int collect_target(void *ud, const meta_notify_target *t) {
    target_acc *a = ud;
    meta_notify_target *grown = realloc(a->l, (size_t)(a->n + 1) * sizeof *a->l);
    if (!grown) return 1;
    a->l = grown;
    grown[a->n] = *t;
    memset(grown[a->n].secret, 0, sizeof grown[0].secret);
    a->n++;
    return 0;
}

/* The target's max_attempts, from a list fresh within the TTL (c->mu held). */
static int max_attempts_locked(s3_notify_cache *c, meta_store *ms, const char *target) {
    int64_t now = time_now_ms();
    if (now - c->targets_ms >= CACHE_TTL_MS) {
        target_acc a = {0};
        if (meta_notify_target_list(ms, collect_target, &a) == 0) {
            free(c->targets);
            c->targets = a.l;
            c->ntargets = a.n;
            c->targets_ms = now;
        } else {
            free(a.l);
        }
    }
    for (int i = 0; i < c->ntargets; i++)
        if (!strcmp(c->targets[i].name, target)) return c->targets[i].max_attempts;
    return DEFAULT_MAX_ATTEMPTS;
}

void s3_notify_jobs_free(meta_job *jobs, int n) {
    for (int i = 0; i < n; i++) free(jobs[i].args);
    free(jobs);
}

void s3_notify_committed(s3_req *q, int njobs) {
    const s3_jobs *j = &q->gw->d.jobs;
    if (njobs > 0 && j->wake) j->wake(j->ud);
}

int s3_notify_jobs_of(s3_notify_cache *c, meta_store *ms, int64_t bucket_id, const events_object *event,
                      meta_job **jobs, int *njobs) {
    *jobs = NULL;
    *njobs = 0;
    if (!c || bucket_id <= 0) return 0;
    char name[64];
    snprintf(name, sizeof name, "s3:%s", event->name);
    pthread_mutex_lock(&c->mu);
    slot *s;
    int rc = rules_locked(c, ms, bucket_id, &s);
    meta_job *out = NULL;
    int n = 0;
    int64_t now = time_now_us();
    for (int i = 0; rc == 0 && i < s->n; i++) {
        const s3_notify_rule *r = &s->rules[i];
        if (!s3_notify_rule_match(r, name, event->key, event->key_len)) continue;
        events_object e = *event;
        e.time_us = now;
        e.sequencer = events_sequencer(now);
        e.configuration_id = r->id;
        buf_t body;
        buf_init(&body);
        events_render_records(&body, &e);
        json_t *args = body.oom ? NULL : json_pack("{s:s, s:s, s:s%, s:s#}", "target", r->target, "bucket", e.bucket,
                                                   "key", e.key, e.key_len, "body", body.data, body.len);
        buf_free(&body);
        char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
        json_decref(args);
        meta_job *grown = text ? realloc(out, (size_t)(n + 1) * sizeof *out) : NULL;
        if (!grown) {
            free(text);
            rc = CAIRN_ENOMEM;
            break;
        }
        out = grown;
        memset(&out[n], 0, sizeof out[n]);
        snprintf(out[n].kind, sizeof out[n].kind, "notify");
        out[n].args = text;
        out[n].run_at_ms = now / 1000;
        out[n].max_attempts = max_attempts_locked(c, ms, r->target);
        n++;
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != 0) {
        s3_notify_jobs_free(out, n);
        return rc;
    }
    *jobs = out;
    *njobs = n;
    return 0;
}

int s3_notify_jobs(s3_req *q, const char *event, const char *key, size_t key_len, int64_t size, const char *etag,
                   meta_job **jobs, int *njobs) {
    events_object e = {.name = event, .region = q->gw->cfg.region, .bucket = q->bucket, .key = key, .key_len = key_len,
                       .size = size, .etag = etag, .request_id = q->http->request_id,
                       .principal = q->http->principal[0] ? q->http->principal : "anonymous",
                       .source_ip = q->http->remote_addr, .version_id = q->event_version};
    return s3_notify_jobs_of(q->gw->notify, q->gw->d.meta, q->bucket_id, &e, jobs, njobs);
}

/* ---- the API ----------------------------------------------------------------------------------- */

void s3_put_bucket_notification(s3_req *q) {
    s3_notify_rule *rules = NULL;
    int n = 0;
    const char *why = NULL;
    bool inval = false;
    int rc = s3_parse_notification_xml(q->body.data ? q->body.data : "", q->body.len, &rules, &n, &why, &inval);
    if (rc == CAIRN_ENOMEM) {
        s3_error_nomem(q);
        return;
    }
    if (rc != 0) {
        s3_error(q, inval ? "InvalidArgument" : "MalformedXML", why);
        return;
    }
    for (int i = 0; i < n; i++) {
        meta_notify_target t;
        rc = meta_notify_target_get(q->gw->d.meta, rules[i].target, &t);
        if (rc == CAIRN_ENOTFOUND) {
            free(rules);
            s3_error(q, "InvalidArgument", "Unable to validate the following destination configurations: "
                                           "no such webhook target (cairn admin notify target add).");
            return;
        }
        if (rc != 0) {
            free(rules);
            s3_meta_error(q, rc, "InternalError", "reading the notification targets failed");
            return;
        }
    }
    buf_t json;
    buf_init(&json);
    rc = n ? s3_notify_rules_to_json(rules, n, &json) : 0;
    free(rules);
    if (rc == 0) rc = meta_bucket_notification_put(q->gw->d.meta, q->bucket_id, n ? json.data : "");
    buf_free(&json);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the notification configuration failed");
        return;
    }
    if (q->gw->notify) forget(q->gw->notify, q->bucket_id);
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

static void filter_rule_xml(buf_t *b, const char *name, const char *value) {
    if (!value[0]) return;
    buf_printf(b, "<FilterRule><Name>%s</Name><Value>", name);
    buf_xml_escape(b, value, strlen(value));
    buf_puts(b, "</Value></FilterRule>");
}

void s3_get_bucket_notification(s3_req *q) {
    char *json = NULL;
    int rc = meta_bucket_notification_get(q->gw->d.meta, q->bucket_id, &json);
    if (rc != 0 && rc != CAIRN_ENOTFOUND) {
        s3_meta_error(q, rc, "InternalError", "reading the notification configuration failed");
        return;
    }
    s3_notify_rule *rules = NULL;
    int n = 0;
    if (json && s3_notify_rules_from_json(json, &rules, &n) != 0) n = 0;
    free(json);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<NotificationConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < n; i++) {
        const s3_notify_rule *r = &rules[i];
        buf_puts(&b, "<QueueConfiguration><Id>");
        buf_xml_escape(&b, r->id, strlen(r->id));
        buf_printf(&b, "</Id><Queue>arn:cairn:sqs::%s:webhook</Queue>", r->target);
        for (int k = 0; k < r->nevents; k++) buf_printf(&b, "<Event>%s</Event>", r->events[k]);
        if (r->prefix[0] || r->suffix[0]) {
            buf_puts(&b, "<Filter><S3Key>");
            filter_rule_xml(&b, "prefix", r->prefix);
            filter_rule_xml(&b, "suffix", r->suffix);
            buf_puts(&b, "</S3Key></Filter>");
        }
        buf_puts(&b, "</QueueConfiguration>");
    }
    buf_puts(&b, "</NotificationConfiguration>");
    free(rules);
    s3_respond_xml(q, 200, &b);
}
