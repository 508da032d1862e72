// Synchronised batch norm: the maths of kernels/batchnorm.h with every sum taken over the processes
// (see batch_norm_sync.h). The passes over the activations run on their device (the kernels'
// batch_norm_channel_sums, _backward_channel_sums, _normalize_forward, _normalize_backward); only the
// per-channel sums cross to the host for the all-reduce, and the per-channel maths between runs there.
#include "engine/batch_norm_sync.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/ops/common.h"
#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"

namespace engine {

namespace {
const ChannelSumAllReduce* installed = nullptr;

// The host vectors that asynchronous uploads read from, kept until the next synchronous download here:
// that download waits for the kernels' stream, so every copy queued before it has read its source. (A
// pageable source is usually staged by the driver before the call returns, but that is not promised.)
thread_local std::vector<std::shared_ptr<const void>> upload_sources;

// Queues a copy of `values` to `bytes_at` on `device` without waiting.
template <typename T>
void upload_async(std::vector<T> values, void* bytes_at, Device device) {
  auto source = std::make_shared<const std::vector<T>>(std::move(values));
  upload_sources.push_back(source);  // first: kept even if the copy's call throws after queueing it
  backend_for(device).copy_from_host_async(bytes_at, source->data(), source->size() * sizeof(T));
}

// n doubles in a device's memory (or the host's) for the kernels' per-channel sums: the storage of an f32
// tensor twice as long (tensors have no double type), with copies to and from the host.
class ChannelSums {
 public:
  ChannelSums(int64_t n, Device device)
      : n_(n), storage_(Tensor::empty({2 * std::max<int64_t>(n, 1)}, device)) {}
  double* data() const { return static_cast<double*>(storage_.raw_data()); }
  // Waits for the device (one host synchronisation), which also retires the queued uploads' sources.
  std::vector<double> to_host() const {
    std::vector<double> host(static_cast<size_t>(n_));
    backend_for(storage_.device()).copy_to_host(host.data(), data(), host.size() * sizeof(double));
    upload_sources.clear();
    return host;
  }
  void from_host_async(std::vector<double> host) const {
    ENGINE_CHECK(static_cast<int64_t>(host.size()) == n_) << "ChannelSums: " << host.size() << " values for " << n_;
    upload_async(std::move(host), data(), storage_.device());
  }

 private:
  int64_t n_;
  Tensor storage_;
};

// Per-channel f32 values computed on the host, as a [n] tensor on `device` (queued, no wait).
Tensor channel_vector(std::vector<float> values, Device device) {
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size())}, device);
  upload_async(std::move(values), t.raw_data(), device);
  return t;
}

