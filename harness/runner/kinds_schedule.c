/* SPDX-License-Identifier: MIT */
/* Kinds that compare two schedules of the engine: prefill_decode, chunked, cache,
 * isolation, kernel. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- prefill_decode */

/* The last-token logits of prefill N against prefill N-1 then the N-th token alone (one row
 * per N of the case's lengths). */
void lc__kind_prefill_decode(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V, K = cs->n_lengths;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    int maxn = 0;
    for (int i = 0; i < K; i++)
        maxn = cs->lengths[i] > maxn ? cs->lengths[i] : maxn;
    double *full = lc__alloc(r, (size_t)K * V * sizeof *full), *split = lc__alloc(r, (size_t)K * V * sizeof *split);
    double *row = lc__alloc(r, (size_t)(maxn ? maxn : 1) * V * sizeof *row);
    if (!p || !full || !split || !row)
        return;
    if (maxn > p->n) {
        lc__set_error(r, "%s: case '%s': lengths go up to %d but the prompt has %d tokens", cs->file, cs->name, maxn,
                      p->n);
        return;
    }
    for (int i = 0; i < K; i++) {
        const int N = cs->lengths[i];
        int a = lc__prefilled(r, p, N, 0, row);
        if (a < 0)
            return;
        memcpy(full + (size_t)i * V, row + (size_t)(N - 1) * V, (size_t)V * sizeof *row);
        /* the N-th token through the single-token (recurrent) path, at its prompt position */
        int b = lc__prefilled(r, p, N - 1, 0, NULL);
        if (b < 0 || !lc__prefill(r, b, p, N - 1, N, 0, split + (size_t)i * V))
            return;
        lc__seq_close(r, a);
        lc__seq_close(r, b);
    }
    lc__compare(r, "last_logits", "last-token logits: prefill N vs prefill N-1 + decode 1 (one row per N)",
                LC_CLASS_CROSS, LC__ROWS, "prefill N-1 + decode 1", "prefill N", split, full, (size_t)K, (size_t)V,
                NULL, NULL);
}

/* ---------------------------------------------------------------- chunked */

/* Each chunk size against the one-shot prefill: prompt logits, final state, decode after. */
void lc__kind_chunked(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    if (!p)
        return;
    const int T = p->n;
    double *ref = lc__alloc(r, (size_t)T * V * sizeof *ref), *got = lc__alloc(r, (size_t)T * V * sizeof *got);
    const uint8_t *kl = lc__text_positions(r, p);
    int one = lc__prefilled(r, p, T, 0, ref);
    int N = 0;
    int32_t *toks = one >= 0 ? lc__decode_plan(r, ref + (size_t)(T - 1) * V, &N) : NULL;
    double *ref_dec = lc__alloc(r, (size_t)(N ? N : 1) * V * sizeof *ref_dec);
    double *got_dec = lc__alloc(r, (size_t)(N ? N : 1) * V * sizeof *got_dec);
    /* the one-shot sequence keeps its final state; a second one-shot run decodes */
    int one_dec = lc__prefilled(r, p, T, 0, NULL);
    if (!got || !kl || !toks || !ref_dec || !got_dec || !lc__decode(r, one_dec, toks, N, ref_dec, LC__CHOOSE))
        return;
    for (int k = 0; k < cs->n_chunks && lc__ok(r); k++) {
        char id[64], title[128];
        const int ch = cs->chunks[k];
        int c = lc__prefilled(r, p, T, ch, got);
        if (c < 0)
            return;
        snprintf(id, sizeof id, "chunk%d.logits", ch);
        snprintf(title, sizeof title, "chunk %d: prefill logits", ch);
        lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "chunked prefill", "one-shot prefill", got, ref, (size_t)T,
                    (size_t)V, NULL, kl);
        snprintf(id, sizeof id, "chunk%d.state", ch);
        snprintf(title, sizeof title, "chunk %d: final conv/recurrent/KV state", ch);
        lc__compare_states(r, id, title, LC_CLASS_CROSS, "chunked prefill", "one-shot prefill", c, one);
        if (N > 0 && lc__decode(r, c, toks, N, got_dec, LC__FORCED)) {
            snprintf(id, sizeof id, "chunk%d.decode", ch);
            snprintf(title, sizeof title, "chunk %d: decode logits after the prompt", ch);
            lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "decode after chunked prefill",
                        "decode after one-shot prefill", got_dec, ref_dec, (size_t)N, (size_t)V, NULL, NULL);
        }
        lc__seq_close(r, c);
    }
}

