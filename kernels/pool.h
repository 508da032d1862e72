// Pooling over NHWC activations (row stride ld, see layout.h).
//   max:  y[n, oh, ow, c] = max over the window of x (padded cells never win: they are -inf)
//   avg:  y[n, oh, ow, c] = sum over the window of x / count, where count is the full window
//         (count_include_pad, PyTorch's default, Keras's 'valid') or only the cells inside the input
//         (Keras 'same' average pooling, PyTorch count_include_pad=False).
//   global average: y[n, c] = mean over (h, w) of x[n, h, w, c]
// The window of output (oh, ow) starts at (oh*sh - pad_top, ow*sw - pad_left).
// Max-pool backward sends dy to the first maximal cell of the window in row-major window order, so it
// is deterministic and agrees with a recomputation of the forward. Training saves that cell per output
// element in the forward (max_pool2d_forward_argmax: an int32 ih * in_w + iw per element of y) and
// the backward reads it instead of x (max_pool2d_backward_argmax).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/layout.h"

namespace kernels {

struct Pool2dGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - kernel_w) / stride_w + 1; }
  int64_t input_rows() const { return batch * in_h * in_w; }
  int64_t output_rows() const { return batch * out_h() * out_w(); }
  int64_t input_channels() const { return channels; }
  int64_t output_channels() const { return channels; }
};

// Each pooling kernel's operands, checked against the geometry (inputs [input_rows, C], outputs
// [output_rows, C]; a global pool's y [batch, C] dense) and unpacked into the typed pointers and
// their row strides; one check for both backends (the forwards': window_forward_operands in
// layout.h). A kernel binds them, e.g.
//   const auto [dy, ldy, dx, ldx] = pool_backward_operands("avg_pool2d_backward", g, dy_view, dx_view);

// A backward that reads only dy (average pooling).
inline ReadWrite pool_backward_operands(const char* kernel, const Pool2dGeometry& g,
                                        ConstMatrixView dy, MatrixView dx) {
  check_output(kernel, g, dy);
  check_input(kernel, g, dx);
  return {dy.f32(), dy.ld, dx.f32(), dx.ld};
}

// A backward that also reads the forward's input x (max pooling).
inline ReadReadWrite max_pool_backward_operands(const char* kernel, const Pool2dGeometry& g,
                                                ConstMatrixView x, ConstMatrixView dy,
                                                MatrixView dx) {
  check_input(kernel, g, x);
  check_output(kernel, g, dy);
  check_input(kernel, g, dx);
  return {x.f32(), x.ld, dy.f32(), dy.ld, dx.f32(), dx.ld};
}

// The arg-max a max-pool saves names a cell inside one sample as an int32.
inline void check_argmax_fits(const char* kernel, const Pool2dGeometry& g) {
  if (g.in_h * g.in_w > int64_t(INT32_MAX))
    throw std::invalid_argument(std::string(kernel) + ": an image of " + std::to_string(g.in_h) + "x" +
                                std::to_string(g.in_w) + " cells has more than 2^31 - 1 arg-max positions");
}

// Global average pooling: x (forward) / dx (backward) [batch * hw, C]; y / dy [batch, C] dense.
// Bound as [batch, channels, x, ldx, y, ldy] / [batch, channels, dy, ldy, dx, ldx].
inline MatrixReadWrite global_avg_pool_forward_operands(const char* kernel, int64_t hw,
                                                        ConstMatrixView x, MatrixView y) {
  check_shape(kernel, x, y.rows * hw, y.cols);
  check_dense(kernel, y);
  return {y.rows, y.cols, x.f32(), x.ld, y.f32(), y.ld};
}
inline MatrixReadWrite global_avg_pool_backward_operands(const char* kernel, int64_t hw,
                                                         ConstMatrixView dy, MatrixView dx) {
  check_shape(kernel, dx, dy.rows * hw, dy.cols);
  check_dense(kernel, dy);
  return {dy.rows, dy.cols, dy.f32(), dy.ld, dx.f32(), dx.ld};
}

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/pool_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
// Max-pool backward is deterministic: each input cell gathers, in (oh, ow) order, dy of the outputs
// whose saved arg-max it is (no atomics).
#include "kernels/pool_api.inc"
}  // namespace kernels::cuda
