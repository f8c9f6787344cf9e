/*
 * config_cmd.c — `cairn config`: operator tools for the configuration file.
 *
 *   cairn config check FILE   loads FILE over the defaults exactly as the
 *                             server would (without the environment), runs
 *                             the cross-field checks, and prints every
 *                             problem as "FILE: KEY: reason" on stderr
 *                             (exit 2), or "FILE: ok" on stdout (exit 0).
 *   cairn config describe     prints the option table as Markdown: the same
 *                             text docs/configuration.md is generated from.
 *
 * All parsing and checking lives in core/config.c; this file only prints.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "core/core.h"

#define CONFIG_EXIT_INVALID 2

static int config_usage(void)
{
    fputs("usage: cairn config check FILE\n"
          "       cairn config describe\n", stderr);
    return CONFIG_EXIT_INVALID;
}

static void print_errors(const char *file, const config_errors *errs)
{
    for (int i = 0; i < errs->count; i++)
        fprintf(stderr, "%s: %s: %s\n", file, errs->items[i].key, errs->items[i].reason);
    if (errs->total > errs->count)
        fprintf(stderr, "%s: ... and %d more errors\n", file, errs->total - errs->count);
}

static int config_check(const char *file)
{
    config_t cfg;
    config_errors errs = {0};
    config_defaults(&cfg);
    int rc = config_load_file(&cfg, file, &errs);
    /* Rejected values were never stored, so validation sees only good
     * fields and adds just the cross-field problems, never duplicates. */
    if (rc != CAIRN_ENOMEM)
        config_validate(&cfg, &errs);
    if (errs.total == 0 && rc == 0) {
        printf("%s: ok\n", file);
        return 0;
    }
    if (errs.total == 0)
        fprintf(stderr, "%s: <file>: %s\n", file, cairn_strerror(rc));
    print_errors(file, &errs);
    return CONFIG_EXIT_INVALID;
}

static int config_describe_cmd(void)
{
    buf_t out;
    buf_init(&out);
    config_describe(&out);
    if (out.oom) {
        buf_free(&out);
        fputs("cairn config describe: out of memory\n", stderr);
        return 1;
    }
    fwrite(out.data, 1, out.len, stdout);
    buf_free(&out);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_config(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "check") == 0)
        return config_check(argv[2]);
    if (argc == 2 && strcmp(argv[1], "describe") == 0)
        return config_describe_cmd();
    return config_usage();
}
