/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the comparison metrics (harness/records/metrics.c).
 *
 * Expected values are derived by hand (the derivation is in the comments) or computed by a
 * naive long-double implementation written here, never by the code under test.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "check_main.h"

/* ---------------------------------------------------------------- helpers */

#define ck_assert_close(found, want, tol)                                                   \
    ck_assert_msg(fabs((double)(found) - (double)(want)) <= (tol),                          \
                  "%s = %.17g, expected %.17g (tol %g)", #found, (double)(found),           \
                  (double)(want), (double)(tol))

#define ck_assert_nan(x) ck_assert_msg(isnan(x), "%s = %.17g, expected NaN", #x, (double)(x))

/* Naive KL(softmax(e) || softmax(a)) of one row in long double: sum p (log p - log q). */
static double naive_kl(const double *a, const double *e, size_t V)
{
    long double ma = a[0], me = e[0], sa = 0, se = 0, kl = 0;
    for (size_t j = 1; j < V; j++) {
        if (a[j] > ma) ma = a[j];
        if (e[j] > me) me = e[j];
    }
    for (size_t j = 0; j < V; j++) {
        sa += expl(a[j] - ma);
        se += expl(e[j] - me);
    }
    for (size_t j = 0; j < V; j++) {
        long double lp = e[j] - me - logl(se), lq = a[j] - ma - logl(sa);
        kl += expl(lp) * (lp - lq);
    }
    return (double)kl;
}

static lc_metrics compare_ok(const double *a, const double *e, size_t P, size_t V,
                             const lc_compare_opts *o)
{
    lc_metrics m;
    int rc = lc_compare(&m, a, e, P, V, o);
    ck_assert_msg(rc == 0, "lc_compare(P=%zu, V=%zu) returned %d", P, V, rc);
    return m;
}

/* ---------------------------------------------------------------- a hand-computed 2 x 3 case */

/*        e                     a                     a - e
 * pos 0  [ 1,   2,   3]        [ 1,     2.5, 3]      [ 0,     0.5, 0]
 * pos 1  [-1,   0.5, 2]        [-1.375, 0.5, 2]      [-0.375, 0,   0]
 * max abs 0.5 at (0, 1) (a 2.5, e 2); max rel: 0.5/2 = 0.25 at (0,1), 0.375/1 at (1,0) -> 0.375
 * NMSE = (0.25 + 0.140625) / (1 + 4 + 9 + 1 + 0.25 + 4) = 0.390625 / 19.25
 * cosine 0: dot 1 + 5 + 9 = 15, |a|^2 = 16.25, |e|^2 = 14 -> 15 / sqrt(227.5) = 0.99449
 * cosine 1: dot 1.375 + 0.25 + 4 = 5.625, |a|^2 = 6.140625, |e|^2 = 5.25
 *           -> 5.625 / sqrt(32.23828125) = 0.99069 (the minimum, position 1)
 * argmax: both rows index 2 in a and e -> top-1 agreement 2/2. */
static const double hand_e[6] = {1, 2, 3, -1, 0.5, 2};
static const double hand_a[6] = {1, 2.5, 3, -1.375, 0.5, 2};

START_TEST(test_metrics_hand_elementwise)
{
    lc_compare_opts o = lc_compare_opts_default();
    o.atol = 0.25;
    o.rtol = 0.0625;
    o.topk = 2;
    lc_metrics m = compare_ok(hand_a, hand_e, 2, 3, &o);
    ck_assert_uint_eq(m.n_included, 2);
    ck_assert_uint_eq(m.n_values, 6);
    ck_assert_uint_eq(m.n_kl, 2);
    ck_assert_uint_eq(m.nonfinite, 0);
    ck_assert_uint_eq(m.nonfinite_pos, LC_NO_POS);
    ck_assert_double_eq(m.max_abs, 0.5);
    ck_assert_uint_eq(m.max_abs_pos, 0);
    ck_assert_uint_eq(m.max_abs_index, 1);
    ck_assert_double_eq(m.max_abs_actual, 2.5);
    ck_assert_double_eq(m.max_abs_expected, 2.0);
    ck_assert_double_eq(m.max_rel, 0.375);
    ck_assert_uint_eq(m.max_rel_pos, 1);
    ck_assert_uint_eq(m.max_rel_index, 0);
    /* allclose tol at (0,1): 0.25 + 0.0625*2 = 0.375 < 0.5; at (1,0): 0.3125 < 0.375 */
    ck_assert_uint_eq(m.allclose_fail, 2);
    ck_assert_double_eq_tol(m.allclose_frac, 2.0 / 6.0, 1e-15);
    ck_assert_uint_eq(m.allclose_first_pos, 0);
    ck_assert_uint_eq(m.allclose_first_index, 1);
    ck_assert_close(m.nmse, 0.390625 / 19.25, 1e-16);
    ck_assert_close(m.min_cosine, 5.625 / sqrt(32.23828125), 1e-15);
    ck_assert_uint_eq(m.min_cosine_pos, 1);
    ck_assert_uint_eq(m.top1_agree, 2);
    ck_assert_double_eq(m.top1_frac, 1.0);
    ck_assert_uint_eq(m.top1_first_mismatch_pos, LC_NO_POS);
    /* ULP not asked for: the metric reads NaN */
    ck_assert_nan(lc_metric_value(&m, LC_METRIC_MAX_ULP));
}
END_TEST

START_TEST(test_metrics_hand_kl)
{
    lc_metrics m = compare_ok(hand_a, hand_e, 2, 3, NULL);
    const double kl0 = naive_kl(hand_a, hand_e, 3), kl1 = naive_kl(hand_a + 3, hand_e + 3, 3);
    ck_assert_msg(kl0 > kl1, "test premise: kl0 %g > kl1 %g", kl0, kl1);
    ck_assert_close(m.kl_mean, (kl0 + kl1) / 2, 1e-15);
    ck_assert_close(m.kl_max, kl0, 1e-15);
    ck_assert_uint_eq(m.kl_max_pos, 0);
    /* nearest rank of 2 values: ceil(1.998) = 2nd smallest = the max */
    ck_assert_close(m.kl_p999, kl0, 1e-15);
}
END_TEST

