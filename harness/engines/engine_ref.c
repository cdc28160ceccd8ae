/* SPDX-License-Identifier: MIT */
/*
 * The in-process reference engine: lc_engine (lc_engine.h) on top of the qref_ API.
 *
 *   prompt    = qref_prompt (images decoded here, vision tower run once, positions computed)
 *   sequence  = qref_cache
 *   snapshot  = a deep clone of a qref_cache
 *   batch     = qref_padded_* / qref_forward_batch
 *   step      = qref_step (continuous batching: one batched forward over live sequences)
 *   prefix    = the engine's prefix cache (prefix_cache.h): boundaries as deep clones
 *   taps      = qref_forward's hidden states, the prompt's merged embeddings, qref_rotary
 *
 * Every number leaves as double (exact for float). The planted bugs of engines/faults.h land
 * here: MODEL plants through the model's fault struct, CONFIG plants in the engine's copy of
 * the configuration, ENGINE plants in the sequence and snapshot handling below.
 *
 * Handles are indices into three slot tables (prompts, sequences, snapshots); a closed slot
 * is reused. Loaded checkpoints stay loaded (a pool keyed by directory) until the engine is
 * destroyed, so switching checkpoints between cases costs nothing after the first load.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_ref_vjp.h"
#include "faults.h"
#include "images.h"
#include "lc_engine.h"
#include "prefix_cache.h"
#include "qref.h"
#include "qref_faults.h"

#ifndef LC_VERSION
#define LC_VERSION "0"
#endif

/* ---------------------------------------------------------------- state */

typedef struct {
    int used;
    qref_prompt p;
    int vision_from;            /* images before it have no embedding rows */
    int rows_before;            /* placeholder rows of those images */
    int pad_to;                 /* batch layouts are at least this long (lc_prompt_in.pad_to) */
} ref_prompt;

typedef struct {
    int used;
    qref_cache c;
    int32_t last;               /* the last token the sequence took in (-1: none) */
    int refeed;                 /* refeed_last_token: restored, nothing fed since */
    int prefix_hit;             /* made by a prefix-cache hit (prefix_pos_from_offset) */
    int kept;                   /* slot_conv_kept: closed, its cache kept for the next open */
    int pending;                /* a verify awaits its accept */
} ref_seq;

typedef struct {
    int used;
    qref_cache c;               /* the deep copy; unused for a shallow (view) snapshot */
    int32_t last;
    int view_of;                /* shallow_snapshot: the live sequence it views, else -1 */
    int len;                    /* view: tokens at the snapshot */
    int64_t delta;
} ref_snap;

typedef struct {
    char *dir;
    qref_model m;
} ref_loaded;

typedef struct {
    lc_fault_set faults;
    qref_faults qf;
    int any_model_fault;
    qref_vjp_faults vf;         /* VJP plants: the vjp operation's backward passes */
    ref_loaded *pool;
    int n_pool;
    int cur;                    /* index into pool, -1 before the first load */
    qref_model m;               /* shallow copy of the current model: faults and config plants */
    ref_prompt *prompts;
    int n_prompts;
    ref_seq *seqs;
    int n_seqs;
    ref_snap *snaps;
    int n_snaps;
    int64_t kept_delta;         /* image_delta_kept: engine-level state a reset clears */
    int64_t shared_delta;       /* shared_rope_delta: the one delta of every sequence */
    lc__pcache pc;              /* the prefix cache; a reset empties it */
} ref_engine;

static ref_engine *impl(lc_engine *e) { return e->impl; }

