/* SPDX-License-Identifier: MIT */
/*
 * The vision tower: merge-block order, position-table resampling, 2-D rotary tables, and the
 * whole forward pass against a naive double-precision implementation written from the model's
 * definition (per-frame full attention, LayerNorm eps 1e-6, tanh GELU in the blocks, erf GELU
 * in the merger, M x M blocks of consecutive rows concatenated). Runs on a small synthetic tower
 * with random weights, and on the tiny checkpoint's real weights when it loads.
 * Invariant: an image's embeddings are bitwise the same whether it runs alone or with others.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qref.h"
#include "qref_internal.h"
#include "check_main.h"

#if defined(QREF_PRECISION_F64)
#define TABLE_TOL 1e-13
#define FWD_TOL 1e-10
#else
#define TABLE_TOL 2e-6
#define FWD_TOL 2e-4
#endif

/* ---------------------------------------------------------------- naive helpers */

/* (row, col) of the k-th patch, written as the processor's axis permutation of an (h, w) grid
 * reshaped to (h/M, M, w/M, M) and transposed to (h/M, w/M, M, M). */
static void naive_order(int *rows, int *cols, int h, int w, int M)
{
    int k = 0;
    for (int bh = 0; bh < h / M; bh++)
        for (int bw = 0; bw < w / M; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++, k++) {
                    rows[k] = bh * M + mh;
                    cols[k] = bw * M + mw;
                }
}

START_TEST(test_vision_merge_block_order)
{
    static const int shapes[][3] = {{4, 6, 2}, {6, 2, 2}, {2, 2, 2}, {6, 9, 3}, {3, 5, 1}};
    /* hand-written: w = 6, M = 2 starts (0,0) (0,1) (1,0) (1,1) (0,2) (0,3) (1,2) (1,3) (0,4) */
    static const int hand[9][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {0, 4}};
    for (int k = 0; k < 9; k++) {
        int r, c;
        qref__merge_block_rc(k, 6, 2, &r, &c);
        ck_assert_msg(r == hand[k][0] && c == hand[k][1], "k %d: (%d, %d), want (%d, %d)", k, r, c, hand[k][0],
                      hand[k][1]);
    }
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int h = shapes[s][0], w = shapes[s][1], M = shapes[s][2];
        int rows[64], cols[64];
        naive_order(rows, cols, h, w, M);
        for (int k = 0; k < h * w; k++) {
            int r, c;
            qref__merge_block_rc(k, w, M, &r, &c);
            ck_assert_msg(r == rows[k] && c == cols[k], "h %d w %d M %d k %d: (%d, %d), want (%d, %d)", h, w, M, k, r, c,
                          rows[k], cols[k]);
        }
    }
}
END_TEST

/* Bilinear interpolation reproduces a bilinear function exactly: with table entries
 * (10 r + c, r * c) at integer (r, c), the value at fractional (y, x) is (10 y + x, y * x),
 * where align_corners puts y = row * (side - 1) / (h - 1). */
