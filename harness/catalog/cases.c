/* SPDX-License-Identifier: MIT */
/*
 * Case catalog parser and validator (cases.h). Sections: names and tables, error context,
 * JSON field readers, prompt / decode / bounds parsers, one case, one file, the directory,
 * filtering and queries.
 */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700 /* realpath */

#include "cases.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "lc_file.h"
#include "lc_json.h"
#include "metrics.h"
#include "synth.h"

#define NAME_MAX_LEN 128            /* case names and labels */
#define FILE_MAX_BYTES (64L << 20)  /* a case file larger than this is certainly a mistake */
#define DEFAULT_KERNEL_CHUNK 64

/* ---------------------------------------------------------------- names and tables */

static const char *const kind_names[] = {
#define LC__KIND_NAME(id, name) name,
    LC_KIND_MAP(LC__KIND_NAME)
#undef LC__KIND_NAME
};

static const char *const grad_fn_names[] = {
#define LC__GRAD_FN_NAME(id, name) name,
    LC_GRAD_FN_MAP(LC__GRAD_FN_NAME)
#undef LC__GRAD_FN_NAME
};

static const char *const kernel_names[] = {
#define LC__KERNEL_NAME(id, name) name,
    LC_KERNEL_MAP(LC__KERNEL_NAME)
#undef LC__KERNEL_NAME
};


const char *lc_kind_name(lc_kind k)
{
    return (k >= 0 && k < LC_KIND_COUNT) ? kind_names[k] : "unknown";
}

lc_kind lc_kind_from_name(const char *name)
{
    for (int k = 0; name && k < LC_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0)
            return (lc_kind)k;
    return LC_KIND_UNKNOWN;
}

int lc_kind_needs_golden(lc_kind k)
{
    return k == LC_KIND_GOLDEN || k == LC_KIND_MULTI_IMAGE || k == LC_KIND_GRADIENT || k == LC_KIND_MTP_HEAD;
}

const char *lc_grad_fn_name(lc_grad_fn f)
{
    return (f >= 0 && f < LC_GRAD_FN_COUNT) ? grad_fn_names[f] : "unknown";
}

const char *lc_kernel_check_name(lc_kernel_check k)
{
    return (k >= 0 && k < LC_KERNEL_COUNT) ? kernel_names[k] : "unknown";
}


#define KIND_BIT(k) (1u << (k))
#define ALL_KINDS ((1u << LC_KIND_COUNT) - 1u)
/* kinds whose cases are a list of requests instead of one prompt */
#define SERVING_KINDS (KIND_BIT(LC_KIND_CONTINUOUS_BATCH) | KIND_BIT(LC_KIND_PREFIX_CACHE))

/* Keys a case may hold: which kinds accept the key and which require it. */
typedef struct {
    const char *key;
    unsigned allowed;
    unsigned required;
} key_rule;

static const key_rule key_rules[] = {
    {"name", ALL_KINDS, ALL_KINDS},
    {"kind", ALL_KINDS, ALL_KINDS},
    {"checkpoint", ALL_KINDS, ALL_KINDS},
    {"golden", ALL_KINDS,
     KIND_BIT(LC_KIND_GOLDEN) | KIND_BIT(LC_KIND_MULTI_IMAGE) | KIND_BIT(LC_KIND_GRADIENT) | KIND_BIT(LC_KIND_MTP_HEAD)},
    {"labels", ALL_KINDS, 0},
    {"description", ALL_KINDS, ALL_KINDS},
    {"prompt", ALL_KINDS & ~KIND_BIT(LC_KIND_BATCH) & ~KIND_BIT(LC_KIND_GRADIENT) & ~SERVING_KINDS,
     ALL_KINDS & ~KIND_BIT(LC_KIND_BATCH) & ~KIND_BIT(LC_KIND_GRADIENT) & ~SERVING_KINDS},
    {"decode", ALL_KINDS & ~KIND_BIT(LC_KIND_GRADIENT) & ~SERVING_KINDS, 0},
    {"bounds", ALL_KINDS, ALL_KINDS},
    {"lengths", KIND_BIT(LC_KIND_PREFILL_DECODE), KIND_BIT(LC_KIND_PREFILL_DECODE)},
    {"chunks", KIND_BIT(LC_KIND_CHUNKED) | KIND_BIT(LC_KIND_BATCH), KIND_BIT(LC_KIND_CHUNKED)},
    {"rows", KIND_BIT(LC_KIND_BATCH) | KIND_BIT(LC_KIND_SPECULATIVE), KIND_BIT(LC_KIND_BATCH)},
    {"pad_id", KIND_BIT(LC_KIND_BATCH), KIND_BIT(LC_KIND_BATCH)},
    {"other_prompt", KIND_BIT(LC_KIND_ISOLATION), KIND_BIT(LC_KIND_ISOLATION)},
    {"steps", KIND_BIT(LC_KIND_CACHE), KIND_BIT(LC_KIND_CACHE)},
    {"kernel", KIND_BIT(LC_KIND_KERNEL), KIND_BIT(LC_KIND_KERNEL)},
    {"chunk", KIND_BIT(LC_KIND_KERNEL) | KIND_BIT(LC_KIND_GRADIENT), 0},
    {"function", KIND_BIT(LC_KIND_GRADIENT), KIND_BIT(LC_KIND_GRADIENT)},
    {"group", KIND_BIT(LC_KIND_GRADIENT), KIND_BIT(LC_KIND_GRADIENT)},
    {"expected", KIND_BIT(LC_KIND_GRADIENT), 0},
    {"cross_recurrent", KIND_BIT(LC_KIND_GRADIENT), 0},
    {"split", KIND_BIT(LC_KIND_SNAPSHOT), KIND_BIT(LC_KIND_SNAPSHOT)},
    {"after_segment", KIND_BIT(LC_KIND_IMAGE_CHECKPOINT), KIND_BIT(LC_KIND_IMAGE_CHECKPOINT)},
    {"requests", SERVING_KINDS, SERVING_KINDS},
    {"interleave", KIND_BIT(LC_KIND_ISOLATION), 0},
    {"draft_k", KIND_BIT(LC_KIND_SPECULATIVE) | KIND_BIT(LC_KIND_MTP_HEAD),
     KIND_BIT(LC_KIND_SPECULATIVE) | KIND_BIT(LC_KIND_MTP_HEAD)},
    {"accept", KIND_BIT(LC_KIND_SPECULATIVE), 0},
    {"suffix", KIND_BIT(LC_KIND_SPECULATIVE), 0},
    {"row_k", KIND_BIT(LC_KIND_SPECULATIVE), 0},
    /* real-scale keys (cases/real/README.md) */
    {"checkpoint_synth", ALL_KINDS, 0},
    {"golden_layout", ALL_KINDS, 0},
    {"chunk_sweep", KIND_BIT(LC_KIND_GOLDEN) | KIND_BIT(LC_KIND_MULTI_IMAGE), 0},
    {"image_max_pixels", ALL_KINDS, 0},
    {"pad_to", KIND_BIT(LC_KIND_BATCH), 0},
    {"image_min_pixels", ALL_KINDS, 0},
    {"hidden_bounds", ALL_KINDS, 0},
};
#define N_KEY_RULES ((int)(sizeof key_rules / sizeof key_rules[0]))

/* ---------------------------------------------------------------- error context */

/* Where a message points: the file and the case ("case 'x'" or "case #3"). */
typedef struct {
    const char *file;
    char where[NAME_MAX_LEN + 32];
    lc_error *err;
} ctx;

