/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the result records (harness/records/results.c) and the report writers (reports/).
 *
 * A run is built by hand: pass, fail, error and skip cases, NaN and infinite metrics, curves
 * with gaps. Every format is written under LC_BINARY_DIR and checked against strings and
 * numbers written out here by hand (console lines, Markdown rows, margins), against a minimal
 * XML well-formedness checker of this file, and the SVG plots against the numbers they draw.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plot_svg.h"
#include "report_util.h"
#include "reports.h"
#include "results.h"
#include "check_main.h"

#define OUT_DIR LC_BINARY_DIR "/reports_out"

/* ---------------------------------------------------------------- helpers */

static void ensure_out_dir(void)
{
    if (mkdir(OUT_DIR, 0777) != 0)
        ck_assert_msg(access(OUT_DIR, W_OK) == 0, "cannot create %s", OUT_DIR);
}

/* The whole file as a NUL-terminated malloc'ed string (NULL when unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (;;) {
        n += fread(s + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        s = realloc(s, cap *= 2);
    }
    fclose(f);
    s[n] = '\0';
    return s;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

#define ck_assert_contains(hay, needle)                                                     \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "expected to find\n  %s\nin %s", (needle), \
                  #hay)

/* Same double: bit for bit, or both NaN. */
static int same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* ---------------------------------------------------------------- the hand-built run */

/* Every field set, each to its own value; positions at LC_NO_POS where marked. */
static void fill_metrics(lc_metrics *m, double s)
{
    memset(m, 0, sizeof *m);
    m->positions = 8;
    m->values = 151936;
    m->n_included = 7;
    m->n_values = 7 * 151936;
    m->n_kl = 6;
    m->nonfinite = 0;
    m->n_nan = 0;
    m->nonfinite_pos = LC_NO_POS;
    m->nonfinite_index = LC_NO_POS;
    m->max_abs = 3.2e-5 * s;
    m->max_abs_pos = 5;
    m->max_abs_index = 4242;
    m->max_abs_actual = -7.125 * s;
    m->max_abs_expected = -7.1250320000000001 * s;
    m->max_rel = 1.0 / 3.0 * s;
    m->max_rel_pos = 4;
    m->max_rel_index = 99;
    m->allclose_fail = 12;
    m->allclose_frac = 12.0 / (7 * 151936);
    m->allclose_first_pos = 1;
    m->allclose_first_index = 3;
    m->nmse = 1e-310 * s; /* subnormal */
    m->ulp = LC_ULP_F32;
    m->max_ulp = (UINT64_C(1) << 60) + 3; /* above 2^53: written as a string */
    m->max_ulp_pos = 2;
    m->max_ulp_index = 77;
    m->min_cosine = 0.99999;
    m->min_cosine_pos = 6;
    m->kl_mean = 1e-9 * s;
    m->kl_max = 1e-8;
    m->kl_p999 = 9e-9;
    m->kl_max_pos = 3;
    m->top1_agree = 6;
    m->top1_frac = 1.0;
    m->top1_first_mismatch_pos = LC_NO_POS;
    m->top1_first_mismatch_actual = LC_NO_POS;
    m->top1_first_mismatch_expected = LC_NO_POS;
    m->topk = 5;
    m->topk_mean = 0.96666666666666667;
    m->topk_min = 0.8;
    m->topk_min_pos = 0;
}

static void add_check(lc_comparison *k, lc_metric_id id, double value, double bound,
                      double margin, int pass)
{
    ck_assert_int_lt(k->n_checks, LC_MAX_CHECKS);
    lc_check *c = &k->checks[k->n_checks++];
    c->metric = id;
    c->value = value;
    c->bound = bound;
    c->margin = margin;
    c->pass = pass;
}

static lc_case_result *add_case(lc_run_result *r, const char *name, const char *kind,
                                lc_verdict v, const char *reason, double seconds)
{
    lc_case_result *c = lc_run_add_case(r);
    ck_assert_ptr_nonnull(c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->kind, sizeof c->kind, "%s", kind);
    snprintf(c->checkpoint, sizeof c->checkpoint, "golden/tiny-dense");
    c->verdict = v;
    snprintf(c->reason, sizeof c->reason, "%s", reason);
    c->seconds = seconds;
    return c;
}

static lc_comparison *add_cmp(lc_case_result *c, const char *name, const char *actual,
                              const char *expected, double s)
{
    lc_comparison *k = lc_case_add_cmp(c);
    ck_assert_ptr_nonnull(k);
    snprintf(k->name, sizeof k->name, "%s", name);
    /* a stable id from the title: spaces become '_' ("chunk 5 vs one-shot" -> "chunk_5_vs_one-shot") */
    snprintf(k->id, sizeof k->id, "%s", name);
    for (char *p = k->id; *p; p++)
        *p = *p == ' ' ? '_' : *p;
    snprintf(k->cls, sizeof k->cls, "cross");
    snprintf(k->actual, sizeof k->actual, "%s", actual);
    snprintf(k->expected, sizeof k->expected, "%s", expected);
    fill_metrics(&k->m, s);
    return k;
}

static const char *const REASON_XML =
    "chunk 5 vs one-shot: max_abs 1.2e-03 > 5e-04 at pos 7 <token> & \"more\" \x01";

