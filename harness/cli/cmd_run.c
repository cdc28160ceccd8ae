/* SPDX-License-Identifier: MIT */
/*
 * logitcheck run | list.
 *
 *   run [CASE|GLOB ...] [--label L ...] [--root DIR] [--cases DIR] [--report DIR]
 *       [--results FILE.json] [--base FILE.json] [--engine ENGINE] [--engine-timeout S]
 *       [--engine-log FILE] [--inject FAULT ...] [--all] [--fail-on-regression] [--base-mismatch-ok]
 *       [--oracle ENGINE] [--oracle-precision P] [--oracle-cache FILE] [--model DIR]
 *   list [CASE|GLOB ...] [--label L ...] [--root DIR] [--cases DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "faults.h"
#include "h5io.h"
#include "reports.h"
#include "runner.h"
#include "synth.h"

#ifndef LC_SOURCE_ROOT
#define LC_SOURCE_ROOT "."
#endif

#define MAX_ARGS 256

typedef struct {
    const char *patterns[MAX_ARGS];
    int n_patterns;
    const char *labels[MAX_ARGS];
    int n_labels;
    const char *root, *cases, *report, *results, *base, *engine, *engine_log;
    /* differential mode (any of them set): the oracle, its precision, its cache, the checkpoint */
    const char *oracle, *oracle_cache, *model;
    lc_precision oracle_prec;   /* LC_PREC_UNKNOWN: not asked */
    double engine_timeout;      /* --engine-timeout S: per request of a process engine (0: default) */
    int all;
    int fail_on_regression;     /* --fail-on-regression: exit 1 on a metric regressed against --base */
    int base_mismatch_ok;       /* --base-mismatch-ok: a base of another precision or catalog */
    lc_fault_set faults;
    int n_faults;
    lc_run_opts opts;
} run_args;

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p of the directory holding path (the report directory's parents, as earlier versions
 * made them); failures are left to lc_report_dir_check to name. */
static void make_parents(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *last = strrchr(buf, '/');
    if (last == NULL || last == buf)
        return;
    *last = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            const char c = *p;
            *p = '\0';
            struct stat st;
            if (stat(buf, &st) != 0)
                mkdir(buf, 0777);
            *p = c;
            if (c == '\0')
                break;
        }
    }
}

static void run_usage(FILE *to)
{
    fprintf(to,
            "usage: logitcheck run [CASE|GLOB ...] [--label L ...] [--all] [--root DIR] [--cases DIR]\n"
            "                      [--report DIR] [--results FILE.json] [--base FILE.json] [--engine ENGINE]\n"
            "                      [--engine-timeout S] [--engine-log FILE] [--inject FAULT ...]\n"
            "  With no CASE and no --label: every case not labelled 'slow' (--all: those too). The\n"
            "  real-scale cases (cases/real, label 'real') run only when named or labelled: they write\n"
            "  their checkpoints first (gigabytes; cases/real/README.md).\n"
            "  --report DIR   write report.md, report.html, results.json, junit.xml (default: logitcheck-report);\n"
            "                 the directory is replaced whole: nothing of an earlier run remains\n"
            "  --base FILE    a results.json of an earlier run: the reports show what regressed, improved or\n"
            "                 stayed within the noise band (a quarter of each bound); refused from another\n"
            "                 engine precision or catalog unless --base-mismatch-ok\n"
            "  --fail-on-regression  exit 1 when a checked metric regressed against --base beyond its noise\n"
            "                 band, even when every bound still holds\n"
            "  --engine ENGINE  the engine under test: 'ref' (default), the in-process reference engine;\n"
            "                 any other value is a command, run through /bin/sh -c, that speaks the engine\n"
            "                 protocol (harness/PROTOCOL.md), e.g. 'logitcheck serve' or\n"
            "                 'python3 harness/adapters/transformers_engine.py --dtype bfloat16 --device cuda'\n"
            "  --engine-timeout S  seconds a process engine may take for one reply (default 600); past it\n"
            "                 the engine is killed, the case is an ERROR and the engine is restarted\n"
            "  --engine-log FILE   append a process engine's stderr to FILE (default: passed through)\n"
            "  --inject FAULT run the in-process engine with a planted bug (proves the cases catch it):\n");
    lc_fault_usage(to, "                   ");
    fprintf(to,
            "Differential mode (no golden needed; any of these options turns it on):\n"
            "  --oracle ENGINE  grade against this engine's outputs for the same inputs instead of the goldens:\n"
            "                 'ref' (default), the reference engine, or a command as for --engine\n"
            "  --oracle-precision P  f32 (default for 'ref': this build's) or f64: the reference oracle at P; the\n"
            "                 other precision runs as the other build's 'logitcheck serve'\n"
            "  --oracle-cache FILE  when FILE exists, read the oracle's outputs from it (no oracle runs); else\n"
            "                 run the oracle and write them there, a golden in today's layout naming the oracle\n"
            "  --model DIR    run every case on checkpoint DIR, instantiated for it (cases/README.md,\n"
            "                 \"Differential mode\"), graded against the oracle on the same checkpoint\n");
    fprintf(to, "Exit codes: 0 every case passed, 1 a case failed its bounds, 2 bad usage or input (or a case\n"
                "ended in error), 3 internal. Skipped cases (the engine lacks a capability) never pass.\n");
}

