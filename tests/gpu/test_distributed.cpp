// Data parallelism on GPUs: the all-reduce of a gradient arena on the device (NCCL when the build has it,
// else through the host) equals the sum computed on the CPU, on every process, bit for bit in f32 within
// the reordering of a sum of N terms.
//
// The test binary relaunches itself under mpirun with one process per GPU (two at least; NCCL refuses two
// processes on one GPU), so it skips on a machine with fewer than two GPUs, or without MPI, or without CUDA.
//
// On one GPU, one process: the NCCL path itself (a one-rank communicator, forced by
// Distributed::set_device_collectives_in_one_process) on the same 20 M-float arena, its sums scaled by 2
// (set_one_process_sum_scale, NCCL's PreMulSum: a plain sum of one would leave the values as they were,
// ordered or not): the all-reduce doubles the values and the maximum keeps them; the gradient buckets
// (engine/grad_buckets.h), started on their communication stream during backward and waited by the
// kernels' stream, double every gradient backward made; a synchronised batch norm (--sync-bn) through it
// equals the local one and makes no host synchronisation, and with doubled sums gives two identical
// processes' results. Skips without NCCL in the build.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/batch_norm_sync.h"
#include "engine/device.h"
#include "engine/distributed.h"
#include "engine/grad_buckets.h"
#include "engine/module.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/runtime.h"
#include "engine/tensor.h"
#include "gpu_test_util.h"
#include "support/batch_norm_sync_check.h"

namespace {

// Process r's gradient value at i: distinct per process and element, exact in f32.
float gradient_value(int rank, int64_t i) { return static_cast<float>((i % 1013) * 0.25 + rank * 3.0 - 7.0); }

TEST(DistributedGpu, ArenaAllReduceOnTheDeviceEqualsTheCpuSum) {
  SKIP_WITHOUT_CUDA();
  if (!engine::Distributed::built_with_mpi()) GTEST_SKIP() << "this build has no MPI (libopenmpi-dev)";
  engine::Distributed& world = engine::Distributed::world();
  if (!world.distributed()) {
    const int gpus = engine::probe_devices().cuda_devices;
    if (gpus < 2) GTEST_SKIP() << "needs two GPUs (one process per GPU; " << gpus << " here)";
#ifdef ENGINE_MPIRUN
    // Relaunch this test as one process per GPU.
    char self[4096] = {};
    const ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
    ASSERT_GT(length, 0);
    const std::string command = std::string(ENGINE_MPIRUN) + " -np " + std::to_string(gpus) + " " + self +
                                " --gtest_filter=DistributedGpu.ArenaAllReduceOnTheDeviceEqualsTheCpuSum";
    const int raw = std::system(command.c_str());
    ASSERT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << command;
    return;
#else
    GTEST_SKIP() << "ENGINE_MPIRUN is not set (tests/CMakeLists.txt sets it where MPI is found)";
#endif
  }
  // One process per GPU, as the trainer places them (select_device makes the GPU current: NCCL refuses
  // two ranks on one GPU).
  const engine::Device device =
      engine::select_device("cuda:" + std::to_string(world.local_rank() % engine::probe_devices().cuda_devices));
  // An arena of a few parameters, 20 M floats in all (about DenseNet-121's gradient, 80 MB).
  engine::NamedTensors parameters;
  for (int64_t size : {int64_t(7), int64_t(20'000'000), int64_t(1)})
    parameters.emplace_back("p" + std::to_string(parameters.size()), engine::Tensor::zeros({size}, device));
  engine::ParameterArena arena(parameters);
  const int64_t n = arena.numel();
  std::vector<float> mine(static_cast<size_t>(n)), expected(static_cast<size_t>(n), 0.0f);
  for (int64_t i = 0; i < n; ++i) mine[static_cast<size_t>(i)] = gradient_value(world.rank(), i);
  for (int r = 0; r < world.size(); ++r)
    for (int64_t i = 0; i < n; ++i) expected[static_cast<size_t>(i)] += gradient_value(r, i);
  engine::Tensor host = engine::Tensor::empty({n});
  std::copy(mine.begin(), mine.end(), host.data());
  arena.grads().copy_from(host);
  world.allreduce_sum(arena.grads());
  const std::vector<float> got = arena.grads().to_vector();
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += got[static_cast<size_t>(i)] != expected[static_cast<size_t>(i)];
  EXPECT_EQ(wrong, 0) << "of " << n << " elements on " << world.name();
  // The same sum in 4 MB buckets (slices of the arena, on the communication stream, in bucket order).
  arena.grads().copy_from(host);
  engine::GradientBuckets buckets(arena, world, 4 << 20);
  EXPECT_GE(buckets.bucket_count(), 2);
  buckets.finish_backward();
  const std::vector<float> bucketed = arena.grads().to_vector();
  wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += bucketed[static_cast<size_t>(i)] != expected[static_cast<size_t>(i)];
  EXPECT_EQ(wrong, 0) << "bucketed: of " << n << " elements on " << world.name();
}

// One process, one GPU, NCCL in the build: device collectives go through a one-rank NCCL communicator
// for the test (off again however it ends). A test may scale the sums (world.set_one_process_sum_scale,
// NCCL's PreMulSum): a one-rank sum by 2 must run on the communication stream and be waited for by the
// kernels for its readers to see doubled values.
class DistributedGpuOneRank : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    if (!engine::Distributed::built_with_nccl()) GTEST_SKIP() << "this build has no NCCL (nccl.h, libnccl)";
    if (world.distributed()) GTEST_SKIP() << "one process only (the mpirun test covers several)";
    world.set_device_collectives_in_one_process(true);
    ASSERT_TRUE(world.device_collectives_active()) << "the sums would not go through NCCL";
  }
  void TearDown() override {
    world.set_device_collectives_in_one_process(false);
    world.set_one_process_sum_scale(1.0);
  }
  engine::Distributed& world = engine::Distributed::world();
};

