/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the synthetic checkpoint writer (harness/synth/synth.c).
 *
 * Expected values are independent of the writer: the tiny preset is checked against the
 * committed tiny checkpoints as the engine loads them (configuration and weight count); the
 * small and medium shapes against their specification; BF16 values against a rounding to
 * 8 significant bits written here with ilogb/nearbyint (not the writer's bit trick); weight
 * ranges against the documented initialisation. Temporary files go under
 * LC_BINARY_DIR/synth-tmp.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qref.h"
#include "sha256.h"
#include "synth.h"
#include "check_main.h"

#define TMP_ROOT LC_BINARY_DIR "/synth-tmp"

/* ---------------------------------------------------------------- helpers */

/* Creates TMP_ROOT/name, empties it, writes its path into dir. */
static void fresh_dir(char *dir, size_t cap, const char *name)
{
    ck_assert_msg(mkdir(TMP_ROOT, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", TMP_ROOT, strerror(errno));
    int n = snprintf(dir, cap, "%s/%s", TMP_ROOT, name);
    ck_assert(n > 0 && (size_t)n < cap);
    ck_assert_msg(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "opendir %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Number of directory entries (other than . and ..), their total size, and whether any name
 * starts with '.' (a leftover temporary file). */
static int list_dir(const char *dir, long long *bytes, int *hidden)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "opendir %s", dir);
    int n = 0;
    *bytes = 0;
    *hidden = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1200];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ck_assert(stat(p, &st) == 0);
        n++;
        *hidden |= e->d_name[0] == '.';
        if (strstr(e->d_name, ".safetensors") && !strstr(e->d_name, ".json"))
            *bytes += (long long)st.st_size;
    }
    closedir(d);
    return n;
}

static int file_exists(const char *dir, const char *name)
{
    char p[1200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* Writes the tiny checkpoint described by o into TMP_ROOT/name and loads it. */
static void write_and_load(qref_model *m, char *dir, size_t cap, const char *name, const lc_synth_opts *o,
                           lc_synth_info *info)
{
    lc_error le = {0};
    qref_error qe = {0};
    fresh_dir(dir, cap, name);
    int rc = lc_synth_write(dir, o, info, &le);
    ck_assert_msg(rc == 0, "%s: lc_synth_write returned %d: %s", name, rc, le.msg);
    const qref_load_options lo = {.keep_bf16 = 0};  /* the weights' values, as qref_real */
    qref_status st = qref_model_load_with(m, dir, &lo, &qe);
    ck_assert_msg(st == QREF_OK, "%s: qref_model_load: %s", name, qe.msg);
}

/* BF16 rounding, round to nearest even on 8 significant bits, done arithmetically. */
static double round_bf16(double x)
{
    if (x == 0 || !isfinite(x))
        return x;
    int e = ilogb(x);
    double scale = ldexp(1.0, 7 - e);
    return nearbyint(x * scale) / scale; /* default rounding mode: ties to even */
}

/* ---------------------------------------------------------------- tiny: every variant loads and runs */

typedef struct {
    const char *name;
    int moe;
    lc_synth_dtype dtype;
    int shards;
    int fused;
} variant;

static const variant variants[] = {
    {"dense-f32-1", 0, LC_SYNTH_F32, 1, 0},  {"dense-bf16-1", 0, LC_SYNTH_BF16, 1, 0},
    {"dense-f32-3", 0, LC_SYNTH_F32, 3, 0},  {"dense-bf16-4", 0, LC_SYNTH_BF16, 4, 0},
    {"moe-f32-1", 1, LC_SYNTH_F32, 1, 0},    {"moe-bf16-1", 1, LC_SYNTH_BF16, 1, 0},
    {"moe-f32-5", 1, LC_SYNTH_F32, 5, 0},    {"moe-bf16-2", 1, LC_SYNTH_BF16, 2, 0},
    {"moe-fused-bf16-3", 1, LC_SYNTH_BF16, 3, 1},
};

START_TEST(test_synth_tiny_loads_and_runs)
{
    const variant *v = &variants[_i];
    lc_synth_opts o = lc_synth_defaults();
    o.moe = v->moe;
    o.dtype = v->dtype;
    o.shards = v->shards;
    o.fused_experts = v->fused;
    char dir[1024];
    lc_synth_info info;
    qref_model m, ref;
    qref_error qe = {0};
    write_and_load(&m, dir, sizeof dir, v->name, &o, &info);

    /* the same shapes as the committed checkpoint of the same kind */
    const char *committed = v->moe ? LC_SOURCE_DIR "/golden/tiny-moe" : LC_SOURCE_DIR "/golden/tiny-dense";
    ck_assert_msg(qref_model_load(&ref, committed, &qe) == QREF_OK, "%s", qe.msg);
    const qref_config *a = &m.cfg, *b = &ref.cfg;
    ck_assert_str_eq(a->model_type, b->model_type);
    ck_assert_int_eq(a->vocab_size, b->vocab_size);
    ck_assert_int_eq(a->hidden_size, b->hidden_size);
    ck_assert_int_eq(a->num_layers, b->num_layers);
    for (int l = 0; l < a->num_layers; l++)
        ck_assert_msg(a->layer_types[l] == b->layer_types[l], "%s: layer %d type %d, committed %d", v->name, l,
                      a->layer_types[l], b->layer_types[l]);
    ck_assert_int_eq(a->num_heads, b->num_heads);
    ck_assert_int_eq(a->num_kv_heads, b->num_kv_heads);
    ck_assert_int_eq(a->head_dim, b->head_dim);
    ck_assert_int_eq(a->rotary_dim, b->rotary_dim);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(a->mrope_section[i], b->mrope_section[i]);
    ck_assert_int_eq(a->lin_num_k_heads, b->lin_num_k_heads);
    ck_assert_int_eq(a->lin_num_v_heads, b->lin_num_v_heads);
    ck_assert_int_eq(a->lin_k_head_dim, b->lin_k_head_dim);
    ck_assert_int_eq(a->lin_v_head_dim, b->lin_v_head_dim);
    ck_assert_int_eq(a->lin_conv_kernel, b->lin_conv_kernel);
    ck_assert_int_eq(a->is_moe, b->is_moe);
    ck_assert_int_eq(a->num_experts, b->num_experts);
    ck_assert_int_eq(a->num_experts_per_tok, b->num_experts_per_tok);
    ck_assert_int_eq(a->moe_intermediate_size, b->moe_intermediate_size);
    ck_assert_int_eq(a->shared_expert_intermediate_size, b->shared_expert_intermediate_size);
    ck_assert_int_eq(a->tie_word_embeddings, b->tie_word_embeddings);
    ck_assert_int_eq(a->has_vision, 1);
    ck_assert_int_eq(a->vision.depth, b->vision.depth);
    ck_assert_int_eq(a->vision.hidden_size, b->vision.hidden_size);
    ck_assert_int_eq(a->vision.num_position_embeddings, b->vision.num_position_embeddings);
    ck_assert_int_eq(a->image_token_id, b->image_token_id);
    ck_assert_msg(m.block_len == ref.block_len, "%s: %zu weights, the committed checkpoint has %zu", v->name,
                  m.block_len, ref.block_len);
    ck_assert_msg((size_t)info.params == ref.block_len, "%s: info.params %lld, committed %zu", v->name,
                  (long long)info.params, ref.block_len);
    qref_model_free(&ref);

    /* files: the checkpoint and nothing else (no temporary left behind), sizes as reported */
    long long bytes;
    int hidden;
    int n = list_dir(dir, &bytes, &hidden);
    ck_assert_msg(!hidden, "%s: a temporary file was left in %s", v->name, dir);
    ck_assert_int_eq(n, 1 + v->shards + (v->shards > 1)); /* config, shards, index */
    ck_assert_int_eq(file_exists(dir, "model.safetensors"), v->shards == 1);
    ck_assert_int_eq(file_exists(dir, "model.safetensors.index.json"), v->shards > 1);
    ck_assert_int_eq(info.files, v->shards);
    ck_assert_msg(bytes == info.file_bytes, "%s: %lld bytes on disk, info says %lld", v->name, bytes,
                  (long long)info.file_bytes);
    ck_assert_int_eq(info.weight_bytes, info.params * (v->dtype == LC_SYNTH_BF16 ? 2 : 4));

    /* a prefill and a decode step run and give finite logits */
    qref_cache c;
    ck_assert(qref_cache_init(&c, &m, &qe) == QREF_OK);
    const int V = m.cfg.vocab_size;
    qref_real *logits = malloc(6 * (size_t)V * sizeof *logits);
    ck_assert(logits != NULL);
    int32_t ids[6] = {1, 17, 300, 5, 999 - 100, 42};
    qref_tokens in = {.ids = ids, .n = 5};
    qref_outputs out = {.logits = logits};
    ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s: prefill: %s", v->name, qe.msg);
    qref_tokens one = {.ids = ids + 5, .n = 1};
    out.logits = logits + 5 * (size_t)V;
    ck_assert_msg(qref_forward(&m, &c, &one, &out, &qe) == QREF_OK, "%s: decode: %s", v->name, qe.msg);
    ck_assert_int_eq(c.len, 6);
    size_t i = 0;
    while (i < 6 * (size_t)V && isfinite((double)logits[i]))
        i++;
    ck_assert_msg(i == 6 * (size_t)V, "%s: logit %zu is %g", v->name, i, (double)logits[i]);
    free(logits);
    qref_cache_free(&c);
    qref_model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- values */

/* Shards change where tensors live, not their values. */
START_TEST(test_synth_shards_keep_values)
{
    lc_synth_opts o = lc_synth_defaults();
    char d1[1024], d2[1024];
    qref_model a, b;
    write_and_load(&a, d1, sizeof d1, "same-1", &o, NULL);
    o.shards = 7;
    write_and_load(&b, d2, sizeof d2, "same-7", &o, NULL);
    ck_assert_uint_eq(a.block_len, b.block_len);
    size_t i = 0; /* first difference (one assert: a per-element assert is slow under valgrind) */
    while (i < a.block_len && a.block[i] == b.block[i])
        i++;
    ck_assert_msg(i == a.block_len, "weight %zu: %a in one file, %a in 7 shards", i, (double)a.block[i],
                  (double)b.block[i]);
    qref_model_free(&a);
    qref_model_free(&b);
}
END_TEST

/* A BF16 checkpoint holds the F32 checkpoint's values rounded to nearest even on 8 bits. */
START_TEST(test_synth_bf16_rounds_f32)
{
    lc_synth_opts o = lc_synth_defaults();
    o.moe = 1;
    char d1[1024], d2[1024];
    qref_model a, b;
    write_and_load(&a, d1, sizeof d1, "round-f32", &o, NULL);
    o.dtype = LC_SYNTH_BF16;
    write_and_load(&b, d2, sizeof d2, "round-bf16", &o, NULL);
    ck_assert_uint_eq(a.block_len, b.block_len);
    size_t changed = 0, bad = a.block_len;
    for (size_t i = 0; i < a.block_len && bad == a.block_len; i++) {
        if ((double)b.block[i] != round_bf16((double)a.block[i]))
            bad = i; /* first mismatch, reported below (one assert: fast under valgrind) */
        changed += a.block[i] != b.block[i];
    }
    ck_assert_msg(bad == a.block_len, "weight %zu: f32 %a, bf16 %a, expected %a", bad, (double)a.block[bad],
                  (double)b.block[bad], round_bf16((double)a.block[bad]));
    ck_assert_msg(changed > a.block_len / 2, "only %zu of %zu weights changed by rounding", changed, a.block_len);
    qref_model_free(&a);
    qref_model_free(&b);
}
END_TEST

/* Max |w| and rms of one weight array. */
static void stats(const qref_real *w, size_t n, double *maxabs, double *rms, double *min, double *max)
{
    double s = 0;
    *maxabs = 0;
    *min = INFINITY;
    *max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = (double)w[i];
        s += x * x;
        *maxabs = fabs(x) > *maxabs ? fabs(x) : *maxabs;
        *min = x < *min ? x : *min;
        *max = x > *max ? x : *max;
    }
    *rms = sqrt(s / (double)n);
}

/* Weights follow the documented initialisation: fan-in scaled matrices (uniform, std
 * 1/sqrt(fan_in)), (1 + w) norms with |w| <= 0.1, plain norms in [0.9, 1.1], A_log in
 * [0, log 16], dt_bias in [0.5, 1.5]. */
START_TEST(test_synth_weight_scale)
{
    lc_synth_opts o = lc_synth_defaults();
    char dir[1024];
    qref_model m;
    write_and_load(&m, dir, sizeof dir, "scale", &o, NULL);
    const qref_config *c = &m.cfg;
    const int H = c->hidden_size;
    const int C = 2 * c->lin_num_k_heads * c->lin_k_head_dim + c->lin_num_v_heads * c->lin_v_head_dim;
    struct {
        const char *what;
        const qref_real *w;
        size_t n;
        double fan_in;
    } mats[] = {
        {"layer 0 in_proj_qkv", m.layers[0].in_proj_qkv.real, (size_t)C * H, H},
        {"layer 0 out_proj", m.layers[0].out_proj.real, (size_t)H * c->lin_num_v_heads * c->lin_v_head_dim,
         c->lin_num_v_heads * c->lin_v_head_dim},
        {"layer 3 q_proj", m.layers[3].q_proj.real, (size_t)2 * c->num_heads * c->head_dim * H, H},
        {"layer 2 down_proj", m.layers[2].down_proj.real, (size_t)H * c->intermediate_size, c->intermediate_size},
        {"lm_head", m.lm_head.real, (size_t)c->vocab_size * H, H},
    };
    double mx, rms, lo, hi;
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        stats(mats[i].w, mats[i].n, &mx, &rms, &lo, &hi);
        double std = 1 / sqrt(mats[i].fan_in);
        ck_assert_msg(mx <= sqrt(3.0) * std * (1 + 1e-6), "%s: max |w| %g above sqrt(3)/sqrt(%g)", mats[i].what, mx,
                      mats[i].fan_in);
        ck_assert_msg(fabs(rms / std - 1) < 0.1, "%s: rms %g, expected %g within 10%%", mats[i].what, rms, std);
    }
    stats(m.layers[1].input_norm, (size_t)H, &mx, &rms, &lo, &hi);
    ck_assert_msg(mx <= 0.1 + 1e-7, "input_norm: max |w| %g", mx);
    stats(m.layers[1].gdn_norm, (size_t)c->lin_v_head_dim, &mx, &rms, &lo, &hi);
    ck_assert_msg(lo >= 0.9 - 1e-7 && hi <= 1.1 + 1e-7, "gdn norm in [%g, %g]", lo, hi);
    stats(m.layers[1].A_log, (size_t)c->lin_num_v_heads, &mx, &rms, &lo, &hi);
    ck_assert_msg(lo >= 0 && hi <= log(16.0) + 1e-6, "A_log in [%g, %g]", lo, hi);
    stats(m.layers[1].dt_bias, (size_t)c->lin_num_v_heads, &mx, &rms, &lo, &hi);
    ck_assert_msg(lo >= 0.5 && hi <= 1.5, "dt_bias in [%g, %g]", lo, hi);
    qref_model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- presets */

/* small and medium match their specification (config only: no weights written) */
START_TEST(test_synth_preset_shapes)
{
    struct {
        lc_synth_preset p;
        int moe;
        int vocab, hidden, layers, heads, kv, hd, kh, vh, kd, vd, inter, tie;
    } want[] = {
        {LC_SYNTH_SMALL, 0, 32000, 512, 8, 8, 2, 128, 4, 8, 128, 128, 1536, 0},
        {LC_SYNTH_SMALL, 1, 32000, 512, 8, 8, 2, 128, 4, 8, 128, 128, 0, 0},
        {LC_SYNTH_MEDIUM, 0, 151936, 1024, 24, 8, 2, 128, 8, 16, 128, 128, 2304, 1},
        {LC_SYNTH_MEDIUM, 1, 151936, 1024, 24, 8, 2, 128, 8, 16, 128, 128, 0, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        lc_synth_opts o = lc_synth_defaults();
        o.preset = want[i].p;
        o.moe = want[i].moe;
        char dir[1024], name[64];
        snprintf(name, sizeof name, "cfg-%s-%d", lc_synth_preset_name(o.preset), o.moe);
        fresh_dir(dir, sizeof dir, name);
        lc_error le = {0};
        ck_assert_msg(lc_synth_write_config(dir, &o, &le) == 0, "%s: %s", name, le.msg);
        qref_config c;
        qref_error qe = {0};
        ck_assert_msg(qref_config_load(&c, dir, &qe) == QREF_OK, "%s: %s", name, qe.msg);
        ck_assert_msg(c.vocab_size == want[i].vocab && c.hidden_size == want[i].hidden &&
                          c.num_layers == want[i].layers && c.num_heads == want[i].heads &&
                          c.num_kv_heads == want[i].kv && c.head_dim == want[i].hd &&
                          c.lin_num_k_heads == want[i].kh && c.lin_num_v_heads == want[i].vh &&
                          c.lin_k_head_dim == want[i].kd && c.lin_v_head_dim == want[i].vd &&
                          c.is_moe == want[i].moe && c.tie_word_embeddings == want[i].tie,
                      "%s: vocab %d hidden %d layers %d heads %d/%d dim %d gdn %d/%d x %d/%d moe %d tie %d", name,
                      c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
                      c.lin_num_k_heads, c.lin_num_v_heads, c.lin_k_head_dim, c.lin_v_head_dim, c.is_moe,
                      c.tie_word_embeddings);
        if (!want[i].moe)
            ck_assert_int_eq(c.intermediate_size, want[i].inter);
        for (int l = 0; l < c.num_layers; l++) /* 3 GDN : 1 attention */
            ck_assert_msg(c.layer_types[l] == ((l % 4 == 3) ? QREF_LAYER_FULL : QREF_LAYER_LINEAR),
                          "%s: layer %d has type %d", name, l, c.layer_types[l]);
        ck_assert_int_eq(c.has_vision, 1);
        ck_assert_int_eq(c.vision.out_hidden_size, want[i].hidden);
    }
}
END_TEST

/* medium is about 1 GB in BF16 (dense and MoE), twice that in F32 */
START_TEST(test_synth_medium_size)
{
    for (int moe = 0; moe < 2; moe++) {
        lc_synth_opts o = lc_synth_defaults();
        o.preset = LC_SYNTH_MEDIUM;
        o.moe = moe;
        o.dtype = LC_SYNTH_BF16;
        lc_synth_info bf, f;
        lc_error le = {0};
        ck_assert_msg(lc_synth_plan(&o, &bf, &le) == 0, "%s", le.msg);
        o.dtype = LC_SYNTH_F32;
        ck_assert_msg(lc_synth_plan(&o, &f, &le) == 0, "%s", le.msg);
        ck_assert_msg(bf.file_bytes > 900000000 && bf.file_bytes < 1100000000, "medium moe=%d: %lld bytes in BF16",
                      moe, (long long)bf.file_bytes);
        ck_assert_int_eq(f.weight_bytes, 2 * bf.weight_bytes);
    }
}
END_TEST

/* ---------------------------------------------------------------- malformed options */

typedef struct {
    const char *what;
    int preset, moe, dtype, shards;
} bad_case;

static const bad_case bad[] = {
    {"shards 0", LC_SYNTH_TINY, 0, LC_SYNTH_F32, 0},
    {"shards -3", LC_SYNTH_TINY, 0, LC_SYNTH_F32, -3},
    {"shards 100000", LC_SYNTH_TINY, 0, LC_SYNTH_F32, 100000},
    {"more shards than tensors", LC_SYNTH_TINY, 0, LC_SYNTH_F32, 5000},
    {"preset out of range", 7, 0, LC_SYNTH_F32, 1},
    {"preset negative", -1, 0, LC_SYNTH_F32, 1},
    {"dtype out of range", LC_SYNTH_TINY, 0, 9, 1},
    {"moe 2", LC_SYNTH_TINY, 2, LC_SYNTH_F32, 1},
};

START_TEST(test_synth_bad_options)
{
    const bad_case *b = &bad[_i];
    lc_synth_opts o = lc_synth_defaults();
    o.preset = (lc_synth_preset)b->preset;
    o.moe = b->moe;
    o.dtype = (lc_synth_dtype)b->dtype;
    o.shards = b->shards;
    char dir[1024];
    fresh_dir(dir, sizeof dir, "bad");
    lc_error le = {0};
    lc_synth_info info;
    int rc = lc_synth_write(dir, &o, &info, &le);
    ck_assert_msg(rc == LC_EINPUT, "%s: lc_synth_write returned %d (expected %d)", b->what, rc, LC_EINPUT);
    ck_assert_msg(le.msg[0] != '\0', "%s: no message", b->what);
    memset(&le, 0, sizeof le);
    ck_assert_msg(lc_synth_plan(&o, &info, &le) == LC_EINPUT && le.msg[0], "%s: lc_synth_plan accepted it", b->what);
    long long bytes;
    int hidden;
    int n = list_dir(dir, &bytes, &hidden);
    ck_assert_msg(n == 0, "%s: %d files written", b->what, n);
}
END_TEST

START_TEST(test_synth_bad_dir_and_names)
{
    lc_synth_opts o = lc_synth_defaults();
    lc_error le = {0};
    ck_assert_int_eq(lc_synth_write(TMP_ROOT "/no/such/dir", &o, NULL, &le), LC_EINPUT);
    ck_assert_msg(strstr(le.msg, "no/such/dir") != NULL, "message does not name the directory: %s", le.msg);
    ck_assert_int_eq(lc_synth_write(NULL, &o, NULL, &le), LC_EINPUT);
    ck_assert_int_eq(lc_synth_write(TMP_ROOT, NULL, NULL, &le), LC_EINPUT);
    o.preset = (lc_synth_preset)7;
    ck_assert_int_eq(lc_synth_write_config(TMP_ROOT, &o, &le), LC_EINPUT);
    ck_assert_msg(strstr(le.msg, "preset 7") != NULL, "message does not name the preset: %s", le.msg);
    o = lc_synth_defaults();

    const char *bad_presets[] = {"huge", "", "Tiny", "small ", "medium2"};
    for (size_t i = 0; i < sizeof bad_presets / sizeof bad_presets[0]; i++) {
        lc_synth_preset p = LC_SYNTH_SMALL;
        ck_assert_msg(lc_synth_parse_preset(bad_presets[i], &p) == -1, "preset '%s' accepted", bad_presets[i]);
        ck_assert_int_eq(p, LC_SYNTH_SMALL);
    }
    const char *bad_dtypes[] = {"f16", "F32", "bfloat16", "", "bf16x"};
    for (size_t i = 0; i < sizeof bad_dtypes / sizeof bad_dtypes[0]; i++) {
        lc_synth_dtype d = LC_SYNTH_BF16;
        ck_assert_msg(lc_synth_parse_dtype(bad_dtypes[i], &d) == -1, "dtype '%s' accepted", bad_dtypes[i]);
    }
    const char *presets[] = {"tiny", "small", "medium"};
    for (int i = 0; i < 3; i++) {
        lc_synth_preset p;
        ck_assert_int_eq(lc_synth_parse_preset(presets[i], &p), 0);
        ck_assert_int_eq(p, i);
        ck_assert_str_eq(lc_synth_preset_name(p), presets[i]);
    }
    lc_synth_dtype d;
    ck_assert_int_eq(lc_synth_parse_dtype("bf16", &d), 0);
    ck_assert_int_eq(d, LC_SYNTH_BF16);
    ck_assert_int_eq(lc_synth_parse_dtype("f32", &d), 0);
    ck_assert_int_eq(d, LC_SYNTH_F32);
    ck_assert_str_eq(lc_synth_preset_name((lc_synth_preset)9), "?");
    ck_assert_str_eq(lc_synth_dtype_name((lc_synth_dtype)9), "?");
}
END_TEST


/* ---------------------------------------------------------------- published-shape presets */

/* Parameter count of a Qwen3.5 VLM checkpoint from its sizes, written out here from the
 * architecture (not from the writer's table): text decoder, vision tower and one MTP layer. */
typedef struct {
    lc_synth_preset p;
    int moe, vocab, hidden, inter, layers, full_every, heads, kv, hd, kh, vh, kd, vd;
    int experts, topk, ei, si, tie, vdepth, vh_, vi, vheads, npos;
    int tensors;                /* expected tensor count, -1: not checked */
    long long params;           /* expected parameter count, -1: from the formula */
} pub;

static const pub pubs[] = {
    /* Qwen3.5-0.8B as published: 488 tensors, 873,438,784 parameters (its safetensors file) */
    {LC_SYNTH_Q35_0_8B, 0, 248320, 1024, 3584, 24, 4, 8, 2, 256, 16, 16, 128, 128, 0, 0, 0, 0, 1, 12, 768, 3072, 12,
     2304, 488, 873438784LL},
    {LC_SYNTH_Q35_4B_L4, 0, 248320, 2560, 9216, 4, 4, 16, 4, 256, 16, 32, 128, 128, 0, 0, 0, 0, 1, 4, 1024, 4096,
     16, 2304, -1, -1},
    {LC_SYNTH_Q35_35B_A3B_L2, 1, 248320, 2048, 0, 2, 2, 16, 2, 256, 16, 32, 128, 128, 256, 8, 512, 512, 0, 4, 1152,
     4304, 16, 2304, -1, -1},
};

static long long mlp_params(const pub *w)
{
    long long H = w->hidden;
    if (!w->moe)
        return 3LL * H * w->inter;
    return (long long)w->experts * H + 3LL * w->experts * H * w->ei + 3LL * H * w->si + H;
}

static long long attn_params(const pub *w)
{
    long long H = w->hidden, D = w->hd;
    return 2LL * w->heads * D * H + 2LL * w->kv * D * H + (long long)w->heads * D * H + 2 * D;
}

static long long formula_params(const pub *w, long long *loaded)
{
    long long H = w->hidden, V = w->vocab;
    long long C = 2LL * w->kh * w->kd + (long long)w->vh * w->vd;
    long long gdn = C * H + (long long)w->vh * w->vd * H + 2LL * w->vh * H + C * 4 + 2LL * w->vh + w->vd +
                    H * (long long)w->vh * w->vd;
    long long text = V * H * (w->tie ? 1 : 2) + H;
    for (int l = 0; l < w->layers; l++)
        text += 2 * H + ((l + 1) % w->full_every ? gdn : attn_params(w)) + mlp_params(w);
    long long Vh = w->vh_, Vi = w->vi;
    long long vis = Vh * 3 * 2 * 16 * 16 + Vh + (long long)w->npos * Vh +
                    w->vdepth * (4 * Vh + 3 * Vh * Vh + 3 * Vh + Vh * Vh + Vh + Vi * Vh + Vi + Vh * Vi + Vh) +
                    2 * Vh + 16 * Vh * Vh + 4 * Vh + H * 4 * Vh + H;
    long long mtp = 2 * H * H + 3 * H + 2 * H + attn_params(w) + mlp_params(w);
    *loaded = text + vis;
    return text + vis + mtp;
}

START_TEST(test_synth_published_sizes)
{
    const pub *w = &pubs[_i];
    lc_synth_opts o = lc_synth_defaults();
    o.preset = w->p;
    o.dtype = LC_SYNTH_F32; /* ignored: published presets are BF16 */
    o.shards = 7;           /* ignored too */
    lc_synth_info info;
    lc_error le = {0};
    ck_assert_msg(lc_synth_plan(&o, &info, &le) == 0, "%s", le.msg);
    long long loaded, params = formula_params(w, &loaded);
    if (w->params >= 0)
        ck_assert_msg(params == w->params, "%s: formula %lld, published %lld", lc_synth_preset_name(w->p), params,
                      w->params);
    ck_assert_msg(info.params == params && info.loaded_params == loaded, "%s: %lld params (%lld loaded), expected %lld (%lld)",
                  lc_synth_preset_name(w->p), (long long)info.params, (long long)info.loaded_params, params, loaded);
    if (w->tensors >= 0)
        ck_assert_int_eq(info.tensors, w->tensors);
    /* BF16 everywhere but A_log and the GDN norm weight (F32): 2 bytes a parameter plus 2 more
     * for each of those */
    long long gdn_layers = 0;
    for (int l = 0; l < w->layers; l++)
        gdn_layers += (l + 1) % w->full_every != 0;
    ck_assert_int_eq(info.weight_bytes, 2 * params + 2 * gdn_layers * (w->vh + w->vd));
    ck_assert_int_eq(lc_synth_preset_published(w->p), 1);
}
END_TEST

/* config.json and preprocessor_config.json of the published presets load in the engine with the
 * published values: rope theta 1e7 (text) / 1e4 (vision), partial rotary 64 of 256, MRoPE
 * [11, 11, 10] interleaved, eps 1e-6, tokens 248053/248054/248056/248057, mean/std 0.5, resize
 * bounds 65536 / 16777216 */
START_TEST(test_synth_published_config)
{
    const pub *w = &pubs[_i];
    lc_synth_opts o = lc_synth_defaults();
    o.preset = w->p;
    char dir[1024], name[64];
    snprintf(name, sizeof name, "cfg-%s", lc_synth_preset_name(o.preset));
    fresh_dir(dir, sizeof dir, name);
    lc_error le = {0};
    ck_assert_msg(lc_synth_write_config(dir, &o, &le) == 0, "%s: %s", name, le.msg);
    ck_assert(file_exists(dir, "preprocessor_config.json"));
    qref_config c;
    qref_error qe = {0};
    ck_assert_msg(qref_config_load(&c, dir, &qe) == QREF_OK, "%s: %s", name, qe.msg);
    ck_assert_str_eq(c.model_type, w->moe ? "qwen3_5_moe" : "qwen3_5");
    ck_assert_int_eq(c.vocab_size, w->vocab);
    ck_assert_int_eq(c.hidden_size, w->hidden);
    ck_assert_int_eq(c.num_layers, w->layers);
    ck_assert_int_eq(c.num_heads, w->heads);
    ck_assert_int_eq(c.num_kv_heads, w->kv);
    ck_assert_int_eq(c.head_dim, w->hd);
    ck_assert_int_eq(c.rotary_dim, 64);
    ck_assert_int_eq(c.mrope_section[0], 11);
    ck_assert_int_eq(c.mrope_section[1], 11);
    ck_assert_int_eq(c.mrope_section[2], 10);
    ck_assert_int_eq(c.mrope_interleaved, 1);
    ck_assert(c.rope_theta == 1e7);
    ck_assert(c.rms_norm_eps == 1e-6);
    ck_assert_int_eq(c.lin_num_k_heads, w->kh);
    ck_assert_int_eq(c.lin_num_v_heads, w->vh);
    ck_assert_int_eq(c.tie_word_embeddings, w->tie);
    ck_assert_int_eq(c.is_moe, w->moe);
    if (w->moe) {
        ck_assert_int_eq(c.num_experts, w->experts);
        ck_assert_int_eq(c.num_experts_per_tok, w->topk);
        ck_assert_int_eq(c.moe_intermediate_size, w->ei);
        ck_assert_int_eq(c.shared_expert_intermediate_size, w->si);
    } else {
        ck_assert_int_eq(c.intermediate_size, w->inter);
    }
    for (int l = 0; l < c.num_layers; l++)
        ck_assert_msg(c.layer_types[l] == ((l + 1) % w->full_every ? QREF_LAYER_LINEAR : QREF_LAYER_FULL),
                      "%s: layer %d has type %d", name, l, c.layer_types[l]);
    ck_assert_int_eq(c.image_token_id, 248056);
    ck_assert_int_eq(c.video_token_id, 248057);
    ck_assert_int_eq(c.vision_start_token_id, 248053);
    ck_assert_int_eq(c.vision_end_token_id, 248054);
    ck_assert_int_eq(c.has_vision, 1);
    ck_assert_int_eq(c.vision.depth, w->vdepth);
    ck_assert_int_eq(c.vision.hidden_size, w->vh_);
    ck_assert_int_eq(c.vision.intermediate_size, w->vi);
    ck_assert_int_eq(c.vision.num_heads, w->vheads);
    ck_assert_int_eq(c.vision.out_hidden_size, w->hidden);
    ck_assert_int_eq(c.vision.num_position_embeddings, w->npos);
    ck_assert(c.vision.rope_theta == 1e4);
    for (int k = 0; k < 3; k++)
        ck_assert(c.preproc.image_mean[k] == 0.5 && c.preproc.image_std[k] == 0.5);
    ck_assert_int_eq(c.preproc.min_pixels, 65536);
    ck_assert_int_eq(c.preproc.max_pixels, 16777216);
    ck_assert_int_eq(c.preproc.patch_size, 16);
}
END_TEST

/* ---------------------------------------------------------------- checkpoint hash and atomic writes */

/* Removes dir/name and the files in it (a checkpoint directory left by an earlier run). */
static void remove_sub(const char *dir, const char *name)
{
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/%s", dir, name);
    DIR *d = opendir(sub);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[1500];
        snprintf(p, sizeof p, "%s/%s", sub, e->d_name);
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(p);
    }
    closedir(d);
    ck_assert_msg(rmdir(sub) == 0, "rmdir %s: %s", sub, strerror(errno));
}

static void hash_of_dir(const char *dir, char hex[65])
{
    lc_error le = {0};
    ck_assert_msg(lc_synth_dir_hash(dir, hex, &le) == 0, "%s", le.msg);
}

/* the hash printed when writing, the hash streamed without writing and the hash of the files
 * read back agree; two writes give the same hash; another seed gives another */
START_TEST(test_synth_hash_agrees)
{
    lc_synth_opts o = lc_synth_defaults();
    o.moe = 1;
    o.shards = 3;
    o.dtype = LC_SYNTH_BF16;
    char root[1024], a[1100], b[1100];
    fresh_dir(root, sizeof root, "hash");
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    remove_sub(root, "a");
    remove_sub(root, "b");
    char ha[65], hb[65], hs[65], da[65], hc[65];
    lc_error le = {0};
    lc_synth_info ia, is;
    ck_assert_msg(lc_synth_write_checkpoint(a, &o, &ia, ha, &le) == 0, "%s", le.msg);
    ck_assert_msg(lc_synth_write_checkpoint(b, &o, NULL, hb, &le) == 0, "%s", le.msg);
    ck_assert_msg(lc_synth_hash(&o, &is, hs, &le) == 0, "%s", le.msg);
    hash_of_dir(a, da);
    ck_assert_str_eq(ha, hb);
    ck_assert_str_eq(ha, hs);
    ck_assert_str_eq(ha, da);
    ck_assert_int_eq(ia.file_bytes, is.file_bytes);
    /* the directory is complete: the checkpoint loads */
    qref_model m;
    qref_error qe = {0};
    ck_assert_msg(qref_model_load(&m, a, &qe) == QREF_OK, "%s", qe.msg);
    qref_model_free(&m);
    /* no temporary left beside or inside */
    long long bytes;
    int hidden;
    ck_assert_int_eq(list_dir(a, &bytes, &hidden), 5); /* 3 shards, index, config */
    ck_assert_int_eq(hidden, 0);
    ck_assert_int_eq(list_dir(root, &bytes, &hidden), 2);
    o.seed = 2;
    ck_assert_msg(lc_synth_hash(&o, NULL, hc, &le) == 0, "%s", le.msg);
    ck_assert_str_ne(ha, hc);
    /* an existing directory is refused, and left as it was */
    ck_assert_int_eq(lc_synth_write_checkpoint(a, &o, NULL, hc, &le), LC_EINPUT);
    ck_assert_msg(strstr(le.msg, "already exists") != NULL, "%s", le.msg);
    hash_of_dir(a, da);
    ck_assert_str_eq(ha, da);
}
END_TEST

/* the directory hash is the sha256sum listing's hash: checked on a directory of known files
 * (sha256 of "abc" and of "" from FIPS 180-2; the listing text hashed here by hand) */
START_TEST(test_synth_dir_hash_definition)
{
    char dir[1024], p[1200];
    fresh_dir(dir, sizeof dir, "listing");
    snprintf(p, sizeof p, "%s/b.txt", dir);
    FILE *f = fopen(p, "wb");
    ck_assert(f && fwrite("abc", 1, 3, f) == 3 && fclose(f) == 0);
    snprintf(p, sizeof p, "%s/a.json", dir);
    f = fopen(p, "wb");
    ck_assert(f && fclose(f) == 0);
    snprintf(p, sizeof p, "%s/.hidden", dir); /* names starting with '.' are not part of it */
    f = fopen(p, "wb");
    ck_assert(f && fwrite("x", 1, 1, f) == 1 && fclose(f) == 0);
    const char *listing = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.json\n"
                          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  b.txt\n";
    lc_sha256 s;
    uint8_t d[32];
    char want[65], got[65];
    lc_sha256_init(&s);
    lc_sha256_update(&s, listing, strlen(listing));
    lc_sha256_final(&s, d);
    lc_sha256_hex(d, want);
    hash_of_dir(dir, got);
    ck_assert_str_eq(got, want);
    lc_error le = {0};
    ck_assert_int_eq(lc_synth_dir_hash(TMP_ROOT "/no/such", got, &le), LC_EINPUT);
    ck_assert(le.msg[0]);
}
END_TEST

/* a write that fails part-way (file size limit) leaves neither OUT nor a temporary directory */
START_TEST(test_synth_partial_write_leaves_nothing)
{
    char root[1024], out[1100];
    fresh_dir(root, sizeof root, "partial");
    remove_sub(root, "ckpt");
    snprintf(out, sizeof out, "%s/ckpt", root);
    struct rlimit old, lim;
    ck_assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 200000; /* bytes: the first shard of the tiny checkpoint is larger */
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    lc_synth_opts o = lc_synth_defaults();
    o.shards = 2;
    char hex[65];
    lc_error le = {0};
    int rc = lc_synth_write_checkpoint(out, &o, NULL, hex, &le);
    ck_assert(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, prev);
    ck_assert_msg(rc == LC_EINPUT, "returned %d: %s", rc, le.msg);
    ck_assert_msg(strstr(le.msg, "write failed") != NULL, "%s", le.msg);
    struct stat st;
    ck_assert_msg(stat(out, &st) != 0, "%s exists after a failed write", out);
    long long bytes;
    int hidden;
    ck_assert_msg(list_dir(root, &bytes, &hidden) == 0, "%s: a temporary directory was left", root);
}
END_TEST

/* checkpoint_synth: a missing directory is written (parent created) and verified; an existing
 * one is verified from disk and left alone; a wrong expected hash or an altered file is a
 * one-line input error naming the directory, both hashes and the synth command */
START_TEST(test_synth_ensure)
{
    lc_synth_opts o = lc_synth_defaults();
    char root[1024], dir[1100], want[65], p[1200], wrong[65];
    fresh_dir(root, sizeof root, "ensure");
    remove_sub(root, "ckpts/tiny-s1");
    remove_sub(root, "ckpts");
    snprintf(dir, sizeof dir, "%s/ckpts/tiny-s1", root);
    lc_error le = {0};
    ck_assert_msg(lc_synth_hash(&o, NULL, want, &le) == 0, "%s", le.msg); /* in memory, nothing written */
    int written = -1;
    ck_assert_msg(lc_synth_ensure(dir, &o, want, &written, &le) == 0, "%s", le.msg);
    ck_assert_int_eq(written, 1);
    char got[65];
    hash_of_dir(dir, got);
    ck_assert_str_eq(got, want);
    ck_assert_msg(lc_synth_ensure(dir, &o, want, &written, &le) == 0, "%s", le.msg);
    ck_assert_int_eq(written, 0);
    /* the case names another hash */
    memcpy(wrong, want, sizeof wrong);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    ck_assert_int_eq(lc_synth_ensure(dir, &o, wrong, &written, &le), LC_EINPUT);
    ck_assert_msg(strstr(le.msg, dir) && strstr(le.msg, want) && strstr(le.msg, wrong) &&
                      strstr(le.msg, "logitcheck synth --preset tiny --seed 1 --out"),
                  "%s", le.msg);
    /* a file altered on disk */
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "ab");
    ck_assert(f && fwrite(" ", 1, 1, f) == 1 && fclose(f) == 0);
    ck_assert_int_eq(lc_synth_ensure(dir, &o, want, &written, &le), LC_EINPUT);
    ck_assert_int_eq(written, 0);
    ck_assert_msg(strstr(le.msg, "stale or altered") != NULL, "%s", le.msg);
    hash_of_dir(dir, got); /* left as it was found */
    ck_assert_str_ne(got, want);
}
END_TEST

static Suite *synth_suite(void)
{
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("write");
    tcase_add_loop_test(tc, test_synth_tiny_loads_and_runs, 0, (int)(sizeof variants / sizeof variants[0]));
    tcase_add_test(tc, test_synth_shards_keep_values);
    tcase_add_test(tc, test_synth_bf16_rounds_f32);
    tcase_add_test(tc, test_synth_weight_scale);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("presets");
    tcase_add_test(tp, test_synth_preset_shapes);
    tcase_add_test(tp, test_synth_medium_size);
    tcase_add_loop_test(tp, test_synth_published_sizes, 0, (int)(sizeof pubs / sizeof pubs[0]));
    tcase_add_loop_test(tp, test_synth_published_config, 0, (int)(sizeof pubs / sizeof pubs[0]));
    suite_add_tcase(s, tp);
    TCase *th = tcase_create("hash");
    tcase_add_test(th, test_synth_hash_agrees);
    tcase_add_test(th, test_synth_dir_hash_definition);
    tcase_add_test(th, test_synth_partial_write_leaves_nothing);
    tcase_add_test(th, test_synth_ensure);
    suite_add_tcase(s, th);
    TCase *tb = tcase_create("errors");
    tcase_add_loop_test(tb, test_synth_bad_options, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tb, test_synth_bad_dir_and_names);
    suite_add_tcase(s, tb);
    return s;
}

int main(void)
{
    return lc_check_run(synth_suite());
}
