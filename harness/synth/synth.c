/* SPDX-License-Identifier: MIT */
/*
 * Synthetic Qwen3.5 checkpoints: a preset's shapes -> a tensor table (names as transformers
 * writes them) -> config.json (+ preprocessor_config.json) + safetensors files written tensor
 * by tensor from a small buffer, each file under a temporary name and renamed when complete,
 * every byte also fed to SHA-256 for the checkpoint hash.
 *
 * Weights come from a counter-based generator: element i of tensor NAME is a function of
 * (seed, hash(NAME), i) only, so shard count and dtype never change which value lands where.
 * For the published-shape presets the value path uses integer hashing and IEEE-754 basic
 * operations only (+, -, *, /, sqrt: each correctly rounded, so no libm can change a bit; the
 * file is compiled with -ffp-contract=off so no compiler fuses a multiply-add), and rounds to
 * BF16 with integer operations on the double's bits: the bytes are the same on every machine
 * and in every build.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sha256.h"
#include "synth.h"

/* ---------------------------------------------------------------- errors */

/* ---------------------------------------------------------------- presets */

typedef struct {
    int vocab, hidden, inter, layers;
    int heads, kv_heads, head_dim, mrope[3];
    int k_heads, v_heads, k_dim, v_dim, conv;
    int experts, topk, moe_inter, shared_inter;
    int tie;
    int vstart, vend, image, video; /* special token ids */
    int v_depth, v_hidden, v_inter, vis_heads, v_npos;
    /* published-shape presets only (published = 1) */
    int published;              /* config.json with the published key set, preprocessor_config.json,
                                 * model.safetensors-0000K-of-0000N.safetensors + index, A_log and
                                 * the GDN norm in F32, mtp.* tensors, libm-free values */
    int moe;                    /* the preset's model kind (published presets fix it) */
    int full_interval;          /* every full_interval-th layer is full attention */
    int shards;                 /* safetensors files */
    int bos;                    /* bos = eos token id */
    double embed_std, head_std; /* token embedding / untied lm_head std (logit scale) */
} shapes;

/* patch 16, temporal patch 2, merge 2, 3 channels and conv kernel 4 in all. The published
 * shapes: Qwen/Qwen3.5-0.8B, Qwen/Qwen3.5-4B and Qwen/Qwen3.5-35B-A3B config.json (text rope
 * theta 1e7, partial rotary 0.25, interleaved MRoPE [11, 11, 10], RMSNorm eps 1e-6, vocabulary
 * 248320, vision start / end / image / video 248053 / 248054 / 248056 / 248057, bos = eos
 * 248044, a 48x48 learned vision position table, one MTP layer). The 4B and 35B-A3B presets keep
 * every width and cut the depth of the text decoder (4 and 2 layers) and of the vision tower (4
 * blocks) so that they load within 24 GiB (README: real-scale checkpoints). */
static const shapes presets[LC_SYNTH_PRESET_COUNT] = {
    [LC_SYNTH_TINY] = {.vocab = 1024, .hidden = 64, .inter = 128, .layers = 4,
                       .heads = 4, .kv_heads = 2, .head_dim = 64, .mrope = {3, 3, 2},
                       .k_heads = 2, .v_heads = 4, .k_dim = 16, .v_dim = 32, .conv = 4,
                       .experts = 8, .topk = 2, .moe_inter = 32, .shared_inter = 48, .tie = 0,
                       .vstart = 998, .vend = 999, .image = 1000, .video = 1001,
                       .v_depth = 2, .v_hidden = 48, .v_inter = 96, .vis_heads = 4, .v_npos = 36,
                       .full_interval = 4},
    [LC_SYNTH_SMALL] = {.vocab = 32000, .hidden = 512, .inter = 1536, .layers = 8,
                        .heads = 8, .kv_heads = 2, .head_dim = 128, .mrope = {6, 5, 5},
                        .k_heads = 4, .v_heads = 8, .k_dim = 128, .v_dim = 128, .conv = 4,
                        .experts = 8, .topk = 2, .moe_inter = 384, .shared_inter = 512, .tie = 0,
                        .vstart = 31990, .vend = 31991, .image = 31992, .video = 31993,
                        .v_depth = 2, .v_hidden = 128, .v_inter = 256, .vis_heads = 4, .v_npos = 64,
                        .full_interval = 4},
    [LC_SYNTH_MEDIUM] = {.vocab = 151936, .hidden = 1024, .inter = 2304, .layers = 24,
                         .heads = 8, .kv_heads = 2, .head_dim = 128, .mrope = {6, 5, 5},
                         .k_heads = 8, .v_heads = 16, .k_dim = 128, .v_dim = 128, .conv = 4,
                         .experts = 16, .topk = 4, .moe_inter = 96, .shared_inter = 768, .tie = 1,
                         .vstart = 151652, .vend = 151653, .image = 151655, .video = 151656,
                         .v_depth = 4, .v_hidden = 256, .v_inter = 1024, .vis_heads = 4, .v_npos = 256,
                         .full_interval = 4},
    [LC_SYNTH_Q35_0_8B] = {.vocab = 248320, .hidden = 1024, .inter = 3584, .layers = 24,
                           .heads = 8, .kv_heads = 2, .head_dim = 256, .mrope = {11, 11, 10},
                           .k_heads = 16, .v_heads = 16, .k_dim = 128, .v_dim = 128, .conv = 4,
                           .tie = 1, .vstart = 248053, .vend = 248054, .image = 248056, .video = 248057,
                           .v_depth = 12, .v_hidden = 768, .v_inter = 3072, .vis_heads = 12, .v_npos = 2304,
                           .published = 1, .moe = 0, .full_interval = 4, .shards = 1, .bos = 248044,
                           .embed_std = 0.32},
    [LC_SYNTH_Q35_4B_L4] = {.vocab = 248320, .hidden = 2560, .inter = 9216, .layers = 4,
                            .heads = 16, .kv_heads = 4, .head_dim = 256, .mrope = {11, 11, 10},
                            .k_heads = 16, .v_heads = 32, .k_dim = 128, .v_dim = 128, .conv = 4,
                            .tie = 1, .vstart = 248053, .vend = 248054, .image = 248056, .video = 248057,
                            .v_depth = 4, .v_hidden = 1024, .v_inter = 4096, .vis_heads = 16, .v_npos = 2304,
                            .published = 1, .moe = 0, .full_interval = 4, .shards = 2, .bos = 248044,
                            .embed_std = 0.2},
    [LC_SYNTH_Q35_35B_A3B_L2] = {.vocab = 248320, .hidden = 2048, .layers = 2,
                                 .heads = 16, .kv_heads = 2, .head_dim = 256, .mrope = {11, 11, 10},
                                 .k_heads = 16, .v_heads = 32, .k_dim = 128, .v_dim = 128, .conv = 4,
                                 .experts = 256, .topk = 8, .moe_inter = 512, .shared_inter = 512, .tie = 0,
                                 .vstart = 248053, .vend = 248054, .image = 248056, .video = 248057,
                                 .v_depth = 4, .v_hidden = 1152, .v_inter = 4304, .vis_heads = 16, .v_npos = 2304,
                                 .published = 1, .moe = 1, .full_interval = 2, .shards = 4, .bos = 248044,
                                 .embed_std = 0.02, .head_std = 0.22},
};