/* 6 cases: 2 pass, 2 fail, 1 error, 1 skip (see the console expectations). */
static void build_run(lc_run_result *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->engine_precision, sizeof r->engine_precision, "f32");
    snprintf(r->engine, sizeof r->engine, "logitcheck-reference 0.1.0");
    snprintf(r->engine_detail, sizeof r->engine_detail, "in process, f32 build");
    snprintf(r->started, sizeof r->started, "2025-06-01T12:00:00Z");
    snprintf(r->host, sizeof r->host, "ci-host");
    snprintf(r->version, sizeof r->version, "0.1.0");
    snprintf(r->git, sizeof r->git, "abc123");
    r->seconds = 12.5;

    /* 0: pass; tightest is max_abs (1 - 3.2e-5/5e-4 = 93.6%; kl_max 99%, min_cosine 99%) */
    lc_case_result *c = add_case(r, "dense.golden.text", "golden", LC_VERDICT_PASS, "", 0.12);
    snprintf(c->description, sizeof c->description, "prefill + decode vs transformers, α=1");
    snprintf(c->labels, sizeof c->labels, "golden,text");
    lc_comparison *k = add_cmp(c, "prefill vs golden", "engine f32 prefill logits",
                               "transformers float64", 1.0);
    k->pass = 1;
    add_check(k, LC_METRIC_MAX_ABS, 3.2e-5, 5e-4, 5e-4 - 3.2e-5, 1);
    add_check(k, LC_METRIC_KL_MAX, 1e-8, 1e-6, 1e-6 - 1e-8, 1);
    add_check(k, LC_METRIC_MIN_COSINE, 0.99999, 0.999, 0.99999 - 0.999, 1);
    const double curve0[8] = {1e-6, 3.2e-5, NAN, 0.0, -0.0, 0.1, 1.0 / 3.0, DBL_MIN};
    ck_assert_int_eq(lc_cmp_set_curve(k, curve0, 8), 0);

    /* 1: fail in its second comparison (2.4x the bound), XML specials in the reason */
    c = add_case(r, "moe.chunked.edges", "chunked", LC_VERDICT_FAIL, REASON_XML, 0.5);
    snprintf(c->labels, sizeof c->labels, ",a,,");
    k = add_cmp(c, "chunk 1 vs one-shot", "engine f32 chunked logits", "engine one-shot", 0.0);
    k->pass = 1;
    add_check(k, LC_METRIC_MAX_ABS, 0.0, 0.0, 0.0, 1);
    k = add_cmp(c, "chunk 5 vs one-shot", "engine f32 chunked logits", "engine one-shot", 1.0);
    k->m.max_abs = 1.2e-3;
    k->m.max_abs_pos = 7;
    k->m.max_abs_index = 1234;
    add_check(k, LC_METRIC_MAX_ABS, 1.2e-3, 5e-4, 5e-4 - 1.2e-3, 0);
    add_check(k, LC_METRIC_NMSE, 4e-6, 1e-5, 1e-5 - 4e-6, 1);
    const double curve1[5] = {0, 1e-4, 1.2e-3, 3e-4, 1e-5};
    ck_assert_int_eq(lc_cmp_set_curve(k, curve1, 5), 0);

    /* 2: fail with NaN: max_abs NaN (worst of all), nonfinite 3 > 0 */
    c = add_case(r, "dense.cache.nan", "cache", LC_VERDICT_FAIL, "cached vs uncached: NaN", 0.03);
    k = add_cmp(c, "cached vs uncached", "engine f32 cached logits", "engine f32 uncached", 1.0);
    k->m.max_abs = NAN;
    k->m.max_abs_pos = 2;
    k->m.max_abs_index = 17;
    k->m.nonfinite = 3;
    k->m.n_nan = 3;
    k->m.nonfinite_pos = 2;
    k->m.nonfinite_index = 17;
    k->m.kl_mean = INFINITY;
    k->m.kl_max = -INFINITY;
    add_check(k, LC_METRIC_MAX_ABS, NAN, 1e-5, NAN, 0);
    add_check(k, LC_METRIC_NONFINITE, 3, 0, -3, 0);
    const double curve2[4] = {1e-7, NAN, INFINITY, -INFINITY};
    ck_assert_int_eq(lc_cmp_set_curve(k, curve2, 4), 0);

    /* 3: error, no comparisons */
    add_case(r, "vision.multi_image.positions", "multi_image", LC_VERDICT_ERROR,
             "golden/x.h5: dataset 'cases/y/logits' is missing", 0.0);
    /* 4: skipped */
    c = add_case(r, "moe.snapshot.prefix", "snapshot", LC_VERDICT_SKIP, "needs the f64 build", 0);
    snprintf(c->labels, sizeof c->labels, "slow");
    /* 5: pass with a zero-budget (exact) check, no curve */
    c = add_case(r, "dense.kernel.mrope", "kernel", LC_VERDICT_PASS, "", 0.01);
    snprintf(c->labels, sizeof c->labels, "unit,kernel");
    k = add_cmp(c, "mrope text vs 1d", "engine f32 rotated q", "engine f32 1-D rope", 0.0);
    k->pass = 1;
    add_check(k, LC_METRIC_TOP1_AGREE, 1.0, 1.0, 0.0, 1);
}

/* ---------------------------------------------------------------- records */

START_TEST(test_reports_records_grow_and_free)
{
    lc_run_result r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 100; i++) {
        lc_case_result *c = lc_run_add_case(&r);
        ck_assert_ptr_nonnull(c);
        snprintf(c->name, sizeof c->name, "case%d", i);
        for (int j = 0; j < 3; j++) {
            lc_comparison *k = lc_case_add_cmp(c);
            const double y[3] = {i, j, NAN};
            ck_assert_int_eq(lc_cmp_set_curve(k, y, 3), 0);
            ck_assert_int_eq(lc_cmp_set_curve(k, y, 2), 0); /* replaces: no leak */
        }
    }
    ck_assert_int_eq(r.n_cases, 100);
    ck_assert_str_eq(r.cases[57].name, "case57");
    ck_assert_int_eq(r.cases[57].n_cmps, 3);
    ck_assert(r.cases[57].cmps[2].curve[0] == 57 && r.cases[57].cmps[2].n_curve == 2);
    lc_run_result_free(&r);
    ck_assert_ptr_null(r.cases);
    lc_run_result_free(&r); /* twice is safe */
}
END_TEST

START_TEST(test_reports_records_add_check)
{
    lc_comparison k;
    memset(&k, 0, sizeof k);
    k.m.max_abs = 3e-4;
    k.m.min_cosine = 0.99;
    ck_assert_ptr_nonnull(lc_cmp_add_check(&k, LC_METRIC_MAX_ABS, 5e-4));
    ck_assert(k.pass == 1 && k.checks[0].value == 3e-4 && k.checks[0].pass == 1);
    ck_assert_msg(fabs(k.checks[0].margin - 2e-4) < 1e-18, "margin %g", k.checks[0].margin);
    ck_assert_ptr_nonnull(lc_cmp_add_check(&k, LC_METRIC_MIN_COSINE, 0.999));
    ck_assert(k.checks[1].pass == 0 && k.pass == 0);
    while (k.n_checks < LC_MAX_CHECKS)
        ck_assert_ptr_nonnull(lc_cmp_add_check(&k, LC_METRIC_MAX_ABS, 1.0));
    ck_assert_ptr_null(lc_cmp_add_check(&k, LC_METRIC_MAX_ABS, 1.0));
    free(k.curve);
}
END_TEST

/* Relative margins derived by hand from the definition in results.h. */
static const struct {
    lc_metric_id id;
    double value, bound, rel;
} rel_rows[] = {
    {LC_METRIC_MAX_ABS, 3.2e-5, 5e-4, 0.936},          /* 1 - 0.064 */
    {LC_METRIC_MAX_ABS, 1e-3, 5e-4, -1.0},             /* twice the budget */
    {LC_METRIC_MAX_ABS, 0.0, 0.0, 1.0},                /* zero budget, met */
    {LC_METRIC_MAX_ABS, 1e-9, 0.0, -INFINITY},         /* zero budget, missed */
    {LC_METRIC_KL_MAX, NAN, 1e-3, NAN},
    {LC_METRIC_KL_MAX, 1e-4, NAN, NAN},
    {LC_METRIC_MIN_COSINE, 0.99999, 0.999, 0.99},      /* (0.99999-0.999)/0.001 */
    {LC_METRIC_TOP1_AGREE, 0.9, 0.95, -1.0},           /* shortfall 0.1 vs 0.05 */
    {LC_METRIC_TOP1_AGREE, 1.0, 1.0, 1.0},
    {LC_METRIC_TOP1_AGREE, 0.9, 1.0, -INFINITY},
};

START_TEST(test_reports_rel_margin_table)
{
    const lc_check k = {rel_rows[_i].id, rel_rows[_i].value, rel_rows[_i].bound, 0, 1};
    const double got = lc_check_rel_margin(&k), want = rel_rows[_i].rel;
    const int ok = isnan(want) ? isnan(got) : isinf(want) ? got == want : fabs(got - want) < 1e-9;
    ck_assert_msg(ok, "%s value %g bound %g: rel margin %.17g, expected %g",
                  lc_metric_name(k.metric), k.value, k.bound, got, want);
}
END_TEST

