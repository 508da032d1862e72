// The CUDA context (kernels/cuda/context.cpp) and runtime (kernels/cuda/runtime.cpp): the caching
// allocator (a repeated allocation pattern makes no new cudaMalloc calls, exact statistics, the
// out-of-memory message, misuse), the stream and handles, the switches, stream ordering of the
// copies, pinned asynchronous copies, and ENGINE_CUDA_SYNC (a faulting kernel is named at its launch;
// run in a child process, because a fault leaves the CUDA context unusable).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "gpu_test_util.h"
#include "kernels/elementwise.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;
namespace kc = kernels::cuda;

TEST(CudaAllocator, RepeatedPatternMakesNoNewDeviceMallocs) {
  SKIP_WITHOUT_CUDA();
  // A "training step": the same sizes every time, small and large, released in another order.
  const std::vector<size_t> sizes{1, 100, 513, 4096, size_t(1) << 20, (size_t(1) << 20) + 1,
                                  size_t(3) << 20, size_t(50) << 20, 777777};
  auto step = [&] {
    std::vector<void*> blocks;
    for (size_t s : sizes) blocks.push_back(kc::allocate(s, "pattern"));
    for (size_t i = 0; i < blocks.size(); i += 2) kc::release(blocks[i]);
    for (size_t i = 1; i < blocks.size(); i += 2) kc::release(blocks[i]);
  };
  step();  // warm-up: the allocator fills its free lists
  const kc::MemoryStats before = kc::memory_stats();
  for (int i = 0; i < 5; ++i) step();
  const kc::MemoryStats after = kc::memory_stats();
  EXPECT_EQ(after.device_mallocs, before.device_mallocs) << "a warm step called cudaMalloc";
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_EQ(after.cached, before.cached);
}

TEST(CudaAllocator, StatisticsAreExact) {
  SKIP_WITHOUT_CUDA();
  kc::empty_cache();  // no free blocks: the next requests are fresh cudaMallocs of their size class
  const kc::MemoryStats start = kc::memory_stats();
  EXPECT_EQ(start.cached, start.in_use) << "empty_cache left free blocks";
  kc::reset_peak_memory();
  void* small = kc::allocate(1000, "small");       // 512-byte granule: 1024
  void* large = kc::allocate((1 << 20) + 1, "large");  // 2 MiB granule: 2 MiB
  ASSERT_NE(small, nullptr);
  ASSERT_NE(large, nullptr);
  const kc::MemoryStats mid = kc::memory_stats();
  EXPECT_EQ(mid.in_use - start.in_use, 1024u + (2u << 20));
  EXPECT_EQ(mid.cached - start.cached, 1024u + (2u << 20));
  EXPECT_EQ(mid.device_mallocs - start.device_mallocs, 2u);
  EXPECT_EQ(mid.peak_in_use, mid.in_use);
  // The bytes asked for, rounded to 512 (PyTorch's count): 1024 + 1 MiB + 512.
  EXPECT_EQ(mid.requested_in_use - start.requested_in_use, 1024u + (1u << 20) + 512u);
  EXPECT_EQ(mid.peak_requested, mid.requested_in_use);
  kc::release(large);
  // A cached 2 MiB block handed out for a smaller request: in use counts the block, requested the request.
  void* reused = kc::allocate(1600 * 1024, "reused");  // size class 2 MiB: the cached block
  const kc::MemoryStats reuse = kc::memory_stats();
  EXPECT_EQ(reuse.device_mallocs, mid.device_mallocs) << "the cached block was not reused";
  EXPECT_EQ(reuse.in_use - start.in_use, 1024u + (2u << 20));
  EXPECT_EQ(reuse.requested_in_use - start.requested_in_use, 1024u + 1600u * 1024u);
  kc::release(reused);
  kc::release(small);
  const kc::MemoryStats end = kc::memory_stats();
  EXPECT_EQ(end.in_use, start.in_use);
  EXPECT_EQ(end.requested_in_use, start.requested_in_use);
  EXPECT_EQ(end.peak_requested, reuse.requested_in_use) << "the requested peak survives the release";
  EXPECT_EQ(end.cached, mid.cached) << "released blocks stay cached";
  EXPECT_EQ(end.peak_in_use, mid.in_use) << "the peak survives the release";
  kc::reset_peak_memory();
  EXPECT_EQ(kc::memory_stats().peak_in_use, end.in_use);
  EXPECT_EQ(kc::memory_stats().peak_requested, end.requested_in_use);
  kc::empty_cache();
  EXPECT_EQ(kc::memory_stats().cached, kc::memory_stats().in_use);
}

