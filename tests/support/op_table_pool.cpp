// Op table, pooling family: max pooling (DenseNet's 3x3/2 pad 1, Inception-ResNet-v2's 3x3/2 'valid',
// an asymmetric window), average pooling (DenseNet's transition 2x2/2, Keras's 3x3/1 'same' that
// divides by the cells inside the input, PyTorch's that counts the padding) and global average pooling.
// Max-pool inputs are distinct values spaced apart, so that finite differences never cross a tie.
#include <cmath>

#include "support/op_table.h"

namespace test_support {
namespace {

using namespace engine;

HostArray pool_reference(const HostArray& x, const Pool2dOptions& o, bool max, bool count_include_pad) {
  const int64_t n = x.shape[0], h = x.shape[1], w = x.shape[2], ch = x.shape[3];
  const int64_t oh = (h + o.pad_top + o.pad_bottom - o.kernel_h) / o.stride_h + 1;
  const int64_t ow = (w + o.pad_left + o.pad_right - o.kernel_w) / o.stride_w + 1;
  HostArray y({n, oh, ow, ch});
  for (int64_t b = 0; b < n; ++b)
    for (int64_t r = 0; r < oh; ++r)
      for (int64_t c = 0; c < ow; ++c)
        for (int64_t k = 0; k < ch; ++k) {
          double best = -INFINITY, s = 0.0;
          int64_t inside = 0, padded = 0;
          for (int64_t i = 0; i < o.kernel_h; ++i)
            for (int64_t j = 0; j < o.kernel_w; ++j) {
              const int64_t yy = r * o.stride_h - o.pad_top + i, xx = c * o.stride_w - o.pad_left + j;
              if (yy >= h + o.pad_bottom || xx >= w + o.pad_right) continue;  // beyond the padding
              ++padded;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              ++inside;
              best = std::max(best, x.at(b, yy, xx, k));
              s += x.at(b, yy, xx, k);
            }
          y.at(b, r, c, k) = max ? best : s / static_cast<double>(count_include_pad ? padded : inside);
        }
  return y;
}

OpCase pool(const std::string& name, OpInput x, bool max, const Pool2dOptions& options,
            bool count_include_pad = false) {
  OpCase c;
  c.name = name;
  c.family = "pool";
  c.inputs = {max ? x.distinct() : x};
  c.run = [max, options, count_include_pad](const std::vector<Tensor>& in, OpRun&) {
    return std::vector<Tensor>{max ? max_pool2d(in[0], options) : avg_pool2d(in[0], options, count_include_pad)};
  };
  c.reference = [max, options, count_include_pad](const std::vector<HostArray>& in) {
    return std::vector<HostArray>{pool_reference(in[0], options, max, count_include_pad)};
  };
  c.forward = {1e-6, 1e-6};
  c.gpu = {1e-6, 1e-6};
  c.grad.max_checks = 126;
  return c;
}

}  // namespace

std::vector<OpCase> pool_cases() {
  using P = Pool2dOptions;
  std::vector<OpCase> cases = {
      pool("densenet_max_3x3_s2_p1", input({2, 9, 9, 5}), true, P::square(3, 2, 1)),
      pool("irv2_max_3x3_s2_valid", input({1, 17, 17, 4}), true, P::square(3, 2)),
      pool("max_odd_3x3_s2_valid", input({2, 7, 6, 3}), true, P::square(3, 2)),
      pool("max_asymmetric", input({2, 7, 6, 3}), true, P{2, 3, 1, 2, 0, 1, 1, 0}),
      pool("max_channel_slice", input({2, 6, 6, 3}).channel_slice(7, 2), true, P::square(3, 2, 1)),
      pool("densenet_avg_2x2_s2", input({2, 8, 8, 6}), false, P::square(2, 2), true),
      pool("avg_2x2_s2_odd_floor", input({2, 7, 7, 3}), false, P::square(2, 2), true),
      pool("irv2_avg_3x3_s1_same_exclude_pad", input({1, 8, 8, 5}), false, P::square(3, 1, 1), false),
      pool("avg_3x3_s1_p1_include_pad", input({2, 7, 6, 3}), false, P::square(3, 1, 1), true),
      pool("avg_channel_slice", input({2, 6, 6, 4}).channel_slice(10, 6), false, P::square(2, 2), true),
  };
  for (auto [name, x] : {std::pair<const char*, OpInput>{"global_avg_odd", input({2, 3, 5, 4})},
                         {"global_avg_densenet_head", input({2, 7, 7, 16})},
                         {"global_avg_channel_slice", input({2, 3, 3, 4}).channel_slice(6, 1)}}) {
    OpCase c;
    c.name = name;
    c.family = "pool";
    c.inputs = {x};
    c.run = [](const std::vector<Tensor>& in, OpRun&) { return std::vector<Tensor>{global_avg_pool(in[0])}; };
    c.reference = [](const std::vector<HostArray>& in) {
      const HostArray& v = in[0];
      const int64_t n = v.shape[0], hw = v.shape[1] * v.shape[2], ch = v.shape[3];
      HostArray y({n, ch});
      for (int64_t b = 0; b < n; ++b)
        for (int64_t p = 0; p < hw; ++p)
          for (int64_t k = 0; k < ch; ++k) y.at(b, k) += v[(b * hw + p) * ch + k] / static_cast<double>(hw);
      return std::vector<HostArray>{y};
    };
    c.forward = {1e-6, 1e-5};
    c.gpu = {1e-6, 1e-5};
    cases.push_back(c);
  }
  // bf16 x, y, dy, dx (docs/precision.md). Max pooling selects: forward exact, and its backward sums dy
  // where windows overlap, rounded once; averages round once: half a bf16 ulp (rtol 4e-3). GPU against
  // CPU: one ulp (rtol 8e-3).
  const Tolerance exact{0, 0}, once{1e-6, 4e-3}, gpu{1e-6, 8e-3};
  for (const char* name : {"densenet_max_3x3_s2_p1", "max_channel_slice"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, exact, once, gpu));
  for (const char* name : {"densenet_avg_2x2_s2", "irv2_avg_3x3_s1_same_exclude_pad", "avg_channel_slice",
                           "global_avg_densenet_head", "global_avg_channel_slice"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, once, once, gpu));
  return cases;
}

}  // namespace test_support
