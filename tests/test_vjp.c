/* SPDX-License-Identifier: MIT */
/*
 * The reference backward passes (reference/qref_vjp.h) against float64 autograd of
 * transformers' own functions (golden/gradients.h5, written by golden/export_grad.py):
 * the gated delta rule (recurrent and chunked VJPs), the causal conv with carried state (one
 * call, and chained over a chunk edge), the l2 norm with zero rows, both RMSNorms, 3-axis MRoPE,
 * and whole GDN / attention decoder layers of the tiny dense and MoE checkpoints.
 * Also: chunked vs recurrent VJP agreement over chunk lengths, central finite differences on a
 * few coordinates of every input (double build), non-finite gradients caught, and every planted
 * backward bug (qref_vjp_internal.h) caught by the goldens while the same check passes without it.
 *
 * Error measure, per gradient: max |a - e| / max |e| (a: this engine, e: autograd), printed for
 * every gradient. Bounds per build, each about 10x to 100x the floor measured when they were set
 * (the measured worst is written next to each bound).
 */
#include <check.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "h5io.h"
#include "qref_internal.h"
#include "qref_vjp_internal.h"
#include "check_main.h"

#define GOLD LC_SOURCE_DIR "/golden/gradients.h5"

#if defined(QREF_PRECISION_F64)
#define B_GDN 2e-14       /* measured worst 7.7e-16 (n70 chunked grad_q) */
#define B_CONV 1e-14      /* measured 3.5e-16 */
#define B_NORM 1e-14      /* measured 3.4e-16 (l2norm 8.9e-17) */
#define B_ROPE 1e-14      /* measured 0: the same angles and products as autograd */
#define B_LAYER 5e-13     /* measured 1.3e-14 (moe_gdn chunked A_log) */
#define B_AGREE 5e-14     /* chunked vs recurrent VJP, measured 1.5e-15 */
#else
#define B_GDN 5e-6        /* measured worst 2.0e-7 (n70 chunked grad_g) */
#define B_CONV 5e-6       /* measured 1.6e-7 */
#define B_NORM 2e-6       /* measured 8.7e-8 */
#define B_ROPE 2e-6       /* measured 7.9e-8 */
#define B_LAYER 2e-4      /* measured 7.6e-6 (dense_gdn chunked A_log) */
#define B_AGREE 1e-5      /* chunked vs recurrent VJP, measured 3.8e-7 */
#endif

/* ---------------------------------------------------------------- helpers */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_ptr_nonnull(p);
    return p;
}
#define NEW_REAL(n) ((qref_real *)xcalloc((size_t)(n), sizeof(qref_real)))

/* Dataset as double; its element count must be `expect` (0: any); *cnt receives it. */
static double *rd(const lc_h5 *f, const char *path, size_t expect, size_t *cnt)
{
    double *d = NULL;
    lc_h5_shape sh;
    lc_error le;
    ck_assert_msg(lc_h5_read_f64(f, path, &d, &sh, &le) == 0, "%s", le.msg);
    ck_assert_msg(!expect || sh.count == expect, "%s: %zu values, expected %zu", path, sh.count, expect);
    if (cnt)
        *cnt = sh.count;
    return d;
}

/* Dataset converted to qref_real. */
static qref_real *rdr(const lc_h5 *f, const char *path, size_t expect)
{
    size_t cnt;
    double *d = rd(f, path, expect, &cnt);
    qref_real *r = NEW_REAL(cnt);
    for (size_t i = 0; i < cnt; i++)
        r[i] = (qref_real)d[i];
    free(d);
    return r;
}

/* max |a - e| / max |e|; infinite when a holds a non-finite value. */
static double rel_err(const qref_real *a, const double *e, size_t cnt, size_t *at)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (!isfinite((double)a[i])) {
            if (at)
                *at = i;
            return INFINITY;
        }
        const double d = fabs((double)a[i] - e[i]);
        if (d > num) {
            num = d;
            if (at)
                *at = i;
        }
        den = fmax(den, fabs(e[i]));
    }
    return den > 0 ? num / den : num;
}

/* The worst gradient of one check: error / bound, and which gradient it was. */
typedef struct {
    double ratio;
    double err;
    char worst[160];
    int nonfinite;
} score;

static void score_add(score *s, const char *what, const qref_real *a, const double *e, size_t cnt, double bound,
                      int verbose)
{
    size_t at = 0;
    const double err = rel_err(a, e, cnt, &at);
    if (isinf(err))
        s->nonfinite++;
    if (verbose)
        printf("vjp %-48s rel %.2e (bound %.0e)%s\n", what, err, bound, isinf(err) ? " NON-FINITE" : "");
    if (!(err / bound <= s->ratio)) {
        s->ratio = err / bound;
        s->err = err;
        snprintf(s->worst, sizeof s->worst, "%s: rel %.3g at element %zu (%.17g, expected %.17g), bound %.3g", what,
                 err, at, cnt ? (double)a[at] : 0.0, cnt ? e[at] : 0.0, bound);
    }
}

static void score_assert(const score *s, const char *check)
{
    ck_assert_msg(s->ratio <= 1.0, "%s: %s", check, s->worst);
}

static void open_gold(lc_h5 *f)
{
    lc_error le;
    ck_assert_msg(lc_h5_open(f, GOLD, &le) == 0, "%s", le.msg);
}

/* ---------------------------------------------------------------- gated delta rule */

enum { GDN_HK = 2, GDN_HV = 4, GDN_DK = 16, GDN_DV = 32 };

typedef struct {
    int n, chunk;
    qref_real *q, *k, *v, *g, *beta, *s0, *dO, *dS;
} gdn_in;

static void gdn_in_load(gdn_in *x, const lc_h5 *f, const char *grp, int n, int chunk)
{
    char p[256];
    const size_t nk = (size_t)n * GDN_HK * GDN_DK, nv = (size_t)n * GDN_HV * GDN_DV, nh = (size_t)n * GDN_HV;
    const size_t ss = (size_t)GDN_HV * GDN_DK * GDN_DV;
    x->n = n, x->chunk = chunk;
#define LOAD(field, name, cnt) (snprintf(p, sizeof p, "%s/%s", grp, name), x->field = rdr(f, p, cnt))
    LOAD(q, "q", nk), LOAD(k, "k", nk), LOAD(v, "v", nv), LOAD(g, "g", nh), LOAD(beta, "beta", nh);
    LOAD(s0, "state0", ss), LOAD(dO, "d_out", nv), LOAD(dS, "d_state", ss);
#undef LOAD
    /* the kernels take q already scaled by 1/sqrt(Dk); transformers scales it inside */
    for (size_t i = 0; i < nk; i++)
        x->q[i] = (qref_real)(x->q[i] / sqrt((double)GDN_DK));
}

static void gdn_in_free(gdn_in *x)
{
    free(x->q), free(x->k), free(x->v), free(x->g), free(x->beta), free(x->s0), free(x->dO), free(x->dS);
}

typedef struct {
    qref_real *dq, *dk, *dv, *dg, *db, *ds0;
} gdn_out;

static void gdn_out_alloc(gdn_out *o, int n)
{
    o->dq = NEW_REAL((size_t)n * GDN_HK * GDN_DK), o->dk = NEW_REAL((size_t)n * GDN_HK * GDN_DK);
    o->dv = NEW_REAL((size_t)n * GDN_HV * GDN_DV), o->dg = NEW_REAL((size_t)n * GDN_HV);
    o->db = NEW_REAL((size_t)n * GDN_HV), o->ds0 = NEW_REAL((size_t)GDN_HV * GDN_DK * GDN_DV);
}

static void gdn_out_free(gdn_out *o)
{
    free(o->dq), free(o->dk), free(o->dv), free(o->dg), free(o->db), free(o->ds0);
}

/* chunk 0: the recurrent VJP */
static void gdn_vjp(gdn_out *o, const gdn_in *x, int chunk, const qref_vjp_faults *f)
{
    const int n = x->n;
    size_t len = chunk ? qref_vjp_gdn_chunked_scratch(n, chunk, GDN_DK, GDN_DV)
                       : qref_vjp_gdn_recurrent_scratch(n, GDN_DK, GDN_DV);
    qref_real *w = NEW_REAL(len);
    if (chunk)
        qref__vjp_gdn_chunked(o->dq, o->dk, o->dv, o->dg, o->db, o->ds0, x->dO, x->dS, x->q, x->k, x->v, x->g, x->beta,
                              x->s0, n, GDN_HK, GDN_HV, GDN_DK, GDN_DV, chunk, w, f);
    else
        qref__vjp_gdn_recurrent(o->dq, o->dk, o->dv, o->dg, o->db, o->ds0, x->dO, x->dS, x->q, x->k, x->v, x->g,
                                x->beta, x->s0, n, GDN_HK, GDN_HV, GDN_DK, GDN_DV, w, f);
    free(w);
}

