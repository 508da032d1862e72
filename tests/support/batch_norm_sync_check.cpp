// See batch_norm_sync_check.h.
#include "support/batch_norm_sync_check.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/backend.h"
#include "engine/batch_norm_sync.h"
#include "engine/ops.h"
#include "support/random_values.h"

namespace test_support {

using engine::Device;
using engine::Tensor;

namespace {

struct Outputs {
  std::vector<float> y, dx, dgamma, dbeta, running_mean, running_var;
};

// A training batch norm of x [3, 5, 4, 6] (mean 0.75) and its backward with a random dy, on `device`.
Outputs run_batch_norm(Device device) {
  const int64_t n = 3, h = 5, w = 4, c = 6;
  const auto count = static_cast<size_t>(n * h * w * c);
  Tensor x = Tensor::from_vector({n, h, w, c}, uniform(count, 11, -1.25f, 2.75f), device);
  Tensor gamma = Tensor::from_vector({c}, uniform(static_cast<size_t>(c), 12, 0.5f, 1.5f), device);
  Tensor beta = Tensor::from_vector({c}, uniform(static_cast<size_t>(c), 13, -0.5f, 0.5f), device);
  const Tensor dy = Tensor::from_vector({n, h, w, c}, uniform(count, 14, -1.0f, 1.0f), device);
  const Tensor running_mean = Tensor::full({c}, 0.25f, device), running_var = Tensor::full({c}, 1.5f, device);
  for (Tensor* t : {&x, &gamma, &beta}) t->set_requires_grad(true);
  const Tensor y =
      engine::batch_norm(x, gamma, beta, running_mean, running_var, true, engine::BatchNormOptions::keras(1e-3f));
  y.backward(dy);
  return {y.to_vector(),       x.grad().to_vector(),        gamma.grad().to_vector(),
          beta.grad().to_vector(), running_mean.to_vector(), running_var.to_vector()};
}

}  // namespace

void expect_two_identical_processes_give_one_process(Device device, bool set_global_images,
                                                     const engine::ChannelSumAllReduce& doubling) {
  Outputs one_process;
  {
    const engine::BatchNormSyncScope scope([](double*, int64_t, Device) {});  // a sum over one process
    one_process = run_batch_norm(device);
  }
  int64_t calls = 0;
  engine::BatchNormSyncScope scope([&calls, &doubling](double* sums, int64_t n, Device where) {
    ++calls;
    if (doubling) {
      doubling(sums, n, where);
      return;
    }
    const engine::DeviceBackend& backend = engine::backend_for(where);
    std::vector<double> host(static_cast<size_t>(n));
    backend.copy_to_host(host.data(), sums, host.size() * sizeof(double));
    for (double& v : host) v *= 2.0;  // the other process's identical sums
    backend.copy_from_host(sums, host.data(), host.size() * sizeof(double));
  });
  if (set_global_images) scope.set_global_images(2 * 3);  // 2 x the 3 images of each process
  const Outputs two = run_batch_norm(device);
  // Forward: the sums and the centred squares (and the row count unless the global batch is set);
  // backward: one.
  EXPECT_EQ(calls, set_global_images ? 3 : 4);
  EXPECT_EQ(two.y, one_process.y) << "y";
  EXPECT_EQ(two.dx, one_process.dx) << "dx";
  EXPECT_EQ(two.running_mean, one_process.running_mean) << "running mean";
  EXPECT_EQ(two.running_var, one_process.running_var) << "running var";
  EXPECT_EQ(two.dgamma, one_process.dgamma) << "dgamma: this process's own sums, not the all-reduced ones";
  EXPECT_EQ(two.dbeta, one_process.dbeta) << "dbeta: this process's own sums, not the all-reduced ones";
}

}  // namespace test_support
