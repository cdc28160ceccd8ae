/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the engine's numeric kernels (reference/kernels.c, attention.c, gdn.c) and of
 * the float build's vectorised transcendentals (reference/vecmath.c).
 *
 * Each kernel is compared with an independent naive implementation (tests/naive.c, plain
 * double loops) on pseudo-random inputs, plus hand-derived cases where the semantics are
 * easy to get subtly wrong: which MRoPE frequency reads which position axis, conv state
 * carried across calls, chunked vs recurrent gated delta rule, GQA head mapping, router ties.
 * Tolerances depend on the build precision.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "naive.h"
#include "qref_internal.h"
#include "vecmath.h"
#include "check_main.h"

#ifdef QREF_PRECISION_F64
#define TOL_ONE_ROUND 1e-13     /* kernels that round once */
#define TOL_BLAS 1e-12          /* BLAS-accumulated dot products */
#define TOL_GDN 1e-12           /* chunked vs recurrent vs naive delta rule */
#else
#define TOL_ONE_ROUND 1e-6
#define TOL_BLAS 1e-5
#define TOL_GDN 1e-5
#endif
/* rotary: an angle of |p| radians carries |p| ulp of argument error in any formula */
#define TOL_ROPE(max_pos) (4 * TOL_ONE_ROUND + (max_pos) * 4e-16)

/* ---------------------------------------------------------------- helpers */

/* splitmix64: deterministic across platforms */
static double rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;         /* [0, 1) */
}

