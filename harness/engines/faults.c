/* SPDX-License-Identifier: MIT */
/* The fault table's names, help, parser and usage text (see faults.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

enum { ARG_NONE = 0, ARG_VALUE = 1 };

static const struct {
    const char *name;
    int arg;
    const char *help;
} faults[] = {
#define LC__FAULT_ROW(id, name, arg, where, help) {name, ARG_##arg, help},
    LC_FAULT_MAP(LC__FAULT_ROW)
#undef LC__FAULT_ROW
};

const char *lc_fault_name(lc_fault f)
{
    return f >= 0 && f < LC_FAULT_COUNT ? faults[f].name : "unknown";
}

const char *lc_fault_help(lc_fault f)
{
    return f >= 0 && f < LC_FAULT_COUNT ? faults[f].help : "";
}

int lc_fault_takes_value(lc_fault f)
{
    return f >= 0 && f < LC_FAULT_COUNT && faults[f].arg == ARG_VALUE;
}

int lc_fault_parse(lc_fault_set *s, const char *spec, lc_error *err)
{
    const char *eq = strchr(spec, '=');
    size_t len = eq ? (size_t)(eq - spec) : strlen(spec);
    for (int f = 0; f < LC_FAULT_COUNT; f++) {
        if (strlen(faults[f].name) != len || strncmp(spec, faults[f].name, len))
            continue;
        if (faults[f].arg == ARG_NONE) {
            if (eq)
                return lc_fail(err, LC_EINPUT, "fault '%s': %s takes no value", spec, faults[f].name);
            s->on[f] = 1;
            return LC_OK;
        }
        if (!eq || !eq[1])
            return lc_fail(err, LC_EINPUT, "fault '%s': expected %s=X with a number X > 0", spec, faults[f].name);
        char *end;
        errno = 0;
        double v = strtod(eq + 1, &end);
        if (*end || errno || !isfinite(v) || v <= 0)
            return lc_fail(err, LC_EINPUT, "fault '%s': expected %s=X with a number X > 0", spec, faults[f].name);
        s->on[f] = 1;
        s->value[f] = v;
        return LC_OK;
    }
    return lc_fail(err, LC_EINPUT, "unknown fault '%s' (see --help)", spec);
}

void lc_fault_usage(FILE *to, const char *indent)
{
    for (int f = 0; f < LC_FAULT_COUNT; f++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s", faults[f].name, faults[f].arg == ARG_VALUE ? "=X" : "");
        fprintf(to, "%s%-22s %s\n", indent, name, faults[f].help);
    }
}