static const char *const preset_names[LC_SYNTH_PRESET_COUNT] = {
    "tiny", "small", "medium", "qwen3.5-0.8b", "qwen3.5-4b-l4", "qwen3.5-35b-a3b-l2"};
static const char *const dtype_names[LC_SYNTH_DTYPE_COUNT] = {"f32", "bf16"};

lc_synth_opts lc_synth_defaults(void)
{
    return (lc_synth_opts){.preset = LC_SYNTH_TINY, .dtype = LC_SYNTH_F32, .shards = 1, .seed = 1};
}

int lc_synth_parse_preset(const char *s, lc_synth_preset *out)
{
    for (int i = 0; s && i < LC_SYNTH_PRESET_COUNT; i++)
        if (!strcmp(s, preset_names[i])) {
            *out = (lc_synth_preset)i;
            return 0;
        }
    return -1;
}

int lc_synth_parse_dtype(const char *s, lc_synth_dtype *out)
{
    for (int i = 0; s && i < LC_SYNTH_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_names[i])) {
            *out = (lc_synth_dtype)i;
            return 0;
        }
    return -1;
}

const char *lc_synth_preset_name(lc_synth_preset p)
{
    return (int)p >= 0 && p < LC_SYNTH_PRESET_COUNT ? preset_names[p] : "?";
}

const char *lc_synth_dtype_name(lc_synth_dtype d)
{
    return (int)d >= 0 && d < LC_SYNTH_DTYPE_COUNT ? dtype_names[d] : "?";
}

int lc_synth_preset_published(lc_synth_preset p)
{
    return (int)p >= 0 && p < LC_SYNTH_PRESET_COUNT && presets[p].published;
}

int lc_synth_preset_moe(lc_synth_preset p)
{
    return lc_synth_preset_published(p) && presets[p].moe;
}

/* The options as written: a published preset fixes the model kind, BF16, its shard count and
 * per-expert tensors, whatever the caller set. */
static lc_synth_opts effective(const lc_synth_opts *o)
{
    lc_synth_opts e = *o;
    if (lc_synth_preset_published(o->preset)) {
        const shapes *p = &presets[o->preset];
        e.moe = p->moe;
        e.dtype = LC_SYNTH_BF16;
        e.shards = p->shards;
        e.fused_experts = 0;
    }
    return e;
}

/* ---------------------------------------------------------------- the tensor table */

/* How a tensor's values are drawn (uniform distributions):
 *   LINEAR   std 1/sqrt(fan_in), fan_in = every dim but the first (last dim for 3-D experts)
 *   EMBED    std 0.02 (embeddings of the legacy presets, learned vision positions)
 *   TOKEN    published presets: token embeddings, std embed_std of the preset
 *   HEAD     published presets: untied lm_head, std head_std of the preset
 *   NORM_ZC  (1 + w) norms: w in [-0.1, 0.1]
 *   ONES     plain-w norms (GDN gated norm, LayerNorm weights): w in [0.9, 1.1]
 *   BIAS     [-0.02, 0.02]
 *   A_LOG    GDN decay: log(a), a in [1, 16] (legacy); uniform in [0, ln 16) (published)
 *   DT_BIAS  [0.5, 1.5] */
enum { INIT_LINEAR, INIT_EMBED, INIT_TOKEN, INIT_HEAD, INIT_NORM_ZC, INIT_ONES, INIT_BIAS, INIT_A_LOG,
       INIT_DT_BIAS };

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[5];
    int64_t count;
    int init;
    double fan_in;
    double half;                /* published presets: half-width of the uniform distribution */
    lc_synth_dtype dt;          /* storage dtype of this tensor */
    int shard;
    int64_t begin;              /* data offset inside its shard, bytes */
} tensor;

typedef struct {
    tensor *t;
    int n, cap;
    int failed;
} table;

static void table_free(table *tb)
{
    free(tb->t);
    memset(tb, 0, sizeof *tb);
}

static size_t dtype_size(lc_synth_dtype d) { return d == LC_SYNTH_BF16 ? 2 : 4; }
static int64_t tensor_bytes(const tensor *t) { return t->count * (int64_t)dtype_size(t->dt); }

