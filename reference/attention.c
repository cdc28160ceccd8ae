/* SPDX-License-Identifier: MIT */
/*
 * Causal GQA attention through BLAS: per query head and block of QB queries, the scores of the
 * block against the keys it may see are matrix products, the softmax runs per query (double
 * build: in double; float build: vectorised float exponentials, sums in double), and the
 * output is a second product of the probabilities with the values. A single query (decode)
 * uses matrix-vector products.
 *
 * A block that sees at most KB keys (and a single query) takes its whole score rows at once:
 * softmax with the row maximum, probabilities rounded once, one product with the values. A
 * block that sees more (long prompts, the vision tower's frames) walks its keys in blocks of
 * KB, so the (QB, KB) scores stay in the core's cache: per key block the scores, the new row
 * maxima, the exponentials against them, the rescaling of the sums and of the outputs so far
 * by exp(old max - new max) when a maximum grew, and the product of the exponentials with the
 * values added to the outputs; at the end each output row is divided by its sum (an online
 * softmax). Key blocks are visited in order, so the result depends on the shapes alone.
 *
 * The visible range of query i is [0, q_off + i] clipped to the cache, so q_off = Tk - 1
 * gives every query every key (bidirectional attention, the vision tower). A key with
 * kmask[j] == 0 is never seen; a query that sees no key gets a zero output.
 *
 * The float build walks through the register-tile kernels of attention_tiles.c where the CPU
 * has AVX-512F or AVX2 with FMA (QREF_ATTENTION_TILES=0 keeps the BLAS walk): the keys and
 * values of every kv head are packed once per call (items: kv head and key block), then each
 * tile of query rows takes its scores, the same online softmax (its numerators from the tile
 * kernels: the same exponential with fused multiply-adds) and the update of its outputs, with
 * nothing packed per block. Which path runs depends on the CPU and the shapes, never on
 * the thread count.
 *
 * Items: (head, query block), heaviest blocks first; each item is computed by one thread in
 * its own slab of scratch, so the result never depends on the thread count.
 *
 * Shape legend: n = queries, Tk = keys in the cache, Hq/Hkv = query/key heads, D = head dim,
 * QB = queries per block (block_rows), Kb = keys a block sees, KB = keys per key block.
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

/* Keys per key block: the (256, KB) scores are 512 KiB in either build, half a core's L2 on
 * the machines measured. */
#if defined(QREF_PRECISION_F64)
#define KB 256
#else
#define KB 512
#endif

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* Per worker, in qref_real units: the scores, (QB, min(Tk, KB)) or one row of Tk for a single
 * query, then max(Tk, 2 QB) doubles (a row of exponentials; the row maxima and sums of a key
 * walk), with room to align them whatever the alignment of the scratch. Grows with Tk, so
 * scratch sized for a cache serves every call on a shorter one. */
static size_t scores_size(int Tk)
{
    const size_t tk = (size_t)(Tk > 0 ? Tk : 1);
    return max_z((size_t)block_rows(Tk) * (tk < KB ? tk : KB), tk);
}

/* The tile walk's part of a slab (float build, keys beyond one key block): the score tile
 * (TILE_ROWS, KB), TILE_ROWS output factors and TILE_ROWS row maxima; TILE_ROWS bounds
 * qref__tile_ops.rows. */
#define TILE_ROWS 16
static size_t tiles_size(int Tk)
{
#if !defined(QREF_PRECISION_F64)
    if (Tk > KB)
        return TILE_ROWS * (size_t)KB + 2 * TILE_ROWS;
#endif
    (void)Tk;
    return 0;
}

/* The keys and values of every kv head packed for the tile kernels, once per call, ahead of
 * the workers' slabs: keys (Hkv, ceil(Tk / 32) 32, D) in panels, values (Hkv, Tk, D) in key
 * blocks of KB, each block's panels of head dims (attention_tiles.c has the layouts). */
#if !defined(QREF_PRECISION_F64)
static size_t packed_keys(int Tk, int D) { return ((size_t)Tk + 31) / 32 * 32 * (size_t)D; }
#endif

static size_t packed_size(int Tk, int Hkv, int D)
{
#if !defined(QREF_PRECISION_F64)
    if (Tk > KB)
        return (size_t)Hkv * (packed_keys(Tk, D) + (size_t)Tk * (size_t)D);
#endif
    (void)Tk, (void)Hkv, (void)D;
    return 0;
}

