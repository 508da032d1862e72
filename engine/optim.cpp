#include "engine/optim.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/ops/common.h"

namespace engine {
namespace {

// The arena of this thread's innermost Bf16WorkingCopyScope, or null.
thread_local const ParameterArena* scoped_arena = nullptr;

// A bf16 tensor's bytes, on the host.
std::vector<uint16_t> host_bits(const Tensor& t) {
  const Tensor host = t.to(Device::cpu()).contiguous();
  std::vector<uint16_t> bits(static_cast<size_t>(host.numel()));
  if (!bits.empty()) std::memcpy(bits.data(), host.raw_data(), bits.size() * sizeof(uint16_t));
  return bits;
}

}  // namespace

bool checking_bf16_copy_on_use() {
  static const bool enabled = [] {
    const char* value = std::getenv("ENGINE_CHECK_BF16_COPY");
    return value != nullptr && std::string(value) != "0" && std::string(value) != "";
  }();
  return enabled;
}

ParameterArena::ParameterArena(const NamedTensors& parameters) : parameters_(parameters) {
  ENGINE_CHECK(!parameters.empty()) << "ParameterArena: no parameters";
  const Device device = parameters.front().second.device();
  int64_t total = 0;
  for (const auto& [name, p] : parameters) {
    ENGINE_CHECK(p.dtype() == DType::f32 && p.device() == device)
        << "ParameterArena: parameter '" << name << "' is " << p.str() << "; all must be f32 on " << device.str();
    ENGINE_CHECK(p.is_leaf()) << "ParameterArena: '" << name << "' is not a leaf tensor";
    total += p.numel();
  }
  values_ = Tensor::empty({total}, device);
  grads_ = Tensor::zeros({total}, device);
  int64_t offset = 0;
  for (const auto& [name, p] : parameters) {
    const int64_t n = p.numel();
    Tensor value_view = values_.slice(0, offset, offset + n).view(p.shape());
    Tensor grad_view = grads_.slice(0, offset, offset + n).view(p.shape());
    value_view.copy_from(p);
    if (p.grad().defined()) grad_view.copy_from(p.grad());
    p.set_data(value_view);
    p.set_grad(grad_view);
    offset += n;
  }
}

void ParameterArena::enable_bf16_copy() {
  if (has_bf16_copy()) return;
  bf16_values_ = Tensor::empty({numel()}, device(), DType::bf16);
  bf16_current_ = false;
  int64_t offset = 0;
  for (const auto& [name, p] : parameters_) {
    const int64_t n = p.numel();
    bf16_parameters_.emplace_back(name, bf16_values_.slice(0, offset, offset + n).view(p.shape()));
    offset += n;
  }
}

void ParameterArena::refresh_bf16_copy() {
  ENGINE_CHECK(has_bf16_copy()) << "ParameterArena::refresh_bf16_copy without enable_bf16_copy()";
  // The conversion Tensor::to(DType::bf16) runs, into the copy's buffer.
  backend_for(device()).convert(values_.raw_data(), DType::f32, bf16_values_.raw_data(), DType::bf16, numel());
  bf16_current_ = true;
  bf16_masters_writes_ = values_.storage()->write_count();
  ++bf16_refreshes_;
}

void ParameterArena::check_bf16_copy() const {
  ENGINE_CHECK(has_bf16_copy()) << "ParameterArena::check_bf16_copy without enable_bf16_copy()";
  const std::vector<uint16_t> copy = host_bits(bf16_values_), fresh = host_bits(values_.to(DType::bf16));
  for (size_t i = 0; i < copy.size(); ++i)
    ENGINE_CHECK(copy[i] == fresh[i])
        << "the arena's bf16 working copy is stale at element " << i << " of " << copy.size()
        << ": the master weights were written through raw pointers, other than by the optimizer, without "
           "invalidate_bf16_copy()";
}

kernels::BFloat16* ParameterArena::bf16_copy_data() const {
  return has_bf16_copy() ? static_cast<kernels::BFloat16*>(bf16_values_.raw_data()) : nullptr;
}

Tensor ParameterArena::bf16_view(const Tensor& weight) const {
  if (!bf16_copy_current() || !weight.defined() || weight.dtype() != DType::f32 || !weight.is_contiguous() ||
      weight.storage() != values_.storage())
    return Tensor();
  const int64_t start = weight.offset() - values_.offset(), n = weight.numel();
  if (start < 0 || start + n > numel()) return Tensor();
  return bf16_values_.slice(0, start, start + n).view(weight.shape());
}

Bf16WorkingCopyScope::Bf16WorkingCopyScope(ParameterArena& arena) : previous_(scoped_arena) {
  if (!arena.has_bf16_copy()) return;
  if (!arena.bf16_copy_current())
    arena.refresh_bf16_copy();
  else if (checking_bf16_copy_on_use())
    arena.check_bf16_copy();
  scoped_arena = &arena;
}

Bf16WorkingCopyScope::~Bf16WorkingCopyScope() { scoped_arena = previous_; }

Tensor cached_bf16_working_copy(const Tensor& weight) {
  return scoped_arena ? scoped_arena->bf16_view(weight) : Tensor();
}

kernels::AdamHyper Adam::pytorch(float lr) {
  kernels::AdamHyper h;
  h.lr = lr;
  h.eps = 1e-8f;
  h.convention = kernels::AdamConvention::pytorch;
  return h;
}

kernels::AdamHyper Adam::keras(float lr) {
  kernels::AdamHyper h;
  h.lr = lr;
  h.eps = 1e-7f;
  h.convention = kernels::AdamConvention::keras;
  return h;
}

kernels::AdamHyper Adam::decoupled_weight_decay(kernels::AdamHyper hyper, float weight_decay) {
  hyper.weight_decay = weight_decay;
  hyper.decoupled_weight_decay = true;
  return hyper;
}

Adam::Adam(ParameterArena& arena, const kernels::AdamHyper& hyper)
    : Optimizer(arena), hyper_(hyper), m_(Tensor::zeros({arena.numel()}, arena.device())),
      v_(Tensor::zeros({arena.numel()}, arena.device())) {}

void Adam::step() {
  NoGradGuard no_grad;
  ++step_;
  ENGINE_KERNEL(arena_.device(), adam_update)(arena_.numel(), arena_.values().data(), arena_.grads().data(), m_.data(), v_.data(),
                            step_, hyper_, skip_flag_data(), arena_.bf16_copy_data());
}

Sgd::Sgd(ParameterArena& arena, const kernels::SgdHyper& hyper)
    : Optimizer(arena), hyper_(hyper), buffer_(Tensor::zeros({arena.numel()}, arena.device())) {}

void Sgd::step() {
  NoGradGuard no_grad;
  ++step_;
  ENGINE_KERNEL(arena_.device(), sgd_update)(arena_.numel(), arena_.values().data(), arena_.grads().data(), buffer_.data(),
                                             hyper_, skip_flag_data(), arena_.bf16_copy_data());
}

}  // namespace engine

