/*
 * Synthetic Qwen3.5 checkpoints: a preset's shapes -> a tensor table (names as transformers
 * writes them) -> config.json + safetensors files written tensor by tensor from a small
 * buffer, each file under a temporary name and renamed when complete.
 *
 * Weights come from a counter-based generator: element i of tensor NAME is a function of
 * (seed, hash(NAME), i) only, so shard count and dtype never change which value lands where.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

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
} shapes;

/* patch 16, temporal patch 2, merge 2, 3 channels, conv kernel 4 and 3:1 GDN:attention in all */
static const shapes presets[LC_SYNTH_PRESET_COUNT] = {
    [LC_SYNTH_TINY] = {.vocab = 1024, .hidden = 64, .inter = 128, .layers = 4,
                       .heads = 4, .kv_heads = 2, .head_dim = 64, .mrope = {3, 3, 2},
                       .k_heads = 2, .v_heads = 4, .k_dim = 16, .v_dim = 32, .conv = 4,
                       .experts = 8, .topk = 2, .moe_inter = 32, .shared_inter = 48, .tie = 0,
                       .vstart = 998, .vend = 999, .image = 1000, .video = 1001,
                       .v_depth = 2, .v_hidden = 48, .v_inter = 96, .vis_heads = 4, .v_npos = 36},
    [LC_SYNTH_SMALL] = {.vocab = 32000, .hidden = 512, .inter = 1536, .layers = 8,
                        .heads = 8, .kv_heads = 2, .head_dim = 128, .mrope = {6, 5, 5},
                        .k_heads = 4, .v_heads = 8, .k_dim = 128, .v_dim = 128, .conv = 4,
                        .experts = 8, .topk = 2, .moe_inter = 384, .shared_inter = 512, .tie = 0,
                        .vstart = 31990, .vend = 31991, .image = 31992, .video = 31993,
                        .v_depth = 2, .v_hidden = 128, .v_inter = 256, .vis_heads = 4, .v_npos = 64},
    [LC_SYNTH_MEDIUM] = {.vocab = 151936, .hidden = 1024, .inter = 2304, .layers = 24,
                         .heads = 8, .kv_heads = 2, .head_dim = 128, .mrope = {6, 5, 5},
                         .k_heads = 8, .v_heads = 16, .k_dim = 128, .v_dim = 128, .conv = 4,
                         .experts = 16, .topk = 4, .moe_inter = 96, .shared_inter = 768, .tie = 1,
                         .vstart = 151652, .vend = 151653, .image = 151655, .video = 151656,
                         .v_depth = 4, .v_hidden = 256, .v_inter = 1024, .vis_heads = 4, .v_npos = 256},
};

static const char *const preset_names[LC_SYNTH_PRESET_COUNT] = {"tiny", "small", "medium"};
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

/* ---------------------------------------------------------------- the tensor table */

/* How a tensor's values are drawn (uniform distributions):
 *   LINEAR   std 1/sqrt(fan_in), fan_in = every dim but the first (last dim for 3-D experts)
 *   EMBED    std 0.02 (embeddings, learned vision positions)
 *   NORM_ZC  (1 + w) norms: w in [-0.1, 0.1]
 *   ONES     plain-w norms (GDN gated norm, LayerNorm weights): w in [0.9, 1.1]
 *   BIAS     [-0.02, 0.02]
 *   A_LOG    log(a), a in [1, 16] (GDN decay)
 *   DT_BIAS  [0.5, 1.5] */
enum { INIT_LINEAR, INIT_EMBED, INIT_NORM_ZC, INIT_ONES, INIT_BIAS, INIT_A_LOG, INIT_DT_BIAS };

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[5];
    int64_t count;
    int init;
    double fan_in;
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

