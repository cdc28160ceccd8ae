/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the runner's files. Who calls whom, top down:
 *
 *   runner.c         entry point: fresh engine state, capability check (SKIP), the kind's
 *                    function, engine restart after an engine failure, the verdict
 *   kinds_*.c        one short function per case kind, over the helpers below only
 *   kinds_gradient.c the backward passes (vjp) against autograd
 *   steps.c          engine steps written once: open a prompt, prefill on a chunk schedule,
 *                    the greedy / teacher-forced decode loop, taps
 *   compare.c        the run's arena and errors, compare-and-record with bounds by class
 *   golden.c         golden file access, or the oracle's outputs in its place (oracle.c)
 *   oracle.c         differential mode: the oracle engine run on the case's inputs
 *   instantiate.c    differential mode: a case instantiated for another checkpoint
 *
 * Ownership: everything a kind allocates (buffers, golden arrays, prompt infos) belongs to
 * the run's arena and every engine handle it opens to the run; both are released once, when
 * the case ends. A kind reads as the steps of its case: on a failed step it returns.
 *
 * Shape legend: T = prompt tokens, V = vocab, H = hidden, N = decode steps, B = batch rows,
 * L = padded batch length.
 */
#ifndef LC_RUNNER_INTERNAL_H
#define LC_RUNNER_INTERNAL_H

#include <stdint.h>

#include "bounds.h"
#include "h5io.h"
#include "runner.h"

/* ---------------------------------------------------------------- the run */

/* One array of a golden group produced by the oracle (differential mode), arena memory. */
typedef struct {
    char name[32];
    double *data;
    lc_h5_shape shape;
    int ints;                   /* holds integers (ids, positions): written as i64 to a cache */
} lc__gset;

#define LC__MAX_GSETS 12

typedef struct {
    lc_h5 f;
    char group[256];
    int open;
    /* differential mode with an oracle engine: the group's arrays, no file */
    int from_oracle;
    lc__gset sets[LC__MAX_GSETS];
    int n_sets;
} lc__golden;

typedef struct {
    const lc_case *c;
    const lc_run_opts *o;
    lc_case_result *res;
    lc_engine *e;
    lc_model_info mi;
    lc_precision prec;          /* the engine's compute precision: selects the bounds */
    int V, H, NL;
    /* arena: every allocation of the case, freed once at its end */
    void **owned;
    int n_owned, cap_owned;
    /* engine handles the case opened, closed at its end */
    int *handles;               /* (n_handles) pairs: kind, handle */
    int n_handles, cap_handles;
    int engine_failed;          /* an LC_EENGINE: the engine is restarted after the case */
    lc__golden golden;          /* the case's golden file, once opened */
    char dir[4096];             /* the checkpoint directory the case runs on */
    lc_case inst;               /* with opts.model: the case instantiated for it (arena arrays) */
} lc__run;

/* Zero-filled arena memory; NULL with the case's error set when out of memory. */
void *lc__alloc(lc__run *r, size_t bytes);
/* Arena memory for n doubles set to NaN (rows not written stay NaN). */
double *lc__nans(lc__run *r, size_t n);
/* Hands a malloc'ed pointer to the arena (NULL is fine); returns it. */
void *lc__own(lc__run *r, void *p);
/* Frees the arena and closes the handles (runner.c, at the end of the case). */
void lc__run_release(lc__run *r);

/* Records that the comparisons needing capability `cap` were left out of this case because
 * the engine lacks it (res->not_compared, each capability once): shown in every report, so a
 * pass never hides a comparison that did not run. */
