// GPU convolutions (kernels/cuda/conv_cudnn.cpp, cuDNN) against the CPU reference
// (kernels/cpu/conv.cpp, im2col + OpenBLAS): forward with and without bias, backward data and
// backward filter (+ bias gradient), overwrite and accumulate, on DenseNet and Inception-ResNet-v2
// shapes, asymmetric TF 'same' padding, channel slices of wider buffers (row strides with NaN in the
// input gaps and a sentinel in the output gaps), the deterministic mode (two runs bitwise equal) and a
// zero workspace limit. Outputs are NaN before an overwrite. Both algorithm searches (timed, the
// default, and heuristic), including a timed first call that accumulates. The fused conv + bias + ReLU
// inference forward (f32, its output NaN beforehand: cuDNN must not read it as z), and the fused residual
// tail act(r + s (conv + bias)) (z = r). bf16 operands through
// the mixed-precision kernels (forward with and without bias, backward data overwrite and accumulate,
// backward filter of bf16 x and dy), the CPU's widen-compute-round-once as the reference.
// Tolerances (atol + rtol |ref|), scaled by the largest reference magnitude R of the output:
//   TF32 off (true FP32, any cuDNN algorithm incl. FFT/Winograd): 1e-4 R + 1e-4 |ref|
//   TF32 on (inputs rounded to 10 mantissa bits):                 1e-2 R + 1e-2 |ref|
//   bf16 outputs: 1e-4 R + 8e-3 |ref| (f32 sums in another order may cross a rounding boundary: one bf16
//     ulp, at most 2^-7 = 7.8e-3 of the value); the forward with a bias 8e-3 (R + B) + 8e-3 |ref|, B the
//     largest |bias|, as the GPU rounds cuDNN's bf16 result and then its sum with the f32 bias
//   dw from bf16 x and dy, rounded once to bf16 (the mixed-precision weight gradient, conv.h): as bf16
//     outputs (added to a prior: 8e-3 R); dbias, f32 sums of exact values: as TF32 off
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/ops/common.h"
#include "engine/tensor.h"
#include "gpu_test_util.h"
#include "kernels/conv.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

constexpr auto* geometry = &test_support::conv_geometry;  // a convolution case's geometry

using namespace gpu_test;
using kernels::Conv2dGeometry;

using ConvCase = test_support::StridedCase<Conv2dGeometry>;

// Host operands of one case: x and dy strided with NaN gaps, weights scaled to keep outputs O(1).
struct Operands {
  int64_t x_rows, y_rows, taps;
  std::vector<float> x, w, bias, dy;
  explicit Operands(const ConvCase& c) {
    const Conv2dGeometry& g = c.g;
    x_rows = g.batch * g.in_h * g.in_w;
    y_rows = g.batch * g.out_h() * g.out_w();
    taps = g.kernel_h * g.kernel_w * g.in_c;
    x = strided(away_from_zero(size_t(x_rows * g.in_c), 1), x_rows, g.in_c, c.ldx, kNaN);
    w = away_from_zero(size_t(g.out_c * taps), 2);
    const float w_scale = 1.0f / std::sqrt(float(taps));
    for (float& v : w) v *= w_scale;
    bias = away_from_zero(size_t(g.out_c), 3);
    dy = strided(away_from_zero(size_t(y_rows * g.out_c), 4), y_rows, g.out_c, c.ldy, kNaN);
  }
};

::testing::AssertionResult conv_close(const std::vector<float>& got, const std::vector<float>& ref,
                                      bool tf32) {
  const double tol = tf32 ? 1e-2 : 1e-4;
  return close(got, ref, tol * max_abs(ref), tol);
}

class CudaConv : public ::testing::TestWithParam<ConvCase> {};