static int efail(lc_engine *e, lc_error *err, int code, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* One line: "engine logitcheck-reference: prefill: <what>". */
static int efail(lc_engine *e, lc_error *err, int code, const char *op, const char *fmt, ...)
{
    char what[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    (void)e;
    return lc_fail(err, code, "%s: %s", op, what);
}

/* A free slot of a table whose slots start with their `used` flag, growing the table by one
 * zeroed slot when every slot is taken; -1 on out of memory. */
static int slot_take(void **table, int *n, size_t size)
{
    for (int i = 0; i < *n; i++)
        if (!*(const int *)((const char *)*table + (size_t)i * size))
            return i;
    void *t = realloc(*table, (size_t)(*n + 1) * size);
    if (!t)
        return -1;
    memset((char *)t + (size_t)*n * size, 0, size);
    *table = t;
    return (*n)++;
}

#define TAKE(tab, n) slot_take((void **)&(tab), &(n), sizeof *(tab))

static ref_prompt *get_prompt(ref_engine *r, int h) { return h >= 0 && h < r->n_prompts && r->prompts[h].used ? &r->prompts[h] : NULL; }
static ref_seq *get_seq(ref_engine *r, int h) { return h >= 0 && h < r->n_seqs && r->seqs[h].used ? &r->seqs[h] : NULL; }
static ref_snap *get_snap(ref_engine *r, int h) { return h >= 0 && h < r->n_snaps && r->snaps[h].used ? &r->snaps[h] : NULL; }

static void release_all(ref_engine *r)
{
    for (int i = 0; i < r->n_prompts; i++)
        qref_prompt_free(&r->prompts[i].p);
    for (int i = 0; i < r->n_seqs; i++)
        qref_cache_free(&r->seqs[i].c);
    for (int i = 0; i < r->n_snaps; i++)
        qref_cache_free(&r->snaps[i].c);
    free(r->prompts);
    free(r->seqs);
    free(r->snaps);
    r->prompts = NULL;
    r->seqs = NULL;
    r->snaps = NULL;
    r->n_prompts = r->n_seqs = r->n_snaps = 0;
    r->kept_delta = 0;
    r->shared_delta = 0;
    lc__pcache_free(&r->pc);
}

static int have_model(lc_engine *e, const char *op, lc_error *err)
{
    if (impl(e)->cur < 0)
        return efail(e, err, LC_EINPUT, op, "no checkpoint loaded");
    return LC_OK;
}

static double *to_double(double *dst, const qref_real *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (double)src[i];
    return dst;
}

/* ---------------------------------------------------------------- load */

static int ref_load(lc_engine *e, const char *dir, lc_model_info *mi, lc_error *err)
{
    ref_engine *r = impl(e);
    int k = -1;
    for (int i = 0; i < r->n_pool; i++)
        if (!strcmp(r->pool[i].dir, dir))
            k = i;
    if (k < 0) {
        ref_loaded *p = realloc(r->pool, (size_t)(r->n_pool + 1) * sizeof *p);
        if (!p)
            return efail(e, err, LC_EINTERNAL, "load", "out of memory");
        r->pool = p;
        qref_error qe = {0};
        memset(&p[r->n_pool], 0, sizeof *p);
        if (qref_model_load(&p[r->n_pool].m, dir, &qe) != QREF_OK)
            return lc_fail(err, LC_EINPUT, "%s", qe.msg);
        p[r->n_pool].dir = strdup(dir);
        if (!p[r->n_pool].dir) {
            qref_model_free(&p[r->n_pool].m);
            return efail(e, err, LC_EINTERNAL, "load", "out of memory");
        }
        k = r->n_pool++;
    }
    release_all(r);
    r->cur = k;
    r->m = r->pool[k].m; /* shallow: shares the weights; config and faults are this engine's */
    r->m.faults = r->any_model_fault ? &r->qf : NULL;
    if (r->faults.on[LC_FAULT_RMS_EPS])
        r->m.cfg.rms_norm_eps = r->faults.value[LC_FAULT_RMS_EPS];
    if (r->faults.on[LC_FAULT_ROPE_THETA_SCALE])
        r->m.cfg.rope_theta *= r->faults.value[LC_FAULT_ROPE_THETA_SCALE];

    const qref_config *c = &r->pool[k].m.cfg; /* what the checkpoint declares */
    snprintf(mi->model_type, sizeof mi->model_type, "%s", c->model_type);
    mi->vocab_size = c->vocab_size;
    mi->hidden_size = c->hidden_size;
    mi->num_layers = c->num_layers;
    mi->has_vision = c->has_vision;
    mi->image_token_id = c->image_token_id;
    mi->video_token_id = c->video_token_id;
    mi->vision_start_token_id = c->vision_start_token_id;
    mi->vision_end_token_id = c->vision_end_token_id;
    mi->rotary_dim = c->rotary_dim;
    mi->rope_theta = c->rope_theta;
    memcpy(mi->mrope_section, c->mrope_section, sizeof mi->mrope_section);
    mi->mrope_interleaved = c->mrope_interleaved;
    return LC_OK;
}

/* ---------------------------------------------------------------- prompts */

/* One visual input of a prompt being opened: an image, or a video's sampled frames (indices
 * into the engine's decoded set). */
typedef struct {
    int seg;                    /* its segment */
    int is_video;
    int first, n;               /* decoded images [first, first + n) (n = 1 for an image) */
    int grid[3];
} ref_vis;

static int count_visuals(const lc_prompt_in *in)
{
    int n = 0;
    for (int s = 0; s < in->n_segs; s++)
        n += in->segs[s].type == LC_PSEG_IMAGE || in->segs[s].type == LC_PSEG_VIDEO;
    return n;
}

/* Builds p from the expanded ids: vision over the inputs from vision_from on, their rows
 * placed after `rows_before` zero rows (the inputs before run no vision). */
static int build_partial(lc_engine *e, qref_prompt *p, const int32_t *ids, int n, const qref_visual *vis,
                         int n_vis, const int (*grid)[3], int vision_from, int rows_before, lc_error *err)
{
    ref_engine *r = impl(e);
    const int H = r->m.cfg.hidden_size;
    qref_error qe = {0};
    int any_video = 0;
    memset(p, 0, sizeof *p);
    p->n = n;
    p->n_images = n_vis;
    p->ids = malloc((size_t)n * sizeof *p->ids);
    p->pos = malloc(3 * (size_t)n * sizeof *p->pos);
    p->grid = calloc((size_t)n_vis + 1, sizeof *p->grid);
    p->is_video = calloc((size_t)n_vis + 1, 1);
    if (!p->ids || !p->pos || !p->grid || !p->is_video)
        goto nomem;
    memcpy(p->ids, ids, (size_t)n * sizeof *ids);
    memcpy(p->grid, grid, (size_t)n_vis * sizeof *grid);
    for (int i = 0; i < n_vis; i++)
        any_video |= p->is_video[i] = (uint8_t)vis[i].is_video;
    if ((any_video ? qref_rope_index_mm(&r->m.cfg, ids, n, (const int(*)[3])p->grid, p->is_video, n_vis, p->pos,
                                        &p->delta, &qe)
                   : qref_rope_index(&r->m.cfg, ids, n, (const int(*)[3])p->grid, n_vis, p->pos, &p->delta, &qe)) !=
        QREF_OK)
        goto fail;
    int new_vis = n_vis - vision_from, n_new = 0;
    int (*g2)[3] = calloc((size_t)new_vis + 1, sizeof *g2);
    qref_real *rows = NULL;
    if (!g2)
        goto nomem;
    if (qref_visuals_embed(&r->m, vis + vision_from, new_vis, g2, &rows, &n_new, &qe) != QREF_OK) {
        free(g2);
        goto fail;
    }
    free(g2);
    p->n_embeds = rows_before + n_new;
    p->embeds = calloc(((size_t)p->n_embeds + 1) * H, sizeof *p->embeds);
    if (!p->embeds) {
        free(rows);
        goto nomem;
    }
    memcpy(p->embeds + (size_t)rows_before * H, rows, (size_t)n_new * H * sizeof *rows);
    free(rows);
    return LC_OK;
nomem:
    qref_prompt_free(p);
    return efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
fail:
    qref_prompt_free(p);
    return lc_fail(err, LC_EINPUT, "%s", qe.msg);
}

/* Samples every video segment's frames, then lists the PNG files to decode (an image's path,
 * each video's sampled frames) and the visual inputs over them. paths (room for every image
 * and frame) and vis (room for every visual input) are the caller's. */
static int plan_visuals(lc_engine *e, const lc_prompt_in *in, const char **paths, int *n_paths, ref_vis *vis,
                        lc_error *err)
{
    ref_engine *r = impl(e);
    qref_error qe = {0};
    int np = 0, nv = 0;
    for (int s = 0; s < in->n_segs; s++) {
        const lc_pseg *g = &in->segs[s];
        if (g->type == LC_PSEG_IMAGE) {
            vis[nv++] = (ref_vis){.seg = s, .first = np, .n = 1};
            paths[np++] = g->image;
        } else if (g->type == LC_PSEG_VIDEO) {
            if (g->n_frames < 1 || !g->frames || g->n_ts < 1 || !g->ts_len)
                return efail(e, err, LC_EINPUT, "prompt_open", "segment %d: a video needs frames and timestamp ids",
                             s);
            int *idx = malloc((size_t)g->n_frames * sizeof *idx), k = 0;
            double fps_used = 0;
            if (!idx)
                return efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
            if (qref_video_sample(&r->m.cfg, g->n_frames, g->fps, idx, &k, &fps_used, &qe) != QREF_OK) {
                free(idx);
                return lc_fail(err, LC_EINPUT, "%s: %s", g->frames[0], qe.msg);
            }
            if (r->faults.on[LC_FAULT_VIDEO_ODD_UNPADDED] && k % r->m.cfg.video.temporal_patch_size && k > 1)
                k -= k % r->m.cfg.video.temporal_patch_size; /* planted: the odd frame dropped */
            vis[nv++] = (ref_vis){.seg = s, .is_video = 1, .first = np, .n = k};
            for (int i = 0; i < k; i++)
                paths[np++] = g->frames[idx[i]];
            free(idx);
        }
    }
    *n_paths = np;
    return LC_OK;
}

/* The per-request options of a prompt (lc_prompt_in): pixel bounds resolved against the
 * checkpoint's processor, pad_to not negative. */
static int check_prompt_options(lc_engine *e, const lc_prompt_in *in, lc_error *err)
{
    qref_error qe = {0};
    long lo, hi;
    if ((in->image_min_pixels || in->image_max_pixels) &&
        qref_image_pixel_bounds(&impl(e)->m.cfg, in->image_min_pixels, in->image_max_pixels, &lo, &hi, &qe) != QREF_OK)
        return efail(e, err, LC_EINPUT, "prompt_open", "%s", qe.msg);
    if (in->pad_to < 0)
        return efail(e, err, LC_EINPUT, "prompt_open", "pad_to %d is negative", in->pad_to);
    return LC_OK;
}

static int ref_prompt_open(lc_engine *e, const lc_prompt_in *in, lc_prompt_info *out, lc_error *err)
{
    ref_engine *r = impl(e);
    int rc = have_model(e, "prompt_open", err);
    if (rc)
        return rc;
    const qref_config *cfg = &r->m.cfg;
    const int n_vis = count_visuals(in);
    int n_paths_max = 0, n_paths = 0, any_video = 0;
    for (int s = 0; s < in->n_segs; s++)
        n_paths_max += in->segs[s].type == LC_PSEG_IMAGE ? 1 : in->segs[s].type == LC_PSEG_VIDEO ? in->segs[s].n_frames : 0;
    lc_image_set imgs = {0};
    const char **paths = calloc((size_t)n_paths_max + 1, sizeof *paths);
    ref_vis *vis = calloc((size_t)n_vis + 1, sizeof *vis);
    qref_visual *qv = calloc((size_t)n_vis + 1, sizeof *qv);
    int (*grid)[3] = calloc((size_t)n_vis + 1, sizeof *grid);
    int32_t *ids = NULL;
    qref_error qe = {0};
    int n = 0, rows_before = 0;
    if (!paths || !vis || !qv || !grid) {
        rc = efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
        goto done;
    }
    if (in->vision_from < 0 || in->vision_from > n_vis) {
        rc = efail(e, err, LC_EINPUT, "prompt_open", "vision_from %d outside the %d images", in->vision_from, n_vis);
        goto done;
    }
    if ((rc = check_prompt_options(e, in, err)))
        goto done;
    if ((rc = plan_visuals(e, in, paths, &n_paths, vis, err)))
        goto done;
    if ((rc = lc_image_set_load(&imgs, paths, n_paths, err)))
        goto done;
    /* an image expands to vision_start, its placeholders, vision_end; a video to, per temporal
     * patch, its timestamp ids, vision_start, the patch's placeholders, vision_end */
    for (int k = 0; k < n_vis; k++) {
        const qref_image *im = &imgs.images[vis[k].first];
        const lc_pseg *g = &in->segs[vis[k].seg];
        if (vis[k].is_video) {
            any_video = 1;
            qv[k] = (qref_visual){.is_video = 1, .frames = im, .n_frames = vis[k].n};
            if (qref_video_grid(cfg, vis[k].n, im->width, im->height, grid[k], &qe) != QREF_OK) {
                rc = lc_fail(err, LC_EINPUT, "%s: %s", g->frames[0], qe.msg);
                goto done;
            }
            const int plant = r->faults.on[LC_FAULT_VIDEO_ODD_UNPADDED];
            if (g->n_ts != grid[k][0] && !(plant && g->n_ts > grid[k][0])) {
                rc = efail(e, err, LC_EINPUT, "prompt_open",
                           "video segment %d (%s ...): %d timestamp groups for %d temporal patches of %d sampled frames",
                           vis[k].seg, g->frames[0], g->n_ts, grid[k][0], vis[k].n);
                goto done;
            }
            for (int t = 0; t < grid[k][0]; t++)
                n += g->ts_len[t] + 2 + qref_image_tokens(cfg, grid[k]) / grid[k][0];
        } else {
            qv[k] = (qref_visual){.image = *im, .min_pixels = in->image_min_pixels, .max_pixels = in->image_max_pixels};
            if (qref_image_grid_px(cfg, im->width, im->height, in->image_min_pixels, in->image_max_pixels, grid[k],
                                   &qe) != QREF_OK) {
                rc = lc_fail(err, LC_EINPUT, "%s: %s", paths[vis[k].first], qe.msg);
                goto done;
            }
            n += qref_image_tokens(cfg, grid[k]) + 2;
        }
    }
    for (int s = 0; s < in->n_segs; s++)
        n += in->segs[s].type == LC_PSEG_IDS ? in->segs[s].n_ids : 0;
    if (in->pad_to && in->pad_to < n) {
        rc = efail(e, err, LC_EINPUT, "prompt_open", "pad_to %d is below the prompt's %d expanded tokens", in->pad_to,
                   n);
        goto done;
    }
    ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) {
        rc = efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
        goto done;
    }
    for (int s = 0, k = 0, o = 0; s < in->n_segs; s++) {
        const lc_pseg *g = &in->segs[s];
        if (g->type == LC_PSEG_IDS) {
            memcpy(ids + o, g->ids, (size_t)g->n_ids * sizeof *ids);
            o += g->n_ids;
            continue;
        }
        const int t = qref_image_tokens(cfg, grid[k]);
        if (k < in->vision_from)
            rows_before += t;
        const int groups = vis[k].is_video ? grid[k][0] : 1, per = t / groups;
        for (int f = 0, at = 0; f < groups; at += vis[k].is_video ? g->ts_len[f] : 0, f++) {
            if (vis[k].is_video) {
                memcpy(ids + o, g->ts_ids + at, (size_t)g->ts_len[f] * sizeof *ids);
                o += g->ts_len[f];
            }
            ids[o++] = cfg->vision_start_token_id;
            for (int i = 0; i < per; i++)
                ids[o++] = vis[k].is_video ? cfg->video_token_id : cfg->image_token_id;
            ids[o++] = cfg->vision_end_token_id;
        }
        k++;
    }
    int h = TAKE(r->prompts, r->n_prompts);
    if (h < 0) {
        rc = efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
        goto done;
    }
    ref_prompt *rp = &r->prompts[h];
    memset(rp, 0, sizeof *rp);
    if (in->vision_from == 0) {
        qref_status st;
        if (any_video || in->image_min_pixels || in->image_max_pixels) { /* the limits travel in qv */
            st = qref_prompt_build_mm(&rp->p, &r->m, ids, n, qv, n_vis, &qe);
        } else {
            qref_image *only = calloc((size_t)n_vis + 1, sizeof *only); /* the image path as before */
            if (!only) {
                rc = efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
                goto done;
            }
            for (int k = 0; k < n_vis; k++)
                only[k] = qv[k].image;
            st = qref_prompt_build(&rp->p, &r->m, ids, n, only, n_vis, &qe);
            free(only);
        }
        if (st != QREF_OK) {
            rc = lc_fail(err, LC_EINPUT, "%s", qe.msg);
            goto done;
        }
    } else if ((rc = build_partial(e, &rp->p, ids, n, qv, n_vis, (const int(*)[3])grid, in->vision_from, rows_before,
                                   err))) {
        goto done;
    }
    rp->used = 1;
    rp->vision_from = in->vision_from;
    rp->rows_before = rows_before;
    rp->pad_to = in->pad_to;
    const qref_prompt *p = &rp->p;
    out->handle = h;
    out->n = p->n;
    out->rope_delta = p->delta;
    out->n_images = p->n_images;
    out->ids = malloc((size_t)p->n * sizeof *out->ids);
    out->pos = malloc(3 * (size_t)p->n * sizeof *out->pos);
    out->grid = p->n_images ? malloc((size_t)p->n_images * sizeof *out->grid) : NULL;
    if (!out->ids || !out->pos || (p->n_images && !out->grid)) {
        lc_prompt_info_free(out);
        qref_prompt_free(&rp->p);
        rp->used = 0;
        rc = efail(e, err, LC_EINTERNAL, "prompt_open", "out of memory");
        goto done;
    }
    memcpy(out->ids, p->ids, (size_t)p->n * sizeof *out->ids);
    memcpy(out->pos, p->pos, 3 * (size_t)p->n * sizeof *out->pos);
    if (p->n_images)
        memcpy(out->grid, p->grid, (size_t)p->n_images * sizeof *out->grid);
done:
    free(ids);
    free(paths);
    free(vis);
    free(qv);
    free(grid);
    lc_image_set_free(&imgs);
    return rc;
}

static void ref_prompt_close(lc_engine *e, int h)
{
    ref_prompt *p = get_prompt(impl(e), h);
    if (p) {
        qref_prompt_free(&p->p);
        p->used = 0;
    }
}

/* ---------------------------------------------------------------- sequences */

static int ref_seq_open(lc_engine *e, int *seq, lc_error *err)
{
    ref_engine *r = impl(e);
    int rc = have_model(e, "seq_open", err);
    if (rc)
        return rc;
    int h = TAKE(r->seqs, r->n_seqs);
    qref_error qe = {0};
    if (h < 0)
        return efail(e, err, LC_EINTERNAL, "seq_open", "out of memory");
    ref_seq *s = &r->seqs[h];
    if (s->kept) {
        /* planted: the slot's old cache is emptied for the new sequence, its conv state is not */
        s->c.len = 0;
        s->c.rope_delta = 0;
        for (int l = 0; l < s->c.num_layers; l++)
            if (s->c.rec[l])
                memset(s->c.rec[l], 0, (size_t)s->c.rec_size * sizeof *s->c.rec[l]);
        qref_cache kept = s->c;
        memset(s, 0, sizeof *s);
        s->c = kept;
    } else {
        memset(s, 0, sizeof *s);
        if (qref_cache_init(&s->c, &r->m, &qe) != QREF_OK)
            return lc_fail(err, LC_EINTERNAL, "seq_open: %s", qe.msg);
    }
    r->seqs[h].used = 1;
    r->seqs[h].last = -1;
    *seq = h;
    return LC_OK;
}

static void ref_seq_close(lc_engine *e, int h)
{
    ref_seq *s = get_seq(impl(e), h);
    if (s) {
        s->used = 0;
        s->kept = impl(e)->faults.on[LC_FAULT_SLOT_CONV_KEPT];
        if (!s->kept)
            qref_cache_free(&s->c);
    }
}

/* A free sequence slot for a sequence made from a copy (restore, prefix hit): a cache kept in
 * the slot (slot_conv_kept) is released first. -1 when out of memory. */
static int seq_take_fresh(ref_engine *r)
{
    int h = TAKE(r->seqs, r->n_seqs);
    if (h >= 0) {
        qref_cache_free(&r->seqs[h].c);
        memset(&r->seqs[h], 0, sizeof r->seqs[h]);
    }
    return h;
}

static int placeholders(const qref_config *cfg, const int32_t *ids, int n)
{
    int k = 0;
    for (int i = 0; cfg->has_vision && i < n; i++)
        k += qref_is_placeholder(cfg, ids[i]);
    return k;
}

/* Positions (3, n) of prompt tokens [from, from + n), from the prompt; returns the rope delta
 * the sequence takes from it. Planted (prefix_pos_from_offset): after a prefix hit, text
 * positions from the cache's offset and no delta. */
static int64_t prompt_positions(const ref_engine *r, const ref_seq *s, const qref_prompt *p, int from, int n,
                                int64_t *pos)
{
    const int from_offset = s->prefix_hit && r->faults.on[LC_FAULT_PREFIX_POS_FROM_OFFSET];
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < n; i++)
            pos[(size_t)a * n + i] = from_offset ? (int64_t)(from + i) : p->pos[(size_t)a * p->n + from + i];
    return from_offset ? 0 : p->delta;
}

