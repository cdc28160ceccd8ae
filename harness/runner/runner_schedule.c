/* Kinds that compare two schedules of the engine: prefill_decode, chunked, cache,
 * isolation, kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "runner_internal.h"

/* ---------------------------------------------------------------- prefill_decode */

void lc__kind_prefill_decode(lc__run *r)
{
    qref_prompt p = {0};
    const lc_case *cs = r->c;
    const int V = r->V, K = cs->n_lengths;
    qref_real *full = NULL, *split = NULL, *row = NULL;
    if (!lc__build_prompt(r, &cs->prompt, &p))
        goto done;
    full = malloc((size_t)K * V * sizeof *full);
    split = malloc((size_t)K * V * sizeof *split);
    int maxn = 0;
    for (int i = 0; i < K; i++)
        maxn = cs->lengths[i] > maxn ? cs->lengths[i] : maxn;
    row = malloc((size_t)(maxn ? maxn : 1) * V * sizeof *row);
    if (!full || !split || !row) {
        lc__set_error(r, "out of memory");
        goto done;
    }
    if (maxn > p.n) {
        lc__set_error(r, "%s: case '%s': lengths go up to %d but the prompt has %d tokens", cs->file, cs->name, maxn, p.n);
        goto done;
    }
    for (int i = 0; i < K; i++) {
        const int N = cs->lengths[i];
        qref_cache a = {0}, b = {0};
        qref_error qe;
        int ok = lc__prefill(r, &p, N, 0, QREF_GDN_AUTO, &a, row);
        if (ok)
            memcpy(full + (size_t)i * V, row + (size_t)(N - 1) * V, (size_t)V * sizeof *row);
        ok = ok && (N == 1 || lc__prefill(r, &p, N - 1, 0, QREF_GDN_AUTO, &b, NULL));
        if (ok && N == 1)
            ok = qref_cache_init(&b, &r->m, &qe) == QREF_OK;
        /* the N-th token through the single-token (recurrent) path, at its prompt position */
        if (ok && qref_prompt_prefill(&r->m, &b, &p, N - 1, N, 0, QREF_GDN_AUTO, split + (size_t)i * V, &qe) != QREF_OK)
            lc__set_error(r, "case '%s': %s", cs->name, qe.msg);
        qref_cache_free(&a);
        qref_cache_free(&b);
        if (r->res->verdict == LC_VERDICT_ERROR)
            goto done;
    }
    lc__compare_real(r, CMP_LOGITS, "last-token logits: prefill N vs prefill N-1 + decode 1 (one row per N)",
                 "prefill N-1 + decode 1", "prefill N", split, full, (size_t)K, (size_t)V, NULL);
done:
    qref_prompt_free(&p);
    free(full);
    free(split);
    free(row);
}

/* ---------------------------------------------------------------- chunked */

