#include "engine/layers.h"

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"

namespace engine {

Conv2d::Conv2d(const Conv2dSpec& spec, Generator& gen) : spec_(spec) {
  ENGINE_CHECK(spec.in_channels > 0 && spec.out_channels > 0 && spec.kernel_h > 0 && spec.kernel_w > 0)
      << "Conv2d: channels and kernel sizes must be positive";
  weight = register_parameter("weight", Tensor::empty({spec.out_channels, spec.kernel_h, spec.kernel_w, spec.in_channels}));
  init_kaiming_normal(weight, gen);
  if (spec.bias) bias = register_parameter("bias", Tensor::zeros({spec.out_channels}));
}

Tensor Conv2d::forward(const Tensor& x, const Tensor& out) const {
  return conv2d(x, weight, bias, spec_.options, out);
}

BatchNorm::BatchNorm(const BatchNormSpec& spec) : spec_(spec) {
  ENGINE_CHECK(spec.channels > 0) << "BatchNorm: channels must be positive";
  if (spec.gamma) weight = register_parameter("weight", Tensor::ones({spec.channels}));
  if (spec.beta) bias = register_parameter("bias", Tensor::zeros({spec.channels}));
  running_mean = register_buffer("running_mean", Tensor::zeros({spec.channels}));
  running_var = register_buffer("running_var", Tensor::ones({spec.channels}));
}

Tensor BatchNorm::forward(const Tensor& x) const {
  return batch_norm(x, weight, bias, running_mean, running_var, is_training(), spec_.options);
}

Tensor BatchNorm::forward_relu(const Tensor& x, const Tensor& out) const {
  return batch_norm_relu(x, weight, bias, running_mean, running_var, is_training(), spec_.options, out);
}

// One fused call (cuDNN's conv + bias + ReLU on the GPU) for inference; the pair where a gradient is wanted
// (Grad-CAM through a folded net), since the fused op has no backward.
Tensor Conv2d::forward_scaled_residual(const Tensor& x, const Tensor& residual, float scale, bool relu) const {
  const bool wants_grad = grad_enabled() && (x.requires_grad() || residual.requires_grad() || weight.requires_grad() ||
                                             (bias.defined() && bias.requires_grad()));
  if (wants_grad || x.dtype() != DType::f32 || residual.dtype() != DType::f32)
    return scaled_residual(residual, forward(x), scale, relu);
  return conv2d_scaled_residual(x, weight, bias, residual, scale, relu, spec_.options);
}

Tensor FoldedConv2d::forward_relu(const Tensor& x, const Tensor& out) const {
  if (grad_enabled() && x.requires_grad()) return relu(conv2d(x, weight, bias, options));
  return conv2d_bias_relu(x, weight, bias, options, out);
}

FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm& norm) {
  const Conv2dSpec& cs = conv.spec();
  const int64_t channels = cs.out_channels;
  ENGINE_CHECK(norm.spec().channels == channels)
      << "fold_batch_norm: the convolution has " << channels << " output channels, the batch norm "
      << norm.spec().channels;
  ENGINE_CHECK(conv.weight.dtype() == DType::f32) << "fold_batch_norm: f32 weights expected, got " << conv.weight.str();
  const Device device = conv.weight.device();
  const std::vector<float> w = conv.weight.to_vector();
  const std::vector<float> mean = norm.running_mean.to_vector(), var = norm.running_var.to_vector();
  const std::vector<float> gamma = norm.weight.defined() ? norm.weight.to_vector() : std::vector<float>(channels, 1.0f);
  const std::vector<float> beta = norm.bias.defined() ? norm.bias.to_vector() : std::vector<float>(channels, 0.0f);
  const std::vector<float> b = conv.bias.defined() ? conv.bias.to_vector() : std::vector<float>(channels, 0.0f);
  const auto per_out = static_cast<int64_t>(w.size()) / channels;  // kh * kw * in
  std::vector<float> folded_w(w.size()), folded_b(static_cast<size_t>(channels));
  for (int64_t o = 0; o < channels; ++o) {
    const double s = static_cast<double>(gamma[o]) /
                     std::sqrt(static_cast<double>(var[o]) + static_cast<double>(norm.spec().options.eps));
    for (int64_t i = o * per_out; i < (o + 1) * per_out; ++i) folded_w[i] = static_cast<float>(w[i] * s);
    folded_b[o] = static_cast<float>(beta[o] + s * (static_cast<double>(b[o]) - mean[o]));
  }
  FoldedConv2d folded;
  folded.weight = Tensor::from_vector(conv.weight.shape(), folded_w).to(device);
  folded.bias = Tensor::from_vector({channels}, folded_b).to(device);
  folded.options = cs.options;
  return folded;
}

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& gen) {
  ENGINE_CHECK(in_features > 0 && out_features > 0) << "Linear: sizes must be positive";
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init_glorot_uniform(weight, gen);
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

}  // namespace engine
