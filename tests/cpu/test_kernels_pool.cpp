// CPU pooling kernels (kernels/pool.h)
// against direct loops written here from the formulas of the header, accumulated in double.
//
// Tolerance: a float result r matches the double reference e when |r - e| <= 1e-4 + 1e-4 * |e|.
// Inputs are uniform in [-1, 1) from a fixed-seed std::mt19937. Every matrix may have a row stride
// larger than its column count; the gap columns hold NaN, and the tests check that the gap is still
// NaN afterwards (never written) and that no NaN reaches a result (never read). Destinations that
// are overwritten start as NaN; accumulating destinations start with random values that must be
// kept.
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

#include "kernels/gemm.h"
#include "kernels/pool.h"
#include "test_kernels_common.h"
#include "support/kernel_cases.h"

namespace {

using test_support::pool_geometry;

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
using kernels::Pool2dGeometry;

// -------------------------------------------------------------------------------------------------
// Pooling references.

enum class PoolKind { kMax, kAvgIncludePad, kAvgExcludePad };

struct PoolWindow {
  int64_t h0, h1, w0, w1;  // inside part of the window
  int64_t full_count;      // kernel cells clipped to the padded input
};

PoolWindow pool_window(const Pool2dGeometry& g, int64_t oh, int64_t ow) {
  const int64_t top = oh * g.stride_h - g.pad_top, left = ow * g.stride_w - g.pad_left;
  const int64_t bottom = std::min(top + g.kernel_h, g.in_h + g.pad_bottom);
  const int64_t right = std::min(left + g.kernel_w, g.in_w + g.pad_right);
  return {std::max<int64_t>(top, 0), std::min(top + g.kernel_h, g.in_h), std::max<int64_t>(left, 0),
          std::min(left + g.kernel_w, g.in_w), (bottom - top) * (right - left)};
}

int64_t pool_input_row(const Pool2dGeometry& g, int64_t n, int64_t h, int64_t w) {
  return (n * g.in_h + h) * g.in_w + w;
}

Reference reference_pool_forward(const Pool2dGeometry& g, PoolKind kind, const Matrix& x) {
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  Reference y(g.batch * out_h * out_w, g.channels);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow)
        for (int64_t c = 0; c < g.channels; ++c) {
          const PoolWindow win = pool_window(g, oh, ow);
          double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
          for (int64_t h = win.h0; h < win.h1; ++h)
            for (int64_t w = win.w0; w < win.w1; ++w) {
              const double v = x.at(pool_input_row(g, n, h, w), c);
              best = std::max(best, v);
              sum += v;
            }
          const int64_t count = kind == PoolKind::kAvgIncludePad
                                    ? win.full_count
                                    : (win.h1 - win.h0) * (win.w1 - win.w0);
          y.at((n * out_h + oh) * out_w + ow, c) =
              kind == PoolKind::kMax ? best : sum / double(count);
        }
  return y;
}

Reference reference_pool_backward(const Pool2dGeometry& g, PoolKind kind, const Matrix& x,
                                  const Matrix& dy) {
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  Reference dx(g.batch * g.in_h * g.in_w, g.channels);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow)
        for (int64_t c = 0; c < g.channels; ++c) {
          const PoolWindow win = pool_window(g, oh, ow);
          const double grad = dy.at((n * out_h + oh) * out_w + ow, c);
          if (kind == PoolKind::kMax) {  // the first maximal cell in row-major window order
            int64_t arg = -1;
            double best = 0.0;
            for (int64_t h = win.h0; h < win.h1; ++h)
              for (int64_t w = win.w0; w < win.w1; ++w) {
                const int64_t row = pool_input_row(g, n, h, w);
                if (arg < 0 || x.at(row, c) > best) arg = row, best = x.at(row, c);
              }
            if (arg >= 0) dx.at(arg, c) += grad;
          } else {
            const int64_t count = kind == PoolKind::kAvgIncludePad
                                      ? win.full_count
                                      : (win.h1 - win.h0) * (win.w1 - win.w0);
            for (int64_t h = win.h0; h < win.h1; ++h)
              for (int64_t w = win.w0; w < win.w1; ++w)
                dx.at(pool_input_row(g, n, h, w), c) += grad / double(count);
          }
        }
  return dx;
}

