/* SPDX-License-Identifier: MIT */
/*
 * results_diff: are two results.json files equal, bit for bit, except where they may differ?
 *
 *   results_diff A.json B.json [--ignore KEY ...]
 *
 * Walks both JSON trees together. Objects must have the same keys in the same order (KEY
 * anywhere in the tree is skipped on both sides: timings, host, the engine's name and
 * detail), arrays the same length, strings the same bytes, numbers the same double bit for
 * bit (report_json writes the shortest text that reads back as the same double, so equal
 * text is equal bits). Prints the first difference as a JSON path with both values and exits
 * 1; exits 0 when equal; 2 on bad usage or an unreadable file.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_IGNORE 32

static const char *ignore[MAX_IGNORE];
static int n_ignore;

static int ignored(const char *key)
{
    for (int i = 0; i < n_ignore; i++)
        if (key && !strcmp(key, ignore[i]))
            return 1;
    return 0;
}

static void show(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "%.17g", v->valuedouble);
        return;
    }
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, n, "%.120s%s", s ? s : "(absent)", s && strlen(s) > 120 ? "..." : "");
    free(s);
}

static int differ(const char *path, const cJSON *a, const cJSON *b)
{
    char va[160], vb[160];
    show(a, va, sizeof va);
    show(b, vb, sizeof vb);
    printf("differs at %s: %s vs %s\n", path[0] ? path : "(root)", va, vb);
    return 1;
}

/* Object members that are not ignored, in order. */
static const cJSON *next_member(const cJSON *m)
{
    while (m && ignored(m->string))
        m = m->next;
    return m;
}

static int walk(const char *path, const cJSON *a, const cJSON *b)
{
    char sub[2048];
    if ((a->type & 0xff) != (b->type & 0xff))
        return differ(path, a, b);
    if (cJSON_IsObject(a)) {
        const cJSON *x = next_member(a->child), *y = next_member(b->child);
        for (; x || y; x = next_member(x->next), y = next_member(y->next)) {
            if (!x || !y || strcmp(x->string, y->string)) {
                snprintf(sub, sizeof sub, "%s.%s", path, x ? x->string : y->string);
                return differ(sub, x, y);
            }
            snprintf(sub, sizeof sub, "%s.%s", path, x->string);
            if (walk(sub, x, y))
                return 1;
        }
        return 0;
    }
    if (cJSON_IsArray(a)) {
        int na = cJSON_GetArraySize(a), nb = cJSON_GetArraySize(b);
        const cJSON *x = a->child, *y = b->child;
        for (int i = 0; x && y; i++, x = x->next, y = y->next) {
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            if (walk(sub, x, y))
                return 1;
        }
        if (na != nb) {
            snprintf(sub, sizeof sub, "%s (length %d vs %d)", path, na, nb);
            return differ(sub, NULL, NULL);
        }
        return 0;
    }
    if (cJSON_IsNumber(a))
        return memcmp(&a->valuedouble, &b->valuedouble, sizeof(double)) ? differ(path, a, b) : 0;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) ? differ(path, a, b) : 0;
    return 0; /* true, false, null: the type said it all */
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "results_diff: %s: cannot open\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)n) {
        free(buf);
        fprintf(stderr, "results_diff: %s: cannot read\n", path);
        return NULL;
    }
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j)
        fprintf(stderr, "results_diff: %s: malformed JSON\n", path);
    return j;
}

int main(int argc, char **argv)
{
    const char *files[2];
    int nf = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ignore") && i + 1 < argc && n_ignore < MAX_IGNORE)
            ignore[n_ignore++] = argv[++i];
        else if (argv[i][0] != '-' && nf < 2)
            files[nf++] = argv[i];
        else {
            fprintf(stderr, "usage: results_diff A.json B.json [--ignore KEY ...]\n");
            return 2;
        }
    }
    if (nf != 2) {
        fprintf(stderr, "usage: results_diff A.json B.json [--ignore KEY ...]\n");
        return 2;
    }
    cJSON *a = read_json(files[0]), *b = a ? read_json(files[1]) : NULL;
    int rc = 2;
    if (a && b) {
        rc = walk("", a, b);
        if (!rc)
            printf("equal: %s and %s (ignoring %d key%s)\n", files[0], files[1], n_ignore, n_ignore == 1 ? "" : "s");
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    return rc;
}
