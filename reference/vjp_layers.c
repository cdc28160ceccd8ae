/* SPDX-License-Identifier: MIT */
/*
 * Backward pass of one whole decoder layer (input RMSNorm, Gated DeltaNet or gated full
 * attention, residual, post RMSNorm, SwiGLU MLP or MoE block, residual), reading the weights
 * of a loaded qref_model.
 *
 * The layer is recomputed forward with every intermediate kept, then differentiated in
 * reverse. All buffers come from one allocation per call, laid out by a plan that is run once
 * to count and once to place.
 *
 * Shape legend: n = tokens, H = hidden, C = conv channels (q | k | v), K = conv kernel,
 * Hk/Hv/Dk/Dv = GDN heads and dims, Hq/Hkv/D = attention heads and head dim, R = rotary dims,
 * F = MLP width, E = experts, k = experts per token, I = expert width, Is = shared width.
 */
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"
#include "qref_vjp_internal.h"

static const qref_vjp_faults no_faults;

/* ---------------------------------------------------------------- arena */

typedef struct {
    qref_real *base;    /* NULL while counting */
    size_t used;
} arena;

/* Every buffer starts on a 16-byte boundary (int64 and int arrays ride in it too). */
#define QREF__ARENA_ALIGN (16 / sizeof(qref_real))

static qref_real *take(arena *a, size_t count)
{
    qref_real *p = a->base ? a->base + a->used : NULL;
    a->used += (count + QREF__ARENA_ALIGN - 1) / QREF__ARENA_ALIGN * QREF__ARENA_ALIGN;
    return p;
}

/* ---------------------------------------------------------------- gradient block */

static size_t layer_grad_layout(qref_layer_grads *g, const qref_config *c, int type, qref_real *base)
{
    arena a = {base, 0};
    const size_t H = (size_t)c->hidden_size;
    memset(g, 0, sizeof *g);
    g->type = type;
    g->input_norm = take(&a, H);
    g->post_norm = take(&a, H);
    if (type == QREF_LAYER_LINEAR) {
        const size_t Hk = (size_t)c->lin_num_k_heads, Hv = (size_t)c->lin_num_v_heads;
        const size_t Dk = (size_t)c->lin_k_head_dim, Dv = (size_t)c->lin_v_head_dim, C = 2 * Hk * Dk + Hv * Dv;
        g->in_proj_qkv = take(&a, C * H);
        g->in_proj_z = take(&a, Hv * Dv * H);
        g->in_proj_b = take(&a, Hv * H);
        g->in_proj_a = take(&a, Hv * H);
        g->conv_w = take(&a, C * (size_t)c->lin_conv_kernel);
        g->dt_bias = take(&a, Hv);
        g->A_log = take(&a, Hv);
        g->gdn_norm = take(&a, Dv);
        g->out_proj = take(&a, H * Hv * Dv);
    } else {
        const size_t Hq = (size_t)c->num_heads, Hkv = (size_t)c->num_kv_heads, D = (size_t)c->head_dim;
        g->q_proj = take(&a, Hq * 2 * D * H);
        g->k_proj = take(&a, Hkv * D * H);
        g->v_proj = take(&a, Hkv * D * H);
        g->o_proj = take(&a, H * Hq * D);
        g->q_norm = take(&a, D);
        g->k_norm = take(&a, D);
    }
    if (c->is_moe) {
        const size_t E = (size_t)c->num_experts, I = (size_t)c->moe_intermediate_size;
        const size_t Is = (size_t)c->shared_expert_intermediate_size;
        g->router = take(&a, E * H);
        g->experts_gate_up = take(&a, E * 2 * I * H);
        g->experts_down = take(&a, E * H * I);
        g->shared_gate_proj = take(&a, Is * H);
        g->shared_up_proj = take(&a, Is * H);
        g->shared_down_proj = take(&a, H * Is);
        g->shared_expert_gate = take(&a, H);
    } else {
        const size_t F = (size_t)c->intermediate_size;
        g->gate_proj = take(&a, F * H);
        g->up_proj = take(&a, F * H);
        g->down_proj = take(&a, H * F);
    }
    g->block = base;
    g->block_len = a.used;
    return a.used;
}

qref_status qref_layer_grads_init(qref_layer_grads *g, const qref_model *m, int layer, qref_error *err)
{
    memset(g, 0, sizeof *g);
    if (!m || layer < 0 || layer >= m->cfg.num_layers)
        return qref__fail(err, QREF_EINVAL, "layer gradients: layer %d outside [0, %d)", layer,
                          m ? m->cfg.num_layers : 0);
    const int type = m->cfg.layer_types[layer];
    size_t len = layer_grad_layout(g, &m->cfg, type, NULL);
    qref_real *block = calloc(len, sizeof *block);
    if (!block)
        return qref__fail(err, QREF_ENOMEM, "layer gradients: out of memory for %zu values of layer %d", len, layer);
    layer_grad_layout(g, &m->cfg, type, block);
    return QREF_OK;
}

void qref_layer_grads_free(qref_layer_grads *g)
{
    if (!g)
        return;
    free(g->block);
    memset(g, 0, sizeof *g);
}

/* ---------------------------------------------------------------- small helpers */

static double silu_grad(double x)
{
    const double s = qref__sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
}

static void add_into(qref_real *y, const qref_real *x, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        y[i] += x[i];
}

/* ---------------------------------------------------------------- Gated DeltaNet mixer */

