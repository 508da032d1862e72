// CPU reference kernels: batch norm, elementwise, BCE-with-logits loss, Adam / SGD updates.
// Each kernel is checked against a naive double-precision re-implementation of its formula; the
// batch norm and BCE backwards are also checked against central finite differences of a double
// forward, so the gradient formulas themselves are tested, not only their transcription. Matrices
// are row-strided (ld > cols) with NaN in the gap columns: a kernel that reads the gap produces
// NaN, one that writes it is caught by the gap check.
// Tolerances: |actual - ref| <= atol + rtol * |ref|, stated per check.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/optimizer.h"

namespace {

using kernels::AdamConvention;
using kernels::AdamHyper;
using kernels::SgdHyper;
namespace cpu = kernels::cpu;

const float kPoison = std::numeric_limits<float>::quiet_NaN();

// A row-major [rows, cols] matrix with row stride ld; the gap columns hold kPoison.
struct Strided {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> data;

  Strided(int64_t r, int64_t c, int64_t l)
      : rows(r), cols(c), ld(l), data(static_cast<size_t>(r * l), kPoison) {}
  float& at(int64_t r, int64_t c) { return data[r * ld + c]; }
  float at(int64_t r, int64_t c) const { return data[r * ld + c]; }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
};

void fill_uniform(Strided& m, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; ++c) m.at(r, c) = dist(rng);
}

std::vector<float> uniform_vector(int64_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// The gap columns still hold the poison, bit for bit.
void expect_gaps_untouched(const Strided& m, const std::string& what) {
  uint32_t poison_bits = 0;
  std::memcpy(&poison_bits, &kPoison, sizeof poison_bits);
  int64_t bad = 0;
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = m.cols; c < m.ld; ++c) {
      uint32_t bits = 0;
      std::memcpy(&bits, &m.data[r * m.ld + c], sizeof bits);
      bad += bits != poison_bits;
    }
  EXPECT_EQ(bad, 0) << what << ": gap columns were written";
}

// |actual - ref| <= atol + rtol * |ref| (and actual finite).
::testing::AssertionResult close(double actual, double ref, double atol, double rtol) {
  if (std::isfinite(actual) && std::fabs(actual - ref) <= atol + rtol * std::fabs(ref))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "actual " << actual << " vs ref " << ref << " (diff "
                                       << actual - ref << ", atol " << atol << ", rtol " << rtol
                                       << ")";
}

// ------------------------------------------------------------------------------------------------
// Batch norm: naive double reference.

struct BnStats {
  std::vector<double> mean, var;  // biased variance
};

BnStats bn_stats(const Strided& x) {
  BnStats s;
  s.mean.assign(static_cast<size_t>(x.cols), 0.0);
  s.var.assign(static_cast<size_t>(x.cols), 0.0);
  for (int64_t c = 0; c < x.cols; ++c) {
    double acc = 0.0;
    for (int64_t r = 0; r < x.rows; ++r) acc += x.at(r, c);
    s.mean[c] = acc / double(x.rows);
    double sq = 0.0;
    for (int64_t r = 0; r < x.rows; ++r) sq += (x.at(r, c) - s.mean[c]) * (x.at(r, c) - s.mean[c]);
    s.var[c] = sq / double(x.rows);
  }
  return s;
}

// Training-mode forward in double on a dense [rows, cols] array: y = gamma * xhat + beta.
std::vector<double> bn_forward_double(int64_t rows, int64_t cols, const std::vector<double>& x,
                                      const std::vector<double>& gamma,
                                      const std::vector<double>& beta, double eps) {
  std::vector<double> y(x.size());
  for (int64_t c = 0; c < cols; ++c) {
    double mean = 0.0;
    for (int64_t r = 0; r < rows; ++r) mean += x[r * cols + c];
    mean /= double(rows);
    double var = 0.0;
    for (int64_t r = 0; r < rows; ++r) var += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
    var /= double(rows);
    const double invstd = 1.0 / std::sqrt(var + eps);
    for (int64_t r = 0; r < rows; ++r)
      y[r * cols + c] = gamma[c] * (x[r * cols + c] - mean) * invstd + beta[c];
  }
  return y;
}

struct BnCase {
  const char* name;
  float momentum;
  bool unbiased;
  float eps;
};

void PrintTo(const BnCase& c, std::ostream* os) { *os << c.name; }

class BatchNormForwardTraining : public ::testing::TestWithParam<BnCase> {};

