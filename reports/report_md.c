/* SPDX-License-Identifier: MIT */
/*
 * The Markdown summary, ready to paste as a pull-request comment (see reports.h).
 *
 * Layout: the verdict and run line; the diagnosis; failures by cause; errors, skips, missing
 * taps; with a base run, regressed / improved / unchanged; folded, the failing cases by cause
 * and the passing cases by kind. Short by design: every check is in report.html. Text from
 * records is escaped so names and reasons never break the tables.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_util.h"
#include "reports.h"

/* Rows of the regressed and improved tables; the HTML report has every row. */
#define MD_MAX_MOVE_ROWS 10

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

static void headline(FILE *f, const lc_run_result *r, const lc__diag *d)
{
    fputs("## logitcheck ", f);
    md_text(f, r->engine_precision[0] ? r->engine_precision : "?");
    fputs(" ", f);
    md_text(f, d->verdict);
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
}

/* "max_abs 2.99 > 1.2e-04 (2.5e+04x the bound)" */
static void check_text(FILE *f, const lc_check *k)
{
    char v[LC__NUM_LEN], b[LC__NUM_LEN], m[LC__MARGIN_LEN];
    fprintf(f, "%s %s %s %s (%s)", lc_metric_name(k->metric), lc__num(v, k->value),
            lc_metric_direction(k->metric) == LC_BOUND_UPPER ? (k->pass ? "≤" : ">") : (k->pass ? "≥" : "<"),
            lc__num(b, k->bound), lc__margin(m, k));
}

/* ---------------------------------------------------------------- sections */

static void causes_section(FILE *f, const lc__diag *d)
{
    char w[160];
    if (d->n_causes == 0)
        return;
    fputs("### Failures by cause\n\n| comparison | class | cases | worst case | worst check | where |\n"
          "|---|---|---|---|---|---|\n", f);
    for (int i = 0; i < d->n_causes; i++) {
        const lc__cause *g = &d->causes[i];
        fputs("| ", f);
        md_code(f, g->cause);
        fprintf(f, " | %s | %d | ", g->cls, g->n_cases);
        md_code(f, g->c->name);
        fputs(" | ", f);
        check_text(f, g->worst);
        fputs(" | ", f);
        md_text(f, lc__where(w, sizeof w, g->k, g->worst->metric));
        fputs(" |\n", f);
    }
    if (d->more_causes)
        fprintf(f, "| %d more | | | | | |\n", d->more_causes);
    fputs("\n", f);
}

static void problems_section(FILE *f, const lc_run_result *r)
{
    int n[4];
    lc_run_counts(r, n);
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
    /* failed outside the checks (no failing check): the reason */
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        if (c->verdict == LC_VERDICT_FAIL && lc_case_failed_checks(c) == 0) {
            fputs("- ", f);
            md_code(f, c->name);
            fputs(" failed: ", f);
            md_text(f, c->reason);
            fputs("\n\n", f);
        }
    }
    if (n[LC_VERDICT_SKIP]) {
        fprintf(f, "**Skipped** (%d, never a pass): ", n[LC_VERDICT_SKIP]);
        int first = 1;
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (c->verdict != LC_VERDICT_SKIP)
                continue;
            fputs(first ? "" : ", ", f);
            md_code(f, c->name);
            fputs(" (", f);
            md_text(f, c->reason);
            fputs(")", f);
            first = 0;
        }
        fputs("\n\n", f);
    }
    int nc = 0;
    for (int i = 0; i < r->n_cases; i++)
        nc += r->cases[i].not_compared[0] != '\0';
    if (nc) {
        fprintf(f, "**Not compared** (%d case%s ran without some comparisons: the engine lacks the tap): ", nc,
                nc > 1 ? "s" : "");
        int first = 1;
        for (int i = 0; i < r->n_cases; i++) {
            const lc_case_result *c = &r->cases[i];
            if (!c->not_compared[0])
                continue;
            fputs(first ? "" : ", ", f);
            md_code(f, c->name);
            fputs(" (", f);
            md_text(f, c->not_compared);
            fputs(")", f);
            first = 0;
        }
        fputs("\n\n", f);
    }
}

static void folded_failing(FILE *f, const lc__diag *d)
{
    if (d->n_causes == 0)
        return;
    fputs("<details><summary>Failing cases by cause</summary>\n\n", f);
    for (int i = 0; i < d->n_causes; i++) {
        const lc__cause *g = &d->causes[i];
        fputs("- ", f);
        md_code(f, g->cause);
        fprintf(f, " (%s, %d cases, %d failing checks): ", g->cls, g->n_cases, g->n_checks);
        md_text(f, g->cases);
        fputs("\n", f);
    }
    fputs("\n</details>\n\n", f);
}

