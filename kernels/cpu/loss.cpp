// Binary cross-entropy on logits on the CPU (see loss.h; derivation in docs/derivations.md):
//   l_i  = w_i * ( max(z_i, 0) - z_i * t_i + log1p(exp(-|z_i|)) )
//   loss = (1/N) sum_i l_i
//   dz_i = dloss * w_i * (sigmoid(z_i) - t_i) / N
// The stable form never exponentiates a positive number, so it is finite for any finite logit
// (z = +-1e4 included). Everything is computed in double; N is a batch size, so the loops are
// serial (and therefore deterministic). N == 0 gives a loss of 0 and writes nothing.
#include "kernels/loss.h"
#include "kernels/cpu/bf16_widen.h"

#include <algorithm>
#include <cmath>

namespace kernels::cpu {
namespace {

// sigmoid(z) - t without overflow, and without the cancellation 1 - (1 - tiny) for large z: with
// e = exp(-|z|), sigmoid(z) = 1 - e / (1 + e) for z >= 0 and e / (1 + e) for z < 0.
double sigmoid_minus_target(double z, double t) {
  const double e = std::exp(-std::fabs(z));
  const double small = e / (1.0 + e);  // sigmoid(-|z|)
  return z >= 0.0 ? (1.0 - t) - small : small - t;
}

}  // namespace

double bce_with_logits_forward(ConstMatrixView logits_view, ConstMatrixView targets_view,
                               ConstMatrixView weights_view) {
  if (any_bf16(logits_view, targets_view, weights_view)) return run_widened(&bce_with_logits_forward, logits_view, targets_view, weights_view);
  const auto [n, logits, targets, weights] =
      bce_with_logits_operands("bce_with_logits_forward", logits_view, targets_view, weights_view);
  if (n <= 0) return 0.0;
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double z = logits[i];
    const double t = targets[i];
    const double w = weights ? static_cast<double>(weights[i]) : 1.0;
    total += w * (std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z))));
  }
  return total / static_cast<double>(n);
}

void bce_with_logits_backward(ConstMatrixView logits_view, ConstMatrixView targets_view,
                              ConstMatrixView weights_view, float dloss, MatrixView dlogits_view,
                              bool accumulate) {
  if (any_bf16(logits_view, targets_view, weights_view, dlogits_view)) return run_widened(&bce_with_logits_backward, logits_view, targets_view, weights_view, dloss, dlogits_view, accumulate);
  const auto [n, logits, targets, weights] = bce_with_logits_operands(
      "bce_with_logits_backward", logits_view, targets_view, weights_view, &dlogits_view);
  float* dlogits = dlogits_view.f32();
  if (n <= 0) return;
  const double scale = static_cast<double>(dloss) / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double w = weights ? static_cast<double>(weights[i]) : 1.0;
    const float g = static_cast<float>(scale * w * sigmoid_minus_target(logits[i], targets[i]));
    dlogits[i] = accumulate ? dlogits[i] + g : g;
  }
}

void bce_with_logits_forward_to(ConstMatrixView logits, ConstMatrixView targets,
                                ConstMatrixView weights, float* loss) {
  *loss = static_cast<float>(bce_with_logits_forward(logits, targets, weights));
}

void bce_with_logits_backward_from(ConstMatrixView logits, ConstMatrixView targets,
                                   ConstMatrixView weights, const float* dloss, MatrixView dlogits,
                                   bool accumulate) {
  bce_with_logits_backward(logits, targets, weights, *dloss, dlogits, accumulate);
}

}  // namespace kernels::cpu
