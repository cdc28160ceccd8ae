/* SPDX-License-Identifier: MIT */
/*
 * Numeric kernels of the reference engine: dense projections, norms, rotary, the causal conv,
 * elementwise gates and MoE routing (the gated delta rule is in gdn.c, attention in
 * attention.c).
 *
 * Every kernel writes its output first, never allocates, and takes scratch from the caller.
 * Each one cuts its work into items by shape alone (blocks of rows, of output columns, of
 * channels) and spreads them over the worker pool (threads.c); an item computes its outputs
 * exactly as the one-thread loop would, so results do not depend on the thread count.
 * Reductions done outside BLAS (norm sums, dot products, softmax) accumulate in double and
 * round once into qref_real, so the double build reproduces float64 math to a few ulp. The
 * float build takes its SiLU, sigmoid and tanh-GELU from vecmath.h (float, vectorised, within
 * 4 ulp); everything else rounds once per stored value there too.
 *
 * Shape legend: n = tokens, H = hidden, Hq/Hkv = attention heads, D = head dim, R = rotary
 * dims, Hk/Hv = GDN key/value heads, Dk/Dv = their dims, C = channels, K = conv kernel,
 * E = experts, L = tokens in one GDN chunk.
 */
#include <assert.h>
#include <string.h>

#include "qref_blas.h"
#include "qref_internal.h"
#include "vecmath.h"

/* Elements per item of the row-wise and elementwise kernels. */
#define QREF__GRAIN 8192

static int min_i(int a, int b) { return a < b ? a : b; }

/* ---------------------------------------------------------------- rows over the pool
 *
 * A row job runs fn over rows [r0, r1) of n rows of `dim` elements, in items of whole rows
 * (about QREF__GRAIN elements each). */

typedef struct row_job row_job;
struct row_job {
    void (*fn)(const row_job *j, int r0, int r1);
    qref_real *o;
    const qref_real *x, *z, *w, *b, *c, *s;
    int n, dim, heads, D, R, per;
    double eps;
};

static void row_item(void *ctx, int item, int worker)
{
    (void)worker;
    const row_job *j = ctx;
    const int r0 = item * j->per;
    j->fn(j, r0, min_i(j->n, r0 + j->per));
}

static void run_rows(row_job *j)
{
    if (j->n <= 0)
        return;
    j->per = j->dim >= QREF__GRAIN ? 1 : QREF__GRAIN / j->dim;
    qref__parallel((j->n + j->per - 1) / j->per, row_item, j);
}

/* ---------------------------------------------------------------- linear */

/* Items: blocks of at most 256 tokens times blocks of output columns, about 48 column blocks
 * per matrix (64 to 1024 columns wide, a multiple of 16), at least 256 wide from 4096 tokens
 * on (the vision tower's frames), where the token blocks alone give enough items and wider
 * column blocks pack each token block fewer times. Each item is one BLAS call. */
typedef struct {
    qref_real *y;
    const qref_real *x, *w, *b;
    int n, in, out, tb, cb, ncb;
} linear_job;

/* Output columns per block for n tokens and `out` columns (the rule above). */
static int column_block(int n, int out)
{
    int cb = (out / 48 + 15) / 16 * 16;
    cb = cb < 64 ? 64 : cb > 1024 ? 1024 : cb;
    return n >= 4096 && cb < 256 ? 256 : cb;                /* 16+ token blocks: enough items */
}

/* y (nt, nc; row stride ldy) = x (nt, in) . w (nc, in)^T + beta y: one BLAS call. */
static void block_product(qref_real *y, int ldy, const qref_real *x, const qref_real *w, int nt, int nc, int in,
                          qref_real beta)
{
    if (nt == 1)
        QREF__GEMV(CblasRowMajor, CblasNoTrans, nc, in, 1, w, in, x, 1, beta, y, 1);
    else
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, nt, nc, in, 1, x, in, w, in, beta, y, ldy);
}