static void build_text(table *tb, const shapes *p, const lc_synth_opts *o)
{
    const int64_t H = p->hidden, V = p->vocab, D = p->head_dim, Hq = p->heads, Hkv = p->kv_heads;
    const int64_t Hk = p->k_heads, Hv = p->v_heads, Dk = p->k_dim, Dv = p->v_dim, K = p->conv;
    const int64_t C = 2 * Hk * Dk + Hv * Dv, F = p->inter, E = p->experts, I = p->moe_inter;
    const int64_t Is = p->shared_inter;

    add(tb, INIT_EMBED, S(V, H), LM "embed_tokens.weight");
    add(tb, INIT_NORM_ZC, S(H), LM "norm.weight");
    if (!p->tie)
        add(tb, INIT_LINEAR, S(V, H), "lm_head.weight");
    for (int l = 0; l < p->layers; l++) {
        char pre[64];
        snprintf(pre, sizeof pre, LM "layers.%d.", l);
        add(tb, INIT_NORM_ZC, S(H), "%sinput_layernorm.weight", pre);
        add(tb, INIT_NORM_ZC, S(H), "%spost_attention_layernorm.weight", pre);
        if ((l + 1) % 4 != 0) {
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
            add(tb, INIT_LINEAR, S(Hq * D * 2, H), "%sself_attn.q_proj.weight", pre);
            add(tb, INIT_LINEAR, S(Hkv * D, H), "%sself_attn.k_proj.weight", pre);
            add(tb, INIT_LINEAR, S(Hkv * D, H), "%sself_attn.v_proj.weight", pre);
            add(tb, INIT_LINEAR, S(H, Hq * D), "%sself_attn.o_proj.weight", pre);
            add(tb, INIT_NORM_ZC, S(D), "%sself_attn.q_norm.weight", pre);
            add(tb, INIT_NORM_ZC, S(D), "%sself_attn.k_norm.weight", pre);
        }
        if (!o->moe) {
            add(tb, INIT_LINEAR, S(F, H), "%smlp.gate_proj.weight", pre);
            add(tb, INIT_LINEAR, S(F, H), "%smlp.up_proj.weight", pre);
            add(tb, INIT_LINEAR, S(H, F), "%smlp.down_proj.weight", pre);
            continue;
        }
        add(tb, INIT_LINEAR, S(E, H), "%smlp.gate.weight", pre);
        add(tb, INIT_LINEAR, S(Is, H), "%smlp.shared_expert.gate_proj.weight", pre);
        add(tb, INIT_LINEAR, S(Is, H), "%smlp.shared_expert.up_proj.weight", pre);
        add(tb, INIT_LINEAR, S(H, Is), "%smlp.shared_expert.down_proj.weight", pre);
        add(tb, INIT_LINEAR, S(1, H), "%smlp.shared_expert_gate.weight", pre);
        if (o->fused_experts) {
            add(tb, INIT_LINEAR, S(E, 2 * I, H), "%smlp.experts.gate_up_proj", pre);
            add(tb, INIT_LINEAR, S(E, H, I), "%smlp.experts.down_proj", pre);
            continue;
        }
        for (int e = 0; e < E; e++) {
            add(tb, INIT_LINEAR, S(I, H), "%smlp.experts.%d.gate_proj.weight", pre, e);
            add(tb, INIT_LINEAR, S(I, H), "%smlp.experts.%d.up_proj.weight", pre, e);
            add(tb, INIT_LINEAR, S(H, I), "%smlp.experts.%d.down_proj.weight", pre, e);
        }
    }
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

static size_t dtype_size(lc_synth_dtype d) { return d == LC_SYNTH_BF16 ? 2 : 4; }

/* Assigns tensors to shards in order: each shard takes tensors until it holds its share of
 * the bytes still unassigned, and every shard gets at least one tensor (needs n >= shards). */
static void assign_shards(table *tb, int shards, size_t esize)
{
    int64_t left = 0;
    for (int i = 0; i < tb->n; i++)
        left += tb->t[i].count * (int64_t)esize;
    int s = 0;
    int64_t in = 0;
    for (int i = 0; i < tb->n; i++) {
        tensor *t = &tb->t[i];
        t->shard = s;
        t->begin = in;
        in += t->count * (int64_t)esize;
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
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: preset %d is not one of tiny, small, medium",
                          (int)o->preset);
    if ((int)o->dtype < 0 || o->dtype >= LC_SYNTH_DTYPE_COUNT)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: dtype %d is not one of f32, bf16", (int)o->dtype);
    if (o->moe != 0 && o->moe != 1)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: moe must be 0 or 1, found %d", o->moe);
    if (o->shards < 1 || o->shards > 99999)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: shards must be in [1, 99999], found %d", o->shards);
    return 0;
}

/* Validates the options and builds the table with shards assigned. */
static int build_table(table *tb, const lc_synth_opts *o, lc_error *err)
{
    memset(tb, 0, sizeof *tb);
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    const shapes *p = &presets[o->preset];
    build_text(tb, p, o);
    build_vision(tb, p);
    if (tb->failed) {
        table_free(tb);
        return lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory for the tensor table");
    }
    if (o->shards > tb->n) {
        int n = tb->n;
        table_free(tb);
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: %d shards requested but the %s %s preset has only %d tensors",
                          o->shards, preset_names[o->preset], o->moe ? "MoE" : "dense", n);
    }
    assign_shards(tb, o->shards, dtype_size(o->dtype));
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

/* Element i of the tensor whose key is `key`, as a float. */
static float value(const tensor *t, uint64_t key, int64_t i)
{
    double u = (double)(mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL) >> 40) * 0x1p-24; /* [0, 1) */
    switch (t->init) {
    case INIT_LINEAR:
        return (float)((2 * u - 1) * sqrt(3.0 / t->fan_in));
    case INIT_EMBED:
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

/* float -> bfloat16 bits, round to nearest even (values are finite) */
static uint16_t to_bf16(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

/* ---------------------------------------------------------------- files */

/* Writes `text` then renames: DIR/.NAME.XXXXXX -> DIR/NAME. The writer callback fills the
 * stream; it returns 0 or an error code with err filled. */
typedef int (*write_fn)(FILE *f, const char *path, void *ctx, lc_error *err);

static int write_atomic(const char *dir, const char *name, write_fn fn, void *ctx, lc_error *err)
{
    char final[4200], tmp[4200];
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, name) >= (int)sizeof tmp)
        return lc_fail(err, LC_EINPUT, "%s: directory path too long", dir);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot create a temporary file: %s", dir, strerror(errno));
    (void)fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return lc_fail(err, LC_EINTERNAL, "%s: cannot open a stream: %s", tmp, strerror(e));
    }
    int rc = fn(f, final, ctx, err);
    if (!rc && ferror(f))
        rc = lc_fail(err, LC_EINPUT, "%s: write failed: %s", final, strerror(errno));
    if (fclose(f) != 0 && !rc)
        rc = lc_fail(err, LC_EINPUT, "%s: write failed: %s", final, strerror(errno));
    if (!rc && rename(tmp, final) != 0)
        rc = lc_fail(err, LC_EINPUT, "%s: cannot rename the temporary file: %s", final, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

static int write_json(FILE *f, const char *path, void *ctx, lc_error *err)
{
    char *text = cJSON_Print((const cJSON *)ctx);
    if (!text)
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory printing JSON", path);
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    free(text);
    return ok ? 0 : lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, strerror(errno));
}

/* The safetensors header of one shard, padded with spaces to a multiple of 8 bytes after the
 * 8-byte length. Returns a malloc'ed string (caller frees) or NULL when out of memory. */
static char *shard_header(const table *tb, int shard, lc_synth_dtype dt, size_t *len)
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
        ok = e && shape && off && cJSON_AddStringToObject(e, "dtype", dt == LC_SYNTH_BF16 ? "BF16" : "F32");
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        int64_t end = t->begin + t->count * (int64_t)dtype_size(dt);
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

static int write_shard(FILE *f, const char *path, void *vctx, lc_error *err)
{
    const shard_ctx *c = vctx;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)c->header_len >> (8 * i));
    if (fwrite(len, 1, 8, f) != 8 || fwrite(c->header, 1, c->header_len, f) != c->header_len)
        return lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, strerror(errno));
    _Static_assert(sizeof(float) == 4, "F32 tensors are written from float");
    uint8_t buf[CHUNK * 4];
    const int bf16 = c->o->dtype == LC_SYNTH_BF16;
    for (int i = 0; i < c->tb->n; i++) {
        const tensor *t = &c->tb->t[i];
        if (t->shard != c->shard)
            continue;
        uint64_t key = name_key(c->o->seed, t->name);
        for (int64_t s = 0; s < t->count; s += CHUNK) {
            int64_t m = t->count - s < CHUNK ? t->count - s : CHUNK;
            for (int64_t j = 0; j < m; j++) {
                float v = value(t, key, s + j);
                if (bf16) {
                    uint16_t b = to_bf16(v);
                    buf[2 * j] = (uint8_t)b;
                    buf[2 * j + 1] = (uint8_t)(b >> 8);
                } else {
                    memcpy(buf + 4 * j, &v, 4); /* little-endian host (as the engine's reader) */
                }
            }
            size_t bytes = (size_t)m * (bf16 ? 2 : 4);
            if (fwrite(buf, 1, bytes, f) != bytes)
                return lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, strerror(errno));
        }
    }
    return 0;
}

