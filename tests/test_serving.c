/* SPDX-License-Identifier: MIT */
/*
 * The serving operations of the in-process reference engine: a continuous-batching step
 * (rows refused as bad input leave every sequence as it was; a step mixing a prefill chunk and
 * a decode row gives each row what it gives alone, within the cross-schedule bound) and the
 * prefix cache (longest stored boundary, a partial match refused, the counters, reset).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "dense_fixture.h"
#include "lc_engine.h"
#include "runner.h"

static const int32_t ids_a[] = {12, 845, 33, 610, 71, 2, 930, 402, 118, 64, 77, 5, 301, 16, 250, 9};
#define N_A ((int)(sizeof ids_a / sizeof ids_a[0]))

/* A text prompt of the first n ids of ids (its handle). */
static int text_prompt(const int32_t *ids, int n)
{
    lc_error err = {0};
    lc_pseg seg = {.type = LC_PSEG_IDS, .ids = ids, .n_ids = n};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1};
    lc_prompt_info pi = {0};
    ck_assert_msg(lc_engine_prompt_open(eng, &in, &pi, &err) == LC_OK, "%s", err.msg);
    const int h = pi.handle;
    lc_prompt_info_free(&pi);
    return h;
}

static int prefilled(int prompt, int to, double *logits)
{
    lc_error err = {0};
    int seq;
    lc_prefill_out o = {.sel = logits ? LC_LOGITS_ALL : LC_LOGITS_NONE, .logits = logits};
    ck_assert_msg(lc_engine_seq_open(eng, &seq, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_engine_prefill(eng, seq, prompt, 0, to, &o, &err) == LC_OK, "%s", err.msg);
    return seq;
}

static int seq_len(int seq)
{
    lc_error err = {0};
    lc_state st = {0};
    ck_assert_msg(lc_engine_state(eng, seq, &st, &err) == LC_OK, "%s", err.msg);
    const int len = st.len;
    lc_state_free(&st);
    return len;
}

START_TEST(test_serving_step_bad_rows)
{
    const int p = text_prompt(ids_a, N_A);
    const int s0 = prefilled(p, 4, NULL), s1 = prefilled(p, 6, NULL);
    lc_error err = {0};
    const struct {
        lc_step_row rows[2];
        int B;
        const char *want;
    } bad[] = {
        {{{.seq = s0, .prompt = p, .from = 4, .to = 8}, {.seq = s0, .prompt = -1, .token = 3}}, 2, "both sequence"},
        {{{.seq = s1, .prompt = p, .from = 5, .to = 8}, {.seq = s0, .prompt = -1, .token = 3}}, 2, "does not continue"},
        {{{.seq = s0, .prompt = 77, .from = 4, .to = 8}}, 1, "no prompt 77"},
        {{{.seq = 99, .prompt = -1, .token = 3}}, 1, "no sequence 99"},
        {{{.seq = s0, .prompt = -1, .token = 1 << 20}}, 1, "outside the vocabulary"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ck_assert_int_eq(lc_engine_step(eng, bad[k].rows, bad[k].B, NULL, &err), LC_EINPUT);
        ck_assert_msg(strstr(err.msg, bad[k].want) && !strchr(err.msg, '\n'), "row set %zu: %s", k, err.msg);
        ck_assert_int_eq(seq_len(s0), 4); /* refused: nothing ran */
        ck_assert_int_eq(seq_len(s1), 6);
    }
}
END_TEST

START_TEST(test_serving_step_rows_alone)
{
    const int V = mi.vocab_size, p = text_prompt(ids_a, N_A);
    const double bound = eng->info.precision == LC_EPREC_F64 ? 1e-11 : 3e-4;
    double *alone = malloc((size_t)(N_A + 1) * V * sizeof *alone), *step = malloc((size_t)(N_A + 1) * V * sizeof *step);
    double *dec = malloc((size_t)V * sizeof *dec);
    lc_error err = {0};
    /* alone: request A prefilled whole; request B (the first 9 tokens) then one decode */
    prefilled(p, N_A, alone);
    int b = prefilled(p, 9, NULL);
    ck_assert_int_eq(lc_engine_decode(eng, b, 7, dec, &err), LC_OK);
    /* one step: A's tokens [10, N_A) as a chunk beside B's decode */
    int sa = prefilled(p, 10, NULL), sb = prefilled(p, 9, NULL);
    lc_step_row rows[2] = {{.seq = sa, .prompt = p, .from = 10, .to = N_A}, {.seq = sb, .prompt = -1, .token = 7}};
    ck_assert_msg(lc_engine_step(eng, rows, 2, step, &err) == LC_OK, "%s", err.msg);
    double m = 0;
    for (size_t i = 0; i < (size_t)(N_A - 10) * V; i++)
        m = fmax(m, fabs(step[i] - alone[(size_t)10 * V + i]));
    for (int v = 0; v < V; v++)
        m = fmax(m, fabs(step[(size_t)(N_A - 10) * V + v] - dec[v]));
    ck_assert_msg(m <= bound, "step rows vs alone: max_abs %g > %g", m, bound);
    ck_assert_int_eq(seq_len(sa), N_A);
    ck_assert_int_eq(seq_len(sb), 10);
    free(alone);
    free(step);
    free(dec);
}
END_TEST

/* Stores boundaries of ids_a at 5 and 12, then looks up: the whole 16 (reuses 12); the first 8
 * (ends inside the 12-token span: that partial match is refused, reuses 5); a prompt diverging
 * at 9 (refused, reuses 5); another diverging at 3 (inside the 5-token span: refused, a miss). */
START_TEST(test_serving_prefix_cache)
{
    lc_error err = {0};
    const int p = text_prompt(ids_a, N_A);
    int s = prefilled(p, 5, NULL);
    ck_assert_int_eq(lc_engine_prefix_store(eng, s, p, &err), LC_OK);
    lc_prefill_out none = {.sel = LC_LOGITS_NONE};
    ck_assert_int_eq(lc_engine_prefill(eng, s, p, 5, 12, &none, &err), LC_OK);
    ck_assert_int_eq(lc_engine_prefix_store(eng, s, p, &err), LC_OK);
    ck_assert_int_eq(lc_engine_prefix_store(eng, s, p, &err), LC_OK); /* again: stored once */
    int32_t diverge9[N_A], diverge3[N_A];
    memcpy(diverge9, ids_a, sizeof diverge9);
    memcpy(diverge3, ids_a, sizeof diverge3);
    diverge9[9] = 500;
    diverge3[3] = 500;
    const struct {
        int prompt, reused;
    } look[] = {{p, 12}, {text_prompt(ids_a, 8), 5}, {text_prompt(diverge9, N_A), 5}, {text_prompt(diverge3, N_A), 0}};
    for (size_t k = 0; k < sizeof look / sizeof look[0]; k++) {
        int seq = -1, reused = -1;
        ck_assert_msg(lc_engine_prefix_lookup(eng, look[k].prompt, &seq, &reused, &err) == LC_OK, "%s", err.msg);
        ck_assert_msg(reused == look[k].reused, "lookup %zu reused %d, expected %d", k, reused, look[k].reused);
        ck_assert_int_eq(seq_len(seq), reused);
    }
    lc_prefix_stats st;
    ck_assert_int_eq(lc_engine_prefix_stats(eng, &st, &err), LC_OK);
    ck_assert_int_eq(st.lookups, 4);
    ck_assert_int_eq(st.hits, 3);
    ck_assert_int_eq(st.tokens_reused, 22);
    ck_assert_int_eq(st.refused, 3);
    ck_assert_int_eq(st.stored, 2);
    int seq, reused;
    ck_assert_int_eq(lc_engine_prefix_lookup(eng, 55, &seq, &reused, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "no prompt 55"), "%s", err.msg);
    ck_assert_int_eq(lc_engine_reset(eng, &err), LC_OK);
    ck_assert_int_eq(lc_engine_prefix_stats(eng, &st, &err), LC_OK);
    ck_assert_int_eq(st.lookups + st.hits + st.tokens_reused + st.refused + st.stored, 0);
}
END_TEST

/* An engine without the serving capabilities (the transformers adapter declares neither): the
 * serving kinds are SKIP naming the capability; the interleaved isolation case still runs. */
START_TEST(test_serving_skip_without_capability)
{
    lc_catalog cat;
    lc_error err = {0};
    lc_catalog_init(&cat);
    ck_assert_msg(lc_catalog_load_file(&cat, LC_SOURCE_DIR "/cases/serving.json", LC_SOURCE_DIR, &err) == LC_OK, "%s",
                  err.msg);
    lc_engine masked = *eng; /* the same engine, declaring less (never freed itself) */
    masked.info.caps &= ~((1u << LC_CAP_STEP) | (1u << LC_CAP_PREFIX_CACHE));
    const struct {
        const char *name;
        lc_verdict v;
        const char *reason;
    } want[] = {{"dense.continuous_batch.schedule", LC_VERDICT_SKIP, "engine lacks step"},
                {"moe.prefix_cache.turns", LC_VERDICT_SKIP, "engine lacks prefix_cache"},
                {"dense.isolation.interleaved_images", LC_VERDICT_PASS, ""}};
    lc_run_opts o = {.root = LC_SOURCE_DIR};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        lc_case_result res = {0};
        const lc_case *c = lc_catalog_find(&cat, want[k].name);
        ck_assert_msg(c != NULL, "%s is not in cases/serving.json", want[k].name);
        lc_verdict v = lc_run_case(c, &o, &masked, &res);
        ck_assert_msg(v == want[k].v && !strcmp(res.reason, want[k].reason), "%s: %s (%s)", want[k].name,
                      lc_verdict_name(v), res.reason);
        lc_case_result_free(&res);
    }
    lc_catalog_free(&cat);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("serving");
    TCase *tc = tcase_create("serving");
    tcase_add_checked_fixture(tc, dense_setup, dense_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_serving_step_bad_rows);
    tcase_add_test(tc, test_serving_step_rows_alone);
    tcase_add_test(tc, test_serving_prefix_cache);
    tcase_add_test(tc, test_serving_skip_without_capability);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