static int plain_fail(lc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int plain_fail(lc_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lc_vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}

/* "FILE: CASE: FIELD: message" with status LC_EINPUT. */
static int fail(const ctx *cx, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(const ctx *cx, const char *field, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (cx->where[0])
        return plain_fail(cx->err, LC_EINPUT, "%s: %s: %s: %s", cx->file, cx->where, field, text);
    return plain_fail(cx->err, LC_EINPUT, "%s: %s: %s", cx->file, field, text);
}

static int oom(const ctx *cx)
{
    return plain_fail(cx->err, LC_EINTERNAL, "%s: out of memory while reading the case file",
                      cx->file);
}

/* ---------------------------------------------------------------- JSON field readers */

static const char *type_name(const cJSON *j)
{
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsBool(j)) return "boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "invalid value";
}

static int expect(const ctx *cx, const char *field, const cJSON *j, int ok, const char *what)
{
    if (ok)
        return LC_OK;
    return fail(cx, field, "expected %s, found %s", what, type_name(j));
}

/* An integer in [lo, hi]: a JSON number with no fractional part. */
static int read_int(const ctx *cx, const char *field, const cJSON *j, long lo, long hi, long *out)
{
    if (!cJSON_IsNumber(j))
        return fail(cx, field, "expected an integer, found %s", type_name(j));
    double v = j->valuedouble;
    if (!isfinite(v) || v != floor(v))
        return fail(cx, field, "expected an integer, found %g", v);
    if (v < (double)lo || v > (double)hi)
        return fail(cx, field, "expected an integer in [%ld, %ld], found %.0f", lo, hi, v);
    *out = (long)v;
    return LC_OK;
}

static int dup_string(const ctx *cx, const char *s, char **out)
{
    *out = strdup(s);
    return *out ? LC_OK : oom(cx);
}

/* A non-empty string; copied into *out. */
static int read_string(const ctx *cx, const char *field, const cJSON *j, char **out)
{
    int rc = expect(cx, field, j, cJSON_IsString(j), "a string");
    if (rc)
        return rc;
    if (j->valuestring[0] == '\0')
        return fail(cx, field, "expected a non-empty string");
    return dup_string(cx, j->valuestring, out);
}

/* Names and labels: [a-z0-9_.-]+, at most NAME_MAX_LEN characters. */
static int check_identifier(const ctx *cx, const char *field, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return fail(cx, field, "expected 1 to %d characters, found %zu", NAME_MAX_LEN, n);
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
              ch == '-'))
            return fail(cx, field, "'%s' has the character '%c' (allowed: a-z 0-9 _ . -)", s, ch);
    }
    return LC_OK;
}

/* A non-empty array of integers in [lo, hi]; *out malloc'ed. */
static int read_int_array(const ctx *cx, const char *field, const cJSON *j, long lo, long hi,
                          long **out, int *n)
{
    int rc = expect(cx, field, j, cJSON_IsArray(j), "an array of integers");
    if (rc)
        return rc;
    int count = cJSON_GetArraySize(j);
    if (count == 0)
        return fail(cx, field, "expected a non-empty array");
    long *v = malloc((size_t)count * sizeof *v);
    if (!v)
        return oom(cx);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[%d]", field, i);
        rc = read_int(cx, sub, e, lo, hi, &v[i]);
        if (rc) {
            free(v);
            return rc;
        }
        i++;
    }
    *out = v;
    *n = count;
    return LC_OK;
}

static int read_int32_array(const ctx *cx, const char *field, const cJSON *j, int32_t **out, int *n)
{
    long *v = NULL;
    int count = 0;
    int rc = read_int_array(cx, field, j, 0, INT32_MAX, &v, &count);
    if (rc)
        return rc;
    int32_t *w = malloc((size_t)count * sizeof *w);
    if (!w) {
        free(v);
        return oom(cx);
    }
    for (int i = 0; i < count; i++)
        w[i] = (int32_t)v[i];
    free(v);
    *out = w;
    *n = count;
    return LC_OK;
}

static int read_plain_int_array(const ctx *cx, const char *field, const cJSON *j, long lo,
                                int **out, int *n)
{
    long *v = NULL;
    int count = 0;
    int rc = read_int_array(cx, field, j, lo, INT32_MAX, &v, &count);
    if (rc)
        return rc;
    int *w = malloc((size_t)count * sizeof *w);
    if (!w) {
        free(v);
        return oom(cx);
    }
    for (int i = 0; i < count; i++)
        w[i] = (int)v[i];
    free(v);
    *out = w;
    *n = count;
    return LC_OK;
}

/* A JSON object whose keys all appear once. */
static int check_object_keys_unique(const ctx *cx, const char *field, const cJSON *obj)
{
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = obj->child; b != a; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return fail(cx, field, "key '%s' appears twice", a->string);
    return LC_OK;
}

/* ---------------------------------------------------------------- paths */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Relative, no "..", no empty components written as "//". */
static int check_relative_path(const ctx *cx, const char *field, const char *p)
{
    if (p[0] == '/')
        return fail(cx, field, "'%s' is absolute; expected a path relative to the repository root",
                    p);
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.')
            return fail(cx, field, "'%s' leaves the repository root ('..')", p);
        if (len == 0)
            return fail(cx, field, "'%s' has an empty path component", p);
        s += len + (e ? 1 : 0);
    }
    return LC_OK;
}

static int join_path(char *buf, size_t cap, const char *root, const char *rel)
{
    int n = snprintf(buf, cap, "%s/%s", root, rel);
    return n >= 0 && (size_t)n < cap;
}