TEST_P(BatchNormForwardTraining, MatchesDoubleReference) {
  const BnCase p = GetParam();
  std::mt19937 rng(1234);
  const int64_t rows = 3 * 5 * 7, channels = 13;  // N=3, H=5, W=7
  Strided x(rows, channels, 17), y(rows, channels, 19);
  fill_uniform(x, rng, -2.0f, 2.0f);
  // Offset and scale differ per channel (a large mean stresses the variance computation).
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < rows; ++r) x.at(r, c) = x.at(r, c) * (0.5f + 0.25f * c) + 10.0f * c;
  const Strided x_before = x;
  const std::vector<float> gamma = uniform_vector(channels, rng, 0.5f, 1.5f);
  const std::vector<float> beta = uniform_vector(channels, rng, -0.5f, 0.5f);
  std::vector<float> running_mean = uniform_vector(channels, rng, -1.0f, 1.0f);
  std::vector<float> running_var = uniform_vector(channels, rng, 0.5f, 2.0f);
  const std::vector<float> running_mean0 = running_mean, running_var0 = running_var;
  std::vector<float> saved_mean(channels, kPoison), saved_invstd(channels, kPoison);

  cpu::batch_norm_forward_training(rows, channels, x.ptr(), x.ld, gamma.data(), beta.data(), p.eps,
                                   y.ptr(), y.ld, saved_mean.data(), saved_invstd.data(),
                                   running_mean.data(), running_var.data(), p.momentum,
                                   p.unbiased);

  const BnStats s = bn_stats(x);
  for (int64_t c = 0; c < channels; ++c) {
    const double invstd = 1.0 / std::sqrt(s.var[c] + p.eps);
    // Statistics: float rounding of a double result.
    EXPECT_TRUE(close(saved_mean[c], s.mean[c], 1e-6, 1e-6)) << "mean c=" << c;
    EXPECT_TRUE(close(saved_invstd[c], invstd, 0.0, 1e-6)) << "invstd c=" << c;
    const double batch_var = p.unbiased ? s.var[c] * rows / (rows - 1.0) : s.var[c];
    const double rm = (1.0 - p.momentum) * running_mean0[c] + double(p.momentum) * s.mean[c];
    const double rv = (1.0 - p.momentum) * running_var0[c] + double(p.momentum) * batch_var;
    EXPECT_TRUE(close(running_mean[c], rm, 1e-6, 1e-6)) << "running_mean c=" << c;
    EXPECT_TRUE(close(running_var[c], rv, 1e-6, 1e-6)) << "running_var c=" << c;
    for (int64_t r = 0; r < rows; ++r) {
      const double ref = gamma[c] * (x.at(r, c) - s.mean[c]) * invstd + beta[c];
      // |x - mean| reaches ~70 here: float rounding of x - mean is ~1e-5 relative to x.
      EXPECT_TRUE(close(y.at(r, c), ref, 2e-5, 1e-5)) << "y r=" << r << " c=" << c;
    }
  }
  expect_gaps_untouched(y, "y");
  EXPECT_EQ(0, std::memcmp(x.ptr(), x_before.ptr(), x.data.size() * sizeof(float)))
      << "x (gap included) is unchanged";
}

