/* SPDX-License-Identifier: MIT */
/*
 * The real-scale cases (golden_layout "sparse-v1": cases/real/README.md, golden/real/README.md):
 * the synthesized checkpoint made ready before the case, and the kinds golden, multi_image and
 * batch graded against the sparse float64 goldens.
 *
 * Streaming: logits rows of the 248320-id vocabulary are reduced as they come (logsumexp, the
 * values at the golden's top-k ids, the argmax; the one verbatim row kept whole), so a case
 * holds at most LC__SPARSE_SPAN full rows at once whatever its length. The base schedule is
 * one prefill call for prompts up to LC__SPARSE_SPAN positions, spans of that length beyond
 * (8192 full rows would be 16 GB of doubles); each chunk_sweep size is a schedule of its own,
 * graded against the golden and against the base (bitwise when the spans are the same).
 *
 * The final hidden state (the final RMSNorm's output, LC_CAP_FINAL_HIDDEN) is reduced the same
 * way: its RMS and 8-value sketch at every position, the whole row at the golden's sample
 * positions, each compared relative to the golden row's scale (grade_hidden) under the case's
 * hidden_bounds. Not compared, and said in every report (not_compared): the final hidden state
 * of an engine without that capability, and the preprocessed pixel bytes (no tap); the image
 * grids and every position are compared exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_sparse.h"
#include "row_summary.h"
#include "runner_internal.h"
#include "synth.h"

#define LC__SPARSE_SPAN 512     /* full logits rows a case holds at once */
#define LC__SPARSE_MAX_K 64

/* ---------------------------------------------------------------- the checkpoint */

/* Checkpoints this process has written or hashed (a 7 GB checkpoint takes half a minute to
 * hash; the runner is single-threaded, so a small table is all the state this needs). */
enum { READY_MAX = 8 };
static struct {
    char dir[4096];
    char sha[65];
} ready[READY_MAX];
static int n_ready;

int lc__synth_ready(lc__run *r, const char *dir)
{
    const lc_case *c = r->c;
    if (!c->has_synth)
        return 1;
    for (int i = 0; i < n_ready; i++)
        if (!strcmp(ready[i].dir, dir) && !strcmp(ready[i].sha, c->synth_sha256))
            return 1;
    lc_synth_opts o = lc_synth_defaults();
    lc_error err = {0};
    int written = 0;
    if (lc_synth_parse_preset(c->synth_preset, &o.preset)) {
        lc__set_error(r, "%s: case '%s': unknown synth preset '%s'", c->file, c->name, c->synth_preset);
        return 0;
    }
    o.seed = c->synth_seed;
    if (lc_synth_ensure(dir, &o, c->synth_sha256, &written, &err)) {
        lc__set_error(r, "%s", err.msg);
        return 0;
    }
    if (written)
        fprintf(stderr, "logitcheck: wrote %s (synth --preset %s --seed %llu)\n", dir, c->synth_preset,
                (unsigned long long)c->synth_seed);
    if (n_ready < READY_MAX) {
        snprintf(ready[n_ready].dir, sizeof ready[n_ready].dir, "%s", dir);
        snprintf(ready[n_ready].sha, sizeof ready[n_ready].sha, "%s", c->synth_sha256);
        n_ready++;
    }
    return 1;
}

/* ---------------------------------------------------------------- golden access */

/* The golden file of the case, its root identity checked against the case, and one sequence
 * group read; 0 with the case's error set on failure. */
static lc__golden *open_sparse(lc__run *r)
{
    lc__golden *g = lc__golden_open(r);
    if (!g)
        return NULL;
    lc_sparse_root root = {0};
    lc_error err = {0};
    if (lc_sparse_root_read(&g->f, &root, &err)) {
        lc__set_error(r, "%s", err.msg);
        return NULL;
    }
    int ok = 1;
    if (r->c->has_synth && strcmp(root.checkpoint_sha256, r->c->synth_sha256)) {
        lc__set_error(r, "%s: checkpoint_sha256 %s, but case '%s' names checkpoint %s (regenerate: "
                      "golden/real/README.md)", g->f.path, root.checkpoint_sha256, r->c->name, r->c->synth_sha256);
        ok = 0;
    } else if (root.topk < 1 || root.topk > LC__SPARSE_MAX_K) {
        lc__set_error(r, "%s: topk %d outside 1..%d", g->f.path, root.topk, LC__SPARSE_MAX_K);
        ok = 0;
    }
    lc_sparse_root_free(&root);
    return ok ? g : NULL;
}

