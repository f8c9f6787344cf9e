/*
 * fuzz_access.c — libFuzzer target for what clients send to set access
 * control (src/s3/access.c): bucket policies (access_policy_parse, then
 * access_policy_eval and access_decide over a fixed set of callers), the
 * AccessControlPolicy document, x-amz-grant-* header values, and the
 * stored ACL text.
 *
 * The first byte picks the parser: 0 a policy, 1 an ACL document, 2 a
 * grant header, 3 the stored text.  A refusal must say why and leave
 * nothing behind; an ACL that parses must round-trip through its stored
 * form exactly.
 */
#include <stdlib.h>
#include <string.h>

#include "s3/access.h"

static const char *lookup(void *ud, const char *key) {
    (void)ud;
    (void)key;
    return "v*?${aws:username}";
}

static void judge_all(const access_policy *p, const access_acl *acl) {
    static const char *const actions[] = {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteBucketPolicy"};
    for (int who = 0; who < 3; who++)
        for (size_t a = 0; a < sizeof actions / sizeof actions[0]; a++) {
            access_ctx c = {.anonymous = who == 0, .user_id = who == 2 ? 7 : 8, .action = actions[a], .bucket = "bkt",
                            .bucket_owner = 7, .key = a == 2 ? NULL : "k*ey?", .key_len = 5, .source_ip = "10.1.2.3",
                            .now_s = 1800000000, .lookup = lookup};
            access_bucket b = {.policy = p, .bucket_acl = acl, .acls_enabled = true, .pab = (int)a};
            access_verdict v = access_decide(&c, &b);
            if (v != ACCESS_DENIED && v != ACCESS_GRANTED && v != ACCESS_OBJECT_ACL) abort();
            if (acl) (void)access_object_allows(&c, &b, acl);
        }
}

static void round_trip(const access_acl *a) {
    buf_t t;
    buf_init(&t);
    access_acl_to_text(a, &t);
    access_acl back;
    if (t.oom) {
        buf_free(&t);
        return;
    }
    if (access_acl_from_text(t.data, &back) != 0 || back.owner != a->owner || back.n != a->n ||
        memcmp(back.g, a->g, sizeof a->g[0] * (size_t)a->n) != 0)
        abort();
    buf_t x;
    buf_init(&x);
    access_acl_to_xml(a, &x);
    buf_free(&x);
    buf_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char *z = malloc(len + 1);
    if (!z) return 0;
    memcpy(z, in, len);
    z[len] = '\0';
    const char *code = NULL, *why = NULL;
    access_acl acl;
    switch (data[0] & 3) {
    case 0: {
        access_policy *p = (access_policy *)1;
        int rc = access_policy_parse(in, len, "bkt", &p, &why);
        if (rc == 0) {
            if (!p) abort();
            (void)access_policy_is_public(p);
            judge_all(p, NULL);
            access_policy_free(p);
        } else if (p != NULL || (rc == CAIRN_EINVAL && (!why || !*why)) || (rc != CAIRN_EINVAL && rc != CAIRN_ENOMEM)) {
            abort();
        }
        break;
    }
    case 1: {
        int rc = access_acl_parse_xml(in, len, &acl, &code, &why);
        if (rc == 0) {
            round_trip(&acl);
            judge_all(NULL, &acl);
        } else if (rc == CAIRN_EINVAL && (!code || !why)) {
            abort();
        }
        break;
    }
    case 2: {
        memset(&acl, 0, sizeof acl);
        int rc = access_acl_add_header(&acl, ACL_READ, z, &code, &why);
        if (rc == 0) round_trip(&acl);
        else if (!code || !why) abort();
        break;
    }
    default:
        if (access_acl_from_text(z, &acl) == 0) round_trip(&acl);
        break;
    }
    free(z);
    return 0;
}
