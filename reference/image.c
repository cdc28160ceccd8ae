/* SPDX-License-Identifier: MIT */
/*
 * Image preprocessing for the vision tower, as the Qwen2-VL family image processor does it
 * (the processor Qwen3.5 checkpoints ship with, on its default torchvision backend):
 *
 *   RGB bytes -> smart_resize to multiples of P*M (antialiased bicubic on the bytes, only when
 *   the size changes) -> x / 255 -> (x - mean) / std per channel -> the frame repeated Tp times
 *   -> P x P patches, listed in M x M merge-block order, each flattened as (C, Tp, P, P).
 *
 * The resize reproduces torch's uint8 path (what torchvision runs for uint8 tensors on CPU):
 * PIL's bicubic support and centring with Keys a = -0.5, weights normalised in double and then
 * rounded to int16 at the largest precision that keeps the biggest weight below 2^15; the width
 * pass runs first, then the height pass, each rounding to bytes. Pillow itself uses 22-bit
 * int32 weights, so the PIL backend can differ from this by one level on some pixels.
 *
 * The rescale divides by 255 in double (x / 255, not x * (1/255)) and normalises in double;
 * the float build rounds each value once.
 *
 * Shape legend: h, w = image rows and columns, P = patch size, Tp = temporal patch size,
 * M = merge size, gh, gw = patch rows and columns.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

/* Largest side smart_resize may produce; far above any real processor setting. */
#define QREF__MAX_SIDE (1 << 20)

/* ---------------------------------------------------------------- smart_resize */

qref_status qref__smart_resize(int height, int width, int factor, long min_pixels, long max_pixels,
                               int *out_h, int *out_w, qref_error *err)
{
    if (height <= 0 || width <= 0 || factor <= 0)
        return qref__fail(err, QREF_EINVAL,
                          "smart_resize: image %dx%d (height x width) and factor %d must be positive",
                          height, width, factor);
    if (min_pixels < 0 || max_pixels <= 0 || min_pixels > max_pixels)
        return qref__fail(err, QREF_EINVAL,
                          "smart_resize: need 0 <= min_pixels <= max_pixels and max_pixels > 0, got [%ld, %ld]",
                          min_pixels, max_pixels);
    const double hi = height > width ? height : width;
    const double lo = height > width ? width : height;
    if (hi / lo > 200)
        return qref__fail(err, QREF_EINVAL,
                          "smart_resize: image %dx%d has aspect ratio %.6g, above the processor's limit of 200",
                          height, width, hi / lo);

    /* round() of the processor rounds half to even, as nearbyint does in the default mode */
    double h_bar = nearbyint((double)height / factor) * factor;
    double w_bar = nearbyint((double)width / factor) * factor;
    const double area = (double)height * (double)width;
    if (h_bar * w_bar > (double)max_pixels) {
        const double beta = sqrt(area / (double)max_pixels);
        h_bar = fmax((double)factor, floor((double)height / beta / factor) * factor);
        w_bar = fmax((double)factor, floor((double)width / beta / factor) * factor);
    } else if (h_bar * w_bar < (double)min_pixels) {
        const double beta = sqrt((double)min_pixels / area);
        h_bar = ceil((double)height * beta / factor) * factor;
        w_bar = ceil((double)width * beta / factor) * factor;
    }
    if (h_bar < factor || w_bar < factor || h_bar > QREF__MAX_SIDE || w_bar > QREF__MAX_SIDE ||
        h_bar * w_bar > (double)QREF__MAX_PIXELS)
        return qref__fail(err, QREF_EINVAL,
                          "smart_resize: image %dx%d resizes to %.0fx%.0f, outside [%d, %d] per side "
                          "or above %ld pixels (min_pixels %ld, max_pixels %ld)", height, width, h_bar, w_bar,
                          factor, QREF__MAX_SIDE, (long)QREF__MAX_PIXELS, min_pixels, max_pixels);
    *out_h = (int)h_bar;
    *out_w = (int)w_bar;
    return QREF_OK;
}

/* ---------------------------------------------------------------- bicubic resize */

/* Keys cubic with a = -0.5 (the antialiasing filter), in torch's operation order. */
static double keys_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0)
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

/* Fixed-point resampling weights of one axis (in -> out samples). */
typedef struct {
    int taps;           /* weights stored per output sample */
    int prec;           /* fractional bits of the int16 weights */
    int *first;         /* (out) first source sample */
    int *count;         /* (out) source samples used */
    int16_t *w;         /* (out, taps) */
} axis_weights;

static void axis_free(axis_weights *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
    memset(a, 0, sizeof *a);
}

