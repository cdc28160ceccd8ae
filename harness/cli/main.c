/* logitcheck: the command-line entry point. Only this file and the subcommands choose exit codes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
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
            "\n"
            "Run 'logitcheck <command> --help' for the options of a command.\n"
            "Exit codes: 0 pass, 1 a numeric check failed, 2 bad usage or input, 3 internal error.\n"
            "Engine precision of this build: %s\n",
            QREF_PRECISION_NAME);
}

int main(int argc, char **argv)
{
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
    fprintf(stderr, "logitcheck: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
