/* SPDX-License-Identifier: MIT */
/*
 * lc_engine — the one interface through which the harness drives an engine under test.
 *
 * Every case kind is written against this table of operations and nothing else: the runner
 * never includes an engine's headers and never touches engine state. Two implementations:
 *   - the in-process reference engine (lc_engine_ref_new, engines/engine_ref.c), which also
 *     carries the planted faults of `run --inject` (engines/faults.h);
 *   - a client for an engine in another process (lc_engine_proc_new, engines/engine_proc.c),
 *     speaking the line protocol of harness/PROTOCOL.md on the child's stdin/stdout
 *     (`logitcheck serve` is the reference engine behind that protocol; adapters put other
 *     engines behind it).
 *
 * Handles. Prompts, sequences and snapshots are small non-negative integers chosen by the
 * engine, valid until closed/released or until the engine is destroyed. A sequence holds all
 * mutable per-request state (conv/recurrent state, KV cache, positions, rope delta); two
 * sequences never share mutable state; a snapshot is an immutable deep copy of a sequence,
 * restorable any number of times into new independent sequences (restore is also fork).
 *
 * Prompts. The harness gives a prompt as segments (token ids, or an image as a PNG path);
 * the engine expands each image to vision_start, its placeholder run and vision_end, runs its
 * own image decoding, preprocessing and vision tower, computes positions, and reports the
 * expanded ids (and, with LC_CAP_POSITIONS, the 3-axis positions and rope delta) back. Prefill
 * then consumes a span [from, to) of the expanded prompt into a sequence that holds exactly
 * the first `from` tokens of it, so every chunk schedule is expressible with one prompt.
 *
 * Numbers. Logits, hidden states, embeddings and states come back as double whatever the
 * engine computes in (a float is converted exactly); the engine's declared compute precision
 * selects the bounds. Rows are row-major, outermost first.
 *
 * Errors. Every operation returns LC_OK or an lc_error code and fills err with one line that
 * names the engine and the operation (for a process engine also the command and the request).
 * LC_EINPUT: the request was refused as bad input (a prompt whose image cannot be read, a
 * span that does not continue the sequence) — the case's input is wrong. LC_EENGINE: the
 * engine misbehaved (crashed, timed out, malformed reply, NaN-free contract broken) — the
 * case is an ERROR and the caller may lc_engine_restart() before the next case.
 * LC_EUNSUPPORTED: the operation needs a capability the engine lacks (the runner checks
 * capabilities first and reports SKIP, so this is a harness bug if it reaches a report).
 *
 * Ownership: the lc_engine returned by a constructor is owned by the caller and released with
 * lc_engine_free (safe on NULL). Buffers passed in are the caller's; arrays returned through
 * out-structs (lc_prompt_info, lc_state, embeddings) are malloc'ed and owned by the caller,
 * released with the matching *_free function.
 */
#ifndef LC_ENGINE_H
#define LC_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "lc_error.h"
#include "lc_precision.h"

/* Engine-side failure (crash, hang, malformed reply): the case is an ERROR, the run goes on. */
#define LC_EENGINE 4
/* The operation needs a capability this engine does not declare. */
#define LC_EUNSUPPORTED 5

/* ---------------------------------------------------------------- description */

/* Compute precision an engine declares; selects the bounds of every comparison. The one
 * table of precisions is records/lc_precision.h (shared with the catalog's bounds); these are
 * its names on the engine side. */
typedef lc_precision lc_eprec;
#define LC_EPREC_UNKNOWN LC_PREC_UNKNOWN
#define LC_EPREC_F64 LC_PREC_F64
#define LC_EPREC_F32 LC_PREC_F32
#define LC_EPREC_BF16 LC_PREC_BF16
#define LC_EPREC_F16 LC_PREC_F16
#define LC_EPREC_COUNT LC_PREC_COUNT
#define LC_EPREC_MAP LC_PRECISION_MAP

const char *lc_eprec_name(lc_eprec p);       /* "f64"...; "unknown" out of range */
lc_eprec lc_eprec_from_name(const char *s);  /* LC_EPREC_UNKNOWN when not a name */

