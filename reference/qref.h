/* SPDX-License-Identifier: MIT */
/*
 * qref — the logitcheck reference engine for the Qwen3.5 family.
 *
 * A C11 library that runs Qwen3.5 checkpoints (dense `qwen3_5`, MoE `qwen3_5_moe`) exactly as
 * Hugging Face transformers defines them: hybrid Gated DeltaNet / gated full-attention
 * decoder, interleaved multimodal RoPE, and the vision tower.
 *
 * Ownership: every struct is caller-owned and initialised in place by an init/load function;
 * the matching free function releases what it holds, is safe on a zeroed struct and safe to
 * call twice. No function here prints or exits, and the only process-wide state is the
 * worker pool (see "threads", which never changes a result): a model is read-only after
 * loading and may serve many caches; all per-sequence state lives in a qref_cache, which also
 * keeps the work area of its forward calls (so a cache serves one forward call at a time).
 *
 * Errors: functions return a qref_status and, on failure, fill the caller's qref_error with a
 * one-line message naming the file / tensor and what was expected and found.
 */
#ifndef QREF_H
#define QREF_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- scalar type */

#if defined(QREF_PRECISION_F64)
typedef double qref_real;
#define QREF_PRECISION_NAME "f64"
#else
typedef float qref_real;
#define QREF_PRECISION_NAME "f32"
#endif

/* ---------------------------------------------------------------- errors */

#define QREF_STATUS_MAP(X)                                  \
    X(OK, "ok")                                             \
    X(EIO, "cannot read file")                              \
    X(EFORMAT, "malformed input")                           \
    X(ESHAPE, "shape mismatch")                             \
    X(EMISSING, "missing tensor")                           \
    X(EUNKNOWN, "unknown tensor")                           \
    X(EUNSUPPORTED, "unsupported configuration")            \
    X(EINVAL, "invalid argument")                           \
    X(ENOMEM, "out of memory")

typedef enum {
#define QREF__STATUS_ENUM(name, text) QREF_##name,
    QREF_STATUS_MAP(QREF__STATUS_ENUM)
#undef QREF__STATUS_ENUM
    QREF_STATUS_COUNT
} qref_status;

typedef struct {
    qref_status code;
    char msg[1024];
} qref_error;

/* Name ("EFORMAT") and short text of a status code; never NULL. */
const char *qref_status_name(qref_status s);
const char *qref_status_text(qref_status s);


/* ---------------------------------------------------------------- configuration */

#define QREF_MAX_LAYERS 512

enum { QREF_LAYER_LINEAR = 0, QREF_LAYER_FULL = 1 };

typedef struct {
    int depth;                  /* number of vision blocks */
    int hidden_size;            /* vision width */
    int intermediate_size;      /* vision MLP width */
    int num_heads;
    int patch_size;             /* P */
    int temporal_patch_size;    /* Tp */
    int spatial_merge_size;     /* M (2) */
    int in_channels;            /* 3 */
    int out_hidden_size;        /* text width after the merger */
    int num_position_embeddings;/* learned table, a square number */
    double rope_theta;
} qref_vision_config;

typedef struct {
    double image_mean[3];
    double image_std[3];
    long min_pixels;            /* smart_resize bounds (shortest_edge / longest_edge) */
    long max_pixels;
    int patch_size;
    int temporal_patch_size;
    int merge_size;
} qref_preproc_config;

/* The video processor (Qwen3-VL's, which Qwen3.5 checkpoints use): DIR/video_preprocessor_config.json,
 * else the processor class's defaults (shortest_edge 128*32*32, longest_edge 768*32*32, fps 2,
 * frames 4..768, mean/std 0.5, sizes from the vision config). The pixel bounds hold for the
 * whole video (t * h * w), not per frame. */
typedef struct {
    double image_mean[3];
    double image_std[3];
    long min_pixels;            /* size.shortest_edge, over t*h*w */
    long max_pixels;            /* size.longest_edge, over t*h*w */
    int patch_size;
    int temporal_patch_size;
    int merge_size;
    double fps;                 /* target sampling rate, frames per second */
    int min_frames, max_frames; /* bounds of the sampled frame count */
    int do_sample_frames;
} qref_video_preproc_config;

/* Frame rate the processor assumes for a video that declares none (it warns and uses 24). */
#define QREF_VIDEO_FPS_WHEN_MISSING 24.0

