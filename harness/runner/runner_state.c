/* Kinds about cache semantics: batch, snapshot, image_checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "runner_internal.h"

/* ---------------------------------------------------------------- batch */

/* Rows of a batch case, each built, then left-padded into one (B, L) layout. */
typedef struct {
    qref_prompt *rows;          /* (B) */
    qref_padded pad;
} padded;

static void padded_free(padded *pb)
{
    for (int b = 0; pb->rows && b < pb->pad.B; b++)
        qref_prompt_free(&pb->rows[b]);
    free(pb->rows);
    qref_padded_free(&pb->pad);
    memset(pb, 0, sizeof *pb);
}

static int padded_build(lc__run *r, padded *pb)
{
    const lc_case *cs = r->c;
    qref_error qe;
    memset(pb, 0, sizeof *pb);
    pb->rows = calloc((size_t)cs->n_rows, sizeof *pb->rows);
    pb->pad.B = cs->n_rows; /* so a partial build frees its rows */
    if (!pb->rows)
        return 0;
    for (int b = 0; b < cs->n_rows; b++)
        if (!lc__build_prompt(r, &cs->rows[b], &pb->rows[b]))
            return 0;
    if (qref_padded_build(&pb->pad, pb->rows, cs->n_rows, cs->pad_id, &qe) != QREF_OK) {
        pb->pad.B = cs->n_rows;
        lc__set_error(r, "case '%s': %s", cs->name, qe.msg);
        return 0;
    }
    return 1;
}

/* One batched forward over the columns [from, to) of the padded layout. */
static int batch_forward(lc__run *r, const padded *pb, qref_cache **caches, int from, int to, qref_real *logits)
{
    qref_error qe;
    if (qref_padded_prefill(&r->m, caches, &pb->pad, from, to, logits, &qe) != QREF_OK) {
        lc__set_error(r, "case '%s': batched forward: %s", r->c->name, qe.msg);
        return 0;
    }
    for (int b = 0; r->o->stale_rope_delta && b < pb->pad.B; b++)
        caches[b]->rope_delta = 0;
    return 1;
}

