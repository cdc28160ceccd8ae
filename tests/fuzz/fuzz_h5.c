/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: HDF5 golden and compare-input validation (lc_h5_open_image, then every
 * reader on every dataset). The input does not go to libhdf5's own parser (that library is
 * not ours to fix): it is a recipe, consumed byte by byte, for a file the target builds in
 * memory with the core driver: root format / format_version attributes, one case group with
 * datasets of chosen names, types, ranks, dimensions (small and stored, or huge and only
 * declared), layouts and raw values (NaN, inf, fractional and huge ids come from the bytes).
 */
#include "fuzz_util.h" /* first: it sets the feature macros */

#include <hdf5.h>

#include "h5io.h"
#include "lc_file.h"

typedef struct {
    const uint8_t *p;
    size_t n;
} bytes;

static unsigned take(bytes *b, unsigned range)
{
    if (!b->n || range == 0)
        return 0;
    unsigned v = *b->p++;
    b->n--;
    return v % range;
}

static void set_str_attr(hid_t f, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, t, &value);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(t);
}

static void set_i64_attr(hid_t f, const char *name, int64_t v, int as_float)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, as_float ? H5T_IEEE_F64LE : H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        double d = (double)v;
        H5Awrite(a, as_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, as_float ? (void *)&d : (void *)&v);
        H5Aclose(a);
    }
    H5Sclose(sp);
}

static const char *const names[] = {"prefill_logits", "decode_logits", "logits", "input_ids", "decode_tokens",
                                    "position_ids", "attention_mask", "rope_delta", "pixel_values", "images"};
#define N_NAMES (sizeof names / sizeof names[0])

static void add_dataset(hid_t g, const char *name, bytes *b)
{
    const unsigned kind = take(b, 5); /* f64, f32, i64, i32, string */
    const int rank = (int)take(b, 4);
    const int huge = take(b, 8) == 0;
    hsize_t dims[3] = {1, 1, 1};
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = huge && i == 0 ? ((hsize_t)1 << (20 + take(b, 40))) : take(b, 9);
        count *= (size_t)dims[i];
    }
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    if (sp < 0)
        return;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const unsigned layout = take(b, 3);
    if ((layout == 1 || huge) && rank > 0) {
        hsize_t chunk[3];
        for (int i = 0; i < rank; i++)
            chunk[i] = dims[i] && dims[i] < 8 ? dims[i] : 8;
        H5Pset_chunk(dcpl, rank, chunk);
        if (take(b, 2))
            H5Pset_deflate(dcpl, 1);
        if (take(b, 2))
            H5Pset_shuffle(dcpl);
    } else if (layout == 2 && !huge && count * 8 < 4096) {
        H5Pset_layout(dcpl, H5D_COMPACT);
    }
    hid_t t;
    size_t esz;
    if (kind == 4) {
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 8);
        esz = 8;
    } else {
        t = H5Tcopy(kind == 0 ? H5T_IEEE_F64LE : kind == 1 ? H5T_IEEE_F32LE : kind == 2 ? H5T_STD_I64LE : H5T_STD_I32LE);
        esz = kind == 1 || kind == 3 ? 4 : 8;
    }
    hid_t d = H5Dcreate2(g, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0 && !huge && count > 0) {
        uint8_t *buf = calloc(count, esz);
        if (buf) {
            size_t n = count * esz < b->n ? count * esz : b->n;
            memcpy(buf, b->p, n);
            b->p += n;
            b->n -= n;
            H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            free(buf);
        }
    }
    if (d >= 0)
        H5Dclose(d);
    H5Tclose(t);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

/* Builds the recipe's file in memory; *image malloc'ed. */
static size_t build(bytes *b, void **image)
{
    *image = NULL;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    hid_t f = H5Fcreate("recipe.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return 0;
    static const char *const formats[] = {NULL, "logitcheck-golden", "logitcheck-infer", "bogus"};
    const char *fmt = formats[take(b, 4)];
    if (fmt)
        set_str_attr(f, "format", fmt);
    const unsigned ver = take(b, 4);
    if (ver)
        set_i64_attr(f, "format_version", ver == 3 ? 2 : 1, ver == 2);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(f, "/cases/x", lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g >= 0) {
        for (size_t i = 0; i < N_NAMES; i++)
            if (take(b, 3))
                add_dataset(g, names[i], b);
        if (take(b, 8) == 0)
            H5Lcreate_soft("/cases/x/input_ids", g, "link", H5P_DEFAULT, H5P_DEFAULT);
        H5Gclose(g);
    }
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    if (n > 0 && (*image = malloc((size_t)n)) != NULL && H5Fget_file_image(f, *image, (size_t)n) != n) {
        free(*image);
        *image = NULL;
    }
    H5Fclose(f);
    return *image ? (size_t)n : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    lc_mem_limit_set((size_t)256 << 20);
    bytes b = {data, size};
    void *image;
    size_t n = build(&b, &image);
    if (!n)
        return 0;
    lc_h5 f;
    lc_error err;
    if (lc_h5_open_image(&f, "fuzz.h5", image, n, &err) == LC_OK) {
        for (size_t i = 0; i < N_NAMES; i++) {
            char name[64];
            snprintf(name, sizeof name, "/cases/x/%s", names[i]);
            lc_h5_shape sh;
            double *d = NULL;
            int64_t *v = NULL;
            char **s = NULL;
            int ns = 0;
            if (lc_h5_read_f64(&f, name, &d, &sh, &err) == LC_OK) {
                int64_t want[2] = {sh.ndim > 0 ? sh.shape[0] : 0, 4};
                (void)lc_h5_expect_shape(&f, name, &sh, sh.ndim < 2 ? sh.ndim : 2, want, &err);
            }
            if (lc_h5_read_i64(&f, name, &v, &sh, &err) == LC_OK && sh.count)
                v[sh.count - 1] ^= 1;
            if (lc_h5_read_strings(&f, name, &s, &ns, &err) == LC_OK)
                lc_h5_strings_free(s, ns);
            free(d);
            free(v);
        }
        lc_h5_close(&f);
    }
    free(image);
    return 0;
}