static void shard_name(char *buf, size_t len, int shard, int shards)
{
    if (shards == 1)
        snprintf(buf, len, "model.safetensors");
    else
        snprintf(buf, len, "model-%05d-of-%05d.safetensors", shard + 1, shards);
}

/* ---------------------------------------------------------------- config.json */

static cJSON *make_config(const lc_synth_opts *o)
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
        cJSON_AddItemToArray(lt, cJSON_CreateString((l + 1) % 4 ? "linear_attention" : "full_attention"));
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

static int check_dir(const char *dir, lc_error *err)
{
    struct stat st;
    if (!dir)
        return lc_fail(err, LC_EINPUT, "synthetic checkpoint: no directory given");
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lc_fail(err, LC_EINPUT, "%s: not an existing directory", dir);
    return 0;
}

int lc_synth_write_config(const char *dir, const lc_synth_opts *o, lc_error *err)
{
    int rc = check_opts(o, err);
    if (rc || (rc = check_dir(dir, err)))
        return rc;
    cJSON *cfg = make_config(o);
    if (!cfg)
        return lc_fail(err, LC_EINTERNAL, "%s/config.json: out of memory", dir);
    rc = write_atomic(dir, "config.json", write_json, cfg, err);
    cJSON_Delete(cfg);
    return rc;
}

