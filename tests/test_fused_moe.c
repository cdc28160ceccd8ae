/* SPDX-License-Identifier: MIT */
/*
 * MoE experts stored fused (experts.gate_up_proj (E, 2I, H), experts.down_proj (E, H, I), as
 * transformers keeps them in memory) must load into the same weights as the per-expert
 * layout (experts.N.gate_proj / up_proj / down_proj, as save_pretrained writes them). The test
 * rewrites the committed tiny MoE checkpoint in the fused layout (gate rows first, then up
 * rows, per expert), loads both and requires bitwise-equal logits; a fused file with the two
 * halves swapped must differ.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qref_internal.h"
#include "check_main.h"

#define SRC LC_SOURCE_DIR "/golden/tiny-moe"
#define OUT LC_BINARY_DIR "/fused-moe"

typedef struct {
    char name[256];
    int ndim;
    int64_t shape[5];
    float *data;
    size_t count;
} tensor;

/* Writes tensors as one F32 safetensors file (header padded to 8 bytes). */
static void write_safetensors(const char *path, const tensor *t, int n)
{
    size_t cap = 1 << 20, len = 0, off = 0;
    char *h = malloc(cap);
    ck_assert(h != NULL);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "", t[i].name);
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].count * 4);
        off += t[i].count * 4;
        ck_assert(len < cap - 256);
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    for (int i = 0; i < n; i++)
        fwrite(t[i].data, 4, t[i].count, f);
    fclose(f);
    free(h);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert(a && b);
    char buf[8192];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, k, b);
    fclose(a);
    fclose(b);
}

/* Rewrites SRC into dir with fused experts; swap = 1 puts the up rows before the gate rows. */
static void write_fused(const char *dir, int swap)
{
    qref_st_archive a = {0};
    qref_error qe;
    char path[512];
    mkdir(LC_BINARY_DIR, 0777);
    mkdir(OUT, 0777);
    mkdir(dir, 0777);
    ck_assert_msg(qref__st_open(&a, SRC, &qe) == QREF_OK, "%s", qe.msg);
    tensor *out = calloc((size_t)a.ntensors, sizeof *out);
    int n = 0;
    for (int i = 0; i < a.ntensors; i++) {
        const qref_st_tensor *t = &a.tensors[i];
        const char *e = strstr(t->name, ".mlp.experts.");
        if (e) {
            /* per-expert tensors are gathered below, once per layer (on expert 0's gate) */
            if (!strstr(t->name, ".experts.0.gate_proj.weight"))
                continue;
            char prefix[160];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(e - t->name), t->name);
            int E = 0;
            char nm[200];
            for (;; E++) {
                snprintf(nm, sizeof nm, "%s.mlp.experts.%d.gate_proj.weight", prefix, E);
                if (!qref__st_find(&a, nm))
                    break;
            }
            const int64_t I = t->shape[0], H = t->shape[1];
            tensor *gu = &out[n++], *dn = &out[n++];
            snprintf(gu->name, sizeof gu->name, "%s.mlp.experts.gate_up_proj", prefix);
            snprintf(dn->name, sizeof dn->name, "%s.mlp.experts.down_proj", prefix);
            gu->ndim = dn->ndim = 3;
            gu->shape[0] = dn->shape[0] = E;
            gu->shape[1] = 2 * I;
            gu->shape[2] = H;
            dn->shape[1] = H;
            dn->shape[2] = I;
            gu->count = (size_t)E * 2 * I * H;
            dn->count = (size_t)E * H * I;
            gu->data = malloc(gu->count * 4);
            dn->data = malloc(dn->count * 4);
            for (int x = 0; x < E; x++) {
                static const char *parts[3] = {"gate_proj", "up_proj", "down_proj"};
                for (int p = 0; p < 3; p++) {
                    snprintf(nm, sizeof nm, "%s.mlp.experts.%d.%s.weight", prefix, x, parts[p]);
                    const qref_st_tensor *s = qref__st_find(&a, nm);
                    ck_assert_msg(s != NULL && s->dtype == QREF_DT_F32, "%s", nm);
                    size_t half = (size_t)I * H;
                    float *dst = p == 2 ? dn->data + (size_t)x * H * I
                                        : gu->data + (size_t)x * 2 * half + (size_t)((p == 1) != swap) * half;
                    memcpy(dst, s->data, (p == 2 ? (size_t)H * I : half) * 4);
                }
            }
            continue;
        }
        tensor *o = &out[n++];
        ck_assert(t->dtype == QREF_DT_F32);
        snprintf(o->name, sizeof o->name, "%s", t->name);
        o->ndim = t->ndim;
        memcpy(o->shape, t->shape, sizeof o->shape[0] * (size_t)t->ndim);
        o->count = t->nbytes / 4;
        o->data = malloc(t->nbytes);
        memcpy(o->data, t->data, t->nbytes);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, out, n);
    snprintf(path, sizeof path, "%s/config.json", dir);
    copy_file(SRC "/config.json", path);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    copy_file(SRC "/preprocessor_config.json", path);
    for (int i = 0; i < n; i++)
        free(out[i].data);
    free(out);
    qref__st_close(&a);
}

static qref_real *text_logits(const char *dir, int T)
{
    qref_model m;
    qref_cache c;
    qref_error qe;
    ck_assert_msg(qref_model_load(&m, dir, &qe) == QREF_OK, "%s", qe.msg);
    int32_t ids[64];
    for (int i = 0; i < T; i++)
        ids[i] = (int32_t)((i * 131 + 7) % 997);
    qref_real *logits = malloc((size_t)T * m.cfg.vocab_size * sizeof *logits);
    qref_tokens in = {.ids = ids, .n = T};
    qref_outputs out = {.logits = logits};
    ck_assert(qref_cache_init(&c, &m, &qe) == QREF_OK);
    ck_assert_msg(qref_forward(&m, &c, &in, &out, &qe) == QREF_OK, "%s", qe.msg);
    qref_cache_free(&c);
    qref_model_free(&m);
    return logits;
}

START_TEST(test_fused_moe_equals_per_expert)
{
    const int T = 20;
    const size_t bytes = (size_t)T * 1024 * sizeof(qref_real);
    write_fused(OUT "/fused", 0);
    qref_real *ref = text_logits(SRC, T), *fused = text_logits(OUT "/fused", T);
    ck_assert_msg(memcmp(ref, fused, bytes) == 0, "fused experts give other logits than per-expert ones");
    free(ref);
    free(fused);
}
END_TEST

START_TEST(test_fused_moe_swapped_halves_differ)
{
    const int T = 20;
    const size_t bytes = (size_t)T * 1024 * sizeof(qref_real);
    write_fused(OUT "/swapped", 1);
    qref_real *ref = text_logits(SRC, T), *swapped = text_logits(OUT "/swapped", T);
    ck_assert_msg(memcmp(ref, swapped, bytes) != 0, "gate and up halves swapped went unnoticed");
    free(ref);
    free(swapped);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fused_moe");
    TCase *tc = tcase_create("layout");
    tcase_add_test(tc, test_fused_moe_equals_per_expert);
    tcase_add_test(tc, test_fused_moe_swapped_halves_differ);
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
