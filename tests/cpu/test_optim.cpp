// Parameter arenas and optimizer steps through the engine, against hand-computed values.
#include "support/gradcheck.h"

namespace {

using namespace engine;

struct TwoParams {
  Tensor a = Tensor::from_vector({1}, {1.0f}).set_requires_grad();
  Tensor b = Tensor::from_vector({1}, {-2.0f}).set_requires_grad();
  NamedTensors named() const { return {{"a", a}, {"b", b}}; }
  // Gradients (0.5, 1e-6) every step through the autograd engine: L = 0.5 a + 1e-6 b.
  void backward() const {
    add(scale(sum(a), 0.5f), scale(sum(b), 1e-6f)).backward();
  }
};

TEST(ParameterArena, ParametersAndGradientsLiveInTheArena) {
  TwoParams p;
  ParameterArena arena(p.named());
  EXPECT_EQ(arena.numel(), 2);
  EXPECT_EQ(p.a.data(), arena.values().data());
  EXPECT_EQ(p.b.data(), arena.values().data() + 1);
  EXPECT_EQ(p.b.item(), -2.0f);  // values moved in
  p.backward();
  p.backward();  // accumulates in the arena
  EXPECT_EQ(arena.grads().to_vector(), (std::vector<float>{1.0f, 2e-6f}));
  arena.zero_grad();
  EXPECT_EQ(p.a.grad().item(), 0.0f);
}

// Step 1 with gradient g: PyTorch moves by lr * g / (|g| + 1e-8); Keras by
// lr * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + 1e-7) with m = 0.1 g, v = 0.001 g^2.
// Values computed in double by hand from those formulas.
TEST(Adam, PytorchConventionFirstStep) {
  TwoParams p;
  ParameterArena arena(p.named());
  Adam adam(arena, Adam::pytorch(0.1f));
  p.backward();
  adam.step();
  EXPECT_FLOAT_EQ(p.a.item(), 1.0f - 0.09999999800000003f);
  EXPECT_FLOAT_EQ(p.b.item(), -2.0f - 0.09900990099009901f);
}

TEST(Adam, KerasConventionFirstStep) {
  TwoParams p;
  ParameterArena arena(p.named());
  Adam adam(arena, Adam::keras(0.1f));
  p.backward();
  adam.step();
  EXPECT_FLOAT_EQ(p.a.item(), 1.0f - 0.09999936754846803f);
  EXPECT_FLOAT_EQ(p.b.item(), -2.0f - 0.024025307335204228f);  // epsilon bites on small gradients
}

TEST(Adam, ConstantGradientMovesByLrEveryStepInThePytorchConvention) {
  // m_hat = g and v_hat = g^2 exactly for a constant gradient: every step moves lr * sign(g).
  TwoParams p;
  ParameterArena arena(p.named());
  Adam adam(arena, Adam::pytorch(0.1f));
  for (int step = 1; step <= 3; ++step) {
    arena.zero_grad();
    p.backward();
    adam.step();
    EXPECT_NEAR(p.a.item(), 1.0f - 0.1f * step, 1e-6f) << "step " << step;
  }
  EXPECT_EQ(adam.step_count(), 3);
}

TEST(Adam, DecoupledWeightDecayShrinksFirst) {
  TwoParams p;
  ParameterArena arena(p.named());
  kernels::AdamHyper h = Adam::pytorch(0.1f);
  h.weight_decay = 0.1f;
  h.decoupled_weight_decay = true;
  Adam adam(arena, h);
  p.backward();
  adam.step();
  // p = 1 - 0.1 * 0.1 * 1 = 0.99, then the Adam step of ~0.1.
  EXPECT_NEAR(p.a.item(), 0.99f - 0.1f, 1e-6f);
}

// The trainer's --weight-decay: either convention, with the decay switched to decoupled.
TEST(Adam, DecoupledWeightDecayKeepsTheConvention) {
  const kernels::AdamHyper keras = Adam::decoupled_weight_decay(Adam::keras(1e-3f), 0.25f);
  EXPECT_EQ(keras.convention, kernels::AdamConvention::keras);
  EXPECT_EQ(keras.eps, 1e-7f);
  EXPECT_EQ(keras.lr, 1e-3f);
  EXPECT_EQ(keras.weight_decay, 0.25f);
  EXPECT_TRUE(keras.decoupled_weight_decay);
  EXPECT_EQ(Adam::decoupled_weight_decay(Adam::pytorch(), 0.0f).convention, kernels::AdamConvention::pytorch);
}

TEST(Adam, CoupledWeightDecayAddsToTheGradient) {
  TwoParams p;
  ParameterArena arena(p.named());
  kernels::AdamHyper h = Adam::pytorch(0.1f);
  h.weight_decay = 1.0f;
  Adam adam(arena, h);
  p.backward();
  adam.step();
  // b: g' = 1e-6 + 1.0 * (-2) < 0, so step 1 moves b up by lr.
  EXPECT_NEAR(p.b.item(), -2.0f + 0.1f, 1e-6f);
}

TEST(Sgd, MomentumAndNesterovOverThreeSteps) {
  for (bool nesterov : {false, true}) {
    TwoParams p;
    ParameterArena arena(p.named());
    kernels::SgdHyper h;
    h.lr = 0.1f;
    h.momentum = 0.9f;
    h.nesterov = nesterov;
    Sgd sgd(arena, h);
    // g = 0.5: buf 0.5, 0.95, 1.355; plain p = 0.95, 0.855, 0.7195;
    // nesterov steps g + 0.9 buf = 0.95, 1.355, 1.7195: p = 0.905, 0.7695, 0.59755.
    const std::vector<float> expected =
        nesterov ? std::vector<float>{0.905f, 0.7695f, 0.59755f} : std::vector<float>{0.95f, 0.855f, 0.7195f};
    for (int step = 0; step < 3; ++step) {
      arena.zero_grad();
      p.backward();
      sgd.step();
      EXPECT_NEAR(p.a.item(), expected[step], 1e-6f) << "nesterov " << nesterov << " step " << step + 1;
    }
  }
}

}  // namespace
