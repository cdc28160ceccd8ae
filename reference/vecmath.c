/* SPDX-License-Identifier: MIT */
/*
 * Vectorised float transcendentals (vecmath.h).
 *
 * exp(x): n = round(x log2 e), r = x - n ln 2 (ln 2 split in 355/512, whose product with n is
 * exact, and a correction), exp(r) by its Taylor polynomial of degree 7 on |r| <= ln 2 / 2
 * (Horner form; the first term left out is below 6e-9 relative), times 2^n built in the
 * exponent bits as two factors so that n = 128 stays finite. Outside [-87.33, 88.72] the
 * limits are substituted by selects.
 *
 * Every function is a loop over blocks of 32 values held as four vectors of 8 (GCC/Clang
 * vector types), whose body is one element's arithmetic without branches (selects on the
 * bits), written one operation at a time across the four vectors so that their long
 * dependency chains interleave; a block whose exponential arguments all lie inside the range
 * skips the clamps (they change nothing there). The last partial block runs through the same
 * code on a padded copy. Every lane runs the same IEEE operations in the same order (ISO C: no
 * contraction into FMA), so a value's result depends on that value alone: the same on any
 * thread count, wherever an array is cut, and in whichever instruction set version the loader
 * picked. Sums (the softmax numerators) are kept in 16 lanes, value i in lane i % 16, added
 * in order.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vecmath.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* One version per instruction set where the toolchain makes GNU ifuncs; else the baseline. */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define QREF__CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef QREF__CLONES
#define QREF__CLONES
#endif

#define EXP_HI QREF__EXPF_HI   /* above: +inf */
#define EXP_LO QREF__EXPF_LO   /* below: 0 (the result would be subnormal) */

/* Four vectors of 8 floats at a time (GCC/Clang vector types), one operation at a time across
 * the four, so that the instructions of the four independent chains interleave. */
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef double vd4 __attribute__((vector_size(32)));
#define NV 4
#define LANES (8 * NV)
#define EACH _Pragma("GCC unroll 4") for (int k = 0; k < NV; k++)
#define SEL(m, a, b) ((vf8)(((vi8)(a) & (m)) | ((vi8)(b) & ~(m))))
#define SPLAT(c) ((vf8){c, c, c, c, c, c, c, c})

/* q[k] = exp of each lane of v[k], k < NV, for lanes in [EXP_LO, EXP_HI] (where the clamps
 * and selects of EXP_LANES change nothing). */
#define EXP_CORE(q_, v_)                                                              \
    do {                                                                              \
        const vf8 sh_ = SPLAT(QREF__EXPF_SHIFT);                                      \
        vf8 n_[NV], r_[NV];                                                           \
        EACH n_[k] = (v_[k] * SPLAT(QREF__EXPF_LOG2E) + sh_) - sh_;                   \
        EACH r_[k] = v_[k] - n_[k] * SPLAT(QREF__EXPF_LN2_HI);                        \
        EACH r_[k] = r_[k] - n_[k] * SPLAT(QREF__EXPF_LN2_LO);                        \
        EACH q_[k] = SPLAT(1.0f / 5040) * r_[k] + SPLAT(1.0f / 720);                  \
        EACH q_[k] = q_[k] * r_[k] + SPLAT(1.0f / 120);                               \
        EACH q_[k] = q_[k] * r_[k] + SPLAT(1.0f / 24);                                \
        EACH q_[k] = q_[k] * r_[k] + SPLAT(1.0f / 6);                                 \
        EACH q_[k] = q_[k] * r_[k] + SPLAT(0.5f);                                     \
        EACH q_[k] = q_[k] * (r_[k] * r_[k]) + r_[k] + SPLAT(1.0f);                   \
        EACH {                                                                        \
            const vi8 ni_ = __builtin_convertvector(n_[k], vi8), n1_ = ni_ >> 1;      \
            const vi8 b1_ = (n1_ + 127) << 23, b2_ = (ni_ - n1_ + 127) << 23;         \
            (q_)[k] = (q_)[k] * (vf8)b1_ * (vf8)b2_;                                  \
        }                                                                             \
    } while (0)

/* e[k] = exp of each lane of a[k], k < NV, whatever the values: clamped so that n stays in
 * [-126, 128] (2^n built as two factors keeps n = 128 finite), then the limits (+inf above
 * EXP_HI, 0 below EXP_LO) and NaN substituted by selects; e may be a. */
