// CPU convolution kernels (kernels/conv.h)
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
#include <cstdlib>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/gemm.h"
#include "test_kernels_common.h"
#include "support/kernel_cases.h"

namespace {

using test_support::conv_geometry;

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
using kernels::Conv2dGeometry;

// -------------------------------------------------------------------------------------------------
// Convolution references: direct loops over the formulas of conv.h.

int64_t weight_index(const Conv2dGeometry& g, int64_t o, int64_t kh, int64_t kw, int64_t i) {
  return ((o * g.kernel_h + kh) * g.kernel_w + kw) * g.in_c + i;
}

// Calls f(input pixel row, output pixel row, kh, kw) for every (output pixel, kernel cell) whose
// input cell lies inside the input.
template <typename F>
void for_each_tap(const Conv2dGeometry& g, F f) {
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow)
        for (int64_t kh = 0; kh < g.kernel_h; ++kh)
          for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
            const int64_t ih = oh * g.stride_h - g.pad_top + kh;
            const int64_t iw = ow * g.stride_w - g.pad_left + kw;
            if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
            f((n * g.in_h + ih) * g.in_w + iw, (n * out_h + oh) * out_w + ow, kh, kw);
          }
}

Reference reference_conv_forward(const Conv2dGeometry& g, const Matrix& x, const Matrix& w,
                                 const Matrix* bias) {
  Reference y(g.batch * g.out_h() * g.out_w(), g.out_c);
  if (bias != nullptr)
    for (int64_t p = 0; p < y.rows; ++p)
      for (int64_t o = 0; o < g.out_c; ++o) y.at(p, o) = bias->at(0, o);
  for_each_tap(g, [&](int64_t in, int64_t out, int64_t kh, int64_t kw) {
    for (int64_t o = 0; o < g.out_c; ++o) {
      double sum = 0.0;
      for (int64_t i = 0; i < g.in_c; ++i)
        sum += double(x.at(in, i)) * double(w.data[size_t(weight_index(g, o, kh, kw, i))]);
      y.at(out, o) += sum;
    }
  });
  return y;
}

Reference reference_conv_backward_data(const Conv2dGeometry& g, const Matrix& dy, const Matrix& w) {
  Reference dx(g.batch * g.in_h * g.in_w, g.in_c);
  for_each_tap(g, [&](int64_t in, int64_t out, int64_t kh, int64_t kw) {
    for (int64_t o = 0; o < g.out_c; ++o)
      for (int64_t i = 0; i < g.in_c; ++i)
        dx.at(in, i) +=
            double(dy.at(out, o)) * double(w.data[size_t(weight_index(g, o, kh, kw, i))]);
  });
  return dx;
}

// dw [out_c, kh*kw*in_c] and dbias [1, out_c].
void reference_conv_backward_filter(const Conv2dGeometry& g, const Matrix& x, const Matrix& dy,
                                    Reference* dw, Reference* dbias) {
  for_each_tap(g, [&](int64_t in, int64_t out, int64_t kh, int64_t kw) {
    for (int64_t o = 0; o < g.out_c; ++o)
      for (int64_t i = 0; i < g.in_c; ++i)
        dw->data[size_t(weight_index(g, o, kh, kw, i))] +=
            double(dy.at(out, o)) * double(x.at(in, i));
  });
  for (int64_t p = 0; p < dy.rows; ++p)
    for (int64_t o = 0; o < g.out_c; ++o) dbias->at(0, o) += dy.at(p, o);
}

struct ConvCase {
  std::string name;
  Conv2dGeometry g;
};
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

// Every case runs with dense rows and with row strides larger than the channel counts.
using ConvParam = std::tuple<ConvCase, bool>;

// The tensors of one convolution test, with distinct row strides for x, dx, y, dy when strided.
struct ConvData {
  Conv2dGeometry g;
  int64_t in_rows, out_rows, ldx, lddx, ldy, lddy, k;
  Matrix x, w, bias, dy;

