// Folded inference on the GPU (Net::fold_batch_norms; docs/nets.md, "Folded inference"): every folded unit
// runs cuDNN's fused conv + bias + ReLU (cudnnConvolutionBiasActivationForward), or the convolution then
// the bias and ReLU where cuDNN has no fused kernel for the shape. Against the unfolded eval forward on the
// GPU, and against the folded forward on the CPU, TF32 off: relative L2 of the logits and of every stage
// below 5e-5 (the CPU test's bound is 2e-6 for folded against unfolded; cuDNN's algorithms sum in other
// orders, FFT and Winograd included, over some 200 convolutions: a first guess until a GPU has run it; a
// wrong fold is off by 1e-2 or more). bf16 activations: the folded
// features within 2e-2 of the unfolded bf16 net's, as on the CPU. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "gpu_test_util.h"
#include "nets/registry.h"
#include "support/folded_nets.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace engine;
using test_support::relative_l2;

constexpr double kMaxRelativeL2 = 5e-5;

struct Case {
  std::string arch;
  int64_t size;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.arch + "_" + std::to_string(info.param.size);
}

class GpuFoldedInference : public ::testing::TestWithParam<Case> {
 protected:
  const gpu_test::SwitchesGuard switches_;  // TF32 restored at the end
};

TEST_P(GpuFoldedInference, EqualsTheUnfoldedForwardAndTheCpuFold) {
  SKIP_WITHOUT_CUDA();
  kernels::cuda::set_allow_tf32(false);
  const Case& c = GetParam();
  Generator gen(61), data(62);
  auto net = nets::make_net(c.arch, nets::Head::flatten, nets::Flavor::keras, c.size, gen);
  test_support::randomise_batch_norms(*net, 63);
  net->eval();
  const Tensor images = test_support::random_tensor({2, c.size, c.size, 3}, data, -1.0f, 1.0f);
  NoGradGuard no_grad;

  net->fold_batch_norms();
  nets::StageMap cpu_folded;
  const Tensor cpu_logits = net->forward_with_stages(images, cpu_folded);
  net->fold_batch_norms(false);

  net->to(Device::cuda(0));
  const Tensor gpu_images = images.to(Device::cuda(0));
  nets::StageMap unfolded, folded;
  const Tensor logits = net->forward_with_stages(gpu_images, unfolded);
  net->fold_batch_norms();
  const Tensor folded_logits = net->forward_with_stages(gpu_images, folded);

  const double against_unfolded = relative_l2(folded_logits, logits);
  const double against_cpu = relative_l2(folded_logits, cpu_logits);
  std::printf("%s at %lld: folded logits against unfolded %.3g, against the CPU's fold %.3g\n", c.arch.c_str(),
              static_cast<long long>(c.size), against_unfolded, against_cpu);
  EXPECT_LT(against_unfolded, kMaxRelativeL2);
  EXPECT_LT(against_cpu, kMaxRelativeL2);
  ASSERT_EQ(folded.size(), unfolded.size());
  for (const auto& [stage, expected] : unfolded) {
    ASSERT_TRUE(folded.count(stage) && cpu_folded.count(stage)) << stage;
    EXPECT_LT(relative_l2(folded.at(stage), expected), kMaxRelativeL2) << stage << " against unfolded";
    EXPECT_LT(relative_l2(folded.at(stage), cpu_folded.at(stage)), kMaxRelativeL2) << stage << " against the CPU";
  }
}

INSTANTIATE_TEST_SUITE_P(Nets, GpuFoldedInference,
                         ::testing::Values(Case{"densenet_tiny", 64}, Case{"densenet201", 32},
                                           Case{"inception_resnet_v2", 75}),
                         case_name);

TEST(GpuFoldedInferenceBf16, FeaturesStayWithinBf16Rounding) {
  SKIP_WITHOUT_CUDA();
  Generator gen(64), data(65);
  auto net = nets::make_net("densenet_tiny", nets::Head::flatten, nets::Flavor::keras, 64, gen);
  test_support::randomise_batch_norms(*net, 66);
  net->eval();
  net->to(Device::cuda(0));
  const Tensor images =
      test_support::random_tensor({2, 64, 64, 3}, data, -1.0f, 1.0f).to(Device::cuda(0)).to(DType::bf16);
  NoGradGuard no_grad;
  const Tensor features = net->features(images);
  net->fold_batch_norms();
  const Tensor folded = net->features(images);
  EXPECT_EQ(folded.dtype(), DType::bf16);
  const double error = relative_l2(folded, features);
  std::printf("densenet_tiny bf16 features on the GPU: folded against unfolded, relative L2 %.3g\n", error);
  EXPECT_LT(error, 2e-2);
}

}  // namespace

#else

TEST(GpuFoldedInference, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif  // ENGINE_WITH_CUDA
