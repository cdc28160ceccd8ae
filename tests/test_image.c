/* SPDX-License-Identifier: MIT */
/*
 * Image preprocessing: qref_image_preprocess, qref__smart_resize, qref__resize_bicubic_u8.
 *
 * Expected values: transformers' pixel_values for img_a.png (golden file), a naive patch
 * flattening written as the processor's 8-axis permutation, smart_resize results derived by
 * hand (comments show the arithmetic), and a naive double-precision antialiased bicubic resize
 * (PIL's definition: support 2 * max(scale, 1), centre (i + 0.5) * scale, Keys a = -0.5,
 * normalised weights, width pass then height pass, each rounded to bytes).
 */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_png.h"
#include "qref.h"
#include "qref_internal.h"
#include "check_main.h"

#if defined(QREF_PRECISION_F64)
#define PIX_TOL 1e-12
#else
#define PIX_TOL 1e-6
#endif

static qref_config test_config(void)
{
    qref_config c;
    memset(&c, 0, sizeof c);
    c.has_vision = 1;
    c.vision.patch_size = 16;
    c.vision.temporal_patch_size = 2;
    c.vision.spatial_merge_size = 2;
    c.vision.in_channels = 3;
    for (int i = 0; i < 3; i++) {
        c.preproc.image_mean[i] = 0.5;
        c.preproc.image_std[i] = 0.5;
    }
    c.preproc.min_pixels = 32 * 32;     /* the fixture images are used at their own size */
    c.preproc.max_pixels = 16777216;
    c.preproc.patch_size = 16;
    c.preproc.temporal_patch_size = 2;
    c.preproc.merge_size = 2;
    return c;
}

static void fixture_path(char *buf, size_t len, const char *file)
{
    snprintf(buf, len, "%s/golden/tiny-dense/%s", LC_SOURCE_DIR, file);
}

/* Reads a float dataset of the golden file as double; *n elements; caller frees. */
static double *read_golden(const char *dataset, size_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/hf-tiny-reference.h5", LC_SOURCE_DIR);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "%s: no dataset %s", path, dataset);
    hid_t sp = H5Dget_space(d);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    double *buf = malloc((size_t)count * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    ck_assert(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    *n = (size_t)count;
    return buf;
}

/* The processor's flattening, written as its permutation: (C, gh/M, M, P, gw/M, M, P) ->
 * (gh/M, gw/M, M, M, C, Tp, P, P), values (x / 255 - mean) / std. out (gh*gw, 3*Tp*P*P). */
static void naive_patches(double *out, const uint8_t *rgb, int h, int w, int P, int Tp, int M, const double mean[3],
                          const double std[3])
{
    const int gh = h / P, gw = w / P;
    size_t o = 0;
    for (int bh = 0; bh < gh / M; bh++)
        for (int bw = 0; bw < gw / M; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++)
                    for (int c = 0; c < 3; c++)
                        for (int t = 0; t < Tp; t++)
                            for (int py = 0; py < P; py++)
                                for (int px = 0; px < P; px++) {
                                    const int y = (bh * M + mh) * P + py, x = (bw * M + mw) * P + px;
                                    out[o++] = ((double)rgb[((size_t)y * w + x) * 3 + c] / 255.0 - mean[c]) / std[c];
                                }
}

/* ---------------------------------------------------------------- golden and naive patches */

START_TEST(test_image_golden_pixel_values)
{
    char path[4096];
    fixture_path(path, sizeof path, "img_a.png");
    lc_image png = {0};
    lc_error lerr = {0};
    ck_assert_msg(lc_png_read(path, &png, &lerr) == LC_OK, "%s", lerr.msg);
    qref_config cfg = test_config();
    qref_image img = {png.rgb, png.width, png.height};
    qref_real *pix = NULL;
    int grid[3];
    qref_error err = {0};
    ck_assert_msg(qref_image_preprocess(&cfg, &img, &pix, grid, &err) == QREF_OK, "%s", err.msg);
    ck_assert_msg(grid[0] == 1 && grid[1] == 4 && grid[2] == 6, "grid %d x %d x %d, want 1 x 4 x 6", grid[0], grid[1],
                  grid[2]);
    size_t n;
    double *want = read_golden("dense/image_decode/pixel_values", &n);
    ck_assert_uint_eq(n, 24 * 1536);
    double max_err = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)pix[i] - want[i]);
        if (e > max_err) {
            max_err = e;
            at = i;
        }
    }
    printf("pixel_values img_a (" QREF_PRECISION_NAME "): max abs error %.3g at patch %zu col %zu\n", max_err,
           at / 1536, at % 1536);
    ck_assert_msg(max_err <= PIX_TOL, "max abs error %.3g at patch %zu col %zu (got %.17g, want %.17g), bound %g",
                  max_err, at / 1536, at % 1536, (double)pix[at], want[at], PIX_TOL);
    free(want);
    free(pix);
    lc_image_free(&png);
}
END_TEST