// One process, one GPU: the device path through NCCL with a one-rank communicator.
TEST_F(DistributedGpuOneRank, NcclAllReduceAndBucketsOnOneGpu) {
  world.set_one_process_sum_scale(2.0);
  const engine::Device device = engine::Device::cuda(0);
  // 20 M floats in 22 parameters: buckets of 4,000,000 bytes (1 M floats) close on each 1 M-float
  // parameter: {p21, p20}, {p19}, ..., {p1}, {p0}.
  engine::NamedTensors parameters;
  std::vector<int64_t> sizes = {7};
  for (int k = 0; k < 20; ++k) sizes.push_back(1'000'000);
  sizes.push_back(1);
  for (int64_t size : sizes) {
    engine::Tensor p = engine::Tensor::zeros({size}, device);
    p.set_requires_grad(true);
    parameters.emplace_back("p" + std::to_string(parameters.size()), p);
  }
  engine::ParameterArena arena(parameters);
  const int64_t n = arena.numel();

  // The whole arena: the scaled sum of one doubles the values (exact); the maximum of one keeps them.
  std::vector<float> mine(static_cast<size_t>(n)), doubled(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    mine[static_cast<size_t>(i)] = gradient_value(0, i);
    doubled[static_cast<size_t>(i)] = 2.0f * mine[static_cast<size_t>(i)];
  }
  engine::Tensor host = engine::Tensor::empty({n});
  std::copy(mine.begin(), mine.end(), host.data());
  arena.grads().copy_from(host);
  world.allreduce_sum(arena.grads());
  EXPECT_EQ(arena.grads().to_vector(), doubled);
  world.allreduce_max(arena.grads());
  EXPECT_EQ(arena.grads().to_vector(), doubled);

  // Buckets: loss = sum_k (k + 1) sum(p_k), so p_k's gradient is k + 1 everywhere, 2 (k + 1) once summed
  // (exact). The first step learns the contribution counts; the next two start every bucket during backward.
  engine::GradientBuckets buckets(arena, world, 4'000'000);
  EXPECT_EQ(buckets.bucket_count(), 21);
  std::vector<float> expected;
  for (size_t k = 0; k < sizes.size(); ++k)
    expected.insert(expected.end(), static_cast<size_t>(sizes[k]), 2.0f * float(k + 1));
  const int64_t started_before = world.started_allreduces();
  for (int step = 0; step < 3; ++step) {
    arena.zero_grad();
    engine::Tensor loss;
    for (size_t k = 0; k < parameters.size(); ++k) {
      const engine::Tensor term = engine::scale(engine::sum(parameters[k].second), static_cast<float>(k + 1));
      loss = loss.defined() ? engine::add(loss, term) : term;
    }
    buckets.begin_backward();
    loss.backward();
    buckets.finish_backward();
    EXPECT_EQ(buckets.started_during_backward(), step == 0 ? 0 : buckets.bucket_count()) << "step " << step;
    EXPECT_EQ(arena.grads().to_vector(), expected) << "step " << step;
  }
  EXPECT_EQ(world.started_allreduces() - started_before, 3 * buckets.bucket_count());
}

