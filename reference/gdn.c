/* SPDX-License-Identifier: MIT */
/*
 * The gated delta rule of the Gated DeltaNet layers, in its recurrent form (decode, and the
 * reference the chunked form is tested against) and its chunked form (prefill: matrix
 * products per chunk). Both run value heads in parallel: a head's state is its own, so the
 * work per head is exactly the one-thread loop's.
 *
 * Shape legend: n = tokens, Hk/Hv = key/value heads, Dk/Dv = their dims, L = tokens in one
 * chunk.
 */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "qref_blas.h"
#include "qref_internal.h"
#include "vecmath.h"

/* Value columns handled per pass by the recurrent form (double accumulators on the stack). */
#define QREF__COL_BLOCK 64

/* ---------------------------------------------------------------- gated delta rule, recurrent */

/* Items: value heads; each runs its tokens in order on its own slice of the state. */
typedef struct {
    qref_real *out, *state;
    const qref_real *q, *k, *v, *g, *beta;
    int n, Hk, Hv, Dk, Dv, chunk;
    qref_real *scratch;
    size_t per_worker;
} gdn_job;

static void gdn_recurrent_head(void *ctx, int h, int worker)
{
    (void)worker;
    const gdn_job *jb = ctx;
    const int Hk = jb->Hk, Hv = jb->Hv, Dk = jb->Dk, Dv = jb->Dv, kh = h / (Hv / Hk);
    qref_real *S = jb->state + (size_t)h * Dk * Dv;                /* (Dk, Dv) */
    double kv[QREF__COL_BLOCK], o[QREF__COL_BLOCK];
    for (int t = 0; t < jb->n; t++) {
        const qref_real *qt = jb->q + ((size_t)t * Hk + kh) * Dk;  /* (Dk) */
        const qref_real *kt = jb->k + ((size_t)t * Hk + kh) * Dk;  /* (Dk) */
        const qref_real *vt = jb->v + ((size_t)t * Hv + h) * Dv;   /* (Dv) */
        qref_real *ot = jb->out + ((size_t)t * Hv + h) * Dv;       /* (Dv) */
        const double decay = exp((double)jb->g[(size_t)t * Hv + h]);
        const double bt = jb->beta[(size_t)t * Hv + h];
        for (int d0 = 0; d0 < Dv; d0 += QREF__COL_BLOCK) {
            const int nb = Dv - d0 < QREF__COL_BLOCK ? Dv - d0 : QREF__COL_BLOCK;
            /* decay the state, then read it with the key: kv = S^T k */
            for (int j = 0; j < nb; j++)
                kv[j] = 0, o[j] = 0;
            for (int i = 0; i < Dk; i++) {
                qref_real *row = S + (size_t)i * Dv + d0;
                const double ki = kt[i];
                for (int j = 0; j < nb; j++) {
                    row[j] = (qref_real)(row[j] * decay);
                    kv[j] += row[j] * ki;
                }
            }
            /* delta = beta (v - kv); S += k delta^T; o = S^T q */
            for (int j = 0; j < nb; j++)
                kv[j] = bt * ((double)vt[d0 + j] - kv[j]);
            for (int i = 0; i < Dk; i++) {
                qref_real *row = S + (size_t)i * Dv + d0;
                const double ki = kt[i], qi = qt[i];
                for (int j = 0; j < nb; j++) {
                    row[j] = (qref_real)(row[j] + ki * kv[j]);
                    o[j] += row[j] * qi;
                }
            }
            for (int j = 0; j < nb; j++)
                ot[d0 + j] = (qref_real)o[j];
        }
    }
}

void qref__gdn_recurrent(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                         const qref_real *g, const qref_real *beta, qref_real *state, int n,
                         int Hk, int Hv, int Dk, int Dv)
{
    assert(Hk > 0 && Hv % Hk == 0);
    gdn_job j = {.out = out, .state = state, .q = q, .k = k, .v = v, .g = g, .beta = beta, .n = n, .Hk = Hk,
                 .Hv = Hv, .Dk = Dk, .Dv = Dv};
    if (n > 0)
        qref__parallel(Hv, gdn_recurrent_head, &j);
}