START_TEST(test_image_fixtures_match_naive_flattening)
{
    static const char *files[] = {"img_a.png", "img_m0.png", "img_m1.png", "img_m2.png"};
    qref_config cfg = test_config();
    cfg.preproc.image_mean[1] = 0.25;   /* distinct per-channel constants catch a channel mix-up */
    cfg.preproc.image_std[2] = 0.125;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[4096];
        fixture_path(path, sizeof path, files[f]);
        lc_image png = {0};
        lc_error lerr = {0};
        ck_assert_msg(lc_png_read(path, &png, &lerr) == LC_OK, "%s", lerr.msg);
        qref_image img = {png.rgb, png.width, png.height};
        qref_real *pix = NULL;
        int grid[3];
        qref_error err = {0};
        ck_assert_msg(qref_image_preprocess(&cfg, &img, &pix, grid, &err) == QREF_OK, "%s: %s", files[f], err.msg);
        ck_assert_msg(grid[0] == 1 && grid[1] == png.height / 16 && grid[2] == png.width / 16, "%s: grid %d x %d x %d",
                      files[f], grid[0], grid[1], grid[2]);
        const size_t n = (size_t)grid[1] * grid[2] * 1536;
        double *want = malloc(n * sizeof *want);
        naive_patches(want, png.rgb, png.height, png.width, 16, 2, 2, cfg.preproc.image_mean, cfg.preproc.image_std);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(fabs((double)pix[i] - want[i]) <= PIX_TOL, "%s: patch %zu col %zu: got %.17g, want %.17g",
                          files[f], i / 1536, i % 1536, (double)pix[i], want[i]);
        free(want);
        free(pix);
        lc_image_free(&png);
    }
}
END_TEST

/* ---------------------------------------------------------------- smart_resize */

typedef struct {
    int h, w, factor;
    long min_pixels, max_pixels;
    int want_h, want_w;
    const char *why;
} resize_case;

static const resize_case resize_cases[] = {
    {64, 96, 32, 1024, 16777216, 64, 96, "already multiples: unchanged"},
    {100, 70, 32, 1024, 16777216, 96, 64, "round(3.125) = 3, round(2.1875) = 2"},
    {100, 70, 28, 3136, 1003520, 112, 56, "round(3.57) = 4; round(2.5) = 2 (half to even)"},
    {48, 80, 32, 1024, 16777216, 64, 64, "round(1.5) = 2 and round(2.5) = 2 (half to even)"},
    {80, 48, 32, 1024, 16777216, 64, 64, "round(2.5) = 2 and round(1.5) = 2 (half to even)"},
    {16, 16, 32, 4096, 16777216, 64, 64, "round(0.5) = 0 -> below min: beta = sqrt(4096/256) = 4, ceil(16*4/32) = 2"},
    {24, 8, 32, 3072, 16777216, 96, 32, "below min: beta = sqrt(3072/192) = 4, ceil(3) = 3, ceil(1) = 1"},
    {1000, 1000, 32, 1024, 262144, 512, 512, "992^2 above max: beta = sqrt(1e6/262144) = 1.953125, 1000/beta/32 = 16"},
    {2000, 1000, 32, 1024, 125000, 480, 224, "above max: beta = 4, floor(15.625) = 15, floor(7.8125) = 7"},
    {6400, 40, 32, 1024, 64000, 3200, 32, "above max: beta = 2, floor(100) = 100, floor(0.625) = 0 -> factor"},
};

