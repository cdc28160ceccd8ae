/* SPDX-License-Identifier: MIT */
/* The run's arena and errors, and compare-and-record with bounds by class (see
 * runner_internal.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- arena */

void *lc__own(lc__run *r, void *p)
{
    if (!p)
        return NULL;
    if (r->n_owned == r->cap_owned) {
        int cap = r->cap_owned ? 2 * r->cap_owned : 32;
        void **o = realloc(r->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            lc__set_error(r, "case '%s': out of memory", r->c->name);
            return NULL;
        }
        r->owned = o;
        r->cap_owned = cap;
    }
    r->owned[r->n_owned++] = p;
    return p;
}

void *lc__alloc(lc__run *r, size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        lc__set_error(r, "case '%s': out of memory for %zu bytes", r->c->name, bytes);
        return NULL;
    }
    return lc__own(r, p);
}

double *lc__nans(lc__run *r, size_t n)
{
    double *d = lc__alloc(r, n * sizeof *d);
    for (size_t i = 0; d && i < n; i++)
        d[i] = NAN;
    return d;
}

/* ---------------------------------------------------------------- errors */

void lc__set_error(lc__run *r, const char *fmt, ...)
{
    if (r->res->verdict == LC_VERDICT_ERROR)
        return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    r->res->verdict = LC_VERDICT_ERROR;
    vsnprintf(r->res->reason, sizeof r->res->reason, fmt, ap);
    va_end(ap);
}

int lc__ok(const lc__run *r)
{
    return r->res->verdict != LC_VERDICT_ERROR;
}

int lc__engine_ok(lc__run *r, int rc, const lc_error *err)
{
    if (rc == LC_OK)
        return 1;
    if (rc == LC_EENGINE) {
        r->engine_failed = 1;
        lc__set_error(r, "%s", err->msg);
    } else if (rc == LC_EUNSUPPORTED) {
        lc__set_error(r, "case '%s': harness asked for an operation the engine lacks: %s", r->c->name, err->msg);
    } else {
        lc__set_error(r, "case '%s': %s", r->c->name, err->msg);
    }
    return 0;
}

/* ---------------------------------------------------------------- bounds */

/* The bounds a comparison of class cls checks: a case's own bounds for the engine precision
 * override the golden and cross defaults; same and exact are the table's (bitwise).
 * Differential mode (runner.h): the case's own bounds hold only on its own checkpoint, and
 * for the golden class only against a float64 oracle (the goldens' situation); otherwise the
 * golden class takes the pair's bounds (the engine's precision against the oracle's). */
static const lc_bounds *bounds_for(const lc__run *r, lc_cmp_class cls, lc__data data)
{
    const int own = !r->o->model && r->prec >= 0 && r->prec < LC_PREC_COUNT && r->c->bounds[r->prec].present;
    if (cls == LC_CLASS_GOLDEN && lc__differential(r) && r->o->model) /* another checkpoint: scale-free */
        return lc_pair_bounds_any(r->prec, r->o->oracle_prec, data != LC__ROWS);
    if (cls == LC_CLASS_GOLDEN && lc__differential(r) && !(own && r->o->oracle_prec == LC_PREC_F64))
        return lc_pair_bounds(r->prec, r->o->oracle_prec, data != LC__ROWS);
    if ((cls == LC_CLASS_GOLDEN || cls == LC_CLASS_CROSS) && own)
        return &r->c->bounds[r->prec];
    return lc_default_bounds(cls, r->prec, data != LC__ROWS);
}

/* Metrics that make sense for a flat tensor (states, embeddings) or exact integers. */
static int elementwise_metric(lc_metric_id id)
{
    return id == LC_METRIC_MAX_ABS || id == LC_METRIC_MAX_REL || id == LC_METRIC_MAX_ABS_SCALED || id == LC_METRIC_ALLCLOSE_FAIL ||
           id == LC_METRIC_ALLCLOSE_FRAC || id == LC_METRIC_NMSE || id == LC_METRIC_MAX_ULP ||
           id == LC_METRIC_NONFINITE;
}

static void add_check(lc_comparison *cmp, lc_metric_id id, double bound)
{
    if (cmp->n_checks >= LC_MAX_CHECKS)
        return;
    lc_check *k = &cmp->checks[cmp->n_checks++];
    k->metric = id;
    k->bound = bound;
    k->value = lc_metric_value(&cmp->m, id);
    k->pass = lc_check_bound(id, k->value, bound, &k->margin);
    if (!k->pass)
        cmp->pass = 0;
}

/* ---------------------------------------------------------------- comparisons */

lc_comparison *lc__compare(lc__run *r, const char *id, const char *title, lc_cmp_class cls, lc__data data,
                           const char *actual, const char *expected, const double *a, const double *e, size_t P,
                           size_t W, const uint8_t *include, const uint8_t *kl_include)
{
    return lc__compare_bounded(r, id, title, cls, data, actual, expected, a, e, P, W, include, kl_include, NULL);
}

