// Fused optimizer updates over a whole parameter arena (n contiguous floats: parameters p, gradients
// g, and the state arrays). One call updates every parameter of a net.
//
// Adam, PyTorch convention (torch.optim.Adam), step t >= 1:
//   g' = g + weight_decay * p                     (L2, only when !decoupled)
//   m = b1 m + (1 - b1) g';   v = b2 v + (1 - b2) g'^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// Adam, Keras convention (keras.optimizers.Adam): epsilon is added to the uncorrected sqrt(v):
//   alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
//   p -= alpha * m / (sqrt(v) + eps)
// Decoupled weight decay (AdamW, Keras weight_decay): p -= lr * weight_decay * p before the update (PyTorch
// rounds it as p *= float(1 - lr * weight_decay), Keras as p -= (p * weight_decay) * lr: each convention
// follows its framework).
//
// SGD with momentum (PyTorch convention, no dampening):
//   g' = g + weight_decay * p;  buf = momentum * buf + g';  p -= lr * (nesterov ? g' + momentum * buf : buf)
//
// Mixed precision (docs/precision.md): either update may also write the bf16 working copy of the new
// parameters in the same pass (params_bf16, optimizer_api.inc), so a bf16 step reads weights that
// nothing converts again.
#pragma once
#include <cstdint>

#include "kernels/bf16.h"

namespace kernels {

enum class AdamConvention { pytorch, keras };

struct AdamHyper {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled_weight_decay = false;
  AdamConvention convention = AdamConvention::pytorch;
};

struct SgdHyper {
  float lr = 1e-2f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
};

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/optimizer_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
#include "kernels/optimizer_api.inc"
}  // namespace kernels::cuda