INSTANTIATE_TEST_SUITE_P(Conventions, BatchNormForwardTraining,
                         ::testing::Values(BnCase{"keras", 0.01f, false, 1.001e-5f},
                                           BnCase{"pytorch", 0.1f, true, 1e-5f}),
                         [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(BatchNorm, ForwardTrainingNullGammaBetaAndNullRunningStats) {
  std::mt19937 rng(7);
  const int64_t rows = 41, channels = 6;
  Strided x(rows, channels, 9), y(rows, channels, 8);
  fill_uniform(x, rng, -3.0f, 1.0f);
  const float eps = 1e-3f;
  std::vector<float> saved_mean(channels), saved_invstd(channels);
  cpu::batch_norm_forward_training(rows, channels, x.ptr(), x.ld, nullptr, nullptr, eps, y.ptr(),
                                   y.ld, saved_mean.data(), saved_invstd.data(), nullptr, nullptr,
                                   0.1f, true);
  const BnStats s = bn_stats(x);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < rows; ++r) {
      const double ref = (x.at(r, c) - s.mean[c]) / std::sqrt(s.var[c] + eps);  // gamma 1, beta 0
      EXPECT_TRUE(close(y.at(r, c), ref, 1e-5, 1e-5)) << "r=" << r << " c=" << c;
    }
  expect_gaps_untouched(y, "y");
}

TEST(BatchNorm, SingleRowUsesBiasedVarianceInsteadOfDividingByZero) {
  const int64_t channels = 3;
  Strided x(1, channels, 4), y(1, channels, 4);
  x.at(0, 0) = 1.5f, x.at(0, 1) = -2.0f, x.at(0, 2) = 0.25f;
  const std::vector<float> beta = {0.5f, -0.5f, 2.0f};
  std::vector<float> running_mean = {0.0f, 1.0f, 2.0f}, running_var = {1.0f, 2.0f, 3.0f};
  std::vector<float> saved_mean(channels), saved_invstd(channels);
  cpu::batch_norm_forward_training(1, channels, x.ptr(), x.ld, nullptr, beta.data(), 1e-5f,
                                   y.ptr(), y.ld, saved_mean.data(), saved_invstd.data(),
                                   running_mean.data(), running_var.data(), 0.1f, true);
  for (int64_t c = 0; c < channels; ++c) {
    EXPECT_EQ(y.at(0, c), beta[c]);  // xhat == 0 exactly
    EXPECT_EQ(saved_mean[c], x.at(0, c));
    EXPECT_TRUE(close(saved_invstd[c], 1.0 / std::sqrt(1e-5), 0.0, 1e-6));
    // var = 0 (biased): running_var = 0.9 * running_var.
    EXPECT_TRUE(close(running_var[c], 0.9 * (c + 1.0), 1e-7, 1e-6)) << c;
    EXPECT_TRUE(close(running_mean[c], 0.9 * c + 0.1 * x.at(0, c), 1e-7, 1e-6)) << c;
  }
}

TEST(BatchNorm, ForwardEvalMatchesDoubleReference) {
  std::mt19937 rng(11);
  const int64_t rows = 2 * 3 * 5, channels = 7;
  Strided x(rows, channels, 10), y(rows, channels, 11);
  fill_uniform(x, rng, -2.0f, 2.0f);
  const std::vector<float> gamma = uniform_vector(channels, rng, 0.5f, 1.5f);
  const std::vector<float> beta = uniform_vector(channels, rng, -0.5f, 0.5f);
  const std::vector<float> rmean = uniform_vector(channels, rng, -1.0f, 1.0f);
  const std::vector<float> rvar = uniform_vector(channels, rng, 0.1f, 2.0f);
  const float eps = 1e-3f;
  for (bool with_affine : {true, false}) {
    cpu::batch_norm_forward_eval(rows, channels, x.ptr(), x.ld,
                                 with_affine ? gamma.data() : nullptr,
                                 with_affine ? beta.data() : nullptr, rmean.data(), rvar.data(),
                                 eps, y.ptr(), y.ld);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) {
        const double g = with_affine ? gamma[c] : 1.0, b = with_affine ? beta[c] : 0.0;
        const double ref = g * (x.at(r, c) - rmean[c]) / std::sqrt(double(rvar[c]) + eps) + b;
        EXPECT_TRUE(close(y.at(r, c), ref, 1e-5, 1e-5)) << "r=" << r << " c=" << c;
      }
    expect_gaps_untouched(y, "y");
  }
}

// Inputs shared by the backward tests.
struct BnBackwardSetup {
  int64_t rows, channels;
  float eps;
  Strided x, dy;
  std::vector<float> gamma, beta, saved_mean, saved_invstd;

  BnBackwardSetup(int64_t r, int64_t c, uint32_t seed)
      : rows(r), channels(c), eps(1e-3f), x(r, c, c + 3), dy(r, c, c + 2) {
    std::mt19937 rng(seed);
    fill_uniform(x, rng, -2.0f, 3.0f);
    fill_uniform(dy, rng, -1.0f, 1.0f);
    gamma = uniform_vector(c, rng, 0.5f, 1.5f);
    beta = uniform_vector(c, rng, -0.5f, 0.5f);
    saved_mean.resize(c);
    saved_invstd.resize(c);
    Strided y(r, c, c);
    cpu::batch_norm_forward_training(r, c, x.ptr(), x.ld, gamma.data(), beta.data(), eps, y.ptr(),
                                     y.ld, saved_mean.data(), saved_invstd.data(), nullptr,
                                     nullptr, 0.1f, false);
  }
};

