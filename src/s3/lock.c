/*
 * lock.c — S3 Object Lock (WORM), as S3 does it (docs/object-lock.md).
 *
 * A bucket made with x-amz-bucket-object-lock-enabled: true (versioning on
 * for good) takes Put/GetObjectLockConfiguration (?object-lock): the
 * configuration, with its optional default retention, is kept as the
 * document GetObjectLockConfiguration answers (meta_bucket_config, kind
 * "object_lock"), so one parser reads both.
 *
 * Each version carries its own lock state in its headers_json, under the
 * names of the S3 headers that carry it (meta.h, "Object lock"): GET and
 * HEAD send them back as stored.  It is set when the version is written
 * (the x-amz-object-lock-* headers of PutObject, CopyObject and
 * CreateMultipartUpload, else the bucket's default retention) and changed
 * by Put{ObjectRetention,ObjectLegalHold}, a read-modify-write that writes
 * back only over what it read (meta_object_set_headers_if), so of two
 * concurrent changes neither undoes the other unseen.
 *
 * What the lock forbids, removing a version, is enforced in meta, inside
 * the delete's own transaction (versions.c): the handlers here only say
 * what the caller may bypass and map CAIRN_ELOCKED to AccessDenied.
 * Shortening a retention is refused here, against the state just read,
 * and the compare-and-set makes that read the one written over.
 */
#include "s3/internal.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#define XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
#define H_MODE "x-amz-object-lock-mode"
#define H_UNTIL "x-amz-object-lock-retain-until-date"
#define H_HOLD "x-amz-object-lock-legal-hold"

static const char *const LOCKED_MSG = "Access Denied because object protected by object lock.";
static const char *const MISSING_CONFIG = "Bucket is missing Object Lock Configuration";

/* ---- the documents ----------------------------------------------------------------------- */

#define is_elem s3_xml_is

/* The parsed document if its root is an element named root; else NULL
 * with *rc set (CAIRN_EINVAL, or CAIRN_ENOMEM). */
static xmlDocPtr read_doc(const char *body, size_t len, const char *root, int *rc) {
    return s3_xml_read(body, len, S3_LOCK_MAX_BYTES, root, rc);
}


static bool mode_of(const char *s, meta_lock_mode *m) {
    if (!strcmp(s, "GOVERNANCE")) *m = META_LOCK_GOVERNANCE;
    else if (!strcmp(s, "COMPLIANCE")) *m = META_LOCK_COMPLIANCE;
    else return false;
    return true;
}

static const char *mode_name(meta_lock_mode m) {
    return m == META_LOCK_COMPLIANCE ? "COMPLIANCE" : m == META_LOCK_GOVERNANCE ? "GOVERNANCE" : "";
}

/* A period: an optionally signed decimal integer (the schema's xs:int),
 * into *v; false when it is not one. */
static bool int_of(const char *s, long long *v) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!*p || strlen(p) > 12) return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return false;
    *v = strtoll(s, NULL, 10);
    return true;
}

static int fail(const char **code, const char **message, const char *c, const char *m) {
    *code = c;
    *message = m;
    return CAIRN_EINVAL;
}

static int parse_default_retention(xmlNodePtr dr, s3_lock_config *out, const char **code, const char **message) {
    bool have_mode = false, have_days = false, have_years = false;
    long long days = 0, years = 0;
    char t[64];
    for (xmlNodePtr c = dr->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!s3_xml_text(c, t, sizeof t)) return fail(code, message, "MalformedXML", NULL);
        if (is_elem(c, "Mode") && !have_mode) {
            if (!mode_of(t, &out->mode)) return fail(code, message, "MalformedXML", NULL);
            have_mode = true;
        } else if (is_elem(c, "Days") && !have_days) {
            if (!int_of(t, &days)) return fail(code, message, "MalformedXML", NULL);
            have_days = true;
        } else if (is_elem(c, "Years") && !have_years) {
            if (!int_of(t, &years)) return fail(code, message, "MalformedXML", NULL);
            have_years = true;
        } else {
            return fail(code, message, "MalformedXML", NULL);
        }
    }
    /* Both a mode and one period, never both periods. */
    if (!have_mode || have_days == have_years) return fail(code, message, "MalformedXML", NULL);
    long long v = have_days ? days : years;
    if (v <= 0)
        return fail(code, message, "InvalidArgument", "Default retention period must be a positive integer value.");
    if (v > (have_days ? S3_LOCK_MAX_DAYS : S3_LOCK_MAX_YEARS))
        return fail(code, message, "InvalidArgument", "Default retention period is too large.");
    if (have_days) out->days = (int)v;
    else out->years = (int)v;
    return 0;
}