typedef struct {
    char model_type[64];        /* "qwen3_5" or "qwen3_5_moe" (the text part's type, base name) */
    /* text decoder */
    int vocab_size;
    int hidden_size;            /* H */
    int intermediate_size;      /* dense MLP width */
    int num_layers;
    int layer_types[QREF_MAX_LAYERS]; /* QREF_LAYER_LINEAR / QREF_LAYER_FULL */
    int num_heads;              /* Hq */
    int num_kv_heads;           /* Hkv */
    int head_dim;               /* D */
    int rotary_dim;             /* D * partial_rotary_factor (even) */
    double rope_theta;
    int mrope_section[3];       /* T, H, W frequency counts; sum == rotary_dim / 2 */
    int mrope_interleaved;
    double rms_norm_eps;
    int tie_word_embeddings;
    /* Gated DeltaNet */
    int lin_num_k_heads;        /* Hk */
    int lin_num_v_heads;        /* Hv */
    int lin_k_head_dim;         /* Dk */
    int lin_v_head_dim;         /* Dv */
    int lin_conv_kernel;        /* K */
    /* MoE (is_moe == 0 for dense) */
    int is_moe;
    int num_experts;            /* E */
    int num_experts_per_tok;    /* top-k */
    int moe_intermediate_size;  /* I */
    int shared_expert_intermediate_size; /* Is */
    /* multimodal */
    int has_vision;
    int image_token_id;
    int video_token_id;
    int vision_start_token_id;
    int vision_end_token_id;
    qref_vision_config vision;
    qref_preproc_config preproc;
    qref_video_preproc_config video;    /* video processor (video.c) */
} qref_config;

/* Parses DIR/config.json (VLM layout with text_config/vision_config, or text-only) and, when
 * present, DIR/preprocessor_config.json. Accepts both rope_parameters and the older
 * rope_theta/rope_scaling form, layer_types or full_attention_interval. */
qref_status qref_config_load(qref_config *cfg, const char *dir, qref_error *err);

/* ---------------------------------------------------------------- weights */

/* A weight matrix of the text model, row-major (Linear: [out, in]), as the engine holds it:
 * converted to qref_real (real), or, when the checkpoint stores it in BF16, those 16-bit
 * patterns themselves (bf16): every BF16 value is exact in qref_real, so the matrix means the
 * same numbers and takes half the memory of a float copy (a quarter of a double one). Exactly
 * one of real and bf16 is set; count is the number of elements. qref__linear reads either. */
typedef struct {
    const qref_real *real;
    const uint16_t *bf16;
    size_t count;
} qref_matrix;

/* Shapes are outermost-first, as transformers stores them (Linear: [out, in]). */
typedef struct {
    int type;                   /* QREF_LAYER_LINEAR / QREF_LAYER_FULL */
    const qref_real *input_norm;        /* (H) */
    const qref_real *post_norm;         /* (H) */
    /* Gated DeltaNet: C = 2*Hk*Dk + Hv*Dv conv channels (q | k | v) */
    qref_matrix in_proj_qkv;            /* (C, H) */
    qref_matrix in_proj_z;              /* (Hv*Dv, H) */
    const qref_real *in_proj_b;         /* (Hv, H) */
    const qref_real *in_proj_a;         /* (Hv, H) */
    const qref_real *conv_w;            /* (C, K) (checkpoint: (C, 1, K)) */
    const qref_real *dt_bias;           /* (Hv) */
    const qref_real *A_log;             /* (Hv) */
    const qref_real *gdn_norm;          /* (Dv) plain w, gated */
    qref_matrix out_proj;               /* (H, Hv*Dv) */
    /* gated full attention */
    qref_matrix q_proj;                 /* (Hq*2*D, H): per head D query then D gate rows */
    qref_matrix k_proj;                 /* (Hkv*D, H) */
    qref_matrix v_proj;                 /* (Hkv*D, H) */
    qref_matrix o_proj;                 /* (H, Hq*D) */
    const qref_real *q_norm;            /* (D) (1+w) */
    const qref_real *k_norm;            /* (D) (1+w) */
    /* dense MLP */
    qref_matrix gate_proj;              /* (F, H) */
    qref_matrix up_proj;                /* (F, H) */
    qref_matrix down_proj;              /* (H, F) */
    /* MoE */
    const qref_real *router;            /* (E, H) */
    qref_matrix experts_gate_up;        /* (E, 2*I, H): rows [0,I) gate, [I,2I) up */
    qref_matrix experts_down;           /* (E, H, I) */
    qref_matrix shared_gate_proj;       /* (Is, H) */
    qref_matrix shared_up_proj;         /* (Is, H) */
    qref_matrix shared_down_proj;       /* (H, Is) */
    const qref_real *shared_expert_gate;/* (1, H) */
} qref_layer_weights;