static const struct { const char *name; int n, chunk; } gdn_cases[] = {
    {"n70_chunk64", 70, 64},
    {"n9_chunk4", 9, 4},
};

/* form 0: recurrent VJP vs the recurrent autograd golden; 1: chunked VJP (the case's chunk) vs
 * the chunked golden. */
static score check_gdn(int c, int form, const qref_vjp_faults *f, int verbose)
{
    lc_h5 h5;
    open_gold(&h5);
    char grp[128], p[256], what[160];
    snprintf(grp, sizeof grp, "gdn/%s", gdn_cases[c].name);
    gdn_in x;
    gdn_in_load(&x, &h5, grp, gdn_cases[c].n, gdn_cases[c].chunk);
    gdn_out o;
    gdn_out_alloc(&o, x.n);
    gdn_vjp(&o, &x, form ? x.chunk : 0, f);
    const double qs = 1.0 / sqrt((double)GDN_DK);
    for (size_t i = 0; i < (size_t)x.n * GDN_HK * GDN_DK; i++)
        o.dq[i] = (qref_real)(o.dq[i] * qs);                   /* d/d(unscaled q) */
    static const char *names[6] = {"grad_q", "grad_k", "grad_v", "grad_g", "grad_beta", "grad_state0"};
    qref_real *got[6] = {o.dq, o.dk, o.dv, o.dg, o.db, o.ds0};
    score s = {0};
    for (int i = 0; i < 6; i++) {
        size_t cnt;
        snprintf(p, sizeof p, "%s/%s/%s", grp, form ? "chunked" : "recurrent", names[i]);
        double *e = rd(&h5, p, 0, &cnt);
        snprintf(what, sizeof what, "gdn %s %s %s", gdn_cases[c].name, form ? "chunked" : "recurrent", names[i]);
        score_add(&s, what, got[i], e, cnt, B_GDN, verbose);
        free(e);
    }
    gdn_out_free(&o);
    gdn_in_free(&x);
    lc_h5_close(&h5);
    return s;
}

START_TEST(test_vjp_gdn_golden)
{
    const int c = _i / 2, form = _i % 2;
    score s = check_gdn(c, form, NULL, 1);
    score_assert(&s, "gated delta rule VJP vs autograd");
}
END_TEST

/* splitmix64 */
static double rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static void fill(qref_real *a, size_t n, uint64_t *s, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (qref_real)(lo + (hi - lo) * rnd(s));
}

/* Random unit-norm q (scaled) and k rows, decays, betas, states and output gradients. */
static void gdn_in_random(gdn_in *x, int n, uint64_t seed)
{
    uint64_t s = seed;
    const size_t nk = (size_t)n * GDN_HK * GDN_DK, nv = (size_t)n * GDN_HV * GDN_DV, nh = (size_t)n * GDN_HV;
    const size_t ss = (size_t)GDN_HV * GDN_DK * GDN_DV;
    x->n = n, x->chunk = 0;
    x->q = NEW_REAL(nk), x->k = NEW_REAL(nk), x->v = NEW_REAL(nv), x->g = NEW_REAL(nh), x->beta = NEW_REAL(nh);
    x->s0 = NEW_REAL(ss), x->dO = NEW_REAL(nv), x->dS = NEW_REAL(ss);
    fill(x->q, nk, &s, -1, 1), fill(x->k, nk, &s, -1, 1), fill(x->v, nv, &s, -1, 1);
    fill(x->g, nh, &s, -0.5, -0.01), fill(x->beta, nh, &s, 0.05, 0.95), fill(x->s0, ss, &s, -0.3, 0.3);
    fill(x->dO, nv, &s, -1, 1), fill(x->dS, ss, &s, -1, 1);
    qref__l2norm(x->q, n * GDN_HK, GDN_DK, 1e-6);
    qref__l2norm(x->k, n * GDN_HK, GDN_DK, 1e-6);
    for (size_t i = 0; i < nk; i++)
        x->q[i] = (qref_real)(x->q[i] / sqrt((double)GDN_DK));
}

static double rel_err_real(const qref_real *a, const qref_real *e, size_t cnt)
{
    double *d = xcalloc(cnt, sizeof *d);
    for (size_t i = 0; i < cnt; i++)
        d[i] = e[i];
    double r = rel_err(a, d, cnt, NULL);
    free(d);
    return r;
}

static const int agree_chunks[] = {1, 3, 16, 64, 100};

START_TEST(test_vjp_gdn_chunked_matches_recurrent)
{
    const int chunk = agree_chunks[_i], n = 70;
    gdn_in x;
    gdn_in_random(&x, n, 901);
    gdn_out r, c;
    gdn_out_alloc(&r, n), gdn_out_alloc(&c, n);
    gdn_vjp(&r, &x, 0, NULL);
    gdn_vjp(&c, &x, chunk, NULL);
    const size_t cnt[6] = {(size_t)n * GDN_HK * GDN_DK, (size_t)n * GDN_HK * GDN_DK, (size_t)n * GDN_HV * GDN_DV,
                           (size_t)n * GDN_HV, (size_t)n * GDN_HV, (size_t)GDN_HV * GDN_DK * GDN_DV};
    qref_real *a[6] = {c.dq, c.dk, c.dv, c.dg, c.db, c.ds0}, *e[6] = {r.dq, r.dk, r.dv, r.dg, r.db, r.ds0};
    static const char *names[6] = {"dq", "dk", "dv", "dg", "dbeta", "dstate0"};
    double worst = 0;
    for (int i = 0; i < 6; i++) {
        double err = rel_err_real(a[i], e[i], cnt[i]);
        worst = fmax(worst, err);
        ck_assert_msg(err <= B_AGREE, "chunk %d: %s differs from the recurrent VJP by %.3g (bound %.3g)", chunk,
                      names[i], err, B_AGREE);
    }
    printf("vjp gdn chunked (chunk %3d) vs recurrent, n=%d: worst rel %.2e (bound %.0e)\n", chunk, n, worst, B_AGREE);
    gdn_out_free(&r), gdn_out_free(&c);
    gdn_in_free(&x);
}
END_TEST

/* A NULL output gradient means the loss does not depend on that output: the same gradients,
 * bit for bit, as an explicit zero gradient. */
