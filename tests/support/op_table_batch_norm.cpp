// Op table, batch-norm family: training (batch statistics; running statistics updated in place, checked
// too) and eval (running statistics), with and without gamma/beta, PyTorch's and Keras's conventions,
// NHWC and [N, C], and DenseNet's case of normalising a channel prefix of a block buffer in place; and
// --sync-bn's path (engine/batch_norm_sync.h) with one process, whose all-reduce adds nothing: the same
// maths through the synchronised kernels (sums, then normalisation), on every backend.
//   y = (x - mean) / sqrt(var + eps) * gamma + beta         (training: batch mean, biased batch var)
//   running = (1 - momentum) running + momentum batch       (var: unbiased for PyTorch, biased for Keras)
#include <algorithm>
#include <cmath>
#include <utility>

#include "engine/batch_norm_sync.h"
#include "support/op_table.h"

namespace test_support {
namespace {

using namespace engine;

// in: x [..., C], gamma, beta (or empty), running mean, running var. Out: y, running mean, running var.
std::vector<HostArray> batch_norm_reference(const std::vector<HostArray>& in, bool training,
                                            const BatchNormOptions& o) {
  const HostArray& x = in[0];
  const int64_t channels = x.shape.back(), rows = x.numel() / channels;
  HostArray y(x.shape), running_mean = in[3], running_var = in[4];
  for (int64_t c = 0; c < channels; ++c) {
    double mean = running_mean[c], var = running_var[c];
    if (training) {
      double s = 0.0, ss = 0.0;
      for (int64_t r = 0; r < rows; ++r) s += x[r * channels + c];
      mean = s / static_cast<double>(rows);
      for (int64_t r = 0; r < rows; ++r) ss += (x[r * channels + c] - mean) * (x[r * channels + c] - mean);
      var = ss / static_cast<double>(rows);
      const double batch_var = o.unbiased_running_var ? ss / static_cast<double>(rows - 1) : var;
      running_mean[c] = (1.0 - o.momentum) * running_mean[c] + o.momentum * mean;
      running_var[c] = (1.0 - o.momentum) * running_var[c] + o.momentum * batch_var;
    }
    const double gamma = in[1].values.empty() ? 1.0 : in[1][c];
    const double beta = in[2].values.empty() ? 0.0 : in[2][c];
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(o.eps));
    for (int64_t r = 0; r < rows; ++r) y[r * channels + c] = (x[r * channels + c] - mean) * invstd * gamma + beta;
  }
  return {y, running_mean, running_var};
}

OpCase batch_norm_case(const std::string& name, OpInput x, bool training, bool gamma, bool beta,
                       const BatchNormOptions& options) {
  const int64_t channels = x.shape.back();
  OpCase c;
  c.name = name;
  c.family = "batch_norm";
  c.inputs = {x.range(-2.0f, 2.0f), gamma ? input({channels}).range(0.5f, 1.5f) : absent(),
              beta ? input({channels}) : absent(), input({channels}).no_grad(),
              input({channels}).range(0.5f, 2.0f).no_grad()};
  c.run = [training, options](const std::vector<Tensor>& in, OpRun&) {
    const Tensor y = batch_norm(in[0], in[1], in[2], in[3], in[4], training, options);
    return std::vector<Tensor>{y, in[3], in[4]};
  };
  c.reference = [training, options](const std::vector<HostArray>& in) {
    return batch_norm_reference(in, training, options);
  };
  c.forward = {1e-5, 1e-4};
  c.gpu = {1e-5, 1e-4};
  return c;
}

// batch_norm_relu: the fused op, y = max(batch_norm, 0) (the reference's y through max). Its gradients are
// not finite-differenced here (a step of 1e-2 straddles ReLU's kink wherever a BN output is near 0); the
// fused kernels' backward is checked against finite differences and, bit for bit, against the unfused
// pair in tests/cpu/test_kernels_batchnorm_relu.cpp, and the GPU table compares its input gradients.
OpCase batch_norm_relu_case(const std::string& name, OpInput x, bool training, bool gamma, bool beta,
                            const BatchNormOptions& options) {
  OpCase c = batch_norm_case(name, std::move(x), training, gamma, beta, options);
  c.run = [training, options](const std::vector<Tensor>& in, OpRun&) {
    const Tensor y = batch_norm_relu(in[0], in[1], in[2], in[3], in[4], training, options);
    return std::vector<Tensor>{y, in[3], in[4]};
  };
  c.reference = [training, options](const std::vector<HostArray>& in) {
    std::vector<HostArray> out = batch_norm_reference(in, training, options);
    for (int64_t i = 0; i < out[0].numel(); ++i) out[0][i] = std::max(out[0][i], 0.0);
    return out;
  };
  c.check_grad = false;
  return c;
}

// The entry run under a one-process BatchNormSyncScope: training batch norms take the synchronised path.
OpCase synced(OpCase c) {
  c.name = "synced_" + c.name;
  c.run = [run = c.run](const std::vector<Tensor>& in, OpRun& op_run) {
    const BatchNormSyncScope one_process([](double*, int64_t, Device) {});  // a sum over one process
    return run(in, op_run);
  };
  return c;
}

}  // namespace

