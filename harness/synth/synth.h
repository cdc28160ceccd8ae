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
 * A value depends only on (seed, tensor name, element index), so the same options give the
 * same weights whatever the dtype rounding and the shard count.
 */
#ifndef LC_SYNTH_H
#define LC_SYNTH_H

#include <stdint.h>

#include "lc_error.h"

typedef enum { LC_SYNTH_TINY = 0, LC_SYNTH_SMALL, LC_SYNTH_MEDIUM, LC_SYNTH_PRESET_COUNT } lc_synth_preset;
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
    int64_t weight_bytes;       /* tensor data bytes over every safetensors file */
    int64_t file_bytes;         /* safetensors files on disk (headers included) */
} lc_synth_info;

/* Default options: tiny, dense, F32, one file, per-expert tensors, seed 1. */
lc_synth_opts lc_synth_defaults(void);

/* Names <-> values ("tiny", "small", "medium"; "f32", "bf16"). Parsers return 0, or -1 for an
 * unknown name (out untouched); name functions return "?" for an out-of-range value. */
int lc_synth_parse_preset(const char *s, lc_synth_preset *out);
int lc_synth_parse_dtype(const char *s, lc_synth_dtype *out);
const char *lc_synth_preset_name(lc_synth_preset p);
const char *lc_synth_dtype_name(lc_synth_dtype d);

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

#endif /* LC_SYNTH_H */
