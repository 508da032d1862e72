// GPU binary cross-entropy (kernels/cuda/loss.cu) and fused optimizer updates
// (kernels/cuda/optimizer.cu) against the CPU reference (kernels/cpu/loss.cpp, optimizer.cpp).
// Tolerances (atol + rtol |ref|):
//   BCE loss (double, reduction order differs):  1e-12 relative
//   BCE gradient (double maths, float result):   1e-10 + 1e-6 |ref|
//   Adam / SGD parameters and state (float, the GPU may fuse multiply-adds): 1e-7 + 1e-5 |ref|
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/loss.h"
#include "kernels/optimizer.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

struct BceCase {
  const char* name;
  int64_t n;
  bool weights;
};

void PrintTo(const BceCase& c, std::ostream* os) { *os << c.name; }

class CudaBce : public ::testing::TestWithParam<BceCase> {};

TEST_P(CudaBce, ForwardBackward) {
  SKIP_WITHOUT_CUDA();
  const BceCase c = GetParam();
  const size_t n = size_t(c.n);
  std::vector<float> logits = away_from_zero(n, 71, 0.05f, 6.0f);
  // Extreme logits where the naive formula overflows or cancels.
  const float extremes[] = {30.0f, -30.0f, 1e4f, -1e4f, 88.0f, -88.0f};
  for (size_t i = 0; i < std::min<size_t>(n, 6); ++i) logits[i] = extremes[i];
  std::vector<float> targets = uniform(n, 72, 0.0f, 1.0f);  // soft targets
  for (size_t i = 0; i < n; i += 3) targets[i] = float(i % 2);  // and hard ones
  const std::vector<float> weights = uniform(n, 73, 0.25f, 2.0f);
  const float* w_host = c.weights ? weights.data() : nullptr;

  DeviceBuffer z(logits), t(targets), w(weights);
  const float* w_dev = c.weights ? w.get() : nullptr;
  const double cpu = kernels::cpu::bce_with_logits_forward(c.n, logits.data(), targets.data(), w_host);
  const double gpu = kernels::cuda::bce_with_logits_forward(c.n, z.get(), t.get(), w_dev);
  const double again = kernels::cuda::bce_with_logits_forward(c.n, z.get(), t.get(), w_dev);
  EXPECT_TRUE(std::isfinite(gpu));
  EXPECT_NEAR(gpu, cpu, 1e-12 * std::fabs(cpu));
  EXPECT_EQ(std::memcmp(&gpu, &again, sizeof(double)), 0) << "the loss differs between runs";

  const std::vector<float> prior = away_from_zero(n, 74);
  for (bool accumulate : {false, true}) {
    const std::vector<float> start = accumulate ? prior : std::vector<float>(n, kNaN);
    std::vector<float> ref = start;
    kernels::cpu::bce_with_logits_backward(c.n, logits.data(), targets.data(), w_host, 0.75f,
                                           ref.data(), accumulate);
    DeviceBuffer dz(start);
    kernels::cuda::bce_with_logits_backward(c.n, z.get(), t.get(), w_dev, 0.75f, dz.get(), accumulate);
    EXPECT_TRUE(close(dz.download(), ref, 1e-10, 1e-6)) << "accumulate " << accumulate;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, CudaBce,
    ::testing::Values(BceCase{"n1", 1, false}, BceCase{"batch32_weighted", 32, true},
                      BceCase{"batch7", 7, false},
                      BceCase{"n100003_weighted", 100003, true}),
    [](const ::testing::TestParamInfo<BceCase>& info) { return std::string(info.param.name); });

TEST(CudaBceEdges, EmptyBatch) {
  SKIP_WITHOUT_CUDA();
  DeviceBuffer dz(std::vector<float>(2, kGapSentinel));
  EXPECT_EQ(kernels::cuda::bce_with_logits_forward(0, dz.get(), dz.get(), nullptr), 0.0);
  kernels::cuda::bce_with_logits_backward(0, dz.get(), dz.get(), nullptr, 1.0f, dz.get(), false);
  EXPECT_TRUE(bitwise_equal(dz.download(), std::vector<float>(2, kGapSentinel)));
}

// --- Optimizers -------------------------------------------------------------------------------------

struct AdamCase {
  const char* name;
  kernels::AdamConvention convention;
  float weight_decay;
  bool decoupled;
  int64_t step;
};

void PrintTo(const AdamCase& c, std::ostream* os) { *os << c.name; }

class CudaAdam : public ::testing::TestWithParam<AdamCase> {};

TEST_P(CudaAdam, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const AdamCase c = GetParam();
  const int64_t n = 100003;  // odd: no vector-width assumptions
  const std::vector<float> p0 = away_from_zero(size_t(n), 81);
  const std::vector<float> g0 = away_from_zero(size_t(n), 82, 1e-4f, 1.0f);
  const std::vector<float> m0 = uniform(size_t(n), 83, -0.1f, 0.1f);
  const std::vector<float> v0 = uniform(size_t(n), 84, 1e-8f, 1e-2f);
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
  EXPECT_TRUE(close(dp.download(), p, 1e-7, 1e-5)) << "params";
  EXPECT_TRUE(close(dm.download(), m, 1e-7, 1e-5)) << "m";
  EXPECT_TRUE(close(dv.download(), v, 1e-7, 1e-5)) << "v";
}

INSTANTIATE_TEST_SUITE_P(
    Conventions, CudaAdam,
    ::testing::Values(AdamCase{"pytorch", kernels::AdamConvention::pytorch, 0.0f, false, 1},
                      AdamCase{"keras", kernels::AdamConvention::keras, 0.0f, false, 1},
                      AdamCase{"pytorch_l2", kernels::AdamConvention::pytorch, 0.01f, false, 5},
                      AdamCase{"adamw", kernels::AdamConvention::pytorch, 0.01f, true, 1000},
                      AdamCase{"keras_decoupled", kernels::AdamConvention::keras, 0.004f, true, 7}),
    [](const ::testing::TestParamInfo<AdamCase>& info) { return std::string(info.param.name); });

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
    kernels::cpu::sgd_update(n, p.data(), g0.data(), buffer ? b.data() : nullptr, h);
    kernels::cuda::sgd_update(n, dp.get(), dg.get(), buffer ? db.get() : nullptr, h);
  }
  EXPECT_TRUE(close(dp.download(), p, 1e-7, 1e-5)) << "params";
  // Without momentum the buffer is neither read nor written.
  EXPECT_TRUE(close(db.download(), b, 1e-7, 1e-5)) << "momentum buffer";
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CudaSgd,
    ::testing::Values(SgdCase{"plain", 0.0f, 0.0f, false}, SgdCase{"plain_wd", 0.0f, 1e-4f, false},
                      SgdCase{"momentum", 0.9f, 0.0f, false},
                      SgdCase{"nesterov_wd", 0.9f, 5e-4f, true}),
    [](const ::testing::TestParamInfo<SgdCase>& info) { return std::string(info.param.name); });

}  // namespace

#else

TEST(CudaLossOptim, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
