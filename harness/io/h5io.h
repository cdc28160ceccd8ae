/* SPDX-License-Identifier: MIT */
/*
 * HDF5 golden and output files: small typed readers and an atomic writer.
 *
 * Readers convert any integer/float dataset to the requested type and return malloc'ed
 * arrays (caller frees). HDF5's own error printing is silenced; every failure is one line
 * naming file and dataset.
 *
 * Validation on open (every file): a regular file (a FIFO or device is refused without
 * blocking); a root `format` attribute, when present, one this suite knows
 * ("logitcheck-golden" with `format_version` 1, "logitcheck-infer"); only hard links (no
 * external or soft links); every dataset of a numeric or string type, rank <= 8, its declared
 * size computed with overflow checks and bounded by the memory limit (lc_mem_limit) and by what
 * the file really stores (contiguous or chunked storage, deflate/shuffle/fletcher32 filters
 * only: no external raw-data files, no virtual datasets, no filter plugins).
 *
 * Validation on read (files whose format is logitcheck-golden): every float value finite,
 * except NaN where the group's attention_mask marks a pad; token ids, positions, masks and
 * grids stored as integers; input_ids and decode_tokens non-empty and inside the vocabulary
 * (the last dimension of the group's logits). Anything else is LC_EINPUT naming the file and
 * the dataset.
 *
 * The writer builds the file in memory (HDF5's core driver) and writes it at commit through
 * lc_file_write_atomic: a temporary file next to PATH, checked writes, fsync, rename; a full
 * disk or a file-size limit leaves the previous PATH byte-identical and no temporary behind.
 */
#ifndef LC_H5IO_H
#define LC_H5IO_H

#include <stddef.h>
#include <stdint.h>

#include "lc_error.h"

#define LC_H5_MAX_DIMS 8

/* The files this suite reads, by their root `format` attribute (name, whether a format_version
 * of 1 is required). */
#define LC_H5_FORMAT_MAP(X)                                    \
    X(GOLDEN, "logitcheck-golden", 1)                          \
    X(GOLDEN_REAL, "logitcheck-golden-real", 1)                \
    X(GRADIENTS, "logitcheck-gradients", 1)                    \
    X(INFER, "logitcheck-infer", 0)

typedef enum {
    LC_H5_OTHER = 0,
#define LC__H5_FORMAT_ENUM(id, name, versioned) LC_H5_##id,
    LC_H5_FORMAT_MAP(LC__H5_FORMAT_ENUM)
#undef LC__H5_FORMAT_ENUM
} lc_h5_format;

typedef struct {
    int64_t id;         /* hid_t */
    char path[4096];
    int writing;
    lc_h5_format format;  /* from the root `format` attribute */
    size_t file_size;   /* bytes of the file (reader) */
} lc_h5;

typedef struct {
    int ndim;
    int64_t shape[LC_H5_MAX_DIMS];
    size_t count;
} lc_h5_shape;

int lc_h5_open(lc_h5 *f, const char *path, lc_error *err);
/* The same validation on a file image in memory (len bytes, copied); NAME is used in
 * messages. For tests and fuzzing. */
int lc_h5_open_image(lc_h5 *f, const char *name, const void *image, size_t len, lc_error *err);
void lc_h5_close(lc_h5 *f);
int lc_h5_exists(const lc_h5 *f, const char *name);

/* Reads dataset `name` as double / int64; *out is malloc'ed (caller frees). */
int lc_h5_read_f64(const lc_h5 *f, const char *name, double **out, lc_h5_shape *shape, lc_error *err);
int lc_h5_read_i64(const lc_h5 *f, const char *name, int64_t **out, lc_h5_shape *shape, lc_error *err);
/* Reads a 1-D dataset of strings (fixed or variable length); *out is an array of n malloc'ed
 * strings; free with lc_h5_strings_free. */
int lc_h5_read_strings(const lc_h5 *f, const char *name, char ***out, int *n, lc_error *err);
void lc_h5_strings_free(char **s, int n);
/* Reads a string attribute of object `obj` ("/" for the root); *out malloc'ed. */
int lc_h5_read_attr_str(const lc_h5 *f, const char *obj, const char *attr, char **out, lc_error *err);
/* Whether object `obj` has attribute `attr`. */
int lc_h5_attr_exists(const lc_h5 *f, const char *obj, const char *attr);
/* Reads a scalar numeric (integer or float) attribute of object `obj` as a double. */
int lc_h5_read_attr_f64(const lc_h5 *f, const char *obj, const char *attr, double *out, lc_error *err);

/* Checks that dataset `name` has exactly the given shape (ndim entries); a clear error if not. */
int lc_h5_expect_shape(const lc_h5 *f, const char *name, const lc_h5_shape *got, int ndim,
                       const int64_t *want, lc_error *err);

/* Writer. */
int lc_h5_create(lc_h5 *f, const char *path, lc_error *err);
int lc_h5_write_f64(lc_h5 *f, const char *name, const double *data, int ndim, const int64_t *shape, lc_error *err);
int lc_h5_write_f32(lc_h5 *f, const char *name, const float *data, int ndim, const int64_t *shape, lc_error *err);
int lc_h5_write_i64(lc_h5 *f, const char *name, const int64_t *data, int ndim, const int64_t *shape, lc_error *err);
int lc_h5_write_attr_str(lc_h5 *f, const char *obj, const char *attr, const char *value, lc_error *err);
int lc_h5_write_attr_f64(lc_h5 *f, const char *obj, const char *attr, double value, lc_error *err);
/* An integer attribute (format_version and counts). */
int lc_h5_write_attr_i64(lc_h5 *f, const char *obj, const char *attr, int64_t value, lc_error *err);
/* Writes the finished file atomically over the final path (see above). */
int lc_h5_commit(lc_h5 *f, lc_error *err);
/* Closes and deletes the temporary file (no-op for readers: same as close). */
void lc_h5_abort(lc_h5 *f);

#endif /* LC_H5IO_H */
