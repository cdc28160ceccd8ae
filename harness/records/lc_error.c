/* SPDX-License-Identifier: MIT */
/* The harness's one error-filling helper (see lc_error.h). */
#include <stdio.h>

#include "lc_error.h"

int lc_vfail(lc_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int lc_fail(lc_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lc_vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}
