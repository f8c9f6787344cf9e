/*
 * test_pipeline.c — the S3 request pipeline (src/s3/pipeline.c) through its
 * slots, over a real gateway: SQLite metadata and one local drive in a
 * temporary directory, the HTTP server on loopback, requests signed with
 * SigV4 as a client signs them.  What a test checks is what a client or a
 * registered callback sees: statuses, error codes, headers, the commits a
 * post-commit hook is told of.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth/auth.h"
#include "data/data.h"
#include "http/http.h"
#include "meta/meta.h"
#include "obs/obs.h"
#include "s3/internal.h"

#define ROOT_AK "pipelineroot"
#define ROOT_SK "pipeline-root-secret-0123456789"

/* ---- a gateway on loopback --------------------------------------------------------------- */

typedef struct {
    char dir[64];
    meta_store *ms;
    data_store *ds;
    obs_registry *obs;
    config_t cfg;
    s3_gateway *gw;
    http_server *srv;
    int port;
} gateway_fx;

typedef struct {
    int metrics, empty_now, empty_later;
} job_calls;

static void job_metrics(void *ud, buf_t *out) {
    ((job_calls *)ud)->metrics++;
    buf_puts(out, "test_jobs_metric 1\n");
}

static int job_empty_now(void *ud, int max_batches, int *removed) {
    cr_expect_eq(max_batches, 1, "one batch on the request's thread");
    ((job_calls *)ud)->empty_now++;
    *removed = 0;
    return 0;
}

static int job_empty_later(void *ud) {
    ((job_calls *)ud)->empty_later++;
    return 0;
}

/* The gateway, with the job queue's side played by counters (jobs may be NULL). */
static void fx_up_jobs(gateway_fx *f, job_calls *jobs) {
    cr_assert_eq(core_init(), 0);
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/cairn-test-pipeline-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    char path[160];
    snprintf(path, sizeof path, "%s/log", f->dir);
    FILE *log = fopen(path, "w");
    cr_assert_not_null(log);
    log_set_fd(dup(fileno(log)));
    fclose(log);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    meta_options mo = {.readers = 2, .fsync = false, .busy_timeout_ms = 5000};
    cr_assert_eq(meta_open(path, &mo, &f->ms), 0);
    meta_user root;
    cr_assert_eq(meta_user_ensure_root(f->ms, ROOT_AK, &root), 0);
    snprintf(path, sizeof path, "%s/d0", f->dir);
    const char *drives[] = {path};
    data_options dopt = {.drives = drives, .ndrives = 1, .fsync = false};
    cr_assert_eq(data_open(&dopt, &f->ds, NULL), 0);
    f->obs = obs_new();
    cr_assert_not_null(f->obs);
    config_defaults(&f->cfg);
    s3_deps deps = {.cfg = &f->cfg, .meta = f->ms, .data = f->ds, .obs = f->obs, .root_access_key = ROOT_AK,
                    .root_secret = ROOT_SK, .root_user_id = root.id};
    if (jobs) deps.jobs = (s3_jobs){jobs, job_metrics, job_empty_now, job_empty_later};
    cr_assert_eq(s3_gateway_new(&deps, &f->gw), 0);
}

static void fx_up(gateway_fx *f) { fx_up_jobs(f, NULL); }

/* Starts serving (after the test registered its callbacks), each request's
 * arena holding at most arena_max bytes (0: the default). */
static void fx_serve_arena(gateway_fx *f, size_t arena_max) {
    http_options o = {.listen = "127.0.0.1:0", .connection_limit = 16, .connection_timeout = 30,
                      .max_header_bytes = 65536, .arena_max = arena_max};
    char err[256] = "";
    cr_assert_eq(http_server_start(&o, s3_http_handler(), f->gw, &f->srv, &f->port, err, sizeof err), 0, "%s", err);
}

static void fx_serve(gateway_fx *f) { fx_serve_arena(f, 0); }

