// CPU BCE-with-logits kernels (kernels/loss.h) against a double-precision reference and central
// finite differences of it.
// Tolerances: |actual - ref| <= atol + rtol * |ref|, stated per check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/loss.h"
#include "test_kernels_common.h"

namespace {

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
namespace cpu = kernels::cpu;

// ------------------------------------------------------------------------------------------------
// BCE with logits.

double bce_reference(const std::vector<float>& z, const std::vector<float>& t,
                     const std::vector<float>* w) {
  double total = 0.0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double s = 1.0 / (1.0 + std::exp(-double(z[i])));
    total += (w ? (*w)[i] : 1.0) * -(t[i] * std::log(s) + (1.0 - t[i]) * std::log(1.0 - s));
  }
  return total / double(z.size());
}

TEST(BceWithLogits, ForwardBackwardMatchReferenceWithWeightsAndSoftTargets) {
  std::mt19937 rng(61);
  const int64_t n = 37;
  const std::vector<float> z = uniform_vector(n, rng, -8.0f, 8.0f);
  const std::vector<float> t = uniform_vector(n, rng, 0.0f, 1.0f);  // soft targets
  const std::vector<float> w = uniform_vector(n, rng, 0.2f, 3.0f);
  for (const std::vector<float>* wp : {static_cast<const std::vector<float>*>(nullptr), &w}) {
    const float* wptr = wp ? wp->data() : nullptr;
    const double loss =
        cpu::bce_with_logits_forward({z.data(), n, 1, 1}, {t.data(), n, 1, 1}, {wptr, n, 1, 1});
    // The naive -[t log s + (1-t) log(1-s)] in double is accurate to ~1e-12 for |z| <= 8.
    EXPECT_TRUE(close(loss, bce_reference(z, t, wp), 1e-10, 1e-10));

    const float dloss = 0.7f;
    for (bool accumulate : {false, true}) {
      std::vector<float> dz = uniform_vector(n, rng, -1.0f, 1.0f);
      const std::vector<float> dz0 = dz;
      cpu::bce_with_logits_backward({z.data(), n, 1, 1}, {t.data(), n, 1, 1}, {wptr, n, 1, 1},
                                    dloss, {dz.data(), n, 1, 1}, accumulate);
      for (int64_t i = 0; i < n; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-double(z[i])));
        const double g = dloss * (wp ? w[i] : 1.0) * (s - t[i]) / n;
        EXPECT_TRUE(close(dz[i], accumulate ? dz0[i] + g : g, 1e-8, 1e-6)) << i;
      }
    }
    // Central differences of the kernel's own double forward (h on a float logit).
    std::vector<float> dz(n);
    cpu::bce_with_logits_backward({z.data(), n, 1, 1}, {t.data(), n, 1, 1}, {wptr, n, 1, 1}, 1.0f,
                                  {dz.data(), n, 1, 1}, false);
    for (int64_t i = 0; i < n; i += 5) {
      std::vector<float> zp = z, zm = z;
      const float h = 1e-2f;
      zp[i] += h;
      zm[i] -= h;
      const double fd = (cpu::bce_with_logits_forward({zp.data(), n, 1, 1}, {t.data(), n, 1, 1},
                                                      {wptr, n, 1, 1}) -
                         cpu::bce_with_logits_forward({zm.data(), n, 1, 1}, {t.data(), n, 1, 1},
                                                      {wptr, n, 1, 1})) /
                        (double(zp[i]) - double(zm[i]));
      // Truncation error ~ h^2 * |l'''| / 6 / N ~ 1e-6.
      EXPECT_TRUE(close(dz[i], fd, 2e-6, 1e-4)) << i;
    }
  }
}

TEST(BceWithLogits, ExtremeLogitsAreFiniteWithTheRightLimits) {
  // (z, t): loss term and gradient (sigmoid(z) - t) for w = 1, N = 1.
  struct Case {
    float z, t;
    double loss, grad;
  };
  const Case cases[] = {
      {100.0f, 1.0f, std::exp(-100.0), -std::exp(-100.0)},  // confident and right
      {100.0f, 0.0f, 100.0, 1.0},                            // confident and wrong
      {-100.0f, 1.0f, 100.0, -1.0},
      {-100.0f, 0.0f, std::exp(-100.0), std::exp(-100.0)},
      {1e4f, 1.0f, 0.0, 0.0},
      {1e4f, 0.0f, 1e4, 1.0},
      {-1e4f, 1.0f, 1e4, -1.0},
      {-1e4f, 0.0f, 0.0, 0.0},
      {1e4f, 0.25f, 0.75e4, 0.75},  // soft target: (1 - t) * z
  };
  for (const Case& k : cases) {
    const double loss =
        cpu::bce_with_logits_forward({&k.z, 1, 1, 1}, {&k.t, 1, 1, 1}, {nullptr, 1, 1, 1});
    EXPECT_TRUE(close(loss, k.loss, 1e-300, 1e-12)) << "z=" << k.z << " t=" << k.t;
    EXPECT_GE(loss, 0.0);
    float dz = 0.0f;
    cpu::bce_with_logits_backward({&k.z, 1, 1, 1}, {&k.t, 1, 1, 1}, {nullptr, 1, 1, 1}, 1.0f,
                                  {&dz, 1, 1, 1}, false);
    // exp(-100) ~ 3.7e-44 is a float denormal: relative accuracy is lost there, hence the atol.
    EXPECT_TRUE(close(dz, k.grad, 1e-44, 1e-6)) << "z=" << k.z << " t=" << k.t;
  }
  // Mean over the batch with weights: (2 * 1e4 + 0.5 * (100 + log1p(exp(-100)))) / 2.
  const float z[] = {1e4f, -100.0f}, t[] = {0.0f, 1.0f}, w[] = {2.0f, 0.5f};
  const double expected = (2e4 + 0.5 * (100.0 + std::log1p(std::exp(-100.0)))) / 2.0;
  EXPECT_TRUE(close(cpu::bce_with_logits_forward({z, 2, 1, 1}, {t, 2, 1, 1}, {w, 2, 1, 1}),
                    expected, 0.0, 1e-12));
  float dz[2];
  cpu::bce_with_logits_backward({z, 2, 1, 1}, {t, 2, 1, 1}, {w, 2, 1, 1}, 1.0f, {dz, 2, 1, 1},
                                false);
  EXPECT_TRUE(close(dz[0], 2.0 * 1.0 / 2.0, 0.0, 1e-7));
  EXPECT_TRUE(close(dz[1], 0.5 * -1.0 / 2.0, 0.0, 1e-7));
  EXPECT_EQ(cpu::bce_with_logits_forward({z, 0, 1, 1}, {t, 0, 1, 1}, {w, 0, 1, 1}), 0.0);
}

}  // namespace
