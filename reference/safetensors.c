/* SPDX-License-Identifier: MIT */
/*
 * safetensors archives: one model.safetensors, or the shards named by
 * model.safetensors.index.json, mapped read-only and indexed by tensor name.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header, then the data
 * section. The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
 * (offsets relative to the data section); "__metadata__" is ignored. Nothing is copied at
 * open time: tensors point into the mapping and are converted on demand by qref__st_convert.
 *
 * The archive keeps its tensors sorted by name, so lookups are binary searches and duplicate
 * names (inside one file or across shards) are found while opening.
 */
#define _XOPEN_SOURCE 700

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qref_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

/* the safetensors format caps the header at 100 MB */
#define ST_MAX_HEADER ((uint64_t)100000000)

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    qref_dtype dt;
    size_t size;
} dtype_table[] = {
    {"F32", QREF_DT_F32, 4},
    {"F16", QREF_DT_F16, 2},
    {"BF16", QREF_DT_BF16, 2},
    {"F64", QREF_DT_F64, 8},
};

const char *qref__dtype_name(qref_dtype dt)
{
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (dtype_table[i].dt == dt)
            return dtype_table[i].name;
    return "?";
}

static size_t dtype_size(qref_dtype dt)
{
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (dtype_table[i].dt == dt)
            return dtype_table[i].size;
    assert(!"unknown dtype");
    return 0;
}

/* ---------------------------------------------------------------- mapping files */

/* Maps PATH read-only: a regular file (opened without blocking) resolving inside ROOT when
 * ROOT is not NULL. An empty file gives *map = NULL, *size = 0 (mmap refuses length 0). */
static qref_status map_file(const char *path, const char *root, void **map, size_t *size, qref_error *err)
{
    *map = NULL;
    *size = 0;
    int fd;
    size_t len;
    qref_status st = qref__open_input(path, root, SIZE_MAX, &fd, &len, NULL, err);
    if (st != QREF_OK)
        return st;
    if (len > 0) {
        void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return qref__fail(err, QREF_EIO, "%s: cannot map %zu bytes: %s", path, len, strerror(e));
        }
        *map = p;
        *size = len;
    }
    close(fd);
    return QREF_OK;
}

/* ---------------------------------------------------------------- header entries */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const qref_st_tensor *)a)->name, ((const qref_st_tensor *)b)->name);
}

/* An integer-valued JSON number in [0, 2^53] (exact in a double). */
static int json_u53(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Fills *t from one header entry; data_len is the size of the data section. */
static qref_status parse_entry(qref_st_tensor *t, const char *path, const cJSON *e,
                               const uint8_t *data, uint64_t data_len, qref_error *err)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return qref__fail(err, QREF_EFORMAT, "%s: tensor '%s': expected an object in the header", path, name);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return qref__fail(err, QREF_EFORMAT, "%s: tensor '%s': dtype missing or not a string", path, name);
    size_t i, ntypes = sizeof dtype_table / sizeof dtype_table[0];
    for (i = 0; i < ntypes && strcmp(dtype_table[i].name, dt->valuestring); i++)
        ;
    if (i == ntypes)
        return qref__fail(err, QREF_EUNSUPPORTED,
                          "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16, F64)", path, name,
                          dt->valuestring);
    t->dtype = dtype_table[i].dt;
    size_t isz = dtype_table[i].size;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(shape))
        return qref__fail(err, QREF_EFORMAT, "%s: tensor '%s': shape missing or not an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > (int)(sizeof t->shape / sizeof t->shape[0]))
        return qref__fail(err, QREF_EUNSUPPORTED, "%s: tensor '%s': %d dimensions, at most %d supported",
                          path, name, ndim, (int)(sizeof t->shape / sizeof t->shape[0]));
    t->ndim = ndim;
    uint64_t numel = 1;
    int overflow = 0;
    int d = 0;
    for (const cJSON *s = shape->child; s; s = s->next, d++) {
        uint64_t n;
        if (!json_u53(s, &n))
            return qref__fail(err, QREF_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                              path, name, d);
        t->shape[d] = (int64_t)n;
        if (n && numel > UINT64_MAX / n)
            overflow = 1;
        numel *= n;
    }

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_u53(offs->child, &begin) ||
        !json_u53(offs->child->next, &end))
        return qref__fail(err, QREF_EFORMAT,
                          "%s: tensor '%s': data_offsets missing or not two non-negative integers", path, name);
    if (begin > end)
        return qref__fail(err, QREF_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                          path, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return qref__fail(err, QREF_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section of %llu bytes",
                          path, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)data_len);
    if (overflow || numel > UINT64_MAX / isz)
        return qref__fail(err, QREF_EFORMAT, "%s: tensor '%s': shape has too many elements", path, name);
    if (end - begin != numel * isz) {
        char dims[160] = "";
        size_t used = 0;
        for (int k = 0; k < ndim && used < sizeof dims; k++)
            used += (size_t)snprintf(dims + used, sizeof dims - used, "%s%lld", k ? ", " : "",
                                     (long long)t->shape[k]);
        return qref__fail(err, QREF_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, expected %s [%s] = %llu bytes",
                          path, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)(end - begin), dt->valuestring, dims,
                          (unsigned long long)(numel * isz));
    }
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    return QREF_OK;
}

