/*
 * fuzz_meta_url.c — libFuzzer target for meta_url_parse, the parser of
 * metadata_url (config files, the environment and flags).
 *
 * The input is the URL.  Whatever it is, the parse must not crash, and what
 * it accepts must hold together: a SQLite path is absolute (or the default
 * under the data directory), NUL-free and bounded; and a SQLite path written
 * back as a URL, every byte percent-escaped, parses to the same path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096 || memchr(data, '\0', size)) return 0;
    char *url = malloc(size + 1);
    if (!url) abort();
    memcpy(url, data, size);
    url[size] = '\0';
    meta_url u;
    char why[256];
    int rc = meta_url_parse(url, "/data", &u, why, sizeof why);
    if (rc != 0 && rc != CAIRN_EINVAL) abort();
    if (rc != 0 && !why[0]) abort(); /* a refusal always says why */
    if (rc == 0 && u.backend == META_BACKEND_SQLITE) {
        size_t n = strnlen(u.path, sizeof u.path);
        if (n == 0 || n >= sizeof u.path || u.path[0] != '/') abort();
        char *again = malloc(9 + 3 * n + 1);
        if (!again) abort();
        size_t k = (size_t)sprintf(again, "sqlite://");
        for (size_t i = 0; i < n; i++)
            k += (size_t)sprintf(again + k, i == 0 ? "%c" : "%%%02X", i == 0 ? '/' : (unsigned char)u.path[i]);
        meta_url v;
        if (meta_url_parse(again, "/data", &v, NULL, 0) != 0 || strcmp(v.path, u.path) != 0) abort();
        free(again);
    }
    if (rc == 0 && u.backend == META_BACKEND_POSTGRES && strcmp(u.conninfo, url) != 0) abort();
    free(url);
    return 0;
}
