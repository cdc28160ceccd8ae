/* SPDX-License-Identifier: MIT */
/*
 * The reference engine's backward passes behind lc_engine's vjp operation (LC_CAP_VJP):
 * the function names, inputs, parameters and result names of lc_engine.h ("gradients") mapped
 * onto reference/qref_vjp.h, with the planted backward bugs of engines/faults.h passed through
 * the fault-taking forms of qref_vjp_internal.h.
 *
 * Each function reads its inputs (checked by name and shape), computes every result it can
 * give into a small table of named buffers in the engine's scalar type, and the caller's
 * wanted results are then filled from that table by name (as double, element counts checked).
 * A wanted result the function does not give stays NULL: the harness reports it missing.
 *
 * Shape legend as qref_vjp.h: n tokens, Hk/Hv/Dk/Dv GDN heads and dims, C conv channels,
 * K conv kernel, D norm / head dim, H hidden.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_ref_vjp.h"
#include "qref_internal.h"
#include "qref_vjp_internal.h"

/* ---------------------------------------------------------------- the call's buffers */

#define MAX_RESULTS 40
#define MAX_BUFS 64

typedef struct {
    const qref_model *m;
    const qref_vjp_faults *f;
    const lc_vjp_in *in;
    lc_error *err;
    /* every buffer of the call, freed once at its end */
    void *bufs[MAX_BUFS];
    int n_bufs;
    /* what the function gives: name, data, element count */
    struct {
        char name[96];
        const qref_real *data;
        size_t count;
    } res[MAX_RESULTS];
    int n_res;
} call;

static int cfail(call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cfail(call *c, int code, const char *fmt, ...)
{
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lc_fail(c->err, code, "vjp %s: %s", c->in->fn, what);
}

/* Zeroed scratch of n reals owned by the call; NULL (error set) when out of memory. */
static qref_real *buf(call *c, size_t n)
{
    if (c->n_bufs == MAX_BUFS) {
        cfail(c, LC_EINTERNAL, "too many buffers");
        return NULL;
    }
    qref_real *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        cfail(c, LC_EINTERNAL, "out of memory for %zu values", n);
        return NULL;
    }
    c->bufs[c->n_bufs++] = p;
    return p;
}

static void give(call *c, const char *name, const qref_real *data, size_t count)
{
    if (c->n_res == MAX_RESULTS)
        return;
    snprintf(c->res[c->n_res].name, sizeof c->res[c->n_res].name, "%s", name);
    c->res[c->n_res].data = data;
    c->res[c->n_res].count = count;
    c->n_res++;
}

static double param(const call *c, const char *name, double dflt, int *given)
{
    for (int i = 0; i < c->in->n_params; i++)
        if (!strcmp(c->in->params[i].name, name)) {
            if (given)
                *given = 1;
            return c->in->params[i].value;
        }
    if (given)
        *given = 0;
    return dflt;
}

static const lc_vjp_tensor *find(const lc_vjp_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return &t[i];
    return NULL;
}

/* Tensor `name` of the inputs (grad = 0) or output gradients (grad = 1) as reals, with ndim
 * dimensions; want[i] >= 0 must match, want[i] < 0 is read into dims[i]. optional: absent
 * gives NULL without an error. */
static qref_real *get(call *c, int grad, const char *name, int ndim, const int64_t *want, int64_t *dims, int optional)
{
    const lc_vjp_tensor *t = grad ? find(c->in->grads, c->in->n_grads, name) : find(c->in->inputs, c->in->n_inputs, name);
    if (!t) {
        if (!optional)
            cfail(c, LC_EINPUT, "no %s '%s'", grad ? "output gradient" : "input", name);
        return NULL;
    }
    if (t->ndim != ndim) {
        cfail(c, LC_EINPUT, "%s '%s' has %d dimensions, expected %d", grad ? "output gradient" : "input", name,
              t->ndim, ndim);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (want[i] >= 0 && t->shape[i] != want[i]) {
            cfail(c, LC_EINPUT, "%s '%s': dimension %d is %lld, expected %lld", grad ? "output gradient" : "input",
                  name, i, (long long)t->shape[i], (long long)want[i]);
            return NULL;
        }
        if (t->shape[i] <= 0) {
            cfail(c, LC_EINPUT, "%s '%s': dimension %d is %lld", grad ? "output gradient" : "input", name, i,
                  (long long)t->shape[i]);
            return NULL;
        }
        if (dims)
            dims[i] = t->shape[i];
    }
    const size_t n = lc_vjp_count(ndim, t->shape);
    qref_real *p = buf(c, n);
    for (size_t i = 0; p && i < n; i++)
        p[i] = (qref_real)t->data[i];
    return p;
}

