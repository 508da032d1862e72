#include "engine/layers.h"

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

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& gen) {
  ENGINE_CHECK(in_features > 0 && out_features > 0) << "Linear: sizes must be positive";
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init_glorot_uniform(weight, gen);
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

}  // namespace engine
