/* SPDX-License-Identifier: MIT */
/*
 * Case catalog tests: the real catalog loads; every malformed case file is rejected with
 * LC_EINPUT and a one-line message naming the file, the case and the field; a failed load
 * leaves the catalog as it was; glob and label filtering select what a hand count says.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bounds.h"
#include "cases.h"
#include "metrics.h"
#include "check_main.h"

#define TMP_DIR LC_BINARY_DIR "/test_cases_tmp"

/* Pieces of a valid case, so each malformed file differs from a good one in one place. */
#define CKPT "\"checkpoint\": \"golden/tiny-dense\""
#define GOLD "\"golden\": \"golden/tiny-dense.h5\""
#define DESC "\"description\": \"a test case\""
#define PROMPT "\"prompt\": [{\"ids\": [1, 2, 3]}]"
#define BOUNDS "\"bounds\": {\"f32\": {\"max_abs\": 5e-4}, \"f64\": {\"max_abs\": 1e-9}}"
#define BOUNDS_OBJ "{\"f32\": {\"max_abs\": 5e-4}, \"f64\": {\"max_abs\": 1e-9}}"
#define GOOD(name) "{\"name\": \"" name "\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC \
                   ", " PROMPT ", " BOUNDS "}"

/* A real-scale case: its checkpoint is written by synth, so it need not exist. */
#define HEX "c822383adbcfc8c6348274a0acfac9e577cc2355a7f015246e932dfaafafb4cc"
#define SYNTH "\"checkpoint_synth\": {\"preset\": \"qwen3.5-0.8b\", \"seed\": 1, \"sha256\": \"" HEX "\"}"
#define REAL(extra) "{\"name\": \"r\", \"kind\": \"golden\", \"checkpoint\": \"real-checkpoints/none\", " GOLD ", " \
                    DESC ", " PROMPT ", " BOUNDS ", " extra "}"

/* ---------------------------------------------------------------- helpers */

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        ck_abort_msg("cannot create %s: %s", path, strerror(errno));
}

/* Writes text to DIR/name (DIR = TMP_DIR/sub, created) and returns the path in buf. */
static const char *write_case_file(const char *sub, const char *name, const char *text, char *buf,
                                   size_t cap)
{
    char dir[1024];
    make_dir(TMP_DIR);
    snprintf(dir, sizeof dir, "%s/%s", TMP_DIR, sub);
    make_dir(dir);
    snprintf(buf, cap, "%s/%s", dir, name);
    FILE *f = fopen(buf, "w");
    ck_assert_msg(f != NULL, "cannot write %s", buf);
    fputs(text, f);
    fclose(f);
    return buf;
}

/* ---------------------------------------------------------------- the real catalog */

START_TEST(test_cases_load_real_catalog)
{
    lc_catalog cat;
    lc_catalog_init(&cat);
    lc_error err = {0};
    int rc = lc_catalog_load_dir(&cat, LC_SOURCE_DIR "/cases", LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_OK, "loading cases/ failed (%d): %s", rc, err.msg);
    ck_assert_msg(cat.n >= 20, "only %d cases in the catalog", cat.n);

    int families[3] = {0}, kinds[LC_KIND_COUNT] = {0};
    for (int i = 0; i < cat.n; i++) {
        const lc_case *c = &cat.cases[i];
        families[c->family]++;
        kinds[c->kind]++;
        ck_assert_msg(c->description && c->description[0], "%s: no description", c->name);
        ck_assert_msg(c->bounds[LC_PREC_F32].present && c->bounds[LC_PREC_F64].present,
                      "%s: bounds missing for a precision", c->name);
        ck_assert_msg(!lc_kind_needs_golden(c->kind) || c->golden, "%s: no golden", c->name);
        /* the checkpoint named in the case decides the family */
        int moe_dir = strstr(c->checkpoint, "moe") != NULL;
        ck_assert_msg(c->family == (moe_dir ? LC_FAMILY_MOE : LC_FAMILY_DENSE),
                      "%s: family %d for checkpoint %s", c->name, c->family, c->checkpoint);
    }
    ck_assert_msg(families[LC_FAMILY_DENSE] > 0 && families[LC_FAMILY_MOE] > 0,
                  "dense %d, moe %d", families[LC_FAMILY_DENSE], families[LC_FAMILY_MOE]);
    for (int k = 0; k < LC_KIND_COUNT; k++)
        ck_assert_msg(kinds[k] > 0, "no case of kind %s", lc_kind_name((lc_kind)k));

    /* one case read back field by field against the file's text */
    const lc_case *c = lc_catalog_find(&cat, "dense.golden.text");
    ck_assert_msg(c != NULL, "dense.golden.text not found");
    ck_assert_int_eq(c->kind, LC_KIND_GOLDEN);
    ck_assert_str_eq(c->checkpoint, "golden/tiny-dense");
    ck_assert_str_eq(c->golden, "golden/tiny-dense.h5");
    ck_assert_int_eq(c->prompt.n_segs, 1);
    ck_assert_int_eq(c->prompt.segs[0].type, LC_SEG_IDS);
    ck_assert_int_eq(c->prompt.segs[0].n_ids, 37);
    ck_assert_int_eq(c->prompt.segs[0].ids[0], 30);
    ck_assert_int_eq(c->prompt.segs[0].ids[36], 363);
    ck_assert_int_eq(c->decode.mode, LC_DECODE_GREEDY);
    ck_assert_int_eq(c->decode.greedy, 6);
    const lc_bound *b = lc_case_bound(c, LC_PREC_F32, "max_abs");
    ck_assert_msg(b && b->value == 1.2e-4, "f32 max_abs %g", b ? b->value : -1.0);
    b = lc_case_bound(c, LC_PREC_F64, "max_abs");
    ck_assert_msg(b && b->value == 1e-9, "f64 max_abs %g", b ? b->value : -1.0);
    ck_assert_ptr_null(lc_case_bound(c, LC_PREC_F64, "kl_max"));
    ck_assert_msg(strstr(c->file, "/cases/golden.json") != NULL, "file %s", c->file);

    /* files load in sorted order: golden.json < schedule.json < state.json < video.json */
    ck_assert_msg(strstr(cat.cases[0].file, "golden.json") != NULL, "first file %s",
                  cat.cases[0].file);
    ck_assert_msg(strstr(cat.cases[cat.n - 1].file, "video.json") != NULL, "last file %s",
                  cat.cases[cat.n - 1].file);

    c = lc_catalog_find(&cat, "moe.multi_image.three");
    ck_assert_msg(c != NULL, "moe.multi_image.three not found");
    ck_assert_int_eq(c->family, LC_FAMILY_MOE);
    ck_assert_int_eq(lc_prompt_image_count(&c->prompt), 3);
    ck_assert_int_eq(lc_prompt_text_length(&c->prompt), -1);
    ck_assert_str_eq(c->prompt.segs[1].image, "golden/tiny-moe/img_m0.png");

    /* a video segment: frames, frame rate, one timestamp id group per temporal patch */
    c = lc_catalog_find(&cat, "dense.video.golden_8f");
    ck_assert_msg(c != NULL, "dense.video.golden_8f not found");
    const lc_segment *v = &c->prompt.segs[1];
    ck_assert_int_eq(v->type, LC_SEG_VIDEO);
    ck_assert_int_eq(v->n_frames, 8);
    ck_assert_str_eq(v->frames[7], "golden/videos/a_f7.png");
    ck_assert_double_eq(v->fps, 2.0);
    ck_assert_int_eq(v->n_ts, 4);
    ck_assert_int_eq(v->ts_len[3], 5);
    ck_assert_int_eq(v->ts_ids[3 * 5 + 1], 704); /* "<3.2 seconds>": '<' '3' '.' '2' ' seconds>' */
    ck_assert_int_eq(lc_prompt_video_count(&c->prompt), 1);
    ck_assert_int_eq(lc_prompt_image_count(&c->prompt), 0);
    ck_assert_int_eq(lc_prompt_text_length(&c->prompt), -1);
    c = lc_catalog_find(&cat, "dense.video.fps_missing");
    ck_assert_msg(c != NULL && c->prompt.segs[1].fps == 0.0, "a video without fps keeps 0");

    lc_catalog_free(&cat);
    lc_catalog_free(&cat); /* twice is safe */
}
END_TEST