static void fill(qref_real *a, size_t n, uint64_t *s, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (qref_real)(lo + (hi - lo) * rnd(s));
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

#define NEW_REAL(n) ((qref_real *)xcalloc((size_t)(n), sizeof(qref_real)))
#define NEW_DBL(n) ((double *)xcalloc((size_t)(n), sizeof(double)))

/* Largest |a - e| / (1 + |e|) over cnt values; *at receives its index. */
static double worst_err(const qref_real *a, const double *e, size_t cnt, size_t *at)
{
    double worst = 0;
    for (size_t i = 0; i < cnt; i++) {
        double err = fabs((double)a[i] - e[i]) / (1.0 + fabs(e[i]));
        if (err > worst || isnan(err)) {
            worst = isnan(err) ? INFINITY : err;
            if (at)
                *at = i;
        }
    }
    return worst;
}

/* |a - e| <= tol (1 + |e|) everywhere, or fail naming the case and the worst element. */
static void assert_close(const char *what, const qref_real *a, const double *e, size_t cnt,
                         double tol)
{
    size_t at = 0;
    double err = worst_err(a, e, cnt, &at);
    ck_assert_msg(err <= tol, "%s: element %zu is %.17g, expected %.17g (error %.3g > tol %.3g)",
                  what, at, cnt ? (double)a[at] : 0.0, cnt ? e[at] : 0.0, err, tol);
}

static void to_double(double *d, const qref_real *a, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        d[i] = a[i];
}

/* ---------------------------------------------------------------- linear */

static const struct { int n, in, out, bias; } linear_cases[] = {
    {1, 7, 5, 0}, {1, 7, 5, 1}, {6, 33, 17, 0}, {6, 33, 17, 1}, {3, 1, 1, 1},
    {300, 33, 200, 1},          /* two token blocks times four column blocks */
    {1, 40, 3100, 0},           /* one token, many column blocks */
};

START_TEST(test_kernels_linear_matches_naive)
{
    const int n = linear_cases[_i].n, in = linear_cases[_i].in, out = linear_cases[_i].out;
    uint64_t s = 11 + (uint64_t)_i;
    qref_real *x = NEW_REAL(n * in), *w = NEW_REAL(out * in), *b = NEW_REAL(out);
    qref_real *y = NEW_REAL(n * out);
    double *e = NEW_DBL(n * out);
    fill(x, (size_t)n * in, &s, -1, 1);
    fill(w, (size_t)out * in, &s, -1, 1);
    fill(b, (size_t)out, &s, -1, 1);
    const qref_real *bp = linear_cases[_i].bias ? b : NULL;
    qref__linear(y, x, w, bp, n, in, out);
    naive_linear(e, x, w, bp, n, in, out);
    char what[96];
    snprintf(what, sizeof what, "linear(n=%d, in=%d, out=%d, bias=%d)", n, in, out,
             linear_cases[_i].bias);
    assert_close(what, y, e, (size_t)n * out, TOL_BLAS);
    free(x), free(w), free(b), free(y), free(e);
}
END_TEST

/* ---------------------------------------------------------------- norms */

START_TEST(test_kernels_rmsnorm_one_plus_w)
{
    enum { N = 5, DIM = 24 };
    uint64_t s = 21;
    qref_real x[N * DIM], w[DIM], o[N * DIM];
    double e[N * DIM];
    fill(x, N * DIM, &s, -3, 3);
    fill(w, DIM, &s, -0.5, 0.5);
    naive_rmsnorm(e, x, w, N, DIM, 1e-6);
    qref__rmsnorm(o, x, w, N, DIM, 1e-6);
    assert_close("rmsnorm", o, e, N * DIM, TOL_ONE_ROUND);
    qref__rmsnorm(x, x, w, N, DIM, 1e-6);                   /* in place */
    ck_assert_msg(memcmp(x, o, sizeof o) == 0, "rmsnorm in place differs from out of place");

    /* hand case: x = (3, 4), w = (0, 1): mean square 12.5, so o = (3, 8) / sqrt(12.5 + eps) */
    const qref_real hx[2] = {3, 4}, hw[2] = {0, 1};
    qref_real ho[2];
    const double r = sqrt(12.5 + 1e-6), he[2] = {3 / r, 8 / r};
    qref__rmsnorm(ho, hx, hw, 1, 2, 1e-6);
    assert_close("rmsnorm hand case", ho, he, 2, TOL_ONE_ROUND);
}
END_TEST

START_TEST(test_kernels_rmsnorm_gated)
{
    enum { N = 4, DIM = 16 };
    uint64_t s = 22;
    qref_real x[N * DIM], z[N * DIM], w[DIM], o[N * DIM];
    double e[N * DIM];
    fill(x, N * DIM, &s, -2, 2);
    fill(z, N * DIM, &s, -4, 4);
    fill(w, DIM, &s, 0.5, 1.5);
    naive_rmsnorm_gated(e, x, z, w, N, DIM, 1e-6);
    qref__rmsnorm_gated(o, x, z, w, N, DIM, 1e-6);
    assert_close("rmsnorm_gated", o, e, N * DIM, TOL_ONE_ROUND);
    qref__rmsnorm_gated(x, x, z, w, N, DIM, 1e-6);
    ck_assert_msg(memcmp(x, o, sizeof o) == 0, "rmsnorm_gated in place differs");

    /* the norm uses x only (norm before gate): scaling z must not change the scale of o */
    const qref_real hx[2] = {1, -1}, hz[2] = {0, 10}, hw[2] = {1, 2};
    qref_real ho[2];
    const double sil10 = 10.0 / (1.0 + exp(-10.0));
    const double he[2] = {0.0, -1.0 / sqrt(1.0 + 1e-6) * 2.0 * sil10};
    qref__rmsnorm_gated(ho, hx, hz, hw, 1, 2, 1e-6);
    assert_close("rmsnorm_gated hand case", ho, he, 2, TOL_ONE_ROUND);
}
END_TEST

START_TEST(test_kernels_layernorm)
{
    enum { N = 4, DIM = 20 };
    uint64_t s = 23;
    qref_real x[N * DIM], w[DIM], b[DIM], o[N * DIM];
    double e[N * DIM];
    fill(x, N * DIM, &s, 1, 5);                             /* non-zero mean */
    fill(w, DIM, &s, 0.5, 1.5);
    fill(b, DIM, &s, -1, 1);
    naive_layernorm(e, x, w, b, N, DIM, 1e-6);
    qref__layernorm(o, x, w, b, N, DIM, 1e-6);
    assert_close("layernorm with bias", o, e, N * DIM, TOL_ONE_ROUND);
    naive_layernorm(e, x, w, NULL, N, DIM, 1e-6);
    qref__layernorm(o, x, w, NULL, N, DIM, 1e-6);
    assert_close("layernorm without bias", o, e, N * DIM, TOL_ONE_ROUND);
    qref__layernorm(x, x, w, NULL, N, DIM, 1e-6);
    ck_assert_msg(memcmp(x, o, sizeof o) == 0, "layernorm in place differs");
}
END_TEST

START_TEST(test_kernels_l2norm_with_zero_row)
{
    enum { N = 3, DIM = 12 };
    uint64_t s = 24;
    qref_real x[N * DIM];
    double e[N * DIM];
    fill(x, N * DIM, &s, -1, 1);
    memset(x + DIM, 0, DIM * sizeof *x);                    /* row 1 all zeros */
    naive_l2norm(e, x, N, DIM, 1e-6);
    qref__l2norm(x, N, DIM, 1e-6);
    assert_close("l2norm", x, e, N * DIM, TOL_ONE_ROUND);
    for (int i = 0; i < DIM; i++)
        ck_assert_msg(x[DIM + i] == 0, "l2norm of a zero row: element %d is %g", i, (double)x[DIM + i]);
    double sq = 0;
    for (int i = 0; i < DIM; i++)
        sq += (double)x[i] * x[i];
    ck_assert_msg(fabs(sq - 1) < 1e-4, "l2norm row 0 has squared norm %.9g", sq);
}
END_TEST

/* ---------------------------------------------------------------- rotary */

/* Hand-derived axis tables: which position axis (0 T, 1 H, 2 W) each frequency reads. */
static const struct { int R, section[3], interleaved, axis[8]; } mrope_hand[] = {
    /* interleaved {3,3,2}: H at 1,4,7 (< 9), W at 2,5 (< 6), T elsewhere */
    {16, {3, 3, 2}, 1, {0, 1, 2, 0, 1, 2, 0, 1}},
    /* interleaved {4,2,2}: H at 1,4 (< 6), W at 2,5 (< 6), T at 0,3,6,7 */
    {16, {4, 2, 2}, 1, {0, 1, 2, 0, 1, 2, 0, 0}},
    /* contiguous {3,3,2}: T T T H H H W W */
    {16, {3, 3, 2}, 0, {0, 0, 0, 1, 1, 1, 2, 2}},
    /* contiguous {2,4,2}: T T H H H H W W */
    {16, {2, 4, 2}, 0, {0, 0, 1, 1, 1, 1, 2, 2}},
};

START_TEST(test_kernels_mrope_hand_sections)
{
    const int R = mrope_hand[_i].R, half = R / 2;
    const double theta = 10000.0;
    const int64_t pos[3] = {100, 20, 3};                    /* one token: T, H, W */
    qref_real c[8], sn[8];
    qref__mrope_angles(c, sn, pos, 1, R, theta, mrope_hand[_i].section, mrope_hand[_i].interleaved);
    for (int j = 0; j < half; j++) {
        const int axis = mrope_hand[_i].axis[j];
        const double ang = (double)pos[axis] * pow(theta, -2.0 * j / R);
        ck_assert_msg(fabs(c[j] - cos(ang)) <= TOL_ROPE(100.0) && fabs(sn[j] - sin(ang)) <= TOL_ROPE(100.0),
                      "case %d (section {%d,%d,%d}, interleaved %d): frequency %d should read axis %d "
                      "(pos %lld): cos %.9g sin %.9g, expected %.9g %.9g",
                      _i, mrope_hand[_i].section[0], mrope_hand[_i].section[1],
                      mrope_hand[_i].section[2], mrope_hand[_i].interleaved, j, axis,
                      (long long)pos[axis], (double)c[j], (double)sn[j], cos(ang), sin(ang));
        ck_assert_int_eq(naive_rope_axis(j, R, mrope_hand[_i].section, mrope_hand[_i].interleaved),
                         axis);
        ck_assert_int_eq(naive_rope_axis(j + half, R, mrope_hand[_i].section,
                                         mrope_hand[_i].interleaved), axis);
    }
}
END_TEST

static const struct { int R, D, section[3], interleaved; } rope_cases[] = {
    {16, 32, {3, 3, 2}, 1},     /* partial rotary: dims 16..31 pass through */
    {64, 64, {11, 11, 10}, 1},  /* the checkpoint default, full rotary */
    {16, 20, {3, 3, 2}, 0},
    {24, 24, {4, 4, 4}, 0},
};

START_TEST(test_kernels_rope_matches_naive)
{
    enum { N = 5, HEADS = 3 };
    const int R = rope_cases[_i].R, D = rope_cases[_i].D, half = R / 2;
    uint64_t s = 31 + (uint64_t)_i;
    int64_t pos[3 * N];
    for (int i = 0; i < 3 * N; i++)
        pos[i] = (int64_t)(rnd(&s) * 5000);
    qref_real *x = NEW_REAL(N * HEADS * D), *c = NEW_REAL(N * half), *sn = NEW_REAL(N * half);
    qref_real *x0 = NEW_REAL(N * HEADS * D);
    double *e = NEW_DBL(N * HEADS * D);
    fill(x, (size_t)N * HEADS * D, &s, -2, 2);
    memcpy(x0, x, sizeof *x * N * HEADS * D);
    naive_rope(e, x, pos, N, HEADS, D, R, 1e7, rope_cases[_i].section, rope_cases[_i].interleaved);
    qref__mrope_angles(c, sn, pos, N, R, 1e7, rope_cases[_i].section, rope_cases[_i].interleaved);
    qref__rope_apply(x, c, sn, N, HEADS, D, R);
    char what[96];
    snprintf(what, sizeof what, "rope(R=%d, D=%d, interleaved=%d)", R, D, rope_cases[_i].interleaved);
    assert_close(what, x, e, (size_t)N * HEADS * D, TOL_ROPE(5000.0));
    for (int t = 0; t < N * HEADS; t++)
        for (int d = R; d < D; d++)
            ck_assert_msg(x[t * D + d] == x0[t * D + d], "%s: pass-through dim %d changed", what, d);
    free(x), free(c), free(sn), free(x0), free(e);
}
END_TEST

/* Text positions (T = H = W) under interleaved MRoPE are plain 1-D RoPE, bit for bit. */
START_TEST(test_kernels_mrope_text_equals_1d_bitwise)
{
    enum { N = 40, R = 64, D = 128, HEADS = 2 };
    const double theta = 1e7;
    const int sec[3] = {11, 11, 10}, all_t[3] = {R / 2, 0, 0};
    int64_t pos3[3 * N], pos1[3 * N];
    for (int t = 0; t < N; t++) {
        pos3[t] = pos3[N + t] = pos3[2 * N + t] = 7 + 3 * t;
        pos1[t] = 7 + 3 * t;
        pos1[N + t] = -1000 - t, pos1[2 * N + t] = 99999;   /* must be ignored */
    }
    qref_real c3[N * R / 2], s3[N * R / 2], c1[N * R / 2], s1[N * R / 2];
    qref__mrope_angles(c3, s3, pos3, N, R, theta, sec, 1);
    qref__mrope_angles(c1, s1, pos1, N, R, theta, all_t, 0);
    for (int t = 0; t < N; t++)
        for (int j = 0; j < R / 2; j++) {
            const int i = t * R / 2 + j;
            /* 1-D RoPE: inv_freq = 1 / theta^(2j/R), angle = position * inv_freq */
            const double ang = (double)pos1[t] * (1.0 / pow(theta, (double)(2 * j) / R));
            ck_assert_msg(c3[i] == c1[i] && s3[i] == s1[i],
                          "token %d freq %d: 3-axis (%.17g, %.17g) != 1-D (%.17g, %.17g)", t, j,
                          (double)c3[i], (double)s3[i], (double)c1[i], (double)s1[i]);
            ck_assert_msg(c3[i] == (qref_real)cos(ang) && s3[i] == (qref_real)sin(ang),
                          "token %d freq %d: (%.17g, %.17g) != 1-D formula (%.17g, %.17g)", t, j,
                          (double)c3[i], (double)s3[i], cos(ang), sin(ang));
        }
    uint64_t s = 33;
    qref_real *xa = NEW_REAL(N * HEADS * D), *xb = NEW_REAL(N * HEADS * D);
    fill(xa, (size_t)N * HEADS * D, &s, -1, 1);
    memcpy(xb, xa, sizeof *xa * N * HEADS * D);
    qref__rope_apply(xa, c3, s3, N, HEADS, D, R);
    qref__rope_apply(xb, c1, s1, N, HEADS, D, R);
    ck_assert_msg(memcmp(xa, xb, sizeof *xa * N * HEADS * D) == 0, "rotated vectors differ");
    free(xa), free(xb);
}
END_TEST

/* ---------------------------------------------------------------- causal conv */

START_TEST(test_kernels_conv_matches_naive)
{
    enum { N = 9, C = 6, K = 4 };
    uint64_t s = 41;
    qref_real x[N * C], w[C * K], state[(K - 1) * C], hist[(K - 1) * C], out[N * C];
    double e[N * C];
    fill(x, N * C, &s, -2, 2);
    fill(w, C * K, &s, -1, 1);
    fill(state, (K - 1) * C, &s, -2, 2);
    memcpy(hist, state, sizeof hist);
    naive_conv_silu(e, hist, x, w, N, C, K);
    qref__conv1d_causal_silu(out, x, state, w, N, C, K);
    assert_close("conv1d", out, e, N * C, TOL_ONE_ROUND);
    ck_assert_msg(memcmp(state, x + (N - K + 1) * C, sizeof state) == 0,
                  "conv state is not the last K-1 inputs");
}
END_TEST

/* Split schedules of the same 8 tokens: outputs bitwise equal to one call, and the state
 * after every call is exactly the last K-1 inputs seen so far. */
static const int conv_splits[][9] = {
    {8, 0}, {1, 1, 1, 1, 1, 1, 1, 1, 0}, {3, 5, 0}, {5, 3, 0}, {2, 1, 5, 0}, {1, 2, 3, 2, 0},
};

START_TEST(test_kernels_conv_schedules_agree)
{
    enum { N = 8, C = 5 };
    for (int K = 2; K <= 4; K++) {
        uint64_t s = 42 + (uint64_t)K;
        qref_real x[N * C], w[C * 4], st0[3 * C], st[3 * C], ref[N * C], out[N * C];
        qref_real seq[(3 + N) * C];                         /* history then inputs */
        fill(x, N * C, &s, -2, 2);
        fill(w, C * K, &s, -1, 1);
        fill(st0, (K - 1) * C, &s, -2, 2);
        memcpy(seq, st0, sizeof *st0 * (K - 1) * C);
        memcpy(seq + (K - 1) * C, x, sizeof x);
        memcpy(st, st0, sizeof st0);
        qref__conv1d_causal_silu(ref, x, st, w, N, C, K);

        memcpy(st, st0, sizeof st0);
        int t = 0;
        for (int p = 0; conv_splits[_i][p]; p++) {
            const int len = conv_splits[_i][p];
            qref__conv1d_causal_silu(out + t * C, x + t * C, st, w, len, C, K);
            t += len;
            ck_assert_msg(memcmp(st, seq + t * C, sizeof *st * (K - 1) * C) == 0,
                          "K=%d split %d: state after %d tokens is not the last K-1 inputs", K, _i, t);
        }
        ck_assert_int_eq(t, N);
        for (int i = 0; i < N * C; i++)
            ck_assert_msg(out[i] == ref[i], "K=%d split %d: token %d channel %d: %.17g vs one call %.17g",
                          K, _i, i / C, i % C, (double)out[i], (double)ref[i]);
    }
}
END_TEST

/* ---------------------------------------------------------------- gated delta rule */

typedef struct {
    int n, Hk, Hv, Dk, Dv;
    qref_real *q, *k, *v, *g, *beta, *state0;
} gdn_inputs;

/* q, k L2-normalised per head, q scaled by 1/sqrt(Dk); g = -exp(A) softplus(a) style decays
 * in [gmin, gmax]; beta in (0, 1); the initial state zero or random. */
static void gdn_make(gdn_inputs *in, int n, int Hk, int Hv, int Dk, int Dv, int init,
                     double gmin, double gmax, uint64_t seed)
{
    uint64_t s = seed;
    *in = (gdn_inputs){n, Hk, Hv, Dk, Dv, NULL, NULL, NULL, NULL, NULL, NULL};
    in->q = NEW_REAL(n * Hk * Dk), in->k = NEW_REAL(n * Hk * Dk), in->v = NEW_REAL(n * Hv * Dv);
    in->g = NEW_REAL(n * Hv), in->beta = NEW_REAL(n * Hv), in->state0 = NEW_REAL(Hv * Dk * Dv);
    fill(in->q, (size_t)n * Hk * Dk, &s, -1, 1);
    fill(in->k, (size_t)n * Hk * Dk, &s, -1, 1);
    fill(in->v, (size_t)n * Hv * Dv, &s, -1, 1);
    fill(in->g, (size_t)n * Hv, &s, gmin, gmax);
    for (int i = 0; i < n * Hv; i++)
        in->beta[i] = (qref_real)(1.0 / (1.0 + exp(-(6 * rnd(&s) - 3))));
    if (init)
        fill(in->state0, (size_t)Hv * Dk * Dv, &s, -1, 1);
    qref__l2norm(in->q, n * Hk, Dk, 1e-6);
    qref__l2norm(in->k, n * Hk, Dk, 1e-6);
    for (int i = 0; i < n * Hk * Dk; i++)
        in->q[i] = (qref_real)(in->q[i] / sqrt((double)Dk));
}

static void gdn_free(gdn_inputs *in)
{
    free(in->q), free(in->k), free(in->v), free(in->g), free(in->beta), free(in->state0);
}

static const struct { int Hk, Hv; } gdn_naive_cases[] = {{2, 2}, {2, 4}, {1, 3}};

START_TEST(test_kernels_gdn_recurrent_matches_naive)
{
    enum { N = 20, DK = 8, DV = 6 };
    const int Hk = gdn_naive_cases[_i].Hk, Hv = gdn_naive_cases[_i].Hv;
    gdn_inputs in;
    gdn_make(&in, N, Hk, Hv, DK, DV, 1, -1.5, 0, 51 + (uint64_t)_i);
    qref_real *out = NEW_REAL(N * Hv * DV), *st = NEW_REAL(Hv * DK * DV);
    double *e = NEW_DBL(N * Hv * DV), *est = NEW_DBL(Hv * DK * DV);
    memcpy(st, in.state0, sizeof *st * Hv * DK * DV);
    to_double(est, in.state0, (size_t)Hv * DK * DV);
    qref__gdn_recurrent(out, in.q, in.k, in.v, in.g, in.beta, st, N, Hk, Hv, DK, DV);
    naive_delta_rule(e, est, in.q, in.k, in.v, in.g, in.beta, N, Hk, Hv, DK, DV);
    char what[96];
    snprintf(what, sizeof what, "gdn recurrent vs naive (Hk=%d, Hv=%d) output", Hk, Hv);
    assert_close(what, out, e, (size_t)N * Hv * DV, TOL_GDN);
    snprintf(what, sizeof what, "gdn recurrent vs naive (Hk=%d, Hv=%d) state", Hk, Hv);
    assert_close(what, st, est, (size_t)Hv * DK * DV, TOL_GDN);
    free(out), free(st), free(e), free(est);
    gdn_free(&in);
}
END_TEST

/* Every combination of length, initial state, head ratio and chunk size, plus strong and
 * absent decay at a few lengths. */
typedef struct { int n, init, rep, chunk; double gmin, gmax; } gdn_case;
enum { GDN_DK = 16, GDN_DV = 12, GDN_HK = 2 };
static const int gdn_lengths[] = {1, 3, 63, 64, 65, 130};
#define GDN_GRID (6 * 2 * 2 * 2)
static const gdn_case gdn_extra[] = {
    {65, 1, 2, 64, -40, -5},    /* decays that underflow within a chunk */
    {130, 1, 1, 16, -40, -5},
    {65, 1, 1, 64, 0, 0},       /* no decay at all */
    {9, 1, 2, 4, 0, 0},
    {0, 1, 2, 64, -1, 0},       /* empty call: state untouched */
};
#define GDN_CASES (GDN_GRID + (int)(sizeof gdn_extra / sizeof gdn_extra[0]))

static gdn_case gdn_case_at(int i)
{
    if (i >= GDN_GRID)
        return gdn_extra[i - GDN_GRID];
    gdn_case c = {gdn_lengths[i % 6], (i / 6) % 2, 1 + (i / 12) % 2, (i / 24) ? 4 : 64, -1.5, 0};
    return c;
}

/* Runs chunked and recurrent on case i; returns the worst output and state errors. */
static void gdn_compare(int i, double *err_out, double *err_state, char *what, size_t what_len)
{
    const gdn_case c = gdn_case_at(i);
    const int Hv = GDN_HK * c.rep, n = c.n;
    gdn_inputs in;
    gdn_make(&in, n, GDN_HK, Hv, GDN_DK, GDN_DV, c.init, c.gmin, c.gmax, 1000 + (uint64_t)i);
    const size_t so = (size_t)n * Hv * GDN_DV, ss = (size_t)Hv * GDN_DK * GDN_DV;
    qref_real *oc = NEW_REAL(so), *orr = NEW_REAL(so), *sc = NEW_REAL(ss), *sr = NEW_REAL(ss);
    qref_real *scratch = NEW_REAL(qref__gdn_chunked_scratch(c.chunk, GDN_DK, GDN_DV));
    double *e = NEW_DBL(so), *es = NEW_DBL(ss);
    memcpy(sc, in.state0, sizeof *sc * ss);
    memcpy(sr, in.state0, sizeof *sr * ss);
    qref__gdn_chunked(oc, in.q, in.k, in.v, in.g, in.beta, sc, n, GDN_HK, Hv, GDN_DK, GDN_DV,
                      c.chunk, scratch);
    qref__gdn_recurrent(orr, in.q, in.k, in.v, in.g, in.beta, sr, n, GDN_HK, Hv, GDN_DK, GDN_DV);
    to_double(e, orr, so);
    to_double(es, sr, ss);
    *err_out = worst_err(oc, e, so, NULL);
    *err_state = worst_err(sc, es, ss, NULL);
    snprintf(what, what_len, "gdn chunked vs recurrent (n=%d, init=%d, Hv=%d*Hk, chunk=%d, g in [%g,%g])",
             n, c.init, c.rep, c.chunk, c.gmin, c.gmax);
    if (n == 0)
        ck_assert_msg(memcmp(sc, in.state0, sizeof *sc * ss) == 0, "%s: state changed", what);
    free(oc), free(orr), free(sc), free(sr), free(scratch), free(e), free(es);
    gdn_free(&in);
}

START_TEST(test_kernels_gdn_chunked_matches_recurrent)
{
    double eo, es;
    char what[160];
    gdn_compare(_i, &eo, &es, what, sizeof what);
    ck_assert_msg(eo <= TOL_GDN, "%s: output error %.3g > %.3g", what, eo, TOL_GDN);
    ck_assert_msg(es <= TOL_GDN, "%s: final state error %.3g > %.3g", what, es, TOL_GDN);
}
END_TEST

/* The same grid once more, reporting the worst error so its margin to the bound is visible. */
START_TEST(test_kernels_gdn_chunked_worst_error)
{
    double worst_o = 0, worst_s = 0;
    char what[160], at_o[160] = "", at_s[160] = "";
    for (int i = 0; i < GDN_CASES; i++) {
        double eo, es;
        gdn_compare(i, &eo, &es, what, sizeof what);
        if (eo > worst_o)
            worst_o = eo, snprintf(at_o, sizeof at_o, "%s", what);
        if (es > worst_s)
            worst_s = es, snprintf(at_s, sizeof at_s, "%s", what);
    }
    printf("[%s] worst output error %.3g at %s\n", QREF_PRECISION_NAME, worst_o, at_o);
    printf("[%s] worst state error %.3g at %s\n", QREF_PRECISION_NAME, worst_s, at_s);
    ck_assert_msg(worst_o <= TOL_GDN && worst_s <= TOL_GDN, "worst errors %.3g / %.3g > %.3g",
                  worst_o, worst_s, TOL_GDN);
}
END_TEST

/* ---------------------------------------------------------------- attention */

static const struct { int n, Tk, q_off, Hq, Hkv, D, mask; } attn_cases[] = {
    {3, 10, 7, 4, 2, 8, 1},     /* decode-like tail, GQA 2:1, masked keys */
    {10, 10, 0, 4, 1, 16, 0},   /* prefill, MQA */
    {10, 10, 0, 6, 3, 8, 1},    /* prefill with masked keys */
    {1, 10, 9, 2, 2, 8, 1},     /* one decode step, MHA */
    {4, 6, 5, 4, 2, 8, 0},      /* q_off = Tk - 1: every query sees every key */
    {2, 4, 0, 2, 1, 4, 2},      /* query 0 sees only a masked key: zero output */
    {130, 150, 20, 4, 2, 16, 1},/* three query blocks, masked keys */
    {70, 70, 69, 2, 2, 8, 0},   /* two blocks, bidirectional */
    {260, 4100, 4099, 1, 1, 4, 1},  /* 4096 keys and more: blocks of 256 queries, bidirectional */
    {20, 4200, 4180, 2, 1, 8, 0},   /* a partial block of 256 at the end of a long cache */
    {300, 1200, 900, 2, 1, 8, 1},   /* more than one key block: keys walked, causal, masked keys */
    {130, 1100, 1099, 2, 2, 8, 0},  /* keys walked, bidirectional, a partial last key block */
    {200, 1000, 500, 1, 1, 4, 3},   /* keys walked; queries below 600 see only masked keys */
    /* head dims the float build's tile kernels take (multiples of 16 and 32): walks of 12 and
     * 4 rows per tile with partial last tiles, causal and bidirectional, masked keys */
    {203, 1100, 900, 2, 1, 64, 1},  /* causal, GQA, masked keys, a partial key block */
    {130, 1100, 1099, 2, 2, 32, 0}, /* bidirectional */
    {61, 700, 630, 1, 1, 256, 0},   /* the text model's head dim */
    {90, 1000, 550, 1, 1, 64, 3},   /* queries below 600 see only masked keys */
    {19, 4200, 4180, 2, 2, 64, 1},  /* blocks of 256 queries, one partial tile */
};

static void check_attention_case(int _i)
{
    const int n = attn_cases[_i].n, Tk = attn_cases[_i].Tk, q_off = attn_cases[_i].q_off;
    const int Hq = attn_cases[_i].Hq, Hkv = attn_cases[_i].Hkv, D = attn_cases[_i].D;
    uint64_t s = 61 + (uint64_t)_i;
    qref_real *q = NEW_REAL(n * Hq * D), *kc = NEW_REAL(Tk * Hkv * D), *vc = NEW_REAL(Tk * Hkv * D);
    qref_real *out = NEW_REAL(n * Hq * D), *scratch = NEW_REAL(qref__attention_scratch(Tk, Hkv, D));
    double *e = NEW_DBL(n * Hq * D);
    uint8_t *mask = xcalloc((size_t)Tk, 1);
    fill(q, (size_t)n * Hq * D, &s, -2, 2);
    fill(kc, (size_t)Tk * Hkv * D, &s, -2, 2);
    fill(vc, (size_t)Tk * Hkv * D, &s, -2, 2);
    for (int j = 0; j < Tk; j++)
        mask[j] = attn_cases[_i].mask == 1 ? j % 3 != 1 : attn_cases[_i].mask == 2 ? j != 0
                : attn_cases[_i].mask == 3 ? j >= 600 : 1;
    const uint8_t *mp = attn_cases[_i].mask ? mask : NULL;
    const double scale = 1.0 / sqrt((double)D);
    qref__attention(out, q, kc, vc, mp, n, Tk, q_off, Hq, Hkv, D, scale, scratch);
    naive_attention(e, q, kc, vc, mp, n, Tk, q_off, Hq, Hkv, D, scale);
    char what[128];
    snprintf(what, sizeof what, "attention(n=%d, Tk=%d, q_off=%d, Hq=%d, Hkv=%d, D=%d, mask=%d)",
             n, Tk, q_off, Hq, Hkv, D, attn_cases[_i].mask);
    assert_close(what, out, e, (size_t)n * Hq * D, TOL_BLAS); /* scores and values through BLAS */
    if (attn_cases[_i].mask == 2)
        for (int d = 0; d < Hq * D; d++)
            ck_assert_msg(out[d] == 0, "%s: query 0 has no visible key, element %d is %g", what, d,
                          (double)out[d]);
    if (attn_cases[_i].mask == 3)                   /* queries at cache index < 600 */
        for (int i = 0; i < n && q_off + i < 600; i++)
            for (int d = 0; d < Hq * D; d++)
                ck_assert_msg(out[(size_t)i * Hq * D + d] == 0, "%s: query %d has no visible key, element %d is %g",
                              what, i, d, (double)out[(size_t)i * Hq * D + d]);
    free(q), free(kc), free(vc), free(out), free(scratch), free(e), free(mask);
}

/* On this CPU's path: the float build's tile kernels where the CPU has them. */
START_TEST(test_kernels_attention_matches_naive)
{
    check_attention_case(_i);
}
END_TEST

/* The BLAS walk, which the float build takes on a CPU without the tile kernels. */
START_TEST(test_kernels_attention_blas_matches_naive)
{
    ck_assert_int_eq(setenv("QREF_ATTENTION_TILES", "0", 1), 0);
    ck_assert_ptr_null(qref__tiles());
    check_attention_case(_i);
    unsetenv("QREF_ATTENTION_TILES");
}
END_TEST

/* A zero query weights its visible keys uniformly: the output is the mean of their values,
 * taken from the kv head that the query's group maps to. */
START_TEST(test_kernels_attention_hand_uniform)
{
    enum { TK = 5, HQ = 4, HKV = 2, D = 3 };
    qref_real q[2 * HQ * D] = {0}, kc[TK * HKV * D], vc[TK * HKV * D], out[2 * HQ * D];
    qref_real *scratch = NEW_REAL(qref__attention_scratch(TK, HKV, D));
    for (int j = 0; j < TK; j++)
        for (int h = 0; h < HKV; h++)
            for (int d = 0; d < D; d++) {
                kc[(j * HKV + h) * D + d] = (qref_real)(j - d);
                vc[(j * HKV + h) * D + d] = (qref_real)(100 * h + 10 * j + d);
            }
    const uint8_t mask[TK] = {1, 0, 1, 1, 1};
    /* two queries at cache indices 2 and 3: they see keys {0, 2} and {0, 2, 3} */
    qref__attention(out, q, kc, vc, mask, 2, TK, 2, HQ, HKV, D, 0.5, scratch);
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < HQ; h++)
            for (int d = 0; d < D; d++) {
                const int kvh = h / 2;
                const double e = i == 0 ? 100.0 * kvh + 10.0 * (0 + 2) / 2 + d
                                        : 100.0 * kvh + 10.0 * (0 + 2 + 3) / 3 + d;
                const double a = out[(i * HQ + h) * D + d];
                ck_assert_msg(fabs(a - e) <= TOL_ONE_ROUND * (1 + fabs(e)),
                              "query %d head %d dim %d: %.9g, expected %.9g", i, h, d, a, e);
            }
    free(scratch);
}
END_TEST