static qref_status axis_init(axis_weights *a, int in, int out, qref_error *err)
{
    memset(a, 0, sizeof *a);
    const double scale = (double)in / (double)out;
    const double support = scale >= 1.0 ? 2.0 * scale : 2.0;     /* cubic: 4 taps * 0.5 */
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    a->taps = (int)ceil(support) * 2 + 1;
    double *wd = malloc((size_t)out * (size_t)a->taps * sizeof *wd); /* (out, taps) */
    a->first = malloc((size_t)out * sizeof *a->first);
    a->count = malloc((size_t)out * sizeof *a->count);
    a->w = malloc((size_t)out * (size_t)a->taps * sizeof *a->w);
    if (!wd || !a->first || !a->count || !a->w) {
        free(wd);
        axis_free(a);
        return qref__fail(err, QREF_ENOMEM, "resize: out of memory for %d x %d weights", out, a->taps);
    }

    double wt_max = 0.0;
    for (int i = 0; i < out; i++) {
        double *wi = wd + (size_t)i * a->taps;                   /* (taps) */
        const double center = scale * (i + 0.5);
        int64_t xmin = (int64_t)(center - support + 0.5);        /* truncation, as torch */
        if (xmin < 0)
            xmin = 0;
        int64_t xend = (int64_t)(center + support + 0.5);
        if (xend > in)
            xend = in;
        int64_t xsize = xend - xmin;
        if (xsize < 0)
            xsize = 0;
        if (xsize > a->taps)
            xsize = a->taps;
        double total = 0.0;
        for (int64_t j = 0; j < xsize; j++) {
            wi[j] = keys_cubic(((double)(j + xmin) - center + 0.5) * invscale);
            total += wi[j];
        }
        if (total != 0.0) {
            for (int64_t j = 0; j < xsize; j++) {
                wi[j] /= total;
                wt_max = fmax(wt_max, wi[j]);
            }
        }
        for (int64_t j = xsize; j < a->taps; j++)
            wi[j] = 0.0;
        a->first[i] = (int)xmin;
        a->count[i] = (int)xsize;
    }

    /* the largest precision (< 22 bits) at which 2 * wt_max still fits below 2^15 */
    int prec;
    for (prec = 0; prec < 22; prec++) {
        int next = (int)(0.5 + wt_max * (double)(1 << (prec + 1)));
        if (next >= (1 << 15))
            break;
    }
    assert(prec >= 1);
    a->prec = prec;
    for (size_t k = 0; k < (size_t)out * (size_t)a->taps; k++) {
        double v = wd[k] * (double)(1 << prec);
        a->w[k] = (int16_t)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
    }
    free(wd);
    return QREF_OK;
}

/* One output byte: the rounded fixed-point dot product, clamped to [0, 255]. */
static uint8_t convolve(const uint8_t *src, size_t stride, const int16_t *w, int count, int prec)
{
    int acc = 1 << (prec - 1);
    for (int j = 0; j < count; j++)
        acc += (int)src[(size_t)j * stride] * (int)w[j];
    if (acc < 0)
        return 0;
    acc >>= prec;
    return (uint8_t)(acc > 255 ? 255 : acc);
}

/* dst (h, out_w, 3) from src (h, w, 3), along each row. */
static void resample_rows(uint8_t *dst, const uint8_t *src, int h, int w, int out_w, const axis_weights *a)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)y * w * 3;            /* (w, 3) */
        uint8_t *orow = dst + (size_t)y * out_w * 3;             /* (out_w, 3) */
        for (int x = 0; x < out_w; x++) {
            const int16_t *wx = a->w + (size_t)x * a->taps;
            for (int c = 0; c < 3; c++)
                orow[(size_t)x * 3 + c] = convolve(row + (size_t)a->first[x] * 3 + c, 3, wx,
                                                   a->count[x], a->prec);
        }
    }
}

/* dst (out_h, w, 3) from src (h, w, 3), along each column. */
static void resample_cols(uint8_t *dst, const uint8_t *src, int w, int out_h, const axis_weights *a)
{
    const size_t stride = (size_t)w * 3;
    for (int y = 0; y < out_h; y++) {
        const int16_t *wy = a->w + (size_t)y * a->taps;
        const uint8_t *top = src + (size_t)a->first[y] * stride; /* first source row */
        uint8_t *orow = dst + (size_t)y * stride;
        for (size_t i = 0; i < stride; i++)
            orow[i] = convolve(top + i, stride, wy, a->count[y], a->prec);
    }
}