void check_forward(const ConvCase& c, bool tf32) {
  SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(tf32);
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> y_start =
      strided(std::vector<float>(size_t(o.y_rows * g.out_c), kNaN), o.y_rows, g.out_c, c.ldy, kGapSentinel);
  DeviceBuffer x(o.x), w(o.w), bias(o.bias), y(y_start);
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(std::string(tf32 ? "TF32" : "FP32") + (with_bias ? ", bias" : ", no bias"));
    std::vector<float> ref = y_start;
    kernels::cpu::conv2d_forward(g, {o.x.data(), g.input_rows(), g.in_c, c.ldx}, o.w.data(),
                                 with_bias ? o.bias.data() : nullptr,
                                 {ref.data(), g.output_rows(), g.out_c, c.ldy});
    y.upload(y_start);
    kernels::cuda::conv2d_forward(g, {x.get(), g.input_rows(), g.in_c, c.ldx}, w.get(),
                                  with_bias ? bias.get() : nullptr,
                                  {y.get(), g.output_rows(), g.out_c, c.ldy});
    const std::vector<float> got = y.download();
    EXPECT_TRUE(conv_close(dense_part(got, o.y_rows, g.out_c, c.ldy),
                           dense_part(ref, o.y_rows, g.out_c, c.ldy), tf32));
    EXPECT_TRUE(gaps_untouched(got, y_start, o.y_rows, g.out_c, c.ldy));
  }
}

void check_backward_data(const ConvCase& c, bool tf32) {
  SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(tf32);
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> prior =
      strided(away_from_zero(size_t(o.x_rows * g.in_c), 5), o.x_rows, g.in_c, c.ldx, kGapSentinel);
  const std::vector<float> poison =
      strided(std::vector<float>(size_t(o.x_rows * g.in_c), kNaN), o.x_rows, g.in_c, c.ldx, kGapSentinel);
  DeviceBuffer dy(o.dy), w(o.w);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(std::string(tf32 ? "TF32" : "FP32") + (accumulate ? ", accumulate" : ", overwrite"));
    const std::vector<float>& start = accumulate ? prior : poison;
    std::vector<float> ref = start;
    kernels::cpu::conv2d_backward_data(g, {o.dy.data(), g.output_rows(), g.out_c, c.ldy},
                                       o.w.data(), {ref.data(), g.input_rows(), g.in_c, c.ldx},
                                       accumulate);
    DeviceBuffer dx(start);
    kernels::cuda::conv2d_backward_data(g, {dy.get(), g.output_rows(), g.out_c, c.ldy}, w.get(),
                                        {dx.get(), g.input_rows(), g.in_c, c.ldx}, accumulate);
    const std::vector<float> got = dx.download();
    EXPECT_TRUE(conv_close(dense_part(got, o.x_rows, g.in_c, c.ldx),
                           dense_part(ref, o.x_rows, g.in_c, c.ldx), tf32));
    EXPECT_TRUE(gaps_untouched(got, start, o.x_rows, g.in_c, c.ldx));
  }
}

void check_backward_filter(const ConvCase& c, bool tf32) {
  SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(tf32);
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> dw_prior = away_from_zero(size_t(g.out_c * o.taps), 6);
  const std::vector<float> db_prior = away_from_zero(size_t(g.out_c), 7);
  DeviceBuffer x(o.x), dy(o.dy);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(std::string(tf32 ? "TF32" : "FP32") + (accumulate ? ", accumulate" : ", overwrite"));
    const std::vector<float> dw_start = accumulate ? dw_prior : std::vector<float>(dw_prior.size(), kNaN);
    const std::vector<float> db_start = accumulate ? db_prior : std::vector<float>(db_prior.size(), kNaN);
    std::vector<float> dw_ref = dw_start, db_ref = db_start;
    kernels::cpu::conv2d_backward_filter(g, {o.x.data(), g.input_rows(), g.in_c, c.ldx},
                                         {o.dy.data(), g.output_rows(), g.out_c, c.ldy},
                                         dw_ref.data(), db_ref.data(), accumulate);
    DeviceBuffer dw(dw_start), db(db_start);
    kernels::cuda::conv2d_backward_filter(g, {x.get(), g.input_rows(), g.in_c, c.ldx},
                                          {dy.get(), g.output_rows(), g.out_c, c.ldy}, dw.get(),
                                          db.get(), accumulate);
    EXPECT_TRUE(conv_close(dw.download(), dw_ref, tf32)) << "dw";
    // The bias gradient is a plain column sum of dy (no TF32): tight.
    EXPECT_TRUE(close(db.download(), db_ref, 1e-5 * max_abs(db_ref), 1e-5)) << "dbias";
  }
}