static lc_sparse_seq *read_seq(lc__run *r, lc__golden *g, const char *group)
{
    lc_sparse_seq *s = lc__alloc(r, sizeof *s);
    lc_error err = {0};
    if (!s)
        return NULL;
    if (lc_sparse_seq_read(&g->f, group, s, &err)) {
        lc__set_error(r, "%s", err.msg);
        lc_sparse_seq_free(s);
        return NULL;
    }
    /* the arrays join the arena */
    lc__own(r, s->lse);
    lc__own(r, s->topk_ids);
    lc__own(r, s->topk_values);
    lc__own(r, s->hidden_rms);
    lc__own(r, s->hidden_sketch);
    lc__own(r, s->sample_positions);
    lc__own(r, s->hidden_sample);
    lc__own(r, s->input_ids);
    lc__own(r, s->position_ids);
    lc__own(r, s->decode_tokens);
    lc__own(r, s->logits_full);
    lc__own(r, s->router_gap);
    for (size_t i = 0; i < (size_t)s->P * s->k; i++)
        if (s->topk_ids[i] < 0 || s->topk_ids[i] >= r->V) {
            lc__set_error(r, "%s: %s/topk_ids: id %lld outside the vocabulary of %d", g->f.path, group,
                          (long long)s->topk_ids[i], r->V);
            return NULL;
        }
    if (s->hidden_sample && s->H != r->H) {
        lc__set_error(r, "%s: %s/hidden_sample: rows of %d values, the checkpoint's hidden size is %d", g->f.path,
                      group, s->H, r->H);
        return NULL;
    }
    if (s->logits_full && s->V != r->V) {
        lc__set_error(r, "%s: %s/logits_full: %d values, the checkpoint's vocabulary is %d", g->f.path, group, s->V,
                      r->V);
        return NULL;
    }
    return lc__ok(r) ? s : NULL;
}

/* ---------------------------------------------------------------- row reduction */

/* What a schedule keeps of the engine's rows of one sequence: per position the logsumexp, the
 * values at the golden's top-k ids and the argmax; the whole row at the verbatim position. */
typedef struct {
    const lc_sparse_seq *g;
    double *lse;                /* (P) */
    double *topv;               /* (P, k) */
    double *top1;               /* (P) argmax id */
    double *full;               /* (V) at g->logits_full_pos, or NULL */
    int seen;                   /* rows reduced */
    /* the final hidden rows (LC_CAP_FINAL_HIDDEN; NULL without it) */
    double *rms;                /* (P) */
    double *sketch;             /* (P, LC_SKETCH_N) */
    double *sample;             /* (S, H) the rows at g->sample_positions */
    int *sample_at;             /* (P) index into sample_positions, or -1 */
    int hseen;                  /* hidden rows reduced */
} sched;

static int sched_init(lc__run *r, sched *s, const lc_sparse_seq *g)
{
    memset(s, 0, sizeof *s);
    s->g = g;
    s->lse = lc__nans(r, (size_t)g->P);
    s->topv = lc__nans(r, (size_t)g->P * g->k);
    s->top1 = lc__nans(r, (size_t)g->P);
    s->full = g->logits_full ? lc__nans(r, (size_t)r->V) : NULL;
    if (!s->lse || !s->topv || !s->top1 || (g->logits_full && !s->full))
        return 0;
    if (!lc__has(r, LC_CAP_FINAL_HIDDEN))
        return 1;
    s->rms = lc__nans(r, (size_t)g->P);
    s->sketch = lc__nans(r, (size_t)g->P * LC_SKETCH_N);
    s->sample = lc__nans(r, (size_t)g->S * g->H);
    s->sample_at = lc__alloc(r, (size_t)g->P * sizeof *s->sample_at);
    if (!s->rms || !s->sketch || !s->sample || !s->sample_at)
        return 0;
    for (int p = 0; p < g->P; p++)
        s->sample_at[p] = -1;
    for (int i = 0; i < g->S; i++) {
        const int64_t q = g->sample_positions[i];
        if (q < 0 || q >= g->P) {
            lc__set_error(r, "case '%s': sample position %lld outside the golden's %d positions", r->c->name,
                          (long long)q, g->P);
            return 0;
        }
        s->sample_at[q] = i;
    }
    return 1;
}

/* Row h (H) is the engine's final hidden state at index p of the sequence. */
static void reduce_hidden(const lc__run *r, sched *s, int p, const double *h)
{
    s->rms[p] = lc_hidden_rms(h, r->H);
    lc_hidden_sketch(h, r->H, s->sketch + (size_t)p * LC_SKETCH_N);
    if (s->sample_at[p] >= 0)
        memcpy(s->sample + (size_t)s->sample_at[p] * r->H, h, (size_t)r->H * sizeof *h);
    s->hseen++;
}

