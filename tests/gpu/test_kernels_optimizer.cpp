// GPU fused optimizer updates (kernels/cuda/optimizer.cu) against the CPU reference
// (kernels/cpu/optimizer.cpp).
// Tolerances (atol + rtol |ref|):
//   Adam / SGD parameters and state: 3e-7 |ref| (about two ulps; the CUDA kernels round every operation
//     as the CPU does, so they should agree bit for bit), and Adam's update p - p0 within 1e-5 of the CPU's
//     (the parameters alone would hide an update a few percent off)
// The fused bf16 working copy: bit for bit the rounding of the GPU's own updated parameters, and bit for
// bit the CPU's copy wherever the two backends' f32 parameters agree (elsewhere within one bf16 ulp);
// a skipped update writes nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/bf16.h"
#include "kernels/optimizer.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

struct AdamCase {
  const char* name;
  kernels::AdamConvention convention;
  float weight_decay;
  bool decoupled;
  int64_t step;
  // Scales the gradients and m (v by its square). At 1e-7, sqrt(v) lies around eps (1e-8 .. 1e-7): the
  // epsilon's place in the denominator (PyTorch's after the bias correction, Keras's before it) decides
  // the update, which larger gradients hide below the tolerance.
  float grad_scale = 1.0f;
};

void PrintTo(const AdamCase& c, std::ostream* os) { *os << c.name; }

class CudaAdam : public ::testing::TestWithParam<AdamCase> {};

TEST_P(CudaAdam, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const AdamCase c = GetParam();
  const int64_t n = 100003;  // odd: no vector-width assumptions
  const std::vector<float> p0 = away_from_zero(size_t(n), 81);
  const float s = c.grad_scale;
  const std::vector<float> g0 = away_from_zero(size_t(n), 82, 1e-4f * s, s);
  const std::vector<float> m0 = uniform(size_t(n), 83, -0.1f * s, 0.1f * s);
  const std::vector<float> v0 = uniform(size_t(n), 84, 1e-8f * s * s, 1e-2f * s * s);
  kernels::AdamHyper h;
  h.lr = 1e-3f;
  h.convention = c.convention;
  h.eps = c.convention == kernels::AdamConvention::keras ? 1e-7f : 1e-8f;
  h.weight_decay = c.weight_decay;
  h.decoupled_weight_decay = c.decoupled;

  std::vector<float> p = p0, m = m0, v = v0;
  DeviceBuffer dp(p0), dg(g0), dm(m0), dv(v0);
  // Three consecutive steps from `step`: the bias corrections change each time.
  for (int64_t t = c.step; t < c.step + 3; ++t) {
    kernels::cpu::adam_update(n, p.data(), g0.data(), m.data(), v.data(), t, h);
    kernels::cuda::adam_update(n, dp.get(), dg.get(), dm.get(), dv.get(), t, h);
  }
  const std::vector<float> p_gpu = dp.download();
  EXPECT_TRUE(close(p_gpu, p, 0.0, 3e-7)) << "params";
  EXPECT_TRUE(close(dm.download(), m, 1e-12 * s, 3e-7)) << "m";
  EXPECT_TRUE(close(dv.download(), v, 1e-15 * s * s, 3e-7)) << "v";
  std::vector<float> update_gpu(p.size()), update_cpu(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    update_gpu[i] = p_gpu[i] - p0[i];
    update_cpu[i] = p[i] - p0[i];
  }
  EXPECT_TRUE(close(update_gpu, update_cpu, 2.5e-7, 1e-5)) << "the update p - p0 (atol: two ulps of p)";
}

INSTANTIATE_TEST_SUITE_P(
    Conventions, CudaAdam,
    ::testing::Values(AdamCase{"pytorch", kernels::AdamConvention::pytorch, 0.0f, false, 1},
                      AdamCase{"keras", kernels::AdamConvention::keras, 0.0f, false, 1},
                      AdamCase{"pytorch_l2", kernels::AdamConvention::pytorch, 0.01f, false, 5},
                      AdamCase{"adamw", kernels::AdamConvention::pytorch, 0.01f, true, 1000},
                      AdamCase{"keras_decoupled", kernels::AdamConvention::keras, 0.004f, true, 7},
                      // --weight-decay's decay large enough (lr * wd = 5e-4) to stand above the tolerance
                      AdamCase{"adamw_strong", kernels::AdamConvention::pytorch, 0.5f, true, 2},
                      AdamCase{"keras_decoupled_strong", kernels::AdamConvention::keras, 0.5f, true, 2},
                      // gradients small enough that eps is a large part of the denominator
                      AdamCase{"pytorch_eps", kernels::AdamConvention::pytorch, 0.0f, false, 1, 1e-7f},
                      AdamCase{"keras_eps", kernels::AdamConvention::keras, 0.0f, false, 3, 1e-7f}),
    test_support::case_name<AdamCase>);

