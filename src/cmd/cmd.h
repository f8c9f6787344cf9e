/*
 * cmd — the subcommands of the `cairn` binary.  main.c picks one by argv[1]
 * and calls it with argv shifted so that argv[0] is the subcommand's name;
 * the process exits with the returned value.  Only this layer prints to the
 * terminal or decides exit codes.
 */
#ifndef CAIRN_CMD_H
#define CAIRN_CMD_H

/* `cairn config check FILE` and `cairn config describe` (config_cmd.c).
 * Returns 0 when the file is valid or the table was printed, 2 on invalid
 * configuration or bad usage. */
int cmd_config(int argc, char **argv);

/* `cairn server [--listen ADDR:PORT] [--data DIR] [--config FILE]` (server.c):
 * runs the embedded gateway until SIGTERM/SIGINT.  0 on a clean shutdown, 2 on
 * bad configuration, 1 on a runtime failure. */
int cmd_server(int argc, char **argv);

/* `cairn gateway --nodes URL,... [server flags]`: the S3 gateway with its data
 * erasure-coded across storage nodes (server.c). */
int cmd_gateway(int argc, char **argv);

/* `cairn audit-server [--listen ADDR:PORT] [--data DIR] [--config FILE]`
 * (server.c): the audit store alone (docs/audit.md), metadata as
 * metadata_url says (DATA/meta.db by default), until SIGTERM/SIGINT. */
int cmd_audit_server(int argc, char **argv);

/* `cairn node --listen ADDR:PORT --drives DIR[,DIR...]` (node.c): a storage
 * node serving the shard API; needs cluster_secret.  Exit codes as server. */
int cmd_node(int argc, char **argv);

/* Blocks SIGTERM/SIGINT in this and all later threads (call before starting
 * any), ignores SIGPIPE (server.c). */
#include <signal.h>
void cmd_block_signals(sigset_t *sigs);
/* Waits for SIGTERM or SIGINT among sigs and returns it (the fault build
 * re-arms fault injection on SIGUSR1 meanwhile); then cmd_drain_and_stop
 * stops accepting, waits for in-flight requests up to shutdown_timeout
 * seconds and stops the server, returning how many were still running
 * (server.c). */
#include "http/http.h"
int cmd_wait_stop_signal(const sigset_t *sigs);
int cmd_drain_and_stop(http_server *srv, int shutdown_timeout);
/* Log shipping (log_ship_url) for a process named service in its lines'
 * "service" label: *out NULL when log_ship_url is empty.  0, or the error
 * after saying it on stderr.  The stop flushes within twice
 * log_ship_timeout_ms and logs what was left (server.c). */
#include "audit/logship.h"
int cmd_logship_start(const config_t *c, const char *service, logship **out);
void cmd_logship_stop(const config_t *c, logship *ls);

/* `cairn admin [--data DIR] [--config FILE] user|key|bucket ...` (admin.c). */
int cmd_admin(int argc, char **argv);

#include <stdbool.h>
#include "core/core.h"
#include "meta/meta.h"
/* `cairn admin audit query ...` (audit_cmd.c): the audit store's events as
 * JSON lines; ms is the local metadata, unused (may be NULL) with --url,
 * which cmd_admin_audit_remote tells from the arguments (argv[0] "audit"). */
int cmd_admin_audit(const config_t *cfg, meta_store *ms, int argc, char **argv);
bool cmd_admin_audit_remote(int argc, char **argv);

/* `cairn migrate [--data DIR] [--dry-run] status | up [VERSION] | down
 * VERSION | verify` (migrate.c). */
int cmd_migrate(int argc, char **argv);

/* A whole number in [lo, hi]: an optional '-' and digits, nothing else
 * (atoi would read "oops" as 0) (admin.c). */
#include <stdbool.h>
bool cmd_parse_whole(const char *s, long long lo, long long hi, long long *out);

#define CMD_MAX_ARGS 64

/* Shared by server and admin: initialises core, then loads configuration from defaults, the file named
 * by --config (or CAIRN_CONFIG), the environment and the flags.  Consumes the
 * flags it knows (--listen --data --config --domain) from argv, leaving the rest
 * in rest/nrest (room for CMD_MAX_ARGS).  Prints every problem on stderr;
 * returns 0, 2 (bad configuration or usage) or 1. */
