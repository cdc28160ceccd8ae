/* SPDX-License-Identifier: MIT */
/*
 * Compute precisions: what an engine declares it computes in (lc_engine_info.precision) and
 * what case bounds and default bounds are keyed by. One table, used by the engines, the
 * catalog and the bounds.
 */
#ifndef LC_PRECISION_H
#define LC_PRECISION_H

/* id, name in case files and reports */
#define LC_PRECISION_MAP(X) \
    X(F64, "f64")           \
    X(F32, "f32")           \
    X(BF16, "bf16")         \
    X(F16, "f16")

typedef enum {
    LC_PREC_UNKNOWN = -1,
#define LC__PREC_ENUM(id, name) LC_PREC_##id,
    LC_PRECISION_MAP(LC__PREC_ENUM)
#undef LC__PREC_ENUM
    LC_PREC_COUNT
} lc_precision;

/* "f32"...; "unknown" out of range. Never NULL. */
const char *lc_precision_name(lc_precision p);
/* Exact lookup; LC_PREC_UNKNOWN when not a name (or NULL). */
lc_precision lc_precision_from_name(const char *s);

#endif /* LC_PRECISION_H */
