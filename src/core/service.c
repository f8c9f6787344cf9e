/*
 * service.c — the service registry (core.h): one lifecycle for every
 * component of a process.
 *
 * Order.  svc_start_all sorts the services topologically over their needs
 * (Kahn's algorithm, ties broken by the order they were added, so a start
 * is the same every time), refusing a cycle or an unknown name before any
 * service starts.  Stops run in the reverse of the order the starts
 * succeeded in.
 *
 * Deadlines.  A stop runs on a thread of its own and the registry waits for
 * it until the service's timeout.  A stop that overruns cannot be cancelled
 * safely, so it is left running (its thread detached) and logged; the
 * services it needs are then not stopped, since it may still use them: the
 * process exits with them up, which is safer than freeing them under it.
 * The stop's thread and the registry share a small record that whichever
 * finishes last frees.
 */
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SVC_MAX 64
#define SVC_NAME_MAX 64

typedef struct {
    char name[SVC_NAME_MAX];
    char needs[SVC_MAX][SVC_NAME_MAX];
    int nneeds;
    int (*start)(void *ud);
    void (*stop)(void *ud);
    void *ud;
    int stop_timeout_ms;
    bool left_running;         /* its stop overran: what it needs stays up */
} svc;

struct svc_registry {
    svc *v[SVC_MAX];
    int n;
    int started[SVC_MAX];      /* indexes into v, in start order */
    int nstarted;
    int default_timeout_ms;
};

int svc_registry_new(int default_stop_timeout_ms, svc_registry **out) {
    if (!out || default_stop_timeout_ms <= 0) return CAIRN_EINVAL;
    svc_registry *r = calloc(1, sizeof *r);
    if (!r) return CAIRN_ENOMEM;
    r->default_timeout_ms = default_stop_timeout_ms;
    *out = r;
    return 0;
}

void svc_registry_free(svc_registry *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->v[i]);
    free(r);
}

static int find(const svc_registry *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->v[i]->name, name)) return i;
    return -1;
}

int svc_add(svc_registry *r, const svc_def *d) {
    if (!r || !d || !d->name || !d->name[0] || strlen(d->name) >= SVC_NAME_MAX || strchr(d->name, ','))
        return CAIRN_EINVAL;
    if (r->nstarted) return CAIRN_EINVAL; /* the order is fixed once started */
    if (find(r, d->name) >= 0) return CAIRN_EEXIST;
    if (r->n == SVC_MAX) return CAIRN_ETOOBIG;
    svc *s = calloc(1, sizeof *s);
    if (!s) return CAIRN_ENOMEM;
    snprintf(s->name, sizeof s->name, "%s", d->name);
    for (const char *p = d->needs ? d->needs : ""; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= SVC_NAME_MAX || s->nneeds == SVC_MAX) {
            free(s);
            return CAIRN_EINVAL;
        }
        memcpy(s->needs[s->nneeds], p, len);
        s->needs[s->nneeds++][len] = '\0';
        p += len;
        if (*p == ',') p++;
    }
    s->start = d->start;
    s->stop = d->stop;
    s->ud = d->ud;
    s->stop_timeout_ms = d->stop_timeout_ms > 0 ? d->stop_timeout_ms : r->default_timeout_ms;
    r->v[r->n++] = s;
    return 0;
}

static void say(char *why, size_t whylen, const char *fmt, const char *a, const char *b) {
    if (why && whylen) snprintf(why, whylen, fmt, a, b);
}

/* The start order into order[]; CAIRN_EINVAL (why filled) for an unknown
 * need or a cycle. */
static int sort(const svc_registry *r, int order[SVC_MAX], char *why, size_t whylen) {
    int pending[SVC_MAX] = {0}; /* needs not yet placed */
    for (int i = 0; i < r->n; i++) {
        for (int k = 0; k < r->v[i]->nneeds; k++) {
            int j = find(r, r->v[i]->needs[k]);
            if (j < 0) {
                say(why, whylen, "%s needs %s, which is not a service", r->v[i]->name, r->v[i]->needs[k]);
                return CAIRN_EINVAL;
            }
            if (j == i) {
                say(why, whylen, "%s needs itself%s", r->v[i]->name, "");
                return CAIRN_EINVAL;
            }
        }
        pending[i] = r->v[i]->nneeds;
    }
    bool placed[SVC_MAX] = {0};
    int n = 0;
    while (n < r->n) {
        int next = -1;
        for (int i = 0; i < r->n && next < 0; i++)
            if (!placed[i] && pending[i] == 0) next = i;
        if (next < 0) {
            /* Every unplaced service waits on another: name one in a cycle. */
            for (int i = 0; i < r->n; i++)
                if (!placed[i]) {
                    say(why, whylen, "a dependency cycle among the services, through %s%s", r->v[i]->name, "");
                    break;
                }
            return CAIRN_EINVAL;
        }
        placed[next] = true;
        order[n++] = next;
        for (int i = 0; i < r->n; i++)
            for (int k = 0; k < r->v[i]->nneeds; k++)
                if (!strcmp(r->v[i]->needs[k], r->v[next]->name)) pending[i]--;
    }
    return 0;
}

