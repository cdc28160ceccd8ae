/*
 * The case runner (see runner.h). One function per case kind; each runs the engine along two
 * paths (or the engine and the golden) and records comparisons with the case's bounds.
 *
 * Shape legend: T = prompt tokens, V = vocab, N = decode steps, S = state elements.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "runner_internal.h"

/* ---------------------------------------------------------------- model pool */

void lc_model_pool_init(lc_model_pool *p)
{
    memset(p, 0, sizeof *p);
}

void lc_model_pool_free(lc_model_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        free(p->dirs[i]);
        qref_model_free(&p->models[i]);
    }
    free(p->dirs);
    free(p->models);
    memset(p, 0, sizeof *p);
}

static const qref_model *pool_get(lc_model_pool *p, const char *dir, qref_error *err)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->dirs[i], dir))
            return &p->models[i];
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 4;
        char **d = realloc(p->dirs, (size_t)cap * sizeof *d);
        if (d)
            p->dirs = d;
        qref_model *m = realloc(p->models, (size_t)cap * sizeof *m);
        if (m)
            p->models = m;
        if (!d || !m) {
            qref__fail(err, QREF_ENOMEM, "out of memory for the model pool");
            return NULL;
        }
        p->cap = cap;
    }
    if (qref_model_load(&p->models[p->n], dir, err) != QREF_OK)
        return NULL;
    p->dirs[p->n] = strdup(dir);
    if (!p->dirs[p->n]) {
        qref_model_free(&p->models[p->n]);
        qref__fail(err, QREF_ENOMEM, "out of memory for the model pool");
        return NULL;
    }
    return &p->models[p->n++];
}

lc_precision lc_engine_precision(void)
{
#if defined(QREF_PRECISION_F64)
    return LC_PREC_F64;
#else
    return LC_PREC_F32;
#endif
}

/* ---------------------------------------------------------------- run context */


void lc__set_error(lc__run *r, const char *fmt, ...)
{
    if (r->res->verdict == LC_VERDICT_ERROR)
        return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    r->res->verdict = LC_VERDICT_ERROR;
    vsnprintf(r->res->reason, sizeof r->res->reason, fmt, ap);
    va_end(ap);
}

double *lc__to_double(const qref_real *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; d && i < n; i++)
        d[i] = (double)x[i];
    return d;
}

void lc__path_join(char *out, size_t len, const char *root, const char *rel)
{
    if (rel[0] == '/' || !root || !root[0])
        snprintf(out, len, "%s", rel);
    else
        snprintf(out, len, "%s/%s", root, rel);
}

/* ---------------------------------------------------------------- comparisons */


/* Metrics that make sense for a flat tensor (states, embeddings) or exact integers. */
static int elementwise_metric(lc_metric_id id)
{
    return id == LC_METRIC_MAX_ABS || id == LC_METRIC_MAX_REL || id == LC_METRIC_ALLCLOSE_FAIL ||
           id == LC_METRIC_ALLCLOSE_FRAC || id == LC_METRIC_NMSE || id == LC_METRIC_MAX_ULP ||
           id == LC_METRIC_NONFINITE;
}

static void add_check(lc_comparison *cmp, lc_metric_id id, double bound)
{
    if (cmp->n_checks >= LC_MAX_CHECKS)
        return;
    lc_check *k = &cmp->checks[cmp->n_checks++];
    k->metric = id;
    k->bound = bound;
    k->value = lc_metric_value(&cmp->m, id);
    k->pass = lc_check_bound(id, k->value, bound, &k->margin);
    if (!k->pass)
        cmp->pass = 0;
}

/* Compares a (P, W) with e (P, W) and checks the case's bounds. kind selects which bounds
 * apply: logits take all of them, tensors the elementwise ones, exact comparisons max_abs 0. */
