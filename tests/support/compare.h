// Test support: the one comparison of arrays and the one NaN poison that every test uses.
//
// allclose(actual, expected, atol, rtol) holds when |actual_i - expected_i| <= atol + rtol |expected_i|
// for every i. Equal values pass (equal infinities included); NaN anywhere in `actual` fails, which is
// what makes NaN poison work: outputs are filled with NaN before an op runs, so an element the op never
// wrote stays NaN and fails the comparison. The failure message counts the elements that differ and
// names the worst one (by |error| / tolerance), with its multi-index when a shape is given.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace test_support {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

// "[n, h, w, c]" of flat index i in a row-major shape (or "i" when the shape does not match).
std::string index_str(size_t i, const std::vector<int64_t>& shape);

template <typename Actual, typename Expected>
::testing::AssertionResult allclose(const std::vector<Actual>& actual, const std::vector<Expected>& expected,
                                    double atol, double rtol, const std::vector<int64_t>& shape = {}) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "sizes differ: " << actual.size() << " vs " << expected.size();
  size_t failures = 0, worst = 0;
  double worst_ratio = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
    if (a == e) continue;  // also equal infinities
    const double ratio = std::fabs(a - e) / (atol + rtol * std::fabs(e));
    if (std::isnan(ratio) || ratio > 1.0) {
      const double r = std::isnan(ratio) ? INFINITY : ratio;
      if (failures++ == 0 || r > worst_ratio) worst_ratio = r, worst = i;
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << failures << " of " << actual.size() << " elements differ; worst: element " << index_str(worst, shape)
         << ": " << static_cast<double>(actual[worst]) << " vs expected " << static_cast<double>(expected[worst])
         << " (|error| " << std::fabs(static_cast<double>(actual[worst]) - static_cast<double>(expected[worst]))
         << ", atol " << atol << ", rtol " << rtol << ")";
}

// Tensors (any device, any strides) against host values in row-major order; shapes must agree.
::testing::AssertionResult allclose(const engine::Tensor& actual, const std::vector<double>& expected,
                                    const std::vector<int64_t>& expected_shape, double atol, double rtol);
::testing::AssertionResult allclose(const engine::Tensor& actual, const engine::Tensor& expected, double atol,
                                    double rtol);

template <typename T>
double max_abs(const std::vector<T>& v) {
  double m = 0.0;
  for (T x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// NaN poison: a host vector of n NaNs, and a tensor (any device) filled with NaN in place.
inline std::vector<float> poisoned(size_t n) { return std::vector<float>(n, kPoison); }
inline void poison(const engine::Tensor& t) { t.fill_(kPoison); }
// A fresh tensor of `shape` on `device`, every element NaN.
engine::Tensor poisoned_tensor(const std::vector<int64_t>& shape, engine::Device device = engine::Device::cpu());

}  // namespace test_support
