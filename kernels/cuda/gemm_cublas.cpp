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
// gemm_mixed (bf16 A and B): the same call with CUDA_R_16BF for A and B, CUDA_R_16BF or CUDA_R_32F for
// C, compute CUBLAS_COMPUTE_32F (f32 products and accumulation; cuBLAS may use bf16 tensor cores, which
// multiply exactly and accumulate in f32), C rounded once to its type. With f32 A and B and a bf16 C,
// gemm into an f32 buffer and convert (convert.h): cuBLAS has no f32-input, bf16-output GEMM.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <climits>
#include <string>

#include "kernels/convert.h"
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

// The checks every cuBLAS call here needs: sizes that fit int, row strides that cover their rows.
void check_gemm_sizes(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, int64_t lda,
                      int64_t ldb, int64_t ldc) {
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
}

cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

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
  check_gemm_sizes(transpose_a, transpose_b, m, n, k, lda, ldb, ldc);

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

void gemm_mixed(bool transpose_a, bool transpose_b, float alpha, ConstMatrixView a, ConstMatrixView b, float beta,
                MatrixView c) {
  const auto [m, n, k] = gemm_mixed_operands("gemm_mixed", transpose_a, transpose_b, a, b, c);
  if (m <= 0 || n <= 0) return;
  if (a.dtype == DType::f32 && c.dtype == DType::f32) {
    gemm(transpose_a, transpose_b, m, n, k, alpha, a.f32(), a.ld, b.f32(), b.ld, beta, c.f32(), c.ld);
    return;
  }
  if (a.dtype == DType::f32 || k <= 0) {  // an f32 result, then rounded once into the bf16 C
    ScopedBuffer result(size_t(m * n) * sizeof(float), "gemm_mixed f32 result");
    const MatrixView result_view(result.as<float>(), m, n, n);
    if (beta != 0.0f) convert(c, result_view);
    if (a.dtype == DType::f32) {
      gemm(transpose_a, transpose_b, m, n, k, alpha, a.f32(), a.ld, b.f32(), b.ld, beta, result.as<float>(), n);
    } else if (beta == 0.0f) {  // k == 0: C = beta C
      fill(result_view, 0.0f);
    } else {
      scale(beta, result_view, result_view, false);
    }
    convert(result_view, c);
    return;
  }
  check_gemm_sizes(transpose_a, transpose_b, m, n, k, a.ld, b.ld, c.ld);
  cublasHandle_t handle = static_cast<cublasHandle_t>(cublas_handle());
  // cuBLAS may otherwise add split-K partial sums in the output type when C is bf16 (rounding C several
  // times); the contract here is f32 accumulation and one rounding. gemm() sets its own mode per call.
  CHECK_CUBLAS(cublasSetMathMode(
      handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  CHECK_CUBLAS(cublasGemmEx(handle, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &alpha,
                            b.data, CUDA_R_16BF, int(b.ld), a.data, CUDA_R_16BF, int(a.ld), &beta, c.data,
                            cuda_type(c.dtype), int(c.ld), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (sync_after_every_launch()) stream_synchronize();
}

}  // namespace kernels::cuda
