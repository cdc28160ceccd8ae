/*
 * Numeric kernels of the reference engine: dense projections, norms, rotary, the causal conv,
 * the gated delta rule (recurrent and chunked), attention and MoE routing.
 *
 * Every kernel writes its output first, never allocates, and takes scratch from the caller.
 * Reductions done outside BLAS (norm sums, dot products, softmax) accumulate in double and
 * round once into qref_real, so the float build carries one rounding per stored value and the
 * double build reproduces float64 math to a few ulp.
 *
 * Shape legend: n = tokens, H = hidden, Hq/Hkv = attention heads, D = head dim, R = rotary
 * dims, Hk/Hv = GDN key/value heads, Dk/Dv = their dims, C = channels, K = conv kernel,
 * E = experts, L = tokens in one GDN chunk.
 */
#include <assert.h>
#include <cblas.h>
#include <string.h>

#include "qref_internal.h"

/* ---------------------------------------------------------------- BLAS by precision */

#if defined(QREF_PRECISION_F64)
#define QREF__GEMM cblas_dgemm
#define QREF__GEMV cblas_dgemv
#define QREF__TRSM cblas_dtrsm
#else
#define QREF__GEMM cblas_sgemm
#define QREF__GEMV cblas_sgemv
#define QREF__TRSM cblas_strsm
#endif

/* Columns handled per pass by kernels that keep double accumulators on the stack. */
#define QREF__COL_BLOCK 64
/* Largest head dim qref__attention accepts (its accumulator lives on the stack). */
#define QREF__ATTN_MAX_D 1024

/* ---------------------------------------------------------------- linear */

void qref__linear(qref_real *y, const qref_real *x, const qref_real *w, const qref_real *b,
                  int n, int in, int out)
{
    assert(n >= 0 && in > 0 && out > 0);
    if (n == 0)
        return;
    if (b) {
        for (int t = 0; t < n; t++)                         /* y (n, out) starts as b */
            memcpy(y + (size_t)t * out, b, (size_t)out * sizeof *y);
    }
    const qref_real beta = b ? 1 : 0;
    if (n == 1)
        QREF__GEMV(CblasRowMajor, CblasNoTrans, out, in, 1, w, in, x, 1, beta, y, 1);
    else
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1, x, in, w, in, beta,
                   y, out);
}

/* ---------------------------------------------------------------- norms */

static double sum_squares(const qref_real *x, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)x[i] * x[i];
    return s;
}

void qref__rmsnorm(qref_real *o, const qref_real *x, const qref_real *w, int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + (size_t)t * dim;          /* (dim) */
        qref_real *or = o + (size_t)t * dim;                /* (dim) */
        double inv = 1.0 / sqrt(sum_squares(xr, dim) / dim + eps);
        for (int i = 0; i < dim; i++)
            or[i] = (qref_real)((double)xr[i] * inv * (1.0 + (double)w[i]));
    }
}

void qref__rmsnorm_gated(qref_real *o, const qref_real *x, const qref_real *z, const qref_real *w,
                         int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + (size_t)t * dim;          /* (dim) */
        const qref_real *zr = z + (size_t)t * dim;          /* (dim) */
        qref_real *or = o + (size_t)t * dim;                /* (dim) */
        double inv = 1.0 / sqrt(sum_squares(xr, dim) / dim + eps);
        for (int i = 0; i < dim; i++)
            or[i] = (qref_real)((double)xr[i] * inv * (double)w[i] * qref__silu(zr[i]));
    }
}

void qref__layernorm(qref_real *o, const qref_real *x, const qref_real *w, const qref_real *b,
                     int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + (size_t)t * dim;          /* (dim) */
        qref_real *or = o + (size_t)t * dim;                /* (dim) */
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++)
            mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        double inv = 1.0 / sqrt(var / dim + eps);
        for (int i = 0; i < dim; i++) {
            double v = ((double)xr[i] - mean) * inv * (double)w[i];
            or[i] = (qref_real)(b ? v + (double)b[i] : v);
        }
    }
}

