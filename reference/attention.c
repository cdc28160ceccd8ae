/* SPDX-License-Identifier: MIT */
/*
 * Causal GQA attention through BLAS: per query head and block of QB queries, the scores of the
 * block against every key it may see are one matrix product, the softmax runs per query
 * (double build: in double, probabilities rounded once; float build: vectorised float
 * exponentials, the sum in double), and the output is a second product of the
 * probabilities with the values. A single query (decode) uses matrix-vector products.
 *
 * The visible range of query i is [0, q_off + i] clipped to the cache, so q_off = Tk - 1
 * gives every query every key (bidirectional attention, the vision tower). A key with
 * kmask[j] == 0 is never seen; a query that sees no key gets a zero output.
 *
 * Items: (head, query block), heaviest blocks first; each item is computed by one thread in
 * its own slab of scratch, so the result never depends on the thread count.
 *
 * Shape legend: n = queries, Tk = keys in the cache, Hq/Hkv = query/key heads, D = head dim,
 * QB = queries per block (block_rows), Kb = keys a block sees.
 */
#include <assert.h>
#include <stdint.h>

#include "qref_blas.h"
#include "qref_internal.h"
#include "vecmath.h"

/* Queries per block: 64, or 256 against 4096 keys and more (the vision tower's frames), where
 * each product would otherwise spend a large part of its time packing the keys and values it
 * reads once per block. A shape, never a thread count. */
static int block_rows(int Tk) { return Tk >= 4096 ? 256 : 64; }

/* Per worker: the scores (QB, Tk) and one row of exponentials in double (Tk), in qref_real
 * units, with room to align the double row whatever the alignment of the scratch. Grows with
 * Tk, so scratch sized for a cache serves every call on a shorter one. */
static size_t slab(int Tk)
{
    const size_t tk = (size_t)(Tk > 0 ? Tk : 1);
    const size_t row = (tk * sizeof(double) + sizeof(qref_real) - 1) / sizeof(qref_real);
    return (size_t)block_rows(Tk) * tk + row + sizeof(double) / sizeof(qref_real);
}

size_t qref__attention_scratch(int Tk)
{
    return (size_t)qref__workers() * slab(Tk);
}

typedef struct {
    qref_real *out, *scratch;
    const qref_real *q, *kc, *vc;
    const uint8_t *kmask;
    int n, Tk, q_off, Hq, Hkv, D, qb_rows, nqb;
    double scale;
} attn_job;

/* Turns scores s (Kb) of a query that sees keys [0, last] into probabilities, in place;
 * zeros where not visible. e (Kb) holds the exponentials in double (double build). The float
 * build takes its exponentials from vecmath.h: exp((s - max) * scale) in float, summed in
 * double. */
#if !defined(QREF_PRECISION_F64)
static void softmax_row(qref_real *s, double *e, int Kb, int last, const uint8_t *kmask, double scale)
{
    (void)e;
    float m = -INFINITY;
    for (int j = 0; j <= last; j++) {
        if (kmask && !kmask[j])
            s[j] = -INFINITY;
        m = s[j] > m ? s[j] : m;
    }
    const double sum = qref__vsoftmax_expf(s, s, (size_t)last + 1, m, (float)scale);
    const float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
    for (int j = 0; j <= last; j++)
        s[j] *= inv;
    for (int j = last + 1; j < Kb; j++)
        s[j] = 0;
}
#else
static void softmax_row(qref_real *s, double *e, int Kb, int last, const uint8_t *kmask, double scale)
{
    double m = -INFINITY, sum = 0;
    for (int j = 0; j <= last; j++) {
        e[j] = (double)s[j] * scale;
        if ((!kmask || kmask[j]) && e[j] > m)
            m = e[j];
    }
    for (int j = 0; j <= last; j++)
        if (!kmask || kmask[j]) {
            e[j] = exp(e[j] - m);
            sum += e[j];
        }
    const double inv = sum > 0 ? 1.0 / sum : 0.0;
    for (int j = 0; j <= last; j++)
        s[j] = (!kmask || kmask[j]) ? (qref_real)(e[j] * inv) : 0;
    for (int j = last + 1; j < Kb; j++)
        s[j] = 0;
}
#endif

static void attn_item(void *ctx, int item, int worker)
{
    const attn_job *a = ctx;
    const int h = item % a->Hq, qb = a->nqb - 1 - item / a->Hq;
    const int D = a->D, QB = a->qb_rows, i0 = qb * QB;
    const int m = a->n - i0 < QB ? a->n - i0 : QB;
    const int ldq = a->Hq * D, ldk = a->Hkv * D, kvh = h / (a->Hq / a->Hkv);
    int Kb = a->q_off + i0 + m;                              /* keys the block's last query sees */
    Kb = Kb < a->Tk ? Kb : a->Tk;
    const qref_real *q = a->q + (size_t)i0 * ldq + (size_t)h * D;     /* (m, D), stride ldq */
    const qref_real *k = a->kc + (size_t)kvh * D;                     /* (Kb, D), stride ldk */
    const qref_real *v = a->vc + (size_t)kvh * D;                     /* (Kb, D), stride ldk */
    qref_real *o = a->out + (size_t)i0 * ldq + (size_t)h * D;         /* (m, D), stride ldq */
    qref_real *S = a->scratch + (size_t)worker * slab(a->Tk);        /* (m, Kb) */
    const uintptr_t er = (uintptr_t)(S + (size_t)QB * (size_t)(a->Tk > 0 ? a->Tk : 1));
    double *e = (double *)(er + (sizeof(double) - er % sizeof(double)) % sizeof(double)); /* (Kb) */
    if (Kb <= 0) {
        for (int r = 0; r < m; r++)
            for (int d = 0; d < D; d++)
                o[(size_t)r * ldq + d] = 0;
        return;
    }
    if (m == 1)
        QREF__GEMV(CblasRowMajor, CblasNoTrans, Kb, D, 1, k, ldk, q, 1, 0, S, 1);
    else
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, Kb, D, 1, q, ldq, k, ldk, 0, S, Kb);
    for (int r = 0; r < m; r++) {
        int last = a->q_off + i0 + r;
        last = last < a->Tk - 1 ? last : a->Tk - 1;
        softmax_row(S + (size_t)r * Kb, e, Kb, last, a->kmask, a->scale);
    }
    if (m == 1)
        QREF__GEMV(CblasRowMajor, CblasTrans, Kb, D, 1, v, ldk, S, 1, 0, o, 1);
    else
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, Kb, 1, S, Kb, v, ldk, 0, o, ldq);
}

void qref__attention(qref_real *out, const qref_real *q, const qref_real *kc, const qref_real *vc,
                     const uint8_t *kmask, int n, int Tk, int q_off, int Hq, int Hkv, int D,
                     double scale, qref_real *scratch)
{
    assert(Hkv > 0 && Hq % Hkv == 0 && q_off >= 0 && n >= 0 && Tk >= 0);
    assert(scratch || n == 0);
    const int QB = block_rows(Tk), nqb = (n + QB - 1) / QB;
    attn_job a = {out, scratch, q, kc, vc, kmask, n, Tk, q_off, Hq, Hkv, D, QB, nqb, scale};
    qref__parallel(nqb * Hq, attn_item, &a);
}
