/* SPDX-License-Identifier: MIT */
/* libFuzzer target: one safetensors file (8-byte header length, JSON header, data section) as
 * qref__st_open_file reads it; every tensor found is converted. */
#include "fuzz_util.h"
#include "qref_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_put("model.safetensors", data, size);
    qref_st_archive a = {0};
    qref_error err;
    if (qref__st_open_file(&a, path, &err) == QREF_OK) {
        for (int i = 0; i < a.ntensors; i++) {
            size_t isz = a.tensors[i].dtype == QREF_DT_F64 ? 8 : a.tensors[i].dtype == QREF_DT_F32 ? 4 : 2;
            size_t count = a.tensors[i].nbytes / isz;
            qref_real *dst = malloc((count ? count : 1) * sizeof *dst);
            if (dst)
                qref__st_convert(&a.tensors[i], dst, count);
            free(dst);
        }
    }
    qref__st_close(&a);
    return 0;
}
