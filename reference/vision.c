/* SPDX-License-Identifier: MIT */
/*
 * The vision tower: patches of preprocessed pixels in, merged image embeddings out.
 *
 *   x = patch_embed(pixels) + resampled learned positions        (N, Vh)
 *   per block:  x += proj(attention(rope2d(qkv(LayerNorm1(x)))))  attention within each frame
 *               x += fc2(gelu_tanh(fc1(LayerNorm2(x))))
 *   merger:     each M x M block of LayerNorm(x) concatenated     (N/M^2, M^2*Vh)
 *               out = fc2(gelu_erf(fc1(.)))                       (N/M^2, Ho)
 *
 * Patches arrive in merge-block order (see image.c), so a merge block is M^2 consecutive rows.
 * LayerNorms use eps 1e-6. The 2-D rotary covers the whole head: the first half of each rotated
 * pair uses row angles for its first D/4 dims and column angles for the next D/4.
 * Images run one after another with buffers sized for the largest, so an image's embeddings
 * never depend on the other images of the call.
 *
 * Shape legend: N = t*h*w patches of one image, F = h*w patches of one frame, Vh = width,
 * Vi = MLP width, D = head dim, Pd = Cin*Tp*P*P, M = merge size, Ho = text width.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

#define QREF__VISION_LN_EPS 1e-6

/* ---------------------------------------------------------------- position tables */

/* Bilinear taps (align_corners) of target index i on an axis of `size` samples over a table
 * side of `side`: indices i0, i1 and weights w0, w1. */
static void bilinear_taps(int i, int size, int side, int *i0, int *i1, double *w0, double *w1)
{
    const double src = (double)i * (side - 1) / (double)(size > 1 ? size - 1 : 1);
    const double fl = floor(src);
    const int lo = (int)fl;
    *i0 = lo < side - 1 ? lo : side - 1;
    *i1 = lo + 1 < side - 1 ? lo + 1 : side - 1;
    *w0 = fmax(0.0, 1.0 - fabs(src - fl));
    *w1 = fmax(0.0, 1.0 - fabs(src - fl - 1.0));
}

void qref__vision_pos_embed(qref_real *out, const qref_real *table, int side, int Vh, int h, int w,
                            int M)
{
    for (int k = 0; k < h * w; k++) {
        int row, col, r0, r1, c0, c1;
        double wr0, wr1, wc0, wc1;
        qref__merge_block_rc(k, w, M, &row, &col);
        bilinear_taps(row, h, side, &r0, &r1, &wr0, &wr1);
        bilinear_taps(col, w, side, &c0, &c1, &wc0, &wc1);
        const qref_real *t00 = table + ((size_t)r0 * side + c0) * Vh;  /* (Vh) each */
        const qref_real *t01 = table + ((size_t)r0 * side + c1) * Vh;
        const qref_real *t10 = table + ((size_t)r1 * side + c0) * Vh;
        const qref_real *t11 = table + ((size_t)r1 * side + c1) * Vh;
        const double w00 = wr0 * wc0, w01 = wr0 * wc1, w10 = wr1 * wc0, w11 = wr1 * wc1;
        qref_real *o = out + (size_t)k * Vh;                             /* (Vh) */
        for (int d = 0; d < Vh; d++)
            o[d] = (qref_real)((double)t00[d] * w00 + (double)t01[d] * w01 + (double)t10[d] * w10 +
                               (double)t11[d] * w11);
    }
}

void qref__vision_rope_angles(qref_real *cos_t, qref_real *sin_t, int h, int w, int M, int D,
                              double theta)
{
    assert(D > 0 && D % 4 == 0);
    const int q = D / 4, half = D / 2;
    for (int k = 0; k < h * w; k++) {
        int row, col;
        qref__merge_block_rc(k, w, M, &row, &col);
        qref_real *c = cos_t + (size_t)k * half;                 /* (D/2) */
        qref_real *s = sin_t + (size_t)k * half;                 /* (D/2) */
        for (int j = 0; j < q; j++) {
            const double inv_freq = 1.0 / pow(theta, (double)(2 * j) / (double)half);
            const double ar = row * inv_freq, ac = col * inv_freq;
            c[j] = (qref_real)cos(ar);
            s[j] = (qref_real)sin(ar);
            c[q + j] = (qref_real)cos(ac);
            s[q + j] = (qref_real)sin(ac);
        }
    }
}

/* ---------------------------------------------------------------- scratch */

typedef struct {
    qref_real *block;           /* the one allocation */
    qref_real *x;               /* (N, Vh) residual stream */
    qref_real *xn;              /* (N, Vh) normed */
    qref_real *qkv;             /* (N, 3*Vh) */
    qref_real *q, *k, *v;       /* (N, Vh) each, as (N, heads, D) */
    qref_real *att;             /* (N, Vh) */
    qref_real *tmp;             /* (N, Vh) */
    qref_real *mlp;             /* (N, Vi) */
    qref_real *mrg;             /* (N/M^2, M^2*Vh) merger hidden */
    qref_real *pos;             /* (F, Vh) */
    qref_real *cos_t, *sin_t;   /* (F, D/2) */
    qref_real *att_scratch;     /* qref__attention_scratch(F, heads, D) */
} vision_scratch;

