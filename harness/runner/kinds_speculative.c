/* SPDX-License-Identifier: MIT */
/*
 * Speculative decoding kinds: speculative (verify k+1 tokens at a time against plain greedy
 * decoding, MTP drafts or harness-forced accept counts, then the prefix cache) and mtp_head
 * (the MTP head's draft logits against the golden assembled from transformers' modules).
 *
 * Token indexing: tok[i] is the i-th generated token (tok[0] chosen from the prompt's last
 * logits row), row[i] the logits row it is chosen from; row[i] for i >= 1 is what feeding
 * tok[i - 1] gives. A budget of N tokens feeds tok[0..N-2].
 */
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- helpers */

static int is_special(const lc__run *r, int32_t t)
{
    const lc_model_info *m = &r->mi;
    return t == m->image_token_id || t == m->video_token_id || t == m->vision_start_token_id ||
           t == m->vision_end_token_id;
}

/* A draft that is certainly rejected: not `right`, not a vision special id. */
static int32_t wrong_token(const lc__run *r, int32_t right, int i)
{
    int32_t t = (int32_t)((right + 1 + 37 * (int64_t)i) % r->V);
    while (t == right || is_special(r, t))
        t = (t + 1) % r->V;
    return t;
}

/* ---------------------------------------------------------------- speculative */

typedef struct {
    int steps, drafted, accepted;
    int snap, snap_len;         /* snapshot at the last step that rejected drafts, its generated length */
} spec_stats;

/* Plain greedy decoding (path B): tok (N), rows (N, V) from a fresh prefill of the prompt. */
static int plain_greedy(lc__run *r, const lc_prompt_info *p, int N, int32_t *tok, double *rows, int *seq)
{
    const int V = r->V, T = p->n;
    double *pre = lc__alloc(r, (size_t)T * V * sizeof *pre);
    int s = pre ? lc__prefilled(r, p, T, 0, pre) : -1;
    if (s < 0)
        return 0;
    memcpy(rows, pre + (size_t)(T - 1) * V, (size_t)V * sizeof *rows);
    tok[0] = lc__greedy(r, rows);
    for (int i = 1; i < N; i++) {
        lc_error err = {0};
        if (!lc__engine_ok(r, lc_engine_decode(r->e, s, tok[i - 1], rows + (size_t)i * V, &err), &err))
            return 0;
        tok[i] = lc__greedy(r, rows + (size_t)i * V);
    }
    *seq = s;
    return 1;
}

/* Speculative decoding (path A) of the same budget: MTP drafts accepted greedily, or the
 * case's forced accept counts with drafts made from path B's tokens (right up to the forced
 * count, certainly wrong after it). tok, rows as path B gives them. */
static int speculative(lc__run *r, const lc_prompt_info *p, int N, const int32_t *ref, int32_t *tok, double *rows,
                       int *seq, spec_stats *st)
{
    const lc_case *cs = r->c;
    const int V = r->V, T = p->n, K = cs->draft_k;
    double *pre = lc__alloc(r, (size_t)T * V * sizeof *pre), *vr = lc__alloc(r, (size_t)(K + 1) * V * sizeof *vr);
    int32_t *ids = lc__alloc(r, (size_t)(K + 1) * sizeof *ids);
    int s = pre && vr && ids ? lc__prefilled(r, p, T, 0, pre) : -1;
    if (s < 0)
        return 0;
    memcpy(rows, pre + (size_t)(T - 1) * V, (size_t)V * sizeof *rows);
    tok[0] = lc__greedy(r, rows);
    st->snap = -1;
    for (int pos = 0; pos <= N - 2;) {
        const int k = K < N - 2 - pos ? K : N - 2 - pos; /* the budget: rows up to N - 1 */
        lc_error err = {0};
        ids[0] = tok[pos];
        int forced = cs->n_accept ? cs->accept[st->steps % cs->n_accept] : -1;
        if (forced > k)
            forced = k;
        if (k > 0 && forced < 0) {
            if (!lc__engine_ok(r, lc_engine_draft(r->e, s, tok[pos], k, ids + 1, NULL, &err), &err))
                return 0;
        } else {
            for (int i = 0; i < k; i++)
                ids[1 + i] = i < forced ? ref[pos + 1 + i] : wrong_token(r, ref[pos + 1 + i], i);
        }
        if (!lc__engine_ok(r, lc_engine_verify(r->e, s, ids, k + 1, vr, &err), &err))
            return 0;
        int a = 0;
        if (forced >= 0)
            a = forced;
        else
            while (a < k && ids[1 + a] == lc__greedy(r, vr + (size_t)a * V))
                a++;
        if (!lc__engine_ok(r, lc_engine_accept(r->e, s, a, &err), &err))
            return 0;
        for (int i = 0; i <= a; i++) {
            memcpy(rows + (size_t)(pos + 1 + i) * V, vr + (size_t)i * V, (size_t)V * sizeof *rows);
            tok[pos + 1 + i] = lc__greedy(r, vr + (size_t)i * V);
        }
        pos += a + 1;
        st->steps++;
        st->drafted += k;
        st->accepted += a;
        if (cs->suffix && a < k) { /* rejected drafts: the prefix cache stores this boundary */
            if (st->snap >= 0)
                lc_engine_snap_release(r->e, st->snap);
            if ((st->snap = lc__snapshot(r, s)) < 0)
                return 0;
            st->snap_len = pos;
        }
    }
    if (cs->suffix && st->snap < 0) {
        if ((st->snap = lc__snapshot(r, s)) < 0)
            return 0;
        st->snap_len = N - 1;
    }
    *seq = s;
    return 1;
}