  ConvData(const Conv2dGeometry& geometry, bool strided, std::mt19937& rng)
      : g(geometry),
        in_rows(g.batch * g.in_h * g.in_w),
        out_rows(g.batch * g.out_h() * g.out_w()),
        ldx(g.in_c + (strided ? 3 : 0)),
        lddx(g.in_c + (strided ? 5 : 0)),
        ldy(g.out_c + (strided ? 2 : 0)),
        lddy(g.out_c + (strided ? 4 : 0)),
        k(g.kernel_h * g.kernel_w * g.in_c),
        x(random_matrix(in_rows, g.in_c, ldx, rng)),
        w(random_matrix(g.out_c, k, k, rng)),
        bias(random_matrix(1, g.out_c, g.out_c, rng)),
        dy(random_matrix(out_rows, g.out_c, lddy, rng)) {}
};

// The geometry of a stride-1 convolution's backward data, the forward of dy with the flipped kernel (conv.cpp).
Conv2dGeometry transposed(const Conv2dGeometry& g) {
  Conv2dGeometry t = g;
  t.in_h = g.out_h(), t.in_w = g.out_w(), t.in_c = g.out_c, t.out_c = g.in_c;
  t.pad_top = g.kernel_h - 1 - g.pad_top, t.pad_bottom = g.kernel_h - 1 - g.pad_bottom;
  t.pad_left = g.kernel_w - 1 - g.pad_left, t.pad_right = g.kernel_w - 1 - g.pad_right;
  return t;
}


class ConvTest : public ::testing::TestWithParam<ConvParam> {
 protected:
  const Conv2dGeometry& geometry() const { return std::get<0>(GetParam()).g; }
  bool strided() const { return std::get<1>(GetParam()); }
  // The absolute tolerance against `ref`: kAtol, plus for Winograd along one axis 2e-5 of the largest result
  // (the parity tests' bound for activations): F(4, 7) rounds to about 2e-6 of it on average and 1e-5 at worst,
  // which on this file's sums of up to 1120 products of [-1, 1) values can pass kAtol.
  double atol(const Reference& ref) const {
    const Conv2dGeometry& g = geometry();
    const bool one_axis = kernels::cpu::winograd_1d_applies(g) || kernels::cpu::winograd_1d_applies(transposed(g));
    return kAtol + (one_axis ? 2e-5 * max_abs(ref) : 0.0);
  }
};

TEST_P(ConvTest, ForwardMatchesDirectLoops) {
  std::mt19937 rng(1234);
  ConvData d(geometry(), strided(), rng);
  for (bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    Matrix y(d.out_rows, d.g.out_c, d.ldy, kNaN);  // overwritten: NaN must not survive
    kernels::cpu::conv2d_forward(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx}, d.w.ptr(),
                                 with_bias ? d.bias.ptr() : nullptr,
                                 {y.ptr(), d.g.output_rows(), d.g.out_c, d.ldy});
    const Reference ref = reference_conv_forward(d.g, d.x, d.w, with_bias ? &d.bias : nullptr);
    EXPECT_TRUE(matches(y, ref, nullptr, atol(ref)));
  }
}

TEST_P(ConvTest, BackwardDataMatchesDirectLoops) {
  std::mt19937 rng(2345);
  ConvData d(geometry(), strided(), rng);
  const Reference ref = reference_conv_backward_data(d.g, d.dy, d.w);

  Matrix dx(d.in_rows, d.g.in_c, d.lddx, kNaN);
  kernels::cpu::conv2d_backward_data(d.g, {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy},
                                     d.w.ptr(), {dx.ptr(), d.g.input_rows(), d.g.in_c, d.lddx},
                                     false);
  EXPECT_TRUE(matches(dx, ref, nullptr, atol(ref))) << "overwrite";

  const Matrix prior = random_matrix(d.in_rows, d.g.in_c, d.lddx, rng);
  Matrix acc = prior;
  kernels::cpu::conv2d_backward_data(d.g, {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy},
                                     d.w.ptr(), {acc.ptr(), d.g.input_rows(), d.g.in_c, d.lddx},
                                     true);
  EXPECT_TRUE(matches(acc, ref, &prior, atol(ref))) << "accumulate";
}

