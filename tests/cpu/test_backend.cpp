// The device tables of engine/backend.h on the CPU: allocation (counted in memory_stats.h; the heap keeps
// freed memory for the next step), copies in every direction, fills and strided copies, the runtime
// switches of engine/runtime.h, and the plain error a CUDA request gets where this build or machine has no
// CUDA device.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/check.h"
#include "engine/device.h"
#include "engine/memory_stats.h"
#include "engine/runtime.h"
#include "engine/tensor.h"

namespace {

using namespace engine;

std::vector<float> iota(size_t n, float start = 1.0f) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(CpuBackend, IsAlwaysThereAndNamesItself) {
  const DeviceBackend* cpu = find_backend(DeviceType::cpu);
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(&backend_for(Device::cpu()), cpu);
  EXPECT_STREQ(cpu->name(), "cpu");
  EXPECT_EQ(cpu->device_count(nullptr), 1);
  EXPECT_TRUE(cpu->runtime_info().empty());
  EXPECT_TRUE(device_runtime_info(Device::cpu()).empty());
}

TEST(CpuBackend, AllocationsAreAlignedAndCounted) {
  const DeviceBackend& cpu = backend_for(Device::cpu());
  const HostMemoryStats before = host_memory_stats();
  void* block = cpu.allocate(1000);
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % 64, 0u);
  EXPECT_EQ(host_memory_stats().live_bytes - before.live_bytes, 1000);
  EXPECT_EQ(host_memory_stats().allocations - before.allocations, 1);
  EXPECT_EQ(device_memory_stats(Device::cpu()).in_use_bytes, host_memory_stats().live_bytes);
  std::memset(block, 7, 1000);  // the whole block is ours
  cpu.release(block, 1000);
  EXPECT_EQ(host_memory_stats().live_bytes, before.live_bytes);

  EXPECT_EQ(cpu.allocate(0), nullptr);
  cpu.release(nullptr, 0);

  void* pinned = cpu.pinned_allocate(256);  // ordinary memory on the CPU, not counted
  ASSERT_NE(pinned, nullptr);
  std::memset(pinned, 1, 256);
  cpu.pinned_free(pinned);
  EXPECT_EQ(host_memory_stats().live_bytes, before.live_bytes);
}

TEST(CpuBackend, PeakFollowsAllocationsAndResets) {
  const Device cpu = Device::cpu();
  reset_device_memory_peak(cpu);
  const int64_t live = device_memory_stats(cpu).in_use_bytes;
  EXPECT_EQ(device_memory_stats(cpu).peak_bytes, live);
  {
    Tensor big = Tensor::zeros({1024});
    EXPECT_GE(device_memory_stats(cpu).peak_bytes, live + 4096);
  }
  EXPECT_GE(device_memory_stats(cpu).peak_bytes, live + 4096);
  reset_device_memory_peak(cpu);
  EXPECT_EQ(device_memory_stats(cpu).peak_bytes, live);
  EXPECT_EQ(device_memory_stats(cpu).cached_bytes, 0);
  empty_device_cache(cpu);   // the heap's free pages back to the system
  device_synchronize(cpu);   // nothing to wait for
}

int64_t minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// A training step allocates its activations, frees them at its end, and allocates them again in the next
// step. glibc's defaults give such blocks back to the system (an mmap of their own above 32 MiB at most;
// the heap's top once more than the trim threshold is free), so the next step page-faults every one anew.
// Here: 30 blocks of 48 MiB (each above glibc's largest mmap threshold, 1.4 GiB freed at once, more than
// the 1 GiB trim threshold this table used before), touched, freed and allocated again; then once more
// after empty_device_cache, which gives the free pages back.
TEST(CpuBackend, ASecondStepReusesTheFirstStepsMemoryWithoutPageFaults) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "the heap settings are glibc's";
#endif
  ASSERT_TRUE(host_heap_keeps_freed_memory()) << "glibc refused the heap settings of engine/backend_cpu.cpp";
  const DeviceBackend& cpu = backend_for(Device::cpu());
  constexpr size_t kBlockBytes = size_t(48) << 20;
  constexpr int kBlocks = 30;
  auto step = [&] {
    std::vector<void*> blocks;
    blocks.reserve(kBlocks);  // no small block of its own between the last large one and the heap's top
    for (int i = 0; i < kBlocks; ++i) {
      blocks.push_back(cpu.allocate(kBlockBytes));
      std::memset(blocks.back(), i, kBlockBytes);
    }
    for (void* block : blocks) cpu.release(block, kBlockBytes);
  };
  const int64_t pages = int64_t(kBlocks) * int64_t(kBlockBytes / 4096);
  const int64_t before_first = minor_page_faults();
  step();
  const int64_t first = minor_page_faults() - before_first;
  step();
  const int64_t second = minor_page_faults() - before_first - first;
  // The first step may fault every page (or fewer, with huge pages); the second none but a few.
  EXPECT_LT(second, pages / 100) << "first step " << first << " faults, second " << second << ", of "
                                 << pages << " pages";
  // Emptying the CPU's "cache" gives those pages back: the next step faults them again.
  empty_device_cache(Device::cpu());
  const int64_t before_third = minor_page_faults();
  step();
  EXPECT_GT(minor_page_faults() - before_third, pages / 2);
}

