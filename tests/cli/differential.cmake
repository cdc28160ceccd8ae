# SPDX-License-Identifier: MIT
# Differential mode (`run --oracle / --oracle-precision / --oracle-cache / --model`): the engine
# graded against a second engine on checkpoints that have no golden (synth), the planted bug
# caught there, the oracle cache written and read back instead of the oracle, and bad input.
# Included from tests/cli/CMakeLists.txt (lc_cli_test, LC, SRC, WORK).

set(DIFF_SMALL "${WORK}/cli.diff.synth_small/ck")
set(DIFF_TINY "${WORK}/cli.diff.synth_tiny/ck")
lc_cli_test(NAME diff.synth_small RC 0 SETUP diff_small STDOUT "sha256 [0-9a-f]+"
  COMMAND ${LC} synth --preset small --seed 3 --out ck)
lc_cli_test(NAME diff.synth_tiny RC 0 SETUP diff_tiny STDOUT "sha256 [0-9a-f]+"
  COMMAND ${LC} synth --preset tiny --seed 5 --out ck)

# the reference engine against the reference oracle of the same build: every smoke case passes
lc_cli_test(NAME diff.ref_vs_ref RC 0 STDERR_LINES 0 REQUIRES diff_small
  STDOUT "graded against oracle logitcheck-reference [^\n]* on [^\n]*ck\n.*4 passed, 0 failed"
  COMMAND ${LC} run --root ${SRC} --label smoke --model ${DIFF_SMALL} --report report)
# a planted bug in the engine under test, caught on a checkpoint that has no golden
lc_cli_test(NAME diff.fault_caught RC 1 STDERR_LINES 0 REQUIRES diff_small
  STDOUT "FAIL dense\\.golden\\.text  prefill logits: top1_agree[^\n]*\n.*0 passed, 4 failed"
  COMMAND ${LC} run --root ${SRC} --label smoke --model ${DIFF_SMALL} --inject rope_pairs_adjacent --report report)
# ids past the checkpoint's vocabulary (32000) and on its image id (31992) are re-drawn: without
# that the engine refuses the prompt and the case is an error (exit 2)
lc_cli_test(NAME diff.redraw_ids RC 0 STDERR_LINES 0 REQUIRES diff_small
  PRE "write|cases/x.json|{\"name\": \"x.golden.redraw\", \"kind\": \"golden\", \"checkpoint\": \"golden/tiny-dense\", \"golden\": \"golden/tiny-dense.h5\", \"description\": \"Ids outside the vocabulary.\", \"prompt\": [{\"ids\": [5, 40000, 248100, 31992, 7, 900]}], \"decode\": {\"greedy\": 2}, \"bounds\": {\"f32\": {\"max_abs\": 5e-4}, \"f64\": {\"max_abs\": 1e-9}}}"
  STDOUT "PASS x\\.golden\\.redraw.*1 passed, 0 failed"
  COMMAND ${LC} run --root ${SRC} --cases cases --model ${DIFF_SMALL} --report report)

# f32 against f64: the f32 engine under test, the f64 reference as the oracle (the other build's
# binary, registered when it was built before this one was configured)
if(EXISTS "${LC_PEER_LOGITCHECK}")
  if(QREF_PRECISION STREQUAL "f64")
    set(diff_pair --engine "${LC_PEER_LOGITCHECK} serve")
  else()
    set(diff_pair --oracle-precision f64)
  endif()
  lc_cli_test(NAME diff.f32_vs_f64 RC 0 STDERR_LINES 0 REQUIRES diff_small
    STDOUT "graded against oracle logitcheck-reference [^ ]+ f64 .*PASS dense\\.golden\\.text  max_abs_scaled [0-9.e-]+ <= 4e-04.*4 passed, 0 failed"
    COMMAND ${LC} run --root ${SRC} --label smoke --model ${DIFF_SMALL} ${diff_pair} --report report)
else()
  message(STATUS "cli.diff.f32_vs_f64 not registered: ${LC_PEER_LOGITCHECK} not built yet")
endif()

