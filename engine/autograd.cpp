// The autograd engine: recording nodes and the backward walk (see autograd.h).
#include "engine/autograd.h"

#include <atomic>
#include <map>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "engine/check.h"
#include "engine/ops.h"
#include "engine/ops/common.h"

namespace engine {
namespace {

std::atomic<uint64_t> next_sequence{1};
thread_local bool grad_mode = true;
thread_local const LeafGradHook* leaf_grad_hook = nullptr;
thread_local bool out_of_place_sums = false;  // OutOfPlaceGradientSumsGuard

// A leaf's accumulation, then the observer (LeafGradHookScope).
void accumulate_and_report(const Tensor& leaf, const Tensor& g) {
  accumulate_leaf_grad(leaf, g);
  if (leaf_grad_hook) (*leaf_grad_hook)(leaf);
}

// A node's pending output gradient in run_backward: the running sum, and whether the engine may add into
// it in place (it owns the memory).
struct Pending {
  Tensor grad;
  bool owned = false;
};

// True when the engine's handle is the only reference to the pending gradient's memory: no other tensor
// (another node's pending gradient, a saved tensor, the caller's root gradient) shares its storage, so
// writing into it changes nothing anyone else can read. Storages never alias each other (each is its own
// allocation), so the storage's reference count is the whole story. add_into needs a row matrix.
bool exclusive(const Pending& p) { return p.grad.storage().use_count() == 1 && detail::is_row_matrix(p.grad); }

// Makes `p` the engine's to add into in place, if it is already or can be (exclusive), and a gradient of
// `dtype` on `device` adds into it as the out-of-place sum would (same dtype).
bool take_ownership(Pending& p, DType dtype, Device device) {
  if (out_of_place_sums) return false;
  if (!p.owned && (p.grad.dtype() != dtype || !(p.grad.device() == device) || !exclusive(p))) return false;
  p.owned = true;
  return true;
}

// The running sums an accumulating node may add its input gradients into (Node::AccumulatingBackwardFn):
// for each non-leaf input whose producer already has a pending gradient the engine owns or can take, of
// the input's dtype; one slot per producer (an input repeated gets the engine's ordinary sum). Empty
// when there is none.
std::vector<Tensor> accumulation_targets(const std::vector<Tensor>& inputs,
                                         std::unordered_map<Node*, Pending>& pending) {
  std::vector<Tensor> into(inputs.size());
  std::unordered_set<Node*> offered;
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined() || !input.requires_grad() || input.is_leaf()) continue;
    Node* producer = input.grad_fn().get();
    auto it = pending.find(producer);
    if (it == pending.end() || !offered.insert(producer).second) continue;
    if (!take_ownership(it->second, input.dtype(), input.device())) continue;
    into[i] = it->second.grad;
    any = true;
  }
  if (!any) into.clear();
  return into;
}

}  // namespace

Node::Node(std::string name, std::vector<Tensor> inputs, BackwardFn backward)
    : name_(std::move(name)), sequence_(next_sequence++), inputs_(std::move(inputs)) {
  if (backward)
    backward_ = [plain = std::move(backward)](const Tensor& dy, const std::vector<Tensor>&) { return plain(dy); };
}

std::shared_ptr<Node> Node::accumulating(std::string name, std::vector<Tensor> inputs,
                                         AccumulatingBackwardFn backward) {
  auto node = std::make_shared<Node>(std::move(name), std::move(inputs), nullptr);
  node->backward_ = std::move(backward);
  node->accepts_into_ = true;
  return node;
}

std::vector<Tensor> Node::apply(const Tensor& grad_output, const std::vector<Tensor>& into) {
  ENGINE_CHECK(backward_) << "backward through '" << name_
                          << "' a second time; pass retain_graph=true to the first backward()";
  ENGINE_CHECK(into.empty() || (accepts_into_ && into.size() == inputs_.size()))
      << "'" << name_ << "': accumulation targets offered to a node that takes none, or of the wrong count";
  std::vector<Tensor> grads = backward_(grad_output, into);
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

OutOfPlaceGradientSumsGuard::OutOfPlaceGradientSumsGuard() : previous_(out_of_place_sums) { out_of_place_sums = true; }
OutOfPlaceGradientSumsGuard::~OutOfPlaceGradientSumsGuard() { out_of_place_sums = previous_; }

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

namespace {

void attach(const Tensor& output, std::shared_ptr<Node> node) {
  node->set_output_shape(output.shape());
  output.impl()->requires_grad = true;
  output.set_grad_fn(std::move(node));
}

}  // namespace

void record(const Tensor& output, const char* op_name, std::vector<Tensor> inputs,
            Node::BackwardFn backward) {
  if (!needs_grad(inputs)) return;
  attach(output, std::make_shared<Node>(op_name, std::move(inputs), std::move(backward)));
}

void record_accumulating(const Tensor& output, const char* op_name, std::vector<Tensor> inputs,
                         Node::AccumulatingBackwardFn backward) {
  if (!needs_grad(inputs)) return;
  attach(output, Node::accumulating(op_name, std::move(inputs), std::move(backward)));
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
  // gradient is first the tensor a backward handed out, under a handle of the engine's own; it may alias
  // another's, so at the second contribution the engine sums into memory of its own: in place when the
  // handed-out storage is referenced by that handle alone (exclusive(), e.g. a concatenation's slice whose
  // sibling slices have been consumed), else into a fresh tensor. Later contributions add in place.
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
    const std::vector<Tensor> into =
        node->accepts_into() && !out_of_place_sums ? accumulation_targets(inputs, pending) : std::vector<Tensor>();
    std::vector<Tensor> grads = node->apply(grad_output, into);
    grad_output = Tensor();
    if (!retain_graph) node->release();

    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& input = inputs[i];
      if (!grads[i].defined() || !input.defined() || !input.requires_grad()) continue;
      if (i < into.size() && into[i].defined() && grads[i].same(into[i])) continue;  // added in place by backward
      if (input.is_leaf()) {
        accumulate_and_report(input, grads[i]);
        continue;
      }
      Node* producer = input.grad_fn().get();
      auto it = pending.find(producer);
      if (it == pending.end()) {
        pending.emplace(producer, Pending{grads[i].detach(), false});  // a handle of our own (see exclusive)
        keep_alive[producer] = input.grad_fn();
        ready.push(producer);
      } else if (take_ownership(it->second, grads[i].dtype(), grads[i].device())) {
        add_into(it->second.grad, grads[i]);  // ours: accumulate in place
      } else {
        it->second = {add(it->second.grad, grads[i]), true};  // out of place: a fresh tensor we own
      }
    }
  }
}

}  // namespace engine