qref_status qref__resize_bicubic_u8(uint8_t *dst, int out_h, int out_w, const uint8_t *src, int h,
                                    int w, qref_error *err)
{
    assert(out_h > 0 && out_w > 0 && h > 0 && w > 0);
    const int need_w = out_w != w, need_h = out_h != h;
    if (!need_w && !need_h) {
        memcpy(dst, src, (size_t)h * w * 3);
        return QREF_OK;
    }
    axis_weights ax = {0}, ay = {0};
    uint8_t *mid = NULL;                                         /* (h, out_w, 3) */
    qref_status st = QREF_OK;
    if (need_w && (st = axis_init(&ax, w, out_w, err)) != QREF_OK)
        goto done;
    if (need_h && (st = axis_init(&ay, h, out_h, err)) != QREF_OK)
        goto done;
    if (need_w && need_h) {
        mid = malloc((size_t)h * out_w * 3);
        if (!mid) {
            st = qref__fail(err, QREF_ENOMEM, "resize: out of memory for a %dx%d intermediate image",
                            h, out_w);
            goto done;
        }
        resample_rows(mid, src, h, w, out_w, &ax);
        resample_cols(dst, mid, out_w, out_h, &ay);
    } else if (need_w) {
        resample_rows(dst, src, h, w, out_w, &ax);
    } else {
        resample_cols(dst, src, w, out_h, &ay);
    }
done:
    free(mid);
    axis_free(&ax);
    axis_free(&ay);
    return st;
}

/* ---------------------------------------------------------------- patches */

void qref__merge_block_rc(int k, int w, int M, int *row, int *col)
{
    assert(M > 0 && w % M == 0 && k >= 0);
    const int blocks_w = w / M;
    const int in_col = k % M;
    const int in_row = (k / M) % M;
    const int block = k / (M * M);
    *row = (block / blocks_w) * M + in_row;
    *col = (block % blocks_w) * M + in_col;
}

qref_status qref_image_pixel_bounds(const qref_config *cfg, long min_pixels, long max_pixels, long *min_out,
                                    long *max_out, qref_error *err)
{
    const qref_preproc_config *pp = &cfg->preproc;
    const long f = (long)pp->patch_size * pp->merge_size, block = f * f;
    if (min_pixels < 0 || max_pixels < 0)
        return qref__fail(err, QREF_EINVAL, "image pixel bounds: min_pixels %ld, max_pixels %ld: negative (0 = the "
                          "processor's)", min_pixels, max_pixels);
    if ((min_pixels && min_pixels < block) || (max_pixels && max_pixels < block))
        return qref__fail(err, QREF_EINVAL, "image pixel bounds: %s %ld is below one merge block (%ld pixels: "
                          "(patch %d * merge %d)^2)", min_pixels && min_pixels < block ? "min_pixels" : "max_pixels",
                          min_pixels && min_pixels < block ? min_pixels : max_pixels, block, pp->patch_size,
                          pp->merge_size);
    *min_out = min_pixels ? min_pixels : pp->min_pixels;
    *max_out = max_pixels ? max_pixels : pp->max_pixels;
    if (*min_out > *max_out)
        return qref__fail(err, QREF_EINVAL, "image pixel bounds: min_pixels %ld exceeds max_pixels %ld%s", *min_out,
                          *max_out, min_pixels && max_pixels ? "" : " (one of them the processor's)");
    return QREF_OK;
}

qref_status qref_image_grid(const qref_config *cfg, int width, int height, int grid_thw[3], qref_error *err)
{
    return qref_image_grid_px(cfg, width, height, 0, 0, grid_thw, err);
}

qref_status qref_image_grid_px(const qref_config *cfg, int width, int height, long min_pixels, long max_pixels,
                               int grid_thw[3], qref_error *err)
{
    const qref_preproc_config *pp = &cfg->preproc;
    const int P = pp->patch_size, M = pp->merge_size;
    if (P <= 0 || M <= 0 || width <= 0 || height <= 0)
        return qref__fail(err, QREF_EINVAL, "image grid: image %dx%d, patch %d, merge %d must be positive", height,
                          width, P, M);
    int rh = 0, rw = 0;
    long lo = 0, hi = 0;
    qref_status st = qref_image_pixel_bounds(cfg, min_pixels, max_pixels, &lo, &hi, err);
    if (st == QREF_OK)
        st = qref__smart_resize(height, width, P * M, lo, hi, &rh, &rw, err);
    if (st != QREF_OK)
        return st;
    grid_thw[0] = 1;
    grid_thw[1] = rh / P;
    grid_thw[2] = rw / P;
    return QREF_OK;
}

