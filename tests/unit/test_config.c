/*
 * test_config.c — unit tests for core/config.c.
 *
 * Everything is checked through the public functions: values land in
 * config_t, rejected values leave it untouched, and every problem shows up
 * in config_errors under the key a user typed with a reason a user can act
 * on.  The option table itself is checked through config_describe(): each
 * row's environment variable follows the CAIRN_<KEY> rule and each row's
 * default round-trips through config_set to exactly config_defaults().
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "s3/s3.h"

#define KIB 1024LL
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

/* ---- helpers ------------------------------------------------------------ */

static const config_error *find_err(const config_errors *e, const char *key)
{
    for (int i = 0; i < e->count; i++)
        if (strcmp(e->items[i].key, key) == 0)
            return &e->items[i];
    return NULL;
}

static void dump_errs(const config_errors *e)
{
    for (int i = 0; i < e->count; i++)
        fprintf(stderr, "  %s: %s\n", e->items[i].key, e->items[i].reason);
}

/* Asserts an error for key exists and its reason contains `part`. */
static void expect_err(const config_errors *e, const char *key, const char *part)
{
    const config_error *x = find_err(e, key);
    if (!x)
        dump_errs(e);
    cr_assert(x != NULL, "no error reported for key \"%s\"", key);
    cr_assert(strstr(x->reason, part) != NULL, "reason for %s is \"%s\", expected it to mention \"%s\"",
              key, x->reason, part);
}

static int load(config_t *c, const char *yaml, config_errors *e)
{
    return config_load_yaml(c, yaml, strlen(yaml), e);
}

/* Sets key=value on a default config; returns config_set's result and the
 * resulting config in *out. */
static int set1(config_t *out, const char *key, const char *value, config_errors *e)
{
    config_defaults(out);
    memset(e, 0, sizeof *e);
    return config_set(out, key, value, e);
}

static void expect_set_ok(const char *key, const char *value)
{
    config_t c;
    config_errors e;
    int rc = set1(&c, key, value, &e);
    if (rc != 0)
        dump_errs(&e);
    cr_assert_eq(rc, 0, "%s=\"%s\" should be accepted", key, value);
    cr_assert_eq(e.total, 0);
}

/* Asserts the value is rejected, reported under key, and leaves c at its
 * default. */
static void expect_set_bad(const char *key, const char *value, const char *reason_part)
{
    config_t c, def;
    config_errors e;
    config_defaults(&def);
    int rc = set1(&c, key, value, &e);
    cr_assert_eq(rc, CAIRN_EINVAL, "%s=\"%s\" should be rejected", key, value);
    cr_assert_eq(e.total, 1, "%s=\"%s\": expected exactly one error, got %d", key, value, e.total);
    expect_err(&e, key, reason_part);
    cr_assert(memcmp(&c, &def, sizeof c) == 0, "%s=\"%s\" was rejected but changed the config", key, value);
}

static int64_t size_of(const char *s)
{
    int64_t v = -12345;
    cr_assert_eq(config_parse_size(s, &v), 0, "\"%s\" should parse as a size", s);
    return v;
}

static void expect_size_bad(const char *s)
{
    int64_t v = -12345;
    cr_assert_eq(config_parse_size(s, &v), CAIRN_EINVAL, "\"%s\" should not parse as a size", s);
    cr_assert_eq(v, -12345, "output written on failure for \"%s\"", s);
}

/* ---- defaults ------------------------------------------------------------- */

Test(config, defaults_are_documented_values_and_valid)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(config_validate(&c, &e), 0);
    cr_assert_eq(e.total, 0);
    cr_assert_str_eq(c.listen, "127.0.0.1:9000");
    cr_assert_str_eq(c.data_dir, "./data");
    cr_assert_str_eq(c.region, "us-east-1");
    cr_assert_str_eq(c.domain, "");
    cr_assert_str_eq(c.root_user, "");
    cr_assert_str_eq(c.root_password, "");
    cr_assert_str_eq(c.master_key, "");
    cr_assert_str_eq(c.log_level, "info");
    cr_assert_eq(c.max_object_size, 5 * GIB * 1024);
    cr_assert_eq(c.inline_max_size, 16 * KIB);
    cr_assert_eq(c.min_free_disk, 100 * MIB);
    cr_assert_eq(c.connection_limit, 1024);
    cr_assert_eq(c.connection_timeout, 60);
    cr_assert_eq(c.shutdown_timeout, 30);
    cr_assert_eq(c.health_timeout_ms, 2000);
    cr_assert_eq(c.max_header_bytes, 65536);
    cr_assert_eq(c.clock_skew, 900);
    cr_assert_eq(c.db_readers, 4);
    cr_assert_eq(c.fsync, true);
}

/* ---- sizes ------------------------------------------------------------------ */

Test(config, size_every_suffix)
{
    cr_assert_eq(size_of("0"), 0);
    cr_assert_eq(size_of("4096"), 4096);
    cr_assert_eq(size_of("1k"), KIB);
    cr_assert_eq(size_of("1K"), KIB);
    cr_assert_eq(size_of("3KiB"), 3 * KIB);
    cr_assert_eq(size_of("2M"), 2 * MIB);
    cr_assert_eq(size_of("64MiB"), 64 * MIB);
    cr_assert_eq(size_of("3G"), 3 * GIB);
    cr_assert_eq(size_of("5GiB"), 5 * GIB);
    cr_assert_eq(size_of("1T"), TIB);
    cr_assert_eq(size_of("7TiB"), 7 * TIB);
    cr_assert_eq(size_of("5 GiB"), 5 * GIB);
    cr_assert_eq(size_of("9223372036854775807"), INT64_MAX);
    cr_assert_eq(size_of("8388607TiB"), 8388607 * TIB);
}

