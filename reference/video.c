/* SPDX-License-Identifier: MIT */
/*
 * Video preprocessing for the vision tower, as transformers' Qwen3-VL video processor (the one
 * Qwen3.5 checkpoints use) does it on its torchvision backend:
 *
 *   frames -> sampled at cfg->video.fps -> smart_resize once over t * h * w (factor P*M, the
 *   pixel bounds over the whole video) -> every frame resized as images are (image.c's
 *   bicubic on the bytes) -> x / 255 -> (x - mean) / std -> an odd frame count padded with the
 *   last frame -> temporal patches of Tp consecutive frames, each cut into P x P patches in
 *   M x M merge-block order and flattened (C, Tp, P, P).
 *
 * Sampling: k = int(n / fps * target) clamped to [min_frames, n] and to max_frames, indices
 * round(i * (n - 1) / (k - 1)) (numpy's linspace, rounded half to even). A video with no rate
 * is taken at QREF_VIDEO_FPS_WHEN_MISSING, as the processor does (with a warning).
 *
 * smart_resize of videos differs from the image one: sides below the factor are first scaled
 * up (truncated), the frame count enters the budget as t_bar = round(n / Tp) * Tp (half to
 * even) when testing the bounds and as n itself in the scale factor.
 *
 * Shape legend: n = frames, t = temporal patches, Tp = temporal patch size, P = patch size,
 * M = merge size, gh, gw = patch rows and columns.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

/* ---------------------------------------------------------------- sampling */

qref_status qref_video_sample(const qref_config *cfg, int n_frames, double fps, int *idx, int *n_out,
                              double *fps_used, qref_error *err)
{
    const qref_video_preproc_config *vp = &cfg->video;
    if (n_frames < 1 || !idx || !n_out || !fps_used)
        return qref__fail(err, QREF_EINVAL, "video sampling: %d frames (need at least one)", n_frames);
    const double rate = fps > 0 ? fps : QREF_VIDEO_FPS_WHEN_MISSING;
    *fps_used = rate;
    int k = n_frames;
    if (vp->do_sample_frames) {
        if (vp->fps > 0) {
            const double want = (double)n_frames / rate * vp->fps;
            k = want >= (double)INT32_MAX ? INT32_MAX : (int)want; /* int() truncates */
            if (k < vp->min_frames)
                k = vp->min_frames;
            if (k > vp->max_frames)
                k = vp->max_frames;
            if (k > n_frames)
                k = n_frames;
        } else {
            k = n_frames < vp->min_frames ? vp->min_frames : n_frames;
            if (k > vp->max_frames)
                k = vp->max_frames;
        }
    }
    if (k < 1)
        return qref__fail(err, QREF_EINVAL, "video sampling: %d of %d frames kept (min_frames %d, max_frames %d)", k,
                          n_frames, vp->min_frames, vp->max_frames);
    const double step = k > 1 ? (double)(n_frames - 1) / (double)(k - 1) : 0.0;
    for (int i = 0; i < k; i++) {
        const double x = i == k - 1 && k > 1 ? (double)(n_frames - 1) : (double)i * step;
        const double r = nearbyint(x);                               /* half to even */
        idx[i] = r < 0 ? 0 : r > n_frames - 1 ? n_frames - 1 : (int)r;
    }
    *n_out = k;
    return QREF_OK;
}

/* ---------------------------------------------------------------- smart_resize over t*h*w */

