/* SPDX-License-Identifier: MIT */
/*
 * Comparison metrics: how far an actual tensor is from an expected one.
 *
 * Both tensors are viewed as P positions x V values per position, row-major, in double
 * (a logits matrix is (P, vocab); a plain vector is P = 1). The module knows nothing about the
 * engine or the file formats: the caller converts whatever it compares to double first.
 *
 * Shape legend: P = positions, V = values per position, k = top-k size.
 *
 * Conventions shared by every metric:
 * - Positions excluded by the `include` mask (padding) are skipped everywhere. Positions
 *   excluded by `kl_include` (image placeholders) are skipped by the per-position softmax and
 *   argmax metrics (KL, top-1, top-k) only.
 * - NaN never hides: a NaN in either tensor at an included position is counted in
 *   `nonfinite` / `n_nan` and turns every metric it touches into NaN (max abs, max rel, NMSE,
 *   min cosine, KL, top-1 fraction, top-k overlap) or into the worst value (max ULP = UINT64_MAX,
 *   an allclose failure), so any bound on those metrics fails. An infinity equal to the
 *   expected infinity (same sign) counts as zero error for the elementwise metrics but is
 *   still counted in `nonfinite`; any other infinity makes the error infinite.
 * - When nothing is compared (no included position) the error metrics are 0 and the
 *   agreement metrics 1, with positions LC_NO_POS; callers that require data must check
 *   `n_included` / `n_kl` themselves.
 *
 * Nothing here prints, exits or keeps global state.
 */
#ifndef LC_METRICS_H
#define LC_METRICS_H

#include <errno.h> /* EINVAL, ENOMEM returned by lc_compare */
#include <stddef.h>
#include <stdint.h>

/* "No such position / index": stored in position fields when there is nothing to point at. */
#define LC_NO_POS ((size_t)-1)

/* Smallest denominator of the relative error: rel = |a - e| / max(|e|, LC_REL_FLOOR). */
#define LC_REL_FLOOR 1e-30

/* ---------------------------------------------------------------- options */

/* Precision in which the compared data was produced, for the ULP distance. */
typedef enum {
    LC_ULP_NONE = 0, /* ULP distance not computed (its metric reads as NaN) */
    LC_ULP_F32,      /* both values rounded to float, distance between float encodings */
    LC_ULP_F64       /* distance between double encodings */
} lc_ulp_precision;

typedef struct {
    const uint8_t *include;    /* (P) nonzero = compare this position; NULL = all */
    const uint8_t *kl_include; /* (P) nonzero = also in KL / top-1 / top-k; NULL = all */
    double atol;               /* allclose: |a - e| <= atol + rtol * |e| */
    double rtol;
    int topk;                  /* k of the top-k overlap; 0 = not computed; clamped to V */
    lc_ulp_precision ulp;
    /* top-1 with near-ties tolerated: a flip counts only where the expected row's top-2 margin
     * (best minus second best) is above this (as vLLM's check_logprobs_close tolerates a flip
     * between near-tied tokens). 0 = only exact ties are tolerated. */
    double top1_margin;
} lc_compare_opts;

/* Defaults: no masks, atol = 1e-8, rtol = 1e-5 (numpy's allclose), topk = 5, no ULP,
 * top1_margin 0. */
lc_compare_opts lc_compare_opts_default(void);

/* ---------------------------------------------------------------- result */

/* A plain value struct: it owns no memory, needs no init or free. Positions are row indices
 * in [0, P), indices are column indices in [0, V) (for logits: the token id). */
