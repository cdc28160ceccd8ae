/* SPDX-License-Identifier: MIT */
/* HDF5 readers and the atomic writer (see h5io.h). */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5io.h"
#include "lc_file.h"

static void quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---------------------------------------------------------------- validation on open */

/* The most links a file may hold (a golden has a few hundred). */
#define MAX_LINKS 200000
/* deflate cannot expand data by more than about 1032x */
#define DEFLATE_MAX_RATIO 1100

typedef struct {
    lc_h5 *f;
    lc_error *err;
    int rc;
    long links;
} visit_ctx;

static int check_dataset(lc_h5 *f, hid_t d, const char *name, lc_error *err)
{
    int rc = LC_OK;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t tsize = t >= 0 ? H5Tget_size(t) : 0;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (t < 0 || sp < 0 || dcpl < 0) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s' cannot be read (corrupt file?)", f->path, name);
        goto done;
    }
    if (cls != H5T_INTEGER && cls != H5T_FLOAT && cls != H5T_STRING) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s' is neither numeric nor strings", f->path, name);
        goto done;
    }
    if (cls != H5T_STRING && (tsize == 0 || tsize > 8)) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s' has %zu-byte elements, expected at most 8", f->path, name,
                     tsize);
        goto done;
    }
    if (nd < 0 || nd > LC_H5_MAX_DIMS) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s' has an unsupported rank %d", f->path, name, nd);
        goto done;
    }
    hsize_t dims[LC_H5_MAX_DIMS];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    size_t count = 1, bytes = 0, mem = 0;
    int wrap = 0;
    for (int i = 0; i < nd; i++)
        wrap |= dims[i] > SIZE_MAX || lc_size_mul(count, (size_t)dims[i], &count);
    /* readers convert to 8-byte values; strings cost at least a pointer each */
    wrap |= lc_size_mul(count, cls == H5T_STRING ? 16 : 8, &mem) || lc_size_mul(count, tsize, &bytes);
    if (wrap) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s': its dimensions multiply past %zu-bit sizes", f->path, name,
                     sizeof(size_t) * 8);
        goto done;
    }
    if (mem > lc_mem_limit()) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s': %zu elements need %zu bytes, more than the memory limit of %zu "
                     "(--max-memory)", f->path, name, count, mem, lc_mem_limit());
        goto done;
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    if (layout != H5D_COMPACT && layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s': unsupported storage layout (virtual datasets are refused)",
                     f->path, name);
        goto done;
    }
    if (H5Pget_external_count(dcpl) != 0) {
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s' keeps its data in external files (refused)", f->path, name);
        goto done;
    }
    int nf = H5Pget_nfilters(dcpl), deflate = 0;
    for (int i = 0; i < nf; i++) {
        unsigned flags = 0, cd[8];
        size_t ncd = 8;
        char fname[64];
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof fname, fname, NULL);
        if (id == H5Z_FILTER_DEFLATE)
            deflate = 1;
        else if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32) {
            rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s': filter %d is not supported (deflate, shuffle, fletcher32)",
                         f->path, name, (int)id);
            goto done;
        }
    }
    if (cls != H5T_STRING && count > 0) {
        hsize_t stored = H5Dget_storage_size(d);
        size_t cap;
        if (lc_size_mul((size_t)stored, deflate ? DEFLATE_MAX_RATIO : 1, &cap))
            cap = SIZE_MAX;
        if (stored > f->file_size || bytes > cap) {
            rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s' declares %zu bytes but the file stores %llu for it "
                         "(file of %zu bytes)", f->path, name, bytes, (unsigned long long)stored, f->file_size);
            goto done;
        }
    }
done:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    visit_ctx *v = op;
    if (++v->links > MAX_LINKS) {
        v->rc = lc_fail(v->err, LC_EINPUT, "%s: more than %d objects", v->f->path, MAX_LINKS);
        return -1;
    }
    if (info->type != H5L_TYPE_HARD) {
        v->rc = lc_fail(v->err, LC_EINPUT, "%s: '%s' is %s link (only plain objects are read)", v->f->path, name,
                        info->type == H5L_TYPE_EXTERNAL ? "an external" : info->type == H5L_TYPE_SOFT ? "a soft"
                                                                                           : "a user-defined");
        return -1;
    }
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        v->rc = lc_fail(v->err, LC_EINPUT, "%s: object '%s' cannot be opened (corrupt file?)", v->f->path, name);
        return -1;
    }
    if (H5Iget_type(o) == H5I_DATASET)
        v->rc = check_dataset(v->f, o, name, v->err);
    H5Oclose(o);
    return v->rc ? -1 : 0;
}

/* The root attribute `format` (optional; one of LC_H5_FORMAT_MAP) and, for the versioned formats,
 * `format_version` 1. */
static int check_format(lc_h5 *f, lc_error *err)
{
    htri_t has = H5Aexists((hid_t)f->id, "format");
    if (has < 0)
        return lc_fail(err, LC_EINPUT, "%s: root attributes cannot be read (corrupt file?)", f->path);
    if (!has)
        return LC_OK;
    char *fmt = NULL;
    int rc = lc_h5_read_attr_str(f, "/", "format", &fmt, err);
    if (rc)
        return rc;
    static const struct { lc_h5_format id; const char *name; int versioned; } known[] = {
#define LC__H5_FORMAT_ROW(id, name, versioned) {LC_H5_##id, name, versioned},
        LC_H5_FORMAT_MAP(LC__H5_FORMAT_ROW)
#undef LC__H5_FORMAT_ROW
    };
    int versioned = 0;
    f->format = LC_H5_OTHER;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(fmt, known[i].name)) {
            f->format = known[i].id;
            versioned = known[i].versioned;
        }
    if (f->format == LC_H5_OTHER)
        rc = lc_fail(err, LC_EINPUT, "%s: format '%.100s' is not one this suite reads (logitcheck-golden, "
                     "logitcheck-golden-real, logitcheck-gradients, logitcheck-infer)", f->path, fmt);
    free(fmt);
    if (rc || !versioned)
        return rc;
    if (H5Aexists((hid_t)f->id, "format_version") <= 0)
        return lc_fail(err, LC_EINPUT, "%s: attribute 'format_version' is missing", f->path);
    hid_t a = H5Aopen((hid_t)f->id, "format_version", H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
    long long ver = -1;
    int ok = a >= 0 && t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_INTEGER &&
             H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_LLONG, &ver) >= 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    if (!ok)
        return lc_fail(err, LC_EINPUT, "%s: attribute 'format_version' is not one integer", f->path);
    if (ver != 1)
        return lc_fail(err, LC_EINPUT, "%s: format_version %lld is not supported (this suite reads 1)", f->path, ver);
    return LC_OK;
}

static int validate(lc_h5 *f, lc_error *err)
{
    int rc = check_format(f, err);
    if (rc)
        return rc;
    visit_ctx v = {f, err, 0, 0};
    herr_t r = H5Lvisit((hid_t)f->id, H5_INDEX_NAME, H5_ITER_NATIVE, visit_link, &v);
    if (v.rc)
        return v.rc;
    if (r < 0)
        return lc_fail(err, LC_EINPUT, "%s: its groups cannot be walked (corrupt file?)", f->path);
    return LC_OK;
}

/* ---------------------------------------------------------------- reading */

/* A file that passed validation stays open; any failure closes it. */
static int finish_open(lc_h5 *f, hid_t id, lc_error *err)
{
    f->id = id;
    int rc = validate(f, err);
    if (rc)
        lc_h5_close(f);
    return rc;
}

int lc_h5_open(lc_h5 *f, const char *path, lc_error *err)
{
    quiet();
    memset(f, 0, sizeof *f);
    f->id = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd;
    size_t size;
    lc_error oe;
    if (lc_file_open_input(path, NULL, SIZE_MAX, &fd, &size, &oe)) {
        if (access(path, F_OK) != 0)
            return lc_fail(err, LC_EINPUT, "%s: cannot open (missing or unreadable)", path);
        return lc_fail(err, LC_EINPUT, "%s", oe.msg);
    }
    close(fd);
    f->file_size = size;
    hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0)
        return lc_fail(err, LC_EINPUT, "%s: not a readable HDF5 file (truncated or corrupt?)", path);
    return finish_open(f, id, err);
}