void pool_forward(const Pool2dGeometry& g, PoolKind kind, const Matrix& x, Matrix* y) {
  if (kind == PoolKind::kMax)
    kernels::cpu::max_pool2d_forward(g, {x.ptr(), g.input_rows(), g.channels, x.ld},
                                     {y->ptr(), g.output_rows(), g.channels, y->ld});
  else
    kernels::cpu::avg_pool2d_forward(g, kind == PoolKind::kAvgIncludePad,
                                     {x.ptr(), g.input_rows(), g.channels, x.ld},
                                     {y->ptr(), g.output_rows(), g.channels, y->ld});
}

void pool_backward(const Pool2dGeometry& g, PoolKind kind, const Matrix& x, const Matrix& dy,
                   Matrix* dx, bool accumulate) {
  if (kind == PoolKind::kMax)
    kernels::cpu::max_pool2d_backward(g, {x.ptr(), g.input_rows(), g.channels, x.ld},
                                      {dy.ptr(), g.output_rows(), g.channels, dy.ld},
                                      {dx->ptr(), g.input_rows(), g.channels, dx->ld}, accumulate);
  else
    kernels::cpu::avg_pool2d_backward(g, kind == PoolKind::kAvgIncludePad,
                                      {dy.ptr(), g.output_rows(), g.channels, dy.ld},
                                      {dx->ptr(), g.input_rows(), g.channels, dx->ld}, accumulate);
}

struct PoolCase {
  std::string name;
  PoolKind kind;
  Pool2dGeometry g;
};
void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

using PoolParam = std::tuple<PoolCase, bool>;

class PoolTest : public ::testing::TestWithParam<PoolParam> {};

TEST_P(PoolTest, ForwardAndBackwardMatchDirectLoops) {
  const PoolCase& pc = std::get<0>(GetParam());
  const bool strided = std::get<1>(GetParam());
  const Pool2dGeometry& g = pc.g;
  const int64_t in_rows = g.batch * g.in_h * g.in_w, out_rows = g.batch * g.out_h() * g.out_w();
  const int64_t c = g.channels;
  std::mt19937 rng(4567);
  const Matrix x = random_matrix(in_rows, c, c + (strided ? 3 : 0), rng);
  const Matrix dy = random_matrix(out_rows, c, c + (strided ? 4 : 0), rng);

  Matrix y(out_rows, c, c + (strided ? 2 : 0), kNaN);
  pool_forward(g, pc.kind, x, &y);
  EXPECT_TRUE(matches(y, reference_pool_forward(g, pc.kind, x))) << "forward";

  const Reference ref_dx = reference_pool_backward(g, pc.kind, x, dy);
  Matrix dx(in_rows, c, c + (strided ? 5 : 0), kNaN);
  pool_backward(g, pc.kind, x, dy, &dx, false);
  EXPECT_TRUE(matches(dx, ref_dx)) << "backward overwrite";

  const Matrix prior = random_matrix(in_rows, c, dx.ld, rng);
  Matrix acc = prior;
  pool_backward(g, pc.kind, x, dy, &acc, true);
  EXPECT_TRUE(matches(acc, ref_dx, &prior)) << "backward accumulate";
}

