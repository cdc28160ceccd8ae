/* SPDX-License-Identifier: MIT */
/*
 * The engine interface's wrappers and the in-process reference engine: spans against one
 * shot (within the cross-schedule bound, and bitwise against themselves), snapshot/restore
 * independence, the batch layout, taps, capability checks through a test-only engine that
 * hides capabilities, bad requests, and the fault table's parser.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "faults.h"
#include "lc_engine.h"
#include "qref.h"
#include "runner.h"

#define DENSE LC_SOURCE_DIR "/golden/tiny-dense"
#define IMG_A LC_SOURCE_DIR "/golden/tiny-dense/img_a.png"

static lc_engine *eng;
static lc_model_info mi;

/* The cross-schedule bound of the engine's precision (cases/README.md). */
static double cross_bound(void)
{
    return eng->info.precision == LC_EPREC_F64 ? 1e-11 : 3e-4;
}

static void setup(void)
{
    lc_error err = {0};
    ck_assert_msg(lc_engine_ref_new(&eng, NULL, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_engine_load(eng, DENSE, &mi, &err) == LC_OK, "%s", err.msg);
}

static lc_catalog cat; /* loaded by the runner tests on first use */

static void teardown(void)
{
    lc_engine_free(eng);
    eng = NULL;
    lc_catalog_free(&cat);
}

static const int32_t text_ids[] = {12, 845, 33, 610, 71, 2, 930, 402, 118, 64, 77, 5, 301, 999 - 3, 16, 250, 9};
#define N_TEXT ((int)(sizeof text_ids / sizeof text_ids[0]))

static int open_text(lc_prompt_info *pi)
{
    lc_error err = {0};
    lc_pseg seg = {.type = LC_PSEG_IDS, .ids = text_ids, .n_ids = N_TEXT};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1};
    ck_assert_msg(lc_engine_prompt_open(eng, &in, pi, &err) == LC_OK, "%s", err.msg);
    return pi->handle;
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

/* Prefills [0, T) in spans of `chunk` (0 = one shot) into a new sequence; logits (T, V). */
static int prefill_spans(int prompt, int T, int chunk, double *logits)
{
    lc_error err = {0};
    int seq;
    ck_assert_msg(lc_engine_seq_open(eng, &seq, &err) == LC_OK, "%s", err.msg);
    for (int s = 0; s < T; s += chunk ? chunk : T) {
        int to = chunk && s + chunk < T ? s + chunk : T;
        lc_prefill_out o = {.sel = LC_LOGITS_ALL, .logits = logits + (size_t)s * mi.vocab_size};
        ck_assert_msg(lc_engine_prefill(eng, seq, prompt, s, to, &o, &err) == LC_OK, "%s", err.msg);
    }
    return seq;
}

/* ---------------------------------------------------------------- prefill */

START_TEST(test_engine_ref_prefill_spans)
{
    lc_prompt_info pi = {0};
    int p = open_text(&pi);
    const int T = pi.n, V = mi.vocab_size;
    ck_assert_int_eq(T, N_TEXT);
    ck_assert_int_eq(pi.rope_delta, 0);
    for (int i = 0; i < T; i++) /* text: T = H = W = i */
        ck_assert(pi.pos[i] == i && pi.pos[T + i] == i && pi.pos[2 * T + i] == i);
    double *one = malloc((size_t)T * V * sizeof *one), *a = malloc((size_t)T * V * sizeof *a),
           *b = malloc((size_t)T * V * sizeof *b);
    prefill_spans(p, T, 0, one);
    const int chunks[] = {1, 2, 3, 5, 16};
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        prefill_spans(p, T, chunks[k], a);
        prefill_spans(p, T, chunks[k], b);
        double d = max_abs_diff(a, one, (size_t)T * V);
        ck_assert_msg(d <= cross_bound(), "spans of %d vs one shot: max_abs %g > %g", chunks[k], d, cross_bound());
        ck_assert_msg(!memcmp(a, b, (size_t)T * V * sizeof *a), "spans of %d: two runs differ", chunks[k]);
    }
    /* a different schedule is not bitwise the same: the comparison above measures something */
    prefill_spans(p, T, 1, a);
    ck_assert(max_abs_diff(a, one, (size_t)T * V) > 0);
    /* last-row selection equals the last row of ALL */
    lc_error err = {0};
    int seq;
    double *last = malloc((size_t)V * sizeof *last);
    ck_assert(lc_engine_seq_open(eng, &seq, &err) == LC_OK);
    lc_prefill_out o = {.sel = LC_LOGITS_LAST, .logits = last};
    ck_assert_msg(lc_engine_prefill(eng, seq, p, 0, T, &o, &err) == LC_OK, "%s", err.msg);
    ck_assert(!memcmp(last, one + (size_t)(T - 1) * V, (size_t)V * sizeof *last));
    free(last);
    free(one);
    free(a);
    free(b);
    lc_prompt_info_free(&pi);
    lc_prompt_info_free(&pi); /* twice is safe */
}
END_TEST

