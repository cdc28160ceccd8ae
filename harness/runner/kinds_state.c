/* SPDX-License-Identifier: MIT */
/* Kinds about cache semantics: batch, snapshot, image_checkpoint. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- batch */

/* Whether rows i and j of a batch case are the same request (same ids; same images, by their
 * embeddings when the engine shows them, else by file). */
static int same_request(lc__run *r, const lc_prompt_info *const *rows, int i, int j)
{
    const lc_prompt_info *a = rows[i], *b = rows[j];
    if (a->n != b->n || memcmp(a->ids, b->ids, (size_t)a->n * sizeof *a->ids) || a->n_images != b->n_images)
        return 0;
    if (!a->n_images)
        return 1;
    if (lc__has(r, LC_CAP_VISION)) {
        int na, nb;
        const double *ea = lc__vision(r, a, &na), *eb = lc__vision(r, b, &nb);
        return ea && eb && na == nb && !memcmp(ea, eb, (size_t)na * r->H * sizeof *ea);
    }
    const lc_prompt *pa = &r->c->rows[i], *pb = &r->c->rows[j];
    for (int s = 0; s < pa->n_segs; s++)
        if (pa->segs[s].type == LC_SEG_IMAGE && (s >= pb->n_segs || pb->segs[s].type != LC_SEG_IMAGE ||
                                                 strcmp(pa->segs[s].image, pb->segs[s].image)))
            return 0;
    return 1;
}

/* One left-padded batch against each row alone and against transformers' batched run; a
 * ragged chunked batch; identical rows bitwise; each row's state; batched decode. */
