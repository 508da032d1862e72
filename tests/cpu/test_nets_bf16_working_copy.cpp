// The bf16 working copy of the weights (engine/optim.h, docs/precision.md): a bf16 training step reads
// its weights from the arena's copy, made once (a refresh) and kept by the optimizer's fused update,
// instead of rounding each weight per op call. Checked here:
//   - the arena's copy, its per-parameter views, refresh and invalidation, and the scope that lends it
//     to the ops (outside one, or when it is not current, the ops round the master as before);
//   - the optimizers keep it equal, bit for bit, to the rounding of the masters, skipped updates too;
//   - training with it equals training without it (the same steps written by hand, which round per
//     call) bit for bit: losses, logits, weights, gradients and Adam's moments, for a small perceptron
//     and densenet_tiny (plain and recomputing its forward in the backward pass), Adam and SGD;
//   - writes to the masters outside the optimizer between steps (a test's write, --resume's load) are
//     what the next step's ops see.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/ops/common.h"
#include "engine/optim.h"
#include "engine/training_step.h"
#include "kernels/bf16.h"
#include "nets/registry.h"
#include "support/gradcheck.h"
#include "support/small_net.h"

namespace {

using namespace engine;
using test_support::SmallNet;

// A bf16 tensor's bits, in order.
std::vector<uint16_t> bf16_bits(const Tensor& t) {
  EXPECT_EQ(t.dtype(), DType::bf16);
  const Tensor host = t.to(Device::cpu()).contiguous();
  std::vector<uint16_t> bits(static_cast<size_t>(host.numel()));
  if (!bits.empty()) std::memcpy(bits.data(), host.raw_data(), bits.size() * sizeof(uint16_t));
  return bits;
}

// The arena's masters rounded as the conversion kernels round them.
std::vector<uint16_t> rounded_masters(const ParameterArena& arena) {
  std::vector<uint16_t> bits;
  for (float v : arena.values().to_vector()) bits.push_back(kernels::bf16_bits_from_f32(v));
  return bits;
}

// The copy is current and equals the rounding of the masters, bit for bit.
void expect_copy_current(const ParameterArena& arena, const std::string& where) {
  EXPECT_TRUE(arena.bf16_copy_current()) << where;
  EXPECT_EQ(bf16_bits(arena.bf16_values()), rounded_masters(arena)) << where;
}

struct Batch {
  Tensor images, labels;
};

Batch small_batch(uint64_t seed) {
  Generator gen(seed);
  return {test_support::random_tensor({6, 4, 4, 3}, gen, -1.0f, 1.0f), Tensor::from_vector({6}, {0, 1, 1, 0, 1, 0})};
}

Batch image_batch(uint64_t seed, int64_t n, int64_t size) {
  Generator gen(seed);
  std::vector<float> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(static_cast<float>(i % 2));
  return {test_support::random_tensor({n, size, size, 3}, gen, 0.0f, 1.0f), Tensor::from_vector({n}, labels)};
}

TEST(Bf16WorkingCopy, ArenaCopyViewsRefreshAndInvalidation) {
  SmallNet net(1);
  ParameterArena arena(net.named_parameters());
  EXPECT_FALSE(arena.has_bf16_copy());
  EXPECT_EQ(arena.bf16_copy_data(), nullptr);
  EXPECT_FALSE(arena.bf16_view(arena.parameters().front().second).defined()) << "no copy";

  arena.enable_bf16_copy();
  ASSERT_TRUE(arena.has_bf16_copy());
  const Tensor buffer = arena.bf16_values();
  EXPECT_EQ(buffer.dtype(), DType::bf16);
  EXPECT_EQ(buffer.numel(), arena.numel());
  EXPECT_FALSE(arena.bf16_copy_current()) << "a new copy is not current until refreshed";
  arena.enable_bf16_copy();  // again: the same buffer
  EXPECT_TRUE(arena.bf16_values().same(buffer));

  const Tensor& weight = arena.parameters().front().second;
  EXPECT_FALSE(arena.bf16_view(weight).defined()) << "not current: no view";
  arena.refresh_bf16_copy();
  expect_copy_current(arena, "after refresh");
  EXPECT_EQ(arena.bf16_refresh_count(), 1);

  // Each parameter's view: its shape, its place in the copy, the rounding of its own values.
  ASSERT_EQ(arena.bf16_parameters().size(), arena.parameters().size());
  for (size_t i = 0; i < arena.parameters().size(); ++i) {
    const auto& [name, p] = arena.parameters()[i];
    const auto& [bf16_name, view] = arena.bf16_parameters()[i];
    EXPECT_EQ(bf16_name, name);
    EXPECT_EQ(view.shape(), p.shape()) << name;
    EXPECT_EQ(view.storage(), buffer.storage()) << name;
    EXPECT_EQ(bf16_bits(view), bf16_bits(p.to(DType::bf16))) << name;
    const Tensor looked_up = arena.bf16_view(p);
    ASSERT_TRUE(looked_up.defined()) << name;
    EXPECT_EQ(looked_up.raw_data(), view.raw_data()) << name;
    EXPECT_EQ(looked_up.shape(), p.shape()) << name;
  }
  // Not parameters of the arena: a copy of a weight, a bf16 tensor.
  EXPECT_FALSE(arena.bf16_view(weight.clone()).defined());
  EXPECT_FALSE(arena.bf16_view(weight.to(DType::bf16)).defined());

  // A write the arena is not told of: check_bf16_copy (ENGINE_CHECK_BF16_COPY) finds it.
  arena.check_bf16_copy();
  Generator gen(3);
  weight.copy_from(test_support::random_tensor(weight.shape(), gen));
  EXPECT_THROW(arena.check_bf16_copy(), std::exception);

  arena.invalidate_bf16_copy();
  EXPECT_FALSE(arena.bf16_copy_current());
  EXPECT_FALSE(arena.bf16_view(weight).defined()) << "invalidated: the ops round the master";
  arena.refresh_bf16_copy();
  arena.check_bf16_copy();
}

TEST(Bf16WorkingCopy, TheScopeLendsTheCopyToTheOps) {
  SmallNet net(2);
  ParameterArena arena(net.named_parameters());
  const Tensor weight = arena.parameters().front().second;
  const auto shares_copy = [&](const Tensor& t) { return t.storage() == arena.bf16_values().storage(); };
  {  // An arena without a copy: the scope does nothing.
    const Bf16WorkingCopyScope scope(arena);
    EXPECT_FALSE(cached_bf16_working_copy(weight).defined());
  }
  arena.enable_bf16_copy();
  EXPECT_FALSE(cached_bf16_working_copy(weight).defined()) << "no scope";
  EXPECT_FALSE(shares_copy(detail::bf16_working_copy(weight)));
  {
    const Bf16WorkingCopyScope scope(arena);  // refreshes the copy: it was not current
    expect_copy_current(arena, "in the scope");
    EXPECT_EQ(arena.bf16_refresh_count(), 1);
    const Tensor w = detail::bf16_working_copy(weight);
    EXPECT_TRUE(shares_copy(w)) << "the op reads the arena's copy";
    EXPECT_EQ(bf16_bits(w), bf16_bits(weight.to(DType::bf16)));
    EXPECT_FALSE(shares_copy(detail::bf16_working_copy(weight.clone()))) << "not a parameter: rounded";
    {
      const Bf16WorkingCopyScope again(arena);  // current: no second refresh
      EXPECT_EQ(arena.bf16_refresh_count(), 1);
    }
    EXPECT_TRUE(cached_bf16_working_copy(weight).defined()) << "the outer scope is still open";
    arena.invalidate_bf16_copy();
    EXPECT_FALSE(shares_copy(detail::bf16_working_copy(weight))) << "not current: rounded";
  }
  EXPECT_FALSE(cached_bf16_working_copy(weight).defined()) << "scope closed";
  EXPECT_FALSE(shares_copy(detail::bf16_working_copy(weight)));
}

// Adam (both conventions, AdamW) and SGD keep the copy equal to the rounding of the masters; an update
// skipped by the flag leaves both as they were; an update of a copy that was not current does not
// make it current.
TEST(Bf16WorkingCopy, TheOptimizersKeepTheCopyCurrent) {
  const auto train = [](Optimizer& optimizer, ParameterArena& arena, SmallNet& net, const std::string& name) {
    for (uint64_t s = 0; s < 3; ++s) {
      const Batch b = small_batch(40 + s);
      arena.zero_grad();
      bce_with_logits(net.forward(b.images), b.labels).backward();
      optimizer.step();
      expect_copy_current(arena, name + " step " + std::to_string(s));
    }
    // A skipped update: the masters and the copy as they were.
    const Tensor flag = Tensor::full({1}, 1.0f);
    optimizer.set_skip_flag(flag);
    const std::vector<float> before = arena.values().to_vector();
    const std::vector<uint16_t> copy_before = bf16_bits(arena.bf16_values());
    optimizer.step();
    EXPECT_EQ(arena.values().to_vector(), before) << name;
    EXPECT_EQ(bf16_bits(arena.bf16_values()), copy_before) << name;
    expect_copy_current(arena, name + " skipped");
    flag.fill_(0.0f);
    // Not current before the update: the update writes the copy but cannot vouch for it (on a device the
    // host does not know whether the flag skipped it).
    arena.invalidate_bf16_copy();
    optimizer.step();
    EXPECT_FALSE(arena.bf16_copy_current()) << name;
    EXPECT_EQ(bf16_bits(arena.bf16_values()), rounded_masters(arena)) << name << ": written all the same";
  };
  const std::map<std::string, kernels::AdamHyper> adams = {
      {"adam_pytorch", Adam::pytorch(1e-2f)},
      {"adam_keras", Adam::keras(1e-2f)},
      {"adamw", Adam::decoupled_weight_decay(Adam::pytorch(1e-2f), 0.1f)},
      {"adamw_keras", Adam::decoupled_weight_decay(Adam::keras(1e-2f), 0.1f)}};
  for (const auto& [name, hyper] : adams) {
    SmallNet net(5);
    ParameterArena arena(net.named_parameters());
    arena.enable_bf16_copy();
    arena.refresh_bf16_copy();
    Adam adam(arena, hyper);
    train(adam, arena, net, name);
  }
  kernels::SgdHyper sgd_hyper;
  sgd_hyper.lr = 0.1f;
  sgd_hyper.momentum = 0.9f;
  sgd_hyper.weight_decay = 1e-3f;
  SmallNet net(6);
  ParameterArena arena(net.named_parameters());
  arena.enable_bf16_copy();
  arena.refresh_bf16_copy();
  Sgd sgd(arena, sgd_hyper);
  train(sgd, arena, net, "sgd");
  // An optimizer's step count restored (--resume) goes with restored weights: the copy is refreshed.
  arena.refresh_bf16_copy();
  sgd.set_step_count(2);
  EXPECT_FALSE(arena.bf16_copy_current());
}

// Steps through TrainingStep (the arena's copy) and the same steps written by hand (no copy: every op
// rounds its weight per call) from the same initial weights give the same bits everywhere.
template <typename MakeNet, typename MakeOptimizer>
void expect_cached_equals_per_call(MakeNet make_net, MakeOptimizer make_optimizer, const std::vector<Batch>& batches,
                                   int steps) {
  auto net_hand = make_net(), net_step = make_net();
  ParameterArena arena_hand(net_hand->named_parameters()), arena_step(net_step->named_parameters());
  std::unique_ptr<Optimizer> opt_hand = make_optimizer(arena_hand), opt_step = make_optimizer(arena_step);
  StepOptions options;
  options.precision = Precision::bf16;
  // The forward also records whether the ops were given the arena's copy.
  int forwards_on_copy = 0;
  const Tensor first_weight = arena_step.parameters().front().second;
  TrainingStep step(
      TrainingStep::Forward([&](const Tensor& images) {
        if (detail::bf16_working_copy(first_weight).storage() == arena_step.bf16_values().storage()) ++forwards_on_copy;
        return net_step->forward(images);
      }),
      arena_step, opt_step.get(), options);
  EXPECT_TRUE(arena_step.has_bf16_copy()) << "a bf16 step keeps a copy";
  EXPECT_FALSE(arena_hand.has_bf16_copy());
  for (int s = 0; s < steps; ++s) {
    const Batch& b = batches[static_cast<size_t>(s) % batches.size()];
    arena_hand.zero_grad();
    const Tensor logits = net_hand->forward(b.images.to(DType::bf16));
    const Tensor loss = bce_with_logits(logits, b.labels);
    const double loss_value = loss.item();
    loss.backward();
    opt_hand->step();

    const StepResult r = step.run(b.images, b.labels);
    ASSERT_TRUE(r.finite);
    EXPECT_EQ(r.loss, loss_value) << "step " << s;
    EXPECT_EQ(r.logits.to_vector(), logits.to_vector()) << "step " << s;
    EXPECT_EQ(arena_step.values().to_vector(), arena_hand.values().to_vector()) << "step " << s;
    EXPECT_EQ(arena_step.grads().to_vector(), arena_hand.grads().to_vector()) << "step " << s;
    expect_copy_current(arena_step, "step " + std::to_string(s));
  }
  for (size_t k = 0; k < opt_hand->state().size(); ++k)
    EXPECT_EQ(opt_step->state()[k].second.to_vector(), opt_hand->state()[k].second.to_vector()) << opt_hand->state()[k].first;
  EXPECT_EQ(forwards_on_copy, steps) << "every step's ops read the arena's copy";
  EXPECT_EQ(arena_step.bf16_refresh_count(), 1) << "converted once; the optimizer's update kept it after that";
}

TEST(Bf16WorkingCopy, SmallNetTrainsBitForBitAsWithoutTheCopy) {
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 3; ++i) batches.push_back(small_batch(20 + i));
  const auto make_net = [] { return std::make_shared<SmallNet>(7); };
  expect_cached_equals_per_call(
      make_net, [](ParameterArena& a) { return std::make_unique<Adam>(a, Adam::pytorch(1e-2f)); }, batches, 5);
  expect_cached_equals_per_call(
      make_net,
      [](ParameterArena& a) {
        return std::make_unique<Adam>(a, Adam::decoupled_weight_decay(Adam::keras(1e-2f), 0.05f));
      },
      batches, 5);
  expect_cached_equals_per_call(
      make_net,
      [](ParameterArena& a) {
        kernels::SgdHyper h;
        h.lr = 0.05f;
        h.momentum = 0.9f;
        h.nesterov = true;
        return std::make_unique<Sgd>(a, h);
      },
      batches, 5);
}

