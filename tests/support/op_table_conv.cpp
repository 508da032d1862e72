// Op table, convolution family: conv2d on DenseNet's and Inception-ResNet-v2's layer shapes (spatial
// sizes as in the nets where cheap, channels scaled down), odd sizes, TF 'same' padding (asymmetric for
// even kernels and stride 2), and channel slices in and out (DenseNet's block buffer).
//   y[n, oh, ow, o] = b[o] + sum_{kh, kw, i} x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw, i] w[o, kh, kw, i]
// And the mixed-precision forward (docs/precision.md; conv2d_forward_mixed in kernels/conv.h), forward only:
// x and w rounded to bf16, f32 products and sums, y rounded once to bf16 (or kept f32). Its reference
// rounds the inputs to bf16 and computes in double. Tolerances: a bf16 y is off by at most half a bf16
// ulp, 2^-8 = 3.9e-3 of |y| (forward: atol 1e-5, rtol 4e-3); on the GPU cuDNN's summation order may
// move a sum across a rounding boundary, one ulp, 2^-7 = 7.8e-3 (gpu: rtol 8e-3, a first guess until a
// GPU has run it); an f32 y has the f32 convolution's tolerances.
#include <cmath>

#include "engine/ops/common.h"
#include "kernels/conv.h"
#include "support/op_table.h"

namespace test_support {
namespace {

using namespace engine;

HostArray conv2d_reference(const HostArray& x, const HostArray& w, const HostArray& b, const Conv2dOptions& o) {
  const int64_t n = x.shape[0], h = x.shape[1], wd = x.shape[2], in_c = x.shape[3];
  const int64_t out_c = w.shape[0], kh = w.shape[1], kw = w.shape[2];
  const int64_t oh = (h + o.pad_top + o.pad_bottom - kh) / o.stride_h + 1;
  const int64_t ow = (wd + o.pad_left + o.pad_right - kw) / o.stride_w + 1;
  HostArray y({n, oh, ow, out_c});
  for (int64_t b0 = 0; b0 < n; ++b0)
    for (int64_t r = 0; r < oh; ++r)
      for (int64_t c = 0; c < ow; ++c)
        for (int64_t oc = 0; oc < out_c; ++oc) {
          double s = b.values.empty() ? 0.0 : b[oc];
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t yy = r * o.stride_h - o.pad_top + i;
            if (yy < 0 || yy >= h) continue;
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t xx = c * o.stride_w - o.pad_left + j;
              if (xx < 0 || xx >= wd) continue;
              for (int64_t ic = 0; ic < in_c; ++ic) s += x.at(b0, yy, xx, ic) * w.at(oc, i, j, ic);
            }
          }
          y.at(b0, r, c, oc) = s;
        }
  return y;
}

// Where conv2d writes: buffer_channels 0: a tensor it allocates; otherwise channels [offset, offset + O)
// of a NaN-poisoned buffer (buffer_channels == O: a dense preallocated output).
struct OutputSlice {
  int64_t buffer_channels = 0, offset = 0;
};

// x [N, H, W, I] (possibly a channel slice), weight [O, KH, KW, I] drawn with fan-in scaling (outputs of
// order 1, as with He initialisation), bias [O] or none; the output a fresh tensor or a channel slice.
OpCase conv(const std::string& name, OpInput x, int64_t out_c, int64_t kh, int64_t kw, const Conv2dOptions& options,
            bool bias, OutputSlice out = {}) {
  const int64_t in_c = x.shape[3];
  const float w_range = 1.5f / std::sqrt(static_cast<float>(kh * kw * in_c));
  OpCase c;
  c.name = name;
  c.family = "conv";
  c.inputs = {std::move(x), input({out_c, kh, kw, in_c}).range(-w_range, w_range),
              bias ? input({out_c}) : absent()};
  c.run = [options, out](const std::vector<Tensor>& in, OpRun& run) {
    Tensor y;
    if (out.buffer_channels > 0) {
      const int64_t oh = (in[0].size(1) + options.pad_top + options.pad_bottom - in[1].size(1)) / options.stride_h + 1;
      const int64_t ow = (in[0].size(2) + options.pad_left + options.pad_right - in[1].size(2)) / options.stride_w + 1;
      y = run.output_slice({in[0].size(0), oh, ow, in[1].size(0)}, out.buffer_channels, out.offset, in[0].dtype());
    }
    return std::vector<Tensor>{conv2d(in[0], in[1], in[2], options, y)};
  };
  c.reference = [options](const std::vector<HostArray>& in) {
    return std::vector<HostArray>{conv2d_reference(in[0], in[1], in[2], options)};
  };
  c.forward = {1e-5, 1e-4};
  c.gpu = {1e-4, 1e-4};
  return c;
}

