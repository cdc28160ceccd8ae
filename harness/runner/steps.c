/* SPDX-License-Identifier: MIT */
/* Engine steps written once (see runner_internal.h): prompts, prefill on a chunk schedule,
 * the decode loop, greedy choice, taps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

enum { H_PROMPT = 0, H_SEQ = 1, H_SNAP = 2 };

void lc__path_join(char *out, size_t len, const char *root, const char *rel)
{
    if (rel[0] == '/' || !root || !root[0])
        snprintf(out, len, "%s", rel);
    else
        snprintf(out, len, "%s/%s", root, rel);
}

int lc__has(const lc__run *r, lc_cap c)
{
    return lc_engine_info_has(&r->e->info, c);
}

/* Records a handle the run closes at its end. */
static int keep_handle(lc__run *r, int kind, int h)
{
    if (r->n_handles + 2 > r->cap_handles) {
        int cap = r->cap_handles ? 2 * r->cap_handles : 32;
        int *t = realloc(r->handles, (size_t)cap * sizeof *t);
        if (!t) {
            lc__set_error(r, "case '%s': out of memory", r->c->name);
            return 0;
        }
        r->handles = t;
        r->cap_handles = cap;
    }
    r->handles[r->n_handles++] = kind;
    r->handles[r->n_handles++] = h;
    return 1;
}

void lc__run_release(lc__run *r)
{
    for (int i = r->n_handles - 2; i >= 0; i -= 2) {
        if (r->engine_failed)
            break; /* the engine is restarted: its handles are gone */
        if (r->handles[i] == H_PROMPT)
            lc_engine_prompt_close(r->e, r->handles[i + 1]);
        else if (r->handles[i] == H_SEQ)
            lc_engine_seq_close(r->e, r->handles[i + 1]);
        else if (r->handles[i] == H_SNAP)
            lc_engine_snap_release(r->e, r->handles[i + 1]);
    }
    free(r->handles);
    r->handles = NULL;
    r->n_handles = r->cap_handles = 0;
    for (int i = 0; i < r->n_owned; i++)
        free(r->owned[i]);
    free(r->owned);
    r->owned = NULL;
    r->n_owned = r->cap_owned = 0;
    lc__golden_close(&r->golden);
}

/* ---------------------------------------------------------------- prompts and sequences */

lc_prompt_info *lc__prompt(lc__run *r, const lc_prompt *lp, int vision_from)
{
    return lc__prompt_padded(r, lp, vision_from, 0);
}

lc_prompt_info *lc__prompt_padded(lc__run *r, const lc_prompt *lp, int vision_from, int pad_to)
{
    if (!lc__ok(r))
        return NULL;
    lc_pseg *segs = lc__alloc(r, (size_t)lp->n_segs * sizeof *segs);
    char (*paths)[4096] = lc__alloc(r, (size_t)lp->n_segs * sizeof *paths);
    lc_prompt_info *pi = lc__alloc(r, sizeof *pi);
    if (!segs || !paths || !pi)
        return NULL;
    for (int s = 0; s < lp->n_segs; s++) {
        const lc_segment *g = &lp->segs[s];
        if (g->type == LC_SEG_IDS) {
            segs[s] = (lc_pseg){.type = LC_PSEG_IDS, .ids = g->ids, .n_ids = g->n_ids};
        } else if (g->type == LC_SEG_VIDEO) {
            char (*fp)[4096] = lc__alloc(r, (size_t)g->n_frames * sizeof *fp);
            const char **fv = lc__alloc(r, (size_t)g->n_frames * sizeof *fv);
            if (!fp || !fv)
                return NULL;
            for (int f = 0; f < g->n_frames; f++) {
                lc__path_join(fp[f], sizeof fp[f], r->o->root, g->frames[f]);
                fv[f] = fp[f];
            }
            segs[s] = (lc_pseg){.type = LC_PSEG_VIDEO, .frames = fv, .n_frames = g->n_frames, .fps = g->fps,
                                .ts_ids = g->ts_ids, .ts_len = g->ts_len, .n_ts = g->n_ts};
        } else {
            lc__path_join(paths[s], sizeof paths[s], r->o->root, g->image);
            segs[s] = (lc_pseg){.type = LC_PSEG_IMAGE, .image = paths[s]};
        }
    }
    lc_prompt_in in = {.segs = segs, .n_segs = lp->n_segs, .vision_from = vision_from, .pad_to = pad_to};
    if (lc_prompt_image_count(lp)) { /* the case's pixel bounds, for its images (LC_CAP_PIXEL_LIMITS) */
        in.image_min_pixels = r->c->image_min_pixels;
        in.image_max_pixels = r->c->image_max_pixels;
    }
    lc_error err = {0};
    if (!lc__engine_ok(r, lc_engine_prompt_open(r->e, &in, pi, &err), &err))
        return NULL;
    if (!keep_handle(r, H_PROMPT, pi->handle)) {
        lc_engine_prompt_close(r->e, pi->handle);
        lc_prompt_info_free(pi);
        return NULL;
    }
    /* the arrays join the arena; the struct keeps pointing at them */
    lc__own(r, pi->ids);
    lc__own(r, pi->pos);
    lc__own(r, pi->grid);
    return lc__ok(r) ? pi : NULL;
}

