/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the report writers (not part of the public API): errors, number
 * formatting, text escaping, where a metric happened, and the comparison of a run with its
 * base run.
 */
#ifndef LC_REPORT_UTIL_H
#define LC_REPORT_UTIL_H

#include <stdio.h>

#include "lc_error.h"
#include "results.h"

/* Atomic file output: lc_afile (harness/io/lc_file.h): temporary file next to the target,
 * checked writes, fsync, rename. */
#include "lc_file.h"

/* ---------------------------------------------------------------- numbers */

#define LC__NUM_LEN 32

/* Three significant digits for people (see reports.h): "3.2e-05", "0.0125", "42", "0.99999",
 * "nan". */
const char *lc__num(char buf[LC__NUM_LEN], double x);

/* A relative margin as a percentage: "94%", "-140%", "0.37%" below 1%, "-9.44e+05%" from
 * 10000% on; "nan" / "-inf%" for those. */
const char *lc__pct(char buf[LC__NUM_LEN], double rel);

/* The check's budget left, for people: "94%" (lc_check_rel_margin as a percentage),
 * "exact" for a met zero-budget bound (bitwise, top-1 >= 1), "" for a missed one (the
 * share of nothing is no number), "nan" when value or bound is NaN. */
const char *lc__left(char buf[LC__NUM_LEN], const lc_check *k);

/* ---------------------------------------------------------------- text */

/* Writes s with &, <, >, " and ' as entities (XML and HTML text and attributes); control
 * characters other than tab become '?', line breaks "&#10;" when in_attr, invalid UTF-8 bytes
 * '?'. */
void lc__put_xml(FILE *f, const char *s, int in_attr);

/* Length of the valid UTF-8 sequence starting at s (1..4), or 0 when s starts an invalid
 * one. s[0] must not be NUL. */
int lc__utf8_len(const unsigned char *s);

/* Writes s with line breaks as spaces (one line of console output). */
void lc__put_line(FILE *f, const char *s);

/* ---------------------------------------------------------------- checks */

/* "<=" / ">=" for a passing check of the metric, ">" / "<" for a failing one (ASCII). */
const char *lc__relation(lc_metric_id id, int pass);

/* Where the metric's value was found, from the comparison's metric positions:
 * "at pos 7, token 1234", "first at pos 3 (argmax 17, expected 42)", or "" when the metric
 * has no position. "token" when the comparison is of logits (it measured top-k overlap, or
 * its name or descriptions mention logits), else "index". Writes at most n bytes into buf; returns it. */
const char *lc__where(char *buf, size_t n, const lc_comparison *c, lc_metric_id id);

/* The margin of a check in the one convention every report uses (console, Markdown, HTML,
 * JUnit): a passing check "margin 94%" (the budget left) or "exact" (a zero budget met); a
 * failing one "2.4x the bound" (upper bounds), "2.4x the allowed shortfall" (lower bounds),
 * "shortfall 0.324, none allowed" (lower bound 1); "nan" when value or bound is NaN. */
#define LC__MARGIN_LEN 64
const char *lc__margin(char buf[LC__MARGIN_LEN], const lc_check *k);

/* Comparisons whose positions are stages (the hidden state after the embedding and after each
 * decoder layer): "hidden_last" and any id starting "hidden". */
int lc__is_stage_cmp(const lc_comparison *c);

/* "the embedding" (stage 0) or "layer N" (stage N+1), into buf. */
const char *lc__stage_name(char *buf, size_t n, size_t stage);

/* The first stage of a stage comparison whose max |a-e| exceeds the max_abs bound, with that
 * value and bound; -1 when none does (or c is no stage comparison, or has no such check). */
int lc__first_divergence(const lc_comparison *c, double *value, double *bound);

/* ---------------------------------------------------------------- what moved */

enum {
    LC__MOVED = 1,           /* the value moved beyond the noise band (or to/from NaN) */
    LC__VERDICT_CHANGED = 2, /* the check passed in one run and failed in the other */
};

/* A metric against the base run: beyond the noise band towards failing, away from it, or
 * within it (reports.h, lc_report_base_counts). */