START_TEST(test_reports_tightest_order)
{
    lc_run_result r;
    build_run(&r);
    const lc_comparison *k = NULL;
    const lc_check *q = lc_case_tightest(&r.cases[0], &k);
    ck_assert(q == &r.cases[0].cmps[0].checks[0]); /* max_abs 93.6% beats 99%, 99% */
    q = lc_case_tightest(&r.cases[1], &k);
    ck_assert(k == &r.cases[1].cmps[1] && q == &k->checks[0]); /* the failing check */
    q = lc_case_tightest(&r.cases[2], &k);
    ck_assert(q == &r.cases[2].cmps[0].checks[0]); /* NaN is worse than -inf */
    ck_assert_ptr_null(lc_case_tightest(&r.cases[3], &k));
    ck_assert_ptr_null(k);
    ck_assert_int_eq(lc_case_failed_checks(&r.cases[2]), 2);
    int n[4];
    lc_run_counts(&r, n);
    ck_assert(n[0] == 2 && n[1] == 2 && n[2] == 1 && n[3] == 1);
    lc_run_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- numbers for people */

static const struct {
    double x;
    const char *text;
} num_rows[] = {
    {3.2e-5, "3.2e-05"}, {5e-4, "5e-04"},      {-7e-4, "-7e-04"},  {1.2e-3, "1.2e-03"},
    {0.0125, "0.0125"},  {0.5, "0.5"},         {123.456, "123"},   {42, "42"},
    {12345, "12345"},    {1.5e6, "1500000"},   {1e9 + 0.5, "1e+09"}, {2.5e5 + 0.25, "2.5e+05"}, {0.99999, "0.99999"},
    {0.999, "0.999"},    {0.9999912, "0.99999"}, {0.0, "0"},      {-0.0, "0"},
    {NAN, "nan"},        {INFINITY, "inf"},    {-INFINITY, "-inf"}, {4.68e-4, "4.68e-04"},
};

START_TEST(test_reports_number_format_table)
{
    char buf[LC__NUM_LEN];
    lc__num(buf, num_rows[_i].x);
    ck_assert_msg(strcmp(buf, num_rows[_i].text) == 0, "%.17g printed as '%s', expected '%s'",
                  num_rows[_i].x, buf, num_rows[_i].text);
}
END_TEST

static const struct {
    double rel;
    const char *text;
} pct_rows[] = {
    {0.936, "94%"}, {-1.4, "-140%"}, {0.0037, "0.37%"}, {0.0, "0%"},
    {-9437.0, "-9.44e+05%"}, {NAN, "nan"}, {-INFINITY, "-inf%"},
};

START_TEST(test_reports_percent_format_table)
{
    char buf[LC__NUM_LEN];
    lc__pct(buf, pct_rows[_i].rel);
    ck_assert_msg(strcmp(buf, pct_rows[_i].text) == 0, "%.17g printed as '%s', expected '%s'",
                  pct_rows[_i].rel, buf, pct_rows[_i].text);
}
END_TEST

/* "token" only for logits: a comparison without top-k and without "logits" in its names. */
START_TEST(test_reports_where_names_index_or_token)
{
    lc_case_result c;
    char w[160];
    memset(&c, 0, sizeof c);
    lc_comparison *k = add_cmp(&c, "vision embeddings", "engine vision tower", "transformers", 1);
    k->m.topk = 0;
    ck_assert_str_eq(lc__where(w, sizeof w, k, LC_METRIC_MAX_ABS), "at pos 5, index 4242");
    ck_assert_str_eq(lc__where(w, sizeof w, k, LC_METRIC_KL_MAX), "at pos 3");
    ck_assert_str_eq(lc__where(w, sizeof w, k, LC_METRIC_NMSE), "");
    snprintf(k->name, sizeof k->name, "prefill logits");
    ck_assert_str_eq(lc__where(w, sizeof w, k, LC_METRIC_MAX_ABS), "at pos 5, token 4242");
    k->m.top1_first_mismatch_pos = 4;
    k->m.top1_first_mismatch_actual = 10;
    k->m.top1_first_mismatch_expected = 11;
    ck_assert_str_eq(lc__where(w, sizeof w, k, LC_METRIC_TOP1_AGREE),
                     "first at pos 4 (argmax 10, expected 11)");
    free(c.cmps);
}
END_TEST

/* ---------------------------------------------------------------- console */

static const char *const console_lines[] = {
    "PASS dense.golden.text  max_abs 3.2e-05 <= 5e-04 (margin 94%)  0.12s\n",
    "FAIL moe.chunked.edges  chunk 5 vs one-shot: max_abs 1.2e-03 > 5e-04 (2.4x the bound) "
    "at pos 7, token 1234  0.50s\n",
    "FAIL dense.cache.nan  cached vs uncached: max_abs nan (bound <= 1e-05) at pos 2, token 17; "
    "1 more failing check  0.03s\n",
    "ERROR vision.multi_image.positions  golden/x.h5: dataset 'cases/y/logits' is missing  0.00s\n",
    "SKIP moe.snapshot.prefix  needs the f64 build  0.00s\n",
    "PASS dense.kernel.mrope  top1_agree 1 >= 1 (exact)  0.01s\n",
};

static char *capture_case(const lc_case_result *c, const lc_run_result *r)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    if (c)
        lc_report_console_case(f, c);
    else
        lc_report_console_summary(f, r);
    const long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

START_TEST(test_reports_console_case_lines)
{
    lc_run_result r;
    build_run(&r);
    char *got = capture_case(&r.cases[_i], NULL);
    ck_assert_msg(strcmp(got, console_lines[_i]) == 0, "case %d:\n  got      '%s'\n  expected '%s'",
                  _i, got, console_lines[_i]);
    free(got);
    lc_run_result_free(&r);
}
END_TEST

START_TEST(test_reports_console_summary_line)
{
    lc_run_result r;
    build_run(&r);
    char *got = capture_case(NULL, &r);
    ck_assert_str_eq(got, "2 passed, 2 failed, 1 errors, 1 skipped\n");
    free(got);
    r.n_cases = 3; /* pass, fail, fail: no errors or skips shown */
    got = capture_case(NULL, &r);
    ck_assert_str_eq(got, "1 passed, 2 failed\n");
    free(got);
    r.n_cases = 6;
    lc_run_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- JSON */

static void assert_same_run(const lc_run_result *a, const lc_run_result *b)
{
    ck_assert_str_eq(a->engine_precision, b->engine_precision);
    ck_assert_str_eq(a->started, b->started);
    ck_assert_str_eq(a->host, b->host);
    ck_assert_str_eq(a->version, b->version);
    ck_assert_str_eq(a->git, b->git);
    ck_assert(same_double(a->seconds, b->seconds));
    ck_assert_int_eq(a->n_cases, b->n_cases);
    for (int i = 0; i < a->n_cases; i++) {
        const lc_case_result *x = &a->cases[i], *y = &b->cases[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_str_eq(x->kind, y->kind);
        ck_assert_str_eq(x->checkpoint, y->checkpoint);
        ck_assert_str_eq(x->description, y->description);
        ck_assert_str_eq(x->labels, y->labels);
        ck_assert_str_eq(x->reason, y->reason);
        ck_assert_int_eq(x->verdict, y->verdict);
        ck_assert(same_double(x->seconds, y->seconds));
        ck_assert_int_eq(x->n_cmps, y->n_cmps);
        for (int j = 0; j < x->n_cmps; j++) {
            const lc_comparison *p = &x->cmps[j], *q = &y->cmps[j];
            ck_assert_str_eq(p->name, q->name);
            ck_assert_str_eq(p->actual, q->actual);
            ck_assert_str_eq(p->expected, q->expected);
            ck_assert_int_eq(p->pass, q->pass);
            /* every lc_metrics field: both sides zero their padding, NaNs are the NAN macro */
            const unsigned char *mp = (const void *)&p->m, *mq = (const void *)&q->m;
            for (size_t o = 0; o < sizeof p->m; o++)
                ck_assert_msg(mp[o] == mq[o], "case %d cmp %d: lc_metrics differ at byte %zu",
                              i, j, o);
            ck_assert_int_eq(p->n_checks, q->n_checks);
            for (int c = 0; c < p->n_checks; c++) {
                const lc_check *u = &p->checks[c], *v = &q->checks[c];
                ck_assert_int_eq(u->metric, v->metric);
                ck_assert_int_eq(u->pass, v->pass);
                ck_assert_msg(same_double(u->value, v->value) && same_double(u->bound, v->bound) &&
                                  same_double(u->margin, v->margin),
                              "case %d cmp %d check %d: %.17g %.17g %.17g vs %.17g %.17g %.17g",
                              i, j, c, u->value, u->bound, u->margin, v->value, v->bound,
                              v->margin);
            }
            ck_assert_int_eq(p->n_curve, q->n_curve);
            for (int c = 0; c < p->n_curve; c++)
                ck_assert_msg(same_double(p->curve[c], q->curve[c]),
                              "case %d cmp %d curve[%d]: %.17g read back as %.17g", i, j, c,
                              p->curve[c], q->curve[c]);
        }
    }
}

START_TEST(test_reports_json_round_trip)
{
    lc_run_result r, back;
    lc_error err = {0, ""};
    build_run(&r);
    memset(&back, 0, sizeof back);
    ensure_out_dir();
    const char *path = OUT_DIR "/round.json";
    ck_assert_msg(lc_report_json_write(&r, path, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_report_json_read(&back, path, &err) == LC_OK, "%s", err.msg);
    assert_same_run(&r, &back);
    /* the documented encodings are there */
    char *text = slurp(path);
    ck_assert_contains(text, "\"format\": \"logitcheck-results\"");
    ck_assert_contains(text, "\"version\": 2");
    ck_assert_contains(text, "\"id\": \"chunk_5_vs_one-shot\"");
    ck_assert_contains(text, "\"max_ulp\": \"1152921504606846979\"");
    ck_assert_contains(text, "\"kl_mean\": \"inf\"");
    ck_assert_contains(text, "\"kl_max\": \"-inf\"");
    ck_assert_contains(text, "\"max_abs\": \"nan\"");
    ck_assert_contains(text, "\"nonfinite_pos\": null");
    ck_assert_contains(text, "\"labels\": [\"golden\", \"text\"]");
    ck_assert_contains(text, "\"labels\": [\"\", \"a\", \"\", \"\"]");
    ck_assert_contains(text, "\\u0001");
    free(text);
    /* writing what was read gives the same file */
    const char *path2 = OUT_DIR "/round2.json";
    ck_assert_msg(lc_report_json_write(&back, path2, &err) == LC_OK, "%s", err.msg);
    char *t1 = slurp(path), *t2 = slurp(path2);
    ck_assert_str_eq(t1, t2);
    free(t1);
    free(t2);
    lc_run_result_free(&back);
    lc_run_result_free(&r);
}
END_TEST

/* Each row: a change to a valid file (replace the first `from` by `to`; from == NULL: the
 * whole file is `to`) and the message expected. */
static const struct {
    const char *from, *to, *msg;
} bad_rows[] = {
    {NULL, "{\"format\": \"logitcheck-results\", \"version\": 1,", "malformed JSON: parsing stopped at line 1"},
    {NULL, "  \n", "empty file"},
    {NULL, "[1, 2]", "expected a JSON object at the top level, found an array"},
    {NULL, "{\"version\": 1}", "format: missing"},
    {"\"format\": \"logitcheck-results\"", "\"format\": \"other-results\"",
     "format: expected \"logitcheck-results\", found \"other-results\""},
    {"\"version\": 2", "\"version\": 1", "version: unsupported version 1 (this build reads version 2)"},
    {"\"host\": ", "\"hostname\": ", "run.host: missing"},
    {"\"verdict\": \"pass\"", "\"verdict\": \"maybe\"", "cases[0].verdict: expected \"pass\""},
    {"\"seconds\": 0.12", "\"seconds\": \"fast\"",
     "cases[0].seconds: expected a number or \"nan\"/\"inf\"/\"-inf\", found the string \"fast\""},
    {"\"bound\": 0.0005", "\"bound\": true",
     "cases[0].comparisons[0].checks[0].bound: expected a number or \"nan\"/\"inf\"/\"-inf\", found true"},
    {"\"metric\": \"max_abs\"", "\"metric\": \"max_abz\"",
     "cases[0].comparisons[0].checks[0].metric: unknown metric \"max_abz\""},
    {"\n            \"max_abs\": ", "\n            \"max_abz\": ",
     "cases[0].comparisons[0].metrics.max_abs: missing"},
    {"\"max_abs_pos\": 5", "\"max_abs_pos\": -5",
     "cases[0].comparisons[0].metrics.max_abs_pos: expected a non-negative integer, found the number -5"},
    {"\"ulp\": \"f32\"", "\"ulp\": \"f16\"", "metrics.ulp: expected \"none\", \"f32\" or \"f64\""},
    {"\"curve\": [1e-06, ", "\"curve\": [1e-06, {}, ",
     "cases[0].comparisons[0].curve[1]: expected a number or \"nan\"/\"inf\"/\"-inf\", found an object"},
    {"\"comparisons\": [", "\"comparisons\": {", "malformed JSON"},
    {"\"labels\": [\"golden\"", "\"labels\": [7", "cases[0].labels[0]: expected a string, found the number 7"},
    {"\"checks\": [", "\"checks\": 3, \"x\": [", "cases[0].comparisons[0].checks: expected an array, found the number 3"},
};

START_TEST(test_reports_json_reader_errors)
{
    lc_run_result r, back;
    lc_error err = {0, ""};
    build_run(&r);
    ensure_out_dir();
    const char *good = OUT_DIR "/good.json", *bad = OUT_DIR "/bad.json";
    ck_assert_msg(lc_report_json_write(&r, good, &err) == LC_OK, "%s", err.msg);
    lc_run_result_free(&r);
    char *text = slurp(good);
    if (bad_rows[_i].from == NULL) {
        spit(bad, bad_rows[_i].to);
    } else {
        char *at = strstr(text, bad_rows[_i].from);
        ck_assert_msg(at != NULL, "row %d: '%s' not in the written file", _i, bad_rows[_i].from);
        FILE *f = fopen(bad, "wb");
        fwrite(text, 1, (size_t)(at - text), f);
        fputs(bad_rows[_i].to, f);
        fputs(at + strlen(bad_rows[_i].from), f);
        fclose(f);
    }
    free(text);
    memset(&back, 0, sizeof back);
    const int rc = lc_report_json_read(&back, bad, &err);
    ck_assert_msg(rc == LC_EINPUT, "row %d: rc %d (%s)", _i, rc, err.msg);
    ck_assert_msg(strncmp(err.msg, bad, strlen(bad)) == 0, "row %d: message does not start with "
                  "the file: %s", _i, err.msg);
    ck_assert_msg(strstr(err.msg, bad_rows[_i].msg) != NULL, "row %d: message\n  %s\nlacks\n  %s",
                  _i, err.msg, bad_rows[_i].msg);
    ck_assert_msg(back.n_cases == 0 && back.cases == NULL, "row %d: record not left empty", _i);
}
END_TEST

START_TEST(test_reports_json_reader_tolerates_unknown_keys)
{
    lc_run_result r, back;
    lc_error err = {0, ""};
    build_run(&r);
    ensure_out_dir();
    const char *path = OUT_DIR "/extra.json";
    ck_assert_msg(lc_report_json_write(&r, path, &err) == LC_OK, "%s", err.msg);
    char *text = slurp(path);
    char *at = strstr(text, "\"run\": {");
    ck_assert_ptr_nonnull(at);
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, (size_t)(at - text), f);
    fputs("\"added_later\": {\"x\": [1, 2]},\n  ", f);
    fputs(at, f);
    fclose(f);
    free(text);
    memset(&back, 0, sizeof back);
    ck_assert_msg(lc_report_json_read(&back, path, &err) == LC_OK, "%s", err.msg);
    assert_same_run(&r, &back);
    lc_run_result_free(&back);
    lc_run_result_free(&r);
    ck_assert_int_eq(lc_report_json_read(&back, OUT_DIR "/does-not-exist.json", &err), LC_EINPUT);
    ck_assert_contains(err.msg, "does-not-exist.json: cannot open");
}
END_TEST

/* ---------------------------------------------------------------- Markdown */

/* The base run: the run read back, with max_abs of dense.golden.text 10x smaller, chunk 5
 * passing, and dense.kernel.mrope renamed (so it is gone, and the new one is new). */
static void build_base(lc_run_result *base)
{
    lc_run_result r;
    lc_error err = {0, ""};
    build_run(&r);
    ensure_out_dir();
    ck_assert_msg(lc_report_json_write(&r, OUT_DIR "/base.json", &err) == LC_OK, "%s", err.msg);
    lc_run_result_free(&r);
    memset(base, 0, sizeof *base);
    ck_assert_msg(lc_report_json_read(base, OUT_DIR "/base.json", &err) == LC_OK, "%s", err.msg);
    snprintf(base->git, sizeof base->git, "base000");
    base->cases[0].cmps[0].checks[0].value = 3.2e-6;
    base->cases[0].cmps[0].m.max_abs = 3.2e-6;
    /* a reworded title: the base run's comparison is still found, by its id */
    snprintf(base->cases[0].cmps[0].name, sizeof base->cases[0].cmps[0].name, "prefill against the golden");
    base->cases[1].verdict = LC_VERDICT_PASS;
    base->cases[1].cmps[1].checks[0].value = 4e-4;
    base->cases[1].cmps[1].checks[0].pass = 1;
    base->cases[1].cmps[1].pass = 1;
    snprintf(base->cases[5].name, sizeof base->cases[5].name, "dense.gone.case");
}

START_TEST(test_reports_md_contents)
{
    lc_run_result r, base;
    lc_error err = {0, ""};
    build_run(&r);
    build_base(&base);
    const char *path = OUT_DIR "/summary.md";
    ck_assert_msg(lc_report_md_write(&r, &base, path, &err) == LC_OK, "%s", err.msg);
    char *md = slurp(path);
    ck_assert_ptr_nonnull(md);
    /* the verdict first, then the diagnosis */
    ck_assert_contains(md, "## logitcheck f32 FAIL: 2 of 6 cases failed (2 passed, 1 errors, 1 skipped)\n");
    ck_assert_contains(md, "engine logitcheck-reference 0.1.0 f32 (in process, f32 build)");
    ck_assert_contains(md, "**Diagnosis.** ");
    /* failures grouped by cause, one margin convention: 1.2e-3 / 5e-4 = 2.4x the bound */
    ck_assert_contains(md, "| `chunk_N_vs_one-shot` | cross | 1 | `moe.chunked.edges` | max_abs 1.2e-03 > 5e-04 "
                           "(2.4x the bound) | at pos 7, token 1234 |\n");
    ck_assert_msg(strstr(md, "-140%") == NULL, "a percentage margin of a failing check");
    /* the error, escaped for Markdown */
    ck_assert_contains(md, "| `vision.multi_image.positions` | multi\\_image | golden/x.h5: "
                           "dataset 'cases/y/logits' is missing |\n");
    /* against the base run: a reworded title still matches by id */
    ck_assert_msg(strstr(md, "comparison gone") == NULL && strstr(md, "new comparison") == NULL,
                  "a reworded title must not lose the base comparison (matched by id)");
    ck_assert_contains(md, "### Against the base run: ");
    /* 3.2e-6 -> 3.2e-5 under a bound of 5e-4: within the band (1.25e-4), unchanged; 4e-4 -> 1.2e-3
     * crosses the bound: regressed, and says so */
    ck_assert_msg(strstr(md, "| `dense.golden.text` | `prefill_vs_golden` | max_abs") == NULL,
                  "a move within the noise band listed as regressed");
    ck_assert_contains(md, "| `moe.chunked.edges` | `chunk_5_vs_one-shot` | max_abs | 4e-04 | 1.2e-03 | 1.25e-04 | "
                           "**pass → fail** |\n");
    ck_assert_contains(md, "- `moe.chunked.edges`: verdict **pass → fail**\n");
    ck_assert_contains(md, "- new case `dense.kernel.mrope`\n");
    ck_assert_contains(md, "- case gone (only in the base run) `dense.gone.case`\n");
    /* the passing cases by kind, folded */
    ck_assert_contains(md, "- **golden** (1): `dense.golden.text` max_abs margin 94%\n");
    free(md);

    ck_assert_msg(lc_report_md_write(&r, NULL, path, &err) == LC_OK, "%s", err.msg);
    md = slurp(path);
    ck_assert_msg(strstr(md, "Against the base run") == NULL, "no base run, yet a base section");
    free(md);
    lc_run_result_free(&base);
    lc_run_result_free(&r);
}
END_TEST

/* The margin convention of every report, by hand: value, bound, direction. */
static const struct {
    lc_metric_id id;
    double value, bound;
    const char *text;
} margin_rows[] = {
    {LC_METRIC_MAX_ABS, 3.2e-5, 5e-4, "margin 94%"},
    {LC_METRIC_MAX_ABS, 1.2e-3, 5e-4, "2.4x the bound"},
    {LC_METRIC_MAX_ABS, 0, 0, "exact"},
    {LC_METRIC_MAX_ABS, 2e-3, 0, "over by 2e-03, none allowed"},
    {LC_METRIC_TOP1_AGREE, 0.676, 1, "shortfall 0.324, none allowed"},
    {LC_METRIC_MIN_COSINE, 0.99, 0.999, "10x the allowed shortfall"},
    {LC_METRIC_MAX_ABS, NAN, 5e-4, "nan"},
};

START_TEST(test_reports_margin_convention_table)
{
    lc_check k = {margin_rows[_i].id, margin_rows[_i].value, margin_rows[_i].bound, 0, 0};
    k.pass = lc_check_bound(k.metric, k.value, k.bound, &k.margin);
    char buf[LC__MARGIN_LEN];
    ck_assert_str_eq(lc__margin(buf, &k), margin_rows[_i].text);
}
END_TEST

/* Regressed / improved / unchanged against the noise band (a quarter of the bound). */
START_TEST(test_reports_base_noise_band)
{
    lc_run_result r, base;
    lc_error err = {0, ""};
    build_run(&r);
    build_base(&base);
    lc_base_counts n;
    ck_assert_int_eq(lc_report_base_counts(&r, &base, &n, &err), LC_OK);
    const int before = n.regressed;
    ck_assert_int_ge(before, 1); /* moe.chunked.edges: pass -> fail */
    /* dense.golden.text max_abs 3.2e-5 (bound 5e-4, band 1.25e-4): a base of 1e-6 is within
     * the band; a new value of 4.5e-4 still passes its bound but regressed beyond the band */
    ck_assert_double_eq(lc__noise_band(LC_METRIC_MAX_ABS, 5e-4), 1.25e-4);
    ck_assert_double_eq(lc__noise_band(LC_METRIC_TOP1_AGREE, 1.0), 0);
    base.cases[0].cmps[0].checks[0].value = 1e-6;
    ck_assert_int_eq(lc_report_base_counts(&r, &base, &n, &err), LC_OK);
    ck_assert_int_eq(n.regressed, before);
    r.cases[0].cmps[0].checks[0].value = 4.5e-4;
    ck_assert(r.cases[0].cmps[0].checks[0].pass);
    ck_assert_int_eq(lc_report_base_counts(&r, &base, &n, &err), LC_OK);
    ck_assert_int_eq(n.regressed, before + 1);
    /* and the other way round it improved */
    ck_assert_int_eq(lc_report_base_counts(&base, &r, &n, &err), LC_OK);
    ck_assert_int_ge(n.improved, 1);
    /* another precision is refused by name */
    snprintf(base.engine_precision, sizeof base.engine_precision, "f64");
    ck_assert_int_eq(lc_report_base_compatible(&r, &base, "old.json", &err), LC_EINPUT);
    ck_assert_contains(err.msg, "old.json: a base run of engine precision f64");
    snprintf(base.engine_precision, sizeof base.engine_precision, "f32");
    snprintf(r.catalog, sizeof r.catalog, "aaaa");
    snprintf(base.catalog, sizeof base.catalog, "bbbb");
    ck_assert_int_eq(lc_report_base_compatible(&r, &base, "old.json", &err), LC_EINPUT);
    ck_assert_contains(err.msg, "another catalog");
    lc_run_result_free(&base);
    lc_run_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- JUnit */

/* Minimal XML well-formedness: a prolog, balanced tags, quoted attributes, no raw '<' in
 * text or attributes, every '&' an entity. Counts start tags named `count_tag`. Returns NULL
 * when well formed, else what is wrong. */
static const char *xml_check(const char *s, const char *count_tag, int *count)
{
    char stack[16][64];
    int depth = 0, seen_root = 0;
    *count = 0;
    if (strncmp(s, "<?xml ", 6) != 0)
        return "no XML declaration";
    s = strstr(s, "?>");
    if (s == NULL)
        return "unterminated declaration";
    s += 2;
    while (*s) {
        if (*s == '&') {
            static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"};
            int ok = 0;
            for (int i = 0; i < 6; i++)
                ok |= strncmp(s, ents[i], strlen(ents[i])) == 0;
            if (!ok)
                return "a bare '&' in text";
            s++;
            continue;
        }
        if (*s != '<') {
            if (depth == 0 && !strchr(" \n\r\t", *s))
                return "text outside the root element";
            s++;
            continue;
        }
        s++;
        const int closing = *s == '/';
        s += closing;
        char name[64];
        size_t n = strcspn(s, " />\n");
        if (n == 0 || n >= sizeof name)
            return "bad tag name";
        memcpy(name, s, n);
        name[n] = '\0';
        s += n;
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], name) != 0)
                return "mismatched closing tag";
            depth--;
            if (*s++ != '>')
                return "bad closing tag";
            continue;
        }
        if (depth == 0 && seen_root++)
            return "two root elements";
        *count += strcmp(name, count_tag) == 0;
        for (;;) { /* attributes */
            while (*s == ' ' || *s == '\n')
                s++;
            if (*s == '>' || (s[0] == '/' && s[1] == '>'))
                break;
            const size_t an = strcspn(s, "=\" >");
            if (an == 0 || s[an] != '=' || s[an + 1] != '"')
                return "attribute without a quoted value";
            s += an + 2;
            for (; *s != '"'; s++) {
                if (*s == '\0' || *s == '<')
                    return "'<' or end of file inside an attribute";
                if (*s == '&' && strncmp(s, "&amp;", 5) && strncmp(s, "&lt;", 4) &&
                    strncmp(s, "&gt;", 4) && strncmp(s, "&quot;", 6) && strncmp(s, "&apos;", 6) &&
                    strncmp(s, "&#", 2))
                    return "a bare '&' in an attribute";
            }
            s++;
        }
        if (*s == '/') {
            s += 2;
        } else {
            if (depth == 16)
                return "too deep";
            memcpy(stack[depth++], name, n + 1);
            s++;
        }
    }
    return depth == 0 && seen_root ? NULL : "unclosed elements";
}

