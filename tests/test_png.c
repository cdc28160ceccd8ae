/* SPDX-License-Identifier: MIT */
/*
 * lc_png_read: PNG files of every colour type, depth and interlacing -> 8-bit RGB.
 *
 * Each variant is written at test time with libpng from one known pattern; the expected RGB is
 * derived from the pattern by the conversion rules (gray replicated, low depths scaled, palette
 * looked up, alpha and tRNS dropped, 16-bit samples reduced to their high byte), never from the
 * reader. Broken files (flipped IDAT bytes, bad CRCs, truncation, not a PNG) must fail with
 * one line that names the file, and leave the image zeroed.
 */
#include <check.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lc_png.h"
#include "check_main.h"

#define W 13    /* 13 x 9 exercises all seven Adam7 passes */
#define H 9

static void pattern(int x, int y, int rgb[3])
{
    rgb[0] = (x * 19 + y * 7) & 0xff;
    rgb[1] = (x * 3 + y * 29 + 50) & 0xff;
    rgb[2] = (x * y * 11 + 200) & 0xff;
}

static void palette_color(int i, int rgb[3])
{
    rgb[0] = (i * 5) & 0xff;
    rgb[1] = (i * 13 + 7) & 0xff;
    rgb[2] = 255 - i;
}

typedef struct {
    const char *name;
    int ctype;          /* PNG_COLOR_TYPE_* */
    int depth;
    int interlace;
    int trns;           /* write a tRNS chunk */
} variant;

static const variant variants[] = {
    {"gray1", PNG_COLOR_TYPE_GRAY, 1, 0, 0},
    {"gray2", PNG_COLOR_TYPE_GRAY, 2, 0, 0},
    {"gray4", PNG_COLOR_TYPE_GRAY, 4, 0, 0},
    {"gray8", PNG_COLOR_TYPE_GRAY, 8, 0, 0},
    {"gray8_trns", PNG_COLOR_TYPE_GRAY, 8, 0, 1},
    {"gray16", PNG_COLOR_TYPE_GRAY, 16, 0, 0},
    {"gray_alpha8", PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 0},
    {"gray_alpha16", PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, 0},
    {"rgb8", PNG_COLOR_TYPE_RGB, 8, 0, 0},
    {"rgb8_trns", PNG_COLOR_TYPE_RGB, 8, 0, 1},
    {"rgb16", PNG_COLOR_TYPE_RGB, 16, 0, 0},
    {"rgba8", PNG_COLOR_TYPE_RGBA, 8, 0, 0},
    {"rgba16", PNG_COLOR_TYPE_RGBA, 16, 0, 0},
    {"palette4", PNG_COLOR_TYPE_PALETTE, 4, 0, 0},
    {"palette8", PNG_COLOR_TYPE_PALETTE, 8, 0, 0},
    {"palette8_trns", PNG_COLOR_TYPE_PALETTE, 8, 0, 1},
    {"rgb8_interlaced", PNG_COLOR_TYPE_RGB, 8, 1, 0},
    {"palette8_trns_interlaced", PNG_COLOR_TYPE_PALETTE, 8, 1, 1},
    {"gray16_interlaced", PNG_COLOR_TYPE_GRAY, 16, 1, 0},
    {"rgba16_interlaced", PNG_COLOR_TYPE_RGBA, 16, 1, 0},
};

static int channels(int ctype)
{
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGBA: return 4;
    default: return 1;
    }
}

/* Sample k of pixel (x, y) as stored in the file (0 .. 2^depth - 1), and the RGB it must
 * decode to. The low byte of 16-bit samples is noise the reader must drop. */
