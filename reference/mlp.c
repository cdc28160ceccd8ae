/* SPDX-License-Identifier: MIT */
/*
 * The feed-forward blocks of the decoder: the dense SwiGLU MLP and the MoE block (softmax
 * top-k routing, routed experts, sigmoid-gated shared expert).
 *
 * MoE work is spread over the pool by expert: the tokens routed to each expert are gathered in
 * token order, each expert's products run as one item (its projections cut into the same
 * blocks as anywhere else, run on the item's thread), and each token then sums its experts'
 * outputs in ascending expert order, then the shared expert: the order the one-thread loop
 * used, so the results do not depend on the thread count.
 *
 * Shape legend: n = tokens, H = hidden, F = MLP width, E = experts, k = experts per token,
 * I = expert width, Is = shared expert width.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "qref_internal.h"

/* ---------------------------------------------------------------- dense */

void qref__swiglu(qref_real *out, const qref_real *h, qref_matrix wg, qref_matrix wu, qref_matrix wd, int n,
                  int H, int F, qref_real *work)
{
    qref_real *gt = work, *up = work + (size_t)n * F;       /* (n, F) each */
    qref__linear_m(gt, h, wg, NULL, n, H, F);
    qref__linear_m(up, h, wu, NULL, n, H, F);
    qref__silu_mul(gt, gt, up, (size_t)n * F);
    qref__linear_m(out, gt, wd, NULL, n, F, H);
}

/* ---------------------------------------------------------------- MoE */

size_t qref__moe_work(const qref_config *c, int n)
{
    const size_t N = (size_t)n, H = (size_t)c->hidden_size, E = (size_t)c->num_experts;
    const size_t k = (size_t)c->num_experts_per_tok, I = (size_t)c->moe_intermediate_size;
    const size_t Is = (size_t)c->shared_expert_intermediate_size;
    return 2 * N * k + N * E + 2 * N * k * H + N * k * 3 * I + N * H + 2 * N * Is + N;
}

size_t qref__moe_iwork(const qref_config *c, int n)
{
    return 3 * (size_t)n * (size_t)c->num_experts_per_tok + (size_t)c->num_experts + 1;
}

typedef struct {
    const qref_config *c;
    const qref_layer_weights *w;
    const qref_real *h, *route_w, *y, *shared, *sgate;
    const int *route_idx, *rows, *off, *slot;
    const uint8_t *active;
    qref_real *xin, *yw, *gu, *act, *out;
    int n;
} moe_job;

/* One expert: gather its rows, gate/up, SiLU * up, down. */
static void expert_item(void *ctx, int e, int worker)
{
    (void)worker;
    const moe_job *j = ctx;
    const int H = j->c->hidden_size, I = j->c->moe_intermediate_size;
    const int r0 = j->off[e], m = j->off[e + 1] - r0;
    if (!m)
        return;
    qref_real *xin = j->xin + (size_t)r0 * H;               /* (m, H) */
    qref_real *gu = j->gu + (size_t)r0 * 2 * I;             /* (m, 2I) */
    qref_real *act = j->act + (size_t)r0 * I;               /* (m, I) */
    for (int r = 0; r < m; r++)
        memcpy(xin + (size_t)r * H, j->h + (size_t)j->rows[r0 + r] * H, (size_t)H * sizeof *xin);
    qref__linear_m(gu, xin, qref__matrix_at(j->w->experts_gate_up, (size_t)e * 2 * I * H), NULL, m, H, 2 * I);
    for (int r = 0; r < m; r++)
        for (int i = 0; i < I; i++)
            act[(size_t)r * I + i] = (qref_real)(qref__silu((double)gu[(size_t)r * 2 * I + i]) *
                                                 (double)gu[(size_t)r * 2 * I + I + i]);
    qref__linear_m(j->yw + (size_t)r0 * H, act, qref__matrix_at(j->w->experts_down, (size_t)e * H * I), NULL, m, I,
                   H);
}

