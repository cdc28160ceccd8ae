/* SPDX-License-Identifier: MIT */
/*
 * Planted bugs of the in-process reference engine: the one table that drives
 * `logitcheck run --inject`, its usage text, the engine (engines/engine_ref.c) and the
 * sensitivity tests (tests/test_sensitivity.c, which fails when a row of this table has no
 * case proven to catch it).
 *
 * Columns: id, name on the command line, what the plant takes (NONE: a switch; VALUE: a
 * number, written name=X), where it lands (MODEL: the forward pass, through the reference
 * engine's fault struct; ENGINE: the in-process engine's own sequence and snapshot handling;
 * CONFIG: a configuration value the forward pass reads; VJP: the backward passes of the vjp
 * operation), and the help text.
 * New plants are new rows; nothing else in the harness lists fault names.
 */
#ifndef LC_FAULTS_H
#define LC_FAULTS_H

#include <stdio.h>

#include "lc_error.h"

#define LC_FAULT_MAP(X)                                                                                      \
    X(PAD_INTO_CONV, "pad_into_conv", NONE, MODEL, "pad tokens enter the GDN conv window")                  \
    X(PAD_INTO_GDN, "pad_into_gdn", NONE, MODEL, "pad tokens enter the GDN conv and recurrent state")       \
    X(PAD_INTO_ATTENTION, "pad_into_attention", NONE, MODEL, "pad tokens are stored in the KV cache and attended") \
    X(ROW0_DELTA, "row0_delta", NONE, MODEL, "every batch row decodes with row 0's rope delta")             \
    X(ROPE_PAIRS_ADJACENT, "rope_pairs_adjacent", NONE, MODEL, "rotary pairs (2i, 2i+1) instead of rotate-half") \
    X(STALE_ROPE_DELTA, "stale_rope_delta", NONE, ENGINE, "decode ignores the prompt's rope delta")         \
    X(SHALLOW_SNAPSHOT, "shallow_snapshot", NONE, ENGINE, "a snapshot is a view of the live sequence, not a copy") \
    X(REFEED_LAST_TOKEN, "refeed_last_token", NONE, ENGINE,                                                 \
      "decoding right after a restore feeds the last prompt token again")                                   \
    X(IMAGE_DELTA_KEPT, "image_delta_kept", NONE, ENGINE,                                                   \
      "the engine keeps the last image prompt's rope delta and text prompts decode with it")              \
    X(RMS_EPS, "rms_eps", VALUE, CONFIG, "every decoder RMSNorm uses epsilon X instead of the config's")    \
    X(INPUT_NORM_EPS_X10, "input_norm_eps_x10", NONE, MODEL, "the input RMSNorm's epsilon is 10x too large") \
    X(POST_NORM_EPS_X10, "post_norm_eps_x10", NONE, MODEL, "the post-attention RMSNorm's epsilon is 10x too large") \
    X(FINAL_NORM_EPS_X10, "final_norm_eps_x10", NONE, MODEL, "the final RMSNorm's epsilon is 10x too large") \
    X(Q_NORM_EPS_X10, "q_norm_eps_x10", NONE, MODEL, "the attention q_norm's epsilon is 10x too large") \
    X(K_NORM_EPS_X10, "k_norm_eps_x10", NONE, MODEL, "the attention k_norm's epsilon is 10x too large") \
    X(GDN_NORM_EPS_X10, "gdn_norm_eps_x10", NONE, MODEL, "the GDN gated RMSNorm's epsilon is 10x too large") \
    X(ROPE_THETA_SCALE, "rope_theta_scale", VALUE, CONFIG, "the text rotary theta is multiplied by X (1.01: 1% off)") \
    X(MOE_NO_RENORM, "moe_no_renorm", NONE, MODEL, "MoE top-k routing weights are not renormalised")     \
    X(PREFIX_LONGER_STATE, "prefix_longer_state", NONE, ENGINE,                                             \
      "a prefix lookup restores the whole state of a longer cached prompt that diverges from the request")  \
    X(SLOT_CONV_KEPT, "slot_conv_kept", NONE, ENGINE,                                                       \
      "a closed sequence's slot is reused by the next one without clearing its conv state")                 \
    X(SHARED_ROPE_DELTA, "shared_rope_delta", NONE, ENGINE,                                                 \
      "one rope delta for every sequence, overwritten by each new prompt's prefill")                        \
    X(PREFIX_POS_FROM_OFFSET, "prefix_pos_from_offset", NONE, ENGINE,                                       \
      "after a prefix hit, positions come from the cache's offset (text positions, no rope delta)")         \
    X(PREFIX_TRIM_KV_ONLY, "prefix_trim_kv_only", NONE, ENGINE,                                             \
      "a partial prefix match inside a stored span is accepted, trimming the KV cache but not the GDN state") \
    X(VIDEO_ONE_BLOCK, "video_one_block", NONE, MODEL,                                                     \
      "a video's temporal patches are placed as one (t, h, w) block from its first patch's position")      \
    X(VIDEO_TS_NO_ADVANCE, "video_ts_no_advance", NONE, MODEL,                                             \
      "a video's timestamp ids between temporal patches do not advance the positions")                     \
    X(VIDEO_TEMPORAL_PER_TOKEN, "video_temporal_per_token", NONE, MODEL,                                   \
      "a video placeholder's temporal position counts tokens of its patch instead of staying at the start") \
    X(VIDEO_ODD_UNPADDED, "video_odd_unpadded", NONE, ENGINE,                                              \
      "an odd count of sampled frames is not padded: the last frame is dropped")                           \
    X(SPEC_COMMIT_REJECTED, "spec_commit_rejected", NONE, MODEL,                                             \
      "verify's accept keeps the recurrent state written over rejected drafts")                             \
    X(SPEC_CONV_KEPT, "spec_conv_kept", NONE, MODEL,                                                         \
      "verify's accept does not roll the GDN conv window back to the accepted prefix")                      \
    X(SPEC_ACCEPT_OFF_BY_ONE, "spec_accept_off_by_one", NONE, MODEL,                                         \
      "verify's accept commits one draft more than accepted")                                               \
    X(MTP_CONCAT_SWAPPED, "mtp_concat_swapped", NONE, MODEL,                                                 \
      "the MTP head concatenates [hidden | embedding] instead of [embedding | hidden]")                     \
    X(MTP_PRENORM_HIDDEN, "mtp_prenorm_hidden", NONE, MODEL,                                                 \
      "the MTP head is fed the main model's hidden state before the final norm")                            \
    X(SPEC_SNAPSHOT_AFTER_VERIFY, "spec_snapshot_after_verify", NONE, ENGINE,                                \
      "a snapshot right after accept holds the state after every verified token, rejected drafts included") \
    LC_FAULT_MAP_VJP(X)

