/* SPDX-License-Identifier: MIT */
/*
 * The sparse real-scale goldens (golden/real/ files) read back, and the row summaries the runner
 * reduces engine rows with (records/row_summary.h), checked against what the exporter wrote:
 * the verbatim logits row's logsumexp and top-8 against the stored ones at its position, and
 * the RMS and sketch of every stored hidden state against the stored ones. Hand-made rows for
 * ties, NaN and overflow; malformed inputs must be errors naming the file.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "golden_sparse.h"
#include "row_summary.h"

#define REAL08 LC_SOURCE_DIR "/golden/real/qwen3.5-0.8b.h5"
#define REAL35 LC_SOURCE_DIR "/golden/real/qwen3.5-35b-a3b-l2.h5"

/* ---------------------------------------------------------------- row summaries, by hand */

START_TEST(test_row_summary_logsumexp)
{
    const double a[2] = {0.0, 0.0}, b[3] = {1000.0, 1000.0, -INFINITY}, c[2] = {1.0, NAN};
    ck_assert_double_eq_tol(lc_row_logsumexp(a, 2), log(2.0), 1e-15);
    ck_assert_double_eq_tol(lc_row_logsumexp(b, 3), 1000.0 + log(2.0), 1e-12); /* no overflow */
    ck_assert(isnan(lc_row_logsumexp(c, 2)));
}
END_TEST

START_TEST(test_row_summary_topk_order)
{
    /* ties in increasing id order, NaN never chosen, the k largest of a longer row */
    const double row[9] = {3.0, NAN, 5.0, 3.0, -1.0, 5.0, 7.0, 0.0, 3.0};
    int32_t ids[4];
    double v[4];
    lc_row_topk(row, 9, 4, ids, v);
    const int32_t want_ids[4] = {6, 2, 5, 0};
    const double want_v[4] = {7.0, 5.0, 5.0, 3.0};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ids[i], want_ids[i]);
        ck_assert_double_eq(v[i], want_v[i]);
    }
}
END_TEST

START_TEST(test_row_summary_sketch_signs)
{
    /* unit vectors e_0 and e_1: the sketch is the sign vector s_j(i). For i = 0 every sign is +1;
     * for i = 1 the signs are the top 8 bits of 0x9E: 1001 1110 -> - + + - - - - + */
    double e[4] = {1.0, 0.0, 0.0, 0.0}, out[LC_SKETCH_N];
    lc_hidden_sketch(e, 4, out);
    for (int j = 0; j < LC_SKETCH_N; j++)
        ck_assert_double_eq(out[j], 1.0);
    e[0] = 0.0, e[1] = 1.0;
    lc_hidden_sketch(e, 4, out);
    const double want[LC_SKETCH_N] = {-1, 1, 1, -1, -1, -1, -1, 1};
    for (int j = 0; j < LC_SKETCH_N; j++)
        ck_assert_double_eq(out[j], want[j]);
    /* i = 2 wraps: 2 * 0x9E3779B97F4A7C15 = 0x1_3C6E_F372_FE94_F82A, mod 2^64 top byte 0x3C =
     * 0011 1100 -> + + - - - - + +; i = 3: 0x1_DAA6_6D2C_7DDF_743F, top byte 0xDA = 1101 1010 ->
     * - - + - - + - + */
    const double want2[LC_SKETCH_N] = {1, 1, -1, -1, -1, -1, 1, 1}, want3[LC_SKETCH_N] = {-1, -1, 1, -1, -1, 1, -1, 1};
    e[1] = 0.0, e[2] = 1.0;
    lc_hidden_sketch(e, 4, out);
    for (int j = 0; j < LC_SKETCH_N; j++)
        ck_assert_double_eq(out[j], want2[j]);
    e[2] = 0.0, e[3] = 1.0;
    lc_hidden_sketch(e, 4, out);
    for (int j = 0; j < LC_SKETCH_N; j++)
        ck_assert_double_eq(out[j], want3[j]);
    const double h[4] = {1.0, -1.0, 1.0, -1.0};
    ck_assert_double_eq(lc_hidden_rms(h, 4), 1.0);
}
END_TEST

/* ---------------------------------------------------------------- the committed goldens */

