// Synchronised batch norm: the maths of kernels/batchnorm.h with every sum taken over the processes
// (see batch_norm_sync.h). Every pass runs on the activations' device: the passes over the activations
// (batch_norm_channel_sums, _backward_channel_sums, _normalize_forward, _normalize_backward) and the
// per-channel maths between them (batch_norm_sync_mean, _statistics, _parameter_grads); the sums are
// all-reduced where they are.
#include "engine/batch_norm_sync.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/ops/common.h"
#include "kernels/batchnorm.h"

namespace engine {

namespace {
const BatchNormSync* installed = nullptr;

// n doubles in a device's memory (or the host's) for the kernels' per-channel sums: the storage of an f32
// tensor twice as long (tensors have no double type).
class ChannelSums {
 public:
  ChannelSums(int64_t n, Device device) : storage_(Tensor::empty({2 * std::max<int64_t>(n, 1)}, device)) {}
  double* data() const { return static_cast<double*>(storage_.raw_data()); }

 private:
  Tensor storage_;
};

}  // namespace

BatchNormSyncScope::BatchNormSyncScope(ChannelSumAllReduce allreduce) : previous_(installed) {
  sync_.allreduce = std::move(allreduce);
  installed = &sync_;
}
BatchNormSyncScope::~BatchNormSyncScope() { installed = previous_; }

void BatchNormSyncScope::set_global_images(int64_t images) {
  ENGINE_CHECK(images >= 0) << "BatchNormSyncScope: " << images << " global images";
  sync_.global_images = images;
}

const BatchNormSync* batch_norm_sync() { return installed; }

Tensor batch_norm_training_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                  const Tensor& running_var, const BatchNormOptions& options,
                                  const BatchNormSync& sync) {
  const ChannelSumAllReduce& allreduce = sync.allreduce;
  const Device device = x.device();
  const Tensor xr = detail::as_row_matrix(x);
  const detail::Rows xm = detail::as_rows(xr);
  const int64_t channels = xm.cols;

  // Every process's rows: x is [N, ..., C] over N images, so (rows per image) x (global images), or summed
  // over the processes on the host when the global batch is not known.
  double m = static_cast<double>(xm.rows);
  if (sync.global_images > 0 && x.ndim() >= 2) {
    int64_t rows_per_image = 1;
    for (int d = 1; d + 1 < x.ndim(); ++d) rows_per_image *= x.shape()[static_cast<size_t>(d)];
    m = static_cast<double>(rows_per_image) * static_cast<double>(sync.global_images);
  } else {
    allreduce(&m, 1, Device::cpu());
  }
  ENGINE_CHECK(m > 0) << "batch_norm (sync): empty batch over every process";
  // Pass 1: the sums over every process -> the mean.
  const ChannelSums sums(channels, device), mean(channels, device);
  ENGINE_KERNEL(device, batch_norm_channel_sums)(xm, nullptr, sums.data());
  allreduce(sums.data(), channels, device);
  ENGINE_KERNEL(device, batch_norm_sync_mean)(sums.data(), channels, m, mean.data());
  // Pass 2: the squared deviations from the global mean -> the (biased) variance, the saved statistics and
  // the running ones.
  ENGINE_KERNEL(device, batch_norm_channel_sums)(xm, mean.data(), sums.data());
  allreduce(sums.data(), channels, device);
  const Tensor saved_mean = Tensor::empty({channels}, device);
  const Tensor saved_invstd = Tensor::empty({channels}, device);
  kernels::BatchNormStatsOut stats;
  stats.saved_mean = saved_mean.data();
  stats.saved_invstd = saved_invstd.data();
  stats.running_mean = detail::data_or_null(running_mean);
  stats.running_var = detail::data_or_null(running_var);
  const kernels::BatchNormHyper hyper{options.eps, options.momentum, options.unbiased_running_var};
  ENGINE_KERNEL(device, batch_norm_sync_statistics)(mean.data(), sums.data(), channels, m, stats, hyper);

  Tensor y = Tensor::empty(x.shape(), device, x.dtype());
  kernels::BatchNormChannels ch;
  ch.gamma = detail::data_or_null(gamma);
  ch.beta = detail::data_or_null(beta);
  ch.saved_mean = saved_mean.data();
  ch.saved_invstd = saved_invstd.data();
  ENGINE_KERNEL(device, batch_norm_normalize_forward)(xm, detail::as_rows(y), ch);

  const bool need_dx = x.requires_grad();
  const bool need_dgamma = gamma.defined() && gamma.requires_grad();
  const bool need_dbeta = beta.defined() && beta.requires_grad();
  record(y, "batch_norm_sync", {x, gamma, beta},
         [xr, gamma, saved_mean, saved_invstd, m, need_dx, need_dgamma, need_dbeta, allreduce](const Tensor& dy_in) {
           const Device device = xr.device();
           const Tensor dy = detail::as_row_matrix(dy_in);
           const detail::Rows xm = detail::as_rows(xr), dym = detail::as_rows(dy);
           const int64_t channels = xm.cols;
           kernels::BatchNormChannels ch;
           ch.gamma = detail::data_or_null(gamma);
           ch.saved_mean = saved_mean.data();
           ch.saved_invstd = saved_invstd.data();
           // [sum_dy | sum_dy_xhat]: this process's (the parameter gradients), then every process's (dx).
           const ChannelSums sums(2 * channels, device);
           ENGINE_KERNEL(device, batch_norm_backward_channel_sums)(xm, dym, ch, sums.data());
           Tensor dx, dgamma, dbeta;
           kernels::BatchNormParamGrads grads;
           if (need_dgamma) grads.dgamma = (dgamma = Tensor::empty({channels}, device)).data();
           if (need_dbeta) grads.dbeta = (dbeta = Tensor::empty({channels}, device)).data();
           ENGINE_KERNEL(device, batch_norm_sync_parameter_grads)(sums.data(), channels, grads);
           allreduce(sums.data(), 2 * channels, device);  // every process calls it, whatever it needs
           if (need_dx) {
             dx = Tensor::empty(xr.shape(), device, xr.dtype());
             ENGINE_KERNEL(device, batch_norm_normalize_backward)(xm, dym, ch, sums.data(), m, detail::as_rows(dx));
           }
           return std::vector<Tensor>{dx, dgamma, dbeta};
         });
  return y;
}

}  // namespace engine