typedef struct {
    qref_real *hm, *qkv, *z, *b, *a, *act, *q, *k, *v, *beta, *g, *core, *y, *state0, *conv0;
    qref_real *dy, *dcore, *dz, *dq, *dk, *dv, *dg, *dbeta, *dstate0, *dact, *dqkv, *dconv0, *db, *da, *gdn_work;
} gdn_bufs;

static void gdn_plan(gdn_bufs *s, arena *ar, const qref_config *c, int n, int chunk)
{
    const size_t N = (size_t)n, H = (size_t)c->hidden_size, Hk = (size_t)c->lin_num_k_heads;
    const size_t Hv = (size_t)c->lin_num_v_heads, Dk = (size_t)c->lin_k_head_dim, Dv = (size_t)c->lin_v_head_dim;
    const size_t C = 2 * Hk * Dk + Hv * Dv, K = (size_t)c->lin_conv_kernel;
    size_t wr = qref_vjp_gdn_recurrent_scratch(n, (int)Dk, (int)Dv);
    size_t wc = qref_vjp_gdn_chunked_scratch(n, chunk, (int)Dk, (int)Dv);
    s->hm = take(ar, N * H);
    s->qkv = take(ar, N * C);
    s->z = take(ar, N * Hv * Dv);
    s->b = take(ar, N * Hv);
    s->a = take(ar, N * Hv);
    s->act = take(ar, N * C);
    s->q = take(ar, N * Hk * Dk);
    s->k = take(ar, N * Hk * Dk);
    s->v = take(ar, N * Hv * Dv);
    s->beta = take(ar, N * Hv);
    s->g = take(ar, N * Hv);
    s->core = take(ar, N * Hv * Dv);
    s->y = take(ar, N * Hv * Dv);
    s->state0 = take(ar, Hv * Dk * Dv);
    s->conv0 = take(ar, (K - 1) * C);
    s->dy = take(ar, N * Hv * Dv);
    s->dcore = take(ar, N * Hv * Dv);
    s->dz = take(ar, N * Hv * Dv);
    s->dq = take(ar, N * Hk * Dk);
    s->dk = take(ar, N * Hk * Dk);
    s->dv = take(ar, N * Hv * Dv);
    s->dg = take(ar, N * Hv);
    s->dbeta = take(ar, N * Hv);
    s->dstate0 = take(ar, Hv * Dk * Dv);
    s->dact = take(ar, N * C);
    s->dqkv = take(ar, N * C);
    s->dconv0 = take(ar, (K - 1) * C);
    s->db = take(ar, N * Hv);
    s->da = take(ar, N * Hv);
    s->gdn_work = take(ar, wr > wc ? wr : wc);
}

/* h (n, H) -> o (n, H), keeping what the backward needs. */
static void gdn_forward(gdn_bufs *s, const qref_config *c, const qref_layer_weights *w, const qref_real *h,
                        const uint8_t *mask, int n, int recurrent, int chunk, qref_real *o)
{
    const int H = c->hidden_size, Hk = c->lin_num_k_heads, Hv = c->lin_num_v_heads;
    const int Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim, K = c->lin_conv_kernel, C = 2 * Hk * Dk + Hv * Dv;
    memcpy(s->hm, h, (size_t)n * H * sizeof *s->hm);
    for (int t = 0; mask && t < n; t++)
        if (!mask[t])
            memset(s->hm + (size_t)t * H, 0, (size_t)H * sizeof *s->hm);
    qref__linear(s->qkv, s->hm, w->in_proj_qkv.real, NULL, n, H, C);
    qref__linear(s->z, s->hm, w->in_proj_z.real, NULL, n, H, Hv * Dv);
    qref__linear(s->b, s->hm, w->in_proj_b, NULL, n, H, Hv);
    qref__linear(s->a, s->hm, w->in_proj_a, NULL, n, H, Hv);
    memset(s->conv0, 0, (size_t)(K - 1) * C * sizeof *s->conv0);
    qref__conv1d_causal_silu(s->act, s->qkv, s->conv0, w->conv_w, n, C, K);
    memset(s->conv0, 0, (size_t)(K - 1) * C * sizeof *s->conv0);   /* the VJP reads the incoming state */
    const qref_real qscale = (qref_real)(1.0 / sqrt((double)Dk));
    for (int t = 0; t < n; t++) {
        const qref_real *row = s->act + (size_t)t * C;
        memcpy(s->q + (size_t)t * Hk * Dk, row, (size_t)Hk * Dk * sizeof *s->q);
        memcpy(s->k + (size_t)t * Hk * Dk, row + Hk * Dk, (size_t)Hk * Dk * sizeof *s->k);
        memcpy(s->v + (size_t)t * Hv * Dv, row + 2 * Hk * Dk, (size_t)Hv * Dv * sizeof *s->v);
        for (int j = 0; j < Hv; j++) {
            const size_t i = (size_t)t * Hv + j;
            s->beta[i] = (qref_real)qref__sigmoid(s->b[i]);
            s->g[i] = (qref_real)(-exp((double)w->A_log[j]) * qref__softplus((double)s->a[i] + (double)w->dt_bias[j]));
        }
    }
    qref__l2norm(s->q, n * Hk, Dk, 1e-6);
    qref__l2norm(s->k, n * Hk, Dk, 1e-6);
    for (size_t i = 0; i < (size_t)n * Hk * Dk; i++)
        s->q[i] *= qscale;
    memset(s->state0, 0, (size_t)Hv * Dk * Dv * sizeof *s->state0);
    if (recurrent)
        qref__gdn_recurrent(s->core, s->q, s->k, s->v, s->g, s->beta, s->state0, n, Hk, Hv, Dk, Dv);
    else
        qref__gdn_chunked(s->core, s->q, s->k, s->v, s->g, s->beta, s->state0, n, Hk, Hv, Dk, Dv, chunk,
                          s->gdn_work);
    memset(s->state0, 0, (size_t)Hv * Dk * Dv * sizeof *s->state0);
    qref__rmsnorm_gated(s->y, s->core, s->z, w->gdn_norm, n * Hv, Dv, c->rms_norm_eps);
    qref__linear(o, s->y, w->out_proj.real, NULL, n, Hv * Dv, H);
}

