/*
 * logitcheck run | list.
 *
 *   run [CASE|GLOB ...] [--label L ...] [--root DIR] [--cases DIR] [--report DIR]
 *       [--results FILE.json] [--base FILE.json] [--engine ENGINE] [--engine-timeout S]
 *       [--engine-log FILE] [--inject FAULT ...] [--all]
 *       [--oracle ENGINE] [--oracle-precision P] [--oracle-cache FILE] [--model DIR]
 *   list [CASE|GLOB ...] [--label L ...] [--root DIR] [--cases DIR]
 */
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
    lc_fault_set faults;
    int n_faults;
    lc_run_opts opts;
} run_args;

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p: creates dir and its missing parents; 0 on success. */
static int make_dirs(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (!is_dir(buf) && mkdir(buf, 0777) != 0)
            return -1;
        *p = '/';
    }
    return is_dir(buf) || mkdir(buf, 0777) == 0 ? 0 : -1;
}

static void run_usage(FILE *to)
{
    fprintf(to,
            "usage: logitcheck run [CASE|GLOB ...] [--label L ...] [--all] [--root DIR] [--cases DIR]\n"
            "                      [--report DIR] [--results FILE.json] [--base FILE.json] [--engine ENGINE]\n"
            "                      [--engine-timeout S] [--engine-log FILE] [--inject FAULT ...]\n"
            "  With no CASE and no --label: every case not labelled 'slow' (--all: every case).\n"
            "  --report DIR   write report.md, report.html (+ plots), results.json, junit.xml (default:\n"
            "                 logitcheck-report)\n"
            "  --base FILE    a results.json of an earlier run: the reports show what moved\n"
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

static int parse_run_args(int argc, char **argv, run_args *a, int for_list)
{
    memset(a, 0, sizeof *a);
    a->oracle_prec = LC_PREC_UNKNOWN;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            run_usage(stdout);
            return 1;
        }
        if (!strcmp(k, "--all")) {
            a->all = 1;
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
    if (lc_catalog_load_dir(cat, dir, a->root, &err)) {
        fprintf(stderr, "logitcheck: %s\n", err.msg);
        lc_catalog_free(cat);
        return 2;
    }
    return 0;
}

static int selected(const run_args *a, const lc_case *c)
{
    if (a->n_patterns == 0 && a->n_labels == 0)
        return a->all || !lc_case_has_label(c, "slow");
    return lc_case_select(c, a->patterns, a->n_patterns, a->labels, a->n_labels);
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

static int write_reports(const run_args *a, const lc_run_result *res)
{
    lc_error err = {0};
    lc_run_result base = {0};
    const char *dir = a->report ? a->report : "logitcheck-report";
    char path[4200];
    int rc = 0;
    if (a->base && lc_report_json_read(&base, a->base, &err)) {
        fprintf(stderr, "logitcheck run: --base: %s\n", err.msg);
        return 2;
    }
    if (make_dirs(dir) != 0) {
        fprintf(stderr, "logitcheck run: %s: cannot create the report directory\n", dir);
        lc_run_result_free(&base);
        return 2;
    }
    snprintf(path, sizeof path, "%s/results.json", dir);
    if (lc_report_json_write(res, a->results ? a->results : path, &err))
        rc = 2;
    snprintf(path, sizeof path, "%s/report.md", dir);
    if (!rc && lc_report_md_write(res, a->base ? &base : NULL, path, &err))
        rc = 2;
    snprintf(path, sizeof path, "%s/junit.xml", dir);
    if (!rc && lc_report_junit_write(res, path, &err))
        rc = 2;
    if (!rc && lc_report_html_write(res, a->base ? &base : NULL, dir, &err))
        rc = 2;
    if (rc)
        fprintf(stderr, "logitcheck run: %s\n", err.msg);
    else
        printf("report: %s/report.md, %s/report.html, %s/junit.xml, %s%s%s\n", dir, dir, dir,
               a->results ? "" : dir, a->results ? "" : "/", a->results ? a->results : "results.json");
    lc_run_result_free(&base);
    return rc;
}

int lc_cmd_run(int argc, char **argv)
{
    run_args a;
    lc_catalog cat;
    int rc = parse_run_args(argc, argv, &a, 0);
    if (rc)
        return rc == 1 ? 0 : rc;
    if ((rc = load_catalog(&a, &cat)))
        return rc;
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
    double t0 = now_s();
    int matched = 0;
    for (int i = 0; i < cat.n; i++) {
        const lc_case *c = &cat.cases[i];
        if (!selected(&a, c))
            continue;
        matched++;
        lc_case_result *cr = lc_run_add_case(&res);
        if (!cr) {
            fprintf(stderr, "logitcheck run: out of memory\n");
            rc = 3;
            break;
        }
        double t = now_s();
        lc_run_case(c, &a.opts, engine, cr);
        cr->seconds = now_s() - t;
        lc_report_console_case(stdout, cr);
        fflush(stdout);
        if (cr->verdict == LC_VERDICT_ERROR) /* bad input or engine failure: also one line on stderr */
            fprintf(stderr, "logitcheck run: %s: %s\n", cr->name, cr->reason);
    }
    res.seconds = now_s() - t0;
    if (!matched) {
        fprintf(stderr, "logitcheck run: no case matches the given names/labels (see 'logitcheck list')\n");
        rc = 2;
    }
    if (!rc) {
        lc_report_console_summary(stdout, &res);
        int counts[4];
        lc_run_counts(&res, counts);
        rc = write_reports(&a, &res);
        if (!rc)
            rc = counts[LC_VERDICT_ERROR] ? 2 : counts[LC_VERDICT_FAIL] ? 1 : 0;
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
    lc_engine_free(engine);
    lc_catalog_free(&cat);
    return rc;
}
