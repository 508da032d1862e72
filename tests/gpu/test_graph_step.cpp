// CUDA graphs of training steps (engine/graph_step.h) and the caching allocator's graph pools
// (kernels/cuda/context.h). N graphed steps equal N eager steps bit for bit on a conv - BN - ReLU - pool -
// linear net (losses, logits, every weight, the batch-norm running statistics, the Adam moments and step
// count, a learning rate changed between steps); a non-finite batch skips its update as in eager steps; a
// batch of another shape runs eagerly; a replay makes no host synchronisation and no cudaMalloc; a
// recording that fails (the forward reads the device) is logged once and the steps go on eagerly with the
// eager numbers; a block used inside a capture is not handed out again until its graph is destroyed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/graph_step.h"
#include "engine/layers.h"
#include "engine/runtime.h"
#include "engine/training_step.h"
#include "gpu_test_util.h"
#ifdef ENGINE_WITH_CUDA
#include "kernels/elementwise.h"
#endif
#include "support/gradcheck.h"

namespace {

using engine::Device;
using engine::Tensor;

// [N, 12, 12, 3] -> conv 3x3 (6) -> BN -> ReLU -> max-pool 2 -> global average -> linear -> [N, 1].
class ConvBnHead : public engine::Module {
 public:
  explicit ConvBnHead(uint64_t seed) {
    engine::Generator gen(seed);
    engine::BatchNormSpec bn;
    bn.channels = 6;
    conv_ = register_module("conv", std::make_shared<engine::Conv2d>(
                                        engine::Conv2dSpec{3, 6, 3, 3, engine::Conv2dOptions::symmetric(1), false}, gen));
    bn_ = register_module("bn", std::make_shared<engine::BatchNorm>(bn));
    fc_ = register_module("fc", std::make_shared<engine::Linear>(6, 1, true, gen));
  }
  Tensor forward(const Tensor& x) const {
    const Tensor h = engine::max_pool2d(engine::relu(bn_->forward(conv_->forward(x))), engine::Pool2dOptions::square(2, 2));
    return fc_->forward(engine::global_avg_pool(h));
  }

 private:
  std::shared_ptr<engine::Conv2d> conv_;
  std::shared_ptr<engine::BatchNorm> bn_;
  std::shared_ptr<engine::Linear> fc_;
};

struct Model {
  std::shared_ptr<ConvBnHead> net;
  std::unique_ptr<engine::ParameterArena> arena;
  std::unique_ptr<engine::Adam> adam;
  std::unique_ptr<engine::TrainingStep> step;
};

// forward: what the step calls instead of net.forward (null: net.forward).
Model make_model(engine::TrainingStep::Forward forward = nullptr,
                 engine::Precision precision = engine::Precision::f32) {
  Model m;
  m.net = std::make_shared<ConvBnHead>(7);
  m.net->to(Device::cuda(0));
  m.net->train(true);
  m.arena = std::make_unique<engine::ParameterArena>(m.net->named_parameters());
  m.adam = std::make_unique<engine::Adam>(*m.arena, engine::Adam::keras(1e-3f));
  if (!forward) {
    const ConvBnHead* net = m.net.get();
    forward = [net](const Tensor& x) { return net->forward(x); };
  }
  engine::StepOptions options;
  options.precision = precision;
  m.step = std::make_unique<engine::TrainingStep>(forward, *m.arena, m.adam.get(), options);
  return m;
}

// A forward that reads the device back (illegal while recording): the recording fails.
engine::TrainingStep::Forward host_reading_forward(const ConvBnHead* net) {
  return [net](const Tensor& x) {
    (void)x.to_vector();  // a host copy: a synchronisation
    return net->forward(x);
  };
}

// A model whose step's forward reads the device back: its recordings fail.
Model make_host_reading_model(engine::Precision precision = engine::Precision::f32) {
  Model m = make_model(nullptr, precision);
  m.step = std::make_unique<engine::TrainingStep>(host_reading_forward(m.net.get()), *m.arena, m.adam.get(),
                                                  m.step->options());
  return m;
}

// Graph options whose log lines (why graphs are off) go into *lines.
engine::GraphOptions logging_into(std::vector<std::string>* lines) {
  engine::GraphOptions options;
  options.log = [lines](const std::string& line) { lines->push_back(line); };
  return options;
}

// The master weights written other than by the optimizer (a reload, a user's edit): halved, and the
// arena told, as such a writer must (optim.h).
void halve_master_weights(Model& m) {
  std::vector<float> v = m.arena->values().to_vector();
  for (float& x : v) x *= 0.5f;
  m.arena->values().copy_from(Tensor::from_vector(m.arena->values().shape(), v).to(Device::cuda(0)));
  m.arena->invalidate_bf16_copy();
}


struct Batch {
  Tensor images, labels;
};

Batch make_batch(uint64_t seed, int64_t n = 4, bool poisoned = false) {
  engine::Generator gen(seed);
  Tensor images = test_support::random_tensor({n, 12, 12, 3}, gen, -1.0f, 1.0f);
  if (poisoned) {
    std::vector<float> v = images.to_vector();
    v[50] = std::numeric_limits<float>::quiet_NaN();
    images = Tensor::from_vector(images.shape(), v);
  }
  std::vector<float> labels(static_cast<size_t>(n));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<float>((i + seed) % 2);
  return {images.to(Device::cuda(0)), Tensor::from_vector({n}, labels).to(Device::cuda(0))};
}

// Batches of `count` seeds from first_seed on, appended to *batches.
void add_batches(std::vector<Batch>* batches, uint64_t first_seed, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) batches->push_back(make_batch(first_seed + i));
}

