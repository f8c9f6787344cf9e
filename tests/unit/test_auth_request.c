/*
 * test_auth_request.c — authenticating a whole request (src/auth/request.c):
 * the root key from the configuration, user keys from metadata with their
 * secrets sealed by the master key, and every way a request is refused,
 * each with the S3 error code (and message) the gateway answers with.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "auth/auth.h"
#include "meta/meta.h"

#define ROOT_AK "rootaccesskey"
#define ROOT_SK "root-secret-0123456789"
#define USER_AK "USERKEY0000000000001"
#define USER_SK "user-secret-abcdefghijklmnopqrstuvwxyz0123"

typedef struct {
    char dir[64];
    meta_store *ms;
    uint8_t master[AUTH_MASTER_KEY_LEN];
    int64_t root_id, user_id;
    auth_keys keys;
} fx;

static void fx_up(fx *f) {
    cr_assert_eq(core_init(), 0);
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/cairn-test-authreq-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    char path[128];
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    meta_options mo = {.readers = 1, .fsync = false, .busy_timeout_ms = 5000};
    cr_assert_eq(meta_open(path, &mo, &f->ms), 0);
    meta_user root, user = {.created_ms = 1};
    cr_assert_eq(meta_user_ensure_root(f->ms, "root", &root), 0);
    snprintf(user.name, sizeof user.name, "alice");
    cr_assert_eq(meta_user_create(f->ms, &user), 0);
    f->root_id = root.id;
    f->user_id = user.id;
    rand_bytes(f->master, sizeof f->master);
    buf_t sealed;
    buf_init(&sealed);
    cr_assert_eq(auth_secret_seal(f->master, USER_SK, &sealed), 0);
    meta_key k = {.user_id = user.id, .active = true, .created_ms = 1};
    snprintf(k.access_key, sizeof k.access_key, USER_AK);
    snprintf(k.sealed_secret, sizeof k.sealed_secret, "%s", sealed.data);
    cr_assert_eq(meta_key_create(f->ms, &k), 0);
    snprintf(k.access_key, sizeof k.access_key, "INACTIVEKEY000000001");
    k.active = false;
    cr_assert_eq(meta_key_create(f->ms, &k), 0);
    buf_free(&sealed);
    f->keys = (auth_keys){.meta = f->ms, .master_key = f->master, .root_access_key = ROOT_AK, .root_secret = ROOT_SK,
                          .root_user_id = root.id, .region = "us-east-1", .clock_skew = 900, .sigv2 = true};
}

static void fx_down(fx *f) {
    meta_close(f->ms);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    cr_expect_eq(system(cmd), 0);
}

/* A GET /b/k signed with SigV4 as (ak, sk) for region and service, now. */
typedef struct {
    char date[20];
    char authz[512];
    auth_header h[4];
    sigv4_request r;
} signed_req;

static void sign_v4(signed_req *s, const char *ak, const char *sk, const char *region, const char *service) {
    time_t now = time(NULL);
    strftime(s->date, sizeof s->date, "%Y%m%dT%H%M%SZ", gmtime(&now));
    static const char empty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    s->h[0] = (auth_header){"Host", 4, "localhost", 9};
    s->h[1] = (auth_header){"x-amz-content-sha256", 20, empty, 64};
    s->h[2] = (auth_header){"x-amz-date", 10, s->date, strlen(s->date)};
    s->r = (sigv4_request){"GET", "/b/k", "", s->h, 3};
    buf_t a;
    buf_init(&a);
    cr_assert_eq(sigv4_sign(&s->r, ak, sk, region, service, s->date, "host;x-amz-content-sha256;x-amz-date", empty, &a),
                 0);
    snprintf(s->authz, sizeof s->authz, "%s", a.data);
    buf_free(&a);
    s->h[3] = (auth_header){"Authorization", 13, s->authz, strlen(s->authz)};
    s->r.nheaders = 4;
}

static int run(fx *f, const sigv4_request *r, auth_identity *id, auth_refusal *why) {
    return auth_request(&f->keys, r, NULL, (int64_t)time(NULL), id, why);
}

Test(auth_request, the_root_key_and_user_keys_are_who_they_say) {
    fx f;
    fx_up(&f);
    signed_req s;
    auth_identity id;
    auth_refusal why;
    sign_v4(&s, ROOT_AK, ROOT_SK, "us-east-1", "s3");
    cr_assert_eq(run(&f, &s.r, &id, &why), 0, "%s", why.code);
    cr_expect(id.is_root && !id.anonymous);
    cr_expect_eq(id.user_id, f.root_id);
    cr_expect_str_eq(id.secret, ROOT_SK, "the secret, for aws-chunked");
    cr_expect_str_eq(id.cred.access_key, ROOT_AK);
    auth_identity_wipe(&id);
    cr_expect_eq(id.secret[0], '\0');

    sign_v4(&s, USER_AK, USER_SK, "us-east-1", "s3");
    cr_assert_eq(run(&f, &s.r, &id, &why), 0, "%s", why.code);
    cr_expect(!id.is_root && !id.anonymous);
    cr_expect_eq(id.user_id, f.user_id);
    cr_expect_str_eq(id.secret, USER_SK, "opened with the master key");

    sigv4_request anon = {"GET", "/b/k", "", s.h, 1};
    cr_assert_eq(run(&f, &anon, &id, &why), 0);
    cr_expect(id.anonymous);
    cr_expect_eq(id.cred.kind, SIGV4_ANONYMOUS);
    fx_down(&f);
}