/* allclose |a-e| <= atol + rtol*|e| on the hand case; the two non-zero errors are
 * 0.5 (|e| = 2) and 0.375 (|e| = 1); equality passes. */
static const struct {
    double atol, rtol;
    size_t fails;
} allclose_rows[] = {
    {0.25, 0.125, 0},  /* 0.5 <= 0.5, 0.375 <= 0.375 (both on the boundary) */
    {0.25, 0.0625, 2}, /* 0.375, 0.3125 */
    {0.4375, 0.0, 1},  /* 0.5 fails, 0.375 passes */
    {0.0, 0.0, 2},     /* only exact values pass */
    {0.5, 0.0, 0},
};

START_TEST(test_metrics_allclose_table)
{
    lc_compare_opts o = lc_compare_opts_default();
    o.atol = allclose_rows[_i].atol;
    o.rtol = allclose_rows[_i].rtol;
    lc_metrics m = compare_ok(hand_a, hand_e, 2, 3, &o);
    ck_assert_msg(m.allclose_fail == allclose_rows[_i].fails,
                  "atol %g rtol %g: %zu fails, expected %zu", o.atol, o.rtol, m.allclose_fail,
                  allclose_rows[_i].fails);
    ck_assert_double_eq_tol(m.allclose_frac, (double)allclose_rows[_i].fails / 6.0, 1e-15);
}
END_TEST

/* ---------------------------------------------------------------- masks */

START_TEST(test_metrics_mask_excludes)
{
    /* pos 1 is padding with a huge error and a NaN; pos 2 has a large KL but is excluded from
     * KL only (an image placeholder), so it still drives max abs. */
    const double e[6] = {0, 1, 5, 5, 0, 3};
    const double a[6] = {0, 1.25, 1e6, NAN, 3, 0};
    const uint8_t include[3] = {1, 0, 1};
    const uint8_t kl_include[3] = {1, 1, 0};
    lc_compare_opts o = lc_compare_opts_default();
    o.include = include;
    o.kl_include = kl_include;
    o.topk = 1;
    lc_metrics m = compare_ok(a, e, 3, 2, &o);
    ck_assert_uint_eq(m.n_included, 2);
    ck_assert_uint_eq(m.n_values, 4);
    ck_assert_uint_eq(m.n_kl, 1);
    ck_assert_uint_eq(m.nonfinite, 0);
    ck_assert_uint_eq(m.n_nan, 0);
    ck_assert_double_eq(m.max_abs, 3.0); /* |3 - 0| = |0 - 3| = 3, first at (2, 0) */
    ck_assert_uint_eq(m.max_abs_pos, 2);
    ck_assert_uint_eq(m.max_abs_index, 0);
    /* KL only over position 0: naive value, far below the excluded position's */
    const double kl0 = naive_kl(a, e, 2);
    ck_assert_close(m.kl_max, kl0, 1e-15);
    ck_assert_uint_eq(m.kl_max_pos, 0);
    ck_assert_close(m.kl_mean, kl0, 1e-15);
    ck_assert_uint_eq(m.top1_agree, 1);
    ck_assert_double_eq(m.topk_min, 1.0);
    ck_assert_uint_eq(m.topk_min_pos, 0);
    /* NMSE over included values: (0.0625 + 9 + 9) / (1 + 9) */
    ck_assert_close(m.nmse, 18.0625 / 10.0, 1e-15);
}
END_TEST

START_TEST(test_metrics_empty_and_invalid)
{
    const double x[2] = {1, 2};
    const uint8_t none[1] = {0};
    lc_compare_opts o = lc_compare_opts_default();
    o.include = none;
    lc_metrics m = compare_ok(x, x, 1, 2, &o);
    ck_assert_uint_eq(m.n_included, 0);
    ck_assert_double_eq(m.max_abs, 0.0);
    ck_assert_uint_eq(m.max_abs_pos, LC_NO_POS);
    ck_assert_double_eq(m.min_cosine, 1.0);
    ck_assert_double_eq(m.top1_frac, 1.0);

    ck_assert_int_eq(lc_compare(NULL, x, x, 1, 2, NULL), EINVAL);
    ck_assert_int_eq(lc_compare(&m, NULL, x, 1, 2, NULL), EINVAL);
    ck_assert_int_eq(lc_compare(&m, x, x, SIZE_MAX, 2, NULL), EINVAL);
    o = lc_compare_opts_default();
    o.topk = -1;
    ck_assert_int_eq(lc_compare(&m, x, x, 1, 2, &o), EINVAL);
    o = lc_compare_opts_default();
    o.rtol = NAN;
    ck_assert_int_eq(lc_compare(&m, x, x, 1, 2, &o), EINVAL);
    ck_assert_uint_eq(m.n_included, 0); /* filled as "nothing compared" */
    ck_assert_int_eq(lc_compare(&m, NULL, NULL, 0, 0, NULL), 0);
}
END_TEST

/* ---------------------------------------------------------------- KL */

START_TEST(test_metrics_kl_identical)
{
    enum { P = 4, V = 7 };
    double x[P * V];
    for (int i = 0; i < P * V; i++)
        x[i] = sin(1.7 * i) * 10.0;
    lc_compare_opts o = lc_compare_opts_default();
    o.ulp = LC_ULP_F64;
    lc_metrics m = compare_ok(x, x, P, V, &o);
    ck_assert_double_eq(m.kl_mean, 0.0);
    ck_assert_double_eq(m.kl_max, 0.0);
    ck_assert_double_eq(m.kl_p999, 0.0);
    ck_assert_double_eq(m.max_abs, 0.0);
    ck_assert_double_eq(m.nmse, 0.0);
    ck_assert_double_eq(m.min_cosine, 1.0);
    ck_assert_uint_eq(m.max_ulp, 0);
    ck_assert_uint_eq(m.top1_agree, P);
    ck_assert_double_eq(m.topk_mean, 1.0);
    ck_assert_uint_eq(m.allclose_fail, 0);
}
END_TEST

