// Batch normalisation on the GPU (contract in batchnorm.h; derivation of the backward in
// docs/derivations.md), the same arithmetic as kernels/cpu/batchnorm.cpp. Per channel c over the
// M = rows values of an NHWC activation [rows, C] (row stride ld):
//   training forward:  mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2 (two passes, double),
//                      invstd_c = 1 / sqrt(var_c + eps),  y = gamma_c (x - mean_c) invstd_c + beta_c,
//                      running stats updated in double, saved_mean/saved_invstd written as float
//   eval forward:      y = gamma_c (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
//   training backward: dbeta_c += sum dy,  dgamma_c += sum dy * xhat  (double sums, then float)
//                      dx (+)= gamma_c invstd_c (dy - sum_dy / M - xhat sum_dy_xhat / M)
//   eval backward:     dx (+)= dy gamma_c invstd_c  (statistics are constants)
//
// The per-channel sums are the deterministic column reductions of reduce.cuh (row chunks in parallel,
// each into its own double partial, then the chunks added in a fixed order per channel); the
// per-channel finishing step (the statistics, the running-stat update, the backward coefficients) runs
// in the reduction's second stage, one thread per channel. The per-element passes are grid-stride
// kernels over [rows, C]. Everything is ordered on the current stream; temporaries come from the
// caching allocator.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/batchnorm.h"
#include "kernels/cuda/bf16_widen.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"

namespace kernels::cuda {
namespace detail {
namespace {

// --- Reductions: what each element adds, and the per-channel finishing step ----------------------

struct SumLoad {  // acc += x
  const float* x;
  int64_t ldx;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[1]) const {
    acc[0] += double(x[r * ldx + c]);
  }
};

struct MeanFinish {  // mean_c = sum / M (in double)
  double rows;
  double* mean;
  __device__ void operator()(int64_t c, const double (&s)[1]) const { mean[c] = s[0] / rows; }
};

struct CentredSquaresLoad {  // acc += (x - mean_c)^2, in double
  const float* x;
  int64_t ldx;
  const double* mean;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[1]) const {
    const double d = double(x[r * ldx + c]) - mean[c];
    acc[0] += d * d;
  }
};

struct StatisticsFinish {
  double rows;
  double eps;
  double momentum;
  double running_var_factor;  // M / (M - 1) for an unbiased running variance, else 1
  const double* mean;
  float* mean_f;    // [C] the float statistics the normalisation (and backward) uses
  float* invstd_f;  // [C]
  float* saved_mean;
  float* saved_invstd;
  float* running_mean;
  float* running_var;
  __device__ void operator()(int64_t c, const double (&s)[1]) const {
    const double var = s[0] / rows;  // biased: the one used to normalise
    const float m = float(mean[c]);
    const float invstd = float(1.0 / sqrt(var + eps));
    mean_f[c] = m;
    invstd_f[c] = invstd;
    if (saved_mean) saved_mean[c] = m;
    if (saved_invstd) saved_invstd[c] = invstd;
    if (running_mean)
      running_mean[c] = float((1.0 - momentum) * double(running_mean[c]) + momentum * mean[c]);
    if (running_var)
      running_var[c] =
          float((1.0 - momentum) * double(running_var[c]) + momentum * var * running_var_factor);
  }
};

// acc[0] += dy, acc[1] += dy * xhat with xhat = (x - mean_c) * invstd_c computed in float (as the CPU).
struct GradSumsLoad {
  const float* x;
  int64_t ldx;
  const float* dy;
  int64_t ldy;
  const float* mean;
  const float* invstd;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[2]) const {
    const float xhat = (x[r * ldx + c] - mean[c]) * invstd[c];
    const float g = dy[r * ldy + c];
    acc[0] += double(g);
    acc[1] += double(g) * double(xhat);
  }
};

// dbeta += sum dy, dgamma += sum dy*xhat (nullable); with k non-null also the dx coefficients
//   k_c = gamma_c invstd_c,  mean_dy_c = sum_dy / M,  mean_dy_xhat_c = sum_dy_xhat / M.
struct GradFinish {
  double rows;
  float* dgamma;
  float* dbeta;
  const float* gamma;
  const float* invstd;
  float* k;
  float* mean_dy;
  float* mean_dy_xhat;
  __device__ void operator()(int64_t c, const double (&s)[2]) const {
    if (dbeta) dbeta[c] += float(s[0]);
    if (dgamma) dgamma[c] += float(s[1]);
    if (k) {
      k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
      mean_dy[c] = float(s[0] / rows);
      mean_dy_xhat[c] = float(s[1] / rows);
    }
  }
};

