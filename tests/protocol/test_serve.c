/* SPDX-License-Identifier: MIT */
/*
 * `logitcheck serve` through the protocol client equals the in-process reference engine bit
 * for bit, operation by operation, on the tiny dense and MoE checkpoints: an image prompt's
 * ids, positions and rope delta; one-shot and chunked prefill logits and hidden taps; decode;
 * snapshot/restore; a left-padded batch (pads NaN on both sides); state; vision; rope; vjp. A
 * refused request comes back as the in-process engine's LC_EINPUT, and serve exits cleanly
 * (no child left) when the client goes.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check_main.h"
#include "lc_engine.h"

#ifndef LOGITCHECK
#error "LOGITCHECK must name the logitcheck executable"
#endif

static const char *const ckpts[] = {LC_SOURCE_DIR "/golden/tiny-dense", LC_SOURCE_DIR "/golden/tiny-moe"};

/* a == b as bytes, NaN equal to NaN (batch pads) */
static int same(const double *a, const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(isnan(a[i]) && isnan(b[i])) && memcmp(&a[i], &b[i], sizeof a[i]))
            return 0;
    return 1;
}

typedef struct {
    lc_prompt_info pi, pt;
    double *all, *hidden, *chunk, *dec, *dec2, *batch, *bdec, *vis, *rope;
    double *fin, *dfin, *dlog, *bfin, *bflog, *bdfin; /* final_hidden taps, and the logits beside them */
    lc_state st;
    int vis_rows, V, H, R;
    size_t n_all, n_hidden, n_batch;
} run_out;

static void run_free(run_out *o)
{
    lc_prompt_info_free(&o->pi);
    lc_prompt_info_free(&o->pt);
    free(o->all), free(o->hidden), free(o->chunk), free(o->dec), free(o->dec2), free(o->batch), free(o->bdec);
    free(o->vis), free(o->rope);
    free(o->fin), free(o->dfin), free(o->dlog), free(o->bfin), free(o->bflog), free(o->bdfin);
    lc_state_free(&o->st);
}

#define OK(call) ck_assert_msg((call) == LC_OK, "%s: %s", #call, err.msg)

