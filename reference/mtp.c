/* SPDX-License-Identifier: MIT */
/*
 * Speculative decoding: the MTP head (loading, its forward over its own KV cache, chained
 * greedy drafts) and the verification of drafts over state that cannot be rewound (the GDN
 * conv and recurrent states), see qref.h "speculative decoding".
 *
 * Verify keeps the state after every position (gdn_layer in model.c writes them while
 * spec->recording is set), so committing an accepted prefix copies one kept state back and
 * never recomputes; the attention KV rows past the accepted prefix are simply overwritten
 * later (the cache length says what is valid).
 *
 * Shape legend: n = MTP rows in one call, H = hidden, V = vocab, Hq/Hkv/D = attention heads
 * and head dim, R = rotary dims, S = K-1 conv state rows, C = conv channels.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qref_faults.h"
#include "qref_internal.h"

/* ---------------------------------------------------------------- loading */

typedef struct {
    qref_mtp_weights *w;
    const qref_st_archive *a;
    const char *dir;
    size_t at;                  /* next free element of the block (NULL block: counting) */
    int fused;                  /* MoE experts as experts.gate_up_proj / down_proj, else per expert */
} mtp_loader;

/* One tensor: checked against its expected shape (outermost first, -1 terminated) and
 * converted into the block; the slot points at it. Counting pass when w->block is NULL. */
static qref_status take(mtp_loader *ld, const qref_real **slot, const char *name, const int64_t *shape,
                        qref_error *err)
{
    size_t count = 1;
    int nd = 0;
    for (; shape[nd] >= 0; nd++)
        count *= (size_t)shape[nd];
    if (ld->w->block) {
        qref_st_tensor *t = qref__st_find(ld->a, name);
        if (!t)
            return qref__fail(err, QREF_EMISSING, "%s: MTP tensor '%s' is missing", ld->dir, name);
        int same = t->ndim == nd;
        for (int i = 0; same && i < nd; i++)
            same = t->shape[i] == shape[i];
        if (!same)
            return qref__fail(err, QREF_ESHAPE, "%s: MTP tensor '%s': shape does not match config.json (%d dims found)",
                              ld->a->files[t->file].path, name, t->ndim);
        qref__st_convert(t, ld->w->block + ld->at, count);
        t->used = 1;
        if (slot)
            *slot = ld->w->block + ld->at;
    }
    ld->at += count;
    return QREF_OK;
}

/* A matrix of the head's layer (always qref_real); whole: its elements when the tensor is the
 * first slice of several (per-expert checkpoints), else 0. */
static qref_status take_mat(mtp_loader *ld, qref_matrix *mat, const char *name, const int64_t *shape, size_t whole,
                            qref_error *err)
{
    const qref_real *p = NULL;
    size_t count = 1;
    for (int nd = 0; shape[nd] >= 0; nd++)
        count *= (size_t)shape[nd];
    const qref_status st = take(ld, mat ? &p : NULL, name, shape, err);
    if (st == QREF_OK && mat && ld->w->block)
        *mat = (qref_matrix){p, NULL, whole ? whole : count};
    return st;
}

#define S(...) ((const int64_t[]){__VA_ARGS__, -1})
#define TAKE(slot, name, shape)                                        \
    do {                                                               \
        if ((st = take(ld, (slot), (name), (shape), err)) != QREF_OK)  \
            return st;                                                 \
    } while (0)
#define TAKE_M(mat, name, shape, whole)                                            \
    do {                                                                           \
        if ((st = take_mat(ld, (mat), (name), (shape), (whole), err)) != QREF_OK)  \
            return st;                                                             \
    } while (0)

