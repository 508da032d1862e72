// A training step as one CUDA graph (see graph_step.h): eager warm-up steps, one recording of the device
// work of TrainingStep::enqueue up to the update, replays behind device-to-device copies of the batch, the
// optimizer's update queued eagerly after each replay; eager steps for other shapes and after a failure.
#include "engine/graph_step.h"

#include <cstdio>
#include <exception>
#include <utility>

#include "engine/check.h"
#include "engine/ops.h"
#include "engine/ops/common.h"

namespace engine {

bool GraphedTrainingStep::Signature::operator==(const Signature& other) const {
  return images == other.images && labels == other.labels && weights == other.weights &&
         images_dtype == other.images_dtype && labels_dtype == other.labels_dtype &&
         weights_dtype == other.weights_dtype && has_weights == other.has_weights;
}

GraphedTrainingStep::Signature GraphedTrainingStep::signature(const Tensor& images, const Tensor& labels,
                                                              const Tensor& weights) {
  Signature s;
  s.images = images.shape();
  s.labels = labels.shape();
  s.has_weights = weights.defined();
  if (s.has_weights) {
    s.weights = weights.shape();
    s.weights_dtype = static_cast<int>(weights.dtype());
  }
  s.images_dtype = static_cast<int>(images.dtype());
  s.labels_dtype = static_cast<int>(labels.dtype());
  return s;
}

GraphedTrainingStep::GraphedTrainingStep(TrainingStep& step, GraphOptions options)
    : step_(step), options_(std::move(options)) {
  ENGINE_CHECK(options_.warmup_steps >= 1) << "GraphedTrainingStep: warmup_steps must be at least 1";
  const Device device = step_.nonfinite_flag().device();
  std::string reason;
  if (!options_.enabled) {
    off_reason_ = "turned off (--no-graph)";
  } else if (step_.options().reduce_gradients || step_.options().begin_backward ||
             step_.options().reduce_nonfinite_flag) {
    off_reason_ = "a gradient all-reduce runs between backward and the update (data parallelism)";
  } else if (step_.arena().has_bf16_copy() && checking_bf16_copy_on_use()) {
    off_reason_ = "ENGINE_CHECK_BF16_COPY=1 reads the weights back to the host in every step (debugging)";
    turn_off(off_reason_);
  } else if (!device_graphs_supported(device, &reason)) {
    off_reason_ = reason;
    if (device.is_cuda()) turn_off(reason);  // worth a line: the user may expect graphs on a GPU
  } else {
    on_ = true;
  }
}

GraphedTrainingStep::~GraphedTrainingStep() = default;

void GraphedTrainingStep::turn_off(const std::string& reason) {
  on_ = false;
  off_reason_ = reason;
  graph_.reset();  // gives the graph's memory pool back
  static_images_ = static_labels_ = static_weights_ = static_loss_ = static_logits_ = Tensor();
  const std::string line = "note: CUDA graphs off (" + reason + "); training steps run eagerly";
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

PendingStep GraphedTrainingStep::eager(const Tensor& images, const Tensor& labels, const Tensor& weights) {
  ++eager_;
  const Optimizer* optimizer = step_.optimizer();
  const int64_t updates_before = optimizer ? optimizer->step_count() : 0;
  try {
    return step_.enqueue(images, labels, weights);
  } catch (const std::exception& e) {
    // The graph's pool holds a whole step's activations that an eager step of another shape (an epoch's
    // last batch) cannot use: near the memory limit, give it back and try once more. The layers that ran
    // before the failure have updated their batch-norm running statistics once already (momentum 0.1:
    // a small, one-off change); the alternative is a run that ends here. Never once the update was
    // queued (a failure after it, in the readback's copies, would apply it twice).
    const bool updated = optimizer && optimizer->step_count() != updates_before;
    if (!graph_ || updated || !is_device_out_of_memory(e)) throw;
    turn_off(std::string("out of memory for a step of another shape beside the graph's pool: ") + e.what());
    return step_.enqueue(images, labels, weights);
  }
}

// The bf16 working copy of the weights is refreshed eagerly, never inside the graph: a refresh recorded
// once would not run again when the copy went stale later, and a refresh recorded in a capture that then
// failed would never run at all, though the arena would count the copy current.
void GraphedTrainingStep::refresh_bf16_copy_if_stale() {
  ParameterArena& arena = step_.arena();
  if (arena.has_bf16_copy() && !arena.bf16_copy_current()) arena.refresh_bf16_copy();
}

PendingStep GraphedTrainingStep::enqueue(const Tensor& images, const Tensor& labels, const Tensor& weights) {
  const Device device = step_.nonfinite_flag().device();
  if (!on_ || images.device() != device || labels.device() != device ||
      (weights.defined() && weights.device() != device))
    return eager(images, labels, weights);
  const Signature shapes = signature(images, labels, weights);
  if (graph_) return shapes == graph_signature_ ? replay(images, labels, weights) : eager(images, labels, weights);
  if (shapes != warm_signature_) {
    warm_signature_ = shapes;
    warm_steps_ = 0;
  }
  if (warm_steps_ < options_.warmup_steps) {
    ++warm_steps_;
    return eager(images, labels, weights);
  }
  if (!record(images, labels, weights)) return eager(images, labels, weights);
  graph_signature_ = shapes;
  return replay(images, labels, weights);
}

// Records zero_grad, forward, loss, the non-finite flag and backward on the static inputs: what
// TrainingStep::enqueue queues before reduce_gradients and the update, through its public phases.
bool GraphedTrainingStep::record(const Tensor& images, const Tensor& labels, const Tensor& weights) {
  const Device device = step_.nonfinite_flag().device();
  // Two tries: a recording that runs out of memory cannot empty the allocator's cache itself (no frees
  // while capturing), so the second try starts from an empty cache.
  for (int attempt = 0;; ++attempt) {
    try {
      refresh_bf16_copy_if_stale();
      {
        NoGradGuard no_grad;  // the static inputs are allocated outside the graph's pool, before it records
        static_images_ = images.clone();
        static_labels_ = labels.clone();
        static_weights_ = weights.defined() ? weights.clone() : Tensor();
      }
      begin_device_graph_capture(device);
      try {
        Tensor logits;
        const Tensor loss = step_.forward_loss_flagged(static_images_, static_labels_, static_weights_, logits);
        step_.backward(loss);
        static_loss_ = loss.detach();
        static_logits_ = logits.detach();
      } catch (...) {
        abort_device_graph_capture(device);
        throw;
      }
      graph_ = end_device_graph_capture(device);
      return true;
    } catch (const std::exception& e) {
      if (attempt == 0 && is_device_out_of_memory(e)) {
        static_images_ = static_labels_ = static_weights_ = static_loss_ = static_logits_ = Tensor();
        empty_device_cache(device);
        continue;
      }
      turn_off(std::string("recording the step failed: ") + e.what());
      return false;
    }
  }
}

PendingStep GraphedTrainingStep::replay(const Tensor& images, const Tensor& labels, const Tensor& weights) {
  PendingStep pending;
  try {
    static_images_.copy_from(images);
    static_labels_.copy_from(labels);
    if (weights.defined()) static_weights_.copy_from(weights);
    refresh_bf16_copy_if_stale();
    graph_->replay();
  } catch (const std::exception& e) {
    turn_off(std::string("replaying the step failed: ") + e.what());
    return eager(images, labels, weights);
  }
  // The update, as TrainingStep::enqueue queues it: skipped on the device while the flag is set.
  if (Optimizer* optimizer = step_.optimizer()) {
    optimizer->set_skip_flag(step_.nonfinite_flag());
    pending.optimizer_steps_before = optimizer->step_count();
  }
  step_.reduce_update();
  // The step's host copies are queued now, on the stream, before any later replay can overwrite the
  // static outputs; finish() reads those copies. (pending.loss and logits are the graph's outputs
  // themselves, valid until the next replay: nothing reads them later on the device.)
  pending.loss = static_loss_;
  pending.logits = static_logits_;
  queue_host_readback(pending);
  ++replayed_;
  return pending;
}

}  // namespace engine