// y = conv(bf16(x), bf16(w)) with f32 accumulation, y of `out` type, on x's device (no bias, no autograd).
Tensor conv2d_bf16(const Tensor& x, const Tensor& weight, const Conv2dOptions& o, DType out) {
  kernels::Conv2dGeometry g;
  g.batch = x.size(0), g.in_h = x.size(1), g.in_w = x.size(2), g.in_c = x.size(3);
  g.out_c = weight.size(0), g.kernel_h = weight.size(1), g.kernel_w = weight.size(2);
  g.stride_h = o.stride_h, g.stride_w = o.stride_w;
  g.pad_top = o.pad_top, g.pad_bottom = o.pad_bottom, g.pad_left = o.pad_left, g.pad_right = o.pad_right;
  const Tensor x16 = x.to(DType::bf16);
  const Tensor w16 = weight.to(DType::bf16).view({g.out_c, g.kernel_h * g.kernel_w * g.in_c});
  const Tensor y = Tensor::empty({g.batch, g.out_h(), g.out_w(), g.out_c}, x.device(), out);
  ENGINE_KERNEL(x.device(), conv2d_forward_mixed)(g, detail::as_rows(x16), detail::as_rows(w16), nullptr,
                                                  detail::as_rows(y));
  return y;
}

HostArray rounded_to_bf16(HostArray a) {
  for (double& v : a.values) v = static_cast<float>(kernels::BFloat16(static_cast<float>(v)));
  return a;
}

OpCase conv_bf16(const std::string& name, OpInput x, int64_t out_c, int64_t kh, int64_t kw,
                 const Conv2dOptions& options, DType out = DType::bf16) {
  OpCase c = conv(name, std::move(x), out_c, kh, kw, options, false);
  for (OpInput& in : c.inputs) in.grad = false;
  c.run = [options, out](const std::vector<Tensor>& in, OpRun&) {
    return std::vector<Tensor>{conv2d_bf16(in[0], in[1], options, out)};
  };
  c.reference = [options](const std::vector<HostArray>& in) {
    return std::vector<HostArray>{conv2d_reference(rounded_to_bf16(in[0]), rounded_to_bf16(in[1]), in[2], options)};
  };
  if (out == DType::bf16) {
    c.forward = {1e-5, 4e-3};
    c.gpu = {1e-5, 8e-3};
  }
  c.check_grad = false;  // a forward-only kernel check: the bf16 training step has no backward yet
  return c;
}

}  // namespace

