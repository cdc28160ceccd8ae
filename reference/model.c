/* SPDX-License-Identifier: MIT */
/*
 * The text decoder forward pass: embeddings (with image rows merged in), the hybrid stack of
 * Gated DeltaNet and gated full-attention layers, MLP or MoE, final norm, lm_head.
 *
 * Shape legend: n = tokens in this call, H = hidden, V = vocab, L = layers, Hq/Hkv/D =
 * attention heads and head dim, R = rotary dims, Hk/Hv/Dk/Dv = GDN heads and dims,
 * C = conv channels (q | k | v), K = conv kernel, E = experts, I = expert width.
 */
#include <stdlib.h>
#include <string.h>

#include "qref_faults.h"
#include "qref_internal.h"

/* ---------------------------------------------------------------- scratch */

/* Every buffer one forward call needs, sized for N = B*L stacked tokens (rows of the batch
 * one after another), one row of L tokens and Tk cached keys, carved out of the first row's
 * cache work area (grown only when a call needs more than any before it). */
typedef struct {
    qref_real *x;       /* (N, H) residual stream */
    qref_real *h;       /* (N, H) normed input of a block */
    qref_real *o;       /* (N, H) block output */
    qref_real *cos_t;   /* (N, R/2) */
    qref_real *sin_t;   /* (N, R/2) */
    qref_real *big;     /* per-block work area, see work_size() */
    int64_t *pos;       /* (3, N) stacked positions */
    int *idx;           /* (L) tokens of one row that take part in a sequence op */
    uint8_t *active;    /* (N) real tokens (or every token, under fault injection) */
    int *iwork;         /* MoE routing and grouping, qref__moe_iwork(L) */
} scratch;

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static size_t work_size(const qref_config *c, int N, int L, int chunk, int Tk)
{
    size_t n = (size_t)N, l = (size_t)L;
    size_t Hk = (size_t)c->lin_num_k_heads, Hv = (size_t)c->lin_num_v_heads;
    size_t Dk = (size_t)c->lin_k_head_dim, Dv = (size_t)c->lin_v_head_dim;
    size_t C = 2 * Hk * Dk + Hv * Dv;
    /* stacked: qkv, z, b, a, core; per row: qkv, act, q, k, v, beta, g, core + chunk scratch */
    size_t gdn = n * C + n * Hv * Dv * 2 + n * Hv * 2 + l * C * 2 + l * Hk * Dk * 2 + l * Hv * Dv * 2 +
                 l * Hv * 2 + qref__gdn_chunked_scratch(chunk, (int)Dk, (int)Dv);
    size_t Hq = (size_t)c->num_heads, Hkv = (size_t)c->num_kv_heads, D = (size_t)c->head_dim;
    /* stacked: qg, q, gate, attn, k, v; per row: q, out + attention scratch */
    size_t attn = n * Hq * 2 * D + n * Hq * D * 3 + n * Hkv * D * 2 + l * Hq * D * 2 + qref__attention_scratch(Tk, (int)Hkv, (int)D);
    size_t F = (size_t)c->intermediate_size;
    size_t mlp = n * F * 2;
    size_t moe = c->is_moe ? qref__moe_work(c, L) : 0;  /* one row at a time */
    return max_sz(max_sz(gdn, attn), max_sz(mlp, moe));
}

/* Next 64-byte aligned piece of `bytes` from *at (NULL base: only counts). */
static void *carve(char *base, size_t *at, size_t bytes)
{
    size_t off = (*at + 63) / 64 * 64;
    *at = off + bytes;
    return base ? base + off : NULL;
}

/* Lays the buffers out in base (NULL: only measures); returns the bytes needed. */
static size_t scratch_layout(scratch *s, char *base, const qref_config *c, int N, int L, int chunk, int Tk)
{
    size_t n = (size_t)N, Hd = (size_t)c->hidden_size, half = (size_t)c->rotary_dim / 2;
    size_t at = 0;
    const size_t R = sizeof(qref_real);
    s->x = carve(base, &at, n * Hd * R);
    s->h = carve(base, &at, n * Hd * R);
    s->o = carve(base, &at, n * Hd * R);
    s->cos_t = carve(base, &at, (n * half + 1) * R);
    s->sin_t = carve(base, &at, (n * half + 1) * R);
    s->big = carve(base, &at, work_size(c, N, L, chunk, Tk) * R);
    s->pos = carve(base, &at, 3 * n * sizeof(int64_t));
    s->idx = carve(base, &at, (size_t)L * sizeof(int));
    s->active = carve(base, &at, n);
    s->iwork = carve(base, &at, (c->is_moe ? qref__moe_iwork(c, L) : 1) * sizeof(int));
    return at;
}