void lc__kind_batch(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V, B = cs->n_rows;
    lc_h5_shape sh;
    lc_error err = {0};
    const lc_prompt_info **rows = lc__alloc(r, (size_t)B * sizeof *rows);
    int *prompts = lc__alloc(r, (size_t)B * sizeof *prompts), *alone = lc__alloc(r, (size_t)B * sizeof *alone);
    int *batch = lc__alloc(r, (size_t)B * sizeof *batch), *ragged = lc__alloc(r, (size_t)B * sizeof *ragged);
    if (!rows || !prompts || !alone || !batch || !ragged)
        return;
    int L = 0;
    for (int b = 0; b < B; b++) {
        if (!(rows[b] = lc__prompt(r, &cs->rows[b], 0)))
            return;
        prompts[b] = rows[b]->handle;
        L = rows[b]->n > L ? rows[b]->n : L;
    }
    const size_t BLV = (size_t)B * L * V;
    uint8_t *mask = lc__alloc(r, (size_t)B * L);
    double *single = lc__nans(r, BLV), *batched = lc__alloc(r, BLV * sizeof *batched);
    double *chunked = lc__alloc(r, BLV * sizeof *chunked), *row = lc__alloc(r, (size_t)L * V * sizeof *row);
    if (!mask || !single || !batched || !chunked || !row)
        return;
    for (int b = 0; b < B; b++)
        memset(mask + (size_t)b * L + (L - rows[b]->n), 1, (size_t)rows[b]->n);

    /* the golden decides the teacher-forced decode tokens when there is one */
    const double *e_logits = NULL, *e_dec = NULL;
    const int64_t *e_tok = NULL;
    int N = 0;
    if (cs->golden || lc__differential(r)) { /* differential mode: the oracle's outputs */
        lc__golden *g = lc__golden_open(r);
        int64_t wBLV[3] = {B, L, V};
        if (!g || !(e_logits = lc__golden_f64(r, g, "logits", 3, wBLV, &sh)))
            return;
        if (lc__golden_has(g, "decode_tokens")) {
            int64_t wBN[2] = {B, -1};
            if (!(e_tok = lc__golden_i64(r, g, "decode_tokens", 2, wBN, &sh)))
                return;
            N = (int)sh.shape[1];
            int64_t wBNV[3] = {B, N, V};
            if (!(e_dec = lc__golden_f64(r, g, "decode_logits", 3, wBNV, &sh)))
                return;
        }
    }

    /* B = 1 runs: each row alone, its logits placed at its padded positions */
    for (int b = 0; b < B; b++) {
        if ((alone[b] = lc__prefilled(r, rows[b], rows[b]->n, 0, row)) < 0)
            return;
        memcpy(single + ((size_t)b * L + (L - rows[b]->n)) * V, row, (size_t)rows[b]->n * V * sizeof *row);
    }
    /* one batched prefill over all rows */
    for (int b = 0; b < B; b++)
        if ((batch[b] = lc__seq(r)) < 0 || (ragged[b] = lc__seq(r)) < 0)
            return;
    if (!lc__engine_ok(r, lc_engine_batch_prefill(r->e, batch, prompts, B, 0, L, batched, &err), &err))
        return;
    lc__compare(r, "prefill_logits", "prefill logits: one left-padded batch vs each row alone (real positions)",
                LC_CLASS_CROSS, LC__ROWS, "batched forward", "B=1 runs", batched, single, (size_t)B * L, (size_t)V,
                mask, NULL);
    if (e_logits)
        lc__compare(r, "prefill_logits.golden", "prefill logits: batch vs transformers' batched run (real positions)",
                    LC_CLASS_GOLDEN, LC__ROWS, "batched forward", lc__expected(r, "transformers float64"), batched, e_logits,
                    (size_t)B * L, (size_t)V, mask, NULL);

    /* identical rows in one batch: bitwise equal logits */
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            if (!same_request(r, rows, i, j))
                continue;
            char id[64], title[128];
            const size_t off = (size_t)(L - rows[i]->n) * V;
            snprintf(id, sizeof id, "rows%d_%d.identical", i, j);
            snprintf(title, sizeof title, "prefill logits: identical rows %d and %d of one batch", i, j);
            lc__compare(r, id, title, LC_CLASS_SAME, LC__ROWS, "batched row", "identical batched row",
                        batched + (size_t)j * L * V + off, batched + (size_t)i * L * V + off, (size_t)rows[i]->n,
                        (size_t)V, NULL, NULL);
        }

    /* ragged chunked prefill: chunk columns, some holding only pads for the short rows */
    const int chunk = cs->n_chunks > 0 ? cs->chunks[0] : 5;
    double *part = lc__alloc(r, (size_t)B * chunk * V * sizeof *part);
    for (int s = 0; part && s < L; s += chunk) {
        const int to = s + chunk < L ? s + chunk : L;
        if (!lc__engine_ok(r, lc_engine_batch_prefill(r->e, ragged, prompts, B, s, to, part, &err), &err))
            return;
        for (int b = 0; b < B; b++)
            memcpy(chunked + ((size_t)b * L + s) * V, part + (size_t)b * (to - s) * V,
                   (size_t)(to - s) * V * sizeof *part);
    }
    {
        char id[64], title[128];
        snprintf(id, sizeof id, "chunk%d.logits", chunk);
        snprintf(title, sizeof title, "prefill logits: ragged chunked batch (chunk %d) vs one-shot batch", chunk);
        lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "chunked batch", "one-shot batch", part ? chunked : NULL,
                    batched, (size_t)B * L, (size_t)V, mask, NULL);
    }
    for (int b = 0; b < B; b++) {
        char id[64], title[128];
        snprintf(id, sizeof id, "row%d.state", b);
        snprintf(title, sizeof title, "row %d: state after the batched prefill vs alone", b);
        lc__compare_states(r, id, title, LC_CLASS_CROSS, "batched forward", "B=1 run", batch[b], alone[b]);
    }

    /* batched decode with per-row offsets and deltas vs each row decoding alone */
    if (!e_tok)
        N = cs->decode.mode == LC_DECODE_GREEDY ? cs->decode.greedy : cs->decode.mode == LC_DECODE_IDS ? cs->decode.n_ids : 0;
    if (N <= 0 || !lc__ok(r))
        return;
    int32_t *toks = lc__alloc(r, (size_t)B * N * sizeof *toks), *step = lc__alloc(r, (size_t)B * sizeof *step);
    double *dec_single = lc__alloc(r, (size_t)B * N * V * sizeof *dec_single);
    double *dec_batch = lc__alloc(r, (size_t)B * N * V * sizeof *dec_batch), *out = lc__alloc(r, (size_t)B * V * sizeof *out);
    if (!toks || !step || !dec_single || !dec_batch || !out)
        return;
    for (int b = 0; b < B; b++) {
        const double *last = single + ((size_t)b * L + L - 1) * V;
        for (int i = 0; i < N; i++) {
            int32_t *t = &toks[(size_t)b * N + i];
            *t = e_tok ? (int32_t)e_tok[(size_t)b * N + i] : cs->decode.mode == LC_DECODE_IDS ? cs->decode.ids[i]
                                                                                            : lc__greedy(r, last);
            if (!lc__decode(r, alone[b], t, 1, dec_single + ((size_t)b * N + i) * V, LC__FORCED))
                return;
            last = dec_single + ((size_t)b * N + i) * V;
        }
    }
    for (int i = 0; i < N; i++) {
        for (int b = 0; b < B; b++)
            step[b] = toks[(size_t)b * N + i];
        if (!lc__engine_ok(r, lc_engine_batch_decode(r->e, batch, step, B, out, &err), &err))
            return;
        for (int b = 0; b < B; b++)
            memcpy(dec_batch + ((size_t)b * N + i) * V, out + (size_t)b * V, (size_t)V * sizeof *out);
    }
    lc__compare(r, "decode_logits", "decode logits: batched decode (per-row offsets and deltas) vs each row alone",
                LC_CLASS_CROSS, LC__ROWS, "batched decode", "B=1 decode", dec_batch, dec_single, (size_t)B * N,
                (size_t)V, NULL, NULL);
    if (e_dec)
        lc__compare(r, "decode_logits.golden", "decode logits: batched decode vs transformers", LC_CLASS_GOLDEN,
                    LC__ROWS, "batched decode", lc__expected(r, "transformers float64"), dec_batch, e_dec, (size_t)B * N, (size_t)V,
                    NULL, NULL);
}