TEST(CudaAllocator, OutOfMemoryNamesTheAllocationAndSuggestsASmallerBatch) {
  SKIP_WITHOUT_CUDA();
  const size_t absurd = size_t(1) << 50;  // 1 PiB
  try {
    kc::allocate(absurd, "absurd test buffer");
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const kc::OutOfMemory& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("absurd test buffer"), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(absurd)), std::string::npos) << message;
    EXPECT_NE(message.find("in use"), std::string::npos) << message;
    EXPECT_NE(message.find("cached"), std::string::npos) << message;
    EXPECT_NE(message.find("free of"), std::string::npos) << message;  // the device's free/total
    EXPECT_NE(message.find("--batch-size"), std::string::npos) << message;
  }
  // A size whose size class overflows is out of memory too, not a wrap-around to a tiny block.
  EXPECT_THROW(kc::allocate(SIZE_MAX - 5, "overflowing request"), kc::OutOfMemory);
  // The allocator still works afterwards.
  void* ok = kc::allocate(4096, "after an out-of-memory error");
  EXPECT_NE(ok, nullptr);
  kc::release(ok);
}

TEST(CudaAllocator, Misuse) {
  SKIP_WITHOUT_CUDA();
  EXPECT_EQ(kc::allocate(0, "empty"), nullptr);
  kc::release(nullptr);  // does nothing
  int host_object = 0;
  EXPECT_THROW(kc::release(&host_object), std::invalid_argument);
  void* block = kc::allocate(64, "double release");
  kc::release(block);
  EXPECT_THROW(kc::release(block), std::invalid_argument);
}

TEST(CudaContext, StreamAndHandlesAreCreatedOnceAndReused) {
  SKIP_WITHOUT_CUDA();
  void* stream = kc::current_stream();
  EXPECT_NE(stream, nullptr) << "kernels must not run on the legacy default stream";
  EXPECT_EQ(kc::current_stream(), stream);
  void* cublas = kc::cublas_handle();
  EXPECT_NE(cublas, nullptr);
  EXPECT_EQ(kc::cublas_handle(), cublas);
  void* cudnn = kc::cudnn_handle();
  EXPECT_NE(cudnn, nullptr);
  EXPECT_EQ(kc::cudnn_handle(), cudnn);
  kc::stream_synchronize();
  EXPECT_NO_THROW(kc::check_launch("nothing", __FILE__, __LINE__));
}

TEST(CudaContext, Switches) {
  SKIP_WITHOUT_CUDA();
  SwitchesGuard guard;
  kc::set_allow_tf32(false);
  EXPECT_FALSE(kc::allow_tf32());
  kc::set_allow_tf32(true);
  EXPECT_TRUE(kc::allow_tf32());
  kc::set_deterministic(true);
  EXPECT_TRUE(kc::deterministic());
  kc::set_conv_workspace_limit(12345);
  EXPECT_EQ(kc::conv_workspace_limit(), 12345u);
}

TEST(CudaContext, SyncSwitchIsReadFromTheEnvironment) {
  SKIP_WITHOUT_CUDA();
  const char* value = std::getenv("ENGINE_CUDA_SYNC");
  const bool set = value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
  EXPECT_EQ(kc::sync_after_every_launch(), set);
}

