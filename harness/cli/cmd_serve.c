/* SPDX-License-Identifier: MIT */
/*
 * logitcheck serve: the in-process reference engine behind the engine protocol
 * (harness/PROTOCOL.md) on stdin/stdout, so `run --engine 'logitcheck serve'` drives it out of
 * process exactly as it drives any other engine.
 *
 *   serve [--inject FAULT ...]
 *
 * Numbers leave in the build's precision without conversion: f64 payloads from a double
 * build, f32 from a float build (the engine's doubles are exact images of its floats), so
 * results through the protocol equal the in-process run bit for bit. Nothing but protocol
 * replies is written to stdout; diagnostics go to stderr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "faults.h"
#include "lc_engine.h"
#include "proto_wire.h"

typedef struct {
    int handle, n;
    int pad_to;                 /* the prompt's pad_to: batch layouts at least this long */
} srv_prompt;

typedef struct {
    lc_engine *e;
    lc_model_info mi;
    int loaded;
    lc_dtype out_dt;            /* f64 or f32: the build's precision */
    srv_prompt *prompts;
    int n_prompts, cap_prompts;
} server;

/* ---------------------------------------------------------------- replies */

typedef struct {
    const char *name;
    lc_dtype dt;                /* of the payload */
    int ndim;
    int64_t dims[LC_PROTO_MAX_DIMS];
    const double *f;            /* float tensors: written as dt */
    const int64_t *i64;         /* integer tensors (i64) */
    const int32_t *i32;         /* integer tensors (i32) */
} out_tensor;

static size_t tensor_count(const out_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->dims[d];
    return n;
}

static void write_payload(const out_tensor *t)
{
    size_t n = tensor_count(t), esize = lc__dtype_size(t->dt);
    if (t->i32) {
        fwrite(t->i32, 4, n, stdout);
        return;
    }
    if (t->i64) {
        fwrite(t->i64, 8, n, stdout);
        return;
    }
    unsigned char buf[8192];
    size_t per = sizeof buf / esize;
    for (size_t k = 0; k < n; k += per) {
        size_t m = n - k < per ? n - k : per;
        for (size_t j = 0; j < m; j++) {
            if (t->dt == LC_DT_F64)
                lc__wire_put_f64(buf + j * 8, t->f[k + j]);
            else
                lc__wire_put_f32(buf + j * 4, (float)t->f[k + j]);
        }
        fwrite(buf, esize, m, stdout);
    }
}

/* Writes reply h (consumed) with "id", "ok": true and the tensors' headers, then the payloads. */
static void reply_ok(cJSON *h, long id, const out_tensor *ts, int nt)
{
    cJSON_AddNumberToObject(h, "id", (double)id);
    cJSON_AddBoolToObject(h, "ok", 1);
    if (nt > 0) {
        cJSON *arr = cJSON_AddArrayToObject(h, "tensors");
        for (int i = 0; i < nt; i++) {
            cJSON *t = cJSON_CreateObject(), *sh = cJSON_AddArrayToObject(t, "shape");
            cJSON_AddStringToObject(t, "name", ts[i].name);
            cJSON_AddStringToObject(t, "dtype", lc__dtype_name(ts[i].dt));
            for (int d = 0; d < ts[i].ndim; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ts[i].dims[d]));
            cJSON_AddNumberToObject(t, "bytes", (double)(tensor_count(&ts[i]) * lc__dtype_size(ts[i].dt)));
            cJSON_AddItemToArray(arr, t);
        }
    }
    char *s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    fputs(s ? s : "{}", stdout);
    fputc('\n', stdout);
    free(s);
    for (int i = 0; i < nt; i++)
        write_payload(&ts[i]);
    fflush(stdout);
}

static void reply_err(long id, int code, const char *msg)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, "id", (double)id);
    cJSON_AddBoolToObject(h, "ok", 0);
    cJSON_AddStringToObject(h, "kind", code == LC_EINPUT ? "input" : code == LC_EUNSUPPORTED ? "unsupported" : "engine");
    cJSON_AddStringToObject(h, "error", msg);
    char *s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    fputs(s ? s : "{}", stdout);
    fputc('\n', stdout);
    free(s);
    fflush(stdout);
}

/* ---------------------------------------------------------------- request fields */

/* An integer field; fills err (LC_EINPUT) when missing or not an integer. */
static int req_int(const cJSON *r, const char *key, long *out, lc_error *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(r, key);
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || fabs(x->valuedouble) > 9.0e15)
        return lc_fail(err, LC_EINPUT, "request field \"%s\" is missing or not an integer", key);
    *out = (long)x->valuedouble;
    return LC_OK;
}

/* An array of integers; *out malloc'ed (caller frees). */
static int req_ints(const cJSON *r, const char *key, int **out, int *n, lc_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, key);
    *out = NULL;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1)
        return lc_fail(err, LC_EINPUT, "request field \"%s\" is missing or not a non-empty array", key);
    *n = cJSON_GetArraySize(a);
    *out = malloc((size_t)*n * sizeof **out);
    if (!*out)
        return lc_fail(err, LC_EINTERNAL, "out of memory");
    int k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a)
    {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || fabs(x->valuedouble) > 2147483647.0) {
            free(*out);
            *out = NULL;
            return lc_fail(err, LC_EINPUT, "request field \"%s\" holds a value that is not a 32-bit integer", key);
        }
        (*out)[k++] = (int)x->valuedouble;
    }
    return LC_OK;
}

static int req_bool(const cJSON *r, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, key));
}

/* The optional "final_hidden" flag of prefill, decode, batch_prefill and batch_decode: absent
 * or false 0, true 1; anything else is bad input (-1, err set). */
static int req_final_hidden(const cJSON *r, lc_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r, "final_hidden");
    if (j && !cJSON_IsBool(j)) {
        lc_fail(err, LC_EINPUT, "request field \"final_hidden\" is not a boolean");
        return -1;
    }
    return cJSON_IsTrue(j);
}

static srv_prompt *find_prompt(server *s, int h)
{
    for (int i = 0; i < s->n_prompts; i++)
        if (s->prompts[i].handle == h)
            return &s->prompts[i];
    return NULL;
}

static int need_model(server *s, lc_error *err)
{
    return s->loaded ? LC_OK : lc_fail(err, LC_EINPUT, "no checkpoint loaded");
}

/* ---------------------------------------------------------------- operations */