void lc__kind_batch(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V;
    padded pb;
    lc__golden g = {0};
    g.f.id = -1;
    qref_cache *cs_single = NULL, *cs_batch = NULL, *cs_chunk = NULL;
    qref_cache **pb_caches = NULL, **pc_caches = NULL;
    qref_real *single = NULL, *batched = NULL, *chunked = NULL, *dec_single = NULL, *dec_batch = NULL, *row = NULL;
    int32_t *toks = NULL;
    double *e_logits = NULL, *e_dec = NULL;
    int64_t *e_tok = NULL;
    lc_h5_shape sh;
    int N = 0;

    if (!padded_build(r, &pb))
        goto done;
    const int B = pb.pad.B, L = pb.pad.L;
    const size_t BLV = (size_t)B * L * V;
    cs_single = calloc((size_t)B, sizeof *cs_single);
    cs_batch = calloc((size_t)B, sizeof *cs_batch);
    cs_chunk = calloc((size_t)B, sizeof *cs_chunk);
    pb_caches = calloc((size_t)B, sizeof *pb_caches);
    pc_caches = calloc((size_t)B, sizeof *pc_caches);
    single = malloc(BLV * sizeof *single);
    batched = malloc(BLV * sizeof *batched);
    chunked = malloc(BLV * sizeof *chunked);
    row = malloc((size_t)L * V * sizeof *row);
    if (!cs_single || !cs_batch || !cs_chunk || !pb_caches || !pc_caches || !single || !batched || !chunked || !row) {
        lc__set_error(r, "out of memory");
        goto done;
    }

    /* the golden decides the teacher-forced decode tokens when there is one */
    if (r->c->golden) {
        if (!lc__golden_open(r, &g))
            goto done;
        int64_t wBLV[3] = {B, L, V};
        if (!(e_logits = lc__golden_f64(r, &g, "logits", 3, wBLV, &sh)))
            goto done;
        char name[512];
        snprintf(name, sizeof name, "%s/decode_tokens", g.group);
        if (lc_h5_exists(&g.f, name)) {
            int64_t wBN[2] = {B, -1};
            if (!(e_tok = lc__golden_i64(r, &g, "decode_tokens", 2, wBN, &sh)))
                goto done;
            N = (int)sh.shape[1];
            int64_t wBNV[3] = {B, N, V};
            if (!(e_dec = lc__golden_f64(r, &g, "decode_logits", 3, wBNV, &sh)))
                goto done;
        }
    }

    /* B = 1 runs: each row alone, its logits placed at its padded positions */
    for (size_t i = 0; i < BLV; i++)
        single[i] = (qref_real)NAN;
    for (int b = 0; b < B; b++) {
        const qref_prompt *p = &pb.rows[b];
        if (!lc__prefill(r, p, p->n, 0, QREF_GDN_AUTO, &cs_single[b], row))
            goto done;
        memcpy(single + ((size_t)b * L + (L - p->n)) * V, row, (size_t)p->n * V * sizeof *row);
    }
    /* one batched forward over all rows */
    for (int b = 0; b < B; b++) {
        qref_error qe;
        if (qref_cache_init(&cs_batch[b], &r->m, &qe) != QREF_OK || qref_cache_init(&cs_chunk[b], &r->m, &qe) != QREF_OK) {
            lc__set_error(r, "%s", qe.msg);
            goto done;
        }
        pb_caches[b] = &cs_batch[b];
        pc_caches[b] = &cs_chunk[b];
    }
    if (!batch_forward(r, &pb, pb_caches, 0, L, batched))
        goto done;
    double *a = lc__to_double(batched, BLV), *e = lc__to_double(single, BLV);
    if (a && e) {
        lc__compare(r, CMP_LOGITS, "prefill logits: one left-padded batch vs each row alone (real positions)",
                "batched forward", "B=1 runs", a, e, (size_t)B * L, (size_t)V, pb.pad.mask, NULL);
        if (e_logits)
            lc__compare(r, CMP_LOGITS, "prefill logits: batch vs transformers' batched run (real positions)",
                    "batched forward", "transformers float64", a, e_logits, (size_t)B * L, (size_t)V, pb.pad.mask, NULL);
    }
    free(a);
    free(e);

    /* identical rows in one batch: bitwise equal logits */
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const qref_prompt *pi = &pb.rows[i], *pj = &pb.rows[j];
            if (pi->n != pj->n || pi->n_embeds != pj->n_embeds || memcmp(pi->ids, pj->ids, (size_t)pi->n * sizeof *pi->ids) ||
                (pi->n_embeds && memcmp(pi->embeds, pj->embeds, (size_t)pi->n_embeds * r->m.cfg.hidden_size * sizeof *pi->embeds)))
                continue;
            char name[128];
            snprintf(name, sizeof name, "prefill logits: identical rows %d and %d of one batch", i, j);
            const size_t off = (size_t)(L - pi->n) * V;
            lc__compare_real(r, CMP_BITWISE, name, "batched row", "identical batched row",
                             batched + (size_t)j * L * V + off, batched + (size_t)i * L * V + off, (size_t)pi->n,
                             (size_t)V, NULL);
        }

    /* ragged chunked prefill: chunk columns, some holding only pads for the short rows */
    int chunk = cs->n_chunks > 0 ? cs->chunks[0] : 5;
    for (int s = 0; s < L && r->res->verdict != LC_VERDICT_ERROR; s += chunk) {
        int to = s + chunk < L ? s + chunk : L;
        qref_real *part = malloc((size_t)B * (to - s) * V * sizeof *part);
        if (!part || !batch_forward(r, &pb, pc_caches, s, to, part)) {
            free(part);
            goto done;
        }
        for (int b = 0; b < B; b++)
            memcpy(chunked + ((size_t)b * L + s) * V, part + (size_t)b * (to - s) * V,
                   (size_t)(to - s) * V * sizeof *part);
        free(part);
    }
    {
        char name[128];
        snprintf(name, sizeof name, "prefill logits: ragged chunked batch (chunk %d) vs one-shot batch", chunk);
        double *ca = lc__to_double(chunked, BLV), *cb = lc__to_double(batched, BLV);
        if (ca && cb)
            lc__compare(r, CMP_LOGITS, name, "chunked batch", "one-shot batch", ca, cb, (size_t)B * L, (size_t)V, pb.pad.mask,
                    NULL);
        free(ca);
        free(cb);
    }
    for (int b = 0; b < B; b++) {
        char name[128];
        snprintf(name, sizeof name, "row %d: state after the batched prefill vs alone", b);
        lc__compare_states(r, name, "batched forward", "B=1 run", &cs_batch[b], &cs_single[b]);
    }

    /* batched decode with per-row offsets and deltas vs each row decoding alone */
    if (!e_tok)
        N = cs->decode.mode == LC_DECODE_GREEDY ? cs->decode.greedy : cs->decode.mode == LC_DECODE_IDS ? cs->decode.n_ids : 0;
    if (N > 0) {
        toks = malloc((size_t)B * N * sizeof *toks);
        dec_single = malloc((size_t)B * N * V * sizeof *dec_single);
        dec_batch = malloc((size_t)B * N * V * sizeof *dec_batch);
        if (!toks || !dec_single || !dec_batch)
            goto done;
        for (int b = 0; b < B; b++) {
            const qref_real *last = single + ((size_t)b * L + L - 1) * V;
            for (int i = 0; i < N; i++) {
                int32_t t = e_tok ? (int32_t)e_tok[(size_t)b * N + i]
                                  : cs->decode.mode == LC_DECODE_IDS ? cs->decode.ids[i] : (int32_t)lc__greedy(r, last);
                toks[(size_t)b * N + i] = t;
                if (!lc__decode(r, &cs_single[b], &t, 1, dec_single + ((size_t)b * N + i) * V))
                    goto done;
                last = dec_single + ((size_t)b * N + i) * V;
            }
        }
        int32_t *step = malloc((size_t)B * sizeof *step);
        qref_real *out = malloc((size_t)B * V * sizeof *out);
        for (int i = 0; step && out && i < N; i++) {
            qref_error qe;
            for (int b = 0; b < B; b++)
                step[b] = toks[(size_t)b * N + i];
            qref_batch in = {.B = B, .L = 1, .ids = step};
            qref_outputs o = {.logits = out};
            if (qref_forward_batch(&r->m, pb_caches, &in, &o, &qe) != QREF_OK) {
                lc__set_error(r, "case '%s': batched decode: %s", cs->name, qe.msg);
                break;
            }
            for (int b = 0; b < B; b++)
                memcpy(dec_batch + ((size_t)b * N + i) * V, out + (size_t)b * V, (size_t)V * sizeof *out);
        }
        free(step);
        free(out);
        if (r->res->verdict == LC_VERDICT_ERROR)
            goto done;
        double *da = lc__to_double(dec_batch, (size_t)B * N * V), *ds = lc__to_double(dec_single, (size_t)B * N * V);
        if (da && ds) {
            lc__compare(r, CMP_LOGITS, "decode logits: batched decode (per-row offsets and deltas) vs each row alone",
                    "batched decode", "B=1 decode", da, ds, (size_t)B * N, (size_t)V, NULL, NULL);
            if (e_dec)
                lc__compare(r, CMP_LOGITS, "decode logits: batched decode vs transformers", "batched decode",
                        "transformers float64", da, e_dec, (size_t)B * N, (size_t)V, NULL, NULL);
        }
        free(da);
        free(ds);
    }