/* Adds a tensor; shape outermost-first, terminated by -1. */
static void add(table *tb, int init, const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void add(table *tb, int init, const int64_t *shape, const char *fmt, ...)
{
    if (tb->failed)
        return;
    if (tb->n == tb->cap) {
        int cap = tb->cap ? 2 * tb->cap : 256;
        tensor *t = realloc(tb->t, (size_t)cap * sizeof *t);
        if (!t) {
            tb->failed = 1;
            return;
        }
        tb->t = t;
        tb->cap = cap;
    }
    tensor *t = &tb->t[tb->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->init = init;
    t->count = 1;
    for (t->ndim = 0; shape[t->ndim] >= 0; t->ndim++) {
        t->shape[t->ndim] = shape[t->ndim];
        t->count *= shape[t->ndim];
    }
    t->fan_in = (double)t->count / (double)t->shape[0];
    if (t->ndim == 3 && init == INIT_LINEAR && t->shape[1] != 1)
        t->fan_in = (double)t->shape[2]; /* fused experts (E, out, in) */
}

#define S(...) ((const int64_t[]){__VA_ARGS__, -1})
#define LM "model.language_model."
#define VIS "model.visual."

/* A gated full-attention block under prefix pre ("...layers.N."). */
static void add_attention(table *tb, const shapes *p, const char *pre)
{
    const int64_t H = p->hidden, D = p->head_dim, Hq = p->heads, Hkv = p->kv_heads;
    add(tb, INIT_LINEAR, S(Hq * D * 2, H), "%sself_attn.q_proj.weight", pre);
    add(tb, INIT_LINEAR, S(Hkv * D, H), "%sself_attn.k_proj.weight", pre);
    add(tb, INIT_LINEAR, S(Hkv * D, H), "%sself_attn.v_proj.weight", pre);
    add(tb, INIT_LINEAR, S(H, Hq * D), "%sself_attn.o_proj.weight", pre);
    add(tb, INIT_NORM_ZC, S(D), "%sself_attn.q_norm.weight", pre);
    add(tb, INIT_NORM_ZC, S(D), "%sself_attn.k_norm.weight", pre);
}

/* The MLP (dense) or the sparse MoE block (router, shared expert, experts) under pre. */
static void add_mlp(table *tb, const shapes *p, const lc_synth_opts *o, const char *pre)
{
    const int64_t H = p->hidden, F = p->inter, E = p->experts, I = p->moe_inter, Is = p->shared_inter;
    if (!o->moe) {
        add(tb, INIT_LINEAR, S(F, H), "%smlp.gate_proj.weight", pre);
        add(tb, INIT_LINEAR, S(F, H), "%smlp.up_proj.weight", pre);
        add(tb, INIT_LINEAR, S(H, F), "%smlp.down_proj.weight", pre);
        return;
    }
    add(tb, INIT_LINEAR, S(E, H), "%smlp.gate.weight", pre);
    add(tb, INIT_LINEAR, S(Is, H), "%smlp.shared_expert.gate_proj.weight", pre);
    add(tb, INIT_LINEAR, S(Is, H), "%smlp.shared_expert.up_proj.weight", pre);
    add(tb, INIT_LINEAR, S(H, Is), "%smlp.shared_expert.down_proj.weight", pre);
    add(tb, INIT_LINEAR, S(1, H), "%smlp.shared_expert_gate.weight", pre);
    if (o->fused_experts) {
        add(tb, INIT_LINEAR, S(E, 2 * I, H), "%smlp.experts.gate_up_proj", pre);
        add(tb, INIT_LINEAR, S(E, H, I), "%smlp.experts.down_proj", pre);
        return;
    }
    for (int e = 0; e < E; e++) {
        add(tb, INIT_LINEAR, S(I, H), "%smlp.experts.%d.gate_proj.weight", pre, e);
        add(tb, INIT_LINEAR, S(I, H), "%smlp.experts.%d.up_proj.weight", pre, e);
        add(tb, INIT_LINEAR, S(H, I), "%smlp.experts.%d.down_proj.weight", pre, e);
    }
}

static int is_linear_layer(const shapes *p, int l) { return (l + 1) % p->full_interval != 0; }

static void build_text(table *tb, const shapes *p, const lc_synth_opts *o)
{
    const int64_t H = p->hidden, V = p->vocab;
    const int64_t Hk = p->k_heads, Hv = p->v_heads, Dk = p->k_dim, Dv = p->v_dim, K = p->conv;
    const int64_t C = 2 * Hk * Dk + Hv * Dv;

    add(tb, p->published ? INIT_TOKEN : INIT_EMBED, S(V, H), LM "embed_tokens.weight");
    add(tb, INIT_NORM_ZC, S(H), LM "norm.weight");
    if (!p->tie)
        add(tb, p->published ? INIT_HEAD : INIT_LINEAR, S(V, H), "lm_head.weight");
    for (int l = 0; l < p->layers; l++) {
        char pre[64];
        snprintf(pre, sizeof pre, LM "layers.%d.", l);
        add(tb, INIT_NORM_ZC, S(H), "%sinput_layernorm.weight", pre);
        add(tb, INIT_NORM_ZC, S(H), "%spost_attention_layernorm.weight", pre);
        if (is_linear_layer(p, l)) {
            add(tb, INIT_LINEAR, S(C, H), "%slinear_attn.in_proj_qkv.weight", pre);
            add(tb, INIT_LINEAR, S(Hv * Dv, H), "%slinear_attn.in_proj_z.weight", pre);
            add(tb, INIT_LINEAR, S(Hv, H), "%slinear_attn.in_proj_b.weight", pre);
            add(tb, INIT_LINEAR, S(Hv, H), "%slinear_attn.in_proj_a.weight", pre);
            add(tb, INIT_LINEAR, S(C, 1, K), "%slinear_attn.conv1d.weight", pre);
            add(tb, INIT_DT_BIAS, S(Hv), "%slinear_attn.dt_bias", pre);
            add(tb, INIT_A_LOG, S(Hv), "%slinear_attn.A_log", pre);
            add(tb, INIT_ONES, S(Dv), "%slinear_attn.norm.weight", pre);
            add(tb, INIT_LINEAR, S(H, Hv * Dv), "%slinear_attn.out_proj.weight", pre);
        } else {
            add_attention(tb, p, pre);
        }
        add_mlp(tb, p, o, pre);
    }
}

/* The multi-token-prediction head as published (one full-attention layer, its MLP or MoE
 * block, the fc over [embedding; hidden] and three norms); the engine loads it (reference/mtp.c). */
static void build_mtp(table *tb, const shapes *p, const lc_synth_opts *o)
{
    const int64_t H = p->hidden;
    add(tb, INIT_LINEAR, S(H, 2 * H), "mtp.fc.weight");
    add(tb, INIT_NORM_ZC, S(H), "mtp.pre_fc_norm_embedding.weight");
    add(tb, INIT_NORM_ZC, S(H), "mtp.pre_fc_norm_hidden.weight");
    add(tb, INIT_NORM_ZC, S(H), "mtp.norm.weight");
    add(tb, INIT_NORM_ZC, S(H), "mtp.layers.0.input_layernorm.weight");
    add(tb, INIT_NORM_ZC, S(H), "mtp.layers.0.post_attention_layernorm.weight");
    add_attention(tb, p, "mtp.layers.0.");
    add_mlp(tb, p, o, "mtp.layers.0.");
}

static void build_vision(table *tb, const shapes *p)
{
    const int64_t Vh = p->v_hidden, Vi = p->v_inter, M2 = 4, Ho = p->hidden;
    add(tb, INIT_LINEAR, S(Vh, 3, 2, 16, 16), VIS "patch_embed.proj.weight");
    add(tb, INIT_BIAS, S(Vh), VIS "patch_embed.proj.bias");
    add(tb, INIT_EMBED, S(p->v_npos, Vh), VIS "pos_embed.weight");
    for (int b = 0; b < p->v_depth; b++) {
        char pre[64];
        snprintf(pre, sizeof pre, VIS "blocks.%d.", b);
        add(tb, INIT_ONES, S(Vh), "%snorm1.weight", pre);
        add(tb, INIT_BIAS, S(Vh), "%snorm1.bias", pre);
        add(tb, INIT_LINEAR, S(3 * Vh, Vh), "%sattn.qkv.weight", pre);
        add(tb, INIT_BIAS, S(3 * Vh), "%sattn.qkv.bias", pre);
        add(tb, INIT_LINEAR, S(Vh, Vh), "%sattn.proj.weight", pre);
        add(tb, INIT_BIAS, S(Vh), "%sattn.proj.bias", pre);
        add(tb, INIT_ONES, S(Vh), "%snorm2.weight", pre);
        add(tb, INIT_BIAS, S(Vh), "%snorm2.bias", pre);
        add(tb, INIT_LINEAR, S(Vi, Vh), "%smlp.linear_fc1.weight", pre);
        add(tb, INIT_BIAS, S(Vi), "%smlp.linear_fc1.bias", pre);
        add(tb, INIT_LINEAR, S(Vh, Vi), "%smlp.linear_fc2.weight", pre);
        add(tb, INIT_BIAS, S(Vh), "%smlp.linear_fc2.bias", pre);
    }
    add(tb, INIT_ONES, S(Vh), VIS "merger.norm.weight");
    add(tb, INIT_BIAS, S(Vh), VIS "merger.norm.bias");
    add(tb, INIT_LINEAR, S(M2 * Vh, M2 * Vh), VIS "merger.linear_fc1.weight");
    add(tb, INIT_BIAS, S(M2 * Vh), VIS "merger.linear_fc1.bias");
    add(tb, INIT_LINEAR, S(Ho, M2 * Vh), VIS "merger.linear_fc2.weight");
    add(tb, INIT_BIAS, S(Ho), VIS "merger.linear_fc2.bias");
}

#undef S

/* Storage dtypes and the half-widths of the published presets' distributions (sqrt and
 * division are correctly rounded in IEEE 754, so these are the same everywhere). */
static void finish_table(table *tb, const shapes *p, const lc_synth_opts *o)
{
    for (int i = 0; i < tb->n; i++) {
        tensor *t = &tb->t[i];
        t->dt = o->dtype;
        if (!p->published)
            continue;
        /* as published: the GDN decay and the GDN gated-norm weight are float32 */
        if (t->init == INIT_A_LOG || strstr(t->name, "linear_attn.norm.weight"))
            t->dt = LC_SYNTH_F32;
        switch (t->init) {
        case INIT_LINEAR:
            t->half = sqrt(3.0 / t->fan_in);
            break;
        case INIT_EMBED:
            t->half = sqrt(3.0) * 0.02;
            break;
        case INIT_TOKEN:
            t->half = sqrt(3.0) * p->embed_std;
            break;
        case INIT_HEAD:
            t->half = sqrt(3.0) * p->head_std;
            break;
        default:
            t->half = 0;
        }
    }
}

/* Assigns tensors to shards in order: each shard takes tensors until it holds its share of
 * the bytes still unassigned, and every shard gets at least one tensor (needs n >= shards). */
static void assign_shards(table *tb, int shards)
{
    int64_t left = 0;
    for (int i = 0; i < tb->n; i++)
        left += tensor_bytes(&tb->t[i]);
    int s = 0;
    int64_t in = 0;
    for (int i = 0; i < tb->n; i++) {
        tensor *t = &tb->t[i];
        t->shard = s;
        t->begin = in;
        in += tensor_bytes(t);
        int shards_after = shards - 1 - s, tensors_after = tb->n - 1 - i;
        if (shards_after > 0 && (tensors_after == shards_after || in * (shards - s) >= left)) {
            left -= in;
            in = 0;
            s++;
        }
    }
}

static int check_opts(const lc_synth_opts *o, lc_error *err)
{
    if (!o)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: no options given");
    if ((int)o->preset < 0 || o->preset >= LC_SYNTH_PRESET_COUNT)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: preset %d is not one of tiny, small, medium, "
                       "qwen3.5-0.8b, qwen3.5-4b-l4, qwen3.5-35b-a3b-l2", (int)o->preset);
    if ((int)o->dtype < 0 || o->dtype >= LC_SYNTH_DTYPE_COUNT)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: dtype %d is not one of f32, bf16", (int)o->dtype);
    if (o->moe != 0 && o->moe != 1)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: moe must be 0 or 1, found %d", o->moe);
    if (o->shards < 1 || o->shards > 99999)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: shards must be in [1, 99999], found %d", o->shards);
    return 0;
}

/* Validates the options and builds the table (of the effective options *e) with shards
 * assigned. */
static int build_table(table *tb, const lc_synth_opts *o, lc_synth_opts *e, lc_error *err)
{
    memset(tb, 0, sizeof *tb);
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    *e = effective(o);
    const shapes *p = &presets[e->preset];
    build_text(tb, p, e);
    build_vision(tb, p);
    if (p->published)
        build_mtp(tb, p, e);
    if (tb->failed) {
        table_free(tb);
        return lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory for the tensor table");
    }
    if (e->shards > tb->n) {
        int n = tb->n;
        table_free(tb);
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: %d shards requested but the %s %s preset has only %d tensors",
                          e->shards, preset_names[e->preset], e->moe ? "MoE" : "dense", n);
    }
    finish_table(tb, p, e);
    assign_shards(tb, e->shards);
    return 0;
}