/* Optional capabilities (bit i = 1 << LC_CAP_x). Prefill of a text prompt and single-token
 * decode of one sequence are mandatory; everything below is optional. A case that needs a
 * capability the engine lacks is a SKIP naming it ("engine lacks snapshot"), never a pass. */
#define LC_CAP_MAP(X)                                                                          \
    X(IMAGES, "images")       /* image segments in prompts (PNG paths) */                      \
    X(POSITIONS, "positions") /* prompt info carries 3-axis positions and the rope delta */    \
    X(SNAPSHOT, "snapshot")   /* snapshot / restore (fork) / release */                        \
    X(BATCH, "batch")         /* left-padded batched prefill and batched decode */             \
    X(STATE, "state")         /* export a sequence's conv/recurrent/KV state as one vector */  \
    X(HIDDEN, "hidden")       /* prefill tap: residual stream after the embedding and each layer */ \
    X(VISION, "vision")       /* prompt tap: merged vision embeddings */                      \
    X(PARTIAL_VISION, "partial_vision") /* prompts with vision_from > 0 (image checkpoints) */ \
    X(GDN_MODE, "gdn_mode")   /* prefill with a forced GDN path and chunk length */            \
    X(ROPE, "rope")           /* tap: rotary cos/sin of the text decoder for given positions */ \
    X(VJP, "vjp")             /* backward passes: vector-Jacobian products (see "gradients") */ \
    X(STEP, "step")           /* continuous batching: one batched step over live sequences */   \
    X(PREFIX_CACHE, "prefix_cache") /* the engine's prefix cache: store, lookup, counters */ \
    X(VIDEO, "video")         /* video segments in prompts (PNG frames, fps, timestamp ids) */ \
    X(VERIFY, "verify")       /* speculative verify of k+1 tokens and accept (see "speculative") */ \
    X(MTP, "mtp")             /* MTP-head drafts (see "speculative") */                     \
    X(BATCH_VERIFY, "batch_verify") /* verify of several sequences in one batched forward */ \
    X(PIXEL_LIMITS, "pixel_limits") /* prompts with image_min_pixels / image_max_pixels */     \
    X(PAD_TO, "pad_to")       /* prompts with pad_to: batch layouts longer than the longest row */ \
    X(FINAL_HIDDEN, "final_hidden") /* tap: the final norm's output (lm_head input), prefill and decode */

typedef enum {
#define LC__CAP_ENUM(id, name) LC_CAP_##id,
    LC_CAP_MAP(LC__CAP_ENUM)
#undef LC__CAP_ENUM
    LC_CAP_COUNT
} lc_cap;

const char *lc_cap_name(lc_cap c);           /* "snapshot"...; "unknown" out of range */
int lc_cap_from_name(const char *s);         /* the lc_cap, or -1 */

typedef struct {
    char name[64];              /* "logitcheck-reference", "transformers" ... */
    char version[64];
    char detail[256];           /* free text for reports: device, dtype, attention impl ... */
    lc_eprec precision;
    uint32_t caps;              /* bit set of lc_cap */
} lc_engine_info;

static inline int lc_engine_info_has(const lc_engine_info *i, lc_cap c)
{
    return (i->caps >> c) & 1u;
}

/* What the harness needs to know of a loaded checkpoint. */
typedef struct {
    char model_type[64];        /* "qwen3_5" / "qwen3_5_moe" */
    int vocab_size;             /* V: width of every logits row */
    int hidden_size;            /* H */
    int num_layers;             /* L (hidden taps have L + 1 rows) */
    int has_vision;
    int image_token_id, video_token_id, vision_start_token_id, vision_end_token_id;
    int rotary_dim;             /* R: rope tap rows hold R/2 cos then R/2 sin values */
    /* the text rotary embedding as the checkpoint declares it (config.json), so the harness
     * can compute the expected cos/sin itself */
    double rope_theta;
    int mrope_section[3];       /* T, H, W frequency counts */
    int mrope_interleaved;
} lc_model_info;