/* The parameter list of the head, in one place (both passes). */
static qref_status mtp_params(mtp_loader *ld, const qref_config *c, qref_error *err)
{
    qref_status st;
    qref_mtp_weights *w = ld->w;
    qref_layer_weights *lw = &w->layer;
    const int64_t H = c->hidden_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const int64_t F = c->intermediate_size, E = c->num_experts, I = c->moe_intermediate_size;
    const int64_t Is = c->shared_expert_intermediate_size;
    lw->type = QREF_LAYER_FULL;
    TAKE(&w->fc, "mtp.fc.weight", S(H, 2 * H));
    TAKE(&w->pre_norm_emb, "mtp.pre_fc_norm_embedding.weight", S(H));
    TAKE(&w->pre_norm_hid, "mtp.pre_fc_norm_hidden.weight", S(H));
    TAKE(&w->norm, "mtp.norm.weight", S(H));
    TAKE(&lw->input_norm, "mtp.layers.0.input_layernorm.weight", S(H));
    TAKE(&lw->post_norm, "mtp.layers.0.post_attention_layernorm.weight", S(H));
    TAKE_M(&lw->q_proj, "mtp.layers.0.self_attn.q_proj.weight", S(Hq * D * 2, H), 0);
    TAKE_M(&lw->k_proj, "mtp.layers.0.self_attn.k_proj.weight", S(Hkv * D, H), 0);
    TAKE_M(&lw->v_proj, "mtp.layers.0.self_attn.v_proj.weight", S(Hkv * D, H), 0);
    TAKE_M(&lw->o_proj, "mtp.layers.0.self_attn.o_proj.weight", S(H, Hq * D), 0);
    TAKE(&lw->q_norm, "mtp.layers.0.self_attn.q_norm.weight", S(D));
    TAKE(&lw->k_norm, "mtp.layers.0.self_attn.k_norm.weight", S(D));
    if (!c->is_moe) {
        TAKE_M(&lw->gate_proj, "mtp.layers.0.mlp.gate_proj.weight", S(F, H), 0);
        TAKE_M(&lw->up_proj, "mtp.layers.0.mlp.up_proj.weight", S(F, H), 0);
        TAKE_M(&lw->down_proj, "mtp.layers.0.mlp.down_proj.weight", S(H, F), 0);
        return QREF_OK;
    }
    TAKE(&lw->router, "mtp.layers.0.mlp.gate.weight", S(E, H));
    if (ld->fused) {
        TAKE_M(&lw->experts_gate_up, "mtp.layers.0.mlp.experts.gate_up_proj", S(E, 2 * I, H), 0);
        TAKE_M(&lw->experts_down, "mtp.layers.0.mlp.experts.down_proj", S(E, H, I), 0);
    } else {
        /* per expert, as weights.c lays them: gate_e then up_e back to back, so expert e's
         * (2I, H) slab and the fused pointers cover every expert */
        char name[128];
        for (int e = 0; e < E; e++) {
            snprintf(name, sizeof name, "mtp.layers.0.mlp.experts.%d.gate_proj.weight", e);
            TAKE_M(e == 0 ? &lw->experts_gate_up : NULL, name, S(I, H), (size_t)(E * 2 * I * H));
            snprintf(name, sizeof name, "mtp.layers.0.mlp.experts.%d.up_proj.weight", e);
            TAKE(NULL, name, S(I, H));
        }
        for (int e = 0; e < E; e++) {
            snprintf(name, sizeof name, "mtp.layers.0.mlp.experts.%d.down_proj.weight", e);
            TAKE_M(e == 0 ? &lw->experts_down : NULL, name, S(H, I), (size_t)(E * H * I));
        }
    }
    TAKE_M(&lw->shared_gate_proj, "mtp.layers.0.mlp.shared_expert.gate_proj.weight", S(Is, H), 0);
    TAKE_M(&lw->shared_up_proj, "mtp.layers.0.mlp.shared_expert.up_proj.weight", S(Is, H), 0);
    TAKE_M(&lw->shared_down_proj, "mtp.layers.0.mlp.shared_expert.down_proj.weight", S(H, Is), 0);
    TAKE(&lw->shared_expert_gate, "mtp.layers.0.mlp.shared_expert_gate.weight", S(1, H));
    return QREF_OK;
}

#undef TAKE
#undef S