Test(config, size_rejects_bad_input)
{
    expect_size_bad("");
    expect_size_bad("-1");
    expect_size_bad("-1k");
    expect_size_bad("10MBx");
    expect_size_bad("10MB");       /* decimal units are ambiguous: not accepted */
    expect_size_bad("10kb");
    expect_size_bad("99999999999TiB");
    expect_size_bad("8388608TiB"); /* exactly 2^63 */
    expect_size_bad("9223372036854775808");
    expect_size_bad("99999999999999999999999");
    expect_size_bad("1.5G");
    expect_size_bad(" 1");
    expect_size_bad("1 ");
    expect_size_bad("0x10");
    expect_size_bad("+5");
    expect_size_bad("k");
    expect_size_bad("GiB");
    cr_assert_eq(config_parse_size(NULL, &(int64_t){0}), CAIRN_EINVAL);
}

Test(config, size_option_ranges)
{
    expect_set_ok("max_object_size", "5GiB");
    expect_set_ok("max_object_size", "5TiB");
    expect_set_ok("max_object_size", "1");
    expect_set_bad("max_object_size", "5497558138881", "5TiB");
    expect_set_bad("max_object_size", "6T", "5TiB");
    expect_set_bad("max_object_size", "0", "from 1 to 5TiB");
    expect_set_bad("max_object_size", "-1", "negative");
    expect_set_bad("max_object_size", "", "empty");
    expect_set_bad("max_object_size", "10MBx", "MBx");
    expect_set_bad("max_object_size", "99999999999TiB", "too large");
    expect_set_ok("inline_max_size", "0");
    expect_set_ok("inline_max_size", "1MiB");
    expect_set_bad("inline_max_size", "1025KiB", "1MiB");
    expect_set_ok("min_free_disk", "0");
    expect_set_ok("min_free_disk", "2TiB");

    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "max_object_size", "64M", &e), 0);
    cr_assert_eq(c.max_object_size, 64 * MIB);
}

/* ---- durations ------------------------------------------------------------ */

Test(config, durations_take_units_and_a_bare_number_is_seconds)
{
    config_t c;
    config_errors e;
    struct { const char *text; int64_t ms; } ok[] = {
        {"30s", 30000}, {"200ms", 200}, {"2m", 120000}, {"1h", 3600000}, {"5", 5000}, {"10ms", 10},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cr_assert_eq(set1(&c, "events_pong_timeout", ok[i].text, &e), 0, "%s", ok[i].text);
        cr_assert_eq(c.events_pong_timeout, ok[i].ms, "%s", ok[i].text);
    }
    expect_set_bad("events_pong_timeout", "", "not a duration");
    expect_set_bad("events_pong_timeout", "-1s", "not a duration");
    expect_set_bad("events_pong_timeout", "1.5s", "unknown unit");
    expect_set_bad("events_pong_timeout", "3d", "unknown unit");
    expect_set_bad("events_pong_timeout", "5 s", "unknown unit");
    expect_set_bad("events_pong_timeout", "9ms", "from 10ms to 24h");
    expect_set_bad("events_pong_timeout", "25h", "from 10ms to 24h");
    expect_set_bad("events_pong_timeout", "99999999999999999h", "too large");
    expect_set_bad("events_pong_timeout", "9223372036854775807s", "too large");
    config_defaults(&c);
    cr_assert_eq(c.events_ping_interval, 30000);
    cr_assert_eq(c.events_pong_timeout, 60000);
}

Test(config, allowed_origins_are_scheme_host_port)
{
    expect_set_ok("events_allowed_origins", "");
    expect_set_ok("events_allowed_origins", "https://console.example.com");
    expect_set_ok("events_allowed_origins", "https://a.example.com, http://localhost:3000");
    expect_set_bad("events_allowed_origins", "console.example.com", "scheme://host");
    expect_set_bad("events_allowed_origins", "https://a.example.com/path", "scheme://host");
    expect_set_bad("events_allowed_origins", "https://", "scheme://host");
    expect_set_bad("events_allowed_origins", "https://a b", "scheme://host");
}

/* ---- integers ------------------------------------------------------------ */

Test(config, int_ranges_and_syntax)
{
    expect_set_ok("connection_limit", "1");
    expect_set_ok("connection_limit", "65536");
    expect_set_bad("connection_limit", "0", "from 1 to 65536");
    expect_set_bad("connection_limit", "65537", "from 1 to 65536");
    expect_set_bad("connection_limit", "-5", "from 1 to 65536");
    expect_set_bad("connection_limit", "abc", "not an integer");
    expect_set_bad("connection_limit", "12x", "not an integer");
    expect_set_bad("connection_limit", "1.5", "not an integer");
    expect_set_bad("connection_limit", "", "empty");
    expect_set_bad("connection_limit", "99999999999999999999", "out of range");
    expect_set_bad("connection_limit", "4294967297", "from 1 to 65536"); /* would wrap an int */
    expect_set_ok("db_readers", "64");
    expect_set_bad("db_readers", "65", "from 1 to 64");
    expect_set_bad("db_readers", "0", "from 1 to 64");
    expect_set_ok("max_header_bytes", "4096");
    expect_set_ok("max_header_bytes", "1048576");
    expect_set_bad("max_header_bytes", "4095", "4096");
    expect_set_ok("shutdown_timeout", "0");
    expect_set_bad("connection_timeout", "0", "from 1");

    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "clock_skew", "300", &e), 0);
    cr_assert_eq(c.clock_skew, 300);
    cr_assert_eq(set1(&c, "health_timeout_ms", "500", &e), 0);
    cr_assert_eq(c.health_timeout_ms, 500);
}

/* ---- booleans and enums --------------------------------------------------- */

Test(config, bools_every_spelling)
{
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "ON"};
    static const char *const no[] = {"false", "no", "off", "0", "False", "NO", "Off"};
    config_t c;
    config_errors e;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        cr_assert_eq(set1(&c, "fsync", no[i], &e), 0, "%s", no[i]);
        cr_assert_eq(c.fsync, false, "%s", no[i]);
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        cr_assert_eq(set1(&c, "fsync", "off", &e), 0);
        cr_assert_eq(config_set(&c, "fsync", yes[i], &e), 0, "%s", yes[i]);
        cr_assert_eq(c.fsync, true, "%s", yes[i]);
    }
    expect_set_bad("fsync", "maybe", "not a boolean");
    expect_set_bad("fsync", "", "not a boolean");
    expect_set_bad("fsync", "2", "not a boolean");
    expect_set_bad("fsync", "truee", "not a boolean");
}