typedef struct {
    size_t positions;           /* P */
    size_t values;              /* V */
    size_t n_included;          /* positions compared */
    size_t n_values;            /* values compared = n_included * V */
    size_t n_kl;                /* positions in KL / top-1 / top-k */

    /* non-finite values (NaN or inf in a or e) */
    size_t nonfinite;           /* (position, index) pairs with a or e not finite */
    size_t n_nan;               /* of those, pairs with a or e NaN */
    size_t nonfinite_pos, nonfinite_index; /* first one in row-major order */

    /* max |a - e| (NaN if any NaN: then it points at the first NaN) */
    double max_abs;
    size_t max_abs_pos, max_abs_index;
    double max_abs_actual, max_abs_expected;

    /* max |a - e| / max |e| over finite expected values (max_abs itself when e is all zero):
     * the error relative to the tensor's magnitude, for gradients whose elements cross zero */
    double max_abs_scaled;

    /* max |a - e| / max(|e|, LC_REL_FLOOR) */
    double max_rel;
    size_t max_rel_pos, max_rel_index;

    /* allclose: values with !(|a - e| <= atol + rtol * |e|) */
    size_t allclose_fail;
    double allclose_frac;       /* allclose_fail / n_values (0 when n_values == 0) */
    size_t allclose_first_pos, allclose_first_index;

    /* NMSE = sum (a - e)^2 / sum e^2; 0 when both sums are 0, +inf when only e is all zero.
     * Values where a == e == +-inf are left out of both sums. */
    double nmse;

    /* Systematic scale: |Σ (a - ā)(e - ē) / Σ (e - ē)² - 1| over the included rows, each row
     * centred on its own mean (a shift of a whole logits row changes no probability). Random
     * rounding averages out of both sums, a row scaled by (1 + s) gives |s|: it sees a norm
     * whose epsilon is off long before max_abs does. 0 when both sums are 0 (or a == e);
     * +inf when only the second is 0; NaN when an included row holds a non-finite value. */
    double scale_bias;

    /* ULP distance (only when opts.ulp != LC_ULP_NONE; UINT64_MAX for NaN or a mismatched
     * infinity) */
    lc_ulp_precision ulp;
    uint64_t max_ulp;
    size_t max_ulp_pos, max_ulp_index;

    /* cosine similarity per position, minimum over included positions. A zero row against a
     * zero row is 1, against a non-zero row 0; a row with a non-finite value is NaN. */
    double min_cosine;
    size_t min_cosine_pos;

    /* KL(softmax(e) || softmax(a)) per position, over the KL positions. -inf logits are
     * allowed (probability 0); NaN or +inf logits make the position's KL NaN. p99.9 is the
     * nearest-rank percentile: the ceil(0.999 * n_kl)-th smallest value. */
    double kl_mean, kl_max, kl_p999;
    size_t kl_max_pos;

    /* top-1: positions whose argmax agrees (ties resolve to the lowest index). A row with a
     * NaN counts as a disagreement and makes top1_frac NaN. */
    size_t top1_agree;
    double top1_frac;           /* top1_agree / n_kl (1 when n_kl == 0) */
    size_t top1_first_mismatch_pos;
    size_t top1_first_mismatch_actual, top1_first_mismatch_expected; /* the two argmaxes */
    /* top-1 with near-ties tolerated (opts.top1_margin): positions that agree, or whose flip
     * falls where the expected top-2 margin is <= top1_margin. A NaN row counts as a flip and
     * makes the fraction NaN. */
    size_t top1_margin_agree;
    double top1_margin_frac;    /* top1_margin_agree / n_kl (1 when n_kl == 0) */
    size_t top1_margin_first_flip_pos; /* first flip that counted, LC_NO_POS if none */

    /* top-k overlap |topk(a) & topk(e)| / k per position (ties: lower index first); NaN when
     * topk == 0 or a row has a NaN */
    int topk;                   /* effective k (opts.topk clamped to V) */
    double topk_mean, topk_min;
    size_t topk_min_pos;
} lc_metrics;

/* Compares actual a (P, V) with expected e (P, V).
 * opts may be NULL (defaults); its masks, when set, have P entries. The result is written to
 * *out, fully, even on failure (then it reads as "nothing compared"). Nothing is retained:
 * a, e and the masks stay the caller's and may be freed after the call. Scratch memory
 * (V + n_kl doubles, 2k indices) is allocated and freed inside.
 * Returns 0, EINVAL (NULL out, NULL a/e with P*V > 0, P*V overflowing, negative topk, negative
 * or NaN atol/rtol, unknown ulp) or ENOMEM. */
int lc_compare(lc_metrics *out, const double *a, const double *e, size_t P, size_t V,
               const lc_compare_opts *opts);

/* ULP distance between a and e in the given precision (LC_ULP_F32: both rounded to float
 * first). +0 and -0 are 0 apart; crossing zero counts the steps on both sides. NaN on either
 * side, or an infinity that differs from the other value, gives UINT64_MAX. Pure function. */
uint64_t lc_ulp_distance(double a, double e, lc_ulp_precision prec);

