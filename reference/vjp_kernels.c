/* SPDX-License-Identifier: MIT */
/*
 * Backward passes of the small kernels: linear, the L2 norm, the (1 + w) and gated RMSNorms,
 * rotate-half rotary, and the causal depthwise conv with carried state.
 *
 * Per-row reductions accumulate in double and round once into qref_real, as the forward
 * kernels do. Nothing here allocates.
 *
 * Shape legend: n = rows (tokens, or tokens x heads), dim = row width, D = head dim, R = rotary
 * dims, C = channels, K = conv kernel.
 */
#include <assert.h>
#include <cblas.h>
#include <string.h>

#include "qref_internal.h"
#include "qref_vjp_internal.h"

#if defined(QREF_PRECISION_F64)
#define QREF__GEMM cblas_dgemm
#else
#define QREF__GEMM cblas_sgemm
#endif

static const qref_vjp_faults no_faults;

/* ---------------------------------------------------------------- linear */

void qref__vjp_linear(qref_real *dx, qref_real *dW, const qref_real *dy, const qref_real *x, const qref_real *W,
                      int n, int in, int out, int accumulate_dx)
{
    assert(n >= 0 && in > 0 && out > 0);
    if (n == 0)
        return;
    if (dx)     /* dx (n, in) = dy (n, out) . W (out, in) */
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1, dy, out, W, in,
                   accumulate_dx ? 1 : 0, dx, in);
    if (dW)     /* dW (out, in) += dy^T (out, n) . x (n, in) */
        QREF__GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1, dy, out, x, in, 1, dW, in);
}

/* ---------------------------------------------------------------- L2 norm */

void qref__vjp_l2norm(qref_real *dx, const qref_real *dy, const qref_real *x, int n, int dim, double eps,
                      const qref_vjp_faults *f)
{
    f = f ? f : &no_faults;
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + (size_t)t * dim;          /* (dim) */
        const qref_real *gr = dy + (size_t)t * dim;         /* (dim) */
        qref_real *dr = dx + (size_t)t * dim;               /* (dim) */
        double ss = 0, xg = 0;
        for (int i = 0; i < dim; i++) {
            ss += (double)xr[i] * xr[i];
            xg += (double)xr[i] * gr[i];
        }
        /* y = x r, r = (ss + eps)^-1/2:  dx = r dy - x r^3 (x . dy) */
        const double r = 1.0 / sqrt(f->l2norm_no_eps ? ss : ss + eps);
        const double r3xg = r * r * r * xg;
        for (int i = 0; i < dim; i++)
            dr[i] = (qref_real)(r * (double)gr[i] - (double)xr[i] * r3xg);
    }
}

void qref_vjp_l2norm(qref_real *dx, const qref_real *dy, const qref_real *x, int n, int dim, double eps)
{
    qref__vjp_l2norm(dx, dy, x, n, dim, eps, NULL);
}

/* ---------------------------------------------------------------- RMSNorms */

/* Shared backward of o = x r * s (s per element, r = (mean(x^2) + eps)^-1/2) given
 * dn = d_out * s (the gradient of the normalised row n = x r): dx = r dn - x r^3 mean(x dn). */
static void rms_backward_row(qref_real *dxr, const double *dn, const qref_real *xr, int dim, double r)
{
    double xdn = 0;
    for (int i = 0; i < dim; i++)
        xdn += (double)xr[i] * dn[i];
    const double c = r * r * r * xdn / dim;
    for (int i = 0; i < dim; i++)
        dxr[i] = (qref_real)(r * dn[i] - (double)xr[i] * c);
}

#define QREF__VJP_MAX_DIM 8192

void qref_vjp_rmsnorm(qref_real *dx, qref_real *dw, const qref_real *d_out, const qref_real *x,
                      const qref_real *w, int n, int dim, double eps)
{
    assert(dim > 0 && dim <= QREF__VJP_MAX_DIM);
    double dn[QREF__VJP_MAX_DIM], dws[QREF__VJP_MAX_DIM];
    for (int i = 0; i < dim; i++)
        dws[i] = 0;
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + (size_t)t * dim;          /* (dim) */
        const qref_real *gr = d_out + (size_t)t * dim;      /* (dim) */
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)xr[i] * xr[i];
        const double r = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) {
            dn[i] = (double)gr[i] * (1.0 + (double)w[i]);
            dws[i] += (double)gr[i] * (double)xr[i] * r;
        }
        rms_backward_row(dx + (size_t)t * dim, dn, xr, dim, r);
    }
    for (int i = 0; i < dim; i++)
        dw[i] = (qref_real)dws[i];
}