lc_comparison *lc__compare_bounded(lc__run *r, const char *id, const char *title, lc_cmp_class cls, lc__data data,
                                   const char *actual, const char *expected, const double *a, const double *e,
                                   size_t P, size_t W, const uint8_t *include, const uint8_t *kl_include,
                                   const lc_bounds *own)
{
    if (!a || !e)
        return NULL; /* an earlier step failed and set the error */
    lc_comparison *cmp = lc_case_add_cmp(r->res);
    if (!cmp) {
        lc__set_error(r, "out of memory recording comparison '%s'", id);
        return NULL;
    }
    const lc_bounds *b = own ? own : bounds_for(r, cls, data);
    snprintf(cmp->id, sizeof cmp->id, "%s", id);
    snprintf(cmp->cls, sizeof cmp->cls, "%s", lc_cmp_class_name(cls));
    snprintf(cmp->name, sizeof cmp->name, "%s", title);
    snprintf(cmp->actual, sizeof cmp->actual, "%s", actual);
    snprintf(cmp->expected, sizeof cmp->expected, "%s", expected);
    const int rows = data == LC__ROWS;
    lc_compare_opts opts = lc_compare_opts_default();
    opts.include = include;
    opts.kl_include = rows ? kl_include : NULL;
    opts.ulp = r->prec == LC_PREC_F64 ? LC_ULP_F64 : LC_ULP_F32;
    opts.topk = rows ? (b->topk ? b->topk : 5) : 0;
    if (b->has_atol)
        opts.atol = b->atol;
    if (b->has_rtol)
        opts.rtol = b->rtol;
    if (b->has_top1_margin)
        opts.top1_margin = b->top1_margin;
    if (lc_compare(&cmp->m, a, e, P, W, &opts) != 0) {
        lc__set_error(r, "comparison '%s': cannot compare (out of memory or bad shape)", id);
        return cmp;
    }
    cmp->pass = 1;
    /* a per-position curve only where it says something: several positions, not exact ints */
    cmp->curve = data != LC__INTS && P > 1 ? malloc(P * sizeof *cmp->curve) : NULL;
    if (cmp->curve) {
        cmp->n_curve = (int)P;
        for (size_t p = 0; p < P; p++) {
            double worst = include && !include[p] ? NAN : 0;
            for (size_t j = 0; !isnan(worst) && j < W; j++) {
                double d = fabs(a[p * W + j] - e[p * W + j]);
                worst = d > worst || isnan(d) ? d : worst;
            }
            cmp->curve[p] = worst;
        }
    }
    add_check(cmp, LC_METRIC_NONFINITE, 0);
    if (data == LC__INTS || cls == LC_CLASS_SAME || cls == LC_CLASS_EXACT || b->bitwise) {
        add_check(cmp, LC_METRIC_MAX_ABS, 0);
        return cmp;
    }
    for (int i = 0; i < b->n_items; i++) {
        lc_metric_id m = lc_metric_from_name(b->items[i].name);
        if (m == LC_METRIC_UNKNOWN || m == LC_METRIC_NONFINITE)
            continue;
        if (data == LC__FLAT && !elementwise_metric(m))
            continue;
        add_check(cmp, m, b->items[i].value);
    }
    return cmp;
}

void lc__compare_ints(lc__run *r, const char *id, const char *title, const char *actual, const char *expected,
                      const int64_t *a, const int64_t *e, size_t P, size_t W)
{
    if (!a || !e)
        return;
    double *da = lc__alloc(r, (P * W + 1) * sizeof *da), *de = lc__alloc(r, (P * W + 1) * sizeof *de);
    for (size_t i = 0; da && de && i < P * W; i++) {
        da[i] = (double)a[i];
        de[i] = (double)e[i];
    }
    if (da && de)
        lc__compare(r, id, title, LC_CLASS_EXACT, LC__INTS, actual, expected, da, de, P, W, NULL, NULL);
}

void lc__note_missing(lc__run *r, lc_cap cap)
{
    lc__note_missing_name(r, lc_cap_name(cap));
}

void lc__note_missing_name(lc__run *r, const char *name)
{
    char *nc = r->res->not_compared;
    const size_t len = strlen(nc), n = strlen(name);
    for (const char *p = nc; *p;) { /* already noted? */
        const char *end = strchr(p, ',');
        const size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == n && !strncmp(p, name, n))
            return;
        p = end ? end + 1 : p + l;
    }
    if (len + n + 2 <= sizeof r->res->not_compared)
        snprintf(nc + len, sizeof r->res->not_compared - len, "%s%s", len ? "," : "", name);
}

void lc__compare_states(lc__run *r, const char *id, const char *title, lc_cmp_class cls, const char *actual,
                        const char *expected, int seq_a, int seq_b)
{
    if (!lc__has(r, LC_CAP_STATE)) {
        lc__note_missing(r, LC_CAP_STATE);
        return;
    }
    if (!lc__ok(r))
        return;
    lc_state sa = {0}, sb = {0};
    lc_error err = {0};
    if (!lc__engine_ok(r, lc_engine_state(r->e, seq_a, &sa, &err), &err) ||
        !lc__engine_ok(r, lc_engine_state(r->e, seq_b, &sb, &err), &err)) {
        lc_state_free(&sa);
        lc_state_free(&sb);
        return;
    }
    if (!lc__own(r, sa.data)) {
        lc_state_free(&sb);
        return;
    }
    if (!lc__own(r, sb.data))
        return;
    if (sa.len != sb.len) {
        /* a sequence that took in more (or fewer) tokens than it should: a failed exact check */
        char lid[80], what[160];
        int64_t la = sa.len, lb = sb.len;
        snprintf(lid, sizeof lid, "%s.len", id);
        snprintf(what, sizeof what, "%s: cached tokens", title);
        lc__compare_ints(r, lid, what, actual, expected, &la, &lb, 1, 1);
        return;
    }
    if (sa.n != sb.n) {
        lc__set_error(r, "comparison '%s': states of %zu and %zu values for %d tokens", id, sa.n, sb.n, sa.len);
        return;
    }
    lc__compare(r, id, title, cls, LC__FLAT, actual, expected, sa.data, sb.data, 1, sa.n, NULL, NULL);
}
