/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the report writers (see report_util.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report_util.h"
#include "reports.h"

/* ---------------------------------------------------------------- numbers */

const char *lc__num(char buf[LC__NUM_LEN], double x)
{
    if (isnan(x))
        return strcpy(buf, "nan");
    if (isinf(x))
        return strcpy(buf, x > 0 ? "inf" : "-inf");
    const double ax = fabs(x);
    if (ax == 0)
        return strcpy(buf, "0");
    if (ax < 1e9 && x == floor(x)) {
        snprintf(buf, LC__NUM_LEN, "%.0f", x);
    } else if (ax >= 1e-2 && ax < 1e5) {
        /* more digits where three would round a fraction near 1 (cosine 0.99999) to 1 */
        for (int prec = 3; prec <= 17; prec++) {
            snprintf(buf, LC__NUM_LEN, "%.*g", prec, x);
            if (!(ax > 0.99 && ax < 1) || fabs(strtod(buf, NULL)) < 1)
                break;
        }
    } else {
        /* "%.2e" then drop trailing zeros of the mantissa: 5.00e-04 -> 5e-04 */
        char tmp[LC__NUM_LEN];
        snprintf(tmp, sizeof tmp, "%.2e", x);
        char *e = strchr(tmp, 'e');
        char *m = e;
        while (m > tmp && m[-1] == '0')
            m--;
        if (m > tmp && m[-1] == '.')
            m--;
        snprintf(buf, LC__NUM_LEN, "%.*s%s", (int)(m - tmp), tmp, e);
    }
    return buf;
}

const char *lc__pct(char buf[LC__NUM_LEN], double rel)
{
    if (isnan(rel))
        return strcpy(buf, "nan");
    if (isinf(rel))
        return strcpy(buf, rel > 0 ? "inf%" : "-inf%");
    const double p = rel * 100.0;
    if (p != 0 && fabs(p) < 0.995)
        snprintf(buf, LC__NUM_LEN, "%.2g%%", p);
    else if (fabs(p) < 1e4)
        snprintf(buf, LC__NUM_LEN, "%.0f%%", p);
    else /* far past the bound: "-9.44e+05%" */
        snprintf(buf, LC__NUM_LEN, "%.3g%%", p);
    return buf;
}

const char *lc__left(char buf[LC__NUM_LEN], const lc_check *k)
{
    const int no_budget = lc_metric_direction(k->metric) == LC_BOUND_UPPER ? !(k->bound > 0)
                                                                           : !(k->bound < 1);
    const double rel = lc_check_rel_margin(k);
    if (no_budget && !isnan(rel))
        return strcpy(buf, rel > 0 ? "exact" : "");
    return lc__pct(buf, rel);
}

/* ---------------------------------------------------------------- text */

int lc__utf8_len(const unsigned char *s)
{
    const unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL terminator */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0; /* overlong, out of range, or a surrogate */
    return n;
}

void lc__put_xml(FILE *f, const char *s, int in_attr)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const unsigned char c = *p;
        if (c >= 0x80) {
            const int n = lc__utf8_len(p);
            if (n == 0) {
                fputc('?', f);
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            }
            continue;
        }
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\t': fputc('\t', f); break;
        case '\n': fputs(in_attr ? "&#10;" : "\n", f); break;
        case '\r': fputs(in_attr ? "&#13;" : "\r", f); break;
        default: fputc(c < 0x20 ? '?' : c, f); break;
        }
        p++;
    }
}

void lc__put_line(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
}

/* ---------------------------------------------------------------- checks */

const char *lc__relation(lc_metric_id id, int pass)
{
    if (lc_metric_direction(id) == LC_BOUND_UPPER)
        return pass ? "<=" : ">";
    return pass ? ">=" : "<";
}

const char *lc__margin(char buf[LC__MARGIN_LEN], const lc_check *k)
{
    char a[LC__NUM_LEN], b[LC__NUM_LEN];
    if (isnan(k->value) || isnan(k->bound))
        return strcpy(buf, "nan");
    const int upper = lc_metric_direction(k->metric) == LC_BOUND_UPPER;
    if (k->pass) {
        lc__left(a, k);
        if (strcmp(a, "exact") == 0)
            return strcpy(buf, "exact");
        snprintf(buf, LC__MARGIN_LEN, "margin %s", a);
        return buf;
    }
    if (upper) {
        if (k->bound > 0 && isfinite(k->bound) && isfinite(k->value))
            snprintf(buf, LC__MARGIN_LEN, "%sx the bound", lc__num(a, k->value / k->bound));
        else
            snprintf(buf, LC__MARGIN_LEN, "over by %s, none allowed", lc__num(a, k->value - k->bound));
        return buf;
    }
    const double shortfall = 1.0 - k->value, allowed = 1.0 - k->bound;
    if (allowed > 0)
        snprintf(buf, LC__MARGIN_LEN, "%sx the allowed shortfall", lc__num(a, shortfall / allowed));
    else
        snprintf(buf, LC__MARGIN_LEN, "shortfall %s, none allowed", lc__num(b, shortfall));
    return buf;
}

