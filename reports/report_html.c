/* SPDX-License-Identifier: MIT */
/*
 * The HTML report (see reports.h): one self-contained file. Inline CSS, a small inline script
 * that sorts a table by a click on a column head, plots as inline SVG (plot_svg.c): it opens
 * from a CI artifact or a mail attachment as is.
 *
 * Page: the verdict and run line; the diagnosis; failures by cause; every failing check;
 * errors; against a base run: regressed, improved, unchanged (each its own section and
 * colour); the case table; one section per case with its comparisons: the checks coloured by
 * pass or fail (with base value and change), the plot, every measured metric, folded.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plot_svg.h"
#include "report_util.h"
#include "reports.h"

#define H(s) lc__put_xml(f, (s), 0)

static const char *const css =
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em 2em;color:#222;max-width:1200px}"
    "h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}"
    "h3{margin-bottom:.3em}h4{margin:1em 0 .3em}"
    "table{border-collapse:collapse;margin:.4em 0 1em}"
    "th,td{border:1px solid #d0d0d0;padding:2px 8px;text-align:left;vertical-align:top}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "th{background:#f4f4f4}table.sort th{cursor:pointer}table.sort th:after{content:' \\2195';color:#aaa}"
    ".meta,small{color:#666}p.diag{font-size:1.05em;background:#f6f8fa;padding:.6em .9em;border-left:4px solid #888}"
    "tr.pass td,span.pass{background:#e6f4ea}tr.fail td,span.fail{background:#fce8e6}"
    "tr.error td,span.error{background:#fef3e0}tr.skip td,span.skip{background:#eee}"
    "tr.regressed td{background:#fce8e6}tr.improved td{background:#e6f4ea}tr.unchanged td{color:#555}"
    "h2.regressed{color:#b3261e}h2.improved{color:#188038}h2.unchanged{color:#555}"
    "span.badge{padding:1px 6px;border-radius:3px;font-size:.85em;font-weight:bold}"
    "section.case{margin:1.2em 0;padding:.2em 1em .6em;border-left:4px solid #ccc}"
    "section.fail{border-color:#d93025}section.error{border-color:#f29900}"
    "section.pass{border-color:#188038}.flag{font-weight:bold;color:#b3261e}"
    "figure{margin:.4em 0}figcaption{color:#555;font-size:.9em;max-width:680px}"
    "code{background:#f4f4f4;padding:0 3px}"
    "svg.plot{font:12px system-ui,sans-serif;background:#fff}svg.plot .area{fill:#fcfcfc;stroke:#999}"
    "svg.plot .grid{stroke:#e3e3e3}svg.plot .axis{stroke:#999}svg.plot .tick{fill:#444}"
    "svg.plot .title{fill:#222;font-size:12.5px}svg.plot .curve polyline{fill:none;stroke:#1a73e8;stroke-width:1.4}"
    "svg.plot .base polyline{fill:none;stroke:#aaa;stroke-width:1.4}svg.plot circle.in{fill:#1a73e8}"
    "svg.plot circle.above{fill:#d93025}svg.plot .bound{stroke:#d93025;stroke-dasharray:6 4;stroke-width:1.2}"
    "svg.plot .blabel{fill:#d93025}";

/* Sorts a table.sort by the clicked column: by the cells' data-v numbers when both have one,
 * else by their text; a second click reverses. */
static const char *const script =
    "document.querySelectorAll('table.sort').forEach(function(t){"
    "t.querySelectorAll('thead th').forEach(function(th,i){th.title='sort';th.addEventListener('click',function(){"
    "var b=t.tBodies[0],r=Array.prototype.slice.call(b.rows),d=th.dataset.d==='1'?-1:1;th.dataset.d=d===1?'1':'0';"
    "r.sort(function(x,y){var a=x.cells[i],c=y.cells[i];if(!a||!c)return 0;"
    "var p=parseFloat(a.dataset.v),q=parseFloat(c.dataset.v);"
    "if(!isNaN(p)&&!isNaN(q))return d*(p-q);return d*a.textContent.localeCompare(c.textContent);});"
    "r.forEach(function(x){b.appendChild(x);});});});});";

/* ---------------------------------------------------------------- small pieces */

