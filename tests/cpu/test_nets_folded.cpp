// Folded inference (Net::fold_batch_norms): every batch norm that directly follows a convolution folded
// into its weights and bias, for the eval-mode forward (docs/nets.md, "Folded inference").
//
// The folded forward must equal the unfolded eval forward to f32 rounding: the fold changes where the
// per-channel scale is applied (to the weights, before the convolution's sum, instead of to its result),
// so each folded unit rounds differently by a few ulp, and the differences add up over the net's depth.
// Tolerance, relative L2 (||folded - unfolded|| / ||unfolded||) of the logits and of every stage, f32,
// with random batch-norm statistics and affine parameters: 2e-6. Measured: stages 1.6e-7 to 9.0e-7
// (densenet_tiny at 64, DenseNet-201 at 32, Inception-ResNet-v2 at 75), logits 1.3e-7 to 9.2e-7 (two
// numbers per net, each a long sum with cancellation: the noisiest measure).
// With bf16 activations the folded features stay within 2e-2 of the unfolded bf16 net's (measured 4.6e-3
// on densenet_tiny: bf16's own rounding, as the bf16 net against f32 in test_nets_bf16.cpp).
// Names, parameters and buffers are untouched (a checkpoint of a folded net is the unfolded net's), the
// training forward never uses the fold, and unfolding gives the unfolded forward back bit for bit.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "nets/densenet.h"
#include "nets/registry.h"
#include "support/folded_nets.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;
using nets::Flavor;
using nets::Head;

constexpr double kMaxRelativeL2 = 2e-6;

using test_support::randomise_batch_norms;
using test_support::relative_l2;

std::vector<std::pair<std::string, std::vector<float>>> state_values(const Module& module) {
  std::vector<std::pair<std::string, std::vector<float>>> values;
  for (const auto& [name, t] : module.state()) values.emplace_back(name, t.to_vector());
  return values;
}

struct Case {
  std::string arch;
  int64_t size;
  bool memory_efficient;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.arch << " at " << c.size << (c.memory_efficient ? ", memory-efficient" : "");
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.arch + "_" + std::to_string(info.param.size) + (info.param.memory_efficient ? "_me" : "");
}

class FoldedInference : public ::testing::TestWithParam<Case> {};

TEST_P(FoldedInference, EqualsTheUnfoldedEvalForwardAndKeepsTheParameters) {
  const Case& c = GetParam();
  Generator gen(41), data(42);
  nets::NetOptions options;
  options.memory_efficient = c.memory_efficient;
  auto net = nets::make_net(c.arch, Head::flatten, Flavor::keras, c.size, gen, options);
  randomise_batch_norms(*net, 43);
  net->eval();
  const Tensor images = test_support::random_tensor({2, c.size, c.size, 3}, data, -1.0f, 1.0f);
  const auto state_before = state_values(*net);

  NoGradGuard no_grad;
  nets::StageMap unfolded, folded, unfolded_again;
  const Tensor logits = net->forward_with_stages(images, unfolded);

  net->fold_batch_norms();
  EXPECT_TRUE(net->batch_norms_folded());
  const Tensor folded_logits = net->forward_with_stages(images, folded);
  const double logits_error = relative_l2(folded_logits, logits);
  std::printf("%s at %lld%s: logits relative L2 %.3g\n", c.arch.c_str(), static_cast<long long>(c.size),
              c.memory_efficient ? " (memory-efficient)" : "", logits_error);
  EXPECT_LT(logits_error, kMaxRelativeL2);
  ASSERT_EQ(folded.size(), unfolded.size());
  for (const auto& [stage, expected] : unfolded) {
    ASSERT_TRUE(folded.count(stage)) << stage;
    const double error = relative_l2(folded.at(stage), expected);
    std::printf("  stage %-10s relative L2 %.3g\n", stage.c_str(), error);
    EXPECT_LT(error, kMaxRelativeL2) << stage;
  }
  // The fold is not bit-identical: were it, this test would not see the folded path at all.
  EXPECT_NE(folded_logits.to_vector(), logits.to_vector());

  // Names, parameters and buffers (what a checkpoint holds) are those of the unfolded net.
  EXPECT_EQ(state_values(*net), state_before);

  // Unfolding gives the unfolded forward back, bit for bit.
  net->fold_batch_norms(false);
  EXPECT_FALSE(net->batch_norms_folded());
  EXPECT_EQ(net->forward_with_stages(images, unfolded_again).to_vector(), logits.to_vector());
}

INSTANTIATE_TEST_SUITE_P(Nets, FoldedInference,
                         ::testing::Values(Case{"densenet_tiny", 64, false}, Case{"densenet_tiny", 64, true},
                                           Case{"densenet201", 32, false}, Case{"inception_resnet_v2", 75, false}),
                         case_name);

// bf16 activations (docs/precision.md): the folded net runs too, and stays within bf16's own rounding of
// the unfolded bf16 net (the f32 folded weights are rounded to bf16 by the convolution, as any weights are).
TEST(FoldedInference, Bf16ActivationsStayWithinBf16Rounding) {
  Generator gen(50), data(51);
  auto net = nets::make_net("densenet_tiny", Head::flatten, Flavor::keras, 64, gen);
  randomise_batch_norms(*net, 52);
  net->eval();
  const Tensor images = test_support::random_tensor({2, 64, 64, 3}, data, -1.0f, 1.0f).to(DType::bf16);
  NoGradGuard no_grad;
  const Tensor features = net->features(images).to(DType::f32);
  net->fold_batch_norms();
  const Tensor folded = net->features(images);
  EXPECT_EQ(folded.dtype(), DType::bf16);
  const double error = relative_l2(folded.to(DType::f32), features);
  std::printf("densenet_tiny bf16 features: folded against unfolded, relative L2 %.3g\n", error);
  EXPECT_LT(error, 2e-2);
}

