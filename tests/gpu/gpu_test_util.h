// Helpers for the GPU tests (tests/gpu/test_*.cpp): random host data that is never zero, row-strided
// matrices whose gaps are poisoned, device buffers from the caching allocator, and a comparison
// |actual - expected| <= atol + rtol |expected| that reports the worst element and treats NaN (an
// element nobody wrote: outputs are poisoned with NaN before every run) as a failure.
//
// Every GPU test starts with SKIP_WITHOUT_CUDA(): without a device (or without the CUDA backend in
// this build) it skips with the reason, so CI without a GPU stays green.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "support/compare.h"
#include "support/random_values.h"
#ifdef ENGINE_WITH_CUDA
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"
#endif

#define SKIP_WITHOUT_CUDA()         \
  if (!engine::cuda_available())    \
  GTEST_SKIP() << "no CUDA device: " << engine::probe_devices().reason

// The same kernel call on both backends, as the two callables a comparison takes (CUDA first):
//   CUDA_AND_CPU((const float* x, const float*, float* y), relu_forward({x, R, C, L}, {y, R, C, L}))
// is [&](params) { kernels::cuda::relu_forward(...); }, [&](params) { kernels::cpu::relu_forward(...); }.
#define CUDA_AND_CPU(params, ...) \
  [&] params { kernels::cuda::__VA_ARGS__; }, [&] params { kernels::cpu::__VA_ARGS__; }

namespace gpu_test {

constexpr float kNaN = test_support::kPoison;
// Written into the gaps of output matrices: a kernel that writes a gap changes it.
constexpr float kGapSentinel = -12345.5f;

// Uniform in [low, high).
using test_support::uniform;

// Uniform in +-[min_abs, max_abs]: never zero, never close to it.
inline std::vector<float> away_from_zero(size_t n, uint64_t seed, float min_abs = 0.1f,
                                         float max_abs = 1.0f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> magnitude(min_abs, max_abs);
  std::bernoulli_distribution negative(0.5);
  std::vector<float> v(n);
  for (float& x : v) x = negative(gen) ? -magnitude(gen) : magnitude(gen);
  return v;
}

// A [rows, cols] matrix stored with row stride ld: `dense` (rows*cols values) in the first cols of each
// row, `gap` in the rest.
inline std::vector<float> strided(const std::vector<float>& dense, int64_t rows, int64_t cols,
                                  int64_t ld, float gap) {
  std::vector<float> out(size_t(rows * ld), gap);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(r * ld + c)] = dense[size_t(r * cols + c)];
  return out;
}

// The first cols of every row of a row-strided matrix, densely.
inline std::vector<float> dense_part(const std::vector<float>& m, int64_t rows, int64_t cols,
                                     int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(r * cols + c)] = m[size_t(r * ld + c)];
  return out;
}

using test_support::same_bits;

// The gaps (columns [cols, ld) of every row) are bitwise unchanged from `before`.
inline ::testing::AssertionResult gaps_untouched(const std::vector<float>& after,
                                                 const std::vector<float>& before, int64_t rows,
                                                 int64_t cols, int64_t ld) {
  if (after.size() != before.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < ld; ++c) {
      const size_t i = size_t(r * ld + c);
      if (!same_bits(after[i], before[i]))
        return ::testing::AssertionFailure() << "gap element (row " << r << ", col " << c
                                             << ") was written: " << after[i];
    }
  return ::testing::AssertionSuccess();
}

// |actual - expected| <= atol + rtol |expected| everywhere (equal infinities pass; NaN fails):
// test_support::allclose under the name these tests know.
inline ::testing::AssertionResult close(const std::vector<float>& actual,
                                        const std::vector<float>& expected, double atol,
                                        double rtol) {
  return test_support::allclose(actual, expected, atol, rtol);
}

inline ::testing::AssertionResult bitwise_equal(const std::vector<float>& a,
                                                const std::vector<float>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < a.size(); ++i)
    if (!same_bits(a[i], b[i]))
      return ::testing::AssertionFailure()
             << "element " << i << " differs between runs: " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

inline double max_abs(const std::vector<float>& v) { return test_support::max_abs(v); }

#ifdef ENGINE_WITH_CUDA
// Device memory from the caching allocator holding a copy of a host vector.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<float>& host) : size_(host.size()) {
    ptr_ = static_cast<float*>(kernels::cuda::allocate(bytes(), "test buffer"));
    upload(host);
  }
  explicit DeviceBuffer(size_t size, float value = kNaN)
      : DeviceBuffer(std::vector<float>(size, value)) {}
  ~DeviceBuffer() { kernels::cuda::release(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* get() const { return ptr_; }
  size_t size() const { return size_; }
  void upload(const std::vector<float>& host) {
    if (host.size() != size_) throw std::runtime_error("DeviceBuffer::upload: size mismatch");
    kernels::cuda::copy_host_to_device(ptr_, host.data(), bytes());
  }
  // The copy is ordered after every kernel queued on the kernels' stream.
  std::vector<float> download() const {
    std::vector<float> host(size_);
    kernels::cuda::copy_device_to_host(host.data(), ptr_, bytes());
    return host;
  }

 private:
  size_t bytes() const { return size_ * sizeof(float); }
  float* ptr_ = nullptr;
  size_t size_ = 0;
};

// Restores the context's switches at the end of a test.
class SwitchesGuard {
 public:
  SwitchesGuard()
      : tf32_(kernels::cuda::allow_tf32()),
        deterministic_(kernels::cuda::deterministic()),
        limit_(kernels::cuda::conv_workspace_limit()) {}
  ~SwitchesGuard() {
    kernels::cuda::set_allow_tf32(tf32_);
    kernels::cuda::set_deterministic(deterministic_);
    kernels::cuda::set_conv_workspace_limit(limit_);
  }

 private:
  bool tf32_, deterministic_;
  size_t limit_;
};
#endif

}  // namespace gpu_test
