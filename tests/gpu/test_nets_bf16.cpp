// densenet_tiny forward and backward in bf16 on the GPU against the CPU's bf16 reference (docs/precision.md):
// the same weights and images, every op with bf16 activations on both devices. The kernels agree up to
// summation order (one bf16 ulp where it moves a rounding), so the GPU must stay much closer to the CPU
// than bf16 is to f32 (tests/cpu/test_nets_bf16.cpp, eval mode: logits 2e-2, gradients 5e-2): relative
// L2 of the logits 1e-2, of all parameter gradients together 2e-2, of the input's gradient 5e-2 (first
// guesses until a GPU has run it). Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpu_test_util.h"
#include "nets/registry.h"
#include "support/gradcheck.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace engine;

double relative_l2(const std::vector<float>& actual, const std::vector<float>& expected) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff += (double(actual[i]) - expected[i]) * (double(actual[i]) - expected[i]);
    norm += double(expected[i]) * expected[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

struct Pass {
  std::vector<float> logits, grads, image_grad;
};

Pass run(nets::Net& net, const Tensor& images_f32, const Tensor& targets, Device device) {
  net.to(device);
  net.zero_grad();
  const Tensor images = images_f32.to(device).to(DType::bf16);
  images.impl()->requires_grad = true;
  const Tensor logits = net.forward(images);
  EXPECT_EQ(logits.dtype(), DType::bf16);
  bce_with_logits(logits, targets.to(device)).backward();
  Pass p;
  p.logits = logits.to_vector();
  for (const auto& [name, t] : net.named_parameters()) {
    const std::vector<float> g = t.grad().to_vector();
    p.grads.insert(p.grads.end(), g.begin(), g.end());
  }
  p.image_grad = images.grad().to_vector();
  return p;
}

TEST(CudaBf16Net, DenseNetTinyMatchesTheCpuReference) {
  SKIP_WITHOUT_CUDA();
  Generator gen(21), data(22);
  auto net = nets::make_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, 64, gen);
  net->train(false);
  const Tensor images = test_support::random_tensor({8, 64, 64, 3}, data, 0.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({8}, {1, 0, 0, 1, 1, 1, 0, 0});
  const Pass cpu = run(*net, images, targets, Device::cpu());
  const Pass gpu = run(*net, images, targets, Device::cuda());
  EXPECT_LT(relative_l2(gpu.logits, cpu.logits), 1e-2);
  EXPECT_LT(relative_l2(gpu.grads, cpu.grads), 2e-2);
  EXPECT_LT(relative_l2(gpu.image_grad, cpu.image_grad), 5e-2);
}

}  // namespace

#else

TEST(CudaBf16Net, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif  // ENGINE_WITH_CUDA
