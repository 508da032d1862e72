// Parity of our Inception-ResNet-v2 with timm's inception_resnet_v2 (torch BN flavour, PyTorch Adam;
// timm's BN gammas stay fixed at one, as our BN has none) and Keras's InceptionResNetV2 (Keras BN
// flavour, Keras Adam), both with the ImageNet head, on golden data the references computed
// (weights_tools/export_golden.py; tolerances in test_parity_common.h): converted weights load
// completely; eval logits and stage activations; training-mode loss, every parameter gradient and the BN
// running statistics after one step; the losses of 3 Adam steps.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/test_parity_common.h"
#include "kernels/cpu/conv_winograd.h"
#include "support/gradcheck.h"

namespace {

using engine::Tensor;
using parity::Case;

class InceptionParity : public ::testing::TestWithParam<Case> {};

TEST_P(InceptionParity, ConvertedWeightsLoadCompletely) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_weights_metadata(*golden);
}

TEST_P(InceptionParity, EvalLogitsAndStageActivations) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_eval(*golden);
}

TEST_P(InceptionParity, TrainingStepLossGradientsAndBnStatistics) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_training_step(*golden);
}

TEST_P(InceptionParity, AdamStepLosses) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_adam_steps(*golden);
}

INSTANTIATE_TEST_SUITE_P(Golden, InceptionParity, ::testing::Values(Case{"timm_irv2"}, Case{"keras_irv2"}),
                         parity::case_name);

// At 299 px a training step runs block17's 1x7/7x1 convolutions as Winograd F(4, 7) along one axis and the
// 3x3s as F(2x2, 3x3) (kernels/cpu/conv_winograd.h); the golden data's 107 px leaves the former on im2col (5x5
// maps). Against the same step on im2col, which the tests above hold to timm
// and Keras (random weights, Keras BN flavour, ImageNet head, a batch of 2, the loss on the first logit):
// - the logits within half the parity tolerance, so within it of the frameworks (the tests above: about 0.4);
// - the parameter gradients no further from im2col's than im2col's own are when its input is scaled by
//   1 + 2^-20. With random weights this net's gradients at 299 px are ill-conditioned: a change of the input in
//   its last bits moves them by about 1% (relative L2, the median over the parameters; 1.3% at the 90th
//   percentile), and so does Winograd's rounding. A wrong forward or backward data in a Winograd kernel would
//   move them by far more; a wrong weight gradient moves only its own weights, so block17's forty 1x7/7x1
//   weights are also bounded on their own (their largest relative L2). Each kernel's passes are held to a
//   double reference in test_kernels_conv.cpp.
TEST(InceptionWinograd, TrainingStepAt299IsAsCloseToIm2colAsRoundingAllows) {
  engine::Generator data(21);
  const Tensor images = test_support::random_tensor({2, 299, 299, 3}, data, -1.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({2}, {1.0f, 0.0f});
  struct Step {
    Tensor logits;
    std::map<std::string, std::vector<float>> grads;
  };
  const auto step = [&](bool winograd, float input_scale) {
    kernels::cpu::set_winograd_enabled(winograd);
    engine::Generator gen(22);
    auto net = nets::make_net("inception_resnet_v2", nets::Head::imagenet, nets::Flavor::keras, 299, gen);
    Step s;
    s.logits = net->forward(engine::scale(images, input_scale));
    parity::golden_loss(s.logits, targets).backward();
    for (const auto& [name, p] : net->named_parameters()) s.grads.emplace(name, p.grad().to_vector());
    return s;
  };
  const auto one_axis_winograd = [](const std::string& name) {  // block17's 1x7 and 7x1 weights
    return name.rfind("repeat_1.", 0) == 0 && (name.find(".branch1.1.conv.weight") != std::string::npos ||
                                               name.find(".branch1.2.conv.weight") != std::string::npos);
  };
  // The median, the 90th percentile and the largest over the parameters `which` takes of |a - b| / |b| (L2
  // norms).
  const auto relative_l2 = [](const Step& a, const Step& b, auto which) {
    std::vector<double> relative;
    for (const auto& [name, g] : b.grads) {
      if (!which(name)) continue;
      const std::vector<float>& other = a.grads.at(name);
      double difference = 0, norm = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        difference += (double(other[i]) - g[i]) * (double(other[i]) - g[i]);
        norm += double(g[i]) * g[i];
      }
      relative.push_back(std::sqrt(difference / std::max(norm, 1e-300)));
    }
    std::sort(relative.begin(), relative.end());
    return std::make_tuple(relative[relative.size() / 2], relative[relative.size() * 9 / 10], relative.back());
  };
  const auto every = [](const std::string&) { return true; };
  const bool enabled_before = kernels::cpu::winograd_enabled();
  const Step im2col = step(false, 1.0f), perturbed = step(false, 1.0f + 1.0f / (1 << 20)), winograd = step(true, 1.0f);
  kernels::cpu::set_winograd_enabled(enabled_before);

  const parity::Tolerance half{parity::kActivations.atol_scale / 2, parity::kActivations.rtol / 2};
  EXPECT_TRUE(parity::close("winograd logits (half tolerance)", "logits", winograd.logits, im2col.logits, half));
  const auto [winograd_median, winograd_90, winograd_worst] = relative_l2(winograd, im2col, every);
  const auto [input_median, input_90, input_worst] = relative_l2(perturbed, im2col, every);
  const double winograd_1d = std::get<2>(relative_l2(winograd, im2col, one_axis_winograd));
  const double input_1d = std::get<2>(relative_l2(perturbed, im2col, one_axis_winograd));
  std::cout << "[winograd] gradients against im2col, relative L2 median / 90th percentile: " << winograd_median
            << " / " << winograd_90 << ", block17's 1x7/7x1 weights at worst " << winograd_1d
            << "; im2col with its input scaled by 1 + 2^-20: " << input_median << " / " << input_90 << ", "
            << input_1d << "\n";
  EXPECT_GT(input_median, 0.0);
  EXPECT_LE(winograd_median, 2.0 * input_median);
  EXPECT_LE(winograd_90, 2.0 * input_90);
  EXPECT_LE(winograd_1d, 2.0 * input_1d);
}

[[maybe_unused]] ::testing::Environment* const printer =
    ::testing::AddGlobalTestEnvironment(new parity::WorstPrinter);

}  // namespace
