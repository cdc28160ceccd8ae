/* SPDX-License-Identifier: MIT */
/*
 * Floating-point operations of a forward pass, counted from the configuration (one multiply
 * and one add per multiply-accumulate, as matrix products are usually counted): the matrix
 * products of the projections, attention scores and values, the chunked delta rule's
 * products (or the recurrent update at one token), the vision tower's products. Norms,
 * rotary, gates and softmax are left out (a few percent at most). Used by benchmarks to turn
 * times into GFLOP/s.
 */
#include "qref_internal.h"

/* Per token: projections of one layer and its MLP (or MoE with its top-k experts). */
static double layer_linear_flops(const qref_config *c, int type)
{
    const double H = c->hidden_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const double Hk = c->lin_num_k_heads, Hv = c->lin_num_v_heads, Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim;
    double f = type == QREF_LAYER_LINEAR ? 2 * H * (2 * Hk * Dk + 2 * Hv * Dv + 2 * Hv) + 2 * Hv * Dv * H
                                         : 2 * H * (2 * Hq * D + 2 * Hkv * D) + 2 * Hq * D * H;
    if (c->is_moe) {
        const double E = c->num_experts, k = c->num_experts_per_tok, I = c->moe_intermediate_size;
        const double Is = c->shared_expert_intermediate_size;
        f += 2 * H * E + k * 6 * H * I + 6 * H * Is + 2 * H;
    } else {
        f += 6 * H * c->intermediate_size;
    }
    return f;
}

double qref_forward_flops(const qref_config *c, int past, int n, int chunk, int with_logits)
{
    const double Hq = c->num_heads, D = c->head_dim, Hv = c->lin_num_v_heads;
    const double Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim;
    const double N = n, P = past;
    const int Lc = chunk > 0 ? chunk : 64;
    double f = 0;
    for (int l = 0; l < c->num_layers; l++) {
        const int type = c->layer_types[l];
        f += N * layer_linear_flops(c, type);
        if (type != QREF_LAYER_LINEAR) {
            f += 4 * Hq * D * (N * P + N * (N + 1) / 2);    /* scores and values, causal */
            continue;
        }
        if (n == 1) {
            f += Hv * 6 * Dk * Dv;                          /* recurrent update */
            continue;
        }
        for (int t0 = 0; t0 < n; t0 += Lc) {                /* chunked products per head */
            const double L = n - t0 < Lc ? n - t0 : Lc;
            f += Hv * (L * L * (5 * Dk + 3 * Dv) + 6 * L * Dk * Dv);
        }
    }
    if (with_logits)
        f += N * 2.0 * c->hidden_size * c->vocab_size;
    return f;
}

double qref_vision_flops(const qref_config *c, const int grid_thw[3])
{
    const qref_vision_config *v = &c->vision;
    const double Vh = v->hidden_size, Vi = v->intermediate_size, M2 = (double)v->spatial_merge_size * v->spatial_merge_size;
    const double F = (double)grid_thw[1] * grid_thw[2], N = grid_thw[0] * F;
    const double Pd = (double)v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    double f = 2 * N * Pd * Vh;
    f += v->depth * N * (2 * Vh * 3 * Vh + 2 * Vh * Vh + 4 * Vh * Vi) + qref_vision_attention_flops(c, grid_thw);
    f += 2 * (N / M2) * (M2 * Vh) * (M2 * Vh) + 2 * (N / M2) * M2 * Vh * v->out_hidden_size;
    return f;
}

double qref_vision_attention_flops(const qref_config *c, const int grid_thw[3])
{
    const double F = (double)grid_thw[1] * grid_thw[2];
    return c->vision.depth * grid_thw[0] * 4 * F * F * c->vision.hidden_size;  /* scores and values */
}
