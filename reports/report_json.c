/* SPDX-License-Identifier: MIT */
/*
 * The JSON results file: writer and validating reader (format in reports/README.md).
 *
 * The writer prints the document itself (stable key order, numbers that read back bit for
 * bit); the reader parses with cJSON and checks every field it needs, naming the file and
 * the field in each error. One table of lc_metrics fields drives both directions.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lc_json.h"
#include "report_util.h"
#include "reports.h"

/* Largest integer every JSON reader holds exactly (IEEE double): 2^53. */
#define JSON_EXACT_MAX 9007199254740992.0

/* ---------------------------------------------------------------- the lc_metrics fields */

typedef enum {
    F_DBL, /* double: number, or "nan" / "inf" / "-inf" */
    F_CNT, /* size_t count: integer (a decimal string above 2^53) */
    F_POS, /* size_t position: as F_CNT, null for LC_NO_POS */
    F_U64, /* uint64_t: as F_CNT */
    F_ULP, /* lc_ulp_precision: "none" / "f32" / "f64" */
    F_INT  /* int: integer */
} field_type;

typedef struct {
    const char *name;
    field_type type;
    size_t offset;
} metric_field;

#define MF(field, type) {#field, type, offsetof(lc_metrics, field)}
static const metric_field metric_fields[] = {
    MF(positions, F_CNT),          MF(values, F_CNT),
    MF(n_included, F_CNT),         MF(n_values, F_CNT),
    MF(n_kl, F_CNT),               MF(nonfinite, F_CNT),
    MF(n_nan, F_CNT),              MF(nonfinite_pos, F_POS),
    MF(nonfinite_index, F_POS),    MF(max_abs, F_DBL),
    MF(max_abs_pos, F_POS),        MF(max_abs_index, F_POS),
    MF(max_abs_actual, F_DBL),     MF(max_abs_expected, F_DBL),
    MF(max_abs_scaled, F_DBL),
    MF(max_rel, F_DBL),            MF(max_rel_pos, F_POS),
    MF(max_rel_index, F_POS),      MF(allclose_fail, F_CNT),
    MF(allclose_frac, F_DBL),      MF(allclose_first_pos, F_POS),
    MF(allclose_first_index, F_POS), MF(nmse, F_DBL),
    MF(ulp, F_ULP),                MF(max_ulp, F_U64),
    MF(max_ulp_pos, F_POS),        MF(max_ulp_index, F_POS),
    MF(min_cosine, F_DBL),         MF(min_cosine_pos, F_POS),
    MF(kl_mean, F_DBL),            MF(kl_max, F_DBL),
    MF(kl_p999, F_DBL),            MF(kl_max_pos, F_POS),
    MF(top1_agree, F_CNT),         MF(top1_frac, F_DBL),
    MF(top1_first_mismatch_pos, F_POS), MF(top1_first_mismatch_actual, F_POS),
    MF(top1_first_mismatch_expected, F_POS), MF(topk, F_INT),
    MF(topk_mean, F_DBL),          MF(topk_min, F_DBL),
    MF(topk_min_pos, F_POS),       MF(top1_margin_agree, F_CNT),
    MF(top1_margin_frac, F_DBL),   MF(top1_margin_first_flip_pos, F_POS),
};
#undef MF
#define N_METRIC_FIELDS ((int)(sizeof metric_fields / sizeof metric_fields[0]))

static const char *const ulp_names[] = {"none", "f32", "f64"};

/* ================================================================ writer */

static void put_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        const unsigned char c = *p;
        if (c >= 0x80) {
            const int n = lc__utf8_len(p);
            if (n == 0) {
                fputc('?', f); /* JSON text must be UTF-8 */
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += (size_t)n;
            }
            continue;
        }
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
        p++;
    }
    fputc('"', f);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static void put_num(FILE *f, double x)
{
    if (isnan(x) || isinf(x)) {
        fputs(isnan(x) ? "\"nan\"" : x > 0 ? "\"inf\"" : "\"-inf\"", f);
        return;
    }
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        const double back = strtod(buf, NULL);
        if (memcmp(&back, &x, sizeof x) == 0)
            break;
    }
    fputs(buf, f);
}