START_TEST(test_vjp_null_output_gradients)
{
    const int n = 11;
    const size_t nv = (size_t)n * GDN_HV * GDN_DV, ss = (size_t)GDN_HV * GDN_DK * GDN_DV;
    const size_t cnt[6] = {(size_t)n * GDN_HK * GDN_DK, (size_t)n * GDN_HK * GDN_DK, nv, (size_t)n * GDN_HV,
                           (size_t)n * GDN_HV, ss};
    for (int form = 0; form < 2; form++)
        for (int which = 0; which < 2; which++) {
            gdn_in x;
            gdn_in_random(&x, n, 31 + (uint64_t)which);
            gdn_out a, b;
            gdn_out_alloc(&a, n), gdn_out_alloc(&b, n);
            qref_real *keep = which ? x.dS : x.dO;
            if (which)
                memset(x.dS, 0, ss * sizeof *x.dS);
            else
                memset(x.dO, 0, nv * sizeof *x.dO);
            gdn_vjp(&a, &x, form ? 4 : 0, NULL);
            if (which)
                x.dS = NULL;
            else
                x.dO = NULL;
            gdn_vjp(&b, &x, form ? 4 : 0, NULL);
            if (which)
                x.dS = keep;
            else
                x.dO = keep;
            qref_real *pa[6] = {a.dq, a.dk, a.dv, a.dg, a.db, a.ds0}, *pb[6] = {b.dq, b.dk, b.dv, b.dg, b.db, b.ds0};
            for (int i = 0; i < 6; i++)
                ck_assert_msg(!memcmp(pa[i], pb[i], cnt[i] * sizeof(qref_real)),
                              "%s VJP: NULL %s differs from a zero one (gradient %d)", form ? "chunked" : "recurrent",
                              which ? "d_state" : "d_out", i);
            gdn_out_free(&a), gdn_out_free(&b);
            gdn_in_free(&x);
        }
    /* the conv */
    enum { N = 7, C = 3, K = 4, S = 3 };
    uint64_t sd = 5;
    qref_real x[N * C], s0[S * C], w[C * K], z1[N * C] = {0}, z2[S * C] = {0}, g1[N * C], g2[S * C];
    qref_real dxa[N * C], dwa[C * K], dsa[S * C], dxb[N * C], dwb[C * K], dsb[S * C];
    fill(x, N * C, &sd, -1, 1), fill(s0, S * C, &sd, -1, 1), fill(w, C * K, &sd, -1, 1);
    fill(g1, N * C, &sd, -1, 1), fill(g2, S * C, &sd, -1, 1);
    qref_vjp_conv1d_causal_silu(dxa, dwa, dsa, z1, g2, x, s0, w, N, C, K);
    qref_vjp_conv1d_causal_silu(dxb, dwb, dsb, NULL, g2, x, s0, w, N, C, K);
    ck_assert(!memcmp(dxa, dxb, sizeof dxa) && !memcmp(dwa, dwb, sizeof dwa) && !memcmp(dsa, dsb, sizeof dsa));
    qref_vjp_conv1d_causal_silu(dxa, dwa, dsa, g1, z2, x, s0, w, N, C, K);
    qref_vjp_conv1d_causal_silu(dxb, dwb, dsb, g1, NULL, x, s0, w, N, C, K);
    ck_assert(!memcmp(dxa, dxb, sizeof dxa) && !memcmp(dwa, dwb, sizeof dwa) && !memcmp(dsa, dsb, sizeof dsa));
}
END_TEST

/* ---------------------------------------------------------------- causal conv */

enum { CONV_N = 70, CONV_C = 24, CONV_K = 4 };

/* How the 70 tokens are cut: one call; the chunk edge at 64; and pieces shorter than the
 * K-1 = 3 rows of state, whose outgoing state still holds rows of the incoming one. */
static const struct { const char *name; int len[5]; } conv_pieces[] = {
    {"conv one call", {70}},
    {"conv chunks 64+6", {64, 6}},
    {"conv chunks 64+4+1+1", {64, 4, 1, 1}},
};

static score check_conv(int pc, const qref_vjp_faults *f, int verbose)
{
    lc_h5 h5;
    open_gold(&h5);
    const int n = CONV_N, C = CONV_C, K = CONV_K, S = K - 1;
    qref_real *x = rdr(&h5, "conv/x", (size_t)n * C), *s0 = rdr(&h5, "conv/state0", (size_t)S * C);
    qref_real *w = rdr(&h5, "conv/w", (size_t)C * K), *dO = rdr(&h5, "conv/d_out", (size_t)n * C);
    qref_real *dS = rdr(&h5, "conv/d_state", (size_t)S * C);
    qref_real *dx = NEW_REAL((size_t)n * C), *dw = NEW_REAL((size_t)C * K), *dwp = NEW_REAL((size_t)C * K);
    qref_real *ds = NEW_REAL((size_t)S * C), *dsp = NEW_REAL((size_t)S * C), *states = NEW_REAL((size_t)5 * S * C);
    qref_real *tmp = NEW_REAL((size_t)n * C);
    int start[5], np = 0;
    for (int t = 0; t < n; t += conv_pieces[pc].len[np++])
        start[np] = t;
    /* forward: the state entering each piece */
    memcpy(states, s0, (size_t)S * C * sizeof *states);
    for (int p = 0; p + 1 < np; p++) {
        memcpy(states + (size_t)(p + 1) * S * C, states + (size_t)p * S * C, (size_t)S * C * sizeof *states);
        qref__conv1d_causal_silu(tmp, x + (size_t)start[p] * C, states + (size_t)(p + 1) * S * C, w,
                                 conv_pieces[pc].len[p], C, K);
    }
    /* backward: last piece first, each incoming-state gradient handed to the piece before */
    memcpy(ds, dS, (size_t)S * C * sizeof *ds);
    for (int p = np - 1; p >= 0; p--) {
        const size_t o = (size_t)start[p] * C;
        qref__vjp_conv1d_causal_silu(dx + o, dwp, dsp, dO + o, ds, x + o, states + (size_t)p * S * C, w,
                                     conv_pieces[pc].len[p], C, K, f);
        memcpy(ds, dsp, (size_t)S * C * sizeof *ds);
        for (int i = 0; i < C * K; i++)
            dw[i] += dwp[i];
    }
    score s = {0};
    char what[160];
    static const char *names[3] = {"grad_x", "grad_w", "grad_state0"};
    qref_real *got[3] = {dx, dw, ds};
    for (int i = 0; i < 3; i++) {
        char p[64];
        size_t cnt;
        snprintf(p, sizeof p, "conv/%s", names[i]);
        double *e = rd(&h5, p, 0, &cnt);
        snprintf(what, sizeof what, "%s %s", conv_pieces[pc].name, names[i]);
        score_add(&s, what, got[i], e, cnt, B_CONV, verbose);
        free(e);
    }
    free(x), free(s0), free(w), free(dO), free(dS), free(dx), free(dw), free(dwp), free(ds), free(dsp), free(states);
    free(tmp);
    lc_h5_close(&h5);
    return s;
}

START_TEST(test_vjp_conv_golden)
{
    score s = check_conv(_i, NULL, 1);
    score_assert(&s, "causal conv VJP vs autograd");
}
END_TEST

/* ---------------------------------------------------------------- norms and rotary */

static score check_l2norm(const qref_vjp_faults *f, int verbose)
{
    lc_h5 h5;
    open_gold(&h5);
    const int rows = 12 * 2, dim = 16;
    qref_real *x = rdr(&h5, "l2norm/x", (size_t)rows * dim), *dy = rdr(&h5, "l2norm/d_out", (size_t)rows * dim);
    qref_real *dx = NEW_REAL((size_t)rows * dim);
    double *e = rd(&h5, "l2norm/grad_x", (size_t)rows * dim, NULL);
    qref__vjp_l2norm(dx, dy, x, rows, dim, 1e-6, f);
    score s = {0};
    score_add(&s, "l2norm grad_x (zero rows included)", dx, e, (size_t)rows * dim, B_NORM, verbose);
    free(x), free(dy), free(dx), free(e);
    lc_h5_close(&h5);
    return s;
}

START_TEST(test_vjp_l2norm_golden)
{
    score s = check_l2norm(NULL, 1);
    score_assert(&s, "l2norm VJP vs autograd");
}
END_TEST

static score check_rmsnorms(int verbose)
{
    lc_h5 h5;
    open_gold(&h5);
    score s = {0};
    {
        const int m = 20, D = 32;
        qref_real *x = rdr(&h5, "rmsnorm_gated/x", (size_t)m * D), *z = rdr(&h5, "rmsnorm_gated/z", (size_t)m * D);
        qref_real *w = rdr(&h5, "rmsnorm_gated/w", D), *dO = rdr(&h5, "rmsnorm_gated/d_out", (size_t)m * D);
        qref_real *dx = NEW_REAL((size_t)m * D), *dz = NEW_REAL((size_t)m * D), *dw = NEW_REAL(D);
        double *ex = rd(&h5, "rmsnorm_gated/grad_x", (size_t)m * D, NULL);
        double *ez = rd(&h5, "rmsnorm_gated/grad_z", (size_t)m * D, NULL);
        double *ew = rd(&h5, "rmsnorm_gated/grad_w", D, NULL);
        qref_vjp_rmsnorm_gated(dx, dz, dw, dO, x, z, w, m, D, 1e-6);
        score_add(&s, "rmsnorm_gated grad_x", dx, ex, (size_t)m * D, B_NORM, verbose);
        score_add(&s, "rmsnorm_gated grad_z", dz, ez, (size_t)m * D, B_NORM, verbose);
        score_add(&s, "rmsnorm_gated grad_w", dw, ew, D, B_NORM, verbose);
        free(x), free(z), free(w), free(dO), free(dx), free(dz), free(dw), free(ex), free(ez), free(ew);
    }
    {
        const int m = 20, D = 64;
        qref_real *x = rdr(&h5, "rmsnorm/x", (size_t)m * D), *w = rdr(&h5, "rmsnorm/w", D);
        qref_real *dO = rdr(&h5, "rmsnorm/d_out", (size_t)m * D);
        qref_real *dx = NEW_REAL((size_t)m * D), *dw = NEW_REAL(D);
        double *ex = rd(&h5, "rmsnorm/grad_x", (size_t)m * D, NULL), *ew = rd(&h5, "rmsnorm/grad_w", D, NULL);
        qref_vjp_rmsnorm(dx, dw, dO, x, w, m, D, 1e-6);
        score_add(&s, "rmsnorm (1+w) grad_x", dx, ex, (size_t)m * D, B_NORM, verbose);
        score_add(&s, "rmsnorm (1+w) grad_w", dw, ew, D, B_NORM, verbose);
        free(x), free(w), free(dO), free(dx), free(dw), free(ex), free(ew);
    }
    lc_h5_close(&h5);
    return s;
}

