// Synchronised batch norm: the maths of kernels/batchnorm.h with every sum taken over the processes
// (see batch_norm_sync.h). Host loops; the forward saves the float statistics backward uses.
#include "engine/batch_norm_sync.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"

namespace engine {

namespace {
const ChannelSumAllReduce* installed = nullptr;

// A host, dense copy (or the tensor itself) of x as rows x channels.
Tensor host_rows(const Tensor& x) { return x.to(Device::cpu()).contiguous(); }

// Per-channel sums over the rows, each channel's in row order (the same bits for any thread count):
// sums[c] += term(i, c) for the element i = r * C + c of every row r. Threads take blocks of channels.
template <typename Term>
void channel_sums(int64_t rows, int64_t channels, double* sums, const Term& term) {
  constexpr int64_t kBlock = 16;
#pragma omp parallel for schedule(static) if (rows * channels >= 32768)
  for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
    const int64_t c1 = std::min(channels, c0 + kBlock);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) sums[c] += term(static_cast<size_t>(r * channels + c), static_cast<size_t>(c));
  }
}
}  // namespace

BatchNormSyncScope::BatchNormSyncScope(ChannelSumAllReduce allreduce)
    : previous_(installed), allreduce_(std::move(allreduce)) {
  installed = &allreduce_;
}
BatchNormSyncScope::~BatchNormSyncScope() { installed = previous_; }

const ChannelSumAllReduce* batch_norm_sync() { return installed; }

Tensor batch_norm_training_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                  const Tensor& running_var, const BatchNormOptions& options,
                                  const ChannelSumAllReduce& allreduce) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const Tensor xh = host_rows(x);
  const Tensor gh = gamma.defined() ? host_rows(gamma) : Tensor(), bh = beta.defined() ? host_rows(beta) : Tensor();
  const float* xp = xh.data();
  const float* g = gh.defined() ? gh.data() : nullptr;
  const float* b = bh.defined() ? bh.data() : nullptr;
  const auto C = static_cast<size_t>(channels);

  // Pass 1: the sums and the row count over every process -> the mean.
  std::vector<double> sums(C + 1, 0.0);
  channel_sums(rows, channels, sums.data(), [xp](size_t i, size_t) { return static_cast<double>(xp[i]); });
  sums[C] = static_cast<double>(rows);
  allreduce(sums.data(), channels + 1);
  const double m = sums[C];
  ENGINE_CHECK(m > 0) << "batch_norm (sync): empty batch over every process";
  std::vector<double> mean(C), var(C, 0.0);
  for (size_t c = 0; c < C; ++c) mean[c] = sums[c] / m;
  // Pass 2: the squared deviations from the global mean -> the (biased) variance.
  channel_sums(rows, channels, var.data(), [xp, &mean](size_t i, size_t c) {
    const double d = xp[i] - mean[c];
    return d * d;
  });
  allreduce(var.data(), channels);
  Tensor saved_mean = Tensor::empty({channels}), saved_invstd = Tensor::empty({channels});
  float* mean_f = saved_mean.data();
  float* invstd_f = saved_invstd.data();
  for (size_t c = 0; c < C; ++c) {
    var[c] /= m;
    mean_f[c] = static_cast<float>(mean[c]);
    invstd_f[c] = static_cast<float>(1.0 / std::sqrt(var[c] + static_cast<double>(options.eps)));
  }
  Tensor yh = Tensor::empty(x.shape());
  float* yp = yh.data();
#pragma omp parallel for schedule(static) if (rows * channels >= 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < C; ++c) {
      const size_t i = static_cast<size_t>(r) * C + c;
      const float xhat = (xp[i] - mean_f[c]) * invstd_f[c];
      yp[i] = (g ? g[c] : 1.0f) * xhat + (b ? b[c] : 0.0f);
    }

  // The running statistics, as the kernel updates them, with M = every process's rows.
  const Tensor rm = host_rows(running_mean), rv = host_rows(running_var);
  const double mom = static_cast<double>(options.momentum);
  const double var_factor = (options.unbiased_running_var && m > 1) ? m / (m - 1.0) : 1.0;
  for (size_t c = 0; c < C; ++c) {
    rm.data()[c] = static_cast<float>((1.0 - mom) * rm.data()[c] + mom * mean[c]);
    rv.data()[c] = static_cast<float>((1.0 - mom) * rv.data()[c] + mom * var[c] * var_factor);
  }
  running_mean.copy_from(rm);
  running_var.copy_from(rv);

  const Tensor y = yh.to(x.device());
  const bool need_dx = x.requires_grad();
  const bool need_dgamma = gamma.defined() && gamma.requires_grad();
  const bool need_dbeta = beta.defined() && beta.requires_grad();
  record(y, "batch_norm_sync", {x, gamma, beta},
         [xh, gh, saved_mean, saved_invstd, m, need_dx, need_dgamma, need_dbeta, allreduce,
          device = x.device()](const Tensor& dy_in) {
           const Tensor dyh = host_rows(dy_in);
           const int64_t channels = xh.size(-1), rows = xh.numel() / channels;
           const auto C = static_cast<size_t>(channels);
           const float *xp = xh.data(), *dy = dyh.data(), *mean = saved_mean.data(), *invstd = saved_invstd.data();
           const float* g = gh.defined() ? gh.data() : nullptr;
           // [sum_dy | sum_dy_xhat]: this process's (the parameter gradients), then every process's.
           std::vector<double> local(2 * C, 0.0);
           channel_sums(rows, channels, local.data(), [dy](size_t i, size_t) { return static_cast<double>(dy[i]); });
           channel_sums(rows, channels, local.data() + C, [xp, dy, mean, invstd](size_t i, size_t c) {
             const float xhat = (xp[i] - mean[c]) * invstd[c];
             return static_cast<double>(dy[i]) * xhat;
           });
           std::vector<double> global = local;
           allreduce(global.data(), 2 * channels);
           Tensor dx, dgamma, dbeta;
           if (need_dx) {
             Tensor dxh = Tensor::empty(xh.shape());
             float* dxp = dxh.data();
#pragma omp parallel for schedule(static) if (rows * channels >= 32768)
             for (int64_t r = 0; r < rows; ++r)
               for (size_t c = 0; c < C; ++c) {
                 const size_t i = static_cast<size_t>(r) * C + c;
                 const float xhat = (xp[i] - mean[c]) * invstd[c];
                 const float k = (g ? g[c] : 1.0f) * invstd[c];
                 const auto mean_dy = static_cast<float>(global[c] / m);
                 const auto mean_dy_xhat = static_cast<float>(global[C + c] / m);
                 dxp[i] = k * (dy[i] - mean_dy - xhat * mean_dy_xhat);
               }
             dx = dxh.to(device);
           }
           if (need_dgamma || need_dbeta) {
             Tensor dg = Tensor::empty({channels}), db = Tensor::empty({channels});
             for (size_t c = 0; c < C; ++c) {
               db.data()[c] = static_cast<float>(local[c]);
               dg.data()[c] = static_cast<float>(local[C + c]);
             }
             if (need_dgamma) dgamma = dg.to(device);
             if (need_dbeta) dbeta = db.to(device);
           }
           return std::vector<Tensor>{dx, dgamma, dbeta};
         });
  return y;
}

}  // namespace engine
