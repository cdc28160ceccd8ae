/* SPDX-License-Identifier: MIT */
/*
 * Vectorised float transcendentals of the float build: the exponential and what the engine
 * builds on it (SiLU, sigmoid, the tanh form of GELU, softmax numerators). The double build
 * calls only the double softmax numerators (attention over long key runs); elsewhere it keeps
 * libm's double functions.
 *
 * A value's result depends only on that value (no lane mixes with another, the same IEEE
 * operations in vector lanes and in the scalar tail), so it is the same on any thread count
 * and wherever an array is cut. On x86-64 with GNU ifuncs the loops are compiled for AVX-512,
 * AVX2 and the SSE2 baseline and the loader picks one for the CPU.
 *
 * Accuracy against libm in double (every float in [-87, 88]): exp 1.01 ulp at worst, SiLU
 * 1.49, tanh-GELU 1.82; test_kernels bounds a sample of them at 2 ulp (exp) and 4 ulp (the
 * others), or 2^-24 absolute where they pass through 0. Inputs beyond the float range give
 * the limits (exp: 0 below -87.33, +inf above 88.72); NaN stays NaN.
 */
#ifndef QREF_VECMATH_H
#define QREF_VECMATH_H

/* The float exponential's constants, shared by vecmath.c and the attention tiles' numerators
 * (attention_tiles.c): n = round(a log2 e) by adding and subtracting EXPF_SHIFT (1.5 2^23),
 * r = a - n ln 2 with ln 2 in two parts (n times the first is exact), exp(r) by its Taylor
 * polynomial of degree 7; below EXPF_LO the result would be subnormal. */
#define QREF__EXPF_LO (-87.3365448f)
#define QREF__EXPF_HI 88.7228391f
#define QREF__EXPF_SHIFT 12582912.0f
#define QREF__EXPF_LOG2E 1.44269504f
#define QREF__EXPF_LN2_HI 0.693359375f
#define QREF__EXPF_LN2_LO (-2.12194440e-4f)

#include <stddef.h>

/* y[i] = exp(x[i]); y may == x. */
void qref__vexpf(float *y, const float *x, size_t n);

/* y[i] = exp((x[i] - m) * scale) for a row of scores x with maximum m (x[i] <= m, -inf gives
 * 0); returns the sum of the y[i] accumulated in double (in lanes, a fixed order). */
double qref__vsoftmax_expf(float *y, const float *x, size_t n, float m, float scale);

/* The double build's softmax numerators: y[i] = exp(x[i] * scale - ms) for scores x[i] <= m,
 * ms = m * scale (-inf gives 0); returns their sum in a fixed order (16 lanes). Within 2 ulp
 * of libm's exp (0 where that is below 2^-1022). y may == x. */
double qref__vsoftmax_exp(double *y, const double *x, size_t n, double ms, double scale);

/* y[i] = silu(x[i]) = x / (1 + exp(-x)), times mul[i] when mul is not NULL; y may == x. */
void qref__vsiluf(float *y, const float *x, const float *mul, size_t n);

/* y[i] = x[i] * sigmoid(g[i]); y may == x. */
void qref__vgatef(float *y, const float *x, const float *g, size_t n);

/* y[i] = gelu_tanh(x[i]) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); y may == x. */
void qref__vgelu_tanhf(float *y, const float *x, size_t n);

#endif /* QREF_VECMATH_H */
