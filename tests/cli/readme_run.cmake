# SPDX-License-Identifier: MIT
# Runs README commands in a fresh directory that sees the source tree's golden/ and cases/:
# every command of CMDS_FILE, one a line (its prerequisites first, the command under test
# last), must exit 0 or 1 (a command of the README is never bad usage, 2, or an internal
# error, 3).
#
#   cmake -DCMDS_FILE=f -DLC=path/to/logitcheck -DSRC=source -DWORK=dir -P readme_run.cmake
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(CREATE_LINK "${SRC}/golden" "${WORK}/golden" SYMBOLIC)
file(CREATE_LINK "${SRC}/cases" "${WORK}/cases" SYMBOLIC)
file(STRINGS "${CMDS_FILE}" cmds)
foreach(cmd IN LISTS cmds)
  string(REGEX REPLACE "^\\./build(-f64)?/logitcheck" "${LC}" run "${cmd}")
  execute_process(COMMAND sh -c "${run}" WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${cmd}\n  exit ${rc}")
  if(NOT rc MATCHES "^[01]$")
    message(FATAL_ERROR "README command failed (exit ${rc}): ${cmd}\n  stdout: ${out}\n  stderr: ${err}")
  endif()
endforeach()