static int do_hello(server *s, const cJSON *r, long id, lc_error *err)
{
    long v;
    if (req_int(r, "protocol", &v, err))
        return err->code;
    if (v != LC_PROTO_VERSION)
        return lc_fail(err, LC_EINPUT, "this engine speaks protocol version %d, the harness %ld", LC_PROTO_VERSION, v);
    const lc_engine_info *in = &s->e->info;
    cJSON *h = cJSON_CreateObject(), *caps = cJSON_CreateArray();
    cJSON_AddNumberToObject(h, "protocol", LC_PROTO_VERSION);
    cJSON_AddStringToObject(h, "name", in->name);
    cJSON_AddStringToObject(h, "version", in->version);
    cJSON_AddStringToObject(h, "precision", lc_eprec_name(in->precision));
    /* the in-process engine's detail, said of the server */
    const char *d = in->detail;
    char detail[300];
    if (!strncmp(d, "in process, ", 12))
        d += 12;
    snprintf(detail, sizeof detail, "logitcheck serve, %s", d);
    cJSON_AddStringToObject(h, "detail", detail);
    for (int c = 0; c < LC_CAP_COUNT; c++)
        if (lc_engine_info_has(in, (lc_cap)c))
            cJSON_AddItemToArray(caps, cJSON_CreateString(lc_cap_name((lc_cap)c)));
    cJSON_AddItemToObject(h, "capabilities", caps);
    reply_ok(h, id, NULL, 0);
    return LC_OK;
}

static int do_load(server *s, const cJSON *r, long id, lc_error *err)
{
    const cJSON *dir = cJSON_GetObjectItemCaseSensitive(r, "dir");
    if (!cJSON_IsString(dir))
        return lc_fail(err, LC_EINPUT, "request field \"dir\" is missing or not a string");
    s->n_prompts = 0;
    s->loaded = 0;
    int rc = lc_engine_load(s->e, dir->valuestring, &s->mi, err);
    if (rc)
        return rc;
    s->loaded = 1;
    const lc_model_info *m = &s->mi;
    cJSON *h = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(h, "model");
    cJSON_AddStringToObject(o, "model_type", m->model_type);
    cJSON_AddNumberToObject(o, "vocab_size", m->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", m->hidden_size);
    cJSON_AddNumberToObject(o, "num_layers", m->num_layers);
    cJSON_AddBoolToObject(o, "has_vision", m->has_vision);
    cJSON_AddNumberToObject(o, "image_token_id", m->image_token_id);
    cJSON_AddNumberToObject(o, "video_token_id", m->video_token_id);
    cJSON_AddNumberToObject(o, "vision_start_token_id", m->vision_start_token_id);
    cJSON_AddNumberToObject(o, "vision_end_token_id", m->vision_end_token_id);
    cJSON_AddNumberToObject(o, "rotary_dim", m->rotary_dim);
    cJSON_AddNumberToObject(o, "rope_theta", m->rope_theta);
    cJSON *sec = cJSON_AddArrayToObject(o, "mrope_section");
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToArray(sec, cJSON_CreateNumber(m->mrope_section[i]));
    cJSON_AddBoolToObject(o, "mrope_interleaved", m->mrope_interleaved);
    reply_ok(h, id, NULL, 0);
    return LC_OK;
}

/* A video segment of the protocol ({"video": [frames], "fps": F, "timestamp_ids": [[...]]}) into
 * g; the frame paths point into the request, the id arrays go to *frames / *ts_len / *ts_ids
 * (malloc'ed, the caller frees them even on failure). */
static int parse_video_seg(const cJSON *v, int k, lc_pseg *g, const char ***frames, int **ts_len, int32_t **ts_ids,
                           lc_error *err)
{
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(v, "video");
    const cJSON *fps = cJSON_GetObjectItemCaseSensitive(v, "fps");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(v, "timestamp_ids");
    const int nf = cJSON_IsArray(fr) ? cJSON_GetArraySize(fr) : 0, nt = cJSON_IsArray(ts) ? cJSON_GetArraySize(ts) : 0;
    if (nf < 1 || nt < 1)
        return lc_fail(err, LC_EINPUT, "segment %d: a video needs \"video\" (frame paths) and \"timestamp_ids\"", k);
    if (fps && (!cJSON_IsNumber(fps) || !(fps->valuedouble > 0) || fps->valuedouble > 1e6))
        return lc_fail(err, LC_EINPUT, "segment %d: \"fps\" is not a positive number", k);
    int total = 0;
    const cJSON *x, *y;
    cJSON_ArrayForEach(x, ts) {
        if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) > LC_PROTO_MAX_TOKENS)
            return lc_fail(err, LC_EINPUT, "segment %d: \"timestamp_ids\" is not an array of id arrays", k);
        total += cJSON_GetArraySize(x);
    }
    *frames = calloc((size_t)nf, sizeof **frames);
    *ts_len = calloc((size_t)nt, sizeof **ts_len);
    *ts_ids = malloc(((size_t)total + 1) * sizeof **ts_ids);
    if (!*frames || !*ts_len || !*ts_ids)
        return lc_fail(err, LC_EINTERNAL, "out of memory");
    int f = 0, t = 0, o = 0;
    cJSON_ArrayForEach(x, fr) {
        if (!cJSON_IsString(x))
            return lc_fail(err, LC_EINPUT, "segment %d: frame %d is not a path", k, f);
        (*frames)[f++] = x->valuestring;
    }
    cJSON_ArrayForEach(x, ts) {
        cJSON_ArrayForEach(y, x) {
            if (!cJSON_IsNumber(y) || y->valuedouble != floor(y->valuedouble) || fabs(y->valuedouble) > 2147483647.0)
                return lc_fail(err, LC_EINPUT, "segment %d: a timestamp id that is not a 32-bit integer", k);
            (*ts_ids)[o++] = (int32_t)y->valuedouble;
        }
        (*ts_len)[t++] = cJSON_GetArraySize(x);
    }
    *g = (lc_pseg){.type = LC_PSEG_VIDEO, .frames = *frames, .n_frames = nf, .fps = fps ? fps->valuedouble : 0,
                   .ts_ids = *ts_ids, .ts_len = *ts_len, .n_ts = nt};
    return LC_OK;
}

/* The optional prompt fields (capabilities pixel_limits, pad_to): integers when present; the
 * engine checks their values. */
static int req_prompt_options(const cJSON *r, lc_prompt_in *in, lc_error *err)
{
    long v = 0;
    if (cJSON_GetObjectItemCaseSensitive(r, "image_min_pixels")) {
        if (req_int(r, "image_min_pixels", &v, err))
            return err->code;
        in->image_min_pixels = v;
    }
    if (cJSON_GetObjectItemCaseSensitive(r, "image_max_pixels")) {
        if (req_int(r, "image_max_pixels", &v, err))
            return err->code;
        in->image_max_pixels = v;
    }
    if (cJSON_GetObjectItemCaseSensitive(r, "pad_to")) {
        if (req_int(r, "pad_to", &v, err))
            return err->code;
        if (v < 0 || v > LC_PROTO_MAX_TOKENS)
            return lc_fail(err, LC_EINPUT, "request field \"pad_to\" %ld is outside [0, %d]", v, LC_PROTO_MAX_TOKENS);
        in->pad_to = (int)v;
    }
    return LC_OK;
}

