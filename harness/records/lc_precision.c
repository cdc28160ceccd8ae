/* SPDX-License-Identifier: MIT */
/* Names of the compute precisions (see lc_precision.h). */
#include <string.h>

#include "lc_precision.h"

static const char *const names[] = {
#define LC__PREC_NAME(id, name) name,
    LC_PRECISION_MAP(LC__PREC_NAME)
#undef LC__PREC_NAME
};

const char *lc_precision_name(lc_precision p)
{
    return p >= 0 && p < LC_PREC_COUNT ? names[p] : "unknown";
}

lc_precision lc_precision_from_name(const char *s)
{
    for (int p = 0; s && p < LC_PREC_COUNT; p++)
        if (!strcmp(s, names[p]))
            return (lc_precision)p;
    return LC_PREC_UNKNOWN;
}
