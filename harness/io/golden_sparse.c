/* SPDX-License-Identifier: MIT */
/* Reader of the sparse real-scale goldens (see golden_sparse.h). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_sparse.h"

/* ---------------------------------------------------------------- numeric attributes */

/* Reads the scalar numeric attribute `attr` of object `obj` as double; *found = 0 (and LC_OK)
 * when it is absent. */
static int attr_f64(const lc_h5 *f, const char *obj, const char *attr, double *out, int *found, lc_error *err)
{
    *found = 0;
    if (H5Aexists_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT) <= 0)
        return LC_OK;
    hid_t a = H5Aopen_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s = a < 0 ? -1 : H5Aget_space(a);
    int rc = LC_OK;
    if (a < 0 || s < 0 || H5Sget_simple_extent_npoints(s) != 1 || H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        rc = lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is not one number", f->path, attr, obj);
    else
        *found = 1;
    if (s >= 0)
        H5Sclose(s);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* Reads the string attribute `attr` of `obj` into a malloc'ed string. The exporter (h5py)
 * writes variable-length UTF-8 strings, which HDF5 will not convert to an ASCII memory type:
 * the memory type takes the file type's character set. */
static int attr_str(const lc_h5 *f, const char *obj, const char *attr, char **out, lc_error *err)
{
    *out = NULL;
    if (H5Aexists_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT) <= 0)
        return lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is missing", f->path, attr, obj);
    hid_t a = H5Aopen_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    int rc = LC_OK;
    if (t < 0 || H5Tget_class(t) != H5T_STRING) {
        rc = lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is not a string", f->path, attr, obj);
    } else {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Tis_variable_str(t) > 0) {
            char *v = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &v) < 0 || !(*out = strdup(v ? v : "")))
                rc = lc_fail(err, LC_EINPUT, "%s: cannot read attribute '%s' of '%s'", f->path, attr, obj);
            if (v)
                H5free_memory(v);
        } else {
            size_t sz = H5Tget_size(t);
            H5Tset_size(mt, sz);
            if (!(*out = calloc(sz + 1, 1)) || H5Aread(a, mt, *out) < 0) {
                free(*out);
                *out = NULL;
                rc = lc_fail(err, LC_EINPUT, "%s: cannot read attribute '%s' of '%s'", f->path, attr, obj);
            }
        }
        H5Tclose(mt);
    }
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* ---------------------------------------------------------------- root */

int lc_sparse_root_read(const lc_h5 *f, lc_sparse_root *out, lc_error *err)
{
    memset(out, 0, sizeof *out);
    char *format = NULL;
    double topk = 0;
    int found = 0, rc;
    if ((rc = attr_str(f, "/", "format", &format, err)) != LC_OK)
        return rc;
    const int format_ok = !strcmp(format, "logitcheck-golden-real");
    if (!format_ok)
        rc = lc_fail(err, LC_EINPUT, "%s: format '%s', expected 'logitcheck-golden-real'", f->path, format);
    free(format);
    if (rc == LC_OK)
        rc = attr_str(f, "/", "layout", &out->layout, err);
    if (rc == LC_OK && strcmp(out->layout, LC_SPARSE_LAYOUT))
        rc = lc_fail(err, LC_EINPUT, "%s: layout '%s', expected '%s'", f->path, out->layout, LC_SPARSE_LAYOUT);
    if (rc == LC_OK)
        rc = attr_str(f, "/", "checkpoint", &out->checkpoint, err);
    if (rc == LC_OK)
        rc = attr_str(f, "/", "checkpoint_sha256", &out->checkpoint_sha256, err);
    if (rc == LC_OK && strlen(out->checkpoint_sha256) != 64)
        rc = lc_fail(err, LC_EINPUT, "%s: checkpoint_sha256 '%s' is not 64 hex digits", f->path,
                     out->checkpoint_sha256);
    if (rc == LC_OK)
        rc = attr_f64(f, "/", "topk", &topk, &found, err);
    if (rc == LC_OK && (!found || topk < 1 || topk > 64 || topk != floor(topk)))
        rc = lc_fail(err, LC_EINPUT, "%s: root attribute 'topk' missing or not an integer in 1..64", f->path);
    out->topk = (int)topk;
    if (rc != LC_OK)
        lc_sparse_root_free(out);
    return rc;
}