std::vector<uint32_t> bits(const Tensor& t) {  // bit-for-bit equality that holds for NaN too
  const std::vector<float> values = t.to_vector();
  std::vector<uint32_t> out(values.size());
  if (!values.empty()) std::memcpy(out.data(), values.data(), values.size() * sizeof(float));
  return out;
}

// Runs `batches` through a and b as the trainer does (step i's loss read after step i + 1 is enqueued,
// a non-finite step reported and the flag cleared), a through `a_enqueue`, b through `b_enqueue`;
// lr_at(i) is set on both optimizers before step i. Returns the results, a's then b's.
template <typename EnqueueA, typename EnqueueB, typename FinishA, typename FinishB>
void run_both(const std::vector<Batch>& batches, Model& a, Model& b, EnqueueA a_enqueue, EnqueueB b_enqueue,
              FinishA a_finish, FinishB b_finish, std::vector<engine::StepResult>* ra,
              std::vector<engine::StepResult>* rb) {
  engine::PendingStep pa, pb;
  const auto finish = [&] {
    ra->push_back(a_finish(pa));
    rb->push_back(b_finish(pb));
    if (!ra->back().finite) a.step->clear_nonfinite();
    if (!rb->back().finite) b.step->clear_nonfinite();
  };
  for (size_t i = 0; i < batches.size(); ++i) {
    const float lr = 1e-3f / static_cast<float>(1 + i);  // a schedule: the update outside the graph follows it
    a.adam->set_learning_rate(lr);
    b.adam->set_learning_rate(lr);
    const engine::PendingStep ca = a_enqueue(batches[i]), cb = b_enqueue(batches[i]);
    if (pa.defined()) finish();
    pa = ca;
    pb = cb;
  }
  finish();
}

void expect_same_state(const Model& got, const Model& expected) {
  EXPECT_EQ(bits(got.arena->values()), bits(expected.arena->values())) << "weights";
  const engine::NamedTensors gb = got.net->named_buffers(), eb = expected.net->named_buffers();
  ASSERT_EQ(gb.size(), eb.size());
  for (size_t k = 0; k < gb.size(); ++k) EXPECT_EQ(bits(gb[k].second), bits(eb[k].second)) << gb[k].first;
  EXPECT_EQ(got.adam->step_count(), expected.adam->step_count());
  for (size_t k = 0; k < expected.adam->state().size(); ++k)
    EXPECT_EQ(bits(got.adam->state()[k].second), bits(expected.adam->state()[k].second)) << "Adam state " << k;
}

void expect_same_results(const std::vector<engine::StepResult>& got, const std::vector<engine::StepResult>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].finite, expected[i].finite) << "step " << i;
    if (expected[i].finite) {
      EXPECT_EQ(got[i].loss, expected[i].loss) << "step " << i;
    }
    EXPECT_EQ(bits(got[i].logits), bits(expected[i].logits)) << "step " << i;
  }
}

class GpuGraphStep : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef ENGINE_WITH_CUDA
    if (engine::cuda_available()) {
      // ENGINE_CUDA_SYNC=1 (a synchronisation after every launch) turns graphs off: nothing to test here.
      std::string reason;
      if (!engine::device_graphs_supported(engine::Device::cuda(0), &reason))
        GTEST_SKIP() << "CUDA graphs unavailable: " << reason;
      kernels::cuda::set_deterministic(true);  // the same cuDNN algorithms in both
    }
