/* SPDX-License-Identifier: MIT */
/*
 * The wire format of the engine protocol (harness/PROTOCOL.md), shared by the client
 * (engine_proc.c) and the server (cli/cmd_serve.c): protocol version, dtype table, element
 * conversions, and the limits every declared size is checked against before anything is
 * allocated.
 */
#ifndef LC_PROTO_WIRE_H
#define LC_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define LC_PROTO_VERSION 1

/* Limits (PROTOCOL.md "Limits"): a header line, one payload, the elements of one tensor. */
#define LC_PROTO_MAX_LINE (1u << 24)            /* bytes of one JSON line, newline included */
#define LC_PROTO_MAX_PAYLOAD ((size_t)1 << 32)  /* bytes of one binary payload */
#define LC_PROTO_MAX_ELEMS ((size_t)1 << 29)    /* elements of one tensor */
#define LC_PROTO_MAX_DIMS 4
#define LC_PROTO_MAX_TOKENS (1 << 24)           /* expanded prompt length */

/* dtype name, element size, float or integer */
#define LC_DTYPE_MAP(X)  \
    X(F64, "f64", 8, 1)  \
    X(F32, "f32", 4, 1)  \
    X(BF16, "bf16", 2, 1) \
    X(F16, "f16", 2, 1)  \
    X(I32, "i32", 4, 0)  \
    X(I64, "i64", 8, 0)

typedef enum {
    LC_DT_NONE = -1,
#define LC__DT_ENUM(id, name, size, isf) LC_DT_##id,
    LC_DTYPE_MAP(LC__DT_ENUM)
#undef LC__DT_ENUM
    LC_DT_COUNT
} lc_dtype;

static inline const char *lc__dtype_name(lc_dtype d)
{
    static const char *const names[] = {
#define LC__DT_NAME(id, name, size, isf) name,
        LC_DTYPE_MAP(LC__DT_NAME)
#undef LC__DT_NAME
    };
    return d >= 0 && d < LC_DT_COUNT ? names[d] : "unknown";
}

static inline size_t lc__dtype_size(lc_dtype d)
{
    static const size_t sizes[] = {
#define LC__DT_SIZE(id, name, size, isf) size,
        LC_DTYPE_MAP(LC__DT_SIZE)
#undef LC__DT_SIZE
    };
    return d >= 0 && d < LC_DT_COUNT ? sizes[d] : 0;
}

static inline int lc__dtype_is_float(lc_dtype d)
{
    static const int f[] = {
#define LC__DT_ISF(id, name, size, isf) isf,
        LC_DTYPE_MAP(LC__DT_ISF)
#undef LC__DT_ISF
    };
    return d >= 0 && d < LC_DT_COUNT ? f[d] : 0;
}

lc_dtype lc__dtype_from_name(const char *s);

/* Element i of a little-endian buffer of dtype d, as a double (exact for every float dtype;
 * integers beyond 2^53 are not representable and never valid in this protocol). */
double lc__wire_get_f(const unsigned char *p, lc_dtype d);
int64_t lc__wire_get_i(const unsigned char *p, lc_dtype d);

/* Writes v as dtype F64 or F32 (little-endian) to p. */
void lc__wire_put_f64(unsigned char *p, double v);
void lc__wire_put_f32(unsigned char *p, float v);

#endif /* LC_PROTO_WIRE_H */
