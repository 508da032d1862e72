// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, where op(X) is X or X^T.
//   op(A): [m, k], op(B): [k, n], C: [m, n]; lda/ldb/ldc are the row strides of A, B, C as stored.
// The CPU version calls OpenBLAS (threaded); it is the workhorse of the CPU convolution and linear ops.
#pragma once
#include <cstdint>

namespace kernels::cpu {

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Number of threads the CPU kernels (OpenMP loops and OpenBLAS) use.
int num_threads();
void set_num_threads(int threads);

}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {

// cuBLAS SGEMM, row-major arguments as above (TF32 tensor cores unless disabled in context.h).
void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace kernels::cuda