static qref_status video_resize_dims(const qref_config *cfg, int n, int height, int width, int *out_h, int *out_w,
                                     qref_error *err)
{
    const qref_video_preproc_config *vp = &cfg->video;
    const int factor = vp->patch_size * vp->merge_size, Tp = vp->temporal_patch_size;
    if (factor <= 0 || Tp <= 0 || height <= 0 || width <= 0)
        return qref__fail(err, QREF_EINVAL, "video smart_resize: frames %dx%d, factor %d, temporal patch %d",
                          height, width, factor, Tp);
    if (n < Tp)
        return qref__fail(err, QREF_EINVAL, "video smart_resize: %d frames, fewer than the temporal patch size %d", n,
                          Tp);
    double h = height, w = width;
    if (height < factor || width < factor) {
        const double scale = fmax((double)factor / h, (double)factor / w);
        h = floor(h * scale);                                        /* int() of a positive value */
        w = floor(w * scale);
    }
    if (fmax(h, w) / fmin(h, w) > 200)
        return qref__fail(err, QREF_EINVAL, "video smart_resize: frames %dx%d have an aspect ratio above 200", height,
                          width);
    double h_bar = nearbyint(h / factor) * factor;
    double w_bar = nearbyint(w / factor) * factor;
    const double t_bar = nearbyint((double)n / Tp) * Tp;
    if (t_bar * h_bar * w_bar > (double)vp->max_pixels) {
        const double beta = sqrt((double)n * h * w / (double)vp->max_pixels);
        h_bar = fmax((double)factor, floor(h / beta / factor) * factor);
        w_bar = fmax((double)factor, floor(w / beta / factor) * factor);
    } else if (t_bar * h_bar * w_bar < (double)vp->min_pixels) {
        const double beta = sqrt((double)vp->min_pixels / ((double)n * h * w));
        h_bar = ceil(h * beta / factor) * factor;
        w_bar = ceil(w * beta / factor) * factor;
    }
    if (h_bar < factor || w_bar < factor || h_bar * w_bar > (double)QREF__MAX_PIXELS)
        return qref__fail(err, QREF_EINVAL,
                          "video smart_resize: frames %dx%d resize to %.0fx%.0f (pixel bounds [%ld, %ld] over %d "
                          "frames)", height, width, h_bar, w_bar, vp->min_pixels, vp->max_pixels, n);
    *out_h = (int)h_bar;
    *out_w = (int)w_bar;
    return QREF_OK;
}

static qref_status check_sizes(const qref_config *cfg, const char *what, qref_error *err)
{
    const qref_video_preproc_config *vp = &cfg->video;
    if (vp->patch_size <= 0 || vp->temporal_patch_size <= 0 || vp->merge_size <= 0)
        return qref__fail(err, QREF_EINVAL, "%s: patch %d, temporal patch %d and merge %d must be positive", what,
                          vp->patch_size, vp->temporal_patch_size, vp->merge_size);
    if (cfg->has_vision && (cfg->vision.patch_size != vp->patch_size ||
                            cfg->vision.temporal_patch_size != vp->temporal_patch_size ||
                            cfg->vision.spatial_merge_size != vp->merge_size || cfg->vision.in_channels != 3))
        return qref__fail(err, QREF_EUNSUPPORTED,
                          "%s: video processor (patch %d, temporal %d, merge %d) does not match the vision tower "
                          "(patch %d, temporal %d, merge %d, %d channels)", what, vp->patch_size,
                          vp->temporal_patch_size, vp->merge_size, cfg->vision.patch_size,
                          cfg->vision.temporal_patch_size, cfg->vision.spatial_merge_size, cfg->vision.in_channels);
    return QREF_OK;
}

qref_status qref_video_grid(const qref_config *cfg, int n_frames, int width, int height, int grid_thw[3],
                            qref_error *err)
{
    qref_status st = check_sizes(cfg, "video grid", err);
    int rh = 0, rw = 0;
    if (st != QREF_OK || (st = video_resize_dims(cfg, n_frames, height, width, &rh, &rw, err)) != QREF_OK)
        return st;
    const int Tp = cfg->video.temporal_patch_size, P = cfg->video.patch_size;
    grid_thw[0] = (n_frames + Tp - 1) / Tp;
    grid_thw[1] = rh / P;
    grid_thw[2] = rw / P;
    return QREF_OK;
}

