/*
 * test_sse_config.c — a bucket's default encryption document
 * (src/s3/encryption.c, docs/bucket-encryption.md): what PutBucketEncryption
 * accepts and how it is kept (an ARN's key id, BucketKeyEnabled), each
 * refusal with the S3 error code it answers, and the stored form reading
 * back to the same configuration; then what the object write path reads
 * (s3_bucket_sse_default) over a real gateway and SQLite metadata.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "meta/meta.h"
#include "obs/obs.h"
#include "s3/internal.h"

#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

/* A document with one Rule holding rule_body. */
static char *doc_of(const char *rule_body) {
    static char d[4096];
    snprintf(d, sizeof d, "<ServerSideEncryptionConfiguration " NS "><Rule>%s</Rule></ServerSideEncryptionConfiguration>",
             rule_body);
    return d;
}

static int parse(const char *d, s3_sse_default *out, const char **code, const char **why) {
    *code = *why = NULL;
    return s3_sse_config_parse(d, strlen(d), out, code, why);
}

typedef struct {
    const char *doc;
    char mode;
    const char *key;
    bool bucket_key;
} good_case;

Test(sse_config, accepted_documents_and_what_is_kept) {
    static const good_case cases[] = {
        {"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
         "</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>",
         'S', "", false},
        {"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ServerSideEncryptionConfiguration " NS ">\n  <Rule>\n"
         "    <ApplyServerSideEncryptionByDefault>\n      <SSEAlgorithm>aws:kms</SSEAlgorithm>\n"
         "    </ApplyServerSideEncryptionByDefault>\n    <BucketKeyEnabled>true</BucketKeyEnabled>\n  </Rule>\n"
         "</ServerSideEncryptionConfiguration>\n",
         'K', "", true},
        {NULL, 'K', "my-key_1", false},   /* filled below: a bare id */
        {NULL, 'K', "1234abcd-12ab-34cd-56ef-1234567890ab", false},   /* an ARN */
        {NULL, 'K', "k", false},          /* a GovCloud ARN */
        {NULL, 'S', "", false},           /* BucketKeyEnabled false, before the default */
    };
    const char *docs[] = {
        cases[0].doc, cases[1].doc,
        NULL, NULL, NULL, NULL,
    };
    /* doc_of answers one static buffer: each is copied before the next */
    char d2[1024], d3[1024], d4[1024], d5[1024];
    snprintf(d2, sizeof d2, "%s", doc_of("<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
                                         "<KMSMasterKeyID>my-key_1</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>"));
    snprintf(d3, sizeof d3, "%s", doc_of("<ApplyServerSideEncryptionByDefault><KMSMasterKeyID>"
                                         "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                                         "</KMSMasterKeyID><SSEAlgorithm>aws:kms</SSEAlgorithm>"
                                         "</ApplyServerSideEncryptionByDefault>"));
    snprintf(d4, sizeof d4, "%s", doc_of("<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
                                         "<KMSMasterKeyID>arn:aws-us-gov:kms:us-gov-west-1:0:key/k</KMSMasterKeyID>"
                                         "</ApplyServerSideEncryptionByDefault>"));
    snprintf(d5, sizeof d5, "%s", doc_of("<BucketKeyEnabled>false</BucketKeyEnabled><ApplyServerSideEncryptionByDefault>"
                                         "<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"));
    docs[2] = d2;
    docs[3] = d3;
    docs[4] = d4;
    docs[5] = d5;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s3_sse_default c;
        const char *code, *why;
        int rc = parse(docs[i], &c, &code, &why);
        cr_assert_eq(rc, 0, "case %zu: %s %s", i, code ? code : "", why ? why : "");
        cr_expect_eq(c.mode, cases[i].mode, "case %zu", i);
        cr_expect_str_eq(c.kms_key_id, cases[i].key, "case %zu", i);
        cr_expect_eq(c.bucket_key, cases[i].bucket_key, "case %zu", i);
        /* the stored form reads back to the same configuration, and renders the same */
        buf_t a, b;
        buf_init(&a);
        buf_init(&b);
        s3_sse_config_render(&c, &a);
        s3_sse_default back;
        cr_assert_eq(parse(a.data, &back, &code, &why), 0, "case %zu: %s", i, a.data);
        cr_expect(back.mode == c.mode && !strcmp(back.kms_key_id, c.kms_key_id) && back.bucket_key == c.bucket_key,
                  "case %zu", i);
        s3_sse_config_render(&back, &b);
        cr_expect_str_eq(a.data, b.data);
        cr_expect(strstr(a.data, "<BucketKeyEnabled>") != NULL, "GET always says whether the bucket key is on");
        buf_free(&a);
        buf_free(&b);
    }
}