static int do_prompt_open(server *s, const cJSON *r, long id, lc_error *err)
{
    int rc = need_model(s, err);
    if (rc)
        return rc;
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(r, "segments");
    if (!cJSON_IsArray(segs))
        return lc_fail(err, LC_EINPUT, "request field \"segments\" is missing or not an array");
    int ns = cJSON_GetArraySize(segs);
    lc_pseg *sg = calloc((size_t)ns + 1, sizeof *sg);
    int32_t **ids = calloc((size_t)ns + 1, sizeof *ids);
    const char ***vframes = calloc((size_t)ns + 1, sizeof *vframes);
    int **vlen = calloc((size_t)ns + 1, sizeof *vlen);
    lc_prompt_info pi = {0};
    if (!sg || !ids || !vframes || !vlen) {
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
        goto done;
    }
    for (int k = 0; k < ns; k++) {
        const cJSON *g = cJSON_GetArrayItem(segs, k);
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(g, "image");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(g, "ids");
        if (cJSON_IsString(img)) {
            sg[k].type = LC_PSEG_IMAGE;
            sg[k].image = img->valuestring;
            continue;
        }
        if (cJSON_GetObjectItemCaseSensitive(g, "video")) {
            if ((rc = parse_video_seg(g, k, &sg[k], &vframes[k], &vlen[k], &ids[k], err)))
                goto done;
            continue;
        }
        if (!cJSON_IsArray(a)) {
            rc = lc_fail(err, LC_EINPUT, "segment %d has neither \"ids\" nor \"image\"", k);
            goto done;
        }
        int n = cJSON_GetArraySize(a), j = 0;
        ids[k] = malloc(((size_t)n + 1) * sizeof **ids);
        if (!ids[k]) {
            rc = lc_fail(err, LC_EINTERNAL, "out of memory");
            goto done;
        }
        const cJSON *x;
        cJSON_ArrayForEach(x, a)
        {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || fabs(x->valuedouble) > 2147483647.0) {
                rc = lc_fail(err, LC_EINPUT, "segment %d: an id that is not a 32-bit integer", k);
                goto done;
            }
            ids[k][j++] = (int32_t)x->valuedouble;
        }
        sg[k] = (lc_pseg){.type = LC_PSEG_IDS, .ids = ids[k], .n_ids = n};
    }
    long vf = 0;
    if (cJSON_GetObjectItemCaseSensitive(r, "vision_from") && (rc = req_int(r, "vision_from", &vf, err)))
        goto done;
    lc_prompt_in in = {.segs = sg, .n_segs = ns, .vision_from = (int)vf};
    if ((rc = req_prompt_options(r, &in, err)) || (rc = lc_engine_prompt_open(s->e, &in, &pi, err)))
        goto done;
    if (s->n_prompts == s->cap_prompts) {
        int nc = s->cap_prompts ? 2 * s->cap_prompts : 16;
        srv_prompt *np = realloc(s->prompts, (size_t)nc * sizeof *np);
        if (!np) {
            lc_engine_prompt_close(s->e, pi.handle);
            rc = lc_fail(err, LC_EINTERNAL, "out of memory");
            goto done;
        }
        s->prompts = np;
        s->cap_prompts = nc;
    }
    srv_prompt *old = find_prompt(s, pi.handle);
    if (old)
        *old = (srv_prompt){pi.handle, pi.n, in.pad_to};
    else
        s->prompts[s->n_prompts++] = (srv_prompt){pi.handle, pi.n, in.pad_to};
    cJSON *h = cJSON_CreateObject(), *grid = cJSON_CreateArray();
    cJSON_AddNumberToObject(h, "prompt", pi.handle);
    cJSON_AddNumberToObject(h, "n", pi.n);
    cJSON_AddNumberToObject(h, "n_images", pi.n_images);
    cJSON_AddNumberToObject(h, "rope_delta", (double)pi.rope_delta);
    for (int k = 0; k < pi.n_images; k++) {
        cJSON *g = cJSON_CreateArray();
        for (int j = 0; j < 3; j++)
            cJSON_AddItemToArray(g, cJSON_CreateNumber(pi.grid[k][j]));
        cJSON_AddItemToArray(grid, g);
    }
    cJSON_AddItemToObject(h, "grid", grid);
    out_tensor ts[2] = {
        {.name = "ids", .dt = LC_DT_I32, .ndim = 1, .dims = {pi.n}, .i32 = pi.ids},
        {.name = "positions", .dt = LC_DT_I64, .ndim = 2, .dims = {3, pi.n}, .i64 = pi.pos},
    };
    reply_ok(h, id, ts, pi.pos ? 2 : 1);
done:
    lc_prompt_info_free(&pi);
    for (int k = 0; ids && k < ns; k++)
        free(ids[k]);
    for (int k = 0; vframes && vlen && k < ns; k++) {
        free((void *)vframes[k]);
        free(vlen[k]);
    }
    free(ids);
    free((void *)vframes);
    free(vlen);
    free(sg);
    return rc;
}

