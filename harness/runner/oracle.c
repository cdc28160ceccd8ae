/* SPDX-License-Identifier: MIT */
/*
 * Differential mode: the oracle engine run on a case's inputs, its outputs standing in for the
 * arrays of the case's golden group (see runner_internal.h, lc__oracle_fill).
 *
 * The oracle runs as transformers ran for the goldens: the prompt opened and prefilled in one
 * span (every logits row, the residual stream where it has the hidden tap, the merged vision
 * embeddings where it has the vision tap), the decode tokens chosen greedily from its own rows
 * (or the case's explicit ids), batch rows each alone at their padded positions. The oracle is
 * a second lc__run over the same case: its arena, handles and errors are its own, and what it
 * produced is copied into the case's arena before its run is released.
 *
 * Memory: the golden kind holds the oracle's (T, V) prefill rows and (N, V) decode rows, the
 * batch kind (B, L, V) and (B, N, V), once in the case's arena (the copy) while the oracle's
 * own run holds them too until it is released: the engine interface returns a prefill's rows
 * all at once, so these kinds cannot stream row by row.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* Adds array `name` (copied into the case's arena) to g, and to the oracle cache. */
static int put(lc__run *r, lc__golden *g, const char *name, const double *data, int ndim, const int64_t *shape,
               int ints)
{
    if (!lc__ok(r) || !data) /* NULL: an earlier step of the oracle's run failed and said why */
        return 0;
    if (g->n_sets == LC__MAX_GSETS) {
        lc__set_error(r, "case '%s': the oracle's outputs hold more than %d arrays", r->c->name, LC__MAX_GSETS);
        return 0;
    }
    lc__gset *s = &g->sets[g->n_sets];
    size_t n = 1;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->shape.ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        s->shape.shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    s->shape.count = n;
    s->ints = ints;
    if (!(s->data = lc__alloc(r, (n ? n : 1) * sizeof *s->data)))
        return 0;
    memcpy(s->data, data, n * sizeof *data);
    g->n_sets++;

    lc_h5 *out = r->o->cache_out;
    if (!out)
        return 1;
    char path[512];
    lc_error le = {0};
    int rc;
    snprintf(path, sizeof path, "/cases/%s/%s", r->c->name, name);
    if (ints) {
        int64_t *v = lc__alloc(r, (n ? n : 1) * sizeof *v);
        if (!v)
            return 0;
        for (size_t i = 0; i < n; i++)
            v[i] = (int64_t)llround(data[i]);
        rc = lc_h5_write_i64(out, path, v, ndim, shape, &le);
    } else {
        rc = lc_h5_write_f64(out, path, data, ndim, shape, &le);
    }
    if (rc) {
        lc__set_error(r, "oracle cache: %s", le.msg);
        return 0;
    }
    return 1;
}

static double *as_doubles_i32(lc__run *r, const int32_t *v, size_t n)
{
    double *d = lc__alloc(r, (n ? n : 1) * sizeof *d);
    for (size_t i = 0; d && i < n; i++)
        d[i] = v[i];
    return d;
}

static double *as_doubles_i64(lc__run *r, const int64_t *v, size_t n)
{
    double *d = lc__alloc(r, (n ? n : 1) * sizeof *d);
    for (size_t i = 0; d && i < n; i++)
        d[i] = (double)v[i];
    return d;
}

/* golden, multi_image: expansion, positions, vision embeddings, the residual stream at the
 * last prompt position, prefill logits, greedy decode tokens and their logits. */
