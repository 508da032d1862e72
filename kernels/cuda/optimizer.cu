// Fused optimizer updates on the GPU over a parameter arena of n floats (contract in optimizer.h), the
// same arithmetic as kernels/cpu/optimizer.cpp:
//   Adam (PyTorch): g' = g [+ wd p];  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//                   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
//   Adam (Keras):   same m, v;  p -= (lr sqrt(1-b2^t) / (1-b1^t)) * m / (sqrt(v) + eps)
//   Decoupled weight decay (AdamW) first, then no L2 term: PyTorch p *= float(1 - lr * wd), Keras
//   p -= (p * wd) * lr.
//   SGD (PyTorch):  g' = g + wd p;  buf = mu buf + g';  p -= lr * (nesterov ? g' + mu buf : buf)
// The per-step factors (bias corrections, step sizes) are computed once on the host in double and
// passed in as floats; the per-element arithmetic is float. One thread per element, grid-stride: every
// element is independent, so the update is deterministic. Every operation is rounded on its own
// (__fmul_rn, __fadd_rn: no FMA), in the CPU's order, so the results are the CPU's. The optional bf16
// working copy gets each new parameter rounded with kernels/bf16.h's function, bit for bit the conversion
// of the f32 result.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/optimizer.h"

namespace kernels::cuda {
namespace detail {
namespace {

struct AdamOp {
  float* params;
  const float* grads;
  float* m;
  float* v;
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  float l2;        // L2 weight decay added to the gradient (0 when decoupled)
  float lr, wd;    // Keras's decoupled decay: p - (p * wd) * lr
  float keep;      // PyTorch's decoupled decay: p * (1 - lr * wd)
  bool decoupled;  // decoupled decay with wd != 0
  bool pytorch;
  float step_size, sqrt_bc2;  // PyTorch: lr / bc1, sqrt(bc2)
  float alpha;                // Keras: lr * sqrt(bc2) / bc1
  const float* skip_flag;     // nullable: non-zero skips the update
  BFloat16* params_bf16;      // nullable: the bf16 working copy of the new parameters
  __device__ void operator()(int64_t i) const {
    if (skip_flag && *skip_flag != 0.0f) return;
    float p = params[i];
    if (decoupled) p = pytorch ? __fmul_rn(p, keep) : __fsub_rn(p, __fmul_rn(__fmul_rn(p, wd), lr));  // as the CPU rounds
    // Every operation rounded on its own, in the CPU's order (no FMA): the same bits as the CPU.
    const float g = __fadd_rn(grads[i], __fmul_rn(l2, p));
    const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_minus_beta1, g));
    const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
    m[i] = mi;
    v[i] = vi;
    if (pytorch)
      p = __fsub_rn(p, __fdiv_rn(__fmul_rn(step_size, mi), __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), sqrt_bc2), eps)));
    else
      p = __fsub_rn(p, __fdiv_rn(__fmul_rn(mi, alpha), __fadd_rn(__fsqrt_rn(vi), eps)));
    params[i] = p;
    if (params_bf16) params_bf16[i] = BFloat16(p);
  }
};

struct SgdOp {
  float* params;
  const float* grads;
  float* momentum_buffer;  // null when momentum == 0
  float lr, mu, wd;
  bool nesterov;
  const float* skip_flag;  // nullable: non-zero skips the update
  BFloat16* params_bf16;   // nullable: the bf16 working copy of the new parameters
  __device__ void operator()(int64_t i) const {
    if (skip_flag && *skip_flag != 0.0f) return;
    const float p = params[i];
    // Every operation rounded on its own, in the CPU's order (no FMA).
    const float g = __fadd_rn(grads[i], __fmul_rn(wd, p));
    float direction = g;
    if (momentum_buffer) {
      const float buf = __fadd_rn(__fmul_rn(mu, momentum_buffer[i]), g);
      momentum_buffer[i] = buf;
      direction = nesterov ? __fadd_rn(g, __fmul_rn(mu, buf)) : buf;
    }
    const float updated = __fsub_rn(p, __fmul_rn(lr, direction));
    params[i] = updated;
    if (params_bf16) params_bf16[i] = BFloat16(updated);
  }
};

// flag[0] = 1 where values[i] is not finite (every writer writes the same 1: no race on the result).
struct FlagNonfiniteOp {
  const float* values;
  float* flag;
  __device__ void operator()(int64_t i) const {
    if (!isfinite(values[i])) *flag = 1.0f;
  }
};

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

void adam_update(int64_t n, float* params, const float* grads, float* m, float* v, int64_t step,
                 const AdamHyper& h, const float* skip_flag, BFloat16* params_bf16) {
  if (n <= 0) return;
  // step counts from 1; a smaller value is a caller error, treated as 1 (as on the CPU).
  const double t = double(std::max<int64_t>(step, 1));
  const double b1 = h.beta1, b2 = h.beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, t);
  const double bias_correction2 = 1.0 - std::pow(b2, t);
  AdamOp op{};
  op.params = params;
  op.grads = grads;
  op.m = m;
  op.v = v;
  op.beta1 = h.beta1;
  op.beta2 = h.beta2;
  op.one_minus_beta1 = float(1.0 - b1);
  op.one_minus_beta2 = float(1.0 - b2);
  op.eps = h.eps;
  op.decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0f;
  op.l2 = h.decoupled_weight_decay ? 0.0f : h.weight_decay;
  op.lr = h.lr;
  op.wd = h.weight_decay;
  op.keep = float(1.0 - double(h.lr) * double(h.weight_decay));
  op.pytorch = h.convention == AdamConvention::pytorch;
  op.step_size = float(double(h.lr) / bias_correction1);
  op.sqrt_bc2 = float(std::sqrt(bias_correction2));
  op.alpha = float(double(h.lr) * std::sqrt(bias_correction2) / bias_correction1);
  op.skip_flag = skip_flag;
  op.params_bf16 = params_bf16;
  detail::for_each_index(n, op, "adam_update");
}

void sgd_update(int64_t n, float* params, const float* grads, float* momentum_buffer,
                const SgdHyper& h, const float* skip_flag, BFloat16* params_bf16) {
  if (n <= 0) return;
  // Without momentum the buffer is neither read nor written (it may be null), as on the CPU.
  SgdOp op{params, grads, h.momentum != 0.0f ? momentum_buffer : nullptr, h.lr, h.momentum,
           h.weight_decay, h.nesterov, skip_flag, params_bf16};
  if (h.momentum != 0.0f && momentum_buffer == nullptr)
    detail::throw_error("sgd_update: momentum != 0 needs a momentum buffer", __FILE__, __LINE__);
  detail::for_each_index(n, op, "sgd_update");
}

void flag_nonfinite(int64_t n, const float* values, float* flag) {
  if (n <= 0) return;
  detail::for_each_index(n, FlagNonfiniteOp{values, flag}, "flag_nonfinite");
}

}  // namespace kernels::cuda
