// Op table, linear and loss families: linear (y = x W^T + b; the classifier heads), flatten then
// linear (Keras's Flatten -> Dense), binary cross-entropy on logits with and without per-example
// weights, and the scalar reductions sum and mean.
//   bce = (1/N) sum_i w_i (max(z_i, 0) - z_i t_i + log(1 + exp(-|z_i|)))
#include <cmath>

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
  return {
      // The binary classifier heads: DenseNet's 1024 -> 1 (scaled), Inception-ResNet-v2's 1536 -> 1.
      linear_case("densenet_head", input({4, 64}), 1, true, false),
      linear_case("odd_3x20_to_4", input({3, 20}), 4, true, false),
      linear_case("no_bias", input({5, 7}), 3, false, false),
      linear_case("flatten_then_linear", input({3, 2, 2, 5}), 4, true, true),
  };
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
  return cases;
}

}  // namespace test_support