static int ok(const call *c)
{
    return c->err->code == LC_OK;
}

/* ---------------------------------------------------------------- gated delta rule */

static int fn_gdn(call *c, int chunked)
{
    int64_t qd[3] = {-1, -1, -1}, vd[3] = {-1, -1, -1};
    qref_real *q = get(c, 0, "q", 3, qd, qd, 0);
    if (!q)
        return c->err->code;
    const int n = (int)qd[0], Hk = (int)qd[1], Dk = (int)qd[2];
    int64_t kd[3] = {n, Hk, Dk};
    vd[0] = n;
    qref_real *k = get(c, 0, "k", 3, kd, NULL, 0);
    qref_real *v = k ? get(c, 0, "v", 3, vd, vd, 0) : NULL;
    if (!v)
        return c->err->code;
    const int Hv = (int)vd[1], Dv = (int)vd[2];
    if (Hv % Hk)
        return cfail(c, LC_EINPUT, "%d value heads do not divide into %d key heads", Hv, Hk);
    int64_t hd[2] = {n, Hv}, sd[3] = {Hv, Dk, Dv};
    qref_real *g = get(c, 0, "g", 2, hd, NULL, 0);
    qref_real *beta = g ? get(c, 0, "beta", 2, hd, NULL, 0) : NULL;
    qref_real *s0 = beta ? get(c, 0, "state0", 3, sd, NULL, 0) : NULL;
    qref_real *dO = s0 ? get(c, 1, "d_out", 3, vd, NULL, 1) : NULL;
    qref_real *dS = s0 && ok(c) ? get(c, 1, "d_state", 3, sd, NULL, 1) : NULL;
    if (!s0 || !ok(c))
        return c->err->code;
    const int chunk = (int)param(c, "chunk", 64, NULL);
    if (chunked && chunk < 1)
        return cfail(c, LC_EINPUT, "chunk %d: expected a positive chunk length", chunk);
    const size_t nk = (size_t)n * Hk * Dk, nv = (size_t)n * Hv * Dv, nh = (size_t)n * Hv, ss = (size_t)Hv * Dk * Dv;
    const double qs = 1.0 / sqrt((double)Dk);
    for (size_t i = 0; i < nk; i++)
        q[i] = (qref_real)(q[i] * qs); /* the kernels take q scaled */
    qref_real *dq = buf(c, nk), *dk = buf(c, nk), *dv = buf(c, nv), *dg = buf(c, nh), *db = buf(c, nh);
    qref_real *ds0 = buf(c, ss), *out = buf(c, nv), *state = buf(c, ss);
    size_t wl = chunked ? qref_vjp_gdn_chunked_scratch(n, chunk, Dk, Dv) : qref_vjp_gdn_recurrent_scratch(n, Dk, Dv);
    size_t fl = chunked ? qref__gdn_chunked_scratch(chunk, Dk, Dv) : 1;
    qref_real *w = buf(c, wl > fl ? wl : fl);
    if (!ok(c))
        return c->err->code;
    if (chunked)
        qref__vjp_gdn_chunked(dq, dk, dv, dg, db, ds0, dO, dS, q, k, v, g, beta, s0, n, Hk, Hv, Dk, Dv, chunk, w, c->f);
    else
        qref__vjp_gdn_recurrent(dq, dk, dv, dg, db, ds0, dO, dS, q, k, v, g, beta, s0, n, Hk, Hv, Dk, Dv, w, c->f);
    for (size_t i = 0; i < nk; i++)
        dq[i] = (qref_real)(dq[i] * qs); /* d/d(unscaled q) */
    memcpy(state, s0, ss * sizeof *state);
    if (chunked)
        qref__gdn_chunked(out, q, k, v, g, beta, state, n, Hk, Hv, Dk, Dv, chunk, w);
    else
        qref__gdn_recurrent(out, q, k, v, g, beta, state, n, Hk, Hv, Dk, Dv);
    give(c, "grad_q", dq, nk), give(c, "grad_k", dk, nk), give(c, "grad_v", dv, nv);
    give(c, "grad_g", dg, nh), give(c, "grad_beta", db, nh), give(c, "grad_state0", ds0, ss);
    give(c, "out", out, nv), give(c, "state", state, ss);
    return LC_OK;
}

/* ---------------------------------------------------------------- causal conv */

