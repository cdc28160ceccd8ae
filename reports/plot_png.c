/*
 * The per-position error plot (see plot_png.h): a small RGB canvas, lines, rectangles and a
 * 3x5 pixel font for tick labels, then libpng to encode it.
 *
 * Canvas coordinates: x to the right, y down, (0, 0) the top-left pixel.
 */
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plot_png.h"
#include "report_util.h"

/* ---------------------------------------------------------------- canvas */

typedef struct {
    uint8_t r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GRID = {228, 228, 228},
                 FRAME = {160, 160, 160}, CURVE = {31, 96, 180}, BASE = {170, 170, 170},
                 BOUND = {214, 39, 40}, TEXT = {60, 60, 60};

typedef struct {
    int w, h;
    uint8_t *px; /* (h, w, 3) */
} canvas;

static void put(canvas *cv, int x, int y, rgb c)
{
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h)
        return;
    uint8_t *p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void fill(canvas *cv, int x0, int y0, int x1, int y1, rgb c) /* inclusive corners */
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            put(cv, x, y, c);
}

/* Bresenham line, both ends included. */
static void line(canvas *cv, int x0, int y0, int x1, int y1, rgb c)
{
    const int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        put(cv, x0, y0, c);
        if (x0 == x1 && y0 == y1)
            return;
        const int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* ---------------------------------------------------------------- a 3x5 font, drawn 2x */

#define GLYPH_SCALE 2
#define GLYPH_ADVANCE (4 * GLYPH_SCALE)
#define GLYPH_HEIGHT (5 * GLYPH_SCALE)

/* Rows top to bottom, 3 bits each, the high bit on the left. */
static const uint8_t *glyph(char ch)
{
    static const char chars[] = "0123456789e-+";
    static const uint8_t rows[][5] = {
        {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
        {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
        {2, 5, 7, 4, 3}, {0, 0, 7, 0, 0}, {0, 2, 7, 2, 0},
    };
    const char *p = strchr(chars, ch);
    return p && ch ? rows[p - chars] : NULL;
}

static int text_width(const char *s)
{
    const int n = (int)strlen(s);
    return n ? n * GLYPH_ADVANCE - GLYPH_SCALE : 0;
}

static void text(canvas *cv, int x, int y, const char *s, rgb c) /* top-left corner */
{
    for (; *s; s++, x += GLYPH_ADVANCE) {
        const uint8_t *g = glyph(*s);
        for (int row = 0; g && row < 5; row++)
            for (int col = 0; col < 3; col++)
                if (g[row] & (4 >> col))
                    fill(cv, x + col * GLYPH_SCALE, y + row * GLYPH_SCALE,
                         x + col * GLYPH_SCALE + GLYPH_SCALE - 1,
                         y + row * GLYPH_SCALE + GLYPH_SCALE - 1, c);
    }
}

/* ---------------------------------------------------------------- the plot */

/* Plot area: x in [L, R], the axis at y = B; decades map between Y_TOP and Y_BOT, positions
 * between L + X_PAD and R - X_PAD. */
enum {
    L = 60,
    R = LC_PLOT_WIDTH - 16,
    T = 10,
    B = LC_PLOT_HEIGHT - 28,
    Y_TOP = T + 3,
    Y_BOT = B - 3,
    X_PAD = 6, /* the first and last position sit this far inside the axes */
};

typedef struct {
    int n;
    int ylo, yhi;
} axes;

static int px_x(const axes *a, int i)
{
    if (a->n <= 1)
        return (L + R) / 2;
    return L + X_PAD + (int)lround((double)i * (R - L - 2 * X_PAD) / (a->n - 1));
}

static int px_y(const axes *a, double v)
{
    if (isinf(v) && v > 0)
        return Y_TOP;
    double t = v > 0 ? (log10(v) - a->ylo) / (a->yhi - a->ylo) : 0.0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return Y_BOT - (int)lround(t * (Y_BOT - Y_TOP));
}

static void range(const double *y, int n, const double *base, int base_n, double bound,
                  int *ylo, int *yhi)
{
    double mn = INFINITY, mx = -INFINITY;
    for (int k = 0; k < n + base_n + 1; k++) {
        const double v = k < n ? y[k] : k < n + base_n ? base[k - n] : bound;
        if (isfinite(v) && v > 0) {
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    }
    if (!(mn <= mx)) {
        *ylo = -8;
        *yhi = 0;
        return;
    }
    *ylo = (int)floor(log10(mn) + 1e-9);
    *yhi = (int)ceil(log10(mx) - 1e-9);
    if (*yhi <= *ylo)
        *yhi = *ylo + 1;
    if (*yhi - *ylo < 2)
        (*ylo)--;
    if (*yhi - *ylo > 20)
        *ylo = *yhi - 20;
}

static int x_step(int n)
{
    static const int mult[] = {1, 2, 5};
    for (int p = 1;; p *= 10)
        for (int i = 0; i < 3; i++)
            if ((n - 1) / (mult[i] * p) <= 10)
                return mult[i] * p;
}

static void decade_label(char *buf, size_t n, int d)
{
    if (d == 0)
        snprintf(buf, n, "1");
    else if (d == 1)
        snprintf(buf, n, "10");
    else
        snprintf(buf, n, "1e%d", d);
}

static void polyline(canvas *cv, const axes *a, const double *y, int n, rgb c)
{
    int have = 0, px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(y[i])) {
            have = 0;
            continue;
        }
        const int x = px_x(a, i), yy = px_y(a, y[i]);
        if (have)
            line(cv, px, py, x, yy, c);
        else
            put(cv, x, yy, c);
        px = x;
        py = yy;
        have = 1;
    }
}

static void draw(canvas *cv, const double *y, int n, const double *base, int base_n,
                 double bound, lc_plot_info *info)
{
    axes a = {n > base_n ? n : base_n, 0, 0};
    range(y, n, base, base_n, bound, &a.ylo, &a.yhi);
    memset(info, 0, sizeof *info);
    info->ylo = a.ylo;
    info->yhi = a.yhi;
    info->x_step = x_step(a.n > 0 ? a.n : 1);
    fill(cv, 0, 0, cv->w - 1, cv->h - 1, WHITE);

    /* y: a grid line per decade, labels every label_step decades */
    const int span = a.yhi - a.ylo, label_step = (span + 7) / 8;
    for (int d = a.ylo; d <= a.yhi; d++) {
        const int yy = px_y(&a, pow(10.0, d));
        line(cv, L + 1, yy, R, yy, GRID);
        line(cv, L - 4, yy, L, yy, BLACK);
        if ((d - a.ylo) % label_step == 0) {
            char lab[16];
            decade_label(lab, sizeof lab, d);
            text(cv, L - 8 - text_width(lab), yy - GLYPH_HEIGHT / 2, lab, TEXT);
        }
    }
    /* x: ticks and labels at the step */
    for (int i = 0; i < a.n; i += info->x_step) {
        char lab[16];
        const int x = px_x(&a, i);
        line(cv, x, B, x, B + 4, BLACK);
        snprintf(lab, sizeof lab, "%d", i);
        text(cv, x - text_width(lab) / 2, B + 8, lab, TEXT);
    }
    line(cv, L, T, R, T, FRAME);
    line(cv, R, T, R, B, FRAME);

    if (base != NULL)
        polyline(cv, &a, base, base_n, BASE);
    if (!isnan(bound)) { /* dashed, two pixels thick */
        const int yb = px_y(&a, bound);
        for (int x = L + 1; x <= R; x++)
            if ((x - L) % 10 < 6)
                fill(cv, x, yb - 1, x, yb, BOUND);
    }
    polyline(cv, &a, y, n, CURVE);
    for (int i = 0; i < n; i++) {
        if (isnan(y[i])) {
            info->n_gaps++;
            continue;
        }
        const int x = px_x(&a, i), yy = px_y(&a, y[i]);
        const int above = !isnan(bound) && y[i] > bound;
        info->n_above += above;
        info->n_floor += !(y[i] >= pow(10.0, a.ylo));
        if (above || n <= 200)
            fill(cv, x - 1, yy - 1, x + 1, yy + 1, above ? BOUND : CURVE);
    }
    line(cv, L, T, L, B, BLACK); /* axes last, over everything */
    line(cv, L, B, R, B, BLACK);
}

/* ---------------------------------------------------------------- PNG encoding */

typedef struct {
    char msg[200];
} png_ctx;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* never printed: library code stays silent */
}

/* Encodes cv into fp; 0 or -1 with ctx->msg set. */
static int encode(const canvas *cv, FILE *fp, png_ctx *ctx)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_png_error,
                                              on_png_warning);
    if (png == NULL) {
        snprintf(ctx->msg, sizeof ctx->msg, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        snprintf(ctx->msg, sizeof ctx->msg, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)cv->w, (png_uint_32)cv->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < cv->h; y++)
        png_write_row(png, cv->px + (size_t)y * (size_t)cv->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int lc_plot_curve_png(const char *path, const double *y, int n, const double *base, int base_n,
                      double bound, lc_plot_info *info, lc_error *err)
{
    lc_plot_info dummy;
    canvas cv = {LC_PLOT_WIDTH, LC_PLOT_HEIGHT, NULL};
    if (n < 0 || (n > 0 && y == NULL) || (base == NULL ? 0 : base_n < 0))
        return lc_fail(err, LC_EINTERNAL, "%s: invalid curve (n = %d)", path, n);
    if (base == NULL)
        base_n = 0;
    cv.px = malloc((size_t)cv.w * (size_t)cv.h * 3);
    if (cv.px == NULL)
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory drawing the plot", path);
    draw(&cv, y, n, base, base_n, bound, info ? info : &dummy);

    lc_afile af;
    int rc = lc_afile_open(&af, path, err);
    if (rc == LC_OK) {
        png_ctx ctx = {""};
        if (encode(&cv, af.f, &ctx) != 0) {
            lc_afile_abort(&af);
            rc = lc_fail(err, LC_EINPUT, "%s: PNG encoding failed: %s", path, ctx.msg);
        } else {
            rc = lc_afile_commit(&af, err);
        }
    }
    free(cv.px);
    return rc;
}
