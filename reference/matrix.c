/* SPDX-License-Identifier: MIT */
/*
 * BF16 weight matrices (qref_matrix with bf16 set): conversion of rows and blocks to
 * qref_real, and the matrix-vector product of decode, which reads the BF16 rows directly.
 *
 * A BF16 value is the top half of a float's bits, so its conversion to float or double is
 * exact: a block converted here and passed to BLAS gives bitwise the product of a converted
 * copy of the whole matrix.
 *
 * The matrix-vector product y[r] = sum_k w[r][k] x[k]: element k goes into lane k % 16 of
 * sixteen partial sums by a fused multiply-add (in qref_real: float lanes in the float build,
 * double in the double build), and the lanes are added in double in order 0..15 at the end.
 * Every version (AVX-512F, AVX2 with FMA, and the portable loop with fmaf()/fma()) makes these
 * same correctly rounded operations in the same order, so the result depends on the row alone:
 * not on the CPU, the rows around it, or the number of threads. In the float build it reads
 * half the bytes of the float BLAS product it replaces, which is what bounds decode.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QREF__X86 1
#endif

static inline double bf16_double(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void to_real_portable(qref_real *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)src[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        dst[i] = (qref_real)f;
    }
}

void qref__matrix_row(qref_real *dst, qref_matrix m, size_t row, int cols)
{
    if (m.real)
        memcpy(dst, m.real + row * (size_t)cols, (size_t)cols * sizeof *dst);
    else
        qref__bf16_to_real(dst, m.bf16 + row * (size_t)cols, (size_t)cols);
}

qref_matrix qref__matrix_at(qref_matrix m, size_t offset)
{
    qref_matrix r = {m.real ? m.real + offset : NULL, m.bf16 ? m.bf16 + offset : NULL,
                     m.count > offset ? m.count - offset : 0};
    return r;
}

#if defined(QREF_PRECISION_F64)
/* ---------------------------------------------------------------- y = W x, one row */

/* Adds the lanes in order and the tail elements [k0, in) into their lanes first. */
static double finish_row(double lanes[16], const uint16_t *w, const qref_real *x, int k0, int in)
{
    for (int k = k0; k < in; k++)
        lanes[k % 16] = fma(bf16_double(w[k]), (double)x[k], lanes[k % 16]);
    double s = 0;
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    return s;
}

static void gemv_portable(qref_real *y, const uint16_t *w, const qref_real *x, int rows, int in)
{
    for (int r = 0; r < rows; r++) {
        double lanes[16] = {0};
        y[r] = (qref_real)finish_row(lanes, w + (size_t)r * in, x, 0, in);
    }
}

#if defined(QREF__X86)
/* x as two vectors of 8 doubles (elements k..k+15) */
#define X512(x, k, lo, hi) (lo = _mm512_loadu_pd((x) + (k)), hi = _mm512_loadu_pd((x) + (k) + 8))
#define X256(x, k, a, b, c, d)                                                                    \
    (a = _mm256_loadu_pd((x) + (k)), b = _mm256_loadu_pd((x) + (k) + 4), c = _mm256_loadu_pd((x) + (k) + 8), \
     d = _mm256_loadu_pd((x) + (k) + 12))

/* 16 BF16 weights at p as two vectors of 8 doubles */
__attribute__((target("avx512f"), always_inline)) static inline void w512(const uint16_t *p, __m512d *lo, __m512d *hi)
{
    const __m512 f = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
}

/* Rows r .. r + 3 (nr of them) over elements [0, kv), lanes k % 16 in two vectors of 8 doubles
 * per row; then the tails and the lane sums. */
