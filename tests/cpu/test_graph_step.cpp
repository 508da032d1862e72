// GraphedTrainingStep on the CPU (engine/graph_step.h): the CPU has no graphs, so every step is
// TrainingStep::enqueue, and the results equal a plain TrainingStep's bit for bit (losses, logits, every
// parameter, the Adam moments and step count), through a non-finite batch and a change of batch shape.
// Also: why graphs are off, and the options' checks. (The graphs themselves: tests/gpu/test_graph_step.cpp.)
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "engine/graph_step.h"
#include "engine/layers.h"
#include "engine/ops.h"
#include "engine/training_step.h"
#include "support/gradcheck.h"
#include "support/small_net.h"

namespace {

using namespace engine;

using test_support::SmallNet;

struct Batch {
  Tensor images, labels;
};

Batch make_batch(uint64_t seed, int64_t n = 6, bool poisoned = false) {
  Generator gen(seed);
  Batch b;
  b.images = test_support::random_tensor({n, 4, 4, 3}, gen, -1.0f, 1.0f);
  std::vector<float> labels(static_cast<size_t>(n));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<float>((i + seed) % 2);
  b.labels = Tensor::from_vector({n}, labels);
  if (poisoned) {
    std::vector<float> pixels = b.images.to_vector();
    pixels[7] = std::numeric_limits<float>::quiet_NaN();
    b.images = Tensor::from_vector(b.images.shape(), pixels);
  }
  return b;
}

// A tensor's values as bit patterns: bit-for-bit equality that holds for NaN too.
std::vector<uint32_t> bits(const Tensor& t) {
  const std::vector<float> values = t.to_vector();
  std::vector<uint32_t> out(values.size());
  if (!values.empty()) std::memcpy(out.data(), values.data(), values.size() * sizeof(float));
  return out;
}

struct Model {
  explicit Model(uint64_t seed) : net(seed), arena(net.named_parameters()), adam(arena, Adam::keras(1e-2f)),
                                  step(net, arena, &adam) {}
  SmallNet net;
  ParameterArena arena;
  Adam adam;
  TrainingStep step;
};

TEST(GraphStepCpu, EveryStepIsEagerAndEqualsTrainingStepBitForBit) {
  Model plain(3), wrapped(3);
  GraphedTrainingStep graphed(wrapped.step);
  EXPECT_FALSE(graphed.off_reason().empty()) << "the CPU has no graphs";

  // Batches as the trainer meets them: same shapes, a non-finite one, then a smaller last batch.
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 4; ++i) batches.push_back(make_batch(10 + i));
  batches.push_back(make_batch(20, 6, true));
  batches.push_back(make_batch(21));
  batches.push_back(make_batch(22, 3));
  std::vector<StepResult> expected, got;
  PendingStep previous_plain, previous_graphed;
  for (size_t i = 0; i < batches.size(); ++i) {
    const Batch& b = batches[i];
    const PendingStep current_plain = plain.step.enqueue(b.images, b.labels);
    const PendingStep current_graphed = graphed.enqueue(b.images, b.labels);
    if (previous_plain.defined()) {
      expected.push_back(plain.step.finish(previous_plain));
      got.push_back(graphed.finish(previous_graphed));
      if (!expected.back().finite) {  // as the trainer: report, clear, go on
        plain.step.clear_nonfinite();
        graphed.clear_nonfinite();
      }
    }
    previous_plain = current_plain;
    previous_graphed = current_graphed;
  }
  expected.push_back(plain.step.finish(previous_plain));
  got.push_back(graphed.finish(previous_graphed));

  ASSERT_EQ(got.size(), expected.size());
  bool saw_nonfinite = false;
  for (size_t i = 0; i < got.size(); ++i) {
    saw_nonfinite |= !expected[i].finite;
    EXPECT_EQ(got[i].finite, expected[i].finite) << "step " << i;
    if (expected[i].finite) {
      EXPECT_EQ(got[i].loss, expected[i].loss) << "step " << i;
    } else {
      EXPECT_TRUE(std::isnan(got[i].loss)) << "step " << i;
    }
    EXPECT_EQ(bits(got[i].logits), bits(expected[i].logits)) << "step " << i;
  }
  EXPECT_TRUE(saw_nonfinite);
  EXPECT_EQ(wrapped.arena.values().to_vector(), plain.arena.values().to_vector());
  EXPECT_EQ(wrapped.adam.step_count(), plain.adam.step_count());
  for (size_t k = 0; k < plain.adam.state().size(); ++k)
    EXPECT_EQ(wrapped.adam.state()[k].second.to_vector(), plain.adam.state()[k].second.to_vector());
  EXPECT_EQ(graphed.eager_steps(), static_cast<int64_t>(batches.size()));
  EXPECT_EQ(graphed.replayed_steps(), 0);
  EXPECT_FALSE(graphed.recorded());
}

TEST(GraphStepCpu, SaysWhyGraphsAreOff) {
  Model m(1);
  GraphOptions off;
  off.enabled = false;
  EXPECT_NE(GraphedTrainingStep(m.step, off).off_reason().find("--no-graph"), std::string::npos);

  StepOptions data_parallel;
  data_parallel.reduce_gradients = [](ParameterArena&) {};
  TrainingStep reduced(m.net, m.arena, &m.adam, data_parallel);
  EXPECT_NE(GraphedTrainingStep(reduced).off_reason().find("all-reduce"), std::string::npos);

  std::string reason;
  EXPECT_FALSE(device_graphs_supported(Device::cpu(), &reason));
  EXPECT_FALSE(reason.empty());
}

TEST(GraphStepCpu, RefusesZeroWarmUpSteps) {
  Model m(1);
  GraphOptions options;
  options.warmup_steps = 0;
  EXPECT_THROW(GraphedTrainingStep(m.step, options), std::exception);
}

}  // namespace