#define EXP_LANES(e, a)                                                               \
    do {                                                                              \
        const vf8 hi_ = SPLAT(EXP_HI), lo_ = SPLAT(EXP_LO), zero_ = SPLAT(0.0f);      \
        vf8 v_[NV], q_[NV];                                                           \
        EACH {                                                                        \
            v_[k] = SEL((a)[k] > hi_, hi_, (a)[k]);                                   \
            v_[k] = SEL(v_[k] < lo_, lo_, v_[k]);                                     \
            v_[k] = SEL((a)[k] != (a)[k], zero_, v_[k]);                              \
        }                                                                             \
        EXP_CORE(q_, v_);                                                             \
        EACH {                                                                        \
            vf8 t_ = SEL((a)[k] > hi_, SPLAT(INFINITY), q_[k]);                       \
            t_ = SEL((a)[k] < lo_, zero_, t_);                                        \
            (e)[k] = SEL((a)[k] != (a)[k], (a)[k], t_);                               \
        }                                                                             \
    } while (0)

/* Whether every lane of a[k], k < NV, lies in [EXP_LO, EXP_HI] (no NaN). */
static inline __attribute__((always_inline)) int in_range(const vf8 *a)
{
    const vf8 hi = SPLAT(EXP_HI), lo = SPLAT(EXP_LO);
    vi8 ok = (a[0] >= lo) & (a[0] <= hi);
    for (int k = 1; k < NV; k++)
        ok &= (a[k] >= lo) & (a[k] <= hi);
    int32_t l[8];
    memcpy(l, &ok, sizeof l);
    return (l[0] & l[1] & l[2] & l[3] & l[4] & l[5] & l[6] & l[7]) != 0;
}

/* y[i] = F(x[i], z[i]) over blocks of LANES values as vectors, where ARG(a, c) is the
 * exponential's argument and FIN(a, e, c) the result from it (the same operations as F, in
 * vector lanes); the last partial block runs through the same vector code on a copy padded
 * with zeros. y may be x. */
#define OVER_BLOCK(yp, xp, zp, ARG, FIN)                                             \
    do {                                                                             \
        vf8 a_[NV], c_[NV] = {0}, e_[NV];                                            \
        EACH {                                                                       \
            memcpy(&a_[k], (xp) + 8 * k, sizeof a_[k]);                              \
            if (zp)                                                                  \
                memcpy(&c_[k], (zp) + 8 * k, sizeof c_[k]);                          \
            e_[k] = ARG(a_[k], c_[k]);                                               \
        }                                                                            \
        if (in_range(e_))                                                            \
            EXP_CORE(e_, e_);                                                        \
        else                                                                         \
            EXP_LANES(e_, e_);                                                       \
        EACH {                                                                       \
            e_[k] = FIN(a_[k], e_[k], c_[k]);                                        \
            memcpy((yp) + 8 * k, &e_[k], sizeof e_[k]);                              \
        }                                                                            \
    } while (0)

#define OVER(y, x, z, n, ARG, FIN)                                                   \
    do {                                                                             \
        size_t b_ = 0;                                                               \
        for (; b_ + LANES <= (n); b_ += LANES)                                       \
            OVER_BLOCK((y) + b_, (x) + b_, (z) ? (z) + b_ : NULL, ARG, FIN);         \
        if (b_ < (n)) {                                                              \
            float xt_[LANES] = {0}, zt_[LANES] = {0}, yt_[LANES];                    \
            memcpy(xt_, (x) + b_, ((n) - b_) * sizeof xt_[0]);                       \
            if (z)                                                                   \
                memcpy(zt_, (z) + b_, ((n) - b_) * sizeof zt_[0]);                   \
            const float *zq_ = zt_;                 /* zeros when z is NULL */       \
            OVER_BLOCK(yt_, xt_, zq_, ARG, FIN);                                     \
            memcpy((y) + b_, yt_, ((n) - b_) * sizeof yt_[0]);                       \
        }                                                                            \
    } while (0)

