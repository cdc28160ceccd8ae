/* SPDX-License-Identifier: MIT */
/*
 * logitcheck bisect GOOD BAD CASE|GLOB ... [--precision f64|f32] [--repo DIR] [--work DIR]
 *
 * Finds the first commit between GOOD and BAD at which the cases fail, with `git bisect run`
 * in a worktree of its own and a build directory of its own per precision (f64 by default:
 * its bound separates an algorithmic change from rounding), both under the work directory
 * (default: <git dir>/logitcheck-bisect/<precision>). A commit that does not configure or
 * build is skipped (exit 125 to git). The user's checkout, build and report directories are
 * never touched. Prints the first bad commit and that commit's first diverging stage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "reports.h"

#ifndef LC_SOURCE_ROOT
#define LC_SOURCE_ROOT "."
#endif

#define CMD_CAP 16384

static void usage(FILE *to)
{
    fprintf(to, "usage: logitcheck bisect GOOD BAD CASE|GLOB ... [--precision f64|f32] [--repo DIR] [--work DIR]\n"
                "  Runs git bisect between GOOD and BAD on the given cases, in its own worktree and build\n"
                "  directory (--work, default <git dir>/logitcheck-bisect/<precision>); commits that do not\n"
                "  build are skipped. Prints the first bad commit and its first diverging stage.\n"
                "  --precision P  the engine build to bisect with (default f64: bound 1e-9 against transformers)\n"
                "  --repo DIR     the git repository (default: the source tree of this build)\n"
                "Exit codes: 0 found, 1 no commit could be judged, 2 bad usage or input, 3 internal.\n");
}

/* Appends s to buf single-quoted for /bin/sh. */
static void sh_quote(char *buf, size_t n, const char *s)
{
    size_t len = strlen(buf);
    if (len + 2 < n)
        buf[len++] = '\'';
    for (; *s && len + 5 < n; s++) {
        if (*s == '\'') {
            memcpy(buf + len, "'\\''", 4);
            len += 4;
        } else {
            buf[len++] = *s;
        }
    }
    if (len + 1 < n)
        buf[len++] = '\'';
    buf[len] = '\0';
}

/* Runs cmd through /bin/sh with its output into out (n bytes, NUL-terminated); returns the
 * exit status, -1 when it could not run. */
