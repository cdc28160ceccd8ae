/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of checkpoint loading: config.json / preprocessor_config.json parsing
 * (reference/config.c) and safetensors archives (reference/safetensors.c).
 *
 * Expected values are independent of the code under test: the configuration numbers of the
 * committed tiny checkpoints were checked by hand against their documentation; the tensor
 * values below were read from the files with Python's struct/numpy and are written as exact
 * hexadecimal floats; conversion values are derived by hand from the IEEE bit patterns.
 * Temporary files go under LC_BINARY_DIR/loader-tmp.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qref_internal.h"
#include "check_main.h"

#define TMP_ROOT LC_BINARY_DIR "/loader-tmp"
#define DENSE_DIR LC_SOURCE_DIR "/golden/tiny-dense"
#define MOE_DIR LC_SOURCE_DIR "/golden/tiny-moe"

/* ---------------------------------------------------------------- file helpers */

/* Files a test may leave in its directory; removed before each use so runs are independent. */
static const char *const scratch_names[] = {
    "config.json", "preprocessor_config.json", "model.safetensors", "model.safetensors.index.json",
    "shard-1.safetensors", "shard-2.safetensors",
};

/* Creates TMP_ROOT/name (empty of the scratch files) and writes its path into dir. */
static void fresh_dir(char *dir, size_t cap, const char *name)
{
    ck_assert_msg(mkdir(TMP_ROOT, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", TMP_ROOT, strerror(errno));
    int n = snprintf(dir, cap, "%s/%s", TMP_ROOT, name);
    ck_assert(n > 0 && (size_t)n < cap);
    ck_assert_msg(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    for (size_t i = 0; i < sizeof scratch_names / sizeof scratch_names[0]; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, scratch_names[i]);
        unlink(p);
    }
}

static void write_bytes(const char *dir, const char *name, const void *bytes, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", p);
    ck_assert(n == 0 || fwrite(bytes, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_bytes(dir, name, text, strlen(text));
}

/* A safetensors file: u64 LE header length, the header text, then the data bytes. */
static void write_st(const char *dir, const char *name, const char *header, const void *data, size_t n)
{
    size_t hl = strlen(header);
    size_t total = 8 + hl + n;
    uint8_t *buf = malloc(total ? total : 1);
    ck_assert(buf != NULL);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (n)
        memcpy(buf + 8 + hl, data, n);
    write_bytes(dir, name, buf, total);
    free(buf);
}

/* Whole text of a file (caller frees). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    ck_assert(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
    char *s = malloc((size_t)n + 1);
    ck_assert(s != NULL && fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* text with the first occurrence of find replaced by repl (caller frees); find must occur. */
static char *replace_once(const char *text, const char *find, const char *repl)
{
    const char *at = strstr(text, find);
    ck_assert_msg(at != NULL, "test setup: '%s' not found in the base config", find);
    size_t pre = (size_t)(at - text), fl = strlen(find), rl = strlen(repl), tl = strlen(text);
    char *out = malloc(tl - fl + rl + 1);
    ck_assert(out != NULL);
    memcpy(out, text, pre);
    memcpy(out + pre, repl, rl);
    memcpy(out + pre + rl, at + fl, tl - pre - fl + 1);
    return out;
}

#define ck_assert_msg_has(err, needle)                                                      \
    ck_assert_msg(strstr((err).msg, (needle)) != NULL, "message '%s' lacks '%s'", (err).msg, \
                  (needle))

/* ---------------------------------------------------------------- expected configurations */

/* Hand-checked against the tiny checkpoints' documentation: text hidden 64, 4 layers
 * (3 GDN + 1 full attention), 4 query / 2 KV heads, head_dim 64, partial rotary 0.25 (16 rotary
 * dims, 8 frequencies = mrope [3, 3, 2] interleaved), GDN 2 key heads of 16 / 4 value heads of
 * 32, conv kernel 4, vocab 1024; MoE: 8 experts, top 2, width 32, shared expert 48. */
typedef struct {
    const char *model_type;
    int is_moe, has_vision;
} text_expect;

static void check_text(const qref_config *c, const text_expect *x)
{
    ck_assert_str_eq(c->model_type, x->model_type);
    ck_assert_int_eq(c->vocab_size, 1024);
    ck_assert_int_eq(c->hidden_size, 64);
    ck_assert_int_eq(c->intermediate_size, 128);
    ck_assert_int_eq(c->num_layers, 4);
    const int types[4] = {QREF_LAYER_LINEAR, QREF_LAYER_LINEAR, QREF_LAYER_LINEAR, QREF_LAYER_FULL};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(c->layer_types[i] == types[i], "layer_types[%d] = %d, expected %d", i,
                      c->layer_types[i], types[i]);
    ck_assert_int_eq(c->num_heads, 4);
    ck_assert_int_eq(c->num_kv_heads, 2);
    ck_assert_int_eq(c->head_dim, 64);
    ck_assert_int_eq(c->rotary_dim, 16);
    ck_assert_msg(c->rope_theta == 10000.0, "rope_theta = %g", c->rope_theta);
    ck_assert_int_eq(c->mrope_section[0], 3);
    ck_assert_int_eq(c->mrope_section[1], 3);
    ck_assert_int_eq(c->mrope_section[2], 2);
    ck_assert_int_eq(c->mrope_interleaved, 1);
    ck_assert_msg(c->rms_norm_eps == 1e-6, "rms_norm_eps = %g", c->rms_norm_eps);
    ck_assert_int_eq(c->tie_word_embeddings, 0);
    ck_assert_int_eq(c->lin_num_k_heads, 2);
    ck_assert_int_eq(c->lin_num_v_heads, 4);
    ck_assert_int_eq(c->lin_k_head_dim, 16);
    ck_assert_int_eq(c->lin_v_head_dim, 32);
    ck_assert_int_eq(c->lin_conv_kernel, 4);
    ck_assert_int_eq(c->is_moe, x->is_moe);
    ck_assert_int_eq(c->num_experts, x->is_moe ? 8 : 0);
    ck_assert_int_eq(c->num_experts_per_tok, x->is_moe ? 2 : 0);
    ck_assert_int_eq(c->moe_intermediate_size, x->is_moe ? 32 : 0);
    ck_assert_int_eq(c->shared_expert_intermediate_size, x->is_moe ? 48 : 0);
    ck_assert_int_eq(c->has_vision, x->has_vision);
}

/* Vision tower depth 2, width 48, MLP 96, 4 heads, patch 16, temporal patch 2, merge 2,
 * 3 channels, 64 out, 36 positions (6 x 6); tokens: image 1000, video 1001, start 998,
 * end 999. No preprocessor_config.json: mean/std 0.5 and pixels within [56*56, 28*28*1280]. */
static void check_vision(const qref_config *c)
{
    const qref_vision_config *v = &c->vision;
    ck_assert_int_eq(v->depth, 2);
    ck_assert_int_eq(v->hidden_size, 48);
    ck_assert_int_eq(v->intermediate_size, 96);
    ck_assert_int_eq(v->num_heads, 4);
    ck_assert_int_eq(v->patch_size, 16);
    ck_assert_int_eq(v->temporal_patch_size, 2);
    ck_assert_int_eq(v->spatial_merge_size, 2);
    ck_assert_int_eq(v->in_channels, 3);
    ck_assert_int_eq(v->out_hidden_size, 64);
    ck_assert_int_eq(v->num_position_embeddings, 36);
    ck_assert_msg(v->rope_theta == 10000.0, "vision rope_theta = %g", v->rope_theta);
    ck_assert_int_eq(c->image_token_id, 1000);
    ck_assert_int_eq(c->video_token_id, 1001);
    ck_assert_int_eq(c->vision_start_token_id, 998);
    ck_assert_int_eq(c->vision_end_token_id, 999);
    const qref_preproc_config *p = &c->preproc;
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(p->image_mean[i] == 0.5 && p->image_std[i] == 0.5, "mean/std[%d] = %g / %g", i,
                      p->image_mean[i], p->image_std[i]);
    }
    /* from the checkpoint's preprocessor_config.json: size {shortest_edge 1024, longest_edge 1048576} */
    ck_assert_int_eq(p->min_pixels, 1024);
    ck_assert_int_eq(p->max_pixels, 1048576);
    ck_assert_int_eq(p->patch_size, 16);
    ck_assert_int_eq(p->temporal_patch_size, 2);
    ck_assert_int_eq(p->merge_size, 2);
}

static qref_config *load_ok(const char *dir)
{
    static qref_config cfg; /* large (layer table); not on the stack */
    qref_error err = {0};
    qref_status st = qref_config_load(&cfg, dir, &err);
    ck_assert_msg(st == QREF_OK, "qref_config_load(%s) = %s: %s", dir, qref_status_name(st), err.msg);
    return &cfg;
}

/* ---------------------------------------------------------------- config: committed checkpoints */

START_TEST(test_loader_config_tiny_dense)
{
    const qref_config *c = load_ok(DENSE_DIR);
    check_text(c, &(text_expect){"qwen3_5", 0, 1});
    check_vision(c);
}
END_TEST

START_TEST(test_loader_config_tiny_moe)
{
    const qref_config *c = load_ok(MOE_DIR);
    check_text(c, &(text_expect){"qwen3_5_moe", 1, 1});
    check_vision(c);
}
END_TEST

/* ---------------------------------------------------------------- config: equivalent layouts */

/* The dense text part written at the top level, in three spellings of the same model. */
#define TEXT_COMMON                                                                         \
    "\"model_type\": \"qwen3_5_text\", \"vocab_size\": 1024, \"hidden_size\": 64,\n"         \
    "\"intermediate_size\": 128, \"num_hidden_layers\": 4, \"num_attention_heads\": 4,\n"    \
    "\"num_key_value_heads\": 2, \"head_dim\": 64, \"hidden_act\": \"silu\",\n"              \
    "\"rms_norm_eps\": 1e-06, \"attention_bias\": false, \"tie_word_embeddings\": false,\n"  \
    "\"linear_num_key_heads\": 2, \"linear_num_value_heads\": 4, \"linear_key_head_dim\": 16,\n" \
    "\"linear_value_head_dim\": 32, \"linear_conv_kernel_dim\": 4,\n"

static const char *const text_only_configs[] = {
    /* rope_parameters + layer_types */
    "{" TEXT_COMMON
    "\"layer_types\": [\"linear_attention\", \"linear_attention\", \"linear_attention\", \"full_attention\"],\n"
    "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0,\n"
    "  \"partial_rotary_factor\": 0.25, \"mrope_section\": [3, 3, 2], \"mrope_interleaved\": true}}\n",
    /* the older rope_theta + rope_scaling form, partial_rotary_factor at the top level */
    "{" TEXT_COMMON
    "\"layer_types\": [\"linear_attention\", \"linear_attention\", \"linear_attention\", \"full_attention\"],\n"
    "\"rope_theta\": 10000, \"partial_rotary_factor\": 0.25,\n"
    "\"rope_scaling\": {\"type\": \"default\", \"mrope_section\": [3, 3, 2], \"mrope_interleaved\": true}}\n",
    /* full_attention_interval instead of layer_types; rope_theta and the rotary factor left to
     * their defaults (10000, 0.25) */
    "{" TEXT_COMMON "\"full_attention_interval\": 4,\n"
    "\"rope_parameters\": {\"rope_type\": \"default\", \"mrope_section\": [3, 3, 2]}}\n",
};

START_TEST(test_loader_config_text_only_forms)
{
    char dir[1024], name[64];
    snprintf(name, sizeof name, "text-only-%d", _i);
    fresh_dir(dir, sizeof dir, name);
    write_text(dir, "config.json", text_only_configs[_i]);
    const qref_config *c = load_ok(dir);
    check_text(c, &(text_expect){"qwen3_5", 0, 0});
    ck_assert_int_eq(c->image_token_id, -1);
    ck_assert_int_eq(c->preproc.min_pixels, 3136);
}
END_TEST

/* full_attention_interval 3 over 7 layers: full where (i + 1) % 3 == 0, i.e. layers 2 and 5;
 * no mrope_section in a text-only config: every frequency on T. */
START_TEST(test_loader_config_interval_pattern)
{
    char dir[1024];
    fresh_dir(dir, sizeof dir, "interval");
    char *text = replace_once(text_only_configs[2], "\"full_attention_interval\": 4",
                              "\"full_attention_interval\": 3");
    char *text2 = replace_once(text, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 7");
    char *text3 = replace_once(text2, ", \"mrope_section\": [3, 3, 2]", "");
    write_text(dir, "config.json", text3);
    free(text);
    free(text2);
    free(text3);
    const qref_config *c = load_ok(dir);
    const int want[7] = {0, 0, 1, 0, 0, 1, 0};
    ck_assert_int_eq(c->num_layers, 7);
    for (int i = 0; i < 7; i++)
        ck_assert_msg(c->layer_types[i] == want[i], "layer %d: type %d, expected %d", i,
                      c->layer_types[i], want[i]);
    ck_assert_int_eq(c->mrope_section[0], 8);
    ck_assert_int_eq(c->mrope_section[1], 0);
    ck_assert_int_eq(c->mrope_section[2], 0);
}
END_TEST

/* A preprocessor_config.json: size bounds, per-channel mean/std; then min_pixels/max_pixels
 * override size; a scalar mean applies to all channels. */
START_TEST(test_loader_config_preprocessor)
{
    char dir[1024];
    fresh_dir(dir, sizeof dir, "preproc");
    char *base = read_text(DENSE_DIR "/config.json");
    write_text(dir, "config.json", base);
    free(base);
    write_text(dir, "preprocessor_config.json",
               "{\"image_mean\": [0.48, 0.45, 0.4], \"image_std\": [0.26, 0.26, 0.27],\n"
               " \"patch_size\": 16, \"temporal_patch_size\": 2, \"merge_size\": 2,\n"
               " \"size\": {\"shortest_edge\": 65536, \"longest_edge\": 16777216}}");
    const qref_config *c = load_ok(dir);
    const double mean[3] = {0.48, 0.45, 0.4}, std[3] = {0.26, 0.26, 0.27};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(c->preproc.image_mean[i] == mean[i] && c->preproc.image_std[i] == std[i],
                      "channel %d: mean %g std %g", i, c->preproc.image_mean[i], c->preproc.image_std[i]);
    ck_assert_int_eq(c->preproc.min_pixels, 65536);
    ck_assert_int_eq(c->preproc.max_pixels, 16777216);

    write_text(dir, "preprocessor_config.json",
               "{\"image_mean\": 0.5, \"image_std\": 0.25, \"min_pixels\": 1024, \"max_pixels\": 4096,\n"
               " \"size\": {\"shortest_edge\": 65536, \"longest_edge\": 16777216}}");
    c = load_ok(dir);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(c->preproc.image_mean[i] == 0.5 && c->preproc.image_std[i] == 0.25,
                      "channel %d: mean %g std %g", i, c->preproc.image_mean[i], c->preproc.image_std[i]);
    ck_assert_int_eq(c->preproc.min_pixels, 1024);
    ck_assert_int_eq(c->preproc.max_pixels, 4096);
    ck_assert_int_eq(c->preproc.patch_size, 16); /* from vision_config */
}
END_TEST

/* ---------------------------------------------------------------- config: bad input */

typedef struct {
    const char *name;
    const char *base;     /* "dense" / "moe": the committed config edited by find -> repl;
                           * NULL: repl is the whole file, or no file at all when repl is NULL */
    const char *find, *repl;
    const char *preproc;  /* preprocessor_config.json text, or NULL for none */
    qref_status code;
    const char *file;     /* the file the message must name */
    const char *what1, *what2;
} config_bad_case;

static const config_bad_case config_bad[] = {
    {"no-file", NULL, NULL, NULL, NULL, QREF_EIO, "config.json", "cannot open", NULL},
    {"empty", NULL, NULL, "", NULL, QREF_EFORMAT, "config.json", "malformed JSON", "empty"},
    {"malformed", "dense", "\"hidden_size\": 64,", "\"hidden_size\": 64,,", NULL, QREF_EFORMAT,
     "config.json", "malformed JSON", "line 15"},
    {"not-object", NULL, NULL, "[1, 2]", NULL, QREF_EFORMAT, "config.json", "JSON object", NULL},
    {"missing-layers", "dense", "\"num_hidden_layers\": 4,", "", NULL, QREF_EFORMAT, "config.json",
     "text_config.num_hidden_layers: required field is missing", NULL},
    {"missing-vocab", "moe", "\"vocab_size\": 1024", "\"vocab\": 1024", NULL, QREF_EFORMAT, "config.json",
     "text_config.vocab_size: required field is missing", NULL},
    {"wrong-type", "dense", "\"num_hidden_layers\": 4", "\"num_hidden_layers\": \"4\"", NULL, QREF_EFORMAT,
     "config.json", "text_config.num_hidden_layers: expected an integer, found string", NULL},
    {"fractional", "dense", "\"head_dim\": 64", "\"head_dim\": 64.5", NULL, QREF_EFORMAT, "config.json",
     "text_config.head_dim: expected an integer, found 64.5", NULL},
    {"eps-type", "dense", "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": [1e-06]", NULL, QREF_EFORMAT,
     "config.json", "text_config.rms_norm_eps: expected a number, found array", NULL},
    {"rope-yarn", "dense", "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", NULL, QREF_EUNSUPPORTED,
     "config.json", "text_config.rope_parameters.rope_type", "'yarn'"},
    {"mrope-sum", "dense", "3,\n        3,\n        2", "3,\n        3,\n        3", NULL, QREF_EFORMAT,
     "config.json", "text_config.rope_parameters.mrope_section", "sums to 9, expected rotary_dim / 2 = 8"},
    {"odd-rotary", "dense", "\"partial_rotary_factor\": 0.25,\n      \"rope_theta\"",
     "\"partial_rotary_factor\": 0.3,\n      \"rope_theta\"", NULL, QREF_EFORMAT, "config.json",
     "rope_parameters.partial_rotary_factor", "19 rotary dims"},
    {"attention-bias", "dense", "\"attention_bias\": false", "\"attention_bias\": true", NULL,
     QREF_EUNSUPPORTED, "config.json", "text_config.attention_bias", NULL},
    {"act", "dense", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", NULL, QREF_EUNSUPPORTED,
     "config.json", "text_config.hidden_act", "'gelu'"},
    {"gdn-heads", "dense", "\"linear_num_value_heads\": 4", "\"linear_num_value_heads\": 3", NULL,
     QREF_EFORMAT, "config.json", "text_config.linear_num_value_heads", "not a multiple"},
    {"kv-heads", "dense", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", NULL, QREF_EFORMAT,
     "config.json", "text_config.num_key_value_heads", "not a multiple"},
    {"too-many-layers", "dense", "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 513", NULL,
     QREF_EUNSUPPORTED, "config.json", "text_config.num_hidden_layers", "513"},
    {"layer-type", "dense", "\"full_attention\"", "\"sliding_attention\"", NULL, QREF_EFORMAT,
     "config.json", "text_config.layer_types", "entry 3"},
    {"layer-count", "dense", "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5", NULL, QREF_EFORMAT,
     "config.json", "text_config.layer_types", "expected 5 entries"},
    {"model-type", "dense", "\"qwen3_5_text\"", "\"llama\"", NULL, QREF_EUNSUPPORTED, "config.json",
     "text_config.model_type", "'llama'"},
    {"pos-square", "dense", "\"num_position_embeddings\": 36", "\"num_position_embeddings\": 35", NULL,
     QREF_EFORMAT, "config.json", "vision_config.num_position_embeddings", "perfect square"},
    {"vision-act", "dense", "\"gelu_pytorch_tanh\"", "\"quick_gelu\"", NULL, QREF_EUNSUPPORTED,
     "config.json", "vision_config.hidden_act", NULL},
    {"no-vision", "dense", "\"vision_config\"", "\"vision_config_x\"", NULL, QREF_EFORMAT, "config.json",
     "vision_config: required field is missing", NULL},
    {"image-token", "dense", "\"image_token_id\": 1000", "\"image_token_id\": 5000", NULL, QREF_EFORMAT,
     "config.json", "image_token_id", "vocab_size 1024"},
    {"mlp-only", "moe", "\"num_experts\": 8,", "\"num_experts\": 8, \"mlp_only_layers\": [1],", NULL,
     QREF_EUNSUPPORTED, "config.json", "text_config.mlp_only_layers", NULL},
    {"sparse-step", "moe", "\"num_experts\": 8,", "\"num_experts\": 8, \"decoder_sparse_step\": 2,", NULL,
     QREF_EUNSUPPORTED, "config.json", "text_config.decoder_sparse_step", NULL},
    {"moe-missing", "moe", "\"moe_intermediate_size\": 32,", "", NULL, QREF_EFORMAT, "config.json",
     "text_config.moe_intermediate_size: required field is missing", NULL},
    {"dense-experts", "dense", "\"head_dim\": 64,", "\"head_dim\": 64, \"num_experts\": 4,", NULL,
     QREF_EFORMAT, "config.json", "text_config.num_experts", "dense"},
    {"preproc-malformed", "dense", "", "", "{\"patch_size\": 16", QREF_EFORMAT, "preprocessor_config.json",
     "malformed JSON", NULL},
    {"preproc-patch", "dense", "", "", "{\"patch_size\": 14}", QREF_EFORMAT, "preprocessor_config.json",
     "patch_size: 14 differs", "16"},
    {"preproc-type", "dense", "", "", "{\"size\": {\"shortest_edge\": \"big\"}}", QREF_EFORMAT,
     "preprocessor_config.json", "size.shortest_edge", "expected a positive integer"},
    /* hostile input: duplicate keys, NUL and control bytes, sizes whose products wrap */
    {"duplicate-key", "dense", "\"hidden_size\": 64,", "\"hidden_size\": 64, \"hidden_size\": 32,", NULL,
     QREF_EFORMAT, "config.json", "key 'hidden_size' appears twice", "text_config"},
    {"duplicate-top", "dense", "\"image_token_id\": 1000,", "\"image_token_id\": 1000, \"image_token_id\": 7,",
     NULL, QREF_EFORMAT, "config.json", "key 'image_token_id' appears twice", "top-level"},
    {"nul-escape", "dense", "\"qwen3_5_text\"", "\"qwen3_5_text\\u0000x\"", NULL, QREF_EFORMAT,
     "config.json", "control character", "line"},
    {"control-byte", "dense", "\"qwen3_5_text\"", "\"qwen3_5\x01_text\"", NULL, QREF_EFORMAT,
     "config.json", "control character", NULL},
    {"heads-wrap", "dense", "\"num_attention_heads\": 4", "\"num_attention_heads\": 2147483646", NULL,
     QREF_EUNSUPPORTED, "config.json", "num_attention_heads x head_dim x 2", "overflow"},
    {"state-wrap", "dense", "\"linear_value_head_dim\": 32", "\"linear_value_head_dim\": 2000000000", NULL,
     QREF_EUNSUPPORTED, "config.json", "linear_num_value_heads x linear_value_head_dim", NULL},
    {"weights-wrap", "dense", "\"vocab_size\": 1024", "\"vocab_size\": 2147483647", NULL, QREF_EUNSUPPORTED,
     "config.json", "weights", "bytes"},
    {"preproc-min-pixels", "dense", "", "", "{\"min_pixels\": 9000000000000000, \"max_pixels\": 9000000000000000}",
     QREF_EUNSUPPORTED, "preprocessor_config.json", "min_pixels", "limit"},
    {"preproc-duplicate", "dense", "", "", "{\"patch_size\": 16, \"patch_size\": 14}", QREF_EFORMAT,
     "preprocessor_config.json", "key 'patch_size' appears twice", NULL},
};

START_TEST(test_loader_config_bad_input)
{
    const config_bad_case *k = &config_bad[_i];
    char dir[1024];
    char name[96];
    snprintf(name, sizeof name, "config-bad-%s", k->name);
    fresh_dir(dir, sizeof dir, name);
    if (k->base) {
        char *base = read_text(!strcmp(k->base, "moe") ? MOE_DIR "/config.json" : DENSE_DIR "/config.json");
        char *text = k->find[0] ? replace_once(base, k->find, k->repl) : NULL;
        write_text(dir, "config.json", text ? text : base);
        free(text);
        free(base);
    } else if (k->repl) {
        write_text(dir, "config.json", k->repl);
    }
    if (k->preproc)
        write_text(dir, "preprocessor_config.json", k->preproc);

    static qref_config cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    qref_error err = {0};
    qref_status st = qref_config_load(&cfg, dir, &err);
    ck_assert_msg(st == k->code, "case %s: status %s, expected %s (message: %s)", k->name,
                  qref_status_name(st), qref_status_name(k->code), err.msg);
    ck_assert_msg(err.code == k->code, "case %s: err.code %d", k->name, err.code);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, k->file);
    ck_assert_msg_has(err, path);
    ck_assert_msg_has(err, k->what1);
    if (k->what2)
        ck_assert_msg_has(err, k->what2);
    ck_assert_msg(cfg.num_layers == 0 && cfg.hidden_size == 0, "case %s: config not cleared on failure",
                  k->name);
}
END_TEST

/* ---------------------------------------------------------------- safetensors: the committed files */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[5];
    int n;                /* values checked */
    size_t idx[4];        /* flat indices (SIZE_MAX: the last element) */
    float want[4];
} tensor_expect;

/* Read with Python (struct + numpy) from the files; exact float32 values in hex. */
static const tensor_expect dense_tensors[] = {
    {"model.language_model.layers.0.linear_attn.A_log", 1, {4}, 4, {0, 1, 2, 3},
     {0x1.c17fa2p-2f, 0x1.e82464p-1f, 0x1.a3a6b2p+0f, 0x1.210f06p-3f}},
    {"lm_head.weight", 2, {1024, 64}, 4, {0, 1, 2, SIZE_MAX},
     {0x1.f1b48ep-5f, 0x1.b9b478p-5f, 0x1.77d294p-3f, -0x1.3e8628p-4f}},
    {"model.visual.patch_embed.proj.weight", 5, {48, 3, 2, 16, 16}, 4, {0, 1, 2, SIZE_MAX},
     {-0x1.a9c25p-8f, 0x1.5ef822p-6f, -0x1.187fbcp-7f, -0x1.76d7bcp-5f}},
    {"model.language_model.layers.2.linear_attn.conv1d.weight", 3, {192, 1, 4}, 4, {0, 1, 2, SIZE_MAX},
     {-0x1.46ad8ap-3f, -0x1.04faa4p-3f, -0x1.aa99ep-2f, 0x1.7897f6p-2f}},
    {"model.language_model.layers.3.self_attn.q_norm.weight", 1, {64}, 3, {0, 1, 63},
     {0x1.1c24bep-2f, 0x1.29db9p-4f, -0x1.8e2eaap-4f}},
};

static const tensor_expect moe_tensors[] = {
    {"model.language_model.layers.1.mlp.gate.weight", 2, {8, 64}, 4, {0, 1, 2, SIZE_MAX},
     {-0x1.4d8fa4p-3f, 0x1.1e8b3cp-2f, 0x1.06c64ep-7f, -0x1.54eb92p-5f}},
    {"model.language_model.layers.3.mlp.shared_expert_gate.weight", 2, {1, 64}, 3, {0, 1, 63},
     {0x1.6d4a2p-5f, -0x1.eb5c92p-8f, -0x1.d1986cp-4f}},
    {"model.language_model.layers.0.mlp.experts.7.down_proj.weight", 2, {64, 32}, 3, {0, 1, SIZE_MAX},
     {-0x1.edd136p-8f, -0x1.644f1ap-7f, 0x1.ba3064p-7f}},
};

static void check_tensors(const char *dir, int ntensors, const tensor_expect *xs, int nx)
{
    qref_st_archive a = {0};
    qref_error err = {0};
    qref_status st = qref__st_open(&a, dir, &err);
    ck_assert_msg(st == QREF_OK, "qref__st_open(%s) = %s: %s", dir, qref_status_name(st), err.msg);
    ck_assert_int_eq(a.nfiles, 1);
    ck_assert_int_eq(a.ntensors, ntensors);
    const uint8_t *map = a.files[0].map;
    for (int i = 0; i < nx; i++) {
        const tensor_expect *x = &xs[i];
        qref_st_tensor *t = qref__st_find(&a, x->name);
        ck_assert_msg(t != NULL, "%s not found", x->name);
        ck_assert_str_eq(t->name, x->name);
        ck_assert_int_eq(t->dtype, QREF_DT_F32);
        ck_assert_int_eq(t->ndim, x->ndim);
        size_t numel = 1;
        for (int d = 0; d < x->ndim; d++) {
            ck_assert_msg(t->shape[d] == x->shape[d], "%s: shape[%d] = %lld, expected %lld", x->name, d,
                          (long long)t->shape[d], (long long)x->shape[d]);
            numel *= (size_t)x->shape[d];
        }
        ck_assert_int_eq(t->nbytes, numel * 4);
        /* no copy: the data lies inside the mapping */
        ck_assert((const uint8_t *)t->data >= map && (const uint8_t *)t->data + t->nbytes <= map + a.files[0].size);
        qref_real *v = malloc(numel * sizeof *v);
        ck_assert(v != NULL);
        qref__st_convert(t, v, numel);
        for (int j = 0; j < x->n; j++) {
            size_t k = x->idx[j] == SIZE_MAX ? numel - 1 : x->idx[j];
            ck_assert_msg((double)v[k] == (double)x->want[j], "%s[%zu] = %a, expected %a", x->name, k,
                          (double)v[k], (double)x->want[j]);
        }
        free(v);
    }
    ck_assert_ptr_null(qref__st_find(&a, "model.language_model.layers.9.input_layernorm.weight"));
    ck_assert_ptr_null(qref__st_find(&a, "__metadata__"));
    qref__st_close(&a);
    ck_assert_int_eq(a.ntensors, 0);
    qref__st_close(&a); /* twice is safe */
}

START_TEST(test_loader_st_tiny_dense) { check_tensors(DENSE_DIR, 89, dense_tensors, 5); }
END_TEST

START_TEST(test_loader_st_tiny_moe) { check_tensors(MOE_DIR, 193, moe_tensors, 3); }
END_TEST

/* ---------------------------------------------------------------- conversion */

/* One 16-bit pattern and its value, derived from the IEEE layouts:
 * binary16: sign | 5-bit exponent (bias 15) | 10-bit mantissa; bfloat16: the top half of a
 * binary32. */
typedef struct {
    uint16_t bits;
    double want;    /* NAN for "is NaN" */
    int neg_zero;
} half_case;

static const half_case f16_cases[] = {
    {0x0000, 0.0, 0},
    {0x8000, 0.0, 1},                       /* -0 */
    {0x3c00, 1.0, 0},
    {0xc000, -2.0, 0},
    {0x3555, 0.333251953125, 0},            /* (1 + 341/1024) * 2^-2 */
    {0x3bff, 0.99951171875, 0},             /* (1 + 1023/1024) * 2^-1 */
    {0x7bff, 65504.0, 0},                   /* largest finite */
    {0x0400, 6.103515625e-05, 0},           /* smallest normal 2^-14 */
    {0x0001, 5.9604644775390625e-08, 0},    /* smallest subnormal 2^-24 */
    {0x03ff, 6.0975551605224609375e-05, 0}, /* largest subnormal 1023 * 2^-24 */
    {0x8001, -5.9604644775390625e-08, 0},
    {0x7c00, INFINITY, 0},
    {0xfc00, -INFINITY, 0},
    {0x7e00, NAN, 0},
    {0x7c01, NAN, 0},                       /* signalling NaN pattern stays NaN */
};

static const half_case bf16_cases[] = {
    {0x0000, 0.0, 0},
    {0x8000, 0.0, 1},
    {0x3f80, 1.0, 0},
    {0xc040, -3.0, 0},
    {0x4049, 3.140625, 0},                  /* 0x40490000 */
    {0x3e80, 0.25, 0},
    {0x0080, 1.1754943508222875e-38, 0},    /* 2^-126 */
    {0x7f80, INFINITY, 0},
    {0xff80, -INFINITY, 0},
    {0x7fc0, NAN, 0},
};

static void check_half(const char *kind, qref_dtype dt, const half_case *cs, int n, size_t offset)
{
    /* misaligned on purpose: loads must not assume alignment */
    uint8_t raw[64];
    ck_assert((size_t)n * 2 + offset <= sizeof raw);
    for (int i = 0; i < n; i++) {
        raw[offset + 2 * i] = (uint8_t)(cs[i].bits & 0xff);
        raw[offset + 2 * i + 1] = (uint8_t)(cs[i].bits >> 8);
    }
    qref_st_tensor t = {.name = (char *)kind, .dtype = dt, .ndim = 1, .shape = {n},
                        .data = raw + offset, .nbytes = (size_t)n * 2};
    qref_real out[32];
    qref__st_convert(&t, out, (size_t)n);
    for (int i = 0; i < n; i++) {
        double got = (double)out[i];
        if (isnan(cs[i].want))
            ck_assert_msg(isnan(got), "%s 0x%04x -> %g, expected NaN", kind, cs[i].bits, got);
        else
            ck_assert_msg(got == cs[i].want && (cs[i].want != 0 || !!signbit(got) == cs[i].neg_zero),
                          "%s 0x%04x -> %.17g (sign bit %d), expected %.17g%s", kind, cs[i].bits, got,
                          !!signbit(got), cs[i].want, cs[i].neg_zero ? " (negative zero)" : "");
    }
}

START_TEST(test_loader_convert_f16)
{
    check_half("F16", QREF_DT_F16, f16_cases, (int)(sizeof f16_cases / sizeof f16_cases[0]), 1);
}
END_TEST

START_TEST(test_loader_convert_bf16)
{
    check_half("BF16", QREF_DT_BF16, bf16_cases, (int)(sizeof bf16_cases / sizeof bf16_cases[0]), 3);
}
END_TEST

START_TEST(test_loader_convert_f64_f32)
{
    const double d[5] = {1.0 / 3.0, -2.5, 1e-320, 0.1, -0.0};
    uint8_t raw[8 * 5 + 1];
    memcpy(raw + 1, d, sizeof d);
    qref_st_tensor t = {.name = "f64", .dtype = QREF_DT_F64, .ndim = 1, .shape = {5},
                        .data = raw + 1, .nbytes = sizeof d};
    qref_real out[5];
    qref__st_convert(&t, out, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(out[i] == (qref_real)d[i] && !signbit(out[i]) == !signbit(d[i]),
                      "F64 %.17g -> %.17g", d[i], (double)out[i]);

    const float f[3] = {0x1.fffffep+127f, -0x1p-149f, 0.1f};
    uint8_t rawf[4 * 3 + 2];
    memcpy(rawf + 2, f, sizeof f);
    qref_st_tensor tf = {.name = "f32", .dtype = QREF_DT_F32, .ndim = 1, .shape = {3},
                         .data = rawf + 2, .nbytes = sizeof f};
    qref__st_convert(&tf, out, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_msg((double)out[i] == (double)f[i], "F32 %a -> %a", (double)f[i], (double)out[i]);

    ck_assert_str_eq(qref__dtype_name(QREF_DT_F32), "F32");
    ck_assert_str_eq(qref__dtype_name(QREF_DT_F16), "F16");
    ck_assert_str_eq(qref__dtype_name(QREF_DT_BF16), "BF16");
    ck_assert_str_eq(qref__dtype_name(QREF_DT_F64), "F64");
}
END_TEST

/* Every supported dtype through a written file: dtype names map and offsets are honoured. */
START_TEST(test_loader_st_dtypes_in_file)
{
    char dir[1024];
    fresh_dir(dir, sizeof dir, "dtypes");
    /* bytes 0..7 F64 [1] = -1.5 ; 8..11 F32 [] scalar = 2.0 ; 12..15 F16 [2] = {1, -2} ;
     * 16..19 BF16 [2, 1] = {3.140625, 0.25} ; 20..20 empty F32 [0, 3] */
    uint8_t data[20];
    double m15 = -1.5;
    float two = 2.0f;
    memcpy(data, &m15, 8);
    memcpy(data + 8, &two, 4);
    const uint8_t halves[8] = {0x00, 0x3c, 0x00, 0xc0, 0x49, 0x40, 0x80, 0x3e};
    memcpy(data + 12, halves, 8);
    write_st(dir, "model.safetensors",
             "{\"__metadata__\": {\"format\": \"pt\"},"
             " \"d\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]},"
             " \"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [8, 12]},"
             " \"h\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [12, 16]},"
             " \"b\": {\"dtype\": \"BF16\", \"shape\": [2, 1], \"data_offsets\": [16, 20]},"
             " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [20, 20]}}   ",
             data, sizeof data);
    qref_st_archive a = {0};
    qref_error err = {0};
    qref_status st = qref__st_open(&a, dir, &err);
    ck_assert_msg(st == QREF_OK, "%s: %s", qref_status_name(st), err.msg);
    ck_assert_int_eq(a.ntensors, 5);
    static const struct { const char *name; qref_dtype dt; int ndim, n; double v[2]; } want[] = {
        {"d", QREF_DT_F64, 1, 1, {-1.5, 0}},
        {"s", QREF_DT_F32, 0, 1, {2.0, 0}},
        {"h", QREF_DT_F16, 1, 2, {1.0, -2.0}},
        {"b", QREF_DT_BF16, 2, 2, {3.140625, 0.25}},
        {"e", QREF_DT_F32, 2, 0, {0, 0}},
    };
    for (int i = 0; i < 5; i++) {
        qref_st_tensor *t = qref__st_find(&a, want[i].name);
        ck_assert_msg(t != NULL, "tensor %s missing", want[i].name);
        ck_assert_msg(t->dtype == want[i].dt && t->ndim == want[i].ndim, "tensor %s: dtype %s ndim %d",
                      want[i].name, qref__dtype_name(t->dtype), t->ndim);
        qref_real v[2] = {0, 0};
        qref__st_convert(t, v, (size_t)want[i].n);
        for (int j = 0; j < want[i].n; j++)
            ck_assert_msg((double)v[j] == want[i].v[j], "%s[%d] = %g, expected %g", want[i].name, j,
                          (double)v[j], want[i].v[j]);
    }
    qref__st_close(&a);
}
END_TEST

/* ---------------------------------------------------------------- sharded checkpoints */

START_TEST(test_loader_st_sharded)
{
    char dir[1024];
    fresh_dir(dir, sizeof dir, "sharded");
    const float s1[5] = {1.0f, 2.0f, 3.0f, -4.0f, 0.5f};
    write_st(dir, "shard-1.safetensors",
             "{\"b.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]},"
             " \"a.weight\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]}}",
             s1, sizeof s1);
    const uint8_t s2[6] = {0x80, 0x3f, 0x40, 0xc0, 0x00, 0x3c}; /* BF16 1, -3 ; F16 1 */
    write_st(dir, "shard-2.safetensors",
             "{\"c.weight\": {\"dtype\": \"BF16\", \"shape\": [1, 2], \"data_offsets\": [0, 4]},"
             " \"extra.weight\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [4, 6]}}",
             s2, sizeof s2);
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 26}, \"weight_map\": {"
               "\"a.weight\": \"shard-1.safetensors\", \"c.weight\": \"shard-2.safetensors\","
               " \"b.weight\": \"shard-1.safetensors\"}}");
    qref_st_archive a = {0};
    qref_error err = {0};
    qref_status st = qref__st_open(&a, dir, &err);
    ck_assert_msg(st == QREF_OK, "%s: %s", qref_status_name(st), err.msg);
    ck_assert_int_eq(a.nfiles, 2);
    ck_assert_int_eq(a.ntensors, 4); /* extra.weight is unlisted but kept */
    static const struct { const char *name, *shard; int n; double v[3]; } want[] = {
        {"a.weight", "shard-1.safetensors", 3, {1, 2, 3}},
        {"b.weight", "shard-1.safetensors", 2, {-4, 0.5}},
        {"c.weight", "shard-2.safetensors", 2, {1, -3}},
        {"extra.weight", "shard-2.safetensors", 1, {1}},
    };
    for (int i = 0; i < 4; i++) {
        qref_st_tensor *t = qref__st_find(&a, want[i].name);
        ck_assert_msg(t != NULL, "%s missing", want[i].name);
        const char *path = a.files[t->file].path;
        ck_assert_msg(strlen(path) > strlen(want[i].shard) &&
                          !strcmp(path + strlen(path) - strlen(want[i].shard), want[i].shard),
                      "%s in %s, expected %s", want[i].name, path, want[i].shard);
        qref_real v[3];
        qref__st_convert(t, v, (size_t)want[i].n);
        for (int j = 0; j < want[i].n; j++)
            ck_assert_msg((double)v[j] == want[i].v[j], "%s[%d] = %g, expected %g", want[i].name, j,
                          (double)v[j], want[i].v[j]);
    }
    qref__st_close(&a);
}
END_TEST

/* ---------------------------------------------------------------- safetensors: bad input */

typedef struct {
    const char *name;
    /* the single file: raw bytes (raw_len >= 0) or header + data; or a sharded set */
    const char *raw;
    int raw_len;          /* -1: use header/data */
    const char *header;
    int data_len;         /* bytes of data after the header (content irrelevant) */
    const char *index;    /* when set: written as the index, and shard-1 gets header/data */
    const char *shard2_header;
    qref_status code;
    const char *file;     /* the file the message must name */
    const char *what1, *what2;
} st_bad_case;

#define T1 "\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}"
#define IDX(...) "{\"weight_map\": {" __VA_ARGS__ "}}"

static const st_bad_case st_bad[] = {
    {"none", NULL, -1, NULL, 0, NULL, NULL, QREF_EIO, "", "neither model.safetensors", NULL},
    {"empty", "", 0, NULL, 0, NULL, NULL, QREF_EFORMAT, "model.safetensors", "empty file", NULL},
    {"short", "\x05\x00\x00\x00\x00", 5, NULL, 0, NULL, NULL, QREF_EFORMAT, "model.safetensors",
     "5 bytes", "8-byte header length"},
    {"header-past-end", "\xff\x00\x00\x00\x00\x00\x00\x00{}", 10, NULL, 0, NULL, NULL, QREF_EFORMAT,
     "model.safetensors", "header length 255 exceeds the 2 bytes", NULL},
    {"data-cut-short", NULL, -1, "{" T1 "}", 12, NULL, NULL, QREF_EFORMAT, "model.safetensors",
     "tensor 't'", "outside the data section of 12 bytes"},
    {"offsets-reversed", NULL, -1,
     "{\"t\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 16, NULL, NULL,
     QREF_EFORMAT, "model.safetensors", "[8, 4]", "end before they begin"},
    {"offsets-vs-shape", NULL, -1,
     "{\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 16, NULL, NULL,
     QREF_EFORMAT, "model.safetensors", "span 12 bytes", "F32 [2, 2] = 16 bytes"},
    {"bf16-size", NULL, -1,
     "{\"t\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 4]}}", 16, NULL, NULL,
     QREF_EFORMAT, "model.safetensors", "span 4 bytes", "BF16 [3] = 6 bytes"},
    {"dtype", NULL, -1, "{\"t\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 16,
     NULL, NULL, QREF_EUNSUPPORTED, "model.safetensors", "tensor 't'", "dtype I64"},
    {"malformed-json", NULL, -1, "{\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2] \"data_offsets\": [0, 16]}}",
     16, NULL, NULL, QREF_EFORMAT, "model.safetensors", "malformed header JSON", "byte"},
    {"trailing-garbage", NULL, -1, "{" T1 "} x", 16, NULL, NULL, QREF_EFORMAT, "model.safetensors",
     "malformed header JSON", NULL},
    {"not-object", NULL, -1, "[1, 2]", 16, NULL, NULL, QREF_EFORMAT, "model.safetensors",
     "expected a JSON object", NULL},
    {"shape-type", NULL, -1, "{\"t\": {\"dtype\": \"F32\", \"shape\": [2, -2], \"data_offsets\": [0, 16]}}",
     16, NULL, NULL, QREF_EFORMAT, "model.safetensors", "shape[1]", NULL},
    {"no-offsets", NULL, -1, "{\"t\": {\"dtype\": \"F32\", \"shape\": [4]}}", 16, NULL, NULL,
     QREF_EFORMAT, "model.safetensors", "data_offsets missing", NULL},
    {"duplicate", NULL, -1, "{" T1 ", " T1 "}", 16, NULL, NULL, QREF_EFORMAT, "model.safetensors",
     "key 't' appears twice", NULL},
    {"overlap", NULL, -1,
     "{\"u\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}, " T1 "}", 16, NULL, NULL,
     QREF_EFORMAT, "model.safetensors", "overlap", NULL},
    {"missing-shard", NULL, -1, "{" T1 "}", 16,
     IDX("\"t\": \"shard-1.safetensors\", \"u\": \"shard-2.safetensors\""), NULL, QREF_EIO,
     "model.safetensors.index.json", "shard-2.safetensors", "cannot open"},
    {"index-lists-absent", NULL, -1, "{" T1 "}", 16,
     IDX("\"t\": \"shard-1.safetensors\", \"w\": \"shard-1.safetensors\""), NULL, QREF_EMISSING,
     "model.safetensors.index.json", "tensor 'w'", "does not contain it"},
    {"index-wrong-shard", NULL, -1, "{" T1 "}", 16,
     IDX("\"t\": \"shard-2.safetensors\", \"v\": \"shard-1.safetensors\""),
     "{\"v\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", QREF_EFORMAT,
     "model.safetensors.index.json", "tensor 't' is listed in shard 'shard-2.safetensors'", "found in"},
    {"duplicate-across-shards", NULL, -1, "{" T1 "}", 16,
     IDX("\"t\": \"shard-1.safetensors\", \"u\": \"shard-2.safetensors\""), "{" T1 "}", QREF_EFORMAT,
     "shard-2.safetensors", "tensor 't' is also in", "shard-1.safetensors"},
    {"index-malformed", NULL, -1, "{" T1 "}", 16, "{\"weight_map\": {\"t\": }}", NULL, QREF_EFORMAT,
     "model.safetensors.index.json", "malformed index JSON", NULL},
    {"index-empty", NULL, -1, "{" T1 "}", 16, "", NULL, QREF_EFORMAT, "model.safetensors.index.json",
     "malformed index JSON", "empty"},
    {"index-no-map", NULL, -1, "{" T1 "}", 16, "{\"metadata\": {}}", NULL, QREF_EFORMAT,
     "model.safetensors.index.json", "weight_map", NULL},
    {"bad-shard", NULL, -1, "{" T1 "}", 15, IDX("\"t\": \"shard-1.safetensors\""), NULL, QREF_EFORMAT,
     "model.safetensors.index.json", "shard-1.safetensors", "outside the data section of 15 bytes"},
    /* hostile input */
    {"index-dotdot", NULL, -1, "{" T1 "}", 16, IDX("\"t\": \"../st-bad-none/shard-1.safetensors\""), NULL,
     QREF_EFORMAT, "model.safetensors.index.json", "not a relative path inside the checkpoint", NULL},
    {"index-absolute", NULL, -1, "{" T1 "}", 16, IDX("\"t\": \"/etc/passwd\""), NULL, QREF_EFORMAT,
     "model.safetensors.index.json", "'/etc/passwd'", "not a relative path"},
    {"index-duplicate", NULL, -1, "{" T1 "}", 16,
     IDX("\"t\": \"shard-1.safetensors\", \"t\": \"shard-2.safetensors\""), NULL, QREF_EFORMAT,
     "model.safetensors.index.json", "key 't' appears twice", "weight_map"},
    {"entry-duplicate-key", NULL, -1,
     "{\"t\": {\"dtype\": \"F32\", \"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16,
     NULL, NULL, QREF_EFORMAT, "model.safetensors", "key 'dtype' appears twice", "'t'"},
    {"header-nul", "\x0a\x00\x00\x00\x00\x00\x00\x00{\"a\":\"\x00\"}", 18, NULL, 0, NULL, NULL, QREF_EFORMAT,
     "model.safetensors", "NUL byte", NULL},
};

START_TEST(test_loader_st_bad_input)
{
    const st_bad_case *k = &st_bad[_i];
    char dir[1024], name[96];
    snprintf(name, sizeof name, "st-bad-%s", k->name);
    fresh_dir(dir, sizeof dir, name);
    uint8_t zeros[64] = {0};
    ck_assert(k->data_len <= (int)sizeof zeros);
    if (k->index) {
        write_text(dir, "model.safetensors.index.json", k->index);
        write_st(dir, "shard-1.safetensors", k->header, zeros, (size_t)k->data_len);
        if (k->shard2_header)
            write_st(dir, "shard-2.safetensors", k->shard2_header, zeros, 16);
    } else if (k->raw_len >= 0) {
        write_bytes(dir, "model.safetensors", k->raw, (size_t)k->raw_len);
    } else if (k->header) {
        write_st(dir, "model.safetensors", k->header, zeros, (size_t)k->data_len);
    }

    qref_st_archive a = {0};
    qref_error err = {0};
    qref_status st = qref__st_open(&a, dir, &err);
    ck_assert_msg(st == k->code, "case %s: status %s, expected %s (message: %s)", k->name,
                  qref_status_name(st), qref_status_name(k->code), err.msg);
    char path[1200];
    if (k->file[0])
        snprintf(path, sizeof path, "%s/%s", dir, k->file);
    else
        snprintf(path, sizeof path, "%s", dir);
    ck_assert_msg_has(err, path);
    ck_assert_msg_has(err, k->what1);
    if (k->what2)
        ck_assert_msg_has(err, k->what2);
    ck_assert_msg(a.ntensors == 0 && a.nfiles == 0 && a.tensors == NULL && a.files == NULL,
                  "case %s: archive not closed after the failure", k->name);
    qref__st_close(&a);
}
END_TEST

/* Special files and links: a FIFO is refused without blocking, a directory is refused, a
 * symlink that leaves the checkpoint directory is refused while one inside it is followed. */
START_TEST(test_loader_special_files)
{
    char dir[1024], other[1024], p[1200], q[1200];
    uint8_t zeros[16] = {0};
    qref_st_archive a = {0};
    qref_error err = {0};
    qref_config cfg;

    fresh_dir(dir, sizeof dir, "special-fifo");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert(mkfifo(p, 0644) == 0);
    ck_assert_int_eq(qref__st_open(&a, dir, &err), QREF_EIO);
    ck_assert_msg_has(err, p);
    ck_assert_msg_has(err, "FIFO");
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    ck_assert(mkfifo(p, 0644) == 0);
    ck_assert_int_eq(qref_config_load(&cfg, dir, &err), QREF_EIO);
    ck_assert_msg_has(err, "FIFO");
    unlink(p);

    fresh_dir(dir, sizeof dir, "special-dir");
    snprintf(p, sizeof p, "%s/config.json", dir);
    ck_assert(mkdir(p, 0755) == 0 || errno == EEXIST);
    ck_assert_int_eq(qref_config_load(&cfg, dir, &err), QREF_EIO);
    ck_assert_msg_has(err, "a directory");
    rmdir(p);

    /* a shard linked from outside the checkpoint directory */
    fresh_dir(other, sizeof other, "special-outside");
    write_st(other, "shard-1.safetensors", "{" T1 "}", zeros, 16);
    fresh_dir(dir, sizeof dir, "special-link");
    write_text(dir, "model.safetensors.index.json", IDX("\"t\": \"shard-1.safetensors\""));
    snprintf(p, sizeof p, "%s/shard-1.safetensors", dir);
    snprintf(q, sizeof q, "%s/shard-1.safetensors", other);
    ck_assert(symlink(q, p) == 0);
    ck_assert_int_eq(qref__st_open(&a, dir, &err), QREF_EFORMAT);
    ck_assert_msg_has(err, "outside the checkpoint directory");
    ck_assert_msg_has(err, "shard-1.safetensors");
    unlink(p);
    /* ... and a link that stays inside is fine */
    write_st(dir, "shard-2.safetensors", "{" T1 "}", zeros, 16);
    ck_assert(symlink("shard-2.safetensors", p) == 0);
    ck_assert_msg(qref__st_open(&a, dir, &err) == QREF_OK, "%s", err.msg);
    qref__st_close(&a);
    unlink(p);

    /* a Hugging Face hub cache snapshot: its files are links into ../../blobs, which is fine */
    char hub[1024], blobs[1100], snap[1100];
    fresh_dir(hub, sizeof hub, "special-hub");
    snprintf(blobs, sizeof blobs, "%s/blobs", hub);
    snprintf(snap, sizeof snap, "%s/snapshots", hub);
    mkdir(blobs, 0755);
    mkdir(snap, 0755);
    snprintf(snap, sizeof snap, "%s/snapshots/rev1", hub);
    mkdir(snap, 0755);
    write_st(blobs, "shard-1.safetensors", "{" T1 "}", zeros, 16);
    snprintf(p, sizeof p, "%s/model.safetensors", snap);
    unlink(p);
    ck_assert(symlink("../../blobs/shard-1.safetensors", p) == 0);
    ck_assert_msg(qref__st_open(&a, snap, &err) == QREF_OK, "%s", err.msg);
    ck_assert_int_eq(a.ntensors, 1);
    qref__st_close(&a);
}
END_TEST

/* Opening one file directly appends to an archive; a failing second file leaves the first
 * intact. */
START_TEST(test_loader_st_open_file_append)
{
    char dir[1024], p1[1200], p2[1200];
    fresh_dir(dir, sizeof dir, "append");
    const float v[4] = {1, 2, 3, 4};
    write_st(dir, "shard-1.safetensors", "{" T1 "}", v, sizeof v);
    write_st(dir, "shard-2.safetensors", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
             v, 4);
    snprintf(p1, sizeof p1, "%s/shard-1.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/shard-2.safetensors", dir);
    qref_st_archive a = {0};
    qref_error err = {0};
    ck_assert_int_eq(qref__st_open_file(&a, p1, &err), QREF_OK);
    ck_assert_int_eq(qref__st_open_file(&a, p2, &err), QREF_EFORMAT);
    ck_assert_msg_has(err, "is also in");
    ck_assert_int_eq(a.nfiles, 1);
    ck_assert_int_eq(a.ntensors, 1);
    qref_st_tensor *t = qref__st_find(&a, "t");
    ck_assert(t != NULL && t->shape[0] == 2 && t->shape[1] == 2);
    qref__st_close(&a);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_loader_config_tiny_dense);
    tcase_add_test(tc, test_loader_config_tiny_moe);
    tcase_add_loop_test(tc, test_loader_config_text_only_forms, 0,
                        (int)(sizeof text_only_configs / sizeof text_only_configs[0]));
    tcase_add_test(tc, test_loader_config_interval_pattern);
    tcase_add_test(tc, test_loader_config_preprocessor);
    tcase_add_loop_test(tc, test_loader_config_bad_input, 0, (int)(sizeof config_bad / sizeof config_bad[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("safetensors");
    tcase_add_test(tc, test_loader_st_tiny_dense);
    tcase_add_test(tc, test_loader_st_tiny_moe);
    tcase_add_test(tc, test_loader_st_dtypes_in_file);
    tcase_add_test(tc, test_loader_st_sharded);
    tcase_add_loop_test(tc, test_loader_st_bad_input, 0, (int)(sizeof st_bad / sizeof st_bad[0]));
    tcase_add_test(tc, test_loader_st_open_file_append);
    tcase_add_test(tc, test_loader_special_files);
    suite_add_tcase(s, tc);

    tc = tcase_create("convert");
    tcase_add_test(tc, test_loader_convert_f16);
    tcase_add_test(tc, test_loader_convert_bf16);
    tcase_add_test(tc, test_loader_convert_f64_f32);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(loader_suite());
}
