/* SPDX-License-Identifier: MIT */
/*
 * qref_vjp — reference backward passes (vector-Jacobian products) of the Qwen3.5 building
 * blocks, in the engine's scalar type (qref_real).
 *
 * Each function takes the forward's inputs and the gradient of a scalar loss with respect to
 * the forward's outputs ("d_out", and "d_state" where a state comes out), and writes the
 * gradients with respect to the forward's inputs. Where a function says so, an output
 * gradient may be NULL: the loss does not depend on that output. Gradients are written, never
 * accumulated: each output array is overwritten entirely.
 *
 * Contracts follow the forward kernels of the engine (qref_internal.h):
 *   - the gated delta rule takes q, k already L2-normalised and q already scaled by 1/sqrt(Dk);
 *   - value head h reads key head h / (Hv/Hk), so dq, dk sum over the value heads of a key head;
 *   - the causal conv includes its SiLU and carries K-1 rows of state (row 0 oldest).
 * Kernels never allocate: scratch is passed in, sized by the matching *_scratch function.
 * The decoder-layer VJP is the API boundary: it makes one allocation per call (its scratch)
 * and frees it before returning.
 *
 * Shape legend: n = tokens, H = hidden, Hq/Hkv/D = attention heads and head dim, R = rotary
 * dims, Hk/Hv/Dk/Dv = GDN key/value heads and dims, C = conv channels, K = conv kernel,
 * F = MLP width, E = experts, I = expert width, Is = shared expert width.
 */
#ifndef QREF_VJP_H
#define QREF_VJP_H

#include <stddef.h>
#include <stdint.h>

#include "qref.h"

/* ---------------------------------------------------------------- gated delta rule */

/* Forward (qref__gdn_recurrent / qref__gdn_chunked): per value head h, token t,
 *   S = S exp(g_t); delta = beta_t (v_t - S^T k_t); S += k_t delta^T; o_t = S^T q_t
 * from the initial state S0 (Hv, Dk, Dv) to the final state.
 * Inputs: q, k (n, Hk, Dk); v (n, Hv, Dv); g, beta (n, Hv); state0 (Hv, Dk, Dv);
 *         d_out (n, Hv, Dv) or NULL; d_state (Hv, Dk, Dv) gradient of the final state, or NULL.
 * Outputs: dq, dk (n, Hk, Dk); dv (n, Hv, Dv); dg, dbeta (n, Hv); dstate0 (Hv, Dk, Dv).
 *
 * The recurrent form stores the state before every token and walks back token by token;
 * scratch: qref_vjp_gdn_recurrent_scratch(n, Dk, Dv) elements. */
size_t qref_vjp_gdn_recurrent_scratch(int n, int Dk, int Dv);
void qref_vjp_gdn_recurrent(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                            qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                            const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                            const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                            int Dv, qref_real *scratch);

/* Same contract through the chunked (WY / UT-transform) algorithm in chunks of `chunk` tokens:
 * the state at every chunk start is kept, and each chunk's backward differentiates its matrix
 * form (the unit lower-triangular solve included) from the gradient of the chunk's final state.
 * scratch: qref_vjp_gdn_chunked_scratch(n, chunk, Dk, Dv) elements. */
size_t qref_vjp_gdn_chunked_scratch(int n, int chunk, int Dk, int Dv);
void qref_vjp_gdn_chunked(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                          qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                          const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                          const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                          int Dv, int chunk, qref_real *scratch);

/* ---------------------------------------------------------------- causal depthwise conv + SiLU */

/* Forward (qref__conv1d_causal_silu): out[t][c] = silu(sum_j w[c][j] in[t - (K-1) + j][c]) with
 * in[< 0] read from state0 (K-1, C); the outgoing state is the last K-1 rows of (state0 | x).
 * Inputs: x (n, C); state0 (K-1, C); w (C, K); d_out (n, C) or NULL; d_state (K-1, C) gradient
 *         of the outgoing state, or NULL.
 * Outputs: dx (n, C); dw (C, K); dstate0 (K-1, C): what flows into the previous chunk.
 * Chained over chunks (last chunk first, each chunk's dstate0 as the previous chunk's d_state)
 * this is the backward of a sequence processed in pieces. */
void qref_vjp_conv1d_causal_silu(qref_real *dx, qref_real *dw, qref_real *dstate0, const qref_real *d_out,
                                 const qref_real *d_state, const qref_real *x, const qref_real *state0,
                                 const qref_real *w, int n, int C, int K);

/* ---------------------------------------------------------------- norms */

