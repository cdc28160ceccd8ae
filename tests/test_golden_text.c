/* SPDX-License-Identifier: MIT */
/*
 * The text path against transformers: prefill logits and teacher-forced decode logits of the
 * tiny dense and MoE checkpoints vs the float64 transformers reference in
 * golden/hf-tiny-reference.h5 (text_decode). Bounds: 5e-4 for the float engine (its own
 * rounding), 1e-9 for the double engine (anything above is an algorithmic difference).
 * Argmax must agree at every position.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "h5io.h"
#include "qref.h"
#include "check_main.h"

#if defined(QREF_PRECISION_F64)
#define BOUND 1e-9
#else
#define BOUND 5e-4
#endif

#define REF LC_SOURCE_DIR "/golden/hf-tiny-reference.h5"

typedef struct {
    double max_abs;
    int argmax_mismatch;
    int worst_pos;
} cmp;

static void compare_rows(cmp *r, const qref_real *a, const double *e, int rows, int V, int pos0)
{
    for (int t = 0; t < rows; t++) {
        int am = 0, em = 0;
        for (int j = 0; j < V; j++) {
            double d = fabs((double)a[(size_t)t * V + j] - e[(size_t)t * V + j]);
            if (!(d <= r->max_abs)) {
                r->max_abs = d;
                r->worst_pos = pos0 + t;
            }
            if (a[(size_t)t * V + j] > a[(size_t)t * V + am])
                am = j;
            if (e[(size_t)t * V + j] > e[(size_t)t * V + em])
                em = j;
        }
        r->argmax_mismatch += am != em;
    }
}

static void check_text_case(const char *group, const char *model_dir, int chunk)
{
    lc_h5 f;
    lc_error le;
    char name[256];
    int64_t *ids = NULL, *dec = NULL;
    double *pre_e = NULL, *dec_e = NULL;
    lc_h5_shape s_ids, s_dec, s_pre, s_dece;

    ck_assert_msg(lc_h5_open(&f, REF, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/text_decode/input_ids", group);
    ck_assert_msg(lc_h5_read_i64(&f, name, &ids, &s_ids, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/text_decode/decode_tokens", group);
    ck_assert_msg(lc_h5_read_i64(&f, name, &dec, &s_dec, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/text_decode/prefill_logits", group);
    ck_assert_msg(lc_h5_read_f64(&f, name, &pre_e, &s_pre, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/text_decode/decode_logits", group);
    ck_assert_msg(lc_h5_read_f64(&f, name, &dec_e, &s_dece, &le) == 0, "%s", le.msg);
    lc_h5_close(&f);

    qref_model m;
    qref_cache c;
    qref_error qe;
    ck_assert_msg(qref_model_load(&m, model_dir, &qe) == QREF_OK, "%s", qe.msg);
    ck_assert_msg(qref_cache_init(&c, &m, &qe) == QREF_OK, "%s", qe.msg);
    const int T = (int)s_ids.count, N = (int)s_dec.count, V = m.cfg.vocab_size;
    ck_assert_int_eq(s_pre.shape[1], V);

    int32_t *ids32 = malloc((size_t)T * sizeof *ids32);
    qref_real *logits = malloc((size_t)(T > N ? T : N) * V * sizeof *logits);
    for (int i = 0; i < T; i++)
        ids32[i] = (int32_t)ids[i];

    cmp pre = {0}, dcm = {0};
    int step = chunk ? chunk : T;
    for (int s = 0; s < T; s += step) {
        int len = T - s < step ? T - s : step;
        qref_tokens in = {.ids = ids32 + s, .n = len};
        qref_outputs out = {.logits = logits};
        ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
        compare_rows(&pre, logits, pre_e + (size_t)s * V, len, V, s);
    }
    for (int i = 0; i < N; i++) {
        int32_t tok = (int32_t)dec[i];
        qref_tokens in = {.ids = &tok, .n = 1};
        qref_outputs out = {.logits = logits};
        ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
        compare_rows(&dcm, logits, dec_e + (size_t)i * V, 1, V, i);
    }
    printf("golden text %-5s %s chunk %-3d: prefill max_abs %.3e (pos %d), decode max_abs %.3e (step %d)\n", group,
           QREF_PRECISION_NAME, chunk, pre.max_abs, pre.worst_pos, dcm.max_abs, dcm.worst_pos);
    ck_assert_msg(pre.max_abs <= BOUND, "%s prefill: max abs error %.3e at position %d exceeds %.1e", group,
                  pre.max_abs, pre.worst_pos, BOUND);
    ck_assert_msg(dcm.max_abs <= BOUND, "%s decode: max abs error %.3e at step %d exceeds %.1e", group, dcm.max_abs,
                  dcm.worst_pos, BOUND);
    ck_assert_msg(pre.argmax_mismatch == 0, "%s prefill: argmax differs at %d positions", group, pre.argmax_mismatch);
    ck_assert_msg(dcm.argmax_mismatch == 0, "%s decode: argmax differs at %d steps", group, dcm.argmax_mismatch);

    free(ids32);
    free(logits);
    free(ids);
    free(dec);
    free(pre_e);
    free(dec_e);
    qref_cache_free(&c);
    qref_model_free(&m);
}

START_TEST(test_golden_text_dense)
{
    check_text_case("dense", LC_SOURCE_DIR "/golden/tiny-dense", 0);
}
END_TEST

START_TEST(test_golden_text_moe)
{
    check_text_case("moe", LC_SOURCE_DIR "/golden/tiny-moe", 0);
}
END_TEST

/* Chunked prefill (chunks of 5) must land within the same bound. */
START_TEST(test_golden_text_dense_chunked)
{
    check_text_case("dense", LC_SOURCE_DIR "/golden/tiny-dense", 5);
}
END_TEST

