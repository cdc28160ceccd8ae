/*
 * The case runner: drives the reference engine through one case and records every
 * comparison (engine vs transformers golden, engine path A vs path B) as result records.
 *
 * A numeric mismatch is never an error: it is a failed check inside a result. Bad input (a
 * missing image, a missing or mis-shaped golden dataset, a prompt the model rejects) makes
 * the case's verdict LC_VERDICT_ERROR with a one-line reason naming the file and the problem.
 */
#ifndef LC_RUNNER_H
#define LC_RUNNER_H

#include "cases.h"
#include "qref.h"
#include "qref_faults.h"
#include "results.h"

/* Loaded checkpoints, shared by the cases of one run (a model is read-only once loaded). */
typedef struct {
    char **dirs;
    qref_model *models;
    int n, cap;
} lc_model_pool;

void lc_model_pool_init(lc_model_pool *p);
void lc_model_pool_free(lc_model_pool *p);

/* A hook that may alter golden arrays in memory after they are read and before they are
 * compared (sensitivity tests plant errors this way). dataset is the name inside the case's
 * group ("prefill_logits", "position_ids", ...); data has count doubles. */
typedef void (*lc_golden_hook)(void *ctx, const char *case_name, const char *dataset, double *data, size_t count);

typedef struct {
    const char *root;           /* repository root: case paths are relative to it */
    const qref_faults *faults;  /* engine bugs to inject (NULL = none) */
    lc_golden_hook golden_hook; /* NULL = none */
    void *hook_ctx;
    double rms_eps_override;    /* > 0: run with this RMSNorm epsilon instead of the config's */
    /* planted bugs of the harness-side state handling, for sensitivity tests */
    int stale_rope_delta;       /* decode ignores the prompt's rope delta */
    int shallow_snapshot;       /* a snapshot is a view of the live cache, not a copy */
    int refeed_last_token;      /* an exact prefix-cache hit feeds the last prompt token again */
} lc_run_opts;

/* Runs one case and fills *res (res->cmps owned by res; see results.h). Returns the verdict. */
lc_verdict lc_run_case(const lc_case *c, const lc_run_opts *o, lc_model_pool *pool, lc_case_result *res);

/* The engine precision of this build as a case-bounds index. */
lc_precision lc_engine_precision(void);

#endif /* LC_RUNNER_H */