static int scratch_init(scratch *s, qref_cache *owner, const qref_config *c, int N, int L, int chunk, int Tk)
{
    size_t bytes = scratch_layout(s, NULL, c, N, L, chunk, Tk);
    char *base = qref__cache_work(owner, bytes);
    if (!base)
        return 0;
    scratch_layout(s, base, c, N, L, chunk, Tk);
    return 1;
}

/* One forward's view of the batch: which tokens of each row take part in the sequence ops. */
typedef struct {
    int B, L;
    const uint8_t *mask;        /* (B, L) or NULL */
    int pad_into_conv, pad_into_gdn, pad_into_attention, rope_pairs_adjacent; /* planted bugs */
    double gdn_norm_eps_scale, q_norm_eps_scale, k_norm_eps_scale;
    int moe_no_renorm;
} batch_view;

/* Fills idx with the tokens of row b that enter a sequence op; returns their count. */
static int row_tokens(const batch_view *v, int b, int include_pads, int *idx)
{
    int n = 0;
    for (int t = 0; t < v->L; t++)
        if (include_pads || !v->mask || v->mask[(size_t)b * v->L + t])
            idx[n++] = t;
    return n;
}

/* Row-wise projections: y (B*L, out) = x (B*L, in) . W^T, one matrix product per batch row.
 * A BLAS product's result for one row can depend on where that row sits in the tile layout,
 * so stacking the rows of a batch into one product would make a row's logits depend on its
 * neighbours; one product per row keeps identical rows of a batch bitwise identical. */
static void linear_rows(qref_real *y, const qref_real *x, qref_matrix w, int B, int L, int in, int out)
{
    for (int b = 0; b < B; b++)
        qref__linear_m(y + (size_t)b * L * out, x + (size_t)b * L * in, w, NULL, L, in, out);
}

/* ---------------------------------------------------------------- Gated DeltaNet layer */

/* Splits conv outputs act (n, C) into q, k, v, L2-normalises and scales q and k per head,
 * and computes beta and g from the projections b, a of the tokens' stacked rows; items of
 * 16 tokens. */
typedef struct {
    const qref_config *c;
    const qref_layer_weights *w;
    const qref_real *act, *b, *a;
    const int *idx;
    size_t base;
    qref_real *q, *k, *v, *beta, *g;
    int n;
} gdn_prep_job;

static void gdn_prep_item(void *ctx, int item, int worker)
{
    (void)worker;
    const gdn_prep_job *j = ctx;
    const int Hk = j->c->lin_num_k_heads, Hv = j->c->lin_num_v_heads;
    const int Dk = j->c->lin_k_head_dim, Dv = j->c->lin_v_head_dim, C = 2 * Hk * Dk + Hv * Dv;
    const int t0 = item * 16, t1 = j->n - t0 < 16 ? j->n : t0 + 16;
    const qref_real qscale = (qref_real)(1.0 / sqrt((double)Dk));
    for (int t = t0; t < t1; t++) {
        const qref_real *row = j->act + (size_t)t * C;
        const size_t src = j->base + j->idx[t];
        memcpy(j->q + (size_t)t * Hk * Dk, row, (size_t)Hk * Dk * sizeof *j->q);
        memcpy(j->k + (size_t)t * Hk * Dk, row + Hk * Dk, (size_t)Hk * Dk * sizeof *j->k);
        memcpy(j->v + (size_t)t * Hv * Dv, row + 2 * Hk * Dk, (size_t)Hv * Dv * sizeof *j->v);
        for (int h = 0; h < Hv; h++) {
            j->beta[(size_t)t * Hv + h] = (qref_real)qref__sigmoid(j->b[src * Hv + h]);
            j->g[(size_t)t * Hv + h] = (qref_real)(-exp((double)j->w->A_log[h]) *
                                                   qref__softplus((double)j->a[src * Hv + h] + (double)j->w->dt_bias[h]));
        }
    }
    qref__l2norm(j->q + (size_t)t0 * Hk * Dk, (t1 - t0) * Hk, Dk, 1e-6);
    qref__l2norm(j->k + (size_t)t0 * Hk * Dk, (t1 - t0) * Hk, Dk, 1e-6);
    for (size_t i = (size_t)t0 * Hk * Dk; i < (size_t)t1 * Hk * Dk; i++)
        j->q[i] *= qscale;
}

