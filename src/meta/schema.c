/*
 * schema.c — what the two backends' migrations share: each step's checksum,
 * the drift rule, the status an operator reads (meta_migration_status) and
 * the scripts a dry run prints (meta_migration_script).
 *
 * A step's checksum is the SHA-256 of its up text in the backend's dialect,
 * as hex.  A backend records it with the step (schema_migrations.checksum)
 * and, inside every migrating transaction, compares each applied step's
 * recorded checksum with this binary's (meta_migration_check): a step whose
 * text changed after it ran means the database's schema is not the one this
 * binary's later steps and queries were written against, so nothing runs
 * until an operator looks (`cairn migrate verify` names every such step).
 * Only the up text counts: it is what made the schema; a changed down text
 * changes nothing that exists.
 *
 * The backends' own files (migrations.c, pg_migrations.c) hold the texts and
 * run them; each describes itself with a meta_migration_set (meta_int.h).
 */
#include "meta/meta.h"
#include "meta/meta_int.h"
#include "meta/pg_int.h"
#include "meta/sqlite_int.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const meta_migration_set *set_of(meta_backend b) {
    if (b == META_BACKEND_SQLITE) return &sq_migration_set;
    if (b == META_BACKEND_POSTGRES) return &pg_migration_set;
    return NULL;
}

int meta_migration_sum(const meta_migration_set *s, int v, char out[65]) {
    if (!s || v < 1 || v > s->count) return CAIRN_EINVAL;
    const char *sql = s->sql(v, true);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(sql, strlen(sql), md, &n, EVP_sha256(), NULL) || n != 32) return CAIRN_ENOMEM;
    hex_encode(md, 32, out);
    out[64] = '\0';
    return 0;
}

int meta_migration_check(const meta_migration_set *s, int v, const char *recorded, bool *fill, char *why,
                         size_t whylen) {
    *fill = false;
    if (v < 1 || v > s->count) return 0;
    char want[65];
    int err = meta_migration_sum(s, v, want);
    if (err != 0) return err;
    if (!recorded[0]) {
        *fill = true;
        return 0;
    }
    if (!strcmp(recorded, want)) return 0;
    if (why && whylen)
        snprintf(why, whylen,
                 "migration %d (%s) has changed since it was applied: the database recorded checksum %.12s, "
                 "this binary's is %.12s (cairn migrate verify lists every changed migration)",
                 v, meta_migration_name(v), recorded, want);
    char vbuf[24];
    log_write(LOG_ERROR, NULL, "meta: an applied migration has changed since it was applied; refusing",
              "version", log_int(vbuf, v), "name", meta_migration_name(v), "backend",
              s->backend == META_BACKEND_POSTGRES ? "postgres" : "sqlite", "recorded", recorded, "expected", want,
              NULL);
    return CAIRN_EDB;
}

int meta_migration_checksum(meta_backend b, int v, char out[65]) {
    return meta_migration_sum(set_of(b), v, out);
}

const char *meta_migration_sql(meta_backend b, int v, bool up) {
    const meta_migration_set *s = set_of(b);
    if (!s || v < 1 || v > s->count) return NULL;
    return s->sql(v, up);
}

/* ---- status ------------------------------------------------------------------ */

