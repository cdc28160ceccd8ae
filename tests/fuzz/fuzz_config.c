/* SPDX-License-Identifier: MIT */
/* libFuzzer target: config.json and preprocessor_config.json as qref_config_load reads them.
 * The first byte picks the file: even, the rest is config.json (no preprocessor config); odd,
 * the rest is preprocessor_config.json next to the tiny dense checkpoint's config.json. */
#include "fuzz_util.h"
#include "qref_internal.h"

/* golden/tiny-dense/config.json, trimmed to what the loader reads */
static const char dense_config[] =
    "{\"model_type\": \"qwen3_5\", \"image_token_id\": 1000, \"vision_start_token_id\": 998, "
    "\"vision_end_token_id\": 999, \"tie_word_embeddings\": false, \"text_config\": {"
    "\"model_type\": \"qwen3_5_text\", \"vocab_size\": 1024, \"hidden_size\": 64, \"intermediate_size\": 128, "
    "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 64, "
    "\"rms_norm_eps\": 1e-06, \"linear_num_key_heads\": 2, \"linear_num_value_heads\": 4, "
    "\"linear_key_head_dim\": 16, \"linear_value_head_dim\": 32, \"linear_conv_kernel_dim\": 4, "
    "\"layer_types\": [\"linear_attention\", \"linear_attention\", \"linear_attention\", \"full_attention\"], "
    "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000000, \"partial_rotary_factor\": 0.25, "
    "\"mrope_interleaved\": true, \"mrope_section\": [3, 3, 2]}}, \"vision_config\": {\"depth\": 2, "
    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_heads\": 4, \"patch_size\": 16, "
    "\"temporal_patch_size\": 2, \"spatial_merge_size\": 2, \"out_hidden_size\": 64, "
    "\"num_position_embeddings\": 36}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1) {
        fuzz_put("config.json", dense_config, sizeof dense_config - 1);
        fuzz_put("preprocessor_config.json", data + 1, size - 1);
    } else {
        fuzz_remove("preprocessor_config.json");
        fuzz_put("config.json", data + 1, size - 1);
    }
    qref_config cfg;
    qref_error err;
    (void)qref_config_load(&cfg, fuzz_dir(), &err);
    return 0;
}
