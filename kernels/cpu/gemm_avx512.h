// The CPU GEMM's own AVX-512 kernels for the convolutions' products (gemm.cpp calls them; see
// gemm_avx512.cpp for the maths and the measurements that chose them). Internal to kernels/cpu.
#pragma once
#include <cstdint>

namespace kernels::cpu::avx512 {

// Whether this CPU runs AVX-512F (checked once). Without it gemm.cpp never calls the functions below.
bool cpu_has_avx512();

// Whether gemm.cpp gives this product to sgemm below: C[m, n] = op(A) op(B) + beta C with alpha == 1, n >= 16,
// and either A as stored (not transposed), n <= 256 or k >= 128 (pixels times a weight), or A transposed and
// B not, m <= 128 (C = A^T B summed over k pixels: the gradient of a weight with at most 128 outputs).
// Neither depends on the side that grows with the batch (m, or k), so a layer's products run on the same
// kernels for any batch.
bool suits(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha);

// Row-major C[m, n] = op(A)[m, k] op(B)[k, n] + beta C on the calling thread (gemm.h's arguments, alpha == 1,
// k > 0, not A^T B^T), for a product `suits` takes or a part of one (any rows or columns). Every element of C is the same bits however the caller splits C
// into parts (its sum runs over k in the same order whatever the part).
void sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// op(B) made ready once for several rows-form products with it (gemm.h: prepare_gemm_b): the floats of storage
// it needs (0 where the rows form reads op(B) where it lies), and the packing into `storage` (returned, 64-byte
// aligned inside it; null where nothing is packed).
int64_t prepared_b_floats(bool transpose_b, int64_t n, int64_t k);
const float* prepare_b(bool transpose_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* storage);

// sgemm's rows form, C[m, n] = op(B) prepared (or B as stored, `prepared` null) times A[m, k] + beta C.
void sgemm_prepared(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                    const float* prepared, float beta, float* c, int64_t ldc);

}  // namespace kernels::cpu::avx512
