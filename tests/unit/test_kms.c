/*
 * test_kms.c — the built-in key manager (src/crypt/kms.c) over a real
 * SQLite store: data keys wrapped and unwrapped, a disabled key refused
 * (and seen within KMS_CACHE_MS by another handle: another gateway), an
 * unknown key, a master key that does not open the material, a rotation
 * (new version for new wraps, old ones still open), the SSE-S3 key made
 * on first use (once, however many handles race for it); and the
 * kms_rewrap job (src/jobs/rewrap.c), which moves objects' and uploads'
 * data keys to a key's newest version without touching their bytes.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypt/kms.h"
#include "jobs/jobs.h"

typedef struct {
    char dir[64];
    char path[128];
    meta_store *ms;
    uint8_t master[CRYPT_KEY];
    kms *k;
} fx;

static void fx_open(fx *f) {
    cr_assert_eq(core_init(), 0);
    strcpy(f->dir, "/tmp/cairn-test-kms-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/meta.db", f->dir);
    meta_options o = {.readers = 2, .fsync = false, .busy_timeout_ms = 5000};
    cr_assert_eq(meta_open(f->path, &o, &f->ms), 0);
    crypt_key_new(f->master);
    cr_assert_eq(kms_open(f->ms, f->master, &f->k), 0);
}

static void fx_close(fx *f) {
    kms_close(f->k);
    meta_close(f->ms);
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

Test(kms, ids) {
    cr_expect(kms_id_valid("a"));
    cr_expect(kms_id_valid("My_key-1"));
    cr_expect(kms_id_valid(KMS_SSE_S3_KEY));
    char id[KMS_ID_MAX + 2];
    memset(id, 'x', KMS_ID_MAX);
    id[KMS_ID_MAX] = 0;
    cr_expect(kms_id_valid(id));
    id[KMS_ID_MAX] = 'x';
    id[KMS_ID_MAX + 1] = 0;
    cr_expect_not(kms_id_valid(id), "65 characters");
    cr_expect_not(kms_id_valid(""));
    cr_expect_not(kms_id_valid(NULL));
    cr_expect_not(kms_id_valid("alias/x"));
    cr_expect_not(kms_id_valid("a b"));
}

Test(kms, a_data_key_wrapped_by_a_key_unwraps_to_the_same_bytes) {
    fx f;
    fx_open(&f);
    cr_assert_eq(kms_key_create(f.k, "k1", "test"), 0);
    cr_expect_eq(kms_key_create(f.k, "k1", "again"), CAIRN_EEXIST);
    cr_expect_eq(kms_key_create(f.k, "bad/id", ""), CAIRN_EINVAL);
    uint8_t dk[CRYPT_KEY], back[CRYPT_KEY], w[CRYPT_WRAPPED];
    crypt_key_new(dk);
    int v = 0;
    cr_assert_eq(kms_wrap(f.k, "k1", dk, w, &v), 0);
    cr_expect_eq(v, 1);
    cr_assert_eq(kms_unwrap(f.k, "k1", 1, w, back), 0);
    cr_expect_eq(memcmp(dk, back, sizeof dk), 0);
    /* A wrapped key bound to another key or version does not open. */
    cr_assert_eq(kms_key_create(f.k, "k2", ""), 0);
    cr_expect_eq(kms_unwrap(f.k, "k2", 1, w, back), CAIRN_EAUTH);
    w[20] ^= 1;
    cr_expect_eq(kms_unwrap(f.k, "k1", 1, w, back), CAIRN_EAUTH);
    fx_close(&f);
}

Test(kms, unknown_keys_and_versions_are_not_found) {
    fx f;
    fx_open(&f);
    uint8_t dk[CRYPT_KEY] = {1}, w[CRYPT_WRAPPED] = {0};
    int v;
    cr_expect_eq(kms_wrap(f.k, "none", dk, w, &v), CAIRN_ENOTFOUND);
    cr_expect_eq(kms_wrap(f.k, "not/valid", dk, w, &v), CAIRN_ENOTFOUND);
    cr_expect_eq(kms_unwrap(f.k, "none", 1, w, dk), CAIRN_ENOTFOUND);
    cr_assert_eq(kms_key_create(f.k, "k1", ""), 0);
    cr_expect_eq(kms_unwrap(f.k, "k1", 2, w, dk), CAIRN_ENOTFOUND);
    cr_expect_eq(kms_unwrap(f.k, "k1", 0, w, dk), CAIRN_ENOTFOUND);
    cr_expect_eq(kms_wrap_at(f.k, "k1", 7, dk, w), CAIRN_ENOTFOUND);
    cr_expect_eq(kms_key_rotate(f.k, "none", &v), CAIRN_ENOTFOUND);
    fx_close(&f);
}