TEST_P(CudaConv, ForwardFp32) {
  SKIP_WITHOUT_CUDA();
  check_forward(GetParam(), false);
}
TEST_P(CudaConv, ForwardTf32) {
  SKIP_WITHOUT_CUDA();
  check_forward(GetParam(), true);
}
TEST_P(CudaConv, BackwardDataFp32) {
  SKIP_WITHOUT_CUDA();
  check_backward_data(GetParam(), false);
}
TEST_P(CudaConv, BackwardDataTf32) {
  SKIP_WITHOUT_CUDA();
  check_backward_data(GetParam(), true);
}
TEST_P(CudaConv, BackwardFilterFp32) {
  SKIP_WITHOUT_CUDA();
  check_backward_filter(GetParam(), false);
}
TEST_P(CudaConv, BackwardFilterTf32) {
  SKIP_WITHOUT_CUDA();
  check_backward_filter(GetParam(), true);
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, CudaConv,
    ::testing::Values(
        // DenseNet bottleneck 1x1: 56x56, 128 of a 256-wide concatenation buffer -> 128 (batch 4)
        ConvCase{"densenet_1x1_56x56_128of256", geometry(4, 56, 56, 128, 128, 1, 1, 1, 1, 0, 0, 0, 0), 256, 128},
        // DenseNet 3x3 growth conv: 56x56x128 -> 32, written into a 160-wide concatenation slice
        ConvCase{"densenet_3x3_56x56_into_slice", geometry(4, 56, 56, 128, 32, 3, 3, 1, 1, 1, 1, 1, 1), 128, 160},
        // DenseNet-201's last block: 1x1 on 7x7x1920 -> 128
        ConvCase{"densenet_1x1_7x7x1920", geometry(4, 7, 7, 1920, 128, 1, 1, 1, 1, 0, 0, 0, 0), 1920, 128},
        // Inception-ResNet-v2 block17: 1x7 (pad 0/0/3/3) and 7x1 (pad 3/3/0/0) at 17x17
        ConvCase{"irv2_1x7_17x17", geometry(4, 17, 17, 128, 160, 1, 7, 1, 1, 0, 0, 3, 3), 128, 160},
        ConvCase{"irv2_7x1_17x17", geometry(4, 17, 17, 160, 192, 7, 1, 1, 1, 3, 3, 0, 0), 160, 384},
        // Inception-ResNet-v2 reduction: 3x3 stride 2 valid, 35 -> 17, read from a 320-wide slice
        ConvCase{"irv2_3x3s2_valid_35to17", geometry(2, 35, 35, 256, 384, 3, 3, 2, 2, 0, 0, 0, 0), 320, 384},
        // A 5x5 'same' convolution (Inception-v3 style) on 17x17x48 -> 64
        ConvCase{"inception_5x5_17x17", geometry(2, 17, 17, 48, 64, 5, 5, 1, 1, 2, 2, 2, 2), 48, 64},
        // Stem: 3x3 stride 2 valid on a 3-channel image (odd channel count)
        ConvCase{"stem_3x3s2_valid_rgb", geometry(2, 75, 75, 3, 32, 3, 3, 2, 2, 0, 0, 0, 0), 3, 32},
        // TF 'same' with stride 2 on an even size: asymmetric padding (0, 1, 0, 1)
        ConvCase{"tf_same_3x3s2_asymmetric", geometry(2, 16, 16, 24, 40, 3, 3, 2, 2, 0, 1, 0, 1), 32, 40},
        // TF 'same' with an even kernel, stride 1: asymmetric padding (0, 1, 0, 1)
        ConvCase{"tf_same_2x2s1_asymmetric", geometry(2, 9, 9, 7, 5, 2, 2, 1, 1, 0, 1, 0, 1), 9, 6},
        // 1x1 stride 2: a quarter of the input cells are read by nobody (their gradient is 0)
        ConvCase{"odd_1x1s2_uncovered_cells", geometry(3, 9, 9, 5, 7, 1, 1, 2, 2, 0, 0, 0, 0), 5, 7}),
    test_support::case_name<ConvCase>);

// An output y for case c before a forward: NaN in its elements, the sentinel in its gaps.
std::vector<float> poisoned_output(const ConvCase& c, const Operands& o) {
  return strided(std::vector<float>(size_t(o.y_rows * c.g.out_c), kNaN), o.y_rows, c.g.out_c, c.ldy, kGapSentinel);
}

