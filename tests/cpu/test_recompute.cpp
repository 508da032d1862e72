// engine::recompute_in_backward and engine::with_recomputed (recomputation in backward) and the host memory
// counters: the same values, gradients and batch-norm statistics as the plain graph, bit for bit;
// finite differences; what the forward keeps; the rules (a region must not reach into the graph around
// it; a recomputed tensor must not escape its consumer); nesting and retain_graph.
#include <cmath>
#include <string>

#include "engine/recompute.h"
#include "engine/memory_stats.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;
using test_support::gradcheck;
using test_support::random_tensor;

std::vector<float> values(const Tensor& t) { return t.to_vector(); }

// The parameters and statistics of a small BN - ReLU - conv 3x3 - residual region on [N, H, W, C].
struct Region {
  Tensor gamma, beta, weight, running_mean, running_var;
  BatchNormOptions options;

  Region(int64_t channels, BatchNormOptions bn, uint64_t seed) : options(bn) {
    Generator gen(seed);
    gamma = random_tensor({channels}, gen, 0.5f, 1.5f).set_requires_grad();
    beta = random_tensor({channels}, gen, -0.5f, 0.5f).set_requires_grad();
    weight = random_tensor({channels, 3, 3, channels}, gen, -0.3f, 0.3f).set_requires_grad();
    running_mean = Tensor::zeros({channels});
    running_var = Tensor::ones({channels});
  }
  // y = conv(relu(bn(x)); weight) + x: x is used twice, gamma and beta come in as inputs, the weight is
  // read directly (as a module's forward reads its parameters).
  Tensor operator()(const std::vector<Tensor>& in) const {
    const Tensor h = relu(batch_norm(in[0], in[1], in[2], running_mean, running_var, true, options));
    return add(conv2d(h, weight, Tensor(), Conv2dOptions::symmetric(1)), in[0]);
  }
};

struct StepResult {
  std::vector<float> y, dx0, dgamma, dbeta, dweight, running_mean, running_var;
};

enum class Mode { plain, region, recomputed };

// y = the region on inputs: plain, recomputed as a whole, or with its BN - ReLU output recomputed for the
// convolution and the residual add (with_recomputed).
Tensor run_region(Mode mode, const Region& region, const std::vector<Tensor>& inputs) {
  if (mode == Mode::plain) return region(inputs);
  if (mode == Mode::region) return recompute_in_backward(region, inputs, {region.running_mean, region.running_var});
  return with_recomputed(
      [&region](const std::vector<Tensor>& in) {
        return relu(batch_norm(in[0], in[1], in[2], region.running_mean, region.running_var, true, region.options));
      },
      inputs,
      [&region, x = inputs[0]](const Tensor& z) {
        return add(conv2d(z, region.weight, Tensor(), Conv2dOptions::symmetric(1)), x);
      },
      {region.running_mean, region.running_var});
}

// Forward + backward of the region on scale(x0, 1.5) (so that its input has history).
StepResult run_step(Mode mode, BatchNormOptions bn) {
  Generator data(3);
  const Tensor x0 = random_tensor({3, 5, 4, 6}, data).set_requires_grad();
  const Tensor dy = random_tensor({3, 5, 4, 6}, data);
  const Region region(6, bn, 11);
  const Tensor x = scale(x0, 1.5f);
  const Tensor y = run_region(mode, region, {x, region.gamma, region.beta});
  y.backward(dy);
  return {values(y),          values(x0.grad()),          values(region.gamma.grad()),
          values(region.beta.grad()), values(region.weight.grad()), values(region.running_mean),
          values(region.running_var)};
}

class RecomputeFlavor : public ::testing::TestWithParam<bool> {};

TEST_P(RecomputeFlavor, SameValuesGradientsAndStatisticsAsThePlainGraphBitForBit) {
  const BatchNormOptions bn = GetParam() ? BatchNormOptions::keras(1.001e-5f) : BatchNormOptions::torch();
  const StepResult plain = run_step(Mode::plain, bn);
  for (Mode mode : {Mode::region, Mode::recomputed}) {
    const StepResult r = run_step(mode, bn);
    const char* name = mode == Mode::region ? "recompute_in_backward" : "with_recomputed";
    EXPECT_EQ(r.y, plain.y) << name;
    EXPECT_EQ(r.dx0, plain.dx0) << name;
    EXPECT_EQ(r.dgamma, plain.dgamma) << name;
    EXPECT_EQ(r.dbeta, plain.dbeta) << name;
    EXPECT_EQ(r.dweight, plain.dweight) << name;
    // The running statistics moved once (the recompute put them back): equal to the plain graph's.
    EXPECT_EQ(r.running_mean, plain.running_mean) << name;
    EXPECT_EQ(r.running_var, plain.running_var) << name;
  }
  EXPECT_NE(plain.running_mean, std::vector<float>(6, 0.0f));
}