// Copies are ordered with the kernels on the (non-blocking) kernels' stream: a read-back right after
// a kernel sees its result, and an upload right after a kernel does not change what the kernel read.
TEST(CudaRuntime, CopiesAreOrderedWithKernels) {
  SKIP_WITHOUT_CUDA();
  const int64_t n = int64_t(16) << 20;  // 64 MiB: long enough for a race to show
  DeviceBuffer a(size_t(n), 1.0f), b(size_t(n), 0.0f);
  kc::fill({a.get(), n, 1, 1}, 2.5f);
  const std::vector<float> filled = a.download();
  EXPECT_TRUE(bitwise_equal(filled, std::vector<float>(size_t(n), 2.5f)));
  kc::scale(2.0f, {a.get(), n, 1, 1}, {b.get(), n, 1, 1}, false);  // b = 5 from a = 2.5
  a.upload(std::vector<float>(size_t(n), -1.0f));        // queued after the scale
  EXPECT_TRUE(bitwise_equal(b.download(), std::vector<float>(size_t(n), 5.0f)));
}

TEST(CudaRuntime, PinnedAsynchronousRoundTrip) {
  SKIP_WITHOUT_CUDA();
  const size_t n = 1 << 20;
  float* host_in = static_cast<float*>(kc::pinned_host_malloc(n * sizeof(float)));
  float* host_out = static_cast<float*>(kc::pinned_host_malloc(n * sizeof(float)));
  for (size_t i = 0; i < n; ++i) host_in[i] = float(i % 1000) + 0.5f, host_out[i] = kNaN;
  float* device = static_cast<float*>(kc::allocate(n * sizeof(float), "round trip"));
  kc::copy_host_to_device_async(device, host_in, n * sizeof(float));
  kc::scale(-2.0f, {device, int64_t(n), 1, 1}, {device, int64_t(n), 1, 1}, false);
  kc::copy_device_to_host_async(host_out, device, n * sizeof(float));
  kc::stream_synchronize();
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i) wrong += host_out[i] != -2.0f * host_in[i];
  EXPECT_EQ(wrong, 0u);
  kc::release(device);
  kc::pinned_host_free(host_out);
  kc::pinned_host_free(host_in);
}

// ENGINE_CUDA_SYNC=1: a kernel that faults is reported by its own launch check, by name. Without it
// the fault surfaces later, at the next synchronisation. Each case runs in a child process (a fault
// leaves the process's CUDA context unusable); compute-sanitizer runs skip *DeathTest*.
int fault_in_fill(bool sync) {
  if (sync)
    setenv("ENGINE_CUDA_SYNC", "1", 1);  // read once, at the first launch check of this process
  else
    unsetenv("ENGINE_CUDA_SYNC");
  float* invalid = reinterpret_cast<float*>(uintptr_t(0x10));
  try {
    kc::fill({invalid, 4096, 1, 1}, 1.0f);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "at the launch: %s\n", e.what());
    return 3;
  }
  try {
    kc::stream_synchronize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "at the synchronisation: %s\n", e.what());
    return 4;
  }
  return 5;
}

TEST(CudaSyncDeathTest, FaultingKernelIsNamedAtItsLaunchWithSync) {
  SKIP_WITHOUT_CUDA();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(fault_in_fill(true)), ::testing::ExitedWithCode(3),
              "at the launch: .*kernel fill failed");
}

TEST(CudaSyncDeathTest, FaultSurfacesAsAnErrorWithoutSync) {
  SKIP_WITHOUT_CUDA();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Normally at the synchronisation (4); if the fault is already known when the launch is checked,
  // at the launch (3). Either way an exception, never a silent wrong result (5) or a crash.
  EXPECT_EXIT(std::_Exit(fault_in_fill(false)),
              [](int status) {
                return WIFEXITED(status) && (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4);
              },
              "CUDA error cudaErrorIllegalAddress");
}

}  // namespace

#else

TEST(CudaContext, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
