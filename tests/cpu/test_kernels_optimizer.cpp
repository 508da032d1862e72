// CPU Adam / SGD updates (kernels/optimizer.h) against double-precision references of the
// formulas and hand-computed constants; the fused bf16 working copy (params_bf16) against the rounding
// of the updated parameters, bit for bit, skipped updates included.
// Tolerances: |actual - ref| <= atol + rtol * |ref|, stated per check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/optimizer.h"
#include "test_kernels_common.h"

namespace {

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
using kernels::AdamConvention;
using kernels::AdamHyper;
using kernels::SgdHyper;
namespace cpu = kernels::cpu;

// ------------------------------------------------------------------------------------------------
// Adam and SGD.

// Double-precision reference of one Adam step, straight from optimizer.h.
void adam_reference(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m,
                    std::vector<double>& v, int64_t t, const AdamHyper& h) {
  const double lr = h.lr, b1 = h.beta1, b2 = h.beta2, eps = h.eps, wd = h.weight_decay;
  const double bc1 = 1.0 - std::pow(b1, double(t)), bc2 = 1.0 - std::pow(b2, double(t));
  for (size_t i = 0; i < p.size(); ++i) {
    if (h.decoupled_weight_decay) p[i] -= lr * wd * p[i];
    const double gi = h.decoupled_weight_decay ? g[i] : g[i] + wd * p[i];
    m[i] = b1 * m[i] + (1.0 - b1) * gi;
    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
    if (h.convention == AdamConvention::pytorch) {
      p[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
    } else {
      const double alpha = lr * std::sqrt(bc2) / bc1;
      p[i] -= alpha * m[i] / (std::sqrt(v[i]) + eps);
    }
  }
}

// Step 1 against constants computed by hand. PyTorch: m_hat = g, v_hat = g^2, so
// p1 = p0 - lr * g / (|g| + eps). Keras: p1 = p0 - lr * g / (|g| + eps / sqrt(1 - b2)).
TEST(Adam, FirstStepMatchesHandComputedConstants) {
  const float g[] = {0.2f, -3e-9f, 4.0f};
  struct Case {
    AdamConvention convention;
    float eps;
    double expected[3];
  };
  const Case cases[] = {
      // lr 1e-3, eps 1e-8:
      // -1e-3 * 0.2 / 0.20000001; +1e-3 * 3e-9 / 1.3e-8; -1.25 - 1e-3 * 4 / 4.00000001
      {AdamConvention::pytorch, 1e-8f, {-9.99999950e-4, 2.30769231e-4, -1.25099999999975}},
      // lr 1e-3, eps 1e-7, eps / sqrt(0.001) = 3.16227766e-6:
      // -1e-3 * 0.2 / 0.20000316227766; +1e-3 * 3e-9 / 3.16527766e-6; -1.25 - 1e-3 * 4 / 4.00000316
      {AdamConvention::keras, 1e-7f, {-9.99984189e-4, 9.47784151e-7, -1.25099999920943}},
  };
  for (const Case& k : cases) {
    AdamHyper h;
    h.lr = 1e-3f;
    h.eps = k.eps;
    h.convention = k.convention;
    std::vector<float> p = {0.0f, 0.0f, -1.25f}, m(3, 0.0f), v(3, 0.0f);
    cpu::adam_update(3, p.data(), g, m.data(), v.data(), 1, h);
    for (int i = 0; i < 3; ++i) {
      // The float hyper-parameters (0.999f != 0.999) move the Keras numbers by ~1e-5 relative of
      // the eps term; the float result of p ~ 1 has an ulp of ~1e-7.
      EXPECT_TRUE(close(p[i], k.expected[i], 2e-7, 1e-5)) << "element " << i;
      EXPECT_TRUE(close(m[i], 0.1 * g[i], 0.0, 1e-6)) << i;
      EXPECT_TRUE(close(v[i], 0.001 * double(g[i]) * g[i], 0.0, 1e-4)) << i;
    }
  }
}

struct AdamCase {
  const char* name;
  AdamConvention convention;
  float weight_decay;
  bool decoupled;
};

void PrintTo(const AdamCase& c, std::ostream* os) { *os << c.name; }

class AdamSteps : public ::testing::TestWithParam<AdamCase> {};

TEST_P(AdamSteps, ThreeStepsMatchDoubleReference) {
  const AdamCase c = GetParam();
  AdamHyper h;
  h.lr = 1e-2f;
  h.eps = c.convention == AdamConvention::keras ? 1e-7f : 1e-8f;
  h.weight_decay = c.weight_decay;
  h.decoupled_weight_decay = c.decoupled;
  h.convention = c.convention;
  std::mt19937 rng(71);
  const int64_t n = 53;
  std::vector<float> p = uniform_vector(n, rng, -2.0f, 2.0f), m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pr(p.begin(), p.end()), mr(n, 0.0), vr(n, 0.0);
  for (int64_t t = 1; t <= 3; ++t) {
    std::vector<float> g = uniform_vector(n, rng, -1.0f, 1.0f);
    g[0] = 1e-9f * float(t);  // a gradient the size of eps
    cpu::adam_update(n, p.data(), g.data(), m.data(), v.data(), t, h);
    adam_reference(pr, std::vector<double>(g.begin(), g.end()), mr, vr, t, h);
  }
  for (int64_t i = 0; i < n; ++i) {
    // Float arithmetic on p ~ 2 (ulp 2.4e-7) over three steps of size ~1e-2.
    EXPECT_TRUE(close(p[i], pr[i], 5e-7, 1e-6)) << "p " << i;
    EXPECT_TRUE(close(m[i], mr[i], 1e-8, 1e-5)) << "m " << i;
    EXPECT_TRUE(close(v[i], vr[i], 1e-12, 1e-5)) << "v " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Conventions, AdamSteps,
    ::testing::Values(AdamCase{"pytorch", AdamConvention::pytorch, 0.0f, false},
                      AdamCase{"pytorch_l2", AdamConvention::pytorch, 0.05f, false},
                      AdamCase{"pytorch_decoupled", AdamConvention::pytorch, 0.05f, true},
                      AdamCase{"keras", AdamConvention::keras, 0.0f, false},
                      AdamCase{"keras_l2", AdamConvention::keras, 0.05f, false},
                      AdamCase{"keras_decoupled", AdamConvention::keras, 0.05f, true}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

// Two steps by hand, PyTorch convention, L2 against decoupled decay: lr 0.1, wd 0.5, eps 0, p0 = 1,
// g = 0.5 at both steps (b1 0.9, b2 0.999, so bc1 = 0.1, 0.19 and bc2 = 0.001, 0.001999).
//   L2:        g'1 = 0.5 + 0.5 * 1 = 1;  m_hat = g'1, v_hat = g'1^2, so p1 = 1 - 0.1 = 0.9
//              g'2 = 0.5 + 0.5 * 0.9 = 0.95;  m2 = 0.09 + 0.095 = 0.185;  v2 = 0.000999 + 0.0009025
//              p2 = 0.9 - 0.1 * (0.185 / 0.19) / sqrt(0.0019015 / 0.001999) = 0.80016649
//   decoupled: the Adam gradient is g itself (constant), so m_hat = 0.5, v_hat = 0.25 and the Adam
//              step is exactly lr = 0.1; the decay first multiplies p by 1 - lr * wd = 0.95:
//              p1 = 0.95 - 0.1 = 0.85;  p2 = 0.85 * 0.95 - 0.1 = 0.7075
TEST(Adam, L2AndDecoupledDecayDifferAsTheFormulasSay) {
  AdamHyper h;
  h.lr = 0.1f;
  h.eps = 0.0f;
  h.weight_decay = 0.5f;
  const float g = 0.5f;
  // L2.
  {
    float p = 1.0f, m = 0.0f, v = 0.0f;
    cpu::adam_update(1, &p, &g, &m, &v, 1, h);
    EXPECT_TRUE(close(p, 0.9, 1e-7, 1e-6));
    cpu::adam_update(1, &p, &g, &m, &v, 2, h);
    EXPECT_TRUE(close(p, 0.80016649, 1e-7, 1e-6));
  }
  h.decoupled_weight_decay = true;
  {
    float p = 1.0f, m = 0.0f, v = 0.0f;
    cpu::adam_update(1, &p, &g, &m, &v, 1, h);
    EXPECT_TRUE(close(p, 0.95 - 0.1, 1e-7, 1e-6));
    cpu::adam_update(1, &p, &g, &m, &v, 2, h);
    EXPECT_TRUE(close(p, 0.7075, 1e-7, 1e-6));
  }
}

// torch.optim.AdamW (PyTorch 1.13, foreach=False) itself: lr 0.01, weight_decay 0.1, eps 1e-8, p0 and three
// gradients as below; the parameters it printed after each step ("%.9g"):
//   p = torch.tensor([1.0, -0.5, 0.25, 2.0], requires_grad=True)
//   opt = torch.optim.AdamW([p], lr=0.01, weight_decay=0.1, eps=1e-8); p.grad = g; opt.step()
TEST(Adam, DecoupledDecayMatchesTorchAdamW) {
  AdamHyper h = {};
  h.lr = 0.01f;
  h.eps = 1e-8f;
  h.weight_decay = 0.1f;
  h.decoupled_weight_decay = true;
  std::vector<float> p = {1.0f, -0.5f, 0.25f, 2.0f}, m(4, 0.0f), v(4, 0.0f);
  const std::vector<std::vector<float>> grads = {{0.1f, -0.2f, 0.3f, 1e-3f}, {0.05f, 0.1f, -0.3f, 2e-3f}, {-0.2f, 0.0f, 0.3f, 0.0f}};
  const double torch_after[3][4] = {{0.989000022, -0.489500016, 0.239749998, 1.98800015},
                                    {0.978689253, -0.486347139, 0.240036562, 1.97636044},
                                    {0.979774177, -0.483801991, 0.236438602, 1.96692324}};
  for (int64_t t = 1; t <= 3; ++t) {
    cpu::adam_update(4, p.data(), grads[size_t(t - 1)].data(), m.data(), v.data(), t, h);
    for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(close(p[i], torch_after[t - 1][i], 1e-7, 2e-7)) << "step " << t << " " << i;
  }
  // The decay alone (zero gradients, so Adam's own step is 0): torch's param.mul_(1 - lr * wd) printed
  // 0.999000013, -0.499500006, 0.249750003, 1.99800003; Keras's p - (p * wd) * lr, rounded in float.
  const float p0[] = {1.0f, -0.5f, 0.25f, 2.0f}, torch_decayed[] = {0.999000013f, -0.499500006f, 0.249750003f, 1.99800003f};
  const float zero[4] = {};
  for (AdamConvention convention : {AdamConvention::pytorch, AdamConvention::keras}) {
    h.convention = convention;
    std::vector<float> q(p0, p0 + 4), mq(4, 0.0f), vq(4, 0.0f);
    cpu::adam_update(4, q.data(), zero, mq.data(), vq.data(), 1, h);
    for (size_t i = 0; i < 4; ++i) {
      const volatile float decay = p0[i] * h.weight_decay;  // volatile: rounded to float, as Keras does
      const float keras = p0[i] - decay * h.lr;
      EXPECT_EQ(q[i], convention == AdamConvention::pytorch ? torch_decayed[i] : keras) << i;
    }
  }
}

// Keras with eps_k = eps_p * sqrt(1 - b2^t) takes exactly PyTorch's step t (docs/derivations.md).
TEST(Adam, KerasEpsilonIsPytorchEpsilonTimesSqrtOfBiasCorrection) {
  std::mt19937 rng(73);
  const int64_t n = 31, t = 4;
  const std::vector<float> p0 = uniform_vector(n, rng, -1.0f, 1.0f);
  const std::vector<float> g = uniform_vector(n, rng, -1e-3f, 1e-3f);  // small: eps matters
  const std::vector<float> m0 = uniform_vector(n, rng, -1e-3f, 1e-3f);
  const std::vector<float> v0 = uniform_vector(n, rng, 0.0f, 1e-6f);
  AdamHyper pt;
  pt.lr = 1e-2f;
  pt.eps = 1e-3f;
  AdamHyper ke = pt;
  ke.convention = AdamConvention::keras;
  ke.eps = static_cast<float>(1e-3 * std::sqrt(1.0 - std::pow(double(pt.beta2), double(t))));
  std::vector<float> p1 = p0, m1 = m0, v1 = v0, p2 = p0, m2 = m0, v2 = v0;
  cpu::adam_update(n, p1.data(), g.data(), m1.data(), v1.data(), t, pt);
  cpu::adam_update(n, p2.data(), g.data(), m2.data(), v2.data(), t, ke);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_TRUE(close(p2[i] - p0[i], double(p1[i]) - p0[i], 1e-8, 1e-4)) << i;
  }
  // And a different eps does give a different step (the test can fail).
  ke.eps = pt.eps;
  std::vector<float> p3 = p0, m3 = m0, v3 = v0;
  cpu::adam_update(n, p3.data(), g.data(), m3.data(), v3.data(), t, ke);
  EXPECT_GT(std::fabs((p3[0] - p0[0]) - (p1[0] - p0[0])), 1e-6);
}

TEST(Adam, LargeArenaMatchesReference) {
  std::mt19937 rng(79);
  const int64_t n = 40001;  // above the threading threshold
  AdamHyper h;
  h.weight_decay = 1e-2f;
  std::vector<float> p = uniform_vector(n, rng, -1.0f, 1.0f), m(n, 0.0f), v(n, 0.0f);
  const std::vector<float> g = uniform_vector(n, rng, -1.0f, 1.0f);
  std::vector<double> pr(p.begin(), p.end()), mr(n, 0.0), vr(n, 0.0);
  for (int64_t t = 1; t <= 2; ++t) {
    cpu::adam_update(n, p.data(), g.data(), m.data(), v.data(), t, h);
    adam_reference(pr, std::vector<double>(g.begin(), g.end()), mr, vr, t, h);
  }
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(close(p[i], pr[i], 2e-7, 1e-6)) << i;
}

void sgd_reference(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& buf,
                   const SgdHyper& h) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double gi = g[i] + double(h.weight_decay) * p[i];
    buf[i] = double(h.momentum) * buf[i] + gi;
    p[i] -= double(h.lr) * (h.nesterov ? gi + double(h.momentum) * buf[i] : buf[i]);
  }
}

TEST(Sgd, ThreeStepsWithMomentumAndNesterov) {
  for (bool nesterov : {false, true}) {
    SgdHyper h;
    h.lr = 0.05f;
    h.momentum = 0.9f;
    h.weight_decay = 1e-2f;
    h.nesterov = nesterov;
    std::mt19937 rng(83);
    const int64_t n = 45;
    std::vector<float> p = uniform_vector(n, rng, -1.0f, 1.0f), buf(n, 0.0f);
    std::vector<double> pr(p.begin(), p.end()), br(n, 0.0);
    for (int step = 0; step < 3; ++step) {
      const std::vector<float> g = uniform_vector(n, rng, -1.0f, 1.0f);
      cpu::sgd_update(n, p.data(), g.data(), buf.data(), h);
      sgd_reference(pr, std::vector<double>(g.begin(), g.end()), br, h);
    }
    // The buffer sums terms up to ~3 that partly cancel: float rounding of ~2.4e-7 per term.
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_TRUE(close(p[i], pr[i], 5e-7, 1e-6)) << "nesterov " << nesterov << " p " << i;
      EXPECT_TRUE(close(buf[i], br[i], 5e-7, 1e-6)) << "nesterov " << nesterov << " buf " << i;
    }
  }
}

// By hand: lr 0.1, mu 0.5, p0 = 1, g = 1 each step, no decay.
//   plain:    buf 1, 1.5, 1.75;       p 0.9, 0.75, 0.575
//   nesterov: buf 1, 1.5, 1.75; steps 1.5, 1.75, 1.875: p 0.85, 0.675, 0.4875
TEST(Sgd, HandComputedSteps) {
  const float g = 1.0f;
  const double plain[] = {0.9, 0.75, 0.575}, nest[] = {0.85, 0.675, 0.4875};
  for (bool nesterov : {false, true}) {
    SgdHyper h;
    h.lr = 0.1f;
    h.momentum = 0.5f;
    h.nesterov = nesterov;
    float p = 1.0f, buf = 0.0f;
    for (int s = 0; s < 3; ++s) {
      cpu::sgd_update(1, &p, &g, &buf, h);
      EXPECT_TRUE(close(p, nesterov ? nest[s] : plain[s], 1e-7, 1e-6)) << nesterov << " " << s;
    }
    EXPECT_TRUE(close(buf, 1.75, 0.0, 1e-7));
  }
  // No momentum: the buffer is not used and may be null.
  SgdHyper h;
  h.lr = 0.1f;
  h.weight_decay = 0.5f;
  float p = 2.0f;
  cpu::sgd_update(1, &p, &g, nullptr, h);
  EXPECT_TRUE(close(p, 2.0 - 0.1 * (1.0 + 0.5 * 2.0), 1e-7, 1e-6));
}

// ------------------------------------------------------------------------------------------------
// The bf16 working copy written in the update's pass.

// One fused update (Adam or SGD) of the arena p with the given flag and bf16 output (both nullable).
struct FusedCase {
  const char* name;
  bool adam;
  AdamHyper adam_hyper;
  SgdHyper sgd_hyper;
};

void PrintTo(const FusedCase& c, std::ostream* os) { *os << c.name; }

FusedCase adam_case(const char* name, AdamConvention convention, float wd, bool decoupled) {
  FusedCase c{name, true, {}, {}};
  c.adam_hyper.lr = 1e-2f;
  c.adam_hyper.eps = convention == AdamConvention::keras ? 1e-7f : 1e-8f;
  c.adam_hyper.convention = convention;
  c.adam_hyper.weight_decay = wd;
  c.adam_hyper.decoupled_weight_decay = decoupled;
  return c;
}

FusedCase sgd_case(const char* name, float momentum, float wd, bool nesterov) {
  FusedCase c{name, false, {}, {}};
  c.sgd_hyper.lr = 0.05f;
  c.sgd_hyper.momentum = momentum;
  c.sgd_hyper.weight_decay = wd;
  c.sgd_hyper.nesterov = nesterov;
  return c;
}

struct Arena {
  std::vector<float> p, m, v;  // v unused by SGD; m is its momentum buffer
};

void fused_update(const FusedCase& c, Arena& a, const std::vector<float>& g, int64_t t, const float* skip,
                  kernels::BFloat16* out) {
  const int64_t n = int64_t(a.p.size());
  if (c.adam)
    cpu::adam_update(n, a.p.data(), g.data(), a.m.data(), a.v.data(), t, c.adam_hyper, skip, out);
  else
    cpu::sgd_update(n, a.p.data(), g.data(), a.m.data(), c.sgd_hyper, skip, out);
}

std::vector<uint16_t> bits_of(const std::vector<kernels::BFloat16>& b) {
  std::vector<uint16_t> bits;
  for (const kernels::BFloat16& x : b) bits.push_back(x.bits);
  return bits;
}

std::vector<uint16_t> rounded(const std::vector<float>& p) {
  std::vector<uint16_t> bits;
  for (float x : p) bits.push_back(kernels::bf16_bits_from_f32(x));
  return bits;
}

class FusedBf16Copy : public ::testing::TestWithParam<FusedCase> {};

// Over three steps, on an arena above the threading threshold: the copy is the rounding of the new
// parameters bit for bit, and asking for it changes nothing else (parameters and state bit-equal to the
// update without it). Some parameters start on bf16 rounding ties, near the largest finite bf16, subnormal
// or signed zero.
TEST_P(FusedBf16Copy, IsTheRoundingOfTheUpdatedParameters) {
  const FusedCase c = GetParam();
  std::mt19937 rng(97);
  const int64_t n = 40003;
  Arena with{uniform_vector(n, rng, -2.0f, 2.0f), uniform_vector(n, rng, -0.1f, 0.1f), uniform_vector(n, rng, 0.0f, 1e-2f)};
  const float specials[] = {1.00390625f, -1.01171875f, 3.0e38f, -3.3e38f, 1e-39f, 0.0f, -0.0f, 65536.5f};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; ++i) with.p[i] = specials[i];
  Arena without = with;
  std::vector<kernels::BFloat16> copy(size_t(n), kernels::BFloat16::from_bits(0xDEAD));
  for (int64_t t = 1; t <= 3; ++t) {
    std::vector<float> g = uniform_vector(n, rng, -1.0f, 1.0f);
    g[0] = 0.0f;  // a parameter Adam barely moves
    fused_update(c, with, g, t, nullptr, copy.data());
    fused_update(c, without, g, t, nullptr, nullptr);
    ASSERT_EQ(bits_of(copy), rounded(with.p)) << "step " << t;
    ASSERT_EQ(with.p, without.p) << "step " << t;
    ASSERT_EQ(with.m, without.m) << "step " << t;
    ASSERT_EQ(with.v, without.v) << "step " << t;
  }
}