static void oracle_golden(lc__run *o, lc__run *r, lc__golden *g)
{
    const lc_prompt_info *p = lc__prompt(o, &o->c->prompt, 0);
    if (!p)
        return;
    const int T = p->n, V = o->V, H = o->H, NL = o->NL;
    int64_t sT[1] = {T}, s3T[2] = {3, T}, sTV[2] = {T, V};
    if (!put(r, g, "input_ids", as_doubles_i32(o, p->ids, (size_t)T), 1, sT, 1))
        return;
    if (p->pos) {
        double delta = (double)p->rope_delta;
        if (!put(r, g, "position_ids", as_doubles_i64(o, p->pos, (size_t)3 * T), 2, s3T, 1) ||
            !put(r, g, "rope_delta", &delta, 0, NULL, 1))
            return;
    }
    int n_emb = 0;
    for (int i = 0; i < T; i++)
        n_emb += o->mi.has_vision && p->ids[i] == o->mi.image_token_id;
    if (n_emb > 0 && lc__has(o, LC_CAP_VISION)) {
        int rows = 0;
        const double *emb = lc__vision(o, p, &rows);
        int64_t sE[2] = {rows, H};
        if (!emb || !put(r, g, "vision_embeds", emb, 2, sE, 0))
            return;
    }
    const int hid = lc__has(o, LC_CAP_HIDDEN);
    double *logits = lc__alloc(o, (size_t)T * V * sizeof *logits);
    double *hidden = hid ? lc__alloc(o, (size_t)(NL + 1) * T * H * sizeof *hidden) : NULL;
    int seq = lc__seq(o);
    lc_prefill_out po = {.sel = LC_LOGITS_ALL, .logits = logits, .hidden = hidden};
    lc_error err = {0};
    if (!logits || (hid && !hidden) || seq < 0 ||
        !lc__engine_ok(o, lc_engine_prefill(o->e, seq, p->handle, 0, T, &po, &err), &err))
        return;
    if (hid) {
        double *last = lc__alloc(o, (size_t)(NL + 1) * H * sizeof *last);
        int64_t sLH[2] = {NL + 1, H};
        for (int l = 0; last && l <= NL; l++)
            memcpy(last + (size_t)l * H, hidden + ((size_t)l * T + (T - 1)) * H, (size_t)H * sizeof *last);
        if (!last || !put(r, g, "hidden_last", last, 2, sLH, 0))
            return;
    }
    if (!put(r, g, "prefill_logits", logits, 2, sTV, 0))
        return;
    int N = 0;
    int32_t *toks = lc__decode_plan(o, logits + (size_t)(T - 1) * V, &N);
    if (!toks || N <= 0)
        return;
    double *dec = lc__alloc(o, (size_t)N * V * sizeof *dec);
    int64_t sN[1] = {N}, sNV[2] = {N, V};
    if (!dec || !lc__decode(o, seq, toks, N, dec, LC__CHOOSE))
        return;
    if (put(r, g, "decode_tokens", as_doubles_i32(o, toks, (size_t)N), 1, sN, 1))
        put(r, g, "decode_logits", dec, 2, sNV, 0);
}

/* batch: each row alone at its left-padded positions (NaN at pads), its decode tokens chosen
 * greedily from its own rows, as the goldens' batched transformers run gives them. */
static void oracle_batch(lc__run *o, lc__run *r, lc__golden *g)
{
    const lc_case *cs = o->c;
    const int V = o->V, B = cs->n_rows;
    const lc_prompt_info **rows = lc__alloc(o, (size_t)B * sizeof *rows);
    int *alone = lc__alloc(o, (size_t)B * sizeof *alone);
    if (!rows || !alone)
        return;
    int L = 0;
    for (int b = 0; b < B; b++) {
        if (!(rows[b] = lc__prompt(o, &cs->rows[b], 0)))
            return;
        L = rows[b]->n > L ? rows[b]->n : L;
    }
    const size_t BLV = (size_t)B * L * V;
    double *logits = lc__nans(o, BLV), *row = lc__alloc(o, (size_t)L * V * sizeof *row);
    double *mask = lc__alloc(o, (size_t)B * L * sizeof *mask);
    if (!logits || !row || !mask)
        return;
    for (int b = 0; b < B; b++) {
        const int n = rows[b]->n;
        if ((alone[b] = lc__prefilled(o, rows[b], n, 0, row)) < 0)
            return;
        memcpy(logits + ((size_t)b * L + (L - n)) * V, row, (size_t)n * V * sizeof *row);
        for (int l = L - n; l < L; l++)
            mask[(size_t)b * L + l] = 1;
    }
    int64_t sBL[2] = {B, L}, sBLV[3] = {B, L, V};
    if (!put(r, g, "attention_mask", mask, 2, sBL, 1) || !put(r, g, "logits", logits, 3, sBLV, 0))
        return;
    const int N = cs->decode.mode == LC_DECODE_GREEDY ? cs->decode.greedy
                : cs->decode.mode == LC_DECODE_IDS  ? cs->decode.n_ids
                                                    : 0;
    if (N <= 0)
        return;
    double *toks = lc__alloc(o, (size_t)B * N * sizeof *toks), *dec = lc__alloc(o, (size_t)B * N * V * sizeof *dec);
    if (!toks || !dec)
        return;
    for (int b = 0; b < B; b++) {
        const double *last = logits + ((size_t)b * L + L - 1) * V;
        for (int i = 0; i < N; i++) {
            int32_t t = cs->decode.mode == LC_DECODE_IDS ? cs->decode.ids[i] : lc__greedy(o, last);
            double *out = dec + ((size_t)b * N + i) * V;
            if (!lc__decode(o, alone[b], &t, 1, out, LC__FORCED))
                return;
            toks[(size_t)b * N + i] = t;
            last = out;
        }
    }
    int64_t sBN[2] = {B, N}, sBNV[3] = {B, N, V};
    if (put(r, g, "decode_tokens", toks, 2, sBN, 1))
        put(r, g, "decode_logits", dec, 3, sBNV, 0);
}

/* mtp_head: prefill logits, the MTP draft logits teacher-forced at every prompt position whose
 * next token is text (NaN rows elsewhere, which the kind does not compare), then the chained
 * greedy drafts after the prompt and their logits: the arrays export_mtp.py writes. */
