/* SPDX-License-Identifier: MIT */
/*
 * logitcheck compare: grades one HDF5 logits file against another.
 *
 *   logitcheck compare ACTUAL EXPECTED [--atol X] [--rtol X]
 *
 * Each side is FILE.h5 or FILE.h5:/group/path (datasets looked up under that group), e.g.
 * golden/hf-tiny-reference.h5:/dense/text_decode. Compared when present on both sides:
 *   prefill_logits, decode_logits   (P, V): allclose |a - e| <= atol + rtol * |e|, and any NaN
 *                                   or inf fails; the same shape on both sides
 *   position_ids                    exactly, as integers; (3, T) and (3, 1, T) are the same
 *                                   layout (dimensions of size 1 are ignored)
 * Prints one line per dataset and a closing line. Exit: 0 every compared dataset within
 * tolerance, 1 a numeric failure, 2 bad usage or input (one line on stderr naming the file and
 * the problem: missing file, not HDF5, missing group, no common dataset, shape mismatch),
 * 3 internal error. Every input is read and checked before anything is printed, so a bad
 * input never leaves a partial table on stdout.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "h5io.h"
#include "metrics.h"

#define N_SETS 3

static const char *const set_names[N_SETS] = {"prefill_logits", "decode_logits", "position_ids"};
static const int set_exact[N_SETS] = {0, 0, 1};

/* One side of the comparison: a file and the group its datasets live under. */
typedef struct {
    const char *spec;   /* the argument as given (for messages) */
    char file[4096];
    char group[1024];   /* "" = the root group, else "/a/b" without a trailing '/' */
    lc_h5 h5;
} side;

/* One dataset read from both sides: logits as double, positions as int64. */
typedef struct {
    int present;                 /* in both files */
    lc_h5_shape sa, se;
    double *a, *e;               /* (P, V) logits; NULL for positions */
    int64_t *ia, *ie;            /* positions (flat); NULL for logits */
} pair;

static void usage(FILE *to)
{
    fprintf(to, "usage: logitcheck compare ACTUAL EXPECTED [--atol X] [--rtol X]\n"
                "  ACTUAL, EXPECTED  FILE.h5 or FILE.h5:/group/path (datasets looked up under the group)\n"
                "  Compares prefill_logits and decode_logits (allclose: |a-e| <= atol + rtol*|e|, default\n"
                "  atol 1e-4, rtol 1e-4; NaN/inf fails) and position_ids (exactly) present on both sides.\n"
                "Exit codes: 0 within tolerance, 1 a numeric failure, 2 bad usage or input, 3 internal.\n");
}

/* ---------------------------------------------------------------- arguments */

/* Splits "FILE" or "FILE:/group". A whole argument naming an existing file is a file even if it
 * holds ":/"; otherwise the first ":/" whose prefix exists splits, else the first ":/" at all
 * (the open then reports the missing file). Returns 0, or 2 with a message on stderr. */
static int split_spec(side *s, const char *arg)
{
    memset(s, 0, sizeof *s);
    s->spec = arg;
    s->h5.id = -1;
    const char *cut = NULL;
    if (access(arg, F_OK) != 0) {
        for (const char *p = strstr(arg, ":/"); p; p = strstr(p + 1, ":/")) {
            if (!cut)
                cut = p;
            char prefix[4096];
            if ((size_t)(p - arg) >= sizeof prefix)
                break;
            memcpy(prefix, arg, (size_t)(p - arg));
            prefix[p - arg] = '\0';
            if (access(prefix, F_OK) == 0) {
                cut = p;
                break;
            }
        }
    }
    size_t flen = cut ? (size_t)(cut - arg) : strlen(arg);
    if (flen >= sizeof s->file || (cut && strlen(cut + 1) >= sizeof s->group)) {
        fprintf(stderr, "logitcheck compare: '%.64s...': path too long\n", arg);
        return 2;
    }
    memcpy(s->file, arg, flen);
    s->file[flen] = '\0';
    if (cut) {
        snprintf(s->group, sizeof s->group, "%s", cut + 1);
        size_t n = strlen(s->group);
        while (n > 0 && s->group[n - 1] == '/')
            s->group[--n] = '\0';
    }
    return 0;
}

/* Parses a tolerance: a finite number >= 0. Returns 0, or 2 with a message. */
static int parse_tol(const char *opt, const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x) || x < 0) {
        fprintf(stderr, "logitcheck compare: %s '%s': expected a finite number >= 0\n", opt, v);
        return 2;
    }
    *out = x;
    return 0;
}

/* ---------------------------------------------------------------- reading */

static void dset_path(const side *s, const char *set, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", s->group, set);
}

