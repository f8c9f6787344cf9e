/*
 * audit_cmd.c — `cairn admin audit query ...`: the audit store's events as
 * JSON lines, one event per line, in (time, event_id) order, following the
 * pages to the end (or to --limit events).
 *
 * Without --url it reads the local metadata database (the one `cairn
 * admin` opens: --data, metadata_url).  With --url http://HOST:PORT it asks
 * that audit-server (or server, or gateway) with GET /audit/v1/events,
 * signed with SigV4 by --access-key/--secret-key, else the root
 * credentials of the configuration (CAIRN_ROOT_USER, CAIRN_ROOT_PASSWORD).
 * The answer is untrusted input: read up to a bound, every event parsed
 * and validated by audit_event_parse before it is printed, so both ways
 * print the same bytes for the same events.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "cmd/cmd.h"

#define RESPONSE_MAX (64u << 20) /* a page of 1000 events is at most about 5 MiB */

typedef struct {
    const char *flag, *param;
    const char *value;
} filter_opt;

typedef struct {
    filter_opt f[9];
    long long limit;                   /* events to print at most; 0 = all */
    const char *url, *access_key, *secret_key;
} query_opts;

static void opts_init(query_opts *o) {
    memset(o, 0, sizeof *o);
    static const char *const names[][2] = {
        {"--correlation-id", "correlation_id"}, {"--request-id", "request_id"}, {"--principal", "principal"},
        {"--action", "action"}, {"--bucket", "bucket"}, {"--key-prefix", "key_prefix"}, {"--outcome", "outcome"},
        {"--from", "from"}, {"--to", "to"}};
    for (int i = 0; i < 9; i++) o->f[i] = (filter_opt){names[i][0], names[i][1], NULL};
}

static const char *opt(const query_opts *o, const char *param) {
    for (int i = 0; i < 9; i++)
        if (!strcmp(o->f[i].param, param)) return o->f[i].value;
    return NULL;
}

static int usage(void) {
    fprintf(stderr, "usage: cairn admin audit query [--correlation-id X] [--request-id X] [--principal X] [--action X]\n"
                    "         [--bucket X] [--key-prefix X] [--outcome success|error|denied] [--from TIME] [--to TIME]\n"
                    "         [--limit N] [--url http://HOST:PORT [--access-key AK --secret-key SK]]\n"
                    "       cairn admin audit journal-dump [--all | --spool]\n"
                    "       cairn admin audit dlq [--rejected]\n");
    return 2;
}

/* Parses argv (after "audit query").  0, or 2 after printing why. */
static int parse_opts(int argc, char **argv, query_opts *o) {
    opts_init(o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "cairn: %s needs a value\n", a);
            return usage();
        }
        const char *v = argv[++i];
        bool known = false;
        for (int k = 0; k < 9; k++)
            if (!strcmp(a, o->f[k].flag)) {
                o->f[k].value = v;
                known = true;
            }
        if (known) continue;
        if (!strcmp(a, "--limit")) {
            if (!cmd_parse_whole(v, 1, 1000000000, &o->limit)) {
                fprintf(stderr, "cairn: --limit wants a whole number from 1\n");
                return 2;
            }
        } else if (!strcmp(a, "--url")) {
            o->url = v;
        } else if (!strcmp(a, "--access-key")) {
            o->access_key = v;
        } else if (!strcmp(a, "--secret-key")) {
            o->secret_key = v;
        } else {
            fprintf(stderr, "cairn: unknown option '%s'\n", a);
            return usage();
        }
    }
    return 0;
}

/* ---- local ------------------------------------------------------------------------- */

typedef struct {
    long long left;                    /* events still to print; < 0 = no limit */
    int n;
    int64_t last_time;
    char last_id[AUDIT_ID_LEN + 1];
} printer;

static void print_json_line(const audit_event *e) {
    buf_t b;
    buf_init(&b);
    audit_event_to_json(e, &b);
    if (!b.oom) puts(b.data);
    buf_free(&b);
}

static int print_local(void *ud, const meta_audit_event *e) {
    printer *p = ud;
    print_json_line(e);
    p->n++;
    p->last_time = e->time_us;
    snprintf(p->last_id, sizeof p->last_id, "%s", e->event_id);
    if (p->left > 0) p->left--;
    return p->left == 0;
}