/* Row `row` (V) is the engine's logits at index p of the sequence. */
static void reduce(const lc__run *r, sched *s, int p, const double *row)
{
    const lc_sparse_seq *g = s->g;
    int32_t id = 0;
    double v = 0;
    s->lse[p] = lc_row_logsumexp(row, r->V);
    for (int j = 0; j < g->k; j++)
        s->topv[(size_t)p * g->k + j] = row[g->topk_ids[(size_t)p * g->k + j]];
    lc_row_topk(row, r->V, 1, &id, &v);
    s->top1[p] = id;
    if (s->full && p == g->logits_full_pos)
        memcpy(s->full, row, (size_t)r->V * sizeof *row);
    s->seen++;
}

/* The golden's side of the top-1 check: its top-1 id where the golden's top-1 / top-2 gap is
 * wider than twice the case's max_abs bound (a flip inside it is within what the bound
 * allows), and which positions those are. */
static void golden_top1(const lc__run *r, const lc_sparse_seq *g, double *ids, uint8_t *include)
{
    const lc_bound *b = lc_case_bound(r->c, r->prec, "max_abs");
    const double tol = 2.0 * (b ? b->value : 0.0);
    for (int p = 0; p < g->P; p++) {
        ids[p] = (double)g->topk_ids[(size_t)p * g->k];
        include[p] = g->k < 2 || g->topk_values[(size_t)p * g->k] - g->topk_values[(size_t)p * g->k + 1] > tol;
    }
}

/* Routing near-ties. Where the golden's gap between the k-th and (k+1)-th routing probability
 * of some MoE layer is below what the engine's precision resolves, the engine may pick the
 * other expert: a choice of rounding, not a bug, and that position's logits then differ by far
 * more than rounding (real35.golden.text_577: gap 3.7e-10 at position 2, the float build's top-8
 * values there 1.65 off; every other position within its bound). Those positions are left out
 * of the logits comparisons, and the titles say which. Resolution per precision: float64 1e-12
 * (its logits agree with the golden to 2e-12); float32 1e-7 (measured: the float build flipped
 * at 3.7e-10 and at no gap of 2.6e-7 or more, over 741 positions of the two 35B-A3B cases);
 * bfloat16 and float16 1e-3 (derived from their 8- and 11-bit mantissas, not measured). */
static double routing_resolution(lc_precision p)
{
    switch (p) {
    case LC_PREC_F64:
        return 1e-12;
    case LC_PREC_F32:
        return 1e-7;
    default:
        return 1e-3;
    }
}

/* keep[p] = 0 at the routing near-ties of the sequence; the count left out, its first
 * position and gap in *first / *gap. NULL (nothing left out) when there is none. */
static uint8_t *routing_keep(lc__run *r, const lc_sparse_seq *g, int *n_out, int *first, double *gap)
{
    *n_out = 0, *first = -1, *gap = NAN;
    if (!g->router_gap)
        return NULL;
    const double tau = routing_resolution(r->prec);
    for (int p = 0; p < g->P; p++)
        if (g->router_gap[p] < tau && (*n_out)++ == 0)
            *first = p, *gap = g->router_gap[p];
    if (!*n_out)
        return NULL;
    uint8_t *keep = lc__alloc(r, (size_t)g->P);
    for (int p = 0; keep && p < g->P; p++)
        keep[p] = !(g->router_gap[p] < tau);
    return keep;
}

/* " but N routing near-ties (first at position p, gap g < tau)" or "" */
static void ties_note(const lc__run *r, char *buf, size_t n, int n_out, int first, double gap)
{
    if (!n_out)
        buf[0] = 0;
    else
        snprintf(buf, n, " but %d routing near-tie%s (first at position %d: gap %.2g below %s's %.0e)", n_out,
                 n_out == 1 ? "" : "s", first, gap, lc_precision_name(r->prec), routing_resolution(r->prec));
}

/* The case's hidden_bounds of comparison `which` (LC_HIDDEN_*) for the engine's precision;
 * without them the scale-free tensor bounds of the precision (the quantities compared are
 * relative already); differential mode: NULL (the class's bounds for the pair). */
static const lc_bounds *hidden_bounds(const lc__run *r, int which)
{
    const lc_case *c = r->c;
    if (lc__differential(r))
        return NULL;
    if (!c->has_hidden_bounds || r->prec < 0 || r->prec >= LC_PREC_COUNT || !c->hidden_bounds[which][r->prec].present)
        return lc_pair_bounds_any(r->prec, LC_PREC_F64, 1);
    return &c->hidden_bounds[which][r->prec];
}

/* The final hidden state of one schedule against the golden, each quantity relative to the
 * golden row's scale, so one bound holds at every position and checkpoint width: the RMS as
 * the ratio engine / golden (against 1); the sketch divided by the golden's rms * sqrt(H), the
 * L2 norm of the row (a sketch value is a signed sum of the H entries: its error is about the
 * L2 norm of the row's error, while the value itself may be near 0); the sampled rows divided
 * by the golden's rms (an entry's error in units of the row's typical entry). */
