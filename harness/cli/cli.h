/* The logitcheck subcommands. Each returns the process exit code: 0 pass, 1 a numeric check
 * failed, 2 bad usage or bad input, 3 internal error. */
#ifndef LC_CLI_H
#define LC_CLI_H

int lc_cmd_infer(int argc, char **argv);
int lc_cmd_run(int argc, char **argv);
int lc_cmd_list(int argc, char **argv);
int lc_cmd_compare(int argc, char **argv);
int lc_cmd_bench(int argc, char **argv);
int lc_cmd_serve(int argc, char **argv);

/* Parses "1,2,3" into a malloc'ed int32 array; returns 0 on success, -1 with a message. */
int lc_parse_ids(const char *s, int **out, int *n, char *msg, size_t msglen);

#endif /* LC_CLI_H */
