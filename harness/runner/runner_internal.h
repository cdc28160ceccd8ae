/*
 * Internals shared by the runner's files: the per-case run context, comparison helpers,
 * engine-run helpers and golden access (runner.c), and one function per case kind
 * (runner_golden.c, runner_schedule.c, runner_state.c).
 */
#ifndef LC_RUNNER_INTERNAL_H
#define LC_RUNNER_INTERNAL_H

#include <stdint.h>

#include "h5io.h"
#include "images.h"
#include "qref_internal.h"
#include "runner.h"

/* ---------------------------------------------------------------- run context */

typedef struct {
    const lc_case *c;
    const lc_run_opts *o;
    lc_case_result *res;
    qref_model m;               /* shallow copy of the pooled model (config may be overridden) */
    const lc_bounds *bounds;
    int V;
} lc__run;

/* Sets the case's verdict to error with a one-line reason (the first reason wins). */
void lc__set_error(lc__run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- comparisons */

/* What a comparison compares: logits take every bound of the case, tensors (states,
 * embeddings) the elementwise ones, exact comparisons (ids, positions) max_abs 0, and
 * same-schedule comparisons are bitwise whatever the case's bounds say. */
enum { CMP_LOGITS = 0, CMP_TENSOR = 1, CMP_EXACT = 2, CMP_BITWISE = 3 };

lc_comparison *lc__compare(lc__run *r, int kind, const char *name, const char *actual, const char *expected,
                           const double *a, const double *e, size_t P, size_t W, const uint8_t *include,
                           const uint8_t *kl_include);
void lc__compare_real(lc__run *r, int kind, const char *name, const char *actual, const char *expected,
                      const qref_real *a, const qref_real *e, size_t P, size_t W, const uint8_t *kl_include);
void lc__compare_ints(lc__run *r, const char *name, const char *actual, const char *expected, const int64_t *a,
                      const int64_t *e, size_t P, size_t W);
/* Every conv/recurrent/KV state of two caches; a length mismatch is a failed exact check. */
void lc__compare_states(lc__run *r, const char *name, const char *actual, const char *expected, const qref_cache *a,
                        const qref_cache *e);
double *lc__to_double(const qref_real *x, size_t n);
void lc__path_join(char *out, size_t len, const char *root, const char *rel);

/* ---------------------------------------------------------------- engine runs */

/* Decodes the images [first, first + n) of a case prompt (n < 0: to the last one), paths
 * relative to the root; on failure the case's error is set and nothing is kept. */
int lc__load_images(lc__run *r, const lc_prompt *lp, int first, int n, lc_image_set *set);
/* Expands a case prompt (image segments -> vision_start, placeholders, vision_end) and builds it. */
int lc__build_prompt(lc__run *r, const lc_prompt *lp, qref_prompt *out);
/* Prefills prompt tokens [0, to) in chunks into a fresh cache; logits (to, V) or NULL. */
int lc__prefill(lc__run *r, const qref_prompt *p, int to, int chunk, int gdn_mode, qref_cache *c, qref_real *logits);
/* Feeds tokens one at a time; logits (n, V) or NULL. */
int lc__decode(lc__run *r, qref_cache *c, const int32_t *toks, int n, qref_real *logits);
/* Greedy choice: argmax over every id but vision start / end, image and video (as the
 * goldens choose), so a decoded token is never an image placeholder. */
int lc__greedy(lc__run *r, const qref_real *x);
/* The case's own decode tokens (explicit ids, or greedy: the first from `last`); malloc'ed. */
int lc__own_decode_tokens(lc__run *r, const qref_real *last, int32_t **toks, int *n);
/* (T) 1 where a prompt position is not an image placeholder (the KL positions). */
uint8_t *lc__text_positions(lc__run *r, const qref_prompt *p);

/* ---------------------------------------------------------------- golden access (runner_golden.c) */

typedef struct {
    lc_h5 f;
    char group[256];
    int open;
} lc__golden;

int lc__golden_open(lc__run *r, lc__golden *g);
void lc__golden_close(lc__golden *g);
/* Dataset `ds` of the case's group as doubles, shape checked (want[i] < 0: any), passed
 * through the golden hook; NULL with the case's error set on failure. */
double *lc__golden_f64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape);
int64_t *lc__golden_i64(lc__run *r, lc__golden *g, const char *ds, int ndim, const int64_t *want, lc_h5_shape *shape);

/* ---------------------------------------------------------------- case kinds */

void lc__kind_golden(lc__run *r);            /* golden, multi_image (runner_golden.c) */
void lc__kind_prefill_decode(lc__run *r);    /* runner_schedule.c */
void lc__kind_chunked(lc__run *r);
void lc__kind_cache(lc__run *r);
void lc__kind_isolation(lc__run *r);
void lc__kind_kernel(lc__run *r);
void lc__kind_batch(lc__run *r);             /* runner_state.c */
void lc__kind_snapshot(lc__run *r);
void lc__kind_image_checkpoint(lc__run *r);

#endif /* LC_RUNNER_INTERNAL_H */
