/* SPDX-License-Identifier: MIT */
/*
 * Prompts: images preprocessed and run through the vision tower once, positions computed from
 * the whole prompt once, then prefilled on any chunk schedule. A chunk boundary may fall
 * anywhere, also inside an image's placeholder run: each chunk gets its slice of the
 * positions and of the embedding rows.
 */
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

int qref_image_tokens(const qref_config *cfg, const int grid_thw[3])
{
    int m = cfg->vision.spatial_merge_size > 0 ? cfg->vision.spatial_merge_size : 1;
    return grid_thw[0] * grid_thw[1] * grid_thw[2] / (m * m);
}

void qref_prompt_free(qref_prompt *p)
{
    if (!p)
        return;
    free(p->ids);
    free(p->pos);
    free(p->grid);
    free(p->embeds);
    free(p->is_video);
    memset(p, 0, sizeof *p);
}

static int count_placeholders(const qref_config *cfg, const int32_t *ids, int n)
{
    int k = 0;
    for (int i = 0; cfg->has_vision && i < n; i++)
        k += qref_is_placeholder(cfg, ids[i]);
    return k;
}

qref_status qref_images_embed(const qref_model *m, const qref_image *images, int n_images, int (*grid)[3],
                              qref_real **embeds, int *n_embeds, qref_error *err)
{
    /* images are visual inputs of one frame: the one pipeline of qref_visuals_embed */
    qref_visual *v = calloc((size_t)n_images + 1, sizeof *v);
    if (!v) {
        *embeds = NULL;
        *n_embeds = 0;
        return qref__fail(err, QREF_ENOMEM, "vision: out of memory for %d images", n_images);
    }
    for (int i = 0; i < n_images; i++)
        v[i].image = images[i];
    qref_status st = qref_visuals_embed(m, v, n_images, grid, embeds, n_embeds, err);
    free(v);
    return st;
}

qref_status qref_prompt_build(qref_prompt *p, const qref_model *m, const int32_t *ids, int n,
                              const qref_image *images, int n_images, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    qref_status st;
    memset(p, 0, sizeof *p);
    if (n < 1)
        return qref__fail(err, QREF_EINVAL, "prompt: no tokens");
    if (n_images > 0 && !cfg->has_vision)
        return qref__fail(err, QREF_EINVAL, "prompt: %d images given but %s has no vision tower", n_images, m->dir);
    p->n = n;
    p->n_images = n_images;
    p->ids = malloc((size_t)n * sizeof *p->ids);
    p->pos = malloc(3 * (size_t)n * sizeof *p->pos);
    p->grid = calloc((size_t)(n_images > 0 ? n_images : 1), sizeof *p->grid);
    if (!p->ids || !p->pos || !p->grid) {
        qref_prompt_free(p);
        return qref__fail(err, QREF_ENOMEM, "prompt: out of memory for %d tokens", n);
    }
    memcpy(p->ids, ids, (size_t)n * sizeof *ids);

    if (n_images > 0) {
        if ((st = qref_images_embed(m, images, n_images, p->grid, &p->embeds, &p->n_embeds, err)) != QREF_OK)
            goto fail;
        int k = count_placeholders(cfg, ids, n);
        if (k != p->n_embeds) {
            st = qref__fail(err, QREF_EINVAL,
                            "prompt: %d image placeholder tokens in the ids but the %d images give %d embeddings",
                            k, n_images, p->n_embeds);
            goto fail;
        }
    } else if (count_placeholders(cfg, ids, n) > 0) {
        st = qref__fail(err, QREF_EINVAL, "prompt: %d image placeholder tokens in the ids but no image was given",
                        count_placeholders(cfg, ids, n));
        goto fail;
    }
    if ((st = qref_rope_index(cfg, ids, n, (const int(*)[3])p->grid, n_images, p->pos, &p->delta, err)) != QREF_OK)
        goto fail;
    return QREF_OK;
fail:
    qref_prompt_free(p);
    return st;
}

/* ---------------------------------------------------------------- images and videos */

