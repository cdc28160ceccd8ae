/* SPDX-License-Identifier: MIT */
/* Element conversions of the engine protocol's binary payloads (see proto_wire.h). */
#include <math.h>
#include <string.h>

#include "proto_wire.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the engine protocol's payloads are little-endian; this file assumes a little-endian host"
#endif

lc_dtype lc__dtype_from_name(const char *s)
{
    for (int d = 0; s && d < LC_DT_COUNT; d++)
        if (!strcmp(s, lc__dtype_name((lc_dtype)d)))
            return (lc_dtype)d;
    return LC_DT_NONE;
}

static double half_to_double(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24); /* subnormal (and zero) */
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(m | 0x400), e - 25);
    return sign ? -v : v;
}

double lc__wire_get_f(const unsigned char *p, lc_dtype d)
{
    switch (d) {
    case LC_DT_F64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    case LC_DT_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case LC_DT_BF16: {
        uint32_t bits = (uint32_t)(p[0] | (p[1] << 8)) << 16;
        float v;
        memcpy(&v, &bits, 4);
        return v;
    }
    case LC_DT_F16:
        return half_to_double((uint16_t)(p[0] | (p[1] << 8)));
    case LC_DT_I32:
    case LC_DT_I64:
        return (double)lc__wire_get_i(p, d);
    default:
        return NAN;
    }
}

int64_t lc__wire_get_i(const unsigned char *p, lc_dtype d)
{
    if (d == LC_DT_I32) {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    if (d == LC_DT_I64) {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    return 0;
}

void lc__wire_put_f64(unsigned char *p, double v)
{
    memcpy(p, &v, 8);
}

void lc__wire_put_f32(unsigned char *p, float v)
{
    memcpy(p, &v, 4);
}