/* Tokens [16 item, 16 item + 16): routed outputs in ascending expert order, then shared. */
static void combine_item(void *ctx, int item, int worker)
{
    (void)worker;
    const moe_job *j = ctx;
    const int H = j->c->hidden_size, k = j->c->num_experts_per_tok;
    const int t0 = item * 16, t1 = j->n - t0 < 16 ? j->n : t0 + 16;
    for (int t = t0; t < t1; t++) {
        qref_real *o = j->out + (size_t)t * H;              /* (H) */
        memset(o, 0, (size_t)H * sizeof *o);
        if (!j->active[t])
            continue;
        int order[64], cnt = 0;                             /* slots by ascending expert */
        for (int s = 0; s < k && s < 64; s++) {
            int p = s;
            while (p > 0 && j->route_idx[(size_t)t * k + order[p - 1]] > j->route_idx[(size_t)t * k + s])
                order[p] = order[p - 1], p--;
            order[p] = s;
            cnt++;
        }
        for (int i = 0; i < cnt; i++) {
            const int p = j->slot[(size_t)t * k + order[i]];
            const qref_real wgt = j->route_w[(size_t)t * k + order[i]];
            const qref_real *y = j->yw + (size_t)p * H;     /* (H) */
            for (int d = 0; d < H; d++)
                o[d] += wgt * y[d];
        }
        const double gsig = qref__sigmoid((double)j->sgate[t]);
        for (int d = 0; d < H; d++)
            o[d] += (qref_real)(gsig * (double)j->shared[(size_t)t * H + d]);
    }
}

void qref__moe(qref_real *out, const qref_config *c, const qref_layer_weights *w, const qref_real *h, int n,
               const uint8_t *active, int no_renorm, qref_real *work, int *iwork)
{
    const int H = c->hidden_size, E = c->num_experts, k = c->num_experts_per_tok;
    const int I = c->moe_intermediate_size, Is = c->shared_expert_intermediate_size;
    const size_t nk = (size_t)n * k;
    assert(k >= 1 && k <= 64);
    qref_real *route_w = work;                              /* (n, k) */
    qref_real *logits = route_w + nk;                       /* (n, E) */
    qref_real *xin = logits + (size_t)n * E;                /* (n*k, H) rows grouped by expert */
    qref_real *yw = xin + nk * H;                           /* (n*k, H) their outputs */
    qref_real *gu = yw + nk * H;                            /* (n*k, 2I) */
    qref_real *act = gu + nk * 2 * I;                       /* (n*k, I) */
    qref_real *shared = act + nk * I;                       /* (n, H) */
    qref_real *swork = shared + (size_t)n * H;              /* (n, 2*Is) */
    qref_real *sgate = swork + (size_t)n * 2 * Is;          /* (n) */
    int *route_idx = iwork;                                 /* (n, k) */
    int *rows = route_idx + nk;                             /* (n*k) token of each grouped row */
    int *slot = rows + nk;                                  /* (n, k) grouped row of each choice */
    int *off = slot + nk;                                   /* (E + 1) first grouped row per expert */

    qref__linear(logits, h, w->router, NULL, n, H, E);
    qref__moe_route(route_idx, route_w, logits, n, E, k);
    for (int t = 0; no_renorm && t < n; t++) { /* planted bug: the top-k softmax weights as they are */
        const qref_real *lt = logits + (size_t)t * E;
        double mx = -INFINITY, z = 0;
        for (int e = 0; e < E; e++)
            mx = lt[e] > mx ? lt[e] : mx;
        for (int e = 0; e < E; e++)
            z += exp((double)lt[e] - mx);
        for (int j = 0; j < k; j++)
            route_w[(size_t)t * k + j] = (qref_real)(exp((double)lt[route_idx[(size_t)t * k + j]] - mx) / z);
    }
    /* group the active tokens' choices by expert, tokens ascending within an expert */
    for (int e = 0; e <= E; e++)
        off[e] = 0;
    for (int t = 0; t < n; t++)
        for (int s = 0; active[t] && s < k; s++)
            off[route_idx[(size_t)t * k + s] + 1]++;
    for (int e = 0; e < E; e++)
        off[e + 1] += off[e];
    for (int e = 0; e < E; e++)
        for (int t = 0; t < n; t++)
            for (int s = 0; active[t] && s < k; s++)
                if (route_idx[(size_t)t * k + s] == e) {
                    const int p = off[e]++;
                    rows[p] = t;
                    slot[(size_t)t * k + s] = p;
                }
    for (int e = E; e > 0; e--)                             /* off[e] was advanced to off[e+1] */
        off[e] = off[e - 1];
    off[0] = 0;

    moe_job j = {c, w, h, route_w, NULL, shared, sgate, route_idx, rows, off, slot, active, xin, yw, gu, act, out, n};
    qref__parallel(E, expert_item, &j);
    qref__swiglu(shared, h, w->shared_gate_proj, w->shared_up_proj, w->shared_down_proj, n, H, Is, swork);
    qref__linear(sgate, h, w->shared_expert_gate, NULL, n, H, 1);
    qref__parallel((n + 15) / 16, combine_item, &j);
}
