// Finite-difference gradient checks of every op's backward, on odd sizes, asymmetric padding and
// strided (channel-slice) inputs.
#include "support/gradcheck.h"

namespace {

using namespace engine;
using test_support::gradcheck;
using test_support::random_away_from_zero;
using test_support::random_distinct;
using test_support::random_tensor;

struct ConvCase {
  const char* name;
  int64_t batch, h, w, in_c, out_c, kh, kw;
  Conv2dOptions options;
  bool bias;
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class ConvGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGrad, MatchesFiniteDifferences) {
  const ConvCase c = GetParam();
  Generator gen(1);
  Tensor x = random_tensor({c.batch, c.h, c.w, c.in_c}, gen).set_requires_grad();
  Tensor w = random_tensor({c.out_c, c.kh, c.kw, c.in_c}, gen, -0.5f, 0.5f).set_requires_grad();
  Tensor b = c.bias ? random_tensor({c.out_c}, gen).set_requires_grad() : Tensor();
  const Conv2dOptions options = c.options;
  EXPECT_TRUE(gradcheck([options](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], options); },
                        {x, w, b}));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvGrad,
    ::testing::Values(ConvCase{"k1x1", 2, 5, 4, 3, 4, 1, 1, Conv2dOptions::valid(), false},
                      ConvCase{"k3x3_pad1_bias", 2, 5, 6, 3, 4, 3, 3, Conv2dOptions::symmetric(1), true},
                      ConvCase{"k7x7_s2_p3", 1, 9, 8, 2, 3, 7, 7, Conv2dOptions::symmetric(3, 2), false},
                      ConvCase{"k3x3_s2_valid", 2, 7, 7, 3, 2, 3, 3, Conv2dOptions::valid(2), false},
                      ConvCase{"k1x7_same", 1, 4, 9, 3, 2, 1, 7, Conv2dOptions::symmetric(0, 3, 1), true},
                      ConvCase{"k7x1_same", 1, 9, 4, 3, 2, 7, 1, Conv2dOptions::symmetric(3, 0, 1), false},
                      ConvCase{"k1x3", 2, 3, 5, 2, 3, 1, 3, Conv2dOptions::symmetric(0, 1, 1), false},
                      ConvCase{"k3x1", 2, 5, 3, 2, 3, 3, 1, Conv2dOptions::symmetric(1, 0, 1), false},
                      ConvCase{"asymmetric_pad", 2, 6, 5, 3, 2, 2, 2, Conv2dOptions{2, 2, 0, 1, 1, 0}, true}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return std::string(info.param.name); });

TEST(ConvGrad, StridedChannelSliceInputAndOutput) {
  Generator gen(2);
  Tensor base = random_tensor({2, 5, 5, 7}, gen).set_requires_grad();
  Tensor w = random_tensor({3, 3, 3, 4}, gen, -0.5f, 0.5f).set_requires_grad();
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor slice = slice_channels(in[0], 2, 6);  // ld 7, 4 channels
        Tensor buffer = Tensor::zeros({2, 5, 5, 8});
        Tensor out = buffer.slice(-1, 3, 6);         // written in place into a wider buffer
        return conv2d(slice, in[1], Tensor(), Conv2dOptions::symmetric(1), out);
      },
      {base, w}));
}

TEST(OpsGrad, SameTfPaddingIsAsymmetricForEvenKernels) {
  const Conv2dOptions o = Conv2dOptions::same(6, 6, 2, 2, 2);  // out 3: total pad 0
  EXPECT_EQ(o.pad_top + o.pad_bottom, 0);
  const Conv2dOptions p = Conv2dOptions::same(5, 5, 2, 2, 1);  // out 5: total pad 1, at the end
  EXPECT_EQ(p.pad_top, 0);
  EXPECT_EQ(p.pad_bottom, 1);
  const Conv2dOptions q = Conv2dOptions::same(17, 17, 7, 1, 1);
  EXPECT_EQ(q.pad_top, 3);
  EXPECT_EQ(q.pad_left, 0);
}

struct BnCase {
  const char* name;
  bool training, gamma, beta;
  BatchNormOptions options;
};

void PrintTo(const BnCase& c, std::ostream* os) { *os << c.name; }

class BatchNormGrad : public ::testing::TestWithParam<BnCase> {};

TEST_P(BatchNormGrad, MatchesFiniteDifferences) {
  const BnCase c = GetParam();
  Generator gen(3);
  Tensor x = random_tensor({3, 4, 3, 5}, gen, -2.0f, 2.0f).set_requires_grad();
  Tensor gamma = c.gamma ? random_tensor({5}, gen, 0.5f, 1.5f).set_requires_grad() : Tensor();
  Tensor beta = c.beta ? random_tensor({5}, gen).set_requires_grad() : Tensor();
  Tensor mean = random_tensor({5}, gen), var = random_tensor({5}, gen, 0.5f, 2.0f);
  const bool training = c.training;
  const BatchNormOptions options = c.options;
  EXPECT_TRUE(gradcheck(
      [&, training, options](const std::vector<Tensor>& in) {
        return batch_norm(in[0], in[1], in[2], mean, var, training, options);
      },
      {x, gamma, beta}));
}