/* do_ (n, H) -> dh (n, H); weight gradients accumulate into gw. */
static void gdn_backward(gdn_bufs *s, const qref_config *c, const qref_layer_weights *w, qref_layer_grads *gw,
                         const uint8_t *mask, int n, int recurrent, int chunk, const qref_real *do_, qref_real *dh,
                         const qref_vjp_faults *f)
{
    const int H = c->hidden_size, Hk = c->lin_num_k_heads, Hv = c->lin_num_v_heads;
    const int Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim, K = c->lin_conv_kernel, C = 2 * Hk * Dk + Hv * Dv;
    /* out_proj, gated norm */
    qref__vjp_linear(s->dy, gw->out_proj, do_, s->y, w->out_proj.real, n, Hv * Dv, H, 0);
    qref_vjp_rmsnorm_gated(s->dcore, s->dz, gw->gdn_norm, s->dy, s->core, s->z, w->gdn_norm, n * Hv, Dv,
                           c->rms_norm_eps);
    /* the delta rule, from zero state */
    if (recurrent)
        qref__vjp_gdn_recurrent(s->dq, s->dk, s->dv, s->dg, s->dbeta, s->dstate0, s->dcore, NULL, s->q, s->k, s->v,
                                s->g, s->beta, s->state0, n, Hk, Hv, Dk, Dv, s->gdn_work, f);
    else
        qref__vjp_gdn_chunked(s->dq, s->dk, s->dv, s->dg, s->dbeta, s->dstate0, s->dcore, NULL, s->q, s->k, s->v,
                              s->g, s->beta, s->state0, n, Hk, Hv, Dk, Dv, chunk, s->gdn_work, f);
    /* q was scaled after the norm; the norms read the conv outputs */
    const double qscale = 1.0 / sqrt((double)Dk);
    for (size_t i = 0; i < (size_t)n * Hk * Dk; i++)
        s->dq[i] = (qref_real)(s->dq[i] * qscale);
    for (int t = 0; t < n; t++) {
        qref_real *drow = s->dact + (size_t)t * C;
        const qref_real *arow = s->act + (size_t)t * C;
        qref__vjp_l2norm(drow, s->dq + (size_t)t * Hk * Dk, arow, Hk, Dk, 1e-6, f);
        qref__vjp_l2norm(drow + Hk * Dk, s->dk + (size_t)t * Hk * Dk, arow + Hk * Dk, Hk, Dk, 1e-6, f);
        memcpy(drow + 2 * Hk * Dk, s->dv + (size_t)t * Hv * Dv, (size_t)Hv * Dv * sizeof *drow);
    }
    /* beta = sigmoid(b); g = -exp(A_log) softplus(a + dt_bias) */
    for (int t = 0; t < n; t++)
        for (int j = 0; j < Hv; j++) {
            const size_t i = (size_t)t * Hv + j;
            const double bt = s->beta[i], x = (double)s->a[i] + (double)w->dt_bias[j];
            s->db[i] = (qref_real)(f->beta_no_sigmoid ? (double)s->dbeta[i] : s->dbeta[i] * bt * (1.0 - bt));
            const double dsp = x > 20.0 ? 1.0 : qref__sigmoid(x);
            const double da = (double)s->dg[i] * -exp((double)w->A_log[j]) * dsp;
            s->da[i] = (qref_real)da;
            gw->dt_bias[j] += (qref_real)da;
            gw->A_log[j] += (qref_real)((double)s->dg[i] * s->g[i]);
        }
    /* the conv, from zero state */
    qref__vjp_conv1d_causal_silu(s->dqkv, gw->conv_w, s->dconv0, s->dact, NULL, s->qkv, s->conv0, w->conv_w, n, C,
                                 K, f);
    /* the four input projections */
    qref__vjp_linear(dh, gw->in_proj_qkv, s->dqkv, s->hm, w->in_proj_qkv.real, n, H, C, 0);
    qref__vjp_linear(dh, gw->in_proj_z, s->dz, s->hm, w->in_proj_z.real, n, H, Hv * Dv, 1);
    qref__vjp_linear(dh, gw->in_proj_b, s->db, s->hm, w->in_proj_b, n, H, Hv, 1);
    qref__vjp_linear(dh, gw->in_proj_a, s->da, s->hm, w->in_proj_a, n, H, Hv, 1);
    for (int t = 0; mask && t < n; t++)
        if (!mask[t])
            memset(dh + (size_t)t * H, 0, (size_t)H * sizeof *dh);
}

/* ---------------------------------------------------------------- gated full attention mixer */

