// Op table, elementwise family: relu, sigmoid, add, scale and Inception-ResNet-v2's scaled residual
// x + 0.17 up (as add and scale, and fused: scaled_residual with and without its ReLU), on odd shapes and
// on channel slices of wider buffers.
#include <algorithm>
#include <cmath>

#include "support/op_table.h"

namespace test_support {
namespace {

using namespace engine;

// An op applied element by element: y_i = f(a_i[, b_i]).
OpCase elementwise(const std::string& name, std::vector<OpInput> inputs,
                   std::function<Tensor(const std::vector<Tensor>&)> op,
                   std::function<double(const std::vector<double>&)> f) {
  OpCase c;
  c.name = name;
  c.family = "elementwise";
  c.inputs = std::move(inputs);
  c.run = [op](const std::vector<Tensor>& in, OpRun&) { return std::vector<Tensor>{op(in)}; };
  c.reference = [f](const std::vector<HostArray>& in) {
    HostArray y(in[0].shape);
    std::vector<double> args(in.size());
    for (int64_t i = 0; i < y.numel(); ++i) {
      for (size_t k = 0; k < in.size(); ++k) args[k] = in[k][i];
      y[i] = f(args);
    }
    return std::vector<HostArray>{y};
  };
  c.forward = {1e-7, 1e-6};
  c.gpu = {1e-7, 1e-6};
  return c;
}

Tensor relu_of(const std::vector<Tensor>& in) { return relu(in[0]); }
double relu_ref(const std::vector<double>& a) { return std::max(a[0], 0.0); }

}  // namespace

std::vector<OpCase> elementwise_cases() {
  // ReLU's inputs stay away from its kink, so that finite differences do not straddle it.
  std::vector<OpCase> cases = {
      elementwise("relu_odd", {input({2, 3, 4, 5}).away_from_zero(0.05f)}, relu_of, relu_ref),
      elementwise("relu_densenet_block", {input({2, 7, 7, 24}).away_from_zero(0.05f)}, relu_of, relu_ref),
      elementwise("relu_channel_slice", {input({2, 3, 3, 5}).away_from_zero(0.05f).channel_slice(9, 3)}, relu_of,
                  relu_ref),
      elementwise("sigmoid_logits", {input({3, 7}).range(-4.0f, 4.0f)},
                  [](const std::vector<Tensor>& in) { return sigmoid(in[0]); },
                  [](const std::vector<double>& a) { return 1.0 / (1.0 + std::exp(-a[0])); }),
      elementwise("add_odd", {input({2, 3, 5, 3}), input({2, 3, 5, 3})},
                  [](const std::vector<Tensor>& in) { return add(in[0], in[1]); },
                  [](const std::vector<double>& a) { return a[0] + a[1]; }),
      elementwise("add_channel_slices", {input({2, 4, 4, 3}).channel_slice(8, 5), input({2, 4, 4, 3}).channel_slice(5, 0)},
                  [](const std::vector<Tensor>& in) { return add(in[0], in[1]); },
                  [](const std::vector<double>& a) { return a[0] + a[1]; }),
      elementwise("scale_odd", {input({5, 3, 7})}, [](const std::vector<Tensor>& in) { return scale(in[0], -1.5f); },
                  [](const std::vector<double>& a) { return -1.5 * a[0]; }),
      // Inception-ResNet-v2's block17: x + 0.1 up on 17x17 (block35 0.17, block8 0.2).
      elementwise("irv2_residual_block17", {input({1, 17, 17, 24}), input({1, 17, 17, 24})},
                  [](const std::vector<Tensor>& in) { return add(in[0], scale(in[1], 0.1f)); },
                  [](const std::vector<double>& a) { return a[0] + double(0.1f) * a[1]; }),
      elementwise("residual_scale_0_17", {input({2, 3, 3, 4}), input({2, 3, 3, 4})},
                  [](const std::vector<Tensor>& in) { return add(in[0], scale(in[1], 0.17f)); },
                  [](const std::vector<double>& a) { return a[0] + double(0.17f) * a[1]; }),
      // The fused residual the net runs (scaled_residual): block35's relu(x + 0.17 up), x at least 0.3 from
      // zero so that x + 0.17 up (|0.17 up| <= 0.17) stays off the ReLU's kink; block8's last, x + 1.0 up
      // without a ReLU, on channel slices.
      elementwise("scaled_residual_relu_block35", {input({2, 5, 5, 12}).away_from_zero(0.3f), input({2, 5, 5, 12})},
                  [](const std::vector<Tensor>& in) { return scaled_residual(in[0], in[1], 0.17f, true); },
                  [](const std::vector<double>& a) { return std::max(a[0] + double(0.17f) * a[1], 0.0); }),
      elementwise("scaled_residual_block8_last_slices",
                  {input({2, 3, 3, 4}).channel_slice(7, 2), input({2, 3, 3, 4}).channel_slice(6, 0)},
                  [](const std::vector<Tensor>& in) { return scaled_residual(in[0], in[1], 1.0f, false); },
                  [](const std::vector<double>& a) { return a[0] + a[1]; }),
  };
  // bf16 activations (docs/precision.md), every input bf16. relu and its backward select values: exact.
  // add, scale and sigmoid round once: half a bf16 ulp, 2^-9 relative (rtol 4e-3 leaves a factor 2).
  // The residual x + s up rounds s up first: its error, relative to |s up| <= 0.1 |up| < 0.1, can
  // dominate where x cancels s up (atol 1e-3). Backward (against the f32 op on the same values): relu
  // and add pass dy through (exact), scale rounds once; sigmoid's dx = dy y (1 - y) reads the bf16 y,
  // whose rounding error |dy| 2^-9 |1 - 2y| <= 1.5 * 2^-9 is absolute, not relative, where y nears 1
  // (atol 3e-3). GPU against CPU: one ulp (rtol 8e-3).
  const Tolerance exact{0, 0}, once{1e-6, 4e-3}, gpu{1e-6, 8e-3};
  for (const char* name : {"relu_odd", "relu_channel_slice"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, exact, exact, exact));
  cases.push_back(bf16_variant(entry_named(cases, "sigmoid_logits"), {0}, once, {3e-3, 4e-3}, {3e-3, 8e-3}));
  cases.push_back(bf16_variant(entry_named(cases, "add_channel_slices"), {0, 1}, once, exact, gpu));
  cases.push_back(bf16_variant(entry_named(cases, "scale_odd"), {0}, once, once, gpu));
  cases.push_back(bf16_variant(entry_named(cases, "irv2_residual_block17"), {0, 1}, {1e-3, 4e-3}, once, {1e-3, 8e-3}));
  // The fused residual rounds its result once (x + s up in f32): half an ulp; backward dx selects dy
  // (exact), dup = s g rounds once.
  cases.push_back(bf16_variant(entry_named(cases, "scaled_residual_relu_block35"), {0, 1}, once, once, gpu));
  cases.push_back(bf16_variant(entry_named(cases, "scaled_residual_block8_last_slices"), {0, 1}, once, once, gpu));
  return cases;
}

}  // namespace test_support