static qref_status load_from(qref_model *m, const qref_st_archive *a, int whole_file, qref_error *err)
{
    qref_mtp_weights *w = calloc(1, sizeof *w);
    if (!w)
        return qref__fail(err, QREF_ENOMEM, "%s: out of memory for the MTP head", m->dir);
    mtp_loader ld = {w, a, m->dir, 0, qref__st_find(a, "mtp.layers.0.mlp.experts.gate_up_proj") != NULL};
    qref_status st = mtp_params(&ld, &m->cfg, err); /* counting pass */
    if (st == QREF_OK) {
        w->block_len = ld.at;
        w->block = malloc(ld.at * sizeof *w->block);
        ld.at = 0;
        st = w->block ? mtp_params(&ld, &m->cfg, err)
                      : qref__fail(err, QREF_ENOMEM, "%s: out of memory for the MTP weights", m->dir);
    }
    /* a file of its own holds the head and nothing else */
    for (int i = 0; st == QREF_OK && whole_file && i < a->ntensors; i++)
        if (!a->tensors[i].used)
            st = qref__fail(err, QREF_EUNKNOWN, "%s: unexpected tensor '%s' (not part of the MTP head)",
                            a->files[a->tensors[i].file].path, a->tensors[i].name);
    if (st != QREF_OK) {
        free(w->block);
        free(w);
        return st;
    }
    m->mtp = w;
    return QREF_OK;
}

qref_status qref__mtp_load(qref_model *m, const qref_st_archive *a, qref_error *err)
{
    if (qref__st_find(a, "mtp.fc.weight"))
        return load_from(m, a, 0, err);
    char path[4200];
    if (snprintf(path, sizeof path, "%s/mtp.safetensors", m->dir) >= (int)sizeof path)
        return qref__fail(err, QREF_EINVAL, "%s: directory path too long", m->dir);
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return QREF_OK; /* no head: speculative drafts are unavailable, everything else works */
    fclose(probe);
    qref_st_archive extra;
    memset(&extra, 0, sizeof extra);
    qref_status st = qref__st_open_file(&extra, path, err);
    if (st == QREF_OK)
        st = load_from(m, &extra, 1, err);
    qref__st_close(&extra);
    return st;
}

void qref__mtp_free(qref_model *m)
{
    if (m && m->mtp) {
        free(m->mtp->block);
        free(m->mtp);
        m->mtp = NULL;
    }
}

/* ---------------------------------------------------------------- per-sequence state */

qref_spec *qref__spec_get(qref_cache *c, const qref_model *m)
{
    if (c->spec)
        return c->spec;
    qref_spec *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->num_layers = c->num_layers;
    s->H = m->cfg.hidden_size;
    s->kv_row = c->kv_row;
    s->vconv = calloc((size_t)c->num_layers, sizeof *s->vconv);
    s->vrec = calloc((size_t)c->num_layers, sizeof *s->vrec);
    if (!s->vconv || !s->vrec) {
        free(s->vconv);
        free(s->vrec);
        free(s);
        return NULL;
    }
    c->spec = s;
    return s;
}

static int grow(qref_real **p, size_t elems)
{
    qref_real *q = realloc(*p, (elems ? elems : 1) * sizeof *q);
    if (!q)
        return 0;
    *p = q;
    return 1;
}

qref_status qref__spec_reserve(qref_spec *s, int H, int need, qref_error *err)
{
    if (need <= s->tape_cap)
        return QREF_OK;
    int cap = s->tape_cap ? s->tape_cap : 64;
    while (cap < need)
        cap *= 2;
    int64_t *pos = realloc(s->pos, (size_t)cap * 3 * sizeof *pos);
    if (pos)
        s->pos = pos;
    if (!pos || !grow(&s->emb, (size_t)cap * H) || !grow(&s->hid, (size_t)cap * H))
        return qref__fail(err, QREF_ENOMEM, "out of memory growing the MTP tape to %d tokens", cap);
    s->tape_cap = cap;
    return QREF_OK;
}