typedef struct {
    qref_real *qg, *q0, *gate, *k0, *v, *q1, *k1, *q2, *k2, *cos_t, *sin_t, *attn, *ag, *prow;
    qref_real *dag, *dattn, *dq2, *dk2, *dv, *dq1, *dk1, *dqg, *dk0;
    int64_t *pos;
} attn_bufs;

static void attn_plan(attn_bufs *s, arena *ar, const qref_config *c, int n)
{
    const size_t N = (size_t)n, Hq = (size_t)c->num_heads, Hkv = (size_t)c->num_kv_heads, D = (size_t)c->head_dim;
    const size_t half = (size_t)c->rotary_dim / 2;
    s->qg = take(ar, N * Hq * 2 * D);
    s->q0 = take(ar, N * Hq * D);
    s->gate = take(ar, N * Hq * D);
    s->k0 = take(ar, N * Hkv * D);
    s->v = take(ar, N * Hkv * D);
    s->q1 = take(ar, N * Hq * D);
    s->k1 = take(ar, N * Hkv * D);
    s->q2 = take(ar, N * Hq * D);
    s->k2 = take(ar, N * Hkv * D);
    s->cos_t = take(ar, N * half);
    s->sin_t = take(ar, N * half);
    s->attn = take(ar, N * Hq * D);
    s->ag = take(ar, N * Hq * D);
    s->prow = take(ar, N);
    s->dag = take(ar, N * Hq * D);
    s->dattn = take(ar, N * Hq * D);
    s->dq2 = take(ar, N * Hq * D);
    s->dk2 = take(ar, N * Hkv * D);
    s->dv = take(ar, N * Hkv * D);
    s->dq1 = take(ar, N * Hq * D);
    s->dk1 = take(ar, N * Hkv * D);
    s->dqg = take(ar, N * Hq * 2 * D);
    s->dk0 = take(ar, N * Hkv * D);
    s->pos = (int64_t *)(void *)take(ar, 3 * N * sizeof(int64_t) / sizeof(qref_real));
}

/* Causal softmax probabilities of query i, head hq against keys 0..i: p (i + 1). */
static void attn_probs(qref_real *p, const attn_bufs *s, int i, int hq, int Hq, int Hkv, int D, double scale)
{
    const int kvh = hq / (Hq / Hkv);
    const qref_real *qi = s->q2 + ((size_t)i * Hq + hq) * D;
    double m = -INFINITY, sum = 0;
    for (int j = 0; j <= i; j++) {
        double sc = 0;
        const qref_real *kj = s->k2 + ((size_t)j * Hkv + kvh) * D;
        for (int d = 0; d < D; d++)
            sc += (double)qi[d] * kj[d];
        sc *= scale;
        p[j] = (qref_real)sc;
        if (sc > m)
            m = sc;
    }
    for (int j = 0; j <= i; j++)
        sum += exp((double)p[j] - m);
    for (int j = 0; j <= i; j++)
        p[j] = (qref_real)(exp((double)p[j] - m) / sum);
}

static void attn_forward(attn_bufs *s, const qref_config *c, const qref_layer_weights *w, const qref_real *h,
                         const int64_t *pos, int n, qref_real *o)
{
    const int H = c->hidden_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const double scale = 1.0 / sqrt((double)D);
    for (int a = 0; a < 3; a++)
        for (int t = 0; t < n; t++)
            s->pos[(size_t)a * n + t] = pos ? pos[(size_t)a * n + t] : t;
    qref__mrope_angles(s->cos_t, s->sin_t, s->pos, n, c->rotary_dim, c->rope_theta, c->mrope_section,
                       c->mrope_interleaved);
    qref__linear(s->qg, h, w->q_proj.real, NULL, n, H, Hq * 2 * D);
    qref__linear(s->k0, h, w->k_proj.real, NULL, n, H, Hkv * D);
    qref__linear(s->v, h, w->v_proj.real, NULL, n, H, Hkv * D);
    for (size_t r = 0; r < (size_t)n * Hq; r++) {
        memcpy(s->q0 + r * D, s->qg + r * 2 * D, (size_t)D * sizeof *s->q0);
        memcpy(s->gate + r * D, s->qg + r * 2 * D + D, (size_t)D * sizeof *s->gate);
    }
    qref__rmsnorm(s->q1, s->q0, w->q_norm, n * Hq, D, c->rms_norm_eps);
    qref__rmsnorm(s->k1, s->k0, w->k_norm, n * Hkv, D, c->rms_norm_eps);
    memcpy(s->q2, s->q1, (size_t)n * Hq * D * sizeof *s->q2);
    memcpy(s->k2, s->k1, (size_t)n * Hkv * D * sizeof *s->k2);
    qref__rope_apply(s->q2, s->cos_t, s->sin_t, n, Hq, D, c->rotary_dim);
    qref__rope_apply(s->k2, s->cos_t, s->sin_t, n, Hkv, D, c->rotary_dim);
    const int group = Hq / Hkv;
    for (int i = 0; i < n; i++)
        for (int hq = 0; hq < Hq; hq++) {
            attn_probs(s->prow, s, i, hq, Hq, Hkv, D, scale);
            qref_real *oi = s->attn + ((size_t)i * Hq + hq) * D;
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int j = 0; j <= i; j++)
                    acc += (double)s->prow[j] * s->v[((size_t)j * Hkv + hq / group) * D + d];
                oi[d] = (qref_real)acc;
            }
        }
    for (size_t i = 0; i < (size_t)n * Hq * D; i++)
        s->ag[i] = (qref_real)((double)s->attn[i] * qref__sigmoid((double)s->gate[i]));
    qref__linear(o, s->ag, w->o_proj.real, NULL, n, Hq * D, H);
}

