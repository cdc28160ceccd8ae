/* SPDX-License-Identifier: MIT */
/*
 * Results do not depend on the thread count: every engine path that spreads work over the
 * worker pool gives bitwise the same outputs on 1 and 2 threads (the kernels on 3 as well). Shapes are chosen so each
 * kernel cuts its work into several items (token and column blocks of the projections, query
 * blocks of attention, value heads of the delta rule, row blocks of the norms), and the model
 * paths cover prefill, decode, a padded batch, MoE and the vision tower.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qref_internal.h"
#include "check_main.h"

#define DENSE LC_SOURCE_DIR "/golden/tiny-dense"
#define MOE LC_SOURCE_DIR "/golden/tiny-moe"

static const int thread_counts[] = {1, 2, 3};
/* The model paths run at 1 and 2 threads only (they are the slow part under valgrind). */
#define NT_MODEL 2
#define NT ((int)(sizeof thread_counts / sizeof thread_counts[0]))

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert(p != NULL);
    return p;
}

static void fill(qref_real *x, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (qref_real)((double)(*s >> 11) / 9007199254740992.0 * 2 - 1);
    }
}

/* Fails naming the path and the first differing element. */
static void assert_bitwise(const char *what, int threads, const void *a, const void *b, size_t bytes)
{
    if (memcmp(a, b, bytes) == 0)
        return;
    const unsigned char *x = a, *y = b;
    size_t i = 0;
    while (x[i] == y[i])
        i++;
    ck_abort_msg("%s: %d threads differ from 1 thread at byte %zu of %zu", what, threads, i, bytes);
}

/* ---------------------------------------------------------------- kernels */

enum { LN = 300, LIN = 70, LOUT = 200 };           /* linear */
enum { AN = 130, ATK = 150, AOFF = 20, AHQ = 4, AHKV = 2, AD = 16 }; /* attention */
enum { WN = 140, WTK = 1100, WOFF = 960, WHQ = 2, WD = 32 };     /* attention walking its keys (tiles in the float build) */
enum { BLN = 4100, BLIN = 8, BLOUT = 300 };        /* linear over 4096 tokens and more */
enum { GN = 150, GHK = 2, GHV = 4, GDK = 16, GDV = 16, GCHUNK = 64 }; /* delta rule */
enum { CN = 300, CC = 100, CK = 4 };               /* conv */
enum { RN = 200, RE = 8, RK = 2 };                 /* routing */

typedef struct {
    qref_real lin[LN * LOUT], blin[BLN * BLOUT], att[AN * AHQ * AD], attw[WN * WHQ * WD], gch[GN * GHV * GDV], gst[GHV * GDK * GDV];
    qref_real grc[GN * GHV * GDV], grs[GHV * GDK * GDV], norm[LN * LIN], conv[CN * CC], cst[(CK - 1) * CC];
    qref_real rw[RN * RK];
    int ri[RN * RK];
} kernel_outputs;