static size_t slab(int Tk)
{
    const size_t nd = max_z((size_t)(Tk > 0 ? Tk : 1), 2 * (size_t)block_rows(Tk));
    const size_t row = (nd * sizeof(double) + sizeof(qref_real) - 1) / sizeof(qref_real);
    return scores_size(Tk) + row + sizeof(double) / sizeof(qref_real) + tiles_size(Tk);
}

size_t qref__attention_scratch(int Tk, int Hkv, int D)
{
    return packed_size(Tk, Hkv, D) + (size_t)qref__workers() * slab(Tk);
}

typedef struct {
    qref_real *out, *scratch;
    const qref_real *q, *kc, *vc;
    const uint8_t *kmask;
    int n, Tk, q_off, Hq, Hkv, D, qb_rows, nqb;
    double scale;
    const qref__tile_ops *tiles;    /* float build: the walk's kernels, or NULL for BLAS */
    float *kp, *vp;                 /* with tiles: the packed keys and values (packed_size) */
    qref_real *slabs;               /* the workers' slabs */
} attn_job;

/* ---------------------------------------------------------------- whole rows */

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

/* Queries [i0, i0 + m) of head h against their Kb keys at once; S (m, Kb), e (Kb). */
static void block_whole(const attn_job *a, int i0, int m, int Kb, const qref_real *q, const qref_real *k,
                        const qref_real *v, qref_real *o, qref_real *S, double *e)
{
    const int D = a->D, ldq = a->Hq * D, ldk = a->Hkv * D;
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

/* ---------------------------------------------------------------- walking the keys */

/* The largest of x[0..n) (-inf when n == 0; NaNs are passed over), in 16 partial maxima that
 * the compiler keeps in vector registers. The maximum is exact, so the order does not matter. */
qref_real qref__row_max(const qref_real *x, int n)
{
    qref_real l[16];
    for (int i = 0; i < 16; i++)
        l[i] = -INFINITY;
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int i = 0; i < 16; i++)
            l[i] = x[j + i] > l[i] ? x[j + i] : l[i];
    for (int i = 0; j + i < n; i++)
        l[i] = x[j + i] > l[i] ? x[j + i] : l[i];
    qref_real m = -INFINITY;
    for (int i = 0; i < 16; i++)
        m = l[i] > m ? l[i] : m;
    return m;
}

/* Row r's scores s (kb) of keys [j0, j0 + kb), of which the first `vis` are visible (before
 * the mask; vis may be <= 0), against the row's running maximum *mx of the unscaled scores:
 * updates *mx, turns s into exp((s - *mx) scale) (0 where invisible or masked) and *sum into
 * *sum * alpha + their sum; returns alpha = exp((old max - new max) scale), the factor of the
 * outputs so far (1 when the maximum did not grow, 0 while nothing was seen). The float build
 * takes the numerators from the tile kernels t when the walk runs on them, else from
 * vecmath.h; known_max, when not NULL, is the largest of s (the tile scores kernel's), taken
 * instead of a pass over s where every key of the block is visible and none is masked. */
static double walk_row(qref_real *s, int kb, int vis, const uint8_t *kmask, double scale, double *mx,
                       double *sum, const qref__tile_ops *t, const float *known_max)
{
    vis = vis < 0 ? 0 : vis > kb ? kb : vis;
    if (kmask)
        for (int j = 0; j < vis; j++)
            if (!kmask[j])
                s[j] = -INFINITY;
    for (int j = vis; j < kb; j++)
        s[j] = -INFINITY;
    const qref_real bm = known_max && !kmask && vis == kb ? *known_max : qref__row_max(s, vis);
    double alpha = 1;
    if (bm > *mx) {
        alpha = *mx == -INFINITY ? 0 : exp(((double)*mx - (double)bm) * scale);
        *mx = bm;
    }
    if (*mx == -INFINITY) {                                  /* nothing seen yet */
        for (int j = 0; j < kb; j++)
            s[j] = 0;
        return 1;
    }
#if !defined(QREF_PRECISION_F64)
    const double bsum = t ? t->numerators(s, s, kb, (float)*mx, (float)scale)
                          : qref__vsoftmax_expf(s, s, (size_t)kb, (float)*mx, (float)scale);
#else
    (void)t;
    const double bsum = qref__vsoftmax_exp(s, s, (size_t)kb, *mx * scale, scale);
#endif
    *sum = *sum * alpha + bsum;
    return alpha;
}