TEST(CpuBackend, CopiesRoundTrip) {
  const DeviceBackend& cpu = backend_for(Device::cpu());
  const std::vector<float> source = iota(37);
  std::vector<float> a(37, 0.0f), b(37, 0.0f), c(37, 0.0f);
  cpu.copy_from_host(a.data(), source.data(), source.size() * sizeof(float));
  cpu.copy_within(b.data(), a.data(), a.size() * sizeof(float));
  cpu.copy_to_host(c.data(), b.data(), b.size() * sizeof(float));
  EXPECT_EQ(c, source);
  cpu.copy_within(c.data(), nullptr, 0);  // an empty copy touches nothing
}

TEST(CpuBackend, FillWritesExactlyCount) {
  const DeviceBackend& cpu = backend_for(Device::cpu());
  std::vector<float> v(10, -1.0f);
  cpu.fill(v.data() + 2, 5, 3.5f);
  EXPECT_EQ(v, (std::vector<float>{-1, -1, 3.5f, 3.5f, 3.5f, 3.5f, 3.5f, -1, -1, -1}));
  cpu.fill(v.data(), 0, 9.0f);
  EXPECT_EQ(v[0], -1.0f);
}

TEST(CpuBackend, StridedCopyTransposesAndGathers) {
  const DeviceBackend& cpu = backend_for(Device::cpu());
  // src: a [2, 3] matrix read as its transpose [3, 2]; dst: [3, 2] inside rows of 4 (gaps kept).
  const std::vector<float> src = iota(6);  // [[1, 2, 3], [4, 5, 6]]
  std::vector<float> dst(12, 0.0f);
  const int64_t shape[] = {3, 2};
  const int64_t src_strides[] = {1, 3};
  const int64_t dst_strides[] = {4, 1};
  cpu.strided_copy(2, shape, dst.data(), dst_strides, src.data(), src_strides, sizeof(float));
  EXPECT_EQ(dst, (std::vector<float>{1, 4, 0, 0, 2, 5, 0, 0, 3, 6, 0, 0}));

  // Any element size: bytes of a 3-D block with dense rows.
  std::vector<char> bytes_src(2 * 2 * 3), bytes_dst(2 * 2 * 3, 0);
  std::iota(bytes_src.begin(), bytes_src.end(), char(1));
  const int64_t shape3[] = {2, 2, 3};
  const int64_t dense3[] = {6, 3, 1};
  const int64_t swapped3[] = {3, 6, 1};  // the first two dimensions exchanged
  cpu.strided_copy(3, shape3, bytes_dst.data(), swapped3, bytes_src.data(), dense3, 1);
  EXPECT_EQ(bytes_dst, (std::vector<char>{1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11, 12}));
}

TEST(CpuBackend, TensorCopiesGoThroughTheTable) {
  Tensor t = Tensor::from_vector({2, 3}, iota(6));
  // copy_from a non-contiguous view into a dense tensor and back.
  Tensor col = t.slice(1, 1, 3);
  Tensor dense = col.contiguous();
  EXPECT_EQ(dense.to_vector(), (std::vector<float>{2, 3, 5, 6}));
  col.copy_from(Tensor::from_vector({2, 2}, {7, 8, 9, 10}));
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 7, 8, 4, 9, 10}));
  col.fill_(0.5f);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 0.5f, 0.5f, 4, 0.5f, 0.5f}));
  EXPECT_EQ(t.to(Device::cpu()).storage(), t.storage());
}

TEST(Runtime, ThreadsAndSwitches) {
  const int threads = num_threads();
  EXPECT_GE(threads, 1);
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(threads);
  EXPECT_EQ(num_threads(), threads);
  EXPECT_FALSE(cpu_info().model.empty());
  EXPECT_GE(cpu_info().flop_per_cycle, 8);

  const bool tf32 = allow_tf32();
  set_allow_tf32(false);
  EXPECT_FALSE(allow_tf32());
  set_allow_tf32(tf32);
  const bool was_deterministic = deterministic();
  set_deterministic(true);
  EXPECT_TRUE(deterministic());
  set_deterministic(was_deterministic);
  EXPECT_EQ(deterministic(), was_deterministic);
}

// Without a CUDA device (no backend in this build, or none on this machine), asking for one fails with a
// message that says why and what to use instead.
TEST(Backend, CudaRequestWithoutADeviceSaysWhatToDo) {
  const DeviceProbe& probe = probe_devices();
  EXPECT_EQ(probe.cuda_built, find_backend(DeviceType::cuda) != nullptr);
  if (probe.cuda_devices > 0) GTEST_SKIP() << "a CUDA device is present: " << probe.description;
  EXPECT_FALSE(probe.reason.empty());
  try {
    select_device("cuda");
    FAIL() << "select_device(\"cuda\") succeeded without a device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(probe.reason), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("use --device cpu"), std::string::npos) << e.what();
  }
  if (!probe.cuda_built) {
    // A CPU-only build: the table is absent and a CUDA tensor is refused in plain words.
    try {
      Tensor::empty({4}, Device::cuda(0));
      FAIL() << "a CUDA tensor in a build without CUDA";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("this build has no CUDA backend; use the CPU device"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(backend_for(Device::cuda(0)), Error);
    EXPECT_THROW(device_memory_stats(Device::cuda(0)), Error);
  }
}

}  // namespace