typedef struct {
    const qref_real *norm1_w, *norm1_b;     /* (Vh) LayerNorm */
    const qref_real *qkv_w, *qkv_b;         /* (3*Vh, Vh), (3*Vh) */
    const qref_real *proj_w, *proj_b;       /* (Vh, Vh), (Vh) */
    const qref_real *norm2_w, *norm2_b;     /* (Vh) */
    const qref_real *fc1_w, *fc1_b;         /* (Vi, Vh), (Vi) */
    const qref_real *fc2_w, *fc2_b;         /* (Vh, Vi), (Vh) */
} qref_vision_block_weights;

typedef struct {
    const qref_real *patch_w;   /* (Vh, Cin*Tp*P*P) (checkpoint: (Vh, Cin, Tp, P, P)) */
    const qref_real *patch_b;   /* (Vh) */
    const qref_real *pos_embed; /* (Npos, Vh) */
    qref_vision_block_weights *blocks; /* [depth] */
    const qref_real *merger_norm_w, *merger_norm_b; /* (Vh) */
    const qref_real *merger_fc1_w, *merger_fc1_b;   /* (4*Vh, 4*Vh), (4*Vh) */
    const qref_real *merger_fc2_w, *merger_fc2_b;   /* (Ho, 4*Vh), (Ho) */
} qref_vision_weights;

/* Planted bugs (reference/qref_faults.h, not part of this API); NULL = none. */
struct qref_faults;

/* A loaded model: configuration plus every weight, converted to qref_real in one block, or,
 * for the text model's matrices of a BF16 checkpoint, kept as BF16 in a second block. */
typedef struct {
    char dir[4096];
    qref_config cfg;
    qref_real *block;           /* the allocation holding every qref_real weight */
    size_t block_len;           /* in elements */
    uint16_t *bf16_block;       /* the text matrices kept in BF16 (NULL when none) */
    size_t bf16_len;            /* in elements */
    qref_matrix embed;          /* (V, H) */
    const qref_real *final_norm;/* (H) */
    qref_matrix lm_head;        /* (V, H); == embed when tied */
    qref_layer_weights *layers; /* [num_layers] */
    qref_vision_weights vision; /* valid when cfg.has_vision */
    const struct qref_faults *faults; /* NULL; the harness's in-process engine may point a
                                       * shallow copy of the model at planted bugs (never the loader) */
    struct qref_mtp_weights *mtp;     /* the multi-token-prediction head (mtp.*), NULL when the
                                       * checkpoint has none (see "speculative decoding") */
} qref_model;

/* Loads DIR (config.json + model.safetensors or model.safetensors.index.json). Every tensor is
 * checked against the configuration: missing, unknown (other than mtp.*) or mis-shaped tensors
 * are errors. The checkpoint is mapped, not read, and converted once into model->block. */
qref_status qref_model_load(qref_model *m, const char *dir, qref_error *err);

/* Load options. keep_bf16: the text model's matrices (projections, MLP and expert matrices,
 * embedding, lm_head) stay in BF16 when every one of them is BF16 in the checkpoint (the
 * default of qref_model_load, unless QREF_BF16_WEIGHTS=0 is in the environment); 0 converts
 * every weight to qref_real. Either way the same values are computed with: a product over
 * several tokens converts a block of the matrix and runs the same BLAS product as on a
 * converted copy (bitwise the same result), a product with one token (decode) reads the BF16
 * rows directly (reference/matrix.c: sixteen lanes of qref_real, the same bits on every CPU). */
typedef struct {
    int keep_bf16;
} qref_load_options;
qref_status qref_model_load_with(qref_model *m, const char *dir, const qref_load_options *opt, qref_error *err);
void qref_model_free(qref_model *m);

/* ---------------------------------------------------------------- per-sequence state */

typedef struct {
    int len;                    /* tokens consumed so far */
    int cap;                    /* KV capacity in tokens */
    int64_t rope_delta;         /* MRoPE delta: decode position = len + rope_delta */
    int num_layers;
    int kv_row;                 /* Hkv*D */
    int conv_channels;          /* C */
    int conv_len;               /* K-1 */
    int rec_size;               /* Hv*Dk*Dv */
    qref_real **k;              /* per layer (full attention): [cap][Hkv][D], post-norm post-rope */
    qref_real **v;              /* per layer (full attention): [cap][Hkv][D] */
    qref_real **conv;           /* per layer (linear): [K-1][C], row 0 oldest */
    qref_real **rec;            /* per layer (linear): [Hv][Dk][Dv] */
    void *work;                 /* forward work area, engine-owned (see cache.c) */
    size_t work_bytes;
    struct qref_spec *spec;     /* speculative decoding state (mtp.c): the MTP's own KV and the
                                 * per-position states of a verify; NULL until needed */
} qref_cache;

