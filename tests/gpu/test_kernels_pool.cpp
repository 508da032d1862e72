// GPU pooling (kernels/cuda/pool.cu) against the CPU reference (kernels/cpu/pool.cpp): max and
// average pooling forward/backward (count_include_pad both ways, asymmetric 'same' padding, strided
// channel slices), the saved arg-max (indices and the backward through them, bitwise the CPU's), bf16
// operands against the CPU emulation, global average pooling, and determinism of the max-pool backward (two runs are
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
#include <cstring>
#include <vector>

#include "engine/tensor.h"

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

// int32 values of a device buffer (4 bytes an element, as the arg-max is stored).
std::vector<int32_t> as_int32(const std::vector<float>& raw) {
  std::vector<int32_t> v(raw.size());
  std::memcpy(v.data(), raw.data(), raw.size() * sizeof(float));
  return v;
}

// The saved arg-max (training): the GPU's indices are the CPU's, y is exact, and the backward through
// the indices is bitwise the CPU's (and the CPU's recomputing backward), overwriting and accumulating.
TEST_P(CudaPool, SavedArgmaxForwardBackward) {
  SKIP_WITHOUT_CUDA();
  const PoolCase c = GetParam();
  const Sizes s(c.g);
  for (bool ties : {false, true}) {
    SCOPED_TRACE(ties ? "with ties" : "distinct values");
    const std::vector<float> x_host = pool_input(c, ties ? 27 : 28, ties);
    const std::vector<float> y_start = strided(std::vector<float>(size_t(s.out_rows * s.channels), kNaN),
                                               s.out_rows, s.channels, c.ldy, kGapSentinel);
    std::vector<float> y_ref = y_start;
    std::vector<int32_t> argmax_ref(size_t(s.out_rows * s.channels));
    kernels::cpu::max_pool2d_forward_argmax(c.g, {x_host.data(), s.in_rows, s.channels, c.ldx},
                                            {y_ref.data(), s.out_rows, s.channels, c.ldy}, argmax_ref.data());
    DeviceBuffer x(x_host), y(y_start), argmax(size_t(s.out_rows * s.channels));
    auto* const argmax_device = reinterpret_cast<int32_t*>(argmax.get());
    kernels::cuda::max_pool2d_forward_argmax(c.g, {x.get(), s.in_rows, s.channels, c.ldx},
                                             {y.get(), s.out_rows, s.channels, c.ldy}, argmax_device);
    const std::vector<float> y_got = y.download();
    EXPECT_TRUE(close(dense_part(y_got, s.out_rows, s.channels, c.ldy),
                      dense_part(y_ref, s.out_rows, s.channels, c.ldy), 0, 0));
    EXPECT_TRUE(gaps_untouched(y_got, y_start, s.out_rows, s.channels, c.ldy));
    EXPECT_EQ(as_int32(argmax.download()), argmax_ref);

    const auto& [dy_host, dx_prior, dx_poison] = BackwardOperands(c, 29);
    for (bool accumulate : {false, true}) {
      const std::vector<float>& dx_start = accumulate ? dx_prior : dx_poison;
      std::vector<float> dx_ref = dx_start, dx_recomputed = dx_start;
      kernels::cpu::max_pool2d_backward_argmax(c.g, argmax_ref.data(), {dy_host.data(), s.out_rows, s.channels, c.ldy},
                                               {dx_ref.data(), s.in_rows, s.channels, c.ldx}, accumulate);
      kernels::cpu::max_pool2d_backward(c.g, {x_host.data(), s.in_rows, s.channels, c.ldx},
                                        {dy_host.data(), s.out_rows, s.channels, c.ldy},
                                        {dx_recomputed.data(), s.in_rows, s.channels, c.ldx}, accumulate);
      EXPECT_TRUE(bitwise_equal(dx_ref, dx_recomputed));
      DeviceBuffer dy(dy_host), dx(dx_start);
      kernels::cuda::max_pool2d_backward_argmax(c.g, argmax_device, {dy.get(), s.out_rows, s.channels, c.ldy},
                                                {dx.get(), s.in_rows, s.channels, c.ldx}, accumulate);
      const std::vector<float> dx_got = dx.download();
      EXPECT_TRUE(close(dense_part(dx_got, s.in_rows, s.channels, c.ldx),
                        dense_part(dx_ref, s.in_rows, s.channels, c.ldx), 0, 0))
          << "accumulate " << accumulate;
      EXPECT_TRUE(gaps_untouched(dx_got, dx_start, s.in_rows, s.channels, c.ldx));
    }
  }
}

