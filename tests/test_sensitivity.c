/*
 * Sensitivity: planted errors of realistic size must make the right case fail on the right
 * comparison and metric, and the same case must pass without the plant (so the failure is
 * the plant's doing). Plants: engine faults (qref_faults), harness-side state bugs
 * (lc_run_opts), a perturbed RMSNorm epsilon, and golden data altered in memory. Bad goldens
 * (missing, truncated, mis-shaped) must give an error verdict with a reason, never a pass.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"
#include "check_main.h"

static lc_catalog cat;
static lc_model_pool pool;

static void setup(void)
{
    lc_error err;
    lc_catalog_init(&cat);
    lc_model_pool_init(&pool);
    ck_assert_msg(lc_catalog_load_dir(&cat, LC_SOURCE_DIR "/cases", LC_SOURCE_DIR, &err) == 0, "%s", err.msg);
}

static void teardown(void)
{
    lc_catalog_free(&cat);
    lc_model_pool_free(&pool);
}

static const lc_case *find(const char *name)
{
    const lc_case *c = lc_catalog_find(&cat, name);
    ck_assert_msg(c != NULL, "case '%s' is not in the catalog", name);
    return c;
}

/* Runs `name` clean (must pass) and with the plant (must fail on a comparison whose name
 * contains `cmp_substr`, with `metric` among its failing checks). */
static void expect_caught(const char *name, const lc_run_opts *planted, const char *cmp_substr, lc_metric_id metric)
{
    const lc_case *c = find(name);
    lc_run_opts clean = {.root = LC_SOURCE_DIR};
    lc_case_result a = {0}, b = {0};
    lc_verdict va = lc_run_case(c, &clean, &pool, &a);
    ck_assert_msg(va == LC_VERDICT_PASS, "%s must pass without the plant: %s", name, a.reason);
    lc_verdict vb = lc_run_case(c, planted, &pool, &b);
    ck_assert_msg(vb == LC_VERDICT_FAIL, "%s with the plant: verdict %s (%s), expected fail", name,
                  lc_verdict_name(vb), b.reason);
    int found = 0;
    for (int i = 0; i < b.n_cmps && !found; i++) {
        const lc_comparison *cmp = &b.cmps[i];
        if (cmp->pass || !strstr(cmp->name, cmp_substr))
            continue;
        for (int k = 0; k < cmp->n_checks; k++)
            found |= !cmp->checks[k].pass && cmp->checks[k].metric == metric;
    }
    ck_assert_msg(found, "%s: no failing '%s' check in a comparison named like '%s' (reason: %s)", name,
                  lc_metric_name(metric), cmp_substr, b.reason);
    lc_case_result_free(&a);
    lc_case_result_free(&b);
}

/* ---------------------------------------------------------------- planted bugs, table-driven */

typedef struct {
    const char *what;           /* the planted bug, for failure messages */
    qref_faults faults;         /* engine faults */
    double rms_eps;             /* > 0: RMSNorm epsilon override (the config says 1e-6) */
    int stale_rope_delta, shallow_snapshot, refeed_last_token;
    const char *cases[2];       /* cases that must catch it */
    const char *comparison;     /* a substring of the comparison that must fail */
} plant;

static const plant plants[] = {
    {"RMSNorm eps 1e-6 -> 1e-5", {0}, 1e-5, 0, 0, 0, {"dense.golden.text", "moe.golden.text"}, "prefill logits"},
    {"rotary pairs (2i, 2i+1) instead of rotate-half", {.rope_pairs_adjacent = 1}, 0, 0, 0, 0,
     {"dense.golden.text", "moe.golden.image"}, "logits"},
    {"stale MRoPE delta in decode", {0}, 0, 1, 0, 0, {"dense.golden.image_last", "dense.cache.image"},
     "decode logits"},
    {"pad not masked in the conv", {.pad_into_conv = 1}, 0, 0, 0, 0, {"dense.batch.mixed", "moe.batch.mixed"},
     "each row alone"},
    {"pad updating the recurrent state", {.pad_into_gdn = 1}, 0, 0, 0, 0, {"dense.batch.mixed", "dense.batch.ragged"},
     "state after the batched prefill"},
    {"pad attended to", {.pad_into_attention = 1}, 0, 0, 0, 0, {"dense.batch.mixed", "moe.batch.ragged"},
     "each row alone"},
    {"row 0's rope delta used for every row", {.row0_delta = 1}, 0, 0, 0, 0, {"dense.batch.mixed", "moe.batch.mixed"},
     "batched decode (per-row offsets and deltas)"},
    {"snapshot as a shallow view", {0}, 0, 0, 1, 0, {"dense.snapshot.prefix", "moe.image_checkpoint.after_image"},
     "restoring the snapshot"},
    {"last token fed twice on a prefix hit", {0}, 0, 0, 0, 1, {"dense.snapshot.prefix", "moe.snapshot.prefix"},
     "exact full-prompt hit"},
};
#define N_PLANTS ((int)(sizeof plants / sizeof plants[0]))