static int is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A path that exists must stay inside the folder of the root it names once symlinks are
 * resolved: `golden/tiny-dense/a.png` inside what `ROOT/golden` resolves to (a top-level folder
 * may itself be a link, as in a work directory linking the repository's golden/ and cases/),
 * a one-component path inside the root. A case file never reads outside its tree. */
static int check_inside_root(const ctx *cx, const char *field, const char *root, const char *rel,
                             const char *full)
{
    char top[4096], real_top[PATH_MAX], real_full[PATH_MAX];
    const char *slash = strchr(rel, '/');
    if (slash)
        snprintf(top, sizeof top, "%s/%.*s", root, (int)(slash - rel), rel);
    else
        snprintf(top, sizeof top, "%s", root);
    if (!realpath(top, real_top))
        return fail(cx, field, "cannot resolve %s: %s", top, strerror(errno));
    if (!realpath(full, real_full))
        return fail(cx, field, "cannot resolve %s: %s", full, strerror(errno));
    size_t n = strlen(real_top);
    if (strcmp(real_top, "/") != 0 &&
        (strncmp(real_full, real_top, n) != 0 || (real_full[n] != '/' && real_full[n] != '\0')))
        return fail(cx, field, "%s resolves to %s, outside %s", full, real_full, real_top);
    return LC_OK;
}

/* The checkpoint directory must hold a config.json; its model_type tells dense from MoE. */
static int check_checkpoint(const ctx *cx, const char *root, const char *rel, lc_family *family)
{
    char dir[4096], cfg_path[4200];
    if (!join_path(dir, sizeof dir, root, rel) || !join_path(cfg_path, sizeof cfg_path, dir,
                                                            "config.json"))
        return fail(cx, "checkpoint", "path too long: '%s'", rel);
    if (!is_directory(dir))
        return fail(cx, "checkpoint", "directory not found: %s", dir);
    int inside = check_inside_root(cx, "checkpoint", root, rel, dir);
    if (inside)
        return inside;
    char *text = NULL;
    size_t len = 0;
    lc_error fe = {0};
    int rc = lc_file_read(cfg_path, NULL, FILE_MAX_BYTES, &text, &len, &fe);
    if (rc == LC_EINTERNAL)
        return oom(cx);
    if (rc != LC_OK)
        return fail(cx, "checkpoint", "%s", fe.msg);
    cJSON *cfg = NULL;
    rc = lc_json_parse(cfg_path, text, len, &cfg, &fe);
    free(text);
    if (rc == LC_EINTERNAL)
        return oom(cx);
    if (rc != LC_OK)
        return fail(cx, "checkpoint", "%s", fe.msg);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return fail(cx, "checkpoint", "%s is not a JSON object", cfg_path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    const cJSON *tmt = cJSON_IsObject(tc) ? cJSON_GetObjectItemCaseSensitive(tc, "model_type")
                                          : NULL;
    int moe = (cJSON_IsString(mt) && strstr(mt->valuestring, "moe")) ||
              (cJSON_IsString(tmt) && strstr(tmt->valuestring, "moe"));
    int known = cJSON_IsString(mt) || cJSON_IsString(tmt);
    cJSON_Delete(cfg);
    if (!known)
        return fail(cx, "checkpoint", "%s has no model_type", cfg_path);
    *family = moe ? LC_FAMILY_MOE : LC_FAMILY_DENSE;
    return LC_OK;
}

/* ---------------------------------------------------------------- free helpers */

static void prompt_free(lc_prompt *p)
{
    for (int i = 0; i < p->n_segs; i++) {
        free(p->segs[i].ids);
        free(p->segs[i].image);
        for (int f = 0; f < p->segs[i].n_frames; f++)
            free(p->segs[i].frames[f]);
        free(p->segs[i].frames);
        free(p->segs[i].ts_ids);
        free(p->segs[i].ts_len);
    }
    free(p->segs);
    p->segs = NULL;
    p->n_segs = 0;
}

static void bounds_free(lc_bounds *b)
{
    for (int i = 0; i < b->n_items; i++)
        free(b->items[i].name);
    free(b->items);
    memset(b, 0, sizeof *b);
}

static void case_free(lc_case *c)
{
    free(c->name);
    free(c->checkpoint);
    free(c->golden);
    for (int i = 0; i < c->n_labels; i++)
        free(c->labels[i]);
    free(c->labels);
    free(c->description);
    free(c->file);
    prompt_free(&c->prompt);
    free(c->decode.ids);
    free(c->lengths);
    free(c->chunks);
    free(c->accept);
    free(c->row_k);
    free(c->suffix);
    free(c->group);
    free(c->expected);
    for (int i = 0; i < c->n_rows; i++)
        prompt_free(&c->rows[i]);
    free(c->rows);
    prompt_free(&c->other_prompt);
    for (int i = 0; i < c->n_requests; i++) {
        prompt_free(&c->requests[i].prompt);
        free(c->requests[i].store_after);
    }
    free(c->requests);
    for (int p = 0; p < LC_PREC_COUNT; p++)
        bounds_free(&c->bounds[p]);
    free(c->synth_preset);
    free(c->synth_sha256);
    free(c->chunk_sweep);
    for (int k = 0; k < LC_HIDDEN_N; k++)
        for (int p = 0; p < LC_PREC_COUNT; p++)
            bounds_free(&c->hidden_bounds[k][p]);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- prompt */

/* A PNG path relative to the root that exists there (with a root). */
static int read_png_path(const ctx *cx, const char *field, const cJSON *j, const char *root, char **out)
{
    int rc = read_string(cx, field, j, out);
    if (rc)
        return rc;
    rc = check_relative_path(cx, field, *out);
    if (rc)
        return rc;
    if (!ends_with(*out, ".png"))
        return fail(cx, field, "'%s' is not a .png file", *out);
    if (root) {
        char full[4096];
        if (!join_path(full, sizeof full, root, *out))
            return fail(cx, field, "path too long: '%s'", *out);
        if (!is_regular_file(full))
            return fail(cx, field, "image file not found: %s", full);
    }
    return LC_OK;
}

static int sum_ints(const int *v, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s;
}

/* Most frames a video segment may list. */
#define MAX_VIDEO_FRAMES 4096

/* {"video": [frame paths], "fps": F (optional), "timestamp_ids": [[ids of patch 0], ...]}.
 * On failure *seg holds what was parsed (the prompt's free releases it). */
static int parse_video_segment(const ctx *cx, const char *field, const cJSON *j, const char *root,
                               lc_segment *seg)
{
    const cJSON *frames = NULL, *fps = NULL, *ts = NULL;
    char sub[256];
    for (const cJSON *k = j->child; k; k = k->next) {
        if (strcmp(k->string, "video") == 0)
            frames = k;
        else if (strcmp(k->string, "fps") == 0)
            fps = k;
        else if (strcmp(k->string, "timestamp_ids") == 0)
            ts = k;
        else
            return fail(cx, field, "unknown key '%s' (a video segment is {\"video\": [frames], \"fps\": F, "
                        "\"timestamp_ids\": [[...], ...]})", k->string);
    }
    seg->type = LC_SEG_VIDEO;
    snprintf(sub, sizeof sub, "%s.video", field);
    int rc = expect(cx, sub, frames, cJSON_IsArray(frames), "an array of PNG paths");
    if (rc)
        return rc;
    const int n = cJSON_GetArraySize(frames);
    if (n < 1 || n > MAX_VIDEO_FRAMES)
        return fail(cx, sub, "expected 1 to %d frames, found %d", MAX_VIDEO_FRAMES, n);
    seg->frames = calloc((size_t)n, sizeof *seg->frames);
    if (!seg->frames)
        return oom(cx);
    const cJSON *e;
    cJSON_ArrayForEach(e, frames) {
        char fsub[300];
        snprintf(fsub, sizeof fsub, "%s[%d]", sub, seg->n_frames);
        rc = read_png_path(cx, fsub, e, root, &seg->frames[seg->n_frames]);
        seg->n_frames++; /* counted even on failure so the free releases it */
        if (rc)
            return rc;
    }
    if (fps) {
        snprintf(sub, sizeof sub, "%s.fps", field);
        if (!cJSON_IsNumber(fps) || !isfinite(fps->valuedouble) || !(fps->valuedouble > 0) ||
            fps->valuedouble > 1e6)
            return fail(cx, sub, "expected a positive number of frames per second, found %s",
                        cJSON_IsNumber(fps) ? "a number out of (0, 1e6]" : type_name(fps));
        seg->fps = fps->valuedouble;
    }
    snprintf(sub, sizeof sub, "%s.timestamp_ids", field);
    rc = expect(cx, sub, ts, cJSON_IsArray(ts), "an array of id arrays (one per temporal patch)");
    if (rc)
        return rc;
    const int groups = cJSON_GetArraySize(ts);
    if (groups < 1 || groups > MAX_VIDEO_FRAMES)
        return fail(cx, sub, "expected 1 to %d groups, found %d", MAX_VIDEO_FRAMES, groups);
    seg->ts_len = calloc((size_t)groups, sizeof *seg->ts_len);
    if (!seg->ts_len)
        return oom(cx);
    cJSON_ArrayForEach(e, ts) {
        char gsub[300];
        int32_t *g = NULL;
        int len = 0;
        snprintf(gsub, sizeof gsub, "%s[%d]", sub, seg->n_ts);
        rc = read_int32_array(cx, gsub, e, &g, &len);
        if (rc)
            return rc;
        const int have = sum_ints(seg->ts_len, seg->n_ts);
        int32_t *grown = realloc(seg->ts_ids, ((size_t)have + (size_t)len) * sizeof *grown);
        if (!grown) {
            free(g);
            return oom(cx);
        }
        memcpy(grown + have, g, (size_t)len * sizeof *g);
        free(g);
        seg->ts_ids = grown;
        seg->ts_len[seg->n_ts++] = len;
    }
    return LC_OK;
}

static int parse_segment(const ctx *cx, const char *field, const cJSON *j, const char *root,
                         lc_segment *seg)
{
    int rc = expect(cx, field, j, cJSON_IsObject(j), "an object ({\"ids\": [...]} or {\"image\": \"...\"})");
    if (rc)
        return rc;
    rc = check_object_keys_unique(cx, field, j);
    if (rc)
        return rc;
    const cJSON *ids = NULL, *image = NULL;
    if (cJSON_GetObjectItemCaseSensitive(j, "video"))
        return parse_video_segment(cx, field, j, root, seg);
    for (const cJSON *k = j->child; k; k = k->next) {
        if (strcmp(k->string, "ids") == 0)
            ids = k;
        else if (strcmp(k->string, "image") == 0)
            image = k;
        else
            return fail(cx, field, "unknown key '%s' (a segment is {\"ids\": [...]} or "
                        "{\"image\": \"path.png\"})", k->string);
    }
    if ((ids == NULL) == (image == NULL))
        return fail(cx, field, "expected exactly one of 'ids' or 'image'");
    char sub[256];
    if (ids) {
        seg->type = LC_SEG_IDS;
        snprintf(sub, sizeof sub, "%s.ids", field);
        return read_int32_array(cx, sub, ids, &seg->ids, &seg->n_ids);
    }
    seg->type = LC_SEG_IMAGE;
    snprintf(sub, sizeof sub, "%s.image", field);
    rc = read_string(cx, sub, image, &seg->image);
    if (rc)
        return rc;
    rc = check_relative_path(cx, sub, seg->image);
    if (rc)
        return rc;
    if (!ends_with(seg->image, ".png"))
        return fail(cx, sub, "'%s' is not a .png file", seg->image);
    if (root) {
        char full[4096];
        if (!join_path(full, sizeof full, root, seg->image))
            return fail(cx, sub, "path too long: '%s'", seg->image);
        if (!is_regular_file(full))
            return fail(cx, sub, "image file not found: %s", full);
        rc = check_inside_root(cx, sub, root, seg->image, full);
        if (rc)
            return rc;
    }
    return LC_OK;
}

/* A non-empty array of segments. On failure *p holds what was parsed (caller frees). */
static int parse_prompt(const ctx *cx, const char *field, const cJSON *j, const char *root,
                        lc_prompt *p)
{
    int rc = expect(cx, field, j, cJSON_IsArray(j), "an array of segments");
    if (rc)
        return rc;
    int n = cJSON_GetArraySize(j);
    if (n == 0)
        return fail(cx, field, "empty prompt (expected at least one segment)");
    p->segs = calloc((size_t)n, sizeof *p->segs);
    if (!p->segs)
        return oom(cx);
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[%d]", field, p->n_segs);
        rc = parse_segment(cx, sub, e, root, &p->segs[p->n_segs]);
        p->n_segs++; /* counted even on failure so prompt_free releases it */
        if (rc)
            return rc;
    }
    return LC_OK;
}

int lc_prompt_text_length(const lc_prompt *p)
{
    long n = 0;
    for (int i = 0; i < p->n_segs; i++) {
        if (p->segs[i].type != LC_SEG_IDS)
            return -1;
        n += p->segs[i].n_ids;
    }
    return n > INT32_MAX ? -1 : (int)n;
}

int lc_prompt_video_count(const lc_prompt *p)
{
    int n = 0;
    for (int i = 0; i < p->n_segs; i++)
        n += p->segs[i].type == LC_SEG_VIDEO;
    return n;
}

int lc_prompt_image_count(const lc_prompt *p)
{
    int n = 0;
    for (int i = 0; i < p->n_segs; i++)
        n += p->segs[i].type == LC_SEG_IMAGE;
    return n;
}

/* ---------------------------------------------------------------- decode */

static int parse_decode(const ctx *cx, const cJSON *j, lc_decode *d)
{
    int rc = expect(cx, "decode", j, cJSON_IsObject(j),
                    "an object ({\"greedy\": N} or {\"ids\": [...]})");
    if (rc)
        return rc;
    rc = check_object_keys_unique(cx, "decode", j);
    if (rc)
        return rc;
    const cJSON *greedy = NULL, *ids = NULL;
    for (const cJSON *k = j->child; k; k = k->next) {
        if (strcmp(k->string, "greedy") == 0)
            greedy = k;
        else if (strcmp(k->string, "ids") == 0)
            ids = k;
        else
            return fail(cx, "decode", "unknown key '%s' (expected 'greedy' or 'ids')", k->string);
    }
    if ((greedy == NULL) == (ids == NULL))
        return fail(cx, "decode", "expected exactly one of 'greedy' or 'ids'");
    if (greedy) {
        long n = 0;
        rc = read_int(cx, "decode.greedy", greedy, 1, 1 << 20, &n);
        if (rc)
            return rc;
        d->mode = LC_DECODE_GREEDY;
        d->greedy = (int)n;
        return LC_OK;
    }
    d->mode = LC_DECODE_IDS;
    return read_int32_array(cx, "decode.ids", ids, &d->ids, &d->n_ids);
}

/* ---------------------------------------------------------------- bounds */

static int metric_is_count(lc_metric_id id)
{
    return id == LC_METRIC_NONFINITE || id == LC_METRIC_ALLCLOSE_FAIL || id == LC_METRIC_MAX_ULP;
}

static int metric_is_fraction(lc_metric_id id)
{
    return id == LC_METRIC_ALLCLOSE_FRAC || id == LC_METRIC_TOP1_AGREE || id == LC_METRIC_TOP1_AGREE_MARGIN ||
           id == LC_METRIC_TOPK_OVERLAP_MEAN || id == LC_METRIC_TOPK_OVERLAP_MIN;
}

static int parse_precision_bounds(const ctx *cx, const char *field, const cJSON *j, lc_bounds *b)
{
    int rc = expect(cx, field, j, cJSON_IsObject(j), "an object of metric bounds");
    if (rc)
        return rc;
    rc = check_object_keys_unique(cx, field, j);
    if (rc)
        return rc;
    b->present = 1;
    int n = cJSON_GetArraySize(j);
    b->items = calloc((size_t)(n > 0 ? n : 1), sizeof *b->items);
    if (!b->items)
        return oom(cx);
    int uses_allclose = 0, uses_topk = 0, uses_margin = 0;
    for (const cJSON *k = j->child; k; k = k->next) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%s", field, k->string);
        if (strcmp(k->string, "bitwise") == 0) {
            rc = expect(cx, sub, k, cJSON_IsBool(k), "a boolean");
            if (rc)
                return rc;
            b->bitwise = cJSON_IsTrue(k);
            continue;
        }
        if (strcmp(k->string, "atol") == 0 || strcmp(k->string, "rtol") == 0) {
            rc = expect(cx, sub, k, cJSON_IsNumber(k), "a number");
            if (rc)
                return rc;
            if (!isfinite(k->valuedouble) || k->valuedouble < 0)
                return fail(cx, sub, "expected a finite number >= 0, found %g", k->valuedouble);
            if (k->string[0] == 'a') {
                b->has_atol = 1;
                b->atol = k->valuedouble;
            } else {
                b->has_rtol = 1;
                b->rtol = k->valuedouble;
            }
            continue;
        }
        if (strcmp(k->string, "top1_margin") == 0) {
            rc = expect(cx, sub, k, cJSON_IsNumber(k), "a number");
            if (rc)
                return rc;
            if (!isfinite(k->valuedouble) || k->valuedouble < 0)
                return fail(cx, sub, "expected a finite number >= 0, found %g", k->valuedouble);
            b->has_top1_margin = 1;
            b->top1_margin = k->valuedouble;
            continue;
        }
        if (strcmp(k->string, "topk") == 0) {
            long v = 0;
            rc = read_int(cx, sub, k, 1, 1 << 20, &v);
            if (rc)
                return rc;
            b->topk = (int)v;
            continue;
        }
        lc_metric_id id = lc_metric_from_name(k->string);
        if (id == LC_METRIC_UNKNOWN)
            return fail(cx, sub, "unknown metric '%s'", k->string);
        rc = expect(cx, sub, k, cJSON_IsNumber(k), "a number");
        if (rc)
            return rc;
        double v = k->valuedouble;
        if (!isfinite(v))
            return fail(cx, sub, "expected a finite number, found %g", v);
        if (metric_is_count(id) && (v < 0 || v != floor(v)))
            return fail(cx, sub, "expected a count (an integer >= 0), found %g", v);
        if (metric_is_fraction(id) && (v < 0 || v > 1))
            return fail(cx, sub, "expected a fraction in [0, 1], found %g", v);
        if (id == LC_METRIC_MIN_COSINE && (v < -1 || v > 1))
            return fail(cx, sub, "expected a cosine in [-1, 1], found %g", v);
        if (lc_metric_direction(id) == LC_BOUND_UPPER && v < 0)
            return fail(cx, sub, "expected a bound >= 0, found %g", v);
        uses_allclose |= id == LC_METRIC_ALLCLOSE_FAIL || id == LC_METRIC_ALLCLOSE_FRAC;
        uses_topk |= id == LC_METRIC_TOPK_OVERLAP_MEAN || id == LC_METRIC_TOPK_OVERLAP_MIN;
        uses_margin |= id == LC_METRIC_TOP1_AGREE_MARGIN;
        rc = dup_string(cx, k->string, &b->items[b->n_items].name);
        if (rc)
            return rc;
        b->items[b->n_items++].value = v;
    }
    if (uses_allclose && !(b->has_atol && b->has_rtol))
        return fail(cx, field, "allclose bounds need both 'atol' and 'rtol' alongside");
    if (!uses_allclose && (b->has_atol || b->has_rtol))
        return fail(cx, field, "'%s' given without an allclose metric (allclose_frac or "
                    "allclose_fail)", b->has_atol ? "atol" : "rtol");
    if (uses_topk && b->topk == 0)
        return fail(cx, field, "top-k bounds need 'topk' alongside");
    if (!uses_topk && b->topk)
        return fail(cx, field, "'topk' given without a top-k metric (topk_overlap_min or "
                    "topk_overlap_mean)");
    if (uses_margin && !b->has_top1_margin)
        return fail(cx, field, "top1_agree_margin needs 'top1_margin' alongside");
    if (!uses_margin && b->has_top1_margin)
        return fail(cx, field, "'top1_margin' given without top1_agree_margin");
    if (b->n_items == 0 && !b->bitwise)
        return fail(cx, field, "no bound given (expected at least one metric or \"bitwise\": true)");
    return LC_OK;
}

/* `bounds` and `hidden_bounds` (field: the key, named in every message). */
static int parse_bounds(const ctx *cx, const char *field, const cJSON *j, lc_bounds bounds[LC_PREC_COUNT])
{
    int rc = expect(cx, field, j, cJSON_IsObject(j), "an object with keys \"f32\" and \"f64\" (and optionally \"bf16\", \"f16\")");
    if (rc)
        return rc;
    rc = check_object_keys_unique(cx, field, j);
    if (rc)
        return rc;
    for (const cJSON *k = j->child; k; k = k->next) {
        lc_precision p = lc_precision_from_name(k->string);
        if (p == LC_PREC_UNKNOWN)
            return fail(cx, field, "unknown precision '%s' (expected \"f32\", \"f64\", \"bf16\" or \"f16\")",
                        k->string);
        char sub[64];
        snprintf(sub, sizeof sub, "%s.%s", field, lc_precision_name(p));
        rc = parse_precision_bounds(cx, sub, k, &bounds[p]);
        if (rc)
            return rc;
    }
    /* f32 and f64 are the reference engine's own builds: every case states both; bf16 / f16
     * engines fall back to the default bounds of each comparison class (bounds.h) */
    const lc_precision required[] = {LC_PREC_F32, LC_PREC_F64};
    for (int i = 0; i < 2; i++)
        if (!bounds[required[i]].present)
            return fail(cx, field, "missing bounds for precision '%s'", lc_precision_name(required[i]));
    return LC_OK;
}

const char *const lc_hidden_bound_names[LC_HIDDEN_N] = {"rms", "sketch", "sample"};

/* hidden_bounds: {"rms": B, "sketch": B, "sample": B}, each B as `bounds`, all three given. */
static int parse_hidden_bounds(const ctx *cx, const cJSON *v, lc_case *c)
{
    int rc = expect(cx, "hidden_bounds", v, cJSON_IsObject(v), "an object with keys \"rms\", \"sketch\", \"sample\"");
    if (!rc)
        rc = check_object_keys_unique(cx, "hidden_bounds", v);
    for (const cJSON *k = rc ? NULL : v->child; k && !rc; k = k->next) {
        int which = -1;
        for (int i = 0; i < LC_HIDDEN_N; i++)
            if (!strcmp(k->string, lc_hidden_bound_names[i]))
                which = i;
        if (which < 0)
            return fail(cx, "hidden_bounds", "unknown key '%s' (expected \"rms\", \"sketch\" or \"sample\")",
                        k->string);
        char field[64];
        snprintf(field, sizeof field, "hidden_bounds.%s", lc_hidden_bound_names[which]);
        rc = parse_bounds(cx, field, k, c->hidden_bounds[which]);
    }
    for (int i = 0; i < LC_HIDDEN_N && !rc; i++)
        if (!c->hidden_bounds[i][LC_PREC_F32].present)
            rc = fail(cx, "hidden_bounds", "missing key '%s'", lc_hidden_bound_names[i]);
    return rc;
}

/* ---------------------------------------------------------------- requests (serving kinds) */

/* One request object of a continuous_batch or prefix_cache case. */
static int parse_request(const ctx *cx, const char *field, const cJSON *j, const char *root, lc_kind kind,
                         lc_request *q)
{
    int rc = expect(cx, field, j, cJSON_IsObject(j), "an object");
    if (rc || (rc = check_object_keys_unique(cx, field, j)))
        return rc;
    const int cb = kind == LC_KIND_CONTINUOUS_BATCH;
    const char *required[] = {"prompt", "decode", cb ? "arrive" : "reused"};
    for (int i = 0; i < 3; i++)
        if (!cJSON_GetObjectItemCaseSensitive(j, required[i]))
            return fail(cx, field, "missing required field '%s'", required[i]);
    /* the integer fields: key, kind (1: continuous_batch only, 0: prefix_cache only, -1: both) */
    const struct {
        const char *key;
        int cb;
        long hi;
        int *dst;
    } ints[] = {{"decode", -1, 1 << 16, &q->decode},
                {"arrive", 1, 1 << 16, &q->arrive},
                {"chunk", 1, 1 << 20, &q->chunk},
                {"reused", 0, INT32_MAX, &q->reused}};
    for (const cJSON *k = j->child; k; k = k->next) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%s", field, k->string);
        int f = 0;
        while (f < 4 && (strcmp(k->string, ints[f].key) || (ints[f].cb >= 0 && ints[f].cb != cb)))
            f++;
        if (f < 4) {
            long n = 0;
            rc = read_int(cx, sub, k, 0, ints[f].hi, &n);
            *ints[f].dst = (int)n;
        } else if (!strcmp(k->string, "prompt"))
            rc = parse_prompt(cx, sub, k, root, &q->prompt);
        else if (!cb && !strcmp(k->string, "refused")) {
            rc = expect(cx, sub, k, cJSON_IsBool(k), "a boolean");
            q->refused = !rc && cJSON_IsTrue(k);
        } else if (!cb && !strcmp(k->string, "store_after"))
            rc = read_plain_int_array(cx, sub, k, 0, &q->store_after, &q->n_store);
        else
            return fail(cx, sub, "unknown key (a %s request has prompt, decode, %s)", lc_kind_name(kind),
                        cb ? "arrive and optionally chunk" : "reused and optionally refused, store_after");
        if (rc)
            return rc;
    }
    for (int i = 0; i < q->n_store; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.store_after[%d]", field, i);
        if (q->store_after[i] >= q->prompt.n_segs)
            return fail(cx, sub, "segment %d does not exist (the prompt has %d)", q->store_after[i],
                        q->prompt.n_segs);
        if (i > 0 && q->store_after[i] <= q->store_after[i - 1])
            return fail(cx, sub, "segments must be given in increasing order");
    }
    return LC_OK;
}