#endif
  }
#ifdef ENGINE_WITH_CUDA
  const gpu_test::SwitchesGuard switches_;  // restored at the end
#endif
};

// Eager steps through the TrainingStep, graphed through a GraphedTrainingStep over b's.
void compare_graphed_with_eager(const std::vector<Batch>& batches, Model& eager, Model& graphed_model,
                                engine::GraphedTrainingStep& graphed) {
  std::vector<engine::StepResult> expected, got;
  run_both(
      batches, eager, graphed_model, [&](const Batch& x) { return eager.step->enqueue(x.images, x.labels); },
      [&](const Batch& x) { return graphed.enqueue(x.images, x.labels); },
      [&](const engine::PendingStep& p) { return eager.step->finish(p); },
      [&](const engine::PendingStep& p) { return graphed.finish(p); }, &expected, &got);
  expect_same_results(got, expected);
  expect_same_state(graphed_model, eager);
}

// Steps one at a time (enqueue, finish) through the eager model and the graphed one, `between(i)` on both
// models before step i; the results and the final state must be equal bit for bit.
template <typename Between>
void compare_one_at_a_time(const std::vector<Batch>& batches, Model& eager, Model& graphed_model,
                           engine::GraphedTrainingStep& graphed, Between between) {
  std::vector<engine::StepResult> expected, got;
  for (size_t i = 0; i < batches.size(); ++i) {
    between(i, eager);
    between(i, graphed_model);
    expected.push_back(eager.step->finish(eager.step->enqueue(batches[i].images, batches[i].labels)));
    got.push_back(graphed.finish(graphed.enqueue(batches[i].images, batches[i].labels)));
  }
  expect_same_results(got, expected);
  expect_same_state(graphed_model, eager);
}

TEST_F(GpuGraphStep, GraphedStepsEqualEagerStepsBitForBit) {
  SKIP_WITHOUT_CUDA();
  Model eager = make_model(), graphed_model = make_model();
  engine::GraphedTrainingStep graphed(*graphed_model.step);
  ASSERT_TRUE(graphed.off_reason().empty()) << graphed.off_reason();
  std::vector<Batch> batches;
  add_batches(&batches, 30, 7);
  compare_graphed_with_eager(batches, eager, graphed_model, graphed);
  EXPECT_TRUE(graphed.recorded());
  EXPECT_EQ(graphed.eager_steps(), 2) << "the warm-up";
  EXPECT_EQ(graphed.replayed_steps(), 5);
}

TEST_F(GpuGraphStep, ANonFiniteBatchSkipsItsUpdateAsInEagerSteps) {
  SKIP_WITHOUT_CUDA();
  Model eager = make_model(), graphed_model = make_model();
  engine::GraphedTrainingStep graphed(*graphed_model.step);
  std::vector<Batch> batches;
  add_batches(&batches, 40, 4);
  batches.push_back(make_batch(50, 4, true));  // replayed: its update and the next step's are skipped
  add_batches(&batches, 60, 3);
  compare_graphed_with_eager(batches, eager, graphed_model, graphed);
  EXPECT_EQ(graphed.replayed_steps(), 6);
}

TEST_F(GpuGraphStep, ABatchOfAnotherShapeRunsEagerly) {
  SKIP_WITHOUT_CUDA();
  Model eager = make_model(), graphed_model = make_model();
  engine::GraphedTrainingStep graphed(*graphed_model.step);
  std::vector<Batch> batches;
  add_batches(&batches, 70, 4);
  batches.push_back(make_batch(80, 3));  // an epoch's last, smaller batch
  add_batches(&batches, 90, 2);
  compare_graphed_with_eager(batches, eager, graphed_model, graphed);
  EXPECT_EQ(graphed.eager_steps(), 3) << "two warm-up steps and the smaller batch";
  EXPECT_EQ(graphed.replayed_steps(), 4);
}

