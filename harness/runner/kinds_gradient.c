/* SPDX-License-Identifier: MIT */
/*
 * Case kind `gradient`: one backward pass of the engine (lc_engine's vjp, LC_CAP_VJP) against
 * float64 autograd of transformers' own functions (golden/gradients.h5, golden/README.md,
 * "Gradients").
 *
 * Steps: read the forward inputs and output gradients of the case's golden group, send them
 * with the function's parameters, ask for every gradient autograd stored (and the forward
 * outputs), compare each returned gradient with autograd's (class golden: max |a-e| / max |e|
 * and NMSE, the case's bounds), and with `cross_recurrent` run the recurrent form too and
 * compare the two (class cross). A gradient the engine does not return, or returns with a
 * NaN or an infinity, fails the case with a reason naming it; a forward output it does not
 * return is left out (it is optional).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

/* ---------------------------------------------------------------- what each function takes */

#define MAX_T 8
#define MAX_WANT 48

static const struct {
    lc_grad_fn fn;
    const char *inputs[MAX_T];      /* forward inputs, datasets of the group */
    const char *grads[3];           /* output gradients, datasets of the group */
    const char *results[MAX_T];     /* autograd results, datasets of the expected group */
    int weights;                    /* plus grad_w/<name> for every name in param_names */
} fns[] = {
    {LC_GRAD_FN_GDN_RECURRENT, {"q", "k", "v", "g", "beta", "state0"}, {"d_out", "d_state"},
     {"grad_q", "grad_k", "grad_v", "grad_g", "grad_beta", "grad_state0", "out", "state"}, 0},
    {LC_GRAD_FN_GDN_CHUNKED, {"q", "k", "v", "g", "beta", "state0"}, {"d_out", "d_state"},
     {"grad_q", "grad_k", "grad_v", "grad_g", "grad_beta", "grad_state0", "out", "state"}, 0},
    {LC_GRAD_FN_CONV, {"x", "state0", "w"}, {"d_out", "d_state"}, {"grad_x", "grad_w", "grad_state0", "out", "state"},
     0},
    {LC_GRAD_FN_L2NORM, {"x"}, {"d_out"}, {"grad_x", "out"}, 0},
    {LC_GRAD_FN_RMSNORM, {"x", "w"}, {"d_out"}, {"grad_x", "grad_w", "out"}, 0},
    {LC_GRAD_FN_RMSNORM_GATED, {"x", "z", "w"}, {"d_out"}, {"grad_x", "grad_z", "grad_w", "out"}, 0},
    {LC_GRAD_FN_ROPE, {"q", "k", "position_ids"}, {"d_q", "d_k"}, {"grad_q", "grad_k", "q_out", "k_out"}, 0},
    {LC_GRAD_FN_DECODER_LAYER, {"x", "mask", "position_ids"}, {"d_out"}, {"grad_x", "out"}, 1},
};

static int is_int_input(const char *name)
{
    return !strcmp(name, "mask") || !strcmp(name, "position_ids");
}

static int is_gradient(const char *name)
{
    return !strncmp(name, "grad_", 5);
}

/* "grad_beta" -> "beta", "grad_w/mlp.up_proj.weight" -> "mlp.up_proj.weight" */
static const char *differentiated(const char *name)
{
    return !strncmp(name, "grad_w/", 7) ? name + 7 : name + 5;
}

/* ---------------------------------------------------------------- golden reads */

typedef struct {
    char name[128];
    lc_h5_shape shape;
    double *data;               /* arena */
} gtensor;