static void grade_hidden(lc__run *r, const sched *s, const char *pfx, const char *actual)
{
    const lc_sparse_seq *g = s->g;
    char id[128], title[256];
    if (!lc__ok(r) || !s->rms)
        return;
    if (s->hseen != g->P) {
        lc__set_error(r, "case '%s': %s: %d final hidden rows for the golden's %d positions", r->c->name, actual,
                      s->hseen, g->P);
        return;
    }
    const size_t P = (size_t)g->P, S = (size_t)g->S, H = (size_t)g->H, K = LC_SKETCH_N;
    double *ra = lc__alloc(r, P * sizeof *ra), *re = lc__alloc(r, P * sizeof *re);
    double *ka = lc__alloc(r, P * K * sizeof *ka), *ke = lc__alloc(r, P * K * sizeof *ke);
    double *ha = lc__alloc(r, (S * H + 1) * sizeof *ha), *he = lc__alloc(r, (S * H + 1) * sizeof *he);
    if (!ra || !re || !ka || !ke || !ha || !he)
        return;
    /* routing near-ties are left out here as in the logits comparisons */
    int n_ties, first;
    double gap;
    char ties[160];
    const uint8_t *keep = routing_keep(r, g, &n_ties, &first, &gap);
    uint8_t *keep_s = keep ? lc__alloc(r, S + 1) : NULL;
    if (n_ties && (!keep || !keep_s))
        return;
    ties_note(r, ties, sizeof ties, n_ties, first, gap);
    for (size_t i = 0; keep_s && i < S; i++)
        keep_s[i] = keep[g->sample_positions[i]];
    for (size_t p = 0; p < P; p++) {
        const double rms = g->hidden_rms[p] > 0 ? g->hidden_rms[p] : 1.0, norm = rms * sqrt((double)H);
        ra[p] = s->rms[p] / rms;
        re[p] = g->hidden_rms[p] / rms;
        for (size_t j = 0; j < K; j++) {
            ka[p * K + j] = s->sketch[p * K + j] / norm;
            ke[p * K + j] = g->hidden_sketch[p * K + j] / norm;
        }
    }
    for (size_t i = 0; i < S; i++) {
        const double v = g->hidden_rms[g->sample_positions[i]], rms = v > 0 ? v : 1.0;
        for (size_t k = 0; k < H; k++) {
            ha[i * H + k] = s->sample[i * H + k] / rms;
            he[i * H + k] = g->hidden_sample[i * H + k] / rms;
        }
    }
    snprintf(id, sizeof id, "%shidden_rms", pfx);
    snprintf(title, sizeof title, "%sRMS of the final hidden state, engine / golden, every position%s", pfx, ties);
    lc__compare_bounded(r, id, title, LC_CLASS_GOLDEN, LC__FLAT, actual, "transformers float64", ra, re, P, 1, keep,
                        NULL, hidden_bounds(r, LC_HIDDEN_RMS));
    snprintf(id, sizeof id, "%shidden_sketch", pfx);
    snprintf(title, sizeof title, "%s%d-value sign sketch of the final hidden state / (golden rms * sqrt(H)), every "
             "position%s", pfx, LC_SKETCH_N, ties);
    lc__compare_bounded(r, id, title, LC_CLASS_GOLDEN, LC__FLAT, actual, "transformers float64", ka, ke, P, K, keep,
                        NULL, hidden_bounds(r, LC_HIDDEN_SKETCH));
    if (S == 0)
        return;
    snprintf(id, sizeof id, "%shidden_sample", pfx);
    snprintf(title, sizeof title, "%sthe final hidden state / golden rms at the %zu sampled positions%s", pfx, S,
             ties);
    lc__compare_bounded(r, id, title, LC_CLASS_GOLDEN, LC__FLAT, actual, "transformers float64", ha, he, S, H, keep_s,
                        NULL, hidden_bounds(r, LC_HIDDEN_SAMPLE));
}

