// One training step of a binary classifier, written once for the trainer, the benchmarks, the demo and
// the tests: zero the gradients, forward, binary cross-entropy on the logits, read the loss back and test
// it for a non-finite value, backward, all-reduce the gradients (a hook), the optimizer's update.
//
//   ParameterArena arena(net.named_parameters());
//   Adam adam(arena, Adam::keras(1e-5f));
//   TrainingStep step(net, arena, &adam);                // net: anything with Tensor forward(const Tensor&)
//   const StepResult r = step.run(images, labels);       // r.loss, r.logits, r.finite
//
// A step whose loss is not finite stops after the loss: no backward, no update, the parameters and the
// optimizer state as they were; the caller decides what to do (the trainer writes a debug file and stops).
// Without an optimizer (nullptr) a step computes the gradients only (the benchmarks of forward + backward).
// The numbers are those of writing the same calls out by hand, bit for bit.
//
// The seams for the work that builds on it:
//  (a) CUDA graphs. A step is three phases, each a method of its own, and run() is the three in order:
//        forward_loss(images, labels, weights)   DEVICE  zero_grad, forward, loss (no host read)
//        read_loss(loss)                         HOST    loss.item() and the finiteness test: the one
//                                                        synchronisation of a step
//        backward_update(loss)                   DEVICE  backward, reduce_gradients, optimizer update
//      The device phases enqueue kernels only and never read memory back, so a capture can take them as
//      one graph. The deferred form below moves the finiteness test onto the device: no host
//      synchronisation inside a step at all.
//  (a') Deferred loss read. enqueue() runs the whole step on the device: forward, loss, a device-side
//      test that sets a sticky non-finite flag (kernels flag_nonfinite), backward, reduce_gradients and an
//      update that the optimizer's kernel skips while the flag is set (Optimizer::set_skip_flag). It reads
//      nothing back. finish(pending) reads the loss when the caller chooses (the trainer: the previous
//      step's, after enqueueing the next). On a GPU, enqueue() also queues copies of the loss and logits
//      into pinned host memory and a marker behind them (queue_host_readback), and finish() waits for
//      that marker only: reading step k does not wait for step k + 1, which the device may still be
//      running, so the host prepares step k + 2 meanwhile. A non-finite loss leaves the parameters and the optimizer's
//      moments as they were, like run(); because the flag stays set, so does every step enqueued after
//      it, and finish() of the non-finite step puts the optimizer's step count back to where it was
//      before that step. clear_nonfinite() resets the flag (to go on training after one). Unlike run(),
//      backward and reduce_gradients do run on a non-finite step (the host does not know yet). In a
//      data-parallel run StepOptions::reduce_nonfinite_flag takes the flag's maximum over the processes
//      right after the test (before backward), so that every process skips the same updates. Forward-only state (batch-norm running statistics) of the steps enqueued
//      after a non-finite one is updated as their forward passes run.
//        PendingStep previous = step.enqueue(images, labels);
//        ... next batch: PendingStep current = step.enqueue(...); StepResult r = step.finish(previous);
//  (b) Precision. StepOptions::precision chooses the arithmetic of the step (docs/precision.md): f32, or
//      bf16 mixed precision: the images enter the net as bf16, so every activation and activation
//      gradient is stored in bf16 while the arithmetic stays f32; the f32 master weights stay in the
//      arena and every op reads a weight as its bf16 working copy: the arena's bf16 copy, which the step
//      refreshes before its forward unless it is current and the optimizer's fused update keeps current
//      (engine/optim.h); the loss is f32 from the bf16 logits; weight gradients, BN statistics and the
//      optimizer's update stay f32 (bf16 has f32's range: no loss scaling). f16 is refused when the step
//      is made.
//  (c) Data parallelism. StepOptions::reduce_gradients is called with the arena after backward and before
//      the update: arena.grads() holds every gradient in one buffer, so one all-reduce (or an average
//      over processes) serves. begin_backward, when set, is called just before backward: the trainer
//      under an MPI launcher sets the pair to engine::GradientBuckets (engine/grad_buckets.h), which
//      starts the all-reduce of each bucket of gradients while backward still runs and waits for them
//      in reduce_gradients (docs/distributed.md). Null = a single process.
#pragma once
#include <functional>
#include <string>
#include <utility>

#include "engine/backend.h"
#include "engine/optim.h"
#include "engine/tensor.h"

