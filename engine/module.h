// Module: a node of the model tree. It owns named parameters (trainable, requires_grad), named
// buffers (state that is not trained, e.g. batch-norm running statistics) and named child modules.
// Names are hierarchical ("features.denseblock1.denselayer1.conv1.weight"), built from the names given
// at registration, so that a net's parameter names mirror its module tree and weight files load by name.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace engine {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;

  // --- The tree ---
  NamedTensors named_parameters() const;  // depth-first, registration order
  NamedTensors named_buffers() const;
  NamedTensors state() const;  // parameters then buffers: what a checkpoint or weight file holds
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  int64_t num_parameters() const;  // elements of the trainable parameters

  // --- Modes and placement ---
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Moves every parameter and buffer to `device` in place (handles held elsewhere stay valid).
  void to(Device device);
  void zero_grad();

  // Copies values from `tensors` by name. Every name and shape is checked and all problems are reported
  // together. Names in `skip_prefixes` are left out on both sides (e.g. the classifier head);
  // `allow_missing` tolerates model tensors absent from `tensors`.
  struct LoadReport {
    std::vector<std::string> loaded, missing, unexpected, skipped;
  };
  LoadReport load_state(const std::map<std::string, Tensor>& tensors,
                        const std::vector<std::string>& skip_prefixes = {}, bool allow_missing = false);

 protected:
  Tensor register_parameter(const std::string& name, Tensor tensor);  // sets requires_grad
  Tensor register_buffer(const std::string& name, Tensor tensor);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool parameters, NamedTensors& out) const;
  void check_new_name(const std::string& name) const;

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace engine
