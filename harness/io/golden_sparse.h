/* SPDX-License-Identifier: MIT */
/*
 * Reader of the sparse real-scale goldens (format logitcheck-golden-real, layout sparse-v1;
 * golden/real/README.md): the root's checkpoint identity, and per case (or per row of a batch
 * case) the summaries kept at every position and the hidden states kept at sampled positions.
 *
 * Every dataset's shape is checked against the others (P positions, S samples, H hidden, k
 * top-k, 8 sketch values); a mismatch is LC_EINPUT naming the file and dataset.
 *
 * Ownership: lc_sparse_root and lc_sparse_seq are caller-owned; the readers fill them with
 * malloc'ed arrays released by the matching *_free (safe on a zeroed struct and twice).
 */
#ifndef LC_GOLDEN_SPARSE_H
#define LC_GOLDEN_SPARSE_H

#include <stdint.h>

#include "h5io.h"
#include "lc_error.h"

#define LC_SPARSE_LAYOUT "sparse-v1"

typedef struct {
    char *layout;               /* "sparse-v1" */
    char *checkpoint;           /* the directory the cases name */
    char *checkpoint_sha256;    /* 64 hex digits */
    int topk;                   /* k of the top-k datasets */
} lc_sparse_root;

/* Reads and checks the root attributes: format logitcheck-golden-real, layout sparse-v1. */
int lc_sparse_root_read(const lc_h5 *f, lc_sparse_root *out, lc_error *err);
void lc_sparse_root_free(lc_sparse_root *r);

/* One sequence's golden: a single-sequence case group (/cases/NAME), or one row of a batch
 * case (/cases/NAME/rows/B), whose index 0 is the row's first real token. */
typedef struct {
    int P;                      /* positions: prompt (or the row's real tokens) then decode steps */
    int k;                      /* top-k */
    int S;                      /* sampled positions */
    int H;                      /* hidden size */
    double *lse;                /* (P) logsumexp of each logits row */
    int64_t *topk_ids;          /* (P, k) ids of the k largest logits, largest first */
    double *topk_values;        /* (P, k) */
    double *hidden_rms;         /* (P) */
    double *hidden_sketch;      /* (P, 8) */
    int64_t *sample_positions;  /* (S) indices into 0 .. P - 1, increasing */
    double *hidden_sample;      /* (S, H) the final hidden state at those indices */
    /* single-sequence groups only (NULL / 0 for batch rows) */
    int T, N;                   /* prompt positions, decode steps (P = T + N) */
    int64_t *input_ids;         /* (T) */
    int64_t *position_ids;      /* (3, T) */
    int64_t rope_delta;
    int64_t *decode_tokens;     /* (N) */
    /* the verbatim logits row, first case of a file only */
    int V;                      /* its width; 0 when the group has none */
    double *logits_full;        /* (V) or NULL */
    int64_t logits_full_pos;    /* its index, 0 .. P - 1 */
    /* attributes of the case group (NaN when absent) */
    double top1_min_margin;     /* smallest top-1 / top-2 gap over the positions */
    double router_min_margin;   /* MoE: smallest gap between the k-th and (k+1)-th expert */
    /* MoE single-sequence groups, when the exporter wrote it: per position the smallest gap
     * over the MoE layers between the k-th and (k+1)-th routing probability; else NULL */
    double *router_gap;         /* (P) */
} lc_sparse_seq;

/* Reads group `group` ("/cases/NAME" or "/cases/NAME/rows/B"); inputs (input_ids ..
 * decode_tokens) are read when the group holds input_ids. */
int lc_sparse_seq_read(const lc_h5 *f, const char *group, lc_sparse_seq *out, lc_error *err);
void lc_sparse_seq_free(lc_sparse_seq *s);

#endif /* LC_GOLDEN_SPARSE_H */
