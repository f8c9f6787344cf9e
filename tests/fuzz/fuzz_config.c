/*
 * fuzz_config.c — libFuzzer target for the configuration parsers.
 *
 * The input is fed whole to config_load_yaml() (a config file is operator
 * input, but `cairn config check` is exactly the tool run on files of
 * unknown quality), then to config_parse_size() and config_set() as a
 * NUL-terminated string.  Beyond "no crash, no leak, no UB" the target
 * checks the loaders' contracts: the return value agrees with the error
 * list, the list never overflows, every reported key and reason is
 * printable and terminated, and whatever was accepted still validates.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static void check_errors(const config_errors *e, int rc)
{
    if (e->count < 0 || e->count > 32 || e->total < e->count)
        abort();
    if ((rc == 0) != (e->total == 0))
        abort();
    for (int i = 0; i < e->count; i++) {
        const config_error *x = &e->items[i];
        if (!memchr(x->key, '\0', sizeof x->key) || !memchr(x->reason, '\0', sizeof x->reason))
            abort();
        for (const char *p = x->reason; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t c;
    config_errors e = {0};
    config_defaults(&c);
    int rc = config_load_yaml(&c, (const char *)data, size, &e);
    check_errors(&e, rc);
    /* Rejected values never reach c, so field checks must all still pass
     * (only the cross-field root_user/root_password pairing may not). */
    config_errors v = {0};
    if (config_validate(&c, &v) != 0)
        for (int i = 0; i < v.count; i++)
            if (strcmp(v.items[i].key, "root_user") != 0 && strcmp(v.items[i].key, "root_password") != 0)
                abort();

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t n = -1;
    if (config_parse_size(s, &n) == 0 && n < 0)
        abort();
    memset(&e, 0, sizeof e);
    config_defaults(&c);
    check_errors(&e, config_set(&c, "listen", s, &e));
    memset(&e, 0, sizeof e);
    check_errors(&e, config_set(&c, "domain", s, &e));
    free(s);
    return 0;
}