static int open_side(side *s)
{
    lc_error err = {0};
    if (lc_h5_open(&s->h5, s->file, &err)) {
        fprintf(stderr, "logitcheck compare: %s\n", err.msg);
        return 2;
    }
    if (s->group[0] && !lc_h5_exists(&s->h5, s->group)) {
        fprintf(stderr, "logitcheck compare: %s: group '%s' is missing\n", s->file, s->group);
        return 2;
    }
    return 0;
}

static void shape_str(const lc_h5_shape *sh, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < sh->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)sh->shape[d]);
    if (k < n)
        snprintf(buf + k, n - k, ")");
}

/* Whether two shapes are the same layout: exactly equal, or (squeeze) equal once every
 * dimension of size 1 is dropped. */
static int same_shape(const lc_h5_shape *a, const lc_h5_shape *b, int squeeze)
{
    int64_t da[LC_H5_MAX_DIMS], db[LC_H5_MAX_DIMS];
    int na = 0, nb = 0;
    for (int d = 0; d < a->ndim; d++)
        if (!squeeze || a->shape[d] != 1)
            da[na++] = a->shape[d];
    for (int d = 0; d < b->ndim; d++)
        if (!squeeze || b->shape[d] != 1)
            db[nb++] = b->shape[d];
    return na == nb && (na == 0 || !memcmp(da, db, (size_t)na * sizeof *da));
}

static void pair_free(pair *p)
{
    free(p->a);
    free(p->e);
    free(p->ia);
    free(p->ie);
    memset(p, 0, sizeof *p);
}

/* Reads dataset set from both sides when both hold it. Returns 0 (p->present says whether it
 * was there), or 2 with a message (unreadable data, shape mismatch). */
static int read_pair(const side *A, const side *E, int s, pair *p)
{
    char na[1200], ne[1200];
    lc_error err = {0};
    memset(p, 0, sizeof *p);
    dset_path(A, set_names[s], na, sizeof na);
    dset_path(E, set_names[s], ne, sizeof ne);
    if (!lc_h5_exists(&A->h5, na) || !lc_h5_exists(&E->h5, ne))
        return 0;
    int bad = set_exact[s] ? lc_h5_read_i64(&A->h5, na, &p->ia, &p->sa, &err) ||
                                 lc_h5_read_i64(&E->h5, ne, &p->ie, &p->se, &err)
                           : lc_h5_read_f64(&A->h5, na, &p->a, &p->sa, &err) ||
                                 lc_h5_read_f64(&E->h5, ne, &p->e, &p->se, &err);
    if (bad) {
        fprintf(stderr, "logitcheck compare: %s\n", err.msg);
        return 2;
    }
    if (!same_shape(&p->sa, &p->se, set_exact[s])) {
        char sa[256], se[256];
        shape_str(&p->sa, sa, sizeof sa);
        shape_str(&p->se, se, sizeof se);
        fprintf(stderr, "logitcheck compare: %s: '%s' has shape %s but %s: '%s' has shape %s\n", A->file, na, sa,
                E->file, ne, se);
        return 2;
    }
    p->present = 1;
    return 0;
}

/* ---------------------------------------------------------------- comparing */

static void print_pos(const char *what, size_t pos, size_t idx)
{
    if (pos == LC_NO_POS)
        printf("(%s -)", what);
    else
        printf("(%s %zu, index %zu)", what, pos, idx);
}

/* Compares and prints one logits dataset. Returns 0 pass, 1 fail, 3 internal error. */
static int compare_logits(const char *name, const pair *p, double atol, double rtol)
{
    const lc_h5_shape *sh = &p->sa;
    size_t V = sh->ndim >= 1 ? (size_t)sh->shape[sh->ndim - 1] : 1;
    size_t P = V ? sh->count / V : 0;
    lc_compare_opts o = lc_compare_opts_default();
    o.atol = atol;
    o.rtol = rtol;
    lc_metrics m;
    int r = lc_compare(&m, p->a, p->e, P, V, &o);
    if (r) {
        fprintf(stderr, "logitcheck compare: %s: %s\n", name, r == ENOMEM ? "out of memory" : "invalid comparison");
        return 3;
    }
    int pass = m.nonfinite == 0 && m.allclose_fail == 0;
    printf("%-15s %s  max_abs %.3e ", name, pass ? "PASS" : "FAIL", m.max_abs);
    print_pos("position", m.max_abs_pos, m.max_abs_index);
    printf("  allclose fails %zu/%zu  nmse %.3e  kl_max %.3e  top1 %.4f", m.allclose_fail, m.n_values, m.nmse,
           m.kl_max, m.top1_frac);
    if (m.nonfinite) {
        printf("  nonfinite %zu ", m.nonfinite);
        print_pos("first at position", m.nonfinite_pos, m.nonfinite_index);
    }
    if (m.n_values == 0)
        printf("  (empty)");
    printf("\n");
    return pass ? 0 : 1;
}

