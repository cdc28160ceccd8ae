/*
 * The HTML report (see reports.h): dir/report.html plus one PNG plot per comparison with a
 * curve, linked by relative name. Inline CSS, no script: it opens from a CI artifact as is.
 *
 * Page: headline and run line; failed checks; errors; what moved (with a base run); a case
 * table linking to one section per case with its comparisons: the checks coloured by pass
 * or fail (with base value and ratio), the plot, and every measured metric, folded.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plot_png.h"
#include "report_util.h"
#include "reports.h"

#define H(s) lc__put_xml(f, (s), 0)

static const char *const css =
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em 2em;color:#222}"
    "h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}"
    "h3{margin-bottom:.3em}h4{margin:1em 0 .3em}"
    "table{border-collapse:collapse;margin:.4em 0 1em}"
    "th,td{border:1px solid #d0d0d0;padding:2px 8px;text-align:left;vertical-align:top}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "th{background:#f4f4f4}.meta,small{color:#666}"
    "tr.pass td,span.pass{background:#e6f4ea}tr.fail td,span.fail{background:#fce8e6}"
    "tr.error td,span.error{background:#fef3e0}tr.skip td,span.skip{background:#eee}"
    "span.badge{padding:1px 6px;border-radius:3px;font-size:.85em;font-weight:bold}"
    "section.case{margin:1.2em 0;padding:.2em 1em .6em;border-left:4px solid #ccc}"
    "section.fail{border-color:#d93025}section.error{border-color:#f29900}"
    "section.pass{border-color:#188038}.flag{font-weight:bold;color:#b3261e}"
    "figure{margin:.4em 0}figcaption{color:#555;font-size:.9em;max-width:720px}"
    "code{background:#f4f4f4;padding:0 3px}";

/* ---------------------------------------------------------------- small pieces */

static void num_td(FILE *f, double x)
{
    char b[LC__NUM_LEN];
    fprintf(f, "<td class=\"n\">%s</td>", lc__num(b, x));
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

/* Value, bound, margin and budget left as four cells. */
static void check_tds(FILE *f, const lc_check *k)
{
    char b[LC__NUM_LEN], p[LC__NUM_LEN];
    num_td(f, k->value);
    fprintf(f, "<td class=\"n\">%s %s</td>",
            lc_metric_direction(k->metric) == LC_BOUND_UPPER ? "≤" : "≥", lc__num(b, k->bound));
    num_td(f, k->margin);
    fprintf(f, "<td class=\"n\">%s</td>", lc__left(p, k));
}

static void flag_text(FILE *f, const lc__move *m)
{
    if (m == NULL || m->flags == 0)
        return;
    fputs("<span class=\"flag\">", f);
    if (m->flags & LC__MOVED)
        fputs("moved", f);
    if (m->flags & LC__VERDICT_CHANGED)
        fprintf(f, "%s%s → %s", m->flags & LC__MOVED ? ", " : "", m->base_pass ? "pass" : "fail",
                m->pass ? "pass" : "fail");
    fputs("</span>", f);
}

static const lc__move *find_move(const lc__move *rows, size_t n, const lc_comparison *k,
                                 lc_metric_id id)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].k == k && rows[i].metric == id && rows[i].bk != NULL)
            return &rows[i];
    return NULL;
}

/* The base run's comparison matching k, if any. */
static const lc_comparison *base_cmp(const lc__move *rows, size_t n, const lc_comparison *k)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].k == k && rows[i].bk != NULL)
            return rows[i].bk;
    return NULL;
}

/* "<case>--<comparison id>.png": letters, digits, '.', '-', '_' kept, the rest '_'. Keyed on
 * the stable ids, so a plot keeps its file name from run to run. */
static void plot_name(char *buf, size_t n, int ci, int ki, const lc_case_result *c,
                      const lc_comparison *k)
{
    char a[160], b[80];
    const char *src[2] = {c->name, k->id[0] ? k->id : k->name};
    char *dst[2] = {a, b};
    const size_t cap[2] = {sizeof a, sizeof b};
    (void)ci;
    (void)ki;
    for (int s = 0; s < 2; s++) {
        size_t j = 0;
        for (const char *p = src[s]; *p && j < cap[s] - 1; p++)
            dst[s][j++] = (strchr("._-", *p) || (*p >= '0' && *p <= '9') ||
                           ((*p | 32) >= 'a' && (*p | 32) <= 'z'))
                              ? *p
                              : '_';
        dst[s][j] = '\0';
    }
    snprintf(buf, n, "%s--%s.png", a, b);
}

