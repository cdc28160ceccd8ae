/* SPDX-License-Identifier: MIT */
/* Which engine a command drives, and differential mode's oracle (see cli.h). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "qref.h"

#ifndef LC_PEER_LOGITCHECK
#define LC_PEER_LOGITCHECK ""
#endif

int lc_engine_from_cli(lc_engine **out, const char *engine, const lc_fault_set *faults, lc_error *err)
{
    *out = NULL;
    if (!engine || !strcmp(engine, "ref"))
        return lc_engine_ref_new(out, faults, err);
    return lc_fail(err, LC_EINPUT, "--engine '%s': unknown engine (this build drives 'ref', the in-process reference "
                   "engine)", engine);
}

int lc_oracle_from_cli(lc_engine **out, const char *spec, lc_precision prec, double timeout_s, const char *log_path,
                       char *cmd_out, size_t cmd_len, lc_error *err)
{
    char cmd[4200] = "";
    int rc;
    *out = NULL;
    const lc_precision built = lc_precision_from_name(QREF_PRECISION_NAME);
    if (!spec || !strcmp(spec, "ref")) {
        if (prec == LC_PREC_UNKNOWN || prec == built) {
            rc = lc_engine_ref_new(out, NULL, err); /* never the engine under test's faults */
        } else if (prec == LC_PREC_F32 || prec == LC_PREC_F64) {
            /* the build has one reference precision: the other one is the other build's binary */
            if (!LC_PEER_LOGITCHECK[0] || access(LC_PEER_LOGITCHECK, X_OK) != 0)
                return lc_fail(err, LC_EINPUT, "--oracle-precision %s: this build's reference engine is %s and the %s "
                               "build's binary '%s' is missing (cmake --preset %s && cmake --build %s), or pass "
                               "--oracle 'PATH/logitcheck serve'", lc_precision_name(prec), QREF_PRECISION_NAME,
                               lc_precision_name(prec), LC_PEER_LOGITCHECK, lc_precision_name(prec),
                               prec == LC_PREC_F64 ? "build-f64" : "build");
            snprintf(cmd, sizeof cmd, "'%s' serve", LC_PEER_LOGITCHECK);
            rc = lc_engine_proc_new(out, cmd, timeout_s, log_path, err);
        } else {
            return lc_fail(err, LC_EINPUT, "--oracle-precision %s: the reference engine computes in f32 or f64",
                           lc_precision_name(prec));
        }
    } else {
        snprintf(cmd, sizeof cmd, "%s", spec);
        rc = lc_engine_proc_new(out, cmd, timeout_s, log_path, err);
    }
    if (rc)
        return rc;
    if (prec != LC_PREC_UNKNOWN && (*out)->info.precision != prec) {
        rc = lc_fail(err, LC_EINPUT, "--oracle-precision %s: the oracle '%s' computes in %s", lc_precision_name(prec),
                     cmd[0] ? cmd : "ref", lc_eprec_name((*out)->info.precision));
        lc_engine_free(*out);
        *out = NULL;
        return rc;
    }
    if (cmd_out)
        snprintf(cmd_out, cmd_len, "%s", cmd);
    return LC_OK;
}
