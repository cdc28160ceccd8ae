/* SPDX-License-Identifier: MIT */
/*
 * The case runner: drives an engine (engines/lc_engine.h) through one case and records every
 * comparison (engine vs transformers golden, engine path A vs path B) as result records.
 *
 * The runner speaks to the engine only through lc_engine: it never includes an engine's
 * headers and never writes engine state. Every case starts from fresh engine state
 * (lc_engine_reset) with its checkpoint loaded.
 *
 * Verdicts: a numeric mismatch is never an error, it is a failed check (FAIL). Bad input (a
 * missing image, a missing or mis-shaped golden dataset, a prompt the model rejects) is ERROR
 * with a one-line reason naming the file and the problem. An engine that misbehaves
 * (LC_EENGINE) is ERROR with the engine's one-line reason; the runner restarts the engine so
 * the next case finds a working one. A case that needs a capability the engine lacks is SKIP
 * with the reason "engine lacks <capability>": counted and shown, never a pass.
 */
#ifndef LC_RUNNER_H
#define LC_RUNNER_H

#include <stddef.h>

#include "cases.h"
#include "h5io.h"
#include "lc_engine.h"
#include "results.h"

/* A hook that may alter golden arrays in memory after they are read and before they are
 * compared (sensitivity tests plant errors this way). dataset is the name inside the case's
 * group ("prefill_logits", "position_ids", ...); data has count doubles. */
typedef void (*lc_golden_hook)(void *ctx, const char *case_name, const char *dataset, double *data, size_t count);

/* Differential mode (the fields after hook_ctx; all zero: the goldens). With an oracle, every
 * array a case would read from its golden is the oracle's output for the same inputs instead
 * (decode tokens chosen greedily by the oracle, as transformers chose them for the goldens);
 * every comparison of the engine with itself runs as before. Bounds of the golden class are
 * those of the pair (lc_pair_bounds: the engine's precision against oracle_prec); the case's
 * own bounds apply only where they were measured: its own checkpoint against a float64 oracle.
 * With a model, every case runs on that checkpoint, instantiated for it (instantiate.c) and
 * bounded by the table's class bounds. */
typedef struct {
    const char *root;           /* repository root: case paths are relative to it */
    lc_golden_hook golden_hook; /* NULL = none */
    void *hook_ctx;
    lc_engine *oracle;          /* the engine whose outputs replace the goldens; NULL: goldens */
    lc_precision oracle_prec;   /* with oracle or golden_file: the oracle's precision */
    const char *oracle_name;    /* "expected" side of the reports ("logitcheck-reference f64") */
    const char *golden_file;    /* an oracle cache: every case's golden is read from this file */
    lc_h5 *cache_out;           /* open writer: the oracle's outputs go in as a golden (caller commits) */
    const char *model;          /* the checkpoint every case runs on; NULL: each case's own */
} lc_run_opts;

/* Runs one case on engine e and fills *res (res->cmps owned by res; see results.h).
 * Returns the verdict. */
lc_verdict lc_run_case(const lc_case *c, const lc_run_opts *o, lc_engine *e, lc_case_result *res);

/* The capabilities case c needs from an engine (bit set of lc_cap): a case whose engine lacks
 * one is a SKIP. Optional taps (hidden states, vision embeddings, states, positions) are not
 * in it: without them those comparisons are left out. */
unsigned lc_case_required_caps(const lc_case *c);

#endif /* LC_RUNNER_H */