static int fn_conv(call *c)
{
    int64_t xd[2] = {-1, -1}, wd[2] = {-1, -1};
    qref_real *x = get(c, 0, "x", 2, xd, xd, 0);
    if (!x)
        return c->err->code;
    const int n = (int)xd[0], C = (int)xd[1];
    wd[0] = C;
    qref_real *w = get(c, 0, "w", 2, wd, wd, 0);
    if (!w)
        return c->err->code;
    const int K = (int)wd[1], S = K - 1;
    if (K < 2 || K > 64)
        return cfail(c, LC_EINPUT, "kernel %d: expected 2 to 64", K);
    int64_t sd[2] = {S, C};
    qref_real *s0 = get(c, 0, "state0", 2, sd, NULL, 0);
    qref_real *dO = s0 ? get(c, 1, "d_out", 2, xd, NULL, 1) : NULL;
    qref_real *dS = s0 && ok(c) ? get(c, 1, "d_state", 2, sd, NULL, 1) : NULL;
    if (!s0 || !ok(c))
        return c->err->code;
    int given = 0;
    const int chunk = (int)param(c, "chunk", n, &given);
    if (chunk < 1)
        return cfail(c, LC_EINPUT, "chunk %d: expected a positive piece length", chunk);
    const int np = (n + chunk - 1) / chunk;
    const size_t nx = (size_t)n * C, ns = (size_t)S * C, nw = (size_t)C * K;
    qref_real *dx = buf(c, nx), *dw = buf(c, nw), *dwp = buf(c, nw), *ds = buf(c, ns), *dsp = buf(c, ns);
    qref_real *states = buf(c, (size_t)(np + 1) * ns), *out = buf(c, nx);
    if (!ok(c))
        return c->err->code;
    /* forward piece by piece: the state entering each piece, the outputs */
    memcpy(states, s0, ns * sizeof *states);
    for (int p = 0; p < np; p++) {
        const int t0 = p * chunk, len = n - t0 < chunk ? n - t0 : chunk;
        memcpy(states + (size_t)(p + 1) * ns, states + (size_t)p * ns, ns * sizeof *states);
        qref__conv1d_causal_silu(out + (size_t)t0 * C, x + (size_t)t0 * C, states + (size_t)(p + 1) * ns, w, len, C, K);
    }
    /* backward: last piece first, each incoming-state gradient handed to the piece before */
    if (dS)
        memcpy(ds, dS, ns * sizeof *ds);
    for (int p = np - 1; p >= 0; p--) {
        const int t0 = p * chunk, len = n - t0 < chunk ? n - t0 : chunk;
        const size_t o = (size_t)t0 * C;
        qref__vjp_conv1d_causal_silu(dx + o, dwp, dsp, dO ? dO + o : NULL, ds, x + o, states + (size_t)p * ns, w, len,
                                     C, K, c->f);
        memcpy(ds, dsp, ns * sizeof *ds);
        for (size_t i = 0; i < nw; i++)
            dw[i] += dwp[i];
    }
    give(c, "grad_x", dx, nx), give(c, "grad_w", dw, nw), give(c, "grad_state0", ds, ns);
    give(c, "out", out, nx), give(c, "state", states + (size_t)np * ns, ns);
    return LC_OK;
}

/* ---------------------------------------------------------------- norms */