/* Order of tensors inside the data section, for the overlap check. */
static int cmp_tensor_data(const void *a, const void *b)
{
    const qref_st_tensor *x = *(const qref_st_tensor *const *)a, *y = *(const qref_st_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    return (px > py) - (px < py);
}

/* Checks that no two tensors of one file share bytes (zero-size tensors share none). */
static qref_status check_overlap(qref_st_tensor *ts, int n, const char *path, qref_error *err)
{
    if (n < 2)
        return QREF_OK;
    const qref_st_tensor **order = malloc((size_t)n * sizeof *order);
    if (!order)
        return qref__fail(err, QREF_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++)
        order[i] = &ts[i];
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_data);
    qref_status st = QREF_OK;
    const qref_st_tensor *prev = NULL;
    for (int i = 0; i < n && st == QREF_OK; i++) {
        const qref_st_tensor *t = order[i];
        if (t->nbytes == 0)
            continue;
        if (prev && (const uint8_t *)t->data < (const uint8_t *)prev->data + prev->nbytes)
            st = qref__fail(err, QREF_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data section",
                            path, prev->name, t->name);
        prev = t;
    }
    free(order);
    return st;
}

/* ---------------------------------------------------------------- opening one file */

/* ts[0, n0) and ts[n0, n0 + n1) are each sorted by name and disjoint; makes ts[0, n0 + n1)
 * sorted (linear time, so opening many shards stays linear in the tensor count). */
static qref_status merge_sorted(qref_st_tensor *ts, int n0, int n1, const char *path, qref_error *err)
{
    if (n0 == 0 || n1 == 0)
        return QREF_OK;
    qref_st_tensor *tmp = malloc((size_t)(n0 + n1) * sizeof *tmp);
    if (!tmp)
        return qref__fail(err, QREF_ENOMEM, "%s: out of memory", path);
    int i = 0, j = n0, k = 0;
    while (i < n0 && j < n0 + n1)
        tmp[k++] = (strcmp(ts[i].name, ts[j].name) < 0) ? ts[i++] : ts[j++];
    while (i < n0)
        tmp[k++] = ts[i++];
    while (j < n0 + n1)
        tmp[k++] = ts[j++];
    memcpy(ts, tmp, (size_t)(n0 + n1) * sizeof *tmp);
    free(tmp);
    return QREF_OK;
}

static void free_names(qref_st_tensor *ts, int from, int to)
{
    for (int i = from; i < to; i++) {
        free(ts[i].name);
        ts[i].name = NULL;
    }
}

/* Appends PATH and its tensors to *a. On failure *a is exactly as before the call.
 * Tensor pointers previously returned by qref__st_find are invalidated. */