Test(config, log_level_enum)
{
    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "log_level", "warn", &e), 0);
    cr_assert_str_eq(c.log_level, "warn");
    cr_assert_eq(set1(&c, "log_level", "DEBUG", &e), 0);
    cr_assert_str_eq(c.log_level, "debug", "stored in canonical lower case");
    expect_set_bad("log_level", "verbose", "debug, info, warn or error");
    expect_set_bad("log_level", "", "debug, info, warn or error");
    expect_set_bad("log_level", "inf", "debug");
}

/* ---- strings ------------------------------------------------------------------ */

Test(config, listen_accepts_host_port_forms)
{
    expect_set_ok("listen", "0.0.0.0:1");
    expect_set_ok("listen", "127.0.0.1:65535");
    expect_set_ok("listen", "localhost:9000");
    expect_set_ok("listen", "s3.example.com:443");
    expect_set_ok("listen", "[::1]:9000");
    expect_set_ok("listen", "[::]:80");
    expect_set_ok("listen", "[fe80::1:2:3]:9000");
    expect_set_ok("listen", "[::ffff:127.0.0.1]:9000");

    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "listen", "[::1]:9001", &e), 0);
    cr_assert_str_eq(c.listen, "[::1]:9001");
}

Test(config, listen_rejects_bad_forms)
{
    expect_set_bad("listen", "127.0.0.1:0", "1 to 65535");
    expect_set_bad("listen", "127.0.0.1:65536", "1 to 65535");
    expect_set_bad("listen", "127.0.0.1:99999999", "1 to 65535");
    expect_set_bad("listen", "127.0.0.1:", "1 to 65535");
    expect_set_bad("listen", "127.0.0.1:80x", "1 to 65535");
    expect_set_bad("listen", "127.0.0.1:-1", "1 to 65535");
    expect_set_bad("listen", "127.0.0.1", "HOST:PORT");
    expect_set_bad("listen", "", "HOST:PORT");
    expect_set_bad("listen", "::1:9000", "brackets");
    expect_set_bad("listen", "[::1]", "[::1]:9000");
    expect_set_bad("listen", "[::1]9000", "[::1]:9000");
    expect_set_bad("listen", "[::1:9000", "]");
    expect_set_bad("listen", "[zz::1]:80", "IPv6");
    expect_set_bad("listen", "[127.0.0.1]:80", "IPv6");
    expect_set_bad("listen", ":9000", "empty");
    expect_set_bad("listen", "256.1.1.1:80", "IPv4");
    expect_set_bad("listen", "ho st:80", "hostname");
    expect_set_bad("listen", "-host:80", "hostname");
}

Test(config, region_domain_master_key)
{
    expect_set_ok("region", "eu-west-1");
    expect_set_bad("region", "", "non-empty");
    expect_set_bad("region", "EU", "a-z");
    expect_set_bad("region", "eu_west", "a-z");

    expect_set_ok("domain", "");
    expect_set_ok("domain", "s3.example.com");
    expect_set_ok("domain", "localhost");
    expect_set_bad("domain", "-bad.example.com", "hostname");
    expect_set_bad("domain", "a..b", "hostname");
    expect_set_bad("domain", "has space", "hostname");
    expect_set_bad("domain", "s3.example.com:9000", "hostname");

    char key[80];
    memset(key, 'a', 64);
    key[64] = '\0';
    expect_set_ok("master_key", key);
    expect_set_ok("master_key", "");
    key[10] = 'F';
    expect_set_ok("master_key", key);
    key[10] = 'g';
    expect_set_bad("master_key", key, "64 hex");
    key[10] = 'a';
    key[63] = '\0';
    expect_set_bad("master_key", key, "64 hex");
}

Test(config, string_length_limits)
{
    char path[1100];
    memset(path, 'p', sizeof path);
    path[1023] = '\0';                    /* fills data_dir[1024] exactly */
    expect_set_ok("data_dir", path);
    path[1023] = 'p';
    path[1024] = '\0';
    expect_set_bad("data_dir", path, "too long");
    expect_set_bad("data_dir", "", "empty");
}

Test(config, credentials_rules_and_secrets_not_echoed)
{
    expect_set_ok("root_user", "admin");
    expect_set_bad("root_user", "ab", "at least 3");
    expect_set_ok("root_password", "s3cret-enough");
    expect_set_bad("root_password", "short", "at least 8");

    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "root_password", "hunter2 with spaces", &e), CAIRN_EINVAL);
    cr_assert_null(strstr(e.items[0].reason, "hunter2"), "reason echoes the secret: %s", e.items[0].reason);
    cr_assert_eq(set1(&c, "master_key", "deadbeefnothex", &e), CAIRN_EINVAL);
    cr_assert_null(strstr(e.items[0].reason, "deadbeef"), "reason echoes the key: %s", e.items[0].reason);
}

Test(config, set_unknown_key)
{
    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "no_such_option", "1", &e), CAIRN_EINVAL);
    expect_err(&e, "no_such_option", "unknown key");
    cr_assert_eq(set1(&c, "Max-Object-Size", "1", &e), CAIRN_EINVAL);
    expect_err(&e, "Max-Object-Size", "did you mean max_object_size");
    /* A NULL errs still gets the right return value. */
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "listen", "nope", NULL), CAIRN_EINVAL);
    cr_assert_eq(config_set(&c, "listen", "[::1]:1", NULL), 0);
    cr_assert_str_eq(c.listen, "[::1]:1");
}

/* ---- YAML ------------------------------------------------------------------------ */

Test(config, yaml_applies_every_type)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    const char *y =
        "# a comment\n"
        "listen: \"[::]:9100\"\n"
        "data_dir: /var/lib/cairn\n"
        "region: 'eu-central-1'\n"
        "domain: s3.local\n"
        "log_level: warn\n"
        "max_object_size: 1GiB\n"
        "inline_max_size: 0\n"
        "connection_limit: 10\n"
        "fsync: no\n";
    int rc = load(&c, y, &e);
    if (rc)
        dump_errs(&e);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(c.listen, "[::]:9100");
    cr_assert_str_eq(c.data_dir, "/var/lib/cairn");
    cr_assert_str_eq(c.region, "eu-central-1");
    cr_assert_str_eq(c.domain, "s3.local");
    cr_assert_str_eq(c.log_level, "warn");
    cr_assert_eq(c.max_object_size, GIB);
    cr_assert_eq(c.inline_max_size, 0);
    cr_assert_eq(c.connection_limit, 10);
    cr_assert_eq(c.fsync, false);
    cr_assert_eq(c.db_readers, 4, "untouched keys keep their defaults");
}

