// The CUDA device table (engine/backend.h) against the CPU's: copies in every direction, fills and
// strided copies (f32 and bf16) give the CPU's bytes; device memory statistics (engine/runtime.h) follow allocations; a
// tensor too large for the device is a recognisable out-of-memory error.
// Skips without a CUDA device.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/check.h"
#include "engine/runtime.h"
#include "engine/tensor.h"
#include "gpu_test_util.h"

namespace {

using namespace engine;

TEST(CudaBackend, CopiesRoundTripBitForBit) {
  SKIP_WITHOUT_CUDA();
  const DeviceBackend& cuda = backend_for(Device::cuda(0));
  const std::vector<float> host = gpu_test::uniform(1000, 1);
  const size_t bytes = host.size() * sizeof(float);
  void* a = cuda.allocate(bytes);
  void* b = cuda.allocate(bytes);
  cuda.copy_from_host(a, host.data(), bytes);
  cuda.copy_within(b, a, bytes);
  std::vector<float> back(host.size(), gpu_test::kNaN);
  cuda.copy_to_host(back.data(), b, bytes);
  EXPECT_TRUE(gpu_test::bitwise_equal(back, host));
  cuda.release(a, bytes);
  cuda.release(b, bytes);
}

TEST(CudaBackend, FillAndStridedCopyMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  const DeviceBackend& cpu = backend_for(Device::cpu());
  const DeviceBackend& cuda = backend_for(Device::cuda(0));
  // Fill the middle of a poisoned buffer.
  std::vector<float> expected(64, gpu_test::kGapSentinel);
  cpu.fill(expected.data() + 5, 40, 2.25f);
  float* d = static_cast<float*>(cuda.allocate(64 * sizeof(float)));
  const std::vector<float> poison(64, gpu_test::kGapSentinel);
  cuda.copy_from_host(d, poison.data(), 64 * sizeof(float));
  cuda.fill(d + 5, 40, 2.25f);
  std::vector<float> actual(64);
  cuda.copy_to_host(actual.data(), d, 64 * sizeof(float));
  EXPECT_TRUE(gpu_test::bitwise_equal(actual, expected));

  // A [4, 3, 5] block read with permuted strides into rows of 8 (the gaps keep the sentinel).
  const std::vector<float> src = gpu_test::uniform(60, 2);
  const int64_t shape[] = {4, 3, 5};
  const int64_t src_strides[] = {1, 20, 4};     // any order of the dense [3, 5, 4] source
  const int64_t dst_strides[] = {24, 8, 1};
  std::vector<float> want(96, gpu_test::kGapSentinel);
  cpu.strided_copy(3, shape, want.data(), dst_strides, src.data(), src_strides, sizeof(float));
  float* d_src = static_cast<float*>(cuda.allocate(60 * sizeof(float)));
  float* d_dst = static_cast<float*>(cuda.allocate(96 * sizeof(float)));
  cuda.copy_from_host(d_src, src.data(), 60 * sizeof(float));
  const std::vector<float> poison96(96, gpu_test::kGapSentinel);
  cuda.copy_from_host(d_dst, poison96.data(), 96 * sizeof(float));
  cuda.strided_copy(3, shape, d_dst, dst_strides, d_src, src_strides, sizeof(float));
  std::vector<float> got(96);
  cuda.copy_to_host(got.data(), d_dst, 96 * sizeof(float));
  EXPECT_TRUE(gpu_test::bitwise_equal(got, want));
  cuda.release(d, 64 * sizeof(float));
  cuda.release(d_src, 60 * sizeof(float));
  cuda.release(d_dst, 96 * sizeof(float));
}

// bf16 strided copies move the 2-byte elements' bits (NaN payloads, -0 and subnormals among them): a
// permuted [4, 3, 5] block into rows of 8 (the strided-copy kernel) and a row-strided [3, 5] block into
// rows of 7 (the conversion kernel); the gaps keep their sentinel.
TEST(CudaBackend, Bf16StridedCopiesMoveTheBitsAsTheCpu) {
  SKIP_WITHOUT_CUDA();
  const DeviceBackend& cpu = backend_for(Device::cpu());
  const DeviceBackend& cuda = backend_for(Device::cuda(0));
  constexpr uint16_t kSentinel = 0xBEEF;
  std::vector<uint16_t> src(60);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(i * 2731u + 17u);
  src[3] = 0x7FC1, src[7] = 0x8000, src[11] = 0x0001;  // a NaN with a payload, -0, a subnormal
  struct Case {
    std::vector<int64_t> shape, src_strides, dst_strides;
    size_t dst_elements;
  };
  const Case cases[] = {{{4, 3, 5}, {1, 20, 4}, {24, 8, 1}, 96}, {{3, 5}, {5, 1}, {7, 1}, 21}};
  uint16_t* d_src = static_cast<uint16_t*>(cuda.allocate(src.size() * 2));
  cuda.copy_from_host(d_src, src.data(), src.size() * 2);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.shape.size());
    const int ndim = static_cast<int>(c.shape.size());
    std::vector<uint16_t> want(c.dst_elements, kSentinel), got(c.dst_elements, 0);
    cpu.strided_copy(ndim, c.shape.data(), want.data(), c.dst_strides.data(), src.data(), c.src_strides.data(), 2);
    uint16_t* d_dst = static_cast<uint16_t*>(cuda.allocate(c.dst_elements * 2));
    const std::vector<uint16_t> poison(c.dst_elements, kSentinel);
    cuda.copy_from_host(d_dst, poison.data(), c.dst_elements * 2);
    cuda.strided_copy(ndim, c.shape.data(), d_dst, c.dst_strides.data(), d_src, c.src_strides.data(), 2);
    cuda.copy_to_host(got.data(), d_dst, c.dst_elements * 2);
    EXPECT_EQ(got, want);
    cuda.release(d_dst, c.dst_elements * 2);
  }
  cuda.release(d_src, src.size() * 2);
}

