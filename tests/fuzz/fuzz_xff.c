/*
 * fuzz_xff.c — libFuzzer target for the client address the rate limits
 * count (s3_client_address, s3/limits.c): an X-Forwarded-For header is a
 * client's input, and the trusted-proxy list an operator's
 * (net_addr_in_list, core/util.c).
 *
 * The input is three NUL-separated parts: the trusted list, the peer
 * address and the header.  Whatever they are, the answer is the peer
 * itself or an address (IPv4 or IPv6 text) that occurs in the header, and
 * nothing reads past its buffers.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "s3/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 3);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = s[size + 1] = s[size + 2] = '\0';
    const char *trusted = s, *peer = trusted + strlen(trusted) + 1;
    if (peer > s + size) peer = s + size + 1;
    const char *xff = peer + strlen(peer) + 1;
    if (xff > s + size + 1) xff = s + size + 2;
    net_addr_in_list(trusted, peer, NULL);
    char out[64];
    s3_client_address(peer, xff, trusted, out, sizeof out);
    if (strncmp(out, peer, sizeof out - 1) != 0) {
        unsigned char a[16];
        if (inet_pton(AF_INET, out, a) != 1 && inet_pton(AF_INET6, out, a) != 1) abort();
        if (!strstr(xff, out)) abort();
    }
    free(s);
    return 0;
}
