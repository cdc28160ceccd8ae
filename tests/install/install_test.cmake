# SPDX-License-Identifier: MIT
# cmake --install into a fresh prefix, then a tiny consumer built against it twice: through
# find_package(qref) and through pkg-config; both must run on CKPT and print the same line,
# naming the build's precision.
#
#   cmake -DBUILD_DIR=.. -DSRC=.. -DWORK=.. -DCKPT=.. -DPRECISION=f32|f64 -P install_test.cmake
cmake_minimum_required(VERSION 3.25)
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE errout)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${errout}")
  endif()
  set(OUT "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(P "${WORK}/prefix")
run("cmake --install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${P}")
include(GNUInstallDirs)
foreach(f bin/logitcheck include/qref.h include/qref_vjp.h ${CMAKE_INSTALL_LIBDIR}/libqref.a
          ${CMAKE_INSTALL_LIBDIR}/cmake/qref/qrefConfig.cmake ${CMAKE_INSTALL_LIBDIR}/cmake/qref/qrefTargets.cmake
          ${CMAKE_INSTALL_LIBDIR}/pkgconfig/qref.pc share/doc/qref/LICENSE)
  if(NOT EXISTS "${P}/${f}")
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

# 1. find_package
run("configure the consumer" ${CMAKE_COMMAND} -S "${SRC}/tests/install" -B "${WORK}/cmake-build"
    "-DCMAKE_PREFIX_PATH=${P}" -DCMAKE_BUILD_TYPE=Release)
run("build the consumer" ${CMAKE_COMMAND} --build "${WORK}/cmake-build")
run("run the find_package consumer" "${WORK}/cmake-build/consumer" "${CKPT}")
set(out_cmake "${OUT}")

# 2. pkg-config
set(ENV{PKG_CONFIG_PATH} "${P}/${CMAKE_INSTALL_LIBDIR}/pkgconfig")
run("pkg-config" pkg-config --cflags --libs qref)
string(STRIP "${OUT}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run("cc with pkg-config flags" cc -std=c11 -O1 -o "${WORK}/consumer-pc" "${SRC}/tests/install/consumer.c" ${flags})
run("run the pkg-config consumer" "${WORK}/consumer-pc" "${CKPT}")
set(out_pc "${OUT}")

if(NOT out_cmake MATCHES "^qref ${PRECISION}: vocab [0-9]+, argmax [0-9]+, logit\\[0\\] ")
  message(FATAL_ERROR "find_package consumer printed: ${out_cmake}")
endif()
if(NOT out_cmake STREQUAL out_pc)
  message(FATAL_ERROR "the two consumers disagree:\n  find_package: ${out_cmake}  pkg-config:   ${out_pc}")
endif()
message(STATUS "both consumers: ${out_cmake}")