int s3_lock_config_parse(const char *body, size_t len, s3_lock_config *out, const char **code,
                         const char **message) {
    memset(out, 0, sizeof *out);
    *code = "MalformedXML";
    *message = NULL;
    int rc;
    xmlDocPtr doc = read_doc(body, len, "ObjectLockConfiguration", &rc);
    if (!doc) return rc;
    bool have_rule = false;
    char t[64];
    for (xmlNodePtr c = xmlDocGetRootElement(doc)->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (is_elem(c, "ObjectLockEnabled") && !out->enabled) {
            if (!s3_xml_text(c, t, sizeof t) || strcmp(t, "Enabled") != 0) rc = fail(code, message, "MalformedXML", NULL);
            else out->enabled = true;
        } else if (is_elem(c, "Rule") && !have_rule) {
            have_rule = true;
            bool have_dr = false;
            for (xmlNodePtr d = c->children; d && rc == 0; d = d->next) {
                if (d->type != XML_ELEMENT_NODE) continue;
                if (!is_elem(d, "DefaultRetention") || have_dr) rc = fail(code, message, "MalformedXML", NULL);
                else rc = parse_default_retention(d, out, code, message);
                have_dr = true;
            }
            if (rc == 0 && !have_dr) rc = fail(code, message, "MalformedXML", NULL);
        } else {
            rc = fail(code, message, "MalformedXML", NULL);
        }
    }
    if (rc == 0 && !out->enabled) rc = fail(code, message, "MalformedXML", NULL);
    xmlFreeDoc(doc);
    if (rc != 0) memset(out, 0, sizeof *out);
    return rc;
}

void s3_lock_config_render(const s3_lock_config *c, buf_t *out) {
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ObjectLockConfiguration xmlns=\"" XMLNS "\">"
                  "<ObjectLockEnabled>Enabled</ObjectLockEnabled>");
    if (c->mode != META_LOCK_NONE) {
        buf_printf(out, "<Rule><DefaultRetention><Mode>%s</Mode>", mode_name(c->mode));
        if (c->days > 0) buf_printf(out, "<Days>%d</Days>", c->days);
        else buf_printf(out, "<Years>%d</Years>", c->years);
        buf_puts(out, "</DefaultRetention></Rule>");
    }
    buf_puts(out, "</ObjectLockConfiguration>");
}

int s3_lock_retention_parse(const char *body, size_t len, meta_lock_mode *mode, int64_t *until_ms,
                            const char **code, const char **message) {
    *mode = META_LOCK_NONE;
    *until_ms = 0;
    *code = "MalformedXML";
    *message = NULL;
    int rc;
    xmlDocPtr doc = read_doc(body, len, "Retention", &rc);
    if (!doc) return rc;
    bool have_mode = false, have_date = false;
    char t[64];
    for (xmlNodePtr c = xmlDocGetRootElement(doc)->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!s3_xml_text(c, t, sizeof t)) rc = fail(code, message, "MalformedXML", NULL);
        else if (is_elem(c, "Mode") && !have_mode) {
            if (!mode_of(t, mode)) rc = fail(code, message, "MalformedXML", NULL);
            have_mode = true;
        } else if (is_elem(c, "RetainUntilDate") && !have_date) {
            if (time_parse_iso8601(t, until_ms) != 0) rc = fail(code, message, "MalformedXML", NULL);
            have_date = true;
        } else {
            rc = fail(code, message, "MalformedXML", NULL);
        }
    }
    /* Both or neither (an empty Retention removes one). */
    if (rc == 0 && have_mode != have_date) rc = fail(code, message, "MalformedXML", NULL);
    xmlFreeDoc(doc);
    if (rc != 0) *mode = META_LOCK_NONE, *until_ms = 0;
    return rc;
}