START_TEST(test_vjp_rmsnorms_golden)
{
    score s = check_rmsnorms(1);
    score_assert(&s, "RMSNorm VJPs vs autograd");
}
END_TEST

enum { RoN = 36, RoHQ = 4, RoHKV = 2, RoD = 64, RoR = 16 };
static const int rope_section[3] = {3, 3, 2};

static score check_mrope(const qref_vjp_faults *f, int verbose)
{
    lc_h5 h5;
    open_gold(&h5);
    const int n = RoN, half = RoR / 2;
    int64_t *pos = NULL;
    lc_h5_shape sh;
    lc_error le;
    ck_assert_msg(lc_h5_read_i64(&h5, "mrope/position_ids", &pos, &sh, &le) == 0, "%s", le.msg);
    ck_assert_int_eq((int)sh.count, 3 * n);
    qref_real *ct = NEW_REAL((size_t)n * half), *st = NEW_REAL((size_t)n * half);
    qref__mrope_angles(ct, st, pos, n, RoR, 10000.0, rope_section, 1);
    score s = {0};
    static const char *ins[2] = {"q", "k"}, *dys[2] = {"d_q", "d_k"}, *outs[2] = {"q_out", "k_out"};
    static const char *gs[2] = {"grad_q", "grad_k"};
    const int heads[2] = {RoHQ, RoHKV};
    for (int i = 0; i < 2; i++) {
        char p[64], what[96];
        const size_t cnt = (size_t)n * heads[i] * RoD;
        snprintf(p, sizeof p, "mrope/%s", ins[i]);
        qref_real *x = rdr(&h5, p, cnt);
        snprintf(p, sizeof p, "mrope/%s", dys[i]);
        qref_real *dy = rdr(&h5, p, cnt);
        snprintf(p, sizeof p, "mrope/%s", outs[i]);
        double *eo = rd(&h5, p, cnt, NULL);
        snprintf(p, sizeof p, "mrope/%s", gs[i]);
        double *eg = rd(&h5, p, cnt, NULL);
        /* the forward rotation first: proves the tables match transformers' 3-axis angles */
        qref__rope_apply(x, ct, st, n, heads[i], RoD, RoR);
        snprintf(what, sizeof what, "mrope forward %s", outs[i]);
        score_add(&s, what, x, eo, cnt, B_ROPE, verbose);
        qref__vjp_rope(dy, dy, ct, st, n, heads[i], RoD, RoR, f);   /* in place */
        snprintf(what, sizeof what, "mrope %s", gs[i]);
        score_add(&s, what, dy, eg, cnt, B_ROPE, verbose);
        free(x), free(dy), free(eo), free(eg);
    }
    free(pos), free(ct), free(st);
    lc_h5_close(&h5);
    return s;
}

START_TEST(test_vjp_mrope_golden)
{
    score s = check_mrope(NULL, 1);
    score_assert(&s, "MRoPE VJP vs autograd");
}
END_TEST

/* ---------------------------------------------------------------- whole decoder layers */

/* transformers' parameter names and where their gradients land */
static const struct { const char *name; size_t off; } layer_params[] = {
#define P(n, field) {n, offsetof(qref_layer_grads, field)}
    P("input_layernorm.weight", input_norm), P("post_attention_layernorm.weight", post_norm),
    P("linear_attn.in_proj_qkv.weight", in_proj_qkv), P("linear_attn.in_proj_z.weight", in_proj_z),
    P("linear_attn.in_proj_b.weight", in_proj_b), P("linear_attn.in_proj_a.weight", in_proj_a),
    P("linear_attn.conv1d.weight", conv_w), P("linear_attn.dt_bias", dt_bias), P("linear_attn.A_log", A_log),
    P("linear_attn.norm.weight", gdn_norm), P("linear_attn.out_proj.weight", out_proj),
    P("self_attn.q_proj.weight", q_proj), P("self_attn.k_proj.weight", k_proj), P("self_attn.v_proj.weight", v_proj),
    P("self_attn.o_proj.weight", o_proj), P("self_attn.q_norm.weight", q_norm), P("self_attn.k_norm.weight", k_norm),
    P("mlp.gate_proj.weight", gate_proj), P("mlp.up_proj.weight", up_proj), P("mlp.down_proj.weight", down_proj),
    P("mlp.gate.weight", router), P("mlp.experts.gate_up_proj", experts_gate_up),
    P("mlp.experts.down_proj", experts_down), P("mlp.shared_expert.gate_proj.weight", shared_gate_proj),
    P("mlp.shared_expert.up_proj.weight", shared_up_proj), P("mlp.shared_expert.down_proj.weight", shared_down_proj),
    P("mlp.shared_expert_gate.weight", shared_expert_gate),
#undef P
};
#define N_LAYER_PARAMS (sizeof layer_params / sizeof layer_params[0])

static qref_real *grad_field(qref_layer_grads *g, size_t off) { return *(qref_real **)(void *)((char *)g + off); }

/* Elements from p to the next field in the block (or the block end): what p may hold. */
static size_t field_room(qref_layer_grads *g, const qref_real *p)
{
    const qref_real *end = g->block + g->block_len;
    for (size_t i = 0; i < N_LAYER_PARAMS; i++) {
        const qref_real *q = grad_field(g, layer_params[i].off);
        if (q && q > p && q < end)
            end = q;
    }
    return (size_t)(end - p);
}

static const struct { const char *name, *ckpt; int mode; } layer_cases[] = {
    {"dense_gdn", "golden/tiny-dense", QREF_GDN_CHUNKED},
    {"dense_gdn", "golden/tiny-dense", QREF_GDN_RECURRENT},
    {"dense_gdn_padded", "golden/tiny-dense", QREF_GDN_CHUNKED},
    {"dense_attn", "golden/tiny-dense", QREF_GDN_AUTO},
    {"moe_gdn", "golden/tiny-moe", QREF_GDN_CHUNKED},
    {"moe_gdn_padded", "golden/tiny-moe", QREF_GDN_RECURRENT},
    {"moe_attn", "golden/tiny-moe", QREF_GDN_AUTO},
};

typedef struct {
    qref_model m;
    int layer, n;
    qref_real *x, *dO;
    uint8_t *mask;
    int64_t *pos;
} layer_in;

static void layer_in_load(layer_in *L, const lc_h5 *h5, int c)
{
    char p[256], dir[4096];
    qref_error qe;
    lc_error le;
    lc_h5_shape sh;
    snprintf(dir, sizeof dir, "%s/%s", LC_SOURCE_DIR, layer_cases[c].ckpt);
    memset(L, 0, sizeof *L);
    ck_assert_msg(qref_model_load(&L->m, dir, &qe) == QREF_OK, "%s", qe.msg);
    int64_t *mask = NULL;
    snprintf(p, sizeof p, "layers/%s/mask", layer_cases[c].name);
    ck_assert_msg(lc_h5_read_i64(h5, p, &mask, &sh, &le) == 0, "%s", le.msg);
    L->n = (int)sh.count;
    L->mask = xcalloc((size_t)L->n, 1);
    for (int t = 0; t < L->n; t++)
        L->mask[t] = (uint8_t)(mask[t] != 0);
    free(mask);
    snprintf(p, sizeof p, "layers/%s/position_ids", layer_cases[c].name);
    ck_assert_msg(lc_h5_read_i64(h5, p, &L->pos, &sh, &le) == 0, "%s", le.msg);
    const size_t NH = (size_t)L->n * L->m.cfg.hidden_size;
    snprintf(p, sizeof p, "layers/%s/x", layer_cases[c].name);
    L->x = rdr(h5, p, NH);
    snprintf(p, sizeof p, "layers/%s/d_out", layer_cases[c].name);
    L->dO = rdr(h5, p, NH);
    /* the layer index: the first GDN or the first attention layer, as the exporter chose */
    const int want = strstr(layer_cases[c].name, "attn") ? QREF_LAYER_FULL : QREF_LAYER_LINEAR;
    L->layer = -1;
    for (int l = 0; l < L->m.cfg.num_layers && L->layer < 0; l++)
        if (L->m.cfg.layer_types[l] == want)
            L->layer = l;
    ck_assert_int_ge(L->layer, 0);
}