/* The passing cases by kind, each with its tightest margin: one line per kind. */
static void folded_passing(FILE *f, const lc_run_result *r)
{
    char m[LC__MARGIN_LEN];
    int npass = 0;
    for (int i = 0; i < r->n_cases; i++)
        npass += r->cases[i].verdict == LC_VERDICT_PASS;
    if (npass == 0)
        return;
    fprintf(f, "<details><summary>The %d passing cases by kind, with their tightest check</summary>\n\n", npass);
    for (int i = 0; i < r->n_cases; i++) {
        const lc_case_result *c = &r->cases[i];
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = r->cases[j].verdict == LC_VERDICT_PASS && !strcmp(r->cases[j].kind, c->kind);
        if (c->verdict != LC_VERDICT_PASS || seen)
            continue;
        int nk = 0;
        for (int j = i; j < r->n_cases; j++)
            nk += r->cases[j].verdict == LC_VERDICT_PASS && !strcmp(r->cases[j].kind, c->kind);
        fputs("- **", f);
        md_text(f, c->kind);
        fprintf(f, "** (%d): ", nk);
        int first = 1;
        for (int j = i; j < r->n_cases; j++) {
            const lc_case_result *o = &r->cases[j];
            if (o->verdict != LC_VERDICT_PASS || strcmp(o->kind, c->kind))
                continue;
            const lc_check *q = lc_case_tightest(o, NULL);
            fputs(first ? "" : ", ", f);
            md_code(f, o->name);
            if (q != NULL) {
                fprintf(f, " %s ", lc_metric_name(q->metric));
                md_text(f, lc__margin(m, q));
            }
            first = 0;
        }
        fputs("\n", f);
    }
    fputs("\n</details>\n\n", f);
}

static void move_row(FILE *f, const lc__move *m)
{
    char b[LC__NUM_LEN], v[LC__NUM_LEN], q[LC__NUM_LEN];
    fputs("| ", f);
    md_code(f, m->c->name);
    fputs(" | ", f);
    md_code(f, m->k->id);
    fprintf(f, " | %s | %s | %s | %s | %s |\n", lc_metric_name(m->metric), lc__num(b, m->base), lc__num(v, m->value),
            lc__num(q, m->band),
            !(m->flags & LC__VERDICT_CHANGED) ? "" : m->pass ? "fail → pass" : "**pass → fail**");
}

static const char *const move_head =
    "| case | comparison | metric | base | new | noise band | verdict |\n|---|---|---|---|---|---|---|\n";

static void moved_section(FILE *f, const lc_run_result *base, const lc__move *rows, size_t n)
{
    size_t cnt[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++)
        if (rows[i].metric != LC_METRIC_UNKNOWN)
            cnt[rows[i].change]++;
    fprintf(f, "### Against the base run: %zu regressed, %zu improved, %zu unchanged\n\n", cnt[LC__REGRESSED],
            cnt[LC__IMPROVED], cnt[LC__UNCHANGED]);
    run_line(f, "Base: ", base);
    fputs("A checked metric regressed when its error grew by more than the noise band (a quarter of the "
          "bound's budget; every bound is at least 4x its measured floor) or its check went from pass to "
          "fail; improved the other way.\n\n", f);
    int listed = 0, gone = 0;
    for (size_t i = 0; i < n; i++)
        gone += rows[i].metric == LC_METRIC_UNKNOWN && rows[i].c == NULL && rows[i].bc != NULL;
    for (size_t i = 0; i < n; i++) { /* case-level: verdict changes, new and gone */
        const lc__move *m = &rows[i];
        if (m->metric != LC_METRIC_UNKNOWN || listed >= 6 || (gone > 3 && m->c == NULL))
            continue;
        if (m->c && m->bc && m->k == NULL && m->bk == NULL) {
            if (!m->flags)
                continue;
            fputs("- ", f);
            md_code(f, m->c->name);
            fprintf(f, ": verdict **%s → %s**\n", lc_verdict_name(m->bc->verdict), lc_verdict_name(m->c->verdict));
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
        } else {
            continue;
        }
        listed++;
    }
    if (gone > 3)
        fprintf(f, "- %d cases of the base run were not run now\n", gone);
    if (listed || gone > 3)
        fputs("\n", f);
    for (int which = LC__REGRESSED; which <= LC__IMPROVED; which++) {
        if (cnt[which] == 0)
            continue;
        const int fold = which == LC__IMPROVED;
        if (fold)
            fprintf(f, "<details><summary>Improved (%zu)</summary>\n\n", cnt[which]);
        else
            fprintf(f, "Regressed (%zu%s):\n\n", cnt[which], cnt[which] > MD_MAX_MOVE_ROWS ? ", the first shown" : "");
        fputs(move_head, f);
        size_t shown = 0;
        for (size_t i = 0; i < n && shown < MD_MAX_MOVE_ROWS; i++)
            if (rows[i].metric != LC_METRIC_UNKNOWN && (int)rows[i].change == which) {
                move_row(f, &rows[i]);
                shown++;
            }
        fputs(fold ? "\n</details>\n\n" : "\n", f);
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
    lc__diag d;
    lc__diagnose(r, &d);
    lc_afile af;
    int rc = lc_afile_open(&af, path, err);
    if (rc) {
        free(rows);
        return rc;
    }
    FILE *f = af.f;
    headline(f, r, &d);
    run_line(f, "", r);
    fputs("**Diagnosis.** ", f);
    md_text(f, d.text);
    fputs("\n\n", f);
    causes_section(f, &d);
    problems_section(f, r);
    if (base != NULL)
        moved_section(f, base, rows, n);
    folded_failing(f, &d);
    folded_passing(f, r);
    fputs("Every check with its bound, margin and location, and the per-position plots: `report.html`.\n", f);
    free(rows);
    return lc_afile_commit(&af, err);
}