INSTANTIATE_TEST_SUITE_P(
    Modes, BatchNormGrad,
    ::testing::Values(BnCase{"training_torch", true, true, true, BatchNormOptions::torch()},
                      BnCase{"training_keras_no_gamma", true, false, true, BatchNormOptions::keras(1e-3f)},
                      BnCase{"training_no_affine", true, false, false, BatchNormOptions::torch()},
                      BnCase{"eval", false, true, true, BatchNormOptions::keras(1.001e-5f)},
                      BnCase{"eval_no_gamma", false, false, true, BatchNormOptions::keras(1e-3f)}),
    [](const ::testing::TestParamInfo<BnCase>& info) { return std::string(info.param.name); });

TEST(OpsGrad, BatchNormOnChannelSlice) {
  Generator gen(4);
  Tensor x = random_tensor({2, 3, 3, 6}, gen, -2.0f, 2.0f).set_requires_grad();
  Tensor gamma = random_tensor({4}, gen, 0.5f, 1.5f).set_requires_grad();
  Tensor beta = random_tensor({4}, gen).set_requires_grad();
  Tensor mean = Tensor::zeros({4}), var = Tensor::ones({4});
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(slice_channels(in[0], 1, 5), in[1], in[2], mean, var, true, BatchNormOptions::torch());
      },
      {x, gamma, beta}));
}

TEST(OpsGrad, Relu) {
  Generator gen(5);
  Tensor x = random_away_from_zero({2, 3, 4, 5}, gen, 0.05f).set_requires_grad();
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x}));
}

TEST(OpsGrad, Sigmoid) {
  Generator gen(6);
  Tensor x = random_tensor({3, 7}, gen, -4.0f, 4.0f).set_requires_grad();
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x}));
}

struct PoolCase {
  const char* name;
  bool max;
  Pool2dOptions options;
  bool count_include_pad;
};

void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

class PoolGrad : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolGrad, MatchesFiniteDifferences) {
  const PoolCase c = GetParam();
  Generator gen(7);
  Tensor x = random_distinct({2, 7, 6, 3}, gen).set_requires_grad();
  test_support::GradcheckOptions check;
  check.max_checks = 126;  // every element of one image
  EXPECT_TRUE(gradcheck(
      [c](const std::vector<Tensor>& in) {
        return c.max ? max_pool2d(in[0], c.options) : avg_pool2d(in[0], c.options, c.count_include_pad);
      },
      {x}, check));
}

INSTANTIATE_TEST_SUITE_P(
    Windows, PoolGrad,
    ::testing::Values(PoolCase{"max_3x3_s2_p1", true, Pool2dOptions::square(3, 2, 1), false},
                      PoolCase{"max_3x3_s2_valid", true, Pool2dOptions::square(3, 2), false},
                      PoolCase{"max_asymmetric", true, Pool2dOptions{2, 3, 1, 2, 0, 1, 1, 0}, false},
                      PoolCase{"avg_2x2_s2", false, Pool2dOptions::square(2, 2), true},
                      PoolCase{"avg_3x3_s1_p1_include_pad", false, Pool2dOptions::square(3, 1, 1), true},
                      PoolCase{"avg_3x3_s1_p1_exclude_pad", false, Pool2dOptions::square(3, 1, 1), false}),
    [](const ::testing::TestParamInfo<PoolCase>& info) { return std::string(info.param.name); });

TEST(OpsGrad, GlobalAvgPool) {
  Generator gen(8);
  Tensor x = random_tensor({2, 3, 5, 4}, gen).set_requires_grad();
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return global_avg_pool(in[0]); }, {x}));
}

TEST(OpsGrad, ConcatCopyAndSlice) {
  Generator gen(9);
  Tensor a = random_tensor({2, 3, 3, 2}, gen).set_requires_grad();
  Tensor b = random_tensor({2, 3, 3, 5}, gen).set_requires_grad();
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor cat = concat_channels({in[0], in[1], in[0]});  // a used twice: gradients sum
        return scale(slice_channels(cat, 1, 8), 1.5f);
      },
      {a, b}));
}

TEST(OpsGrad, AddScaleResidual) {
  Generator gen(10);
  Tensor x = random_tensor({2, 3, 3, 4}, gen).set_requires_grad();
  Tensor up = random_tensor({2, 3, 3, 4}, gen).set_requires_grad();
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) { return add(in[0], scale(in[1], 0.17f)); }, {x, up}));
}

TEST(OpsGrad, FlattenLinear) {
  Generator gen(11);
  Tensor x = random_tensor({3, 2, 2, 5}, gen).set_requires_grad();
  Tensor w = random_tensor({4, 20}, gen, -0.5f, 0.5f).set_requires_grad();
  Tensor b = random_tensor({4}, gen).set_requires_grad();
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) { return linear(flatten(in[0]), in[1], in[2]); }, {x, w, b}));
}

TEST(OpsGrad, BceWithLogitsWeighted) {
  Generator gen(12);
  Tensor logits = random_tensor({7, 1}, gen, -3.0f, 3.0f).set_requires_grad();
  Tensor targets = Tensor::from_vector({7}, {1, 0, 1, 1, 0, 0.3f, 1});
  Tensor weights = random_tensor({7}, gen, 0.2f, 2.0f);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return bce_with_logits(in[0], targets, weights); }, {logits}));
}

TEST(OpsGrad, SumAndMean) {
  Generator gen(13);
  Tensor x = random_tensor({3, 4, 5}, gen).set_requires_grad();
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return add(sum(in[0]), mean(in[0])); }, {x}));
}

}  // namespace