/* y = x / sqrt(sum(x^2) + eps) per row of dim values: dx (n, dim) from dy (n, dim), x (n, dim).
 * Exact on zero rows (dx = dy / sqrt(eps)). dx may alias dy. */
void qref_vjp_l2norm(qref_real *dx, const qref_real *dy, const qref_real *x, int n, int dim, double eps);

/* o = x / sqrt(mean(x^2) + eps) * (1 + w): dx (n, dim), dw (dim) summed over rows. */
void qref_vjp_rmsnorm(qref_real *dx, qref_real *dw, const qref_real *d_out, const qref_real *x,
                      const qref_real *w, int n, int dim, double eps);

/* o = x / sqrt(mean(x^2) + eps) * w * silu(z): dx, dz (n, dim), dw (dim) summed over rows. */
void qref_vjp_rmsnorm_gated(qref_real *dx, qref_real *dz, qref_real *dw, const qref_real *d_out,
                            const qref_real *x, const qref_real *z, const qref_real *w, int n, int dim,
                            double eps);

/* ---------------------------------------------------------------- rotary */

/* Rotate-half rotary on the first R dims of each head (qref__rope_apply), tables cos/sin
 * (n, R/2) from qref__mrope_angles (interleaved 3-axis MRoPE or any other angles): the VJP
 * rotates the gradient back by the same angles. dx, dy (n, heads, D); dx may alias dy. */
void qref_vjp_rope(qref_real *dx, const qref_real *dy, const qref_real *cos_t, const qref_real *sin_t, int n,
                   int heads, int D, int R);

/* ---------------------------------------------------------------- whole decoder layers */

/* Gradients of every weight of one decoder layer, laid out as qref_layer_weights (shapes
 * there); only the fields of the layer's kind (GDN or attention; MLP or MoE) are non-NULL.
 * All live in one block owned by the struct. */
typedef struct {
    int type;
    qref_real *block;
    size_t block_len;
    qref_real *input_norm, *post_norm;
    qref_real *in_proj_qkv, *in_proj_z, *in_proj_b, *in_proj_a, *conv_w, *dt_bias, *A_log, *gdn_norm, *out_proj;
    qref_real *q_proj, *k_proj, *v_proj, *o_proj, *q_norm, *k_norm;
    qref_real *gate_proj, *up_proj, *down_proj;
    qref_real *router, *experts_gate_up, *experts_down, *shared_gate_proj, *shared_up_proj, *shared_down_proj,
        *shared_expert_gate;
} qref_layer_grads;

/* Allocates the gradient block for layer `layer` of m (ENOMEM, EINVAL naming the layer).
 * Free with qref_layer_grads_free (safe on a zeroed struct and twice). */
qref_status qref_layer_grads_init(qref_layer_grads *g, const qref_model *m, int layer, qref_error *err);
void qref_layer_grads_free(qref_layer_grads *g);

/* One decoder layer as transformers' decoder layer computes it over one sequence, from zero
 * conv / recurrent state and an empty KV cache:
 *   h = rmsnorm(x) (* mask); x2 = x + mixer(h); out = x2 + mlp(rmsnorm(x2))
 * where the mixer is the Gated DeltaNet (conv, l2norm, gated delta rule, gated RMSNorm) or the
 * gated full attention (q/k norms, rotary with 3-axis positions, causal softmax, sigmoid gate),
 * and the MLP is the SwiGLU MLP or the MoE block (softmax router, top-k renormalised, gated
 * shared expert).
 *   x      (n, H) layer input
 *   mask   (n) GDN layers: 0 zeroes the normed input of a padded position before the
 *          projections (transformers' apply_mask_to_padding_states); NULL = every token real.
 *          An attention layer accepts no masked token (EUNSUPPORTED)
 *   pos    (3, n) T/H/W positions for attention layers, NULL = 0..n-1 on every axis
 *   gdn_mode / gdn_chunk: QREF_GDN_RECURRENT or QREF_GDN_CHUNKED (AUTO = chunked), chunk 0 = 64
 * Outputs: out (n, H) the forward output (NULL to skip); dx (n, H); g (from
 * qref_layer_grads_init for this layer). One allocation per call (scratch, freed on return). */
typedef struct {
    const qref_real *x;
    int n;
    const uint8_t *mask;
    const int64_t *pos;
    int gdn_mode;
    int gdn_chunk;
} qref_layer_input;

qref_status qref_vjp_decoder_layer(const qref_model *m, int layer, const qref_layer_input *in,
                                   const qref_real *d_out, qref_real *out, qref_real *dx, qref_layer_grads *g,
                                   qref_error *err);

#endif /* QREF_VJP_H */