/* Closed-form KL values, one row each (V = 2 or 3). */
static const struct {
    double e[3], a[3];
    int V;
    double kl;
    const char *why;
} kl_rows[] = {
    /* p = (1/4, 3/4), q = (1/2, 1/2): 1/4 ln(1/2) + 3/4 ln(3/2) = 3/4 ln 3 - ln 2 */
    {{0, 1.0986122886681098}, {0, 0}, 2, 0.8239592165010823 - 0.6931471805599453, "hand"},
    /* a shift of every logit leaves the softmax unchanged */
    {{0.5, -2, 3}, {7.5, 5, 10}, 3, 0.0, "shift"},
    /* p = (1/2, 1/2), q = softmax(t, 0): KL = log cosh(t/2) */
    {{0, 0}, {1, 0}, 2, 0.12011450695827745, "log cosh 1/2"},
    /* t = 1000: exp(500) still finite; log cosh(500) = 500 - ln 2 */
    {{0, 0}, {1000, 0}, 2, 500 - 0.6931471805599453, "far"},
    /* t = 2000: exp(1000) overflows; 1000 - ln 2 */
    {{0, 0}, {2000, 0}, 2, 1000 - 0.6931471805599453, "overflow"},
    /* p = (1, 0) (expected -inf), q = (1/2, 1/2): ln 2 */
    {{0, -INFINITY}, {0, 0}, 2, 0.6931471805599453, "expected -inf"},
    /* both -inf at the same token: that token is absent from both */
    {{0, -INFINITY, 1}, {0, -INFINITY, 1}, 3, 0.0, "both -inf"},
    /* q has a zero where p does not */
    {{0, 0}, {0, -INFINITY}, 2, INFINITY, "actual -inf"},
};

START_TEST(test_metrics_kl_closed_form)
{
    lc_metrics m = compare_ok(kl_rows[_i].a, kl_rows[_i].e, 1, (size_t)kl_rows[_i].V, NULL);
    const double want = kl_rows[_i].kl;
    if (isinf(want))
        ck_assert_msg(m.kl_max == want, "%s: KL %g, expected inf", kl_rows[_i].why, m.kl_max);
    else
        ck_assert_msg(fabs(m.kl_max - want) <= 1e-15 * fmax(1.0, want),
                      "%s: KL %.17g, expected %.17g", kl_rows[_i].why, m.kl_max, want);
    ck_assert_uint_eq(m.kl_max_pos, 0);
}
END_TEST

START_TEST(test_metrics_kl_tiny_difference)
{
    /* a = e + d with |d| ~ 1e-9: KL = 1/2 Var_p(d) + O(d^3), about 1e-19. The direct form
     * sum p (log p - log q) would give rounding noise around 1e-17. */
    const double e[4] = {1.5, -0.25, 2.0, 0.75};
    const double d[4] = {1e-9, -2e-9, 0.5e-9, 3e-9};
    double a[4];
    for (int j = 0; j < 4; j++)
        a[j] = e[j] + d[j];
    long double se = 0, p[4], mean = 0, var = 0;
    for (int j = 0; j < 4; j++)
        se += expl(e[j]);
    for (int j = 0; j < 4; j++) {
        p[j] = expl(e[j]) / se;
        mean += p[j] * (long double)(a[j] - e[j]); /* the d actually stored */
    }
    for (int j = 0; j < 4; j++)
        var += p[j] * ((a[j] - e[j]) - mean) * ((a[j] - e[j]) - mean);
    const double want = (double)(var / 2);
    lc_metrics m = compare_ok(a, e, 1, 4, NULL);
    ck_assert_msg(want > 1e-20 && want < 1e-17, "test premise: KL %g", want);
    ck_assert_msg(fabs(m.kl_max - want) <= 1e-6 * want, "KL %.17g, expected %.17g", m.kl_max,
                  want);
}
END_TEST

START_TEST(test_metrics_kl_p999)
{
    /* 1000 positions, V = 2: e = (0, 0), a = (t_i, 0) with t_i = i / 100 for i = 0..999,
     * stored in a scrambled order (i = 7 r mod 1000 at row r). KL_i = log cosh(t_i / 2) grows
     * with i; nearest rank ceil(0.999 * 1000) = 999 -> i = 998; the max is i = 999 at the
     * row r with 7 r = 999 mod 1000, r = 143 * 999 mod 1000 = 857. */
    enum { P = 1000 };
    double *a = malloc(2 * P * sizeof *a), *e = calloc(2 * P, sizeof *e);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(e);
    double mean = 0.0;
    for (int r = 0; r < P; r++) {
        const int i = (7 * r) % P;
        a[2 * r] = i / 100.0;
        a[2 * r + 1] = 0.0;
        mean += log(cosh(a[2 * r] / 2)) / P;
    }
    lc_metrics m = compare_ok(a, e, P, 2, NULL);
    ck_assert_uint_eq(m.n_kl, P);
    ck_assert_close(m.kl_p999, log(cosh(9.98 / 2)), 1e-14);
    ck_assert_close(m.kl_max, log(cosh(9.99 / 2)), 1e-14);
    ck_assert_uint_eq(m.kl_max_pos, 857);
    ck_assert_close(m.kl_mean, mean, 1e-13);
    /* a (t, 0) against (0, 0): argmax of a is 0 everywhere, of e is 0 (tie) -> all agree */
    ck_assert_uint_eq(m.top1_agree, P);
    free(a);
    free(e);
}
END_TEST

/* ---------------------------------------------------------------- ULP */