static int do_prefill(server *s, const cJSON *r, long id, lc_error *err)
{
    long seq, prompt, from, to;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "seq", &seq, err)) || (rc = req_int(r, "prompt", &prompt, err)) ||
        (rc = req_int(r, "from", &from, err)) || (rc = req_int(r, "to", &to, err)))
        return rc;
    srv_prompt *sp = find_prompt(s, (int)prompt);
    if (!sp)
        return lc_fail(err, LC_EINPUT, "no prompt %ld", prompt);
    if (from < 0 || to <= from || to > sp->n)
        return lc_fail(err, LC_EINPUT, "span [%ld, %ld) is not inside the prompt's %d tokens", from, to, sp->n);
    const cJSON *jsel = cJSON_GetObjectItemCaseSensitive(r, "logits");
    const char *sel = cJSON_IsString(jsel) ? jsel->valuestring : "";
    lc_prefill_out out = {0};
    if (!strcmp(sel, "none"))
        out.sel = LC_LOGITS_NONE;
    else if (!strcmp(sel, "last"))
        out.sel = LC_LOGITS_LAST;
    else if (!strcmp(sel, "all"))
        out.sel = LC_LOGITS_ALL;
    else
        return lc_fail(err, LC_EINPUT, "request field \"logits\" is none of \"none\", \"last\", \"all\"");
    const cJSON *jg = cJSON_GetObjectItemCaseSensitive(r, "gdn_mode");
    if (jg) {
        const char *g = cJSON_IsString(jg) ? jg->valuestring : "";
        if (!strcmp(g, "auto"))
            out.gdn_mode = LC_GDN_AUTO;
        else if (!strcmp(g, "chunked"))
            out.gdn_mode = LC_GDN_CHUNKED;
        else if (!strcmp(g, "recurrent"))
            out.gdn_mode = LC_GDN_RECURRENT;
        else
            return lc_fail(err, LC_EINPUT, "request field \"gdn_mode\" is none of \"auto\", \"chunked\", \"recurrent\"");
        long ch = 0;
        if (cJSON_GetObjectItemCaseSensitive(r, "gdn_chunk") && (rc = req_int(r, "gdn_chunk", &ch, err)))
            return rc;
        out.gdn_chunk = (int)ch;
    }
    const int T = (int)(to - from), V = s->mi.vocab_size, H = s->mi.hidden_size, L = s->mi.num_layers;
    const int fin = req_final_hidden(r, err);
    if (fin < 0)
        return err->code;
    size_t nl = out.sel == LC_LOGITS_ALL ? (size_t)T * V : out.sel == LC_LOGITS_LAST ? (size_t)V : 0;
    size_t nh = req_bool(r, "hidden") ? (size_t)(L + 1) * T * H : 0;
    out.logits = nl ? malloc(nl * sizeof(double)) : NULL;
    out.hidden = nh ? malloc(nh * sizeof(double)) : NULL;
    out.final_hidden = fin ? malloc((size_t)T * H * sizeof(double)) : NULL;
    if ((nl && !out.logits) || (nh && !out.hidden) || (fin && !out.final_hidden)) {
        free(out.logits);
        free(out.hidden);
        free(out.final_hidden);
        return lc_fail(err, LC_EINTERNAL, "out of memory");
    }
    rc = lc_engine_prefill(s->e, (int)seq, (int)prompt, (int)from, (int)to, &out, err);
    if (!rc) {
        out_tensor ts[3];
        int nt = 0;
        if (nl) {
            ts[nt] = (out_tensor){.name = "logits", .dt = s->out_dt, .f = out.logits};
            if (out.sel == LC_LOGITS_ALL) {
                ts[nt].ndim = 2;
                ts[nt].dims[0] = T;
                ts[nt].dims[1] = V;
            } else {
                ts[nt].ndim = 1;
                ts[nt].dims[0] = V;
            }
            nt++;
        }
        if (nh)
            ts[nt++] = (out_tensor){.name = "hidden", .dt = s->out_dt, .ndim = 3, .dims = {L + 1, T, H}, .f = out.hidden};
        if (fin)
            ts[nt++] = (out_tensor){.name = "final_hidden", .dt = s->out_dt, .ndim = 2, .dims = {T, H},
                                    .f = out.final_hidden};
        reply_ok(cJSON_CreateObject(), id, ts, nt);
    }
    free(out.logits);
    free(out.hidden);
    free(out.final_hidden);
    return rc;
}

static int do_decode(server *s, const cJSON *r, long id, lc_error *err)
{
    long seq, token;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "seq", &seq, err)) || (rc = req_int(r, "token", &token, err)))
        return rc;
    const int V = s->mi.vocab_size, H = s->mi.hidden_size, want = req_bool(r, "logits");
    const int fin = req_final_hidden(r, err);
    if (fin < 0)
        return err->code;
    double *lg = want ? malloc((size_t)V * sizeof *lg) : NULL;
    double *fh = fin ? malloc((size_t)H * sizeof *fh) : NULL;
    if ((want && !lg) || (fin && !fh)) {
        free(lg);
        free(fh);
        return lc_fail(err, LC_EINTERNAL, "out of memory");
    }
    if (fin)
        rc = lc_engine_decode_final(s->e, (int)seq, (int32_t)token, lg, fh, err);
    else
        rc = lc_engine_decode(s->e, (int)seq, (int32_t)token, lg, err);
    if (!rc) {
        out_tensor t[2] = {{.name = "logits", .dt = s->out_dt, .ndim = 1, .dims = {V}, .f = lg},
                           {.name = "final_hidden", .dt = s->out_dt, .ndim = 1, .dims = {H}, .f = fh}};
        reply_ok(cJSON_CreateObject(), id, want ? t : t + 1, (want ? 1 : 0) + fin);
    }
    free(lg);
    free(fh);
    return rc;
}

static int do_batch(server *s, const cJSON *r, long id, int prefill, lc_error *err)
{
    int *seqs = NULL, *prompts = NULL, *tokens = NULL, B = 0, Bp = 0;
    long from = 0, to = 0;
    int rc = need_model(s, err);
    if (rc || (rc = req_ints(r, "seqs", &seqs, &B, err)))
        return rc;
    if (prefill) {
        if ((rc = req_ints(r, "prompts", &prompts, &Bp, err)) || (rc = req_int(r, "from", &from, err)) ||
            (rc = req_int(r, "to", &to, err)))
            goto done;
        int Lmax = 0;
        for (int b = 0; b < Bp; b++) {
            srv_prompt *sp = find_prompt(s, prompts[b]);
            if (!sp) {
                rc = lc_fail(err, LC_EINPUT, "no prompt %d", prompts[b]);
                goto done;
            }
            Lmax = sp->n > Lmax ? sp->n : Lmax;
            Lmax = sp->pad_to > Lmax ? sp->pad_to : Lmax;
        }
        if (from < 0 || to <= from || to > Lmax) {
            rc = lc_fail(err, LC_EINPUT, "columns [%ld, %ld) are not inside the batch's %d columns", from, to, Lmax);
            goto done;
        }
    } else if ((rc = req_ints(r, "tokens", &tokens, &Bp, err)))
        goto done;
    if (Bp != B) {
        rc = lc_fail(err, LC_EINPUT, "\"seqs\" has %d entries, \"%s\" %d", B, prefill ? "prompts" : "tokens", Bp);
        goto done;
    }
    const int V = s->mi.vocab_size, T = prefill ? (int)(to - from) : 1, want = req_bool(r, "logits");
    const int H = s->mi.hidden_size, fin = req_final_hidden(r, err);
    if (fin < 0) {
        rc = err->code;
        goto done;
    }
    double *lg = want ? malloc((size_t)B * T * V * sizeof *lg) : NULL;
    double *fh = fin ? malloc((size_t)B * T * H * sizeof *fh) : NULL;
    if ((want && !lg) || (fin && !fh)) {
        free(lg);
        free(fh);
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
        goto done;
    }
    if (prefill && fin)
        rc = lc_engine_batch_prefill_final(s->e, seqs, prompts, B, (int)from, (int)to, lg, fh, err);
    else if (prefill)
        rc = lc_engine_batch_prefill(s->e, seqs, prompts, B, (int)from, (int)to, lg, err);
    else if (fin)
        rc = lc_engine_batch_decode_final(s->e, seqs, (const int32_t *)tokens, B, lg, fh, err);
    else
        rc = lc_engine_batch_decode(s->e, seqs, (const int32_t *)tokens, B, lg, err);
    if (!rc) {
        out_tensor t[2] = {{.name = "logits", .dt = s->out_dt, .f = lg},
                           {.name = "final_hidden", .dt = s->out_dt, .f = fh}};
        for (int k = 0; k < 2; k++) {
            const int64_t W = k ? H : V;
            if (prefill) {
                t[k].ndim = 3;
                t[k].dims[0] = B, t[k].dims[1] = T, t[k].dims[2] = W;
            } else {
                t[k].ndim = 2;
                t[k].dims[0] = B, t[k].dims[1] = W;
            }
        }
        reply_ok(cJSON_CreateObject(), id, want ? t : t + 1, (want ? 1 : 0) + fin);
    }
    free(lg);
    free(fh);
done:
    free(seqs);
    free(prompts);
    free(tokens);
    return rc;
}