/* Records the comparisons of one schedule against the golden (ids prefixed by pfx). */
static void grade(lc__run *r, const sched *s, const char *pfx, const char *actual)
{
    const lc_sparse_seq *g = s->g;
    char id[128], title[256];
    if (!lc__ok(r))
        return;
    if (s->seen != g->P) {
        lc__set_error(r, "case '%s': %s: %d engine rows for the golden's %d positions", r->c->name, actual, s->seen,
                      g->P);
        return;
    }
    double *e_top1 = lc__alloc(r, (size_t)g->P * sizeof *e_top1);
    uint8_t *inc = lc__alloc(r, (size_t)g->P);
    if (!e_top1 || !inc)
        return;
    golden_top1(r, g, e_top1, inc);
    int n_ties, first;
    double gap;
    char ties[160];
    const uint8_t *keep = routing_keep(r, g, &n_ties, &first, &gap);
    if (n_ties && !keep)
        return;
    ties_note(r, ties, sizeof ties, n_ties, first, gap);
    for (int p = 0; keep && p < g->P; p++)
        inc[p] = inc[p] && keep[p];
    snprintf(id, sizeof id, "%slse", pfx);
    snprintf(title, sizeof title, "%slogsumexp of every logits row%s", pfx, ties);
    lc__compare(r, id, title, LC_CLASS_GOLDEN, LC__FLAT, actual, "transformers float64", s->lse, g->lse,
                (size_t)g->P, 1, keep, NULL);
    snprintf(id, sizeof id, "%stopk_values", pfx);
    snprintf(title, sizeof title, "%slogits at the golden's top-%d ids, every position%s", pfx, g->k, ties);
    lc__compare(r, id, title, LC_CLASS_GOLDEN, LC__ROWS, actual, "transformers float64", s->topv, g->topk_values,
                (size_t)g->P, (size_t)g->k, keep, NULL);
    snprintf(id, sizeof id, "%stop1_id", pfx);
    snprintf(title, sizeof title, "%sargmax over the vocabulary (positions whose golden top-1 gap exceeds twice "
             "the max_abs bound)%s", pfx, ties);
    lc__compare(r, id, title, LC_CLASS_EXACT, LC__INTS, actual, "transformers float64", s->top1, e_top1,
                (size_t)g->P, 1, inc, NULL);
    if (s->full && !(keep && !keep[g->logits_full_pos])) {
        snprintf(id, sizeof id, "%slogits_full", pfx);
        snprintf(title, sizeof title, "%sthe full logits row at position %lld (verbatim in the golden)", pfx,
                 (long long)g->logits_full_pos);
        lc__compare(r, id, title, LC_CLASS_GOLDEN, LC__ROWS, actual, "transformers float64", s->full, g->logits_full,
                    1, (size_t)r->V, NULL, NULL);
    }
    grade_hidden(r, s, pfx, actual);
}

/* A schedule against the base schedule: the same summaries, bitwise when the spans are the same. */
static void grade_cross(lc__run *r, const sched *s, const sched *base, const char *pfx, int same)
{
    const lc_sparse_seq *g = s->g;
    char id[128], title[256];
    const lc_cmp_class cls = same ? LC_CLASS_SAME : LC_CLASS_CROSS;
    /* two schedules may round a near-tie differently too; the same spans are bitwise everywhere */
    int n_ties = 0, first;
    double gap;
    char ties[160] = "";
    const uint8_t *keep = same ? NULL : routing_keep(r, g, &n_ties, &first, &gap);
    if (n_ties && !keep)
        return;
    ties_note(r, ties, sizeof ties, n_ties, first, gap);
    snprintf(id, sizeof id, "%svs_base.lse", pfx);
    snprintf(title, sizeof title, "%slogsumexp against the base schedule%s", pfx, ties);
    lc__compare(r, id, title, cls, LC__FLAT, "engine, this schedule", "engine, base schedule", s->lse, base->lse,
                (size_t)g->P, 1, keep, NULL);
    snprintf(id, sizeof id, "%svs_base.topk_values", pfx);
    snprintf(title, sizeof title, "%slogits at the golden's top-%d ids against the base schedule%s", pfx, g->k, ties);
    lc__compare(r, id, title, cls, LC__ROWS, "engine, this schedule", "engine, base schedule", s->topv, base->topv,
                (size_t)g->P, (size_t)g->k, keep, NULL);
}

/* ---------------------------------------------------------------- one sequence */

/* Prefills the prompt in spans of `chunk` (0: the base schedule) into a new sequence, reducing
 * every row, then feeds the golden's decode tokens. The conv/recurrent/KV state after the
 * prompt is exported into *state when state is not NULL (LC_CAP_STATE). Returns the sequence
 * (still open), -1 on failure. */
