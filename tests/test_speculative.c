/* SPDX-License-Identifier: MIT */
/*
 * The reference engine's speculative decoding (reference/mtp.c): verify + accept leaves the
 * state plain decoding of the accepted tokens gives, for every accept count, and the state the
 * comparison path (snapshot, one forward, restore, re-run the accepted prefix) gives; the calls refuse
 * what they must (accept without a verify, out-of-range counts, a pending verify, drafts
 * without an MTP head, a head that does not match the configuration); a cloned cache drafts
 * as its original; and the draft acceptance rate of the tiny checkpoints' random MTP heads,
 * printed (measured, not tuned).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "qref.h"
#include "qref_internal.h"

#define DENSE LC_SOURCE_DIR "/golden/tiny-dense"
#define MOE LC_SOURCE_DIR "/golden/tiny-moe"

static const int32_t prompt[] = {747, 705, 958, 213, 628, 204, 315, 768, 497, 722, 678, 525, 708, 764, 655, 487, 212};
#define T ((int)(sizeof prompt / sizeof prompt[0]))

static double bound(void)
{
#if defined(QREF_PRECISION_F64)
    return 1e-11;
#else
    return 3e-4;
#endif
}

static void load(qref_model *m, const char *dir)
{
    qref_error e = {0};
    ck_assert_msg(qref_model_load(m, dir, &e) == QREF_OK, "%s", e.msg);
}

static void prefill(const qref_model *m, qref_cache *c, qref_real *last)
{
    qref_error e = {0};
    const int V = m->cfg.vocab_size;
    qref_real *lg = malloc((size_t)T * V * sizeof *lg);
    ck_assert_msg(qref_cache_init(c, m, &e) == QREF_OK, "%s", e.msg);
    qref_tokens in = {.ids = prompt, .n = T};
    qref_outputs o = {.logits = lg};
    ck_assert_msg(qref_forward(m, c, &in, &o, &e) == QREF_OK, "%s", e.msg);
    if (last)
        memcpy(last, lg + (size_t)(T - 1) * V, (size_t)V * sizeof *lg);
    free(lg);
}

static int32_t argmax(const qref_model *m, const qref_real *row)
{
    int32_t b = 0;
    for (int j = 1; j < m->cfg.vocab_size; j++)
        if (row[j] > row[b] && !(m->cfg.has_vision && (j == m->cfg.image_token_id || j == m->cfg.video_token_id ||
                                                       j == m->cfg.vision_start_token_id ||
                                                       j == m->cfg.vision_end_token_id)))
            b = j;
    return b;
}

/* Largest difference of two caches' conv, recurrent and KV states (the first len rows). */
static double state_diff(const qref_cache *a, const qref_cache *b)
{
    ck_assert_int_eq(a->len, b->len);
    double m = 0;
    for (int l = 0; l < a->num_layers; l++) {
        size_t n1 = a->conv[l] ? (size_t)a->conv_len * a->conv_channels : (size_t)a->len * a->kv_row;
        const qref_real *x1 = a->conv[l] ? a->conv[l] : a->k[l], *y1 = b->conv[l] ? b->conv[l] : b->k[l];
        const qref_real *x2 = a->conv[l] ? a->rec[l] : a->v[l], *y2 = b->conv[l] ? b->rec[l] : b->v[l];
        size_t n2 = a->conv[l] ? (size_t)a->rec_size : n1;
        for (size_t i = 0; i < n1; i++)
            m = fmax(m, fabs((double)x1[i] - (double)y1[i]));
        for (size_t i = 0; i < n2; i++)
            m = fmax(m, fabs((double)x2[i] - (double)y2[i]));
    }
    return m;
}

/* ---------------------------------------------------------------- verify and accept */