lc_comparison *lc__compare(lc__run *r, int kind, const char *name, const char *actual, const char *expected,
                              const double *a, const double *e, size_t P, size_t W, const uint8_t *include,
                              const uint8_t *kl_include)
{
    lc_comparison *cmp = lc_case_add_cmp(r->res);
    if (!cmp) {
        lc__set_error(r, "out of memory recording comparison '%s'", name);
        return NULL;
    }
    snprintf(cmp->name, sizeof cmp->name, "%s", name);
    snprintf(cmp->actual, sizeof cmp->actual, "%s", actual);
    snprintf(cmp->expected, sizeof cmp->expected, "%s", expected);
    lc_compare_opts opts = lc_compare_opts_default();
    opts.include = include;
    opts.kl_include = kind == CMP_LOGITS || kind == CMP_BITWISE ? kl_include : NULL;
    opts.ulp = lc_engine_precision() == LC_PREC_F64 ? LC_ULP_F64 : LC_ULP_F32;
    opts.topk = kind == CMP_LOGITS || kind == CMP_BITWISE ? (r->bounds->topk ? r->bounds->topk : 5) : 0;
    if (r->bounds->has_atol)
        opts.atol = r->bounds->atol;
    if (r->bounds->has_rtol)
        opts.rtol = r->bounds->rtol;
    if (lc_compare(&cmp->m, a, e, P, W, &opts) != 0) {
        lc__set_error(r, "comparison '%s': cannot compare (out of memory or bad shape)", name);
        return cmp;
    }
    cmp->pass = 1;
    /* a per-position curve only where it says something: several positions, not exact ints */
    cmp->curve = kind != CMP_EXACT && P > 1 ? malloc(P * sizeof *cmp->curve) : NULL;
    if (cmp->curve) {
        cmp->n_curve = (int)P;
        for (size_t p = 0; p < P; p++) {
            double worst = include && !include[p] ? NAN : 0;
            for (size_t j = 0; !isnan(worst) && j < W; j++) {
                double d = fabs(a[p * W + j] - e[p * W + j]);
                worst = d > worst || isnan(d) ? d : worst;
            }
            cmp->curve[p] = worst;
        }
    }
    add_check(cmp, LC_METRIC_NONFINITE, 0);
    if (kind == CMP_EXACT || kind == CMP_BITWISE || r->bounds->bitwise) {
        add_check(cmp, LC_METRIC_MAX_ABS, 0);
        return cmp;
    }
    for (int i = 0; i < r->bounds->n_items; i++) {
        lc_metric_id id = lc_metric_from_name(r->bounds->items[i].name);
        if (id == LC_METRIC_UNKNOWN || id == LC_METRIC_NONFINITE)
            continue;
        if (kind == CMP_TENSOR && !elementwise_metric(id))
            continue;
        add_check(cmp, id, r->bounds->items[i].value);
    }
    return cmp;
}

void lc__compare_real(lc__run *r, int kind, const char *name, const char *actual, const char *expected,
                         const qref_real *a, const qref_real *e, size_t P, size_t W, const uint8_t *kl_include)
{
    double *da = lc__to_double(a, P * W), *de = lc__to_double(e, P * W);
    if (!da || !de)
        lc__set_error(r, "out of memory comparing '%s'", name);
    else
        lc__compare(r, kind, name, actual, expected, da, de, P, W, NULL, kl_include);
    free(da);
    free(de);
}

/* Exact comparison of integer vectors (ids, positions), recorded as a comparison with bound 0. */
void lc__compare_ints(lc__run *r, const char *name, const char *actual, const char *expected, const int64_t *a,
                         const int64_t *e, size_t P, size_t W)
{
    double *da = malloc((P * W + 1) * sizeof *da), *de = malloc((P * W + 1) * sizeof *de);
    for (size_t i = 0; da && de && i < P * W; i++) {
        da[i] = (double)a[i];
        de[i] = (double)e[i];
    }
    if (!da || !de)
        lc__set_error(r, "out of memory comparing '%s'", name);
    else
        lc__compare(r, CMP_EXACT, name, actual, expected, da, de, P, W, NULL, NULL);
    free(da);
    free(de);
}

/* Flattens a cache's recurrent state (every GDN layer's conv and recurrent state, every
 * attention layer's keys and values) into one vector; *n receives its length. */