int lc__is_stage_cmp(const lc_comparison *c)
{
    return strncmp(c->id, "hidden", 6) == 0;
}

const char *lc__stage_name(char *buf, size_t n, size_t stage)
{
    if (stage == 0)
        snprintf(buf, n, "the embedding");
    else
        snprintf(buf, n, "layer %zu", stage - 1);
    return buf;
}

int lc__first_divergence(const lc_comparison *c, double *value, double *bound)
{
    if (!lc__is_stage_cmp(c) || c->curve == NULL)
        return -1;
    double b = NAN;
    for (int q = 0; q < c->n_checks; q++)
        if (c->checks[q].metric == LC_METRIC_MAX_ABS)
            b = c->checks[q].bound;
    if (isnan(b))
        return -1;
    for (int s = 0; s < c->n_curve; s++) {
        if (c->curve[s] > b || isnan(c->curve[s])) { /* no stage is ever excluded: NaN is non-finite */
            *value = c->curve[s];
            *bound = b;
            return s;
        }
    }
    return -1;
}

const char *lc__where(char *buf, size_t n, const lc_comparison *c, lc_metric_id id)
{
    const lc_metrics *m = &c->m;
    const int logits = m->topk > 0 || strstr(c->name, "logits") || strstr(c->actual, "logits") ||
                       strstr(c->expected, "logits");
    const char *unit = logits ? "token" : "index";
    size_t pos = LC_NO_POS, idx = LC_NO_POS;
    const char *lead = "at";
    switch (id) {
    case LC_METRIC_MAX_ABS:
    case LC_METRIC_MAX_ABS_SCALED: pos = m->max_abs_pos; idx = m->max_abs_index; break;
    case LC_METRIC_MAX_REL: pos = m->max_rel_pos; idx = m->max_rel_index; break;
    case LC_METRIC_ALLCLOSE_FAIL:
    case LC_METRIC_ALLCLOSE_FRAC:
        pos = m->allclose_first_pos;
        idx = m->allclose_first_index;
        lead = "first at";
        break;
    case LC_METRIC_MAX_ULP: pos = m->max_ulp_pos; idx = m->max_ulp_index; break;
    case LC_METRIC_MIN_COSINE: pos = m->min_cosine_pos; break;
    case LC_METRIC_KL_MAX: pos = m->kl_max_pos; break;
    case LC_METRIC_KL_MEAN:
    case LC_METRIC_KL_P999:
        pos = m->kl_max_pos;
        lead = "worst at";
        break;
    case LC_METRIC_TOP1_AGREE_MARGIN:
        if (m->top1_margin_first_flip_pos != LC_NO_POS) {
            snprintf(buf, n, "first flip beyond the margin at pos %zu", m->top1_margin_first_flip_pos);
            return buf;
        }
        break;
    case LC_METRIC_TOP1_AGREE:
        if (m->top1_first_mismatch_pos != LC_NO_POS) {
            snprintf(buf, n, "first at pos %zu (argmax %zu, expected %zu)",
                     m->top1_first_mismatch_pos, m->top1_first_mismatch_actual,
                     m->top1_first_mismatch_expected);
            return buf;
        }
        break;
    case LC_METRIC_TOPK_OVERLAP_MIN: pos = m->topk_min_pos; break;
    case LC_METRIC_TOPK_OVERLAP_MEAN:
        pos = m->topk_min_pos;
        lead = "worst at";
        break;
    case LC_METRIC_NONFINITE:
        pos = m->nonfinite_pos;
        idx = m->nonfinite_index;
        lead = "first at";
        break;
    case LC_METRIC_NMSE:
    case LC_METRIC_SCALE_BIAS: /* over every row: no one place */
    case LC_METRIC_UNKNOWN:
    case LC_METRIC_COUNT:
        break;
    }
    if (pos == LC_NO_POS && m->nonfinite_pos != LC_NO_POS && id != LC_METRIC_UNKNOWN &&
        isnan(lc_metric_value(m, id))) {
        pos = m->nonfinite_pos;
        idx = m->nonfinite_index;
        lead = "first non-finite at";
    }
    if (pos != LC_NO_POS && lc__is_stage_cmp(c)) { /* positions are stages, not prompt positions */
        char st[32], ix[40] = "";
        lc__stage_name(st, sizeof st, pos);
        if (idx != LC_NO_POS)
            snprintf(ix, sizeof ix, ", index %zu", idx);
        snprintf(buf, n, "%s stage %zu (after %s)%s", lead, pos, st, ix);
        return buf;
    }
    if (pos == LC_NO_POS)
        buf[0] = '\0';
    else if (idx == LC_NO_POS)
        snprintf(buf, n, "%s pos %zu", lead, pos);
    else
        snprintf(buf, n, "%s pos %zu, %s %zu", lead, pos, unit, idx);
    return buf;
}

