// DenseNet-121/169/201: parameter counts pinned to Keras and torchvision, output shapes at 224 and odd
// sizes, the block-buffer (no-copy) concatenation against copying concatenations (forward and gradients),
// and a training step on a small input with finite gradients everywhere.
#include <cmath>
#include <map>

#include "nets/densenet.h"
#include "nets/registry.h"
#include "support/gradcheck.h"
#include "support/thread_determinism.h"

namespace {

using namespace engine;
using nets::DenseNet;
using nets::DenseNetConfig;
using nets::Flavor;
using nets::Head;

int64_t count_buffers(const Module& m) {
  int64_t n = 0;
  for (const auto& [name, t] : m.named_buffers()) n += t.numel();
  return n;
}

int64_t count_prefix(const Module& m, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [name, t] : m.state())
    if (name.compare(0, prefix.size(), prefix) == 0) n += t.numel();
  return n;
}

// ---- Parameter counts ------------------------------------------------------------------------------

struct CountCase {
  const char* arch;
  int64_t keras_with_top;     // Keras model.count_params(), include_top=True (BN statistics included)
  int64_t keras_without_top;  // include_top=False
  int64_t trainable_with_top; // Keras trainable = torchvision's parameter count
};
void PrintTo(const CountCase& c, std::ostream* os) { *os << c.arch; }

class DenseNetCounts : public ::testing::TestWithParam<CountCase> {};

TEST_P(DenseNetCounts, MatchKerasAndTorchvision) {
  const CountCase c = GetParam();
  Generator gen(1);
  auto net = nets::make_net(c.arch, Head::imagenet, Flavor::keras, 224, gen);
  EXPECT_EQ(net->num_parameters() + count_buffers(*net), c.keras_with_top);
  EXPECT_EQ(net->num_parameters(), c.trainable_with_top);
  const int64_t head = count_prefix(*net, "classifier.");
  EXPECT_EQ(net->num_parameters() + count_buffers(*net) - head, c.keras_without_top);
  EXPECT_EQ(net->feature_channels() * 1000 + 1000, head);

}

INSTANTIATE_TEST_SUITE_P(All, DenseNetCounts,
                         ::testing::Values(CountCase{"densenet121", 8062504, 7037504, 7978856},
                                           CountCase{"densenet169", 14307880, 12642880, 14149480},
                                           CountCase{"densenet201", 20242984, 18321984, 20013928}),
                         [](const auto& info) { return std::string(info.param.arch); });

TEST(DenseNet, Densenet201ChannelsAndNames) {
  Generator gen(3);
  auto net = nets::make_net("densenet201", Head::flatten, Flavor::keras, 224, gen);
  EXPECT_EQ(net->feature_channels(), 1920);
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : net->state()) shapes[name] = t.shape();
  // torchvision's names, our layouts (OHWI convolutions, [out, in] linear).
  EXPECT_EQ(shapes.at("features.conv0.weight"), (Shape{64, 7, 7, 3}));
  EXPECT_EQ(shapes.at("features.norm0.running_var"), (Shape{64}));
  EXPECT_EQ(shapes.at("features.denseblock1.denselayer1.norm1.weight"), (Shape{64}));
  EXPECT_EQ(shapes.at("features.denseblock1.denselayer1.conv1.weight"), (Shape{128, 1, 1, 64}));
  EXPECT_EQ(shapes.at("features.denseblock1.denselayer6.conv2.weight"), (Shape{32, 3, 3, 128}));
  EXPECT_EQ(shapes.at("features.transition1.conv.weight"), (Shape{128, 1, 1, 256}));
  EXPECT_EQ(shapes.at("features.transition2.norm.bias"), (Shape{512}));
  EXPECT_EQ(shapes.at("features.denseblock3.denselayer48.conv1.weight"), (Shape{128, 1, 1, 1760}));
  EXPECT_EQ(shapes.at("features.transition3.conv.weight"), (Shape{896, 1, 1, 1792}));
  EXPECT_EQ(shapes.at("features.denseblock4.denselayer32.norm2.running_mean"), (Shape{128}));
  EXPECT_EQ(shapes.at("features.norm5.weight"), (Shape{1920}));
  EXPECT_EQ(shapes.at("classifier.weight"), (Shape{1, 94080}));  // the study's 7x7x1920 Flatten
  EXPECT_EQ(net->num_parameters() + count_buffers(*net), 18321984 + 94080 + 1);
  EXPECT_EQ(shapes.at("classifier.bias"), (Shape{1}));
  EXPECT_EQ(shapes.count("features.denseblock1.denselayer7.conv1.weight"), 0u);
  EXPECT_EQ(shapes.count("features.transition4.conv.weight"), 0u);
  // 4 BN tensors x (1 + 2 per layer x 98 layers + 3 transitions + norm5) + 98 x 2 + 3 + 1 convs + 2 head.
  EXPECT_EQ(shapes.size(), size_t(4 * (1 + 2 * 98 + 3 + 1) + 2 * 98 + 3 + 1 + 2));
}