void lc__note_missing(lc__run *r, lc_cap cap);
/* The same for a comparison that no capability of the interface offers yet ("pixel_bytes"). */
void lc__note_missing_name(lc__run *r, const char *name);
/* Sets the case's verdict to error with a one-line reason (the first reason wins). */
void lc__set_error(lc__run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether the case can go on (no error yet). */
int lc__ok(const lc__run *r);
/* The outcome of an engine call: LC_OK gives 1; otherwise the case's error is set from err
 * (an LC_EENGINE also marks the engine for a restart) and 0 is returned. */
int lc__engine_ok(lc__run *r, int rc, const lc_error *err);

/* ---------------------------------------------------------------- comparisons (compare.c) */

/* What is compared: logits-like rows (every metric, KL and top-k over kl_include), a flat
 * tensor (elementwise metrics only: states, hidden states), or integers (exact). */
typedef enum { LC__ROWS = 0, LC__FLAT = 1, LC__INTS = 2 } lc__data;

/* Compares a (P, W) with e (P, W) and records the comparison with its stable id, human title,
 * class and the bounds of (class, engine precision) — the case's own bounds override the
 * class defaults for golden and cross comparisons; same-schedule comparisons are bitwise and
 * exact ones max_abs 0 whatever the case says. The arrays stay the caller's (arena). */
lc_comparison *lc__compare(lc__run *r, const char *id, const char *title, lc_cmp_class cls, lc__data data,
                           const char *actual, const char *expected, const double *a, const double *e, size_t P,
                           size_t W, const uint8_t *include, const uint8_t *kl_include);
/* lc__compare with the bounds `own` (a case's bounds of another kind of quantity: the sparse
 * goldens' hidden_bounds) in place of the class's; own NULL: lc__compare. Same-schedule and
 * exact classes stay bitwise. */
lc_comparison *lc__compare_bounded(lc__run *r, const char *id, const char *title, lc_cmp_class cls, lc__data data,
                                   const char *actual, const char *expected, const double *a, const double *e,
                                   size_t P, size_t W, const uint8_t *include, const uint8_t *kl_include,
                                   const lc_bounds *own);
/* Exact comparison of integer vectors (ids, positions). */
void lc__compare_ints(lc__run *r, const char *id, const char *title, const char *actual, const char *expected,
                      const int64_t *a, const int64_t *e, size_t P, size_t W);
/* Every conv/recurrent/KV state of two sequences (needs LC_CAP_STATE, else left out); a
 * length mismatch is a failed exact check with id "<id>.len". */
void lc__compare_states(lc__run *r, const char *id, const char *title, lc_cmp_class cls, const char *actual,
                        const char *expected, int seq_a, int seq_b);

/* ---------------------------------------------------------------- engine steps (steps.c) */

/* Opens a case prompt (image paths joined with the root; a prompt with images carries the case's
 * image_min_pixels / image_max_pixels); images with index < vision_from run no vision. The info
 * and its arrays belong to the arena, the handle to the run. */
lc_prompt_info *lc__prompt(lc__run *r, const lc_prompt *lp, int vision_from);
/* As lc__prompt, with the prompt's pad_to (a batch row's layout length, LC_CAP_PAD_TO; 0: none). */
lc_prompt_info *lc__prompt_padded(lc__run *r, const lc_prompt *lp, int vision_from, int pad_to);
/* A new empty sequence (-1 on failure). */
int lc__seq(lc__run *r);
/* Prefills prompt tokens [from, to) into seq in spans of `chunk` (0: one span);
 * logits (to - from, V) or NULL. */
int lc__prefill(lc__run *r, int seq, const lc_prompt_info *p, int from, int to, int chunk, double *logits);
/* A new sequence holding prompt tokens [0, to) prefilled in spans of `chunk` (-1 on failure). */
int lc__prefilled(lc__run *r, const lc_prompt_info *p, int to, int chunk, double *logits);
/* The decode loop, written once: feeds toks[0..n) through seq, logits (n, V) or NULL.
 * LC__CHOOSE: in a greedy case toks[i + 1] is chosen from row i as it goes (the schedule that
 * defines the tokens); LC__FORCED: teacher-forced with toks as they are (every other path). */
enum { LC__FORCED = 0, LC__CHOOSE = 1 };
int lc__decode(lc__run *r, int seq, int32_t *toks, int n, double *logits, int choose);
/* A snapshot of seq (-1 on failure), and a new sequence restored from one. */
int lc__snapshot(lc__run *r, int seq);
int lc__restore(lc__run *r, int snap);
/* The prompt's merged vision embeddings (LC_CAP_VISION): (*rows, H), arena. */
double *lc__vision(lc__run *r, const lc_prompt_info *p, int *rows);
/* Closes a sequence before the case ends (long sweeps); the run forgets the handle. */
void lc__seq_close(lc__run *r, int seq);
/* Greedy choice: argmax over every id but vision start / end, image and video (as the goldens
 * choose), so a decoded token is never an image placeholder. */
int32_t lc__greedy(const lc__run *r, const double *row);
/* The case's own decode tokens (explicit ids, or greedy: the first chosen from `last`, the
 * rest by lc__decode), at most the case's steps; arena memory, *n may be 0. */
int32_t *lc__decode_plan(lc__run *r, const double *last, int *n);
/* (T) 1 where a prompt position is not an image placeholder (the KL positions); arena. */
uint8_t *lc__text_positions(lc__run *r, const lc_prompt_info *p);
/* A sequence the engine opened by itself (a prefix-cache lookup): the run closes it at its
 * end like its own; -1 (and the sequence closed) on failure. */
int lc__adopt_seq(lc__run *r, int seq);
/* Whether the engine declares capability c (optional taps). */
int lc__has(const lc__run *r, lc_cap c);
/* Path of a case file relative to the root, joined. */
void lc__path_join(char *out, size_t len, const char *root, const char *rel);

/* ---------------------------------------------------------------- golden access (golden.c) */

/* The case's golden file and group, opened on first use and closed with the run; NULL with
 * the case's error set when it cannot be opened. */
lc__golden *lc__golden_open(lc__run *r);
void lc__golden_close(lc__golden *g);
int lc__golden_has(lc__golden *g, const char *ds);
/* Dataset `ds` of the case's group as doubles (arena), shape checked (want[i] < 0: any),
 * passed through the golden hook; NULL with the case's error set on failure. */
double *lc__golden_f64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape);
int64_t *lc__golden_i64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape);