static qref_status mtp_kv_reserve(qref_spec *s, int need, qref_error *err)
{
    if (need <= s->mtp_cap)
        return QREF_OK;
    int cap = s->mtp_cap ? s->mtp_cap : 64;
    while (cap < need)
        cap *= 2;
    if (!grow(&s->mk, (size_t)cap * s->kv_row) || !grow(&s->mv, (size_t)cap * s->kv_row))
        return qref__fail(err, QREF_ENOMEM, "out of memory growing the MTP KV cache to %d tokens", cap);
    s->mtp_cap = cap;
    return QREF_OK;
}

void qref__spec_free(qref_cache *c)
{
    qref_spec *s = c ? c->spec : NULL;
    if (!s)
        return;
    for (int l = 0; l < s->num_layers; l++) {
        free(s->vconv[l]);
        free(s->vrec[l]);
    }
    free(s->vconv);
    free(s->vrec);
    free(s->emb);
    free(s->hid);
    free(s->pos);
    free(s->mk);
    free(s->mv);
    free(s);
    c->spec = NULL;
}

qref_status qref__spec_clone(qref_cache *dst, const qref_cache *src, qref_error *err)
{
    const qref_spec *a = src->spec;
    qref_spec *b = calloc(1, sizeof *b);
    if (b) {
        b->num_layers = a->num_layers;
        b->H = a->H;
        b->kv_row = a->kv_row;
        b->vconv = calloc((size_t)a->num_layers, sizeof *b->vconv);
        b->vrec = calloc((size_t)a->num_layers, sizeof *b->vrec);
        dst->spec = b;
    }
    const size_t H = (size_t)a->H, rows = (size_t)(src->len < a->tape_cap ? src->len : a->tape_cap);
    if (!b || !b->vconv || !b->vrec || qref__spec_reserve(b, a->H, (int)rows, err) != QREF_OK ||
        mtp_kv_reserve(b, a->mtp_len, err) != QREF_OK)
        return qref__fail(err, QREF_ENOMEM, "out of memory cloning the speculative state");
    if (rows) {
        memcpy(b->emb, a->emb, rows * H * sizeof *b->emb);
        memcpy(b->hid, a->hid, rows * H * sizeof *b->hid);
        memcpy(b->pos, a->pos, rows * 3 * sizeof *b->pos);
    }
    if (a->mtp_len) {
        memcpy(b->mk, a->mk, (size_t)a->mtp_len * a->kv_row * sizeof *b->mk);
        memcpy(b->mv, a->mv, (size_t)a->mtp_len * a->kv_row * sizeof *b->mv);
    }
    b->mtp_len = a->mtp_len;
    return QREF_OK;
}

/* ---------------------------------------------------------------- the MTP layer */

/* n MTP rows: emb (n, H) input embeddings of the next tokens, hid (n, H) hidden states, pos
 * (n, 3) positions. Appends n rows to the MTP KV at s->mtp_len (the caller sets mtp_len
 * afterwards) and writes the normed output d (n, H) and, when logits is given, logits of the
 * last row only (V). */