TEST(BatchNorm, BackwardTrainingMatchesNaiveFormula) {
  BnBackwardSetup s(3 * 4 * 5, 9, 21);
  const int64_t rows = s.rows, channels = s.channels;
  const BnStats st = bn_stats(s.x);

  for (bool accumulate : {false, true}) {
    Strided dx(rows, channels, channels + 4);
    std::mt19937 rng(99);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    std::vector<float> dgamma = uniform_vector(channels, rng, -1.0f, 1.0f);
    std::vector<float> dbeta = uniform_vector(channels, rng, -1.0f, 1.0f);
    const std::vector<float> dgamma0 = dgamma, dbeta0 = dbeta;

    cpu::batch_norm_backward_training(rows, channels, s.x.ptr(), s.x.ld, s.dy.ptr(), s.dy.ld,
                                      s.gamma.data(), s.saved_mean.data(), s.saved_invstd.data(),
                                      dx.ptr(), dx.ld, accumulate, dgamma.data(), dbeta.data());

    for (int64_t c = 0; c < channels; ++c) {
      const double invstd = 1.0 / std::sqrt(st.var[c] + s.eps);
      double sdy = 0.0, sdyx = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        const double xhat = (s.x.at(r, c) - st.mean[c]) * invstd;
        sdy += s.dy.at(r, c);
        sdyx += s.dy.at(r, c) * xhat;
      }
      // dgamma/dbeta always accumulate.
      EXPECT_TRUE(close(dbeta[c], dbeta0[c] + sdy, 1e-5, 1e-5)) << "dbeta c=" << c;
      EXPECT_TRUE(close(dgamma[c], dgamma0[c] + sdyx, 1e-5, 1e-5)) << "dgamma c=" << c;
      for (int64_t r = 0; r < rows; ++r) {
        const double xhat = (s.x.at(r, c) - st.mean[c]) * invstd;
        const double g = s.gamma[c] * invstd * (s.dy.at(r, c) - sdy / rows - xhat * sdyx / rows);
        const double ref = accumulate ? dx0.at(r, c) + g : g;
        EXPECT_TRUE(close(dx.at(r, c), ref, 1e-5, 1e-5)) << "dx r=" << r << " c=" << c;
      }
    }
    expect_gaps_untouched(dx, "dx");
  }
}

// dL/dx, dL/dgamma, dL/dbeta for L = sum(dy * y(x)), by central differences of the double forward.
// This checks the batch-norm gradient formula itself (the mean and variance depend on x).
TEST(BatchNorm, BackwardTrainingMatchesFiniteDifferences) {
  BnBackwardSetup s(23, 5, 5);
  const int64_t rows = s.rows, cols = s.channels;
  std::vector<double> x(rows * cols), dy(rows * cols), gamma(s.gamma.begin(), s.gamma.end()),
      beta(s.beta.begin(), s.beta.end());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      x[r * cols + c] = s.x.at(r, c);
      dy[r * cols + c] = s.dy.at(r, c);
    }
  auto loss = [&](const std::vector<double>& xv, const std::vector<double>& gv,
                  const std::vector<double>& bv) {
    const std::vector<double> y = bn_forward_double(rows, cols, xv, gv, bv, s.eps);
    double l = 0.0;
    for (size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
    return l;
  };
  const double h = 1e-5;
  auto central = [&](std::vector<double>& v, size_t i, auto&& f) {
    const double saved = v[i];
    v[i] = saved + h;
    const double up = f();
    v[i] = saved - h;
    const double down = f();
    v[i] = saved;
    return (up - down) / (2 * h);
  };
  auto l_of_all = [&] { return loss(x, gamma, beta); };

  Strided dx(rows, cols, cols + 1);
  std::vector<float> dgamma(cols, 0.0f), dbeta(cols, 0.0f);
  cpu::batch_norm_backward_training(rows, cols, s.x.ptr(), s.x.ld, s.dy.ptr(), s.dy.ld,
                                    s.gamma.data(), s.saved_mean.data(), s.saved_invstd.data(),
                                    dx.ptr(), dx.ld, false, dgamma.data(), dbeta.data());
  // The double forward is exact to ~1e-10 here; the kernel works in float (relative ~1e-6 of the
  // terms that cancel in dx, which are ~gamma * invstd ~ 1).
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_TRUE(close(dx.at(r, c), central(x, r * cols + c, l_of_all), 2e-5, 1e-4))
          << "dx r=" << r << " c=" << c;
  for (int64_t c = 0; c < cols; ++c) {
    EXPECT_TRUE(close(dgamma[c], central(gamma, c, l_of_all), 1e-5, 1e-4)) << "dgamma " << c;
    EXPECT_TRUE(close(dbeta[c], central(beta, c, l_of_all), 1e-5, 1e-4)) << "dbeta " << c;
  }
  expect_gaps_untouched(dx, "dx");
}

