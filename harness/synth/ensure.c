/* SPDX-License-Identifier: MIT */
/* A case's checkpoint_synth: write the checkpoint when missing, then verify its hash (see
 * synth.h, lc_synth_ensure). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "synth.h"

/* Creates the parent directory of path when it is missing (one level). */
static int make_parent(const char *path, lc_error *err)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent)
        return 0;
    *slash = '\0';
    struct stat st;
    if (stat(parent, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : lc_fail(err, LC_EINPUT, "%s: not a directory", parent);
    if (mkdir(parent, 0777) != 0 && errno != EEXIST)
        return lc_fail(err, LC_EINPUT, "%s: cannot create the directory: %s", parent, strerror(errno));
    return 0;
}

int lc_synth_ensure(const char *dir, const lc_synth_opts *o, const char *sha256, int *written, lc_error *err)
{
    char hex[65];
    struct stat st;
    int rc;
    *written = 0;
    if (stat(dir, &st) != 0) {
        if ((rc = make_parent(dir, err)) != 0)
            return rc;
        if ((rc = lc_synth_write_checkpoint(dir, o, NULL, hex, err)) != 0)
            return rc;
        *written = 1;
    } else if ((rc = lc_synth_dir_hash(dir, hex, err)) != 0) {
        return rc;
    }
    if (strcmp(hex, sha256))
        return lc_fail(err, LC_EINPUT,
                       "%s: checkpoint hash %s, the case expects %s (%s; remove it and write it with "
                       "'logitcheck synth --preset %s --seed %" PRIu64 " --out %s')",
                       dir, hex, sha256, *written ? "as just written: another synth version" : "a stale or altered copy",
                       lc_synth_preset_name(o->preset), o->seed, dir);
    return 0;
}