START_TEST(test_engine_ref_prefill_bad_span)
{
    lc_prompt_info pi = {0};
    int p = open_text(&pi), seq;
    lc_error err = {0};
    ck_assert(lc_engine_seq_open(eng, &seq, &err) == LC_OK);
    lc_prefill_out o = {0};
    /* the sequence holds 0 tokens: a span from 3 does not continue it */
    ck_assert_int_eq(lc_engine_prefill(eng, seq, p, 3, 5, &o, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "holds 0 tokens"), "%s", err.msg);
    ck_assert_int_eq(lc_engine_prefill(eng, seq, p, 0, pi.n + 1, &o, &err), LC_EINPUT);
    ck_assert_int_eq(lc_engine_prefill(eng, seq, 99, 0, 1, &o, &err), LC_EINPUT);
    ck_assert_int_eq(lc_engine_decode(eng, 42, 1, NULL, &err), LC_EINPUT);
    lc_prompt_info_free(&pi);
}
END_TEST

/* ---------------------------------------------------------------- snapshots */

START_TEST(test_engine_ref_snapshot_independent)
{
    lc_prompt_info pi = {0};
    int p = open_text(&pi);
    const int T = pi.n, V = mi.vocab_size, split = 7;
    lc_error err = {0};
    int live, snap, r1, r2;
    double *x = malloc((size_t)T * V * sizeof *x);
    double *d_fresh = malloc((size_t)V * sizeof *d_fresh), *d1 = malloc((size_t)V * sizeof *d1),
           *d2 = malloc((size_t)V * sizeof *d2), *dl = malloc((size_t)V * sizeof *dl);
    /* fresh: [0, split) then [split, T), then decode 5 */
    int fresh = prefill_spans(p, split, 0, x);
    lc_prefill_out o = {0};
    ck_assert(lc_engine_prefill(eng, fresh, p, split, T, &o, &err) == LC_OK);
    ck_assert(lc_engine_decode(eng, fresh, 5, d_fresh, &err) == LC_OK);
    /* snapshot at split; the live sequence takes other tokens afterwards */
    live = prefill_spans(p, split, 0, x);
    ck_assert_msg(lc_engine_snapshot(eng, live, &snap, &err) == LC_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        ck_assert(lc_engine_decode(eng, live, 100 + i, dl, &err) == LC_OK);
    /* two restores, each independent of the live sequence and of each other */
    ck_assert(lc_engine_restore(eng, snap, &r1, &err) == LC_OK);
    ck_assert(lc_engine_restore(eng, snap, &r2, &err) == LC_OK);
    ck_assert(r1 != r2 && r1 != live);
    ck_assert(lc_engine_prefill(eng, r1, p, split, T, &o, &err) == LC_OK);
    ck_assert(lc_engine_decode(eng, r1, 5, d1, &err) == LC_OK);
    lc_engine_seq_close(eng, live);
    lc_engine_snap_release(eng, snap);
    ck_assert(lc_engine_prefill(eng, r2, p, split, T, &o, &err) == LC_OK);
    ck_assert(lc_engine_decode(eng, r2, 5, d2, &err) == LC_OK);
    ck_assert_msg(!memcmp(d1, d_fresh, (size_t)V * sizeof *d1), "restored run differs from the fresh run");
    ck_assert_msg(!memcmp(d2, d_fresh, (size_t)V * sizeof *d2), "second restore differs from the fresh run");
    /* the states agree element by element too */
    lc_state s1 = {0}, s2 = {0};
    ck_assert(lc_engine_state(eng, r1, &s1, &err) == LC_OK);
    ck_assert(lc_engine_state(eng, fresh, &s2, &err) == LC_OK);
    ck_assert_int_eq(s1.len, T + 1);
    ck_assert(s1.n == s2.n && s1.n > 0 && !memcmp(s1.data, s2.data, s1.n * sizeof *s1.data));
    lc_state_free(&s1);
    lc_state_free(&s2);
    lc_state_free(&s2);
    ck_assert_int_eq(lc_engine_restore(eng, snap, &r1, &err), LC_EINPUT); /* released */
    free(x);
    free(d_fresh);
    free(d1);
    free(d2);
    free(dl);
    lc_prompt_info_free(&pi);
}
END_TEST

/* The shallow_snapshot plant: the restored sequence sees the live one's later writes. */
START_TEST(test_engine_ref_fault_shallow_snapshot)
{
    lc_fault_set fs = {0};
    lc_error err = {0};
    ck_assert(lc_fault_parse(&fs, "shallow_snapshot", &err) == LC_OK);
    lc_engine_free(eng);
    ck_assert(lc_engine_ref_new(&eng, &fs, &err) == LC_OK);
    ck_assert(lc_engine_load(eng, DENSE, &mi, &err) == LC_OK);
    ck_assert_msg(strstr(eng->info.detail, "shallow_snapshot"), "%s", eng->info.detail);
    lc_prompt_info pi = {0};
    int p = open_text(&pi), snap, r;
    const int V = mi.vocab_size;
    double *x = malloc((size_t)pi.n * V * sizeof *x), *a = malloc((size_t)V * sizeof *a),
           *b = malloc((size_t)V * sizeof *b);
    int live = prefill_spans(p, 5, 0, x);
    int ref = prefill_spans(p, 5, 0, x);
    ck_assert(lc_engine_snapshot(eng, live, &snap, &err) == LC_OK);
    ck_assert(lc_engine_decode(eng, live, 300, NULL, &err) == LC_OK);
    ck_assert(lc_engine_restore(eng, snap, &r, &err) == LC_OK);
    ck_assert(lc_engine_decode(eng, r, 5, a, &err) == LC_OK);
    ck_assert(lc_engine_decode(eng, ref, 5, b, &err) == LC_OK);
    ck_assert_msg(max_abs_diff(a, b, (size_t)V) > 0, "the planted view must leak the live writes");
    free(x);
    free(a);
    free(b);
    lc_prompt_info_free(&pi);
}
END_TEST

/* ---------------------------------------------------------------- images, batch, taps */

START_TEST(test_engine_ref_image_prompt)
{
    lc_error err = {0};
    const int32_t pre[] = {902, 925, 888}, post[] = {201, 160};
    lc_pseg segs[3] = {{.type = LC_PSEG_IDS, .ids = pre, .n_ids = 3},
                       {.type = LC_PSEG_IMAGE, .image = IMG_A},
                       {.type = LC_PSEG_IDS, .ids = post, .n_ids = 2}};
    lc_prompt_in in = {.segs = segs, .n_segs = 3};
    lc_prompt_info pi = {0}, part = {0};
    ck_assert_msg(lc_engine_prompt_open(eng, &in, &pi, &err) == LC_OK, "%s", err.msg);
    ck_assert_int_eq(pi.n_images, 1);
    int ph = 0;
    for (int i = 0; i < pi.n; i++)
        ph += pi.ids[i] == mi.image_token_id;
    ck_assert_int_eq(ph, pi.grid[0][0] * pi.grid[0][1] * pi.grid[0][2] / 4);
    ck_assert_int_eq(pi.ids[3], mi.vision_start_token_id);
    ck_assert_int_eq(pi.ids[4 + ph], mi.vision_end_token_id);
    ck_assert(pi.rope_delta != 0);
    double *emb;
    int rows;
    ck_assert(lc_engine_vision(eng, pi.handle, &emb, &rows, &err) == LC_OK);
    ck_assert_int_eq(rows, ph);
    free(emb);
    /* partial vision: the image ran no vision, so a span over it is refused, text before it is not */
    in.vision_from = 1;
    ck_assert_msg(lc_engine_prompt_open(eng, &in, &part, &err) == LC_OK, "%s", err.msg);
    ck_assert(lc_engine_vision(eng, part.handle, &emb, &rows, &err) == LC_OK);
    ck_assert_int_eq(rows, 0);
    free(emb);
    int seq;
    lc_prefill_out o = {0};
    ck_assert(lc_engine_seq_open(eng, &seq, &err) == LC_OK);
    ck_assert(lc_engine_prefill(eng, seq, part.handle, 0, 3, &o, &err) == LC_OK);
    ck_assert_int_eq(lc_engine_prefill(eng, seq, part.handle, 3, pi.n, &o, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "ran no vision"), "%s", err.msg);
    /* a missing image: bad input naming the file */
    segs[1].image = LC_BINARY_DIR "/no-such-image.png";
    in.vision_from = 0;
    lc_prompt_info bad = {0};
    ck_assert_int_eq(lc_engine_prompt_open(eng, &in, &bad, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "no-such-image.png"), "%s", err.msg);
    lc_prompt_info_free(&pi);
    lc_prompt_info_free(&part);
}
END_TEST

START_TEST(test_engine_ref_batch_rows_alone)
{
    /* a 2-row batch, the short row left-padded: each row's real logits equal the row alone
     * within the cross bound, and the pads come back NaN */
    lc_error err = {0};
    const int32_t shortids[] = {5, 6, 7, 8};
    lc_pseg s0 = {.type = LC_PSEG_IDS, .ids = text_ids, .n_ids = N_TEXT};
    lc_pseg s1 = {.type = LC_PSEG_IDS, .ids = shortids, .n_ids = 4};
    lc_prompt_in i0 = {.segs = &s0, .n_segs = 1}, i1 = {.segs = &s1, .n_segs = 1};
    lc_prompt_info p0 = {0}, p1 = {0};
    ck_assert(lc_engine_prompt_open(eng, &i0, &p0, &err) == LC_OK);
    ck_assert(lc_engine_prompt_open(eng, &i1, &p1, &err) == LC_OK);
    const int L = N_TEXT, V = mi.vocab_size;
    int seqs[2], prompts[2] = {p0.handle, p1.handle};
    ck_assert(lc_engine_seq_open(eng, &seqs[0], &err) == LC_OK);
    ck_assert(lc_engine_seq_open(eng, &seqs[1], &err) == LC_OK);
    double *bl = malloc((size_t)2 * L * V * sizeof *bl), *alone = malloc((size_t)L * V * sizeof *alone);
    ck_assert_msg(lc_engine_batch_prefill(eng, seqs, prompts, 2, 0, L, bl, &err) == LC_OK, "%s", err.msg);
    prefill_spans(p1.handle, 4, 0, alone);
    ck_assert(isnan(bl[(size_t)L * V]));                        /* row 1, column 0: a pad */
    double d = max_abs_diff(bl + ((size_t)L + L - 4) * V, alone, (size_t)4 * V);
    ck_assert_msg(d <= cross_bound(), "row 1 vs alone: %g", d);
    prefill_spans(p0.handle, L, 0, alone);
    d = max_abs_diff(bl, alone, (size_t)L * V);
    ck_assert_msg(d <= cross_bound(), "row 0 vs alone: %g", d);
    /* batched decode: one token per row */
    int32_t toks[2] = {40, 41};
    ck_assert(lc_engine_batch_decode(eng, seqs, toks, 2, bl, &err) == LC_OK);
    ck_assert(!isnan(bl[0]) && !isnan(bl[V]));
    free(bl);
    free(alone);
    lc_prompt_info_free(&p0);
    lc_prompt_info_free(&p1);
}
END_TEST

START_TEST(test_engine_ref_rope_tap)
{
    /* text positions: cos/sin of theta^(-2j/R) * p, computed here in double */
    lc_error err = {0};
    const int n = 4, R = mi.rotary_dim, half = R / 2;
    int64_t pos[12];
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < n; i++)
            pos[a * n + i] = 3 * i + 1;
    double *out = malloc((size_t)n * R * sizeof *out);
    ck_assert(lc_engine_rope(eng, pos, n, out, &err) == LC_OK);
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            double ang = (double)pos[i] * pow(mi.rope_theta, -2.0 * j / R);
            worst = fmax(worst, fabs(out[(size_t)i * R + j] - cos(ang)));
            worst = fmax(worst, fabs(out[(size_t)i * R + half + j] - sin(ang)));
        }
    ck_assert_msg(worst < (eng->info.precision == LC_EPREC_F64 ? 1e-14 : 1e-6), "rope tap off by %g", worst);
    free(out);
}
END_TEST