static qref_real *flatten_state(const qref_cache *c, size_t *n)
{
    size_t total = 0;
    for (int l = 0; l < c->num_layers; l++)
        total += c->conv[l] ? (size_t)c->conv_len * c->conv_channels + c->rec_size
                            : 2 * (size_t)c->len * c->kv_row;
    qref_real *v = malloc((total ? total : 1) * sizeof *v), *p = v;
    for (int l = 0; v && l < c->num_layers; l++) {
        if (c->conv[l]) {
            size_t cn = (size_t)c->conv_len * c->conv_channels;
            memcpy(p, c->conv[l], cn * sizeof *p);
            p += cn;
            memcpy(p, c->rec[l], (size_t)c->rec_size * sizeof *p);
            p += c->rec_size;
        } else {
            size_t kn = (size_t)c->len * c->kv_row;
            memcpy(p, c->k[l], kn * sizeof *p);
            p += kn;
            memcpy(p, c->v[l], kn * sizeof *p);
            p += kn;
        }
    }
    *n = total;
    return v;
}

void lc__compare_states(lc__run *r, const char *name, const char *actual, const char *expected, const qref_cache *a,
                           const qref_cache *e)
{
    size_t na, ne;
    if (a->len != e->len) {
        /* a cache that took in more (or fewer) tokens than it should: a failed exact check */
        char what[160];
        int64_t la = a->len, le = e->len;
        snprintf(what, sizeof what, "%s: cached tokens", name);
        lc__compare_ints(r, what, actual, expected, &la, &le, 1, 1);
        return;
    }
    qref_real *fa = flatten_state(a, &na), *fe = flatten_state(e, &ne);
    if (!fa || !fe || na != ne)
        lc__set_error(r, "comparison '%s': cannot flatten the states", name);
    else
        lc__compare_real(r, CMP_TENSOR, name, actual, expected, fa, fe, 1, na, NULL);
    free(fa);
    free(fe);
}

/* ---------------------------------------------------------------- prompts and engine runs */

/* Expands a case prompt (segments) into token ids with image placeholder runs and builds the
 * engine prompt (images decoded, preprocessed, vision tower run, positions computed). */
int lc__load_images(lc__run *r, const lc_prompt *lp, int first, int n, lc_image_set *set)
{
    int total = 0;
    for (int s = 0; s < lp->n_segs; s++)
        total += lp->segs[s].type == LC_SEG_IMAGE;
    if (n < 0)
        n = total - first;
    memset(set, 0, sizeof *set);
    char (*buf)[4096] = calloc((size_t)n + 1, sizeof *buf);
    const char **paths = calloc((size_t)n + 1, sizeof *paths);
    lc_error le;
    int ok = 0;
    if (!buf || !paths) {
        lc__set_error(r, "out of memory loading images");
        goto done;
    }
    for (int s = 0, k = 0, o = 0; s < lp->n_segs; s++) {
        if (lp->segs[s].type != LC_SEG_IMAGE)
            continue;
        if (k >= first && k < first + n) {
            lc__path_join(buf[o], sizeof buf[o], r->o->root, lp->segs[s].image);
            paths[o] = buf[o];
            o++;
        }
        k++;
    }
    if (lc_image_set_load(set, paths, n, &le))
        lc__set_error(r, "%s", le.msg);
    else
        ok = 1;
done:
    free(buf);
    free(paths);
    return ok;
}

