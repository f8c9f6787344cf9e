/*
 * migrate.c — `cairn migrate`: the schema's version, its steps and their
 * checksums, on the database metadata_url names (SQLite or PostgreSQL).
 *
 *   status          the version, and each step: applied or not, and whether
 *                   an applied one's text has changed since (drift)
 *   up [VERSION]    migrate up to VERSION (default: the latest)
 *   down VERSION    migrate down to VERSION
 *   verify          check every applied step's checksum; exit 1 naming each
 *                   step that changed (or that this binary does not know)
 *   --dry-run       with up and down, print the SQL that would run and change
 *                   nothing; with status and verify, print what they would
 *                   check without reading the database
 *
 * up and down take the data directory's lock, as a server does, so they
 * never pull tables from under a running server (on SQLite; on PostgreSQL
 * the migration's advisory lock orders them against starting gateways).
 * Exit codes: 0 done, 1 a runtime failure or drift, 2 bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/cmd.h"

static const char usage[] =
    "usage: cairn migrate [--data DIR] [--dry-run] status | up [VERSION] | down VERSION | verify\n";

/* ---- status and verify ------------------------------------------------------- */

typedef struct {
    bool verify;
    int current;
    int checked, changed, unknown;
} report;

static int print_step(void *ud, const meta_migration_info *m) {
    report *r = ud;
    bool applied = m->state != META_MIG_PENDING;
    if (!r->verify) {
        const char *note = m->state == META_MIG_CHANGED      ? " (changed since it was applied: see cairn migrate verify)"
                           : m->state == META_MIG_UNKNOWN    ? " (unknown to this binary)"
                           : m->state == META_MIG_UNRECORDED ? " (no checksum recorded yet)"
                                                              : "";
        printf("  %s %d %s%s\n", applied ? "[x]" : "[ ]", m->version, m->name, note);
        return 0;
    }
    if (!applied) return 0;
    r->checked++;
    switch (m->state) {
    case META_MIG_OK:
        printf("  ok %d %s\n", m->version, m->name);
        break;
    case META_MIG_UNRECORDED:
        printf("  unrecorded %d %s (applied by a cairn that kept no checksums; the next migration records it)\n",
               m->version, m->name);
        break;
    case META_MIG_CHANGED:
        r->changed++;
        printf("  changed %d %s (recorded %.12s, this binary %.12s)\n", m->version, m->name, m->recorded, m->expected);
        fprintf(stderr, "cairn: migration %d (%s) has changed since it was applied\n", m->version, m->name);
        break;
    case META_MIG_UNKNOWN:
        r->unknown++;
        printf("  unknown %d %s (not a migration of this binary)\n", m->version, m->name);
        fprintf(stderr, "cairn: migration %d (%s) is not one this binary knows: a newer cairn applied it\n",
                m->version, m->name);
        break;
    case META_MIG_PENDING:
        break;
    }
    return 0;
}

static int show(meta_store *ms, bool verify) {
    report r = {.verify = verify};
    if (meta_schema_version(ms, &r.current) != 0) {
        fprintf(stderr, "cairn: cannot read the schema version\n");
        return 1;
    }
    printf("schema version %d of %d\n", r.current, meta_schema_latest());
    if (meta_migration_status(ms, print_step, &r) != 0) {
        fprintf(stderr, "cairn: cannot read the applied migrations\n");
        return 1;
    }
    if (!verify) return 0;
    if (r.changed || r.unknown) return 1;
    printf("%d applied migration%s match%s this binary\n", r.checked, r.checked == 1 ? "" : "s",
           r.checked == 1 ? "es" : "");
    return 0;
}

/* status and verify with --dry-run: what they read and compare, without
 * opening the database. */
static int show_plan(meta_backend b, bool verify) {
    printf("-- dry run: the database is not opened\n"
           "-- %s reads: SELECT version, name, applied_ms, checksum FROM schema_migrations ORDER BY version\n"
           "-- and compares the checksum recorded for each applied version with this binary's "
           "(SHA-256 of its up text on %s):\n",
           verify ? "verify" : "status", b == META_BACKEND_POSTGRES ? "postgres" : "sqlite");
    for (int v = 1; v <= meta_schema_latest(); v++) {
        char sum[65];
        if (meta_migration_checksum(b, v, sum) != 0) return 1;
        printf("--   %d %s %s\n", v, sum, meta_migration_name(v));
    }
    if (verify) printf("-- an applied version whose checksum differs, or that is not listed here, fails it\n");
    return 0;
}

/* ---- up and down ------------------------------------------------------------- */

typedef struct {
    int changed_version;
    char changed_name[129];
} drift_probe;

static int find_drift(void *ud, const meta_migration_info *m) {
    drift_probe *d = ud;
    if (m->state != META_MIG_CHANGED) return 0;
    d->changed_version = m->version;
    snprintf(d->changed_name, sizeof d->changed_name, "%s", m->name);
    return 1;
}

/* up or down with --dry-run: the script, from the version the database is
 * at (0 for a SQLite file that does not exist yet: it is not created). */