static void oracle_mtp_head(lc__run *o, lc__run *r, lc__golden *g)
{
    const lc_prompt_info *p = lc__prompt(o, &o->c->prompt, 0);
    if (!p)
        return;
    if (!lc__has(o, LC_CAP_MTP)) {
        lc__set_error(o, "the oracle lacks mtp (drafts of the checkpoint's MTP head)");
        return;
    }
    const int T = p->n, V = o->V, K = o->c->draft_k;
    if (T < 2 || K < 1) {
        lc__set_error(o, "case '%s': an mtp_head case needs a prompt of at least 2 tokens and draft_k >= 1",
                      o->c->name);
        return;
    }
    double *pre = lc__alloc(o, (size_t)T * V * sizeof *pre), *mtp = lc__nans(o, (size_t)(T - 1) * V);
    double *chain = lc__alloc(o, (size_t)K * V * sizeof *chain);
    int32_t *d = lc__alloc(o, (size_t)K * sizeof *d);
    if (!pre || !mtp || !chain || !d)
        return;
    int whole = lc__prefilled(o, p, T, 0, pre);
    int s = whole >= 0 ? lc__prefilled(o, p, 1, 0, NULL) : -1;
    lc_error err = {0};
    for (int t = 0; s >= 0 && t + 1 < T; t++) {
        const int32_t next = p->ids[t + 1];
        if (!(o->mi.has_vision && next == o->mi.image_token_id) &&
            !lc__engine_ok(o, lc_engine_draft(o->e, s, next, 1, d, mtp + (size_t)t * V, &err), &err))
            return;
        if (!lc__prefill(o, s, p, t + 1, t + 2, 0, NULL))
            return;
    }
    if (s < 0 || !lc__ok(o))
        return;
    const int32_t first = lc__greedy(o, pre + (size_t)(T - 1) * V);
    if (!lc__engine_ok(o, lc_engine_draft(o->e, whole, first, K, d, chain, &err), &err))
        return;
    int64_t sTV[2] = {T, V}, sT1V[2] = {T - 1, V}, sKV[2] = {K, V}, sK[1] = {K};
    if (put(r, g, "prefill_logits", pre, 2, sTV, 0) && put(r, g, "mtp_logits", mtp, 2, sT1V, 0) &&
        put(r, g, "chain_logits", chain, 2, sKV, 0))
        put(r, g, "chain_tokens", as_doubles_i32(o, d, (size_t)K), 1, sK, 1);
}

int lc__oracle_fill(lc__run *r, lc__golden *g)
{
    lc_engine *oe = r->o->oracle;
    lc_case_result scratch;
    memset(&scratch, 0, sizeof scratch);
    scratch.verdict = LC_VERDICT_PASS;
    lc__run o = {0};
    o.c = r->c;
    o.o = r->o;
    o.res = &scratch;
    o.e = oe;
    o.golden.f.id = -1;
    o.prec = oe->info.precision;
    lc_error err = {0};
    if (lc__engine_ok(&o, lc_engine_reset(oe, &err), &err) &&
        lc__engine_ok(&o, lc_engine_load(oe, r->dir, &o.mi, &err), &err)) {
        o.V = o.mi.vocab_size;
        o.H = o.mi.hidden_size;
        o.NL = o.mi.num_layers;
        if (o.V != r->V || o.H != r->H || o.NL != r->NL || o.mi.has_vision != r->mi.has_vision ||
            o.mi.image_token_id != r->mi.image_token_id)
            lc__set_error(&o, "%s: the oracle reads the checkpoint as vocabulary %d, hidden %d, %d layers, vision %d "
                          "(image id %d); the engine as %d, %d, %d, %d (%d)", r->dir, o.V, o.H, o.NL, o.mi.has_vision,
                          o.mi.image_token_id, r->V, r->H, r->NL, r->mi.has_vision, r->mi.image_token_id);
        else if (r->c->kind == LC_KIND_BATCH)
            oracle_batch(&o, r, g);
        else if (r->c->kind == LC_KIND_MTP_HEAD)
            oracle_mtp_head(&o, r, g);
        else
            oracle_golden(&o, r, g);
    }
    if (r->o->cache_out && lc__ok(&o) && lc__ok(r)) {
        char grp[512];
        lc_error le = {0};
        snprintf(grp, sizeof grp, "/cases/%s", r->c->name);
        if (lc_h5_write_attr_str(r->o->cache_out, grp, "kind", lc_kind_name(r->c->kind), &le))
            lc__set_error(r, "oracle cache: %s", le.msg);
    }
    lc__run_release(&o);
    if (o.engine_failed) {
        lc_error rerr = {0};
        if (lc_engine_restart(oe, &rerr) != LC_OK) {
            size_t n = strlen(scratch.reason);
            snprintf(scratch.reason + n, sizeof scratch.reason - n, " (oracle restart failed: %s)", rerr.msg);
        }
    }
    if (scratch.verdict == LC_VERDICT_ERROR)
        lc__set_error(r, "oracle %s: %s", r->o->oracle_name ? r->o->oracle_name : "", scratch.reason);
    return lc__ok(r);
}
