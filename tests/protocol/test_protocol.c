/* SPDX-License-Identifier: MIT */
/*
 * Protocol client tests (engines/engine_proc.c) against tests/protocol/bad_engine:
 *   - a correct engine: every operation round-trips, chunked == one-shot, a restored snapshot
 *     continues like the original, batch pads come back NaN, the child's stderr lands in the
 *     log, shutdown leaves no child;
 *   - one row per misbehaviour (crash, exit, hang, malformed line, wrong id, payload size,
 *     short payload, shape, dtype, NaN logits, a 10^12-element tensor, garbage hello, wrong
 *     protocol version): the operation returns LC_EENGINE with one line naming the engine
 *     command, the op and the request id and what went wrong; the next operation fails as
 *     "down"; restart gives an engine that passes the whole scenario; no child is left.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "lc_engine.h"

#ifndef BAD_ENGINE
#error "BAD_ENGINE must name the bad_engine executable"
#endif

#define V 32

static void no_children(void)
{
    errno = 0;
    pid_t r = waitpid(-1, NULL, WNOHANG);
    ck_assert_msg(r == -1 && errno == ECHILD, "a child process is left (waitpid -> %d, %s)", (int)r, strerror(errno));
}

static void tmp_path(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "%s/test_protocol_%s_%d", LC_BINARY_DIR, what, (int)getpid());
    unlink(buf);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The whole interface once, checking what a correct engine returns; returns the first
 * failing code (err filled), else LC_OK. */
static int scenario(lc_engine *e, lc_error *err)
{
    lc_model_info mi;
    int rc;
    if ((rc = lc_engine_load(e, "toy-checkpoint", &mi, err)))
        return rc;
    ck_assert_int_eq(mi.vocab_size, V);
    ck_assert_int_eq(mi.num_layers, 2);
    int32_t ids_a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, ids_b[6] = {11, 12, 13, 14, 15, 16};
    lc_pseg sa = {.type = LC_PSEG_IDS, .ids = ids_a, .n_ids = 10}, sb = {.type = LC_PSEG_IDS, .ids = ids_b, .n_ids = 6};
    lc_prompt_in ia = {.segs = &sa, .n_segs = 1}, ib = {.segs = &sb, .n_segs = 1};
    lc_prompt_info pa = {0}, pb = {0};
    int s1 = -1, s2 = -1, s3 = -1, b1 = -1, b2 = -1, snap = -1;
    lc_state st = {0};
    static double all[10 * V], hidden[3 * 10 * 8], last[V], d1[V], d2[V], bl[2 * 10 * V], bd[2 * V], rope[2 * 4];
    if ((rc = lc_engine_prompt_open(e, &ia, &pa, err)) || (rc = lc_engine_prompt_open(e, &ib, &pb, err)))
        goto out;
    ck_assert_int_eq(pa.n, 10);
    ck_assert_int_eq(pa.ids[9], 10);
    ck_assert_ptr_nonnull(pa.pos);
    ck_assert_int_eq((int)pa.pos[2 * 10 + 9], 9);
    ck_assert_int_eq(pb.n, 6);

    /* one-shot with hidden taps, against chunks 4 + 6 (last row) */
    lc_prefill_out one = {.sel = LC_LOGITS_ALL, .logits = all, .hidden = hidden};
    lc_prefill_out none = {.sel = LC_LOGITS_NONE};
    lc_prefill_out tail = {.sel = LC_LOGITS_LAST, .logits = last};
    if ((rc = lc_engine_seq_open(e, &s1, err)) || (rc = lc_engine_prefill(e, s1, pa.handle, 0, 10, &one, err)) ||
        (rc = lc_engine_seq_open(e, &s2, err)) || (rc = lc_engine_prefill(e, s2, pa.handle, 0, 4, &none, err)) ||
        (rc = lc_engine_prefill(e, s2, pa.handle, 4, 10, &tail, err)))
        goto out;
    ck_assert_msg(!memcmp(last, all + 9 * V, sizeof last), "chunked prefill's last row differs from one-shot's");
    ck_assert_msg(hidden[0] != 0.0 || hidden[1] != 0.0, "no hidden taps came back");

    /* snapshot after the prompt; the restored copy decodes like the original */
    if ((rc = lc_engine_snapshot(e, s1, &snap, err)) || (rc = lc_engine_decode(e, s1, 3, d1, err)) ||
        (rc = lc_engine_restore(e, snap, &s3, err)) || (rc = lc_engine_decode(e, s3, 3, d2, err)))
        goto out;
    ck_assert_msg(!memcmp(d1, d2, sizeof d1), "a restored snapshot decodes differently");
    if ((rc = lc_engine_state(e, s3, &st, err)))
        goto out;
    ck_assert_int_eq(st.len, 11);
    ck_assert_uint_eq(st.n, 2);

    /* batch of the two prompts: row 1 (6 tokens) has 4 pads, NaN whatever the engine sent */
    int seqs[2], prompts[2] = {pa.handle, pb.handle};
    int32_t toks[2] = {5, 6};
    if ((rc = lc_engine_seq_open(e, &b1, err)) || (rc = lc_engine_seq_open(e, &b2, err)))
        goto out;
    seqs[0] = b1, seqs[1] = b2;
    if ((rc = lc_engine_batch_prefill(e, seqs, prompts, 2, 0, 10, bl, err)) ||
        (rc = lc_engine_batch_decode(e, seqs, toks, 2, bd, err)))
        goto out;
    ck_assert_msg(!memcmp(bl, all, sizeof all), "batch row 0 differs from the single run");
    for (int t = 0; t < 4; t++)
        ck_assert_msg(isnan(bl[(10 + t) * V]), "pad column %d of row 1 is not NaN", t);
    ck_assert_msg(!isnan(bl[(10 + 4) * V]), "first real column of row 1 is NaN");
    int64_t pos[3 * 2] = {0, 7, 0, 7, 0, 7};
    if ((rc = lc_engine_rope(e, pos, 2, rope, err)))
        goto out;
    ck_assert_double_eq_tol(rope[0], 1.0, 1e-15);
    ck_assert_double_eq_tol(rope[4], cos(7.0), 1e-15);
    rc = lc_engine_reset(e, err);
out:
    lc_state_free(&st);
    lc_engine_snap_release(e, snap);
    lc_engine_seq_close(e, s1);
    lc_engine_seq_close(e, s2);
    lc_engine_seq_close(e, s3);
    lc_engine_seq_close(e, b1);
    lc_engine_seq_close(e, b2);
    lc_engine_prompt_close(e, pa.handle);
    lc_engine_prompt_close(e, pb.handle);
    lc_prompt_info_free(&pa);
    lc_prompt_info_free(&pb);
    return rc;
}