static int ref_prefill(lc_engine *e, int seq, int prompt, int from, int to, const lc_prefill_out *out, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    ref_prompt *rp = get_prompt(r, prompt);
    const qref_config *cfg = &r->m.cfg;
    if (!s || !rp)
        return efail(e, err, LC_EINPUT, "prefill", "no %s %d", s ? "prompt" : "sequence", s ? prompt : seq);
    const qref_prompt *p = &rp->p;
    if (from < 0 || to > p->n || from >= to)
        return efail(e, err, LC_EINPUT, "prefill", "span [%d, %d) outside the prompt of %d tokens", from, to, p->n);
    if (s->c.len != from)
        return efail(e, err, LC_EINPUT, "prefill", "the sequence holds %d tokens, the span starts at %d", s->c.len,
                     from);
    const int n = to - from, V = cfg->vocab_size, H = cfg->hidden_size, NL = cfg->num_layers;
    const int e0 = placeholders(cfg, p->ids, from), k = placeholders(cfg, p->ids + from, n);
    if (k && e0 < rp->rows_before)
        return efail(e, err, LC_EINPUT, "prefill", "span [%d, %d) covers an image that ran no vision (vision_from %d)",
                     from, to, rp->vision_from);
    const int want = out && out->logits && out->sel != LC_LOGITS_NONE;
    qref_real *lg = want ? malloc((size_t)n * V * sizeof *lg) : NULL;
    qref_real *hd = out && out->hidden ? malloc((size_t)(NL + 1) * n * H * sizeof *hd) : NULL;
    qref_real *fh = out && out->final_hidden ? malloc((size_t)n * H * sizeof *fh) : NULL;
    int64_t *pos = malloc(3 * (size_t)n * sizeof *pos);
    int rc = LC_OK;
    if ((want && !lg) || (out && out->hidden && !hd) || (out && out->final_hidden && !fh) || !pos) {
        rc = efail(e, err, LC_EINTERNAL, "prefill", "out of memory for %d tokens", n);
        goto done;
    }
    s->c.rope_delta = prompt_positions(r, s, p, from, n, pos);
    qref_tokens in = {.ids = p->ids + from,
                      .n = n,
                      .pos = pos,
                      .embeds = k ? p->embeds + (size_t)e0 * H : NULL,
                      .n_embeds = k,
                      .gdn_mode = out ? (int)out->gdn_mode : QREF_GDN_AUTO,
                      .gdn_chunk = out ? out->gdn_chunk : 0};
    qref_outputs o = {.logits = lg, .hidden = hd, .final_hidden = fh};
    qref_error qe = {0};
    if (qref_forward(&r->m, &s->c, &in, &o, &qe) != QREF_OK) {
        rc = lc_fail(err, LC_EINPUT, "prefill: %s", qe.msg);
        goto done;
    }
    if (r->faults.on[LC_FAULT_STALE_ROPE_DELTA])
        s->c.rope_delta = 0;
    if (r->faults.on[LC_FAULT_IMAGE_DELTA_KEPT]) { /* planted: the delta lives in the engine */
        if (p->n_images)
            r->kept_delta = p->delta;
        else
            s->c.rope_delta = r->kept_delta;
    }
    s->last = p->ids[to - 1];
    s->refeed = 0;
    if (from == 0)
        r->shared_delta = p->delta;
    if (want && out->sel == LC_LOGITS_ALL)
        to_double(out->logits, lg, (size_t)n * V);
    else if (want)
        to_double(out->logits, lg + (size_t)(n - 1) * V, (size_t)V);
    if (hd)
        to_double(out->hidden, hd, (size_t)(NL + 1) * n * H);
    if (fh)
        to_double(out->final_hidden, fh, (size_t)n * H);
done:
    free(lg);
    free(hd);
    free(fh);
    free(pos);
    return rc;
}