/* A second request: the first one's prompt and generated prefix tok[0..m), then the case's
 * suffix. Restored from the snapshot and decoded token by token, against a cold prefill of
 * the whole request. */
static void prefix_request(lc__run *r, const lc_prompt_info *p, const int32_t *tok, const spec_stats *st)
{
    const lc_case *cs = r->c;
    const int V = r->V, T = p->n, m = st->snap_len, nq = cs->n_suffix;
    int32_t *pre = lc__alloc(r, (size_t)(m ? m : 1) * sizeof *pre);
    lc_prompt ext = {.n_segs = cs->prompt.n_segs + 2};
    ext.segs = lc__alloc(r, (size_t)ext.n_segs * sizeof *ext.segs);
    double *warm = lc__alloc(r, (size_t)nq * V * sizeof *warm);
    double *cold = lc__alloc(r, (size_t)(T + m + nq) * V * sizeof *cold);
    if (!pre || !ext.segs || !warm || !cold)
        return;
    memcpy(pre, tok, (size_t)m * sizeof *pre);
    memcpy(ext.segs, cs->prompt.segs, (size_t)cs->prompt.n_segs * sizeof *ext.segs);
    ext.segs[cs->prompt.n_segs] = (lc_segment){.type = LC_SEG_IDS, .ids = pre, .n_ids = m};
    ext.segs[cs->prompt.n_segs + 1] = (lc_segment){.type = LC_SEG_IDS, .ids = cs->suffix, .n_ids = nq};
    if (m == 0) { /* no generated prefix: drop the empty segment */
        ext.segs[cs->prompt.n_segs] = ext.segs[cs->prompt.n_segs + 1];
        ext.n_segs--;
    }
    const int w = lc__restore(r, st->snap);
    int32_t *q = lc__alloc(r, (size_t)nq * sizeof *q);
    if (w < 0 || !q)
        return;
    memcpy(q, cs->suffix, (size_t)nq * sizeof *q);
    if (!lc__decode(r, w, q, nq, warm, LC__FORCED))
        return;
    const lc_prompt_info *x = lc__prompt(r, &ext, 0);
    if (!x || lc__prefilled(r, x, x->n, 0, cold) < 0)
        return;
    lc__compare(r, "prefix_restore", "second request: restored from the snapshot at the accepted boundary vs a cold run",
                LC_CLASS_CROSS, LC__ROWS, "restored + decode", "cold prefill", warm, cold + (size_t)(T + m) * V,
                (size_t)nq, (size_t)V, NULL, NULL);
}

/* A batch of sequences verified together (the prompt, then the case's rows): row b drafts
 * row_k[b] per step (0: a plain decode step inside the batched verify), forced counts
 * accept[(step + b) % n] (or greedy MTP acceptance), so the rows accept different counts in the
 * same call; each row against its own plain greedy decoding. */