typedef struct {
    const char *ak, *sk, *region, *service;
    const char *code, *message;
} refusal_case;

Test(auth_request, refusals_carry_the_s3_error_to_answer) {
    fx f;
    fx_up(&f);
    static const refusal_case cases[] = {
        {"NOSUCHKEY00000000001", USER_SK, "us-east-1", "s3", "InvalidAccessKeyId", NULL},
        {"INACTIVEKEY000000001", USER_SK, "us-east-1", "s3", "InvalidAccessKeyId", NULL},
        {USER_AK, "not-the-secret", "us-east-1", "s3", "SignatureDoesNotMatch", NULL},
        {ROOT_AK, ROOT_SK, "us-east-1", "iam", "AuthorizationHeaderMalformed",
         "The credential scope must name the service 's3'."},
        {ROOT_AK, ROOT_SK, "eu-west-1", "s3", "AuthorizationHeaderMalformed",
         "the region 'eu-west-1' is wrong; expecting 'us-east-1'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const refusal_case *c = &cases[i];
        signed_req s;
        sign_v4(&s, c->ak, c->sk, c->region, c->service);
        auth_identity id;
        auth_refusal why;
        cr_expect_eq(run(&f, &s.r, &id, &why), CAIRN_EAUTH, "case %zu", i);
        cr_expect_str_eq(why.code, c->code, "case %zu", i);
        if (c->message) cr_expect_str_eq(why.message ? why.message : "(null)", c->message, "case %zu", i);
        cr_expect_eq(id.secret[0], '\0', "no secret is kept for a refused request");
    }
    /* A malformed Authorization header: the parser's code. */
    signed_req s;
    sign_v4(&s, ROOT_AK, ROOT_SK, "us-east-1", "s3");
    s.h[3] = (auth_header){"Authorization", 13, "AWS4-HMAC-SHA256 garbage", 24};
    auth_identity id;
    auth_refusal why;
    cr_expect_eq(run(&f, &s.r, &id, &why), CAIRN_EAUTH);
    cr_expect_str_eq(why.code, "AuthorizationHeaderMalformed");
    fx_down(&f);
}

Test(auth_request, sigv2_only_when_accepted) {
    fx f;
    fx_up(&f);
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime(&now));
    auth_header h[3] = {{"Host", 4, "localhost", 9}, {"Date", 4, date, strlen(date)}};
    sigv4_request r = {"GET", "/b/k", "", h, 2};
    buf_t a;
    buf_init(&a);
    cr_assert_eq(sigv2_sign(&r, NULL, USER_AK, USER_SK, &a), 0);
    h[2] = (auth_header){"Authorization", 13, a.data, a.len};
    r.nheaders = 3;
    auth_identity id;
    auth_refusal why;
    cr_expect_eq(run(&f, &r, &id, &why), 0, "%s", why.code);
    cr_expect_eq(id.user_id, f.user_id);
    f.keys.sigv2 = false;
    cr_expect_eq(run(&f, &r, &id, &why), CAIRN_EAUTH);
    cr_expect_str_eq(why.code, "InvalidRequest");
    cr_expect_str_eq(why.message,
                     "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
    buf_free(&a);
    fx_down(&f);
}

Test(auth_request, a_secret_the_master_key_cannot_open_is_an_internal_error) {
    fx f;
    fx_up(&f);
    uint8_t other[AUTH_MASTER_KEY_LEN];
    rand_bytes(other, sizeof other);
    f.keys.master_key = other;
    signed_req s;
    sign_v4(&s, USER_AK, USER_SK, "us-east-1", "s3");
    auth_identity id;
    auth_refusal why;
    cr_expect_eq(run(&f, &s.r, &id, &why), CAIRN_EAUTH);
    cr_expect_str_eq(why.code, "InternalError");
    cr_expect_str_eq(why.message, "cannot load the access key");
    fx_down(&f);
}

Test(auth_request, a_metadata_store_that_fails_is_reported_as_such) {
    fx f;
    fx_up(&f);
    signed_req s;
    sign_v4(&s, USER_AK, USER_SK, "us-east-1", "s3");
    /* Another connection takes the keys' table away: the lookup fails with
     * the store's own error, not "no such key". */
    char path[128];
    snprintf(path, sizeof path, "%s/meta.db", f.dir);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "ALTER TABLE access_keys RENAME TO gone", NULL, NULL, NULL), SQLITE_OK,
                 "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    auth_identity id;
    auth_refusal why;
    int rc = run(&f, &s.r, &id, &why);
    cr_expect(rc != 0 && rc != CAIRN_EAUTH && rc != CAIRN_ENOTFOUND, "the store's own error: %d", rc);
    cr_expect_str_eq(why.code, "InternalError");
    cr_expect_str_eq(why.message, "cannot load the access key");
    /* The root key needs no lookup. */
    sign_v4(&s, ROOT_AK, ROOT_SK, "us-east-1", "s3");
    cr_expect_eq(run(&f, &s.r, &id, &why), 0);
    fx_down(&f);
}