/* cases/real: 14 cases on checkpoints that need not exist yet (checkpoint_synth), every one
 * with the sparse layout; the keys read back against the file's text. */
START_TEST(test_cases_load_real_scale)
{
    lc_catalog cat;
    lc_catalog_init(&cat);
    lc_error err = {0};
    int rc = lc_catalog_load_dir(&cat, LC_SOURCE_DIR "/cases/real", LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_OK, "loading cases/real failed (%d): %s", rc, err.msg);
    ck_assert_int_eq(cat.n, 14);
    for (int i = 0; i < cat.n; i++) {
        const lc_case *c = &cat.cases[i];
        ck_assert_msg(c->has_synth && c->sparse && lc_case_has_label(c, "real"), "%s: not a real-scale case", c->name);
        ck_assert_msg(c->has_hidden_bounds, "%s: no hidden_bounds", c->name);
        ck_assert_int_eq(strlen(c->synth_sha256), 64);
        ck_assert_int_eq(c->family, strstr(c->synth_preset, "a3b") ? LC_FAMILY_MOE : LC_FAMILY_DENSE);
    }
    const lc_case *c = lc_catalog_find(&cat, "real08.golden.text_2048");
    ck_assert_msg(c != NULL, "real08.golden.text_2048 not found");
    ck_assert_str_eq(c->synth_preset, "qwen3.5-0.8b");
    ck_assert_int_eq((int)c->synth_seed, 1);
    ck_assert_str_eq(c->synth_sha256, HEX);
    ck_assert_int_eq(c->n_chunk_sweep, 9);
    ck_assert_int_eq(c->chunk_sweep[0], 64);
    ck_assert_int_eq(c->chunk_sweep[8], 513);
    c = lc_catalog_find(&cat, "real08.golden.image_hd");
    ck_assert_msg(c && c->image_max_pixels == 1003520, "image_hd: image_max_pixels %ld", c ? c->image_max_pixels : -1L);
    c = lc_catalog_find(&cat, "real08.batch.pad_one");
    ck_assert_msg(c && c->n_rows == 1 && c->pad_to == 75, "pad_one: %d rows, pad_to %d", c ? c->n_rows : -1,
                  c ? c->pad_to : -1);
    c = lc_catalog_find(&cat, "real35.golden.text_577");
    ck_assert_msg(c && c->family == LC_FAMILY_MOE && lc_case_has_label(c, "moe"), "real35: not moe");
    lc_catalog_free(&cat);
}
END_TEST

/* ---------------------------------------------------------------- malformed files */

typedef struct {
    const char *label;
    const char *text;       /* the case file x.json */
    const char *earlier;    /* a.json loaded before it (duplicate names), or NULL */
    const char *expect[3];  /* substrings of the message, after "PATH: " */
} bad_file;