/* ---------------------------------------------------------------- the final hidden state */

/* max over rows of max_i |a - e| / rms(e row), over n rows of H */
static double row_rel_diff(const double *a, const double *e, int n, int H)
{
    double worst = 0;
    for (int p = 0; p < n; p++) {
        double ss = 0;
        for (int i = 0; i < H; i++)
            ss += e[(size_t)p * H + i] * e[(size_t)p * H + i];
        const double rms = sqrt(ss / H);
        for (int i = 0; i < H; i++) {
            const double d = fabs(a[(size_t)p * H + i] - e[(size_t)p * H + i]) / rms;
            worst = d > worst || isnan(d) ? d : worst;
        }
    }
    return worst;
}

/* The tap against the harness's own final norm of the residual tap's last row (LC_CAP_HIDDEN):
 * x / sqrt(mean(x^2) + eps) * (1 + w), in double, w and eps read from the checkpoint by the
 * loader; out (T, H). Two paths: the engine's norm kernel and this loop. */
static void final_norm_of_tap(lc_engine *e, int T, double *fin, double *expect)
{
    lc_error err = {0};
    qref_model m = {0};
    qref_error qe = {0};
    ck_assert_msg(qref_model_load(&m, DENSE, &qe) == QREF_OK, "%s", qe.msg);
    const int H = mi.hidden_size, L = mi.num_layers;
    lc_pseg seg = {.type = LC_PSEG_IDS, .ids = text_ids, .n_ids = T};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1};
    lc_prompt_info pi = {0};
    ck_assert_msg(lc_engine_prompt_open(e, &in, &pi, &err) == LC_OK, "%s", err.msg);
    double *hid = malloc((size_t)(L + 1) * T * H * sizeof *hid);
    int seq;
    ck_assert(lc_engine_seq_open(e, &seq, &err) == LC_OK);
    lc_prefill_out o = {.sel = LC_LOGITS_NONE, .hidden = hid, .final_hidden = fin};
    ck_assert_msg(lc_engine_prefill(e, seq, pi.handle, 0, T, &o, &err) == LC_OK, "%s", err.msg);
    for (int p = 0; p < T; p++) {
        const double *x = hid + ((size_t)L * T + p) * H;
        double ss = 0;
        for (int i = 0; i < H; i++)
            ss += x[i] * x[i];
        const double inv = 1.0 / sqrt(ss / H + m.cfg.rms_norm_eps);
        for (int i = 0; i < H; i++)
            expect[(size_t)p * H + i] = x[i] * inv * (1.0 + (double)m.final_norm[i]);
    }
    lc_engine_seq_close(e, seq);
    lc_prompt_info_free(&pi);
    free(hid);
    qref_model_free(&m);
}

