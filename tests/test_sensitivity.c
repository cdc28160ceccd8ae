/* SPDX-License-Identifier: MIT */
/*
 * Sensitivity: planted errors of realistic size must make the right case fail on the right
 * comparison (by its id) and metric, and the same case must pass without the plant (so the
 * failure is the plant's doing). Plants: every row of the in-process engine's fault table
 * (harness/engines/faults.h; a row without an expectation here fails), and golden data altered
 * in memory. Bad goldens (missing, truncated, mis-shaped) must give an error verdict with a
 * reason, never a pass.
 */
#include <check.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "faults.h"
#include "runner.h"

static lc_catalog cat;
static lc_engine *clean;

static void setup(void)
{
    lc_error err;
    lc_catalog_init(&cat);
    ck_assert_msg(lc_catalog_load_dir(&cat, LC_SOURCE_DIR "/cases", LC_SOURCE_DIR, &err) == 0, "%s", err.msg);
    ck_assert_msg(lc_engine_ref_new(&clean, NULL, &err) == 0, "%s", err.msg);
}

static void teardown(void)
{
    lc_catalog_free(&cat);
    lc_engine_free(clean);
    clean = NULL;
}

static const lc_case *find(const char *name)
{
    const lc_case *c = lc_catalog_find(&cat, name);
    ck_assert_msg(c != NULL, "case '%s' is not in the catalog", name);
    return c;
}

/* Cases already seen passing on the clean engine, by name (the engine is deterministic: one
 * clean run per case is proof enough, and keeps the suite quick under valgrind). */
static char clean_seen[64][128];
static int n_clean_seen;

static int passed_clean(const lc_case *c)
{
    for (int i = 0; i < n_clean_seen; i++)
        if (!strcmp(clean_seen[i], c->name))
            return 1;
    return 0;
}

static void mark_clean(const lc_case *c)
{
    if (n_clean_seen < 64)
        snprintf(clean_seen[n_clean_seen++], sizeof clean_seen[0], "%s", c->name);
}

/* Runs `name` clean (must pass) and on `planted` with options o (must fail on a comparison
 * whose id matches the glob `cmp_id`, with `metric` among its failing checks). */
static void expect_caught(const char *name, lc_engine *planted, const lc_run_opts *o, const char *cmp_id,
                          lc_metric_id metric)
{
    const lc_case *c = find(name);
    lc_case_result a = {0}, b = {0};
    if (!passed_clean(c)) {
        lc_run_opts plain = {.root = LC_SOURCE_DIR};
        lc_verdict va = lc_run_case(c, &plain, clean, &a);
        ck_assert_msg(va == LC_VERDICT_PASS, "%s must pass without the plant: %s", name, a.reason);
        mark_clean(c);
    }
    lc_verdict vb = lc_run_case(c, o, planted, &b);
    ck_assert_msg(vb == LC_VERDICT_FAIL, "%s with the plant: verdict %s (%s), expected fail", name,
                  lc_verdict_name(vb), b.reason);
    int found = 0;
    for (int i = 0; i < b.n_cmps && !found; i++) {
        const lc_comparison *cmp = &b.cmps[i];
        if (cmp->pass || fnmatch(cmp_id, cmp->id, 0))
            continue;
        for (int k = 0; k < cmp->n_checks; k++)
            found |= !cmp->checks[k].pass && cmp->checks[k].metric == metric;
    }
    ck_assert_msg(found, "%s: no failing '%s' check in a comparison with id like '%s' (reason: %s)", name,
                  lc_metric_name(metric), cmp_id, b.reason);
    lc_case_result_free(&a);
    lc_case_result_free(&b);
}

/* ---------------------------------------------------------------- the fault table */

/* What proves each planted bug caught: two cases per engine precision that must fail it,
 * and the comparison (id glob) that must fail on max_abs (or, in the float build, on the
 * metric `metric32` names when it is not max_abs). A precision without two cases names the
 * gap instead; the test prints it (the plant moves the tiny checkpoints' outputs less than
 * the float build's own rounding does). */