#include "core/core.h"
int cmd_load_config(int argc, char **argv, config_t *cfg, char **rest, int *nrest);

/* The start of every long-running command (server, gateway, node): blocks
 * the shutdown signals, loads configuration, refuses leftover arguments with
 * the command's usage line, and sets the log level.  Returns 0, or the exit
 * code after printing why (server.c). */
int cmd_service_begin(int argc, char **argv, const char *name, const char *usage, sigset_t *sigs,
                      config_t *cfg);
/* The drive directories a command uses: `drives`, or DATA/drives/d0.  Fills
 * paths (pointing into buf, at most 64); returns how many (server.c). */
int cmd_drive_paths(const config_t *cfg, char *buf, size_t bufsz, char **paths);

/* Splits a comma-separated list (copied into buf) into at most max items;
 * returns how many (server.c). */
int cmd_split_list(const char *csv, char *buf, size_t bufsz, char **out, int max);

/* Reads tls_cert and tls_key (when set) into *cert and *key (malloc'd, NUL-
 * terminated; the caller frees).  Prints the problem and returns 2 on error
 * (server.c). */
int cmd_load_tls(const config_t *cfg, char **cert, char **key);
/* A PEM file's text (malloc'd, under 1 MiB), or NULL. */
char *cmd_read_pem(const char *path);
/* From now on SIGHUP reads cfg's tls_cert and tls_key again and serves them
 * (cmd_wait_stop_signal); cfg must outlive the wait. */
void cmd_tls_reload_on_sighup(const config_t *cfg);

/* Takes the data directory's lock (DATA/lock), creating the directory: one
 * process serves a data directory at a time; and, when metadata_url names a
 * SQLite database elsewhere, that database's lock (PATH.lock).  fd[0] and
 * fd[1] (-1 if none) hold them until cmd_unlock_data_dir.  Prints why and
 * returns 1 when another process holds one (server.c). */
int cmd_lock_data_dir(const config_t *cfg, int fd[2]);
void cmd_unlock_data_dir(int fd[2]);

/* Opens the data store of a configuration: the storage nodes of a gateway
 * (nodes), the drives named by `drives`, or DATA/drives/d0 (the embedded
 * default).  Prints why and returns an exit code on failure (server.c). */
#include "data/data.h"
#include "meta/meta.h"
int cmd_open_data(const config_t *cfg, meta_store *ms, data_store **ds, int *cleaned);

/* `cairn admin fsck [--repair] [--json]` (fsck.c): see docs/fsck.md. */
int cmd_fsck(const config_t *cfg, int argc, char **argv);

/* The PostgreSQL pool's options from the db_pool_* and db_*_ms settings
 * (admin.c). */
void cmd_pg_options(const config_t *cfg, meta_pg_options *pg);
/* Opens the metadata database and master key of a data dir (admin.c). */
#include "meta/meta.h"
int cmd_open_meta(const config_t *cfg, meta_store **ms, unsigned char master_key[32]);
/* The same for a server or gateway (reader): its reads go through the
 * metadata cache; cmd_open_meta's process only invalidates what it writes. */
int cmd_open_meta_for(const config_t *cfg, bool reader, meta_store **ms, unsigned char master_key[32]);
/* The audit store's database (audit_metadata_url; docs/audit.md): empty
 * means data_dir/audit.db when the metadata is SQLite (audit rows never
 * share the metadata's file, its writer lock or its backups), and the
 * metadata database itself (*out = ms) when it is PostgreSQL.  Close it
 * with cmd_close_audit_meta.  Prints why and returns 1 on failure. */
int cmd_open_audit_meta(const config_t *cfg, meta_store *ms, meta_store **out);
void cmd_close_audit_meta(meta_store *ms, meta_store *audit);
/* Records an admin command's audit event (docs/audit.md: action "admin:"
 * and its first words, status from its exit code rc) in the audit
 * database, durably.  0, or nonzero after printing why. */
int cmd_admin_record(const config_t *cfg, meta_store *ms, int argc, char **argv, int rc, int64_t started_ns,
                     int64_t started_us);

#endif