// BatchNorm::forward_relu is relu(forward(x)) bit for bit on the CPU: outputs, running statistics and
// gradients in training mode (both flavours), outputs in eval mode, on a channel slice of a wider buffer.
TEST(BatchNormForwardRelu, EqualsReluOfForwardBitForBit) {
  for (const BatchNormOptions& options : {BatchNormOptions::keras(1.001e-5f), BatchNormOptions::torch(1e-5f)}) {
    Generator data(53);
    const Tensor wide = test_support::random_tensor({2, 5, 3, 24}, data, -2.0f, 2.0f);
    const Tensor x_values = wide.slice(-1, 4, 20);  // 16 channels of 24
    BatchNorm fused(BatchNormSpec{16, options, true, true}), pair(BatchNormSpec{16, options, true, true});
    for (BatchNorm* bn : {&fused, &pair}) {
      Generator g(54);
      bn->weight.copy_from(test_support::random_tensor({16}, g, 0.5f, 1.5f));
      bn->bias.copy_from(test_support::random_tensor({16}, g, -0.5f, 0.5f));
    }
    const Tensor upstream = test_support::random_tensor({2, 5, 3, 16}, data);
    std::vector<std::vector<float>> results[2];
    for (int which = 0; which < 2; ++which) {
      BatchNorm& bn = which == 0 ? fused : pair;
      Tensor x = x_values.clone();
      x.set_requires_grad(true);
      const Tensor y = which == 0 ? bn.forward_relu(x) : relu(bn.forward(x));
      y.backward(upstream);
      results[which] = {y.to_vector(), x.grad().to_vector(), bn.weight.grad().to_vector(), bn.bias.grad().to_vector(),
                        bn.running_mean.to_vector(), bn.running_var.to_vector()};
      bn.eval();
      NoGradGuard no_grad;
      results[which].push_back((which == 0 ? bn.forward_relu(x_values) : relu(bn.forward(x_values))).to_vector());
    }
    EXPECT_EQ(results[0], results[1]);
  }
}

TEST(FoldedInference, OnlyForInferenceAndTrainUnfolds) {
  Generator gen(44), data(45);
  auto net = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 64, gen);
  // A net in training mode refuses to fold, with a plain message.
  try {
    net->fold_batch_norms();
    FAIL() << "folding in training mode was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("eval()"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(net->batch_norms_folded());

  // train() unfolds: the training forward is the unfolded net's (batch statistics, running statistics
  // updated), bit for bit.
  Generator same_gen(44);
  auto reference = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 64, same_gen);
  const Tensor images = test_support::random_tensor({2, 64, 64, 3}, data, -1.0f, 1.0f);
  net->eval();
  net->fold_batch_norms();
  net->train();
  EXPECT_FALSE(net->batch_norms_folded());
  NoGradGuard no_grad;
  EXPECT_EQ(net->forward(images).to_vector(), reference->forward(images).to_vector());
  EXPECT_EQ(state_values(*net), state_values(*reference));
}

TEST(FoldedInference, SummaryOfAFoldedNetIsTheUnfoldedNets) {
  Generator gen(46);
  auto net = nets::make_net("densenet_tiny", Head::flatten, Flavor::keras, 64, gen);
  const std::vector<nets::SummaryRow> unfolded = net->summary(64);
  net->eval();
  net->fold_batch_norms();
  const std::vector<nets::SummaryRow> folded = net->summary(64);
  EXPECT_TRUE(net->batch_norms_folded());  // summary leaves the net as it found it
  ASSERT_EQ(folded.size(), unfolded.size());
  for (size_t i = 0; i < folded.size(); ++i) {
    EXPECT_EQ(folded[i].name, unfolded[i].name);
    EXPECT_EQ(folded[i].output, unfolded[i].output) << folded[i].name;
    EXPECT_EQ(folded[i].parameters, unfolded[i].parameters) << folded[i].name;
    EXPECT_EQ(folded[i].macs, unfolded[i].macs) << folded[i].name;
  }
}

}  // namespace

namespace {

// The eval forward's time, unfolded and folded, for docs/perf-notes.md (DenseNet-201 at 224 and
// Inception-ResNet-v2 at 299, batch 2; the lowest of five processor times, the modes alternating):
//   build/tests/cpu_test_nets_folded --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Time*'
TEST(FoldedInference, DISABLED_TimeEvalForward) {
  for (const auto& [arch, size] : std::vector<std::pair<std::string, int64_t>>{{"densenet201", 224},
                                                                              {"inception_resnet_v2", 299}}) {
    Generator gen(47), data(48);
    auto net = nets::make_net(arch, Head::gap, Flavor::keras, size, gen);
    randomise_batch_norms(*net, 49);
    net->eval();
    const Tensor images = test_support::random_tensor({2, size, size, 3}, data, -1.0f, 1.0f);
    NoGradGuard no_grad;
    double best[2] = {1e30, 1e30};
    for (int rep = -1; rep < 5; ++rep) {
      for (int folded = 0; folded < 2; ++folded) {
        net->fold_batch_norms(folded == 1);
        const std::clock_t start = std::clock();
        net->forward(images);
        const double seconds = static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
        if (rep >= 0) best[folded] = std::min(best[folded], seconds);
      }
    }
    std::printf("%s at %lld, batch 2, eval forward (processor time): unfolded %.3f s, folded %.3f s (%.2fx)\n",
                arch.c_str(), static_cast<long long>(size), best[0], best[1], best[0] / best[1]);
  }
}

}  // namespace