static void num_td(FILE *f, double x)
{
    char b[LC__NUM_LEN];
    if (isnan(x))
        fprintf(f, "<td class=\"n\">%s</td>", lc__num(b, x));
    else if (isinf(x))
        fprintf(f, "<td class=\"n\" data-v=\"%s\">%s</td>", x > 0 ? "Infinity" : "-Infinity", lc__num(b, x));
    else
        fprintf(f, "<td class=\"n\" data-v=\"%.6g\">%s</td>", x, lc__num(b, x));
}

static const char *upper_verdict(lc_verdict v)
{
    static const char *const w[] = {"PASS", "FAIL", "ERROR", "SKIP"};
    return (int)v >= 0 && (int)v < 4 ? w[v] : "?";
}

static void badge(FILE *f, lc_verdict v)
{
    fprintf(f, "<span class=\"badge %s\">%s</span>", lc_verdict_name(v), upper_verdict(v));
}

static void run_line(FILE *f, const char *what, const lc_run_result *r)
{
    char b[LC__NUM_LEN];
    fprintf(f, "<p class=\"meta\">%s", what);
    fputs("logitcheck ", f);
    H(r->version[0] ? r->version : "?");
    fputs(" · engine ", f);
    if (r->engine[0]) {
        H(r->engine);
        fputs(" ", f);
    }
    H(r->engine_precision);
    if (r->engine_detail[0]) {
        fputs(" (", f);
        H(r->engine_detail);
        fputs(")", f);
    }
    if (r->git[0]) {
        fputs(" · git <code>", f);
        H(r->git);
        fputs("</code>", f);
    }
    if (r->host[0]) {
        fputs(" · host ", f);
        H(r->host);
    }
    if (r->started[0]) {
        fputs(" · started ", f);
        H(r->started);
    }
    fprintf(f, " · %d cases in %s s</p>\n", r->n_cases, lc__num(b, r->seconds));
}

/* Value, bound and margin as three cells; the margin cell sorts by the relative margin. */
static void check_tds(FILE *f, const lc_check *k)
{
    char b[LC__NUM_LEN], m[LC__MARGIN_LEN];
    num_td(f, k->value);
    fprintf(f, "<td class=\"n\">%s %s</td>",
            lc_metric_direction(k->metric) == LC_BOUND_UPPER ? (k->pass ? "≤" : ">") : (k->pass ? "≥" : "<"),
            lc__num(b, k->bound));
    const double rel = lc_check_rel_margin(k);
    if (isnan(rel))
        fputs("<td>", f);
    else if (isinf(rel))
        fprintf(f, "<td data-v=\"%s\">", rel > 0 ? "Infinity" : "-Infinity");
    else
        fprintf(f, "<td data-v=\"%.6g\">", rel);
    H(lc__margin(m, k));
    fputs("</td>", f);
}

static void thead(FILE *f, const char *cls, const char *const *heads, int n)
{
    fprintf(f, "<table class=\"sort%s%s\"><thead><tr>", cls[0] ? " " : "", cls);
    for (int i = 0; i < n; i++)
        fprintf(f, "<th>%s</th>", heads[i]);
    fputs("</tr></thead><tbody>\n", f);
}

static void case_link(FILE *f, int i, const char *name)
{
    fprintf(f, "<a href=\"#case-%d\">", i);
    H(name);
    fputs("</a>", f);
}

static int case_index(const lc_run_result *r, const lc_case_result *c)
{
    return (int)(c - r->cases);
}

/* ---------------------------------------------------------------- top sections */

static void causes_table(FILE *f, const lc_run_result *r, const lc__diag *d)
{
    static const char *const heads[] = {"comparison", "class", "cases", "failing checks", "worst case", "metric",
                                        "value", "bound", "margin", "where", "all cases"};
    char w[160];
    if (d->n_causes == 0)
        return;
    fputs("<h2>Failures by cause</h2>\n", f);
    thead(f, "", heads, 11);
    for (int i = 0; i < d->n_causes; i++) {
        const lc__cause *g = &d->causes[i];
        fputs("<tr class=\"fail\"><td><code>", f);
        H(g->cause);
        fprintf(f, "</code></td><td>%s</td><td class=\"n\" data-v=\"%d\">%d</td><td class=\"n\" data-v=\"%d\">%d</td><td>",
                g->cls, g->n_cases, g->n_cases, g->n_checks, g->n_checks);
        case_link(f, case_index(r, g->c), g->c->name);
        fprintf(f, "</td><td>%s</td>", lc_metric_name(g->worst->metric));
        check_tds(f, g->worst);
        fputs("<td>", f);
        H(lc__where(w, sizeof w, g->k, g->worst->metric));
        fputs("</td><td><small>", f);
        H(g->cases);
        fputs("</small></td></tr>\n", f);
    }
    fputs("</tbody></table>\n", f);
}

