// The parameter-holding building blocks of the nets: Conv2d, BatchNorm, Linear. Each registers its
// tensors under the names the weight files use (weight, bias; weight, bias, running_mean, running_var)
// and forwards through engine/ops.h.
//
// For inference, a convolution and the batch norm right after it fold into one convolution with bias
// (fold_batch_norm). In eval mode BN is the affine map z = s (c - mean) + beta per output channel o, with
// s_o = gamma_o / sqrt(var_o + eps); with c = W * x + b:
//   z_o = (s_o W_o) * x + (beta_o + s_o (b_o - mean_o)) = W'_o * x + b'_o.
#pragma once
#include "engine/module.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace engine {

struct Conv2dSpec {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  Conv2dOptions options;
  bool bias = false;
};

// OHWI weight [out, kh, kw, in], Kaiming-normal initialised; optional bias (zeros).
class Conv2d : public Module {
 public:
  Conv2d(const Conv2dSpec& spec, Generator& gen);
  Tensor forward(const Tensor& x, const Tensor& out = Tensor()) const;
  // scaled_residual(residual, forward(x), scale, relu): where no gradient is wanted, one fused kernel
  // (engine::conv2d_scaled_residual) for f32 inputs; else the two ops.
  Tensor forward_scaled_residual(const Tensor& x, const Tensor& residual, float scale, bool relu) const;
  const Conv2dSpec& spec() const { return spec_; }
  Tensor weight, bias;

 private:
  Conv2dSpec spec_;
};

struct BatchNormSpec {
  int64_t channels = 0;
  BatchNormOptions options;
  bool gamma = true;  // Keras scale=False has no gamma
  bool beta = true;
};

// gamma = 1, beta = 0, running_mean = 0, running_var = 1. Uses batch statistics in training mode.
class BatchNorm : public Module {
 public:
  explicit BatchNorm(const BatchNormSpec& spec);
  Tensor forward(const Tensor& x) const;
  // relu(forward(x)) as one fused op (engine::batch_norm_relu): the same values (bit for bit on the CPU),
  // the running statistics updated in training mode exactly as forward updates them. out: as the op's
  // (where y is written, e.g. a branch's slice of a concatenation; use the returned tensor).
  Tensor forward_relu(const Tensor& x, const Tensor& out = Tensor()) const;
  const BatchNormSpec& spec() const { return spec_; }
  Tensor weight, bias, running_mean, running_var;  // weight = gamma, bias = beta (PyTorch names)

 private:
  BatchNormSpec spec_;
};

// A Conv2d with the BatchNorm after it folded in (see the top of this file): a snapshot of their values
// when folded, on their device, without autograd history. For inference only: the original parameters
// are untouched (a checkpoint written afterwards holds them), and training must not use it.
struct FoldedConv2d {
  Tensor weight;  // [out, kh, kw, in]: s_o W_o
  Tensor bias;    // [out]: beta_o + s_o (b_o - mean_o)
  Conv2dOptions options;
  // relu(conv2d(x, weight, bias)): the one place a folded unit's convolution + bias + ReLU runs, as one
  // fused op (engine::conv2d_bias_relu: cuDNN's bias-activation forward on the GPU), or as the pair when
  // a gradient is wanted through it. out: where y is written on the fused path (as conv2d's); the pair
  // returns a new tensor. Use the returned tensor.
  Tensor forward_relu(const Tensor& x, const Tensor& out = Tensor()) const;
};

// conv then norm (eval mode: its running statistics) as one convolution with bias. The scale and shift
// are computed in double from the f32 values, as the eval-mode BN kernel computes 1/sqrt(var + eps).
FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm& norm);

// weight [out, in] Glorot-uniform (Keras Dense default), bias zeros.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
};

}  // namespace engine