/* ---------------------------------------------------------------- values */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t name_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 0x100000001b3ULL;
    return mix64(h ^ mix64(seed));
}

/* 24 random bits of element i: a multiple of 2^-24 in [0, 1), exact in a double. */
static double unit(uint64_t key, int64_t i)
{
    return (double)(mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL) >> 40) * 0x1p-24;
}

/* Element i of the tensor whose key is `key`, as a float (legacy presets). */
static float value(const tensor *t, uint64_t key, int64_t i)
{
    double u = unit(key, i);
    switch (t->init) {
    case INIT_LINEAR:
    case INIT_HEAD:
        return (float)((2 * u - 1) * sqrt(3.0 / t->fan_in));
    case INIT_EMBED:
    case INIT_TOKEN:
        return (float)((2 * u - 1) * sqrt(3.0) * 0.02);
    case INIT_NORM_ZC:
        return (float)((2 * u - 1) * 0.1);
    case INIT_ONES:
        return (float)(1 + (2 * u - 1) * 0.1);
    case INIT_BIAS:
        return (float)((2 * u - 1) * 0.02);
    case INIT_A_LOG:
        return (float)log(1 + 15 * u);
    default: /* INIT_DT_BIAS */
        return (float)(0.5 + u);
    }
}

/* Element i, published presets: one or two correctly rounded operations on exact operands
 * (2u - 1 is exact), no library call. */
static double value_exact(const tensor *t, uint64_t key, int64_t i)
{
    const double u = unit(key, i), x = 2 * u - 1;
    switch (t->init) {
    case INIT_LINEAR:
    case INIT_EMBED:
    case INIT_TOKEN:
    case INIT_HEAD:
        return x * t->half;
    case INIT_NORM_ZC:
        return x * 0.1;
    case INIT_ONES:
        return 1 + x * 0.1;
    case INIT_BIAS:
        return x * 0.02;
    case INIT_A_LOG:
        return u * 2.772588722239781; /* ln 16 */
    default: /* INIT_DT_BIAS */
        return 0.5 + u;
    }
}