static void run_all(lc_engine *e, const char *ckpt, run_out *o)
{
    lc_error err = {0};
    lc_model_info mi;
    char img[600];
    snprintf(img, sizeof img, "%s/img_a.png", ckpt);
    OK(lc_engine_load(e, ckpt, &mi, &err));
    OK(lc_engine_reset(e, &err));
    const int V = mi.vocab_size, H = mi.hidden_size, L = mi.num_layers;
    o->V = V, o->H = H, o->R = mi.rotary_dim;
    int32_t a[] = {902, 925, 888, 517, 416}, b[] = {201, 160, 308, 88, 209, 917, 152, 23}, t[] = {30, 396, 848, 267};
    lc_pseg segs[3] = {{.type = LC_PSEG_IDS, .ids = a, .n_ids = 5}, {.type = LC_PSEG_IMAGE, .image = img}, {.type = LC_PSEG_IDS, .ids = b, .n_ids = 8}};
    lc_pseg tseg = {.type = LC_PSEG_IDS, .ids = t, .n_ids = 4};
    lc_prompt_in in = {.segs = segs, .n_segs = 3}, tin = {.segs = &tseg, .n_segs = 1};
    OK(lc_engine_prompt_open(e, &in, &o->pi, &err));
    OK(lc_engine_prompt_open(e, &tin, &o->pt, &err));
    const int N = o->pi.n;
    o->n_all = (size_t)N * V;
    o->n_hidden = (size_t)(L + 1) * N * H;
    o->all = malloc(o->n_all * sizeof(double));
    o->hidden = malloc(o->n_hidden * sizeof(double));
    o->chunk = malloc(o->n_all * sizeof(double));
    o->dec = malloc((size_t)V * sizeof(double));
    o->dec2 = malloc((size_t)V * sizeof(double));
    o->n_batch = (size_t)2 * N * V;
    o->batch = malloc(o->n_batch * sizeof(double));
    o->bdec = malloc((size_t)2 * V * sizeof(double));
    o->rope = malloc((size_t)N * mi.rotary_dim * sizeof(double) + 8);
    o->fin = malloc((size_t)N * H * sizeof(double));
    o->dfin = malloc((size_t)H * sizeof(double));
    o->dlog = malloc((size_t)V * sizeof(double));
    o->bfin = malloc((size_t)2 * N * H * sizeof(double));
    o->bflog = malloc(o->n_batch * sizeof(double));
    o->bdfin = malloc((size_t)2 * H * sizeof(double));
    int s1, s2, s3, s4, snap, b1, b2, b3, b4;
    lc_prefill_out one = {.sel = LC_LOGITS_ALL, .logits = o->all, .hidden = o->hidden, .final_hidden = o->fin};
    OK(lc_engine_seq_open(e, &s1, &err));
    OK(lc_engine_prefill(e, s1, o->pi.handle, 0, N, &one, &err));
    /* chunks of 5 through the image */
    OK(lc_engine_seq_open(e, &s2, &err));
    for (int f = 0; f < N; f += 5) {
        int to = f + 5 < N ? f + 5 : N;
        lc_prefill_out part = {.sel = LC_LOGITS_ALL, .logits = o->chunk + (size_t)f * V};
        OK(lc_engine_prefill(e, s2, o->pi.handle, f, to, &part, &err));
    }
    OK(lc_engine_snapshot(e, s1, &snap, &err));
    OK(lc_engine_decode(e, s1, 77, o->dec, &err));
    OK(lc_engine_restore(e, snap, &s3, &err));
    OK(lc_engine_decode(e, s3, 77, o->dec2, &err));
    OK(lc_engine_state(e, s3, &o->st, &err));
    OK(lc_engine_vision(e, o->pi.handle, &o->vis, &o->vis_rows, &err));
    OK(lc_engine_rope(e, o->pi.pos, N, o->rope, &err));
    int seqs[2], prompts[2] = {o->pi.handle, o->pt.handle};
    int32_t toks[2] = {5, 6};
    OK(lc_engine_seq_open(e, &b1, &err));
    OK(lc_engine_seq_open(e, &b2, &err));
    seqs[0] = b1, seqs[1] = b2;
    OK(lc_engine_batch_prefill(e, seqs, prompts, 2, 0, N, o->batch, &err));
    OK(lc_engine_batch_decode(e, seqs, toks, 2, o->bdec, &err));
    /* the final_hidden flag of decode, batch_prefill and batch_decode (logits beside it, or none) */
    OK(lc_engine_restore(e, snap, &s4, &err));
    OK(lc_engine_decode_final(e, s4, 77, o->dlog, o->dfin, &err));
    OK(lc_engine_seq_open(e, &b3, &err));
    OK(lc_engine_seq_open(e, &b4, &err));
    seqs[0] = b3, seqs[1] = b4;
    OK(lc_engine_batch_prefill_final(e, seqs, prompts, 2, 0, N, o->bflog, o->bfin, &err));
    OK(lc_engine_batch_decode_final(e, seqs, toks, 2, NULL, o->bdfin, &err));
    /* a refusal: a span that does not continue the sequence */
    lc_prefill_out none = {.sel = LC_LOGITS_NONE};
    ck_assert_int_eq(lc_engine_prefill(e, s1, o->pi.handle, 2, 4, &none, &err), LC_EINPUT);
    lc_engine_snap_release(e, snap);
    lc_engine_seq_close(e, s1), lc_engine_seq_close(e, s2), lc_engine_seq_close(e, s3);
    lc_engine_seq_close(e, b1), lc_engine_seq_close(e, b2);
    lc_engine_seq_close(e, s4), lc_engine_seq_close(e, b3), lc_engine_seq_close(e, b4);
    lc_engine_prompt_close(e, o->pi.handle);
    lc_engine_prompt_close(e, o->pt.handle);
}