static int run_schedule(lc__run *r, const lc_prompt_info *p, sched *s, int chunk, double *buf, lc_state *state)
{
    const lc_sparse_seq *g = s->g;
    const int T = p->n, span = chunk > 0 ? chunk : LC__SPARSE_SPAN;
    int seq = lc__seq(r);
    lc_error err = {0};
    if (seq < 0)
        return -1;
    /* the final hidden rows of one span (LC_CAP_FINAL_HIDDEN) */
    double *hb = s->rms ? lc__alloc(r, (size_t)(span < T ? span : T) * r->H * sizeof *hb) : NULL;
    if (s->rms && !hb)
        return -1;
    for (int from = 0; from < T; from += span) {
        const int to = T - from < span ? T : from + span;
        lc_prefill_out o = {.sel = LC_LOGITS_ALL, .logits = buf, .final_hidden = hb};
        if (!lc__engine_ok(r, lc_engine_prefill(r->e, seq, p->handle, from, to, &o, &err), &err))
            return -1;
        for (int i = from; i < to; i++) {
            reduce(r, s, i, buf + (size_t)(i - from) * r->V);
            if (hb)
                reduce_hidden(r, s, i, hb + (size_t)(i - from) * r->H);
        }
    }
    if (state) {
        memset(state, 0, sizeof *state);
        if (!lc__engine_ok(r, lc_engine_state(r->e, seq, state, &err), &err) ||
            (state->data && !lc__own(r, state->data)))
            return -1;
    }
    for (int i = 0; i < g->N; i++) { /* teacher-forced: the golden's tokens, never our own choice */
        const int32_t tok = (int32_t)g->decode_tokens[i];
        const int rc = hb ? lc_engine_decode_final(r->e, seq, tok, buf, hb, &err)
                          : lc_engine_decode(r->e, seq, tok, buf, &err);
        if (!lc__engine_ok(r, rc, &err))
            return -1;
        reduce(r, s, T + i, buf);
        if (hb)
            reduce_hidden(r, s, T + i, hb);
    }
    return seq;
}

/* Expanded ids, 3-axis positions, rope delta and image grids against the golden's, exactly. */
static void grade_prompt(lc__run *r, lc__golden *g, const lc_prompt_info *p, const lc_sparse_seq *e)
{
    int64_t *ids = lc__alloc(r, (size_t)p->n * sizeof *ids);
    if (!ids)
        return;
    for (int i = 0; i < p->n; i++)
        ids[i] = p->ids[i];
    lc__compare_ints(r, "input_ids", "input ids (expanded prompt)", "engine expansion", "transformers processor", ids,
                     e->input_ids, 1, (size_t)p->n);
    if (!p->pos)
        lc__note_missing(r, LC_CAP_POSITIONS);
    else {
        lc__compare_ints(r, "position_ids", "position ids (3 x T)", "engine rope index", "transformers get_rope_index",
                         p->pos, e->position_ids, 3, (size_t)p->n);
        lc__compare_ints(r, "rope_delta", "rope delta", "engine", "transformers", &p->rope_delta, &e->rope_delta, 1, 1);
    }
    if (p->n_images) {
        lc_h5_shape sh;
        int64_t w[2] = {p->n_images, 3};
        const int64_t *e_grid = lc__golden_i64(r, g, "image_grid_thw", 2, w, &sh);
        int64_t *a_grid = lc__alloc(r, (size_t)p->n_images * 3 * sizeof *a_grid);
        for (int i = 0; a_grid && i < 3 * p->n_images; i++)
            a_grid[i] = p->grid[i / 3][i % 3];
        lc__compare_ints(r, "image_grid_thw", "image patch grids (t, h, w)", "engine preprocessing",
                         "transformers processor", a_grid, e_grid, (size_t)p->n_images, 3);
    }
}

/* A span buffer of `rows` full logits rows. */
static double *span_buffer(lc__run *r, int rows)
{
    return lc__alloc(r, (size_t)(rows > 0 ? rows : 1) * r->V * sizeof(double));
}

/* golden, multi_image: the base schedule and every chunk_sweep size against the golden, each
 * sweep against the base (summaries and the state after the prompt). */
