/* SPDX-License-Identifier: MIT */
/* Naive reference kernels for the unit tests: definitions written out as plain double loops. */
#include "naive.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- linear, norms */

void naive_linear(double *y, const qref_real *x, const qref_real *w, const qref_real *b, int n,
                  int in, int out)
{
    for (int t = 0; t < n; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += (double)x[t * in + i] * (double)w[o * in + i];
            y[t * out + o] = s;
        }
}

static double mean_square(const qref_real *x, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)x[i] * (double)x[i];
    return s / dim;
}

void naive_rmsnorm(double *o, const qref_real *x, const qref_real *w, int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        double r = sqrt(mean_square(x + t * dim, dim) + eps);
        for (int i = 0; i < dim; i++)
            o[t * dim + i] = x[t * dim + i] / r * (1.0 + w[i]);
    }
}

void naive_rmsnorm_gated(double *o, const qref_real *x, const qref_real *z, const qref_real *w,
                         int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        double r = sqrt(mean_square(x + t * dim, dim) + eps);
        for (int i = 0; i < dim; i++) {
            double zi = z[t * dim + i];
            o[t * dim + i] = x[t * dim + i] / r * w[i] * (zi / (1.0 + exp(-zi)));
        }
    }
}

void naive_layernorm(double *o, const qref_real *x, const qref_real *w, const qref_real *b, int n,
                     int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        const qref_real *xr = x + t * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++)
            mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= dim;
        for (int i = 0; i < dim; i++)
            o[t * dim + i] = (xr[i] - mean) / sqrt(var + eps) * w[i] + (b ? b[i] : 0.0);
    }
}

void naive_l2norm(double *o, const qref_real *x, int n, int dim, double eps)
{
    for (int t = 0; t < n; t++) {
        double r = sqrt(mean_square(x + t * dim, dim) * dim + eps);
        for (int i = 0; i < dim; i++)
            o[t * dim + i] = x[t * dim + i] / r;
    }
}

/* ---------------------------------------------------------------- rotary */

int naive_rope_axis(int d, int R, const int section[3], int interleaved)
{
    const int half = R / 2, j = d % half;
    assert(d >= 0 && d < R);
    if (interleaved) {
        /* start from T everywhere, then overwrite every third slot with H (from 1) and W
         * (from 2), each only within three times its section */
        int axis = 0;
        for (int s = 1; s < 3 * section[1] && s < half; s += 3)
            if (s == j)
                axis = 1;
        for (int s = 2; s < 3 * section[2] && s < half; s += 3)
            if (s == j)
                axis = 2;
        return axis;
    }
    /* contiguous: the R dims split as s0|s1|s2|s0|s1|s2, block b taking axis b % 3 */
    const int blocks[6] = {section[0], section[1], section[2], section[0], section[1], section[2]};
    int start = 0;
    for (int b = 0; b < 6; b++) {
        if (d < start + blocks[b])
            return b % 3;
        start += blocks[b];
    }
    return 2;
}

void naive_rope(double *o, const qref_real *x, const int64_t *pos, int n, int heads, int D, int R,
                double theta, const int section[3], int interleaved)
{
    const int half = R / 2;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            const qref_real *xh = x + (t * heads + h) * D;
            double *oh = o + (t * heads + h) * D;
            for (int d = 0; d < D; d++) {
                if (d >= R) {
                    oh[d] = xh[d];
                    continue;
                }
                int j = d % half;
                int64_t p = pos[naive_rope_axis(d, R, section, interleaved) * n + t];
                double ang = (double)p * pow(theta, -2.0 * j / R);
                double rot = d < half ? -(double)xh[d + half] : (double)xh[d - half];
                oh[d] = xh[d] * cos(ang) + rot * sin(ang);
            }
        }
}

/* ---------------------------------------------------------------- conv */

void naive_conv_silu(double *o, const qref_real *hist, const qref_real *x, const qref_real *w,
                     int n, int C, int K)
{
    /* the full input sequence: K-1 history rows then the n new rows */
    const int T = K - 1 + n;
    double *seq = malloc(sizeof *seq * (size_t)T * C);
    assert(seq);
    for (int r = 0; r < K - 1; r++)
        for (int c = 0; c < C; c++)
            seq[r * C + c] = hist[r * C + c];
    for (int r = 0; r < n; r++)
        for (int c = 0; c < C; c++)
            seq[(K - 1 + r) * C + c] = x[r * C + c];
    for (int t = 0; t < n; t++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int j = 0; j < K; j++)
                s += w[c * K + j] * seq[(t + j) * C + c];   /* window ends at new row t */
            o[t * C + c] = s / (1.0 + exp(-s));
        }
    free(seq);
}

