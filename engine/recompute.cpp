// Recomputation in backward (see recompute.h): recompute_in_backward and with_recomputed share one core.
//
// A Region is what a recompute needs: fn, the inputs' values (detached), which inputs need gradients,
// and the state fn updates. recompute() runs fn on fresh leaves (detached aliases of the saved inputs,
// sharing their memory) with recording on. Each leaf that needs a gradient is read by fn through a
// "recompute_input" node whose backward stores the gradient that reaches it (the sum over fn's uses,
// formed by the walk) instead of accumulating it into the leaf's .grad, so the input gradients cost no
// extra copy. backward_through() is an ordinary run_backward nested in the enclosing one: parameters
// fn reads directly are leaves of it and accumulate their gradients exactly as in the plain graph.
#include "engine/recompute.h"

#include <optional>
#include <unordered_set>

#include "engine/autograd.h"
#include "engine/check.h"

namespace engine {
namespace detail {
namespace {

struct Region {
  RegionFn fn;
  std::vector<Tensor> saved;  // the inputs' values, without their history (the region's node holds that)
  std::vector<bool> needs_gradient;
  std::vector<Tensor> state;
};

// fn's output recomputed with its local graph, and where the input gradients land.
struct Recompute {
  Tensor output;
  std::shared_ptr<std::vector<Tensor>> input_grads;
  uint64_t first_sequence;  // nodes after it belong to the recompute
};

// fn(inputs) without recording, checked to be a new tensor.
Tensor run_unrecorded(const RegionFn& fn, const std::vector<Tensor>& inputs) {
  ENGINE_CHECK(fn) << "recompute_in_backward: no function given";
  Tensor y;
  {
    NoGradGuard no_grad;
    y = fn(inputs);
  }
  ENGINE_CHECK(y.defined()) << "recompute_in_backward: fn returned no tensor";
  ENGINE_CHECK(!y.requires_grad())
      << "recompute_in_backward: fn returned a tensor that already requires a gradient (a parameter?); it must "
         "compute a new tensor";
  for (const Tensor& t : inputs)
    ENGINE_CHECK(!t.defined() || !y.same(t))
        << "recompute_in_backward: fn must return a new tensor, not one of its inputs";
  return y;
}

std::shared_ptr<const Region> make_region(const RegionFn& fn, const std::vector<Tensor>& inputs,
                                          const std::vector<Tensor>& state) {
  auto region = std::make_shared<Region>();
  region->fn = fn;
  region->state = state;
  for (const Tensor& t : inputs) {
    region->saved.push_back(t.defined() ? t.detach() : Tensor());
    region->needs_gradient.push_back(t.defined() && t.requires_grad());
  }
  return region;
}

// Snapshots of the state tensors (BN running statistics), put back after the recompute.
class StateSnapshot {
 public:
  explicit StateSnapshot(const std::vector<Tensor>& state) : state_(state) {
    for (const Tensor& t : state) snapshots_.push_back(t.defined() ? t.clone() : Tensor());
  }
  void restore() const {
    for (size_t i = 0; i < state_.size(); ++i)
      if (snapshots_[i].defined()) state_[i].copy_from(snapshots_[i]);
  }