static const bad_file bad_files[] = {
    {"malformed_json", "{\"cases\": [\n  " GOOD("a") ",\n  {\"name\": \"b\",, }\n]}\n", NULL,
     {"x.json: malformed JSON: ", "line 3 column ", NULL}},
    {"unknown_kind",
     "{\"cases\": [{\"name\": \"bad.kind\", \"kind\": \"goldn\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", " BOUNDS "}]}",
     NULL, {"case 'bad.kind': kind: unknown kind 'goldn'", NULL, NULL}},
    {"unknown_key",
     "{\"cases\": [{\"name\": \"bad.key\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"promt\": [{\"ids\": [1]}], " PROMPT ", " BOUNDS "}]}",
     NULL, {"case 'bad.key': promt: unknown key", NULL, NULL}},
    {"missing_name",
     "{\"cases\": [" GOOD("ok.first") ", {\"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", " BOUNDS "}]}",
     NULL, {"case #2: name: missing required field", NULL, NULL}},
    {"duplicate_name", "{\"cases\": [" GOOD("dup.case") "]}", "{\"cases\": [" GOOD("dup.case") "]}",
     {"x.json: case 'dup.case': name: duplicate name: already defined in ", "/a.json", NULL}},
    {"bounds_wrong_type",
     "{\"cases\": [{\"name\": \"bad.bounds\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", " PROMPT ", \"bounds\": {\"f32\": {\"max_abs\": \"5e-4\"}, \"f64\": {\"max_abs\": 1e-9}}}]}",
     NULL, {"x.json: case 'bad.bounds': bounds.f32.max_abs: expected a number, found string", NULL,
            NULL}},
    {"unknown_metric",
     "{\"cases\": [{\"name\": \"bad.metric\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", " PROMPT ", \"bounds\": {\"f32\": {\"max_abs\": 5e-4}, \"f64\": {\"max_abz\": 1e-9}}}]}",
     NULL, {"case 'bad.metric': bounds.f64.max_abz: unknown metric 'max_abz'", NULL, NULL}},
    {"missing_image",
     "{\"cases\": [{\"name\": \"bad.image\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"ids\": [5]}, {\"image\": \"golden/tiny-dense/nope.png\"}], " BOUNDS "}]}",
     NULL, {"case 'bad.image': prompt[1].image: image file not found: ", "golden/tiny-dense/nope.png",
            NULL}},
    {"video_missing_frame",
     "{\"cases\": [{\"name\": \"bad.video\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"ids\": [5]}, {\"video\": [\"golden/videos/a_f0.png\", \"golden/videos/nope.png\"], "
     "\"timestamp_ids\": [[700]]}], " BOUNDS "}]}",
     NULL, {"case 'bad.video': prompt[1].video[1]: image file not found: ", "golden/videos/nope.png", NULL}},
    {"video_bad_fps",
     "{\"cases\": [{\"name\": \"bad.fps\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"video\": [\"golden/videos/a_f0.png\"], \"fps\": -2, \"timestamp_ids\": [[700]]}], "
     BOUNDS "}]}",
     NULL, {"case 'bad.fps': prompt[0].fps: expected a positive number of frames per second", NULL, NULL}},
    {"video_no_timestamps",
     "{\"cases\": [{\"name\": \"bad.ts\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"video\": [\"golden/videos/a_f0.png\"], \"fps\": 2}], " BOUNDS "}]}",
     NULL, {"case 'bad.ts': prompt[0].timestamp_ids: expected an array of id arrays", NULL, NULL}},
    {"video_bad_timestamp_id",
     "{\"cases\": [{\"name\": \"bad.tsid\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"video\": [\"golden/videos/a_f0.png\"], \"timestamp_ids\": [[700, 1.5]]}], " BOUNDS
     "}]}",
     NULL, {"case 'bad.tsid': prompt[0].timestamp_ids[0][1]: expected an integer", NULL, NULL}},
    {"video_unknown_key",
     "{\"cases\": [{\"name\": \"bad.vkey\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"video\": [\"golden/videos/a_f0.png\"], \"fpss\": 2, \"timestamp_ids\": [[7]]}], "
     BOUNDS "}]}",
     NULL, {"case 'bad.vkey': prompt[0]: unknown key 'fpss'", NULL, NULL}},
    {"empty_prompt",
     "{\"cases\": [{\"name\": \"bad.prompt\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [], " BOUNDS "}]}",
     NULL, {"case 'bad.prompt': prompt: empty prompt", NULL, NULL}},
    {"key_not_for_kind",
     "{\"cases\": [{\"name\": \"bad.param\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", \"lengths\": [2, 3], " BOUNDS "}]}",
     NULL, {"case 'bad.param': lengths: does not apply to kind 'golden'", NULL, NULL}},
    {"accept_above_k",
     "{\"cases\": [{\"name\": \"bad.spec\", \"kind\": \"speculative\", " CKPT ", " DESC ", " PROMPT
     ", \"draft_k\": 2, \"accept\": [1, 3], \"decode\": {\"greedy\": 8}, " BOUNDS "}]}",
     NULL, {"case 'bad.spec': accept[1]: 3 accepted drafts but draft_k is 2", NULL, NULL}},
    {"speculative_without_budget",
     "{\"cases\": [{\"name\": \"bad.budget\", \"kind\": \"speculative\", " CKPT ", " DESC ", " PROMPT
     ", \"draft_k\": 2, " BOUNDS "}]}",
     NULL, {"case 'bad.budget': decode: a speculative case needs decode.greedy >= 2", NULL, NULL}},
    {"missing_kind_param",
     "{\"cases\": [{\"name\": \"bad.chunked\", \"kind\": \"chunked\", " CKPT ", " DESC ", " PROMPT
     ", " BOUNDS "}]}",
     NULL, {"case 'bad.chunked': chunks: missing required field (kind 'chunked')", NULL, NULL}},
    {"golden_required",
     "{\"cases\": [{\"name\": \"bad.nogolden\", \"kind\": \"multi_image\", " CKPT ", " DESC ", "
     PROMPT ", " BOUNDS "}]}",
     NULL, {"case 'bad.nogolden': golden: missing required field (kind 'multi_image')", NULL, NULL}},
    {"negative_id",
     "{\"cases\": [{\"name\": \"bad.id\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", \"prompt\": [{\"ids\": [4, -1]}], " BOUNDS "}]}",
     NULL, {"case 'bad.id': prompt[0].ids[1]: expected an integer in [0, 2147483647], found -1", NULL,
            NULL}},
    {"fractional_length",
     "{\"cases\": [{\"name\": \"bad.len\", \"kind\": \"prefill_decode\", " CKPT ", " DESC ", "
     PROMPT ", \"lengths\": [2, 2.5], " BOUNDS "}]}",
     NULL, {"case 'bad.len': lengths[1]: expected an integer, found 2.5", NULL, NULL}},
    {"length_past_prompt",
     "{\"cases\": [{\"name\": \"bad.len2\", \"kind\": \"prefill_decode\", " CKPT ", " DESC ", "
     PROMPT ", \"lengths\": [2, 4], " BOUNDS "}]}",
     NULL, {"case 'bad.len2': lengths[1]: length 4 is longer than the prompt (3 tokens)", NULL,
            NULL}},
    {"decode_both",
     "{\"cases\": [{\"name\": \"bad.decode\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", \"decode\": {\"greedy\": 2, \"ids\": [1]}, " BOUNDS "}]}",
     NULL, {"case 'bad.decode': decode: expected exactly one of 'greedy' or 'ids'", NULL, NULL}},
    {"allclose_without_tol",
     "{\"cases\": [{\"name\": \"bad.allclose\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC
     ", " PROMPT ", \"bounds\": {\"f32\": {\"allclose_frac\": 0}, \"f64\": {\"max_abs\": 1e-9}}}]}",
     NULL, {"case 'bad.allclose': bounds.f32: allclose bounds need both 'atol' and 'rtol'", NULL,
            NULL}},
    {"missing_precision",
     "{\"cases\": [{\"name\": \"bad.prec\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", \"bounds\": {\"f32\": {\"max_abs\": 5e-4}}}]}",
     NULL, {"case 'bad.prec': bounds: missing bounds for precision 'f64'", NULL, NULL}},
    {"margin_without_param",
     "{\"cases\": [{\"name\": \"bad.margin\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", \"bounds\": {\"f32\": {\"max_abs\": 5e-4}, \"f64\": {\"max_abs\": 1e-9}, \"bf16\": "
     "{\"top1_agree_margin\": 1}}}]}",
     NULL, {"case 'bad.margin': bounds.bf16: top1_agree_margin needs 'top1_margin' alongside", NULL, NULL}},
    {"unknown_precision",
     "{\"cases\": [{\"name\": \"bad.fp8\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", \"bounds\": {\"f32\": {\"max_abs\": 5e-4}, \"f64\": {\"max_abs\": 1e-9}, \"fp8\": "
     "{\"max_abs\": 1}}}]}",
     NULL, {"case 'bad.fp8': bounds: unknown precision 'fp8' (expected \"f32\", \"f64\", \"bf16\" or \"f16\")",
            NULL, NULL}},
    {"bad_name",
     "{\"cases\": [{\"name\": \"Bad Name\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", " BOUNDS "}]}",
     NULL, {"case #1: name: 'Bad Name' has the character 'B'", NULL, NULL}},
    {"missing_checkpoint",
     "{\"cases\": [{\"name\": \"bad.ckpt\", \"kind\": \"golden\", \"checkpoint\": \"golden/none\", "
     GOLD ", " DESC ", " PROMPT ", " BOUNDS "}]}",
     NULL, {"case 'bad.ckpt': checkpoint: directory not found: ", "golden/none", NULL}},
    {"path_escapes_root",
     "{\"cases\": [{\"name\": \"bad.path\", \"kind\": \"golden\", " CKPT ", \"golden\": "
     "\"../x.h5\", " DESC ", " PROMPT ", " BOUNDS "}]}",
     NULL, {"case 'bad.path': golden: '../x.h5' leaves the repository root", NULL, NULL}},
    {"duplicate_key",
     "{\"cases\": [{\"name\": \"bad.dupkey\", \"kind\": \"golden\", " CKPT ", " GOLD ", " DESC ", "
     PROMPT ", " PROMPT ", " BOUNDS "}]}",
     NULL, {"x.json: malformed JSON: key 'prompt' appears twice", NULL, NULL}},
    {"case_not_object", "{\"cases\": [[1, 2]]}", NULL,
     {"case #1: case: expected an object, found array", NULL, NULL}},
    {"empty_cases", "{\"cases\": []}", NULL, {"x.json: cases: empty array (no case)", NULL, NULL}},
    /* the real-scale keys (cases/real/README.md) */
    {"synth_not_object", "{\"cases\": [" REAL("\"checkpoint_synth\": 3") "]}", NULL,
     {"case 'r': checkpoint_synth: expected an object, found number", NULL, NULL}},
    {"synth_unknown_preset", "{\"cases\": [" REAL("\"checkpoint_synth\": {\"preset\": \"tiny\", \"seed\": 1, "
     "\"sha256\": \"" HEX "\"}") "]}", NULL, {"checkpoint_synth.preset: 'tiny' is not a published-shape preset", NULL, NULL}},
    {"synth_bad_hash", "{\"cases\": [" REAL("\"checkpoint_synth\": {\"preset\": \"qwen3.5-0.8b\", \"seed\": 1, "
     "\"sha256\": \"ABC\"}") "]}", NULL, {"checkpoint_synth.sha256: expected 64 lowercase hex digits", NULL, NULL}},
    {"synth_extra_key", "{\"cases\": [" REAL("\"checkpoint_synth\": {\"preset\": \"qwen3.5-0.8b\", \"seed\": 1, "
     "\"sha256\": \"" HEX "\", \"dtype\": \"f32\"}") "]}", NULL, {"checkpoint_synth: unknown key 'dtype'", NULL, NULL}},
    {"synth_missing_seed", "{\"cases\": [" REAL("\"checkpoint_synth\": {\"preset\": \"qwen3.5-0.8b\", "
     "\"sha256\": \"" HEX "\"}") "]}", NULL, {"checkpoint_synth: missing seed", NULL, NULL}},
    {"layout_unknown", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"dense-v2\"") "]}", NULL,
     {"golden_layout: unknown layout 'dense-v2' (expected sparse-v1)", NULL, NULL}},
    {"sweep_without_sparse", "{\"cases\": [" REAL(SYNTH ", \"chunk_sweep\": [64]") "]}", NULL,
     {"chunk_sweep: applies to cases with golden_layout 'sparse-v1' only", NULL, NULL}},
    {"sweep_zero", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", \"chunk_sweep\": [64, 0]") "]}",
     NULL, {"chunk_sweep[1]: expected an integer in [1,", NULL, NULL}},
    {"max_pixels_zero", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", \"image_max_pixels\": 0") "]}",
     NULL, {"image_max_pixels: expected an integer in [1,", NULL, NULL}},
    {"min_pixels_above_max", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", "
     "\"image_min_pixels\": 4096, \"image_max_pixels\": 2048") "]}",
     NULL, {"image_min_pixels: 4096 exceeds image_max_pixels 2048", NULL, NULL}},
    {"min_pixels_without_sparse", "{\"cases\": [" REAL(SYNTH ", \"image_min_pixels\": 4096") "]}", NULL,
     {"image_min_pixels: applies to cases with golden_layout 'sparse-v1' only", NULL, NULL}},
    {"pad_to_not_batch", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", \"pad_to\": 9") "]}", NULL,
     {"pad_to: does not apply to kind 'golden'", NULL, NULL}},
    {"pad_to_short", "{\"cases\": [{\"name\": \"b\", \"kind\": \"batch\", " CKPT ", " GOLD ", " DESC
     ", \"rows\": [[{\"ids\": [1, 2, 3]}]], \"pad_id\": 0, \"pad_to\": 2, \"golden_layout\": \"sparse-v1\", " BOUNDS "}]}",
     NULL, {"case 'b': pad_to: 2 is shorter than rows[0] (3 tokens)", NULL, NULL}},
    {"one_row_without_pad_to", "{\"cases\": [{\"name\": \"b\", \"kind\": \"batch\", " CKPT ", " DESC
     ", \"rows\": [[{\"ids\": [1, 2, 3]}]], \"pad_id\": 0, " BOUNDS "}]}",
     NULL, {"case 'b': rows: a batch needs at least 2 rows (or pad_to), found 1", NULL, NULL}},
    {"hidden_bounds_without_sparse", "{\"cases\": [" REAL(SYNTH ", \"hidden_bounds\": {\"rms\": " BOUNDS_OBJ
     ", \"sketch\": " BOUNDS_OBJ ", \"sample\": " BOUNDS_OBJ "}") "]}", NULL,
     {"hidden_bounds: applies to cases with golden_layout 'sparse-v1' only", NULL, NULL}},
    {"hidden_bounds_unknown_key", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", \"hidden_bounds\": "
     "{\"rms\": " BOUNDS_OBJ ", \"norm\": " BOUNDS_OBJ "}") "]}", NULL,
     {"hidden_bounds: unknown key 'norm' (expected \"rms\", \"sketch\" or \"sample\")", NULL, NULL}},
    {"hidden_bounds_missing", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", \"hidden_bounds\": "
     "{\"rms\": " BOUNDS_OBJ ", \"sketch\": " BOUNDS_OBJ "}") "]}", NULL,
     {"hidden_bounds: missing key 'sample'", NULL, NULL}},
    {"hidden_bounds_bad_metric", "{\"cases\": [" REAL(SYNTH ", \"golden_layout\": \"sparse-v1\", \"hidden_bounds\": "
     "{\"rms\": {\"f32\": {\"max_abs\": \"x\"}, \"f64\": {\"max_abs\": 1}}}") "]}", NULL,
     {"hidden_bounds.rms.f32.max_abs: expected a number, found string", NULL, NULL}},
    {"top_level_array", "[" GOOD("a") "]", NULL,
     {"x.json: expected an object ({\"cases\": [...]} or one case), found array", NULL, NULL}},
    {"top_level_extra_key", "{\"cases\": [" GOOD("a") "], \"version\": 1}", NULL,
     {"x.json: version: unknown top-level key", NULL, NULL}},
    /* serving kinds: requests instead of one prompt */
    {"serving_prompt_not_for_kind",
     "{\"cases\": [{\"name\": \"bad.cb\", \"kind\": \"continuous_batch\", " CKPT ", " DESC ", " PROMPT
     ", \"requests\": [], " BOUNDS "}]}",
     NULL, {"case 'bad.cb': prompt: does not apply to kind 'continuous_batch'", NULL, NULL}},
    {"serving_one_request",
     "{\"cases\": [{\"name\": \"bad.cb1\", \"kind\": \"continuous_batch\", " CKPT ", " DESC
     ", \"requests\": [{\"arrive\": 0, \"prompt\": [{\"ids\": [1]}], \"decode\": 1}], " BOUNDS "}]}",
     NULL, {"case 'bad.cb1': requests: a continuous_batch case needs at least 2 requests, found 1", NULL, NULL}},
    {"serving_arrival_order",
     "{\"cases\": [{\"name\": \"bad.cb2\", \"kind\": \"continuous_batch\", " CKPT ", " DESC
     ", \"requests\": [{\"arrive\": 3, \"prompt\": [{\"ids\": [1]}], \"decode\": 1}, {\"arrive\": 1, "
     "\"prompt\": [{\"ids\": [2]}], \"decode\": 1}], " BOUNDS "}]}",
     NULL, {"case 'bad.cb2': requests[1]: requests must be listed in arrival order", NULL, NULL}},
    {"serving_request_missing_field",
     "{\"cases\": [{\"name\": \"bad.pc\", \"kind\": \"prefix_cache\", " CKPT ", " DESC
     ", \"requests\": [{\"prompt\": [{\"ids\": [1]}], \"decode\": 1}, {\"prompt\": [{\"ids\": [2]}], "
     "\"decode\": 1, \"reused\": 0}], " BOUNDS "}]}",
     NULL, {"case 'bad.pc': requests[0]: missing required field 'reused'", NULL, NULL}},
    {"serving_key_of_other_kind",
     "{\"cases\": [{\"name\": \"bad.pc2\", \"kind\": \"prefix_cache\", " CKPT ", " DESC
     ", \"requests\": [{\"prompt\": [{\"ids\": [1]}], \"decode\": 1, \"reused\": 0, \"arrive\": 0}, "
     "{\"prompt\": [{\"ids\": [2]}], \"decode\": 1, \"reused\": 0}], " BOUNDS "}]}",
     NULL, {"case 'bad.pc2': requests[0].arrive: unknown key", NULL, NULL}},
    {"serving_store_after_outside",
     "{\"cases\": [{\"name\": \"bad.pc3\", \"kind\": \"prefix_cache\", " CKPT ", " DESC
     ", \"requests\": [{\"prompt\": [{\"ids\": [1]}], \"decode\": 1, \"reused\": 0, \"store_after\": [1]}, "
     "{\"prompt\": [{\"ids\": [2]}], \"decode\": 1, \"reused\": 0}], " BOUNDS "}]}",
     NULL, {"case 'bad.pc3': requests[0].store_after[0]: segment 1 does not exist (the prompt has 1)", NULL, NULL}},
};