/* ---------------------------------------------------------------- top sections */

static void failed_section(FILE *f, const lc_run_result *r)
{
    int n[4];
    char w[160];
    lc_run_counts(r, n);
    if (n[LC_VERDICT_FAIL]) {
        fputs("<h2>Failed</h2>\n<table><tr><th>case</th><th>comparison</th><th>metric</th>"
              "<th>value</th><th>bound</th><th>margin</th><th>left</th><th>where</th></tr>\n", f);
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_FAIL)
                continue;
            if (lc_case_failed_checks(c) == 0) {
                fprintf(f, "<tr class=\"fail\"><td><a href=\"#case-%d\">", i);
                H(c->name);
                fputs("</a></td><td colspan=\"7\">", f);
                H(c->reason);
                fputs("</td></tr>\n", f);
            }
            for (int j = 0; j < c->n_cmps; j++) {
                const lc_comparison *k = &c->cmps[j];
                for (int q = 0; q < k->n_checks; q++) {
                    if (k->checks[q].pass)
                        continue;
                    fprintf(f, "<tr class=\"fail\"><td><a href=\"#case-%d\">", i);
                    H(c->name);
                    fputs("</a></td><td>", f);
                    H(k->name);
                    fprintf(f, "</td><td>%s</td>", lc_metric_name(k->checks[q].metric));
                    check_tds(f, &k->checks[q]);
                    fputs("<td>", f);
                    H(lc__where(w, sizeof w, k, k->checks[q].metric));
                    fputs("</td></tr>\n", f);
                }
            }
        }
        fputs("</table>\n", f);
    }
    if (n[LC_VERDICT_ERROR]) {
        fputs("<h2>Errors</h2>\n<table><tr><th>case</th><th>kind</th><th>reason</th></tr>\n", f);
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_ERROR)
                continue;
            fprintf(f, "<tr class=\"error\"><td><a href=\"#case-%d\">", i);
            H(c->name);
            fputs("</a></td><td>", f);
            H(c->kind);
            fputs("</td><td>", f);
            H(c->reason);
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
}