/* ---------------------------------------------------------------- snapshot */

/* Snapshot semantics at `split` of prompt p. The reference ("fresh") schedule prefills [0,
 * split) and [split, T) as two calls on one sequence, then decodes. Against it, bitwise: a
 * snapshot taken at split, restored and continued; the live sequence the snapshot was taken
 * from, written to afterwards (the snapshot must not see those writes); an exact full-prompt
 * hit (decode right after restoring a whole-prompt snapshot: the last prompt token is not fed
 * again). Within the cross bound: the restored run vs a one-shot prefill of the whole prompt.
 * `suffix` is the prompt the restored run continues with: the same ids and positions, its
 * embedding rows possibly computed anew. */
static void snapshot_at(lc__run *r, const lc_prompt_info *p, const lc_prompt_info *suffix, int split, const char *key,
                        const char *what)
{
    const int T = p->n, V = r->V;
    char id[64], title[200];
    double *lf = lc__alloc(r, (size_t)T * V * sizeof *lf), *lr = lc__alloc(r, (size_t)T * V * sizeof *lr);
    double *lo = lc__alloc(r, (size_t)T * V * sizeof *lo);
    /* fresh run, same schedule */
    int fresh = lf ? lc__prefilled(r, p, split, 0, lf) : -1;
    if (!lr || !lo || !lc__prefill(r, fresh, p, split, T, 0, lf + (size_t)split * V))
        return;
    int N = 0;
    int32_t *toks = lc__decode_plan(r, lf + (size_t)(T - 1) * V, &N);
    const size_t NV = (size_t)(N ? N : 1) * V;
    double *df = lc__alloc(r, NV * sizeof *df), *dr = lc__alloc(r, NV * sizeof *dr), *dh = lc__alloc(r, NV * sizeof *dh);
    double *dl = lc__alloc(r, NV * sizeof *dl), *d1 = lc__alloc(r, NV * sizeof *d1);
    const int full_snap = lc__snapshot(r, fresh);
    if (!toks || !df || !dr || !dh || !dl || !d1 || !lc__decode(r, fresh, toks, N, df, LC__CHOOSE))
        return;
    /* snapshot at the split; the live sequence goes on and is written to */
    int live = lc__prefilled(r, p, split, 0, NULL);
    int snap = lc__snapshot(r, live);
    if (!lc__prefill(r, live, p, split, T, 0, NULL) || !lc__decode(r, live, toks, N, dl, LC__FORCED))
        return;
    /* restore the snapshot and continue */
    int restored = lc__restore(r, snap);
    if (!lc__prefill(r, restored, suffix, split, T, 0, lr + (size_t)split * V) ||
        !lc__decode(r, restored, toks, N, dr, LC__FORCED))
        return;
    snprintf(id, sizeof id, "%s.suffix", key);
    snprintf(title, sizeof title, "%s: suffix logits after restoring the snapshot at %d vs fresh run", what, split);
    lc__compare(r, id, title, LC_CLASS_SAME, LC__ROWS, "restored snapshot", "fresh run", lr + (size_t)split * V,
                lf + (size_t)split * V, (size_t)(T - split), (size_t)V, NULL, NULL);
    snprintf(id, sizeof id, "%s.decode", key);
    snprintf(title, sizeof title, "%s: decode logits after restore vs fresh run", what);
    lc__compare(r, id, title, LC_CLASS_SAME, LC__ROWS, "restored snapshot", "fresh run", dr, df, (size_t)N, (size_t)V,
                NULL, NULL);
    snprintf(id, sizeof id, "%s.live_decode", key);
    snprintf(title, sizeof title, "%s: decode logits of the live cache that was snapshotted vs fresh run", what);
    lc__compare(r, id, title, LC_CLASS_SAME, LC__ROWS, "live cache", "fresh run", dl, df, (size_t)N, (size_t)V, NULL,
                NULL);
    /* exact full-prompt hit: restore the whole-prompt snapshot and decode at once */
    int hit = lc__restore(r, full_snap);
    if (!lc__decode(r, hit, toks, N, dh, LC__FORCED))
        return;
    snprintf(id, sizeof id, "%s.hit_decode", key);
    snprintf(title, sizeof title, "%s: decode logits after an exact full-prompt hit vs fresh run", what);
    lc__compare(r, id, title, LC_CLASS_SAME, LC__ROWS, "prefix-cache hit", "fresh run", dh, df, (size_t)N, (size_t)V,
                NULL, NULL);
    /* a different schedule: the whole prompt in one prefill call */
    int one = lc__prefilled(r, p, T, 0, lo);
    if (!lc__decode(r, one, toks, N, d1, LC__FORCED))
        return;
    const size_t rows = (size_t)(T - split) + (size_t)N;
    double *a = lc__alloc(r, rows * V * sizeof *a), *e = lc__alloc(r, rows * V * sizeof *e);
    if (!a || !e)
        return;
    memcpy(a, lr + (size_t)split * V, (size_t)(T - split) * V * sizeof *a);
    memcpy(a + (size_t)(T - split) * V, dr, (size_t)N * V * sizeof *a);
    memcpy(e, lo + (size_t)split * V, (size_t)(T - split) * V * sizeof *e);
    memcpy(e + (size_t)(T - split) * V, d1, (size_t)N * V * sizeof *e);
    snprintf(id, sizeof id, "%s.vs_oneshot", key);
    snprintf(title, sizeof title, "%s: suffix and decode logits after restore vs one-shot prefill", what);
    lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "restored snapshot", "one-shot prefill", a, e, rows, (size_t)V,
                NULL, NULL);
}

