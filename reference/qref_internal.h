/* SPDX-License-Identifier: MIT */
/*
 * Cross-file internals of the reference engine (qref__ prefix). Not installed, not stable.
 *
 * Shape legend used in comments: n = tokens in this call, H = hidden, Hq/Hkv = attention
 * heads, D = head dim, R = rotary dims, Hk/Hv = GDN key/value heads, Dk/Dv = their dims,
 * C = conv channels, K = conv kernel, E = experts.
 */
#ifndef QREF_INTERNAL_H
#define QREF_INTERNAL_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "qref.h"

/* ---------------------------------------------------------------- errors */

/* Fills err (when not NULL) with code and a printf-style one-line message; returns code. */
qref_status qref__fail(qref_error *err, qref_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- positions (positions.c) */

/* qref_rope_index_mm with the planted position bugs of faults (NULL: none). */
struct qref_faults;
qref_status qref__rope_index_mm(const qref_config *cfg, const struct qref_faults *faults, const int32_t *ids,
                                int n, const int (*grid)[3], const uint8_t *is_video, int n_visuals, int64_t *pos,
                                int64_t *delta, qref_error *err);

/* ---------------------------------------------------------------- input files (io.c) */

/* Size caps of the engine's JSON inputs (a real config.json or preprocessor_config.json is a
 * few kilobytes, an index a few megabytes). */
#define QREF__MAX_CONFIG_BYTES ((size_t)16 << 20)
#define QREF__MAX_INDEX_BYTES ((size_t)100000000)
/* Largest image area (pixels) the preprocessing accepts or produces (16384 x 16384). */
#define QREF__MAX_PIXELS ((long)1 << 28)

/* a * b and a + b into *out; -1 (out untouched) when the result does not fit a size_t. */
int qref__size_mul(size_t a, size_t b, size_t *out);
int qref__size_add(size_t a, size_t b, size_t *out);

/* Resolves the folder DIR's files may live in (realpath of DIR; for a Hugging Face hub cache
 * snapshot dir ".../snapshots/<rev>", the repository folder above snapshots/). out holds
 * PATH_MAX bytes. */
qref_status qref__checkpoint_root(const char *dir, char *out, qref_error *err);

/* Opens PATH read-only without blocking (FIFOs, devices and directories are refused), checks
 * it is a regular file of at most max_bytes, and, with root (a realpath) not NULL, that it
 * resolves inside root. *fd_out is the caller's to close. enoent (may be NULL) tells a missing
 * file apart. QREF_EIO / QREF_EFORMAT with a message naming PATH. */
qref_status qref__open_input(const char *path, const char *root, size_t max_bytes, int *fd_out,
                             size_t *size_out, int *enoent, qref_error *err);
/* The same, then the whole file into a malloc'ed, NUL-terminated *buf_out (caller frees). */
qref_status qref__read_file(const char *path, const char *root, size_t max_bytes, char **buf_out,
                            size_t *len_out, int *enoent, qref_error *err);

/* Parses LEN bytes of JSON (TEXT need not be NUL-terminated but must hold no NUL) into *out
 * (caller deletes): a top-level object, only whitespace after it, no key twice in one object,
 * no raw control byte and no \u0000 in strings. WHAT names
 * the text in messages ("config", "header", "index"). */
struct cJSON;
qref_status qref__json_parse(const char *path, const char *what, const char *text, size_t len,
                             struct cJSON **out, qref_error *err);

/* ---------------------------------------------------------------- safetensors */

typedef enum { QREF_DT_F32, QREF_DT_F16, QREF_DT_BF16, QREF_DT_F64 } qref_dtype;

typedef struct {
    char *name;
    qref_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data;           /* points into the file mapping */
    size_t nbytes;
    int file;                   /* index into the archive's files */
    int used;                   /* set by the loader when a parameter consumed it */
} qref_st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t size;
} qref_st_file;

