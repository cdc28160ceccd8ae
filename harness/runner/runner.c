/* SPDX-License-Identifier: MIT */
/*
 * The case runner's entry point (see runner.h): fresh engine state, the capabilities the
 * case needs (else SKIP), the kind's function, engine restart after an engine failure, and
 * the verdict from the recorded comparisons.
 */
#include <stdio.h>
#include <string.h>

#include "runner_internal.h"

#define CAP(c) (1u << LC_CAP_##c)

/* One row per kind: its function and the capabilities every case of it needs. */
static const struct {
    lc_kind kind;
    void (*run)(lc__run *r);
    unsigned caps;
} kinds[] = {
    {LC_KIND_GOLDEN, lc__kind_golden, 0},
    {LC_KIND_MULTI_IMAGE, lc__kind_golden, 0},
    {LC_KIND_PREFILL_DECODE, lc__kind_prefill_decode, 0},
    {LC_KIND_CHUNKED, lc__kind_chunked, 0},
    {LC_KIND_CACHE, lc__kind_cache, 0},
    {LC_KIND_ISOLATION, lc__kind_isolation, 0},
    {LC_KIND_KERNEL, lc__kind_kernel, 0}, /* by check: see below */
    {LC_KIND_BATCH, lc__kind_batch, CAP(BATCH)},
    {LC_KIND_SNAPSHOT, lc__kind_snapshot, CAP(SNAPSHOT)},
    {LC_KIND_IMAGE_CHECKPOINT, lc__kind_image_checkpoint, CAP(SNAPSHOT) | CAP(PARTIAL_VISION)},
    {LC_KIND_GRADIENT, lc__kind_gradient, CAP(VJP)},
    {LC_KIND_CONTINUOUS_BATCH, lc__kind_continuous_batch, CAP(STEP)},
    {LC_KIND_PREFIX_CACHE, lc__kind_prefix_cache, CAP(PREFIX_CACHE)},
    {LC_KIND_SPECULATIVE, lc__kind_speculative, CAP(VERIFY)}, /* + mtp, snapshot: see below */
    {LC_KIND_MTP_HEAD, lc__kind_mtp_head, CAP(MTP)},
};
#define N_KINDS ((int)(sizeof kinds / sizeof kinds[0]))

static int has_image(const lc_prompt *p)
{
    for (int s = 0; s < p->n_segs; s++)
        if (p->segs[s].type == LC_SEG_IMAGE)
            return 1;
    return 0;
}

unsigned lc_case_required_caps(const lc_case *c)
{
    unsigned caps = 0;
    for (int k = 0; k < N_KINDS; k++)
        if (kinds[k].kind == c->kind)
            caps = kinds[k].caps;
    if (c->kind == LC_KIND_KERNEL)
        caps |= c->kernel == LC_KERNEL_MROPE_TEXT_1D ? CAP(ROPE) | CAP(POSITIONS) : CAP(GDN_MODE);
    if (c->kind == LC_KIND_SPECULATIVE) /* greedy acceptance drafts with the MTP head */
        caps |= (c->n_accept ? 0 : CAP(MTP)) | (c->suffix ? CAP(SNAPSHOT) : 0) | (c->n_rows ? CAP(BATCH_VERIFY) : 0);
    int images = has_image(&c->prompt) || has_image(&c->other_prompt);
    for (int b = 0; b < c->n_rows; b++)
        images |= has_image(&c->rows[b]);
    for (int q = 0; q < c->n_requests; q++)
        images |= has_image(&c->requests[q].prompt);
    if (lc_prompt_video_count(&c->prompt) || lc_prompt_video_count(&c->other_prompt))
        caps |= CAP(VIDEO);
    if (c->image_min_pixels || c->image_max_pixels) /* per-request smart_resize bounds */
        caps |= CAP(PIXEL_LIMITS);
    if (c->pad_to) /* a batch layout longer than its longest row */
        caps |= CAP(PAD_TO);
    for (int q = 0; q < c->n_requests; q++)
        if (lc_prompt_video_count(&c->requests[q].prompt))
            caps |= CAP(VIDEO);
    return images ? caps | CAP(IMAGES) : caps;
}

/* Token ids the case file gives must be ids of the loaded checkpoint: inside its vocabulary and
 * never a placeholder token (images are given as image segments; the engine writes their
 * placeholders itself). Refused before anything runs, naming the case file. */
static int check_prompt_ids(lc__run *r, const lc_prompt *p, const char *what)
{
    for (int s = 0; s < p->n_segs; s++) {
        const lc_segment *g = &p->segs[s];
        for (int i = 0; g->type == LC_SEG_IDS && i < g->n_ids; i++) {
            const int32_t id = g->ids[i];
            if (id < 0 || id >= r->V) {
                lc__set_error(r, "%s: case '%s': %s[%d].ids[%d]: token %d is outside the vocabulary [0, %d) of %s",
                              r->c->file, r->c->name, what, s, i, (int)id, r->V, r->c->checkpoint);
                return 0;
            }
            if (r->mi.has_vision && (id == r->mi.image_token_id || id == r->mi.video_token_id)) {
                lc__set_error(r,
                              "%s: case '%s': %s[%d].ids[%d]: token %d is the %s placeholder of %s; give the %s "
                              "as its own segment",
                              r->c->file, r->c->name, what, s, i, (int)id,
                              id == r->mi.image_token_id ? "image" : "video", r->c->checkpoint,
                              id == r->mi.image_token_id ? "image" : "video");
                return 0;
            }
        }
    }
    return 1;
}

