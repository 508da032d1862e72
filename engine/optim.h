// Parameters, gradients and optimizer state in arenas, and the optimizers over them.
//
// ParameterArena gathers a model's parameters into one contiguous buffer and their gradients into a
// second: every parameter tensor becomes a view into the first (the handles modules hold stay valid),
// and its .grad a view into the second, so the backward pass accumulates straight into the arena. One
// fused kernel then updates every parameter (kernels/optimizer.h), a checkpoint is one buffer per
// arena, and zeroing the gradients is one fill. The arena, owned by the trainer, owns that memory.
#pragma once
#include <string>
#include <vector>

#include "engine/module.h"
#include "kernels/optimizer.h"

namespace engine {

class ParameterArena {
 public:
  explicit ParameterArena(const NamedTensors& parameters);

  const Tensor& values() const { return values_; }  // [numel], every parameter back to back
  const Tensor& grads() const { return grads_; }    // [numel], same order
  int64_t numel() const { return values_.numel(); }
  Device device() const { return values_.device(); }
  const NamedTensors& parameters() const { return parameters_; }
  void zero_grad() const { grads_.fill_(0.0f); }

 private:
  NamedTensors parameters_;
  Tensor values_, grads_;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  virtual NamedTensors state() const = 0;  // state arrays for checkpoints (moments, step count)
  virtual void set_learning_rate(float lr) = 0;
  virtual float learning_rate() const = 0;
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t step) { step_ = step; }
  // A one-element f32 tensor on the arena's device (or undefined: none). While it holds a non-zero value
  // step() changes nothing on the device: the guard a training step uses to skip the update of a
  // non-finite loss without reading the loss on the host (engine/training_step.h). step() still counts
  // the step; whoever sets the flag puts the count back when it learns of the skip.
  void set_skip_flag(const Tensor& flag) { skip_flag_ = flag; }
  const Tensor& skip_flag() const { return skip_flag_; }

 protected:
  const float* skip_flag_data() const { return skip_flag_.defined() ? skip_flag_.data() : nullptr; }
  int64_t step_ = 0;
  Tensor skip_flag_;
};

// Adam with the PyTorch or the Keras convention (kernels/optimizer.h):
//   Adam::pytorch(lr)  eps 1e-8, epsilon added to sqrt(v_hat)
//   Adam::keras(lr)    eps 1e-7, epsilon added to sqrt(v) (the study's optimizer)
// and either with decoupled weight decay (AdamW): Adam::decoupled_weight_decay(Adam::pytorch(lr), wd) is
// torch.optim.AdamW(lr=lr, weight_decay=wd).
class Adam : public Optimizer {
 public:
  Adam(ParameterArena& arena, const kernels::AdamHyper& hyper);
  static kernels::AdamHyper pytorch(float lr = 1e-3f);
  static kernels::AdamHyper keras(float lr = 1e-3f);
  // AdamW: `hyper` with decoupled weight decay (p shrinks by lr * weight_decay with every step, rounded as
  // hyper's convention's framework does; kernels/optimizer.h). weight_decay 0 leaves the update unchanged.
  static kernels::AdamHyper decoupled_weight_decay(kernels::AdamHyper hyper, float weight_decay);

  void step() override;
  NamedTensors state() const override { return {{"adam.m", m_}, {"adam.v", v_}}; }
  void set_learning_rate(float lr) override { hyper_.lr = lr; }
  float learning_rate() const override { return hyper_.lr; }
  const kernels::AdamHyper& hyper() const { return hyper_; }

 private:
  ParameterArena& arena_;
  kernels::AdamHyper hyper_;
  Tensor m_, v_;
};

class Sgd : public Optimizer {
 public:
  Sgd(ParameterArena& arena, const kernels::SgdHyper& hyper);
  void step() override;
  NamedTensors state() const override { return {{"sgd.momentum", buffer_}}; }
  void set_learning_rate(float lr) override { hyper_.lr = lr; }
  float learning_rate() const override { return hyper_.lr; }

 private:
  ParameterArena& arena_;
  kernels::SgdHyper hyper_;
  Tensor buffer_;
};

}  // namespace engine
