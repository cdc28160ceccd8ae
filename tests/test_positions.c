/* SPDX-License-Identifier: MIT */
/*
 * qref_rope_index: 3-axis MRoPE positions of prompts with images.
 *
 * Expected vectors are derived by hand from the rule (text advances T = H = W; an image run
 * starting at s gets (s + frame, s + row, s + col) on its merged grid; the next token starts at
 * s + max(rows, cols)) or copied from transformers' get_rope_index output in the golden file
 * (dense/image_decode and dense/multi_image position_ids, with their input_ids and grids).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "qref.h"
#include "check_main.h"

#define IMG 1000
#define VID 1001
#define MAXN 64

static qref_config test_config(void)
{
    qref_config c;
    memset(&c, 0, sizeof c);
    c.has_vision = 1;
    c.image_token_id = IMG;
    c.video_token_id = VID;
    c.vision_start_token_id = 998;
    c.vision_end_token_id = 999;
    c.vision.spatial_merge_size = 2;
    return c;
}

typedef struct {
    const char *name;
    int n;
    int32_t ids[MAXN];
    int n_images;
    int grids[4][3];
    int64_t t[MAXN], h[MAXN], w[MAXN];
    int64_t delta;
} pos_case;

static const pos_case cases[] = {
    {"text, 2x2 image, text", 6, {5, IMG, IMG, IMG, IMG, 6}, 1, {{1, 4, 4}},
     {0, 1, 1, 1, 1, 3}, {0, 1, 1, 2, 2, 3}, {0, 1, 2, 1, 2, 3}, -2},
    {"two images of different grids", 10, {5, IMG, 6, IMG, IMG, IMG, IMG, IMG, IMG, 7}, 2, {{1, 2, 2}, {1, 4, 6}},
     {0, 1, 2, 3, 3, 3, 3, 3, 3, 6}, {0, 1, 2, 3, 3, 3, 4, 4, 4, 6}, {0, 1, 2, 3, 4, 5, 3, 4, 5, 6}, -3},
    {"image at the very start", 6, {IMG, IMG, IMG, IMG, 9, 9}, 1, {{1, 4, 4}},
     {0, 0, 0, 0, 2, 3}, {0, 0, 1, 1, 2, 3}, {0, 1, 0, 1, 2, 3}, -2},
    {"tall merged 3x1 grid", 5, {1, IMG, IMG, IMG, 2}, 1, {{1, 6, 2}},
     {0, 1, 1, 1, 4}, {0, 1, 2, 3, 4}, {0, 1, 1, 1, 4}, 0},
    {"wide merged 2x3 grid at the end", 7, {1, IMG, IMG, IMG, IMG, IMG, IMG}, 1, {{1, 4, 6}},
     {0, 1, 1, 1, 1, 1, 1}, {0, 1, 1, 1, 2, 2, 2}, {0, 1, 2, 3, 1, 2, 3}, -3},
    {"two frames (t = 2)", 9, {IMG, IMG, IMG, IMG, IMG, IMG, IMG, IMG, 5}, 1, {{2, 4, 4}},
     {0, 0, 0, 0, 1, 1, 1, 1, 2}, {0, 0, 1, 1, 0, 0, 1, 1, 2}, {0, 1, 0, 1, 0, 1, 0, 1, 2}, -6},
    {"three frames, 1x1 merged (next text after max(rows, cols), not t)", 4, {IMG, IMG, IMG, 5}, 1, {{3, 2, 2}},
     {0, 1, 2, 1}, {0, 0, 0, 1}, {0, 0, 0, 1}, -1},
    {"text only", 4, {3, 1, 4, 1}, 0, {{0}}, {0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}, 0},
    /* transformers: dense/image_decode (img_a.png, 96 wide x 64 high -> grid 1 x 4 x 6) */
    {"golden image_decode", 22,
     {121, 253, 186, 711, 255, 998, 1000, 1000, 1000, 1000, 1000, 1000, 999, 150, 789, 253, 492, 434, 187, 632,
      181, 200},
     1, {{1, 4, 6}},
     {0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18},
     {0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18},
     {0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, -3},
    /* transformers: dense/multi_image (img_m0 32x32, img_m1 64 wide x 96 high, img_m2 128 wide x 64 high) */
    {"golden multi_image", 39,
     {124, 964, 266, 731, 998, 1000, 999, 914, 63, 437, 998, 1000, 1000, 1000, 1000, 1000, 1000, 999, 735, 842,
      324, 308, 333, 261, 998, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 999, 104, 799, 531, 165, 514},
     3, {{1, 2, 2}, {1, 6, 4}, {1, 4, 8}},
     {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 11, 11, 11, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22, 22, 22, 22,
      22, 22, 22, 22, 26, 27, 28, 29, 30, 31},
     {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 12, 12, 13, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 22, 22, 22,
      23, 23, 23, 23, 26, 27, 28, 29, 30, 31},
     {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 11, 12, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
      22, 23, 24, 25, 26, 27, 28, 29, 30, 31}, -7},
};

