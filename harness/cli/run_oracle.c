/* SPDX-License-Identifier: MIT */
/*
 * `run` in differential mode (see cli.h, lc_oracle_begin): the oracle engine, or its cache
 * read back, and the cache written at the end as a golden in today's layout.
 *
 * The cache is a logitcheck-golden file (format_version 1): per case a group /cases/<name>
 * with the datasets the case's kind reads from a transformers golden, produced by the oracle;
 * root attributes naming the oracle (engine name and version, precision, detail, command), the
 * generator, the creation time and the checkpoint (directory and checkpoint hash with --model).
 * It is written atomically (h5io: temporary file, fsync, rename) and only when no case ended in
 * error, so a cache never lacks the case a later run asks for because the oracle failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "synth.h"

#ifndef LC_VERSION
#define LC_VERSION "0"
#endif

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Reads the cache's provenance and checks it against the checkpoint; 0, or 2 after one line. */
static int read_cache(lc_oracle_setup *s, const char *path, const char *model)
{
    lc_h5 f;
    lc_error err = {0};
    char *oracle = NULL, *prec = NULL, *hash = NULL;
    int rc = 0;
    if (lc_h5_open(&f, path, &err)) {
        fprintf(stderr, "logitcheck run: --oracle-cache: %s\n", err.msg);
        return 2;
    }
    if (f.format != LC_H5_GOLDEN || !lc_h5_attr_exists(&f, "/", "oracle") ||
        lc_h5_read_attr_str(&f, "/", "oracle", &oracle, &err) ||
        lc_h5_read_attr_str(&f, "/", "oracle_precision", &prec, &err)) {
        fprintf(stderr, "logitcheck run: --oracle-cache %s: not an oracle cache (a logitcheck-golden file with "
                        "'oracle' and 'oracle_precision' attributes)\n", path);
        rc = 2;
    }
    if (!rc && (s->prec = lc_precision_from_name(prec)) == LC_PREC_UNKNOWN) {
        fprintf(stderr, "logitcheck run: --oracle-cache %s: oracle_precision '%s' is not a precision\n", path, prec);
        rc = 2;
    }
    const int has_hash = !rc && lc_h5_attr_exists(&f, "/", "checkpoint_sha256");
    if (!rc && has_hash && lc_h5_read_attr_str(&f, "/", "checkpoint_sha256", &hash, &err)) {
        fprintf(stderr, "logitcheck run: --oracle-cache: %s\n", err.msg);
        rc = 2;
    }
    if (!rc && has_hash != (model != NULL)) {
        fprintf(stderr, "logitcheck run: --oracle-cache %s: written %s --model; run it the same way\n", path,
                has_hash ? "with" : "without");
        rc = 2;
    }
    if (!rc && model) {
        char hex[65];
        if (lc_synth_dir_hash(model, hex, &err)) {
            fprintf(stderr, "logitcheck run: --model: %s\n", err.msg);
            rc = 2;
        } else if (strcmp(hex, hash)) {
            fprintf(stderr, "logitcheck run: --oracle-cache %s: written for checkpoint sha256 %s, --model %s is %s\n",
                    path, hash, model, hex);
            rc = 2;
        }
    }
    if (!rc)
        snprintf(s->name, sizeof s->name, "%s (cache %s)", oracle, path);
    free(oracle);
    free(prec);
    free(hash);
    lc_h5_close(&f);
    return rc;
}