static void list_usage(FILE *to)
{
    fprintf(to, "usage: logitcheck list [CASE|GLOB ...] [--label L ...] [--root DIR] [--cases DIR]\n"
                "  One line per case of the catalog (name, kind, family and labels, then its description);\n"
                "  with names or labels, the cases 'run' would select for them.\n"
                "Exit codes: 0 listed, 2 bad usage or input (also: nothing matches the given names/labels).\n");
}

static int parse_run_args(int argc, char **argv, run_args *a, int for_list)
{
    memset(a, 0, sizeof *a);
    a->oracle_prec = LC_PREC_UNKNOWN;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            (for_list ? list_usage : run_usage)(stdout);
            return 1;
        }
        if (!strcmp(k, "--all")) {
            a->all = 1;
            continue;
        }
        if (!for_list && !strcmp(k, "--fail-on-regression")) {
            a->fail_on_regression = 1;
            continue;
        }
        if (!for_list && !strcmp(k, "--base-mismatch-ok")) {
            a->base_mismatch_ok = 1;
            continue;
        }
        if (k[0] != '-') {
            if (a->n_patterns == MAX_ARGS)
                return fprintf(stderr, "logitcheck: too many case patterns\n"), 2;
            a->patterns[a->n_patterns++] = k;
            continue;
        }
        if (i + 1 >= argc)
            return fprintf(stderr, "logitcheck: %s needs a value\n", k), 2;
        const char *v = argv[++i];
        if (!strcmp(k, "--label")) {
            if (a->n_labels == MAX_ARGS)
                return fprintf(stderr, "logitcheck: too many labels\n"), 2;
            a->labels[a->n_labels++] = v;
        } else if (!strcmp(k, "--root"))
            a->root = v;
        else if (!strcmp(k, "--cases"))
            a->cases = v;
        else if (!for_list && !strcmp(k, "--report"))
            a->report = v;
        else if (!for_list && !strcmp(k, "--results"))
            a->results = v;
        else if (!for_list && !strcmp(k, "--base"))
            a->base = v;
        else if (!for_list && !strcmp(k, "--engine"))
            a->engine = v;
        else if (!for_list && !strcmp(k, "--engine-log"))
            a->engine_log = v;
        else if (!for_list && !strcmp(k, "--engine-timeout")) {
            char *end = NULL;
            a->engine_timeout = strtod(v, &end);
            if (end == v || *end || !(a->engine_timeout > 0) || a->engine_timeout > 1e9)
                return fprintf(stderr, "logitcheck run: --engine-timeout '%s': expected a number of seconds > 0\n", v), 2;
        }
        else if (!for_list && !strcmp(k, "--oracle"))
            a->oracle = v;
        else if (!for_list && !strcmp(k, "--oracle-cache"))
            a->oracle_cache = v;
        else if (!for_list && !strcmp(k, "--model"))
            a->model = v;
        else if (!for_list && !strcmp(k, "--oracle-precision")) {
            a->oracle_prec = lc_precision_from_name(v);
            if (a->oracle_prec != LC_PREC_F32 && a->oracle_prec != LC_PREC_F64 && a->oracle_prec != LC_PREC_BF16 &&
                a->oracle_prec != LC_PREC_F16)
                return fprintf(stderr, "logitcheck run: --oracle-precision '%s': expected f64, f32, bf16 or f16\n", v), 2;
        }
        else if (!for_list && !strcmp(k, "--inject")) {
            lc_error err = {0};
            if (lc_fault_parse(&a->faults, v, &err))
                return fprintf(stderr, "logitcheck run: %s\n", err.msg), 2;
            a->n_faults++;
        } else
            return fprintf(stderr, "logitcheck: unknown option '%s'\n", k), 2;
    }
    if (!a->root)
        a->root = is_dir("cases") && is_dir("golden") ? "." : LC_SOURCE_ROOT;
    return 0;
}