static void put_u64(FILE *f, uint64_t u)
{
    if (u <= 9007199254740992ull) /* 2^53 */
        fprintf(f, "%llu", (unsigned long long)u);
    else
        fprintf(f, "\"%llu\"", (unsigned long long)u);
}

static void put_bool(FILE *f, int b)
{
    fputs(b ? "true" : "false", f);
}

static void put_metrics(FILE *f, const lc_metrics *m, const char *ind)
{
    for (int i = 0; i < N_METRIC_FIELDS; i++) {
        const metric_field *mf = &metric_fields[i];
        const char *p = (const char *)m + mf->offset;
        fprintf(f, "%s  \"%s\": ", ind, mf->name);
        switch (mf->type) {
        case F_DBL: put_num(f, *(const double *)p); break;
        case F_CNT: put_u64(f, *(const size_t *)p); break;
        case F_POS:
            if (*(const size_t *)p == LC_NO_POS)
                fputs("null", f);
            else
                put_u64(f, *(const size_t *)p);
            break;
        case F_U64: put_u64(f, *(const uint64_t *)p); break;
        case F_ULP: {
            const int u = (int)*(const lc_ulp_precision *)p;
            put_str(f, u >= 0 && u <= 2 ? ulp_names[u] : "none");
            break;
        }
        case F_INT: fprintf(f, "%d", *(const int *)p); break;
        }
        fputs(i + 1 < N_METRIC_FIELDS ? ",\n" : "\n", f);
    }
}

static void put_cmp(FILE *f, const lc_comparison *k, int last)
{
    const char *ind = "        ";
    fprintf(f, "%s{\n%s  \"id\": ", ind, ind);
    put_str(f, k->id);
    fprintf(f, ",\n%s  \"class\": ", ind);
    put_str(f, k->cls);
    fprintf(f, ",\n%s  \"name\": ", ind);
    put_str(f, k->name);
    fprintf(f, ",\n%s  \"actual\": ", ind);
    put_str(f, k->actual);
    fprintf(f, ",\n%s  \"expected\": ", ind);
    put_str(f, k->expected);
    fprintf(f, ",\n%s  \"pass\": ", ind);
    put_bool(f, k->pass);
    fprintf(f, ",\n%s  \"values\": {", ind);
    for (int id = 0; id < LC_METRIC_COUNT; id++) {
        fprintf(f, "%s\"%s\": ", id ? ", " : "", lc_metric_name((lc_metric_id)id));
        put_num(f, lc_metric_value(&k->m, (lc_metric_id)id));
    }
    fprintf(f, "},\n%s  \"metrics\": {\n", ind);
    put_metrics(f, &k->m, "          ");
    fprintf(f, "%s  },\n%s  \"checks\": [", ind, ind);
    for (int i = 0; i < k->n_checks; i++) {
        const lc_check *c = &k->checks[i];
        fprintf(f, "%s\n%s    {\"metric\": ", i ? "," : "", ind);
        put_str(f, lc_metric_name(c->metric));
        fputs(", \"value\": ", f);
        put_num(f, c->value);
        fputs(", \"bound\": ", f);
        put_num(f, c->bound);
        fputs(", \"margin\": ", f);
        put_num(f, c->margin);
        fputs(", \"pass\": ", f);
        put_bool(f, c->pass);
        fputc('}', f);
    }
    fprintf(f, "%s],\n%s  \"curve\": [", k->n_checks ? "\n          " : "", ind);
    for (int i = 0; i < k->n_curve; i++) {
        if (i)
            fputs(i % 8 ? ", " : ",\n            ", f);
        put_num(f, k->curve[i]);
    }
    fprintf(f, "]\n%s}%s\n", ind, last ? "" : ",");
}