static void speculative_batch(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V, N = cs->decode.greedy, B = cs->n_rows + 1, K = cs->draft_k;
    const lc_prompt_info **p = lc__alloc(r, (size_t)B * sizeof *p);
    int32_t **tb = lc__alloc(r, (size_t)B * sizeof *tb), **ta = lc__alloc(r, (size_t)B * sizeof *ta);
    double **rb = lc__alloc(r, (size_t)B * sizeof *rb), **ra = lc__alloc(r, (size_t)B * sizeof *ra);
    int *sb = lc__alloc(r, (size_t)B * sizeof *sb), *sa = lc__alloc(r, (size_t)B * sizeof *sa);
    int *pos = lc__alloc(r, (size_t)B * sizeof *pos), *kk = lc__alloc(r, (size_t)B * sizeof *kk);
    int *fa = lc__alloc(r, (size_t)B * sizeof *fa), *seqs = lc__alloc(r, (size_t)B * sizeof *seqs);
    int *counts = lc__alloc(r, (size_t)B * sizeof *counts), *rowof = lc__alloc(r, (size_t)B * sizeof *rowof);
    int32_t *toks = lc__alloc(r, (size_t)B * (K + 1) * sizeof *toks);
    double *lg = lc__alloc(r, (size_t)B * (K + 1) * V * sizeof *lg);
    int64_t *ia = lc__alloc(r, (size_t)N * sizeof *ia), *ib = lc__alloc(r, (size_t)N * sizeof *ib);
    if (!p || !tb || !ta || !rb || !ra || !sb || !sa || !pos || !kk || !fa || !seqs || !counts || !rowof || !toks ||
        !lg || !ia || !ib)
        return;
    for (int b = 0; b < B; b++) {
        p[b] = lc__prompt(r, b ? &cs->rows[b - 1] : &cs->prompt, 0);
        tb[b] = lc__alloc(r, (size_t)N * sizeof **tb);
        ta[b] = lc__alloc(r, (size_t)N * sizeof **ta);
        rb[b] = lc__alloc(r, (size_t)N * V * sizeof **rb);
        ra[b] = lc__nans(r, (size_t)N * V);
        if (!p[b] || !tb[b] || !ta[b] || !rb[b] || !ra[b] || !plain_greedy(r, p[b], N, tb[b], rb[b], &sb[b]))
            return;
        double *pre = lc__alloc(r, (size_t)p[b]->n * V * sizeof *pre);
        if (!pre || (sa[b] = lc__prefilled(r, p[b], p[b]->n, 0, pre)) < 0)
            return;
        memcpy(ra[b], pre + (size_t)(p[b]->n - 1) * V, (size_t)V * sizeof *pre);
        ta[b][0] = lc__greedy(r, ra[b]);
    }
    for (int step = 0;; step++) {
        int nb = 0, L = 0;
        size_t at = 0;
        lc_error err = {0};
        for (int b = 0; b < B; b++) {
            if (pos[b] > N - 2)
                continue;
            const int k = cs->row_k[b] < N - 2 - pos[b] ? cs->row_k[b] : N - 2 - pos[b];
            int forced = cs->n_accept ? cs->accept[(step + b) % cs->n_accept] : -1;
            forced = forced > k ? k : forced;
            int32_t *ids = toks + at;
            ids[0] = ta[b][pos[b]];
            if (k > 0 && forced < 0) {
                if (!lc__engine_ok(r, lc_engine_draft(r->e, sa[b], ids[0], k, ids + 1, NULL, &err), &err))
                    return;
            } else {
                for (int i = 0; i < k; i++)
                    ids[1 + i] = i < forced ? tb[b][pos[b] + 1 + i] : wrong_token(r, tb[b][pos[b] + 1 + i], i);
            }
            kk[nb] = k;
            fa[nb] = forced;
            rowof[nb] = b;
            seqs[nb] = sa[b];
            counts[nb] = k + 1;
            L = k + 1 > L ? k + 1 : L;
            at += (size_t)k + 1;
            nb++;
        }
        if (!nb)
            break;
        if (!lc__engine_ok(r, lc_engine_batch_verify(r->e, seqs, nb, toks, counts, lg, &err), &err))
            return;
        for (int j = 0; j < nb; j++) {
            const int b = rowof[j], k = kk[j];
            const double *vr = lg + (size_t)j * L * V;
            const int32_t *ids = toks;
            for (int q = 0; q < j; q++)
                ids += counts[q];
            int a = fa[j] >= 0 ? fa[j] : 0;
            while (fa[j] < 0 && a < k && ids[1 + a] == lc__greedy(r, vr + (size_t)a * V))
                a++;
            if (!lc__engine_ok(r, lc_engine_accept(r->e, sa[b], a, &err), &err))
                return;
            for (int i = 0; i <= a; i++) {
                memcpy(ra[b] + (size_t)(pos[b] + 1 + i) * V, vr + (size_t)i * V, (size_t)V * sizeof *vr);
                ta[b][pos[b] + 1 + i] = lc__greedy(r, vr + (size_t)i * V);
            }
            pos[b] += a + 1;
        }
    }
    for (int b = 0; b < B; b++) {
        char id[64], title[160];
        for (int i = 0; i < N; i++) {
            ia[i] = ta[b][i];
            ib[i] = tb[b][i];
        }
        snprintf(id, sizeof id, "row%d.tokens", b);
        snprintf(title, sizeof title, "batch row %d (%d drafts per step): tokens vs the row decoded alone", b,
                 cs->row_k[b]);
        lc__compare_ints(r, id, title, "batched verify", "plain greedy alone", ia, ib, 1, (size_t)N);
        snprintf(id, sizeof id, "row%d.logits", b);
        snprintf(title, sizeof title, "batch row %d: logits of every generated token vs plain decode alone", b);
        lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "batched verify", "plain decode alone", ra[b], rb[b],
                    (size_t)N, (size_t)V, NULL, NULL);
        snprintf(id, sizeof id, "row%d.state", b);
        snprintf(title, sizeof title, "batch row %d: state after the last step vs plain decode alone", b);
        lc__compare_states(r, id, title, LC_CLASS_CROSS, "batched verify", "plain decode alone", sa[b], sb[b]);
    }
}