START_TEST(test_engine_ref_final_hidden_tap)
{
    /* the final norm's output equals the residual tap normalised here (rounding of the
     * engine's precision), and the planted tenfold final-norm epsilon moves it beyond that */
    const int T = N_TEXT, H = mi.hidden_size;
    /* measured: 0 (f64: the same operations in double), 1.3e-7 (f32); the plant 5.5e-6 */
    const double tol = eng->info.precision == LC_EPREC_F64 ? 1e-13 : 5e-7;
    double *fin = malloc((size_t)T * H * sizeof *fin), *want = malloc((size_t)T * H * sizeof *want);
    final_norm_of_tap(eng, T, fin, want);
    const double d = row_rel_diff(fin, want, T, H);
    ck_assert_msg(d <= tol, "final hidden vs the normalised residual tap: %g of the row rms (bound %g)", d, tol);

    lc_fault_set fs;
    lc_error err = {0};
    lc_engine *bad = NULL;
    memset(&fs, 0, sizeof fs);
    ck_assert(lc_fault_parse(&fs, "final_norm_eps_x10", &err) == LC_OK);
    ck_assert(lc_engine_ref_new(&bad, &fs, &err) == LC_OK);
    lc_model_info bmi;
    ck_assert(lc_engine_load(bad, DENSE, &bmi, &err) == LC_OK);
    final_norm_of_tap(bad, T, fin, want);
    const double dp = row_rel_diff(fin, want, T, H);
    ck_assert_msg(dp > tol, "planted final_norm_eps_x10: %g of the row rms, within the bound %g", dp, tol);
    lc_engine_free(bad);
    free(fin);
    free(want);
}
END_TEST