/* What a stop's thread and the registry share; the last one out frees it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*stop)(void *ud);
    void *ud;
    bool done;
    int refs;
} stop_job;

static void job_release(stop_job *j) {
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void *stop_main(void *arg) {
    pthread_setname_np(pthread_self(), "service-stop");
    stop_job *j = arg;
    j->stop(j->ud);
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return NULL;
}

/* Runs s's stop within its timeout: true when it finished.  Without a
 * thread (none can be had) the stop runs here, with no deadline. */
static bool stop_within(svc *s) {
    if (!s->stop) return true;
    stop_job *j = calloc(1, sizeof *j);
    pthread_t t;
    if (j) {
        pthread_mutex_init(&j->mu, NULL);
        pthread_cond_init(&j->cv, NULL);
        j->stop = s->stop;
        j->ud = s->ud;
        j->refs = 2;
    }
    if (!j || pthread_create(&t, NULL, stop_main, j) != 0) {
        if (j) {
            pthread_mutex_destroy(&j->mu);
            pthread_cond_destroy(&j->cv);
            free(j);
        }
        log_write(LOG_WARN, NULL, "stopping a service without its deadline: no thread for it", "service", s->name, NULL);
        s->stop(s->ud);
        return true;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + (int64_t)(s->stop_timeout_ms % 1000) * 1000000;
    until.tv_sec += s->stop_timeout_ms / 1000 + ns / 1000000000;
    until.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&j->mu);
    while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT) {
    }
    bool done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (done) pthread_join(t, NULL);
    else pthread_detach(t);
    job_release(j);
    return done;
}

/* Whether a service still running (not stopped, or left running) needs s. */
static bool needed_by_left_running(const svc_registry *r, const svc *s) {
    for (int i = 0; i < r->n; i++) {
        if (!r->v[i]->left_running) continue;
        for (int k = 0; k < r->v[i]->nneeds; k++)
            if (!strcmp(r->v[i]->needs[k], s->name)) return true;
    }
    return false;
}

int svc_stop_all(svc_registry *r) {
    if (!r) return 0;
    int rc = 0;
    while (r->nstarted > 0) {
        svc *s = r->v[r->started[--r->nstarted]];
        if (needed_by_left_running(r, s)) {
            log_write(LOG_ERROR, NULL, "service left running: a service whose stop overran needs it", "service",
                      s->name, NULL);
            s->left_running = true;
            continue;
        }
        char ms[24];
        if (!stop_within(s)) {
            log_write(LOG_ERROR, NULL, "service stop overran its deadline; left running", "service", s->name,
                      "timeout_ms", log_int(ms, s->stop_timeout_ms), NULL);
            s->left_running = true;
            rc = CAIRN_ETIMEDOUT;
        }
    }
    return rc;
}

int svc_start_all(svc_registry *r, char *why, size_t whylen) {
    if (why && whylen) why[0] = '\0';
    if (!r || r->nstarted) return CAIRN_EINVAL;
    int order[SVC_MAX];
    int rc = sort(r, order, why, whylen);
    if (rc != 0) return rc;
    for (int i = 0; i < r->n; i++) {
        svc *s = r->v[order[i]];
        rc = s->start ? s->start(s->ud) : 0;
        if (rc != 0) {
            say(why, whylen, "%s did not start: %s", s->name, cairn_strerror(rc));
            svc_stop_all(r);
            return rc;
        }
        r->started[r->nstarted++] = order[i];
    }
    return 0;
}

int svc_running(const svc_registry *r) { return r ? r->nstarted : 0; }

const char *svc_started_name(const svc_registry *r, int i) {
    return r && i >= 0 && i < r->nstarted ? r->v[r->started[i]]->name : NULL;
}
