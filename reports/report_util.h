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

/* ---------------------------------------------------------------- what moved */

enum {
    LC__MOVED = 1,           /* the value moved by more than 2x either way (or to/from NaN) */
    LC__VERDICT_CHANGED = 2, /* the check passed in one run and failed in the other */
};

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
} lc__move;

/* Builds every row: per case present in both runs a case-level row (flagged
 * LC__VERDICT_CHANGED when the verdict changed), per comparison in both a row per metric
 * checked in either run, comparison-level rows for comparisons new or gone, and case-level
 * rows for cases new (in r only) or gone (in base only), last. *rows is malloc'ed (free it).
 * Returns 0 or ENOMEM. */
int lc__moves_build(const lc_run_result *r, const lc_run_result *base, lc__move **rows,
                    size_t *n);

/* The ratio of errors used to flag a move (see lc__move.ratio): 1 when equal (including
 * both NaN or both the same infinity), +inf from 0, NaN when only one side is NaN. */
double lc__move_ratio(lc_metric_id id, double base, double value);

#endif /* LC_REPORT_UTIL_H */
