// Batch normalisation over the channels of an NHWC activation seen as a matrix [rows = N*H*W, C]
// (row stride ld). Per channel c, over the M = rows values:
//   training:  mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2  (biased),
//              invstd_c = 1 / sqrt(var_c + eps),  xhat = (x - mean_c) * invstd_c,
//              y = gamma_c * xhat + beta_c
//              running_mean = (1 - momentum) * running_mean + momentum * mean_c
//              running_var  = (1 - momentum) * running_var  + momentum * var_c * (unbiased ? M/(M-1) : 1)
//              (Keras: momentum 0.01 of the batch, biased variance; PyTorch: 0.1, unbiased variance)
//   eval:      y = gamma_c * (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
// gamma == null means gamma = 1 (Keras scale=False); beta == null means beta = 0.
// Training backward (derivation in docs/derivations.md):
//   dbeta_c  = sum dy,   dgamma_c = sum dy * xhat
//   dx = gamma_c * invstd_c * (dy - dbeta_c / M - xhat * dgamma_c / M)
// Eval backward: dx = dy * gamma_c / sqrt(running_var_c + eps) (statistics are constants).
#pragma once
#include <cstdint>

#include "kernels/layout.h"

namespace kernels {

// The per-channel vectors a batch-norm kernel reads, each dense f32 [C] (device pointers for the
// CUDA backend); each kernel reads the ones its comment in batchnorm_api.inc names.
struct BatchNormChannels {
  const float* gamma = nullptr;         // scale; null means 1 (Keras scale=False)
  const float* beta = nullptr;          // shift; null means 0
  const float* running_mean = nullptr;  // the running statistics (eval)
  const float* running_var = nullptr;
  const float* saved_mean = nullptr;    // the batch statistics training forward saved (training
  const float* saved_invstd = nullptr;  // backward)
};

// What training forward writes, each f32 [C] and nullable (not wanted): the batch statistics for
// backward, and the running statistics, updated in place.
struct BatchNormStatsOut {
  float* saved_mean = nullptr;
  float* saved_invstd = nullptr;
  float* running_mean = nullptr;
  float* running_var = nullptr;
};

// The parameter gradients [C], each nullable (not wanted); the training kernels accumulate into them
// (batch_norm_sync_parameter_grads writes them).
struct BatchNormParamGrads {
  float* dgamma = nullptr;
  float* dbeta = nullptr;
};

struct BatchNormHyper {
  float eps = 1e-5f;
  float momentum = 0.1f;             // weight of the new batch in the running statistics
  bool unbiased_running_var = true;  // PyTorch: M/(M-1) on the running variance; Keras: false
};

// Each batch-norm kernel's matrix operands, checked and unpacked (rows = M, channels = C, the typed
// pointers and their row strides); one check for both backends. y (forward) and dy have x's shape;
// so has dx unless its data is null (not wanted). A kernel binds them, e.g.
//   const auto [rows, channels, x, ldx, y, ldy] = batch_norm_forward_operands(name, x_view, y_view);
inline MatrixReadWrite batch_norm_forward_operands(const char* kernel, ConstMatrixView x,
                                                   MatrixView y) {
  check_same_shape(kernel, x, y);
  return {x.rows, x.cols, x.f32(), x.ld, y.f32(), y.ld};
}

inline MatrixReadReadWrite batch_norm_backward_operands(const char* kernel, ConstMatrixView x,
                                                        ConstMatrixView dy, MatrixView dx) {
  check_same_shape(kernel, x, dy);
  if (dx.data) check_same_shape(kernel, x, dx);
  return {x.rows, x.cols, x.f32(), x.ld, dy.f32(), dy.ld, dx.f32(), dx.ld};
}

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/batchnorm_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
#include "kernels/batchnorm_api.inc"
}  // namespace kernels::cuda