/* How long until another handle (another gateway) refuses a key disabled
 * here: within KMS_CACHE_MS, measured with a deadline of seconds. */
Test(kms, a_disabled_key_is_refused_by_every_handle_within_the_cache_window) {
    fx f;
    fx_open(&f);
    kms *other;
    cr_assert_eq(kms_open(f.ms, f.master, &other), 0);
    cr_assert_eq(kms_key_create(f.k, "k1", ""), 0);
    uint8_t dk[CRYPT_KEY], back[CRYPT_KEY], w[CRYPT_WRAPPED];
    crypt_key_new(dk);
    int v;
    cr_assert_eq(kms_wrap(other, "k1", dk, w, &v), 0, "other has the row and material cached now");
    cr_assert_eq(meta_kms_key_set_enabled(f.ms, "k1", false), 0);
    cr_expect_eq(kms_wrap(f.k, "k1", dk, w, &v), CAIRN_EPERM);
    int64_t deadline = time_mono_ns() + 5 * 1000000000LL;
    int rc = 0;
    while ((rc = kms_unwrap(other, "k1", 1, w, back)) == 0 && time_mono_ns() < deadline) usleep(20000);
    cr_expect_eq(rc, CAIRN_EPERM, "the other handle saw the disable");
    cr_expect_eq(kms_wrap_at(other, "k1", 1, dk, w), CAIRN_EPERM);
    cr_assert_eq(meta_kms_key_set_enabled(f.ms, "k1", true), 0);
    kms_forget(f.k, "k1");
    cr_expect_eq(kms_unwrap(f.k, "k1", 1, w, back), 0, "enabled again");
    kms_close(other);
    fx_close(&f);
}

Test(kms, material_sealed_under_another_master_key_does_not_open) {
    fx f;
    fx_open(&f);
    cr_assert_eq(kms_key_create(f.k, "k1", ""), 0);
    uint8_t other_master[CRYPT_KEY];
    crypt_key_new(other_master);
    kms *wrong;
    cr_assert_eq(kms_open(f.ms, other_master, &wrong), 0);
    uint8_t dk[CRYPT_KEY] = {0}, w[CRYPT_WRAPPED];
    int v;
    cr_expect_eq(kms_wrap(wrong, "k1", dk, w, &v), CAIRN_EAUTH);
    cr_expect_eq(kms_unwrap(wrong, "k1", 1, w, dk), CAIRN_EAUTH);
    kms_close(wrong);
    /* The material is bound to its id and version as well. */
    uint8_t m[CRYPT_KEY], sealed[CRYPT_WRAPPED], out[CRYPT_KEY];
    crypt_key_new(m);
    cr_assert_eq(kms_material_seal(f.master, "a", 1, m, sealed), 0);
    cr_expect_eq(kms_material_open(f.master, "a", 2, sealed, out), CAIRN_EAUTH);
    cr_expect_eq(kms_material_open(f.master, "b", 1, sealed, out), CAIRN_EAUTH);
    cr_assert_eq(kms_material_open(f.master, "a", 1, sealed, out), 0);
    cr_expect_eq(memcmp(m, out, sizeof m), 0);
    fx_close(&f);
}