int s3_lock_legal_hold_parse(const char *body, size_t len, bool *on, const char **code, const char **message) {
    *on = false;
    *code = "MalformedXML";
    *message = NULL;
    int rc;
    xmlDocPtr doc = read_doc(body, len, "LegalHold", &rc);
    if (!doc) return rc;
    bool have = false;
    char t[16];
    for (xmlNodePtr c = xmlDocGetRootElement(doc)->children; c && rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (!is_elem(c, "Status") || have || !s3_xml_text(c, t, sizeof t) || (strcmp(t, "ON") && strcmp(t, "OFF")))
            rc = fail(code, message, "MalformedXML", NULL);
        else *on = !strcmp(t, "ON");
        have = true;
    }
    if (rc == 0 && !have) rc = fail(code, message, "MalformedXML", NULL);
    xmlFreeDoc(doc);
    if (rc != 0) *on = false;
    return rc;
}

/* ---- who may bypass GOVERNANCE -------------------------------------------------------------- */

/* S3 asks s3:BypassGovernanceRetention besides the header.  cairn has no
 * policies yet: the bucket's owner and root hold every permission on it,
 * and no one else reaches its objects (s3_authorized). */
bool s3_lock_bypass(s3_req *q) {
    const char *h = http_header(q->http, "x-amz-bypass-governance-retention");
    if (!h || strcasecmp(h, "true") != 0) return false;
    /* s3:BypassGovernanceRetention, as the bucket policy judges it: the
     * owner and root have it unless a policy denies it (acl.c). */
    return s3_may(q, &q->bk, "s3:BypassGovernanceRetention", q->has_key ? q->key : NULL, q->key_len);
}

void s3_lock_refused(s3_req *q, const char *what) {
    log_write(LOG_INFO, q->http->request_id, "object lock refused the request", "what", what, "bucket", q->bucket,
              NULL);
    s3_error(q, "AccessDenied", LOCKED_MSG);
}

const char *s3_lock_refused_message(void) { return LOCKED_MSG; }

/* ---- the bucket's configuration ----------------------------------------------------------- */

/* The bucket's stored configuration; a bucket made with object lock that
 * never had one PUT is Enabled without a rule.  Nonzero = answered. */
static int load_config(s3_req *q, s3_lock_config *c) {
    memset(c, 0, sizeof *c);
    c->enabled = true;
    char *body = NULL;
    int rc = meta_bucket_config_get(q->gw->d.meta, q->bucket_id, "object_lock", &body);
    if (rc == CAIRN_ENOTFOUND) return 0;
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "reading the object lock configuration failed");
        return -1;
    }
    const char *code, *msg;
    rc = s3_lock_config_parse(body, strlen(body), c, &code, &msg);
    free(body);
    if (rc != 0) {
        log_write(LOG_ERROR, q->http->request_id, "stored object lock configuration unreadable", "bucket", q->bucket,
                  NULL);
        s3_error(q, "InternalError", NULL);
        return -1;
    }
    return 0;
}

void s3_put_object_lock_config(s3_req *q) {
    /* S3 asks for a body digest on this call (botocore sends Content-MD5). */
    if (s3_check_body_digest(q) != 0) return;
    s3_lock_config c;
    const char *code, *msg;
    int rc = s3_lock_config_parse(q->body.data ? q->body.data : "", q->body.len, &c, &code, &msg);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOMEM ? "InternalError" : code, rc == CAIRN_ENOMEM ? NULL : msg);
        return;
    }
    /* A bucket made without object lock gets it now, for good, where its
     * versioning is enabled (S3 since 2023; docs/object-lock.md). */
    if (!q->bk.object_lock) {
        rc = meta_bucket_enable_object_lock(q->gw->d.meta, q->bk.name, q->bucket_id);
        if (rc == CAIRN_ECONFLICT) {
            s3_error(q, "InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                                              "configuration");
            return;
        }
        if (rc != 0) {
            s3_meta_error(q, rc, rc == CAIRN_ENOTFOUND ? "NoSuchBucket" : "InternalError",
                          "turning object lock on failed");
            return;
        }
        q->bk.object_lock = true;
    }
    buf_t b;
    buf_init(&b);
    s3_lock_config_render(&c, &b);
    buf_putc(&b, '\0');
    rc = b.oom ? CAIRN_ENOMEM : meta_bucket_config_put(q->gw->d.meta, q->bk.name, q->bucket_id, "object_lock", b.data);
    buf_free(&b);
    if (rc != 0) {
        s3_meta_error(q, rc, "InternalError", "storing the object lock configuration failed");
        return;
    }
    s3_committed(q, NULL, 0);
    http_respond(q->http, 200, "", 0);
}