# the oracle cache: written once (under valgrind too, on the tiny synth checkpoint), then read
# back with an oracle that cannot start (it is not run), catching the planted bug and passing
# the correct engine
lc_cli_test(NAME diff.cache_write VALGRIND RC 0 STDERR_LINES 0 REQUIRES diff_tiny SETUP diff_cache
  FILES cache.h5 NO_GLOB "cache.h5?*" STDOUT "oracle cache: cache\\.h5"
  COMMAND ${LC} run dense.golden.text dense.batch.mixed --root ${SRC} --model ${DIFF_TINY} --oracle-cache cache.h5
  --report report)
set(DIFF_CACHE "${WORK}/cli.diff.cache_write/cache.h5")
lc_cli_test(NAME diff.cache_read RC 0 STDERR_LINES 0 REQUIRES "diff_tiny;diff_cache"
  STDOUT "graded against logitcheck-reference [^\n]*cache\\.h5.*2 passed, 0 failed"
  COMMAND ${LC} run dense.golden.text dense.batch.mixed --root ${SRC} --model ${DIFF_TINY} --oracle-cache ${DIFF_CACHE}
  --report report)
lc_cli_test(NAME diff.cache_read_fault RC 1 STDERR_LINES 1 REQUIRES "diff_tiny;diff_cache"
  STDERR "are not used" STDOUT "FAIL dense\\.golden\\.text"
  COMMAND ${LC} run dense.golden.text dense.batch.mixed --root ${SRC} --model ${DIFF_TINY} --oracle-cache ${DIFF_CACHE}
  --oracle /nonexistent/engine --inject rope_pairs_adjacent --report report)

# bad input: one line, exit 2
lc_cli_test(NAME bad.diff.cache_other_checkpoint VALGRIND RC 2 STDERR_LINES 1 REQUIRES "diff_tiny;diff_cache"
  STDERR "written for checkpoint sha256 [0-9a-f]+, --model .*tiny-dense is [0-9a-f]+"
  COMMAND ${LC} run dense.golden.text --root ${SRC} --model ${SRC}/golden/tiny-dense --oracle-cache ${DIFF_CACHE}
  --report report)
lc_cli_test(NAME bad.diff.cache_without_model VALGRIND RC 2 STDERR_LINES 1 REQUIRES "diff_tiny;diff_cache"
  STDERR "written with --model"
  COMMAND ${LC} run dense.golden.text --root ${SRC} --oracle-cache ${DIFF_CACHE} --report report)
lc_cli_test(NAME bad.diff.cache_not_oracle VALGRIND RC 2 STDERR_LINES 1
  STDERR "tiny-dense\\.h5: not an oracle cache"
  COMMAND ${LC} run dense.golden.text --root ${SRC} --oracle-cache ${SRC}/golden/tiny-dense.h5 --report report)
lc_cli_test(NAME bad.diff.model_missing VALGRIND RC 2 STDERR_LINES 1 STDERR "--model no-such-dir: no config\\.json"
  COMMAND ${LC} run dense.golden.text --root ${SRC} --model no-such-dir --report report)
lc_cli_test(NAME bad.diff.oracle_precision VALGRIND RC 2 STDERR_LINES 1 STDERR "--oracle-precision 'f8'"
  COMMAND ${LC} run dense.golden.text --root ${SRC} --oracle-precision f8 --report report)
lc_cli_test(NAME bad.diff.oracle_command VALGRIND RC 2 STDERR_LINES 1 STDERR "--oracle: "
  COMMAND ${LC} run dense.golden.text --root ${SRC} --oracle /nonexistent/engine --engine-log engine.log --report report)
# the MTP head in differential mode: the oracle drafts the same teacher-forced and chained rows
# the assembled golden holds; a swapped concatenation in the engine under test is caught
lc_cli_test(NAME diff.mtp_head RC 0 STDERR_LINES 0
  STDOUT "4 passed, 0 failed"
  COMMAND ${LC} run "*.mtp_head.*" --root ${SRC} --oracle ref --report report)
lc_cli_test(NAME diff.mtp_head_fault RC 1 STDERR_LINES 0
  STDOUT "0 passed, 4 failed"
  COMMAND ${LC} run "*.mtp_head.*" --root ${SRC} --oracle ref --inject mtp_concat_swapped --report report)