static int do_handle_op(server *s, const cJSON *r, long id, const char *op, lc_error *err)
{
    long in;
    int out = -1, rc;
    const char *in_key = !strcmp(op, "snapshot") ? "seq" : "snap";
    if ((rc = need_model(s, err)) || (rc = req_int(r, in_key, &in, err)))
        return rc;
    if (!strcmp(op, "snapshot"))
        rc = lc_engine_snapshot(s->e, (int)in, &out, err);
    else
        rc = lc_engine_restore(s->e, (int)in, &out, err);
    if (rc)
        return rc;
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, !strcmp(op, "snapshot") ? "snap" : "seq", out);
    reply_ok(h, id, NULL, 0);
    return LC_OK;
}

static int do_state(server *s, const cJSON *r, long id, lc_error *err)
{
    long seq;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "seq", &seq, err)))
        return rc;
    lc_state st = {0};
    if ((rc = lc_engine_state(s->e, (int)seq, &st, err)))
        return rc;
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, "len", st.len);
    out_tensor t = {.name = "state", .dt = s->out_dt, .ndim = 1, .dims = {(int64_t)st.n}, .f = st.data};
    reply_ok(h, id, &t, 1);
    lc_state_free(&st);
    return LC_OK;
}

static int do_vision(server *s, const cJSON *r, long id, lc_error *err)
{
    long prompt;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "prompt", &prompt, err)))
        return rc;
    double *emb = NULL;
    int rows = 0;
    if ((rc = lc_engine_vision(s->e, (int)prompt, &emb, &rows, err)))
        return rc;
    out_tensor t = {.name = "embeds", .dt = s->out_dt, .ndim = 2, .dims = {rows, s->mi.hidden_size}, .f = emb};
    reply_ok(cJSON_CreateObject(), id, &t, 1);
    free(emb);
    return LC_OK;
}

static int do_rope(server *s, const cJSON *r, long id, lc_error *err)
{
    int rc = need_model(s, err);
    if (rc)
        return rc;
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(r, "positions");
    if (!cJSON_IsArray(pa) || cJSON_GetArraySize(pa) != 3)
        return lc_fail(err, LC_EINPUT, "request field \"positions\" is not three arrays (T, H, W)");
    int n = cJSON_GetArraySize(cJSON_GetArrayItem(pa, 0));
    int64_t *pos = malloc((size_t)3 * n * sizeof *pos + 1);
    double *out = malloc((size_t)n * s->mi.rotary_dim * sizeof *out + 1);
    if (!pos || !out) {
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
        goto done;
    }
    for (int a = 0; a < 3; a++) {
        const cJSON *row = cJSON_GetArrayItem(pa, a), *x;
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != n) {
            rc = lc_fail(err, LC_EINPUT, "request field \"positions\": the three rows differ in length");
            goto done;
        }
        int i = 0;
        cJSON_ArrayForEach(x, row)
        {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble)) {
                rc = lc_fail(err, LC_EINPUT, "request field \"positions\" holds a non-integer");
                goto done;
            }
            pos[(size_t)a * n + i++] = (int64_t)x->valuedouble;
        }
    }
    if ((rc = lc_engine_rope(s->e, pos, n, out, err)))
        goto done;
    out_tensor t = {.name = "rope", .dt = s->out_dt, .ndim = 2, .dims = {n, s->mi.rotary_dim}, .f = out};
    reply_ok(cJSON_CreateObject(), id, &t, 1);
done:
    free(pos);
    free(out);
    return rc;
}

/* ---------------------------------------------------------------- vjp */

/* Request tensor descriptors of one array ("inputs" or "grads"), their payloads read from
 * stdin in order into t[*n...] (data malloc'ed, names borrowed from the request). Every
 * declared payload is read before anything else is checked, so the stream stays in step. */