static int parse_times(const query_opts *o, int64_t *from_us, int64_t *to_us) {
    const char *from = opt(o, "from"), *to = opt(o, "to");
    *from_us = *to_us = 0;
    if ((from && audit_time_parse(from, from_us) != 0) || (to && audit_time_parse(to, to_us) != 0)) {
        fprintf(stderr, "cairn: --from and --to are RFC 3339 times (2026-11-30T17:41:02Z)\n");
        return 2;
    }
    if (to && *to_us == 0) *to_us = 1;
    return 0;
}

static int query_local(meta_store *ms, const query_opts *o) {
    meta_audit_filter f = {.correlation_id = opt(o, "correlation_id"), .request_id = opt(o, "request_id"),
                           .principal = opt(o, "principal"), .action = opt(o, "action"), .bucket = opt(o, "bucket"),
                           .key_prefix = opt(o, "key_prefix"), .outcome = opt(o, "outcome")};
    int rc = parse_times(o, &f.from_us, &f.to_us);
    if (rc != 0) return rc;
    printer p = {.left = o->limit > 0 ? o->limit : -1};
    for (;;) {
        int page = AUDIT_QUERY_LIMIT_MAX, got = 0;
        if (p.left > 0 && p.left < page) page = (int)p.left;
        p.n = 0;
        rc = meta_audit_query(ms, &f, page, print_local, &p, &got);
        if (rc != 0) {
            fprintf(stderr, "cairn: querying the audit events failed: %s\n", cairn_strerror(rc));
            return 1;
        }
        fflush(stdout);
        if (got < page || p.left == 0) return 0;
        f.after_set = true;
        f.after_time_us = p.last_time;
        snprintf(f.after_id, sizeof f.after_id, "%s", p.last_id);
    }
}

/* ---- remote ------------------------------------------------------------------------ */

/* --url: http:// or https://, then HOST[:PORT] (an IPv6 address in
 * brackets) and nothing but an optional "/" after it.  Fills host_header
 * (what the Host header carries, and SigV4 signs) and base (scheme and
 * authority).  0, or 2 after printing why. */
static int parse_url(const char *url, char *host_header, size_t hl, char *base, size_t bl) {
    size_t scheme = !strncmp(url, "https://", 8) ? 8 : !strncmp(url, "http://", 7) ? 7 : 0;
    const char *h = url + scheme;
    size_t n = strcspn(h, "/?#");
    if (!scheme || n == 0 || n >= hl || scheme + n >= bl || (h[n] && strcmp(h + n, "/") != 0) ||
        (h[0] == '[' && !memchr(h, ']', n))) {
        fprintf(stderr, "cairn: --url must be http://HOST[:PORT] or https://HOST[:PORT]\n");
        return 2;
    }
    snprintf(host_header, hl, "%.*s", (int)n, h);
    snprintf(base, bl, "%.*s", (int)(scheme + n), url);
    return 0;
}

/* One signed GET of target (path and query) through libcurl: https://
 * peers are verified against tls_ca (or the system CAs).  0 with *status
 * and the body, or 1 after printing why. */
static int http_get(const config_t *cfg, const char *base, const char *target, const char *auth,
                    const char *amz_date, const char *payload_hash, int *status, buf_t *body) {
    http_client *c = NULL;
    int rc = http_client_new(30000, 30000, RESPONSE_MAX, &c);
    if (rc == 0) rc = http_client_set_ca(c, cfg->tls_ca);
    buf_t url, h1, h2, h3;
    buf_init(&url);
    buf_init(&h1);
    buf_init(&h2);
    buf_init(&h3);
    buf_printf(&url, "%s%s", base, target);
    buf_printf(&h1, "x-amz-date: %s", amz_date);
    buf_printf(&h2, "x-amz-content-sha256: %s", payload_hash);
    buf_printf(&h3, "Authorization: %s", auth);
    long st = 0;
    if (rc == 0 && (url.oom || h1.oom || h2.oom || h3.oom)) rc = CAIRN_ENOMEM;
    if (rc == 0) {
        const char *headers[] = {h1.data, h2.data, h3.data, NULL};
        rc = http_client_get(c, url.data, headers, &st, body);
    }
    http_client_free(c);
    buf_free(&h1);
    buf_free(&h2);
    buf_free(&h3);
    if (rc == 0 && body->len >= RESPONSE_MAX) {
        fprintf(stderr, "cairn: %s: the answer is too large\n", url.data);
        rc = -1;
    } else if (rc != 0) {
        fprintf(stderr, "cairn: %s: %s\n", url.data ? url.data : base,
                rc == CAIRN_ETIMEDOUT ? "no answer in time"
                : rc == CAIRN_ENOMEM  ? "out of memory"
                                      : "cannot connect, or no complete HTTP answer (for https://: a certificate tls_ca does not verify?)");
    }
    buf_free(&url);
    *status = (int)st;
    return rc == 0 ? 0 : 1;
}