TEST(DenseNet, BatchNormFlavors) {
  EXPECT_FLOAT_EQ(DenseNetConfig::densenet201(Flavor::keras).bn_options().eps, 1.001e-5f);
  EXPECT_FLOAT_EQ(DenseNetConfig::densenet201(Flavor::keras).bn_options().momentum, 0.01f);
  EXPECT_FALSE(DenseNetConfig::densenet201(Flavor::keras).bn_options().unbiased_running_var);
  EXPECT_FLOAT_EQ(DenseNetConfig::densenet121(Flavor::torch).bn_options().eps, 1e-5f);
  EXPECT_FLOAT_EQ(DenseNetConfig::densenet121(Flavor::torch).bn_options().momentum, 0.1f);
  EXPECT_TRUE(DenseNetConfig::densenet121(Flavor::torch).bn_options().unbiased_running_var);
}

// ---- Summary at 224: counts, MACs and shapes -------------------------------------------------------

TEST(DenseNet, SummaryAt224MatchesPublishedWork) {
  Generator gen(4);
  auto net = nets::make_net("densenet201", Head::imagenet, Flavor::keras, 224, gen);
  const std::vector<nets::SummaryRow> rows = net->summary(224);
  int64_t params = 0, buffers = 0, macs = 0;
  std::map<std::string, Shape> outputs;
  for (const auto& r : rows) {
    params += r.parameters;
    buffers += r.buffers;
    macs += r.macs;
    outputs[r.name] = r.output;
  }
  EXPECT_EQ(params, 20013928);  // every parameter belongs to exactly one row
  EXPECT_EQ(params + buffers, 20242984);
  // docs/reference.md section 6: 4.29 GMAC per image.
  EXPECT_NEAR(static_cast<double>(macs) * 1e-9, 4.29, 0.04);
  EXPECT_EQ(outputs.at("features.conv0"), (Shape{1, 112, 112, 64}));
  EXPECT_EQ(outputs.at("features.pool0"), (Shape{1, 56, 56, 64}));
  EXPECT_EQ(outputs.at("features.denseblock1.denselayer6"), (Shape{1, 56, 56, 256}));
  EXPECT_EQ(outputs.at("features.transition1"), (Shape{1, 28, 28, 128}));
  EXPECT_EQ(outputs.at("features.denseblock2.denselayer12"), (Shape{1, 28, 28, 512}));
  EXPECT_EQ(outputs.at("features.transition2"), (Shape{1, 14, 14, 256}));
  EXPECT_EQ(outputs.at("features.denseblock3.denselayer48"), (Shape{1, 14, 14, 1792}));
  EXPECT_EQ(outputs.at("features.transition3"), (Shape{1, 7, 7, 896}));
  EXPECT_EQ(outputs.at("features.norm5"), (Shape{1, 7, 7, 1920}));
  EXPECT_EQ(outputs.at("classifier"), (Shape{1, 1000}));
  EXPECT_EQ(rows.back().name, "classifier");
  EXPECT_TRUE(net->is_training());  // summary restores the mode
}

// ---- Shapes at other sizes -------------------------------------------------------------------------

struct SizeCase {
  int64_t size;
  int64_t grid;
};
void PrintTo(const SizeCase& c, std::ostream* os) { *os << c.size; }

class DenseNetSizes : public ::testing::TestWithParam<SizeCase> {};