/* ---------------------------------------------------------------- prompts */

typedef enum { LC_PSEG_IDS = 0, LC_PSEG_IMAGE = 1, LC_PSEG_VIDEO = 2 } lc_pseg_type;

/* A video segment (LC_CAP_VIDEO): the frames as PNG paths, the rate they were taken at, and
 * the timestamp text of every temporal patch as token ids. The engine samples the frames as its
 * video processor does (transformers' Qwen3-VL processor: 2 frames per second; no rate: 24 fps
 * assumed), pads an odd count, and expands the video to, per temporal patch, its timestamp ids,
 * vision_start, the patch's video placeholders (h*w/M^2), vision_end. The number of timestamp
 * groups must equal the temporal patches of the sampled video (else LC_EINPUT). */
typedef struct {
    lc_pseg_type type;
    const int32_t *ids;         /* (n_ids) LC_PSEG_IDS */
    int n_ids;
    const char *image;          /* LC_PSEG_IMAGE: path of a PNG file, as the harness resolved it */
    const char *const *frames;  /* (n_frames) LC_PSEG_VIDEO: PNG paths, as the harness resolved them */
    int n_frames;
    double fps;                 /* LC_PSEG_VIDEO: frames per second of the frames; <= 0: not given */
    const int32_t *ts_ids;      /* LC_PSEG_VIDEO: every group's timestamp ids, concatenated */
    const int *ts_len;          /* (n_ts) ids of each temporal patch's group */
    int n_ts;
} lc_pseg;

typedef struct {
    const lc_pseg *segs;        /* (n_segs) */
    int n_segs;
    /* Images with index < vision_from are not run through the vision tower: their placeholder
     * rows are unavailable and a prefill span must not cover them (image checkpoints: turn 2
     * runs vision only on the new images). 0 = every image. Needs LC_CAP_PARTIAL_VISION.
     * Videos count as images here (visual inputs in prompt order). */
    int vision_from;
    /* smart_resize's pixel bounds for the prompt's image segments (transformers' image processor
     * size {"shortest_edge": min, "longest_edge": max}); 0 = the checkpoint processor's own.
     * An override is at least one merge block ((patch * merge)^2 pixels) and the resulting
     * min <= max, else LC_EINPUT. Video segments keep the video processor's bounds.
     * Needs LC_CAP_PIXEL_LIMITS. */
    long image_min_pixels;
    long image_max_pixels;
    /* In a batch (batch_prefill), the left-padded layout is at least this long: L = the largest
     * of every row's expanded length and pad_to, so a batch of one row has pads. Below the
     * expanded length: LC_EINPUT. 0 = none. Other operations ignore it (it shapes the batch
     * layout only). Needs LC_CAP_PAD_TO. */
    int pad_to;
} lc_prompt_in;

typedef struct {
    int handle;
    int n;                      /* expanded tokens */
    int32_t *ids;               /* (n) expanded ids */
    int64_t *pos;               /* (3, n) T/H/W positions; NULL without LC_CAP_POSITIONS */
    int64_t rope_delta;         /* decode position = cached length + rope_delta (with POSITIONS) */
    int n_images;               /* visual inputs: images and videos, in prompt order */
    int (*grid)[3];             /* (n_images, 3) patch grids t, h, w; NULL when n_images == 0 */
} lc_prompt_info;

void lc_prompt_info_free(lc_prompt_info *p); /* frees the arrays; safe on zeroed and twice */

/* ---------------------------------------------------------------- outputs */

/* Which logits rows a prefill returns. */
typedef enum { LC_LOGITS_NONE = 0, LC_LOGITS_LAST = 1, LC_LOGITS_ALL = 2 } lc_logits_sel;

/* GDN path for LC_CAP_GDN_MODE (the default lets the engine choose: chunked for spans > 1,
 * recurrent for one token). */
typedef enum { LC_GDN_AUTO = 0, LC_GDN_CHUNKED = 1, LC_GDN_RECURRENT = 2 } lc_gdn_mode;