std::vector<OpCase> conv_cases() {
  using O = Conv2dOptions;
  std::vector<OpCase> cases = {
      // DenseNet: the stem (224x224x3 -> 64 in the net), a bottleneck 1x1 reading the prefix of a block
      // buffer in place, the 3x3 growth conv writing its channels into the block buffer, a transition.
      conv("densenet_stem_7x7_s2_p3", input({1, 17, 16, 3}), 8, 7, 7, O::symmetric(3, 2), false),
      conv("densenet_bottleneck_1x1_slice_in", input({2, 7, 7, 20}).channel_slice(28, 0), 16, 1, 1, O::valid(),
           false),
      conv("densenet_growth_3x3_p1_slice_out", input({2, 7, 7, 16}), 4, 3, 3, O::symmetric(1), false, {28, 24}),
      conv("densenet_transition_1x1_poisoned_out", input({2, 8, 8, 24}), 12, 1, 1, O::valid(), false, {12, 0}),
      conv("slice_in_and_out_3x3", input({2, 5, 5, 4}).channel_slice(7, 2), 3, 3, 3, O::symmetric(1), false,
           {8, 3}),
      // Inception-ResNet-v2 (Keras): the stem's 3x3/2 'valid', block17's 1x7 and 7x1 on 17x17, block8's
      // 1x3 and 3x1 on 8x8, a reduction's 3x3/2 'valid', and 'same' with stride 2 on an even size (the
      // extra padding cell at the end).
      conv("irv2_stem_3x3_s2_valid", input({1, 15, 15, 3}), 8, 3, 3, O::valid(2), false),
      conv("irv2_block17_1x7_same", input({1, 17, 17, 16}), 20, 1, 7, O::same(17, 17, 1, 7, 1), false),
      conv("irv2_block17_7x1_same", input({1, 17, 17, 20}), 24, 7, 1, O::same(17, 17, 7, 1, 1), false),
      conv("irv2_block8_1x3_same", input({2, 8, 8, 24}), 28, 1, 3, O::same(8, 8, 1, 3, 1), false),
      conv("irv2_block8_3x1_same", input({2, 8, 8, 28}), 32, 3, 1, O::same(8, 8, 3, 1, 1), false),
      conv("irv2_block_1x1_bias", input({2, 8, 8, 32}), 12, 1, 1, O::valid(), true),
      conv("irv2_reduction_3x3_s2_valid", input({1, 17, 17, 12}), 16, 3, 3, O::valid(2), false),
      conv("same_3x3_s2_even_input", input({1, 8, 8, 3}), 4, 3, 3, O::same(8, 8, 3, 3, 2), false),
      // Odd sizes and asymmetric padding.
      conv("odd_3x3_p1_bias", input({2, 5, 6, 3}), 4, 3, 3, O::symmetric(1), true),
      conv("odd_1x3", input({2, 3, 5, 2}), 3, 1, 3, O::symmetric(0, 1, 1), false),
      conv("odd_3x1", input({2, 5, 3, 2}), 3, 3, 1, O::symmetric(1, 0, 1), false),
      conv("asymmetric_pad_2x2_s2_bias", input({2, 6, 5, 3}), 2, 2, 2, O{2, 2, 0, 1, 1, 0}, true),
      conv("same_2x2_s1_even_kernel", input({1, 5, 5, 3}), 2, 2, 2, O::same(5, 5, 2, 2, 1), false),
      // Mixed precision: bf16 inputs, f32 accumulation, bf16 output (f32 in the last).
      conv_bf16("bf16_densenet_growth_3x3_p1", input({2, 7, 7, 16}), 4, 3, 3, O::symmetric(1)),
      conv_bf16("bf16_densenet_bottleneck_1x1_slice_in", input({2, 7, 7, 20}).channel_slice(28, 0), 16, 1, 1,
                O::valid()),
      conv_bf16("bf16_irv2_block17_7x1_same", input({1, 17, 17, 20}), 24, 7, 1, O::same(17, 17, 7, 1, 1)),
      conv_bf16("bf16_same_3x3_s2_even_input", input({1, 8, 8, 3}), 4, 3, 3, O::same(8, 8, 3, 3, 2)),
      conv_bf16("bf16_in_f32_out_3x3_p1", input({2, 5, 6, 3}), 4, 3, 3, O::symmetric(1), DType::f32),
  };
  // The engine op with a bf16 x, forward and backward (docs/precision.md): the f32 weight read as its bf16
  // working copy (drawn bf16-representable here), f32 accumulation, the f32 bias added before y's one
  // rounding (rtol 4e-3). Backward: dx (backward-data) rounded once; dW rounded once to bf16 (the
  // mixed-precision weight gradient, kernels/conv.h), db f32 from the same bf16 values. GPU against CPU:
  // one ulp (rtol 8e-3).
  const Tolerance once{1e-5, 4e-3}, gpu{1e-5, 8e-3};
  for (const char* name : {"densenet_stem_7x7_s2_p3", "slice_in_and_out_3x3",
                           "densenet_growth_3x3_p1_slice_out", "irv2_block17_1x7_same", "irv2_block_1x1_bias",
                           "odd_3x3_p1_bias", "asymmetric_pad_2x2_s2_bias"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, once, once, gpu, {1}));
  return cases;
}

}  // namespace test_support