static qref_status open_file_within(qref_st_archive *a, const char *path, const char *root, qref_error *err)
{
    assert(a && path);
    void *map;
    size_t size;
    qref_status st = map_file(path, root, &map, &size, err);
    if (st != QREF_OK)
        return st;
    if (size == 0)
        return qref__fail(err, QREF_EFORMAT, "%s: empty file (0 bytes), expected a safetensors header", path);

    const int old_n = a->ntensors;
    cJSON *header = NULL;
    char *path_copy = NULL;
    const uint8_t *bytes = map;
    uint64_t hlen = 0;

    if (size < 8) {
        st = qref__fail(err, QREF_EFORMAT, "%s: file is %zu bytes, shorter than the 8-byte header length",
                        path, size);
        goto fail;
    }
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | bytes[i];
    if (hlen > size - 8) {
        st = qref__fail(err, QREF_EFORMAT, "%s: header length %llu exceeds the %zu bytes after the length field",
                        path, (unsigned long long)hlen, size - 8);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        st = qref__fail(err, QREF_EFORMAT, "%s: header length %llu exceeds the format's limit of %llu",
                        path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    st = qref__json_parse(path, "header", (const char *)bytes + 8, (size_t)hlen, &header, err);
    if (st != QREF_OK)
        goto fail;

    const uint8_t *data = bytes + 8 + hlen;
    uint64_t data_len = size - 8 - hlen;
    int count = 0;
    for (const cJSON *e = header->child; e; e = e->next)
        count += strcmp(e->string, "__metadata__") != 0;
    qref_st_tensor *grown = realloc(a->tensors, (size_t)(old_n + count + 1) * sizeof *grown);
    qref_st_file *files = realloc(a->files, (size_t)(a->nfiles + 1) * sizeof *files);
    if (grown)
        a->tensors = grown;
    if (files)
        a->files = files;
    path_copy = malloc(strlen(path) + 1);
    if (!grown || !files || !path_copy) {
        st = qref__fail(err, QREF_ENOMEM, "%s: out of memory indexing %d tensors", path, count);
        goto fail;
    }
    strcpy(path_copy, path);

    for (const cJSON *e = header->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__"))
            continue;
        qref_st_tensor *t = &a->tensors[a->ntensors];
        memset(t, 0, sizeof *t);
        t->file = a->nfiles;
        st = parse_entry(t, path, e, data, data_len, err);
        if (st == QREF_OK && !(t->name = malloc(strlen(e->string) + 1)))
            st = qref__fail(err, QREF_ENOMEM, "%s: out of memory", path);
        if (st != QREF_OK)
            goto fail;
        strcpy(t->name, e->string);
        a->ntensors++;
    }

    /* duplicates inside this file, then against the files opened before */
    qref_st_tensor *fresh = a->tensors + old_n;
    int nfresh = a->ntensors - old_n;
    qsort(fresh, (size_t)nfresh, sizeof *fresh, cmp_tensor_name);
    for (int i = 1; i < nfresh; i++)
        if (!strcmp(fresh[i - 1].name, fresh[i].name)) {
            st = qref__fail(err, QREF_EFORMAT, "%s: tensor '%s' appears twice in the header", path, fresh[i].name);
            goto fail;
        }
    for (int i = 0; i < nfresh; i++) {
        const qref_st_tensor *dup = bsearch(&fresh[i], a->tensors, (size_t)old_n, sizeof *fresh, cmp_tensor_name);
        if (dup) {
            st = qref__fail(err, QREF_EFORMAT, "%s: tensor '%s' is also in %s", path, fresh[i].name,
                            a->files[dup->file].path);
            goto fail;
        }
    }
    st = check_overlap(fresh, nfresh, path, err);
    if (st != QREF_OK)
        goto fail;

    st = merge_sorted(a->tensors, old_n, nfresh, path, err);
    if (st != QREF_OK)
        goto fail;
    cJSON_Delete(header);
    a->files[a->nfiles].path = path_copy;
    a->files[a->nfiles].map = map;
    a->files[a->nfiles].size = size;
    a->nfiles++;
    return QREF_OK;

fail:
    free_names(a->tensors, old_n, a->ntensors);
    a->ntensors = old_n;
    free(path_copy);
    cJSON_Delete(header);
    munmap(map, size);
    return st;
}

qref_status qref__st_open_file(qref_st_archive *a, const char *path, qref_error *err)
{
    return open_file_within(a, path, NULL, err);
}

/* ---------------------------------------------------------------- sharded checkpoints */

/* A shard name as an index may give it: relative, no ".." component, no empty name. */
static int shard_name_ok(const char *s)
{
    if (!s[0] || s[0] == '/')
        return 0;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "/");
        if ((n == 2 && p[0] == '.' && p[1] == '.') || n == 0)
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* Opens every shard that DIR/model.safetensors.index.json names (each once) and checks that
 * each listed tensor lives in the shard the index says. On failure *a is closed. */
static qref_status open_index(qref_st_archive *a, const char *dir, const char *index_path,
                              const char *within, qref_error *err)
{
    char *text;
    size_t size;
    qref_status st = qref__read_file(index_path, within, QREF__MAX_INDEX_BYTES, &text, &size, NULL, err);
    if (st != QREF_OK)
        return st;
    cJSON *root = NULL;
    st = qref__json_parse(index_path, "index", text, size, &root, err);
    free(text);
    if (st != QREF_OK)
        return st;

    const char **shards = NULL; /* distinct shard names, in order of first mention */
    int nshards = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = qref__fail(err, QREF_EFORMAT, "%s: weight_map missing or not an object", index_path);
        goto done;
    }
    shards = malloc(((size_t)cJSON_GetArraySize(wm) + 1) * sizeof *shards);
    if (!shards) {
        st = qref__fail(err, QREF_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            st = qref__fail(err, QREF_EFORMAT, "%s: weight_map.%s: expected a shard file name", index_path,
                            e->string);
            goto done;
        }
        if (!shard_name_ok(e->valuestring)) {
            st = qref__fail(err, QREF_EFORMAT,
                            "%s: weight_map.%s: shard '%s' is not a relative path inside the checkpoint directory",
                            index_path, e->string, e->valuestring);
            goto done;
        }
        /* opened already? shards are few (tensors many), so scan the shard list */
        int seen = 0;
        for (int k = 0; k < nshards && !seen; k++)
            seen = !strcmp(shards[k], e->valuestring);
        if (seen)
            continue;
        shards[nshards++] = e->valuestring;
        char shard[4600];
        if (snprintf(shard, sizeof shard, "%s/%s", dir, e->valuestring) >= (int)sizeof shard) {
            st = qref__fail(err, QREF_EINVAL, "%s: shard path too long", index_path);
            goto done;
        }
        qref_error inner = {0};
        st = open_file_within(a, shard, within, &inner);
        if (st != QREF_OK) {
            qref__fail(err, st, "%s: shard '%s' (tensor '%s'): %s", index_path, e->valuestring, e->string,
                       inner.msg);
            goto done;
        }
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        const qref_st_tensor *t = qref__st_find(a, e->string);
        if (!t) {
            st = qref__fail(err, QREF_EMISSING, "%s: tensor '%s' is listed in shard '%s' but %s/%s does not contain it",
                            index_path, e->string, e->valuestring, dir, e->valuestring);
            goto done;
        }
        const char *in = a->files[t->file].path;
        size_t dl = strlen(dir), sl = strlen(e->valuestring);
        if (!(strlen(in) == dl + 1 + sl && !strcmp(in + dl + 1, e->valuestring))) {
            st = qref__fail(err, QREF_EFORMAT, "%s: tensor '%s' is listed in shard '%s' but found in %s",
                            index_path, e->string, e->valuestring, in);
            goto done;
        }
    }
done:
    free(shards);
    cJSON_Delete(root);
    if (st != QREF_OK)
        qref__st_close(a);
    return st;
}

static int path_absent(const char *path)
{
    struct stat sb;
    return stat(path, &sb) != 0 && errno == ENOENT;
}

/* *a must be zeroed (or closed). On success the caller closes it with qref__st_close; on
 * failure it is left closed. model.safetensors wins over an index when both exist. */
qref_status qref__st_open(qref_st_archive *a, const char *dir, qref_error *err)
{
    assert(a && dir && a->nfiles == 0 && a->ntensors == 0);
    char single[4200], index[4200];
    if (snprintf(single, sizeof single, "%s/model.safetensors", dir) >= (int)sizeof single ||
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir) >= (int)sizeof index)
        return qref__fail(err, QREF_EINVAL, "%s: directory path too long", dir);
    char root[PATH_MAX];
    if (!path_absent(single)) {
        qref_status st = qref__checkpoint_root(dir, root, err);
        if (st == QREF_OK)
            st = open_file_within(a, single, root, err);
        if (st != QREF_OK)
            qref__st_close(a);
        return st;
    }
    if (!path_absent(index)) {
        qref_status st = qref__checkpoint_root(dir, root, err);
        return st == QREF_OK ? open_index(a, dir, index, root, err) : st;
    }
    return qref__fail(err, QREF_EIO, "%s: neither model.safetensors nor model.safetensors.index.json exists",
                      dir);
}