TEST(Bf16WorkingCopy, DenseNetTinyTrainsBitForBitAsWithoutTheCopy) {
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 2; ++i) batches.push_back(image_batch(60 + i, 4, 32));
  for (const bool memory_efficient : {false, true}) {  // recomputing: the forward runs again in backward
    SCOPED_TRACE(memory_efficient ? "memory-efficient" : "plain");
    const auto make_net = [memory_efficient] {
      Generator gen(61);
      nets::NetOptions options;
      options.memory_efficient = memory_efficient;
      auto net = nets::make_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, 32, gen, options);
      net->train(true);
      return net;
    };
    expect_cached_equals_per_call(
        make_net, [](ParameterArena& a) { return std::make_unique<Adam>(a, Adam::keras(1e-3f)); }, batches, 3);
  }
}

StepOptions bf16_step_options() {
  StepOptions options;
  options.precision = Precision::bf16;
  return options;
}

// A small net trained by bf16 steps under PyTorch's Adam (lr 1e-2): where the tests of writes to the
// masters between steps start.
struct Bf16AdamTraining {
  SmallNet net{8};
  ParameterArena arena{net.named_parameters()};
  Adam adam{arena, Adam::pytorch(1e-2f)};
  TrainingStep step{net, arena, &adam, bf16_step_options()};
};