typedef struct {
    lc_logits_sel sel;          /* rows written to `logits` */
    double *logits;             /* ALL: (to - from, V); LAST: (V); NULL with NONE */
    double *hidden;             /* LC_CAP_HIDDEN: (L + 1, to - from, H) or NULL */
    lc_gdn_mode gdn_mode;       /* LC_CAP_GDN_MODE, else must be AUTO */
    int gdn_chunk;              /* LC_CAP_GDN_MODE: chunk length of the chunked GDN (0 = default) */
    double *final_hidden;       /* LC_CAP_FINAL_HIDDEN: (to - from, H) the final norm's output, or NULL */
} lc_prefill_out;

/* A sequence's state, flattened in the engine's fixed layer order: for each GDN layer its
 * conv state then its recurrent state, for each attention layer its cached K then V (len rows).
 * Two states of the same engine and model compare element by element. */
typedef struct {
    int len;                    /* tokens the sequence holds */
    double *data;               /* (n) */
    size_t n;
} lc_state;

void lc_state_free(lc_state *s);

/* ---------------------------------------------------------------- gradients (LC_CAP_VJP) */

/* One vector-Jacobian product of a building block, graded against float64 autograd. The
 * loss is sum(out * d_out) (+ sum(state * d_state) where a state comes out); every gradient
 * returned is dL/d(input). Tensors are float64, row-major; integer inputs (mask, position_ids)
 * travel as doubles holding integers (is_int set; the protocol sends them as i64).
 *
 * Functions (fn), their inputs / output gradients -> results, and the conventions:
 *   gdn_recurrent, gdn_chunked   the gated delta rule, recurrent and chunked (WY) forms.
 *       in: q, k (n, Hk, Dk) unit rows, q NOT scaled (the engine scales by Dk^-0.5 inside);
 *           v (n, Hv, Dv); g (n, Hv) log decays; beta (n, Hv) (after the sigmoid);
 *           state0 (Hv, Dk, Dv). Value head h reads key head h / (Hv / Hk).
 *       grads: d_out (n, Hv, Dv), d_state (Hv, Dk, Dv).  params: chunk (gdn_chunked, default 64).
 *       results: grad_q (w.r.t. the unscaled q), grad_k, grad_v, grad_g, grad_beta,
 *           grad_state0; forward: out, state.
 *   conv     depthwise causal conv + SiLU over (state0 | x).
 *       in: x (n, C), state0 (K-1, C), w (C, K) (transformers' conv1d.weight (C, 1, K) squeezed).
 *       grads: d_out (n, C), d_state (K-1, C) (the outgoing state = last K-1 rows of state0 | x).
 *       params: chunk (the backward runs piece by piece, last piece first, each piece's state
 *           gradient handed to the piece before; absent: one piece).
 *       results: grad_x, grad_w, grad_state0; forward: out, state.
 *   l2norm   y = x / sqrt(sum x^2 + eps) over the last axis.  in: x (rows..., D).
 *       grads: d_out.  params: eps (default 1e-6).  results: grad_x; forward: out.
 *   rmsnorm  y = x / sqrt(mean x^2 + eps) * (1 + w).  in: x (n, D), w (D).  grads: d_out.
 *       params: eps (default 1e-6).  results: grad_x, grad_w; forward: out.
 *   rmsnorm_gated  y = x / sqrt(mean x^2 + eps) * w * silu(z).  in: x, z (n, D), w (D).
 *       grads: d_out.  params: eps (default 1e-6).  results: grad_x, grad_z, grad_w; forward: out.
 *   rope     the loaded checkpoint's text rotary embedding (partial, rotate-half, interleaved
 *       3-axis MRoPE as its config says) applied to q and k.
 *       in: q (n, Hq, D), k (n, Hkv, D), position_ids (3, n) (T, H, W).  grads: d_q, d_k.
 *       results: grad_q, grad_k; forward: q_out, k_out.
 *   decoder_layer  layer `layer` of the loaded checkpoint as transformers' decoder layer runs
 *       it over one sequence with no cache (zero conv / recurrent state, causal attention).
 *       in: x (n, H); mask (n) 1 real / 0 pad (GDN layers: a pad's normed input is zeroed
 *       before the projections, transformers' 2-D attention mask; attention layers accept no
 *       pad); position_ids (3, n).  grads: d_out (n, H).
 *       params: layer (required); chunk (GDN layers: the chunked form in chunks of this length;
 *           0: the recurrent form; default 64).
 *       results: grad_x and grad_w/<name> for every parameter of the layer under transformers'
 *           name relative to the layer (grad_w/linear_attn.in_proj_qkv.weight,
 *           grad_w/linear_attn.conv1d.weight (C, 1, K), grad_w/mlp.experts.gate_up_proj ...),
 *           in transformers' shape; forward: out.
 *
 * The caller lists the results it wants, each with the shape it expects; the engine fills
 * data (malloc'ed, the caller frees with lc_vjp_results_free) for every one it can compute and
 * leaves data NULL for one it cannot (a kernel that cannot differentiate an input): the
 * harness reports that as a failure naming the gradient, not as an engine error. An unknown
 * fn, a missing input, or an input of the wrong shape is LC_EINPUT. */
