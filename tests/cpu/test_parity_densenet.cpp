// Parity of our DenseNet-121/169/201 with torchvision's densenet (torch BN flavour, PyTorch Adam) and
// Keras's DenseNet201 with the study's Flatten + Dense(1) head (Keras BN flavour, Keras Adam), on golden
// data the references computed (weights_tools/export_golden.py; tolerances in test_parity_common.h):
// converted weights load completely; eval logits and stage activations; training-mode loss, every
// parameter gradient and the BN running statistics after one step; the losses of 3 Adam steps.
#include "cpu/test_parity_common.h"

namespace {

using parity::Case;

class DenseNetParity : public ::testing::TestWithParam<Case> {};

TEST_P(DenseNetParity, ConvertedWeightsLoadCompletely) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_weights_metadata(*golden);
}

TEST_P(DenseNetParity, EvalLogitsAndStageActivations) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_eval(*golden);
}

TEST_P(DenseNetParity, TrainingStepLossGradientsAndBnStatistics) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_training_step(*golden);
}

TEST_P(DenseNetParity, AdamStepLosses) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_adam_steps(*golden);
}

INSTANTIATE_TEST_SUITE_P(Golden, DenseNetParity,
                         ::testing::Values(Case{"tv_densenet121"}, Case{"tv_densenet169"}, Case{"tv_densenet201"},
                                           Case{"keras_densenet201_flatten"}),
                         parity::case_name);

[[maybe_unused]] ::testing::Environment* const printer =
    ::testing::AddGlobalTestEnvironment(new parity::WorstPrinter);

}  // namespace