START_TEST(test_image_smart_resize_table)
{
    const resize_case *rc = &resize_cases[_i];
    int h = -1, w = -1;
    qref_error err = {0};
    qref_status st = qref__smart_resize(rc->h, rc->w, rc->factor, rc->min_pixels, rc->max_pixels, &h, &w, &err);
    ck_assert_msg(st == QREF_OK, "%dx%d: %s", rc->h, rc->w, err.msg);
    ck_assert_msg(h == rc->want_h && w == rc->want_w, "%dx%d factor %d [%ld, %ld]: got %dx%d, want %dx%d (%s)", rc->h,
                  rc->w, rc->factor, rc->min_pixels, rc->max_pixels, h, w, rc->want_h, rc->want_w, rc->why);
}
END_TEST

START_TEST(test_image_smart_resize_errors)
{
    int h, w;
    qref_error err = {0};
    ck_assert_int_eq(qref__smart_resize(201, 1, 32, 0, 1 << 20, &h, &w, &err), QREF_EINVAL);
    ck_assert_msg(strstr(err.msg, "aspect ratio") != NULL, "%s", err.msg);
    ck_assert_int_eq(qref__smart_resize(1, 201, 32, 0, 1 << 20, &h, &w, &err), QREF_EINVAL);
    ck_assert_int_eq(qref__smart_resize(0, 10, 32, 0, 1 << 20, &h, &w, &err), QREF_EINVAL);
    ck_assert_int_eq(qref__smart_resize(10, 10, 32, 100, 50, &h, &w, &err), QREF_EINVAL);
    /* 10x10 with no lower bound rounds to 0 x 0: rejected rather than resized to nothing */
    ck_assert_int_eq(qref__smart_resize(10, 10, 32, 0, 1 << 20, &h, &w, &err), QREF_EINVAL);
    ck_assert_msg(strstr(err.msg, "0x0") != NULL, "%s", err.msg);
}
END_TEST

/* ---------------------------------------------------------------- bicubic resize */

static double naive_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1)
        return (a + 2) * x * x * x - (a + 3) * x * x + 1;
    if (x < 2)
        return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
    return 0;
}