static const struct {
    double a, e;
    lc_ulp_precision prec;
    uint64_t ulp;
    const char *why;
} ulp_rows[] = {
    {1.0, 1.0 + 0x1p-23, LC_ULP_F32, 1, "adjacent floats (1 + 2^-23)"},
    {0.0, -0.0, LC_ULP_F32, 0, "+0 / -0 float"},
    {0.0, -0.0, LC_ULP_F64, 0, "+0 / -0 double"},
    {0x1p-149, -0x1p-149, LC_ULP_F32, 2, "float denormals across 0"},
    {0x1p-1074, -0x1p-1074, LC_ULP_F64, 2, "double denormals"},
    {1.0, -1.0, LC_ULP_F32, 2 * (uint64_t)0x3f800000, "1 and -1 as floats"},
    {1.0, -1.0, LC_ULP_F64, 2 * (uint64_t)0x3ff0000000000000, "1 and -1 as doubles"},
    {1.0, 1.0 + DBL_EPSILON, LC_ULP_F64, 1, "adjacent doubles"},
    {1.0, 1.0 + 4504 * DBL_EPSILON, LC_ULP_F64, 4504, "4504 doubles apart"},
    {1.0, 1.0 + 4504 * DBL_EPSILON, LC_ULP_F32, 0, "the same after rounding to float"},
    {2.0, 2.0 - 0x1p-23, LC_ULP_F32, 1, "across a binade (2 - 2^-23)"},
    {NAN, 1.0, LC_ULP_F32, UINT64_MAX, "NaN"},
    {1.0, NAN, LC_ULP_F64, UINT64_MAX, "NaN expected"},
    {INFINITY, INFINITY, LC_ULP_F64, 0, "equal infinities"},
    {INFINITY, DBL_MAX, LC_ULP_F64, UINT64_MAX, "inf against finite"},
    {1e39, 1e39, LC_ULP_F32, 0, "both overflow float the same way"},
};

START_TEST(test_metrics_ulp_table)
{
    const uint64_t u = lc_ulp_distance(ulp_rows[_i].a, ulp_rows[_i].e, ulp_rows[_i].prec);
    ck_assert_msg(u == ulp_rows[_i].ulp, "%s: ulp(%.17g, %.17g) = %llu, expected %llu",
                  ulp_rows[_i].why, ulp_rows[_i].a, ulp_rows[_i].e, (unsigned long long)u,
                  (unsigned long long)ulp_rows[_i].ulp);
    const uint64_t back = lc_ulp_distance(ulp_rows[_i].e, ulp_rows[_i].a, ulp_rows[_i].prec);
    ck_assert_msg(back == u, "%s: not symmetric (%llu vs %llu)", ulp_rows[_i].why,
                  (unsigned long long)back, (unsigned long long)u);
}
END_TEST

START_TEST(test_metrics_ulp_located)
{
    /* the largest ULP distance is at (1, 0): 3 doubles apart (the ulp of 0.5 is eps/2);
     * (0, 1) is 1 apart (the ulp of 2 is 2 eps) */
    const double e[4] = {1.0, 2.0, 0.5, 4.0};
    const double a[4] = {1.0, 2.0 + 2 * DBL_EPSILON, 0.5 + 1.5 * DBL_EPSILON, 4.0};
    lc_compare_opts o = lc_compare_opts_default();
    o.ulp = LC_ULP_F64;
    lc_metrics m = compare_ok(a, e, 2, 2, &o);
    ck_assert_uint_eq(m.max_ulp, 3);
    ck_assert_uint_eq(m.max_ulp_pos, 1);
    ck_assert_uint_eq(m.max_ulp_index, 0);
    ck_assert_double_eq(lc_metric_value(&m, LC_METRIC_MAX_ULP), 3.0);
}
END_TEST

/* ---------------------------------------------------------------- NaN and inf */

/* A NaN at (1, 2) of a 2 x 3 comparison, in the actual (_i == 0) or the expected (_i == 1). */
START_TEST(test_metrics_nan_fails_and_is_located)
{
    double a[6], e[6];
    memcpy(a, hand_a, sizeof a);
    memcpy(e, hand_e, sizeof e);
    (_i == 0 ? a : e)[5] = NAN;
    lc_compare_opts o = lc_compare_opts_default();
    o.ulp = LC_ULP_F32;
    o.topk = 2;
    lc_metrics m = compare_ok(a, e, 2, 3, &o);
    ck_assert_uint_eq(m.nonfinite, 1);
    ck_assert_uint_eq(m.n_nan, 1);
    ck_assert_uint_eq(m.nonfinite_pos, 1);
    ck_assert_uint_eq(m.nonfinite_index, 2);
    ck_assert_nan(m.max_abs);
    ck_assert_uint_eq(m.max_abs_pos, 1);
    ck_assert_uint_eq(m.max_abs_index, 2);
    ck_assert_nan(m.max_rel);
    ck_assert_uint_eq(m.max_rel_pos, 1);
    ck_assert_uint_eq(m.allclose_fail, 3); /* the two hand errors and the NaN */
    ck_assert_nan(m.nmse);
    ck_assert_uint_eq(m.max_ulp, UINT64_MAX);
    ck_assert_uint_eq(m.max_ulp_pos, 1);
    ck_assert_nan(lc_metric_value(&m, LC_METRIC_MAX_ULP));
    ck_assert_nan(m.min_cosine);
    ck_assert_uint_eq(m.min_cosine_pos, 1);
    ck_assert_nan(m.kl_mean);
    ck_assert_nan(m.kl_max);
    ck_assert_nan(m.kl_p999);
    ck_assert_uint_eq(m.kl_max_pos, 1);
    ck_assert_nan(m.top1_frac);
    ck_assert_uint_eq(m.top1_agree, 1);
    ck_assert_uint_eq(m.top1_first_mismatch_pos, 1);
    ck_assert_nan(m.topk_mean);
    ck_assert_nan(m.topk_min);
    ck_assert_uint_eq(m.topk_min_pos, 1);
    /* every bounded metric fails, whatever the bound */
    for (int id = 0; id < LC_METRIC_COUNT; id++) {
        if (id == LC_METRIC_ALLCLOSE_FAIL || id == LC_METRIC_ALLCLOSE_FRAC ||
            id == LC_METRIC_NONFINITE)
            continue; /* counts: they fail any bound below them */
        const double v = lc_metric_value(&m, (lc_metric_id)id);
        const double loose = lc_metric_direction((lc_metric_id)id) == LC_BOUND_UPPER ? 1e300
                                                                                      : -1e300;
        ck_assert_msg(!lc_check_bound((lc_metric_id)id, v, loose, NULL),
                      "%s = %g passed a bound of %g with a NaN in the data",
                      lc_metric_name((lc_metric_id)id), v, loose);
    }
    ck_assert(!lc_check_bound(LC_METRIC_NONFINITE, lc_metric_value(&m, LC_METRIC_NONFINITE),
                              0.0, NULL));
}
END_TEST