qref_status qref_cache_init(qref_cache *c, const qref_model *m, qref_error *err);
void qref_cache_free(qref_cache *c);
/* Deep copy: dst becomes an independent copy of src (dst is initialised by this call). */
qref_status qref_cache_clone(qref_cache *dst, const qref_cache *src, qref_error *err);

/* ---------------------------------------------------------------- threads
 *
 * The engine runs its parallel loops on a pool of worker threads (OpenBLAS is kept at one
 * thread and called from the workers). Results are bitwise the same on any thread count: work
 * is cut by shape only and no reduction is split between threads.
 * qref_set_threads(n) sizes the pool (n <= 0: back to the default, which is QREF_THREADS,
 * else OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs online); call it while no
 * forward call is running. qref_threads() is the current size (starting the pool if needed). */
void qref_set_threads(int n);
int qref_threads(void);

/* ---------------------------------------------------------------- forward */

/* One forward call over n new tokens of one sequence, continuing from the cache.
 *   ids       (n) token ids
 *   pos       (3, n) T/H/W positions, or NULL for text positions c->len + rope_delta + i
 *   embeds    (n_embeds, H) rows that replace the embeddings of image placeholder tokens
 *             (ids == image_token_id), consumed in order; NULL when no placeholder is in ids
 *   gdn_mode  QREF_GDN_AUTO: the chunked algorithm for n > 1 (prefill), the recurrent form for
 *             n == 1 (decode); QREF_GDN_CHUNKED / QREF_GDN_RECURRENT force one path
 *   gdn_chunk chunk length of the chunked algorithm (0 = 64)
 * Outputs (each NULL to skip):
 *   logits    (n, V)
 *   hidden    (L + 1, n, H): the embeddings, then the residual stream after each layer
 *             (before the final norm)
 *   final_hidden (n, H): the output of the final norm (the lm_head's input)
 * The cache is advanced by n tokens on success and untouched on failure. */
enum { QREF_GDN_AUTO = 0, QREF_GDN_CHUNKED = 1, QREF_GDN_RECURRENT = 2 };

typedef struct {
    const int32_t *ids;
    int n;
    const int64_t *pos;
    const qref_real *embeds;
    int n_embeds;
    int gdn_mode;
    int gdn_chunk;
} qref_tokens;

/* Seconds spent per stage, added to by each forward call given one (qref_outputs.times):
 * attention = full-attention layers (projections included), gdn = Gated DeltaNet layers,
 * mlp = MLP or MoE blocks, lm_head = final norm and vocabulary projection, other = the rest
 * (embeddings, positions, norms between blocks, residuals). Timing costs two clock reads per
 * stage per layer and nothing when times is NULL. */
typedef struct {
    double attention, gdn, mlp, lm_head, other;
} qref_stage_times;

typedef struct {
    qref_real *logits;
    qref_real *hidden;
    qref_stage_times *times;    /* NULL: no timing */
    qref_real *final_hidden;    /* (n, H) final-normed rows (batches: (B, L, H), NaN at pads) */
} qref_outputs;

qref_status qref_forward(const qref_model *m, qref_cache *c, const qref_tokens *in,
                         const qref_outputs *out, qref_error *err);


/* One forward over B sequences, left-padded (or padded anywhere) to L tokens each:
 *   ids       (B, L) token ids; pad ids are arbitrary
 *   mask      (B, L) nonzero = real token, 0 = pad; NULL = every token real
 *   pos       (B, 3, L) positions of every token (pads ignored), or NULL for text positions
 *             continuing each row's cache: len + rope_delta + (index among the row's real tokens)
 *   embeds    [B] per row, the image rows for its placeholders in order (NULL entries / NULL
 *             array when none); n_embeds [B] their counts
 *   caches    [B] one distinct cache per row
 * Pads are excluded from attention, never enter the GDN conv or recurrent state, and leave
 * every cache untouched; each row's cache advances by its real tokens only. Matrix products
 * run one per row (L tokens each), so a row's results never depend on the other rows:
 * identical rows of a batch are bitwise identical.
 * Outputs: logits (B, L, V) with NaN at pads; hidden (L_layers + 1, B, L, H); final_hidden
 * (B, L, H) with NaN at pads. */
typedef struct {
    int B, L;
    const int32_t *ids;
    const uint8_t *mask;
    const int64_t *pos;
    const qref_real *const *embeds;
    const int *n_embeds;
    int gdn_mode;
    int gdn_chunk;
} qref_batch;

qref_status qref_forward_batch(const qref_model *m, qref_cache *const *caches, const qref_batch *in,
                               const qref_outputs *out, qref_error *err);