typedef struct {
    qref_st_file *files;
    int nfiles;
    qref_st_tensor *tensors;
    int ntensors;
} qref_st_archive;

/* Opens DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json.
 * Validates headers: header length within the file, JSON well formed, known dtypes, offsets
 * inside the data section and consistent with dtype x shape, no duplicate names. */
qref_status qref__st_open(qref_st_archive *a, const char *dir, qref_error *err);
/* Opens exactly one .safetensors file (used by qref__st_open; exposed for tests). */
qref_status qref__st_open_file(qref_st_archive *a, const char *path, qref_error *err);
void qref__st_close(qref_st_archive *a);
/* NULL when absent. */
qref_st_tensor *qref__st_find(const qref_st_archive *a, const char *name);
/* Converts the tensor's count elements into dst (qref_real). count must equal the tensor's. */
void qref__st_convert(const qref_st_tensor *t, qref_real *dst, size_t count);
const char *qref__dtype_name(qref_dtype dt);

/* ---------------------------------------------------------------- small math */

static inline double qref__sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double qref__silu(double x) { return x / (1.0 + exp(-x)); }
/* torch.nn.functional.softplus with beta 1, threshold 20 */
static inline double qref__softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }
/* GELU, tanh approximation (gelu_pytorch_tanh) */
static inline double qref__gelu_tanh(double x)
{
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
/* GELU, exact erf form (nn.GELU()) */
static inline double qref__gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x * 0.7071067811865476)); }

/* ---------------------------------------------------------------- worker pool (threads.c)
 * Every parallel loop of the engine is a list of work items cut from the shapes of the call
 * alone; fn(ctx, item, worker) computes one item, worker in [0, qref__workers()) indexes
 * per-worker scratch. Items must write disjoint outputs: results never depend on how many
 * workers there are or which one ran an item. A call from inside an item (or while another
 * thread holds the pool) runs its items in the calling thread. */
typedef void (*qref__task_fn)(void *ctx, int item, int worker);
void qref__parallel(int n_items, qref__task_fn fn, void *ctx);
/* Workers of the pool (>= 1): the number of per-worker scratch slabs a kernel needs. */
int qref__workers(void);
/* Monotonic seconds, for the stage timers. */
double qref__now(void);
/* The calling thread's scratch buffer, grown to at least `bytes` (contents not kept; aligned
 * for any type); NULL when out of memory. Each thread owns its buffer (freed when the thread
 * ends), so an item may use it while other workers use theirs. */
void *qref__thread_scratch(size_t bytes);

/* ---------------------------------------------------------------- kernels (kernels.c)
 * Output first; kernels never allocate; scratch is passed in. */

/* y (n, out) = x (n, in) . W (out, in)^T [+ b (out)]; b may be NULL. BLAS-backed. */
void qref__linear(qref_real *y, const qref_real *x, const qref_real *w, const qref_real *b,
                  int n, int in, int out);
/* The same with a text matrix (qref.h): a real one as qref__linear; a BF16 one (no bias) by
 * blocks of output rows converted into the thread's scratch and the same BLAS products as
 * qref__linear's (bitwise its result on a converted copy) when n > 1, by qref__gemv_bf16 when
 * n == 1. */
void qref__linear_m(qref_real *y, const qref_real *x, qref_matrix w, const qref_real *b, int n, int in, int out);

/* BF16 matrices (matrix.c). dst (n) = the values of src (n), exactly. */
void qref__bf16_to_real(qref_real *dst, const uint16_t *src, size_t n);
/* dst (cols) = row `row` of m (rows of cols elements). */
void qref__matrix_row(qref_real *dst, qref_matrix m, size_t row, int cols);
/* m from element `offset` on (a sub-matrix of stacked ones, e.g. one expert's). */
qref_matrix qref__matrix_at(qref_matrix m, size_t offset);
/* y (rows) = W (rows, in; BF16) . x (in), summed in double in 16 lanes (matrix.c); the same
 * bits on every CPU; _portable is the version without vector instructions. */