done:
    lc__golden_close(&g);
    for (int b = 0; b < pb.pad.B; b++) {
        if (cs_single)
            qref_cache_free(&cs_single[b]);
        if (cs_batch)
            qref_cache_free(&cs_batch[b]);
        if (cs_chunk)
            qref_cache_free(&cs_chunk[b]);
    }
    padded_free(&pb);
    free(cs_single);
    free(cs_batch);
    free(cs_chunk);
    free(pb_caches);
    free(pc_caches);
    free(single);
    free(batched);
    free(chunked);
    free(dec_single);
    free(dec_batch);
    free(row);
    free(toks);
    free(e_logits);
    free(e_dec);
    free(e_tok);
}

/* ---------------------------------------------------------------- snapshot */

/* Snapshot semantics at `split` of prompt p. The reference ("fresh") schedule prefills [0,
 * split) and [split, T) as two calls on one cache, then decodes. Against it, bitwise:
 * a snapshot taken at split, restored and continued; the live cache the snapshot was taken
 * from, written to afterwards (the snapshot must not see those writes); an exact full-prompt
 * hit (decode right after restoring a whole-prompt snapshot: the last prompt token is not fed
 * again). Within the case's bounds: the restored run vs a one-shot prefill of the whole prompt
 * (a different schedule). `suffix` (may be NULL) is the prompt the restored run continues
 * with: the same ids and positions, embedding rows possibly computed anew. */