Test(config, yaml_empty_and_null)
{
    config_t c, def;
    config_errors e = {0};
    config_defaults(&def);
    static const char *const empties[] = {"", "\n", "# only a comment\n", "---\n", "---\n...\n", "{}\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        config_defaults(&c);
        cr_assert_eq(load(&c, empties[i], &e), 0, "input %zu", i);
        cr_assert(memcmp(&c, &def, sizeof c) == 0);
    }
    cr_assert_eq(e.total, 0);

    /* `domain:` and `domain: ~` mean empty; a quoted "null" is a real string. */
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "domain", "example.com", &e), 0);
    cr_assert_eq(load(&c, "domain:\n", &e), 0);
    cr_assert_str_eq(c.domain, "");
    cr_assert_eq(config_set(&c, "domain", "example.com", &e), 0);
    cr_assert_eq(load(&c, "domain: ~\n", &e), 0);
    cr_assert_str_eq(c.domain, "");
    cr_assert_eq(load(&c, "domain: \"null\"\n", &e), 0);
    cr_assert_str_eq(c.domain, "null");
    /* An empty value for a number is an error, not a silent zero. */
    cr_assert_eq(load(&c, "connection_limit:\n", &e), CAIRN_EINVAL);
    expect_err(&e, "connection_limit", "empty");
}

Test(config, yaml_unknown_key_reported_by_name)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "listen: 127.0.0.1:9001\nregoin: eu\n", &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 1);
    expect_err(&e, "regoin", "unknown key");
    expect_err(&e, "regoin", "did you mean region");
    expect_err(&e, "regoin", "line 2");
    cr_assert_str_eq(c.listen, "127.0.0.1:9001", "good keys still apply");
}

Test(config, yaml_collects_every_error)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    const char *y =
        "listen: \"::1:9000\"\n"
        "max_object_size: 10MBx\n"
        "fsync: maybe\n"
        "log_level: LOUD\n"
        "bogus: 1\n"
        "db_readers: 0\n"
        "region: us-west-2\n"
        "clock_skew: -1\n";
    cr_assert_eq(load(&c, y, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 7, "got %d errors", e.total);
    cr_assert_eq(e.count, 7);
    expect_err(&e, "listen", "brackets");
    expect_err(&e, "max_object_size", "MBx");
    expect_err(&e, "fsync", "boolean");
    expect_err(&e, "log_level", "debug");
    expect_err(&e, "bogus", "unknown key");
    expect_err(&e, "db_readers", "from 1 to 64");
    expect_err(&e, "clock_skew", "line 8");
    cr_assert_str_eq(c.region, "us-west-2", "a good key after bad ones still applies");
    cr_assert_eq(c.db_readers, 4, "a bad value leaves the field alone");
}

Test(config, yaml_error_list_caps_but_counts)
{
    buf_t y;
    buf_init(&y);
    for (int i = 0; i < 40; i++)
        buf_printf(&y, "unknown_%d: x\n", i);
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, y.data, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 40);
    cr_assert_eq(e.count, 32);
    cr_assert_str_eq(e.items[31].key, "unknown_31");
    buf_free(&y);
}

Test(config, yaml_syntax_error_has_line_and_column)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "region: eu-west-1\nlisten: a: b\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "line 2, column");
    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "listen: \"unterminated\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "line ");
    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "a: [1, 2\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "line ");
    memset(&e, 0, sizeof e);
    cr_assert_eq(config_load_yaml(&c, "a: \0b\n", 6, &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "line 1");
}

Test(config, yaml_non_scalar_values_and_keys)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    const char *y =
        "domain: [a, b]\n"
        "listen:\n"
        "  host: x\n"
        "  port: 1\n"
        "? [complex, key]\n"
        ": 1\n"
        "region: eu-north-1\n";
    cr_assert_eq(load(&c, y, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 3);
    expect_err(&e, "domain", "not a list");
    expect_err(&e, "listen", "not a mapping");
    expect_err(&e, "<yaml>", "keys must be plain");
    cr_assert_str_eq(c.region, "eu-north-1", "parsing resumes after skipped nodes");
    cr_assert_str_eq(c.listen, "127.0.0.1:9000");
}

Test(config, yaml_deep_nesting_stops_early)
{
    /* 100k levels would take libyaml minutes to scan; the walker gives up
     * at a fixed depth instead. */
    size_t n = 100000;
    char *y = malloc(n + 8);
    cr_assert(y);
    memcpy(y, "a: ", 3);
    memset(y + 3, '[', n);
    strcpy(y + 3 + n, "\n");
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, y, &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "nested more than");
    free(y);
}

Test(config, yaml_root_must_be_mapping)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "- listen\n- data_dir\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "mapping");
    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "just words\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "mapping");
    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "region: eu-west-1\n---\nregion: eu-west-2\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "one YAML document");
    cr_assert_str_eq(c.region, "eu-west-1");
}

Test(config, yaml_duplicate_key)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "region: eu-west-1\nlisten: 127.0.0.1:1\nregion: eu-west-2\n", &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 1);
    expect_err(&e, "region", "duplicate key");
    expect_err(&e, "region", "line 1");
    cr_assert_str_eq(c.region, "eu-west-1", "the first occurrence wins");
}

Test(config, yaml_alias_is_rejected)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "region: &r eu-west-1\ndomain: *r\n", &e), CAIRN_EINVAL);
    expect_err(&e, "domain", "alias");
    cr_assert_str_eq(c.region, "eu-west-1");
}

Test(config, yaml_hostile_key_is_sanitised)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "\"\\e[31mred\": 1\n", &e), CAIRN_EINVAL);
    cr_assert_eq(e.count, 1);
    cr_assert_str_eq(e.items[0].key, "?[31mred");
    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "region: \"eu\\0x\"\n", &e), CAIRN_EINVAL);
    expect_err(&e, "region", "NUL");
}