namespace engine {

// The arithmetic of a step: f32, or bf16 mixed precision (seam (b)). f16 is named so that asking for it
// is a clear error rather than a silent f32 run.
enum class Precision { f32, bf16, f16 };
std::string precision_name(Precision precision);

struct StepOptions {
  Precision precision = Precision::f32;
  // Called between backward and the update with the arena whose grads() are complete (seam (c)).
  std::function<void(ParameterArena&)> reduce_gradients;
  // Called just before backward (seam (c): the gradient buckets start watching the accumulations).
  std::function<void(ParameterArena&)> begin_backward;
  // enqueue(): the sticky non-finite flag [1], reduced in place over the processes (a maximum) before
  // backward and the update (seam (a')).
  std::function<void(const Tensor& flag)> reduce_nonfinite_flag;
};

struct StepResult {
  double loss = 0;  // the batch's mean (or weighted) BCE, read back to the host
  // [N, 1] of the forward pass: run() gives the device's, part of the autograd graph; finish() a detached
  // copy, on the host where the step ran on a GPU (read back with the loss, without another wait).
  Tensor logits;
  bool finite = true;  // false: the loss was NaN or infinite and nothing was updated
};

// A step enqueued by TrainingStep::enqueue whose loss the host has not read yet.
struct PendingStep {
  // The scalar loss and the [N, 1] logits on the device, detached (the step's autograd graph is not kept
  // alive). A step replayed from a CUDA graph holds the graph's static outputs, which the next replay
  // overwrites: read host_loss and host_logits (finish() does), not these, once a later step is enqueued.
  Tensor loss;
  Tensor logits;
  int64_t optimizer_steps_before = 0;  // the optimizer's step count before this step
  // On a GPU: host copies of the loss and logits (pinned), queued behind the whole step (its update
  // included), and the marker after them. finish() waits on the marker alone, so reading step k does not wait for step k + 1
  // enqueued since (a full synchronisation would). Absent on the CPU, where loss and logits are on the host.
  Tensor host_loss, host_logits;
  std::shared_ptr<DeviceMarker> readback;
  bool defined() const { return loss.defined(); }
};

// Queues pending's host copies and marker (above) where loss and logits are on a device; nothing on the CPU.
void queue_host_readback(PendingStep& pending);

class TrainingStep {
 public:
  using Forward = std::function<Tensor(const Tensor&)>;

  // `net`: any object with Tensor forward(const Tensor& images) const (a nets::Net, a TinyCnn); it, the
  // arena and the optimizer must outlive the step. optimizer may be null (gradients only).
  template <typename Net, typename = decltype(std::declval<const Net&>().forward(std::declval<const Tensor&>()))>
  TrainingStep(const Net& net, ParameterArena& arena, Optimizer* optimizer, StepOptions options = {})
      : TrainingStep(Forward([&net](const Tensor& images) { return net.forward(images); }), arena, optimizer,
                     std::move(options)) {}
  TrainingStep(Forward forward, ParameterArena& arena, Optimizer* optimizer, StepOptions options = {});

  // The whole step: forward_loss, read_loss, and backward_update when the loss is finite.
  // weights: per-image loss weights [N] (class weights) or an empty tensor.
  StepResult run(const Tensor& images, const Tensor& labels, const Tensor& weights = Tensor());

  // The phases of run() (seam (a)). forward_loss returns the scalar loss tensor and sets `logits`.
  Tensor forward_loss(const Tensor& images, const Tensor& labels, const Tensor& weights, Tensor& logits);
  static double read_loss(const Tensor& loss);
  void backward_update(const Tensor& loss);  // backward, then reduce_update
  // backward_update in its two halves: the device work of the backward pass (with the data-parallel
  // begin_backward hook), and the gradient reduction hook followed by the optimizer's update. A CUDA graph
  // (engine/graph_step.h) records the first and runs the second eagerly.
  void backward(const Tensor& loss);
  void reduce_update();
  // forward_loss, then the device-side non-finite test of enqueue (seam (a')): sets the sticky flag when
  // the loss is not finite (and reduces it over processes when the hook is set). Reads nothing back.
  Tensor forward_loss_flagged(const Tensor& images, const Tensor& labels, const Tensor& weights, Tensor& logits);

  // The deferred form (seam (a')): enqueue() synchronises nothing; finish() reads the loss (one copy).
  PendingStep enqueue(const Tensor& images, const Tensor& labels, const Tensor& weights = Tensor());
  StepResult finish(const PendingStep& pending);
  // The sticky device flag [1] (1 once an enqueued loss was not finite) and its reset (a device fill).
  const Tensor& nonfinite_flag() const { return nonfinite_; }
  void clear_nonfinite() { nonfinite_.fill_(0.0f); }

  const StepOptions& options() const { return options_; }
  // What the net is given for `images`: a bf16 copy in a bf16 step, the images themselves otherwise.
  Tensor activation_input(const Tensor& images) const;
  Optimizer* optimizer() const { return optimizer_; }
  ParameterArena& arena() const { return arena_; }

 private:
  Forward forward_;
  ParameterArena& arena_;
  Optimizer* optimizer_;
  StepOptions options_;
  Tensor nonfinite_;  // [1] f32 on the arena's device
};

}  // namespace engine