static void failed_table(FILE *f, const lc_run_result *r)
{
    static const char *const heads[] = {"case", "comparison", "class", "metric", "value", "bound", "margin", "where"};
    int n[4];
    char w[160];
    lc_run_counts(r, n);
    if (n[LC_VERDICT_FAIL]) {
        fputs("<h2>Every failing check</h2>\n", f);
        thead(f, "", heads, 8);
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_FAIL)
                continue;
            if (lc_case_failed_checks(c) == 0) {
                fputs("<tr class=\"fail\"><td>", f);
                case_link(f, i, c->name);
                fputs("</td><td colspan=\"7\">", f);
                H(c->reason);
                fputs("</td></tr>\n", f);
            }
            for (int j = 0; j < c->n_cmps; j++) {
                const lc_comparison *k = &c->cmps[j];
                for (int q = 0; q < k->n_checks; q++) {
                    if (k->checks[q].pass)
                        continue;
                    fputs("<tr class=\"fail\"><td>", f);
                    case_link(f, i, c->name);
                    fputs("</td><td><code>", f);
                    H(k->id);
                    fputs("</code> ", f);
                    H(k->name);
                    fprintf(f, "</td><td>%s</td><td>%s</td>", k->cls, lc_metric_name(k->checks[q].metric));
                    check_tds(f, &k->checks[q]);
                    fputs("<td>", f);
                    H(lc__where(w, sizeof w, k, k->checks[q].metric));
                    fputs("</td></tr>\n", f);
                }
            }
        }
        fputs("</tbody></table>\n", f);
    }
    if (n[LC_VERDICT_ERROR]) {
        static const char *const eh[] = {"case", "kind", "reason"};
        fputs("<h2>Errors</h2>\n", f);
        thead(f, "", eh, 3);
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_ERROR)
                continue;
            fputs("<tr class=\"error\"><td>", f);
            case_link(f, i, c->name);
            fputs("</td><td>", f);
            H(c->kind);
            fputs("</td><td>", f);
            H(c->reason);
            fputs("</td></tr>\n", f);
        }
        fputs("</tbody></table>\n", f);
    }
}

static const char *const change_names[] = {"unchanged", "regressed", "improved"};

static void moved_section(FILE *f, const lc_run_result *r, const lc_run_result *base, const lc__move *rows,
                          size_t n)
{
    static const char *const heads[] = {"case", "comparison", "metric", "base", "new", "change", "noise band",
                                        "verdict"};
    size_t cnt[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++)
        if (rows[i].metric != LC_METRIC_UNKNOWN)
            cnt[rows[i].change]++;
    fprintf(f, "<h2>Against the base run: %zu regressed, %zu improved, %zu unchanged</h2>\n", cnt[LC__REGRESSED],
            cnt[LC__IMPROVED], cnt[LC__UNCHANGED]);
    run_line(f, "Base: ", base);
    fputs("<p>A checked metric <b>regressed</b> when its error (the value; for min_cosine, top1_agree and "
          "topk_overlap_* the shortfall from 1) grew by more than the noise band, a quarter of the bound's "
          "budget (every bound is at least 4x its measured floor), or its check went from pass to fail; "
          "<b>improved</b> the other way; otherwise unchanged.</p>\n<ul>\n", f);
    for (size_t i = 0; i < n; i++) {
        const lc__move *m = &rows[i];
        if (m->metric != LC_METRIC_UNKNOWN)
            continue;
        if (m->c && m->bc && m->k == NULL && m->bk == NULL) {
            if (!m->flags)
                continue;
            fputs("<li>", f);
            case_link(f, case_index(r, m->c), m->c->name);
            fprintf(f, ": verdict <span class=\"flag\">%s → %s</span></li>\n", lc_verdict_name(m->bc->verdict),
                    lc_verdict_name(m->c->verdict));
        } else if (m->c && m->bc) {
            fputs("<li><code>", f);
            H(m->c->name);
            fputs(m->k ? "</code>: new comparison <code>" : "</code>: comparison gone <code>", f);
            H(m->k ? m->k->id : m->bk->id);
            fputs("</code></li>\n", f);
        } else {
            fputs(m->c ? "<li>new case <code>" : "<li>case gone (only in the base run) <code>", f);
            H(m->c ? m->c->name : m->bc->name);
            fputs("</code></li>\n", f);
        }
    }
    fputs("</ul>\n", f);
    for (int which = LC__REGRESSED; which >= 0; which = which == LC__REGRESSED ? LC__IMPROVED
                                                     : which == LC__IMPROVED ? LC__UNCHANGED : -1) {
        if (cnt[which] == 0)
            continue;
        const int fold = which == LC__UNCHANGED;
        if (fold)
            fprintf(f, "<details><summary>Unchanged (%zu)</summary>\n", cnt[which]);
        else
            fprintf(f, "<h2 class=\"%s\">%s (%zu)</h2>\n", change_names[which],
                    which == LC__REGRESSED ? "Regressed" : "Improved", cnt[which]);
        thead(f, "", heads, 8);
        for (size_t i = 0; i < n; i++) {
            const lc__move *m = &rows[i];
            if (m->metric == LC_METRIC_UNKNOWN || (int)m->change != which)
                continue;
            fprintf(f, "<tr class=\"%s\"><td>", change_names[which]);
            case_link(f, case_index(r, m->c), m->c->name);
            fputs("</td><td><code>", f);
            H(m->k->id);
            fprintf(f, "</code></td><td>%s</td>", lc_metric_name(m->metric));
            num_td(f, m->base);
            num_td(f, m->value);
            num_td(f, m->value - m->base);
            num_td(f, m->band);
            fputs("<td>", f);
            if (m->flags & LC__VERDICT_CHANGED)
                fprintf(f, "<span class=\"flag\">%s → %s</span>", m->base_pass ? "pass" : "fail",
                        m->pass ? "pass" : "fail");
            fputs("</td></tr>\n", f);
        }
        fputs("</tbody></table>\n", f);
        if (fold)
            fputs("</details>\n", f);
    }
}

