// Differentiable operations. Each records its backward (engine/autograd.h) and dispatches to the
// kernels of the tensor's device: kernels::cpu (the reference) or kernels::cuda.
//
// Layout (kernels/layout.h): 4-D activations are NHWC [N, H, W, C]; convolution weights are OHWI
// [out, kh, kw, in]; linear weights are [out, in]. Tensors whose last dimension is dense and whose other
// dimensions collapse into rows with one stride (dense tensors, channel slices of wider NHWC buffers)
// are used in place; anything else is made contiguous first.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace engine {

// ---- Convolution ----------------------------------------------------------------------------------
struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  // Symmetric padding p (PyTorch's padding=p) with stride s.
  static Conv2dOptions symmetric(int64_t pad, int64_t stride = 1) {
    return {stride, stride, pad, pad, pad, pad};
  }
  static Conv2dOptions symmetric(int64_t pad_h, int64_t pad_w, int64_t stride) {
    return {stride, stride, pad_h, pad_h, pad_w, pad_w};
  }
  // TF/Keras 'same' padding for a kernel and stride on an input size (may be asymmetric: the extra
  // cell goes at the end), and 'valid' (none).
  static Conv2dOptions same(int64_t in_h, int64_t in_w, int64_t kernel_h, int64_t kernel_w, int64_t stride);
  static Conv2dOptions valid(int64_t stride = 1) { return {stride, stride, 0, 0, 0, 0}; }
};

// x [N, H, W, I], weight [O, KH, KW, I], bias [O] or undefined -> [N, OH, OW, O].
// `out`, when given, is a preallocated [N, OH, OW, O] tensor (typically a channel slice of a DenseNet
// block buffer) that receives the result; it is also what is returned.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
              const Tensor& out = Tensor());
// Inference: relu(conv2d(x, weight, bias, options)) in one kernel (one cuDNN call on the GPU, the same
// values as the two ops on the CPU); bias may be undefined (zeros). It has no backward: it refuses inputs
// that require a gradient while grad mode is on.
// out: as conv2d's.
Tensor conv2d_bias_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
                        const Tensor& out = Tensor());
// Inference: scaled_residual(residual, conv2d(x, weight, bias, options), scale, relu) in one kernel call
// (one cuDNN call on the GPU where it has a fused kernel); the same values on the CPU bit for bit. f32 or
// bf16 x (bf16 through the kernels' emulation: slower than the ops it replaces); no backward.
Tensor conv2d_scaled_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                              float scale, bool relu, const Conv2dOptions& options);

// ---- Batch normalisation --------------------------------------------------------------------------
struct BatchNormOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;  // weight of the new batch statistic in the running average
  bool unbiased_running_var = true;

  // PyTorch: running = 0.9 running + 0.1 batch, unbiased variance, eps 1e-5.
  static BatchNormOptions torch(float eps = 1e-5f) { return {eps, 0.1f, true}; }
  // Keras: moving = 0.99 moving + 0.01 batch, biased variance; DenseNet uses eps 1.001e-5,
  // Inception-ResNet-v2 1e-3.
  static BatchNormOptions keras(float eps = 1e-3f) { return {eps, 0.01f, false}; }
};

// x [..., C] (NHWC or [N, C]); gamma/beta [C] or undefined (= 1 / 0); running stats [C] (updated in
// place when training). Training mode normalises with the batch statistics; eval with the running ones.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, bool training, const BatchNormOptions& options);
// relu(batch_norm(...)) through the fused kernels (kernels/batchnorm.h batch_norm_relu_*): the same values
// (bit for bit on the CPU), one pass less in forward, ReLU's mask folded into BN's backward.
// out (optional): where y is written (x's shape and dtype, dense or a channel slice of a wider buffer: a
// branch's part of a concatenation). Two paths return a new tensor instead, leaving out alone: --sync-bn's
// and eval mode with a gradient to record (batch norm, then relu). Use the returned tensor.
Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, bool training, const BatchNormOptions& options,
                       const Tensor& out = Tensor());

// ---- Pooling --------------------------------------------------------------------------------------
struct Pool2dOptions {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  static Pool2dOptions square(int64_t kernel, int64_t stride, int64_t pad = 0) {
    return {kernel, kernel, stride, stride, pad, pad, pad, pad};
  }
};
// [N, H, W, C] -> [N, OH, OW, C]; out (optional): where y is written, as conv2d's.
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options, const Tensor& out = Tensor());
// count_include_pad: divide by the full window (PyTorch default) or by the cells inside the input
// (Keras 'same' average pooling).
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options, bool count_include_pad);
Tensor global_avg_pool(const Tensor& x);  // [N, H, W, C] -> [N, C]

// ---- Elementwise ----------------------------------------------------------------------------------
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // same shapes
Tensor scale(const Tensor& x, float alpha);    // alpha * x
// Inception-ResNet-v2's residual: relu(x + scale * up) (relu) or x + scale * up, in one pass; f32 results
// are add(x, scale(up, scale)) (then relu) bit for bit, bf16 ones rounded once. Same shapes; y has x's dtype.
Tensor scaled_residual(const Tensor& x, const Tensor& up, float scale, bool relu);

// ---- Shapes and channels --------------------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x);  // [N, ...] -> [N, prod(...)] (NHWC order, as Keras's Flatten)
// Concatenation along the last (channel) dimension. When the inputs are adjacent channel slices of one
// buffer, in order, the result is a view of that buffer and nothing is copied.
Tensor concat_channels(const std::vector<Tensor>& inputs);
Tensor slice_channels(const Tensor& x, int64_t begin, int64_t end);  // a view of channels [begin, end)

// ---- Linear, losses, reductions -------------------------------------------------------------------
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);  // [N, in] -> [N, out]
// Mean over the batch of w_i * BCE(sigmoid(logit_i), target_i); logits [N] or [N, 1]; targets and
// weights [N] (weights may be undefined). Gradient flows to the logits only.
Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, const Tensor& weights = Tensor());
Tensor sum(const Tensor& x);   // scalar
Tensor mean(const Tensor& x);  // scalar

// ---- Raw helpers (no autograd) used by the engine itself -------------------------------------------
void add_into(const Tensor& dst, const Tensor& src);  // dst += src, same shapes

}  // namespace engine
