/* SPDX-License-Identifier: MIT */
/*
 * Weights: one parameter table drives loading, shape checks and coverage.
 *
 * The table lists every tensor the configuration implies (name as transformers writes it,
 * shape, destination inside a weight block). Loading maps the checkpoint, checks each tensor's
 * shape against the table, converts it once into the qref_real block (or, for the text
 * matrices of a BF16 checkpoint, copies its bits into the BF16 block: qref_load_options), and
 * finally rejects any checkpoint tensor the table did not consume (except mtp.*).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qref_internal.h"

/* ---------------------------------------------------------------- the parameter table */

typedef struct {
    char name[256];
    int ndim;
    int64_t shape[5];
    size_t offset;          /* into its block (qref_real or BF16), in elements */
    size_t count;
    const qref_real **slot; /* where the pointer lands (NULL for sub-slices of fused tensors) */
    qref_matrix *mat;       /* a text matrix: where it lands (NULL for sub-slices) */
    int is_mat;             /* a text matrix or a sub-slice of one: may stay in BF16 */
    size_t mat_count;       /* elements of the whole matrix (fused experts: every slice) */
} param;

typedef struct {
    param *items;
    int n, cap;
    size_t total;           /* elements */
    int failed;             /* allocation failure while building */
} param_table;

static void table_free(param_table *t)
{
    free(t->items);
    memset(t, 0, sizeof *t);
}

/* Adds a parameter named by a printf format; shape outermost-first, terminated by -1.
 * Returns its index or -1. table_mat adds a text matrix (mat NULL: a later slice of one). */