// A write to the masters through the Tensor API (copy_from, fill_) between steps makes the copy stale
// without a word to the arena (the storage's write count): the next step refreshes it and sees the write.
// The optimizer's own update (raw pointers, the copy written in the same pass) leaves it current.
TEST(Bf16WorkingCopy, ATensorWriteToTheMastersIsNoticedWithoutBeingTold) {
  Bf16AdamTraining training;
  SmallNet& net = training.net;
  ParameterArena& arena = training.arena;
  TrainingStep& step = training.step;
  const Batch b = small_batch(85);
  for (int s = 0; s < 2; ++s) step.run(b.images, b.labels);
  ASSERT_TRUE(arena.bf16_copy_current()) << "the optimizer's update keeps the copy current";
  EXPECT_EQ(arena.bf16_refresh_count(), 1);

  const Tensor& weight = arena.parameters().front().second;
  Generator gen(86);
  weight.copy_from(test_support::random_tensor(weight.shape(), gen, -0.5f, 0.5f));
  EXPECT_FALSE(arena.bf16_copy_current()) << "copy_from into a parameter";
  EXPECT_FALSE(arena.bf16_view(weight).defined());
  const std::vector<float> expected = net.forward(b.images.to(DType::bf16)).to_vector();
  EXPECT_EQ(step.run(b.images, b.labels).logits.to_vector(), expected);
  expect_copy_current(arena, "after the copied step");
  EXPECT_EQ(arena.bf16_refresh_count(), 2);

  arena.parameters().back().second.fill_(0.125f);
  EXPECT_FALSE(arena.bf16_copy_current()) << "fill_ of a parameter";
  step.run(b.images, b.labels);
  expect_copy_current(arena, "after the filled step");
  EXPECT_EQ(arena.bf16_refresh_count(), 3);
}

