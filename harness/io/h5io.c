/* HDF5 readers and the atomic writer (see h5io.h). */
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5io.h"

static void quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---------------------------------------------------------------- reading */

int lc_h5_open(lc_h5 *f, const char *path, lc_error *err)
{
    quiet();
    memset(f, 0, sizeof *f);
    f->id = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    if (access(path, R_OK) != 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot open (missing or unreadable)", path);
    hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0)
        return lc_fail(err, LC_EINPUT, "%s: not a readable HDF5 file (truncated or corrupt?)", path);
    f->id = id;
    return LC_OK;
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
        shape->count *= (size_t)dims[i];
    }
    *dset = d;
    return LC_OK;
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
    void *buf = malloc(shape->count ? shape->count * elem : elem);
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
        size_t sz = H5Tget_size(ft) + 1;
        char *raw = calloc(cnt * sz + 1, 1);
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
        H5Tset_cset(mt, H5Tget_cset(t)); /* UTF-8 attributes (h5py's default) read as they are */
        if (H5Aread(a, mt, &v) < 0 || !(*out = strdup(v ? v : "")))
            rc = lc_fail(err, LC_EINPUT, "%s: cannot read attribute '%s' of '%s'", f->path, attr, obj);
        if (v)
            H5free_memory(v);
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(t);
        char *v = calloc(sz + 1, 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
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
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp-%ld", path, (long)getpid());
    hid_t id = H5Fcreate(f->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot create (directory missing or not writable?)", path);
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

int lc_h5_write_attr_f64(lc_h5 *f, const char *obj, const char *attr, double value, lc_error *err)
{
    hid_t o = open_obj(f, obj);
    if (o < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot open '%s' for attribute '%s'", f->path, obj, attr);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, attr, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = LC_OK;
    if (a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &value) < 0)
        rc = lc_fail(err, LC_EINPUT, "%s: cannot write attribute '%s' of '%s'", f->path, attr, obj);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    return rc;
}

int lc_h5_commit(lc_h5 *f, lc_error *err)
{
    if (!f->writing)
        return lc_fail(err, LC_EINTERNAL, "%s: commit on a file not opened for writing", f->path);
    herr_t r = H5Fclose((hid_t)f->id);
    f->id = -1;
    f->writing = 0;
    if (r < 0) {
        unlink(f->tmp);
        return lc_fail(err, LC_EINPUT, "%s: cannot finish writing", f->path);
    }
    if (rename(f->tmp, f->path) != 0) {
        unlink(f->tmp);
        return lc_fail(err, LC_EINPUT, "%s: cannot move the finished file into place", f->path);
    }
    return LC_OK;
}

void lc_h5_abort(lc_h5 *f)
{
    if (!f)
        return;
    lc_h5_close(f);
    if (f->writing)
        unlink(f->tmp);
    f->writing = 0;
}