__attribute__((target("avx512f"))) static void gemv4_avx512(qref_real *y, const uint16_t *w, const qref_real *x,
                                                            int in, int kv, int nr)
{
    const uint16_t *w0 = w, *w1 = nr > 1 ? w + in : w, *w2 = nr > 2 ? w + 2 * (size_t)in : w;
    const uint16_t *w3 = nr > 3 ? w + 3 * (size_t)in : w;
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    for (int k = 0; k < kv; k += 16) {
        __m512d xl, xh, l, h;
        X512(x, k, xl, xh);
        w512(w0 + k, &l, &h);
        a0 = _mm512_fmadd_pd(l, xl, a0);
        a1 = _mm512_fmadd_pd(h, xh, a1);
        w512(w1 + k, &l, &h);
        b0 = _mm512_fmadd_pd(l, xl, b0);
        b1 = _mm512_fmadd_pd(h, xh, b1);
        w512(w2 + k, &l, &h);
        c0 = _mm512_fmadd_pd(l, xl, c0);
        c1 = _mm512_fmadd_pd(h, xh, c1);
        w512(w3 + k, &l, &h);
        d0 = _mm512_fmadd_pd(l, xl, d0);
        d1 = _mm512_fmadd_pd(h, xh, d1);
    }
    const __m512d acc[4][2] = {{a0, a1}, {b0, b1}, {c0, c1}, {d0, d1}};
    const uint16_t *rows[4] = {w0, w1, w2, w3};
    for (int i = 0; i < nr; i++) {
        double lanes[16];
        _mm512_storeu_pd(lanes, acc[i][0]);
        _mm512_storeu_pd(lanes + 8, acc[i][1]);
        y[i] = (qref_real)finish_row(lanes, rows[i], x, kv, in);
    }
}

__attribute__((target("avx512f"))) static void gemv_avx512(qref_real *y, const uint16_t *w, const qref_real *x,
                                                           int rows, int in)
{
    const int kv = in / 16 * 16;
    for (int r = 0; r < rows; r += 4)                       /* four rows share the input */
        gemv4_avx512(y + r, w + (size_t)r * in, x, in, kv, rows - r < 4 ? rows - r : 4);
}

/* 8 BF16 weights at p as a vector of 8 floats */
#define W8(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define LO4(f) _mm256_cvtps_pd(_mm256_castps256_ps128(f))
#define HI4(f) _mm256_cvtps_pd(_mm256_extractf128_ps((f), 1))

/* Rows r and r + 1 (one = 0: row r alone) over elements [0, kv), lanes k % 16 in four vectors
 * of 4 doubles per row; then the tails and the lane sums. */
__attribute__((target("avx2,fma"))) static void gemv2_avx2(qref_real *y, const uint16_t *w0, const uint16_t *w1,
                                                           const qref_real *x, int in, int kv, int two)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int k = 0; k < kv; k += 16) {
        __m256d x0, x1, x2, x3;
        X256(x, k, x0, x1, x2, x3);
        const __m256 f0 = W8(w0 + k), f1 = W8(w0 + k + 8);
        a0 = _mm256_fmadd_pd(LO4(f0), x0, a0);
        a1 = _mm256_fmadd_pd(HI4(f0), x1, a1);
        a2 = _mm256_fmadd_pd(LO4(f1), x2, a2);
        a3 = _mm256_fmadd_pd(HI4(f1), x3, a3);
        if (two) {
            const __m256 g0 = W8(w1 + k), g1 = W8(w1 + k + 8);
            b0 = _mm256_fmadd_pd(LO4(g0), x0, b0);
            b1 = _mm256_fmadd_pd(HI4(g0), x1, b1);
            b2 = _mm256_fmadd_pd(LO4(g1), x2, b2);
            b3 = _mm256_fmadd_pd(HI4(g1), x3, b3);
        }
    }
    double lanes[16];
    _mm256_storeu_pd(lanes, a0);
    _mm256_storeu_pd(lanes + 4, a1);
    _mm256_storeu_pd(lanes + 8, a2);
    _mm256_storeu_pd(lanes + 12, a3);
    y[0] = (qref_real)finish_row(lanes, w0, x, kv, in);
    if (two) {
        _mm256_storeu_pd(lanes, b0);
        _mm256_storeu_pd(lanes + 4, b1);
        _mm256_storeu_pd(lanes + 8, b2);
        _mm256_storeu_pd(lanes + 12, b3);
        y[1] = (qref_real)finish_row(lanes, w1, x, kv, in);
    }
}