/* One token through the cache; logits (V) as qref_real into lg, or NULL; the final norm's
 * output (H) into fh, or NULL. */
static int feed(ref_engine *r, ref_seq *s, int32_t token, qref_real *lg, qref_real *fh, qref_error *qe)
{
    qref_tokens in = {.ids = &token, .n = 1};
    if (r->faults.on[LC_FAULT_SHARED_ROPE_DELTA]) /* planted: the engine's one delta */
        s->c.rope_delta = r->shared_delta;
    qref_outputs o = {.logits = lg, .final_hidden = fh};
    if (qref_forward(&r->m, &s->c, &in, &o, qe) != QREF_OK)
        return -1;
    s->last = token;
    return 0;
}

/* decode, and decode_final with the final norm's output (H) into final_hidden. */
static int decode_into(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    if (!s)
        return efail(e, err, LC_EINPUT, "decode", "no sequence %d", seq);
    const int V = r->m.cfg.vocab_size, H = r->m.cfg.hidden_size;
    qref_real *lg = logits ? malloc((size_t)V * sizeof *lg) : NULL;
    qref_real *fh = final_hidden ? malloc((size_t)H * sizeof *fh) : NULL;
    qref_error qe = {0};
    int rc = LC_OK;
    if ((logits && !lg) || (final_hidden && !fh)) {
        free(lg);
        free(fh);
        return efail(e, err, LC_EINTERNAL, "decode", "out of memory");
    }
    /* planted: a restored sequence takes its last token in again before the new one */
    if (s->refeed && s->last >= 0 && feed(r, s, s->last, NULL, NULL, &qe))
        rc = lc_fail(err, LC_EINPUT, "decode: %s", qe.msg);
    s->refeed = 0;
    if (!rc && feed(r, s, token, lg, fh, &qe))
        rc = lc_fail(err, LC_EINPUT, "decode: %s", qe.msg);
    if (!rc && logits)
        to_double(logits, lg, (size_t)V);
    if (!rc && final_hidden)
        to_double(final_hidden, fh, (size_t)H);
    free(lg);
    free(fh);
    return rc;
}

static int ref_decode(lc_engine *e, int seq, int32_t token, double *logits, lc_error *err)
{
    return decode_into(e, seq, token, logits, NULL, err);
}

static int ref_decode_final(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden,
                            lc_error *err)
{
    return decode_into(e, seq, token, logits, final_hidden, err);
}

/* ---------------------------------------------------------------- snapshots */