static qref_status mtp_rows(const qref_model *m, qref_spec *s, const qref_real *emb, const qref_real *hid,
                            const int64_t *pos, int n, qref_real *d, qref_real *logits, qref_error *err)
{
    const qref_config *c = &m->cfg;
    const qref_mtp_weights *w = m->mtp;
    const qref_faults nofault = {0};
    const qref_faults *f = m->faults ? m->faults : &nofault;
    const int H = c->hidden_size, Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const int R = c->rotary_dim, V = c->vocab_size, off = s->mtp_len, Tk = off + n;
    const double eps = c->rms_norm_eps;
    qref_status st = mtp_kv_reserve(s, Tk, err);
    if (st != QREF_OK)
        return st;
    const size_t N = (size_t)n;
    const size_t F = c->is_moe ? 0 : (size_t)c->intermediate_size;
    size_t mlp_work = c->is_moe ? qref__moe_work(c, n) : 2 * N * F;
    size_t total = N * 2 * H /* cat */ + N * H * 3 /* x, h, o */ + N * Hq * 2 * D + N * Hq * D * 3 +
                   N * Hkv * D * 2 + N * (size_t)R + qref__attention_scratch(Tk, Hkv, D) + mlp_work;
    qref_real *buf = malloc(total * sizeof *buf);
    int *iwork = c->is_moe ? malloc(qref__moe_iwork(c, n) * sizeof *iwork) : NULL;
    uint8_t *active = malloc(N);
    int64_t *p3 = malloc(3 * N * sizeof *p3);
    if (!buf || (c->is_moe && !iwork) || !active || !p3) {
        free(buf);
        free(iwork);
        free(active);
        free(p3);
        return qref__fail(err, QREF_ENOMEM, "MTP: out of memory for %d rows", n);
    }
    qref_real *cat = buf;                       /* (n, 2H) [normed embedding | normed hidden] */
    qref_real *x = cat + N * 2 * H;             /* (n, H) residual */
    qref_real *h = x + N * H;                   /* (n, H) */
    qref_real *o = h + N * H;                   /* (n, H) */
    qref_real *qg = o + N * H;                  /* (n, Hq, 2D) */
    qref_real *q = qg + N * Hq * 2 * D;         /* (n, Hq, D) */
    qref_real *gate = q + N * Hq * D;           /* (n, Hq, D) */
    qref_real *attn = gate + N * Hq * D;        /* (n, Hq, D) */
    qref_real *kk = attn + N * Hq * D;          /* (n, Hkv, D) */
    qref_real *vv = kk + N * Hkv * D;           /* (n, Hkv, D) */
    qref_real *cs = vv + N * Hkv * D;           /* (n, R/2) cos then (n, R/2) sin */
    qref_real *ascr = cs + N * R;
    qref_real *mwork = ascr + qref__attention_scratch(Tk, Hkv, D);

    /* the fc input: embedding first, hidden second (vLLM, sglang) */
    const int e_at = f->mtp_concat_swapped ? H : 0, h_at = f->mtp_concat_swapped ? 0 : H;
    for (int t = 0; t < n; t++) {
        qref__rmsnorm(cat + (size_t)t * 2 * H + e_at, emb + (size_t)t * H, w->pre_norm_emb, 1, H, eps);
        qref__rmsnorm(cat + (size_t)t * 2 * H + h_at, hid + (size_t)t * H, w->pre_norm_hid, 1, H, eps);
    }
    qref__linear(x, cat, w->fc, NULL, n, 2 * H, H);

    /* gated full attention over the MTP's own cache */
    const qref_layer_weights *lw = &w->layer;
    qref__rmsnorm(h, x, lw->input_norm, n, H, eps);
    qref__linear_m(qg, h, lw->q_proj, NULL, n, H, Hq * 2 * D);
    qref__linear_m(kk, h, lw->k_proj, NULL, n, H, Hkv * D);
    qref__linear_m(vv, h, lw->v_proj, NULL, n, H, Hkv * D);
    for (size_t r = 0; r < N * Hq; r++) {
        memcpy(q + r * D, qg + r * 2 * D, (size_t)D * sizeof *q);
        memcpy(gate + r * D, qg + r * 2 * D + D, (size_t)D * sizeof *q);
    }
    qref__rmsnorm(q, q, lw->q_norm, n * Hq, D, eps);
    qref__rmsnorm(kk, kk, lw->k_norm, n * Hkv, D, eps);
    for (int t = 0; t < n; t++)
        for (int a = 0; a < 3; a++)
            p3[(size_t)a * N + t] = pos[(size_t)t * 3 + a];
    qref__mrope_angles(cs, cs + N * (R / 2), p3, n, R, c->rope_theta, c->mrope_section, c->mrope_interleaved);
    qref__rope_apply(q, cs, cs + N * (R / 2), n, Hq, D, R);
    qref__rope_apply(kk, cs, cs + N * (R / 2), n, Hkv, D, R);
    memcpy(s->mk + (size_t)off * s->kv_row, kk, N * Hkv * D * sizeof *kk);
    memcpy(s->mv + (size_t)off * s->kv_row, vv, N * Hkv * D * sizeof *vv);
    qref__attention(attn, q, s->mk, s->mv, NULL, n, Tk, off, Hq, Hkv, D, 1.0 / sqrt((double)D), ascr);
    qref__gate_sigmoid(attn, gate, N * Hq * D);
    qref__linear_m(o, attn, lw->o_proj, NULL, n, Hq * D, H);
    qref__add(x, o, N * H);

    qref__rmsnorm(h, x, lw->post_norm, n, H, eps);
    if (c->is_moe) {
        memset(active, 1, N);
        qref__moe(o, c, lw, h, n, active, f->moe_no_renorm, mwork, iwork);
    } else {
        qref__swiglu(o, h, lw->gate_proj, lw->up_proj, lw->down_proj, n, H, c->intermediate_size, mwork);
    }
    qref__add(x, o, N * H);
    qref__rmsnorm(d, x, w->norm, n, H, eps);
    if (logits)
        qref__linear_m(logits, d + (N - 1) * H, m->lm_head, NULL, 1, H, V);
    free(buf);
    free(iwork);
    free(active);
    free(p3);
    return QREF_OK;
}