// The GPU's forward output `got` against the CPU's `ref` (TF32 off), and its gaps as they were.
void expect_forward_matches(const std::vector<float>& got, const std::vector<float>& ref,
                            const std::vector<float>& y_start, const ConvCase& c, const Operands& o) {
  const int64_t cols = c.g.out_c;
  EXPECT_TRUE(conv_close(dense_part(got, o.y_rows, cols, c.ldy), dense_part(ref, o.y_rows, cols, c.ldy), false));
  EXPECT_TRUE(gaps_untouched(got, y_start, o.y_rows, cols, c.ldy));
}

void check_bias_relu_forward(const ConvCase& c) {
  SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(false);
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> y_start = poisoned_output(c, o);
  std::vector<float> ref = y_start;
  kernels::cpu::conv2d_bias_relu_forward(g, {o.x.data(), g.input_rows(), g.in_c, c.ldx}, o.w.data(), o.bias.data(),
                                         {ref.data(), g.output_rows(), g.out_c, c.ldy});
  DeviceBuffer x(o.x), w(o.w), bias(o.bias), y(y_start);
  kernels::cuda::conv2d_bias_relu_forward(g, {x.get(), g.input_rows(), g.in_c, c.ldx}, w.get(), bias.get(),
                                          {y.get(), g.output_rows(), g.out_c, c.ldy});
  expect_forward_matches(y.download(), ref, y_start, c, o);
}

// Inception-ResNet-v2's fused residual tail act(r + 0.17 (conv(x) + bias)) against the CPU's conv then
// scaled residual: cuDNN's fused call (dense y and residual, with the ReLU) or the GPU's own pair.
void check_scaled_residual_forward(const ConvCase& c) {
  SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(false);
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> y_start = poisoned_output(c, o);
  const std::vector<float> residual =
      strided(uniform(size_t(o.y_rows * g.out_c), 8), o.y_rows, g.out_c, c.ldy, kNaN);
  for (bool relu : {true, false}) {
    SCOPED_TRACE(relu ? "relu" : "no relu");
    std::vector<float> ref = y_start;
    kernels::cpu::conv2d_scaled_residual_forward(g, {o.x.data(), g.input_rows(), g.in_c, c.ldx}, o.w.data(),
                                                 o.bias.data(), 0.17f, {residual.data(), g.output_rows(), g.out_c, c.ldy},
                                                 {ref.data(), g.output_rows(), g.out_c, c.ldy}, relu);
    DeviceBuffer x(o.x), w(o.w), bias(o.bias), r(residual), y(y_start);
    kernels::cuda::conv2d_scaled_residual_forward(g, {x.get(), g.input_rows(), g.in_c, c.ldx}, w.get(), bias.get(),
                                                  0.17f, {r.get(), g.output_rows(), g.out_c, c.ldy},
                                                  {y.get(), g.output_rows(), g.out_c, c.ldy}, relu);
    expect_forward_matches(y.download(), ref, y_start, c, o);
  }
}

// --- bf16 through the mixed-precision kernels, on both devices ----------------------------------------

using engine::Device;
using engine::DType;
using engine::Tensor;

// A [rows, ld] buffer of `dtype` on `device` from host values (already strided), and its first `cols`
// columns as the operand.
struct Strided {
  Tensor buffer, view;
  Strided(const std::vector<float>& values, int64_t rows, int64_t cols, int64_t ld, Device device, DType dtype)
      : buffer(Tensor::from_vector({rows, ld}, values, Device::cpu(), dtype).to(device)),
        view(buffer.slice(1, 0, cols)) {}
};

const Device kDevices[] = {Device::cpu(), Device::cuda()};  // the reference first

void check_bf16_forward(const ConvCase& c) {
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> y_start = poisoned_output(c, o);
  for (bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "bias" : "no bias");
    std::vector<std::vector<float>> outputs, buffers;
    for (const Device device : kDevices) {
      const Strided x(o.x, o.x_rows, g.in_c, c.ldx, device, DType::bf16);
      const Tensor w = Tensor::from_vector({g.out_c, o.taps}, o.w, Device::cpu(), DType::bf16).to(device);
      const Tensor bias = Tensor::from_vector({g.out_c}, o.bias).to(device);
      const Strided y(y_start, o.y_rows, g.out_c, c.ldy, device, DType::bf16);
      ENGINE_KERNEL(device, conv2d_forward_mixed)(g, engine::detail::as_rows(x.view), engine::detail::as_rows(w),
                                                  with_bias ? bias.data() : nullptr, engine::detail::as_rows(y.view));
      outputs.push_back(y.view.to_vector());
      buffers.push_back(y.buffer.to_vector());
    }
    const double atol = with_bias ? 8e-3 * (max_abs(outputs[0]) + max_abs(o.bias)) : 1e-4 * max_abs(outputs[0]);
    EXPECT_TRUE(close(outputs[1], outputs[0], atol, 8e-3));
    EXPECT_TRUE(gaps_untouched(buffers[1], buffers[0], o.y_rows, g.out_c, c.ldy));
  }
}