static void kind_snapshot_at(lc__run *r, const qref_prompt *p, const qref_prompt *suffix, int split, const char *what)
{
    const int T = p->n, V = r->V;
    qref_cache fresh = {0}, live = {0}, snap = {0}, restored = {0}, full_snap = {0}, hit = {0}, one = {0};
    qref_real *lf = malloc((size_t)T * V * sizeof *lf), *lr = malloc((size_t)T * V * sizeof *lr);
    qref_real *lo = malloc((size_t)T * V * sizeof *lo);
    qref_real *df = NULL, *dr = NULL, *dh = NULL, *dl = NULL, *done_ = NULL;
    int32_t *toks = NULL;
    int N = 0;
    qref_error qe;
    char name[200];
    if (!suffix)
        suffix = p;
    if (!lf || !lr || !lo)
        goto done;
    /* fresh run, same schedule */
    if (!lc__prefill(r, p, split, 0, QREF_GDN_AUTO, &fresh, lf) ||
        qref_prompt_prefill(&r->m, &fresh, p, split, T, 0, QREF_GDN_AUTO, lf + (size_t)split * V, &qe) != QREF_OK)
        goto engine_error;
    if (!lc__own_decode_tokens(r, lf + (size_t)(T - 1) * V, &toks, &N))
        goto done;
    df = malloc((size_t)(N ? N : 1) * V * sizeof *df);
    dr = malloc((size_t)(N ? N : 1) * V * sizeof *dr);
    dh = malloc((size_t)(N ? N : 1) * V * sizeof *dh);
    dl = malloc((size_t)(N ? N : 1) * V * sizeof *dl);
    done_ = malloc((size_t)(N ? N : 1) * V * sizeof *done_);
    if (!df || !dr || !dh || !dl || !done_)
        goto done;
    if (qref_cache_clone(&full_snap, &fresh, &qe) != QREF_OK)
        goto engine_error;
    for (int i = 0; i < N; i++) {
        if (!lc__decode(r, &fresh, &toks[i], 1, df + (size_t)i * V))
            goto done;
        if (r->c->decode.mode == LC_DECODE_GREEDY && i + 1 < N)
            toks[i + 1] = lc__greedy(r, df + (size_t)i * V);
    }
    /* snapshot at the split; the live cache goes on and is written to */
    if (!lc__prefill(r, p, split, 0, QREF_GDN_AUTO, &live, NULL))
        goto done;
    if (r->o->shallow_snapshot) {
        /* planted bug: a view of the live state, not a copy (capacity reserved first so the
         * view stays valid memory while the live cache is written to) */
        if (qref__cache_reserve(&live, T + N + 1, &qe) != QREF_OK)
            goto engine_error;
        snap = live;
    } else if (qref_cache_clone(&snap, &live, &qe) != QREF_OK) {
        goto engine_error;
    }
    if (qref_prompt_prefill(&r->m, &live, p, split, T, 0, QREF_GDN_AUTO, NULL, &qe) != QREF_OK)
        goto engine_error;
    if (!lc__decode(r, &live, toks, N, dl))
        goto done;
    /* restore the snapshot and continue */
    if (qref_cache_clone(&restored, &snap, &qe) != QREF_OK ||
        qref_prompt_prefill(&r->m, &restored, suffix, split, T, 0, QREF_GDN_AUTO, lr + (size_t)split * V, &qe) != QREF_OK)
        goto engine_error;
    if (!lc__decode(r, &restored, toks, N, dr))
        goto done;
    snprintf(name, sizeof name, "%s: suffix logits after restoring the snapshot at %d vs fresh run", what, split);
    lc__compare_real(r, CMP_BITWISE, name, "restored snapshot", "fresh run", lr + (size_t)split * V,
                     lf + (size_t)split * V, (size_t)(T - split), (size_t)V, NULL);
    snprintf(name, sizeof name, "%s: decode logits after restore vs fresh run", what);
    lc__compare_real(r, CMP_BITWISE, name, "restored snapshot", "fresh run", dr, df, (size_t)N, (size_t)V, NULL);
    snprintf(name, sizeof name, "%s: decode logits of the live cache that was snapshotted vs fresh run", what);
    lc__compare_real(r, CMP_BITWISE, name, "live cache", "fresh run", dl, df, (size_t)N, (size_t)V, NULL);
    /* exact full-prompt hit: restore the whole-prompt snapshot and decode at once */
    if (qref_cache_clone(&hit, &full_snap, &qe) != QREF_OK)
        goto engine_error;
    if (r->o->refeed_last_token && !lc__decode(r, &hit, &p->ids[T - 1], 1, NULL))
        goto done;
    if (!lc__decode(r, &hit, toks, N, dh))
        goto done;
    snprintf(name, sizeof name, "%s: decode logits after an exact full-prompt hit vs fresh run", what);
    lc__compare_real(r, CMP_BITWISE, name, "prefix-cache hit", "fresh run", dh, df, (size_t)N, (size_t)V, NULL);
    /* a different schedule: the whole prompt in one prefill call */
    if (!lc__prefill(r, p, T, 0, QREF_GDN_AUTO, &one, lo) || !lc__decode(r, &one, toks, N, done_))
        goto done;
    snprintf(name, sizeof name, "%s: suffix and decode logits after restore vs one-shot prefill", what);
    {
        size_t rows = (size_t)(T - split) + (size_t)N;
        qref_real *a = malloc(rows * V * sizeof *a), *e = malloc(rows * V * sizeof *e);
        if (a && e) {
            memcpy(a, lr + (size_t)split * V, (size_t)(T - split) * V * sizeof *a);
            memcpy(a + (size_t)(T - split) * V, dr, (size_t)N * V * sizeof *a);
            memcpy(e, lo + (size_t)split * V, (size_t)(T - split) * V * sizeof *e);
            memcpy(e + (size_t)(T - split) * V, done_, (size_t)N * V * sizeof *e);
            lc__compare_real(r, CMP_LOGITS, name, "restored snapshot", "one-shot prefill", a, e, rows, (size_t)V, NULL);
        }
        free(a);
        free(e);
    }
    goto done;
engine_error:
    lc__set_error(r, "case '%s': %s", r->c->name, qe.msg);
done:
    qref_cache_free(&fresh);
    qref_cache_free(&live);
    if (!r->o->shallow_snapshot)
        qref_cache_free(&snap);
    qref_cache_free(&restored);
    qref_cache_free(&full_snap);
    qref_cache_free(&hit);
    qref_cache_free(&one);
    free(lf);
    free(lr);
    free(lo);
    free(df);
    free(dr);
    free(dh);
    free(dl);
    free(done_);
    free(toks);
}

