/* SPDX-License-Identifier: MIT */
/*
 * Deliberate engine bugs of the reference engine, for proving that the suite catches them.
 * Not part of the engine's API (qref.h): only the in-process engine of the harness
 * (harness/engines/engine_ref.c, driven by its fault table harness/engines/faults.h) and the
 * engine's own sources include this header. A model reaches its faults through
 * qref_model.faults, which the loader leaves NULL (no fault).
 */
#ifndef QREF_FAULTS_H
#define QREF_FAULTS_H

#include "qref.h"

struct qref_faults {
    int pad_into_conv;          /* pad tokens enter the GDN conv window (not the recurrent state) */
    int pad_into_gdn;           /* pad tokens enter the GDN conv and recurrent state */
    int pad_into_attention;     /* pad tokens are stored in the KV cache and attended */
    int row0_delta;             /* every batch row uses row 0's MRoPE delta */
    int rope_pairs_adjacent;    /* rotary pairs (2i, 2i+1) instead of rotate-half (i, i+R/2) */
    double input_norm_eps_scale; /* > 0: the input RMSNorm's epsilon times this */
    double post_norm_eps_scale; /* > 0: the post-attention RMSNorm's epsilon times this */
    double final_norm_eps_scale; /* > 0: the final RMSNorm's epsilon times this */
    double q_norm_eps_scale;    /* > 0: the attention q_norm's epsilon times this */
    double k_norm_eps_scale;    /* > 0: the attention k_norm's epsilon times this */
    double gdn_norm_eps_scale;  /* > 0: the GDN gated RMSNorm's epsilon times this */
    int moe_no_renorm;          /* MoE: the top-k routing weights are not renormalised */
    /* video positions (qref__rope_index_mm) */
    int video_one_block;        /* a video's groups placed as one (t, h, w) grid from its first group */
    int video_ts_no_advance;    /* timestamp ids between a video's groups do not advance positions */
    int video_temporal_per_token; /* the temporal index of a video token counts tokens, not groups */
    /* speculative decoding (mtp.c) */
    int spec_keep_rec;          /* accept keeps the recurrent state after every verify token */
    int spec_keep_conv;         /* accept keeps the conv state after every verify token */
    int spec_accept_plus1;      /* accept commits one token more than asked (at most n) */
    int mtp_concat_swapped;     /* MTP fc input is [hidden | embedding] */
    int mtp_prenorm_hidden;     /* MTP fed the main model's hidden state before the final norm */
};

typedef struct qref_faults qref_faults;

/* Planted: overwrites dst's conv and recurrent states with the end state of src's last
 * verify (all n tokens, rejected drafts included), when src still holds one. */
void qref__fault_verify_end_state(qref_cache *dst, const qref_cache *src);

#endif /* QREF_FAULTS_H */