TEST(CudaBackend, TensorsOnTheDeviceMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  Tensor host = Tensor::from_vector({3, 4}, gpu_test::uniform(12, 3));
  Tensor device = host.to(Device::cuda(0));
  Tensor column_block = device.slice(1, 1, 3);
  column_block.fill_(-0.5f);
  host.slice(1, 1, 3).fill_(-0.5f);
  EXPECT_TRUE(gpu_test::bitwise_equal(device.to_vector(), host.to_vector()));
  EXPECT_TRUE(gpu_test::bitwise_equal(device.slice(0, 1, 3).contiguous().to_vector(),
                                      host.slice(0, 1, 3).contiguous().to_vector()));
  Tensor pinned = Tensor::empty_pinned({3, 4});
  EXPECT_TRUE(pinned.storage()->pinned());
  pinned.copy_from(device);
  EXPECT_TRUE(gpu_test::bitwise_equal(pinned.to_vector(), host.to_vector()));
}

TEST(CudaBackend, MemoryStatsFollowAllocations) {
  SKIP_WITHOUT_CUDA();
  const Device cuda = Device::cuda(0);
  device_synchronize(cuda);
  reset_device_memory_peak(cuda);
  const int64_t before = device_memory_stats(cuda).in_use_bytes;
  {
    Tensor big = Tensor::zeros({1 << 20}, cuda);  // 4 MiB
    EXPECT_GE(device_memory_stats(cuda).in_use_bytes, before + (4 << 20));
    EXPECT_GE(device_memory_stats(cuda).cached_bytes, device_memory_stats(cuda).in_use_bytes);
  }
  EXPECT_EQ(device_memory_stats(cuda).in_use_bytes, before);
  EXPECT_GE(device_memory_stats(cuda).peak_bytes, before + (4 << 20));
  reset_device_memory_peak(cuda);
  EXPECT_EQ(device_memory_stats(cuda).peak_bytes, before);
  empty_device_cache(cuda);
  const auto info = device_runtime_info(cuda);
  ASSERT_EQ(info.size(), 4u);
  EXPECT_EQ(info[0].first, "cuda_runtime");
  EXPECT_EQ(info[2].first, "tf32");
  EXPECT_EQ(info[3].first, "conv_algo_search");
}

// A tensor the device cannot hold: engine::DeviceOutOfMemory naming the tensor, which
// is_device_out_of_memory recognises (the graph step's retry and bench's "max batch" depend on it).
TEST(CudaBackend, TensorOutOfMemoryIsRecognisedAndNamesTheTensor) {
  SKIP_WITHOUT_CUDA();
  try {
    const Tensor huge = Tensor::empty({int64_t(1) << 48}, Device::cuda(0));  // 1 PiB of floats
    FAIL() << "a 1 PiB tensor was allocated";
  } catch (const DeviceOutOfMemory& e) {
    EXPECT_TRUE(is_device_out_of_memory(e));
    EXPECT_NE(std::string(e.what()).find("allocating Tensor[281474976710656]"), std::string::npos) << e.what();
  }
  const Tensor after = Tensor::zeros({16}, Device::cuda(0));  // the device still works
  EXPECT_EQ(after.to_vector(), std::vector<float>(16, 0.0f));
}

}  // namespace