__attribute__((target("avx2,fma"))) static void gemv_avx2(qref_real *y, const uint16_t *w, const qref_real *x,
                                                          int rows, int in)
{
    const int kv = in / 16 * 16;
    int r = 0;
    for (; r + 2 <= rows; r += 2)                           /* two rows share the input */
        gemv2_avx2(y + r, w + (size_t)r * in, w + (size_t)(r + 1) * in, x, in, kv, 1);
    if (r < rows)
        gemv2_avx2(y + r, w + (size_t)r * in, w + (size_t)r * in, x, in, kv, 0);
}
#endif

#else
/* The float build: the same order in float lanes (lane k % 16 by fmaf), the lanes added in
 * double. Each input element meets one weight per row, the sums have the length of a row: as
 * a float BLAS product. */
static float finish_rowf(float lanes[16], const uint16_t *w, const float *x, int k0, int in)
{
    for (int k = k0; k < in; k++)
        lanes[k % 16] = fmaf((float)bf16_double(w[k]), x[k], lanes[k % 16]);
    double s = 0;
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    return (float)s;
}

static void gemv_portable(float *y, const uint16_t *w, const float *x, int rows, int in)
{
    for (int r = 0; r < rows; r++) {
        float lanes[16] = {0};
        y[r] = finish_rowf(lanes, w + (size_t)r * in, x, 0, in);
    }
}

#if defined(QREF__X86)
#define W16F(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define W8F(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

/* Rows w .. w + 3 (nr of them): lanes k % 16 in one vector of 16 floats per row. */
__attribute__((target("avx512f"))) static void gemv4_avx512(float *y, const uint16_t *w, const float *x, int in,
                                                            int kv, int nr)
{
    const uint16_t *w0 = w, *w1 = nr > 1 ? w + in : w, *w2 = nr > 2 ? w + 2 * (size_t)in : w;
    const uint16_t *w3 = nr > 3 ? w + 3 * (size_t)in : w;
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (int k = 0; k < kv; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k);
        a = _mm512_fmadd_ps(W16F(w0 + k), xv, a);
        b = _mm512_fmadd_ps(W16F(w1 + k), xv, b);
        c = _mm512_fmadd_ps(W16F(w2 + k), xv, c);
        d = _mm512_fmadd_ps(W16F(w3 + k), xv, d);
    }
    const __m512 acc[4] = {a, b, c, d};
    const uint16_t *rows[4] = {w0, w1, w2, w3};
    for (int i = 0; i < nr; i++) {
        float lanes[16];
        _mm512_storeu_ps(lanes, acc[i]);
        y[i] = finish_rowf(lanes, rows[i], x, kv, in);
    }
}

__attribute__((target("avx512f"))) static void gemv_avx512(float *y, const uint16_t *w, const float *x, int rows,
                                                           int in)
{
    const int kv = in / 16 * 16;
    for (int r = 0; r < rows; r += 4)
        gemv4_avx512(y + r, w + (size_t)r * in, x, in, kv, rows - r < 4 ? rows - r : 4);
}

/* Rows w .. w + 3 (nr of them): lanes k % 16 in two vectors of 8 floats per row. */
__attribute__((target("avx2,fma"))) static void gemv4_avx2(float *y, const uint16_t *w, const float *x, int in,
                                                           int kv, int nr)
{
    const uint16_t *w0 = w, *w1 = nr > 1 ? w + in : w, *w2 = nr > 2 ? w + 2 * (size_t)in : w;
    const uint16_t *w3 = nr > 3 ? w + 3 * (size_t)in : w;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    for (int k = 0; k < kv; k += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
        a0 = _mm256_fmadd_ps(W8F(w0 + k), x0, a0);
        a1 = _mm256_fmadd_ps(W8F(w0 + k + 8), x1, a1);
        b0 = _mm256_fmadd_ps(W8F(w1 + k), x0, b0);
        b1 = _mm256_fmadd_ps(W8F(w1 + k + 8), x1, b1);
        c0 = _mm256_fmadd_ps(W8F(w2 + k), x0, c0);
        c1 = _mm256_fmadd_ps(W8F(w2 + k + 8), x1, c1);
        d0 = _mm256_fmadd_ps(W8F(w3 + k), x0, d0);
        d1 = _mm256_fmadd_ps(W8F(w3 + k + 8), x1, d1);
    }
    const __m256 acc[4][2] = {{a0, a1}, {b0, b1}, {c0, c1}, {d0, d1}};
    const uint16_t *rows[4] = {w0, w1, w2, w3};
    for (int i = 0; i < nr; i++) {
        float lanes[16];
        _mm256_storeu_ps(lanes, acc[i][0]);
        _mm256_storeu_ps(lanes + 8, acc[i][1]);
        y[i] = finish_rowf(lanes, rows[i], x, kv, in);
    }
}

