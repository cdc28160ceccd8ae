/* SPDX-License-Identifier: MIT */
/*
 * Register-tile kernels of the float build's attention (attention.c walks long key runs with
 * them): the scores of a tile of query rows against a packed key block, and the update of
 * those rows' outputs by their probabilities times a packed value block. Neither packs its
 * query or probability operand (the rows are read where they lie) and neither writes anything
 * but the tile, so a walk over keys costs the two products and the softmax between them.
 *
 * One version per instruction set, chosen once at run time: AVX-512F (16 floats per vector,
 * tiles of 12 rows) and AVX2 with FMA (8 floats, tiles of 4 rows); qref__tiles() is NULL on a
 * CPU with neither (attention.c then takes its BLAS walk) and in builds other than x86-64
 * float ones. Every output element is one fused multiply-add chain in a fixed order (scores:
 * over the head dims in order; outputs: over the block's keys in order, then added to the
 * rescaled output so far), so it depends on the shapes alone: not on where a tile starts, how
 * many rows it holds, or how many threads run.
 *
 * Layouts: a packed block of kb keys is panels of P = 2 vectors of keys: panel p holds, for
 * each head dim d, keys [p P, p P + P) (zeros past kb), so kt (ceil(kb / P), D, P). A packed
 * value block is panels of P head dims: panel c holds, for each key j < kb, dims [c P, c P + P),
 * so vt (D / P, kb, P); D is a multiple of P. The update may read the first keys of a block
 * packed with more.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"
#include "vecmath.h"

#if !defined(QREF_PRECISION_F64) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* Packs keys k (kb rows of stride ldk, D dims) into kt as above; P floats per panel row. */
static void pack_keys(float *kt, const float *k, int ldk, int kb, int D, int P)
{
    for (int p = 0; p * P < kb; p++) {
        float *dst = kt + (size_t)p * D * P;
        const int nk = kb - p * P < P ? kb - p * P : P;
        for (int jj = 0; jj < nk; jj++) {                  /* key rows read in order */
            const float *row = k + (size_t)(p * P + jj) * ldk;
            for (int d = 0; d < D; d++)
                dst[(size_t)d * P + jj] = row[d];
        }
        for (int jj = nk; jj < P; jj++)
            for (int d = 0; d < D; d++)
                dst[(size_t)d * P + jj] = 0;
    }
}

static void pack_values(float *vt, const float *v, int ldv, int kb, int D, int P)
{
    for (int c = 0; c < D / P; c++)
        for (int j = 0; j < kb; j++)
            memcpy(vt + ((size_t)c * kb + j) * P, v + (size_t)j * ldv + (size_t)c * P, (size_t)P * sizeof *vt);
}

/* The two kernels of one instruction set. VT: vector type of W floats; R rows per tile.
 *   scores: S (R, ldS) [r][j] = q[r] . key j for j < ceil(kb / P) P; rows >= rows repeat row 0
 *           (their S rows are written and ignored); mx[r] = the largest of S[r][0..kb) for
 *           r < rows (NaNs passed over, -inf when there is none), taken from the accumulators
 *           of whole panels and from S for the keys of a partial last panel. A maximum is exact,
 *           so it is the one a pass over S finds (up to the sign of a zero maximum, which no
 *           numerator or factor of the walk can tell apart).
 *   update: o[r][0..D) = o[r] * alpha[r] + sum_{j < kb} p[r][j] vt[j] for r < rows, the value
 *           block packed for ldv >= kb keys (its panels ldv P floats apart). */
