// Fused optimizer updates on the CPU over a parameter arena of n floats (see optimizer.h; the two
// Adam conventions are compared in docs/derivations.md).
//   Adam (PyTorch): g' = g [+ wd p];  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//                   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
//   Adam (Keras):   same m, v;  alpha = lr sqrt(1-b2^t) / (1-b1^t)
//                   p -= alpha * m / (sqrt(v) + eps)
//   Decoupled weight decay (AdamW) before the update, and then no L2 term, rounded as each framework
//   does: PyTorch (torch.optim.AdamW) p *= float(1 - lr * wd); Keras (weight_decay) p -= (p * wd) * lr.
//   SGD (PyTorch):  g' = g + wd p;  buf = mu buf + g';  p -= lr * (nesterov ? g' + mu buf : buf)
// The per-step factors (bias corrections, step sizes) are computed once in double; the per-element
// arithmetic is float, in the order the reference framework uses. Every element is independent, so
// the threaded loops are deterministic. A bf16 working copy (params_bf16, optional) gets each new
// parameter rounded to nearest even in the same loop.
#include "kernels/optimizer.h"

#include <algorithm>
#include <cmath>

namespace kernels::cpu {
namespace {

// Below this many elements a loop runs on one thread (starting OpenMP would cost more).
constexpr int64_t kParallelMinElements = 1 << 15;

}  // namespace

void adam_update(int64_t n, float* params, const float* grads, float* m, float* v, int64_t step,
                 const AdamHyper& h, const float* skip_flag, BFloat16* params_bf16) {
  if (n <= 0 || (skip_flag && *skip_flag != 0.0f)) return;
  // step counts from 1; a smaller value is a caller error, treated as 1 (no division by zero).
  const double t = static_cast<double>(std::max<int64_t>(step, 1));
  const double b1 = h.beta1, b2 = h.beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, t);
  const double bias_correction2 = 1.0 - std::pow(b2, t);

  const float beta1 = h.beta1, beta2 = h.beta2, eps = h.eps;
  const float one_minus_beta1 = static_cast<float>(1.0 - b1);
  const float one_minus_beta2 = static_cast<float>(1.0 - b2);
  const bool decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0f;
  const float l2 = h.decoupled_weight_decay ? 0.0f : h.weight_decay;
  const float lr = h.lr, wd = h.weight_decay;
  const bool pytorch = h.convention == AdamConvention::pytorch;
  // PyTorch's decoupled decay multiplies by one factor, 1 - lr * wd computed in double.
  const float keep = static_cast<float>(1.0 - double(h.lr) * double(h.weight_decay));
  // PyTorch: step_size = lr / bc1, denominator sqrt(v) / sqrt(bc2) + eps.
  const float step_size = static_cast<float>(double(h.lr) / bias_correction1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bias_correction2));
  // Keras: alpha = lr * sqrt(bc2) / bc1, denominator sqrt(v) + eps.
  const float alpha =
      static_cast<float>(double(h.lr) * std::sqrt(bias_correction2) / bias_correction1);

#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    float p = params[i];
    if (decoupled) p = pytorch ? p * keep : p - (p * wd) * lr;
    const float g = grads[i] + l2 * p;  // l2 == 0 when the decay is decoupled
    const float mi = beta1 * m[i] + one_minus_beta1 * g;
    const float vi = beta2 * v[i] + one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    if (pytorch)
      p -= step_size * mi / (std::sqrt(vi) / sqrt_bc2 + eps);
    else
      p -= (mi * alpha) / (std::sqrt(vi) + eps);
    params[i] = p;
    if (params_bf16) params_bf16[i] = BFloat16(p);
  }
}

void sgd_update(int64_t n, float* params, const float* grads, float* momentum_buffer,
                const SgdHyper& h, const float* skip_flag, BFloat16* params_bf16) {
  if (n <= 0 || (skip_flag && *skip_flag != 0.0f)) return;
  const float lr = h.lr, mu = h.momentum, wd = h.weight_decay;
  const bool nesterov = h.nesterov;
  // Without momentum the buffer is neither read nor written (it may be null): p -= lr * g'.
  // With momentum it is required, zero-initialised before step 1 (PyTorch's first step copies g').
  const bool use_buffer = mu != 0.0f;

#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float p = params[i];
    const float g = grads[i] + wd * p;
    float direction = g;
    if (use_buffer) {
      const float buf = mu * momentum_buffer[i] + g;
      momentum_buffer[i] = buf;
      direction = nesterov ? g + mu * buf : buf;
    }
    const float updated = p - lr * direction;
    params[i] = updated;
    if (params_bf16) params_bf16[i] = BFloat16(updated);
  }
}

void flag_nonfinite(int64_t n, const float* values, float* flag) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(values[i])) {
      *flag = 1.0f;
      return;
    }
}

}  // namespace kernels::cpu
