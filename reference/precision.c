/* SPDX-License-Identifier: MIT */
/* The engine's precision at run time (qref.h), for programs linking an installed library. */
#include "qref.h"

const char *qref_precision(void)
{
    return QREF_PRECISION_NAME;
}

size_t qref_real_size(void)
{
    return sizeof(qref_real);
}
