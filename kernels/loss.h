// Binary cross-entropy on logits, numerically stable, per-sample weights, mean over the batch:
//   l_i  = w_i * ( max(z_i, 0) - z_i * t_i + log(1 + exp(-|z_i|)) )    (= -w[t log s + (1-t) log(1-s)])
//   loss = (1/N) sum_i l_i
//   dz_i = dloss * w_i * (sigmoid(z_i) - t_i) / N
// weights == null means w_i = 1. Targets may be soft (in [0, 1]).
#pragma once
#include <cstdint>

#include "kernels/layout.h"

namespace kernels {

// Throws std::invalid_argument naming `kernel` unless v is a dense column [n, 1] (a loss operand).
template <typename View>
void check_loss_column(const char* kernel, const View& v, int64_t n) {
  check_shape(kernel, v, n, 1);
  check_dense(kernel, v);
}

// The binary cross-entropy kernels' operands, checked (each a dense column [n, 1], n = logits.rows;
// weights optional: data null) and unpacked; one check for both backends.
struct BceOperands {
  int64_t n;
  const float* logits;
  const float* targets;
  const float* weights;  // null: every weight 1
};
// The operands' count n after checking each as a dense column [n, 1], of any element type (the CUDA
// kernels read f32 or bf16 operands as they load them).
inline int64_t bce_checked_rows(const char* kernel, ConstMatrixView logits, ConstMatrixView targets,
                                ConstMatrixView weights, const MatrixView* dlogits = nullptr) {
  const int64_t n = logits.rows;
  check_loss_column(kernel, logits, n);
  check_loss_column(kernel, targets, n);
  if (weights.data) check_loss_column(kernel, weights, n);
  if (dlogits) check_loss_column(kernel, *dlogits, n);
  return n;
}
inline BceOperands bce_with_logits_operands(const char* kernel, ConstMatrixView logits,
                                            ConstMatrixView targets, ConstMatrixView weights,
                                            const MatrixView* dlogits = nullptr) {
  const int64_t n = bce_checked_rows(kernel, logits, targets, weights, dlogits);
  return {n, logits.f32(), targets.f32(), weights.f32()};
}

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/loss_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
// bce_with_logits_forward synchronises (the loss comes back to the host).
#include "kernels/loss_api.inc"
}  // namespace kernels::cuda