START_TEST(test_vision_pos_embed_bilinear)
{
    static const int shapes[][4] = {{3, 4, 6, 2}, {3, 8, 2, 2}, {3, 2, 2, 2}, {3, 1, 1, 1}, {6, 6, 6, 2},
                                    {4, 10, 4, 2}, {1, 2, 4, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int side = shapes[s][0], h = shapes[s][1], w = shapes[s][2], M = shapes[s][3];
        qref_real table[36 * 2], out[80 * 2];
        for (int r = 0; r < side; r++)
            for (int c = 0; c < side; c++) {
                table[(r * side + c) * 2] = (qref_real)(10 * r + c);
                table[(r * side + c) * 2 + 1] = (qref_real)(r * c);
            }
        qref__vision_pos_embed(out, table, side, 2, h, w, M);
        int rows[80], cols[80];
        naive_order(rows, cols, h, w, M);
        for (int k = 0; k < h * w; k++) {
            const double y = h > 1 ? rows[k] * (side - 1.0) / (h - 1.0) : 0;
            const double x = w > 1 ? cols[k] * (side - 1.0) / (w - 1.0) : 0;
            const double want[2] = {10 * y + x, y * x};
            for (int d = 0; d < 2; d++)
                ck_assert_msg(fabs((double)out[k * 2 + d] - want[d]) <= TABLE_TOL * (1 + fabs(want[d])),
                              "side %d grid %dx%d M %d patch %d (row %d col %d) dim %d: got %.17g, want %.17g", side, h, w,
                              M, k, rows[k], cols[k], d, (double)out[k * 2 + d], want[d]);
        }
    }
}
END_TEST

START_TEST(test_vision_rope_angles)
{
    const int h = 4, w = 6, M = 2, D = 16;
    const double theta = 10000.0;
    qref_real cs[24 * 8], sn[24 * 8];
    qref__vision_rope_angles(cs, sn, h, w, M, D, theta);
    int rows[24], cols[24];
    naive_order(rows, cols, h, w, M);
    for (int k = 0; k < h * w; k++)
        for (int i = 0; i < D / 2; i++) {
            const int j = i % (D / 4);
            const double p = i < D / 4 ? rows[k] : cols[k];
            const double angle = p * pow(theta, -4.0 * j / D);
            ck_assert_msg(fabs((double)cs[k * 8 + i] - cos(angle)) <= TABLE_TOL &&
                              fabs((double)sn[k * 8 + i] - sin(angle)) <= TABLE_TOL,
                          "patch %d (row %d col %d) dim %d: cos %.17g sin %.17g, want %.17g %.17g", k, rows[k], cols[k],
                          i, (double)cs[k * 8 + i], (double)sn[k * 8 + i], cos(angle), sin(angle));
        }
}
END_TEST

/* ---------------------------------------------------------------- naive tower */

static void naive_linear(double *y, const double *x, const qref_real *w, const qref_real *b, int n, int in, int out)
{
    for (int t = 0; t < n; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? (double)b[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += (double)w[(size_t)o * in + i] * x[(size_t)t * in + i];
            y[(size_t)t * out + o] = s;
        }
}

static void naive_layernorm(double *y, const double *x, const qref_real *g, const qref_real *b, int n, int dim)
{
    for (int t = 0; t < n; t++) {
        const double *r = x + (size_t)t * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++)
            mean += r[i] / dim;
        for (int i = 0; i < dim; i++)
            var += (r[i] - mean) * (r[i] - mean) / dim;
        for (int i = 0; i < dim; i++)
            y[(size_t)t * dim + i] = (r[i] - mean) / sqrt(var + 1e-6) * g[i] + b[i];
    }
}

/* out (N/M^2, Ho) of one image; pixels (N, Pd). */
static void naive_image(const qref_model *m, const qref_real *pixels, const int g[3], double *out)
{
    const qref_vision_config *v = &m->cfg.vision;
    const qref_vision_weights *vw = &m->vision;
    const int Vh = v->hidden_size, Vi = v->intermediate_size, heads = v->num_heads, D = Vh / heads;
    const int M = v->spatial_merge_size;
    const int Pd = v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const int side = (int)lround(sqrt(v->num_position_embeddings));
    const int T = g[0], h = g[1], w = g[2], F = h * w, N = T * F;
    double *px = malloc((size_t)N * Pd * sizeof *px), *x = malloc((size_t)N * Vh * sizeof *x);
    double *xn = malloc((size_t)N * Vh * sizeof *xn), *qkv = malloc((size_t)N * 3 * Vh * sizeof *qkv);
    double *att = malloc((size_t)N * Vh * sizeof *att), *tmp = malloc((size_t)N * Vh * sizeof *tmp);
    double *mlp = malloc((size_t)N * Vi * sizeof *mlp), *sc = malloc((size_t)F * sizeof *sc);
    int *rows = malloc((size_t)F * sizeof *rows), *cols = malloc((size_t)F * sizeof *cols);
    naive_order(rows, cols, h, w, M);
    for (size_t i = 0; i < (size_t)N * Pd; i++)
        px[i] = pixels[i];
    naive_linear(x, px, vw->patch_w, vw->patch_b, N, Pd, Vh);
    for (int n = 0; n < N; n++) {                   /* + bilinear (align_corners) position table */
        const int k = n % F;
        const double y = h > 1 ? rows[k] * (side - 1.0) / (h - 1.0) : 0;
        const double xx = w > 1 ? cols[k] * (side - 1.0) / (w - 1.0) : 0;
        const int y0 = (int)y, x0 = (int)xx;
        const int y1 = y0 + 1 < side ? y0 + 1 : side - 1, x1 = x0 + 1 < side ? x0 + 1 : side - 1;
        const double fy = y - y0, fx = xx - x0;
        for (int d = 0; d < Vh; d++) {
#define TAB(r, c) ((double)vw->pos_embed[((size_t)(r) * side + (c)) * Vh + d])
            x[(size_t)n * Vh + d] += (1 - fy) * ((1 - fx) * TAB(y0, x0) + fx * TAB(y0, x1)) +
                                     fy * ((1 - fx) * TAB(y1, x0) + fx * TAB(y1, x1));
#undef TAB
        }
    }
    for (int b = 0; b < v->depth; b++) {
        const qref_vision_block_weights *bw = &vw->blocks[b];
        naive_layernorm(xn, x, bw->norm1_w, bw->norm1_b, N, Vh);
        naive_linear(qkv, xn, bw->qkv_w, bw->qkv_b, N, Vh, 3 * Vh);
        for (int n = 0; n < N; n++)                 /* rotate q (part 0) and k (part 1) */
            for (int part = 0; part < 2; part++)
                for (int hd = 0; hd < heads; hd++) {
                    double *z = qkv + (size_t)n * 3 * Vh + (size_t)part * Vh + (size_t)hd * D;
                    for (int i = 0; i < D / 2; i++) {
                        const double p = i < D / 4 ? rows[n % F] : cols[n % F];
                        const double a = p * pow(v->rope_theta, -4.0 * (i % (D / 4)) / D);
                        const double z1 = z[i], z2 = z[i + D / 2];
                        z[i] = z1 * cos(a) - z2 * sin(a);
                        z[i + D / 2] = z2 * cos(a) + z1 * sin(a);
                    }
                }
        for (int n = 0; n < N; n++)                 /* full attention within the frame */
            for (int hd = 0; hd < heads; hd++) {
                const int f0 = n / F * F;
                const double *q = qkv + (size_t)n * 3 * Vh + (size_t)hd * D;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < F; j++) {
                    const double *k = qkv + (size_t)(f0 + j) * 3 * Vh + Vh + (size_t)hd * D;
                    double s = 0;
                    for (int d = 0; d < D; d++)
                        s += q[d] * k[d];
                    sc[j] = s / sqrt((double)D);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < F; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int j = 0; j < F; j++)
                        o += sc[j] / sum * qkv[(size_t)(f0 + j) * 3 * Vh + 2 * Vh + (size_t)hd * D + d];
                    att[(size_t)n * Vh + (size_t)hd * D + d] = o;
                }
            }
        naive_linear(tmp, att, bw->proj_w, bw->proj_b, N, Vh, Vh);
        for (size_t i = 0; i < (size_t)N * Vh; i++)
            x[i] += tmp[i];
        naive_layernorm(xn, x, bw->norm2_w, bw->norm2_b, N, Vh);
        naive_linear(mlp, xn, bw->fc1_w, bw->fc1_b, N, Vh, Vi);
        for (size_t i = 0; i < (size_t)N * Vi; i++) {
            const double u = mlp[i];
            mlp[i] = 0.5 * u * (1 + tanh(sqrt(2 / acos(-1.0)) * (u + 0.044715 * u * u * u)));
        }
        naive_linear(tmp, mlp, bw->fc2_w, bw->fc2_b, N, Vi, Vh);
        for (size_t i = 0; i < (size_t)N * Vh; i++)
            x[i] += tmp[i];
    }
    const int Nm = N / (M * M), Hm = M * M * Vh;
    naive_layernorm(xn, x, vw->merger_norm_w, vw->merger_norm_b, N, Vh);  /* rows of M*M patches = (Nm, Hm) */
    double *g1 = malloc((size_t)Nm * Hm * sizeof *g1);
    naive_linear(g1, xn, vw->merger_fc1_w, vw->merger_fc1_b, Nm, Hm, Hm);
    for (size_t i = 0; i < (size_t)Nm * Hm; i++)
        g1[i] = 0.5 * g1[i] * (1 + erf(g1[i] / sqrt(2.0)));
    naive_linear(out, g1, vw->merger_fc2_w, vw->merger_fc2_b, Nm, Hm, v->out_hidden_size);
    free(g1);
    free(px); free(x); free(xn); free(qkv); free(att); free(tmp); free(mlp); free(sc); free(rows); free(cols);
}

