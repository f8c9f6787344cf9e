/*
 * fuzz_notify.c — libFuzzer target for the bucket notification
 * configuration a bucket owner PUTs (s3_parse_notification_xml), and the
 * JSON the metadata keeps it as.
 *
 * A document that parses must round-trip through the stored JSON to the
 * same rules, and every rule must match its own prefix + suffix key for
 * each of its exact event types; one that does not parse must say why.
 * The rest of the input, read as JSON, must never crash the reader of the
 * stored form (a database row is trusted less than memory).
 */
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    s3_notify_rule *rules = NULL;
    int n = 0;
    const char *why = NULL;
    bool inval = false;
    int rc = s3_parse_notification_xml((const char *)data, size, &rules, &n, &why, &inval);
    if (rc != 0 && rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM) abort();
    if (rc == CAIRN_EINVAL && !why) abort();
    if (rc == 0) {
        if (n < 0 || n > S3_NOTIFY_MAX_RULES) abort();
        buf_t json;
        buf_init(&json);
        if (n && s3_notify_rules_to_json(rules, n, &json) != 0) abort();
        s3_notify_rule *back = NULL;
        int m = 0;
        if (n && s3_notify_rules_from_json(json.data, &back, &m) != 0) abort();
        if (m != n || (n && memcmp(back, rules, (size_t)n * sizeof *rules) != 0)) abort();
        for (int i = 0; i < n; i++) {
            const s3_notify_rule *r = &rules[i];
            char key[2100];
            size_t pl = strlen(r->prefix), sl = strlen(r->suffix);
            memcpy(key, r->prefix, pl);
            memcpy(key + pl, r->suffix, sl);
            for (int k = 0; k < r->nevents; k++) {
                const char *ev = r->events[k];
                size_t el = strlen(ev);
                if (el && ev[el - 1] == '*') continue;
                if (!s3_notify_rule_match(r, ev, key, pl + sl)) abort();
            }
        }
        free(back);
        buf_free(&json);
    }
    free(rules);
    /* the stored form, from anywhere */
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    s3_notify_rule *r2 = NULL;
    int n2 = 0;
    if (s3_notify_rules_from_json(text, &r2, &n2) == 0) {
        for (int i = 0; i < n2; i++) (void)s3_notify_rule_match(&r2[i], "s3:ObjectCreated:Put", "k", 1);
    }
    free(r2);
    free(text);
    return 0;
}