/* float -> bfloat16 bits, round to nearest even (values are finite) */
static uint16_t to_bf16(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

/* double -> bfloat16 bits in one rounding (nearest, ties to even), by integer operations on
 * the double's bits: keep 7 of the 52 fraction bits (a carry moves into the exponent as it
 * should), then the value has 8 significant bits and converts to float exactly. Values are
 * finite and within float's normal range or zero. */
static uint16_t bf16_of_double(double v)
{
    uint64_t b;
    memcpy(&b, &v, 8);
    b += (UINT64_C(1) << 44) - 1 + ((b >> 45) & 1);
    b &= ~((UINT64_C(1) << 45) - 1);
    memcpy(&v, &b, 8);
    float f = (float)v;
    uint32_t fb;
    memcpy(&fb, &f, 4);
    return (uint16_t)(fb >> 16);
}

/* ---------------------------------------------------------------- files */

/* Every byte of a file goes through a sink: into the file (f, NULL when only hashing) and
 * into its SHA-256. */
typedef struct {
    FILE *f;
    lc_sha256 sha;
} sink;

static int sink_put(sink *s, const void *p, size_t n)
{
    lc_sha256_update(&s->sha, p, n);
    return !s->f || fwrite(p, 1, n, s->f) == n;
}

/* The files of a checkpoint and their digests, for the checkpoint hash. */
#define MAX_FILES 64
typedef struct {
    char name[MAX_FILES][64];
    uint8_t digest[MAX_FILES][32];
    int n;
} manifest;

typedef int (*write_fn)(sink *s, const char *path, void *ctx, lc_error *err);

/* Writes DIR/NAME through fn: into DIR/.NAME.XXXXXX, renamed to DIR/NAME when complete; with
 * dir NULL nothing is written and only the digest is taken. The digest lands in m (if not
 * NULL). */
static int write_atomic(const char *dir, const char *name, write_fn fn, void *ctx, manifest *m, lc_error *err)
{
    char final[4200], tmp[4200];
    sink s = {0};
    lc_sha256_init(&s.sha);
    int rc = 0;
    if (m && m->n == MAX_FILES)
        return lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: more than %d files", MAX_FILES);
    if (!dir) {
        snprintf(final, sizeof final, "%s", name);
        rc = fn(&s, final, ctx, err);
    } else {
        if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
            snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, name) >= (int)sizeof tmp)
            return lc_fail(err, LC_EINPUT, "%s: directory path too long", dir);
        int fd = mkstemp(tmp);
        if (fd < 0)
            return lc_fail(err, LC_EINPUT, "%s: cannot create a temporary file: %s", dir, strerror(errno));
        (void)fchmod(fd, 0644);
        s.f = fdopen(fd, "wb");
        if (!s.f) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return lc_fail(err, LC_EINTERNAL, "%s: cannot open a stream: %s", tmp, strerror(e));
        }
        rc = fn(&s, final, ctx, err);
        if (!rc && ferror(s.f))
            rc = lc_fail(err, LC_EINPUT, "%s: write failed: %s", final, strerror(errno));
        if (fclose(s.f) != 0 && !rc)
            rc = lc_fail(err, LC_EINPUT, "%s: write failed: %s", final, strerror(errno));
        if (!rc && rename(tmp, final) != 0)
            rc = lc_fail(err, LC_EINPUT, "%s: cannot rename the temporary file: %s", final, strerror(errno));
        if (rc)
            unlink(tmp);
    }
    if (!rc && m) {
        snprintf(m->name[m->n], sizeof m->name[m->n], "%s", name);
        lc_sha256_final(&s.sha, m->digest[m->n]);
        m->n++;
    }
    return rc;
}

static int write_json(sink *s, const char *path, void *ctx, lc_error *err)
{
    char *text = cJSON_Print((const cJSON *)ctx);
    if (!text)
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory printing JSON", path);
    int ok = sink_put(s, text, strlen(text)) && sink_put(s, "\n", 1);
    free(text);
    return ok ? 0 : lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, strerror(errno));
}

/* The safetensors header of one shard, padded with spaces to a multiple of 8 bytes after the
 * 8-byte length. Returns a malloc'ed string (caller frees) or NULL when out of memory. */
static char *shard_header(const table *tb, int shard, size_t *len)
{
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!h || !meta || !cJSON_AddStringToObject(meta, "format", "pt")) {
        cJSON_Delete(h);
        cJSON_Delete(meta);
        return NULL;
    }
    cJSON_AddItemToObject(h, "__metadata__", meta);
    int ok = 1;
    for (int i = 0; ok && i < tb->n; i++) {
        const tensor *t = &tb->t[i];
        if (t->shard != shard)
            continue;
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *off = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = e && shape && off && cJSON_AddStringToObject(e, "dtype", t->dt == LC_SYNTH_BF16 ? "BF16" : "F32");
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        int64_t end = t->begin + tensor_bytes(t);
        ok = ok && cJSON_AddItemToArray(off, cJSON_CreateNumber((double)t->begin)) &&
             cJSON_AddItemToArray(off, cJSON_CreateNumber((double)end));
    }
    char *text = ok ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    if (!text)
        return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *buf = realloc(text, padded + 1);
    if (!buf) {
        free(text);
        return NULL;
    }
    memset(buf + n, ' ', padded - n);
    buf[padded] = '\0';
    *len = padded;
    return buf;
}

typedef struct {
    const table *tb;
    const lc_synth_opts *o;
    int shard;
    const char *header;
    size_t header_len;
} shard_ctx;

#define CHUNK 16384

static int write_shard(sink *s, const char *path, void *vctx, lc_error *err)
{
    const shard_ctx *c = vctx;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)c->header_len >> (8 * i));
    if (!sink_put(s, len, 8) || !sink_put(s, c->header, c->header_len))
        return lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, strerror(errno));
    _Static_assert(sizeof(float) == 4, "F32 tensors are written from float");
    uint8_t buf[CHUNK * 4];
    const int published = presets[c->o->preset].published;
    for (int i = 0; i < c->tb->n; i++) {
        const tensor *t = &c->tb->t[i];
        if (t->shard != c->shard)
            continue;
        const int bf16 = t->dt == LC_SYNTH_BF16;
        uint64_t key = name_key(c->o->seed, t->name);
        for (int64_t s0 = 0; s0 < t->count; s0 += CHUNK) {
            int64_t m = t->count - s0 < CHUNK ? t->count - s0 : CHUNK;
            for (int64_t j = 0; j < m; j++) {
                if (bf16) {
                    uint16_t b = published ? bf16_of_double(value_exact(t, key, s0 + j)) : to_bf16(value(t, key, s0 + j));
                    buf[2 * j] = (uint8_t)b;
                    buf[2 * j + 1] = (uint8_t)(b >> 8);
                } else {
                    float v = published ? (float)value_exact(t, key, s0 + j) : value(t, key, s0 + j);
                    uint32_t b;
                    memcpy(&b, &v, 4);
                    for (int k = 0; k < 4; k++)
                        buf[4 * j + k] = (uint8_t)(b >> (8 * k)); /* little-endian, as safetensors */
                }
            }
            size_t bytes = (size_t)m * (bf16 ? 2 : 4);
            if (!sink_put(s, buf, bytes))
                return lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, strerror(errno));
        }
    }
    return 0;
}

static void shard_name(char *buf, size_t len, const lc_synth_opts *o, int shard, int shards)
{
    if (presets[o->preset].published)
        snprintf(buf, len, "model.safetensors-%05d-of-%05d.safetensors", shard + 1, shards);
    else if (shards == 1)
        snprintf(buf, len, "model.safetensors");
    else
        snprintf(buf, len, "model-%05d-of-%05d.safetensors", shard + 1, shards);
}

/* ---------------------------------------------------------------- config.json */