// --- Per-element passes ---------------------------------------------------------------------------

// y = gamma_c * (x - mean_c) * invstd_c + beta_c (gamma/beta nullable).
struct NormaliseOp {
  const float* x;
  int64_t ldx;
  const float* mean;
  const float* invstd;
  const float* gamma;
  const float* beta;
  float* y;
  int64_t ldy;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float xhat = (x[r * ldx + c] - mean[c]) * invstd[c];
    y[r * ldy + c] = (gamma ? gamma[c] : 1.0f) * xhat + (beta ? beta[c] : 0.0f);
  }
};

// dx (+)= k_c * (dy - mean_dy_c - xhat * mean_dy_xhat_c).
struct TrainingDxOp {
  const float* x;
  int64_t ldx;
  const float* dy;
  int64_t ldy;
  const float* mean;
  const float* invstd;
  const float* k;
  const float* mean_dy;
  const float* mean_dy_xhat;
  float* dx;
  int64_t ldx_grad;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float xhat = (x[r * ldx + c] - mean[c]) * invstd[c];
    const float g = k[c] * (dy[r * ldy + c] - mean_dy[c] - xhat * mean_dy_xhat[c]);
    store(dx + r * ldx_grad + c, g, accumulate);
  }
};

// dx (+)= dy * gamma_c * invstd_c.
struct EvalDxOp {
  const float* dy;
  int64_t ldy;
  const float* gamma;
  const float* invstd;
  float* dx;
  int64_t ldx_grad;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float k = (gamma ? gamma[c] : 1.0f) * invstd[c];
    store(dx + r * ldx_grad + c, dy[r * ldy + c] * k, accumulate);
  }
};

// invstd_c = 1 / sqrt(running_var_c + eps), via double (as the CPU).
struct EvalInvstdOp {
  const float* running_var;
  double eps;
  float* invstd;
  __device__ void operator()(int64_t c) const {
    invstd[c] = float(1.0 / sqrt(double(running_var[c]) + eps));
  }
};

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

void batch_norm_forward_training(ConstMatrixView x_view, MatrixView y_view,
                                 const BatchNormChannels& ch, const BatchNormStatsOut& stats,
                                 const BatchNormHyper& h) {
  if (any_bf16(x_view, y_view)) return run_widened(&batch_norm_forward_training, x_view, y_view, ch, stats, h);
  const auto [rows, channels, x, ldx, y, ldy] =
      batch_norm_forward_operands("batch_norm_forward_training", x_view, y_view);
  if (rows <= 0 || channels <= 0) return;  // no statistics to take; nothing is written
  const double m = double(rows);
  // Temporaries: mean in double [C], then the float mean and invstd [C] each.
  detail::ScopedBuffer scratch(size_t(channels) * (sizeof(double) + 2 * sizeof(float)),
                               "batch-norm statistics");
  double* mean = scratch.as<double>();
  float* mean_f = reinterpret_cast<float*>(mean + channels);
  float* invstd_f = mean_f + channels;

  detail::column_reduce<1>(rows, channels, SumLoad{x, ldx}, MeanFinish{m, mean},
                           "batch_norm_forward_training (mean)");
  const double var_factor = (h.unbiased_running_var && rows > 1) ? m / (m - 1.0) : 1.0;
  detail::column_reduce<1>(
      rows, channels, CentredSquaresLoad{x, ldx, mean},
      StatisticsFinish{m, double(h.eps), double(h.momentum), var_factor, mean, mean_f, invstd_f,
                       stats.saved_mean, stats.saved_invstd, stats.running_mean, stats.running_var},
      "batch_norm_forward_training (variance)");
  detail::for_each_element(rows, channels,
                           NormaliseOp{x, ldx, mean_f, invstd_f, ch.gamma, ch.beta, y, ldy},
                           "batch_norm_forward_training (normalise)");
}