void s3_get_object_lock_config(s3_req *q) {
    if (!q->bk.object_lock) {
        s3_error(q, "ObjectLockConfigurationNotFoundError", NULL);
        return;
    }
    s3_lock_config c;
    if (load_config(q, &c) != 0) return;
    buf_t b;
    buf_init(&b);
    s3_lock_config_render(&c, &b);
    s3_respond_xml(q, 200, &b);
}

/* ---- the lock of a version being written ---------------------------------------------------- */

/* The x-amz-object-lock-* headers of a write, validated as S3 does: *st
 * gets what they set, *any whether there were any.  Nonzero = answered. */
static int read_headers(s3_req *q, int64_t now_ms, meta_lock_state *st, bool *hold_set, bool *any) {
    memset(st, 0, sizeof *st);
    *hold_set = false;
    const char *mode = s3_request_value(q, H_MODE);
    const char *until = s3_request_value(q, H_UNTIL);
    const char *hold = s3_request_value(q, H_HOLD);
    *any = mode || until || hold;
    if (!*any) return 0;
    if (!q->bk.object_lock) {
        s3_error(q, "InvalidRequest", "Bucket is missing ObjectLockConfiguration");
        return -1;
    }
    if (mode || until) {
        if (!mode || !until) {
            s3_error(q, "InvalidArgument",
                     "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied");
            return -1;
        }
        if (!mode_of(mode, &st->mode)) {
            s3_error(q, "InvalidArgument", "Unknown wormMode directive.");
            return -1;
        }
        if (time_parse_iso8601(until, &st->until_ms) != 0) {
            s3_error(q, "InvalidArgument", "The retain until date must be provided in ISO 8601 format");
            return -1;
        }
        if (st->until_ms <= now_ms) {
            s3_error(q, "InvalidArgument", "The retain until date must be in the future!");
            return -1;
        }
    }
    if (hold) {
        if (strcmp(hold, "ON") != 0 && strcmp(hold, "OFF") != 0) {
            s3_error(q, "InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'");
            return -1;
        }
        st->legal_hold = !strcmp(hold, "ON");
        *hold_set = true;
    }
    return 0;
}

int s3_lock_check_headers(s3_req *q) {
    meta_lock_state st;
    bool hold_set, any;
    return read_headers(q, time_now_ms(), &st, &hold_set, &any);
}

/* until_ms as S3 writes it. */
static void fmt_until(int64_t ms, char out[40]) { time_fmt_iso8601(ms, out, 40); }