void check_bf16_backward_data(const ConvCase& c) {
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> prior =
      strided(away_from_zero(size_t(o.x_rows * g.in_c), 5), o.x_rows, g.in_c, c.ldx, kGapSentinel);
  const std::vector<float> poison =
      strided(std::vector<float>(size_t(o.x_rows * g.in_c), kNaN), o.x_rows, g.in_c, c.ldx, kGapSentinel);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    std::vector<std::vector<float>> outputs, buffers;
    for (const Device device : kDevices) {
      const Strided dy(o.dy, o.y_rows, g.out_c, c.ldy, device, DType::bf16);
      const Tensor w = Tensor::from_vector({g.out_c, o.taps}, o.w, Device::cpu(), DType::bf16).to(device);
      const Strided dx(accumulate ? prior : poison, o.x_rows, g.in_c, c.ldx, device, DType::bf16);
      ENGINE_KERNEL(device, conv2d_backward_data_mixed)(g, engine::detail::as_rows(dy.view), engine::detail::as_rows(w),
                                                        engine::detail::as_rows(dx.view), accumulate);
      outputs.push_back(dx.view.to_vector());
      buffers.push_back(dx.buffer.to_vector());
    }
    EXPECT_TRUE(close(outputs[1], outputs[0], 1e-4 * max_abs(outputs[0]), 8e-3));
    EXPECT_TRUE(gaps_untouched(buffers[1], buffers[0], o.x_rows, g.in_c, c.ldx));
  }
}

void check_bf16_backward_filter(const ConvCase& c) {
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> dw_prior = away_from_zero(size_t(g.out_c * o.taps), 6);
  const std::vector<float> db_prior = away_from_zero(size_t(g.out_c), 7);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    std::vector<std::vector<float>> dws, dbs;
    for (const Device device : kDevices) {
      const Strided x(o.x, o.x_rows, g.in_c, c.ldx, device, DType::bf16);
      const Strided dy(o.dy, o.y_rows, g.out_c, c.ldy, device, DType::bf16);
      const Tensor dw = Tensor::from_vector({g.out_c, o.taps}, accumulate ? dw_prior : std::vector<float>(dw_prior.size(), kNaN)).to(device);
      const Tensor db = Tensor::from_vector({g.out_c}, accumulate ? db_prior : std::vector<float>(db_prior.size(), kNaN)).to(device);
      ENGINE_KERNEL(device, conv2d_backward_filter)(g, engine::detail::as_rows(x.view), engine::detail::as_rows(dy.view),
                                                    dw.data(), db.data(), accumulate);
      dws.push_back(dw.to_vector());
      dbs.push_back(db.to_vector());
    }
    // dW rounded once to bf16 on both (conv.h): one bf16 ulp where the sums' order crosses a rounding
    // boundary; added to the prior, that ulp is of the rounded part, bounded through the largest value.
    EXPECT_TRUE(close(dws[1], dws[0], (accumulate ? 8e-3 : 1e-4) * max_abs(dws[0]), 8e-3)) << "dw";
    EXPECT_TRUE(close(dbs[1], dbs[0], 1e-5 * max_abs(dbs[0]), 1e-5)) << "dbias";
  }
}

// The fused and bf16 passes fall back to their parts (or to f32) with the same answers where cuDNN runs
// no algorithm for them: each test says how many calls fell back (a "path:" line in the log and a
// "fallbacks" test property), so the GPU check's log shows where the fast path is missing. "No fallback
// noted" is not "all fused": calls that never try the fused or bf16 kernel (a residual without the ReLU,
// a strided y, bf16 backward data with asymmetric padding that accumulates) count as neither.
template <typename Check>
void check_and_report_path(const ConvCase& c, const char* what, Check check) {
  const int64_t before = kernels::cuda::conv_fallback_count();
  check();
  const int64_t fallbacks = kernels::cuda::conv_fallback_count() - before;
  ::testing::Test::RecordProperty("fallbacks", static_cast<int>(fallbacks));
  std::printf("path: %s, %s: %s\n", c.name, what,
              fallbacks == 0 ? "no fallback noted" : (std::to_string(fallbacks) + " call(s) fell back").c_str());
}

