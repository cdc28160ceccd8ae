/* SPDX-License-Identifier: MIT */
/*
 * Input files and sizes, the engine's own copy (the engine does not link the harness):
 * checked size arithmetic, opening a regular input file without ever blocking, keeping a
 * file inside its root after symlinks are resolved, reading a whole file under a size cap,
 * and parsing JSON with the rules every JSON input of the engine follows (no duplicate keys,
 * no NUL or control bytes in strings, only whitespace after the value).
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qref_internal.h"

/* ---------------------------------------------------------------- checked sizes */

int qref__size_mul(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int qref__size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return -1;
    *out = a + b;
    return 0;
}

/* ---------------------------------------------------------------- roots */

/* The folder a checkpoint's files may resolve into: DIR itself, or, for a Hugging Face hub
 * cache snapshot (".../models--org--name/snapshots/<revision>", whose files are symlinks to
 * "../../blobs/<hash>"), the repository folder holding snapshots/ and blobs/. Resolved with
 * realpath into out (PATH_MAX bytes). */
qref_status qref__checkpoint_root(const char *dir, char *out, qref_error *err)
{
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return qref__fail(err, QREF_EIO, "%s: cannot resolve the checkpoint directory: %s", dir, strerror(errno));
    snprintf(out, PATH_MAX, "%s", real);
    char *slash = strrchr(out, '/');
    if (slash && slash > out) {
        *slash = '\0';
        const char *parent = strrchr(out, '/');
        parent = parent ? parent + 1 : out;
        if (!strcmp(parent, "snapshots")) {
            char *up = strrchr(out, '/');
            if (up && up > out) {
                *up = '\0';
                return QREF_OK;
            }
        }
    }
    snprintf(out, PATH_MAX, "%s", real);
    return QREF_OK;
}

/* 1 when the resolved PATH lies inside ROOT (a realpath). */
static int within(const char *root, const char *real)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return !strncmp(real, root, n) && (real[n] == '/' || real[n] == '\0');
}

/* ---------------------------------------------------------------- opening */

qref_status qref__open_input(const char *path, const char *root, size_t max_bytes, int *fd_out,
                             size_t *size_out, int *enoent, qref_error *err)
{
    *fd_out = -1;
    *size_out = 0;
    if (enoent)
        *enoent = 0;
    /* O_NONBLOCK: opening a FIFO without a writer must not hang; cleared once it is known to
     * be a regular file */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (enoent)
            *enoent = errno == ENOENT;
        return qref__fail(err, QREF_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return qref__fail(err, QREF_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return qref__fail(err, QREF_EIO, "%s: not a regular file (%s)", path,
                          S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                          : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "a special file");
    }
    if ((uint64_t)sb.st_size > (uint64_t)max_bytes) {
        close(fd);
        return qref__fail(err, QREF_EFORMAT, "%s: %lld bytes, more than the %zu this file may hold", path,
                          (long long)sb.st_size, max_bytes);
    }
    if (root) {
        char real[PATH_MAX];
        if (!realpath(path, real)) {
            int e = errno;
            close(fd);
            return qref__fail(err, QREF_EIO, "%s: cannot resolve: %s", path, strerror(e));
        }
        if (!within(root, real)) {
            close(fd);
            return qref__fail(err, QREF_EFORMAT, "%s: resolves to %s, outside the checkpoint directory %s", path,
                              real, root);
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    *size_out = (size_t)sb.st_size;
    return QREF_OK;
}

qref_status qref__read_file(const char *path, const char *root, size_t max_bytes, char **buf_out,
                            size_t *len_out, int *enoent, qref_error *err)
{
    *buf_out = NULL;
    *len_out = 0;
    int fd;
    size_t size;
    qref_status st = qref__open_input(path, root, max_bytes, &fd, &size, enoent, err);
    if (st != QREF_OK)
        return st;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return qref__fail(err, QREF_ENOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return qref__fail(err, QREF_EIO, "%s: %s after %zu of %zu bytes", path,
                              e ? strerror(e) : "the file shrank while being read", got, size);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *buf_out = buf;
    *len_out = size;
    return QREF_OK;
}

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

qref_status qref__json_parse(const char *path, const char *what_name, const char *text, size_t len, cJSON **out,
                             qref_error *err)
{
    *out = NULL;
    /* "malformed JSON" or "malformed header JSON" */
    char what[40] = "";
    if (what_name)
        snprintf(what, sizeof what, "%s ", what_name);
    int line, col;
    if (len == 0 || strspn(text, " \t\r\n") >= len)
        return qref__fail(err, QREF_EFORMAT, "%s: malformed %sJSON: it is empty", path, what);
    if (memchr(text, '\0', len)) {
        size_t at = (size_t)((const char *)memchr(text, '\0', len) - text);
        line_col(text, at, &line, &col);
        return qref__fail(err, QREF_EFORMAT, "%s: malformed %sJSON: NUL byte at line %d column %d", path, what,
                          line, col);
    }
    size_t bad = scan_strings(text, len);
    if (bad < len) {
        line_col(text, bad, &line, &col);
        return qref__fail(err, QREF_EFORMAT, "%s: malformed %sJSON: control character or NUL in a string at line %d column %d",
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
        return qref__fail(err, QREF_EFORMAT,
                          "%s: malformed %sJSON: parsing stopped at line %d column %d (byte %zu of %zu)", path,
                          what, line, col, stop, len);
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return qref__fail(err, QREF_EFORMAT, "%s: malformed %sJSON: expected a JSON object at the top level", path, what);
    }
    const char *dup = NULL;
    const cJSON *where = NULL;
    if (find_duplicate(doc, &dup, &where) < 0) {
        cJSON_Delete(doc);
        return qref__fail(err, QREF_ENOMEM, "%s: out of memory checking the %sJSON", path, what);
    }
    if (dup) {
        qref_status st = qref__fail(err, QREF_EFORMAT, "%s: malformed %sJSON: key '%s' appears twice in %s%s%s", path,
                                    what, dup, where == doc ? "the top-level object" : "object '",
                                    where == doc ? "" : (where->string ? where->string : "(array entry)"),
                                    where == doc ? "" : "'");
        cJSON_Delete(doc);
        return st;
    }
    *out = doc;
    return QREF_OK;
}