static void layer_in_free(layer_in *L)
{
    qref_model_free(&L->m);
    free(L->x), free(L->dO), free(L->mask), free(L->pos);
}

static void layer_run(layer_in *L, int mode, qref_real *out, qref_real *dx, qref_layer_grads *g,
                      const qref_vjp_faults *f)
{
    qref_error qe;
    const qref_layer_input in = {.x = L->x, .n = L->n, .mask = L->mask, .pos = L->pos, .gdn_mode = mode,
                                 .gdn_chunk = 64};
    ck_assert_msg(qref__vjp_decoder_layer(&L->m, L->layer, &in, L->dO, out, dx, g, f, &qe) == QREF_OK, "%s", qe.msg);
}

static score check_layer(int c, const qref_vjp_faults *f, int verbose)
{
    lc_h5 h5;
    open_gold(&h5);
    layer_in L;
    layer_in_load(&L, &h5, c);
    qref_error qe;
    qref_layer_grads g;
    ck_assert_msg(qref_layer_grads_init(&g, &L.m, L.layer, &qe) == QREF_OK, "%s", qe.msg);
    const size_t NH = (size_t)L.n * L.m.cfg.hidden_size;
    qref_real *out = NEW_REAL(NH), *dx = NEW_REAL(NH);
    layer_run(&L, layer_cases[c].mode, out, dx, &g, f);
    const char *mode = layer_cases[c].mode == QREF_GDN_RECURRENT ? "recurrent" :
                       layer_cases[c].mode == QREF_GDN_CHUNKED ? "chunked" : "";
    score s = {0};
    char p[256], what[160];
    snprintf(p, sizeof p, "layers/%s/out", layer_cases[c].name);
    double *e = rd(&h5, p, NH, NULL);
    snprintf(what, sizeof what, "layer %s %s out", layer_cases[c].name, mode);
    score_add(&s, what, out, e, NH, B_LAYER, verbose);
    free(e);
    snprintf(p, sizeof p, "layers/%s/grad_x", layer_cases[c].name);
    e = rd(&h5, p, NH, NULL);
    snprintf(what, sizeof what, "layer %s %s grad_x", layer_cases[c].name, mode);
    score_add(&s, what, dx, e, NH, B_LAYER, verbose);
    free(e);
    int checked = 0;
    for (size_t i = 0; i < N_LAYER_PARAMS; i++) {
        qref_real *gp = grad_field(&g, layer_params[i].off);
        if (!gp)
            continue;
        size_t cnt;
        snprintf(p, sizeof p, "layers/%s/grad_w/%s", layer_cases[c].name, layer_params[i].name);
        ck_assert_msg(lc_h5_exists(&h5, p), "%s: no autograd gradient for a weight this layer has", p);
        e = rd(&h5, p, 0, &cnt);
        ck_assert_msg(cnt <= field_room(&g, gp), "%s: %zu values, the gradient block holds %zu", p, cnt,
                      field_room(&g, gp));
        snprintf(what, sizeof what, "layer %s %s %s", layer_cases[c].name, mode, layer_params[i].name);
        score_add(&s, what, gp, e, cnt, B_LAYER, verbose);
        free(e);
        checked++;
    }
    /* every weight transformers has in this layer got a gradient here: param_names is a JSON
     * list, a variable-length UTF-8 string attribute (read with HDF5 itself for its charset) */
    snprintf(p, sizeof p, "layers/%s", layer_cases[c].name);
    hid_t a = H5Aopen_by_name((hid_t)h5.id, p, "param_names", H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(a >= 0, "%s: no attribute param_names", p);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5T_CSET_UTF8);
    char *names = NULL;
    ck_assert_msg(H5Aread(a, mt, &names) >= 0 && names, "%s: cannot read param_names", p);
    int quotes = 0;
    for (const char *q = names; *q; q++)
        quotes += *q == '"';
    H5free_memory(names);
    H5Tclose(mt);
    H5Aclose(a);
    ck_assert_msg(quotes / 2 == checked, "%s: transformers has %d weights, %d were checked", p, quotes / 2, checked);
    free(out), free(dx);
    qref_layer_grads_free(&g);
    layer_in_free(&L);
    lc_h5_close(&h5);
    return s;
}

START_TEST(test_vjp_layer_golden)
{
    score s = check_layer(_i, NULL, 1);
    score_assert(&s, "decoder layer VJP vs autograd");
}
END_TEST

/* The whole GDN layer's VJP through the chunked form (chunks of 1, 16 and 64) agrees with the
 * recurrent form on the input and every weight gradient. */
static const struct { int layer_case, chunk; } layer_agree[] = {{0, 1}, {0, 16}, {0, 64}, {4, 16}};

START_TEST(test_vjp_layer_chunked_matches_recurrent)
{
    lc_h5 h5;
    open_gold(&h5);
    layer_in L;
    const int c = layer_agree[_i].layer_case;
    layer_in_load(&L, &h5, c);
    lc_h5_close(&h5);
    qref_error qe;
    qref_layer_grads gr, gc;
    ck_assert(qref_layer_grads_init(&gr, &L.m, L.layer, &qe) == QREF_OK);
    ck_assert(qref_layer_grads_init(&gc, &L.m, L.layer, &qe) == QREF_OK);
    const size_t NH = (size_t)L.n * L.m.cfg.hidden_size;
    qref_real *dxr = NEW_REAL(NH), *dxc = NEW_REAL(NH);
    qref_layer_input in = {.x = L.x, .n = L.n, .mask = L.mask, .gdn_mode = QREF_GDN_RECURRENT};
    ck_assert(qref_vjp_decoder_layer(&L.m, L.layer, &in, L.dO, NULL, dxr, &gr, &qe) == QREF_OK);
    in.gdn_mode = QREF_GDN_CHUNKED, in.gdn_chunk = layer_agree[_i].chunk;
    ck_assert(qref_vjp_decoder_layer(&L.m, L.layer, &in, L.dO, NULL, dxc, &gc, &qe) == QREF_OK);
    double worst = rel_err_real(dxc, dxr, NH);
    const char *at = "grad_x";
    for (size_t i = 0; i < N_LAYER_PARAMS; i++) {
        qref_real *a = grad_field(&gc, layer_params[i].off), *e = grad_field(&gr, layer_params[i].off);
        if (!a)
            continue;
        const double err = rel_err_real(a, e, field_room(&gr, e));
        if (err > worst)
            worst = err, at = layer_params[i].name;
    }
    printf("vjp layer %s chunked (chunk %2d) vs recurrent: worst rel %.2e (%s; bound %.0e)\n", layer_cases[c].name,
           layer_agree[_i].chunk, worst, at, B_LAYER);
    ck_assert_msg(worst <= B_LAYER, "layer %s chunk %d: %s differs from the recurrent VJP by %.3g", layer_cases[c].name,
                  layer_agree[_i].chunk, at, worst);
    qref_layer_grads_free(&gr), qref_layer_grads_free(&gc);
    free(dxr), free(dxc);
    layer_in_free(&L);
}
END_TEST

