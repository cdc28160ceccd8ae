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
 * Shape legend: n = prompt tokens.
 */
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
