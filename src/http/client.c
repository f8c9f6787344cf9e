/*
 * client.c — the outbound HTTP client (http.h): libcurl's easy interface,
 * one handle per client, so a shipper thread keeps its connection alive
 * across batches.  Every call is bounded by its connect and total timeouts;
 * nothing here retries (callers decide: a 4xx is never retried).
 */
#include "http/http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct http_client {
    CURL *h;
    int connect_timeout_ms, timeout_ms;
    size_t max_response;
    char *ca_file;              /* NULL: the system CAs */
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int http_client_new(int connect_timeout_ms, int timeout_ms, size_t max_response, http_client **out) {
    *out = NULL;
    pthread_once(&once, global_init);
    if (global_rc != CURLE_OK) return CAIRN_EIO;
    http_client *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    if (!(c->h = curl_easy_init())) {
        free(c);
        return CAIRN_ENOMEM;
    }
    c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 2000;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    c->max_response = max_response ? max_response : 64 * 1024;
    *out = c;
    return 0;
}

void http_client_free(http_client *c) {
    if (!c) return;
    curl_easy_cleanup(c->h);
    free(c->ca_file);
    free(c);
}

int http_client_set_ca(http_client *c, const char *ca_file) {
    char *copy = NULL;
    if (ca_file && ca_file[0] && !(copy = strdup(ca_file))) return CAIRN_ENOMEM;
    free(c->ca_file);
    c->ca_file = copy;
    return 0;
}

typedef struct {
    buf_t *out;
    size_t max;
} sink;

/* Keeps the first max bytes of the answer (an error's reason), drops the rest. */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    sink *s = ud;
    size_t len = size * n;
    if (s->out && s->out->len < s->max) {
        size_t take = s->max - s->out->len < len ? s->max - s->out->len : len;
        buf_append(s->out, p, take);
    }
    return len;
}

/* One request: a POST of body when post, else a GET. */
static int perform(http_client *c, bool post, const char *url, const char *content_type, const char *const *headers,
                   const void *body, size_t len, long *status, buf_t *response) {
    *status = 0;
    if (response) buf_reset(response);
    struct curl_slist *hl = NULL, *t;
    if (post) {
        char ct[160];
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/octet-stream");
        if (!(t = curl_slist_append(hl, ct))) return CAIRN_ENOMEM;
        hl = t;
        if (!(t = curl_slist_append(hl, "Expect:"))) { /* no 100-continue round trip */
            curl_slist_free_all(hl);
            return CAIRN_ENOMEM;
        }
        hl = t;
    }
    for (int i = 0; headers && headers[i]; i++) {
        if (!(t = curl_slist_append(hl, headers[i]))) {
            curl_slist_free_all(hl);
            return CAIRN_ENOMEM;
        }
        hl = t;
    }
    sink s = {response, c->max_response};
    CURL *h = c->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (c->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file); /* peer and host name are verified either way */
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hl);
    if (rc == CURLE_OPERATION_TIMEDOUT) return CAIRN_ETIMEDOUT;
    if (rc == CURLE_OUT_OF_MEMORY) return CAIRN_ENOMEM;
    if (rc != CURLE_OK) return CAIRN_EIO;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (response && response->oom) return CAIRN_ENOMEM;
    return 0;
}

int http_client_post(http_client *c, const char *url, const char *content_type, const char *const *headers,
                     const void *body, size_t len, long *status, buf_t *response) {
    return perform(c, true, url, content_type, headers, body, len, status, response);
}

int http_client_get(http_client *c, const char *url, const char *const *headers, long *status, buf_t *response) {
    return perform(c, false, url, NULL, headers, NULL, 0, status, response);
}
