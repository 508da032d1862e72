// conv2d: forward through the device's conv2d_forward (im2col + GEMM on the CPU, cuDNN on the GPU); backward gives dx (backward-data), dweight
// (backward-filter) and dbias. Shapes: x [N, H, W, I], weight [O, KH, KW, I], out [N, OH, OW, O].
// A bf16 x (docs/precision.md) gives a bf16 y and dx through the mixed-precision kernels: they read the
// weight as its bf16 working copy (detail::bf16_working_copy), accumulate in f32, add the f32 bias and round
// y once (cuDNN bf16 on the GPU); dweight and dbias stay f32.
// conv2d_bias_relu: the inference forward relu(conv2d(x, w, b)) through conv2d_bias_relu_forward (one
// cuDNN call on the GPU), no backward.
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/conv.h"

namespace engine {
namespace {

// The weight the kernels read: for a bf16 input its bf16 working copy (the mixed-precision kernels take it
// as it is); for an f32 input the weight in f32, dense (a bf16 weight widened exactly).
Tensor kernel_weight(const Tensor& weight, DType input_dtype) {
  if (input_dtype == DType::bf16) return detail::bf16_working_copy(weight);
  return weight.dtype() == DType::bf16 ? weight.to(DType::f32) : weight.contiguous();
}

// A dense weight [O, KH, KW, I] as the kernels' dense [O, KH * KW * I] view.
kernels::ConstMatrixView weight_rows(const Tensor& w) {
  const int64_t cols = w.size(1) * w.size(2) * w.size(3);
  return {w.raw_data(), w.size(0), cols, cols, w.dtype()};
}

// The f32 weight the fused inference kernels read: for a bf16 x the bf16 working copy widened exactly, as
// conv2d reads it; else the weight in f32.
Tensor f32_kernel_weight(const Tensor& weight, DType input_dtype) {
  return input_dtype == DType::bf16 ? detail::bf16_working_copy(weight).to(DType::f32)
                                    : kernel_weight(weight, DType::f32);
}

// The geometry of conv2d(x, weight, options), checked.
kernels::Conv2dGeometry conv_geometry(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                      const Conv2dOptions& options) {
  ENGINE_CHECK(x.ndim() == 4) << op << ": input must be NHWC [N, H, W, C], got " << x.str();
  ENGINE_CHECK(weight.ndim() == 4 && weight.size(3) == x.size(3))
      << op << ": weight must be OHWI [O, KH, KW, " << x.size(3) << "], got " << weight.str();
  ENGINE_CHECK(options.stride_h > 0 && options.stride_w > 0) << op << ": strides must be positive";
  kernels::Conv2dGeometry g;
  g.batch = x.size(0), g.in_h = x.size(1), g.in_w = x.size(2), g.in_c = x.size(3);
  g.out_c = weight.size(0), g.kernel_h = weight.size(1), g.kernel_w = weight.size(2);
  g.stride_h = options.stride_h, g.stride_w = options.stride_w;
  g.pad_top = options.pad_top, g.pad_bottom = options.pad_bottom;
  g.pad_left = options.pad_left, g.pad_right = options.pad_right;
  ENGINE_CHECK(g.in_h + g.pad_top + g.pad_bottom >= g.kernel_h && g.in_w + g.pad_left + g.pad_right >= g.kernel_w)
      << op << ": kernel " << g.kernel_h << "x" << g.kernel_w << " larger than the padded input " << x.str();
  ENGINE_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.size(0) == g.out_c))
      << op << ": bias must be [" << g.out_c << "], got " << bias.str();
  return g;
}

}  // namespace