/* 1 when the row's tokens are all of its L columns in order (nothing to gather). */
static int is_identity(const int *idx, int n, int L)
{
    if (n != L)
        return 0;
    for (int t = 0; t < n; t++)
        if (idx[t] != t)
            return 0;
    return 1;
}

/* h (N, H) -> out (N, H); advances each row's conv and recurrent state by its real tokens.
 * Projections run over all N rows; the conv and the delta rule run per row over the gathered
 * real tokens, so pads never shift the conv window nor touch the recurrent state. */
static void gdn_layer(const qref_config *c, const qref_layer_weights *w, qref_cache *const *caches, int l,
                      const batch_view *v, const qref_real *h, qref_real *out, int mode, int chunk,
                      qref_real *work, int *idx)
{
    const int H = c->hidden_size, Hk = c->lin_num_k_heads, Hv = c->lin_num_v_heads;
    const int Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim, K = c->lin_conv_kernel;
    const int C = 2 * Hk * Dk + Hv * Dv, N = v->B * v->L, L = v->L;
    qref_real *qkv = work;                        /* (N, C) projections */
    qref_real *z = qkv + (size_t)N * C;           /* (N, Hv*Dv) */
    qref_real *core = z + (size_t)N * Hv * Dv;    /* (N, Hv, Dv) delta-rule output, 0 at pads */
    qref_real *b = core + (size_t)N * Hv * Dv;    /* (N, Hv) */
    qref_real *a = b + (size_t)N * Hv;            /* (N, Hv) */
    qref_real *rin = a + (size_t)N * Hv;          /* (L, C) one row's gathered projections */
    qref_real *act = rin + (size_t)L * C;         /* (L, C) after conv + SiLU */
    qref_real *q = act + (size_t)L * C;           /* (L, Hk, Dk) */
    qref_real *k = q + (size_t)L * Hk * Dk;       /* (L, Hk, Dk) */
    qref_real *vv = k + (size_t)L * Hk * Dk;      /* (L, Hv, Dv) */
    qref_real *rout = vv + (size_t)L * Hv * Dv;   /* (L, Hv, Dv) */
    qref_real *beta = rout + (size_t)L * Hv * Dv; /* (L, Hv) */
    qref_real *g = beta + (size_t)L * Hv;         /* (L, Hv) */
    qref_real *gdn_work = g + (size_t)L * Hv;

    linear_rows(qkv, h, w->in_proj_qkv, v->B, L, H, C);
    linear_rows(z, h, w->in_proj_z, v->B, L, H, Hv * Dv);
    linear_rows(b, h, (qref_matrix){w->in_proj_b, NULL, (size_t)Hv * H}, v->B, L, H, Hv);
    linear_rows(a, h, (qref_matrix){w->in_proj_a, NULL, (size_t)Hv * H}, v->B, L, H, Hv);
    memset(core, 0, (size_t)N * Hv * Dv * sizeof *core);

    for (int r = 0; r < v->B; r++) {
        int n = row_tokens(v, r, v->pad_into_gdn || v->pad_into_conv, idx);
        if (!n)
            continue;
        const size_t base = (size_t)r * L;
        const int whole = is_identity(idx, n, L);  /* no pads: read and write the stacked rows */
        const qref_real *cin = whole ? qkv + base * C : rin;
        if (!whole)
            for (int t = 0; t < n; t++)
                memcpy(rin + (size_t)t * C, qkv + (base + idx[t]) * C, (size_t)C * sizeof *rin);
        qref_spec *sp = caches[r]->spec;
        /* verify: the states after every position (a planted pad bug feeds a padded row more
         * tokens than its verify holds: that row then keeps nothing, never past the buffers) */
        const int keep = sp && sp->recording && n <= sp->vcap;
        if (keep) {
            memcpy(sp->vconv[l], caches[r]->conv[l], (size_t)(K - 1) * C * sizeof *cin);
            memcpy(sp->vconv[l] + (size_t)(K - 1) * C, cin, (size_t)n * C * sizeof *cin);
        }
        qref__conv1d_causal_silu(act, cin, caches[r]->conv[l], w->conv_w, n, C, K);
        if (v->pad_into_conv && !v->pad_into_gdn && v->mask) {
            /* planted bug: pads went through the conv window; only real tokens go on */
            int kept = 0;
            for (int t = 0; t < n; t++)
                if (v->mask[base + idx[t]]) {
                    memmove(act + (size_t)kept * C, act + (size_t)t * C, (size_t)C * sizeof *act);
                    idx[kept++] = idx[t];
                }
            n = kept;
            if (!n)
                continue;
        }
        gdn_prep_job pj = {c, w, act, b, a, idx, base, q, k, vv, beta, g, n};
        qref__parallel((n + 15) / 16, gdn_prep_item, &pj);
        const int direct = is_identity(idx, n, L);
        qref_real *o = direct ? core + base * Hv * Dv : rout;
        int recurrent = mode == QREF_GDN_RECURRENT || (mode == QREF_GDN_AUTO && n == 1);
        if (keep) /* token by token, the same arithmetic as one call over n */
            for (int t = 0; t < n; t++) {
                qref__gdn_recurrent(o + (size_t)t * Hv * Dv, q + (size_t)t * Hk * Dk, k + (size_t)t * Hk * Dk,
                                    vv + (size_t)t * Hv * Dv, g + (size_t)t * Hv, beta + (size_t)t * Hv,
                                    caches[r]->rec[l], 1, Hk, Hv, Dk, Dv);
                memcpy(sp->vrec[l] + (size_t)t * Hv * Dk * Dv, caches[r]->rec[l],
                       (size_t)Hv * Dk * Dv * sizeof *o);
            }
        else if (recurrent)
            qref__gdn_recurrent(o, q, k, vv, g, beta, caches[r]->rec[l], n, Hk, Hv, Dk, Dv);
        else
            qref__gdn_chunked(o, q, k, vv, g, beta, caches[r]->rec[l], n, Hk, Hv, Dk, Dv, chunk, gdn_work);
        if (!direct)
            for (int t = 0; t < n; t++)
                memcpy(core + (base + idx[t]) * Hv * Dv, rout + (size_t)t * Hv * Dv, (size_t)Hv * Dv * sizeof *core);
    }

    const double geps = v->gdn_norm_eps_scale > 0 ? c->rms_norm_eps * v->gdn_norm_eps_scale : c->rms_norm_eps;
    qref__rmsnorm_gated(core, core, z, w->gdn_norm, N * Hv, Dv, geps);
    linear_rows(out, core, w->out_proj, v->B, L, Hv * Dv, H);
}

