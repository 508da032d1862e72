// Synchronised batch norm (--sync-bn): while a BatchNormSyncScope is alive, training-mode batch_norm
// (engine/ops.h) takes its statistics over every process of a data-parallel run, not over this process's
// share of the batch, so that N processes compute the step of one process over the whole batch:
//
//   forward   mean_c = (sum over processes of sum_r x[r, c]) / M,   M = the rows of every process
//             var_c  = (sum over processes of sum_r (x[r, c] - mean_c)^2) / M     (two passes, as one process)
//   backward  dx = gamma_c * invstd_c * (dy - mean_dy_c - xhat * mean_dy_xhat_c), the two means over
//             every process's rows; dgamma, dbeta stay this process's sums (the gradient all-reduce adds them)
//
// Each batch norm calls `allreduce` (a sum over processes, in place) in the net's order, the same on every
// process: forward on two [C] sums, backward on one [2C] sum. The running statistics see the global mean
// and variance, so they stay equal across processes. Every pass, the per-channel maths included, runs on
// the activations' device, and the sums stay there: with NCCL the all-reduce is queued on the device (the
// kernels' stream waits for it on the device) and a synchronised batch norm never waits for the device;
// without NCCL each all-reduce takes its sums through the host (a download and an upload).
//
// M, every process's rows: the trainer sets the step's global batch (set_global_images) before each step,
// and a batch norm over x [N, ..., C] (N images) takes M = (rows per image) x (global images) with no
// collective. Unset, each batch norm sums its row count over the processes on the host (a blocking MPI
// call per batch norm).
#pragma once
#include <cstdint>
#include <functional>

#include "engine/ops.h"
#include "engine/tensor.h"

namespace engine {

// Sums n doubles in place over the processes; `sums` is in `where`'s memory (the host's, or a device's,
// where the sum is queued on the device, ordered after the kernels' stream's work so far and before
// what is queued there next). Distributed::allreduce_sum(double*, n, Device) is one.
using ChannelSumAllReduce = std::function<void(double* sums, int64_t n, Device where)>;

// What a synchronised batch norm reads from the installed scope.
struct BatchNormSync {
  ChannelSumAllReduce allreduce;
  int64_t global_images = 0;  // every process's images in the coming step; 0: unknown (see the file comment)
};

class BatchNormSyncScope {
 public:
  explicit BatchNormSyncScope(ChannelSumAllReduce allreduce);
  ~BatchNormSyncScope();
  BatchNormSyncScope(const BatchNormSyncScope&) = delete;
  BatchNormSyncScope& operator=(const BatchNormSyncScope&) = delete;
  // The images of the coming step over every process (the global batch); 0 makes it unknown again.
  void set_global_images(int64_t images);

 private:
  const BatchNormSync* previous_;
  BatchNormSync sync_;
};

// The installed scope's state, or null (batch_norm then uses this process's statistics).
const BatchNormSync* batch_norm_sync();

// Training-mode batch_norm with statistics over every process (called by batch_norm under a scope).
Tensor batch_norm_training_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                  const Tensor& running_var, const BatchNormOptions& options, const BatchNormSync& sync);

}  // namespace engine
