/* SPDX-License-Identifier: MIT */
/*
 * Video: frame sampling, the video smart_resize grids, pixels, and positions.
 *
 * Expected vectors are derived by hand from the rules (reference/video.c, reference/positions.c):
 * sampling k = int(n / fps * 2) clamped to [4, n], indices round(linspace(0, n - 1, k)) half to
 * even; grids from smart_resize over t*h*w with factor 32 and the tiny checkpoints' budget
 * [8192, 65536]; positions with each temporal patch a group (1, h, w) starting where it starts,
 * timestamps advancing like text. The pixels are compared with transformers' own video
 * processor output stored in golden/tiny-dense-video.h5 (pixel_values_videos, float64 from the
 * processor's uint8 patches).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "h5io.h"
#include "images.h"
#include "qref.h"
#include "qref_faults.h"
#include "qref_internal.h"

#define IMG 1000
#define VID 1001
#define VS 998
#define VE 999
#define DENSE LC_SOURCE_DIR "/golden/tiny-dense"
#define GOLDEN LC_SOURCE_DIR "/golden/tiny-dense-video.h5"

#if defined(QREF_PRECISION_F64)
#define PIXEL_BOUND 1e-12
#else
#define PIXEL_BOUND 1e-6
#endif

static qref_config dense_config(void)
{
    qref_config c;
    qref_error e;
    ck_assert_msg(qref_config_load(&c, DENSE, &e) == QREF_OK, "%s", e.msg);
    return c;
}

/* ---------------------------------------------------------------- sampling */

typedef struct {
    int n;
    double fps;
    int k;
    int idx[8];
    double fps_used;
} sample_case;

static const sample_case samples[] = {
    {8, 2, 8, {0, 1, 2, 3, 4, 5, 6, 7}, 2},      /* at the target rate: every frame */
    {7, 2, 7, {0, 1, 2, 3, 4, 5, 6}, 2},         /* odd: kept odd, padded later */
    {8, 4, 4, {0, 2, 5, 7}, 4},                  /* int(8 / 4 * 2) = 4: linspace 0, 2.33, 4.67, 7 */
    {8, 0, 4, {0, 2, 5, 7}, 24},                 /* no rate: 24 fps, int(0.67) = 0 -> min_frames 4 */
    {2, 2, 2, {0, 1}, 2},                        /* min_frames 4 clamped to the 2 frames there are */
    {100, 30, 6, {0, 20, 40, 59, 79, 99}, 30},   /* int(6.67) = 6: 0, 19.8, 39.6, 59.4, 79.2, 99 */
    {9, 6, 4, {0, 3, 5, 8}, 6},                  /* int(3) = 3 -> 4: 0, 2.67, 5.33, 8 */
};

START_TEST(test_video_sample)
{
    const sample_case *s = &samples[_i];
    qref_config c = dense_config();
    int idx[128], k = -1;
    double used = 0;
    qref_error e;
    ck_assert_msg(qref_video_sample(&c, s->n, s->fps, idx, &k, &used, &e) == QREF_OK, "%s", e.msg);
    ck_assert_int_eq(k, s->k);
    ck_assert_double_eq(used, s->fps_used);
    for (int i = 0; i < k; i++)
        ck_assert_msg(idx[i] == s->idx[i], "n %d fps %g: index %d is %d, expected %d", s->n, s->fps, i, idx[i],
                      s->idx[i]);
}
END_TEST

/* ---------------------------------------------------------------- grids */

typedef struct {
    int n, width, height;
    int grid[3];
} grid_case;

static const grid_case grids[] = {
    {8, 100, 50, {4, 4, 6}},   /* rounds to 64 x 96: 8 * 6144 = 49152 within the budget */
    {7, 100, 140, {4, 6, 4}},  /* t_bar 8 (round(3.5) = 4): 8 * 128 * 96 over 65536 -> 96 x 64; 7 pads to 8 */
    {2, 30, 20, {1, 4, 6}},    /* below 32: 32 x 48, then 2 * 32 * 64 under 8192 -> 64 x 96 */
    {4, 64, 64, {2, 4, 4}},    /* exactly on the grid: 4 * 4096 = 16384, unchanged */
};

