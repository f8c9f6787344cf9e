/*
 * main.c — the `cairn` binary: picks a subcommand by its first argument.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

static const char usage[] =
    "usage: cairn <command> [options]\n"
    "\n"
    "commands:\n"
    "  server [--listen ADDR:PORT] [--data DIR] [--config FILE]   run the embedded S3 server\n"
    "  gateway --nodes URL,URL,... [server options]               S3 gateway over storage nodes\n"
    "  node   --listen ADDR:PORT --drives DIR[,DIR...]            run a storage node (shard API)\n"
    "  audit-server [--listen ADDR:PORT] [--data DIR]              run the audit store alone (docs/audit.md)\n"
    "  admin  [--data DIR] user create NAME [--audit] | list | audit NAME --grant|--revoke\n"
    "                                                               manage users and the audit right\n"
    "  admin  [--data DIR] audit query [--correlation-id X ...] [--url URL]\n"
    "                                                               audit events as JSON lines (docs/audit.md)\n"
    "  admin  [--data DIR] key create NAME | list [NAME] | revoke AK\n"
    "  admin  [--data DIR] bucket set-public NAME [--off] | list\n"
    "  migrate [--data DIR] [--dry-run] status | up [VERSION] | down VERSION | verify\n"
    "                                                               schema migrations and their checksums\n"
    "  config check FILE | describe                                 validate / list options\n"
    "  version\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *c = argv[1];
    if (!strcmp(c, "server")) return cmd_server(argc - 1, argv + 1);
    if (!strcmp(c, "admin")) return cmd_admin(argc - 1, argv + 1);
    if (!strcmp(c, "node")) return cmd_node(argc - 1, argv + 1);
    if (!strcmp(c, "gateway")) return cmd_gateway(argc - 1, argv + 1);
    if (!strcmp(c, "audit-server")) return cmd_audit_server(argc - 1, argv + 1);
    if (!strcmp(c, "migrate")) return cmd_migrate(argc - 1, argv + 1);
    if (!strcmp(c, "config")) return cmd_config(argc - 1, argv + 1);
    if (!strcmp(c, "version") || !strcmp(c, "--version")) {
        puts("cairn 0.1.0");
        return 0;
    }
    fprintf(stderr, "cairn: unknown command '%s'\n\n%s", c, usage);
    return 2;
}