static int load_catalog(const run_args *a, lc_catalog *cat)
{
    char dir[4096];
    lc_error err = {0};
    if (a->cases)
        snprintf(dir, sizeof dir, "%s", a->cases);
    else
        snprintf(dir, sizeof dir, "%s/cases", a->root);
    lc_catalog_init(cat);
    int rc = lc_catalog_load_dir(cat, dir, a->root, &err);
    /* the real-scale cases (label real) live in DIR/real: checkpoints of the published shapes */
    char real[4200];
    snprintf(real, sizeof real, "%s/real", dir);
    if (!rc && is_dir(real))
        rc = lc_catalog_load_dir(cat, real, a->root, &err);
    if (rc) {
        fprintf(stderr, "logitcheck: %s\n", err.msg);
        lc_catalog_free(cat);
        return 2;
    }
    return 0;
}

static int selected(const run_args *a, const lc_case *c)
{
    /* the default run leaves out the slow cases; the real-scale ones (minutes per case on
     * checkpoints of gigabytes: cases/real/README.md) run only when named or labelled */
    if (a->n_patterns == 0 && a->n_labels == 0)
        return !lc_case_has_label(c, "real") && (a->all || !lc_case_has_label(c, "slow"));
    return lc_case_select(c, a->patterns, a->n_patterns, a->labels, a->n_labels);
}

/* The one message of run and list for a selection that matches nothing, with the closest case
 * name to the first pattern when it looks like a typo. Returns 2. */
static int no_match(const char *cmd, const run_args *a, const lc_catalog *cat)
{
    const char *near = NULL;
    if (a->n_patterns > 0 && cat->n > 0) {
        const char **names = malloc((size_t)cat->n * sizeof *names);
        for (int i = 0; names && i < cat->n; i++)
            names[i] = cat->cases[i].name;
        near = names ? lc_cli_suggest(a->patterns[0], names, cat->n) : NULL;
        free(names);
    }
    if (near)
        fprintf(stderr, "logitcheck %s: no case matches the given names/labels (did you mean '%s'? see 'logitcheck "
                        "list')\n", cmd, near);
    else
        fprintf(stderr, "logitcheck %s: no case matches the given names/labels (see 'logitcheck list')\n", cmd);
    return 2;
}

int lc_cmd_list(int argc, char **argv)
{
    run_args a;
    lc_catalog cat;
    int rc = parse_run_args(argc, argv, &a, 1);
    if (rc)
        return rc == 1 ? 0 : rc;
    if ((rc = load_catalog(&a, &cat)))
        return rc;
    int n = 0;
    for (int i = 0; i < cat.n; i++) {
        const lc_case *c = &cat.cases[i];
        if (a.n_patterns == 0 && a.n_labels == 0 ? 0 : !selected(&a, c))
            continue;
        printf("%-40s %-16s", c->name, lc_kind_name(c->kind));
        printf(" %s", c->family == LC_FAMILY_MOE ? "moe" : c->family == LC_FAMILY_DENSE ? "dense" : "?");
        for (int l = 0; l < c->n_labels; l++)
            printf(",%s", c->labels[l]);
        printf("\n    %s\n", c->description ? c->description : "");
        n++;
    }
    if (n == 0 && (a.n_patterns || a.n_labels)) { /* as run says for the same selection */
        rc = no_match("list", &a, &cat);
        lc_catalog_free(&cat);
        return rc;
    }
    printf("%d cases\n", n);
    lc_catalog_free(&cat);
    return 0;
}