static int check_ids(lc__run *r)
{
    const lc_case *c = r->c;
    if (!check_prompt_ids(r, &c->prompt, "prompt") || !check_prompt_ids(r, &c->other_prompt, "other_prompt"))
        return 0;
    for (int b = 0; b < c->n_rows; b++) {
        char what[32];
        snprintf(what, sizeof what, "rows[%d]", b);
        if (!check_prompt_ids(r, &c->rows[b], what))
            return 0;
    }
    for (int i = 0; c->decode.mode == LC_DECODE_IDS && i < c->decode.n_ids; i++)
        if (c->decode.ids[i] < 0 || c->decode.ids[i] >= r->V) {
            lc__set_error(r, "%s: case '%s': decode.ids[%d]: token %d is outside the vocabulary [0, %d) of %s",
                          c->file, c->name, i, (int)c->decode.ids[i], r->V, c->checkpoint);
            return 0;
        }
    if (c->kind == LC_KIND_BATCH && (c->pad_id < 0 || c->pad_id >= r->V)) {
        lc__set_error(r, "%s: case '%s': pad_id: token %d is outside the vocabulary [0, %d) of %s", c->file,
                      c->name, (int)c->pad_id, r->V, c->checkpoint);
        return 0;
    }
    return 1;
}

/* The reason of a failure: the first failing check, with where it happened. */
static void set_verdict(lc__run *r)
{
    lc_case_result *res = r->res;
    if (res->verdict == LC_VERDICT_ERROR)
        return;
    if (res->n_cmps == 0) {
        lc__set_error(r, "case '%s': made no comparison", r->c->name);
        return;
    }
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
}

lc_verdict lc_run_case(const lc_case *c, const lc_run_opts *o, lc_engine *e, lc_case_result *res)
{
    lc__run r = {0};
    lc_error err = {0};
    r.c = c;
    r.o = o;
    r.res = res;
    r.e = e;
    r.golden.f.id = -1;
    r.prec = e->info.precision;
    snprintf(res->name, sizeof res->name, "%s", c->name);
    snprintf(res->kind, sizeof res->kind, "%s", lc_kind_name(c->kind));
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", c->checkpoint);
    snprintf(res->description, sizeof res->description, "%s", c->description ? c->description : "");
    size_t off = 0;
    res->labels[0] = '\0';
    for (int i = 0; i < c->n_labels && off < sizeof res->labels; i++)
        off += (size_t)snprintf(res->labels + off, sizeof res->labels - off, i ? ",%s" : "%s", c->labels[i]);
    res->verdict = LC_VERDICT_PASS;
    res->reason[0] = res->not_compared[0] = '\0';

    /* a capability the engine lacks: SKIP, naming it */
    const unsigned need = lc_case_required_caps(c);
    for (int k = 0; k < LC_CAP_COUNT; k++)
        if ((need >> k & 1u) && !lc_engine_info_has(&e->info, (lc_cap)k)) {
            res->verdict = LC_VERDICT_SKIP;
            snprintf(res->reason, sizeof res->reason, "engine lacks %s", lc_cap_name((lc_cap)k));
            return res->verdict;
        }
    int kind = -1;
    for (int k = 0; k < N_KINDS; k++)
        if (kinds[k].kind == c->kind)
            kind = k;
    if (kind < 0) {
        lc__set_error(&r, "%s: case '%s': kind not implemented", c->file, c->name);
        return res->verdict;
    }

    /* differential mode: the gradient cases' inputs and expected values are autograd's own
     * (their golden groups), not a forward of the checkpoint an oracle could run */
    if (lc__differential(&r) && c->kind == LC_KIND_GRADIENT) {
        res->verdict = LC_VERDICT_SKIP;
        snprintf(res->reason, sizeof res->reason, "differential mode: gradient cases grade against autograd goldens");
        return res->verdict;
    }

    /* every case starts from fresh engine state, with its checkpoint loaded */
    if (o->model)
        snprintf(r.dir, sizeof r.dir, "%s", o->model);
    else
        lc__path_join(r.dir, sizeof r.dir, o->root, c->checkpoint);
    if (o->model)
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s", o->model);
    /* real-scale cases: the synthesized checkpoint first, and the sparse-golden kinds */
    void (*run)(lc__run *) = !c->sparse ? kinds[kind].run
                             : c->kind == LC_KIND_BATCH ? lc__kind_sparse_batch : lc__kind_sparse;
    if (lc__synth_ready(&r, r.dir) && lc__engine_ok(&r, lc_engine_reset(e, &err), &err) &&
        lc__engine_ok(&r, lc_engine_load(e, r.dir, &r.mi, &err), &err)) {
        r.V = r.mi.vocab_size;
        r.H = r.mi.hidden_size;
        r.NL = r.mi.num_layers;
        if (o->model && (need & CAP(IMAGES)) && !r.mi.has_vision) {
            res->verdict = LC_VERDICT_SKIP;
            snprintf(res->reason, sizeof res->reason, "%s has no vision tower", o->model);
        } else if ((!o->model || lc__instantiate(&r)) && check_ids(&r)) {
            run(&r);
        }
    }
    lc__run_release(&r);
    if (r.engine_failed) {
        /* the next case must find a working engine; a restart that fails too is said here */
        lc_error rerr = {0};
        if (lc_engine_restart(e, &rerr) != LC_OK) {
            size_t n = strlen(res->reason);
            snprintf(res->reason + n, sizeof res->reason - n, " (restart failed: %s)", rerr.msg);
        }
    }
    if (res->verdict != LC_VERDICT_SKIP)
        set_verdict(&r);
    return res->verdict;
}