START_TEST(test_engine_ref_final_hidden_paths)
{
    /* decode_final: the logits of plain decode bitwise, and the final hidden of the position
     * the one-shot prefill of the longer prompt gives (cross bound); batch_prefill_final and
     * batch_decode_final: each row as the row alone, pads NaN */
    lc_error err = {0};
    const int T = N_TEXT, H = mi.hidden_size, V = mi.vocab_size;
    lc_prompt_info pl = {0}, ps = {0};
    lc_pseg sl = {.type = LC_PSEG_IDS, .ids = text_ids, .n_ids = T}, ss = {.type = LC_PSEG_IDS, .ids = text_ids,
                                                                           .n_ids = T - 1};
    lc_prompt_in il = {.segs = &sl, .n_segs = 1}, is = {.segs = &ss, .n_segs = 1};
    ck_assert(lc_engine_prompt_open(eng, &il, &pl, &err) == LC_OK);
    ck_assert(lc_engine_prompt_open(eng, &is, &ps, &err) == LC_OK);
    double *full = malloc((size_t)T * H * sizeof *full), *row = malloc((size_t)H * sizeof *row);
    double *lg = malloc((size_t)V * sizeof *lg), *lg2 = malloc((size_t)V * sizeof *lg2);
    double *bfin = malloc((size_t)2 * T * H * sizeof *bfin), *bl = malloc((size_t)2 * T * V * sizeof *bl);
    int a, b, c;
    ck_assert(lc_engine_seq_open(eng, &a, &err) == LC_OK);
    lc_prefill_out o = {.sel = LC_LOGITS_NONE, .final_hidden = full};
    ck_assert(lc_engine_prefill(eng, a, pl.handle, 0, T, &o, &err) == LC_OK);
    ck_assert(lc_engine_seq_open(eng, &b, &err) == LC_OK);
    ck_assert(lc_engine_seq_open(eng, &c, &err) == LC_OK);
    lc_prefill_out none = {.sel = LC_LOGITS_NONE};
    ck_assert(lc_engine_prefill(eng, b, ps.handle, 0, T - 1, &none, &err) == LC_OK);
    ck_assert(lc_engine_prefill(eng, c, ps.handle, 0, T - 1, &none, &err) == LC_OK);
    ck_assert_msg(lc_engine_decode_final(eng, b, text_ids[T - 1], lg, row, &err) == LC_OK, "%s", err.msg);
    ck_assert(lc_engine_decode(eng, c, text_ids[T - 1], lg2, &err) == LC_OK);
    ck_assert_msg(!memcmp(lg, lg2, (size_t)V * sizeof *lg), "decode_final's logits differ from decode's");
    double d = row_rel_diff(row, full + (size_t)(T - 1) * H, 1, H);
    ck_assert_msg(d <= cross_bound(), "decode_final vs one-shot prefill: %g", d);
    /* the batch: the longer prompt and the shorter one (one pad) */
    int seqs[2], prompts[2] = {pl.handle, ps.handle};
    ck_assert(lc_engine_seq_open(eng, &seqs[0], &err) == LC_OK);
    ck_assert(lc_engine_seq_open(eng, &seqs[1], &err) == LC_OK);
    ck_assert_msg(lc_engine_batch_prefill_final(eng, seqs, prompts, 2, 0, T, bl, bfin, &err) == LC_OK, "%s", err.msg);
    ck_assert(isnan(bfin[(size_t)T * H]));                       /* row 1, column 0: a pad */
    d = row_rel_diff(bfin, full, T, H);
    ck_assert_msg(d <= cross_bound(), "batch row 0 vs alone: %g", d);
    d = row_rel_diff(bfin + ((size_t)T + 1) * H, full, T - 1, H);
    ck_assert_msg(d <= cross_bound(), "batch row 1 vs alone: %g", d);
    int32_t toks[2] = {40, text_ids[T - 1]};
    ck_assert(lc_engine_batch_decode_final(eng, seqs, toks, 2, NULL, bfin, &err) == LC_OK);
    d = row_rel_diff(bfin + H, row, 1, H);
    ck_assert_msg(d <= cross_bound(), "batch decode row 1 vs decode_final alone: %g", d);
    /* without the buffer: an internal error, not a crash */
    ck_assert_int_eq(lc_engine_decode_final(eng, a, 5, lg, NULL, &err), LC_EINTERNAL);
    free(full), free(row), free(lg), free(lg2), free(bfin), free(bl);
    lc_prompt_info_free(&pl);
    lc_prompt_info_free(&ps);
}
END_TEST

/* ---------------------------------------------------------------- capabilities */

/* A test-only engine that forwards to the reference engine but declares fewer capabilities. */
static lc_engine *masked_new(lc_engine *inner, uint32_t hide)
{
    lc_engine *m = malloc(sizeof *m);
    *m = *inner;
    m->info.caps &= ~hide;
    return m;
}