static int vjp_tensors(const cJSON *arr, const char *key, lc_vjp_tensor *t, int *n, int max, lc_error *err)
{
    const cJSON *d;
    int rc = LC_OK;
    if (arr && !cJSON_IsArray(arr))
        return lc_fail(err, LC_EINPUT, "request field \"%s\" is not an array", key);
    cJSON_ArrayForEach(d, arr)
    {
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(d, "name");
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(d, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(d, "shape");
        const cJSON *jb = cJSON_GetObjectItemCaseSensitive(d, "bytes");
        if (!cJSON_IsString(jn) || !cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsNumber(jb))
            return lc_fail(err, LC_EINPUT, "%s: a tensor needs \"name\", \"dtype\", \"shape\" and \"bytes\"", key);
        if (*n == max)
            return lc_fail(err, LC_EINPUT, "%s: more than %d tensors", key, max);
        lc_vjp_tensor *x = &t[(*n)++];
        lc_dtype dt = lc__dtype_from_name(jd->valuestring);
        x->name = jn->valuestring;
        x->ndim = cJSON_GetArraySize(js);
        x->is_int = dt != LC_DT_NONE && !lc__dtype_is_float(dt);
        size_t cnt = 1;
        int shape_ok = dt != LC_DT_NONE && x->ndim <= LC_VJP_MAX_DIMS;
        for (int i = 0; shape_ok && i < x->ndim; i++) {
            const cJSON *v = cJSON_GetArrayItem(js, i);
            shape_ok = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble == floor(v->valuedouble) &&
                       v->valuedouble <= (double)LC_PROTO_MAX_ELEMS;
            if (shape_ok) {
                x->shape[i] = (int64_t)v->valuedouble;
                cnt *= (size_t)x->shape[i];
                shape_ok = cnt <= LC_PROTO_MAX_ELEMS;
            }
        }
        const size_t es = lc__dtype_size(dt);
        if (!shape_ok || jb->valuedouble != (double)(cnt * es))
            return lc_fail(err, LC_EINPUT, "%s: tensor '%.64s': bad dtype, shape or byte count", key, x->name);
        unsigned char *raw = malloc(cnt * es + 1);
        double *v = malloc(cnt * sizeof *v + 1);
        if (!raw || !v || fread(raw, 1, cnt * es, stdin) != cnt * es) {
            free(raw);
            free(v);
            return lc_fail(err, raw && v ? LC_EINPUT : LC_EINTERNAL, "%s: tensor '%.64s': %s", key, x->name,
                           raw && v ? "payload cut short" : "out of memory");
        }
        for (size_t i = 0; i < cnt; i++)
            v[i] = x->is_int ? (double)lc__wire_get_i(raw + i * es, dt) : lc__wire_get_f(raw + i * es, dt);
        free(raw);
        x->data = v;
    }
    return rc;
}

static int do_vjp(server *s, const cJSON *r, long id, lc_error *err)
{
    enum { MAX_T = 16, MAX_W = 64, MAX_P = 8 };
    lc_vjp_tensor t[2 * MAX_T];
    lc_vjp_param params[MAX_P];
    lc_vjp_result want[MAX_W];
    out_tensor outs[MAX_W];
    int ni = 0, ng = 0, np = 0, nw = 0;
    memset(t, 0, sizeof t);
    memset(want, 0, sizeof want);
    /* payloads first (inputs, then output gradients), whatever else is wrong */
    int rc = vjp_tensors(cJSON_GetObjectItemCaseSensitive(r, "inputs"), "inputs", t, &ni, MAX_T, err);
    if (!rc)
        rc = vjp_tensors(cJSON_GetObjectItemCaseSensitive(r, "grads"), "grads", t + MAX_T, &ng, MAX_T, err);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(r, "fn");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(r, "params");
    const cJSON *jw = cJSON_GetObjectItemCaseSensitive(r, "want"), *x;
    if (!rc)
        rc = need_model(s, err);
    if (!rc && !cJSON_IsString(fn))
        rc = lc_fail(err, LC_EINPUT, "request field \"fn\" is missing or not a string");
    if (!rc && pr && !cJSON_IsObject(pr))
        rc = lc_fail(err, LC_EINPUT, "request field \"params\" is not an object");
    const cJSON *pr_ok = rc ? NULL : pr;
    cJSON_ArrayForEach(x, pr_ok)
    {
        if (!cJSON_IsNumber(x) || np == MAX_P) {
            rc = lc_fail(err, LC_EINPUT, "request field \"params\": '%.64s' is not a number", x->string);
            break;
        }
        params[np++] = (lc_vjp_param){x->string, x->valuedouble};
    }
    if (!rc && !cJSON_IsArray(jw))
        rc = lc_fail(err, LC_EINPUT, "request field \"want\" is missing or not an array");
    const cJSON *jw_ok = rc ? NULL : jw;
    cJSON_ArrayForEach(x, jw_ok)
    {
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(x, "name"), *js = cJSON_GetObjectItemCaseSensitive(x, "shape");
        if (!cJSON_IsString(jn) || !cJSON_IsArray(js) || cJSON_GetArraySize(js) > LC_VJP_MAX_DIMS || nw == MAX_W) {
            rc = lc_fail(err, LC_EINPUT, "request field \"want\": entry %d needs \"name\" and \"shape\"", nw);
            break;
        }
        want[nw].name = jn->valuestring;
        want[nw].ndim = cJSON_GetArraySize(js);
        for (int d = 0; d < want[nw].ndim; d++)
            want[nw].shape[d] = (int64_t)cJSON_GetArrayItem(js, d)->valuedouble;
        nw++;
    }
    if (!rc) {
        lc_vjp_in in = {.fn = fn->valuestring, .params = params, .n_params = np, .inputs = t, .n_inputs = ni,
                        .grads = t + MAX_T, .n_grads = ng};
        rc = lc_engine_vjp(s->e, &in, want, nw, err);
    }
    if (!rc) {
        /* every result computed, in the order asked, in the build's precision */
        int no = 0;
        for (int i = 0; i < nw; i++) {
            if (!want[i].data)
                continue;
            outs[no] = (out_tensor){.name = want[i].name, .dt = s->out_dt, .ndim = want[i].ndim, .f = want[i].data};
            memcpy(outs[no].dims, want[i].shape, sizeof want[i].shape);
            no++;
        }
        reply_ok(cJSON_CreateObject(), id, outs, no);
    }
    lc_vjp_results_free(want, nw);
    for (int i = 0; i < 2 * MAX_T; i++)
        free((void *)t[i].data);
    return rc;
}

/* Closes and releases: the reply is ok whether or not the handle was open. */
/* speculative decoding: verify, accept, draft (PROTOCOL.md) */
static int do_verify(server *s, const cJSON *r, long id, lc_error *err)
{
    long seq;
    int *tokens = NULL, n = 0;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "seq", &seq, err)) || (rc = req_ints(r, "tokens", &tokens, &n, err)))
        return rc;
    const int V = s->mi.vocab_size;
    double *lg = n > 0 ? malloc((size_t)n * V * sizeof *lg) : NULL;
    if (n < 1)
        rc = lc_fail(err, LC_EINPUT, "request field \"tokens\" is empty");
    else if (!lg)
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
    else if (!(rc = lc_engine_verify(s->e, (int)seq, (const int32_t *)tokens, n, lg, err))) {
        out_tensor t = {.name = "logits", .dt = s->out_dt, .ndim = 2, .dims = {n, V}, .f = lg};
        reply_ok(cJSON_CreateObject(), id, &t, 1);
    }
    free(lg);
    free(tokens);
    return rc;
}

