// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, where op(X) is X or X^T.
//   op(A): [m, k], op(B): [k, n], C: [m, n]; lda/ldb/ldc are the row strides of A, B, C as stored.
// The CPU version calls OpenBLAS, or oneMKL in a build that asks for it (ENGINE_BLAS=MKL), split over the
// threads; it is the workhorse of the CPU convolution and linear ops.
//
// gemm_mixed is the same product over matrix views of mixed element types (docs/precision.md): A and B
// both f32 or both bf16, C f32 or bf16; the inputs are widened exactly, every product and sum is f32
// (f32 accumulation), and C is rounded once to its type (nearest even, kernels/bf16.h) from
// alpha op(A) op(B) + beta C, where a bf16 C is read widened. The CPU version widens A and B into f32
// copies and runs gemm (the reference); the CUDA one runs cuBLAS on the bf16 operands directly
// (CUBLAS_COMPUTE_32F), so the two differ in summation order only, and a bf16 C by one rounding step
// where that order moves a sum across a rounding boundary.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/layout.h"

namespace kernels {

// gemm_mixed's sizes after its checks (A and B of one element type; the views' shapes agree with
// op(A) [m, k], op(B) [k, n], C [m, n]); one check for both backends.
struct GemmSizes {
  int64_t m, n, k;
};

inline GemmSizes gemm_mixed_operands(const char* kernel, bool transpose_a, bool transpose_b, ConstMatrixView a,
                                     ConstMatrixView b, MatrixView c) {
  if (a.dtype != b.dtype)
    throw std::invalid_argument(std::string("kernels: ") + kernel + ": A is " + dtype_name(a.dtype) + " and B " +
                                dtype_name(b.dtype) + "; both must be f32 or both bf16");
  const int64_t m = transpose_a ? a.cols : a.rows, k = transpose_a ? a.rows : a.cols;
  const int64_t n = transpose_b ? b.rows : b.cols;
  check_shape(kernel, b, transpose_b ? n : k, transpose_b ? k : n);
  check_shape(kernel, c, m, n);
  return {m, n, k};
}

}  // namespace kernels

namespace kernels::cpu {

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The same product as one call of the BLAS on the calling thread, never split: for kernels whose own
// chunks, fixed by the geometry, are the parallel work (the convolutions), so that a chunk's product is the
// same call, and the same bits, for any number of threads (gemm splits a large product in two).
void gemm_serial(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// op(B) [k, n] made ready once for many products with it, each C[rows, n] (+)= A[rows, k] op(B) on the calling
// thread (a convolution's chunks against its weight): where the own AVX-512 kernels take those products
// (use_own_gemm_kernels below) and would copy op(B) into their layout for each, it is copied once, into
// `storage`: gemm_prepared_b_floats(...) floats (0 where nothing is copied; `storage_floats` says how many the
// caller got) that the caller provides and keeps until the products are done. gemm_serial_prepared gives the
// same bits as gemm_serial(false, transpose_b, ..., alpha 1), and runs on the BLAS where the own kernels do
// not take the product (or were switched on after the storage was sized).
struct PreparedGemmB {
  bool transpose_b = false;
  int64_t n = 0, k = 0;
  const float* b = nullptr;  // op(B) as given
  int64_t ldb = 0;
  bool own = false;                // the own kernels run the products...
  const float* packed = nullptr;   // ... on this copy of op(B), or on B where it lies (null)
};
int64_t gemm_prepared_b_floats(bool transpose_b, int64_t n, int64_t k);
PreparedGemmB prepare_gemm_b(bool transpose_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* storage,
                             int64_t storage_floats);
void gemm_serial_prepared(int64_t m, const float* a, int64_t lda, const PreparedGemmB& b, float beta, float* c,
                          int64_t ldc);

// C = alpha op(A) op(B) + beta C over views of mixed element types (see the file comment).
void gemm_mixed(bool transpose_a, bool transpose_b, float alpha, ConstMatrixView a, ConstMatrixView b, float beta,
                MatrixView c);

// The library behind gemm and the kernels it runs, for benchmark reports: "OpenBLAS 0.3.21, SkylakeX
// kernels", "oneMKL 2026.2, sequential" or "built-in", followed by "; own AVX-512 kernels for the
// convolutions" where those run.
std::string gemm_library();

// On processors with two 512-bit FMA units (kernels/cpu_info.h), gemm and gemm_serial run the convolutions'
// products (pixels times a weight, and a weight's gradient summed over pixels) on the engine's own AVX-512
// kernels (kernels/cpu/gemm_avx512.cpp) and the rest on the BLAS. ENGINE_CPU_GEMM in the environment: auto
// (that default), own (wherever AVX-512F is) or blas (never); use_own_gemm_kernels(on) sets it in a running
// program and returns whether they are now on (never without AVX-512F). Which kernel a product gets depends
// on its shape alone, not on the threads or the batch.
bool use_own_gemm_kernels(bool on);
bool own_gemm_kernels();

// Number of threads the CPU kernels (OpenMP loops, and the BLAS calls they split) use.
int num_threads();
void set_num_threads(int threads);

}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {

// cuBLAS SGEMM, row-major arguments as above (TF32 tensor cores unless disabled in context.h).
void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// cuBLAS GEMM over views of mixed element types (see the file comment): bf16 A and B with f32 compute
// (CUBLAS_COMPUTE_32F, never TF32) and a bf16 or f32 C; f32 A and B as gemm (TF32 as allowed), with a
// bf16 C rounded from an f32 result.
void gemm_mixed(bool transpose_a, bool transpose_b, float alpha, ConstMatrixView a, ConstMatrixView b, float beta,
                MatrixView c);

}  // namespace kernels::cuda