/* Greedy speculative decoding (MTP drafts, or forced accept counts) against plain greedy
 * decoding of the same budget: same tokens, logits rows within the cross-schedule bound, the
 * same final state; then, with a suffix, a second request sharing the first one's accepted
 * prefix restored from a snapshot against a cold run. With rows: speculative_batch. */
void lc__kind_speculative(lc__run *r)
{
    const lc_case *cs = r->c;
    if (cs->n_rows) {
        speculative_batch(r);
        return;
    }
    const int V = r->V, N = cs->decode.greedy;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    int32_t *tb = lc__alloc(r, (size_t)N * sizeof *tb), *ta = lc__alloc(r, (size_t)N * sizeof *ta);
    int64_t *ia = lc__alloc(r, (size_t)N * sizeof *ia), *ib = lc__alloc(r, (size_t)N * sizeof *ib);
    double *rb = lc__alloc(r, (size_t)N * V * sizeof *rb), *ra = lc__nans(r, (size_t)N * V);
    int sb = -1, sa = -1;
    spec_stats st = {0};
    if (!p || !tb || !ta || !ia || !ib || !rb || !ra || !plain_greedy(r, p, N, tb, rb, &sb) ||
        !speculative(r, p, N, tb, ta, ra, &sa, &st))
        return;
    for (int i = 0; i < N; i++) {
        ia[i] = ta[i];
        ib[i] = tb[i];
    }
    lc__compare_ints(r, "tokens", "generated tokens: speculative vs plain greedy", "speculative", "plain greedy", ia, ib,
                     1, (size_t)N);
    lc__compare(r, "logits", "logits of every generated token: verify rows vs plain decode", LC_CLASS_CROSS, LC__ROWS,
                "speculative (verify)", "plain decode", ra, rb, (size_t)N, (size_t)V, NULL, NULL);
    lc__compare_states(r, "state", "sequence state after the last step: speculative vs plain decode", LC_CLASS_CROSS,
                       "speculative", "plain decode", sa, sb);
    if (cs->suffix && lc__ok(r))
        prefix_request(r, p, ta, &st);
}

/* ---------------------------------------------------------------- mtp_head */