START_TEST(test_cases_rejects_malformed)
{
    const bad_file *t = &bad_files[_i];
    char path[1200], earlier[1200];
    write_case_file(t->label, "x.json", t->text, path, sizeof path);
    if (t->earlier)
        write_case_file(t->label, "a.json", t->earlier, earlier, sizeof earlier);

    lc_catalog cat;
    lc_catalog_init(&cat);
    lc_error err = {0};
    int rc = LC_OK;
    if (t->earlier) {
        rc = lc_catalog_load_file(&cat, earlier, LC_SOURCE_DIR, &err);
        ck_assert_msg(rc == LC_OK, "%s: a.json should load: %s", t->label, err.msg);
    }
    int n_before = cat.n;
    rc = lc_catalog_load_file(&cat, path, LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_EINPUT, "%s: expected status %d, got %d (%s)", t->label, LC_EINPUT, rc,
                  err.msg);
    ck_assert_int_eq(err.code, LC_EINPUT);
    ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0 && err.msg[strlen(path)] == ':',
                  "%s: message does not start with the file name: %s", t->label, err.msg);
    for (int k = 0; k < 3 && t->expect[k]; k++)
        ck_assert_msg(strstr(err.msg, t->expect[k]) != NULL, "%s: message lacks \"%s\": %s",
                      t->label, t->expect[k], err.msg);
    ck_assert_msg(strchr(err.msg, '\n') == NULL, "%s: message is not one line: %s", t->label,
                  err.msg);
    ck_assert_msg(cat.n == n_before, "%s: a failed load changed the catalog (%d -> %d cases)",
                  t->label, n_before, cat.n);
    lc_catalog_free(&cat);
}
END_TEST

