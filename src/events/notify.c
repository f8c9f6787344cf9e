/*
 * notify.c — delivery of bucket notifications (docs/notifications.md): the
 * handler of the durable job kind "notify".
 *
 * Each job was enqueued in the same transaction as the object change it
 * tells of (s3/notify.c), so it exists exactly when the change does.  A run
 * POSTs the job's S3 event message to its target's URL:
 *
 *   Content-Type: application/json
 *   X-Cairn-Delivery: <job id>       the same on every attempt: receivers
 *                                    drop a delivery they have seen
 *   X-Cairn-Attempt: <n>
 *   X-Cairn-Signature: sha256=<hex>  HMAC-SHA256 of the body with the
 *                                    target's secret, when it has one
 *
 * and succeeds on a 2xx answer.  Anything else (another status, a timeout,
 * no connection) fails the run, which the job queue retries after a backoff
 * with full jitter, up to the target's max_attempts; then the job is
 * discarded: a dead letter with its last error, listed and retried with
 * `cairn admin jobs`.  Delivery is at least once: a receiver that answered
 * after the run's lease ran out, or a gateway killed between the answer and
 * the job's finish, gets the event again (with the same delivery id).
 *
 * A target that is down makes its events wait in the queue.  When a
 * delivery fails, the target's pending count is checked (at most every ten
 * seconds a target); past notify_max_pending the target is reported — a
 * log line and the gauge cairn_notify_over_limit{target} — and its events
 * keep queueing: none is dropped.
 *
 * Per-key order (targets added with --ordered): a delivery waits
 * (JOBS_DEFER: back to the queue without counting an attempt) while an
 * earlier event of the same bucket and key for the same target is pending
 * (available, running or retrying).  Events of one key are enqueued in
 * commit order (the object's row is locked by the change that enqueues
 * them), so they are delivered in that order; one that becomes a dead
 * letter no longer holds the ones after it.
 *
 * Each worker thread keeps one HTTP client (connections are reused).
 */
#include "events/events.h"
#include "jobs/jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#define CHECK_EVERY_MS 10000
#define MAX_TRACKED 64

struct events_notify {
    events_notify_options o;
    pthread_key_t client_key;
    pthread_mutex_t mu;
    struct {
        char name[64];
        int64_t checked_ms;
        int64_t pending;
        bool over;
    } targets[MAX_TRACKED];    /* under mu */
    int ntargets;
    atomic_ullong delivered, failed;
};

static void free_client(void *c) { http_client_free(c); }

int events_notify_new(const events_notify_options *o, events_notify **out) {
    events_notify *n = calloc(1, sizeof *n);
    if (!n) return CAIRN_ENOMEM;
    n->o = *o;
    if (n->o.timeout_ms <= 0) n->o.timeout_ms = 5000;
    if (pthread_key_create(&n->client_key, free_client) != 0) {
        free(n);
        return CAIRN_ENOMEM;
    }
    pthread_mutex_init(&n->mu, NULL);
    *out = n;
    return 0;
}