/* ---------------------------------------------------------------- gated delta rule */

void naive_delta_rule(double *o, double *S, const qref_real *q, const qref_real *k,
                      const qref_real *v, const qref_real *g, const qref_real *beta, int n,
                      int Hk, int Hv, int Dk, int Dv)
{
    double *M = malloc(sizeof *M * (size_t)Dk * Dk);       /* (Dk, Dk) */
    double *T = malloc(sizeof *T * (size_t)Dk * Dv);       /* (Dk, Dv) */
    assert(M && T);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < Hv; h++) {
            const int kh = h * Hk / Hv;                     /* repeat_interleave of key heads */
            const qref_real *qt = q + (t * Hk + kh) * Dk;
            const qref_real *kt = k + (t * Hk + kh) * Dk;
            const qref_real *vt = v + (t * Hv + h) * Dv;
            const double b = beta[t * Hv + h], a = exp(g[t * Hv + h]);
            double *Sh = S + (size_t)h * Dk * Dv;
            for (int i = 0; i < Dk; i++)                    /* M = I - b k k^T */
                for (int j = 0; j < Dk; j++)
                    M[i * Dk + j] = (i == j) - b * kt[i] * kt[j];
            for (int i = 0; i < Dk; i++)                    /* T = a M S + b k v^T */
                for (int j = 0; j < Dv; j++) {
                    double s = 0;
                    for (int l = 0; l < Dk; l++)
                        s += M[i * Dk + l] * Sh[l * Dv + j];
                    T[i * Dv + j] = a * s + b * kt[i] * vt[j];
                }
            memcpy(Sh, T, sizeof *T * (size_t)Dk * Dv);
            for (int j = 0; j < Dv; j++) {                  /* o = S^T q */
                double s = 0;
                for (int i = 0; i < Dk; i++)
                    s += Sh[i * Dv + j] * qt[i];
                o[(t * Hv + h) * Dv + j] = s;
            }
        }
    free(M);
    free(T);
}

/* ---------------------------------------------------------------- attention */

void naive_attention(double *o, const qref_real *q, const qref_real *kc, const qref_real *vc,
                     const uint8_t *kmask, int n, int Tk, int q_off, int Hq, int Hkv, int D,
                     double scale)
{
    const int rep = Hq / Hkv;
    double *s = malloc(sizeof *s * (size_t)Tk);
    assert(s);
    for (int i = 0; i < n; i++)
        for (int h = 0; h < Hq; h++) {
            const int kvh = h / rep;
            double m = -INFINITY;
            for (int j = 0; j < Tk; j++) {
                double bias = (j > q_off + i || (kmask && !kmask[j])) ? -INFINITY : 0.0;
                double dot = 0;
                for (int d = 0; d < D; d++)
                    dot += (double)q[(i * Hq + h) * D + d] * kc[(j * Hkv + kvh) * D + d];
                s[j] = dot * scale + bias;
                if (s[j] > m)
                    m = s[j];
            }
            double z = 0;
            for (int j = 0; j < Tk; j++) {
                s[j] = m == -INFINITY ? 0.0 : exp(s[j] - m);
                z += s[j];
            }
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int j = 0; j < Tk; j++)
                    acc += s[j] * vc[(j * Hkv + kvh) * D + d];
                o[(i * Hq + h) * D + d] = z > 0 ? acc / z : 0.0;
            }
        }
    free(s);
}

/* ---------------------------------------------------------------- MoE routing */

typedef struct {
    double p;
    int e;
} naive_expert;

static int naive_expert_cmp(const void *a, const void *b)
{
    const naive_expert *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->e - y->e;
}

void naive_moe_route(int *idx, double *w, const qref_real *logits, int n, int E, int k)
{
    naive_expert *ex = malloc(sizeof *ex * (size_t)E);
    assert(ex);
    for (int t = 0; t < n; t++) {
        double m = -INFINITY, z = 0;
        for (int e = 0; e < E; e++)
            m = fmax(m, logits[t * E + e]);
        for (int e = 0; e < E; e++)
            z += exp(logits[t * E + e] - m);
        for (int e = 0; e < E; e++)
            ex[e] = (naive_expert){exp(logits[t * E + e] - m) / z, e};
        qsort(ex, (size_t)E, sizeof *ex, naive_expert_cmp);
        double top = 0;
        for (int r = 0; r < k; r++)
            top += ex[r].p;
        for (int r = 0; r < k; r++) {
            idx[t * k + r] = ex[r].e;
            w[t * k + r] = ex[r].p / top;
        }
    }
    free(ex);
}
