// Op table, linear and loss families: linear (y = x W^T + b; the classifier heads), flatten then
// linear (Keras's Flatten -> Dense), binary cross-entropy on logits with and without per-example
// weights, and the scalar reductions sum and mean.
//   bce = (1/N) sum_i w_i (max(z_i, 0) - z_i t_i + log(1 + exp(-|z_i|)))
// And the mixed-precision linear (docs/precision.md), forward only: x and W rounded to bf16, the
// product accumulated in f32 by the gemm_mixed kernel (kernels/gemm.h), the bias added in f32 and y
// rounded once to bf16. Its reference rounds the inputs to bf16 and computes in double; y's own
// rounding is what the tolerances allow: half a bf16 ulp, at most 2^-8 = 3.9e-3 of |y| (forward:
// rtol 4e-3), and on the GPU, whose summation order may move a sum across a rounding boundary, one
// ulp, at most 2^-7 = 7.8e-3 (gpu: rtol 8e-3); atol 1e-5 for the f32 accumulation near zero.
#include <cmath>

#include "engine/ops/common.h"
#include "kernels/gemm.h"
#include "support/op_table.h"

namespace test_support {
namespace {

using namespace engine;

HostArray linear_reference(const HostArray& x, const HostArray& w, const HostArray& b) {
  const int64_t n = x.shape[0], in = x.numel() / n, out = w.shape[0];
  HostArray y({n, out});
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.values.empty() ? 0.0 : b[o];
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w.at(o, i);
      y.at(r, o) = s;
    }
  return y;
}

OpCase linear_case(const std::string& name, OpInput x, int64_t out, bool bias, bool flatten_first) {
  const int64_t in = shape_numel(x.shape) / x.shape[0];
  const float w_range = 1.5f / std::sqrt(static_cast<float>(in));
  OpCase c;
  c.name = name;
  c.family = "linear";
  c.inputs = {x, input({out, in}).range(-w_range, w_range), bias ? input({out}) : absent()};
  c.run = [flatten_first](const std::vector<Tensor>& in, OpRun&) {
    return std::vector<Tensor>{linear(flatten_first ? flatten(in[0]) : in[0], in[1], in[2])};
  };
  c.reference = [](const std::vector<HostArray>& in) {
    return std::vector<HostArray>{linear_reference(in[0], in[1], in[2])};
  };
  c.forward = {1e-6, 1e-5};
  c.gpu = {1e-5, 1e-4};
  return c;
}

// y = round_bf16(bf16(x) bf16(W)^T + b) on x's device, no autograd: the mixed-precision linear
// forward. With a bias, gemm_mixed accumulates into an f32 C that starts as the bias rows and y is
// rounded from it; without, gemm_mixed writes the bf16 y itself.
Tensor linear_bf16(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const Tensor x16 = x.to(DType::bf16), w16 = weight.to(DType::bf16);
  const int64_t n = x.size(0), out = weight.size(0);
  const auto gemm = ENGINE_KERNEL(x.device(), gemm_mixed);
  if (!bias.defined()) {
    const Tensor y = Tensor::empty({n, out}, x.device(), DType::bf16);
    gemm(false, true, 1.0f, detail::as_rows(x16), detail::as_rows(w16), 0.0f, detail::as_rows(y));
    return y;
  }
  const Tensor y32 = Tensor::empty({n, out}, x.device());
  for (int64_t r = 0; r < n; ++r) y32.slice(0, r, r + 1).copy_from(bias.view({1, out}));
  gemm(false, true, 1.0f, detail::as_rows(x16), detail::as_rows(w16), 1.0f, detail::as_rows(y32));
  return y32.to(DType::bf16);
}

// The inputs of a reference rounded to bf16, as the mixed-precision op sees them.
HostArray rounded_to_bf16(HostArray a) {
  for (double& v : a.values) v = static_cast<float>(kernels::BFloat16(static_cast<float>(v)));
  return a;
}

OpCase linear_bf16_case(const std::string& name, int64_t n, int64_t in, int64_t out, bool bias) {
  const float w_range = 1.5f / std::sqrt(static_cast<float>(in));
  OpCase c;
  c.name = name;
  c.family = "linear";
  c.inputs = {input({n, in}).no_grad(), input({out, in}).range(-w_range, w_range).no_grad(),
              bias ? input({out}).no_grad() : absent()};
  c.run = [](const std::vector<Tensor>& in, OpRun&) { return std::vector<Tensor>{linear_bf16(in[0], in[1], in[2])}; };
  c.reference = [](const std::vector<HostArray>& in) {
    return std::vector<HostArray>{linear_reference(rounded_to_bf16(in[0]), rounded_to_bf16(in[1]), in[2])};
  };
  c.forward = {1e-5, 4e-3};
  c.gpu = {1e-5, 8e-3};
  c.check_grad = false;  // a forward-only kernel check: the bf16 training step has no backward yet
  return c;
}

OpCase bce_case(const std::string& name, Shape logits_shape, std::vector<float> targets, bool weighted) {
  const int64_t n = static_cast<int64_t>(targets.size());
  OpCase c;
  c.name = name;
  c.family = "loss";
  c.inputs = {input(std::move(logits_shape)).range(-3.0f, 3.0f), input({n}).with_values(std::move(targets)).no_grad(),
              weighted ? input({n}).range(0.2f, 2.0f).no_grad() : absent()};
  c.run = [](const std::vector<Tensor>& in, OpRun&) {
    return std::vector<Tensor>{bce_with_logits(in[0], in[1], in[2])};
  };
  c.reference = [](const std::vector<HostArray>& in) {
    HostArray loss(Shape{});
    const int64_t count = in[0].numel();
    for (int64_t i = 0; i < count; ++i) {
      const double z = in[0][i], t = in[1][i], w = in[2].values.empty() ? 1.0 : in[2][i];
      loss[0] += w * (std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z)))) / static_cast<double>(count);
    }
    return std::vector<HostArray>{loss};
  };
  c.forward = {1e-6, 1e-6};
  c.gpu = {1e-6, 1e-5};
  return c;
}