int lc__build_prompt(lc__run *r, const lc_prompt *lp, qref_prompt *out)
{
    const qref_config *cfg = &r->m.cfg;
    lc_image_set imgs = {0};
    qref_error qe = {0};
    int32_t *ids = NULL;
    int *tokens = NULL;
    int ok = 0, n_ids = 0;
    if (!lc__load_images(r, lp, 0, -1, &imgs))
        goto done;
    /* an image expands to vision_start, its placeholders, vision_end */
    tokens = calloc((size_t)imgs.n + 1, sizeof *tokens);
    if (!tokens) {
        lc__set_error(r, "out of memory building a prompt");
        goto done;
    }
    for (int k = 0; k < imgs.n; k++) {
        int grid[3];
        if (qref_image_grid(cfg, imgs.images[k].width, imgs.images[k].height, grid, &qe) != QREF_OK) {
            const char *path = "?";
            for (int s = 0, i = 0; s < lp->n_segs; s++)
                if (lp->segs[s].type == LC_SEG_IMAGE && i++ == k)
                    path = lp->segs[s].image;
            lc__set_error(r, "%s: %s", path, qe.msg);
            goto done;
        }
        tokens[k] = qref_image_tokens(cfg, grid);
    }
    for (int s = 0, k = 0; s < lp->n_segs; s++)
        n_ids += lp->segs[s].type == LC_SEG_IDS ? lp->segs[s].n_ids : tokens[k++] + 2;
    ids = malloc((size_t)(n_ids ? n_ids : 1) * sizeof *ids);
    if (!ids) {
        lc__set_error(r, "out of memory building a prompt");
        goto done;
    }
    for (int s = 0, k = 0, o = 0; s < lp->n_segs; s++) {
        if (lp->segs[s].type == LC_SEG_IDS) {
            memcpy(ids + o, lp->segs[s].ids, (size_t)lp->segs[s].n_ids * sizeof *ids);
            o += lp->segs[s].n_ids;
            continue;
        }
        ids[o++] = cfg->vision_start_token_id;
        for (int t = 0; t < tokens[k]; t++)
            ids[o++] = cfg->image_token_id;
        ids[o++] = cfg->vision_end_token_id;
        k++;
    }
    if (qref_prompt_build(out, &r->m, ids, n_ids, imgs.images, imgs.n, &qe) != QREF_OK) {
        lc__set_error(r, "case '%s': %s", r->c->name, qe.msg);
        goto done;
    }
    ok = 1;
done:
    free(ids);
    free(tokens);
    lc_image_set_free(&imgs);
    return ok;
}

/* Prefills prompt tokens [0, to) in chunks into a fresh cache; logits (to, V) or NULL. */
int lc__prefill(lc__run *r, const qref_prompt *p, int to, int chunk, int gdn_mode, qref_cache *c, qref_real *logits)
{
    qref_error qe;
    if (qref_cache_init(c, &r->m, &qe) != QREF_OK ||
        qref_prompt_prefill(&r->m, c, p, 0, to, chunk, gdn_mode, logits, &qe) != QREF_OK) {
        lc__set_error(r, "case '%s': %s", r->c->name, qe.msg);
        return 0;
    }
    if (r->o->stale_rope_delta)
        c->rope_delta = 0;
    return 1;
}

/* Feeds tokens one at a time; logits (n, V) or NULL. */
int lc__decode(lc__run *r, qref_cache *c, const int32_t *toks, int n, qref_real *logits)
{
    qref_error qe;
    for (int i = 0; i < n; i++) {
        qref_tokens in = {.ids = &toks[i], .n = 1};
        qref_outputs out = {.logits = logits ? logits + (size_t)i * r->V : NULL};
        if (qref_forward(&r->m, c, &in, &out, &qe) != QREF_OK) {
            lc__set_error(r, "case '%s': decode step %d: %s", r->c->name, i, qe.msg);
            return 0;
        }
    }
    return 1;
}

int lc__greedy(lc__run *r, const qref_real *x)
{
    /* never a vision start/end, image or video token: a decoded placeholder has no image */
    const qref_config *c = &r->m.cfg;
    int b = -1;
    for (int i = 0; i < r->V; i++) {
        if (c->has_vision && (i == c->image_token_id || i == c->video_token_id || i == c->vision_start_token_id ||
                              i == c->vision_end_token_id))
            continue;
        if (b < 0 || x[i] > x[b])
            b = i;
    }
    return b;
}

/* Decode tokens of a case that is not graded against a golden: explicit ids, or the engine's
 * own greedy choices continuing from `last` (the prompt's last logits row). *toks malloc'ed. */
int lc__own_decode_tokens(lc__run *r, const qref_real *last, int32_t **toks, int *n)
{
    const lc_decode *d = &r->c->decode;
    *n = d->mode == LC_DECODE_IDS ? d->n_ids : d->mode == LC_DECODE_GREEDY ? d->greedy : 0;
    if (r->c->steps > 0 && r->c->steps < *n)
        *n = r->c->steps;
    *toks = malloc((size_t)(*n ? *n : 1) * sizeof **toks);
    if (!*toks) {
        lc__set_error(r, "out of memory");
        return 0;
    }
    if (d->mode == LC_DECODE_IDS)
        memcpy(*toks, d->ids, (size_t)*n * sizeof **toks);
    else if (*n > 0)
        (*toks)[0] = lc__greedy(r, last); /* greedy ones after the first are filled by the caller */
    return 1;
}

