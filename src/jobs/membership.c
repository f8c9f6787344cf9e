/*
 * membership.c — node heartbeats, registry changes and rebalancing (jobs.h).
 *
 * Every gateway checks its nodes and applies the registry each heartbeat:
 * which nodes it can reach and which may take shards decide where its own
 * writes go.  What is done for all (the registry's health columns and the
 * rebalance passes) only the holder of the "membership" lease does, so N
 * gateways neither move the same shards N times nor overwrite one
 * another's health records.
 */
#include "jobs/jobs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


struct membership {
    meta_store *ms;
    data_store *ds;
    obs_registry *obs;
    int heartbeat_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    pthread_mutex_t pass_mu;          /* one rebalance pass at a time */
    jobs_lease *lease;                /* "membership": bookkeeping and passes run on its holder */
    char placeable_sig[4096];         /* which nodes take shards, as of the last heartbeat */
    uint64_t term;                    /* the lease's term the last pass ran in */
    int64_t pass_due_ms;              /* time_mono ms when a pass is due; 0 = none */
    bool pass_failed;                 /* the last pass could not finish: run it again */
    struct { char id[DATA_DRIVE_ID_LEN + 1]; bool up; } seen[64]; /* nodes' last state, for node:Up/Down */
    int nseen;
};

static bool stopping(membership *m) {
    pthread_mutex_lock(&m->mu);
    bool s = m->stop;
    pthread_mutex_unlock(&m->mu);
    return s;
}

/* Removes the copies of a placement's shards that nothing references any
 * more (from = the layout given up, to = the one kept).  A copy that cannot
 * be removed now is an orphan: logged and counted, and orphan collection
 * takes it later. */
static void drop_copies(membership *m, const meta_placement *it, const data_layout *from, const data_layout *to,
                        const char *why) {
    int rc = data_delete_moved(m->ds, it->version_id, from, to);
    if (rc == 0) return;
    char what[300];
    jobs_describe(it, what, sizeof what);
    obs_counter_add(m->obs, "cairn_rebalance_orphans_total",
                    "Shard copies a rebalance could not remove (left for orphan collection).", 1);
    log_write(LOG_WARN, NULL, why, "placement", what, "version_id", it->version_id, "error", cairn_strerror(rc), NULL);
}

/* Moves one placement's shards if where they belong changed; returns 1 if moved. */
static int rebalance_one(membership *m, const meta_placement *it) {
    data_layout cur, want;
    if (data_layout_parse(it->layout, &cur) != 0) return 0;
    if (!data_desired_layout(m->ds, it->version_id, &cur, &want)) return 0;
    int moved = 0;
    char what[300];
    jobs_describe(it, what, sizeof what);
    int rc = data_relocate(m->ds, it->version_id, it->size, &cur, &want, &moved);
    if (rc != 0) {
        obs_counter_add(m->obs, "cairn_rebalance_failures_total", "Objects a rebalance could not move (retried next pass).", 1);
        log_write(LOG_WARN, NULL, "rebalance could not move shards", "placement", what, "version_id", it->version_id,
                  "error", cairn_strerror(rc), NULL);
        drop_copies(m, it, &want, &cur, "rebalance could not remove the copies of a failed move");
        return 0;
    }
    char text[DATA_LAYOUT_MAX];
    rc = data_layout_format(&want, text, sizeof text);
    if (rc == 0) rc = meta_placement_set_layout(m->ms, it->version_id, it->layout, text);
    if (rc == 0) {
        drop_copies(m, it, &cur, &want, "rebalance could not remove the shards it moved away from");
        obs_counter_add(m->obs, "cairn_rebalance_objects_moved_total", "Objects whose shards a rebalance moved.", 1);
        obs_counter_add(m->obs, "cairn_rebalance_shards_moved_total", "Shards a rebalance moved to another node.",
                        (uint64_t)moved);
        return 1;
    }
    /* Overwritten, deleted or moved by another gateway meanwhile (or the
     * metadata write failed): the new copies belong to nothing. */
    if (rc != CAIRN_ECONFLICT && rc != CAIRN_ENOTFOUND)
        log_write(LOG_WARN, NULL, "rebalance could not record a move", "placement", what, "version_id", it->version_id,
                  "error", cairn_strerror(rc), NULL);
    drop_copies(m, it, &want, &cur, "rebalance could not remove the copies of an abandoned move");
    return 0;
}

