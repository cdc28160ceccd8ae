/* SPDX-License-Identifier: MIT */
/*
 * The diagnosis every report leads with (report_util.h): which comparison classes fail and
 * which pass, and what that says; the first diverging stage in words; the worst location.
 *
 * Classes: "golden" compares the engine with transformers (or autograd); "cross", "same" and
 * "exact" compare the engine with itself (another schedule, the same schedule, integers):
 * self-consistency. Failures only against the golden mean the algorithm differs; failures only
 * in self-consistency mean state, cache, batch or schedule handling.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report_util.h"
#include "reports.h"

static int is_golden(const lc_comparison *k)
{
    return strcmp(k->cls, "golden") == 0;
}

const lc_check *lc__worst_failing(const lc_comparison *k)
{
    const lc_check *w = NULL;
    for (int q = 0; q < k->n_checks; q++) {
        const lc_check *c = &k->checks[q];
        if (c->pass)
            continue;
        if (c->metric == LC_METRIC_MAX_ABS)
            return c;
        if (w == NULL || lc_check_worse(c, w))
            w = c;
    }
    return w;
}

/* Whether check a is a worse failure than b for the reader: a max_abs failure (place and size)
 * before others, then the larger overshoot. */
static int worse_failure(const lc_check *a, const lc_check *b)
{
    if (b == NULL)
        return 1;
    const int ma = a->metric == LC_METRIC_MAX_ABS, mb = b->metric == LC_METRIC_MAX_ABS;
    if (ma != mb)
        return ma;
    return lc_check_worse(a, b);
}

/* "chunk5.state" -> "chunkN.state", "grad_w/linear_attn.x" -> "grad_w". */
static void cause_of(char *out, size_t n, const char *id)
{
    size_t j = 0;
    for (const char *p = id; *p && *p != '/' && j + 1 < n; p++) {
        if (*p >= '0' && *p <= '9') {
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            out[j++] = 'N';
        } else {
            out[j++] = *p;
        }
    }
    out[j] = '\0';
}

static void add_name(char *list, size_t n, const char *name)
{
    const size_t len = strlen(list);
    if (len + 4 >= n || strstr(list, "...") != NULL)
        return;
    if (len + strlen(name) + 6 >= n) {
        snprintf(list + len, n - len, "%s...", len ? ", " : "");
        return;
    }
    snprintf(list + len, n - len, "%s%s", len ? ", " : "", name);
}

static void add_cause(lc__diag *d, const lc_case_result *c, const lc_comparison *k, const lc_check *w,
                      int n_failing)
{
    char cause[64];
    cause_of(cause, sizeof cause, k->id[0] ? k->id : k->name);
    lc__cause *g = NULL;
    for (int i = 0; i < d->n_causes; i++)
        if (!strcmp(d->causes[i].cause, cause) && !strcmp(d->causes[i].cls, k->cls))
            g = &d->causes[i];
    if (g == NULL) {
        if (d->n_causes == LC__MAX_CAUSES) {
            d->more_causes++;
            return;
        }
        g = &d->causes[d->n_causes++];
        memset(g, 0, sizeof *g);
        snprintf(g->cause, sizeof g->cause, "%s", cause);
        snprintf(g->cls, sizeof g->cls, "%s", k->cls);
    }
    if (g->last != c) { /* comparisons of one case come together: count the case once */
        g->last = c;
        g->n_cases++;
        add_name(g->cases, sizeof g->cases, c->name);
    }
    g->n_checks += n_failing;
    if (worse_failure(w, g->worst)) {
        g->worst = w;
        g->c = c;
        g->k = k;
    }
}

/* ---------------------------------------------------------------- the sentences */

#define APPEND(...)                                                                                \
    do {                                                                                           \
        size_t len_ = strlen(d->text);                                                             \
        if (len_ < sizeof d->text)                                                                 \
            snprintf(d->text + len_, sizeof d->text - len_, __VA_ARGS__);                          \
    } while (0)

static void classes_sentence(lc__diag *d)
{
    const int nf = d->counts[LC_VERDICT_FAIL];
    char lead[48];
    if (nf == 1)
        snprintf(lead, sizeof lead, "The one failure is");
    else
        snprintf(lead, sizeof lead, "All %d failures are", nf);
    if (nf == 0) {
        if (d->counts[LC_VERDICT_ERROR])
            APPEND("No case failed its bounds; %d ended in error (see Errors). ", d->counts[LC_VERDICT_ERROR]);
        else
            APPEND("Every comparison holds its bound: against transformers (%d cases) and self-consistency "
                   "(%d cases). ", d->cases_golden, d->cases_self);
        return;
    }
    if (d->fail_golden && !d->fail_self)
        APPEND("%s against transformers; every self-consistency comparison passes (%d cases with one): the "
               "algorithm changed, not the cache, batch or schedule handling. ",
               lead, d->cases_self);
    else if (d->fail_self && !d->fail_golden)
        APPEND("%s in self-consistency comparisons and every comparison against transformers passes (%d cases "
               "with one): the engine disagrees with itself across schedules or states (cache, batching, "
               "snapshots), not in the algorithm. ", lead, d->cases_golden);
    else
        APPEND("%d cases fail against transformers and %d fail a self-consistency comparison: the algorithm "
               "differs, and state or schedule handling may too (fix the golden failures first, then rerun). ",
               d->fail_golden, d->fail_self);
}