static void case_table(FILE *f, const lc_run_result *r)
{
    static const char *const heads[] = {"verdict", "case", "kind", "tightest check", "value", "bound", "margin",
                                        "time (s)"};
    fprintf(f, "<h2>Cases (%d)</h2>\n", r->n_cases);
    thead(f, "", heads, 8);
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        const lc_comparison *k = NULL;
        const lc_check *q = lc_case_tightest(c, &k);
        fprintf(f, "<tr class=\"%s\"><td>%s</td><td>", lc_verdict_name(c->verdict), upper_verdict(c->verdict));
        case_link(f, i, c->name);
        fputs("</td><td>", f);
        H(c->kind);
        fputs("</td>", f);
        if (q != NULL && (c->verdict == LC_VERDICT_PASS || c->verdict == LC_VERDICT_FAIL)) {
            fputs("<td><code>", f);
            H(k->id);
            fprintf(f, "</code>: %s</td>", lc_metric_name(q->metric));
            check_tds(f, q);
        } else {
            fputs("<td colspan=\"4\">", f);
            H(c->reason[0] ? c->reason : "no checks");
            fputs("</td>", f);
        }
        num_td(f, c->seconds);
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table>\n", f);
}

/* ---------------------------------------------------------------- case sections */

static void metrics_details(FILE *f, const lc_comparison *k)
{
    char w[160];
    const lc_metrics *m = &k->m;
    fprintf(f, "<details><summary>every metric (%zu of %zu positions compared, %zu values, "
               "%zu in KL/top-k, %zu non-finite)</summary>\n<table><tr><th>metric</th>"
               "<th>value</th><th>where</th><th>what it measures</th></tr>\n",
            m->n_included, m->positions, m->n_values, m->n_kl, m->nonfinite);
    for (int id = 0; id < LC_METRIC_COUNT; id++) {
        fprintf(f, "<tr><td>%s</td>", lc_metric_name((lc_metric_id)id));
        num_td(f, lc_metric_value(m, (lc_metric_id)id));
        fputs("<td>", f);
        H(lc__where(w, sizeof w, k, (lc_metric_id)id));
        fputs("</td><td>", f);
        H(lc_metric_text((lc_metric_id)id));
        fputs("</td></tr>\n", f);
    }
    fputs("</table></details>\n", f);
}

