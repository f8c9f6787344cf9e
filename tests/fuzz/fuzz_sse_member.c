/*
 * fuzz_sse_member.c — libFuzzer target for the stored description of a
 * sealed version (crypt_sse_parse, crypt.h): the cairn-sse member of a
 * version's headers, read on every GET of a sealed object from a database
 * whose rows an attacker with write access to it might shape.
 *
 * A description that parses has a valid mode, a key id, a version of at
 * least 1 and a MAC exactly when it is SSE-C, and formats back to the very
 * bytes it was parsed from.  One that does not parse leaves nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "crypt/crypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    crypt_sse d;
    int rc = crypt_sse_parse(s, &d);
    if (rc != 0 && rc != CAIRN_EINVAL) abort();
    if (rc == 0) {
        if (d.mode != 'S' && d.mode != 'K' && d.mode != 'C') abort();
        if (!d.key_id[0] || d.key_version < 1 || (d.mode == 'C') != d.has_mac) abort();
        char back[CRYPT_SSE_MAX];
        if (crypt_sse_format(&d, back, sizeof back) != 0) abort();
        /* hex digits may come back in another case, and a version with
         * leading zeros or a sign without them: parse the output again */
        crypt_sse again;
        if (crypt_sse_parse(back, &again) != 0 || memcmp(&d, &again, sizeof d) != 0) abort();
    }
    free(s);
    return 0;
}
