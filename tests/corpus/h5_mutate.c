/* SPDX-License-Identifier: MIT */
/*
 * Makes the malformed HDF5 inputs of the corpus at test time: copies SRC to DST and breaks
 * one thing in it (HDF5 files are not committed as binary fixtures; this program is their
 * recipe).
 *
 *   h5_mutate MUTATION SRC DST GROUP
 *
 * MUTATION (GROUP is the case group the datasets live under, e.g. /cases/dense.golden.text):
 *   format            the root attribute format becomes "not-logitcheck"
 *   version           format_version becomes 2
 *   nan_logits        GROUP/prefill_logits[0] becomes NaN
 *   inf_decode        GROUP/decode_logits[0] becomes +inf
 *   fractional_ids    GROUP/input_ids stored as float64 with 0.5 added to the first id
 *   empty_ids         GROUP/input_ids becomes an empty int64 dataset
 *   ids_oob           GROUP/input_ids[0] becomes 5000 (past the vocabulary)
 *   huge_dims         GROUP/prefill_logits declared (2^20, 2^20) float64, chunked, nothing stored
 *   wrap_dims         GROUP/prefill_logits declared (2^31, 2^31) float64: its bytes wrap 2^64
 *   external_link     GROUP/prefill_logits becomes an external link to another file
 *   external_storage  GROUP/prefill_logits keeps its raw data in an external file
 * Exit 0 on success, 1 with a message otherwise.
 */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "h5_mutate: %s\n", what);
    return 1;
}

static int copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    char buf[65536];
    size_t n;
    int bad = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        bad |= fwrite(buf, 1, n, out) != n;
    fclose(in);
    bad |= fclose(out) != 0;
    return bad ? -1 : 0;
}

static int set_attr_str(hid_t f, const char *name, const char *value)
{
    if (H5Aexists(f, name) > 0)
        H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return ok ? 0 : -1;
}

static int set_attr_i64(hid_t f, const char *name, int64_t value)
{
    if (H5Aexists(f, name) > 0)
        H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

/* Reads the whole dataset as memtype, lets edit change element 0, writes it back. */
static int edit_first(hid_t f, const char *name, hid_t memtype, size_t elem, const void *value)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    void *buf = n > 0 ? malloc((size_t)n * elem) : NULL;
    int ok = buf && H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    if (ok) {
        memcpy(buf, value, elem);
        ok = H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    }
    free(buf);
    H5Dclose(d);
    return ok ? 0 : -1;
}

/* Replaces dataset name by a chunked float64 one of the given dims with nothing written. */
static int declare_only(hid_t f, const char *name, int nd, const hsize_t *dims)
{
    H5Ldelete(f, name, H5P_DEFAULT);
    hsize_t chunk[8];
    for (int i = 0; i < nd; i++)
        chunk[i] = i == nd - 1 ? 64 : 1;
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, nd, chunk);
    H5Pset_deflate(dcpl, 4);
    hid_t d = sp >= 0 ? H5Dcreate2(f, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    int ok = d >= 0;
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return fail("usage: h5_mutate MUTATION SRC DST GROUP");
    const char *m = argv[1], *group = argv[4];
    if (copy_file(argv[2], argv[3]))
        return fail("cannot copy SRC to DST");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(argv[3], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        return fail("cannot open DST");
    char ids[1024], pre[1024], dec[1024];
    snprintf(ids, sizeof ids, "%s/input_ids", group);
    snprintf(pre, sizeof pre, "%s/prefill_logits", group);
    snprintf(dec, sizeof dec, "%s/decode_logits", group);
    int rc = -1;
    if (!strcmp(m, "format")) {
        rc = set_attr_str(f, "format", "not-logitcheck");
    } else if (!strcmp(m, "version")) {
        rc = set_attr_i64(f, "format_version", 2);
    } else if (!strcmp(m, "nan_logits")) {
        double v = NAN;
        rc = edit_first(f, pre, H5T_NATIVE_DOUBLE, sizeof v, &v);
    } else if (!strcmp(m, "inf_decode")) {
        double v = INFINITY;
        rc = edit_first(f, dec, H5T_NATIVE_DOUBLE, sizeof v, &v);
    } else if (!strcmp(m, "ids_oob")) {
        int64_t v = 5000;
        rc = edit_first(f, ids, H5T_NATIVE_INT64, sizeof v, &v);
    } else if (!strcmp(m, "fractional_ids") || !strcmp(m, "empty_ids")) {
        hid_t d = H5Dopen2(f, ids, H5P_DEFAULT);
        hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
        hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        double *v = n > 0 ? malloc((size_t)n * sizeof *v) : NULL;
        int ok = v && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
        if (sp >= 0)
            H5Sclose(sp);
        if (d >= 0)
            H5Dclose(d);
        if (ok && H5Ldelete(f, ids, H5P_DEFAULT) >= 0) {
            int empty = !strcmp(m, "empty_ids");
            hsize_t dim = empty ? 0 : (hsize_t)n;
            v[0] += 0.5;
            hid_t s2 = H5Screate_simple(1, &dim, NULL);
            hid_t d2 = H5Dcreate2(f, ids, empty ? H5T_STD_I64LE : H5T_IEEE_F64LE, s2, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT);
            ok = d2 >= 0 && (empty || H5Dwrite(d2, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
            if (d2 >= 0)
                H5Dclose(d2);
            H5Sclose(s2);
            rc = ok ? 0 : -1;
        }
        free(v);
    } else if (!strcmp(m, "huge_dims")) {
        const hsize_t dims[2] = {(hsize_t)1 << 20, (hsize_t)1 << 20};
        rc = declare_only(f, pre, 2, dims);
    } else if (!strcmp(m, "wrap_dims")) {
        const hsize_t dims[2] = {(hsize_t)1 << 31, (hsize_t)1 << 31};
        rc = declare_only(f, pre, 2, dims);
    } else if (!strcmp(m, "external_link")) {
        H5Ldelete(f, pre, H5P_DEFAULT);
        rc = H5Lcreate_external("other.h5", "/x", f, pre, H5P_DEFAULT, H5P_DEFAULT) >= 0 ? 0 : -1;
    } else if (!strcmp(m, "external_storage")) {
        H5Ldelete(f, pre, H5P_DEFAULT);
        hsize_t dims[2] = {4, 16};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_external(dcpl, "/etc/hostname", 0, 4 * 16 * 8);
        hid_t d = H5Dcreate2(f, pre, H5T_IEEE_F64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        rc = d >= 0 ? 0 : -1;
        if (d >= 0)
            H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(sp);
    } else {
        H5Fclose(f);
        return fail("unknown MUTATION");
    }
    if (H5Fclose(f) < 0)
        rc = -1;
    return rc ? fail(m) : 0;
}