std::vector<OpCase> batch_norm_cases() {
  using B = BatchNormOptions;
  std::vector<OpCase> cases = {
      // DenseNet (torchvision): BN of the first C channels of a block buffer, read in place.
      batch_norm_case("densenet_training_block_prefix", input({4, 5, 5, 12}).channel_slice(20, 0), true, true,
                      true, B::torch()),
      batch_norm_case("training_channel_slice_middle", input({2, 3, 3, 4}).channel_slice(6, 1), true, true, true,
                      B::torch()),
      // Inception-ResNet-v2 (Keras): no gamma (scale=False), eps 1e-3, biased running variance.
      batch_norm_case("irv2_training_keras_no_gamma", input({2, 8, 8, 24}), true, false, true, B::keras(1e-3f)),
      batch_norm_case("training_no_affine_odd", input({3, 4, 3, 5}), true, false, false, B::torch()),
      batch_norm_case("training_2d", input({6, 10}), true, true, true, B::torch()),
      batch_norm_case("eval_keras_densenet_eps", input({2, 5, 5, 7}), false, true, true, B::keras(1.001e-5f)),
      batch_norm_case("eval_no_gamma", input({2, 4, 3, 6}), false, false, true, B::keras(1e-3f)),
      batch_norm_case("eval_channel_slice", input({2, 3, 3, 5}).channel_slice(9, 4), false, true, true,
                      B::torch()),
      // Fused with the ReLU after it (DenseNet's BN-ReLU before each convolution; IRv2's conv-BN-ReLU).
      batch_norm_relu_case("relu_densenet_training_block_prefix", input({4, 5, 5, 12}).channel_slice(20, 0), true,
                           true, true, B::torch()),
      batch_norm_relu_case("relu_irv2_training_keras_no_gamma", input({2, 8, 8, 24}), true, false, true,
                           B::keras(1e-3f)),
      batch_norm_relu_case("relu_training_no_affine_odd", input({3, 4, 3, 5}), true, false, false, B::torch()),
      batch_norm_relu_case("relu_eval_keras_densenet_eps", input({2, 5, 5, 7}), false, true, true,
                           B::keras(1.001e-5f)),
      // --sync-bn (one process): a block prefix read in place, Keras's no-gamma convention, and the ReLU
      // after it (the synchronised path has no fused kernel: batch norm, then relu).
      synced(batch_norm_case("densenet_training_block_prefix", input({4, 5, 5, 12}).channel_slice(20, 0), true,
                             true, true, B::torch())),
      synced(batch_norm_case("irv2_training_keras_no_gamma", input({2, 8, 8, 24}), true, false, true,
                             B::keras(1e-3f))),
      synced(batch_norm_relu_case("relu_training_no_affine_odd", input({3, 4, 3, 5}), true, false, false,
                                  B::torch())),
  };
  // bf16 x, y, dy, dx (docs/precision.md); statistics, gamma, beta and their gradients f32. y and dx are
  // rounded once from f32 arithmetic on the same values: half a bf16 ulp (rtol 4e-3); the statistics and
  // the f32 parameter gradients differ from the f32 op's by summation order only, well inside that.
  // GPU against CPU: one ulp (rtol 8e-3).
  const Tolerance once{1e-5, 4e-3}, gpu{1e-5, 8e-3};
  for (const char* name : {"densenet_training_block_prefix", "irv2_training_keras_no_gamma", "training_2d",
                           "eval_keras_densenet_eps", "eval_channel_slice", "synced_densenet_training_block_prefix"})
    cases.push_back(bf16_variant(entry_named(cases, name), {0}, once, once, gpu));
  return cases;
}

}  // namespace test_support