/* Whether the case is graded against an oracle (engine or cache) instead of a golden. */
int lc__differential(const lc__run *r);
/* The "expected" side of a golden-class comparison: `golden` ("transformers float64") in
 * golden mode, the oracle's name in differential mode. */
const char *lc__expected(const lc__run *r, const char *golden);

/* ---------------------------------------------------------------- differential mode */

/* Runs the oracle engine on the case's inputs (its checkpoint loaded afresh) and fills g with
 * the arrays the case's kind reads from a golden; also writes them to opts.cache_out. 0 with
 * the case's error set on failure (an oracle that failed is restarted). oracle.c */
int lc__oracle_fill(lc__run *r, lc__golden *g);
/* With opts.model: replaces r->c by a copy instantiated for the loaded checkpoint (r->mi):
 * prompt, other prompt, batch rows, pad and decode ids re-drawn where they fall outside its
 * vocabulary or on its vision ids; everything else kept. instantiate.c */
int lc__instantiate(lc__run *r);
/* The id re-drawn for position i of prompt part `where` of case `name`: deterministic, in
 * [0, lo). Exposed for the tests. */
int32_t lc__redraw_id(const char *name, int where, int i, int32_t lo);

/* ---------------------------------------------------------------- case kinds */

void lc__kind_golden(lc__run *r);            /* golden, multi_image (kinds_golden.c) */
void lc__kind_prefill_decode(lc__run *r);    /* kinds_schedule.c */
void lc__kind_chunked(lc__run *r);
void lc__kind_cache(lc__run *r);
void lc__kind_isolation(lc__run *r);
void lc__kind_kernel(lc__run *r);
void lc__kind_batch(lc__run *r);             /* kinds_state.c */
void lc__kind_snapshot(lc__run *r);
void lc__kind_image_checkpoint(lc__run *r);
void lc__kind_gradient(lc__run *r);          /* kinds_gradient.c */
void lc__kind_continuous_batch(lc__run *r);  /* kinds_serving.c */
void lc__kind_prefix_cache(lc__run *r);
void lc__isolation_interleaved(lc__run *r);  /* isolation with "interleave": kinds_serving.c */
void lc__kind_speculative(lc__run *r);       /* kinds_speculative.c */
void lc__kind_mtp_head(lc__run *r);

/* ---------------------------------------------------------------- real-scale cases (golden_sparse_run.c) */

/* A case's checkpoint_synth: the checkpoint at dir written when missing and its hash checked
 * (once per directory and process); 1 when ready (or the case has none), else 0 with the
 * case's error set (an input error naming both hashes and the synth command). */
int lc__synth_ready(lc__run *r, const char *dir);
void lc__kind_sparse(lc__run *r);            /* golden, multi_image with golden_layout sparse-v1 */
void lc__kind_sparse_batch(lc__run *r);      /* batch with golden_layout sparse-v1 */

#endif /* LC_RUNNER_INTERNAL_H */