static void run_kernels(kernel_outputs *o)
{
    uint64_t s = 7;
    qref_real *x = xcalloc(LN * LIN, sizeof *x), *w = xcalloc(LOUT * LIN, sizeof *w), *b = xcalloc(LOUT, sizeof *b);
    fill(x, LN * LIN, &s), fill(w, LOUT * LIN, &s), fill(b, LOUT, &s);
    qref__linear(o->lin, x, w, b, LN, LIN, LOUT);
    qref__rmsnorm(o->norm, x, w, LN, LIN, 1e-6);

    qref_real *q = xcalloc(AN * AHQ * AD, sizeof *q), *kc = xcalloc(ATK * AHKV * AD, sizeof *kc);
    qref_real *vc = xcalloc(ATK * AHKV * AD, sizeof *vc), *sc = xcalloc(qref__attention_scratch(ATK, AHKV, AD), sizeof *sc);
    fill(q, AN * AHQ * AD, &s), fill(kc, ATK * AHKV * AD, &s), fill(vc, ATK * AHKV * AD, &s);
    qref__attention(o->att, q, kc, vc, NULL, AN, ATK, AOFF, AHQ, AHKV, AD, 0.25, sc);

    qref_real *bx = xcalloc(BLN * BLIN, sizeof *bx), *bw = xcalloc(BLOUT * BLIN, sizeof *bw);
    fill(bx, BLN * BLIN, &s), fill(bw, BLOUT * BLIN, &s);
    qref__linear(o->blin, bx, bw, NULL, BLN, BLIN, BLOUT);

    qref_real *wq = xcalloc(WN * WHQ * WD, sizeof *wq), *wk = xcalloc(WTK * WD, sizeof *wk);
    qref_real *wv = xcalloc(WTK * WD, sizeof *wv), *ws = xcalloc(qref__attention_scratch(WTK, 1, WD), sizeof *ws);
    uint8_t *wm = xcalloc(WTK, 1);
    fill(wq, WN * WHQ * WD, &s), fill(wk, WTK * WD, &s), fill(wv, WTK * WD, &s);
    for (int j = 0; j < WTK; j++)
        wm[j] = j % 5 != 2;
    qref__attention(o->attw, wq, wk, wv, wm, WN, WTK, WOFF, WHQ, 1, WD, 0.3, ws);
    free(bx), free(bw), free(wq), free(wk), free(wv), free(ws), free(wm);

    qref_real *gq = xcalloc(GN * GHK * GDK, sizeof *gq), *gk = xcalloc(GN * GHK * GDK, sizeof *gk);
    qref_real *gv = xcalloc(GN * GHV * GDV, sizeof *gv), *gg = xcalloc(GN * GHV, sizeof *gg);
    qref_real *gb = xcalloc(GN * GHV, sizeof *gb);
    qref_real *gs = xcalloc(qref__gdn_chunked_scratch(GCHUNK, GDK, GDV), sizeof *gs);
    fill(gq, GN * GHK * GDK, &s), fill(gk, GN * GHK * GDK, &s), fill(gv, GN * GHV * GDV, &s);
    fill(gg, GN * GHV, &s), fill(gb, GN * GHV, &s);
    qref__l2norm(gq, GN * GHK, GDK, 1e-6);
    qref__l2norm(gk, GN * GHK, GDK, 1e-6);
    for (int i = 0; i < GN * GHV; i++)
        gg[i] = (qref_real)(-0.1 * (1 + gg[i])), gb[i] = (qref_real)(0.5 + 0.4 * gb[i]);
    fill(o->gst, GHV * GDK * GDV, &s);
    memcpy(o->grs, o->gst, sizeof o->gst);
    qref__gdn_chunked(o->gch, gq, gk, gv, gg, gb, o->gst, GN, GHK, GHV, GDK, GDV, GCHUNK, gs);
    qref__gdn_recurrent(o->grc, gq, gk, gv, gg, gb, o->grs, GN, GHK, GHV, GDK, GDV);

    qref_real *cx = xcalloc(CN * CC, sizeof *cx), *cw = xcalloc(CC * CK, sizeof *cw);
    fill(cx, CN * CC, &s), fill(cw, CC * CK, &s), fill(o->cst, (CK - 1) * CC, &s);
    qref__conv1d_causal_silu(o->conv, cx, o->cst, cw, CN, CC, CK);

    qref_real *rl = xcalloc(RN * RE, sizeof *rl);
    fill(rl, RN * RE, &s);
    qref__moe_route(o->ri, o->rw, rl, RN, RE, RK);

    free(x), free(w), free(b), free(q), free(kc), free(vc), free(sc);
    free(gq), free(gk), free(gv), free(gg), free(gb), free(gs), free(cx), free(cw), free(rl);
}