/* Argmax over every id but the vision special ids (as the goldens choose). */
static int32_t greedy(const qref_config *c, const qref_real *row)
{
    int32_t best = -1;
    for (int j = 0; j < c->vocab_size; j++) {
        if (c->has_vision && (j == c->image_token_id || j == c->video_token_id || j == c->vision_start_token_id ||
                              j == c->vision_end_token_id))
            continue;
        if (best < 0 || row[j] > row[best])
            best = j;
    }
    return best;
}

qref_status qref_mtp_draft(const qref_model *m, qref_cache *c, int32_t next, int k, int32_t *drafts,
                           qref_real *logits, qref_error *err)
{
    const qref_config *cfg = &m->cfg;
    const int H = cfg->hidden_size, V = cfg->vocab_size;
    if (!m->mtp)
        return qref__fail(err, QREF_EINVAL, "%s: draft: the checkpoint has no MTP head (mtp.*)", m->dir);
    if (c->len < 1 || !c->spec)
        return qref__fail(err, QREF_EINVAL, "draft: the sequence holds no token");
    if (c->spec->pending)
        return qref__fail(err, QREF_EINVAL, "draft: a verify awaits its accept");
    if (k < 1 || next < 0 || next >= V)
        return qref__fail(err, QREF_EINVAL, "draft: expected k >= 1 and a token in [0, %d), found k %d, token %d", V,
                          k, next);
    qref_spec *s = c->spec;
    const int len = c->len, from = s->mtp_len < len ? s->mtp_len : len - 1;
    const int n0 = len - from; /* catch-up rows [from, len-1), then row len-1 with `next` */
    qref_real *emb = malloc(((size_t)n0 + 1) * H * sizeof *emb);
    qref_real *hid = malloc(((size_t)n0 + 1) * H * sizeof *hid);
    qref_real *d = malloc(((size_t)n0 + 1) * H * sizeof *d);
    qref_real *row = malloc((size_t)V * sizeof *row);
    int64_t *pos = malloc(((size_t)n0 + 1) * 3 * sizeof *pos);
    qref_status st = QREF_OK;
    if (!emb || !hid || !d || !row || !pos) {
        st = qref__fail(err, QREF_ENOMEM, "draft: out of memory");
        goto done;
    }
    s->mtp_len = from;
    for (int i = 0; i < n0; i++) {
        const int t = from + i;
        if (t + 1 < len)
            memcpy(emb + (size_t)i * H, s->emb + (size_t)(t + 1) * H, (size_t)H * sizeof *emb);
        else
            qref__matrix_row(emb + (size_t)i * H, m->embed, (size_t)next, H);
        memcpy(hid + (size_t)i * H, s->hid + (size_t)t * H, (size_t)H * sizeof *hid);
        memcpy(pos + (size_t)i * 3, s->pos + (size_t)t * 3, 3 * sizeof *pos);
    }
    if ((st = mtp_rows(m, s, emb, hid, pos, n0, d, row, err)) != QREF_OK)
        goto done;
    s->mtp_len = len; /* rows [0, len) are committed */
    /* chained drafts: the MTP's own output as the hidden state, one position further on */
    const int64_t p0 = (int64_t)len - 1 + c->rope_delta;
    for (int j = 0; j < k; j++) {
        if (logits)
            memcpy(logits + (size_t)j * V, row, (size_t)V * sizeof *row);
        drafts[j] = greedy(cfg, row);
        if (j + 1 == k)
            break;
        const int64_t p = p0 + j + 1, p3[3] = {p, p, p};
        memcpy(hid, d + (size_t)(j == 0 ? n0 - 1 : 0) * H, (size_t)H * sizeof *hid);
        s->mtp_len = len + j;
        qref__matrix_row(emb, m->embed, (size_t)drafts[j], H);    /* emb's first row is free now */
        if ((st = mtp_rows(m, s, emb, hid, p3, 1, d, row, err)) != QREF_OK)
            break;
    }
    s->mtp_len = len; /* the chained rows were speculative */
done:
    free(emb);
    free(hid);
    free(d);
    free(row);
    free(pos);
    return st;
}