START_TEST(test_serve_equals_in_process)
{
    const char *ckpt = ckpts[_i];
    lc_engine *ref = NULL, *srv = NULL;
    lc_error err = {0};
    OK(lc_engine_ref_new(&ref, NULL, &err));
    OK(lc_engine_proc_new(&srv, LOGITCHECK " serve", 60, NULL, &err));
    ck_assert_str_eq(srv->info.name, ref->info.name);
    ck_assert_int_eq(srv->info.precision, ref->info.precision);
    ck_assert_uint_eq(srv->info.caps, ref->info.caps);
    run_out a = {0}, b = {0};
    run_all(ref, ckpt, &a);
    run_all(srv, ckpt, &b);
    ck_assert_int_eq(a.pi.n, b.pi.n);
    ck_assert_int_eq(a.pi.n_images, 1);
    ck_assert_int_eq(b.pi.n_images, 1);
    ck_assert_mem_eq(a.pi.grid, b.pi.grid, sizeof *a.pi.grid);
    ck_assert_mem_eq(a.pi.ids, b.pi.ids, (size_t)a.pi.n * sizeof *a.pi.ids);
    ck_assert_mem_eq(a.pi.pos, b.pi.pos, (size_t)3 * a.pi.n * sizeof *a.pi.pos);
    ck_assert_int_eq((int)a.pi.rope_delta, (int)b.pi.rope_delta);
    ck_assert_msg(same(a.all, b.all, a.n_all), "one-shot logits differ");
    ck_assert_msg(same(a.hidden, b.hidden, a.n_hidden), "hidden taps differ");
    ck_assert_msg(same(a.chunk, b.chunk, a.n_all), "chunked logits differ");
    ck_assert_msg(same(a.dec, b.dec, (size_t)a.V), "decode logits differ");
    ck_assert_msg(same(a.dec2, b.dec2, (size_t)a.V), "restored decode logits differ");
    ck_assert_msg(same(a.batch, b.batch, a.n_batch), "batch logits differ");
    ck_assert_msg(isnan(b.batch[(size_t)a.pi.n * a.V]), "a batch pad is not NaN");
    ck_assert_msg(same(a.bdec, b.bdec, (size_t)2 * a.V), "batch decode logits differ");
    ck_assert_int_eq(a.st.len, b.st.len);
    ck_assert_uint_eq(a.st.n, b.st.n);
    ck_assert_msg(same(a.st.data, b.st.data, a.st.n), "states differ");
    ck_assert_int_eq(a.vis_rows, b.vis_rows);
    ck_assert_msg(same(a.vis, b.vis, (size_t)a.vis_rows * a.H), "vision embeddings differ");
    ck_assert_msg(same(a.rope, b.rope, (size_t)a.pi.n * a.R), "rope taps differ");
    const size_t NH = (size_t)a.pi.n * a.H;
    ck_assert_msg(same(a.fin, b.fin, NH), "prefill final_hidden differs");
    ck_assert_msg(same(a.dfin, b.dfin, (size_t)a.H), "decode final_hidden differs");
    ck_assert_msg(same(a.bfin, b.bfin, 2 * NH), "batch_prefill final_hidden differs");
    ck_assert_msg(isnan(b.bfin[NH]) && !isnan(b.bfin[NH + NH - 1]), "batch final_hidden: pads not NaN, or a real NaN");
    ck_assert_msg(same(a.bdfin, b.bdfin, (size_t)2 * a.H), "batch_decode final_hidden differs");
    /* the logits beside the tap are the plain operation's, bit for bit */
    ck_assert_msg(same(b.dlog, b.dec, (size_t)a.V), "decode_final logits differ from decode's");
    ck_assert_msg(same(b.bflog, b.batch, a.n_batch), "batch_prefill_final logits differ from batch_prefill's");
    run_free(&a);
    run_free(&b);
    lc_engine_free(ref);
    lc_engine_free(srv);
    errno = 0;
    ck_assert_msg(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "a child process is left");
}
END_TEST

