/* SPDX-License-Identifier: MIT */
/* libFuzzer target: model.safetensors.index.json as qref__st_open reads it, next to one valid
 * shard (s1.safetensors, tensors "a" and "b"). */
#include "fuzz_util.h"
#include "qref_internal.h"

static void put_shard(void)
{
    static const char header[] = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                                 "\"b\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [8, 16]}}";
    uint8_t buf[8 + sizeof header - 1 + 16] = {0};
    const uint64_t hl = sizeof header - 1;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    fuzz_put("s1.safetensors", buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        put_shard();
        ready = 1;
    }
    fuzz_put("model.safetensors.index.json", data, size);
    qref_st_archive a = {0};
    qref_error err;
    (void)qref__st_open(&a, fuzz_dir(), &err);
    qref__st_close(&a);
    return 0;
}