void qref_vjp_rmsnorm_gated(qref_real *dx, qref_real *dz, qref_real *dw, const qref_real *d_out,
                            const qref_real *x, const qref_real *z, const qref_real *w, int n, int dim,
                            double eps)
{
    assert(dim > 0 && dim <= QREF__VJP_MAX_DIM);
    double dn[QREF__VJP_MAX_DIM], dws[QREF__VJP_MAX_DIM];
    for (int i = 0; i < dim; i++)
        dws[i] = 0;
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + (size_t)t * dim;          /* (dim) */
        const qref_real *zr = z + (size_t)t * dim;          /* (dim) */
        const qref_real *gr = d_out + (size_t)t * dim;      /* (dim) */
        qref_real *dzr = dz + (size_t)t * dim;              /* (dim) */
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)xr[i] * xr[i];
        const double r = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) {
            const double zi = zr[i], sg = qref__sigmoid(zi), silu = zi * sg;
            const double nrm = (double)xr[i] * r, g = gr[i];
            dn[i] = g * (double)w[i] * silu;
            dws[i] += g * nrm * silu;
            /* silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z))) */
            dzr[i] = (qref_real)(g * nrm * (double)w[i] * sg * (1.0 + zi * (1.0 - sg)));
        }
        rms_backward_row(dx + (size_t)t * dim, dn, xr, dim, r);
    }
    for (int i = 0; i < dim; i++)
        dw[i] = (qref_real)dws[i];
}

/* ---------------------------------------------------------------- rotary */

void qref__vjp_rope(qref_real *dx, const qref_real *dy, const qref_real *cos_t, const qref_real *sin_t, int n,
                    int heads, int D, int R, const qref_vjp_faults *f)
{
    assert(R > 0 && R % 2 == 0 && R <= D);
    f = f ? f : &no_faults;
    const int half = R / 2;
    /* forward: y1 = x1 c - x2 s, y2 = x2 c + x1 s; backward: the transpose, a rotation by -angle */
    const double dir = f->rope_wrong_way ? -1.0 : 1.0;
    for (int t = 0; t < n; t++) {
        const qref_real *c = cos_t + (size_t)t * half;      /* (R/2) */
        const qref_real *s = sin_t + (size_t)t * half;      /* (R/2) */
        for (int h = 0; h < heads; h++) {
            const size_t off = ((size_t)t * heads + h) * D;
            const qref_real *gy = dy + off;                 /* (D) */
            qref_real *gx = dx + off;                       /* (D) */
            for (int i = 0; i < half; i++) {
                const double g1 = gy[i], g2 = gy[i + half], si = dir * (double)s[i];
                gx[i] = (qref_real)(g1 * c[i] + g2 * si);
                gx[i + half] = (qref_real)(g2 * c[i] - g1 * si);
            }
            if (gx != gy)
                memcpy(gx + R, gy + R, (size_t)(D - R) * sizeof *gx);
        }
    }
}

void qref_vjp_rope(qref_real *dx, const qref_real *dy, const qref_real *cos_t, const qref_real *sin_t, int n,
                   int heads, int D, int R)
{
    qref__vjp_rope(dx, dy, cos_t, sin_t, n, heads, D, R, NULL);
}

/* ---------------------------------------------------------------- causal conv */

void qref__vjp_conv1d_causal_silu(qref_real *dx, qref_real *dw, qref_real *dstate0, const qref_real *d_out,
                                  const qref_real *d_state, const qref_real *x, const qref_real *state0,
                                  const qref_real *w, int n, int C, int K, const qref_vjp_faults *f)
{
    assert(K >= 1 && C > 0 && n >= 0);
    f = f ? f : &no_faults;
    const int S = K - 1;                                    /* state rows */
    /* the concatenated input (state0 | x) has S + n rows; row r < S is state0[r], else x[r - S] */
#define IN(r, c) ((r) < S ? state0[(size_t)(r) * C + (c)] : x[(size_t)((r) - S) * C + (c)])
#define DIN(r, c) (*((r) < S ? &dstate0[(size_t)(r) * C + (c)] : &dx[(size_t)((r) - S) * C + (c)]))
    memset(dx, 0, (size_t)n * C * sizeof *dx);
    if (S)
        memset(dstate0, 0, (size_t)S * C * sizeof *dstate0);
    /* the outgoing state is the last S rows of (state0 | x) */
    for (int r = 0; S && d_state && r < S; r++)
        for (int c = 0; c < C; c++)
            DIN(n + r, c) += d_state[(size_t)r * C + c];
    for (int c = 0; c < C; c++) {
        const qref_real *wc = w + (size_t)c * K;            /* (K) */
        double dwc[64];
        assert(K <= 64);
        for (int j = 0; j < K; j++)
            dwc[j] = 0;
        for (int t = 0; d_out && t < n; t++) {
            double a = 0;                                   /* pre-activation of out[t][c] */
            for (int j = 0; j < K; j++)
                a += (double)wc[j] * IN(t + j, c);
            const double sg = qref__sigmoid(a);
            const double da = (double)d_out[(size_t)t * C + c] * sg * (1.0 + a * (1.0 - sg));
            for (int j = 0; j < K; j++) {
                dwc[j] += da * IN(t + j, c);
                DIN(t + j, c) += (qref_real)(da * (double)wc[j]);
            }
        }
        for (int j = 0; j < K; j++)
            dw[(size_t)c * K + j] = (qref_real)dwc[j];
    }
#undef IN
#undef DIN
    if (f->conv_state_dropped && S)
        memset(dstate0, 0, (size_t)S * C * sizeof *dstate0);
}

void qref_vjp_conv1d_causal_silu(qref_real *dx, qref_real *dw, qref_real *dstate0, const qref_real *d_out,
                                 const qref_real *d_state, const qref_real *x, const qref_real *state0,
                                 const qref_real *w, int n, int C, int K)
{
    qref__vjp_conv1d_causal_silu(dx, dw, dstate0, d_out, d_state, x, state0, w, n, C, K, NULL);
}