/* ---- files ---------------------------------------------------------------------- */

Test(config, load_file_and_missing_file)
{
    char path[] = "/tmp/cairn-test-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *y = "region: ap-south-1\nfsync: off\n";
    cr_assert_eq(write(fd, y, strlen(y)), (ssize_t)strlen(y));
    close(fd);

    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(config_load_file(&c, path, &e), 0);
    cr_assert_str_eq(c.region, "ap-south-1");
    cr_assert_eq(c.fsync, false);
    unlink(path);

    cr_assert_eq(config_load_file(&c, path, &e), CAIRN_EINVAL);
    expect_err(&e, "<file>", "No such file");
    memset(&e, 0, sizeof e);
    cr_assert_eq(config_load_file(&c, "/tmp", &e), CAIRN_EINVAL);
    expect_err(&e, "<file>", "not a regular file");
}

/* ---- environment and precedence ------------------------------------------------ */

Test(config, env_applies_and_rejects_unknown)
{
    char *env[] = {
        "PATH=/usr/bin",
        "CAIRN_LISTEN=[::1]:9500",
        "CAIRN_ROOT_USER=admin",
        "CAIRN_ROOT_PASSWORD=correct-horse",
        "CAIRN_MAX_OBJECT_SIZE=1GiB",
        "CAIRN_FSYNC=off",
        "CAIRN_BIN=/x/cairn",
        "CAIRN_TEST_SEED=3",
        "CAIRN_BENCH_SECONDS=5",
        "CAIRN_FOO=bar",
        "CAIRN_DB_READERS=100",
        "CAIRN_=x",
        "NOT_CAIRN_REGION=x",
        NULL,
    };
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(config_load_env(&c, env, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 3, "got %d errors", e.total);
    expect_err(&e, "CAIRN_FOO", "unknown");
    expect_err(&e, "CAIRN_", "unknown");
    expect_err(&e, "CAIRN_DB_READERS", "from 1 to 64");
    cr_assert_str_eq(c.listen, "[::1]:9500");
    cr_assert_str_eq(c.root_user, "admin");
    cr_assert_str_eq(c.root_password, "correct-horse");
    cr_assert_eq(c.max_object_size, GIB);
    cr_assert_eq(c.fsync, false);
    cr_assert_eq(c.db_readers, 4);
    cr_assert_str_eq(c.region, "us-east-1");

    char *clean[] = {"CAIRN_REGION=eu-west-3", "CAIRN_DOMAIN=", NULL};
    memset(&e, 0, sizeof e);
    cr_assert_eq(config_load_env(&c, clean, &e), 0);
    cr_assert_str_eq(c.region, "eu-west-3");
    cr_assert_eq(config_load_env(&c, NULL, &e), 0);
}

Test(config, precedence_defaults_file_env_flags)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    const char *y = "listen: 127.0.0.1:7000\nregion: file-region\ndb_readers: 8\nclock_skew: 60\n";
    cr_assert_eq(load(&c, y, &e), 0);
    char *env[] = {"CAIRN_REGION=env-region", "CAIRN_DB_READERS=16", NULL};
    cr_assert_eq(config_load_env(&c, env, &e), 0);
    cr_assert_eq(config_set(&c, "db_readers", "32", &e), 0);
    cr_assert_eq(config_validate(&c, &e), 0);
    cr_assert_eq(e.total, 0);

    cr_assert_eq(c.connection_limit, 1024, "default kept");
    cr_assert_str_eq(c.listen, "127.0.0.1:7000", "file over default");
    cr_assert_eq(c.clock_skew, 60, "file over default");
    cr_assert_str_eq(c.region, "env-region", "env over file");
    cr_assert_eq(c.db_readers, 32, "flag over env over file");
}

/* ---- cross-field validation ----------------------------------------------------- */

Test(config, validate_cross_field_and_hand_edited)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "root_user", "admin", &e), 0);
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "root_password", "root_user");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "root_password", "long-enough", &e), 0);
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "root_user", "root_password");

    /* Fields written directly, bypassing the loaders, are still checked. */
    memset(&e, 0, sizeof e);
    config_defaults(&c);
    c.connection_limit = 0;
    c.max_object_size = 6 * GIB * 1024;
    strcpy(c.log_level, "loud");
    strcpy(c.listen, "nowhere");
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 4);
    expect_err(&e, "connection_limit", "from 1");
    expect_err(&e, "max_object_size", "5TiB");
    expect_err(&e, "log_level", "debug");
    expect_err(&e, "listen", "HOST:PORT");
}

/* The PostgreSQL pool's settings: defaults match meta_pg_options_default's,
 * each range is enforced, and a minimum above the maximum is refused. */
Test(config, db_pool_options)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(c.db_pool_min, 1);
    cr_assert_eq(c.db_pool_max, 8);
    cr_assert_eq(c.db_acquire_timeout_ms, 2000);
    cr_assert_eq(c.db_health_check_ms, 1000);
    cr_assert_eq(c.db_idle_timeout_ms, 60000);
    cr_assert_eq(c.db_max_lifetime_ms, 1800000);
    cr_assert_eq(c.db_statement_timeout_ms, 5000);
    cr_assert_eq(c.db_long_hold_ms, 1000);
    cr_assert_eq(config_validate(&c, &e), 0);

    expect_set_ok("db_pool_min", "0");
    expect_set_ok("db_pool_max", "1000");
    expect_set_bad("db_pool_max", "0", "from 1 to 1000");
    expect_set_bad("db_pool_min", "-1", "from 0 to 1000");
    expect_set_ok("db_acquire_timeout_ms", "0");
    expect_set_bad("db_acquire_timeout_ms", "600001", "from 0 to 600000");
    expect_set_bad("db_statement_timeout_ms", "-5", "from 0");
    expect_set_ok("db_long_hold_ms", "0");

    char *envp[] = {"CAIRN_DB_POOL_MIN=9", "CAIRN_DB_POOL_MAX=4", NULL};
    config_defaults(&c);
    cr_assert_eq(config_load_env(&c, envp, &e), 0);
    cr_assert_eq(c.db_pool_min, 9);
    cr_assert_eq(c.db_pool_max, 4);
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 1);
    expect_err(&e, "db_pool_min", "at most db_pool_max (4)");
}