START_TEST(test_reports_junit_well_formed)
{
    lc_run_result r;
    lc_error err = {0, ""};
    build_run(&r);
    ensure_out_dir();
    const char *path = OUT_DIR "/junit.xml";
    ck_assert_msg(lc_report_junit_write(&r, path, &err) == LC_OK, "%s", err.msg);
    char *x = slurp(path);
    int n = 0;
    const char *why = xml_check(x, "testcase", &n);
    ck_assert_msg(why == NULL, "not well formed: %s", why);
    ck_assert_int_eq(n, 6);
    xml_check(x, "failure", &n);
    ck_assert_int_eq(n, 2);
    xml_check(x, "error", &n);
    ck_assert_int_eq(n, 1);
    xml_check(x, "skipped", &n);
    ck_assert_int_eq(n, 1);
    ck_assert_contains(x, "<testsuite name=\"logitcheck.f32\" tests=\"6\" failures=\"2\" "
                          "errors=\"1\" skipped=\"1\"");
    ck_assert_contains(x, "<testcase classname=\"chunked\" name=\"moe.chunked.edges\" time=\"0.500\">");
    /* the console's margin convention; the reason, escaped, leads the failure text */
    ck_assert_contains(x, "message=\"chunk 5 vs one-shot [chunk_5_vs_one-shot]: max_abs 1.2e-03 &gt; 5e-04 (2.4x the "
                          "bound) at pos 7, token 1234\" type=\"max_abs\">chunk 5 vs one-shot: max_abs 1.2e-03 &gt; "
                          "5e-04 at pos 7 &lt;token&gt; &amp; &quot;more&quot; ?\n");
    ck_assert_contains(x, "chunk 5 vs one-shot [chunk_5_vs_one-shot]: max_abs 1.2e-03 &gt; 5e-04 (2.4x the bound) "
                          "at pos 7, token 1234\n");
    ck_assert_contains(x, "<skipped message=\"needs the f64 build\"/>");
    free(x);
    lc_run_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- HTML and plots */

static int temp_files_left(const char *dir, const char *prefix)
{
    DIR *dp = opendir(dir);
    int n = 0;
    if (dp == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(dp)) != NULL;)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
             strstr(e->d_name, ".tmp-") != NULL;
    closedir(dp);
    return n;
}