/* ---------------------------------------------------------------- cache */

/* Cached decode against an uncached full forward of the whole sequence at every step. */
void lc__kind_cache(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    if (!p)
        return;
    const int T = p->n;
    double *pre = lc__alloc(r, (size_t)T * V * sizeof *pre);
    int c = pre ? lc__prefilled(r, p, T, 0, pre) : -1;
    int N = 0;
    int32_t *toks = c >= 0 ? lc__decode_plan(r, pre + (size_t)(T - 1) * V, &N) : NULL;
    if (!toks)
        return;
    if (N < 1) {
        lc__set_error(r, "%s: case '%s': a cache case needs decode tokens", cs->file, cs->name);
        return;
    }
    double *cached = lc__alloc(r, (size_t)N * V * sizeof *cached), *uncached = lc__alloc(r, (size_t)N * V * sizeof *uncached);
    double *row = lc__alloc(r, (size_t)(T + N) * V * sizeof *row);
    if (!cached || !uncached || !row || !lc__decode(r, c, toks, N, cached, LC__CHOOSE))
        return;
    /* uncached: the prompt with the decoded tokens appended as text, in one forward on a fresh
     * sequence (same images, positions computed from the whole sequence) */
    lc_prompt ext = {.n_segs = cs->prompt.n_segs + 1};
    ext.segs = lc__alloc(r, (size_t)ext.n_segs * sizeof *ext.segs);
    if (!ext.segs)
        return;
    memcpy(ext.segs, cs->prompt.segs, (size_t)cs->prompt.n_segs * sizeof *ext.segs);
    ext.segs[cs->prompt.n_segs] = (lc_segment){.type = LC_SEG_IDS, .ids = toks, .n_ids = N};
    const lc_prompt_info *x = lc__prompt(r, &ext, 0);
    if (!x)
        return;
    for (int i = 0; i < N; i++) {
        int u = lc__prefilled(r, x, T + i + 1, 0, row);
        if (u < 0)
            return;
        memcpy(uncached + (size_t)i * V, row + (size_t)(T + i) * V, (size_t)V * sizeof *row);
        lc__seq_close(r, u);
    }
    lc__compare(r, "decode_logits", "decode logits: cached vs uncached full forward (one row per step)", LC_CLASS_CROSS,
                LC__ROWS, "cached decode", "uncached full forward", cached, uncached, (size_t)N, (size_t)V, NULL, NULL);
}

/* ---------------------------------------------------------------- isolation */

/* Prompt + the case's decode in a new sequence; (T + N, V) rows, *rows their count. */
static double *request(lc__run *r, const lc_prompt *lp, int *rows)
{
    const lc_prompt_info *p = lc__prompt(r, lp, 0);
    if (!p)
        return NULL;
    const int T = p->n, V = r->V;
    const lc_decode *d = &r->c->decode;
    int want = d->mode == LC_DECODE_GREEDY ? d->greedy : d->mode == LC_DECODE_IDS ? d->n_ids : 0, N = 0;
    double *out = lc__alloc(r, (size_t)(T + want) * V * sizeof *out);
    int seq = out ? lc__prefilled(r, p, T, 0, out) : -1;
    int32_t *toks = seq >= 0 ? lc__decode_plan(r, out + (size_t)(T - 1) * V, &N) : NULL;
    if (!toks || !lc__decode(r, seq, toks, N, out + (size_t)T * V, LC__CHOOSE))
        return NULL;
    *rows = T + N;
    return out;
}

/* Text A on the fresh engine the case starts with; then prompt B; then A again on the same
 * engine, in a new sequence: bitwise what A gave first. */
void lc__kind_isolation(lc__run *r)
{
    int n1 = 0, nb = 0, n2 = 0;
    const double *a1 = request(r, &r->c->prompt, &n1);
    const double *b = a1 ? request(r, &r->c->other_prompt, &nb) : NULL;
    const double *a2 = b ? request(r, &r->c->prompt, &n2) : NULL;
    if (!a2)
        return;
    if (n1 != n2) {
        lc__set_error(r, "case '%s': the two runs of A produced %d and %d rows", r->c->name, n1, n2);
        return;
    }
    lc__compare(r, "a_after_b", "text A after image prompt B vs text A first (prefill + decode)", LC_CLASS_SAME,
                LC__ROWS, "A after B", "A first", a2, a1, (size_t)n1, (size_t)r->V, NULL, NULL);
    if (r->c->interleave)
        lc__isolation_interleaved(r);
}