static void fx_down(gateway_fx *f) {
    if (f->srv) http_server_stop(f->srv);
    s3_gateway_free(f->gw);
    data_close(f->ds);
    meta_close(f->ms);
    obs_free(f->obs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    cr_expect_eq(system(cmd), 0);
}

/* ---- a client --------------------------------------------------------------------------- */

typedef struct {
    int status;
    char text[16384];           /* the whole response: head and body */
} response;

static void sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char d[32];
    unsigned dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    hex_encode(d, 32, out);
}

/* Sends one signed request (unsigned when anonymous) and reads the answer to
 * the connection's close.  head_only: announce the body with Expect:
 * 100-continue and never send it, as a client does that waits for the
 * server's go-ahead; the answer must then come from the head alone. */
static void exchange(gateway_fx *f, const char *method, const char *path, const char *query, const char *body,
                     bool anonymous, bool head_only, response *out) {
    size_t blen = body ? strlen(body) : 0;
    char host[32], date[20], hash[65];
    snprintf(host, sizeof host, "127.0.0.1:%d", f->port);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", gmtime(&now));
    sha256_hex(body ? body : "", blen, hash);
    auth_header h[3] = {{"Host", 4, host, strlen(host)},
                        {"x-amz-content-sha256", 20, hash, 64},
                        {"x-amz-date", 10, date, strlen(date)}};
    sigv4_request sr = {method, path, query, h, 3};
    buf_t authz;
    buf_init(&authz);
    if (!anonymous)
        cr_assert_eq(sigv4_sign(&sr, ROOT_AK, ROOT_SK, f->cfg.region, "s3", date, "host;x-amz-content-sha256;x-amz-date",
                                hash, &authz), 0);
    buf_t req;
    buf_init(&req);
    buf_printf(&req, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\nx-amz-content-sha256: %s\r\nx-amz-date: %s\r\n", method, path,
               *query ? "?" : "", query, host, hash, date);
    if (!anonymous) buf_printf(&req, "Authorization: %s\r\n", authz.data);
    if (head_only) buf_puts(&req, "Expect: 100-continue\r\n");
    buf_printf(&req, "Content-Length: %zu\r\nConnection: close\r\n\r\n", blen);
    if (blen && !head_only) buf_append(&req, body, blen);
    buf_free(&authz);

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    for (size_t off = 0; off < req.len;) {
        ssize_t w = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    buf_free(&req);
    size_t n = 0;
    for (ssize_t r; (r = recv(fd, out->text + n, sizeof out->text - 1 - n, 0)) > 0;) n += (size_t)r;
    close(fd);
    out->text[n] = '\0';
    out->status = 0;
    cr_assert_eq(sscanf(out->text, "HTTP/1.%*d %d", &out->status), 1, "no status line: %.200s", out->text);
}

static void call(gateway_fx *f, const char *method, const char *path, const char *query, const char *body,
                 bool anonymous, response *out) {
    exchange(f, method, path, query, body, anonymous, false, out);
}

/* The value of response header name (the first), or "" when absent. */
static const char *header_of(const response *r, const char *name) {
    static char v[512];
    v[0] = '\0';
    const char *end = strstr(r->text, "\r\n\r\n");
    size_t n = strlen(name);
    for (const char *p = strstr(r->text, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) || p[2 + n] != ':') continue;
        const char *s = p + 3 + n;
        while (*s == ' ') s++;
        size_t l = strcspn(s, "\r");
        snprintf(v, sizeof v, "%.*s", (int)l, s);
        break;
    }
    return v;
}

/* The text between the first <tag> and the next '<', or "". */
static const char *xml_value(const response *r, const char *tag) {
    static char v[256];
    char open[64];
    snprintf(open, sizeof open, "<%s>", tag);
    v[0] = '\0';
    const char *s = strstr(r->text, open);
    if (s) sscanf(s + strlen(open), "%255[^<]", v);
    return v;
}

/* The <Code> and <Message> of an S3 error body, or "". */
static const char *error_code(const response *r) { return xml_value(r, "Code"); }
static const char *error_message(const response *r) { return xml_value(r, "Message"); }