static int query_remote(const config_t *cfg, const query_opts *o) {
    char host_header[300], base[320];
    int rc = parse_url(o->url, host_header, sizeof host_header, base, sizeof base);
    if (rc != 0) return rc;
    const char *ak = o->access_key ? o->access_key : cfg->root_user;
    const char *sk = o->secret_key ? o->secret_key : cfg->root_password;
    if (!ak[0] || !sk[0]) {
        fprintf(stderr, "cairn: --url needs credentials: --access-key and --secret-key, or CAIRN_ROOT_USER and "
                        "CAIRN_ROOT_PASSWORD\n");
        return 2;
    }
    int64_t from_us, to_us;
    if ((rc = parse_times(o, &from_us, &to_us)) != 0) return rc;
    static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char cursor[AUDIT_QUERY_CURSOR_LEN * 2 + 1] = "";
    long long left = o->limit > 0 ? o->limit : -1;
    for (;;) {
        long long page = AUDIT_QUERY_LIMIT_MAX;
        if (left > 0 && left < page) page = left;
        /* The query in canonical order (sorted by name), encoded as SigV4 wants. */
        const char *names[12];
        const char *values[12];
        int n = 0;
        char lim[24];
        snprintf(lim, sizeof lim, "%lld", page);
        const char *sorted[] = {"action", "bucket", "correlation_id", "cursor", "from", "key_prefix", "limit",
                                "outcome", "principal", "request_id", "to"};
        for (size_t i = 0; i < sizeof sorted / sizeof sorted[0]; i++) {
            const char *v = !strcmp(sorted[i], "cursor") ? (cursor[0] ? cursor : NULL)
                            : !strcmp(sorted[i], "limit") ? lim
                                                          : opt(o, sorted[i]);
            if (v && v[0]) names[n] = sorted[i], values[n++] = v;
        }
        buf_t q;
        buf_init(&q);
        for (int i = 0; i < n; i++) {
            if (i) buf_putc(&q, '&');
            buf_puts(&q, names[i]);
            buf_putc(&q, '=');
            buf_url_encode(&q, values[i], strlen(values[i]), false);
        }
        char amz_date[17];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
        auth_header hdrs[3] = {{"host", 4, host_header, strlen(host_header)},
                               {"x-amz-content-sha256", 20, empty_sha, 64},
                               {"x-amz-date", 10, amz_date, 16}};
        sigv4_request sr = {"GET", AUDIT_EVENTS_PATH, q.data ? q.data : "", hdrs, 3};
        buf_t authz;
        buf_init(&authz);
        rc = q.oom ? CAIRN_ENOMEM
                   : sigv4_sign(&sr, ak, sk, cfg->region, "s3", amz_date, "host;x-amz-content-sha256;x-amz-date",
                                empty_sha, &authz);
        buf_t target;
        buf_init(&target);
        buf_puts(&target, AUDIT_EVENTS_PATH);
        if (q.len) {
            buf_putc(&target, '?');
            buf_append(&target, q.data, q.len);
        }
        buf_free(&q);
        buf_t body;
        buf_init(&body);
        int status = 0;
        if (rc != 0 || authz.oom || target.oom) {
            fprintf(stderr, "cairn: cannot sign the request: %s\n", cairn_strerror(rc ? rc : CAIRN_ENOMEM));
            rc = 1;
        } else {
            rc = http_get(cfg, base, target.data, authz.data, amz_date, empty_sha, &status, &body);
        }
        buf_free(&authz);
        buf_free(&target);
        if (rc == 0 && status != 200) {
            fprintf(stderr, "cairn: %s answered %d: %s\n", o->url, status, body.data ? body.data : "");
            rc = 1;
        }
        json_t *doc = NULL;
        if (rc == 0) {
            doc = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
            json_t *events = json_object_get(doc, "events");
            if (!json_is_array(events)) {
                fprintf(stderr, "cairn: %s answered something that is not a page of events\n", o->url);
                rc = 1;
            }
            size_t i;
            json_t *ev;
            json_array_foreach(rc == 0 ? events : NULL, i, ev) {
                char *text = json_dumps(ev, JSON_COMPACT);
                audit_events *one = NULL;
                audit_error err;
                if (!text || audit_event_parse(text, strlen(text), &one, &err) != 0) {
                    fprintf(stderr, "cairn: %s answered an invalid event: %s %s\n", o->url, err.field, err.reason);
                    free(text);
                    rc = 1;
                    break;
                }
                print_json_line(audit_events_list(one));
                audit_events_free(one);
                free(text);
                if (left > 0 && --left == 0) break;
            }
            const char *next = json_string_value(json_object_get(doc, "next_cursor"));
            if (rc == 0 && next && left != 0 && strlen(next) < sizeof cursor)
                snprintf(cursor, sizeof cursor, "%s", next);
            else
                cursor[0] = '\0';
        }
        json_decref(doc);
        buf_free(&body);
        fflush(stdout);
        if (rc != 0) return rc;
        if (!cursor[0]) return 0;
    }
}