START_TEST(test_video_grid)
{
    const grid_case *g = &grids[_i];
    qref_config c = dense_config();
    int got[3];
    qref_error e;
    ck_assert_msg(qref_video_grid(&c, g->n, g->width, g->height, got, &e) == QREF_OK, "%s", e.msg);
    ck_assert_msg(got[0] == g->grid[0] && got[1] == g->grid[1] && got[2] == g->grid[2],
                  "%d frames %dx%d: grid (%d, %d, %d), expected (%d, %d, %d)", g->n, g->width, g->height, got[0],
                  got[1], got[2], g->grid[0], g->grid[1], g->grid[2]);
}
END_TEST

START_TEST(test_video_grid_refused)
{
    qref_config c = dense_config();
    int got[3];
    qref_error e;
    /* one frame is fewer than a temporal patch: the processor refuses it */
    ck_assert_int_eq(qref_video_grid(&c, 1, 64, 64, got, &e), QREF_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "temporal patch"));
    ck_assert_int_eq(qref_video_grid(&c, 4, 64 * 201, 32, got, &e), QREF_EINVAL);
}
END_TEST

/* ---------------------------------------------------------------- pixels against transformers */

static void check_pixels(const char *case_name, const char *video, int n_frames, int expect_t)
{
    qref_config c = dense_config();
    char paths[8][512];
    const char *pp[8];
    for (int f = 0; f < n_frames; f++) {
        snprintf(paths[f], sizeof paths[f], "%s/golden/videos/%s_f%d.png", LC_SOURCE_DIR, video, f);
        pp[f] = paths[f];
    }
    lc_image_set set = {0};
    lc_error le;
    ck_assert_msg(lc_image_set_load(&set, pp, n_frames, &le) == 0, "%s", le.msg);
    qref_real *px = NULL;
    int grid[3];
    qref_error e;
    ck_assert_msg(qref_video_preprocess(&c, set.images, n_frames, &px, grid, &e) == QREF_OK, "%s", e.msg);
    ck_assert_int_eq(grid[0], expect_t);

    lc_h5 f;
    ck_assert_msg(lc_h5_open(&f, GOLDEN, &le) == 0, "%s", le.msg);
    char ds[256];
    double *want = NULL;
    int64_t *wgrid = NULL;
    lc_h5_shape sh, sg;
    snprintf(ds, sizeof ds, "/cases/%s/pixel_values_videos", case_name);
    ck_assert_msg(lc_h5_read_f64(&f, ds, &want, &sh, &le) == 0, "%s", le.msg);
    snprintf(ds, sizeof ds, "/cases/%s/video_grid_thw", case_name);
    ck_assert_msg(lc_h5_read_i64(&f, ds, &wgrid, &sg, &le) == 0, "%s", le.msg);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(grid[i], (int)wgrid[i]);
    const size_t n = (size_t)grid[0] * grid[1] * grid[2] * 3 * 2 * 16 * 16;
    ck_assert_uint_eq(sh.count, n);
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)px[i] - want[i]);
        if (d > worst || isnan(d)) {
            worst = d;
            at = i;
        }
    }
    printf("video %s (%s): pixels max_abs %.3g at %zu (bound %g)\n", video, case_name, worst, at, PIXEL_BOUND);
    ck_assert_msg(worst <= PIXEL_BOUND, "%s: pixel %zu differs from transformers by %g", case_name, at, worst);
    free(want);
    free(wgrid);
    free(px);
    lc_h5_close(&f);
    lc_image_set_free(&set);
}

START_TEST(test_video_pixels_8_frames)
{
    check_pixels("dense.video.golden_8f", "a", 8, 4);
}
END_TEST

