/* SPDX-License-Identifier: MIT */
/*
 * Row summaries of the sparse real-scale goldens (golden/real/README.md, layout sparse-v1):
 * what a golden keeps of a logits row of the full vocabulary at every position (logsumexp,
 * the k largest values and their ids) and of a final hidden state (RMS and an 8-value sign
 * sketch). The runner reduces each engine row with the same functions as soon as it has it,
 * so no case keeps more than a few vocabulary-sized rows at once.
 *
 * Pure functions over caller-owned arrays; nothing allocates.
 */
#ifndef LC_ROW_SUMMARY_H
#define LC_ROW_SUMMARY_H

#include <stdint.h>

#define LC_SKETCH_N 8           /* values of a hidden-state sketch */

/* log Σ exp(row[i]) over V values, computed around the row's maximum (no overflow for any
 * finite row). NaN if any value is NaN; +inf if a value is +inf. */
double lc_row_logsumexp(const double *row, int V);

/* The k largest values of row (V) and their ids, largest first; equal values in increasing
 * id order (the order torch.topk gives on CPU for distinct values and what the golden's
 * exporter wrote). NaN values are never selected. k <= V. */
void lc_row_topk(const double *row, int V, int k, int32_t *ids, double *values);

/* sqrt(mean(h²)) over H values. */
double lc_hidden_rms(const double *h, int H);

/* The sketch of golden/real/README.md: out[j] = Σᵢ s_j(i)·h[i] with
 * s_j(i) = 1 − 2·((((i·0x9E3779B97F4A7C15) mod 2⁶⁴) >> (63 − j)) & 1), j = 0 .. 7. */
void lc_hidden_sketch(const double *h, int H, double out[LC_SKETCH_N]);

#endif /* LC_ROW_SUMMARY_H */
