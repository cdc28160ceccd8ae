/* SPDX-License-Identifier: MIT */
/*
 * Differential mode on another checkpoint (`run --model DIR`): a case instantiated for the
 * checkpoint the engine loaded (see runner_internal.h, lc__instantiate).
 *
 * What a case says is checkpoint-independent (cases/README.md, "Differential mode"): its kind
 * and every kind parameter (lengths, chunks, steps, split, after_segment, kernel, chunk), its
 * images, the number of greedy decode tokens, its batch rows and their order. What depends on
 * the checkpoint is re-derived from it: token ids (an id outside the checkpoint's vocabulary,
 * or one of its vision start / end / image / video ids, is re-drawn, deterministically from
 * the case's name and the id's place, within [0, the lowest vision id)), image placeholders
 * (the engine expands images with the checkpoint's own processor and merge size), the decode
 * tokens of a greedy case (the oracle chooses them), and the bounds (the table's class
 * bounds: the case's own bounds were measured on its own checkpoint).
 */
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* Where an id sits, for the draw: distinct per prompt part so that two parts of one case
 * holding the same ids do not turn into the same ids by accident of the hash alone. */
enum { W_PROMPT = 0, W_OTHER = 1, W_DECODE = 2, W_PAD = 3, W_ROWS = 16 };

int32_t lc__redraw_id(const char *name, int where, int i, int32_t lo)
{
    /* FNV-1a over the name, then the place, then a splitmix64 finaliser */
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ (uint64_t)(uint32_t)where) * 1099511628211ull;
    h = (h ^ (uint64_t)(uint32_t)i) * 1099511628211ull;
    h += 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    return lo > 0 ? (int32_t)(h % (uint64_t)lo) : 0;
}

/* The ids a prompt may hold on the loaded checkpoint: [0, lo), lo the lowest vision id (the
 * vocabulary when it has none below it). */
static int32_t ordinary_limit(const lc_model_info *mi)
{
    int32_t lo = mi->vocab_size;
    const int special[] = {mi->vision_start_token_id, mi->vision_end_token_id, mi->image_token_id,
                           mi->video_token_id};
    for (int k = 0; mi->has_vision && k < 4; k++)
        if (special[k] >= 0 && special[k] < lo)
            lo = special[k];
    return lo;
}

static int32_t instance_id(const lc__run *r, int32_t id, int where, int i, int32_t lo)
{
    return id >= 0 && id < lo ? id : lc__redraw_id(r->c->name, where, i, lo);
}

static int32_t *copy_ids(lc__run *r, const int32_t *ids, int n, int where, int *at, int32_t lo)
{
    int32_t *v = lc__alloc(r, (size_t)(n ? n : 1) * sizeof *v);
    for (int i = 0; v && i < n; i++, (*at)++)
        v[i] = instance_id(r, ids[i], where, *at, lo);
    return v;
}

static int copy_prompt(lc__run *r, lc_prompt *out, const lc_prompt *in, int where, int32_t lo)
{
    *out = *in;
    if (!in->n_segs)
        return 1;
    lc_segment *segs = lc__alloc(r, (size_t)in->n_segs * sizeof *segs);
    if (!segs)
        return 0;
    int at = 0;
    for (int s = 0; s < in->n_segs; s++) {
        segs[s] = in->segs[s]; /* images: the same file */
        if (in->segs[s].type == LC_SEG_IDS && !(segs[s].ids = copy_ids(r, in->segs[s].ids, in->segs[s].n_ids, where, &at, lo)))
            return 0;
    }
    out->segs = segs;
    return 1;
}

int lc__instantiate(lc__run *r)
{
    const lc_case *c = r->c;
    lc_case *k = &r->inst;
    const int32_t lo = ordinary_limit(&r->mi);
    *k = *c; /* strings and kind parameters shared with the catalog's case, read-only */
    k->checkpoint = (char *)r->dir;
    if (!copy_prompt(r, &k->prompt, &c->prompt, W_PROMPT, lo) ||
        !copy_prompt(r, &k->other_prompt, &c->other_prompt, W_OTHER, lo))
        return 0;
    if (c->n_rows) {
        if (!(k->rows = lc__alloc(r, (size_t)c->n_rows * sizeof *k->rows)))
            return 0;
        for (int b = 0; b < c->n_rows; b++)
            if (!copy_prompt(r, &k->rows[b], &c->rows[b], W_ROWS + b, lo))
                return 0;
        k->pad_id = instance_id(r, c->pad_id, W_PAD, 0, lo);
    }
    if (c->decode.mode == LC_DECODE_IDS) {
        int at = 0;
        if (!(k->decode.ids = copy_ids(r, c->decode.ids, c->decode.n_ids, W_DECODE, &at, lo)))
            return 0;
    }
    r->c = k;
    return 1;
}
