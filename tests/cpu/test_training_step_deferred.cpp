// TrainingStep's deferred form (engine/training_step.h, seam (a')): enqueue() reads nothing back (no host
// copy or synchronisation through the device tables), finish() reads the loss once; the results are the
// synchronous run()'s bit for bit when the host reads the previous step's loss after enqueueing the next;
// a non-finite loss leaves the parameters, the Adam moments and the step count as they were, and so do
// the steps enqueued after it until the flag is cleared. Also the optimizers' device-side skip flag.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/backend.h"
#include "engine/layers.h"
#include "engine/ops.h"
#include "engine/training_step.h"
#include "kernels/optimizer.h"
#include "support/gradcheck.h"
#include "support/small_net.h"

namespace {

using namespace engine;

using test_support::SmallNet;

struct Batch {
  Tensor images, labels;
};

Batch make_batch(uint64_t seed, bool poisoned = false) {
  Generator gen(seed);
  Batch b;
  b.images = test_support::random_tensor({6, 4, 4, 3}, gen, -1.0f, 1.0f);
  b.labels = Tensor::from_vector({6}, {0, 1, 1, 0, 1, 0});
  if (poisoned) {
    std::vector<float> pixels = b.images.to_vector();
    pixels[7] = std::numeric_limits<float>::quiet_NaN();
    b.images = Tensor::from_vector(b.images.shape(), pixels);
  }
  return b;
}

std::vector<float> values(const ParameterArena& arena) { return arena.values().to_vector(); }

TEST(TrainingStepDeferred, EnqueueSynchronisesNothing) {
  SmallNet net(1);
  ParameterArena arena(net.named_parameters());
  Adam adam(arena, Adam::keras(1e-2f));
  TrainingStep step(net, arena, &adam);
  const Batch b = make_batch(2);
  step.finish(step.enqueue(b.images, b.labels));  // a first step, as the trainer's
  const int64_t before = host_sync_count();
  const PendingStep pending = step.enqueue(b.images, b.labels);
  EXPECT_EQ(host_sync_count() - before, 0) << "a deferred step copies nothing to or from the host";
  // (On the CPU, reading a CPU tensor is no copy through the device table, so finish() counts nothing
  // here; tests/gpu/test_training_step_sync.cpp checks that it is exactly one copy on a GPU.)
  EXPECT_TRUE(std::isfinite(step.finish(pending).loss));
}

TEST(TrainingStepDeferred, ReadingThePreviousLossEqualsRunBitForBit) {
  SmallNet by_run(3), by_enqueue(3);
  ParameterArena arena_run(by_run.named_parameters()), arena_enqueue(by_enqueue.named_parameters());
  Adam adam_run(arena_run, Adam::pytorch(1e-2f)), adam_enqueue(arena_enqueue, Adam::pytorch(1e-2f));
  TrainingStep run_step(by_run, arena_run, &adam_run), deferred(by_enqueue, arena_enqueue, &adam_enqueue);
  std::vector<StepResult> expected, got;
  PendingStep previous;
  for (uint64_t i = 0; i < 5; ++i) {
    const Batch b = make_batch(20 + i);
    expected.push_back(run_step.run(b.images, b.labels));
    const PendingStep current = deferred.enqueue(b.images, b.labels);
    if (previous.defined()) got.push_back(deferred.finish(previous));
    previous = current;
  }
  got.push_back(deferred.finish(previous));
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(got[i].finite);
    EXPECT_EQ(got[i].loss, expected[i].loss) << "step " << i;
    EXPECT_EQ(got[i].logits.to_vector(), expected[i].logits.to_vector()) << "step " << i;
  }
  EXPECT_EQ(values(arena_enqueue), values(arena_run));
  EXPECT_EQ(adam_enqueue.step_count(), adam_run.step_count());
  for (size_t k = 0; k < adam_run.state().size(); ++k)
    EXPECT_EQ(adam_enqueue.state()[k].second.to_vector(), adam_run.state()[k].second.to_vector());
}