 private:
  const std::vector<Tensor>& state_;
  std::vector<Tensor> snapshots_;
};

Recompute recompute(const Region& region) {
  Recompute r;
  r.input_grads = std::make_shared<std::vector<Tensor>>(region.saved.size());
  r.first_sequence = Node("recompute_begin", {}, nullptr).sequence();  // sequence numbers only grow
  EnableGradGuard recording;
  std::vector<Tensor> local(region.saved.size());
  for (size_t i = 0; i < region.saved.size(); ++i) {
    if (!region.saved[i].defined()) continue;
    Tensor leaf = region.saved[i].detach();
    if (!region.needs_gradient[i]) {
      local[i] = leaf;
      continue;
    }
    leaf.set_requires_grad(true);
    local[i] = leaf.detach();
    record(local[i], "recompute_input", {leaf}, [grads = r.input_grads, i](const Tensor& g) {
      (*grads)[i] = g;  // the inner walk hands it out; the enclosing walk adds into it in place only once
                        // nothing else references its storage (engine/autograd.cpp: exclusive)
      return std::vector<Tensor>{Tensor()};
    });
  }
  const StateSnapshot snapshot(region.state);
  try {
    r.output = region.fn(local);
  } catch (...) {
    snapshot.restore();
    throw;
  }
  snapshot.restore();
  return r;
}

// Every node of the recomputed graph must have been created by the recompute: a node from before means
// fn read a tensor with history from the graph around the region.
void check_region_is_closed(const Recompute& r) {
  std::vector<Node*> stack{r.output.grad_fn().get()};
  std::unordered_set<Node*> seen;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    ENGINE_CHECK(node->sequence() > r.first_sequence)
        << "recompute_in_backward: the recomputed region reads the output of '" << node->name()
        << "' from outside it; pass every tensor with autograd history that fn reads in its inputs";
    for (const Tensor& t : node->inputs())
      if (t.defined() && t.grad_fn()) stack.push_back(t.grad_fn().get());
  }
}

// Back-propagates dy through the recomputed graph; returns the inputs' gradients.
std::vector<Tensor> backward_through(const Recompute& r, const Tensor& dy) {
  ENGINE_CHECK(r.output.defined() && r.output.shape() == dy.shape())
      << "recompute_in_backward: the recompute returned "
      << (r.output.defined() ? shape_str(r.output.shape()) : "nothing")
      << " where the forward returned " << shape_str(dy.shape()) << "; fn must be deterministic";
  if (!r.output.requires_grad()) return *r.input_grads;  // nothing differentiable reached the output
  check_region_is_closed(r);
  run_backward(r.output, dy, /*retain_graph=*/false);
  return *r.input_grads;
}

}  // namespace

// What with_recomputed's two nodes share: the region, and the recompute between them. It must never
// hold the recomputed tensor itself (that tensor's node holds this: a reference cycle).
struct RecomputeShared {
  std::shared_ptr<const Region> region;
  std::optional<Recompute> pending;  // made by the release node's backward, used by the tensor's node
};

}  // namespace detail

Tensor recompute_in_backward(const RegionFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& state) {
  if (!needs_grad(inputs)) return fn(inputs);  // nothing to keep: the ordinary graph (if any) is right
  Tensor y = detail::run_unrecorded(fn, inputs);
  record(y, "recompute_in_backward", inputs, [region = detail::make_region(fn, inputs, state)](const Tensor& dy) {
    return detail::backward_through(detail::recompute(*region), dy);
  });
  return y;
}

Tensor with_recomputed(const RegionFn& fn, const std::vector<Tensor>& inputs, const ConsumerFn& consumer,
                       const std::vector<Tensor>& state) {
  ENGINE_CHECK(consumer) << "with_recomputed: no consumer given";
  if (!needs_grad(inputs)) return consumer(fn(inputs));  // the ordinary graph (if any) is right

  // z, with a node that back-propagates through the recompute the release node below will have made.
  Tensor z = detail::run_unrecorded(fn, inputs);
  auto shared = std::make_shared<detail::RecomputeShared>();
  shared->region = detail::make_region(fn, inputs, state);
  record(z, "recomputed", inputs, [shared](const Tensor& dz) {
    ENGINE_CHECK(shared->pending) << "with_recomputed: the recomputed tensor escaped its consumer";
    std::vector<Tensor> grads = detail::backward_through(*shared->pending, dz);
    shared->pending.reset();  // the recomputed graph (the consumer's nodes hold the values while alive)
    return grads;
  });

  const Tensor y = consumer(z);
  ENGINE_CHECK(y.defined() && !y.same(z)) << "with_recomputed: consumer must return a new tensor computed from z";
  if (!y.requires_grad()) return y;  // nothing recorded downstream of z: nothing will read it in backward

  // The consumer's nodes hold z's handle (not its storage directly): pointing the handle elsewhere gives
  // the memory back now, and pointing it at the recompute before their backward gives them their values.
  const Tensor continued = y.detach();
  record(continued, "recompute_before", {y}, [z, shape = z.shape(), shared](const Tensor& dy) {
    shared->pending = detail::recompute(*shared->region);
    ENGINE_CHECK(shared->pending->output.shape() == shape)
        << "with_recomputed: the recompute returned " << shape_str(shared->pending->output.shape())
        << " where the forward returned " << shape_str(shape) << "; fn must be deterministic";
    z.set_data(shared->pending->output);
    return std::vector<Tensor>{dy};
  });
  z.set_data(Tensor::empty({0}, z.device()));
  return continued;
}

}  // namespace engine
