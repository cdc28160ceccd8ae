/* SPDX-License-Identifier: MIT */
/*
 * The per-request prompt options of the engine interface (lc_prompt_in: image_min_pixels,
 * image_max_pixels, pad_to; capabilities pixel_limits and pad_to) on the in-process reference
 * engine and the tiny dense checkpoint:
 *   - pixel bounds: the grid and expanded token count of img_a.png (96 x 64) under lowered
 *     max_pixels and raised min_pixels equal smart_resize worked out by hand (below);
 *   - pad_to: a batch of one row padded beyond its length gives, at its real columns, the
 *     logits the row gives alone (within the cross-schedule bound), NaN at the pads, and
 *     batched decode after it equals decode after the row alone;
 *   - bad values (min > max, below one merge block, pad_to below the prompt, negative) are
 *     LC_EINPUT with one line naming the problem; a field without its capability is
 *     LC_EUNSUPPORTED naming it, and the runner SKIPs the real-scale cases that need them.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "check_main.h"
#include "dense_fixture.h"
#include "lc_engine.h"
#include "runner.h"

#define IMG_A LC_SOURCE_DIR "/golden/tiny-dense/img_a.png" /* 96 wide, 64 high */

/* The cross-schedule bound of the engine's precision (cases/README.md), which the batch cases
 * hold a row against the row alone to. */
static double cross_bound(void)
{
    return eng->info.precision == LC_EPREC_F64 ? 1e-11 : 3e-4;
}

static double max_abs_diff(const double *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        m = d > m || isnan(d) ? d : m;
    }
    return m;
}

static const int32_t pre[] = {902, 925, 888}, post[] = {201, 160};
static const int32_t text_ids[] = {12, 845, 33, 610, 71, 2, 930, 402, 118, 64, 77, 5, 301, 996, 16, 250, 9};
#define N_TEXT ((int)(sizeof text_ids / sizeof text_ids[0]))

/* pre, img_a, post with the given options; the return code of prompt_open. */
static int open_image(long min_px, long max_px, int pad_to, lc_prompt_info *pi, lc_error *err)
{
    lc_pseg segs[3] = {{.type = LC_PSEG_IDS, .ids = pre, .n_ids = 3},
                       {.type = LC_PSEG_IMAGE, .image = IMG_A},
                       {.type = LC_PSEG_IDS, .ids = post, .n_ids = 2}};
    lc_prompt_in in = {.segs = segs, .n_segs = 3, .image_min_pixels = min_px, .image_max_pixels = max_px,
                       .pad_to = pad_to};
    return lc_engine_prompt_open(eng, &in, pi, err);
}

static int placeholders(const lc_prompt_info *pi)
{
    int k = 0;
    for (int i = 0; i < pi->n; i++)
        k += pi->ids[i] == mi.image_token_id;
    return k;
}

/* ---------------------------------------------------------------- pixel bounds */

START_TEST(test_pixel_limits_hand_derived)
{
    /* smart_resize of 64 x 96 (height x width), factor = patch 16 * merge 2 = 32, by hand:
     *   the checkpoint's bounds [1024, 1048576]: round(64/32)*32 = 64, round(96/32)*32 = 96,
     *     6144 pixels inside them: grid (1, 4, 6), 24 patches, 6 placeholders;
     *   max_pixels 4096: 6144 > 4096, beta = sqrt(6144/4096) = 1.2247;
     *     floor(64/1.2247/32) = floor(1.633) = 1 -> 32, floor(96/1.2247/32) = floor(2.449) = 2 -> 64:
     *     grid (1, 2, 4), 8 patches, 2 placeholders;
     *   min_pixels 16384: 6144 < 16384, beta = sqrt(16384/6144) = 1.6330;
     *     ceil(64*1.6330/32) = ceil(3.266) = 4 -> 128, ceil(96*1.6330/32) = ceil(4.899) = 5 -> 160:
     *     grid (1, 8, 10), 80 patches, 20 placeholders. */
    static const struct {
        long min_px, max_px;
        int grid[3], tokens;
    } rows[] = {{0, 0, {1, 4, 6}, 6}, {0, 4096, {1, 2, 4}, 2}, {16384, 0, {1, 8, 10}, 20},
                {1024, 6144, {1, 4, 6}, 6}, {4096, 4096, {1, 2, 4}, 2}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lc_error err = {0};
        lc_prompt_info pi = {0};
        ck_assert_msg(open_image(rows[i].min_px, rows[i].max_px, 0, &pi, &err) == LC_OK, "%s", err.msg);
        ck_assert_int_eq(pi.n_images, 1);
        ck_assert_msg(pi.grid[0][0] == rows[i].grid[0] && pi.grid[0][1] == rows[i].grid[1] &&
                          pi.grid[0][2] == rows[i].grid[2],
                      "bounds [%ld, %ld]: grid (%d, %d, %d)", rows[i].min_px, rows[i].max_px, pi.grid[0][0],
                      pi.grid[0][1], pi.grid[0][2]);
        ck_assert_int_eq(placeholders(&pi), rows[i].tokens);
        ck_assert_int_eq(pi.n, 3 + 2 + rows[i].tokens + 2);
        double *emb = NULL;
        int n_rows = 0;
        ck_assert_msg(lc_engine_vision(eng, pi.handle, &emb, &n_rows, &err) == LC_OK, "%s", err.msg);
        ck_assert_int_eq(n_rows, rows[i].tokens); /* the vision tower ran on the resized image */
        free(emb);
        /* the image starts at s = 4 (3 ids, vision_start); vision_end at s + max(rows, cols) of
         * the merged grid, the first id after it one further */
        const int m = rows[i].grid[1] / 2 > rows[i].grid[2] / 2 ? rows[i].grid[1] / 2 : rows[i].grid[2] / 2;
        ck_assert_int_eq(pi.pos[pi.n - 2], 4 + m + 1);
        lc_engine_prompt_close(eng, pi.handle);
        lc_prompt_info_free(&pi);
    }
}
END_TEST

