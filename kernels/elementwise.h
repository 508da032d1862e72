// Elementwise kernels over row-strided matrices [rows, cols] (see layout.h). Every kernel that writes
// a gradient takes `accumulate` (add into dst) as the others do.
//   copy:     dst = src                       (concatenation into a slice, slicing out of one)
//   add:      dst = a + b
//   axpy:     dst += alpha * src              (gradient accumulation, residual scale-add backward)
//   scale:    dst = alpha * src
//   relu:     y = max(x, 0);    dx = dy * [y > 0]
//   sigmoid:  y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
//   fill:     dst = value
#pragma once
#include <cstdint>

#include "kernels/layout.h"

namespace kernels::cpu {
#include "kernels/elementwise_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
// sum synchronises (the result comes back to the host).
#include "kernels/elementwise_api.inc"
// CUDA only:
// Column sums (bias gradients): out[c] (+)= sum_r x[r, c].
void column_sums(ConstMatrixView x, float* out, bool accumulate);
// General strided copy of up to 8 dimensions (Tensor::copy_from between arbitrary views on the device).
void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides, float* dst,
                  const int64_t* dst_strides);
}  // namespace kernels::cuda
