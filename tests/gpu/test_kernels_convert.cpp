// GPU conversion kernel (kernels/cuda/convert.cu) against the CPU's (kernels/cpu/convert.cpp), bit for
// bit: f32 -> bf16 on every kind of f32 (ties, NaN payloads, infinities, subnormals, overflow, random
// patterns), bf16 -> f32 on all 65536 bf16 patterns, and the same-type copies; row-strided operands
// whose output gaps hold a sentinel that must survive. Then the tensor level: Tensor::to(DType) on a
// CUDA tensor gives the CPU's bits, a bf16 tensor moves between the devices unchanged, and bf16 channel
// slices copy (engine/backend_cuda.cpp: strided copies of 2-byte elements) as on the CPU.
// Exact (0 tolerance) everywhere: both backends round with the one function of kernels/bf16.h.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include "engine/tensor.h"
#include "gpu_test_util.h"
#include "kernels/convert.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using kernels::DType;

// Device memory holding a copy of a host vector of raw patterns, read back with download().
template <typename Bits>
class RawBuffer {
 public:
  explicit RawBuffer(const std::vector<Bits>& host) : size_(host.size()) {
    ptr_ = kernels::cuda::allocate(bytes(), "convert test buffer");
    kernels::cuda::copy_host_to_device(ptr_, host.data(), bytes());
  }
  ~RawBuffer() { kernels::cuda::release(ptr_); }
  RawBuffer(const RawBuffer&) = delete;
  RawBuffer& operator=(const RawBuffer&) = delete;
  void* get() const { return ptr_; }
  std::vector<Bits> download() const {
    std::vector<Bits> host(size_);
    kernels::cuda::copy_device_to_host(host.data(), ptr_, bytes());
    return host;
  }

 private:
  size_t bytes() const { return size_ * sizeof(Bits); }
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// f32 patterns: the hard cases first, then random ones, gaps (columns [cols, ld_in)) filled with NaN.
std::vector<uint32_t> f32_patterns(int64_t rows, int64_t cols, int64_t ld, uint32_t seed) {
  const std::vector<uint32_t> special = {0x3F808000u, 0x3F818000u, 0xBF808000u, 0x3FFF8000u, 0x7F800001u,
                                         0xFF812345u, 0x7FC00000u, 0x7FFFFFFFu, 0x7F800000u, 0xFF800000u,
                                         0x00000001u, 0x00008000u, 0x00018000u, 0x007FFFFFu, 0x807FFFFFu,
                                         0x7F7F7FFFu, 0x7F7F8000u, 0x7F7FFFFFu, 0x80000000u, 0x00000000u};
  std::mt19937 rng(seed);
  std::vector<uint32_t> v(size_t(rows * ld), 0x7FC00000u);
  size_t k = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c, ++k) v[size_t(r * ld + c)] = k < special.size() ? special[k] : uint32_t(rng());
  return v;
}

// Runs convert on both backends from the same input and output start, and expects the same bits.
template <typename InBits, typename OutBits>
void expect_same_bits(const std::vector<InBits>& in, DType in_type, DType out_type, int64_t rows, int64_t cols,
                      int64_t ld_in, int64_t ld_out, OutBits gap) {
  const std::vector<OutBits> start(size_t(rows * ld_out), gap);
  RawBuffer<InBits> d_in(in);
  RawBuffer<OutBits> d_out(start);
  kernels::cuda::convert({d_in.get(), rows, cols, ld_in, in_type}, {d_out.get(), rows, cols, ld_out, out_type});
  const std::vector<OutBits> got = d_out.download();
  std::vector<OutBits> expected = start;
  kernels::cpu::convert({in.data(), rows, cols, ld_in, in_type}, {expected.data(), rows, cols, ld_out, out_type});
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i], expected[i]) << "element " << i << " (row " << int64_t(i) / ld_out << ", col "
                                   << int64_t(i) % ld_out << ")";
}

struct ConvertShape {
  int64_t rows, cols, ld_in, ld_out;
};

void PrintTo(const ConvertShape& s, std::ostream* os) {
  *os << "[" << s.rows << ", " << s.cols << "] ld " << s.ld_in << " -> " << s.ld_out;
}

class CudaConvert : public ::testing::TestWithParam<ConvertShape> {};

TEST_P(CudaConvert, F32ToBf16MatchesTheCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const ConvertShape s = GetParam();
  expect_same_bits<uint32_t, uint16_t>(f32_patterns(s.rows, s.cols, s.ld_in, 1), DType::f32, DType::bf16, s.rows,
                                       s.cols, s.ld_in, s.ld_out, 0xDEAD);
}

