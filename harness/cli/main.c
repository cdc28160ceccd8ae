/* SPDX-License-Identifier: MIT */
/* logitcheck: the command-line entry point. Only this file and the subcommands choose exit codes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "lc_file.h"
#include "qref.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: logitcheck <command> [options]\n"
            "\n"
            "commands:\n"
            "  run      run cases (default: the default suite), print a line per case, write reports\n"
            "  list     list the cases of the catalog\n"
            "  infer    run the reference engine on one prompt and write its logits to HDF5\n"
            "  compare  compare two HDF5 logit files (infer output, an external engine's, a golden)\n"
            "  bench    load time, memory and prefill/decode throughput of the engine (synthetic checkpoints)\n"
            "  synth    write a deterministic synthetic checkpoint (published Qwen3.5 shapes) and print its sha256\n"
            "  serve    the reference engine behind the engine protocol on stdin/stdout (harness/PROTOCOL.md)\n"
            "  bisect   the first commit between GOOD and BAD that fails the cases, and its first diverging stage\n"
            "\n"
            "Every command also takes --max-memory SIZE (bytes, or with K, M, G, T): the bound on any\n"
            "allocation sized from a file's declared dimensions (default: half of this machine's\n"
            "memory, here %zu MiB).\n"
            "Run 'logitcheck <command> --help' for the options of a command. Every option also takes the\n"
            "form --opt=value; '--' ends the options; --version prints the version.\n"
            "Exit codes: 0 pass, 1 a numeric check failed, 2 bad usage or input, 3 internal error.\n"
            "Engine precision of this build: %s\n",
            lc_mem_limit() >> 20, QREF_PRECISION_NAME);
}

/* Takes --max-memory SIZE (or --max-memory=SIZE) out of argv, wherever it appears, and sets
 * the limit. Returns 0, or 2 after a message for a bad value. */
static int take_max_memory(int *argc, char **argv)
{
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--max-memory")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "logitcheck: --max-memory needs a value\n");
                return 2;
            }
            v = argv[++i];
        } else if (!strncmp(argv[i], "--max-memory=", 13)) {
            v = argv[i] + 13;
        } else {
            argv[w++] = argv[i];
            continue;
        }
        size_t bytes;
        if (lc_parse_size(v, &bytes)) {
            fprintf(stderr, "logitcheck: --max-memory '%s': expected a size such as 4096, 512M or 2G\n", v);
            return 2;
        }
        lc_mem_limit_set(bytes);
    }
    argv[w] = NULL;
    *argc = w;
    return 0;
}

static const char *const commands[] = {"run", "list", "infer", "compare", "bench", "synth", "serve", "bisect",
                                       "help"};

int main(int argc, char **argv)
{
    /* a write past the file-size limit fails with EFBIG and is reported, never a signal */
    lc_file_ignore_sigxfsz();
    if (lc_cli_normalise(&argc, &argv) != 0) {
        fprintf(stderr, "logitcheck: out of memory\n");
        return 3;
    }
    for (int i = 1; i < argc; i++) { /* --version, for every command */
        if (!strcmp(argv[i], "--version")) {
            printf("logitcheck %s (engine precision %s)\n", LC_VERSION, QREF_PRECISION_NAME);
            return 0;
        }
    }
    if (take_max_memory(&argc, argv))
        return 2;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "infer"))
        return lc_cmd_infer(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return lc_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "list"))
        return lc_cmd_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare"))
        return lc_cmd_compare(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return lc_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "synth"))
        return lc_cmd_synth(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return lc_cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "bisect"))
        return lc_cmd_bisect(argc - 1, argv + 1);
    const char *near = lc_cli_suggest(cmd, commands, (int)(sizeof commands / sizeof commands[0]));
    if (near)
        fprintf(stderr, "logitcheck: unknown command '%s' (did you mean '%s'?); 'logitcheck --help' lists them\n",
                cmd, near);
    else
        fprintf(stderr, "logitcheck: unknown command '%s'; 'logitcheck --help' lists them\n", cmd);
    return 2;
}