/* ---------------------------------------------------------------- MoE routing */

START_TEST(test_kernels_moe_route_hand)
{
    /* logits (1, 2, 3, 0), top-2: experts 2 and 1 with weights e^3 / (e^3 + e^2) = sigmoid(1)
     * and sigmoid(-1) */
    const qref_real l1[4] = {1, 2, 3, 0};
    int idx[4];
    qref_real w[4];
    qref__moe_route(idx, w, l1, 1, 4, 2);
    ck_assert_int_eq(idx[0], 2);
    ck_assert_int_eq(idx[1], 1);
    const double e1[2] = {0.7310585786300049, 0.2689414213699951};
    assert_close("moe hand top-2", w, e1, 2, TOL_ONE_ROUND);

    /* ties go to the lower index: (0.5, 1, 1, 0.5) */
    const qref_real l2[4] = {0.5, 1, 1, 0.5};
    qref__moe_route(idx, w, l2, 1, 4, 2);
    ck_assert_msg(idx[0] == 1 && idx[1] == 2, "tie top-2 picked %d, %d", idx[0], idx[1]);
    const double e2[2] = {0.5, 0.5};
    assert_close("moe tie top-2", w, e2, 2, TOL_ONE_ROUND);
    qref__moe_route(idx, w, l2, 1, 4, 3);
    ck_assert_msg(idx[0] == 1 && idx[1] == 2 && idx[2] == 0, "tie top-3 picked %d, %d, %d", idx[0],
                  idx[1], idx[2]);

    /* k = E: every expert, in descending order, weights = the full softmax */
    const qref_real l3[4] = {0.1f, -0.3f, 2, 0.7f};
    qref__moe_route(idx, w, l3, 1, 4, 4);
    const int ei[4] = {2, 3, 0, 1};
    double z = 0, e3[4];
    for (int e = 0; e < 4; e++)
        z += exp((double)l3[e]);
    for (int r = 0; r < 4; r++) {
        ck_assert_msg(idx[r] == ei[r], "k=E rank %d picked %d, expected %d", r, idx[r], ei[r]);
        e3[r] = exp((double)l3[ei[r]]) / z;
    }
    assert_close("moe k=E", w, e3, 4, TOL_ONE_ROUND);
}
END_TEST

