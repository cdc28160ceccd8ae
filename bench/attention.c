/* SPDX-License-Identifier: MIT */
/*
 * bench_attention: the parts of the float attention walk, timed (a benchmark, never a test).
 *
 * For each tile set this CPU runs (reference/attention_tiles.c), on one thread: the score
 * kernel, the update kernel and the softmax numerators over one head's queries against its keys
 * in blocks of 512 keys (as attention.c walks them), and a plain pass for a row's maximum (what
 * a causal or masked block still takes; whole blocks take it from the score kernel). Then
 * qref__attention itself over H heads on T threads. The default shape is one layer of the
 * Qwen3.5-0.8B vision tower on a 1920x1080 image: 8160 queries and keys, 12 heads, head dim 64.
 *
 *   bench_attention [--keys N] [--heads H] [--dim D] [--threads T] [--repeat R]
 *
 * Every figure is the best of R runs: nanoseconds per query-key pair (per value for the
 * numerators and the maximum) and GFLOP/s (2 D flops per pair for each product, 4 D for the
 * whole attention). The double build times qref__attention only (it has no tile kernels).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qref.h"
#include "qref_internal.h"

enum { KB = 512, MAXR = 16 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *alloc(size_t n)
{
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "bench_attention: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static double uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void report(const char *what, double best, double pairs, double flops_per_pair)
{
    printf("%-34s %8.3f s  %6.3f ns%s", what, best, best / pairs * 1e9, flops_per_pair > 0 ? "" : "\n");
    if (flops_per_pair > 0)
        printf("  %7.1f GFLOP/s\n", flops_per_pair * pairs / best * 1e-9);
}

#if !defined(QREF_PRECISION_F64)
/* One tile set's kernels over n queries and keys of one head (the float build). */
static void bench_set(const qref__tile_ops *t, int n, int D, int repeat, const float *q, const float *k,
                      const float *v, uint64_t *seed)
{
    const int R = t->rows, P = t->panel;
    float *kt = alloc(((size_t)n + 31) / 32 * 32 * (size_t)D * sizeof *kt);
    float *vt = alloc((size_t)n * D * sizeof *vt), *o = alloc((size_t)n * D * sizeof *o);
    float *S = alloc((size_t)MAXR * KB * sizeof *S), *Y = alloc((size_t)MAXR * KB * sizeof *Y);
    float alpha[MAXR], mx[MAXR];
    for (int j0 = 0; j0 < n; j0 += KB) {
        const int kb = n - j0 < KB ? n - j0 : KB;
        t->pack_keys(kt + (size_t)j0 * D, k + (size_t)j0 * D, D, kb, D, P);
        t->pack_values(vt + (size_t)j0 * D, v + (size_t)j0 * D, D, kb, D, P);
    }
    for (int r = 0; r < MAXR; r++)
        alpha[r] = 1;
    double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, sink = 0;
    for (int rep = 0; rep < repeat; rep++) {
        double t0 = now();
        for (int r0 = 0; r0 < n; r0 += R)
            for (int j0 = 0; j0 < n; j0 += KB)
                t->scores(S, KB, q + (size_t)r0 * D, D, n - r0 < R ? n - r0 : R, kt + (size_t)j0 * D,
                          n - j0 < KB ? n - j0 : KB, D, mx);
        double t1 = now();
        best[0] = fmin(best[0], t1 - t0);
        for (int i = 0; i < MAXR * KB; i++)             /* probabilities in [0, 1] */
            S[i] = (float)uniform(seed);
        t0 = now();
        for (int r0 = 0; r0 < n; r0 += R)
            for (int j0 = 0; j0 < n; j0 += KB) {
                const int kb = n - j0 < KB ? n - j0 : KB;
                t->update(o + (size_t)r0 * D, D, S, KB, n - r0 < R ? n - r0 : R, vt + (size_t)j0 * D, kb, kb, D, alpha);
            }
        t1 = now();
        best[1] = fmin(best[1], t1 - t0);
        for (int i = 0; i < MAXR * KB; i++)             /* scores below a maximum of 4 */
            S[i] = (float)(8 * uniform(seed) - 4);
        t0 = now();
        for (int r0 = 0; r0 < n; r0 += R)
            for (int j0 = 0; j0 < n; j0 += KB)
                for (int r = 0; r < R; r++)
                    sink += t->numerators(Y + (size_t)r * KB, S + (size_t)r * KB, n - j0 < KB ? n - j0 : KB, 4.0f,
                                          0.125f);
        t1 = now();
        best[2] = fmin(best[2], t1 - t0);
        t0 = now();
        for (int r0 = 0; r0 < n; r0 += R)
            for (int j0 = 0; j0 < n; j0 += KB)
                for (int r = 0; r < R; r++)
                    sink += qref__row_max(S + (size_t)r * KB, n - j0 < KB ? n - j0 : KB);
        t1 = now();
        best[3] = fmin(best[3], t1 - t0);
    }
    const double pairs = (double)n * n;
    char what[64];
    printf("tile set %s: %d rows per tile, panels of %d (one thread)\n", t->isa, R, P);
    snprintf(what, sizeof what, "  scores (%s)", t->isa);
    report(what, best[0], pairs, 2.0 * D);
    snprintf(what, sizeof what, "  update (%s)", t->isa);
    report(what, best[1], pairs, 2.0 * D);
    snprintf(what, sizeof what, "  softmax numerators (%s)", t->isa);
    report(what, best[2], pairs, 0);
    report("  row maximum, a pass", best[3], pairs, 0);
    if (sink == 12345.678)                              /* keeps the results alive */
        printf("\n");
    free(kt), free(vt), free(o), free(S), free(Y);
}