int lc_oracle_begin(lc_oracle_setup *s, const lc_oracle_args *a, lc_run_opts *opts)
{
    lc_error err = {0};
    memset(s, 0, sizeof *s);
    s->prec = LC_PREC_UNKNOWN;
    if (a->model) {
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/config.json", a->model);
        if (!is_file(cfg)) {
            fprintf(stderr, "logitcheck run: --model %s: no config.json there (a Hugging Face checkpoint directory)\n",
                    a->model);
            return 2;
        }
    }
    if (a->cache && is_file(a->cache)) { /* graded from the cache: no oracle runs */
        if (a->oracle || a->prec != LC_PREC_UNKNOWN)
            fprintf(stderr, "logitcheck run: --oracle-cache %s exists: the oracle's outputs are read from it "
                            "(--oracle and --oracle-precision are not used)\n", a->cache);
        int rc = read_cache(s, a->cache, a->model);
        if (rc)
            return rc;
        opts->golden_file = a->cache;
    } else {
        int rc = lc_oracle_from_cli(&s->oracle, a->oracle, a->prec, a->timeout_s, a->log_path, s->cmd, sizeof s->cmd,
                                    &err);
        if (rc) {
            fprintf(stderr, "logitcheck run: --oracle: %s\n", err.msg);
            return rc == LC_EINPUT || rc == LC_EENGINE ? 2 : 3;
        }
        s->prec = s->oracle->info.precision;
        snprintf(s->name, sizeof s->name, "oracle %s %s %s", s->oracle->info.name, s->oracle->info.version,
                 lc_eprec_name(s->prec));
        if (a->cache) {
            if (lc_h5_create(&s->cache, a->cache, &err)) {
                fprintf(stderr, "logitcheck run: --oracle-cache: %s\n", err.msg);
                lc_engine_free(s->oracle);
                s->oracle = NULL;
                return 3;
            }
            s->writing = 1;
            opts->cache_out = &s->cache;
        }
        opts->oracle = s->oracle;
    }
    opts->oracle_prec = s->prec;
    opts->oracle_name = s->name;
    opts->model = a->model;
    return 0;
}

/* Root attributes: the format, and the provenance naming the oracle and the checkpoint. */
static int provenance(lc_oracle_setup *s, const char *model, lc_error *err)
{
    lc_h5 *f = &s->cache;
    char when[32], gen[300], dtype[16];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(gen, sizeof gen, "logitcheck %s run, differential mode: the oracle engine's outputs", LC_VERSION);
    snprintf(dtype, sizeof dtype, "%s", s->prec == LC_PREC_F64 ? "float64" : s->prec == LC_PREC_F32 ? "float32"
                                        : s->prec == LC_PREC_BF16 ? "bfloat16" : "float16");
    const lc_engine_info *i = &s->oracle->info;
    char oracle[200];
    snprintf(oracle, sizeof oracle, "%s %s", i->name, i->version);
    if (lc_h5_write_attr_str(f, "/", "format", "logitcheck-golden", err) ||
        lc_h5_write_attr_i64(f, "/", "format_version", 1, err) ||
        lc_h5_write_attr_str(f, "/", "generator", gen, err) || lc_h5_write_attr_str(f, "/", "created", when, err) ||
        lc_h5_write_attr_str(f, "/", "oracle", oracle, err) ||
        lc_h5_write_attr_str(f, "/", "oracle_precision", lc_eprec_name(s->prec), err) ||
        lc_h5_write_attr_str(f, "/", "oracle_detail", i->detail, err) ||
        lc_h5_write_attr_str(f, "/", "oracle_command", s->cmd[0] ? s->cmd : "in-process reference engine", err) ||
        lc_h5_write_attr_str(f, "/", "dtype", dtype, err) ||
        lc_h5_write_attr_str(f, "/", "checkpoint", model ? model : "each case's own checkpoint", err))
        return 1;
    if (model) {
        char hex[65];
        if (lc_synth_dir_hash(model, hex, err) || lc_h5_write_attr_str(f, "/", "checkpoint_sha256", hex, err))
            return 1;
    }
    return 0;
}

int lc_oracle_end(lc_oracle_setup *s, const char *model, int any_error)
{
    int rc = 0;
    lc_error err = {0};
    if (s->writing) {
        if (any_error) {
            fprintf(stderr, "logitcheck run: --oracle-cache %s not written: a case ended in error\n", s->cache.path);
            lc_h5_abort(&s->cache);
        } else if (provenance(s, model, &err) || lc_h5_commit(&s->cache, &err)) {
            fprintf(stderr, "logitcheck run: --oracle-cache: %s\n", err.msg);
            lc_h5_abort(&s->cache);
            rc = 2;
        } else {
            printf("oracle cache: %s\n", s->cache.path);
        }
        s->writing = 0;
    }
    lc_engine_free(s->oracle);
    s->oracle = NULL;
    return rc;
}
