/* SPDX-License-Identifier: MIT */
/*
 * Shared by the libFuzzer targets: the fuzz input placed where the reader under test expects a
 * file. Targets are built with clang -fsanitize=fuzzer,address,undefined (the `fuzz` preset),
 * and, in every other build, with fuzz_main.c as a plain program that replays the committed
 * seeds and crash regressions (tests/fuzz/CMakeLists.txt).
 */
#ifndef LC_FUZZ_UTIL_H
#define LC_FUZZ_UTIL_H

#define _GNU_SOURCE 1

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include <dirent.h>

static char fuzz_dir_path[512];

/* Removes the directory and what the targets left in it (at exit). */
static inline void fuzz_dir_cleanup(void)
{
    DIR *d = opendir(fuzz_dir_path);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char p[1100];
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(fuzz_dir_path);
}

/* A private directory for this process (created once, under $TMPDIR or /tmp; removed at exit). */
static inline const char *fuzz_dir(void)
{
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof fuzz_dir_path, "%s/lc-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_dir_cleanup);
    }
    return dir;
}

/* Writes len bytes to DIR/name (replacing it) and returns the path (static buffer per slot). */
static inline const char *fuzz_put(const char *name, const void *data, size_t len)
{
    static char paths[4][600];
    static int slot;
    char *p = paths[slot++ & 3];
    snprintf(p, 600, "%s/%s", fuzz_dir(), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(p);
        abort();
    }
    const uint8_t *b = data;
    while (len) {
        ssize_t w = write(fd, b, len);
        if (w <= 0) {
            perror(p);
            abort();
        }
        b += w;
        len -= (size_t)w;
    }
    close(fd);
    return p;
}

static inline void fuzz_remove(const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), name);
    unlink(p);
}

#endif /* LC_FUZZ_UTIL_H */