/* ---------------------------------------------------------------- a correct engine */

START_TEST(test_protocol_good_engine)
{
    char log[512], line[1024];
    tmp_path(log, sizeof log, "good.log");
    lc_engine *e = NULL;
    lc_error err = {0};
    ck_assert_msg(lc_engine_proc_new(&e, BAD_ENGINE, 10, log, &err) == LC_OK, "%s", err.msg);
    ck_assert_str_eq(e->info.name, "bad_engine");
    ck_assert_int_eq(e->info.precision, LC_EPREC_F64);
    ck_assert(lc_engine_info_has(&e->info, LC_CAP_SNAPSHOT));
    ck_assert(!lc_engine_info_has(&e->info, LC_CAP_IMAGES));
    ck_assert_msg(scenario(e, &err) == LC_OK, "%s", err.msg);
    /* a refusal keeps the stream in step: a span that does not continue the sequence */
    lc_model_info mi;
    int32_t ids[3] = {1, 2, 3};
    lc_pseg sg = {.type = LC_PSEG_IDS, .ids = ids, .n_ids = 3};
    lc_prompt_in in = {.segs = &sg, .n_segs = 1};
    lc_prompt_info pi = {0};
    int seq;
    lc_prefill_out none = {.sel = LC_LOGITS_NONE};
    ck_assert_int_eq(lc_engine_load(e, "toy", &mi, &err), LC_OK);
    ck_assert_int_eq(lc_engine_prompt_open(e, &in, &pi, &err), LC_OK);
    ck_assert_int_eq(lc_engine_seq_open(e, &seq, &err), LC_OK);
    ck_assert_int_eq(lc_engine_prefill(e, seq, pi.handle, 1, 3, &none, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "engine '" BAD_ENGINE "': prefill (request ") &&
                      strstr(err.msg, "refused: bad_engine: the span does not continue"),
                  "%s", err.msg);
    ck_assert_int_eq(lc_engine_prefill(e, seq, pi.handle, 0, 3, &none, &err), LC_OK);
    /* an engine without final_hidden is never sent the flag: refused before the request, the
     * stream in step */
    ck_assert(!lc_engine_info_has(&e->info, LC_CAP_FINAL_HIDDEN));
    static double fh[8], lg[V];
    ck_assert_int_eq(lc_engine_decode_final(e, seq, 4, lg, fh, &err), LC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "needs capability 'final_hidden'"), "%s", err.msg);
    lc_prefill_out fin = {.sel = LC_LOGITS_NONE, .final_hidden = fh};
    ck_assert_int_eq(lc_engine_prefill(e, seq, pi.handle, 3, 3, &fin, &err), LC_EUNSUPPORTED);
    ck_assert_int_eq(lc_engine_decode(e, seq, 4, lg, &err), LC_OK);
    lc_prompt_info_free(&pi);
    ck_assert_msg(lc_engine_restart(e, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(scenario(e, &err) == LC_OK, "after restart: %s", err.msg);
    lc_engine_free(e);
    no_children();
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    int starts = 0;
    while (fgets(line, sizeof line, f))
        starts += strstr(line, "bad_engine: started (fault none") != NULL;
    fclose(f);
    ck_assert_int_eq(starts, 2); /* the first start and the restart, both in the log */
    unlink(log);
}
END_TEST

START_TEST(test_protocol_bad_command)
{
    lc_engine *e = NULL;
    lc_error err = {0};
    ck_assert_int_eq(lc_engine_proc_new(&e, "/no/such/engine --flag", 5, NULL, &err), LC_EENGINE);
    ck_assert_ptr_null(e);
    ck_assert_msg(strstr(err.msg, "engine '/no/such/engine --flag': hello (request 0): engine exited with status 127"),
                  "%s", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
    ck_assert_int_eq(lc_engine_proc_new(&e, "", 5, NULL, &err), LC_EINPUT);
    no_children();
}
END_TEST

/* ---------------------------------------------------------------- one misbehaviour a row */

typedef struct {
    const char *fault, *at;
    const char *want;           /* in the message after "OP (request N): " */
} fault_row;

static const fault_row faults[] = {
    {"crash", "prefill", "engine crashed (exit status 139: signal 11, Segmentation fault) before replying"},
    {"exit", "prefill", "engine exited with status 0 before replying"},
    {"hang", "decode", "timed out after 1 s before replying"},
    {"malformed", "seq_open", "malformed reply: not a JSON object: '{\"id\": oops this is not JSON'"},
    {"wrong_id", "snapshot", "malformed reply: its \"id\" is not"},
    {"wrong_size", "prefill", "tensor 'logits' declares 2556 bytes, but [10,32] f64 takes 2560"},
    {"short_payload", "decode", "engine exited with status 0 after 128 of the 256 bytes of payload 'logits'"},
    {"wrong_shape", "batch_prefill", "tensor 'logits' has shape [2,10,33], expected [2,10,32]"},
    {"wrong_dtype", "decode", "tensor 'logits' has dtype 'i32', expected f64, f32, bf16 or f16"},
    {"nan", "prefill", "NaN logits (row 0, index 3)"},
    {"nan", "batch_decode", "NaN logits (row 0, index 3)"},
    {"huge", "state", "tensor 'state' has shape [1000000000000]: dimension 0 exceeds 536870912"},
    {"garbage_hello", "hello", "malformed reply: not a JSON object: 'Welcome to my engine!'"},
    {"protocol", "hello", "engine speaks protocol version 99, this harness speaks 1"},
};

START_TEST(test_protocol_fault)
{
    const fault_row *r = &faults[_i];
    char once[512], cmd[1200], want[1600];
    tmp_path(once, sizeof once, r->fault);
    snprintf(cmd, sizeof cmd, "%s --fault %s --at %s --once %s", BAD_ENGINE, r->fault, r->at, once);
    lc_engine *e = NULL;
    lc_error err = {0};
    double t0 = now_s();
    int rc = lc_engine_proc_new(&e, cmd, 1.0, "/dev/null", &err);
    if (!strcmp(r->at, "hello")) {
        ck_assert_int_eq(rc, LC_EENGINE);
        ck_assert_ptr_null(e);
    } else {
        ck_assert_msg(rc == LC_OK, "%s", err.msg);
        rc = scenario(e, &err);
        ck_assert_msg(rc == LC_EENGINE, "%s at %s: expected LC_EENGINE, got %d (%s)", r->fault, r->at, rc, err.msg);
    }
    snprintf(want, sizeof want, "engine '%s': %s (request ", cmd, r->at);
    ck_assert_msg(strstr(err.msg, want), "message does not name the command and the request: %s", err.msg);
    ck_assert_msg(strstr(err.msg, r->want), "message lacks '%s': %s", r->want, err.msg);
    ck_assert_msg(!strchr(err.msg, '\n'), "message is not one line: %s", err.msg);
    ck_assert_msg(now_s() - t0 < 5.0, "the failure took %.1f s to surface", now_s() - t0);
    if (e) {
        /* the process is gone: the next operation says so without waiting */
        int seq;
        ck_assert_int_eq(lc_engine_seq_open(e, &seq, &err), LC_EENGINE);
        ck_assert_msg(strstr(err.msg, "engine is down after an earlier failure"), "%s", err.msg);
        no_children();
        ck_assert_msg(lc_engine_restart(e, &err) == LC_OK, "restart: %s", err.msg);
    } else
        ck_assert_msg(lc_engine_proc_new(&e, cmd, 1.0, "/dev/null", &err) == LC_OK, "second start: %s", err.msg);
    ck_assert_msg(scenario(e, &err) == LC_OK, "after restart: %s", err.msg);
    lc_engine_free(e);
    no_children();
    unlink(once);
}
END_TEST

static Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = tcase_create("client");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_protocol_good_engine);
    tcase_add_test(tc, test_protocol_bad_command);
    tcase_add_loop_test(tc, test_protocol_fault, 0, (int)(sizeof faults / sizeof faults[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(protocol_suite());
}
