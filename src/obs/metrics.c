/*
 * metrics.c — the registry behind obs.h.  Small fixed tables: APIs are a few
 * dozen names and each sees a handful of status codes, so linear search under
 * one mutex is cheaper than anything cleverer.
 */
#include "obs/obs.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_APIS 64
#define MAX_CODES 16
#define MAX_COUNTERS 32
#define MAX_GAUGES 16

static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NBUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])

typedef struct {
    const char *api;
    unsigned codes[MAX_CODES];
    uint64_t code_count[MAX_CODES];
    int ncodes;
    uint64_t buckets[NBUCKETS];
    uint64_t count;
    double sum;
} api_stats;

typedef struct {
    const char *name;
    const char *help;
    uint64_t value;
} counter;

typedef struct {
    const char *name;
    const char *help;
    char labels[64];
    int64_t value;
} gauge;

struct obs_registry {
    bool off;                  /* metrics_enabled false: nothing is recorded */
    pthread_mutex_t mu;
    api_stats apis[MAX_APIS];
    int napis;
    counter counters[MAX_COUNTERS];
    int ncounters;
    gauge gauges[MAX_GAUGES];
    int ngauges;
    uint64_t bytes_in, bytes_out;
    int64_t inflight;
};

obs_registry *obs_new(void) {
    obs_registry *o = calloc(1, sizeof *o);
    if (o) pthread_mutex_init(&o->mu, NULL);
    return o;
}

void obs_set_enabled(obs_registry *o, bool on) { o->off = !on; }

void obs_free(obs_registry *o) {
    if (!o) return;
    pthread_mutex_destroy(&o->mu);
    free(o);
}

static api_stats *find_api(obs_registry *o, const char *api) {
    for (int i = 0; i < o->napis; i++)
        if (o->apis[i].api == api || strcmp(o->apis[i].api, api) == 0) return &o->apis[i];
    if (o->napis == MAX_APIS) return NULL;
    api_stats *a = &o->apis[o->napis++];
    a->api = api;
    return a;
}

void obs_request(obs_registry *o, const char *api, unsigned status, double seconds,
                 uint64_t bytes_in, uint64_t bytes_out) {
    if (!o || o->off) return;
    pthread_mutex_lock(&o->mu);
    o->bytes_in += bytes_in;
    o->bytes_out += bytes_out;
    api_stats *a = find_api(o, api);
    if (a) {
        int i;
        for (i = 0; i < a->ncodes && a->codes[i] != status; i++) {}
        if (i == a->ncodes && a->ncodes < MAX_CODES) a->codes[a->ncodes++] = status;
        if (i < a->ncodes) a->code_count[i]++;
        for (size_t b = 0; b < NBUCKETS; b++)
            if (seconds <= bucket_bounds[b]) a->buckets[b]++;
        a->count++;
        a->sum += seconds;
    }
    pthread_mutex_unlock(&o->mu);
}

void obs_inflight(obs_registry *o, int delta) {
    if (!o || o->off) return;
    pthread_mutex_lock(&o->mu);
    o->inflight += delta;
    pthread_mutex_unlock(&o->mu);
}

void obs_counter_add(obs_registry *o, const char *name, const char *help, uint64_t v) {
    if (!o || o->off) return;
    pthread_mutex_lock(&o->mu);
    int i;
    for (i = 0; i < o->ncounters && strcmp(o->counters[i].name, name) != 0; i++) {}
    if (i == o->ncounters && o->ncounters < MAX_COUNTERS) {
        o->counters[i] = (counter){name, help, 0};
        o->ncounters++;
    }
    if (i < o->ncounters) o->counters[i].value += v;
    pthread_mutex_unlock(&o->mu);
}

void obs_gauge_set(obs_registry *o, const char *name, const char *labels, const char *help, int64_t v) {
    if (!o || o->off) return;
    labels = labels ? labels : "";
    pthread_mutex_lock(&o->mu);
    int i;
    for (i = 0; i < o->ngauges && (strcmp(o->gauges[i].name, name) || strcmp(o->gauges[i].labels, labels)); i++) {}
    if (i == o->ngauges && o->ngauges < MAX_GAUGES && strlen(labels) < sizeof o->gauges[i].labels) {
        o->gauges[i] = (gauge){.name = name, .help = help};
        snprintf(o->gauges[i].labels, sizeof o->gauges[i].labels, "%s", labels);
        o->ngauges++;
    }
    if (i < o->ngauges) o->gauges[i].value = v;
    pthread_mutex_unlock(&o->mu);
}

/* Every gauge of one name, under one HELP and TYPE (the exposition format
 * allows one per name), the first time the name comes up. */
