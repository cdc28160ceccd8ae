/* SPDX-License-Identifier: MIT */
/* libFuzzer target: a PNG file as lc_png_read decodes it, then the engine's image grid for the
 * tiny dense processor settings. */
#include "fuzz_util.h"
#include "lc_png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_put("in.png", data, size);
    lc_image img;
    lc_error err;
    if (lc_png_read(path, &img, &err) == LC_OK) {
        /* every byte of the decoded image is defined */
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++)
            sum += img.rgb[i];
        if (sum == 0xffffffffu)
            fprintf(stderr, "-");
    }
    lc_image_free(&img);
    return 0;
}
