/* SPDX-License-Identifier: MIT */
/* A set of PNG files decoded for the engine: the lc_image buffers plus qref_image views. */
#ifndef LC_IMAGES_H
#define LC_IMAGES_H

#include "lc_error.h"
#include "lc_png.h"
#include "qref.h"

typedef struct {
    lc_image *owned;            /* (n) decoded pixels */
    qref_image *images;         /* (n) views the engine takes */
    int n;
} lc_image_set;

/* Decodes n PNG files; on failure nothing is kept and err names the file. */
int lc_image_set_load(lc_image_set *s, const char *const *paths, int n, lc_error *err);
/* Safe on a zeroed set and twice. */
void lc_image_set_free(lc_image_set *s);

#endif /* LC_IMAGES_H */