START_TEST(test_metrics_inf_handling)
{
    /* pos 0: +inf in both at (0,0) -> no error there, but counted; the error 0.5 remains.
     * pos 1: a = +inf where e = 1 -> infinite error at (1, 1). */
    const double e[4] = {INFINITY, 2.0, 0.0, 1.0};
    double a[4] = {INFINITY, 2.5, 0.0, 1.0};
    lc_compare_opts o = lc_compare_opts_default();
    o.atol = 0.0;
    o.rtol = 0.0;
    lc_metrics m = compare_ok(a, e, 2, 2, &o);
    ck_assert_uint_eq(m.nonfinite, 1);
    ck_assert_uint_eq(m.n_nan, 0);
    ck_assert_uint_eq(m.nonfinite_pos, 0);
    ck_assert_double_eq(m.max_abs, 0.5);
    ck_assert_uint_eq(m.max_abs_index, 1);
    ck_assert_uint_eq(m.allclose_fail, 1); /* only (0, 1) */
    ck_assert_close(m.nmse, 0.25 / 5.0, 1e-16); /* the matched infinities are left out */
    ck_assert_nan(m.min_cosine);

    a[3] = INFINITY;
    m = compare_ok(a, e, 2, 2, &o);
    ck_assert_uint_eq(m.nonfinite, 2);
    ck_assert(isinf(m.max_abs) && m.max_abs > 0);
    ck_assert_uint_eq(m.max_abs_pos, 1);
    ck_assert_uint_eq(m.max_abs_index, 1);
    ck_assert(isinf(m.max_rel));
    ck_assert(isinf(m.nmse));
    ck_assert_uint_eq(m.allclose_fail, 2);
    o.ulp = LC_ULP_F64;
    m = compare_ok(a, e, 2, 2, &o);
    ck_assert_uint_eq(m.max_ulp, UINT64_MAX);
    ck_assert_uint_eq(m.max_ulp_pos, 1);
    ck_assert(isinf(lc_metric_value(&m, LC_METRIC_MAX_ULP)));
    o.ulp = LC_ULP_NONE;

    /* opposite infinities: infinite error, not zero */
    const double pinf[1] = {INFINITY}, ninf[1] = {-INFINITY};
    o.rtol = 1.0;
    m = compare_ok(pinf, ninf, 1, 1, &o);
    ck_assert(isinf(m.max_abs));
    ck_assert_uint_eq(m.allclose_fail, 1);
    /* inf against a finite value never passes allclose, even with rtol * inf */
    const double one[1] = {1.0};
    m = compare_ok(one, pinf, 1, 1, &o);
    ck_assert_uint_eq(m.allclose_fail, 1);
}
END_TEST

/* max |a - e| / max |e|: relative to the tensor's magnitude, so elements near zero (a
 * gradient crosses zero everywhere) do not blow it up as max_rel does; NaN stays NaN; an
 * all-zero expected tensor leaves max_abs itself; an infinity in e does not set the scale. */
START_TEST(test_metrics_max_abs_scaled)
{
    const double e[4] = {4, -8, 1e-12, 0}, a[4] = {4, -8.004, 2e-12, 0};
    lc_metrics m = compare_ok(a, e, 2, 2, NULL);
    ck_assert_double_eq_tol(m.max_abs_scaled, 0.004 / 8, 1e-15);
    ck_assert(m.max_rel > 0.9);                           /* 1e-12 off on 1e-12 */
    const double z[2] = {0, 0}, x[2] = {0, 3e-7};
    m = compare_ok(x, z, 1, 2, NULL);
    ck_assert_double_eq(m.max_abs_scaled, 3e-7);
    const double n[2] = {NAN, 1};
    m = compare_ok(n, x, 1, 2, NULL);
    ck_assert(isnan(m.max_abs_scaled));
    const double ei[2] = {INFINITY, 2}, ai[2] = {INFINITY, 2.5};
    m = compare_ok(ai, ei, 1, 2, NULL);
    ck_assert_double_eq(m.max_abs_scaled, 0.25);
    ck_assert_str_eq(lc_metric_name(LC_METRIC_MAX_ABS_SCALED), "max_abs_scaled");
    ck_assert_int_eq(lc_metric_from_name("max_abs_scaled"), LC_METRIC_MAX_ABS_SCALED);
}
END_TEST

START_TEST(test_metrics_nmse_and_cosine_zero)
{
    const double z[3] = {0, 0, 0}, x[3] = {0, 1e-3, 0};
    lc_metrics m = compare_ok(z, z, 1, 3, NULL);
    ck_assert_double_eq(m.nmse, 0.0);
    ck_assert_double_eq(m.min_cosine, 1.0);
    ck_assert_double_eq(m.max_rel, 0.0);
    m = compare_ok(x, z, 1, 3, NULL);
    ck_assert(isinf(m.nmse));
    ck_assert_double_eq(m.min_cosine, 0.0);
    ck_assert_double_eq(m.max_rel, 1e-3 / LC_REL_FLOOR);
    m = compare_ok(z, x, 1, 3, NULL);
    ck_assert_double_eq(m.nmse, 1.0);
    ck_assert_double_eq(m.max_rel, 1.0);
    /* opposite rows: cosine -1 */
    const double y[3] = {0, -1e-3, 0};
    m = compare_ok(y, x, 1, 3, NULL);
    ck_assert_double_eq(m.min_cosine, -1.0);
}
END_TEST

/* ---------------------------------------------------------------- top-1 and top-k */

START_TEST(test_metrics_argmax_ties)
{
    /* pos 0: e (3, 3, 1), a (3, 3, 1): both resolve to index 0 -> agree
     * pos 1: e (3, 3, 1), a (2, 3, 1): a -> 1, e -> 0 (lowest tied index) -> disagree
     * pos 2: e (0, 5, 5), a (0, 5, 4.9): both 1 -> agree */
    const double e[9] = {3, 3, 1, 3, 3, 1, 0, 5, 5};
    const double a[9] = {3, 3, 1, 2, 3, 1, 0, 5, 4.9};
    lc_metrics m = compare_ok(a, e, 3, 3, NULL);
    ck_assert_uint_eq(m.top1_agree, 2);
    ck_assert_double_eq_tol(m.top1_frac, 2.0 / 3.0, 1e-15);
    ck_assert_uint_eq(m.top1_first_mismatch_pos, 1);
    ck_assert_uint_eq(m.top1_first_mismatch_actual, 1);
    ck_assert_uint_eq(m.top1_first_mismatch_expected, 0);
}
END_TEST

