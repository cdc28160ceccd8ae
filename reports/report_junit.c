/* SPDX-License-Identifier: MIT */
/*
 * JUnit XML for CI test reporters (see reports.h). One testsuite per run, one testcase per
 * case; the failure text lists every failing check with where it happened.
 */
#include <stdio.h>

#include "report_util.h"
#include "reports.h"

static void attr(FILE *f, const char *name, const char *value)
{
    fprintf(f, " %s=\"", name);
    lc__put_xml(f, value, 1);
    fputc('"', f);
}

/* "prefill vs golden [prefill_logits]: max_abs 1.2e-03 > 5e-04 (2.4x the bound) at pos 7, token 3":
 * the console's form (one margin convention in every report). */
static void check_line(char *line, size_t n, const lc_comparison *k, const lc_check *q)
{
    char v[LC__NUM_LEN], b[LC__NUM_LEN], m[LC__MARGIN_LEN], w[160];
    lc__where(w, sizeof w, k, q->metric);
    snprintf(line, n, "%s [%s]: %s %s %s %s (%s)%s%s", k->name, k->id, lc_metric_name(q->metric),
             lc__num(v, q->value), lc__relation(q->metric, q->pass), lc__num(b, q->bound), lc__margin(m, q),
             w[0] ? " " : "", w);
}

/* One line per failing check. */
static void failing_checks(FILE *f, const lc_case_result *c)
{
    char line[512];
    for (int j = 0; j < c->n_cmps; j++) {
        const lc_comparison *k = &c->cmps[j];
        for (int i = 0; i < k->n_checks; i++) {
            if (k->checks[i].pass)
                continue;
            check_line(line, sizeof line, k, &k->checks[i]);
            lc__put_xml(f, line, 0);
            fputc('\n', f);
        }
    }
}

static void testcase(FILE *f, const lc_case_result *c)
{
    char t[32];
    fputs("    <testcase", f);
    attr(f, "classname", c->kind);
    attr(f, "name", c->name);
    snprintf(t, sizeof t, "%.3f", c->seconds >= 0 ? c->seconds : 0.0);
    attr(f, "time", t);
    switch (c->verdict) {
    case LC_VERDICT_PASS:
        fputs("/>\n", f);
        return;
    case LC_VERDICT_FAIL: {
        const lc_comparison *k = NULL;
        const lc_check *q = lc_case_tightest(c, &k);
        char line[1100];
        if (q != NULL && !q->pass)
            check_line(line, sizeof line, k, q);
        else
            snprintf(line, sizeof line, "%s", c->reason);
        fputs(">\n      <failure", f);
        attr(f, "message", line);
        attr(f, "type", q != NULL && !q->pass ? lc_metric_name(q->metric) : "fail");
        fputs(">", f);
        if (c->reason[0]) {
            lc__put_xml(f, c->reason, 0);
            fputc('\n', f);
        }
        failing_checks(f, c);
        fputs("</failure>\n", f);
        break;
    }
    case LC_VERDICT_ERROR:
        fputs(">\n      <error", f);
        attr(f, "message", c->reason);
        attr(f, "type", "error");
        fputs("/>\n", f);
        break;
    case LC_VERDICT_SKIP:
        fputs(">\n      <skipped", f);
        attr(f, "message", c->reason);
        fputs("/>\n", f);
        break;
    }
    fputs("    </testcase>\n", f);
}

int lc_report_junit_write(const lc_run_result *r, const char *path, lc_error *err)
{
    lc_afile af;
    int rc = lc_afile_open(&af, path, err);
    if (rc)
        return rc;
    FILE *f = af.f;
    int n[4];
    char suite[64], num[32];
    lc_run_counts(r, n);
    snprintf(suite, sizeof suite, "logitcheck.%s", r->engine_precision[0] ? r->engine_precision : "run");
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
    for (int level = 0; level < 2; level++) {
        fputs(level ? "  <testsuite" : "<testsuites", f);
        attr(f, "name", level ? suite : "logitcheck");
        fprintf(f, " tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\"", r->n_cases,
                n[LC_VERDICT_FAIL], n[LC_VERDICT_ERROR], n[LC_VERDICT_SKIP]);
        snprintf(num, sizeof num, "%.3f", r->seconds >= 0 ? r->seconds : 0.0);
        attr(f, "time", num);
        if (r->started[0])
            attr(f, "timestamp", r->started);
        if (level && r->host[0])
            attr(f, "hostname", r->host);
        fputs(">\n", f);
    }
    fputs("    <properties>\n", f);
    const char *props[][2] = {{"engine_precision", r->engine_precision},
                              {"engine", r->engine},
                              {"engine_detail", r->engine_detail},
                              {"logitcheck_version", r->version},
                              {"git", r->git}};
    for (int i = 0; i < (int)(sizeof props / sizeof props[0]); i++) {
        fputs("      <property", f);
        attr(f, "name", props[i][0]);
        attr(f, "value", props[i][1]);
        fputs("/>\n", f);
    }
    fputs("    </properties>\n", f);
    for (int i = 0; i < r->n_cases; i++)
        testcase(f, &r->cases[i]);
    fputs("  </testsuite>\n</testsuites>\n", f);
    return lc_afile_commit(&af, err);
}
