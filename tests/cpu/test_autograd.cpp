// The gradient rule: uses sum, leaves accumulate, half-batches add up to the full batch, no_grad records
// nothing, and misuse gives clear errors.
#include <optional>

#include "engine/memory_stats.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;
using test_support::all_close;
using test_support::random_tensor;

TEST(Autograd, TensorUsedTwiceReceivesTheSum) {
  Tensor x = Tensor::from_vector({3}, {1, -2, 3}).set_requires_grad();
  // L = sum(2x + 3x) -> dL/dx = 5
  Tensor y = sum(add(scale(x, 2.0f), scale(x, 3.0f)));
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{5, 5, 5}));
}

TEST(Autograd, LeavesAccumulateAcrossBackwardCalls) {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  sum(scale(x, 2.0f)).backward();
  sum(scale(x, 3.0f)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{5, 5}));
  x.zero_grad();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0, 0}));
}

TEST(Autograd, AddGivesTheSameGradientToBothInputsWithoutAliasingThem) {
  Tensor a = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor b = Tensor::from_vector({2}, {3, 4}).set_requires_grad();
  Tensor s = add(a, b);
  sum(add(s, a)).backward();  // a is used twice: its gradient 2, b's 1
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{2, 2}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{1, 1}));
}

// A small conv net: conv -> BN(eval) -> relu -> global pool -> linear -> BCE with a summed loss.
// Two half-batches accumulate to the full batch's gradient (eval-mode BN: samples are independent).
TEST(Autograd, TwoHalfBatchesAccumulateToTheFullBatch) {
  Generator gen(21);
  Tensor x = random_tensor({4, 6, 6, 3}, gen);
  Tensor w = random_tensor({5, 3, 3, 3}, gen, -0.5f, 0.5f).set_requires_grad();
  Tensor gamma = random_tensor({5}, gen, 0.5f, 1.5f).set_requires_grad();
  Tensor beta = random_tensor({5}, gen).set_requires_grad();
  Tensor mean = random_tensor({5}, gen), var = random_tensor({5}, gen, 0.5f, 1.5f);
  Tensor fc = random_tensor({1, 5}, gen).set_requires_grad();
  Tensor fc_b = random_tensor({1}, gen).set_requires_grad();
  Tensor targets = Tensor::from_vector({4}, {1, 0, 0, 1});
  auto loss_of = [&](const Tensor& images, const Tensor& t) {
    Tensor h = conv2d(images, w, Tensor(), Conv2dOptions::symmetric(1));
    h = relu(batch_norm(h, gamma, beta, mean, var, false, BatchNormOptions::torch()));
    Tensor logits = linear(global_avg_pool(h), fc, fc_b);
    // bce is a mean over the batch: scale by the batch size to get a sum.
    return scale(bce_with_logits(logits, t), static_cast<float>(images.size(0)));
  };
  const std::vector<Tensor> params{w, gamma, beta, fc, fc_b};
  loss_of(x, targets).backward();
  std::vector<std::vector<float>> full;
  for (const Tensor& p : params) full.push_back(p.grad().to_vector());
  for (const Tensor& p : params) p.zero_grad();
  loss_of(x.slice(0, 0, 2).contiguous(), targets.slice(0, 0, 2).contiguous()).backward();
  loss_of(x.slice(0, 2, 4).contiguous(), targets.slice(0, 2, 4).contiguous()).backward();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(all_close(params[i].grad().to_vector(), full[i], 1e-5f, 1e-4f)) << "parameter " << i;
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor y;
  {
    NoGradGuard guard;
    y = scale(x, 2.0f);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_THROW(sum(y).backward(), engine::Error);
  EXPECT_TRUE(grad_enabled());
}

TEST(Autograd, SecondBackwardWithoutRetainGraphIsAClearError) {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor y = sum(scale(x, 2.0f));
  y.backward();
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
}

TEST(Autograd, RetainGraphAllowsASecondBackward) {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor y = sum(scale(x, 2.0f));
  y.backward(Tensor(), true);
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{4, 4}));
}

TEST(Autograd, NonScalarRootNeedsAGradient) {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  EXPECT_THROW(scale(x, 2.0f).backward(), engine::Error);
}

TEST(Autograd, DeepChainDoesNotRecurse) {
  // 20,000 nodes: the walk is iterative, so this must not overflow the stack.
  Tensor x = Tensor::from_vector({1}, {1}).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = scale(y, 1.0f);
  sum(y).backward();
  EXPECT_EQ(x.grad().item(), 1.0f);
}

// ---- In-place gradient sums ------------------------------------------------------------------------
// The engine sums a second contribution in place only into memory no one else references; a gradient
// handed to two inputs (add's backward) is shared until one of them is consumed.