START_TEST(test_speculative_accept_every_count)
{
    qref_model m;
    load(&m, _i ? MOE : DENSE);
    const int k = 4, V = m.cfg.vocab_size;
    int32_t ids[5] = {11, 523, 77, 900, 4};
    qref_real *lg = malloc((size_t)(k + 1) * V * sizeof *lg), *one = malloc((size_t)V * sizeof *one);
    for (int a = 0; a <= k; a++) {
        qref_cache spec, plain;
        qref_error e = {0};
        prefill(&m, &spec, NULL);
        prefill(&m, &plain, NULL);
        ck_assert_msg(qref_verify(&m, &spec, ids, k + 1, lg, &e) == QREF_OK, "%s", e.msg);
        ck_assert_msg(qref_verify_accept(&m, &spec, a, &e) == QREF_OK, "%s", e.msg);
        for (int i = 0; i <= a; i++) {
            qref_tokens in = {.ids = &ids[i], .n = 1};
            qref_outputs o = {.logits = one};
            ck_assert_msg(qref_forward(&m, &plain, &in, &o, &e) == QREF_OK, "%s", e.msg);
            double d = 0;
            for (int j = 0; j < V; j++)
                d = fmax(d, fabs((double)one[j] - (double)lg[(size_t)i * V + j]));
            ck_assert_msg(d <= bound(), "accept %d: verify row %d differs from decode by %g", a, i, d);
        }
        double d = state_diff(&spec, &plain);
        ck_assert_msg(d <= bound(), "accept %d of %d: state differs from plain decode by %g", a, k, d);
        /* and the sequence goes on: one more token through both */
        int32_t nx = 42;
        qref_tokens in = {.ids = &nx, .n = 1};
        ck_assert(qref_forward(&m, &spec, &in, NULL, &e) == QREF_OK);
        ck_assert(qref_forward(&m, &plain, &in, NULL, &e) == QREF_OK);
        ck_assert_double_le(state_diff(&spec, &plain), bound());
        qref_cache_free(&spec);
        qref_cache_free(&plain);
    }
    free(lg);
    free(one);
    qref_model_free(&m);
}
END_TEST

/* The comparison path for verify: snapshot, run the k + 1 tokens in one chunked forward,
 * restore the snapshot and run the accepted a + 1 tokens again; against verify's kept
 * per-position states (no recompute). Same logits rows, same state, for every a. */
START_TEST(test_speculative_rerun_path)
{
    qref_model m;
    load(&m, _i ? MOE : DENSE);
    const int k = 5, V = m.cfg.vocab_size;
    int32_t ids[6] = {310, 7, 945, 88, 402, 61};
    qref_real *lv = malloc((size_t)(k + 1) * V * sizeof *lv), *lr = malloc((size_t)(k + 1) * V * sizeof *lr);
    for (int a = 0; a <= k; a++) {
        qref_cache spec, base, rerun;
        qref_error e = {0};
        prefill(&m, &spec, NULL);
        prefill(&m, &base, NULL);
        ck_assert_msg(qref_verify(&m, &spec, ids, k + 1, lv, &e) == QREF_OK, "%s", e.msg);
        ck_assert_msg(qref_verify_accept(&m, &spec, a, &e) == QREF_OK, "%s", e.msg);
        ck_assert_int_eq(qref_cache_clone(&rerun, &base, &e), QREF_OK); /* the snapshot */
        qref_tokens all = {.ids = ids, .n = k + 1};
        qref_outputs o = {.logits = lr};
        ck_assert_msg(qref_forward(&m, &base, &all, &o, &e) == QREF_OK, "%s", e.msg);
        qref_cache_free(&base); /* restore: the snapshot's copy goes on */
        qref_tokens acc = {.ids = ids, .n = a + 1};
        ck_assert_msg(qref_forward(&m, &rerun, &acc, NULL, &e) == QREF_OK, "%s", e.msg);
        double d = 0;
        for (size_t i = 0; i < (size_t)(a + 1) * V; i++)
            d = fmax(d, fabs((double)lv[i] - (double)lr[i]));
        ck_assert_msg(d <= bound(), "accept %d: verify rows differ from the one-forward run by %g", a, d);
        d = state_diff(&spec, &rerun);
        ck_assert_msg(d <= bound(), "accept %d: kept state differs from restore + re-run by %g", a, d);
        qref_cache_free(&spec);
        qref_cache_free(&rerun);
    }
    free(lv);
    free(lr);
    qref_model_free(&m);
}
END_TEST

