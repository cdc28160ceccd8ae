/* SPDX-License-Identifier: MIT */
/*
 * Console output: one progress line per case and the closing count line (see reports.h).
 * The closing line's form is fixed: CI log parsers read it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report_util.h"
#include "reports.h"

static const char *const verdict_words[] = {"PASS", "FAIL", "ERROR", "SKIP"};

/* "max_abs 3.2e-05 <= 5e-04 (margin 94%)", "(exact)" for a zero budget */
static void passing_check(FILE *out, const lc_check *k)
{
    char v[LC__NUM_LEN], b[LC__NUM_LEN], m[LC__MARGIN_LEN];
    fprintf(out, "%s %s %s %s (%s)", lc_metric_name(k->metric), lc__num(v, k->value),
            lc__relation(k->metric, 1), lc__num(b, k->bound), lc__margin(m, k));
}

/* "prefill vs golden: max_abs 1.2e-03 > 5e-04 (2.4x the bound) at pos 7, token 1234" */
static void failing_check(FILE *out, const lc_comparison *c, const lc_check *k)
{
    char v[LC__NUM_LEN], b[LC__NUM_LEN], m[LC__MARGIN_LEN], w[160];
    lc__put_line(out, c->name);
    fprintf(out, ": %s %s ", lc_metric_name(k->metric), lc__num(v, k->value));
    if (isnan(k->value) || isnan(k->bound))
        fprintf(out, "(bound %s %s)", lc__relation(k->metric, 1), lc__num(b, k->bound));
    else
        fprintf(out, "%s %s (%s)", lc__relation(k->metric, 0), lc__num(b, k->bound), lc__margin(m, k));
    lc__where(w, sizeof w, c, k->metric);
    if (w[0])
        fprintf(out, " %s", w);
}

void lc_report_console_case(FILE *out, const lc_case_result *c)
{
    const int v = (int)c->verdict;
    fprintf(out, "%s ", v >= 0 && v < 4 ? verdict_words[v] : "?");
    lc__put_line(out, c->name);
    fputs("  ", out);
    const lc_comparison *k = NULL;
    const lc_check *q = lc_case_tightest(c, &k);
    if (c->verdict == LC_VERDICT_PASS) {
        if (q != NULL)
            passing_check(out, q);
        else
            fputs("no checks", out);
        fputs("  ", out);
    } else if (c->verdict == LC_VERDICT_FAIL && q != NULL && !q->pass) {
        failing_check(out, k, q);
        const int more = lc_case_failed_checks(c) - 1;
        if (more > 0)
            fprintf(out, "; %d more failing check%s", more, more > 1 ? "s" : "");
        fputs("  ", out);
    } else if (c->reason[0]) {
        lc__put_line(out, c->reason);
        fputs("  ", out);
    }
    if (c->not_compared[0])
        fprintf(out, "(not compared, engine lacks: %s)  ", c->not_compared);
    fprintf(out, "%.2fs\n", c->seconds);
}

void lc_report_console_summary(FILE *out, const lc_run_result *r)
{
    int n[4];
    lc_run_counts(r, n);
    fprintf(out, "%d passed, %d failed", n[LC_VERDICT_PASS], n[LC_VERDICT_FAIL]);
    if (n[LC_VERDICT_ERROR])
        fprintf(out, ", %d errors", n[LC_VERDICT_ERROR]);
    if (n[LC_VERDICT_SKIP])
        fprintf(out, ", %d skipped", n[LC_VERDICT_SKIP]);
    fputc('\n', out);
}