/* ---- the command ------------------------------------------------------------------- */

bool cmd_admin_audit_remote(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[0], "audit") != 0) return false;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--url")) return true;
    return false;
}

/* One DLQ entry as a JSON line: {"time":"...","reason":"...","event":{...}}. */
static int print_dlq_entry(void *ud, const char *event, size_t len, const char *reason, int64_t time_ms) {
    (*(long *)ud)++;
    char t[40];
    time_fmt_iso8601(time_ms, t, sizeof t);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{\"time\":\"");
    buf_puts(&b, t);
    buf_puts(&b, "\",\"reason\":\"");
    buf_json_escape(&b, reason, strlen(reason));
    buf_puts(&b, "\",\"event\":");
    buf_append(&b, event, len);
    buf_puts(&b, "}\n");
    if (!b.oom) fwrite(b.data, 1, b.len, stdout);
    buf_free(&b);
    return 0;
}

/* cairn admin audit dlq [--rejected]: the dead-letter queue's entries
 * (held: waiting for the replayer; rejected: refused by the store, kept
 * for an operator), oldest first, spool then Redis. */
static int dlq_list(const config_t *cfg, int argc, char **argv) {
    bool rejected = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--rejected")) rejected = true;
        else return usage();
    }
    char dir[sizeof cfg->data_dir + 16];
    snprintf(dir, sizeof dir, "%s/audit", cfg->data_dir);
    audit_dlq_opts o = {.dir = dir, .redis_url = cfg->audit_dlq_stream[0] ? cfg->redis_url : "",
                        .stream = cfg->audit_dlq_stream, .redis_timeout_ms = cfg->redis_timeout_ms, .fsync = cfg->fsync};
    audit_dlq *d = NULL;
    int rc = audit_dlq_open(&o, &d);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot open the dead-letter queue in %s: %s\n", dir, cairn_strerror(rc));
        return 1;
    }
    long n = 0;
    rc = audit_dlq_walk(d, rejected ? AUDIT_DLQ_REJECTED : AUDIT_DLQ_HELD, print_dlq_entry, &n);
    audit_dlq_close(d);
    fflush(stdout);
    if (rc != 0) {
        fprintf(stderr, "cairn: cannot read the dead-letter queue: %s\n", cairn_strerror(rc));
        return 1;
    }
    fprintf(stderr, "%ld %s entries\n", n, rejected ? "rejected" : "held");
    return 0;
}

int cmd_admin_audit(const config_t *cfg, meta_store *ms, int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "dlq")) return dlq_list(cfg, argc - 2, argv + 2);
    if (argc < 2 || strcmp(argv[1], "query") != 0) return usage();
    query_opts o;
    int rc = parse_opts(argc - 2, argv + 2, &o);
    if (rc != 0) return rc;
    const char *outcome = opt(&o, "outcome");
    if (outcome && strcmp(outcome, "success") && strcmp(outcome, "error") && strcmp(outcome, "denied")) {
        fprintf(stderr, "cairn: --outcome is success, error or denied\n");
        return 2;
    }
    if (o.url) return query_remote(cfg, &o);
    if (o.access_key || o.secret_key) {
        fprintf(stderr, "cairn: --access-key and --secret-key go with --url\n");
        return 2;
    }
    meta_store *ams = NULL;
    if (cmd_open_audit_meta(cfg, ms, &ams) != 0) return 1;
    rc = query_local(ams, &o);
    cmd_close_audit_meta(ms, ams);
    return rc;
}