TEST_F(GpuGraphStep, AReplayMakesNoHostSynchronisationAndNoDeviceAllocation) {
  SKIP_WITHOUT_CUDA();
  Model m = make_model();
  engine::GraphedTrainingStep graphed(*m.step);
  const Batch b = make_batch(100);
  for (int i = 0; i < 4; ++i) graphed.finish(graphed.enqueue(b.images, b.labels));
  ASSERT_EQ(graphed.replayed_steps(), 2);
#ifdef ENGINE_WITH_CUDA
  const size_t mallocs = kernels::cuda::memory_stats().device_mallocs;
#endif
  const int64_t before = engine::host_sync_count();
  const engine::PendingStep pending = graphed.enqueue(b.images, b.labels);
  EXPECT_EQ(engine::host_sync_count() - before, 0) << "host synchronisations inside a replayed step";
  EXPECT_TRUE(std::isfinite(graphed.finish(pending).loss));
#ifdef ENGINE_WITH_CUDA
  EXPECT_EQ(kernels::cuda::memory_stats().device_mallocs, mallocs) << "cudaMalloc calls in a replayed step";
#endif
}

// A forward that reads the device back (illegal while recording) makes the recording fail: one line, and
// every step eager, with the eager numbers.
TEST_F(GpuGraphStep, AFailedRecordingFallsBackToEagerSteps) {
  SKIP_WITHOUT_CUDA();
  Model eager = make_model();
  Model graphed_model = make_host_reading_model();
  std::vector<std::string> lines;
  engine::GraphedTrainingStep graphed(*graphed_model.step, logging_into(&lines));
  std::vector<Batch> batches;
  add_batches(&batches, 110, 5);
  compare_graphed_with_eager(batches, eager, graphed_model, graphed);
  EXPECT_FALSE(graphed.recorded());
  EXPECT_EQ(graphed.replayed_steps(), 0);
  EXPECT_EQ(graphed.eager_steps(), 5);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("recording the step failed"), std::string::npos) << lines[0];
  EXPECT_FALSE(graphed.off_reason().empty());
  // The device is usable afterwards, and a new recording can be made (no capture was left open).
  Model again = make_model();
  engine::GraphedTrainingStep graphed_again(*again.step);
  for (int i = 0; i < 3; ++i) graphed_again.finish(graphed_again.enqueue(batches[0].images, batches[0].labels));
  EXPECT_TRUE(graphed_again.recorded());
}

// bf16 steps: the weights' bf16 working copy is refreshed outside the graph, so a write to the masters
// between replays (told to the arena) reaches the next replay, as it reaches the next eager step.
TEST_F(GpuGraphStep, Bf16MasterWeightsWrittenBetweenReplaysReachTheNextReplay) {
  SKIP_WITHOUT_CUDA();
  Model eager = make_model(nullptr, engine::Precision::bf16);
  Model graphed_model = make_model(nullptr, engine::Precision::bf16);
  engine::GraphedTrainingStep graphed(*graphed_model.step);
  ASSERT_TRUE(graphed.off_reason().empty()) << graphed.off_reason();
  std::vector<Batch> batches;
  add_batches(&batches, 120, 7);
  compare_one_at_a_time(batches, eager, graphed_model, graphed, [](size_t i, Model& m) {
    if (i == 4) halve_master_weights(m);  // between two replays
  });
  EXPECT_EQ(graphed.replayed_steps(), 5);
}

// A bf16 copy that is stale when the recording starts and a recording that then fails: the copy is
// refreshed before the capture (not inside it, where the refresh would never run), so the eager steps
// that follow read the current weights.
TEST_F(GpuGraphStep, Bf16AFailedRecordingLeavesTheWorkingCopyCurrent) {
  SKIP_WITHOUT_CUDA();
  Model eager = make_model(nullptr, engine::Precision::bf16);
  Model graphed_model = make_host_reading_model(engine::Precision::bf16);
  std::vector<std::string> lines;
  engine::GraphedTrainingStep graphed(*graphed_model.step, logging_into(&lines));
  std::vector<Batch> batches;
  add_batches(&batches, 130, 5);
  compare_one_at_a_time(batches, eager, graphed_model, graphed, [](size_t i, Model& m) {
    if (i == 2) halve_master_weights(m);  // just before the recording
  });
  EXPECT_FALSE(graphed.recorded());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("recording the step failed"), std::string::npos) << lines[0];
}