void qref__l2norm(qref_real *x, int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        qref_real *xr = x + (size_t)t * dim;                /* (dim) */
        double inv = 1.0 / sqrt(sum_squares(xr, dim) + eps);
        for (int i = 0; i < dim; i++)
            xr[i] = (qref_real)((double)xr[i] * inv);
    }
}

/* ---------------------------------------------------------------- rotary */

/* Which position axis (0 = T, 1 = H, 2 = W) drives rotary frequency j. */
static int mrope_axis(int j, const int section[3], int interleaved)
{
    if (interleaved) {
        if (j % 3 == 1 && j < 3 * section[1])
            return 1;
        if (j % 3 == 2 && j < 3 * section[2])
            return 2;
        return 0;
    }
    if (j < section[0])
        return 0;
    if (j < section[0] + section[1])
        return 1;
    return 2;
}

void qref__mrope_angles(qref_real *cos_t, qref_real *sin_t, const int64_t *pos, int n, int R,
                        double theta, const int section[3], int interleaved)
{
    assert(R > 0 && R % 2 == 0);
    const int half = R / 2;
    for (int j = 0; j < half; j++) {
        double inv_freq = 1.0 / pow(theta, (double)(2 * j) / (double)R);
        const int64_t *axis = pos + (size_t)mrope_axis(j, section, interleaved) * n; /* (n) */
        for (int t = 0; t < n; t++) {
            double angle = (double)axis[t] * inv_freq;
            cos_t[(size_t)t * half + j] = (qref_real)cos(angle);
            sin_t[(size_t)t * half + j] = (qref_real)sin(angle);
        }
    }
}

void qref__rope_apply(qref_real *x, const qref_real *cos_t, const qref_real *sin_t, int n, int heads,
                      int D, int R)
{
    assert(R > 0 && R % 2 == 0 && R <= D);
    const int half = R / 2;
    for (int t = 0; t < n; t++) {
        const qref_real *c = cos_t + (size_t)t * half;      /* (R/2) */
        const qref_real *s = sin_t + (size_t)t * half;      /* (R/2) */
        for (int h = 0; h < heads; h++) {
            qref_real *xh = x + ((size_t)t * heads + h) * D; /* (D) */
            for (int i = 0; i < half; i++) {
                double x1 = xh[i], x2 = xh[i + half];
                xh[i] = (qref_real)(x1 * c[i] - x2 * s[i]);
                xh[i + half] = (qref_real)(x2 * c[i] + x1 * s[i]);
            }
        }
    }
}

/* ---------------------------------------------------------------- causal conv */

void qref__conv1d_causal_silu(qref_real *out, const qref_real *x, qref_real *state,
                              const qref_real *w, int n, int C, int K)
{
    assert(K >= 1 && C > 0 && n >= 0);
    assert(out != x);
    const int S = K - 1;                                    /* state rows */
    for (int t = 0; t < n; t++) {
        for (int c = 0; c < C; c++) {
            const qref_real *wc = w + (size_t)c * K;        /* (K) */
            double acc = 0;
            for (int j = 0; j < K; j++) {
                int src = t - S + j;                        /* input time, < 0 reads state */
                qref_real v = src >= 0 ? x[(size_t)src * C + c] : state[(size_t)(S + src) * C + c];
                acc += (double)wc[j] * v;
            }
            out[(size_t)t * C + c] = (qref_real)qref__silu(acc);
        }
    }
    if (S == 0 || n == 0)
        return;
    if (n >= S) {
        memcpy(state, x + (size_t)(n - S) * C, (size_t)S * C * sizeof *state);
    } else {
        memmove(state, state + (size_t)n * C, (size_t)(S - n) * C * sizeof *state);
        memcpy(state + (size_t)(S - n) * C, x, (size_t)n * C * sizeof *state);
    }
}

/* ---------------------------------------------------------------- gated delta rule, recurrent */