static int sample(const variant *v, int x, int y, int k)
{
    int p[3];
    pattern(x, y, p);
    const int noise = (x * 37 + y * 101 + k * 53) & 0xff;
    const int alpha = (x * y * 23) & 0xff;          /* includes 0: alpha must not premultiply */
    switch (v->ctype) {
    case PNG_COLOR_TYPE_PALETTE:
        return v->depth == 4 ? (x + y) % 16 : (x + y * W) % 200;
    case PNG_COLOR_TYPE_GRAY:
        if (v->depth == 1) return (x + y) & 1;
        if (v->depth == 2) return p[0] >> 6;
        if (v->depth == 4) return p[0] >> 4;
        return v->depth == 8 ? p[0] : (p[0] << 8) | noise;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        const int s = k == 0 ? p[0] : alpha;
        return v->depth == 8 ? s : (s << 8) | noise;
    }
    default: {
        const int s = k < 3 ? p[k] : alpha;
        return v->depth == 8 ? s : (s << 8) | noise;
    }
    }
}

static void expected_rgb(const variant *v, int x, int y, int rgb[3])
{
    if (v->ctype == PNG_COLOR_TYPE_PALETTE) {
        palette_color(sample(v, x, y, 0), rgb);
        return;
    }
    if (v->ctype == PNG_COLOR_TYPE_GRAY || v->ctype == PNG_COLOR_TYPE_GRAY_ALPHA) {
        const int s = sample(v, x, y, 0);
        const int g = v->depth == 16 ? s >> 8 : s * (255 / ((1 << (v->depth < 8 ? v->depth : 8)) - 1));
        rgb[0] = rgb[1] = rgb[2] = g;
        return;
    }
    pattern(x, y, rgb);
}

/* Writes variant v to path with libpng; returns 0 on success. */
static int write_png(const char *path, const variant *v)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    const int ch = channels(v->ctype), bps = v->depth == 16 ? 2 : 1;
    static png_byte rows[H][W * 4 * 2];
    png_bytep rowp[H];
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, W, H, v->depth, v->ctype, v->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (v->ctype == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        const int n = v->depth == 4 ? 16 : 200;
        for (int i = 0; i < n; i++) {
            int c[3];
            palette_color(i, c);
            pal[i].red = (png_byte)c[0];
            pal[i].green = (png_byte)c[1];
            pal[i].blue = (png_byte)c[2];
        }
        png_set_PLTE(png, info, pal, n);
        if (v->trns) {
            png_byte alpha[100];
            for (int i = 0; i < 100; i++)
                alpha[i] = (png_byte)(i * 2);
            png_set_tRNS(png, info, alpha, 100, NULL);
        }
    } else if (v->trns) {
        png_color_16 t = {0};
        t.gray = 17;
        t.red = 19;
        t.green = 50;
        t.blue = 200;
        png_set_tRNS(png, info, NULL, 0, &t);
    }
    png_write_info(png, info);
    if (v->depth < 8)
        png_set_packing(png);  /* rows below carry one sample per byte */
    for (int y = 0; y < H; y++) {
        png_byte *r = rows[y];
        for (int x = 0; x < W; x++)
            for (int k = 0; k < ch; k++) {
                const int s = sample(v, x, y, k);
                if (bps == 2) {
                    r[(x * ch + k) * 2] = (png_byte)(s >> 8);
                    r[(x * ch + k) * 2 + 1] = (png_byte)(s & 0xff);
                } else {
                    r[x * ch + k] = (png_byte)s;
                }
            }
        rowp[y] = r;
    }
    png_write_image(png, rowp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/test_png_%s.png", LC_BINARY_DIR, name);
}

START_TEST(test_png_variants_decode_to_rgb)
{
    const variant *v = &variants[_i];
    char path[4096];
    tmp_path(path, sizeof path, v->name);
    ck_assert_msg(write_png(path, v) == 0, "%s: cannot write %s", v->name, path);
    lc_image img = {0};
    lc_error err = {0};
    int rc = lc_png_read(path, &img, &err);
    ck_assert_msg(rc == LC_OK, "%s: lc_png_read failed: %s", v->name, err.msg);
    ck_assert_msg(img.width == W && img.height == H, "%s: size %dx%d, want %dx%d", v->name, img.width,
                  img.height, W, H);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int want[3];
            expected_rgb(v, x, y, want);
            for (int c = 0; c < 3; c++) {
                const int got = img.rgb[((size_t)y * W + x) * 3 + c];
                ck_assert_msg(got == want[c], "%s: pixel (x %d, y %d) channel %d: got %d, want %d", v->name, x, y, c,
                              got, want[c]);
            }
        }
    lc_image_free(&img);
    ck_assert_ptr_null(img.rgb);
    lc_image_free(&img);        /* twice is safe */
    remove(path);
}
END_TEST