static cJSON *make_config_legacy(const lc_synth_opts *o)
{
    const shapes *p = &presets[o->preset];
    const char *mt = o->moe ? "qwen3_5_moe" : "qwen3_5";
    char buf[64];
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(o->moe ? "Qwen3_5MoeForConditionalGeneration"
                                                         : "Qwen3_5ForConditionalGeneration"));
    cJSON_AddStringToObject(root, "dtype", o->dtype == LC_SYNTH_BF16 ? "bfloat16" : "float32");
    cJSON_AddStringToObject(root, "model_type", mt);
    cJSON_AddNumberToObject(root, "image_token_id", p->image);
    cJSON_AddNumberToObject(root, "video_token_id", p->video);
    cJSON_AddNumberToObject(root, "vision_start_token_id", p->vstart);
    cJSON_AddNumberToObject(root, "vision_end_token_id", p->vend);
    cJSON_AddBoolToObject(root, "tie_word_embeddings", p->tie);

    cJSON *t = cJSON_AddObjectToObject(root, "text_config");
    snprintf(buf, sizeof buf, "%s_text", mt);
    cJSON_AddStringToObject(t, "model_type", buf);
    cJSON_AddNumberToObject(t, "vocab_size", p->vocab);
    cJSON_AddNumberToObject(t, "hidden_size", p->hidden);
    if (!o->moe)
        cJSON_AddNumberToObject(t, "intermediate_size", p->inter);
    cJSON_AddNumberToObject(t, "num_hidden_layers", p->layers);
    cJSON *lt = cJSON_AddArrayToObject(t, "layer_types");
    for (int l = 0; l < p->layers; l++)
        cJSON_AddItemToArray(lt, cJSON_CreateString(is_linear_layer(p, l) ? "linear_attention" : "full_attention"));
    cJSON_AddNumberToObject(t, "num_attention_heads", p->heads);
    cJSON_AddNumberToObject(t, "num_key_value_heads", p->kv_heads);
    cJSON_AddNumberToObject(t, "head_dim", p->head_dim);
    cJSON_AddNumberToObject(t, "linear_num_key_heads", p->k_heads);
    cJSON_AddNumberToObject(t, "linear_num_value_heads", p->v_heads);
    cJSON_AddNumberToObject(t, "linear_key_head_dim", p->k_dim);
    cJSON_AddNumberToObject(t, "linear_value_head_dim", p->v_dim);
    cJSON_AddNumberToObject(t, "linear_conv_kernel_dim", p->conv);
    if (o->moe) {
        cJSON_AddNumberToObject(t, "num_experts", p->experts);
        cJSON_AddNumberToObject(t, "num_experts_per_tok", p->topk);
        cJSON_AddNumberToObject(t, "moe_intermediate_size", p->moe_inter);
        cJSON_AddNumberToObject(t, "shared_expert_intermediate_size", p->shared_inter);
    }
    cJSON_AddStringToObject(t, "hidden_act", "silu");
    cJSON_AddBoolToObject(t, "attention_bias", 0);
    cJSON_AddNumberToObject(t, "rms_norm_eps", 1e-6);
    cJSON_AddNumberToObject(t, "max_position_embeddings", 32768);
    cJSON_AddBoolToObject(t, "tie_word_embeddings", p->tie);
    cJSON *rp = cJSON_AddObjectToObject(t, "rope_parameters");
    cJSON_AddStringToObject(rp, "rope_type", "default");
    cJSON_AddNumberToObject(rp, "rope_theta", 10000000.0);
    cJSON_AddNumberToObject(rp, "partial_rotary_factor", 0.25);
    cJSON_AddBoolToObject(rp, "mrope_interleaved", 1);
    cJSON_AddItemToObject(rp, "mrope_section", cJSON_CreateIntArray(p->mrope, 3));

    cJSON *v = cJSON_AddObjectToObject(root, "vision_config");
    snprintf(buf, sizeof buf, "%s_vision", mt);
    cJSON_AddStringToObject(v, "model_type", buf);
    cJSON_AddNumberToObject(v, "depth", p->v_depth);
    cJSON_AddNumberToObject(v, "hidden_size", p->v_hidden);
    cJSON_AddNumberToObject(v, "intermediate_size", p->v_inter);
    cJSON_AddNumberToObject(v, "num_heads", p->vis_heads);
    cJSON_AddNumberToObject(v, "in_channels", 3);
    cJSON_AddNumberToObject(v, "patch_size", 16);
    cJSON_AddNumberToObject(v, "temporal_patch_size", 2);
    cJSON_AddNumberToObject(v, "spatial_merge_size", 2);
    cJSON_AddNumberToObject(v, "out_hidden_size", p->hidden);
    cJSON_AddNumberToObject(v, "num_position_embeddings", p->v_npos);
    cJSON_AddStringToObject(v, "hidden_act", "gelu_pytorch_tanh");
    cJSON *vrp = cJSON_AddObjectToObject(v, "rope_parameters");
    cJSON_AddStringToObject(vrp, "rope_type", "axial");
    cJSON_AddNumberToObject(vrp, "rope_theta", 10000.0);
    /* any failed allocation above leaves a NULL parent or a missing member: check the leaves */
    if (!cJSON_GetObjectItemCaseSensitive(root, "vision_config") || !vrp ||
        !cJSON_GetObjectItemCaseSensitive(vrp, "rope_theta") || !rp ||
        !cJSON_GetObjectItemCaseSensitive(rp, "mrope_section") || !lt ||
        cJSON_GetArraySize(lt) != p->layers) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* config.json of a published preset: the key set and order of the published Qwen3.5 files
 * (keys sorted, as transformers writes them), with this preset's sizes. */