int lc_h5_open_image(lc_h5 *f, const char *name, const void *image, size_t len, lc_error *err)
{
    quiet();
    memset(f, 0, sizeof *f);
    f->id = -1;
    snprintf(f->path, sizeof f->path, "%s", name);
    f->file_size = len;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t id = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 && H5Pset_file_image(fapl, (void *)image, len) >= 0)
        id = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (id < 0)
        return lc_fail(err, LC_EINPUT, "%s: not a readable HDF5 file (truncated or corrupt?)", name);
    return finish_open(f, id, err);
}

void lc_h5_close(lc_h5 *f)
{
    if (f && f->id >= 0 && f->id != 0)
        H5Fclose((hid_t)f->id);
    if (f)
        f->id = -1;
}

int lc_h5_exists(const lc_h5 *f, const char *name)
{
    /* every intermediate link must exist before H5Lexists may be asked about the next one */
    char buf[1024];
    size_t len = strlen(name);
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, name, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        htri_t e = H5Lexists((hid_t)f->id, buf, H5P_DEFAULT);
        buf[i] = c;
        if (e <= 0)
            return 0;
    }
    return 1;
}

static int open_dataset(const lc_h5 *f, const char *name, hid_t *dset, lc_h5_shape *shape, lc_error *err)
{
    if (!lc_h5_exists(f, name))
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s' is missing", f->path, name);
    hid_t d = H5Dopen2((hid_t)f->id, name, H5P_DEFAULT);
    if (d < 0)
        return lc_fail(err, LC_EINPUT, "%s: '%s' is not a dataset", f->path, name);
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || nd > LC_H5_MAX_DIMS) {
        H5Sclose(sp);
        H5Dclose(d);
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s' has an unsupported rank %d", f->path, name, nd);
    }
    hsize_t dims[LC_H5_MAX_DIMS];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    shape->ndim = nd;
    shape->count = 1;
    for (int i = 0; i < nd; i++) {
        shape->shape[i] = (int64_t)dims[i];
        if (dims[i] > INT64_MAX || lc_size_mul(shape->count, (size_t)dims[i], &shape->count)) {
            H5Dclose(d);
            return lc_fail(err, LC_EINPUT, "%s: dataset '%s': its dimensions multiply past %zu-bit sizes", f->path,
                           name, sizeof(size_t) * 8);
        }
    }
    *dset = d;
    return LC_OK;
}

/* ---------------------------------------------------------------- golden values */

/* Datasets of a golden that hold integers by definition. */
static const char *const integer_sets[] = {"input_ids", "decode_tokens", "position_ids", "attention_mask",
                                           "image_grid_thw", "rope_delta", "rope_deltas", "image_sizes"};
/* ... and those that hold token ids (inside the vocabulary, never empty). */
static const char *const token_sets[] = {"input_ids", "decode_tokens"};

static int in_list(const char *base, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(base, list[i]))
            return 1;
    return 0;
}

/* "/a/b/name" -> base "name", group "/a/b" ("" at the root). */
static const char *split_name(const char *name, char *group, size_t cap)
{
    const char *slash = strrchr(name, '/');
    size_t n = slash ? (size_t)(slash - name) : 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(group, name, n);
    group[n] = '\0';
    return slash ? slash + 1 : name;
}

/* The vocabulary of a golden group: the last dimension of its logits (0 when it has none). */
static int64_t group_vocab(const lc_h5 *f, const char *group)
{
    static const char *const sets[] = {"prefill_logits", "logits", "decode_logits"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        char n[1200];
        snprintf(n, sizeof n, "%s/%s", group, sets[i]);
        if (!lc_h5_exists(f, n))
            continue;
        hid_t d = H5Dopen2((hid_t)f->id, n, H5P_DEFAULT);
        if (d < 0)
            continue;
        hid_t sp = H5Dget_space(d);
        int nd = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[LC_H5_MAX_DIMS] = {0};
        if (nd > 0 && nd <= LC_H5_MAX_DIMS)
            H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        H5Dclose(d);
        if (nd > 0 && nd <= LC_H5_MAX_DIMS)
            return (int64_t)dims[nd - 1];
    }
    return 0;
}