/* A batched verify: rows of 4, 1 and 3 tokens (a plain decode step among them), accepting 2, 0
 * and 0 drafts in the same call: each row's rows and state as the same tokens decoded alone. */
START_TEST(test_speculative_batch_rows)
{
    qref_model m;
    load(&m, _i ? MOE : DENSE);
    const int V = m.cfg.vocab_size, B = 3, L = 4;
    const int32_t r0[4] = {5, 600, 12, 77}, r1[1] = {901}, r2[3] = {44, 45, 46};
    const int32_t *ids[3] = {r0, r1, r2};
    const int n[3] = {4, 1, 3}, acc[3] = {2, 0, 0};
    qref_cache c[3], plain[3];
    qref_cache *cp[3] = {&c[0], &c[1], &c[2]};
    qref_error e = {0};
    qref_real *lg = malloc((size_t)B * L * V * sizeof *lg), *one = malloc((size_t)V * sizeof *one);
    for (int b = 0; b < B; b++) {
        prefill(&m, &c[b], NULL);
        prefill(&m, &plain[b], NULL);
    }
    /* rows of different lengths: drop a token from row 2's cache first */
    ck_assert_int_eq(qref_verify(&m, &c[2], r2, 1, NULL, &e), QREF_OK);
    ck_assert_int_eq(qref_verify_accept(&m, &c[2], 0, &e), QREF_OK);
    qref_tokens first = {.ids = r2, .n = 1};
    ck_assert_int_eq(qref_forward(&m, &plain[2], &first, NULL, &e), QREF_OK);
    ck_assert_msg(qref_verify_batch(&m, cp, ids, n, B, lg, &e) == QREF_OK, "%s", e.msg);
    for (int b = 0; b < B; b++) {
        ck_assert_msg(qref_verify_accept(&m, &c[b], acc[b], &e) == QREF_OK, "%s", e.msg);
        for (int i = 0; i <= acc[b]; i++) {
            qref_tokens in = {.ids = &ids[b][i], .n = 1};
            qref_outputs o = {.logits = one};
            ck_assert(qref_forward(&m, &plain[b], &in, &o, &e) == QREF_OK);
            double d = 0;
            for (int j = 0; j < V; j++)
                d = fmax(d, fabs((double)one[j] - (double)lg[((size_t)b * L + i) * V + j]));
            ck_assert_msg(d <= bound(), "row %d token %d: batched verify differs from decode alone by %g", b, i, d);
        }
        ck_assert(isnan((double)lg[((size_t)b * L + n[b] - 1) * V]) == 0);
        if (n[b] < L)
            ck_assert(isnan((double)lg[((size_t)b * L + n[b]) * V]));
        double d = state_diff(&c[b], &plain[b]);
        ck_assert_msg(d <= bound(), "row %d: state differs from decode alone by %g", b, d);
        qref_cache_free(&c[b]);
        qref_cache_free(&plain[b]);
    }
    free(lg);
    free(one);
    qref_model_free(&m);
}
END_TEST

#if !defined(LC_SPEC_FULL)
/* The MoE head with per-expert tensors (the published checkpoints' layout; written by
 * make_mtp_weights.py --per-expert into LC_SPEC_PER_EXPERT, a CTest fixture) drafts exactly as
 * the fused one: the same values land in the same fused slabs. */