static int do_batch_verify(server *s, const cJSON *r, long id, lc_error *err)
{
    int *seqs = NULL, B = 0, L = 0;
    int rc = need_model(s, err);
    if (rc || (rc = req_ints(r, "seqs", &seqs, &B, err)))
        return rc;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(r, "tokens"), *row;
    int *counts = calloc((size_t)B, sizeof *counts), *all = NULL, n = 0, b = 0;
    double *lg = NULL;
    if (!counts) {
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
        goto done;
    }
    if (!cJSON_IsArray(rows) || cJSON_GetArraySize(rows) != B) {
        rc = lc_fail(err, LC_EINPUT, "request field \"tokens\" is not one array of token ids per sequence");
        goto done;
    }
    cJSON_ArrayForEach(row, rows) /* validate, then count */
    {
        cJSON *one = cJSON_CreateObject();
        int *ids = NULL;
        cJSON_AddItemReferenceToObject(one, "t", (cJSON *)row);
        rc = req_ints(one, "t", &ids, &counts[b], err);
        cJSON_Delete(one);
        if (rc)
            goto done;
        int *grown = realloc(all, (size_t)(n + counts[b]) * sizeof *all);
        if (!grown) {
            free(ids);
            rc = lc_fail(err, LC_EINTERNAL, "out of memory");
            goto done;
        }
        all = grown;
        memcpy(all + n, ids, (size_t)counts[b] * sizeof *ids);
        free(ids);
        n += counts[b];
        L = counts[b] > L ? counts[b] : L;
        b++;
    }
    const int V = s->mi.vocab_size;
    if (!(lg = malloc((size_t)B * L * V * sizeof *lg))) {
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
        goto done;
    }
    if (!(rc = lc_engine_batch_verify(s->e, seqs, B, (const int32_t *)all, counts, lg, err))) {
        out_tensor t = {.name = "logits", .dt = s->out_dt, .ndim = 3, .dims = {B, L, V}, .f = lg};
        reply_ok(cJSON_CreateObject(), id, &t, 1);
    }
done:
    free(seqs);
    free(counts);
    free(all);
    free(lg);
    return rc;
}

static int do_accept(server *s, const cJSON *r, long id, lc_error *err)
{
    long seq, a;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "seq", &seq, err)) || (rc = req_int(r, "accepted", &a, err)))
        return rc;
    if (!(rc = lc_engine_accept(s->e, (int)seq, (int)a, err)))
        reply_ok(cJSON_CreateObject(), id, NULL, 0);
    return rc;
}

static int do_draft(server *s, const cJSON *r, long id, lc_error *err)
{
    long seq, next, k;
    int rc = need_model(s, err);
    if (rc || (rc = req_int(r, "seq", &seq, err)) || (rc = req_int(r, "next", &next, err)) ||
        (rc = req_int(r, "k", &k, err)))
        return rc;
    if (k < 1 || k > 64)
        return lc_fail(err, LC_EINPUT, "request field \"k\" is %ld, expected 1..64", k);
    const int V = s->mi.vocab_size, want = req_bool(r, "logits");
    double *lg = want ? malloc((size_t)k * V * sizeof *lg) : NULL;
    int32_t *d = malloc((size_t)k * sizeof *d);
    if (!d || (want && !lg))
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
    else if (!(rc = lc_engine_draft(s->e, (int)seq, (int32_t)next, (int)k, d, lg, err))) {
        cJSON *h = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(h, "drafts");
        for (long i = 0; i < k; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(d[i]));
        out_tensor t = {.name = "logits", .dt = s->out_dt, .ndim = 2, .dims = {(int)k, V}, .f = lg};
        reply_ok(h, id, &t, want ? 1 : 0);
    }
    free(lg);
    free(d);
    return rc;
}

static int do_close(server *s, const cJSON *r, long id, const char *op, lc_error *err)
{
    long h;
    const char *key = !strcmp(op, "prompt_close") ? "prompt" : !strcmp(op, "seq_close") ? "seq" : "snap";
    int rc = req_int(r, key, &h, err);
    if (rc)
        return rc;
    if (!strcmp(op, "prompt_close")) {
        srv_prompt *sp = find_prompt(s, (int)h);
        if (sp)
            *sp = s->prompts[--s->n_prompts];
        lc_engine_prompt_close(s->e, (int)h);
    } else if (!strcmp(op, "seq_close"))
        lc_engine_seq_close(s->e, (int)h);
    else
        lc_engine_snap_release(s->e, (int)h);
    reply_ok(cJSON_CreateObject(), id, NULL, 0);
    return LC_OK;
}

/* step: {"rows": [{"seq", "prompt", "from", "to"} | {"seq", "token"}], "logits"} -> logits [N, V] */
static int do_step(server *s, const cJSON *r, long id, lc_error *err)
{
    int rc = need_model(s, err);
    if (rc)
        return rc;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(r, "rows");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1)
        return lc_fail(err, LC_EINPUT, "request field \"rows\" is missing or not a non-empty array");
    const int B = cJSON_GetArraySize(arr), V = s->mi.vocab_size, want = req_bool(r, "logits");
    lc_step_row *rows = calloc((size_t)B, sizeof *rows);
    double *lg = NULL;
    long total = 0;
    if (!rows)
        return lc_fail(err, LC_EINTERNAL, "out of memory");
    int b = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, arr)
    {
        long seq, v;
        if (!cJSON_IsObject(w) || (rc = req_int(w, "seq", &seq, err)))
            goto bad_row;
        rows[b].seq = (int)seq;
        if (cJSON_GetObjectItemCaseSensitive(w, "prompt")) {
            long from, to;
            if ((rc = req_int(w, "prompt", &v, err)) || (rc = req_int(w, "from", &from, err)) ||
                (rc = req_int(w, "to", &to, err)))
                goto bad_row;
            srv_prompt *sp = find_prompt(s, (int)v);
            if (!sp || from < 0 || to <= from || to > sp->n) {
                rc = lc_fail(err, LC_EINPUT, "row %d: %s", b, sp ? "span outside the prompt" : "no such prompt");
                goto done;
            }
            rows[b].prompt = (int)v;
            rows[b].from = (int)from;
            rows[b].to = (int)to;
            total += to - from;
        } else {
            if ((rc = req_int(w, "token", &v, err)))
                goto bad_row;
            rows[b].prompt = -1;
            rows[b].token = (int32_t)v;
            total += 1;
        }
        b++;
    }
    if (want && !(lg = malloc((size_t)total * V * sizeof *lg))) {
        rc = lc_fail(err, LC_EINTERNAL, "out of memory");
        goto done;
    }
    if (!(rc = lc_engine_step(s->e, rows, B, lg, err))) {
        out_tensor t = {.name = "logits", .dt = s->out_dt, .ndim = 2, .dims = {total, V}, .f = lg};
        reply_ok(cJSON_CreateObject(), id, &t, want ? 1 : 0);
    }
    goto done;
bad_row:
    if (!rc)
        rc = lc_fail(err, LC_EINPUT, "row %d of \"rows\" is not an object", b);
    else
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " (row %d)", b);
done:
    free(rows);
    free(lg);
    return rc;
}

/* prefix_store {"seq", "prompt"} -> {}; prefix_lookup {"prompt"} -> {"seq", "reused"};
 * prefix_stats {} -> the counters */
