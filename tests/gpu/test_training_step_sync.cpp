// A training step on the GPU synchronises nothing (engine/training_step.h, seam (a')): enqueue() of a
// small conv - BN - ReLU - pool - linear net (the ops of DenseNet's layers; BCE, Adam) makes no host copy and no synchronisation
// through the device table (engine::host_sync_count, counted in the backends' copy_to_host,
// copy_from_host and synchronize), and finish() makes exactly one (the wait on its loss and logits'
// readback, which does not wait for later steps); the deferred step equals
// run() on the same device bit for bit; a NaN batch leaves parameters and Adam moments untouched on the
// device. (Kernels that synchronise by themselves, outside the device table, are not counted: none of a
// step's kernels do since the BCE forward keeps its mean on the device.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/layers.h"
#include "engine/training_step.h"
#include "gpu_test_util.h"
#include "kernels/optimizer.h"
#include "support/gradcheck.h"

namespace {

using engine::Device;
using engine::Tensor;

// [N, 16, 16, 3] -> conv 3x3 (8) -> BN -> ReLU -> max-pool 2 -> conv 1x1 (8) -> BN -> ReLU -> global
// average -> linear -> [N, 1].
class ConvBnNet : public engine::Module {
 public:
  explicit ConvBnNet(uint64_t seed) {
    engine::Generator gen(seed);
    engine::Conv2dSpec c1{3, 8, 3, 3, engine::Conv2dOptions::symmetric(1), false};
    engine::Conv2dSpec c2{8, 8, 1, 1, engine::Conv2dOptions{}, false};
    engine::BatchNormSpec bn;
    bn.channels = 8;
    conv1_ = register_module("conv1", std::make_shared<engine::Conv2d>(c1, gen));
    bn1_ = register_module("bn1", std::make_shared<engine::BatchNorm>(bn));
    conv2_ = register_module("conv2", std::make_shared<engine::Conv2d>(c2, gen));
    bn2_ = register_module("bn2", std::make_shared<engine::BatchNorm>(bn));
    fc_ = register_module("fc", std::make_shared<engine::Linear>(8, 1, true, gen));
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = engine::relu(bn1_->forward(conv1_->forward(x)));
    h = engine::max_pool2d(h, engine::Pool2dOptions::square(2, 2));
    h = engine::relu(bn2_->forward(conv2_->forward(h)));
    return fc_->forward(engine::global_avg_pool(h));
  }