void qref__gemv_bf16(qref_real *y, const uint16_t *w, const qref_real *x, int rows, int in);
void qref__gemv_bf16_portable(qref_real *y, const uint16_t *w, const qref_real *x, int rows, int in);
/* The layer's matrices as qref_real: *view = *w with every BF16 matrix converted into *buf
 * (malloc'ed, the caller frees; NULL when none is BF16). QREF_ENOMEM. */
qref_status qref__layer_real_view(const qref_layer_weights *w, qref_layer_weights *view, qref_real **buf,
                                  qref_error *err);

/* Decoder RMSNorm, zero-centred weight: o = x / sqrt(mean(x^2) + eps) * (1 + w). o may == x. */
void qref__rmsnorm(qref_real *o, const qref_real *x, const qref_real *w, int n, int dim, double eps);

/* Gated RMSNorm of GDN: o = (x / sqrt(mean(x^2) + eps)) * w * silu(z). o may == x. */
void qref__rmsnorm_gated(qref_real *o, const qref_real *x, const qref_real *z, const qref_real *w,
                         int n, int dim, double eps);

/* LayerNorm: o = (x - mean) / sqrt(var + eps) * w + b. o may == x. */
void qref__layernorm(qref_real *o, const qref_real *x, const qref_real *w, const qref_real *b,
                     int n, int dim, double eps);

/* In-place per-row L2 normalisation: x *= 1 / sqrt(sum(x^2) + eps). x (n, dim). */
void qref__l2norm(qref_real *x, int n, int dim, double eps);

/* Multimodal rotary angles. pos (3, n) T/H/W positions (row-major, stride n); cos/sin (n, R/2).
 * inv_freq[j] = theta^(-2j/R). Interleaved: frequency j uses the H position when j%3==1 and
 * j < 3*section[1], the W position when j%3==2 and j < 3*section[2], else T. Non-interleaved
 * (contiguous sections): j < s0 -> T, j < s0+s1 -> H, else W. Angles computed in double. */
void qref__mrope_angles(qref_real *cos_t, qref_real *sin_t, const int64_t *pos, int n, int R,
                        double theta, const int section[3], int interleaved);

/* Rotate-half rotary on the first R dims of each head; dims [R, D) pass through.
 * x (n, heads, D); cos/sin (n, R/2). Pairs (i, i + R/2). */
void qref__rope_apply(qref_real *x, const qref_real *cos_t, const qref_real *sin_t, int n, int heads,
                      int D, int R);

/* Causal depthwise conv over time with carried state, followed by SiLU.
 *   x (n, C) inputs, state (K-1, C) the previous K-1 inputs (row 0 oldest), w (C, K).
 *   out[t][c] = silu(sum_j w[c][j] * in[t - (K-1) + j][c]) where in[<0] comes from state.
 * The state is advanced to the last K-1 inputs. out must not alias x. */
void qref__conv1d_causal_silu(qref_real *out, const qref_real *x, qref_real *state,
                              const qref_real *w, int n, int C, int K);

/* Gated delta rule, token by token. Per value head h (key head h / (Hv/Hk)):
 *   S = S * exp(g_t); kv = S^T k_t; delta = beta_t (v_t - kv); S += k_t delta^T; o_t = S^T q_t
 * q, k (n, Hk, Dk) already L2-normalised, q already scaled by 1/sqrt(Dk); v (n, Hv, Dv);
 * g, beta (n, Hv); state (Hv, Dk, Dv) updated in place; out (n, Hv, Dv). */
void qref__gdn_recurrent(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                         const qref_real *g, const qref_real *beta, qref_real *state, int n,
                         int Hk, int Hv, int Dk, int Dv);

/* Same contract, computed with the chunked (WY / UT-transform) algorithm in chunks of `chunk`
 * tokens, as transformers' torch_chunk_gated_delta_rule. scratch holds
 * qref__gdn_chunked_scratch(chunk, Dk, Dv) elements. */
