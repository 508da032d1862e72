// Internal to kernels/cuda/: helper kernels that the cuDNN/cuBLAS wrappers (host .cpp files) need but
// that are no part of the public contract. No CUDA types, like context.h.
#pragma once
#include <cstdint>

namespace kernels::cuda::internal {

// dst[r, c] += v[c] for every row (a bias added to the rows of a convolution output).
void add_row_vector(int64_t rows, int64_t cols, const float* v, float* dst, int64_t ld_dst);

// strided_copy (elementwise.h) with accumulate: dst (+)= src over `shape` (at most 8 dimensions).
void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides,
                  float* dst, const int64_t* dst_strides, bool accumulate);

}  // namespace kernels::cuda::internal