/* ---------------------------------------------------------------- what moved */

double lc__move_ratio(lc_metric_id id, double base, double value)
{
    if (lc_metric_direction(id) == LC_BOUND_LOWER) { /* compare the shortfalls from 1 */
        base = 1.0 - base;
        value = 1.0 - value;
    }
    if (isnan(base) || isnan(value))
        return isnan(base) && isnan(value) ? 1.0 : NAN;
    if (base == value)
        return 1.0;
    if (base == 0)
        return INFINITY;
    return value / base;
}

typedef struct {
    lc__move *v;
    size_t n, cap;
} moves;

static int push(moves *m, const lc__move *row)
{
    if (m->n == m->cap) {
        const size_t cap = m->cap ? 2 * m->cap : 64;
        lc__move *p = realloc(m->v, cap * sizeof *p);
        if (p == NULL)
            return ENOMEM;
        m->v = p;
        m->cap = cap;
    }
    m->v[m->n++] = *row;
    return 0;
}

static const lc_case_result *find_case(const lc_run_result *r, const char *name)
{
    for (int i = 0; i < r->n_cases; i++)
        if (strcmp(r->cases[i].name, name) == 0)
            return &r->cases[i];
    return NULL;
}

/* The comparison with this stable id (never matched by its title, which may be reworded). */
static const lc_comparison *find_cmp(const lc_case_result *c, const char *id)
{
    for (int j = 0; j < c->n_cmps; j++)
        if (strcmp(c->cmps[j].id, id) == 0)
            return &c->cmps[j];
    return NULL;
}

static const lc_check *find_check(const lc_comparison *k, lc_metric_id id)
{
    for (int i = 0; i < k->n_checks; i++)
        if (k->checks[i].metric == id)
            return &k->checks[i];
    return NULL;
}

static lc__move row_init(const lc_case_result *c, const lc_case_result *bc)
{
    lc__move row;
    memset(&row, 0, sizeof row);
    row.c = c;
    row.bc = bc;
    row.metric = LC_METRIC_UNKNOWN;
    row.value = row.base = row.ratio = NAN;
    row.pass = row.base_pass = -1;
    return row;
}

double lc__noise_band(lc_metric_id id, double bound)
{
    const double budget = lc_metric_direction(id) == LC_BOUND_UPPER ? bound : 1.0 - bound;
    return budget > 0 && isfinite(budget) ? budget / 4 : 0;
}

/* Regressed: the error (the value, or its shortfall from 1 for lower bounds) grew by more
 * than the band, became NaN, or the check went from pass to fail; improved: the reverse. */
static void classify(lc__move *row)
{
    const int lower = lc_metric_direction(row->metric) == LC_BOUND_LOWER;
    const double e_new = lower ? 1.0 - row->value : row->value;
    const double e_base = lower ? 1.0 - row->base : row->base;
    lc__change ch = LC__UNCHANGED;
    if (isnan(e_new) != isnan(e_base))
        ch = isnan(e_new) ? LC__REGRESSED : LC__IMPROVED;
    else if (!isnan(e_new) && e_new != e_base) {
        const double d = e_new - e_base; /* inf - inf is excluded by e_new != e_base */
        if (d > row->band || isnan(d))
            ch = LC__REGRESSED;
        else if (-d > row->band)
            ch = LC__IMPROVED;
    }
    if (row->pass >= 0 && row->base_pass >= 0 && row->pass != row->base_pass) {
        row->flags |= LC__VERDICT_CHANGED;
        ch = row->pass ? LC__IMPROVED : LC__REGRESSED;
    }
    if (ch != LC__UNCHANGED)
        row->flags |= LC__MOVED;
    row->change = ch;
}

