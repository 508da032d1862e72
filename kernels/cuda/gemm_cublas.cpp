// Row-major SGEMM on the GPU through cuBLAS (contract in gemm.h): C = alpha op(A) op(B) + beta C.
//
// cuBLAS is column-major. A row-major matrix X [r, c] with row stride ld is, read column-major, X^T
// [c, r] with leading dimension ld. So the row-major product C = op(A) op(B) is the column-major
// product C^T = op(B)^T op(A)^T, and op(X)^T is exactly what the column-major view of the stored X
// gives when X is not transposed (CUBLAS_OP_N) and its transpose when it is (CUBLAS_OP_T):
//   cublasGemmEx(opB, opA, m' = n, n' = m, k, alpha, B, ldb, A, lda, beta, C, ldc).
// Compute type: CUBLAS_COMPUTE_32F_FAST_TF32 (TF32 tensor cores, FP32 accumulation) when
// allow_tf32(), else CUBLAS_COMPUTE_32F with the default math mode (true FP32). With beta == 0, C is
// not read (it may hold NaN), as cuBLAS documents. k == 0 gives C = beta C (0 when beta == 0), as the
// CPU version.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <climits>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace kernels::cuda {
namespace detail {
namespace {

#define CHECK_CUBLAS(expr)                                                                  \
  do {                                                                                      \
    const cublasStatus_t check_cublas_status_ = (expr);                                     \
    if (check_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                    \
      const std::string check_cublas_message_ =                                             \
          std::string("cuBLAS error ") + cublasGetStatusName(check_cublas_status_) + " (" + \
          cublasGetStatusString(check_cublas_status_) + ") in " #expr;                      \
      detail::throw_error(check_cublas_message_.c_str(), __FILE__, __LINE__);               \
    }                                                                                       \
  } while (0)

void check_fits_int(int64_t value, const char* name) {
  if (value < 0 || value > INT_MAX) {
    const std::string message = std::string("gemm: ") + name + " = " + std::to_string(value) +
                                " is negative or does not fit cuBLAS's 32-bit int";
    detail::throw_error(message.c_str(), __FILE__, __LINE__);
  }
}

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // C = beta * C; cuBLAS would do it too, but say it here as the CPU version does
    const MatrixView c_view(c, m, n, ldc);
    if (beta == 0.0f)
      fill(c_view, 0.0f);
    else
      scale(beta, c_view, c_view, false);
    return;
  }
  check_fits_int(m, "m");
  check_fits_int(n, "n");
  check_fits_int(k, "k");
  check_fits_int(lda, "lda");
  check_fits_int(ldb, "ldb");
  check_fits_int(ldc, "ldc");
  // Row strides must cover the rows as stored (cuBLAS checks the same on the column-major view).
  if (lda < (transpose_a ? m : k) || ldb < (transpose_b ? k : n) || ldc < n)
    detail::throw_error("gemm: a row stride (lda, ldb or ldc) is smaller than its row", __FILE__,
                        __LINE__);

  cublasHandle_t handle = static_cast<cublasHandle_t>(cublas_handle());
  const bool tf32 = allow_tf32();
  CHECK_CUBLAS(cublasSetMathMode(handle, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CHECK_CUBLAS(cublasGemmEx(handle, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &alpha,
                            b, CUDA_R_32F, int(ldb), a, CUDA_R_32F, int(lda), &beta, c, CUDA_R_32F,
                            int(ldc), compute, CUBLAS_GEMM_DEFAULT));
  if (sync_after_every_launch()) stream_synchronize();
}

}  // namespace kernels::cuda
