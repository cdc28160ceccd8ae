/* SPDX-License-Identifier: MIT */
/* Golden file access for the kinds graded against transformers, and in differential mode the
 * oracle's outputs (or an oracle cache) in the golden's place (see runner_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

lc__golden *lc__golden_open(lc__run *r)
{
    lc__golden *g = &r->golden;
    lc_error le;
    char path[4096];
    if (g->open)
        return g;
    if (!lc__ok(r))
        return NULL;
    memset(g, 0, sizeof *g);
    g->f.id = -1;
    if (r->o->oracle && !r->o->golden_file) { /* differential mode: the oracle runs the case's inputs */
        g->from_oracle = 1;
        if (!lc__oracle_fill(r, g))
            return NULL;
        g->open = 1;
        return g;
    }
    if (!r->c->golden && !r->o->golden_file) {
        lc__set_error(r, "case '%s' (%s): kind %s needs a golden file", r->c->name, r->c->file, lc_kind_name(r->c->kind));
        return NULL;
    }
    if (r->o->golden_file) /* an oracle cache: a golden in today's layout for every case */
        snprintf(path, sizeof path, "%s", r->o->golden_file);
    else
        lc__path_join(path, sizeof path, r->o->root, r->c->golden);
    if (lc_h5_open(&g->f, path, &le)) {
        lc__set_error(r, "%s", le.msg);
        return NULL;
    }
    if (r->c->group) /* gradient cases name their group in the gradient goldens */
        snprintf(g->group, sizeof g->group, "/%s", r->c->group);
    else
        snprintf(g->group, sizeof g->group, "/cases/%s", r->c->name);
    if (!lc_h5_exists(&g->f, g->group)) {
        if (r->o->golden_file)
            lc__set_error(r, "%s: no group '%s' (the oracle cache was written for another selection of cases: "
                          "remove it to run the oracle again)", path, g->group);
        else
            lc__set_error(r, "%s: no group '%s' (regenerate the goldens: golden/README.md)", path, g->group);
        lc_h5_close(&g->f);
        return NULL;
    }
    g->open = 1;
    return g;
}

void lc__golden_close(lc__golden *g)
{
    if (g->open && !g->from_oracle)
        lc_h5_close(&g->f);
    g->open = 0;
    g->from_oracle = 0;
    g->n_sets = 0; /* their arrays belong to the arena */
}

static lc__gset *oracle_set(lc__golden *g, const char *ds)
{
    for (int i = 0; i < g->n_sets; i++)
        if (!strcmp(g->sets[i].name, ds))
            return &g->sets[i];
    return NULL;
}

int lc__golden_has(lc__golden *g, const char *ds)
{
    char name[512];
    if (g->open && g->from_oracle)
        return oracle_set(g, ds) != NULL;
    snprintf(name, sizeof name, "%s/%s", g->group, ds);
    return g->open && lc_h5_exists(&g->f, name);
}

/* The oracle's array `ds`, shape checked as a golden's would be. */
static double *oracle_f64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape)
{
    const lc__gset *s = oracle_set(g, ds);
    if (!s) {
        lc__set_error(r, "case '%s': the oracle gave no %s", r->c->name, ds);
        return NULL;
    }
    *shape = s->shape;
    int ok = shape->ndim == ndim || (ndim == 0 && shape->count == 1);
    for (int i = 0; ok && i < ndim; i++)
        ok = want[i] < 0 || want[i] == shape->shape[i];
    if (!ok) {
        lc__set_error(r, "case '%s': the oracle's %s has another shape than the engine's (%d dims, first %lld)",
                      r->c->name, ds, shape->ndim, shape->ndim ? (long long)shape->shape[0] : 1LL);
        return NULL;
    }
    if (r->o->golden_hook)
        r->o->golden_hook(r->o->hook_ctx, r->c->name, ds, s->data, shape->count);
    return s->data;
}

int lc__differential(const lc__run *r)
{
    return r->o->oracle || r->o->golden_file;
}

const char *lc__expected(const lc__run *r, const char *golden)
{
    if (!lc__differential(r))
        return golden;
    return r->o->oracle_name ? r->o->oracle_name : "oracle";
}

double *lc__golden_f64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape)
{
    char name[512];
    lc_error le;
    double *d = NULL;
    if (!g || !lc__ok(r))
        return NULL;
    if (g->from_oracle)
        return oracle_f64(r, g, ds, ndim, want, shape);
    snprintf(name, sizeof name, "%s/%s", g->group, ds);
    if (lc_h5_read_f64(&g->f, name, &d, shape, &le)) {
        lc__set_error(r, "%s", le.msg);
        return NULL;
    }
    if (!lc__own(r, d))
        return NULL;
    int64_t w[LC_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        w[i] = want[i] < 0 && i < shape->ndim ? shape->shape[i] : want[i];
    if (lc_h5_expect_shape(&g->f, name, shape, ndim, w, &le)) {
        lc__set_error(r, "%s", le.msg);
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
    int64_t *v = lc__alloc(r, (shape->count ? shape->count : 1) * sizeof *v);
    for (size_t i = 0; v && i < shape->count; i++)
        v[i] = (int64_t)llround(d[i]);
    return v;
}
