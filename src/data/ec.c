/*
 * ec.c — Reed-Solomon erasure coding over GF(2^8) with ISA-L.
 *
 * A codec for (k, m) holds the (k+m) x k Cauchy encoding matrix (any k rows
 * of it are invertible, so any k surviving shards rebuild the rest) and the
 * expanded tables ISA-L's SIMD kernels use for the m parity rows.  Decoding
 * picks k surviving rows, inverts that k x k submatrix, and multiplies the
 * survivors by the rows of the inverse that give the lost data shards; lost
 * parity shards are then re-encoded from the full data.  Codecs are immutable
 * after creation and shared by all threads; decode tables are built per call
 * (an inversion of at most 16 x 16 is microseconds).
 */
#include "data/ec.h"

#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>

struct ec_codec {
    int k, m;
    unsigned char *matrix;      /* (k+m) x k */
    unsigned char *enc_tables;  /* 32 * k * m */
};

int ec_codec_new(int k, int m, ec_codec **out) {
    if (k < 1 || m < 0 || k + m > EC_MAX_SHARDS) return CAIRN_EINVAL;
    ec_codec *c = calloc(1, sizeof *c);
    if (!c) return CAIRN_ENOMEM;
    c->k = k;
    c->m = m;
    c->matrix = malloc((size_t)(k + m) * (size_t)k);
    c->enc_tables = malloc(32 * (size_t)k * (size_t)(m ? m : 1));
    if (!c->matrix || !c->enc_tables) {
        ec_codec_free(c);
        return CAIRN_ENOMEM;
    }
    gf_gen_cauchy1_matrix(c->matrix, k + m, k);
    if (m > 0) ec_init_tables(k, m, c->matrix + (size_t)k * (size_t)k, c->enc_tables);
    *out = c;
    return 0;
}

void ec_codec_free(ec_codec *c) {
    if (!c) return;
    free(c->matrix);
    free(c->enc_tables);
    free(c);
}

int ec_k(const ec_codec *c) { return c->k; }
int ec_m(const ec_codec *c) { return c->m; }

void ec_encode(const ec_codec *c, size_t len, unsigned char **data, unsigned char **parity) {
    if (c->m == 0 || len == 0) return;
    ec_encode_data((int)len, c->k, c->m, c->enc_tables, data, parity);
}

int ec_reconstruct(const ec_codec *c, size_t len, unsigned char **shards, const bool *present) {
    int k = c->k, n = c->k + c->m;
    int survivors[EC_MAX_SHARDS], ns = 0, lost_data[EC_MAX_SHARDS], nld = 0;
    bool any_parity_lost = false;
    for (int i = 0; i < n; i++) {
        if (present[i]) {
            if (ns < k) survivors[ns++] = i;
        } else if (i < k) {
            lost_data[nld++] = i;
        } else {
            any_parity_lost = true;
        }
    }
    if (ns < k) return CAIRN_EIO;
    if (len == 0) return 0;
    if (nld > 0) {
        unsigned char sub[EC_MAX_SHARDS * EC_MAX_SHARDS], inv[EC_MAX_SHARDS * EC_MAX_SHARDS];
        unsigned char rows[EC_MAX_SHARDS * EC_MAX_SHARDS];
        for (int r = 0; r < k; r++)
            memcpy(sub + r * k, c->matrix + (size_t)survivors[r] * (size_t)k, (size_t)k);
        if (gf_invert_matrix(sub, inv, k) != 0) return CAIRN_EIO;
        for (int j = 0; j < nld; j++) memcpy(rows + j * k, inv + lost_data[j] * k, (size_t)k);
        unsigned char tables[32 * EC_MAX_SHARDS * EC_MAX_SHARDS];
        ec_init_tables(k, nld, rows, tables);
        unsigned char *src[EC_MAX_SHARDS], *dst[EC_MAX_SHARDS];
        for (int r = 0; r < k; r++) src[r] = shards[survivors[r]];
        for (int j = 0; j < nld; j++) dst[j] = shards[lost_data[j]];
        ec_encode_data((int)len, k, nld, tables, src, dst);
    }
    if (any_parity_lost) ec_encode(c, len, shards, shards + k);
    return 0;
}

uint32_t ec_crc32c(uint32_t crc, const void *p, size_t n) {
    /* ISA-L's crc32_iscsi chains the raw register; the standard CRC-32C inverts
     * it on the way in and out. */
    uint32_t reg = ~crc;
    const unsigned char *s = p;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        reg = crc32_iscsi((unsigned char *)(uintptr_t)s, chunk, reg);
        s += chunk;
        n -= (size_t)chunk;
    }
    return ~reg;
}

void ec_default_layout(int ndrives, int *k, int *m) {
    /* Most capacity for at least as much protection as the count allows:
     * 6+ drives 4+2; then 3+2, 2+2, 2+1, 1+1 (a mirror) and 1+0. */
    static const int table[][2] = {{1, 0}, {1, 0}, {1, 1}, {2, 1}, {2, 2}, {3, 2}};
    if (ndrives >= 6) { *k = 4; *m = 2; return; }
    if (ndrives < 1) ndrives = 1;
    *k = table[ndrives][0];
    *m = table[ndrives][1];
}
