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

namespace kernels::cpu {
#include "kernels/batchnorm_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
#include "kernels/batchnorm_api.inc"
}  // namespace kernels::cuda
