/* SPDX-License-Identifier: MIT */
/*
 * The engine interface's calls (see lc_engine.h): name tables of precisions and
 * capabilities, the wrappers that check an operation exists and its capability is declared
 * before dispatching, and the out-struct free functions.
 */
#include <stdlib.h>
#include <string.h>

#include "lc_engine.h"

/* ---------------------------------------------------------------- names */

const char *lc_eprec_name(lc_eprec p)
{
    return lc_precision_name(p);
}

lc_eprec lc_eprec_from_name(const char *s)
{
    return lc_precision_from_name(s);
}

static const char *const cap_names[] = {
#define LC__CAP_NAME(id, name) name,
    LC_CAP_MAP(LC__CAP_NAME)
#undef LC__CAP_NAME
};

const char *lc_cap_name(lc_cap c)
{
    return c >= 0 && c < LC_CAP_COUNT ? cap_names[c] : "unknown";
}

int lc_cap_from_name(const char *s)
{
    for (int c = 0; s && c < LC_CAP_COUNT; c++)
        if (!strcmp(s, cap_names[c]))
            return c;
    return -1;
}

/* ---------------------------------------------------------------- out-structs */

void lc_prompt_info_free(lc_prompt_info *p)
{
    if (!p)
        return;
    free(p->ids);
    free(p->pos);
    free(p->grid);
    memset(p, 0, sizeof *p);
}

void lc_state_free(lc_state *s)
{
    if (!s)
        return;
    free(s->data);
    memset(s, 0, sizeof *s);
}

void lc_vjp_results_free(lc_vjp_result *r, int n)
{
    for (int i = 0; r && i < n; i++) {
        free(r[i].data);
        r[i].data = NULL;
    }
}

size_t lc_vjp_count(int ndim, const int64_t *shape)
{
    size_t c = 1;
    for (int i = 0; i < ndim; i++)
        c *= shape[i] > 0 ? (size_t)shape[i] : 0;
    return c;
}

/* ---------------------------------------------------------------- wrappers */

/* LC_EUNSUPPORTED unless the engine has operation `op` (non-NULL) and, for cap >= 0, declares
 * that capability. */
static int need(lc_engine *e, const void *op, int cap, const char *name, lc_error *err)
{
    if (!e || !e->ops)
        return lc_fail(err, LC_EINTERNAL, "engine call '%s' without an engine", name);
    if (!op)
        return lc_fail(err, LC_EUNSUPPORTED, "engine %s: no operation '%s'", e->info.name, name);
    if (cap >= 0 && !lc_engine_info_has(&e->info, (lc_cap)cap))
        return lc_fail(err, LC_EUNSUPPORTED, "engine %s: '%s' needs capability '%s', which the engine lacks",
                       e->info.name, name, lc_cap_name((lc_cap)cap));
    return LC_OK;
}