/* The committed fixture images decode to their documented sizes. */
START_TEST(test_png_fixtures_sizes)
{
    static const struct { const char *file; int w, h; } fx[] = {
        {"img_a.png", 96, 64}, {"img_m0.png", 32, 32}, {"img_m1.png", 64, 96}, {"img_m2.png", 128, 64}};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/golden/tiny-dense/%s", LC_SOURCE_DIR, fx[i].file);
        lc_image img = {0};
        lc_error err = {0};
        ck_assert_msg(lc_png_read(path, &img, &err) == LC_OK, "%s: %s", fx[i].file, err.msg);
        ck_assert_msg(img.width == fx[i].w && img.height == fx[i].h, "%s: %dx%d, want %dx%d (width x height)",
                      fx[i].file, img.width, img.height, fx[i].w, fx[i].h);
        lc_image_free(&img);
    }
}
END_TEST

/* ---------------------------------------------------------------- broken files */

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const unsigned char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the chunk of the given type (its length field), or 0. */
static size_t find_chunk(const unsigned char *buf, size_t len, const char *type, uint32_t *data_len)
{
    size_t off = 8;
    while (off + 12 <= len) {
        const uint32_t n = be32(buf + off);
        if (memcmp(buf + off + 4, type, 4) == 0) {
            *data_len = n;
            return off;
        }
        off += 12 + (size_t)n;
    }
    return 0;
}

static void fix_crc(unsigned char *buf, size_t chunk, uint32_t n)
{
    uLong crc = crc32(0L, buf + chunk + 4, (uInt)(n + 4));
    unsigned char *p = buf + chunk + 8 + n;
    p[0] = (unsigned char)(crc >> 24);
    p[1] = (unsigned char)(crc >> 16);
    p[2] = (unsigned char)(crc >> 8);
    p[3] = (unsigned char)crc;
}

enum { BREAK_IDAT_BYTE, BREAK_IDAT_CRC, BREAK_IHDR_CRC, BREAK_IDAT_STREAM, BREAK_TRUNC_SIG, BREAK_TRUNC_IHDR,
       BREAK_TRUNC_HALF, BREAK_TRUNC_NO_IEND, BREAK_TRUNC_LAST, BREAK_NOT_PNG, BREAK_EMPTY, BREAK_SIDE_LIMIT,
       BREAK_PIXEL_LIMIT, BREAK_COUNT };

static const struct {
    const char *name;
    const char *msg_has;        /* a substring the message must contain */
} breaks[BREAK_COUNT] = {
    {"idat_byte_flipped", "corrupt"},    /* libpng stops at whatever the bad byte breaks first */
    {"idat_crc", "CRC"},
    {"ihdr_crc", "IHDR"},
    {"idat_stream_crc_fixed", "IDAT"},
    {"truncated_in_signature", "not a PNG"},
    {"truncated_in_ihdr", "truncated"},
    {"truncated_half", "truncated"},
    {"truncated_before_iend", "truncated"},
    {"truncated_last_byte", "truncated"},
    {"not_png", "bad signature"},
    {"empty", "not a PNG"},
    {"side_over_limit", "exceeds user limit"},
    {"pixels_over_limit", "exceeds the limit"},
};

/* Rewrites the IHDR size (CRC fixed) so that only the size is wrong. */
static void set_size(unsigned char *buf, size_t ihdr, uint32_t w, uint32_t h)
{
    unsigned char *d = buf + ihdr + 8;
    for (int i = 0; i < 4; i++) {
        d[i] = (unsigned char)(w >> (24 - 8 * i));
        d[4 + i] = (unsigned char)(h >> (24 - 8 * i));
    }
    fix_crc(buf, ihdr, 13);
}

