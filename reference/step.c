/* SPDX-License-Identifier: MIT */
/*
 * One continuous-batching step (qref_step, qref.h): rows of different lengths (a decode row
 * of one token beside prefill chunks) packed into one right-padded (B, L) layout and run as
 * one batched forward (qref_forward_batch), pads masked out of attention, conv and recurrent
 * state. Each row carries its own positions: a prefill chunk its prompt's 3-axis positions,
 * a decode row its cache's length plus its own rope delta.
 *
 * Shape legend: B = rows, L = the longest row, n_b = row b's new tokens, V = vocab.
 */
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

qref_status qref_step(const qref_model *m, const qref_step_row *rows, int B, qref_real *logits, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    if (!rows || B < 1)
        return qref__fail(err, QREF_EINVAL, "step: expected at least one row");
    int L = 0;
    for (int b = 0; b < B; b++) {
        if (!rows[b].cache || !rows[b].ids || rows[b].n < 1)
            return qref__fail(err, QREF_EINVAL, "step: row %d has no cache or no token", b);
        L = rows[b].n > L ? rows[b].n : L;
    }
    const size_t BL = (size_t)B * L, V = (size_t)cfg->vocab_size;
    int32_t *ids = calloc(BL, sizeof *ids);               /* (B, L), 0 at pads */
    uint8_t *mask = calloc(BL, 1);                         /* (B, L) */
    int64_t *pos = calloc(3 * BL, sizeof *pos);            /* (B, 3, L) */
    qref_cache **caches = calloc((size_t)B, sizeof *caches);
    const qref_real **embeds = calloc((size_t)B, sizeof *embeds);
    int *n_embeds = calloc((size_t)B, sizeof *n_embeds);
    qref_real *lg = logits ? malloc(BL * V * sizeof *lg) : NULL; /* (B, L, V) */
    qref_status st = QREF_OK;
    if (!ids || !mask || !pos || !caches || !embeds || !n_embeds || (logits && !lg)) {
        st = qref__fail(err, QREF_ENOMEM, "step: out of memory for %d rows of up to %d tokens", B, L);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        const qref_step_row *r = &rows[b];
        caches[b] = r->cache;
        embeds[b] = r->embeds;
        n_embeds[b] = r->embeds ? r->n_embeds : 0;
        memcpy(ids + (size_t)b * L, r->ids, (size_t)r->n * sizeof *ids);
        memset(mask + (size_t)b * L, 1, (size_t)r->n);
        for (int a = 0; a < 3; a++)
            for (int t = 0; t < r->n; t++)
                pos[((size_t)b * 3 + a) * L + t] =
                    r->pos ? r->pos[(size_t)a * r->n + t] : (int64_t)r->cache->len + r->cache->rope_delta + t;
    }
    qref_batch in = {.B = B, .L = L, .ids = ids, .mask = mask, .pos = pos, .embeds = embeds, .n_embeds = n_embeds};
    qref_outputs out = {.logits = lg};
    if ((st = qref_forward_batch(m, caches, &in, &out, err)) != QREF_OK)
        goto done;
    for (int b = 0, at = 0; lg && b < B; at += rows[b].n, b++)
        memcpy(logits + (size_t)at * V, lg + (size_t)b * L * V, (size_t)rows[b].n * V * sizeof *lg);
done:
    free(ids);
    free(mask);
    free(pos);
    free(caches);
    free(embeds);
    free(n_embeds);
    free(lg);
    return st;
}