TEST(BatchNorm, BackwardTrainingNullGammaAndOnlyParameterGradients) {
  BnBackwardSetup s(31, 4, 8);
  const int64_t rows = s.rows, channels = s.channels;
  // gamma == null behaves as gamma == 1.
  std::vector<float> ones(channels, 1.0f);
  Strided dx_null(rows, channels, channels + 2), dx_ones(rows, channels, channels + 2);
  cpu::batch_norm_backward_training(rows, channels, s.x.ptr(), s.x.ld, s.dy.ptr(), s.dy.ld, nullptr,
                                    s.saved_mean.data(), s.saved_invstd.data(), dx_null.ptr(),
                                    dx_null.ld, false, nullptr, nullptr);
  cpu::batch_norm_backward_training(rows, channels, s.x.ptr(), s.x.ld, s.dy.ptr(), s.dy.ld,
                                    ones.data(), s.saved_mean.data(), s.saved_invstd.data(),
                                    dx_ones.ptr(), dx_ones.ld, false, nullptr, nullptr);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) ASSERT_EQ(dx_null.at(r, c), dx_ones.at(r, c));
  expect_gaps_untouched(dx_null, "dx");

  // dx == null: parameter gradients only, the same values as with dx.
  std::vector<float> dg1(channels, 0.5f), db1(channels, -0.5f), dg2 = dg1, db2 = db1;
  cpu::batch_norm_backward_training(rows, channels, s.x.ptr(), s.x.ld, s.dy.ptr(), s.dy.ld,
                                    s.gamma.data(), s.saved_mean.data(), s.saved_invstd.data(),
                                    nullptr, 0, false, dg1.data(), db1.data());
  cpu::batch_norm_backward_training(rows, channels, s.x.ptr(), s.x.ld, s.dy.ptr(), s.dy.ld,
                                    s.gamma.data(), s.saved_mean.data(), s.saved_invstd.data(),
                                    dx_ones.ptr(), dx_ones.ld, false, dg2.data(), db2.data());
  EXPECT_EQ(dg1, dg2);
  EXPECT_EQ(db1, db2);
  EXPECT_NE(dg1, std::vector<float>(channels, 0.5f));
}

TEST(BatchNorm, BackwardEvalTreatsStatisticsAsConstants) {
  std::mt19937 rng(31);
  const int64_t rows = 29, channels = 6;
  Strided x(rows, channels, 8), dy(rows, channels, 9);
  fill_uniform(x, rng, -2.0f, 2.0f);
  fill_uniform(dy, rng, -1.0f, 1.0f);
  const std::vector<float> gamma = uniform_vector(channels, rng, 0.5f, 1.5f);
  const std::vector<float> rmean = uniform_vector(channels, rng, -1.0f, 1.0f);
  const std::vector<float> rvar = uniform_vector(channels, rng, 0.1f, 2.0f);
  const float eps = 1e-3f;
  for (bool accumulate : {false, true}) {
    Strided dx(rows, channels, 7);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    std::vector<float> dgamma(channels, 0.25f), dbeta(channels, -0.25f);
    cpu::batch_norm_backward_eval(rows, channels, x.ptr(), x.ld, dy.ptr(), dy.ld, gamma.data(),
                                  rmean.data(), rvar.data(), eps, dx.ptr(), dx.ld, accumulate,
                                  dgamma.data(), dbeta.data());
    for (int64_t c = 0; c < channels; ++c) {
      const double invstd = 1.0 / std::sqrt(double(rvar[c]) + eps);
      double sdy = 0.0, sdyx = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        sdy += dy.at(r, c);
        sdyx += dy.at(r, c) * (x.at(r, c) - rmean[c]) * invstd;
        const double g = dy.at(r, c) * gamma[c] * invstd;
        EXPECT_TRUE(close(dx.at(r, c), accumulate ? dx0.at(r, c) + g : g, 1e-6, 1e-5))
            << "dx r=" << r << " c=" << c;
      }
      EXPECT_TRUE(close(dbeta[c], -0.25 + sdy, 1e-5, 1e-5)) << "dbeta " << c;
      EXPECT_TRUE(close(dgamma[c], 0.25 + sdyx, 1e-5, 1e-5)) << "dgamma " << c;
    }
    expect_gaps_untouched(dx, "dx");
  }
}

