/* SPDX-License-Identifier: MIT */
/*
 * Synthetic Qwen3.5 checkpoints for benchmarks and loader tests: config.json (VLM layout with
 * text_config and vision_config) and model.safetensors (or N shards with
 * model.safetensors.index.json) holding every tensor the configuration implies, filled with
 * seeded random weights of a sensible scale (fan-in scaled matrices, norm weights near their
 * neutral value, GDN decay parameters in their usual range), F32 or BF16.
 *
 * Presets (text decoder; every 4th layer is full attention, the rest Gated DeltaNet):
 *   tiny    the shapes of the committed tiny checkpoints (hidden 64, 4 layers, vocab 1024)
 *   small   hidden 512, 8 layers, 8 q / 2 kv heads of dim 128, GDN 4 k heads / 8 v heads of
 *           dim 128, vocab 32000, MLP 1536 (MoE: 8 experts, top 2, width 384, shared 512)
 *   medium  hidden 1024, 24 layers, vocab 151936 with tied embeddings, MLP 2304 (MoE: 16
 *           experts, top 4, width 96, shared 768): about 1 GB in BF16
 *
 * Published-shape presets (README: real-scale checkpoints). Each fixes its model kind, BF16
 * (A_log and the GDN norm weight F32, as published), its shard count and per-expert tensors;
 * the moe, dtype, shards and fused_experts options are ignored for them. They write the
 * published config.json key set, preprocessor_config.json, model.safetensors-0000K-of-0000N.
 * safetensors + model.safetensors.index.json, and the mtp.* tensors:
 *   qwen3.5-0.8b        Qwen3.5-0.8B exactly: 24 layers (18 GDN + 6 attention), hidden 1024,
 *                       8 q / 2 kv heads of 256, GDN 16 k / 16 v heads of 128, MLP 3584, vocab
 *                       248320 tied; vision depth 12, width 768, MLP 3072, 12 heads, out 1024
 *   qwen3.5-4b-l4       Qwen3.5-4B widths at 4 layers (3 GDN + 1 attention): hidden 2560,
 *                       16 / 4 heads of 256, GDN 16 k / 32 v heads, MLP 9216, tied; vision width
 *                       1024, MLP 4096, 16 heads at depth 4
 *   qwen3.5-35b-a3b-l2  Qwen3.5-35B-A3B widths at 2 layers (GDN + attention): hidden 2048,
 *                       16 / 2 heads of 256, GDN 16 k / 32 v heads, 256 experts top 8 of width
 *                       512 + a shared expert of 512, untied; vision width 1152, MLP 4304,
 *                       16 heads at depth 4
 *
 * A value depends only on (seed, tensor name, element index), so the same options give the
 * same weights whatever the dtype rounding and the shard count.
 */
#ifndef LC_SYNTH_H
#define LC_SYNTH_H

#include <stdint.h>

#include "lc_error.h"

typedef enum {
    LC_SYNTH_TINY = 0,
    LC_SYNTH_SMALL,
    LC_SYNTH_MEDIUM,
    LC_SYNTH_Q35_0_8B,
    LC_SYNTH_Q35_4B_L4,
    LC_SYNTH_Q35_35B_A3B_L2,
    LC_SYNTH_PRESET_COUNT
} lc_synth_preset;
typedef enum { LC_SYNTH_F32 = 0, LC_SYNTH_BF16, LC_SYNTH_DTYPE_COUNT } lc_synth_dtype;

typedef struct {
    lc_synth_preset preset;
    int moe;                    /* 0 dense (qwen3_5), 1 MoE (qwen3_5_moe) */
    lc_synth_dtype dtype;
    int shards;                 /* 1: model.safetensors; N > 1: N shards + index */
    int fused_experts;          /* MoE: experts.gate_up_proj / experts.down_proj instead of
                                 * per-expert tensors */
    uint64_t seed;
} lc_synth_opts;

/* What a checkpoint holds (filled by lc_synth_plan and lc_synth_write). */
typedef struct {
    int tensors;
    int files;                  /* safetensors files */
    int64_t params;             /* elements over every tensor */
    int64_t loaded_params;      /* elements of the main model (every tensor but the MTP head mtp.*) */
    int64_t weight_bytes;       /* tensor data bytes over every safetensors file */
    int64_t file_bytes;         /* safetensors files on disk (headers included) */
} lc_synth_info;

/* Default options: tiny, dense, F32, one file, per-expert tensors, seed 1. */
lc_synth_opts lc_synth_defaults(void);