void lc__kind_chunked(lc__run *r)
{
    qref_prompt p = {0};
    qref_cache one = {0};
    const lc_case *cs = r->c;
    const int V = r->V;
    qref_real *ref = NULL, *got = NULL, *ref_dec = NULL, *got_dec = NULL;
    int32_t *toks = NULL;
    int N = 0;
    uint8_t *kl = NULL;
    if (!lc__build_prompt(r, &cs->prompt, &p))
        goto done;
    const int T = p.n;
    ref = malloc((size_t)T * V * sizeof *ref);
    got = malloc((size_t)T * V * sizeof *got);
    kl = lc__text_positions(r, &p);
    if (!ref || !got || !kl || !lc__prefill(r, &p, T, 0, QREF_GDN_AUTO, &one, ref))
        goto done;
    if (!lc__own_decode_tokens(r, ref + (size_t)(T - 1) * V, &toks, &N))
        goto done;
    ref_dec = malloc((size_t)(N ? N : 1) * V * sizeof *ref_dec);
    got_dec = malloc((size_t)(N ? N : 1) * V * sizeof *got_dec);
    if (!ref_dec || !got_dec)
        goto done;
    qref_cache one_dec = {0};
    qref_error qe;
    if (qref_cache_clone(&one_dec, &one, &qe) != QREF_OK) {
        lc__set_error(r, "%s", qe.msg);
        goto done;
    }
    for (int i = 0; i < N; i++) {
        if (!lc__decode(r, &one_dec, &toks[i], 1, ref_dec + (size_t)i * V))
            break;
        if (cs->decode.mode == LC_DECODE_GREEDY && i + 1 < N)
            toks[i + 1] = lc__greedy(r, ref_dec + (size_t)i * V);
    }
    qref_cache_free(&one_dec);
    for (int k = 0; k < cs->n_chunks && r->res->verdict != LC_VERDICT_ERROR; k++) {
        qref_cache c = {0};
        char name[128];
        if (lc__prefill(r, &p, T, cs->chunks[k], QREF_GDN_AUTO, &c, got)) {
            snprintf(name, sizeof name, "chunk %d: prefill logits", cs->chunks[k]);
            double *da = lc__to_double(got, (size_t)T * V), *de = lc__to_double(ref, (size_t)T * V);
            if (da && de)
                lc__compare(r, CMP_LOGITS, name, "chunked prefill", "one-shot prefill", da, de, (size_t)T, (size_t)V, NULL,
                        kl);
            free(da);
            free(de);
            snprintf(name, sizeof name, "chunk %d: final conv/recurrent/KV state", cs->chunks[k]);
            lc__compare_states(r, name, "chunked prefill", "one-shot prefill", &c, &one);
            if (N > 0 && lc__decode(r, &c, toks, N, got_dec)) {
                snprintf(name, sizeof name, "chunk %d: decode logits after the prompt", cs->chunks[k]);
                lc__compare_real(r, CMP_LOGITS, name, "decode after chunked prefill", "decode after one-shot prefill",
                             got_dec, ref_dec, (size_t)N, (size_t)V, NULL);
            }
        }
        qref_cache_free(&c);
    }
done:
    qref_cache_free(&one);
    qref_prompt_free(&p);
    free(ref);
    free(got);
    free(ref_dec);
    free(got_dec);
    free(toks);
    free(kl);
}

/* ---------------------------------------------------------------- cache */

