// Batch normalisation on the CPU (see batchnorm.h for the contract, docs/derivations.md for the
// backward). Per channel c over the M = rows values of an NHWC activation [rows, C]:
//   mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2,  invstd_c = 1 / sqrt(var_c + eps)
//   y = gamma_c * (x - mean_c) * invstd_c + beta_c
//   backward: dbeta_c = sum dy, dgamma_c = sum dy * xhat,
//             dx = gamma_c * invstd_c * (dy - dbeta_c / M - xhat * dgamma_c / M)
//
// Reductions. Channels are the fastest index, so every pass walks rows outer, channels inner. The
// rows are cut into blocks whose size depends on `rows` only (never on the thread count); each
// block sums its rows into its own double-precision partial per channel, and the partials are then
// added in block order. The result is therefore bit-identical for any number of threads and any
// run. Statistics use two passes (mean, then the centred sum of squares), both in double.
#include "kernels/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kernels::cpu {
namespace {

// Below this many elements a pass runs on one thread (starting OpenMP would cost more).
constexpr int64_t kParallelMinElements = 1 << 15;
// Row blocks for the reductions: at least kMinBlockRows rows each, at most kMaxBlocks blocks.
constexpr int64_t kMinBlockRows = 32;
constexpr int64_t kMaxBlocks = 256;

struct RowBlocks {
  int64_t size = 0;   // rows per block (the last block may be shorter)
  int64_t count = 0;  // number of blocks
};

RowBlocks row_blocks(int64_t rows) {
  RowBlocks b;
  b.size = std::max(kMinBlockRows, (rows + kMaxBlocks - 1) / kMaxBlocks);
  b.count = (rows + b.size - 1) / b.size;
  return b;
}

// Adds the per-block partials [blocks, channels] in block order into out[channels].
void reduce_blocks(const std::vector<double>& partials, int64_t blocks, int64_t channels,
                   double* out) {
  for (int64_t c = 0; c < channels; ++c) out[c] = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    const double* p = partials.data() + b * channels;
    for (int64_t c = 0; c < channels; ++c) out[c] += p[c];
  }
}

// Per-channel sum of x over all rows, in double: out[c] = sum_r x[r, c].
void channel_sums(int64_t rows, int64_t channels, const float* x, int64_t ldx, double* out) {
  const RowBlocks blocks = row_blocks(rows);
  std::vector<double> partials(static_cast<size_t>(blocks.count * channels), 0.0);
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t b = 0; b < blocks.count; ++b) {
    double* acc = partials.data() + b * channels;
    const int64_t end = std::min(rows, (b + 1) * blocks.size);
    for (int64_t r = b * blocks.size; r < end; ++r) {
      const float* xr = x + r * ldx;
      for (int64_t c = 0; c < channels; ++c) acc[c] += xr[c];
    }
  }
  reduce_blocks(partials, blocks.count, channels, out);
}

// Per-channel centred sum of squares: out[c] = sum_r (x[r, c] - mean[c])^2, in double.
void channel_centred_squares(int64_t rows, int64_t channels, const float* x, int64_t ldx,
                             const double* mean, double* out) {
  const RowBlocks blocks = row_blocks(rows);
  std::vector<double> partials(static_cast<size_t>(blocks.count * channels), 0.0);
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t b = 0; b < blocks.count; ++b) {
    double* acc = partials.data() + b * channels;
    const int64_t end = std::min(rows, (b + 1) * blocks.size);
    for (int64_t r = b * blocks.size; r < end; ++r) {
      const float* xr = x + r * ldx;
      for (int64_t c = 0; c < channels; ++c) {
        const double d = static_cast<double>(xr[c]) - mean[c];
        acc[c] += d * d;
      }
    }
  }
  reduce_blocks(partials, blocks.count, channels, out);
}

