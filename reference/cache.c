/* SPDX-License-Identifier: MIT */
/*
 * Per-sequence state: KV of the full-attention layers, conv and recurrent state of the Gated
 * DeltaNet layers, the sequence length and its MRoPE delta. Nothing here is shared between
 * sequences; a clone is a deep copy.
 */
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

static qref_real **alloc_rows(int n)
{
    return calloc((size_t)n, sizeof(qref_real *));
}

qref_status qref_cache_init(qref_cache *c, const qref_model *m, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    memset(c, 0, sizeof *c);
    c->num_layers = cfg->num_layers;
    c->kv_row = cfg->num_kv_heads * cfg->head_dim;
    c->conv_channels = 2 * cfg->lin_num_k_heads * cfg->lin_k_head_dim + cfg->lin_num_v_heads * cfg->lin_v_head_dim;
    c->conv_len = cfg->lin_conv_kernel - 1;
    c->rec_size = cfg->lin_num_v_heads * cfg->lin_k_head_dim * cfg->lin_v_head_dim;
    c->k = alloc_rows(c->num_layers);
    c->v = alloc_rows(c->num_layers);
    c->conv = alloc_rows(c->num_layers);
    c->rec = alloc_rows(c->num_layers);
    if (!c->k || !c->v || !c->conv || !c->rec)
        goto nomem;
    for (int l = 0; l < c->num_layers; l++) {
        if (cfg->layer_types[l] != QREF_LAYER_LINEAR)
            continue;
        c->conv[l] = calloc((size_t)c->conv_len * (size_t)c->conv_channels + 1, sizeof(qref_real));
        c->rec[l] = calloc((size_t)c->rec_size, sizeof(qref_real));
        if (!c->conv[l] || !c->rec[l])
            goto nomem;
    }
    return QREF_OK;
nomem:
    qref_cache_free(c);
    return qref__fail(err, QREF_ENOMEM, "%s: out of memory for a sequence cache", m->dir);
}

void qref_cache_free(qref_cache *c)
{
    if (!c)
        return;
    for (int l = 0; l < c->num_layers; l++) {
        if (c->k)
            free(c->k[l]);
        if (c->v)
            free(c->v[l]);
        if (c->conv)
            free(c->conv[l]);
        if (c->rec)
            free(c->rec[l]);
    }
    free(c->k);
    free(c->v);
    free(c->conv);
    free(c->rec);
    free(c->work);
    qref__spec_free(c);
    memset(c, 0, sizeof *c);
}

void *qref__cache_work(qref_cache *c, size_t bytes)
{
    if (bytes <= c->work_bytes && c->work)
        return c->work;
    free(c->work);
    c->work = malloc(bytes ? bytes : 1);
    c->work_bytes = c->work ? bytes : 0;
    return c->work;
}

/* Makes room for `need` tokens of KV in every attention layer; on failure nothing changes
 * that matters (a grown buffer keeps its contents, len is untouched). */
qref_status qref__cache_reserve(qref_cache *c, int need, qref_error *err)
{
    if (need <= c->cap)
        return QREF_OK;
    int cap = c->cap ? c->cap : 64;
    while (cap < need)
        cap *= 2;
    for (int l = 0; l < c->num_layers; l++) {
        if (c->conv[l])
            continue; /* linear layer: no KV */
        size_t bytes = (size_t)cap * (size_t)c->kv_row * sizeof(qref_real);
        qref_real *k = realloc(c->k[l], bytes);
        if (!k)
            return qref__fail(err, QREF_ENOMEM, "out of memory growing the KV cache to %d tokens", cap);
        c->k[l] = k;
        qref_real *v = realloc(c->v[l], bytes);
        if (!v)
            return qref__fail(err, QREF_ENOMEM, "out of memory growing the KV cache to %d tokens", cap);
        c->v[l] = v;
    }
    c->cap = cap;
    return QREF_OK;
}

static qref_real *dup_array(const qref_real *src, size_t n)
{
    qref_real *p = malloc(n ? n * sizeof *p : sizeof *p);
    if (p && n)
        memcpy(p, src, n * sizeof *p);
    return p;
}

qref_status qref_cache_clone(qref_cache *dst, const qref_cache *src, qref_error *err)
{
    memset(dst, 0, sizeof *dst);
    dst->len = src->len;
    dst->cap = src->len; /* a snapshot holds exactly what it needs */
    dst->rope_delta = src->rope_delta;
    dst->num_layers = src->num_layers;
    dst->kv_row = src->kv_row;
    dst->conv_channels = src->conv_channels;
    dst->conv_len = src->conv_len;
    dst->rec_size = src->rec_size;
    dst->k = alloc_rows(src->num_layers);
    dst->v = alloc_rows(src->num_layers);
    dst->conv = alloc_rows(src->num_layers);
    dst->rec = alloc_rows(src->num_layers);
    if (!dst->k || !dst->v || !dst->conv || !dst->rec)
        goto nomem;
    for (int l = 0; l < src->num_layers; l++) {
        if (src->conv[l]) {
            dst->conv[l] = dup_array(src->conv[l], (size_t)src->conv_len * (size_t)src->conv_channels + 1);
            dst->rec[l] = dup_array(src->rec[l], (size_t)src->rec_size);
            if (!dst->conv[l] || !dst->rec[l])
                goto nomem;
        } else {
            size_t n = (size_t)src->len * (size_t)src->kv_row;
            dst->k[l] = dup_array(src->k[l], n);
            dst->v[l] = dup_array(src->v[l], n);
            if (!dst->k[l] || !dst->v[l])
                goto nomem;
        }
    }
    if (src->spec && qref__spec_clone(dst, src, err) != QREF_OK) {
        qref_cache_free(dst);
        return QREF_ENOMEM;
    }
    return QREF_OK;
nomem:
    qref_cache_free(dst);
    return qref__fail(err, QREF_ENOMEM, "out of memory cloning a sequence cache of %d tokens", src->len);
}