#define LC_VJP_MAX_DIMS 4

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[LC_VJP_MAX_DIMS];
    const double *data;         /* (product of shape), the caller's */
    int is_int;                 /* holds integers (mask, position_ids) */
} lc_vjp_tensor;

typedef struct {
    const char *name;
    double value;
} lc_vjp_param;

typedef struct {
    const char *fn;
    const lc_vjp_param *params;     /* (n_params) */
    int n_params;
    const lc_vjp_tensor *inputs;    /* (n_inputs) forward inputs */
    int n_inputs;
    const lc_vjp_tensor *grads;     /* (n_grads) output gradients d_out, d_state, d_q ... */
    int n_grads;
} lc_vjp_in;

typedef struct {
    const char *name;           /* in: "grad_q", "grad_w/mlp.up_proj.weight", "out" ... */
    int ndim;                   /* in: the expected shape */
    int64_t shape[LC_VJP_MAX_DIMS];
    double *data;               /* out: (product of shape) malloc'ed, or NULL: not computed */
} lc_vjp_result;

/* Frees every result's data and sets it NULL; safe twice. */
void lc_vjp_results_free(lc_vjp_result *r, int n);
/* Elements of a shape. */
size_t lc_vjp_count(int ndim, const int64_t *shape);

/* ---------------------------------------------------------------- serving (LC_CAP_STEP, LC_CAP_PREFIX_CACHE) */

/* One row of a continuous-batching step: a live sequence that either prefills a chunk of its
 * prompt (prompt >= 0: tokens [from, to), the sequence holding exactly the first `from`, as
 * prefill) or decodes one token (prompt < 0: `token` at the next position, cached length +
 * the sequence's own rope delta). Rows of one step are distinct sequences. */
typedef struct {
    int seq;
    int prompt;                 /* >= 0: prefill chunk; < 0: decode */
    int from, to;               /* prefill: the span */
    int32_t token;              /* decode: the token */
} lc_step_row;

/* Counters of an engine's prefix cache since the last reset. A lookup reuses the longest
 * stored boundary that is a prefix of the request (a hit, tokens_reused += its length); when
 * a stored entry matches the request beyond that boundary but diverges inside its own span
 * (a partial match: a hybrid model cannot trim its recurrent state back to the divergence),
 * the match is refused and counted (refused += 1), and the request recomputes from the best
 * whole boundary (or from scratch). */
