/* SPDX-License-Identifier: MIT */
/*
 * Naive reference implementations of the engine's numeric kernels, for tests only.
 *
 * Written from the mathematical definitions, independently of reference/kernels.c: plain
 * loops, every intermediate in double, no BLAS, no attempt at speed. Inputs are qref_real
 * (the same values the kernel under test sees); outputs are double so a test can measure
 * the kernel's error against them. Output first; shapes as in qref_internal.h.
 */
#ifndef LC_TESTS_NAIVE_H
#define LC_TESTS_NAIVE_H

#include <stdint.h>

#include "qref.h"

/* y (n, out) = x (n, in) W (out, in)^T + b (out); b may be NULL. */
void naive_linear(double *y, const qref_real *x, const qref_real *w, const qref_real *b, int n,
                  int in, int out);

/* o (n, dim) = x / sqrt(mean(x^2) + eps) * (1 + w) */
void naive_rmsnorm(double *o, const qref_real *x, const qref_real *w, int n, int dim, double eps);
/* o (n, dim) = x / sqrt(mean(x^2) + eps) * w * z / (1 + exp(-z)) */
void naive_rmsnorm_gated(double *o, const qref_real *x, const qref_real *z, const qref_real *w,
                         int n, int dim, double eps);
/* o (n, dim) = (x - mean) / sqrt(var + eps) * w + b; b may be NULL. */
void naive_layernorm(double *o, const qref_real *x, const qref_real *w, const qref_real *b, int n,
                     int dim, double eps);
/* o (n, dim) = x / sqrt(sum(x^2) + eps) */
void naive_l2norm(double *o, const qref_real *x, int n, int dim, double eps);

/* Rotary on x (n, heads, D) with positions pos (3, n); only the first R dims rotate.
 * Derived per output dimension d: frequency index j = d mod R/2, theta_d = p * theta^(-2j/R)
 * where p is the T, H or W position chosen for j (interleaved or contiguous sections, the
 * contiguous layout spelled as a split of the full R dims into s0|s1|s2|s0|s1|s2). */
void naive_rope(double *o, const qref_real *x, const int64_t *pos, int n, int heads, int D, int R,
                double theta, const int section[3], int interleaved);
/* The axis (0 T, 1 H, 2 W) that drives rotary dim d in [0, R), as naive_rope uses it. */
int naive_rope_axis(int d, int R, const int section[3], int interleaved);

/* Causal depthwise conv + SiLU over hist (K-1, C) followed by x (n, C); o (n, C). */
void naive_conv_silu(double *o, const qref_real *hist, const qref_real *x, const qref_real *w,
                     int n, int C, int K);

/* Gated delta rule in matrix form, S (Hv, Dk, Dv) in double, updated in place:
 *   S <- exp(g) (I - beta k k^T) S + beta k v^T;  o = S^T q.  o (n, Hv, Dv). */
void naive_delta_rule(double *o, double *S, const qref_real *q, const qref_real *k,
                      const qref_real *v, const qref_real *g, const qref_real *beta, int n,
                      int Hk, int Hv, int Dk, int Dv);

/* Attention with keys repeated per group (repeat_kv), an additive mask (-inf where a key is
 * in the future or masked out) and a two-pass softmax. Rows with no visible key give 0.
 * o (n, Hq, D). */
void naive_attention(double *o, const qref_real *q, const qref_real *kc, const qref_real *vc,
                     const uint8_t *kmask, int n, int Tk, int q_off, int Hq, int Hkv, int D,
                     double scale);

/* Routing by sorting all experts by (probability desc, index asc); idx (n, k), w (n, k). */
void naive_moe_route(int *idx, double *w, const qref_real *logits, int n, int E, int k);

#endif /* LC_TESTS_NAIVE_H */