/* ---------------------------------------------------------------- gated delta rule, chunked
 *
 * Within a chunk of L tokens with cumulative log-decay G_i = g_0 + ... + g_i and incoming
 * state S (Dk, Dv):
 *   A[i][j]  = beta_i (k_i . k_j) exp(G_i - G_j)          j < i  (strictly lower)
 *   (I + A) U = beta v                  (the UT transform, "new values")
 *   (I + A) W = beta exp(G) k           (keys that read the incoming state)
 *   V' = U - W S                        (the correction each token writes)
 *   o_i = exp(G_i) q_i^T S + sum_{j<=i} (q_i . k_j) exp(G_i - G_j) V'_j
 *   S  <- exp(G_L) S + sum_j exp(G_L - G_j) k_j V'_j^T
 * Exponents are differences of partial sums taken in double, all <= 0, so nothing overflows.
 *
 * Items: value heads, each running its chunks in order; the products inside a chunk are BLAS
 * calls on the item's thread. Scratch layout per worker, C = chunk:
 *   A (C, C) | P (C, C) | UW (C, Dv + Dk) | X (C, Dk)
 */

/* A decayed value as stored in the chunk's matrices. The float build stores a value below
 * FLT_MIN (a subnormal, |v| < 1.2e-38) as 0: decays of strongly negative gates put a band of
 * them in every row of A and P, and products reading subnormals run many times slower on
 * some CPUs. The double build stores every value. */
static inline qref_real decayed(double v)
{
#if defined(QREF_PRECISION_F64)
    return (qref_real)v;
#else
    return fabs(v) < FLT_MIN ? 0.0f : (float)v;
#endif
}

static size_t chunk_scratch(int chunk, int Dk, int Dv)
{
    const size_t c = (size_t)chunk;
    return 2 * c * c + c * ((size_t)Dv + Dk) + c * (size_t)Dk;
}

size_t qref__gdn_chunked_scratch(int chunk, int Dk, int Dv)
{
    return (size_t)qref__workers() * chunk_scratch(chunk, Dk, Dv);
}

/* One chunk of L tokens for value head h (key head kh); S (Dk, Dv) updated in place. */
static void gdn_chunk(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                      const qref_real *g, const qref_real *beta, qref_real *S, int L, int h,
                      int kh, int Hk, int Hv, int Dk, int Dv, qref_real *A, qref_real *P,
                      qref_real *UW, qref_real *X)
{
    const int ldq = Hk * Dk, ldv = Hv * Dv, lduw = Dv + Dk;
    const qref_real *qc = q + (size_t)kh * Dk;              /* (L, Dk), row stride ldq */
    const qref_real *kc = k + (size_t)kh * Dk;              /* (L, Dk), row stride ldq */
    qref_real *U = UW, *W = UW + Dv;                        /* (L, Dv), (L, Dk), stride lduw */

    /* A <- K K^T, P <- Q K^T */
    QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, Dk, 1, kc, ldq, kc, ldq, 0, A, L);
    QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, Dk, 1, qc, ldq, kc, ldq, 0, P, L);

    /* pairwise decays: exp(G_i - G_j) with the exponent summed backwards from i (in double);
     * the float build takes a row's exponentials at once from vecmath.h, in X (free here) */
    for (int i = 0; i < L; i++) {
        const double bi = beta[(size_t)i * Hv + h];
        double d = 0;                                       /* G_i - G_j */
#if defined(QREF_PRECISION_F64)
        for (int j = i; j >= 0; j--) {
            double f = exp(d);
            P[(size_t)i * L + j] = (qref_real)(P[(size_t)i * L + j] * f);
            A[(size_t)i * L + j] = j < i ? (qref_real)(bi * A[(size_t)i * L + j] * f) : 0;
            d += g[(size_t)j * Hv + h];
        }
#else
        for (int j = i; j >= 0; j--) {
            X[j] = (float)d;
            d += g[(size_t)j * Hv + h];
        }
        qref__vexpf(X, X, (size_t)i + 1);
        for (int j = 0; j <= i; j++) {
            P[(size_t)i * L + j] = decayed(P[(size_t)i * L + j] * (double)X[j]);
            A[(size_t)i * L + j] = j < i ? decayed(bi * A[(size_t)i * L + j] * (double)X[j]) : 0;
        }
#endif
        for (int j = i + 1; j < L; j++)
            P[(size_t)i * L + j] = A[(size_t)i * L + j] = 0;
    }

    /* right-hand sides: U = beta v, W = beta exp(G) k; X = exp(G) q */
    double G = 0;
    for (int i = 0; i < L; i++) {
        const double bi = beta[(size_t)i * Hv + h];
        G += g[(size_t)i * Hv + h];
        const double eg = exp(G);
        const qref_real *vi = v + (size_t)i * ldv + (size_t)h * Dv;
        const qref_real *ki = kc + (size_t)i * ldq;
        const qref_real *qi = qc + (size_t)i * ldq;
        for (int j = 0; j < Dv; j++)
            U[(size_t)i * lduw + j] = (qref_real)(bi * vi[j]);
        for (int j = 0; j < Dk; j++) {
            W[(size_t)i * lduw + j] = decayed(bi * eg * ki[j]);
            X[(size_t)i * Dk + j] = decayed(eg * qi[j]);
        }
    }
    const double G_last = G;

    /* UT transform: forward substitution with the unit lower-triangular I + A, both
     * right-hand sides at once */
    QREF__TRSM(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, L, Dv + Dk, 1, A, L,
               UW, lduw);

    /* V' = U - W S */
    QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, Dv, Dk, -1, W, lduw, S, Dv, 1, U,
               lduw);

    /* o = X S + P V' */
    qref_real *oc = out + (size_t)h * Dv;                   /* (L, Dv), row stride ldv */
    QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, Dv, Dk, 1, X, Dk, S, Dv, 0, oc, ldv);
    QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, Dv, L, 1, P, L, U, lduw, 1, oc, ldv);

    /* S <- exp(G_L) S + (exp(G_L - G) k)^T V' */
    double r = 0;                                           /* G_L - G_i */
    for (int i = L - 1; i >= 0; i--) {
        const double f = exp(r);
        const qref_real *ki = kc + (size_t)i * ldq;
        for (int j = 0; j < Dk; j++)
            X[(size_t)i * Dk + j] = decayed(f * ki[j]);
        r += g[(size_t)i * Hv + h];
    }
    QREF__GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, Dk, Dv, L, 1, X, Dk, U, lduw,
               decayed(exp(G_last)), S, Dv);
}