#define TILE_KERNELS(SFX, TARGET, VT, W, R, LOAD, STORE, SET1, FMA, MUL, ADD, ZERO, MAX)                 \
    TARGET static void scores_##SFX(float *S, int ldS, const float *q, int ldq, int rows, const float *kt, \
                                    int kb, int D, float *mx)                                          \
    {                                                                                                  \
        enum { P = 2 * W };                                                                            \
        const float *qr[R];                                                                            \
        float rm[R][W] __attribute__((aligned(64)));   /* running maxima of whole panels, by lane */  \
        for (int r = 0; r < R; r++) {                                                                  \
            qr[r] = q + (size_t)(r < rows ? r : 0) * ldq;                                              \
            STORE(rm[r], SET1(-INFINITY));                                                             \
        }                                                                                              \
        for (int p = 0; p * P < kb; p++) {                                                             \
            const float *kp = kt + (size_t)p * D * P;                                                  \
            VT a0[R], a1[R];                                                                           \
            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) a0[r] = ZERO(), a1[r] = ZERO();        \
            for (int d = 0; d < D; d++, kp += P) {                                                     \
                const VT k0 = LOAD(kp), k1 = LOAD(kp + W);                                             \
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                  \
                    const VT qv = SET1(qr[r][d]);                                                      \
                    a0[r] = FMA(qv, k0, a0[r]);                                                        \
                    a1[r] = FMA(qv, k1, a1[r]);                                                        \
                }                                                                                      \
            }                                                                                          \
            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                      \
                STORE(S + (size_t)r * ldS + p * P, a0[r]);                                             \
                STORE(S + (size_t)r * ldS + p * P + W, a1[r]);                                         \
            }                                                                                          \
            if ((p + 1) * P <= kb)                     /* max(x, m) is m where x is NaN */             \
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                   \
                    STORE(rm[r], MAX(a0[r], MAX(a1[r], LOAD(rm[r]))));                                 \
        }                                                                                              \
        for (int r = 0; r < rows; r++) {                                                               \
            float m = -INFINITY;                                                                       \
            for (int l = 0; l < W; l++)                                                                \
                m = rm[r][l] > m ? rm[r][l] : m;                                                       \
            for (int j = kb / P * P; j < kb; j++)                                                      \
                m = S[(size_t)r * ldS + j] > m ? S[(size_t)r * ldS + j] : m;                           \
            mx[r] = m;                                                                                 \
        }                                                                                              \
    }                                                                                                  \
    TARGET static void update_##SFX(float *o, int ldo, const float *pr, int ldp, int rows, const float *vt, \
                                    int kb, int ldv, int D, const float *alpha)                        \
    {                                                                                                  \
        enum { P = 2 * W };                                                                            \
        const float *prow[R];                                                                          \
        for (int r = 0; r < R; r++)                                                                    \
            prow[r] = pr + (size_t)(r < rows ? r : 0) * ldp;                                           \
        for (int c = 0; c < D / P; c++) {                                                              \
            const float *vp = vt + (size_t)c * ldv * P;                                                \
            VT a0[R], a1[R];                                                                           \
            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) a0[r] = ZERO(), a1[r] = ZERO();        \
            for (int j = 0; j < kb; j++, vp += P) {                                                    \
                const VT v0 = LOAD(vp), v1 = LOAD(vp + W);                                             \
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                  \
                    const VT pj = SET1(prow[r][j]);                                                    \
                    a0[r] = FMA(pj, v0, a0[r]);                                                        \
                    a1[r] = FMA(pj, v1, a1[r]);                                                        \
                }                                                                                      \
            }                                                                                          \
            for (int r = 0; r < rows; r++) {                                                           \
                float *orow = o + (size_t)r * ldo + c * P;                                             \
                const VT al = SET1(alpha[r]);                                                          \
                STORE(orow, ADD(MUL(LOAD(orow), al), a0[r]));                                          \
                STORE(orow + W, ADD(MUL(LOAD(orow + W), al), a1[r]));                                  \
            }                                                                                          \
        }                                                                                              \
    }

/* ---------------------------------------------------------------- softmax numerators
 *
 * y[i] = exp((x[i] - m) * scale) for a row of scores x[i] <= m, and their sum in double: the
 * walk's numerators on the tile path, on 8-float vectors (AVX2 with FMA) and 16-float ones
 * (AVX-512F), each lane's operations the same on both. The exponential is the one of vecmath.c
 * (its constants from vecmath.h) with fused multiply-adds: n = round(a log2 e), r = a - n ln 2
 * in two parts, the same degree-7 Taylor polynomial of exp(r) by Horner, times 2^n built in
 * the exponent bits.
 * Within 1 ulp of exp in double (test_kernels); 0 below -87.3365 (where it would be subnormal),
 * for -inf and for NaN (as the BLAS walk's numerators). Value l of the row goes to lane l % 16
 * of the sum, the lanes added in order at the end. */

/* exp of v, clamped to [EXPF_LO, 88], on vectors of the prefix M (_mm256, _mm512) of B bits,
 * into out (before the mask of kept lanes, which each width applies its own way). n in [-126,
 * 127]: its low bits in t (1.5 2^23 + n), shifted into the exponent field, plus 127. */
#define EXP_FMA_BODY(M, B, VT, v, out)                                                                   \
    do {                                                                                                 \
        const VT sh_ = M##_set1_ps(QREF__EXPF_SHIFT);                                                    \
        const VT t_ = M##_fmadd_ps(v, M##_set1_ps(QREF__EXPF_LOG2E), sh_);                               \
        const VT n_ = M##_sub_ps(t_, sh_);                                                               \
        VT r_ = M##_fnmadd_ps(n_, M##_set1_ps(QREF__EXPF_LN2_HI), v);                                    \
        r_ = M##_fnmadd_ps(n_, M##_set1_ps(QREF__EXPF_LN2_LO), r_);                                      \
        VT q_ = M##_fmadd_ps(M##_set1_ps(1.0f / 5040), r_, M##_set1_ps(1.0f / 720));                     \
        q_ = M##_fmadd_ps(q_, r_, M##_set1_ps(1.0f / 120));                                              \
        q_ = M##_fmadd_ps(q_, r_, M##_set1_ps(1.0f / 24));                                               \
        q_ = M##_fmadd_ps(q_, r_, M##_set1_ps(1.0f / 6));                                                \
        q_ = M##_fmadd_ps(q_, r_, M##_set1_ps(0.5f));                                                    \
        q_ = M##_add_ps(M##_fmadd_ps(q_, M##_mul_ps(r_, r_), r_), M##_set1_ps(1.0f));                    \
        (out) = M##_mul_ps(q_, M##_castsi##B##_ps(M##_add_epi32(M##_slli_epi32(M##_castps_si##B(t_), 23), \
                                                                M##_set1_epi32(0x3f800000))));           \
    } while (0)

