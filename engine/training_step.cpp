// The training step (see training_step.h): forward, BCE, the one host read, backward, reduce, update.
#include "engine/training_step.h"

#include <atomic>
#include <cmath>
#include <mutex>
#include <vector>

#include "engine/check.h"
#include "engine/ops.h"
#include "engine/ops/common.h"

namespace engine {

std::string precision_name(Precision precision) {
  switch (precision) {
    case Precision::f32: return "f32";
    case Precision::bf16: return "bf16";
    case Precision::f16: return "f16";
  }
  return "?";
}

TrainingStep::TrainingStep(Forward forward, ParameterArena& arena, Optimizer* optimizer, StepOptions options)
    : forward_(std::move(forward)), arena_(arena), optimizer_(optimizer), options_(std::move(options)),
      nonfinite_(Tensor::zeros({1}, arena.device())) {
  ENGINE_CHECK(forward_) << "TrainingStep needs a forward function";
  ENGINE_CHECK(options_.precision != Precision::f16)
      << "training in " << precision_name(options_.precision)
      << " is not implemented; the engine trains in f32 or bf16 mixed precision";
  // The weights' bf16 working copy, made once per step and kept by the optimizer's update (optim.h).
  if (options_.precision == Precision::bf16) arena_.enable_bf16_copy();
}

// The images as the net's first activation: bf16 in a bf16 step (seam (b)), from which every op keeps
// bf16 activations; as they are otherwise.
Tensor TrainingStep::activation_input(const Tensor& images) const {
  return options_.precision == Precision::bf16 ? images.to(DType::bf16) : images;
}

Tensor TrainingStep::forward_loss(const Tensor& images, const Tensor& labels, const Tensor& weights, Tensor& logits) {
  arena_.zero_grad();
  const Bf16WorkingCopyScope working_copy(arena_);  // bf16 steps: refreshed here unless current
  logits = forward_(activation_input(images));
  return bce_with_logits(logits, labels, weights);
}

double TrainingStep::read_loss(const Tensor& loss) { return loss.item(); }

void TrainingStep::backward(const Tensor& loss) {
  if (options_.begin_backward) options_.begin_backward(arena_);
  const Bf16WorkingCopyScope working_copy(arena_);  // for a forward recomputed in the backward pass
  loss.backward();
}

void TrainingStep::reduce_update() {
  if (options_.reduce_gradients) options_.reduce_gradients(arena_);
  if (optimizer_) optimizer_->step();
}

void TrainingStep::backward_update(const Tensor& loss) {
  backward(loss);
  reduce_update();
}

StepResult TrainingStep::run(const Tensor& images, const Tensor& labels, const Tensor& weights) {
  StepResult result;
  const Tensor loss = forward_loss(images, labels, weights, result.logits);
  // The step's one host synchronisation (seam (a)): nothing is updated from a non-finite loss.
  result.loss = read_loss(loss);
  result.finite = std::isfinite(result.loss);
  if (result.finite) backward_update(loss);
  return result;
}

Tensor TrainingStep::forward_loss_flagged(const Tensor& images, const Tensor& labels, const Tensor& weights,
                                          Tensor& logits) {
  const Tensor loss = forward_loss(images, labels, weights, logits);
  NoGradGuard no_grad;
  ENGINE_CHECK(loss.numel() == 1 && loss.dtype() == DType::f32 && loss.device() == nonfinite_.device())
      << "TrainingStep: the loss is " << loss.str() << "; expected one f32 value on " << nonfinite_.device().str();
  const Tensor loss_value = loss.contiguous();
  // Sets the flag on the device when the loss is not finite; the update then does nothing.
  ENGINE_KERNEL(nonfinite_.device(), flag_nonfinite)(1, loss_value.data(), nonfinite_.data());
  // Data parallelism: set on every process when it is set on one, so that all skip the same updates.
  if (options_.reduce_nonfinite_flag) options_.reduce_nonfinite_flag(nonfinite_);
  return loss;
}

PendingStep TrainingStep::enqueue(const Tensor& images, const Tensor& labels, const Tensor& weights) {
  PendingStep pending;
  Tensor logits;
  const Tensor loss = forward_loss_flagged(images, labels, weights, logits);
  if (optimizer_) {
    optimizer_->set_skip_flag(nonfinite_);
    pending.optimizer_steps_before = optimizer_->step_count();
  }
  backward_update(loss);
  pending.loss = loss.detach();
  pending.logits = logits.detach();
  queue_host_readback(pending);
  return pending;
}

namespace {

// A pinned host tensor for a readback, from a small pool: allocating and freeing pinned memory is slow
// (and cudaFreeHost waits for the device), so buffers nobody holds any more are reused, as the loader's.
// The pool keeps one handle per buffer and hands out views (handles of their own on the same storage), so
// the storage's use count is 1 exactly when nobody outside holds it.
Tensor pinned_readback_buffer(const Shape& shape, DType dtype) {
  static std::mutex mutex;
  static std::vector<Tensor> pool;
  constexpr size_t kPoolSize = 16;
  std::lock_guard<std::mutex> lock(mutex);
  const auto unused = [](const Tensor& t) {
    if (t.storage().use_count() != 1) return false;
    std::atomic_thread_fence(std::memory_order_acquire);  // after the last holder's reads (a relaxed count)
    return true;
  };
  for (const Tensor& buffer : pool)
    if (unused(buffer) && buffer.shape() == shape && buffer.dtype() == dtype) return buffer.view(shape);
  Tensor buffer = Tensor::empty_pinned(shape, dtype);
  if (pool.size() < kPoolSize) {
    pool.push_back(buffer);
  } else {  // full: replace one nobody holds (freeing pinned memory is rare then: a new shape)
    for (Tensor& old : pool)
      if (unused(old)) {
        old = buffer;
        break;
      }
  }
  return buffer.view(shape);  // a handle of its own: the storage's use count says the buffer is held
}

}  // namespace

void queue_host_readback(PendingStep& pending) {
  const Device device = pending.loss.device();
  if (device.is_cpu()) return;
  NoGradGuard no_grad;
  const DeviceBackend& backend = backend_for(device);
  const Tensor loss = pending.loss.contiguous(), logits = pending.logits.contiguous();
  pending.host_loss = pinned_readback_buffer(loss.shape(), loss.dtype());
  pending.host_logits = pinned_readback_buffer(logits.shape(), logits.dtype());
  backend.copy_to_host_async(pending.host_loss.raw_data(), loss.raw_data(), loss.numel() * dtype_size(loss.dtype()));
  backend.copy_to_host_async(pending.host_logits.raw_data(), logits.raw_data(),
                             logits.numel() * dtype_size(logits.dtype()));
  pending.readback = backend.record_marker();
}

StepResult TrainingStep::finish(const PendingStep& pending) {
  ENGINE_CHECK(pending.defined()) << "TrainingStep::finish of a step that was not enqueued";
  StepResult result;
  if (pending.readback) {
    pending.readback->wait();  // the step's copies are done; later steps may still run
    result.loss = pending.host_loss.to(DType::f32).data()[0];
    result.logits = pending.host_logits;
  } else {
    result.loss = read_loss(pending.loss);
    result.logits = pending.logits;
  }
  result.finite = std::isfinite(result.loss);
  // The device skipped this step's update and every later one (the flag is sticky): the count goes back.
  if (!result.finite && optimizer_) optimizer_->set_step_count(pending.optimizer_steps_before);
  return result;
}

}  // namespace engine