/* The default retention's end for a version written at write_ms. */
static int64_t default_until(const s3_lock_config *c, int64_t write_ms) {
    if (c->days > 0) return write_ms + (int64_t)c->days * 86400000;
    /* Years are calendar years (29 February goes to 1 March). */
    time_t s = (time_t)(write_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    tm.tm_year += c->years;
    return (int64_t)timegm(&tm) * 1000 + write_ms % 1000;
}

/* json with the lock members set as st says (mode NONE: none; hold_set:
 * the legal hold member, ON or OFF), into the request's arena.  NULL:
 * answered. */
static char *with_lock(s3_req *q, const char *json, const meta_lock_state *st, bool set_retention, bool hold_set,
                       bool strip) {
    json_error_t jerr;
    json_t *o = json_loads(json && *json ? json : "{}", 0, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        log_write(LOG_ERROR, q->http->request_id, "stored headers unreadable", "error", jerr.text, NULL);
        s3_error(q, "InternalError", NULL);
        return NULL;
    }
    if (strip) {
        json_object_del(o, H_MODE);
        json_object_del(o, H_UNTIL);
        json_object_del(o, H_HOLD);
    }
    int err = 0;
    if (set_retention) {
        if (st->mode == META_LOCK_NONE) {
            json_object_del(o, H_MODE);
            json_object_del(o, H_UNTIL);
        } else {
            char until[40];
            fmt_until(st->until_ms, until);
            err |= json_object_set_new(o, H_MODE, json_string(mode_name(st->mode)));
            err |= json_object_set_new(o, H_UNTIL, json_string(until));
        }
    }
    if (hold_set) err |= json_object_set_new(o, H_HOLD, json_string(st->legal_hold ? "ON" : "OFF"));
    char *dumped = err ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *out = dumped ? arena_strndup(q->http->arena, dumped, strlen(dumped)) : NULL;
    free(dumped);
    if (!out) s3_error_nomem(q);
    return out;
}

int s3_lock_stamp(s3_req *q, char **headers_json, int64_t write_ms, unsigned how) {
    meta_lock_state st = {0};
    bool hold_set = false, any = false;
    if ((how & S3_LOCK_HEADERS) && read_headers(q, time_now_ms(), &st, &hold_set, &any) != 0) return -1;
    bool strip = (how & S3_LOCK_STRIP) != 0;
    if (!q->bk.object_lock) {
        if (strip && *headers_json && strstr(*headers_json, "x-amz-object-lock-")) {
            char *j = with_lock(q, *headers_json, &st, false, false, true);
            if (!j) return -1;
            *headers_json = j;
        }
        return 0;
    }
    bool set_retention = st.mode != META_LOCK_NONE;
    if (!set_retention && (how & S3_LOCK_DEFAULT)) {
        /* No retention asked for: the bucket's default, if it has one and
         * the version has none already (a multipart upload's, from its
         * CreateMultipartUpload). */
        meta_lock_state have = {0};
        if (!strip && meta_lock_state_of(*headers_json, &have) != 0) {
            s3_error(q, "InternalError", NULL);
            return -1;
        }
        if (have.mode == META_LOCK_NONE) {
            s3_lock_config c;
            if (load_config(q, &c) != 0) return -1;
            if (c.mode != META_LOCK_NONE) {
                st.mode = c.mode;
                st.until_ms = default_until(&c, write_ms);
                set_retention = true;
            }
        }
    }
    if (!set_retention && !hold_set && !strip) return 0;
    char *j = with_lock(q, *headers_json, &st, set_retention, hold_set, strip);
    if (!j) return -1;
    *headers_json = j;
    return 0;
}

/* ---- Put/GetObjectRetention, Put/GetObjectLegalHold ---------------------------------------- */


static bool lock_bucket(s3_req *q) {
    if (q->bk.object_lock) return true;
    s3_error(q, "InvalidRequest", MISSING_CONFIG);
    return false;
}

/* Whether a retention (mode, until) may replace old at now: S3 lets a
 * retention in force be lengthened, and GOVERNANCE become COMPLIANCE, but
 * shortened, removed or COMPLIANCE made GOVERNANCE only by bypassing a
 * GOVERNANCE one. */
static bool retention_change_ok(const meta_lock_state *old, meta_lock_mode mode, int64_t until, int64_t now,
                                bool bypass) {
    if (old->mode == META_LOCK_NONE || now >= old->until_ms) return true;
    bool weaker = mode == META_LOCK_NONE || until < old->until_ms ||
                  (old->mode == META_LOCK_COMPLIANCE && mode == META_LOCK_GOVERNANCE);
    if (!weaker) return true;
    return old->mode == META_LOCK_GOVERNANCE && bypass;
}

/* The read-modify-write of a version's lock members; retention: set mode
 * and until (NONE removes), else the legal hold.  Retries a write that
 * lost to a concurrent change.  Answers the request. */
static void change_lock(s3_req *q, bool retention, meta_lock_mode mode, int64_t until, bool hold) {
    int64_t now = time_now_ms();
    bool bypass = s3_lock_bypass(q);
    for (int attempt = 0; attempt < 5; attempt++) {
        meta_object o;
        if (s3_named_version(q, &o) != 0) return;
        meta_lock_state old;
        if (meta_lock_state_of(o.headers_json, &old) != 0) {
            meta_object_clear(&o);
            log_write(LOG_ERROR, q->http->request_id, "lock state of a version unreadable", "version_id",
                      o.version_id, NULL);
            s3_error(q, "InternalError", NULL);
            return;
        }
        if (retention && !retention_change_ok(&old, mode, until, now, bypass)) {
            meta_object_clear(&o);
            s3_lock_refused(q, "shortening a retention");
            return;
        }
        meta_lock_state st = {.mode = mode, .until_ms = until, .legal_hold = hold};
        char *j = with_lock(q, o.headers_json, &st, retention, !retention, false);
        if (!j) {
            meta_object_clear(&o);
            return;
        }
        int rc = meta_object_set_headers_if(q->gw->d.meta, q->bucket, q->bucket_id, q->key, q->key_len,
                                            o.version_id, o.headers_json ? o.headers_json : "{}", j);
        char vid[33];
        snprintf(vid, sizeof vid, "%s", s3_version_id(&o));
        meta_object_clear(&o);
        if (rc == CAIRN_ENOTFOUND) continue; /* changed or gone since read: read again */
        if (rc != 0) {
            s3_meta_error(q, rc, "InternalError", "changing the object's lock failed");
            return;
        }
        s3_committed(q, q->key, q->key_len);
        if (q->bk.versioning != META_VERSIONING_OFF) http_add_header(q->http, "x-amz-version-id", vid);
        http_respond(q->http, 200, "", 0);
        return;
    }
    log_write(LOG_WARN, q->http->request_id, "object lock change kept losing to concurrent writes", NULL);
    s3_error(q, "OperationAborted", NULL);
}

void s3_put_object_retention(s3_req *q) {
    if (!lock_bucket(q) || s3_check_body_digest(q) != 0) return;
    meta_lock_mode mode;
    int64_t until;
    const char *code, *msg;
    int rc = s3_lock_retention_parse(q->body.data ? q->body.data : "", q->body.len, &mode, &until, &code, &msg);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOMEM ? "InternalError" : code, rc == CAIRN_ENOMEM ? NULL : msg);
        return;
    }
    if (mode != META_LOCK_NONE && until <= time_now_ms()) {
        s3_error(q, "InvalidArgument", "The retain until date must be in the future!");
        return;
    }
    change_lock(q, true, mode, until, false);
}

