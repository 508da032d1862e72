// conv2d: forward through the device's conv2d_forward (im2col + GEMM on the CPU, cuDNN on the GPU); backward gives dx (backward-data), dweight
// (backward-filter) and dbias. Shapes: x [N, H, W, I], weight [O, KH, KW, I], out [N, OH, OW, O].
// A bf16 x (docs/precision.md) gives a bf16 y and dx: the kernels read the weight as its bf16 working copy
// (an f32 weight is rounded once per call, exactly as the training step's bf16 copy would be), accumulate
// in f32, add the f32 bias and round y once; dweight and dbias stay f32.
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/conv.h"

namespace engine {
namespace {

// The weight the kernels read: for a bf16 input its bf16 working copy, held widened (exactly) in f32
// because the conv kernels take f32 weights; for an f32 input the weight itself, dense.
Tensor bf16_working_weight(const Tensor& weight, DType input_dtype) {
  if (weight.dtype() == DType::bf16 || input_dtype == DType::bf16)
    return detail::bf16_working_copy(weight).to(DType::f32);
  return weight.contiguous();
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
  ENGINE_CHECK(x.ndim() == 4) << "conv2d: input must be NHWC [N, H, W, C], got " << x.str();
  ENGINE_CHECK(weight.ndim() == 4 && weight.size(3) == x.size(3))
      << "conv2d: weight must be OHWI [O, KH, KW, " << x.size(3) << "], got " << weight.str();
  ENGINE_CHECK(options.stride_h > 0 && options.stride_w > 0) << "conv2d: strides must be positive";
  kernels::Conv2dGeometry g;
  g.batch = x.size(0), g.in_h = x.size(1), g.in_w = x.size(2), g.in_c = x.size(3);
  g.out_c = weight.size(0), g.kernel_h = weight.size(1), g.kernel_w = weight.size(2);
  g.stride_h = options.stride_h, g.stride_w = options.stride_w;
  g.pad_top = options.pad_top, g.pad_bottom = options.pad_bottom;
  g.pad_left = options.pad_left, g.pad_right = options.pad_right;
  ENGINE_CHECK(g.in_h + g.pad_top + g.pad_bottom >= g.kernel_h && g.in_w + g.pad_left + g.pad_right >= g.kernel_w)
      << "conv2d: kernel " << g.kernel_h << "x" << g.kernel_w << " larger than the padded input "
      << x.str();
  ENGINE_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.size(0) == g.out_c))
      << "conv2d: bias must be [" << g.out_c << "], got " << bias.str();
  const Shape out_shape{g.batch, g.out_h(), g.out_w(), g.out_c};
  Tensor y = out.defined() ? out : Tensor::empty(out_shape, x.device(), x.dtype());
  ENGINE_CHECK(y.dtype() == x.dtype()) << "conv2d: out is " << y.str() << " for a " << dtype_name(x.dtype())
                                       << " input; give it the input's dtype";
  ENGINE_CHECK(y.shape() == out_shape) << "conv2d: out has shape " << shape_str(y.shape()) << ", expected "
                                       << shape_str(out_shape);
  ENGINE_CHECK(detail::is_row_matrix(y)) << "conv2d: out must be dense or a channel slice";

  const Tensor xr = detail::as_row_matrix(x);
  const Tensor w = bf16_working_weight(weight, x.dtype());
  const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  ENGINE_KERNEL(x.device(), conv2d_forward)(g, detail::as_rows(xr), w.data(), detail::data_or_null(b),
                                            detail::as_rows(y));

  const bool need_dx = x.requires_grad();
  const bool need_dw = weight.requires_grad() || (bias.defined() && bias.requires_grad());
  record(y, "conv2d", {x, weight, bias},
         [g, xr, w, has_bias = bias.defined(), need_dx, need_dw](const Tensor& dy_in) {
           const Tensor dy = detail::as_row_matrix(dy_in);
           const detail::Rows dym = detail::as_rows(dy);
           Tensor dx = need_dx ? Tensor::empty(xr.shape(), xr.device(), xr.dtype()) : Tensor();
           Tensor dw = need_dw ? Tensor::empty(w.shape(), w.device()) : Tensor();
           Tensor db = need_dw && has_bias ? Tensor::empty({g.out_c}, w.device()) : Tensor();
           if (need_dx)
             ENGINE_KERNEL(dy.device(), conv2d_backward_data)(g, dym, w.data(), detail::as_rows(dx), false);
           if (need_dw)
             ENGINE_KERNEL(dy.device(), conv2d_backward_filter)(g, detail::as_rows(xr), dym, dw.data(),
                                                                detail::data_or_null(db), false);
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

}  // namespace engine