/* The pad mask of a golden group, when it has one shaped (B, L) and the dataset starts with
 * (B, L): *mask malloc'ed (caller frees), *per elements of the dataset per (b, l). */
static int group_mask(const lc_h5 *f, const char *group, const lc_h5_shape *shape, int64_t **mask, size_t *per)
{
    *mask = NULL;
    char n[1200];
    snprintf(n, sizeof n, "%s/attention_mask", group);
    if (!lc_h5_exists(f, n) || shape->ndim < 2)
        return 0;
    hid_t d = H5Dopen2((hid_t)f->id, n, H5P_DEFAULT);
    if (d < 0)
        return 0;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2];
    int ok = H5Sget_simple_extent_ndims(sp) == 2 && H5Sget_simple_extent_dims(sp, dims, NULL) == 2 &&
             (int64_t)dims[0] == shape->shape[0] && (int64_t)dims[1] == shape->shape[1] && dims[0] * dims[1] > 0;
    H5Sclose(sp);
    int64_t *m = ok ? malloc((size_t)(dims[0] * dims[1]) * sizeof *m) : NULL;
    ok = m && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, m) >= 0;
    H5Dclose(d);
    if (!ok) {
        free(m);
        return 0;
    }
    *mask = m;
    *per = shape->count / (size_t)(dims[0] * dims[1]);
    return 1;
}

/* Checks what a golden's dataset holds (see h5io.h). buf holds count values of memtype. */
static int check_golden_values(const lc_h5 *f, const char *name, H5T_class_t cls, const void *buf,
                               int as_double, const lc_h5_shape *shape, lc_error *err)
{
    char group[1024];
    const char *base = split_name(name, group, sizeof group);
    const int ints = in_list(base, integer_sets, sizeof integer_sets / sizeof integer_sets[0]);
    if (ints && cls != H5T_INTEGER)
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s': expected integers, found floating point", f->path, name);
    if (in_list(base, token_sets, sizeof token_sets / sizeof token_sets[0])) {
        if (shape->count == 0)
            return lc_fail(err, LC_EINPUT, "%s: dataset '%s' is empty", f->path, name);
        const int64_t V = group_vocab(f, group);
        for (size_t i = 0; i < shape->count; i++) {
            const double v = as_double ? ((const double *)buf)[i] : (double)((const int64_t *)buf)[i];
            if (v < 0 || (V > 0 && v >= (double)V))
                return lc_fail(err, LC_EINPUT, "%s: dataset '%s': token id %.0f at index %zu is outside the "
                               "vocabulary (%lld entries)", f->path, name, v, i, (long long)V);
        }
    }
    if (cls != H5T_FLOAT || !as_double)
        return LC_OK;
    const double *d = buf;
    int64_t *mask = NULL;
    size_t per = 1;
    int have_mask = -1;
    int rc = LC_OK;
    for (size_t i = 0; i < shape->count && !rc; i++) {
        if (isfinite(d[i]))
            continue;
        if (have_mask < 0)
            have_mask = group_mask(f, group, shape, &mask, &per);
        if (have_mask && isnan(d[i]) && mask[i / per] == 0)
            continue; /* a pad position */
        rc = lc_fail(err, LC_EINPUT, "%s: dataset '%s': value %g at flat index %zu is not finite", f->path, name, d[i],
                     i);
    }
    free(mask);
    return rc;
}

