/* SPDX-License-Identifier: MIT */
/* The logitcheck subcommands. Each returns the process exit code: 0 pass, 1 a numeric check
 * failed, 2 bad usage or bad input, 3 internal error. */
#ifndef LC_CLI_H
#define LC_CLI_H

#include <stddef.h>

#include "faults.h"
#include "h5io.h"
#include "lc_engine.h"
#include "runner.h"

int lc_cmd_infer(int argc, char **argv);
int lc_cmd_run(int argc, char **argv);
int lc_cmd_list(int argc, char **argv);
int lc_cmd_compare(int argc, char **argv);
int lc_cmd_bench(int argc, char **argv);
int lc_cmd_synth(int argc, char **argv);
int lc_cmd_serve(int argc, char **argv);
int lc_cmd_bisect(int argc, char **argv);

/* The engine a command drives, from its --engine value: NULL or "ref" is the in-process
 * reference engine of this build, with the planted faults (NULL: none). Anything else is bad
 * usage (LC_EINPUT) until an out-of-process engine is built in. On success *out is owned by
 * the caller (lc_engine_free). */
int lc_engine_from_cli(lc_engine **out, const char *engine, const lc_fault_set *faults, lc_error *err);

/* The oracle of differential mode (`run --oracle SPEC --oracle-precision P`). SPEC NULL or
 * "ref": the in-process reference engine when P is this build's precision or unknown
 * (LC_PREC_UNKNOWN: not asked), else the other precision's build (LC_PEER_LOGITCHECK) run as
 * `logitcheck serve`, a process engine; any other SPEC is a process engine command (timeout_s
 * and log_path as lc_engine_proc_new). With P given the engine must declare P. *cmd_out (may
 * be NULL) receives the command run, "" for the in-process engine. On success *out is owned
 * by the caller (lc_engine_free). LC_EINPUT: bad usage, the message says what to pass. */
int lc_oracle_from_cli(lc_engine **out, const char *spec, lc_precision prec, double timeout_s, const char *log_path,
                       char *cmd_out, size_t cmd_len, lc_error *err);

/* `run` in differential mode (run_oracle.c). */
typedef struct {
    const char *oracle;         /* --oracle: NULL or "ref", or an engine command */
    lc_precision prec;          /* --oracle-precision, LC_PREC_UNKNOWN when not given */
    const char *cache;          /* --oracle-cache FILE */
    const char *model;          /* --model DIR */
    double timeout_s;           /* --engine-timeout and --engine-log, for a process oracle */
    const char *log_path;
} lc_oracle_args;

typedef struct {
    lc_engine *oracle;          /* NULL when graded from a cache */
    lc_precision prec;
    char name[320];             /* the "expected" side of reports */
    char cmd[4200];
    lc_h5 cache;                /* the cache being written (writing) */
    int writing;
} lc_oracle_setup;

/* Sets up differential mode in opts: reads an existing --oracle-cache (its provenance checked
 * against --model's checkpoint hash), or starts the oracle and, with --oracle-cache, opens the
 * cache for writing. Returns the exit code: 0, or 2 / 3 after one line on stderr. */
int lc_oracle_begin(lc_oracle_setup *s, const lc_oracle_args *a, lc_run_opts *opts);
/* Writes the cache (when one is being written and no case ended in error: any_error) and
 * frees the oracle. Returns 0, or 2 after one line on stderr. Safe on a zeroed setup. */
int lc_oracle_end(lc_oracle_setup *s, const char *model, int any_error);

/* Parses "1,2,3" into a malloc'ed int32 array; returns 0 on success, -1 with a message. */
int lc_parse_ids(const char *s, int **out, int *n, char *msg, size_t msglen);

/* ---------------------------------------------------------------- conventions (cli_args.c) */

/* Rewrites the argument count and vector for every subcommand: "--opt=value" -> "--opt" "value"; "--" ends the
 * options and is dropped, later arguments starting with '-' become "./-x". The new vector
 * lives until exit. Returns 0, or -1 when out of memory (argv unchanged). */
int lc_cli_normalise(int *argc, char ***argv);

/* The name of names[0..n) closest to word when it is close enough to be a typo, else NULL. */
const char *lc_cli_suggest(const char *word, const char *const *names, int n);

/* ---------------------------------------------------------------- run metadata (run_meta.c) */

#include "results.h"

/* The source revision of root (`git describe --always --dirty`), "" when root is no git
 * checkout or git is missing. */
void lc_run_meta_git(char *out, size_t n, const char *root);

/* The catalog's hash: SHA-256 over each *.json case file of dir, in name order, as its name,
 * a NUL and its bytes. hex is "" (and -1 returned) when dir or a file cannot be read. */
int lc_run_meta_catalog(char hex[65], const char *dir);

/* Fills r->checkpoints with each distinct checkpoint of r's cases (relative to root) and its
 * hash (lc_synth_dir_hash); "" for one that cannot be read or is larger than 512 MiB. */
void lc_run_meta_checkpoints(lc_run_result *r, const char *root);

#endif /* LC_CLI_H */
