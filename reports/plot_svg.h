/* SPDX-License-Identifier: MIT */
/*
 * Per-position curve plots as inline SVG for the HTML report (not part of the public API).
 *
 * The curve (max |a-e| per position or stage, NaN where a position was excluded) on a log y
 * axis of whole decades, the max_abs bound as a dashed red line, points above it red, the base
 * run's curve in grey beneath, gaps at excluded positions, exact agreement (0) and values below
 * the axis on the bottom edge. Both axes carry ticks, tick labels and a title; text is 12 px.
 */
#ifndef LC_PLOT_SVG_H
#define LC_PLOT_SVG_H

#include <stdio.h>

#define LC_SVG_WIDTH 680
#define LC_SVG_HEIGHT 250

typedef struct {
    int ylo, yhi;   /* the y axis spans 10^ylo .. 10^yhi */
    int x_step;     /* positions between x ticks */
    int n_points;   /* finite points drawn */
    int n_above;    /* points above the bound (red) */
    int n_gaps;     /* excluded positions (NaN) */
    int n_floor;    /* points at 0 or below 10^ylo, drawn on the bottom edge */
} lc_svg_info;

/* Writes one <svg> element to f. y: n values; base: nb values or NULL; bound: NaN for none.
 * xtitle / ytitle: the axis titles (text, escaped here); info may be NULL. */
void lc__svg_curve(FILE *f, const double *y, int n, const double *base, int nb, double bound, const char *xtitle,
                   const char *ytitle, lc_svg_info *info);

#endif /* LC_PLOT_SVG_H */
