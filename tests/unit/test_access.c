/*
 * test_access.c — the access decision (src/s3/access.c) as a table: each
 * row a policy, an ACL, a public access block, a caller and an action, and
 * the verdict S3 gives; then the policy validator's refusals, ACLs'
 * stored form and headers, and IAM's wildcard.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "s3/access.h"

#define B "bkt"
#define OWNER 7
#define BOB 8
#define EVE 9

#define STMT(effect, principal, action, resource) \
    "{\"Effect\":\"" effect "\",\"Principal\":" principal ",\"Action\":" action ",\"Resource\":" resource "}"
#define POLICY(stmts) "{\"Version\":\"2012-10-17\",\"Statement\":[" stmts "]}"
#define POLICY2(a, b) POLICY(a "," b)
#define ALL_OBJECTS "\"arn:aws:s3:::" B "/*\""
#define THE_BUCKET "\"arn:aws:s3:::" B "\""

typedef enum { ANON, ROOT, OWN, BOBU, EVEU } who;

typedef struct {
    const char *name;
    const char *policy;          /* NULL: none */
    const char *acl;             /* text form (access_acl_from_text), NULL: none */
    bool acls_disabled;          /* BucketOwnerEnforced */
    int pab;
    who caller;
    const char *action;
    const char *key;             /* NULL: the bucket */
    const char *ip;
    access_verdict want;
} decide_case;

static const char *lookup(void *ud, const char *key) {
    if (!strcmp(key, "aws:username")) return ud; /* the caller's name; NULL: anonymous */
    if (!strcmp(key, "s3:prefix")) return "home/bob/";
    if (!strcmp(key, "s3:max-keys")) return "50";
    if (!strcmp(key, "s3:ExistingObjectTag/class")) return "public";
    return NULL;
}

static void run_case(const decide_case *c) {
    access_policy *p = NULL;
    const char *why = NULL;
    if (c->policy) cr_assert_eq(access_policy_parse(c->policy, strlen(c->policy), B, &p, &why), 0, "%s: %s", c->name, why);
    access_acl acl;
    if (c->acl) cr_assert_eq(access_acl_from_text(c->acl, &acl), 0, "%s", c->name);
    access_bucket b = {.policy = p, .bucket_acl = c->acl ? &acl : NULL, .acls_enabled = !c->acls_disabled, .pab = c->pab};
    int64_t ids[] = {[ANON] = 0, [ROOT] = 1, [OWN] = OWNER, [BOBU] = BOB, [EVEU] = EVE};
    access_ctx ctx = {
        .anonymous = c->caller == ANON,
        .is_root = c->caller == ROOT,
        .user_id = ids[c->caller],
        .action = c->action,
        .bucket = B,
        .bucket_owner = OWNER,
        .key = c->key,
        .key_len = c->key ? strlen(c->key) : 0,
        .source_ip = c->ip ? c->ip : "127.0.0.1",
        .now_s = 1800000000, /* 2027-01-15 */
        .lookup = lookup,
        .ud = (void *)(c->caller == BOBU ? "bob" : c->caller == EVEU ? "eve" : c->caller == OWN ? "owner" : NULL),
    };
    cr_expect_eq(access_decide(&ctx, &b), c->want, "%s: got %d, want %d", c->name, access_decide(&ctx, &b), c->want);
    access_policy_free(p);
}

