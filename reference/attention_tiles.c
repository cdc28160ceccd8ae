/* SPDX-License-Identifier: MIT */
/*
 * Register-tile kernels of the float build's attention (attention.c walks long key runs with
 * them): the scores of a tile of query rows against a packed key block, and the update of
 * those rows' outputs by their probabilities times a packed value block. Neither packs its
 * query or probability operand (the rows are read where they lie) and neither writes anything
 * but the tile, so a walk over keys costs the two products and the softmax between them.
 *
 * One version per instruction set, chosen once at run time: AVX-512F (16 floats per vector,
 * tiles of 8 rows) and AVX2 with FMA (8 floats, tiles of 4 rows); qref__tiles() is NULL on a
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
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

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
 *           (their S rows are written and ignored).
 *   update: o[r][0..D) = o[r] * alpha[r] + sum_{j < kb} p[r][j] vt[j] for r < rows, the value
 *           block packed for ldv >= kb keys (its panels ldv P floats apart). */
#define TILE_KERNELS(SFX, TARGET, VT, W, R, LOAD, STORE, SET1, FMA, MUL, ADD, ZERO)                      \
    TARGET static void scores_##SFX(float *S, int ldS, const float *q, int ldq, int rows, const float *kt, \
                                    int kb, int D)                                                     \
    {                                                                                                  \
        enum { P = 2 * W };                                                                            \
        const float *qr[R];                                                                            \
        for (int r = 0; r < R; r++)                                                                    \
            qr[r] = q + (size_t)(r < rows ? r : 0) * ldq;                                              \
        for (int p = 0; p * P < kb; p++) {                                                             \
            const float *kp = kt + (size_t)p * D * P;                                                  \
            VT a0[R], a1[R];                                                                           \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) a0[r] = ZERO(), a1[r] = ZERO();        \
            for (int d = 0; d < D; d++, kp += P) {                                                     \
                const VT k0 = LOAD(kp), k1 = LOAD(kp + W);                                             \
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                  \
                    const VT qv = SET1(qr[r][d]);                                                      \
                    a0[r] = FMA(qv, k0, a0[r]);                                                        \
                    a1[r] = FMA(qv, k1, a1[r]);                                                        \
                }                                                                                      \
            }                                                                                          \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                      \
                STORE(S + (size_t)r * ldS + p * P, a0[r]);                                             \
                STORE(S + (size_t)r * ldS + p * P + W, a1[r]);                                         \
            }                                                                                          \
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
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) a0[r] = ZERO(), a1[r] = ZERO();        \
            for (int j = 0; j < kb; j++, vp += P) {                                                    \
                const VT v0 = LOAD(vp), v1 = LOAD(vp + W);                                             \
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                  \
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

#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
#define Z512() _mm512_setzero_ps()
#define Z256() _mm256_setzero_ps()
TILE_KERNELS(avx512, T512, __m512, 16, 8, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
             _mm512_mul_ps, _mm512_add_ps, Z512)
TILE_KERNELS(avx2, T256, __m256, 8, 4, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
             _mm256_mul_ps, _mm256_add_ps, Z256)

static const qref__tile_ops ops512 = {"avx512f", 8, 32, pack_keys, pack_values, scores_avx512, update_avx512};
static const qref__tile_ops ops256 = {"avx2", 4, 16, pack_keys, pack_values, scores_avx2, update_avx2};

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

#else

const qref__tile_ops *qref__tiles(void) { return NULL; }

#endif
