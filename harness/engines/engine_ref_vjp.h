/* SPDX-License-Identifier: MIT */
/*
 * The in-process reference engine's vjp operation (engine_ref_vjp.c), called by
 * engine_ref.c with its current model and its planted backward bugs. Internal to lc_engines.
 */
#ifndef LC_ENGINE_REF_VJP_H
#define LC_ENGINE_REF_VJP_H

#include "lc_engine.h"
#include "qref.h"
#include "qref_vjp_internal.h"

/* One backward pass of lc_engine.h's "gradients" contract over model m; f may be NULL (no
 * plant). Fills want[i].data (malloc'ed, the caller's) for every result the function gives;
 * on failure every want[i].data is NULL and err says why (LC_EINPUT: bad request). */
int lc__ref_vjp(const qref_model *m, const qref_vjp_faults *f, const lc_vjp_in *in, lc_vjp_result *want, int n_want,
                lc_error *err);

#endif /* LC_ENGINE_REF_VJP_H */
