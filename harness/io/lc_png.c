/* SPDX-License-Identifier: MIT */
/*
 * PNG -> 8-bit RGB with libpng's transforms (see lc_png.h for the conversion rules).
 *
 * libpng reports errors by longjmp: the setjmp lives in decode() alone, and everything that
 * must be released after a jump (buffers, libpng structs, the FILE) is reached through the
 * context struct, which is never a local of the function that called setjmp.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <unistd.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_file.h"
#include "lc_png.h"

typedef struct {
    FILE *f;
    png_structp png;
    png_infop info;
    uint8_t *rgb;               /* (height, width, 3) */
    png_bytep *rows;            /* (height) pointers into rgb */
    png_uint_32 width, height;
    int oversized;              /* set by decode: the header announced too many pixels */
    int rowbytes_bad;           /* set by decode: libpng's row size is not width * 3 */
    char msg[256];              /* libpng's error message */
    char warning[256];          /* libpng's last warning (explains some errors) */
} png_ctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings are not reported on their own (e.g. a bad ancillary chunk that libpng skips), but
 * the last one is kept: it often says why the error that follows happened. */
static void on_warning(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->warning, sizeof c->warning, "%s", msg);
}

/* fread-based input that names truncation instead of libpng's generic "Read Error". */
static void on_read(png_structp png, png_bytep data, size_t len)
{
    png_ctx *c = png_get_io_ptr(png);
    if (fread(data, 1, len, c->f) != len)
        png_error(png, ferror(c->f) ? "read error" : "unexpected end of file (truncated)");
}

/* Returns 0 when the image is in c->rgb, 1 after a libpng error (c->msg), 2 when the header
 * is acceptable to libpng but not to us (c->oversized / c->rowbytes_bad), 3 out of memory. */
static int decode(png_ctx *c)
{
    if (setjmp(png_jmpbuf(c->png)))
        return 1;
    png_set_read_fn(c->png, c, on_read);
    png_set_sig_bytes(c->png, 8);
    png_set_user_limits(c->png, LC_PNG_MAX_SIDE, LC_PNG_MAX_SIDE);
    /* ancillary chunks (text, sPLT, iCCP, unknown ones) may declare lengths of gigabytes:
     * nothing is allocated for one chunk past this, nor kept past this many chunks */
    png_set_chunk_malloc_max(c->png, LC_PNG_MAX_CHUNK);
    png_set_chunk_cache_max(c->png, 128);
    png_set_keep_unknown_chunks(c->png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_read_info(c->png, c->info);

    int depth, ctype, interlace;
    png_get_IHDR(c->png, c->info, &c->width, &c->height, &depth, &ctype, &interlace, NULL, NULL);
    size_t bytes;
    if ((size_t)c->width * c->height > LC_PNG_MAX_PIXELS ||
        lc_size_mul((size_t)c->width * c->height, 3, &bytes) || bytes > lc_mem_limit()) {
        c->oversized = 1;
        return 2;
    }
    if (depth == 16)
        png_set_strip_16(c->png);
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(c->png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(c->png);
    png_set_strip_alpha(c->png);  /* alpha channels, and the one palette expansion adds for tRNS */
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(c->png);
    (void)png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    if (png_get_rowbytes(c->png, c->info) != (size_t)c->width * 3) {
        c->rowbytes_bad = 1;
        return 2;
    }

    c->rgb = malloc((size_t)c->width * c->height * 3);
    c->rows = malloc((size_t)c->height * sizeof *c->rows);
    if (!c->rgb || !c->rows)
        return 3;
    for (png_uint_32 y = 0; y < c->height; y++)
        c->rows[y] = c->rgb + (size_t)y * c->width * 3;
    png_read_image(c->png, c->rows);
    png_read_end(c->png, NULL);
    return 0;
}

/* Walks the chunk list (length, type, data, CRC) of the file after its signature and refuses
 * a chunk that declares more bytes than the file has left: libpng would allocate an
 * ancillary chunk's declared length before reading it. Leaves f at byte 8. */
static int check_chunks(FILE *f, size_t size, const char *path, lc_error *err)
{
    size_t at = 8;
    while (at + 8 <= size) {
        unsigned char h[8];
        if (fseeko(f, (off_t)at, SEEK_SET) != 0 || fread(h, 1, 8, f) != 8)
            break;
        const size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        char type[5];
        for (int i = 0; i < 4; i++)
            type[i] = (h[4 + i] >= 0x20 && h[4 + i] < 0x7f) ? (char)h[4 + i] : '?';
        type[4] = '\0';
        if (len > 0x7fffffffu || len + 4 > size - at - 8)
            return lc_fail(err, LC_EINPUT, "%s: corrupt or truncated PNG: chunk '%s' at byte %zu declares %zu bytes, "
                           "more than the %zu left in the file", path, type, at, len,
                           size - at - 8 >= 4 ? size - at - 12 : 0);
        at += 12 + len;
        if (!memcmp(h + 4, "IEND", 4))
            break;
    }
    if (fseeko(f, 8, SEEK_SET) != 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot seek: %s", path, strerror(errno));
    return LC_OK;
}

int lc_png_read(const char *path, lc_image *out, lc_error *err)
{
    memset(out, 0, sizeof *out);
    png_ctx c = {0};
    int fd;
    size_t size;
    lc_error oe;
    if (lc_file_open_input(path, NULL, SIZE_MAX, &fd, &size, &oe))
        return lc_fail(err, LC_EINPUT, "%s: cannot open PNG: %s", path,
                       strstr(oe.msg, ": ") ? strstr(oe.msg, ": ") + 2 : oe.msg);
    c.f = fdopen(fd, "rb");
    if (!c.f) {
        close(fd);
        return lc_fail(err, LC_EINTERNAL, "%s: cannot open PNG: %s", path, strerror(errno));
    }
    unsigned char sig[8];
    const size_t got = fread(sig, 1, sizeof sig, c.f);
    if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig)) {
        fclose(c.f);
        return lc_fail(err, LC_EINPUT, "%s: not a PNG file (%s)", path,
                        got != sizeof sig ? "shorter than the 8-byte signature" : "bad signature");
    }
    int crc = check_chunks(c.f, size, path, err);
    if (crc) {
        fclose(c.f);
        return crc;
    }
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, on_error, on_warning);
    c.info = c.png ? png_create_info_struct(c.png) : NULL;
    int rc = c.png && c.info ? decode(&c) : 3;
    png_destroy_read_struct(&c.png, &c.info, NULL);
    fclose(c.f);
    free(c.rows);
    if (rc == 0) {
        out->rgb = c.rgb;
        out->width = (int)c.width;
        out->height = (int)c.height;
        return LC_OK;
    }
    free(c.rgb);
    switch (rc) {
    case 1:
        return lc_fail(err, LC_EINPUT, "%s: corrupt or truncated PNG: %s%s%s%s", path, c.msg,
                        c.warning[0] ? " (" : "", c.warning, c.warning[0] ? ")" : "");
    case 2:
        if (c.oversized)
            return lc_fail(err, LC_EINPUT, "%s: PNG of %lux%lu pixels exceeds the limit of %zu pixels "
                           "(or the memory limit of %zu bytes, --max-memory)", path, (unsigned long)c.width,
                           (unsigned long)c.height, LC_PNG_MAX_PIXELS, lc_mem_limit());
        return lc_fail(err, LC_EINTERNAL, "%s: unexpected decoded row size (width %lu)", path,
                        (unsigned long)c.width);
    default:
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory decoding a %lux%lu PNG", path,
                        (unsigned long)c.width, (unsigned long)c.height);
    }
}

void lc_image_free(lc_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}