/* The axis titles of a comparison's curve: stages or positions; logits or other values. */
static void axis_titles(const lc_comparison *k, const char **xt, const char **yt)
{
    const int logits = k->m.topk > 0 || strstr(k->name, "logits") || strstr(k->actual, "logits");
    if (lc__is_stage_cmp(k)) {
        *xt = "stage (0: after the embedding, k: after decoder layer k-1)";
        *yt = "max |a - e| (hidden-state units, log)";
    } else if (logits) {
        *xt = "position (token of the compared sequence)";
        *yt = "max |a - e| (logits, log)";
    } else {
        *xt = "position (outermost index of the compared tensor)";
        *yt = "max |a - e| (absolute, log)";
    }
}

static void plot(FILE *f, const lc_comparison *k, const lc_comparison *bk)
{
    double bound = NAN;
    for (int q = 0; q < k->n_checks; q++)
        if (k->checks[q].metric == LC_METRIC_MAX_ABS)
            bound = k->checks[q].bound;
    const int with_base = bk != NULL && bk->n_curve > 0;
    const char *xt, *yt;
    axis_titles(k, &xt, &yt);
    lc_svg_info info;
    fputs("<figure>", f);
    lc__svg_curve(f, k->curve, k->n_curve, with_base ? bk->curve : NULL, with_base ? bk->n_curve : 0, bound, xt, yt,
                  &info);
    char b[LC__NUM_LEN];
    fprintf(f, "<figcaption>Max |actual − expected| per %s (%d), log scale 1e%d to 1e%d. ",
            lc__is_stage_cmp(k) ? "stage" : "position", k->n_curve, info.ylo, info.yhi);
    if (!isnan(bound))
        fprintf(f, "Dashed red: the max_abs bound %s; %d points above it (red). ", lc__num(b, bound), info.n_above);
    if (with_base)
        fputs("Grey: the base run. ", f);
    if (info.n_gaps)
        fprintf(f, "%d excluded positions (gaps). ", info.n_gaps);
    if (info.n_floor)
        fprintf(f, "%d points exact or below the axis (on the bottom edge).", info.n_floor);
    fputs("</figcaption></figure>\n", f);
}

static const lc__move *find_move(const lc__move *rows, size_t n, const lc_comparison *k, lc_metric_id id)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].k == k && rows[i].metric == id && rows[i].bk != NULL)
            return &rows[i];
    return NULL;
}

static const lc_comparison *base_cmp(const lc__move *rows, size_t n, const lc_comparison *k)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].k == k && rows[i].bk != NULL)
            return rows[i].bk;
    return NULL;
}

static void comparison_block(FILE *f, const lc_case_result *c, const lc_comparison *k, const lc__move *rows,
                             size_t n_rows, int with_base)
{
    char w[160], st[32];
    fputs("<h4 id=\"", f);
    lc__put_xml(f, c->name, 1);
    fputs("--", f);
    lc__put_xml(f, k->id, 1);
    fputs("\">", f);
    H(k->name);
    fputs(" <code>", f);
    H(k->id);
    fprintf(f, "</code> <small>%s · ", k->cls);
    H(k->actual);
    fputs(" vs ", f);
    H(k->expected);
    fputs("</small></h4>\n", f);
    double v, b;
    const int s = lc__first_divergence(k, &v, &b);
    if (s >= 0) {
        char vv[LC__NUM_LEN], bb[LC__NUM_LEN];
        fprintf(f, "<p><b>Diverges %s %s</b>: max |a−e| %s vs bound %s.</p>\n", s == 0 ? "at" : "after",
                lc__stage_name(st, sizeof st, (size_t)s), lc__num(vv, v), lc__num(bb, b));
    }
    if (k->n_checks) {
        fputs("<table><thead><tr><th>metric</th><th>value</th><th>bound</th><th>margin</th><th>where</th>", f);
        if (with_base)
            fputs("<th>base</th><th>change</th>", f);
        fputs("</tr></thead><tbody>\n", f);
        for (int q = 0; q < k->n_checks; q++) {
            const lc_check *ck = &k->checks[q];
            fprintf(f, "<tr class=\"%s\"><td>%s</td>", ck->pass ? "pass" : "fail", lc_metric_name(ck->metric));
            check_tds(f, ck);
            fputs("<td>", f);
            H(lc__where(w, sizeof w, k, ck->metric));
            fputs("</td>", f);
            if (with_base) {
                const lc__move *m = find_move(rows, n_rows, k, ck->metric);
                if (m != NULL) {
                    num_td(f, m->base);
                    fprintf(f, "<td class=\"%s\">%s</td>", change_names[m->change], change_names[m->change]);
                } else {
                    fputs("<td colspan=\"2\">not in the base run</td>", f);
                }
            }
            fputs("</tr>\n", f);
        }
        fputs("</tbody></table>\n", f);
    }
    if (k->n_curve > 1) /* one point makes no plot */
        plot(f, k, with_base ? base_cmp(rows, n_rows, k) : NULL);
    metrics_details(f, k);
}

