/* SPDX-License-Identifier: MIT */
/* Kinds about serving state: continuous_batch (requests joining and leaving a running batch),
 * prefix_cache (the engine's own prefix cache on a hybrid model), and the interleaved part of
 * isolation (two image requests with different rope deltas decoding turn about). */
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- a request alone */

/* Request p alone on a new sequence: the prompt in one prefill call, then n tokens decoded one
 * at a time, each chosen greedily from the row before (choose; the tokens every other schedule
 * of the request is teacher-forced with), else toks as given. rows (T + n, V): the prompt's
 * rows, then one per decoded token; toks (n). The sequence is closed afterwards, so later
 * sequences reuse its slot. */
static int alone(lc__run *r, const lc_prompt_info *p, int n, double *rows, int32_t *toks, int choose)
{
    const int T = p->n, V = r->V;
    int seq = lc__prefilled(r, p, T, 0, rows);
    if (seq < 0)
        return 0;
    lc_error err = {0};
    for (int i = 0; i < n; i++) {
        if (choose)
            toks[i] = lc__greedy(r, rows + (size_t)(T + i - 1) * V);
        if (!lc__engine_ok(r, lc_engine_decode(r->e, seq, toks[i], rows + (size_t)(T + i) * V, &err), &err))
            return 0;
    }
    lc__seq_close(r, seq);
    return 1;
}

/* (T + n) rows: 1 where KL applies (every row but an image placeholder's); arena. */
static uint8_t *kl_rows(lc__run *r, const lc_prompt_info *p, int n)
{
    uint8_t *m = lc__alloc(r, (size_t)p->n + (size_t)n + 1);
    for (int i = 0; m && i < p->n + n; i++)
        m[i] = i >= p->n || !(r->mi.has_vision && p->ids[i] == r->mi.image_token_id);
    return m;
}