/* The duplicate also fails through the directory loader, and the whole directory load is undone. */
START_TEST(test_cases_dir_duplicate_undoes_load)
{
    char p1[1200], p2[1200];
    write_case_file("dupdir", "a.json", "{\"cases\": [" GOOD("one") ", " GOOD("two") "]}", p1,
                    sizeof p1);
    write_case_file("dupdir", "b.json", GOOD("two"), p2, sizeof p2);
    lc_catalog cat;
    lc_catalog_init(&cat);
    lc_error err = {0};
    int rc = lc_catalog_load_dir(&cat, TMP_DIR "/dupdir", LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_EINPUT, "expected %d, got %d (%s)", LC_EINPUT, rc, err.msg);
    ck_assert_msg(strstr(err.msg, "b.json: case 'two': name: duplicate name: already defined in ") &&
                  strstr(err.msg, "dupdir/a.json"), "message: %s", err.msg);
    ck_assert_int_eq(cat.n, 0);
    lc_catalog_free(&cat);
}
END_TEST

START_TEST(test_cases_unreadable_inputs)
{
    lc_catalog cat = {0};
    lc_error err = {0};
    int rc = lc_catalog_load_file(&cat, TMP_DIR "/does-not-exist.json", LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_EINPUT && strstr(err.msg, "does-not-exist.json: cannot open"),
                  "rc %d: %s", rc, err.msg);
    make_dir(TMP_DIR);
    make_dir(TMP_DIR "/emptydir");
    rc = lc_catalog_load_dir(&cat, TMP_DIR "/emptydir", LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_EINPUT && strstr(err.msg, "emptydir: no case files"), "rc %d: %s", rc,
                  err.msg);
    rc = lc_catalog_load_dir(&cat, TMP_DIR "/no-such-dir", LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_EINPUT && strstr(err.msg, "no-such-dir: cannot open"), "rc %d: %s", rc,
                  err.msg);
    lc_catalog_free(&cat);
}
END_TEST