typedef struct {
    int64_t lookups;
    int64_t hits;
    int64_t tokens_reused;
    int64_t refused;
    int64_t stored;             /* boundaries stored (a boundary stored again counts once) */
} lc_prefix_stats;
/* ---------------------------------------------------------------- speculative decoding
 *
 * Greedy speculative decoding with these operations, one step: the sequence holds the
 * committed tokens and `last`, the next token, is known (chosen from the previous logits);
 * draft(seq, last, k) proposes d_1..d_k (MTP); verify(seq, [last, d_1..d_k]) returns k+1
 * logits rows; a = the number of leading drafts equal to the greedy choice of the row before
 * them; accept(seq, a) commits last, d_1..d_a; the next `last` is the greedy choice of row a.
 * Each step yields a + 1 tokens. An engine keeps the GDN conv and recurrent state of every
 * verified position (or recomputes the accepted prefix): the state after accept must be the
 * state plain decoding of the same tokens gives, rejected drafts never leave a trace, and a
 * snapshot taken after accept holds exactly the accepted prefix.
 * The MTP head (reference/qref.h "speculative decoding" pins its definition): drafts use the
 * main model's final-normed hidden state of the last committed token and the embedding of
 * `next`, chained through the head's own KV cache. */

/* ---------------------------------------------------------------- the operation table */

typedef struct lc_engine lc_engine;