static int parse_requests(const ctx *cx, const cJSON *v, const char *root, lc_case *c)
{
    int rc = expect(cx, "requests", v, cJSON_IsArray(v), "an array of requests");
    if (rc)
        return rc;
    const int n = cJSON_GetArraySize(v);
    if (n < 2)
        return fail(cx, "requests", "a %s case needs at least 2 requests, found %d", lc_kind_name(c->kind), n);
    if (!(c->requests = calloc((size_t)n, sizeof *c->requests)))
        return oom(cx);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        char sub[64];
        snprintf(sub, sizeof sub, "requests[%d]", c->n_requests);
        rc = parse_request(cx, sub, e, root, c->kind, &c->requests[c->n_requests]);
        c->n_requests++; /* counted even on failure so case_free releases it */
        if (rc)
            return rc;
        if (c->n_requests > 1 && c->kind == LC_KIND_CONTINUOUS_BATCH &&
            c->requests[c->n_requests - 1].arrive < c->requests[c->n_requests - 2].arrive)
            return fail(cx, sub, "requests must be listed in arrival order");
    }
    return LC_OK;
}

/* ---------------------------------------------------------------- one case */

static int parse_labels(const ctx *cx, const cJSON *j, lc_case *c)
{
    int rc = expect(cx, "labels", j, cJSON_IsArray(j), "an array of strings");
    if (rc)
        return rc;
    int n = cJSON_GetArraySize(j);
    c->labels = calloc((size_t)(n > 0 ? n : 1), sizeof *c->labels);
    if (!c->labels)
        return oom(cx);
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        char sub[64];
        snprintf(sub, sizeof sub, "labels[%d]", c->n_labels);
        rc = read_string(cx, sub, e, &c->labels[c->n_labels]);
        if (rc)
            return rc;
        c->n_labels++;
        rc = check_identifier(cx, sub, c->labels[c->n_labels - 1]);
        if (rc)
            return rc;
        for (int i = 0; i < c->n_labels - 1; i++)
            if (strcmp(c->labels[i], c->labels[c->n_labels - 1]) == 0)
                return fail(cx, sub, "label '%s' appears twice", c->labels[i]);
    }
    return LC_OK;
}