Conv2dOptions Conv2dOptions::same(int64_t in_h, int64_t in_w, int64_t kernel_h, int64_t kernel_w,
                                  int64_t stride) {
  // TF: out = ceil(in / stride); total padding = max((out - 1) * stride + kernel - in, 0), the extra cell
  // at the end.
  auto pads = [stride](int64_t in, int64_t kernel) {
    const int64_t out = (in + stride - 1) / stride;
    const int64_t total = std::max<int64_t>((out - 1) * stride + kernel - in, 0);
    return std::pair<int64_t, int64_t>(total / 2, total - total / 2);
  };
  const auto [top, bottom] = pads(in_h, kernel_h);
  const auto [left, right] = pads(in_w, kernel_w);
  return {stride, stride, top, bottom, left, right};
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
              const Tensor& out) {
  detail::check_same_device("conv2d", {x, weight, bias, out});
  const kernels::Conv2dGeometry g = conv_geometry("conv2d", x, weight, bias, options);
  const Shape out_shape{g.batch, g.out_h(), g.out_w(), g.out_c};
  Tensor y = detail::output_or_new("conv2d", out, out_shape, x.device(), x.dtype());

  const Tensor xr = detail::as_row_matrix(x);
  const bool mixed = x.dtype() == DType::bf16;
  const Tensor w = kernel_weight(weight, x.dtype());
  const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  if (mixed)
    ENGINE_KERNEL(x.device(), conv2d_forward_mixed)(g, detail::as_rows(xr), weight_rows(w), detail::data_or_null(b),
                                                    detail::as_rows(y));
  else
    ENGINE_KERNEL(x.device(), conv2d_forward)(g, detail::as_rows(xr), w.data(), detail::data_or_null(b),
                                              detail::as_rows(y));

  const bool need_dx = x.requires_grad();
  const bool need_dw = weight.requires_grad() || (bias.defined() && bias.requires_grad());
  record(y, "conv2d", {x, weight, bias},
         [g, xr, w, mixed, has_bias = bias.defined(), need_dx, need_dw](const Tensor& dy_in) {
           const Tensor dy = detail::as_row_matrix(dy_in);
           const detail::Rows dym = detail::as_rows(dy);
           Tensor dx = need_dx ? Tensor::empty(xr.shape(), xr.device(), xr.dtype()) : Tensor();
           Tensor dw = need_dw ? Tensor::empty(w.shape(), w.device()) : Tensor();  // f32
           Tensor db = need_dw && has_bias ? Tensor::empty({g.out_c}, w.device()) : Tensor();
           if (need_dx && mixed)
             ENGINE_KERNEL(dy.device(), conv2d_backward_data_mixed)(g, dym, weight_rows(w), detail::as_rows(dx), false);
           else if (need_dx)
             ENGINE_KERNEL(dy.device(), conv2d_backward_data)(g, dym, w.data(), detail::as_rows(dx), false);
           if (need_dw)
             ENGINE_KERNEL(dy.device(), conv2d_backward_filter)(g, detail::as_rows(xr), dym, dw.data(),
                                                                detail::data_or_null(db), false);
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

namespace {

// What the fused inference convolutions share: the refusal where a gradient would be wanted (they have no
// backward; `instead` names the ops to train with), the checked geometry, x as a row matrix, the f32
// weight the kernels read and a bias (zeros when there is none).
struct FusedConvOperands {
  kernels::Conv2dGeometry g;
  Tensor xr, w, b;
};

FusedConvOperands fused_conv_operands(const char* op, const char* instead, const Tensor& x, const Tensor& weight,
                                      const Tensor& bias, const Tensor& residual, const Conv2dOptions& options) {
  const bool wants_grad = x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()) ||
                          (residual.defined() && residual.requires_grad());
  ENGINE_USER_CHECK(!(grad_enabled() && wants_grad))
      << op << " is for inference and has no backward; call it under a NoGradGuard, or use " << instead
      << " when training";
  FusedConvOperands o;
  o.g = conv_geometry(op, x, weight, bias, options);
  o.xr = detail::as_row_matrix(x);
  o.w = f32_kernel_weight(weight, x.dtype());
  o.b = bias.defined() ? bias.contiguous() : Tensor::zeros({o.g.out_c}, x.device());
  return o;
}

}  // namespace

Tensor conv2d_bias_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
                        const Tensor& out) {
  detail::check_same_device("conv2d_bias_relu", {x, weight, bias, out});
  const FusedConvOperands o = fused_conv_operands("conv2d_bias_relu", "relu(conv2d(x, weight, bias, options))", x,
                                                  weight, bias, Tensor(), options);
  Tensor y = detail::output_or_new("conv2d_bias_relu", out, {o.g.batch, o.g.out_h(), o.g.out_w(), o.g.out_c},
                                   x.device(), x.dtype());
  ENGINE_KERNEL(x.device(), conv2d_bias_relu_forward)(o.g, detail::as_rows(o.xr), o.w.data(), o.b.data(),
                                                      detail::as_rows(y));
  return y;
}

Tensor conv2d_scaled_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                              float scale, bool relu, const Conv2dOptions& options) {
  detail::check_same_device("conv2d_scaled_residual", {x, weight, bias, residual});
  const FusedConvOperands o =
      fused_conv_operands("conv2d_scaled_residual", "scaled_residual(residual, conv2d(x, weight, bias, options), "
                          "scale, relu)", x, weight, bias, residual, options);
  ENGINE_CHECK(residual.shape() == Shape({o.g.batch, o.g.out_h(), o.g.out_w(), o.g.out_c}))
      << "conv2d_scaled_residual: the residual " << residual.str() << " is not the convolution's output shape";
  Tensor y = Tensor::empty(residual.shape(), x.device(), residual.dtype());
  const Tensor rr = detail::as_row_matrix(residual);
  ENGINE_KERNEL(x.device(), conv2d_scaled_residual_forward)(o.g, detail::as_rows(o.xr), o.w.data(), o.b.data(), scale,
                                                            detail::as_rows(rr), detail::as_rows(y), relu);
  return y;
}

}  // namespace engine
