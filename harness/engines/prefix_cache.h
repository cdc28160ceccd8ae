/* SPDX-License-Identifier: MIT */
/*
 * The in-process reference engine's prefix cache (engines/engine_ref.c, capability
 * prefix_cache of lc_engine.h): boundaries stored as deep copies of a sequence's state, each
 * keyed by the tokens it holds; a lookup reuses the longest stored boundary that is a prefix of
 * the request, and refuses a partial match that ends inside a stored span (the GDN conv and
 * recurrent state of a hybrid model hold the whole span and cannot be trimmed back to the
 * divergence, unlike a KV cache).
 *
 * Keys: one 64-bit key per token, the token id for text, and for an image placeholder a hash
 * of that placeholder's merged vision embedding row (so two images with the same patch grid,
 * hence the same ids, are different keys).
 *
 * Ownership: the cache owns its entries (keys and states); lc__pcache_free releases them and
 * zeroes the counters (safe on a zeroed struct and twice).
 */
#ifndef LC_PREFIX_CACHE_H
#define LC_PREFIX_CACHE_H

#include <stdint.h>

#include "lc_engine.h"
#include "qref.h"

typedef struct {
    uint64_t *keys;             /* (len) */
    int len;
    qref_cache c;               /* the state at the boundary (deep copy) */
    int32_t last;               /* the last token it took in */
} lc__pc_entry;

typedef struct {
    lc__pc_entry *e;            /* (n) */
    int n;
    lc_prefix_stats st;
} lc__pcache;

/* How a lookup goes wrong (planted bugs of engines/faults.h); 0 for the correct cache. */
enum { LC__PC_CORRECT = 0, LC__PC_LONGER_STATE = 1, LC__PC_TRIM_KV_ONLY = 2 };

/* The outcome of a lookup: the entry whose state to restore (-1: none), the tokens reused
 * (the restored sequence's length) and whether a partial match was refused. */
typedef struct {
    int entry;
    int reused;
    int refused;
} lc__pc_match;

void lc__pcache_free(lc__pcache *pc);

/* Keys of the first n tokens of prompt p (n <= p->n); malloc'ed (caller frees), NULL when out
 * of memory. The prompt must hold the embedding rows of every image (vision_from 0). */
uint64_t *lc__pcache_keys(const qref_config *cfg, const qref_prompt *p, int n);

/* Stores (a deep copy of) c as the boundary keyed by keys (len = c->len); a boundary with the
 * same keys already stored is kept as it is. QREF_ENOMEM when out of memory. */
qref_status lc__pcache_store(lc__pcache *pc, const uint64_t *keys, const qref_cache *c, int32_t last,
                             qref_error *err);

/* The entry a request of keys (n) reuses, and the counters of the lookup (mode: the planted
 * bug, LC__PC_CORRECT for none). */
lc__pc_match lc__pcache_lookup(lc__pcache *pc, const uint64_t *keys, int n, int mode);

#endif /* LC_PREFIX_CACHE_H */