START_TEST(test_serve_refuses_bad_input)
{
    lc_engine *srv = NULL;
    lc_error err = {0};
    lc_model_info mi;
    OK(lc_engine_proc_new(&srv, LOGITCHECK " serve", 60, NULL, &err));
    ck_assert_int_eq(lc_engine_load(srv, LC_SOURCE_DIR "/no/such/checkpoint", &mi, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "engine '" LOGITCHECK " serve': load (request 1) refused: ") &&
                      strstr(err.msg, "no/such/checkpoint"),
                  "%s", err.msg);
    OK(lc_engine_load(srv, ckpts[0], &mi, &err));
    lc_pseg seg = {.type = LC_PSEG_IMAGE, .image = LC_SOURCE_DIR "/no-such.png"};
    lc_prompt_in in = {.segs = &seg, .n_segs = 1};
    lc_prompt_info pi = {0};
    ck_assert_int_eq(lc_engine_prompt_open(srv, &in, &pi, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "prompt_open (request 3) refused: ") && strstr(err.msg, "no-such.png"), "%s",
                  err.msg);
    lc_engine_free(srv);
}
END_TEST

/* vjp through serve == in process, bit for bit: a padded GDN decoder layer (integer mask
 * and positions on the wire, weight gradients under transformers' names) and the rotary. A
 * refused vjp (its payloads sent all the same) leaves the stream in step. */
static void vjp_run(lc_engine *e, const char *fn, const lc_vjp_param *pr, int np, const lc_vjp_tensor *in, int ni,
                    const lc_vjp_tensor *g, int ng, lc_vjp_result *w, int nw)
{
    lc_error err = {0};
    lc_vjp_in req = {.fn = fn, .params = pr, .n_params = np, .inputs = in, .n_inputs = ni, .grads = g, .n_grads = ng};
    OK(lc_engine_vjp(e, &req, w, nw, &err));
}

/* A video segment (frames, fps, timestamp ids) through the protocol: the expansion, positions,
 * grid, vision rows and prefill logits equal the in-process engine's bit for bit; timestamp
 * groups that do not match the video's temporal patches are refused by both as bad input. */
static void video_run(lc_engine *e, int groups, lc_prompt_info *pi, double **logits, double **vis, int *rows,
                      int *rc_out)
{
    lc_error err = {0};
    lc_model_info mi;
    OK(lc_engine_load(e, ckpts[0], &mi, &err));
    OK(lc_engine_reset(e, &err));
    const char *frames[8];
    char paths[8][600];
    for (int f = 0; f < 8; f++) {
        snprintf(paths[f], sizeof paths[f], "%s/golden/videos/a_f%d.png", LC_SOURCE_DIR, f);
        frames[f] = paths[f];
    }
    int32_t a[] = {5, 6, 7}, b[] = {8, 9}, ts[] = {700, 701, 711, 703, 712, 700, 702, 711, 706, 712, 700, 703};
    int ts_len[3] = {5, 5, 2};
    lc_pseg segs[3] = {{.type = LC_PSEG_IDS, .ids = a, .n_ids = 3},
                       {.type = LC_PSEG_VIDEO, .frames = frames, .n_frames = 8, .fps = 4, .ts_ids = ts,
                        .ts_len = ts_len, .n_ts = groups},
                       {.type = LC_PSEG_IDS, .ids = b, .n_ids = 2}};
    lc_prompt_in in = {.segs = segs, .n_segs = 3};
    *rc_out = lc_engine_prompt_open(e, &in, pi, &err);
    if (*rc_out != LC_OK)
        return;
    int seq;
    *logits = malloc((size_t)pi->n * mi.vocab_size * sizeof **logits);
    lc_prefill_out o = {.sel = LC_LOGITS_ALL, .logits = *logits};
    OK(lc_engine_seq_open(e, &seq, &err));
    OK(lc_engine_prefill(e, seq, pi->handle, 0, pi->n, &o, &err));
    OK(lc_engine_vision(e, pi->handle, vis, rows, &err));
    *rows *= mi.hidden_size;
    lc_engine_seq_close(e, seq);
    lc_engine_prompt_close(e, pi->handle);
}