START_TEST(test_golden_sparse_roots)
{
    static const struct {
        const char *file, *sha256, *checkpoint;
    } files[] = {
        {"qwen3.5-0.8b.h5", "c822383adbcfc8c6348274a0acfac9e577cc2355a7f015246e932dfaafafb4cc",
         "real-checkpoints/qwen3.5-0.8b-s1"},
        {"qwen3.5-4b-l4.h5", "87ff4099c03f0396b9243ef24ae8c8ff6aa880e86d05d156e8903362304f6a38",
         "real-checkpoints/qwen3.5-4b-l4-s1"},
        {"qwen3.5-35b-a3b-l2.h5", "c595636516aff6fbf76f9280ceeacb09bbbb11cb5f2f472429621670b35108b8",
         "real-checkpoints/qwen3.5-35b-a3b-l2-s1"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/golden/real/%s", LC_SOURCE_DIR, files[i].file);
        lc_h5 f;
        lc_error err = {0};
        lc_sparse_root r = {0};
        ck_assert_msg(lc_h5_open(&f, path, &err) == LC_OK, "%s", err.msg);
        ck_assert_msg(lc_sparse_root_read(&f, &r, &err) == LC_OK, "%s", err.msg);
        ck_assert_str_eq(r.layout, "sparse-v1");
        ck_assert_str_eq(r.checkpoint_sha256, files[i].sha256);
        ck_assert_str_eq(r.checkpoint, files[i].checkpoint);
        ck_assert_int_eq(r.topk, 8);
        lc_sparse_root_free(&r);
        lc_sparse_root_free(&r); /* twice is safe */
        lc_h5_close(&f);
    }
}
END_TEST

START_TEST(test_golden_sparse_text_2048)
{
    lc_h5 f;
    lc_error err = {0};
    lc_sparse_seq s = {0};
    ck_assert_msg(lc_h5_open(&f, REAL08, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_sparse_seq_read(&f, "/cases/real08.golden.text_2048", &s, &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(s.T, 2048);
    ck_assert_int_eq(s.N, 8);
    ck_assert_int_eq(s.P, 2056);
    ck_assert_int_eq(s.k, 8);
    ck_assert_int_eq(s.S, 109);
    ck_assert_int_eq(s.H, 1024);
    ck_assert_int_eq(s.V, 248320);
    ck_assert_int_eq(s.logits_full_pos, 2047);
    ck_assert_int_eq(s.rope_delta, 0);
    for (int t = 0; t < s.T; t++) /* text: the three axes advance together */
        ck_assert(s.position_ids[t] == t && s.position_ids[s.T + t] == t && s.position_ids[2 * s.T + t] == t);
    ck_assert(s.top1_min_margin > 0 && s.top1_min_margin < 1);

    /* the verbatim row reduced here against the stored summaries of its position */
    const int p = (int)s.logits_full_pos;
    const double lse = lc_row_logsumexp(s.logits_full, s.V);
    ck_assert_msg(fabs(lse - s.lse[p]) <= 1e-12 * fabs(s.lse[p]), "lse %.17g vs stored %.17g", lse, s.lse[p]);
    int32_t ids[8];
    double v[8];
    lc_row_topk(s.logits_full, s.V, 8, ids, v);
    for (int j = 0; j < 8; j++) {
        ck_assert_msg(ids[j] == s.topk_ids[(size_t)p * 8 + j], "top %d: id %d vs stored %lld", j, ids[j],
                      (long long)s.topk_ids[(size_t)p * 8 + j]);
        ck_assert_msg(fabs(v[j] - s.topk_values[(size_t)p * 8 + j]) <= 1e-12, "top %d: %.17g vs %.17g", j, v[j],
                      s.topk_values[(size_t)p * 8 + j]);
    }

    /* every stored hidden state against its stored RMS and sketch */
    double worst = 0;
    for (int i = 0; i < s.S; i++) {
        const double *h = s.hidden_sample + (size_t)i * s.H;
        const int64_t q = s.sample_positions[i];
        const double rms = lc_hidden_rms(h, s.H);
        ck_assert_msg(fabs(rms - s.hidden_rms[q]) <= 1e-12 * s.hidden_rms[q], "pos %lld: rms %.17g vs %.17g",
                      (long long)q, rms, s.hidden_rms[q]);
        double sk[LC_SKETCH_N];
        lc_hidden_sketch(h, s.H, sk);
        for (int j = 0; j < LC_SKETCH_N; j++) {
            const double d = fabs(sk[j] - s.hidden_sketch[(size_t)q * LC_SKETCH_N + j]) / (rms * sqrt(s.H));
            worst = d > worst ? d : worst;
        }
    }
    ck_assert_msg(worst <= 1e-13, "sketch off by %.3g of rms*sqrt(H)", worst);
    lc_sparse_seq_free(&s);
    lc_sparse_seq_free(&s);
    lc_h5_close(&f);
}
END_TEST

START_TEST(test_golden_sparse_batch_row)
{
    lc_h5 f;
    lc_error err = {0};
    lc_sparse_seq s = {0};
    ck_assert_msg(lc_h5_open(&f, REAL08, &err) == LC_OK, "%s", err.msg);
    /* row 1 of left_pad: 138 real tokens and 3 decode steps; inputs live at the case level */
    ck_assert_msg(lc_sparse_seq_read(&f, "/cases/real08.batch.left_pad/rows/1", &s, &err) == LC_OK, "%s",
                  err.msg);
    ck_assert_int_eq(s.P, 141);
    ck_assert_int_eq(s.S, 15);
    ck_assert_int_eq(s.T, 0);
    ck_assert_ptr_null(s.input_ids);
    ck_assert_ptr_null(s.logits_full);
    lc_sparse_seq_free(&s);
    lc_h5_close(&f);
}
END_TEST

START_TEST(test_golden_sparse_bad_inputs)
{
    lc_h5 f;
    lc_error err = {0};
    lc_sparse_root r = {0};
    lc_sparse_seq s = {0};
    /* a dense tiny golden is not the sparse format */
    ck_assert_msg(lc_h5_open(&f, LC_SOURCE_DIR "/golden/tiny-dense.h5", &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(lc_sparse_root_read(&f, &r, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "tiny-dense.h5") != NULL, "%s", err.msg);
    ck_assert_ptr_null(r.layout);
    lc_h5_close(&f);
    /* a case the file does not hold */
    ck_assert_msg(lc_h5_open(&f, REAL08, &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(lc_sparse_seq_read(&f, "/cases/real08.golden.nope", &s, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "real08.golden.nope") != NULL, "%s", err.msg);
    ck_assert_ptr_null(s.lse);
    lc_h5_close(&f);
}
END_TEST

/* The 35B-A3B golden's routing gaps (exporter log: the smallest gap of text_577 is 3.66e-10 at
 * position 2, of image_half 1.74e-6 at position 15), and a negative gap refused. */
START_TEST(test_golden_sparse_router_gap)
{
    lc_h5 f;
    lc_error err = {0};
    lc_sparse_seq s = {0};
    ck_assert_msg(lc_h5_open(&f, REAL35, &err) == LC_OK, "%s", err.msg);
    static const struct {
        const char *group;
        int pos;
        double lo, hi;
    } want[] = {{"/cases/real35.golden.text_577", 2, 3.6e-10, 3.7e-10},
                {"/cases/real35.golden.image_half", 15, 1.7e-6, 1.8e-6}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_msg(lc_sparse_seq_read(&f, want[i].group, &s, &err) == LC_OK, "%s", err.msg);
        ck_assert_ptr_nonnull(s.router_gap);
        int arg = 0;
        for (int p = 1; p < s.P; p++)
            arg = s.router_gap[p] < s.router_gap[arg] ? p : arg;
        ck_assert_int_eq(arg, want[i].pos);
        ck_assert_msg(s.router_gap[arg] >= want[i].lo && s.router_gap[arg] <= want[i].hi, "%s: gap %g",
                      want[i].group, s.router_gap[arg]);
        ck_assert_msg(s.router_gap[arg] <= s.router_min_margin * (1 + 1e-6) + 1e-15, "%s: %g above the case's %g",
                      want[i].group, s.router_gap[arg], s.router_min_margin);
        lc_sparse_seq_free(&s);
    }
    lc_h5_close(&f);
    /* dense goldens have none */
    ck_assert_msg(lc_h5_open(&f, REAL08, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_sparse_seq_read(&f, "/cases/real08.golden.image_tiny", &s, &err) == LC_OK, "%s", err.msg);
    ck_assert_ptr_null(s.router_gap);
    lc_sparse_seq_free(&s);
    lc_h5_close(&f);

    /* a copy whose first gap is negative */
    char tmp[] = "/tmp/lc_router_gap_XXXXXX";
    const int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    FILE *in = fopen(REAL35, "rb"), *out = fdopen(fd, "wb");
    ck_assert(in && out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
    hid_t h = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(h, 0);
    hid_t d = H5Dopen2(h, "/cases/real35.golden.text_577/router_gap", H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hsize_t start = 0, count = 1;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    const double neg = -1e-3;
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &neg), 0);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d), H5Fclose(h);
    ck_assert_msg(lc_h5_open(&f, tmp, &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(lc_sparse_seq_read(&f, "/cases/real35.golden.text_577", &s, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, tmp) && strstr(err.msg, "router_gap[0]"), "%s", err.msg);
    ck_assert_ptr_null(s.router_gap);
    lc_h5_close(&f);
    unlink(tmp);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("golden_sparse");
    TCase *tc = tcase_create("row_summary");
    tcase_add_test(tc, test_row_summary_logsumexp);
    tcase_add_test(tc, test_row_summary_topk_order);
    tcase_add_test(tc, test_row_summary_sketch_signs);
    suite_add_tcase(s, tc);
    tc = tcase_create("reader");
    tcase_add_test(tc, test_golden_sparse_roots);
    tcase_add_test(tc, test_golden_sparse_text_2048);
    tcase_add_test(tc, test_golden_sparse_batch_row);
    tcase_add_test(tc, test_golden_sparse_bad_inputs);
    tcase_add_test(tc, test_golden_sparse_router_gap);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