int lc__seq(lc__run *r)
{
    int seq = -1;
    lc_error err = {0};
    if (!lc__ok(r) || !lc__engine_ok(r, lc_engine_seq_open(r->e, &seq, &err), &err))
        return -1;
    return keep_handle(r, H_SEQ, seq) ? seq : -1;
}

void lc__seq_close(lc__run *r, int seq)
{
    for (int i = 0; seq >= 0 && i < r->n_handles; i += 2)
        if (r->handles[i] == H_SEQ && r->handles[i + 1] == seq) {
            r->handles[i] = -1;
            lc_engine_seq_close(r->e, seq);
            return;
        }
}

int lc__snapshot(lc__run *r, int seq)
{
    int snap = -1;
    lc_error err = {0};
    if (!lc__ok(r) || seq < 0 || !lc__engine_ok(r, lc_engine_snapshot(r->e, seq, &snap, &err), &err))
        return -1;
    return keep_handle(r, H_SNAP, snap) ? snap : -1;
}

int lc__restore(lc__run *r, int snap)
{
    int seq = -1;
    lc_error err = {0};
    if (!lc__ok(r) || snap < 0 || !lc__engine_ok(r, lc_engine_restore(r->e, snap, &seq, &err), &err))
        return -1;
    return keep_handle(r, H_SEQ, seq) ? seq : -1;
}

double *lc__vision(lc__run *r, const lc_prompt_info *p, int *rows)
{
    double *emb = NULL;
    lc_error err = {0};
    *rows = 0;
    if (!lc__ok(r) || !p || !lc__engine_ok(r, lc_engine_vision(r->e, p->handle, &emb, rows, &err), &err))
        return NULL;
    return lc__own(r, emb);
}

int lc__prefill(lc__run *r, int seq, const lc_prompt_info *p, int from, int to, int chunk, double *logits)
{
    if (!lc__ok(r) || seq < 0 || !p)
        return 0;
    if (chunk <= 0)
        chunk = to - from;
    for (int s = from; s < to; s += chunk) {
        int end = to - s < chunk ? to : s + chunk;
        lc_prefill_out o = {.sel = logits ? LC_LOGITS_ALL : LC_LOGITS_NONE,
                            .logits = logits ? logits + (size_t)(s - from) * r->V : NULL};
        lc_error err = {0};
        if (!lc__engine_ok(r, lc_engine_prefill(r->e, seq, p->handle, s, end, &o, &err), &err))
            return 0;
    }
    return 1;
}

int lc__prefilled(lc__run *r, const lc_prompt_info *p, int to, int chunk, double *logits)
{
    int seq = lc__seq(r);
    return seq >= 0 && lc__prefill(r, seq, p, 0, to, chunk, logits) ? seq : -1;
}

/* ---------------------------------------------------------------- decode */

int32_t lc__greedy(const lc__run *r, const double *x)
{
    /* never a vision start/end, image or video token: a decoded placeholder has no image */
    const lc_model_info *m = &r->mi;
    int b = -1;
    for (int i = 0; i < r->V; i++) {
        if (m->has_vision && (i == m->image_token_id || i == m->video_token_id || i == m->vision_start_token_id ||
                              i == m->vision_end_token_id))
            continue;
        if (b < 0 || x[i] > x[b])
            b = i;
    }
    return b;
}

int lc__decode(lc__run *r, int seq, int32_t *toks, int n, double *logits, int choose)
{
    if (!lc__ok(r) || seq < 0 || !toks)
        return 0;
    const int greedy = choose == LC__CHOOSE && r->c->decode.mode == LC_DECODE_GREEDY;
    for (int i = 0; i < n; i++) {
        double *row = logits ? logits + (size_t)i * r->V : NULL;
        lc_error err = {0};
        if (!lc__engine_ok(r, lc_engine_decode(r->e, seq, toks[i], row, &err), &err))
            return 0;
        if (greedy && row && i + 1 < n)
            toks[i + 1] = lc__greedy(r, row);
    }
    return 1;
}

int32_t *lc__decode_plan(lc__run *r, const double *last, int *n)
{
    const lc_decode *d = &r->c->decode;
    *n = d->mode == LC_DECODE_IDS ? d->n_ids : d->mode == LC_DECODE_GREEDY ? d->greedy : 0;
    if (r->c->steps > 0 && r->c->steps < *n)
        *n = r->c->steps;
    int32_t *toks = lc__alloc(r, (size_t)(*n ? *n : 1) * sizeof *toks);
    if (!toks)
        return NULL;
    if (d->mode == LC_DECODE_IDS)
        memcpy(toks, d->ids, (size_t)*n * sizeof *toks);
    else if (*n > 0 && last)
        toks[0] = lc__greedy(r, last); /* the rest are chosen by lc__decode */
    return toks;
}

uint8_t *lc__text_positions(lc__run *r, const lc_prompt_info *p)
{
    uint8_t *m = p ? lc__alloc(r, (size_t)p->n) : NULL;
    for (int i = 0; m && i < p->n; i++)
        m[i] = !(r->mi.has_vision && (p->ids[i] == r->mi.image_token_id || p->ids[i] == r->mi.video_token_id));
    return m;
}

int lc__adopt_seq(lc__run *r, int seq)
{
    if (seq < 0 || !keep_handle(r, H_SEQ, seq)) {
        if (seq >= 0)
            lc_engine_seq_close(r->e, seq);
        return -1;
    }
    return seq;
}