/* The functions: the exponential's argument, and the result from it.
 *   silu(x) = x / (1 + exp(-x)), gate(x, g) = x / (1 + exp(-g)),
 *   gelu_tanh(x) = 0.5 x (1 + tanh u) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
#define A_EXP(a, c) (a)
#define R_EXP(a, e, c) (e)
#define A_NEG(a, c) (-(a))
#define R_SILU(a, e, c) ((a) / (SPLAT(1.0f) + (e)))
#define R_SILU_MUL(a, e, c) (((a) / (SPLAT(1.0f) + (e))) * (c))
#define A_GATE(a, c) (-(c))
#define A_GELU(a, c) (SPLAT(-2.0f) * (SPLAT(0.7978845608f) * ((a) + SPLAT(0.044715f) * (a) * (a) * (a))))

QREF__CLONES void qref__vexpf(float *y, const float *x, size_t n)
{
    const float *none = NULL;
    OVER(y, x, none, n, A_EXP, R_EXP);
}

/* One block of LANES softmax numerators into y, their lanes added to acc (value l of the block
 * into lane l % 16). */
static inline __attribute__((always_inline)) void softmax_block(float *y, const float *x, float m, float scale,
                                                                vd4 *acc)
{
    const vf8 mv = SPLAT(m), sv = SPLAT(scale), zero = SPLAT(0.0f);
    vf8 a[NV], e[NV];
    EACH {
        memcpy(&a[k], x + 8 * k, sizeof a[k]);
        a[k] = (a[k] - mv) * sv;
    }
    if (in_range(a))
        EXP_CORE(e, a);
    else
        EXP_LANES(e, a);
    EACH {
        e[k] = SEL(e[k] != e[k], zero, e[k]);               /* -inf - -inf: a row of no scores */
        memcpy(y + 8 * k, &e[k], sizeof e[k]);
        vf4 lo4, hi4;
        memcpy(&lo4, &e[k], sizeof lo4);
        memcpy(&hi4, (const float *)&e[k] + 4, sizeof hi4);
        acc[(2 * k) % 4] += __builtin_convertvector(lo4, vd4);
        acc[(2 * k + 1) % 4] += __builtin_convertvector(hi4, vd4);
    }
}

QREF__CLONES double qref__vsoftmax_expf(float *y, const float *x, size_t n, float m, float scale)
{
    vd4 acc[4] = {0};                   /* lane i % 16 of the sum */
    size_t b = 0;
    for (; b + LANES <= n; b += LANES)
        softmax_block(y + b, x + b, m, scale, acc);
    if (b < n) {                        /* padded with -inf, whose numerators are 0 */
        float xt[LANES], yt[LANES];
        for (int l = 0; l < LANES; l++)
            xt[l] = b + l < n ? x[b + l] : -INFINITY;
        softmax_block(yt, xt, m, scale, acc);
        memcpy(y + b, yt, (n - b) * sizeof *y);
    }
    double lanes[16], s = 0;
    memcpy(lanes, acc, sizeof lanes);
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    return s;
}

QREF__CLONES void qref__vsiluf(float *y, const float *x, const float *mul, size_t n)
{
    if (mul)
        OVER(y, x, mul, n, A_NEG, R_SILU_MUL);
    else
        OVER(y, x, mul, n, A_NEG, R_SILU);
}

QREF__CLONES void qref__vgatef(float *y, const float *x, const float *g, size_t n)
{
    OVER(y, x, g, n, A_GATE, R_SILU);
}

QREF__CLONES void qref__vgelu_tanhf(float *y, const float *x, size_t n)
{
    const float *none = NULL;
    OVER(y, x, none, n, A_GELU, R_SILU);
}

/* ---------------------------------------------------------------- double softmax numerators
 *
 * exp(t) for t <= 0: n = round(t log2 e), r = t - n ln 2 (ln 2 in the two parts of fdlibm,
 * the first with 32 significant bits so that n times it is exact), exp(r) by its Taylor
 * polynomial of degree 13 on |r| <= ln 2 / 2 (the first term left out is below 5e-18
 * relative), times 2^n built in the exponent bits. Below -708.39 (where exp(t) would be
 * subnormal) the result is 0. */

typedef int64_t vl4 __attribute__((vector_size(32)));
#define DSPLAT(c) ((vd4){c, c, c, c})
#define DSEL(m, a, b) ((vd4)(((vl4)(a) & (m)) | ((vl4)(b) & ~(m))))
#define DEXP_LO -708.3964185322641
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define DSHIFT 6755399441055744.0   /* 1.5 * 2^52: rounds to an integer, kept in the low bits */

