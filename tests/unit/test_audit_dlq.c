/*
 * test_audit_dlq.c — the audit dead-letter queue (src/audit/dlq.h) on real
 * files and a real redis-server.
 *
 * What must hold: every event put is kept, in the spool or the stream, and
 * comes back from a replay exactly once (a replay that fails, or a process
 * that restarts between replays, repeats nothing the store took); a store
 * that refuses events turns them into rejected entries with its reason,
 * never replayed again; a Redis that is down sends puts to the spool,
 * counted; a spool bigger than the replay's chunk is read in chunks.
 */
#include <criterion/criterion.h>

#include <sys/stat.h>

#include "audit/dlq.h"
#include "audit/journal.h"
#include "redis_proc.h"

typedef struct {
    char dir[64];
} tmp_dir;

static void dir_new(tmp_dir *t) {
    cr_assert_eq(core_init(), 0);
    strcpy(t->dir, "/tmp/cairn-test-dlq-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
}

static void dir_free(tmp_dir *t) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t->dir);
    cr_assert_eq(system(cmd), 0);
}

static audit_dlq *open_dlq(const tmp_dir *t, const char *redis_url) {
    audit_dlq_opts o = {.dir = t->dir, .redis_url = redis_url, .stream = "test:dlq", .redis_timeout_ms = 300,
                        .fsync = true};
    audit_dlq *d = NULL;
    cr_assert_eq(audit_dlq_open(&o, &d), 0);
    return d;
}

/* Puts events "ev<from>".."ev<from+n-1>" (as JSON objects) in one call. */
static void put_range(audit_dlq *d, audit_dlq_kind kind, int from, int n, const char *reason) {
    char bufs[64][64];
    const char *evs[64];
    size_t lens[64];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++) {
        snprintf(bufs[i], sizeof bufs[i], "{\"event_id\":\"ev%d\"}", from + i);
        evs[i] = bufs[i];
        lens[i] = strlen(bufs[i]);
    }
    cr_assert_eq(audit_dlq_put(d, kind, evs, lens, n, reason), 0);
}

/* A store for the replayer: records what it took (each id once at most
 * counts as delivered), or fails, or refuses. */
#define MAX_SEEN 40000
typedef struct {
    int mode;                  /* 0 take, 1 refuse (400), 2 unreachable */
    int calls;
    int seen[MAX_SEEN];        /* per id: how many times delivered */
} store;

static int store_send(void *ud, const char *const *events, const size_t *lens, int n, char *reason, size_t rl) {
    store *s = ud;
    s->calls++;
    if (s->mode == 2) return CAIRN_EIO;
    if (s->mode == 1) {
        snprintf(reason, rl, "invalid event: status out of range");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int id = -1;
        cr_assert_eq(sscanf(events[i], "{\"event_id\":\"ev%d\"}", &id), 1, "%.*s", (int)lens[i], events[i]);
        cr_assert(id >= 0 && id < MAX_SEEN);
        s->seen[id]++;
    }
    return 0;
}

static audit_dlq_stats stats(audit_dlq *d) {
    audit_dlq_stats st;
    audit_dlq_stats_get(d, &st);
    return st;
}

typedef struct {
    int n;
    char reasons[8][128];
} walked;

static int walk_fn(void *ud, const char *event, size_t len, const char *reason, int64_t t) {
    (void)event, (void)len;
    walked *w = ud;
    cr_assert_gt(t, 0);
    if (w->n < 8) snprintf(w->reasons[w->n], sizeof w->reasons[0], "%s", reason);
    w->n++;
    return 0;
}

