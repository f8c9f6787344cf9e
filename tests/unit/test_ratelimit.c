/*
 * test_ratelimit.c — the token buckets of src/auth/ratelimit.c, driven with
 * a clock the test sets: a burst of burst_s seconds' worth is admitted and
 * the next is refused with the time until it would be admitted; buckets
 * refill at their rate; dimensions are independent and a refusal by one
 * charges none; bytes are never refused mid-flow but make the flow wait,
 * and a subject in byte debt is refused new requests; the in-flight cap;
 * overrides; memory stays bounded by max_entries whatever the number of
 * subjects; and many threads together admit no more than the rate allows.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"

#define S 1000000000LL
#define MS 1000000LL

static rl_limiter *make(rl_config c) {
    rl_limiter *l = NULL;
    cr_assert_eq(rl_new(&c, &l), 0);
    return l;
}

static rl_subject who(const char *key, const char *ip, const char *bucket) {
    rl_subject s = {{key, ip, bucket}};
    return s;
}

Test(ratelimit, burst_then_refused_with_retry_after_then_refills) {
    rl_limiter *l = make((rl_config){.ops_per_s = {10, 0, 0}, .burst_s = 1, .max_entries = 1000});
    rl_subject s = who("AK1", "10.0.0.1", "b");
    rl_refusal why;
    int64_t now = 100 * S;
    for (int i = 0; i < 10; i++) cr_assert_eq(rl_admit(l, &s, now, &why), 0, "request %d of the burst", i);
    cr_assert_eq(rl_admit(l, &s, now, &why), CAIRN_EBUSY);
    cr_expect_eq(why.dim, RL_KEY);
    cr_expect(why.retry_after_ms > 0 && why.retry_after_ms <= 100, "one unit of 100 ms: %lld", (long long)why.retry_after_ms);
    /* The retry time it named is enough, and not before. */
    cr_expect_eq(rl_admit(l, &s, now + (why.retry_after_ms - 1) * MS, &why), CAIRN_EBUSY);
    cr_expect_eq(rl_admit(l, &s, now + 100 * MS, &why), 0);
    /* After a quiet second the whole burst is back. */
    now += 2 * S;
    for (int i = 0; i < 10; i++) cr_assert_eq(rl_admit(l, &s, now, &why), 0);
    cr_expect_eq(rl_admit(l, &s, now, &why), CAIRN_EBUSY);
    rl_stats st;
    rl_stats_get(l, &st);
    cr_expect_eq(st.admitted[RL_KEY], 21);
    cr_expect_eq(st.limited[RL_KEY], 3);
    rl_free(l);
}

Test(ratelimit, subjects_and_dimensions_are_independent) {
    rl_limiter *l = make((rl_config){.ops_per_s = {2, 0, 3}, .burst_s = 1, .max_entries = 1000});
    rl_refusal why;
    int64_t now = 5 * S;
    rl_subject a = who("A", "1.1.1.1", "shared"), b = who("B", "1.1.1.1", "shared");
    cr_assert_eq(rl_admit(l, &a, now, &why), 0);
    cr_assert_eq(rl_admit(l, &a, now, &why), 0);
    cr_assert_eq(rl_admit(l, &a, now, &why), CAIRN_EBUSY, "A is over its key limit");
    cr_expect_eq(why.dim, RL_KEY);
    /* A's refusal charged nothing to the bucket: B gets the bucket's third. */
    cr_assert_eq(rl_admit(l, &b, now, &why), 0);
    cr_assert_eq(rl_admit(l, &b, now, &why), CAIRN_EBUSY, "the bucket's 3 are spent");
    cr_expect_eq(why.dim, RL_BUCKET);
    /* Another bucket is not affected; nor is an anonymous request with no key. */
    rl_subject c = who("B", "1.1.1.1", "other"), anon = who(NULL, "2.2.2.2", "other");
    cr_expect_eq(rl_admit(l, &c, now, &why), 0);
    cr_expect_eq(rl_admit(l, &anon, now, &why), 0);
    rl_free(l);
}

