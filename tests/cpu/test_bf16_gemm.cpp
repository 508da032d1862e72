// The CPU's mixed-precision GEMM (kernels/gemm.h: gemm_mixed): bf16 (or f32) A and B, f32 or bf16 C.
// Two checks per case:
//   exact:  C equals the f32 GEMM of the exactly widened inputs, rounded once to C's type (the
//           definition: storage rounded to nearest even, arithmetic in f32), bit for bit;
//   double: C against a double-precision product of the same (bf16-valued) inputs, within
//           atol 1e-5 + rtol 4e-3 |ref| for a bf16 C (half a bf16 ulp is at most 2^-8 = 3.9e-3 of the
//           value; the f32 accumulation adds ~1e-6) and 1e-5 + 1e-5 |ref| for an f32 C.
// Operands are row-strided where the case says so, with NaN in the gaps; bf16 output gaps hold a
// sentinel that must survive.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "support/compare.h"

namespace {

using kernels::BFloat16;
using kernels::ConstMatrixView;
using kernels::DType;
using kernels::MatrixView;

constexpr uint16_t kGapBits = 0x7FC1;  // a NaN pattern no kernel would produce from our inputs

// A [rows, cols] matrix with row stride ld of element type dtype, as raw bytes; values uniform in
// [-1, 1) rounded to the dtype, gaps NaN.
struct Matrix {
  int64_t rows, cols, ld;
  DType dtype;
  std::vector<uint8_t> bytes;
  Matrix(int64_t r, int64_t c, int64_t l, DType t) : rows(r), cols(c), ld(l), dtype(t), bytes(size_t(r * l) * kernels::dtype_size(t)) {
    for (int64_t i = 0; i < r * l; ++i) set(i, std::numeric_limits<float>::quiet_NaN());
    if (t == DType::bf16)
      for (int64_t row = 0; row < r; ++row)
        for (int64_t col = c; col < l; ++col) std::memcpy(bytes.data() + (row * l + col) * 2, &kGapBits, 2);
  }
  void set(int64_t i, float v) {
    if (dtype == DType::f32) {
      std::memcpy(bytes.data() + i * 4, &v, 4);
    } else {
      const BFloat16 b(v);
      std::memcpy(bytes.data() + i * 2, &b, 2);
    }
  }
  float get(int64_t i) const {
    if (dtype == DType::f32) {
      float v;
      std::memcpy(&v, bytes.data() + i * 4, 4);
      return v;
    }
    BFloat16 b;
    std::memcpy(&b, bytes.data() + i * 2, 2);
    return static_cast<float>(b);
  }
  float at(int64_t r, int64_t c) const { return get(r * ld + c); }
  void fill_random(std::mt19937& rng) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) set(r * ld + c, dist(rng));
  }
  MatrixView view() { return {bytes.data(), rows, cols, ld, dtype}; }
  ConstMatrixView view() const { return {bytes.data(), rows, cols, ld, dtype}; }
  // The elements as f32 (dense).
  std::vector<float> dense() const {
    std::vector<float> v(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) v[size_t(r * cols + c)] = at(r, c);
    return v;
  }
};

struct GemmCase {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
  int64_t pad;  // added to every row stride
  DType in, out;
  float alpha, beta;
};

void PrintTo(const GemmCase& c, std::ostream* os) { *os << c.name; }

class Bf16Gemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(Bf16Gemm, IsTheF32GemmOfTheWidenedInputsRoundedOnce) {
  const GemmCase g = GetParam();
  std::mt19937 rng(17);
  // Stored shapes: A [m, k] or [k, m] transposed; B [k, n] or [n, k].
  Matrix a(g.ta ? g.k : g.m, g.ta ? g.m : g.k, (g.ta ? g.m : g.k) + g.pad, g.in);
  Matrix b(g.tb ? g.n : g.k, g.tb ? g.k : g.n, (g.tb ? g.k : g.n) + g.pad, g.in);
  Matrix c(g.m, g.n, g.n + g.pad, g.out);
  a.fill_random(rng);
  b.fill_random(rng);
  if (g.beta != 0.0f) c.fill_random(rng);
  const std::vector<float> c_before = c.dense();
  const std::vector<uint8_t> c_bytes_before = c.bytes;

