/* SPDX-License-Identifier: MIT */
/*
 * Internals of the backward passes (qref__vjp_ prefix): the planted-fault switches the tests
 * use to prove that the gradient checks bite, and the fault-taking forms of the public VJPs.
 * Not installed, not part of the engine's API; production callers use qref_vjp.h, whose
 * functions are these with no fault.
 */
#ifndef QREF_VJP_INTERNAL_H
#define QREF_VJP_INTERNAL_H

#include "qref_vjp.h"

/* Deliberate backward-pass bugs, one flag each (0 = correct). NULL means none. */
#define QREF_VJP_FAULT_MAP(X)                                                                      \
    X(gdn_no_decay, "the decay is not applied to the state gradient in the backward recurrence")   \
    X(beta_no_sigmoid, "beta's gradient misses the sigmoid derivative (db = dbeta)")              \
    X(conv_state_dropped, "the conv-state gradient is dropped at a chunk edge (dstate0 = 0)")     \
    X(rope_wrong_way, "the rotary backward rotates forward (+angle) instead of back")             \
    X(l2norm_no_eps, "the l2-norm backward leaves out its epsilon (singular on zero rows)")

typedef struct {
#define QREF__VJP_FAULT_FIELD(name, text) int name;
    QREF_VJP_FAULT_MAP(QREF__VJP_FAULT_FIELD)
#undef QREF__VJP_FAULT_FIELD
} qref_vjp_faults;

void qref__vjp_gdn_recurrent(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                             qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                             const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                             const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                             int Dv, qref_real *scratch, const qref_vjp_faults *f);
void qref__vjp_gdn_chunked(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                           qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                           const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                           const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                           int Dv, int chunk, qref_real *scratch, const qref_vjp_faults *f);
void qref__vjp_conv1d_causal_silu(qref_real *dx, qref_real *dw, qref_real *dstate0, const qref_real *d_out,
                                  const qref_real *d_state, const qref_real *x, const qref_real *state0,
                                  const qref_real *w, int n, int C, int K, const qref_vjp_faults *f);
void qref__vjp_l2norm(qref_real *dx, const qref_real *dy, const qref_real *x, int n, int dim, double eps,
                      const qref_vjp_faults *f);
void qref__vjp_rope(qref_real *dx, const qref_real *dy, const qref_real *cos_t, const qref_real *sin_t, int n,
                    int heads, int D, int R, const qref_vjp_faults *f);
qref_status qref__vjp_decoder_layer(const qref_model *m, int layer, const qref_layer_input *in,
                                    const qref_real *d_out, qref_real *out, qref_real *dx, qref_layer_grads *g,
                                    const qref_vjp_faults *f, qref_error *err);

/* Linear layer y (n, out) = x (n, in) . W (out, in)^T, backward: dx (n, in) = dy . W (beta 0:
 * overwrite, 1: accumulate; dx may be NULL), dW (out, in) += dy^T . x (dW may be NULL). */
void qref__vjp_linear(qref_real *dx, qref_real *dW, const qref_real *dy, const qref_real *x, const qref_real *W,
                      int n, int in, int out, int accumulate_dx);

#endif /* QREF_VJP_INTERNAL_H */