/* Checks that involve several fields, once all of them are parsed. */
static int check_case_consistency(const ctx *cx, const lc_case *c)
{
    int text_len = lc_prompt_text_length(&c->prompt);
    char sub[64];
    switch (c->kind) {
    case LC_KIND_PREFILL_DECODE:
        for (int i = 0; i < c->n_lengths; i++) {
            snprintf(sub, sizeof sub, "lengths[%d]", i);
            if (c->lengths[i] < 2)
                return fail(cx, sub, "expected a length >= 2 (prefill N-1, then decode 1), found %d",
                            c->lengths[i]);
            if (text_len >= 0 && c->lengths[i] > text_len)
                return fail(cx, sub, "length %d is longer than the prompt (%d tokens)",
                            c->lengths[i], text_len);
        }
        break;
    case LC_KIND_CACHE:
        if (c->decode.mode == LC_DECODE_IDS && c->decode.n_ids < c->steps)
            return fail(cx, "steps", "%d steps but decode.ids holds only %d tokens", c->steps,
                        c->decode.n_ids);
        if (c->decode.mode == LC_DECODE_GREEDY && c->decode.greedy < c->steps)
            return fail(cx, "steps", "%d steps but decode.greedy is only %d", c->steps,
                        c->decode.greedy);
        break;
    case LC_KIND_SNAPSHOT:
        if (text_len >= 0 && c->split >= text_len)
            return fail(cx, "split", "split %d must be shorter than the prompt (%d tokens)",
                        c->split, text_len);
        break;
    case LC_KIND_IMAGE_CHECKPOINT:
        if (c->after_segment >= c->prompt.n_segs)
            return fail(cx, "after_segment", "segment %d does not exist (the prompt has %d)",
                        c->after_segment, c->prompt.n_segs);
        if (c->prompt.segs[c->after_segment].type == LC_SEG_IDS)
            return fail(cx, "after_segment", "segment %d is not an image or video segment",
                        c->after_segment);
        break;
    case LC_KIND_GRADIENT:
        if (c->cross_recurrent && c->function != LC_GRAD_FN_GDN_CHUNKED && c->function != LC_GRAD_FN_DECODER_LAYER)
            return fail(cx, "cross_recurrent", "applies to gdn_chunked and decoder_layer only, not %s",
                        lc_grad_fn_name(c->function));
        if (c->grad_chunk >= 0 && c->function != LC_GRAD_FN_GDN_CHUNKED && c->function != LC_GRAD_FN_CONV &&
            c->function != LC_GRAD_FN_DECODER_LAYER)
            return fail(cx, "chunk", "applies to gdn_chunked, conv and decoder_layer only, not %s",
                        lc_grad_fn_name(c->function));
        if (c->grad_chunk == 0 && c->function != LC_GRAD_FN_DECODER_LAYER)
            return fail(cx, "chunk", "0 (the recurrent form) applies to decoder_layer only");
        break;
    case LC_KIND_SPECULATIVE:
        for (int i = 0; i < c->n_accept; i++)
            if (c->accept[i] > c->draft_k) {
                snprintf(sub, sizeof sub, "accept[%d]", i);
                return fail(cx, sub, "%d accepted drafts but draft_k is %d", c->accept[i], c->draft_k);
            }
        if ((c->n_rows || c->n_row_k) && c->n_row_k != c->n_rows + 1)
            return fail(cx, "row_k", "%d entries for a batch of %d rows (the prompt and %d rows)", c->n_row_k,
                        c->n_rows + 1, c->n_rows);
        for (int i = 0; i < c->n_row_k; i++)
            if (c->row_k[i] > c->draft_k) {
                snprintf(sub, sizeof sub, "row_k[%d]", i);
                return fail(cx, sub, "%d drafts but draft_k is %d", c->row_k[i], c->draft_k);
            }
        if (c->n_rows && c->suffix)
            return fail(cx, "suffix", "does not apply to a batched speculative case (rows)");
        if (c->decode.mode != LC_DECODE_GREEDY || c->decode.greedy < 2)
            return fail(cx, "decode", "a speculative case needs decode.greedy >= 2 (the output budget)");
        break;
    case LC_KIND_BATCH:
        if (c->n_rows < 2 && !c->pad_to)
            return fail(cx, "rows", "a batch needs at least 2 rows (or pad_to), found %d", c->n_rows);
        for (int b = 0; b < c->n_rows && c->pad_to; b++) {
            int len = lc_prompt_text_length(&c->rows[b]);
            if (len > c->pad_to)
                return fail(cx, "pad_to", "%d is shorter than rows[%d] (%d tokens)", c->pad_to, b, len);
        }
        break;
    case LC_KIND_MULTI_IMAGE:
        if (lc_prompt_image_count(&c->prompt) < 2)
            return fail(cx, "prompt", "a multi_image case needs at least 2 image segments, found %d",
                        lc_prompt_image_count(&c->prompt));
        break;
    default:
        break;
    }
    /* the real-scale keys are read by the sparse-golden runner only: never ignored silently */
    if (c->sparse && !c->golden)
        return fail(cx, "golden_layout", "'%s' needs a golden file", LC_CASE_SPARSE_LAYOUT);
    if (!c->sparse && (c->n_chunk_sweep || c->image_max_pixels || c->pad_to || c->image_min_pixels))
        return fail(cx, c->n_chunk_sweep ? "chunk_sweep" : c->image_max_pixels ? "image_max_pixels"
                        : c->pad_to ? "pad_to" : "image_min_pixels",
                    "applies to cases with golden_layout '%s' only", LC_CASE_SPARSE_LAYOUT);
    if (c->image_min_pixels && c->image_max_pixels && c->image_min_pixels > c->image_max_pixels)
        return fail(cx, "image_min_pixels", "%ld exceeds image_max_pixels %ld", c->image_min_pixels,
                    c->image_max_pixels);
    if (!c->sparse && c->has_hidden_bounds)
        return fail(cx, "hidden_bounds", "applies to cases with golden_layout '%s' only", LC_CASE_SPARSE_LAYOUT);
    return LC_OK;
}