START_TEST(test_positions_vectors)
{
    const pos_case *pc = &cases[_i];
    qref_config cfg = test_config();
    int64_t pos[3 * MAXN];
    int64_t delta = 12345;
    qref_error err = {0};
    qref_status st = qref_rope_index(&cfg, pc->ids, pc->n, (const int(*)[3])pc->grids, pc->n_images, pos,
                                     &delta, &err);
    ck_assert_msg(st == QREF_OK, "%s: status %s: %s", pc->name, qref_status_name(st), err.msg);
    const int64_t *want[3] = {pc->t, pc->h, pc->w};
    const char *axis = "THW";
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < pc->n; i++)
            ck_assert_msg(pos[a * pc->n + i] == want[a][i], "%s: axis %c token %d (id %d): got %lld, want %lld",
                          pc->name, axis[a], i, pc->ids[i], (long long)pos[a * pc->n + i], (long long)want[a][i]);
    ck_assert_msg(delta == pc->delta, "%s: delta %lld, want %lld", pc->name, (long long)delta, (long long)pc->delta);
}
END_TEST

/* Decode continues at len + delta: the first position after the golden image prompt is 19. */
START_TEST(test_positions_delta_continues_text)
{
    const pos_case *pc = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(cases[i].name, "golden image_decode") == 0)
            pc = &cases[i];
    ck_assert_ptr_nonnull(pc);
    qref_config cfg = test_config();
    int64_t pos[3 * MAXN], delta;
    qref_error err = {0};
    ck_assert_int_eq(qref_rope_index(&cfg, pc->ids, pc->n, (const int(*)[3])pc->grids, 1, pos, &delta, &err), QREF_OK);
    ck_assert_int_eq(pc->n + delta, pos[pc->n - 1] + 1);
}
END_TEST

/* ---------------------------------------------------------------- errors */

typedef struct {
    const char *name;
    int n;
    int32_t ids[16];
    int n_images;
    int grids[3][3];
    qref_status want;
    const char *msg_has[2];     /* substrings the message must contain */
} err_case;

static const err_case errors[] = {
    {"run shorter than the grid", 5, {1, IMG, IMG, IMG, 2}, 1, {{1, 4, 4}}, QREF_EINVAL, {"needs 4", "run of 3"}},
    {"run longer than the grid", 6, {1, IMG, IMG, IMG, IMG, IMG}, 1, {{1, 4, 4}}, QREF_EINVAL, {"needs 4", "run of 5"}},
    {"adjacent images form one run", 8, {IMG, IMG, IMG, IMG, IMG, IMG, IMG, IMG}, 2, {{1, 4, 4}, {1, 4, 4}},
     QREF_EINVAL, {"needs 4", "run of 8"}},
    {"more runs than images", 5, {IMG, 1, IMG, 2, 3}, 1, {{1, 2, 2}}, QREF_EINVAL, {"run 2", "1 images given"}},
    {"runs but no images", 3, {1, IMG, 2}, 0, {{0}}, QREF_EINVAL, {"run 1", "0 images given"}},
    {"fewer runs than images", 3, {1, IMG, 2}, 2, {{1, 2, 2}, {1, 2, 2}}, QREF_EINVAL,
     {"2 images given", "1 image placeholder runs"}},
    {"grid not a multiple of merge", 3, {1, IMG, 2}, 1, {{1, 3, 2}}, QREF_EINVAL, {"(1, 3, 2)", "merge size 2"}},
    {"video placeholder", 3, {1, VID, 2}, 0, {{0}}, QREF_EUNSUPPORTED, {"video", "index 1"}},
};

START_TEST(test_positions_errors)
{
    const err_case *ec = &errors[_i];
    qref_config cfg = test_config();
    int64_t pos[3 * 16], delta = 0;
    qref_error err = {0};
    qref_status st = qref_rope_index(&cfg, ec->ids, ec->n, (const int(*)[3])ec->grids, ec->n_images, pos, &delta, &err);
    ck_assert_msg(st == ec->want, "%s: status %s, want %s (%s)", ec->name, qref_status_name(st),
                  qref_status_name(ec->want), err.msg);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(strstr(err.msg, ec->msg_has[k]) != NULL, "%s: message '%s' lacks '%s'", ec->name, err.msg,
                      ec->msg_has[k]);
}
END_TEST

static Suite *positions_suite(void)
{
    Suite *s = suite_create("positions");
    TCase *tc = tcase_create("rope_index");
    tcase_add_loop_test(tc, test_positions_vectors, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_positions_delta_continues_text);
    tcase_add_loop_test(tc, test_positions_errors, 0, (int)(sizeof errors / sizeof errors[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(positions_suite());
}