static void linear_item(void *ctx, int item, int worker)
{
    (void)worker;
    const linear_job *j = ctx;
    const int t0 = item / j->ncb * j->tb, c0 = item % j->ncb * j->cb;
    const int nt = min_i(j->tb, j->n - t0), nc = min_i(j->cb, j->out - c0);
    qref_real *y = j->y + (size_t)t0 * j->out + c0;         /* (nt, nc), row stride out */
    const qref_real *x = j->x + (size_t)t0 * j->in;         /* (nt, in) */
    const qref_real *w = j->w + (size_t)c0 * j->in;         /* (nc, in) */
    if (j->b)
        for (int t = 0; t < nt; t++)                        /* y starts as b */
            memcpy(y + (size_t)t * j->out, j->b + c0, (size_t)nc * sizeof *y);
    block_product(y, j->out, x, w, nt, nc, j->in, j->b ? 1 : 0);
}

void qref__linear(qref_real *y, const qref_real *x, const qref_real *w, const qref_real *b,
                  int n, int in, int out)
{
    assert(n >= 0 && in > 0 && out > 0);
    if (n == 0)
        return;
    const int cb = column_block(n, out);
    linear_job j = {y, x, w, b, n, in, out, min_i(n, 256), cb, (out + cb - 1) / cb};
    qref__parallel((n + j.tb - 1) / j.tb * j.ncb, linear_item, &j);
}

/* A BF16 matrix: items of one column block over every token (the block converted once, then
 * qref__linear's products on it, token block by token block); one token: the BF16 product. */
typedef struct {
    qref_real *y;
    const qref_real *x;
    const uint16_t *w;
    int n, in, out, tb, cb;
} linear_bf16_job;

static void linear_bf16_item(void *ctx, int item, int worker)
{
    (void)worker;
    const linear_bf16_job *j = ctx;
    const int c0 = item * j->cb, nc = min_i(j->cb, j->out - c0);
    const uint16_t *w = j->w + (size_t)c0 * j->in;          /* (nc, in) */
    qref_real *wc = j->n > 1 ? qref__thread_scratch((size_t)nc * j->in * sizeof *wc) : NULL;
    if (!wc) {                                              /* one token, or no room */
        for (int t = 0; t < j->n; t++)
            qref__gemv_bf16(j->y + (size_t)t * j->out + c0, w, j->x + (size_t)t * j->in, nc, j->in);
        return;
    }
    qref__bf16_to_real(wc, w, (size_t)nc * j->in);
    for (int t0 = 0; t0 < j->n; t0 += j->tb) {
        const int nt = min_i(j->tb, j->n - t0);
        block_product(j->y + (size_t)t0 * j->out + c0, j->out, j->x + (size_t)t0 * j->in, wc, nt, nc, j->in, 0);
    }
}

void qref__linear_m(qref_real *y, const qref_real *x, qref_matrix w, const qref_real *b, int n, int in, int out)
{
    if (w.real) {
        qref__linear(y, x, w.real, b, n, in, out);
        return;
    }
    assert(w.bf16 && !b && n >= 0 && in > 0 && out > 0);
    if (n == 0)
        return;
    const int cb = column_block(n, out);
    linear_bf16_job j = {y, x, w.bf16, n, in, out, min_i(n, 256), cb};
    qref__parallel((out + cb - 1) / cb, linear_bf16_item, &j);
}

/* ---------------------------------------------------------------- norms */

static double sum_squares(const qref_real *x, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)x[i] * x[i];
    return s;
}

static void rmsnorm_rows(const row_job *j, int r0, int r1)
{
    const int dim = j->dim;
    for (int t = r0; t < r1; t++) {
        const qref_real *xr = j->x + (size_t)t * dim;       /* (dim) */
        qref_real *or = j->o + (size_t)t * dim;             /* (dim) */
        double inv = 1.0 / sqrt(sum_squares(xr, dim) / dim + j->eps);
        for (int i = 0; i < dim; i++)
            or[i] = (qref_real)((double)xr[i] * inv * (1.0 + (double)j->w[i]));
    }
}

