// CPU elementwise kernels (kernels/elementwise.h) against naive loops.
// Matrices are row-strided (ld > cols) with NaN in the gap columns: a kernel that reads the gap
// produces NaN, one that writes it is caught by the gap check (helpers in test_kernels_common.h).
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
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/elementwise.h"
#include "test_kernels_common.h"

namespace {

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
namespace cpu = kernels::cpu;

// ------------------------------------------------------------------------------------------------
// Elementwise.

TEST(Elementwise, FillCopyAddScaleRespectStrides) {
  std::mt19937 rng(41);
  const int64_t rows = 13, cols = 7;
  Strided a(rows, cols, 9), b(rows, cols, 10), dst(rows, cols, 11);
  fill_uniform(a, rng, -2.0f, 2.0f);
  fill_uniform(b, rng, -2.0f, 2.0f);

  cpu::fill({dst.ptr(), rows, cols, dst.ld}, 3.5f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), 3.5f);
  expect_gaps_untouched(dst, "fill");

  cpu::copy({a.ptr(), rows, cols, a.ld}, {dst.ptr(), rows, cols, dst.ld},
            /*accumulate=*/true);  // 3.5 + a
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), 3.5f + a.at(r, c));
  cpu::copy({a.ptr(), rows, cols, a.ld}, {dst.ptr(), rows, cols, dst.ld}, /*accumulate=*/false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), a.at(r, c));
  expect_gaps_untouched(dst, "copy");

  cpu::add({a.ptr(), rows, cols, a.ld}, {b.ptr(), rows, cols, b.ld},
           {dst.ptr(), rows, cols, dst.ld});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), a.at(r, c) + b.at(r, c));
  expect_gaps_untouched(dst, "add");

  cpu::scale(-0.75f, {b.ptr(), rows, cols, b.ld}, {dst.ptr(), rows, cols, dst.ld},
             /*accumulate=*/true);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(dst.at(r, c), (a.at(r, c) + b.at(r, c)) + -0.75f * b.at(r, c));
  cpu::scale(2.0f, {b.ptr(), rows, cols, b.ld}, {dst.ptr(), rows, cols, dst.ld},
             /*accumulate=*/false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), 2.0f * b.at(r, c));
  expect_gaps_untouched(dst, "scale");
  expect_gaps_untouched(a, "a (read only)");
  expect_gaps_untouched(b, "b (read only)");
}

TEST(Elementwise, ReluForwardBackward) {
  std::mt19937 rng(43);
  const int64_t rows = 301, cols = 129;  // above the threading threshold
  Strided x(rows, cols, 131), y(rows, cols, 130), dy(rows, cols, 133);
  fill_uniform(x, rng, -1.0f, 1.0f);
  fill_uniform(dy, rng, -1.0f, 1.0f);
  x.at(0, 0) = 0.0f;  // the boundary: y = 0, no gradient
  x.at(1, 1) = -0.0f;
  cpu::relu_forward({x.ptr(), rows, cols, x.ld}, {y.ptr(), rows, cols, y.ld});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(y.at(r, c), x.at(r, c) > 0 ? x.at(r, c) : 0.0f);
  expect_gaps_untouched(y, "relu y");

  for (bool accumulate : {false, true}) {
    Strided dx(rows, cols, 132);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    cpu::relu_backward({y.ptr(), rows, cols, y.ld}, {dy.ptr(), rows, cols, dy.ld},
                       {dx.ptr(), rows, cols, dx.ld}, accumulate);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float g = y.at(r, c) > 0 ? dy.at(r, c) : 0.0f;
        ASSERT_EQ(dx.at(r, c), accumulate ? dx0.at(r, c) + g : g) << r << "," << c;
      }
    EXPECT_EQ(dx.at(0, 0), accumulate ? dx0.at(0, 0) : 0.0f);
    expect_gaps_untouched(dx, "relu dx");
  }

  // In place (y == x).
  Strided z = x;
  cpu::relu_forward({z.ptr(), rows, cols, z.ld}, {z.ptr(), rows, cols, z.ld});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(z.at(r, c), y.at(r, c));
}