START_TEST(test_threads_kernels_bitwise)
{
    kernel_outputs *ref = xcalloc(1, sizeof *ref), *o = xcalloc(1, sizeof *o);
    qref_set_threads(1);
    run_kernels(ref);
    for (int i = 1; i < NT; i++) {
        qref_set_threads(thread_counts[i]);
        ck_assert_int_eq(qref_threads(), thread_counts[i]);
        memset(o, 0, sizeof *o);
        run_kernels(o);
        const int t = thread_counts[i];
        assert_bitwise("linear", t, o->lin, ref->lin, sizeof o->lin);
        assert_bitwise("rmsnorm", t, o->norm, ref->norm, sizeof o->norm);
        assert_bitwise("attention", t, o->att, ref->att, sizeof o->att);
        assert_bitwise("attention walking its keys", t, o->attw, ref->attw, sizeof o->attw);
        assert_bitwise("linear over 4096 tokens", t, o->blin, ref->blin, sizeof o->blin);
        assert_bitwise("gdn chunked output", t, o->gch, ref->gch, sizeof o->gch);
        assert_bitwise("gdn chunked state", t, o->gst, ref->gst, sizeof o->gst);
        assert_bitwise("gdn recurrent output", t, o->grc, ref->grc, sizeof o->grc);
        assert_bitwise("gdn recurrent state", t, o->grs, ref->grs, sizeof o->grs);
        assert_bitwise("conv", t, o->conv, ref->conv, sizeof o->conv);
        assert_bitwise("conv state", t, o->cst, ref->cst, sizeof o->cst);
        assert_bitwise("route index", t, o->ri, ref->ri, sizeof o->ri);
        assert_bitwise("route weight", t, o->rw, ref->rw, sizeof o->rw);
    }
    qref_set_threads(0);
    free(ref), free(o);
}
END_TEST

/* A child of fork() has none of the parent's pool threads: its first parallel loop starts a
 * pool of its own (instead of waiting for helpers that do not exist) and computes the same
 * bits. */
START_TEST(test_threads_after_fork)
{
    kernel_outputs *ref = xcalloc(1, sizeof *ref);
    qref_set_threads(2);
    run_kernels(ref);                       /* the pool runs in the parent */
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        alarm(300);                         /* a child waiting for absent helpers dies, not hangs */
        kernel_outputs *o = calloc(1, sizeof *o);
        if (!o)
            _exit(3);
        run_kernels(o);
        const int same = qref_threads() == 2 && memcmp(o, ref, sizeof *o) == 0;
        _exit(same ? 0 : 1);
    }
    int status = 0;
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "forked child: %s (status %d)", WIFEXITED(status) ? "results differ" : "did not exit", status);
    qref_set_threads(0);
    free(ref);
}
END_TEST

/* ---------------------------------------------------------------- model paths */

enum { PN = 140, DEC = 2, BL = 70 };

/* Prefill of PN tokens (logits and hidden states; three attention query blocks, two GDN
 * chunks), DEC decode steps, and a left-padded batch of two rows, all written one after
 * another into out (caller frees). */