START_TEST(test_video_pixels_7_frames_padded)
{
    /* the fourth temporal patch holds frame 6 twice: transformers repeats the last frame */
    check_pixels("dense.video.golden_7f_odd", "b", 7, 4);
}
END_TEST

/* ---------------------------------------------------------------- positions */

/* text, an image (grid 1x4x4), then a video (grid 2x4x4) as two groups, each after one
 * timestamp id and vision_start, then text: derived by hand (see the file comment) */
#define PN 22
static const int32_t p_ids[PN] = {5,  VS, IMG, IMG, IMG, IMG, VE, 70, VS, VID, VID,
                                  VID, VID, VE, 71, VS, VID, VID, VID, VID, VE, 6};
static const int p_grid[2][3] = {{1, 4, 4}, {2, 4, 4}};
static const uint8_t p_video[2] = {0, 1};
static const int64_t p_t[PN] = {0, 1, 2, 2, 2, 2, 4, 5, 6, 7, 7, 7, 7, 9, 10, 11, 12, 12, 12, 12, 14, 15};
static const int64_t p_h[PN] = {0, 1, 2, 2, 3, 3, 4, 5, 6, 7, 7, 8, 8, 9, 10, 11, 12, 12, 13, 13, 14, 15};
static const int64_t p_w[PN] = {0, 1, 2, 3, 2, 3, 4, 5, 6, 7, 8, 7, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15};

static qref_config small_config(void)
{
    qref_config c;
    memset(&c, 0, sizeof c);
    c.has_vision = 1;
    c.image_token_id = IMG;
    c.video_token_id = VID;
    c.vision_start_token_id = VS;
    c.vision_end_token_id = VE;
    c.vision.spatial_merge_size = 2;
    return c;
}

START_TEST(test_video_positions_hand)
{
    qref_config c = small_config();
    int64_t pos[3 * PN], delta = 99;
    qref_error e;
    ck_assert_msg(qref_rope_index_mm(&c, p_ids, PN, p_grid, p_video, 2, pos, &delta, &e) == QREF_OK, "%s", e.msg);
    for (int i = 0; i < PN; i++)
        ck_assert_msg(pos[i] == p_t[i] && pos[PN + i] == p_h[i] && pos[2 * PN + i] == p_w[i],
                      "token %d: (%lld, %lld, %lld), expected (%lld, %lld, %lld)", i, (long long)pos[i],
                      (long long)pos[PN + i], (long long)pos[2 * PN + i], (long long)p_t[i], (long long)p_h[i],
                      (long long)p_w[i]);
    ck_assert_int_eq(delta, 15 + 1 - PN);
}
END_TEST

START_TEST(test_video_positions_plants_differ)
{
    /* each planted position bug moves this hand vector (the suite's cases then catch it) */
    qref_config c = small_config();
    qref_faults plants[3];
    memset(plants, 0, sizeof plants);
    plants[0].video_one_block = 1;
    plants[1].video_ts_no_advance = 1;
    plants[2].video_temporal_per_token = 1;
    for (int k = 0; k < 3; k++) {
        int64_t pos[3 * PN], delta;
        qref_error e;
        ck_assert_msg(qref__rope_index_mm(&c, &plants[k], p_ids, PN, p_grid, p_video, 2, pos, &delta, &e) == QREF_OK,
                      "%s", e.msg);
        int diff = 0;
        for (int i = 0; i < PN; i++)
            diff += pos[i] != p_t[i] || pos[PN + i] != p_h[i] || pos[2 * PN + i] != p_w[i];
        ck_assert_msg(diff > 0, "plant %d leaves the positions unchanged", k);
    }
}
END_TEST