typedef enum { LC__UNCHANGED = 0, LC__REGRESSED = 1, LC__IMPROVED = 2 } lc__change;

/* One row of the comparison with the base run. Cases match by name, comparisons within a
 * case by name, metrics by id. */
typedef struct {
    const lc_case_result *c, *bc;  /* new and base case; one is NULL for a case new or gone */
    const lc_comparison *k, *bk;   /* new and base comparison; NULL: new or gone, or a
                                      case-level row */
    lc_metric_id metric;           /* LC_METRIC_UNKNOWN for case- and comparison-level rows */
    double value, base;            /* the metric in the new and the base run */
    double ratio;                  /* of the errors (shortfall from 1 for lower bounds) */
    int pass, base_pass;           /* of the checks; -1 when that run has no such check */
    int flags;                     /* LC__MOVED | LC__VERDICT_CHANGED */
    lc__change change;             /* metric rows: regressed, improved or unchanged */
    double band;                   /* metric rows: the noise band the move was judged by */
} lc__move;

/* Builds every row: per case present in both runs a case-level row (flagged
 * LC__VERDICT_CHANGED when the verdict changed), per comparison in both a row per metric
 * checked in either run, comparison-level rows for comparisons new or gone, and case-level
 * rows for cases new (in r only) or gone (in base only), last. *rows is malloc'ed (free it).
 * Returns 0 or ENOMEM. */
int lc__moves_build(const lc_run_result *r, const lc_run_result *base, lc__move **rows,
                    size_t *n);

/* The noise band of a check: a quarter of its error budget (bound for upper bounds, 1 - bound
 * for lower ones), 0 for a zero budget. Every bound of the catalog is at least 4x the floor it
 * was sized from (cases/README.md), so a quarter of it covers what rounding alone moves. */
double lc__noise_band(lc_metric_id id, double bound);

/* The ratio of errors used to flag a move (see lc__move.ratio): 1 when equal (including
 * both NaN or both the same infinity), +inf from 0, NaN when only one side is NaN. */
double lc__move_ratio(lc_metric_id id, double base, double value);

/* ---------------------------------------------------------------- the diagnosis */

#define LC__MAX_CAUSES 24

/* One cause of failure: a comparison (its id with digits as N, cut at '/': "prefill_logits",
 * "chunkN.state", "grad_w") of one class, failing in n_cases cases. */
typedef struct {
    char cause[64];
    char cls[8];
    int n_cases, n_checks;
    const lc_case_result *c;     /* the case of the worst check */
    const lc_comparison *k;
    const lc_check *worst;       /* max_abs when it failed (it has a place), else the worst */
    char cases[512];             /* "a, b, c" (cut with "..." when long) */
    const lc_case_result *last;  /* the case counted last */
} lc__cause;

typedef struct {
    int counts[4];               /* cases per verdict */
    int fail_golden, fail_self;  /* failing cases with a failing golden / self-consistency comparison */
    int cases_self, cases_golden; /* cases with a self-consistency / golden comparison */
    lc__cause causes[LC__MAX_CAUSES];
    int n_causes, more_causes;   /* causes beyond LC__MAX_CAUSES are counted, not kept */
    int stage;                   /* the earliest first diverging stage over the failing cases, -1 none */
    double stage_value, stage_bound;
    const lc_case_result *stage_case;
    int stage_cases, stage_checked; /* failing cases diverging first at .stage / with a stage check */
    const lc_case_result *worst_c;
    const lc_comparison *worst_k;
    const lc_check *worst;
    char verdict[96];            /* "FAIL: 18 of 63 cases failed (45 passed, 0 errors)" */
    char text[2048];             /* the diagnosis, plain text, a few sentences */
} lc__diag;

/* Reads r and fills d (no allocation; d points into r, which must outlive it). */
void lc__diagnose(const lc_run_result *r, lc__diag *d);

/* The worst failing check of a comparison for a reader: a failed max_abs (it has a place and a
 * size), else the worst by lc_check_worse; NULL when every check passes. */
const lc_check *lc__worst_failing(const lc_comparison *k);

#endif /* LC_REPORT_UTIL_H */
