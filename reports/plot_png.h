/*
 * A per-position error plot as a PNG (libpng), drawn by a tiny rasteriser of its own:
 * the curve y[i] (max |a-e| at position i) on a log y axis against the position, with a grid
 * line and a label ("1e-5") at every decade (every other, or rarer, when there are many),
 * ticks and labels on the position axis at a 1-2-5 step, the bound as a dashed red
 * horizontal line, points above the bound in red, and optionally a base run's curve in grey
 * beneath.
 *
 * Conventions: NaN values (excluded positions) leave a gap in the line; values <= 0 (exact
 * agreement), and values below the axis, sit on the bottom edge; +inf on the top edge.
 * The y axis spans whole decades from the smallest to the largest positive finite value of
 * either curve or the bound (at least 2 decades, at most 20: smaller values clip to the
 * bottom); with no positive value at all it spans 1e-8 .. 1.
 */
#ifndef LC_PLOT_PNG_H
#define LC_PLOT_PNG_H

#include "lc_error.h"

#define LC_PLOT_WIDTH 720
#define LC_PLOT_HEIGHT 260

/* What the picture shows, for a caption. */
typedef struct {
    int ylo, yhi;       /* the y axis spans 10^ylo .. 10^yhi */
    int x_step;         /* positions between x ticks */
    int n_gaps;         /* NaN values (left out) */
    int n_floor;        /* values drawn on the bottom edge (<= 0 or below 10^ylo) */
    int n_above;        /* values above the bound */
} lc_plot_info;

/* Writes the plot of y (n values) to path (atomically, like every report file): an
 * LC_PLOT_WIDTH x LC_PLOT_HEIGHT 8-bit RGB PNG. base (base_n values) may be NULL; bound may
 * be NaN (no bound line). info (may be NULL) receives what was drawn. The arrays stay the
 * caller's. Returns LC_OK, or LC_EINPUT / LC_EINTERNAL with err naming path. */
int lc_plot_curve_png(const char *path, const double *y, int n, const double *base, int base_n,
                      double bound, lc_plot_info *info, lc_error *err);

#endif /* LC_PLOT_PNG_H */