static void attn_backward(attn_bufs *s, const qref_config *c, const qref_layer_weights *w, qref_layer_grads *gw,
                          const qref_real *h, int n, const qref_real *do_, qref_real *dh, const qref_vjp_faults *f)
{
    const int H = c->hidden_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim, R = c->rotary_dim;
    const double scale = 1.0 / sqrt((double)D);
    const int group = Hq / Hkv;
    qref__vjp_linear(s->dag, gw->o_proj, do_, s->ag, w->o_proj.real, n, Hq * D, H, 0);
    /* ag = attn * sigmoid(gate): the gate's gradient lands in the second half of each head's dqg row */
    for (size_t r = 0; r < (size_t)n * Hq; r++)
        for (int d = 0; d < D; d++) {
            const size_t i = r * D + d;
            const double sg = qref__sigmoid((double)s->gate[i]);
            s->dattn[i] = (qref_real)((double)s->dag[i] * sg);
            s->dqg[r * 2 * D + D + d] = (qref_real)((double)s->dag[i] * s->attn[i] * sg * (1.0 - sg));
        }
    /* causal softmax attention */
    memset(s->dq2, 0, (size_t)n * Hq * D * sizeof *s->dq2);
    memset(s->dk2, 0, (size_t)n * Hkv * D * sizeof *s->dk2);
    memset(s->dv, 0, (size_t)n * Hkv * D * sizeof *s->dv);
    for (int i = 0; i < n; i++)
        for (int hq = 0; hq < Hq; hq++) {
            const int kvh = hq / group;
            attn_probs(s->prow, s, i, hq, Hq, Hkv, D, scale);
            const qref_real *gi = s->dattn + ((size_t)i * Hq + hq) * D;
            const qref_real *oi = s->attn + ((size_t)i * Hq + hq) * D;
            const qref_real *qi = s->q2 + ((size_t)i * Hq + hq) * D;
            qref_real *dqi = s->dq2 + ((size_t)i * Hq + hq) * D;
            double go = 0;
            for (int d = 0; d < D; d++)
                go += (double)gi[d] * oi[d];
            for (int j = 0; j <= i; j++) {
                const size_t kj = ((size_t)j * Hkv + kvh) * D;
                double dp = 0;
                for (int d = 0; d < D; d++) {
                    dp += (double)gi[d] * s->v[kj + d];
                    s->dv[kj + d] = (qref_real)(s->dv[kj + d] + (double)s->prow[j] * gi[d]);
                }
                const double ds = (double)s->prow[j] * (dp - go) * scale;
                for (int d = 0; d < D; d++) {
                    dqi[d] = (qref_real)(dqi[d] + ds * s->k2[kj + d]);
                    s->dk2[kj + d] = (qref_real)(s->dk2[kj + d] + ds * qi[d]);
                }
            }
        }
    /* rotary, then the q/k norms */
    qref__vjp_rope(s->dq1, s->dq2, s->cos_t, s->sin_t, n, Hq, D, R, f);
    qref__vjp_rope(s->dk1, s->dk2, s->cos_t, s->sin_t, n, Hkv, D, R, f);
    qref_vjp_rmsnorm(s->dq2, gw->q_norm, s->dq1, s->q0, w->q_norm, n * Hq, D, c->rms_norm_eps);   /* dq0 */
    qref_vjp_rmsnorm(s->dk0, gw->k_norm, s->dk1, s->k0, w->k_norm, n * Hkv, D, c->rms_norm_eps);
    for (size_t r = 0; r < (size_t)n * Hq; r++)
        memcpy(s->dqg + r * 2 * D, s->dq2 + r * D, (size_t)D * sizeof *s->dqg);
    qref__vjp_linear(dh, gw->q_proj, s->dqg, h, w->q_proj.real, n, H, Hq * 2 * D, 0);
    qref__vjp_linear(dh, gw->k_proj, s->dk0, h, w->k_proj.real, n, H, Hkv * D, 1);
    qref__vjp_linear(dh, gw->v_proj, s->dv, h, w->v_proj.real, n, H, Hkv * D, 1);
}

/* ---------------------------------------------------------------- MLP and MoE */

typedef struct {
    qref_real *gt, *up, *act, *dact, *dgt, *dup;                /* SwiGLU (n, F) / shared (n, Is) */
    qref_real *logits, *probs, *rw, *gu, *eact, *ey, *sgate, *shared; /* MoE */
    qref_real *dgu, *deact, *dey, *dlog;
    int *idx;
} mlp_bufs;

