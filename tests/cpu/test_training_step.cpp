// TrainingStep (engine/training_step.h): the same numbers as the step written out by hand, bit for bit
// (plain and class-weighted loss); a non-finite loss updates nothing; the reduce hook sees the complete
// gradients after backward and before the update; without an optimizer only the gradients are computed;
// a precision other than f32 is refused.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/layers.h"
#include "engine/ops.h"
#include "engine/training_step.h"
#include "support/gradcheck.h"
#include "support/small_net.h"

namespace {

using namespace engine;

using test_support::SmallNet;

struct Batch {
  Tensor images, labels, weights;
};

Batch make_batch(uint64_t seed) {
  Generator gen(seed);
  Batch b;
  b.images = test_support::random_tensor({6, 4, 4, 3}, gen, -1.0f, 1.0f);
  b.labels = Tensor::from_vector({6}, {0, 1, 1, 0, 1, 0});
  b.weights = Tensor::from_vector({6}, {0.5f, 1.5f, 1.5f, 0.5f, 1.5f, 0.5f});
  return b;
}

std::vector<float> values(const ParameterArena& arena) { return arena.values().to_vector(); }

TEST(TrainingStep, EqualsTheHandWrittenStepBitForBit) {
  for (const bool weighted : {false, true}) {
    SmallNet by_hand(1), by_step(1);
    ParameterArena arena_hand(by_hand.named_parameters()), arena_step(by_step.named_parameters());
    Adam adam_hand(arena_hand, Adam::keras(1e-2f)), adam_step(arena_step, Adam::keras(1e-2f));
    TrainingStep step(by_step, arena_step, &adam_step);
    for (uint64_t i = 0; i < 4; ++i) {
      const Batch b = make_batch(10 + i);
      const Tensor w = weighted ? b.weights : Tensor();
      arena_hand.zero_grad();
      const Tensor logits = by_hand.forward(b.images);
      const Tensor loss = bce_with_logits(logits, b.labels, w);
      const double loss_value = loss.item();
      loss.backward();
      adam_hand.step();

      const StepResult r = step.run(b.images, b.labels, w);
      EXPECT_TRUE(r.finite);
      EXPECT_EQ(r.loss, loss_value) << "step " << i;
      EXPECT_EQ(r.logits.to_vector(), logits.to_vector()) << "step " << i;
      EXPECT_EQ(values(arena_step), values(arena_hand)) << "step " << i << (weighted ? " (weighted)" : "");
      EXPECT_EQ(arena_step.grads().to_vector(), arena_hand.grads().to_vector());
      EXPECT_EQ(adam_step.step_count(), adam_hand.step_count());
    }
    for (size_t k = 0; k < adam_hand.state().size(); ++k)
      EXPECT_EQ(adam_step.state()[k].second.to_vector(), adam_hand.state()[k].second.to_vector());
  }
}

TEST(TrainingStep, ANonFiniteLossUpdatesNothing) {
  SmallNet net(2);
  ParameterArena arena(net.named_parameters());
  Adam adam(arena, Adam::pytorch(1e-2f));
  bool reduced = false;
  StepOptions options;
  options.reduce_gradients = [&](ParameterArena&) { reduced = true; };
  TrainingStep step(net, arena, &adam, options);
  step.run(make_batch(3).images, make_batch(3).labels);  // one ordinary step: non-zero moments
  reduced = false;
  const std::vector<float> before = values(arena);
  const std::vector<float> m_before = adam.state()[0].second.to_vector();
  const int64_t steps_before = adam.step_count();

  Batch b = make_batch(4);
  std::vector<float> pixels = b.images.to_vector();
  pixels[5] = std::numeric_limits<float>::quiet_NaN();
  b.images = Tensor::from_vector(b.images.shape(), pixels);
  const StepResult r = step.run(b.images, b.labels);
  EXPECT_FALSE(r.finite);
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(r.logits.defined()) << "the logits are kept for a debug dump";
  EXPECT_FALSE(reduced) << "no gradients to reduce";
  EXPECT_EQ(values(arena), before) << "the parameters are untouched";
  EXPECT_EQ(adam.state()[0].second.to_vector(), m_before) << "the moments are untouched";
  EXPECT_EQ(adam.step_count(), steps_before);
}

TEST(TrainingStep, TheReduceHookRunsBetweenBackwardAndTheUpdate) {
  SmallNet net(5), reference(5);
  ParameterArena arena(net.named_parameters()), reference_arena(reference.named_parameters());
  Sgd sgd(arena, {0.1f, 0.0f, 0.0f, false}), reference_sgd(reference_arena, {0.1f, 0.0f, 0.0f, false});
  const Batch b = make_batch(6);

  // The hook sees the gradients of this batch (backward has run) and the parameters as they were
  // (the update has not); zeroing the gradients there leaves the parameters where they are.
  const std::vector<float> before = values(arena);
  std::vector<float> seen_grads, seen_values;
  StepOptions options;
  options.reduce_gradients = [&](ParameterArena& a) {
    seen_grads = a.grads().to_vector();
    seen_values = a.values().to_vector();
    a.grads().fill_(0.0f);
  };
  TrainingStep step(net, arena, &sgd, options);
  EXPECT_TRUE(step.run(b.images, b.labels).finite);
  EXPECT_EQ(seen_values, before);
  EXPECT_EQ(values(arena), before) << "zeroed gradients: SGD moves nothing";

  // The gradients the hook saw are the hand-written backward's.
  reference_arena.zero_grad();
  bce_with_logits(reference.forward(b.images), b.labels).backward();
  EXPECT_EQ(seen_grads, reference_arena.grads().to_vector());

  // A hook that halves the gradients (the mean over two processes of equal gradients) halves SGD's move.
  SmallNet halved(5);
  ParameterArena halved_arena(halved.named_parameters());
  Sgd halved_sgd(halved_arena, {0.1f, 0.0f, 0.0f, false});
  StepOptions halve;
  halve.reduce_gradients = [](ParameterArena& a) {
    std::vector<float> g = a.grads().to_vector();
    for (float& x : g) x *= 0.5f;
    a.grads().copy_from(Tensor::from_vector({static_cast<int64_t>(g.size())}, g));
  };
  TrainingStep(halved, halved_arena, &halved_sgd, halve).run(b.images, b.labels);
  const std::vector<float> after = values(halved_arena);
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_FLOAT_EQ(after[i], before[i] - 0.1f * 0.5f * seen_grads[i]) << "parameter element " << i;
}

TEST(TrainingStep, WithoutAnOptimizerOnlyTheGradients) {
  SmallNet net(7);
  ParameterArena arena(net.named_parameters());
  TrainingStep step(net, arena, nullptr);
  const std::vector<float> before = values(arena);
  const Batch b = make_batch(8);
  EXPECT_TRUE(step.run(b.images, b.labels).finite);
  EXPECT_EQ(values(arena), before);
  const std::vector<float> g = arena.grads().to_vector();
  double norm = 0;
  for (float x : g) norm += static_cast<double>(x) * x;
  EXPECT_GT(norm, 0.0);
  step.run(b.images, b.labels);
  EXPECT_EQ(arena.grads().to_vector(), g) << "each step starts from zeroed gradients";
}

TEST(TrainingStep, F16IsNotImplemented) {
  SmallNet net(9);
  ParameterArena arena(net.named_parameters());
  StepOptions options;
  options.precision = Precision::f16;
  try {
    TrainingStep step(net, arena, nullptr, options);
    FAIL() << "f16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f16 is not implemented"), std::string::npos) << e.what();
  }
}

}  // namespace
