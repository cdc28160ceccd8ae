/* SPDX-License-Identifier: MIT */
/*
 * The case catalog: declarative JSON case files (cases/NAME.json) parsed into plain structs.
 *
 * A case names a checkpoint, a prompt (token id segments and images), an optional decode
 * spec, kind-specific parameters and metric bounds per engine precision. The schema is
 * documented for case authors in cases/README.md; this module is its one parser and
 * validator. Everything is checked when a file loads: JSON syntax, the type of every field,
 * unknown keys (a typo never passes silently), missing required fields, unknown kinds and
 * metric names, duplicate case names across files, and that referenced checkpoints and images
 * exist under the repository root. Errors are one line naming the file, the case and the field:
 *
 *   cases/x.json: case 'dense.golden.text': bounds.f32.max_abs: expected a number, found string
 *
 * Nothing here prints, exits or keeps global state. Paths are stored exactly as written in the
 * case file (relative to the repository root); the caller joins them with the root it uses.
 */
#ifndef LC_CASES_H
#define LC_CASES_H

#include <stdint.h>

#include "lc_error.h"
#include "lc_precision.h"

/* ---------------------------------------------------------------- kinds */

/* id, name in case files */
#define LC_KIND_MAP(X)                          \
    X(GOLDEN, "golden")                         \
    X(PREFILL_DECODE, "prefill_decode")         \
    X(CHUNKED, "chunked")                       \
    X(ISOLATION, "isolation")                   \
    X(MULTI_IMAGE, "multi_image")               \
    X(CACHE, "cache")                           \
    X(KERNEL, "kernel")                         \
    X(BATCH, "batch")                           \
    X(SNAPSHOT, "snapshot")                     \
    X(IMAGE_CHECKPOINT, "image_checkpoint")     \
    X(GRADIENT, "gradient")                     \
    X(CONTINUOUS_BATCH, "continuous_batch")     \
    X(PREFIX_CACHE, "prefix_cache")             \
    X(SPECULATIVE, "speculative")               \
    X(MTP_HEAD, "mtp_head")

typedef enum {
    LC_KIND_UNKNOWN = -1,
#define LC__KIND_ENUM(id, name) LC_KIND_##id,
    LC_KIND_MAP(LC__KIND_ENUM)
#undef LC__KIND_ENUM
    LC_KIND_COUNT
} lc_kind;

/* Case-file name of a kind ("prefill_decode"); "unknown" out of range. Never NULL. */
const char *lc_kind_name(lc_kind k);
/* Exact lookup; LC_KIND_UNKNOWN when not a kind (or NULL). */
lc_kind lc_kind_from_name(const char *name);
/* Whether cases of this kind must name a golden file (they compare with transformers). */
int lc_kind_needs_golden(lc_kind k);

/* Which check a `kernel` case runs. */
#define LC_KERNEL_MAP(X)                                            \
    X(GDN_CHUNKED_RECURRENT, "gdn_chunked_vs_recurrent")            \
    X(MROPE_TEXT_1D, "mrope_text_vs_1d")

typedef enum {
    LC_KERNEL_NONE = -1,
#define LC__KERNEL_ENUM(id, name) LC_KERNEL_##id,
    LC_KERNEL_MAP(LC__KERNEL_ENUM)
#undef LC__KERNEL_ENUM
    LC_KERNEL_COUNT
} lc_kernel_check;

const char *lc_kernel_check_name(lc_kernel_check k);

/* Which backward pass a `gradient` case grades: the function names of the engine's vjp
 * operation (harness/engines/lc_engine.h, "gradients"). */
#define LC_GRAD_FN_MAP(X)                       \
    X(GDN_RECURRENT, "gdn_recurrent")           \
    X(GDN_CHUNKED, "gdn_chunked")               \
    X(CONV, "conv")                             \
    X(L2NORM, "l2norm")                         \
    X(RMSNORM, "rmsnorm")                       \
    X(RMSNORM_GATED, "rmsnorm_gated")           \
    X(ROPE, "rope")                             \
    X(DECODER_LAYER, "decoder_layer")