static void case_section(FILE *f, int ci, const lc_case_result *c, const lc__move *rows, size_t n_rows,
                         int with_base)
{
    char b[LC__NUM_LEN];
    fprintf(f, "<section class=\"case %s\" id=\"case-%d\"><h3>", lc_verdict_name(c->verdict), ci);
    badge(f, c->verdict);
    fputs(" ", f);
    H(c->name);
    fputs("</h3>\n<p class=\"meta\">kind ", f);
    H(c->kind);
    fputs(" · checkpoint <code>", f);
    H(c->checkpoint);
    fputs("</code>", f);
    if (c->labels[0]) {
        fputs(" · labels ", f);
        H(c->labels);
    }
    fprintf(f, " · %s s</p>\n", lc__num(b, c->seconds));
    if (c->description[0]) {
        fputs("<p>", f);
        H(c->description);
        fputs("</p>\n", f);
    }
    if (c->reason[0]) {
        fputs("<p><b>", f);
        H(c->reason);
        fputs("</b></p>\n", f);
    }
    if (c->not_compared[0]) {
        fputs("<p>Not compared (the engine lacks: ", f);
        H(c->not_compared);
        fputs(")</p>\n", f);
    }
    /* a passing case's comparisons are folded: the failing ones are what a reader came for */
    const int fold = c->verdict == LC_VERDICT_PASS && c->n_cmps > 0;
    if (fold)
        fprintf(f, "<details><summary>%d comparisons, every check passes</summary>\n", c->n_cmps);
    for (int j = 0; j < c->n_cmps; j++)
        comparison_block(f, c, &c->cmps[j], rows, n_rows, with_base);
    if (fold)
        fputs("</details>\n", f);
    fputs("</section>\n", f);
}

/* ---------------------------------------------------------------- the page */

int lc_report_html_write(const lc_run_result *r, const lc_run_result *base, const char *path, lc_error *err)
{
    if (path == NULL || path[0] == '\0')
        return lc_fail(err, LC_EINPUT, "report: empty output path");
    lc__move *rows = NULL;
    size_t n_rows = 0;
    if (base != NULL && lc__moves_build(r, base, &rows, &n_rows))
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory comparing with the base run", path);
    lc__diag d;
    lc__diagnose(r, &d);
    /* the page is built in memory and written in one call, so a failed write is seen (and its
     * errno read) at that call */
    char *page = NULL;
    size_t page_len = 0;
    FILE *f = open_memstream(&page, &page_len);
    if (f == NULL) {
        free(rows);
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory", path);
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>logitcheck ", f);
    H(r->engine_precision);
    fputs(" ", f);
    H(d.verdict);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n<h1>logitcheck ", css);
    H(r->engine_precision);
    fputs(" ", f);
    H(d.verdict);
    fputs("</h1>\n", f);
    run_line(f, "", r);
    fputs("<p class=\"diag\"><b>Diagnosis.</b> ", f);
    H(d.text);
    fputs("</p>\n", f);
    causes_table(f, r, &d);
    failed_table(f, r);
    if (base != NULL)
        moved_section(f, r, base, rows, n_rows);
    case_table(f, r);
    for (int i = 0; i < r->n_cases; i++)
        case_section(f, i, &r->cases[i], rows, n_rows, base != NULL);
    fprintf(f, "<script>%s</script>\n</body></html>\n", script);
    free(rows);
    const int mem_bad = ferror(f);
    fclose(f);
    if (mem_bad) {
        free(page);
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory", path);
    }
    lc_afile af;
    int rc = lc_afile_open(&af, path, err);
    if (rc) {
        free(page);
        return rc;
    }
    errno = 0;
    if (fwrite(page, 1, page_len, af.f) != page_len || fflush(af.f) != 0) {
        const int e = errno;
        free(page);
        lc_afile_abort(&af);
        return lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, e ? strerror(e) : "I/O error");
    }
    free(page);
    return lc_afile_commit(&af, err);
}