/* ---------------------------------------------------------------- verify */

/* Readies c for a verify of n tokens: its speculative state, no verify pending, room for the
 * per-position states. */
static qref_status verify_prepare(const qref_model *m, qref_cache *c, int n, qref_error *err)
{
    if (n < 1)
        return qref__fail(err, QREF_EINVAL, "verify: expected at least one token");
    qref_spec *s = qref__spec_get(c, m);
    if (!s)
        return qref__fail(err, QREF_ENOMEM, "verify: out of memory");
    if (s->pending)
        return qref__fail(err, QREF_EINVAL, "verify: the previous verify awaits its accept");
    const int S = c->conv_len, C = c->conv_channels;
    if (n > s->vcap) {
        for (int l = 0; l < c->num_layers; l++) {
            if (!c->conv[l])
                continue;
            if (!grow(&s->vconv[l], ((size_t)S + n) * C) || !grow(&s->vrec[l], (size_t)n * c->rec_size))
                return qref__fail(err, QREF_ENOMEM, "verify: out of memory for %d per-position states", n);
            /* defined even where a row records nothing (a planted pad bug, see gdn_layer) */
            memset(s->vconv[l], 0, ((size_t)S + n) * C * sizeof *s->vconv[l]);
            memset(s->vrec[l], 0, (size_t)n * c->rec_size * sizeof *s->vrec[l]);
        }
        s->vcap = n;
    }
    return QREF_OK;
}

static void verify_start(qref_cache *c)
{
    c->spec->end_valid = 0;
    c->spec->vbase = c->len;
    c->spec->recording = 1;
}

static void verify_end(qref_cache *c, int n, int ok)
{
    c->spec->recording = 0;
    if (ok) {
        c->spec->vn = n;
        c->spec->pending = 1;
    }
}

qref_status qref_verify(const qref_model *m, qref_cache *c, const int32_t *ids, int n, qref_real *logits,
                        qref_error *err)
{
    qref_status st = ids ? verify_prepare(m, c, n, err) : qref__fail(err, QREF_EINVAL, "verify: no tokens");
    if (st != QREF_OK)
        return st;
    verify_start(c);
    qref_tokens in = {.ids = ids, .n = n, .gdn_mode = QREF_GDN_RECURRENT};
    qref_outputs out = {.logits = logits};
    st = qref_forward(m, c, &in, &out, err);
    verify_end(c, n, st == QREF_OK);
    return st;
}