/* Unmaps every file and frees the index. Safe on a zeroed archive and twice. */
void qref__st_close(qref_st_archive *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->nfiles; i++) {
        if (a->files[i].map)
            munmap(a->files[i].map, a->files[i].size);
        free(a->files[i].path);
    }
    free(a->files);
    free_names(a->tensors, 0, a->ntensors);
    free(a->tensors);
    memset(a, 0, sizeof *a);
}

/* The tensor called NAME, or NULL. The pointer stays valid until the archive changes. */
qref_st_tensor *qref__st_find(const qref_st_archive *a, const char *name)
{
    if (!a || a->ntensors == 0)
        return NULL;
    qref_st_tensor key = {.name = (char *)name};
    return bsearch(&key, a->tensors, (size_t)a->ntensors, sizeof key, cmp_tensor_name);
}

/* ---------------------------------------------------------------- conversion */

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact: subnormals, signed zeros, infinities and NaN payloads. */
static float f16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f; /* zero or subnormal: mant * 2^-24, exact */
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_to_float(sign | 0x7f800000u | (mant << 13));
    return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Converts the tensor into dst (count elements, caller-owned). Element loads go through
 * memcpy: tensors need not be aligned inside the file. */
void qref__st_convert(const qref_st_tensor *t, qref_real *dst, size_t count)
{
    size_t isz = dtype_size(t->dtype);
    assert(t->nbytes == count * isz);
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case QREF_DT_F32:
        for (size_t i = 0; i < count; i++) {
            float v;
            memcpy(&v, src + 4 * i, 4);
            dst[i] = (qref_real)v;
        }
        break;
    case QREF_DT_F64:
        for (size_t i = 0; i < count; i++) {
            double v;
            memcpy(&v, src + 8 * i, 8);
            dst[i] = (qref_real)v;
        }
        break;
    case QREF_DT_F16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = (qref_real)f16_to_float(h);
        }
        break;
    case QREF_DT_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = (qref_real)bits_to_float((uint32_t)h << 16);
        }
        break;
    }
}