/* Floating-point operations (2 per multiply-accumulate) of the matrix products of a forward
 * over n tokens after `past` cached ones (chunk: the GDN chunk length, 0 = 64; with_logits:
 * the lm_head included), and of the vision tower over one image of this patch grid. Norms,
 * rotary, gates and softmax are not counted. For benchmarks (GFLOP/s). */
double qref_forward_flops(const qref_config *c, int past, int n, int chunk, int with_logits);
double qref_vision_flops(const qref_config *c, const int grid_thw[3]);

/* ---------------------------------------------------------------- vision */

/* An RGB image, 8 bits per channel, rows top to bottom: rgb (height, width, 3). */
typedef struct { const uint8_t *rgb; int width; int height; } qref_image;

/* Preprocesses one image as the Qwen3.5 (Qwen2-VL family) processor does: smart_resize to
 * multiples of patch*merge within [min_pixels, max_pixels] (bicubic, only when needed), rescale
 * 1/255, normalise with cfg->preproc mean/std, repeat over temporal_patch_size, cut into
 * P x P patches in 2x2 merge-block order.
 * On success *pixels is malloc'ed (caller frees) with shape (grid_t*grid_h*grid_w,
 * Cin*Tp*P*P) and grid_thw = {grid_t, grid_h, grid_w} in patches. */
qref_status qref_image_preprocess(const qref_config *cfg, const qref_image *img, qref_real **pixels,
                                  int grid_thw[3], qref_error *err);

/* The patch grid {grid_t, grid_h, grid_w} qref_image_preprocess gives an image of this size,
 * without touching any pixel (smart_resize arithmetic only). */
qref_status qref_image_grid(const qref_config *cfg, int width, int height, int grid_thw[3], qref_error *err);

/* Per-request smart_resize bounds (transformers' image processor size {"shortest_edge": min,
 * "longest_edge": max}): the *_px variants of qref_image_grid / qref_image_preprocess take
 * min_pixels / max_pixels overrides, 0 = cfg->preproc's. qref_image_pixel_bounds resolves a
 * pair: an override must be at least one merge block ((patch * merge)^2 pixels) and the
 * resolved min must not exceed the resolved max (else QREF_EINVAL naming both). */
qref_status qref_image_pixel_bounds(const qref_config *cfg, long min_pixels, long max_pixels, long *min_out,
                                    long *max_out, qref_error *err);
qref_status qref_image_grid_px(const qref_config *cfg, int width, int height, long min_pixels, long max_pixels,
                               int grid_thw[3], qref_error *err);
qref_status qref_image_preprocess_px(const qref_config *cfg, const qref_image *img, long min_pixels,
                                     long max_pixels, qref_real **pixels, int grid_thw[3], qref_error *err);

/* Runs the vision tower over n_images images whose patches are concatenated in `pixels`
 * ((sum of t*h*w), Cin*Tp*P*P)) and writes the merged embeddings out
 * ((sum of t*h*w/M^2), out_hidden_size), image after image. Attention stays within each
 * image (each frame). */
qref_status qref_vision_forward(const qref_model *m, const qref_real *pixels, const int (*grid_thw)[3],
                                int n_images, qref_real *out, qref_error *err);
/* The same, adding seconds per stage to *times (when not NULL): attention = the attention within
 * frames (rotary and softmax included), mlp = every matrix product of the tower (patch
 * embedding, projections, MLPs, merger) and the GELUs, other = the rest (norms, positions,
 * residuals). qref_vision_attention_flops: the attention's part of qref_vision_flops. */
qref_status qref_vision_forward_timed(const qref_model *m, const qref_real *pixels, const int (*grid_thw)[3],
                                      int n_images, qref_real *out, qref_stage_times *times, qref_error *err);
double qref_vision_attention_flops(const qref_config *c, const int grid_thw[3]);

/* 3-axis MRoPE positions for a prompt, with transformers' get_rope_index semantics: text
 * tokens advance T=H=W together; each run of image placeholder tokens (image_token_id) takes
 * the next grid (merged: t, h/M, w/M) and gets (s + t_i, s + row, s + col); the next text
 * token starts at s + max(h/M, w/M). pos is (3, n) row-major; *delta = max position + 1 - n.
 * A run length that differs from the grid's merged token count, or a count of runs that
 * differs from n_images, is QREF_EINVAL naming both counts. */
qref_status qref_rope_index(const qref_config *cfg, const int32_t *ids, int n, const int (*grid_thw)[3],
                            int n_images, int64_t *pos, int64_t *delta, qref_error *err);

/* The text decoder's rotary tables at positions pos (3, n) T/H/W, as the forward pass uses
 * them: cos_t, sin_t (n, rotary_dim / 2). */