// Writes to the masters between steps, other than by the optimizer: the next step's ops see them.
TEST(Bf16WorkingCopy, WritesBetweenStepsReachTheNextStep) {
  Bf16AdamTraining training;
  SmallNet& net = training.net;
  ParameterArena& arena = training.arena;
  Adam& adam = training.adam;
  TrainingStep& step = training.step;
  const Batch b = small_batch(80);
  // The logits of the current masters rounded per call (no scope open: the ops round them themselves).
  const auto fresh_logits = [&] { return net.forward(b.images.to(DType::bf16)).to_vector(); };
  for (int s = 0; s < 2; ++s) step.run(b.images, b.labels);
  ASSERT_TRUE(arena.bf16_copy_current());

  // Outside a step the ops never read the copy: a write is seen at once.
  Generator gen(81);
  const Tensor& weight = arena.parameters().front().second;
  weight.copy_from(test_support::random_tensor(weight.shape(), gen, -0.5f, 0.5f));
  EXPECT_FALSE(cached_bf16_working_copy(weight).defined());
  EXPECT_EQ(bf16_bits(detail::bf16_working_copy(weight)), bf16_bits(weight.to(DType::bf16)));

  // A writer between the steps of one arena says so; the next step refreshes the copy and sees the write.
  arena.invalidate_bf16_copy();
  std::vector<float> expected = fresh_logits();
  EXPECT_EQ(step.run(b.images, b.labels).logits.to_vector(), expected) << "a test's write";
  expect_copy_current(arena, "after the written step");
  EXPECT_EQ(arena.bf16_refresh_count(), 2);

  // --resume's writes (engine state loaded with load_state, the optimizer's state and step count; as
  // experiment/trainer.cpp does, without a word to the arena): the next step sees the loaded weights.
  std::map<std::string, Tensor> saved;
  for (const auto& [name, t] : net.state()) saved[name] = t.clone();
  std::vector<Tensor> saved_moments;
  for (const auto& [name, t] : adam.state()) saved_moments.push_back(t.clone());
  const int64_t saved_steps = adam.step_count();
  for (int s = 0; s < 2; ++s) step.run(small_batch(90 + s).images, small_batch(90 + s).labels);
  net.load_state(saved);
  for (size_t k = 0; k < saved_moments.size(); ++k) adam.state()[k].second.copy_from(saved_moments[k]);
  adam.set_step_count(saved_steps);
  expected = fresh_logits();
  EXPECT_EQ(step.run(b.images, b.labels).logits.to_vector(), expected) << "resumed";
  expect_copy_current(arena, "after the resumed step");
}

}  // namespace