START_TEST(test_png_broken_files_fail)
{
    char good[4096], bad[4096];
    const variant *v = &variants[8];    /* rgb8 */
    tmp_path(good, sizeof good, "good_rgb8");
    snprintf(bad, sizeof bad, "%s/test_png_broken_%s.png", LC_BINARY_DIR, breaks[_i].name);
    ck_assert_int_eq(write_png(good, v), 0);
    size_t len;
    unsigned char *buf = slurp(good, &len);
    uint32_t idat_n = 0, ihdr_n = 0;
    const size_t idat = find_chunk(buf, len, "IDAT", &idat_n);
    const size_t ihdr = find_chunk(buf, len, "IHDR", &ihdr_n);
    ck_assert(idat > 0 && ihdr > 0 && idat_n > 10);
    size_t out_len = len;
    switch (_i) {
    case BREAK_IDAT_BYTE: buf[idat + 8 + idat_n / 2] ^= 0x5a; break;
    case BREAK_IDAT_CRC: buf[idat + 8 + idat_n + 3] ^= 0x01; break;
    case BREAK_IHDR_CRC: buf[ihdr + 8 + ihdr_n] ^= 0x80; break;
    case BREAK_IDAT_STREAM:     /* zlib header broken, CRC recomputed: the inflate itself fails */
        buf[idat + 8] ^= 0xff;
        fix_crc(buf, idat, idat_n);
        break;
    case BREAK_TRUNC_SIG: out_len = 5; break;
    case BREAK_TRUNC_IHDR: out_len = 20; break;
    case BREAK_TRUNC_HALF: out_len = idat + 8 + idat_n / 2; break;
    case BREAK_TRUNC_NO_IEND: out_len = idat + 12 + idat_n; break;
    case BREAK_TRUNC_LAST: out_len = len - 1; break;
    case BREAK_NOT_PNG: memcpy(buf, "GIF89a..", 8); break;
    case BREAK_EMPTY: out_len = 0; break;
    case BREAK_SIDE_LIMIT: set_size(buf, ihdr, 40000, 9); break;
    case BREAK_PIXEL_LIMIT: set_size(buf, ihdr, 20000, 20000); break;
    }
    spit(bad, buf, out_len);
    free(buf);

    lc_image img = {.rgb = (uint8_t *)1, .width = 7, .height = 7};  /* must be overwritten */
    lc_error err = {0};
    int rc = lc_png_read(bad, &img, &err);
    ck_assert_msg(rc == LC_EINPUT, "%s: rc %d, want LC_EINPUT (%s)", breaks[_i].name, rc, err.msg);
    ck_assert_msg(strncmp(err.msg, bad, strlen(bad)) == 0, "%s: message does not start with the path: %s",
                  breaks[_i].name, err.msg);
    ck_assert_msg(strchr(err.msg, '\n') == NULL, "%s: message is not one line: %s", breaks[_i].name, err.msg);
    ck_assert_msg(strstr(err.msg, breaks[_i].msg_has) != NULL, "%s: message lacks '%s': %s", breaks[_i].name,
                  breaks[_i].msg_has, err.msg);
    ck_assert_msg(img.rgb == NULL && img.width == 0 && img.height == 0, "%s: image not zeroed", breaks[_i].name);
    lc_image_free(&img);
    remove(bad);
    remove(good);
}
END_TEST

START_TEST(test_png_missing_file_fails)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/test_png_does_not_exist.png", LC_BINARY_DIR);
    lc_image img = {0};
    lc_error err = {0};
    ck_assert_int_eq(lc_png_read(path, &img, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "cannot open"), "message: %s", err.msg);
    ck_assert_ptr_null(img.rgb);
}
END_TEST

static Suite *png_suite(void)
{
    Suite *s = suite_create("png");
    TCase *tc = tcase_create("read");
    tcase_add_loop_test(tc, test_png_variants_decode_to_rgb, 0, (int)(sizeof variants / sizeof variants[0]));
    tcase_add_test(tc, test_png_fixtures_sizes);
    tcase_add_loop_test(tc, test_png_broken_files_fail, 0, BREAK_COUNT);
    tcase_add_test(tc, test_png_missing_file_fails);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(png_suite());
}
