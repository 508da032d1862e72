// Pooling over NHWC activations (row stride ld, see layout.h).
//   max:  y[n, oh, ow, c] = max over the window of x (padded cells never win: they are -inf)
//   avg:  y[n, oh, ow, c] = sum over the window of x / count, where count is the full window
//         (count_include_pad, PyTorch's default, Keras's 'valid') or only the cells inside the input
//         (Keras 'same' average pooling, PyTorch count_include_pad=False).
//   global average: y[n, c] = mean over (h, w) of x[n, h, w, c]
// The window of output (oh, ow) starts at (oh*sh - pad_top, ow*sw - pad_left).
// Max-pool backward sends dy to the first maximal cell of the window in row-major window order, so it
// is deterministic and agrees with a recomputation of the forward.
#pragma once
#include <cstdint>

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
};

// Throw std::invalid_argument naming `kernel` unless m is g's input [batch * in_h * in_w, channels]
// (check_pool_input) or its output [batch * out_h * out_w, channels] (check_pool_output).
template <typename View>
void check_pool_input(const char* kernel, const Pool2dGeometry& g, const View& m) {
  check_shape(kernel, m, g.input_rows(), g.channels);
}
template <typename View>
void check_pool_output(const char* kernel, const Pool2dGeometry& g, const View& m) {
  check_shape(kernel, m, g.output_rows(), g.channels);
}

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/pool_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
// Max-pool backward is deterministic: each input cell gathers from the outputs whose window it is the
// first maximum of.
#include "kernels/pool_api.inc"
}  // namespace kernels::cuda