/* Dataset `rel` under `sub` of the case's group (sub NULL: the group itself), any shape. */
static int read_any(lc__run *r, lc__golden *g, const char *sub, const char *rel, gtensor *t)
{
    char path[600];
    lc_error le = {0};
    snprintf(path, sizeof path, "%s%s%s/%s", g->group, sub ? "/" : "", sub ? sub : "", rel);
    snprintf(t->name, sizeof t->name, "%s", rel);
    t->data = NULL;
    if (lc_h5_read_f64(&g->f, path, &t->data, &t->shape, &le)) {
        lc__set_error(r, "%s", le.msg);
        return 0;
    }
    if (!lc__own(r, t->data))
        return 0;
    if (t->shape.ndim > LC_VJP_MAX_DIMS) {
        lc__set_error(r, "%s: %s has %d dimensions (at most %d)", r->c->golden, path, t->shape.ndim, LC_VJP_MAX_DIMS);
        return 0;
    }
    if (r->o->golden_hook)
        r->o->golden_hook(r->o->hook_ctx, r->c->name, rel, t->data, t->shape.count);
    return 1;
}

static int dataset_exists(lc__golden *g, const char *sub, const char *rel)
{
    char path[600];
    snprintf(path, sizeof path, "%s%s%s/%s", g->group, sub ? "/" : "", sub ? sub : "", rel);
    return lc_h5_exists(&g->f, path);
}

/* The names of param_names (a JSON list of plain strings) into names (arena copies). */
static int param_names(lc__run *r, lc__golden *g, char **names, int max)
{
    char *json = NULL;
    lc_error le = {0};
    if (lc_h5_read_attr_str(&g->f, g->group, "param_names", &json, &le)) {
        lc__set_error(r, "%s", le.msg);
        return -1;
    }
    if (!lc__own(r, json))
        return -1;
    int n = 0;
    for (char *p = strchr(json, '"'); p; p = strchr(p + 1, '"')) {
        char *end = strchr(p + 1, '"');
        if (!end)
            break;
        if (n == max) {
            lc__set_error(r, "%s: %s: more than %d parameters", r->c->golden, g->group, max);
            return -1;
        }
        *end = '\0';
        names[n++] = p + 1;
        p = end;
    }
    return n;
}

/* ---------------------------------------------------------------- failures with a reason */

