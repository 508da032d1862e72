// 2-D convolution over NHWC activations with OHWI weights (see layout.h), cross-correlation as in
// every framework:
//   y[n, oh, ow, o] = bias[o] + sum_{kh, kw, i} x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw, i]
//                                                * w[o, kh, kw, i]
// (cells outside the input read as zero). Padding may be asymmetric (TF 'same' with even kernels).
// Backward:
//   dx[n, ih, iw, i] = sum over (oh, ow, o, kh, kw) that read x[n, ih, iw, i] of dy[n, oh, ow, o] * w[o, kh, kw, i]
//   dw[o, kh, kw, i] = sum over (n, oh, ow) of dy[n, oh, ow, o] * x[n, oh*sh - pt + kh, ow*sw - pl + kw, i]
//   dbias[o]         = sum over (n, oh, ow) of dy[n, oh, ow, o]
//
// conv2d_forward_mixed and conv2d_backward_data_mixed are the forward and backward data over mixed
// element types (docs/precision.md), the weight a dense [out_c, kh * kw * in_c] view of f32 or bf16
// (the bf16 working copy of the engine's ops): inputs widened exactly, products and sums in f32, each
// bf16 output rounded once to nearest even (on the GPU the forward's bias is added after cuDNN's rounding
// and rounded again: kernels/cuda/conv_cudnn.cpp). The CPU widens into f32 copies and runs the f32
// kernels (the reference); CUDA runs cuDNN on bf16 operands directly (f32 compute) where all are bf16,
// and f32 copies otherwise.
// conv2d_backward_filter takes bf16 x and dy as they are, with f32 dw and dbias: the weight gradient of
// mixed precision as PyTorch's autocast makes it (its convolution's weight is a bf16 copy, so cuDNN gives
// a bf16 dW): dW's f32 sums rounded once to bf16, then written into (or added to, in f32) dw; dbias is
// f32 column sums of dy. The CPU rounds the f32 kernel's result; CUDA runs cuDNN's bf16 configuration
// into a bf16 scratch, or the CPU's way where cuDNN has no bf16 algorithm for the shape.
//
// conv2d_bias_relu_forward is the inference forward y = max(conv(x, w) + bias, 0): on the CPU the
// forward then ReLU (the same values), on the GPU one fused cuDNN call (f32).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/layout.h"

namespace kernels {

struct Conv2dGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, in_c = 0;
  int64_t out_c = 0, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - kernel_w) / stride_w + 1; }
  int64_t input_rows() const { return batch * in_h * in_w; }
  int64_t output_rows() const { return batch * out_h() * out_w(); }
  int64_t input_channels() const { return in_c; }
  int64_t output_channels() const { return out_c; }
  // Multiply-accumulates of the forward pass.
  double macs() const {
    return double(batch) * out_h() * out_w() * out_c * kernel_h * kernel_w * in_c;
  }
};

// Each convolution kernel's matrix operands, checked against the geometry (x, dx [input_rows, in_c];
// y, dy [output_rows, out_c]; dy and backward_filter's x only where there are output pixels) and
// unpacked into the typed pointers and their row strides; one check for both backends (the
// forward's: window_forward_operands in layout.h).
inline ReadWrite conv_backward_data_operands(const char* kernel, const Conv2dGeometry& g,
                                             ConstMatrixView dy, MatrixView dx) {
  check_input(kernel, g, dx);
  if (g.output_rows() > 0) check_output(kernel, g, dy);
  return {dy.f32(), dy.ld, dx.f32(), dx.ld};
}
inline ReadRead conv_backward_filter_operands(const char* kernel, const Conv2dGeometry& g,
                                              ConstMatrixView x, ConstMatrixView dy) {
  if (g.output_rows() > 0) {
    check_input(kernel, g, x);
    check_output(kernel, g, dy);
  }
  return {x.f32(), x.ld, dy.f32(), dy.ld};
}

// conv2d_backward_filter's checks on bf16 x and dy, which keep their element type.
inline void check_backward_filter_views(const char* kernel, const Conv2dGeometry& g, ConstMatrixView x,
                                        ConstMatrixView dy) {
  if (g.output_rows() > 0) {
    check_input(kernel, g, x);
    check_output(kernel, g, dy);
  }
}

// conv2d_forward_mixed's element types after its checks: x and w of one type (`inputs`), y of
// `output`; x [input_rows, in_c], w [out_c, kh * kw * in_c] dense, y [output_rows, out_c].
struct MixedConvOperands {
  DType inputs, output;
};
inline MixedConvOperands conv_forward_mixed_operands(const char* kernel, const Conv2dGeometry& g, ConstMatrixView x,
                                                     ConstMatrixView w, MatrixView y) {
  if (x.dtype != w.dtype)
    throw std::invalid_argument(std::string("kernels: ") + kernel + ": x is " + dtype_name(x.dtype) + " and w " +
                                dtype_name(w.dtype) + "; both must be f32 or both bf16");
  check_input(kernel, g, x);
  check_shape(kernel, w, g.out_c, g.kernel_h * g.kernel_w * g.in_c);
  check_dense(kernel, w);
  check_output(kernel, g, y);
  return {x.dtype, y.dtype};
}

// conv2d_backward_data_mixed's checks: dy [output_rows, out_c], w [out_c, kh * kw * in_c] dense, dx
// [input_rows, in_c]; each f32 or bf16.
inline void conv_backward_data_mixed_operands(const char* kernel, const Conv2dGeometry& g, ConstMatrixView dy,
                                              ConstMatrixView w, MatrixView dx) {
  check_input(kernel, g, dx);
  if (g.output_rows() > 0) check_output(kernel, g, dy);
  check_shape(kernel, w, g.out_c, g.kernel_h * g.kernel_w * g.in_c);
  check_dense(kernel, w);
}

// The fused forward needs its bias (a convolution without one passes zeros).
inline void conv_bias_relu_check(const char* kernel, const float* bias) {
  if (bias == nullptr)
    throw std::invalid_argument(std::string("kernels: ") + kernel + ": bias is null; pass zeros for no bias");
}

// conv2d_scaled_residual_forward's residual: y's shape, and not y itself (the convolution writes y first).
inline void scaled_residual_check(const char* kernel, const float* bias, ConstMatrixView residual, MatrixView y) {
  conv_bias_relu_check(kernel, bias);
  check_same_shape(kernel, residual, y);
  if (residual.data != nullptr && residual.data == y.data)
    throw std::invalid_argument(std::string("kernels: ") + kernel + ": y must not be the residual's memory");
}

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/conv_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
// cuDNN: algorithms chosen once per geometry (and strides) and cached; workspace from the caching
// allocator under a limit, falling back to a smaller algorithm when it cannot be had; TF32 tensor-core
// math unless disabled (context.h: set_allow_tf32); deterministic algorithms when requested.
#include "kernels/conv_api.inc"

// How many calls so far ran a fused (bias + ReLU, scaled residual) or bf16 convolution as its parts or on
// widened f32 copies because cuDNN ran no algorithm for it (each prints a `note:`, the first three per way
// it runs instead): the answers are the same, so only this count tells a test which path ran.
int64_t conv_fallback_count();
}  // namespace kernels::cuda
