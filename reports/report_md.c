/*
 * The Markdown summary, ready to paste as a pull-request comment (see reports.h).
 *
 * Layout: headline and run line; failed checks; errors; every case with its tightest check;
 * and, with a base run, what moved (flagged rows, verdict changes, cases and comparisons new
 * or gone, then the full table folded in <details>). Text from records is escaped so names
 * and reasons never break the tables.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_util.h"
#include "reports.h"

/* Rows of the folded full "what moved" table; the HTML report has every row. */
#define MD_MAX_MOVE_ROWS 300

/* ---------------------------------------------------------------- escaping */

/* Text in a table cell: Markdown punctuation backslash-escaped, line breaks as spaces. */
static void md_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else if (strchr("\\`*_[]|<>~", *s))
            fprintf(f, "\\%c", *s);
        else
            fputc(*s, f);
    }
}

/* A name as a code span: a pipe stays escaped (tables), a backquote becomes a quote. */
static void md_code(FILE *f, const char *s)
{
    fputc('`', f);
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s == '`' ? '\'' : *s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
    fputc('`', f);
}

/* ---------------------------------------------------------------- pieces */

static void headline(FILE *f, const lc_run_result *r)
{
    int n[4];
    lc_run_counts(r, n);
    fputs("## logitcheck ", f);
    md_text(f, r->engine_precision[0] ? r->engine_precision : "?");
    fprintf(f, ": %d passed, %d failed, %d errors", n[LC_VERDICT_PASS], n[LC_VERDICT_FAIL],
            n[LC_VERDICT_ERROR]);
    if (n[LC_VERDICT_SKIP])
        fprintf(f, ", %d skipped", n[LC_VERDICT_SKIP]);
    fputs("\n\n", f);
}

static void run_line(FILE *f, const char *what, const lc_run_result *r)
{
    char b[LC__NUM_LEN];
    fputs(what, f);
    fputs("logitcheck ", f);
    md_text(f, r->version[0] ? r->version : "?");
    fputs(", engine ", f);
    if (r->engine[0]) {
        md_text(f, r->engine);
        fputs(" ", f);
    }
    md_text(f, r->engine_precision);
    if (r->engine_detail[0]) {
        fputs(" (", f);
        md_text(f, r->engine_detail);
        fputs(")", f);
    }
    if (r->git[0]) {
        fputs(", git ", f);
        md_code(f, r->git);
    }
    if (r->host[0]) {
        fputs(", host ", f);
        md_code(f, r->host);
    }
    if (r->started[0]) {
        fputs(", started ", f);
        md_text(f, r->started);
    }
    fprintf(f, ", %d cases in %s s\n\n", r->n_cases, lc__num(b, r->seconds));
    if (r->engine_detail[0]) {
        fputs("Engine detail: ", f);
        md_text(f, r->engine_detail);
        fputs("\n\n", f);
    }
}

/* "max_abs | 3.2e-05 | ≤ 5e-04 | 4.68e-04 (94%)" as four cells. */
static void check_cells(FILE *f, const lc_check *k)
{
    char v[LC__NUM_LEN], b[LC__NUM_LEN], m[LC__NUM_LEN], p[LC__NUM_LEN];
    fprintf(f, "%s | %s | %s %s | %s", lc_metric_name(k->metric), lc__num(v, k->value),
            lc_metric_direction(k->metric) == LC_BOUND_UPPER ? "≤" : "≥", lc__num(b, k->bound),
            lc__num(m, k->margin));
    if (lc__left(p, k)[0] && !isnan(k->margin))
        fprintf(f, " (%s)", p);
}

static const char *verdict_cell(lc_verdict v)
{
    switch (v) {
    case LC_VERDICT_PASS: return "pass";
    case LC_VERDICT_FAIL: return "**FAIL**";
    case LC_VERDICT_ERROR: return "**ERROR**";
    case LC_VERDICT_SKIP: return "skip";
    }
    return "?";
}

/* ---------------------------------------------------------------- sections */

static void failed_section(FILE *f, const lc_run_result *r)
{
    int n[4];
    lc_run_counts(r, n);
    if (n[LC_VERDICT_FAIL]) {
        char w[160];
        fputs("### Failed\n\n| case | comparison | metric | value | bound | margin | where |\n"
              "|---|---|---|---|---|---|---|\n", f);
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_FAIL)
                continue;
            if (lc_case_failed_checks(c) == 0) { /* failed outside the checks: the reason */
                fputs("| ", f);
                md_code(f, c->name);
                fputs(" | — | — | | | | ", f);
                md_text(f, c->reason);
                fputs(" |\n", f);
                continue;
            }
            for (int j = 0; j < c->n_cmps; j++) {
                const lc_comparison *k = &c->cmps[j];
                for (int q = 0; q < k->n_checks; q++) {
                    if (k->checks[q].pass)
                        continue;
                    fputs("| ", f);
                    md_code(f, c->name);
                    fputs(" | ", f);
                    md_code(f, k->id);
                    fputs(" ", f);
                    md_text(f, k->name);
                    fputs(" | ", f);
                    check_cells(f, &k->checks[q]);
                    fputs(" | ", f);
                    md_text(f, lc__where(w, sizeof w, k, k->checks[q].metric));
                    fputs(" |\n", f);
                }
            }
        }
        fputs("\n", f);
    }
    if (n[LC_VERDICT_ERROR]) {
        fputs("### Errors\n\n| case | kind | reason |\n|---|---|---|\n", f);
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_ERROR)
                continue;
            fputs("| ", f);
            md_code(f, c->name);
            fputs(" | ", f);
            md_text(f, c->kind);
            fputs(" | ", f);
            md_text(f, c->reason);
            fputs(" |\n", f);
        }
        fputs("\n", f);
    }
}