static void mlp_plan(mlp_bufs *s, arena *ar, const qref_config *c, int n)
{
    const size_t N = (size_t)n, H = (size_t)c->hidden_size;
    const size_t F = c->is_moe ? (size_t)c->shared_expert_intermediate_size : (size_t)c->intermediate_size;
    s->gt = take(ar, N * F);
    s->up = take(ar, N * F);
    s->act = take(ar, N * F);
    s->dact = take(ar, N * F);
    s->dgt = take(ar, N * F);
    s->dup = take(ar, N * F);
    if (c->is_moe) {
        const size_t E = (size_t)c->num_experts, k = (size_t)c->num_experts_per_tok;
        const size_t I = (size_t)c->moe_intermediate_size;
        s->logits = take(ar, N * E);
        s->probs = take(ar, N * E);
        s->rw = take(ar, N * k);
        s->gu = take(ar, N * k * 2 * I);
        s->eact = take(ar, N * k * I);
        s->ey = take(ar, N * k * H);
        s->sgate = take(ar, N);
        s->shared = take(ar, N * H);
        s->dgu = take(ar, 2 * I);
        s->deact = take(ar, I);
        s->dey = take(ar, H);
        s->dlog = take(ar, E);
        s->idx = (int *)(void *)take(ar, (N * k * sizeof(int) + sizeof(qref_real) - 1) / sizeof(qref_real));
    }
}

/* SwiGLU out (n, H) = down(silu(gate h) * up h), keeping gate, up and the product. */
static void swiglu_forward(mlp_bufs *s, const qref_real *h, const qref_real *wg, const qref_real *wu,
                           const qref_real *wd, int n, int H, int F, qref_real *out)
{
    qref__linear(s->gt, h, wg, NULL, n, H, F);
    qref__linear(s->up, h, wu, NULL, n, H, F);
    for (size_t i = 0; i < (size_t)n * F; i++)
        s->act[i] = (qref_real)(qref__silu((double)s->gt[i]) * (double)s->up[i]);
    qref__linear(out, s->act, wd, NULL, n, F, H);
}

/* dout (n, H) -> dh (n, H) accumulated; weight gradients accumulate. */
static void swiglu_backward(mlp_bufs *s, const qref_real *h, const qref_real *wg, const qref_real *wu,
                            const qref_real *wd, qref_real *dwg, qref_real *dwu, qref_real *dwd, int n, int H, int F,
                            const qref_real *dout, qref_real *dh)
{
    qref__vjp_linear(s->dact, dwd, dout, s->act, wd, n, F, H, 0);
    for (size_t i = 0; i < (size_t)n * F; i++) {
        const double gt = s->gt[i];
        s->dgt[i] = (qref_real)((double)s->dact[i] * s->up[i] * silu_grad(gt));
        s->dup[i] = (qref_real)((double)s->dact[i] * qref__silu(gt));
    }
    qref__vjp_linear(dh, dwg, s->dgt, h, wg, n, H, F, 1);
    qref__vjp_linear(dh, dwu, s->dup, h, wu, n, H, F, 1);
}

static void moe_forward(mlp_bufs *s, const qref_config *c, const qref_layer_weights *w, const qref_real *h, int n,
                        qref_real *out)
{
    const int H = c->hidden_size, E = c->num_experts, k = c->num_experts_per_tok, I = c->moe_intermediate_size;
    const int Is = c->shared_expert_intermediate_size;
    qref__linear(s->logits, h, w->router, NULL, n, H, E);
    qref__moe_route(s->idx, s->rw, s->logits, n, E, k);
    for (int t = 0; t < n; t++) {
        const qref_real *lt = s->logits + (size_t)t * E;
        double m = -INFINITY, z = 0;
        for (int e = 0; e < E; e++)
            m = lt[e] > m ? lt[e] : m;
        for (int e = 0; e < E; e++)
            z += exp((double)lt[e] - m);
        for (int e = 0; e < E; e++)
            s->probs[(size_t)t * E + e] = (qref_real)(exp((double)lt[e] - m) / z);
    }
    swiglu_forward(s, h, w->shared_gate_proj.real, w->shared_up_proj.real, w->shared_down_proj.real, n, H, Is, s->shared);
    qref__linear(s->sgate, h, w->shared_expert_gate, NULL, n, H, 1);
    for (int t = 0; t < n; t++) {
        const qref_real *ht = h + (size_t)t * H;
        qref_real *ot = out + (size_t)t * H;
        const double sg = qref__sigmoid((double)s->sgate[t]);
        for (int d = 0; d < H; d++)
            ot[d] = (qref_real)(sg * (double)s->shared[(size_t)t * H + d]);
        for (int r = 0; r < k; r++) {
            const size_t tr = (size_t)t * k + r;
            const int e = s->idx[tr];
            qref_real *gu = s->gu + tr * 2 * I, *act = s->eact + tr * I, *y = s->ey + tr * H;
            qref__linear(gu, ht, w->experts_gate_up.real + (size_t)e * 2 * I * H, NULL, 1, H, 2 * I);
            for (int i = 0; i < I; i++)
                act[i] = (qref_real)(qref__silu((double)gu[i]) * (double)gu[I + i]);
            qref__linear(y, act, w->experts_down.real + (size_t)e * H * I, NULL, 1, I, H);
            for (int d = 0; d < H; d++)
                ot[d] = (qref_real)(ot[d] + (double)s->rw[tr] * y[d]);
        }
    }
}