INSTANTIATE_TEST_SUITE_P(BatchNorm, RecomputeFlavor, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "keras" : "torch"; });

TEST(RecomputeInBackward, MatchesFiniteDifferences) {
  // A smooth region (sigmoid instead of ReLU: no kinks for the differences to straddle): conv 3x3 of
  // sigmoid(train-mode BN(x)) plus x, with BN's gamma and beta as inputs and the weight read directly.
  Generator gen(5);
  const Tensor x = random_tensor({2, 4, 3, 3}, gen).set_requires_grad();
  const Tensor gamma = random_tensor({3}, gen, 0.5f, 1.5f).set_requires_grad();
  const Tensor beta = random_tensor({3}, gen, -0.5f, 0.5f).set_requires_grad();
  const Tensor weight = random_tensor({3, 3, 3, 3}, gen, -0.5f, 0.5f).set_requires_grad();
  const Tensor mean = Tensor::zeros({3}), var = Tensor::ones({3});
  const auto region = [weight, mean, var](const std::vector<Tensor>& in) {
    const Tensor h = sigmoid(batch_norm(in[0], in[1], in[2], mean, var, true, BatchNormOptions::torch()));
    return add(conv2d(h, weight, Tensor(), Conv2dOptions::symmetric(1)), in[0]);
  };
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return recompute_in_backward(region, {in[0], in[1], in[2]}, {mean, var}); },
      {x, gamma, beta, weight}));
  // The same with the sigmoid's output recomputed for the convolution.
  const auto normalised = [mean, var](const std::vector<Tensor>& in) {
    return sigmoid(batch_norm(in[0], in[1], in[2], mean, var, true, BatchNormOptions::torch()));
  };
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return with_recomputed(normalised, {in[0], in[1], in[2]},
                               [&](const Tensor& z) {
                                 return add(conv2d(z, weight, Tensor(), Conv2dOptions::symmetric(1)), in[0]);
                               },
                               {mean, var});
      },
      {x, gamma, beta, weight}));
}

TEST(RecomputeInBackward, ForwardKeepsOnlyWhatBackwardCannotRecompute) {
  // The live host bytes after the forward of y = conv(relu(bn(x))) + x, all tensors of x's size:
  //  plain:      BN's output (held by ReLU's node), ReLU's (saved by ReLU and the convolution), the
  //              convolution's (held by add's node) and y: 4 (+ BN's statistics);
  //  recompute_in_backward: y alone: 1;
  //  recomputed: the convolution's output and y: 2 (ReLU's output was given back after the convolution).
  Generator data(4);
  const Region region(16, BatchNormOptions::torch(), 12);
  const Tensor x = random_tensor({4, 16, 16, 16}, data).set_requires_grad();
  const int64_t bytes = x.numel() * 4;
  for (Mode mode : {Mode::plain, Mode::region, Mode::recomputed}) {
    const int64_t before = host_memory_stats().live_bytes;
    reset_host_memory_peak();
    Tensor y = run_region(mode, region, {x, region.gamma, region.beta});
    const int64_t kept = host_memory_stats().live_bytes - before;
    const int64_t expected = mode == Mode::plain ? 4 * bytes : mode == Mode::region ? bytes : 2 * bytes;
    if (mode == Mode::plain) {
      EXPECT_GE(kept, expected);
    } else {
      EXPECT_EQ(kept, expected) << (mode == Mode::region ? "recompute_in_backward" : "with_recomputed");
    }
    // The forward's intermediates existed for a moment either way.
    EXPECT_GE(host_memory_stats().peak_bytes - before, 3 * bytes);
    y.backward(Tensor::ones(y.shape()));
  }
}

