#include "engine/module.h"

#include <set>
#include <sstream>

#include "engine/check.h"

namespace engine {

void Module::check_new_name(const std::string& name) const {
  ENGINE_CHECK(!name.empty() && name.find('.') == std::string::npos)
      << "module member name '" << name << "' must be non-empty and contain no '.'";
  for (const auto* list : {&parameters_, &buffers_})
    for (const auto& [n, t] : *list) ENGINE_CHECK(n != name) << "duplicate member name '" << name << "'";
  for (const auto& [n, m] : children_) ENGINE_CHECK(n != name) << "duplicate member name '" << name << "'";
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor) {
  check_new_name(name);
  ENGINE_CHECK(tensor.defined() && tensor.is_leaf()) << "parameter '" << name << "' must be a defined leaf tensor";
  tensor.set_requires_grad(true);
  parameters_.emplace_back(name, tensor);
  return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor) {
  check_new_name(name);
  ENGINE_CHECK(tensor.defined()) << "buffer '" << name << "' must be defined";
  buffers_.emplace_back(name, tensor);
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  ENGINE_CHECK(module) << "child module '" << name << "' is null";
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool parameters, NamedTensors& out) const {
  for (const auto& [name, t] : parameters ? parameters_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

NamedTensors Module::state() const {
  NamedTensors out = named_parameters();
  NamedTensors buffers = named_buffers();
  out.insert(out.end(), buffers.begin(), buffers.end());
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (auto& [name, t] : state()) {
    if (t.device() == device) continue;
    t.set_data(t.to(device));
    if (t.grad().defined()) t.set_grad(t.grad().to(device));
  }
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

Module::LoadReport Module::load_state(const std::map<std::string, Tensor>& tensors,
                                      const std::vector<std::string>& skip_prefixes, bool allow_missing) {
  auto skipped = [&](const std::string& name) {
    for (const std::string& p : skip_prefixes)
      if (name.compare(0, p.size(), p) == 0) return true;
    return false;
  };
  LoadReport report;
  std::vector<std::string> shape_errors;
  std::set<std::string> seen;
  std::vector<std::pair<Tensor, Tensor>> copies;
  for (const auto& [name, t] : state()) {
    seen.insert(name);
    if (skipped(name)) {
      report.skipped.push_back(name);
      continue;
    }
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      report.missing.push_back(name);
      continue;
    }
    if (it->second.shape() != t.shape()) {
      shape_errors.push_back(name + ": file " + shape_str(it->second.shape()) + ", model " + shape_str(t.shape()));
      continue;
    }
    copies.emplace_back(t, it->second);
    report.loaded.push_back(name);
  }
  for (const auto& [name, t] : tensors)
    if (!seen.count(name) && !skipped(name)) report.unexpected.push_back(name);

  const bool bad = !shape_errors.empty() || !report.unexpected.empty() || (!allow_missing && !report.missing.empty());
  if (bad) {
    std::ostringstream msg;
    msg << "weights do not match the model (" << report.loaded.size() << " tensors matched):";
    auto list = [&msg](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg << "\n  " << names.size() << " " << what << ":";
      for (size_t i = 0; i < names.size() && i < 20; ++i) msg << "\n    " << names[i];
      if (names.size() > 20) msg << "\n    ... and " << names.size() - 20 << " more";
    };
    list("with a different shape", shape_errors);
    list("missing from the file", report.missing);
    list("in the file but not in the model", report.unexpected);
    msg << "\n  hint: check that the file was converted for this architecture and head; skip the head to"
           " load an ImageNet backbone under a new head";
    ENGINE_USER_FAIL() << msg.str();
  }
  for (auto& [dst, src] : copies) dst.copy_from(src.to(dst.device()));
  return report;
}

}  // namespace engine
