/* SPDX-License-Identifier: MIT */
/*
 * Counts the pixels of a PNG within a distance of given colours: for checking a screenshot.
 *
 *   png_colors FILE.png RRGGBB ...    prints "RRGGBB N" per colour, then "pixels N"
 */
#include <stdio.h>
#include <stdlib.h>

#include "lc_png.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: png_colors FILE.png RRGGBB ...\n");
        return 2;
    }
    lc_image im;
    lc_error err = {0};
    if (lc_png_read(argv[1], &im, &err) != LC_OK) {
        fprintf(stderr, "png_colors: %s\n", err.msg);
        return 2;
    }
    const size_t n = (size_t)im.width * im.height;
    for (int a = 2; a < argc; a++) {
        const unsigned long c = strtoul(argv[a], NULL, 16);
        const int r = (int)(c >> 16 & 255), g = (int)(c >> 8 & 255), b = (int)(c & 255);
        size_t hits = 0;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = im.rgb + 3 * i;
            hits += abs(p[0] - r) <= 12 && abs(p[1] - g) <= 12 && abs(p[2] - b) <= 12;
        }
        printf("%s %zu\n", argv[a], hits);
    }
    printf("pixels %zu\n", n);
    lc_image_free(&im);
    return 0;
}