static void stage_sentence(lc__diag *d)
{
    char st[32], v[LC__NUM_LEN], b[LC__NUM_LEN];
    if (d->stage >= 0) {
        lc__stage_name(st, sizeof st, (size_t)d->stage);
        APPEND("First divergence: %s %s (hidden state max |a-e| %s vs bound %s, %s); %d of %d failing cases "
               "with a stage check diverge first there. ",
               d->stage == 0 ? "at" : "after", st, lc__num(v, d->stage_value), lc__num(b, d->stage_bound),
               d->stage_case->name, d->stage_cases, d->stage_checked);
    } else if (d->stage_checked > 0) {
        APPEND("The hidden states after the embedding and every layer hold their bound in all %d failing "
               "cases with a stage check: the difference enters after the last layer (final norm, lm_head) "
               "or is below the stage bound. ", d->stage_checked);
    }
}

static void worst_sentence(lc__diag *d, const lc_run_result *r)
{
    char v[LC__NUM_LEN], m[LC__MARGIN_LEN], w[160];
    if (d->worst == NULL) { /* nothing failed: the check closest to its bound */
        const lc_check *t = NULL;
        const lc_comparison *tk = NULL;
        const lc_case_result *tc = NULL;
        for (int i = 0; i < r->n_cases; i++) {
            const lc_comparison *k = NULL;
            const lc_check *q = lc_case_tightest(&r->cases[i], &k);
            if (q != NULL && (t == NULL || lc_check_worse(q, t))) {
                t = q;
                tk = k;
                tc = &r->cases[i];
            }
        }
        if (t != NULL)
            APPEND("Tightest: %s, %s %s %s (%s).", tc->name, tk->id[0] ? tk->id : tk->name, lc_metric_name(t->metric),
                   lc__num(v, t->value), lc__margin(m, t));
        return;
    }
    lc__where(w, sizeof w, d->worst_k, d->worst->metric);
    APPEND("Worst: %s, %s %s %s (%s)%s%s.", d->worst_c->name, d->worst_k->id[0] ? d->worst_k->id : d->worst_k->name,
           lc_metric_name(d->worst->metric), lc__num(v, d->worst->value), lc__margin(m, d->worst), w[0] ? " " : "",
           w);
}

/* ---------------------------------------------------------------- the whole */

void lc__diagnose(const lc_run_result *r, lc__diag *d)
{
    memset(d, 0, sizeof *d);
    d->stage = -1;
    lc_run_counts(r, d->counts);
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        int has_g = 0, has_s = 0, fail_g = 0, fail_s = 0, first = -1;
        double fv = NAN, fb = NAN;
        int stage_checked = 0;
        for (int j = 0; j < c->n_cmps; j++) {
            const lc_comparison *k = &c->cmps[j];
            const int g = is_golden(k);
            has_g |= g;
            has_s |= !g;
            if (c->verdict == LC_VERDICT_FAIL && lc__is_stage_cmp(k) && k->curve != NULL) {
                double v, b;
                stage_checked = 1;
                const int s = lc__first_divergence(k, &v, &b);
                if (s >= 0 && (first < 0 || s < first)) {
                    first = s;
                    fv = v;
                    fb = b;
                }
            }
            const lc_check *w = lc__worst_failing(k);
            if (w == NULL)
                continue;
            fail_g |= g;
            fail_s |= !g;
            int nfail = 0;
            for (int q = 0; q < k->n_checks; q++)
                nfail += !k->checks[q].pass;
            add_cause(d, c, k, w, nfail);
            if (worse_failure(w, d->worst)) {
                d->worst = w;
                d->worst_c = c;
                d->worst_k = k;
            }
        }
        d->cases_golden += has_g;
        d->cases_self += has_s;
        if (c->verdict != LC_VERDICT_FAIL)
            continue;
        d->fail_golden += fail_g;
        d->fail_self += fail_s;
        d->stage_checked += stage_checked;
        if (first >= 0 && (d->stage < 0 || first < d->stage)) {
            d->stage = first;
            d->stage_value = fv;
            d->stage_bound = fb;
            d->stage_case = c;
            d->stage_cases = 0;
        }
        if (first >= 0 && first == d->stage)
            d->stage_cases++;
    }
    const int *n = d->counts;
    char skipped[32] = "";
    if (n[LC_VERDICT_SKIP])
        snprintf(skipped, sizeof skipped, ", %d skipped", n[LC_VERDICT_SKIP]);
    if (n[LC_VERDICT_FAIL])
        snprintf(d->verdict, sizeof d->verdict, "FAIL: %d of %d cases failed (%d passed, %d errors%s)",
                 n[LC_VERDICT_FAIL], r->n_cases, n[LC_VERDICT_PASS], n[LC_VERDICT_ERROR], skipped);
    else if (n[LC_VERDICT_ERROR])
        snprintf(d->verdict, sizeof d->verdict, "ERROR: %d of %d cases ended in error (%d passed%s)",
                 n[LC_VERDICT_ERROR], r->n_cases, n[LC_VERDICT_PASS], skipped);
    else
        snprintf(d->verdict, sizeof d->verdict, "PASS: %d of %d cases passed%s", n[LC_VERDICT_PASS], r->n_cases,
                 skipped);
    classes_sentence(d);
    stage_sentence(d);
    worst_sentence(d, r);
}

const char *lc_report_first_stage(const lc_run_result *r, char *buf, size_t n)
{
    lc__diag d;
    char st[32], v[LC__NUM_LEN], b[LC__NUM_LEN];
    lc__diagnose(r, &d);
    if (d.stage < 0)
        snprintf(buf, n, "no stage diverges (%d failing cases with a stage check): the difference enters after "
                 "the last layer or outside the stage checks", d.stage_checked);
    else
        snprintf(buf, n, "%s: %s %s (hidden state max |a-e| %s vs bound %s)", d.stage_case->name,
                 d.stage == 0 ? "at" : "after", lc__stage_name(st, sizeof st, (size_t)d.stage),
                 lc__num(v, d.stage_value), lc__num(b, d.stage_bound));
    return buf;
}