/* ---------------------------------------------------------------- kernel */

/* The rotary tables the checkpoint's config defines, computed here in double, independently
 * of any engine: (n, R) with R/2 cos then R/2 sin values per position, interleaved MRoPE
 * (frequency j on the H axis when j%3==1 and j < 3*section[1], W when j%3==2 and
 * j < 3*section[2], else T) or contiguous sections. */
static void expected_rope(const lc_model_info *m, const int64_t *pos, int n, double *out)
{
    const int R = m->rotary_dim, half = R / 2;
    const int *s = m->mrope_section;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            int axis = 0;
            if (m->mrope_interleaved)
                axis = j % 3 == 1 && j < 3 * s[1] ? 1 : j % 3 == 2 && j < 3 * s[2] ? 2 : 0;
            else
                axis = j < s[0] ? 0 : j < s[0] + s[1] ? 1 : 2;
            const double ang = (double)pos[(size_t)axis * n + i] * pow(m->rope_theta, -2.0 * j / R);
            out[(size_t)i * R + j] = cos(ang);
            out[(size_t)i * R + half + j] = sin(ang);
        }
}

void lc__kind_kernel(lc__run *r)
{
    const lc_case *cs = r->c;
    const lc_prompt_info *p = lc__prompt(r, &cs->prompt, 0);
    if (!p)
        return;
    const int T = p->n, V = r->V;
    char id[64], title[128];
    lc_error err = {0};
    if (cs->kernel == LC_KERNEL_GDN_CHUNKED_RECURRENT) {
        const int chunk = cs->chunk > 0 ? cs->chunk : 64;
        double *la = lc__alloc(r, (size_t)T * V * sizeof *la), *lb = lc__alloc(r, (size_t)T * V * sizeof *lb);
        int a = lc__seq(r), b = lc__seq(r);
        lc_prefill_out oa = {.sel = LC_LOGITS_ALL, .logits = la, .gdn_mode = LC_GDN_CHUNKED, .gdn_chunk = chunk};
        lc_prefill_out ob = {.sel = LC_LOGITS_ALL, .logits = lb, .gdn_mode = LC_GDN_RECURRENT, .gdn_chunk = chunk};
        if (!la || !lb || a < 0 || b < 0 ||
            !lc__engine_ok(r, lc_engine_prefill(r->e, a, p->handle, 0, T, &oa, &err), &err) ||
            !lc__engine_ok(r, lc_engine_prefill(r->e, b, p->handle, 0, T, &ob, &err), &err))
            return;
        snprintf(title, sizeof title, "logits: chunked GDN (chunk %d) vs recurrent GDN", chunk);
        snprintf(id, sizeof id, "chunk%d.logits", chunk);
        lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "chunked GDN", "recurrent GDN", la, lb, (size_t)T,
                    (size_t)V, NULL, NULL);
        snprintf(id, sizeof id, "chunk%d.state", chunk);
        lc__compare_states(r, id, "final conv/recurrent/KV state: chunked vs recurrent", LC_CLASS_CROSS, "chunked GDN",
                           "recurrent GDN", a, b);
    } else if (cs->kernel == LC_KERNEL_MROPE_TEXT_1D) {
        if (!p->pos) {
            lc__set_error(r, "case '%s': the rope check needs the engine's positions", cs->name);
            return;
        }
        for (int i = 0; i < T; i++)
            if (p->pos[i] != p->pos[T + i] || p->pos[i] != p->pos[2 * T + i]) {
                lc__set_error(r, "%s: case '%s': mrope_text_vs_1d needs a text-only prompt (T=H=W)", cs->file,
                              cs->name);
                return;
            }
        const int R = r->mi.rotary_dim;
        double *got = lc__alloc(r, (size_t)T * R * sizeof *got), *want = lc__alloc(r, (size_t)T * R * sizeof *want);
        if (!got || !want || !lc__engine_ok(r, lc_engine_rope(r->e, p->pos, T, got, &err), &err))
            return;
        expected_rope(&r->mi, p->pos, T, want);
        lc__compare(r, "rope", "rotary cos|sin: engine MRoPE (T=H=W) vs 1-D RoPE from the config's theta",
                    LC_CLASS_GOLDEN, LC__FLAT, "engine rotary tables", "cos/sin in double", got, want, (size_t)T,
                    (size_t)R, NULL, NULL);
    } else {
        lc__set_error(r, "%s: case '%s': unknown kernel check", cs->file, cs->name);
    }
}