START_TEST(test_pixel_limits_bad)
{
    static const struct {
        long min_px, max_px;
        const char *want;
    } rows[] = {{8192, 4096, "min_pixels 8192 exceeds max_pixels 4096"},
                {2000000, 0, "min_pixels 2000000 exceeds max_pixels 1048576 (one of them the processor's)"},
                {0, 1000, "max_pixels 1000 is below one merge block (1024 pixels"},
                {512, 0, "min_pixels 512 is below one merge block (1024 pixels"},
                {-1, 0, "negative"}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lc_error err = {0};
        lc_prompt_info pi = {0};
        ck_assert_int_eq(open_image(rows[i].min_px, rows[i].max_px, 0, &pi, &err), LC_EINPUT);
        ck_assert_msg(strstr(err.msg, rows[i].want) && !strchr(err.msg, '\n'), "[%ld, %ld]: %s", rows[i].min_px,
                      rows[i].max_px, err.msg);
    }
}
END_TEST

/* ---------------------------------------------------------------- pad_to */

/* One row of prompt p (n tokens) alone: its prefill logits (n, V) and, after token 40, its
 * decode logits (V). */
static void alone(const lc_prompt_info *p, double *rows, double *dec)
{
    lc_error err = {0};
    int seq;
    ck_assert(lc_engine_seq_open(eng, &seq, &err) == LC_OK);
    lc_prefill_out o = {.sel = LC_LOGITS_ALL, .logits = rows};
    ck_assert_msg(lc_engine_prefill(eng, seq, p->handle, 0, p->n, &o, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_engine_decode(eng, seq, 40, dec, &err) == LC_OK, "%s", err.msg);
    lc_engine_seq_close(eng, seq);
}

/* A batch of one row of p padded to L = pad_to > p->n: prefilled in column spans [0, cut) and
 * [cut, L), then one batched decode; the real columns and the decode against the row alone. */
static void batch_of_one(const lc_prompt_info *p, int L, int cut)
{
    lc_error err = {0};
    const int V = mi.vocab_size, n = p->n;
    double *bl = malloc((size_t)L * V * sizeof *bl), *one = malloc((size_t)n * V * sizeof *one);
    double *bdec = malloc((size_t)V * sizeof *bdec), *dec = malloc((size_t)V * sizeof *dec);
    ck_assert(bl && one && bdec && dec);
    int seq, prompt = p->handle;
    ck_assert(lc_engine_seq_open(eng, &seq, &err) == LC_OK);
    ck_assert_msg(lc_engine_batch_prefill(eng, &seq, &prompt, 1, 0, cut, bl, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_engine_batch_prefill(eng, &seq, &prompt, 1, cut, L, bl + (size_t)cut * V, &err) == LC_OK, "%s",
                  err.msg);
    /* a span past the layout is refused: the layout is exactly L columns */
    ck_assert_int_eq(lc_engine_batch_prefill(eng, &seq, &prompt, 1, L, L + 1, bl, &err), LC_EINPUT);
    for (int j = 0; j < L - n; j++)
        ck_assert_msg(isnan(bl[(size_t)j * V]), "pad column %d is not NaN", j);
    int32_t tok = 40;
    ck_assert_msg(lc_engine_batch_decode(eng, &seq, &tok, 1, bdec, &err) == LC_OK, "%s", err.msg);
    alone(p, one, dec);
    double d = max_abs_diff(bl + (size_t)(L - n) * V, one, (size_t)n * V);
    ck_assert_msg(d <= cross_bound(), "batch of one padded to %d vs alone: %g", L, d);
    d = max_abs_diff(bdec, dec, (size_t)V);
    ck_assert_msg(d <= cross_bound(), "batched decode after pad_to %d vs alone: %g", L, d);
    lc_engine_seq_close(eng, seq);
    free(bl), free(one), free(bdec), free(dec);
}

START_TEST(test_pad_to_batch_of_one)
{
    lc_error err = {0};
    lc_pseg seg = {.type = LC_PSEG_IDS, .ids = text_ids, .n_ids = N_TEXT};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1, .pad_to = N_TEXT + 5};
    lc_prompt_info pt = {0}, pi = {0};
    ck_assert_msg(lc_engine_prompt_open(eng, &in, &pt, &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(pt.n, N_TEXT); /* pad_to shapes the batch layout only */
    batch_of_one(&pt, N_TEXT + 5, 3);  /* the first span all pads */
    batch_of_one(&pt, N_TEXT + 5, 9);  /* the first span pads and tokens */
    /* an image row (the positions and the image rows shift with the pads), bounds and pad_to
     * together: 2 placeholders (test_pixel_limits_hand_derived), 9 tokens, 4 pads */
    ck_assert_msg(open_image(0, 4096, 13, &pi, &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(pi.n, 9);
    batch_of_one(&pi, 13, 6);
    lc_prompt_info_free(&pt);
    lc_prompt_info_free(&pi);
}
END_TEST

START_TEST(test_pad_to_bad)
{
    lc_error err = {0};
    lc_prompt_info pi = {0};
    ck_assert_int_eq(open_image(0, 4096, 8, &pi, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "pad_to 8 is below the prompt's 9 expanded tokens") && !strchr(err.msg, '\n'),
                  "%s", err.msg);
    ck_assert_int_eq(open_image(0, 0, -2, &pi, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "pad_to -2 is negative"), "%s", err.msg);
}
END_TEST

/* ---------------------------------------------------------------- capabilities */

START_TEST(test_options_need_capabilities)
{
    lc_engine *m = malloc(sizeof *m);
    *m = *eng;
    m->info.caps &= ~(1u << LC_CAP_PIXEL_LIMITS | 1u << LC_CAP_PAD_TO);
    lc_error err = {0};
    lc_pseg seg = {.type = LC_PSEG_IMAGE, .image = IMG_A};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1, .image_max_pixels = 4096};
    lc_prompt_info pi = {0};
    ck_assert_int_eq(lc_engine_prompt_open(m, &in, &pi, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "needs capability 'pixel_limits'"), "%s", err.msg);
    in = (lc_prompt_in){.segs = &seg, .n_segs = 1, .image_min_pixels = 4096};
    ck_assert_int_eq(lc_engine_prompt_open(m, &in, &pi, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "needs capability 'pixel_limits'"), "%s", err.msg);
    in = (lc_prompt_in){.segs = &seg, .n_segs = 1, .pad_to = 100};
    ck_assert_int_eq(lc_engine_prompt_open(m, &in, &pi, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "needs capability 'pad_to'"), "%s", err.msg);

    /* the runner: the real-scale cases that need them are SKIPs naming the capability, decided
     * before the checkpoint is made ready (none is written or read here) */
    lc_catalog cat;
    lc_catalog_init(&cat);
    ck_assert_msg(lc_catalog_load_dir(&cat, LC_SOURCE_DIR "/cases/real", LC_SOURCE_DIR, &err) == LC_OK, "%s",
                  err.msg);
    static const struct {
        const char *name, *reason;
    } rows[] = {{"real08.golden.image_hd", "engine lacks pixel_limits"},
                {"real08.batch.pad_one", "engine lacks pad_to"}};
    lc_run_opts o = {.root = LC_BINARY_DIR "/no-such-root"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const lc_case *c = lc_catalog_find(&cat, rows[i].name);
        ck_assert_msg(c != NULL, "no case %s", rows[i].name);
        lc_case_result r = {0};
        lc_verdict v = lc_run_case(c, &o, m, &r);
        ck_assert_msg(v == LC_VERDICT_SKIP, "%s: verdict %s (%s)", rows[i].name, lc_verdict_name(v), r.reason);
        ck_assert_str_eq(r.reason, rows[i].reason);
        lc_case_result_free(&r);
    }
    /* the cases without the options need neither */
    const lc_case *tiny = lc_catalog_find(&cat, "real08.golden.image_tiny");
    ck_assert(tiny && !(lc_case_required_caps(tiny) & (1u << LC_CAP_PIXEL_LIMITS | 1u << LC_CAP_PAD_TO)));
    const lc_case *pads = lc_catalog_find(&cat, "real08.batch.left_pad");
    ck_assert(pads && !(lc_case_required_caps(pads) & (1u << LC_CAP_PIXEL_LIMITS | 1u << LC_CAP_PAD_TO)));
    lc_catalog_free(&cat);
    free(m); /* the wrapper shares the inner engine's implementation */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prompt_options");
    TCase *tc = tcase_create("options");
    tcase_add_checked_fixture(tc, dense_setup, dense_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_pixel_limits_hand_derived);
    tcase_add_test(tc, test_pixel_limits_bad);
    tcase_add_test(tc, test_pad_to_batch_of_one);
    tcase_add_test(tc, test_pad_to_bad);
    tcase_add_test(tc, test_options_need_capabilities);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