Test(audit_dlq, the_spool_keeps_every_event_and_a_replay_delivers_each_once) {
    tmp_dir t;
    dir_new(&t);
    audit_dlq *d = open_dlq(&t, NULL);
    put_range(d, AUDIT_DLQ_HELD, 0, 50, "store unreachable: 503 after 5 retries");
    put_range(d, AUDIT_DLQ_HELD, 50, 50, "store unreachable: timeout");
    put_range(d, AUDIT_DLQ_REJECTED, 1000, 2, "invalid event: bad\nreason");
    cr_assert_eq(stats(d).held, 100);
    cr_assert_eq(stats(d).rejected, 2);
    walked w = {0};
    cr_assert_eq(audit_dlq_walk(d, AUDIT_DLQ_REJECTED, walk_fn, &w), 0);
    cr_assert_eq(w.n, 2);
    cr_assert_str_eq(w.reasons[0], "invalid event: bad reason", "a newline in a reason is flattened");
    /* Reopened (a restart): all still there. */
    audit_dlq_close(d);
    d = open_dlq(&t, NULL);
    cr_assert_eq(stats(d).held, 100);
    /* The store is down: nothing leaves. */
    store *s = calloc(1, sizeof *s);
    s->mode = 2;
    int replayed = -1;
    cr_assert_eq(audit_dlq_replay(d, 1000, 30, store_send, s, &replayed), CAIRN_EIO);
    cr_assert_eq(replayed, 0);
    cr_assert_eq(stats(d).held, 100);
    /* Part of it, then a restart, then the rest: each event exactly once. */
    s->mode = 0;
    cr_assert_eq(audit_dlq_replay(d, 40, 30, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 40);
    audit_dlq_close(d);
    d = open_dlq(&t, NULL);
    cr_assert_eq(stats(d).held, 60);
    cr_assert_eq(audit_dlq_replay(d, 1000, 30, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 60);
    for (int i = 0; i < 100; i++) cr_assert_eq(s->seen[i], 1, "event %d delivered %d times", i, s->seen[i]);
    cr_assert_eq(stats(d).held, 0);
    cr_assert_eq(stats(d).replayed, 60);
    /* Drained, the file started over; new puts and replays go on. */
    char path[128];
    snprintf(path, sizeof path, "%s/dlq-held.log", t.dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size, 0);
    put_range(d, AUDIT_DLQ_HELD, 200, 3, "again");
    cr_assert_eq(audit_dlq_replay(d, 1000, 30, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 3);
    cr_assert_eq(s->seen[201], 1);
    /* The rejected were never offered to the store. */
    cr_assert_eq(s->seen[1000], 0);
    cr_assert_eq(stats(d).rejected, 2);
    free(s);
    audit_dlq_close(d);
    dir_free(&t);
}

Test(audit_dlq, events_the_store_refuses_become_rejected_with_its_reason) {
    tmp_dir t;
    dir_new(&t);
    audit_dlq *d = open_dlq(&t, NULL);
    put_range(d, AUDIT_DLQ_HELD, 0, 5, "store unreachable");
    store *s = calloc(1, sizeof *s);
    s->mode = 1;
    int replayed = -1;
    cr_assert_eq(audit_dlq_replay(d, 1000, 10, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 0);
    cr_assert_eq(stats(d).held, 0);
    cr_assert_eq(stats(d).rejected, 5);
    walked w = {0};
    cr_assert_eq(audit_dlq_walk(d, AUDIT_DLQ_REJECTED, walk_fn, &w), 0);
    cr_assert_eq(w.n, 5);
    cr_assert_str_eq(w.reasons[0], "invalid event: status out of range");
    /* Never replayed again. */
    int calls = s->calls;
    s->mode = 0;
    cr_assert_eq(audit_dlq_replay(d, 1000, 10, store_send, s, &replayed), 0);
    cr_assert_eq(s->calls, calls);
    free(s);
    audit_dlq_close(d);
    dir_free(&t);
}

Test(audit_dlq, a_spool_larger_than_a_chunk_replays_whole, .timeout = 120) {
    tmp_dir t;
    dir_new(&t);
    audit_dlq_opts o = {.dir = t.dir, .fsync = false};
    audit_dlq *d = NULL;
    cr_assert_eq(audit_dlq_open(&o, &d), 0);
    /* 30,000 events of ~300 bytes: about 10 MiB, over two 4 MiB chunks. */
    char pad[256];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    char ev[400];
    for (int i = 0; i < 30000; i++) {
        snprintf(ev, sizeof ev, "{\"event_id\":\"ev%d\",\"pad\":\"%s\"}", i, pad);
        const char *evs[] = {ev};
        size_t lens[] = {strlen(ev)};
        cr_assert_eq(audit_dlq_put(d, AUDIT_DLQ_HELD, evs, lens, 1, "down"), 0);
    }
    cr_assert_eq(stats(d).held, 30000);
    store *s = calloc(1, sizeof *s);
    int replayed = 0;
    cr_assert_eq(audit_dlq_replay(d, 100000, 1000, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 30000);
    for (int i = 0; i < 30000; i++) cr_assert_eq(s->seen[i], 1, "event %d delivered %d times", i, s->seen[i]);
    free(s);
    audit_dlq_close(d);
    dir_free(&t);
}

Test(audit_dlq, with_redis_events_go_to_the_stream_and_come_back_once, .timeout = 60) {
    tmp_dir t;
    dir_new(&t);
    redis_proc r;
    redis_new(&r);
    audit_dlq *d = open_dlq(&t, r.url);
    put_range(d, AUDIT_DLQ_HELD, 0, 20, "store unreachable");
    put_range(d, AUDIT_DLQ_REJECTED, 500, 1, "invalid event");
    redisContext *c = redisConnect("127.0.0.1", r.port);
    redisReply *rep = redisCommand(c, "XLEN test:dlq");
    cr_assert_eq(rep->integer, 20, "the held events are not in the stream");
    freeReplyObject(rep);
    rep = redisCommand(c, "XLEN test:dlq:rejected");
    cr_assert_eq(rep->integer, 1);
    freeReplyObject(rep);
    cr_assert_eq(stats(d).held, 20);
    char path[128];
    snprintf(path, sizeof path, "%s/dlq-held.log", t.dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size, 0, "with redis up nothing goes to the spool");
    walked w = {0};
    cr_assert_eq(audit_dlq_walk(d, AUDIT_DLQ_REJECTED, walk_fn, &w), 0);
    cr_assert_eq(w.n, 1);
    cr_assert_str_eq(w.reasons[0], "invalid event");
    store *s = calloc(1, sizeof *s);
    int replayed = 0;
    cr_assert_eq(audit_dlq_replay(d, 1000, 7, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 20);
    for (int i = 0; i < 20; i++) cr_assert_eq(s->seen[i], 1);
    rep = redisCommand(c, "XLEN test:dlq");
    cr_assert_eq(rep->integer, 0, "replayed entries stayed in the stream");
    freeReplyObject(rep);
    redisFree(c);
    free(s);
    audit_dlq_close(d);
    redis_free(&r);
    dir_free(&t);
}

typedef struct {
    int seen[64];
    int other;
} id_walk;

static int count_ids(void *ud, const char *event, size_t len, const char *reason, int64_t t) {
    (void)len, (void)reason, (void)t;
    id_walk *w = ud;
    int id = -1;
    if (sscanf(event, "{\"event_id\":\"ev%d\"", &id) == 1 && id >= 0 && id < 64) w->seen[id]++;
    else w->other++;
    return 0;
}

/* Redis takes the first XADDs of a put and refuses the rest (its memory
 * limit, noeviction): only the refused ones go to the spool, so every
 * event is in the DLQ exactly once (a rejected entry is never listed
 * twice). */
Test(audit_dlq, a_put_redis_takes_in_part_spools_only_the_rest, .timeout = 60) {
    tmp_dir t;
    dir_new(&t);
    redis_proc r;
    redis_new(&r);
    redisContext *c = redisConnect("127.0.0.1", r.port);
    cr_assert(c && !c->err);
    redisReply *rep = redisCommand(c, "INFO memory");
    cr_assert_eq(rep->type, REDIS_REPLY_STRING);
    const char *um = strstr(rep->str, "used_memory:");
    cr_assert_not_null(um);
    long long used = atoll(um + strlen("used_memory:"));
    freeReplyObject(rep);
    rep = redisCommand(c, "CONFIG SET maxmemory-policy noeviction");
    freeReplyObject(rep);
    rep = redisCommand(c, "CONFIG SET maxmemory %lld", used + 256 * 1024);
    cr_assert_eq(rep->type, REDIS_REPLY_STATUS, "%s", rep->str);
    freeReplyObject(rep);
    audit_dlq *d = open_dlq(&t, r.url);
    enum { N = 40, PAD = 24 * 1024 };
    char *bufs[N];
    const char *evs[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        bufs[i] = malloc(PAD + 64);
        int k = snprintf(bufs[i], 64, "{\"event_id\":\"ev%d\",\"pad\":\"", i);
        memset(bufs[i] + k, 'x', PAD);
        strcpy(bufs[i] + k + PAD, "\"}");
        evs[i] = bufs[i];
        lens[i] = strlen(bufs[i]);
    }
    cr_assert_eq(audit_dlq_put(d, AUDIT_DLQ_REJECTED, evs, lens, N, "invalid event"), 0);
    rep = redisCommand(c, "XLEN test:dlq:rejected");
    long long in_redis = rep->integer;
    freeReplyObject(rep);
    cr_assert(in_redis > 0 && in_redis < N, "Redis took %lld of %d: not a partial put", in_redis, (int)N);
    cr_assert_eq(stats(d).redis_fallbacks, 1);
    id_walk w = {0};
    cr_assert_eq(audit_dlq_walk(d, AUDIT_DLQ_REJECTED, count_ids, &w), 0);
    for (int i = 0; i < N; i++) cr_expect_eq(w.seen[i], 1, "event ev%d is in the DLQ %d times", i, w.seen[i]);
    cr_expect_eq(w.other, 0);
    cr_expect_eq(stats(d).rejected, N);
    for (int i = 0; i < N; i++) free(bufs[i]);
    redisFree(c);
    audit_dlq_close(d);
    redis_free(&r);
    dir_free(&t);
}

Test(audit_dlq, a_redis_that_is_down_sends_puts_to_the_spool, .timeout = 60) {
    tmp_dir t;
    dir_new(&t);
    redis_proc r;
    redis_new(&r);
    audit_dlq *d = open_dlq(&t, r.url);
    put_range(d, AUDIT_DLQ_HELD, 0, 5, "unreachable");
    redis_stop(&r);
    put_range(d, AUDIT_DLQ_HELD, 5, 5, "unreachable");
    audit_dlq_stats st = stats(d);
    cr_assert_eq(st.redis_fallbacks, 1);
    cr_assert_eq(st.held, -1, "redis cannot say how many it holds");
    redis_start(&r); /* an empty instance: no persistence in this test */
    store *s = calloc(1, sizeof *s);
    int replayed = 0;
    int rrc = audit_dlq_replay(d, 1000, 100, store_send, s, &replayed);
    cr_assert_eq(rrc, 0, "replay: %d after %d", rrc, replayed);
    cr_assert_eq(replayed, 5, "the spooled puts were not replayed");
    for (int i = 5; i < 10; i++) cr_assert_eq(s->seen[i], 1);
    free(s);
    audit_dlq_close(d);
    redis_free(&r);
    dir_free(&t);
}

#if CAIRN_FAULT_BUILD
Test(audit_dlq, a_put_whose_spool_write_or_sync_fails_says_so_and_keeps_nothing_half) {
    tmp_dir t;
    dir_new(&t);
    audit_dlq *d = open_dlq(&t, NULL);
    put_range(d, AUDIT_DLQ_HELD, 0, 3, "ok");
    const char *specs[] = {"sites=audit.write\nnth=1\nerrno=EIO", "sites=audit.fsync\nnth=1\nerrno=EIO"};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(fault_configure(specs[k]), 0);
        const char *evs[] = {"{\"event_id\":\"ev99\"}"};
        size_t lens[] = {strlen(evs[0])};
        cr_assert_eq(audit_dlq_put(d, AUDIT_DLQ_HELD, evs, lens, 1, "x"), CAIRN_EIO);
        cr_assert_eq(fault_configure(""), 0);
    }
    cr_assert_eq(stats(d).spool_failures, 2);
    cr_assert_eq(stats(d).held, 3);
    put_range(d, AUDIT_DLQ_HELD, 3, 1, "ok");
    store *s = calloc(1, sizeof *s);
    int replayed = 0;
    cr_assert_eq(audit_dlq_replay(d, 1000, 100, store_send, s, &replayed), 0);
    cr_assert_eq(replayed, 4);
    cr_assert_eq(s->seen[99], 0, "a put that failed was delivered");
    free(s);
    audit_dlq_close(d);
    dir_free(&t);
}

#include "fault_harness.h"

#if ALLOC_FAILURES
static int walk_count(void *ud, const char *event, size_t len, const char *reason, int64_t t) {
    (void)event, (void)len, (void)reason, (void)t;
    (*(int *)ud)++;
    return 0;
}

/* Every allocation of a put failing in turn: the put says ENOMEM and adds
 * nothing, or succeeds whole. */
Test(audit_dlq, a_put_out_of_memory_says_so_and_keeps_nothing_half, .init = log_capture) {
    tmp_dir t;
    dir_new(&t);
    audit_dlq *d = open_dlq(&t, NULL);
    const char *evs[] = {"{\"event_id\":\"ev1\"}", "{\"event_id\":\"ev2\"}", "{\"event_id\":\"ev3\"}"};
    size_t lens[] = {strlen(evs[0]), strlen(evs[1]), strlen(evs[2])};
    int expect = 0, failed = 0;
    for (int n = 1; n < 100; n++) {
        failing = FAIL_ALLOC_ALL;
        alloc_arm(n);
        int rc = audit_dlq_put(d, AUDIT_DLQ_REJECTED, evs, lens, 3, "invalid event");
        bool hit = alloc_hit();
        alloc_arm(0);
        failing = FAIL_IO;
        if (rc == 0) expect += 3;
        else {
            cr_assert_eq(rc, CAIRN_ENOMEM, "allocation %d: %d", n, rc);
            cr_assert(hit);
            failed++;
        }
        int got = 0;
        cr_assert_eq(audit_dlq_walk(d, AUDIT_DLQ_REJECTED, walk_count, &got), 0);
        cr_assert_eq(got, expect, "after allocation %d failed: %d entries, %d expected", n, got, expect);
        if (!hit) break;
    }
    cr_assert_geq(failed, 1);
    audit_dlq_close(d);
    dir_free(&t);
}
#endif
#endif
