#include "engine/optim.h"

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/ops/common.h"

namespace engine {

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
    : arena_(arena), hyper_(hyper), m_(Tensor::zeros({arena.numel()}, arena.device())),
      v_(Tensor::zeros({arena.numel()}, arena.device())) {}

void Adam::step() {
  NoGradGuard no_grad;
  ++step_;
  ENGINE_KERNEL(arena_.device(), adam_update)(arena_.numel(), arena_.values().data(), arena_.grads().data(), m_.data(), v_.data(),
                            step_, hyper_, skip_flag_data());
}

Sgd::Sgd(ParameterArena& arena, const kernels::SgdHyper& hyper)
    : arena_(arena), hyper_(hyper), buffer_(Tensor::zeros({arena.numel()}, arena.device())) {}

void Sgd::step() {
  NoGradGuard no_grad;
  ++step_;
  ENGINE_KERNEL(arena_.device(), sgd_update)(arena_.numel(), arena_.values().data(), arena_.grads().data(), buffer_.data(), hyper_, skip_flag_data());
}

}  // namespace engine

