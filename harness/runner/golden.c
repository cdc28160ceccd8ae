/* Golden file access for the kinds graded against transformers (see runner_internal.h). */
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
    if (!r->c->golden) {
        lc__set_error(r, "case '%s' (%s): kind %s needs a golden file", r->c->name, r->c->file, lc_kind_name(r->c->kind));
        return NULL;
    }
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
        lc__set_error(r, "%s: no group '%s' (regenerate the goldens: golden/README.md)", path, g->group);
        lc_h5_close(&g->f);
        return NULL;
    }
    g->open = 1;
    return g;
}

void lc__golden_close(lc__golden *g)
{
    if (g->open)
        lc_h5_close(&g->f);
    g->open = 0;
}

int lc__golden_has(lc__golden *g, const char *ds)
{
    char name[512];
    snprintf(name, sizeof name, "%s/%s", g->group, ds);
    return g->open && lc_h5_exists(&g->f, name);
}

double *lc__golden_f64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape)
{
    char name[512];
    lc_error le;
    double *d = NULL;
    if (!g || !lc__ok(r))
        return NULL;
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