void qref__gdn_recurrent(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                         const qref_real *g, const qref_real *beta, qref_real *state, int n,
                         int Hk, int Hv, int Dk, int Dv)
{
    assert(Hk > 0 && Hv % Hk == 0);
    const int rep = Hv / Hk;
    double kv[QREF__COL_BLOCK], o[QREF__COL_BLOCK];
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < Hv; h++) {
            const int kh = h / rep;
            const qref_real *qt = q + ((size_t)t * Hk + kh) * Dk;  /* (Dk) */
            const qref_real *kt = k + ((size_t)t * Hk + kh) * Dk;  /* (Dk) */
            const qref_real *vt = v + ((size_t)t * Hv + h) * Dv;   /* (Dv) */
            qref_real *ot = out + ((size_t)t * Hv + h) * Dv;       /* (Dv) */
            qref_real *S = state + (size_t)h * Dk * Dv;            /* (Dk, Dv) */
            const double decay = exp((double)g[(size_t)t * Hv + h]);
            const double bt = beta[(size_t)t * Hv + h];
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
 * Scratch layout per (chunk, value head), C = chunk:
 *   A (C, C) | P (C, C) | UW (C, Dv + Dk) | X (C, Dk)
 */

size_t qref__gdn_chunked_scratch(int chunk, int Dk, int Dv)
{
    const size_t c = (size_t)chunk;
    return 2 * c * c + c * ((size_t)Dv + Dk) + c * (size_t)Dk;
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

    /* pairwise decays: exp(G_i - G_j) with the exponent summed backwards from i */
    for (int i = 0; i < L; i++) {
        const double bi = beta[(size_t)i * Hv + h];
        double d = 0;                                       /* G_i - G_j */
        for (int j = i; j >= 0; j--) {
            double f = exp(d);
            P[(size_t)i * L + j] = (qref_real)(P[(size_t)i * L + j] * f);
            A[(size_t)i * L + j] = j < i ? (qref_real)(bi * A[(size_t)i * L + j] * f) : 0;
            d += g[(size_t)j * Hv + h];
        }
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
            W[(size_t)i * lduw + j] = (qref_real)(bi * eg * ki[j]);
            X[(size_t)i * Dk + j] = (qref_real)(eg * qi[j]);
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
            X[(size_t)i * Dk + j] = (qref_real)(f * ki[j]);
        r += g[(size_t)i * Hv + h];
    }
    QREF__GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, Dk, Dv, L, 1, X, Dk, U, lduw,
               (qref_real)exp(G_last), S, Dv);
}

void qref__gdn_chunked(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                       const qref_real *g, const qref_real *beta, qref_real *state, int n, int Hk,
                       int Hv, int Dk, int Dv, int chunk, qref_real *scratch)
{
    assert(Hk > 0 && Hv % Hk == 0 && chunk > 0 && n >= 0);
    const int rep = Hv / Hk;
    const size_t c = (size_t)chunk;
    qref_real *A = scratch;                                 /* (chunk, chunk) */
    qref_real *P = A + c * c;                               /* (chunk, chunk) */
    qref_real *UW = P + c * c;                              /* (chunk, Dv + Dk) */
    qref_real *X = UW + c * ((size_t)Dv + Dk);              /* (chunk, Dk) */
    for (int t0 = 0; t0 < n; t0 += chunk) {
        const int L = n - t0 < chunk ? n - t0 : chunk;
        for (int h = 0; h < Hv; h++)
            gdn_chunk(out + (size_t)t0 * Hv * Dv, q + (size_t)t0 * Hk * Dk,
                      k + (size_t)t0 * Hk * Dk, v + (size_t)t0 * Hv * Dv, g + (size_t)t0 * Hv,
                      beta + (size_t)t0 * Hv, state + (size_t)h * Dk * Dv, L, h, h / rep, Hk, Hv,
                      Dk, Dv, A, P, UW, X);
    }
}