START_TEST(test_kernels_moe_route_matches_naive)
{
    enum { N = 6, E = 16, K = 4 };
    uint64_t s = 71;
    qref_real logits[N * E], w[N * K];
    int idx[N * K], eidx[N * K];
    double ew[N * K];
    fill(logits, N * E, &s, -3, 3);
    logits[2 * E + 5] = logits[2 * E + 9] = 4;              /* a tie at the top of token 2 */
    qref__moe_route(idx, w, logits, N, E, K);
    naive_moe_route(eidx, ew, logits, N, E, K);
    for (int i = 0; i < N * K; i++)
        ck_assert_msg(idx[i] == eidx[i], "token %d rank %d: expert %d, expected %d", i / K, i % K,
                      idx[i], eidx[i]);
    assert_close("moe routing weights", w, ew, N * K, TOL_ONE_ROUND);
}
END_TEST

/* ---------------------------------------------------------------- vecmath */

/* Error of got against the double value want, in ulp of want rounded to float. */
static double ulps(float got, double want)
{
    const float w = (float)want;
    if (isinf(w) && got == w)
        return 0;
    const double u = (double)nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / u;
}

/* Every 4099th float in [-87, 88] (about 530000 values) through each function against libm in
 * double. Measured worst: exp 0.92 ulp, SiLU 1.36, GELU 1.44, sigmoid 1.46 (over every float
 * in that range: 1.01, 1.49, 1.82 for the first three). Bounds: 2 ulp for exp,
 * 4 for the rest (three roundings after exp), or 2^-24 absolute where the value passes
 * through 0 (ulp there is meaningless). */