/* ---------------------------------------------------------------- synthetic tower */

typedef struct {
    qref_model m;
    qref_real *data;
    qref_vision_block_weights blocks[2];
} synth;

static uint64_t rng_state;
static double rnd(void)    /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / (double)(1ULL << 52) - 1.0;
}

static const qref_real *take(synth *s, size_t *off, size_t n, double scale, double centre)
{
    qref_real *p = s->data + *off;
    for (size_t i = 0; i < n; i++)
        p[i] = (qref_real)(centre + scale * rnd());
    *off += n;
    return p;
}

static void synth_init(synth *s)
{
    memset(s, 0, sizeof *s);
    rng_state = 42;
    qref_vision_config *v = &s->m.cfg.vision;
    s->m.cfg.has_vision = 1;
    snprintf(s->m.dir, sizeof s->m.dir, "synthetic");
    v->depth = 2;
    v->hidden_size = 16;
    v->intermediate_size = 24;
    v->num_heads = 2;
    v->patch_size = 2;
    v->temporal_patch_size = 2;
    v->spatial_merge_size = 2;
    v->in_channels = 3;
    v->out_hidden_size = 10;
    v->num_position_embeddings = 9;
    v->rope_theta = 10000.0;
    const size_t Vh = 16, Vi = 24, Pd = 24, M2 = 4, Ho = 10;
    s->data = malloc(200000 * sizeof *s->data);
    size_t off = 0;
    qref_vision_weights *w = &s->m.vision;
    w->patch_w = take(s, &off, Vh * Pd, 0.3, 0);
    w->patch_b = take(s, &off, Vh, 0.1, 0);
    w->pos_embed = take(s, &off, 9 * Vh, 0.5, 0);
    for (int b = 0; b < 2; b++) {
        qref_vision_block_weights *bw = &s->blocks[b];
        bw->norm1_w = take(s, &off, Vh, 0.2, 1);
        bw->norm1_b = take(s, &off, Vh, 0.1, 0);
        bw->qkv_w = take(s, &off, 3 * Vh * Vh, 0.4, 0);
        bw->qkv_b = take(s, &off, 3 * Vh, 0.1, 0);
        bw->proj_w = take(s, &off, Vh * Vh, 0.3, 0);
        bw->proj_b = take(s, &off, Vh, 0.1, 0);
        bw->norm2_w = take(s, &off, Vh, 0.2, 1);
        bw->norm2_b = take(s, &off, Vh, 0.1, 0);
        bw->fc1_w = take(s, &off, Vi * Vh, 0.4, 0);
        bw->fc1_b = take(s, &off, Vi, 0.1, 0);
        bw->fc2_w = take(s, &off, Vh * Vi, 0.3, 0);
        bw->fc2_b = take(s, &off, Vh, 0.1, 0);
    }
    w->blocks = s->blocks;
    w->merger_norm_w = take(s, &off, Vh, 0.2, 1);
    w->merger_norm_b = take(s, &off, Vh, 0.1, 0);
    w->merger_fc1_w = take(s, &off, M2 * Vh * M2 * Vh, 0.2, 0);
    w->merger_fc1_b = take(s, &off, M2 * Vh, 0.1, 0);
    w->merger_fc2_w = take(s, &off, Ho * M2 * Vh, 0.2, 0);
    w->merger_fc2_b = take(s, &off, Ho, 0.1, 0);
    ck_assert(off <= 200000);
}

