// Binary cross-entropy on logits on the GPU (contract in loss.h; derivation in docs/derivations.md),
// the same arithmetic as kernels/cpu/loss.cpp, in double:
//   l_i  = w_i * ( max(z_i, 0) - z_i * t_i + log1p(exp(-|z_i|)) )
//   loss = (1/N) sum_i l_i          (deterministic two-stage reduction, reduce.cuh)
//   dz_i = dloss * w_i * (sigmoid(z_i) - t_i) / N,  sigmoid(z) - t computed without cancellation
// weights == null means w_i = 1. N == 0 gives a loss of 0 and writes nothing.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/bf16_widen.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/loss.h"

namespace kernels::cuda {
namespace detail {
namespace {

struct BceTerm {  // l_i, in double
  const float* logits;
  const float* targets;
  const float* weights;
  template <typename Index>
  __device__ double operator()(Index i) const {
    const double z = logits[i];
    const double t = targets[i];
    const double w = weights ? double(weights[i]) : 1.0;
    return w * ((z > 0.0 ? z : 0.0) - z * t + log1p(exp(-fabs(z))));
  }
};

// sigmoid(z) - t without overflow or the cancellation 1 - (1 - tiny) for large z (see the CPU).
__device__ inline double sigmoid_minus_target(double z, double t) {
  const double e = exp(-fabs(z));
  const double small = e / (1.0 + e);  // sigmoid(-|z|)
  return z >= 0.0 ? (1.0 - t) - small : small - t;
}

struct BceBackwardOp {
  const float* logits;
  const float* targets;
  const float* weights;
  double scale;  // dloss / N
  float* dlogits;
  bool accumulate;
  const float* dloss = nullptr;  // non-null: scale = *dloss / count, read on the device
  double count = 1.0;
  __device__ void operator()(int64_t i) const {
    const double scale = dloss ? double(*dloss) / count : this->scale;
    const double w = weights ? double(weights[i]) : 1.0;
    const float g = float(scale * w * sigmoid_minus_target(logits[i], targets[i]));
    detail::store(dlogits + i, g, accumulate);
  }
};

// *loss = float(*total / n): the mean, rounded as the host path rounds it.
struct MeanToFloatOp {
  const double* total;
  double n;
  float* loss;
  __device__ void operator()(int64_t) const { *loss = float(*total / n); }
};

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

double bce_with_logits_forward(ConstMatrixView logits_view, ConstMatrixView targets_view,
                               ConstMatrixView weights_view) {
  if (any_bf16(logits_view, targets_view, weights_view)) return run_widened(&bce_with_logits_forward, logits_view, targets_view, weights_view);
  const auto [n, logits, targets, weights] =
      bce_with_logits_operands("bce_with_logits_forward", logits_view, targets_view, weights_view);
  if (n <= 0) return 0.0;
  const double total =
      detail::reduce_to_host(n, BceTerm{logits, targets, weights}, "bce_with_logits_forward");
  return total / double(n);
}

void bce_with_logits_backward(ConstMatrixView logits_view, ConstMatrixView targets_view,
                              ConstMatrixView weights_view, float dloss, MatrixView dlogits_view,
                              bool accumulate) {
  if (any_bf16(logits_view, targets_view, weights_view, dlogits_view)) return run_widened(&bce_with_logits_backward, logits_view, targets_view, weights_view, dloss, dlogits_view, accumulate);
  const auto [n, logits, targets, weights] = bce_with_logits_operands(
      "bce_with_logits_backward", logits_view, targets_view, weights_view, &dlogits_view);
  float* dlogits = dlogits_view.f32();
  if (n <= 0) return;
  const double scale = double(dloss) / double(n);
  detail::for_each_index(n, BceBackwardOp{logits, targets, weights, scale, dlogits, accumulate},
                         "bce_with_logits_backward");
}

void bce_with_logits_forward_to(ConstMatrixView logits_view, ConstMatrixView targets_view,
                                ConstMatrixView weights_view, float* loss) {
  if (any_bf16(logits_view, targets_view, weights_view))
    return run_widened(&bce_with_logits_forward_to, logits_view, targets_view, weights_view, loss);
  const auto [n, logits, targets, weights] =
      bce_with_logits_operands("bce_with_logits_forward_to", logits_view, targets_view, weights_view);
  detail::ScopedBuffer total(sizeof(double), "bce_with_logits_forward_to");
  detail::reduce_to_device(n, BceTerm{logits, targets, weights}, total.as<double>(),
                           "bce_with_logits_forward_to");
  detail::for_each_index(1, MeanToFloatOp{total.as<double>(), n > 0 ? double(n) : 1.0, loss},
                         "bce_with_logits_forward_to (mean)");
}

void bce_with_logits_backward_from(ConstMatrixView logits_view, ConstMatrixView targets_view,
                                   ConstMatrixView weights_view, const float* dloss,
                                   MatrixView dlogits_view, bool accumulate) {
  if (any_bf16(logits_view, targets_view, weights_view, dlogits_view))
    return run_widened(&bce_with_logits_backward_from, logits_view, targets_view, weights_view, dloss, dlogits_view,
                       accumulate);
  const auto [n, logits, targets, weights] = bce_with_logits_operands(
      "bce_with_logits_backward_from", logits_view, targets_view, weights_view, &dlogits_view);
  float* dlogits = dlogits_view.f32();
  if (n <= 0) return;
  detail::for_each_index(
      n, BceBackwardOp{logits, targets, weights, 0.0, dlogits, accumulate, dloss, double(n)},
      "bce_with_logits_backward_from");
}

}  // namespace kernels::cuda