struct SgdCase {
  const char* name;
  float momentum, weight_decay;
  bool nesterov;
};

void PrintTo(const SgdCase& c, std::ostream* os) { *os << c.name; }

class CudaSgd : public ::testing::TestWithParam<SgdCase> {};

TEST_P(CudaSgd, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const SgdCase c = GetParam();
  const int64_t n = 65537;
  const std::vector<float> p0 = away_from_zero(size_t(n), 91);
  const std::vector<float> g0 = away_from_zero(size_t(n), 92);
  const std::vector<float> b0 = uniform(size_t(n), 93, -0.5f, 0.5f);
  kernels::SgdHyper h;
  h.lr = 0.05f;
  h.momentum = c.momentum;
  h.weight_decay = c.weight_decay;
  h.nesterov = c.nesterov;
  const bool buffer = c.momentum != 0.0f;
  std::vector<float> p = p0, b = b0;
  DeviceBuffer dp(p0), dg(g0), db(b0);
  for (int step = 0; step < 3; ++step) {
    // The buffer is passed also without momentum, where it must be neither read nor written.
    kernels::cpu::sgd_update(n, p.data(), g0.data(), b.data(), h);
    kernels::cuda::sgd_update(n, dp.get(), dg.get(), db.get(), h);
  }
  EXPECT_TRUE(close(dp.download(), p, 1e-12, 3e-7)) << "params";
  EXPECT_TRUE(close(db.download(), b, 1e-12, 3e-7)) << "momentum buffer";
  if (!buffer) {
    EXPECT_EQ(db.download(), b0) << "without momentum the buffer is neither read nor written";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CudaSgd,
    ::testing::Values(SgdCase{"plain", 0.0f, 0.0f, false}, SgdCase{"plain_wd", 0.0f, 1e-4f, false},
                      SgdCase{"momentum", 0.9f, 0.0f, false},
                      SgdCase{"nesterov_wd", 0.9f, 5e-4f, true}),
    test_support::case_name<SgdCase>);

// ------------------------------------------------------------------------------------------------
// The bf16 working copy written in the update's pass.

// n bf16 values on the device, held in a float DeviceBuffer of half as many elements (rounded up).
class Bf16DeviceBuffer {
 public:
  explicit Bf16DeviceBuffer(size_t n, uint16_t fill) : n_(n), floats_(pack(std::vector<uint16_t>(n, fill))) {}
  kernels::BFloat16* get() const { return reinterpret_cast<kernels::BFloat16*>(floats_.get()); }
  std::vector<uint16_t> download() const {
    const std::vector<float> packed = floats_.download();
    std::vector<uint16_t> bits(n_);
    std::memcpy(bits.data(), packed.data(), n_ * sizeof(uint16_t));
    return bits;
  }

 private:
  static std::vector<float> pack(const std::vector<uint16_t>& bits) {
    std::vector<float> packed((bits.size() + 1) / 2, 0.0f);
    std::memcpy(packed.data(), bits.data(), bits.size() * sizeof(uint16_t));
    return packed;
  }
  size_t n_;
  DeviceBuffer floats_;
};

std::vector<uint16_t> rounded(const std::vector<float>& p) {
  std::vector<uint16_t> bits;
  for (float x : p) bits.push_back(kernels::bf16_bits_from_f32(x));
  return bits;
}

// The GPU's copy against the rounding of its own parameters and against the CPU's copy.
void expect_copy_matches(const std::vector<uint16_t>& gpu_copy, const std::vector<float>& gpu_p,
                         const std::vector<uint16_t>& cpu_copy, const std::vector<float>& cpu_p) {
  ASSERT_EQ(gpu_copy, rounded(gpu_p)) << "the GPU's copy is the rounding of its parameters";
  size_t agreeing = 0;
  for (size_t i = 0; i < gpu_p.size(); ++i) {
    if (std::memcmp(&gpu_p[i], &cpu_p[i], sizeof(float)) == 0) {
      ++agreeing;
      ASSERT_EQ(gpu_copy[i], cpu_copy[i]) << "element " << i;
    } else {
      ASSERT_LE(std::abs(int(gpu_copy[i]) - int(cpu_copy[i])), 1) << "element " << i;
    }
  }
  EXPECT_GT(agreeing, gpu_p.size() / 2) << "most f32 parameters agree bit for bit";
}

struct FusedCase {
  const char* name;
  bool adam;
  kernels::AdamConvention convention;
  float weight_decay;
  bool decoupled;  // Adam: AdamW; SGD: nesterov
  float momentum;
};

void PrintTo(const FusedCase& c, std::ostream* os) { *os << c.name; }

class CudaFusedBf16Copy : public ::testing::TestWithParam<FusedCase> {};

TEST_P(CudaFusedBf16Copy, MatchesTheCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const FusedCase c = GetParam();
  const int64_t n = 100003;
  const std::vector<float> p0 = away_from_zero(size_t(n), 111);
  const std::vector<float> g0 = away_from_zero(size_t(n), 112, 1e-4f, 1.0f);
  const std::vector<float> m0 = uniform(size_t(n), 113, -0.1f, 0.1f);
  const std::vector<float> v0 = uniform(size_t(n), 114, 1e-8f, 1e-2f);
  kernels::AdamHyper ah;
  ah.lr = 1e-3f;
  ah.convention = c.convention;
  ah.eps = c.convention == kernels::AdamConvention::keras ? 1e-7f : 1e-8f;
  ah.weight_decay = c.weight_decay;
  ah.decoupled_weight_decay = c.decoupled;
  kernels::SgdHyper sh;
  sh.lr = 0.05f;
  sh.momentum = c.momentum;
  sh.weight_decay = c.weight_decay;
  sh.nesterov = c.decoupled;

  std::vector<float> p = p0, m = m0, v = v0;
  std::vector<kernels::BFloat16> cpu_copy(size_t(n), kernels::BFloat16::from_bits(0xDEAD));
  DeviceBuffer dp(p0), dg(g0), dm(m0), dv(v0), skip(std::vector<float>{1.0f});
  Bf16DeviceBuffer gpu_copy(size_t(n), 0xDEAD);
  const auto step = [&](int64_t t, const float* device_skip) {
    if (c.adam) {
      kernels::cuda::adam_update(n, dp.get(), dg.get(), dm.get(), dv.get(), t, ah, device_skip, gpu_copy.get());
    } else {
      kernels::cuda::sgd_update(n, dp.get(), dg.get(), dm.get(), sh, device_skip, gpu_copy.get());
    }
  };
  // A skipped update first: nothing is written, the copy's poison included.
  step(1, skip.get());
  EXPECT_EQ(gpu_copy.download(), std::vector<uint16_t>(size_t(n), 0xDEAD)) << "skipped: the copy is not written";
  EXPECT_EQ(dp.download(), p0) << "skipped: the parameters are not written";
  EXPECT_EQ(dm.download(), m0) << "skipped: the first moment (Adam) or momentum buffer (SGD) is not written";
  EXPECT_EQ(dv.download(), v0) << "skipped: the second moment is not written";
  for (int64_t t = 1; t <= 3; ++t) {
    if (c.adam)
      kernels::cpu::adam_update(n, p.data(), g0.data(), m.data(), v.data(), t, ah, nullptr, cpu_copy.data());
    else
      kernels::cpu::sgd_update(n, p.data(), g0.data(), m.data(), sh, nullptr, cpu_copy.data());
    step(t, nullptr);
    std::vector<uint16_t> cpu_bits;
    for (const kernels::BFloat16& b : cpu_copy) cpu_bits.push_back(b.bits);
    expect_copy_matches(gpu_copy.download(), dp.download(), cpu_bits, p);
  }
  // Skipped again, after updates: the copy stays the rounding of the (unchanged) parameters.
  const std::vector<uint16_t> before = gpu_copy.download();
  const std::vector<float> m_before = dm.download(), v_before = dv.download();
  step(4, skip.get());
  EXPECT_EQ(gpu_copy.download(), before);
  EXPECT_EQ(dm.download(), m_before) << "skipped after updates: the state is not written";
  EXPECT_EQ(dv.download(), v_before) << "skipped after updates: the state is not written";
  EXPECT_EQ(gpu_copy.download(), rounded(dp.download()));
}

INSTANTIATE_TEST_SUITE_P(
    Optimizers, CudaFusedBf16Copy,
    ::testing::Values(FusedCase{"adam_pytorch", true, kernels::AdamConvention::pytorch, 0.0f, false, 0.0f},
                      FusedCase{"adam_keras", true, kernels::AdamConvention::keras, 0.0f, false, 0.0f},
                      FusedCase{"adamw", true, kernels::AdamConvention::pytorch, 0.05f, true, 0.0f},
                      FusedCase{"adamw_keras", true, kernels::AdamConvention::keras, 0.05f, true, 0.0f},
                      FusedCase{"sgd", false, kernels::AdamConvention::pytorch, 0.0f, false, 0.0f},
                      FusedCase{"sgd_nesterov_wd", false, kernels::AdamConvention::pytorch, 1e-3f, true, 0.9f}),
    test_support::case_name<FusedCase>);

}  // namespace

#else

TEST(CudaOptimizer, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
