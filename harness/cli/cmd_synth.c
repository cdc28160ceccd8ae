/* SPDX-License-Identifier: MIT */
/*
 * logitcheck synth: writes a deterministic synthetic checkpoint (harness/synth/synth.h) into a
 * new directory and prints its SHA-256 (the checkpoint hash defined in synth.h), or with
 * --hash-only prints the hash without writing anything.
 *
 *   logitcheck synth --preset qwen3.5-0.8b --seed 1 --out /tmp/q08
 *   logitcheck synth --preset qwen3.5-0.8b --seed 1 --hash-only
 *
 * The last line of the output is "sha256 <64 hex digits>".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "synth.h"

static void synth_usage(FILE *to)
{
    fprintf(to,
            "usage: logitcheck synth --preset NAME [--seed S] (--out DIR | --hash-only)\n"
            "\n"
            "Writes a synthetic Qwen3.5 checkpoint (config.json, preprocessor_config.json, BF16\n"
            "safetensors shards + index) that is byte-identical on every machine, and prints its\n"
            "sha256 (of the sha256sum listing of its files in name order).\n"
            "\n"
            "  --preset     qwen3.5-0.8b, qwen3.5-4b-l4, qwen3.5-35b-a3b-l2 (published shapes), or\n"
            "               tiny, small, medium (F32, dense)\n"
            "  --seed       weight seed, an unsigned 64-bit integer (default 1)\n"
            "  --out        the checkpoint directory to create; it must not exist\n"
            "  --hash-only  print the hash of the checkpoint without writing it\n");
}

static const char *preset_list(void)
{
    return "qwen3.5-0.8b, qwen3.5-4b-l4, qwen3.5-35b-a3b-l2, tiny, small or medium";
}

int lc_cmd_synth(int argc, char **argv)
{
    lc_synth_opts o = lc_synth_defaults();
    const char *out = NULL;
    int preset_given = 0, hash_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            synth_usage(stdout);
            return 0;
        }
        if (!strcmp(k, "--hash-only")) {
            hash_only = 1;
            continue;
        }
        if (strncmp(k, "--", 2) != 0) {
            fprintf(stderr, "logitcheck synth: unexpected argument '%s'\n", k);
            return 2;
        }
        if (strcmp(k, "--preset") && strcmp(k, "--seed") && strcmp(k, "--out")) {
            fprintf(stderr, "logitcheck synth: unknown option '%s'\n", k);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "logitcheck synth: %s needs a value\n", k);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--preset")) {
            if (lc_synth_parse_preset(v, &o.preset)) {
                fprintf(stderr, "logitcheck synth: --preset '%s': expected %s\n", v, preset_list());
                return 2;
            }
            preset_given = 1;
        } else if (!strcmp(k, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-' || v[0] == '+') {
                fprintf(stderr, "logitcheck synth: --seed '%s': expected an unsigned 64-bit integer\n", v);
                return 2;
            }
            o.seed = (uint64_t)s;
        } else {
            if (!*v) {
                fprintf(stderr, "logitcheck synth: --out: expected a directory path, found an empty string\n");
                return 2;
            }
            out = v;
        }
    }
    if (!preset_given) {
        fprintf(stderr, "logitcheck synth: --preset is required (%s)\n", preset_list());
        return 2;
    }
    if (!out == !hash_only) {
        fprintf(stderr, "logitcheck synth: give exactly one of --out DIR and --hash-only\n");
        return 2;
    }
    if (!lc_synth_preset_published(o.preset))
        o.dtype = LC_SYNTH_F32; /* the legacy presets as the committed tiny checkpoints */

    lc_synth_info info;
    lc_error err = {0};
    char hex[65];
    int rc = hash_only ? lc_synth_hash(&o, &info, hex, &err) : lc_synth_write_checkpoint(out, &o, &info, hex, &err);
    if (rc) {
        fprintf(stderr, "logitcheck synth: %s\n", err.msg);
        return rc == LC_EINPUT ? 2 : 3;
    }
    printf("%s seed %" PRIu64 ": %d tensors, %" PRId64 " parameters (%" PRId64 " in the main model, the rest "
           "the MTP head mtp.*), %d safetensors file%s, %" PRId64 " bytes%s%s\n",
           lc_synth_preset_name(o.preset), o.seed, info.tensors, info.params, info.loaded_params, info.files,
           info.files == 1 ? "" : "s", info.file_bytes, out ? " -> " : " (not written)", out ? out : "");
    printf("sha256 %s\n", hex);
    return 0;
}