void lc__kind_snapshot(lc__run *r)
{
    qref_prompt p = {0};
    if (lc__build_prompt(r, &r->c->prompt, &p)) {
        if (r->c->split < 1 || r->c->split >= p.n)
            lc__set_error(r, "%s: case '%s': split %d must lie inside the prompt of %d tokens", r->c->file,
                          r->c->name, r->c->split, p.n);
        else
            kind_snapshot_at(r, &p, NULL, r->c->split, "snapshot");
    }
    qref_prompt_free(&p);
}

/* ---------------------------------------------------------------- image_checkpoint */

/* Runs the vision tower over the images [first, first + n) of a case prompt alone;
 * *rows ((their placeholder count), H) malloc'ed. */
static int vision_rows(lc__run *r, const lc_prompt *lp, int first, int n, qref_real **rows, int *n_rows)
{
    lc_image_set set = {0};
    int (*grid)[3] = calloc((size_t)n + 1, sizeof *grid);
    qref_error qe;
    int ok = 0;
    *rows = NULL;
    *n_rows = 0;
    if (!grid) {
        lc__set_error(r, "out of memory");
        return 0;
    }
    if (lc__load_images(r, lp, first, n, &set)) {
        if (qref_images_embed(&r->m, set.images, set.n, grid, rows, n_rows, &qe) != QREF_OK)
            lc__set_error(r, "case '%s': %s", r->c->name, qe.msg);
        else
            ok = 1;
    }
    free(grid);
    lc_image_set_free(&set);
    return ok;
}

