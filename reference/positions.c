/* SPDX-License-Identifier: MIT */
/*
 * 3-axis multimodal rotary positions (MRoPE) of a prompt with images.
 *
 * Text tokens share one position on all three axes (T = H = W) and advance it by one. A run of
 * consecutive image placeholder tokens is one image: with s the position the run starts at and
 * (t, gh, gw) the image's merged grid (grid_thw with h and w divided by the merge size M), the
 * placeholder of frame i, merged row r, merged column c gets (s + i, s + r, s + c), listed
 * frame-major then row-major; the next token continues at s + max(gh, gw).
 * The prompt's delta (max position + 1 - n) shifts the text positions of later decode steps.
 *
 * Videos (qref_rope_index_mm, transformers 5.17's Qwen3.5 get_rope_index): a video of grid
 * (t, h, w) is t groups of (1, h, w), one per temporal patch, each its own placeholder run
 * after its timestamp ids and vision_start; a group starting at s gets (s, s + r, s + c) and
 * the next token continues at s + max(gh, gw), so the timestamp ids of the next group are
 * text positions after it. Image runs there are placed exactly as qref_rope_index places them.
 *
 * Shape legend: n = prompt tokens.
 */
#include "qref_faults.h"
#include "qref_internal.h"

static int max3(int a, int b, int c)
{
    const int ab = a > b ? a : b;
    return ab > c ? ab : c;
}

qref_status qref_rope_index(const qref_config *cfg, const int32_t *ids, int n, const int (*grid_thw)[3],
                            int n_images, int64_t *pos, int64_t *delta, qref_error *err)
{
    if (!cfg || (n > 0 && (!ids || !pos)) || !delta || n < 0 || n_images < 0 || (n_images > 0 && !grid_thw))
        return qref__fail(err, QREF_EINVAL,
                          "rope index: invalid arguments (n %d, n_images %d, ids %s, pos %s, grids %s)", n,
                          n_images, ids ? "set" : "NULL", pos ? "set" : "NULL", grid_thw ? "set" : "NULL");
    if (n_images > 0 && !cfg->has_vision)
        return qref__fail(err, QREF_EINVAL, "rope index: %d images given but the model has no vision tower",
                          n_images);
    const int M = cfg->vision.spatial_merge_size;
    for (int i = 0; i < n_images; i++) {
        const int *g = grid_thw[i];
        if (M <= 0 || g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % M || g[2] % M)
            return qref__fail(err, QREF_EINVAL,
                              "rope index: image %d grid (t, h, w) = (%d, %d, %d) must be positive with h and w "
                              "multiples of the merge size %d", i, g[0], g[1], g[2], M);
    }

    int64_t *pt = pos, *ph = pos + n, *pw = pos + 2 * (size_t)n; /* (n) each */
    int64_t cur = 0, max_pos = -1;
    int image = 0;
    for (int i = 0; i < n;) {
        if (cfg->has_vision && ids[i] == cfg->video_token_id && cfg->video_token_id != cfg->image_token_id)
            return qref__fail(err, QREF_EUNSUPPORTED,
                              "rope index: video placeholder token %d at index %d: videos are not supported",
                              ids[i], i);
        if (!cfg->has_vision || ids[i] != cfg->image_token_id) {
            pt[i] = ph[i] = pw[i] = cur;
            if (cur > max_pos)
                max_pos = cur;
            cur++;
            i++;
            continue;
        }
        int end = i;
        while (end < n && ids[end] == cfg->image_token_id)
            end++;
        const int run = end - i;
        if (image >= n_images)
            return qref__fail(err, QREF_EINVAL,
                              "rope index: image placeholder run %d (tokens %d..%d) has no image: %d images given",
                              image + 1, i, end - 1, n_images);
        const int t = grid_thw[image][0], gh = grid_thw[image][1] / M, gw = grid_thw[image][2] / M;
        const int64_t expect = (int64_t)t * gh * gw;
        if (run != expect)
            return qref__fail(err, QREF_EINVAL,
                              "rope index: image %d (grid %d x %d x %d, merge %d) needs %lld placeholder tokens, "
                              "found a run of %d at index %d", image, t, grid_thw[image][1], grid_thw[image][2],
                              M, (long long)expect, run, i);
        int k = i;
        for (int f = 0; f < t; f++)
            for (int r = 0; r < gh; r++)
                for (int c = 0; c < gw; c++, k++) {
                    pt[k] = cur + f;
                    ph[k] = cur + r;
                    pw[k] = cur + c;
                }
        const int64_t top = cur + max3(t, gh, gw) - 1;         /* largest position of the run */
        if (top > max_pos)
            max_pos = top;
        cur += gh > gw ? gh : gw;
        image++;
        i = end;
    }
    if (image != n_images)
        return qref__fail(err, QREF_EINVAL,
                          "rope index: %d images given but the prompt has %d image placeholder runs", n_images,
                          image);
    *delta = n > 0 ? max_pos + 1 - n : 0;
    return QREF_OK;
}