/* ---- describe ---------------------------------------------------------------------- */

/* Splits a Markdown row "| a | b | c |" into trimmed cells (in place). */
static int md_cells(char *row, char **cells, int max)
{
    int n = 0;
    char *p = strchr(row, '|');
    while (p && n < max) {
        char *start = p + 1;
        char *end = start;
        while (*end && !(*end == '|' && end[-1] != '\\'))
            end++;
        if (!*end)
            break;
        *end = '\0';
        while (*start == ' ')
            start++;
        for (char *t = end - 1; t >= start && *t == ' '; t--)
            *t = '\0';
        cells[n++] = start;
        p = end;
    }
    return n;
}

static void strip_backticks(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '`' && s[n - 1] == '`') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
}

Test(config, describe_table_is_consistent)
{
    buf_t out;
    buf_init(&out);
    config_describe(&out);
    cr_assert(!out.oom);
    cr_assert(strncmp(out.data, "| Key | Environment variable |", 30) == 0);

    config_t from_table, def;
    config_defaults(&def);
    memset(&from_table, 0, sizeof from_table);
    config_errors e = {0};
    int rows = 0;
    char *save = NULL;
    for (char *line = strtok_r(out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *cells[8];
        int n = md_cells(line, cells, 8);
        cr_assert_eq(n, 5, "row has %d cells: %s", n, line);
        if (strcmp(cells[0], "Key") == 0 || strcmp(cells[0], "---") == 0)
            continue;
        rows++;
        strip_backticks(cells[0]);
        strip_backticks(cells[1]);
        strip_backticks(cells[3]);
        char env[80];
        snprintf(env, sizeof env, "CAIRN_%s", cells[0]);
        for (char *p = env; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        cr_assert_str_eq(cells[1], env, "env var of %s", cells[0]);
        cr_assert(strlen(cells[4]) > 10, "%s has no description", cells[0]);
        const char *dflt = strcmp(cells[3], "(empty)") == 0 ? "" : cells[3];
        cr_assert_eq(config_set(&from_table, cells[0], dflt, &e), 0, "default of %s: %s", cells[0],
                     e.count ? e.items[0].reason : "");
        /* The env var named in the table is the one the loader reads. */
        char assign[1200];
        snprintf(assign, sizeof assign, "%s=%s", env, dflt);
        char *envp[] = {assign, NULL};
        config_t tmp;
        config_defaults(&tmp);
        cr_assert_eq(config_load_env(&tmp, envp, &e), 0, "%s", assign);
    }
    cr_assert_eq(rows, 117, "one row per config_t field");
    cr_assert(memcmp(&from_table, &def, sizeof def) == 0,
              "defaults in the describe table differ from config_defaults()");
    buf_free(&out);
}

/* ---- rate limiting ------------------------------------------------------------------------ */

Test(config, trusted_proxies_are_addresses_and_blocks)
{
    expect_set_ok("ratelimit_trusted_proxies", "");
    expect_set_ok("ratelimit_trusted_proxies", "10.0.0.0/8, 192.168.1.7,::1, fd00::/8");
    expect_set_bad("ratelimit_trusted_proxies", "10.0.0.0/33", "not '10.0.0.0/33'");
    expect_set_bad("ratelimit_trusted_proxies", "10.0.0.1,proxy.local", "not 'proxy.local'");
    expect_set_bad("ratelimit_trusted_proxies", "::1/129", "CIDR block");
    expect_set_bad("ratelimit_trusted_proxies", "10.0.0.1/", "CIDR block");
    expect_set_bad("ratelimit_trusted_proxies", "10.0.0.1/+8", "CIDR block");
    expect_set_ok("ratelimit_key_bytes_per_s", "10MiB");
    expect_set_bad("ratelimit_burst_s", "0", "");
}

Test(config, addresses_in_lists)
{
    cr_assert_eq(net_addr_in_list("10.0.0.0/8", "10.200.3.4", NULL), 1);
    cr_assert_eq(net_addr_in_list("10.0.0.0/8", "11.0.0.1", NULL), 0);
    cr_assert_eq(net_addr_in_list("192.168.1.7", "192.168.1.7", NULL), 1);
    cr_assert_eq(net_addr_in_list("192.168.1.7", "192.168.1.8", NULL), 0);
    cr_assert_eq(net_addr_in_list("0.0.0.0/0", "8.8.8.8", NULL), 1);
    cr_assert_eq(net_addr_in_list("10.0.0.0/8", "::ffff:10.1.1.1", NULL), 1, "IPv4-mapped IPv6 is its IPv4");
    cr_assert_eq(net_addr_in_list("::ffff:10.0.0.0/104", "10.9.9.9", NULL), 1);
    cr_assert_eq(net_addr_in_list("fd00::/8", "fd12::1", NULL), 1);
    cr_assert_eq(net_addr_in_list("fd00::/8", "fe80::1", NULL), 0);
    cr_assert_eq(net_addr_in_list("::1", "::1", NULL), 1);
    cr_assert_eq(net_addr_in_list("::1", "127.0.0.1", NULL), 0);
    cr_assert_eq(net_addr_in_list("1.2.3.4, 5.6.7.8", "5.6.7.8", NULL), 1);
    cr_assert_eq(net_addr_in_list("", "5.6.7.8", NULL), 0);
    cr_assert_eq(net_addr_in_list("10.0.0.0/8", "not an address", NULL), 0);
    cr_assert_eq(net_addr_in_list("10.0.0.0/8", NULL, NULL), 0);
    const char *bad = NULL;
    cr_assert_eq(net_addr_in_list("1.2.3.4,nope,5.6.7.8", "1.2.3.4", &bad), -1, "a bad element fails the list");
    cr_assert(bad && !strncmp(bad, "nope", 4));
}

Test(config, client_address_through_trusted_proxies)
{
    char out[64];
    s3_client_address("10.0.0.1", "203.0.113.9", "", out, sizeof out);
    cr_assert_str_eq(out, "10.0.0.1", "no trusted proxies: the peer");
    s3_client_address("10.0.0.1", "203.0.113.9", "192.168.0.0/16", out, sizeof out);
    cr_assert_str_eq(out, "10.0.0.1", "an untrusted peer's header is ignored");
    s3_client_address("10.0.0.1", "203.0.113.9", "10.0.0.0/8", out, sizeof out);
    cr_assert_str_eq(out, "203.0.113.9");
    s3_client_address("10.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.0.2", "10.0.0.0/8", out, sizeof out);
    cr_assert_str_eq(out, "203.0.113.9", "the nearest hop that is not a trusted proxy");
    s3_client_address("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.0/8", out, sizeof out);
    cr_assert_str_eq(out, "10.0.0.3", "all trusted: the farthest");
    s3_client_address("10.0.0.1", "garbage, 10.0.0.2", "10.0.0.0/8", out, sizeof out);
    cr_assert_str_eq(out, "10.0.0.2", "a malformed hop ends the walk at the last good one");
    s3_client_address("10.0.0.1", "", "10.0.0.0/8", out, sizeof out);
    cr_assert_str_eq(out, "10.0.0.1");
    s3_client_address("10.0.0.1", NULL, "10.0.0.0/8", out, sizeof out);
    cr_assert_str_eq(out, "10.0.0.1");
}

/* ---- cluster options: nodes, drives, secrets ---------------------------------------- */

Test(config, nodes_list_forms_and_limits)
{
    expect_set_ok("nodes", "");
    expect_set_ok("nodes", "http://node1:9100");
    expect_set_ok("nodes", "https://n1.example:443,http://10.0.0.2:9100");
    expect_set_bad("nodes", "ftp://node1:9100", "node 1 is not http(s)://HOST:PORT");
    expect_set_bad("nodes", "http://node1:9100,http://nodeport", "node 2 is not");
    expect_set_bad("nodes", "http://a:", "node 1 is not");    /* shorter than any real URL */
    expect_set_ok("nodes", "http://a:1");
    expect_set_bad("nodes", ",http://node1:9100", "node 1 is not");

    buf_t b;
    buf_init(&b);
    for (int i = 0; i < 64; i++)
        buf_printf(&b, "%shttp://n%02d:9", i ? "," : "", i);
    expect_set_ok("nodes", b.data);
    buf_puts(&b, ",http://n64:9");
    expect_set_bad("nodes", b.data, "at most 64 nodes");
    buf_free(&b);
}

Test(config, drives_list_forms_and_limits)
{
    expect_set_ok("drives", "/d0");
    expect_set_ok("drives", "/d0,/d1,/d2");
    expect_set_bad("drives", "/d0,,/d2", "empty directory in the list (drive 2)");
    expect_set_bad("drives", ",/d0", "(drive 1)");
    expect_set_bad("drives", "/d0,", "(drive 2)");

    buf_t b;
    buf_init(&b);
    for (int i = 0; i < 64; i++)
        buf_printf(&b, "%s/d%d", i ? "," : "", i);
    expect_set_ok("drives", b.data);
    buf_puts(&b, ",/d64");
    expect_set_bad("drives", b.data, "at most 64 drives");
    buf_free(&b);
}

Test(config, cluster_secret_rules_and_not_echoed)
{
    expect_set_ok("cluster_secret", "");
    expect_set_ok("cluster_secret", "0123456789abcdef");
    expect_set_bad("cluster_secret", "short", "at least 16");
    expect_set_bad("cluster_secret", "0123456789 abcdef", "printable ASCII");
    expect_set_bad("cluster_secret", "0123456789abcdef\x7f", "printable ASCII");
    expect_set_bad("cluster_secret", "0123456789abcdef\t", "printable ASCII");
    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "cluster_secret", "topsecret-value with space", &e), CAIRN_EINVAL);
    cr_assert_null(strstr(e.items[0].reason, "topsecret"), "reason echoes the secret: %s", e.items[0].reason);
}