// The fused residual of Inception-ResNet-v2 is the scale, add and relu kernels' result bit for bit (the
// product and the sum rounded separately, as they round them), forward and backward, with and without
// the ReLU, on strided views with NaN gaps; a NaN input stays NaN through the ReLU, as relu_forward's.
TEST(Elementwise, ScaledResidualIsScaleAddReluBitForBit) {
  std::mt19937 rng(47);
  const int64_t rows = 301, cols = 129;  // above the threading threshold
  for (bool relu : {true, false}) {
    SCOPED_TRACE(relu ? "relu" : "no relu");
    const float s = relu ? 0.17f : 1.0f;
    Strided x(rows, cols, 131), up(rows, cols, 130), y(rows, cols, 133), dy(rows, cols, 132);
    fill_uniform(x, rng, -1.0f, 1.0f);
    fill_uniform(up, rng, -3.0f, 3.0f);
    fill_uniform(dy, rng, -1.0f, 1.0f);
    x.at(2, 2) = std::numeric_limits<float>::quiet_NaN();
    cpu::scaled_residual_forward(s, {x.ptr(), rows, cols, x.ld}, {up.ptr(), rows, cols, up.ld},
                                 {y.ptr(), rows, cols, y.ld}, relu);
    Strided scaled(rows, cols, cols), sum(rows, cols, cols), expected(rows, cols, cols);
    cpu::scale(s, {up.ptr(), rows, cols, up.ld}, {scaled.ptr(), rows, cols, cols}, false);
    cpu::add({x.ptr(), rows, cols, x.ld}, {scaled.ptr(), rows, cols, cols}, {sum.ptr(), rows, cols, cols});
    if (relu)
      cpu::relu_forward({sum.ptr(), rows, cols, cols}, {expected.ptr(), rows, cols, cols});
    else
      expected = sum;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float a = y.at(r, c), b = expected.at(r, c);
        ASSERT_TRUE(std::memcmp(&a, &b, sizeof a) == 0) << r << "," << c << ": " << a << " vs " << b;
      }
    EXPECT_TRUE(std::isnan(y.at(2, 2)));
    expect_gaps_untouched(y, "scaled residual y");

    Strided dx(rows, cols, 134), dup(rows, cols, 135);
    cpu::scaled_residual_backward(s, {y.ptr(), rows, cols, y.ld}, {dy.ptr(), rows, cols, dy.ld},
                                  {dx.ptr(), rows, cols, dx.ld}, {dup.ptr(), rows, cols, dup.ld}, relu);
    Strided g(rows, cols, cols), dup_expected(rows, cols, cols);
    if (relu)
      cpu::relu_backward({y.ptr(), rows, cols, y.ld}, {dy.ptr(), rows, cols, dy.ld}, {g.ptr(), rows, cols, cols},
                         false);
    else
      cpu::copy({dy.ptr(), rows, cols, dy.ld}, {g.ptr(), rows, cols, cols}, false);
    cpu::scale(s, {g.ptr(), rows, cols, cols}, {dup_expected.ptr(), rows, cols, cols}, false);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(dx.at(r, c), g.at(r, c)) << r << "," << c;
        ASSERT_EQ(dup.at(r, c), dup_expected.at(r, c)) << r << "," << c;
      }
    expect_gaps_untouched(dx, "scaled residual dx");
    expect_gaps_untouched(dup, "scaled residual dup");
  }
}

TEST(Elementwise, SigmoidIsStableAndItsBackwardMatches) {
  std::mt19937 rng(47);
  const int64_t rows = 9, cols = 5;
  Strided x(rows, cols, 6), y(rows, cols, 7), dy(rows, cols, 8);
  fill_uniform(x, rng, -6.0f, 6.0f);
  fill_uniform(dy, rng, -1.0f, 1.0f);
  const float extremes[] = {100.0f, -100.0f, 1e4f, -1e4f, 0.0f};
  for (int i = 0; i < 5; ++i) x.at(0, i) = extremes[i];
  cpu::sigmoid_forward({x.ptr(), rows, cols, x.ld}, {y.ptr(), rows, cols, y.ld});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double ref = 1.0 / (1.0 + std::exp(-double(x.at(r, c))));
      // Relative accuracy of float exp; the atol covers exp(-100) ~ 3.7e-44 (denormal in float).
      EXPECT_TRUE(close(y.at(r, c), ref, 1e-30, 1e-6)) << r << "," << c << " x=" << x.at(r, c);
    }
  EXPECT_EQ(y.at(0, 0), 1.0f);
  EXPECT_EQ(y.at(0, 2), 1.0f);
  EXPECT_EQ(y.at(0, 3), 0.0f);
  EXPECT_EQ(y.at(0, 4), 0.5f);
  expect_gaps_untouched(y, "sigmoid y");

  for (bool accumulate : {false, true}) {
    Strided dx(rows, cols, 9);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    cpu::sigmoid_backward({y.ptr(), rows, cols, y.ld}, {dy.ptr(), rows, cols, dy.ld},
                          {dx.ptr(), rows, cols, dx.ld}, accumulate);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const double s = y.at(r, c);
        const double g = dy.at(r, c) * s * (1.0 - s);
        EXPECT_TRUE(close(dx.at(r, c), accumulate ? dx0.at(r, c) + g : g, 1e-7, 1e-6))
            << r << "," << c;
      }
    expect_gaps_untouched(dx, "sigmoid dx");
  }
}