// Per-channel sums for the backward, in double:
//   sum_dy[c] = sum_r dy[r, c],  sum_dy_xhat[c] = sum_r dy[r, c] * (x[r, c] - mean[c]) * invstd[c]
void channel_grad_sums(int64_t rows, int64_t channels, const float* x, int64_t ldx, const float* dy,
                       int64_t ldy, const float* mean, const float* invstd, double* sum_dy,
                       double* sum_dy_xhat) {
  const RowBlocks blocks = row_blocks(rows);
  // Layout of one block's partials: [sum_dy (channels), sum_dy_xhat (channels)].
  std::vector<double> partials(static_cast<size_t>(blocks.count * 2 * channels), 0.0);
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t b = 0; b < blocks.count; ++b) {
    double* acc_dy = partials.data() + b * 2 * channels;
    double* acc_dy_xhat = acc_dy + channels;
    const int64_t end = std::min(rows, (b + 1) * blocks.size);
    for (int64_t r = b * blocks.size; r < end; ++r) {
      const float* xr = x + r * ldx;
      const float* dyr = dy + r * ldy;
      for (int64_t c = 0; c < channels; ++c) {
        const float xhat = (xr[c] - mean[c]) * invstd[c];
        acc_dy[c] += dyr[c];
        acc_dy_xhat[c] += static_cast<double>(dyr[c]) * xhat;
      }
    }
  }
  std::fill(sum_dy, sum_dy + channels, 0.0);
  std::fill(sum_dy_xhat, sum_dy_xhat + channels, 0.0);
  for (int64_t b = 0; b < blocks.count; ++b) {
    const double* p = partials.data() + b * 2 * channels;
    for (int64_t c = 0; c < channels; ++c) {
      sum_dy[c] += p[c];
      sum_dy_xhat[c] += p[channels + c];
    }
  }
}

// y = gamma_c * (x - mean_c) * invstd_c + beta_c over all rows (gamma/beta may be null).
void normalise(int64_t rows, int64_t channels, const float* x, int64_t ldx, const float* mean,
               const float* invstd, const float* gamma, const float* beta, float* y, int64_t ldy) {
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    for (int64_t c = 0; c < channels; ++c) {
      const float xhat = (xr[c] - mean[c]) * invstd[c];
      yr[c] = (gamma ? gamma[c] : 1.0f) * xhat + (beta ? beta[c] : 0.0f);
    }
  }
}

// Eval-mode inverse standard deviations: invstd_c = 1 / sqrt(running_var_c + eps), via double.
std::vector<float> eval_invstd(int64_t channels, const float* running_var, float eps) {
  std::vector<float> invstd(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c)
    invstd[c] = static_cast<float>(
        1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps)));
  return invstd;
}

}  // namespace

void batch_norm_forward_training(int64_t rows, int64_t channels, const float* x, int64_t ldx,
                                 const float* gamma, const float* beta, float eps, float* y,
                                 int64_t ldy, float* saved_mean, float* saved_invstd,
                                 float* running_mean, float* running_var, float momentum,
                                 bool unbiased_running_var) {
  if (rows <= 0 || channels <= 0) return;  // no statistics to take; nothing is written
  const double m = static_cast<double>(rows);

  std::vector<double> mean(static_cast<size_t>(channels));
  std::vector<double> var(static_cast<size_t>(channels));
  channel_sums(rows, channels, x, ldx, mean.data());
  for (int64_t c = 0; c < channels; ++c) mean[c] /= m;
  channel_centred_squares(rows, channels, x, ldx, mean.data(), var.data());
  for (int64_t c = 0; c < channels; ++c) var[c] /= m;  // biased: the one used to normalise

  // The float statistics are what backward sees; y is computed from exactly them.
  std::vector<float> mean_f(static_cast<size_t>(channels));
  std::vector<float> invstd_f(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    mean_f[c] = static_cast<float>(mean[c]);
    invstd_f[c] = static_cast<float>(1.0 / std::sqrt(var[c] + static_cast<double>(eps)));
  }
  normalise(rows, channels, x, ldx, mean_f.data(), invstd_f.data(), gamma, beta, y, ldy);

  if (saved_mean) std::copy(mean_f.begin(), mean_f.end(), saved_mean);
  if (saved_invstd) std::copy(invstd_f.begin(), invstd_f.end(), saved_invstd);

  // Running statistics; momentum is the weight of the new batch. With M == 1 the unbiased estimate
  // M/(M-1) is undefined, so the biased variance is used there.
  const double mom = static_cast<double>(momentum);
  const double var_factor = (unbiased_running_var && rows > 1) ? m / (m - 1.0) : 1.0;
  if (running_mean) {
    for (int64_t c = 0; c < channels; ++c)
      running_mean[c] = static_cast<float>((1.0 - mom) * running_mean[c] + mom * mean[c]);
  }
  if (running_var) {
    for (int64_t c = 0; c < channels; ++c)
      running_var[c] =
          static_cast<float>((1.0 - mom) * running_var[c] + mom * var[c] * var_factor);
  }
}