__attribute__((target("avx2,fma"))) static inline __m256 exp8_fma(__m256 a)
{
    const __m256 lo = _mm256_set1_ps(QREF__EXPF_LO);
    const __m256 keep = _mm256_cmp_ps(a, lo, _CMP_GE_OQ);            /* false for NaN */
    const __m256 v = _mm256_min_ps(_mm256_max_ps(a, lo), _mm256_set1_ps(88.0f));
    __m256 e;
    EXP_FMA_BODY(_mm256, 256, __m256, v, e);
    return _mm256_and_ps(e, keep);
}

__attribute__((target("avx2,fma"))) static double numerators_fma(float *y, const float *x, int n, float m,
                                                                  float scale)
{
    const __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(scale);
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (int b = 0; b < n; b += 16) {
        float xt[16], yt[16];
        const int whole = b + 16 <= n;
        const float *xb = x + b;
        if (!whole) {                                       /* padded with -inf: numerators 0 */
            for (int l = 0; l < 16; l++)
                xt[l] = b + l < n ? x[b + l] : -INFINITY;
            xb = xt;
        }
        const __m256 e0 = exp8_fma(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xb), mv), sv));
        const __m256 e1 = exp8_fma(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xb + 8), mv), sv));
        float *yb = whole ? y + b : yt;
        _mm256_storeu_ps(yb, e0);
        _mm256_storeu_ps(yb + 8, e1);
        if (!whole)
            memcpy(y + b, yt, (size_t)(n - b) * sizeof *y);
        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(e0)));
        acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1)));
        acc[2] = _mm256_add_pd(acc[2], _mm256_cvtps_pd(_mm256_castps256_ps128(e1)));
        acc[3] = _mm256_add_pd(acc[3], _mm256_cvtps_pd(_mm256_extractf128_ps(e1, 1)));
    }
    double lanes[16], s = 0;
    for (int k = 0; k < 4; k++)
        _mm256_storeu_pd(lanes + 4 * k, acc[k]);
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    return s;
}

/* The same numerators on 16-float vectors (AVX-512F): each lane's operations are those of
 * exp8_fma, the row's value l goes to lane l % 16 of the same double sum, so every numerator and
 * the sum have the bits of numerators_fma (test_kernels compares the two). */
__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 a)
{
    const __m512 lo = _mm512_set1_ps(QREF__EXPF_LO);
    const __mmask16 keep = _mm512_cmp_ps_mask(a, lo, _CMP_GE_OQ);     /* false for NaN */
    const __m512 v = _mm512_min_ps(_mm512_max_ps(a, lo), _mm512_set1_ps(88.0f));
    __m512 e;
    EXP_FMA_BODY(_mm512, 512, __m512, v, e);
    return _mm512_maskz_mov_ps(keep, e);
}

__attribute__((target("avx512f"))) static double numerators_avx512(float *y, const float *x, int n, float m,
                                                                   float scale)
{
    const __m512 mv = _mm512_set1_ps(m), sv = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (int b = 0; b < n; b += 16) {
        const __mmask16 k = n - b >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - b)) - 1);
        const __m512 e = exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, k, x + b), mv), sv));
        _mm512_mask_storeu_ps(y + b, k, e);
        acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double lanes[16], s = 0;
    _mm512_storeu_pd(lanes, acc0);
    _mm512_storeu_pd(lanes + 8, acc1);
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    return s;
}

#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
#define Z512() _mm512_setzero_ps()
#define Z256() _mm256_setzero_ps()
TILE_KERNELS(avx512, T512, __m512, 16, 12, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
             _mm512_mul_ps, _mm512_add_ps, Z512, _mm512_max_ps)
TILE_KERNELS(avx2, T256, __m256, 8, 4, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
             _mm256_mul_ps, _mm256_add_ps, Z256, _mm256_max_ps)

static const qref__tile_ops ops512 = {"avx512f", 12, 32, pack_keys, pack_values, scores_avx512, update_avx512,
                                      numerators_avx512};
static const qref__tile_ops ops256 = {"avx2", 4, 16, pack_keys, pack_values, scores_avx2, update_avx2,
                                      numerators_fma};

const qref__tile_ops *qref__tiles(void)
{
    const char *off = getenv("QREF_ATTENTION_TILES");
    if (off && strcmp(off, "0") == 0)
        return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return &ops512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &ops256;
    return NULL;
}

int qref__tile_sets(const qref__tile_ops **sets)
{
    int n = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        sets[n++] = &ops256;
    if (__builtin_cpu_supports("avx512f"))
        sets[n++] = &ops512;
    return n;
}

#else

const qref__tile_ops *qref__tiles(void) { return NULL; }
int qref__tile_sets(const qref__tile_ops **sets)
{
    (void)sets;
    return 0;
}

#endif