void qref__rmsnorm(qref_real *o, const qref_real *x, const qref_real *w, int n, int dim, double eps)
{
    row_job j = {.fn = rmsnorm_rows, .o = o, .x = x, .w = w, .n = n, .dim = dim, .eps = eps};
    run_rows(&j);
}

static void rmsnorm_gated_rows(const row_job *j, int r0, int r1)
{
    const int dim = j->dim;
    for (int t = r0; t < r1; t++) {
        const qref_real *xr = j->x + (size_t)t * dim;       /* (dim) */
        const qref_real *zr = j->z + (size_t)t * dim;       /* (dim) */
        qref_real *or = j->o + (size_t)t * dim;             /* (dim) */
        double inv = 1.0 / sqrt(sum_squares(xr, dim) / dim + j->eps);
#if defined(QREF_PRECISION_F64)
        for (int i = 0; i < dim; i++)
            or[i] = (qref_real)((double)xr[i] * inv * (double)j->w[i] * qref__silu(zr[i]));
#else
        float sz[256];                                      /* silu(z), o may be x */
        for (int i0 = 0; i0 < dim; i0 += 256) {
            const int m = min_i(256, dim - i0);
            qref__vsiluf(sz, zr + i0, NULL, (size_t)m);
            for (int i = 0; i < m; i++)
                or[i0 + i] = (qref_real)((double)xr[i0 + i] * inv * (double)j->w[i0 + i] * (double)sz[i]);
        }
#endif
    }
}

void qref__rmsnorm_gated(qref_real *o, const qref_real *x, const qref_real *z, const qref_real *w,
                         int n, int dim, double eps)
{
    row_job j = {.fn = rmsnorm_gated_rows, .o = o, .x = x, .z = z, .w = w, .n = n, .dim = dim, .eps = eps};
    run_rows(&j);
}

static void layernorm_rows(const row_job *j, int r0, int r1)
{
    const int dim = j->dim;
    for (int t = r0; t < r1; t++) {
        const qref_real *xr = j->x + (size_t)t * dim;       /* (dim) */
        qref_real *or = j->o + (size_t)t * dim;             /* (dim) */
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++)
            mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        double inv = 1.0 / sqrt(var / dim + j->eps);
        for (int i = 0; i < dim; i++) {
            double v = ((double)xr[i] - mean) * inv * (double)j->w[i];
            or[i] = (qref_real)(j->b ? v + (double)j->b[i] : v);
        }
    }
}

void qref__layernorm(qref_real *o, const qref_real *x, const qref_real *w, const qref_real *b,
                     int n, int dim, double eps)
{
    row_job j = {.fn = layernorm_rows, .o = o, .x = x, .w = w, .b = b, .n = n, .dim = dim, .eps = eps};
    run_rows(&j);
}

static void l2norm_rows(const row_job *j, int r0, int r1)
{
    const int dim = j->dim;
    for (int t = r0; t < r1; t++) {
        qref_real *xr = j->o + (size_t)t * dim;             /* (dim) */
        double inv = 1.0 / sqrt(sum_squares(xr, dim) + j->eps);
        for (int i = 0; i < dim; i++)
            xr[i] = (qref_real)((double)xr[i] * inv);
    }
}