/* A multi-turn prompt: turn 1 ends one past the vision_end of the image segment
 * `after_segment` (image_end_index), where a checkpoint is taken. Turn 2 restores it and
 * prefills only the suffix, with the vision tower run only on the images that are new in the
 * suffix; positions still come from the whole prompt. Checked: everything kind_snapshot_at
 * checks at that boundary (restored suffix with the new-images-only embeddings), the new
 * images' embeddings vs the whole-prompt vision run, and the reused images' embeddings from a
 * fresh vision run vs turn 1's. */
void lc__kind_image_checkpoint(lc__run *r)
{
    const lc_case *cs = r->c;
    const int H = r->m.cfg.hidden_size;
    qref_prompt p = {0}, turn2 = {0};
    qref_real *fresh_old = NULL, *fresh_new = NULL, *rows2 = NULL;
    if (!lc__build_prompt(r, &cs->prompt, &p))
        goto done;
    if (cs->after_segment < 0 || cs->after_segment >= cs->prompt.n_segs ||
        cs->prompt.segs[cs->after_segment].type != LC_SEG_IMAGE) {
        lc__set_error(r, "%s: case '%s': after_segment %d is not an image segment", cs->file, cs->name,
                      cs->after_segment);
        goto done;
    }
    int images_before = 0;
    for (int s = 0; s <= cs->after_segment; s++)
        images_before += cs->prompt.segs[s].type == LC_SEG_IMAGE;
    int seen = 0, end = -1, emb_before = 0;
    for (int i = 0; i < p.n && end < 0; i++) {
        emb_before += r->m.cfg.has_vision && p.ids[i] == r->m.cfg.image_token_id;
        if (p.ids[i] == r->m.cfg.vision_end_token_id && ++seen == images_before)
            end = i + 1;
    }
    if (end <= 0 || end >= p.n) {
        lc__set_error(r, "%s: case '%s': the image of segment %d must be followed by more prompt", cs->file, cs->name,
                      cs->after_segment);
        goto done;
    }
    const int new_images = p.n_images - images_before;
    /* reused images: a fresh vision run gives turn 1's embeddings, bitwise */
    int n_old = 0, n_new = 0;
    if (!vision_rows(r, &cs->prompt, 0, images_before, &fresh_old, &n_old))
        goto done;
    if (n_old != emb_before) {
        lc__set_error(r, "case '%s': %d placeholders before the checkpoint, %d embeddings", cs->name, emb_before, n_old);
        goto done;
    }
    lc__compare_real(r, CMP_BITWISE, "reused image embeddings: fresh vision run vs turn 1", "fresh vision run",
                     "turn 1 prompt", fresh_old, p.embeds, (size_t)n_old, (size_t)H, NULL);
    /* turn 2: the suffix's embeddings from a vision run over the new images only */
    turn2 = p;
    turn2.embeds = NULL;
    rows2 = calloc(((size_t)p.n_embeds + 1) * H, sizeof *rows2);
    if (!rows2) {
        lc__set_error(r, "out of memory");
        goto done;
    }
    if (new_images > 0) {
        if (!vision_rows(r, &cs->prompt, images_before, new_images, &fresh_new, &n_new))
            goto done;
        if (n_old + n_new != p.n_embeds) {
            lc__set_error(r, "case '%s': %d + %d embeddings, the prompt has %d", cs->name, n_old, n_new, p.n_embeds);
            goto done;
        }
        memcpy(rows2 + (size_t)n_old * H, fresh_new, (size_t)n_new * H * sizeof *rows2);
        lc__compare_real(r, CMP_BITWISE, "new image embeddings: turn 2 vision run (new images only) vs whole prompt",
                         "turn 2 vision run", "whole-prompt vision run", fresh_new, p.embeds + (size_t)n_old * H,
                         (size_t)n_new, (size_t)H, NULL);
    }
    turn2.embeds = rows2; /* rows of reused images left zero: turn 2 must not need them */
    kind_snapshot_at(r, &p, &turn2, end, "image checkpoint");
done:
    qref_prompt_free(&p);
    free(fresh_old);
    free(fresh_new);
    free(rows2);
}