START_TEST(test_engine_ref_masked_capability)
{
    lc_engine *m = masked_new(eng, 1u << LC_CAP_SNAPSHOT | 1u << LC_CAP_IMAGES);
    lc_error err = {0};
    int snap;
    ck_assert_int_eq(lc_engine_snapshot(m, 0, &snap, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "snapshot"), "%s", err.msg);
    lc_pseg seg = {.type = LC_PSEG_IMAGE, .image = IMG_A};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1};
    lc_prompt_info pi = {0};
    ck_assert_int_eq(lc_engine_prompt_open(m, &in, &pi, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "lacks") && strstr(err.msg, "images"), "%s", err.msg);
    free(m); /* the wrapper shares the inner engine's implementation */
    /* a missing operation is refused by name */
    lc_engine_ops ops = *eng->ops;
    ops.rope = NULL;
    lc_engine noop = *eng;
    noop.ops = &ops;
    double x;
    ck_assert_int_eq(lc_engine_rope(&noop, NULL, 0, &x, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "rope"), "%s", err.msg);
    /* names round-trip */
    for (int c = 0; c < LC_CAP_COUNT; c++)
        ck_assert_int_eq(lc_cap_from_name(lc_cap_name((lc_cap)c)), c);
    ck_assert_int_eq(lc_cap_from_name("telepathy"), -1);
    for (int p = 0; p < LC_EPREC_COUNT; p++)
        ck_assert_int_eq(lc_eprec_from_name(lc_eprec_name((lc_eprec)p)), p);
    ck_assert_int_eq(lc_eprec_from_name("f8"), LC_EPREC_UNKNOWN);
}
END_TEST

START_TEST(test_engine_ref_reset_releases)
{
    lc_prompt_info pi = {0};
    int p = open_text(&pi), seq;
    lc_error err = {0};
    ck_assert(lc_engine_seq_open(eng, &seq, &err) == LC_OK);
    ck_assert(lc_engine_reset(eng, &err) == LC_OK);
    lc_prefill_out o = {0};
    ck_assert_int_eq(lc_engine_prefill(eng, seq, p, 0, 1, &o, &err), LC_EINPUT);
    ck_assert(lc_engine_restart(eng, &err) == LC_OK);
    /* a bad checkpoint directory is bad input naming it */
    ck_assert_int_eq(lc_engine_load(eng, LC_BINARY_DIR "/no-such-checkpoint", &mi, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "no-such-checkpoint"), "%s", err.msg);
    lc_prompt_info_free(&pi);
}
END_TEST

/* ---------------------------------------------------------------- the fault table */

START_TEST(test_engine_ref_fault_parse)
{
    lc_fault_set s = {0};
    lc_error err = {0};
    ck_assert(lc_fault_parse(&s, "pad_into_conv", &err) == LC_OK && s.on[LC_FAULT_PAD_INTO_CONV]);
    ck_assert(lc_fault_parse(&s, "rms_eps=1e-5", &err) == LC_OK && s.value[LC_FAULT_RMS_EPS] == 1e-5);
    ck_assert_int_eq(lc_fault_parse(&s, "pad_into", &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "unknown fault 'pad_into'"), "%s", err.msg);
    ck_assert_int_eq(lc_fault_parse(&s, "pad_into_conv=1", &err), LC_EINPUT);
    ck_assert_int_eq(lc_fault_parse(&s, "rms_eps", &err), LC_EINPUT);
    ck_assert_int_eq(lc_fault_parse(&s, "rms_eps=-1", &err), LC_EINPUT);
    ck_assert_int_eq(lc_fault_parse(&s, "rms_eps=1e-5x", &err), LC_EINPUT);
    for (int f = 0; f < LC_FAULT_COUNT; f++) {
        char spec[80];
        lc_fault_set one = {0};
        snprintf(spec, sizeof spec, "%s%s", lc_fault_name((lc_fault)f), lc_fault_takes_value((lc_fault)f) ? "=1.5" : "");
        ck_assert_msg(lc_fault_parse(&one, spec, &err) == LC_OK, "%s: %s", spec, err.msg);
        ck_assert(one.on[f]);
        ck_assert(lc_fault_help((lc_fault)f)[0]);
    }
}
END_TEST

/* ---------------------------------------------------------------- the runner over test engines */

static const lc_case *find_case(const char *name)
{
    lc_error err = {0};
    if (!cat.n)
        ck_assert_msg(lc_catalog_load_dir(&cat, LC_SOURCE_DIR "/cases", LC_SOURCE_DIR, &err) == 0, "%s", err.msg);
    const lc_case *c = lc_catalog_find(&cat, name);
    ck_assert_msg(c != NULL, "no case '%s'", name);
    return c;
}

