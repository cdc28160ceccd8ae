/* SPDX-License-Identifier: MIT */
/*
 * BLAS entry points of the engine's scalar type. Internal; included by the kernel files only.
 */
#ifndef QREF_BLAS_H
#define QREF_BLAS_H

#include <cblas.h>

#if defined(QREF_PRECISION_F64)
#define QREF__GEMM cblas_dgemm
#define QREF__GEMV cblas_dgemv
#define QREF__TRSM cblas_dtrsm
#else
#define QREF__GEMM cblas_sgemm
#define QREF__GEMV cblas_sgemv
#define QREF__TRSM cblas_strsm
#endif

#endif /* QREF_BLAS_H */