typedef struct {
    const char *doc;            /* whole document; NULL: rule is a Rule's body */
    const char *rule;
    const char *code;
} bad_case;

#define DEF(x) "<ApplyServerSideEncryptionByDefault>" x "</ApplyServerSideEncryptionByDefault>"
#define AES "<SSEAlgorithm>AES256</SSEAlgorithm>"
#define KMS "<SSEAlgorithm>aws:kms</SSEAlgorithm>"

Test(sse_config, each_refusal_answers_its_code) {
    static const bad_case cases[] = {
        /* not XML, or not this document */
        {"", NULL, "MalformedXML"},
        {"<ServerSideEncryptionConfiguration><Rule>", NULL, "MalformedXML"},
        {"not xml at all", NULL, "MalformedXML"},
        {"<CORSConfiguration><Rule>" DEF(AES) "</Rule></CORSConfiguration>", NULL, "MalformedXML"},
        /* exactly one Rule */
        {"<ServerSideEncryptionConfiguration/>", NULL, "MalformedXML"},
        {"<ServerSideEncryptionConfiguration><Rule>" DEF(AES) "</Rule><Rule>" DEF(AES)
         "</Rule></ServerSideEncryptionConfiguration>", NULL, "MalformedXML"},
        {"<ServerSideEncryptionConfiguration><Rule>" DEF(AES) "</Rule><Other/></ServerSideEncryptionConfiguration>",
         NULL, "MalformedXML"},
        /* the Rule: one default, a BucketKeyEnabled of true or false, nothing else */
        {NULL, "", "MalformedXML"},
        {NULL, "<BucketKeyEnabled>true</BucketKeyEnabled>", "MalformedXML"},
        {NULL, DEF(AES) DEF(AES), "MalformedXML"},
        {NULL, DEF(AES) "<BucketKeyEnabled>yes</BucketKeyEnabled>", "MalformedXML"},
        {NULL, DEF(AES) "<BucketKeyEnabled>true</BucketKeyEnabled><BucketKeyEnabled>true</BucketKeyEnabled>",
         "MalformedXML"},
        {NULL, DEF(AES) "<Unknown/>", "MalformedXML"},
        /* the algorithm: required, once, one of two */
        {NULL, DEF(""), "MalformedXML"},
        {NULL, DEF("<KMSMasterKeyID>k</KMSMasterKeyID>"), "MalformedXML"},
        {NULL, DEF(AES AES), "MalformedXML"},
        {NULL, DEF("<SSEAlgorithm>aes256</SSEAlgorithm>"), "MalformedXML"},
        {NULL, DEF("<SSEAlgorithm></SSEAlgorithm>"), "MalformedXML"},
        {NULL, DEF("<SSEAlgorithm> AES256</SSEAlgorithm>"), "MalformedXML"},
        {NULL, DEF("<SSEAlgorithm><b>AES256</b></SSEAlgorithm>"), "MalformedXML"},
        {NULL, DEF(AES "<Other/>"), "MalformedXML"},
        {NULL, DEF("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm>"), "NotImplemented"},
        {NULL, DEF("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"), "NotImplemented"},
        /* a key only with aws:kms, and a valid one */
        {NULL, DEF(AES "<KMSMasterKeyID>k</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID></KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>alias/aws/s3</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>has space</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>"
                       "k0123456789012345678901234567890123456789012345678901234567890123"   /* 65 */
                       "</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>arn:aws:kms:us-east-1:111122223333:alias/mine</KMSMasterKeyID>"),
         "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>arn:aws:s3:us-east-1:111122223333:key/k</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>arn:aws:kms:us-east-1:key/k</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>arn:aws:kms::111122223333:key/k</KMSMasterKeyID>"), "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>arn:aws:kms:us-east-1:111122223333:key/</KMSMasterKeyID>"),
         "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>arn:aws:kms:us-east-1:111122223333:key/a/b</KMSMasterKeyID>"),
         "InvalidArgument"},
        {NULL, DEF(KMS "<KMSMasterKeyID>a</KMSMasterKeyID><KMSMasterKeyID>b</KMSMasterKeyID>"), "MalformedXML"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char d[4096];
        snprintf(d, sizeof d, "%s", cases[i].doc ? cases[i].doc : doc_of(cases[i].rule));
        s3_sse_default c;
        memset(&c, 0x55, sizeof c);
        const char *code, *why;
        int rc = parse(d, &c, &code, &why);
        cr_expect_eq(rc, CAIRN_EINVAL, "case %zu: %s", i, d);
        if (rc != CAIRN_EINVAL) continue;
        cr_expect_str_eq(code, cases[i].code, "case %zu: %s", i, d);
        cr_expect(why && why[0], "case %zu says why", i);
        cr_expect_eq(c.mode, 0, "case %zu leaves nothing behind", i);
    }
}

