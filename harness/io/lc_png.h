/* SPDX-License-Identifier: MIT */
/*
 * PNG decoding for image cases: any PNG file -> 8-bit RGB bytes, as an image processor that
 * opens the file with PIL and calls convert("RGB") sees it.
 *
 * Conversions (libpng transforms):
 *   gray 1/2/4/8-bit       -> R = G = B, low depths scaled to 0..255 (1 -> 255, 2-bit x85, 4-bit x17)
 *   palette (with or without tRNS) -> the palette colours; transparency ignored
 *   any alpha channel      -> dropped, never composited (PIL's convert("RGB") does the same)
 *   16-bit samples         -> the high byte (png_set_strip_16). PIL decodes 16-bit RGB, RGBA and
 *                             gray+alpha PNGs by keeping the high byte, so strip_16 matches it
 *                             where scale_16 (round(v * 255 / 65535)) would differ by one level
 *                             on some values. For 16-bit gray, PIL's "I;16" -> RGB conversion
 *                             instead saturates every value above 255 to white; that quirk is
 *                             not reproduced: 16-bit gray also keeps the high byte.
 *   interlaced (Adam7)     -> de-interlaced
 * No gamma, colour-profile or EXIF-orientation handling (PIL applies none of them on convert).
 *
 * (Named lc_png.h, not png.h, so that it never shadows libpng's <png.h> on an include path.)
 *
 * Ownership: lc_image is caller-owned; lc_png_read fills it, lc_image_free releases it (safe on
 * a zeroed image and twice). Nothing here prints or exits.
 */
#ifndef LC_PNG_H
#define LC_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "lc_error.h"

/* An 8-bit RGB image: rgb (height, width, 3), rows top to bottom. */
typedef struct {
    uint8_t *rgb;
    int width;
    int height;
} lc_image;

/* Largest accepted side and pixel count: larger files are rejected before any allocation. */
#define LC_PNG_MAX_SIDE 32768
#define LC_PNG_MAX_PIXELS ((size_t)1 << 28)
/* Largest allocation for one ancillary chunk (text, sPLT, ICC profile); unknown chunks are
 * skipped without being stored. */
#define LC_PNG_MAX_CHUNK ((size_t)8 << 20)

/* Decodes the PNG file at `path` into *out (overwritten; free with lc_image_free).
 * Returns LC_OK, or LC_EINPUT for a missing, unreadable, not regular (FIFO, device, directory:
 * refused without blocking), non-PNG, corrupt (bad CRC, bad compressed data), truncated or
 * oversized file (past LC_PNG_MAX_PIXELS or the memory limit, lc_mem_limit), LC_EINTERNAL when out of memory; on failure
 * *out is left zeroed and err (may be NULL) holds one line that starts with the path. */
int lc_png_read(const char *path, lc_image *out, lc_error *err);

void lc_image_free(lc_image *img);

#endif /* LC_PNG_H */