START_TEST(test_vecmath_accuracy)
{
    enum { B = 4096 };
    static float x[B], y[B], z[B], g[B], t[B], one[B];
    double worst[4] = {0};
    float at[4] = {0};
    for (int i = 0; i < B; i++)
        one[i] = 1.0f;
    for (int sign = 0; sign < 2; sign++) {
        const uint32_t top = sign ? 0x42AE0000u : 0x42B00000u;          /* 87, 88 */
        for (uint32_t b = 0; b < top;) {
            size_t m = 0;
            for (; m < B && b < top; m++, b += 4099) {
                const uint32_t bits = b | (sign ? 0x80000000u : 0u);
                memcpy(&x[m], &bits, sizeof bits);
            }
            qref__vexpf(y, x, m);
            qref__vsiluf(z, x, NULL, m);
            qref__vgelu_tanhf(g, x, m);
            qref__vgatef(t, one, x, m);
            for (size_t i = 0; i < m; i++) {
                const double xd = x[i];
                const double want[4] = {exp(xd), xd / (1 + exp(-xd)),
                                        0.5 * xd * (1 + tanh(0.7978845608028654 * (xd + 0.044715 * xd * xd * xd))),
                                        1 / (1 + exp(-xd))};
                const float got[4] = {y[i], z[i], g[i], t[i]};
                for (int f = 0; f < 4; f++) {
                    const double e = fabs(got[f] - want[f]) <= 0x1p-24 ? 0 : ulps(got[f], want[f]);
                    if (e > worst[f] || isnan(got[f]))
                        worst[f] = isnan(got[f]) ? INFINITY : e, at[f] = x[i];
                }
            }
        }
    }
    const char *name[4] = {"exp", "silu", "gelu_tanh", "sigmoid"};
    const double bound[4] = {2, 4, 4, 4};
    printf("vecmath worst: exp %.2f ulp, silu %.2f, gelu_tanh %.2f, sigmoid %.2f\n", worst[0], worst[1],
           worst[2], worst[3]);
    for (int f = 0; f < 4; f++)
        ck_assert_msg(worst[f] <= bound[f], "%s: %.2f ulp at %.9g (bound %g)", name[f], worst[f],
                      (double)at[f], bound[f]);
}
END_TEST