static int read_typed(const lc_h5 *f, const char *name, hid_t memtype, size_t elem, H5T_class_t want_class,
                      void **out, lc_h5_shape *shape, lc_error *err)
{
    hid_t d;
    int rc = open_dataset(f, name, &d, shape, err);
    if (rc)
        return rc;
    hid_t ft = H5Dget_type(d);
    H5T_class_t cls = H5Tget_class(ft);
    H5Tclose(ft);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
        H5Dclose(d);
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s' is not numeric", f->path, name);
    }
    if (want_class == H5T_INTEGER && cls != H5T_INTEGER) {
        H5Dclose(d);
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s': expected integers, found floating point", f->path, name);
    }
    size_t bytes;
    if (lc_size_mul(shape->count ? shape->count : 1, elem, &bytes) || bytes > lc_mem_limit()) {
        H5Dclose(d);
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s': %zu elements exceed the memory limit of %zu bytes "
                       "(--max-memory)", f->path, name, shape->count, lc_mem_limit());
    }
    void *buf = malloc(bytes);
    if (!buf) {
        H5Dclose(d);
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory reading '%s'", f->path, name);
    }
    herr_t r = shape->count ? H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    H5Dclose(d);
    if (r < 0) {
        free(buf);
        return lc_fail(err, LC_EINPUT, "%s: cannot read dataset '%s' (corrupt file?)", f->path, name);
    }
    if (f->format == LC_H5_GOLDEN &&
        (rc = check_golden_values(f, name, cls, buf, want_class == H5T_FLOAT, shape, err)) != LC_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    return LC_OK;
}

int lc_h5_read_f64(const lc_h5 *f, const char *name, double **out, lc_h5_shape *shape, lc_error *err)
{
    return read_typed(f, name, H5T_NATIVE_DOUBLE, sizeof(double), H5T_FLOAT, (void **)out, shape, err);
}

int lc_h5_read_i64(const lc_h5 *f, const char *name, int64_t **out, lc_h5_shape *shape, lc_error *err)
{
    return read_typed(f, name, H5T_NATIVE_INT64, sizeof(int64_t), H5T_INTEGER, (void **)out, shape, err);
}

void lc_h5_strings_free(char **s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

int lc_h5_read_strings(const lc_h5 *f, const char *name, char ***out, int *n, lc_error *err)
{
    hid_t d;
    lc_h5_shape shape;
    int rc = open_dataset(f, name, &d, &shape, err);
    if (rc)
        return rc;
    hid_t ft = H5Dget_type(d);
    if (H5Tget_class(ft) != H5T_STRING || shape.ndim > 1) {
        H5Tclose(ft);
        H5Dclose(d);
        return lc_fail(err, LC_EINPUT, "%s: dataset '%s': expected a 1-D array of strings", f->path, name);
    }
    size_t cnt = shape.count;
    char **res = calloc(cnt ? cnt : 1, sizeof *res);
    int ok = res != NULL;
    if (ok && H5Tis_variable_str(ft) > 0) {
        char **tmp = calloc(cnt ? cnt : 1, sizeof *tmp);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        ok = tmp && (cnt == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) >= 0);
        for (size_t i = 0; ok && i < cnt; i++)
            ok = (res[i] = strdup(tmp[i] ? tmp[i] : "")) != NULL;
        if (tmp && cnt) {
            hid_t sp = H5Dget_space(d);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
            H5Sclose(sp);
        }
        free(tmp);
        H5Tclose(mt);
    } else if (ok) {
        /* one more byte per string in memory: the file's strings may fill their size */
        size_t sz = H5Tget_size(ft) + 1, total = 0;
        int fits = !lc_size_mul(cnt, sz, &total) && !lc_size_add(total, 1, &total) && total <= lc_mem_limit();
        char *raw = fits ? calloc(total, 1) : NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        ok = raw && (cnt == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0);
        for (size_t i = 0; ok && i < cnt; i++) {
            res[i] = calloc(sz + 1, 1);
            ok = res[i] != NULL;
            if (ok)
                memcpy(res[i], raw + i * sz, sz);
        }
        free(raw);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Dclose(d);
    if (!ok) {
        lc_h5_strings_free(res, (int)cnt);
        return lc_fail(err, LC_EINPUT, "%s: cannot read strings of dataset '%s'", f->path, name);
    }
    *out = res;
    *n = (int)cnt;
    return LC_OK;
}

int lc_h5_read_attr_str(const lc_h5 *f, const char *obj, const char *attr, char **out, lc_error *err)
{
    if (H5Aexists_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT) <= 0)
        return lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is missing", f->path, attr, obj);
    hid_t a = H5Aopen_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    int rc = LC_OK;
    if (H5Tget_class(t) != H5T_STRING) {
        rc = lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is not a string", f->path, attr, obj);
    } else if (H5Tis_variable_str(t) > 0) {
        char *v = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t)); /* HDF5 converts no character set into another */
        if (H5Aread(a, mt, &v) < 0 || !(*out = strdup(v ? v : "")))
            rc = lc_fail(err, LC_EINPUT, "%s: cannot read attribute '%s' of '%s'", f->path, attr, obj);
        if (v)
            H5free_memory(v);
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(t);
        char *v = sz < ((size_t)1 << 20) ? calloc(sz + 1, 1) : NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz ? sz : 1);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (!v || H5Aread(a, mt, v) < 0) {
            free(v);
            rc = lc_fail(err, LC_EINPUT, "%s: cannot read attribute '%s' of '%s'", f->path, attr, obj);
        } else {
            *out = v;
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

int lc_h5_attr_exists(const lc_h5 *f, const char *obj, const char *attr)
{
    return H5Aexists_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT) > 0;
}

