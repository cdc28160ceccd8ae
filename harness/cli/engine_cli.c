/* Which engine a command drives (see cli.h). */
#include <string.h>

#include "cli.h"

int lc_engine_from_cli(lc_engine **out, const char *engine, const lc_fault_set *faults, lc_error *err)
{
    *out = NULL;
    if (!engine || !strcmp(engine, "ref"))
        return lc_engine_ref_new(out, faults, err);
    return lc_fail(err, LC_EINPUT, "--engine '%s': unknown engine (this build drives 'ref', the in-process reference "
                   "engine)", engine);
}