static cJSON *make_config_published(const lc_synth_opts *o)
{
    const shapes *p = &presets[o->preset];
    const char *mt = p->moe ? "qwen3_5_moe" : "qwen3_5";
    char buf[64];
    int ok = 1;
#define N(obj, k, v) (ok = ok && cJSON_AddNumberToObject(obj, k, v) != NULL)
#define B(obj, k, v) (ok = ok && cJSON_AddBoolToObject(obj, k, v) != NULL)
#define T(obj, k, v) (ok = ok && cJSON_AddStringToObject(obj, k, v) != NULL)
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    ok = arch && cJSON_AddItemToArray(arch, cJSON_CreateString(p->moe ? "Qwen3_5MoeForConditionalGeneration"
                                                                     : "Qwen3_5ForConditionalGeneration"));
    N(root, "image_token_id", p->image);
    B(root, "language_model_only", 0);
    T(root, "model_type", mt);

    cJSON *t = cJSON_AddObjectToObject(root, "text_config");
    ok = ok && t;
    B(t, "attention_bias", 0);
    N(t, "attention_dropout", 0.0);
    B(t, "attn_output_gate", 1);
    N(t, "bos_token_id", p->bos);
    T(t, "dtype", "bfloat16");
    N(t, "eos_token_id", p->bos);
    N(t, "full_attention_interval", p->full_interval);
    N(t, "head_dim", p->head_dim);
    T(t, "hidden_act", "silu");
    N(t, "hidden_size", p->hidden);
    N(t, "initializer_range", 0.02);
    if (!p->moe)
        N(t, "intermediate_size", p->inter);
    cJSON *lt = cJSON_AddArrayToObject(t, "layer_types");
    ok = ok && lt;
    for (int l = 0; ok && l < p->layers; l++)
        ok = cJSON_AddItemToArray(lt, cJSON_CreateString(is_linear_layer(p, l) ? "linear_attention" : "full_attention"));
    N(t, "linear_conv_kernel_dim", p->conv);
    N(t, "linear_key_head_dim", p->k_dim);
    N(t, "linear_num_key_heads", p->k_heads);
    N(t, "linear_num_value_heads", p->v_heads);
    N(t, "linear_value_head_dim", p->v_dim);
    T(t, "mamba_ssm_dtype", "float32");
    N(t, "max_position_embeddings", 262144);
    snprintf(buf, sizeof buf, "%s_text", mt);
    T(t, "model_type", buf);
    if (p->moe)
        N(t, "moe_intermediate_size", p->moe_inter);
    N(t, "mtp_num_hidden_layers", 1);
    B(t, "mtp_use_dedicated_embeddings", 0);
    N(t, "num_attention_heads", p->heads);
    if (p->moe) {
        N(t, "num_experts", p->experts);
        N(t, "num_experts_per_tok", p->topk);
    }
    N(t, "num_hidden_layers", p->layers);
    N(t, "num_key_value_heads", p->kv_heads);
    if (p->moe)
        B(t, "output_router_logits", 0);
    ok = ok && cJSON_AddNullToObject(t, "pad_token_id");
    N(t, "partial_rotary_factor", 0.25);
    N(t, "rms_norm_eps", 1e-6);
    cJSON *rp = cJSON_AddObjectToObject(t, "rope_parameters");
    ok = ok && rp;
    B(rp, "mrope_interleaved", 1);
    ok = ok && cJSON_AddItemToObject(rp, "mrope_section", cJSON_CreateIntArray(p->mrope, 3));
    N(rp, "partial_rotary_factor", 0.25);
    N(rp, "rope_theta", 10000000);
    T(rp, "rope_type", "default");
    if (p->moe) {
        N(t, "router_aux_loss_coef", 0.001);
        N(t, "shared_expert_intermediate_size", p->shared_inter);
    }
    B(t, "tie_word_embeddings", p->tie);
    B(t, "use_cache", 1);
    N(t, "vocab_size", p->vocab);

    B(root, "tie_word_embeddings", p->tie);
    T(root, "transformers_version", "5.17.0");
    N(root, "video_token_id", p->video);
    cJSON *v = cJSON_AddObjectToObject(root, "vision_config");
    ok = ok && v && cJSON_AddArrayToObject(v, "deepstack_visual_indexes");
    N(v, "depth", p->v_depth);
    T(v, "hidden_act", "gelu_pytorch_tanh");
    N(v, "hidden_size", p->v_hidden);
    N(v, "in_channels", 3);
    N(v, "initializer_range", 0.02);
    N(v, "intermediate_size", p->v_inter);
    T(v, "model_type", mt);
    N(v, "num_heads", p->vis_heads);
    N(v, "num_position_embeddings", p->v_npos);
    N(v, "out_hidden_size", p->hidden);
    N(v, "patch_size", 16);
    N(v, "spatial_merge_size", 2);
    N(v, "temporal_patch_size", 2);
    N(root, "vision_end_token_id", p->vend);
    N(root, "vision_start_token_id", p->vstart);
#undef N
#undef B
#undef T
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* preprocessor_config.json as published for Qwen3.5: the Qwen2-VL-family processor, patch 16,
 * temporal patch 2, merge 2, mean/std 0.5, resize bounds 65536 / 16777216 pixels. */
static cJSON *make_preprocessor(void)
{
    static const double half[3] = {0.5, 0.5, 0.5};
    cJSON *root = cJSON_CreateObject();
    cJSON *size = cJSON_AddObjectToObject(root, "size");
    int ok = root && size && cJSON_AddNumberToObject(size, "longest_edge", 16777216) &&
             cJSON_AddNumberToObject(size, "shortest_edge", 65536) &&
             cJSON_AddNumberToObject(root, "patch_size", 16) &&
             cJSON_AddNumberToObject(root, "temporal_patch_size", 2) &&
             cJSON_AddNumberToObject(root, "merge_size", 2) &&
             cJSON_AddItemToObject(root, "image_mean", cJSON_CreateDoubleArray(half, 3)) &&
             cJSON_AddItemToObject(root, "image_std", cJSON_CreateDoubleArray(half, 3)) &&
             cJSON_AddStringToObject(root, "processor_class", "Qwen3VLProcessor") &&
             cJSON_AddStringToObject(root, "image_processor_type", "Qwen2VLImageProcessorFast");
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static int check_dir(const char *dir, lc_error *err)
{
    struct stat st;
    if (!dir)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: no directory given");
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lc_fail(err, LC_EINPUT, "%s: not an existing directory", dir);
    return 0;
}

/* config.json (and preprocessor_config.json for a published preset) into dir (NULL: only
 * hashed). */
static int emit_configs(const char *dir, const lc_synth_opts *e, manifest *m, lc_error *err)
{
    const char *where = dir ? dir : "synthetic checkpoint";
    cJSON *cfg = presets[e->preset].published ? make_config_published(e) : make_config_legacy(e);
    if (!cfg)
        return lc_fail(err, LC_EINTERNAL, "%s/config.json: out of memory", where);
    int rc = write_atomic(dir, "config.json", write_json, cfg, m, err);
    cJSON_Delete(cfg);
    if (rc || !presets[e->preset].published)
        return rc;
    cJSON *pp = make_preprocessor();
    if (!pp)
        return lc_fail(err, LC_EINTERNAL, "%s/preprocessor_config.json: out of memory", where);
    rc = write_atomic(dir, "preprocessor_config.json", write_json, pp, m, err);
    cJSON_Delete(pp);
    return rc;
}

int lc_synth_write_config(const char *dir, const lc_synth_opts *o, lc_error *err)
{
    int rc = check_opts(o, err);
    if (rc || (rc = check_dir(dir, err)))
        return rc;
    lc_synth_opts e = effective(o);
    return emit_configs(dir, &e, NULL, err);
}

/* ---------------------------------------------------------------- plan and write */

static int fill_info(const table *tb, const lc_synth_opts *e, lc_synth_info *info, lc_error *err)
{
    memset(info, 0, sizeof *info);
    info->tensors = tb->n;
    info->files = e->shards;
    for (int i = 0; i < tb->n; i++) {
        info->params += tb->t[i].count;
        info->weight_bytes += tensor_bytes(&tb->t[i]);
        if (strncmp(tb->t[i].name, "mtp.", 4) != 0)
            info->loaded_params += tb->t[i].count;
    }
    info->file_bytes = info->weight_bytes;
    for (int s = 0; s < e->shards; s++) {
        size_t len;
        char *h = shard_header(tb, s, &len);
        if (!h)
            return lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory for a header");
        free(h);
        info->file_bytes += 8 + (int64_t)len;
    }
    return 0;
}

int lc_synth_plan(const lc_synth_opts *o, lc_synth_info *info, lc_error *err)
{
    table tb;
    lc_synth_opts e;
    int rc = build_table(&tb, o, &e, err);
    if (!rc)
        rc = fill_info(&tb, &e, info, err);
    table_free(&tb);
    return rc;
}

static int write_index(const char *dir, const table *tb, const lc_synth_opts *e, const lc_synth_info *info,
                       manifest *m, lc_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    int ok = meta && map;
    if (ok && presets[e->preset].published)
        ok = cJSON_AddNumberToObject(meta, "total_parameters", (double)info->params) != NULL;
    ok = ok && cJSON_AddNumberToObject(meta, "total_size", (double)info->weight_bytes);
    for (int i = 0; ok && i < tb->n; i++) {
        char name[64];
        shard_name(name, sizeof name, e, tb->t[i].shard, e->shards);
        ok = cJSON_AddStringToObject(map, tb->t[i].name, name) != NULL;
    }
    int rc = ok ? write_atomic(dir, "model.safetensors.index.json", write_json, root, m, err)
                : lc_fail(err, LC_EINTERNAL, "model.safetensors.index.json: out of memory");
    cJSON_Delete(root);
    return rc;
}

/* Every file of the checkpoint into dir (NULL: only hashed), digests into m. */
static int emit_checkpoint(const char *dir, const lc_synth_opts *o, lc_synth_info *info, manifest *m, lc_error *err)
{
    table tb;
    lc_synth_opts e;
    lc_synth_info local;
    int rc = build_table(&tb, o, &e, err);
    if (rc)
        return rc;
    if (!info)
        info = &local;
    if ((rc = fill_info(&tb, &e, info, err)))
        goto done;
    for (int s = 0; s < e.shards && !rc; s++) {
        shard_ctx c = {.tb = &tb, .o = &e, .shard = s};
        char *h = shard_header(&tb, s, &c.header_len);
        if (!h) {
            rc = lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory for a header");
            break;
        }
        c.header = h;
        char name[64];
        shard_name(name, sizeof name, &e, s, e.shards);
        rc = write_atomic(dir, name, write_shard, &c, m, err);
        free(h);
    }
    if (!rc && (e.shards > 1 || presets[e.preset].published))
        rc = write_index(dir, &tb, &e, info, m, err);
    if (!rc)
        rc = emit_configs(dir, &e, m, err);
done:
    table_free(&tb);
    return rc;
}

int lc_synth_write(const char *dir, const lc_synth_opts *o, lc_synth_info *info, lc_error *err)
{
    int rc = check_dir(dir, err);
    return rc ? rc : emit_checkpoint(dir, o, info, NULL, err);
}

/* ---------------------------------------------------------------- the checkpoint hash */

/* SHA-256 of the manifest text: for each file in bytewise name order, the file's SHA-256 in
 * lowercase hex, two spaces, its name, a newline (what `sha256sum` prints). */
static void manifest_hash(const manifest *m, char hex[65])
{
    int order[MAX_FILES];
    for (int i = 0; i < m->n; i++) { /* insertion sort by name (a few files) */
        int j = i;
        for (; j > 0 && strcmp(m->name[order[j - 1]], m->name[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    lc_sha256 s;
    lc_sha256_init(&s);
    for (int i = 0; i < m->n; i++) {
        const int k = order[i];
        char h[65];
        lc_sha256_hex(m->digest[k], h);
        lc_sha256_update(&s, h, 64);
        lc_sha256_update(&s, "  ", 2);
        lc_sha256_update(&s, m->name[k], strlen(m->name[k]));
        lc_sha256_update(&s, "\n", 1);
    }
    uint8_t d[32];
    lc_sha256_final(&s, d);
    lc_sha256_hex(d, hex);
}

int lc_synth_hash(const lc_synth_opts *o, lc_synth_info *info, char hex[65], lc_error *err)
{
    manifest *m = calloc(1, sizeof *m);
    if (!m)
        return lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory");
    int rc = emit_checkpoint(NULL, o, info, m, err);
    if (!rc)
        manifest_hash(m, hex);
    free(m);
    return rc;
}

void lc_synth_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[4400];
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

int lc_synth_write_checkpoint(const char *out, const lc_synth_opts *o, lc_synth_info *info, char hex[65],
                              lc_error *err)
{
    struct stat st;
    if (!out || !*out)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: no output directory given");
    if (stat(out, &st) == 0)
        return lc_fail(err, LC_EINPUT, "%s: already exists (the checkpoint is written to a new directory)", out);
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.partial-XXXXXX", out) >= (int)sizeof tmp)
        return lc_fail(err, LC_EINPUT, "%s: path too long", out);
    if (!mkdtemp(tmp))
        return lc_fail(err, LC_EINPUT, "%s: cannot create a temporary directory beside it: %s", out, strerror(errno));
    (void)chmod(tmp, 0755);
    manifest *m = calloc(1, sizeof *m);
    if (!m) {
        rmdir(tmp);
        return lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory");
    }
    rc = emit_checkpoint(tmp, o, info, m, err);
    if (!rc)
        manifest_hash(m, hex);
    if (!rc && rename(tmp, out) != 0)
        rc = lc_fail(err, LC_EINPUT, "%s: cannot rename %s to it: %s", out, tmp, strerror(errno));
    if (rc)
        lc_synth_remove_dir(tmp);
    free(m);
    return rc;
}

int lc_synth_dir_hash(const char *dir, char hex[65], lc_error *err)
{
    int rc = check_dir(dir, err);
    if (rc)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return lc_fail(err, LC_EINPUT, "%s: cannot open: %s", dir, strerror(errno));
    manifest *m = calloc(1, sizeof *m);
    uint8_t *buf = malloc(1 << 20);
    if (!m || !buf) {
        closedir(d);
        free(m);
        free(buf);
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory", dir);
    }
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[4400];
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p || stat(p, &st) != 0) {
            rc = lc_fail(err, LC_EINPUT, "%s/%s: cannot stat", dir, e->d_name);
            break;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        if (m->n == MAX_FILES || strlen(e->d_name) >= sizeof m->name[0]) {
            rc = lc_fail(err, LC_EINPUT, "%s: more than %d files or a file name over 63 characters", dir, MAX_FILES);
            break;
        }
        FILE *f = fopen(p, "rb");
        if (!f) {
            rc = lc_fail(err, LC_EINPUT, "%s: cannot open: %s", p, strerror(errno));
            break;
        }
        lc_sha256 s;
        lc_sha256_init(&s);
        size_t n;
        while ((n = fread(buf, 1, 1 << 20, f)) > 0)
            lc_sha256_update(&s, buf, n);
        if (ferror(f))
            rc = lc_fail(err, LC_EINPUT, "%s: read failed", p);
        fclose(f);
        memcpy(m->name[m->n], e->d_name, strlen(e->d_name) + 1); /* length checked above */
        lc_sha256_final(&s, m->digest[m->n]);
        m->n++;
    }
    closedir(d);
    if (!rc && m->n == 0)
        rc = lc_fail(err, LC_EINPUT, "%s: no files to hash", dir);
    if (!rc)
        manifest_hash(m, hex);
    free(m);
    free(buf);
    return rc;
}