typedef enum {
    LC_GRAD_FN_NONE = -1,
#define LC__GRAD_FN_ENUM(id, name) LC_GRAD_FN_##id,
    LC_GRAD_FN_MAP(LC__GRAD_FN_ENUM)
#undef LC__GRAD_FN_ENUM
    LC_GRAD_FN_COUNT
} lc_grad_fn;

const char *lc_grad_fn_name(lc_grad_fn f);   /* "gdn_chunked"...; "unknown" out of range */

/* Engine precisions (f64, f32, bf16, f16: records/lc_precision.h) key the bounds. */

/* The one golden layout besides the dense goldens: golden/real/README.md. */
#define LC_CASE_SPARSE_LAYOUT "sparse-v1"

/* ---------------------------------------------------------------- the case struct */

typedef enum { LC_SEG_IDS = 0, LC_SEG_IMAGE = 1, LC_SEG_VIDEO = 2 } lc_segment_type;

/* One prompt segment: explicit token ids, or an image. An image segment expands (in the
 * runner and the exporter alike) to vision_start, N image placeholder tokens (N = merged grid
 * t*h*w / M^2 of the preprocessed image), vision_end. */
typedef struct {
    lc_segment_type type;
    int32_t *ids;               /* (n_ids) LC_SEG_IDS */
    int n_ids;
    char *image;                /* LC_SEG_IMAGE: PNG path relative to the repository root */
    /* LC_SEG_VIDEO {"video": [frames], "fps": F, "timestamp_ids": [[...], ...]}: expands to, per
     * temporal patch, its timestamp ids, vision_start, the patch's placeholders, vision_end */
    char **frames;              /* (n_frames) PNG paths relative to the root */
    int n_frames;
    double fps;                 /* frames per second; 0: not given */
    int32_t *ts_ids;            /* every temporal patch's timestamp ids, concatenated */
    int *ts_len;                /* (n_ts) ids per temporal patch */
    int n_ts;
} lc_segment;

typedef struct {
    lc_segment *segs;           /* (n_segs), never empty once loaded */
    int n_segs;
} lc_prompt;

typedef enum { LC_DECODE_NONE = 0, LC_DECODE_GREEDY, LC_DECODE_IDS } lc_decode_mode;

/* Decode spec. GREEDY: N tokens chosen greedily (by transformers and stored in the golden
 * when the case has one, else by the engine itself). IDS: explicit teacher-forced tokens. */
typedef struct {
    lc_decode_mode mode;
    int greedy;                 /* GREEDY: number of tokens */
    int32_t *ids;               /* (n_ids) IDS */
    int n_ids;
} lc_decode;

/* One metric bound: name as written ("max_abs"; a name of metrics.h) and its value. The
 * direction (maximum or minimum) belongs to the metric, see lc_metric_direction. */
typedef struct {
    char *name;
    double value;
} lc_bound;

/* Bounds for one engine precision. */
typedef struct {
    int present;                /* the case gives bounds for this precision */
    int bitwise;                /* same-schedule comparison: must be bit-identical */
    lc_bound *items;            /* (n_items) in file order */
    int n_items;
    int has_atol, has_rtol;     /* allclose parameters, when given */
    double atol, rtol;
    int topk;                   /* k of the top-k overlap; 0 when not given */
    int has_top1_margin;        /* top1_agree_margin: a flip counts only above this margin */
    double top1_margin;
} lc_bounds;

typedef enum { LC_FAMILY_UNKNOWN = 0, LC_FAMILY_DENSE, LC_FAMILY_MOE } lc_family;

/* The keys of hidden_bounds (cases/real/README.md): the comparisons hidden_rms, hidden_sketch
 * and hidden_sample of the sparse goldens' final hidden state. */
enum { LC_HIDDEN_RMS = 0, LC_HIDDEN_SKETCH = 1, LC_HIDDEN_SAMPLE = 2, LC_HIDDEN_N = 3 };
extern const char *const lc_hidden_bound_names[LC_HIDDEN_N]; /* "rms", "sketch", "sample" */

