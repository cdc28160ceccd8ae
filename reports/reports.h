/* SPDX-License-Identifier: MIT */
/*
 * Report writers: what a run produced (lc_run_result, results.h), written for the people and
 * tools that read it. They read result records only and never call the engine.
 *
 *   JSON      for tools, and as the base run of a later comparison (read back losslessly)
 *   Markdown  a summary to paste as a pull-request comment
 *   JUnit XML for CI test reporters (GitLab, Jenkins, GitHub)
 *   HTML      a page with every check, its margin, per-position plots and what moved
 *   console   one progress line per case and the closing count line CI log parsers read
 *
 * Every file writer writes into a temporary file next to the target (same directory, name
 * "<target>.tmp-<pid>-<n>") and renames it into place only when everything was written, so a
 * failure never leaves a truncated report nor destroys the previous one, and leaves no
 * temporary file behind. Errors: LC_EINPUT for anything about the path or the file system
 * (missing directory, no permission, disk full; the message names the path and the system's
 * reason), LC_EINPUT for a malformed results file being read, LC_EINTERNAL when out of
 * memory. Nothing here prints (except the console functions, to the stream given), exits or
 * keeps global state.
 *
 * Numbers shown to people (Markdown, HTML, console) have three significant digits, in
 * exponent form below 1e-2 and from 1e5 up ("3.2e-05", "1.2e-03", "0.0125", "42", "2.5e+05"),
 * with as many more digits as a fraction just below 1 needs not to read as 1 ("0.99999"); integers
 * below 1e9 print exactly; NaN and infinities print as "nan", "inf", "-inf". A check's margin
 * is shown as the absolute margin and as the share of the bound's budget left
 * (lc_check_rel_margin): "max_abs 3.2e-05 <= 5e-04 (margin 94%)".
 *
 * The JSON format ("logitcheck-results", version 1) is specified in reports/README.md.
 */
#ifndef LC_REPORTS_H
#define LC_REPORTS_H

#include <stdio.h>

#include "lc_error.h"
#include "results.h"

#define LC_RESULTS_FORMAT "logitcheck-results"
#define LC_RESULTS_VERSION 2 /* 2: comparison ids and classes, the engine, top1_agree_margin */

/* ---------------------------------------------------------------- JSON */

/* Writes r to path as JSON (format above). Every double is written so that it reads back
 * bit for bit (shortest of %.15g/%.16g/%.17g that round-trips); NaN and infinities, which
 * JSON has no numbers for, as the strings "nan", "inf", "-inf". r stays the caller's.
 * Returns LC_OK, or an error code with err naming path. */
int lc_report_json_write(const lc_run_result *r, const char *path, lc_error *err);

/* Reads a results file written by lc_report_json_write into r, which must be empty (zeroed
 * or freed). Validates the format name and version, and the presence and type of every
 * field the writer writes; an error names the file and the field
 * ("base.json: cases[2].comparisons[0].checks[1].bound: expected a number or
 * \"nan\"/\"inf\"/\"-inf\", found true"). Unknown keys are ignored; derived fields ("counts",
 * "values") are not read. On success r owns what was read (lc_run_result_free); on failure
 * r is left empty. Returns LC_OK, LC_EINPUT or LC_EINTERNAL. */
int lc_report_json_read(lc_run_result *r, const char *path, lc_error *err);

/* ---------------------------------------------------------------- Markdown */

/* Writes a pull-request-comment summary of r to path, short enough to read in ten seconds
 * (under 60 lines for a failing run of the whole catalog):
 * - the headline "logitcheck f32: FAIL, 18 of 63 cases failed (45 passed, 0 errors)" and one
 *   line of run metadata;
 * - the diagnosis: which comparison classes fail and which pass, and what that says, the first
 *   diverging stage in words, the worst location (lc__diagnose);
 * - the failures grouped by cause (comparison id and class): cases, the worst check, where;
 * - errors, skips and missing taps when there are any;
 * - with a base run: regressed, improved and unchanged counts and the regressed metrics;
 * - folded: the failing cases by cause and the passing cases by kind with their tightest
 *   margin. Every single check is in the HTML report.
 * r and base stay the caller's. Returns LC_OK or an error code with err naming path. */
int lc_report_md_write(const lc_run_result *r, const lc_run_result *base, const char *path,
                       lc_error *err);

/* ---------------------------------------------------------------- JUnit XML */

/* Writes r as JUnit XML: <testsuites> holding one <testsuite name="logitcheck.<precision>">
 * with one <testcase classname="<kind>" name="<case name>" time="<seconds>"> per case;
 * a failing case carries <failure message="<reason>" type="<metric of its worst check>">
 * whose text lists every failing check; an errored case <error message="<reason>">;
 * a skipped one <skipped message="<reason>"/>. Text is XML-escaped; control characters
 * XML cannot carry and invalid UTF-8 bytes become '?'. Returns LC_OK or an error code. */