/* checkpoint_synth: {"preset": P, "seed": S, "sha256": HEX}, nothing else. */
static int parse_synth(const ctx *cx, const cJSON *v, lc_case *c)
{
    const char *f = "checkpoint_synth";
    int rc = expect(cx, f, v, cJSON_IsObject(v), "an object");
    if (!rc)
        rc = check_object_keys_unique(cx, f, v);
    for (const cJSON *k = v ? v->child : NULL; !rc && k; k = k->next)
        if (strcmp(k->string, "preset") && strcmp(k->string, "seed") && strcmp(k->string, "sha256"))
            rc = fail(cx, f, "unknown key '%s' (expected preset, seed, sha256)", k->string);
    if (rc)
        return rc;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(v, "preset");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "seed");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "sha256");
    if (!p || !s || !h)
        return fail(cx, f, "missing %s", !p ? "preset" : !s ? "seed" : "sha256");
    rc = read_string(cx, "checkpoint_synth.preset", p, &c->synth_preset);
    if (rc)
        return rc;
    lc_synth_preset pr;
    if (lc_synth_parse_preset(c->synth_preset, &pr) || !lc_synth_preset_published(pr))
        return fail(cx, "checkpoint_synth.preset", "'%s' is not a published-shape preset of synth", c->synth_preset);
    long seed = 0;
    rc = read_int(cx, "checkpoint_synth.seed", s, 0, (1L << 53), &seed);
    if (rc)
        return rc;
    c->synth_seed = (uint64_t)seed;
    rc = read_string(cx, "checkpoint_synth.sha256", h, &c->synth_sha256);
    if (rc)
        return rc;
    size_t n = strlen(c->synth_sha256);
    if (n != 64 || strspn(c->synth_sha256, "0123456789abcdef") != 64)
        return fail(cx, "checkpoint_synth.sha256", "expected 64 lowercase hex digits");
    c->has_synth = 1;
    c->family = lc_synth_preset_moe(pr) ? LC_FAMILY_MOE : LC_FAMILY_DENSE;
    return LC_OK;
}