/* A single case object (no "cases" list) is accepted; a NULL root skips file-system checks. */
START_TEST(test_cases_single_object_and_no_root)
{
    char path[1200];
    write_case_file("single", "x.json",
                    "{\"name\": \"solo\", \"kind\": \"golden\", \"checkpoint\": \"elsewhere/ckpt\", "
                    GOLD ", " DESC ", \"prompt\": [{\"image\": \"elsewhere/a.png\"}], " BOUNDS "}",
                    path, sizeof path);
    lc_catalog cat = {0};
    lc_error err = {0};
    int rc = lc_catalog_load_file(&cat, path, NULL, &err);
    ck_assert_msg(rc == LC_OK, "rc %d: %s", rc, err.msg);
    ck_assert_int_eq(cat.n, 1);
    ck_assert_str_eq(cat.cases[0].name, "solo");
    ck_assert_int_eq(cat.cases[0].family, LC_FAMILY_UNKNOWN);
    ck_assert_int_eq(cat.cases[0].prompt.segs[0].type, LC_SEG_IMAGE);
    rc = lc_catalog_load_file(&cat, path, LC_SOURCE_DIR, &err); /* now checked: no checkpoint */
    ck_assert_msg(rc == LC_EINPUT && strstr(err.msg, "checkpoint: directory not found"), "rc %d: %s",
                  rc, err.msg);
    ck_assert_int_eq(cat.n, 1);
    lc_catalog_free(&cat);
}
END_TEST

/* ---------------------------------------------------------------- filtering */

/* Kind params and bounds of a small catalog, including defaults and every kind parameter. */
static const char filter_catalog[] =
    "{\"cases\": [\n"
    " {\"name\": \"dense.golden.text\", \"kind\": \"golden\", " CKPT ", " GOLD ", \"labels\": "
    "[\"text\", \"smoke\"], " DESC ", " PROMPT ", \"decode\": {\"ids\": [7, 8]}, " BOUNDS "},\n"
    " {\"name\": \"moe.golden.image\", \"kind\": \"golden\", \"checkpoint\": \"golden/tiny-moe\", "
    "\"golden\": \"golden/tiny-moe.h5\", \"labels\": [\"image\", \"smoke\"], " DESC ", \"prompt\": "
    "[{\"ids\": [1]}, {\"image\": \"golden/tiny-moe/img_a.png\"}], " BOUNDS "},\n"
    " {\"name\": \"moe.chunked.text\", \"kind\": \"chunked\", \"checkpoint\": \"golden/tiny-moe\", "
    DESC ", " PROMPT ", \"chunks\": [1, 64], \"bounds\": {\"f32\": {\"bitwise\": true}, \"f64\": "
    "{\"allclose_frac\": 0, \"atol\": 1e-12, \"rtol\": 0, \"topk_overlap_min\": 1, \"topk\": 5}}},\n"
    " {\"name\": \"dense.kernel.gdn\", \"kind\": \"kernel\", " CKPT ", " DESC ", " PROMPT ", "
    "\"kernel\": \"gdn_chunked_vs_recurrent\", \"bounds\": {\"f32\": {\"max_abs\": 5e-4}, \"f64\": "
    "{\"max_abs\": 1e-9}, \"bf16\": {\"kl_mean\": 5e-3, \"top1_agree_margin\": 1, \"top1_margin\": 1.2}}},\n"
    " {\"name\": \"dense.batch.two\", \"kind\": \"batch\", " CKPT ", " GOLD ", " DESC ", \"rows\": "
    "[[{\"ids\": [1, 2]}], [{\"ids\": [3]}]], \"pad_id\": 9, " BOUNDS "}\n"
    "]}\n";