static const int grids[][3] = {{1, 4, 6}, {1, 2, 2}, {2, 4, 4}, {1, 6, 2}};
#define N_GRIDS 4

static size_t patches(const int g[3]) { return (size_t)g[0] * g[1] * g[2]; }

/* Compares engine rows (n, Ho) with naive rows; returns the max abs error. */
static double compare(const qref_real *got, const double *want, size_t n, int Ho, const char *what)
{
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < n * (size_t)Ho; i++) {
        max_err = fmax(max_err, fabs((double)got[i] - want[i]));
        max_ref = fmax(max_ref, fabs(want[i]));
    }
    printf("vision %s (" QREF_PRECISION_NAME "): max abs error %.3g (max |value| %.3g)\n", what, max_err, max_ref);
    for (size_t i = 0; i < n * (size_t)Ho; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= FWD_TOL * (1 + fabs(want[i])),
                      "%s: row %zu dim %zu: got %.17g, naive %.17g", what, i / Ho, i % Ho, (double)got[i], want[i]);
    return max_err;
}

START_TEST(test_vision_forward_matches_naive)
{
    synth s;
    synth_init(&s);
    const int Pd = 24, Ho = 10;
    size_t total = 0, total_out = 0;
    for (int i = 0; i < N_GRIDS; i++) {
        total += patches(grids[i]);
        total_out += patches(grids[i]) / 4;
    }
    qref_real *px = malloc(total * Pd * sizeof *px), *out = malloc(total_out * Ho * sizeof *out);
    for (size_t i = 0; i < total * Pd; i++)
        px[i] = (qref_real)rnd();
    qref_error err = {0};
    ck_assert_msg(qref_vision_forward(&s.m, px, grids, N_GRIDS, out, &err) == QREF_OK, "%s", err.msg);
    size_t po = 0, oo = 0;
    for (int i = 0; i < N_GRIDS; i++) {
        const size_t n = patches(grids[i]);
        double *want = malloc(n / 4 * Ho * sizeof *want);
        naive_image(&s.m, px + po * Pd, grids[i], want);
        char what[64];
        snprintf(what, sizeof what, "synthetic image %d (%d x %d x %d)", i, grids[i][0], grids[i][1], grids[i][2]);
        compare(out + oo * Ho, want, n / 4, Ho, what);
        free(want);
        po += n;
        oo += n / 4;
    }
    free(px);
    free(out);
    free(s.data);
}
END_TEST