static void iso_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *report_dir(const run_args *a)
{
    return a->report ? a->report : "logitcheck-report";
}

/* The report directory, written whole (lc_report_dir_write), and --results FILE when given. */
static int write_reports(const run_args *a, const lc_run_result *res, const lc_run_result *base)
{
    lc_error err = {0};
    const char *dir = report_dir(a);
    int rc = lc_report_dir_write(res, base, dir, &err);
    if (!rc && a->results && lc_report_json_write(res, a->results, &err))
        rc = 2;
    if (rc) {
        fprintf(stderr, "logitcheck run: %s\n", err.msg);
        return 2;
    }
    printf("report: %s/report.md, %s/report.html, %s/junit.xml, %s/results.json%s%s\n", dir, dir, dir, dir,
           a->results ? ", " : "", a->results ? a->results : "");
    return 0;
}

/* Against --base: the counts on stdout; 1 when --fail-on-regression and a metric regressed. */
static int gate(const run_args *a, const lc_run_result *res, const lc_run_result *base)
{
    lc_base_counts n;
    lc_error err = {0};
    if (lc_report_base_counts(res, base, &n, &err)) {
        fprintf(stderr, "logitcheck run: %s\n", err.msg);
        return 3;
    }
    printf("against %s: %d regressed, %d improved, %d unchanged (noise band: a quarter of each bound)\n", a->base,
           n.regressed, n.improved, n.unchanged);
    if (a->fail_on_regression && n.regressed) {
        fprintf(stderr, "logitcheck run: %d checked metrics regressed against %s beyond their noise band "
                        "(--fail-on-regression; details in %s/report.md)\n", n.regressed, a->base, report_dir(a));
        return 1;
    }
    return 0;
}

