// Op table, shape family: channel concatenation (a copy of separate tensors, an input used twice, and
// the view over adjacent slices of one buffer), channel slices, flatten and reshape. Their references
// are exact, and so are their tolerances.
#include "support/op_table.h"

namespace test_support {
namespace {

using namespace engine;

// The channels [begin, end) of a [..., C] array.
HostArray channels_of(const HostArray& x, int64_t begin, int64_t end) {
  Shape shape = x.shape;
  const int64_t channels = shape.back(), rows = x.numel() / channels;
  shape.back() = end - begin;
  HostArray y(shape);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = begin; c < end; ++c) y[r * (end - begin) + c - begin] = x[r * channels + c];
  return y;
}

HostArray concat_reference(const std::vector<HostArray>& parts) {
  Shape shape = parts[0].shape;
  int64_t channels = 0;
  for (const HostArray& p : parts) channels += p.shape.back();
  const int64_t rows = parts[0].numel() / parts[0].shape.back();
  shape.back() = channels;
  HostArray y(shape);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t c0 = 0;
    for (const HostArray& p : parts) {
      const int64_t pc = p.shape.back();
      for (int64_t c = 0; c < pc; ++c) y[r * channels + c0 + c] = p[r * pc + c];
      c0 += pc;
    }
  }
  return y;
}

OpCase shape_case(const std::string& name, std::vector<OpInput> inputs,
                  std::function<Tensor(const std::vector<Tensor>&)> op,
                  std::function<HostArray(const std::vector<HostArray>&)> reference) {
  OpCase c;
  c.name = name;
  c.family = "shape";
  c.inputs = std::move(inputs);
  c.run = [op](const std::vector<Tensor>& in, OpRun&) { return std::vector<Tensor>{op(in)}; };
  c.reference = [reference](const std::vector<HostArray>& in) { return std::vector<HostArray>{reference(in)}; };
  c.forward = {0.0, 0.0};
  c.gpu = {0.0, 0.0};
  return c;
}

}  // namespace

std::vector<OpCase> shape_cases() {
  std::vector<OpCase> cases = {
      // Inception's branch concatenation: separate tensors, copied; one input used twice (its
      // gradients add up), then a slice of the result.
      shape_case("concat_copy_then_slice", {input({2, 3, 3, 2}), input({2, 3, 3, 5})},
                 [](const std::vector<Tensor>& in) {
                   return slice_channels(concat_channels({in[0], in[1], in[0]}), 1, 8);
                 },
                 [](const std::vector<HostArray>& in) {
                   return channels_of(concat_reference({in[0], in[1], in[0]}), 1, 8);
                 }),
      shape_case("concat_of_channel_slices", {input({2, 4, 3, 3}).channel_slice(5, 1), input({2, 4, 3, 2})},
                 [](const std::vector<Tensor>& in) {
                   return concat_channels({in[1], in[0], in[1]});
                 },
                 [](const std::vector<HostArray>& in) { return concat_reference({in[1], in[0], in[1]}); }),
      // DenseNet's block buffer: concatenating adjacent slices of one buffer is a view of it.
      shape_case("concat_adjacent_slices_is_a_view", {input({2, 3, 3, 9})},
                 [](const std::vector<Tensor>& in) {
                   const Tensor cat = concat_channels(
                       {slice_channels(in[0], 1, 3), slice_channels(in[0], 3, 4), slice_channels(in[0], 4, 7)});
                   EXPECT_EQ(cat.storage(), in[0].storage()) << "adjacent slices were copied";
                   return cat;
                 },
                 [](const std::vector<HostArray>& in) { return channels_of(in[0], 1, 7); }),
      shape_case("slice_channels_odd", {input({2, 3, 5, 8})},
                 [](const std::vector<Tensor>& in) { return slice_channels(in[0], 2, 7); },
                 [](const std::vector<HostArray>& in) { return channels_of(in[0], 2, 7); }),
      shape_case("flatten_nhwc", {input({3, 2, 2, 5})}, [](const std::vector<Tensor>& in) { return flatten(in[0]); },
                 [](const std::vector<HostArray>& in) {
                   HostArray y = in[0];
                   y.shape = {3, 20};
                   return y;
                 }),
      shape_case("flatten_channel_slice", {input({2, 2, 3, 4}).channel_slice(6, 2)},
                 [](const std::vector<Tensor>& in) { return flatten(in[0]); },
                 [](const std::vector<HostArray>& in) {
                   HostArray y = in[0];
                   y.shape = {2, 24};
                   return y;
                 }),
      shape_case("reshape_odd", {input({2, 3, 5})}, [](const std::vector<Tensor>& in) { return reshape(in[0], {5, 6}); },
                 [](const std::vector<HostArray>& in) {
                   HostArray y = in[0];
                   y.shape = {5, 6};
                   return y;
                 }),
  };
  // bf16 concatenation and slices (DenseNet's block buffers in bf16): copies and views, exact forward; the
  // gradient of an input used twice is the sum of two slices, rounded once (rtol 4e-3), the rest exact.
  const Tolerance exact{0, 0}, once{0, 4e-3};
  for (const char* name : {"concat_copy_then_slice", "concat_of_channel_slices", "concat_adjacent_slices_is_a_view",
                           "slice_channels_odd", "flatten_channel_slice"})
  {
    const OpCase& c = entry_named(cases, name);
    std::vector<size_t> all(c.inputs.size());
    for (size_t k = 0; k < all.size(); ++k) all[k] = k;
    cases.push_back(bf16_variant(c, all, exact, once, once));
  }
  return cases;
}

}  // namespace test_support