void qref_rotary(const qref_model *m, const int64_t *pos, int n, qref_real *cos_t, qref_real *sin_t);

/* ---------------------------------------------------------------- video (video.c)
 *
 * A video is a list of decoded frames (all of one size) and the frame rate they were taken at.
 * As transformers' Qwen3-VL video processor: frames are sampled at cfg->video.fps (indices
 * round(linspace(0, n - 1, k)), k = int(n / fps * target) clamped to [min_frames, n] and
 * max_frames; a video without a rate is taken at QREF_VIDEO_FPS_WHEN_MISSING), an odd count is
 * padded by repeating the last frame, smart_resize runs once over t * h * w (factor P*M,
 * the pixel bounds over the whole video), every frame is resized as images are (bicubic on
 * the bytes) and normalised, and each temporal patch holds Tp consecutive real frames.
 * The grid (t, h, w) has t = padded frames / Tp; its prompt layout is, per temporal patch,
 * the timestamp ids, vision_start, h*w/M^2 video placeholders, vision_end. */

/* Indices of the frames the processor keeps out of n_frames taken at `fps` (<= 0: unknown).
 * idx has room for n_frames; *n_out frames are kept; *fps_used is the rate the timestamps
 * are computed with (fps, or QREF_VIDEO_FPS_WHEN_MISSING). Without do_sample_frames every
 * frame is kept. */
qref_status qref_video_sample(const qref_config *cfg, int n_frames, double fps, int *idx, int *n_out,
                              double *fps_used, qref_error *err);

/* The grid {t, h, w} (patches) of n sampled frames of width x height, without touching pixels. */
qref_status qref_video_grid(const qref_config *cfg, int n_frames, int width, int height, int grid_thw[3],
                            qref_error *err);

/* Preprocesses n sampled frames (every frame the same size): *pixels is malloc'ed (caller
 * frees) with shape (t*h*w, Cin*Tp*P*P), temporal patch after temporal patch, each in merge-block
 * order, each patch flattened (C, Tp, P, P) with frame 2t then 2t + 1 (Tp = 2). */
qref_status qref_video_preprocess(const qref_config *cfg, const qref_image *frames, int n, qref_real **pixels,
                                  int grid_thw[3], qref_error *err);

/* One visual input of a prompt: an image, or a video's sampled frames. */
typedef struct {
    int is_video;
    qref_image image;           /* !is_video */
    const qref_image *frames;   /* is_video: (n_frames) sampled frames, in order */
    int n_frames;
    long min_pixels, max_pixels; /* !is_video: smart_resize bounds (qref_image_preprocess_px); 0 = cfg's */
} qref_visual;

/* Merged embeddings of n visual inputs in order (each through the vision tower on its own):
 * grid (n, 3) receives each input's patch grid; *embeds is malloc'ed ((*n_embeds), H). */
qref_status qref_visuals_embed(const qref_model *m, const qref_visual *v, int n, int (*grid)[3],
                               qref_real **embeds, int *n_embeds, qref_error *err);

/* Positions of a prompt with images and videos, as transformers 5.17's Qwen3.5 get_rope_index:
 * a video of grid (t, h, w) is split into t grids (1, h, w), one per temporal patch, each the
 * placeholder run of its own (runs of video_token_id, separated in the prompt by the timestamp
 * ids and vision_end / vision_start); a run starting at s gets (s, s + row, s + col) (the
 * temporal index of the group at its start) and the next token continues at s + max(h, w)/M;
 * image runs as qref_rope_index; timestamp ids are text and advance like text. grid (n, 3)
 * and is_video (n) describe the visual inputs in prompt order (is_video NULL: all images);
 * runs and grids must agree in count and size (QREF_EINVAL naming both). */
qref_status qref_rope_index_mm(const qref_config *cfg, const int32_t *ids, int n, const int (*grid)[3],
                               const uint8_t *is_video, int n_visuals, int64_t *pos, int64_t *delta,
                               qref_error *err);

/* Whether id is a vision placeholder (image or video token) of this model. */
int qref_is_placeholder(const qref_config *cfg, int32_t id);

/* ---------------------------------------------------------------- prompts (prompt.c) */

/* A prompt ready for the decoder: token ids (image placeholders already expanded), 3-axis
 * positions and delta, and the merged image embeddings (vision tower already run). Built
 * once, then prefilled on any chunk schedule. */
typedef struct {
    int32_t *ids;               /* (n) */
    int n;
    int64_t *pos;               /* (3, n) */
    int64_t delta;
    int n_images;
    int (*grid)[3];             /* (n_images, 3) patch grids */
    qref_real *embeds;          /* (n_embeds, H) merged image embeddings, image after image */
    int n_embeds;
    uint8_t *is_video;          /* (n_images) 1 where the visual input is a video; NULL: all images */
} qref_prompt;