void qref__l2norm(qref_real *x, int n, int dim, double eps)
{
    row_job j = {.fn = l2norm_rows, .o = x, .n = n, .dim = dim, .eps = eps};
    run_rows(&j);
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

static void rope_rows(const row_job *j, int r0, int r1)
{
    const int half = j->R / 2, heads = j->heads, D = j->D;
    for (int t = r0; t < r1; t++) {
        const qref_real *c = j->c + (size_t)t * half;       /* (R/2) */
        const qref_real *s = j->s + (size_t)t * half;       /* (R/2) */
        for (int h = 0; h < heads; h++) {
            qref_real *xh = j->o + ((size_t)t * heads + h) * D; /* (D) */
            for (int i = 0; i < half; i++) {
                double x1 = xh[i], x2 = xh[i + half];
                xh[i] = (qref_real)(x1 * c[i] - x2 * s[i]);
                xh[i + half] = (qref_real)(x2 * c[i] + x1 * s[i]);
            }
        }
    }
}

void qref__rope_apply(qref_real *x, const qref_real *cos_t, const qref_real *sin_t, int n, int heads,
                      int D, int R)
{
    assert(R > 0 && R % 2 == 0 && R <= D);
    row_job j = {.fn = rope_rows, .o = x, .c = cos_t, .s = sin_t, .n = n, .dim = heads * D, .heads = heads,
                 .D = D, .R = R};
    run_rows(&j);
}

/* ---------------------------------------------------------------- causal conv */

/* Items: blocks of channels over every token; the state moves on once all are done. Inside an
 * item, passes of up to 64 channels keep the taps transposed and the sums on the stack, so
 * the innermost loop runs along contiguous channels (same sums, same order, as per channel). */
typedef struct {
    qref_real *out;
    const qref_real *x, *state, *w;
    int n, C, K, cb;
} conv_job;

#define QREF__CONV_LANES 64
#define QREF__CONV_MAX_K 16

static void conv_item(void *ctx, int item, int worker)
{
    (void)worker;
    const conv_job *j = ctx;
    const int C = j->C, K = j->K, S = K - 1;                /* S state rows */
    const int c0 = item * j->cb, c1 = min_i(C, c0 + j->cb);
    double wt[QREF__CONV_MAX_K][QREF__CONV_LANES], acc[QREF__CONV_LANES];
    for (int cs = c0; cs < c1; cs += QREF__CONV_LANES) {
        const int nc = min_i(QREF__CONV_LANES, c1 - cs);
        for (int k = 0; k < K; k++)                         /* taps, (K, channels) */
            for (int c = 0; c < nc; c++)
                wt[k][c] = j->w[(size_t)(cs + c) * K + k];
        for (int t = 0; t < j->n; t++) {
            for (int c = 0; c < nc; c++)
                acc[c] = 0;
            for (int k = 0; k < K; k++) {
                const int src = t - S + k;                  /* input time, < 0 reads state */
                const qref_real *row = (src >= 0 ? j->x + (size_t)src * C : j->state + (size_t)(S + src) * C) + cs;
                for (int c = 0; c < nc; c++)
                    acc[c] += wt[k][c] * row[c];
            }
            qref_real *o = j->out + (size_t)t * C + cs;     /* (channels) */
#if defined(QREF_PRECISION_F64)
            for (int c = 0; c < nc; c++)
                o[c] = (qref_real)qref__silu(acc[c]);
#else
            for (int c = 0; c < nc; c++)
                o[c] = (qref_real)acc[c];
            qref__vsiluf(o, o, NULL, (size_t)nc);
#endif
        }
    }
}

void qref__conv1d_causal_silu(qref_real *out, const qref_real *x, qref_real *state,
                              const qref_real *w, int n, int C, int K)
{
    assert(K >= 1 && K <= QREF__CONV_MAX_K && C > 0 && n >= 0);
    assert(out != x);
    const int S = K - 1;                                    /* state rows */
    int cb = n >= QREF__GRAIN ? 32 : QREF__GRAIN / (n > 0 ? n : 1);
    cb = cb < 32 ? 32 : cb;                                 /* whole vector blocks of SiLU */
    conv_job j = {out, x, state, w, n, C, K, cb};
    if (n > 0)
        qref__parallel((C + cb - 1) / cb, conv_item, &j);
    if (S == 0 || n == 0)
        return;
    if (n >= S) {
        memcpy(state, x + (size_t)(n - S) * C, (size_t)S * C * sizeof *state);
    } else {
        memmove(state, state + (size_t)n * C, (size_t)(S - n) * C * sizeof *state);
        memcpy(state + (size_t)(S - n) * C, x, (size_t)n * C * sizeof *state);
    }
}

/* ---------------------------------------------------------------- elementwise */

typedef struct {
    qref_real *o;
    const qref_real *x, *y;
    size_t n;
    int op;
} elem_job;

enum { ELEM_ADD, ELEM_GATE, ELEM_SILU_MUL, ELEM_GELU_TANH, ELEM_GELU_ERF };

static void elem_item(void *ctx, int item, int worker)
{
    (void)worker;
    const elem_job *j = ctx;
    const size_t i0 = (size_t)item * QREF__GRAIN;
    const size_t i1 = j->n - i0 < QREF__GRAIN ? j->n : i0 + QREF__GRAIN;
    qref_real *o = j->o;
    const qref_real *x = j->x, *y = j->y;
    switch (j->op) {
    case ELEM_ADD:
        for (size_t i = i0; i < i1; i++)
            o[i] = x[i] + y[i];
        break;
#if defined(QREF_PRECISION_F64)
    case ELEM_GATE:
        for (size_t i = i0; i < i1; i++)
            o[i] = (qref_real)((double)x[i] * qref__sigmoid((double)y[i]));
        break;
    case ELEM_SILU_MUL:
        for (size_t i = i0; i < i1; i++)
            o[i] = (qref_real)(qref__silu((double)x[i]) * (double)y[i]);
        break;
    case ELEM_GELU_TANH:
        for (size_t i = i0; i < i1; i++)
            o[i] = (qref_real)qref__gelu_tanh(x[i]);
        break;
#else
    case ELEM_GATE:
        qref__vgatef(o + i0, x + i0, y + i0, i1 - i0);
        break;
    case ELEM_SILU_MUL:
        qref__vsiluf(o + i0, x + i0, y + i0, i1 - i0);
        break;
    case ELEM_GELU_TANH:
        qref__vgelu_tanhf(o + i0, x + i0, i1 - i0);
        break;
#endif
    default:
        for (size_t i = i0; i < i1; i++)
            o[i] = (qref_real)qref__gelu_erf(x[i]);
        break;
    }
}

static void run_elem(qref_real *o, const qref_real *x, const qref_real *y, size_t n, int op)
{
    elem_job j = {o, x, y, n, op};
    qref__parallel((int)((n + QREF__GRAIN - 1) / QREF__GRAIN), elem_item, &j);
}

void qref__add(qref_real *x, const qref_real *y, size_t n) { run_elem(x, x, y, n, ELEM_ADD); }
void qref__gate_sigmoid(qref_real *x, const qref_real *g, size_t n) { run_elem(x, x, g, n, ELEM_GATE); }
void qref__silu_mul(qref_real *o, const qref_real *gt, const qref_real *up, size_t n)
{
    run_elem(o, gt, up, n, ELEM_SILU_MUL);
}
void qref__gelu(qref_real *x, size_t n, int erf_form) { run_elem(x, x, NULL, n, erf_form ? ELEM_GELU_ERF : ELEM_GELU_TANH); }

/* ---------------------------------------------------------------- MoE routing */

/* Items: blocks of 64 tokens, each routed on its own. */
typedef struct {
    int *idx;
    qref_real *w;
    const qref_real *logits;
    int n, E, k;
} route_job;

static void route_item(void *ctx, int item, int worker)
{
    (void)worker;
    const route_job *j = ctx;
    int *idx = j->idx;
    qref_real *w = j->w;
    const qref_real *logits = j->logits;
    const int E = j->E, k = j->k, t0 = item * 64, n = min_i(j->n, t0 + 64);
    for (int t = t0; t < n; t++) {
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

void qref__moe_route(int *idx, qref_real *w, const qref_real *logits, int n, int E, int k)
{
    assert(E > 0 && k > 0 && k <= E);
    route_job j = {idx, w, logits, n, E, k};
    qref__parallel((n + 63) / 64, route_item, &j);
}
