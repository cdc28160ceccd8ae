/* SPDX-License-Identifier: MIT */
/*
 * Comparison metrics (see metrics.h for the conventions).
 *
 * Shape legend: P = positions, V = values per position, k = top-k size.
 *
 * One pass over the included rows gathers every elementwise metric and the per-row cosine;
 * the KL positions then get the softmax metrics (KL, top-1, top-k) row by row.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* ---------------------------------------------------------------- options and empty result */

lc_compare_opts lc_compare_opts_default(void)
{
    lc_compare_opts o;
    o.include = NULL;
    o.kl_include = NULL;
    o.atol = 1e-8;
    o.rtol = 1e-5;
    o.topk = 5;
    o.ulp = LC_ULP_NONE;
    o.top1_margin = 0.0;
    return o;
}

/* "Nothing compared": error metrics 0, agreement metrics 1, no positions. */
static void metrics_empty(lc_metrics *m, size_t P, size_t V)
{
    memset(m, 0, sizeof *m);
    m->positions = P;
    m->values = V;
    m->nonfinite_pos = m->nonfinite_index = LC_NO_POS;
    m->max_abs_pos = m->max_abs_index = LC_NO_POS;
    m->max_rel_pos = m->max_rel_index = LC_NO_POS;
    m->allclose_first_pos = m->allclose_first_index = LC_NO_POS;
    m->ulp = LC_ULP_NONE;
    m->max_ulp_pos = m->max_ulp_index = LC_NO_POS;
    m->min_cosine = 1.0;
    m->min_cosine_pos = LC_NO_POS;
    m->kl_max_pos = LC_NO_POS;
    m->top1_frac = 1.0;
    m->top1_margin_frac = 1.0;
    m->top1_margin_first_flip_pos = LC_NO_POS;
    m->top1_first_mismatch_pos = LC_NO_POS;
    m->top1_first_mismatch_actual = m->top1_first_mismatch_expected = LC_NO_POS;
    m->topk_mean = m->topk_min = NAN;
    m->topk_min_pos = LC_NO_POS;
}

/* ---------------------------------------------------------------- ULP distance */

/* Distance between two sign-magnitude encodings on the ordered number line. */
static uint64_t ordered_distance(uint64_t mag_a, int neg_a, uint64_t mag_e, int neg_e)
{
    if (neg_a == neg_e)
        return mag_a > mag_e ? mag_a - mag_e : mag_e - mag_a;
    return mag_a + mag_e; /* steps down to zero on one side, up from zero on the other */
}

uint64_t lc_ulp_distance(double a, double e, lc_ulp_precision prec)
{
    assert(prec == LC_ULP_F32 || prec == LC_ULP_F64);
    if (isnan(a) || isnan(e))
        return UINT64_MAX;
    if (prec == LC_ULP_F32) {
        float fa = (float)a, fe = (float)e;
        uint32_t ua, ue;
        if (fa == fe) /* also +0 == -0 and equal infinities */
            return 0;
        if (isinf(fa) || isinf(fe))
            return UINT64_MAX;
        memcpy(&ua, &fa, sizeof ua);
        memcpy(&ue, &fe, sizeof ue);
        return ordered_distance(ua & 0x7fffffffu, (int)(ua >> 31), ue & 0x7fffffffu,
                                (int)(ue >> 31));
    }
    if (a == e)
        return 0;
    if (isinf(a) || isinf(e))
        return UINT64_MAX;
    uint64_t ua, ue;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ue, &e, sizeof ue);
    return ordered_distance(ua & 0x7fffffffffffffffu, (int)(ua >> 63),
                            ue & 0x7fffffffffffffffu, (int)(ue >> 63));
}

/* ---------------------------------------------------------------- softmax-based, per row */

/* expm1(x) - x without cancellation for small x (the Taylor series from x^2 on). */
static double expm1_minus_x(double x)
{
    if (fabs(x) < 1e-2)
        return x * x * (1.0 / 2 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 +
               x * (1.0 / 720 + x * (1.0 / 5040 + x * (1.0 / 40320)))))));
    return expm1(x) - x;
}

/* KL(softmax(e) || softmax(a)) of one row a, e (V), using pe (V) as scratch for softmax(e).
 * NaN when a row has a NaN or +inf, or is
 * all -inf; +inf when a is -inf where e is not.
 *
 * With d_j = a_j - e_j, mu = sum p_j d_j (p = softmax(e)) and x_j = d_j - mu,
 *   KL = log sum p_j exp(x_j) = log1p(sum p_j (expm1(x_j) - x_j)),
 * a sum of non-negative terms that keeps full relative precision when a and e are very close
 * (the direct form sum p (log p - log q) cancels to rounding noise around 1e-17). When the
 * rows are far apart and exp overflows, or a is finite where e is -inf (the identity needs
 * exp(a_j) = exp(e_j) exp(d_j)), the direct log-sum-exp form is used instead. */