 private:
  std::shared_ptr<engine::Conv2d> conv1_, conv2_;
  std::shared_ptr<engine::BatchNorm> bn1_, bn2_;
  std::shared_ptr<engine::Linear> fc_;
};

struct Model {
  std::shared_ptr<ConvBnNet> net;
  std::unique_ptr<engine::ParameterArena> arena;
  std::unique_ptr<engine::Adam> adam;
  std::unique_ptr<engine::TrainingStep> step;
};

Model make_model() {
  Model m;
  m.net = std::make_shared<ConvBnNet>(5);
  m.net->to(Device::cuda(0));
  m.net->train(true);
  m.arena = std::make_unique<engine::ParameterArena>(m.net->named_parameters());
  m.adam = std::make_unique<engine::Adam>(*m.arena, engine::Adam::keras(1e-3f));
  m.step = std::make_unique<engine::TrainingStep>(*m.net, *m.arena, m.adam.get());
  return m;
}

struct Batch {
  Tensor images, labels;
};

Batch make_batch(uint64_t seed, bool poisoned = false) {
  engine::Generator gen(seed);
  Tensor images = test_support::random_tensor({4, 16, 16, 3}, gen, -1.0f, 1.0f);
  if (poisoned) {
    std::vector<float> v = images.to_vector();
    v[100] = std::numeric_limits<float>::quiet_NaN();
    images = Tensor::from_vector(images.shape(), v);
  }
  return {images.to(Device::cuda(0)), Tensor::from_vector({4}, {0, 1, 1, 0}).to(Device::cuda(0))};
}

TEST(GpuTrainingStep, EnqueueMakesNoHostSynchronisation) {
  SKIP_WITHOUT_CUDA();
  Model m = make_model();
  const Batch b = make_batch(1);
  m.step->finish(m.step->enqueue(b.images, b.labels));  // warm-up: plans, workspaces, allocator
  const int64_t before = engine::host_sync_count();
  const engine::PendingStep pending = m.step->enqueue(b.images, b.labels);
  const int64_t during = engine::host_sync_count() - before;
  EXPECT_EQ(during, 0) << "host synchronisations inside one training step";
  EXPECT_TRUE(std::isfinite(m.step->finish(pending).loss));
  EXPECT_EQ(engine::host_sync_count() - before, 1) << "finish reads the loss: one copy";
}

// finish(k) waits for step k's own readback (a marker behind its loss and logits), not for the step
// enqueued after it: with a long step k + 1 queued (many more enqueued behind it), reading step k returns
// while the device is still busy, and gives step k's values.
TEST(GpuTrainingStep, FinishWaitsForItsOwnStepOnly) {
  SKIP_WITHOUT_CUDA();
  Model m = make_model();
  const Batch b = make_batch(2);
  m.step->finish(m.step->enqueue(b.images, b.labels));  // warm-up
  const engine::PendingStep first = m.step->enqueue(b.images, b.labels);
  ASSERT_TRUE(first.readback) << "a GPU step queues its host readback";
  EXPECT_TRUE(first.host_loss.device().is_cpu() && first.host_loss.storage()->pinned());
  std::vector<engine::PendingStep> later;
  for (int i = 0; i < 20; ++i) later.push_back(m.step->enqueue(b.images, b.labels));
  const engine::StepResult result = m.step->finish(first);
  EXPECT_TRUE(result.logits.device().is_cpu()) << "the logits come back with the loss";
  EXPECT_EQ(result.logits.shape(), (engine::Shape{4, 1}));
  EXPECT_EQ(result.loss, static_cast<double>(first.loss.item())) << "the host copy is the device's loss";
  for (const engine::PendingStep& p : later) EXPECT_TRUE(std::isfinite(m.step->finish(p).loss));
}

// Tensor::to_nonblocking: a pinned host batch goes up without waiting and arrives equal to to()'s copy,
// read after a marker; a pageable one is queued too (the driver may stage it) and arrives equal.
TEST(GpuTrainingStep, NonBlockingUploadEqualsTo) {
  SKIP_WITHOUT_CUDA();
  engine::Generator gen(3);
  const Tensor values = test_support::random_tensor({4, 16, 16, 3}, gen, -1.0f, 1.0f);
  Tensor pinned = Tensor::empty_pinned(values.shape());
  pinned.copy_from(values);
  ASSERT_TRUE(pinned.storage()->pinned());
  const int64_t before = engine::host_sync_count();
  const Tensor up = pinned.to_nonblocking(Device::cuda(0));
  EXPECT_EQ(engine::host_sync_count() - before, 0) << "a pinned upload waits for nothing";
  engine::backend_for(Device::cuda(0)).record_marker()->wait();
  EXPECT_EQ(up.to_vector(), values.to_vector());
  EXPECT_EQ(values.to_nonblocking(Device::cuda(0)).to_vector(), values.to_vector()) << "pageable";
}

TEST(GpuTrainingStep, DeferredEqualsRunBitForBit) {
  SKIP_WITHOUT_CUDA();
#ifdef ENGINE_WITH_CUDA
  const gpu_test::SwitchesGuard switches;  // restored at the end
  kernels::cuda::set_deterministic(true);   // the same cuDNN algorithms in both models
#endif
  Model a = make_model(), b = make_model();
  // b as the trainer runs it: step i's loss is read after step i + 1 is enqueued.
  std::vector<engine::StepResult> expected, got;
  engine::PendingStep previous;
  for (uint64_t i = 0; i < 3; ++i) {
    const Batch batch = make_batch(10 + i);
    expected.push_back(a.step->run(batch.images, batch.labels));
    const engine::PendingStep current = b.step->enqueue(batch.images, batch.labels);
    if (previous.defined()) got.push_back(b.step->finish(previous));
    previous = current;
  }
  got.push_back(b.step->finish(previous));
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].loss, expected[i].loss) << "step " << i;
    EXPECT_EQ(got[i].logits.to_vector(), expected[i].logits.to_vector()) << "step " << i;
  }
  EXPECT_EQ(b.arena->values().to_vector(), a.arena->values().to_vector());
  EXPECT_EQ(b.adam->state()[0].second.to_vector(), a.adam->state()[0].second.to_vector());
}