void lc__kind_cache(lc__run *r)
{
    const lc_case *cs = r->c;
    const int V = r->V;
    qref_prompt p = {0}, ext = {0};
    qref_cache c = {0};
    qref_real *pre = NULL, *cached = NULL, *uncached = NULL, *row = NULL;
    int32_t *toks = NULL, *ids = NULL;
    int N = 0;
    if (!lc__build_prompt(r, &cs->prompt, &p))
        goto done;
    const int T = p.n;
    pre = malloc((size_t)T * V * sizeof *pre);
    if (!pre || !lc__prefill(r, &p, T, 0, QREF_GDN_AUTO, &c, pre) || !lc__own_decode_tokens(r, pre + (size_t)(T - 1) * V, &toks, &N))
        goto done;
    if (N < 1) {
        lc__set_error(r, "%s: case '%s': a cache case needs decode tokens", cs->file, cs->name);
        goto done;
    }
    cached = malloc((size_t)N * V * sizeof *cached);
    uncached = malloc((size_t)N * V * sizeof *uncached);
    row = malloc((size_t)(T + N) * V * sizeof *row);
    ids = malloc((size_t)(T + N) * sizeof *ids);
    if (!cached || !uncached || !row || !ids)
        goto done;
    for (int i = 0; i < N; i++) {
        if (!lc__decode(r, &c, &toks[i], 1, cached + (size_t)i * V))
            goto done;
        if (cs->decode.mode == LC_DECODE_GREEDY && i + 1 < N)
            toks[i + 1] = lc__greedy(r, cached + (size_t)i * V);
    }
    /* uncached: the whole sequence so far in one forward on a fresh cache, positions computed
     * from the whole sequence (images included) */
    memcpy(ids, p.ids, (size_t)T * sizeof *ids);
    memcpy(ids + T, toks, (size_t)N * sizeof *ids);
    {
        qref_error qe;
        /* rebuild with the decode tokens appended as text: same images, same vision run */
        lc_image_set set = {0};
        int ok = lc__load_images(r, &cs->prompt, 0, -1, &set);
        if (ok && qref_prompt_build(&ext, &r->m, ids, T + N, set.images, set.n, &qe) != QREF_OK) {
            lc__set_error(r, "case '%s': %s", cs->name, qe.msg);
            ok = 0;
        }
        lc_image_set_free(&set);
        if (!ok)
            goto done;
    }
    for (int i = 0; i < N; i++) {
        qref_cache u = {0};
        int ok = lc__prefill(r, &ext, T + i + 1, 0, QREF_GDN_AUTO, &u, row);
        if (ok)
            memcpy(uncached + (size_t)i * V, row + (size_t)(T + i) * V, (size_t)V * sizeof *row);
        qref_cache_free(&u);
        if (!ok)
            goto done;
    }
    lc__compare_real(r, CMP_LOGITS, "decode logits: cached vs uncached full forward (one row per step)", "cached decode",
                 "uncached full forward", cached, uncached, (size_t)N, (size_t)V, NULL);
done:
    qref_cache_free(&c);
    qref_prompt_free(&p);
    qref_prompt_free(&ext);
    free(pre);
    free(cached);
    free(uncached);
    free(row);
    free(toks);
    free(ids);
}

/* ---------------------------------------------------------------- isolation */

/* Prompt + greedy decode on a fresh cache; *out (T + N, V) malloc'ed. */
static int fresh_run(lc__run *r, const lc_prompt *lp, qref_real **out, int *rows)
{
    qref_prompt p = {0};
    qref_cache c = {0};
    int32_t *toks = NULL;
    int N = 0, ok = 0;
    *out = NULL;
    if (!lc__build_prompt(r, lp, &p))
        goto done;
    const int T = p.n, V = r->V;
    int want = r->c->decode.mode == LC_DECODE_GREEDY ? r->c->decode.greedy
                                                      : r->c->decode.mode == LC_DECODE_IDS ? r->c->decode.n_ids : 0;
    *out = malloc((size_t)(T + want) * V * sizeof **out);
    if (!*out || !lc__prefill(r, &p, T, 0, QREF_GDN_AUTO, &c, *out) ||
        !lc__own_decode_tokens(r, *out + (size_t)(T - 1) * V, &toks, &N))
        goto done;
    for (int i = 0; i < N; i++) {
        if (!lc__decode(r, &c, &toks[i], 1, *out + (size_t)(T + i) * V))
            goto done;
        if (r->c->decode.mode == LC_DECODE_GREEDY && i + 1 < N)
            toks[i + 1] = lc__greedy(r, *out + (size_t)(T + i) * V);
    }
    *rows = T + N;
    ok = 1;
done:
    qref_cache_free(&c);
    qref_prompt_free(&p);
    free(toks);
    return ok;
}

void lc__kind_isolation(lc__run *r)
{
    qref_real *a1 = NULL, *b = NULL, *a2 = NULL;
    int n1 = 0, nb = 0, n2 = 0;
    if (fresh_run(r, &r->c->prompt, &a1, &n1) && fresh_run(r, &r->c->other_prompt, &b, &nb) &&
        fresh_run(r, &r->c->prompt, &a2, &n2)) {
        if (n1 != n2)
            lc__set_error(r, "case '%s': the two runs of A produced %d and %d rows", r->c->name, n1, n2);
        else
            lc__compare_real(r, CMP_BITWISE, "text A after image prompt B vs text A first (prefill + decode)",
                         "A after B", "A first", a2, a1, (size_t)n1, (size_t)r->V, NULL);
    }
    free(a1);
    free(b);
    free(a2);
}