/* Compares and prints position_ids exactly. Returns 0 pass, 1 fail. */
static int compare_positions(const char *name, const pair *p)
{
    size_t n = p->sa.count, first = LC_NO_POS;
    size_t bad = lc_compare_int64(p->ia, p->ie, n, &first);
    /* after squeezing both are (3, T) or (T): the last dimension not of size 1 is the position */
    size_t T = 1;
    for (int d = p->sa.ndim - 1; d >= 0; d--)
        if (p->sa.shape[d] != 1) {
            T = (size_t)p->sa.shape[d];
            break;
        }
    printf("%-15s %s  mismatches %zu/%zu", name, bad ? "FAIL" : "PASS", bad, n);
    if (bad && T)
        printf("  first at component %zu, position %zu: actual %lld, expected %lld", first / T, first % T,
               (long long)p->ia[first], (long long)p->ie[first]);
    printf("\n");
    return bad ? 1 : 0;
}

/* "prefill_logits, decode_logits" or "none": which of the compared datasets a side holds. */
static void held(const side *s, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < N_SETS; i++) {
        char path[1200];
        dset_path(s, set_names[i], path, sizeof path);
        if (lc_h5_exists(&s->h5, path) && k < n)
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", set_names[i]);
    }
    if (!k)
        snprintf(buf, n, "none");
}

int lc_cmd_compare(int argc, char **argv)
{
    const char *paths[2] = {0};
    int np = 0;
    double atol = 1e-4, rtol = 1e-4;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(k, "--atol") || !strcmp(k, "--rtol")) {
            if (i + 1 >= argc)
                return fprintf(stderr, "logitcheck compare: %s needs a value\n", k), 2;
            if (parse_tol(k, argv[i + 1], !strcmp(k, "--atol") ? &atol : &rtol))
                return 2;
            i++;
        } else if (k[0] == '-' && k[1]) {
            return fprintf(stderr, "logitcheck compare: unknown option '%s'\n", k), 2;
        } else if (np < 2) {
            paths[np++] = k;
        } else {
            return fprintf(stderr, "logitcheck compare: unexpected argument '%s' (two files expected)\n", k), 2;
        }
    }
    if (np != 2) {
        usage(stderr);
        return 2;
    }

    side A, E;
    pair pairs[N_SETS] = {{0}};
    int rc = split_spec(&A, paths[0]);
    if (!rc)
        rc = split_spec(&E, paths[1]);
    if (rc)
        return rc;
    rc = open_side(&A);
    if (!rc)
        rc = open_side(&E);
    int n_common = 0;
    for (int s = 0; s < N_SETS && !rc; s++) {
        rc = read_pair(&A, &E, s, &pairs[s]);
        n_common += pairs[s].present;
    }
    if (!rc && !n_common) {
        char ha[128], he[128];
        held(&A, ha, sizeof ha);
        held(&E, he, sizeof he);
        fprintf(stderr,
                "logitcheck compare: %s and %s have no dataset in common (looked for prefill_logits, "
                "decode_logits, position_ids; the first holds %s, the second %s)\n",
                A.spec, E.spec, ha, he);
        rc = 2;
    }

    int n_fail = 0;
    for (int s = 0; s < N_SETS && !rc; s++) {
        if (!pairs[s].present) {
            char na[1200], ne[1200];
            dset_path(&A, set_names[s], na, sizeof na);
            dset_path(&E, set_names[s], ne, sizeof ne);
            printf("%-15s skip  (only in %s)\n", set_names[s],
                   lc_h5_exists(&A.h5, na) ? "ACTUAL" : lc_h5_exists(&E.h5, ne) ? "EXPECTED" : "neither");
            continue;
        }
        int r = set_exact[s] ? compare_positions(set_names[s], &pairs[s])
                             : compare_logits(set_names[s], &pairs[s], atol, rtol);
        if (r == 3)
            rc = 3;
        n_fail += r == 1;
    }
    if (!rc) {
        if (n_fail)
            printf("FAIL: %d of %d datasets outside tolerance (atol %g, rtol %g)\n", n_fail, n_common, atol, rtol);
        else
            printf("PASS: %d of %d datasets within tolerance (atol %g, rtol %g)\n", n_common, n_common, atol, rtol);
        rc = n_fail ? 1 : 0;
    }
    for (int s = 0; s < N_SETS; s++)
        pair_free(&pairs[s]);
    lc_h5_close(&A.h5);
    lc_h5_close(&E.h5);
    return rc;
}
