/* SPDX-License-Identifier: MIT */
/*
 * BF16 weight matrices (reference/matrix.c, qref_model_load_with): the decode product's
 * versions agree bitwise and with a double dot product; a BF16 checkpoint loaded with its text
 * matrices kept in BF16 computes what the same checkpoint converted to qref_real computes:
 * prefill logits bitwise (the same BLAS products on converted blocks), decode logits within the
 * rounding of a float or double dot product, and a decoder layer's gradients bitwise (the
 * gradient code converts the layer's matrices for the call).
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qref_internal.h"
#include "qref_vjp.h"
#include "synth.h"
#include "check_main.h"

#define TMP_ROOT LC_BINARY_DIR "/matrix-tmp"

/* TOL_DOT: one dot product against a double one, relative to the sum of |terms|.
 * TOL_DECODE: decode logits of the two loads, relative to the largest |logit|: 4.6x the worst
 * measured (AMD EPYC, OpenBLAS Zen kernels: f32 2.18e-6 dense / 2.09e-6 MoE, f64 3.6e-15 /
 * 6.5e-15; the test prints it). */
#if defined(QREF_PRECISION_F64)
#define TOL_DOT 1e-13           /* a double dot product of a few hundred terms */
#define TOL_DECODE 3e-14
#else
#define TOL_DOT 2e-6            /* a float one */
#define TOL_DECODE 1e-5
#endif

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static uint16_t bf16_of(double v)
{
    const float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);                 /* truncated: any BF16 pattern will do */
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Every version of the product (the CPU's, the portable one) gives the same bits, and the
 * values of a double dot product of the same numbers; lengths with tails of every size. */
START_TEST(test_matrix_gemv_versions)
{
    const int ins[] = {1, 15, 16, 17, 31, 100, 1031};
    for (size_t ii = 0; ii < sizeof ins / sizeof ins[0]; ii++)
        for (int rows = 1; rows <= 9; rows += 4) {
            const int in = ins[ii];
            uint16_t *w = xcalloc((size_t)rows * in, sizeof *w);
            qref_real *x = xcalloc((size_t)in, sizeof *x), *y = xcalloc((size_t)rows, sizeof *y);
            qref_real *yp = xcalloc((size_t)rows, sizeof *yp), *wr = xcalloc((size_t)rows * in, sizeof *wr);
            for (int i = 0; i < rows * in; i++)
                w[i] = bf16_of(4 * urand() - 2);
            for (int i = 0; i < in; i++)
                x[i] = (qref_real)(2 * urand() - 1);
            qref__bf16_to_real(wr, w, (size_t)rows * in);
            qref__gemv_bf16(y, w, x, rows, in);
            qref__gemv_bf16_portable(yp, w, x, rows, in);
            ck_assert_msg(memcmp(y, yp, (size_t)rows * sizeof *y) == 0, "in %d, rows %d: the versions differ", in,
                          rows);
            for (int r = 0; r < rows; r++) {
                double e = 0, mag = 0;
                for (int k = 0; k < in; k++) {
                    e += (double)wr[(size_t)r * in + k] * x[k];
                    mag += fabs((double)wr[(size_t)r * in + k] * x[k]);
                }
                ck_assert_msg(fabs(y[r] - e) <= TOL_DOT * (mag + 1e-30), "in %d, row %d: %.17g, expected %.17g", in, r,
                              (double)y[r], e);
            }
            free(w), free(x), free(y), free(yp), free(wr);
        }
}
END_TEST

/* A tiny BF16 checkpoint (dense or MoE) written into TMP_ROOT/name. */
static void write_ckpt(char *dir, size_t cap, const char *name, int moe)
{
    ck_assert_msg(mkdir(TMP_ROOT, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", TMP_ROOT, strerror(errno));
    snprintf(dir, cap, "%s/%s", TMP_ROOT, name);
    ck_assert_msg(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    lc_synth_opts o = lc_synth_defaults();
    o.dtype = LC_SYNTH_BF16;
    o.moe = moe;
    o.seed = 7;
    lc_error le = {0};
    ck_assert_msg(lc_synth_write(dir, &o, NULL, &le) == 0, "%s: %s", dir, le.msg);
}

static void load(qref_model *m, const char *dir, int keep)
{
    qref_error qe = {0};
    const qref_load_options o = {.keep_bf16 = keep};
    ck_assert_msg(qref_model_load_with(m, dir, &o, &qe) == QREF_OK, "%s: %s", dir, qe.msg);
}

enum { NP = 21, ND = 3 };

/* Prefill logits of NP tokens, then ND decode steps; logits (NP + ND, V). */
static void run(const qref_model *m, qref_real *logits)
{
    qref_error qe = {0};
    qref_cache c;
    ck_assert(qref_cache_init(&c, m, &qe) == QREF_OK);
    int32_t ids[NP];
    for (int i = 0; i < NP; i++)
        ids[i] = (int32_t)((i * 37 + 5) % m->cfg.vocab_size);
    qref_tokens in = {.ids = ids, .n = NP};
    qref_outputs out = {.logits = logits};
    ck_assert_msg(qref_forward(m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
    for (int s = 0; s < ND; s++) {
        const int32_t id = (int32_t)((s * 11 + 3) % m->cfg.vocab_size);
        qref_tokens d = {.ids = &id, .n = 1};
        qref_outputs od = {.logits = logits + (size_t)(NP + s) * m->cfg.vocab_size};
        ck_assert_msg(qref_forward(m, &c, &d, &od, &qe) == QREF_OK, "%s", qe.msg);
    }
    qref_cache_free(&c);
}

START_TEST(test_matrix_model_bf16_vs_real)
{
    char dir[1024];
    write_ckpt(dir, sizeof dir, _i ? "moe" : "dense", _i);
    qref_model mb, mr;
    load(&mb, dir, 1);
    load(&mr, dir, 0);
    ck_assert_msg(mb.bf16_len > 0 && mb.layers[0].in_proj_qkv.bf16 && !mb.layers[0].in_proj_qkv.real,
                  "the BF16 checkpoint's matrices were not kept in BF16");
    ck_assert(mr.bf16_len == 0 && mr.layers[0].in_proj_qkv.real);
    ck_assert(mb.bf16_len + mb.block_len == mr.block_len);
    const size_t V = (size_t)mb.cfg.vocab_size;
    qref_real *lb = xcalloc((NP + ND) * V, sizeof *lb), *lr = xcalloc((NP + ND) * V, sizeof *lr);
    run(&mb, lb);
    run(&mr, lr);
    /* dense: every product has NP tokens; MoE: an expert that one token chose multiplies one row,
     * which is the one-token product */
    if (!_i)
        ck_assert_msg(memcmp(lb, lr, NP * V * sizeof *lb) == 0, "prefill logits differ between BF16 and converted "
                      "matrices");
    double worst = 0, scale = 0;
    for (size_t i = _i ? 0 : NP * V; i < (NP + ND) * V; i++) {
        ck_assert(isfinite(lb[i]));
        worst = fmax(worst, fabs(lb[i] - lr[i]));
        scale = fmax(scale, fabs(lr[i]));
    }
    printf("%s: decode logits max |BF16 - converted| %.3g, logit scale %.3g (ratio %.3g, bound %.3g)\n",
           _i ? "moe" : "dense", worst, scale, worst / scale, TOL_DECODE);
    ck_assert_msg(worst <= TOL_DECODE * scale, "decode logits: max |BF16 - converted| %.3g (logit scale %.3g)",
                  worst, scale);

    /* the gradients of a decoder layer: the same bits from either model */
    const int H = mb.cfg.hidden_size, n = 5;
    qref_real *x = xcalloc((size_t)n * H, sizeof *x), *d = xcalloc((size_t)n * H, sizeof *d);
    for (int i = 0; i < n * H; i++)
        x[i] = (qref_real)(urand() - 0.5), d[i] = (qref_real)(urand() - 0.5);
    for (int layer = 0; layer < mb.cfg.num_layers; layer++) {
        qref_error qe = {0};
        qref_layer_grads gb, gr;
        ck_assert(qref_layer_grads_init(&gb, &mb, layer, &qe) == QREF_OK);
        ck_assert(qref_layer_grads_init(&gr, &mr, layer, &qe) == QREF_OK);
        qref_real *dxb = xcalloc((size_t)n * H, sizeof *dxb), *dxr = xcalloc((size_t)n * H, sizeof *dxr);
        const qref_layer_input in = {.x = x, .n = n, .gdn_mode = QREF_GDN_CHUNKED};
        ck_assert_msg(qref_vjp_decoder_layer(&mb, layer, &in, d, NULL, dxb, &gb, &qe) == QREF_OK, "%s", qe.msg);
        ck_assert_msg(qref_vjp_decoder_layer(&mr, layer, &in, d, NULL, dxr, &gr, &qe) == QREF_OK, "%s", qe.msg);
        ck_assert_msg(memcmp(dxb, dxr, (size_t)n * H * sizeof *dxb) == 0, "layer %d: dx differs", layer);
        ck_assert_msg(gb.block_len == gr.block_len &&
                          memcmp(gb.block, gr.block, gb.block_len * sizeof *gb.block) == 0,
                      "layer %d: the weight gradients differ", layer);
        qref_layer_grads_free(&gb);
        qref_layer_grads_free(&gr);
        free(dxb), free(dxr);
    }
    free(x), free(d), free(lb), free(lr);
    qref_model_free(&mb);
    qref_model_free(&mr);
}
END_TEST

/* QREF_BF16_WEIGHTS=0 turns the default off; an F32 checkpoint never keeps BF16. */
START_TEST(test_matrix_load_switches)
{
    char dir[1024];
    write_ckpt(dir, sizeof dir, "switch", 0);
    qref_model m;
    qref_error qe = {0};
    ck_assert_int_eq(setenv("QREF_BF16_WEIGHTS", "0", 1), 0);
    ck_assert(qref_model_load(&m, dir, &qe) == QREF_OK);
    ck_assert(m.bf16_len == 0 && !m.bf16_block && m.lm_head.real);
    qref_model_free(&m);
    unsetenv("QREF_BF16_WEIGHTS");
    ck_assert(qref_model_load(&m, dir, &qe) == QREF_OK);
    ck_assert(m.bf16_len > 0 && m.lm_head.bf16 && m.embed.bf16);
    qref_model_free(&m);
    ck_assert_msg(qref_model_load(&m, LC_SOURCE_DIR "/golden/tiny-dense", &qe) == QREF_OK, "%s", qe.msg);
    ck_assert(m.bf16_len == 0 && m.lm_head.real);      /* an F32 checkpoint */
    qref_model_free(&m);
}
END_TEST

static Suite *matrix_suite(void)
{
    Suite *s = suite_create("matrix");
    TCase *tc = tcase_create("matrix");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_matrix_gemv_versions);
    tcase_add_loop_test(tc, test_matrix_model_bf16_vs_real, 0, 2);
    tcase_add_test(tc, test_matrix_load_switches);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(matrix_suite());
}