qref_status qref_image_preprocess(const qref_config *cfg, const qref_image *img, qref_real **pixels,
                                  int grid_thw[3], qref_error *err)
{
    return qref_image_preprocess_px(cfg, img, 0, 0, pixels, grid_thw, err);
}

qref_status qref_image_preprocess_px(const qref_config *cfg, const qref_image *img, long min_pixels,
                                     long max_pixels, qref_real **pixels, int grid_thw[3], qref_error *err)
{
    if (!pixels || !grid_thw)
        return qref__fail(err, QREF_EINVAL, "image preprocess: pixels and grid_thw outputs are required");
    *pixels = NULL;
    if (!cfg || !img || !img->rgb || img->width <= 0 || img->height <= 0)
        return qref__fail(err, QREF_EINVAL,
                          "image preprocess: need a configuration and a non-empty RGB image, got %dx%d",
                          img ? img->height : 0, img ? img->width : 0);
    const qref_preproc_config *pp = &cfg->preproc;
    const int P = pp->patch_size, Tp = pp->temporal_patch_size, M = pp->merge_size, C = 3;
    if (P <= 0 || Tp <= 0 || M <= 0)
        return qref__fail(err, QREF_EINVAL,
                          "image preprocess: patch_size %d, temporal_patch_size %d and merge_size %d must be "
                          "positive", P, Tp, M);
    if (cfg->has_vision) {
        const qref_vision_config *v = &cfg->vision;
        if (v->patch_size != P || v->temporal_patch_size != Tp || v->spatial_merge_size != M ||
            v->in_channels != C)
            return qref__fail(err, QREF_EUNSUPPORTED,
                              "image preprocess: processor (patch %d, temporal %d, merge %d, 3 channels) does "
                              "not match the vision tower (patch %d, temporal %d, merge %d, %d channels)",
                              P, Tp, M, v->patch_size, v->temporal_patch_size, v->spatial_merge_size,
                              v->in_channels);
    }
    double lut[3][256];                                          /* normalised value per byte */
    for (int c = 0; c < C; c++) {
        if (!(pp->image_std[c] != 0.0))
            return qref__fail(err, QREF_EINVAL, "image preprocess: image_std[%d] is %g", c, pp->image_std[c]);
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((double)v / 255.0 - pp->image_mean[c]) / pp->image_std[c];
    }

    int rh = 0, rw = 0;
    long lo = 0, hi = 0;
    qref_status st = qref_image_pixel_bounds(cfg, min_pixels, max_pixels, &lo, &hi, err);
    if (st == QREF_OK)
        st = qref__smart_resize(img->height, img->width, P * M, lo, hi, &rh, &rw, err);
    if (st != QREF_OK)
        return st;
    const uint8_t *src = img->rgb;                               /* (rh, rw, 3) */
    uint8_t *resized = NULL;
    if (rh != img->height || rw != img->width) {
        resized = malloc((size_t)rh * rw * 3);
        if (!resized)
            return qref__fail(err, QREF_ENOMEM, "image preprocess: out of memory resizing %dx%d to %dx%d",
                              img->height, img->width, rh, rw);
        st = qref__resize_bicubic_u8(resized, rh, rw, img->rgb, img->height, img->width, err);
        if (st != QREF_OK) {
            free(resized);
            return st;
        }
        src = resized;
    }

    const int gh = rh / P, gw = rw / P;
    const size_t n_patches = (size_t)gh * gw;
    const size_t dim = (size_t)C * Tp * P * P;
    qref_real *out = malloc(n_patches * dim * sizeof *out);     /* (gh*gw, C*Tp*P*P) */
    if (!out) {
        free(resized);
        return qref__fail(err, QREF_ENOMEM, "image preprocess: out of memory for %zu patches of %zu values",
                          n_patches, dim);
    }
    for (size_t k = 0; k < n_patches; k++) {
        int row, col;
        qref__merge_block_rc((int)k, gw, M, &row, &col);
        qref_real *dst = out + k * dim;                          /* (C, Tp, P, P) */
        for (int c = 0; c < C; c++)
            for (int py = 0; py < P; py++) {
                const uint8_t *line = src + ((size_t)(row * P + py) * rw + (size_t)col * P) * 3;
                for (int px = 0; px < P; px++) {
                    const qref_real v = (qref_real)lut[c][line[(size_t)px * 3 + c]];
                    for (int t = 0; t < Tp; t++)
                        dst[(((size_t)c * Tp + t) * P + py) * P + px] = v;
                }
            }
    }
    free(resized);
    *pixels = out;
    grid_thw[0] = 1;
    grid_thw[1] = gh;
    grid_thw[2] = gw;
    return QREF_OK;
}