static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

START_TEST(test_reports_html_is_one_file)
{
    lc_run_result r, base;
    lc_error err = {0, ""};
    build_run(&r);
    build_base(&base);
    ensure_out_dir();
    const char *path = OUT_DIR "/page.html";
    ck_assert_msg(lc_report_html_write(&r, &base, path, &err) == LC_OK, "%s", err.msg);
    char *html = slurp(path);
    ck_assert_ptr_nonnull(html);
    ck_assert_contains(html, "<h1>logitcheck f32 FAIL: 2 of 6 cases failed (2 passed, 1 errors, 1 skipped)</h1>");
    ck_assert_contains(html, "<p class=\"diag\"><b>Diagnosis.</b> ");
    ck_assert_contains(html, "&lt;token&gt; &amp; &quot;more&quot;");
    /* self-contained: no image, stylesheet or script fetched from elsewhere */
    ck_assert_msg(strstr(html, "<img") == NULL && strstr(html, "src=") == NULL && strstr(html, "href=\"http") == NULL,
                  "the page refers to another file");
    /* one inline SVG per comparison with a curve (3), each with both axis titles */
    ck_assert_int_eq(count_of(html, "<svg class=\"plot\""), 3);
    ck_assert_int_eq(count_of(html, "<text class=\"title\""), 6);
    ck_assert_contains(html, "max |a - e| (logits, log)");
    /* sortable tables, and the script that sorts them */
    ck_assert_int_ge(count_of(html, "<table class=\"sort"), 3);
    ck_assert_contains(html, "<script>document.querySelectorAll('table.sort')");
    /* regressed and improved in their own sections and colours */
    ck_assert_contains(html, "<h2 class=\"regressed\">Regressed (");
    ck_assert_contains(html, "<tr class=\"regressed\">");
    ck_assert_contains(html, "svg.plot circle.above{fill:#d93025}");
    ck_assert_int_eq(count_of(html, "<svg"), count_of(html, "</svg>"));
    free(html);
    lc_run_result_free(&base);
    lc_run_result_free(&r);
}
END_TEST

