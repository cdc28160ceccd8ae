/* SPDX-License-Identifier: MIT */
/* Decoding a list of PNG files into engine image views (see images.h). */
#include <stdlib.h>
#include <string.h>

#include "images.h"

int lc_image_set_load(lc_image_set *s, const char *const *paths, int n, lc_error *err)
{
    memset(s, 0, sizeof *s);
    if (n <= 0)
        return LC_OK;
    s->owned = calloc((size_t)n, sizeof *s->owned);
    s->images = calloc((size_t)n, sizeof *s->images);
    if (!s->owned || !s->images) {
        lc_image_set_free(s);
        return lc_fail(err, LC_EINTERNAL, "out of memory for %d images", n);
    }
    for (int i = 0; i < n; i++) {
        int rc = lc_png_read(paths[i], &s->owned[i], err);
        if (rc) {
            s->n = i;
            lc_image_set_free(s);
            return rc;
        }
        s->images[i] = (qref_image){s->owned[i].rgb, s->owned[i].width, s->owned[i].height};
        s->n = i + 1;
    }
    return LC_OK;
}

void lc_image_set_free(lc_image_set *s)
{
    if (!s)
        return;
    for (int i = 0; s->owned && i < s->n; i++)
        lc_image_free(&s->owned[i]);
    free(s->owned);
    free(s->images);
    memset(s, 0, sizeof *s);
}