/* ---------------------------------------------------------------- attention
 *
 * One pass per (query, head) with an online softmax: scores, running max, sum and the
 * weighted values stay in double and the output rounds once; scratch is not needed and may
 * be NULL. The visible range [0, q_off + i] is clipped to the cache, so q_off = Tk - 1 gives
 * every query every key (bidirectional attention). A query that sees no unmasked key gets a
 * zero output. */

void qref__attention(qref_real *out, const qref_real *q, const qref_real *kc, const qref_real *vc,
                     const uint8_t *kmask, int n, int Tk, int q_off, int Hq, int Hkv, int D,
                     double scale, qref_real *scratch)
{
    (void)scratch;      /* the online softmax below needs no per-key storage */
    assert(Hkv > 0 && Hq % Hkv == 0 && q_off >= 0 && D <= QREF__ATTN_MAX_D);
    const int group = Hq / Hkv;
    const size_t ldk = (size_t)Hkv * D;                     /* row stride of kc, vc */
    double acc[QREF__ATTN_MAX_D];
    for (int i = 0; i < n; i++) {
        const int last = q_off + i < Tk - 1 ? q_off + i : Tk - 1;   /* last visible key */
        for (int h = 0; h < Hq; h++) {
            const int kvh = h / group;
            const qref_real *qi = q + ((size_t)i * Hq + h) * D;     /* (D) */
            qref_real *oi = out + ((size_t)i * Hq + h) * D;         /* (D) */
            /* online softmax in double: running max m, sum of exp(s - m), weighted values */
            double m = -INFINITY, sum = 0;
            for (int d = 0; d < D; d++)
                acc[d] = 0;
            for (int j = 0; j <= last; j++) {
                if (kmask && !kmask[j])
                    continue;
                const qref_real *kj = kc + (size_t)j * ldk + (size_t)kvh * D;  /* (D) */
                const qref_real *vj = vc + (size_t)j * ldk + (size_t)kvh * D;  /* (D) */
                double s = 0;
                for (int d = 0; d < D; d++)
                    s += (double)qi[d] * kj[d];
                s *= scale;
                if (s > m) {
                    const double r = exp(m - s);            /* 0 on the first visible key */
                    sum *= r;
                    for (int d = 0; d < D; d++)
                        acc[d] *= r;
                    m = s;
                }
                const double p = exp(s - m);
                sum += p;
                for (int d = 0; d < D; d++)
                    acc[d] += p * vj[d];
            }
            const double inv = sum > 0 ? 1.0 / sum : 0.0;
            for (int d = 0; d < D; d++)
                oi[d] = (qref_real)(acc[d] * inv);
        }
    }
}

/* ---------------------------------------------------------------- MoE routing */

void qref__moe_route(int *idx, qref_real *w, const qref_real *logits, int n, int E, int k)
{
    assert(E > 0 && k > 0 && k <= E);
    for (int t = 0; t < n; t++) {
        const qref_real *lt = logits + (size_t)t * E;       /* (E) */
        int *it = idx + (size_t)t * k;                      /* (k) */
        qref_real *wt = w + (size_t)t * k;                  /* (k) */
        double m = -INFINITY, z = 0;
        for (int e = 0; e < E; e++)
            if (lt[e] > m)
                m = lt[e];
        for (int e = 0; e < E; e++)
            z += exp((double)lt[e] - m);
        /* Pick in the order (probability descending, index ascending): each pick is the best
         * expert that comes strictly after the previous pick in that order. */
        double prev_p = INFINITY, sel_sum = 0;
        int prev_e = -1;
        for (int r = 0; r < k; r++) {
            int best = -1;
            double best_p = -1;
            for (int e = 0; e < E; e++) {
                const double p = exp((double)lt[e] - m) / z;
                const int after = p < prev_p || (p == prev_p && e > prev_e);
                if (after && p > best_p)
                    best = e, best_p = p;
            }
            assert(best >= 0);
            it[r] = best;
            prev_p = best_p, prev_e = best;
            sel_sum += best_p;
        }
        for (int r = 0; r < k; r++)
            wt[r] = (qref_real)(exp((double)lt[it[r]] - m) / z / sel_sum);
    }
}
