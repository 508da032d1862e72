// Internal to kernels/cuda/: the CUDA backend's one private namespace, and the helper kernels that the
// cuDNN/cuBLAS wrappers (host .cpp files) need but that are no part of the public contract. No CUDA
// types, like context.h.
//
// Every private helper of the backend lives in kernels::cuda::detail:
//   - shared ones in the internal headers: check.h (status checks, stream, ScopedBuffer),
//     launch.cuh (grid-stride launcher), reduce.cuh (deterministic reductions), and this file;
//   - a source file's own helpers in an unnamed namespace inside it,
//     `namespace kernels::cuda::detail { namespace { ... } }`, so they keep internal linkage.
// Each source file then says `using namespace detail;` inside kernels::cuda, where it defines the
// public functions (kernels/*_api.inc, context.h, runtime.h). Nothing outside kernels/cuda/ names
// kernels::cuda::detail.
#pragma once
#include <cstdint>

namespace kernels {
struct BFloat16;  // kernels/bf16.h
}

namespace kernels::cuda::detail {

// dst[r, c] += v[c] for every row (a bias added to the rows of a convolution output).
void add_row_vector(int64_t rows, int64_t cols, const float* v, float* dst, int64_t ld_dst);

// strided_copy (elementwise.h) with accumulate: dst (+)= src over `shape` (at most 8 dimensions).
void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides,
                  float* dst, const int64_t* dst_strides, bool accumulate);
// The same for bf16 elements, a plain copy (every bit kept).
void strided_copy(int ndim, const int64_t* shape, const BFloat16* src, const int64_t* src_strides,
                  BFloat16* dst, const int64_t* dst_strides);

}  // namespace kernels::cuda::detail
