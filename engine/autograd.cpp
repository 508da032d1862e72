// The autograd engine: recording nodes and the backward walk (see autograd.h).
#include "engine/autograd.h"

#include <atomic>
#include <map>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "engine/check.h"
#include "engine/ops.h"

namespace engine {
namespace {

std::atomic<uint64_t> next_sequence{1};
thread_local bool grad_mode = true;
thread_local const LeafGradHook* leaf_grad_hook = nullptr;

// A leaf's accumulation, then the observer (LeafGradHookScope).
void accumulate_and_report(const Tensor& leaf, const Tensor& g) {
  accumulate_leaf_grad(leaf, g);
  if (leaf_grad_hook) (*leaf_grad_hook)(leaf);
}

}  // namespace

Node::Node(std::string name, std::vector<Tensor> inputs, BackwardFn backward)
    : name_(std::move(name)), sequence_(next_sequence++), inputs_(std::move(inputs)),
      backward_(std::move(backward)) {}

std::vector<Tensor> Node::apply(const Tensor& grad_output) {
  ENGINE_CHECK(backward_) << "backward through '" << name_
                          << "' a second time; pass retain_graph=true to the first backward()";
  std::vector<Tensor> grads = backward_(grad_output);
  ENGINE_CHECK(grads.size() == inputs_.size())
      << "'" << name_ << "' backward returned " << grads.size() << " gradients for " << inputs_.size()
      << " inputs";
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    ENGINE_CHECK(grads[i].shape() == inputs_[i].shape())
        << "'" << name_ << "' backward gave input " << i << " a gradient of shape "
        << shape_str(grads[i].shape()) << ", expected " << shape_str(inputs_[i].shape());
  }
  return grads;
}

void Node::release() {
  backward_ = nullptr;
  inputs_.clear();
}

bool grad_enabled() { return grad_mode; }
NoGradGuard::NoGradGuard() : previous_(grad_mode) { grad_mode = false; }
NoGradGuard::~NoGradGuard() { grad_mode = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(grad_mode) { grad_mode = true; }
EnableGradGuard::~EnableGradGuard() { grad_mode = previous_; }

LeafGradHookScope::LeafGradHookScope(LeafGradHook hook) : hook_(std::move(hook)), previous_(leaf_grad_hook) {
  leaf_grad_hook = &hook_;
}
LeafGradHookScope::~LeafGradHookScope() { leaf_grad_hook = previous_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_mode) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const Tensor& output, const char* op_name, std::vector<Tensor> inputs,
            Node::BackwardFn backward) {
  if (!needs_grad(inputs)) return;
  auto node = std::make_shared<Node>(op_name, std::move(inputs), std::move(backward));
  node->set_output_shape(output.shape());
  output.impl()->requires_grad = true;
  output.set_grad_fn(std::move(node));
}

void accumulate_leaf_grad(const Tensor& leaf, const Tensor& g) {
  Tensor current = leaf.grad();
  if (!current.defined()) {
    Tensor fresh = Tensor::empty(leaf.shape(), leaf.device(), leaf.dtype());
    fresh.copy_from(g.dtype() == leaf.dtype() ? g : g.to(leaf.dtype()));
    leaf.set_grad(fresh);
    return;
  }
  add_into(current, g);
}

void run_backward(const Tensor& root, const Tensor& root_gradient, bool retain_graph) {
  ENGINE_CHECK(root.requires_grad()) << "backward() on a tensor that does not require a gradient "
                                        "(was it computed under no_grad, or from inputs without requires_grad?)";
  Tensor seed = root_gradient;
  if (!seed.defined()) {
    ENGINE_CHECK(root.numel() == 1) << "backward() on a non-scalar " << root.str()
                                    << " needs an explicit gradient";
    seed = Tensor::ones(root.shape(), root.device());
  }
  ENGINE_CHECK(seed.shape() == root.shape())
      << "root gradient " << shape_str(seed.shape()) << " for root " << shape_str(root.shape());
  if (root.is_leaf()) {
    accumulate_and_report(root, seed);
    return;
  }

  NoGradGuard no_grad;  // backward functions compute with raw ops, never recording
  // Pending gradient per node; highest sequence first = every consumer before its producer. A pending
  // gradient is first the tensor a backward handed out (never mutated: it may alias another's); at the
  // second contribution the engine sums into a tensor of its own, and later ones add into that in place.
  struct Pending {
    Tensor grad;
    bool owned = false;
  };
  std::unordered_map<Node*, Pending> pending;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_alive;
  auto later_first = [](Node* a, Node* b) { return a->sequence() < b->sequence(); };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);

  Node* root_node = root.grad_fn().get();
  keep_alive[root_node] = root.grad_fn();
  pending[root_node] = {seed, false};
  ready.push(root_node);

  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    Tensor grad_output = std::move(pending[node].grad);
    pending.erase(node);
    std::vector<Tensor> inputs = node->inputs();  // copy: release() clears them
    std::vector<Tensor> grads = node->apply(grad_output);
    grad_output = Tensor();
    if (!retain_graph) node->release();

    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& input = inputs[i];
      if (!grads[i].defined() || !input.defined() || !input.requires_grad()) continue;
      if (input.is_leaf()) {
        accumulate_and_report(input, grads[i]);
        continue;
      }
      Node* producer = input.grad_fn().get();
      auto it = pending.find(producer);
      if (it == pending.end()) {
        pending.emplace(producer, Pending{grads[i], false});
        keep_alive[producer] = input.grad_fn();
        ready.push(producer);
      } else if (!it->second.owned) {
        it->second = {add(it->second.grad, grads[i]), true};  // out of place: a fresh tensor we own
      } else {
        add_into(it->second.grad, grads[i]);  // ours: accumulate in place
      }
    }
  }
}

}  // namespace engine