static double kl_row(double *pe, const double *a, const double *e, size_t V)
{
    double ma = -INFINITY, me = -INFINITY;
    for (size_t j = 0; j < V; j++) {
        if (isnan(a[j]) || isnan(e[j]) || a[j] == INFINITY || e[j] == INFINITY)
            return NAN;
        if (a[j] > ma)
            ma = a[j];
        if (e[j] > me)
            me = e[j];
    }
    if (ma == -INFINITY || me == -INFINITY)
        return NAN;

    double sa = 0.0, se = 0.0;
    for (size_t j = 0; j < V; j++) {
        sa += exp(a[j] - ma);
        pe[j] = exp(e[j] - me);
        se += pe[j];
    }
    const double lse_a = ma + log(sa), lse_e = me + log(se);
    for (size_t j = 0; j < V; j++)
        pe[j] /= se;

    double mu = 0.0;
    int direct = 0; /* q has mass where p has none: the identity above does not hold */
    for (size_t j = 0; j < V; j++) {
        if (e[j] == -INFINITY) {
            direct |= a[j] != -INFINITY;
            continue; /* p_j = 0 contributes nothing */
        }
        if (a[j] == -INFINITY)
            return INFINITY;
        mu += pe[j] * (a[j] - e[j]);
    }
    if (!direct) {
        double s = 0.0;
        for (size_t j = 0; j < V; j++) {
            if (e[j] == -INFINITY)
                continue;
            s += pe[j] * expm1_minus_x((a[j] - e[j]) - mu);
        }
        if (isfinite(s))
            return log1p(s);
    }

    double kl = 0.0;
    for (size_t j = 0; j < V; j++) {
        const double lp = e[j] - lse_e;
        const double p = exp(lp);
        if (p > 0.0)
            kl += p * (lp - (a[j] - lse_a));
    }
    return kl > 0.0 ? kl : 0.0;
}

/* Index of the largest value of x (V); ties go to the lowest index. */
static size_t argmax_row(const double *x, size_t V)
{
    size_t best = 0;
    for (size_t j = 1; j < V; j++)
        if (x[j] > x[best])
            best = j;
    return best;
}

/* x[best] minus the largest other value of x (V); +inf when V == 1. */
static double top2_margin(const double *x, size_t V, size_t best)
{
    double second = -INFINITY;
    for (size_t j = 0; j < V; j++)
        if (j != best && x[j] > second)
            second = x[j];
    return x[best] - second;
}

/* idx (k) <- indices of the k largest values of x (V), largest first, ties by lower index.
 * k <= V. */
static void topk_row(size_t *idx, const double *x, size_t V, size_t k)
{
    size_t n = 0;
    for (size_t j = 0; j < V; j++) {
        if (n == k && !(x[j] > x[idx[k - 1]]))
            continue; /* not better than the current k-th (a tie loses: higher index) */
        size_t pos = n < k ? n++ : k - 1;
        while (pos > 0 && x[j] > x[idx[pos - 1]]) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = j;
    }
}

static int cmp_size(const void *pa, const void *pb)
{
    const size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    return (a > b) - (a < b);
}