/* Parses the value of one known key into c. */
static int parse_field(const ctx *cx, const char *key, const cJSON *v, const char *root, lc_case *c)
{
    long n = 0;
    int rc;
    if (strcmp(key, "name") == 0 || strcmp(key, "kind") == 0)
        return LC_OK; /* read first, by parse_case */
    if (strcmp(key, "checkpoint") == 0) {
        rc = read_string(cx, key, v, &c->checkpoint);
        if (!rc)
            rc = check_relative_path(cx, key, c->checkpoint);
        /* a synthesized checkpoint is written (and its hash checked) when the case runs */
        if (!rc && root && !c->has_synth)
            rc = check_checkpoint(cx, root, c->checkpoint, &c->family);
        return rc;
    }
    if (strcmp(key, "checkpoint_synth") == 0)
        return LC_OK; /* read first, by parse_case */
    if (strcmp(key, "golden_layout") == 0) {
        rc = expect(cx, key, v, cJSON_IsString(v), "a string");
        if (!rc && strcmp(v->valuestring, LC_CASE_SPARSE_LAYOUT))
            rc = fail(cx, key, "unknown layout '%s' (expected %s)", v->valuestring, LC_CASE_SPARSE_LAYOUT);
        c->sparse = !rc;
        return rc;
    }
    if (strcmp(key, "chunk_sweep") == 0)
        return read_plain_int_array(cx, key, v, 1, &c->chunk_sweep, &c->n_chunk_sweep);
    if (strcmp(key, "hidden_bounds") == 0) {
        rc = parse_hidden_bounds(cx, v, c);
        c->has_hidden_bounds = !rc;
        return rc;
    }
    if (strcmp(key, "image_max_pixels") == 0) {
        rc = read_int(cx, key, v, 1, 1L << 40, &c->image_max_pixels);
        return rc;
    }
    if (strcmp(key, "image_min_pixels") == 0)
        return read_int(cx, key, v, 1, 1L << 40, &c->image_min_pixels);
    if (strcmp(key, "pad_to") == 0) {
        rc = read_int(cx, key, v, 1, 1 << 24, &n);
        c->pad_to = (int)n;
        return rc;
    }
    if (strcmp(key, "golden") == 0) {
        rc = read_string(cx, key, v, &c->golden);
        if (!rc)
            rc = check_relative_path(cx, key, c->golden);
        if (!rc && !ends_with(c->golden, ".h5"))
            rc = fail(cx, key, "'%s' is not an .h5 file", c->golden);
        return rc;
    }
    if (strcmp(key, "labels") == 0)
        return parse_labels(cx, v, c);
    if (strcmp(key, "description") == 0)
        return read_string(cx, key, v, &c->description);
    if (strcmp(key, "prompt") == 0)
        return parse_prompt(cx, key, v, root, &c->prompt);
    if (strcmp(key, "other_prompt") == 0)
        return parse_prompt(cx, key, v, root, &c->other_prompt);
    if (strcmp(key, "decode") == 0)
        return parse_decode(cx, v, &c->decode);
    if (strcmp(key, "bounds") == 0)
        return parse_bounds(cx, key, v, c->bounds);
    if (strcmp(key, "lengths") == 0)
        return read_plain_int_array(cx, key, v, 1, &c->lengths, &c->n_lengths);
    if (strcmp(key, "chunks") == 0)
        return read_plain_int_array(cx, key, v, 1, &c->chunks, &c->n_chunks);
    if (strcmp(key, "rows") == 0) {
        rc = expect(cx, key, v, cJSON_IsArray(v), "an array of prompts");
        if (rc)
            return rc;
        int rows = cJSON_GetArraySize(v);
        if (rows < 1)
            return fail(cx, key, "a batch needs at least 1 row, found 0");
        c->rows = calloc((size_t)rows, sizeof *c->rows);
        if (!c->rows)
            return oom(cx);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            char sub[64];
            snprintf(sub, sizeof sub, "rows[%d]", c->n_rows);
            rc = parse_prompt(cx, sub, e, root, &c->rows[c->n_rows]);
            c->n_rows++;
            if (rc)
                return rc;
        }
        return LC_OK;
    }
    if (strcmp(key, "pad_id") == 0) {
        rc = read_int(cx, key, v, 0, INT32_MAX, &n);
        c->pad_id = (int32_t)n;
        return rc;
    }
    if (strcmp(key, "steps") == 0) {
        rc = read_int(cx, key, v, 1, 1 << 20, &n);
        c->steps = (int)n;
        return rc;
    }
    if (strcmp(key, "kernel") == 0) {
        rc = expect(cx, key, v, cJSON_IsString(v), "a string");
        if (rc)
            return rc;
        for (int k = 0; k < LC_KERNEL_COUNT; k++)
            if (strcmp(v->valuestring, kernel_names[k]) == 0) {
                c->kernel = (lc_kernel_check)k;
                return LC_OK;
            }
        return fail(cx, key, "unknown kernel check '%s' (expected %s or %s)", v->valuestring,
                    kernel_names[0], kernel_names[1]);
    }
    if (strcmp(key, "chunk") == 0 && c->kind == LC_KIND_GRADIENT) {
        /* 0: the recurrent form (decoder_layer) */
        rc = read_int(cx, key, v, 0, 1 << 20, &n);
        c->grad_chunk = (int)n;
        return rc;
    }
    if (strcmp(key, "chunk") == 0) {
        rc = read_int(cx, key, v, 1, 1 << 20, &n);
        c->chunk = (int)n;
        return rc;
    }
    if (strcmp(key, "function") == 0) {
        rc = expect(cx, key, v, cJSON_IsString(v), "a string");
        if (rc)
            return rc;
        for (int f = 0; f < LC_GRAD_FN_COUNT; f++)
            if (strcmp(v->valuestring, grad_fn_names[f]) == 0) {
                c->function = (lc_grad_fn)f;
                return LC_OK;
            }
        return fail(cx, key, "unknown function '%s' (expected gdn_recurrent, gdn_chunked, conv, l2norm, rmsnorm, "
                    "rmsnorm_gated, rope or decoder_layer)", v->valuestring);
    }
    if (strcmp(key, "group") == 0 || strcmp(key, "expected") == 0) {
        char **dst = key[0] == 'g' ? &c->group : &c->expected;
        rc = read_string(cx, key, v, dst);
        if (!rc && (!(*dst)[0] || (*dst)[0] == '/' || strstr(*dst, "..")))
            rc = fail(cx, key, "'%s': expected a relative HDF5 group path", *dst);
        return rc;
    }
    if (strcmp(key, "cross_recurrent") == 0) {
        rc = expect(cx, key, v, cJSON_IsBool(v), "a boolean");
        c->cross_recurrent = !rc && cJSON_IsTrue(v);
        return rc;
    }
    if (strcmp(key, "split") == 0) {
        rc = read_int(cx, key, v, 1, INT32_MAX, &n);
        c->split = (int)n;
        return rc;
    }
    if (strcmp(key, "after_segment") == 0) {
        rc = read_int(cx, key, v, 0, INT32_MAX, &n);
        c->after_segment = (int)n;
        return rc;
    }
    if (strcmp(key, "requests") == 0)
        return parse_requests(cx, v, root, c);
    if (strcmp(key, "interleave") == 0) {
        rc = expect(cx, key, v, cJSON_IsBool(v), "a boolean");
        c->interleave = !rc && cJSON_IsTrue(v);
        return rc;
    }
    if (strcmp(key, "draft_k") == 0) {
        rc = read_int(cx, key, v, 1, 64, &n);
        c->draft_k = (int)n;
        return rc;
    }
    if (strcmp(key, "accept") == 0)
        return read_plain_int_array(cx, key, v, 0, &c->accept, &c->n_accept);
    if (strcmp(key, "row_k") == 0)
        return read_plain_int_array(cx, key, v, 0, &c->row_k, &c->n_row_k);
    if (strcmp(key, "suffix") == 0)
        return read_int32_array(cx, key, v, &c->suffix, &c->n_suffix);
    assert(!"a key of key_rules has no parser");
    return fail(cx, key, "internal: no parser for this key");
}

/* Parses case object j (index idx in its file) into c. On failure c holds what was parsed
 * (the caller frees it) and cx->err is set. */
static int parse_case(ctx *cx, const cJSON *j, int idx, const char *root, lc_case *c)
{
    snprintf(cx->where, sizeof cx->where, "case #%d", idx + 1);
    c->kernel = LC_KERNEL_NONE;
    c->chunk = DEFAULT_KERNEL_CHUNK;
    c->function = LC_GRAD_FN_NONE;
    c->grad_chunk = -1;
    int rc = expect(cx, "case", j, cJSON_IsObject(j), "an object");
    if (rc)
        return rc;

    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (!name)
        return fail(cx, "name", "missing required field");
    rc = read_string(cx, "name", name, &c->name);
    if (rc)
        return rc;
    rc = check_identifier(cx, "name", c->name);
    if (rc)
        return rc;
    snprintf(cx->where, sizeof cx->where, "case '%s'", c->name);
    rc = check_object_keys_unique(cx, "case", j);
    if (rc)
        return rc;

    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "kind");
    if (!kind)
        return fail(cx, "kind", "missing required field");
    rc = expect(cx, "kind", kind, cJSON_IsString(kind), "a string");
    if (rc)
        return rc;
    c->kind = lc_kind_from_name(kind->valuestring);
    if (c->kind == LC_KIND_UNKNOWN)
        return fail(cx, "kind", "unknown kind '%s' (expected golden, prefill_decode, chunked, "
                    "isolation, multi_image, cache, kernel, batch, snapshot, image_checkpoint, gradient, "
                    "continuous_batch or prefix_cache)",
                    kind->valuestring);

    unsigned bit = KIND_BIT(c->kind);
    for (const cJSON *k = j->child; k; k = k->next) {
        int r = 0;
        while (r < N_KEY_RULES && strcmp(k->string, key_rules[r].key) != 0)
            r++;
        if (r == N_KEY_RULES)
            return fail(cx, k->string, "unknown key");
        if (!(key_rules[r].allowed & bit))
            return fail(cx, k->string, "does not apply to kind '%s'", lc_kind_name(c->kind));
    }
    for (int r = 0; r < N_KEY_RULES; r++)
        if ((key_rules[r].required & bit) && !cJSON_GetObjectItemCaseSensitive(j, key_rules[r].key))
            return fail(cx, key_rules[r].key, "missing required field (kind '%s')",
                        lc_kind_name(c->kind));
    /* checkpoint_synth first: it decides whether the checkpoint must exist yet */
    const cJSON *synth = cJSON_GetObjectItemCaseSensitive(j, "checkpoint_synth");
    if (synth && (rc = parse_synth(cx, synth, c)))
        return rc;
    for (const cJSON *k = j->child; k; k = k->next) {
        rc = parse_field(cx, k->string, k, root, c);
        if (rc)
            return rc;
    }
    return check_case_consistency(cx, c);
}

