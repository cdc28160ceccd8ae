/* SPDX-License-Identifier: MIT */
/*
 * Command-line conventions shared by every subcommand (cli.h), applied once in main before a
 * subcommand parses its arguments: "--opt=value" becomes "--opt" "value", "--" ends the
 * options (a later argument starting with '-' is passed as "./-x", the same path, so no
 * parser takes it for an option), and the closest name for a mistyped one.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The rewritten argument vector: kept until exit (its strings point into argv or into extra). */
static char **norm_argv;
static char *extra;

static void release(void)
{
    free(norm_argv);
    free(extra);
    norm_argv = NULL;
    extra = NULL;
}

int lc_cli_normalise(int *argc, char ***argv)
{
    const int n = *argc;
    size_t extra_len = 0;
    int after_dashes = 0;
    for (int i = 1; i < n; i++) {
        const char *a = (*argv)[i];
        if (after_dashes && a[0] == '-')
            extra_len += strlen(a) + 3;
        else if (!after_dashes && !strcmp(a, "--"))
            after_dashes = 1;
        else if (!after_dashes && a[0] == '-' && a[1] == '-' && strchr(a, '='))
            extra_len += strlen(a) + 1;
    }
    char **out = malloc(((size_t)2 * n + 1) * sizeof *out);
    char *buf = malloc(extra_len + 1);
    if (out == NULL || buf == NULL) {
        free(out);
        free(buf);
        return -1;
    }
    int w = 0;
    size_t used = 0;
    after_dashes = 0;
    out[w++] = (*argv)[0];
    for (int i = 1; i < n; i++) {
        char *a = (*argv)[i];
        if (after_dashes && a[0] == '-') {
            char *p = buf + used;
            memcpy(p, "./", 2);
            memcpy(p + 2, a, strlen(a) + 1);
            used += strlen(a) + 3;
            out[w++] = p;
        } else if (!after_dashes && !strcmp(a, "--")) {
            after_dashes = 1;
        } else if (!after_dashes && a[0] == '-' && a[1] == '-' && strchr(a, '=')) {
            char *p = buf + used;
            memcpy(p, a, strlen(a) + 1);
            used += strlen(a) + 1;
            char *eq = strchr(p, '=');
            *eq = '\0';
            out[w++] = p;
            out[w++] = eq + 1;
        } else {
            out[w++] = a;
        }
    }
    out[w] = NULL;
    release();
    norm_argv = out;
    extra = buf;
    atexit(release);
    *argc = w;
    *argv = out;
    return 0;
}

/* Levenshtein distance of a and b, capped at 99 (names are short). */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 120 || lb > 120)
        return 99;
    int row[128];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            const int up = row[j];
            const int sub = diag + (a[i - 1] != b[j - 1]);
            const int del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            diag = up;
        }
    }
    return row[lb] > 99 ? 99 : row[lb];
}

const char *lc_cli_suggest(const char *word, const char *const *names, int n)
{
    const char *best = NULL;
    int bd = 99;
    for (int i = 0; i < n; i++) {
        const int d = distance(word, names[i]);
        if (d < bd) {
            bd = d;
            best = names[i];
        }
    }
    /* close enough to be a typo: a third of the word's length, at least 2 edits */
    const int limit = (int)strlen(word) / 3 > 2 ? (int)strlen(word) / 3 : 2;
    return bd <= limit ? best : NULL;
}