TEST(GpuTrainingStep, ANonFiniteLossSkipsTheUpdateOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  Model m = make_model();
  const Batch good = make_batch(20), bad = make_batch(21, true);
  m.step->finish(m.step->enqueue(good.images, good.labels));
  const std::vector<float> values = m.arena->values().to_vector();
  const std::vector<float> moments = m.adam->state()[0].second.to_vector();
  const int64_t steps = m.adam->step_count();
  const engine::PendingStep nonfinite = m.step->enqueue(bad.images, bad.labels);
  const engine::PendingStep after = m.step->enqueue(good.images, good.labels);
  EXPECT_FALSE(m.step->finish(nonfinite).finite);
  m.step->finish(after);
  EXPECT_EQ(m.arena->values().to_vector(), values);
  EXPECT_EQ(m.adam->state()[0].second.to_vector(), moments);
  EXPECT_EQ(m.adam->step_count(), steps);
}

// The CUDA optimizer kernels do nothing while the skip flag is set, and flag_nonfinite sets it as the
// CPU's does (sticky).
TEST(GpuTrainingStep, TheSkipFlagGuardsTheCudaOptimizers) {
  SKIP_WITHOUT_CUDA();
#ifdef ENGINE_WITH_CUDA
  const Device gpu = Device::cuda(0);
  const int64_t n = 1000;
  const std::vector<float> p0 = gpu_test::uniform(size_t(n), 1), g0 = gpu_test::uniform(size_t(n), 2);
  Tensor p = Tensor::from_vector({n}, p0).to(gpu), g = Tensor::from_vector({n}, g0).to(gpu);
  Tensor m = Tensor::zeros({n}, gpu), v = Tensor::zeros({n}, gpu), buf = Tensor::zeros({n}, gpu);
  Tensor flag = Tensor::zeros({1}, gpu);
  const Tensor finite = Tensor::from_vector({2}, {1.0f, 2.0f}).to(gpu);
  const Tensor inf = Tensor::from_vector({2}, {1.0f, std::numeric_limits<float>::infinity()}).to(gpu);
  kernels::cuda::flag_nonfinite(2, finite.data(), flag.data());
  EXPECT_EQ(flag.item(), 0.0f);
  kernels::cuda::flag_nonfinite(2, inf.data(), flag.data());
  EXPECT_EQ(flag.item(), 1.0f);
  kernels::cuda::flag_nonfinite(2, finite.data(), flag.data());
  EXPECT_EQ(flag.item(), 1.0f) << "sticky";
  kernels::cuda::adam_update(n, p.data(), g.data(), m.data(), v.data(), 1, kernels::AdamHyper{}, flag.data());
  kernels::SgdHyper sgd;
  sgd.momentum = 0.9f;
  kernels::cuda::sgd_update(n, p.data(), g.data(), buf.data(), sgd, flag.data());
  EXPECT_EQ(p.to_vector(), p0);
  EXPECT_EQ(m.to_vector(), std::vector<float>(size_t(n), 0.0f));
  EXPECT_EQ(buf.to_vector(), std::vector<float>(size_t(n), 0.0f));
  flag.fill_(0.0f);
  kernels::cuda::adam_update(n, p.data(), g.data(), m.data(), v.data(), 1, kernels::AdamHyper{}, flag.data());
  EXPECT_NE(p.to_vector(), p0) << "a clear flag updates";
#endif
}

}  // namespace