static inline __attribute__((always_inline)) double dexp1(double t)
{
    double v = t > 0 ? 0 : t;
    v = v < DEXP_LO ? DEXP_LO : v;
    v = t != t ? 0 : v;
    const double k = v * 1.4426950408889634 + DSHIFT;
    const double n = k - DSHIFT;
    double r = v - n * LN2_HI;
    r = r - n * LN2_LO;
    double q = 1.0 / 6227020800.0;
    q = q * r + 1.0 / 479001600.0;
    q = q * r + 1.0 / 39916800.0;
    q = q * r + 1.0 / 3628800.0;
    q = q * r + 1.0 / 362880.0;
    q = q * r + 1.0 / 40320.0;
    q = q * r + 1.0 / 5040.0;
    q = q * r + 1.0 / 720.0;
    q = q * r + 1.0 / 120.0;
    q = q * r + 1.0 / 24.0;
    q = q * r + 1.0 / 6.0;
    q = q * r + 0.5;
    double p = q * (r * r) + r + 1.0;
    int64_t kb, sb;
    memcpy(&kb, &k, sizeof kb);
    const double sh = DSHIFT;
    memcpy(&sb, &sh, sizeof sb);
    const uint64_t eb = (uint64_t)(kb - sb + 1023) << 52;     /* 2^n */
    double e;
    memcpy(&e, &eb, sizeof e);
    p = p * e;
    p = t < DEXP_LO ? 0 : p;
    return t != t ? t : p;
}

QREF__CLONES double qref__vsoftmax_exp(double *y, const double *x, size_t n, double ms, double scale)
{
    vd4 acc[4] = {0};                   /* lane i % 16 of the sum, as in the scalar tail */
    const vd4 mv = DSPLAT(ms), sv = DSPLAT(scale), zero = DSPLAT(0.0), lo = DSPLAT(DEXP_LO);
    const vd4 sh = DSPLAT(DSHIFT);
    size_t b = 0;
    for (; b + 16 <= n; b += 16) {
        vd4 t[NV], v[NV], nn[NV], r[NV], q[NV];
        EACH {
            memcpy(&t[k], x + b + 4 * k, sizeof t[k]);
            t[k] = t[k] * sv - mv;
            v[k] = DSEL(t[k] > zero, zero, t[k]);
            v[k] = DSEL(v[k] < lo, lo, v[k]);
            v[k] = DSEL(t[k] != t[k], zero, v[k]);
        }
        EACH q[k] = v[k] * DSPLAT(1.4426950408889634) + sh;     /* k of dexp1 */
        EACH nn[k] = q[k] - sh;
        EACH r[k] = v[k] - nn[k] * DSPLAT(LN2_HI);
        EACH r[k] = r[k] - nn[k] * DSPLAT(LN2_LO);
        EACH v[k] = (vd4)(((vl4)q[k] - (vl4)sh + 1023) << 52);   /* 2^n */
        EACH q[k] = DSPLAT(1.0 / 6227020800.0) * r[k] + DSPLAT(1.0 / 479001600.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 39916800.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 3628800.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 362880.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 40320.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 5040.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 720.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 120.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 24.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(1.0 / 6.0);
        EACH q[k] = q[k] * r[k] + DSPLAT(0.5);
        EACH q[k] = q[k] * (r[k] * r[k]) + r[k] + DSPLAT(1.0);
        EACH {
            q[k] = q[k] * v[k];
            q[k] = DSEL(t[k] < lo, zero, q[k]);
            q[k] = DSEL(t[k] != t[k], t[k], q[k]);
            q[k] = DSEL(q[k] != q[k], zero, q[k]);             /* -inf - -inf: no scores */
            memcpy(y + b + 4 * k, &q[k], sizeof q[k]);
            acc[k] += q[k];
        }
    }
    double lanes[16];
    memcpy(lanes, acc, sizeof lanes);
    for (int l = 0; b + l < n; l++) {
        const double e = dexp1(x[b + l] * scale - ms);
        y[b + l] = e != e ? 0 : e;
        lanes[l] += y[b + l];
    }
    double s = 0;
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    return s;
}
