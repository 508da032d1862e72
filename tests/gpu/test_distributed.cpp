// Data parallelism on GPUs: the all-reduce of a gradient arena on the device (NCCL when the build has it,
// else through the host) equals the sum computed on the CPU, on every process, bit for bit in f32 within
// the reordering of a sum of N terms.
//
// The test binary relaunches itself under mpirun with one process per GPU (two at least; NCCL refuses two
// processes on one GPU), so it skips on a machine with fewer than two GPUs, or without MPI, or without CUDA.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/distributed.h"
#include "engine/module.h"
#include "engine/optim.h"
#include "engine/tensor.h"
#include "gpu_test_util.h"

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
  const engine::Device device = engine::Device::cuda(world.local_rank() % engine::probe_devices().cuda_devices);
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
}

}  // namespace