static void moe_backward(mlp_bufs *s, const qref_config *c, const qref_layer_weights *w, qref_layer_grads *gw,
                         const qref_real *h, int n, const qref_real *dout, qref_real *dh)
{
    const int H = c->hidden_size, E = c->num_experts, k = c->num_experts_per_tok, I = c->moe_intermediate_size;
    const int Is = c->shared_expert_intermediate_size;
    /* shared expert, gated by sigmoid(shared_expert_gate . h) */
    memset(dh, 0, (size_t)n * H * sizeof *dh);
    for (int t = 0; t < n; t++) {
        const qref_real *gt_ = dout + (size_t)t * H, *ht = h + (size_t)t * H;
        qref_real *dht = dh + (size_t)t * H;
        const double sg = qref__sigmoid((double)s->sgate[t]);
        double gs = 0;
        for (int d = 0; d < H; d++)
            gs += (double)gt_[d] * s->shared[(size_t)t * H + d];
        const double ds = gs * sg * (1.0 - sg);
        for (int d = 0; d < H; d++) {
            gw->shared_expert_gate[d] = (qref_real)(gw->shared_expert_gate[d] + ds * ht[d]);
            dht[d] = (qref_real)(dht[d] + ds * w->shared_expert_gate[d]);
        }
        /* routed experts: out += w_r y_r */
        double dwr[64], wsum = 0;
        for (int r = 0; r < k; r++) {
            const size_t tr = (size_t)t * k + r;
            const int e = s->idx[tr];
            const qref_real *y = s->ey + tr * H, *act = s->eact + tr * I, *gu = s->gu + tr * 2 * I;
            const qref_real *wgu = w->experts_gate_up.real + (size_t)e * 2 * I * H, *wd = w->experts_down.real + (size_t)e * H * I;
            qref_real *dwgu = gw->experts_gate_up + (size_t)e * 2 * I * H, *dwd = gw->experts_down + (size_t)e * H * I;
            double a = 0;
            for (int d = 0; d < H; d++) {
                a += (double)gt_[d] * y[d];
                s->dey[d] = (qref_real)((double)s->rw[tr] * gt_[d]);
            }
            dwr[r] = a;
            wsum += a * s->rw[tr];
            qref__vjp_linear(s->deact, dwd, s->dey, act, wd, 1, I, H, 0);
            for (int i = 0; i < I; i++) {
                const double gg = gu[i];
                s->dgu[i] = (qref_real)((double)s->deact[i] * gu[I + i] * silu_grad(gg));
                s->dgu[I + i] = (qref_real)((double)s->deact[i] * qref__silu(gg));
            }
            qref__vjp_linear(dht, dwgu, s->dgu, ht, wgu, 1, H, 2 * I, 1);
        }
        /* w_r = p_r / sum_sel p;  p = softmax(logits) */
        double psel = 0;
        for (int r = 0; r < k; r++)
            psel += s->probs[(size_t)t * E + s->idx[(size_t)t * k + r]];
        for (int e = 0; e < E; e++)
            s->dlog[e] = 0;
        double pdp = 0;
        for (int r = 0; r < k; r++) {
            const int e = s->idx[(size_t)t * k + r];
            const double dp = (dwr[r] - wsum) / psel;
            s->dlog[e] = (qref_real)dp;                 /* dp for now */
            pdp += dp * s->probs[(size_t)t * E + e];
        }
        for (int e = 0; e < E; e++)
            s->dlog[e] = (qref_real)(s->probs[(size_t)t * E + e] * ((double)s->dlog[e] - pdp));
        qref__vjp_linear(dht, gw->router, s->dlog, ht, w->router, 1, H, E, 1);
    }
    /* the shared SwiGLU: its output gradient is sigmoid(gate) dout */
    qref_real *dsout = s->ey;                       /* (n, H) scratch: routed outputs are no longer needed */
    for (int t = 0; t < n; t++) {
        const double sg = qref__sigmoid((double)s->sgate[t]);
        for (int d = 0; d < H; d++)
            dsout[(size_t)t * H + d] = (qref_real)(sg * (double)dout[(size_t)t * H + d]);
    }
    swiglu_backward(s, h, w->shared_gate_proj.real, w->shared_up_proj.real, w->shared_down_proj.real, gw->shared_gate_proj,
                    gw->shared_up_proj, gw->shared_down_proj, n, H, Is, dsout, dh);
}

/* ---------------------------------------------------------------- the layer */

typedef struct {
    qref_real *h, *o, *x2, *h2, *mo, *dx2, *dh2, *dh;
    gdn_bufs gdn;
    attn_bufs attn;
    mlp_bufs mlp;
} layer_bufs;

static size_t layer_plan(layer_bufs *s, qref_real *base, const qref_config *c, int type, int n, int chunk)
{
    arena ar = {base, 0};
    const size_t N = (size_t)n, H = (size_t)c->hidden_size;
    memset(s, 0, sizeof *s);
    s->h = take(&ar, N * H);
    s->o = take(&ar, N * H);
    s->x2 = take(&ar, N * H);
    s->h2 = take(&ar, N * H);
    s->mo = take(&ar, N * H);
    s->dx2 = take(&ar, N * H);
    s->dh2 = take(&ar, N * H);
    s->dh = take(&ar, N * H);
    if (type == QREF_LAYER_LINEAR)
        gdn_plan(&s->gdn, &ar, c, n, chunk);
    else
        attn_plan(&s->attn, &ar, c, n);
    mlp_plan(&s->mlp, &ar, c, n);
    return ar.used;
}