/* ---- hostnames and listen hosts --------------------------------------------------- */

Test(config, hostname_label_rules)
{
    expect_set_ok("domain", "a-b.c-d.example");
    expect_set_ok("domain", "x1.y2");
    expect_set_bad("domain", ".example.com", "hostname");
    expect_set_bad("domain", "a-.example.com", "hostname");
    expect_set_bad("domain", "example-", "hostname");
    expect_set_bad("domain", "example.", "hostname");
    expect_set_bad("domain", "exa_mple.com", "hostname");

    char label[80];
    memset(label, 'l', 63);
    strcpy(label + 63, ".com");
    expect_set_ok("domain", label);            /* a 63-byte label is the most DNS allows */
    memset(label, 'l', 64);
    strcpy(label + 64, ".com");
    expect_set_bad("domain", label, "hostname");

    char name[300];
    size_t n = 0;
    while (n < 250) {                          /* 25 labels of 9 + dot = 250 */
        memcpy(name + n, "abcdefghi.", 10);
        n += 10;
    }
    memcpy(name + n, "abc", 4);                /* 253 bytes: the longest name */
    expect_set_ok("domain", name);
    memcpy(name + n, "abcd", 5);               /* 254 */
    expect_set_bad("domain", name, "hostname");
}

Test(config, listen_host_length_limits)
{
    char v[300];
    memset(v, 'h', 100);
    strcpy(v + 100, ":9000");                  /* a 100-byte label: not a hostname */
    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, "listen", v, &e), CAIRN_EINVAL);
    expect_err(&e, "listen", "is not a hostname or IP address");
    /* The message quotes at most 64 bytes of what was typed. */
    const char *q = strchr(e.items[0].reason, '"');
    cr_assert_not_null(q);
    cr_assert_eq(strspn(q + 1, "h"), 64, "%s", e.items[0].reason);
    cr_assert_eq(q[65], '"', "%s", e.items[0].reason);

    memset(v, 'h', 121);
    v[60] = '.';
    strcpy(v + 121, ":9000");                  /* 121-byte host of two labels: 126 bytes in all */
    expect_set_ok("listen", v);
    memset(v, 'h', 127);
    v[60] = '.';
    strcpy(v + 127, ":1");                     /* 129 bytes: more than listen[128] holds */
    expect_set_bad("listen", v, "too long");

    char six[120] = "[";
    memset(six + 1, '1', 70);
    strcpy(six + 71, "]:9000");
    expect_set_bad("listen", six, "IPv6 address too long");
}