TEST_P(DenseNetSizes, StagesAndHeads) {
  const SizeCase c = GetParam();
  Generator gen(5);
  NoGradGuard no_grad;
  auto net = nets::make_net("densenet201", Head::flatten, Flavor::keras, c.size, gen);
  net->eval();
  EXPECT_EQ(net->feature_grid(c.size, c.size), std::make_pair(c.grid, c.grid));
  const Tensor images = test_support::random_tensor({1, c.size, c.size, 3}, gen);
  nets::StageMap stages;
  const Tensor logits = net->forward_with_stages(images, stages);
  EXPECT_EQ(logits.shape(), (Shape{1, 1}));
  EXPECT_EQ(stages.size(), net->stage_names().size());
  for (const std::string& s : net->stage_names()) EXPECT_EQ(stages.count(s), 1u) << s;
  const int64_t stem = ((c.size - 1) / 2) / 2 + 1;  // conv0 /2, pool0 /2 (ceil-like with padding)
  EXPECT_EQ(stages.at("stem").shape(), (Shape{1, stem, stem, 64}));
  EXPECT_EQ(stages.at("block1").shape(), (Shape{1, stem, stem, 256}));
  EXPECT_EQ(stages.at("block2").shape(), (Shape{1, stem / 2, stem / 2, 512}));
  EXPECT_EQ(stages.at("block3").shape(), (Shape{1, stem / 4, stem / 4, 1792}));
  EXPECT_EQ(stages.at("block4").shape(), (Shape{1, c.grid, c.grid, 1920}));
  EXPECT_EQ(stages.at("features").shape(), (Shape{1, c.grid, c.grid, 1920}));
  EXPECT_EQ(net->features(images).shape(), (Shape{1, c.grid, c.grid, 1920}));
  for (float v : logits.to_vector()) EXPECT_TRUE(std::isfinite(v));

  // The gap head takes any size at or above the minimum, whatever it was built for.
  auto gap = nets::make_net("densenet121", Head::gap, Flavor::torch, 224, gen);
  gap->eval();
  EXPECT_EQ(gap->num_parameters() + count_buffers(*gap), 7037504 + 1024 + 1);
  EXPECT_EQ(gap->forward(images).shape(), (Shape{1, 1}));
}

INSTANTIATE_TEST_SUITE_P(OddAndSmall, DenseNetSizes, ::testing::Values(SizeCase{32, 1}, SizeCase{65, 2}),
                         [](const auto& info) { return "size" + std::to_string(info.param.size); });