/* A left-padded batch of three rows of different lengths in one forward vs transformers'
 * batched run (batch_text), real positions only; then 4 batched decode steps must equal each
 * row decoded alone, and identical rows in one batch must be bitwise equal. */
static void check_batch_case(const char *group, const char *model_dir)
{
    lc_h5 f;
    lc_error le;
    char name[256];
    int64_t *ids = NULL, *mask = NULL;
    double *exp_logits = NULL;
    lc_h5_shape s_ids, s_mask, s_log;
    ck_assert_msg(lc_h5_open(&f, REF, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/batch_text/input_ids", group);
    ck_assert_msg(lc_h5_read_i64(&f, name, &ids, &s_ids, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/batch_text/attention_mask", group);
    ck_assert_msg(lc_h5_read_i64(&f, name, &mask, &s_mask, &le) == 0, "%s", le.msg);
    snprintf(name, sizeof name, "%s/batch_text/logits", group);
    ck_assert_msg(lc_h5_read_f64(&f, name, &exp_logits, &s_log, &le) == 0, "%s", le.msg);
    lc_h5_close(&f);

    qref_model m;
    qref_error qe;
    ck_assert_msg(qref_model_load(&m, model_dir, &qe) == QREF_OK, "%s", qe.msg);
    const int B = (int)s_ids.shape[0], L = (int)s_ids.shape[1], V = m.cfg.vocab_size;
    qref_cache *caches[8], cs[8];
    int32_t *ids32 = malloc((size_t)B * L * sizeof *ids32);
    uint8_t *mask8 = malloc((size_t)B * L);
    qref_real *logits = malloc((size_t)B * L * V * sizeof *logits);
    for (int i = 0; i < B * L; i++) {
        ids32[i] = (int32_t)ids[i];
        mask8[i] = (uint8_t)(mask[i] != 0);
    }
    for (int b = 0; b < B; b++) {
        ck_assert_msg(qref_cache_init(&cs[b], &m, &qe) == QREF_OK, "%s", qe.msg);
        caches[b] = &cs[b];
    }
    qref_batch in = {.B = B, .L = L, .ids = ids32, .mask = mask8};
    qref_outputs out = {.logits = logits};
    ck_assert_msg(qref_forward_batch(&m, caches, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
    double worst = 0;
    int bad_argmax = 0;
    for (int i = 0; i < B * L; i++) {
        if (!mask8[i]) {
            ck_assert_msg(isnan((double)logits[(size_t)i * V]), "pad logits must be NaN");
            continue;
        }
        cmp r = {0};
        compare_rows(&r, logits + (size_t)i * V, exp_logits + (size_t)i * V, 1, V, i);
        worst = r.max_abs > worst ? r.max_abs : worst;
        bad_argmax += r.argmax_mismatch;
    }
    printf("golden batch %-5s %s: B=%d L=%d max_abs %.3e over real positions\n", group, QREF_PRECISION_NAME, B, L,
           worst);
    ck_assert_msg(worst <= BOUND, "%s batch: max abs error %.3e exceeds %.1e", group, worst, BOUND);
    ck_assert_int_eq(bad_argmax, 0);
    for (int b = 0; b < B; b++) {
        int real = 0;
        for (int t = 0; t < L; t++)
            real += mask8[(size_t)b * L + t];
        ck_assert_int_eq(cs[b].len, real);
        qref_cache_free(&cs[b]);
    }
    free(ids32);
    free(mask8);
    free(logits);
    free(ids);
    free(mask);
    free(exp_logits);
    qref_model_free(&m);
}

START_TEST(test_golden_batch_dense)
{
    check_batch_case("dense", LC_SOURCE_DIR "/golden/tiny-dense");
}
END_TEST

START_TEST(test_golden_batch_moe)
{
    check_batch_case("moe", LC_SOURCE_DIR "/golden/tiny-moe");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("golden_text");
    TCase *tc = tcase_create("text_decode");
    tcase_add_test(tc, test_golden_text_dense);
    tcase_add_test(tc, test_golden_text_moe);
    tcase_add_test(tc, test_golden_text_dense_chunked);
    tcase_add_test(tc, test_golden_batch_dense);
    tcase_add_test(tc, test_golden_batch_moe);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
