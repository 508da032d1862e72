// A training step recorded once as a CUDA graph and replayed: the device work of one step in one launch
// instead of hundreds (launch overhead; docs/perf-notes.md). It wraps a TrainingStep and offers its
// deferred form (engine/training_step.h, seam (a')):
//
//   TrainingStep step(net, arena, &adam);
//   GraphedTrainingStep graphed(step);                       // GraphOptions: on/off, warm-up steps
//   PendingStep previous = graphed.enqueue(images, labels);  // ... graphed.finish(previous)
//
// How. The first `warmup_steps` steps of a batch shape run as TrainingStep::enqueue (eager), so that the
// cuDNN plans and algorithm searches, the cuBLAS handle and its workspace and the allocator's blocks exist.
// The next step of that shape records, into one graph, the device work of enqueue up to the update:
//   zero_grad, forward, loss, the non-finite flag (kernels flag_nonfinite), backward
// on static input tensors (images, labels, loss weights) that the step owns; then it, and every later step
// of that shape, copies its batch into the static inputs (device to device), replays the graph, and queues
// the optimizer's update eagerly behind it (one fused kernel, guarded by the same non-finite flag). The
// update stays outside the graph because its kernel takes per-step host values as arguments (the learning
// rate of the schedule, Adam's step count for the bias correction), which a graph would freeze. The loss
// and the logits are the graph's static outputs, which the next replay overwrites: a replayed step's
// PendingStep holds them, and its pinned host copies, queued behind the update before any later replay,
// are what finish() reads. Batch-norm running statistics are updated by
// the recorded forward kernels, as in an eager step. The numbers are the eager steps' bit for bit: the
// same kernels, with the same arguments, in the same order.
//
// Eager steps (TrainingStep::enqueue itself): a batch of another shape than the graph's (an epoch's last,
// smaller batch), the CPU, GraphOptions::enabled false (the trainer's --no-graph), a StepOptions::
// data-parallel hook (reduce_gradients, begin_backward, reduce_nonfinite_flag: driven from the host), ENGINE_CUDA_SYNC=1
// (debugging), and every step after a recording or a replay that failed: the failure is logged in one
// line and the run goes on eagerly, with the numbers it would have had anyway (nothing recorded has run).
//
// While the graph lives, the tensors the step reads must keep their storage (the arena, batch-norm
// buffers): the graph holds their addresses. Its memory is a pool of its own (kernels/cuda/context.h), so
// a step of another shape allocates beside it: expect up to one more step's activations cached.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime.h"
#include "engine/training_step.h"

namespace engine {

struct GraphOptions {
  bool enabled = true;   // false: every step eager (--no-graph)
  int warmup_steps = 2;  // eager steps of a shape before its graph is recorded (at least 1)
  // Receives the one line that says why graphs are off (a failure, an unsupported device); null: stderr.
  std::function<void(const std::string&)> log;
};

class GraphedTrainingStep {
 public:
  // `step` must outlive this object.
  explicit GraphedTrainingStep(TrainingStep& step, GraphOptions options = {});
  ~GraphedTrainingStep();
  GraphedTrainingStep(const GraphedTrainingStep&) = delete;
  GraphedTrainingStep& operator=(const GraphedTrainingStep&) = delete;

  // TrainingStep::enqueue, replayed from the graph when the batch has the graph's shapes.
  PendingStep enqueue(const Tensor& images, const Tensor& labels, const Tensor& weights = Tensor());
  StepResult finish(const PendingStep& pending) { return step_.finish(pending); }
  const Tensor& nonfinite_flag() const { return step_.nonfinite_flag(); }
  void clear_nonfinite() { step_.clear_nonfinite(); }
  TrainingStep& step() const { return step_; }

  // What happened so far (tests, benchmarks): steps replayed from the graph, steps run eagerly, whether a
  // graph is recorded, and why graphs are off (empty while they are on).
  int64_t replayed_steps() const { return replayed_; }
  int64_t eager_steps() const { return eager_; }
  bool recorded() const { return graph_ != nullptr; }
  const std::string& off_reason() const { return off_reason_; }

 private:
  // The shapes (and dtypes) of a step's inputs; a graph serves one.
  struct Signature {
    std::vector<int64_t> images, labels, weights;
    int images_dtype = 0, labels_dtype = 0, weights_dtype = 0;
    bool has_weights = false;
    bool operator==(const Signature& other) const;
    bool operator!=(const Signature& other) const { return !(*this == other); }
  };
  static Signature signature(const Tensor& images, const Tensor& labels, const Tensor& weights);
  void refresh_bf16_copy_if_stale();

  PendingStep eager(const Tensor& images, const Tensor& labels, const Tensor& weights);
  bool record(const Tensor& images, const Tensor& labels, const Tensor& weights);
  PendingStep replay(const Tensor& images, const Tensor& labels, const Tensor& weights);
  void turn_off(const std::string& reason);

  TrainingStep& step_;
  GraphOptions options_;
  bool on_ = false;
  std::string off_reason_;
  Signature warm_signature_;
  int warm_steps_ = 0;  // eager steps of warm_signature_ in a row
  Signature graph_signature_;
  std::unique_ptr<DeviceGraph> graph_;
  Tensor static_images_, static_labels_, static_weights_;  // what the graph reads
  Tensor static_loss_, static_logits_;                     // what it writes
  int64_t replayed_ = 0, eager_ = 0;
};

}  // namespace engine