Test(sse_config, the_dsse_refusal_names_what_is_supported) {
    s3_sse_default c;
    const char *code, *why;
    cr_assert_eq(parse(doc_of(DEF("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm>")), &c, &code, &why), CAIRN_EINVAL);
    cr_expect(strstr(why, "aws:kms:dsse") && strstr(why, "not supported"), "%s", why);
}

/* ---- what the write path reads, through the gateway's cache ------------------------------------- */

typedef struct {
    char dir[64];
    meta_store *ms;
    data_store *ds;
    obs_registry *obs;
    config_t cfg;
    s3_gateway *gw;
} gateway_fx;

static void fx_up(gateway_fx *f) {
    cr_assert_eq(core_init(), 0);
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/cairn-test-sse-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    char path[160];
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    meta_options mo = {.readers = 2, .fsync = false, .busy_timeout_ms = 5000};
    cr_assert_eq(meta_open(path, &mo, &f->ms), 0);
    meta_user root;
    cr_assert_eq(meta_user_ensure_root(f->ms, "sseroot", &root), 0);
    snprintf(path, sizeof path, "%s/d0", f->dir);
    const char *drives[] = {path};
    data_options dopt = {.drives = drives, .ndrives = 1, .fsync = false};
    cr_assert_eq(data_open(&dopt, &f->ds, NULL), 0);
    f->obs = obs_new();
    cr_assert_not_null(f->obs);
    config_defaults(&f->cfg);
    s3_deps deps = {.cfg = &f->cfg, .meta = f->ms, .data = f->ds, .obs = f->obs, .root_access_key = "sseroot",
                    .root_secret = "sse-root-secret-0123456789", .root_user_id = root.id};
    cr_assert_eq(s3_gateway_new(&deps, &f->gw), 0);
}

static void fx_down(gateway_fx *f) {
    s3_gateway_free(f->gw);
    data_close(f->ds);
    meta_close(f->ms);
    obs_free(f->obs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    cr_expect_eq(system(cmd), 0);
}

static int64_t make_bucket(gateway_fx *f, const char *name) {
    meta_bucket b = {0};
    snprintf(b.name, sizeof b.name, "%s", name);
    b.owner_id = 1;
    cr_assert_eq(meta_bucket_create(f->ms, &b, NULL), 0);
    return b.id;
}

static void store(gateway_fx *f, const char *bucket, int64_t id, const s3_sse_default *c) {
    buf_t b;
    buf_init(&b);
    s3_sse_config_render(c, &b);
    cr_assert_eq(meta_bucket_config_put(f->ms, bucket, id, "encryption", b.data), 0);
    buf_free(&b);
}

static s3_sse_default read_default(gateway_fx *f, int64_t bucket_id) {
    http_req r;
    memset(&r, 0, sizeof r);
    snprintf(r.request_id, sizeof r.request_id, "test");
    s3_req q;
    memset(&q, 0, sizeof q);
    q.gw = f->gw;
    q.http = &r;
    q.bucket_id = bucket_id;
    s3_sse_default d;
    memset(&d, 0x55, sizeof d);
    cr_assert_eq(s3_bucket_sse_default(&q, &d), 0);
    return d;
}

Test(sse_config, the_write_path_reads_the_stored_default) {
    gateway_fx f;
    fx_up(&f);
    int64_t a = make_bucket(&f, "sse-a"), b = make_bucket(&f, "sse-b");
    s3_sse_default d = read_default(&f, a);
    cr_expect_eq(d.mode, 0, "none until one is put");
    cr_expect_str_eq(d.kms_key_id, "");
    s3_sse_default kms = {.mode = 'K', .kms_key_id = "team-key", .bucket_key = true};
    store(&f, "sse-b", b, &kms);
    d = read_default(&f, b);
    cr_expect(d.mode == 'K' && !strcmp(d.kms_key_id, "team-key") && d.bucket_key);
    /* A change made elsewhere (another gateway: straight into the metadata
     * here) is seen once the cached answer is no longer fresh. */
    s3_sse_default aes = {.mode = 'S'};
    store(&f, "sse-a", a, &aes);
    int64_t deadline = time_now_ms() + 10000;
    while ((d = read_default(&f, a)).mode != 'S' && time_now_ms() < deadline) usleep(50 * 1000);
    cr_expect_eq(d.mode, 'S', "the change was never seen");
    cr_expect_str_eq(d.kms_key_id, "");
    cr_assert_eq(meta_bucket_config_put(f.ms, "sse-b", b, "encryption", ""), 0);
    while ((d = read_default(&f, b)).mode != 0 && time_now_ms() < deadline) usleep(50 * 1000);
    cr_expect_eq(d.mode, 0, "the removal was never seen");
    fx_down(&f);
}