OpCase reduction(const std::string& name, Shape shape, bool mean_of) {
  OpCase c;
  c.name = name;
  c.family = "loss";
  c.inputs = {input(std::move(shape))};
  c.run = [mean_of](const std::vector<Tensor>& in, OpRun&) {
    return std::vector<Tensor>{mean_of ? mean(in[0]) : sum(in[0])};
  };
  c.reference = [mean_of](const std::vector<HostArray>& in) {
    HostArray s(Shape{});
    for (double v : in[0].values) s[0] += v;
    if (mean_of) s[0] /= static_cast<double>(in[0].numel());
    return std::vector<HostArray>{s};
  };
  c.forward = {1e-6, 1e-6};
  c.gpu = {1e-5, 1e-5};
  return c;
}

}  // namespace

std::vector<OpCase> linear_cases() {
  std::vector<OpCase> cases = {
      // The binary classifier heads: DenseNet's 1024 -> 1 (scaled), Inception-ResNet-v2's 1536 -> 1.
      linear_case("densenet_head", input({4, 64}), 1, true, false),
      linear_case("odd_3x20_to_4", input({3, 20}), 4, true, false),
      linear_case("no_bias", input({5, 7}), 3, false, false),
      linear_case("flatten_then_linear", input({3, 2, 2, 5}), 4, true, true),
      // Mixed precision: bf16 inputs, f32 accumulation, bf16 output.
      linear_bf16_case("bf16_densenet_head", 4, 64, 1, true),
      linear_bf16_case("bf16_odd_7x45_to_9", 7, 45, 9, true),
      linear_bf16_case("bf16_no_bias_long_k", 5, 300, 6, false),
  };
  // The engine op with a bf16 x (docs/precision.md): the f32 weight read as its bf16 working copy (drawn
  // bf16-representable here, so that the reference sees the op's values), f32 accumulation, the f32 bias
  // added before y's one rounding: half a bf16 ulp (rtol 4e-3). Backward: dx rounded once; dW and db f32
  // from the same bf16 values, summation order only. GPU against CPU: one ulp (rtol 8e-3).
  const Tolerance once{1e-5, 4e-3}, gpu{1e-5, 8e-3};
  for (const char* name : {"odd_3x20_to_4", "no_bias", "flatten_then_linear"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, once, once, gpu, {1}));
  return cases;
}

std::vector<OpCase> loss_cases() {
  std::vector<OpCase> cases = {
      bce_case("bce_weighted", {7, 1}, {1, 0, 1, 1, 0, 0.3f, 1}, true),
      bce_case("bce_unweighted", {5}, {0, 1, 1, 0, 1}, false),
      reduction("sum_odd", {3, 4, 5}, false),
      reduction("mean_odd", {3, 4, 5}, true),
      reduction("mean_channel_slice", {2, 3, 3, 4}, true),
  };
  cases.back().inputs[0].channel_slice(7, 2);
  // bf16 logits and inputs of the reductions (docs/precision.md): the loss and the sums are f32 (the
  // kernels sum in double) from the bf16 values, so the forward keeps f32 tolerances; the gradients into
  // bf16 are rounded once (rtol 4e-3). GPU against CPU: one ulp (rtol 8e-3).
  const Tolerance f32_forward{1e-6, 1e-5}, once{1e-7, 4e-3}, gpu{1e-6, 8e-3};
  for (const char* name : {"bce_weighted", "bce_unweighted", "sum_odd", "mean_channel_slice"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, f32_forward, once, gpu));
  return cases;
}

}  // namespace test_support
