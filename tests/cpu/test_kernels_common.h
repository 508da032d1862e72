// Helpers shared by the CPU kernel tests (tests/cpu/test_kernels_*.cpp): row-strided matrices whose
// gap columns [cols, ld) hold NaN (a kernel that reads the gap produces NaN, one that writes it is
// caught), random fills, and tolerance checks |actual - ref| <= atol + rtol * |ref|.
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

#include "kernels/layout.h"

namespace kernel_test {

// --- Strided: the batch-norm, elementwise, loss and optimizer tests' matrix ----------------------

inline const float kPoison = std::numeric_limits<float>::quiet_NaN();

// A row-major [rows, cols] matrix with row stride ld; the gap columns hold kPoison.
struct Strided {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> data;

  Strided(int64_t r, int64_t c, int64_t l)
      : rows(r), cols(c), ld(l), data(static_cast<size_t>(r * l), kPoison) {}
  float& at(int64_t r, int64_t c) { return data[r * ld + c]; }
  float at(int64_t r, int64_t c) const { return data[r * ld + c]; }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  kernels::MatrixView view() { return {ptr(), rows, cols, ld}; }
  kernels::ConstMatrixView view() const { return {ptr(), rows, cols, ld}; }
};

inline void fill_uniform(Strided& m, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; ++c) m.at(r, c) = dist(rng);
}

inline std::vector<float> uniform_vector(int64_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// The gap columns still hold the poison, bit for bit.
inline void expect_gaps_untouched(const Strided& m, const std::string& what) {
  uint32_t poison_bits = 0;
  std::memcpy(&poison_bits, &kPoison, sizeof poison_bits);
  int64_t bad = 0;
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = m.cols; c < m.ld; ++c) {
      uint32_t bits = 0;
      std::memcpy(&bits, &m.data[r * m.ld + c], sizeof bits);
      bad += bits != poison_bits;
    }
  EXPECT_EQ(bad, 0) << what << ": gap columns were written";
}

// |actual - ref| <= atol + rtol * |ref| (and actual finite).
inline ::testing::AssertionResult close(double actual, double ref, double atol, double rtol) {
  if (std::isfinite(actual) && std::fabs(actual - ref) <= atol + rtol * std::fabs(ref))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "actual " << actual << " vs ref " << ref << " (diff "
                                       << actual - ref << ", atol " << atol << ", rtol " << rtol
                                       << ")";
}

// --- Matrix and Reference: the convolution and pooling tests' float matrix and double result -----
// Tolerance: a float result r matches the double reference e when |r - e| <= kAtol + kRtol * |e|.

inline constexpr double kAtol = 1e-4;
inline constexpr double kRtol = 1e-4;
inline const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A [rows, cols] float matrix with row stride ld; the gap columns [cols, ld) hold NaN.
struct Matrix {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> data;

  Matrix(int64_t r, int64_t c, int64_t stride, float value)
      : rows(r), cols(c), ld(stride), data(size_t(r * stride), kNaN) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) at(i, j) = value;
  }
  float& at(int64_t i, int64_t j) { return data[size_t(i * ld + j)]; }
  float at(int64_t i, int64_t j) const { return data[size_t(i * ld + j)]; }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  kernels::MatrixView view() { return {ptr(), rows, cols, ld}; }
  kernels::ConstMatrixView view() const { return {ptr(), rows, cols, ld}; }
};

inline Matrix random_matrix(int64_t rows, int64_t cols, int64_t ld, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Matrix m(rows, cols, ld, 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m.at(i, j) = uniform(rng);
  return m;
}

// A double reference [rows, cols], dense.
struct Reference {
  int64_t rows = 0, cols = 0;
  std::vector<double> data;
  Reference(int64_t r, int64_t c) : rows(r), cols(c), data(size_t(r * c), 0.0) {}
  double& at(int64_t i, int64_t j) { return data[size_t(i * cols + j)]; }
  double at(int64_t i, int64_t j) const { return data[size_t(i * cols + j)]; }
};

// got == base + ref within the tolerance (base: the prior contents when accumulating, else none),
// and got's gap is still NaN. atol: the absolute part of the tolerance, for kernels whose rounding grows with
// the results' largest magnitude (Winograd's larger tiles).
inline ::testing::AssertionResult matches(const Matrix& got, const Reference& ref,
                                   const Matrix* base = nullptr, double atol = kAtol) {
  if (got.rows != ref.rows || got.cols != ref.cols)
    return ::testing::AssertionFailure() << "shape mismatch";
  int64_t bad = 0;
  std::ostringstream first;
  for (int64_t i = 0; i < got.rows; ++i) {
    for (int64_t j = 0; j < got.cols; ++j) {
      const double expected = ref.at(i, j) + (base != nullptr ? double(base->at(i, j)) : 0.0);
      const double value = got.at(i, j);
      if (!(std::fabs(value - expected) <= atol + kRtol * std::fabs(expected))) {
        if (bad++ == 0)
          first << "first mismatch at [" << i << ", " << j << "]: got " << value << ", expected "
                << expected;
      }
    }
    for (int64_t j = got.cols; j < got.ld; ++j) {
      if (!std::isnan(got.at(i, j))) {
        if (bad++ == 0) first << "gap written at [" << i << ", " << j << "]: " << got.at(i, j);
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " bad elements of " << got.rows * got.cols << "; " << first.str();
}

// The largest |e| of a reference.
inline double max_abs(const Reference& ref) {
  double largest = 0.0;
  for (double v : ref.data) largest = std::max(largest, std::fabs(v));
  return largest;
}

inline bool bitwise_equal(const Matrix& a, const Matrix& b) {
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j)
      if (std::memcmp(&a.data[size_t(i * a.ld + j)], &b.data[size_t(i * b.ld + j)], sizeof(float)))
        return false;
  return true;
}

}  // namespace kernel_test