// Geometries: (batch, in_h, in_w, channels, kh, kw, sh, sw, pad top, bottom, left, right).
// 70 channels: more than one channel block of the kernels.
const PoolCase kPoolCases[] = {
    {"max_3x3_s2_pad1", PoolKind::kMax, pool_geometry(2, 9, 8, 70, 3, 3, 2, 2, 1, 1, 1, 1)},
    {"max_3x3_s2_valid", PoolKind::kMax, pool_geometry(3, 9, 7, 5, 3, 3, 2, 2, 0, 0, 0, 0)},
    {"max_3x3_s2_same_even", PoolKind::kMax, pool_geometry(2, 8, 8, 6, 3, 3, 2, 2, 0, 1, 0, 1)},
    {"max_2x2_s2", PoolKind::kMax, pool_geometry(3, 9, 7, 5, 2, 2, 2, 2, 0, 0, 0, 0)},
    {"avg_2x2_s2", PoolKind::kAvgIncludePad, pool_geometry(3, 9, 7, 5, 2, 2, 2, 2, 0, 0, 0, 0)},
    {"avg_3x3_s1_pad1_include_pad", PoolKind::kAvgIncludePad,
     pool_geometry(2, 9, 7, 70, 3, 3, 1, 1, 1, 1, 1, 1)},
    {"avg_3x3_s1_pad1_exclude_pad", PoolKind::kAvgExcludePad,
     pool_geometry(2, 9, 7, 70, 3, 3, 1, 1, 1, 1, 1, 1)},
    {"avg_3x3_s2_asymmetric_exclude_pad", PoolKind::kAvgExcludePad,
     pool_geometry(2, 8, 7, 5, 3, 3, 2, 2, 0, 1, 1, 0)},
    {"avg_2x2_s3_gaps", PoolKind::kAvgIncludePad,
     pool_geometry(2, 11, 10, 5, 2, 2, 3, 3, 0, 0, 0, 0)},
};

INSTANTIATE_TEST_SUITE_P(Geometries, PoolTest,
                         ::testing::Combine(::testing::ValuesIn(kPoolCases), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<PoolParam>& info) {
                           return std::get<0>(info.param).name +
                                  (std::get<1>(info.param) ? "_strided" : "_dense");
                         });

// Constant input: every cell of a window ties, and only the first inside cell of each window (in
// row-major window order) gets the gradient.
TEST(MaxPool, TiesSendTheGradientToTheFirstCellOnly) {
  const Pool2dGeometry g =
      pool_geometry(1, 5, 5, 1, 3, 3, 2, 2, 1, 1, 1, 1);  // windows at -1, 1, 3
  const Matrix x(25, 1, 1, 0.5f);
  Matrix dy(9, 1, 1, 0.0f);
  for (int64_t p = 0; p < 9; ++p) dy.at(p, 0) = float(p + 1);
  Matrix dx(25, 1, 1, kNaN);
  kernels::cpu::max_pool2d_backward(g, {x.ptr(), g.input_rows(), g.channels, 1},
                                    {dy.ptr(), g.output_rows(), g.channels, 1},
                                    {dx.ptr(), g.input_rows(), g.channels, 1}, false);
  // Output (oh, ow)'s first inside cell is (max(2*oh - 1, 0), max(2*ow - 1, 0)): rows/cols 0, 1, 3.
  const int64_t first_cell[3] = {0, 1, 3};
  Reference expected(25, 1);
  for (int64_t oh = 0; oh < 3; ++oh)
    for (int64_t ow = 0; ow < 3; ++ow)
      expected.at(first_cell[oh] * 5 + first_cell[ow], 0) = 3 * oh + ow + 1;
  EXPECT_TRUE(matches(dx, expected));
  EXPECT_TRUE(matches(dx, reference_pool_backward(g, PoolKind::kMax, x, dy)));
}

