// Inception-ResNet-v2: parameter counts pinned to Keras, timm's names and our layouts, the summary at 299
// (MACs, grids), output shapes at 75 and 139 (and 74 refused), and a training step with finite gradients
// everywhere.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "nets/inception_resnet_v2.h"
#include "nets/registry.h"
#include "support/gradcheck.h"
#include "support/thread_determinism.h"

namespace {

using namespace engine;
using nets::Flavor;
using nets::Head;

int64_t count_buffers(const Module& m) {
  int64_t n = 0;
  for (const auto& [name, t] : m.named_buffers()) n += t.numel();
  return n;
}

// Building the net draws 56 million random numbers (about a second): the tests that only read it share one.
std::shared_ptr<nets::Net> shared_imagenet_net() {
  static std::shared_ptr<nets::Net> net = [] {
    Generator gen(1);
    return nets::make_net("inception_resnet_v2", Head::imagenet, Flavor::keras, 299, gen);
  }();
  net->eval();
  return net;
}

TEST(InceptionResNetV2, TimmNamesAndOurLayouts) {
  Generator gen(2);
  auto net = nets::make_net("inception_resnet_v2", Head::flatten, Flavor::torch, 224, gen);
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : net->state()) shapes[name] = t.shape();
  const std::map<std::string, Shape> expected{
      {"conv2d_1a.conv.weight", {32, 3, 3, 3}},
      {"conv2d_1a.bn.bias", {32}},
      {"conv2d_1a.bn.running_mean", {32}},
      {"conv2d_2a.conv.weight", {32, 3, 3, 32}},
      {"conv2d_2b.conv.weight", {64, 3, 3, 32}},
      {"conv2d_3b.conv.weight", {80, 1, 1, 64}},
      {"conv2d_4a.bn.running_var", {192}},
      {"mixed_5b.branch0.conv.weight", {96, 1, 1, 192}},
      {"mixed_5b.branch1.1.conv.weight", {64, 5, 5, 48}},
      {"mixed_5b.branch2.2.bn.bias", {96}},
      {"mixed_5b.branch3.1.conv.weight", {64, 1, 1, 192}},  // index 0 of timm's Sequential is the pool
      {"repeat.0.branch0.conv.weight", {32, 1, 1, 320}},
      {"repeat.0.branch1.1.conv.weight", {32, 3, 3, 32}},
      {"repeat.0.branch1.1.bn.bias", {32}},
      {"repeat.9.branch2.2.conv.weight", {64, 3, 3, 48}},
      {"repeat.0.conv2d.weight", {320, 1, 1, 128}},
      {"repeat.0.conv2d.bias", {320}},
      {"mixed_6a.branch0.conv.weight", {384, 3, 3, 320}},
      {"mixed_6a.branch1.2.conv.weight", {384, 3, 3, 256}},
      {"repeat_1.19.branch1.1.conv.weight", {160, 1, 7, 128}},
      {"repeat_1.19.branch1.2.conv.weight", {192, 7, 1, 160}},
      {"repeat_1.0.conv2d.weight", {1088, 1, 1, 384}},
      {"mixed_7a.branch0.1.conv.weight", {384, 3, 3, 256}},
      {"mixed_7a.branch1.1.conv.weight", {288, 3, 3, 256}},
      {"mixed_7a.branch2.2.conv.weight", {320, 3, 3, 288}},
      {"repeat_2.8.branch1.1.conv.weight", {224, 1, 3, 192}},
      {"repeat_2.8.branch1.2.conv.weight", {256, 3, 1, 224}},
      {"repeat_2.8.conv2d.bias", {2080}},
      {"block8.conv2d.weight", {2080, 1, 1, 448}},
      {"conv2d_7b.conv.weight", {1536, 1, 1, 2080}},
      {"conv2d_7b.bn.bias", {1536}},
      {"classif.weight", {1, 38400}},  // the study's 5x5x1536 Flatten at 224
      {"classif.bias", {1}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_EQ(shapes.count(name), 1u) << name;
    EXPECT_EQ(shapes.at(name), shape) << name;
  }
  // No gamma anywhere (Keras scale=False); no tenth block35, 21st block17, tenth repeat_2 block.
  for (const auto& [name, shape] : shapes) EXPECT_EQ(name.find("bn.weight"), std::string::npos) << name;
  EXPECT_EQ(shapes.count("repeat.10.conv2d.weight"), 0u);
  EXPECT_EQ(shapes.count("repeat_1.20.conv2d.weight"), 0u);
  EXPECT_EQ(shapes.count("repeat_2.9.conv2d.weight"), 0u);
  // 204 units (conv weight + BN bias, mean, var), 40 residual convs (weight, bias), the head's 2.
  EXPECT_EQ(shapes.size(), size_t(204 * 4 + 40 * 2 + 2));
  EXPECT_EQ(net->num_parameters() + count_buffers(*net), 54336736 + 38400 + 1);
}

TEST(InceptionResNetV2, BatchNormFlavors) {
  const BatchNormOptions keras = nets::InceptionResNetV2::bn_options(Flavor::keras);
  const BatchNormOptions torch = nets::InceptionResNetV2::bn_options(Flavor::torch);
  EXPECT_FLOAT_EQ(keras.eps, 1e-3f);
  EXPECT_FLOAT_EQ(torch.eps, 1e-3f);
  EXPECT_FLOAT_EQ(keras.momentum, 0.01f);
  EXPECT_FLOAT_EQ(torch.momentum, 0.1f);
  EXPECT_FALSE(keras.unbiased_running_var);
  EXPECT_TRUE(torch.unbiased_running_var);
}

TEST(InceptionResNetV2, CountsAndSummaryAt299MatchPublishedWork) {
  auto net = shared_imagenet_net();
  const std::vector<nets::SummaryRow> rows = net->summary(299);
  int64_t params = 0, buffers = 0, macs = 0;
  std::map<std::string, Shape> outputs;
  for (const auto& r : rows) {
    params += r.parameters;
    buffers += r.buffers;
    macs += r.macs;
    outputs[r.name] = r.output;
  }
  // Keras counts beta, moving mean and moving variance of its gamma-less BNs: our parameters + buffers.
  EXPECT_EQ(net->num_parameters(), 55813192);  // Keras's trainable count
  EXPECT_EQ(net->num_parameters() + count_buffers(*net), 55873736);
  EXPECT_EQ(net->num_parameters() + count_buffers(*net) - (1536 * 1000 + 1000), 54336736);  // include_top=False
  EXPECT_EQ(net->feature_channels(), 1536);
  EXPECT_EQ(net->head_prefix(), "classif.");
  EXPECT_EQ(params, 55813192);  // every parameter belongs to exactly one row
  EXPECT_EQ(params + buffers, 55873736);
  EXPECT_NEAR(static_cast<double>(macs) * 1e-9, 13.2, 0.2);  // docs/reference.md section 6
  // Grids at 299: 149, 147, 147, 73, 73, 71, 35, 17, 8.
  EXPECT_EQ(outputs.at("conv2d_1a"), (Shape{1, 149, 149, 32}));
  EXPECT_EQ(outputs.at("conv2d_2a"), (Shape{1, 147, 147, 32}));
  EXPECT_EQ(outputs.at("conv2d_2b"), (Shape{1, 147, 147, 64}));
  EXPECT_EQ(outputs.at("maxpool_3a"), (Shape{1, 73, 73, 64}));
  EXPECT_EQ(outputs.at("conv2d_3b"), (Shape{1, 73, 73, 80}));
  EXPECT_EQ(outputs.at("conv2d_4a"), (Shape{1, 71, 71, 192}));
  EXPECT_EQ(outputs.at("maxpool_5a"), (Shape{1, 35, 35, 192}));
  EXPECT_EQ(outputs.at("mixed_5b"), (Shape{1, 35, 35, 320}));
  EXPECT_EQ(outputs.at("mixed_5b.branch3.0"), (Shape{1, 35, 35, 192}));
  EXPECT_EQ(outputs.at("repeat.9.conv2d"), (Shape{1, 35, 35, 320}));
  EXPECT_EQ(outputs.at("mixed_6a"), (Shape{1, 17, 17, 1088}));
  EXPECT_EQ(outputs.at("repeat_1.19.branch1.1"), (Shape{1, 17, 17, 160}));
  EXPECT_EQ(outputs.at("mixed_7a"), (Shape{1, 8, 8, 2080}));
  EXPECT_EQ(outputs.at("block8.conv2d"), (Shape{1, 8, 8, 2080}));
  EXPECT_EQ(outputs.at("conv2d_7b"), (Shape{1, 8, 8, 1536}));
  EXPECT_EQ(outputs.at("classif"), (Shape{1, 1000}));
}

struct SizeCase {
  int64_t size;
  int64_t stem;  // grid after maxpool_5a
  int64_t mid;   // after mixed_6a
  int64_t grid;  // after mixed_7a
};
void PrintTo(const SizeCase& c, std::ostream* os) { *os << c.size; }

class InceptionSizes : public ::testing::TestWithParam<SizeCase> {};

TEST_P(InceptionSizes, StagesAndHeads) {
  const SizeCase c = GetParam();
  Generator gen(4);
  NoGradGuard no_grad;
  auto net = shared_imagenet_net();  // the imagenet head takes any size >= 75
  EXPECT_EQ(net->feature_grid(c.size, c.size), std::make_pair(c.grid, c.grid));
  const Tensor images = test_support::random_tensor({1, c.size, c.size, 3}, gen);
  nets::StageMap stages;
  const Tensor logits = net->forward_with_stages(images, stages);
  EXPECT_EQ(logits.shape(), (Shape{1, 1000}));
  EXPECT_EQ(stages.size(), net->stage_names().size());
  EXPECT_EQ(stages.at("stem").shape(), (Shape{1, c.stem, c.stem, 192}));
  EXPECT_EQ(stages.at("mixed_5b").shape(), (Shape{1, c.stem, c.stem, 320}));
  EXPECT_EQ(stages.at("block35").shape(), (Shape{1, c.stem, c.stem, 320}));
  EXPECT_EQ(stages.at("mixed_6a").shape(), (Shape{1, c.mid, c.mid, 1088}));
  EXPECT_EQ(stages.at("block17").shape(), (Shape{1, c.mid, c.mid, 1088}));
  EXPECT_EQ(stages.at("mixed_7a").shape(), (Shape{1, c.grid, c.grid, 2080}));
  EXPECT_EQ(stages.at("block8").shape(), (Shape{1, c.grid, c.grid, 2080}));
  EXPECT_EQ(stages.at("features").shape(), (Shape{1, c.grid, c.grid, 1536}));
  for (float v : logits.to_vector()) EXPECT_TRUE(std::isfinite(v));
  // One pixel less than the minimum in either direction is refused with the minimum named.
  try {
    net->forward(Tensor::zeros({1, 74, c.size, 3}));
    ADD_FAILURE() << "expected an error";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least 75x75"), std::string::npos) << e.what();
  }
  // The block8 output has no ReLU: negative values survive; every other stage is a ReLU output.
  const std::vector<float> b8 = stages.at("block8").to_vector();
  EXPECT_LT(*std::min_element(b8.begin(), b8.end()), 0.0f);
  const std::vector<float> b17 = stages.at("block17").to_vector();
  EXPECT_GE(*std::min_element(b17.begin(), b17.end()), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(OddAndSmall, InceptionSizes,
                         ::testing::Values(SizeCase{75, 7, 3, 1}, SizeCase{139, 15, 7, 3}),
                         [](const auto& info) { return "size" + std::to_string(info.param.size); });

TEST(InceptionResNetV2, TooSmallSizesAreRefused) {
  Generator gen(5);
  const std::string e = [&] {
    try {
      nets::make_net("inception_resnet_v2", Head::gap, Flavor::keras, 74, gen);
    } catch (const engine::Error& error) {
      return std::string(error.what());
    }
    return std::string();
  }();
  EXPECT_NE(e.find("below the minimum 75"), std::string::npos) << e;
}

TEST(InceptionResNetV2, TrainingStepGivesFiniteGradientsForEveryParameter) {
  // At 107x107 the last stages are 2x2, so with batch 2 every BN sees several values.
  Generator gen(6), data(7);
  auto net = nets::make_net("inception_resnet_v2", Head::gap, Flavor::keras, 107, gen);
  EXPECT_EQ(net->feature_grid(107, 107), std::make_pair(int64_t{2}, int64_t{2}));
  const Tensor images = test_support::random_tensor({2, 107, 107, 3}, data, -1.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({2}, {1.0f, 0.0f});
  const Tensor loss = bce_with_logits(net->forward(images), targets);
  ASSERT_TRUE(std::isfinite(loss.item()));
  loss.backward();
  for (const auto& [name, t] : net->named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name << " got no gradient";
    double abs_sum = 0;
    for (float g : t.grad().to_vector()) {
      ASSERT_TRUE(std::isfinite(g)) << name;
      abs_sum += std::fabs(g);
    }
    EXPECT_GT(abs_sum, 0.0) << name;
  }
}

// A whole training step's gradients do not depend on the number of threads (as DenseNet's,
// support/thread_determinism.h), here through Inception-ResNet-v2's other paths: Winograd 3x3s in the
// stem and block35 (11x11 at 107 px), 1x7/7x1 and 1x3/3x1 convolutions, strided 3x3s whose backward data
// scatters (col2im), the pools and the residual tails.
TEST(InceptionResNetV2, TrainingStepIsBitIdenticalOnOneAndTwoThreads) {
  Generator data(13);
  const Tensor images = test_support::random_tensor({2, 107, 107, 3}, data, -1.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({2}, {1.0f, 0.0f});
  test_support::expect_step_gradients_independent_of_threads("inception_resnet_v2", 107, 14, images, targets);
}

// Inference runs each residual block's tail as one fused kernel (conv2d_scaled_residual: the conv, its
// bias, the scale, the residual and the ReLU); with a gradient wanted it runs the conv and scaled_residual.
// On the CPU the two give the same logits bit for bit, so eval-mode validation and training agree.
TEST(InceptionResNetV2, FusedResidualInferenceEqualsTheTrainingPathBitForBit) {
  Generator gen(8), data(9);
  auto net = nets::make_net("inception_resnet_v2", Head::gap, Flavor::keras, 75, gen);
  net->eval();
  const Tensor images = test_support::random_tensor({2, 75, 75, 3}, data, -1.0f, 1.0f);
  std::vector<float> fused;
  {
    NoGradGuard no_grad;
    fused = net->forward(images).to_vector();
  }
  const std::vector<float> pair = net->forward(images).to_vector();  // parameters want gradients: the pair
  EXPECT_EQ(fused, pair);
}

// In inference each block's branches write their outputs straight into their slices of the block's
// concatenation, so the concatenation copies nothing: the block outputs of Mixed5b, Mixed6a, Mixed7a and
// the residual blocks' concatenated branches share storage with every branch output (eval mode, no
// gradient, folded or not). Training keeps separate branch outputs and the copy.
class StorageObserver : public nets::ForwardObserver {
 public:
  void on_unit_output(const std::string& path, const std::string&, const Tensor& output,
                      const std::vector<const Module*>&, int64_t) override {
    storage[path] = output.storage().get();
  }
  std::map<std::string, const void*> storage;
};

TEST(InceptionResNetV2, BranchesWriteIntoTheirConcatenationSlices) {
  Generator gen(11), data(12);
  auto net = nets::make_net("inception_resnet_v2", Head::gap, Flavor::keras, 75, gen);
  const Tensor images = test_support::random_tensor({2, 75, 75, 3}, data, -1.0f, 1.0f);
  net->eval();
  NoGradGuard inference;
  for (bool folded : {false, true}) {
    SCOPED_TRACE(folded ? "folded" : "unfolded");
    net->fold_batch_norms(folded);
    StorageObserver seen;
    {
      nets::ObserveForward observe(seen);
      (void)net->forward(images);
    }
    const std::map<std::string, std::vector<std::string>> blocks = {
        {"mixed_5b", {"mixed_5b.branch0", "mixed_5b.branch1.1", "mixed_5b.branch2.2", "mixed_5b.branch3.1"}},
        {"mixed_6a", {"mixed_6a.branch0", "mixed_6a.branch1.2", "mixed_6a.branch2"}},
        {"mixed_7a", {"mixed_7a.branch0.1", "mixed_7a.branch1.1", "mixed_7a.branch2.2", "mixed_7a.branch3"}},
    };
    for (const auto& [block, branches] : blocks) {
      ASSERT_TRUE(seen.storage.count(block)) << block;
      for (const std::string& branch : branches) {
        ASSERT_TRUE(seen.storage.count(branch)) << branch;
        EXPECT_EQ(seen.storage.at(branch), seen.storage.at(block)) << branch << " was copied into " << block;
      }
    }
    // A residual block's branches share one buffer (their concatenation, the 1x1 convolution's input).
    EXPECT_EQ(seen.storage.at("repeat.0.branch0"), seen.storage.at("repeat.0.branch2.2"));
    EXPECT_EQ(seen.storage.at("repeat_1.3.branch0"), seen.storage.at("repeat_1.3.branch1.2"));
  }
}

TEST(InceptionResNetV2, TheFusedResidualOpRefusesToRecordAGradient) {
  Generator gen(10);
  Tensor x = test_support::random_tensor({1, 3, 3, 4}, gen, -1.0f, 1.0f);
  const Tensor w = test_support::random_tensor({6, 1, 1, 4}, gen, -1.0f, 1.0f);
  const Tensor b = test_support::random_tensor({6}, gen, -1.0f, 1.0f);
  const Tensor r = test_support::random_tensor({1, 3, 3, 6}, gen, -1.0f, 1.0f);
  x.set_requires_grad(true);
  try {
    (void)conv2d_scaled_residual(x, w, b, r, 0.1f, true, Conv2dOptions::valid());
    FAIL() << "conv2d_scaled_residual recorded a gradient";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("NoGradGuard"), std::string::npos) << e.what();
  }
  NoGradGuard no_grad;
  const Tensor fused = conv2d_scaled_residual(x, w, b, r, 0.1f, true, Conv2dOptions::valid());
  EXPECT_EQ(fused.to_vector(), scaled_residual(r, conv2d(x, w, b, Conv2dOptions::valid()), 0.1f, true).to_vector());
}

}  // namespace
