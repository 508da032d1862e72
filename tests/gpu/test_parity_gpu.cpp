// GPU variants of the parity tests (tests/cpu/test_parity_*.cpp): the same golden data from torchvision,
// timm and Keras, the same checks and tolerances, with the net, its weights and the inputs on the CUDA
// device. TF32 is switched off so the f32 tolerances of the CPU tests apply unchanged (TF32 and bf16 get
// their own stated tolerances with the fast paths). Skipped without a device or without golden data.
#include "cpu/test_parity_common.h"
#include "engine/device.h"
#ifdef ENGINE_WITH_CUDA
#include "kernels/cuda/context.h"
#endif

namespace {

using parity::Case;

class GpuParity : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!engine::cuda_available()) GTEST_SKIP() << "no CUDA device: " << engine::probe_devices().reason;
#ifdef ENGINE_WITH_CUDA
    kernels::cuda::set_allow_tf32(false);
#endif
  }
  void TearDown() override {
#ifdef ENGINE_WITH_CUDA
    if (engine::cuda_available()) kernels::cuda::set_allow_tf32(true);
#endif
  }
};

TEST_P(GpuParity, EvalLogitsAndStageActivations) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_eval(*golden, engine::Device::cuda());
}

TEST_P(GpuParity, TrainingStepLossGradientsAndBnStatistics) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_training_step(*golden, engine::Device::cuda());
}

TEST_P(GpuParity, AdamStepLosses) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  parity::check_adam_steps(*golden, engine::Device::cuda());
}

// bf16 mixed precision on the GPU against the same golden data, with the CPU test's bounds
// (tests/cpu/test_parity_bf16.cpp: absolute, and against the f32 net on bf16-rounded input and weights,
// which runs here with TF32 off). cuDNN and cuBLAS sum in their own order, so bf16 values may differ from
// the CPU's by one ulp where that moves a rounding: far below these bounds.
TEST_P(GpuParity, Bf16EvalLogitsFollowTheGoldenF32) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  const parity::Bf16EvalDeviation d = parity::check_bf16_eval(*golden, parity::kBf16Bounds, engine::Device::cuda());
  std::cout << "[bf16 parity] " << GetParam().name << " eval logits on the GPU: relative L2 " << d.logits
            << " (rounded f32 " << d.rounded_logits << ")\n";
}

TEST_P(GpuParity, Bf16TrainingStepGradientsFollowTheGoldenF32) {
  PARITY_GOLDEN_OR_SKIP(golden, GetParam().name);
  const parity::Bf16StepDeviation d =
      parity::check_bf16_training_step(*golden, parity::kBf16Bounds, engine::Device::cuda());
  std::cout << "[bf16 parity] " << GetParam().name << " training step on the GPU: loss " << d.loss << " ("
            << d.rounded_loss << "), all gradients " << d.all_grads << " (" << d.rounded_all_grads
            << "), worst tensor " << d.worst_grad << " (" << d.worst_name << ")\n";
}

INSTANTIATE_TEST_SUITE_P(Golden, GpuParity,
                         // The cases a GPU machine's own PyTorch, torchvision and timm can export
                         // (scripts/gpu_check.sh does); the Keras cases need Keras/JAX from PyPI.
                         ::testing::Values(Case{"tv_densenet121"}, Case{"tv_densenet201"}, Case{"timm_irv2"}),
                         parity::case_name);

}  // namespace