START_TEST(test_cases_parse_params)
{
    char path[1200];
    write_case_file("filter", "f.json", filter_catalog, path, sizeof path);
    lc_catalog cat = {0};
    lc_error err = {0};
    int rc = lc_catalog_load_file(&cat, path, LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_OK, "rc %d: %s", rc, err.msg);
    ck_assert_int_eq(cat.n, 5);

    const lc_case *c = lc_catalog_find(&cat, "dense.golden.text");
    ck_assert_int_eq(c->decode.mode, LC_DECODE_IDS);
    ck_assert_int_eq(c->decode.n_ids, 2);
    ck_assert_int_eq(c->decode.ids[1], 8);
    ck_assert_int_eq(lc_prompt_text_length(&c->prompt), 3);

    c = lc_catalog_find(&cat, "moe.chunked.text");
    ck_assert_int_eq(c->n_chunks, 2);
    ck_assert_int_eq(c->chunks[1], 64);
    ck_assert_int_eq(c->decode.mode, LC_DECODE_NONE);
    ck_assert_int_eq(c->bounds[LC_PREC_F32].bitwise, 1);
    ck_assert_int_eq(c->bounds[LC_PREC_F32].n_items, 0);
    const lc_bounds *b = &c->bounds[LC_PREC_F64];
    ck_assert_int_eq(b->bitwise, 0);
    ck_assert_int_eq(b->n_items, 2);
    ck_assert_str_eq(b->items[0].name, "allclose_frac");
    ck_assert_str_eq(b->items[1].name, "topk_overlap_min");
    ck_assert_msg(b->has_atol && b->atol == 1e-12 && b->has_rtol && b->rtol == 0.0,
                  "atol %g rtol %g", b->atol, b->rtol);
    ck_assert_int_eq(b->topk, 5);

    c = lc_catalog_find(&cat, "dense.kernel.gdn");
    /* optional bf16 bounds with the margin parameter; f16 left to the class defaults */
    ck_assert(c->bounds[LC_PREC_BF16].present && !c->bounds[LC_PREC_F16].present);
    ck_assert_int_eq(c->bounds[LC_PREC_BF16].n_items, 2);
    ck_assert_str_eq(c->bounds[LC_PREC_BF16].items[1].name, "top1_agree_margin");
    ck_assert(c->bounds[LC_PREC_BF16].has_top1_margin && c->bounds[LC_PREC_BF16].top1_margin == 1.2);
    ck_assert_int_eq(c->kernel, LC_KERNEL_GDN_CHUNKED_RECURRENT);
    ck_assert_int_eq(c->chunk, 64); /* default */

    c = lc_catalog_find(&cat, "dense.batch.two");
    ck_assert_int_eq(c->n_rows, 2);
    ck_assert_int_eq(c->rows[1].segs[0].ids[0], 3);
    ck_assert_int_eq(c->pad_id, 9);
    ck_assert_int_eq(c->prompt.n_segs, 0);
    lc_catalog_free(&cat);
}
END_TEST

typedef struct {
    const char *pattern;    /* NULL: labels only */
    const char *label;      /* NULL: patterns only */
    const char *expected;   /* names selected, in catalog order, space-separated */
} filter_row;

static const filter_row filter_rows[] = {
    {"dense.*", NULL, "dense.golden.text dense.kernel.gdn dense.batch.two"},
    {"*.golden.*", NULL, "dense.golden.text moe.golden.image"},
    {"moe.?????ed.text", NULL, "moe.chunked.text"},
    {"label:smoke", NULL, "dense.golden.text moe.golden.image"},
    {"label:moe", NULL, "moe.golden.image moe.chunked.text"},
    {"label:gold*", NULL, "dense.golden.text moe.golden.image"},
    {"label:kernel", NULL, "dense.kernel.gdn"},
    {NULL, "dense", "dense.golden.text dense.kernel.gdn dense.batch.two"},
    {NULL, "batch", "dense.batch.two"},
    {"*", "smoke", "dense.golden.text moe.golden.image"},
    {"moe.*", "image", "moe.golden.image"},
    {"dense.*", "image", ""},
    {"nothing*", NULL, ""},
};

START_TEST(test_cases_filtering)
{
    const filter_row *t = &filter_rows[_i];
    char path[1200];
    write_case_file("filter", "f.json", filter_catalog, path, sizeof path);
    lc_catalog cat = {0};
    lc_error err = {0};
    int rc = lc_catalog_load_file(&cat, path, LC_SOURCE_DIR, &err);
    ck_assert_msg(rc == LC_OK, "rc %d: %s", rc, err.msg);
    char got[512] = "";
    for (int i = 0; i < cat.n; i++) {
        const char *pats[1] = {t->pattern};
        const char *labs[1] = {t->label};
        if (lc_case_select(&cat.cases[i], pats, t->pattern ? 1 : 0, labs, t->label ? 1 : 0)) {
            if (got[0])
                strcat(got, " ");
            strcat(got, cat.cases[i].name);
        }
    }
    ck_assert_msg(strcmp(got, t->expected) == 0, "pattern '%s' label '%s': selected \"%s\", expected \"%s\"",
                  t->pattern ? t->pattern : "(none)", t->label ? t->label : "(none)", got, t->expected);
    lc_catalog_free(&cat);
}
END_TEST

START_TEST(test_cases_names_and_free)
{
    ck_assert_str_eq(lc_kind_name(LC_KIND_PREFILL_DECODE), "prefill_decode");
    ck_assert_str_eq(lc_kind_name((lc_kind)99), "unknown");
    ck_assert_int_eq(lc_kind_from_name("image_checkpoint"), LC_KIND_IMAGE_CHECKPOINT);
    ck_assert_int_eq(lc_kind_from_name("Golden"), LC_KIND_UNKNOWN);
    ck_assert_int_eq(lc_kind_from_name(NULL), LC_KIND_UNKNOWN);
    ck_assert_str_eq(lc_kernel_check_name(LC_KERNEL_MROPE_TEXT_1D), "mrope_text_vs_1d");
    ck_assert_str_eq(lc_precision_name(LC_PREC_F64), "f64");
    lc_catalog cat = {0};
    lc_catalog_free(&cat);
    lc_catalog_free(&cat);
    lc_catalog_free(NULL);
}
END_TEST

/* The default bounds table: a row with its floor for every (class, precision); same and
 * exact bitwise; low precisions graded on distributions only, with the margin parameter. */
