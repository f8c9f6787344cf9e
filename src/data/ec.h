/*
 * ec.h — private to data/: erasure coding and block checksums (ISA-L).
 */
#ifndef CAIRN_DATA_EC_H
#define CAIRN_DATA_EC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define EC_MAX_SHARDS 16

typedef struct ec_codec ec_codec;

/* A Reed-Solomon codec with k data and m parity shards (k >= 1, m >= 0,
 * k + m <= 16).  Thread-safe after creation.  Free with ec_codec_free. */
int ec_codec_new(int k, int m, ec_codec **out);
void ec_codec_free(ec_codec *c);
int ec_k(const ec_codec *c);
int ec_m(const ec_codec *c);
/* Computes m parity blocks of len bytes from k data blocks. */
void ec_encode(const ec_codec *c, size_t len, unsigned char **data, unsigned char **parity);
/* shards[0..k+m) each len bytes; present[i] says which hold valid bytes.
 * Rebuilds every absent shard in place.  CAIRN_EIO when fewer than k are present. */
int ec_reconstruct(const ec_codec *c, size_t len, unsigned char **shards, const bool *present);
/* Standard CRC-32C (Castagnoli), chainable: pass 0 first, then the last result. */
uint32_t ec_crc32c(uint32_t crc, const void *p, size_t n);
/* The default (k, m) for a number of drives or nodes. */
void ec_default_layout(int ndrives, int *k, int *m);

#endif