/* ---------------------------------------------------------------- gated full attention layer */

/* Rotary with adjacent pairs (2i, 2i+1): a planted bug, for sensitivity tests only. */
static void rope_apply_adjacent(qref_real *x, const qref_real *cos_t, const qref_real *sin_t, int n, int heads,
                                int D, int R)
{
    for (int t = 0; t < n; t++)
        for (int hh = 0; hh < heads; hh++) {
            qref_real *xh = x + ((size_t)t * heads + hh) * D;
            for (int i = 0; i < R / 2; i++) {
                double cs = cos_t[(size_t)t * (R / 2) + i], sn = sin_t[(size_t)t * (R / 2) + i];
                double x0 = xh[2 * i], x1 = xh[2 * i + 1];
                xh[2 * i] = (qref_real)(x0 * cs - x1 * sn);
                xh[2 * i + 1] = (qref_real)(x1 * cs + x0 * sn);
            }
        }
}

/* h (N, H) -> out (N, H). Projections, norms and rotary run over all N rows; each row appends
 * its real tokens' keys and values to its own cache and attends over that cache only. */
static void attention_layer(const qref_config *c, const qref_layer_weights *w, qref_cache *const *caches, int l,
                            const batch_view *v, const qref_real *h, qref_real *out, const qref_real *cos_t,
                            const qref_real *sin_t, qref_real *work, int *idx)
{
    const int H = c->hidden_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const int N = v->B * v->L, L = v->L;
    qref_real *qg = work;                        /* (N, Hq, 2D) query | gate per head */
    qref_real *q = qg + (size_t)N * Hq * 2 * D;  /* (N, Hq, D) */
    qref_real *gate = q + (size_t)N * Hq * D;    /* (N, Hq, D) */
    qref_real *attn = gate + (size_t)N * Hq * D; /* (N, Hq, D), 0 at pads */
    qref_real *k = attn + (size_t)N * Hq * D;    /* (N, Hkv, D) */
    qref_real *vv = k + (size_t)N * Hkv * D;     /* (N, Hkv, D) */
    qref_real *rq = vv + (size_t)N * Hkv * D;    /* (L, Hq, D) one row's gathered queries */
    qref_real *ro = rq + (size_t)L * Hq * D;     /* (L, Hq, D) their outputs, then attention scratch */

    linear_rows(qg, h, w->q_proj, v->B, L, H, Hq * 2 * D);
    linear_rows(k, h, w->k_proj, v->B, L, H, Hkv * D);
    linear_rows(vv, h, w->v_proj, v->B, L, H, Hkv * D);
    for (size_t r = 0; r < (size_t)N * Hq; r++) {
        memcpy(q + r * D, qg + r * 2 * D, (size_t)D * sizeof *q);
        memcpy(gate + r * D, qg + r * 2 * D + D, (size_t)D * sizeof *q);
    }
    qref__rmsnorm(q, q, w->q_norm, N * Hq, D,
                  c->rms_norm_eps * (v->q_norm_eps_scale > 0 ? v->q_norm_eps_scale : 1));
    qref__rmsnorm(k, k, w->k_norm, N * Hkv, D,
                  c->rms_norm_eps * (v->k_norm_eps_scale > 0 ? v->k_norm_eps_scale : 1));
    if (v->rope_pairs_adjacent) {
        rope_apply_adjacent(q, cos_t, sin_t, N, Hq, D, c->rotary_dim);
        rope_apply_adjacent(k, cos_t, sin_t, N, Hkv, D, c->rotary_dim);
    } else {
        qref__rope_apply(q, cos_t, sin_t, N, Hq, D, c->rotary_dim);
        qref__rope_apply(k, cos_t, sin_t, N, Hkv, D, c->rotary_dim);
    }
    memset(attn, 0, (size_t)N * Hq * D * sizeof *attn);

    for (int r = 0; r < v->B; r++) {
        qref_cache *cache = caches[r];
        int n = row_tokens(v, r, v->pad_into_attention, idx);
        if (!n)
            continue;
        const size_t base = (size_t)r * L, row = (size_t)Hkv * D;
        const int off = cache->len;
        const int whole = is_identity(idx, n, L);   /* no pads: read and write the stacked rows */
        for (int t = 0; t < n; t++) {
            memcpy(cache->k[l] + ((size_t)off + t) * row, k + (base + idx[t]) * row, row * sizeof *k);
            memcpy(cache->v[l] + ((size_t)off + t) * row, vv + (base + idx[t]) * row, row * sizeof *vv);
            if (!whole)
                memcpy(rq + (size_t)t * Hq * D, q + (base + idx[t]) * Hq * D, (size_t)Hq * D * sizeof *rq);
        }
        const size_t at = base * Hq * D;
        qref__attention(whole ? attn + at : ro, whole ? q + at : rq, cache->k[l], cache->v[l], NULL, n, off + n, off,
                        Hq, Hkv, D, 1.0 / sqrt((double)D), ro + (size_t)L * Hq * D);
        for (int t = 0; !whole && t < n; t++)
            memcpy(attn + (base + idx[t]) * Hq * D, ro + (size_t)t * Hq * D, (size_t)Hq * D * sizeof *attn);
    }
    qref__gate_sigmoid(attn, gate, (size_t)N * Hq * D);
    linear_rows(out, attn, w->o_proj, v->B, L, Hq * D, H);
}

