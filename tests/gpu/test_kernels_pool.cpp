// GPU pooling (kernels/cuda/pool.cu) against the CPU reference (kernels/cpu/pool.cpp): max and
// average pooling forward/backward (count_include_pad both ways, asymmetric 'same' padding, strided
// channel slices), global average pooling, and determinism of the max-pool backward (two runs are
// bitwise equal; ties resolved to the first maximum in both implementations). Inputs are NaN in their
// row-stride gaps; outputs are NaN before an overwrite and carry a sentinel in their gaps.
// Tolerances (atol + rtol |ref|):
//   max forward and backward: exact (a selection, and the same additions in the same order)
//   average forward/backward: 1e-6 + 1e-6 |ref| (the same order of float operations; margin for
//                             the compiler)
//   global average:           1e-6 + 1e-6 |ref| (double sums in the same order, then float)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/pool.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

constexpr auto* geometry = &test_support::pool_geometry;  // a pooling case's geometry

using namespace gpu_test;
using kernels::Pool2dGeometry;

using PoolCase = test_support::StridedCase<Pool2dGeometry>;

class CudaPool : public ::testing::TestWithParam<PoolCase> {};

struct Sizes {
  int64_t in_rows, out_rows, channels;
  explicit Sizes(const Pool2dGeometry& g)
      : in_rows(g.batch * g.in_h * g.in_w), out_rows(g.batch * g.out_h() * g.out_w()),
        channels(g.channels) {}
};

// x with ties when `ties` (values from a handful of levels), else distinct random values.
std::vector<float> pool_input(const PoolCase& c, uint64_t seed, bool ties) {
  const Sizes s(c.g);
  std::vector<float> v = away_from_zero(size_t(s.in_rows * s.channels), seed);
  if (ties)
    for (float& x : v) x = std::copysign(std::ceil(std::fabs(x) * 2.0f) / 2.0f, x);  // +-0.5, +-1
  return strided(v, s.in_rows, s.channels, c.ldx, kNaN);
}

// A backward's host operands: dy [out_rows, C] (NaN gaps; seed), and the dx it accumulates into
// (seed + 1) or overwrites (NaN), both with sentinel gaps.
struct BackwardOperands {
  std::vector<float> dy, dx_prior, dx_poison;
  BackwardOperands(const PoolCase& c, uint64_t seed) {
    const Sizes s(c.g);
    dy = strided(away_from_zero(size_t(s.out_rows * s.channels), seed), s.out_rows, s.channels,
                 c.ldy, kNaN);
    dx_prior = strided(away_from_zero(size_t(s.in_rows * s.channels), seed + 1), s.in_rows,
                       s.channels, c.ldx, kGapSentinel);
    dx_poison = strided(std::vector<float>(size_t(s.in_rows * s.channels), kNaN), s.in_rows,
                        s.channels, c.ldx, kGapSentinel);
  }
};

TEST_P(CudaPool, MaxForwardBackward) {
  SKIP_WITHOUT_CUDA();
  const PoolCase c = GetParam();
  const Sizes s(c.g);
  for (bool ties : {false, true}) {
    SCOPED_TRACE(ties ? "with ties" : "distinct values");
    const std::vector<float> x_host = pool_input(c, ties ? 7 : 8, ties);
    const std::vector<float> y_start = strided(std::vector<float>(size_t(s.out_rows * s.channels), kNaN),
                                               s.out_rows, s.channels, c.ldy, kGapSentinel);
    std::vector<float> y_ref = y_start;
    kernels::cpu::max_pool2d_forward(c.g, {x_host.data(), c.g.input_rows(), c.g.channels, c.ldx},
                                     {y_ref.data(), c.g.output_rows(), c.g.channels, c.ldy});
    DeviceBuffer x(x_host), y(y_start);
    kernels::cuda::max_pool2d_forward(c.g, {x.get(), c.g.input_rows(), c.g.channels, c.ldx},
                                      {y.get(), c.g.output_rows(), c.g.channels, c.ldy});
    const std::vector<float> y_got = y.download();
    EXPECT_TRUE(close(dense_part(y_got, s.out_rows, s.channels, c.ldy),
                      dense_part(y_ref, s.out_rows, s.channels, c.ldy), 0, 0));
    EXPECT_TRUE(gaps_untouched(y_got, y_start, s.out_rows, s.channels, c.ldy));

    const auto& [dy_host, dx_prior, dx_poison] = BackwardOperands(c, 9);
    for (bool accumulate : {false, true}) {
      const std::vector<float>& dx_start = accumulate ? dx_prior : dx_poison;
      std::vector<float> dx_ref = dx_start;
      kernels::cpu::max_pool2d_backward(c.g, {x_host.data(), c.g.input_rows(), c.g.channels, c.ldx},
                                        {dy_host.data(), c.g.output_rows(), c.g.channels, c.ldy},
                                        {dx_ref.data(), c.g.input_rows(), c.g.channels, c.ldx},
                                        accumulate);
      DeviceBuffer dy(dy_host), dx(dx_start);
      kernels::cuda::max_pool2d_backward(c.g, {x.get(), c.g.input_rows(), c.g.channels, c.ldx},
                                         {dy.get(), c.g.output_rows(), c.g.channels, c.ldy},
                                         {dx.get(), c.g.input_rows(), c.g.channels, c.ldx},
                                         accumulate);
      const std::vector<float> dx_got = dx.download();
      EXPECT_TRUE(close(dense_part(dx_got, s.in_rows, s.channels, c.ldx),
                        dense_part(dx_ref, s.in_rows, s.channels, c.ldx), 0, 0))
          << "accumulate " << accumulate;
      EXPECT_TRUE(gaps_untouched(dx_got, dx_start, s.in_rows, s.channels, c.ldx));
      // Deterministic: a second run is bitwise the same.
      dx.upload(dx_start);
      kernels::cuda::max_pool2d_backward(c.g, {x.get(), c.g.input_rows(), c.g.channels, c.ldx},
                                         {dy.get(), c.g.output_rows(), c.g.channels, c.ldy},
                                         {dx.get(), c.g.input_rows(), c.g.channels, c.ldx},
                                         accumulate);
      EXPECT_TRUE(bitwise_equal(dx.download(), dx_got));
    }
  }
}