// [C] as a one-row matrix for the elementwise kernels.
kernels::MatrixView channel_row(const Tensor& t) { return {t.data(), 1, t.numel(), t.numel()}; }

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
  const Device device = x.device();
  const Tensor xr = detail::as_row_matrix(x);
  const detail::Rows xm = detail::as_rows(xr);
  const int64_t channels = xm.cols, rows = xm.rows;
  const auto C = static_cast<size_t>(channels);

  // Pass 1: the sums and the row count over every process -> the mean. Only the [C] sums cross to the host:
  // three host synchronisations per batch norm in all (two here, one in backward), the downloads the
  // all-reduce needs; every upload is queued without waiting.
  const ChannelSums sums(channels, device);
  ENGINE_KERNEL(device, batch_norm_channel_sums)(xm, nullptr, sums.data());
  std::vector<double> totals = sums.to_host();
  totals.push_back(static_cast<double>(rows));
  allreduce(totals.data(), channels + 1);
  const double m = totals[C];
  ENGINE_CHECK(m > 0) << "batch_norm (sync): empty batch over every process";
  std::vector<double> mean(C);
  for (size_t c = 0; c < C; ++c) mean[c] = totals[c] / m;
  // Pass 2: the squared deviations from the global mean -> the (biased) variance.
  const ChannelSums center(channels, device);
  center.from_host_async(mean);
  ENGINE_KERNEL(device, batch_norm_channel_sums)(xm, center.data(), sums.data());
  std::vector<double> var = sums.to_host();
  allreduce(var.data(), channels);
  // The saved statistics, and the batch's variance as the running variance takes it.
  std::vector<float> mean_f(C), invstd_f(C), running_var_term(C);
  const double var_factor = (options.unbiased_running_var && m > 1) ? m / (m - 1.0) : 1.0;
  for (size_t c = 0; c < C; ++c) {
    var[c] /= m;
    mean_f[c] = static_cast<float>(mean[c]);
    invstd_f[c] = static_cast<float>(1.0 / std::sqrt(var[c] + static_cast<double>(options.eps)));
    running_var_term[c] = static_cast<float>(var[c] * var_factor);
  }
  const Tensor saved_mean = channel_vector(std::move(mean_f), device);
  const Tensor saved_invstd = channel_vector(std::move(invstd_f), device);
  Tensor y = Tensor::empty(x.shape(), device, x.dtype());
  kernels::BatchNormChannels ch;
  ch.gamma = detail::data_or_null(gamma);
  ch.beta = detail::data_or_null(beta);
  ch.saved_mean = saved_mean.data();
  ch.saved_invstd = saved_invstd.data();
  ENGINE_KERNEL(device, batch_norm_normalize_forward)(xm, detail::as_rows(y), ch);

  // The running statistics on the device: r = (1 - momentum) r + momentum * batch statistic (in f32; the
  // unsynchronised kernel takes the same sum in double: they differ by rounding only).
  const float momentum = options.momentum;
  const Tensor batch_var = channel_vector(std::move(running_var_term), device);
  for (const auto& [running, batch] : {std::pair{running_mean, saved_mean}, std::pair{running_var, batch_var}}) {
    ENGINE_KERNEL(device, scale)(1.0f - momentum, channel_row(running), channel_row(running), false);
    ENGINE_KERNEL(device, scale)(momentum, channel_row(batch), channel_row(running), true);
  }

  const bool need_dx = x.requires_grad();
  const bool need_dgamma = gamma.defined() && gamma.requires_grad();
  const bool need_dbeta = beta.defined() && beta.requires_grad();
  record(y, "batch_norm_sync", {x, gamma, beta},
         [xr, gamma, saved_mean, saved_invstd, m, need_dx, need_dgamma, need_dbeta, allreduce](const Tensor& dy_in) {
           const Device device = xr.device();
           const Tensor dy = detail::as_row_matrix(dy_in);
           const detail::Rows xm = detail::as_rows(xr), dym = detail::as_rows(dy);
           const int64_t channels = xm.cols;
           const auto C = static_cast<size_t>(channels);
           kernels::BatchNormChannels ch;
           ch.gamma = detail::data_or_null(gamma);
           ch.saved_mean = saved_mean.data();
           ch.saved_invstd = saved_invstd.data();
           // [sum_dy | sum_dy_xhat]: this process's (the parameter gradients), then every process's.
           const ChannelSums sums(2 * channels, device);
           ENGINE_KERNEL(device, batch_norm_backward_channel_sums)(xm, dym, ch, sums.data());
           const std::vector<double> local = sums.to_host();
           std::vector<double> global = local;
           allreduce(global.data(), 2 * channels);
           Tensor dx, dgamma, dbeta;
           if (need_dx) {
             sums.from_host_async(global);
             dx = Tensor::empty(xr.shape(), device, xr.dtype());
             ENGINE_KERNEL(device, batch_norm_normalize_backward)(xm, dym, ch, sums.data(), m, detail::as_rows(dx));
           }
           std::vector<float> db(C), dg(C);
           for (size_t c = 0; c < C; ++c) {
             db[c] = static_cast<float>(local[c]);
             dg[c] = static_cast<float>(local[C + c]);
           }
           if (need_dgamma) dgamma = channel_vector(std::move(dg), device);
           if (need_dbeta) dbeta = channel_vector(std::move(db), device);
           return std::vector<Tensor>{dx, dgamma, dbeta};
         });
  return y;
}

}  // namespace engine