START_TEST(test_speculative_per_expert)
{
    const char *dir = getenv("LC_SPEC_PER_EXPERT");
    ck_assert_msg(dir && dir[0], "LC_SPEC_PER_EXPERT (the per-expert checkpoint of the CTest fixture) is not set");
    qref_model a, b;
    load(&a, MOE);
    load(&b, dir);
    ck_assert_ptr_nonnull(b.mtp);
    ck_assert_uint_eq(a.mtp->block_len, b.mtp->block_len);
    ck_assert_mem_eq(a.mtp->block, b.mtp->block, a.mtp->block_len * sizeof *a.mtp->block);
    qref_cache ca, cb;
    qref_error e = {0};
    const int V = a.cfg.vocab_size;
    qref_real *la = malloc((size_t)2 * V * sizeof *la), *lb = malloc((size_t)2 * V * sizeof *lb);
    int32_t da[2], db[2];
    prefill(&a, &ca, NULL);
    prefill(&b, &cb, NULL);
    ck_assert_int_eq(qref_mtp_draft(&a, &ca, 17, 2, da, la, &e), QREF_OK);
    ck_assert_int_eq(qref_mtp_draft(&b, &cb, 17, 2, db, lb, &e), QREF_OK);
    ck_assert_mem_eq(da, db, sizeof da);
    ck_assert_mem_eq(la, lb, (size_t)2 * V * sizeof *la);
    qref_cache_free(&ca);
    qref_cache_free(&cb);
    free(la);
    free(lb);
    qref_model_free(&a);
    qref_model_free(&b);
}
END_TEST
#endif

START_TEST(test_speculative_refusals)
{
    qref_model m;
    qref_cache c;
    qref_error e = {0};
    load(&m, DENSE);
    prefill(&m, &c, NULL);
    const int V = m.cfg.vocab_size;
    int32_t ids[3] = {1, 2, 3}, d[2];
    qref_real *lg = malloc((size_t)3 * V * sizeof *lg);
    ck_assert_int_eq(qref_verify_accept(&m, &c, 0, &e), QREF_EINVAL); /* nothing pending */
    ck_assert_ptr_nonnull(strstr(e.msg, "no verify"));
    ck_assert_int_eq(qref_verify(&m, &c, ids, 0, lg, &e), QREF_EINVAL);
    ck_assert_int_eq(qref_verify(&m, &c, ids, 3, lg, &e), QREF_OK);
    ck_assert_int_eq(c.len, T + 3);
    ck_assert_int_eq(qref_verify(&m, &c, ids, 3, lg, &e), QREF_EINVAL);
    qref_tokens in = {.ids = ids, .n = 1};
    ck_assert_int_eq(qref_forward(&m, &c, &in, NULL, &e), QREF_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "awaits its accept"));
    ck_assert_int_eq(qref_mtp_draft(&m, &c, 5, 2, d, NULL, &e), QREF_EINVAL);
    ck_assert_int_eq(qref_verify_accept(&m, &c, 3, &e), QREF_EINVAL);
    ck_assert_int_eq(qref_verify_accept(&m, &c, -1, &e), QREF_EINVAL);
    ck_assert_int_eq(qref_verify_accept(&m, &c, 1, &e), QREF_OK);
    ck_assert_int_eq(c.len, T + 2);
    ck_assert_int_eq(qref_mtp_draft(&m, &c, V, 2, d, NULL, &e), QREF_EINVAL);
    ck_assert_int_eq(qref_mtp_draft(&m, &c, 5, 0, d, NULL, &e), QREF_EINVAL);
    ck_assert_int_eq(qref_mtp_draft(&m, &c, 5, 2, d, NULL, &e), QREF_OK);
    qref_cache empty;
    ck_assert_int_eq(qref_cache_init(&empty, &m, &e), QREF_OK);
    ck_assert_int_eq(qref_mtp_draft(&m, &empty, 5, 1, d, NULL, &e), QREF_EINVAL);
    qref_cache_free(&empty);
    qref_cache_free(&c);
    free(lg);
    qref_model_free(&m);
}
END_TEST

/* A copy of the checkpoint's config.json and model.safetensors and, when `mtp` is given, that
 * file as mtp.safetensors, in a fresh temporary directory (out, 4096 bytes; the loader refuses
 * links that leave the checkpoint directory). */
static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    ck_assert_msg(in && out, "cannot copy %s to %s", src, dst);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