START_TEST(test_video_positions_refused)
{
    qref_config c = small_config();
    int64_t pos[3 * PN], delta;
    qref_error e;
    /* a group of 3 placeholders where the grid has 4 */
    int32_t short_run[PN];
    memcpy(short_run, p_ids, sizeof short_run);
    short_run[12] = 7;
    ck_assert_int_eq(qref_rope_index_mm(&c, short_run, PN, p_grid, p_video, 2, pos, &delta, &e), QREF_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "temporal patch"));
    /* a video grid of 3 temporal patches but only 2 groups in the prompt */
    const int g3[2][3] = {{1, 4, 4}, {3, 4, 4}};
    ck_assert_int_eq(qref_rope_index_mm(&c, p_ids, PN, g3, p_video, 2, pos, &delta, &e), QREF_EINVAL);
    /* the video given as an image: its groups find no video */
    const uint8_t none[2] = {0, 0};
    ck_assert_int_eq(qref_rope_index_mm(&c, p_ids, PN, p_grid, none, 2, pos, &delta, &e), QREF_EINVAL);
    /* image and video placeholders that are one id cannot be told apart */
    c.video_token_id = IMG;
    ck_assert_int_eq(qref_rope_index_mm(&c, p_ids, PN, p_grid, p_video, 2, pos, &delta, &e), QREF_EUNSUPPORTED);
}
END_TEST

START_TEST(test_video_positions_golden)
{
    /* transformers' get_rope_index for the image-and-video case, through the whole prompt
     * build (ids expanded by hand from the golden's own input_ids) */
    lc_h5 f;
    lc_error le;
    ck_assert_msg(lc_h5_open(&f, GOLDEN, &le) == 0, "%s", le.msg);
    int64_t *ids = NULL, *want = NULL, *vg = NULL, *ig = NULL;
    lc_h5_shape s1, s2, s3, s4;
    ck_assert(lc_h5_read_i64(&f, "/cases/dense.video.image_and_video/input_ids", &ids, &s1, &le) == 0);
    ck_assert(lc_h5_read_i64(&f, "/cases/dense.video.image_and_video/position_ids", &want, &s2, &le) == 0);
    ck_assert(lc_h5_read_i64(&f, "/cases/dense.video.image_and_video/video_grid_thw", &vg, &s3, &le) == 0);
    ck_assert(lc_h5_read_i64(&f, "/cases/dense.video.image_and_video/image_grid_thw", &ig, &s4, &le) == 0);
    const int n = (int)s1.count;
    int32_t *id32 = malloc((size_t)n * sizeof *id32);
    int64_t *pos = malloc(3 * (size_t)n * sizeof *pos), delta;
    ck_assert(id32 && pos);
    for (int i = 0; i < n; i++)
        id32[i] = (int32_t)ids[i];
    const int grid[2][3] = {{(int)ig[0], (int)ig[1], (int)ig[2]}, {(int)vg[0], (int)vg[1], (int)vg[2]}};
    const uint8_t kinds[2] = {0, 1};
    qref_config c = dense_config();
    qref_error e;
    ck_assert_msg(qref_rope_index_mm(&c, id32, n, grid, kinds, 2, pos, &delta, &e) == QREF_OK, "%s", e.msg);
    for (int i = 0; i < 3 * n; i++)
        ck_assert_msg(pos[i] == want[i], "axis %d token %d: %lld, transformers %lld", i / n, i % n, (long long)pos[i],
                      (long long)want[i]);
    free(id32);
    free(pos);
    free(ids);
    free(want);
    free(vg);
    free(ig);
    lc_h5_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("video");
    TCase *tc = tcase_create("video");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_video_sample, 0, (int)(sizeof samples / sizeof samples[0]));
    tcase_add_loop_test(tc, test_video_grid, 0, (int)(sizeof grids / sizeof grids[0]));
    tcase_add_test(tc, test_video_grid_refused);
    tcase_add_test(tc, test_video_pixels_8_frames);
    tcase_add_test(tc, test_video_pixels_7_frames_padded);
    tcase_add_test(tc, test_video_positions_hand);
    tcase_add_test(tc, test_video_positions_plants_differ);
    tcase_add_test(tc, test_video_positions_refused);
    tcase_add_test(tc, test_video_positions_golden);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
