/* SPDX-License-Identifier: MIT */
/*
 * Checkpoint configuration: DIR/config.json (and DIR/preprocessor_config.json when present)
 * parsed into a qref_config.
 *
 * Two layouts are accepted:
 *   VLM        top level holds text_config, vision_config, the multimodal token ids and
 *              (usually) tie_word_embeddings;
 *   text-only  the text fields sit at the top level and there is no vision tower.
 * Rotary settings come from `rope_parameters` or from the older `rope_theta` + `rope_scaling`
 * (+ top-level `partial_rotary_factor`); the layer pattern from `layer_types` or
 * `full_attention_interval`.
 *
 * Defaults follow the transformers configuration classes where they are part of the model's
 * definition (rope_theta 10000, partial_rotary_factor 0.25, full_attention_interval 4,
 * hidden_act silu, attention_bias false, vision rope theta 10000, in_channels 3); every field
 * that sets a tensor shape is required. Anything this engine does not implement (another
 * rope type, attention bias, another activation, dense layers inside an MoE stack) is
 * rejected with QREF_EUNSUPPORTED rather than silently run differently.
 *
 * Every message starts with the file path and the dotted field name, e.g.
 *   golden/x/config.json: text_config.num_hidden_layers: expected an integer, found string
 */
#define _POSIX_C_SOURCE 200809L

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qref_internal.h"

/* ---------------------------------------------------------------- JSON access with messages */

/* One JSON object being read: the file it came from and the dotted prefix of its fields
 * ("" at the top level, "text_config." inside the text part, ...). */
typedef struct {
    const cJSON *obj;
    const char *file;
    char prefix[96];
} jctx;

static jctx jctx_child(const jctx *parent, const cJSON *obj, const char *key)
{
    jctx c;
    c.obj = obj;
    c.file = parent->file;
    int n = snprintf(c.prefix, sizeof c.prefix, "%s%s.", parent->prefix, key);
    assert(n > 0 && n < (int)sizeof c.prefix); /* keys are short literals */
    (void)n;
    return c;
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsObject(v)) return "object";
    return "invalid value";
}