// A batch whose labels have another dtype than the graph's runs eagerly (its own signature) instead of
// failing inside the replay and turning graphs off for the rest of the run.
TEST_F(GpuGraphStep, LabelsOfAnotherDtypeRunEagerlyAndKeepTheGraph) {
  SKIP_WITHOUT_CUDA();
  Model m = make_model();
  engine::GraphedTrainingStep graphed(*m.step);
  const Batch b = make_batch(140);
  for (int i = 0; i < 3; ++i) graphed.finish(graphed.enqueue(b.images, b.labels));
  ASSERT_TRUE(graphed.recorded());
  const Tensor bf16_labels = b.labels.to(engine::DType::bf16);
  EXPECT_TRUE(std::isfinite(graphed.finish(graphed.enqueue(b.images, bf16_labels)).loss));
  EXPECT_TRUE(graphed.recorded()) << graphed.off_reason();
  EXPECT_EQ(graphed.eager_steps(), 3);
  graphed.finish(graphed.enqueue(b.images, b.labels));
  EXPECT_EQ(graphed.replayed_steps(), 2);
}

#ifdef ENGINE_WITH_CUDA
// A block a capture took is not handed out to anything else until its graph is destroyed; then it is.
TEST(GpuGraphPool, ABlockUsedByAGraphIsKeptForItUntilTheGraphIsDestroyed) {
  SKIP_WITHOUT_CUDA();
  const size_t bytes = (size_t(13) << 20) + 1;  // a "large" size class (14 MiB) no other test uses
  void* cached = kernels::cuda::allocate(bytes, "test block");
  kernels::cuda::release(cached);  // now in the device's cache
  kernels::cuda::begin_graph_capture();
  void* in_graph = kernels::cuda::allocate(bytes, "test block in the graph");
  EXPECT_EQ(in_graph, cached) << "the capture takes the cached block over";
  kernels::cuda::fill(kernels::MatrixView(static_cast<float*>(in_graph), 1, 16, 16), 1.0f);  // recorded work
  kernels::cuda::release(in_graph);  // back to the graph's pool, not to the cache
  kernels::cuda::Graph* graph = kernels::cuda::end_graph_capture();
  EXPECT_FALSE(kernels::cuda::graph_capture_open());
  void* outside = kernels::cuda::allocate(bytes, "test block after the capture");
  EXPECT_NE(outside, cached) << "a graph's block was handed out while the graph lives";
  kernels::cuda::launch_graph(graph);
  kernels::cuda::destroy_graph(graph);
  void* after = kernels::cuda::allocate(bytes, "test block after the graph");
  EXPECT_EQ(after, cached) << "the graph's blocks return to the cache with it";
  kernels::cuda::release(after);
  kernels::cuda::release(outside);
  kernels::cuda::stream_synchronize();
}

// A block of a live graph's pool released while another graph records stays with its graph: the second
// graph must not be handed an address the first one's replays write.
TEST(GpuGraphPool, ABlockOfALiveGraphReleasedDuringAnotherCaptureStaysWithItsGraph) {
  SKIP_WITHOUT_CUDA();
  const size_t bytes = (size_t(15) << 20) + 1;  // a size class no other test uses (16 MiB)
  kernels::cuda::begin_graph_capture();
  void* first_block = kernels::cuda::allocate(bytes, "first graph's block");
  kernels::cuda::fill(kernels::MatrixView(static_cast<float*>(first_block), 1, 16, 16), 1.0f);
  kernels::cuda::Graph* first = kernels::cuda::end_graph_capture();  // first_block still held
  kernels::cuda::begin_graph_capture();
  kernels::cuda::release(first_block);  // released while the second graph records
  void* second_block = kernels::cuda::allocate(bytes, "second graph's block");
  EXPECT_NE(second_block, first_block) << "the second graph was given the first graph's block";
  kernels::cuda::fill(kernels::MatrixView(static_cast<float*>(second_block), 1, 16, 16), 2.0f);
  kernels::cuda::release(second_block);
  kernels::cuda::Graph* second = kernels::cuda::end_graph_capture();
  kernels::cuda::launch_graph(first);
  kernels::cuda::launch_graph(second);
  kernels::cuda::destroy_graph(second);
  kernels::cuda::destroy_graph(first);
  kernels::cuda::stream_synchronize();
}

TEST(GpuGraphPool, AnAbortedCaptureLeavesNothingOpen) {
  SKIP_WITHOUT_CUDA();
  kernels::cuda::begin_graph_capture();
  EXPECT_THROW(kernels::cuda::begin_graph_capture(), std::runtime_error) << "one capture at a time";
  EXPECT_THROW(kernels::cuda::stream_synchronize(), std::runtime_error) << "illegal while capturing";
  kernels::cuda::abort_graph_capture();
  EXPECT_FALSE(kernels::cuda::graph_capture_open());
  kernels::cuda::stream_synchronize();  // usable again
  kernels::cuda::abort_graph_capture();  // none open: nothing
}
#endif

}  // namespace