/* ---------------------------------------------------------------- images and videos */

int qref_is_placeholder(const qref_config *cfg, int32_t id)
{
    return cfg->has_vision && (id == cfg->image_token_id || id == cfg->video_token_id);
}

qref_status qref_rope_index_mm(const qref_config *cfg, const int32_t *ids, int n, const int (*grid)[3],
                               const uint8_t *is_video, int n_visuals, int64_t *pos, int64_t *delta,
                               qref_error *err)
{
    return qref__rope_index_mm(cfg, NULL, ids, n, grid, is_video, n_visuals, pos, delta, err);
}

/* Next visual input of one kind (image or video) at or after *at; -1 when none is left. */
static int next_visual(const uint8_t *is_video, int n_visuals, int at, int video)
{
    for (int i = at; i < n_visuals; i++)
        if ((is_video && is_video[i]) == video)
            return i;
    return -1;
}

qref_status qref__rope_index_mm(const qref_config *cfg, const qref_faults *faults, const int32_t *ids, int n,
                                const int (*grid)[3], const uint8_t *is_video, int n_visuals, int64_t *pos,
                                int64_t *delta, qref_error *err)
{
    if (!cfg || (n > 0 && (!ids || !pos)) || !delta || n < 0 || n_visuals < 0 || (n_visuals > 0 && !grid))
        return qref__fail(err, QREF_EINVAL, "rope index: invalid arguments (n %d, visual inputs %d)", n, n_visuals);
    if (n_visuals > 0 && !cfg->has_vision)
        return qref__fail(err, QREF_EINVAL, "rope index: %d visual inputs given but the model has no vision tower",
                          n_visuals);
    if (cfg->has_vision && cfg->video_token_id == cfg->image_token_id)
        return qref__fail(err, QREF_EUNSUPPORTED, "rope index: the image and video placeholder ids are both %d",
                          cfg->image_token_id);
    const int M = cfg->vision.spatial_merge_size;
    for (int i = 0; i < n_visuals; i++) {
        const int *g = grid[i];
        if (M <= 0 || g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % M || g[2] % M)
            return qref__fail(err, QREF_EINVAL,
                              "rope index: visual input %d grid (t, h, w) = (%d, %d, %d) must be positive with h "
                              "and w multiples of the merge size %d", i, g[0], g[1], g[2], M);
    }
    const int one_block = faults && faults->video_one_block;
    const int ts_still = faults && faults->video_ts_no_advance;
    const int per_token = faults && faults->video_temporal_per_token;

    int64_t *pt = pos, *ph = pos + n, *pw = pos + 2 * (size_t)n; /* (n) each */
    int64_t cur = 0, max_pos = -1, block_start = 0;
    int img_at = 0, vid_at = 0;          /* next image / video input to look at */
    int video = -1, group = 0;           /* the video whose groups are being consumed, its next group */
    int between_groups = 0;              /* after a group of a video with groups left */
    for (int i = 0; i < n;) {
        const int32_t id = ids[i];
        const int is_img = cfg->has_vision && id == cfg->image_token_id;
        const int is_vid = cfg->has_vision && id == cfg->video_token_id;
        if (!is_img && !is_vid) {
            pt[i] = ph[i] = pw[i] = cur;
            if (cur > max_pos)
                max_pos = cur;
            /* planted: timestamp ids between two groups of one video keep their position */
            const int ts = between_groups && id != cfg->vision_start_token_id && id != cfg->vision_end_token_id;
            if (!(ts_still && ts))
                cur++;
            i++;
            continue;
        }
        int end = i;
        while (end < n && ids[end] == id)
            end++;
        const int run = end - i;
        int v, t, first_group = 0, last_group = 1, f = 0;
        if (is_img) {
            v = next_visual(is_video, n_visuals, img_at, 0);
            if (v < 0)
                return qref__fail(err, QREF_EINVAL, "rope index: image placeholder run at index %d has no image left",
                                  i);
            img_at = v + 1;
            t = grid[v][0];
        } else {
            if (video < 0 || group >= grid[video][0]) {
                v = next_visual(is_video, n_visuals, vid_at, 1);
                if (v < 0)
                    return qref__fail(err, QREF_EINVAL,
                                      "rope index: video placeholder run at index %d has no video left", i);
                vid_at = v + 1;
                video = v;
                group = 0;
                first_group = 1;
            }
            v = video;
            f = group++;
            last_group = group == grid[v][0];
            t = 1;                       /* one temporal patch per run */
        }
        const int gh = grid[v][1] / M, gw = grid[v][2] / M;
        const int64_t expect = (int64_t)t * gh * gw;
        if (run != expect)
            return qref__fail(err, QREF_EINVAL,
                              "rope index: %s %d (grid %d x %d x %d, merge %d) needs %lld placeholder tokens per %s, "
                              "found a run of %d at index %d", is_img ? "image" : "video", v, grid[v][0],
                              grid[v][1], grid[v][2], M, (long long)expect, is_img ? "image" : "temporal patch", run,
                              i);
        if (is_vid && first_group)
            block_start = cur;
        const int64_t s = is_vid && one_block ? block_start : cur;
        int k = i;
        for (int fr = 0; fr < t; fr++)
            for (int r = 0; r < gh; r++)
                for (int c = 0; c < gw; c++, k++) {
                    int64_t tix = is_vid ? s : cur + fr;
                    if (is_vid && one_block)
                        tix = s + f;
                    if (is_vid && per_token)
                        tix = s + (k - i);
                    pt[k] = tix;
                    ph[k] = s + r;
                    pw[k] = s + c;
                    const int64_t top = tix > s + r ? tix : s + r;
                    const int64_t top2 = top > s + c ? top : s + c;
                    if (top2 > max_pos)
                        max_pos = top2;
                }
        if (!(is_vid && one_block) || last_group)
            cur = (is_vid && one_block ? (cur > s + (gh > gw ? gh : gw) ? cur : s + (gh > gw ? gh : gw))
                                       : cur + (gh > gw ? gh : gw));
        between_groups = is_vid && !last_group;
        i = end;
    }
    const int used_img = next_visual(is_video, n_visuals, img_at, 0);
    const int used_vid = next_visual(is_video, n_visuals, vid_at, 1);
    if (used_img >= 0 || used_vid >= 0 || (video >= 0 && group != grid[video][0]))
        return qref__fail(err, QREF_EINVAL,
                          "rope index: the prompt's placeholder runs leave visual input %d unused (or a video's "
                          "temporal patches incomplete): runs and grids differ",
                          used_img >= 0 ? used_img : used_vid >= 0 ? used_vid : video);
    *delta = n > 0 ? max_pos + 1 - n : 0;
    return QREF_OK;
}
