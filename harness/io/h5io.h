/*
 * HDF5 golden and output files: small typed readers and an atomic writer.
 *
 * Readers convert any integer/float dataset to the requested type and return malloc'ed
 * arrays (caller frees). The writer creates PATH.tmp-PID and renames it over PATH on commit,
 * so a failed run never leaves a half-written file and never destroys a previous one.
 * HDF5's own error printing is silenced; every failure is one line naming file and dataset.
 */
#ifndef LC_H5IO_H
#define LC_H5IO_H

#include <stddef.h>
#include <stdint.h>

#include "lc_error.h"

#define LC_H5_MAX_DIMS 8

typedef struct {
    int64_t id;         /* hid_t */
    char path[4096];
    char tmp[4200];     /* writer: the temporary file being filled */
    int writing;
} lc_h5;

typedef struct {
    int ndim;
    int64_t shape[LC_H5_MAX_DIMS];
    size_t count;
} lc_h5_shape;

int lc_h5_open(lc_h5 *f, const char *path, lc_error *err);
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
/* Closes and renames the temporary file over the final path. */
int lc_h5_commit(lc_h5 *f, lc_error *err);
/* Closes and deletes the temporary file (no-op for readers: same as close). */
void lc_h5_abort(lc_h5 *f);

#endif /* LC_H5IO_H */
