/* SPDX-License-Identifier: MIT */
/* The reference engine's prefix cache (prefix_cache.h): keys, store, lookup. */
#include "prefix_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lc__pcache_free(lc__pcache *pc)
{
    for (int i = 0; pc && i < pc->n; i++) {
        free(pc->e[i].keys);
        qref_cache_free(&pc->e[i].c);
    }
    if (pc) {
        free(pc->e);
        memset(pc, 0, sizeof *pc);
    }
}

/* FNV-1a over the bytes of one embedding row, with the top bit set (never a token id). */
static uint64_t row_key(const qref_real *row, int H)
{
    const unsigned char *b = (const unsigned char *)row;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < (size_t)H * sizeof *row; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h | (1ull << 63);
}

uint64_t *lc__pcache_keys(const qref_config *cfg, const qref_prompt *p, int n)
{
    uint64_t *k = malloc(((size_t)n + 1) * sizeof *k);
    for (int i = 0, e = 0; k && i < n; i++) {
        if (cfg->has_vision && p->ids[i] == cfg->image_token_id && e < p->n_embeds)
            k[i] = row_key(p->embeds + (size_t)e++ * cfg->hidden_size, cfg->hidden_size);
        else
            k[i] = (uint64_t)(uint32_t)p->ids[i];
    }
    return k;
}

qref_status lc__pcache_store(lc__pcache *pc, const uint64_t *keys, const qref_cache *c, int32_t last,
                             qref_error *err)
{
    const int len = c->len;
    for (int i = 0; i < pc->n; i++)
        if (pc->e[i].len == len && !memcmp(pc->e[i].keys, keys, (size_t)len * sizeof *keys))
            return QREF_OK;
    lc__pc_entry *grown = realloc(pc->e, (size_t)(pc->n + 1) * sizeof *grown);
    if (!grown)
        goto nomem;
    pc->e = grown;
    lc__pc_entry *en = &pc->e[pc->n];
    memset(en, 0, sizeof *en);
    en->keys = malloc(((size_t)len + 1) * sizeof *en->keys);
    if (!en->keys)
        goto nomem;
    memcpy(en->keys, keys, (size_t)len * sizeof *keys);
    if (qref_cache_clone(&en->c, c, err) != QREF_OK) {
        free(en->keys);
        return err->code;
    }
    en->len = len;
    en->last = last;
    pc->n++;
    pc->st.stored++;
    return QREF_OK;
nomem:
    err->code = QREF_ENOMEM;
    snprintf(err->msg, sizeof err->msg, "prefix cache: out of memory storing a boundary of %d tokens", len);
    return QREF_ENOMEM;
}

static int common_prefix(const uint64_t *a, int na, const uint64_t *b, int nb)
{
    int i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

lc__pc_match lc__pcache_lookup(lc__pcache *pc, const uint64_t *keys, int n, int mode)
{
    lc__pc_match m = {-1, 0, 0};
    int partial = -1, partial_lcp = 0, widest = -1, widest_lcp = 0;
    for (int i = 0; i < pc->n; i++) {
        const lc__pc_entry *en = &pc->e[i];
        const int l = common_prefix(en->keys, en->len, keys, n);
        if (l == en->len && l > m.reused) { /* a whole boundary that prefixes the request */
            m.entry = i;
            m.reused = l;
        }
        /* the entry matching furthest (ties: the longest entry), within the request's length */
        if (en->len <= n && l > 0 &&
            (l > widest_lcp || (l == widest_lcp && widest >= 0 && en->len > pc->e[widest].len))) {
            widest = i;
            widest_lcp = l;
        }
        if (l < en->len && (l > partial_lcp || (l == partial_lcp && partial >= 0 && en->len > pc->e[partial].len))) {
            partial = i;
            partial_lcp = l;
        }
    }
    const int is_partial = partial >= 0 && partial_lcp > m.reused;
    if (mode == LC__PC_TRIM_KV_ONLY && is_partial) {
        /* planted: the partial match is accepted, the KV cut back, the GDN state left whole */
        m.entry = partial;
        m.reused = partial_lcp;
    } else if (mode == LC__PC_LONGER_STATE && widest >= 0 && widest_lcp < pc->e[widest].len &&
               widest_lcp >= m.reused) {
        /* planted: the longer cached prompt's whole state, its old suffix included */
        m.entry = widest;
        m.reused = pc->e[widest].len;
    } else {
        m.refused = is_partial;
    }
    pc->st.lookups++;
    pc->st.hits += m.reused > 0;
    pc->st.tokens_reused += m.reused;
    pc->st.refused += m.refused;
    return m;
}