/* The tile walk's softmax numerators (where this CPU has the tile kernels): every 997th float
 * in [-87.33, 0] against exp in double (measured worst 1.00 ulp; bound 2), zero below
 * -87.3365, for -inf and for NaN; the same value at every position of rows of every tail
 * length; the sum against a double sum. */
START_TEST(test_tile_numerators)
{
    const qref__tile_ops *t = qref__tiles();
    if (!t) {
        printf("tile numerators: no tile kernels on this CPU, skipped\n");
        return;
    }
    enum { B = 4096 };
    static float x[B], y[B];
    double worst = 0;
    float at = 0;
    for (uint32_t b = 0; b <= 0x42AEAC50u;) {                       /* -0 .. -87.3365448 */
        int m = 0;
        for (; m < B && b <= 0x42AEAC50u; m++, b += 997) {
            const uint32_t bits = b | 0x80000000u;
            memcpy(&x[m], &bits, sizeof bits);
        }
        t->numerators(y, x, m, 0.0f, 1.0f);
        for (int i = 0; i < m; i++) {
            const double want = exp((double)x[i]);
            const double e = x[i] < -87.3365448f ? (y[i] == 0 ? 0 : INFINITY) : ulps(y[i], want);
            if (e > worst || isnan(y[i]))
                worst = isnan(y[i]) ? INFINITY : e, at = x[i];
        }
    }
    printf("tile numerators (%s): worst %.2f ulp at %.9g\n", t->isa, worst, (double)at);
    ck_assert_msg(worst <= 2, "tile numerators: %.2f ulp at %.9g (bound 2)", worst, (double)at);
    const float special[5] = {-INFINITY, NAN, -87.5f, -1000.0f, 0.0f};
    float ys[5];
    const double ssum = t->numerators(ys, special, 5, 0.0f, 1.0f);
    ck_assert_msg(ys[0] == 0 && ys[1] == 0 && ys[2] == 0 && ys[3] == 0 && ys[4] == 1 && ssum == 1,
                  "special scores: %g %g %g %g %g, sum %g", (double)ys[0], (double)ys[1], (double)ys[2],
                  (double)ys[3], (double)ys[4], ssum);
    uint64_t s = 5;
    float row[70], out[70], one;
    for (int i = 0; i < 70; i++)
        row[i] = (float)(8 * rnd(&s) - 8);
    for (int n = 1; n <= 70; n++) {
        const double sum = t->numerators(out, row, n, 0.5f, 0.7f);
        double want = 0;
        for (int i = 0; i < n; i++) {
            t->numerators(&one, &row[i], 1, 0.5f, 0.7f);
            ck_assert_msg(memcmp(&one, &out[i], sizeof one) == 0, "n %d, value %d: %.9g alone, %.9g in the row", n,
                          i, (double)one, (double)out[i]);
            want += exp(((double)row[i] - 0.5) * 0.7);
        }
        ck_assert_msg(fabs(sum - want) <= 1e-6 * want, "n %d: sum %.12g, expected %.12g", n, sum, want);
    }
}
END_TEST

