/* SPDX-License-Identifier: MIT */
/* Status names and the error-filling helper shared by every engine module. */
#include <stdio.h>

#include "qref_internal.h"

static const char *const status_names[] = {
#define QREF__STATUS_NAME(name, text) #name,
    QREF_STATUS_MAP(QREF__STATUS_NAME)
#undef QREF__STATUS_NAME
};

static const char *const status_texts[] = {
#define QREF__STATUS_TEXT(name, text) text,
    QREF_STATUS_MAP(QREF__STATUS_TEXT)
#undef QREF__STATUS_TEXT
};

const char *qref_status_name(qref_status s)
{
    if ((int)s < 0 || s >= QREF_STATUS_COUNT)
        return "EUNKNOWN_STATUS";
    return status_names[s];
}

const char *qref_status_text(qref_status s)
{
    if ((int)s < 0 || s >= QREF_STATUS_COUNT)
        return "unknown status";
    return status_texts[s];
}

qref_status qref__fail(qref_error *err, qref_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