START_TEST(test_serve_video_equals_in_process)
{
    lc_engine *ref = NULL, *srv = NULL;
    lc_error err = {0};
    OK(lc_engine_ref_new(&ref, NULL, &err));
    OK(lc_engine_proc_new(&srv, LOGITCHECK " serve", 60, NULL, &err));
    lc_prompt_info pa = {0}, pb = {0};
    double *la = NULL, *lb = NULL, *va = NULL, *vb = NULL;
    int ra = 0, rb = 0, rca, rcb;
    /* 8 frames at 4 fps sample to 4 (2 temporal patches): 2 timestamp groups */
    video_run(ref, 2, &pa, &la, &va, &ra, &rca);
    video_run(srv, 2, &pb, &lb, &vb, &rb, &rcb);
    ck_assert_int_eq(rca, LC_OK);
    ck_assert_int_eq(rcb, LC_OK);
    ck_assert_int_eq(pa.n, 3 + 2 * (5 + 2 + 6) + 2);
    ck_assert_int_eq(pa.n, pb.n);
    ck_assert_int_eq(pa.n_images, 1);
    ck_assert_int_eq(pb.n_images, 1);
    ck_assert(pa.grid[0][0] == 2 && pa.grid[0][1] == 4 && pa.grid[0][2] == 6);
    ck_assert(!memcmp(pa.grid, pb.grid, sizeof pa.grid[0]));
    ck_assert(!memcmp(pa.ids, pb.ids, (size_t)pa.n * sizeof *pa.ids));
    ck_assert(!memcmp(pa.pos, pb.pos, 3 * (size_t)pa.n * sizeof *pa.pos));
    ck_assert_int_eq(pa.rope_delta, pb.rope_delta);
    ck_assert_int_eq(ra, rb);
    ck_assert(same(va, vb, (size_t)ra));
    ck_assert(same(la, lb, (size_t)pa.n * 1024));
    lc_prompt_info_free(&pa), lc_prompt_info_free(&pb);
    free(la), free(lb), free(va), free(vb);
    /* three timestamp groups for two temporal patches: bad input on both sides */
    video_run(ref, 3, &pa, &la, &va, &ra, &rca);
    video_run(srv, 3, &pb, &lb, &vb, &rb, &rcb);
    ck_assert_int_eq(rca, LC_EINPUT);
    ck_assert_int_eq(rcb, LC_EINPUT);
    lc_engine_free(ref);
    lc_engine_free(srv);
}
END_TEST