Test(ratelimit, bytes_make_the_flow_wait_and_debt_refuses_new_requests) {
    rl_limiter *l = make((rl_config){.bytes_per_s = {0, 1000000, 0}, .burst_s = 1, .max_entries = 100});
    rl_subject s = who(NULL, "9.9.9.9", NULL);
    rl_refusal why;
    int64_t now = S;
    cr_assert_eq(rl_admit(l, &s, now, &why), 0);
    /* The burst (1 MB) flows without a wait, then every byte waits its turn. */
    cr_expect_eq(rl_charge(l, &s, 1000000, now), 0);
    int64_t w = rl_charge(l, &s, 500000, now);
    cr_expect(w >= 499 * MS && w <= 501 * MS, "500 KB over a full bucket waits 0.5 s: %lld", (long long)w);
    /* Two flows at once: the second one's bytes queue behind the first's. */
    int64_t w2 = rl_charge(l, &s, 500000, now);
    cr_expect(w2 >= 999 * MS && w2 <= 1001 * MS, "%lld", (long long)w2);
    /* Meanwhile a new request of the subject is refused until the debt is paid. */
    cr_assert_eq(rl_admit(l, &s, now, &why), CAIRN_EBUSY);
    cr_expect_eq(why.dim, RL_IP);
    cr_expect(why.retry_after_ms >= 999 && why.retry_after_ms <= 1001, "%lld", (long long)why.retry_after_ms);
    cr_expect_eq(rl_admit(l, &s, now + 1001 * MS, &why), 0);
    rl_stats st;
    rl_stats_get(l, &st);
    cr_expect_eq(st.bytes[RL_IP], 2000000);
    rl_free(l);
}

Test(ratelimit, in_flight_cap) {
    rl_limiter *l = make((rl_config){.max_in_flight = 2, .max_entries = 100});
    rl_subject s = who("A", "1.2.3.4", "b");
    rl_refusal why;
    cr_assert_eq(rl_admit(l, &s, S, &why), 0);
    cr_assert_eq(rl_admit(l, &s, S, &why), 0);
    cr_assert_eq(rl_admit(l, &s, S, &why), CAIRN_EBUSY);
    cr_expect_eq(why.dim, RL__DIMS);
    cr_expect_str_eq(rl_dim_name(why.dim), "in_flight");
    cr_expect_eq(rl_in_flight(l), 2);
    rl_release(l);
    cr_expect_eq(rl_admit(l, &s, S, &why), 0);
    rl_release(l);
    rl_release(l);
    cr_expect_eq(rl_in_flight(l), 0);
    rl_free(l);
}

Test(ratelimit, a_refusal_by_one_limiter_frees_its_in_flight_slot) {
    rl_limiter *l = make((rl_config){.ops_per_s = {1, 0, 0}, .max_in_flight = 5, .burst_s = 1, .max_entries = 100});
    rl_subject s = who("A", "1.2.3.4", "b");
    rl_refusal why;
    cr_assert_eq(rl_admit(l, &s, S, &why), 0);
    for (int i = 0; i < 10; i++) cr_assert_eq(rl_admit(l, &s, S, &why), CAIRN_EBUSY);
    cr_expect_eq(rl_in_flight(l), 1, "only the admitted request holds a slot");
    rl_release(l);
    rl_free(l);
}