/* KL positions: every prompt position that is not an image placeholder. */
uint8_t *lc__text_positions(lc__run *r, const qref_prompt *p)
{
    uint8_t *m = malloc((size_t)p->n);
    for (int i = 0; m && i < p->n; i++)
        m[i] = !(r->m.cfg.has_vision && p->ids[i] == r->m.cfg.image_token_id);
    return m;
}

/* ---------------------------------------------------------------- entry point */

lc_verdict lc_run_case(const lc_case *c, const lc_run_opts *o, lc_model_pool *pool, lc_case_result *res)
{
    lc__run r = {0};
    qref_error qe;
    char dir[4096];
    r.c = c;
    r.o = o;
    r.res = res;
    snprintf(res->name, sizeof res->name, "%s", c->name);
    snprintf(res->kind, sizeof res->kind, "%s", lc_kind_name(c->kind));
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", c->checkpoint);
    snprintf(res->description, sizeof res->description, "%s", c->description ? c->description : "");
    size_t off = 0;
    res->labels[0] = '\0';
    for (int i = 0; i < c->n_labels && off < sizeof res->labels; i++)
        off += (size_t)snprintf(res->labels + off, sizeof res->labels - off, i ? ",%s" : "%s", c->labels[i]);
    res->verdict = LC_VERDICT_PASS;

    r.bounds = &c->bounds[lc_engine_precision()];
    if (!r.bounds->present) {
        res->verdict = LC_VERDICT_SKIP;
        snprintf(res->reason, sizeof res->reason, "no bounds for the %s engine", QREF_PRECISION_NAME);
        return res->verdict;
    }
    lc__path_join(dir, sizeof dir, o->root, c->checkpoint);
    const qref_model *m = pool_get(pool, dir, &qe);
    if (!m) {
        lc__set_error(&r, "%s", qe.msg);
        return res->verdict;
    }
    r.m = *m; /* shallow: shares the weights; the config and faults may be overridden below */
    r.m.faults = o->faults;
    if (o->rms_eps_override > 0)
        r.m.cfg.rms_norm_eps = o->rms_eps_override;
    r.V = r.m.cfg.vocab_size;

    switch (c->kind) {
    case LC_KIND_GOLDEN:
    case LC_KIND_MULTI_IMAGE: lc__kind_golden(&r); break;
    case LC_KIND_PREFILL_DECODE: lc__kind_prefill_decode(&r); break;
    case LC_KIND_CHUNKED: lc__kind_chunked(&r); break;
    case LC_KIND_CACHE: lc__kind_cache(&r); break;
    case LC_KIND_ISOLATION: lc__kind_isolation(&r); break;
    case LC_KIND_KERNEL: lc__kind_kernel(&r); break;
    case LC_KIND_BATCH: lc__kind_batch(&r); break;
    case LC_KIND_SNAPSHOT: lc__kind_snapshot(&r); break;
    case LC_KIND_IMAGE_CHECKPOINT: lc__kind_image_checkpoint(&r); break;
    default: lc__set_error(&r, "%s: case '%s': kind not implemented", c->file, c->name); break;
    }

    if (res->verdict == LC_VERDICT_ERROR)
        return res->verdict;
    if (res->n_cmps == 0) {
        lc__set_error(&r, "case '%s': made no comparison", c->name);
        return res->verdict;
    }
    /* the reason of a failure: the first failing check, with where it happened */
    for (int i = 0; i < res->n_cmps && res->verdict == LC_VERDICT_PASS; i++) {
        const lc_comparison *cmp = &res->cmps[i];
        for (int k = 0; k < cmp->n_checks; k++) {
            const lc_check *ck = &cmp->checks[k];
            if (ck->pass)
                continue;
            res->verdict = LC_VERDICT_FAIL;
            snprintf(res->reason, sizeof res->reason, "%s: %s = %.3g %s bound %.3g (at position %zu, index %zu)",
                     cmp->name, lc_metric_name(ck->metric), ck->value,
                     lc_metric_direction(ck->metric) == LC_BOUND_UPPER ? ">" : "<", ck->bound, cmp->m.max_abs_pos,
                     cmp->m.max_abs_index);
            break;
        }
    }
    return res->verdict;
}