typedef struct {
    /* Loads a checkpoint directory; later calls may load another one (sequences, prompts and
     * snapshots of the previous model are released first). */
    int (*load)(lc_engine *e, const char *dir, lc_model_info *mi, lc_error *err);
    int (*prompt_open)(lc_engine *e, const lc_prompt_in *in, lc_prompt_info *out, lc_error *err);
    void (*prompt_close)(lc_engine *e, int prompt);
    int (*seq_open)(lc_engine *e, int *seq, lc_error *err);
    void (*seq_close)(lc_engine *e, int seq);
    /* Prefills prompt tokens [from, to) into seq, which must hold exactly the first `from`
     * tokens of this prompt; from == 0 also sets the sequence's rope delta from the prompt. */
    int (*prefill)(lc_engine *e, int seq, int prompt, int from, int to, const lc_prefill_out *out, lc_error *err);
    /* One token through the cache at the next position (cached length + rope delta);
     * logits (V) or NULL. */
    int (*decode)(lc_engine *e, int seq, int32_t token, double *logits, lc_error *err);
    /* LC_CAP_SNAPSHOT */
    int (*snapshot)(lc_engine *e, int seq, int *snap, lc_error *err);
    int (*restore)(lc_engine *e, int snap, int *seq, lc_error *err);
    void (*snap_release)(lc_engine *e, int snap);
    /* LC_CAP_BATCH. B sequences, each holding the first `from` columns of its prompt left-padded
     * to L = max prompt length (and of the prompts' pad_to, LC_CAP_PAD_TO; a row of length n
     * starts at column L - n). Prefills columns
     * [from, to) of that layout in one batched call: pads never enter attention, conv or
     * recurrent state. logits (B, to - from, V), NaN at pads; NULL for none. */
    int (*batch_prefill)(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to, double *logits,
                         lc_error *err);
    /* One token per sequence in one batched call, each at its own position; logits (B, V). */
    int (*batch_decode)(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits, lc_error *err);
    /* LC_CAP_STATE */
    int (*state)(lc_engine *e, int seq, lc_state *out, lc_error *err);
    /* LC_CAP_VISION: merged vision embeddings of the prompt's images with index >= vision_from,
     * image after image: *rows x H doubles, malloc'ed (caller frees). */
    int (*vision)(lc_engine *e, int prompt, double **embeds, int *rows, lc_error *err);
    /* LC_CAP_ROPE: cos | sin of the text decoder's rotary embedding at positions pos (3, n):
     * out (n, R) with R/2 cos values then R/2 sin values per position. */
    int (*rope)(lc_engine *e, const int64_t *pos, int n, double *out, lc_error *err);
    /* LC_CAP_VJP: one backward pass (see "gradients" above); fills want[i].data. */
    int (*vjp)(lc_engine *e, const lc_vjp_in *in, lc_vjp_result *want, int n_want, lc_error *err);
    /* Starts the engine afresh after a failure (process engines: kill, reap, spawn, reload the
     * last model); every handle is gone afterwards. In-process: releases every handle. */
    int (*restart)(lc_engine *e, lc_error *err);
    void (*destroy)(lc_engine *e);
    /* Releases every prompt, sequence and snapshot and any state the engine keeps between
     * requests, keeping the loaded model: every case starts from this. NULL: the wrapper
     * restarts the engine instead. */
    int (*reset)(lc_engine *e, lc_error *err);
    /* LC_CAP_STEP: one batched forward over B live sequences, each row prefilling a chunk or
     * decoding one token (lc_step_row), each at its own positions and rope delta; a prefill
     * row with from == 0 sets its sequence's rope delta from its prompt. Rows are of different
     * lengths: pads (if the engine pads) never enter attention, conv or recurrent state.
     * logits (sum of the rows' new tokens, V), row after row, or NULL. */
    int (*step)(lc_engine *e, const lc_step_row *rows, int B, double *logits, lc_error *err);
    /* LC_CAP_PREFIX_CACHE. Stores a boundary: the state of seq, keyed by the first (its
     * length) tokens of `prompt` (ids and, for image placeholders, the image's content). */
    int (*prefix_store)(lc_engine *e, int seq, int prompt, lc_error *err);
    /* A new sequence holding the longest stored boundary that is a prefix of `prompt`;
     * *reused its length (0: a miss, an empty sequence). Counts the lookup. */
    int (*prefix_lookup)(lc_engine *e, int prompt, int *seq, int *reused, lc_error *err);
    int (*prefix_stats)(lc_engine *e, lc_prefix_stats *out, lc_error *err);
    /* LC_CAP_VERIFY (see "speculative"): tokens[0] is the last accepted token (not yet in the
     * sequence), tokens[1..n) drafts; one forward over the n tokens at the next positions;
     * logits (n, V), row i predicts the token after tokens[i]. The sequence then awaits accept:
     * any other operation on it is LC_EINPUT. */
    int (*verify)(lc_engine *e, int seq, const int32_t *tokens, int n, double *logits, lc_error *err);
    /* LC_CAP_VERIFY: commits the pending verify to tokens[0..accepted] (accepted in [0, n)):
     * the sequence then holds its previous tokens plus accepted + 1, exactly as if they had been
     * decoded one by one. */
    int (*accept)(lc_engine *e, int seq, int accepted, lc_error *err);
    /* LC_CAP_MTP: k >= 1 greedy MTP drafts after the sequence's tokens and `next` (the token
     * after them, not yet in the sequence); drafts (k), logits (k, V) or NULL. The sequence's
     * main-model state is unchanged. A checkpoint without an MTP head is LC_EINPUT. */
    int (*draft)(lc_engine *e, int seq, int32_t next, int k, int32_t *drafts, double *logits, lc_error *err);
    /* LC_CAP_BATCH_VERIFY: verify of B distinct sequences in one batched call; row b feeds
     * counts[b] >= 1 tokens (tokens: the rows one after another; counts[b] == 1 is a plain
     * decode step in the batch). logits (B, max counts, V), row b's token i at [b][i], NaN past
     * counts[b]. Each sequence then awaits its own accept, with its own count. */
    int (*batch_verify)(lc_engine *e, const int *seqs, int B, const int32_t *tokens, const int *counts, double *logits,
                        lc_error *err);
    /* LC_CAP_FINAL_HIDDEN: the final norm's output (the lm_head's input) beside the logits.
     * decode_final is decode with final_hidden (H); with LC_CAP_BATCH also batch_prefill_final,
     * batch_prefill with final_hidden (B, to - from, H), NaN at pads, and batch_decode_final,
     * batch_decode with final_hidden (B, H). logits may be NULL; final_hidden must not. */
    int (*decode_final)(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden, lc_error *err);
    int (*batch_prefill_final)(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                               double *logits, double *final_hidden, lc_error *err);
    int (*batch_decode_final)(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                              double *final_hidden, lc_error *err);
} lc_engine_ops;

struct lc_engine {
    const lc_engine_ops *ops;
    lc_engine_info info;        /* filled by the constructor (describe) */
    void *impl;
};