/* Top-k overlap of a = (5, 4, 3, 2, 1) with e = (5, 1, 4, 2, 3) for k = 1..5:
 *   k=1 {0} {0} -> 1;  k=2 {0,1} {0,2} -> 1/2;  k=3 {0,1,2} {0,2,4} -> 2/3;
 *   k=4 {0,1,2,3} {0,2,4,3} -> 3/4;  k=5 everything -> 1;  k=9 clamps to 5 -> 1. */
static const struct {
    int k;
    double overlap;
} topk_rows[] = {{1, 1.0}, {2, 0.5}, {3, 2.0 / 3.0}, {4, 0.75}, {5, 1.0}, {9, 1.0}};

START_TEST(test_metrics_topk_hand)
{
    /* row 0 is the example; row 1 is identical in a and e (overlap 1) */
    const double e[10] = {5, 1, 4, 2, 3, 1, 2, 3, 4, 5};
    const double a[10] = {5, 4, 3, 2, 1, 1, 2, 3, 4, 5};
    lc_compare_opts o = lc_compare_opts_default();
    o.topk = topk_rows[_i].k;
    lc_metrics m = compare_ok(a, e, 2, 5, &o);
    const double want = topk_rows[_i].overlap;
    ck_assert_int_eq(m.topk, topk_rows[_i].k < 5 ? topk_rows[_i].k : 5);
    ck_assert_msg(fabs(m.topk_min - want) < 1e-15, "k=%d: min overlap %g, expected %g",
                  o.topk, m.topk_min, want);
    ck_assert_uint_eq(m.topk_min_pos, 0);
    ck_assert_msg(fabs(m.topk_mean - (want + 1) / 2) < 1e-15, "k=%d: mean %g, expected %g",
                  o.topk, m.topk_mean, (want + 1) / 2);
}
END_TEST

START_TEST(test_metrics_topk_ties_and_off)
{
    /* e (1, 1, 1, 0) top-2 = {0, 1} (ties by lower index); a (0, 1, 1, 1) top-2 = {1, 2}
     * -> overlap 1/2 */
    const double e[4] = {1, 1, 1, 0}, a[4] = {0, 1, 1, 1};
    lc_compare_opts o = lc_compare_opts_default();
    o.topk = 2;
    lc_metrics m = compare_ok(a, e, 1, 4, &o);
    ck_assert_double_eq(m.topk_min, 0.5);
    o.topk = 0;
    m = compare_ok(a, e, 1, 4, &o);
    ck_assert_int_eq(m.topk, 0);
    ck_assert_nan(lc_metric_value(&m, LC_METRIC_TOPK_OVERLAP_MIN));
    ck_assert_nan(lc_metric_value(&m, LC_METRIC_TOPK_OVERLAP_MEAN));
}
END_TEST

/* ---------------------------------------------------------------- integers */

START_TEST(test_metrics_int64)
{
    const int64_t e[5] = {0, 1, 2, 3, 4}, a[5] = {0, 1, 7, 3, -4};
    size_t first = 0;
    ck_assert_uint_eq(lc_compare_int64(a, e, 5, &first), 2);
    ck_assert_uint_eq(first, 2);
    ck_assert_uint_eq(lc_compare_int64(e, e, 5, &first), 0);
    ck_assert_uint_eq(first, LC_NO_POS);
    ck_assert_uint_eq(lc_compare_int64(a, e, 2, NULL), 0);
    ck_assert_uint_eq(lc_compare_int64(NULL, NULL, 0, &first), 0);
}
END_TEST

/* ---------------------------------------------------------------- bounds and names */

static const struct {
    lc_metric_id id;
    double value, bound;
    int pass;
    double margin; /* NaN: expect NaN */
} bound_rows[] = {
    {LC_METRIC_MAX_ABS, 1e-6, 1e-5, 1, 9e-6},
    {LC_METRIC_MAX_ABS, 2e-5, 1e-5, 0, -1e-5},
    {LC_METRIC_KL_MAX, 0.25, 0.25, 1, 0.0},
    {LC_METRIC_MIN_COSINE, 0.999, 0.99, 1, 0.009},
    {LC_METRIC_MIN_COSINE, 0.98, 0.99, 0, -0.01},
    {LC_METRIC_TOP1_AGREE, 1.0, 1.0, 1, 0.0},
    {LC_METRIC_TOPK_OVERLAP_MIN, 0.5, 0.8, 0, -0.3},
    {LC_METRIC_MAX_ABS, NAN, 1e300, 0, NAN},
    {LC_METRIC_MIN_COSINE, NAN, -1e300, 0, NAN},
    {LC_METRIC_NMSE, 0.0, NAN, 0, NAN},
    {LC_METRIC_NMSE, INFINITY, INFINITY, 1, 0.0},
    {LC_METRIC_NMSE, INFINITY, 1.0, 0, -INFINITY},
};

START_TEST(test_metrics_bounds_table)
{
    double margin = 42.0;
    const int pass = lc_check_bound(bound_rows[_i].id, bound_rows[_i].value,
                                    bound_rows[_i].bound, &margin);
    ck_assert_msg(pass == bound_rows[_i].pass, "%s value %g bound %g: pass %d, expected %d",
                  lc_metric_name(bound_rows[_i].id), bound_rows[_i].value, bound_rows[_i].bound,
                  pass, bound_rows[_i].pass);
    if (isnan(bound_rows[_i].margin))
        ck_assert_nan(margin);
    else
        ck_assert_msg(margin == bound_rows[_i].margin ||
                          fabs(margin - bound_rows[_i].margin) <= 1e-15,
                      "%s value %g bound %g: margin %g, expected %g",
                      lc_metric_name(bound_rows[_i].id), bound_rows[_i].value,
                      bound_rows[_i].bound, margin, bound_rows[_i].margin);
    ck_assert_int_eq(lc_check_bound(bound_rows[_i].id, bound_rows[_i].value,
                                    bound_rows[_i].bound, NULL), pass);
}
END_TEST