static void put_case(FILE *f, const lc_case_result *c, int last)
{
    fputs("    {\n      \"name\": ", f);
    put_str(f, c->name);
    fputs(",\n      \"kind\": ", f);
    put_str(f, c->kind);
    fputs(",\n      \"checkpoint\": ", f);
    put_str(f, c->checkpoint);
    fputs(",\n      \"description\": ", f);
    put_str(f, c->description);
    fputs(",\n      \"labels\": [", f);
    if (c->labels[0]) { /* split at commas, exactly: joined back with commas on reading */
        const char *s = c->labels;
        for (int first = 1;; first = 0) {
            const char *comma = strchr(s, ',');
            const size_t len = comma ? (size_t)(comma - s) : strlen(s);
            char label[sizeof c->labels];
            memcpy(label, s, len);
            label[len] = '\0';
            fputs(first ? "" : ", ", f);
            put_str(f, label);
            if (comma == NULL)
                break;
            s = comma + 1;
        }
    }
    fputs("],\n      \"verdict\": ", f);
    put_str(f, lc_verdict_name(c->verdict));
    fputs(",\n      \"reason\": ", f);
    put_str(f, c->reason);
    if (c->not_compared[0]) {
        fputs(",\n      \"not_compared\": ", f);
        put_str(f, c->not_compared);
    }
    fputs(",\n      \"seconds\": ", f);
    put_num(f, c->seconds);
    fputs(",\n      \"comparisons\": [", f);
    for (int j = 0; j < c->n_cmps; j++) {
        fputs(j ? "" : "\n", f);
        put_cmp(f, &c->cmps[j], j + 1 == c->n_cmps);
    }
    fprintf(f, "%s]\n    }%s\n", c->n_cmps ? "      " : "", last ? "" : ",");
}

int lc_report_json_write(const lc_run_result *r, const char *path, lc_error *err)
{
    lc_afile af;
    int rc = lc_afile_open(&af, path, err);
    if (rc)
        return rc;
    FILE *f = af.f;
    int counts[4];
    lc_run_counts(r, counts);
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"run\": {\n",
            LC_RESULTS_FORMAT, LC_RESULTS_VERSION);
    fputs("    \"engine_precision\": ", f);
    put_str(f, r->engine_precision);
    fputs(",\n    \"engine\": ", f);
    put_str(f, r->engine);
    fputs(",\n    \"engine_detail\": ", f);
    put_str(f, r->engine_detail);
    fputs(",\n    \"started\": ", f);
    put_str(f, r->started);
    fputs(",\n    \"host\": ", f);
    put_str(f, r->host);
    fputs(",\n    \"logitcheck_version\": ", f);
    put_str(f, r->version);
    fputs(",\n    \"git\": ", f);
    put_str(f, r->git);
    fputs(",\n    \"catalog\": ", f);
    put_str(f, r->catalog);
    fputs(",\n    \"checkpoints\": {", f);
    for (int i = 0; i < r->n_checkpoints; i++) {
        fputs(i ? ", " : "", f);
        put_str(f, r->checkpoints[i].path);
        fputs(": ", f);
        put_str(f, r->checkpoints[i].sha256);
    }
    fputs("}", f);
    fputs(",\n    \"seconds\": ", f);
    put_num(f, r->seconds);
    fprintf(f, ",\n    \"counts\": {\"pass\": %d, \"fail\": %d, \"error\": %d, \"skip\": %d}\n  },\n",
            counts[0], counts[1], counts[2], counts[3]);
    fputs("  \"cases\": [", f);
    for (int i = 0; i < r->n_cases; i++) {
        fputs(i ? "" : "\n", f);
        put_case(f, &r->cases[i], i + 1 == r->n_cases);
    }
    fprintf(f, "%s]\n}\n", r->n_cases ? "  " : "");
    return lc_afile_commit(&af, err);
}

/* ================================================================ reader */

typedef struct {
    const char *file;
    lc_error *err;
} reader;