static void moved_section(FILE *f, const lc_run_result *base, const lc__move *rows, size_t n)
{
    size_t n_metric = 0, n_flagged = 0;
    for (size_t i = 0; i < n; i++) {
        n_metric += rows[i].metric != LC_METRIC_UNKNOWN;
        n_flagged += rows[i].metric != LC_METRIC_UNKNOWN && rows[i].flags;
    }
    fputs("<h2>What moved</h2>\n", f);
    run_line(f, "Against the base run: ", base);
    fprintf(f, "<p>%zu checked metrics compared, %zu moved by more than 2x or changed verdict. "
               "Ratios compare errors, new / base (for min_cosine, top1_agree and "
               "topk_overlap_* the shortfalls from 1). Every row is in the case sections "
               "below.</p>\n<ul>\n", n_metric, n_flagged);
    for (size_t i = 0; i < n; i++) {
        const lc__move *m = &rows[i];
        if (m->metric != LC_METRIC_UNKNOWN)
            continue;
        if (m->c && m->bc && m->k == NULL && m->bk == NULL) {
            if (!m->flags)
                continue;
            fputs("<li><code>", f);
            H(m->c->name);
            fprintf(f, "</code>: verdict <span class=\"flag\">%s → %s</span></li>\n",
                    lc_verdict_name(m->bc->verdict), lc_verdict_name(m->c->verdict));
        } else if (m->c && m->bc) {
            fputs("<li><code>", f);
            H(m->c->name);
            fputs(m->k ? "</code>: new comparison <code>" : "</code>: comparison gone <code>", f);
            H(m->k ? m->k->name : m->bk->name);
            fputs("</code></li>\n", f);
        } else {
            fputs(m->c ? "<li>new case <code>" : "<li>case gone (only in the base run) <code>", f);
            H(m->c ? m->c->name : m->bc->name);
            fputs("</code></li>\n", f);
        }
    }
    fputs("</ul>\n", f);
    if (n_flagged == 0)
        return;
    fputs("<table><tr><th>case</th><th>comparison</th><th>metric</th><th>base</th><th>new</th>"
          "<th>ratio</th><th>flag</th></tr>\n", f);
    for (size_t i = 0; i < n; i++) {
        const lc__move *m = &rows[i];
        if (m->metric == LC_METRIC_UNKNOWN || !m->flags)
            continue;
        fputs("<tr><td><code>", f);
        H(m->c->name);
        fputs("</code></td><td>", f);
        H(m->k->name);
        fprintf(f, "</td><td>%s</td>", lc_metric_name(m->metric));
        num_td(f, m->base);
        num_td(f, m->value);
        num_td(f, m->ratio);
        fputs("<td>", f);
        flag_text(f, m);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void case_table(FILE *f, const lc_run_result *r)
{
    char b[LC__NUM_LEN];
    fprintf(f, "<h2>Cases (%d)</h2>\n<table><tr><th>verdict</th><th>case</th><th>kind</th>"
               "<th>tightest check</th><th>value</th><th>bound</th><th>margin</th><th>left</th>"
               "<th>time</th></tr>\n", r->n_cases);
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        const lc_comparison *k = NULL;
        const lc_check *q = lc_case_tightest(c, &k);
        fprintf(f, "<tr class=\"%s\"><td>%s</td><td><a href=\"#case-%d\">",
                lc_verdict_name(c->verdict), upper_verdict(c->verdict), i);
        H(c->name);
        fputs("</a></td><td>", f);
        H(c->kind);
        fputs("</td>", f);
        if (q != NULL && (c->verdict == LC_VERDICT_PASS || c->verdict == LC_VERDICT_FAIL)) {
            fputs("<td>", f);
            H(k->name);
            fprintf(f, ": %s</td>", lc_metric_name(q->metric));
            check_tds(f, q);
        } else {
            fputs("<td colspan=\"5\">", f);
            H(c->reason[0] ? c->reason : "no checks");
            fputs("</td>", f);
        }
        fprintf(f, "<td class=\"n\">%s s</td></tr>\n", lc__num(b, c->seconds));
    }
    fputs("</table>\n", f);
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

/* The plot file and its figure. Returns LC_OK or the plot writer's error. */
static int plot(FILE *f, const char *dir, int ci, int ki, const lc_case_result *c,
                const lc_comparison *k, const lc_comparison *bk, lc_error *err)
{
    char name[256], path[4096];
    double bound = NAN;
    for (int q = 0; q < k->n_checks; q++)
        if (k->checks[q].metric == LC_METRIC_MAX_ABS)
            bound = k->checks[q].bound;
    plot_name(name, sizeof name, ci, ki, c, k);
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return lc_fail(err, LC_EINPUT, "%s: output directory path too long", dir);
    const int with_base = bk != NULL && bk->n_curve > 0;
    lc_plot_info info;
    int rc = lc_plot_curve_png(path, k->curve, k->n_curve, with_base ? bk->curve : NULL,
                               with_base ? bk->n_curve : 0, bound, &info, err);
    if (rc)
        return rc;
    char b[LC__NUM_LEN];
    fputs("<figure><img src=\"", f);
    lc__put_xml(f, name, 1);
    fprintf(f, "\" width=\"%d\" height=\"%d\" alt=\"per-position max abs error\">"
               "<figcaption>Max |a−e| per position (%d positions, x ticks every %d), log "
               "scale 1e%d to 1e%d. ",
            LC_PLOT_WIDTH, LC_PLOT_HEIGHT, k->n_curve, info.x_step, info.ylo, info.yhi);
    if (!isnan(bound))
        fprintf(f, "Dashed red: the max_abs bound %s; %d positions above it (red points). ",
                lc__num(b, bound), info.n_above);
    if (with_base)
        fputs("Grey: the base run. ", f);
    if (info.n_gaps)
        fprintf(f, "%d excluded positions (gaps). ", info.n_gaps);
    if (info.n_floor)
        fprintf(f, "%d positions exact or below the axis (on the bottom edge).", info.n_floor);
    fputs("</figcaption></figure>\n", f);
    return LC_OK;
}

static int case_section(FILE *f, const char *dir, int ci, const lc_case_result *c,
                        const lc__move *rows, size_t n_rows, int with_base, lc_error *err)
{
    char b[LC__NUM_LEN], w[160];
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
    for (int j = 0; j < c->n_cmps; j++) {
        const lc_comparison *k = &c->cmps[j];
        fputs("<h4 id=\"", f);
        H(c->name);
        fputs("--", f);
        H(k->id);
        fputs("\">", f);
        H(k->name);
        fputs(" <code>", f);
        H(k->id);
        fputs("</code> <small>", f);
        H(k->actual);
        fputs(" vs ", f);
        H(k->expected);
        fputs("</small></h4>\n", f);
        if (k->n_checks) {
            fputs("<table><tr><th>metric</th><th>value</th><th>bound</th><th>margin</th>"
                  "<th>left</th><th>where</th>", f);
            if (with_base)
                fputs("<th>base</th><th>ratio</th><th>flag</th>", f);
            fputs("</tr>\n", f);
            for (int q = 0; q < k->n_checks; q++) {
                const lc_check *ck = &k->checks[q];
                fprintf(f, "<tr class=\"%s\"><td>%s</td>", ck->pass ? "pass" : "fail",
                        lc_metric_name(ck->metric));
                check_tds(f, ck);
                fputs("<td>", f);
                H(lc__where(w, sizeof w, k, ck->metric));
                fputs("</td>", f);
                if (with_base) {
                    const lc__move *m = find_move(rows, n_rows, k, ck->metric);
                    if (m != NULL) {
                        num_td(f, m->base);
                        num_td(f, m->ratio);
                        fputs("<td>", f);
                        flag_text(f, m);
                        fputs("</td>", f);
                    } else {
                        fputs("<td colspan=\"3\">not in the base run</td>", f);
                    }
                }
                fputs("</tr>\n", f);
            }
            fputs("</table>\n", f);
        }
        if (k->n_curve > 1) { /* one point makes no plot */
            int rc = plot(f, dir, ci, j, c, k, with_base ? base_cmp(rows, n_rows, k) : NULL, err);
            if (rc)
                return rc;
        }
        metrics_details(f, k);
    }
    fputs("</section>\n", f);
    return LC_OK;
}

/* ---------------------------------------------------------------- the page */

static int make_dir(const char *dir, lc_error *err)
{
    struct stat st;
    if (mkdir(dir, 0777) == 0)
        return LC_OK;
    const int e = errno;
    if (e == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return LC_OK;
    return lc_fail(err, LC_EINPUT, "%s: cannot create the report directory: %s", dir,
                     e == EEXIST ? "a file of that name exists" : strerror(e));
}

int lc_report_html_write(const lc_run_result *r, const lc_run_result *base, const char *dir,
                         lc_error *err)
{
    char path[4096];
    if (dir == NULL || dir[0] == '\0')
        return lc_fail(err, LC_EINPUT, "report: empty output directory");
    if ((size_t)snprintf(path, sizeof path, "%s/report.html", dir) >= sizeof path)
        return lc_fail(err, LC_EINPUT, "%.200s...: output directory path too long", dir);
    int rc = make_dir(dir, err);
    if (rc)
        return rc;
    lc__move *rows = NULL;
    size_t n_rows = 0;
    if (base != NULL && lc__moves_build(r, base, &rows, &n_rows))
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory comparing with the base run",
                         path);
    lc__afile af;
    rc = lc__afile_open(&af, path, err);
    if (rc) {
        free(rows);
        return rc;
    }
    FILE *f = af.f;
    int n[4];
    char head[128];
    lc_run_counts(r, n);
    snprintf(head, sizeof head, "logitcheck %s: %d passed, %d failed, %d errors",
             r->engine_precision, n[0], n[1], n[2]);
    if (n[3])
        snprintf(head + strlen(head), sizeof head - strlen(head), ", %d skipped", n[3]);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", f);
    H(head);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n<h1>", css);
    H(head);
    fputs("</h1>\n", f);
    run_line(f, "", r);
    failed_section(f, r);
    if (base != NULL)
        moved_section(f, base, rows, n_rows);
    case_table(f, r);
    for (int i = 0; i < r->n_cases && rc == LC_OK; i++)
        rc = case_section(f, dir, i, &r->cases[i], rows, n_rows, base != NULL, err);
    fputs("</body></html>\n", f);
    free(rows);
    if (rc) {
        lc__afile_abort(&af);
        return rc;
    }
    return lc__afile_commit(&af, err);
}
