# SPDX-License-Identifier: MIT
# The corpus of malformed inputs (tests/corpus/<input type>/, written by make_corpus.py; the
# special, huge and HDF5 ones made at test time). Each test feeds one input to the command
# that reads it and asserts: exit code 2, exactly one line on stderr naming the file and the
# problem, an earlier output left byte-identical (SENTINEL), no temporary file left behind, and
# (cli.valgrind.corpus.*, in the f32 build: the readers do not depend on the engine precision,
# and CI time is better spent elsewhere than on a second valgrind pass) no leak or invalid
# access under valgrind.
# Included from tests/cli/CMakeLists.txt (it uses lc_cli_test, LC, SRC, WORK).

set(CORPUS "${PROJECT_SOURCE_DIR}/tests/corpus")
set(ck ${SRC}/golden/tiny-dense)

add_executable(lc_h5_mutate ${CORPUS}/h5_mutate.c)
target_include_directories(lc_h5_mutate PRIVATE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(lc_h5_mutate PRIVATE ${HDF5_DEFINITIONS})
target_link_libraries(lc_h5_mutate PRIVATE ${HDF5_C_LIBRARIES} ${LC_LIBM})
set(MUTATE "$<TARGET_FILE:lc_h5_mutate>")

# lc_corpus_test(NAME n STDERR re [PRE step...] COMMAND arg...): the common expectations
function(lc_corpus_test)
  cmake_parse_arguments(T "" "NAME;STDERR;SENTINEL" "PRE;COMMAND" ${ARGN})
  if(NOT T_SENTINEL)
    set(T_SENTINEL out.h5)
  endif()
  set(vg "")
  if(QREF_PRECISION STREQUAL "f32")
    set(vg VALGRIND)
  endif()
  lc_cli_test(NAME corpus.${T_NAME} ${vg} RC 2 STDERR_LINES 1 STDERR "${T_STDERR}"
    SENTINEL ${T_SENTINEL} NO_GLOB "${T_SENTINEL}?*" PRE ${T_PRE} COMMAND ${T_COMMAND})
endfunction()

# ---------------------------------------------------------------- config.json (infer --model ck)
foreach(pair
    "control_byte|control character"  "count_wrap|do not fit in a 64-bit size"
    "deep_nesting|malformed JSON"  "duplicate_key|key 'hidden_size' appears twice in object 'text_config'"
    "duplicate_top_key|key 'image_token_id' appears twice"  "empty|empty"
    "heads_wrap|num_attention_heads x head_dim x 2 is more than"
    "layers_times_heads|linear_key_head_dim is more than"  "nul_escape|control character or NUL"
    "state_wrap|linear_value_head_dim is more than"  "trailing_garbage|parsing stopped at line 78")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  lc_corpus_test(NAME config.${name} STDERR "ck/config\\.json: .*${re}"
    PRE "copy|${CORPUS}/config/${name}.json|ck/config.json"
    COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
endforeach()
lc_corpus_test(NAME config.sizes_past_files
  STDERR "ck/config\\.json: implies [0-9]+ weights but the checkpoint's tensors hold 548520"
  PRE "copy|${CORPUS}/config/sizes_past_files.json|ck/config.json" "copy|${ck}/model.safetensors|ck/model.safetensors"
  COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
# made at test time: special files, a link leaving the checkpoint, a file too big to be a config
lc_corpus_test(NAME config.fifo STDERR "ck/config\\.json: not a regular file \\(a FIFO\\)"
  PRE "mkdir|ck" "run|mkfifo|ck/config.json" COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
lc_corpus_test(NAME config.dev_zero STDERR "ck/config\\.json: not a regular file \\(a device\\)"
  PRE "mkdir|ck" "run|ln|-s|/dev/zero|ck/config.json" COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
lc_corpus_test(NAME config.directory STDERR "ck/config\\.json: not a regular file \\(a directory\\)"
  PRE "mkdir|ck/config.json" COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
lc_corpus_test(NAME config.symlink_outside STDERR "ck/config\\.json: resolves to .*outside the checkpoint directory"
  PRE "mkdir|ck" "run|ln|-s|${ck}/config.json|ck/config.json" COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
lc_corpus_test(NAME config.huge_sparse STDERR "ck/config\\.json: 4294967296 bytes, more than"
  PRE "mkdir|ck" "run|truncate|-s|4G|ck/config.json" COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)

# ---------------------------------------------------------------- preprocessor_config.json
foreach(pair "duplicate_key|key 'merge_size' appears twice" "max_pixels_huge|size\\.longest_edge: .*limit"
    "min_pixels_huge|min_pixels: .*limit" "nul_escape|control character or NUL")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  lc_corpus_test(NAME preprocessor.${name} STDERR "ck/preprocessor_config\\.json: .*${re}"
    PRE "copy|${ck}/config.json|ck/config.json" "copy|${CORPUS}/preprocessor/${name}.json|ck/preprocessor_config.json"
    COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
endforeach()
lc_corpus_test(NAME preprocessor.fifo STDERR "ck/preprocessor_config\\.json: not a regular file \\(a FIFO\\)"
  PRE "copy|${ck}/config.json|ck/config.json" "run|mkfifo|ck/preprocessor_config.json"
  COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)

# ---------------------------------------------------------------- model.safetensors
foreach(pair "entry_duplicate_key|key 'dtype' appears twice in object 't'"
    "header_not_object|expected a JSON object" "header_nul|NUL byte"
    "header_past_end|header length 1099511627776 exceeds" "length_cut|shorter than the 8-byte header length"
    "offsets_huge|outside the data section" "shape_wrap|too many elements" "tensor_duplicate|key 't' appears twice")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  lc_corpus_test(NAME safetensors.${name} STDERR "ck/model\\.safetensors: .*${re}"
    PRE "copy|${ck}/config.json|ck/config.json" "copy|${CORPUS}/safetensors/${name}.safetensors|ck/model.safetensors"
    COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
endforeach()
lc_corpus_test(NAME safetensors.fifo STDERR "ck/model\\.safetensors: not a regular file \\(a FIFO\\)"
  PRE "copy|${ck}/config.json|ck/config.json" "run|mkfifo|ck/model.safetensors"
  COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
lc_corpus_test(NAME safetensors.symlink_outside STDERR "ck/model\\.safetensors: resolves to .*outside the checkpoint"
  PRE "copy|${ck}/config.json|ck/config.json" "run|ln|-s|${ck}/model.safetensors|ck/model.safetensors"
  COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)

# ---------------------------------------------------------------- model.safetensors.index.json
foreach(pair "absolute|shard '/etc/hostname' is not a relative path"
    "dotdot|shard '\\.\\./tiny-dense/model\\.safetensors' is not a relative path"
    "duplicate_key|key 't' appears twice in object 'weight_map'" "nul_escape|control character or NUL")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  lc_corpus_test(NAME index.${name} STDERR "ck/model\\.safetensors\\.index\\.json: .*${re}"
    PRE "copy|${ck}/config.json|ck/config.json" "copy|${CORPUS}/index/${name}.json|ck/model.safetensors.index.json"
    COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)
endforeach()
# a shard that is a link out of the checkpoint directory
lc_corpus_test(NAME index.shard_symlink_outside STDERR "ck/model\\.safetensors\\.index\\.json: .*resolves to .*outside the checkpoint"
  PRE "copy|${ck}/config.json|ck/config.json" "write|ck/model.safetensors.index.json|{\"weight_map\": {\"lm_head.weight\": \"s1.safetensors\"}}"
      "run|ln|-s|${ck}/model.safetensors|ck/s1.safetensors"
  COMMAND ${LC} infer --model ck --ids 1,2,3 --out out.h5)

# ---------------------------------------------------------------- PNG (infer --image)
set(img_ids 5,998,1000,999,6)
foreach(pair "splt_chunk_2gb|chunk 'sPLT' at byte 33 declares 2147483632 bytes"
    "text_chunk_2gb|chunk 'tEXt' at byte 33 declares 2147483632 bytes"
    "unknown_chunk_2gb|chunk 'zzZz' at byte 33 declares" "zero_width|width is zero"
    "aspect_300x1|aspect ratio 300, above the processor's limit of 200")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  lc_corpus_test(NAME png.${name} STDERR "corpus/png/${name}\\.png: .*${re}"
    COMMAND ${LC} infer --model ${ck} --ids ${img_ids} --image ${CORPUS}/png/${name}.png --out out.h5)
endforeach()
lc_corpus_test(NAME png.fifo STDERR "in\\.png: cannot open PNG: not a regular file \\(a FIFO\\)"
  PRE "run|mkfifo|in.png" COMMAND ${LC} infer --model ${ck} --ids ${img_ids} --image in.png --out out.h5)

# ---------------------------------------------------------------- goldens (run, compare)
# a root holding what dense.golden.text needs, with its golden broken in one way
set(golden_root "copy|${TEXT_CASES}/golden.json|root/cases/golden.json" "copy|${ck}/config.json|root/golden/tiny-dense/config.json"
    "copy|${ck}/model.safetensors|root/golden/tiny-dense/model.safetensors")
set(G /cases/dense.golden.text)
foreach(pair "format|format 'not-logitcheck' is not one this suite reads" "version|format_version 2 is not supported"
    "nan_logits|'${G}/prefill_logits': value nan at flat index 0 is not finite"
    "inf_decode|'${G}/decode_logits': value inf at flat index 0 is not finite"
    "fractional_ids|'${G}/input_ids': expected integers, found floating point" "empty_ids|'${G}/input_ids' is empty"
    "ids_oob|'${G}/input_ids': token id 5000 at index 0 is outside the vocabulary \\(1024 entries\\)"
    "huge_dims|prefill_logits': 1099511627776 elements need"
    "wrap_dims|prefill_logits': its dimensions multiply past 64-bit sizes"
    "external_link|prefill_logits' is an external link" "external_storage|prefill_logits' keeps its data in external files")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  # (the run itself completes with the case in error and writes its reports: the sentinel is
  # the default one)
  lc_corpus_test(NAME golden.${name}
    STDERR "root/golden/tiny-dense\\.h5: .*${re}"
    PRE ${golden_root} "run|${MUTATE}|${name}|${SRC}/golden/tiny-dense.h5|root/golden/tiny-dense.h5|${G}"
    COMMAND ${LC} run dense.golden.text --root root --report report)
endforeach()
# the declared size against what the file stores, with the memory limit out of the way
lc_corpus_test(NAME golden.huge_dims_no_limit STDERR "bad\\.h5: .*prefill_logits' declares 8796093022208 bytes but the file stores 0"
  PRE "run|${MUTATE}|huge_dims|${SRC}/golden/tiny-dense.h5|bad.h5|${G}"
  COMMAND ${LC} compare --max-memory 100T ${SRC}/golden/tiny-dense.h5:${G} bad.h5:${G})
lc_corpus_test(NAME golden.fifo STDERR "in\\.h5: not a regular file \\(a FIFO\\)"
  PRE "run|mkfifo|in.h5" COMMAND ${LC} compare in.h5 ${SRC}/golden/tiny-dense.h5:${G})
# compare inputs that are not goldens (tests/cli/data/compare.h5 has no format attribute)
lc_corpus_test(NAME compare.huge_dims STDERR "bad\\.h5: .*'ref/prefill_logits' declares 8796093022208 bytes but the file stores 0"
  PRE "run|${MUTATE}|huge_dims|${CMP}|bad.h5|/ref"
  COMMAND ${LC} compare --max-memory 100T bad.h5:/ref ${CMP}:/ref)
lc_corpus_test(NAME compare.wrap_dims STDERR "bad\\.h5: .*'ref/prefill_logits': its dimensions multiply past 64-bit sizes"
  PRE "run|${MUTATE}|wrap_dims|${CMP}|bad.h5|/ref" COMMAND ${LC} compare bad.h5:/ref ${CMP}:/ref)
lc_corpus_test(NAME compare.two_empty_files STDERR "a\\.h5: not a readable HDF5 file"
  PRE "write|a.h5|" "write|b.h5|" COMMAND ${LC} compare a.h5 b.h5)
lc_corpus_test(NAME compare.dev_zero STDERR "/dev/zero: not a regular file \\(a device\\)"
  COMMAND ${LC} compare /dev/zero ${CMP}:/ref)

# ---------------------------------------------------------------- results JSON (run --base)
set(base_run ${LC} run dense.golden.text --root ${SRC} --cases ${TEXT_CASES} --report report --base)
foreach(pair "control_byte|control character" "duplicate_key|key 'version' appears twice"
    "nul_escape|control character or NUL" "trailing_garbage|parsing stopped at line 1 column 61")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 name)
  list(GET pair 1 re)
  lc_corpus_test(NAME results.${name} SENTINEL report/results.json STDERR "corpus/results/${name}\\.json: .*${re}"
    COMMAND ${base_run} ${CORPUS}/results/${name}.json)
endforeach()
lc_corpus_test(NAME results.fifo SENTINEL report/results.json STDERR "base\\.json: not a regular file \\(a FIFO\\)"
  PRE "run|mkfifo|base.json" COMMAND ${base_run} base.json)
lc_corpus_test(NAME results.dev_zero SENTINEL report/results.json STDERR "/dev/zero: not a regular file \\(a device\\)"
  COMMAND ${base_run} /dev/zero)
lc_corpus_test(NAME results.huge_sparse SENTINEL report/results.json STDERR "base\\.json: 4294967296 bytes, more than the limit"
  PRE "run|truncate|-s|4G|base.json" COMMAND ${base_run} base.json)

# ---------------------------------------------------------------- the memory limit
lc_corpus_test(NAME limit.golden_dataset STDERR "tiny-dense\\.h5: dataset '[^']+': [0-9]+ elements need [0-9]+ bytes, more than the memory limit of 65536"
  COMMAND ${LC} compare --max-memory 64K ${SRC}/golden/tiny-dense.h5:${G} ${SRC}/golden/tiny-dense.h5:${G})
lc_corpus_test(NAME limit.bad_value STDERR "--max-memory '12X': expected a size"
  COMMAND ${LC} compare --max-memory 12X ${CMP}:/ref ${CMP}:/ref)