/* ---- post-commit hooks ------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    char seen[32][160];         /* "api bucket key" per commit */
    int n;
    int64_t last_bucket_id;
} commit_log;

static void record_commit(void *ud, const s3_commit *c) {
    commit_log *l = ud;
    pthread_mutex_lock(&l->mu);
    if (l->n < 32)
        snprintf(l->seen[l->n++], sizeof l->seen[0], "%s %s %.*s", c->api, c->bucket, c->key ? (int)c->key_len : 1,
                 c->key ? c->key : "-");
    l->last_bucket_id = c->bucket_id;
    pthread_mutex_unlock(&l->mu);
}

Test(pipeline, post_commit_hooks_hear_of_every_committed_write_and_nothing_else) {
    gateway_fx f;
    fx_up(&f);
    commit_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    commit_log second = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(s3_hook_add(f.gw, record_commit, &log), 0);
    cr_assert_eq(s3_hook_add(f.gw, record_commit, &second), 0);
    fx_serve(&f);
    response r;
    call(&f, "PUT", "/hooked", "", NULL, false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    cr_expect_gt(log.last_bucket_id, 0, "a created bucket's commit names its id");
    call(&f, "PUT", "/hooked/a", "", "one", false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    call(&f, "PUT", "/hooked/b", "", "two", false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    /* Refused writes commit nothing. */
    call(&f, "PUT", "/nosuchbucket/a", "", "x", false, &r);
    cr_expect_eq(r.status, 404);
    call(&f, "PUT", "/hooked/c", "", "x", true, &r);
    cr_expect_eq(r.status, 403);
    /* Reads commit nothing. */
    call(&f, "GET", "/hooked/a", "", NULL, false, &r);
    cr_expect_eq(r.status, 200);
    call(&f, "DELETE", "/hooked/a", "", NULL, false, &r);
    cr_expect_eq(r.status, 204);
    /* Deleting a key that is not there changes nothing. */
    call(&f, "DELETE", "/hooked/never", "", NULL, false, &r);
    cr_expect_eq(r.status, 204);
    /* DeleteObjects: one commit per key removed. */
    call(&f, "POST", "/hooked", "delete",
         "<Delete><Object><Key>b</Key></Object><Object><Key>missing</Key></Object></Delete>", false, &r);
    cr_expect_eq(r.status, 200, "%s", r.text);
    call(&f, "DELETE", "/hooked", "", NULL, false, &r);
    cr_expect_eq(r.status, 204, "%s", r.text);

    const char *want[] = {"CreateBucket hooked -", "PutObject hooked a", "PutObject hooked b",
                          "DeleteObject hooked a", "DeleteObjects hooked b", "DeleteBucket hooked -"};
    int nwant = (int)(sizeof want / sizeof want[0]);
    cr_assert_eq(log.n, nwant, "%d commits heard", log.n);
    for (int i = 0; i < nwant; i++) {
        cr_expect_str_eq(log.seen[i], want[i]);
        cr_expect_str_eq(second.seen[i], want[i], "every hook hears every commit");
    }
    fx_down(&f);
}

/* ---- response filters ---------------------------------------------------------------------- */

static void stamp(void *ud, const s3_response *resp) {
    char v[160];
    snprintf(v, sizeof v, "%s %s %u %s", (const char *)ud, resp->api, resp->status,
             resp->bucket[0] ? resp->bucket : "-");
    http_add_header(resp->http, "X-Filtered", v);
}

Test(pipeline, response_filters_see_every_response_once_before_it_is_sent) {
    gateway_fx f;
    fx_up(&f);
    cr_assert_eq(s3_filter_add(f.gw, stamp, "f1"), 0);
    fx_serve(&f);
    response r;
    call(&f, "GET", "/health/live", "", NULL, true, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(header_of(&r, "X-Filtered"), "f1 Health 200 -");
    call(&f, "PUT", "/filtered", "", NULL, false, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(header_of(&r, "X-Filtered"), "f1 CreateBucket 200 filtered");
    /* Errors answered from the head, before routing and after it. */
    call(&f, "GET", "/nosuchbucket", "list-type=2", NULL, false, &r);
    cr_expect_str_eq(error_code(&r), "NoSuchBucket");
    cr_expect_str_eq(header_of(&r, "X-Filtered"), "f1 ListObjectsV2 404 nosuchbucket");
    call(&f, "GET", "/filtered/%ZZ", "", NULL, true, &r);
    cr_expect_str_eq(error_code(&r), "InvalidURI");
    cr_expect_str_eq(header_of(&r, "X-Filtered"), "f1 Unknown 400 -");
    /* An error found once the body is in. */
    call(&f, "POST", "/filtered", "delete", "<Delete>", false, &r);
    cr_expect_str_eq(error_code(&r), "MalformedXML");
    cr_expect_str_eq(header_of(&r, "X-Filtered"), "f1 DeleteObjects 400 filtered");
    /* Exactly once per response. */
    const char *first = strstr(r.text, "X-Filtered");
    cr_expect(first && !strstr(first + 1, "X-Filtered"), "%s", r.text);
    fx_down(&f);
}

static void nop_hook(void *ud, const s3_commit *c) { (void)ud, (void)c; }
static void nop_filter(void *ud, const s3_response *r) { (void)ud, (void)r; }

Test(pipeline, each_registry_holds_eight_callbacks) {
    gateway_fx f;
    fx_up(&f);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(s3_hook_add(f.gw, nop_hook, NULL), 0);
        cr_expect_eq(s3_filter_add(f.gw, nop_filter, NULL), 0);
    }
    cr_expect_eq(s3_hook_add(f.gw, nop_hook, NULL), CAIRN_ETOOBIG);
    cr_expect_eq(s3_filter_add(f.gw, nop_filter, NULL), CAIRN_ETOOBIG);
    fx_down(&f);
}

/* ---- the bucket stage --------------------------------------------------------------------- */

/* The bucket is looked up from the head for every route that needs one, so
 * a request whose body would come later is refused before it is sent. */
Test(pipeline, a_missing_bucket_is_answered_before_any_body) {
    gateway_fx f;
    fx_up(&f);
    fx_serve(&f);
    static const char doc[] = "<Delete><Object><Key>k</Key></Object></Delete>";
    response r;
    exchange(&f, "POST", "/nosuchbucket", "delete", doc, false, true, &r);
    cr_expect_eq(r.status, 404, "%s", r.text);
    cr_expect_str_eq(error_code(&r), "NoSuchBucket");
    cr_expect(strstr(r.text, "<BucketName>nosuchbucket</BucketName>"), "%s", r.text);
    exchange(&f, "POST", "/nosuchbucket/k", "uploadId=u",
             "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
             false, true, &r);
    cr_expect_eq(r.status, 404, "%s", r.text);
    cr_expect_str_eq(error_code(&r), "NoSuchBucket");
    exchange(&f, "PUT", "/nosuchbucket/k", "", "object bytes", false, true, &r);
    cr_expect_str_eq(error_code(&r), "NoSuchBucket");
    fx_down(&f);
}

/* ---- the request's arena ------------------------------------------------------------------ */

static bool logged(gateway_fx *f, const char *text) {
    char path[160], cmd[256];
    snprintf(path, sizeof path, "%s/log", f->dir);
    snprintf(cmd, sizeof cmd, "grep -q '%s' %s", text, path);
    return system(cmd) == 0;
}

/* A request whose head needs more than its arena may hold is answered 500
 * InternalError saying so; the same server answers ordinary requests. */
Test(pipeline, a_request_past_its_arena_is_refused_cleanly) {
    gateway_fx f;
    fx_up(&f);
    fx_serve_arena(&f, 40 * 1024);
    response r;
    call(&f, "PUT", "/small-arena", "", NULL, false, &r);
    cr_expect_eq(r.status, 200, "an ordinary request fits: %s", r.text);
    /* A 12 KiB query: its decoded copy needs 24 KiB more than the head. */
    static char query[12 * 1024 + 16];
    strcpy(query, "prefix=");
    memset(query + 7, 'p', 12 * 1024);
    query[7 + 12 * 1024] = '\0';
    call(&f, "GET", "/small-arena", query, NULL, false, &r);
    cr_expect_eq(r.status, 500, "%s", r.text);
    cr_expect_str_eq(error_code(&r), "InternalError");
    cr_expect_str_eq(error_message(&r), "This request needs more memory than the per-request limit allows.");
    cr_expect(logged(&f, "request arena limit reached"));
    call(&f, "GET", "/small-arena", "list-type=2", NULL, false, &r);
    cr_expect_eq(r.status, 200, "the next request is served: %s", r.text);
    fx_down(&f);
}

/* An arena with room for the HTTP request but not the gateway's state: the
 * answer is still an S3 error. */
Test(pipeline, a_request_whose_state_does_not_fit_its_arena_is_refused_cleanly) {
    gateway_fx f;
    fx_up(&f);
    fx_serve_arena(&f, sizeof(http_req) + 1024);
    response r;
    call(&f, "GET", "/health/live", "", NULL, true, &r);
    cr_expect_eq(r.status, 500, "%s", r.text);
    cr_expect_str_eq(error_code(&r), "InternalError");
    cr_expect_str_eq(error_message(&r), "This request needs more memory than the per-request limit allows.");
    cr_expect(strstr(r.text, "<Resource>/health/live</Resource>"), "%s", r.text);
    cr_expect(logged(&f, "request refused before the gateway took it"));
    fx_down(&f);
}

/* ---- what the gateway asks of the job queue ---------------------------------------------------- */

/* s3/ does not include jobs/: what it needs of the queue comes through
 * s3_deps.jobs, which cmd/ wires.  /metrics renders the queue's figures;
 * a multipart version replaced or deleted empties a batch of the trash at
 * once; a deleted bucket leaves its aborted uploads' parts to a job. */
Test(pipeline, the_job_queue_is_reached_through_the_callbacks_cmd_wires) {
    gateway_fx f;
    job_calls jobs = {0};
    fx_up_jobs(&f, &jobs);
    fx_serve(&f);
    response r;
    call(&f, "GET", "/metrics", "", NULL, true, &r);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.text, "\ntest_jobs_metric 1\n"), "the queue's figures are on /metrics");
    cr_expect_eq(jobs.metrics, 1);

    call(&f, "PUT", "/trash", "", NULL, false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    call(&f, "POST", "/trash/mp", "uploads", NULL, false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    char upload[128], query[200], doc[400];
    snprintf(upload, sizeof upload, "%s", xml_value(&r, "UploadId"));
    snprintf(query, sizeof query, "partNumber=1&uploadId=%s", upload);
    call(&f, "PUT", "/trash/mp", query, "the only part", false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    snprintf(doc, sizeof doc, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
             "</CompleteMultipartUpload>", header_of(&r, "ETag"));
    snprintf(query, sizeof query, "uploadId=%s", upload);
    call(&f, "POST", "/trash/mp", query, doc, false, &r);
    cr_assert_eq(r.status, 200, "%s", r.text);
    cr_expect_eq(jobs.empty_now, 0);
    call(&f, "DELETE", "/trash/mp", "", NULL, false, &r);
    cr_expect_eq(r.status, 204);
    cr_expect_eq(jobs.empty_now, 1, "deleting a multipart version empties a batch of the trash");
    cr_expect_eq(jobs.empty_later, 0, "the batch emptied it: no job");

    call(&f, "DELETE", "/trash", "", NULL, false, &r);
    cr_expect_eq(r.status, 204, "%s", r.text);
    cr_expect_eq(jobs.empty_later, 1, "a deleted bucket's trash is a job's");
    fx_down(&f);
}
