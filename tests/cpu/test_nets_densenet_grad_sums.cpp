// DenseNet's block gradient summed in place (engine/autograd.h): in backward, layer l's input x_l is a
// slice of the block buffer; the concatenation hands x_l's producer a slice of its own gradient, and
// norm1's batch norm then adds its dx straight into that slice (Node::AccumulatingBackwardFn) instead of
// writing a fresh dx that the engine sums out of place. The gradients are the out-of-place sums', bit
// for bit (engine::OutOfPlaceGradientSumsGuard runs the same step the old way), in every mode of the
// block (block buffer or copying concatenations, standard or memory-efficient), with fewer allocations.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>

#include "engine/memory_stats.h"
#include "nets/densenet.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;
using nets::DenseNet;
using nets::DenseNetConfig;
using nets::Flavor;
using nets::Head;

struct Mode {
  bool block_buffers;
  bool memory_efficient;
};

DenseNetConfig small_config(const Mode& mode) {
  DenseNetConfig c;
  c.block_layers = {2, 3};
  c.growth = 8;
  c.bottleneck = 16;
  c.stem_channels = 16;
  c.flavor = Flavor::torch;
  c.block_buffers = mode.block_buffers;
  c.memory_efficient = mode.memory_efficient;
  return c;
}

constexpr int64_t kDenseLayers = 2 + 3;

struct Step {
  std::vector<float> input_grad;
  std::map<std::string, std::vector<float>> grads;
  int64_t backward_allocations = 0;  // host allocations during backward
};

// Processor seconds of DenseNet-121 training steps at 224 (batch 4), in-place and out-of-place sums
// alternated in one process (the machine is shared): the medians over the rounds.
//   build/tests/cpu_test_nets_densenet_grad_sums --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Time*'
TEST(DenseNetGradientSumsTiming, DISABLED_TimeDenseNet121Step) {
  Generator gen(43), data(44);
  DenseNet net("densenet121", DenseNetConfig::densenet121(Flavor::torch), Head::gap, 224, gen);
  for (const auto& [name, t] : net.named_parameters()) t.set_grad(Tensor::zeros(t.shape()));
  const Tensor images = test_support::random_tensor({4, 224, 224, 3}, data);
  const Tensor targets = Tensor::from_vector({4}, {1.0f, 0.0f, 1.0f, 0.0f});
  const auto step_seconds = [&](bool out_of_place) {
    std::optional<OutOfPlaceGradientSumsGuard> guard;
    if (out_of_place) guard.emplace();
    const std::clock_t start = std::clock();
    bce_with_logits(net.forward(images), targets).backward();
    return static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
  };
  step_seconds(false);  // warm-up
  std::vector<double> in_place, out_of_place;
  for (int round = 0; round < 7; ++round) {
    out_of_place.push_back(step_seconds(true));
    in_place.push_back(step_seconds(false));
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("DenseNet-121 @ 224, batch 4, processor s/step, median of 7: out of place %.3f, in place %.3f\n",
              median(out_of_place), median(in_place));
}

// One training step of a fresh net (the same weights and data every call), its backward run with
// in-place or out-of-place gradient sums.
Step train_step(const Mode& mode, bool out_of_place) {
  Generator gen(41), data(42);
  DenseNet net("small", small_config(mode), Head::gap, 40, gen);
  for (const auto& [name, t] : net.named_parameters()) t.set_grad(Tensor::zeros(t.shape()));
  const Tensor images = test_support::random_tensor({3, 40, 40, 3}, data).set_requires_grad();
  images.set_grad(Tensor::zeros(images.shape()));
  const Tensor targets = Tensor::from_vector({3}, {1.0f, 0.0f, 1.0f});
  Step s;
  {
    const Tensor loss = bce_with_logits(net.forward(images), targets);
    std::optional<OutOfPlaceGradientSumsGuard> guard;
    if (out_of_place) guard.emplace();
    const int64_t before = host_memory_stats().allocations;
    loss.backward();
    s.backward_allocations = host_memory_stats().allocations - before;
  }
  s.input_grad = images.grad().to_vector();
  for (const auto& [name, t] : net.named_parameters()) s.grads[name] = t.grad().to_vector();
  return s;
}

class DenseNetGradientSums : public ::testing::TestWithParam<Mode> {};

TEST_P(DenseNetGradientSums, EqualTheOutOfPlaceSumsBitForBitWithFewerAllocations) {
  const Mode mode = GetParam();
  const Step in_place = train_step(mode, false);
  const Step out_of_place = train_step(mode, true);
  EXPECT_EQ(in_place.input_grad, out_of_place.input_grad);
  ASSERT_EQ(in_place.grads.size(), out_of_place.grads.size());
  for (const auto& [name, g] : out_of_place.grads) EXPECT_EQ(in_place.grads.at(name), g) << name;

  // Per dense layer, x_l's second gradient contribution: the out-of-place sum's tensor is gone, and
  // where norm1's batch norm runs in the walk itself (not inside a recomputed region) its fresh dx too.
  const int64_t saved_per_layer = mode.memory_efficient ? 1 : 2;
  // (Nothing else in the step changes: exactly that many. The peak of live bytes is set elsewhere in the
  // step, so it does not move.)
  EXPECT_EQ(out_of_place.backward_allocations - in_place.backward_allocations, saved_per_layer * kDenseLayers);
}

INSTANTIATE_TEST_SUITE_P(Modes, DenseNetGradientSums,
                         ::testing::Values(Mode{true, false}, Mode{true, true}, Mode{false, false}, Mode{false, true}),
                         [](const ::testing::TestParamInfo<Mode>& info) {
                           return std::string(info.param.block_buffers ? "BlockBuffer" : "Copying") +
                                  (info.param.memory_efficient ? "MemoryEfficient" : "Standard");
                         });

}  // namespace