TEST_P(ConvTest, BackwardFilterMatchesDirectLoops) {
  std::mt19937 rng(3456);
  ConvData d(geometry(), strided(), rng);
  Reference ref_dw(d.g.out_c, d.k), ref_dbias(1, d.g.out_c);
  reference_conv_backward_filter(d.g, d.x, d.dy, &ref_dw, &ref_dbias);

  Matrix dw(d.g.out_c, d.k, d.k, kNaN), dbias(1, d.g.out_c, d.g.out_c, kNaN);
  kernels::cpu::conv2d_backward_filter(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx},
                                       {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy}, dw.ptr(),
                                       dbias.ptr(), false);
  EXPECT_TRUE(matches(dw, ref_dw, nullptr, atol(ref_dw))) << "dw overwrite";
  EXPECT_TRUE(matches(dbias, ref_dbias)) << "dbias overwrite";

  const Matrix prior_dw = random_matrix(d.g.out_c, d.k, d.k, rng);
  const Matrix prior_dbias = random_matrix(1, d.g.out_c, d.g.out_c, rng);
  Matrix acc_dw = prior_dw, acc_dbias = prior_dbias;
  kernels::cpu::conv2d_backward_filter(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx},
                                       {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy},
                                       acc_dw.ptr(), acc_dbias.ptr(), true);
  EXPECT_TRUE(matches(acc_dw, ref_dw, &prior_dw, atol(ref_dw))) << "dw accumulate";
  EXPECT_TRUE(matches(acc_dbias, ref_dbias, &prior_dbias)) << "dbias accumulate";

  // Without a bias gradient dw is unchanged.
  Matrix dw_only(d.g.out_c, d.k, d.k, kNaN);
  kernels::cpu::conv2d_backward_filter(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx},
                                       {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy},
                                       dw_only.ptr(), nullptr, false);
  EXPECT_TRUE(matches(dw_only, ref_dw, nullptr, atol(ref_dw))) << "dw without dbias";
}

// The fused inference forward is the forward then ReLU, bit for bit (output gaps untouched).
TEST_P(ConvTest, BiasReluForwardIsTheForwardThenRelu) {
  std::mt19937 rng(4567);
  ConvData d(geometry(), strided(), rng);
  Matrix expected(d.out_rows, d.g.out_c, d.ldy, kNaN);
  kernels::cpu::conv2d_forward(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx}, d.w.ptr(), d.bias.ptr(),
                               expected.view());
  for (int64_t r = 0; r < expected.rows; ++r)
    for (int64_t c = 0; c < expected.cols; ++c) expected.at(r, c) = std::max(expected.at(r, c), 0.0f);
  Matrix got(d.out_rows, d.g.out_c, d.ldy, kNaN);
  kernels::cpu::conv2d_bias_relu_forward(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx}, d.w.ptr(),
                                         d.bias.ptr(), got.view());
  EXPECT_TRUE(bitwise_equal(got, expected));
}

TEST(ConvBiasRelu, ANullBiasIsRefused) {
  const Conv2dGeometry g = conv_geometry(1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  Matrix x(9, 2, 2, 1.0f), w(2, 2, 2, 1.0f), y(9, 2, 2, kNaN);
  try {
    kernels::cpu::conv2d_bias_relu_forward(g, x.view(), w.ptr(), nullptr, y.view());
    ADD_FAILURE() << "a null bias was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d_bias_relu_forward: bias is null; pass zeros for no bias"),
              std::string::npos)
        << e.what();
  }
}