static void link_dir(char *out, const char *ckpt, const char *mtp)
{
    snprintf(out, 4096, "/tmp/lc_spec_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(out));
    char src[4200], dst[4200];
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", ckpt, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", out, files[i]);
        copy_file(src, dst);
    }
    if (mtp) {
        snprintf(dst, sizeof dst, "%s/mtp.safetensors", out);
        copy_file(mtp, dst);
    }
}

static void unlink_dir(const char *dir)
{
    char p[4200];
    const char *files[] = {"config.json", "model.safetensors", "mtp.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

START_TEST(test_speculative_no_head)
{
    char dir[4096];
    link_dir(dir, DENSE, NULL);
    qref_model m;
    qref_cache c;
    qref_error e = {0};
    load(&m, dir);
    ck_assert_ptr_null(m.mtp);
    prefill(&m, &c, NULL);
    int32_t d[1];
    ck_assert_int_eq(qref_mtp_draft(&m, &c, 5, 1, d, NULL, &e), QREF_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "no MTP head"));
    /* verify needs no head */
    int32_t ids[2] = {3, 4};
    ck_assert_int_eq(qref_verify(&m, &c, ids, 2, NULL, &e), QREF_OK);
    ck_assert_int_eq(qref_verify_accept(&m, &c, 0, &e), QREF_OK);
    qref_cache_free(&c);
    qref_model_free(&m);
    unlink_dir(dir);
}
END_TEST

START_TEST(test_speculative_head_mismatch)
{
    /* the dense head beside the MoE model: its MoE tensors are missing, named in the message */
    char dir[4096];
    link_dir(dir, MOE, DENSE "/mtp.safetensors");
    qref_model m;
    qref_error e = {0};
    ck_assert_int_eq(qref_model_load(&m, dir, &e), QREF_EMISSING);
    ck_assert_msg(strstr(e.msg, "mtp.layers.0.mlp.gate.weight") != NULL, "%s", e.msg);
    ck_assert_ptr_null(strchr(e.msg, '\n'));
    qref_model_free(&m);
    unlink_dir(dir);
}
END_TEST

START_TEST(test_speculative_clone_drafts_alike)
{
    qref_model m;
    qref_cache a, b;
    qref_error e = {0};
    load(&m, _i ? MOE : DENSE);
    const int V = m.cfg.vocab_size, k = 3;
    qref_real *last = malloc((size_t)V * sizeof *last), *la = malloc((size_t)k * V * sizeof *la),
              *lb = malloc((size_t)k * V * sizeof *lb);
    prefill(&m, &a, last);
    int32_t da[3], db[3], g = argmax(&m, last);
    ck_assert_int_eq(qref_mtp_draft(&m, &a, g, 1, da, NULL, &e), QREF_OK); /* MTP rows up to date */
    ck_assert_int_eq(qref_cache_clone(&b, &a, &e), QREF_OK);
    ck_assert_int_eq(qref_mtp_draft(&m, &a, g, k, da, la, &e), QREF_OK);
    ck_assert_int_eq(qref_mtp_draft(&m, &b, g, k, db, lb, &e), QREF_OK);
    ck_assert_mem_eq(da, db, sizeof da);
    ck_assert_mem_eq(la, lb, (size_t)k * V * sizeof *la);
    qref_cache_free(&a);
    qref_cache_free(&b);
    free(last);
    free(la);
    free(lb);
    qref_model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- acceptance (measured) */

#if defined(LC_SPEC_FULL)

START_TEST(test_speculative_acceptance)
{
    /* the tiny checkpoints, then any directories LC_SPEC_ACCEPT_DIRS names (colon-separated:
     * a measurement on `logitcheck synth` checkpoints, whose published presets carry mtp.*) */
    const char *dirs[8] = {DENSE, MOE};
    int n_dirs = 2;
    char extra[4096] = "";
    if (getenv("LC_SPEC_ACCEPT_DIRS"))
        snprintf(extra, sizeof extra, "%s", getenv("LC_SPEC_ACCEPT_DIRS"));
    for (char *tok = strtok(extra, ":"); tok && n_dirs < 8; tok = strtok(NULL, ":"))
        dirs[n_dirs++] = tok;
    for (int which = 0; which < n_dirs; which++) {
        qref_model m;
        load(&m, dirs[which]);
        const int V = m.cfg.vocab_size, N = 40;
        qref_real *last = malloc((size_t)V * sizeof *last), *lg = malloc((size_t)5 * V * sizeof *lg);
        int32_t plain[40];
        qref_cache c;
        qref_error e = {0};
        prefill(&m, &c, last);
        plain[0] = argmax(&m, last);
        for (int i = 1; i < N; i++) {
            qref_tokens in = {.ids = &plain[i - 1], .n = 1};
            qref_outputs o = {.logits = lg};
            ck_assert(qref_forward(&m, &c, &in, &o, &e) == QREF_OK);
            plain[i] = argmax(&m, lg);
        }
        qref_cache_free(&c);
        for (int k = 1; k <= 4; k++) {
            int32_t tok[40], ids[5];
            int drafted = 0, accepted = 0, steps = 0;
            prefill(&m, &c, last);
            tok[0] = argmax(&m, last);
            for (int pos = 0; pos <= N - 2; steps++) {
                const int kk = k < N - 2 - pos ? k : N - 2 - pos;
                ids[0] = tok[pos];
                if (kk)
                    ck_assert_msg(qref_mtp_draft(&m, &c, tok[pos], kk, ids + 1, NULL, &e) == QREF_OK, "%s", e.msg);
                ck_assert_msg(qref_verify(&m, &c, ids, kk + 1, lg, &e) == QREF_OK, "%s", e.msg);
                int a = 0;
                while (a < kk && ids[1 + a] == argmax(&m, lg + (size_t)a * V))
                    a++;
                ck_assert(qref_verify_accept(&m, &c, a, &e) == QREF_OK);
                for (int i = 0; i <= a; i++)
                    tok[pos + 1 + i] = argmax(&m, lg + (size_t)i * V);
                pos += a + 1;
                drafted += kk;
                accepted += a;
            }
            ck_assert_mem_eq(tok, plain, sizeof tok);
            printf("acceptance %s k=%d: %d of %d drafts (%.3f), %d verify steps for %d tokens\n",
                   dirs[which], k, accepted, drafted, drafted ? (double)accepted / drafted : 0.0,
                   steps, N);
            qref_cache_free(&c);
        }
        free(last);
        free(lg);
        qref_model_free(&m);
    }
}
END_TEST
#endif

/* Two executables from this file: test_speculative (every path once, dense; cheap enough for
 * valgrind) and, with LC_SPEC_FULL, test_speculative_full (both checkpoints, the comparison path
 * and the acceptance measurement; left out of memcheck, its code paths being those of the
 * first). */
int main(void)
{
    Suite *s = suite_create("speculative");
    TCase *tc = tcase_create("verify");
    tcase_set_timeout(tc, 600);
#if defined(LC_SPEC_FULL)
    tcase_add_loop_test(tc, test_speculative_accept_every_count, 0, 2);
    tcase_add_loop_test(tc, test_speculative_rerun_path, 0, 2);
    tcase_add_loop_test(tc, test_speculative_clone_drafts_alike, 0, 2);
    tcase_add_test(tc, test_speculative_acceptance);
    tcase_add_loop_test(tc, test_speculative_batch_rows, 0, 2);
    tcase_add_test(tc, test_speculative_refusals);
    tcase_add_test(tc, test_speculative_no_head);
    tcase_add_test(tc, test_speculative_head_mismatch);
#else
    tcase_add_loop_test(tc, test_speculative_accept_every_count, 0, 1);
    tcase_add_loop_test(tc, test_speculative_rerun_path, 1, 2);
    tcase_add_loop_test(tc, test_speculative_batch_rows, 0, 1);
    tcase_add_test(tc, test_speculative_per_expert);
    tcase_add_test(tc, test_speculative_refusals);
    tcase_add_test(tc, test_speculative_no_head);
    tcase_add_test(tc, test_speculative_head_mismatch);
    tcase_add_loop_test(tc, test_speculative_clone_drafts_alike, 1, 2);
#endif
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