// Same bits for 1, 2 and 3 threads, on a size large enough for the threaded paths.
TEST(BatchNorm, ResultsDoNotDependOnThreadCount) {
  const int threads_before = cpu::num_threads();
  std::mt19937 rng(3);
  const int64_t rows = 4099, channels = 17;
  Strided x(rows, channels, 19), dy(rows, channels, 18);
  fill_uniform(x, rng, -1.0f, 5.0f);
  fill_uniform(dy, rng, -1.0f, 1.0f);
  const std::vector<float> gamma = uniform_vector(channels, rng, 0.5f, 1.5f);
  const std::vector<float> beta = uniform_vector(channels, rng, -0.5f, 0.5f);
  struct Out {
    std::vector<float> y, mean, invstd, rm, rv, dx, dgamma, dbeta;
  };
  auto run = [&](int threads) {
    cpu::set_num_threads(threads);
    Out o;
    o.y.assign(rows * channels, 0.0f);
    o.dx.assign(rows * channels, 0.0f);
    o.mean.assign(channels, 0.0f);
    o.invstd.assign(channels, 0.0f);
    o.rm.assign(channels, 0.0f);
    o.rv.assign(channels, 1.0f);
    o.dgamma.assign(channels, 0.0f);
    o.dbeta.assign(channels, 0.0f);
    cpu::batch_norm_forward_training(rows, channels, x.ptr(), x.ld, gamma.data(), beta.data(),
                                     1e-5f, o.y.data(), channels, o.mean.data(), o.invstd.data(),
                                     o.rm.data(), o.rv.data(), 0.1f, true);
    cpu::batch_norm_backward_training(rows, channels, x.ptr(), x.ld, dy.ptr(), dy.ld, gamma.data(),
                                      o.mean.data(), o.invstd.data(), o.dx.data(), channels, false,
                                      o.dgamma.data(), o.dbeta.data());
    return o;
  };
  const Out one = run(1), two = run(2), three = run(3);
  cpu::set_num_threads(threads_before);
  for (const Out* o : {&two, &three}) {
    EXPECT_EQ(0, std::memcmp(one.y.data(), o->y.data(), one.y.size() * sizeof(float)));
    EXPECT_EQ(one.mean, o->mean);
    EXPECT_EQ(one.invstd, o->invstd);
    EXPECT_EQ(one.rm, o->rm);
    EXPECT_EQ(one.rv, o->rv);
    EXPECT_EQ(0, std::memcmp(one.dx.data(), o->dx.data(), one.dx.size() * sizeof(float)));
    EXPECT_EQ(one.dgamma, o->dgamma);
    EXPECT_EQ(one.dbeta, o->dbeta);
  }
}

// ------------------------------------------------------------------------------------------------
// Elementwise.

TEST(Elementwise, FillCopyAddScaleRespectStrides) {
  std::mt19937 rng(41);
  const int64_t rows = 13, cols = 7;
  Strided a(rows, cols, 9), b(rows, cols, 10), dst(rows, cols, 11);
  fill_uniform(a, rng, -2.0f, 2.0f);
  fill_uniform(b, rng, -2.0f, 2.0f);

  cpu::fill(rows, cols, 3.5f, dst.ptr(), dst.ld);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), 3.5f);
  expect_gaps_untouched(dst, "fill");

  cpu::copy(rows, cols, a.ptr(), a.ld, dst.ptr(), dst.ld, /*accumulate=*/true);  // 3.5 + a
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), 3.5f + a.at(r, c));
  cpu::copy(rows, cols, a.ptr(), a.ld, dst.ptr(), dst.ld, /*accumulate=*/false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), a.at(r, c));
  expect_gaps_untouched(dst, "copy");

  cpu::add(rows, cols, a.ptr(), a.ld, b.ptr(), b.ld, dst.ptr(), dst.ld);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), a.at(r, c) + b.at(r, c));
  expect_gaps_untouched(dst, "add");

  cpu::scale(rows, cols, -0.75f, b.ptr(), b.ld, dst.ptr(), dst.ld, /*accumulate=*/true);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(dst.at(r, c), (a.at(r, c) + b.at(r, c)) + -0.75f * b.at(r, c));
  cpu::scale(rows, cols, 2.0f, b.ptr(), b.ld, dst.ptr(), dst.ld, /*accumulate=*/false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(dst.at(r, c), 2.0f * b.at(r, c));
  expect_gaps_untouched(dst, "scale");
  expect_gaps_untouched(a, "a (read only)");
  expect_gaps_untouched(b, "b (read only)");
}

TEST(Elementwise, ReluForwardBackward) {
  std::mt19937 rng(43);
  const int64_t rows = 301, cols = 129;  // above the threading threshold
  Strided x(rows, cols, 131), y(rows, cols, 130), dy(rows, cols, 133);
  fill_uniform(x, rng, -1.0f, 1.0f);
  fill_uniform(dy, rng, -1.0f, 1.0f);
  x.at(0, 0) = 0.0f;  // the boundary: y = 0, no gradient
  x.at(1, 1) = -0.0f;
  cpu::relu_forward(rows, cols, x.ptr(), x.ld, y.ptr(), y.ld);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(y.at(r, c), x.at(r, c) > 0 ? x.at(r, c) : 0.0f);
  expect_gaps_untouched(y, "relu y");

  for (bool accumulate : {false, true}) {
    Strided dx(rows, cols, 132);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    cpu::relu_backward(rows, cols, y.ptr(), y.ld, dy.ptr(), dy.ld, dx.ptr(), dx.ld, accumulate);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float g = y.at(r, c) > 0 ? dy.at(r, c) : 0.0f;
        ASSERT_EQ(dx.at(r, c), accumulate ? dx0.at(r, c) + g : g) << r << "," << c;
      }
    EXPECT_EQ(dx.at(0, 0), accumulate ? dx0.at(0, 0) : 0.0f);
    expect_gaps_untouched(dx, "relu dx");
  }

  // In place (y == x).
  Strided z = x;
  cpu::relu_forward(rows, cols, z.ptr(), z.ld, z.ptr(), z.ld);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(z.at(r, c), y.at(r, c));
}

