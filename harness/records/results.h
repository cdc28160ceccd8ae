/* SPDX-License-Identifier: MIT */
/*
 * Result records: what one run of the suite produced, case by case. The runner fills them;
 * every report writer (Markdown, HTML, JSON, JUnit XML) and the console printer read only
 * this; a JSON results file can be read back (as the base run of a comparison report).
 *
 * Ownership: lc_run_result owns everything under it (cases, comparisons, curves, strings);
 * lc_run_result_free releases it and is safe on a zeroed struct and twice.
 */
#ifndef LC_RESULTS_H
#define LC_RESULTS_H

#include <stddef.h>

#include "lc_error.h"
#include "metrics.h"

typedef enum { LC_VERDICT_PASS = 0, LC_VERDICT_FAIL = 1, LC_VERDICT_ERROR = 2, LC_VERDICT_SKIP = 3 } lc_verdict;

const char *lc_verdict_name(lc_verdict v); /* "pass", "fail", "error", "skip" */

/* One metric checked against its bound. */
typedef struct {
    lc_metric_id metric;
    double value;
    double bound;
    double margin;              /* bound - value (upper bounds) or value - bound (lower); < 0 fails */
    int pass;
} lc_check;

#define LC_MAX_CHECKS 16

/* One comparison inside a case, e.g. "prefill vs golden" or "chunk 5 vs one-shot". Its id is
 * stable and built from what it compares ("prefill_logits", "chunk5.state", "row2.decode"):
 * base-run matching, tests and report locations key on it; the name is its human title. */
typedef struct {
    char id[64];
    char cls[8];                /* comparison class: "golden", "cross", "same", "exact" */
    char name[128];
    char actual[64];            /* what was compared: "engine f32 prefill logits" */
    char expected[64];          /* against what: "transformers float64", "engine one-shot" */
    lc_metrics m;               /* every metric, measured */
    lc_check checks[LC_MAX_CHECKS];
    int n_checks;
    int pass;
    /* per-position curve for plots: max |a-e| at each compared position (NaN where excluded) */
    double *curve;
    int n_curve;
} lc_comparison;

typedef struct {
    char name[128];
    char kind[32];
    char checkpoint[512];
    char description[512];
    char labels[256];           /* comma-separated */
    lc_verdict verdict;
    char reason[1024];          /* one line: the first failed check or the input error */
    char not_compared[160];     /* taps the engine lacks, so comparisons left out ("hidden,state"),
                                 * "" when every comparison of the case ran */
    double seconds;
    lc_comparison *cmps;
    int n_cmps;
} lc_case_result;

#define LC_MAX_CHECKPOINTS 32

/* A checkpoint the run used and its hash (the SHA-256 of the sha256sum listing of its files,
 * as `logitcheck synth` prints it). */
typedef struct {
    char path[512];             /* as the cases name it ("golden/tiny-dense") */
    char sha256[65];            /* lower-case hex; "" when it could not be hashed */
} lc_checkpoint_hash;

typedef struct {
    char engine_precision[8];   /* "f64" / "f32" / "bf16" / "f16": the engine's declared precision */
    char engine[128];           /* engine name and version ("logitcheck-reference 0.1.0"); "" unknown */
    char engine_detail[256];    /* free text the engine gave (build, device, planted faults) */
    char started[32];           /* ISO 8601 UTC */
    char host[128];
    char version[32];           /* logitcheck version */
    char git[64];               /* source revision when known, else "" */
    char catalog[72];           /* SHA-256 of the catalog's case files, "" unknown: a base run must match */
    lc_checkpoint_hash checkpoints[LC_MAX_CHECKPOINTS];
    int n_checkpoints;
    double seconds;
    lc_case_result *cases;
    int n_cases;
    int cap_cases;
} lc_run_result;

/* Appends a zeroed case record and returns it (NULL on out of memory). Pointers returned
 * earlier stay valid only until the next append. */
lc_case_result *lc_run_add_case(lc_run_result *r);
/* Appends a zeroed comparison to a case (NULL on out of memory). */
lc_comparison *lc_case_add_cmp(lc_case_result *c);
void lc_run_result_free(lc_run_result *r);
/* Frees what one case record holds (its comparisons), for records outside a run. */
void lc_case_result_free(lc_case_result *c);

/* Counts of cases per verdict. */
void lc_run_counts(const lc_run_result *r, int counts[4]);

/* ---------------------------------------------------------------- filling and reading records */

/* Copies curve (n values, NaN where a position was excluded) into c->curve, replacing any
 * earlier curve; the caller keeps its array. n == 0 clears the curve.
 * Returns 0 or ENOMEM (then c is unchanged). */
int lc_cmp_set_curve(lc_comparison *c, const double *curve, int n);

/* Checks the metric id of c->m against bound (lc_check_bound, in the metric's direction) and
 * appends the check; c->pass becomes 1 when every check of c passes, else 0.
 * Returns the appended check, or NULL when c already holds LC_MAX_CHECKS checks. */
lc_check *lc_cmp_add_check(lc_comparison *c, lc_metric_id id, double bound);

/* The share of the check's budget still unused: 1 - value/bound for upper bounds,
 * (value - bound)/(1 - bound) for lower bounds (every lower-bounded metric is a fraction
 * whose ideal is 1, so the budget is the shortfall from 1 the bound allows). 1 = untouched,
 * 0 = exactly at the bound, negative = failed (-1: twice the budget). A zero budget
 * (upper bound <= 0, lower bound >= 1) gives 1 when met and -inf when not; NaN value or
 * bound gives NaN. Pure function. */
double lc_check_rel_margin(const lc_check *k);

/* Whether check a is worse (closer to failing, or failing further) than b: a failing check
 * is worse than a passing one; otherwise the lower relative margin is worse, NaN worst of
 * all. Strict: a check is never worse than itself. */
int lc_check_worse(const lc_check *a, const lc_check *b);

/* The worst check of the comparison (see lc_check_worse), or NULL when it has none. */
const lc_check *lc_cmp_tightest(const lc_comparison *c);

/* The worst check over all comparisons of the case, or NULL when there is none; *cmp (when
 * not NULL) receives its comparison (NULL with it). Ties go to the first in order. */
const lc_check *lc_case_tightest(const lc_case_result *c, const lc_comparison **cmp);

/* Number of failing checks over all comparisons of the case. */
int lc_case_failed_checks(const lc_case_result *c);

#endif /* LC_RESULTS_H */