/* The MTP head against the golden: teacher-forced draft logits at every prompt position t
 * (the sequence holds tokens [0, t], the next token is the prompt's token t + 1; rows whose
 * next token is an image placeholder are left to the catch-up, which feeds the placeholder's
 * vision row, and are not compared), then k chained drafts after the whole prompt. The main
 * model's prefill logits are checked too (the hidden states the head reads). */
void lc__kind_mtp_head(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V, K = cs->draft_k;
    lc_h5_shape sh;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    lc__golden *g = p ? lc__golden_open(r) : NULL;
    if (!g)
        return;
    const int T = p->n;
    const int64_t wTV[2] = {T, V}, wT1V[2] = {T - 1, V}, wKV[2] = {K, V}, wK[1] = {K};
    const double *e_pre = lc__golden_f64(r, g, "prefill_logits", 2, wTV, &sh);
    const double *e_mtp = e_pre ? lc__golden_f64(r, g, "mtp_logits", 2, wT1V, &sh) : NULL;
    const double *e_chain = e_mtp ? lc__golden_f64(r, g, "chain_logits", 2, wKV, &sh) : NULL;
    const int64_t *e_tok = e_chain ? lc__golden_i64(r, g, "chain_tokens", 1, wK, &sh) : NULL;
    double *pre = lc__alloc(r, (size_t)T * V * sizeof *pre), *mtp = lc__nans(r, (size_t)(T - 1) * V);
    double *chain = lc__alloc(r, (size_t)K * V * sizeof *chain);
    int32_t *d = lc__alloc(r, (size_t)K * sizeof *d);
    int64_t *dk = lc__alloc(r, (size_t)K * sizeof *dk);
    uint8_t *inc = lc__alloc(r, (size_t)(T > 1 ? T - 1 : 1));
    if (!e_tok || !pre || !mtp || !chain || !d || !dk || !inc)
        return;
    if (T < 2) {
        lc__set_error(r, "%s: case '%s': an mtp_head case needs a prompt of at least 2 tokens", cs->file, cs->name);
        return;
    }
    int whole = lc__prefilled(r, p, T, 0, pre);
    if (whole < 0)
        return;
    lc__compare(r, "prefill_logits", "main model prefill logits vs transformers", LC_CLASS_GOLDEN, LC__ROWS, "engine",
                "transformers", pre, e_pre, (size_t)T, (size_t)V, NULL, lc__text_positions(r, p));

    /* teacher-forced: one token at a time, a one-draft call wherever the next token is text */
    int s = lc__prefilled(r, p, 1, 0, NULL);
    for (int t = 0; s >= 0 && t + 1 < T; t++) {
        const int32_t next = p->ids[t + 1];
        inc[t] = !(r->mi.has_vision && next == r->mi.image_token_id);
        lc_error err = {0};
        if (inc[t] && !lc__engine_ok(r, lc_engine_draft(r->e, s, next, 1, d, mtp + (size_t)t * V, &err), &err))
            return;
        if (!lc__prefill(r, s, p, t + 1, t + 2, 0, NULL))
            return;
    }
    if (s < 0)
        return;
    lc__compare(r, "mtp_logits", "MTP draft logits, teacher-forced (h_t, token t+1) vs the assembled golden",
                LC_CLASS_GOLDEN, LC__ROWS, "engine", "transformers modules", mtp, e_mtp, (size_t)(T - 1), (size_t)V,
                inc, inc);

    /* chained drafts after the prompt, from the greedy choice of its last row */
    lc_error err = {0};
    const int32_t first = lc__greedy(r, pre + (size_t)(T - 1) * V);
    if (!lc__engine_ok(r, lc_engine_draft(r->e, whole, first, K, d, chain, &err), &err))
        return;
    for (int i = 0; i < K; i++)
        dk[i] = d[i];
    lc__compare_ints(r, "chain_tokens", "chained greedy drafts vs the golden's", "engine", "transformers modules", dk,
                     e_tok, 1, (size_t)K);
    lc__compare(r, "chain_logits", "chained MTP draft logits vs the assembled golden", LC_CLASS_GOLDEN, LC__ROWS,
                "engine", "transformers modules", chain, e_chain, (size_t)K, (size_t)V, NULL, NULL);
}