TEST(Elementwise, SigmoidIsStableAndItsBackwardMatches) {
  std::mt19937 rng(47);
  const int64_t rows = 9, cols = 5;
  Strided x(rows, cols, 6), y(rows, cols, 7), dy(rows, cols, 8);
  fill_uniform(x, rng, -6.0f, 6.0f);
  fill_uniform(dy, rng, -1.0f, 1.0f);
  const float extremes[] = {100.0f, -100.0f, 1e4f, -1e4f, 0.0f};
  for (int i = 0; i < 5; ++i) x.at(0, i) = extremes[i];
  cpu::sigmoid_forward(rows, cols, x.ptr(), x.ld, y.ptr(), y.ld);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double ref = 1.0 / (1.0 + std::exp(-double(x.at(r, c))));
      // Relative accuracy of float exp; the atol covers exp(-100) ~ 3.7e-44 (denormal in float).
      EXPECT_TRUE(close(y.at(r, c), ref, 1e-30, 1e-6)) << r << "," << c << " x=" << x.at(r, c);
    }
  EXPECT_EQ(y.at(0, 0), 1.0f);
  EXPECT_EQ(y.at(0, 2), 1.0f);
  EXPECT_EQ(y.at(0, 3), 0.0f);
  EXPECT_EQ(y.at(0, 4), 0.5f);
  expect_gaps_untouched(y, "sigmoid y");

  for (bool accumulate : {false, true}) {
    Strided dx(rows, cols, 9);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    cpu::sigmoid_backward(rows, cols, y.ptr(), y.ld, dy.ptr(), dy.ld, dx.ptr(), dx.ld, accumulate);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const double s = y.at(r, c);
        const double g = dy.at(r, c) * s * (1.0 - s);
        EXPECT_TRUE(close(dx.at(r, c), accumulate ? dx0.at(r, c) + g : g, 1e-7, 1e-6))
            << r << "," << c;
      }
    expect_gaps_untouched(dx, "sigmoid dx");
  }
}

TEST(Elementwise, SumInDoubleSkipsTheGap) {
  std::mt19937 rng(53);
  for (int64_t rows : {1, 17, 1031}) {
    const int64_t cols = 37;
    Strided x(rows, cols, 41);
    fill_uniform(x, rng, -1.0f, 3.0f);
    double ref = 0.0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ref += x.at(r, c);
    // Double accumulation of float inputs: the only error is the order of additions (~1e-15).
    EXPECT_TRUE(close(cpu::sum(rows, cols, x.ptr(), x.ld), ref, 1e-10, 1e-12)) << rows;
  }
  // 1 + many tiny values: a float accumulator would lose them all.
  Strided t(1, 1001, 1001);
  t.at(0, 0) = 1.0f;
  for (int64_t c = 1; c < 1001; ++c) t.at(0, c) = 1e-8f;
  EXPECT_TRUE(close(cpu::sum(1, 1001, t.ptr(), t.ld), 1.0 + 1000 * double(1e-8f), 1e-15, 1e-15));
  EXPECT_EQ(cpu::sum(0, 5, t.ptr(), 5), 0.0);
}

// ------------------------------------------------------------------------------------------------
// BCE with logits.

double bce_reference(const std::vector<float>& z, const std::vector<float>& t,
                     const std::vector<float>* w) {
  double total = 0.0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double s = 1.0 / (1.0 + std::exp(-double(z[i])));
    total += (w ? (*w)[i] : 1.0) * -(t[i] * std::log(s) + (1.0 - t[i]) * std::log(1.0 - s));
  }
  return total / double(z.size());
}

