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

/* Writes a pull-request-comment summary of r to path:
 * - the headline "logitcheck f32: 41 passed, 1 failed, 0 errors" (", N skipped" when some
 *   were) and one line of run metadata;
 * - failed checks first (case, comparison, metric, value, bound, margin), then errored cases
 *   with their reason;
 * - every case with its tightest check (the worst metric relative to its bound);
 * - when base is not NULL, "what moved": per case, comparison and checked metric the base
 *   value, the new value and their ratio, flagged when it moved by more than 2x either way
 *   or its check changed verdict; cases whose verdict changed; cases and comparisons new or
 *   gone. For metrics bounded from below (cosine, top-1, top-k: ideal 1) the ratio compares
 *   the shortfalls from 1. Flagged rows come first; the full table follows, folded, capped
 *   at a few hundred rows (the HTML report has them all).
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

/* Writes dir/report.html and, next to it, one PNG plot per comparison that has a curve of
 * two or more positions
 * ("NNN-KK-<case>--<comparison>.png", NNN/KK the case and comparison index): the
 * per-position max |a-e| on a log axis, the max_abs bound as a red line, the base run's curve
 * (when base has the same case and comparison) in grey beneath. The page is self-contained
 * (inline CSS, no script) apart from those PNG files, which it links by relative name, so
 * the directory can be archived or served as is. Creates dir when it does not exist (its
 * parent must). The page shows the summary, failed checks, what moved (when base is given),
 * and per case every check with its bound, margin and pass/fail colour, the base value and
 * ratio, the plot and every measured metric with its location. Returns LC_OK or an error
 * code naming the file. */
int lc_report_html_write(const lc_run_result *r, const lc_run_result *base, const char *dir,
                         lc_error *err);

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