/* One row per metric checked in k or bk (k's order first). */
static int metric_rows(moves *m, const lc_case_result *c, const lc_case_result *bc,
                       const lc_comparison *k, const lc_comparison *bk)
{
    for (int side = 0; side < 2; side++) {
        const lc_comparison *from = side == 0 ? k : bk;
        for (int i = 0; i < from->n_checks; i++) {
            const lc_metric_id id = from->checks[i].metric;
            if (side == 1 && find_check(k, id) != NULL)
                continue; /* already listed */
            const lc_check *nk = find_check(k, id), *bkk = find_check(bk, id);
            lc__move row = row_init(c, bc);
            row.k = k;
            row.bk = bk;
            row.metric = id;
            row.value = nk ? nk->value : lc_metric_value(&k->m, id);
            row.base = bkk ? bkk->value : lc_metric_value(&bk->m, id);
            row.pass = nk ? nk->pass : -1;
            row.base_pass = bkk ? bkk->pass : -1;
            row.ratio = lc__move_ratio(id, row.base, row.value);
            row.band = lc__noise_band(id, nk ? nk->bound : bkk->bound);
            classify(&row);
            if (push(m, &row))
                return ENOMEM;
        }
    }
    return 0;
}

int lc__moves_build(const lc_run_result *r, const lc_run_result *base, lc__move **rows,
                    size_t *n)
{
    moves m = {NULL, 0, 0};
    lc__move row;
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        const lc_case_result *bc = find_case(base, c->name);
        if (bc == NULL)
            continue;
        row = row_init(c, bc);
        if (c->verdict != bc->verdict)
            row.flags = LC__VERDICT_CHANGED;
        if (push(&m, &row))
            goto oom;
        for (int j = 0; j < c->n_cmps; j++) {
            const lc_comparison *k = &c->cmps[j], *bk = find_cmp(bc, k->id);
            if (bk == NULL) {
                row = row_init(c, bc);
                row.k = k;
                if (push(&m, &row))
                    goto oom;
            } else if (metric_rows(&m, c, bc, k, bk)) {
                goto oom;
            }
        }
        for (int j = 0; j < bc->n_cmps; j++) {
            if (find_cmp(c, bc->cmps[j].id) != NULL)
                continue;
            row = row_init(c, bc);
            row.bk = &bc->cmps[j];
            if (push(&m, &row))
                goto oom;
        }
    }
    for (int i = 0; i < r->n_cases; i++) {
        if (find_case(base, r->cases[i].name) != NULL)
            continue;
        row = row_init(&r->cases[i], NULL);
        if (push(&m, &row))
            goto oom;
    }
    for (int i = 0; i < base->n_cases; i++) {
        if (find_case(r, base->cases[i].name) != NULL)
            continue;
        row = row_init(NULL, &base->cases[i]);
        if (push(&m, &row))
            goto oom;
    }
    *rows = m.v;
    *n = m.n;
    return 0;
oom:
    free(m.v);
    *rows = NULL;
    *n = 0;
    return ENOMEM;
}

/* ---------------------------------------------------------------- the base run (reports.h) */

int lc_report_base_counts(const lc_run_result *r, const lc_run_result *base, lc_base_counts *out, lc_error *err)
{
    lc__move *rows = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    if (lc__moves_build(r, base, &rows, &n))
        return lc_fail(err, LC_EINTERNAL, "out of memory comparing with the base run");
    for (size_t i = 0; i < n; i++) {
        if (rows[i].metric == LC_METRIC_UNKNOWN)
            continue;
        out->regressed += rows[i].change == LC__REGRESSED;
        out->improved += rows[i].change == LC__IMPROVED;
        out->unchanged += rows[i].change == LC__UNCHANGED;
    }
    free(rows);
    return LC_OK;
}

int lc_report_base_compatible(const lc_run_result *r, const lc_run_result *base, const char *base_path,
                              lc_error *err)
{
    if (strcmp(r->engine_precision, base->engine_precision) != 0)
        return lc_fail(err, LC_EINPUT,
                       "%s: a base run of engine precision %s, this run's engine is %s (bounds and noise differ; "
                       "--base-mismatch-ok compares anyway)",
                       base_path, base->engine_precision[0] ? base->engine_precision : "?", r->engine_precision);
    if (r->catalog[0] && base->catalog[0] && strcmp(r->catalog, base->catalog) != 0)
        return lc_fail(err, LC_EINPUT,
                       "%s: a base run of another catalog (case files sha256 %.12s..., this run %.12s...; "
                       "--base-mismatch-ok compares anyway)",
                       base_path, base->catalog, r->catalog);
    return LC_OK;
}