static int do_prefix(server *s, const cJSON *r, long id, const char *op, lc_error *err)
{
    long seq, prompt;
    int rc = need_model(s, err);
    if (rc)
        return rc;
    cJSON *h = cJSON_CreateObject();
    if (!strcmp(op, "prefix_store")) {
        if (!(rc = req_int(r, "seq", &seq, err)) && !(rc = req_int(r, "prompt", &prompt, err)))
            rc = lc_engine_prefix_store(s->e, (int)seq, (int)prompt, err);
    } else if (!strcmp(op, "prefix_lookup")) {
        int out = -1, reused = 0;
        if (!(rc = req_int(r, "prompt", &prompt, err)) &&
            !(rc = lc_engine_prefix_lookup(s->e, (int)prompt, &out, &reused, err))) {
            cJSON_AddNumberToObject(h, "seq", out);
            cJSON_AddNumberToObject(h, "reused", reused);
        }
    } else {
        lc_prefix_stats st;
        if (!(rc = lc_engine_prefix_stats(s->e, &st, err))) {
            cJSON_AddNumberToObject(h, "lookups", (double)st.lookups);
            cJSON_AddNumberToObject(h, "hits", (double)st.hits);
            cJSON_AddNumberToObject(h, "tokens_reused", (double)st.tokens_reused);
            cJSON_AddNumberToObject(h, "refused", (double)st.refused);
            cJSON_AddNumberToObject(h, "stored", (double)st.stored);
        }
    }
    if (rc) {
        cJSON_Delete(h);
        return rc;
    }
    reply_ok(h, id, NULL, 0);
    return LC_OK;
}

/* One request; returns 1 after shutdown. */
static int serve_one(server *s, const char *line)
{
    lc_error err = {0};
    cJSON *r = cJSON_Parse(line);
    long id = -1;
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(r, "id");
    const cJSON *jop = cJSON_GetObjectItemCaseSensitive(r, "op");
    if (cJSON_IsNumber(jid))
        id = (long)jid->valuedouble;
    if (!cJSON_IsObject(r) || !cJSON_IsNumber(jid) || !cJSON_IsString(jop)) {
        reply_err(id, LC_EINPUT, "logitcheck serve: a request must be a JSON object with \"id\" and \"op\"");
        cJSON_Delete(r);
        return 0;
    }
    const char *op = jop->valuestring;
    int rc = LC_OK, done = 0;
    if (!strcmp(op, "hello"))
        rc = do_hello(s, r, id, &err);
    else if (!strcmp(op, "load"))
        rc = do_load(s, r, id, &err);
    else if (!strcmp(op, "prompt_open"))
        rc = do_prompt_open(s, r, id, &err);
    else if (!strcmp(op, "prompt_close") || !strcmp(op, "seq_close") || !strcmp(op, "release"))
        rc = do_close(s, r, id, op, &err);
    else if (!strcmp(op, "seq_open")) {
        int seq = -1;
        if (!(rc = need_model(s, &err)) && !(rc = lc_engine_seq_open(s->e, &seq, &err))) {
            cJSON *h = cJSON_CreateObject();
            cJSON_AddNumberToObject(h, "seq", seq);
            reply_ok(h, id, NULL, 0);
        }
    } else if (!strcmp(op, "prefill"))
        rc = do_prefill(s, r, id, &err);
    else if (!strcmp(op, "decode"))
        rc = do_decode(s, r, id, &err);
    else if (!strcmp(op, "snapshot") || !strcmp(op, "restore"))
        rc = do_handle_op(s, r, id, op, &err);
    else if (!strcmp(op, "batch_prefill") || !strcmp(op, "batch_decode"))
        rc = do_batch(s, r, id, !strcmp(op, "batch_prefill"), &err);
    else if (!strcmp(op, "state"))
        rc = do_state(s, r, id, &err);
    else if (!strcmp(op, "vision"))
        rc = do_vision(s, r, id, &err);
    else if (!strcmp(op, "rope"))
        rc = do_rope(s, r, id, &err);
    else if (!strcmp(op, "vjp"))
        rc = do_vjp(s, r, id, &err);
    else if (!strcmp(op, "step"))
        rc = do_step(s, r, id, &err);
    else if (!strcmp(op, "prefix_store") || !strcmp(op, "prefix_lookup") || !strcmp(op, "prefix_stats"))
        rc = do_prefix(s, r, id, op, &err);
    else if (!strcmp(op, "verify"))
        rc = do_verify(s, r, id, &err);
    else if (!strcmp(op, "batch_verify"))
        rc = do_batch_verify(s, r, id, &err);
    else if (!strcmp(op, "accept"))
        rc = do_accept(s, r, id, &err);
    else if (!strcmp(op, "draft"))
        rc = do_draft(s, r, id, &err);
    else if (!strcmp(op, "reset")) {
        if (!(rc = lc_engine_reset(s->e, &err))) {
            s->n_prompts = 0;
            reply_ok(cJSON_CreateObject(), id, NULL, 0);
        }
    } else if (!strcmp(op, "shutdown")) {
        reply_ok(cJSON_CreateObject(), id, NULL, 0);
        done = 1;
    } else
        rc = lc_fail(&err, LC_EUNSUPPORTED, "unknown op '%.64s'", op);
    if (rc)
        reply_err(id, rc, err.msg);
    cJSON_Delete(r);
    return done;
}

static void serve_usage(FILE *to)
{
    fprintf(to, "usage: logitcheck serve [--inject FAULT ...]\n"
                "  The reference engine of this build behind the engine protocol (harness/PROTOCOL.md)\n"
                "  on stdin/stdout, for `logitcheck run --engine 'logitcheck serve'`. Diagnostics on stderr.\n"
                "  --inject FAULT  plant a bug in the engine (as `run --inject`):\n");
    lc_fault_usage(to, "                   ");
}

int lc_cmd_serve(int argc, char **argv)
{
    lc_fault_set faults;
    memset(&faults, 0, sizeof faults);
    for (int i = 1; i < argc; i++) {
        lc_error err = {0};
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            serve_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--inject") && i + 1 < argc) {
            if (lc_fault_parse(&faults, argv[++i], &err)) {
                fprintf(stderr, "logitcheck serve: %s\n", err.msg);
                return 2;
            }
            continue;
        }
        fprintf(stderr, "logitcheck serve: unknown option '%s'%s\n", argv[i],
                !strcmp(argv[i], "--inject") ? " without a value" : "");
        return 2;
    }
    server s = {0};
    lc_error err = {0};
    if (lc_engine_ref_new(&s.e, &faults, &err)) {
        fprintf(stderr, "logitcheck serve: %s\n", err.msg);
        return 3;
    }
    s.out_dt = s.e->info.precision == LC_EPREC_F64 ? LC_DT_F64 : LC_DT_F32;
    static char outbuf[1 << 20];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if ((size_t)n > LC_PROTO_MAX_LINE) {
            reply_err(-1, LC_EINPUT, "logitcheck serve: a request line longer than the protocol's limit");
            continue;
        }
        if (serve_one(&s, line))
            break;
    }
    free(line);
    free(s.prompts);
    lc_engine_free(s.e);
    fflush(stdout);
    return rc;
}