START_TEST(test_metrics_names_round_trip)
{
    for (int id = 0; id < LC_METRIC_COUNT; id++) {
        const char *name = lc_metric_name((lc_metric_id)id);
        ck_assert_msg(lc_metric_from_name(name) == (lc_metric_id)id, "'%s' -> %d, expected %d",
                      name, (int)lc_metric_from_name(name), id);
        ck_assert_str_ne(lc_metric_text((lc_metric_id)id), "unknown");
    }
    ck_assert_str_eq(lc_metric_name(LC_METRIC_KL_P999), "kl_p999");
    ck_assert_str_eq(lc_metric_name(LC_METRIC_COUNT), "unknown");
    ck_assert_int_eq(lc_metric_from_name("kl_p99"), LC_METRIC_UNKNOWN);
    ck_assert_int_eq(lc_metric_from_name("MAX_ABS"), LC_METRIC_UNKNOWN);
    ck_assert_int_eq(lc_metric_from_name(""), LC_METRIC_UNKNOWN);
    ck_assert_int_eq(lc_metric_from_name(NULL), LC_METRIC_UNKNOWN);
    /* the lower bounds are exactly the agreement metrics */
    for (int id = 0; id < LC_METRIC_COUNT; id++) {
        const int lower = id == LC_METRIC_MIN_COSINE || id == LC_METRIC_TOP1_AGREE ||
                          id == LC_METRIC_TOP1_AGREE_MARGIN || id == LC_METRIC_TOPK_OVERLAP_MEAN ||
                          id == LC_METRIC_TOPK_OVERLAP_MIN;
        ck_assert_msg((lc_metric_direction((lc_metric_id)id) == LC_BOUND_LOWER) == lower,
                      "%s has the wrong direction", lc_metric_name((lc_metric_id)id));
    }
}
END_TEST

/* scale_bias: a row scaled by 1.02 and shifted reads 0.02; equal rows read exactly 0;
 * deviations orthogonal to the centred row read 0 although max_abs does not; a NaN reads NaN */
START_TEST(test_metrics_scale_bias)
{
    const double e[8] = {1, 2, 3, 4, -2, 0, 2, 4};
    double a[8];
    for (int i = 0; i < 8; i++)
        a[i] = 1.02 * e[i] + (i < 4 ? 5.0 : -3.0); /* one shift per row */
    lc_metrics m;
    ck_assert_int_eq(lc_compare(&m, a, e, 2, 4, NULL), 0);
    ck_assert_double_eq_tol(m.scale_bias, 0.02, 1e-12);
    ck_assert_int_eq(lc_compare(&m, e, e, 2, 4, NULL), 0);
    ck_assert_double_eq(m.scale_bias, 0.0);
    /* row 0 centred is (-1.5, -0.5, 0.5, 1.5); (+1, -1, -1, +1) is orthogonal to it and to the
     * constant row */
    const double o[4] = {2, 1, 2, 5};
    ck_assert_int_eq(lc_compare(&m, o, e, 1, 4, NULL), 0);
    ck_assert_double_eq_tol(m.scale_bias, 0.0, 1e-15);
    ck_assert_double_eq(m.max_abs, 1.0);
    a[5] = NAN;
    ck_assert_int_eq(lc_compare(&m, a, e, 2, 4, NULL), 0);
    ck_assert(isnan(m.scale_bias));
    ck_assert(isnan(lc_metric_value(&m, LC_METRIC_SCALE_BIAS)));
}
END_TEST

START_TEST(test_metrics_value_by_id)
{
    /* every id reads its own field: give each field a distinct value */
    lc_metrics m;
    memset(&m, 0, sizeof m);
    m.max_abs = 1;
    m.max_rel = 2;
    m.allclose_fail = 3;
    m.allclose_frac = 4;
    m.nmse = 5;
    m.ulp = LC_ULP_F32;
    m.max_ulp = 6;
    m.min_cosine = 7;
    m.kl_mean = 8;
    m.kl_max = 9;
    m.kl_p999 = 10;
    m.top1_frac = 11;
    m.top1_margin_frac = 12;
    m.topk_mean = 13;
    m.topk_min = 14;
    m.nonfinite = 15;
    m.max_abs_scaled = 16;
    m.scale_bias = 17;
    static const lc_metric_id order[] = {
        LC_METRIC_MAX_ABS,    LC_METRIC_MAX_REL,   LC_METRIC_ALLCLOSE_FAIL,
        LC_METRIC_ALLCLOSE_FRAC, LC_METRIC_NMSE,   LC_METRIC_MAX_ULP,
        LC_METRIC_MIN_COSINE, LC_METRIC_KL_MEAN,   LC_METRIC_KL_MAX,
        LC_METRIC_KL_P999,    LC_METRIC_TOP1_AGREE, LC_METRIC_TOP1_AGREE_MARGIN, LC_METRIC_TOPK_OVERLAP_MEAN,
        LC_METRIC_TOPK_OVERLAP_MIN, LC_METRIC_NONFINITE, LC_METRIC_MAX_ABS_SCALED, LC_METRIC_SCALE_BIAS,
    };
    ck_assert_int_eq(sizeof order / sizeof order[0], LC_METRIC_COUNT);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        ck_assert_msg(lc_metric_value(&m, order[i]) == (double)(i + 1), "%s reads %g, expected %zu",
                      lc_metric_name(order[i]), lc_metric_value(&m, order[i]), i + 1);
}
END_TEST

/* ---------------------------------------------------------------- top-1 with near-ties tolerated */

/* Rows of (actual, expected) 3-value logits and what top1_agree_margin makes of them. */
typedef struct {
    double a[3], e[3];
    double margin;              /* opts.top1_margin */
    int agrees;                 /* whether the position counts as agreeing */
} margin_row;