void batch_norm_forward_eval(int64_t rows, int64_t channels, const float* x, int64_t ldx,
                             const float* gamma, const float* beta, const float* running_mean,
                             const float* running_var, float eps, float* y, int64_t ldy) {
  if (rows <= 0 || channels <= 0) return;
  const std::vector<float> invstd = eval_invstd(channels, running_var, eps);
  normalise(rows, channels, x, ldx, running_mean, invstd.data(), gamma, beta, y, ldy);
}

void batch_norm_backward_training(int64_t rows, int64_t channels, const float* x, int64_t ldx,
                                  const float* dy, int64_t ldy, const float* gamma,
                                  const float* saved_mean, const float* saved_invstd, float* dx,
                                  int64_t ldx_grad, bool accumulate_dx, float* dgamma,
                                  float* dbeta) {
  if (rows <= 0 || channels <= 0) return;
  if (!dx && !dgamma && !dbeta) return;

  // dx needs both sums, whatever dgamma/dbeta ask for.
  std::vector<double> sum_dy(static_cast<size_t>(channels));
  std::vector<double> sum_dy_xhat(static_cast<size_t>(channels));
  channel_grad_sums(rows, channels, x, ldx, dy, ldy, saved_mean, saved_invstd, sum_dy.data(),
                    sum_dy_xhat.data());

  if (dbeta)
    for (int64_t c = 0; c < channels; ++c) dbeta[c] += static_cast<float>(sum_dy[c]);
  if (dgamma)
    for (int64_t c = 0; c < channels; ++c) dgamma[c] += static_cast<float>(sum_dy_xhat[c]);
  if (!dx) return;

  // dx = k_c * (dy - mean_dy_c - xhat * mean_dy_xhat_c),  k_c = gamma_c * invstd_c
  const double m = static_cast<double>(rows);
  std::vector<float> k(static_cast<size_t>(channels));
  std::vector<float> mean_dy(static_cast<size_t>(channels));
  std::vector<float> mean_dy_xhat(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    k[c] = (gamma ? gamma[c] : 1.0f) * saved_invstd[c];
    mean_dy[c] = static_cast<float>(sum_dy[c] / m);
    mean_dy_xhat[c] = static_cast<float>(sum_dy_xhat[c] / m);
  }
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    const float* dyr = dy + r * ldy;
    float* dxr = dx + r * ldx_grad;
    for (int64_t c = 0; c < channels; ++c) {
      const float xhat = (xr[c] - saved_mean[c]) * saved_invstd[c];
      const float g = k[c] * (dyr[c] - mean_dy[c] - xhat * mean_dy_xhat[c]);
      dxr[c] = accumulate_dx ? dxr[c] + g : g;
    }
  }
}

void batch_norm_backward_eval(int64_t rows, int64_t channels, const float* x, int64_t ldx,
                              const float* dy, int64_t ldy, const float* gamma,
                              const float* running_mean, const float* running_var, float eps,
                              float* dx, int64_t ldx_grad, bool accumulate_dx, float* dgamma,
                              float* dbeta) {
  if (rows <= 0 || channels <= 0) return;
  const std::vector<float> invstd = eval_invstd(channels, running_var, eps);

  if (dgamma || dbeta) {
    std::vector<double> sum_dy(static_cast<size_t>(channels));
    std::vector<double> sum_dy_xhat(static_cast<size_t>(channels));
    channel_grad_sums(rows, channels, x, ldx, dy, ldy, running_mean, invstd.data(), sum_dy.data(),
                      sum_dy_xhat.data());
    if (dbeta)
      for (int64_t c = 0; c < channels; ++c) dbeta[c] += static_cast<float>(sum_dy[c]);
    if (dgamma)
      for (int64_t c = 0; c < channels; ++c) dgamma[c] += static_cast<float>(sum_dy_xhat[c]);
  }
  if (!dx) return;

  // The statistics are constants here: dx = dy * gamma_c * invstd_c.
  std::vector<float> k(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * ldy;
    float* dxr = dx + r * ldx_grad;
    for (int64_t c = 0; c < channels; ++c) {
      const float g = dyr[c] * k[c];
      dxr[c] = accumulate_dx ? dxr[c] + g : g;
    }
  }
}

}  // namespace kernels::cpu