size_t qref__gdn_chunked_scratch(int chunk, int Dk, int Dv);
void qref__gdn_chunked(qref_real *out, const qref_real *q, const qref_real *k, const qref_real *v,
                       const qref_real *g, const qref_real *beta, qref_real *state, int n, int Hk,
                       int Hv, int Dk, int Dv, int chunk, qref_real *scratch);

/* Causal GQA attention of n new queries against a cache of Tk keys.
 *   q (n, Hq, D); kc, vc (Tk, Hkv, D); query i sits at cache index q_off + i and sees keys
 *   [0, q_off + i]; key j is skipped where kmask && !kmask[j]. out (n, Hq, D).
 *   Per head and block of queries: scores by one matrix product against the keys the block
 *   sees, softmax in double (probabilities rounded once), values by a second product; a block
 *   that sees more than one key block walks them with an online softmax (attention.c).
 *   In the float build, a block that walks its keys on a CPU with AVX-512F or AVX2 takes the
 *   tile kernels of attention_tiles.c instead of BLAS products (qref__tiles).
 *   scratch holds qref__attention_scratch(Tk, Hkv, D) elements. */
size_t qref__attention_scratch(int Tk, int Hkv, int D);
void qref__attention(qref_real *out, const qref_real *q, const qref_real *kc, const qref_real *vc,
                     const uint8_t *kmask, int n, int Tk, int q_off, int Hq, int Hkv, int D,
                     double scale, qref_real *scratch);

/* The float build's attention tile kernels (attention_tiles.c) for this CPU, or NULL (no
 * AVX-512F or AVX2+FMA, a double build, another architecture, or QREF_ATTENTION_TILES=0 in the
 * environment, read on every call). rows: query rows per tile; panel: P, the keys per panel of
 * a packed key block and the head dims per panel of a packed value block (D % P == 0).
 *   pack_keys   kt (ceil(kb/P), D, P) from keys k (kb, D) of row stride ldk, zeros past kb
 *   pack_values vt (D/P, kb, P) from values v (kb, D) of row stride ldv
 *   scores      S (rows, ldS) = q (rows, D; stride ldq) . keys^T over ceil(kb/P) P columns;
 *               mx (rows) = each row's largest score of its first kb (NaNs passed over)
 *   update      o (rows, D; stride ldo) = o * alpha[r] + p (rows, kb; stride ldp) . values,
 *               the first kb keys of a value block packed with ldv >= kb
 *   numerators  y (n) = exp((x - m) * scale) for scores x <= m (0 for -inf and NaN; y may be
 *               x), returning their sum in double: the walk's softmax numerators (fused
 *               multiply-adds)
 * Each output element is one multiply-add chain in a fixed order: shapes alone decide it. */
typedef struct {
    const char *isa;
    int rows, panel;
    void (*pack_keys)(float *kt, const float *k, int ldk, int kb, int D, int P);
    void (*pack_values)(float *vt, const float *v, int ldv, int kb, int D, int P);
    void (*scores)(float *S, int ldS, const float *q, int ldq, int rows, const float *kt, int kb, int D,
                   float *mx);
    void (*update)(float *o, int ldo, const float *p, int ldp, int rows, const float *vt, int kb, int ldv,
                   int D, const float *alpha);
    double (*numerators)(float *y, const float *x, int n, float m, float scale);
} qref__tile_ops;
const qref__tile_ops *qref__tiles(void);
/* The largest of x[0..n) (-inf when n == 0; NaNs passed over): the walk's pass over a block's
 * scores where the tile scores kernel's maximum does not apply (causal or masked keys). */
qref_real qref__row_max(const qref_real *x, int n);
/* Every tile set this CPU runs, AVX2 first (at most 2, whatever QREF_ATTENTION_TILES says): for
 * tests that compare the sets' bits. Returns how many. */
int qref__tile_sets(const qref__tile_ops **sets);