START_TEST(test_serve_vjp_equals_in_process)
{
    enum { N = 9, HID = 64, HQ = 4, HKV = 2, D = 64 };
    static double x[N * HID], dy[N * HID], mask[N], pos[3 * N], q[N * HQ * D], k[N * HKV * D], dq[N * HQ * D],
        dk[N * HKV * D];
    for (int i = 0; i < N * HID; i++)
        x[i] = sin(0.37 * i), dy[i] = cos(0.11 * i);
    for (int t = 0; t < N; t++)
        mask[t] = t >= 2, pos[t] = t, pos[N + t] = t + (t > 4), pos[2 * N + t] = t + 2 * (t > 4);
    for (int i = 0; i < N * HQ * D; i++)
        q[i] = sin(0.05 * i + 1), dq[i] = cos(0.07 * i);
    for (int i = 0; i < N * HKV * D; i++)
        k[i] = cos(0.03 * i), dk[i] = sin(0.09 * i + 2);
    lc_vjp_tensor lin[3] = {{"x", 2, {N, HID}, x, 0}, {"mask", 1, {N}, mask, 1}, {"position_ids", 2, {3, N}, pos, 1}};
    lc_vjp_tensor lg = {"d_out", 2, {N, HID}, dy, 0};
    lc_vjp_param lp[2] = {{"layer", 0}, {"chunk", 4}};
    lc_vjp_tensor rin[3] = {{"q", 3, {N, HQ, D}, q, 0}, {"k", 3, {N, HKV, D}, k, 0}, {"position_ids", 2, {3, N}, pos, 1}};
    lc_vjp_tensor rg[2] = {{"d_q", 3, {N, HQ, D}, dq, 0}, {"d_k", 3, {N, HKV, D}, dk, 0}};
    lc_engine *eng[2] = {NULL, NULL};
    lc_error err = {0};
    lc_model_info mi;
    OK(lc_engine_ref_new(&eng[0], NULL, &err));
    OK(lc_engine_proc_new(&eng[1], LOGITCHECK " serve", 60, NULL, &err));
    lc_vjp_result w[2][5];
    for (int s = 0; s < 2; s++) {
        OK(lc_engine_load(eng[s], ckpts[0], &mi, &err));
        lc_vjp_result lw[3] = {{"grad_x", 2, {N, HID}, NULL},
                               {"grad_w/linear_attn.conv1d.weight", 3, {192, 1, 4}, NULL},
                               {"grad_w/no.such.weight", 1, {3}, NULL}};
        /* refused: no such function; the next request is answered */
        lc_vjp_in bad = {.fn = "gdn_fused", .inputs = lin, .n_inputs = 3, .grads = &lg, .n_grads = 1};
        ck_assert_int_eq(lc_engine_vjp(eng[s], &bad, lw, 3, &err), LC_EINPUT);
        ck_assert_msg(strstr(err.msg, "unknown function 'gdn_fused'"), "%s", err.msg);
        vjp_run(eng[s], "decoder_layer", lp, 2, lin, 3, &lg, 1, lw, 3);
        ck_assert_msg(lw[0].data && lw[1].data, "layer gradients missing");
        ck_assert_msg(!lw[2].data, "a gradient for a weight the layer lacks");
        lc_vjp_result rw[2] = {{"grad_q", 3, {N, HQ, D}, NULL}, {"k_out", 3, {N, HKV, D}, NULL}};
        vjp_run(eng[s], "rope", NULL, 0, rin, 3, rg, 2, rw, 2);
        w[s][0] = lw[0], w[s][1] = lw[1], w[s][2] = rw[0], w[s][3] = rw[1];
    }
    const size_t cnt[4] = {N * HID, 192 * 4, N * HQ * D, N * HKV * D};
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(w[0][i].data && w[1][i].data, "result %s missing", w[0][i].name);
        ck_assert_msg(same(w[0][i].data, w[1][i].data, cnt[i]), "%s differs through serve", w[0][i].name);
        ck_assert_msg(isfinite(w[0][i].data[cnt[i] - 1]), "%s not finite", w[0][i].name);
        free(w[0][i].data), free(w[1][i].data);
    }
    lc_engine_free(eng[0]);
    lc_engine_free(eng[1]);
}
END_TEST

/* The prompt options (pixel_limits, pad_to) through the protocol: an image prompt under a lowered
 * max_pixels and a raised min_pixels, padded beyond its length, as a batch of one: grid, ids,
 * positions and the batched logits (NaN pads) equal the in-process engine's bit for bit; bad
 * values are refused by both as bad input, and the stream stays in step. */
