/* SPDX-License-Identifier: MIT */
/* Row summaries of the sparse goldens (see row_summary.h). */
#include <math.h>

#include "row_summary.h"

double lc_row_logsumexp(const double *row, int V)
{
    double m = -INFINITY;
    for (int i = 0; i < V; i++) {
        if (isnan(row[i]))
            return NAN;
        if (row[i] > m)
            m = row[i];
    }
    if (!isfinite(m))
        return m;
    double s = 0.0;
    for (int i = 0; i < V; i++)
        s += exp(row[i] - m);
    return m + log(s);
}

/* a before b in the top-k order: larger value first, equal values by lower id */
static int before(double va, int32_t ia, double vb, int32_t ib)
{
    return va > vb || (va == vb && ia < ib);
}

void lc_row_topk(const double *row, int V, int k, int32_t *ids, double *values)
{
    int n = 0; /* filled entries, kept sorted; insertion is O(k) and k is small (8) */
    for (int i = 0; i < V; i++) {
        const double v = row[i];
        if (isnan(v) || (n == k && !before(v, i, values[k - 1], ids[k - 1])))
            continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && before(v, i, values[j - 1], ids[j - 1])) {
            values[j] = values[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        values[j] = v;
        ids[j] = (int32_t)i;
    }
}

double lc_hidden_rms(const double *h, int H)
{
    double s = 0.0;
    for (int i = 0; i < H; i++)
        s += h[i] * h[i];
    return H > 0 ? sqrt(s / H) : 0.0;
}

void lc_hidden_sketch(const double *h, int H, double out[LC_SKETCH_N])
{
    for (int j = 0; j < LC_SKETCH_N; j++)
        out[j] = 0.0;
    for (int i = 0; i < H; i++) {
        const uint64_t x = (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15);
        for (int j = 0; j < LC_SKETCH_N; j++)
            out[j] += ((x >> (63 - j)) & 1u) ? -h[i] : h[i];
    }
}