START_TEST(test_vision_images_independent_bitwise)
{
    synth s;
    synth_init(&s);
    const int Pd = 24, Ho = 10;
    size_t total = 0, total_out = 0;
    for (int i = 0; i < N_GRIDS; i++) {
        total += patches(grids[i]);
        total_out += patches(grids[i]) / 4;
    }
    qref_real *px = malloc(total * Pd * sizeof *px), *all = malloc(total_out * Ho * sizeof *all);
    qref_real *one = malloc(total_out * Ho * sizeof *one);
    for (size_t i = 0; i < total * Pd; i++)
        px[i] = (qref_real)rnd();
    qref_error err = {0};
    ck_assert_int_eq(qref_vision_forward(&s.m, px, grids, N_GRIDS, all, &err), QREF_OK);
    /* each image alone, in reverse order so no buffer state could carry over in call order */
    size_t po[N_GRIDS], oo[N_GRIDS], p = 0, o = 0;
    for (int i = 0; i < N_GRIDS; i++) {
        po[i] = p;
        oo[i] = o;
        p += patches(grids[i]);
        o += patches(grids[i]) / 4;
    }
    for (int i = N_GRIDS - 1; i >= 0; i--)
        ck_assert_int_eq(qref_vision_forward(&s.m, px + po[i] * Pd, &grids[i], 1, one + oo[i] * Ho, &err), QREF_OK);
    for (size_t i = 0; i < total_out * Ho; i++)
        ck_assert_msg(memcmp(&all[i], &one[i], sizeof all[i]) == 0, "row %zu dim %zu: together %.17g, alone %.17g",
                      i / Ho, i % Ho, (double)all[i], (double)one[i]);
    free(px);
    free(all);
    free(one);
    free(s.data);
}
END_TEST

