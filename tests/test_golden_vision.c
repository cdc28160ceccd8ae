/* SPDX-License-Identifier: MIT */
/*
 * The vision path against transformers: image_decode (one image) and multi_image (three
 * images of different sizes) of the tiny dense and MoE checkpoints vs the float64
 * transformers reference in golden/hf-tiny-reference.h5. Positions must equal transformers'
 * exactly; prefill and teacher-forced decode logits within 5e-4 (float engine) / 1e-9 (double
 * engine); argmax equal everywhere. Also the vision-then-text invariant: text logits on a
 * fresh sequence after an image request are bitwise equal to the same text run first.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"
#include "images.h"
#include "qref.h"
#include "check_main.h"

#if defined(QREF_PRECISION_F64)
#define BOUND 1e-9
#else
#define BOUND 5e-4
#endif

#define REF LC_SOURCE_DIR "/golden/hf-tiny-reference.h5"

static double max_abs_rows(const qref_real *a, const double *e, size_t n, int *argmax_bad, int V)
{
    double worst = 0;
    for (size_t t = 0; t < n / (size_t)V; t++) {
        int am = 0, em = 0;
        for (int j = 0; j < V; j++) {
            double d = fabs((double)a[t * V + j] - e[t * V + j]);
            worst = d > worst || isnan(d) ? d : worst;
            am = a[t * V + j] > a[t * V + am] ? j : am;
            em = e[t * V + j] > e[t * V + em] ? j : em;
        }
        *argmax_bad += am != em;
    }
    return worst;
}

static void check_image_case(const char *group, const char *model, const char *name)
{
    char path[512], mdir[512];
    lc_h5 f;
    lc_error le;
    int64_t *ids = NULL, *dec = NULL, *pos = NULL;
    double *pre_e = NULL, *dec_e = NULL;
    char **images = NULL;
    int n_images = 0;
    lc_h5_shape s_ids, s_dec, s_pos, s_pre, s_dece;

    ck_assert_msg(lc_h5_open(&f, REF, &le) == 0, "%s", le.msg);
#define READ(kind, ds, out, shape)                                                                   \
    snprintf(path, sizeof path, "%s/%s/%s", group, name, ds);                                       \
    ck_assert_msg(lc_h5_read_##kind(&f, path, out, shape, &le) == 0, "%s", le.msg)
    READ(i64, "input_ids", &ids, &s_ids);
    READ(i64, "decode_tokens", &dec, &s_dec);
    READ(i64, "position_ids", &pos, &s_pos);
    READ(f64, "prefill_logits", &pre_e, &s_pre);
    READ(f64, "decode_logits", &dec_e, &s_dece);
#undef READ
    snprintf(path, sizeof path, "%s/%s/images", group, name);
    ck_assert_msg(lc_h5_read_strings(&f, path, &images, &n_images, &le) == 0, "%s", le.msg);
    lc_h5_close(&f);

    snprintf(mdir, sizeof mdir, "%s/golden/%s", LC_SOURCE_DIR, model);
    char **paths = calloc((size_t)n_images, sizeof *paths);
    for (int i = 0; i < n_images; i++) {
        paths[i] = malloc(1024);
        snprintf(paths[i], 1024, "%s/%s", mdir, images[i]);
    }
    lc_image_set set;
    ck_assert_msg(lc_image_set_load(&set, (const char *const *)paths, n_images, &le) == 0, "%s", le.msg);

    qref_model m;
    qref_cache c;
    qref_prompt p;
    qref_error qe;
    ck_assert_msg(qref_model_load(&m, mdir, &qe) == QREF_OK, "%s", qe.msg);
    const int T = (int)s_ids.count, N = (int)s_dec.count, V = m.cfg.vocab_size;
    int32_t *ids32 = malloc((size_t)T * sizeof *ids32);
    for (int i = 0; i < T; i++)
        ids32[i] = (int32_t)ids[i];
    ck_assert_msg(qref_prompt_build(&p, &m, ids32, T, set.images, set.n, &qe) == QREF_OK, "%s", qe.msg);

    /* positions: exact; the fixture stores (3, 1, T) */
    ck_assert_int_eq((int)s_pos.count, 3 * T);
    for (int i = 0; i < 3 * T; i++)
        ck_assert_msg(p.pos[i] == pos[i], "%s/%s: position axis %d index %d: engine %lld, transformers %lld", group,
                      name, i / T, i % T, (long long)p.pos[i], (long long)pos[i]);

    qref_real *logits = malloc((size_t)T * V * sizeof *logits), *dl = malloc((size_t)N * V * sizeof *dl);
    ck_assert_msg(qref_cache_init(&c, &m, &qe) == QREF_OK, "%s", qe.msg);
    ck_assert_msg(qref_prompt_prefill(&m, &c, &p, 0, T, 0, QREF_GDN_AUTO, logits, &qe) == QREF_OK, "%s", qe.msg);
    for (int i = 0; i < N; i++) {
        int32_t t = (int32_t)dec[i];
        qref_tokens in = {.ids = &t, .n = 1};
        qref_outputs out = {.logits = dl + (size_t)i * V};
        ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
    }
    int bad_pre = 0, bad_dec = 0;
    double e_pre = max_abs_rows(logits, pre_e, (size_t)T * V, &bad_pre, V);
    double e_dec = max_abs_rows(dl, dec_e, (size_t)N * V, &bad_dec, V);
    printf("golden %-12s %-5s %s: %d images, prefill max_abs %.3e, decode max_abs %.3e, delta %lld\n", name, group,
           QREF_PRECISION_NAME, n_images, e_pre, e_dec, (long long)p.delta);
    ck_assert_msg(e_pre <= BOUND, "%s/%s prefill: max abs %.3e > %.1e", group, name, e_pre, BOUND);
    ck_assert_msg(e_dec <= BOUND, "%s/%s decode: max abs %.3e > %.1e", group, name, e_dec, BOUND);
    ck_assert_msg(bad_pre == 0 && bad_dec == 0, "%s/%s: argmax differs at %d prefill / %d decode positions", group,
                  name, bad_pre, bad_dec);

    free(logits);
    free(dl);
    free(ids32);
    qref_prompt_free(&p);
    qref_cache_free(&c);
    qref_model_free(&m);
    lc_image_set_free(&set);
    for (int i = 0; i < n_images; i++)
        free(paths[i]);
    free(paths);
    lc_h5_strings_free(images, n_images);
    free(ids);
    free(dec);
    free(pos);
    free(pre_e);
    free(dec_e);
}