void lc__kind_sparse(lc__run *r)
{
    const lc_case *c = r->c;
    const lc_prompt_info *p = lc__prompt(r, &c->prompt, 0);
    lc__golden *g = p ? open_sparse(r) : NULL;
    const lc_sparse_seq *e = g ? read_seq(r, g, g->group) : NULL;
    if (!e)
        return;
    if (!e->input_ids || e->T != p->n) {
        lc__set_error(r, "%s: case '%s': the golden prompt has %d tokens, the case expands to %d (image grid or "
                      "prompt changed? regenerate the goldens)", g->f.path, c->name, e->T, p->n);
        return;
    }
    if (!lc__has(r, LC_CAP_FINAL_HIDDEN))
        lc__note_missing(r, LC_CAP_FINAL_HIDDEN);
    if (p->n_images)
        lc__note_missing_name(r, "pixel_bytes");
    grade_prompt(r, g, p, e);

    int rows = p->n < LC__SPARSE_SPAN ? p->n : LC__SPARSE_SPAN;
    for (int i = 0; i < c->n_chunk_sweep; i++)
        rows = c->chunk_sweep[i] > rows ? (c->chunk_sweep[i] < p->n ? c->chunk_sweep[i] : p->n) : rows;
    double *buf = span_buffer(r, rows);
    const int states = lc__has(r, LC_CAP_STATE) && c->n_chunk_sweep > 0;
    if (!states && c->n_chunk_sweep > 0)
        lc__note_missing(r, LC_CAP_STATE);
    sched base;
    lc_state base_state = {0};
    if (!buf || !sched_init(r, &base, e))
        return;
    int seq = run_schedule(r, p, &base, 0, buf, states ? &base_state : NULL);
    if (seq < 0)
        return;
    lc__seq_close(r, seq);
    grade(r, &base, "", "engine, base schedule");

    for (int i = 0; i < c->n_chunk_sweep && lc__ok(r); i++) {
        const int ch = c->chunk_sweep[i], T = p->n;
        const int same = (ch < T ? ch : T) == (LC__SPARSE_SPAN < T ? LC__SPARSE_SPAN : T);
        char pfx[64], actual[96], id[96], title[160];
        snprintf(pfx, sizeof pfx, "chunk%d.", ch);
        snprintf(actual, sizeof actual, "engine, prefill in chunks of %d", ch);
        sched s;
        lc_state st = {0};
        if (!sched_init(r, &s, e) || (seq = run_schedule(r, p, &s, ch, buf, states ? &st : NULL)) < 0)
            return;
        lc__seq_close(r, seq);
        grade(r, &s, pfx, actual);
        grade_cross(r, &s, &base, pfx, same);
        if (!states)
            continue;
        snprintf(id, sizeof id, "%sstate", pfx);
        snprintf(title, sizeof title, "state after the prompt (conv, recurrent, KV), chunks of %d against the base", ch);
        if (st.len != base_state.len || st.n != base_state.n) {
            lc__set_error(r, "case '%s': %s: %d tokens / %zu values against the base's %d / %zu", c->name, id, st.len,
                          st.n, base_state.len, base_state.n);
            return;
        }
        lc__compare(r, id, title, same ? LC_CLASS_SAME : LC_CLASS_CROSS, LC__FLAT, actual, "engine, base schedule",
                    st.data, base_state.data, 1, st.n, NULL, NULL);
    }
}

/* ---------------------------------------------------------------- batch */

/* batch: every row's prompt, positions and summaries against its own golden row group, from
 * one left-padded batched prefill (spans of columns) and batched teacher-forced decode. With
 * pad_to every row's prompt carries it (LC_CAP_PAD_TO), so the layout is the golden's. */