/* ---------------------------------------------------------------- pixels */

qref_status qref_video_preprocess(const qref_config *cfg, const qref_image *frames, int n, qref_real **pixels,
                                  int grid_thw[3], qref_error *err)
{
    if (!pixels || !grid_thw)
        return qref__fail(err, QREF_EINVAL, "video preprocess: pixels and grid_thw outputs are required");
    *pixels = NULL;
    if (!cfg || !frames || n < 1)
        return qref__fail(err, QREF_EINVAL, "video preprocess: no frames");
    for (int f = 0; f < n; f++)
        if (!frames[f].rgb || frames[f].width != frames[0].width || frames[f].height != frames[0].height ||
            frames[f].width <= 0 || frames[f].height <= 0)
            return qref__fail(err, QREF_EINVAL,
                              "video preprocess: frame %d is %dx%d, frame 0 is %dx%d (every frame must have one "
                              "non-empty size)", f, frames[f].height, frames[f].width, frames[0].height,
                              frames[0].width);
    qref_status st = qref_video_grid(cfg, n, frames[0].width, frames[0].height, grid_thw, err);
    if (st != QREF_OK)
        return st;
    const qref_video_preproc_config *vp = &cfg->video;
    const int P = vp->patch_size, Tp = vp->temporal_patch_size, M = vp->merge_size, C = 3;
    const int t = grid_thw[0], gh = grid_thw[1], gw = grid_thw[2], rh = gh * P, rw = gw * P;
    const int h0 = frames[0].height, w0 = frames[0].width;
    double lut[3][256];                                          /* normalised value per byte */
    for (int c = 0; c < C; c++) {
        if (!(vp->image_std[c] != 0.0))
            return qref__fail(err, QREF_EINVAL, "video preprocess: image_std[%d] is %g", c, vp->image_std[c]);
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((double)v / 255.0 - vp->image_mean[c]) / vp->image_std[c];
    }
    const size_t frame_bytes = (size_t)rh * rw * 3;
    const size_t per_t = (size_t)gh * gw, dim = (size_t)C * Tp * P * P;
    uint8_t *resized = malloc(frame_bytes * (size_t)n);          /* (n, rh, rw, 3) */
    qref_real *out = malloc((size_t)t * per_t * dim * sizeof *out); /* (t*gh*gw, C*Tp*P*P) */
    if (!resized || !out) {
        free(resized);
        free(out);
        return qref__fail(err, QREF_ENOMEM, "video preprocess: out of memory for %d frames of %dx%d", n, rh, rw);
    }
    for (int f = 0; f < n && st == QREF_OK; f++)
        st = qref__resize_bicubic_u8(resized + (size_t)f * frame_bytes, rh, rw, frames[f].rgb, h0, w0, err);
    if (st != QREF_OK) {
        free(resized);
        free(out);
        return st;
    }
    for (int ti = 0; ti < t; ti++)
        for (size_t k = 0; k < per_t; k++) {
            int row, col;
            qref__merge_block_rc((int)k, gw, M, &row, &col);
            qref_real *dst = out + ((size_t)ti * per_t + k) * dim; /* (C, Tp, P, P) */
            for (int tt = 0; tt < Tp; tt++) {
                int f = ti * Tp + tt;
                if (f > n - 1)
                    f = n - 1;                                   /* odd count: the last frame again */
                const uint8_t *src = resized + (size_t)f * frame_bytes;
                for (int c = 0; c < C; c++)
                    for (int py = 0; py < P; py++) {
                        const uint8_t *line = src + ((size_t)(row * P + py) * rw + (size_t)col * P) * 3;
                        for (int px = 0; px < P; px++)
                            dst[(((size_t)c * Tp + tt) * P + py) * P + px] = (qref_real)lut[c][line[(size_t)px * 3 + c]];
                    }
            }
        }
    free(resized);
    *pixels = out;
    return QREF_OK;
}