int lc_report_junit_write(const lc_run_result *r, const char *path, lc_error *err);

/* ---------------------------------------------------------------- HTML */

/* Writes the HTML report to path: one self-contained file (inline CSS, a small inline script
 * that sorts tables by a click on a column head, plots as inline SVG; no other file). It
 * leads with the verdict and the diagnosis (lc__diagnose), then the failures grouped by
 * cause, every failing check, against a base run (when given) the regressed, improved and
 * unchanged metrics in their own sections and colours, the case table, and per case every
 * check with its bound, margin and location and a plot of each per-position curve (max
 * |a-e| per position or stage on a log axis with axis titles and units, the max_abs bound
 * dashed, the base run's curve in grey). Returns LC_OK or an error code naming the file. */
int lc_report_html_write(const lc_run_result *r, const lc_run_result *base, const char *path,
                         lc_error *err);

/* ---------------------------------------------------------------- against a base run */

/* How the checked metrics of r moved against base (cases matched by name, comparisons by id,
 * metrics by id): regressed (the error grew beyond the noise band, became NaN, or the check
 * went from pass to fail), improved (the reverse), unchanged (within the band). The band of a
 * check is a quarter of its error budget: the bound, or 1 - bound for lower bounds (every
 * bound of the catalog is at least 4x its measured floor). Returns LC_OK or LC_EINTERNAL (out
 * of memory). */
typedef struct {
    int regressed, improved, unchanged;
} lc_base_counts;
int lc_report_base_counts(const lc_run_result *r, const lc_run_result *base, lc_base_counts *out,
                          lc_error *err);

/* Whether base may serve as r's base run: the same engine precision and the same catalog
 * (run.catalog, when both record one). Returns LC_OK, or LC_EINPUT with err naming base_path
 * and what differs. */
int lc_report_base_compatible(const lc_run_result *r, const lc_run_result *base, const char *base_path,
                              lc_error *err);

/* ---------------------------------------------------------------- the report directory */

/* Whether dir can receive a report: its parent exists and is writable, and dir is absent,
 * empty, or holds only what a report directory holds (report.md, report.html, results.json,
 * junit.xml, and the *.png plots of earlier versions). Called before any case runs, so an
 * unusable --report fails at once. Returns LC_OK or LC_EINPUT naming dir and the problem. */
int lc_report_dir_check(const char *dir, lc_error *err);

/* Writes results.json, report.md, junit.xml and report.html into a new directory next to dir
 * ("<dir>.tmp-<pid>-<n>") and then puts it in dir's place in one rename (an existing dir is
 * exchanged atomically and then removed), so dir always holds one run's complete report and
 * nothing of an earlier run. dir must pass lc_report_dir_check. On failure the temporary
 * directory is removed and dir is left as it was. Returns LC_OK or an error code. */
int lc_report_dir_write(const lc_run_result *r, const lc_run_result *base, const char *dir,
                        lc_error *err);

/* The first diverging stage of the run in words, for a bisect's answer: "dense.golden.text:
 * after layer 0 (hidden state max |a-e| 9.41e-03 vs bound 1e-09)", or "no stage diverges
 * (...)" when no failing case's stage check leaves its bound. Writes at most n bytes. */
const char *lc_report_first_stage(const lc_run_result *r, char *buf, size_t n);

/* ---------------------------------------------------------------- console */

/* Prints one line for the case:
 *   PASS dense.golden.text  max_abs 3.2e-05 <= 5e-04 (margin 94%)  0.12s
 *   FAIL dense.golden.text  prefill vs golden: max_abs 1.2e-03 > 5e-04 (2.4x the bound) at pos 7, token 1234  0.12s
 *   ERROR dense.golden.text  <reason>  0.00s
 *   SKIP dense.golden.text  <reason>  0.00s
 * PASS shows the tightest check ("(exact)" instead of a margin when the bound allows no
 * error, "no checks" when there is none); FAIL the worst failing check, its comparison and
 * where it happened (from the metrics' positions), with "; N more failing checks" when there
 * are others, or the reason when no check failed. Line breaks in names or reasons print as
 * spaces. */
void lc_report_console_case(FILE *out, const lc_case_result *c);

/* Prints the closing line, on a line of its own, in exactly this form:
 *   N passed, N failed[, N errors][, N skipped]
 * the last two only when not zero. */
void lc_report_console_summary(FILE *out, const lc_run_result *r);

#endif /* LC_REPORTS_H */