/* Backward-pass plants (where VJP: the vjp operation, through qref_vjp_internal.h). */
#define LC_FAULT_MAP_VJP(X)                                                                                  \
    X(VJP_GDN_NO_DECAY, "vjp_gdn_no_decay", NONE, VJP,                                                       \
      "the gated delta rule's backward does not apply the decay to the state gradient")                     \
    X(VJP_BETA_NO_SIGMOID, "vjp_beta_no_sigmoid", NONE, VJP, "beta's gradient misses the sigmoid derivative") \
    X(VJP_CONV_STATE_DROPPED, "vjp_conv_state_dropped", NONE, VJP,                                           \
      "the conv backward drops the state gradient at a chunk edge")                                         \
    X(VJP_ROPE_WRONG_WAY, "vjp_rope_wrong_way", NONE, VJP, "the rotary backward rotates forward, not back")  \
    X(VJP_L2NORM_NO_EPS, "vjp_l2norm_no_eps", NONE, VJP,                                                     \
      "the l2-norm backward leaves out its epsilon (singular on a zero row)")

typedef enum {
#define LC__FAULT_ENUM(id, name, arg, where, help) LC_FAULT_##id,
    LC_FAULT_MAP(LC__FAULT_ENUM)
#undef LC__FAULT_ENUM
    LC_FAULT_COUNT
} lc_fault;

/* The planted bugs of one engine: on[f] set, value[f] its number for VALUE plants. A zeroed
 * set is a correct engine. */
struct lc_fault_set {
    int on[LC_FAULT_COUNT];
    double value[LC_FAULT_COUNT];
};
typedef struct lc_fault_set lc_fault_set;

const char *lc_fault_name(lc_fault f);     /* "pad_into_conv"...; "unknown" out of range */
const char *lc_fault_help(lc_fault f);
int lc_fault_takes_value(lc_fault f);      /* 1 for VALUE plants (name=X) */

/* Adds one plant written as on the command line ("pad_into_conv", "rms_eps=1e-5"). An unknown
 * name, a missing or non-positive value, or a value given to a switch is LC_EINPUT with a
 * one-line message naming the spec. */
int lc_fault_parse(lc_fault_set *s, const char *spec, lc_error *err);

/* The plants' names and help, one per line, each prefixed by indent (for usage texts). */
void lc_fault_usage(FILE *to, const char *indent);

#endif /* LC_FAULTS_H */