void lc__kind_snapshot(lc__run *r)
{
    const lc_prompt_info *p = lc__prompt(r, &r->c->prompt, 0);
    if (!p)
        return;
    if (r->c->split < 1 || r->c->split >= p->n) {
        lc__set_error(r, "%s: case '%s': split %d must lie inside the prompt of %d tokens", r->c->file, r->c->name,
                      r->c->split, p->n);
        return;
    }
    snapshot_at(r, p, p, r->c->split, "snapshot", "snapshot");
}

/* ---------------------------------------------------------------- image_checkpoint */

/* A multi-turn prompt: turn 1 ends one past the (last) vision_end of the image or video segment
 * `after_segment` (image_end_index over images and videos alike), where a checkpoint is taken. Turn 2 restores it and prefills only the
 * suffix, with the vision tower run only on the images that are new in the suffix (a prompt
 * with vision_from); positions still come from the whole prompt. Checked: everything
 * snapshot_at checks at that boundary, the new images' embeddings vs the whole-prompt vision
 * run, and the reused images' embeddings from a fresh vision run vs turn 1's. */
void lc__kind_image_checkpoint(lc__run *r)
{
    const lc_case *cs = r->c;
    const int H = r->H;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    if (!p)
        return;
    if (cs->after_segment < 0 || cs->after_segment >= cs->prompt.n_segs ||
        cs->prompt.segs[cs->after_segment].type == LC_SEG_IDS) {
        lc__set_error(r, "%s: case '%s': after_segment %d is not an image or video segment", cs->file, cs->name,
                      cs->after_segment);
        return;
    }
    int images_before = 0, ends_before = 0;
    for (int s = 0; s <= cs->after_segment; s++)
        images_before += cs->prompt.segs[s].type != LC_SEG_IDS;
    /* a video closes one vision_end per temporal patch (its grid's t; an image's t is 1) */
    for (int k = 0; k < images_before && p->grid && k < p->n_images; k++)
        ends_before += p->grid[k][0];
    int seen = 0, end = -1, emb_before = 0, emb_all = 0;
    for (int i = 0; i < p->n; i++) {
        const int ph = r->mi.has_vision && (p->ids[i] == r->mi.image_token_id || p->ids[i] == r->mi.video_token_id);
        emb_all += ph;
        if (end < 0) {
            emb_before += ph;
            if (p->ids[i] == r->mi.vision_end_token_id && ++seen == ends_before)
                end = i + 1;
        }
    }
    if (end <= 0 || end >= p->n) {
        lc__set_error(r, "%s: case '%s': the image of segment %d must be followed by more prompt", cs->file, cs->name,
                      cs->after_segment);
        return;
    }
    const lc_prompt_info *turn2 = lc__prompt(r, &cs->prompt, images_before);
    if (!turn2)
        return;
    if (!lc__has(r, LC_CAP_VISION))
        lc__note_missing(r, LC_CAP_VISION);
    if (lc__has(r, LC_CAP_VISION)) {
        /* reused images: a fresh vision run over them alone gives turn 1's embeddings, bitwise */
        lc_prompt old = {.n_segs = 0};
        old.segs = lc__alloc(r, (size_t)images_before * sizeof *old.segs);
        for (int s = 0; old.segs && s <= cs->after_segment; s++)
            if (cs->prompt.segs[s].type != LC_SEG_IDS)
                old.segs[old.n_segs++] = cs->prompt.segs[s];
        int n_old = 0, n_all = 0, n_new = 0;
        const double *fresh_old = old.segs ? lc__vision(r, lc__prompt(r, &old, 0), &n_old) : NULL;
        const double *whole = lc__vision(r, p, &n_all);
        const double *fresh_new = lc__vision(r, turn2, &n_new);
        if (!fresh_old || !whole || !fresh_new)
            return;
        if (n_old != emb_before || n_all != emb_all) {
            lc__set_error(r, "case '%s': %d placeholders before the checkpoint, %d embeddings", cs->name, emb_before,
                          n_old);
            return;
        }
        lc__compare(r, "reused_embeds", "reused image embeddings: fresh vision run vs turn 1", LC_CLASS_SAME, LC__ROWS,
                    "fresh vision run", "turn 1 prompt", fresh_old, whole, (size_t)n_old, (size_t)H, NULL, NULL);
        if (images_before < p->n_images) {
            if (n_old + n_new != n_all) {
                lc__set_error(r, "case '%s': %d + %d embeddings, the prompt has %d", cs->name, n_old, n_new, n_all);
                return;
            }
            lc__compare(r, "new_embeds", "new image embeddings: turn 2 vision run (new images only) vs whole prompt",
                        LC_CLASS_SAME, LC__ROWS, "turn 2 vision run", "whole-prompt vision run", fresh_new,
                        whole + (size_t)n_old * H, (size_t)n_new, (size_t)H, NULL, NULL);
        }
    }
    snapshot_at(r, p, turn2, end, "checkpoint", "image checkpoint");
}