void lc__kind_sparse_batch(lc__run *r)
{
    const lc_case *c = r->c;
    const int B = c->n_rows, V = r->V;
    lc_h5_shape sh;
    lc_error err = {0};
    const lc_prompt_info **rows = lc__alloc(r, (size_t)B * sizeof *rows);
    int *prompts = lc__alloc(r, (size_t)B * sizeof *prompts), *seqs = lc__alloc(r, (size_t)B * sizeof *seqs);
    const lc_sparse_seq **e = lc__alloc(r, (size_t)B * sizeof *e);
    sched *s = lc__alloc(r, (size_t)B * sizeof *s);
    if (!rows || !prompts || !seqs || !e || !s)
        return;
    int L = 0;
    for (int b = 0; b < B; b++) {
        if (!(rows[b] = lc__prompt_padded(r, &c->rows[b], 0, c->pad_to)))
            return;
        prompts[b] = rows[b]->handle;
        L = rows[b]->n > L ? rows[b]->n : L;
    }
    L = c->pad_to > L ? c->pad_to : L; /* pad_to: the layout the golden was exported with */
    lc__golden *g = open_sparse(r);
    if (!g)
        return;
    int64_t wBL[2] = {B, L}, w3BL[3] = {3, B, L}, wB[1] = {B}, wBN[2] = {B, -1};
    const int64_t *e_ids = lc__golden_i64(r, g, "input_ids", 2, wBL, &sh);
    const int64_t *e_mask = e_ids ? lc__golden_i64(r, g, "attention_mask", 2, wBL, &sh) : NULL;
    const int64_t *e_pos = e_mask ? lc__golden_i64(r, g, "position_ids", 3, w3BL, &sh) : NULL;
    const int64_t *e_delta = e_pos ? lc__golden_i64(r, g, "rope_delta", 1, wB, &sh) : NULL;
    const int64_t *e_tok = e_delta ? lc__golden_i64(r, g, "decode_tokens", 2, wBN, &sh) : NULL;
    if (!e_tok)
        return;
    const int N = (int)sh.shape[1];
    const int fin = lc__has(r, LC_CAP_FINAL_HIDDEN);
    if (!fin)
        lc__note_missing(r, LC_CAP_FINAL_HIDDEN);
    for (int b = 0; b < B; b++) {
        char grp[300];
        snprintf(grp, sizeof grp, "%s/rows/%d", g->group, b);
        if (!(e[b] = read_seq(r, g, grp)) || !sched_init(r, &s[b], e[b]))
            return;
        if (e[b]->P != rows[b]->n + N) {
            lc__set_error(r, "%s: %s: %d positions, row %d has %d tokens and %d decode steps", g->f.path, grp,
                          e[b]->P, b, rows[b]->n, N);
            return;
        }
    }
    /* the layout: ids and mask of the left-padded batch, positions and rope delta per row */
    int64_t *ids = lc__alloc(r, (size_t)B * L * sizeof *ids), *mask = lc__alloc(r, (size_t)B * L * sizeof *mask);
    int64_t *e_rpos = lc__alloc(r, (size_t)3 * L * sizeof *e_rpos);
    if (!ids || !mask || !e_rpos)
        return;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < L; j++) {
            const int i = j - (L - rows[b]->n);
            ids[(size_t)b * L + j] = i >= 0 ? rows[b]->ids[i] : c->pad_id;
            mask[(size_t)b * L + j] = i >= 0;
        }
    lc__compare_ints(r, "attention_mask", "attention mask of the left-padded batch", "harness layout",
                     "transformers processor", mask, e_mask, (size_t)B, (size_t)L);
    lc__compare_ints(r, "input_ids", "input ids of the left-padded batch", "engine expansion", "transformers processor",
                     ids, e_ids, (size_t)B, (size_t)L);
    for (int b = 0; b < B && lc__ok(r); b++) {
        char id[64];
        const int n = rows[b]->n;
        if (!rows[b]->pos) {
            lc__note_missing(r, LC_CAP_POSITIONS);
            continue;
        }
        for (int a = 0; a < 3; a++)
            memcpy(e_rpos + (size_t)a * n, e_pos + ((size_t)a * B + b) * L + (L - n), (size_t)n * sizeof *e_rpos);
        snprintf(id, sizeof id, "row%d.position_ids", b);
        lc__compare_ints(r, id, "position ids of the row (3 x its tokens)", "engine rope index",
                         "transformers get_rope_index", rows[b]->pos, e_rpos, 3, (size_t)n);
        snprintf(id, sizeof id, "row%d.rope_delta", b);
        lc__compare_ints(r, id, "rope delta of the row", "engine", "transformers", &rows[b]->rope_delta, &e_delta[b],
                         1, 1);
    }

    /* batched prefill in spans of columns, batched decode; rows reduced as they come */
    const int span = LC__SPARSE_SPAN / B > 0 ? LC__SPARSE_SPAN / B : 1, cols = L < span ? L : span;
    double *buf = lc__alloc(r, (size_t)B * cols * V * sizeof *buf);
    double *hb = fin ? lc__alloc(r, (size_t)B * cols * r->H * sizeof *hb) : NULL;
    int32_t *toks = lc__alloc(r, (size_t)B * sizeof *toks);
    if (!buf || !toks || (fin && !hb))
        return;
    for (int b = 0; b < B; b++)
        if ((seqs[b] = lc__seq(r)) < 0)
            return;
    for (int from = 0; from < L; from += cols) {
        const int to = L - from < cols ? L : from + cols, w = to - from;
        const int rc = fin ? lc_engine_batch_prefill_final(r->e, seqs, prompts, B, from, to, buf, hb, &err)
                           : lc_engine_batch_prefill(r->e, seqs, prompts, B, from, to, buf, &err);
        if (!lc__engine_ok(r, rc, &err))
            return;
        for (int b = 0; b < B; b++)
            for (int j = from; j < to; j++) {
                const int i = j - (L - rows[b]->n);
                if (i < 0)
                    continue;
                reduce(r, &s[b], i, buf + ((size_t)b * w + (j - from)) * V);
                if (fin)
                    reduce_hidden(r, &s[b], i, hb + ((size_t)b * w + (j - from)) * r->H);
            }
    }
    for (int t = 0; t < N; t++) {
        for (int b = 0; b < B; b++)
            toks[b] = (int32_t)e_tok[(size_t)b * N + t];
        const int rc = fin ? lc_engine_batch_decode_final(r->e, seqs, toks, B, buf, hb, &err)
                           : lc_engine_batch_decode(r->e, seqs, toks, B, buf, &err);
        if (!lc__engine_ok(r, rc, &err))
            return;
        for (int b = 0; b < B; b++) {
            reduce(r, &s[b], rows[b]->n + t, buf + (size_t)b * V);
            if (fin)
                reduce_hidden(r, &s[b], rows[b]->n + t, hb + (size_t)b * r->H);
        }
    }
    for (int b = 0; b < B; b++) {
        char pfx[32], actual[64];
        snprintf(pfx, sizeof pfx, "row%d.", b);
        snprintf(actual, sizeof actual, "engine batched, row %d", b);
        grade(r, &s[b], pfx, actual);
    }
}