static int table_vadd(param_table *t, const qref_real **slot, qref_matrix *mat, int is_mat, const int64_t *shape,
                      const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static int table_add(param_table *t, const qref_real **slot, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int table_mat(param_table *t, qref_matrix *mat, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int table_add(param_table *t, const qref_real **slot, const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int r = table_vadd(t, slot, NULL, 0, shape, fmt, ap);
    va_end(ap);
    return r;
}

static int table_mat(param_table *t, qref_matrix *mat, const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int r = table_vadd(t, NULL, mat, 1, shape, fmt, ap);
    va_end(ap);
    return r;
}

static int table_vadd(param_table *t, const qref_real **slot, qref_matrix *mat, int is_mat, const int64_t *shape,
                      const char *fmt, va_list ap)
{
    if (t->failed)
        return -1;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        param *p = realloc(t->items, (size_t)cap * sizeof *p);
        if (!p) {
            t->failed = 1;
            return -1;
        }
        t->items = p;
        t->cap = cap;
    }
    param *p = &t->items[t->n];
    memset(p, 0, sizeof *p);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    p->count = 1;
    for (p->ndim = 0; shape[p->ndim] >= 0; p->ndim++) {
        p->shape[p->ndim] = shape[p->ndim];
        p->count *= (size_t)shape[p->ndim];
    }
    p->offset = t->total;
    p->slot = slot;
    p->mat = mat;
    p->is_mat = is_mat;
    p->mat_count = p->count;
    t->total += p->count;
    return t->n++;
}

#define S(...) ((const int64_t[]){__VA_ARGS__, -1})

/* Experts in per-expert form map onto sub-slices of the fused (E, 2I, H) / (E, H, I) arrays;
 * the fused arrays themselves are added as "virtual" parameters that reserve the space. */
typedef struct {
    int fused_experts;
    const char *lm;         /* "model.language_model." or "model." */
    const char *vis;        /* "model.visual." */
} naming;

static void build_text_table(param_table *t, qref_model *m, const naming *nm)
{
    const qref_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const int64_t Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const int64_t Hk = c->lin_num_k_heads, Hv = c->lin_num_v_heads;
    const int64_t Dk = c->lin_k_head_dim, Dv = c->lin_v_head_dim, K = c->lin_conv_kernel;
    const int64_t C = 2 * Hk * Dk + Hv * Dv;
    const int64_t E = c->num_experts, I = c->moe_intermediate_size;
    const int64_t Is = c->shared_expert_intermediate_size, F = c->intermediate_size;

    table_mat(t, &m->embed, S(V, H), "%sembed_tokens.weight", nm->lm);
    table_add(t, &m->final_norm, S(H), "%snorm.weight", nm->lm);
    if (!c->tie_word_embeddings)
        table_mat(t, &m->lm_head, S(V, H), "lm_head.weight");

    for (int l = 0; l < c->num_layers; l++) {
        qref_layer_weights *w = &m->layers[l];
        char pre[320];
        snprintf(pre, sizeof pre, "%slayers.%d.", nm->lm, l);
        w->type = c->layer_types[l];
        table_add(t, &w->input_norm, S(H), "%sinput_layernorm.weight", pre);
        table_add(t, &w->post_norm, S(H), "%spost_attention_layernorm.weight", pre);
        if (w->type == QREF_LAYER_LINEAR) {
            table_mat(t, &w->in_proj_qkv, S(C, H), "%slinear_attn.in_proj_qkv.weight", pre);
            table_mat(t, &w->in_proj_z, S(Hv * Dv, H), "%slinear_attn.in_proj_z.weight", pre);
            table_add(t, &w->in_proj_b, S(Hv, H), "%slinear_attn.in_proj_b.weight", pre);
            table_add(t, &w->in_proj_a, S(Hv, H), "%slinear_attn.in_proj_a.weight", pre);
            table_add(t, &w->conv_w, S(C, 1, K), "%slinear_attn.conv1d.weight", pre);
            table_add(t, &w->dt_bias, S(Hv), "%slinear_attn.dt_bias", pre);
            table_add(t, &w->A_log, S(Hv), "%slinear_attn.A_log", pre);
            table_add(t, &w->gdn_norm, S(Dv), "%slinear_attn.norm.weight", pre);
            table_mat(t, &w->out_proj, S(H, Hv * Dv), "%slinear_attn.out_proj.weight", pre);
        } else {
            table_mat(t, &w->q_proj, S(Hq * D * 2, H), "%sself_attn.q_proj.weight", pre);
            table_mat(t, &w->k_proj, S(Hkv * D, H), "%sself_attn.k_proj.weight", pre);
            table_mat(t, &w->v_proj, S(Hkv * D, H), "%sself_attn.v_proj.weight", pre);
            table_mat(t, &w->o_proj, S(H, Hq * D), "%sself_attn.o_proj.weight", pre);
            table_add(t, &w->q_norm, S(D), "%sself_attn.q_norm.weight", pre);
            table_add(t, &w->k_norm, S(D), "%sself_attn.k_norm.weight", pre);
        }
        if (!c->is_moe) {
            table_mat(t, &w->gate_proj, S(F, H), "%smlp.gate_proj.weight", pre);
            table_mat(t, &w->up_proj, S(F, H), "%smlp.up_proj.weight", pre);
            table_mat(t, &w->down_proj, S(H, F), "%smlp.down_proj.weight", pre);
            continue;
        }
        table_add(t, &w->router, S(E, H), "%smlp.gate.weight", pre);
        table_mat(t, &w->shared_gate_proj, S(Is, H), "%smlp.shared_expert.gate_proj.weight", pre);
        table_mat(t, &w->shared_up_proj, S(Is, H), "%smlp.shared_expert.up_proj.weight", pre);
        table_mat(t, &w->shared_down_proj, S(H, Is), "%smlp.shared_expert.down_proj.weight", pre);
        table_add(t, &w->shared_expert_gate, S(1, H), "%smlp.shared_expert_gate.weight", pre);
        if (nm->fused_experts) {
            table_mat(t, &w->experts_gate_up, S(E, 2 * I, H), "%smlp.experts.gate_up_proj", pre);
            table_mat(t, &w->experts_down, S(E, H, I), "%smlp.experts.down_proj", pre);
        } else {
            /* per expert: gate rows [0,I) and up rows [I,2I) of expert e's (2I, H) slab,
             * laid out contiguously so the fused pointers cover them */
            for (int e = 0; e < E; e++) {
                char epre[400];
                snprintf(epre, sizeof epre, "%smlp.experts.%d.", pre, e);
                const int gi = table_mat(t, e == 0 ? &w->experts_gate_up : NULL, S(I, H), "%sgate_proj.weight", epre);
                table_mat(t, NULL, S(I, H), "%sup_proj.weight", epre);
                if (e == 0 && gi >= 0)
                    t->items[gi].mat_count = (size_t)(E * 2 * I * H);
            }
            for (int e = 0; e < E; e++) {
                char epre[400];
                snprintf(epre, sizeof epre, "%smlp.experts.%d.", pre, e);
                const int di = table_mat(t, e == 0 ? &w->experts_down : NULL, S(H, I), "%sdown_proj.weight", epre);
                if (e == 0 && di >= 0)
                    t->items[di].mat_count = (size_t)(E * H * I);
            }
        }
    }
}

static void build_vision_table(param_table *t, qref_model *m, const naming *nm)
{
    const qref_vision_config *v = &m->cfg.vision;
    qref_vision_weights *w = &m->vision;
    const int64_t Vh = v->hidden_size, Vi = v->intermediate_size, M2 = (int64_t)v->spatial_merge_size * v->spatial_merge_size;
    const int64_t Ho = v->out_hidden_size;

    table_add(t, &w->patch_w, S(Vh, v->in_channels, v->temporal_patch_size, v->patch_size, v->patch_size),
              "%spatch_embed.proj.weight", nm->vis);
    table_add(t, &w->patch_b, S(Vh), "%spatch_embed.proj.bias", nm->vis);
    table_add(t, &w->pos_embed, S(v->num_position_embeddings, Vh), "%spos_embed.weight", nm->vis);
    for (int b = 0; b < v->depth; b++) {
        qref_vision_block_weights *bw = &w->blocks[b];
        char pre[320];
        snprintf(pre, sizeof pre, "%sblocks.%d.", nm->vis, b);
        table_add(t, &bw->norm1_w, S(Vh), "%snorm1.weight", pre);
        table_add(t, &bw->norm1_b, S(Vh), "%snorm1.bias", pre);
        table_add(t, &bw->qkv_w, S(3 * Vh, Vh), "%sattn.qkv.weight", pre);
        table_add(t, &bw->qkv_b, S(3 * Vh), "%sattn.qkv.bias", pre);
        table_add(t, &bw->proj_w, S(Vh, Vh), "%sattn.proj.weight", pre);
        table_add(t, &bw->proj_b, S(Vh), "%sattn.proj.bias", pre);
        table_add(t, &bw->norm2_w, S(Vh), "%snorm2.weight", pre);
        table_add(t, &bw->norm2_b, S(Vh), "%snorm2.bias", pre);
        table_add(t, &bw->fc1_w, S(Vi, Vh), "%smlp.linear_fc1.weight", pre);
        table_add(t, &bw->fc1_b, S(Vi), "%smlp.linear_fc1.bias", pre);
        table_add(t, &bw->fc2_w, S(Vh, Vi), "%smlp.linear_fc2.weight", pre);
        table_add(t, &bw->fc2_b, S(Vh), "%smlp.linear_fc2.bias", pre);
    }
    table_add(t, &w->merger_norm_w, S(Vh), "%smerger.norm.weight", nm->vis);
    table_add(t, &w->merger_norm_b, S(Vh), "%smerger.norm.bias", nm->vis);
    table_add(t, &w->merger_fc1_w, S(M2 * Vh, M2 * Vh), "%smerger.linear_fc1.weight", nm->vis);
    table_add(t, &w->merger_fc1_b, S(M2 * Vh), "%smerger.linear_fc1.bias", nm->vis);
    table_add(t, &w->merger_fc2_w, S(Ho, M2 * Vh), "%smerger.linear_fc2.weight", nm->vis);
    table_add(t, &w->merger_fc2_b, S(Ho), "%smerger.linear_fc2.bias", nm->vis);
}

#undef S

/* ---------------------------------------------------------------- loading */

static void shape_str(char *buf, size_t len, const int64_t *shape, int ndim)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

static qref_status load_param(qref_model *m, const qref_st_archive *a, const param *p, int bf16, qref_error *err)
{
    qref_st_tensor *t = qref__st_find(a, p->name);
    if (!t)
        return qref__fail(err, QREF_EMISSING, "%s: tensor '%s' is missing from the checkpoint", m->dir, p->name);
    const char *file = a->files[t->file].path;
    int same = t->ndim == p->ndim;
    for (int i = 0; same && i < p->ndim; i++)
        same = t->shape[i] == p->shape[i];
    if (!same) {
        char want[128], got[128];
        shape_str(want, sizeof want, p->shape, p->ndim);
        shape_str(got, sizeof got, t->shape, t->ndim);
        return qref__fail(err, QREF_ESHAPE, "%s: tensor '%s': expected shape %s from config.json, found %s",
                          file, p->name, want, got);
    }
    if (bf16)                                   /* kept as the checkpoint's BF16 bits */
        memcpy(m->bf16_block + p->offset, t->data, p->count * sizeof *m->bf16_block);
    else
        qref__st_convert(t, m->block + p->offset, p->count);
    t->used = 1;
    return QREF_OK;
}

/* Whether the text matrices can stay in BF16: asked for, not turned off by QREF_BF16_WEIGHTS=0,
 * and every one of them (every slice of the per-expert ones) present in BF16. */
static int keep_bf16(const param_table *t, const qref_st_archive *a, const qref_load_options *opt)
{
    const char *env = getenv("QREF_BF16_WEIGHTS");
    if (!opt->keep_bf16 || (env && strcmp(env, "0") == 0))
        return 0;
    int any = 0;
    for (int i = 0; i < t->n; i++) {
        if (!t->items[i].is_mat)
            continue;
        const qref_st_tensor *x = qref__st_find(a, t->items[i].name);
        if (!x || x->dtype != QREF_DT_BF16)
            return 0;
        any = 1;
    }
    return any;
}

/* Offsets into the two blocks once it is known which parameters stay in BF16. */
static void place(param_table *t, int bf16, size_t *real_total, size_t *bf16_total)
{
    *real_total = *bf16_total = 0;
    for (int i = 0; i < t->n; i++) {
        param *p = &t->items[i];
        size_t *tot = bf16 && p->is_mat ? bf16_total : real_total;
        p->offset = *tot;
        *tot += p->count;
    }
}

static void detect_naming(naming *nm, const qref_st_archive *a, const qref_config *c)
{
    nm->vis = "model.visual.";
    nm->lm = qref__st_find(a, "model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";
    nm->fused_experts = 0;
    if (c->is_moe) {
        char name[320];
        snprintf(name, sizeof name, "%slayers.0.mlp.experts.gate_up_proj", nm->lm);
        nm->fused_experts = qref__st_find(a, name) != NULL;
    }
}

qref_status qref_model_load(qref_model *m, const char *dir, qref_error *err)
{
    const qref_load_options opt = {.keep_bf16 = 1};
    return qref_model_load_with(m, dir, &opt, err);
}

qref_status qref_model_load_with(qref_model *m, const char *dir, const qref_load_options *opt, qref_error *err)
{
    qref_st_archive a;
    param_table t;
    qref_status st;

    memset(m, 0, sizeof *m);
    memset(&a, 0, sizeof a);
    memset(&t, 0, sizeof t);
    snprintf(m->dir, sizeof m->dir, "%s", dir);

    if ((st = qref_config_load(&m->cfg, dir, err)) != QREF_OK)
        return st;
    if ((st = qref__st_open(&a, dir, err)) != QREF_OK)
        return st;

    const qref_config *c = &m->cfg;
    naming nm;
    detect_naming(&nm, &a, c);
    m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
    if (c->has_vision)
        m->vision.blocks = calloc((size_t)c->vision.depth > 0 ? (size_t)c->vision.depth : 1, sizeof *m->vision.blocks);
    if (!m->layers || (c->has_vision && !m->vision.blocks)) {
        st = qref__fail(err, QREF_ENOMEM, "%s: out of memory for the layer table", dir);
        goto done;
    }

    build_text_table(&t, m, &nm);
    if (c->has_vision)
        build_vision_table(&t, m, &nm);
    if (t.failed) {
        st = qref__fail(err, QREF_ENOMEM, "%s: out of memory for the parameter table", dir);
        goto done;
    }

    /* Every weight comes from a checkpoint tensor, so a configuration implying more weights
     * than the files hold is wrong: refuse it before allocating from its sizes. */
    size_t held = 0;
    for (int i = 0; i < a.ntensors; i++) {
        const qref_dtype dt = a.tensors[i].dtype;
        held += a.tensors[i].nbytes / (dt == QREF_DT_F64 ? 8 : dt == QREF_DT_F32 ? 4 : 2);
    }
    if (t.total > held) {
        st = qref__fail(err, QREF_ESHAPE,
                        "%s/config.json: implies %zu weights but the checkpoint's tensors hold %zu: the sizes in "
                        "config.json do not match the safetensors files",
                        dir, t.total, held);
        goto done;
    }

    const int bf16 = keep_bf16(&t, &a, opt);
    size_t real_total, bf16_total;
    place(&t, bf16, &real_total, &bf16_total);
    m->block = malloc((real_total ? real_total : 1) * sizeof *m->block);
    m->bf16_block = bf16_total ? malloc(bf16_total * sizeof *m->bf16_block) : NULL;
    if (!m->block || (bf16_total && !m->bf16_block)) {
        st = qref__fail(err, QREF_ENOMEM, "%s: cannot allocate %zu bytes for the weights", dir,
                        real_total * sizeof *m->block + bf16_total * sizeof *m->bf16_block);
        goto done;
    }
    m->block_len = real_total;
    m->bf16_len = bf16_total;

    for (int i = 0; i < t.n; i++) {
        const param *p = &t.items[i];
        const int narrow = bf16 && p->is_mat;
        if ((st = load_param(m, &a, p, narrow, err)) != QREF_OK)
            goto done;
        if (p->slot)
            *p->slot = m->block + p->offset;
        if (p->mat)
            *p->mat = narrow ? (qref_matrix){NULL, m->bf16_block + p->offset, p->mat_count}
                             : (qref_matrix){m->block + p->offset, NULL, p->mat_count};
    }
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        qref_st_tensor *lm = qref__st_find(&a, "lm_head.weight");
        if (lm)
            lm->used = 1; /* a tied checkpoint may still carry the copy; the embedding wins */
    }
    /* Per-expert checkpoints: gate_e and up_e were added back to back, so expert e's (2I, H)
     * slab starts at its gate tensor and the fused pointers set above cover every expert. */

    if ((st = qref__mtp_load(m, &a, err)) != QREF_OK)
        goto done;
    for (int i = 0; i < a.ntensors; i++) {
        const qref_st_tensor *x = &a.tensors[i];
        if (x->used || strncmp(x->name, "mtp.", 4) == 0)
            continue;
        st = qref__fail(err, QREF_EUNKNOWN, "%s: unexpected tensor '%s' (not implied by config.json)",
                        a.files[x->file].path, x->name);
        goto done;
    }
    st = QREF_OK;

done:
    table_free(&t);
    qref__st_close(&a);
    if (st != QREF_OK)
        qref_model_free(m);
    return st;
}

void qref_model_free(qref_model *m)
{
    if (!m)
        return;
    free(m->block);
    free(m->bf16_block);
    free(m->layers);
    free(m->vision.blocks);
    qref__mtp_free(m);
    m->block = NULL;
    m->bf16_block = NULL;
    m->bf16_len = 0;
    m->layers = NULL;
    m->vision.blocks = NULL;
    m->block_len = 0;
}