/* MoE routing: softmax over E logits (double), top-k (ties: lower index first), renormalise.
 * logits (n, E); idx (n, k) chosen experts in descending weight; w (n, k). */
void qref__moe_route(int *idx, qref_real *w, const qref_real *logits, int n, int E, int k);

/* Elementwise kernels, spread over the pool (o may == x where an argument repeats).
 *   add:      x (n) += y (n)
 *   gate:     x (n) *= sigmoid(g (n))
 *   swiglu:   o (m, F) = silu(gu[:, :F]) * gu[:, F:]  with gu (m, 2F); or, when up is given,
 *             o (m*F) = silu(gt) * up
 *   gelu:     x (n) = gelu_tanh(x) (erf == 0) or gelu_erf(x) (erf == 1) */
void qref__add(qref_real *x, const qref_real *y, size_t n);
void qref__gate_sigmoid(qref_real *x, const qref_real *g, size_t n);
void qref__silu_mul(qref_real *o, const qref_real *gt, const qref_real *up, size_t n);
void qref__gelu(qref_real *x, size_t n, int erf_form);

/* ---------------------------------------------------------------- MLP and MoE (mlp.c) */

/* out (n, H) = down(silu(gate(h)) * up(h)); work holds 2 n F values. */
void qref__swiglu(qref_real *out, const qref_real *h, qref_matrix wg, qref_matrix wu, qref_matrix wd, int n,
                  int H, int F, qref_real *work);
/* out (n, H) for the active tokens (0 elsewhere): routed experts summed per token in ascending
 * expert order, then the sigmoid-gated shared expert. work holds qref__moe_work(c, n) values,
 * iwork qref__moe_iwork(c, n) ints. no_renorm: the planted bug that keeps the top-k softmax
 * weights unrenormalised (0 in a correct engine). */
size_t qref__moe_work(const qref_config *c, int n);
size_t qref__moe_iwork(const qref_config *c, int n);
void qref__moe(qref_real *out, const qref_config *c, const qref_layer_weights *w, const qref_real *h, int n,
               const uint8_t *active, int no_renorm, qref_real *work, int *iwork);

/* ---------------------------------------------------------------- cache (cache.c) */

/* Grows every attention layer's KV buffers to hold at least `need` tokens. */
qref_status qref__cache_reserve(qref_cache *c, int need, qref_error *err);

/* The cache's forward work area, grown to at least `bytes` (contents not kept); NULL when out
 * of memory. Owned by the cache (freed with it, never cloned), so steps of a sequence
 * allocate only when a call needs more room than any before it. */
void *qref__cache_work(qref_cache *c, size_t bytes);

/* ---------------------------------------------------------------- vision (image.c, vision.c)
 * Shape legend: h, w = patch rows and columns of one frame, M = spatial merge size,
 * Vh = vision width, D = vision head dim. */

/* The image processor's smart_resize: the (height, width) closest to the image's with both
 * sides multiples of `factor` (round half to even), scaled down (floor) when above max_pixels
 * or up (ceil) when below min_pixels. EINVAL when max/min side > 200 or a side would be 0. */
qref_status qref__smart_resize(int height, int width, int factor, long min_pixels, long max_pixels,
                               int *out_h, int *out_w, qref_error *err);

/* Antialiased bicubic resize of RGB bytes, as torch resizes uint8 images (Keys a = -0.5, PIL's
 * support and centring, int16 fixed-point weights, width pass then height pass, each rounded
 * and clamped to bytes; a side whose size does not change is not resampled).
 * dst (out_h, out_w, 3), src (h, w, 3). Allocates and frees its own scratch (ENOMEM). */
qref_status qref__resize_bicubic_u8(uint8_t *dst, int out_h, int out_w, const uint8_t *src, int h,
                                    int w, qref_error *err);

/* Row and column of patch k (0 <= k < h*w) of a frame w patches wide, in M x M merge-block
 * order: blocks row-major, patches row-major inside a block. */