START_TEST(test_reports_svg_plot_numbers)
{
    /* 1e-6 .. 1e-3: the y axis spans decades -6 .. -3; the bound 1e-4 */
    const double y[8] = {1e-6, 1e-3, 1e-5, NAN, 5e-5, 0.0, 2e-4, 1e-6};
    lc_svg_info info;
    ensure_out_dir();
    const char *path = OUT_DIR "/plot.svg";
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    lc__svg_curve(f, y, 8, NULL, 0, 1e-4, "position", "max |a - e| (logits, log)", &info);
    fclose(f);
    ck_assert(info.ylo == -6 && info.yhi == -3);
    ck_assert_int_eq(info.n_gaps, 1);
    ck_assert_int_eq(info.n_points, 7);
    ck_assert_int_eq(info.n_above, 2);  /* 1e-3, 2e-4 */
    ck_assert_int_eq(info.n_floor, 1);  /* the 0 */
    char *svg = slurp(path);
    ck_assert_int_eq(count_of(svg, "<circle class=\"above\""), 2);
    ck_assert_int_eq(count_of(svg, "<circle class=\"in\""), 5);
    ck_assert_int_eq(count_of(svg, "<polyline"), 2); /* split at the gap */
    for (int e = -6; e <= -3; e++) { /* a label per decade */
        char lab[32];
        snprintf(lab, sizeof lab, ">1e%d</text>", e);
        ck_assert_contains(svg, lab);
    }
    ck_assert_contains(svg, ">bound 1e-04</text>");
    ck_assert_contains(svg, ">position</text>");
    /* the bound line sits 2/3 of the way up the plot area: y = top + height/3 */
    const char *bl = strstr(svg, "<line class=\"bound\"");
    ck_assert_ptr_nonnull(bl);
    double y1 = 0;
    ck_assert_int_eq(sscanf(strstr(bl, "y1=\"") + 4, "%lf", &y1), 1);
    ck_assert_msg(fabs(y1 - (14 + (250 - 14 - 46) / 3.0)) < 0.1, "bound line at y %.1f", y1);
    free(svg);
}
END_TEST

