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

namespace kernels {

struct Pool2dGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - kernel_w) / stride_w + 1; }
};

}  // namespace kernels

namespace kernels::cpu {

void max_pool2d_forward(const Pool2dGeometry& g, const float* x, int64_t ldx, float* y, int64_t ldy);
// Needs the forward input x to find the arg-max again (no index tensor is stored).
void max_pool2d_backward(const Pool2dGeometry& g, const float* x, int64_t ldx, const float* dy,
                         int64_t ldy, float* dx, int64_t ldx_grad, bool accumulate);

void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, const float* x, int64_t ldx,
                        float* y, int64_t ldy);
void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, const float* dy,
                         int64_t ldy, float* dx, int64_t ldx, bool accumulate);

// x: [batch, hw, channels] row stride ldx -> y: [batch, channels] dense.
void global_avg_pool_forward(int64_t batch, int64_t hw, int64_t channels, const float* x, int64_t ldx,
                             float* y);
void global_avg_pool_backward(int64_t batch, int64_t hw, int64_t channels, const float* dy, float* dx,
                              int64_t ldx, bool accumulate);

}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {

void max_pool2d_forward(const Pool2dGeometry& g, const float* x, int64_t ldx, float* y, int64_t ldy);
// Deterministic: each input cell gathers from the outputs whose window it is the first maximum of.
void max_pool2d_backward(const Pool2dGeometry& g, const float* x, int64_t ldx, const float* dy,
                         int64_t ldy, float* dx, int64_t ldx_grad, bool accumulate);
void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, const float* x, int64_t ldx,
                        float* y, int64_t ldy);
void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, const float* dy,
                         int64_t ldy, float* dx, int64_t ldx, bool accumulate);
void global_avg_pool_forward(int64_t batch, int64_t hw, int64_t channels, const float* x, int64_t ldx,
                             float* y);
void global_avg_pool_backward(int64_t batch, int64_t hw, int64_t channels, const float* dy, float* dx,
                              int64_t ldx, bool accumulate);

}  // namespace kernels::cuda
