/* The logitcheck subcommands. Each returns the process exit code: 0 pass, 1 a numeric check
 * failed, 2 bad usage or bad input, 3 internal error. */
#ifndef LC_CLI_H
#define LC_CLI_H

#include <stddef.h>

#include "faults.h"
#include "lc_engine.h"

int lc_cmd_infer(int argc, char **argv);
int lc_cmd_run(int argc, char **argv);
int lc_cmd_list(int argc, char **argv);
int lc_cmd_compare(int argc, char **argv);
int lc_cmd_bench(int argc, char **argv);
int lc_cmd_synth(int argc, char **argv);
int lc_cmd_serve(int argc, char **argv);

/* The engine a command drives, from its --engine value: NULL or "ref" is the in-process
 * reference engine of this build, with the planted faults (NULL: none). Anything else is bad
 * usage (LC_EINPUT) until an out-of-process engine is built in. On success *out is owned by
 * the caller (lc_engine_free). */
int lc_engine_from_cli(lc_engine **out, const char *engine, const lc_fault_set *faults, lc_error *err);

/* Parses "1,2,3" into a malloc'ed int32 array; returns 0 on success, -1 with a message. */
int lc_parse_ids(const char *s, int **out, int *n, char *msg, size_t msglen);

#endif /* LC_CLI_H */