  kernels::cpu::gemm_mixed(g.ta, g.tb, g.alpha, a.view(), b.view(), g.beta, c.view());

  // Exact: the f32 GEMM of the widened inputs, then one rounding.
  const std::vector<float> a32 = a.dense(), b32 = b.dense();
  std::vector<float> expected = c_before;
  kernels::cpu::gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a32.data(), a.cols, b32.data(), b.cols, g.beta,
                     expected.data(), g.n);
  if (g.out == DType::bf16)
    for (float& v : expected) v = static_cast<float>(BFloat16(v));
  const std::vector<float> got = c.dense();
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(test_support::same_bits(got[i], expected[i])) << "element " << i << ": " << got[i] << " vs " << expected[i];

  // Double: the same inputs multiplied in double.
  std::vector<double> reference(size_t(g.m * g.n));
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < g.k; ++p)
        s += double(g.ta ? a.at(p, i) : a.at(i, p)) * double(g.tb ? b.at(j, p) : b.at(p, j));
      const double prior = g.beta == 0.0f ? 0.0 : g.beta * double(c_before[size_t(i * g.n + j)]);  // NaN unread
      reference[size_t(i * g.n + j)] = g.alpha * s + prior;
    }
  const double rtol = g.out == DType::bf16 ? 4e-3 : 1e-5;
  EXPECT_TRUE(test_support::allclose(got, reference, 1e-5, rtol));

  // The gaps are untouched.
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t col = c.cols; col < c.ld; ++col) {
      const size_t size = kernels::dtype_size(c.dtype), at = size_t(r * c.ld + col) * size;
      ASSERT_EQ(std::memcmp(c.bytes.data() + at, c_bytes_before.data() + at, size), 0) << "gap written";
    }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Bf16Gemm,
    ::testing::Values(GemmCase{"bf16_in_bf16_out", false, false, 17, 23, 40, 0, DType::bf16, DType::bf16, 1.0f, 0.0f},
                      GemmCase{"bf16_in_f32_out", false, false, 17, 23, 40, 0, DType::bf16, DType::f32, 1.0f, 0.0f},
                      GemmCase{"f32_in_bf16_out", false, false, 9, 12, 33, 0, DType::f32, DType::bf16, 1.0f, 0.0f},
                      GemmCase{"bf16_transpose_b_strided", false, true, 31, 16, 70, 3, DType::bf16, DType::bf16,
                               1.0f, 0.0f},
                      GemmCase{"bf16_transpose_a_strided", true, false, 12, 29, 50, 5, DType::bf16, DType::bf16,
                               1.0f, 0.0f},
                      GemmCase{"bf16_both_transposed_beta", true, true, 8, 11, 300, 2, DType::bf16, DType::bf16,
                               0.5f, 1.0f},
                      GemmCase{"bf16_accumulate_f32", false, true, 64, 40, 129, 1, DType::bf16, DType::f32, 1.0f,
                               1.0f},
                      GemmCase{"bf16_k_zero_beta", false, false, 4, 5, 0, 0, DType::bf16, DType::bf16, 1.0f, 2.0f},
                      GemmCase{"f32_f32", false, false, 6, 7, 8, 1, DType::f32, DType::f32, 1.0f, 0.0f}),
    [](const ::testing::TestParamInfo<GemmCase>& info) { return std::string(info.param.name); });

TEST(Bf16GemmErrors, MixedInputTypesAndBadShapesAreRefused) {
  std::vector<float> a(12), c(16);
  std::vector<BFloat16> b(12);
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message([&] {
              kernels::cpu::gemm_mixed(false, false, 1.0f, {a.data(), 4, 3, 3}, {b.data(), 3, 4, 4, DType::bf16}, 0.0f,
                                       {c.data(), 4, 4, 4});
            }).find("gemm_mixed: A is f32 and B bf16; both must be f32 or both bf16"),
            std::string::npos);
  EXPECT_NE(message([&] {
              kernels::cpu::gemm_mixed(false, false, 1.0f, {a.data(), 4, 3, 3}, {a.data(), 4, 3, 3}, 0.0f,
                                       {c.data(), 4, 4, 4});
            }).find("gemm_mixed: expected a [3, 3] matrix, got [4, 3]"),
            std::string::npos);
}

}  // namespace