START_TEST(test_engine_ref_runner_skips_missing_capability)
{
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    lc_engine *m = masked_new(eng, 1u << LC_CAP_SNAPSHOT | 1u << LC_CAP_IMAGES | 1u << LC_CAP_VJP);
    static const struct {
        const char *name, *reason;
    } rows[] = {{"dense.snapshot.prefix", "engine lacks snapshot"},
                {"dense.gradient.layer_gdn", "engine lacks vjp"},
                {"dense.gradient.l2norm", "engine lacks vjp"},
                {"dense.golden.image", "engine lacks images"},
                {"moe.image_checkpoint.after_image", "engine lacks images"}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lc_case_result r = {0};
        lc_verdict v = lc_run_case(find_case(rows[i].name), &o, m, &r);
        ck_assert_msg(v == LC_VERDICT_SKIP, "%s: verdict %s (%s)", rows[i].name, lc_verdict_name(v), r.reason);
        ck_assert_str_eq(r.reason, rows[i].reason);
        ck_assert_int_eq(r.n_cmps, 0);
        lc_case_result_free(&r);
    }
    /* what the masked engine can do still passes, and the full engine runs the skipped case */
    lc_case_result r = {0};
    ck_assert_int_eq(lc_run_case(find_case("dense.golden.text"), &o, m, &r), LC_VERDICT_PASS);
    lc_case_result_free(&r);
    ck_assert_int_eq(lc_run_case(find_case("dense.snapshot.prefix"), &o, eng, &r), LC_VERDICT_PASS);
    lc_case_result_free(&r);
    /* optional taps hidden: the case still runs, without those comparisons */
    lc_engine *notaps = masked_new(eng, 1u << LC_CAP_HIDDEN | 1u << LC_CAP_VISION | 1u << LC_CAP_STATE);
    ck_assert_int_eq(lc_run_case(find_case("dense.chunked.text"), &o, notaps, &r), LC_VERDICT_PASS);
    for (int i = 0; i < r.n_cmps; i++)
        ck_assert_msg(!strstr(r.cmps[i].id, ".state"), "a state comparison without the state tap: %s", r.cmps[i].id);
    /* ... and the result says which comparisons were left out, so a pass hides nothing */
    ck_assert_str_eq(r.not_compared, "state");
    lc_case_result_free(&r);
    ck_assert_int_eq(lc_run_case(find_case("dense.golden.image"), &o, notaps, &r), LC_VERDICT_PASS);
    ck_assert_str_eq(r.not_compared, "vision,hidden");
    lc_case_result_free(&r);
    ck_assert_int_eq(lc_run_case(find_case("dense.golden.image"), &o, eng, &r), LC_VERDICT_PASS);
    ck_assert_str_eq(r.not_compared, "");
    lc_case_result_free(&r);
    free(notaps);
    free(m);
}
END_TEST

/* A test-only engine that forwards to the reference engine, fails the n-th decode with
 * LC_EENGINE and counts resets and restarts. */
static struct {
    const lc_engine_ops *inner;
    int fail_at, decodes, resets, restarts;
} flaky;

static int flaky_decode(lc_engine *e, int seq, int32_t token, double *logits, lc_error *err)
{
    if (++flaky.decodes == flaky.fail_at)
        return lc_fail(err, LC_EENGINE, "engine flaky: decode: the engine process exited (status 1)");
    return flaky.inner->decode(e, seq, token, logits, err);
}

static int flaky_reset(lc_engine *e, lc_error *err)
{
    flaky.resets++;
    return flaky.inner->reset(e, err);
}

static int flaky_restart(lc_engine *e, lc_error *err)
{
    flaky.restarts++;
    return flaky.inner->restart(e, err);
}

START_TEST(test_engine_ref_runner_engine_failure)
{
    lc_engine_ops ops = *eng->ops;
    flaky.inner = eng->ops;
    flaky.fail_at = 2;
    flaky.decodes = flaky.resets = flaky.restarts = 0;
    ops.decode = flaky_decode;
    ops.reset = flaky_reset;
    ops.restart = flaky_restart;
    lc_engine fe = *eng;
    fe.ops = &ops;
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    lc_case_result r = {0};
    lc_verdict v = lc_run_case(find_case("dense.golden.text"), &o, &fe, &r);
    ck_assert_msg(v == LC_VERDICT_ERROR, "verdict %s", lc_verdict_name(v));
    ck_assert_str_eq(r.reason, "engine flaky: decode: the engine process exited (status 1)");
    ck_assert_int_eq(flaky.restarts, 1);
    ck_assert_int_eq(flaky.resets, 1); /* the case started from fresh engine state */
    lc_case_result_free(&r);
    /* the run goes on: the next case finds a working engine */
    v = lc_run_case(find_case("dense.cache.text"), &o, &fe, &r);
    ck_assert_msg(v == LC_VERDICT_PASS, "verdict %s: %s", lc_verdict_name(v), r.reason);
    ck_assert_int_eq(flaky.resets, 2);
    ck_assert_int_eq(flaky.restarts, 1);
    lc_case_result_free(&r);
}
END_TEST

/* A test-only engine whose vjp forwards to the reference engine, then damages one result:
 * drops it (a kernel with no backward) or puts a NaN in it. */
static struct {
    const lc_engine_ops *inner;
    const char *name;           /* the result damaged */
    int nan;                    /* 1: a NaN at element 3; 0: dropped */
} lossy;

static int lossy_vjp(lc_engine *e, const lc_vjp_in *in, lc_vjp_result *want, int n_want, lc_error *err)
{
    int rc = lossy.inner->vjp(e, in, want, n_want, err);
    for (int i = 0; !rc && i < n_want; i++)
        if (!strcmp(want[i].name, lossy.name) && want[i].data) {
            if (lossy.nan) {
                want[i].data[3] = NAN;
            } else {
                free(want[i].data);
                want[i].data = NULL;
            }
        }
    return rc;
}

