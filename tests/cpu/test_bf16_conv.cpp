// The CPU's mixed-precision convolution forward (kernels/conv.h: conv2d_forward_mixed): on a bf16
// channel slice of a wider buffer (row-strided x) and into a bf16 channel slice (row-strided y), y is
// bit for bit the f32 forward of the exactly widened inputs rounded once (the definition), and the
// channels around the output slice are untouched; x and w of different types, and a w that is not
// [out_c, kh * kw * in_c], are refused. The same definition for the forward with an f32 bias and for
// the mixed backward data (conv2d_backward_data_mixed, overwrite and accumulate). Accuracy against a
// double reference is the op table's (tests/support/op_table_conv.cpp, the bf16_* entries).
// And the inference op conv2d_bias_relu: relu(conv2d(...)) bit for bit on f32 and bf16 inputs, refused
// when a gradient is wanted.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "engine/tensor.h"
#include "kernels/conv.h"

namespace {

using engine::Device;
using engine::DType;
using engine::Tensor;

std::vector<float> ramp(int64_t n, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = scale * float((i * 37) % 101 - 50) / 50.0f;
  return v;
}

TEST(Bf16Conv, IsTheF32ForwardOfTheWidenedInputsRoundedOnceOnStridedViews) {
  kernels::Conv2dGeometry g;
  g.batch = 2, g.in_h = 6, g.in_w = 5, g.in_c = 4, g.out_c = 3, g.kernel_h = 3, g.kernel_w = 2;
  g.stride_h = 2, g.pad_top = 1, g.pad_bottom = 1, g.pad_left = 0, g.pad_right = 1;
  const int64_t w_cols = g.kernel_h * g.kernel_w * g.in_c;
  // x: channels [2, 6) of a [2, 6, 5, 9] bf16 buffer; y: channels [1, 4) of a [.., 5] bf16 buffer.
  const Tensor x_buffer = Tensor::from_vector({2, 6, 5, 9}, ramp(2 * 6 * 5 * 9, 1.3f), Device::cpu(), DType::bf16);
  const Tensor x = x_buffer.slice(3, 2, 6);
  const Tensor w = Tensor::from_vector({g.out_c, w_cols}, ramp(g.out_c * w_cols, 0.4f), Device::cpu(), DType::bf16);
  const Tensor y_buffer =
      Tensor::from_vector({g.output_rows(), 5}, std::vector<float>(size_t(g.output_rows() * 5), 7.0f), Device::cpu(),
                          DType::bf16);
  const Tensor y = y_buffer.slice(1, 1, 4);
  kernels::cpu::conv2d_forward_mixed(g, engine::detail::as_rows(x), engine::detail::as_rows(w), nullptr,
                                     engine::detail::as_rows(y));

  // The definition: f32 copies, the f32 forward, one rounding.
  const Tensor x32 = x.to(DType::f32), w32 = w.to(DType::f32);
  const Tensor y32 = Tensor::empty({g.output_rows(), g.out_c});
  kernels::cpu::conv2d_forward(g, engine::detail::as_rows(x32), w32.data(), nullptr, engine::detail::as_rows(y32));
  const Tensor expected = y32.to(DType::bf16);
  const Tensor got = y.contiguous();
  EXPECT_EQ(std::memcmp(got.raw_data(), expected.raw_data(), size_t(got.numel()) * 2), 0);
  const std::vector<float> all = y_buffer.to_vector();
  for (int64_t r = 0; r < g.output_rows(); ++r) {
    EXPECT_EQ(all[size_t(r * 5 + 0)], 7.0f) << "row " << r;
    EXPECT_EQ(all[size_t(r * 5 + 4)], 7.0f) << "row " << r;
  }
}

TEST(Bf16Conv, MixedInputTypesAndAMisshapenFilterAreRefused) {
  kernels::Conv2dGeometry g;
  g.batch = 1, g.in_h = 3, g.in_w = 3, g.in_c = 2, g.out_c = 2, g.kernel_h = 1, g.kernel_w = 1;
  const Tensor x = Tensor::zeros({9, 2});
  const Tensor w16 = Tensor::zeros({2, 2}).to(DType::bf16);
  const Tensor y = Tensor::empty({9, 2}, Device::cpu(), DType::bf16);
  const auto message = [&](const Tensor& xx, const Tensor& ww) {
    try {
      kernels::cpu::conv2d_forward_mixed(g, engine::detail::as_rows(xx), engine::detail::as_rows(ww), nullptr,
                                         engine::detail::as_rows(y));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(x, w16).find("conv2d_forward_mixed: x is f32 and w bf16; both must be f32 or both bf16"),
            std::string::npos);
  EXPECT_NE(message(x.to(DType::bf16), Tensor::zeros({2, 3}).to(DType::bf16))
                .find("conv2d_forward_mixed: expected a [2, 2] matrix, got [2, 3]"),
            std::string::npos);
  EXPECT_EQ(message(x.to(DType::bf16), w16), "");
}

// Rows of a [rows, cols] bf16 matrix with row stride cols + 3 (a channel slice), from ramp values.
Tensor bf16_slice(int64_t rows, int64_t cols, float scale) {
  const Tensor wide = Tensor::from_vector({rows, cols + 3}, ramp(rows * (cols + 3), scale), Device::cpu(), DType::bf16);
  return wide.slice(1, 1, cols + 1);
}

kernels::Conv2dGeometry mixed_geometry() {
  kernels::Conv2dGeometry g;
  g.batch = 2, g.in_h = 7, g.in_w = 6, g.in_c = 5, g.out_c = 4, g.kernel_h = 3, g.kernel_w = 3;
  g.stride_h = 2, g.stride_w = 1, g.pad_top = 0, g.pad_bottom = 1, g.pad_left = 1, g.pad_right = 1;
  return g;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.numel() == cb.numel() && std::memcmp(ca.raw_data(), cb.raw_data(), size_t(ca.numel()) * 2) == 0;
}

TEST(Bf16Conv, ForwardWithABiasIsTheWidenedF32ForwardRoundedOnce) {
  const kernels::Conv2dGeometry g = mixed_geometry();
  const int64_t w_cols = g.kernel_h * g.kernel_w * g.in_c;
  const Tensor x = bf16_slice(g.input_rows(), g.in_c, 1.1f);
  const Tensor w = Tensor::from_vector({g.out_c, w_cols}, ramp(g.out_c * w_cols, 0.3f), Device::cpu(), DType::bf16);
  const Tensor bias = Tensor::from_vector({g.out_c}, {0.25f, -1.5f, 3.0f, 0.0078125f});
  const Tensor y = bf16_slice(g.output_rows(), g.out_c, 9.0f);
  kernels::cpu::conv2d_forward_mixed(g, engine::detail::as_rows(x), engine::detail::as_rows(w), bias.data(),
                                     engine::detail::as_rows(y));
  const Tensor x32 = x.to(DType::f32), w32 = w.to(DType::f32);
  const Tensor y32 = Tensor::empty({g.output_rows(), g.out_c});
  kernels::cpu::conv2d_forward(g, engine::detail::as_rows(x32), w32.data(), bias.data(), engine::detail::as_rows(y32));
  EXPECT_TRUE(same_bits(y, y32.to(DType::bf16)));
}

TEST(Bf16Conv, BackwardDataIsTheWidenedF32BackwardRoundedOnce) {
  const kernels::Conv2dGeometry g = mixed_geometry();
  const int64_t w_cols = g.kernel_h * g.kernel_w * g.in_c;
  const Tensor dy = bf16_slice(g.output_rows(), g.out_c, 0.7f);
  const Tensor w = Tensor::from_vector({g.out_c, w_cols}, ramp(g.out_c * w_cols, 0.3f), Device::cpu(), DType::bf16);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const Tensor dx = bf16_slice(g.input_rows(), g.in_c, 2.0f);
    Tensor dx32 = dx.to(DType::f32);  // the widened prior (read when accumulating)
    kernels::cpu::conv2d_backward_data_mixed(g, engine::detail::as_rows(dy), engine::detail::as_rows(w),
                                             engine::detail::as_rows(dx), accumulate);
    const Tensor dy32 = dy.to(DType::f32), w32 = w.to(DType::f32);
    kernels::cpu::conv2d_backward_data(g, engine::detail::as_rows(dy32), w32.data(), engine::detail::as_rows(dx32),
                                       accumulate);
    EXPECT_TRUE(same_bits(dx, dx32.to(DType::bf16)));
  }
}

TEST(Bf16Conv, BiasReluOpIsReluOfConv2dBitForBit) {
  const engine::NoGradGuard no_grad;
  const engine::Conv2dOptions options = engine::Conv2dOptions::same(7, 6, 3, 3, 2);  // asymmetric padding
  const Tensor weight = Tensor::from_vector({4, 3, 3, 5}, ramp(4 * 3 * 3 * 5, 0.3f));
  const Tensor bias = Tensor::from_vector({4}, {0.25f, -1.5f, 3.0f, -0.5f});
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(engine::dtype_name(dtype));
    const Tensor x = Tensor::from_vector({2, 7, 6, 5}, ramp(2 * 7 * 6 * 5, 1.1f), Device::cpu(), dtype);
    for (const Tensor& b : {bias, Tensor()}) {
      const Tensor fused = engine::conv2d_bias_relu(x, weight, b, options);
      const Tensor reference = engine::relu(engine::conv2d(x, weight, b, options));
      ASSERT_EQ(fused.dtype(), dtype);
      ASSERT_EQ(fused.shape(), reference.shape());
      const Tensor f32_fused = fused.to(DType::f32), f32_reference = reference.to(DType::f32);
      EXPECT_EQ(std::memcmp(f32_fused.raw_data(), f32_reference.raw_data(), size_t(fused.numel()) * 4), 0);
    }
  }
}

TEST(Bf16Conv, BiasReluOpRefusesAGradient) {
  const Tensor x = Tensor::zeros({1, 3, 3, 2});
  Tensor weight = Tensor::zeros({2, 1, 1, 2});
  weight.set_requires_grad(true);
  try {
    engine::conv2d_bias_relu(x, weight, Tensor(), engine::Conv2dOptions::valid());
    ADD_FAILURE() << "a weight that requires a gradient was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d_bias_relu is for inference and has no backward"), std::string::npos)
        << e.what();
  }
  const engine::NoGradGuard no_grad;
  EXPECT_EQ(engine::conv2d_bias_relu(x, weight, Tensor(), engine::Conv2dOptions::valid()).shape(),
            (engine::Shape{1, 3, 3, 2}));
}

}  // namespace