/* ---------------------------------------------------------------- plan and write */

static int fill_info(const table *tb, const lc_synth_opts *o, lc_synth_info *info, lc_error *err)
{
    memset(info, 0, sizeof *info);
    info->tensors = tb->n;
    info->files = o->shards;
    for (int i = 0; i < tb->n; i++) {
        info->params += tb->t[i].count;
        info->weight_bytes += tb->t[i].count * (int64_t)dtype_size(o->dtype);
    }
    info->file_bytes = info->weight_bytes;
    for (int s = 0; s < o->shards; s++) {
        size_t len;
        char *h = shard_header(tb, s, o->dtype, &len);
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
    int rc = build_table(&tb, o, err);
    if (!rc)
        rc = fill_info(&tb, o, info, err);
    table_free(&tb);
    return rc;
}

static int write_index(const char *dir, const table *tb, const lc_synth_opts *o, int64_t total, lc_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    int ok = meta && map && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    for (int i = 0; ok && i < tb->n; i++) {
        char name[64];
        shard_name(name, sizeof name, tb->t[i].shard, o->shards);
        ok = cJSON_AddStringToObject(map, tb->t[i].name, name) != NULL;
    }
    int rc = ok ? write_atomic(dir, "model.safetensors.index.json", write_json, root, err)
                : lc_fail(err, LC_EINTERNAL, "%s/model.safetensors.index.json: out of memory", dir);
    cJSON_Delete(root);
    return rc;
}

int lc_synth_write(const char *dir, const lc_synth_opts *o, lc_synth_info *info, lc_error *err)
{
    table tb;
    lc_synth_info local;
    int rc = check_dir(dir, err);
    if (rc || (rc = build_table(&tb, o, err)))
        return rc;
    if (!info)
        info = &local;
    if ((rc = fill_info(&tb, o, info, err)))
        goto done;
    for (int s = 0; s < o->shards && !rc; s++) {
        shard_ctx c = {.tb = &tb, .o = o, .shard = s};
        char *h = shard_header(&tb, s, o->dtype, &c.header_len);
        if (!h) {
            rc = lc_fail(err, LC_EINTERNAL, "synthetic checkpoint: out of memory for a header");
            break;
        }
        c.header = h;
        char name[64];
        shard_name(name, sizeof name, s, o->shards);
        rc = write_atomic(dir, name, write_shard, &c, err);
        free(h);
    }
    if (!rc && o->shards > 1)
        rc = write_index(dir, &tb, o, info->weight_bytes, err);
    if (!rc)
        rc = lc_synth_write_config(dir, o, err);
done:
    table_free(&tb);
    return rc;
}