/* Misuse is an error with a message, never a wrong gradient. */
START_TEST(test_vjp_layer_errors)
{
    lc_h5 h5;
    open_gold(&h5);
    layer_in L;
    layer_in_load(&L, &h5, 3);                              /* dense_attn */
    lc_h5_close(&h5);
    qref_error qe;
    qref_layer_grads ga, gg;
    ck_assert(qref_layer_grads_init(&ga, &L.m, L.layer, &qe) == QREF_OK);
    ck_assert_int_eq(qref_layer_grads_init(&gg, &L.m, L.m.cfg.num_layers, &qe), QREF_EINVAL);
    ck_assert(gg.block == NULL);
    ck_assert(qref_layer_grads_init(&gg, &L.m, 0, &qe) == QREF_OK);     /* layer 0 is a GDN layer */
    const size_t NH = (size_t)L.n * L.m.cfg.hidden_size;
    qref_real *dx = NEW_REAL(NH);
    qref_layer_input in = {.x = L.x, .n = L.n, .pos = L.pos};
    ck_assert_int_eq(qref_vjp_decoder_layer(&L.m, L.layer, &in, L.dO, NULL, dx, &gg, &qe), QREF_EINVAL);
    ck_assert_msg(strstr(qe.msg, "another layer kind"), "%s", qe.msg);
    ck_assert_int_eq(qref_vjp_decoder_layer(&L.m, -1, &in, L.dO, NULL, dx, &ga, &qe), QREF_EINVAL);
    L.mask[5] = 0;
    in.mask = L.mask;
    ck_assert_int_eq(qref_vjp_decoder_layer(&L.m, L.layer, &in, L.dO, NULL, dx, &ga, &qe), QREF_EUNSUPPORTED);
    ck_assert_msg(strstr(qe.msg, "token 5"), "%s", qe.msg);
    in.mask = NULL;
    in.gdn_mode = 7;
    ck_assert_int_eq(qref_vjp_decoder_layer(&L.m, L.layer, &in, L.dO, NULL, dx, &ga, &qe), QREF_EINVAL);
    in.gdn_mode = QREF_GDN_AUTO;
    ck_assert_int_eq(qref_vjp_decoder_layer(&L.m, L.layer, &in, L.dO, NULL, dx, &ga, &qe), QREF_OK);
    qref_layer_grads_free(&ga), qref_layer_grads_free(&gg), qref_layer_grads_free(&gg);
    free(dx);
    layer_in_free(&L);
}
END_TEST

/* ---------------------------------------------------------------- plants */

typedef score (*check_fn)(const qref_vjp_faults *f);
static score plant_gdn_recurrent(const qref_vjp_faults *f) { return check_gdn(0, 0, f, 0); }
static score plant_gdn_chunked(const qref_vjp_faults *f) { return check_gdn(0, 1, f, 0); }
static score plant_layer_gdn(const qref_vjp_faults *f) { return check_layer(0, f, 0); }
static score plant_conv_chunks(const qref_vjp_faults *f) { return check_conv(1, f, 0); }
static score plant_conv_short_chunks(const qref_vjp_faults *f) { return check_conv(2, f, 0); }
static score plant_mrope(const qref_vjp_faults *f) { return check_mrope(f, 0); }
static score plant_layer_attn(const qref_vjp_faults *f) { return check_layer(3, f, 0); }
static score plant_l2norm(const qref_vjp_faults *f) { return check_l2norm(f, 0); }
static score plant_layer_gdn_padded(const qref_vjp_faults *f) { return check_layer(2, f, 0); }

static const struct {
    const char *fault;
    size_t off;
    const char *check;
    check_fn fn;
} plants[] = {
#define F(name) #name, offsetof(qref_vjp_faults, name)
    {F(gdn_no_decay), "gdn n70 recurrent VJP vs autograd", plant_gdn_recurrent},
    {F(gdn_no_decay), "gdn n70 chunked VJP vs autograd", plant_gdn_chunked},
    {F(beta_no_sigmoid), "dense GDN layer vs autograd", plant_layer_gdn},
    {F(conv_state_dropped), "conv over chunks 64+6 vs autograd", plant_conv_chunks},
    {F(conv_state_dropped), "conv over chunks 64+4+1+1 vs autograd", plant_conv_short_chunks},
    {F(rope_wrong_way), "mrope vs autograd", plant_mrope},
    {F(rope_wrong_way), "dense attention layer vs autograd", plant_layer_attn},
    {F(l2norm_no_eps), "l2norm with zero rows vs autograd", plant_l2norm},
    {F(l2norm_no_eps), "padded dense GDN layer vs autograd", plant_layer_gdn_padded},
#undef F
};

/* The fault table's own description of a plant. */
static const char *fault_help(const char *name)
{
#define QREF__VJP_FAULT_HELP(id, text) if (!strcmp(name, #id)) return text;
    QREF_VJP_FAULT_MAP(QREF__VJP_FAULT_HELP)
#undef QREF__VJP_FAULT_HELP
    return NULL;
}

START_TEST(test_vjp_plant_caught)
{
    ck_assert_msg(fault_help(plants[_i].fault), "plant %s is not in QREF_VJP_FAULT_MAP", plants[_i].fault);
    qref_vjp_faults f;
    memset(&f, 0, sizeof f);
    score clean = plants[_i].fn(&f);
    ck_assert_msg(clean.ratio <= 1.0, "%s fails without the plant: %s", plants[_i].check, clean.worst);
    *(int *)(void *)((char *)&f + plants[_i].off) = 1;
    score bad = plants[_i].fn(&f);
    printf("vjp plant %-20s caught by %-36s: worst %.3g x bound%s (clean %.3g x)\n", plants[_i].fault,
           plants[_i].check, bad.ratio, bad.nonfinite ? ", non-finite" : "", clean.ratio);
    ck_assert_msg(bad.ratio > 1.0, "plant %s (%s) is not caught by %s (worst %s)", plants[_i].fault,
                  fault_help(plants[_i].fault), plants[_i].check, bad.worst);
}
END_TEST

