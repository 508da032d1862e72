// Parameters, gradients and optimizer state in arenas, and the optimizers over them.
//
// ParameterArena gathers a model's parameters into one contiguous buffer and their gradients into a
// second: every parameter tensor becomes a view into the first (the handles modules hold stay valid),
// and its .grad a view into the second, so the backward pass accumulates straight into the arena. One
// fused kernel then updates every parameter (kernels/optimizer.h), a checkpoint is one buffer per
// arena, and zeroing the gradients is one fill. The arena, owned by the trainer, owns that memory.
//
// The bf16 working copy (mixed precision, docs/precision.md). A bf16 training step has the arena keep a
// third buffer, bf16, in the same order: the master weights rounded to nearest even, read by the ops on
// bf16 activations (conv2d, linear) in place of rounding each weight on every call. It is converted once
// at most per step, and never read stale:
//   - it is *current* only from refresh_bf16_copy() (one conversion kernel over the whole arena) on;
//   - the optimizers' fused update writes it in the same pass as the masters (kernels/optimizer.h), so an
//     update keeps a current copy current (a skipped update leaves both as they were) and never makes a
//     stale one current (the host does not know whether the device skipped);
//   - the ops read it only inside a training step, and only while it is current: TrainingStep opens a
//     Bf16WorkingCopyScope around its forward and its backward, which refreshes the copy first unless it
//     is current; outside such a scope every op rounds the master itself;
//   - every other write to the masters (initialisation, weights or a checkpoint loaded, a broadcast,
//     copy_from, a test) happens outside a step. The arena notices one made through the Tensor API
//     (copy_from, fill_: the storage's write count, engine/tensor.h, moved since the copy was made), and
//     the next step refreshes the copy; a writer through raw pointers between two steps of the same arena
//     (an all-reduce or broadcast into the masters) calls invalidate_bf16_copy() instead.
//     Optimizer::set_step_count (--resume restores it with the weights and the moments) invalidates it
//     too, and a new copy starts stale.
// With ENGINE_CHECK_BF16_COPY=1 in the environment every scope that finds the copy current compares it
// with a fresh rounding of the masters and fails on a difference (a writer that did not invalidate it):
// a debugging aid that costs a conversion and a host copy per step.
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

  // --- The bf16 working copy (file comment) ---
  // Allocates it ([numel] bf16, not yet current); again: nothing. TrainingStep does this for bf16 steps.
  void enable_bf16_copy();
  bool has_bf16_copy() const { return bf16_values_.defined(); }
  const Tensor& bf16_values() const { return bf16_values_; }            // [numel] bf16, values()' order
  const NamedTensors& bf16_parameters() const { return bf16_parameters_; }  // each parameter's bf16 view
  // Refreshed since it was made stale, and no Tensor-API write to the masters since the refresh.
  bool bf16_copy_current() const {
    return bf16_current_ && values_.storage()->write_count() == bf16_masters_writes_;
  }
  int64_t bf16_refresh_count() const { return bf16_refreshes_; }  // refresh_bf16_copy calls so far
  // values() rounded into the copy by one conversion kernel (the one Tensor::to(DType::bf16) runs); current.
  void refresh_bf16_copy();
  // Throws unless the copy is bit for bit the rounding of values() (ENGINE_CHECK_BF16_COPY, above).
  void check_bf16_copy() const;
  // The masters were written through raw pointers, other than by the optimizer: the next scope refreshes
  // the copy first (a Tensor-API write is noticed without it).
  void invalidate_bf16_copy() { bf16_current_ = false; }
  // The optimizers' output pointer for the copy (null without one): their update keeps it as current as
  // it was before.
  kernels::BFloat16* bf16_copy_data() const;
  // `weight`'s bf16 working copy from this arena: its view of the copy when weight is a dense f32 view of
  // values() and the copy is current, an undefined tensor otherwise.
  Tensor bf16_view(const Tensor& weight) const;

 private:
  NamedTensors parameters_;
  Tensor values_, grads_;
  Tensor bf16_values_;
  NamedTensors bf16_parameters_;
  bool bf16_current_ = false;
  uint64_t bf16_masters_writes_ = 0;  // values_' storage write count when the copy was refreshed
  int64_t bf16_refreshes_ = 0;
};

// While one is alive on this thread, ops that want a weight's bf16 working copy take it from `arena`'s
// copy (cached_bf16_working_copy below), which the scope refreshes first unless it is current. Nothing when
// the arena has no copy. Scopes nest (the innermost arena is asked).
// ENGINE_CHECK_BF16_COPY set (and not "0"): every Bf16WorkingCopyScope checks a current copy against the
// masters (a host read per step: debugging; CUDA graphs turn off under it).
bool checking_bf16_copy_on_use();

class Bf16WorkingCopyScope {
 public:
  explicit Bf16WorkingCopyScope(ParameterArena& arena);
  ~Bf16WorkingCopyScope();
  Bf16WorkingCopyScope(const Bf16WorkingCopyScope&) = delete;
  Bf16WorkingCopyScope& operator=(const Bf16WorkingCopyScope&) = delete;

 private:
  const ParameterArena* previous_;
};

// The cached bf16 working copy of `weight` from the arena of this thread's innermost
// Bf16WorkingCopyScope (ParameterArena::bf16_view), or an undefined tensor: none open, weight not one of
// its parameters, or its copy not current. engine/ops/common.h's bf16_working_copy asks it first.
Tensor cached_bf16_working_copy(const Tensor& weight);

class Optimizer {
 public:
  explicit Optimizer(ParameterArena& arena) : arena_(arena) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  virtual NamedTensors state() const = 0;  // state arrays for checkpoints (moments, step count)
  virtual void set_learning_rate(float lr) = 0;
  virtual float learning_rate() const = 0;
  int64_t step_count() const { return step_; }
  // Restoring a count goes with restoring state and weights (--resume): the arena's bf16 copy, if any,
  // is refreshed before it is read again.
  void set_step_count(int64_t step) {
    step_ = step;
    arena_.invalidate_bf16_copy();
  }
  // A one-element f32 tensor on the arena's device (or undefined: none). While it holds a non-zero value
  // step() changes nothing on the device: the guard a training step uses to skip the update of a
  // non-finite loss without reading the loss on the host (engine/training_step.h). step() still counts
  // the step; whoever sets the flag puts the count back when it learns of the skip.
  void set_skip_flag(const Tensor& flag) { skip_flag_ = flag; }
  const Tensor& skip_flag() const { return skip_flag_; }

 protected:
  const float* skip_flag_data() const { return skip_flag_.defined() ? skip_flag_.data() : nullptr; }
  ParameterArena& arena_;
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
  kernels::SgdHyper hyper_;
  Tensor buffer_;
};

}  // namespace engine