qref_status qref_verify_batch(const qref_model *m, qref_cache *const *caches, const int32_t *const *ids, const int *n,
                              int B, qref_real *logits, qref_error *err)
{
    if (B < 1 || !ids || !n)
        return qref__fail(err, QREF_EINVAL, "verify: expected at least one row");
    int L = 0;
    qref_status st = QREF_OK;
    for (int b = 0; b < B && st == QREF_OK; b++) {
        if (!ids[b])
            return qref__fail(err, QREF_EINVAL, "verify: row %d has no tokens", b);
        st = verify_prepare(m, caches[b], n[b], err);
        L = n[b] > L ? n[b] : L;
    }
    if (st != QREF_OK)
        return st;
    const int V = m->cfg.vocab_size;
    int32_t *pid = calloc((size_t)B * L, sizeof *pid);
    uint8_t *mask = calloc((size_t)B * L, 1);
    qref_real *lg = logits ? malloc((size_t)B * L * V * sizeof *lg) : NULL;
    if (!pid || !mask || (logits && !lg)) {
        free(pid);
        free(mask);
        free(lg);
        return qref__fail(err, QREF_ENOMEM, "verify: out of memory for a batch of %d x %d", B, L);
    }
    for (int b = 0; b < B; b++) /* left-padded: row b's tokens in its last n[b] columns */
        for (int i = 0; i < n[b]; i++) {
            pid[(size_t)b * L + (L - n[b]) + i] = ids[b][i];
            mask[(size_t)b * L + (L - n[b]) + i] = 1;
        }
    for (int b = 0; b < B; b++)
        verify_start(caches[b]);
    qref_batch in = {.B = B, .L = L, .ids = pid, .mask = mask, .gdn_mode = QREF_GDN_RECURRENT};
    qref_outputs out = {.logits = lg};
    st = qref_forward_batch(m, caches, &in, &out, err);
    for (int b = 0; b < B; b++)
        verify_end(caches[b], n[b], st == QREF_OK);
    for (int b = 0; st == QREF_OK && logits && b < B; b++)
        for (int i = 0; i < L; i++) {
            qref_real *dst = logits + ((size_t)b * L + i) * V;
            if (i < n[b])
                memcpy(dst, lg + ((size_t)b * L + (L - n[b]) + i) * V, (size_t)V * sizeof *dst);
            else
                for (int j = 0; j < V; j++)
                    dst[j] = (qref_real)NAN;
        }
    free(pid);
    free(mask);
    free(lg);
    return st;
}

/* Sets every GDN layer of dst to the kept state after verify token i (conv) / j (recurrent). */
static void set_kept(qref_cache *dst, const qref_spec *s, int i, int j)
{
    const int S = dst->conv_len, C = dst->conv_channels;
    for (int l = 0; l < dst->num_layers; l++) {
        if (!dst->conv[l])
            continue;
        memcpy(dst->conv[l], s->vconv[l] + (size_t)(i + 1) * C, (size_t)S * C * sizeof *dst->conv[l]);
        memcpy(dst->rec[l], s->vrec[l] + (size_t)j * dst->rec_size, (size_t)dst->rec_size * sizeof *dst->rec[l]);
    }
}

qref_status qref_verify_accept(const qref_model *m, qref_cache *c, int a, qref_error *err)
{
    qref_spec *s = c->spec;
    if (!s || !s->pending)
        return qref__fail(err, QREF_EINVAL, "accept: no verify awaits its accept");
    if (a < 0 || a >= s->vn)
        return qref__fail(err, QREF_EINVAL, "accept: %d accepted drafts of a verify of %d tokens (expected 0..%d)", a,
                          s->vn, s->vn - 1);
    const qref_faults nofault = {0};
    const qref_faults *f = m->faults ? m->faults : &nofault;
    int keep = a + 1;
    if (f->spec_accept_plus1 && keep < s->vn)
        keep++; /* planted: the first rejected draft is committed too */
    const int last = s->vn - 1;
    set_kept(c, s, f->spec_keep_conv ? last : keep - 1, f->spec_keep_rec ? last : keep - 1);
    c->len = s->vbase + keep;
    if (s->mtp_len > c->len)
        s->mtp_len = c->len;
    s->pending = 0;
    s->end_valid = 1;
    return QREF_OK;
}

void qref__fault_verify_end_state(qref_cache *dst, const qref_cache *src)
{
    const qref_spec *s = src->spec;
    if (s && s->end_valid && dst->num_layers == src->num_layers)
        set_kept(dst, s, s->vn - 1, s->vn - 1);
}