static int capture(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t len = 0;
    out[0] = '\0';
    for (int c; (c = fgetc(p)) != EOF;)
        if (len + 1 < n)
            out[len++] = (char)c;
    out[len] = '\0';
    const int st = pclose(p);
    return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int lc_cmd_bisect(int argc, char **argv)
{
    const char *good = NULL, *bad = NULL, *prec = "f64", *repo = NULL, *work = NULL;
    const char *cases[64];
    int n_cases = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help"))
            return usage(stdout), 0;
        if (!strcmp(k, "--precision") || !strcmp(k, "--repo") || !strcmp(k, "--work")) {
            if (i + 1 >= argc)
                return fprintf(stderr, "logitcheck bisect: %s needs a value\n", k), 2;
            const char *v = argv[++i];
            if (!strcmp(k, "--precision"))
                prec = v;
            else if (!strcmp(k, "--repo"))
                repo = v;
            else
                work = v;
        } else if (k[0] == '-') {
            return fprintf(stderr, "logitcheck bisect: unknown option '%s'\n", k), 2;
        } else if (!good) {
            good = k;
        } else if (!bad) {
            bad = k;
        } else if (n_cases < 64) {
            cases[n_cases++] = k;
        } else {
            return fprintf(stderr, "logitcheck bisect: too many cases\n"), 2;
        }
    }
    if (!good || !bad || n_cases == 0)
        return usage(stderr), 2;
    if (strcmp(prec, "f64") && strcmp(prec, "f32"))
        return fprintf(stderr, "logitcheck bisect: --precision '%s': expected f64 or f32\n", prec), 2;
    if (!repo)
        repo = LC_SOURCE_ROOT;

    static char cmd[CMD_CAP], out[CMD_CAP], dir[4096], script[4200];
    /* the repository's git directory, and the default work directory under it */
    cmd[0] = '\0';
    snprintf(cmd, sizeof cmd, "git -C ");
    sh_quote(cmd, sizeof cmd, repo);
    strncat(cmd, " rev-parse --path-format=absolute --git-common-dir 2>/dev/null", sizeof cmd - strlen(cmd) - 1);
    if (capture(cmd, out, sizeof out) != 0 || !out[0])
        return fprintf(stderr, "logitcheck bisect: %s: not a git repository\n", repo), 2;
    out[strcspn(out, "\n")] = '\0';
    if (work)
        snprintf(dir, sizeof dir, "%s", work);
    else
        snprintf(dir, sizeof dir, "%.3900s/logitcheck-bisect/%s", out, prec);
    static char shas[2][64];
    for (int g = 0; g < 2; g++) { /* both commits must exist: resolved here, before the worktree moves */
        snprintf(cmd, sizeof cmd, "git -C ");
        sh_quote(cmd, sizeof cmd, repo);
        strncat(cmd, " rev-parse --verify --quiet ", sizeof cmd - strlen(cmd) - 1);
        sh_quote(cmd, sizeof cmd, g ? bad : good);
        strncat(cmd, "^{commit}", sizeof cmd - strlen(cmd) - 1);
        if (capture(cmd, out, sizeof out) != 0 || strlen(out) < 40)
            return fprintf(stderr, "logitcheck bisect: %s: no such commit in %s\n", g ? bad : good, repo), 2;
        snprintf(shas[g], sizeof shas[g], "%.40s", out);
    }
    good = shas[0];
    bad = shas[1];
    /* the worktree (made once, reused) and the step script git bisect runs */
    snprintf(cmd, sizeof cmd, "mkdir -p ");
    sh_quote(cmd, sizeof cmd, dir);
    strncat(cmd, " && { test -e ", sizeof cmd - strlen(cmd) - 1);
    sh_quote(cmd, sizeof cmd, dir);
    strncat(cmd, "/src || git -C ", sizeof cmd - strlen(cmd) - 1);
    sh_quote(cmd, sizeof cmd, repo);
    strncat(cmd, " worktree add --detach ", sizeof cmd - strlen(cmd) - 1);
    sh_quote(cmd, sizeof cmd, dir);
    strncat(cmd, "/src ", sizeof cmd - strlen(cmd) - 1);
    sh_quote(cmd, sizeof cmd, bad);
    strncat(cmd, "; } 2>&1", sizeof cmd - strlen(cmd) - 1);
    if (capture(cmd, out, sizeof out) != 0)
        return fprintf(stderr, "logitcheck bisect: %s/src: cannot make the worktree: %s\n", dir, out), 2;
    snprintf(script, sizeof script, "%s/step.sh", dir);
    FILE *f = fopen(script, "w");
    if (f == NULL)
        return fprintf(stderr, "logitcheck bisect: %s: cannot write\n", script), 2;
    char q[4400] = "";
    sh_quote(q, sizeof q, dir);
    fprintf(f, "#!/bin/sh\n# one bisect step: build (or skip with 125), run the cases (0 good, 1 bad, else skip)\n"
               "d=%s\n"
               "cmake -S \"$d/src\" -B \"$d/build\" -DQREF_PRECISION=%s -DCMAKE_BUILD_TYPE=RelWithDebInfo "
               "-DBUILD_TESTING=OFF >\"$d/build.log\" 2>&1 && cmake --build \"$d/build\" -j2 --target logitcheck "
               ">>\"$d/build.log\" 2>&1 || exit 125\n"
               "rm -rf \"$d/report\"\n"
               "\"$d/build/logitcheck\" run --root \"$d/src\" --report \"$d/report\"",
            q, prec);
    for (int i = 0; i < n_cases; i++) {
        char c[600] = "";
        sh_quote(c, sizeof c, cases[i]);
        fprintf(f, " %s", c);
    }
    fputs(" >\"$d/run.log\" 2>&1\nrc=$?\ncase $rc in 0) exit 0 ;; 1) exit 1 ;; *) exit 125 ;; esac\n", f);
    if (fclose(f) != 0 || chmod(script, 0755) != 0)
        return fprintf(stderr, "logitcheck bisect: %s: cannot write\n", script), 2;

    /* git bisect in the worktree */
    char src[4400] = "";
    sh_quote(src, sizeof src, dir);
    char sq[4400] = "";
    sh_quote(sq, sizeof sq, script);
    char gq[300] = "", bq[300] = "";
    sh_quote(gq, sizeof gq, good);
    sh_quote(bq, sizeof bq, bad);
    snprintf(cmd, sizeof cmd,
             "cd %s/src && git bisect reset >/dev/null 2>&1; git bisect start %s %s >/dev/null 2>&1 && "
             "git bisect run %s 2>&1; git bisect log 2>/dev/null | tail -1",
             src, bq, gq, sq);
    fprintf(stderr, "logitcheck bisect: %s..%s in %s/src (%s build)\n", good, bad, dir, prec);
    capture(cmd, out, sizeof out);
    const char *hit = strstr(out, " is the first bad commit");
    char first[64] = "";
    if (hit) {
        const char *s = hit;
        while (s > out && s[-1] != '\n')
            s--;
        snprintf(first, sizeof first, "%.*s", (int)(hit - s) < 63 ? (int)(hit - s) : 63, s);
    }
    /* the first bad commit's own run, for its first diverging stage */
    int rc = 0;
    if (first[0]) {
        snprintf(cmd, sizeof cmd, "cd %s/src && git checkout -q --detach %s 2>&1 && %s >/dev/null 2>&1; "
                                  "git log -1 --format=%%s %s",
                 src, first, sq, first);
        char subject[1024];
        capture(cmd, subject, sizeof subject);
        subject[strcspn(subject, "\n")] = '\0';
        char rpath[4400];
        snprintf(rpath, sizeof rpath, "%s/report/results.json", dir);
        lc_run_result r = {0};
        lc_error err = {0};
        char stage[512];
        if (lc_report_json_read(&r, rpath, &err) == 0)
            lc_report_first_stage(&r, stage, sizeof stage);
        else
            snprintf(stage, sizeof stage, "unknown (%.400s)", err.msg);
        lc_run_result_free(&r);
        printf("first bad commit: %s %s\nfirst diverging stage: %s\n", first, subject, stage);
    } else {
        fprintf(stderr, "logitcheck bisect: git bisect found no first bad commit (every commit skipped, or GOOD "
                        "fails too); see %s/build.log and %s/run.log\n", dir, dir);
        rc = 1;
    }
    snprintf(cmd, sizeof cmd, "cd %s/src && git bisect reset >/dev/null 2>&1", src);
    capture(cmd, out, sizeof out);
    return rc;
}