Test(kms, a_rotated_key_wraps_with_its_new_version_and_still_unwraps_the_old) {
    fx f;
    fx_open(&f);
    cr_assert_eq(kms_key_create(f.k, "k1", ""), 0);
    uint8_t dk[CRYPT_KEY], back[CRYPT_KEY], w1[CRYPT_WRAPPED], w2[CRYPT_WRAPPED];
    crypt_key_new(dk);
    int v = 0, nv = 0;
    cr_assert_eq(kms_wrap(f.k, "k1", dk, w1, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(kms_key_rotate(f.k, "k1", &nv), 0);
    cr_expect_eq(nv, 2);
    cr_assert_eq(kms_wrap(f.k, "k1", dk, w2, &v), 0);
    cr_expect_eq(v, 2);
    cr_assert_eq(kms_unwrap(f.k, "k1", 1, w1, back), 0);
    cr_expect_eq(memcmp(dk, back, sizeof dk), 0);
    cr_assert_eq(kms_unwrap(f.k, "k1", 2, w2, back), 0);
    cr_expect_eq(memcmp(dk, back, sizeof dk), 0);
    cr_expect_eq(kms_unwrap(f.k, "k1", 2, w1, back), CAIRN_EAUTH, "a version's wrap is bound to it");
    /* A rotation whose number another took goes on to the next one. */
    uint8_t sealed[CRYPT_WRAPPED], m[CRYPT_KEY];
    crypt_key_new(m);
    cr_assert_eq(kms_material_seal(f.master, "k1", 3, m, sealed), 0);
    cr_assert_eq(meta_kms_version_add(f.ms, "k1", 3, sealed, 1), 0);
    cr_assert_eq(kms_key_rotate(f.k, "k1", &nv), 0);
    cr_expect_eq(nv, 4);
    fx_close(&f);
}

typedef struct {
    meta_store *ms;
    uint8_t master[CRYPT_KEY];
    int rc, version;
    uint8_t dk[CRYPT_KEY], w[CRYPT_WRAPPED];
} racer;

static void *race_wrap(void *arg) {
    racer *r = arg;
    kms *k;
    r->rc = kms_open(r->ms, r->master, &k);
    if (r->rc == 0) r->rc = kms_wrap(k, KMS_SSE_S3_KEY, r->dk, r->w, &r->version);
    kms_close(k);
    return NULL;
}

Test(kms, the_sse_s3_key_is_made_once_on_first_use_however_many_race) {
    fx f;
    fx_open(&f);
    meta_kms_key row;
    cr_assert_eq(meta_kms_key_get(f.ms, KMS_SSE_S3_KEY, &row), CAIRN_ENOTFOUND);
    enum { N = 6 };
    racer r[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        r[i] = (racer){.ms = f.ms};
        memcpy(r[i].master, f.master, CRYPT_KEY);
        crypt_key_new(r[i].dk);
        cr_assert_eq(pthread_create(&th[i], NULL, race_wrap, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    cr_assert_eq(meta_kms_key_get(f.ms, KMS_SSE_S3_KEY, &row), 0);
    cr_expect_eq(row.version, 1);
    cr_expect(row.enabled);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].rc, 0, "racer %d: %s", i, cairn_strerror(r[i].rc));
        uint8_t back[CRYPT_KEY];
        cr_assert_eq(kms_unwrap(f.k, KMS_SSE_S3_KEY, r[i].version, r[i].w, back), 0, "racer %d's wrap opens", i);
        cr_expect_eq(memcmp(back, r[i].dk, CRYPT_KEY), 0);
    }
    /* Only KMS_SSE_S3_KEY is made on use. */
    uint8_t dk[CRYPT_KEY] = {0}, w[CRYPT_WRAPPED];
    int v;
    cr_expect_eq(kms_wrap(f.k, "other", dk, w, &v), CAIRN_ENOTFOUND);
    fx_close(&f);
}

/* ---- the kms_rewrap job ---------------------------------------------------------------- */

/* The headers of a version sealed under key_id at version with dk. */
static void sse_headers(kms *k, char mode, const char *key_id, const uint8_t dk[CRYPT_KEY], int *version,
                        char *out, size_t n) {
    crypt_sse s = {.mode = mode};
    snprintf(s.key_id, sizeof s.key_id, "%s", key_id);
    cr_assert_eq(kms_wrap(k, key_id, dk, s.wrapped, &s.key_version), 0);
    if (version) *version = s.key_version;
    char fmt[CRYPT_SSE_MAX];
    cr_assert_eq(crypt_sse_format(&s, fmt, sizeof fmt), 0);
    snprintf(out, n, "{\"content-type\":\"text/plain\",\"" CRYPT_SSE_MEMBER "\":\"%s\"}", fmt);
}

static void put_version_in(meta_store *ms, const char *bucket, const char *key, const char *headers) {
    meta_object o;
    memset(&o, 0, sizeof o);
    strcpy(o.bucket, bucket);
    o.key_len = strlen(key);
    memcpy(o.key, key, o.key_len);
    rand_hex_id(o.version_id, 16);
    o.size = 1;
    strcpy(o.etag, "d41d8cd98f00b204e9800998ecf8427e");
    o.mtime_ms = 1700000000000;
    o.owner_id = 1;
    o.storage = META_STORE_FILE;
    strcpy(o.layout, "1+0:65536:d0");
    o.headers_json = (char *)headers;
    cr_assert_eq(meta_object_put(ms, &o, NULL, NULL), 0, "put %s", key);
}

static void put_version(meta_store *ms, const char *key, const char *headers) { put_version_in(ms, "b", key, headers); }

/* The member of a version's (or an upload's) headers, parsed. */
static void sse_of(const char *headers, crypt_sse *s) {
    const char *m = strstr(headers, "\"" CRYPT_SSE_MEMBER "\":\"");
    cr_assert_not_null(m, "%s", headers);
    m += strlen(CRYPT_SSE_MEMBER) + 4;
    char text[CRYPT_SSE_MAX];
    size_t n = strcspn(m, "\"");
    cr_assert_lt(n, sizeof text);
    memcpy(text, m, n);
    text[n] = 0;
    cr_assert_eq(crypt_sse_parse(text, s), 0, "%s", text);
}

typedef struct {
    meta_store *ms;
    int n;
    crypt_sse s[16];
    char other[16][8];
} version_scan;

static int read_version(void *ud, const meta_version_entry *e) {
    version_scan *v = ud;
    meta_object o;
    cr_assert_eq(meta_object_get_version(v->ms, "b", 0, e->key, e->key_len, e->version_id, false, &o), 0);
    cr_assert(strstr(o.headers_json, "\"content-type\":\"text/plain\""), "the other headers stay: %s", o.headers_json);
    sse_of(o.headers_json, &v->s[v->n]);
    snprintf(v->other[v->n], sizeof v->other[0], "%.*s", (int)e->key_len, e->key);
    v->n++;
    meta_object_clear(&o);
    return 0;
}

/* Runs the walk to its end in batches of batch rows, as the chain of jobs does. */
static jobs_rewrap_stats run_rewrap(fx *f, const char *key_id, int batch, int *runs) {
    jobs_rewrap_stats st = {0};
    char args[128], err[256];
    snprintf(args, sizeof args, "{\"key_id\":\"%s\"}", key_id);
    char *cur = strdup(args), *next = NULL;
    *runs = 0;
    while (cur) {
        cr_assert_lt(++*runs, 100, "the walk ends");
        cr_assert_eq(jobs_kms_rewrap_batch(f->ms, f->k, cur, batch, &next, &st, err, sizeof err), 0, "%s", err);
        free(cur);
        cur = next;
    }
    return st;
}

Test(kms, the_rewrap_job_moves_every_data_key_to_the_newest_version_and_never_the_bytes) {
    fx f;
    fx_open(&f);
    meta_bucket b = {.owner_id = 1, .created_ms = 1};
    strcpy(b.name, "b");
    cr_assert_eq(meta_bucket_create(f.ms, &b, NULL), 0);
    cr_assert_eq(meta_bucket_set_versioning(f.ms, "b", 0, META_VERSIONING_ENABLED), 0);
    cr_assert_eq(kms_key_create(f.k, "k1", ""), 0);
    cr_assert_eq(kms_key_create(f.k, "k2", ""), 0);

    /* Five versions under k1 (two of one key), one under k2, one SSE-S3. */
    enum { N = 5 };
    uint8_t dk[N][CRYPT_KEY];
    const char *keys[N] = {"a", "a", "b", "c/d", "e"};
    char h[1024];
    for (int i = 0; i < N; i++) {
        crypt_key_new(dk[i]);
        int v;
        sse_headers(f.k, i % 2 ? 'S' : 'K', "k1", dk[i], &v, h, sizeof h);
        cr_assert_eq(v, 1);
        put_version(f.ms, keys[i], h);
    }
    uint8_t dk2[CRYPT_KEY];
    crypt_key_new(dk2);
    sse_headers(f.k, 'K', "k2", dk2, NULL, h, sizeof h);
    put_version(f.ms, "z-other-key", h);
    /* An upload in progress under k1. */
    uint8_t dku[CRYPT_KEY];
    crypt_key_new(dku);
    sse_headers(f.k, 'K', "k1", dku, NULL, h, sizeof h);
    meta_upload u = {.bucket_id = b.id, .owner_id = 1, .initiated_ms = 1, .key_len = 1};
    strcpy(u.upload_id, "up1");
    strcpy(u.bucket, "b");
    strcpy(u.key, "u");
    u.headers_json = h;
    cr_assert_eq(meta_upload_create(f.ms, &u), 0);
    /* Buckets before and after "b", one version each. */
    uint8_t dka[CRYPT_KEY], dkc[CRYPT_KEY];
    crypt_key_new(dka);
    crypt_key_new(dkc);
    for (int i = 0; i < 2; i++) {
        meta_bucket o = {.owner_id = 1, .created_ms = 1};
        strcpy(o.name, i ? "c" : "a");
        cr_assert_eq(meta_bucket_create(f.ms, &o, NULL), 0);
        sse_headers(f.k, 'S', "k1", i ? dkc : dka, NULL, h, sizeof h);
        put_version_in(f.ms, o.name, "x", h);
    }

    /* Before a rotation there is nothing to move. */
    int runs;
    jobs_rewrap_stats st = run_rewrap(&f, "k1", 2, &runs);
    cr_expect_eq(st.rewrapped, 0);

    int nv;
    cr_assert_eq(kms_key_rotate(f.k, "k1", &nv), 0);
    cr_assert_eq(nv, 2);
    st = run_rewrap(&f, "k1", 2, &runs);
    cr_expect_eq(st.rewrapped, N + 3, "every k1 version, in every bucket, and the upload");
    cr_expect_eq(st.skipped, 0);
    cr_expect_gt(runs, 3, "batches of 2 rows: a chain of runs, each resuming at its cursor");

    version_scan vs = {.ms = f.ms};
    bool more;
    cr_assert_eq(meta_object_list_versions(f.ms, "b", 0, "", 0, NULL, 0, 0, 100, read_version, &vs, &more), 0);
    cr_assert_eq(vs.n, N + 1);
    int k1_seen = 0;
    for (int i = 0; i < vs.n; i++) {
        crypt_sse *s = &vs.s[i];
        uint8_t back[CRYPT_KEY];
        if (!strcmp(s->key_id, "k2")) {
            cr_expect_eq(s->key_version, 1, "another key's versions stay");
            cr_assert_eq(kms_unwrap(f.k, "k2", 1, s->wrapped, back), 0);
            cr_expect_eq(memcmp(back, dk2, CRYPT_KEY), 0);
            continue;
        }
        cr_expect_eq(s->key_version, 2, "version of %s", vs.other[i]);
        cr_assert_eq(kms_unwrap(f.k, "k1", 2, s->wrapped, back), 0);
        bool found = false;
        for (int j = 0; j < N; j++) found |= memcmp(back, dk[j], CRYPT_KEY) == 0;
        cr_expect(found, "%s's data key is the one it had", vs.other[i]);
        k1_seen++;
    }
    cr_expect_eq(k1_seen, N);
    meta_upload got;
    cr_assert_eq(meta_upload_get(f.ms, "up1", &got), 0);
    crypt_sse s;
    sse_of(got.headers_json, &s);
    meta_upload_clear(&got);
    cr_expect_eq(s.key_version, 2);
    uint8_t back[CRYPT_KEY];
    cr_assert_eq(kms_unwrap(f.k, "k1", 2, s.wrapped, back), 0);
    cr_expect_eq(memcmp(back, dku, CRYPT_KEY), 0);

    for (int i = 0; i < 2; i++) {
        meta_object o;
        cr_assert_eq(meta_object_get(f.ms, i ? "c" : "a", 0, "x", 1, false, &o), 0);
        sse_of(o.headers_json, &s);
        meta_object_clear(&o);
        cr_expect_eq(s.key_version, 2);
        cr_assert_eq(kms_unwrap(f.k, "k1", 2, s.wrapped, back), 0);
        cr_expect_eq(memcmp(back, i ? dkc : dka, CRYPT_KEY), 0);
    }

    /* Idempotent: a second walk finds nothing to move. */
    st = run_rewrap(&f, "k1", 3, &runs);
    cr_expect_eq(st.rewrapped, 0);

    /* Batches of one row: every cursor position is a place a run resumes from. */
    cr_assert_eq(kms_key_rotate(f.k, "k1", &nv), 0);
    st = run_rewrap(&f, "k1", 1, &runs);
    cr_expect_eq(st.rewrapped, N + 3);
    cr_expect_geq(runs, N + 5, "a run per row at least");
    st = run_rewrap(&f, "k1", 1, &runs);
    cr_expect_eq(st.rewrapped, 0);

    /* A disabled key stops the run (retried later); bad args and unknown keys are errors. */
    cr_assert_eq(kms_key_rotate(f.k, "k1", &nv), 0);
    cr_assert_eq(meta_kms_key_set_enabled(f.ms, "k1", false), 0);
    kms_forget(f.k, "k1");
    char *next = NULL, err[256];
    jobs_rewrap_stats st2 = {0};
    cr_expect_eq(jobs_kms_rewrap_batch(f.ms, f.k, "{\"key_id\":\"k1\"}", 10, &next, &st2, err, sizeof err),
                 CAIRN_EPERM);
    cr_expect(strstr(err, "not permitted"), "%s", err);
    cr_expect_eq(jobs_kms_rewrap_batch(f.ms, f.k, "{}", 10, &next, &st2, err, sizeof err), CAIRN_EINVAL);
    cr_expect_eq(jobs_kms_rewrap_batch(f.ms, f.k, "{\"key_id\":\"nope\"}", 10, &next, &st2, err, sizeof err),
                 CAIRN_ENOTFOUND);
    cr_expect_eq(jobs_kms_rewrap_batch(f.ms, f.k, "{\"key_id\":\"k1\",\"key\":\"zz\"}", 10, &next, &st2, err,
                                       sizeof err),
                 CAIRN_EINVAL);
    cr_expect_null(next);
    fx_close(&f);
}

/* kms_mac: what SSE-C keeps to refuse a wrong customer key.  Deterministic
 * per (key, version, message), another for each, made on first use for the
 * SSE-S3 key, unchanged by a master key rotation (the material is only
 * re-sealed), and still computed while the key is disabled. */
Test(kms, macs_are_bound_to_key_version_and_message_and_outlive_a_master_rotation) {
    fx f;
    fx_open(&f);
    uint8_t a[32], b[32], c[32], d[32];
    int v = 0;
    cr_assert_eq(kms_mac(f.k, KMS_SSE_S3_KEY, &v, "m1", 2, a), 0);
    cr_expect_eq(v, 1, "version 0 asks for the newest; the SSE-S3 key is made on first use");
    int v1 = 1;
    cr_assert_eq(kms_mac(f.k, KMS_SSE_S3_KEY, &v1, "m1", 2, b), 0);
    cr_expect_eq(memcmp(a, b, 32), 0);
    cr_assert_eq(kms_mac(f.k, KMS_SSE_S3_KEY, &v1, "m2", 2, c), 0);
    cr_expect_neq(memcmp(a, c, 32), 0);
    int nv = 0;
    cr_assert_eq(kms_key_rotate(f.k, KMS_SSE_S3_KEY, &nv), 0);
    kms_forget(f.k, KMS_SSE_S3_KEY);
    int v2 = 0;
    cr_assert_eq(kms_mac(f.k, KMS_SSE_S3_KEY, &v2, "m1", 2, d), 0);
    cr_expect_eq(v2, 2);
    cr_expect_neq(memcmp(a, d, 32), 0, "another version, another MAC");
    cr_assert_eq(meta_kms_key_set_enabled(f.ms, KMS_SSE_S3_KEY, false), 0);
    kms_forget(f.k, KMS_SSE_S3_KEY);
    cr_assert_eq(kms_mac(f.k, KMS_SSE_S3_KEY, &v1, "m1", 2, b), 0, "a disabled key still checks");
    cr_expect_eq(memcmp(a, b, 32), 0);
    int none = 0;
    cr_expect_eq(kms_mac(f.k, "no-such-key", &none, "m1", 2, b), CAIRN_ENOTFOUND);
    int bad = 7;
    cr_expect_eq(kms_mac(f.k, KMS_SSE_S3_KEY, &bad, "m1", 2, b), CAIRN_ENOTFOUND);
    /* the same material re-sealed under a new master key MACs the same */
    uint8_t master2[CRYPT_KEY];
    crypt_key_new(master2);
    for (int ver = 1; ver <= 2; ver++) {
        uint8_t sealed[CRYPT_WRAPPED], m[CRYPT_KEY], resealed[CRYPT_WRAPPED];
        cr_assert_eq(meta_kms_version_get(f.ms, KMS_SSE_S3_KEY, ver, sealed), 0);
        cr_assert_eq(kms_material_open(f.master, KMS_SSE_S3_KEY, ver, sealed, m), 0);
        cr_assert_eq(kms_material_seal(master2, KMS_SSE_S3_KEY, ver, m, resealed), 0);
        uint8_t got[CRYPT_KEY];
        cr_assert_eq(kms_material_open(master2, KMS_SSE_S3_KEY, ver, resealed, got), 0);
        cr_expect_eq(memcmp(got, m, CRYPT_KEY), 0);
    }
    fx_close(&f);
}