void events_notify_free(events_notify *n) {
    if (!n) return;
    /* The workers have exited (the queue is freed first); their clients went with them. */
    pthread_key_delete(n->client_key);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

static http_client *client_of(events_notify *n) {
    http_client *c = pthread_getspecific(n->client_key);
    if (c) return c;
    if (http_client_new(n->o.timeout_ms, n->o.timeout_ms, 4096, &c) != 0) return NULL;
    if (n->o.tls_ca && n->o.tls_ca[0] && http_client_set_ca(c, n->o.tls_ca) != 0) {
        http_client_free(c);
        return NULL;
    }
    pthread_setspecific(n->client_key, c);
    return c;
}

/* After a failed delivery: is target past notify_max_pending?  Looked at
 * every CHECK_EVERY_MS at most per target. */
static void check_pending(events_notify *n, const char *target) {
    int64_t now = time_now_ms();
    pthread_mutex_lock(&n->mu);
    int i;
    for (i = 0; i < n->ntargets && strcmp(n->targets[i].name, target) != 0; i++) {
    }
    if (i == n->ntargets) {
        if (i == MAX_TRACKED) i = (int)(now % MAX_TRACKED);   /* reuse a slot */
        else n->ntargets++;
        memset(&n->targets[i], 0, sizeof n->targets[i]);
        snprintf(n->targets[i].name, sizeof n->targets[i].name, "%s", target);
    }
    bool due = now - n->targets[i].checked_ms >= CHECK_EVERY_MS;
    if (due) n->targets[i].checked_ms = now;
    pthread_mutex_unlock(&n->mu);
    if (!due) return;
    char needle[96];
    snprintf(needle, sizeof needle, "\"target\":\"%s\"", target);
    int64_t pending = 0;
    if (meta_job_pending_count(n->o.meta, "notify", needle, &pending) != 0) return;
    bool over = n->o.max_pending > 0 && pending > n->o.max_pending;
    pthread_mutex_lock(&n->mu);
    n->targets[i].pending = pending;
    n->targets[i].over = over;
    pthread_mutex_unlock(&n->mu);
    if (over) {
        char p[24], m[24];
        log_write(LOG_WARN, NULL, "notification target is behind: its events keep queueing (notify_max_pending)",
                  "target", target, "pending", log_int(p, pending), "notify_max_pending", log_int(m, n->o.max_pending),
                  NULL);
    }
}

/* 1 when an earlier delivery of the same target, bucket and key is still
 * pending, 0 when none is, -1 when that cannot be known.  The jobs' args
 * begin {"target":..,"bucket":..,"key":.. (s3/notify.c writes them so):
 * that prefix, rendered the same way, is what the count looks for. */
static int earlier_pending(events_notify *n, const meta_job *job, json_t *args) {
    json_t *k = json_pack("{s:O, s:O, s:O}", "target", json_object_get(args, "target"), "bucket",
                          json_object_get(args, "bucket"), "key", json_object_get(args, "key"));
    char *text = k ? json_dumps(k, JSON_COMPACT) : NULL;
    json_decref(k);
    if (!text) return -1;
    size_t l = strlen(text);
    text[l - 1] = ',';              /* the closing brace: more members follow in the job's args */
    int64_t count = 0;
    int rc = meta_job_pending_before(n->o.meta, "notify", text, job->id, &count);
    free(text);
    return rc != 0 ? -1 : count > 0;
}

int events_notify_job(void *ud, const meta_job *job, char *err, size_t errlen) {
    events_notify *n = ud;
    json_t *args = json_loads(job->args ? job->args : "", 0, NULL);
    const char *target = json_string_value(json_object_get(args, "target"));
    const char *body = json_string_value(json_object_get(args, "body"));
    if (!target || !body) {
        snprintf(err, errlen, "malformed notify job arguments");
        json_decref(args);
        return -1;
    }
    meta_notify_target t;
    int rc = meta_notify_target_get(n->o.meta, target, &t);
    if (rc != 0) {
        snprintf(err, errlen, rc == CAIRN_ENOTFOUND ? "no webhook target '%s' (removed?)" : "reading target '%s': %s",
                 target, cairn_strerror(rc));
        json_decref(args);
        return -1;
    }
    if (t.ordered) {
        int wait = earlier_pending(n, job, args);
        if (wait != 0) {
            if (wait < 0) snprintf(err, errlen, "cannot check the order of target '%s'", target);
            json_decref(args);
            return wait > 0 ? JOBS_DEFER : -1;
        }
    }
    size_t blen = strlen(body);
    char id[24], attempt[24], sig[128] = "";
    snprintf(id, sizeof id, "%lld", (long long)job->id);
    snprintf(attempt, sizeof attempt, "%d", job->attempts);
    if (t.secret[0]) {
        buf_t secret;
        buf_init(&secret);
        rc = n->o.open_secret ? n->o.open_secret(n->o.secret_ud, t.secret, &secret) : CAIRN_EINVAL;
        if (rc == 0) {
            unsigned char mac[32];
            unsigned ml = 0;
            HMAC(EVP_sha256(), secret.data, (int)secret.len, (const unsigned char *)body, blen, mac, &ml);
            char hex[65];
            hex_encode(mac, 32, hex);
            snprintf(sig, sizeof sig, "X-Cairn-Signature: sha256=%s", hex);
        }
        if (secret.data) sodium_memzero(secret.data, secret.len);
        buf_free(&secret);
        if (rc != 0) {
            snprintf(err, errlen, "cannot open the secret of target '%s': %s", target, cairn_strerror(rc));
            json_decref(args);
            return -1;
        }
    }
    char h_id[64], h_attempt[64], h_target[96];
    snprintf(h_id, sizeof h_id, "X-Cairn-Delivery: %s", id);
    snprintf(h_attempt, sizeof h_attempt, "X-Cairn-Attempt: %s", attempt);
    snprintf(h_target, sizeof h_target, "X-Cairn-Target: %s", target);
    const char *headers[] = {h_id, h_attempt, h_target, sig[0] ? sig : NULL, NULL};
    http_client *c = client_of(n);
    long status = 0;
    rc = c ? http_client_post(c, t.url, "application/json", headers, body, blen, &status, NULL) : CAIRN_ENOMEM;
    if (rc == 0 && status >= 200 && status < 300) {
        atomic_fetch_add(&n->delivered, 1);
        json_decref(args);
        return 0;
    }
    atomic_fetch_add(&n->failed, 1);
    if (rc == 0) snprintf(err, errlen, "target '%s' answered HTTP %ld", target, status);
    else snprintf(err, errlen, "target '%s': %s", target, cairn_strerror(rc));
    check_pending(n, target);
    json_decref(args);          /* target and body point into it */
    return -1;
}

void events_notify_render_metrics(events_notify *n, buf_t *out) {
    if (!n) return;
    buf_printf(out,
               "# HELP cairn_notify_delivered_total Bucket notifications a target accepted (2xx).\n"
               "# TYPE cairn_notify_delivered_total counter\ncairn_notify_delivered_total %llu\n"
               "# HELP cairn_notify_failed_total Delivery attempts that failed (retried, or dead letters at the last).\n"
               "# TYPE cairn_notify_failed_total counter\ncairn_notify_failed_total %llu\n"
               "# HELP cairn_notify_pending Events waiting for a target, as last counted after a failed delivery.\n"
               "# TYPE cairn_notify_pending gauge\n",
               (unsigned long long)atomic_load(&n->delivered), (unsigned long long)atomic_load(&n->failed));
    pthread_mutex_lock(&n->mu);
    for (int i = 0; i < n->ntargets; i++) buf_printf(out, "cairn_notify_pending{target=\"%s\"} %lld\n",
                                                      n->targets[i].name, (long long)n->targets[i].pending);
    buf_puts(out, "# HELP cairn_notify_over_limit 1 while a target has more than notify_max_pending events waiting.\n"
                  "# TYPE cairn_notify_over_limit gauge\n");
    for (int i = 0; i < n->ntargets; i++)
        buf_printf(out, "cairn_notify_over_limit{target=\"%s\"} %d\n", n->targets[i].name, n->targets[i].over ? 1 : 0);
    pthread_mutex_unlock(&n->mu);
}