static void render_gauges(const obs_registry *o, buf_t *out) {
    for (int i = 0; i < o->ngauges; i++) {
        int first;
        for (first = 0; strcmp(o->gauges[first].name, o->gauges[i].name); first++) {}
        if (first != i) continue;
        buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", o->gauges[i].name, o->gauges[i].help, o->gauges[i].name);
        for (int j = i; j < o->ngauges; j++)
            if (!strcmp(o->gauges[j].name, o->gauges[i].name))
                buf_printf(out, "%s%s%s%s %lld\n", o->gauges[j].name, o->gauges[j].labels[0] ? "{" : "",
                           o->gauges[j].labels, o->gauges[j].labels[0] ? "}" : "", (long long)o->gauges[j].value);
    }
}

int obs_process_rss(int64_t *rss) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return CAIRN_EIO;
    long pages_total, pages_rss;
    int n = fscanf(f, "%ld %ld", &pages_total, &pages_rss);
    fclose(f);
    if (n != 2) return CAIRN_EIO;
    *rss = (int64_t)pages_rss * sysconf(_SC_PAGESIZE);
    return 0;
}

int obs_process_fds(int64_t *fds) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return CAIRN_EIO;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    *fds = n - 1; /* the directory stream's own fd */
    return 0;
}

void obs_render(obs_registry *o, buf_t *out) {
    pthread_mutex_lock(&o->mu);
    buf_puts(out, "# HELP cairn_http_requests_total HTTP requests by S3 API and status code.\n"
                  "# TYPE cairn_http_requests_total counter\n");
    for (int i = 0; i < o->napis; i++)
        for (int c = 0; c < o->apis[i].ncodes; c++) {
            buf_puts(out, "cairn_http_requests_total{api=\"");
            buf_prom_label(out, o->apis[i].api);
            buf_printf(out, "\",code=\"%u\"} %llu\n", o->apis[i].codes[c],
                       (unsigned long long)o->apis[i].code_count[c]);
        }
    buf_puts(out, "# HELP cairn_http_request_duration_seconds Request latency by S3 API.\n"
                  "# TYPE cairn_http_request_duration_seconds histogram\n");
    buf_t label;
    buf_init(&label);
    for (int i = 0; i < o->napis; i++) {
        const api_stats *a = &o->apis[i];
        buf_reset(&label);
        buf_prom_label(&label, a->api);
        const char *api = label.data ? label.data : "";
        for (size_t b = 0; b < NBUCKETS; b++)
            buf_printf(out, "cairn_http_request_duration_seconds_bucket{api=\"%s\",le=\"%g\"} %llu\n",
                       api, bucket_bounds[b], (unsigned long long)a->buckets[b]);
        buf_printf(out, "cairn_http_request_duration_seconds_bucket{api=\"%s\",le=\"+Inf\"} %llu\n",
                   api, (unsigned long long)a->count);
        buf_printf(out, "cairn_http_request_duration_seconds_sum{api=\"%s\"} %.6f\n", api, a->sum);
        buf_printf(out, "cairn_http_request_duration_seconds_count{api=\"%s\"} %llu\n", api,
                   (unsigned long long)a->count);
    }
    buf_free(&label);
    buf_printf(out, "# HELP cairn_http_received_bytes_total Request body bytes received.\n"
                    "# TYPE cairn_http_received_bytes_total counter\n"
                    "cairn_http_received_bytes_total %llu\n", (unsigned long long)o->bytes_in);
    buf_printf(out, "# HELP cairn_http_sent_bytes_total Response body bytes sent.\n"
                    "# TYPE cairn_http_sent_bytes_total counter\n"
                    "cairn_http_sent_bytes_total %llu\n", (unsigned long long)o->bytes_out);
    buf_printf(out, "# HELP cairn_http_requests_in_flight Requests being served.\n"
                    "# TYPE cairn_http_requests_in_flight gauge\n"
                    "cairn_http_requests_in_flight %lld\n", (long long)o->inflight);
    for (int i = 0; i < o->ncounters; i++)
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", o->counters[i].name,
                   o->counters[i].help, o->counters[i].name, o->counters[i].name,
                   (unsigned long long)o->counters[i].value);
    render_gauges(o, out);
    pthread_mutex_unlock(&o->mu);
    int64_t rss = 0, fds = 0;
    if (obs_process_rss(&rss) == 0)
        buf_printf(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %lld\n", (long long)rss);
    if (obs_process_fds(&fds) == 0)
        buf_printf(out, "# HELP process_open_fds Number of open file descriptors.\n"
                        "# TYPE process_open_fds gauge\nprocess_open_fds %lld\n", (long long)fds);
}