__attribute__((target("avx2,fma"))) static void gemv_avx2(float *y, const uint16_t *w, const float *x, int rows,
                                                          int in)
{
    const int kv = in / 16 * 16;
    for (int r = 0; r < rows; r += 4)
        gemv4_avx2(y + r, w + (size_t)r * in, x, in, kv, rows - r < 4 ? rows - r : 4);
}
#endif

#endif

#if defined(QREF__X86)
/* 8 values at a time: BF16 bits widened and shifted into floats (and, in the double build,
 * widened again), exactly as the portable loop. */
__attribute__((target("avx2"))) static void to_real_avx2(qref_real *dst, const uint16_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 f = _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i))), 16));
#if defined(QREF_PRECISION_F64)
        _mm256_storeu_pd(dst + i, _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
        _mm256_storeu_pd(dst + i + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
#else
        _mm256_storeu_ps(dst + i, f);
#endif
    }
    to_real_portable(dst + i, src + i, n - i);
}
#endif

void qref__bf16_to_real(qref_real *dst, const uint16_t *src, size_t n)
{
#if defined(QREF__X86)
    if (__builtin_cpu_supports("avx2")) {
        to_real_avx2(dst, src, n);
        return;
    }
#endif
    to_real_portable(dst, src, n);
}

void qref__gemv_bf16(qref_real *y, const uint16_t *w, const qref_real *x, int rows, int in)
{
#if defined(QREF__X86)
    if (__builtin_cpu_supports("avx512f")) {
        gemv_avx512(y, w, x, rows, in);
        return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        gemv_avx2(y, w, x, rows, in);
        return;
    }
#endif
    gemv_portable(y, w, x, rows, in);
}

/* The portable version whatever the CPU (test_matrix compares the two). */
void qref__gemv_bf16_portable(qref_real *y, const uint16_t *w, const qref_real *x, int rows, int in)
{
    gemv_portable(y, w, x, rows, in);
}

/* ---------------------------------------------------------------- a layer in qref_real */

qref_status qref__layer_real_view(const qref_layer_weights *w, qref_layer_weights *view, qref_real **buf,
                                  qref_error *err)
{
    *view = *w;
    *buf = NULL;
    qref_matrix *mats[] = {&view->in_proj_qkv,      &view->in_proj_z,      &view->out_proj,  &view->q_proj,
                           &view->k_proj,           &view->v_proj,         &view->o_proj,    &view->gate_proj,
                           &view->up_proj,          &view->down_proj,      &view->experts_gate_up,
                           &view->experts_down,     &view->shared_gate_proj, &view->shared_up_proj,
                           &view->shared_down_proj};
    const int nm = (int)(sizeof mats / sizeof mats[0]);
    size_t total = 0;
    for (int i = 0; i < nm; i++)
        if (mats[i]->bf16)
            total += mats[i]->count;
    if (!total)
        return QREF_OK;
    *buf = malloc(total * sizeof **buf);
    if (!*buf)
        return qref__fail(err, QREF_ENOMEM, "out of memory converting a layer's BF16 matrices (%zu bytes)",
                          total * sizeof **buf);
    size_t off = 0;
    for (int i = 0; i < nm; i++) {
        if (!mats[i]->bf16)
            continue;
        qref__bf16_to_real(*buf + off, mats[i]->bf16, mats[i]->count);
        *mats[i] = (qref_matrix){*buf + off, NULL, mats[i]->count};
        off += mats[i]->count;
    }
    return QREF_OK;
}