TEST_P(CudaConv, BiasReluForwardFp32) {
  SKIP_WITHOUT_CUDA();
  check_and_report_path(GetParam(), "conv + bias + ReLU", [this] { check_bias_relu_forward(GetParam()); });
}
TEST_P(CudaConv, ScaledResidualForward) {
  SKIP_WITHOUT_CUDA();
  check_and_report_path(GetParam(), "conv + scaled residual", [this] { check_scaled_residual_forward(GetParam()); });
}
TEST_P(CudaConv, Bf16Forward) {
  SKIP_WITHOUT_CUDA();
  check_and_report_path(GetParam(), "bf16 forward", [this] { check_bf16_forward(GetParam()); });
}
TEST_P(CudaConv, Bf16BackwardData) {
  SKIP_WITHOUT_CUDA();
  check_and_report_path(GetParam(), "bf16 backward data", [this] { check_bf16_backward_data(GetParam()); });
}
TEST_P(CudaConv, Bf16BackwardFilter) {
  SKIP_WITHOUT_CUDA();
  check_and_report_path(GetParam(), "bf16 backward filter", [this] { check_bf16_backward_filter(GetParam()); });
}

// Restores the algorithm search mode (SwitchesGuard keeps the other switches).
class SearchGuard {
 public:
  SearchGuard() : search_(kernels::cuda::conv_algo_search()) {}
  ~SearchGuard() { kernels::cuda::set_conv_algo_search(search_); }
  SearchGuard(const SearchGuard&) = delete;
  SearchGuard& operator=(const SearchGuard&) = delete;

 private:
  kernels::cuda::ConvAlgoSearch search_;
};

// Both searches give right results on every pass; the switch reads back with its name.
TEST(CudaConvModes, HeuristicAndTimedSearchesBothMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  SearchGuard search;
  using kernels::cuda::ConvAlgoSearch;
  for (ConvAlgoSearch mode : {ConvAlgoSearch::heuristic, ConvAlgoSearch::timed}) {
    kernels::cuda::set_conv_algo_search(mode);
    ASSERT_EQ(kernels::cuda::conv_algo_search(), mode);
    SCOPED_TRACE(kernels::cuda::conv_algo_search_name(mode));
    const ConvCase c{"3x3_search", geometry(2, 19, 19, 24, 40, 3, 3, 1, 1, 1, 1, 1, 1), 32, 40};
    check_forward(c, false);
    check_backward_data(c, false);
    check_backward_filter(c, false);
    check_bias_relu_forward(c);
  }
  EXPECT_STREQ(kernels::cuda::conv_algo_search_name(ConvAlgoSearch::timed), "timed");
  EXPECT_STREQ(kernels::cuda::conv_algo_search_name(ConvAlgoSearch::heuristic), "heuristic");
}