void batch_norm_forward_eval(ConstMatrixView x_view, MatrixView y_view, const BatchNormChannels& ch,
                             const BatchNormHyper& h) {
  if (any_bf16(x_view, y_view)) return run_widened(&batch_norm_forward_eval, x_view, y_view, ch, h);
  const auto [rows, channels, x, ldx, y, ldy] =
      batch_norm_forward_operands("batch_norm_forward_eval", x_view, y_view);
  if (rows <= 0 || channels <= 0) return;
  detail::ScopedBuffer scratch(size_t(channels) * sizeof(float), "batch-norm eval invstd");
  float* invstd = scratch.as<float>();
  detail::for_each_index(channels, EvalInvstdOp{ch.running_var, double(h.eps), invstd},
                         "batch_norm_forward_eval (invstd)");
  detail::for_each_element(rows, channels,
                           NormaliseOp{x, ldx, ch.running_mean, invstd, ch.gamma, ch.beta, y, ldy},
                           "batch_norm_forward_eval (normalise)");
}

void batch_norm_backward_training(ConstMatrixView x_view, ConstMatrixView dy_view,
                                  const BatchNormChannels& ch, MatrixView dx_view,
                                  bool accumulate_dx, const BatchNormParamGrads& grads) {
  if (any_bf16(x_view, dy_view, dx_view)) return run_widened(&batch_norm_backward_training, x_view, dy_view, ch, dx_view, accumulate_dx, grads);
  const auto [rows, channels, x, ldx, dy, ldy, dx, ldx_grad] =
      batch_norm_backward_operands("batch_norm_backward_training", x_view, dy_view, dx_view);
  if (rows <= 0 || channels <= 0) return;
  if (!dx && !grads.dgamma && !grads.dbeta) return;
  const double m = double(rows);
  // dx coefficients k, mean_dy, mean_dy_xhat [C] each (only when dx is wanted).
  detail::ScopedBuffer scratch(dx ? size_t(channels) * 3 * sizeof(float) : 0,
                               "batch-norm backward coefficients");
  float* k = scratch.as<float>();
  float* mean_dy = k ? k + channels : nullptr;
  float* mean_dy_xhat = k ? k + 2 * channels : nullptr;
  detail::column_reduce<2>(
      rows, channels, GradSumsLoad{x, ldx, dy, ldy, ch.saved_mean, ch.saved_invstd},
      GradFinish{m, grads.dgamma, grads.dbeta, ch.gamma, ch.saved_invstd, k, mean_dy, mean_dy_xhat},
      "batch_norm_backward_training (sums)");
  if (!dx) return;
  detail::for_each_element(rows, channels,
                           TrainingDxOp{x, ldx, dy, ldy, ch.saved_mean, ch.saved_invstd, k, mean_dy,
                                        mean_dy_xhat, dx, ldx_grad, accumulate_dx},
                           "batch_norm_backward_training (dx)");
}

void batch_norm_backward_eval(ConstMatrixView x_view, ConstMatrixView dy_view,
                              const BatchNormChannels& ch, const BatchNormHyper& h,
                              MatrixView dx_view, bool accumulate_dx,
                              const BatchNormParamGrads& grads) {
  if (any_bf16(x_view, dy_view, dx_view)) return run_widened(&batch_norm_backward_eval, x_view, dy_view, ch, h, dx_view, accumulate_dx, grads);
  const auto [rows, channels, x, ldx, dy, ldy, dx, ldx_grad] =
      batch_norm_backward_operands("batch_norm_backward_eval", x_view, dy_view, dx_view);
  if (rows <= 0 || channels <= 0) return;
  detail::ScopedBuffer scratch(size_t(channels) * sizeof(float), "batch-norm eval invstd");
  float* invstd = scratch.as<float>();
  detail::for_each_index(channels, EvalInvstdOp{ch.running_var, double(h.eps), invstd},
                         "batch_norm_backward_eval (invstd)");
  if (grads.dgamma || grads.dbeta)
    detail::column_reduce<2>(
        rows, channels, GradSumsLoad{x, ldx, dy, ldy, ch.running_mean, invstd},
        GradFinish{double(rows), grads.dgamma, grads.dbeta, ch.gamma, invstd, nullptr, nullptr,
                   nullptr},
        "batch_norm_backward_eval (sums)");
  if (!dx) return;
  detail::for_each_element(rows, channels,
                           EvalDxOp{dy, ldy, ch.gamma, invstd, dx, ldx_grad, accumulate_dx},
                           "batch_norm_backward_eval (dx)");
}

}  // namespace kernels::cuda