TEST(Autograd, NonLeafGradientHandedToTwoInputsIsNeverMutatedByTheOthersSum) {
  Tensor la = Tensor::from_vector({3}, {1, 2, 3}).set_requires_grad();
  Tensor lb = Tensor::from_vector({3}, {4, 5, 6}).set_requires_grad();
  const Tensor a = scale(la, 1.0f), b = scale(lb, 1.0f);
  const Tensor t = scale(a, 3.0f);  // a's second use, whose backward runs after add's
  const Tensor s = add(a, b);       // backward hands the same dy to a and b
  add(sum(scale(s, 2.0f)), sum(t)).backward();
  EXPECT_EQ(la.grad().to_vector(), (std::vector<float>{5, 5, 5}));  // 2 + 3
  EXPECT_EQ(lb.grad().to_vector(), (std::vector<float>{2, 2, 2}));  // not 5: b's gradient was not summed into
}

// x [N, C] is both a slice of a concatenation and the input of a training-mode batch norm. In DenseNet's
// order (BN, then z, then the concatenation: backward visits the concatenation, z's producer, then BN)
// BN adds its dx straight into x's running gradient, the concatenation's slice that only the engine
// still holds once z's sibling slice is consumed; in the other order (z before BN) the slice is shared
// when BN runs and the sum is out of place. Either way the gradients are the out-of-place sums', bit for
// bit; in DenseNet's order BN's fresh dx and the sum's tensor are not allocated.
struct ConcatBnGrads {
  std::vector<float> x, z, gamma, beta;
  int64_t allocations = 0;  // host allocations during backward
};

ConcatBnGrads concat_and_bn_grads(bool densenet_order, bool out_of_place) {
  Generator gen(31);
  Tensor lx = test_support::random_tensor({64, 6}, gen).set_requires_grad();
  Tensor lz = test_support::random_tensor({64, 3}, gen).set_requires_grad();
  Tensor gamma = test_support::random_tensor({6}, gen).set_requires_grad();
  Tensor beta = test_support::random_tensor({6}, gen).set_requires_grad();
  const Tensor w = test_support::random_tensor({64, 9}, gen), v = test_support::random_tensor({64, 6}, gen);
  const Tensor mean = Tensor::zeros({6}), var = Tensor::ones({6});
  const Tensor x = scale(lx, 1.5f);
  Tensor z, h;
  if (densenet_order) {
    h = batch_norm(x, gamma, beta, mean, var, true, BatchNormOptions::torch());
    z = scale(lz, 0.5f);
  } else {
    z = scale(lz, 0.5f);
    h = batch_norm(x, gamma, beta, mean, var, true, BatchNormOptions::torch());
  }
  const Tensor y = concat_channels({x, z});  // [64, 9]
  // Weighted sums (a BN output's plain sum has no gradient).
  const Tensor loss = add(bce_with_logits(reshape(add(y, w), {64 * 9}), Tensor::zeros({64 * 9})),
                          bce_with_logits(reshape(add(h, v), {64 * 6}), Tensor::ones({64 * 6})));
  ConcatBnGrads g;
  {
    std::optional<OutOfPlaceGradientSumsGuard> guard;
    if (out_of_place) guard.emplace();
    const int64_t before = host_memory_stats().allocations;
    loss.backward();
    g.allocations = host_memory_stats().allocations - before;
  }
  g.x = lx.grad().to_vector();
  g.z = lz.grad().to_vector();
  g.gamma = gamma.grad().to_vector();
  g.beta = beta.grad().to_vector();
  return g;
}

TEST(Autograd, BatchNormAddsItsInputGradientIntoAConcatenationsSlice) {
  for (const bool densenet_order : {true, false}) {
    SCOPED_TRACE(densenet_order ? "DenseNet's order" : "the sibling slice still pending at BN");
    const ConcatBnGrads in_place = concat_and_bn_grads(densenet_order, false);
    const ConcatBnGrads out_of_place = concat_and_bn_grads(densenet_order, true);
    EXPECT_EQ(in_place.x, out_of_place.x);
    EXPECT_EQ(in_place.z, out_of_place.z);
    EXPECT_EQ(in_place.gamma, out_of_place.gamma);
    EXPECT_EQ(in_place.beta, out_of_place.beta);
    EXPECT_EQ(in_place.allocations, out_of_place.allocations - (densenet_order ? 2 : 0));
  }
}

TEST(Autograd, BatchNormGradientThroughTheSliceMatchesFiniteDifferences) {
  Generator gen(32);
  const Tensor w = test_support::random_tensor({8, 5}, gen);
  const auto f = [&w](const std::vector<Tensor>& in) {
    const Tensor x = scale(in[0], 1.0f);
    // DenseNet's order: BN's backward runs after the concatenation's and adds into x's slice.
    const Tensor h = batch_norm(x, in[2], Tensor(), Tensor::zeros({3}), Tensor::ones({3}), true, BatchNormOptions::torch());
    const Tensor y = concat_channels({x, in[1]});
    return add(bce_with_logits(reshape(add(y, w), {8 * 5}), Tensor::zeros({8 * 5})),
               bce_with_logits(reshape(h, {8 * 3}), Tensor::ones({8 * 3})));
  };
  Tensor x = test_support::random_tensor({8, 3}, gen).set_requires_grad();
  Tensor z = test_support::random_tensor({8, 2}, gen).set_requires_grad();
  Tensor gamma = test_support::random_away_from_zero({3}, gen).set_requires_grad();
  EXPECT_TRUE(test_support::gradcheck(f, {x, z, gamma}));
}

}  // namespace
