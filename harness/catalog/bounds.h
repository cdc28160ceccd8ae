/* SPDX-License-Identifier: MIT */
/*
 * Default bounds: one table keyed by (comparison class, engine compute precision), each row
 * with the measured floor it was derived from (bounds.c; cases/README.md shows the same
 * table). A case's own bounds for a precision override the golden and cross defaults; same
 * schedule comparisons are bitwise and exact ones max_abs 0 whatever a case says.
 */
#ifndef LC_BOUNDS_H
#define LC_BOUNDS_H

#include "cases.h"
#include "lc_precision.h"

/* id, name in results and reports, what the class compares */
#define LC_CMP_CLASS_MAP(X)                                                         \
    X(GOLDEN, "golden", "the engine against transformers (float64 goldens)")       \
    X(CROSS, "cross", "the engine against itself on another schedule")              \
    X(SAME, "same", "the engine against itself on the same schedule: bitwise")      \
    X(EXACT, "exact", "integers (ids, positions, lengths): exactly")

typedef enum {
    LC_CLASS_UNKNOWN = -1,
#define LC__CLASS_ENUM(id, name, text) LC_CLASS_##id,
    LC_CMP_CLASS_MAP(LC__CLASS_ENUM)
#undef LC__CLASS_ENUM
    LC_CLASS_COUNT
} lc_cmp_class;

const char *lc_cmp_class_name(lc_cmp_class c);     /* "golden"...; "unknown" out of range */
const char *lc_cmp_class_text(lc_cmp_class c);
lc_cmp_class lc_cmp_class_from_name(const char *s);

/* The default bounds of (class, precision), never NULL (static; lc_bounds as cases.h has
 * them). `tensor` selects the bounds of flat tensors (states, hidden states, embeddings)
 * instead of logits rows. */
const lc_bounds *lc_default_bounds(lc_cmp_class c, lc_precision p, int tensor);

/* The measured floor a row comes from, one line; "" when none. */
const char *lc_default_bounds_floor(lc_cmp_class c, lc_precision p);

/* Differential mode: the bounds of an engine of precision a graded against an oracle engine of
 * precision b (class golden with an oracle in place of the golden), never NULL (static). An
 * oracle finer than the engine gives the engine's own golden row (the oracle's rounding is
 * orders under it); a coarser oracle gives the oracle's row; equal precisions give the row
 * widened by the triangle inequality (each engine within its golden bound of transformers):
 * twice for max_abs, max_rel, max_abs_scaled and top1_margin, four times for nmse and KL
 * (squared norms). Lower bounds (top-1 agreement, cosine, overlap) stay as they are. */
const lc_bounds *lc_pair_bounds(lc_precision a, lc_precision b, int tensor);
/* Where lc_pair_bounds(a, b) comes from, one line. */
const char *lc_pair_bounds_floor(lc_precision a, lc_precision b);

/* The same on a checkpoint other than the case's own (`run --model`): rows of scale-free
 * metrics (max_abs_scaled, nmse, KL, top-1 agreement above a margin), since a bound in logits
 * measured on the tiny checkpoints does not carry over to a checkpoint whose logits are ten
 * times larger (the float engine's max_abs against float64 grows from 3e-5 to 5.5e-4 between
 * the small and the 0.8B synth checkpoints while max_abs_scaled stays under 1e-5; the tiny
 * synth checkpoint, hidden 64, is the worst: 9e-5). */
const lc_bounds *lc_pair_bounds_any(lc_precision a, lc_precision b, int tensor);
const char *lc_pair_bounds_any_floor(lc_precision a, lc_precision b);

#endif /* LC_BOUNDS_H */