/* Preprocesses n images and runs the vision tower over them in one call. grid (n, 3) receives
 * each image's patch grid; *embeds is malloc'ed ((*n_embeds), H), image after image (caller
 * frees; NULL on failure). */
qref_status qref_images_embed(const qref_model *m, const qref_image *images, int n_images, int (*grid)[3],
                              qref_real **embeds, int *n_embeds, qref_error *err);

/* Number of placeholder tokens an image of this patch grid expands to (t*h*w / M^2). */
int qref_image_tokens(const qref_config *cfg, const int grid_thw[3]);

/* ids must hold vision_start, the placeholder run and vision_end for each image (in order).
 * Preprocesses the images, runs the vision tower, computes positions. The prompt owns copies
 * of everything; free with qref_prompt_free (safe on a zeroed struct and twice). */
qref_status qref_prompt_build(qref_prompt *p, const qref_model *m, const int32_t *ids, int n,
                              const qref_image *images, int n_images, qref_error *err);
void qref_prompt_free(qref_prompt *p);

/* As qref_prompt_build with images and videos: the n visual inputs in prompt order (grid, embeds
 * and is_video of the prompt follow that order; n_images counts them all). ids must hold each
 * image's and each video's expansion. */
qref_status qref_prompt_build_mm(qref_prompt *p, const qref_model *m, const int32_t *ids, int n,
                                 const qref_visual *visuals, int n_visuals, qref_error *err);

/* Prefills prompt tokens [from, to) into the cache, which must hold exactly the first `from`
 * tokens of this prompt, in chunks of `chunk` tokens (0 = all at once), with the prompt's own
 * positions and the embedding rows that belong to each chunk; sets the cache's rope delta.
 * logits ((to - from), V) or NULL. */
qref_status qref_prompt_prefill(const qref_model *m, qref_cache *c, const qref_prompt *p, int from, int to,
                                int chunk, int gdn_mode, qref_real *logits, qref_error *err);

/* Prompts of several sequences left-padded into one (B, L) batch layout. The rows are views
 * of the caller's prompts, which must outlive the batch. Free with qref_padded_free (safe on
 * a zeroed struct and twice). */
typedef struct {
    int B, L;
    const qref_prompt *rows;    /* (B) */
    int32_t *ids;               /* (B, L), pad_id at pads */
    uint8_t *mask;              /* (B, L) 1 real, 0 pad */
    int64_t *pos;               /* (B, 3, L), 0 at pads */
} qref_padded;

qref_status qref_padded_build(qref_padded *pb, const qref_prompt *rows, int B, int32_t pad_id, qref_error *err);
/* As qref_padded_build with a layout of at least min_len columns (L = max(longest row, min_len)):
 * a batch of one row can have pads. */
qref_status qref_padded_build_to(qref_padded *pb, const qref_prompt *rows, int B, int32_t pad_id, int min_len,
                                 qref_error *err);
void qref_padded_free(qref_padded *pb);

/* One batched forward over the columns [from, to) of the padded layout (ragged chunked
 * prefill: call it column chunk after column chunk; a chunk may hold only pads for a row).
 * Sets each row's rope delta from its prompt. logits (B, to - from, V), NaN at pads, or NULL. */
qref_status qref_padded_prefill(const qref_model *m, qref_cache *const *caches, const qref_padded *pb, int from,
                                int to, qref_real *logits, qref_error *err);
/* The same with every output of qref_outputs ((B, to - from, ...) per output, as
 * qref_forward_batch gives them); out NULL: none. */
qref_status qref_padded_prefill_out(const qref_model *m, qref_cache *const *caches, const qref_padded *pb, int from,
                                    int to, const qref_outputs *out, qref_error *err);


/* ---------------------------------------------------------------- continuous batching (step.c) */

/* One row of a continuous-batching step: n new tokens of one sequence (a decode row: n = 1).
 *   pos     (3, n) positions, or NULL for text positions cache->len + cache->rope_delta + i
 *   embeds  (n_embeds, H) rows for the image placeholders among ids, in order; NULL if none */
typedef struct {
    qref_cache *cache;
    const int32_t *ids;         /* (n) */
    int n;
    const int64_t *pos;
    const qref_real *embeds;
    int n_embeds;
} qref_step_row;