static int cmp_double(const void *pa, const void *pb)
{
    const double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* |ia & ie| for two index sets (k each, distinct within a set); sorts both in place. */
static size_t overlap_count(size_t *ia, size_t *ie, size_t k)
{
    qsort(ia, k, sizeof *ia, cmp_size);
    qsort(ie, k, sizeof *ie, cmp_size);
    size_t i = 0, j = 0, n = 0;
    while (i < k && j < k) {
        if (ia[i] == ie[j]) {
            n++;
            i++;
            j++;
        } else if (ia[i] < ie[j]) {
            i++;
        } else {
            j++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- the comparison */

static int included(const uint8_t *mask, size_t p)
{
    return mask == NULL || mask[p] != 0;
}

int lc_compare(lc_metrics *out, const double *a, const double *e, size_t P, size_t V,
               const lc_compare_opts *opts)
{
    if (out == NULL)
        return EINVAL;
    metrics_empty(out, P, V);
    const lc_compare_opts o = opts ? *opts : lc_compare_opts_default();
    if (V != 0 && P > SIZE_MAX / V)
        return EINVAL;
    if ((a == NULL || e == NULL) && P * V != 0)
        return EINVAL;
    if (o.topk < 0 || !(o.atol >= 0.0) || !(o.rtol >= 0.0) || !(o.top1_margin >= 0.0))
        return EINVAL;
    if (o.ulp != LC_ULP_NONE && o.ulp != LC_ULP_F32 && o.ulp != LC_ULP_F64)
        return EINVAL;

    lc_metrics *m = out;
    const size_t k = (size_t)o.topk < V ? (size_t)o.topk : V;
    size_t n_kl = 0;
    for (size_t p = 0; p < P; p++)
        if (included(o.include, p) && included(o.kl_include, p))
            n_kl++;
    double *kl = NULL;   /* (n_kl) KL per KL position, for the percentile */
    double *pe = NULL;   /* (V) softmax of one expected row */
    size_t *topi = NULL; /* (2, k) top-k indices of a, then of e */
    if (n_kl > 0 && V > 0) {
        kl = malloc(n_kl * sizeof *kl);
        pe = malloc(V * sizeof *pe);
        topi = k > 0 ? malloc(2 * k * sizeof *topi) : NULL;
        if (kl == NULL || pe == NULL || (k > 0 && topi == NULL)) {
            free(kl);
            free(pe);
            free(topi);
            return ENOMEM;
        }
    }

    m->ulp = o.ulp;
    m->topk = (int)k;
    double nmse_num = 0.0, nmse_den = 0.0, e_max = 0.0;
    int nmse_nan = 0, nmse_inf = 0;
    double scale_xy = 0.0, scale_xx = 0.0;
    int scale_nan = 0;
    size_t n_kl_seen = 0, topk_rows = 0;
    int kl_nan = 0, top1_nan = 0, topk_nan = 0;
    double kl_sum = 0.0, topk_sum = 0.0;
    if (k > 0) {
        m->topk_mean = 0.0;
        m->topk_min = 1.0;
    }

    for (size_t p = 0; p < P; p++) {
        if (!included(o.include, p))
            continue;
        m->n_included++;
        const double *ar = a + p * V, *er = e + p * V; /* (V) this position's rows */
        double dot = 0.0, na = 0.0, ne = 0.0;
        int row_nonfinite = 0, row_nan = 0;

        /* elementwise metrics */
        for (size_t j = 0; j < V; j++) {
            const double av = ar[j], ev = er[j];
            const int finite = isfinite(av) && isfinite(ev);
            const int has_nan = isnan(av) || isnan(ev);
            if (!finite) {
                if (m->nonfinite++ == 0) {
                    m->nonfinite_pos = p;
                    m->nonfinite_index = j;
                }
                row_nonfinite = 1;
                if (has_nan) {
                    m->n_nan++;
                    row_nan = 1;
                }
            }
            const double d = av == ev ? 0.0 : fabs(av - ev); /* NaN when either is NaN */

            if (!isnan(m->max_abs) && (m->max_abs_pos == LC_NO_POS || has_nan || d > m->max_abs)) {
                m->max_abs = has_nan ? NAN : d;
                m->max_abs_pos = p;
                m->max_abs_index = j;
                m->max_abs_actual = av;
                m->max_abs_expected = ev;
            }
            double rel;
            if (has_nan)
                rel = NAN;
            else if (d == 0.0 || isinf(d))
                rel = d;
            else
                rel = d / fmax(fabs(ev), LC_REL_FLOOR);
            if (!isnan(m->max_rel) &&
                (m->max_rel_pos == LC_NO_POS || has_nan || rel > m->max_rel)) {
                m->max_rel = rel;
                m->max_rel_pos = p;
                m->max_rel_index = j;
            }
            if (!(av == ev || (finite && d <= o.atol + o.rtol * fabs(ev)))) {
                if (m->allclose_fail++ == 0) {
                    m->allclose_first_pos = p;
                    m->allclose_first_index = j;
                }
            }
            if (isfinite(ev) && fabs(ev) > e_max)
                e_max = fabs(ev);
            if (finite) {
                nmse_num += d * d;
                nmse_den += ev * ev;
            } else if (has_nan) {
                nmse_nan = 1;
            } else if (av != ev) {
                nmse_inf = 1;
            }
            if (o.ulp != LC_ULP_NONE) {
                const uint64_t u = lc_ulp_distance(av, ev, o.ulp);
                if (m->max_ulp_pos == LC_NO_POS || u > m->max_ulp) {
                    m->max_ulp = u;
                    m->max_ulp_pos = p;
                    m->max_ulp_index = j;
                }
            }
            dot += av * ev;
            na += av * av;
            ne += ev * ev;
        }

        /* the row's share of the scale fit, centred on the row's means */
        if (row_nonfinite) {
            scale_nan = 1;
        } else if (V > 0) {
            double ma = 0.0, me = 0.0;
            for (size_t j = 0; j < V; j++) {
                ma += ar[j];
                me += er[j];
            }
            ma /= (double)V;
            me /= (double)V;
            for (size_t j = 0; j < V; j++) {
                scale_xy += (ar[j] - ma) * (er[j] - me);
                scale_xx += (er[j] - me) * (er[j] - me);
            }
        }

        /* cosine of the row; sqrt(na * ne) keeps identical rows at exactly 1 */
        double cosine;
        if (row_nonfinite)
            cosine = NAN;
        else if (na == 0.0 || ne == 0.0)
            cosine = (na == 0.0 && ne == 0.0) ? 1.0 : 0.0;
        else
            cosine = fmin(1.0, fmax(-1.0, dot / sqrt(na * ne)));
        if (!isnan(m->min_cosine) &&
            (m->min_cosine_pos == LC_NO_POS || isnan(cosine) || cosine < m->min_cosine)) {
            m->min_cosine = cosine;
            m->min_cosine_pos = p;
        }

        /* softmax-based metrics */
        if (!included(o.kl_include, p) || V == 0)
            continue;
        const double klp = kl_row(pe, ar, er, V);
        kl[n_kl_seen++] = klp;
        kl_nan |= isnan(klp);
        kl_sum += klp;
        if (!isnan(m->kl_max) && (m->kl_max_pos == LC_NO_POS || isnan(klp) || klp > m->kl_max)) {
            m->kl_max = klp;
            m->kl_max_pos = p;
        }
        const size_t ta = argmax_row(ar, V), te = argmax_row(er, V);
        if (!row_nan && ta == te) {
            m->top1_agree++;
        } else if (m->top1_first_mismatch_pos == LC_NO_POS) {
            m->top1_first_mismatch_pos = p;
            m->top1_first_mismatch_actual = ta;
            m->top1_first_mismatch_expected = te;
        }
        top1_nan |= row_nan;
        if (!row_nan && (ta == te || top2_margin(er, V, te) <= o.top1_margin))
            m->top1_margin_agree++;
        else if (m->top1_margin_first_flip_pos == LC_NO_POS)
            m->top1_margin_first_flip_pos = p;
        if (k > 0) {
            double ov = NAN;
            if (!row_nan) {
                topk_row(topi, ar, V, k);
                topk_row(topi + k, er, V, k);
                ov = (double)overlap_count(topi, topi + k, k) / (double)k;
            }
            topk_nan |= row_nan;
            topk_sum += ov;
            topk_rows++;
            if (!isnan(m->topk_min) &&
                (m->topk_min_pos == LC_NO_POS || isnan(ov) || ov < m->topk_min)) {
                m->topk_min = ov;
                m->topk_min_pos = p;
            }
        }
    }
    assert(n_kl_seen == (V > 0 ? n_kl : 0));

    m->n_values = m->n_included * V;
    m->n_kl = n_kl_seen;
    m->allclose_frac = m->n_values ? (double)m->allclose_fail / (double)m->n_values : 0.0;
    m->max_abs_scaled = isnan(m->max_abs) || e_max == 0.0 ? m->max_abs : m->max_abs / e_max;
    if (nmse_nan)
        m->nmse = NAN;
    else if (nmse_inf)
        m->nmse = INFINITY;
    else if (nmse_den == 0.0)
        m->nmse = nmse_num == 0.0 ? 0.0 : INFINITY;
    else
        m->nmse = nmse_num / nmse_den;

    if (scale_nan)
        m->scale_bias = NAN;
    else if (scale_xx == 0.0)
        m->scale_bias = scale_xy == 0.0 ? 0.0 : INFINITY;
    else
        m->scale_bias = scale_xy == scale_xx ? 0.0 : fabs(scale_xy / scale_xx - 1.0);

    if (n_kl_seen > 0) {
        m->kl_mean = kl_nan ? NAN : kl_sum / (double)n_kl_seen;
        if (kl_nan) {
            m->kl_p999 = NAN;
        } else {
            qsort(kl, n_kl_seen, sizeof *kl, cmp_double);
            const size_t rank = (999 * n_kl_seen + 999) / 1000; /* ceil(0.999 n), >= 1 */
            m->kl_p999 = kl[rank - 1];
        }
        m->top1_frac = top1_nan ? NAN : (double)m->top1_agree / (double)n_kl_seen;
        m->top1_margin_frac = top1_nan ? NAN : (double)m->top1_margin_agree / (double)n_kl_seen;
    }
    if (k > 0 && topk_rows > 0)
        m->topk_mean = topk_nan ? NAN : topk_sum / (double)topk_rows;
    else if (k > 0)
        m->topk_mean = m->topk_min = 1.0; /* nothing compared */
    free(kl);
    free(pe);
    free(topi);
    return 0;
}

size_t lc_compare_int64(const int64_t *a, const int64_t *e, size_t n, size_t *first_mismatch)
{
    size_t count = 0, first = LC_NO_POS;
    assert(n == 0 || (a != NULL && e != NULL));
    for (size_t i = 0; i < n; i++) {
        if (a[i] != e[i]) {
            if (count++ == 0)
                first = i;
        }
    }
    if (first_mismatch)
        *first_mismatch = first;
    return count;
}

/* ---------------------------------------------------------------- metric table and bounds */

static const char *const metric_names[] = {
#define LC__METRIC_NAME(id, name, dir, text) name,
    LC_METRIC_MAP(LC__METRIC_NAME)
#undef LC__METRIC_NAME
};

static const char *const metric_texts[] = {
#define LC__METRIC_TEXT(id, name, dir, text) text,
    LC_METRIC_MAP(LC__METRIC_TEXT)
#undef LC__METRIC_TEXT
};

static const lc_bound_direction metric_dirs[] = {
#define LC__METRIC_DIR(id, name, dir, text) LC_BOUND_##dir,
    LC_METRIC_MAP(LC__METRIC_DIR)
#undef LC__METRIC_DIR
};

static int metric_valid(lc_metric_id id)
{
    return (int)id >= 0 && id < LC_METRIC_COUNT;
}

const char *lc_metric_name(lc_metric_id id)
{
    return metric_valid(id) ? metric_names[id] : "unknown";
}

const char *lc_metric_text(lc_metric_id id)
{
    return metric_valid(id) ? metric_texts[id] : "unknown";
}

lc_metric_id lc_metric_from_name(const char *name)
{
    if (name == NULL)
        return LC_METRIC_UNKNOWN;
    for (int i = 0; i < LC_METRIC_COUNT; i++)
        if (strcmp(name, metric_names[i]) == 0)
            return (lc_metric_id)i;
    return LC_METRIC_UNKNOWN;
}

lc_bound_direction lc_metric_direction(lc_metric_id id)
{
    assert(metric_valid(id));
    return metric_dirs[id];
}

double lc_metric_value(const lc_metrics *m, lc_metric_id id)
{
    assert(m != NULL && metric_valid(id));
    switch (id) {
    case LC_METRIC_MAX_ABS: return m->max_abs;
    case LC_METRIC_MAX_REL: return m->max_rel;
    case LC_METRIC_MAX_ABS_SCALED: return m->max_abs_scaled;
    case LC_METRIC_ALLCLOSE_FAIL: return (double)m->allclose_fail;
    case LC_METRIC_ALLCLOSE_FRAC: return m->allclose_frac;
    case LC_METRIC_NMSE: return m->nmse;
    case LC_METRIC_MAX_ULP:
        if (m->ulp == LC_ULP_NONE)
            return NAN;
        if (m->max_ulp == UINT64_MAX) /* a NaN, or an infinity against another value */
            return m->n_nan ? NAN : INFINITY;
        return (double)m->max_ulp;
    case LC_METRIC_MIN_COSINE: return m->min_cosine;
    case LC_METRIC_KL_MEAN: return m->kl_mean;
    case LC_METRIC_KL_MAX: return m->kl_max;
    case LC_METRIC_KL_P999: return m->kl_p999;
    case LC_METRIC_TOP1_AGREE: return m->top1_frac;
    case LC_METRIC_TOP1_AGREE_MARGIN: return m->top1_margin_frac;
    case LC_METRIC_TOPK_OVERLAP_MEAN: return m->topk_mean;
    case LC_METRIC_TOPK_OVERLAP_MIN: return m->topk_min;
    case LC_METRIC_NONFINITE: return (double)m->nonfinite;
    case LC_METRIC_SCALE_BIAS: return m->scale_bias;
    case LC_METRIC_UNKNOWN:
    case LC_METRIC_COUNT: break;
    }
    assert(0 && "metric id out of range");
    return NAN;
}

int lc_check_bound(lc_metric_id id, double value, double bound, double *margin)
{
    const lc_bound_direction dir = lc_metric_direction(id);
    if (isnan(value) || isnan(bound)) {
        if (margin)
            *margin = NAN;
        return 0;
    }
    if (margin)
        *margin = value == bound ? 0.0 : dir == LC_BOUND_UPPER ? bound - value : value - bound;
    return dir == LC_BOUND_UPPER ? value <= bound : value >= bound;
}