#define NEED(op, cap)                                                                                        \
    do {                                                                                                     \
        int rc_ = need(e, e && e->ops ? (const void *)e->ops->op : NULL, cap, #op, err);                     \
        if (rc_)                                                                                             \
            return rc_;                                                                                      \
    } while (0)

int lc_engine_load(lc_engine *e, const char *dir, lc_model_info *mi, lc_error *err)
{
    NEED(load, -1);
    memset(mi, 0, sizeof *mi);
    return e->ops->load(e, dir, mi, err);
}

int lc_engine_prompt_open(lc_engine *e, const lc_prompt_in *in, lc_prompt_info *out, lc_error *err)
{
    NEED(prompt_open, -1);
    memset(out, 0, sizeof *out);
    for (int s = 0; s < in->n_segs; s++)
        if (in->segs[s].type == LC_PSEG_IMAGE)
            NEED(prompt_open, LC_CAP_IMAGES);
        else if (in->segs[s].type == LC_PSEG_VIDEO)
            NEED(prompt_open, LC_CAP_VIDEO);
    if (in->vision_from > 0)
        NEED(prompt_open, LC_CAP_PARTIAL_VISION);
    if (in->image_min_pixels || in->image_max_pixels)
        NEED(prompt_open, LC_CAP_PIXEL_LIMITS);
    if (in->pad_to)
        NEED(prompt_open, LC_CAP_PAD_TO);
    return e->ops->prompt_open(e, in, out, err);
}

void lc_engine_prompt_close(lc_engine *e, int prompt)
{
    if (e && e->ops && e->ops->prompt_close && prompt >= 0)
        e->ops->prompt_close(e, prompt);
}

int lc_engine_seq_open(lc_engine *e, int *seq, lc_error *err)
{
    NEED(seq_open, -1);
    return e->ops->seq_open(e, seq, err);
}

void lc_engine_seq_close(lc_engine *e, int seq)
{
    if (e && e->ops && e->ops->seq_close && seq >= 0)
        e->ops->seq_close(e, seq);
}

int lc_engine_prefill(lc_engine *e, int seq, int prompt, int from, int to, const lc_prefill_out *out, lc_error *err)
{
    NEED(prefill, -1);
    if (out && out->hidden)
        NEED(prefill, LC_CAP_HIDDEN);
    if (out && out->final_hidden)
        NEED(prefill, LC_CAP_FINAL_HIDDEN);
    if (out && (out->gdn_mode != LC_GDN_AUTO || out->gdn_chunk))
        NEED(prefill, LC_CAP_GDN_MODE);
    return e->ops->prefill(e, seq, prompt, from, to, out, err);
}

int lc_engine_decode(lc_engine *e, int seq, int32_t token, double *logits, lc_error *err)
{
    NEED(decode, -1);
    return e->ops->decode(e, seq, token, logits, err);
}

int lc_engine_snapshot(lc_engine *e, int seq, int *snap, lc_error *err)
{
    NEED(snapshot, LC_CAP_SNAPSHOT);
    return e->ops->snapshot(e, seq, snap, err);
}

int lc_engine_restore(lc_engine *e, int snap, int *seq, lc_error *err)
{
    NEED(restore, LC_CAP_SNAPSHOT);
    return e->ops->restore(e, snap, seq, err);
}

void lc_engine_snap_release(lc_engine *e, int snap)
{
    if (e && e->ops && e->ops->snap_release && snap >= 0)
        e->ops->snap_release(e, snap);
}

int lc_engine_batch_prefill(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                            double *logits, lc_error *err)
{
    NEED(batch_prefill, LC_CAP_BATCH);
    return e->ops->batch_prefill(e, seqs, prompts, B, from, to, logits, err);
}

int lc_engine_batch_decode(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                           lc_error *err)
{
    NEED(batch_decode, LC_CAP_BATCH);
    return e->ops->batch_decode(e, seqs, tokens, B, logits, err);
}

int lc_engine_state(lc_engine *e, int seq, lc_state *out, lc_error *err)
{
    NEED(state, LC_CAP_STATE);
    memset(out, 0, sizeof *out);
    return e->ops->state(e, seq, out, err);
}

int lc_engine_vision(lc_engine *e, int prompt, double **embeds, int *rows, lc_error *err)
{
    NEED(vision, LC_CAP_VISION);
    *embeds = NULL;
    *rows = 0;
    return e->ops->vision(e, prompt, embeds, rows, err);
}

int lc_engine_rope(lc_engine *e, const int64_t *pos, int n, double *out, lc_error *err)
{
    NEED(rope, LC_CAP_ROPE);
    return e->ops->rope(e, pos, n, out, err);
}

int lc_engine_vjp(lc_engine *e, const lc_vjp_in *in, lc_vjp_result *want, int n_want, lc_error *err)
{
    NEED(vjp, LC_CAP_VJP);
    for (int i = 0; i < n_want; i++)
        want[i].data = NULL;
    return e->ops->vjp(e, in, want, n_want, err);
}

int lc_engine_restart(lc_engine *e, lc_error *err)
{
    NEED(restart, -1);
    return e->ops->restart(e, err);
}

int lc_engine_reset(lc_engine *e, lc_error *err)
{
    if (e && e->ops && e->ops->reset)
        return e->ops->reset(e, err);
    return lc_engine_restart(e, err);
}

int lc_engine_verify(lc_engine *e, int seq, const int32_t *tokens, int n, double *logits, lc_error *err)
{
    NEED(verify, LC_CAP_VERIFY);
    return e->ops->verify(e, seq, tokens, n, logits, err);
}

int lc_engine_accept(lc_engine *e, int seq, int accepted, lc_error *err)
{
    NEED(accept, LC_CAP_VERIFY);
    return e->ops->accept(e, seq, accepted, err);
}

int lc_engine_draft(lc_engine *e, int seq, int32_t next, int k, int32_t *drafts, double *logits, lc_error *err)
{
    NEED(draft, LC_CAP_MTP);
    return e->ops->draft(e, seq, next, k, drafts, logits, err);
}

int lc_engine_batch_verify(lc_engine *e, const int *seqs, int B, const int32_t *tokens, const int *counts,
                           double *logits, lc_error *err)
{
    NEED(batch_verify, LC_CAP_BATCH_VERIFY);
    return e->ops->batch_verify(e, seqs, B, tokens, counts, logits, err);
}

int lc_engine_decode_final(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden,
                           lc_error *err)
{
    NEED(decode_final, LC_CAP_FINAL_HIDDEN);
    if (!final_hidden)
        return lc_fail(err, LC_EINTERNAL, "engine call 'decode_final' without a final_hidden buffer");
    return e->ops->decode_final(e, seq, token, logits, final_hidden, err);
}

int lc_engine_batch_prefill_final(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                                  double *logits, double *final_hidden, lc_error *err)
{
    NEED(batch_prefill_final, LC_CAP_BATCH);
    NEED(batch_prefill_final, LC_CAP_FINAL_HIDDEN);
    if (!final_hidden)
        return lc_fail(err, LC_EINTERNAL, "engine call 'batch_prefill_final' without a final_hidden buffer");
    return e->ops->batch_prefill_final(e, seqs, prompts, B, from, to, logits, final_hidden, err);
}

int lc_engine_batch_decode_final(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                                 double *final_hidden, lc_error *err)
{
    NEED(batch_decode_final, LC_CAP_BATCH);
    NEED(batch_decode_final, LC_CAP_FINAL_HIDDEN);
    if (!final_hidden)
        return lc_fail(err, LC_EINTERNAL, "engine call 'batch_decode_final' without a final_hidden buffer");
    return e->ops->batch_decode_final(e, seqs, tokens, B, logits, final_hidden, err);
}

void lc_engine_free(lc_engine *e)
{
    if (e && e->ops && e->ops->destroy)
        e->ops->destroy(e);
}

/* ---------------------------------------------------------------- serving */

int lc_engine_step(lc_engine *e, const lc_step_row *rows, int B, double *logits, lc_error *err)
{
    NEED(step, LC_CAP_STEP);
    return e->ops->step(e, rows, B, logits, err);
}

int lc_engine_prefix_store(lc_engine *e, int seq, int prompt, lc_error *err)
{
    NEED(prefix_store, LC_CAP_PREFIX_CACHE);
    return e->ops->prefix_store(e, seq, prompt, err);
}

int lc_engine_prefix_lookup(lc_engine *e, int prompt, int *seq, int *reused, lc_error *err)
{
    NEED(prefix_lookup, LC_CAP_PREFIX_CACHE);
    *seq = -1;
    *reused = 0;
    return e->ops->prefix_lookup(e, prompt, seq, reused, err);
}

int lc_engine_prefix_stats(lc_engine *e, lc_prefix_stats *out, lc_error *err)
{
    NEED(prefix_stats, LC_CAP_PREFIX_CACHE);
    memset(out, 0, sizeof *out);
    return e->ops->prefix_stats(e, out, err);
}