START_TEST(test_vision_errors)
{
    synth s;
    synth_init(&s);
    qref_real px[64 * 24] = {0}, out[64 * 10];
    qref_error err = {0};
    const int bad_grid[1][3] = {{1, 3, 4}};
    ck_assert_int_eq(qref_vision_forward(&s.m, px, bad_grid, 1, out, &err), QREF_EINVAL);
    ck_assert_msg(strstr(err.msg, "(1, 3, 4)") && strstr(err.msg, "merge size 2"), "%s", err.msg);
    const int zero_t[1][3] = {{0, 2, 2}};
    ck_assert_int_eq(qref_vision_forward(&s.m, px, zero_t, 1, out, &err), QREF_EINVAL);
    s.m.cfg.vision.num_position_embeddings = 10;
    ck_assert_int_eq(qref_vision_forward(&s.m, px, grids, 1, out, &err), QREF_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "not a square") != NULL, "%s", err.msg);
    s.m.cfg.has_vision = 0;
    ck_assert_int_eq(qref_vision_forward(&s.m, px, grids, 1, out, &err), QREF_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "synthetic") != NULL, "%s", err.msg);
    free(s.data);
}
END_TEST

/* ---------------------------------------------------------------- the tiny checkpoint */

START_TEST(test_vision_tiny_checkpoint_matches_naive)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/golden/tiny-dense", LC_SOURCE_DIR);
    qref_model m;
    memset(&m, 0, sizeof m);
    qref_error err = {0};
    ck_assert_msg(qref_model_load(&m, dir, &err) == QREF_OK, "%s", err.msg);
    const qref_vision_config *v = &m.cfg.vision;
    const int Pd = v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size, Ho = v->out_hidden_size;
    const int g[1][3] = {{1, 4, 6}};
    const size_t n = patches(g[0]);
    qref_real *px = malloc(n * Pd * sizeof *px), *out = malloc(n / 4 * Ho * sizeof *out);
    double *want = malloc(n / 4 * Ho * sizeof *want);
    rng_state = 7;
    for (size_t i = 0; i < n * Pd; i++)
        px[i] = (qref_real)rnd();
    ck_assert_msg(qref_vision_forward(&m, px, g, 1, out, &err) == QREF_OK, "%s", err.msg);
    naive_image(&m, px, g[0], want);
    compare(out, want, n / 4, Ho, "tiny-dense 1 x 4 x 6");
    free(px);
    free(out);
    free(want);
    qref_model_free(&m);
}
END_TEST

static Suite *vision_suite(void)
{
    Suite *s = suite_create("vision");
    TCase *pieces = tcase_create("pieces");
    tcase_add_test(pieces, test_vision_merge_block_order);
    tcase_add_test(pieces, test_vision_pos_embed_bilinear);
    tcase_add_test(pieces, test_vision_rope_angles);
    suite_add_tcase(s, pieces);
    TCase *fwd = tcase_create("forward");
    tcase_add_test(fwd, test_vision_forward_matches_naive);
    tcase_add_test(fwd, test_vision_images_independent_bitwise);
    tcase_add_test(fwd, test_vision_errors);
    tcase_add_test(fwd, test_vision_tiny_checkpoint_matches_naive);
    suite_add_tcase(s, fwd);
    return s;
}

int main(void)
{
    return lc_check_run(vision_suite());
}