/* A field that is absent or JSON null counts as absent. */
static const cJSON *jfield(const jctx *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static qref_status jfail(qref_error *err, qref_status code, const jctx *c, const char *key,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static qref_status jfail(qref_error *err, qref_status code, const jctx *c, const char *key,
                         const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return qref__fail(err, code, "%s: %s%s: %s", c->file, c->prefix, key, what);
}

static qref_status jmissing(qref_error *err, const jctx *c, const char *key)
{
    return jfail(err, QREF_EFORMAT, c, key, "required field is missing");
}

/* Integer value of v (a number with an integral value inside int range). */
static qref_status jint_value(const jctx *c, const char *key, const cJSON *v, int *out,
                              qref_error *err)
{
    if (!cJSON_IsNumber(v))
        return jfail(err, QREF_EFORMAT, c, key, "expected an integer, found %s", json_type_name(v));
    double d = v->valuedouble;
    if (d != floor(d) || d < INT_MIN || d > INT_MAX)
        return jfail(err, QREF_EFORMAT, c, key, "expected an integer, found %g", d);
    *out = (int)d;
    return QREF_OK;
}

/* Reads an integer field >= min. Absent: an error when required, else *out = def. */
static qref_status jint(const jctx *c, const char *key, int required, int def, int min, int *out,
                        qref_error *err)
{
    const cJSON *v = jfield(c, key);
    if (!v) {
        if (required)
            return jmissing(err, c, key);
        *out = def;
        return QREF_OK;
    }
    qref_status st = jint_value(c, key, v, out, err);
    if (st != QREF_OK)
        return st;
    if (*out < min)
        return jfail(err, QREF_EFORMAT, c, key, "expected an integer >= %d, found %d", min, *out);
    return QREF_OK;
}

static qref_status jnum(const jctx *c, const char *key, int required, double def, double *out,
                        qref_error *err)
{
    const cJSON *v = jfield(c, key);
    if (!v) {
        if (required)
            return jmissing(err, c, key);
        *out = def;
        return QREF_OK;
    }
    if (!cJSON_IsNumber(v))
        return jfail(err, QREF_EFORMAT, c, key, "expected a number, found %s", json_type_name(v));
    *out = v->valuedouble;
    return QREF_OK;
}

static qref_status jbool(const jctx *c, const char *key, int def, int *out, qref_error *err)
{
    const cJSON *v = jfield(c, key);
    if (!v) {
        *out = def;
        return QREF_OK;
    }
    if (!cJSON_IsBool(v))
        return jfail(err, QREF_EFORMAT, c, key, "expected true or false, found %s", json_type_name(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return QREF_OK;
}

/* *out points into the JSON tree (valid until it is deleted), or is def when absent. */
static qref_status jstr(const jctx *c, const char *key, int required, const char *def,
                        const char **out, qref_error *err)
{
    const cJSON *v = jfield(c, key);
    if (!v) {
        if (required)
            return jmissing(err, c, key);
        *out = def;
        return QREF_OK;
    }
    if (!cJSON_IsString(v))
        return jfail(err, QREF_EFORMAT, c, key, "expected a string, found %s", json_type_name(v));
    *out = v->valuestring;
    return QREF_OK;
}

/* An optional object field; *out = NULL when absent. */
static qref_status jobj(const jctx *c, const char *key, const cJSON **out, qref_error *err)
{
    const cJSON *v = jfield(c, key);
    *out = NULL;
    if (!v)
        return QREF_OK;
    if (!cJSON_IsObject(v))
        return jfail(err, QREF_EFORMAT, c, key, "expected an object, found %s", json_type_name(v));
    *out = v;
    return QREF_OK;
}

#define TRY(expr)                          \
    do {                                   \
        qref_status try_st_ = (expr);      \
        if (try_st_ != QREF_OK)            \
            return try_st_;                \
    } while (0)

/* ---------------------------------------------------------------- reading a JSON file */

/* Parses PATH into *root (caller deletes): a regular file of at most QREF__MAX_CONFIG_BYTES
 * resolving inside ROOT (may be NULL), JSON by the rules of qref__json_parse. A file that does
 * not exist gives QREF_EIO with *enoent set, so optional files can be told apart from
 * unreadable ones. */
static qref_status json_load(const char *path, const char *root_dir, cJSON **root, int *enoent, qref_error *err)
{
    *root = NULL;
    char *buf;
    size_t len;
    qref_status st = qref__read_file(path, root_dir, QREF__MAX_CONFIG_BYTES, &buf, &len, enoent, err);
    if (st != QREF_OK)
        return st;
    st = qref__json_parse(path, NULL, buf, len, root, err);
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- text decoder */

static qref_status parse_model_type(const jctx *text, const jctx *top, qref_config *cfg,
                                    qref_error *err)
{
    const char *mt = NULL;
    const jctx *where = text;
    TRY(jstr(text, "model_type", 0, NULL, &mt, err));
    if (!mt && text != top) {
        where = top;
        TRY(jstr(top, "model_type", 0, NULL, &mt, err));
    }
    if (!mt)
        return jmissing(err, text, "model_type");
    if (!strcmp(mt, "qwen3_5") || !strcmp(mt, "qwen3_5_text"))
        snprintf(cfg->model_type, sizeof cfg->model_type, "qwen3_5");
    else if (!strcmp(mt, "qwen3_5_moe") || !strcmp(mt, "qwen3_5_moe_text"))
        snprintf(cfg->model_type, sizeof cfg->model_type, "qwen3_5_moe");
    else if (!strcmp(mt, "qwen3_next"))
        /* same blocks, but the GDN input projections are stored fused and per key head
         * (in_proj_qkvz, in_proj_ba) and the weights live under model.layers.* */
        return jfail(err, QREF_EUNSUPPORTED, where, "model_type",
                     "'qwen3_next' is not supported (fused in_proj_qkvz/in_proj_ba layout); "
                     "expected qwen3_5, qwen3_5_text, qwen3_5_moe or qwen3_5_moe_text");
    else
        return jfail(err, QREF_EUNSUPPORTED, where, "model_type",
                     "'%s' is not supported; expected qwen3_5, qwen3_5_text, qwen3_5_moe or "
                     "qwen3_5_moe_text", mt);
    return QREF_OK;
}

static qref_status parse_layer_types(const jctx *t, qref_config *cfg, qref_error *err)
{
    const cJSON *lt = jfield(t, "layer_types");
    if (lt) {
        if (!cJSON_IsArray(lt))
            return jfail(err, QREF_EFORMAT, t, "layer_types", "expected an array, found %s",
                         json_type_name(lt));
        int n = cJSON_GetArraySize(lt);
        if (n != cfg->num_layers)
            return jfail(err, QREF_EFORMAT, t, "layer_types",
                         "expected %d entries (num_hidden_layers), found %d", cfg->num_layers, n);
        int i = 0;
        for (const cJSON *e = lt->child; e; e = e->next, i++) {
            if (cJSON_IsString(e) && !strcmp(e->valuestring, "linear_attention"))
                cfg->layer_types[i] = QREF_LAYER_LINEAR;
            else if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention"))
                cfg->layer_types[i] = QREF_LAYER_FULL;
            else
                return jfail(err, QREF_EFORMAT, t, "layer_types",
                             "entry %d: expected \"linear_attention\" or \"full_attention\", found %s%s%s",
                             i, cJSON_IsString(e) ? "'" : "",
                             cJSON_IsString(e) ? e->valuestring : json_type_name(e),
                             cJSON_IsString(e) ? "'" : "");
        }
        return QREF_OK;
    }
    int interval;
    TRY(jint(t, "full_attention_interval", 0, 4, 1, &interval, err));
    for (int i = 0; i < cfg->num_layers; i++)
        cfg->layer_types[i] = ((i + 1) % interval == 0) ? QREF_LAYER_FULL : QREF_LAYER_LINEAR;
    return QREF_OK;
}

/* rope_parameters (new form) or rope_scaling + rope_theta (old form). Values inside the dict
 * win over top-level ones; rope_theta defaults to 10000 and partial_rotary_factor to 0.25. */
static qref_status parse_rope(const jctx *t, qref_config *cfg, qref_error *err)
{
    const cJSON *rp = NULL;
    const char *rp_key = "rope_parameters";
    TRY(jobj(t, "rope_parameters", &rp, err));
    if (!rp) {
        rp_key = "rope_scaling";
        TRY(jobj(t, "rope_scaling", &rp, err));
    }
    static const cJSON empty_obj = {.type = cJSON_Object};
    jctx r = jctx_child(t, rp ? rp : &empty_obj, rp_key);

    if (jfield(&r, "full_attention") || jfield(&r, "linear_attention"))
        return jfail(err, QREF_EUNSUPPORTED, t, rp_key, "per-layer-type rope parameters are not supported");

    const char *type = NULL;
    const char *type_key = "rope_type";
    TRY(jstr(&r, "rope_type", 0, NULL, &type, err));
    if (!type) {
        type_key = "type";
        TRY(jstr(&r, "type", 0, "default", &type, err));
    }
    if (strcmp(type, "default") != 0)
        return jfail(err, QREF_EUNSUPPORTED, &r, type_key,
                     "rope type '%s' is not supported (only 'default')", type);

    if (jfield(&r, "rope_theta"))
        TRY(jnum(&r, "rope_theta", 1, 0, &cfg->rope_theta, err));
    else
        TRY(jnum(t, "rope_theta", 0, 10000.0, &cfg->rope_theta, err));
    if (!(cfg->rope_theta > 0))
        return jfail(err, QREF_EFORMAT, jfield(&r, "rope_theta") ? &r : t, "rope_theta",
                     "expected a positive number, found %g", cfg->rope_theta);

    double prf;
    const jctx *prf_ctx = jfield(&r, "partial_rotary_factor") ? &r : t;
    TRY(jnum(prf_ctx, "partial_rotary_factor", 0, 0.25, &prf, err));
    if (!(prf > 0 && prf <= 1))
        return jfail(err, QREF_EFORMAT, prf_ctx, "partial_rotary_factor",
                     "expected a number in (0, 1], found %g", prf);
    cfg->rotary_dim = (int)(cfg->head_dim * prf);
    if (cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return jfail(err, QREF_EFORMAT, prf_ctx, "partial_rotary_factor",
                     "head_dim %d x %g = %d rotary dims, expected a positive even number",
                     cfg->head_dim, prf, cfg->rotary_dim);

    TRY(jbool(&r, "mrope_interleaved", 1, &cfg->mrope_interleaved, err));
    if (!cfg->mrope_interleaved)
        return jfail(err, QREF_EUNSUPPORTED, &r, "mrope_interleaved",
                     "false is not supported: Qwen3.5 interleaves the T/H/W frequencies");

    int half = cfg->rotary_dim / 2;
    const cJSON *ms = jfield(&r, "mrope_section");
    if (ms) {
        if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
            return jfail(err, QREF_EFORMAT, &r, "mrope_section", "expected an array of 3 integers, found %s",
                         cJSON_IsArray(ms) ? "an array of another length" : json_type_name(ms));
        int i = 0;
        for (const cJSON *e = ms->child; e; e = e->next, i++) {
            char key[32];
            snprintf(key, sizeof key, "mrope_section[%d]", i);
            TRY(jint_value(&r, key, e, &cfg->mrope_section[i], err));
            if (cfg->mrope_section[i] < 0)
                return jfail(err, QREF_EFORMAT, &r, key, "expected an integer >= 0, found %d",
                             cfg->mrope_section[i]);
        }
    } else if (cfg->has_vision) {
        /* transformers' Qwen3.5 rotary falls back to [11, 11, 10] (rotary_dim 64) */
        cfg->mrope_section[0] = 11;
        cfg->mrope_section[1] = 11;
        cfg->mrope_section[2] = 10;
    } else {
        /* text only: T == H == W for every token, so any split gives the same angles */
        cfg->mrope_section[0] = half;
    }
    int sum = cfg->mrope_section[0] + cfg->mrope_section[1] + cfg->mrope_section[2];
    if (sum != half)
        return jfail(err, QREF_EFORMAT, &r, "mrope_section",
                     "[%d, %d, %d]%s sums to %d, expected rotary_dim / 2 = %d (head_dim %d x partial_rotary_factor %g)",
                     cfg->mrope_section[0], cfg->mrope_section[1], cfg->mrope_section[2],
                     ms ? "" : " (default)", sum, half, cfg->head_dim, prf);
    return QREF_OK;
}

static qref_status parse_moe(const jctx *t, qref_config *cfg, qref_error *err)
{
    int is_moe = !strcmp(cfg->model_type, "qwen3_5_moe");
    if (!is_moe) {
        int e = 0;
        TRY(jint(t, "num_experts", 0, 0, 0, &e, err));
        if (e > 0)
            return jfail(err, QREF_EFORMAT, t, "num_experts",
                         "%d experts given but model_type is the dense qwen3_5", e);
        return QREF_OK;
    }
    cfg->is_moe = 1;
    TRY(jint(t, "num_experts", 1, 0, 1, &cfg->num_experts, err));
    TRY(jint(t, "num_experts_per_tok", 1, 0, 1, &cfg->num_experts_per_tok, err));
    TRY(jint(t, "moe_intermediate_size", 1, 0, 1, &cfg->moe_intermediate_size, err));
    TRY(jint(t, "shared_expert_intermediate_size", 1, 0, 1, &cfg->shared_expert_intermediate_size, err));
    if (cfg->num_experts_per_tok > cfg->num_experts)
        return jfail(err, QREF_EFORMAT, t, "num_experts_per_tok", "%d exceeds num_experts %d",
                     cfg->num_experts_per_tok, cfg->num_experts);
    const cJSON *mlp_only = jfield(t, "mlp_only_layers");
    if (mlp_only && !(cJSON_IsArray(mlp_only) && cJSON_GetArraySize(mlp_only) == 0))
        return jfail(err, QREF_EUNSUPPORTED, t, "mlp_only_layers",
                     "dense layers inside an MoE model are not supported (expected an empty list)");
    int step;
    TRY(jint(t, "decoder_sparse_step", 0, 1, 1, &step, err));
    if (step != 1)
        return jfail(err, QREF_EUNSUPPORTED, t, "decoder_sparse_step",
                     "%d is not supported (every layer must be sparse: 1)", step);
    return QREF_OK;
}

static qref_status parse_text(const jctx *t, const jctx *top, qref_config *cfg, qref_error *err)
{
    TRY(parse_model_type(t, top, cfg, err));
    int moe = !strcmp(cfg->model_type, "qwen3_5_moe");

    TRY(jint(t, "vocab_size", 1, 0, 1, &cfg->vocab_size, err));
    TRY(jint(t, "hidden_size", 1, 0, 1, &cfg->hidden_size, err));
    /* the MoE text config has no dense MLP width */
    TRY(jint(t, "intermediate_size", !moe, 0, moe ? 0 : 1, &cfg->intermediate_size, err));
    TRY(jint(t, "num_hidden_layers", 1, 0, 1, &cfg->num_layers, err));
    if (cfg->num_layers > QREF_MAX_LAYERS)
        return jfail(err, QREF_EUNSUPPORTED, t, "num_hidden_layers", "%d layers exceed the limit of %d",
                     cfg->num_layers, QREF_MAX_LAYERS);
    TRY(jint(t, "num_attention_heads", 1, 0, 1, &cfg->num_heads, err));
    TRY(jint(t, "num_key_value_heads", 1, 0, 1, &cfg->num_kv_heads, err));
    if (cfg->num_heads % cfg->num_kv_heads)
        return jfail(err, QREF_EFORMAT, t, "num_key_value_heads",
                     "num_attention_heads %d is not a multiple of %d", cfg->num_heads, cfg->num_kv_heads);
    if (jfield(t, "head_dim")) {
        TRY(jint(t, "head_dim", 1, 0, 1, &cfg->head_dim, err));
    } else {
        if (cfg->hidden_size % cfg->num_heads)
            return jfail(err, QREF_EFORMAT, t, "head_dim",
                         "absent, and hidden_size %d is not a multiple of num_attention_heads %d",
                         cfg->hidden_size, cfg->num_heads);
        cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    }
    TRY(jnum(t, "rms_norm_eps", 1, 0, &cfg->rms_norm_eps, err));
    if (!(cfg->rms_norm_eps > 0))
        return jfail(err, QREF_EFORMAT, t, "rms_norm_eps", "expected a positive number, found %g",
                     cfg->rms_norm_eps);

    const char *act;
    TRY(jstr(t, "hidden_act", 0, "silu", &act, err));
    if (strcmp(act, "silu") != 0)
        return jfail(err, QREF_EUNSUPPORTED, t, "hidden_act", "'%s' is not supported (only 'silu')", act);
    int bias;
    TRY(jbool(t, "attention_bias", 0, &bias, err));
    if (bias)
        return jfail(err, QREF_EUNSUPPORTED, t, "attention_bias", "true is not supported (Qwen3.5 has none)");

    TRY(jint(t, "linear_num_key_heads", 1, 0, 1, &cfg->lin_num_k_heads, err));
    TRY(jint(t, "linear_num_value_heads", 1, 0, 1, &cfg->lin_num_v_heads, err));
    TRY(jint(t, "linear_key_head_dim", 1, 0, 1, &cfg->lin_k_head_dim, err));
    TRY(jint(t, "linear_value_head_dim", 1, 0, 1, &cfg->lin_v_head_dim, err));
    TRY(jint(t, "linear_conv_kernel_dim", 1, 0, 1, &cfg->lin_conv_kernel, err));
    if (cfg->lin_num_v_heads % cfg->lin_num_k_heads)
        return jfail(err, QREF_EFORMAT, t, "linear_num_value_heads",
                     "%d is not a multiple of linear_num_key_heads %d", cfg->lin_num_v_heads,
                     cfg->lin_num_k_heads);

    TRY(parse_layer_types(t, cfg, err));
    TRY(parse_rope(t, cfg, err));
    TRY(parse_moe(t, cfg, err));

    /* the top-level flag governs a VLM; the text part's is the fallback */
    const jctx *tie_ctx = jfield(top, "tie_word_embeddings") ? top : t;
    TRY(jbool(tie_ctx, "tie_word_embeddings", 0, &cfg->tie_word_embeddings, err));
    return QREF_OK;
}

/* ---------------------------------------------------------------- vision tower */

static qref_status parse_vision(const jctx *v, const jctx *top, qref_config *cfg, qref_error *err)
{
    qref_vision_config *vc = &cfg->vision;
    TRY(jint(v, "depth", 1, 0, 1, &vc->depth, err));
    TRY(jint(v, "hidden_size", 1, 0, 1, &vc->hidden_size, err));
    TRY(jint(v, "intermediate_size", 1, 0, 1, &vc->intermediate_size, err));
    TRY(jint(v, "num_heads", 1, 0, 1, &vc->num_heads, err));
    TRY(jint(v, "patch_size", 1, 0, 1, &vc->patch_size, err));
    TRY(jint(v, "temporal_patch_size", 1, 0, 1, &vc->temporal_patch_size, err));
    TRY(jint(v, "spatial_merge_size", 1, 0, 1, &vc->spatial_merge_size, err));
    TRY(jint(v, "in_channels", 0, 3, 1, &vc->in_channels, err));
    TRY(jint(v, "out_hidden_size", 1, 0, 1, &vc->out_hidden_size, err));
    TRY(jint(v, "num_position_embeddings", 1, 0, 1, &vc->num_position_embeddings, err));

    if (vc->hidden_size % vc->num_heads || (vc->hidden_size / vc->num_heads) % 4)
        return jfail(err, QREF_EFORMAT, v, "num_heads",
                     "hidden_size %d / num_heads %d must give a head dim divisible by 4 (2-D rotary)",
                     vc->hidden_size, vc->num_heads);
    int side = (int)lround(sqrt((double)vc->num_position_embeddings));
    if (side * side != vc->num_position_embeddings)
        return jfail(err, QREF_EFORMAT, v, "num_position_embeddings", "%d is not a perfect square",
                     vc->num_position_embeddings);
    if (vc->out_hidden_size != cfg->hidden_size)
        return jfail(err, QREF_EFORMAT, v, "out_hidden_size", "%d differs from the text hidden_size %d",
                     vc->out_hidden_size, cfg->hidden_size);

    const char *act;
    TRY(jstr(v, "hidden_act", 0, "gelu_pytorch_tanh", &act, err));
    if (strcmp(act, "gelu_pytorch_tanh") != 0)
        return jfail(err, QREF_EUNSUPPORTED, v, "hidden_act",
                     "'%s' is not supported (only 'gelu_pytorch_tanh')", act);

    const cJSON *rp = NULL;
    TRY(jobj(v, "rope_parameters", &rp, err));
    vc->rope_theta = 10000.0;
    if (rp) {
        jctx r = jctx_child(v, rp, "rope_parameters");
        const char *type;
        TRY(jstr(&r, "rope_type", 0, "axial", &type, err));
        /* transformers maps "default" to the vision tower's axial rotary */
        if (strcmp(type, "axial") != 0 && strcmp(type, "default") != 0)
            return jfail(err, QREF_EUNSUPPORTED, &r, "rope_type",
                         "'%s' is not supported (only 'axial')", type);
        TRY(jnum(&r, "rope_theta", 0, 10000.0, &vc->rope_theta, err));
        if (!(vc->rope_theta > 0))
            return jfail(err, QREF_EFORMAT, &r, "rope_theta", "expected a positive number, found %g",
                         vc->rope_theta);
    }

    TRY(jint(top, "image_token_id", 1, 0, 0, &cfg->image_token_id, err));
    TRY(jint(top, "vision_start_token_id", 1, 0, 0, &cfg->vision_start_token_id, err));
    TRY(jint(top, "vision_end_token_id", 1, 0, 0, &cfg->vision_end_token_id, err));
    TRY(jint(top, "video_token_id", 0, -1, -1, &cfg->video_token_id, err));
    const char *ids[] = {"image_token_id", "vision_start_token_id", "vision_end_token_id"};
    const int vals[] = {cfg->image_token_id, cfg->vision_start_token_id, cfg->vision_end_token_id};
    for (int i = 0; i < 3; i++)
        if (vals[i] >= cfg->vocab_size)
            return jfail(err, QREF_EFORMAT, top, ids[i], "%d is outside the vocabulary (vocab_size %d)",
                         vals[i], cfg->vocab_size);
    return QREF_OK;
}

/* ---------------------------------------------------------------- preprocessing */

/* image_mean / image_std: three numbers or one number for every channel. */
static qref_status parse_triple(const jctx *p, const char *key, double out[3], qref_error *err)
{
    const cJSON *v = jfield(p, key);
    if (!v)
        return QREF_OK;
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = out[2] = v->valuedouble;
        return QREF_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return jfail(err, QREF_EFORMAT, p, key, "expected a number or an array of 3 numbers, found %s",
                     cJSON_IsArray(v) ? "an array of another length" : json_type_name(v));
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e))
            return jfail(err, QREF_EFORMAT, p, key, "entry %d: expected a number, found %s", i,
                         json_type_name(e));
        out[i] = e->valuedouble;
    }
    return QREF_OK;
}

static qref_status jlong(const jctx *p, const char *key, long *out, qref_error *err)
{
    const cJSON *v = jfield(p, key);
    if (!v)
        return QREF_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > 9e15)
        return jfail(err, QREF_EFORMAT, p, key, "expected a positive integer, found %s",
                     json_type_name(v));
    if (v->valuedouble > (double)QREF__MAX_PIXELS)
        return jfail(err, QREF_EUNSUPPORTED, p, key, "%.0f pixels exceed the engine's limit of %ld",
                     v->valuedouble, (long)QREF__MAX_PIXELS);
    *out = (long)v->valuedouble;
    return QREF_OK;
}

/* The pixel settings both processors share, as pointers into either config. */
typedef struct {
    double *mean, *std;
    long *min_pixels, *max_pixels;
    int *patch, *temporal, *merge;
} pixel_fields;

/* DIR/NAME parsed into *root, or *root NULL when the file does not exist (both processor
 * files are optional); path receives the file's path for messages. */
static qref_status load_optional(const char *dir, const char *name, char *path, size_t cap, cJSON **root,
                                 qref_error *err)
{
    *root = NULL;
    if (snprintf(path, cap, "%s/%s", dir, name) >= (int)cap)
        return qref__fail(err, QREF_EINVAL, "%s: directory path too long", dir);
    int enoent;
    qref_error load_err;
    char root_dir[PATH_MAX];
    const char *within = qref__checkpoint_root(dir, root_dir, NULL) == QREF_OK ? root_dir : NULL;
    qref_status st = json_load(path, within, root, &enoent, &load_err);
    if (st != QREF_OK) {
        *root = NULL;
        if (st == QREF_EIO && enoent)
            return QREF_OK;
        if (err)
            *err = load_err;
    }
    return st;
}

/* image_mean, image_std, the three sizes and size.{shortest,longest}_edge. */
static qref_status parse_pixel_fields(jctx *p, const pixel_fields *f, qref_error *err)
{
    const cJSON *size = NULL;
    qref_status st;
    if ((st = parse_triple(p, "image_mean", f->mean, err)) != QREF_OK ||
        (st = parse_triple(p, "image_std", f->std, err)) != QREF_OK ||
        (st = jint(p, "patch_size", 0, *f->patch, 1, f->patch, err)) != QREF_OK ||
        (st = jint(p, "temporal_patch_size", 0, *f->temporal, 1, f->temporal, err)) != QREF_OK ||
        (st = jint(p, "merge_size", 0, *f->merge, 1, f->merge, err)) != QREF_OK ||
        (st = jobj(p, "size", &size, err)) != QREF_OK)
        return st;
    if (size) {
        jctx s = jctx_child(p, size, "size");
        if ((st = jlong(&s, "shortest_edge", f->min_pixels, err)) != QREF_OK ||
            (st = jlong(&s, "longest_edge", f->max_pixels, err)) != QREF_OK)
            return st;
    }
    return QREF_OK;
}

/* No zero std (a division), and the sizes the vision tower was built for. */
static qref_status check_pixel_fields(jctx *p, const qref_config *cfg, const pixel_fields *f, qref_error *err)
{
    for (int c = 0; c < 3; c++)
        if (f->std[c] == 0)
            return jfail(err, QREF_EFORMAT, p, "image_std", "entry %d is zero", c);
    if (cfg->has_vision) {
        const char *keys[] = {"patch_size", "temporal_patch_size", "merge_size"};
        const int got[] = {*f->patch, *f->temporal, *f->merge};
        const int want[] = {cfg->vision.patch_size, cfg->vision.temporal_patch_size, cfg->vision.spatial_merge_size};
        for (int i = 0; i < 3; i++)
            if (got[i] != want[i])
                return jfail(err, QREF_EFORMAT, p, keys[i], "%d differs from config.json's vision_config value %d",
                             got[i], want[i]);
    }
    return QREF_OK;
}

/* Without DIR/preprocessor_config.json: mean/std 0.5 (Qwen3-VL / Qwen3.5 processors), patch,
 * temporal patch and merge sizes from the vision config, and the pixel bounds of the Qwen2-VL
 * image processor class that Qwen3-VL and Qwen3.5 reuse: shortest_edge 56*56 = 3136 and
 * longest_edge 28*28*1280 = 1003520 pixels. The file's min_pixels / max_pixels override its
 * size.shortest_edge / size.longest_edge, as in that class. */
static qref_status parse_preproc(qref_config *cfg, const char *dir, qref_error *err)
{
    qref_preproc_config *pp = &cfg->preproc;
    for (int c = 0; c < 3; c++) {
        pp->image_mean[c] = 0.5;
        pp->image_std[c] = 0.5;
    }
    pp->min_pixels = 56 * 56;
    pp->max_pixels = 28 * 28 * 1280;
    pp->patch_size = cfg->vision.patch_size;
    pp->temporal_patch_size = cfg->vision.temporal_patch_size;
    pp->merge_size = cfg->vision.spatial_merge_size;

    char path[4200];
    cJSON *root;
    qref_status st = load_optional(dir, "preprocessor_config.json", path, sizeof path, &root, err);
    if (st != QREF_OK || !root)
        return st;
    jctx p = {.obj = root, .file = path, .prefix = ""};
    const pixel_fields f = {pp->image_mean, pp->image_std, &pp->min_pixels, &pp->max_pixels,
                            &pp->patch_size, &pp->temporal_patch_size, &pp->merge_size};
    if ((st = parse_pixel_fields(&p, &f, err)) != QREF_OK ||
        (st = jlong(&p, "min_pixels", &pp->min_pixels, err)) != QREF_OK ||
        (st = jlong(&p, "max_pixels", &pp->max_pixels, err)) != QREF_OK ||
        (st = check_pixel_fields(&p, cfg, &f, err)) != QREF_OK)
        goto done;
    if (pp->min_pixels > pp->max_pixels)
        st = jfail(err, QREF_EFORMAT, &p, "min_pixels", "%ld exceeds max_pixels %ld", pp->min_pixels,
                   pp->max_pixels);
done:
    cJSON_Delete(root);
    return st;
}

/* The video processor: DIR/video_preprocessor_config.json when present, else the Qwen3-VL
 * video processor class's defaults (size shortest_edge 128*32*32, longest_edge 32*32*768 over
 * t*h*w; fps 2; frames 4..768; mean/std 0.5; sizes from the vision config). */
static qref_status parse_video_preproc(qref_config *cfg, const char *dir, qref_error *err)
{
    qref_video_preproc_config *vp = &cfg->video;
    for (int c = 0; c < 3; c++) {
        vp->image_mean[c] = 0.5;
        vp->image_std[c] = 0.5;
    }
    vp->min_pixels = 128L * 32 * 32;
    vp->max_pixels = 32L * 32 * 768;
    vp->patch_size = cfg->vision.patch_size;
    vp->temporal_patch_size = cfg->vision.temporal_patch_size;
    vp->merge_size = cfg->vision.spatial_merge_size;
    vp->fps = 2.0;
    vp->min_frames = 4;
    vp->max_frames = 768;
    vp->do_sample_frames = 1;

    char path[4200];
    cJSON *root;
    qref_status st = load_optional(dir, "video_preprocessor_config.json", path, sizeof path, &root, err);
    if (st != QREF_OK || !root)
        return st;
    jctx p = {.obj = root, .file = path, .prefix = ""};
    const pixel_fields f = {vp->image_mean, vp->image_std, &vp->min_pixels, &vp->max_pixels,
                            &vp->patch_size, &vp->temporal_patch_size, &vp->merge_size};
    if ((st = parse_pixel_fields(&p, &f, err)) != QREF_OK ||
        (st = jint(&p, "min_frames", 0, vp->min_frames, 1, &vp->min_frames, err)) != QREF_OK ||
        (st = jint(&p, "max_frames", 0, vp->max_frames, 1, &vp->max_frames, err)) != QREF_OK ||
        (st = jnum(&p, "fps", 0, vp->fps, &vp->fps, err)) != QREF_OK ||
        (st = jbool(&p, "do_sample_frames", vp->do_sample_frames, &vp->do_sample_frames, err)) != QREF_OK ||
        (st = check_pixel_fields(&p, cfg, &f, err)) != QREF_OK)
        goto done;
    if (vp->min_pixels > vp->max_pixels)
        st = jfail(err, QREF_EFORMAT, &p, "size", "shortest_edge %ld exceeds longest_edge %ld", vp->min_pixels,
                   vp->max_pixels);
    else if (!(vp->fps > 0) || vp->fps > 1e6)
        st = jfail(err, QREF_EFORMAT, &p, "fps", "%g is not a positive frame rate", vp->fps);
    else if (vp->min_frames > vp->max_frames)
        st = jfail(err, QREF_EFORMAT, &p, "min_frames", "%d exceeds max_frames %d", vp->min_frames, vp->max_frames);
done:
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------- sizes the shapes imply */

/* The product of n positive ints, checked: -1 when it leaves a size_t. */
static int prod(size_t *out, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    size_t p = 1;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int v = va_arg(ap, int);
        if (v < 0 || qref__size_mul(p, (size_t)v, &p))
            bad = 1;
    }
    va_end(ap);
    *out = p;
    return bad ? -1 : 0;
}

/* acc += product of n ints (checked). */
static void acc_prod(size_t *acc, int *bad, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    size_t p = 1;
    for (int i = 0; i < n; i++) {
        int v = va_arg(ap, int);
        if (v < 0 || qref__size_mul(p, (size_t)v, &p))
            *bad = 1;
    }
    va_end(ap);
    if (qref__size_add(*acc, p, acc))
        *bad = 1;
}

/* Every width the engine computes in int (row sizes of projections, conv channels, recurrent
 * state, patch vectors) must fit an int, and the weight block (the element count of every
 * tensor the configuration implies, in qref_real) must fit a size_t and this machine's
 * memory. Checked here, once, so no later product can wrap. */
static qref_status check_sizes(const jctx *top, const qref_config *c, qref_error *err)
{
    const int H = c->hidden_size, V = c->vocab_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const int Hk = c->lin_num_k_heads, Hv = c->lin_num_v_heads, Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim;
    const int E = c->num_experts, I = c->moe_intermediate_size, Is = c->shared_expert_intermediate_size;
    const int F = c->intermediate_size, K = c->lin_conv_kernel;
    const qref_vision_config *v = &c->vision;
    size_t m2 = 0;
    if (c->has_vision && (prod(&m2, 2, v->spatial_merge_size, v->spatial_merge_size) || m2 > 46340))
        return qref__fail(err, QREF_EUNSUPPORTED, "%s: vision_config.spatial_merge_size %d is too large", top->file,
                          v->spatial_merge_size);
    const int M2 = (int)m2;
    struct {
        const char *what;
        size_t n;
        int bad;
    } w[10];
    int nw = 0;
#define WIDTH(text, ...) (w[nw].what = (text), w[nw].bad = prod(&w[nw].n, __VA_ARGS__), nw++)
    WIDTH("num_attention_heads x head_dim x 2", 3, Hq, D, 2);
    WIDTH("num_key_value_heads x head_dim", 2, Hkv, D);
    WIDTH("2 x linear_num_key_heads x linear_key_head_dim", 3, 2, Hk, Dk);
    WIDTH("linear_num_value_heads x linear_value_head_dim", 2, Hv, Dv);
    WIDTH("linear_num_value_heads x linear_key_head_dim x linear_value_head_dim", 3, Hv, Dk, Dv);
    WIDTH("2 x moe_intermediate_size", 2, 2, I);
    WIDTH("num_experts x num_experts_per_tok", 2, E, c->num_experts_per_tok);
    if (c->has_vision) {
        WIDTH("vision_config: 3 x hidden_size", 2, 3, v->hidden_size);
        WIDTH("vision_config: spatial_merge_size^2 x hidden_size", 2, M2, v->hidden_size);
        WIDTH("vision_config: in_channels x temporal_patch_size x patch_size^2", 4, v->in_channels,
              v->temporal_patch_size, v->patch_size, v->patch_size);
    }
    const int pd_at = c->has_vision ? nw - 1 : 0;
#undef WIDTH
    /* conv channels: the two key parts and the value part together */
    size_t conv = 0;
    int conv_bad = w[2].bad || w[3].bad || qref__size_add(w[2].n, w[3].n, &conv);
    for (int i = 0; i < nw; i++)
        if (w[i].bad || w[i].n > INT_MAX)
            return qref__fail(err, QREF_EUNSUPPORTED, "%s: %s is more than %d (sizes this large overflow)",
                              top->file, w[i].what, INT_MAX);
    if (conv_bad || conv > INT_MAX)
        return qref__fail(err, QREF_EUNSUPPORTED,
                          "%s: linear attention conv channels (2 x key heads x key dim + value heads x value dim) "
                          "are more than %d", top->file, INT_MAX);
    const int C = (int)conv;

    /* the weight block: the tensors of the parameter table, counted the same way */
    size_t total = 0;
    int bad = 0;
    acc_prod(&total, &bad, 2, V, H);
    acc_prod(&total, &bad, 1, H);
    if (!c->tie_word_embeddings)
        acc_prod(&total, &bad, 2, V, H);
    for (int l = 0; l < c->num_layers && !bad; l++) {
        acc_prod(&total, &bad, 2, 2, H);
        if (c->layer_types[l] == QREF_LAYER_LINEAR) {
            acc_prod(&total, &bad, 2, C, H);
            acc_prod(&total, &bad, 4, 2, Hv, Dv, H);
            acc_prod(&total, &bad, 3, 2, Hv, H);
            acc_prod(&total, &bad, 2, C, K);
            acc_prod(&total, &bad, 2, 2, Hv);
            acc_prod(&total, &bad, 1, Dv);
        } else {
            acc_prod(&total, &bad, 4, 3, Hq, D, H);
            acc_prod(&total, &bad, 4, 2, Hkv, D, H);
            acc_prod(&total, &bad, 2, 2, D);
        }
        if (!c->is_moe) {
            acc_prod(&total, &bad, 3, 3, F, H);
        } else {
            acc_prod(&total, &bad, 2, E, H);
            acc_prod(&total, &bad, 3, 3, Is, H);
            acc_prod(&total, &bad, 1, H);
            acc_prod(&total, &bad, 4, 3, E, I, H);
        }
    }
    if (c->has_vision) {
        const int Vh = v->hidden_size, Vi = v->intermediate_size, Pd = (int)w[pd_at].n;
        acc_prod(&total, &bad, 2, Vh, Pd);
        acc_prod(&total, &bad, 2, v->num_position_embeddings, Vh);
        for (int b = 0; b < v->depth && !bad; b++) {
            acc_prod(&total, &bad, 3, 3, Vh, Vh);
            acc_prod(&total, &bad, 2, Vh, Vh);
            acc_prod(&total, &bad, 3, 2, Vi, Vh);
            acc_prod(&total, &bad, 2, 10, Vh);
            acc_prod(&total, &bad, 1, Vi);
        }
        acc_prod(&total, &bad, 4, M2, Vh, M2, Vh);
        acc_prod(&total, &bad, 3, H, M2, Vh);
        acc_prod(&total, &bad, 3, 4, M2, Vh);
    }
    size_t bytes = 0;
    if (bad || qref__size_mul(total, sizeof(qref_real), &bytes))
        return qref__fail(err, QREF_EUNSUPPORTED,
                          "%s: the weights these sizes imply do not fit in a %zu-bit size (counts overflow)",
                          top->file, sizeof(size_t) * 8);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && bytes / (size_t)page > (size_t)pages)
        return qref__fail(err, QREF_EUNSUPPORTED,
                          "%s: the weights these sizes imply take %zu bytes, more than this machine's memory (%zu bytes)",
                          top->file, bytes, (size_t)pages * (size_t)page);
    return QREF_OK;
}

/* ---------------------------------------------------------------- entry point */

static qref_status parse_config(const cJSON *root, const char *path, qref_config *cfg, qref_error *err)
{
    jctx top = {.obj = root, .file = path, .prefix = ""};
    const cJSON *text_obj = NULL, *vision_obj = NULL;
    TRY(jobj(&top, "text_config", &text_obj, err));
    TRY(jobj(&top, "vision_config", &vision_obj, err));
    if (text_obj && !vision_obj)
        return jfail(err, QREF_EFORMAT, &top, "vision_config", "required field is missing (text_config is present)");
    if (vision_obj && !text_obj)
        return jfail(err, QREF_EFORMAT, &top, "text_config", "required field is missing (vision_config is present)");

    cfg->has_vision = vision_obj != NULL;
    if (text_obj) {
        jctx text = jctx_child(&top, text_obj, "text_config");
        TRY(parse_text(&text, &top, cfg, err));
        jctx vision = jctx_child(&top, vision_obj, "vision_config");
        TRY(parse_vision(&vision, &top, cfg, err));
    } else {
        TRY(parse_text(&top, &top, cfg, err));
        cfg->image_token_id = cfg->video_token_id = -1;
        cfg->vision_start_token_id = cfg->vision_end_token_id = -1;
    }
    return check_sizes(&top, cfg, err);
}

/* Fills *cfg (caller-owned, nothing to free) from DIR/config.json and, when present,
 * DIR/preprocessor_config.json. On failure *cfg is zeroed and err names the file and field. */
qref_status qref_config_load(qref_config *cfg, const char *dir, qref_error *err)
{
    assert(cfg && dir);
    memset(cfg, 0, sizeof *cfg);
    char path[4200];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return qref__fail(err, QREF_EINVAL, "%s: directory path too long", dir);
    cJSON *root;
    /* a directory that cannot be resolved holds no file either: json_load says which */
    char root_dir[PATH_MAX];
    const char *within = qref__checkpoint_root(dir, root_dir, NULL) == QREF_OK ? root_dir : NULL;
    qref_status st = json_load(path, within, &root, NULL, err);
    if (st != QREF_OK)
        return st;
    st = parse_config(root, path, cfg, err);
    cJSON_Delete(root);
    if (st == QREF_OK)
        st = parse_preproc(cfg, dir, err);
    if (st == QREF_OK && cfg->has_vision)
        st = parse_video_preproc(cfg, dir, err);
    if (st != QREF_OK)
        memset(cfg, 0, sizeof *cfg);
    return st;
}
