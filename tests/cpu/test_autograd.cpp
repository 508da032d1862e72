// The gradient rule: uses sum, leaves accumulate, half-batches add up to the full batch, no_grad records
// nothing, and misuse gives clear errors.
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

}  // namespace