START_TEST(test_engine_ref_runner_gradient_damaged)
{
    static const struct {
        const char *cas, *result;
        int nan;
        lc_verdict v;
        const char *reason;
    } rows[] = {
        {"dense.gradient.gdn_n9.recurrent", "grad_beta", 0, LC_VERDICT_FAIL, "engine returned no gradient for beta"},
        {"dense.gradient.layer_gdn", "grad_w/linear_attn.A_log", 0, LC_VERDICT_FAIL,
         "engine returned no gradient for linear_attn.A_log"},
        {"dense.gradient.conv", "grad_w", 1, LC_VERDICT_FAIL,
         "engine returned a non-finite gradient for w (1 values, the first at element 3: nan)"},
        /* forward outputs are optional: left out, the case still passes on its gradients */
        {"dense.gradient.rmsnorm", "out", 0, LC_VERDICT_PASS, ""},
    };
    lc_engine_ops ops = *eng->ops;
    lossy.inner = eng->ops;
    ops.vjp = lossy_vjp;
    lc_engine le = *eng;
    le.ops = &ops;
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lossy.name = rows[i].result;
        lossy.nan = rows[i].nan;
        lc_case_result r = {0};
        lc_verdict v = lc_run_case(find_case(rows[i].cas), &o, &le, &r);
        ck_assert_msg(v == rows[i].v, "%s without %s: verdict %s (%s)", rows[i].cas, rows[i].result,
                      lc_verdict_name(v), r.reason);
        ck_assert_str_eq(r.reason, rows[i].reason);
        int found = 0;
        for (int k = 0; k < r.n_cmps; k++)
            found |= !strcmp(r.cmps[k].id, rows[i].result);
        /* a missing or damaged gradient is still a recorded (failing) comparison */
        ck_assert_msg(found == (rows[i].v == LC_VERDICT_FAIL), "%s: comparison %s %s", rows[i].cas, rows[i].result,
                      found ? "recorded" : "missing");
        lc_case_result_free(&r);
    }
}
END_TEST

/* The vjp operation refuses bad requests with a message naming what is wrong. */
START_TEST(test_engine_ref_vjp_errors)
{
    const double x[6] = {1, 2, 3, 4, 5, 6}, w[3] = {0.1, 0.2, 0.3};
    lc_vjp_tensor in[2] = {{.name = "x", .ndim = 2, .shape = {2, 3}, .data = x},
                           {.name = "w", .ndim = 1, .shape = {3}, .data = w}};
    lc_vjp_tensor dy = {.name = "d_out", .ndim = 2, .shape = {2, 3}, .data = x};
    lc_vjp_result want[2] = {{.name = "grad_x", .ndim = 2, .shape = {2, 3}}, {.name = "grad_w", .ndim = 1, .shape = {3}}};
    lc_vjp_in req = {.fn = "rmsnorm", .inputs = in, .n_inputs = 2, .grads = &dy, .n_grads = 1};
    lc_error err = {0};
    ck_assert_msg(lc_engine_vjp(eng, &req, want, 2, &err) == LC_OK, "%s", err.msg);
    ck_assert(want[0].data && want[1].data && isfinite(want[0].data[5]));
    lc_vjp_results_free(want, 2);
    ck_assert(!want[0].data);
    req.fn = "rmsnorm_fused";
    ck_assert_int_eq(lc_engine_vjp(eng, &req, want, 2, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "unknown function 'rmsnorm_fused'"), "%s", err.msg);
    req.fn = "rmsnorm";
    req.n_inputs = 1;
    ck_assert_int_eq(lc_engine_vjp(eng, &req, want, 2, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "no input 'w'"), "%s", err.msg);
    req.n_inputs = 2;
    in[1].shape[0] = 4;
    ck_assert_int_eq(lc_engine_vjp(eng, &req, want, 2, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "input 'w': dimension 0 is 4, expected 3"), "%s", err.msg);
    in[1].shape[0] = 3;
    want[1].shape[0] = 5;
    ck_assert_int_eq(lc_engine_vjp(eng, &req, want, 2, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "result 'grad_w': 5 values asked for, the function gives 3"), "%s", err.msg);
    ck_assert(!want[0].data && !want[1].data);
    req.fn = "decoder_layer";
    ck_assert_int_eq(lc_engine_vjp(eng, &req, want, 2, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "parameter 'layer' is required"), "%s", err.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_ref");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_engine_ref_prefill_spans);
    tcase_add_test(tc, test_engine_ref_prefill_bad_span);
    tcase_add_test(tc, test_engine_ref_snapshot_independent);
    tcase_add_test(tc, test_engine_ref_fault_shallow_snapshot);
    tcase_add_test(tc, test_engine_ref_image_prompt);
    tcase_add_test(tc, test_engine_ref_batch_rows_alone);
    tcase_add_test(tc, test_engine_ref_rope_tap);
    tcase_add_test(tc, test_engine_ref_final_hidden_tap);
    tcase_add_test(tc, test_engine_ref_final_hidden_paths);
    tcase_add_test(tc, test_engine_ref_masked_capability);
    tcase_add_test(tc, test_engine_ref_reset_releases);
    tcase_add_test(tc, test_engine_ref_fault_parse);
    tcase_add_test(tc, test_engine_ref_runner_skips_missing_capability);
    tcase_add_test(tc, test_engine_ref_runner_engine_failure);
    tcase_add_test(tc, test_engine_ref_runner_gradient_damaged);
    tcase_add_test(tc, test_engine_ref_vjp_errors);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
