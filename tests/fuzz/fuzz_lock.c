/*
 * fuzz_lock.c — libFuzzer target for the object lock documents a client
 * PUTs (lock.c): ObjectLockConfiguration (s3_lock_config_parse), Retention
 * (s3_lock_retention_parse) and LegalHold (s3_lock_legal_hold_parse), and
 * the lock state meta reads back out of a version's headers_json
 * (meta_lock_state_of).
 *
 * The first byte chooses the parser; the rest is the document.  A
 * configuration that parses must be within S3's limits and render to a
 * stored form that parses to the same configuration (rendering the same
 * bytes); one that does not parse must name its S3 error code.  A
 * Retention that parses has both or neither of its mode and date.
 */
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

static void config(const char *doc, size_t len) {
    s3_lock_config c;
    const char *code = NULL, *msg = NULL;
    int rc = s3_lock_config_parse(doc, len, &c, &code, &msg);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc == CAIRN_EINVAL && (!code || (strcmp(code, "MalformedXML") && strcmp(code, "InvalidArgument")))) abort();
    if (rc != 0) {
        if (c.enabled || c.mode != META_LOCK_NONE || c.days || c.years) abort();
        return;
    }
    if (!c.enabled) abort();
    if (c.mode != META_LOCK_NONE) {
        if ((c.days > 0) == (c.years > 0)) abort();
        if (c.days > S3_LOCK_MAX_DAYS || c.years > S3_LOCK_MAX_YEARS || c.days < 0 || c.years < 0) abort();
    }
    buf_t a, b;
    buf_init(&a);
    buf_init(&b);
    s3_lock_config_render(&c, &a);
    s3_lock_config back;
    if (a.oom || s3_lock_config_parse(a.data, a.len, &back, &code, &msg) != 0) abort();
    if (back.enabled != c.enabled || back.mode != c.mode || back.days != c.days || back.years != c.years) abort();
    s3_lock_config_render(&back, &b);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
    buf_free(&a);
    buf_free(&b);
}

static void retention(const char *doc, size_t len) {
    meta_lock_mode mode;
    int64_t until;
    const char *code = NULL, *msg = NULL;
    int rc = s3_lock_retention_parse(doc, len, &mode, &until, &code, &msg);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc == CAIRN_EINVAL && !code) abort();
    if (rc != 0 && (mode != META_LOCK_NONE || until != 0)) abort();
    if (rc == 0 && mode != META_LOCK_NONE && mode != META_LOCK_GOVERNANCE && mode != META_LOCK_COMPLIANCE) abort();
}

static void legal_hold(const char *doc, size_t len) {
    bool on = true;
    const char *code = NULL, *msg = NULL;
    int rc = s3_lock_legal_hold_parse(doc, len, &on, &code, &msg);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc != 0 && (on || !code)) abort();
}

static void headers(const char *doc, size_t len) {
    /* meta reads NUL-terminated JSON. */
    char *s = malloc(len + 1);
    if (!s) return;
    memcpy(s, doc, len);
    s[len] = '\0';
    meta_lock_state st;
    int rc = meta_lock_state_of(s, &st);
    if (rc != 0 && rc != CAIRN_EINVAL) abort();
    if (rc == 0 && st.mode != META_LOCK_NONE && st.mode != META_LOCK_GOVERNANCE && st.mode != META_LOCK_COMPLIANCE)
        abort();
    meta_lock_check strict = {.now_ms = 1};
    if (rc == 0 && (st.legal_hold || (st.mode != META_LOCK_NONE && st.until_ms > 1)) &&
        !meta_lock_forbids(&st, &strict))
        abort();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *doc = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: config(doc, len); break;
    case 1: retention(doc, len); break;
    case 2: legal_hold(doc, len); break;
    default: headers(doc, len); break;
    }
    return 0;
}
