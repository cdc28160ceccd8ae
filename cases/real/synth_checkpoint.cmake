# SPDX-License-Identifier: MIT
# CTest fixture of the real-scale cases: writes the checkpoint of a published-shape preset with
# `logitcheck synth` unless the directory is already there (every case that uses it checks its
# hash before it runs, so a stale or damaged directory is an input error, never a pass).
#   cmake -DLC=<logitcheck> -DPRESET=P -DSEED=S -DSHA256=HEX -DOUT=DIR -P synth_checkpoint.cmake
foreach(v LC PRESET SEED SHA256 OUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "synth_checkpoint.cmake: -D${v}= is required")
  endif()
endforeach()
if(IS_DIRECTORY "${OUT}")
  message(STATUS "${OUT}: present (its hash is checked by the cases)")
  return()
endif()
get_filename_component(parent "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${parent}")
execute_process(COMMAND "${LC}" synth --preset ${PRESET} --seed ${SEED} --out "${OUT}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "logitcheck synth --preset ${PRESET} --seed ${SEED} --out ${OUT}: exit ${rc}: ${err}")
endif()
if(NOT out MATCHES "${SHA256}")
  message(FATAL_ERROR "logitcheck synth --preset ${PRESET} --seed ${SEED}: hash is not ${SHA256}: ${out}")
endif()
message(STATUS "${OUT}: written, sha256 ${SHA256}")