int lc_cmd_run(int argc, char **argv)
{
    run_args a;
    lc_catalog cat;
    int rc = parse_run_args(argc, argv, &a, 0);
    if (rc)
        return rc == 1 ? 0 : rc;
    lc_error derr = {0};
    lc_run_result base = {0};
    if (a.fail_on_regression && !a.base)
        return fprintf(stderr, "logitcheck run: --fail-on-regression needs --base FILE.json\n"), 2;
    make_parents(report_dir(&a));
    if (lc_report_dir_check(report_dir(&a), &derr)) /* before any case runs */
        return fprintf(stderr, "logitcheck run: --report: %s\n", derr.msg), 2;
    if (a.base && lc_report_json_read(&base, a.base, &derr))
        return fprintf(stderr, "logitcheck run: --base: %s\n", derr.msg), 2;
    if ((rc = load_catalog(&a, &cat))) {
        lc_run_result_free(&base);
        return rc;
    }
    a.opts.root = a.root;
    lc_engine *engine = NULL;
    lc_error eerr = {0};
    if (a.engine && strcmp(a.engine, "ref") && a.n_faults) {
        fprintf(stderr, "logitcheck run: --inject plants bugs in the in-process engine; for a served one use "
                        "--engine 'logitcheck serve --inject FAULT'\n");
        lc_catalog_free(&cat);
        return 2;
    }
    if (a.engine && strcmp(a.engine, "ref")) /* an engine in another process (PROTOCOL.md) */
        rc = lc_engine_proc_new(&engine, a.engine, a.engine_timeout, a.engine_log, &eerr);
    else
        rc = lc_engine_from_cli(&engine, a.engine, a.n_faults ? &a.faults : NULL, &eerr);
    if (rc) {
        fprintf(stderr, "logitcheck run: %s\n", eerr.msg);
        lc_catalog_free(&cat);
        lc_run_result_free(&base);
        return rc == LC_EINPUT ? 2 : rc == LC_EENGINE ? 2 : 3;
    }

    /* differential mode: the oracle (or its cache) in the goldens' place */
    lc_oracle_setup oracle = {0};
    const int differential = a.oracle || a.oracle_prec != LC_PREC_UNKNOWN || a.oracle_cache || a.model;
    if (differential) {
        const lc_oracle_args oa = {a.oracle, a.oracle_prec, a.oracle_cache, a.model, a.engine_timeout, a.engine_log};
        if ((rc = lc_oracle_begin(&oracle, &oa, &a.opts))) {
            lc_engine_free(engine);
            lc_catalog_free(&cat);
            return rc;
        }
    }

    lc_run_result res = {0};
    snprintf(res.engine_precision, sizeof res.engine_precision, "%s", lc_eprec_name(engine->info.precision));
    snprintf(res.engine, sizeof res.engine, "%s %s", engine->info.name, engine->info.version);
    snprintf(res.engine_detail, sizeof res.engine_detail, "%s", engine->info.detail);
    if (differential) {
        size_t n = strlen(res.engine_detail);
        snprintf(res.engine_detail + n, sizeof res.engine_detail - n, "%sgraded against %s%s%s", n ? "; " : "",
                 oracle.name, a.model ? " on " : "", a.model ? a.model : "");
        printf("differential mode: graded against %s%s%s\n", oracle.name, a.model ? " on " : "",
               a.model ? a.model : "");
    }
    snprintf(res.version, sizeof res.version, "%s", LC_VERSION);
    iso_now(res.started, sizeof res.started);
    gethostname(res.host, sizeof res.host - 1);
    lc_run_meta_git(res.git, sizeof res.git, a.root);
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s%s", a.cases ? a.cases : a.root, a.cases ? "" : "/cases");
        lc_run_meta_catalog(res.catalog, dir);
    }
    if (a.base && !a.base_mismatch_ok && lc_report_base_compatible(&res, &base, a.base, &derr)) {
        fprintf(stderr, "logitcheck run: --base: %s\n", derr.msg);
        lc_engine_free(engine);
        lc_catalog_free(&cat);
        lc_run_result_free(&base);
        return 2;
    }
    double t0 = now_s();
    int matched = 0, n_selected = 0;
    const int progress = isatty(STDERR_FILENO); /* "[3/63] name" on a terminal, rewritten in place */
    for (int i = 0; i < cat.n; i++)
        n_selected += selected(&a, &cat.cases[i]);
    for (int i = 0; i < cat.n; i++) {
        const lc_case *c = &cat.cases[i];
        if (!selected(&a, c))
            continue;
        matched++;
        if (progress) {
            fprintf(stderr, "\r\033[K[%d/%d] %s", matched, n_selected, c->name);
            fflush(stderr);
        }
        lc_case_result *cr = lc_run_add_case(&res);
        if (!cr) {
            fprintf(stderr, "logitcheck run: out of memory\n");
            rc = 3;
            break;
        }
        double t = now_s();
        lc_run_case(c, &a.opts, engine, cr);
        cr->seconds = now_s() - t;
        if (progress)
            fputs("\r\033[K", stderr);
        lc_report_console_case(stdout, cr);
        fflush(stdout);
        if (cr->verdict == LC_VERDICT_ERROR) /* bad input or engine failure: also one line on stderr */
            fprintf(stderr, "logitcheck run: %s: %s\n", cr->name, cr->reason);
    }
    res.seconds = now_s() - t0;
    if (progress)
        fputs("\r\033[K", stderr);
    if (!matched)
        rc = no_match("run", &a, &cat);
    if (!rc) {
        lc_report_console_summary(stdout, &res);
        int counts[4];
        lc_run_counts(&res, counts);
        lc_run_meta_checkpoints(&res, a.root);
        rc = write_reports(&a, &res, a.base ? &base : NULL);
        if (!rc)
            rc = counts[LC_VERDICT_ERROR] ? 2 : counts[LC_VERDICT_FAIL] ? 1 : 0;
        if (a.base && (!rc || rc == 1)) {
            int g = gate(&a, &res, &base);
            rc = g > rc ? g : rc;
        }
        if (!rc && counts[LC_VERDICT_PASS] == 0) { /* skips are never a pass */
            fprintf(stderr, "logitcheck run: no case passed: all %d skipped (the engine lacks what they need)\n",
                    counts[LC_VERDICT_SKIP]);
            rc = 1;
        }
    }
    if (differential) {
        int counts[4];
        lc_run_counts(&res, counts);
        int orc = lc_oracle_end(&oracle, a.model, counts[LC_VERDICT_ERROR] > 0 || !matched);
        rc = rc ? rc : orc;
    }
    lc_run_result_free(&res);
    lc_run_result_free(&base);
    lc_engine_free(engine);
    lc_catalog_free(&cat);
    return rc;
}
