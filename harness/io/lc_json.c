/* SPDX-License-Identifier: MIT */
/* The harness's JSON rules (see lc_json.h); the engine keeps its own copy in reference/io.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lc_json.h"

/* ---------------------------------------------------------------- JSON */

/* Line and column (1-based) of byte `at` of text. */
static void line_col(const char *text, size_t at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

/* Refuses raw bytes below 0x20 (JSON has escapes for them) and the escape \u0000 (cJSON would
 * silently cut the string there) inside strings. Returns the offending byte offset, or len
 * when the strings are clean. */
static size_t scan_strings(const char *t, size_t len)
{
    int in = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!in) {
            if (c == '"')
                in = 1;
            continue;
        }
        if (c == '"') {
            in = 0;
        } else if (c < 0x20) {
            return i;
        } else if (c == '\\' && i + 1 < len) {
            /* \u0000 would end the string early once decoded */
            if (t[i + 1] == 'u' && i + 5 < len && !strncmp(t + i + 2, "0000", 4))
                return i;
            i++;
        }
    }
    return len;
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First key appearing twice in one object anywhere in the tree (sorted per object: n log n),
 * or NULL; *where receives the object holding it (NULL at the top). -1 out of memory. */
static int find_duplicate(const cJSON *v, const char **dup, const cJSON **where)
{
    int n = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        n++;
    if (cJSON_IsObject(v) && n > 1) {
        const char **keys = malloc((size_t)n * sizeof *keys);
        if (!keys)
            return -1;
        int k = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            keys[k++] = c->string ? c->string : "";
        qsort(keys, (size_t)n, sizeof *keys, cmp_keys);
        for (int i = 1; i < n && !*dup; i++)
            if (!strcmp(keys[i - 1], keys[i])) {
                *dup = keys[i];
                *where = v;
            }
        free(keys);
        if (*dup)
            return 0;
    }
    for (const cJSON *c = v->child; c && !*dup; c = c->next)
        if (find_duplicate(c, dup, where) < 0)
            return -1;
    return 0;
}

int lc_json_parse(const char *path, const char *text, size_t len, cJSON **out, lc_error *err)
{
    *out = NULL;
    const char *what = "";
    int line, col;
    if (len == 0 || strspn(text, " \t\r\n") >= len)
        return lc_fail(err, LC_EINPUT, "%s: malformed %sJSON: it is empty", path, what);
    if (memchr(text, '\0', len)) {
        size_t at = (size_t)((const char *)memchr(text, '\0', len) - text);
        line_col(text, at, &line, &col);
        return lc_fail(err, LC_EINPUT, "%s: malformed %sJSON: NUL byte at line %d column %d", path, what,
                          line, col);
    }
    size_t bad = scan_strings(text, len);
    if (bad < len) {
        line_col(text, bad, &line, &col);
        return lc_fail(err, LC_EINPUT, "%s: malformed %sJSON: control character or NUL in a string at line %d column %d",
                          path, what, line, col);
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t stop = (end && end >= text && end <= text + len) ? (size_t)(end - text) : len;
    if (doc)
        while (stop < len && strchr(" \t\r\n", text[stop]))
            stop++;
    if (!doc || stop < len) {
        cJSON_Delete(doc);
        line_col(text, stop, &line, &col);
        return lc_fail(err, LC_EINPUT,
                          "%s: malformed %sJSON: parsing stopped at line %d column %d (byte %zu of %zu)", path,
                          what, line, col, stop, len);
    }
    const char *dup = NULL;
    const cJSON *where = NULL;
    if (find_duplicate(doc, &dup, &where) < 0) {
        cJSON_Delete(doc);
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory checking the %sJSON", path, what);
    }
    if (dup) {
        int st = lc_fail(err, LC_EINPUT, "%s: malformed %sJSON: key '%s' appears twice in %s%s%s", path,
                                    what, dup, where == doc ? "the top-level object" : "object '",
                                    where == doc ? "" : (where->string ? where->string : "(array entry)"),
                                    where == doc ? "" : "'");
        cJSON_Delete(doc);
        return st;
    }
    *out = doc;
    return LC_OK;
}