/* Every tile set this CPU runs, on head 0 of q, k, v. */
static void bench_sets(int n, int H, int D, int repeat, const float *q, const float *k, const float *v,
                       uint64_t *seed)
{
    const qref__tile_ops *sets[2];
    const int ns = qref__tile_sets(sets);
    if (ns == 0)
        printf("no tile kernels on this CPU\n");
    for (int s = 0; s < ns; s++) {
        if (D % sets[s]->panel) {
            printf("tile set %s: head dim %d is not a multiple of its panel (%d), skipped\n", sets[s]->isa, D,
                   sets[s]->panel);
            continue;
        }
        float *q1 = alloc((size_t)n * D * sizeof *q1), *k1 = alloc((size_t)n * D * sizeof *k1);
        float *v1 = alloc((size_t)n * D * sizeof *v1);
        for (size_t i = 0; i < (size_t)n * D; i++)      /* head 0 of each, packed rows */
            q1[i] = q[i / D * H * D + i % D], k1[i] = k[i / D * H * D + i % D], v1[i] = v[i / D * H * D + i % D];
        bench_set(sets[s], n, D, repeat, q1, k1, v1, seed);
        free(q1), free(k1), free(v1);
    }
}
#endif

static int arg_int(int argc, char **argv, int *i, const char *name, int lo)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "bench_attention: %s needs a value\n", name);
        exit(2);
    }
    char *end;
    const long x = strtol(argv[++*i], &end, 10);
    if (*end || x < lo || x > 1 << 20) {
        fprintf(stderr, "bench_attention: %s: '%s' is not an integer from %d\n", name, argv[*i], lo);
        exit(2);
    }
    return (int)x;
}

int main(int argc, char **argv)
{
    int n = 8160, H = 12, D = 64, threads = 2, repeat = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--keys"))
            n = arg_int(argc, argv, &i, "--keys", 2);
        else if (!strcmp(argv[i], "--heads"))
            H = arg_int(argc, argv, &i, "--heads", 1);
        else if (!strcmp(argv[i], "--dim"))
            D = arg_int(argc, argv, &i, "--dim", 1);
        else if (!strcmp(argv[i], "--threads"))
            threads = arg_int(argc, argv, &i, "--threads", 1);
        else if (!strcmp(argv[i], "--repeat"))
            repeat = arg_int(argc, argv, &i, "--repeat", 1);
        else {
            fprintf(stderr, "usage: bench_attention [--keys N] [--heads H] [--dim D] [--threads T] [--repeat R]\n");
            return 2;
        }
    }
    uint64_t seed = 1;
    const size_t nv = (size_t)n * H * D;
    qref_real *q = alloc(nv * sizeof *q), *k = alloc(nv * sizeof *k), *v = alloc(nv * sizeof *v);
    qref_real *o = alloc(nv * sizeof *o);
    for (size_t i = 0; i < nv; i++) {
        q[i] = (qref_real)(uniform(&seed) - 0.5);
        k[i] = (qref_real)(uniform(&seed) - 0.5);
        v[i] = (qref_real)(uniform(&seed) - 0.5);
    }
    printf("shape: %d queries against %d keys, head dim %d, blocks of %d keys\n", n, n, D, KB);
#if !defined(QREF_PRECISION_F64)
    bench_sets(n, H, D, repeat, q, k, v, &seed);
#else
    printf("no tile kernels in the double build\n");
#endif
    qref_set_threads(threads);
    qref_real *scratch = alloc(qref__attention_scratch(n, H, D) * sizeof *scratch);
    double best = INFINITY;
    for (int rep = 0; rep < repeat; rep++) {
        const double t0 = now();
        qref__attention(o, q, k, v, NULL, n, n, n - 1, H, H, D, 1.0 / sqrt((double)D), scratch);
        best = fmin(best, now() - t0);
    }
    const char *tiles = qref__tiles() ? qref__tiles()->isa : "none (BLAS walk)";
    printf("qref__attention: %d heads, %d threads, tiles %s\n", H, threads, tiles);
    report("  whole attention", best, (double)n * n * H, 4.0 * D);
    free(q), free(k), free(v), free(o), free(scratch);
    return 0;
}