static int dry_run(const config_t *cfg, const meta_url *u, bool up, bool given, long long target) {
    int cur = 0;
    meta_store *ms = NULL;
    struct stat sb;
    bool absent = u->backend == META_BACKEND_SQLITE && stat(u->path, &sb) != 0 && errno == ENOENT;
    if (!absent) {
        meta_options mo = {.readers = 1, .fsync = true, .busy_timeout_ms = 5000};
        char why[1400];
        if (meta_open_url(cfg->metadata_url, cfg->data_dir, &mo, false, &ms, why, sizeof why) != 0) {
            fprintf(stderr, "cairn: cannot open the metadata database: %s\n", why);
            return 1;
        }
        if (meta_schema_version(ms, &cur) != 0) {
            fprintf(stderr, "cairn: cannot read the schema version\n");
            meta_close(ms);
            return 1;
        }
    }
    int rc = 0;
    if (up && !given) target = meta_schema_latest();
    drift_probe d = {0};
    if (target < 0 || target > meta_schema_latest() || cur > meta_schema_latest() || (up ? target < cur : target > cur)) {
        fprintf(stderr, "cairn: bad target version for %s (current %d, latest %d)\n", up ? "up" : "down", cur,
                meta_schema_latest());
        rc = 2;
    } else if (ms && meta_migration_status(ms, find_drift, &d) != 0) {
        fprintf(stderr, "cairn: cannot read the applied migrations\n");
        rc = 1;
    } else if (d.changed_version) {
        fprintf(stderr, "cairn: migration %d (%s) has changed since it was applied: %s would refuse to run\n",
                d.changed_version, d.changed_name, up ? "up" : "down");
        rc = 1;
    } else {
        buf_t script;
        buf_init(&script);
        if (absent) buf_printf(&script, "-- %s does not exist yet: the migration would create it\n", u->path);
        if (meta_migration_script(u->backend, cur, (int)target, time_now_ms(), &script) != 0 || script.oom) {
            fprintf(stderr, "cairn: cannot write the script\n");
            rc = 1;
        } else {
            printf("-- dry run: nothing is changed\n%s", script.data);
        }
        buf_free(&script);
    }
    meta_close(ms);
    return rc;
}

int cmd_migrate(int argc, char **argv) {
    config_t cfg;
    char *rest[CMD_MAX_ARGS];
    int nrest = 0;
    int rc = cmd_load_config(argc, argv, &cfg, rest, &nrest);
    if (rc != 0) return rc;
    bool dry = false;
    char *args[CMD_MAX_ARGS];
    int nargs = 0;
    for (int i = 0; i < nrest; i++) {
        if (!strcmp(rest[i], "--dry-run")) dry = true;
        else args[nargs++] = rest[i];
    }
    const char *verb = nargs > 0 ? args[0] : "status";
    bool moves = !strcmp(verb, "up") || !strcmp(verb, "down");
    bool verify = !strcmp(verb, "verify");
    if (!moves && !verify && strcmp(verb, "status") != 0) {
        fputs(usage, stderr);
        return 2;
    }
    long long target = -1;
    bool given = moves && nargs > 1;
    if (given && !cmd_parse_whole(args[1], -1000000, 1000000, &target)) {
        fprintf(stderr, "cairn: '%s' is not a schema version (a whole number)\n", args[1]);
        return 2;
    }
    meta_url u;
    char why[1400];
    if (meta_url_parse(cfg.metadata_url, cfg.data_dir, &u, why, sizeof why) != 0) {
        fprintf(stderr, "cairn: cannot open the metadata database: %s\n", why);
        return 1;
    }
    if (dry) return moves ? dry_run(&cfg, &u, !strcmp(verb, "up"), given, target) : show_plan(u.backend, verify);
    /* Moving the schema under a running server would pull tables from under
     * it: up and down take the data directory's lock, as fsck does. */
    int lock_fd[2] = {-1, -1};
    if (moves) {
        if ((rc = cmd_lock_data_dir(&cfg, lock_fd)) != 0) return rc;
    } else if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn: cannot create data directory %s: %s\n", cfg.data_dir, strerror(errno));
        return 1;
    }
    meta_options mo = {.readers = 1, .fsync = true, .busy_timeout_ms = 5000};
    meta_store *ms;
    if ((rc = meta_open_url(cfg.metadata_url, cfg.data_dir, &mo, false, &ms, why, sizeof why)) != 0) {
        fprintf(stderr, "cairn: cannot open the metadata database: %s\n", why);
        cmd_unlock_data_dir(lock_fd);
        return 1;
    }
    int cur = 0;
    meta_schema_version(ms, &cur);
    if (!moves) {
        rc = show(ms, verify);
    } else {
        bool up = !strcmp(verb, "up");
        if (up && !given) target = meta_schema_latest();
        if (target < 0 || target > meta_schema_latest() || (up ? target < cur : target > cur)) {
            fprintf(stderr, "cairn: bad target version for %s (current %d, latest %d)\n", verb, cur, meta_schema_latest());
            rc = 2;
        } else {
            rc = meta_migrate_to(ms, (int)target, why, sizeof why) == 0 ? 0 : 1;
            if (rc == 0) printf("schema version %lld\n", target);
            else fprintf(stderr, "cairn: migration failed: %s\n", why[0] ? why : "see the log");
        }
    }
    meta_close(ms);
    cmd_unlock_data_dir(lock_fd);
    return rc;
}