/* ---------------------------------------------------------------- kernel */

void lc__kind_kernel(lc__run *r)
{
    const lc_case *cs = r->c;
    const qref_config *cfg = &r->m.cfg;
    qref_prompt p = {0};
    qref_cache a = {0}, b = {0};
    qref_real *la = NULL, *lb = NULL;
    if (!lc__build_prompt(r, &cs->prompt, &p))
        goto done;
    const int T = p.n, V = r->V;
    if (cs->kernel == LC_KERNEL_GDN_CHUNKED_RECURRENT) {
        la = malloc((size_t)T * V * sizeof *la);
        lb = malloc((size_t)T * V * sizeof *lb);
        qref_error qe;
        int chunk = cs->chunk > 0 ? cs->chunk : 64;
        if (!la || !lb || qref_cache_init(&a, &r->m, &qe) != QREF_OK || qref_cache_init(&b, &r->m, &qe) != QREF_OK) {
            lc__set_error(r, "out of memory");
            goto done;
        }
        qref_tokens ta = {.ids = p.ids, .n = T, .pos = p.pos, .embeds = p.embeds, .n_embeds = p.n_embeds,
                          .gdn_mode = QREF_GDN_CHUNKED, .gdn_chunk = chunk};
        qref_tokens tb = ta;
        tb.gdn_mode = QREF_GDN_RECURRENT;
        qref_outputs oa = {.logits = la}, ob = {.logits = lb};
        if (qref_forward(&r->m, &a, &ta, &oa, &qe) != QREF_OK || qref_forward(&r->m, &b, &tb, &ob, &qe) != QREF_OK) {
            lc__set_error(r, "case '%s': %s", cs->name, qe.msg);
            goto done;
        }
        char name[128];
        snprintf(name, sizeof name, "logits: chunked GDN (chunk %d) vs recurrent GDN", chunk);
        lc__compare_real(r, CMP_LOGITS, name, "chunked GDN", "recurrent GDN", la, lb, (size_t)T, (size_t)V, NULL);
        lc__compare_states(r, "final conv/recurrent/KV state: chunked vs recurrent", "chunked GDN", "recurrent GDN", &a, &b);
    } else if (cs->kernel == LC_KERNEL_MROPE_TEXT_1D) {
        for (int i = 0; i < T; i++)
            if (p.pos[i] != p.pos[T + i] || p.pos[i] != p.pos[2 * T + i]) {
                lc__set_error(r, "%s: case '%s': mrope_text_vs_1d needs a text-only prompt (T=H=W)", cs->file, cs->name);
                goto done;
            }
        const int half = cfg->rotary_dim / 2;
        la = malloc((size_t)T * half * 2 * sizeof *la);
        lb = malloc((size_t)T * half * 2 * sizeof *lb);
        if (!la || !lb)
            goto done;
        const int one_axis[3] = {half, 0, 0};
        qref__mrope_angles(la, la + (size_t)T * half, p.pos, T, cfg->rotary_dim, cfg->rope_theta, cfg->mrope_section,
                           cfg->mrope_interleaved);
        qref__mrope_angles(lb, lb + (size_t)T * half, p.pos, T, cfg->rotary_dim, cfg->rope_theta, one_axis, 0);
        lc__compare_real(r, CMP_TENSOR, "rotary cos|sin: 3-axis interleaved MRoPE (T=H=W) vs 1-D RoPE", "MRoPE", "1-D RoPE",
                     la, lb, 2, (size_t)T * half, NULL);
    } else {
        lc__set_error(r, "%s: case '%s': unknown kernel check", cs->file, cs->name);
    }
done:
    qref_cache_free(&a);
    qref_cache_free(&b);
    qref_prompt_free(&p);
    free(la);
    free(lb);
}