typedef struct {
    membership *m;
    int moved, seen;
    int64_t next_report_ms;    /* rebalance:Progress at most every few seconds */
} pass_ctx;

#define PROGRESS_EVERY_MS 5000

static int rebalance_visit(void *ud, const meta_placement *o) {
    pass_ctx *c = ud;
    c->moved += rebalance_one(c->m, o);
    c->seen++;
    int64_t now = time_mono_ns() / 1000000;
    if (now >= c->next_report_ms) {
        char ns[24], nm[24];
        status_emit("rebalance:Progress", "objects_seen", log_int(ns, c->seen), "objects_moved", log_int(nm, c->moved),
                    NULL);
        c->next_report_ms = now + PROGRESS_EVERY_MS;
    }
    return 0;
}

/* A pass ends early when the process stops or the lease moved: the next
 * holder runs a whole pass when it takes the lease. */
static bool pass_stop(void *ud) {
    membership *m = ((pass_ctx *)ud)->m;
    return stopping(m) || !jobs_lease_held(m->lease);
}

int membership_rebalance(membership *m) {
    pthread_mutex_lock(&m->pass_mu);
    pass_ctx c = {m, 0, 0, time_mono_ns() / 1000000 + PROGRESS_EVERY_MS};
    int64_t t0 = time_now_ms();
    fault_point("rebalance.begin");
    int seen = jobs_walk(m->ms, rebalance_visit, pass_stop, &c);
    fault_point("rebalance.end");
    pthread_mutex_unlock(&m->pass_mu);
    if (seen < 0) {
        log_write(LOG_WARN, NULL, "rebalance pass could not finish; it runs again at the next heartbeat", "error",
                  cairn_strerror(seen), NULL);
        return seen;
    }
    if (!stopping(m) && !jobs_lease_held(m->lease)) {
        char nm[24];
        log_write(LOG_WARN, NULL, "rebalance pass stopped: the membership lease is lost; its next holder runs one",
                  "objects_moved", log_int(nm, c.moved), NULL);
        return CAIRN_ECONFLICT;
    }
    char ns[24], nm[24], ms[24];
    log_write(LOG_INFO, NULL, "rebalance pass done", "objects_seen", log_int(ns, seen), "objects_moved",
              log_int(nm, c.moved), "duration_ms", log_int(ms, time_now_ms() - t0), NULL);
    status_emit("rebalance:Done", "objects_seen", ns, "objects_moved", nm, "duration_ms", ms, NULL);
    obs_counter_add(m->obs, "cairn_rebalance_passes_total", "Rebalance passes run.", 1);
    return c.moved;
}

/* The registry's health columns are written by the lease holder only: one
 * gateway's view, not the last writer's of N. */
/* node:Down when a node stops answering (or does not at the first look),
 * node:Up when it answers again: changes only, as this gateway sees them. */
static void note_state(membership *m, const char *id, const char *where, bool up) {
    int i;
    for (i = 0; i < m->nseen && strcmp(m->seen[i].id, id) != 0; i++) {
    }
    bool known = i < m->nseen;
    if (!known && i < (int)(sizeof m->seen / sizeof m->seen[0])) {
        snprintf(m->seen[i].id, sizeof m->seen[i].id, "%s", id);
        m->seen[i].up = true;
        m->nseen++;
    }
    if (i == m->nseen || m->seen[i].up == up) return;
    m->seen[i].up = up;
    status_emit(up ? "node:Up" : "node:Down", "node_id", id, "url", where ? where : "", NULL);
}

static void record_seen(void *ud, const char *id, const char *where, bool up) {
    membership *m = ud;
    note_state(m, id, where, up);
    if (jobs_lease_held(m->lease)) meta_node_seen(m->ms, id, up, up ? NULL : "did not answer /v1/info");
}