static qref_status scratch_alloc(vision_scratch *s, size_t N, size_t F, size_t Vh, size_t Vi, size_t D,
                                 qref_error *err)
{
    const size_t sizes[] = {N * Vh, N * Vh, 3 * N * Vh, N * Vh, N * Vh, N * Vh, N * Vh, N * Vh, N * Vi,
                            N * Vh, F * Vh, F * D / 2, F * D / 2, qref__attention_scratch((int)F, (int)(Vh / D), (int)D)};
    qref_real **slots[] = {&s->x, &s->xn, &s->qkv, &s->q, &s->k, &s->v, &s->att, &s->tmp, &s->mlp,
                           &s->mrg, &s->pos, &s->cos_t, &s->sin_t, &s->att_scratch};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += sizes[i];
    s->block = malloc(total * sizeof *s->block);
    if (!s->block)
        return qref__fail(err, QREF_ENOMEM, "vision: out of memory for %zu scratch values (%zu patches)",
                          total, N);
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = s->block + off;
        off += sizes[i];
    }
    return QREF_OK;
}

/* ---------------------------------------------------------------- one image */

/* Adds the seconds since *mark to *stage (when timing) and restarts the mark. */
static void lap(qref_stage_times *tm, double *stage, double *mark)
{
    if (!tm)
        return;
    const double t = qref__now();
    *stage += t - *mark;
    *mark = t;
}

static void vision_block(const qref_vision_block_weights *bw, vision_scratch *s, int N, int F, int Vh,
                         int Vi, int heads, qref_stage_times *tm, double *mark)
{
    const int D = Vh / heads, frames = N / F;
    double dummy = 0, *other = tm ? &tm->other : &dummy, *att = tm ? &tm->attention : &dummy;
    double *lin = tm ? &tm->mlp : &dummy;
    qref__layernorm(s->xn, s->x, bw->norm1_w, bw->norm1_b, N, Vh, QREF__VISION_LN_EPS);
    lap(tm, other, mark);
    qref__linear(s->qkv, s->xn, bw->qkv_w, bw->qkv_b, N, Vh, 3 * Vh);
    lap(tm, lin, mark);
    for (int t = 0; t < N; t++) {                                /* (N, 3, heads, D) -> q, k, v */
        const qref_real *r = s->qkv + (size_t)t * 3 * Vh;
        memcpy(s->q + (size_t)t * Vh, r, (size_t)Vh * sizeof *r);
        memcpy(s->k + (size_t)t * Vh, r + Vh, (size_t)Vh * sizeof *r);
        memcpy(s->v + (size_t)t * Vh, r + 2 * (size_t)Vh, (size_t)Vh * sizeof *r);
    }
    for (int f = 0; f < frames; f++) {
        const size_t o = (size_t)f * F * Vh;
        qref__rope_apply(s->q + o, s->cos_t, s->sin_t, F, heads, D, D);
        qref__rope_apply(s->k + o, s->cos_t, s->sin_t, F, heads, D, D);
        /* every query of the frame sees every key of the frame: q_off = F - 1 */
        qref__attention(s->att + o, s->q + o, s->k + o, s->v + o, NULL, F, F, F - 1, heads, heads, D,
                        1.0 / sqrt((double)D), s->att_scratch);
    }
    lap(tm, att, mark);
    qref__linear(s->tmp, s->att, bw->proj_w, bw->proj_b, N, Vh, Vh);
    lap(tm, lin, mark);
    qref__add(s->x, s->tmp, (size_t)N * Vh);

    qref__layernorm(s->xn, s->x, bw->norm2_w, bw->norm2_b, N, Vh, QREF__VISION_LN_EPS);
    lap(tm, other, mark);
    qref__linear(s->mlp, s->xn, bw->fc1_w, bw->fc1_b, N, Vh, Vi);
    qref__gelu(s->mlp, (size_t)N * Vi, 0);
    qref__linear(s->tmp, s->mlp, bw->fc2_w, bw->fc2_b, N, Vi, Vh);
    lap(tm, lin, mark);
    qref__add(s->x, s->tmp, (size_t)N * Vh);
    lap(tm, other, mark);
}