static int ref_snapshot(lc_engine *e, int seq, int *snap, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    if (!s)
        return efail(e, err, LC_EINPUT, "snapshot", "no sequence %d", seq);
    int h = TAKE(r->snaps, r->n_snaps);
    if (h < 0)
        return efail(e, err, LC_EINTERNAL, "snapshot", "out of memory");
    ref_snap *sn = &r->snaps[h];
    memset(sn, 0, sizeof *sn);
    sn->last = s->last;
    sn->view_of = -1;
    sn->len = s->c.len;
    sn->delta = s->c.rope_delta;
    if (s->pending)
        return efail(e, err, LC_EINPUT, "snapshot", "sequence %d: a verify awaits its accept", seq);
    if (r->faults.on[LC_FAULT_SHALLOW_SNAPSHOT]) {
        sn->view_of = seq; /* planted: no copy, the live sequence's memory */
    } else {
        qref_error qe = {0};
        if (qref_cache_clone(&sn->c, &s->c, &qe) != QREF_OK)
            return lc_fail(err, LC_EINTERNAL, "snapshot: %s", qe.msg);
        if (r->faults.on[LC_FAULT_SPEC_SNAPSHOT_AFTER_VERIFY])
            qref__fault_verify_end_state(&sn->c, &s->c); /* planted: the end of the verify */
    }
    sn->used = 1;
    *snap = h;
    return LC_OK;
}

static int ref_restore(lc_engine *e, int snap, int *seq, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_snap *sn = get_snap(r, snap);
    if (!sn)
        return efail(e, err, LC_EINPUT, "restore", "no snapshot %d", snap);
    const qref_cache *src = &sn->c;
    if (sn->view_of >= 0) {
        ref_seq *live = get_seq(r, sn->view_of);
        if (!live)
            return efail(e, err, LC_EENGINE, "restore", "snapshot %d viewed sequence %d, which is closed", snap,
                         sn->view_of);
        src = &live->c;
    }
    int h = seq_take_fresh(r);
    if (h < 0)
        return efail(e, err, LC_EINTERNAL, "restore", "out of memory");
    sn = get_snap(r, snap);
    if (sn->view_of >= 0)
        src = &r->seqs[sn->view_of].c; /* the table may have moved */
    ref_seq *s = &r->seqs[h];
    qref_error qe = {0};
    if (qref_cache_clone(&s->c, src, &qe) != QREF_OK)
        return lc_fail(err, LC_EINTERNAL, "restore: %s", qe.msg);
    /* a view sees the live memory as it is now, with the length and delta it had */
    s->c.len = sn->len;
    s->c.rope_delta = sn->delta;
    s->used = 1;
    s->last = sn->last;
    s->refeed = r->faults.on[LC_FAULT_REFEED_LAST_TOKEN];
    *seq = h;
    return LC_OK;
}

static void ref_snap_release(lc_engine *e, int h)
{
    ref_snap *sn = get_snap(impl(e), h);
    if (sn) {
        qref_cache_free(&sn->c);
        sn->used = 0;
    }
}

/* ---------------------------------------------------------------- batches */