/* Decides, on the lease holder, whether a rebalance pass runs now. */
static bool pass_due(membership *m, bool changed) {
    uint64_t term = jobs_lease_term(m->lease);
    int64_t now = time_mono_ns() / 1000000;
    if (term == 0) { /* another gateway rebalances */
        m->pass_due_ms = 0;
        m->pass_failed = false;
        return false;
    }
    if (term != m->term) {
        /* Newly the holder: the last holder's pass may be unfinished, and
         * the registry may have changed while this gateway was not looking. */
        m->term = term;
        m->pass_due_ms = now;
    } else if (changed && !m->pass_due_ms) {
        /* Every gateway applies the change within a heartbeat: a pass after
         * that also moves what the others wrote to the old node set. */
        m->pass_due_ms = now + m->heartbeat_ms;
    }
    /* A pass the metadata store failed under runs again at once: otherwise
     * the shards it did not reach would wait for the next change. */
    if (m->pass_failed && !m->pass_due_ms) m->pass_due_ms = now;
    if (!m->pass_due_ms || now < m->pass_due_ms) return false;
    m->pass_due_ms = 0;
    return true;
}

typedef struct {
    data_store *ds;
    buf_t *sig;
} apply_ctx;

/* Applies one registry row to the store; builds the placeable signature. */
static int apply_node(void *ud, const meta_node *n) {
    apply_ctx *c = ud;
    char id[DATA_DRIVE_ID_LEN + 1];
    bool active = !strcmp(n->state, "active");
    if (data_set_placeable(c->ds, n->id, active) == CAIRN_ENOTFOUND && strcmp(n->state, "removed") != 0) {
        int rc = data_add_node(c->ds, n->url, id);
        if (rc == 0 || rc == CAIRN_EEXIST) {
            data_set_placeable(c->ds, id, active);
            log_write(LOG_INFO, NULL, "node joined", "node_id", id, "url", n->url, NULL);
        }
    }
    if (active && c->sig) {
        buf_puts(c->sig, n->id);
        buf_putc(c->sig, ',');
    }
    return 0;
}

int membership_apply_registry(meta_store *ms, data_store *ds, buf_t *sig) {
    apply_ctx c = {ds, sig};
    return meta_node_list(ms, apply_node, &c);
}

static void *membership_main(void *arg) {
    pthread_setname_np(pthread_self(), "membership");
    membership *m = arg;
    for (;;) {
        data_check_drives(m->ds, record_seen, m);
        buf_t sig;
        buf_init(&sig);
        /* A registry that could not be read says nothing about a change. */
        bool listed = membership_apply_registry(m->ms, m->ds, &sig) == 0;
        bool changed = listed && sig.data && strcmp(sig.data, m->placeable_sig) != 0;
        if (changed) snprintf(m->placeable_sig, sizeof m->placeable_sig, "%s", sig.data);
        buf_free(&sig);
        if (pass_due(m, changed)) m->pass_failed = membership_rebalance(m) < 0;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (int64_t)m->heartbeat_ms * 1000000LL;
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        pthread_mutex_lock(&m->mu);
        while (!m->stop)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &until) != 0) break;
        bool stop = m->stop;
        pthread_mutex_unlock(&m->mu);
        if (stop) break;
    }
    return NULL;
}

int membership_start(meta_store *ms, data_store *ds, obs_registry *obs, int heartbeat_ms,
                     const jobs_lease_options *lease, membership **out) {
    *out = NULL;
    membership *m = calloc(1, sizeof *m);
    if (!m) return CAIRN_ENOMEM;
    *m = (membership){.ms = ms, .ds = ds, .obs = obs, .heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 2000};
    /* Taking the lease starts a term, and a term starts with a pass: one
     * interrupted by a restart, or registry changes made while no gateway
     * held it, are picked up (objects already in place cost a lookup). */
    int rc = jobs_lease_start(ms, obs, "membership", lease, &m->lease);
    if (rc != 0) {
        free(m);
        return rc;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    pthread_mutex_init(&m->pass_mu, NULL);
    if (pthread_create(&m->thread, NULL, membership_main, m) != 0) {
        jobs_lease_stop(m->lease);
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->pass_mu);
        free(m);
        return CAIRN_ENOMEM;
    }
    *out = m;
    return 0;
}

void membership_stop(membership *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    jobs_lease_stop(m->lease); /* after the pass stopped: another gateway takes over at once */
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->pass_mu);
    free(m);
}
