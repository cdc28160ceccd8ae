/* SPDX-License-Identifier: MIT */
/*
 * Harness error reporting: a status code and a one-line message that names the file, the
 * dataset or case, and what was expected and found. Only the CLI turns codes into exit codes.
 */
#ifndef LC_ERROR_H
#define LC_ERROR_H

#include <stdarg.h>

enum {
    LC_OK = 0,
    LC_EINPUT = 2,    /* bad usage or bad input: exit code 2 */
    LC_EINTERNAL = 3, /* internal error: exit code 3 */
};

typedef struct {
    int code;
    char msg[1536];
} lc_error;

/* Fills err (when not NULL) with code and a printf-style one-line message; returns code. */
int lc_fail(lc_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int lc_vfail(lc_error *err, int code, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

#endif /* LC_ERROR_H */