qref_status qref_visuals_embed(const qref_model *m, const qref_visual *v, int n, int (*grid)[3],
                               qref_real **embeds, int *n_embeds, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    qref_real **pix = calloc((size_t)n + 1, sizeof *pix);
    qref_real *all = NULL;
    qref_status st = QREF_OK;
    size_t patches = 0;
    const size_t dim = (size_t)cfg->vision.in_channels * cfg->vision.temporal_patch_size *
                       cfg->vision.patch_size * cfg->vision.patch_size;
    *embeds = NULL;
    *n_embeds = 0;
    if (!pix)
        return qref__fail(err, QREF_ENOMEM, "vision: out of memory for %d visual inputs", n);
    for (int i = 0; i < n && st == QREF_OK; i++) {
        st = v[i].is_video ? qref_video_preprocess(cfg, v[i].frames, v[i].n_frames, &pix[i], grid[i], err)
                           : qref_image_preprocess_px(cfg, &v[i].image, v[i].min_pixels, v[i].max_pixels, &pix[i],
                                                      grid[i], err);
        if (st == QREF_OK) {
            patches += (size_t)grid[i][0] * grid[i][1] * grid[i][2];
            *n_embeds += qref_image_tokens(cfg, grid[i]);
        }
    }
    if (st == QREF_OK) {
        all = malloc((patches ? patches : 1) * dim * sizeof *all);
        *embeds = malloc(((size_t)*n_embeds * cfg->hidden_size + 1) * sizeof **embeds);
        if (!all || !*embeds)
            st = qref__fail(err, QREF_ENOMEM, "vision: out of memory for %zu patches", patches);
    }
    if (st == QREF_OK) {
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            size_t np = (size_t)grid[i][0] * grid[i][1] * grid[i][2];
            memcpy(all + off * dim, pix[i], np * dim * sizeof *all);
            off += np;
        }
        st = qref_vision_forward(m, all, (const int(*)[3])grid, n, *embeds, err);
    }
    for (int i = 0; i < n; i++)
        free(pix[i]);
    free(pix);
    free(all);
    if (st != QREF_OK) {
        free(*embeds);
        *embeds = NULL;
        *n_embeds = 0;
    }
    return st;
}

qref_status qref_prompt_build_mm(qref_prompt *p, const qref_model *m, const int32_t *ids, int n,
                                 const qref_visual *visuals, int n_visuals, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    qref_status st;
    memset(p, 0, sizeof *p);
    if (n < 1)
        return qref__fail(err, QREF_EINVAL, "prompt: no tokens");
    if (n_visuals > 0 && !cfg->has_vision)
        return qref__fail(err, QREF_EINVAL, "prompt: %d images or videos given but %s has no vision tower",
                          n_visuals, m->dir);
    p->n = n;
    p->n_images = n_visuals;
    p->ids = malloc((size_t)n * sizeof *p->ids);
    p->pos = malloc(3 * (size_t)n * sizeof *p->pos);
    p->grid = calloc((size_t)(n_visuals > 0 ? n_visuals : 1), sizeof *p->grid);
    p->is_video = calloc((size_t)(n_visuals > 0 ? n_visuals : 1), 1);
    if (!p->ids || !p->pos || !p->grid || !p->is_video) {
        qref_prompt_free(p);
        return qref__fail(err, QREF_ENOMEM, "prompt: out of memory for %d tokens", n);
    }
    memcpy(p->ids, ids, (size_t)n * sizeof *ids);
    for (int i = 0; i < n_visuals; i++)
        p->is_video[i] = (uint8_t)(visuals[i].is_video != 0);
    int k = count_placeholders(cfg, ids, n);
    if (n_visuals > 0 &&
        (st = qref_visuals_embed(m, visuals, n_visuals, p->grid, &p->embeds, &p->n_embeds, err)) != QREF_OK)
        goto fail;
    if (k != p->n_embeds) {
        st = qref__fail(err, QREF_EINVAL,
                        "prompt: %d image and video placeholder tokens in the ids but the %d inputs give %d "
                        "embeddings", k, n_visuals, p->n_embeds);
        goto fail;
    }
    if ((st = qref__rope_index_mm(cfg, m->faults, ids, n, (const int(*)[3])p->grid, p->is_video, n_visuals, p->pos,
                                  &p->delta, err)) != QREF_OK)
        goto fail;
    return QREF_OK;
fail:
    qref_prompt_free(p);
    return st;
}

qref_status qref_prompt_prefill(const qref_model *m, qref_cache *c, const qref_prompt *p, int from, int to,
                                int chunk, int gdn_mode, qref_real *logits, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    if (from < 0 || to > p->n || from >= to)
        return qref__fail(err, QREF_EINVAL, "prefill: range [%d, %d) outside the prompt of %d tokens", from, to, p->n);
    if (c->len != from)
        return qref__fail(err, QREF_EINVAL, "prefill: the cache holds %d tokens, expected %d", c->len, from);
    if (chunk <= 0)
        chunk = to - from;
    int64_t *pos = malloc(3 * (size_t)chunk * sizeof *pos);
    if (!pos)
        return qref__fail(err, QREF_ENOMEM, "prefill: out of memory");
    c->rope_delta = p->delta;
    int e = count_placeholders(cfg, p->ids, from);
    qref_status st = QREF_OK;
    for (int s = from; s < to && st == QREF_OK; s += chunk) {
        int len = to - s < chunk ? to - s : chunk;
        for (int a = 0; a < 3; a++)
            memcpy(pos + (size_t)a * len, p->pos + (size_t)a * p->n + s, (size_t)len * sizeof *pos);
        int k = count_placeholders(cfg, p->ids + s, len);
        qref_tokens in = {.ids = p->ids + s,
                          .n = len,
                          .pos = pos,
                          .embeds = k ? p->embeds + (size_t)e * cfg->hidden_size : NULL,
                          .n_embeds = k,
                          .gdn_mode = gdn_mode};
        qref_outputs out = {.logits = logits ? logits + (size_t)(s - from) * cfg->vocab_size : NULL};
        st = qref_forward(m, c, &in, &out, err);
        e += k;
    }
    free(pos);
    return st;
}