/* One axis: out[i] = round(sum_j in[j] * k((j + 0.5 - centre) / s) / total), s = max(scale, 1). */
static void naive_resample_1d(uint8_t *out, size_t ostride, const uint8_t *in, size_t istride, int n_in, int n_out)
{
    const double scale = (double)n_in / n_out, s = scale > 1 ? scale : 1, support = 2 * s;
    for (int i = 0; i < n_out; i++) {
        const double centre = (i + 0.5) * scale;
        int lo = (int)(centre - support + 0.5), hi = (int)(centre + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > n_in)
            hi = n_in;
        double acc = 0, total = 0;
        for (int j = lo; j < hi; j++) {
            const double k = naive_cubic((j + 0.5 - centre) / s);
            acc += k * in[(size_t)j * istride];
            total += k;
        }
        const double v = floor(acc / total + 0.5);
        out[(size_t)i * ostride] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

static void naive_resize(uint8_t *dst, int oh, int ow, const uint8_t *src, int h, int w)
{
    uint8_t *mid = malloc((size_t)h * ow * 3);
    for (int y = 0; y < h; y++)
        for (int c = 0; c < 3; c++) {
            if (ow == w)
                for (int x = 0; x < w; x++)
                    mid[((size_t)y * ow + x) * 3 + c] = src[((size_t)y * w + x) * 3 + c];
            else
                naive_resample_1d(mid + (size_t)y * ow * 3 + c, 3, src + (size_t)y * w * 3 + c, 3, w, ow);
        }
    for (int x = 0; x < ow; x++)
        for (int c = 0; c < 3; c++) {
            if (oh == h)
                for (int y = 0; y < h; y++)
                    dst[((size_t)y * ow + x) * 3 + c] = mid[((size_t)y * ow + x) * 3 + c];
            else
                naive_resample_1d(dst + (size_t)x * 3 + c, (size_t)ow * 3, mid + (size_t)x * 3 + c,
                                  (size_t)ow * 3, h, oh);
        }
    free(mid);
}

typedef struct { int h, w, oh, ow; } size_case;

static const size_case sizes[] = {
    {37, 23, 64, 32},   /* up both */
    {100, 70, 96, 64},  /* down both, slightly */
    {9, 50, 32, 32},    /* up one, down the other */
    {64, 75, 64, 32},   /* width only */
    {75, 64, 32, 64},   /* height only */
    {300, 40, 96, 32},  /* strong downscale: wide support */
};

START_TEST(test_image_resize_constant_stays_constant)
{
    const size_case *sc = &sizes[_i];
    static const uint8_t colours[][3] = {{0, 0, 0}, {255, 255, 255}, {17, 128, 250}};
    for (size_t k = 0; k < sizeof colours / sizeof colours[0]; k++) {
        uint8_t *src = calloc((size_t)sc->h * sc->w, 3), *dst = malloc((size_t)sc->oh * sc->ow * 3);
        for (size_t i = 0; i < (size_t)sc->h * sc->w; i++)
            memcpy(src + i * 3, colours[k], 3);
        qref_error err = {0};
        ck_assert_int_eq(qref__resize_bicubic_u8(dst, sc->oh, sc->ow, src, sc->h, sc->w, &err), QREF_OK);
        for (size_t i = 0; i < (size_t)sc->oh * sc->ow * 3; i++)
            ck_assert_msg(dst[i] == colours[k][i % 3], "%dx%d -> %dx%d colour %zu: byte %zu is %d, want %d",
                          sc->h, sc->w, sc->oh, sc->ow, k, i, dst[i], colours[k][i % 3]);
        free(src);
        free(dst);
    }
}
END_TEST

START_TEST(test_image_resize_matches_naive_filter)
{
    const size_case *sc = &sizes[_i];
    uint8_t *src = calloc((size_t)sc->h * sc->w, 3), *dst = malloc((size_t)sc->oh * sc->ow * 3),
            *ref = malloc((size_t)sc->oh * sc->ow * 3);
    for (int y = 0; y < sc->h; y++)                      /* smooth ramps plus a sharp checker */
        for (int x = 0; x < sc->w; x++) {
            uint8_t *p = src + ((size_t)y * sc->w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (sc->w > 1 ? sc->w - 1 : 1));
            p[1] = (uint8_t)(y * 255 / (sc->h > 1 ? sc->h - 1 : 1));
            p[2] = ((x / 3 + y / 2) & 1) ? 230 : 20;
        }
    qref_error err = {0};
    ck_assert_int_eq(qref__resize_bicubic_u8(dst, sc->oh, sc->ow, src, sc->h, sc->w, &err), QREF_OK);
    naive_resize(ref, sc->oh, sc->ow, src, sc->h, sc->w);
    /* fixed-point weights move a pass's result by one level near a rounding boundary; a second
     * pass can carry that level through (weights up to ~1.1 with negative lobes): one level
     * per pass, while a wrong centre, support or filter moves ramps and edges by far more */
    const int tol = (sc->h != sc->oh) + (sc->w != sc->ow);
    size_t n_diff = 0;
    int max_d = 0;
    for (size_t i = 0; i < (size_t)sc->oh * sc->ow * 3; i++) {
        const int d = abs((int)dst[i] - (int)ref[i]);
        n_diff += d != 0;
        max_d = d > max_d ? d : max_d;
        ck_assert_msg(d <= tol, "%dx%d -> %dx%d: pixel (y %zu, x %zu) channel %zu: got %d, naive %d (bound %d)", sc->h,
                      sc->w, sc->oh, sc->ow, i / 3 / sc->ow, i / 3 % sc->ow, i % 3, dst[i], ref[i], tol);
    }
    printf("resize %dx%d -> %dx%d: %zu of %d bytes differ from the double-precision filter, by at most %d\n", sc->h,
           sc->w, sc->oh, sc->ow, n_diff, sc->oh * sc->ow * 3, max_d);
    free(src);
    free(dst);
    free(ref);
}
END_TEST

/* ---------------------------------------------------------------- preprocess with resize, errors */

START_TEST(test_image_preprocess_resizes_to_grid)
{
    /* 100 high x 70 wide, factor 32 -> 96 x 64 -> grid 1 x 6 x 4, every value the constant's */
    const int h = 100, w = 70;
    uint8_t *rgb = malloc((size_t)h * w * 3);
    for (size_t i = 0; i < (size_t)h * w; i++) {
        rgb[i * 3] = 51;
        rgb[i * 3 + 1] = 102;
        rgb[i * 3 + 2] = 204;
    }
    qref_config cfg = test_config();
    qref_image img = {rgb, w, h};
    qref_real *pix = NULL;
    int grid[3];
    qref_error err = {0};
    ck_assert_msg(qref_image_preprocess(&cfg, &img, &pix, grid, &err) == QREF_OK, "%s", err.msg);
    ck_assert_msg(grid[0] == 1 && grid[1] == 6 && grid[2] == 4, "grid %d x %d x %d, want 1 x 6 x 4", grid[0], grid[1],
                  grid[2]);
    const double want[3] = {(51 / 255.0 - 0.5) / 0.5, (102 / 255.0 - 0.5) / 0.5, (204 / 255.0 - 0.5) / 0.5};
    for (size_t i = 0; i < (size_t)24 * 1536; i++) {
        const int c = (int)(i % 1536) / 512;
        ck_assert_msg(fabs((double)pix[i] - want[c]) <= PIX_TOL, "value %zu (channel %d): %.17g, want %.17g", i, c,
                      (double)pix[i], want[c]);
    }
    free(pix);
    free(rgb);
}
END_TEST

START_TEST(test_image_preprocess_errors)
{
    uint8_t rgb[250 * 3] = {0};
    qref_config cfg = test_config();
    qref_real *pix = (qref_real *)&cfg;     /* must be reset to NULL on failure */
    int grid[3];
    qref_error err = {0};

    qref_image wide = {rgb, 250, 1};
    ck_assert_int_eq(qref_image_preprocess(&cfg, &wide, &pix, grid, &err), QREF_EINVAL);
    ck_assert_ptr_null(pix);
    ck_assert_msg(strstr(err.msg, "aspect ratio") != NULL, "%s", err.msg);

    qref_image empty = {rgb, 0, 5};
    ck_assert_int_eq(qref_image_preprocess(&cfg, &empty, &pix, grid, &err), QREF_EINVAL);

    qref_image ok = {rgb, 10, 25};
    cfg.preproc.patch_size = 14;
    ck_assert_int_eq(qref_image_preprocess(&cfg, &ok, &pix, grid, &err), QREF_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "patch 14") && strstr(err.msg, "patch 16"), "%s", err.msg);

    cfg = test_config();
    cfg.preproc.image_std[1] = 0;
    ck_assert_int_eq(qref_image_preprocess(&cfg, &ok, &pix, grid, &err), QREF_EINVAL);
    ck_assert_msg(strstr(err.msg, "image_std[1]") != NULL, "%s", err.msg);
}
END_TEST

static Suite *image_suite(void)
{
    Suite *s = suite_create("image");
    TCase *golden = tcase_create("patches");
    tcase_add_test(golden, test_image_golden_pixel_values);
    tcase_add_test(golden, test_image_fixtures_match_naive_flattening);
    suite_add_tcase(s, golden);
    TCase *sr = tcase_create("smart_resize");
    tcase_add_loop_test(sr, test_image_smart_resize_table, 0, (int)(sizeof resize_cases / sizeof resize_cases[0]));
    tcase_add_test(sr, test_image_smart_resize_errors);
    suite_add_tcase(s, sr);
    TCase *rs = tcase_create("resize");
    tcase_add_loop_test(rs, test_image_resize_constant_stays_constant, 0, (int)(sizeof sizes / sizeof sizes[0]));
    tcase_add_loop_test(rs, test_image_resize_matches_naive_filter, 0, (int)(sizeof sizes / sizeof sizes[0]));
    tcase_add_test(rs, test_image_preprocess_resizes_to_grid);
    tcase_add_test(rs, test_image_preprocess_errors);
    suite_add_tcase(s, rs);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return lc_check_run(image_suite());
}
