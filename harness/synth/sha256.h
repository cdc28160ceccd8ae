/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 (FIPS 180-4), streaming: init, update any number of times with any split of the
 * message, final. No allocation; the state is a plain caller-owned struct.
 */
#ifndef LC_SHA256_H
#define LC_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;             /* message length so far */
    uint8_t block[64];          /* pending partial block */
    size_t fill;                /* bytes in block */
} lc_sha256;

void lc_sha256_init(lc_sha256 *s);
void lc_sha256_update(lc_sha256 *s, const void *data, size_t len);
/* Writes the 32-byte digest; s must be re-initialised before reuse. */
void lc_sha256_final(lc_sha256 *s, uint8_t digest[32]);

/* 32-byte digest -> 64 lowercase hex characters and a terminating NUL. */
void lc_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif /* LC_SHA256_H */