/* One request of a serving case (continuous_batch, prefix_cache). */
typedef struct {
    lc_prompt prompt;
    int decode;                 /* tokens decoded after the prompt (greedy, chosen by its B=1 run) */
    int arrive;                 /* continuous_batch: the step it joins the running batch at */
    int chunk;                  /* continuous_batch: prompt tokens per step; 0: the whole prompt at once */
    int *store_after;           /* (n_store) prefix_cache: segments after whose end a boundary is stored */
    int n_store;
    int reused;                 /* prefix_cache: tokens its lookup must reuse (hand-derived) */
    int refused;                /* prefix_cache: its lookup must refuse a partial match */
} lc_request;

typedef struct {
    char *name;                 /* unique, [a-z0-9_.-]+ */
    lc_kind kind;
    char *checkpoint;           /* directory relative to the repository root */
    char *golden;               /* HDF5 file relative to the root; NULL when not given */
    char **labels;              /* (n_labels) as written; kind and family are implicit labels */
    int n_labels;
    char *description;          /* one sentence: the engine bug class the case catches */
    char *file;                 /* the case file it was read from (as passed to the loader) */
    lc_family family;           /* from the checkpoint's config.json; UNKNOWN without a root */

    lc_prompt prompt;           /* every kind but batch (empty for batch) */
    lc_decode decode;           /* mode NONE when not given */

    /* kind parameters (zero / NULL when the kind has none) */
    int *lengths;               /* (n_lengths) prefill_decode: prompt prefixes to check */
    int n_lengths;
    int *chunks;                /* (n_chunks) chunked: chunk sizes */
    int n_chunks;
    lc_prompt *rows;            /* (n_rows) batch: one prompt per row; speculative: the rows after
                                 * the prompt of a batched verify */
    int n_rows;
    int32_t pad_id;             /* batch: id written at left-padded positions */
    lc_prompt other_prompt;     /* isolation: prompt B run between the two runs of A */
    int steps;                  /* cache: decode steps */
    lc_kernel_check kernel;     /* kernel: which check (LC_KERNEL_NONE for other kinds) */
    int chunk;                  /* kernel: GDN chunk size (default 64) */
    int split;                  /* snapshot: tokens before the snapshot */
    int after_segment;          /* image_checkpoint: snapshot after this image segment */
    lc_grad_fn function;        /* gradient: the backward pass graded (LC_GRAD_FN_NONE otherwise) */
    char *group;                /* gradient: the golden group holding inputs and output gradients */
    char *expected;             /* gradient: its subgroup holding the autograd results; NULL: the group */
    int grad_chunk;             /* gradient: the function's chunk parameter; -1: not given */
    int cross_recurrent;        /* gradient: also run the recurrent form and compare with it */
    lc_request *requests;       /* (n_requests) continuous_batch, prefix_cache: in schedule order */
    int n_requests;
    int interleave;             /* isolation: also decode A and B interleaved token by token */
    int draft_k;                /* speculative, mtp_head: drafts per verify step / chained drafts */
    int *accept;                /* (n_accept) speculative: forced accept counts per step (cycled);
                                 * NULL: greedy acceptance of MTP drafts */
    int n_accept;
    int *row_k;                 /* (n_row_k) speculative with rows: drafts per step of each batch
                                 * row (the prompt, then rows); 0: a non-speculative row */
    int n_row_k;
    int32_t *suffix;            /* (n_suffix) speculative: a second request's tokens after the
                                 * first one's accepted prefix (prefix-cache check); NULL: none */
    int n_suffix;

    lc_bounds bounds[LC_PREC_COUNT];
    /* real-scale keys (cases/real/README.md) */
    int has_synth;              /* checkpoint_synth given: `checkpoint` is written by synth */
    char *synth_preset;         /* its preset (a published-shape preset of synth.h) */
    uint64_t synth_seed;
    char *synth_sha256;         /* the checkpoint hash, 64 lowercase hex digits */
    int sparse;                 /* golden_layout "sparse-v1" (golden/real/README.md) */
    int *chunk_sweep;           /* (n_chunk_sweep) prefill chunk sizes run besides the base schedule */
    int n_chunk_sweep;
    long image_max_pixels;      /* smart_resize's upper bound for the case's images; 0: the checkpoint's */
    int pad_to;                 /* batch: left-pad every row to this length; 0: the longest row */
    long image_min_pixels;      /* smart_resize's lower bound for the case's images; 0: the checkpoint's */
    /* hidden_bounds: the bounds of the final hidden state's comparisons (golden_sparse_run.c),
     * one set per comparison (LC_HIDDEN_RMS, _SKETCH, _SAMPLE), each per precision as `bounds` */
    lc_bounds hidden_bounds[LC_HIDDEN_N][LC_PREC_COUNT];
    int has_hidden_bounds;
} lc_case;