// Inputs from {-1, 0, 1}: most windows tie in some of the 70 channels (the kernel's vectorised
// arg-max must still pick the first maximal cell in every channel).
TEST(MaxPool, ManyTiesMatchTheFirstMaxReference) {
  const Pool2dGeometry g = pool_geometry(2, 9, 8, 70, 3, 3, 2, 2, 1, 1, 1, 1);
  std::mt19937 rng(777);
  std::uniform_int_distribution<int> level(-1, 1);
  const int64_t in_rows = g.batch * g.in_h * g.in_w, out_rows = g.batch * g.out_h() * g.out_w();
  Matrix x(in_rows, g.channels, g.channels + 3, 0.0f);
  for (int64_t i = 0; i < in_rows; ++i)
    for (int64_t c = 0; c < g.channels; ++c) x.at(i, c) = float(level(rng));
  const Matrix dy = random_matrix(out_rows, g.channels, g.channels, rng);
  Matrix dx(in_rows, g.channels, g.channels + 1, kNaN);
  kernels::cpu::max_pool2d_backward(g, {x.ptr(), g.input_rows(), g.channels, x.ld},
                                    {dy.ptr(), g.output_rows(), g.channels, dy.ld},
                                    {dx.ptr(), g.input_rows(), g.channels, dx.ld}, false);
  EXPECT_TRUE(matches(dx, reference_pool_backward(g, PoolKind::kMax, x, dy)));
}

// The arg-max the forward saves (training) names the first maximal cell of every window, y is the
// plain forward's bit for bit, and the backward through it is bitwise the backward that finds the
// arg-max again from x (overwrite and accumulate): inputs with many ties, padded windows, row strides.
TEST(MaxPool, SavedArgmaxGivesTheSameForwardAndBackward) {
  for (const Pool2dGeometry& g : {pool_geometry(2, 9, 8, 70, 3, 3, 2, 2, 1, 1, 1, 1),
                                  pool_geometry(1, 7, 6, 3, 2, 3, 1, 2, 0, 1, 1, 0),
                                  pool_geometry(1, 8, 8, 5, 2, 2, 2, 2, 0, 0, 0, 0)}) {
    std::mt19937 rng(4321);
    std::uniform_int_distribution<int> level(-1, 1);
    const int64_t in_rows = g.input_rows(), out_rows = g.output_rows();
    Matrix x(in_rows, g.channels, g.channels + 3, kNaN);
    for (int64_t i = 0; i < in_rows; ++i)
      for (int64_t c = 0; c < g.channels; ++c) x.at(i, c) = float(level(rng));
    const Matrix dy = random_matrix(out_rows, g.channels, g.channels + 1, rng);
    Matrix y_plain(out_rows, g.channels, g.channels + 2, kNaN), y_saved = y_plain;
    std::vector<int32_t> argmax(size_t(out_rows * g.channels), 12345);
    kernels::cpu::max_pool2d_forward(g, {x.ptr(), in_rows, g.channels, x.ld},
                                     {y_plain.ptr(), out_rows, g.channels, y_plain.ld});
    kernels::cpu::max_pool2d_forward_argmax(g, {x.ptr(), in_rows, g.channels, x.ld},
                                            {y_saved.ptr(), out_rows, g.channels, y_saved.ld}, argmax.data());
    EXPECT_TRUE(bitwise_equal(y_plain, y_saved));
    // Every index is the first cell, in row-major window order, that holds the window's maximum.
    for (int64_t n = 0; n < g.batch; ++n)
      for (int64_t oh = 0; oh < g.out_h(); ++oh)
        for (int64_t ow = 0; ow < g.out_w(); ++ow) {
          const int64_t o = (n * g.out_h() + oh) * g.out_w() + ow;
          const PoolWindow win = pool_window(g, oh, ow);
          for (int64_t c = 0; c < g.channels; ++c) {
            int64_t first = -1;
            for (int64_t h = win.h0; h < win.h1 && first < 0; ++h)
              for (int64_t w = win.w0; w < win.w1 && first < 0; ++w)
                if (x.at(pool_input_row(g, n, h, w), c) == y_saved.at(o, c)) first = h * g.in_w + w;
            ASSERT_EQ(argmax[size_t(o * g.channels + c)], first) << "output " << o << " channel " << c;
          }
        }
    for (bool accumulate : {false, true}) {
      const Matrix start = accumulate ? random_matrix(in_rows, g.channels, g.channels + 2, rng)
                                      : Matrix(in_rows, g.channels, g.channels + 2, kNaN);
      Matrix dx_found = start, dx_saved = start;
      kernels::cpu::max_pool2d_backward(g, {x.ptr(), in_rows, g.channels, x.ld},
                                        {dy.ptr(), out_rows, g.channels, dy.ld},
                                        {dx_found.ptr(), in_rows, g.channels, dx_found.ld}, accumulate);
      kernels::cpu::max_pool2d_backward_argmax(g, argmax.data(), {dy.ptr(), out_rows, g.channels, dy.ld},
                                               {dx_saved.ptr(), in_rows, g.channels, dx_saved.ld}, accumulate);
      EXPECT_TRUE(bitwise_equal(dx_found, dx_saved)) << "accumulate " << accumulate;
      if (!accumulate) {
        EXPECT_TRUE(matches(dx_saved, reference_pool_backward(g, PoolKind::kMax, x, dy)));
      }
    }
  }
}

