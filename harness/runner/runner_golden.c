/* Golden access and the kinds graded against transformers: golden, multi_image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- golden access */


int lc__golden_open(lc__run *r, lc__golden *g)
{
    lc_error le;
    char path[4096];
    memset(g, 0, sizeof *g);
    g->f.id = -1;
    if (!r->c->golden) {
        lc__set_error(r, "case '%s' (%s): kind %s needs a golden file", r->c->name, r->c->file, lc_kind_name(r->c->kind));
        return 0;
    }
    lc__path_join(path, sizeof path, r->o->root, r->c->golden);
    if (lc_h5_open(&g->f, path, &le)) {
        lc__set_error(r, "%s", le.msg);
        return 0;
    }
    snprintf(g->group, sizeof g->group, "/cases/%s", r->c->name);
    if (!lc_h5_exists(&g->f, g->group)) {
        lc__set_error(r, "%s: no group '%s' (regenerate the goldens: golden/README.md)", path, g->group);
        lc_h5_close(&g->f);
        return 0;
    }
    g->open = 1;
    return 1;
}

void lc__golden_close(lc__golden *g)
{
    if (g->open)
        lc_h5_close(&g->f);
    g->open = 0;
}

/* Reads dataset `ds` of the case's group as doubles, checks its shape (want[i] < 0: any),
 * and lets the golden hook alter it. NULL (with the case's error set) on failure. */
double *lc__golden_f64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape)
{
    char name[512];
    lc_error le;
    double *d = NULL;
    snprintf(name, sizeof name, "%s/%s", g->group, ds);
    if (lc_h5_read_f64(&g->f, name, &d, shape, &le)) {
        lc__set_error(r, "%s", le.msg);
        return NULL;
    }
    int64_t w[LC_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        w[i] = want[i] < 0 && i < shape->ndim ? shape->shape[i] : want[i];
    if (lc_h5_expect_shape(&g->f, name, shape, ndim, w, &le)) {
        lc__set_error(r, "%s", le.msg);
        free(d);
        return NULL;
    }
    if (r->o->golden_hook)
        r->o->golden_hook(r->o->hook_ctx, r->c->name, ds, d, shape->count);
    return d;
}

int64_t *lc__golden_i64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape)
{
    double *d = lc__golden_f64(r, g, ds, ndim, want, shape);
    if (!d)
        return NULL;
    int64_t *v = malloc((shape->count ? shape->count : 1) * sizeof *v);
    for (size_t i = 0; v && i < shape->count; i++)
        v[i] = (int64_t)llround(d[i]);
    free(d);
    if (!v)
        lc__set_error(r, "out of memory");
    return v;
}

/* ---------------------------------------------------------------- golden, multi_image */