/* A loaded catalog: cases in file order, files in the order they were loaded. */
typedef struct {
    lc_case *cases;             /* (n) */
    int n;
    int cap;
} lc_catalog;

/* ---------------------------------------------------------------- loading */

/* Zeroes cat. A zeroed catalog is also valid: init is optional. */
void lc_catalog_init(lc_catalog *cat);

/* Releases everything cat holds and zeroes it. Safe on a zeroed catalog and twice. */
void lc_catalog_free(lc_catalog *cat);

/* Parses and validates one case file and appends its cases to cat (which may already hold
 * cases from other files: names must stay unique across all of them).
 *   path  the file, used as written in error messages and in lc_case.file
 *   root  the repository root that checkpoint, golden and image paths are relative to;
 *         checkpoints (their config.json) and images must exist there. NULL skips every
 *         file-system check (and leaves family UNKNOWN).
 * On failure cat is exactly as before the call, err names file / case / field, and the
 * status is LC_EINPUT (bad file or content) or LC_EINTERNAL (out of memory).
 * The catalog owns every string and array it holds; nothing points into the file. */
int lc_catalog_load_file(lc_catalog *cat, const char *path, const char *root, lc_error *err);

/* Loads every DIR/NAME.json (regular files, hidden files skipped) in sorted (strcmp) filename
 * order with lc_catalog_load_file. A directory without case files is an error. On failure
 * cat is as before the call. */
int lc_catalog_load_dir(lc_catalog *cat, const char *dir, const char *root, lc_error *err);

/* The case named name, or NULL. Borrowed: valid until the catalog changes. */
const lc_case *lc_catalog_find(const lc_catalog *cat, const char *name);

/* ---------------------------------------------------------------- filtering */

/* Whether the case carries label: its explicit labels, its kind's name, and "dense" / "moe"
 * when its family is known. Exact comparison. */
int lc_case_has_label(const lc_case *c, const char *label);

/* fnmatch-style glob match. A plain pattern matches the case name ("dense.golden.*");
 * "label:GLOB" matches when any label (explicit or implicit) matches GLOB ("label:moe"). */
int lc_case_matches(const lc_case *c, const char *pattern);

/* Selection as the CLI applies it: the case passes when it matches at least one of the
 * n_patterns patterns (or n_patterns == 0) and carries every one of the n_labels labels. */
int lc_case_select(const lc_case *c, const char *const *patterns, int n_patterns,
                   const char *const *labels, int n_labels);

/* ---------------------------------------------------------------- queries */

/* The bound named metric for precision p, or NULL. Borrowed. */
const lc_bound *lc_case_bound(const lc_case *c, lc_precision p, const char *metric);

/* Token ids of a text-only prompt (no image segment), concatenated; -1 when the prompt holds
 * an image (its length is only known after preprocessing). */
int lc_prompt_text_length(const lc_prompt *p);

/* Number of image segments in the prompt. */
int lc_prompt_image_count(const lc_prompt *p);

/* Number of video segments in the prompt. */
int lc_prompt_video_count(const lc_prompt *p);

#endif /* LC_CASES_H */