/* ---------------------------------------------------------------- the report directory */

START_TEST(test_reports_dir_written_whole)
{
    lc_run_result r;
    lc_error err = {0, ""};
    build_run(&r);
    ensure_out_dir();
    char dir[512], p[700];
    snprintf(dir, sizeof dir, "%s/repdir", OUT_DIR);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/notes.txt", dir); /* from an earlier run of this test */
    unlink(p);
    /* an earlier run's plot and report */
    snprintf(p, sizeof p, "%s/old-case--prefill.png", dir);
    spit(p, "stale");
    snprintf(p, sizeof p, "%s/report.md", dir);
    spit(p, "stale");
    ck_assert_msg(lc_report_dir_write(&r, NULL, dir, &err) == LC_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/old-case--prefill.png", dir);
    ck_assert_msg(access(p, F_OK) != 0, "a stale plot survived");
    static const char *const names[] = {"report.md", "report.html", "results.json", "junit.xml"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        ck_assert_msg(access(p, R_OK) == 0, "%s missing", p);
    }
    ck_assert_int_eq(temp_files_left(OUT_DIR, "repdir"), 0);
    /* a directory holding anything a report does not write is refused, untouched */
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    spit(p, "mine");
    ck_assert_int_eq(lc_report_dir_check(dir, &err), LC_EINPUT);
    ck_assert_contains(err.msg, "holds 'notes.txt', which no report writes");
    ck_assert_int_eq(lc_report_dir_write(&r, NULL, dir, &err), LC_EINPUT);
    ck_assert(access(p, F_OK) == 0);
    /* a missing parent is refused before anything is written */
    ck_assert_int_eq(lc_report_dir_check(LC_BINARY_DIR "/no-such-dir/rep", &err), LC_EINPUT);
    ck_assert_contains(err.msg, "no-such-dir");
    lc_run_result_free(&r);
}
END_TEST

/* The diagnosis names the classes: failures only in self-consistency comparisons here. */
START_TEST(test_reports_diagnosis_names_the_classes)
{
    lc_run_result r;
    build_run(&r);
    lc__diag d;
    lc__diagnose(&r, &d);
    ck_assert_str_eq(d.verdict, "FAIL: 2 of 6 cases failed (2 passed, 1 errors, 1 skipped)");
    ck_assert_int_eq(d.fail_golden + d.fail_self, 2);
    ck_assert_int_ge(d.n_causes, 1);
    ck_assert_msg(strstr(d.text, "Worst: moe.chunked.edges") != NULL || strstr(d.text, "Worst: dense.cache.nan") != NULL,
                  "%s", d.text);
    lc_run_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- write errors */


START_TEST(test_reports_write_errors_name_the_path)
{
    lc_run_result r;
    lc_error err = {0, ""};
    build_run(&r);
    ensure_out_dir();
    const char *missing = LC_BINARY_DIR "/no-such-dir/out";
    ck_assert_int_eq(lc_report_json_write(&r, missing, &err), LC_EINPUT);
    ck_assert_contains(err.msg, missing);
    ck_assert_contains(err.msg, "does its directory exist?");
    ck_assert_int_eq(lc_report_md_write(&r, NULL, missing, &err), LC_EINPUT);
    ck_assert_contains(err.msg, missing);
    ck_assert_int_eq(lc_report_junit_write(&r, missing, &err), LC_EINPUT);
    ck_assert_contains(err.msg, missing);
    ck_assert_int_eq(lc_report_html_write(&r, NULL, missing, &err), LC_EINPUT);
    ck_assert_contains(err.msg, missing);
    ck_assert_int_eq(access(LC_BINARY_DIR "/no-such-dir", F_OK), -1);

    /* the target is a directory: everything is written, the rename fails, the temporary
     * file goes, and what was there stays */
    const char *isdir = OUT_DIR "/isdir.md";
    mkdir(isdir, 0777);
    ck_assert_int_eq(lc_report_md_write(&r, NULL, isdir, &err), LC_EINPUT);
    ck_assert_contains(err.msg, isdir);
    ck_assert_int_eq(temp_files_left(OUT_DIR, "isdir.md"), 0);
    ck_assert_int_eq(lc_report_json_write(&r, isdir, &err), LC_EINPUT);
    ck_assert_int_eq(temp_files_left(OUT_DIR, "isdir.md"), 0);
    struct stat st;
    ck_assert(stat(isdir, &st) == 0 && S_ISDIR(st.st_mode));

    /* a successful write replaces an old file and leaves no temporary file */
    spit(OUT_DIR "/replace.xml", "old");
    ck_assert_msg(lc_report_junit_write(&r, OUT_DIR "/replace.xml", &err) == LC_OK, "%s", err.msg);
    char *x = slurp(OUT_DIR "/replace.xml");
    ck_assert_contains(x, "<testsuites");
    free(x);
    ck_assert_int_eq(temp_files_left(OUT_DIR, "replace.xml"), 0);
    lc_run_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- suite */


/* ---------------------------------------------------------------- writers past the file-size limit */

/* Each writer under a file-size limit of 64 bytes (SIGXFSZ ignored, as the CLI does): EFBIG
 * reported with the path and the system's reason, the earlier file byte-identical, no
 * temporary file left in the directory. */
static int run_writer(int which, const lc_run_result *r, const char *dir, const char *path, lc_error *err)
{
    (void)dir;
    switch (which) {
    case 0: return lc_report_json_write(r, path, err);
    case 1: return lc_report_md_write(r, NULL, path, err);
    case 2: return lc_report_junit_write(r, path, err);
    case 3: return lc_report_html_write(r, NULL, path, err);
    default: return lc_report_dir_write(r, NULL, dir, err);
    }
}

START_TEST(test_reports_writers_survive_file_size_limit)
{
    static const char *const names[] = {"results.json", "report.md", "junit.xml", "report.html", "rep/report.md"};
    ensure_out_dir();
    char dir[512], path[700], wdir[600];
    snprintf(dir, sizeof dir, "%s/fsize-%d", OUT_DIR, _i);
    mkdir(dir, 0777);
    snprintf(wdir, sizeof wdir, "%s/rep", dir);
    if (_i == 4) /* the report directory: an earlier report in it survives whole */
        mkdir(wdir, 0777);
    snprintf(path, sizeof path, "%s/%s", dir, names[_i]);
    const char *earlier = "earlier output, must survive\n";
    spit(path, earlier);
    lc_run_result r = {0};
    build_run(&r);

    struct sigaction ign = {0}, old;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &ign, &old);
    struct rlimit lim, small;
    ck_assert(getrlimit(RLIMIT_FSIZE, &lim) == 0);
    small = lim;
    small.rlim_cur = 64;
    ck_assert(setrlimit(RLIMIT_FSIZE, &small) == 0);
    lc_error err = {0};
    int rc = run_writer(_i, &r, wdir, path, &err);
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    sigaction(SIGXFSZ, &old, NULL);
    lc_run_result_free(&r);

    ck_assert_msg(rc == LC_EINPUT, "%s: rc %d (%s)", names[_i], rc, err.msg);
    ck_assert_msg(strstr(err.msg, "File too large") != NULL, "%s: %s", names[_i], err.msg);
    ck_assert_msg(strstr(err.msg, dir) != NULL, "%s: the message does not name the file: %s", names[_i], err.msg);
    char *now = slurp(path);
    ck_assert_str_eq(now, earlier);
    free(now);
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        ck_assert_msg(strstr(e->d_name, ".tmp-") == NULL, "left behind: %s/%s", dir, e->d_name);
    closedir(d);
}
END_TEST

static Suite *reports_suite(void)
{
    Suite *s = suite_create("reports");
    TCase *tc = tcase_create("records");
    tcase_add_test(tc, test_reports_records_grow_and_free);
    tcase_add_test(tc, test_reports_records_add_check);
    tcase_add_loop_test(tc, test_reports_rel_margin_table, 0,
                        (int)(sizeof rel_rows / sizeof rel_rows[0]));
    tcase_add_test(tc, test_reports_tightest_order);
    suite_add_tcase(s, tc);

    tc = tcase_create("console");
    tcase_add_loop_test(tc, test_reports_number_format_table, 0,
                        (int)(sizeof num_rows / sizeof num_rows[0]));
    tcase_add_loop_test(tc, test_reports_percent_format_table, 0,
                        (int)(sizeof pct_rows / sizeof pct_rows[0]));
    tcase_add_test(tc, test_reports_where_names_index_or_token);
    tcase_add_loop_test(tc, test_reports_console_case_lines, 0,
                        (int)(sizeof console_lines / sizeof console_lines[0]));
    tcase_add_test(tc, test_reports_console_summary_line);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, test_reports_json_round_trip);
    tcase_add_loop_test(tc, test_reports_json_reader_errors, 0,
                        (int)(sizeof bad_rows / sizeof bad_rows[0]));
    tcase_add_test(tc, test_reports_json_reader_tolerates_unknown_keys);
    suite_add_tcase(s, tc);

    tc = tcase_create("documents");
    tcase_add_test(tc, test_reports_md_contents);
    tcase_add_test(tc, test_reports_junit_well_formed);
    tcase_add_test(tc, test_reports_html_is_one_file);
    tcase_add_test(tc, test_reports_svg_plot_numbers);
    tcase_add_test(tc, test_reports_dir_written_whole);
    tcase_add_test(tc, test_reports_diagnosis_names_the_classes);
    tcase_add_loop_test(tc, test_reports_margin_convention_table, 0,
                        (int)(sizeof margin_rows / sizeof margin_rows[0]));
    tcase_add_test(tc, test_reports_base_noise_band);
    tcase_add_test(tc, test_reports_write_errors_name_the_path);
    tcase_add_loop_test(tc, test_reports_writers_survive_file_size_limit, 0, 5);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(reports_suite());
}