/* ---------------------------------------------------------------- forward */

static int row_placeholders(const qref_config *cfg, const qref_batch *in, int b, int *first_bad)
{
    int k = 0;
    *first_bad = -1;
    for (int t = 0; t < in->L; t++) {
        size_t i = (size_t)b * in->L + t;
        if (in->mask && !in->mask[i])
            continue;
        if ((in->ids[i] < 0 || in->ids[i] >= cfg->vocab_size) && *first_bad < 0)
            *first_bad = t;
        if (qref_is_placeholder(cfg, in->ids[i]))
            k++;
    }
    return k;
}

static qref_status check_batch(const qref_model *m, qref_cache *const *caches, const qref_batch *in, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    if (!in || !in->ids || !caches || in->B < 1 || in->L < 1)
        return qref__fail(err, QREF_EINVAL, "forward: expected at least one row of at least one token");
    if (in->gdn_chunk < 0 || in->gdn_mode < QREF_GDN_AUTO || in->gdn_mode > QREF_GDN_RECURRENT)
        return qref__fail(err, QREF_EINVAL, "forward: invalid GDN mode %d / chunk %d", in->gdn_mode, in->gdn_chunk);
    for (int b = 0; b < in->B; b++) {
        if (!caches[b] || caches[b]->num_layers != cfg->num_layers)
            return qref__fail(err, QREF_EINVAL, "forward: row %d has no cache for the %d layers of %s", b,
                              cfg->num_layers, m->dir);
        for (int j = 0; j < b; j++)
            if (caches[j] == caches[b])
                return qref__fail(err, QREF_EINVAL, "forward: rows %d and %d share one cache", j, b);
        int bad, k = row_placeholders(cfg, in, b, &bad);
        if (bad >= 0)
            return qref__fail(err, QREF_EINVAL, "forward: row %d: token %d at index %d is outside the vocabulary [0, %d)",
                              b, in->ids[(size_t)b * in->L + bad], bad, cfg->vocab_size);
        int given = in->n_embeds && in->embeds && in->embeds[b] ? in->n_embeds[b] : 0;
        if (k != given)
            return qref__fail(err, QREF_EINVAL,
                              "forward: row %d: %d image placeholder tokens but %d image embedding rows were given", b,
                              k, given);
    }
    return QREF_OK;
}