/* ---------------------------------------------------------------- padded batches */

void qref_padded_free(qref_padded *pb)
{
    if (!pb)
        return;
    free(pb->ids);
    free(pb->mask);
    free(pb->pos);
    memset(pb, 0, sizeof *pb);
}

qref_status qref_padded_build(qref_padded *pb, const qref_prompt *rows, int B, int32_t pad_id, qref_error *err)
{
    return qref_padded_build_to(pb, rows, B, pad_id, 0, err);
}

qref_status qref_padded_build_to(qref_padded *pb, const qref_prompt *rows, int B, int32_t pad_id, int min_len,
                                 qref_error *err)
{
    memset(pb, 0, sizeof *pb);
    if (B < 1)
        return qref__fail(err, QREF_EINVAL, "batch: no rows");
    pb->B = B;
    pb->rows = rows;
    pb->L = min_len > 0 ? min_len : 0;
    for (int b = 0; b < B; b++)
        pb->L = rows[b].n > pb->L ? rows[b].n : pb->L;
    const size_t BL = (size_t)B * pb->L;
    pb->ids = malloc(BL * sizeof *pb->ids);
    pb->mask = calloc(BL, 1);
    pb->pos = calloc(3 * BL, sizeof *pb->pos);
    if (!pb->ids || !pb->mask || !pb->pos) {
        qref_padded_free(pb);
        return qref__fail(err, QREF_ENOMEM, "batch: out of memory for %d x %d tokens", B, (int)(BL / B));
    }
    for (int b = 0; b < B; b++) {
        const qref_prompt *p = &rows[b];
        const int pad = pb->L - p->n;
        for (int t = 0; t < pb->L; t++) {
            size_t i = (size_t)b * pb->L + t;
            pb->ids[i] = t < pad ? pad_id : p->ids[t - pad];
            pb->mask[i] = (uint8_t)(t >= pad);
            for (int a = 0; a < 3; a++)
                pb->pos[((size_t)b * 3 + a) * pb->L + t] = t < pad ? 0 : p->pos[(size_t)a * p->n + (t - pad)];
        }
    }
    return QREF_OK;
}

qref_status qref_padded_prefill(const qref_model *m, qref_cache *const *caches, const qref_padded *pb, int from,
                                int to, qref_real *logits, qref_error *err)
{
    qref_outputs out = {.logits = logits};
    return qref_padded_prefill_out(m, caches, pb, from, to, &out, err);
}

qref_status qref_padded_prefill_out(const qref_model *m, qref_cache *const *caches, const qref_padded *pb, int from,
                                    int to, const qref_outputs *out, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    const int B = pb->B, L = pb->L, W = to - from;
    if (from < 0 || to > L || W < 1)
        return qref__fail(err, QREF_EINVAL, "batch prefill: columns [%d, %d) outside the batch of %d", from, to, L);
    int32_t *ids = malloc((size_t)B * W * sizeof *ids);
    uint8_t *mask = malloc((size_t)B * W);
    int64_t *pos = malloc((size_t)B * 3 * W * sizeof *pos);
    const qref_real **emb = calloc((size_t)B, sizeof *emb);
    int *nemb = calloc((size_t)B, sizeof *nemb);
    qref_status st = QREF_OK;
    if (!ids || !mask || !pos || !emb || !nemb) {
        st = qref__fail(err, QREF_ENOMEM, "batch prefill: out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++) {
        int before = 0;
        for (int t = 0; t < to; t++) {
            size_t i = (size_t)b * L + t;
            int ph = pb->mask[i] && qref_is_placeholder(cfg, pb->ids[i]);
            if (t < from)
                before += ph;
            else
                nemb[b] += ph;
        }
        memcpy(ids + (size_t)b * W, pb->ids + (size_t)b * L + from, (size_t)W * sizeof *ids);
        memcpy(mask + (size_t)b * W, pb->mask + (size_t)b * L + from, (size_t)W);
        for (int a = 0; a < 3; a++)
            memcpy(pos + ((size_t)b * 3 + a) * W, pb->pos + ((size_t)b * 3 + a) * L + from, (size_t)W * sizeof *pos);
        emb[b] = nemb[b] ? pb->rows[b].embeds + (size_t)before * cfg->hidden_size : NULL;
        caches[b]->rope_delta = pb->rows[b].delta;
    }
    qref_batch in = {.B = B, .L = W, .ids = ids, .mask = mask, .pos = pos, .embeds = emb, .n_embeds = nemb};
    st = qref_forward_batch(m, caches, &in, out, err);
done:
    free(ids);
    free(mask);
    free(pos);
    free(emb);
    free(nemb);
    return st;
}