/* A walk's start: no maximum, sums and outputs (m rows of D, stride ldq) zero; its end: each
 * output row divided by its sum (0 for a row that saw no key). */
static void walk_start(qref_real *o, int ldq, int m, int D, double *mx, double *sum)
{
    for (int r = 0; r < m; r++) {
        mx[r] = -INFINITY;
        sum[r] = 0;
        for (int d = 0; d < D; d++)
            o[(size_t)r * ldq + d] = 0;
    }
}

static void walk_finish(qref_real *o, int ldq, int m, int D, const double *sum)
{
    for (int r = 0; r < m; r++) {
        const double inv = sum[r] > 0 ? 1.0 / sum[r] : 0.0;
        for (int d = 0; d < D; d++)
            o[(size_t)r * ldq + d] = (qref_real)(o[(size_t)r * ldq + d] * inv);
    }
}

/* Queries [i0, i0 + m) of head h against their Kb keys in blocks of KB; S (m, KB), mx and
 * sum (m) doubles each. o is accumulated in place. */
static void block_walk(const attn_job *a, int i0, int m, int Kb, const qref_real *q, const qref_real *k,
                       const qref_real *v, qref_real *o, qref_real *S, double *mx, double *sum)
{
    const int D = a->D, ldq = a->Hq * D, ldk = a->Hkv * D;
    walk_start(o, ldq, m, D, mx, sum);
    for (int j0 = 0; j0 < Kb; j0 += KB) {
        const int kb = Kb - j0 < KB ? Kb - j0 : KB;
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, kb, D, 1, q, ldq, k + (size_t)j0 * ldk, ldk,
                   0, S, kb);
        for (int r = 0; r < m; r++) {
            int last = a->q_off + i0 + r;
            last = last < a->Tk - 1 ? last : a->Tk - 1;
            const double alpha = walk_row(S + (size_t)r * kb, kb, last + 1 - j0, a->kmask ? a->kmask + j0 : NULL,
                                          a->scale, &mx[r], &sum[r], NULL, NULL);
            if (alpha != 1)
                for (int d = 0; d < D; d++)
                    o[(size_t)r * ldq + d] = (qref_real)(o[(size_t)r * ldq + d] * alpha);
        }
        QREF__GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, kb, 1, S, kb, v + (size_t)j0 * ldk, ldk,
                   1, o, ldq);
    }
    walk_finish(o, ldq, m, D, sum);
}

/* The same walk through the tile kernels (float build), on keys and values packed once per
 * call (pack_item): each tile of R query rows takes its scores against a key block, walk_row's
 * online softmax and the update of its outputs. T is the slab's tile area (tiles_size). */
#if !defined(QREF_PRECISION_F64)
static void block_walk_tiles(const attn_job *a, int i0, int m, int Kb, int kvh, const float *q, float *o,
                             float *T, double *mx, double *sum)
{
    const qref__tile_ops *t = a->tiles;
    const int D = a->D, ldq = a->Hq * D, R = t->rows;
    const float *kt = a->kp + (size_t)kvh * packed_keys(a->Tk, D);
    const float *vt = a->vp + (size_t)kvh * a->Tk * D;
    float *S = T, *alpha = S + (size_t)TILE_ROWS * KB, *bmax = alpha + TILE_ROWS;
    walk_start(o, ldq, m, D, mx, sum);
    for (int j0 = 0; j0 < Kb; j0 += KB) {
        const int kb = Kb - j0 < KB ? Kb - j0 : KB;             /* keys of this block the rows may see */
        const int kbp = a->Tk - j0 < KB ? a->Tk - j0 : KB;      /* keys of the packed block */
        for (int r0 = 0; r0 < m; r0 += R) {
            const int rows = m - r0 < R ? m - r0 : R;
            t->scores(S, KB, q + (size_t)r0 * ldq, ldq, rows, kt + (size_t)j0 * D, kb, D, bmax);
            for (int r = 0; r < rows; r++) {
                int last = a->q_off + i0 + r0 + r;
                last = last < a->Tk - 1 ? last : a->Tk - 1;
                alpha[r] = (float)walk_row(S + (size_t)r * KB, kb, last + 1 - j0, a->kmask ? a->kmask + j0 : NULL,
                                           a->scale, &mx[r0 + r], &sum[r0 + r], t, &bmax[r]);
            }
            t->update(o + (size_t)r0 * ldq, ldq, S, KB, rows, vt + (size_t)j0 * D, kb, kbp, D, alpha);
        }
    }
    walk_finish(o, ldq, m, D, sum);
}