// The skip flag: a non-zero flag leaves the parameters, the state and the copy as they were; a zero
// flag updates all three.
TEST_P(FusedBf16Copy, ASkippedUpdateLeavesTheCopy) {
  const FusedCase c = GetParam();
  std::mt19937 rng(101);
  const int64_t n = 257;
  Arena a{uniform_vector(n, rng, -1.0f, 1.0f), uniform_vector(n, rng, -0.1f, 0.1f), uniform_vector(n, rng, 0.0f, 1e-2f)};
  const std::vector<float> g = uniform_vector(n, rng, -1.0f, 1.0f);
  std::vector<kernels::BFloat16> copy(size_t(n), kernels::BFloat16::from_bits(0x1234));
  const Arena before = a;
  const float skip = 1.0f, go = 0.0f;
  fused_update(c, a, g, 1, &skip, copy.data());
  EXPECT_EQ(a.p, before.p);
  EXPECT_EQ(a.m, before.m);
  EXPECT_EQ(a.v, before.v);
  EXPECT_EQ(bits_of(copy), std::vector<uint16_t>(size_t(n), 0x1234)) << "the copy is not written";
  fused_update(c, a, g, 1, &go, copy.data());
  EXPECT_NE(a.p, before.p);
  EXPECT_EQ(bits_of(copy), rounded(a.p));
}

INSTANTIATE_TEST_SUITE_P(
    Optimizers, FusedBf16Copy,
    ::testing::Values(adam_case("adam_pytorch", AdamConvention::pytorch, 0.0f, false),
                      adam_case("adam_pytorch_l2", AdamConvention::pytorch, 0.05f, false),
                      adam_case("adam_keras", AdamConvention::keras, 0.0f, false),
                      adam_case("adamw", AdamConvention::pytorch, 0.05f, true),
                      adam_case("adamw_keras", AdamConvention::keras, 0.05f, true),
                      sgd_case("sgd", 0.0f, 0.0f, false), sgd_case("sgd_momentum_wd", 0.9f, 1e-2f, false),
                      sgd_case("sgd_nesterov", 0.9f, 0.0f, true)),
    [](const auto& test_info) { return std::string(test_info.param.name); });

}  // namespace