static void cases_section(FILE *f, const lc_run_result *r)
{
    char t[LC__NUM_LEN];
    fprintf(f, "### All cases (%d)\n\nThe tightest check of each case: the metric closest to "
               "its bound, relative to the bound.\n\n"
               "| verdict | case | kind | tightest check | value | bound | margin | time |\n"
               "|---|---|---|---|---|---|---|---|\n", r->n_cases);
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        const lc_comparison *k = NULL;
        const lc_check *q = lc_case_tightest(c, &k);
        fprintf(f, "| %s | ", verdict_cell(c->verdict));
        md_code(f, c->name);
        fputs(" | ", f);
        md_text(f, c->kind);
        fputs(" | ", f);
        if (q != NULL && (c->verdict == LC_VERDICT_PASS || c->verdict == LC_VERDICT_FAIL)) {
            md_text(f, k->name);
            fputs(": ", f);
            check_cells(f, q);
        } else {
            md_text(f, c->reason[0] ? c->reason : "no checks");
            fputs(" | | | ", f);
        }
        fprintf(f, " | %s s |\n", lc__num(t, c->seconds));
    }
    fputs("\n", f);
}

static void move_flags(FILE *f, const lc__move *m)
{
    if (m->flags & LC__MOVED)
        fputs("**moved**", f);
    if (m->flags & LC__VERDICT_CHANGED)
        fprintf(f, "%s**%s → %s**", m->flags & LC__MOVED ? ", " : "",
                m->base_pass ? "pass" : "fail", m->pass ? "pass" : "fail");
}

static void move_row(FILE *f, const lc__move *m)
{
    char b[LC__NUM_LEN], v[LC__NUM_LEN], q[LC__NUM_LEN];
    fputs("| ", f);
    md_code(f, m->c->name);
    fputs(" | ", f);
    md_code(f, m->k->id);
    fputs(" ", f);
    md_text(f, m->k->name);
    fprintf(f, " | %s | %s | %s | %s | ", lc_metric_name(m->metric), lc__num(b, m->base),
            lc__num(v, m->value), lc__num(q, m->ratio));
    move_flags(f, m);
    fputs(" |\n", f);
}

static const char *const move_head =
    "| case | comparison | metric | base | new | ratio | flag |\n|---|---|---|---|---|---|---|\n";

static void moved_section(FILE *f, const lc_run_result *base, const lc__move *rows, size_t n)
{
    size_t n_metric = 0, n_flagged = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].metric != LC_METRIC_UNKNOWN) {
            n_metric++;
            n_flagged += rows[i].flags != 0;
        }
    }
    fputs("### What moved\n\n", f);
    run_line(f, "Against the base run: ", base);
    fprintf(f, "%zu checked metrics compared, %zu moved by more than 2x or changed verdict. "
               "Ratios compare errors: new / base (for min_cosine, top1_agree and "
               "topk_overlap_* the shortfalls from 1).\n\n", n_metric, n_flagged);
    for (size_t i = 0; i < n; i++) { /* case-level: verdict changes, new and gone */
        const lc__move *m = &rows[i];
        if (m->metric != LC_METRIC_UNKNOWN)
            continue;
        if (m->c && m->bc && m->k == NULL && m->bk == NULL) {
            if (!m->flags)
                continue;
            fputs("- ", f);
            md_code(f, m->c->name);
            fprintf(f, ": verdict **%s → %s**\n", lc_verdict_name(m->bc->verdict),
                    lc_verdict_name(m->c->verdict));
        } else if (m->c && m->bc) {
            fputs("- ", f);
            md_code(f, m->c->name);
            fputs(m->k ? ": new comparison " : ": comparison gone ", f);
            md_code(f, m->k ? m->k->id : m->bk->id);
            fputs("\n", f);
        } else if (m->c || m->bc) {
            fputs(m->c ? "- new case " : "- case gone (only in the base run) ", f);
            md_code(f, m->c ? m->c->name : m->bc->name);
            fputs("\n", f);
        }
    }
    fputs("\n", f);
    if (n_flagged) {
        fputs(move_head, f);
        for (size_t i = 0; i < n; i++)
            if (rows[i].metric != LC_METRIC_UNKNOWN && rows[i].flags)
                move_row(f, &rows[i]);
        fputs("\n", f);
    }
    if (n_metric) {
        fprintf(f, "<details><summary>All %zu checked metrics against the base run</summary>\n\n",
                n_metric);
        fputs(move_head, f);
        size_t shown = 0;
        for (size_t i = 0; i < n && shown < MD_MAX_MOVE_ROWS; i++) {
            if (rows[i].metric != LC_METRIC_UNKNOWN) {
                move_row(f, &rows[i]);
                shown++;
            }
        }
        if (shown < n_metric)
            fprintf(f, "\n%zu more rows: see the HTML or JSON report.\n", n_metric - shown);
        fputs("\n</details>\n\n", f);
    }
}

/* ---------------------------------------------------------------- the file */

int lc_report_md_write(const lc_run_result *r, const lc_run_result *base, const char *path,
                       lc_error *err)
{
    lc__move *rows = NULL;
    size_t n = 0;
    if (base != NULL && lc__moves_build(r, base, &rows, &n))
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory comparing with the base run",
                         path);
    lc__afile af;
    int rc = lc__afile_open(&af, path, err);
    if (rc) {
        free(rows);
        return rc;
    }
    headline(af.f, r);
    run_line(af.f, "", r);
    failed_section(af.f, r);
    if (base != NULL)
        moved_section(af.f, base, rows, n);
    cases_section(af.f, r);
    free(rows);
    return lc__afile_commit(&af, err);
}
