// The parameter-holding building blocks of the nets: Conv2d, BatchNorm, Linear. Each registers its
// tensors under the names the weight files use (weight, bias; weight, bias, running_mean, running_var)
// and forwards through engine/ops.h.
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
  const BatchNormSpec& spec() const { return spec_; }
  Tensor weight, bias, running_mean, running_var;  // weight = gamma, bias = beta (PyTorch names)

 private:
  BatchNormSpec spec_;
};

// weight [out, in] Glorot-uniform (Keras Dense default), bias zeros.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
};

}  // namespace engine
