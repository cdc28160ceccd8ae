/* SPDX-License-Identifier: MIT */
/*
 * Curve plots as inline SVG (plot_svg.h). Layout, in SVG user units (= CSS px):
 *
 *   left margin 74 (decade labels, the rotated y title), right 16, top 14, bottom 46 (position
 *   labels, the x title); the plot area is what remains.
 */
#include <math.h>
#include <string.h>

#include "plot_svg.h"
#include "report_util.h"

enum { ML = 74, MR = 16, MT = 14, MB = 46 };
#define PW (LC_SVG_WIDTH - ML - MR)
#define PH (LC_SVG_HEIGHT - MT - MB)

typedef struct {
    int n, ylo, yhi;
} axes;

static double x_of(const axes *a, int i)
{
    return ML + (a->n > 1 ? (double)PW * i / (a->n - 1) : PW / 2.0);
}

/* The y of a value; values at or below 10^ylo (and 0) sit on the bottom edge. */
static double y_of(const axes *a, double v, int *floored)
{
    double l = v > 0 ? log10(v) : a->ylo;
    *floored = !(v > 0) || l < a->ylo;
    if (l < a->ylo)
        l = a->ylo;
    if (l > a->yhi)
        l = a->yhi;
    return MT + PH * (a->yhi - l) / (a->yhi - a->ylo);
}

static void range(const double *v, int n, double *lo, double *hi)
{
    for (int i = 0; v && i < n; i++) {
        if (v[i] > 0 && isfinite(v[i])) {
            *lo = v[i] < *lo ? v[i] : *lo;
            *hi = v[i] > *hi ? v[i] : *hi;
        }
    }
}

/* One <polyline> per run of consecutive included positions (a gap at each NaN). */
static void polyline(FILE *f, const axes *a, const double *v, int n)
{
    int open = 0, fl;
    for (int i = 0; i < n; i++) {
        if (isnan(v[i])) {
            if (open)
                fputs("\"/>", f);
            open = 0;
            continue;
        }
        fprintf(f, "%s%.1f,%.1f", open ? " " : "<polyline points=\"", x_of(a, i), y_of(a, v[i], &fl));
        open = 1;
    }
    if (open)
        fputs("\"/>", f);
}

void lc__svg_curve(FILE *f, const double *y, int n, const double *base, int nb, double bound, const char *xtitle,
                   const char *ytitle, lc_svg_info *info)
{
    lc_svg_info inf;
    memset(&inf, 0, sizeof inf);
    double lo = INFINITY, hi = 0;
    range(y, n, &lo, &hi);
    range(base, nb, &lo, &hi);
    if (bound > 0 && isfinite(bound))
        range(&bound, 1, &lo, &hi);
    if (!(hi > 0)) {
        lo = 1e-16;
        hi = 1;
    }
    axes a = {n > nb ? n : nb, (int)floor(log10(lo)), (int)ceil(log10(hi))};
    if (a.yhi <= a.ylo)
        a.yhi = a.ylo + 1;
    if (a.yhi - a.ylo > 20) /* keep the top 20 decades: what sits below is on the bottom edge */
        a.ylo = a.yhi - 20;
    inf.ylo = a.ylo;
    inf.yhi = a.yhi;
    int step = 1;
    while (a.n / step > 10)
        step = step == 1 ? 2 : step == 2 ? 5 : step * 2;
    inf.x_step = step;

    fprintf(f, "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\"><title>",
            LC_SVG_WIDTH, LC_SVG_HEIGHT, LC_SVG_WIDTH, LC_SVG_HEIGHT);
    lc__put_xml(f, ytitle, 0);
    fputs(" against ", f);
    lc__put_xml(f, xtitle, 0);
    fprintf(f, "</title><rect class=\"area\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n", ML, MT, PW, PH);
    /* y: a gridline and label per decade (every second when there are many) */
    const int ystep = a.yhi - a.ylo > 10 ? 2 : 1;
    for (int e = a.ylo; e <= a.yhi; e += ystep) {
        int fl;
        const double yy = y_of(&a, pow(10, e), &fl);
        fprintf(f, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                   "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n",
                ML, yy, ML + PW, yy, ML - 5, yy + 4, e);
    }
    /* x: ticks every step positions */
    for (int i = 0; i < a.n; i += step) {
        const double xx = x_of(&a, i);
        fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n",
                xx, MT + PH, xx, MT + PH + 4, xx, MT + PH + 17, i);
    }
    fprintf(f, "<text class=\"title\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ML + PW / 2, LC_SVG_HEIGHT - 8);
    lc__put_xml(f, xtitle, 0);
    fprintf(f, "</text><text class=\"title\" transform=\"translate(16,%d) rotate(-90)\" text-anchor=\"middle\">",
            MT + PH / 2);
    lc__put_xml(f, ytitle, 0);
    fputs("</text>\n", f);
    if (base && nb > 0) {
        fputs("<g class=\"base\">", f);
        polyline(f, &a, base, nb);
        fputs("</g>\n", f);
    }
    fputs("<g class=\"curve\">", f);
    polyline(f, &a, y, n);
    fputs("</g>\n<g class=\"pts\">", f);
    for (int i = 0; i < n; i++) {
        if (isnan(y[i])) {
            inf.n_gaps++;
            continue;
        }
        int fl;
        const double yy = y_of(&a, y[i], &fl);
        const int above = bound >= 0 && y[i] > bound;
        char v[LC__NUM_LEN];
        fprintf(f, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\"><title>%d: %s</title></circle>",
                above ? "above" : "in", x_of(&a, i), yy, i, lc__num(v, y[i]));
        inf.n_points++;
        inf.n_above += above;
        inf.n_floor += fl;
    }
    fputs("</g>\n", f);
    if (bound > 0 && isfinite(bound)) {
        int fl;
        char b[LC__NUM_LEN];
        const double yy = y_of(&a, bound, &fl);
        fprintf(f, "<line class=\"bound\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                   "<text class=\"blabel\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">bound %s</text>\n",
                ML, yy, ML + PW, yy, ML + PW - 4, yy - 4, lc__num(b, bound));
    }
    fputs("</svg>\n", f);
    if (info)
        *info = inf;
}