// A bf16 matrix [rows, cols] (row stride ld) holding `values` rounded, on `device`, and its view.
engine::Tensor bf16_matrix(const std::vector<float>& values, int64_t rows, int64_t ld, engine::Device device) {
  return engine::Tensor::from_vector({rows, ld}, values, device, kernels::DType::bf16);
}
kernels::MatrixView view_of(const engine::Tensor& t, int64_t cols) {
  return {t.raw_data(), t.size(0), cols, t.size(1), kernels::DType::bf16};
}

// All-bf16 pooling runs natively on the GPU (pool.cu); it must give the CPU emulation's values: max
// forward (with the arg-max) and backward bitwise, averages within one bf16 ulp (the f32 kernels agree
// to 1e-6, so a rounding boundary may fall differently).
TEST_P(CudaPool, Bf16MatchesCpuEmulation) {
  SKIP_WITHOUT_CUDA();
  const PoolCase c = GetParam();
  const Sizes s(c.g);
  const engine::Device cpu = engine::Device::cpu(), gpu = engine::Device::cuda();
  const std::vector<float> x_host = pool_input(c, 37, true);
  const auto& [dy_host, dx_prior, dx_poison] = BackwardOperands(c, 38);
  auto run = [&](engine::Device device, bool accumulate) {
    const engine::Tensor x = bf16_matrix(x_host, s.in_rows, c.ldx, device);
    const engine::Tensor dy = bf16_matrix(dy_host, s.out_rows, c.ldy, device);
    const engine::Tensor y = bf16_matrix(std::vector<float>(size_t(s.out_rows * c.ldy), 0.0f), s.out_rows, c.ldy, device);
    const engine::Tensor y_avg = y.clone(), y_avg_padded = y.clone();
    const engine::Tensor dx = bf16_matrix(accumulate ? dx_prior : dx_poison, s.in_rows, c.ldx, device);
    const engine::Tensor dx_avg = dx.clone(), dx_avg_unpadded = dx.clone();
    const engine::Tensor argmax = engine::Tensor::empty({s.out_rows, s.channels}, device);
    auto* const cells = static_cast<int32_t*>(argmax.raw_data());
    if (device.is_cpu()) {
      kernels::cpu::max_pool2d_forward_argmax(c.g, view_of(x, s.channels), view_of(y, s.channels), cells);
      kernels::cpu::max_pool2d_backward_argmax(c.g, cells, view_of(dy, s.channels), view_of(dx, s.channels), accumulate);
      kernels::cpu::avg_pool2d_forward(c.g, false, view_of(x, s.channels), view_of(y_avg, s.channels));
      kernels::cpu::avg_pool2d_forward(c.g, true, view_of(x, s.channels), view_of(y_avg_padded, s.channels));
      kernels::cpu::avg_pool2d_backward(c.g, true, view_of(dy, s.channels), view_of(dx_avg, s.channels), accumulate);
      kernels::cpu::avg_pool2d_backward(c.g, false, view_of(dy, s.channels), view_of(dx_avg_unpadded, s.channels),
                                        accumulate);
    } else {
      kernels::cuda::max_pool2d_forward_argmax(c.g, view_of(x, s.channels), view_of(y, s.channels), cells);
      kernels::cuda::max_pool2d_backward_argmax(c.g, cells, view_of(dy, s.channels), view_of(dx, s.channels), accumulate);
      kernels::cuda::avg_pool2d_forward(c.g, false, view_of(x, s.channels), view_of(y_avg, s.channels));
      kernels::cuda::avg_pool2d_forward(c.g, true, view_of(x, s.channels), view_of(y_avg_padded, s.channels));
      kernels::cuda::avg_pool2d_backward(c.g, true, view_of(dy, s.channels), view_of(dx_avg, s.channels), accumulate);
      kernels::cuda::avg_pool2d_backward(c.g, false, view_of(dy, s.channels), view_of(dx_avg_unpadded, s.channels),
                                         accumulate);
    }
    return std::vector<std::vector<float>>{dense_part(y.to_vector(), s.out_rows, s.channels, c.ldy),
                                           dense_part(dx.to_vector(), s.in_rows, s.channels, c.ldx),
                                           dense_part(y_avg.to_vector(), s.out_rows, s.channels, c.ldy),
                                           dense_part(dx_avg.to_vector(), s.in_rows, s.channels, c.ldx),
                                           dense_part(y_avg_padded.to_vector(), s.out_rows, s.channels, c.ldy),
                                           dense_part(dx_avg_unpadded.to_vector(), s.in_rows, s.channels, c.ldx)};
  };
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const auto ref = run(cpu, accumulate), got = run(gpu, accumulate);
    EXPECT_TRUE(bitwise_equal(got[0], ref[0])) << "max forward";
    EXPECT_TRUE(bitwise_equal(got[1], ref[1])) << "max backward";
    EXPECT_TRUE(close(got[2], ref[2], 1e-6, 8e-3)) << "average forward";
    EXPECT_TRUE(close(got[3], ref[3], 1e-6, 8e-3)) << "average backward";
    EXPECT_TRUE(close(got[4], ref[4], 1e-6, 8e-3)) << "average forward, padding counted";
    EXPECT_TRUE(close(got[5], ref[5], 1e-6, 8e-3)) << "average backward, padding not counted";
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
        PoolCase{"padding_only_windows_1x1_p1", geometry(2, 3, 4, 3, 1, 1, 1, 1, 1, 1, 1, 1), 3, 4},
        // Strides larger than the kernel (1x2, strides 2x3): input cells in no window at all, between
        // windows, whose gradient is 0 (or the prior)
        PoolCase{"stride_over_kernel_1x2_s2x3", geometry(2, 9, 9, 6, 1, 2, 2, 3, 0, 0, 0, 1), 8, 6}),
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