static qref_real *run_model(const qref_model *m, size_t *count)
{
    const qref_config *c = &m->cfg;
    const size_t V = (size_t)c->vocab_size, H = (size_t)c->hidden_size, NL = (size_t)c->num_layers;
    const size_t total = PN * V + (NL + 1) * PN * H + DEC * V + 2 * BL * V;
    qref_real *out = xcalloc(total, sizeof *out), *at = out;
    int32_t ids[PN + DEC], bids[2 * BL];
    uint8_t mask[2 * BL];
    for (int i = 0; i < PN + DEC; i++)
        ids[i] = (int32_t)((i * 37 + 11) % 900);
    qref_error qe;
    qref_cache cache;
    ck_assert_msg(qref_cache_init(&cache, m, &qe) == QREF_OK, "%s", qe.msg);
    qref_tokens in = {.ids = ids, .n = PN};
    qref_outputs o = {.logits = at, .hidden = at + PN * V};
    ck_assert_msg(qref_forward(m, &cache, &in, &o, &qe) == QREF_OK, "%s", qe.msg);
    at += PN * V + (NL + 1) * PN * H;
    for (int d = 0; d < DEC; d++, at += V) {
        qref_tokens step = {.ids = ids + PN + d, .n = 1};
        qref_outputs so = {.logits = at};
        ck_assert_msg(qref_forward(m, &cache, &step, &so, &qe) == QREF_OK, "%s", qe.msg);
    }
    qref_cache_free(&cache);

    qref_cache rows[2];
    qref_cache *rp[2] = {&rows[0], &rows[1]};
    for (int b = 0; b < 2; b++) {
        ck_assert_msg(qref_cache_init(&rows[b], m, &qe) == QREF_OK, "%s", qe.msg);
        for (int t = 0; t < BL; t++) {
            mask[b * BL + t] = (uint8_t)(b == 0 || t >= 17);
            bids[b * BL + t] = ids[t];
        }
    }
    qref_batch bin = {.B = 2, .L = BL, .ids = bids, .mask = mask};
    qref_outputs bo = {.logits = at};
    ck_assert_msg(qref_forward_batch(m, rp, &bin, &bo, &qe) == QREF_OK, "%s", qe.msg);
    qref_cache_free(&rows[0]);
    qref_cache_free(&rows[1]);
    *count = total;
    return out;
}

static void check_model(const char *dir)
{
    qref_model m;
    qref_error qe;
    ck_assert_msg(qref_model_load(&m, dir, &qe) == QREF_OK, "%s", qe.msg);
    size_t n;
    qref_set_threads(1);
    qref_real *ref = run_model(&m, &n);
    for (int i = 1; i < NT_MODEL; i++) {
        qref_set_threads(thread_counts[i]);
        qref_real *o = run_model(&m, &n);
        assert_bitwise(dir, thread_counts[i], o, ref, n * sizeof *o);
        free(o);
    }
    qref_set_threads(0);
    free(ref);
    qref_model_free(&m);
}

START_TEST(test_threads_dense_bitwise) { check_model(DENSE); }
END_TEST

START_TEST(test_threads_moe_bitwise) { check_model(MOE); }
END_TEST

/* The vision tower over a 20 x 20 patch grid (several token and query blocks). */
START_TEST(test_threads_vision_bitwise)
{
    qref_model m;
    qref_error qe;
    ck_assert_msg(qref_model_load(&m, DENSE, &qe) == QREF_OK, "%s", qe.msg);
    const qref_vision_config *v = &m.cfg.vision;
    const int grid[1][3] = {{1, 20, 20}}, N = 400, M2 = v->spatial_merge_size * v->spatial_merge_size;
    const size_t Pd = (size_t)v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size;
    const size_t nout = (size_t)(N / M2) * v->out_hidden_size;
    qref_real *px = xcalloc(N * Pd, sizeof *px), *ref = xcalloc(nout, sizeof *ref), *o = xcalloc(nout, sizeof *o);
    uint64_t s = 3;
    fill(px, N * Pd, &s);
    qref_set_threads(1);
    ck_assert_msg(qref_vision_forward(&m, px, grid, 1, ref, &qe) == QREF_OK, "%s", qe.msg);
    for (int i = 1; i < NT_MODEL; i++) {
        qref_set_threads(thread_counts[i]);
        ck_assert_msg(qref_vision_forward(&m, px, grid, 1, o, &qe) == QREF_OK, "%s", qe.msg);
        assert_bitwise("vision", thread_counts[i], o, ref, nout * sizeof *o);
    }
    qref_set_threads(0);
    free(px), free(ref), free(o);
    qref_model_free(&m);
}
END_TEST

static Suite *threads_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("bitwise");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_threads_kernels_bitwise);
    tcase_add_test(tc, test_threads_after_fork);
    tcase_add_test(tc, test_threads_dense_bitwise);
    tcase_add_test(tc, test_threads_moe_bitwise);
    tcase_add_test(tc, test_threads_vision_bitwise);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lc_check_run(threads_suite()); }