/* The MTP tape (mtp.c): each real token's input embedding and position (what 0), or its
 * hidden state for the MTP (what 1: the final-normed s.h; what 2: the residual s.x), at tape
 * row len + (its index among the row's real tokens). */
static void tape_rows(qref_cache *const *caches, const qref_batch *in, const scratch *s, int N, int H, int what)
{
    for (int b = 0; b < in->B; b++) {
        qref_spec *sp = caches[b]->spec;
        int row = caches[b]->len;
        for (int t = 0; t < in->L; t++) {
            size_t i = (size_t)b * in->L + t;
            if (in->mask && !in->mask[i])
                continue;
            if (what == 0) {
                memcpy(sp->emb + (size_t)row * H, s->x + i * H, (size_t)H * sizeof *s->x);
                for (int a = 0; a < 3; a++)
                    sp->pos[(size_t)row * 3 + a] = s->pos[(size_t)a * N + i];
            } else {
                memcpy(sp->hid + (size_t)row * H, (what == 1 ? s->h : s->x) + i * H, (size_t)H * sizeof *s->x);
            }
            row++;
        }
    }
}

qref_status qref_forward_batch(const qref_model *m, qref_cache *const *caches, const qref_batch *in,
                               const qref_outputs *out, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    qref_status st = check_batch(m, caches, in, err);
    if (st != QREF_OK)
        return st;
    const int B = in->B, L = in->L, N = B * L, H = cfg->hidden_size, NL = cfg->num_layers, V = cfg->vocab_size;
    const int chunk = in->gdn_chunk ? in->gdn_chunk : 64;
    const qref_faults nofault = {0};
    const qref_faults *f = m->faults ? m->faults : &nofault;
    const batch_view view = {B, L, in->mask, f->pad_into_conv, f->pad_into_gdn, f->pad_into_attention,
                             f->rope_pairs_adjacent, f->gdn_norm_eps_scale, f->q_norm_eps_scale,
                             f->k_norm_eps_scale, f->moe_no_renorm};

    qref_stage_times *times = out ? out->times : NULL;
    const double t_start = times ? qref__now() : 0;
    double t_stages = 0, t_mark = t_start;
    int Tk = 1;
    for (int b = 0; b < B; b++) {
        if ((st = qref__cache_reserve(caches[b], caches[b]->len + L, err)) != QREF_OK)
            return st;
        Tk = caches[b]->cap > Tk ? caches[b]->cap : Tk;
    }
    for (int b = 0; b < B; b++) {
        qref_spec *sp = caches[b]->spec;
        if (sp && sp->pending)
            return qref__fail(err, QREF_EINVAL, "forward: row %d: a verify awaits its accept", b);
        if (sp && !sp->recording)
            sp->end_valid = 0; /* the last verify's end state is gone once the sequence moves on */
    }
    /* with an MTP head every real token's embedding, position and final hidden state are kept
     * on the cache's tape (mtp.c) */
    for (int b = 0; m->mtp && b < B; b++) {
        qref_spec *sp = qref__spec_get(caches[b], m);
        if (!sp)
            return qref__fail(err, QREF_ENOMEM, "forward: out of memory for the MTP tape");
        if ((st = qref__spec_reserve(sp, H, caches[b]->len + L, err)) != QREF_OK)
            return st;
    }
    scratch s;
    if (!scratch_init(&s, caches[0], cfg, N, L, chunk, Tk))
        return qref__fail(err, QREF_ENOMEM, "forward: out of memory for %d x %d tokens", B, L);

    /* stacked positions (3, N) and the rows that take part in the MLP */
    for (int b = 0; b < B; b++) {
        int64_t delta = f->row0_delta ? caches[0]->rope_delta : caches[b]->rope_delta;
        int64_t next = (int64_t)caches[b]->len + delta;
        for (int t = 0; t < L; t++) {
            size_t i = (size_t)b * L + t;
            int real = !in->mask || in->mask[i];
            s.active[i] = (uint8_t)(real || f->pad_into_conv || f->pad_into_gdn || f->pad_into_attention);
            for (int a = 0; a < 3; a++)
                s.pos[(size_t)a * N + i] = in->pos ? in->pos[((size_t)b * 3 + a) * L + t] : (real ? next : 0);
            next += real;
        }
    }
    qref__mrope_angles(s.cos_t, s.sin_t, s.pos, N, cfg->rotary_dim, cfg->rope_theta, cfg->mrope_section,
                       cfg->mrope_interleaved);

    /* embeddings, each row's image rows merged in order */
    for (int b = 0; b < B; b++) {
        int e = 0;
        for (int t = 0; t < L; t++) {
            size_t i = (size_t)b * L + t;
            int32_t id = in->ids[i];
            int real = !in->mask || in->mask[i];
            if (real && qref_is_placeholder(cfg, id))
                memcpy(s.x + i * H, in->embeds[b] + (size_t)e++ * H, (size_t)H * sizeof *s.x);
            else
                qref__matrix_row(s.x + i * H, m->embed, (size_t)(id >= 0 && id < V ? id : 0), H);
        }
    }
    if (out && out->hidden)
        memcpy(out->hidden, s.x, (size_t)N * H * sizeof *s.x);
    if (m->mtp)
        tape_rows(caches, in, &s, N, H, 0);

    for (int l = 0; l < NL; l++) {
        const qref_layer_weights *w = &m->layers[l];
        qref__rmsnorm(s.h, s.x, w->input_norm, N, H,
                      cfg->rms_norm_eps * (f->input_norm_eps_scale > 0 ? f->input_norm_eps_scale : 1));
        if (times)
            t_mark = qref__now();
        if (w->type == QREF_LAYER_LINEAR)
            gdn_layer(cfg, w, caches, l, &view, s.h, s.o, in->gdn_mode, chunk, s.big, s.idx);
        else
            attention_layer(cfg, w, caches, l, &view, s.h, s.o, s.cos_t, s.sin_t, s.big, s.idx);
        if (times) {
            const double dt = qref__now() - t_mark;
            *(w->type == QREF_LAYER_LINEAR ? &times->gdn : &times->attention) += dt;
            t_stages += dt;
        }
        qref__add(s.x, s.o, (size_t)N * H);

        qref__rmsnorm(s.h, s.x, w->post_norm, N, H,
                      f->post_norm_eps_scale > 0 ? cfg->rms_norm_eps * f->post_norm_eps_scale : cfg->rms_norm_eps);
        if (times)
            t_mark = qref__now();
        for (int b = 0; b < B; b++) { /* row by row, for the reason given at linear_rows */
            const size_t off = (size_t)b * L * H;
            if (cfg->is_moe)
                qref__moe(s.o + off, cfg, w, s.h + off, L, s.active + (size_t)b * L, view.moe_no_renorm, s.big,
                          s.iwork);
            else
                qref__swiglu(s.o + off, s.h + off, w->gate_proj, w->up_proj, w->down_proj, L, H,
                             cfg->intermediate_size, s.big);
        }
        if (times) {
            const double dt = qref__now() - t_mark;
            times->mlp += dt;
            t_stages += dt;
        }
        qref__add(s.x, s.o, (size_t)N * H);
        if (out && out->hidden)
            memcpy(out->hidden + (size_t)(l + 1) * N * H, s.x, (size_t)N * H * sizeof *s.x);
    }

    if (m->mtp && f->mtp_prenorm_hidden)
        tape_rows(caches, in, &s, N, H, 2); /* planted: the residual stream before the final norm */
    if ((out && (out->logits || out->final_hidden)) || m->mtp) {
        if (times)
            t_mark = qref__now();
        qref__rmsnorm(s.h, s.x, m->final_norm, N, H,
                      cfg->rms_norm_eps * (f->final_norm_eps_scale > 0 ? f->final_norm_eps_scale : 1));
        if (m->mtp && !f->mtp_prenorm_hidden)
            tape_rows(caches, in, &s, N, H, 1);
    }
    if (out && out->final_hidden) {
        memcpy(out->final_hidden, s.h, (size_t)N * H * sizeof *s.h);
        for (size_t i = 0; in->mask && i < (size_t)N; i++)
            if (!in->mask[i])
                for (int j = 0; j < H; j++)
                    out->final_hidden[i * H + j] = (qref_real)NAN;
    }
    if (out && out->logits) {
        linear_rows(out->logits, s.h, m->lm_head, B, L, H, V);
        for (size_t i = 0; in->mask && i < (size_t)N; i++)
            if (!in->mask[i])
                for (int j = 0; j < V; j++)
                    out->logits[i * V + j] = (qref_real)NAN;
        if (times) {
            const double dt = qref__now() - t_mark;
            times->lm_head += dt;
            t_stages += dt;
        }
    }
    for (int b = 0; b < B; b++) {
        caches[b]->len += row_tokens(&view, b, f->pad_into_attention, s.idx);
    }
    if (times)
        times->other += qref__now() - t_start - t_stages;
    return QREF_OK;
}

qref_status qref_forward(const qref_model *m, qref_cache *c, const qref_tokens *in, const qref_outputs *out,
                         qref_error *err)
{
    if (!in || !in->ids || in->n < 1)
        return qref__fail(err, QREF_EINVAL, "forward: expected at least one token");
    const qref_real *embeds[1] = {in->embeds};
    const int n_embeds[1] = {in->embeds ? in->n_embeds : 0};
    qref_batch b = {.B = 1,
                    .L = in->n,
                    .ids = in->ids,
                    .pos = in->pos,
                    .embeds = embeds,
                    .n_embeds = n_embeds,
                    .gdn_mode = in->gdn_mode,
                    .gdn_chunk = in->gdn_chunk};
    qref_cache *caches[1] = {c};
    return qref_forward_batch(m, caches, &b, out, err);
}

void qref_rotary(const qref_model *m, const int64_t *pos, int n, qref_real *cos_t, qref_real *sin_t)
{
    const qref_config *cfg = &m->cfg;
    qref__mrope_angles(cos_t, sin_t, pos, n, cfg->rotary_dim, cfg->rope_theta, cfg->mrope_section,
                       cfg->mrope_interleaved);
}