void s3_put_object_legal_hold(s3_req *q) {
    if (!lock_bucket(q) || s3_check_body_digest(q) != 0) return;
    bool on;
    const char *code, *msg;
    int rc = s3_lock_legal_hold_parse(q->body.data ? q->body.data : "", q->body.len, &on, &code, &msg);
    if (rc != 0) {
        s3_error(q, rc == CAIRN_ENOMEM ? "InternalError" : code, rc == CAIRN_ENOMEM ? NULL : msg);
        return;
    }
    change_lock(q, false, META_LOCK_NONE, 0, on);
}

static void get_lock(s3_req *q, bool retention) {
    if (!lock_bucket(q)) return;
    meta_object o;
    if (s3_named_version(q, &o) != 0) return;
    meta_lock_state st;
    int rc = meta_lock_state_of(o.headers_json, &st);
    bool hold_member = o.headers_json && strstr(o.headers_json, "\"" H_HOLD "\"");
    meta_object_clear(&o);
    if (rc != 0) {
        s3_error(q, "InternalError", NULL);
        return;
    }
    if (retention ? st.mode == META_LOCK_NONE : !hold_member) {
        s3_error(q, "NoSuchObjectLockConfiguration", NULL);
        return;
    }
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if (retention) {
        char until[40];
        fmt_until(st.until_ms, until);
        buf_printf(&b, "<Retention xmlns=\"" XMLNS "\"><Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
                   mode_name(st.mode), until);
    } else {
        buf_printf(&b, "<LegalHold xmlns=\"" XMLNS "\"><Status>%s</Status></LegalHold>", st.legal_hold ? "ON" : "OFF");
    }
    s3_respond_xml(q, 200, &b);
}

void s3_get_object_retention(s3_req *q) { get_lock(q, true); }
void s3_get_object_legal_hold(s3_req *q) { get_lock(q, false); }
