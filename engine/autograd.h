// Define-by-run autograd.
//
// Every differentiable op that runs while grad mode is on and sees an input that requires a gradient
// records a Node on its output: the op's name, its inputs, and a backward function that maps the
// gradient of the output to the gradients of the inputs. Nodes are numbered in creation order, so
// walking them from the highest number down visits every consumer before its producer: that ordered
// walk over the recorded nodes is the tape.
//
// The gradient rule, in one place:
//  - a tensor used several times receives the sum of the gradients of its uses;
//  - leaves (parameters, inputs with requires_grad) accumulate into .grad (+=) across backward calls,
//    until zero_grad; so two half-batches accumulate to the gradient of the full batch (for a summed loss);
//  - intermediate gradients are summed in a buffer the engine owns: a gradient handed to one input is
//    never mutated by another's accumulation. The engine sums in place only into memory no one else
//    holds (a fresh sum, or a handed-out gradient whose storage only the engine still references, such
//    as a concatenation's slice of a gradient whose other slices have been consumed); otherwise the
//    first sum is out of place. A backward recorded with record_accumulating may add an input's gradient
//    straight into that running sum (DenseNet: norm1's BN adds its dx into the block's gradient slice);
//  - after a node's backward runs, its saved tensors are released (unless retain_graph).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine {

class Node {
 public:
  // Maps the output gradient to one gradient per input (undefined where no gradient is needed).
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
  // Like BackwardFn, with into[i] (where defined) the engine's running sum of input i's gradient: same
  // shape and dtype as input i, referenced by no one else. Slot i of the result is then either into[i]
  // itself, after adding the gradient of input i into it in place, or a fresh gradient as BackwardFn
  // would return (the engine adds it). `into` is empty or has one slot per input.
  using AccumulatingBackwardFn =
      std::function<std::vector<Tensor>(const Tensor& grad_output, const std::vector<Tensor>& into)>;

  Node(std::string name, std::vector<Tensor> inputs, BackwardFn backward);
  static std::shared_ptr<Node> accumulating(std::string name, std::vector<Tensor> inputs,
                                            AccumulatingBackwardFn backward);

  const std::string& name() const { return name_; }
  uint64_t sequence() const { return sequence_; }
  const std::vector<Tensor>& inputs() const { return inputs_; }
  const Shape& output_shape() const { return output_shape_; }
  void set_output_shape(const Shape& shape) { output_shape_ = shape; }

  // `into`: the accumulation targets offered to an accumulating node (empty: none).
  std::vector<Tensor> apply(const Tensor& grad_output, const std::vector<Tensor>& into = {});
  bool accepts_into() const { return accepts_into_; }
  void release();  // drop the saved tensors and the inputs
  bool released() const { return !backward_; }

 private:
  std::string name_;
  uint64_t sequence_;
  std::vector<Tensor> inputs_;
  AccumulatingBackwardFn backward_;
  bool accepts_into_ = false;
  Shape output_shape_;
};

// Grad mode: on by default; off inside a NoGradGuard (evaluation, optimizer updates).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
// Grad mode on inside, whatever it was outside: engine/recompute.cpp recomputes a region with recording
// on from inside the backward walk (where grad mode is off).
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op on these inputs should record a node.
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `backward` as the way back from `output` to `inputs`, if needs_grad(inputs). `output` then
// requires a gradient. The backward function must not capture `output` itself (that would be a
// reference cycle): capture output.detach() when it needs the output's values.
void record(const Tensor& output, const char* op_name, std::vector<Tensor> inputs,
            Node::BackwardFn backward);

// record, for a backward that can add input gradients into the engine's running sums (see
// Node::AccumulatingBackwardFn).
void record_accumulating(const Tensor& output, const char* op_name, std::vector<Tensor> inputs,
                         Node::AccumulatingBackwardFn backward);

// For tests and measurements: while a guard is alive (on this thread), run_backward sums every
// intermediate gradient out of place and offers no accumulation targets (the engine before in-place sums).
class OutOfPlaceGradientSumsGuard {
 public:
  OutOfPlaceGradientSumsGuard();
  ~OutOfPlaceGradientSumsGuard();
  OutOfPlaceGradientSumsGuard(const OutOfPlaceGradientSumsGuard&) = delete;
  OutOfPlaceGradientSumsGuard& operator=(const OutOfPlaceGradientSumsGuard&) = delete;

 private:
  bool previous_;
};

// The engine behind Tensor::backward().
void run_backward(const Tensor& root, const Tensor& root_gradient, bool retain_graph);

// grad += g for a leaf's .grad (allocated on first use; never aliases g).
void accumulate_leaf_grad(const Tensor& leaf, const Tensor& g);

// Observes the backward walk: while a scope is alive (on this thread), `hook(leaf)` is called after each
// accumulation into a leaf's .grad by run_backward, nested walks included (engine/recompute.cpp's
// recomputed regions), with the work that accumulated queued on the device. The data-parallel gradient
// buckets (engine/grad_buckets.h) count these to learn when a parameter's gradient is final.
using LeafGradHook = std::function<void(const Tensor& leaf)>;
class LeafGradHookScope {
 public:
  explicit LeafGradHookScope(LeafGradHook hook);
  ~LeafGradHookScope();
  LeafGradHookScope(const LeafGradHookScope&) = delete;
  LeafGradHookScope& operator=(const LeafGradHookScope&) = delete;

 private:
  LeafGradHook hook_;
  const LeafGradHook* previous_;
};

}  // namespace engine