TEST(TrainingStepDeferred, ANonFiniteLossUpdatesNothingNorDoTheStepsAfterIt) {
  SmallNet net(4);
  ParameterArena arena(net.named_parameters());
  Adam adam(arena, Adam::keras(1e-2f));
  TrainingStep step(net, arena, &adam);
  step.finish(step.enqueue(make_batch(5).images, make_batch(5).labels));  // non-zero moments
  const std::vector<float> before = values(arena);
  const std::vector<float> m_before = adam.state()[0].second.to_vector();
  const std::vector<float> v_before = adam.state()[1].second.to_vector();
  const int64_t steps_before = adam.step_count();

  // The host reads step k's loss after enqueueing step k + 1, as the trainer does.
  const Batch bad = make_batch(6, true), good = make_batch(7);
  const PendingStep nonfinite = step.enqueue(bad.images, bad.labels);
  const PendingStep after = step.enqueue(good.images, good.labels);
  EXPECT_EQ(step.nonfinite_flag().to_vector(), std::vector<float>{1.0f});
  const StepResult r = step.finish(nonfinite);
  EXPECT_FALSE(r.finite);
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(r.logits.defined()) << "the logits are kept for a debug dump";
  EXPECT_EQ(values(arena), before) << "the parameters are untouched, by this step and the next";
  EXPECT_EQ(adam.state()[0].second.to_vector(), m_before) << "the first moments are untouched";
  EXPECT_EQ(adam.state()[1].second.to_vector(), v_before) << "the second moments are untouched";
  EXPECT_EQ(adam.step_count(), steps_before) << "the skipped steps are not counted";
  EXPECT_TRUE(step.finish(after).finite) << "the next step's own loss is finite; its update was skipped";
  EXPECT_EQ(values(arena), before);
  EXPECT_EQ(adam.step_count(), steps_before);

  // Once cleared, the same good batch trains as a fresh synchronous step from the same state would.
  step.clear_nonfinite();
  const StepResult resumed = step.finish(step.enqueue(good.images, good.labels));
  EXPECT_TRUE(resumed.finite);
  EXPECT_NE(values(arena), before);
  EXPECT_EQ(adam.step_count(), steps_before + 1);
}

TEST(TrainingStepDeferred, TheSkipFlagGuardsTheOptimizerKernels) {
  const int64_t n = 5;
  std::vector<float> p{1, 2, 3, 4, 5}, g{0.5f, -1, 2, 0, 3}, m(n, 0.1f), v(n, 0.2f), buf(n, 0.3f);
  const std::vector<float> p0 = p, m0 = m, v0 = v, buf0 = buf;
  float flag = 0.0f;
  const float finite_values[2] = {1.0f, -2.0f};
  kernels::cpu::flag_nonfinite(2, finite_values, &flag);
  EXPECT_EQ(flag, 0.0f);
  const float with_inf[3] = {1.0f, std::numeric_limits<float>::infinity(), 0.0f};
  kernels::cpu::flag_nonfinite(3, with_inf, &flag);
  EXPECT_EQ(flag, 1.0f);
  kernels::cpu::flag_nonfinite(2, finite_values, &flag);
  EXPECT_EQ(flag, 1.0f) << "the flag is sticky";

  kernels::AdamHyper adam;
  kernels::cpu::adam_update(n, p.data(), g.data(), m.data(), v.data(), 3, adam, &flag);
  kernels::SgdHyper sgd;
  sgd.momentum = 0.9f;
  kernels::cpu::sgd_update(n, p.data(), g.data(), buf.data(), sgd, &flag);
  EXPECT_EQ(p, p0);
  EXPECT_EQ(m, m0);
  EXPECT_EQ(v, v0);
  EXPECT_EQ(buf, buf0);

  // A clear flag changes nothing in the maths: the same numbers as without one.
  flag = 0.0f;
  std::vector<float> p_ref = p0, m_ref = m0, v_ref = v0;
  kernels::cpu::adam_update(n, p.data(), g.data(), m.data(), v.data(), 3, adam, &flag);
  kernels::cpu::adam_update(n, p_ref.data(), g.data(), m_ref.data(), v_ref.data(), 3, adam);
  EXPECT_EQ(p, p_ref);
  EXPECT_EQ(m, m_ref);
  EXPECT_EQ(v, v_ref);
}

}  // namespace