void lc__kind_golden(lc__run *r)
{
    qref_prompt p = {0};
    qref_cache c = {0};
    lc__golden g;
    lc_h5_shape sh;
    qref_real *logits = NULL, *dec = NULL, *hidden = NULL;
    double *e_hid = NULL;
    char name[512];
    double *e_pre = NULL, *e_dec = NULL, *e_emb = NULL, *a = NULL;
    int64_t *e_ids = NULL, *e_pos = NULL, *e_tok = NULL, *e_delta = NULL, *ids64 = NULL;
    int32_t *toks = NULL;
    uint8_t *kl = NULL;

    if (!lc__build_prompt(r, &r->c->prompt, &p) || !lc__golden_open(r, &g))
        goto done;
    const int T = p.n, V = r->V;
    int64_t wT[1] = {-1}, w3T[2] = {3, T}, wTV[2] = {T, V}, w0[1] = {1};
    if (!(e_ids = lc__golden_i64(r, &g, "input_ids", 1, wT, &sh)))
        goto done;
    if ((int)sh.count != T) {
        lc__set_error(r, "%s: case '%s': the golden prompt has %zu tokens, the case expands to %d (image grid or "
                     "prompt changed? regenerate the goldens)", g.f.path, r->c->name, sh.count, T);
        goto done;
    }
    ids64 = malloc((size_t)T * sizeof *ids64);
    for (int i = 0; ids64 && i < T; i++)
        ids64[i] = p.ids[i];
    if (!ids64 || !(e_pos = lc__golden_i64(r, &g, "position_ids", 2, w3T, &sh)) ||
        !(e_delta = lc__golden_i64(r, &g, "rope_delta", 0, w0, &sh)) ||
        !(e_pre = lc__golden_f64(r, &g, "prefill_logits", 2, wTV, &sh)))
        goto done;
    lc__compare_ints(r, "input ids (expanded prompt)", "harness expansion", "transformers processor", ids64, e_ids, 1, T);
    lc__compare_ints(r, "position ids (3 x T)", "engine rope index", "transformers get_rope_index", p.pos, e_pos, 3, T);
    lc__compare_ints(r, "rope delta", "engine", "transformers", &p.delta, e_delta, 1, 1);

    if (p.n_embeds > 0) {
        snprintf(name, sizeof name, "%s/vision_embeds", g.group);
        if (lc_h5_exists(&g.f, name)) {
            int64_t wE[2] = {p.n_embeds, r->m.cfg.hidden_size};
            if (!(e_emb = lc__golden_f64(r, &g, "vision_embeds", 2, wE, &sh)))
                goto done;
            a = lc__to_double(p.embeds, (size_t)p.n_embeds * r->m.cfg.hidden_size);
            if (a)
                lc__compare(r, CMP_TENSOR, "vision embeddings (merged)", "engine vision tower", "transformers float64", a,
                        e_emb, (size_t)p.n_embeds, (size_t)r->m.cfg.hidden_size, NULL, NULL);
        }
    }

    /* one-shot prefill, keeping the residual stream after every layer for the stage check */
    const int NL = r->m.cfg.num_layers, H = r->m.cfg.hidden_size;
    logits = malloc((size_t)T * V * sizeof *logits);
    hidden = malloc((size_t)(NL + 1) * T * H * sizeof *hidden);
    kl = lc__text_positions(r, &p);
    if (!logits || !hidden || !kl) {
        lc__set_error(r, "out of memory");
        goto done;
    }
    {
        qref_error qe;
        qref_tokens in = {.ids = p.ids, .n = T, .pos = p.pos, .embeds = p.embeds, .n_embeds = p.n_embeds};
        qref_outputs out = {.logits = logits, .hidden = hidden};
        if (qref_cache_init(&c, &r->m, &qe) != QREF_OK || qref_forward(&r->m, &c, &in, &out, &qe) != QREF_OK) {
            lc__set_error(r, "case '%s': %s", r->c->name, qe.msg);
            goto done;
        }
        c.rope_delta = r->o->stale_rope_delta ? 0 : p.delta;
    }
    /* stage check: the hidden state at the last prompt position after the embedding and after
     * each layer; its curve (one point per stage) shows the first layer that left the reference */
    snprintf(name, sizeof name, "%s/hidden_last", g.group);
    if (lc_h5_exists(&g.f, name)) {
        int64_t wLH[2] = {NL + 1, H};
        if (!(e_hid = lc__golden_f64(r, &g, "hidden_last", 2, wLH, &sh)))
            goto done;
        double *ah = malloc((size_t)(NL + 1) * H * sizeof *ah);
        for (int l = 0; ah && l <= NL; l++)
            for (int d = 0; d < H; d++)
                ah[(size_t)l * H + d] = (double)hidden[((size_t)l * T + (T - 1)) * H + d];
        if (ah)
            lc__compare(r, CMP_TENSOR, "hidden state at the last prompt position (embedding, then each layer)",
                        "engine residual stream", "transformers float64", ah, e_hid, (size_t)(NL + 1), (size_t)H,
                        NULL, NULL);
        free(ah);
    }
    double *ap = lc__to_double(logits, (size_t)T * V);
    if (ap)
        lc__compare(r, CMP_LOGITS, "prefill logits", "engine prefill", "transformers float64", ap, e_pre, (size_t)T,
                (size_t)V, NULL, kl);
    free(ap);

    snprintf(name, sizeof name, "%s/decode_tokens", g.group);
    if (lc_h5_exists(&g.f, name)) {
        int64_t wN[1] = {-1};
        if (!(e_tok = lc__golden_i64(r, &g, "decode_tokens", 1, wN, &sh)))
            goto done;
        const int N = (int)sh.count;
        int64_t wNV[2] = {N, V};
        if (N > 0) {
            if (!(e_dec = lc__golden_f64(r, &g, "decode_logits", 2, wNV, &sh)))
                goto done;
            toks = malloc((size_t)N * sizeof *toks);
            dec = malloc((size_t)N * V * sizeof *dec);
            if (!toks || !dec)
                goto done;
            for (int i = 0; i < N; i++)
                toks[i] = (int32_t)e_tok[i];
            if (!lc__decode(r, &c, toks, N, dec))
                goto done;
            double *ad = lc__to_double(dec, (size_t)N * V);
            if (ad)
                lc__compare(r, CMP_LOGITS, "decode logits (teacher-forced)", "engine cached decode",
                        "transformers float64", ad, e_dec, (size_t)N, (size_t)V, NULL, NULL);
            free(ad);
        }
    }
done:
    lc__golden_close(&g);
    qref_cache_free(&c);
    qref_prompt_free(&p);
    free(logits);
    free(hidden);
    free(e_hid);
    free(dec);
    free(e_pre);
    free(e_dec);
    free(e_emb);
    free(a);
    free(e_ids);
    free(e_pos);
    free(e_tok);
    free(e_delta);
    free(ids64);
    free(toks);
    free(kl);
}