int meta_migration_status(meta_store *ms, int (*cb)(void *ud, const meta_migration_info *m), void *ud) {
    if (!ms || !cb) return CAIRN_EINVAL;
    const meta_migration_set *s = ms->ops->migrations;
    meta_migration_row *rows = NULL;
    int n = 0;
    int err = ms->ops->migration_rows(ms, &rows, &n);
    if (err != 0) return err;
    int r = 0; /* rows are in version order: walk them beside the versions */
    for (int v = 1; err == 0; v++) {
        while (r < n && rows[r].version < v) r++;
        if (v > s->count && r >= n) break;
        const meta_migration_row *row = r < n && rows[r].version == v ? &rows[r] : NULL;
        if (v > s->count && !row) continue;
        char want[65] = "";
        meta_migration_info m = {.version = v, .name = meta_migration_name(v), .recorded = "", .expected = want};
        if (v <= s->count && (err = meta_migration_sum(s, v, want)) != 0) break;
        if (!row) {
            m.state = META_MIG_PENDING;
        } else {
            m.applied_ms = row->applied_ms;
            m.recorded = row->checksum;
            if (v > s->count) {
                m.state = META_MIG_UNKNOWN;
                m.name = row->name;
            } else if (!row->checksum[0]) {
                m.state = META_MIG_UNRECORDED;
            } else {
                m.state = strcmp(row->checksum, want) ? META_MIG_CHANGED : META_MIG_OK;
            }
        }
        if (cb(ud, &m)) break;
    }
    free(rows);
    return err;
}

/* ---- dry runs ---------------------------------------------------------------- */

/* Appends sql's statements, one a line, each ending in ';' (splits at ';'
 * outside quotes; runs of blanks inside a statement become one, and none
 * follows an opening parenthesis). */
static void put_statements(buf_t *out, const char *sql) {
    bool fresh = true, blank = false;
    char quote = 0;
    for (const char *p = sql; *p; p++) {
        char c = *p;
        if (!quote && c == ';') {
            if (!fresh) buf_puts(out, ";\n");
            fresh = true;
            blank = false;
            continue;
        }
        if (!quote && (c == ' ' || c == '\n' || c == '\t')) {
            blank = !fresh;
            continue;
        }
        if (blank && out->len && out->data[out->len - 1] != '(') buf_putc(out, ' ');
        blank = false;
        fresh = false;
        if (quote && c == quote) quote = 0;
        else if (!quote && (c == '\'' || c == '"')) quote = c;
        buf_putc(out, c);
    }
    if (!fresh) buf_puts(out, ";\n");
}

/* A string literal: single quotes doubled. */
static void put_literal(buf_t *out, const char *s) {
    buf_putc(out, '\'');
    for (; *s; s++) {
        if (*s == '\'') buf_putc(out, '\'');
        buf_putc(out, *s);
    }
    buf_putc(out, '\'');
}

int meta_migration_script(meta_backend b, int from, int to, int64_t now_ms, buf_t *out) {
    const meta_migration_set *s = set_of(b);
    if (!s || !out || from < 0 || to < 0 || from > s->count || to > s->count) return CAIRN_EINVAL;
    const char *backend = b == META_BACKEND_POSTGRES ? "postgres" : "sqlite";
    if (from == to) {
        buf_printf(out, "-- %s: schema version %d already; nothing to run\n", backend, to);
        return 0;
    }
    bool up = to > from;
    int steps = up ? to - from : from - to;
    buf_printf(out, "-- %s: schema version %d -> %d, %d step%s, each in its own transaction; every step first "
                    "checks the checksums of the applied ones\n",
               backend, from, to, steps, steps == 1 ? "" : "s");
    for (int i = 0; i < steps; i++) {
        int v = up ? from + 1 + i : from - i;
        char sum[65];
        int err = meta_migration_sum(s, v, sum);
        if (err != 0) return err;
        buf_printf(out, "\n-- %s %d: %s (checksum %s)\n", up ? "up" : "down", v, meta_migration_name(v), sum);
        put_statements(out, s->begin_sql);
        put_statements(out, s->bootstrap_sql);
        put_statements(out, s->sql(v, up));
        if (up) {
            buf_printf(out, "INSERT INTO schema_migrations(version, name, applied_ms, checksum) VALUES (%d, ", v);
            put_literal(out, meta_migration_name(v));
            buf_printf(out, ", %lld, '%s');\n", (long long)now_ms, sum);
        } else {
            buf_printf(out, "DELETE FROM schema_migrations WHERE version = %d;\n", v);
        }
        buf_puts(out, "COMMIT;\n");
    }
    return 0;
}
