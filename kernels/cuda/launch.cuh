// Internal to kernels/cuda/: the grid-stride launcher shared by the elementwise-style kernels.
// for_each_element(rows, cols, op, name) runs op(r, c) for every element of a [rows, cols] matrix on
// the current stream: thread i handles (r, c) = (i / cols, i % cols), so a warp covers consecutive
// columns of a row (coalesced for NHWC rows). The grid is capped (grid_size) and strides: each thread
// divides once for its first element and then steps (r, c) by the stride without dividing. Index
// arithmetic is 32-bit when the element count allows it (64-bit division is slow on the GPU).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/check.h"

namespace kernels::cuda::detail {

constexpr int kElementwiseThreads = 256;

// The thread's first (r, c) takes one division; after that it steps by the grid's stride, which is
// stride_rows rows and stride_cols columns, with one compare-and-carry: no division per element.
template <typename Index, typename Op>
__global__ void __launch_bounds__(kElementwiseThreads)
    for_each_kernel(Index cols, Index total, Index stride_rows, Index stride_cols, Op op) {
  const Index stride = Index(gridDim.x) * kElementwiseThreads;
  Index i = Index(blockIdx.x) * kElementwiseThreads + threadIdx.x;
  if (i >= total) return;
  Index r = i / cols, c = i - r * cols;
  for (; i < total; i += stride) {
    op(int64_t(r), int64_t(c));
    r += stride_rows;
    c += stride_cols;
    if (c >= cols) {
      c -= cols;
      ++r;
    }
  }
}

template <typename Op>
void for_each_element(int64_t rows, int64_t cols, Op op, const char* name) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t total = rows * cols;
  const unsigned grid = grid_size(total, kElementwiseThreads);
  const int64_t stride = int64_t(grid) * kElementwiseThreads;
  const int64_t stride_rows = stride / cols, stride_cols = stride % cols;
  if (total < (int64_t(1) << 31))  // i + stride stays below 2^32: 32-bit indices are safe
    for_each_kernel<uint32_t, Op><<<grid, kElementwiseThreads, 0, stream()>>>(
        uint32_t(cols), uint32_t(total), uint32_t(stride_rows), uint32_t(stride_cols), op);
  else
    for_each_kernel<int64_t, Op>
        <<<grid, kElementwiseThreads, 0, stream()>>>(cols, total, stride_rows, stride_cols, op);
  check_launch(name, __FILE__, __LINE__);
}

// Runs op(i) for i in [0, n) (a flat array), grid-stride.
template <typename Op>
__global__ void __launch_bounds__(kElementwiseThreads) for_each_index_kernel(int64_t n, Op op) {
  for (int64_t i = int64_t(blockIdx.x) * kElementwiseThreads + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kElementwiseThreads)
    op(i);
}

template <typename Op>
void for_each_index(int64_t n, Op op, const char* name) {
  if (n <= 0) return;
  for_each_index_kernel<Op>
      <<<grid_size(n, kElementwiseThreads), kElementwiseThreads, 0, stream()>>>(n, op);
  check_launch(name, __FILE__, __LINE__);
}

__device__ inline void store(float* dst, float value, bool accumulate) {
  *dst = accumulate ? *dst + value : value;
}

}  // namespace kernels::cuda::detail
