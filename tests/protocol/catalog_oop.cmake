# SPDX-License-Identifier: MIT
# The whole catalog in process and through `logitcheck serve` over the engine protocol: the two
# runs must exit alike and their results.json must be equal bit for bit, except what may
# differ (timings, host, start time, the engine's detail: in process vs served, and the command).
#
#   cmake -DLC=logitcheck -DDIFF=results_diff -DROOT=src -DWORK=dir [-DSELECT="--all"] -P catalog_oop.cmake
if(NOT SELECT)
  set(SELECT --all)
endif()
separate_arguments(select_args UNIX_COMMAND "${SELECT}")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

execute_process(COMMAND "${LC}" run ${select_args} --root "${ROOT}" --report "${WORK}/in-process"
  RESULT_VARIABLE rc_in OUTPUT_FILE "${WORK}/in-process.out" ERROR_FILE "${WORK}/in-process.err")
execute_process(COMMAND "${LC}" run ${select_args} --root "${ROOT}" --report "${WORK}/serve"
  --engine "${LC} serve" --engine-timeout 120 --engine-log "${WORK}/serve.log"
  RESULT_VARIABLE rc_out OUTPUT_FILE "${WORK}/serve.out" ERROR_FILE "${WORK}/serve.err")

foreach(run in-process serve)
  if(NOT EXISTS "${WORK}/${run}/results.json")
    file(READ "${WORK}/${run}.err" err)
    message(FATAL_ERROR "the ${run} run wrote no results.json; its stderr:\n${err}")
  endif()
endforeach()
if(NOT rc_in STREQUAL rc_out)
  file(READ "${WORK}/serve.err" err)
  message(FATAL_ERROR "exit codes differ: in process ${rc_in}, through serve ${rc_out}; serve's stderr:\n${err}")
endif()
if(NOT rc_in MATCHES "^[01]$")
  file(READ "${WORK}/in-process.err" err)
  message(FATAL_ERROR "the in-process run exited ${rc_in} (an ERROR or bad input):\n${err}")
endif()

execute_process(COMMAND "${DIFF}" "${WORK}/in-process/results.json" "${WORK}/serve/results.json"
  --ignore seconds --ignore started --ignore host --ignore engine_detail
  RESULT_VARIABLE rc_diff OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc_diff EQUAL 0)
  message(FATAL_ERROR "results.json through serve differs from the in-process run")
endif()