/* Every tile set this CPU runs gives the scores and updates of the AVX2 set bit for bit (each
 * element one multiply-add chain in a fixed order, whatever the vector width and the rows per
 * tile): 29 query rows (partial tiles in both sets) against 300 keys (a partial panel), head
 * dim 64, the update on top of earlier outputs with per-row factors (some 0, some 1); each
 * row's maximum from the scores kernel against a pass over its scores (a row of NaN scores, a
 * row whose largest score lies in the partial panel). */
START_TEST(test_tile_sets_bits)
{
    const qref__tile_ops *sets[2];
    const int ns = qref__tile_sets(sets);
    if (ns == 0) {
        printf("tile sets: no tile kernels on this CPU, skipped\n");
        return;
    }
    enum { M = 29, KN = 300, D = 64, LDS = 320 };
    uint64_t s = 17;
    float *q = xcalloc((size_t)M * D, sizeof *q), *k = xcalloc((size_t)KN * D, sizeof *k);
    float *v = xcalloc((size_t)KN * D, sizeof *v), *p = xcalloc((size_t)M * LDS, sizeof *p);
    float *kt = xcalloc((size_t)LDS * D, sizeof *kt), *vt = xcalloc((size_t)KN * D, sizeof *vt);
    float *S = xcalloc((size_t)16 * LDS, sizeof *S), mx[16], fac[M];
    float *sc[2], *out[2];
    for (int i = 0; i < M * D; i++)
        q[i] = (float)(4 * rnd(&s) - 2);
    for (int i = 0; i < KN * D; i++)
        k[i] = (float)(4 * rnd(&s) - 2), v[i] = (float)(4 * rnd(&s) - 2);
    for (int i = 0; i < M * LDS; i++)
        p[i] = (float)rnd(&s);
    for (int r = 0; r < M; r++)
        fac[r] = r % 5 == 0 ? 0.0f : r % 5 == 1 ? 1.0f : (float)rnd(&s);
    for (int d = 0; d < D; d++)                          /* row 7's largest score in the partial panel */
        k[295 * D + d] = 3 * q[7 * D + d];
    q[3 * D + 5] = NAN;                                  /* row 3's scores are all NaN: maximum -inf */
    for (int si = 0; si < ns; si++) {
        const qref__tile_ops *t = sets[si];
        const int R = t->rows;
        ck_assert_int_le(R, 16);
        sc[si] = xcalloc((size_t)M * KN, sizeof *sc[si]);
        out[si] = xcalloc((size_t)M * D, sizeof *out[si]);
        for (int i = 0; i < M * D; i++)
            out[si][i] = (float)(i % 7) - 3;
        t->pack_keys(kt, k, D, KN, D, t->panel);
        t->pack_values(vt, v, D, KN, D, t->panel);
        for (int r0 = 0; r0 < M; r0 += R) {
            const int rows = M - r0 < R ? M - r0 : R;
            t->scores(S, LDS, q + (size_t)r0 * D, D, rows, kt, KN, D, mx);
            for (int r = 0; r < rows; r++) {
                memcpy(sc[si] + (size_t)(r0 + r) * KN, S + (size_t)r * LDS, KN * sizeof *S);
                float want = -INFINITY;                  /* the row's maximum, NaNs passed over */
                for (int j = 0; j < KN; j++)
                    want = S[(size_t)r * LDS + j] > want ? S[(size_t)r * LDS + j] : want;
                ck_assert_msg(mx[r] == want, "%s, row %d: maximum %.9g, expected %.9g", t->isa, r0 + r, (double)mx[r],
                              (double)want);
            }
            t->update(out[si] + (size_t)r0 * D, D, p + (size_t)r0 * LDS, LDS, rows, vt, KN, KN, D, fac + r0);
        }
    }
    printf("tile sets: %s (%d rows)%s%s\n", sets[0]->isa, sets[0]->rows, ns > 1 ? " against " : " only",
           ns > 1 ? sets[1]->isa : "");
    for (int i = 0; i < M * KN; i++)
        ck_assert_msg(memcmp(&sc[0][i], &sc[ns - 1][i], sizeof(float)) == 0 || (isnan(sc[0][i]) && isnan(sc[ns - 1][i])),
                      "score %d: %.9g (%s), %.9g (%s)", i,
                      (double)sc[0][i], sets[0]->isa, (double)sc[ns - 1][i], sets[ns - 1]->isa);
    for (int i = 0; i < M * D; i++)
        ck_assert_msg(memcmp(&out[0][i], &out[ns - 1][i], sizeof(float)) == 0, "output %d: %.9g (%s), %.9g (%s)", i,
                      (double)out[0][i], sets[0]->isa, (double)out[ns - 1][i], sets[ns - 1]->isa);
    /* and against the products in double: the tiles compute what they say */
    for (int i = 0; i < M; i++)
        for (int j = 0; j < KN && i != 3; j = j + 37 < KN ? j + 37 : j == 295 ? KN : 295) {
            double want = 0, mag = 0;
            for (int d = 0; d < D; d++) {
                want += (double)q[(size_t)i * D + d] * k[(size_t)j * D + d];
                mag += fabs((double)q[(size_t)i * D + d] * k[(size_t)j * D + d]);
            }
            ck_assert_msg(fabs(sc[0][(size_t)i * KN + j] - want) <= 1e-6 * mag, "score (%d, %d): %.9g, expected %.9g", i,
                          j, (double)sc[0][(size_t)i * KN + j], want);
        }
    for (int si = 0; si < ns; si++)
        free(sc[si]), free(out[si]);
    free(q), free(k), free(v), free(p), free(kt), free(vt), free(S);
}
END_TEST

