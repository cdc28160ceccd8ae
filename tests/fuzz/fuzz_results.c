/* SPDX-License-Identifier: MIT */
/* libFuzzer target: a results file (the --base of a run) as lc_report_json_read reads it. */
#include "fuzz_util.h"
#include "reports.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_put("results.json", data, size);
    lc_run_result r = {0};
    lc_error err;
    (void)lc_report_json_read(&r, path, &err);
    lc_run_result_free(&r);
    return 0;
}