static int fn_l2norm(call *c)
{
    const lc_vjp_tensor *t = find(c->in->inputs, c->in->n_inputs, "x");
    if (!t)
        return cfail(c, LC_EINPUT, "no input 'x'");
    if (t->ndim < 1 || t->ndim > LC_VJP_MAX_DIMS)
        return cfail(c, LC_EINPUT, "input 'x' has %d dimensions", t->ndim);
    int64_t d[LC_VJP_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        d[i] = t->shape[i];
    qref_real *x = get(c, 0, "x", t->ndim, d, NULL, 0);
    qref_real *dy = x ? get(c, 1, "d_out", t->ndim, d, NULL, 0) : NULL;
    if (!dy)
        return c->err->code;
    const size_t cnt = lc_vjp_count(t->ndim, d);
    const int D = (int)d[t->ndim - 1], rows = (int)(cnt / (size_t)D);
    const double eps = param(c, "eps", 1e-6, NULL);
    qref_real *dx = buf(c, cnt), *out = buf(c, cnt);
    if (!ok(c))
        return c->err->code;
    qref__vjp_l2norm(dx, dy, x, rows, D, eps, c->f);
    memcpy(out, x, cnt * sizeof *out);
    qref__l2norm(out, rows, D, eps);
    give(c, "grad_x", dx, cnt), give(c, "out", out, cnt);
    return LC_OK;
}

static int fn_rmsnorm(call *c, int gated)
{
    int64_t xd[2] = {-1, -1};
    qref_real *x = get(c, 0, "x", 2, xd, xd, 0);
    if (!x)
        return c->err->code;
    const int n = (int)xd[0], D = (int)xd[1];
    int64_t wd[1] = {D};
    qref_real *z = gated ? get(c, 0, "z", 2, xd, NULL, 0) : NULL;
    qref_real *w = ok(c) ? get(c, 0, "w", 1, wd, NULL, 0) : NULL;
    qref_real *dO = w ? get(c, 1, "d_out", 2, xd, NULL, 0) : NULL;
    if (!dO)
        return c->err->code;
    const double eps = param(c, "eps", 1e-6, NULL);
    const size_t cnt = (size_t)n * D;
    qref_real *dx = buf(c, cnt), *dz = gated ? buf(c, cnt) : NULL, *dw = buf(c, (size_t)D), *out = buf(c, cnt);
    if (!ok(c))
        return c->err->code;
    if (gated) {
        qref_vjp_rmsnorm_gated(dx, dz, dw, dO, x, z, w, n, D, eps);
        qref__rmsnorm_gated(out, x, z, w, n, D, eps);
        give(c, "grad_z", dz, cnt);
    } else {
        qref_vjp_rmsnorm(dx, dw, dO, x, w, n, D, eps);
        qref__rmsnorm(out, x, w, n, D, eps);
    }
    give(c, "grad_x", dx, cnt), give(c, "grad_w", dw, (size_t)D), give(c, "out", out, cnt);
    return LC_OK;
}

/* ---------------------------------------------------------------- rotary */

static int64_t *positions(call *c, int n, int optional)
{
    const lc_vjp_tensor *t = find(c->in->inputs, c->in->n_inputs, "position_ids");
    if (!t) {
        if (!optional)
            cfail(c, LC_EINPUT, "no input 'position_ids'");
        return NULL;
    }
    if (t->ndim != 2 || t->shape[0] != 3 || t->shape[1] != n) {
        cfail(c, LC_EINPUT, "input 'position_ids': expected shape (3, %d)", n);
        return NULL;
    }
    int64_t *p = (int64_t *)(void *)buf(c, 3 * (size_t)n * sizeof(int64_t) / sizeof(qref_real) + 1);
    for (size_t i = 0; p && i < 3 * (size_t)n; i++)
        p[i] = (int64_t)t->data[i];
    return p;
}

static int fn_rope(call *c)
{
    const qref_config *cfg = &c->m->cfg;
    int64_t qd[3] = {-1, -1, -1}, kd[3] = {-1, -1, -1};
    qref_real *q = get(c, 0, "q", 3, qd, qd, 0);
    if (!q)
        return c->err->code;
    const int n = (int)qd[0], D = (int)qd[2], R = cfg->rotary_dim, half = R / 2;
    kd[0] = n, kd[2] = D;
    qref_real *k = get(c, 0, "k", 3, kd, kd, 0);
    qref_real *dq = k ? get(c, 1, "d_q", 3, qd, NULL, 1) : NULL;
    qref_real *dk = k && ok(c) ? get(c, 1, "d_k", 3, kd, NULL, 1) : NULL;
    int64_t *pos = k && ok(c) ? positions(c, n, 0) : NULL;
    if (!pos)
        return c->err->code;
    if (R > D || R % 2)
        return cfail(c, LC_EINPUT, "rotary dim %d does not fit heads of %lld", R, (long long)D);
    const size_t nq = (size_t)n * qd[1] * D, nk = (size_t)n * kd[1] * D;
    qref_real *ct = buf(c, (size_t)n * half), *st = buf(c, (size_t)n * half);
    qref_real *gq = buf(c, nq), *gk = buf(c, nk);
    if (!ok(c))
        return c->err->code;
    qref_rotary(c->m, pos, n, ct, st);
    if (dq)
        qref__vjp_rope(gq, dq, ct, st, n, (int)qd[1], D, R, c->f);
    if (dk)
        qref__vjp_rope(gk, dk, ct, st, n, (int)kd[1], D, R, c->f);
    qref__rope_apply(q, ct, st, n, (int)qd[1], D, R);
    qref__rope_apply(k, ct, st, n, (int)kd[1], D, R);
    give(c, "grad_q", gq, nq), give(c, "grad_k", gk, nk);
    give(c, "q_out", q, nq), give(c, "k_out", k, nk);
    return LC_OK;
}

/* ---------------------------------------------------------------- decoder layers */

/* transformers' parameter names (relative to the layer), where their gradients land, and
 * transformers' shape where it differs from the flat block (conv1d.weight is (C, 1, K)) */
static const struct {
    const char *name;
    size_t off;
} layer_params[] = {
#define P(n, field) {n, offsetof(qref_layer_grads, field)}
    P("input_layernorm.weight", input_norm), P("post_attention_layernorm.weight", post_norm),
    P("linear_attn.in_proj_qkv.weight", in_proj_qkv), P("linear_attn.in_proj_z.weight", in_proj_z),
    P("linear_attn.in_proj_b.weight", in_proj_b), P("linear_attn.in_proj_a.weight", in_proj_a),
    P("linear_attn.conv1d.weight", conv_w), P("linear_attn.dt_bias", dt_bias), P("linear_attn.A_log", A_log),
    P("linear_attn.norm.weight", gdn_norm), P("linear_attn.out_proj.weight", out_proj),
    P("self_attn.q_proj.weight", q_proj), P("self_attn.k_proj.weight", k_proj), P("self_attn.v_proj.weight", v_proj),
    P("self_attn.o_proj.weight", o_proj), P("self_attn.q_norm.weight", q_norm), P("self_attn.k_norm.weight", k_norm),
    P("mlp.gate_proj.weight", gate_proj), P("mlp.up_proj.weight", up_proj), P("mlp.down_proj.weight", down_proj),
    P("mlp.gate.weight", router), P("mlp.experts.gate_up_proj", experts_gate_up),
    P("mlp.experts.down_proj", experts_down), P("mlp.shared_expert.gate_proj.weight", shared_gate_proj),
    P("mlp.shared_expert.up_proj.weight", shared_up_proj), P("mlp.shared_expert.down_proj.weight", shared_down_proj),
    P("mlp.shared_expert_gate.weight", shared_expert_gate),
#undef P
};
#define N_LAYER_PARAMS ((int)(sizeof layer_params / sizeof layer_params[0]))

static qref_real *grad_field(const qref_layer_grads *g, size_t off)
{
    return *(qref_real *const *)(const void *)((const char *)g + off);
}

/* Elements from p to the next field of the block (or its end): the field's size. */
static size_t field_len(const qref_layer_grads *g, const qref_real *p)
{
    const qref_real *end = g->block + g->block_len;
    for (int i = 0; i < N_LAYER_PARAMS; i++) {
        const qref_real *q = grad_field(g, layer_params[i].off);
        if (q && q > p && q < end)
            end = q;
    }
    return (size_t)(end - p);
}

static int fn_layer(call *c, qref_layer_grads *g)
{
    const qref_config *cfg = &c->m->cfg;
    int given = 0;
    const double lv = param(c, "layer", -1, &given);
    if (!given)
        return cfail(c, LC_EINPUT, "parameter 'layer' is required");
    if (lv < 0 || lv >= cfg->num_layers || lv != floor(lv))
        return cfail(c, LC_EINPUT, "layer %g: the checkpoint has layers 0 to %d", lv, cfg->num_layers - 1);
    const int layer = (int)lv, H = cfg->hidden_size;
    int64_t xd[2] = {-1, H};
    qref_real *x = get(c, 0, "x", 2, xd, xd, 0);
    qref_real *dO = x ? get(c, 1, "d_out", 2, xd, NULL, 0) : NULL;
    if (!dO)
        return c->err->code;
    const int n = (int)xd[0];
    uint8_t *mask = NULL;
    const lc_vjp_tensor *mt = find(c->in->inputs, c->in->n_inputs, "mask");
    if (mt) {
        if (mt->ndim != 1 || mt->shape[0] != n)
            return cfail(c, LC_EINPUT, "input 'mask': expected shape (%d)", n);
        mask = (uint8_t *)(void *)buf(c, (size_t)n / sizeof(qref_real) + 1);
        for (int t = 0; mask && t < n; t++)
            mask[t] = mt->data[t] != 0;
    }
    int64_t *pos = ok(c) ? positions(c, n, 1) : NULL;
    if (!ok(c))
        return c->err->code;
    const double chunk = param(c, "chunk", 64, NULL);
    if (chunk < 0 || chunk != floor(chunk))
        return cfail(c, LC_EINPUT, "chunk %g: expected a chunk length, or 0 for the recurrent form", chunk);
    qref_error qe = {0};
    if (qref_layer_grads_init(g, c->m, layer, &qe) != QREF_OK)
        return cfail(c, LC_EINPUT, "%s", qe.msg);
    qref_real *out = buf(c, (size_t)n * H), *dx = buf(c, (size_t)n * H);
    if (!ok(c))
        return c->err->code;
    const qref_layer_input in = {.x = x,
                                 .n = n,
                                 .mask = mask,
                                 .pos = pos,
                                 .gdn_mode = chunk > 0 ? QREF_GDN_CHUNKED : QREF_GDN_RECURRENT,
                                 .gdn_chunk = (int)chunk};
    qref_status st = qref__vjp_decoder_layer(c->m, layer, &in, dO, out, dx, g, c->f, &qe);
    if (st != QREF_OK)
        return cfail(c, st == QREF_ENOMEM ? LC_EINTERNAL : LC_EINPUT, "%s", qe.msg);
    give(c, "grad_x", dx, (size_t)n * H), give(c, "out", out, (size_t)n * H);
    for (int i = 0; i < N_LAYER_PARAMS; i++) {
        const qref_real *p = grad_field(g, layer_params[i].off);
        char name[96];
        if (!p)
            continue;
        snprintf(name, sizeof name, "grad_w/%s", layer_params[i].name);
        give(c, name, p, field_len(g, p));
    }
    return LC_OK;
}

/* ---------------------------------------------------------------- dispatch */

#define LC__VJP_FNS(X) X("gdn_recurrent") X("gdn_chunked") X("conv") X("l2norm") X("rmsnorm") X("rmsnorm_gated") \
    X("rope") X("decoder_layer")

int lc__ref_vjp(const qref_model *m, const qref_vjp_faults *f, const lc_vjp_in *in, lc_vjp_result *want, int n_want,
                lc_error *err)
{
    lc_error local = {0};
    call c = {.m = m, .f = f, .in = in, .err = &local};
    qref_layer_grads g = {0};
    const char *fn = in->fn ? in->fn : "";
    int rc;
    if (!strcmp(fn, "gdn_recurrent") || !strcmp(fn, "gdn_chunked"))
        rc = fn_gdn(&c, !strcmp(fn, "gdn_chunked"));
    else if (!strcmp(fn, "conv"))
        rc = fn_conv(&c);
    else if (!strcmp(fn, "l2norm"))
        rc = fn_l2norm(&c);
    else if (!strcmp(fn, "rmsnorm") || !strcmp(fn, "rmsnorm_gated"))
        rc = fn_rmsnorm(&c, !strcmp(fn, "rmsnorm_gated"));
    else if (!strcmp(fn, "rope"))
        rc = fn_rope(&c);
    else if (!strcmp(fn, "decoder_layer"))
        rc = fn_layer(&c, &g);
    else {
        char names[200] = "";
        size_t o = 0;
#define LC__VJP_NAME(s) o += (size_t)snprintf(names + o, o < sizeof names ? sizeof names - o : 0, "%s%s", o ? ", " : "", s);
        LC__VJP_FNS(LC__VJP_NAME)
#undef LC__VJP_NAME
        rc = lc_fail(&local, LC_EINPUT, "vjp: unknown function '%s' (expected %s)", fn, names);
    }
    for (int i = 0; rc == LC_OK && i < n_want; i++) {
        want[i].data = NULL;
        for (int k = 0; k < c.n_res; k++) {
            if (strcmp(c.res[k].name, want[i].name))
                continue;
            const size_t cnt = lc_vjp_count(want[i].ndim, want[i].shape);
            if (cnt != c.res[k].count) {
                rc = cfail(&c, LC_EINPUT, "result '%s': %zu values asked for, the function gives %zu", want[i].name,
                           cnt, c.res[k].count);
                break;
            }
            want[i].data = malloc((cnt ? cnt : 1) * sizeof *want[i].data);
            if (!want[i].data) {
                rc = cfail(&c, LC_EINTERNAL, "out of memory for result '%s'", want[i].name);
                break;
            }
            for (size_t j = 0; j < cnt; j++)
                want[i].data[j] = (double)c.res[k].data[j];
        }
    }
    if (rc != LC_OK)
        lc_vjp_results_free(want, n_want);
    qref_layer_grads_free(&g);
    for (int i = 0; i < c.n_bufs; i++)
        free(c.bufs[i]);
    if (err && rc != LC_OK)
        *err = local;
    return rc;
}
