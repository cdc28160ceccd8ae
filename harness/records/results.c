/* SPDX-License-Identifier: MIT */
/*
 * Result records (see results.h): growth of the case and comparison arrays, their release,
 * and the small questions every report asks of a record (counts, the tightest check).
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"

/* ---------------------------------------------------------------- names and counts */

const char *lc_verdict_name(lc_verdict v)
{
    switch (v) {
    case LC_VERDICT_PASS: return "pass";
    case LC_VERDICT_FAIL: return "fail";
    case LC_VERDICT_ERROR: return "error";
    case LC_VERDICT_SKIP: return "skip";
    }
    return "unknown";
}

void lc_run_counts(const lc_run_result *r, int counts[4])
{
    counts[0] = counts[1] = counts[2] = counts[3] = 0;
    for (int i = 0; i < r->n_cases; i++) {
        const lc_verdict v = r->cases[i].verdict;
        assert((int)v >= 0 && (int)v < 4);
        counts[v]++;
    }
}

/* ---------------------------------------------------------------- growth and release */

lc_case_result *lc_run_add_case(lc_run_result *r)
{
    if (r->n_cases == r->cap_cases) {
        const int cap = r->cap_cases ? 2 * r->cap_cases : 16;
        lc_case_result *p = realloc(r->cases, (size_t)cap * sizeof *p);
        if (p == NULL)
            return NULL;
        r->cases = p;
        r->cap_cases = cap;
    }
    lc_case_result *c = &r->cases[r->n_cases++];
    memset(c, 0, sizeof *c);
    return c;
}

lc_comparison *lc_case_add_cmp(lc_case_result *c)
{
    lc_comparison *p = realloc(c->cmps, (size_t)(c->n_cmps + 1) * sizeof *p);
    if (p == NULL)
        return NULL;
    c->cmps = p;
    lc_comparison *cmp = &c->cmps[c->n_cmps++];
    memset(cmp, 0, sizeof *cmp);
    return cmp;
}

void lc_case_result_free(lc_case_result *c)
{
    if (!c)
        return;
    for (int j = 0; j < c->n_cmps; j++)
        free(c->cmps[j].curve);
    free(c->cmps);
    c->cmps = NULL;
    c->n_cmps = 0;
}

void lc_run_result_free(lc_run_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_cases; i++)
        lc_case_result_free(&r->cases[i]);
    free(r->cases);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- filling */

int lc_cmp_set_curve(lc_comparison *c, const double *curve, int n)
{
    assert(n >= 0 && (n == 0 || curve != NULL));
    double *p = NULL;
    if (n > 0) {
        p = malloc((size_t)n * sizeof *p);
        if (p == NULL)
            return ENOMEM;
        memcpy(p, curve, (size_t)n * sizeof *p);
    }
    free(c->curve);
    c->curve = p;
    c->n_curve = n;
    return 0;
}

lc_check *lc_cmp_add_check(lc_comparison *c, lc_metric_id id, double bound)
{
    if (c->n_checks >= LC_MAX_CHECKS)
        return NULL;
    lc_check *k = &c->checks[c->n_checks++];
    k->metric = id;
    k->value = lc_metric_value(&c->m, id);
    k->bound = bound;
    k->pass = lc_check_bound(id, k->value, bound, &k->margin);
    c->pass = 1;
    for (int i = 0; i < c->n_checks; i++)
        c->pass = c->pass && c->checks[i].pass;
    return k;
}

/* ---------------------------------------------------------------- the tightest check */

double lc_check_rel_margin(const lc_check *k)
{
    const double v = k->value, b = k->bound;
    if (isnan(v) || isnan(b))
        return NAN;
    if (lc_metric_direction(k->metric) == LC_BOUND_UPPER) {
        if (!(b > 0))
            return v <= b ? 1.0 : -INFINITY;
        if (isinf(b))
            return isinf(v) ? 0.0 : 1.0;
        return 1.0 - v / b;
    }
    if (!(b < 1))
        return v >= b ? 1.0 : -INFINITY;
    if (isinf(b)) /* -inf: any non-NaN value passes */
        return 1.0;
    return (v - b) / (1.0 - b);
}

int lc_check_worse(const lc_check *a, const lc_check *b)
{
    if (!a->pass != !b->pass)
        return !a->pass;
    const double ra = lc_check_rel_margin(a), rb = lc_check_rel_margin(b);
    if (isnan(ra) || isnan(rb))
        return isnan(ra) && !isnan(rb);
    return ra < rb;
}

const lc_check *lc_cmp_tightest(const lc_comparison *c)
{
    const lc_check *worst = NULL;
    for (int i = 0; i < c->n_checks; i++)
        if (worst == NULL || lc_check_worse(&c->checks[i], worst))
            worst = &c->checks[i];
    return worst;
}

const lc_check *lc_case_tightest(const lc_case_result *c, const lc_comparison **cmp)
{
    const lc_check *worst = NULL;
    const lc_comparison *where = NULL;
    for (int j = 0; j < c->n_cmps; j++) {
        const lc_check *k = lc_cmp_tightest(&c->cmps[j]);
        if (k != NULL && (worst == NULL || lc_check_worse(k, worst))) {
            worst = k;
            where = &c->cmps[j];
        }
    }
    if (cmp)
        *cmp = where;
    return worst;
}

int lc_case_failed_checks(const lc_case_result *c)
{
    int n = 0;
    for (int j = 0; j < c->n_cmps; j++)
        for (int i = 0; i < c->cmps[j].n_checks; i++)
            n += !c->cmps[j].checks[i].pass;
    return n;
}