START_TEST(test_cases_default_bounds_table)
{
    for (int c = 0; c < LC_CLASS_COUNT; c++) {
        ck_assert_int_eq(lc_cmp_class_from_name(lc_cmp_class_name((lc_cmp_class)c)), c);
        for (int p = 0; p < LC_PREC_COUNT; p++) {
            ck_assert_msg(lc_default_bounds_floor((lc_cmp_class)c, (lc_precision)p)[0], "%s/%s has no floor",
                          lc_cmp_class_name((lc_cmp_class)c), lc_precision_name((lc_precision)p));
            for (int t = 0; t < 2; t++) {
                const lc_bounds *b = lc_default_bounds((lc_cmp_class)c, (lc_precision)p, t);
                ck_assert(b && b->present);
                const int exact = c == LC_CLASS_SAME || c == LC_CLASS_EXACT;
                ck_assert_int_eq(b->bitwise, exact);
                ck_assert(exact || b->n_items > 0);
                for (int i = 0; i < b->n_items; i++) {
                    lc_metric_id m = lc_metric_from_name(b->items[i].name);
                    ck_assert_msg(m != LC_METRIC_UNKNOWN, "unknown metric %s", b->items[i].name);
                    if (p == LC_PREC_BF16 || p == LC_PREC_F16)
                        ck_assert_msg(m != LC_METRIC_MAX_ABS, "%s/%s bounds max_abs", lc_cmp_class_name((lc_cmp_class)c),
                                      lc_precision_name((lc_precision)p));
                    if (m == LC_METRIC_TOP1_AGREE_MARGIN)
                        ck_assert(b->has_top1_margin && b->top1_margin > 0);
                }
            }
        }
    }
    ck_assert_int_eq(lc_cmp_class_from_name("bitwise"), LC_CLASS_UNKNOWN);
    /* out of range: the strictest answer, never NULL */
    ck_assert(lc_default_bounds(LC_CLASS_UNKNOWN, LC_PREC_F32, 0)->bitwise);
    ck_assert(lc_default_bounds(LC_CLASS_GOLDEN, LC_PREC_UNKNOWN, 0)->bitwise);
    ck_assert_str_eq(lc_precision_name(lc_precision_from_name("bf16")), "bf16");
    ck_assert_int_eq(lc_precision_from_name("fp8"), LC_PREC_UNKNOWN);
}
END_TEST

/* The value of metric `name` in bounds b, or -1. */
static double bound_value(const lc_bounds *b, const char *name)
{
    for (int i = 0; i < b->n_items; i++)
        if (!strcmp(b->items[i].name, name))
            return b->items[i].value;
    return -1;
}

/* Differential mode's pair bounds: a finer oracle gives the engine's own golden row, a coarser
 * one the oracle's, equal precisions the row widened by the triangle inequality (x2 linear,
 * x4 squared); the rows for another checkpoint are scale-free; every pair has a floor. */
START_TEST(test_cases_pair_bounds)
{
    const lc_bounds *g32 = lc_default_bounds(LC_CLASS_GOLDEN, LC_PREC_F32, 0);
    ck_assert_ptr_eq(lc_pair_bounds(LC_PREC_F32, LC_PREC_F64, 0), g32);
    ck_assert_ptr_eq(lc_pair_bounds(LC_PREC_F64, LC_PREC_F32, 0), g32);
    ck_assert_ptr_eq(lc_pair_bounds(LC_PREC_BF16, LC_PREC_F32, 1), lc_default_bounds(LC_CLASS_GOLDEN, LC_PREC_BF16, 1));
    const lc_bounds *same = lc_pair_bounds(LC_PREC_F32, LC_PREC_F32, 0);
    ck_assert_double_eq(bound_value(same, "max_abs"), 2 * bound_value(g32, "max_abs"));
    ck_assert_double_eq(bound_value(same, "top1_agree"), bound_value(g32, "top1_agree"));
    const lc_bounds *g16 = lc_default_bounds(LC_CLASS_GOLDEN, LC_PREC_BF16, 0);
    const lc_bounds *b16 = lc_pair_bounds(LC_PREC_BF16, LC_PREC_BF16, 0);
    ck_assert_double_eq(bound_value(b16, "kl_mean"), 4 * bound_value(g16, "kl_mean"));
    ck_assert_double_eq(b16->top1_margin, 2 * g16->top1_margin);
    const lc_bounds *any = lc_pair_bounds_any(LC_PREC_F32, LC_PREC_F64, 0);
    ck_assert(bound_value(any, "max_abs") < 0 && bound_value(any, "max_abs_scaled") > 0 && bound_value(any, "nmse") > 0);
    ck_assert(any->has_top1_margin && any->top1_margin > 0);
    ck_assert_double_eq(bound_value(lc_pair_bounds_any(LC_PREC_F32, LC_PREC_F32, 1), "nmse"),
                        4 * bound_value(lc_pair_bounds_any(LC_PREC_F32, LC_PREC_F64, 1), "nmse"));
    for (int a = 0; a < LC_PREC_COUNT; a++)
        for (int b = 0; b < LC_PREC_COUNT; b++) {
            ck_assert(lc_pair_bounds_floor((lc_precision)a, (lc_precision)b)[0]);
            ck_assert(lc_pair_bounds_any_floor((lc_precision)a, (lc_precision)b)[0]);
            for (int t = 0; t < 2; t++)
                ck_assert(lc_pair_bounds_any((lc_precision)a, (lc_precision)b, t)->n_items > 0);
        }
    ck_assert(lc_pair_bounds(LC_PREC_UNKNOWN, LC_PREC_F64, 0)->bitwise);
}
END_TEST

static Suite *cases_suite(void)
{
    Suite *s = suite_create("cases");
    TCase *tc = tcase_create("catalog");
    tcase_add_test(tc, test_cases_load_real_catalog);
    tcase_add_test(tc, test_cases_load_real_scale);
    tcase_add_loop_test(tc, test_cases_rejects_malformed, 0,
                        (int)(sizeof bad_files / sizeof bad_files[0]));
    tcase_add_test(tc, test_cases_dir_duplicate_undoes_load);
    tcase_add_test(tc, test_cases_unreadable_inputs);
    tcase_add_test(tc, test_cases_single_object_and_no_root);
    suite_add_tcase(s, tc);
    tc = tcase_create("filter");
    tcase_add_test(tc, test_cases_parse_params);
    tcase_add_test(tc, test_cases_default_bounds_table);
    tcase_add_test(tc, test_cases_pair_bounds);
    tcase_add_loop_test(tc, test_cases_filtering, 0,
                        (int)(sizeof filter_rows / sizeof filter_rows[0]));
    tcase_add_test(tc, test_cases_names_and_free);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(cases_suite());
}