// --sync-bn on the device: a synchronised batch norm whose sums go through the one-rank NCCL communicator
// gives the ordinary training batch norm's outputs, gradients and running statistics, and (forward and
// backward) never waits for the device: every all-reduce is queued on the communication stream, which
// the kernels' stream waits for on the device. (A one-rank sum changes nothing: that the sums are taken
// and used in the right order is tests/gpu/test_batch_norm_sync.cpp's two identical processes.)
TEST_F(DistributedGpuOneRank, NcclSyncBatchNormEqualsTheLocalOneWithoutHostWaits) {
  const engine::Device device = engine::Device::cuda(0);
  const int64_t n = 4, h = 9, w = 7, c = 48;
  const std::vector<float> x_values = gpu_test::away_from_zero(size_t(n * h * w * c), 31, 0.1f, 2.0f);
  const std::vector<float> dy_values = gpu_test::uniform(size_t(n * h * w * c), 32);
  const std::vector<float> gamma_values = gpu_test::uniform(size_t(c), 33, 0.5f, 1.5f);
  const std::vector<float> beta_values = gpu_test::uniform(size_t(c), 34);
  const engine::BatchNormOptions options = engine::BatchNormOptions::torch();
  struct Result {
    std::vector<float> y, dx, dgamma, dbeta, running_mean, running_var;
    int64_t host_waits = 0;
  };
  auto run = [&](bool synced) {
    const engine::Tensor x = engine::Tensor::from_vector({n, h, w, c}, x_values, device);
    const engine::Tensor dy = engine::Tensor::from_vector({n, h, w, c}, dy_values, device);
    const engine::Tensor gamma = engine::Tensor::from_vector({c}, gamma_values, device);
    const engine::Tensor beta = engine::Tensor::from_vector({c}, beta_values, device);
    const engine::Tensor running_mean = engine::Tensor::full({c}, 0.25f, device);
    const engine::Tensor running_var = engine::Tensor::full({c}, 1.5f, device);
    for (engine::Tensor t : {x, gamma, beta}) t.set_requires_grad(true);  // handles: the same tensors
    engine::device_synchronize(device);
    Result r;
    const int64_t before = engine::host_sync_count();
    {
      std::unique_ptr<engine::BatchNormSyncScope> scope;
      if (synced)
        scope = std::make_unique<engine::BatchNormSyncScope>(
            [this](double* sums, int64_t count, engine::Device where) { world.allreduce_sum(sums, count, where); });
      const engine::Tensor y = engine::batch_norm(x, gamma, beta, running_mean, running_var, true, options);
      y.backward(dy);
      r.host_waits = engine::host_sync_count() - before;
      r.y = y.to_vector();
    }
    r.dx = x.grad().to_vector();
    r.dgamma = gamma.grad().to_vector();
    r.dbeta = beta.grad().to_vector();
    r.running_mean = running_mean.to_vector();
    r.running_var = running_var.to_vector();
    return r;
  };
  const Result local = run(false), synced = run(true);
  EXPECT_EQ(synced.host_waits, 0) << "host synchronisations in a synchronised batch norm's forward and backward";
  EXPECT_TRUE(gpu_test::close(synced.y, local.y, 1e-5, 1e-5)) << "y";
  EXPECT_TRUE(gpu_test::close(synced.dx, local.dx, 1e-5, 1e-5)) << "dx";
  EXPECT_TRUE(gpu_test::close(synced.dgamma, local.dgamma, 1e-4, 1e-5)) << "dgamma";
  EXPECT_TRUE(gpu_test::close(synced.dbeta, local.dbeta, 1e-4, 1e-5)) << "dbeta";
  EXPECT_TRUE(gpu_test::close(synced.running_mean, local.running_mean, 1e-6, 1e-5)) << "running_mean";
  EXPECT_TRUE(gpu_test::close(synced.running_var, local.running_var, 1e-6, 1e-5)) << "running_var";
}

// --sync-bn's sums through NCCL on the communication stream, doubled (a one-rank communicator with a sum
// scale of 2): the results of two identical processes, which are one process's bit for bit
// (tests/support/batch_norm_sync_check.h). Unlike a plain one-rank sum this fails if a synchronised pass
// reads its sums before the all-reduce has written them, or takes dgamma and dbeta after it.
TEST_F(DistributedGpuOneRank, NcclDoubledSyncBatchNormGivesTwoIdenticalProcesses) {
  world.set_one_process_sum_scale(2.0);
  test_support::expect_two_identical_processes_give_one_process(
      engine::Device::cuda(0), /*set_global_images=*/true,
      [this](double* sums, int64_t count, engine::Device where) { world.allreduce_sum(sums, count, where); });
}

}  // namespace