/* "file: where.key: message" (where or key may be empty). */
static int bad(const reader *d, const char *where, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(const reader *d, const char *where, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lc_fail(d->err, LC_EINPUT, "%s: %s%s%s: %s", d->file, where,
                     where[0] && key[0] ? "." : "", key, msg);
}

/* Builds a field path ("cases[2].comparisons[0]"); long paths are cut, never overflow. */
static void where_fmt(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void where_fmt(char *dst, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

static int oom(const reader *d)
{
    return lc_fail(d->err, LC_EINTERNAL, "%s: out of memory reading the results", d->file);
}

/* What a JSON value is, for "found ..." in messages. */
static const char *found(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsString(v))
        snprintf(buf, n, "the string \"%.40s%s\"", v->valuestring,
                 strlen(v->valuestring) > 40 ? "..." : "");
    else if (cJSON_IsNumber(v))
        snprintf(buf, n, "the number %.17g", v->valuedouble);
    else
        snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : cJSON_IsFalse(v) ? "false"
                               : cJSON_IsNull(v) ? "null" : cJSON_IsArray(v) ? "an array"
                                                                             : "an object");
    return buf;
}

static int get(const reader *d, const cJSON *obj, const char *where, const char *key,
               const cJSON **out)
{
    *out = cJSON_GetObjectItemCaseSensitive(obj, key);
    return *out ? 0 : bad(d, where, key, "missing");
}

static int get_typed(const reader *d, const cJSON *obj, const char *where, const char *key,
                     int want_array, const cJSON **out)
{
    char fb[80];
    if (get(d, obj, where, key, out))
        return LC_EINPUT;
    if (want_array ? !cJSON_IsArray(*out) : !cJSON_IsObject(*out))
        return bad(d, where, key, "expected %s, found %s", want_array ? "an array" : "an object",
                   found(*out, fb, sizeof fb));
    return 0;
}

static int get_str(const reader *d, const cJSON *obj, const char *where, const char *key,
                   char *dst, size_t cap)
{
    const cJSON *v;
    char fb[80];
    if (get(d, obj, where, key, &v))
        return LC_EINPUT;
    if (!cJSON_IsString(v))
        return bad(d, where, key, "expected a string, found %s", found(v, fb, sizeof fb));
    if (strlen(v->valuestring) >= cap)
        return bad(d, where, key, "longer than %zu bytes", cap - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int get_bool(const reader *d, const cJSON *obj, const char *where, const char *key,
                    int *out)
{
    const cJSON *v;
    char fb[80];
    if (get(d, obj, where, key, &v))
        return LC_EINPUT;
    if (!cJSON_IsBool(v))
        return bad(d, where, key, "expected true or false, found %s", found(v, fb, sizeof fb));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* A double from a number or "nan" / "inf" / "-inf". */
static int dbl_value(const reader *d, const cJSON *v, const char *where, const char *key,
                     double *out)
{
    char fb[80];
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (strcmp(s, "nan") == 0 || strcmp(s, "inf") == 0 || strcmp(s, "-inf") == 0) {
            *out = s[0] == 'n' ? NAN : s[0] == 'i' ? INFINITY : -INFINITY;
            return 0;
        }
    }
    return bad(d, where, key, "expected a number or \"nan\"/\"inf\"/\"-inf\", found %s",
               found(v, fb, sizeof fb));
}

static int get_dbl(const reader *d, const cJSON *obj, const char *where, const char *key,
                   double *out)
{
    const cJSON *v;
    return get(d, obj, where, key, &v) ? LC_EINPUT : dbl_value(d, v, where, key, out);
}

/* An unsigned integer from a number (integral, <= 2^53) or a string of decimal digits. */
static int u64_value(const reader *d, const cJSON *v, const char *where, const char *key,
                     uint64_t *out)
{
    char fb[80];
    if (cJSON_IsNumber(v)) {
        const double x = v->valuedouble;
        if (x >= 0 && x <= JSON_EXACT_MAX && x == floor(x)) {
            *out = (uint64_t)x;
            return 0;
        }
    } else if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        const size_t len = strlen(s);
        if (len > 0 && len <= 20 && strspn(s, "0123456789") == len) {
            errno = 0;
            const unsigned long long u = strtoull(s, NULL, 10);
            if (errno == 0) {
                *out = (uint64_t)u;
                return 0;
            }
        }
    }
    return bad(d, where, key, "expected a non-negative integer, found %s",
               found(v, fb, sizeof fb));
}

/* One lc_metrics field, per the table. */
static int metric_field_value(const reader *d, const cJSON *obj, const char *where,
                              const metric_field *mf, lc_metrics *m)
{
    const cJSON *v;
    char fb[80];
    char *p = (char *)m + mf->offset;
    uint64_t u = 0;
    if (get(d, obj, where, mf->name, &v))
        return LC_EINPUT;
    switch (mf->type) {
    case F_DBL: return dbl_value(d, v, where, mf->name, (double *)p);
    case F_POS:
        if (cJSON_IsNull(v)) {
            *(size_t *)p = LC_NO_POS;
            return 0;
        }
        /* fall through */
    case F_CNT:
        if (u64_value(d, v, where, mf->name, &u))
            return LC_EINPUT;
#if SIZE_MAX < UINT64_MAX
        if (u > SIZE_MAX)
            return bad(d, where, mf->name, "%llu does not fit this machine's size_t",
                       (unsigned long long)u);
#endif
        *(size_t *)p = (size_t)u;
        return 0;
    case F_U64: return u64_value(d, v, where, mf->name, (uint64_t *)p);
    case F_ULP:
        for (int i = 0; i < 3; i++)
            if (cJSON_IsString(v) && strcmp(v->valuestring, ulp_names[i]) == 0) {
                *(lc_ulp_precision *)p = (lc_ulp_precision)i;
                return 0;
            }
        return bad(d, where, mf->name, "expected \"none\", \"f32\" or \"f64\", found %s",
                   found(v, fb, sizeof fb));
    case F_INT:
        if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
            v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX) {
            *(int *)p = (int)v->valuedouble;
            return 0;
        }
        return bad(d, where, mf->name, "expected an integer, found %s", found(v, fb, sizeof fb));
    }
    return bad(d, where, mf->name, "unknown field type");
}

static int read_check(const reader *d, const cJSON *o, const char *where, lc_check *k)
{
    char name[64], fb[80];
    if (!cJSON_IsObject(o))
        return bad(d, where, "", "expected an object, found %s", found(o, fb, sizeof fb));
    if (get_str(d, o, where, "metric", name, sizeof name))
        return LC_EINPUT;
    k->metric = lc_metric_from_name(name);
    if (k->metric == LC_METRIC_UNKNOWN)
        return bad(d, where, "metric", "unknown metric \"%s\"", name);
    if (get_dbl(d, o, where, "value", &k->value) || get_dbl(d, o, where, "bound", &k->bound) ||
        get_dbl(d, o, where, "margin", &k->margin) || get_bool(d, o, where, "pass", &k->pass))
        return LC_EINPUT;
    return 0;
}

static int read_cmp(const reader *d, const cJSON *o, const char *where, lc_comparison *k)
{
    char fb[80], w[160];
    const cJSON *metrics, *checks, *curve, *it;
    if (!cJSON_IsObject(o))
        return bad(d, where, "", "expected an object, found %s", found(o, fb, sizeof fb));
    if (get_str(d, o, where, "id", k->id, sizeof k->id) || get_str(d, o, where, "class", k->cls, sizeof k->cls) ||
        get_str(d, o, where, "name", k->name, sizeof k->name) ||
        get_str(d, o, where, "actual", k->actual, sizeof k->actual) ||
        get_str(d, o, where, "expected", k->expected, sizeof k->expected) ||
        get_bool(d, o, where, "pass", &k->pass) ||
        get_typed(d, o, where, "metrics", 0, &metrics) ||
        get_typed(d, o, where, "checks", 1, &checks) ||
        get_typed(d, o, where, "curve", 1, &curve))
        return LC_EINPUT;
    where_fmt(w, sizeof w, "%s.metrics", where);
    for (int i = 0; i < N_METRIC_FIELDS; i++)
        if (metric_field_value(d, metrics, w, &metric_fields[i], &k->m))
            return LC_EINPUT;
    const int nk = cJSON_GetArraySize(checks);
    if (nk > LC_MAX_CHECKS)
        return bad(d, where, "checks", "%d checks, at most %d are supported", nk, LC_MAX_CHECKS);
    int i = 0;
    cJSON_ArrayForEach(it, checks) {
        where_fmt(w, sizeof w, "%s.checks[%d]", where, i);
        if (read_check(d, it, w, &k->checks[i]))
            return LC_EINPUT;
        k->n_checks = ++i;
    }
    const int n = cJSON_GetArraySize(curve);
    if (n > 0) {
        k->curve = malloc((size_t)n * sizeof *k->curve);
        if (k->curve == NULL)
            return oom(d);
        k->n_curve = n;
        i = 0;
        cJSON_ArrayForEach(it, curve) {
            char key[32];
            snprintf(key, sizeof key, "curve[%d]", i);
            if (dbl_value(d, it, where, key, &k->curve[i]))
                return LC_EINPUT;
            i++;
        }
    }
    return 0;
}

static int read_labels(const reader *d, const cJSON *o, const char *where, lc_case_result *c)
{
    const cJSON *labels, *it;
    char fb[80];
    if (get_typed(d, o, where, "labels", 1, &labels))
        return LC_EINPUT;
    size_t len = 0;
    int i = 0;
    cJSON_ArrayForEach(it, labels) {
        char key[32];
        snprintf(key, sizeof key, "labels[%d]", i++);
        if (!cJSON_IsString(it))
            return bad(d, where, key, "expected a string, found %s", found(it, fb, sizeof fb));
        const size_t l = strlen(it->valuestring);
        const size_t sep = i > 1; /* a comma before every label but the first */
        if (len + sep + l >= sizeof c->labels)
            return bad(d, where, "labels", "longer than %zu bytes once joined with commas",
                       sizeof c->labels - 1);
        if (i > 1)
            c->labels[len++] = ',';
        memcpy(c->labels + len, it->valuestring, l + 1);
        len += l;
    }
    return 0;
}

static int read_case(const reader *d, const cJSON *o, const char *where, lc_case_result *c)
{
    char verdict[16], fb[80], w[160];
    const cJSON *cmps, *it;
    if (!cJSON_IsObject(o))
        return bad(d, where, "", "expected an object, found %s", found(o, fb, sizeof fb));
    if (get_str(d, o, where, "name", c->name, sizeof c->name) ||
        get_str(d, o, where, "kind", c->kind, sizeof c->kind) ||
        get_str(d, o, where, "checkpoint", c->checkpoint, sizeof c->checkpoint) ||
        get_str(d, o, where, "description", c->description, sizeof c->description) ||
        read_labels(d, o, where, c) || get_str(d, o, where, "verdict", verdict, sizeof verdict) ||
        get_str(d, o, where, "reason", c->reason, sizeof c->reason) ||
        (cJSON_GetObjectItemCaseSensitive(o, "not_compared") &&
         get_str(d, o, where, "not_compared", c->not_compared, sizeof c->not_compared)) ||
        get_dbl(d, o, where, "seconds", &c->seconds) ||
        get_typed(d, o, where, "comparisons", 1, &cmps))
        return LC_EINPUT;
    int v = 0;
    while (v < 4 && strcmp(verdict, lc_verdict_name((lc_verdict)v)) != 0)
        v++;
    if (v == 4)
        return bad(d, where, "verdict", "expected \"pass\", \"fail\", \"error\" or \"skip\", "
                   "found \"%s\"", verdict);
    c->verdict = (lc_verdict)v;
    int j = 0;
    cJSON_ArrayForEach(it, cmps) {
        lc_comparison *k = lc_case_add_cmp(c);
        if (k == NULL)
            return oom(d);
        where_fmt(w, sizeof w, "%s.comparisons[%d]", where, j++);
        if (read_cmp(d, it, w, k))
            return LC_EINPUT;
    }
    return 0;
}

static int read_doc(const reader *d, const cJSON *root, lc_run_result *r)
{
    const cJSON *v, *run, *cases, *it;
    char fb[80], fmt[64];
    if (!cJSON_IsObject(root))
        return bad(d, "", "", "expected a JSON object at the top level, found %s",
                   found(root, fb, sizeof fb));
    if (!cJSON_GetObjectItemCaseSensitive(root, "format"))
        return bad(d, "", "format", "missing (not a %s file?)", LC_RESULTS_FORMAT);
    if (get_str(d, root, "", "format", fmt, sizeof fmt))
        return LC_EINPUT;
    if (strcmp(fmt, LC_RESULTS_FORMAT) != 0)
        return bad(d, "", "format", "expected \"%s\", found \"%s\"", LC_RESULTS_FORMAT, fmt);
    if (get(d, root, "", "version", &v))
        return LC_EINPUT;
    if (!cJSON_IsNumber(v))
        return bad(d, "", "version", "expected a number, found %s", found(v, fb, sizeof fb));
    if (v->valuedouble != LC_RESULTS_VERSION)
        return bad(d, "", "version", "unsupported version %.17g (this build reads version %d)",
                   v->valuedouble, LC_RESULTS_VERSION);
    if (get_typed(d, root, "", "run", 0, &run) ||
        get_str(d, run, "run", "engine_precision", r->engine_precision,
                sizeof r->engine_precision) ||
        get_str(d, run, "run", "engine", r->engine, sizeof r->engine) ||
        get_str(d, run, "run", "engine_detail", r->engine_detail, sizeof r->engine_detail) ||
        get_str(d, run, "run", "started", r->started, sizeof r->started) ||
        get_str(d, run, "run", "host", r->host, sizeof r->host) ||
        get_str(d, run, "run", "logitcheck_version", r->version, sizeof r->version) ||
        get_str(d, run, "run", "git", r->git, sizeof r->git) ||
        get_dbl(d, run, "run", "seconds", &r->seconds) ||
        get_typed(d, root, "", "cases", 1, &cases))
        return LC_EINPUT;
    /* optional (added within version 2): the catalog hash and the checkpoint hashes */
    if (cJSON_GetObjectItemCaseSensitive(run, "catalog") &&
        get_str(d, run, "run", "catalog", r->catalog, sizeof r->catalog))
        return LC_EINPUT;
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(run, "checkpoints");
    if (ck != NULL) {
        if (!cJSON_IsObject(ck))
            return bad(d, "run", "checkpoints", "expected an object, found %s", found(ck, fb, sizeof fb));
        cJSON_ArrayForEach(it, ck) {
            if (r->n_checkpoints == LC_MAX_CHECKPOINTS)
                return bad(d, "run", "checkpoints", "more than %d checkpoints", LC_MAX_CHECKPOINTS);
            lc_checkpoint_hash *h = &r->checkpoints[r->n_checkpoints];
            if (strlen(it->string) >= sizeof h->path)
                return bad(d, "run.checkpoints", it->string, "name longer than %zu bytes", sizeof h->path - 1);
            memcpy(h->path, it->string, strlen(it->string) + 1);
            if (get_str(d, ck, "run.checkpoints", it->string, h->sha256, sizeof h->sha256))
                return LC_EINPUT;
            r->n_checkpoints++;
        }
    }
    int i = 0;
    cJSON_ArrayForEach(it, cases) {
        char w[32];
        lc_case_result *c = lc_run_add_case(r);
        if (c == NULL)
            return oom(d);
        snprintf(w, sizeof w, "cases[%d]", i++);
        if (read_case(d, it, w, c))
            return LC_EINPUT;
    }
    return 0;
}

/* A results file is a few megabytes even for thousands of cases; anything past this cap (or
 * the memory limit) is refused before it is read. */
#define RESULTS_MAX_BYTES ((size_t)1 << 30)

int lc_report_json_read(lc_run_result *r, const char *path, lc_error *err)
{
    const reader d = {path, err};
    char *buf = NULL;
    size_t len = 0;
    if (r->cases != NULL || r->n_cases != 0)
        return lc_fail(err, LC_EINTERNAL, "%s: lc_report_json_read needs an empty record", path);
    memset(r, 0, sizeof *r);
    int rc = lc_file_read(path, NULL, RESULTS_MAX_BYTES, &buf, &len, err);
    if (rc)
        return rc;
    if (strspn(buf, " \t\r\n") == len) {
        free(buf);
        return lc_fail(err, LC_EINPUT, "%s: empty file, expected a %s JSON document", path, LC_RESULTS_FORMAT);
    }
    cJSON *root = NULL;
    rc = lc_json_parse(path, buf, len, &root, err);
    if (rc) {
        free(buf);
        return rc;
    }
    free(buf);
    rc = read_doc(&d, root, r);
    cJSON_Delete(root);
    if (rc)
        lc_run_result_free(r);
    return rc;
}