/* ---- hand-edited configs and cross-field rules -------------------------------------- */

Test(config, validate_catches_unterminated_strings)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    memset(c.region, 'r', sizeof c.region);   /* no NUL anywhere in the field */
    memset(c.log_level, 'i', sizeof c.log_level);
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 2, "got %d", e.total);
    expect_err(&e, "region", "not NUL-terminated");
    expect_err(&e, "log_level", "must be debug, info, warn or error");
}

Test(config, validate_tls_pair_and_erasure_geometry)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    strcpy(c.tls_cert, "/etc/cert.pem");
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "tls_key", "go together");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    strcpy(c.tls_key, "/etc/key.pem");
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "tls_cert", "go together");

    memset(&e, 0, sizeof e);
    strcpy(c.tls_cert, "/etc/cert.pem");
    cr_assert_eq(config_validate(&c, &e), 0, "both set is fine");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    c.ec_parity = 2;
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 1);
    expect_err(&e, "ec_parity", "set ec_data too");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    c.ec_data = 12;
    c.ec_parity = 6;
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "ec_data", "at most 16");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "drives", "/d0,/d1,/d2,/d3,/d4", &e), 0);
    cr_assert_eq(config_set(&c, "ec_data", "4", &e), 0);
    cr_assert_eq(config_set(&c, "ec_parity", "2", &e), 0);
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "ec_data", "ec_data + ec_parity (6) exceeds the number of drives (5)");
    memset(&e, 0, sizeof e);
    cr_assert_eq(config_set(&c, "ec_parity", "1", &e), 0);
    cr_assert_eq(config_validate(&c, &e), 0, "4+1 fits five drives");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    c.ec_data = 1;
    cr_assert_eq(config_validate(&c, &e), 0, "1+0 fits the single default drive");
    c.ec_parity = 1;
    cr_assert_eq(config_validate(&c, &e), CAIRN_EINVAL);
    expect_err(&e, "ec_data", "number of drives (1)");
}

/* ---- unknown keys: long and hostile ---------------------------------------------------- */

Test(config, unknown_long_key_is_truncated_and_gets_no_suggestion)
{
    char key[120];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    config_t c;
    config_errors e;
    cr_assert_eq(set1(&c, key, "1", &e), CAIRN_EINVAL);
    cr_assert_eq(e.count, 1);
    cr_assert_eq(strlen(e.items[0].key), sizeof e.items[0].key - 1, "the key is cut to fit");
    cr_assert_eq(strspn(e.items[0].key, "k"), sizeof e.items[0].key - 1);
    cr_assert(strstr(e.items[0].reason, "unknown key (`cairn config describe` lists them)") != NULL, "%s",
              e.items[0].reason);
}

/* ---- YAML: more malformed shapes ----------------------------------------------------- */

Test(config, yaml_reader_error_is_placed_by_line)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    const char y[] = "region: eu-west-1\nlisten: \x01\n";
    cr_assert_eq(config_load_yaml(&c, y, sizeof y - 1, &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "line 2, column");
}

Test(config, yaml_mapping_and_alias_keys_are_refused)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "? {a: 1}\n: [x]\nregion: eu-west-2\n", &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 1);
    expect_err(&e, "<yaml>", "keys must be plain words, not a mapping");
    cr_assert_str_eq(c.region, "eu-west-2", "the walk goes on after the bad pair");

    memset(&e, 0, sizeof e);
    config_defaults(&c);
    cr_assert_eq(load(&c, "region: &k eu-west-1\n*k : 1\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "not an alias");
    cr_assert_str_eq(c.region, "eu-west-1");
}

Test(config, yaml_syntax_errors_inside_bad_keys_and_values)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(load(&c, "? [a, b\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "keys must be plain words, not a list");
    expect_err(&e, "<yaml>", "line ");
    cr_assert_eq(e.total, 2, "the bad key and the syntax error inside it");

    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "? [a]\n: {b: [c\n", &e), CAIRN_EINVAL);
    cr_assert_eq(e.total, 2);
    expect_err(&e, "<yaml>", "keys must be plain words");

    memset(&e, 0, sizeof e);
    cr_assert_eq(load(&c, "--- ]\n", &e), CAIRN_EINVAL);
    expect_err(&e, "<yaml>", "line 1");
}

/* ---- files: limits ------------------------------------------------------------------- */

Test(config, load_file_refuses_files_over_one_mib)
{
    char path[] = "/tmp/cairn-test-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(ftruncate(fd, 1024 * 1024 + 1), 0);
    close(fd);
    config_t c, def;
    config_errors e = {0};
    config_defaults(&c);
    config_defaults(&def);
    cr_assert_eq(config_load_file(&c, path, &e), CAIRN_EINVAL);
    expect_err(&e, "<file>", "file is larger than 1 MiB");
    cr_assert(memcmp(&c, &def, sizeof c) == 0);
    unlink(path);

    /* Exactly 1 MiB of comment is read and is an empty config. */
    strcpy(path, "/tmp/cairn-test-config-XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    char *big = malloc(1024 * 1024);
    cr_assert_not_null(big);
    memset(big, ' ', 1024 * 1024);
    big[0] = '#';
    big[1024 * 1024 - 1] = '\n';
    cr_assert_eq(write(fd, big, 1024 * 1024), 1024 * 1024);
    close(fd);
    free(big);
    memset(&e, 0, sizeof e);
    cr_assert_eq(config_load_file(&c, path, &e), 0);
    cr_assert_eq(e.total, 0);
    unlink(path);
}

Test(config, env_entries_without_equals_are_ignored)
{
    char *env[] = {"CAIRN_REGION", "CAIRN_DOMAIN=s3.test", NULL};
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    cr_assert_eq(config_load_env(&c, env, &e), 0);
    cr_assert_eq(e.total, 0);
    cr_assert_str_eq(c.region, "us-east-1");
    cr_assert_str_eq(c.domain, "s3.test");
}