START_TEST(test_sensitivity_plant_caught)
{
    const plant *p = &plants[_i];
    lc_run_opts o = {.root = LC_SOURCE_DIR,
                     .faults = &p->faults,
                     .rms_eps_override = p->rms_eps,
                     .stale_rope_delta = p->stale_rope_delta,
                     .shallow_snapshot = p->shallow_snapshot,
                     .refeed_last_token = p->refeed_last_token};
    for (int k = 0; k < 2; k++) {
        printf("plant '%s' -> %s\n", p->what, p->cases[k]);
        expect_caught(p->cases[k], &o, p->comparison, LC_METRIC_MAX_ABS);
    }
}
END_TEST

/* ---------------------------------------------------------------- goldens altered in memory */

typedef struct {
    const char *dataset;
    size_t index;
    double delta;
} perturb;

static void perturb_hook(void *ctx, const char *case_name, const char *dataset, double *data, size_t count)
{
    const perturb *p = ctx;
    (void)case_name;
    if (!strcmp(dataset, p->dataset) && p->index < count)
        data[p->index] += p->delta;
}

START_TEST(test_sensitivity_golden_logit_moved)
{
    /* one logit moved by 2e-3 (4x the float bound): found at its position and token */
    perturb p = {"prefill_logits", 5 * 1024 + 77, 2e-3};
    lc_run_opts o = {.root = LC_SOURCE_DIR, .golden_hook = perturb_hook, .hook_ctx = &p};
    expect_caught("dense.golden.text", &o, "prefill logits", LC_METRIC_MAX_ABS);
    lc_case_result r = {0};
    lc_run_case(find("dense.golden.text"), &o, &pool, &r);
    int found = 0;
    for (int i = 0; i < r.n_cmps; i++)
        if (!strcmp(r.cmps[i].name, "prefill logits")) {
            ck_assert_uint_eq(r.cmps[i].m.max_abs_pos, 5);
            ck_assert_uint_eq(r.cmps[i].m.max_abs_index, 77);
            found = 1;
        }
    ck_assert(found);
    lc_case_result_free(&r);
}
END_TEST

START_TEST(test_sensitivity_golden_position_moved)
{
    /* one H position off by one: the exact position comparison fails */
    perturb p = {"position_ids", 1 * 22 + 9, 1};
    lc_run_opts o = {.root = LC_SOURCE_DIR, .golden_hook = perturb_hook, .hook_ctx = &p};
    expect_caught("dense.golden.image", &o, "position ids", LC_METRIC_MAX_ABS);
}
END_TEST

START_TEST(test_sensitivity_golden_nan)
{
    perturb p = {"decode_logits", 3, NAN};
    lc_run_opts o = {.root = LC_SOURCE_DIR, .golden_hook = perturb_hook, .hook_ctx = &p};
    expect_caught("dense.golden.text", &o, "decode logits", LC_METRIC_NONFINITE);
}
END_TEST

/* ---------------------------------------------------------------- bad goldens */

static void expect_error(const char *golden_path, const char *reason_substr)
{
    lc_case c = *find("dense.golden.text");
    c.golden = (char *)golden_path;
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    lc_case_result r = {0};
    lc_verdict v = lc_run_case(&c, &o, &pool, &r);
    ck_assert_msg(v == LC_VERDICT_ERROR, "golden %s: verdict %s, expected error", golden_path, lc_verdict_name(v));
    ck_assert_msg(strstr(r.reason, reason_substr) != NULL, "reason '%s' lacks '%s'", r.reason, reason_substr);
    lc_case_result_free(&r);
}

static void copy_prefix(const char *from, const char *to, long bytes)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert(in && out);
    char buf[65536];
    long left = bytes;
    size_t n;
    while (left > 0 && (n = fread(buf, 1, left < (long)sizeof buf ? (size_t)left : sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, out);
        left -= (long)n;
    }
    fclose(in);
    fclose(out);
}

START_TEST(test_sensitivity_bad_goldens)
{
    expect_error(LC_BINARY_DIR "/no-such-golden.h5", "no-such-golden.h5");
    const char *trunc = LC_BINARY_DIR "/truncated-golden.h5";
    copy_prefix(LC_SOURCE_DIR "/golden/tiny-dense.h5", trunc, 4096);
    expect_error(trunc, "truncated-golden.h5");
    /* a golden of another checkpoint: the group is missing */
    expect_error(LC_SOURCE_DIR "/golden/tiny-moe.h5", "no group");
    /* the fixture reference has no /cases layout at all */
    expect_error(LC_SOURCE_DIR "/golden/hf-tiny-reference.h5", "no group");
    remove(trunc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sensitivity");
    TCase *tc = tcase_create("plants");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_sensitivity_plant_caught, 0, N_PLANTS);
    tcase_add_test(tc, test_sensitivity_golden_logit_moved);
    tcase_add_test(tc, test_sensitivity_golden_position_moved);
    tcase_add_test(tc, test_sensitivity_golden_nan);
    tcase_add_test(tc, test_sensitivity_bad_goldens);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