START_TEST(test_golden_vision_image_decode)
{
    check_image_case("dense", "tiny-dense", "image_decode");
    check_image_case("moe", "tiny-moe", "image_decode");
}
END_TEST

START_TEST(test_golden_vision_multi_image)
{
    check_image_case("dense", "tiny-dense", "multi_image");
    check_image_case("moe", "tiny-moe", "multi_image");
}
END_TEST

/* text A, then an image request, then text A on a fresh cache: bitwise equal */
START_TEST(test_golden_vision_text_after_image_bitwise)
{
    qref_model m;
    qref_error qe;
    lc_error le;
    ck_assert_msg(qref_model_load(&m, LC_SOURCE_DIR "/golden/tiny-dense", &qe) == QREF_OK, "%s", qe.msg);
    const int V = m.cfg.vocab_size;
    const int32_t text[] = {11, 402, 77, 901, 5, 318, 640, 22, 19, 700};
    const int T = (int)(sizeof text / sizeof *text);
    qref_real *first = malloc((size_t)T * V * sizeof *first), *again = malloc((size_t)T * V * sizeof *again);
    qref_cache c;
    qref_tokens in = {.ids = text, .n = T};
    qref_outputs out = {.logits = first};
    ck_assert(qref_cache_init(&c, &m, &qe) == QREF_OK);
    ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
    qref_cache_free(&c);

    /* an image request: 1 text token, img_a (2x3 merged = 6 placeholders), 1 text token */
    const char *img = LC_SOURCE_DIR "/golden/tiny-dense/img_a.png";
    lc_image_set set;
    ck_assert_msg(lc_image_set_load(&set, &img, 1, &le) == 0, "%s", le.msg);
    int32_t ids[10] = {3, 998, 1000, 1000, 1000, 1000, 1000, 1000, 999, 4};
    qref_prompt p;
    ck_assert_msg(qref_prompt_build(&p, &m, ids, 10, set.images, 1, &qe) == QREF_OK, "%s", qe.msg);
    ck_assert(qref_cache_init(&c, &m, &qe) == QREF_OK);
    ck_assert_msg(qref_prompt_prefill(&m, &c, &p, 0, 10, 0, QREF_GDN_AUTO, NULL, &qe) == QREF_OK, "%s", qe.msg);
    ck_assert(c.rope_delta != 0);
    qref_cache_free(&c);
    qref_prompt_free(&p);
    lc_image_set_free(&set);

    ck_assert(qref_cache_init(&c, &m, &qe) == QREF_OK);
    out.logits = again;
    ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
    ck_assert_msg(memcmp(first, again, (size_t)T * V * sizeof *first) == 0,
                  "text logits after an image request differ from the same text run first");
    qref_cache_free(&c);
    free(first);
    free(again);
    qref_model_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("golden_vision");
    TCase *tc = tcase_create("vision");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_golden_vision_image_decode);
    tcase_add_test(tc, test_golden_vision_multi_image);
    tcase_add_test(tc, test_golden_vision_text_after_image_bitwise);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