TEST_P(CudaPool, AverageForwardBackward) {
  SKIP_WITHOUT_CUDA();
  const PoolCase c = GetParam();
  const Sizes s(c.g);
  const std::vector<float> x_host = pool_input(c, 17, false);
  const auto& [dy_host, dx_prior, dx_poison] = BackwardOperands(c, 18);
  const std::vector<float> y_start = strided(std::vector<float>(size_t(s.out_rows * s.channels), kNaN),
                                             s.out_rows, s.channels, c.ldy, kGapSentinel);
  for (bool include_pad : {true, false}) {
    SCOPED_TRACE(include_pad ? "count_include_pad" : "count only inside cells");
    std::vector<float> y_ref = y_start;
    kernels::cpu::avg_pool2d_forward(c.g, include_pad,
                                     {x_host.data(), c.g.input_rows(), c.g.channels, c.ldx},
                                     {y_ref.data(), c.g.output_rows(), c.g.channels, c.ldy});
    DeviceBuffer x(x_host), y(y_start);
    kernels::cuda::avg_pool2d_forward(c.g, include_pad,
                                      {x.get(), c.g.input_rows(), c.g.channels, c.ldx},
                                      {y.get(), c.g.output_rows(), c.g.channels, c.ldy});
    const std::vector<float> y_got = y.download();
    EXPECT_TRUE(close(dense_part(y_got, s.out_rows, s.channels, c.ldy),
                      dense_part(y_ref, s.out_rows, s.channels, c.ldy), 1e-6, 1e-6));
    EXPECT_TRUE(gaps_untouched(y_got, y_start, s.out_rows, s.channels, c.ldy));
    for (bool accumulate : {false, true}) {
      const std::vector<float>& dx_start = accumulate ? dx_prior : dx_poison;
      std::vector<float> dx_ref = dx_start;
      kernels::cpu::avg_pool2d_backward(
          c.g, include_pad, {dy_host.data(), c.g.output_rows(), c.g.channels, c.ldy},
          {dx_ref.data(), c.g.input_rows(), c.g.channels, c.ldx}, accumulate);
      DeviceBuffer dy(dy_host), dx(dx_start);
      kernels::cuda::avg_pool2d_backward(
          c.g, include_pad, {dy.get(), c.g.output_rows(), c.g.channels, c.ldy},
          {dx.get(), c.g.input_rows(), c.g.channels, c.ldx}, accumulate);
      const std::vector<float> dx_got = dx.download();
      EXPECT_TRUE(close(dense_part(dx_got, s.in_rows, s.channels, c.ldx),
                        dense_part(dx_ref, s.in_rows, s.channels, c.ldx), 1e-6, 1e-6))
          << "accumulate " << accumulate;
      EXPECT_TRUE(gaps_untouched(dx_got, dx_start, s.in_rows, s.channels, c.ldx));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, CudaPool,
    ::testing::Values(
        // DenseNet stem: 3x3 stride 2 pad 1 on 112x112x64 (batch 2)
        PoolCase{"densenet_stem_max3x3s2p1_112", geometry(2, 112, 112, 64, 3, 3, 2, 2, 1, 1, 1, 1), 64, 64},
        // DenseNet transition: 2x2 stride 2 on 56x56x128 (batch 4), read from a wider buffer
        PoolCase{"densenet_transition_2x2s2_56", geometry(4, 56, 56, 128, 2, 2, 2, 2, 0, 0, 0, 0), 160, 128},
        // Inception-ResNet-v2 reduction: 3x3 stride 2 valid, 35 -> 17, written into a concat slice
        PoolCase{"irv2_3x3s2_valid_35to17", geometry(2, 35, 35, 320, 3, 3, 2, 2, 0, 0, 0, 0), 320, 1088},
        // Inception average pool branch: 3x3 stride 1 'same' on 17x17
        PoolCase{"inception_avg3x3s1_same_17", geometry(2, 17, 17, 96, 3, 3, 1, 1, 1, 1, 1, 1), 96, 96},
        // TF 'same' with stride 2 on an even size: asymmetric padding (0, 1, 0, 1)
        PoolCase{"tf_same_3x3s2_asymmetric_8", geometry(3, 8, 8, 5, 3, 3, 2, 2, 0, 1, 0, 1), 7, 6},
        // Odd everything: 2x3 kernel, strides (1, 2), asymmetric padding
        PoolCase{"odd_2x3_s1x2_pad_1_0_0_1", geometry(2, 7, 9, 5, 2, 3, 1, 2, 1, 0, 0, 1), 8, 5},
        // Windows that lie entirely in the padding (max: -inf, no arg-max; average: count 0 or 1)
        PoolCase{"padding_only_windows_1x1_p1", geometry(2, 3, 4, 3, 1, 1, 1, 1, 1, 1, 1, 1), 3, 4}),
    test_support::case_name<PoolCase>);

struct GlobalCase {
  const char* name;
  int64_t batch, hw, channels, ldx;
};

void PrintTo(const GlobalCase& c, std::ostream* os) { *os << c.name; }

class CudaGlobalAvgPool : public ::testing::TestWithParam<GlobalCase> {};

TEST_P(CudaGlobalAvgPool, ForwardBackward) {
  SKIP_WITHOUT_CUDA();
  const GlobalCase c = GetParam();
  const int64_t rows = c.batch * c.hw, C = c.channels;
  const std::vector<float> x_host = strided(away_from_zero(size_t(rows * C), 31), rows, C, c.ldx, kNaN);
  std::vector<float> y_ref(size_t(c.batch * C));
  kernels::cpu::global_avg_pool_forward(c.hw, {x_host.data(), c.batch * c.hw, C, c.ldx},
                                        {y_ref.data(), c.batch, C, C});
  DeviceBuffer x(x_host), y(size_t(c.batch * C));
  kernels::cuda::global_avg_pool_forward(c.hw, {x.get(), c.batch * c.hw, C, c.ldx},
                                         {y.get(), c.batch, C, C});
  EXPECT_TRUE(close(y.download(), y_ref, 1e-6, 1e-6));

  const std::vector<float> dy_host = away_from_zero(size_t(c.batch * C), 32);
  const std::vector<float> dx_prior = strided(away_from_zero(size_t(rows * C), 33), rows, C, c.ldx,
                                              kGapSentinel);
  const std::vector<float> dx_poison =
      strided(std::vector<float>(size_t(rows * C), kNaN), rows, C, c.ldx, kGapSentinel);
  for (bool accumulate : {false, true}) {
    const std::vector<float>& dx_start = accumulate ? dx_prior : dx_poison;
    std::vector<float> dx_ref = dx_start;
    kernels::cpu::global_avg_pool_backward(c.hw, {dy_host.data(), c.batch, C, C},
                                           {dx_ref.data(), c.batch * c.hw, C, c.ldx}, accumulate);
    DeviceBuffer dy(dy_host), dx(dx_start);
    kernels::cuda::global_avg_pool_backward(c.hw, {dy.get(), c.batch, C, C},
                                            {dx.get(), c.batch * c.hw, C, c.ldx}, accumulate);
    const std::vector<float> dx_got = dx.download();
    EXPECT_TRUE(close(dense_part(dx_got, rows, C, c.ldx), dense_part(dx_ref, rows, C, c.ldx), 1e-6,
                      1e-6))
        << "accumulate " << accumulate;
    EXPECT_TRUE(gaps_untouched(dx_got, dx_start, rows, C, c.ldx));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaGlobalAvgPool,
    ::testing::Values(GlobalCase{"densenet201_7x7x1920_b4", 4, 49, 1920, 1920},
                      GlobalCase{"irv2_8x8x1536_b3", 3, 64, 1536, 1536},
                      GlobalCase{"odd_5x3_slice", 3, 15, 5, 9}),
    test_support::case_name<GlobalCase>);

}  // namespace

#else

TEST(CudaPool, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