Test(access, the_decision_table) {
    const char *pub_read = POLICY(STMT("Allow", "\"*\"", "\"s3:GetObject\"", ALL_OBJECTS));
    const char *deny_all = POLICY2(STMT("Allow", "\"*\"", "\"s3:*\"", "[" THE_BUCKET "," ALL_OBJECTS "]"),
                                  STMT("Deny", "\"*\"", "\"s3:*\"", "[" THE_BUCKET "," ALL_OBJECTS "]"));
    const char *bob_by_name = POLICY(STMT("Allow", "{\"AWS\":\"arn:aws:iam::123:user/bob\"}", "\"s3:Get*\"", ALL_OBJECTS));
    const char *bob_by_id = POLICY(STMT("Allow", "{\"AWS\":[\"8\"]}", "[\"s3:GetObject\",\"s3:PutObject\"]", ALL_OBJECTS));
    const char *bob_root = POLICY(STMT("Allow", "{\"AWS\":\"arn:aws:iam::8:root\"}", "\"s3:GetObject\"", ALL_OBJECTS));
    const char *bob_canon = POLICY(STMT("Allow", "{\"CanonicalUser\":\"8\"}", "\"s3:GetObject\"", ALL_OBJECTS));
    const char *not_action = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"NotAction\":\"s3:Delete*\","
                                    "\"Resource\":" ALL_OBJECTS "}");
    const char *not_resource = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                                      "\"NotResource\":\"arn:aws:s3:::" B "/secret/*\"}");
    const char *not_principal = POLICY("{\"Effect\":\"Deny\",\"NotPrincipal\":{\"AWS\":\"8\"},\"Action\":\"s3:*\","
                                       "\"Resource\":" ALL_OBJECTS "}");
    const char *ip_only = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                                 "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"IpAddress\":{\"aws:SourceIp\":\"10.0.0.0/8\"}}}");
    const char *ip6 = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                             "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"IpAddress\":{\"aws:SourceIp\":\"2001:db8::/32\"}}}");
    const char *not_ip = POLICY2(STMT("Allow", "\"*\"", "\"s3:GetObject\"", ALL_OBJECTS),
                                "{\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":" ALL_OBJECTS
                                ",\"Condition\":{\"NotIpAddress\":{\"aws:SourceIp\":[\"127.0.0.1/32\"]}}}");
    const char *tls_only = POLICY2(STMT("Allow", "\"*\"", "\"s3:GetObject\"", ALL_OBJECTS),
                                  "{\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":" ALL_OBJECTS
                                  ",\"Condition\":{\"Bool\":{\"aws:SecureTransport\":\"false\"}}}");
    const char *before_2026 = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                                     "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"DateLessThan\":{\"aws:CurrentTime\":"
                                     "\"2026-01-01T00:00:00Z\"}}}");
    const char *after_2026 = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                                    "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"DateGreaterThan\":{\"aws:CurrentTime\":"
                                    "\"2026-01-01\"}}}");
    const char *user_prefix = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:ListBucket\","
                                     "\"Resource\":" THE_BUCKET ",\"Condition\":{\"StringLike\":{\"s3:prefix\":"
                                     "\"home/${aws:username}/*\"},\"StringEquals\":{\"aws:username\":\"bob\"},"
                                     "\"NumericLessThan\":{\"s3:max-keys\":100}}}");
    const char *max_keys_10 = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:ListBucket\","
                                     "\"Resource\":" THE_BUCKET ",\"Condition\":{\"NumericLessThan\":{\"s3:max-keys\":\"10\"}}}");
    const char *tagged = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                                "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"StringEquals\":{\"s3:ExistingObjectTag/class\":"
                                "\"public\"}}}");
    const char *acl_cond = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:PutObject\","
                                  "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"StringEquals\":{\"s3:x-amz-acl\":"
                                  "\"bucket-owner-full-control\"}}}");
    const char *not_equals_missing = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:PutObject\","
                                            "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"StringNotEquals\":"
                                            "{\"s3:x-amz-acl\":\"public-read\"}}}");
    const char *if_exists = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:PutObject\","
                                   "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"StringEqualsIfExists\":"
                                   "{\"s3:x-amz-acl\":\"private\"}}}");
    const char *null_user = POLICY("{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                                   "\"Resource\":" ALL_OBJECTS ",\"Condition\":{\"Null\":{\"aws:userid\":\"true\"}}}");
    const char *deny_put_owner = POLICY(STMT("Deny", "\"*\"", "[\"s3:PutObject\",\"s3:PutBucketPolicy\"]",
                                             "[" THE_BUCKET "," ALL_OBJECTS "]"));
    const char *wild_resource = POLICY(STMT("Allow", "\"*\"", "\"s3:getobject\"", "\"arn:aws:s3:::bk?/docs/*.txt\""));
    const char *home_dirs = POLICY(STMT("Allow", "\"*\"", "\"s3:GetObject\"", "\"arn:aws:s3:::" B "/home/${aws:username}/*\""));
    const char *literal_star = POLICY(STMT("Allow", "\"*\"", "\"s3:GetObject\"", "\"arn:aws:s3:::" B "/a${*}b\""));
    const char *acl_pub = "owner 7\nFULL_CONTROL u:7\nREAD all\n";
    const char *acl_bob_write = "owner 7\nFULL_CONTROL u:7\nWRITE u:8\nREAD_ACP auth\n";

    const decide_case cases[] = {
        /* no configuration at all */
        {"root always", NULL, NULL, true, 0, ROOT, "s3:DeleteBucket", NULL, NULL, ACCESS_GRANTED},
        {"owner always", NULL, NULL, true, 0, OWN, "s3:PutObject", "k", NULL, ACCESS_GRANTED},
        {"anonymous never", NULL, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"another user never", NULL, NULL, true, 0, BOBU, "s3:ListBucket", NULL, NULL, ACCESS_DENIED},
        {"acls enabled: the object's acl may", NULL, NULL, false, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_OBJECT_ACL},
        {"acls enabled: not for a put", NULL, NULL, false, 0, ANON, "s3:PutObject", "k", NULL, ACCESS_DENIED},
        /* policies */
        {"public read", pub_read, NULL, true, 0, ANON, "s3:GetObject", "a/b", NULL, ACCESS_GRANTED},
        {"public read: no list", pub_read, NULL, true, 0, ANON, "s3:ListBucket", NULL, NULL, ACCESS_DENIED},
        {"public read: no put", pub_read, NULL, true, 0, BOBU, "s3:PutObject", "k", NULL, ACCESS_DENIED},
        {"explicit deny beats allow", deny_all, NULL, true, 0, BOBU, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"explicit deny beats the owner", deny_all, NULL, true, 0, OWN, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"the owner may still manage the policy", deny_all, NULL, true, 0, OWN, "s3:DeleteBucketPolicy", NULL, NULL,
         ACCESS_GRANTED},
        {"another user may not", deny_all, NULL, true, 0, BOBU, "s3:DeleteBucketPolicy", NULL, NULL, ACCESS_DENIED},
        {"deny does not stop root", deny_all, NULL, true, 0, ROOT, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"owner denied a put", deny_put_owner, NULL, true, 0, OWN, "s3:PutObject", "k", NULL, ACCESS_DENIED},
        {"owner still reads", deny_put_owner, NULL, true, 0, OWN, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"owner may replace a policy denying it", deny_put_owner, NULL, true, 0, OWN, "s3:PutBucketPolicy", NULL, NULL,
         ACCESS_GRANTED},
        {"user ARN by name", bob_by_name, NULL, true, 0, BOBU, "s3:GetObjectVersion", "k", NULL, ACCESS_GRANTED},
        {"user ARN: another user", bob_by_name, NULL, true, 0, EVEU, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"user ARN: anonymous", bob_by_name, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"account id", bob_by_id, NULL, true, 0, BOBU, "s3:PutObject", "k", NULL, ACCESS_GRANTED},
        {"account id: not delete", bob_by_id, NULL, true, 0, BOBU, "s3:DeleteObject", "k", NULL, ACCESS_DENIED},
        {"account root ARN", bob_root, NULL, true, 0, BOBU, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"canonical user", bob_canon, NULL, true, 0, BOBU, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"canonical user: eve", bob_canon, NULL, true, 0, EVEU, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"NotAction allows others", not_action, NULL, true, 0, ANON, "s3:PutObject", "k", NULL, ACCESS_GRANTED},
        {"NotAction excludes", not_action, NULL, true, 0, ANON, "s3:DeleteObjectVersion", "k", NULL, ACCESS_DENIED},
        {"NotResource allows others", not_resource, NULL, true, 0, ANON, "s3:GetObject", "pub/x", NULL, ACCESS_GRANTED},
        {"NotResource excludes", not_resource, NULL, true, 0, ANON, "s3:GetObject", "secret/x", NULL, ACCESS_DENIED},
        {"NotPrincipal deny: others", not_principal, NULL, true, 0, OWN, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"NotPrincipal deny: the named", not_principal, NULL, true, 0, BOBU, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"wildcards: ? and *, actions any case", wild_resource, NULL, true, 0, ANON, "s3:GetObject", "docs/a/b.txt",
         NULL, ACCESS_GRANTED},
        {"wildcards: no match", wild_resource, NULL, true, 0, ANON, "s3:GetObject", "docs/a.txt.gz", NULL, ACCESS_DENIED},
        /* conditions */
        {"IpAddress in", ip_only, NULL, true, 0, ANON, "s3:GetObject", "k", "10.2.3.4", ACCESS_GRANTED},
        {"IpAddress out", ip_only, NULL, true, 0, ANON, "s3:GetObject", "k", "11.2.3.4", ACCESS_DENIED},
        {"IpAddress v4-mapped", ip_only, NULL, true, 0, ANON, "s3:GetObject", "k", "::ffff:10.0.0.1", ACCESS_GRANTED},
        {"IpAddress v6 in", ip6, NULL, true, 0, ANON, "s3:GetObject", "k", "2001:db8::1", ACCESS_GRANTED},
        {"IpAddress v6 out", ip6, NULL, true, 0, ANON, "s3:GetObject", "k", "2001:db9::1", ACCESS_DENIED},
        {"NotIpAddress deny: outside", not_ip, NULL, true, 0, ANON, "s3:GetObject", "k", "10.0.0.1", ACCESS_DENIED},
        {"NotIpAddress deny: inside", not_ip, NULL, true, 0, ANON, "s3:GetObject", "k", "127.0.0.1", ACCESS_GRANTED},
        {"SecureTransport false denies", tls_only, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"DateLessThan past", before_2026, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        {"DateGreaterThan", after_2026, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"username, prefix, max-keys", user_prefix, NULL, true, 0, BOBU, "s3:ListBucket", NULL, NULL, ACCESS_GRANTED},
        {"a policy variable the request lacks", user_prefix, NULL, true, 0, ANON, "s3:ListBucket", NULL, NULL,
         ACCESS_DENIED},
        {"a variable in a resource", home_dirs, NULL, true, 0, BOBU, "s3:GetObject", "home/bob/x", NULL, ACCESS_GRANTED},
        {"a variable in a resource: another's", home_dirs, NULL, true, 0, BOBU, "s3:GetObject", "home/eve/x", NULL,
         ACCESS_DENIED},
        {"escaped wildcards are literal", literal_star, NULL, true, 0, ANON, "s3:GetObject", "a*b", NULL, ACCESS_GRANTED},
        {"escaped wildcards match no run", literal_star, NULL, true, 0, ANON, "s3:GetObject", "axxb", NULL, ACCESS_DENIED},
        {"max-keys above the bound", max_keys_10, NULL, true, 0, BOBU, "s3:ListBucket", NULL, NULL, ACCESS_DENIED},
        {"existing object tag", tagged, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"a key the request lacks fails", acl_cond, NULL, true, 0, BOBU, "s3:PutObject", "k", NULL, ACCESS_DENIED},
        {"a negated operator holds on a lacking key", not_equals_missing, NULL, true, 0, BOBU, "s3:PutObject", "k", NULL,
         ACCESS_GRANTED},
        {"IfExists holds on a lacking key", if_exists, NULL, true, 0, BOBU, "s3:PutObject", "k", NULL, ACCESS_GRANTED},
        {"Null: anonymous has no user id", null_user, NULL, true, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"Null: a user has one", null_user, NULL, true, 0, BOBU, "s3:GetObject", "k", NULL, ACCESS_DENIED},
        /* the public access block */
        {"RestrictPublicBuckets: anonymous", pub_read, NULL, true, PAB_RESTRICT_PUBLIC_BUCKETS, ANON, "s3:GetObject", "k",
         NULL, ACCESS_DENIED},
        {"RestrictPublicBuckets: other users", pub_read, NULL, true, PAB_RESTRICT_PUBLIC_BUCKETS, BOBU, "s3:GetObject",
         "k", NULL, ACCESS_DENIED},
        {"RestrictPublicBuckets: not a public policy", bob_by_id, NULL, true, PAB_RESTRICT_PUBLIC_BUCKETS, BOBU,
         "s3:GetObject", "k", NULL, ACCESS_GRANTED},
        {"RestrictPublicBuckets: the owner", pub_read, NULL, true, PAB_RESTRICT_PUBLIC_BUCKETS, OWN, "s3:GetObject", "k",
         NULL, ACCESS_GRANTED},
        /* ACLs */
        {"bucket READ to all lists", NULL, acl_pub, false, 0, ANON, "s3:ListBucket", NULL, NULL, ACCESS_GRANTED},
        {"bucket READ is not object read", NULL, acl_pub, false, 0, ANON, "s3:GetObject", "k", NULL, ACCESS_OBJECT_ACL},
        {"IgnorePublicAcls", NULL, acl_pub, false, PAB_IGNORE_PUBLIC_ACLS, ANON, "s3:ListBucket", NULL, NULL,
         ACCESS_DENIED},
        {"ACLs disabled", NULL, acl_pub, true, 0, ANON, "s3:ListBucket", NULL, NULL, ACCESS_DENIED},
        {"bucket WRITE puts", NULL, acl_bob_write, false, 0, BOBU, "s3:PutObject", "k", NULL, ACCESS_GRANTED},
        {"bucket WRITE deletes", NULL, acl_bob_write, false, 0, BOBU, "s3:DeleteObject", "k", NULL, ACCESS_GRANTED},
        {"bucket WRITE: only bob", NULL, acl_bob_write, false, 0, EVEU, "s3:PutObject", "k", NULL, ACCESS_DENIED},
        {"READ_ACP to authenticated users", NULL, acl_bob_write, false, 0, EVEU, "s3:GetBucketAcl", NULL, NULL,
         ACCESS_GRANTED},
        {"READ_ACP: not anonymous", NULL, acl_bob_write, false, 0, ANON, "s3:GetBucketAcl", NULL, NULL, ACCESS_DENIED},
        {"an explicit deny beats an ACL", deny_all, acl_bob_write, false, 0, BOBU, "s3:PutObject", "k", NULL,
         ACCESS_DENIED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

Test(access, the_object_acl_judges_what_was_left_to_it) {
    access_acl acl;
    cr_assert_eq(access_acl_from_text("owner 8\nFULL_CONTROL u:8\nREAD u:9\nREAD_ACP all\n", &acl), 0);
    access_bucket b = {.acls_enabled = true};
    access_ctx c = {.anonymous = false, .user_id = 9, .action = "s3:GetObject", .bucket = B, .bucket_owner = OWNER,
                    .key = "k", .key_len = 1};
    cr_expect(access_object_allows(&c, &b, &acl), "a READ grant reads");
    c.action = "s3:PutObjectAcl";
    cr_expect_not(access_object_allows(&c, &b, &acl), "READ does not write the ACL");
    c.user_id = 8;
    cr_expect(access_object_allows(&c, &b, &acl), "the object's owner may");
    c.anonymous = true;
    c.action = "s3:GetObjectAcl";
    cr_expect(access_object_allows(&c, &b, &acl), "READ_ACP to all users");
    b.pab = PAB_IGNORE_PUBLIC_ACLS;
    cr_expect_not(access_object_allows(&c, &b, &acl), "unless public ACLs are ignored");
    b.pab = 0;
    b.acls_enabled = false;
    cr_expect_not(access_object_allows(&c, &b, &acl), "nor when ACLs are disabled");
}

Test(access, policies_refused_with_the_reason) {
    static const struct {
        const char *doc, *why;
    } bad[] = {
        {"", "valid JSON"},
        {"{", "valid JSON"},
        {"{\"Statement\":[]}", "Missing required field Statement"},
        {"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
         "\"Resource\":\"arn:aws:s3:::other/*\"}]}", "Policy has invalid resource"},
        {"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"iam:CreateUser\",\"Resource\":"
         "\"arn:aws:s3:::" B "/*\"}]}", "Policy has invalid action"},
        {"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"NotAction\":\"s3:x\","
         "\"Resource\":\"arn:aws:s3:::" B "/*\"}]}", "Statement may not have both Action and NotAction"},
        {"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"Resource\":"
         "\"arn:aws:s3:::" B "/*\",\"Condition\":{\"StringEqualz\":{\"s3:prefix\":\"a\"}}}]}", "Invalid Condition type"},
        {"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"Resource\":"
         "\"arn:aws:s3:::" B "/*\",\"Condition\":{\"StringEquals\":{\"s3:prefix\":{\"a\":1}}}}]}", "Invalid Condition value"},
        {"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::1:group/g\"},\"Action\":"
         "\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::" B "/*\"}]}", "Invalid principal in policy"},
        {"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
         "\"Resource\":\"arn:aws:s3:::" B "/*\"}]}", "valid JSON"},
        {"{\"Id\":\"x\",\"Other\":1,\"Statement\":[]}", "Policy has an invalid field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        access_policy *p = (access_policy *)1;
        const char *why = NULL;
        cr_expect_eq(access_policy_parse(bad[i].doc, strlen(bad[i].doc), B, &p, &why), CAIRN_EINVAL, "case %zu", i);
        cr_expect_null(p, "case %zu", i);
        cr_expect(why && strstr(why, bad[i].why), "case %zu: %s", i, why ? why : "(null)");
    }
}

Test(access, acls_round_trip_and_headers) {
    access_acl a, back;
    cr_assert_eq(access_acl_canned("public-read-write", false, 5, 5, &a), 0);
    cr_expect(access_acl_is_public(&a));
    buf_t t;
    buf_init(&t);
    access_acl_to_text(&a, &t);
    cr_assert_eq(access_acl_from_text(t.data, &back), 0);
    cr_expect_eq(back.n, a.n);
    cr_expect_eq(memcmp(back.g, a.g, sizeof a.g[0] * (size_t)a.n), 0);
    buf_free(&t);
    cr_expect_eq(access_acl_canned("bucket-owner-full-control", true, 8, 7, &a), 0);
    cr_expect_eq(a.n, 2, "the writer's and the bucket owner's full control");
    cr_expect_eq(access_acl_canned("everyone-please", true, 8, 7, &a), CAIRN_EINVAL);
    const char *code, *why;
    memset(&a, 0, sizeof a);
    cr_expect_eq(access_acl_add_header(&a, ACL_READ, "id=\"12\", uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
                                       &code, &why), 0);
    cr_expect_eq(a.n, 2);
    cr_expect_eq(access_acl_add_header(&a, ACL_READ, "emailAddress=\"x@example.com\"", &code, &why), CAIRN_EINVAL);
    cr_expect_str_eq(code, "UnresolvableGrantByEmailAddress");
    cr_expect_eq(access_acl_add_header(&a, ACL_READ, "id=\"abc\"", &code, &why), CAIRN_EINVAL);
    cr_expect_str_eq(code, "InvalidArgument");
    cr_expect_eq(access_acl_from_text("owner x\n", &back), CAIRN_EINVAL);
    cr_expect_eq(access_acl_from_text("owner 1\nEVERYTHING all\n", &back), CAIRN_EINVAL);
}

Test(access, iam_wildcards) {
    cr_expect(access_wildcard("*", "", 0, false));
    cr_expect(access_wildcard("a*b?d", "axxbcd", 6, false));
    cr_expect_not(access_wildcard("a*b?d", "axxbd", 5, false));
    cr_expect(access_wildcard("S3:GET*", "s3:GetObject", 12, true));
    cr_expect_not(access_wildcard("S3:GET*", "s3:GetObject", 12, false));
    cr_expect(access_wildcard("a**", "a", 1, false));
    cr_expect_not(access_wildcard("abc", "ab", 2, false));
}