/* Names <-> values ("tiny", "small", "medium", "qwen3.5-0.8b", "qwen3.5-4b-l4",
 * "qwen3.5-35b-a3b-l2"; "f32", "bf16"). Parsers return 0, or -1 for an
 * unknown name (out untouched); name functions return "?" for an out-of-range value. */
int lc_synth_parse_preset(const char *s, lc_synth_preset *out);
int lc_synth_parse_dtype(const char *s, lc_synth_dtype *out);
const char *lc_synth_preset_name(lc_synth_preset p);
const char *lc_synth_dtype_name(lc_synth_dtype d);

/* 1 for a published-shape preset, else 0. */
int lc_synth_preset_published(lc_synth_preset p);
/* 1 for a published-shape preset of the MoE kind (qwen3_5_moe), else 0. */
int lc_synth_preset_moe(lc_synth_preset p);

/* Fills *info with what lc_synth_write would write, without writing (file_bytes included).
 * Returns 0, or LC_EINPUT for malformed options (preset or dtype out of range, shards < 1 or
 * more shards than tensors) with err naming the option. */
int lc_synth_plan(const lc_synth_opts *o, lc_synth_info *info, lc_error *err);

/* Writes DIR/config.json only (DIR must exist). Returns 0, LC_EINPUT for malformed options or
 * a directory that cannot be written, LC_EINTERNAL when out of memory. */
int lc_synth_write_config(const char *dir, const lc_synth_opts *o, lc_error *err);

/* Writes the whole checkpoint into DIR (which must exist): config.json and model.safetensors,
 * or model-0000K-of-0000N.safetensors and model.safetensors.index.json when o->shards > 1.
 * Each file is written under a temporary name in DIR and renamed when complete, so DIR never
 * holds a partial file under a final name. Memory use is a small fixed buffer whatever the
 * size. info may be NULL. Returns 0, LC_EINPUT (malformed options, DIR not writable, disk
 * full: err names the file) or LC_EINTERNAL (out of memory). */
int lc_synth_write(const char *dir, const lc_synth_opts *o, lc_synth_info *info, lc_error *err);

/* The checkpoint hash. SHA-256 of a manifest: for every regular file of the checkpoint
 * directory whose name does not start with '.', in bytewise (C locale) name order, one line
 * "<sha256 of the file, lowercase hex>  <file name>\n", exactly what `sha256sum` prints, so
 *     cd DIR && LC_ALL=C sha256sum $(LC_ALL=C ls) | sha256sum
 * gives the same 64 hex digits. hex receives them and a NUL. */

/* Writes the checkpoint into the new directory OUT (it must not exist; its parent must): into
 * OUT.partial-XXXXXX beside it, renamed to OUT only when every file is complete, so OUT either
 * holds the whole checkpoint or does not exist (on failure the temporary directory is
 * removed). hex gets the checkpoint hash (computed from the bytes as written). info may be
 * NULL. Returns 0, LC_EINPUT (OUT exists, bad options, a write failed: err names the path) or
 * LC_EINTERNAL. */
int lc_synth_write_checkpoint(const char *out, const lc_synth_opts *o, lc_synth_info *info, char hex[65],
                              lc_error *err);

/* The checkpoint hash of what lc_synth_write_checkpoint would write, without writing anything
 * (every file's bytes are generated and hashed in memory, a small buffer at a time). */
int lc_synth_hash(const lc_synth_opts *o, lc_synth_info *info, char hex[65], lc_error *err);

/* The checkpoint hash of an existing directory, read from disk (at most 64 files). Returns 0,
 * or LC_EINPUT (not a directory, unreadable, no files) with err naming the path. */
int lc_synth_dir_hash(const char *dir, char hex[65], lc_error *err);

/* Removes the files of dir (a checkpoint directory, flat) and dir itself: for temporary
 * checkpoints of a benchmark or a partial write. Errors are ignored. */
void lc_synth_remove_dir(const char *dir);

/* A case's checkpoint_synth: makes sure DIR holds the checkpoint `o` describes, with the
 * checkpoint hash `sha256` (64 lowercase hex digits). A missing DIR is written with
 * lc_synth_write_checkpoint (atomic; DIR's parent is created when missing, one level), and
 * *written set to 1; an existing one is hashed from disk (lc_synth_dir_hash), *written 0.
 * Returns 0 when the hash is `sha256`; LC_EINPUT otherwise, with one line naming DIR, both
 * hashes and the command that writes the checkpoint (`logitcheck synth --preset P --seed S
 * --out DIR`), and for a write or read failure the path. DIR is never removed or rewritten. */
int lc_synth_ensure(const char *dir, const lc_synth_opts *o, const char *sha256, int *written, lc_error *err);

#endif /* LC_SYNTH_H */