// The timed search runs the candidates into a scratch output: a first call (a new plan) that
// accumulates adds its result once.
TEST(CudaConvModes, TimedFirstCallThatAccumulatesAddsOnce) {
  SKIP_WITHOUT_CUDA();
  SwitchesGuard guard;
  SearchGuard search;
  kernels::cuda::set_conv_algo_search(kernels::cuda::ConvAlgoSearch::timed);
  kernels::cuda::set_allow_tf32(false);
  const ConvCase c{"first_call_accumulates", geometry(3, 13, 11, 20, 28, 3, 3, 1, 1, 1, 1, 1, 1), 20, 28};
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  const std::vector<float> dx_prior =
      strided(away_from_zero(size_t(o.x_rows * g.in_c), 8), o.x_rows, g.in_c, c.ldx, kGapSentinel);
  const std::vector<float> dw_prior = away_from_zero(size_t(g.out_c * o.taps), 9);
  std::vector<float> dx_ref = dx_prior, dw_ref = dw_prior;
  kernels::cpu::conv2d_backward_data(g, {o.dy.data(), g.output_rows(), g.out_c, c.ldy}, o.w.data(),
                                     {dx_ref.data(), g.input_rows(), g.in_c, c.ldx}, true);
  kernels::cpu::conv2d_backward_filter(g, {o.x.data(), g.input_rows(), g.in_c, c.ldx},
                                       {o.dy.data(), g.output_rows(), g.out_c, c.ldy}, dw_ref.data(), nullptr, true);
  DeviceBuffer x(o.x), w(o.w), dy(o.dy), dx(dx_prior), dw(dw_prior);
  kernels::cuda::conv2d_backward_data(g, {dy.get(), g.output_rows(), g.out_c, c.ldy}, w.get(),
                                      {dx.get(), g.input_rows(), g.in_c, c.ldx}, true);
  kernels::cuda::conv2d_backward_filter(g, {x.get(), g.input_rows(), g.in_c, c.ldx},
                                        {dy.get(), g.output_rows(), g.out_c, c.ldy}, dw.get(), nullptr, true);
  EXPECT_TRUE(conv_close(dense_part(dx.download(), o.x_rows, g.in_c, c.ldx),
                         dense_part(dx_ref, o.x_rows, g.in_c, c.ldx), false)) << "dx";
  EXPECT_TRUE(conv_close(dw.download(), dw_ref, false)) << "dw";
}

// Deterministic mode: backward data and filter give bitwise the same results twice.
TEST(CudaConvModes, DeterministicBackwardIsBitwiseRepeatable) {
  SKIP_WITHOUT_CUDA();
  SwitchesGuard guard;
  kernels::cuda::set_deterministic(true);
  const ConvCase c{"densenet_3x3", geometry(4, 28, 28, 64, 32, 3, 3, 1, 1, 1, 1, 1, 1), 64, 32};
  const Operands o(c);
  const Conv2dGeometry& g = c.g;
  DeviceBuffer x(o.x), w(o.w), dy(o.dy), dx(size_t(o.x_rows * g.in_c)), dw(size_t(g.out_c * o.taps)),
      db(static_cast<size_t>(g.out_c));
  std::vector<float> first_dx, first_dw, first_db;
  for (int run = 0; run < 2; ++run) {
    kernels::cuda::conv2d_backward_data(g, {dy.get(), g.output_rows(), g.out_c, c.ldy}, w.get(),
                                        {dx.get(), g.input_rows(), g.in_c, c.ldx}, false);
    kernels::cuda::conv2d_backward_filter(g, {x.get(), g.input_rows(), g.in_c, c.ldx},
                                          {dy.get(), g.output_rows(), g.out_c, c.ldy}, dw.get(),
                                          db.get(), false);
    if (run == 0) {
      first_dx = dx.download(), first_dw = dw.download(), first_db = db.download();
      continue;
    }
    EXPECT_TRUE(bitwise_equal(dx.download(), first_dx)) << "dx";
    EXPECT_TRUE(bitwise_equal(dw.download(), first_dw)) << "dw";
    EXPECT_TRUE(bitwise_equal(db.download(), first_db)) << "dbias";
  }
}

// With no workspace allowed, algorithms that need none are chosen and the results are still right.
TEST(CudaConvModes, ZeroWorkspaceLimit) {
  SKIP_WITHOUT_CUDA();
  SwitchesGuard guard;
  kernels::cuda::set_conv_workspace_limit(0);
  kernels::cuda::set_allow_tf32(false);
  const ConvCase c{"3x3_zero_workspace", geometry(2, 20, 20, 16, 24, 3, 3, 1, 1, 1, 1, 1, 1), 20, 24};
  check_forward(c, false);
  check_backward_data(c, false);
  check_backward_filter(c, false);
}

TEST(CudaConvModes, InvalidGeometryThrows) {
  SKIP_WITHOUT_CUDA();
  DeviceBuffer buffer(64);
  const Conv2dGeometry g = geometry(1, 4, 4, 1, 1, 3, 3, 1, 1, -1, 1, 1, 1);  // negative padding
  EXPECT_THROW(
      kernels::cuda::conv2d_forward(g, {buffer.get(), g.input_rows(), g.in_c, 1}, buffer.get(),
                                    nullptr, {buffer.get(), g.output_rows(), g.out_c, 1}),
      std::runtime_error);
}

}  // namespace

#else

TEST(CudaConv, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