static void gdn_chunked_head(void *ctx, int h, int worker)
{
    const gdn_job *jb = ctx;
    const int Hk = jb->Hk, Hv = jb->Hv, Dk = jb->Dk, Dv = jb->Dv, chunk = jb->chunk;
    const size_t c = (size_t)chunk;
    qref_real *A = jb->scratch + (size_t)worker * jb->per_worker; /* (chunk, chunk) */
    qref_real *P = A + c * c;                               /* (chunk, chunk) */
    qref_real *UW = P + c * c;                              /* (chunk, Dv + Dk) */
    qref_real *X = UW + c * ((size_t)Dv + Dk);              /* (chunk, Dk) */
    for (int t0 = 0; t0 < jb->n; t0 += chunk) {
        const int L = jb->n - t0 < chunk ? jb->n - t0 : chunk;
        gdn_chunk(jb->out + (size_t)t0 * Hv * Dv, jb->q + (size_t)t0 * Hk * Dk, jb->k + (size_t)t0 * Hk * Dk,
                  jb->v + (size_t)t0 * Hv * Dv, jb->g + (size_t)t0 * Hv, jb->beta + (size_t)t0 * Hv,
                  jb->state + (size_t)h * Dk * Dv, L, h, h / (Hv / Hk), Hk, Hv, Dk, Dv, A, P, UW, X);
    }
}

void qref__gdn_chunked(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                       const qref_real *g, const qref_real *beta, qref_real *state, int n, int Hk,
                       int Hv, int Dk, int Dv, int chunk, qref_real *scratch)
{
    assert(Hk > 0 && Hv % Hk == 0 && chunk > 0 && n >= 0);
    gdn_job j = {.out = out, .state = state, .q = q, .k = k, .v = v, .g = g, .beta = beta, .n = n, .Hk = Hk,
                 .Hv = Hv, .Dk = Dk, .Dv = Dv, .chunk = chunk, .scratch = scratch,
                 .per_worker = chunk_scratch(chunk, Dk, Dv)};
    if (n > 0)
        qref__parallel(Hv, gdn_chunked_head, &j);
}