/* Item (kv head, key block): packs that block's keys and values. */
static void pack_item(void *ctx, int item, int worker)
{
    (void)worker;
    const attn_job *a = ctx;
    const int nkb = (a->Tk + KB - 1) / KB, h = item / nkb, j0 = item % nkb * KB;
    const int kb = a->Tk - j0 < KB ? a->Tk - j0 : KB, D = a->D, ldk = a->Hkv * D, P = a->tiles->panel;
    a->tiles->pack_keys(a->kp + (size_t)h * packed_keys(a->Tk, D) + (size_t)j0 * D,
                        a->kc + (size_t)j0 * ldk + (size_t)h * D, ldk, kb, D, P);
    a->tiles->pack_values(a->vp + ((size_t)h * a->Tk + (size_t)j0) * D, a->vc + (size_t)j0 * ldk + (size_t)h * D,
                          ldk, kb, D, P);
}
#endif

/* ---------------------------------------------------------------- items */

static void attn_item(void *ctx, int item, int worker)
{
    const attn_job *a = ctx;
    const int h = item % a->Hq, qb = a->nqb - 1 - item / a->Hq;
    const int D = a->D, QB = a->qb_rows, i0 = qb * QB;
    const int m = a->n - i0 < QB ? a->n - i0 : QB;
    const int ldq = a->Hq * D, kvh = h / (a->Hq / a->Hkv);
    int Kb = a->q_off + i0 + m;                              /* keys the block's last query sees */
    Kb = Kb < a->Tk ? Kb : a->Tk;
    const qref_real *q = a->q + (size_t)i0 * ldq + (size_t)h * D;     /* (m, D), stride ldq */
    const qref_real *k = a->kc + (size_t)kvh * D;                     /* (Kb, D), stride ldk */
    const qref_real *v = a->vc + (size_t)kvh * D;                     /* (Kb, D), stride ldk */
    qref_real *o = a->out + (size_t)i0 * ldq + (size_t)h * D;         /* (m, D), stride ldq */
    qref_real *S = a->slabs + (size_t)worker * slab(a->Tk);           /* scores */
    const uintptr_t er = (uintptr_t)(S + scores_size(a->Tk));
    double *e = (double *)(er + (sizeof(double) - er % sizeof(double)) % sizeof(double));
    if (Kb <= 0) {
        for (int r = 0; r < m; r++)
            for (int d = 0; d < D; d++)
                o[(size_t)r * ldq + d] = 0;
        return;
    }
    if (m == 1 || Kb <= KB) {
        block_whole(a, i0, m, Kb, q, k, v, o, S, e);         /* e (Kb) */
        return;
    }
#if !defined(QREF_PRECISION_F64)
    if (a->tiles) {                                          /* the tile area ends the slab */
        block_walk_tiles(a, i0, m, Kb, kvh, q, o, S + slab(a->Tk) - tiles_size(a->Tk), e, e + QB);
        return;
    }
#endif
    block_walk(a, i0, m, Kb, q, k, v, o, S, e, e + QB);      /* row maxima and sums (m) */
}

void qref__attention(qref_real *out, const qref_real *q, const qref_real *kc, const qref_real *vc,
                     const uint8_t *kmask, int n, int Tk, int q_off, int Hq, int Hkv, int D,
                     double scale, qref_real *scratch)
{
    assert(Hkv > 0 && Hq % Hkv == 0 && q_off >= 0 && n >= 0 && Tk >= 0 && scale > 0);
    assert(scratch || n == 0);
    const int QB = block_rows(Tk), nqb = (n + QB - 1) / QB;
    attn_job a = {out, scratch, q, kc, vc, kmask, n, Tk, q_off, Hq, Hkv, D, QB, nqb, scale, NULL, NULL, NULL,
                  scratch + packed_size(Tk, Hkv, D)};
#if !defined(QREF_PRECISION_F64)
    a.tiles = n > 1 && Tk > KB ? qref__tiles() : NULL;       /* only a block of queries walks keys */
    if (a.tiles && (D % a.tiles->panel != 0 || a.tiles->rows > TILE_ROWS))
        a.tiles = NULL;
    if (a.tiles) {
        a.kp = scratch;
        a.vp = scratch + (size_t)Hkv * packed_keys(Tk, D);
        qref__parallel(Hkv * ((Tk + KB - 1) / KB), pack_item, &a);
    }
#endif
    qref__parallel(nqb * Hq, attn_item, &a);
}