/* Exact comparison of n integers (positions, token ids). Returns the number of i with
 * a[i] != e[i]; *first_mismatch (when not NULL) receives the first such i, or LC_NO_POS. */
size_t lc_compare_int64(const int64_t *a, const int64_t *e, size_t n, size_t *first_mismatch);

/* ---------------------------------------------------------------- bounds and verdicts */

typedef enum { LC_BOUND_UPPER, LC_BOUND_LOWER } lc_bound_direction;

/* id, name in case files, direction of its bound, what it measures */
#define LC_METRIC_MAP(X)                                                                    \
    X(MAX_ABS, "max_abs", UPPER, "max |a-e|")                                               \
    X(MAX_REL, "max_rel", UPPER, "max |a-e|/|e|")                                           \
    X(MAX_ABS_SCALED, "max_abs_scaled", UPPER, "max |a-e| / max |e|")                       \
    X(ALLCLOSE_FAIL, "allclose_fail", UPPER, "values failing |a-e| <= atol+rtol*|e|")       \
    X(ALLCLOSE_FRAC, "allclose_frac", UPPER, "fraction of values failing allclose")         \
    X(NMSE, "nmse", UPPER, "sum (a-e)^2 / sum e^2")                                         \
    X(MAX_ULP, "max_ulp", UPPER, "max ULP distance")                                        \
    X(MIN_COSINE, "min_cosine", LOWER, "min cosine similarity over positions")              \
    X(KL_MEAN, "kl_mean", UPPER, "mean KL(softmax e || softmax a)")                         \
    X(KL_MAX, "kl_max", UPPER, "max KL over positions")                                     \
    X(KL_P999, "kl_p999", UPPER, "p99.9 KL over positions")                                 \
    X(TOP1_AGREE, "top1_agree", LOWER, "fraction of positions whose argmax agrees")         \
    X(TOP1_AGREE_MARGIN, "top1_agree_margin", LOWER,                                        \
      "fraction agreeing on top-1, flips within top1_margin of a tie tolerated")             \
    X(TOPK_OVERLAP_MEAN, "topk_overlap_mean", LOWER, "mean top-k overlap fraction")         \
    X(TOPK_OVERLAP_MIN, "topk_overlap_min", LOWER, "min top-k overlap fraction")            \
    X(NONFINITE, "nonfinite", UPPER, "values with a NaN or inf")                            \
    X(SCALE_BIAS, "scale_bias", UPPER, "|least-squares slope of a on e - 1|, rows centred")

typedef enum {
    LC_METRIC_UNKNOWN = -1,
#define LC__METRIC_ENUM(id, name, dir, text) LC_METRIC_##id,
    LC_METRIC_MAP(LC__METRIC_ENUM)
#undef LC__METRIC_ENUM
    LC_METRIC_COUNT
} lc_metric_id;

/* Name as written in case files ("kl_max") and a short description; "unknown" for an id out
 * of range. Static strings, never NULL. */
const char *lc_metric_name(lc_metric_id id);
const char *lc_metric_text(lc_metric_id id);

/* Exact, case-sensitive lookup of a case-file name; LC_METRIC_UNKNOWN when not a metric
 * (or name is NULL). */
lc_metric_id lc_metric_from_name(const char *name);

/* Whether the metric's bound is a maximum (errors) or a minimum (cosine, top-1, top-k). */
lc_bound_direction lc_metric_direction(lc_metric_id id);

/* The metric's value in m, as a double (counts converted). MAX_ULP reads NaN when the data
 * held a NaN and +inf when an infinity met a different value (max_ulp == UINT64_MAX).
 * NaN for a metric that was not computed (MAX_ULP without a ULP precision, top-k with k = 0).
 * id must be a valid metric (asserted). */
double lc_metric_value(const lc_metrics *m, lc_metric_id id);

/* Checks value against bound in the metric's direction: upper bounds pass when
 * value <= bound, lower bounds when value >= bound. A NaN value or bound always fails.
 * *margin (when not NULL) receives what is left: bound - value (upper) or value - bound
 * (lower), negative on failure, 0 when value == bound, NaN when either is NaN.
 * Returns 1 on pass, 0 on fail. id must be a valid metric (asserted). */
int lc_check_bound(lc_metric_id id, double value, double bound, double *margin);

#endif /* LC_METRICS_H */