int lc_h5_read_attr_f64(const lc_h5 *f, const char *obj, const char *attr, double *out, lc_error *err)
{
    if (H5Aexists_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT) <= 0)
        return lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is missing", f->path, attr, obj);
    hid_t a = H5Aopen_by_name((hid_t)f->id, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int rc = LC_OK;
    const H5T_class_t cl = H5Tget_class(t);
    if ((cl != H5T_INTEGER && cl != H5T_FLOAT) || H5Sget_simple_extent_npoints(sp) != 1 ||
        H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        rc = lc_fail(err, LC_EINPUT, "%s: attribute '%s' of '%s' is not one number", f->path, attr, obj);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

int lc_h5_expect_shape(const lc_h5 *f, const char *name, const lc_h5_shape *got, int ndim, const int64_t *want,
                       lc_error *err)
{
    int same = got->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = got->shape[i] == want[i];
    if (same)
        return LC_OK;
    char w[160] = "[", g[160] = "[";
    for (int i = 0; i < ndim; i++)
        snprintf(w + strlen(w), sizeof w - strlen(w), i ? ", %lld" : "%lld", (long long)want[i]);
    for (int i = 0; i < got->ndim; i++)
        snprintf(g + strlen(g), sizeof g - strlen(g), i ? ", %lld" : "%lld", (long long)got->shape[i]);
    return lc_fail(err, LC_EINPUT, "%s: dataset '%s': expected shape %s], found %s]", f->path, name, w, g);
}

/* ---------------------------------------------------------------- writing */

int lc_h5_create(lc_h5 *f, const char *path, lc_error *err)
{
    quiet();
    memset(f, 0, sizeof *f);
    f->id = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    /* in memory only (no backing store): nothing touches the disk before lc_h5_commit */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t id = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0)
        id = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (id < 0)
        return lc_fail(err, LC_EINTERNAL, "%s: cannot create the HDF5 file in memory", path);
    f->id = id;
    f->writing = 1;
    return LC_OK;
}

/* Creates intermediate groups of `name` ("a/b/c" -> a, a/b). */
static int ensure_groups(lc_h5 *f, const char *name)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (H5Lexists((hid_t)f->id, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2((hid_t)f->id, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0)
                return -1;
            H5Gclose(g);
        }
        *p = '/';
    }
    return 0;
}