void lc_sparse_root_free(lc_sparse_root *r)
{
    free(r->layout);
    free(r->checkpoint);
    free(r->checkpoint_sha256);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- one sequence */

/* group/name into buf */
static const char *path_of(char *buf, size_t n, const char *group, const char *name)
{
    snprintf(buf, n, "%s/%s", group, name);
    return buf;
}

/* Reads group/name as double or int64 (one of outd / outi) and checks its shape against
 * (ndim, want); want[i] < 0 takes the file's extent and stores it there. */
static int read_shaped(const lc_h5 *f, const char *group, const char *name, double **outd, int64_t **outi,
                       int ndim, int64_t *want, lc_error *err)
{
    char p[1024];
    lc_h5_shape sh;
    path_of(p, sizeof p, group, name);
    int rc = outd ? lc_h5_read_f64(f, p, outd, &sh, err) : lc_h5_read_i64(f, p, outi, &sh, err);
    if (rc != LC_OK)
        return rc;
    int64_t w[LC_H5_MAX_DIMS];
    for (int i = 0; i < ndim && i < LC_H5_MAX_DIMS; i++)
        w[i] = want[i] < 0 && i < sh.ndim ? sh.shape[i] : want[i];
    if ((rc = lc_h5_expect_shape(f, p, &sh, ndim, w, err)) != LC_OK)
        return rc;
    for (int i = 0; i < ndim; i++)
        want[i] = w[i];
    return LC_OK;
}

int lc_sparse_seq_read(const lc_h5 *f, const char *group, lc_sparse_seq *s, lc_error *err)
{
    memset(s, 0, sizeof *s);
    s->top1_min_margin = s->router_min_margin = NAN;
    char p[1024];
    int64_t d1[1] = {-1}, d2[2] = {-1, -1};
    int rc;

    /* every position: P from lse, k from topk_ids */
    if ((rc = read_shaped(f, group, "lse", &s->lse, NULL, 1, d1, err)) != LC_OK)
        goto fail;
    const int64_t P = d1[0];
    d2[0] = P, d2[1] = -1;
    if ((rc = read_shaped(f, group, "topk_ids", NULL, &s->topk_ids, 2, d2, err)) != LC_OK)
        goto fail;
    const int64_t k = d2[1];
    d2[0] = P, d2[1] = k;
    if ((rc = read_shaped(f, group, "topk_values", &s->topk_values, NULL, 2, d2, err)) != LC_OK)
        goto fail;
    d1[0] = P;
    if ((rc = read_shaped(f, group, "hidden_rms", &s->hidden_rms, NULL, 1, d1, err)) != LC_OK)
        goto fail;
    d2[0] = P, d2[1] = 8;
    if ((rc = read_shaped(f, group, "hidden_sketch", &s->hidden_sketch, NULL, 2, d2, err)) != LC_OK)
        goto fail;
    /* sampled positions */
    d1[0] = -1;
    if ((rc = read_shaped(f, group, "sample_positions", NULL, &s->sample_positions, 1, d1, err)) != LC_OK)
        goto fail;
    const int64_t S = d1[0];
    d2[0] = S, d2[1] = -1;
    if ((rc = read_shaped(f, group, "hidden_sample", &s->hidden_sample, NULL, 2, d2, err)) != LC_OK)
        goto fail;
    s->P = (int)P, s->k = (int)k, s->S = (int)S, s->H = (int)d2[1];
    for (int i = 0; i < s->S; i++)
        if (s->sample_positions[i] < 0 || s->sample_positions[i] >= P ||
            (i > 0 && s->sample_positions[i] <= s->sample_positions[i - 1])) {
            rc = lc_fail(err, LC_EINPUT, "%s: %s/sample_positions[%d] = %lld is not increasing within 0..%lld",
                         f->path, group, i, (long long)s->sample_positions[i], (long long)P - 1);
            goto fail;
        }
    for (int64_t i = 0; i < P * k; i++)
        if (s->topk_ids[i] < 0) {
            rc = lc_fail(err, LC_EINPUT, "%s: %s/topk_ids holds a negative id", f->path, group);
            goto fail;
        }

    /* inputs of a single-sequence case */
    if (lc_h5_exists(f, path_of(p, sizeof p, group, "input_ids"))) {
        d1[0] = -1;
        if ((rc = read_shaped(f, group, "input_ids", NULL, &s->input_ids, 1, d1, err)) != LC_OK)
            goto fail;
        s->T = (int)d1[0];
        s->N = s->P - s->T;
        if (s->N < 0) {
            rc = lc_fail(err, LC_EINPUT, "%s: %s: %d prompt tokens but %d positions", f->path, group, s->T, s->P);
            goto fail;
        }
        d2[0] = 3, d2[1] = s->T;
        if ((rc = read_shaped(f, group, "position_ids", NULL, &s->position_ids, 2, d2, err)) != LC_OK)
            goto fail;
        d1[0] = s->N;
        if ((rc = read_shaped(f, group, "decode_tokens", NULL, &s->decode_tokens, 1, d1, err)) != LC_OK)
            goto fail;
        int64_t *delta = NULL;
        lc_h5_shape sh;
        if ((rc = lc_h5_read_i64(f, path_of(p, sizeof p, group, "rope_delta"), &delta, &sh, err)) != LC_OK)
            goto fail;
        const int one = sh.count == 1;
        if (one)
            s->rope_delta = delta[0];
        free(delta);
        if (!one) {
            rc = lc_fail(err, LC_EINPUT, "%s: %s/rope_delta holds %zu values, expected 1", f->path, group, sh.count);
            goto fail;
        }
    }

    /* the verbatim row */
    if (lc_h5_exists(f, path_of(p, sizeof p, group, "logits_full"))) {
        d1[0] = -1;
        if ((rc = read_shaped(f, group, "logits_full", &s->logits_full, NULL, 1, d1, err)) != LC_OK)
            goto fail;
        s->V = (int)d1[0];
        double pos = -1;
        int found = 0;
        if ((rc = attr_f64(f, p, "position", &pos, &found, err)) != LC_OK)
            goto fail;
        if (!found || pos < 0 || pos >= P || pos != floor(pos)) {
            rc = lc_fail(err, LC_EINPUT, "%s: %s: attribute 'position' missing or outside 0..%lld", f->path, p,
                         (long long)P - 1);
            goto fail;
        }
        s->logits_full_pos = (int64_t)pos;
    }

    /* routing gaps per position (MoE) */
    if (lc_h5_exists(f, path_of(p, sizeof p, group, "router_gap"))) {
        d1[0] = P;
        if ((rc = read_shaped(f, group, "router_gap", &s->router_gap, NULL, 1, d1, err)) != LC_OK)
            goto fail;
        for (int64_t i = 0; i < P; i++)
            if (!(s->router_gap[i] >= 0)) {
                rc = lc_fail(err, LC_EINPUT, "%s: %s/router_gap[%lld] = %g is not a gap (>= 0)", f->path, group,
                             (long long)i, s->router_gap[i]);
                goto fail;
            }
    }

    /* margins the exporter measured */
    int found = 0;
    double v = 0;
    if ((rc = attr_f64(f, group, "top1_min_margin", &v, &found, err)) != LC_OK)
        goto fail;
    if (found)
        s->top1_min_margin = v;
    if ((rc = attr_f64(f, group, "router_min_margin", &v, &found, err)) != LC_OK)
        goto fail;
    if (found)
        s->router_min_margin = v;
    return LC_OK;

fail:
    lc_sparse_seq_free(s);
    return rc;
}

void lc_sparse_seq_free(lc_sparse_seq *s)
{
    free(s->lse);
    free(s->topk_ids);
    free(s->topk_values);
    free(s->hidden_rms);
    free(s->hidden_sketch);
    free(s->sample_positions);
    free(s->hidden_sample);
    free(s->input_ids);
    free(s->position_ids);
    free(s->decode_tokens);
    free(s->logits_full);
    free(s->router_gap);
    memset(s, 0, sizeof *s);
    s->top1_min_margin = s->router_min_margin = NAN;
}