// Geometries: (batch, in_h, in_w, in_c, out_c, kh, kw, sh, sw, pad top, bottom, left, right).
const ConvCase kConvCases[] = {
    {"pointwise_1x1", conv_geometry(3, 9, 7, 5, 6, 1, 1, 1, 1, 0, 0, 0, 0)},
    {"k3x3_pad1", conv_geometry(3, 9, 7, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1)},
    {"k7x7_s2_pad3", conv_geometry(2, 15, 13, 3, 6, 7, 7, 2, 2, 3, 3, 3, 3)},
    {"k3x3_s2_valid", conv_geometry(3, 9, 7, 5, 6, 3, 3, 2, 2, 0, 0, 0, 0)},
    {"k1x7_pad0_3", conv_geometry(2, 9, 11, 5, 6, 1, 7, 1, 1, 0, 0, 3, 3)},
    {"k7x1_pad3_0", conv_geometry(2, 11, 9, 5, 6, 7, 1, 1, 1, 3, 3, 0, 0)},
    {"k1x3_pad0_1", conv_geometry(3, 9, 7, 5, 6, 1, 3, 1, 1, 0, 0, 1, 1)},
    {"k3x1_pad1_0", conv_geometry(3, 9, 7, 5, 6, 3, 1, 1, 1, 1, 1, 0, 0)},
    {"k3x3_asymmetric_pad", conv_geometry(3, 9, 7, 5, 6, 3, 3, 1, 1, 0, 1, 1, 0)},
    {"k3x3_s2_asymmetric_pad", conv_geometry(3, 8, 8, 5, 6, 3, 3, 2, 2, 0, 1, 0, 1)},
    {"k2x2_s1_asymmetric_pad", conv_geometry(2, 7, 6, 4, 3, 2, 2, 1, 1, 0, 1, 0, 1)},
    {"k1x1_s2", conv_geometry(2, 9, 7, 5, 6, 1, 1, 2, 2, 0, 0, 0, 0)},
    {"k1x1_pad1", conv_geometry(2, 5, 4, 5, 6, 1, 1, 1, 1, 1, 1, 1, 1)},
    {"k2x2_s3_gaps",
     conv_geometry(2, 10, 11, 3, 4, 2, 2, 3, 3, 0, 0, 0, 0)},  // unread input pixels
    {"pad_exceeds_kernel", conv_geometry(2, 5, 4, 3, 4, 2, 2, 1, 1, 3, 3, 3, 3)},
    {"k3x3_7x7_many_images", conv_geometry(11, 7, 7, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1)},
    {"k3x3_single_pixel", conv_geometry(1, 1, 1, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1)},
    // Patches of 5*5*700 = 17500 floats (70 KB) per output pixel: the im2col workspace budget
    // (at most 64 MiB) holds fewer than 1000 pixels and a chunk has at least 256, so these take
    // several chunks, whose boundaries fall inside output rows. Forward and backward filter chunk
    // over in_c = 700; the stride-1 backward data (a convolution of dy with 700 input channels)
    // chunks in the second case; the strided backward data (dpatch + col2im) in the third.
    {"several_chunks_in700", conv_geometry(2, 23, 23, 700, 2, 5, 5, 1, 1, 2, 2, 2, 2)},
    {"several_chunks_out700", conv_geometry(2, 23, 23, 2, 700, 5, 5, 1, 1, 2, 2, 2, 2)},
    {"several_chunks_s2", conv_geometry(2, 35, 35, 700, 2, 5, 5, 2, 2, 2, 2, 2, 2)},
    // Winograd F(2x2, 3x3) (kernels/cpu/conv_winograd.h; WinogradTakesTheseCases checks that it does):
    // odd output sizes (tiles that run past the output), 'valid' and asymmetric paddings up to 2, and
    // a DenseNet-like 128 -> 32 with several tile chunks in every pass (363 tiles; chunks of 91 in the forward
    // and backward data, 2 per part of 182 in the weight gradient).
    {"winograd_pad1_odd_sizes", conv_geometry(2, 13, 11, 17, 19, 3, 3, 1, 1, 1, 1, 1, 1)},
    {"winograd_valid", conv_geometry(2, 14, 15, 16, 20, 3, 3, 1, 1, 0, 0, 0, 0)},
    {"winograd_asymmetric_pad2", conv_geometry(1, 12, 13, 18, 16, 3, 3, 1, 1, 2, 0, 1, 2)},
    {"winograd_several_chunks", conv_geometry(3, 22, 21, 128, 32, 3, 3, 1, 1, 1, 1, 1, 1)},
    // Winograd F(4, 7) along one axis (winograd_1d_applies; Winograd1dTakesTheseCases): lines whose last tile
    // runs past the output (17, 11, 13), 'valid' and asymmetric paddings up to 6, and Inception-ResNet-v2's
    // block17 7x1 with several tile chunks in every pass (255 tiles: 4 chunks of 64 in the forward and the
    // backward data, 2 per part of 128 in the weight gradient).
    {"winograd1d_1x7_pad0_3", conv_geometry(2, 9, 17, 16, 20, 1, 7, 1, 1, 0, 0, 3, 3)},
    {"winograd1d_7x1_pad3_0", conv_geometry(2, 11, 9, 18, 16, 7, 1, 1, 1, 3, 3, 0, 0)},
    {"winograd1d_1x7_valid", conv_geometry(1, 5, 20, 16, 16, 1, 7, 1, 1, 0, 0, 0, 0)},
    {"winograd1d_1x7_pad6_1", conv_geometry(1, 3, 12, 17, 16, 1, 7, 1, 1, 0, 0, 6, 1)},
    {"winograd1d_7x1_pad0_6", conv_geometry(1, 8, 5, 16, 17, 7, 1, 1, 1, 0, 6, 0, 0)},
    {"winograd1d_7x1_several_chunks", conv_geometry(3, 17, 17, 128, 160, 7, 1, 1, 1, 3, 3, 0, 0)},
};

