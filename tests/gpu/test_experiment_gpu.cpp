// The apps' GPU paths beyond single kernels: DenseNet's memory-efficient mode on the GPU equals the
// standard path and the CPU, Grad-CAM on the GPU equals Grad-CAM on the CPU, and the trainer's GPU loop
// (pinned batches uploaded without waiting, the loss read one step later, CUDA graph replays, an epoch's
// smaller last batch run eagerly beside the graph) gives an eager run's numbers bit for bit and learns.
// (The tiny DenseNet keeps these fast; the same code runs the full nets.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "experiment/cam.h"
#include "experiment/trainer.h"
#include "gpu_test_util.h"
#include "support/gradcheck.h"
#include "support/temp_path.h"
#include "support/tiny_training.h"

namespace {

using engine::Device;
using engine::Tensor;

// max |a - b| / (atol + rtol |b|) over the elements: <= 1 passes.
double worst_ratio(const std::vector<float>& a, const std::vector<float>& b, double atol, double rtol) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / (atol + rtol * std::fabs(double(b[i]))));
  }
  return worst;
}

struct Step {
  std::vector<float> logits;
  std::map<std::string, std::vector<float>> grads, buffers;
};

// One training step (forward, BCE, backward) of the tiny DenseNet on `device`; nothing is updated.
Step train_step(bool memory_efficient, Device device, const Tensor& images_cpu, const Tensor& labels_cpu) {
  auto net = experiment::build_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, 48, /*seed=*/3,
                                   memory_efficient);
  net->to(device);
  net->train(true);
  const Tensor logits = net->forward(images_cpu.to(device));
  engine::bce_with_logits(logits, labels_cpu.to(device)).backward();
  Step s;
  s.logits = logits.to_vector();
  for (const auto& [name, p] : net->named_parameters()) s.grads[name] = p.grad().to_vector();
  for (const auto& [name, t] : net->state()) s.buffers[name] = t.to_vector();
  return s;
}

TEST(GpuDenseNet, MemoryEfficientEqualsStandardAndTheCpu) {
  SKIP_WITHOUT_CUDA();
#ifdef ENGINE_WITH_CUDA
  kernels::cuda::set_deterministic(true);  // the same cuDNN algorithms in both runs
  kernels::cuda::set_allow_tf32(false);    // f32 convolutions, for the comparison with the CPU
#endif
  engine::Generator gen(11);
  const Tensor images = test_support::random_tensor({3, 48, 48, 3}, gen, 0.0f, 1.0f);
  const Tensor labels = Tensor::from_vector({3, 1}, {1.0f, 0.0f, 1.0f});
  const Step standard = train_step(false, Device::cuda(0), images, labels);
  const Step efficient = train_step(true, Device::cuda(0), images, labels);
  const Step cpu = train_step(true, Device::cpu(), images, labels);
  // Recomputing BN+ReLU with the saved statistics repeats the same kernels on the same inputs: equal up to
  // rounding (expected bit-identical, as on the CPU).
  EXPECT_LE(worst_ratio(efficient.logits, standard.logits, 1e-6, 1e-5), 1.0);
  for (const auto& [name, g] : standard.grads)
    EXPECT_LE(worst_ratio(efficient.grads.at(name), g, 1e-6, 1e-5), 1.0) << name;
  for (const auto& [name, b] : standard.buffers)
    EXPECT_LE(worst_ratio(efficient.buffers.at(name), b, 1e-6, 1e-5), 1.0) << name;  // running stats once
  // GPU against the CPU reference: different summation orders, f32 throughout.
  EXPECT_LE(worst_ratio(efficient.logits, cpu.logits, 1e-4, 1e-3), 1.0);
  for (const auto& [name, g] : cpu.grads) EXPECT_LE(worst_ratio(efficient.grads.at(name), g, 1e-4, 2e-3), 1.0) << name;
#ifdef ENGINE_WITH_CUDA
  kernels::cuda::set_deterministic(false);
  kernels::cuda::set_allow_tf32(true);
#endif
}

TEST(GpuCam, GradCamOnTheGpuEqualsTheCpu) {
  SKIP_WITHOUT_CUDA();
#ifdef ENGINE_WITH_CUDA
  kernels::cuda::set_allow_tf32(false);
#endif
  for (const nets::Head head : {nets::Head::gap, nets::Head::flatten}) {
    auto net = experiment::build_net("densenet_tiny", head, nets::Flavor::torch, 64, /*seed=*/5);
    net->train(false);
    engine::Generator gen(17);
    const Tensor images = test_support::random_tensor({2, 64, 64, 3}, gen, 0.0f, 1.0f);
    std::vector<float> maps[2];
    std::vector<double> logits[2];
    for (int d = 0; d < 2; ++d) {
      const Device device = d == 0 ? Device::cpu() : Device::cuda(0);
      net->to(device);
      Tensor features;
      {
        engine::NoGradGuard no_grad;
        features = net->features(images.to(device));
      }
      const Tensor gradient = experiment::logit_gradient(*net, features, 0, &logits[d]);
      maps[d] = experiment::gradcam_raw(features, gradient);
    }
    ASSERT_EQ(logits[0].size(), 2u);
    for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(logits[1][i], logits[0][i], 1e-3 + 1e-3 * std::fabs(logits[0][i]));
    double scale = 0;
    for (float v : maps[0]) scale = std::max(scale, double(std::fabs(v)));
    EXPECT_LE(worst_ratio(maps[1], maps[0], 1e-3 * scale, 1e-3), 1.0) << nets::head_name(head);
  }
#ifdef ENGINE_WITH_CUDA
  kernels::cuda::set_allow_tf32(true);
#endif
}

// The trainer on the GPU, graphed (the default) and with --no-graph, deterministic (the same cuDNN
// algorithms, TF32 off): the same losses, epoch by epoch, bit for bit, and the loss falls. The synthetic
// set's training split is not a multiple of the batch, so every epoch ends with a smaller batch, which
// runs eagerly beside the graph.
TEST(GpuTrainer, GraphedRunEqualsEagerRunBitForBitAndLearns) {
  SKIP_WITHOUT_CUDA();
  const std::string synthetic = test_support::fresh_temp_path("gpu_trainer", "synth");
  auto run = [&](bool no_graph) {
    experiment::TrainOptions o = test_support::tiny_train_options(synthetic, 64);
    o.flavor = "torch";
    o.epochs = 4;
    o.workers = 2;
    o.device = "cuda";
    o.deterministic = true;
    o.no_graph = no_graph;
    o.out = test_support::fresh_temp_path("gpu_trainer", no_graph ? "eager" : "graphed");
    const experiment::TrainResult r = experiment::run_training(o);
    std::filesystem::remove_all(o.out);
    return r;
  };
  const experiment::TrainResult graphed = run(false), eager = run(true);
  ASSERT_EQ(graphed.rows.size(), 4u);
  ASSERT_EQ(eager.rows.size(), 4u);
  for (size_t e = 0; e < graphed.rows.size(); ++e) {
    EXPECT_EQ(graphed.rows[e].train_loss, eager.rows[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(graphed.rows[e].val_loss, eager.rows[e].val_loss) << "epoch " << e + 1;
  }
  EXPECT_LT(graphed.rows.back().train_loss, 0.9 * graphed.rows.front().train_loss);
  std::filesystem::remove_all(synthetic);
}

}  // namespace