Test(ratelimit, overrides_replace_the_defaults_of_one_key_or_bucket) {
    rl_limiter *l = make((rl_config){.ops_per_s = {1, 0, 0}, .burst_s = 1, .max_entries = 100});
    rl_override_entry ov[] = {{RL_KEY, "FAST", {5, 0}}, {RL_BUCKET, "slow", {1, 0}}, {RL_KEY, "FREE", {0, 0}}};
    cr_assert_eq(rl_overrides_replace(l, ov, 3), 0);
    cr_expect(rl_enabled(l));
    rl_refusal why;
    int64_t now = S;
    rl_subject fast = who("FAST", NULL, "b"), plain = who("PLAIN", NULL, "b"), fr = who("FREE", NULL, "b");
    for (int i = 0; i < 5; i++) cr_expect_eq(rl_admit(l, &fast, now, &why), 0);
    cr_expect_eq(rl_admit(l, &fast, now, &why), CAIRN_EBUSY);
    cr_expect_eq(rl_admit(l, &plain, now, &why), 0);
    cr_expect_eq(rl_admit(l, &plain, now, &why), CAIRN_EBUSY);
    for (int i = 0; i < 50; i++) cr_expect_eq(rl_admit(l, &fr, now, &why), 0, "an override of 0 lifts the limit");
    rl_subject sl = who("FREE", NULL, "slow");
    cr_expect_eq(rl_admit(l, &sl, now, &why), 0);
    cr_expect_eq(rl_admit(l, &sl, now, &why), CAIRN_EBUSY);
    cr_expect_eq(why.dim, RL_BUCKET);
    /* Replaced wholesale: FAST is back to the default. */
    cr_assert_eq(rl_overrides_replace(l, NULL, 0), 0);
    rl_subject fast2 = who("FAST", NULL, NULL);
    cr_expect_eq(rl_admit(l, &fast2, now + 10 * S, &why), 0);
    cr_expect_eq(rl_admit(l, &fast2, now + 10 * S, &why), CAIRN_EBUSY);
    rl_free(l);
}

Test(ratelimit, no_limits_admit_everything) {
    rl_limiter *l = make((rl_config){.max_entries = 100});
    cr_expect_not(rl_enabled(l));
    rl_subject s = who("A", "1.1.1.1", "b");
    rl_refusal why;
    for (int i = 0; i < 1000; i++) cr_assert_eq(rl_admit(l, &s, S, &why), 0);
    cr_expect_eq(rl_charge(l, &s, 1ULL << 40, S), 0);
    cr_expect_eq(rl_admit(NULL, &s, S, &why), 0);
    rl_free(l);
}

Test(ratelimit, memory_is_bounded_and_idle_subjects_are_forgotten_first) {
    rl_limiter *l = make((rl_config){.ops_per_s = {0, 1, 0}, .burst_s = 1, .max_entries = 300});
    rl_refusal why;
    char ip[32];
    /* 100,000 addresses through a table of ~100 slots: every one is admitted
     * (each is new or idle when its slot is taken) and nothing grows. */
    for (int i = 0; i < 100000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        rl_subject s = who(NULL, ip, NULL);
        cr_assert_eq(rl_admit(l, &s, (int64_t)i * 2 * S, &why), 0, "address %d", i);
    }
    rl_stats st;
    rl_stats_get(l, &st);
    cr_expect_eq(st.evictions, 0, "idle subjects are dropped at no loss");
    /* All at one instant: the table is full of subjects that owe, and room
     * is made by evicting (counted), never by growing. */
    for (int i = 0; i < 5000; i++) {
        snprintf(ip, sizeof ip, "11.0.%d.%d", i >> 8, i & 255);
        rl_subject s = who(NULL, ip, NULL);
        rl_admit(l, &s, 1000000 * S, &why);
    }
    rl_stats_get(l, &st);
    cr_expect_gt(st.evictions, 0);
    rl_free(l);
}

typedef struct {
    rl_limiter *l;
    int admitted;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    rl_subject s = who("SHARED", "1.1.1.1", "b");
    rl_refusal why;
    for (int i = 0; i < 20000; i++)
        if (rl_admit(a->l, &s, 50 * S, &why) == 0) a->admitted++;
    return NULL;
}

Test(ratelimit, threads_together_get_exactly_the_burst) {
    rl_limiter *l = make((rl_config){.ops_per_s = {100, 0, 0}, .burst_s = 2, .max_entries = 1000});
    pthread_t t[8];
    worker_arg a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (worker_arg){l, 0};
        pthread_create(&t[i], NULL, worker, &a[i]);
    }
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        total += a[i].admitted;
    }
    cr_expect_eq(total, 200, "a burst of 2 s at 100/s, at one instant: %d", total);
    rl_free(l);
}
