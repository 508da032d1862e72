// Elementwise kernels over row-strided matrices [rows, cols] (see layout.h). Every kernel that writes
// a gradient takes `accumulate` (add into dst) as the others do.
//   copy:     dst = src                       (concatenation into a slice, slicing out of one)
//   add:      dst = a + b
//   axpy:     dst += alpha * src              (gradient accumulation, residual scale-add backward)
//   scale:    dst = alpha * src
//   relu:     y = max(x, 0);    dx = dy * [y > 0]
//   scaled residual: y = act(x + scale * up);  dx = g, dup = scale * g,  g = dy (* [y > 0] with the ReLU)
//   sigmoid:  y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
//   fill:     dst = value
#pragma once
#include <cstdint>

#include "kernels/layout.h"

namespace kernels {

// Each elementwise kernel's operands, checked (every input has the destination's shape) and
// unpacked into [rows, cols] of the destination, the typed pointers and their row strides; one
// check for both backends. A kernel binds them, e.g.
//   const auto [rows, cols, x, ldx, y, ldy] = unary_operands("relu_forward", x_view, y_view);
inline MatrixReadWrite unary_operands(const char* kernel, ConstMatrixView src, MatrixView dst) {
  check_same_shape(kernel, src, dst);
  return {dst.rows, dst.cols, src.f32(), src.ld, dst.f32(), dst.ld};
}

// dst = f(a, b) (add; an activation's backward, a = its forward output y, b = dy).
inline MatrixReadReadWrite binary_operands(const char* kernel, ConstMatrixView a,
                                           ConstMatrixView b, MatrixView dst) {
  check_same_shape(kernel, a, dst);
  check_same_shape(kernel, b, dst);
  return {dst.rows, dst.cols, a.f32(), a.ld, b.f32(), b.ld, dst.f32(), dst.ld};
}

}  // namespace kernels

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
// General strided copy of up to 8 dimensions (Tensor::copy_from between arbitrary views on the device);
// the bf16 one moves the 2-byte elements' bits.
void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides, float* dst,
                  const int64_t* dst_strides);
void strided_copy(int ndim, const int64_t* shape, const BFloat16* src, const int64_t* src_strides, BFloat16* dst,
                  const int64_t* dst_strides);
}  // namespace kernels::cuda