typedef struct {
    const char *spec;           /* as --inject takes it */
    const char *f32[2], *f64[2];
    const char *cmp_id;
    const char *gap;            /* why a precision has no cases, or NULL */
    const char *cmp_id2;        /* the second case's comparison (NULL: cmp_id) */
    lc_metric_id metric;        /* the metric that must fail in the double build */
    lc_metric_id metric32;      /* ... and in the float build */
} expectation;

static const expectation expectations[] = {
    {"pad_into_conv", {"dense.batch.mixed", "moe.batch.mixed"}, {"dense.batch.mixed", "moe.batch.mixed"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"pad_into_gdn", {"dense.batch.mixed", "dense.batch.ragged"}, {"dense.batch.mixed", "dense.batch.ragged"},
     "row*.state", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"pad_into_attention", {"dense.batch.mixed", "moe.batch.ragged"}, {"dense.batch.mixed", "moe.batch.ragged"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"row0_delta", {"dense.batch.mixed", "moe.batch.mixed"}, {"dense.batch.mixed", "moe.batch.mixed"},
     "decode_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"rope_pairs_adjacent", {"dense.golden.text", "moe.golden.image"}, {"dense.golden.text", "moe.golden.image"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"stale_rope_delta", {"dense.golden.image_last", "dense.cache.image"},
     {"dense.golden.image_last", "dense.cache.image"}, "decode_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"shallow_snapshot", {"dense.snapshot.prefix", "moe.image_checkpoint.after_image"},
     {"dense.snapshot.prefix", "moe.image_checkpoint.after_image"}, "*.suffix", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"refeed_last_token", {"dense.snapshot.prefix", "moe.snapshot.prefix"},
     {"dense.snapshot.prefix", "moe.snapshot.prefix"}, "*.hit_decode", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"image_delta_kept", {"dense.isolation.text_after_image", "moe.isolation.text_after_image"},
     {"dense.isolation.text_after_image", "moe.isolation.text_after_image"}, "a_after_b", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"rms_eps=1e-5", {"dense.golden.text", "moe.golden.text"}, {"dense.golden.text", "moe.golden.text"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    /* (not moe.golden.text in the float build: its bound stays 5e-4, the plant lands at 4e-4) */
    {"input_norm_eps_x10", {"dense.golden.text", "moe.golden.image"}, {"dense.golden.text", "moe.golden.text"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"post_norm_eps_x10", {"dense.golden.text", "moe.golden.image"}, {"dense.golden.text", "moe.golden.text"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    /* a tenfold final-norm epsilon scales every logits row by about 1 - 1.2e-6: under max_abs's
     * float floors, 4.5x to 9x over scale_bias's (cases/README.md) */
    {"final_norm_eps_x10", {"dense.golden.text", "moe.golden.text"}, {"dense.golden.text", "moe.golden.text"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_SCALE_BIAS},
    {"q_norm_eps_x10", {NULL, NULL}, {"dense.golden.text", "moe.golden.text"}, "prefill_logits",
     "f32: it moves the tiny checkpoints' logits by 2.3e-6 to 4.9e-6 (f64 build), under every float floor of "
     "max_abs, and leaves scale_bias at its floor", NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"k_norm_eps_x10", {NULL, NULL}, {"dense.golden.text", "moe.golden.text"}, "prefill_logits",
     "f32: it moves the tiny checkpoints' logits by 2.2e-6 to 5.6e-6 (f64 build), under every float floor of "
     "max_abs, and leaves scale_bias at its floor", NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"gdn_norm_eps_x10", {"dense.golden.text", "moe.golden.text"}, {"dense.golden.text", "moe.golden.text"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"rope_theta_scale=1.01", {"dense.kernel.mrope_text", "moe.kernel.mrope_text"},
     {"dense.kernel.mrope_text", "moe.multi_image.three"}, "*", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"moe_no_renorm", {"moe.golden.text", "moe.golden.image_first"}, {"moe.golden.text", "moe.golden.image_first"},
     "prefill_logits", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    /* ---- serving state: continuous batching, the prefix cache, interleaved requests */
    {"prefix_longer_state", {"dense.prefix_cache.turns", "moe.prefix_cache.turns"},
     {"dense.prefix_cache.turns", "moe.prefix_cache.turns"}, "req1.logits", NULL, "counters", LC_METRIC_MAX_ABS,
     LC_METRIC_MAX_ABS},
    {"slot_conv_kept", {"dense.continuous_batch.schedule", "moe.continuous_batch.schedule"},
     {"dense.continuous_batch.schedule", "moe.continuous_batch.schedule"}, "req*.logits", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"shared_rope_delta", {"dense.continuous_batch.schedule", "moe.isolation.interleaved_images"},
     {"dense.continuous_batch.schedule", "moe.isolation.interleaved_images"}, "req0.logits", NULL, "a_interleaved",
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"prefix_pos_from_offset", {"dense.prefix_cache.turns", "moe.prefix_cache.turns"},
     {"dense.prefix_cache.turns", "moe.prefix_cache.turns"}, "req5.logits", NULL, NULL, LC_METRIC_MAX_ABS,
     LC_METRIC_MAX_ABS},
    {"prefix_trim_kv_only", {"dense.prefix_cache.turns", "moe.prefix_cache.turns"},
     {"dense.prefix_cache.turns", "moe.prefix_cache.turns"}, "req3.logits", NULL, "counters", LC_METRIC_MAX_ABS,
     LC_METRIC_MAX_ABS},
    /* ---- video: positions and expansion against transformers' video processor and get_rope_index */
#define VID_CASES(a, b) {a, b}, {a, b}
    {"video_one_block", VID_CASES("dense.video.golden_8f", "moe.video.two_videos"), "position_ids", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"video_ts_no_advance", VID_CASES("dense.video.golden_7f_odd", "moe.video.golden_8f"), "position_ids", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"video_temporal_per_token", VID_CASES("dense.video.image_and_video", "moe.video.sampled_fps4"), "position_ids",
     NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"video_odd_unpadded", VID_CASES("dense.video.golden_7f_odd", "moe.video.two_videos"), "input_ids.len", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
#undef VID_CASES
    /* ---- speculative decoding: verify / accept against plain decoding, the MTP head against its golden */
#define BOTH(a, b) {a, b}, {a, b}
    {"spec_commit_rejected", BOTH("dense.speculative.reject_all", "moe.speculative.mtp_k2"), "state", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"spec_conv_kept", BOTH("dense.speculative.forced_mixed_k6", "moe.speculative.chunk_edge"), "state", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"spec_accept_off_by_one", BOTH("dense.speculative.reject_all", "moe.speculative.budget_mtp"), "tokens", NULL,
     NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"mtp_concat_swapped", BOTH("dense.mtp_head.text", "moe.mtp_head.image"), "mtp_logits", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"mtp_prenorm_hidden", BOTH("dense.mtp_head.image", "moe.mtp_head.text"), "mtp_logits", NULL, NULL,
     LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
    {"spec_snapshot_after_verify", BOTH("dense.speculative.prefix_cache", "moe.speculative.image_forced"),
     "prefix_restore", NULL, NULL, LC_METRIC_MAX_ABS, LC_METRIC_MAX_ABS},
#undef BOTH
    /* ---- backward passes (vjp): the gradient cases against float64 autograd */
#define GRAD_CASES(a, b) {a, b}, {a, b}
    {"vjp_gdn_no_decay", GRAD_CASES("dense.gradient.gdn_n70.recurrent", "moe.gradient.layer_gdn_chunk5"),
     "grad_state0", NULL, "grad_w/linear_attn.A_log", LC_METRIC_MAX_ABS_SCALED, LC_METRIC_MAX_ABS_SCALED},
    {"vjp_beta_no_sigmoid", GRAD_CASES("dense.gradient.layer_gdn", "moe.gradient.layer_gdn_padded"),
     "grad_w/linear_attn.in_proj_b.weight", NULL, NULL, LC_METRIC_MAX_ABS_SCALED, LC_METRIC_MAX_ABS_SCALED},
    {"vjp_conv_state_dropped", GRAD_CASES("dense.gradient.conv.chunk64", "dense.gradient.conv.chunk2"), "grad_x",
     NULL, "grad_state0", LC_METRIC_MAX_ABS_SCALED, LC_METRIC_MAX_ABS_SCALED},
    {"vjp_rope_wrong_way", GRAD_CASES("dense.gradient.mrope", "moe.gradient.layer_attn"), "grad_q", NULL,
     "grad_w/self_attn.k_proj.weight", LC_METRIC_MAX_ABS_SCALED, LC_METRIC_MAX_ABS_SCALED},
    {"vjp_l2norm_no_eps", GRAD_CASES("dense.gradient.l2norm", "dense.gradient.layer_gdn_padded"), "grad_x", NULL,
     "grad_w/linear_attn.conv1d.weight", LC_METRIC_NONFINITE, LC_METRIC_NONFINITE},
#undef GRAD_CASES
};
#define N_EXPECT ((int)(sizeof expectations / sizeof expectations[0]))

START_TEST(test_sensitivity_fault_caught)
{
    const lc_fault f = (lc_fault)_i;
    const char *name = lc_fault_name(f);
    const expectation *x = NULL;
    for (int i = 0; i < N_EXPECT && !x; i++)
        if (!strncmp(expectations[i].spec, name, strlen(name)) &&
            (expectations[i].spec[strlen(name)] == '\0' || expectations[i].spec[strlen(name)] == '='))
            x = &expectations[i];
    ck_assert_msg(x != NULL, "fault '%s' has no case proven to catch it (add it to expectations[])", name);
    lc_fault_set fs = {0};
    lc_error err = {0};
    lc_engine *planted = NULL;
    ck_assert_msg(lc_fault_parse(&fs, x->spec, &err) == 0, "%s", err.msg);
    ck_assert_msg(lc_engine_ref_new(&planted, &fs, &err) == 0, "%s", err.msg);
    const char *const *cases = clean->info.precision == LC_EPREC_F64 ? x->f64 : x->f32;
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    if (!cases[0]) {
        ck_assert_msg(x->gap != NULL, "fault '%s': no cases for %s and no gap named", name,
                      lc_eprec_name(clean->info.precision));
        printf("plant '%s': not caught by two cases of the %s build: %s\n", x->spec,
               lc_eprec_name(clean->info.precision), x->gap);
    }
    for (int k = 0; k < 2 && cases[k]; k++) {
        printf("plant '%s' -> %s\n", x->spec, cases[k]);
        expect_caught(cases[k], planted, &o, k && x->cmp_id2 ? x->cmp_id2 : x->cmp_id,
                      clean->info.precision == LC_EPREC_F64 ? x->metric : x->metric32);
    }
    lc_engine_free(planted);
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
    expect_caught("dense.golden.text", clean, &o, "prefill_logits", LC_METRIC_MAX_ABS);
    lc_case_result r = {0};
    lc_run_case(find("dense.golden.text"), &o, clean, &r);
    int found = 0;
    for (int i = 0; i < r.n_cmps; i++)
        if (!strcmp(r.cmps[i].id, "prefill_logits")) {
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
    expect_caught("dense.golden.image", clean, &o, "position_ids", LC_METRIC_MAX_ABS);
}
END_TEST

START_TEST(test_sensitivity_golden_nan)
{
    perturb p = {"decode_logits", 3, NAN};
    lc_run_opts o = {.root = LC_SOURCE_DIR, .golden_hook = perturb_hook, .hook_ctx = &p};
    expect_caught("dense.golden.text", clean, &o, "decode_logits", LC_METRIC_NONFINITE);
}
END_TEST

/* ---------------------------------------------------------------- bad goldens */

static void expect_error(const char *golden_path, const char *reason_substr)
{
    lc_case c = *find("dense.golden.text");
    c.golden = (char *)golden_path;
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    lc_case_result r = {0};
    lc_verdict v = lc_run_case(&c, &o, clean, &r);
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
    tcase_add_loop_test(tc, test_sensitivity_fault_caught, 0, LC_FAULT_COUNT);
    tcase_add_test(tc, test_sensitivity_golden_logit_moved);
    tcase_add_test(tc, test_sensitivity_golden_position_moved);
    tcase_add_test(tc, test_sensitivity_golden_nan);
    tcase_add_test(tc, test_sensitivity_bad_goldens);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