TEST(WithRecomputed, GivesZsMemoryBackAndRefusesAnEscapedZ) {
  Generator gen(9);
  const Tensor x = random_tensor({2, 3}, gen).set_requires_grad();
  Tensor escaped;
  const Tensor y = with_recomputed([](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x},
                                   [&escaped](const Tensor& z) {
                                     escaped = z;  // not allowed: only the consumer's result may leave
                                     return scale(z, 2.0f);
                                   });
  EXPECT_EQ(escaped.numel(), 0);  // the memory went back when the consumer returned
  EXPECT_EQ(y.grad_fn()->name(), "recompute_before");
  // Back-propagating through the escaped z alone reaches its node before any recompute.
  try {
    escaped.backward(Tensor::zeros({0}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("escaped its consumer"), std::string::npos) << e.what();
  }
}

TEST(WithRecomputed, WithoutGradientsIsThePlainComposition) {
  Generator gen(10);
  const Tensor x = random_tensor({2, 3}, gen);
  const Tensor y = with_recomputed([](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x},
                                   [](const Tensor& z) { return scale(z, 2.0f); });
  EXPECT_FALSE(y.requires_grad());
  const std::vector<float> xs = values(x), ys = values(y);
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_FLOAT_EQ(ys[i], 2.0f / (1.0f + std::exp(-xs[i])));
}

TEST(RecomputeInBackward, RefusesARegionThatReadsTheGraphAroundIt) {
  Generator gen(6);
  const Tensor a = random_tensor({2, 3}, gen).set_requires_grad();
  const Tensor outside = scale(a, 2.0f);  // has history, but is not passed in
  const Tensor y = recompute_in_backward([outside](const std::vector<Tensor>& in) { return add(in[0], outside); },
                                         {scale(a, 3.0f)});
  try {
    sum(y).backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reads the output of 'scale' from outside it"), std::string::npos) << e.what();
  }
}

TEST(RecomputeInBackward, WithoutGradientsIsThePlainFunction) {
  Generator gen(7);
  const Tensor x = random_tensor({2, 3}, gen);  // needs no gradient
  const Tensor w = random_tensor({2, 3}, gen).set_requires_grad();
  const auto region = [w](const std::vector<Tensor>& in) { return add(in[0], w); };
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(recompute_in_backward(region, {x}).requires_grad());
  }
  // No input needs a gradient: the ordinary graph is recorded, so the directly read w still gets one.
  const Tensor y = recompute_in_backward(region, {x});
  ASSERT_TRUE(y.grad_fn());
  EXPECT_EQ(y.grad_fn()->name(), "add");
  sum(y).backward();
  EXPECT_EQ(values(w.grad()), std::vector<float>(6, 1.0f));
}

TEST(RecomputeInBackward, NestsAndRecomputesAgainUnderRetainGraph) {
  Generator gen(8);
  const Tensor x = random_tensor({4, 5}, gen).set_requires_grad();
  const auto inner = [](const std::vector<Tensor>& in) { return sigmoid(scale(in[0], 2.0f)); };
  const auto outer = [&inner](const std::vector<Tensor>& in) {
    return scale(recompute_in_backward(inner, {in[0]}), 3.0f);
  };
  const Tensor y = sum(recompute_in_backward(outer, {x}));
  y.backward(Tensor(), /*retain_graph=*/true);
  const std::vector<float> once = values(x.grad());
  y.backward();  // the recompute runs again; the gradients accumulate
  const std::vector<float> twice = values(x.grad());
  const std::vector<float> xs = values(x);
  for (size_t i = 0; i < xs.size(); ++i) {
    const float s = 1.0f / (1.0f + std::exp(-2.0f * xs[i]));
    EXPECT_NEAR(once[i], 6.0f * s * (1.0f - s), 1e-5f) << i;
    EXPECT_EQ(twice[i], 2.0f * once[i]) << i;
  }
}

TEST(WithRecomputed, RecomputesAgainUnderRetainGraph) {
  Generator gen(11);
  const Tensor x = random_tensor({4, 5}, gen).set_requires_grad();
  const Tensor y = sum(with_recomputed([](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x},
                                       [](const Tensor& z) { return sigmoid(z); }));
  y.backward(Tensor(), /*retain_graph=*/true);
  const std::vector<float> once = values(x.grad());
  y.backward();
  const std::vector<float> twice = values(x.grad()), xs = values(x);
  for (size_t i = 0; i < xs.size(); ++i) {
    const float s = 1.0f / (1.0f + std::exp(-xs[i])), t = 1.0f / (1.0f + std::exp(-s));
    EXPECT_NEAR(once[i], t * (1.0f - t) * s * (1.0f - s), 1e-6f) << i;
    EXPECT_EQ(twice[i], 2.0f * once[i]) << i;
  }
}

TEST(HostMemoryStats, CountsLiveBytesAndThePeak) {
  const HostMemoryStats start = host_memory_stats();
  reset_host_memory_peak();
  EXPECT_EQ(host_memory_stats().peak_bytes, start.live_bytes);
  {
    const Tensor a = Tensor::empty({1000});
    const Tensor b = Tensor::empty({250});
    EXPECT_EQ(host_memory_stats().live_bytes - start.live_bytes, 5000);
    EXPECT_EQ(host_memory_stats().allocations - start.allocations, 2);
    const Tensor view = a.slice(0, 10, 20);  // a view allocates nothing
    EXPECT_EQ(host_memory_stats().live_bytes - start.live_bytes, 5000);
  }
  const HostMemoryStats end = host_memory_stats();
  EXPECT_EQ(end.live_bytes, start.live_bytes);
  EXPECT_EQ(end.peak_bytes - start.live_bytes, 5000);
}

}  // namespace