/* One batched forward over B rows of different lengths (distinct caches): the rows are
 * right-padded to the longest into one (B, L) layout and run by qref_forward_batch, pads
 * excluded from attention, conv and recurrent state; each cache advances by its row's
 * tokens. The GDN takes the recurrent form for a one-token row and the chunked one for a
 * longer row, as a single-sequence call would. logits (sum of n, V), row after row, or NULL.
 * The rope delta of a cache is the caller's to set (a prefill row's prompt delta). */
qref_status qref_step(const qref_model *m, const qref_step_row *rows, int B, qref_real *logits, qref_error *err);
/* ---------------------------------------------------------------- speculative decoding (mtp.c)
 *
 * The MTP head (Qwen3.5's `mtp.*` tensors, mtp_num_hidden_layers 1), as vLLM's and sglang's
 * qwen3_5_mtp.py define it. For the main model's final hidden state h_t of token t (AFTER the
 * final norm: what both servers hand their drafter) and the next token x_{t+1}:
 *   u   = fc( [ rmsnorm(embed(x_{t+1}), pre_fc_norm_embedding) | rmsnorm(h_t, pre_fc_norm_hidden) ] )
 *         (embedding first, hidden second, as both sources concatenate)
 *   u   = one full-attention decoder layer mtp.layers.0 (dense MLP or MoE like the main model)
 *         with its own KV cache, at the main model's position of token t (3-D MRoPE included)
 *   d_t = rmsnorm(u, mtp.norm);   draft logits = lm_head(d_t) (the main model's lm_head)
 * embed(x) is the main model's input embedding: for an image placeholder, its vision row.
 * Chained drafts feed d (the MTP's own normed output) back as the hidden state and the drafted
 * token as x, one position further on (vLLM's proposer does the same).
 *
 * A cache of a model with an MTP head keeps, for every token it holds, the token's input
 * embedding, its position and the main model's final-normed hidden state (every forward call
 * records them), so the MTP's KV rows are brought up to date lazily by qref_mtp_draft. */

/* The sequence holds len >= 1 tokens and `next` is the token after them (sampled, not yet in
 * the main cache). Brings the MTP KV cache up to rows [0, len) (row s pairs h_s with the input
 * embedding of token s+1; row len-1 pairs h_{len-1} with embed(next)) and proposes k drafts:
 * draft 1 from row len-1, draft j+1 chained from draft j. drafts (k): the greedy choice of
 * each row over every id but the vision special ids; logits (k, V) or NULL. The MTP KV keeps
 * only the committed rows [0, len) afterwards. QREF_EINVAL without an MTP head, on an empty
 * sequence, during a verify awaiting its accept, or for next outside the vocabulary. */
qref_status qref_mtp_draft(const qref_model *m, qref_cache *c, int32_t next, int k, int32_t *drafts,
                           qref_real *logits, qref_error *err);

/* Verification of n tokens in one forward: ids[0] is the last accepted token (not yet in the
 * cache), ids[1..n) are drafts. Runs the main model over the n tokens at the next positions
 * (the recurrent GDN form, token by token) keeping the conv and recurrent state after every
 * position; logits (n, V): row i predicts the token after ids[i]. The cache then awaits
 * qref_verify_accept: nothing but that call may use it. */
qref_status qref_verify(const qref_model *m, qref_cache *c, const int32_t *ids, int n, qref_real *logits,
                        qref_error *err);
/* Commits the pending verify to its first a + 1 tokens (ids[0] and the first a drafts), a in
 * [0, n): the sequence then holds its previous tokens plus a + 1; the conv and recurrent states
 * are the ones kept at that position, nothing is recomputed. The token after them is the
 * caller's (the greedy choice of logits row a in greedy speculative decoding). */
qref_status qref_verify_accept(const qref_model *m, qref_cache *c, int a, qref_error *err);
/* Verification of B sequences in one batched forward: row b feeds ids[b] (n[b] >= 1 tokens:
 * its last accepted token then n[b] - 1 drafts; n[b] == 1 is a plain decode step in the
 * batch), the rows left-padded to the longest (pads enter no state). logits (B, max n, V):
 * row b's token i at [b][i], NaN past n[b]. Every cache then awaits its own
 * qref_verify_accept, each with its own accepted count. */
qref_status qref_verify_batch(const qref_model *m, qref_cache *const *caches, const int32_t *const *ids, const int *n,
                              int B, qref_real *logits, qref_error *err);
/* ---------------------------------------------------------------- precision at run time */

/* The scalar type this library was built with: "f32" or "f64", and sizeof(qref_real) in the
 * library. A program compiled against this header must agree (the CMake package and the
 * pkg-config file define QREF_PRECISION_F64 for a double library):
 * strcmp(qref_precision(), QREF_PRECISION_NAME) == 0. */
const char *qref_precision(void);
size_t qref_real_size(void);

#endif /* QREF_H */