static void options_run(lc_engine *e, lc_prompt_info *pi, double **logits, int *L, int *V)
{
    lc_error err = {0};
    lc_model_info mi;
    OK(lc_engine_load(e, ckpts[0], &mi, &err));
    OK(lc_engine_reset(e, &err));
    const int32_t a[] = {902, 925, 888}, b[] = {201, 160};
    lc_pseg segs[3] = {{.type = LC_PSEG_IDS, .ids = a, .n_ids = 3},
                       {.type = LC_PSEG_IMAGE, .image = LC_SOURCE_DIR "/golden/tiny-dense/img_a.png"},
                       {.type = LC_PSEG_IDS, .ids = b, .n_ids = 2}};
    lc_prompt_in in = {.segs = segs, .n_segs = 3, .image_min_pixels = 2048, .image_max_pixels = 4096, .pad_to = 12};
    OK(lc_engine_prompt_open(e, &in, pi, &err));
    /* refused: min above max, pad_to below the prompt; then the stream goes on */
    lc_prompt_info bad = {0};
    in.image_min_pixels = 8192;
    ck_assert_int_eq(lc_engine_prompt_open(e, &in, &bad, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "min_pixels 8192 exceeds max_pixels 4096"), "%s", err.msg);
    in.image_min_pixels = 0;
    in.pad_to = 3;
    ck_assert_int_eq(lc_engine_prompt_open(e, &in, &bad, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "pad_to 3 is below the prompt's 9 expanded tokens"), "%s", err.msg);
    *L = 12;
    *V = mi.vocab_size;
    int seq, prompt = pi->handle;
    OK(lc_engine_seq_open(e, &seq, &err));
    *logits = malloc((size_t)(*L + 1) * mi.vocab_size * sizeof **logits);
    OK(lc_engine_batch_prefill(e, &seq, &prompt, 1, 0, *L, *logits, &err));
    int32_t t = 17;
    OK(lc_engine_batch_decode(e, &seq, &t, 1, *logits + (size_t)*L * mi.vocab_size, &err));
}

START_TEST(test_serve_prompt_options_equal_in_process)
{
    lc_engine *ref = NULL, *srv = NULL;
    lc_error err = {0};
    OK(lc_engine_ref_new(&ref, NULL, &err));
    OK(lc_engine_proc_new(&srv, LOGITCHECK " serve", 60, NULL, &err));
    ck_assert(lc_engine_info_has(&srv->info, LC_CAP_PIXEL_LIMITS) && lc_engine_info_has(&srv->info, LC_CAP_PAD_TO));
    lc_prompt_info pa = {0}, pb = {0};
    double *la = NULL, *lb = NULL;
    int L = 0, Va = 0, Vb = 0;
    options_run(ref, &pa, &la, &L, &Va);
    options_run(srv, &pb, &lb, &L, &Vb);
    ck_assert_int_eq(Va, Vb);
    /* smart_resize of 64 x 96 under max 4096: 32 x 64 (test_prompt_options derives it), 2 tokens */
    ck_assert_int_eq(pa.n, 9);
    ck_assert_int_eq(pb.n, 9);
    ck_assert(pb.grid[0][0] == 1 && pb.grid[0][1] == 2 && pb.grid[0][2] == 4);
    ck_assert_mem_eq(pa.grid, pb.grid, sizeof *pa.grid);
    ck_assert_mem_eq(pa.ids, pb.ids, (size_t)pa.n * sizeof *pa.ids);
    ck_assert_mem_eq(pa.pos, pb.pos, (size_t)3 * pa.n * sizeof *pa.pos);
    const size_t V = (size_t)Va;
    ck_assert_msg(same(la, lb, (size_t)(L + 1) * V), "batch-of-one logits differ through serve");
    ck_assert_msg(isnan(lb[0]) && isnan(lb[(size_t)(L - pb.n - 1) * V]) && !isnan(lb[(size_t)(L - pb.n) * V]),
                  "pads of the padded batch of one are not NaN, or a real column is");
    lc_prompt_info_free(&pa), lc_prompt_info_free(&pb);
    free(la), free(lb);
    lc_engine_free(ref);
    lc_engine_free(srv);
}
END_TEST

static Suite *serve_suite(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("serve");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_serve_equals_in_process, 0, 2);
    tcase_add_test(tc, test_serve_refuses_bad_input);
    tcase_add_test(tc, test_serve_vjp_equals_in_process);
    tcase_add_test(tc, test_serve_video_equals_in_process);
    tcase_add_test(tc, test_serve_prompt_options_equal_in_process);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(serve_suite());
}