/* ---------------------------------------------------------------- one file */

void lc_catalog_init(lc_catalog *cat)
{
    memset(cat, 0, sizeof *cat);
}

static void catalog_truncate(lc_catalog *cat, int n)
{
    for (int i = n; i < cat->n; i++)
        case_free(&cat->cases[i]);
    if (cat->n > n)
        cat->n = n;
}

void lc_catalog_free(lc_catalog *cat)
{
    if (!cat)
        return;
    catalog_truncate(cat, 0);
    free(cat->cases);
    memset(cat, 0, sizeof *cat);
}

const lc_case *lc_catalog_find(const lc_catalog *cat, const char *name)
{
    for (int i = 0; name && i < cat->n; i++)
        if (strcmp(cat->cases[i].name, name) == 0)
            return &cat->cases[i];
    return NULL;
}

static int catalog_reserve(lc_catalog *cat, int extra)
{
    if (cat->n + extra <= cat->cap)
        return 1;
    int cap = cat->cap ? cat->cap : 16;
    while (cap < cat->n + extra)
        cap *= 2;
    lc_case *cases = realloc(cat->cases, (size_t)cap * sizeof *cases);
    if (!cases)
        return 0;
    cat->cases = cases;
    cat->cap = cap;
    return 1;
}

int lc_catalog_load_file(lc_catalog *cat, const char *path, const char *root, lc_error *err)
{
    ctx cx = {.file = path, .where = "", .err = err};
    char *text = NULL;
    size_t len = 0;
    int rc = lc_file_read(path, NULL, FILE_MAX_BYTES, &text, &len, err);
    if (rc != LC_OK)
        return rc;
    /* one JSON value; no key twice in one object, no NUL or raw control byte in a string */
    cJSON *doc = NULL;
    rc = lc_json_parse(path, text, len, &doc, err);
    free(text);
    if (rc != LC_OK)
        return rc;

    /* {"cases": [...]} or one case object */
    const cJSON *list = NULL;
    int single = 0;
    if (cJSON_IsObject(doc) && cJSON_GetObjectItemCaseSensitive(doc, "cases")) {
        if (cJSON_GetArraySize(doc) != 1) {
            for (const cJSON *k = doc->child; k; k = k->next)
                if (strcmp(k->string, "cases") != 0) {
                    rc = fail(&cx, k->string, "unknown top-level key (expected only \"cases\")");
                    cJSON_Delete(doc);
                    return rc;
                }
        }
        list = cJSON_GetObjectItemCaseSensitive(doc, "cases");
        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
            rc = cJSON_IsArray(list) ? fail(&cx, "cases", "empty array (no case)")
                                     : fail(&cx, "cases", "expected an array of cases, found %s",
                                            type_name(list));
            cJSON_Delete(doc);
            return rc;
        }
    } else if (cJSON_IsObject(doc)) {
        list = doc;
        single = 1;
    } else {
        rc = plain_fail(err, LC_EINPUT, "%s: expected an object ({\"cases\": [...]} or one case), "
                        "found %s", path, type_name(doc));
        cJSON_Delete(doc);
        return rc;
    }

    int count = single ? 1 : cJSON_GetArraySize(list);
    int n_before = cat->n;
    if (!catalog_reserve(cat, count)) {
        cJSON_Delete(doc);
        return oom(&cx);
    }
    rc = LC_OK;
    const cJSON *item = single ? list : list->child;
    for (int i = 0; i < count && rc == LC_OK; i++, item = item->next) {
        lc_case *c = &cat->cases[cat->n];
        memset(c, 0, sizeof *c);
        cat->n++; /* owned by the catalog from here: truncated away on failure */
        rc = parse_case(&cx, item, i, root, c);
        if (rc == LC_OK && dup_string(&cx, path, &c->file) != LC_OK)
            rc = LC_EINTERNAL;
        if (rc == LC_OK) {
            for (int k = 0; k < cat->n - 1; k++)
                if (strcmp(cat->cases[k].name, c->name) == 0) {
                    rc = fail(&cx, "name", "duplicate name: already defined in %s",
                              cat->cases[k].file ? cat->cases[k].file : path);
                    break;
                }
        }
    }
    cJSON_Delete(doc);
    if (rc != LC_OK)
        catalog_truncate(cat, n_before);
    return rc;
}

/* ---------------------------------------------------------------- the directory */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int lc_catalog_load_dir(lc_catalog *cat, const char *dir, const char *root, lc_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return plain_fail(err, LC_EINPUT, "%s: cannot open the case directory (%s)", dir,
                          strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = LC_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, ".json"))
            continue;
        char full[4096];
        if (!join_path(full, sizeof full, dir, de->d_name) || !is_regular_file(full))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = LC_EINTERNAL;
                break;
            }
            names = grown;
        }
        names[n] = strdup(de->d_name);
        if (!names[n]) {
            rc = LC_EINTERNAL;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == LC_OK && n == 0)
        rc = plain_fail(err, LC_EINPUT, "%s: no case files (*.json) in the directory", dir);
    else if (rc != LC_OK)
        plain_fail(err, rc, "%s: out of memory while listing case files", dir);
    if (rc == LC_OK) {
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        int n_before = cat->n;
        for (int i = 0; i < n && rc == LC_OK; i++) {
            char full[4096];
            join_path(full, sizeof full, dir, names[i]);
            rc = lc_catalog_load_file(cat, full, root, err);
        }
        if (rc != LC_OK)
            catalog_truncate(cat, n_before);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---------------------------------------------------------------- filtering and queries */

static const char *family_label(lc_family f)
{
    return f == LC_FAMILY_DENSE ? "dense" : f == LC_FAMILY_MOE ? "moe" : NULL;
}

int lc_case_has_label(const lc_case *c, const char *label)
{
    if (!label)
        return 0;
    if (strcmp(label, lc_kind_name(c->kind)) == 0)
        return 1;
    const char *fam = family_label(c->family);
    if (fam && strcmp(label, fam) == 0)
        return 1;
    for (int i = 0; i < c->n_labels; i++)
        if (strcmp(label, c->labels[i]) == 0)
            return 1;
    return 0;
}

int lc_case_matches(const lc_case *c, const char *pattern)
{
    if (!pattern)
        return 0;
    if (strncmp(pattern, "label:", 6) != 0)
        return fnmatch(pattern, c->name, 0) == 0;
    const char *glob = pattern + 6;
    if (fnmatch(glob, lc_kind_name(c->kind), 0) == 0)
        return 1;
    const char *fam = family_label(c->family);
    if (fam && fnmatch(glob, fam, 0) == 0)
        return 1;
    for (int i = 0; i < c->n_labels; i++)
        if (fnmatch(glob, c->labels[i], 0) == 0)
            return 1;
    return 0;
}

int lc_case_select(const lc_case *c, const char *const *patterns, int n_patterns,
                   const char *const *labels, int n_labels)
{
    int any = n_patterns == 0;
    for (int i = 0; i < n_patterns && !any; i++)
        any = lc_case_matches(c, patterns[i]);
    if (!any)
        return 0;
    for (int i = 0; i < n_labels; i++)
        if (!lc_case_has_label(c, labels[i]))
            return 0;
    return 1;
}

const lc_bound *lc_case_bound(const lc_case *c, lc_precision p, const char *metric)
{
    if (p < 0 || p >= LC_PREC_COUNT || !metric)
        return NULL;
    const lc_bounds *b = &c->bounds[p];
    for (int i = 0; i < b->n_items; i++)
        if (strcmp(b->items[i].name, metric) == 0)
            return &b->items[i];
    return NULL;
}