/* Every tile set this CPU runs gives the numerators and sums of the AVX2 set bit for bit: rows
 * of every length up to 70 and one of 4099 (scores, -inf, NaN and values below the range among
 * them), at two offsets into the buffer. On a CPU with one set it compares that set with
 * itself run again, and says so. */
START_TEST(test_tile_numerators_sets)
{
    const qref__tile_ops *sets[2];
    const int ns = qref__tile_sets(sets);
    if (ns == 0) {
        printf("tile numerator sets: no tile kernels on this CPU, skipped\n");
        return;
    }
    printf("tile numerator sets: %s%s%s\n", sets[0]->isa, ns > 1 ? " against " : " only",
           ns > 1 ? sets[1]->isa : "");
    enum { N = 4099 };
    static float row[N + 1], y0[N + 1], y1[N + 1];
    uint64_t s = 11;
    for (int i = 0; i <= N; i++) {
        const double u = rnd(&s);
        row[i] = u < 0.01 ? -INFINITY : u < 0.02 ? NAN : u < 0.03 ? -200.0f : (float)(16 * rnd(&s) - 12);
    }
    const qref__tile_ops *b = sets[ns - 1];
    for (int n = 1; n <= N; n = n < 70 ? n + 1 : n < N ? N : N + 1)
        for (int off = 0; off < 2; off++) {
            const double s0 = sets[0]->numerators(y0, row + off, n, 4.0f, 0.9f);
            const double s1 = b->numerators(y1, row + off, n, 4.0f, 0.9f);
            ck_assert_msg(memcmp(&s0, &s1, sizeof s0) == 0, "n %d, offset %d: sum %.17g (%s), %.17g (%s)", n, off, s0,
                          sets[0]->isa, s1, b->isa);
            for (int i = 0; i < n; i++)
                ck_assert_msg(memcmp(&y0[i], &y1[i], sizeof y0[i]) == 0, "n %d, offset %d, value %d: %.9g (%s), %.9g (%s)",
                              n, off, i, (double)y0[i], sets[0]->isa, (double)y1[i], b->isa);
        }
}
END_TEST

/* The limits, NaN, a tail shorter than a block, in place, and the softmax numerators. */
START_TEST(test_vecmath_edges)
{
    float x[7] = {-INFINITY, INFINITY, NAN, 88.72f, -87.33f, -100.0f, 100.0f}, y[7];
    qref__vexpf(y, x, 7);
    ck_assert(y[0] == 0 && isinf(y[1]) && y[1] > 0 && isnan(y[2]));
    ck_assert_msg(isfinite(y[3]) && y[3] > 3.3e38f, "exp(88.72) = %g", (double)y[3]);
    ck_assert_msg(y[4] > 0 && y[4] < 1.2e-38f, "exp(-87.33) = %g", (double)y[4]);
    ck_assert(y[5] == 0 && isinf(y[6]));
    float s[40];
    for (int i = 0; i < 40; i++)
        s[i] = (float)(i % 5);
    s[7] = -INFINITY;                                   /* a masked score */
    float p[40];
    const double sum = qref__vsoftmax_expf(p, s, 40, 4.0f, 0.5f);
    double want = 0;
    for (int i = 0; i < 40; i++) {
        const double e = i == 7 ? 0 : exp((s[i] - 4.0) * 0.5);
        want += e;
        ck_assert_msg(fabs(p[i] - e) <= 2.5e-7 * e, "softmax numerator %d: %.9g, expected %.9g", i,
                      (double)p[i], e);
    }
    ck_assert_msg(fabs(sum - want) <= 1e-6 * want, "softmax sum %.12g, expected %.12g", sum, want);
    for (int i = 0; i < 40; i++)
        s[i] = -INFINITY;                               /* no visible score: all zero */
    ck_assert(qref__vsoftmax_expf(p, s, 40, -INFINITY, 0.5f) == 0);
    for (int i = 0; i < 40; i++)
        ck_assert(p[i] == 0);
    float a[19], b[19];
    for (int i = 0; i < 19; i++)
        a[i] = b[i] = (float)(i - 9) * 0.7f;
    qref__vsiluf(a, a, b, 19);                          /* in place, with a factor */
    for (int i = 0; i < 19; i++) {
        const double e = (double)b[i] / (1 + exp(-(double)b[i])) * b[i];
        ck_assert_msg(fabs(a[i] - e) <= 5e-7 * (1 + fabs(e)), "silu*mul %d: %.9g, expected %.9g", i,
                      (double)a[i], e);
    }
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc;

    tc = tcase_create("linear");
    tcase_add_loop_test(tc, test_kernels_linear_matches_naive, 0,
                        (int)(sizeof linear_cases / sizeof linear_cases[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("norms");
    tcase_add_test(tc, test_kernels_rmsnorm_one_plus_w);
    tcase_add_test(tc, test_kernels_rmsnorm_gated);
    tcase_add_test(tc, test_kernels_layernorm);
    tcase_add_test(tc, test_kernels_l2norm_with_zero_row);
    suite_add_tcase(s, tc);

    tc = tcase_create("rope");
    tcase_add_loop_test(tc, test_kernels_mrope_hand_sections, 0,
                        (int)(sizeof mrope_hand / sizeof mrope_hand[0]));
    tcase_add_loop_test(tc, test_kernels_rope_matches_naive, 0,
                        (int)(sizeof rope_cases / sizeof rope_cases[0]));
    tcase_add_test(tc, test_kernels_mrope_text_equals_1d_bitwise);
    suite_add_tcase(s, tc);

    tc = tcase_create("conv");
    tcase_add_test(tc, test_kernels_conv_matches_naive);
    tcase_add_loop_test(tc, test_kernels_conv_schedules_agree, 0,
                        (int)(sizeof conv_splits / sizeof conv_splits[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("gdn");
    tcase_add_loop_test(tc, test_kernels_gdn_recurrent_matches_naive, 0,
                        (int)(sizeof gdn_naive_cases / sizeof gdn_naive_cases[0]));
    tcase_add_loop_test(tc, test_kernels_gdn_chunked_matches_recurrent, 0, GDN_CASES);
    tcase_add_test(tc, test_kernels_gdn_chunked_worst_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("attention");
    tcase_add_loop_test(tc, test_kernels_attention_matches_naive, 0,
                        (int)(sizeof attn_cases / sizeof attn_cases[0]));
    tcase_add_loop_test(tc, test_kernels_attention_blas_matches_naive, 0,
                        (int)(sizeof attn_cases / sizeof attn_cases[0]));
    tcase_add_test(tc, test_kernels_attention_hand_uniform);
    suite_add_tcase(s, tc);

    tc = tcase_create("moe");
    tcase_add_test(tc, test_kernels_moe_route_hand);
    tcase_add_test(tc, test_kernels_moe_route_matches_naive);
    suite_add_tcase(s, tc);

    tc = tcase_create("vecmath");
    tcase_add_test(tc, test_vecmath_accuracy);
    tcase_add_test(tc, test_vecmath_edges);
    tcase_add_test(tc, test_tile_numerators);
    tcase_add_test(tc, test_tile_numerators_sets);
    tcase_add_test(tc, test_tile_sets_bits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(kernels_suite());
}
