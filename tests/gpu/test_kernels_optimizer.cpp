// GPU fused optimizer updates (kernels/cuda/optimizer.cu) against the CPU reference
// (kernels/cpu/optimizer.cpp).
// Tolerances (atol + rtol |ref|):
//   Adam / SGD parameters and state (float, the GPU may fuse multiply-adds): 1e-7 + 1e-5 |ref|
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gpu_test_util.h"
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
                      AdamCase{"keras_decoupled", kernels::AdamConvention::keras, 0.004f, true, 7},
                      // --weight-decay's decay large enough (lr * wd = 5e-4) to stand above the tolerance
                      AdamCase{"adamw_strong", kernels::AdamConvention::pytorch, 0.5f, true, 2},
                      AdamCase{"keras_decoupled_strong", kernels::AdamConvention::keras, 0.5f, true, 2}),
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
    test_support::case_name<SgdCase>);

}  // namespace

#else

TEST(CudaOptimizer, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