INSTANTIATE_TEST_SUITE_P(Geometries, ConvTest,
                         ::testing::Combine(::testing::ValuesIn(kConvCases), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<ConvParam>& info) {
                           return std::get<0>(info.param).name +
                                  (std::get<1>(info.param) ? "_strided" : "_dense");
                         });

TEST(ConvWinograd, WinogradTakesTheseCases) {
  const char* switch_value = std::getenv("ENGINE_WINOGRAD");
  if (switch_value != nullptr && std::string(switch_value) == "0") GTEST_SKIP() << "ENGINE_WINOGRAD=0 turns it off";
  for (const ConvCase& c : kConvCases)
    EXPECT_EQ(kernels::cpu::winograd_applies(c.g), c.name.rfind("winograd_", 0) == 0) << c.name;
  // Too few channels, a stride, a 7x7 map, a padding past 2: im2col.
  EXPECT_FALSE(kernels::cpu::winograd_applies(conv_geometry(1, 14, 14, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1)));
  EXPECT_FALSE(kernels::cpu::winograd_applies(conv_geometry(1, 28, 28, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1)));
  EXPECT_FALSE(kernels::cpu::winograd_applies(conv_geometry(1, 7, 7, 128, 32, 3, 3, 1, 1, 1, 1, 1, 1)));
  EXPECT_FALSE(kernels::cpu::winograd_applies(conv_geometry(1, 14, 14, 32, 32, 3, 3, 1, 1, 3, 3, 3, 3)));
}