static const margin_row margin_rows[] = {
    /* same argmax: agrees whatever the margin */
    {{3, 1, 0}, {3, 1, 0}, 0.0, 1},
    /* a flip where the expected top-2 margin is 0.1: tolerated at 0.2, not at 0.05 */
    {{2.0, 2.1, 0}, {2.1, 2.0, 0}, 0.2, 1},
    {{2.0, 2.1, 0}, {2.1, 2.0, 0}, 0.05, 0},
    /* exactly at the margin: tolerated (a flip counts only above it) */
    {{1.0, 1.5, 0}, {1.5, 1.0, 0}, 0.5, 1},
    /* a clear flip: the expected margin is 2 */
    {{0, 3, 0}, {3, 1, 0}, 1.2, 0},
    /* margin 0: only an exact tie of the expected row is tolerated */
    {{0, 1, 0}, {1, 1, 0}, 0.0, 1},
};

START_TEST(test_metrics_top1_margin_table)
{
    const margin_row *r = &margin_rows[_i];
    lc_compare_opts o = lc_compare_opts_default();
    o.top1_margin = r->margin;
    lc_metrics m;
    ck_assert_int_eq(lc_compare(&m, r->a, r->e, 1, 3, &o), 0);
    ck_assert_msg(m.top1_margin_agree == (size_t)r->agrees, "row %d: agree %zu, expected %d", _i,
                  m.top1_margin_agree, r->agrees);
    ck_assert(m.top1_margin_frac == (double)r->agrees);
    ck_assert(m.top1_margin_first_flip_pos == (r->agrees ? LC_NO_POS : 0));
    ck_assert(lc_metric_value(&m, LC_METRIC_TOP1_AGREE_MARGIN) == (double)r->agrees);
}
END_TEST

START_TEST(test_metrics_top1_margin_positions)
{
    /* 4 positions: agree, tolerated flip, counted flip, agree -> 3/4; raw top-1 2/4; the
     * first counted flip is position 2; a NaN row counts as a flip and makes the fraction NaN */
    const double a[] = {5, 0, 0, 1.0, 1.1, 0, 0, 4, 0, 0, 0, 2};
    const double e[] = {5, 0, 0, 1.1, 1.0, 0, 4, 0, 0, 0, 0, 2};
    lc_compare_opts o = lc_compare_opts_default();
    o.top1_margin = 0.3;
    lc_metrics m;
    ck_assert_int_eq(lc_compare(&m, a, e, 4, 3, &o), 0);
    ck_assert_uint_eq(m.top1_agree, 2);
    ck_assert_uint_eq(m.top1_margin_agree, 3);
    ck_assert(m.top1_margin_frac == 0.75);
    ck_assert_uint_eq(m.top1_margin_first_flip_pos, 2);
    /* masked out (kl_include) positions are not counted */
    const uint8_t kl[] = {1, 1, 0, 1};
    o.kl_include = kl;
    ck_assert_int_eq(lc_compare(&m, a, e, 4, 3, &o), 0);
    ck_assert(m.top1_margin_frac == 1.0);
    double an[12];
    memcpy(an, a, sizeof an);
    an[0] = NAN;
    o.kl_include = NULL;
    ck_assert_int_eq(lc_compare(&m, an, e, 4, 3, &o), 0);
    ck_assert(isnan(m.top1_margin_frac));
    /* a negative or NaN margin is refused */
    o.top1_margin = -1;
    ck_assert_int_eq(lc_compare(&m, a, e, 4, 3, &o), EINVAL);
    o.top1_margin = NAN;
    ck_assert_int_eq(lc_compare(&m, a, e, 4, 3, &o), EINVAL);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc;

    tc = tcase_create("compare");
    tcase_add_test(tc, test_metrics_hand_elementwise);
    tcase_add_test(tc, test_metrics_hand_kl);
    tcase_add_loop_test(tc, test_metrics_allclose_table, 0,
                        (int)(sizeof allclose_rows / sizeof allclose_rows[0]));
    tcase_add_test(tc, test_metrics_mask_excludes);
    tcase_add_test(tc, test_metrics_empty_and_invalid);
    tcase_add_test(tc, test_metrics_nmse_and_cosine_zero);
    tcase_add_test(tc, test_metrics_max_abs_scaled);
    suite_add_tcase(s, tc);

    tc = tcase_create("top1_margin");
    tcase_add_loop_test(tc, test_metrics_top1_margin_table, 0, (int)(sizeof margin_rows / sizeof margin_rows[0]));
    tcase_add_test(tc, test_metrics_top1_margin_positions);
    suite_add_tcase(s, tc);

    tc = tcase_create("kl");
    tcase_add_test(tc, test_metrics_kl_identical);
    tcase_add_loop_test(tc, test_metrics_kl_closed_form, 0,
                        (int)(sizeof kl_rows / sizeof kl_rows[0]));
    tcase_add_test(tc, test_metrics_kl_tiny_difference);
    tcase_add_test(tc, test_metrics_kl_p999);
    suite_add_tcase(s, tc);

    tc = tcase_create("ulp");
    tcase_add_loop_test(tc, test_metrics_ulp_table, 0, (int)(sizeof ulp_rows / sizeof ulp_rows[0]));
    tcase_add_test(tc, test_metrics_ulp_located);
    suite_add_tcase(s, tc);

    tc = tcase_create("nonfinite");
    tcase_add_loop_test(tc, test_metrics_nan_fails_and_is_located, 0, 2);
    tcase_add_test(tc, test_metrics_inf_handling);
    suite_add_tcase(s, tc);

    tc = tcase_create("topk");
    tcase_add_test(tc, test_metrics_argmax_ties);
    tcase_add_loop_test(tc, test_metrics_topk_hand, 0,
                        (int)(sizeof topk_rows / sizeof topk_rows[0]));
    tcase_add_test(tc, test_metrics_topk_ties_and_off);
    suite_add_tcase(s, tc);

    tc = tcase_create("int64");
    tcase_add_test(tc, test_metrics_int64);
    suite_add_tcase(s, tc);

    tc = tcase_create("bounds");
    tcase_add_loop_test(tc, test_metrics_bounds_table, 0,
                        (int)(sizeof bound_rows / sizeof bound_rows[0]));
    tcase_add_test(tc, test_metrics_names_round_trip);
    tcase_add_test(tc, test_metrics_value_by_id);
    tcase_add_test(tc, test_metrics_scale_bias);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(metrics_suite());
}