static int same_prompt(const lc_prompt *a, const lc_prompt *b)
{
    if (a->n_segs != b->n_segs)
        return 0;
    for (int s = 0; s < a->n_segs; s++) {
        const lc_segment *x = &a->segs[s], *y = &b->segs[s];
        if (x->type != y->type)
            return 0;
        if (x->type == LC_SEG_IMAGE ? strcmp(x->image, y->image) != 0
                                    : x->n_ids != y->n_ids || memcmp(x->ids, y->ids, (size_t)x->n_ids * sizeof *x->ids))
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- continuous_batch */

typedef struct {
    const lc_request *q;
    const lc_prompt_info *p;
    int T, N;
    double *want;               /* (T + N, V) alone */
    double *got;                /* (T + N, V) in the running batch */
    int32_t *toks;              /* (N) */
    int seq;                    /* -1 before it arrives */
    int at;                     /* prompt tokens prefilled */
    int dec;                    /* tokens decoded */
    int done;
} cb_req;

/* The schedule of the case: at each step the requests arriving then open a sequence; every
 * live request contributes one row to one engine step (its next prompt chunk, or its next
 * decode token); a request that has decoded all its tokens leaves (its sequence is closed)
 * before the next step. Each request's logits (prompt rows and decode rows) against the
 * request alone; requests identical in prompt, arrival, chunk and decode bitwise against each
 * other. */
void lc__kind_continuous_batch(lc__run *r)
{
    const lc_case *cs = r->c;
    const int R = cs->n_requests, V = r->V;
    cb_req *q = lc__alloc(r, (size_t)R * sizeof *q);
    lc_step_row *rows = lc__alloc(r, (size_t)R * sizeof *rows);
    int *owner = lc__alloc(r, (size_t)R * sizeof *owner);
    if (!q || !rows || !owner)
        return;
    size_t most = 0;
    for (int i = 0; i < R; i++) {
        q[i].q = &cs->requests[i];
        if (!(q[i].p = lc__prompt(r, &q[i].q->prompt, 0)))
            return;
        q[i].T = q[i].p->n;
        q[i].N = q[i].q->decode;
        const size_t n = (size_t)(q[i].T + q[i].N);
        most += n;
        q[i].want = lc__nans(r, n * V);
        q[i].got = lc__nans(r, n * V);
        q[i].toks = lc__alloc(r, ((size_t)q[i].N + 1) * sizeof *q[i].toks);
        q[i].seq = -1;
        if (!q[i].want || !q[i].got || !q[i].toks || !alone(r, q[i].p, q[i].N, q[i].want, q[i].toks, 1))
            return;
    }
    double *out = lc__alloc(r, most * V * sizeof *out);
    if (!out)
        return;
    lc_error err = {0};
    int left = R;
    for (int step = 0; left > 0; step++) {
        int B = 0;
        for (int i = 0; i < R; i++) {
            if (q[i].q->arrive == step && (q[i].seq = lc__seq(r)) < 0)
                return;
            if (q[i].seq < 0 || q[i].done)
                continue;
            lc_step_row *w = &rows[B];
            owner[B++] = i;
            w->seq = q[i].seq;
            if (q[i].at < q[i].T) {
                const int chunk = q[i].q->chunk > 0 ? q[i].q->chunk : q[i].T;
                w->prompt = q[i].p->handle;
                w->from = q[i].at;
                w->to = q[i].at + chunk < q[i].T ? q[i].at + chunk : q[i].T;
            } else {
                w->prompt = -1;
                w->token = q[i].toks[q[i].dec];
            }
        }
        if (B == 0)
            continue; /* nobody live yet: the next arrivals come later */
        if (!lc__engine_ok(r, lc_engine_step(r->e, rows, B, out, &err), &err))
            return;
        const double *o = out;
        for (int b = 0; b < B; b++) {
            cb_req *x = &q[owner[b]];
            const int first = rows[b].prompt >= 0 ? rows[b].from : x->T + x->dec;
            const int n = rows[b].prompt >= 0 ? rows[b].to - rows[b].from : 1;
            memcpy(x->got + (size_t)first * V, o, (size_t)n * V * sizeof *o);
            o += (size_t)n * V;
            if (rows[b].prompt >= 0)
                x->at = rows[b].to;
            else
                x->dec++;
            if (x->at == x->T && x->dec == x->N) {
                x->done = 1;
                left--;
                lc__seq_close(r, x->seq);
            }
        }
    }
    for (int i = 0; i < R; i++) {
        char id[64], title[160];
        snprintf(id, sizeof id, "req%d.logits", i);
        snprintf(title, sizeof title,
                 "request %d (joins at step %d, %d prompt tokens, %d decoded): logits in the running batch vs alone", i,
                 q[i].q->arrive, q[i].T, q[i].N);
        lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "continuous batch", "request alone", q[i].got, q[i].want,
                    (size_t)(q[i].T + q[i].N), (size_t)V, NULL, kl_rows(r, q[i].p, q[i].N));
    }
    for (int i = 0; i < R; i++)
        for (int j = i + 1; j < R; j++) {
            const lc_request *a = q[i].q, *b = q[j].q;
            if (a->arrive != b->arrive || a->chunk != b->chunk || a->decode != b->decode ||
                !same_prompt(&a->prompt, &b->prompt))
                continue;
            char id[64], title[128];
            snprintf(id, sizeof id, "req%d_%d.identical", i, j);
            snprintf(title, sizeof title, "identical requests %d and %d in one running batch", i, j);
            lc__compare(r, id, title, LC_CLASS_SAME, LC__ROWS, "continuous batch", "identical request", q[j].got,
                        q[i].got, (size_t)(q[i].T + q[i].N), (size_t)V, NULL, NULL);
        }
}

/* ---------------------------------------------------------------- prefix_cache */

/* Expanded end of each segment of lp in prompt p (an image segment: one past its
 * vision_end); 0 with the case's error set when the expansion does not fit the segments. */
static int segment_ends(lc__run *r, const lc_prompt *lp, const lc_prompt_info *p, int *ends)
{
    int at = 0;
    for (int s = 0; s < lp->n_segs; s++) {
        if (lp->segs[s].type == LC_SEG_IDS)
            at += lp->segs[s].n_ids;
        else {
            while (at < p->n && p->ids[at] != r->mi.vision_end_token_id)
                at++;
            at++;
        }
        if (at > p->n) {
            lc__set_error(r, "case '%s': the expanded prompt (%d tokens) does not fit its segments", r->c->name, p->n);
            return 0;
        }
        ends[s] = at;
    }
    return 1;
}

enum { PC_REUSED, PC_HIT, PC_TOKENS, PC_REFUSED, PC_LOOKUPS, PC_N };

/* Requests in order on one engine, each: a lookup in the engine's prefix cache (a new
 * sequence holding the longest usable boundary), the rest of its prompt prefilled from
 * there with a boundary stored after each `store_after` segment, its decode. Checked: what
 * every lookup reused and counted against the case's hand-derived integers (exact), and each
 * request's suffix and decode logits against the same request run cold (cross bound). */
void lc__kind_prefix_cache(lc__run *r)
{
    const lc_case *cs = r->c;
    const int R = cs->n_requests, V = r->V;
    int64_t *got = lc__alloc(r, (size_t)R * PC_N * sizeof *got), *want = lc__alloc(r, (size_t)R * PC_N * sizeof *want);
    if (!got || !want)
        return;
    lc_error err = {0};
    lc_prefix_stats before = {0}, after = {0};
    if (!lc__engine_ok(r, lc_engine_prefix_stats(r->e, &before, &err), &err))
        return;
    for (int i = 0; i < R && lc__ok(r); i++) {
        const lc_request *q = &cs->requests[i];
        const lc_prompt_info *p = lc__prompt(r, &q->prompt, 0);
        if (!p)
            return;
        const int T = p->n, N = q->decode;
        double *cold = lc__nans(r, (size_t)(T + N) * V), *warm = lc__nans(r, (size_t)(T + N) * V);
        int32_t *toks = lc__alloc(r, ((size_t)N + 1) * sizeof *toks);
        int *ends = lc__alloc(r, (size_t)q->prompt.n_segs * sizeof *ends);
        if (!cold || !warm || !toks || !ends || !alone(r, p, N, cold, toks, 1) || !segment_ends(r, &q->prompt, p, ends))
            return;
        int seq = -1, reused = 0;
        if (!lc__engine_ok(r, lc_engine_prefix_lookup(r->e, p->handle, &seq, &reused, &err), &err) ||
            lc__adopt_seq(r, seq) < 0 || !lc__engine_ok(r, lc_engine_prefix_stats(r->e, &after, &err), &err))
            return;
        int64_t *g = got + (size_t)i * PC_N, *w = want + (size_t)i * PC_N;
        g[PC_REUSED] = reused;
        g[PC_HIT] = after.hits - before.hits;
        g[PC_TOKENS] = after.tokens_reused - before.tokens_reused;
        g[PC_REFUSED] = after.refused - before.refused;
        g[PC_LOOKUPS] = after.lookups - before.lookups;
        w[PC_REUSED] = q->reused;
        w[PC_HIT] = q->reused > 0;
        w[PC_TOKENS] = q->reused;
        w[PC_REFUSED] = q->refused;
        w[PC_LOOKUPS] = 1;
        before = after;
        if (reused < 0 || reused > T)
            continue; /* the counters say it; no suffix to run */
        /* the rest of the prompt from the reused boundary, storing the case's boundaries */
        int at = reused;
        for (int k = 0; k < q->n_store; k++) {
            const int b = ends[q->store_after[k]];
            if (b <= at)
                continue; /* that boundary (or a longer one) came from the cache */
            if (!lc__prefill(r, seq, p, at, b, 0, warm + (size_t)at * V) ||
                !lc__engine_ok(r, lc_engine_prefix_store(r->e, seq, p->handle, &err), &err))
                return;
            at = b;
        }
        if (at < T && !lc__prefill(r, seq, p, at, T, 0, warm + (size_t)at * V))
            return;
        for (int k = 0; k < N; k++)
            if (!lc__engine_ok(r, lc_engine_decode(r->e, seq, toks[k], warm + (size_t)(T + k) * V, &err), &err))
                return;
        lc__seq_close(r, seq);
        char id[64], title[200];
        snprintf(id, sizeof id, "req%d.logits", i);
        snprintf(title, sizeof title, "request %d: logits after reusing %d of %d prompt tokens (then %d decoded) vs cold",
                 i, reused, T, N);
        lc__compare(r, id, title, LC_CLASS_CROSS, LC__ROWS, "prefix-cache hit", "cold run", warm + (size_t)reused * V,
                    cold + (size_t)reused * V, (size_t)(T + N - reused), (size_t)V, NULL,
                    kl_rows(r, p, N) + reused);
    }
    if (!lc__ok(r))
        return;
    lc__compare_ints(r, "counters",
                     "per lookup: tokens reused, hit, tokens_reused counted, partial match refused, lookups counted",
                     "engine's prefix cache", "case file (hand-derived)", got, want, (size_t)R, PC_N);
}

/* ---------------------------------------------------------------- isolation, interleaved */

/* Prompts A and B (both with images, different rope deltas) each alone, then both prefilled
 * (B's prefill after A's) and decoded turn about, token by token, on one engine: each
 * bitwise what it gave alone. */
void lc__isolation_interleaved(lc__run *r)
{
    const int V = r->V;
    const lc_decode *d = &r->c->decode;
    const int N = d->mode == LC_DECODE_GREEDY ? d->greedy : d->mode == LC_DECODE_IDS ? d->n_ids : 0;
    const lc_prompt_info *pa = lc__prompt(r, &r->c->prompt, 0), *pb = pa ? lc__prompt(r, &r->c->other_prompt, 0) : NULL;
    if (!pb)
        return;
    const lc_prompt_info *p[2] = {pa, pb};
    double *ref[2], *got[2];
    int32_t *toks[2];
    int seq[2];
    lc_error err = {0};
    for (int k = 0; k < 2; k++) {
        const size_t n = (size_t)(p[k]->n + N);
        ref[k] = lc__nans(r, n * V);
        got[k] = lc__nans(r, n * V);
        toks[k] = lc__alloc(r, ((size_t)N + 1) * sizeof *toks[k]);
        if (!ref[k] || !got[k] || !toks[k])
            return;
        if (d->mode == LC_DECODE_IDS) /* the case's own tokens, teacher-forced */
            memcpy(toks[k], d->ids, (size_t)N * sizeof *toks[k]);
        if (!alone(r, p[k], N, ref[k], toks[k], d->mode != LC_DECODE_IDS))
            return;
    }
    for (int k = 0; k < 2; k++)
        if ((seq[k] = lc__prefilled(r, p[k], p[k]->n, 0, got[k])) < 0)
            return;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 2; k++)
            if (!lc__engine_ok(r, lc_engine_decode(r->e, seq[k], toks[k][i], got[k] + (size_t)(p[k]->n + i) * V, &err),
                               &err))
                return;
    lc__compare(r, "a_interleaved", "prompt A decoded turn about with image prompt B vs A alone", LC_CLASS_SAME,
                LC__ROWS, "interleaved", "alone", got[0], ref[0], (size_t)(pa->n + N), (size_t)V, NULL, NULL);
    lc__compare(r, "b_interleaved", "prompt B decoded turn about with prompt A vs B alone", LC_CLASS_SAME, LC__ROWS,
                "interleaved", "alone", got[1], ref[1], (size_t)(pb->n + N), (size_t)V, NULL, NULL);
}