TEST(BceWithLogits, ForwardBackwardMatchReferenceWithWeightsAndSoftTargets) {
  std::mt19937 rng(61);
  const int64_t n = 37;
  const std::vector<float> z = uniform_vector(n, rng, -8.0f, 8.0f);
  const std::vector<float> t = uniform_vector(n, rng, 0.0f, 1.0f);  // soft targets
  const std::vector<float> w = uniform_vector(n, rng, 0.2f, 3.0f);
  for (const std::vector<float>* wp : {static_cast<const std::vector<float>*>(nullptr), &w}) {
    const float* wptr = wp ? wp->data() : nullptr;
    const double loss = cpu::bce_with_logits_forward(n, z.data(), t.data(), wptr);
    // The naive -[t log s + (1-t) log(1-s)] in double is accurate to ~1e-12 for |z| <= 8.
    EXPECT_TRUE(close(loss, bce_reference(z, t, wp), 1e-10, 1e-10));

    const float dloss = 0.7f;
    for (bool accumulate : {false, true}) {
      std::vector<float> dz = uniform_vector(n, rng, -1.0f, 1.0f);
      const std::vector<float> dz0 = dz;
      cpu::bce_with_logits_backward(n, z.data(), t.data(), wptr, dloss, dz.data(), accumulate);
      for (int64_t i = 0; i < n; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-double(z[i])));
        const double g = dloss * (wp ? w[i] : 1.0) * (s - t[i]) / n;
        EXPECT_TRUE(close(dz[i], accumulate ? dz0[i] + g : g, 1e-8, 1e-6)) << i;
      }
    }
    // Central differences of the kernel's own double forward (h on a float logit).
    std::vector<float> dz(n);
    cpu::bce_with_logits_backward(n, z.data(), t.data(), wptr, 1.0f, dz.data(), false);
    for (int64_t i = 0; i < n; i += 5) {
      std::vector<float> zp = z, zm = z;
      const float h = 1e-2f;
      zp[i] += h;
      zm[i] -= h;
      const double fd = (cpu::bce_with_logits_forward(n, zp.data(), t.data(), wptr) -
                         cpu::bce_with_logits_forward(n, zm.data(), t.data(), wptr)) /
                        (double(zp[i]) - double(zm[i]));
      // Truncation error ~ h^2 * |l'''| / 6 / N ~ 1e-6.
      EXPECT_TRUE(close(dz[i], fd, 2e-6, 1e-4)) << i;
    }
  }
}

TEST(BceWithLogits, ExtremeLogitsAreFiniteWithTheRightLimits) {
  // (z, t): loss term and gradient (sigmoid(z) - t) for w = 1, N = 1.
  struct Case {
    float z, t;
    double loss, grad;
  };
  const Case cases[] = {
      {100.0f, 1.0f, std::exp(-100.0), -std::exp(-100.0)},  // confident and right
      {100.0f, 0.0f, 100.0, 1.0},                            // confident and wrong
      {-100.0f, 1.0f, 100.0, -1.0},
      {-100.0f, 0.0f, std::exp(-100.0), std::exp(-100.0)},
      {1e4f, 1.0f, 0.0, 0.0},
      {1e4f, 0.0f, 1e4, 1.0},
      {-1e4f, 1.0f, 1e4, -1.0},
      {-1e4f, 0.0f, 0.0, 0.0},
      {1e4f, 0.25f, 0.75e4, 0.75},  // soft target: (1 - t) * z
  };
  for (const Case& k : cases) {
    const double loss = cpu::bce_with_logits_forward(1, &k.z, &k.t, nullptr);
    EXPECT_TRUE(close(loss, k.loss, 1e-300, 1e-12)) << "z=" << k.z << " t=" << k.t;
    EXPECT_GE(loss, 0.0);
    float dz = 0.0f;
    cpu::bce_with_logits_backward(1, &k.z, &k.t, nullptr, 1.0f, &dz, false);
    // exp(-100) ~ 3.7e-44 is a float denormal: relative accuracy is lost there, hence the atol.
    EXPECT_TRUE(close(dz, k.grad, 1e-44, 1e-6)) << "z=" << k.z << " t=" << k.t;
  }
  // Mean over the batch with weights: (2 * 1e4 + 0.5 * (100 + log1p(exp(-100)))) / 2.
  const float z[] = {1e4f, -100.0f}, t[] = {0.0f, 1.0f}, w[] = {2.0f, 0.5f};
  const double expected = (2e4 + 0.5 * (100.0 + std::log1p(std::exp(-100.0)))) / 2.0;
  EXPECT_TRUE(close(cpu::bce_with_logits_forward(2, z, t, w), expected, 0.0, 1e-12));
  float dz[2];
  cpu::bce_with_logits_backward(2, z, t, w, 1.0f, dz, false);
  EXPECT_TRUE(close(dz[0], 2.0 * 1.0 / 2.0, 0.0, 1e-7));
  EXPECT_TRUE(close(dz[1], 0.5 * -1.0 / 2.0, 0.0, 1e-7));
  EXPECT_EQ(cpu::bce_with_logits_forward(0, z, t, w), 0.0);
}

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

}  // namespace