/* Every fault of the table has at least one check that must catch it. */
START_TEST(test_vjp_every_fault_planted)
{
#define QREF__VJP_FAULT_COVERED(id, text)                                                         \
    {                                                                                              \
        int found = 0;                                                                             \
        for (size_t i = 0; i < sizeof plants / sizeof plants[0]; i++)                              \
            found |= !strcmp(plants[i].fault, #id);                                                \
        ck_assert_msg(found, "fault %s (%s) has no check that must catch it", #id, text);         \
    }
    QREF_VJP_FAULT_MAP(QREF__VJP_FAULT_COVERED)
#undef QREF__VJP_FAULT_COVERED
}
END_TEST

/* ---------------------------------------------------------------- non-finite gradients */

START_TEST(test_vjp_nonfinite_caught)
{
    const double e[4] = {1, 2, 3, 4};
    qref_real a[4] = {1, 2, 3, 4};
    score s = {0};
    score_add(&s, "finite", a, e, 4, 1e-12, 0);
    ck_assert_msg(s.ratio <= 1.0 && !s.nonfinite, "%s", s.worst);
    a[2] = (qref_real)NAN;
    score_add(&s, "nan", a, e, 4, 1e-12, 0);
    ck_assert_msg(s.nonfinite == 1 && isinf(s.ratio), "a NaN gradient was not flagged (ratio %g)", s.ratio);
    a[2] = (qref_real)INFINITY;
    score t = {0};
    score_add(&t, "inf", a, e, 4, 1e-12, 0);
    ck_assert_msg(t.nonfinite == 1 && t.ratio > 1.0, "an infinite gradient was not flagged");
    /* a real one: the l2-norm backward without epsilon on a zero (padded) row */
    qref_vjp_faults f;
    memset(&f, 0, sizeof f);
    f.l2norm_no_eps = 1;
    score p = check_l2norm(&f, 0);
    ck_assert_msg(p.nonfinite > 0 && p.ratio > 1.0, "no non-finite gradient on the zero rows");
}
END_TEST

/* ---------------------------------------------------------------- finite differences (double build) */

#if defined(QREF_PRECISION_F64)

#define FD_H 1e-4
#define FD_BOUND 3e-7     /* |fd - vjp| / (1 + |vjp|); measured worst 1.5e-8 (l2norm zero row), else <= 2.9e-9 */

static double fd_worst;
static void fd_check_h(const char *what, double (*loss)(void *), void *ctx, qref_real *x, size_t cnt,
                       const qref_real *grad, int points, double h);

static void fd_check(const char *what, double (*loss)(void *), void *ctx, qref_real *x, size_t cnt,
                     const qref_real *grad, int points)
{
    fd_check_h(what, loss, ctx, x, cnt, grad, points, FD_H);
}

/* Fourth-order central differences with step h on `points` coordinates of x spread over its cnt values. */
static void fd_check_h(const char *what, double (*loss)(void *), void *ctx, qref_real *x, size_t cnt,
                       const qref_real *grad, int points, double h)
{
    double worst = 0;
    for (int i = 0; i < points; i++) {
        const size_t j = (size_t)((i * 7919ull + 13) % cnt);
        const qref_real keep = x[j];
        double l[4];
        const double step[4] = {h, -h, 2 * h, -2 * h};
        for (int k = 0; k < 4; k++) {
            x[j] = (qref_real)(keep + step[k]);
            l[k] = loss(ctx);
        }
        x[j] = keep;
        /* fourth-order central difference */
        const double fd = (8 * (l[0] - l[1]) - (l[2] - l[3])) / (12 * h), an = grad[j];
        const double err = fabs(fd - an) / (1 + fabs(an));
        fd_worst = fmax(fd_worst, err);
        worst = fmax(worst, err);
        ck_assert_msg(err <= FD_BOUND, "%s[%zu]: finite difference %.12g, VJP %.12g (err %.3g > %.3g)", what, j, fd, an,
                      err, FD_BOUND);
    }
    printf("vjp fd %-28s %2d points, h %.0e: worst %.2e\n", what, points, h, worst);
}

/* gated delta rule: loss = <out, d_out> + <final state, d_state>, chunked forward */
static double gdn_loss(void *p)
{
    const gdn_in *x = p;
    const int n = x->n;
    qref_real *out = NEW_REAL((size_t)n * GDN_HV * GDN_DV), *S = NEW_REAL((size_t)GDN_HV * GDN_DK * GDN_DV);
    qref_real *w = NEW_REAL(qref__gdn_chunked_scratch(64, GDN_DK, GDN_DV));
    memcpy(S, x->s0, (size_t)GDN_HV * GDN_DK * GDN_DV * sizeof *S);
    qref__gdn_chunked(out, x->q, x->k, x->v, x->g, x->beta, S, n, GDN_HK, GDN_HV, GDN_DK, GDN_DV, 64, w);
    double l = 0;
    for (size_t i = 0; i < (size_t)n * GDN_HV * GDN_DV; i++)
        l += (double)out[i] * x->dO[i];
    for (size_t i = 0; i < (size_t)GDN_HV * GDN_DK * GDN_DV; i++)
        l += (double)S[i] * x->dS[i];
    free(out), free(S), free(w);
    return l;
}

typedef struct {
    int n, C, K;
    qref_real *x, *s0, *w, *dO, *dS;
} conv_ctx;

static double conv_loss(void *p)
{
    const conv_ctx *c = p;
    const int S = c->K - 1;
    qref_real *out = NEW_REAL((size_t)c->n * c->C), *st = NEW_REAL((size_t)S * c->C);
    memcpy(st, c->s0, (size_t)S * c->C * sizeof *st);
    qref__conv1d_causal_silu(out, c->x, st, c->w, c->n, c->C, c->K);
    double l = 0;
    for (size_t i = 0; i < (size_t)c->n * c->C; i++)
        l += (double)out[i] * c->dO[i];
    for (size_t i = 0; i < (size_t)S * c->C; i++)
        l += (double)st[i] * c->dS[i];
    free(out), free(st);
    return l;
}

typedef struct {
    int rows, dim;
    qref_real *x, *z, *w, *dO;
    const qref_real *cos_t, *sin_t;
} row_ctx;

static double l2_loss(void *p)
{
    const row_ctx *c = p;
    const size_t cnt = (size_t)c->rows * c->dim;
    qref_real *y = NEW_REAL(cnt);
    memcpy(y, c->x, cnt * sizeof *y);
    qref__l2norm(y, c->rows, c->dim, 1e-6);
    double l = 0;
    for (size_t i = 0; i < cnt; i++)
        l += (double)y[i] * c->dO[i];
    free(y);
    return l;
}

static double gated_loss(void *p)
{
    const row_ctx *c = p;
    const size_t cnt = (size_t)c->rows * c->dim;
    qref_real *y = NEW_REAL(cnt);
    qref__rmsnorm_gated(y, c->x, c->z, c->w, c->rows, c->dim, 1e-6);
    double l = 0;
    for (size_t i = 0; i < cnt; i++)
        l += (double)y[i] * c->dO[i];
    free(y);
    return l;
}

static double rope_loss(void *p)
{
    const row_ctx *c = p;                                   /* rows = tokens, dim = heads * D */
    const size_t cnt = (size_t)c->rows * c->dim;
    qref_real *y = NEW_REAL(cnt);
    memcpy(y, c->x, cnt * sizeof *y);
    qref__rope_apply(y, c->cos_t, c->sin_t, c->rows, c->dim / RoD, RoD, RoR);
    double l = 0;
    for (size_t i = 0; i < cnt; i++)
        l += (double)y[i] * c->dO[i];
    free(y);
    return l;
}

typedef struct {
    layer_in *L;
    int mode;
} layer_ctx;

static double layer_loss(void *p)
{
    layer_ctx *c = p;
    const size_t NH = (size_t)c->L->n * c->L->m.cfg.hidden_size;
    qref_real *out = NEW_REAL(NH), *dx = NEW_REAL(NH);
    qref_layer_grads g;
    qref_error qe;
    ck_assert(qref_layer_grads_init(&g, &c->L->m, c->L->layer, &qe) == QREF_OK);
    layer_run(c->L, c->mode, out, dx, &g, NULL);
    double l = 0;
    for (size_t i = 0; i < NH; i++)
        l += (double)out[i] * c->L->dO[i];
    qref_layer_grads_free(&g);
    free(out), free(dx);
    return l;
}

START_TEST(test_vjp_finite_differences)
{
    fd_worst = 0;
    /* gated delta rule, golden inputs (n = 70, crossing the chunk edge) */
    {
        lc_h5 h5;
        open_gold(&h5);
        gdn_in x;
        gdn_in_load(&x, &h5, "gdn/n70_chunk64", 70, 64);
        lc_h5_close(&h5);
        gdn_out o;
        gdn_out_alloc(&o, x.n);
        gdn_vjp(&o, &x, 64, NULL);
        const size_t nk = (size_t)x.n * GDN_HK * GDN_DK, nv = (size_t)x.n * GDN_HV * GDN_DV;
        const size_t nh = (size_t)x.n * GDN_HV, ss = (size_t)GDN_HV * GDN_DK * GDN_DV;
        fd_check("gdn q", gdn_loss, &x, x.q, nk, o.dq, 6);
        fd_check("gdn k", gdn_loss, &x, x.k, nk, o.dk, 6);
        fd_check("gdn v", gdn_loss, &x, x.v, nv, o.dv, 6);
        fd_check("gdn g", gdn_loss, &x, x.g, nh, o.dg, 6);
        fd_check("gdn beta", gdn_loss, &x, x.beta, nh, o.db, 6);
        fd_check("gdn state0", gdn_loss, &x, x.s0, ss, o.ds0, 6);
        gdn_out_free(&o);
        gdn_in_free(&x);
    }
    /* conv with carried state */
    {
        uint64_t s = 77;
        conv_ctx c = {.n = 9, .C = 5, .K = 4};
        const int S = c.K - 1;
        c.x = NEW_REAL(c.n * c.C), c.s0 = NEW_REAL(S * c.C), c.w = NEW_REAL(c.C * c.K);
        c.dO = NEW_REAL(c.n * c.C), c.dS = NEW_REAL(S * c.C);
        fill(c.x, (size_t)c.n * c.C, &s, -1, 1), fill(c.s0, (size_t)S * c.C, &s, -1, 1);
        fill(c.w, (size_t)c.C * c.K, &s, -1, 1), fill(c.dO, (size_t)c.n * c.C, &s, -1, 1);
        fill(c.dS, (size_t)S * c.C, &s, -1, 1);
        qref_real *dx = NEW_REAL(c.n * c.C), *dw = NEW_REAL(c.C * c.K), *ds = NEW_REAL(S * c.C);
        qref_vjp_conv1d_causal_silu(dx, dw, ds, c.dO, c.dS, c.x, c.s0, c.w, c.n, c.C, c.K);
        fd_check("conv x", conv_loss, &c, c.x, (size_t)c.n * c.C, dx, 8);
        fd_check("conv w", conv_loss, &c, c.w, (size_t)c.C * c.K, dw, 8);
        fd_check("conv state0", conv_loss, &c, c.s0, (size_t)S * c.C, ds, 8);
        free(c.x), free(c.s0), free(c.w), free(c.dO), free(c.dS), free(dx), free(dw), free(ds);
    }
    /* l2 norm, a zero row included (coordinates 0..15 are row 0) */
    {
        uint64_t s = 78;
        row_ctx c = {.rows = 3, .dim = 16};
        c.x = NEW_REAL(48), c.dO = NEW_REAL(48);
        fill(c.x + 16, 32, &s, -1, 1), fill(c.dO, 48, &s, -1, 1);
        qref_real *dx = NEW_REAL(48);
        qref_vjp_l2norm(dx, c.dO, c.x, 3, 16, 1e-6);
        /* near a zero row the function bends on the scale sqrt(eps) = 1e-3: a smaller step */
        fd_check_h("l2norm x (zero row)", l2_loss, &c, c.x, 16, dx, 4, 1e-5);
        fd_check("l2norm x", l2_loss, &c, c.x + 16, 32, dx + 16, 8);
        free(c.x), free(c.dO), free(dx);
    }
    /* gated RMSNorm */
    {
        uint64_t s = 79;
        row_ctx c = {.rows = 4, .dim = 12};
        c.x = NEW_REAL(48), c.z = NEW_REAL(48), c.w = NEW_REAL(12), c.dO = NEW_REAL(48);
        fill(c.x, 48, &s, -2, 2), fill(c.z, 48, &s, -3, 3), fill(c.w, 12, &s, 0.5, 1.5), fill(c.dO, 48, &s, -1, 1);
        qref_real *dx = NEW_REAL(48), *dz = NEW_REAL(48), *dw = NEW_REAL(12);
        qref_vjp_rmsnorm_gated(dx, dz, dw, c.dO, c.x, c.z, c.w, 4, 12, 1e-6);
        fd_check("rmsnorm_gated x", gated_loss, &c, c.x, 48, dx, 8);
        fd_check("rmsnorm_gated z", gated_loss, &c, c.z, 48, dz, 8);
        fd_check("rmsnorm_gated w", gated_loss, &c, c.w, 12, dw, 6);
        free(c.x), free(c.z), free(c.w), free(c.dO), free(dx), free(dz), free(dw);
    }
    /* MRoPE, 3-axis positions of an image block */
    {
        uint64_t s = 80;
        const int n = 6;
        int64_t pos[18] = {0, 1, 2, 2, 2, 4, 0, 1, 2, 3, 3, 4, 0, 1, 2, 2, 3, 4};
        qref_real ct[6 * 8], st[6 * 8];
        qref__mrope_angles(ct, st, pos, n, RoR, 10000.0, rope_section, 1);
        row_ctx c = {.rows = n, .dim = 2 * RoD, .cos_t = ct, .sin_t = st};
        c.x = NEW_REAL(n * 2 * RoD), c.dO = NEW_REAL(n * 2 * RoD);
        fill(c.x, (size_t)n * 2 * RoD, &s, -1, 1), fill(c.dO, (size_t)n * 2 * RoD, &s, -1, 1);
        qref_real *dx = NEW_REAL(n * 2 * RoD);
        qref_vjp_rope(dx, c.dO, ct, st, n, 2, RoD, RoR);
        fd_check("rope x", rope_loss, &c, c.x, (size_t)n * 2 * RoD, dx, 12);
        free(c.x), free(c.dO), free(dx);
    }
    /* whole decoder layers: the input and a few coordinates of every weight kind */
    for (int c = 0; c < 7; c += 3) {   /* dense_gdn (chunked), dense_attn, moe_attn */
        lc_h5 h5;
        open_gold(&h5);
        layer_in L;
        layer_in_load(&L, &h5, c);
        lc_h5_close(&h5);
        qref_error qe;
        qref_layer_grads g;
        ck_assert(qref_layer_grads_init(&g, &L.m, L.layer, &qe) == QREF_OK);
        const size_t NH = (size_t)L.n * L.m.cfg.hidden_size;
        qref_real *out = NEW_REAL(NH), *dx = NEW_REAL(NH);
        layer_run(&L, layer_cases[c].mode, out, dx, &g, NULL);
        layer_ctx ctx = {&L, layer_cases[c].mode};
        char xw[64];
        snprintf(xw, sizeof xw, "%s x", layer_cases[c].name);
        fd_check(xw, layer_loss, &ctx, L.x, NH, dx, 4);
        qref_layer_weights *w = &L.m.layers[L.layer];
        const qref_real **wf[] = {&w->input_norm, &w->post_norm, &w->in_proj_qkv.real, &w->in_proj_b, &w->in_proj_a,
                                  &w->conv_w, &w->dt_bias, &w->A_log, &w->gdn_norm, &w->out_proj.real,
                                  &w->q_proj.real, &w->k_norm, &w->o_proj.real, &w->down_proj.real, &w->router,
                                  &w->experts_gate_up.real, &w->shared_expert_gate};
        static const char *wn[] = {"input_norm", "post_norm", "in_proj_qkv", "in_proj_b", "in_proj_a", "conv_w",
                                   "dt_bias", "A_log", "gdn_norm", "out_proj", "q_proj", "k_norm", "o_proj",
                                   "down_proj", "router", "experts_gate_up", "shared_expert_gate"};
        qref_real *gf[] = {g.input_norm, g.post_norm, g.in_proj_qkv, g.in_proj_b, g.in_proj_a, g.conv_w, g.dt_bias,
                           g.A_log, g.gdn_norm, g.out_proj, g.q_proj, g.k_norm, g.o_proj, g.down_proj, g.router,
                           g.experts_gate_up, g.shared_expert_gate};
        for (size_t i = 0; i < sizeof wf / sizeof wf[0]; i++) {
            if (!*wf[i] || !gf[i])
                continue;
            char what[64];
            snprintf(what, sizeof what, "%s %s", layer_cases[c].name, wn[i]);
            const size_t room = field_room(&g, gf[i]);  /* the tensor, plus at most 3 alignment slots */
            fd_check(what, layer_loss, &ctx, (qref_real *)*wf[i], room > 4 ? room - 3 : 1, gf[i], 2);
        }
        qref_layer_grads_free(&g);
        free(out), free(dx);
        layer_in_free(&L);
    }
    printf("vjp finite differences (h %.0e): worst |fd - vjp| / (1 + |vjp|) = %.2e (bound %.0e)\n", FD_H, fd_worst,
           FD_BOUND);
}
END_TEST
#endif

/* ---------------------------------------------------------------- suite */

int main(void)
{
    Suite *s = suite_create("vjp");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_vjp_gdn_golden, 0, 4);
    tcase_add_test(tc, test_vjp_rmsnorms_golden);
    tcase_add_test(tc, test_vjp_l2norm_golden);
    tcase_add_test(tc, test_vjp_mrope_golden);
    tcase_add_loop_test(tc, test_vjp_conv_golden, 0, (int)(sizeof conv_pieces / sizeof conv_pieces[0]));
    tcase_add_loop_test(tc, test_vjp_layer_golden, 0, (int)(sizeof layer_cases / sizeof layer_cases[0]));
    tcase_add_test(tc, test_vjp_layer_errors);
    suite_add_tcase(s, tc);
    TCase *ta = tcase_create("agreement");
    tcase_set_timeout(ta, 600);
    tcase_add_loop_test(ta, test_vjp_gdn_chunked_matches_recurrent, 0,
                        (int)(sizeof agree_chunks / sizeof agree_chunks[0]));
    tcase_add_test(ta, test_vjp_null_output_gradients);
    tcase_add_loop_test(ta, test_vjp_layer_chunked_matches_recurrent, 0,
                        (int)(sizeof layer_agree / sizeof layer_agree[0]));
#if defined(QREF_PRECISION_F64)
    tcase_add_test(ta, test_vjp_finite_differences);
#endif
    suite_add_tcase(s, ta);
    TCase *tp = tcase_create("plants");
    tcase_set_timeout(tp, 600);
    tcase_add_loop_test(tp, test_vjp_plant_caught, 0, (int)(sizeof plants / sizeof plants[0]));
    tcase_add_test(tp, test_vjp_every_fault_planted);
    tcase_add_test(tp, test_vjp_nonfinite_caught);
    suite_add_tcase(s, tp);
    return lc_check_run(s);
}