/* batch_prefill, and batch_prefill_final with the final norm's output (B, to - from, H). */
static int batch_prefill_into(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                              double *logits, double *final_hidden, lc_error *err)
{
    ref_engine *r = impl(e);
    const int V = r->m.cfg.vocab_size, H = r->m.cfg.hidden_size;
    qref_real *fh = NULL;
    qref_prompt *rows = calloc((size_t)B + 1, sizeof *rows);
    qref_cache **caches = calloc((size_t)B + 1, sizeof *caches);
    qref_padded pad = {0};
    qref_real *lg = NULL;
    qref_error qe = {0};
    int rc = LC_OK, min_len = 0;
    if (!rows || !caches) {
        rc = efail(e, err, LC_EINTERNAL, "batch_prefill", "out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++) {
        ref_seq *s = get_seq(r, seqs[b]);
        ref_prompt *rp = get_prompt(r, prompts[b]);
        if (!s || !rp) {
            rc = efail(e, err, LC_EINPUT, "batch_prefill", "row %d: no %s", b, s ? "prompt" : "sequence");
            goto done;
        }
        if (rp->vision_from > 0) {
            rc = efail(e, err, LC_EINPUT, "batch_prefill", "row %d: a prompt with vision_from > 0", b);
            goto done;
        }
        rows[b] = rp->p; /* views: the padded layout borrows them */
        caches[b] = &s->c;
        min_len = rp->pad_to > min_len ? rp->pad_to : min_len;
    }
    if (qref_padded_build_to(&pad, rows, B, 0, min_len, &qe) != QREF_OK) {
        rc = lc_fail(err, LC_EINPUT, "batch_prefill: %s", qe.msg);
        goto done;
    }
    if (from < 0 || to > pad.L || from >= to) {
        rc = efail(e, err, LC_EINPUT, "batch_prefill", "columns [%d, %d) outside the batch of %d", from, to, pad.L);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        int held = from - (pad.L - rows[b].n);
        held = held > 0 ? held : 0;
        if (r->faults.on[LC_FAULT_PAD_INTO_ATTENTION])
            held = from; /* planted: the pads went into the cache too */
        if (caches[b]->len != held) {
            rc = efail(e, err, LC_EINPUT, "batch_prefill", "row %d holds %d tokens, expected %d before column %d", b,
                       caches[b]->len, held, from);
            goto done;
        }
    }
    lg = logits ? malloc((size_t)B * (to - from) * V * sizeof *lg) : NULL;
    fh = final_hidden ? malloc((size_t)B * (to - from) * H * sizeof *fh) : NULL;
    if ((logits && !lg) || (final_hidden && !fh)) {
        rc = efail(e, err, LC_EINTERNAL, "batch_prefill", "out of memory");
        goto done;
    }
    qref_outputs o = {.logits = lg, .final_hidden = fh};
    if (qref_padded_prefill_out(&r->m, caches, &pad, from, to, &o, &qe) != QREF_OK) {
        rc = lc_fail(err, LC_EINPUT, "batch_prefill: %s", qe.msg);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        ref_seq *s = get_seq(r, seqs[b]);
        if (r->faults.on[LC_FAULT_STALE_ROPE_DELTA])
            s->c.rope_delta = 0;
        int last = to - 1 - (pad.L - rows[b].n);
        if (last >= 0)
            s->last = rows[b].ids[last];
        s->refeed = 0;
    }
    if (logits)
        to_double(logits, lg, (size_t)B * (to - from) * V);
    if (final_hidden)
        to_double(final_hidden, fh, (size_t)B * (to - from) * H);
done:
    qref_padded_free(&pad);
    free(rows);
    free(caches);
    free(lg);
    free(fh);
    return rc;
}

static int ref_batch_prefill(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                             double *logits, lc_error *err)
{
    return batch_prefill_into(e, seqs, prompts, B, from, to, logits, NULL, err);
}

static int ref_batch_prefill_final(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                                   double *logits, double *final_hidden, lc_error *err)
{
    return batch_prefill_into(e, seqs, prompts, B, from, to, logits, final_hidden, err);
}

/* batch_decode, and batch_decode_final with the final norm's output (B, H). */
static int batch_decode_into(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                             double *final_hidden, lc_error *err)
{
    ref_engine *r = impl(e);
    const int V = r->m.cfg.vocab_size, H = r->m.cfg.hidden_size;
    qref_cache **caches = calloc((size_t)B + 1, sizeof *caches);
    qref_real *lg = logits ? malloc((size_t)B * V * sizeof *lg) : NULL;
    qref_real *fh = final_hidden ? malloc((size_t)B * H * sizeof *fh) : NULL;
    qref_error qe = {0};
    int rc = LC_OK;
    if (!caches || (logits && !lg) || (final_hidden && !fh)) {
        rc = efail(e, err, LC_EINTERNAL, "batch_decode", "out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++) {
        ref_seq *s = get_seq(r, seqs[b]);
        if (!s) {
            rc = efail(e, err, LC_EINPUT, "batch_decode", "row %d: no sequence %d", b, seqs[b]);
            goto done;
        }
        caches[b] = &s->c;
    }
    qref_batch in = {.B = B, .L = 1, .ids = tokens};
    qref_outputs o = {.logits = lg, .final_hidden = fh};
    if (qref_forward_batch(&r->m, caches, &in, &o, &qe) != QREF_OK) {
        rc = lc_fail(err, LC_EINPUT, "batch_decode: %s", qe.msg);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        get_seq(r, seqs[b])->last = tokens[b];
        get_seq(r, seqs[b])->refeed = 0;
    }
    if (logits)
        to_double(logits, lg, (size_t)B * V);
    if (final_hidden)
        to_double(final_hidden, fh, (size_t)B * H);
done:
    free(caches);
    free(lg);
    free(fh);
    return rc;
}

static int ref_batch_decode(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                            lc_error *err)
{
    return batch_decode_into(e, seqs, tokens, B, logits, NULL, err);
}

static int ref_batch_decode_final(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                                  double *final_hidden, lc_error *err)
{
    return batch_decode_into(e, seqs, tokens, B, logits, final_hidden, err);
}

/* ---------------------------------------------------------------- continuous batching */

/* One batched forward over live sequences (qref_step): prefill rows take their prompt's
 * positions and embedding rows for the span and their prompt's delta; decode rows their
 * cache's length plus their own delta. Rows are checked before anything runs. */
static int ref_step(lc_engine *e, const lc_step_row *rows, int B, double *logits, lc_error *err)
{
    ref_engine *r = impl(e);
    const qref_config *cfg = &r->m.cfg;
    const int V = cfg->vocab_size, H = cfg->hidden_size;
    int rc = have_model(e, "step", err);
    if (rc)
        return rc;
    if (B < 1)
        return efail(e, err, LC_EINPUT, "step", "no rows");
    qref_step_row *qr = calloc((size_t)B, sizeof *qr);
    int64_t **pos = calloc((size_t)B, sizeof *pos);
    int64_t *delta = calloc((size_t)B, sizeof *delta); /* prefill rows: the delta taken on success */
    int total = 0;
    qref_real *lg = NULL;
    qref_error qe = {0};
    if (!qr || !pos || !delta) {
        rc = efail(e, err, LC_EINTERNAL, "step", "out of memory for %d rows", B);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        const lc_step_row *w = &rows[b];
        ref_seq *s = get_seq(r, w->seq);
        if (!s) {
            rc = efail(e, err, LC_EINPUT, "step", "row %d: no sequence %d", b, w->seq);
            goto done;
        }
        for (int j = 0; j < b; j++)
            if (rows[j].seq == w->seq) {
                rc = efail(e, err, LC_EINPUT, "step", "rows %d and %d are both sequence %d", j, b, w->seq);
                goto done;
            }
        qr[b].cache = &s->c;
        if (w->prompt < 0) {
            qr[b].ids = &w->token;
            qr[b].n = 1;
            total += 1;
            continue;
        }
        ref_prompt *rp = get_prompt(r, w->prompt);
        if (!rp) {
            rc = efail(e, err, LC_EINPUT, "step", "row %d: no prompt %d", b, w->prompt);
            goto done;
        }
        const qref_prompt *p = &rp->p;
        if (w->from < 0 || w->to > p->n || w->from >= w->to || s->c.len != w->from) {
            rc = efail(e, err, LC_EINPUT, "step",
                       "row %d: span [%d, %d) of a prompt of %d tokens does not continue the sequence's %d tokens", b,
                       w->from, w->to, p->n, s->c.len);
            goto done;
        }
        const int n = w->to - w->from, e0 = placeholders(cfg, p->ids, w->from);
        const int k = placeholders(cfg, p->ids + w->from, n);
        if (k && e0 < rp->rows_before) {
            rc = efail(e, err, LC_EINPUT, "step", "row %d: span [%d, %d) covers an image that ran no vision", b,
                       w->from, w->to);
            goto done;
        }
        if (!(pos[b] = malloc(3 * (size_t)n * sizeof **pos))) {
            rc = efail(e, err, LC_EINTERNAL, "step", "out of memory");
            goto done;
        }
        qr[b].ids = p->ids + w->from;
        qr[b].n = n;
        qr[b].pos = pos[b];
        qr[b].embeds = k ? p->embeds + (size_t)e0 * H : NULL;
        qr[b].n_embeds = k;
        total += n;
    }
    /* every check passed: the prefill rows' positions, then one forward */
    int64_t shared = r->shared_delta;
    for (int b = 0; b < B; b++)
        if (rows[b].prompt >= 0) {
            const qref_prompt *p = &get_prompt(r, rows[b].prompt)->p;
            delta[b] = prompt_positions(r, get_seq(r, rows[b].seq), p, rows[b].from, qr[b].n, pos[b]);
            shared = rows[b].from == 0 ? p->delta : shared;
        }
    for (int b = 0; b < B; b++)
        if (rows[b].prompt < 0 && r->faults.on[LC_FAULT_SHARED_ROPE_DELTA])
            qr[b].cache->rope_delta = shared; /* planted: the engine's one delta, a joining row's */
    if (logits && !(lg = malloc((size_t)total * V * sizeof *lg))) {
        rc = efail(e, err, LC_EINTERNAL, "step", "out of memory for %d logits rows", total);
        goto done;
    }
    if (qref_step(&r->m, qr, B, lg, &qe) != QREF_OK) {
        rc = lc_fail(err, LC_EINPUT, "step: %s", qe.msg);
        goto done;
    }
    r->shared_delta = shared;
    for (int b = 0; b < B; b++) {
        ref_seq *s = get_seq(r, rows[b].seq);
        s->last = qr[b].ids[qr[b].n - 1];
        s->refeed = 0;
        if (rows[b].prompt >= 0)
            s->c.rope_delta = delta[b];
    }
    if (logits)
        to_double(logits, lg, (size_t)total * V);
done:
    for (int b = 0; pos && b < B; b++)
        free(pos[b]);
    free(pos);
    free(delta);
    free(qr);
    free(lg);
    return rc;
}

/* ---------------------------------------------------------------- prefix cache */

static int ref_prefix_store(lc_engine *e, int seq, int prompt, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    ref_prompt *rp = get_prompt(r, prompt);
    if (!s || !rp)
        return efail(e, err, LC_EINPUT, "prefix_store", "no %s %d", s ? "prompt" : "sequence", s ? prompt : seq);
    if (rp->vision_from > 0)
        return efail(e, err, LC_EINPUT, "prefix_store", "prompt %d has images without vision (vision_from %d)", prompt,
                     rp->vision_from);
    if (s->c.len < 1 || s->c.len > rp->p.n)
        return efail(e, err, LC_EINPUT, "prefix_store", "sequence %d holds %d tokens, prompt %d has %d", seq,
                     s->c.len, prompt, rp->p.n);
    uint64_t *keys = lc__pcache_keys(&r->m.cfg, &rp->p, s->c.len);
    qref_error qe = {0};
    int rc = LC_OK;
    if (!keys)
        return efail(e, err, LC_EINTERNAL, "prefix_store", "out of memory");
    if (lc__pcache_store(&r->pc, keys, &s->c, s->last, &qe) != QREF_OK)
        rc = lc_fail(err, LC_EINTERNAL, "prefix_store: %s", qe.msg);
    free(keys);
    return rc;
}

static int ref_prefix_lookup(lc_engine *e, int prompt, int *seq, int *reused, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_prompt *rp = get_prompt(r, prompt);
    if (!rp)
        return efail(e, err, LC_EINPUT, "prefix_lookup", "no prompt %d", prompt);
    if (rp->vision_from > 0)
        return efail(e, err, LC_EINPUT, "prefix_lookup", "prompt %d has images without vision (vision_from %d)",
                     prompt, rp->vision_from);
    uint64_t *keys = lc__pcache_keys(&r->m.cfg, &rp->p, rp->p.n);
    int h = keys ? seq_take_fresh(r) : -1;
    if (h < 0) {
        free(keys);
        return efail(e, err, LC_EINTERNAL, "prefix_lookup", "out of memory");
    }
    const int mode = r->faults.on[LC_FAULT_PREFIX_TRIM_KV_ONLY]    ? LC__PC_TRIM_KV_ONLY
                     : r->faults.on[LC_FAULT_PREFIX_LONGER_STATE] ? LC__PC_LONGER_STATE
                                                                  : LC__PC_CORRECT;
    const lc__pc_match m = lc__pcache_lookup(&r->pc, keys, rp->p.n, mode);
    free(keys);
    ref_seq *s = &r->seqs[h];
    qref_error qe = {0};
    qref_status st = m.entry >= 0 ? qref_cache_clone(&s->c, &r->pc.e[m.entry].c, &qe)
                                  : qref_cache_init(&s->c, &r->m, &qe);
    if (st != QREF_OK)
        return lc_fail(err, LC_EINTERNAL, "prefix_lookup: %s", qe.msg);
    s->used = 1;
    s->last = m.entry >= 0 ? r->pc.e[m.entry].last : -1;
    s->c.len = m.reused; /* the boundary's length (trim_kv_only: the KV cut back to the match) */
    s->prefix_hit = m.reused > 0;
    /* decode after an exact full hit runs at this prompt's positions */
    s->c.rope_delta = s->prefix_hit && r->faults.on[LC_FAULT_PREFIX_POS_FROM_OFFSET] ? 0 : rp->p.delta;
    *seq = h;
    *reused = m.reused;
    return LC_OK;
}

static int ref_prefix_stats(lc_engine *e, lc_prefix_stats *out, lc_error *err)
{
    (void)err;
    *out = impl(e)->pc.st;
    return LC_OK;
}

/* ---------------------------------------------------------------- taps */

/* For each GDN layer its conv then recurrent state, for each attention layer K then V. */
static int ref_state(lc_engine *e, int seq, lc_state *out, lc_error *err)
{
    ref_seq *s = get_seq(impl(e), seq);
    if (!s)
        return efail(e, err, LC_EINPUT, "state", "no sequence %d", seq);
    const qref_cache *c = &s->c;
    size_t total = 0;
    for (int l = 0; l < c->num_layers; l++)
        total += c->conv[l] ? (size_t)c->conv_len * c->conv_channels + c->rec_size : 2 * (size_t)c->len * c->kv_row;
    out->data = malloc((total ? total : 1) * sizeof *out->data);
    if (!out->data)
        return efail(e, err, LC_EINTERNAL, "state", "out of memory");
    double *p = out->data;
    for (int l = 0; l < c->num_layers; l++) {
        if (c->conv[l]) {
            size_t cn = (size_t)c->conv_len * c->conv_channels;
            p = to_double(p, c->conv[l], cn) + cn;
            p = to_double(p, c->rec[l], (size_t)c->rec_size) + c->rec_size;
        } else {
            size_t kn = (size_t)c->len * c->kv_row;
            p = to_double(p, c->k[l], kn) + kn;
            p = to_double(p, c->v[l], kn) + kn;
        }
    }
    out->n = total;
    out->len = c->len;
    return LC_OK;
}

static int ref_vision(lc_engine *e, int prompt, double **embeds, int *rows, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_prompt *rp = get_prompt(r, prompt);
    if (!rp)
        return efail(e, err, LC_EINPUT, "vision", "no prompt %d", prompt);
    const int H = r->m.cfg.hidden_size, n = rp->p.n_embeds - rp->rows_before;
    *embeds = malloc(((size_t)n * H + 1) * sizeof **embeds);
    if (!*embeds)
        return efail(e, err, LC_EINTERNAL, "vision", "out of memory");
    to_double(*embeds, rp->p.embeds + (size_t)rp->rows_before * H, (size_t)n * H);
    *rows = n;
    return LC_OK;
}

static int ref_rope(lc_engine *e, const int64_t *pos, int n, double *out, lc_error *err)
{
    ref_engine *r = impl(e);
    int rc = have_model(e, "rope", err);
    if (rc)
        return rc;
    const int half = r->m.cfg.rotary_dim / 2;
    qref_real *cs = malloc(((size_t)n * half * 2 + 1) * sizeof *cs);
    if (!cs)
        return efail(e, err, LC_EINTERNAL, "rope", "out of memory");
    qref_rotary(&r->m, pos, n, cs, cs + (size_t)n * half);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            out[(size_t)i * 2 * half + j] = (double)cs[(size_t)i * half + j];
            out[(size_t)i * 2 * half + half + j] = (double)cs[(size_t)n * half + (size_t)i * half + j];
        }
    free(cs);
    return LC_OK;
}

/* ---------------------------------------------------------------- gradients */

static int ref_vjp(lc_engine *e, const lc_vjp_in *in, lc_vjp_result *want, int n_want, lc_error *err)
{
    ref_engine *r = impl(e);
    int rc = have_model(e, "vjp", err);
    if (rc)
        return rc;
    return lc__ref_vjp(&r->m, &r->vf, in, want, n_want, err);
}

/* ---------------------------------------------------------------- speculative decoding */

static int ref_verify(lc_engine *e, int seq, const int32_t *tokens, int n, double *logits, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    if (!s)
        return efail(e, err, LC_EINPUT, "verify", "no sequence %d", seq);
    if (s->pending)
        return efail(e, err, LC_EINPUT, "verify", "sequence %d: the previous verify awaits its accept", seq);
    const int V = r->m.cfg.vocab_size;
    qref_real *lg = malloc(((size_t)(n > 0 ? n : 1) * V) * sizeof *lg);
    if (!lg)
        return efail(e, err, LC_EINTERNAL, "verify", "out of memory");
    qref_error qe = {0};
    int rc = LC_OK;
    if (qref_verify(&r->m, &s->c, tokens, n, lg, &qe) != QREF_OK)
        rc = lc_fail(err, LC_EINPUT, "verify: %s", qe.msg);
    else {
        s->pending = 1;
        s->refeed = 0;
        if (logits)
            to_double(logits, lg, (size_t)n * V);
    }
    free(lg);
    return rc;
}

static int ref_batch_verify(lc_engine *e, const int *seqs, int B, const int32_t *tokens, const int *counts,
                            double *logits, lc_error *err)
{
    ref_engine *r = impl(e);
    if (B < 1)
        return efail(e, err, LC_EINPUT, "batch_verify", "an empty batch");
    qref_cache **caches = calloc((size_t)B, sizeof *caches);
    const int32_t **ids = calloc((size_t)B, sizeof *ids);
    int L = 0, rc = LC_OK;
    size_t at = 0;
    for (int b = 0; b < B && !rc && caches && ids; b++) {
        ref_seq *s = get_seq(r, seqs[b]);
        if (!s)
            rc = efail(e, err, LC_EINPUT, "batch_verify", "row %d: no sequence %d", b, seqs[b]);
        else if (s->pending)
            rc = efail(e, err, LC_EINPUT, "batch_verify", "row %d: sequence %d awaits its accept", b, seqs[b]);
        else if (counts[b] < 1)
            rc = efail(e, err, LC_EINPUT, "batch_verify", "row %d: %d tokens", b, counts[b]);
        else {
            caches[b] = &s->c;
            ids[b] = tokens + at;
            at += (size_t)counts[b];
            L = counts[b] > L ? counts[b] : L;
        }
    }
    const int V = r->m.cfg.vocab_size;
    qref_real *lg = !rc && caches && ids ? malloc((size_t)B * L * V * sizeof *lg) : NULL;
    if (!rc && !lg)
        rc = efail(e, err, LC_EINTERNAL, "batch_verify", "out of memory");
    qref_error qe = {0};
    if (!rc && qref_verify_batch(&r->m, caches, ids, counts, B, lg, &qe) != QREF_OK)
        rc = lc_fail(err, LC_EINPUT, "batch_verify: %s", qe.msg);
    for (int b = 0; !rc && b < B; b++) {
        ref_seq *s = get_seq(r, seqs[b]);
        s->pending = 1;
        s->refeed = 0;
    }
    if (!rc && logits)
        to_double(logits, lg, (size_t)B * L * V);
    free(lg);
    free(caches);
    free(ids);
    return rc;
}

static int ref_accept(lc_engine *e, int seq, int accepted, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    if (!s)
        return efail(e, err, LC_EINPUT, "accept", "no sequence %d", seq);
    qref_error qe = {0};
    if (qref_verify_accept(&r->m, &s->c, accepted, &qe) != QREF_OK)
        return lc_fail(err, LC_EINPUT, "accept: %s", qe.msg);
    s->pending = 0;
    s->last = -1; /* the engine does not keep verify tokens; nothing is refed after accept */
    return LC_OK;
}

static int ref_draft(lc_engine *e, int seq, int32_t next, int k, int32_t *drafts, double *logits, lc_error *err)
{
    ref_engine *r = impl(e);
    ref_seq *s = get_seq(r, seq);
    if (!s)
        return efail(e, err, LC_EINPUT, "draft", "no sequence %d", seq);
    if (s->pending)
        return efail(e, err, LC_EINPUT, "draft", "sequence %d: a verify awaits its accept", seq);
    const int V = r->m.cfg.vocab_size;
    qref_real *lg = logits ? malloc((size_t)(k > 0 ? k : 1) * V * sizeof *lg) : NULL;
    if (logits && !lg)
        return efail(e, err, LC_EINTERNAL, "draft", "out of memory");
    qref_error qe = {0};
    int rc = LC_OK;
    if (qref_mtp_draft(&r->m, &s->c, next, k, drafts, lg, &qe) != QREF_OK)
        rc = lc_fail(err, LC_EINPUT, "draft: %s", qe.msg);
    else if (logits)
        to_double(logits, lg, (size_t)k * V);
    free(lg);
    return rc;
}

/* ---------------------------------------------------------------- life cycle */

static int ref_reset(lc_engine *e, lc_error *err)
{
    (void)err;
    release_all(impl(e));
    return LC_OK;
}

static void ref_destroy(lc_engine *e)
{
    ref_engine *r = impl(e);
    if (r) {
        release_all(r);
        for (int i = 0; i < r->n_pool; i++) {
            free(r->pool[i].dir);
            qref_model_free(&r->pool[i].m);
        }
        free(r->pool);
        free(r);
    }
    free(e);
}

static const lc_engine_ops ref_ops = {
    .load = ref_load,
    .prompt_open = ref_prompt_open,
    .prompt_close = ref_prompt_close,
    .seq_open = ref_seq_open,
    .seq_close = ref_seq_close,
    .prefill = ref_prefill,
    .decode = ref_decode,
    .snapshot = ref_snapshot,
    .restore = ref_restore,
    .snap_release = ref_snap_release,
    .batch_prefill = ref_batch_prefill,
    .batch_decode = ref_batch_decode,
    .state = ref_state,
    .vision = ref_vision,
    .rope = ref_rope,
    .vjp = ref_vjp,
    .restart = ref_reset, /* nothing outlives a failure in process but the handles */
    .destroy = ref_destroy,
    .reset = ref_reset,
    .step = ref_step,
    .prefix_store = ref_prefix_store,
    .prefix_lookup = ref_prefix_lookup,
    .prefix_stats = ref_prefix_stats,
    .verify = ref_verify,
    .accept = ref_accept,
    .draft = ref_draft,
    .batch_verify = ref_batch_verify,
    .decode_final = ref_decode_final,
    .batch_prefill_final = ref_batch_prefill_final,
    .batch_decode_final = ref_batch_decode_final,
};

int lc_engine_ref_new(lc_engine **out, const struct lc_fault_set *faults, lc_error *err)
{
    lc_engine *e = calloc(1, sizeof *e);
    ref_engine *r = calloc(1, sizeof *r);
    *out = NULL;
    if (!e || !r) {
        free(e);
        free(r);
        return lc_fail(err, LC_EINTERNAL, "out of memory for the reference engine");
    }
    r->cur = -1;
    if (faults)
        r->faults = *faults;
    const lc_fault_set *f = &r->faults;
    r->qf.pad_into_conv = f->on[LC_FAULT_PAD_INTO_CONV];
    r->qf.pad_into_gdn = f->on[LC_FAULT_PAD_INTO_GDN];
    r->qf.pad_into_attention = f->on[LC_FAULT_PAD_INTO_ATTENTION];
    r->qf.row0_delta = f->on[LC_FAULT_ROW0_DELTA];
    r->qf.rope_pairs_adjacent = f->on[LC_FAULT_ROPE_PAIRS_ADJACENT];
    r->qf.input_norm_eps_scale = f->on[LC_FAULT_INPUT_NORM_EPS_X10] ? 10.0 : 0.0;
    r->qf.post_norm_eps_scale = f->on[LC_FAULT_POST_NORM_EPS_X10] ? 10.0 : 0.0;
    r->qf.final_norm_eps_scale = f->on[LC_FAULT_FINAL_NORM_EPS_X10] ? 10.0 : 0.0;
    r->qf.q_norm_eps_scale = f->on[LC_FAULT_Q_NORM_EPS_X10] ? 10.0 : 0.0;
    r->qf.k_norm_eps_scale = f->on[LC_FAULT_K_NORM_EPS_X10] ? 10.0 : 0.0;
    r->qf.gdn_norm_eps_scale = f->on[LC_FAULT_GDN_NORM_EPS_X10] ? 10.0 : 0.0;
    r->qf.moe_no_renorm = f->on[LC_FAULT_MOE_NO_RENORM];
    r->qf.video_one_block = f->on[LC_FAULT_VIDEO_ONE_BLOCK];
    r->qf.video_ts_no_advance = f->on[LC_FAULT_VIDEO_TS_NO_ADVANCE];
    r->qf.video_temporal_per_token = f->on[LC_FAULT_VIDEO_TEMPORAL_PER_TOKEN];
    r->qf.spec_keep_rec = f->on[LC_FAULT_SPEC_COMMIT_REJECTED];
    r->qf.spec_keep_conv = f->on[LC_FAULT_SPEC_CONV_KEPT];
    r->qf.spec_accept_plus1 = f->on[LC_FAULT_SPEC_ACCEPT_OFF_BY_ONE];
    r->qf.mtp_concat_swapped = f->on[LC_FAULT_MTP_CONCAT_SWAPPED];
    r->qf.mtp_prenorm_hidden = f->on[LC_FAULT_MTP_PRENORM_HIDDEN];
    r->vf.gdn_no_decay = f->on[LC_FAULT_VJP_GDN_NO_DECAY];
    r->vf.beta_no_sigmoid = f->on[LC_FAULT_VJP_BETA_NO_SIGMOID];
    r->vf.conv_state_dropped = f->on[LC_FAULT_VJP_CONV_STATE_DROPPED];
    r->vf.rope_wrong_way = f->on[LC_FAULT_VJP_ROPE_WRONG_WAY];
    r->vf.l2norm_no_eps = f->on[LC_FAULT_VJP_L2NORM_NO_EPS];
    /* MODEL plants reach the forward pass through qf; the rest act here */
#define LC__FAULT_IS_MODEL_MODEL 1
#define LC__FAULT_IS_MODEL_ENGINE 0
#define LC__FAULT_IS_MODEL_CONFIG 0
#define LC__FAULT_IS_MODEL_VJP 0
#define LC__FAULT_MODEL_ON(id, name, arg, where, help) r->any_model_fault |= LC__FAULT_IS_MODEL_##where && f->on[LC_FAULT_##id];
    LC_FAULT_MAP(LC__FAULT_MODEL_ON)
#undef LC__FAULT_MODEL_ON
    e->ops = &ref_ops;
    e->impl = r;
    lc_engine_info *i = &e->info;
    snprintf(i->name, sizeof i->name, "logitcheck-reference");
    snprintf(i->version, sizeof i->version, "%s", LC_VERSION);
#if defined(QREF_PRECISION_F64)
    i->precision = LC_EPREC_F64;
#else
    i->precision = LC_EPREC_F32;
#endif
    size_t off = (size_t)snprintf(i->detail, sizeof i->detail, "in process, %s build", QREF_PRECISION_NAME);
    for (int k = 0; k < LC_FAULT_COUNT && off < sizeof i->detail; k++)
        if (f->on[k])
            off += (size_t)snprintf(i->detail + off, sizeof i->detail - off, ", planted %s", lc_fault_name((lc_fault)k));
    for (int c = 0; c < LC_CAP_COUNT; c++)
        i->caps |= 1u << c;
    *out = e;
    return LC_OK;
}