void qref__merge_block_rc(int k, int w, int M, int *row, int *col);

/* The learned position table (side*side, Vh) resampled bilinearly with align_corners to an
 * h x w patch grid (weights in double), rows in merge-block order: out (h*w, Vh). */
void qref__vision_pos_embed(qref_real *out, const qref_real *table, int side, int Vh, int h, int w,
                            int M);

/* 2-D rotary tables of an h x w frame in merge-block order, angles in double:
 * cos/sin (h*w, D/2) = row * inv_freq (D/4 values) then col * inv_freq (D/4 values),
 * inv_freq[j] = theta^(-4j/D). Used with qref__rope_apply over the whole head (R = D). */
void qref__vision_rope_angles(qref_real *cos_t, qref_real *sin_t, int h, int w, int M, int D,
                              double theta);

/* ---------------------------------------------------------------- MTP head and verify (mtp.c) */

/* The MTP head's weights, in their own block (owned by the model, freed with it). */
typedef struct qref_mtp_weights {
    qref_real *block;
    size_t block_len;
    const qref_real *fc;            /* (H, 2H): input columns [0, H) the normed embedding, [H, 2H) the normed hidden */
    const qref_real *pre_norm_emb;  /* (H) (1+w) */
    const qref_real *pre_norm_hid;  /* (H) (1+w) */
    const qref_real *norm;          /* (H) (1+w) */
    qref_layer_weights layer;       /* mtp.layers.0: QREF_LAYER_FULL, MLP or MoE as the main model */
} qref_mtp_weights;

/* Per-sequence speculative state. Tape rows exist for every token the cache holds.
 * Verify buffers: vconv[l] (K-1 + vcap, C) holds the conv state before the verify then the
 * verify's conv inputs, so the state after token i is rows [i+1, i+K); vrec[l] (vcap, Hv*Dk*Dv)
 * the recurrent state after each token. */
typedef struct qref_spec {
    int tape_cap;
    qref_real *emb;             /* (tape_cap, H) input embedding of token s (vision rows merged) */
    qref_real *hid;             /* (tape_cap, H) main model's final-normed hidden state of token s */
    int64_t *pos;               /* (tape_cap, 3) position of token s */
    int mtp_len, mtp_cap;       /* MTP KV rows [0, mtp_len) */
    qref_real *mk, *mv;         /* (mtp_cap, Hkv*D) post-norm post-rope keys, values */
    int recording;              /* a verify forward is running: gdn_layer keeps per-position states */
    int pending;                /* a verify awaits its accept */
    int end_valid;              /* vconv / vrec still hold the last verify (for a planted bug) */
    int vbase, vn, vcap;        /* length before the verify, its tokens, buffer capacity */
    int num_layers, H, kv_row;
    qref_real **vconv, **vrec;  /* [num_layers] (linear layers only) */
} qref_spec;

/* Loads the MTP head: from the main archive when it holds mtp.fc.weight, else from
 * DIR/mtp.safetensors when that file exists (the tiny checkpoints keep it there so the main
 * file and its hash stay as transformers wrote them); leaves m->mtp NULL otherwise. Every
 * mtp.* tensor is checked against the configuration. */
qref_status qref__mtp_load(qref_model *m, const qref_st_archive *a, qref_error *err);
void qref__mtp_free(qref_model *m);
/* The cache's speculative state, created on first use (NULL when out of memory). */
qref_spec *qref__spec_get(qref_cache *c, const qref_model *m);
/* Makes room for `need` tape rows. */
qref_status qref__spec_reserve(qref_spec *s, int H, int need, qref_error *err);
void qref__spec_free(qref_cache *c);
/* Deep copy of src's speculative state (tape rows [0, len), MTP KV) into dst; verify buffers
 * are not copied (a pending verify cannot be cloned). */
qref_status qref__spec_clone(qref_cache *dst, const qref_cache *src, qref_error *err);

#endif /* QREF_INTERNAL_H */