/* ---------------------------------------------------------------- calls (check caps, then dispatch) */

/* Thin wrappers: each checks that the operation exists (else LC_EUNSUPPORTED naming it) and
 * calls it. The runner uses only these. */
int lc_engine_load(lc_engine *e, const char *dir, lc_model_info *mi, lc_error *err);
int lc_engine_prompt_open(lc_engine *e, const lc_prompt_in *in, lc_prompt_info *out, lc_error *err);
void lc_engine_prompt_close(lc_engine *e, int prompt);
int lc_engine_seq_open(lc_engine *e, int *seq, lc_error *err);
void lc_engine_seq_close(lc_engine *e, int seq);
int lc_engine_prefill(lc_engine *e, int seq, int prompt, int from, int to, const lc_prefill_out *out, lc_error *err);
int lc_engine_decode(lc_engine *e, int seq, int32_t token, double *logits, lc_error *err);
int lc_engine_snapshot(lc_engine *e, int seq, int *snap, lc_error *err);
int lc_engine_restore(lc_engine *e, int snap, int *seq, lc_error *err);
void lc_engine_snap_release(lc_engine *e, int snap);
int lc_engine_batch_prefill(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                            double *logits, lc_error *err);
int lc_engine_batch_decode(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                           lc_error *err);
int lc_engine_state(lc_engine *e, int seq, lc_state *out, lc_error *err);
int lc_engine_vision(lc_engine *e, int prompt, double **embeds, int *rows, lc_error *err);
int lc_engine_rope(lc_engine *e, const int64_t *pos, int n, double *out, lc_error *err);
int lc_engine_vjp(lc_engine *e, const lc_vjp_in *in, lc_vjp_result *want, int n_want, lc_error *err);
int lc_engine_restart(lc_engine *e, lc_error *err);
int lc_engine_reset(lc_engine *e, lc_error *err);   /* ops->reset, else ops->restart */
int lc_engine_step(lc_engine *e, const lc_step_row *rows, int B, double *logits, lc_error *err);
int lc_engine_prefix_store(lc_engine *e, int seq, int prompt, lc_error *err);
int lc_engine_prefix_lookup(lc_engine *e, int prompt, int *seq, int *reused, lc_error *err);
int lc_engine_prefix_stats(lc_engine *e, lc_prefix_stats *out, lc_error *err);
int lc_engine_verify(lc_engine *e, int seq, const int32_t *tokens, int n, double *logits, lc_error *err);
int lc_engine_accept(lc_engine *e, int seq, int accepted, lc_error *err);
int lc_engine_draft(lc_engine *e, int seq, int32_t next, int k, int32_t *drafts, double *logits, lc_error *err);
int lc_engine_batch_verify(lc_engine *e, const int *seqs, int B, const int32_t *tokens, const int *counts,
                           double *logits, lc_error *err);
int lc_engine_decode_final(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden,
                           lc_error *err);
int lc_engine_batch_prefill_final(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                                  double *logits, double *final_hidden, lc_error *err);
int lc_engine_batch_decode_final(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                                 double *final_hidden, lc_error *err);
void lc_engine_free(lc_engine *e);

/* ---------------------------------------------------------------- implementations */

struct lc_fault_set;            /* engines/faults.h: planted bugs of the in-process engine */

/* The in-process reference engine of this build (precision f32 or f64 as built). faults may
 * be NULL (a correct engine); the engine keeps a copy. */
int lc_engine_ref_new(lc_engine **out, const struct lc_fault_set *faults, lc_error *err);

/* An engine in another process: `cmd` is run through /bin/sh -c, spoken to per PROTOCOL.md.
 *   timeout_s  per-request timeout (0 = default 600 s); a request past it kills the process
 *   log_path   the child's stderr is appended there (NULL: passed through to our stderr)
 * The constructor starts the process and reads its hello (describe). */
int lc_engine_proc_new(lc_engine **out, const char *cmd, double timeout_s, const char *log_path, lc_error *err);

#endif /* LC_ENGINE_H */