static void fail_reason(lc__run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The case fails with this reason, unless it already failed or erred (the first reason wins). */
static void fail_reason(lc__run *r, const char *fmt, ...)
{
    if (r->res->verdict != LC_VERDICT_PASS)
        return;
    va_list ap;
    va_start(ap, fmt);
    r->res->verdict = LC_VERDICT_FAIL;
    vsnprintf(r->res->reason, sizeof r->res->reason, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- one engine call */

typedef struct {
    lc_vjp_tensor t[MAX_T + 3];
    int n_in, n_grads;
    lc_vjp_param params[2];
    int n_params;
    lc_vjp_result want[MAX_WANT];
    gtensor expect[MAX_WANT];
    int n_want;
} request;

/* Runs the vjp of fn with the request's tensors and parameters (a parameter < 0: not sent);
 * the results land in want[i].data, owned by the arena. */
static int call_vjp(lc__run *r, request *q, lc_grad_fn fn, double chunk, double layer, double eps)
{
    lc_vjp_param params[3];
    int np = 0;
    if (chunk >= 0)
        params[np++] = (lc_vjp_param){"chunk", chunk};
    if (layer >= 0)
        params[np++] = (lc_vjp_param){"layer", layer};
    if (eps >= 0)
        params[np++] = (lc_vjp_param){"eps", eps};
    lc_vjp_in in = {.fn = lc_grad_fn_name(fn),
                    .params = params,
                    .n_params = np,
                    .inputs = q->t,
                    .n_inputs = q->n_in,
                    .grads = q->t + q->n_in,
                    .n_grads = q->n_grads};
    lc_error err = {0};
    if (!lc__engine_ok(r, lc_engine_vjp(r->e, &in, q->want, q->n_want, &err), &err))
        return 0;
    for (int i = 0; i < q->n_want; i++)
        if (q->want[i].data && !lc__own(r, q->want[i].data)) {
            for (int k = i + 1; k < q->n_want; k++)
                free(q->want[k].data);
            return 0;
        }
    return 1;
}

/* A numeric attribute of the case's group into *v; absent: *v unchanged (optional) or the
 * case's error. */
static int group_attr(lc__run *r, lc__golden *g, const char *name, double *v, int optional)
{
    lc_error le = {0};
    if (optional && !lc_h5_attr_exists(&g->f, g->group, name))
        return 1;
    if (lc_h5_read_attr_f64(&g->f, g->group, name, v, &le)) {
        lc__set_error(r, "%s", le.msg);
        return 0;
    }
    return 1;
}

/* Rows and width a tensor is compared as: tokens first (a per-token curve), a weight gradient
 * as one row. */
static void rows_of(const gtensor *t, size_t *P, size_t *W)
{
    *P = t->shape.ndim >= 2 && strncmp(t->name, "grad_w", 6) ? (size_t)t->shape.shape[0] : 1;
    *W = *P ? t->shape.count / *P : 0;
}

/* Engine result i against autograd (or against another run, cross). */
static void compare_one(lc__run *r, const request *q, int i, const double *a, const double *e, lc_cmp_class cls,
                        const char *id_prefix, const char *actual, const char *expected)
{
    const gtensor *t = &q->expect[i];
    char id[200], title[300];
    size_t P, W;
    rows_of(t, &P, &W);
    snprintf(id, sizeof id, "%s%s", id_prefix, t->name);
    snprintf(title, sizeof title, "%s%s: %s vs %s", is_gradient(t->name) ? "gradient " : "forward ", t->name, actual,
             expected);
    const lc_comparison *cmp = lc__compare(r, id, title, cls, LC__FLAT, actual, expected, a, e, P, W, NULL, NULL);
    if (cmp && is_gradient(t->name)) {
        size_t bad = 0, first = 0;
        for (size_t k = 0; k < t->shape.count; k++)
            if (!isfinite(a[k]) && bad++ == 0)
                first = k;
        if (bad)
            fail_reason(r, "engine returned a non-finite gradient for %s (%zu values, the first at element %zu: %g)",
                        differentiated(t->name), bad, first, a[first]);
    }
}

/* ---------------------------------------------------------------- the kind */

void lc__kind_gradient(lc__run *r)
{
    const lc_case *c = r->c;
    lc__golden *g = lc__golden_open(r);
    if (!g)
        return;
    int f = -1;
    for (int i = 0; i < (int)(sizeof fns / sizeof fns[0]); i++)
        if (fns[i].fn == c->function)
            f = i;
    if (f < 0) {
        lc__set_error(r, "case '%s': function %s has no gradient steps", c->name, lc_grad_fn_name(c->function));
        return;
    }
    request *q = lc__alloc(r, sizeof *q);
    if (!q)
        return;

    /* inputs and output gradients, as autograd got them */
    gtensor *in = lc__alloc(r, (MAX_T + 3) * sizeof *in);
    if (!in)
        return;
    int n = 0;
    for (int k = 0; k < MAX_T && fns[f].inputs[k]; k++, n++)
        if (!read_any(r, g, NULL, fns[f].inputs[k], &in[n]))
            return;
    q->n_in = n;
    for (int k = 0; k < 3 && fns[f].grads[k]; k++, n++)
        if (!read_any(r, g, NULL, fns[f].grads[k], &in[n]))
            return;
    q->n_grads = n - q->n_in;
    for (int k = 0; k < n; k++) {
        lc_vjp_tensor *t = &q->t[k];
        t->name = in[k].name;
        t->ndim = in[k].shape.ndim;
        memcpy(t->shape, in[k].shape.shape, (size_t)t->ndim * sizeof t->shape[0]);
        t->data = in[k].data;
        t->is_int = is_int_input(in[k].name);
    }

    /* the results autograd stored: each wanted with its shape */
    char *wnames[MAX_WANT];
    int nw = 0;
    for (int k = 0; k < MAX_T && fns[f].results[k]; k++)
        wnames[nw++] = (char *)fns[f].results[k];
    if (fns[f].weights) {
        char *pn[MAX_WANT];
        int np = param_names(r, g, pn, MAX_WANT - nw);
        if (np < 0)
            return;
        for (int k = 0; k < np; k++) {
            char *w = lc__alloc(r, strlen(pn[k]) + 8);
            if (!w)
                return;
            sprintf(w, "grad_w/%s", pn[k]);
            wnames[nw++] = w;
        }
    }
    for (int k = 0; k < nw; k++) {
        if (!is_gradient(wnames[k]) && !dataset_exists(g, c->expected, wnames[k]))
            continue; /* a forward output autograd did not store */
        gtensor *e = &q->expect[q->n_want];
        if (!read_any(r, g, c->expected, wnames[k], e))
            return;
        lc_vjp_result *w = &q->want[q->n_want++];
        w->name = e->name;
        w->ndim = e->shape.ndim;
        memcpy(w->shape, e->shape.shape, (size_t)w->ndim * sizeof w->shape[0]);
    }

    /* parameters: the case's chunk, else the group's; the layer and the norms' epsilon from
     * the group; the rotary from the checkpoint, which must be the one the golden used */
    double chunk = c->grad_chunk, layer = -1, eps = -1, theta = r->mi.rope_theta, rdim = r->mi.rotary_dim;
    if (chunk < 0 && c->function == LC_GRAD_FN_GDN_CHUNKED && !group_attr(r, g, "chunk", &chunk, 0))
        return;
    if (c->function == LC_GRAD_FN_DECODER_LAYER && !group_attr(r, g, "layer", &layer, 0))
        return;
    if (!group_attr(r, g, "eps", &eps, 1))
        return;
    if (c->function == LC_GRAD_FN_ROPE &&
        (!group_attr(r, g, "rope_theta", &theta, 0) || !group_attr(r, g, "rotary_dim", &rdim, 0)))
        return;
    if (theta != r->mi.rope_theta || rdim != r->mi.rotary_dim) {
        lc__set_error(r, "%s: %s: rotary theta %g over %g dims, but checkpoint %s has %g over %d", c->golden, g->group,
                      theta, rdim, c->checkpoint, r->mi.rope_theta, r->mi.rotary_dim);
        return;
    }

    /* the engine's gradients against autograd's */
    if (!call_vjp(r, q, c->function, chunk, layer, eps))
        return;
    double **first = lc__alloc(r, (size_t)q->n_want * sizeof *first + 1);
    if (!first)
        return;
    for (int i = 0; i < q->n_want; i++) {
        const lc_vjp_result *w = &q->want[i];
        first[i] = w->data;
        if (!w->data) {
            if (!is_gradient(w->name))
                continue; /* forward outputs are optional */
            /* recorded as a failed comparison (NaN throughout), the reason naming it */
            fail_reason(r, "engine returned no gradient for %s", differentiated(w->name));
            double *nan = lc__nans(r, q->expect[i].shape.count + 1);
            compare_one(r, q, i, nan, q->expect[i].data, LC_CLASS_GOLDEN, "", "engine", "autograd");
            continue;
        }
        compare_one(r, q, i, w->data, q->expect[i].data, LC_CLASS_GOLDEN, "", "engine", "autograd");
    }

    /* the chunked form against the recurrent form of the same engine */
    if (c->cross_recurrent && lc__ok(r)) {
        const lc_grad_fn rf = c->function == LC_GRAD_FN_GDN_CHUNKED ? LC_GRAD_FN_GDN_RECURRENT : c->function;
        if (!call_vjp(r, q, rf, c->function == LC_GRAD_FN_DECODER_LAYER ? 0 : -1, layer, eps))
            return;
        for (int i = 0; i < q->n_want; i++)
            if (first[i] && q->want[i].data && is_gradient(q->want[i].name))
                compare_one(r, q, i, first[i], q->want[i].data, LC_CLASS_CROSS, "cross.", "chunked", "recurrent");
    }
}