TEST_P(CudaConvert, SameTypeCopiesMatchTheCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const ConvertShape s = GetParam();
  expect_same_bits<uint32_t, uint32_t>(f32_patterns(s.rows, s.cols, s.ld_in, 2), DType::f32, DType::f32, s.rows,
                                       s.cols, s.ld_in, s.ld_out, 0xDEADBEEFu);
  std::vector<uint16_t> bf16(size_t(s.rows * s.ld_in));
  std::mt19937 rng(3);
  for (uint16_t& b : bf16) b = uint16_t(rng());
  expect_same_bits<uint16_t, uint16_t>(bf16, DType::bf16, DType::bf16, s.rows, s.cols, s.ld_in, s.ld_out, 0xDEAD);
  expect_same_bits<uint16_t, uint32_t>(bf16, DType::bf16, DType::f32, s.rows, s.cols, s.ld_in, s.ld_out,
                                       0xDEADBEEFu);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaConvert,
                         ::testing::Values(ConvertShape{4, 8, 8, 8}, ConvertShape{7, 5, 9, 6},
                                           ConvertShape{1, 33, 33, 40}, ConvertShape{300, 130, 131, 133}),
                         [](const ::testing::TestParamInfo<ConvertShape>& info) {
                           const ConvertShape s = info.param;
                           return std::to_string(s.rows) + "x" + std::to_string(s.cols) + "_ld" +
                                  std::to_string(s.ld_in) + "_" + std::to_string(s.ld_out);
                         });

TEST(CudaConvertAll, EveryBf16PatternWidensAsOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
  expect_same_bits<uint16_t, uint32_t>(all, DType::bf16, DType::f32, 256, 256, 256, 256, 0u);
}

TEST(CudaConvertAll, SampledF32PatternsRoundAsOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  // Every 4099th f32 pattern (all exponents, varied low bits) and, for every bf16 pattern, the f32
  // patterns around its rounding boundaries.
  std::vector<uint32_t> patterns;
  for (uint64_t p = 0; p <= 0xFFFFFFFFu; p += 4099) patterns.push_back(uint32_t(p));
  for (uint32_t b = 0; b <= 0xFFFFu; ++b)
    for (uint32_t low : {0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu}) patterns.push_back(b << 16 | low);
  const int64_t cols = 1000, rows = int64_t(patterns.size()) / cols;
  patterns.resize(size_t(rows * cols));
  expect_same_bits<uint32_t, uint16_t>(patterns, DType::f32, DType::bf16, rows, cols, cols, cols, 0);
}

TEST(CudaConvertTensor, ToDtypeOnTheDeviceMatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  using engine::Device;
  using engine::Tensor;
  const std::vector<uint32_t> bits = f32_patterns(6, 50, 50, 4);
  std::vector<float> values(bits.size());
  std::memcpy(values.data(), bits.data(), bits.size() * 4);
  const Tensor host = Tensor::from_vector({6, 5, 10}, values);
  const Tensor on_cpu = host.to(DType::bf16);
  const Tensor on_gpu = host.to(Device::cuda()).to(DType::bf16);
  EXPECT_EQ(on_gpu.dtype(), DType::bf16);
  EXPECT_TRUE(on_gpu.device().is_cuda());
  const Tensor back = on_gpu.to(Device::cpu());
  ASSERT_EQ(back.dtype(), DType::bf16);
  EXPECT_EQ(std::memcmp(back.raw_data(), on_cpu.raw_data(), size_t(on_cpu.numel()) * 2), 0);
  // And back to f32 on the device: exact, as on the CPU.
  const std::vector<float> widened_gpu = on_gpu.to(DType::f32).to_vector();
  const std::vector<float> widened_cpu = on_cpu.to(DType::f32).to_vector();
  EXPECT_TRUE(gpu_test::bitwise_equal(widened_gpu, widened_cpu));
  // to_vector, fill_ and from_vector of a device bf16 tensor.
  EXPECT_TRUE(gpu_test::bitwise_equal(on_gpu.to_vector(), widened_cpu));
  const Tensor filled = Tensor::empty({4, 3}, Device::cuda(), DType::bf16);
  filled.fill_(1.0f + 3.0f / 256.0f);  // a tie: up to even
  EXPECT_EQ(filled.to_vector(), std::vector<float>(12, 1.0f + 2.0f / 128.0f));
  const Tensor made = Tensor::from_vector({2}, {0.1f, -7.3f}, Device::cuda(), DType::bf16);
  EXPECT_EQ(made.to_vector(), Tensor::from_vector({2}, {0.1f, -7.3f}, Device::cpu(), DType::bf16).to_vector());
}

TEST(CudaConvertTensor, Bf16ChannelSlicesCopyAsOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  using engine::Device;
  using engine::Tensor;
  const std::vector<float> values = gpu_test::uniform(2 * 3 * 5 * 8, 6);
  std::vector<std::vector<float>> results;
  for (Device device : {Device::cpu(), Device::cuda()}) {
    const Tensor buffer = Tensor::from_vector({2, 3, 5, 8}, values, Device::cpu(), DType::bf16).to(device);
    const Tensor slice = buffer.slice(3, 2, 6);         // a channel slice: row-strided
    const Tensor dense = slice.clone();                 // strided -> dense
    buffer.slice(3, 4, 8).copy_from(dense);              // dense -> strided
    buffer.slice(3, 0, 1).fill_(-1.5f);                 // a strided fill
    std::vector<float> out = buffer.to_vector();
    const std::vector<float> sliced = slice.to(Device::cpu()).to_vector();
    out.insert(out.end(), sliced.begin(), sliced.end());
    results.push_back(out);
  }
  EXPECT_TRUE(gpu_test::bitwise_equal(results[1], results[0]));
}

}  // namespace

#else

TEST(CudaConvert, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif  // ENGINE_WITH_CUDA