TEST(Elementwise, SumInDoubleSkipsTheGap) {
  std::mt19937 rng(53);
  for (int64_t rows : {1, 17, 1031}) {
    const int64_t cols = 37;
    Strided x(rows, cols, 41);
    fill_uniform(x, rng, -1.0f, 3.0f);
    double ref = 0.0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ref += x.at(r, c);
    // Double accumulation of float inputs: the only error is the order of additions (~1e-15).
    EXPECT_TRUE(close(cpu::sum({x.ptr(), rows, cols, x.ld}), ref, 1e-10, 1e-12)) << rows;
  }
  // 1 + many tiny values: a float accumulator would lose them all.
  Strided t(1, 1001, 1001);
  t.at(0, 0) = 1.0f;
  for (int64_t c = 1; c < 1001; ++c) t.at(0, c) = 1e-8f;
  EXPECT_TRUE(close(cpu::sum({t.ptr(), 1, 1001, t.ld}), 1.0 + 1000 * double(1e-8f), 1e-15, 1e-15));
  EXPECT_EQ(cpu::sum({t.ptr(), 0, 5, 5}), 0.0);
}

// The views carry their element type: reading one as a type it is not throws a message naming the type
// instead of misreading the bytes; the kernels take bf16 views by emulation (kernels/bf16_emulation.h):
// widened, computed in f32, each bf16 output rounded once, only the first cols of each row touched.
TEST(MatrixView, TypedAccessRefusesAndKernelsTakeBf16) {
  std::vector<uint16_t> bf16_storage(3 * 4, 0xbf80);  // bf16 -1.0
  bf16_storage[5] = 0x4040;                           // 3.0
  const kernels::ConstMatrixView bf16_x(bf16_storage.data(), 3, 4, 4, kernels::DType::bf16);
  try {
    (void)bf16_x.f32();
    FAIL() << "f32() accepted a bf16 view";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32 only"), std::string::npos) << e.what();
  }
  Strided y(3, 4, 5);
  cpu::relu_forward(bf16_x, y.view());
  for (int64_t r = 0; r < y.rows; ++r)
    for (int64_t c = 0; c < y.cols; ++c) EXPECT_EQ(y.at(r, c), r * 4 + c == 5 ? 3.0f : 0.0f) << r << "," << c;
  EXPECT_TRUE(std::isnan(y.data[4])) << "the gap past cols is untouched";
  EXPECT_EQ(cpu::sum(bf16_x), -11.0 + 3.0);
  std::vector<uint16_t> out(3 * 6, 0x7fc1);  // [3, 4] with row stride 6, gaps a NaN pattern
  const kernels::MatrixView bf16_y(out.data(), 3, 4, 6, kernels::DType::bf16);
  cpu::scale(1.0f / 3.0f, bf16_x, bf16_y, false);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t c = 0; c < 6; ++c)
      EXPECT_EQ(out[r * 6 + c], c >= 4 ? 0x7fc1 : kernels::bf16_bits_from_f32((r * 4 + c == 5 ? 3.0f : -1.0f) / 3.0f))
          << r << "," << c;
}

// Operands of different shapes are refused with the kernel's name, before anything is written.
TEST(MatrixView, MismatchedShapesAreRefused) {
  Strided a(4, 3, 3), b(4, 2, 3), y(4, 3, 3);
  try {
    cpu::add(a.view(), b.view(), y.view());
    FAIL() << "add accepted [4, 3] + [4, 2]";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("add"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cpu::relu_backward(a.view(), a.view(), Strided(5, 3, 3).view(), false),
               std::invalid_argument);
}

}  // namespace
