/* SPDX-License-Identifier: MIT */
/* The kinds graded against transformers: golden, multi_image. */
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* Prompt expansion, positions, vision embeddings, the residual stream after every layer at
 * the last prompt position, prefill logits and teacher-forced decode logits, each against the
 * golden. Optional taps the engine lacks (positions, vision, hidden) leave their comparison out. */
void lc__kind_golden(lc__run *r)
{
    lc_h5_shape sh;
    const lc_prompt_info *p = lc__prompt(r, &r->c->prompt, 0);
    lc__golden *g = lc__golden_open(r);
    if (!p || !g)
        return;
    const int T = p->n, V = r->V, H = r->H, NL = r->NL;
    int64_t wT[1] = {-1}, w3T[2] = {3, T}, wTV[2] = {T, V}, w0[1] = {1};
    const int64_t *e_ids = lc__golden_i64(r, g, "input_ids", 1, wT, &sh);
    if (!e_ids)
        return;
    if ((int)sh.count != T) {
        /* the engine expanded the prompt to another length (an image grid or a video's temporal
         * patches differ from the processor's, or the case changed since the golden was made):
         * a failed exact check, and nothing else can be compared position by position */
        const int64_t a_len = T, e_len = (int64_t)sh.count;
        lc__compare_ints(r, "input_ids.len", "expanded prompt length (a grid or the case differs from the golden's)",
                         "engine expansion", "transformers processor", &a_len, &e_len, 1, 1);
        return;
    }
    int64_t *ids64 = lc__alloc(r, (size_t)T * sizeof *ids64);
    /* an oracle without the positions tap gives none: that comparison is left out */
    const int has_pos = lc__golden_has(g, "position_ids");
    const int64_t *e_pos = has_pos ? lc__golden_i64(r, g, "position_ids", 2, w3T, &sh) : NULL;
    const int64_t *e_delta = has_pos ? lc__golden_i64(r, g, "rope_delta", 0, w0, &sh) : NULL;
    const double *e_pre = lc__golden_f64(r, g, "prefill_logits", 2, wTV, &sh);
    if (!ids64 || (has_pos && (!e_pos || !e_delta)) || !e_pre)
        return;
    for (int i = 0; i < T; i++)
        ids64[i] = p->ids[i];
    lc__compare_ints(r, "input_ids", "input ids (expanded prompt)", "engine expansion",
                     lc__expected(r, "transformers processor"), ids64, e_ids, 1, T);
    if (!p->pos || !has_pos)
        lc__note_missing(r, LC_CAP_POSITIONS);
    if (p->pos && has_pos) {
        lc__compare_ints(r, "position_ids", "position ids (3 x T)", "engine rope index",
                         lc__expected(r, "transformers get_rope_index"), p->pos, e_pos, 3, T);
        lc__compare_ints(r, "rope_delta", "rope delta", "engine", lc__expected(r, "transformers"), &p->rope_delta,
                         e_delta, 1, 1);
    }

    int n_emb = 0;
    for (int i = 0; i < T; i++)
        n_emb += r->mi.has_vision && (p->ids[i] == r->mi.image_token_id || p->ids[i] == r->mi.video_token_id);
    if (n_emb > 0 && lc__golden_has(g, "vision_embeds") && !lc__has(r, LC_CAP_VISION))
        lc__note_missing(r, LC_CAP_VISION);
    if (n_emb > 0 && lc__golden_has(g, "vision_embeds") && lc__has(r, LC_CAP_VISION)) {
        int64_t wE[2] = {n_emb, H};
        const double *e_emb = lc__golden_f64(r, g, "vision_embeds", 2, wE, &sh);
        double *a = NULL;
        int rows = 0;
        lc_error err = {0};
        if (!e_emb || !lc__engine_ok(r, lc_engine_vision(r->e, p->handle, &a, &rows, &err), &err) || !lc__own(r, a))
            return;
        if (rows != n_emb) {
            lc__set_error(r, "case '%s': the engine gave %d vision rows for %d placeholders", r->c->name, rows, n_emb);
            return;
        }
        lc__compare(r, "vision_embeds", "vision embeddings (merged)", LC_CLASS_GOLDEN, LC__FLAT, "engine vision tower",
                    lc__expected(r, "transformers float64"), a, e_emb, (size_t)n_emb, (size_t)H, NULL, NULL);
    }

    /* one-shot prefill, keeping the residual stream after every layer for the stage check */
    const int hid = lc__golden_has(g, "hidden_last") && lc__has(r, LC_CAP_HIDDEN);
    if (lc__golden_has(g, "hidden_last") && !hid)
        lc__note_missing(r, LC_CAP_HIDDEN);
    double *logits = lc__alloc(r, (size_t)T * V * sizeof *logits);
    double *hidden = hid ? lc__alloc(r, (size_t)(NL + 1) * T * H * sizeof *hidden) : NULL;
    const uint8_t *kl = lc__text_positions(r, p);
    int seq = lc__seq(r);
    lc_prefill_out o = {.sel = LC_LOGITS_ALL, .logits = logits, .hidden = hidden};
    lc_error err = {0};
    if (!logits || (hid && !hidden) || !kl || seq < 0 ||
        !lc__engine_ok(r, lc_engine_prefill(r->e, seq, p->handle, 0, T, &o, &err), &err))
        return;
    /* stage check: the hidden state at the last prompt position after the embedding and after
     * each layer; its curve (one point per stage) shows the first layer that left the reference */
    if (hid) {
        int64_t wLH[2] = {NL + 1, H};
        const double *e_hid = lc__golden_f64(r, g, "hidden_last", 2, wLH, &sh);
        double *ah = lc__alloc(r, (size_t)(NL + 1) * H * sizeof *ah);
        if (!e_hid || !ah)
            return;
        for (int l = 0; l <= NL; l++)
            memcpy(ah + (size_t)l * H, hidden + ((size_t)l * T + (T - 1)) * H, (size_t)H * sizeof *ah);
        lc__compare(r, "hidden_last", "hidden state at the last prompt position (embedding, then each layer)",
                    LC_CLASS_GOLDEN, LC__FLAT, "engine residual stream", lc__expected(r, "transformers float64"), ah, e_hid,
                    (size_t)(NL + 1), (size_t)H, NULL, NULL);
    }
    lc__compare(r, "prefill_logits", "prefill logits", LC_CLASS_GOLDEN, LC__ROWS, "engine prefill",
                lc__expected(r, "transformers float64"), logits, e_pre, (size_t)T, (size_t)V, NULL, kl);

    if (!lc__golden_has(g, "decode_tokens"))
        return;
    int64_t wN[1] = {-1};
    const int64_t *e_tok = lc__golden_i64(r, g, "decode_tokens", 1, wN, &sh);
    if (!e_tok)
        return;
    const int N = (int)sh.count;
    if (N <= 0)
        return;
    int64_t wNV[2] = {N, V};
    const double *e_dec = lc__golden_f64(r, g, "decode_logits", 2, wNV, &sh);
    int32_t *toks = lc__alloc(r, (size_t)N * sizeof *toks);
    double *dec = lc__alloc(r, (size_t)N * V * sizeof *dec);
    if (!e_dec || !toks || !dec)
        return;
    for (int i = 0; i < N; i++)
        toks[i] = (int32_t)e_tok[i];
    for (int i = 0; i < N; i++) /* teacher-forced: the golden's tokens, never our own choice */
        if (!lc__engine_ok(r, lc_engine_decode(r->e, seq, toks[i], dec + (size_t)i * V, &err), &err))
            return;
    lc__compare(r, "decode_logits", "decode logits (teacher-forced)", LC_CLASS_GOLDEN, LC__ROWS, "engine cached decode",
                lc__expected(r, "transformers float64"), dec, e_dec, (size_t)N, (size_t)V, NULL, NULL);
}