TEST(ConvWinograd, Winograd1dTakesTheseCases) {
  const char* switch_value = std::getenv("ENGINE_WINOGRAD");
  if (switch_value != nullptr && std::string(switch_value) == "0") GTEST_SKIP() << "ENGINE_WINOGRAD=0 turns it off";
  for (const ConvCase& c : kConvCases) {
    const bool one_axis = c.name.rfind("winograd1d_", 0) == 0;
    EXPECT_EQ(kernels::cpu::winograd_1d_applies(c.g), one_axis) << c.name;
    // The backward data runs the forward of dy with the flipped kernel (conv.cpp): that geometry qualifies too.
    if (one_axis) {
      EXPECT_TRUE(kernels::cpu::winograd_1d_applies(transposed(c.g))) << c.name << ", backward data";
    }
  }
  // Too few channels, a stride, a line of 7 outputs, padding across the axis or past kernel - 1, 1x5 and 1x3
  // kernels: im2col.
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 17, 17, 8, 32, 1, 7, 1, 1, 0, 0, 3, 3)));
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 17, 17, 32, 32, 1, 7, 1, 2, 0, 0, 3, 3)));
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 7, 7, 32, 32, 7, 1, 1, 1, 3, 3, 0, 0)));
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 17, 17, 32, 32, 1, 7, 1, 1, 1, 1, 3, 3)));
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 17, 17, 32, 32, 1, 7, 1, 1, 0, 0, 7, 3)));
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 17, 17, 32, 32, 1, 5, 1, 1, 0, 0, 2, 2)));
  EXPECT_FALSE(kernels::cpu::winograd_1d_applies(conv_geometry(1, 8, 8, 192, 224, 1, 3, 1, 1, 0, 0, 1, 1)));
}

// The same result for 1 and 2 threads, bit for bit (the chunking, the col2im gather and Winograd's
// tile chunks and weight-gradient parts do not depend on the thread count): every pass of a strided
// convolution (im2col, col2im), of a Winograd one and of one along one axis.
TEST(ConvDeterminism, SameBitsForOneAndTwoThreads) {
  for (const Conv2dGeometry& g : {conv_geometry(3, 13, 11, 9, 7, 3, 3, 2, 2, 1, 1, 1, 1),
                                  conv_geometry(3, 22, 21, 128, 32, 3, 3, 1, 1, 1, 1, 1, 1),
                                  conv_geometry(3, 17, 17, 64, 48, 1, 7, 1, 1, 0, 0, 3, 3)}) {
    std::mt19937 rng(99);
    ConvData d(g, true, rng);
    const int threads = kernels::cpu::num_threads();
    std::vector<Matrix> y, dx, dbias;
    std::vector<std::vector<float>> dw;
    for (int t = 0; t < 2; ++t) {
      kernels::cpu::set_num_threads(t + 1);
      y.emplace_back(d.out_rows, d.g.out_c, d.ldy, kNaN);
      dx.emplace_back(d.in_rows, d.g.in_c, d.lddx, kNaN);
      dbias.emplace_back(1, d.g.out_c, d.g.out_c, kNaN);
      dw.emplace_back(size_t(d.g.out_c * d.k));
      kernels::cpu::conv2d_forward(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx}, d.w.ptr(), d.bias.ptr(),
                                   y.back().view());
      kernels::cpu::conv2d_backward_data(d.g, {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy}, d.w.ptr(),
                                         {dx.back().ptr(), d.g.input_rows(), d.g.in_c, d.lddx}, false);
      kernels::cpu::conv2d_backward_filter(d.g, {d.x.ptr(), d.g.input_rows(), d.g.in_c, d.ldx},
                                           {d.dy.ptr(), d.g.output_rows(), d.g.out_c, d.lddy}, dw.back().data(),
                                           dbias.back().ptr(), false);
    }
    kernels::cpu::set_num_threads(threads);
    EXPECT_TRUE(bitwise_equal(y[0], y[1]));
    EXPECT_TRUE(bitwise_equal(dx[0], dx[1]));
    EXPECT_TRUE(bitwise_equal(dbias[0], dbias[1]));
    EXPECT_EQ(0, std::memcmp(dw[0].data(), dw[1].data(), dw[0].size() * sizeof(float)));
  }
}

}  // namespace