// All-bf16 global average pooling runs natively: the CPU emulation's values within one bf16 ulp.
TEST_P(CudaGlobalAvgPool, Bf16MatchesCpuEmulation) {
  SKIP_WITHOUT_CUDA();
  const GlobalCase c = GetParam();
  const int64_t rows = c.batch * c.hw, C = c.channels;
  const std::vector<float> x_host = strided(away_from_zero(size_t(rows * C), 41), rows, C, c.ldx, 0.0f);
  const std::vector<float> dy_host = away_from_zero(size_t(c.batch * C), 42);
  const std::vector<float> dx_prior = strided(away_from_zero(size_t(rows * C), 43), rows, C, c.ldx, 0.0f);
  auto run = [&](engine::Device device, bool accumulate) {
    const engine::Tensor x = bf16_matrix(x_host, rows, c.ldx, device);
    const engine::Tensor y = bf16_matrix(std::vector<float>(size_t(c.batch * C), 0.0f), c.batch, C, device);
    const engine::Tensor dy = bf16_matrix(dy_host, c.batch, C, device);
    const engine::Tensor dx = bf16_matrix(accumulate ? dx_prior : std::vector<float>(dx_prior.size(), kNaN), rows,
                                          c.ldx, device);
    if (device.is_cpu()) {
      kernels::cpu::global_avg_pool_forward(c.hw, view_of(x, C), view_of(y, C));
      kernels::cpu::global_avg_pool_backward(c.hw, view_of(dy, C), view_of(dx, C), accumulate);
    } else {
      kernels::cuda::global_avg_pool_forward(c.hw, view_of(x, C), view_of(y, C));
      kernels::cuda::global_avg_pool_backward(c.hw, view_of(dy, C), view_of(dx, C), accumulate);
    }
    return std::vector<std::vector<float>>{y.to_vector(), dense_part(dx.to_vector(), rows, C, c.ldx)};
  };
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const auto ref = run(engine::Device::cpu(), accumulate), got = run(engine::Device::cuda(), accumulate);
    EXPECT_TRUE(close(got[0], ref[0], 1e-6, 8e-3)) << "forward";
    EXPECT_TRUE(close(got[1], ref[1], 1e-6, 8e-3)) << "backward";
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
