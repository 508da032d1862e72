// Parity of our Inception-ResNet-v2 with timm's inception_resnet_v2 (torch BN flavour, PyTorch Adam;
// timm's BN gammas stay fixed at one, as our BN has none) and Keras's InceptionResNetV2 (Keras BN
// flavour, Keras Adam), both with the ImageNet head, on golden data the references computed
// (weights_tools/export_golden.py; tolerances in test_parity_common.h): converted weights load
// completely; eval logits and stage activations; training-mode loss, every parameter gradient and the BN
// running statistics after one step; the losses of 3 Adam steps.
#include "cpu/test_parity_common.h"

namespace {

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

[[maybe_unused]] ::testing::Environment* const printer =
    ::testing::AddGlobalTestEnvironment(new parity::WorstPrinter);

}  // namespace