qref_status qref__vjp_decoder_layer(const qref_model *m, int layer, const qref_layer_input *in,
                                    const qref_real *d_out, qref_real *out, qref_real *dx, qref_layer_grads *g,
                                    const qref_vjp_faults *f, qref_error *err)
{
    f = f ? f : &no_faults;
    if (!m || layer < 0 || layer >= m->cfg.num_layers)
        return qref__fail(err, QREF_EINVAL, "decoder layer VJP: layer %d outside [0, %d)", layer,
                          m ? m->cfg.num_layers : 0);
    const qref_config *c = &m->cfg;
    const int type = c->layer_types[layer];
    if (!in || !in->x || in->n < 1 || !d_out || !dx || !g || !g->block)
        return qref__fail(err, QREF_EINVAL, "decoder layer VJP: layer %d needs x, n >= 1, d_out, dx and gradients",
                          layer);
    if (g->type != type || !g->input_norm || (c->is_moe ? !g->router : !g->gate_proj))
        return qref__fail(err, QREF_EINVAL, "decoder layer VJP: the gradients were initialised for another layer kind "
                          "than layer %d", layer);
    if (in->gdn_chunk < 0 || in->gdn_mode < QREF_GDN_AUTO || in->gdn_mode > QREF_GDN_RECURRENT)
        return qref__fail(err, QREF_EINVAL, "decoder layer VJP: invalid GDN mode %d / chunk %d", in->gdn_mode,
                          in->gdn_chunk);
    if (c->is_moe && c->num_experts_per_tok > 64)
        return qref__fail(err, QREF_EUNSUPPORTED, "decoder layer VJP: %d experts per token (at most 64)",
                          c->num_experts_per_tok);
    for (int t = 0; type == QREF_LAYER_FULL && in->mask && t < in->n; t++)
        if (!in->mask[t])
            return qref__fail(err, QREF_EUNSUPPORTED, "decoder layer VJP: layer %d is an attention layer and token %d "
                              "is masked; padding is supported in GDN layers only", layer, t);
    const int n = in->n, H = c->hidden_size, chunk = in->gdn_chunk ? in->gdn_chunk : 64;
    const int recurrent = in->gdn_mode == QREF_GDN_RECURRENT;
    /* the backward products read the matrices as qref_real: BF16 ones are converted for the call */
    qref_layer_weights view;
    qref_real *wbuf;
    qref_status vst = qref__layer_real_view(&m->layers[layer], &view, &wbuf, err);
    if (vst != QREF_OK)
        return vst;
    const qref_layer_weights *w = &view;
    layer_bufs s;
    const size_t len = layer_plan(&s, NULL, c, type, n, chunk);
    qref_real *block = malloc(len * sizeof *block);
    if (!block) {
        free(wbuf);
        return qref__fail(err, QREF_ENOMEM, "decoder layer VJP: out of memory for %zu values (layer %d, %d tokens)",
                          len, layer, n);
    }
    layer_plan(&s, block, c, type, n, chunk);
    memset(g->block, 0, g->block_len * sizeof *g->block);
    const size_t NH = (size_t)n * H;

    /* forward */
    qref__rmsnorm(s.h, in->x, w->input_norm, n, H, c->rms_norm_eps);
    if (type == QREF_LAYER_LINEAR)
        gdn_forward(&s.gdn, c, w, s.h, in->mask, n, recurrent, chunk, s.o);
    else
        attn_forward(&s.attn, c, w, s.h, in->pos, n, s.o);
    for (size_t i = 0; i < NH; i++)
        s.x2[i] = in->x[i] + s.o[i];
    qref__rmsnorm(s.h2, s.x2, w->post_norm, n, H, c->rms_norm_eps);
    if (c->is_moe)
        moe_forward(&s.mlp, c, w, s.h2, n, s.mo);
    else
        swiglu_forward(&s.mlp, s.h2, w->gate_proj.real, w->up_proj.real, w->down_proj.real, n, H, c->intermediate_size, s.mo);
    if (out)
        for (size_t i = 0; i < NH; i++)
            out[i] = s.x2[i] + s.mo[i];

    /* backward: out = x2 + mlp(rmsnorm(x2)) */
    if (c->is_moe) {
        moe_backward(&s.mlp, c, w, g, s.h2, n, d_out, s.dh2);
    } else {
        memset(s.dh2, 0, NH * sizeof *s.dh2);
        swiglu_backward(&s.mlp, s.h2, w->gate_proj.real, w->up_proj.real, w->down_proj.real, g->gate_proj, g->up_proj, g->down_proj,
                        n, H, c->intermediate_size, d_out, s.dh2);
    }
    qref_vjp_rmsnorm(s.dx2, g->post_norm, s.dh2, s.x2, w->post_norm, n, H, c->rms_norm_eps);
    add_into(s.dx2, d_out, NH);
    /* x2 = x + mixer(rmsnorm(x)) */
    if (type == QREF_LAYER_LINEAR)
        gdn_backward(&s.gdn, c, w, g, in->mask, n, recurrent, chunk, s.dx2, s.dh, f);
    else
        attn_backward(&s.attn, c, w, g, s.h, n, s.dx2, s.dh, f);
    qref_vjp_rmsnorm(dx, g->input_norm, s.dh, in->x, w->input_norm, n, H, c->rms_norm_eps);
    add_into(dx, s.dx2, NH);
    free(block);
    free(wbuf);
    return QREF_OK;
}

qref_status qref_vjp_decoder_layer(const qref_model *m, int layer, const qref_layer_input *in,
                                   const qref_real *d_out, qref_real *out, qref_real *dx, qref_layer_grads *g,
                                   qref_error *err)
{
    return qref__vjp_decoder_layer(m, layer, in, d_out, out, dx, g, NULL, err);
}