static int write_typed(lc_h5 *f, const char *name, hid_t filetype, hid_t memtype, const void *data, int ndim,
                       const int64_t *shape, lc_error *err)
{
    hsize_t dims[LC_H5_MAX_DIMS], chunk[LC_H5_MAX_DIMS];
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = (hsize_t)shape[i];
        count *= (size_t)shape[i];
    }
    if (ensure_groups(f, name) < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot create the groups of '%s'", f->path, name);
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (count > 0 && ndim > 0) {
        /* chunk: the last dimension whole, one row of everything else */
        for (int i = 0; i < ndim; i++)
            chunk[i] = i == ndim - 1 ? dims[i] : 1;
        H5Pset_chunk(dcpl, ndim, chunk);
        H5Pset_deflate(dcpl, 4);
    }
    hid_t d = H5Dcreate2((hid_t)f->id, name, filetype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = LC_OK;
    if (d < 0 || (count && H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
        rc = lc_fail(err, LC_EINPUT, "%s: cannot write dataset '%s'", f->path, name);
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return rc;
}

int lc_h5_write_f64(lc_h5 *f, const char *name, const double *data, int ndim, const int64_t *shape, lc_error *err)
{
    return write_typed(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, ndim, shape, err);
}

int lc_h5_write_f32(lc_h5 *f, const char *name, const float *data, int ndim, const int64_t *shape, lc_error *err)
{
    return write_typed(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, ndim, shape, err);
}

int lc_h5_write_i64(lc_h5 *f, const char *name, const int64_t *data, int ndim, const int64_t *shape, lc_error *err)
{
    return write_typed(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, data, ndim, shape, err);
}

static hid_t open_obj(lc_h5 *f, const char *obj)
{
    if (strcmp(obj, "/") != 0 && H5Lexists((hid_t)f->id, obj, H5P_DEFAULT) <= 0) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s/", obj);
        if (ensure_groups(f, buf) < 0)
            return -1;
    }
    return H5Oopen((hid_t)f->id, obj, H5P_DEFAULT);
}

int lc_h5_write_attr_str(lc_h5 *f, const char *obj, const char *attr, const char *value, lc_error *err)
{
    hid_t o = open_obj(f, obj);
    if (o < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot open '%s' for attribute '%s'", f->path, obj, attr);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, attr, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = LC_OK;
    if (a < 0 || H5Awrite(a, t, &value) < 0)
        rc = lc_fail(err, LC_EINPUT, "%s: cannot write attribute '%s' of '%s'", f->path, attr, obj);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Oclose(o);
    return rc;
}

/* One scalar attribute of obj: stored as file_type, value read as mem_type. */
static int write_scalar_attr(lc_h5 *f, const char *obj, const char *attr, hid_t file_type, hid_t mem_type,
                             const void *value, lc_error *err)
{
    hid_t o = open_obj(f, obj);
    if (o < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot open '%s' for attribute '%s'", f->path, obj, attr);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, attr, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = LC_OK;
    if (a < 0 || H5Awrite(a, mem_type, value) < 0)
        rc = lc_fail(err, LC_EINPUT, "%s: cannot write attribute '%s' of '%s'", f->path, attr, obj);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    return rc;
}

int lc_h5_write_attr_f64(lc_h5 *f, const char *obj, const char *attr, double value, lc_error *err)
{
    return write_scalar_attr(f, obj, attr, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, err);
}

int lc_h5_write_attr_i64(lc_h5 *f, const char *obj, const char *attr, int64_t value, lc_error *err)
{
    return write_scalar_attr(f, obj, attr, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, err);
}

int lc_h5_commit(lc_h5 *f, lc_error *err)
{
    if (!f->writing)
        return lc_fail(err, LC_EINTERNAL, "%s: commit on a file not opened for writing", f->path);
    hid_t id = (hid_t)f->id;
    f->id = -1;
    f->writing = 0;
    ssize_t n = H5Fflush(id, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(id, NULL, 0);
    void *image = n > 0 ? malloc((size_t)n) : NULL;
    int ok = image && H5Fget_file_image(id, image, (size_t)n) == n;
    ok = H5Fclose(id) >= 0 && ok;
    int rc = ok ? lc_file_write_atomic(f->path, image, (size_t)n, err)
                : lc_fail(err, LC_EINTERNAL, "%s: cannot finish the HDF5 file in memory", f->path);
    free(image);
    return rc;
}

void lc_h5_abort(lc_h5 *f)
{
    if (!f)
        return;
    lc_h5_close(f);
    f->writing = 0;
}