/* out (N/M^2, Ho) for one image of grid (t, h, w) whose patches are pixels (N, Pd). */
static void vision_image(const qref_model *m, vision_scratch *s, const qref_real *pixels, const int g[3],
                         qref_real *out, qref_stage_times *tm)
{
    const qref_vision_config *v = &m->cfg.vision;
    const qref_vision_weights *vw = &m->vision;
    const int Vh = v->hidden_size, Vi = v->intermediate_size, heads = v->num_heads, D = Vh / heads;
    const int M = v->spatial_merge_size, M2 = M * M, Ho = v->out_hidden_size;
    const int Pd = v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const int side = (int)lround(sqrt((double)v->num_position_embeddings));
    const int h = g[1], w = g[2], F = h * w, N = g[0] * F;

    double mark = tm ? qref__now() : 0, dummy = 0;
    double *other = tm ? &tm->other : &dummy, *lin = tm ? &tm->mlp : &dummy;
    qref__linear(s->x, pixels, vw->patch_w, vw->patch_b, N, Pd, Vh);
    lap(tm, lin, &mark);
    qref__vision_pos_embed(s->pos, vw->pos_embed, side, Vh, h, w, M);
    for (int f = 0; f < g[0]; f++)
        qref__add(s->x + (size_t)f * F * Vh, s->pos, (size_t)F * Vh);
    qref__vision_rope_angles(s->cos_t, s->sin_t, h, w, M, D, v->rope_theta);
    lap(tm, other, &mark);

    for (int b = 0; b < v->depth; b++)
        vision_block(&vw->blocks[b], s, N, F, Vh, Vi, heads, tm, &mark);

    qref__layernorm(s->xn, s->x, vw->merger_norm_w, vw->merger_norm_b, N, Vh, QREF__VISION_LN_EPS);
    lap(tm, other, &mark);
    const int Nm = N / M2, Hm = M2 * Vh;                         /* xn viewed as (Nm, Hm) */
    qref__linear(s->mrg, s->xn, vw->merger_fc1_w, vw->merger_fc1_b, Nm, Hm, Hm);
    qref__gelu(s->mrg, (size_t)Nm * Hm, 1);
    qref__linear(out, s->mrg, vw->merger_fc2_w, vw->merger_fc2_b, Nm, Hm, Ho);
    lap(tm, lin, &mark);
}

/* ---------------------------------------------------------------- entry point */

qref_status qref_vision_forward(const qref_model *m, const qref_real *pixels, const int (*grid_thw)[3],
                                int n_images, qref_real *out, qref_error *err)
{
    return qref_vision_forward_timed(m, pixels, grid_thw, n_images, out, NULL, err);
}

qref_status qref_vision_forward_timed(const qref_model *m, const qref_real *pixels, const int (*grid_thw)[3],
                                      int n_images, qref_real *out, qref_stage_times *times, qref_error *err)
{
    if (!m || n_images < 0 || (n_images > 0 && (!pixels || !grid_thw || !out)))
        return qref__fail(err, QREF_EINVAL, "vision: invalid arguments (n_images %d)", n_images);
    if (!m->cfg.has_vision)
        return qref__fail(err, QREF_EUNSUPPORTED, "vision: model %s has no vision tower", m->dir);
    const qref_vision_config *v = &m->cfg.vision;
    const int Vh = v->hidden_size, heads = v->num_heads, M = v->spatial_merge_size;
    const int side = (int)lround(sqrt((double)v->num_position_embeddings));
    if (Vh <= 0 || heads <= 0 || Vh % heads || (Vh / heads) % 4 || M <= 0 || v->intermediate_size <= 0 ||
        v->out_hidden_size <= 0 || v->depth < 0 || !m->vision.blocks)
        return qref__fail(err, QREF_EUNSUPPORTED,
                          "vision: width %d with %d heads (head dim must be a multiple of 4), merge %d, MLP %d, "
                          "out %d, depth %d: unsupported", Vh, heads, M, v->intermediate_size,
                          v->out_hidden_size, v->depth);
    if (side < 1 || side * side != v->num_position_embeddings)
        return qref__fail(err, QREF_EUNSUPPORTED, "vision: num_position_embeddings %d is not a square",
                          v->num_position_embeddings);
    const size_t Pd = (size_t)v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;

    size_t max_n = 0, max_f = 0;
    for (int i = 0; i < n_images; i++) {
        const int *g = grid_thw[i];
        if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % M || g[2] % M ||
            (int64_t)g[0] * g[1] * g[2] > INT32_MAX / 4)
            return qref__fail(err, QREF_EINVAL,
                              "vision: image %d grid (t, h, w) = (%d, %d, %d) must be positive with h and w "
                              "multiples of the merge size %d", i, g[0], g[1], g[2], M);
        const size_t f = (size_t)g[1] * g[2], n = (size_t)g[0] * f;
        max_n = n > max_n ? n : max_n;
        max_f = f > max_f ? f : max_f;
    }
    if (n_images == 0)
        return QREF_OK;

    vision_scratch s = {0};
    qref_status st = scratch_alloc(&s, max_n, max_f, (size_t)Vh, (size_t)v->intermediate_size,
                                   (size_t)(Vh / heads), err);
    if (st != QREF_OK)
        return st;
    const qref_real *px = pixels;                                /* (N_i, Pd) per image */
    qref_real *o = out;                                          /* (N_i / M^2, Ho) per image */
    for (int i = 0; i < n_images; i++) {
        const size_t n = (size_t)grid_thw[i][0] * grid_thw[i][1] * grid_thw[i][2];
        vision_image(m, &s, px, grid_thw[i], o, times);
        px += n * Pd;
        o += n / ((size_t)M * M) * (size_t)v->out_hidden_size;
    }
    free(s.block);
    return QREF_OK;
}