// Pooling results do not depend on the thread count, bit for bit.
TEST(PoolDeterminism, SameBitsForOneAndTwoThreads) {
  const Pool2dGeometry g = pool_geometry(3, 11, 9, 70, 3, 3, 2, 2, 1, 1, 1, 1);
  std::mt19937 rng(5678);
  const int64_t in_rows = g.batch * g.in_h * g.in_w, out_rows = g.batch * g.out_h() * g.out_w();
  const Matrix x = random_matrix(in_rows, g.channels, g.channels + 1, rng);
  const Matrix dy = random_matrix(out_rows, g.channels, g.channels, rng);
  const int threads = kernels::cpu::num_threads();
  for (PoolKind kind : {PoolKind::kMax, PoolKind::kAvgExcludePad}) {
    Matrix dx[2] = {Matrix(in_rows, g.channels, g.channels, kNaN),
                    Matrix(in_rows, g.channels, g.channels, kNaN)};
    for (int t = 0; t < 2; ++t) {
      kernels::cpu::set_num_threads(t + 1);
      pool_backward(g, kind, x, dy, &dx[t], false);
    }
    EXPECT_TRUE(bitwise_equal(dx[0], dx[1]));
  }
  kernels::cpu::set_num_threads(threads);
}

// -------------------------------------------------------------------------------------------------
// Global average pooling.

TEST(GlobalAvgPool, ForwardAndBackwardMatchDirectLoops) {
  for (bool strided : {false, true}) {
    SCOPED_TRACE(strided ? "strided" : "dense");
    const int64_t batch = 3, hw = 13, channels = 70;  // 70: more than one channel block
    std::mt19937 rng(6789);
    const Matrix x = random_matrix(batch * hw, channels, channels + (strided ? 3 : 0), rng);
    const Matrix dy = random_matrix(batch, channels, channels, rng);

    Reference ref_y(batch, channels), ref_dx(batch * hw, channels);
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t p = 0; p < hw; ++p) ref_y.at(n, c) += x.at(n * hw + p, c) / double(hw);
        for (int64_t p = 0; p < hw; ++p) ref_dx.at(n * hw + p, c) = dy.at(n, c) / double(hw);
      }

    Matrix y(batch, channels, channels, kNaN);
    kernels::cpu::global_avg_pool_forward(hw, {x.ptr(), batch * hw, channels, x.ld},
                                          {y.ptr(), batch, channels, channels});
    EXPECT_TRUE(matches(y, ref_y)) << "forward";

    Matrix dx(batch * hw, channels, channels + (strided ? 5 : 0), kNaN);
    kernels::cpu::global_avg_pool_backward(hw, {dy.ptr(), batch, channels, channels},
                                           {dx.ptr(), batch * hw, channels, dx.ld}, false);
    EXPECT_TRUE(matches(dx, ref_dx)) << "backward overwrite";

    const Matrix prior = random_matrix(batch * hw, channels, dx.ld, rng);
    Matrix acc = prior;
    kernels::cpu::global_avg_pool_backward(hw, {dy.ptr(), batch, channels, channels},
                                           {acc.ptr(), batch * hw, channels, acc.ld}, true);
    EXPECT_TRUE(matches(acc, ref_dx, &prior)) << "backward accumulate";
  }
}

}  // namespace