TEST(DenseNet, ClearErrorsForBadInputs) {
  Generator gen(6);
  auto net = nets::make_net("densenet121", Head::flatten, Flavor::keras, 64, gen);
  NoGradGuard no_grad;
  auto message = [&](const Tensor& images) -> std::string {
    try {
      net->forward(images);
    } catch (const engine::Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message(Tensor::zeros({1, 31, 64, 3})).find("too small"), std::string::npos);
  EXPECT_NE(message(Tensor::zeros({1, 64, 64, 1})).find("[N, H, W, 3]"), std::string::npos);
  EXPECT_NE(message(Tensor::zeros({1, 96, 96, 3})).find("flatten head was built for 64x64"), std::string::npos);
  EXPECT_THROW(nets::make_net("densenet121", Head::gap, Flavor::keras, 16, gen), engine::Error);
  EXPECT_THROW(nets::make_net("densenet200", Head::gap, Flavor::keras, 224, gen), engine::Error);
  EXPECT_THROW(nets::parse_head("dense"), engine::Error);
  EXPECT_THROW(nets::parse_flavor("tf"), engine::Error);
}

// ---- Block buffers == copying concatenation --------------------------------------------------------

DenseNetConfig small_config(bool block_buffers) {
  DenseNetConfig c;
  c.block_layers = {2, 3, 2};
  c.growth = 8;
  c.bottleneck = 16;
  c.stem_channels = 16;
  c.flavor = Flavor::torch;
  c.block_buffers = block_buffers;
  return c;
}

TEST(DenseNet, BlockBuffersEqualCopyingConcatenation) {
  Generator gen_a(7), gen_b(8), data(9);
  DenseNet buffered("small", small_config(true), Head::gap, 40, gen_a);
  DenseNet copying("small", small_config(false), Head::gap, 40, gen_b);
  std::map<std::string, Tensor> weights;
  for (const auto& [name, t] : buffered.state()) weights[name] = t.clone();
  copying.load_state(weights);

  const Tensor images_a = test_support::random_tensor({2, 40, 40, 3}, data);
  const Tensor images_b = images_a.clone();
  images_a.impl()->requires_grad = true;
  images_b.impl()->requires_grad = true;
  const Tensor targets = Tensor::from_vector({2}, {1.0f, 0.0f});
  nets::StageMap stages_a, stages_b;
  const Tensor logits_a = buffered.forward_with_stages(images_a, stages_a);
  const Tensor logits_b = copying.forward_with_stages(images_b, stages_b);
  EXPECT_TRUE(test_support::all_close(logits_a.to_vector(), logits_b.to_vector(), 1e-5f, 1e-5f));
  for (const std::string& s : buffered.stage_names())
    EXPECT_TRUE(test_support::all_close(stages_a.at(s).to_vector(), stages_b.at(s).to_vector(), 1e-5f, 1e-5f)) << s;

  // No copies: each block's output is a view over one buffer that its last layer wrote into.
  for (const char* s : {"block1", "block2", "block3"}) {
    const Tensor& out = stages_a.at(s);
    ASSERT_TRUE(out.grad_fn());
    EXPECT_EQ(out.grad_fn()->name(), "concat_channels");
    EXPECT_EQ(out.grad_fn()->inputs().at(1).storage(), out.storage()) << s;  // the last layer's new channels
    EXPECT_EQ(out.storage()->nbytes(), static_cast<size_t>(out.numel()) * sizeof(float)) << s;
    EXPECT_NE(stages_b.at(s).grad_fn()->inputs().at(1).storage(), stages_b.at(s).storage()) << s;
  }

  // Gradients: a BCE loss on both, then every parameter, the input and the BN statistics agree.
  bce_with_logits(logits_a, targets).backward();
  bce_with_logits(logits_b, targets).backward();
  ASSERT_TRUE(images_a.grad().defined());
  EXPECT_TRUE(test_support::all_close(images_a.grad().to_vector(), images_b.grad().to_vector(), 1e-6f, 1e-4f));
  std::map<std::string, Tensor> state_b;
  for (const auto& [name, t] : copying.state()) state_b[name] = t;
  for (const auto& [name, t] : buffered.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_TRUE(test_support::all_close(t.grad().to_vector(), state_b.at(name).grad().to_vector(), 1e-6f, 1e-4f))
        << name;
  }
  for (const auto& [name, t] : buffered.named_buffers())
    EXPECT_TRUE(test_support::all_close(t.to_vector(), state_b.at(name).to_vector(), 1e-6f, 1e-5f)) << name;
}

// ---- A training step -------------------------------------------------------------------------------

TEST(DenseNet, TrainingStepGivesFiniteGradientsForEveryParameter) {
  // DenseNet-121 at 64x64 (block 4 at 2x2, so every BN sees several values), batch 2, the study's head.
  Generator gen(10), data(11);
  auto net = nets::make_net("densenet121", Head::flatten, Flavor::keras, 64, gen);
  const Tensor images = test_support::random_tensor({2, 64, 64, 3}, data, 0.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({2}, {0.0f, 1.0f});
  const std::vector<float> running_var_before = net->state().back().second.to_vector();
  const Tensor loss = bce_with_logits(net->forward(images), targets);
  ASSERT_TRUE(std::isfinite(loss.item()));
  loss.backward();
  int64_t tensors = 0;
  for (const auto& [name, t] : net->named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name << " got no gradient";
    double abs_sum = 0;
    for (float g : t.grad().to_vector()) {
      ASSERT_TRUE(std::isfinite(g)) << name;
      abs_sum += std::fabs(g);
    }
    EXPECT_GT(abs_sum, 0.0) << name;
    ++tensors;
  }
  EXPECT_EQ(tensors, 2 * (1 + 2 * 58 + 3 + 1) + 58 * 2 + 3 + 1 + 2);
  // Training mode moved the running statistics (the last buffer: norm5.running_var).
  EXPECT_NE(net->state().back().second.to_vector(), running_var_before);
}

// A whole training step's gradients do not depend on the number of threads (support/thread_determinism.h).
TEST(DenseNet, TrainingStepIsBitIdenticalOnOneAndTwoThreads) {
  Generator data(12);
  const Tensor images = test_support::random_tensor({2, 64, 64, 3}, data, 0.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({2}, {1.0f, 0.0f});
  test_support::expect_step_gradients_independent_of_threads("densenet121", 64, 10, images, targets);
}

}  // namespace
