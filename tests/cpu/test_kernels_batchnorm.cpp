// CPU batch-norm kernels (kernels/batchnorm.h) against a naive double-precision re-implementation of
// the formulas; the backward is also checked against central finite differences of a double forward,
// so the gradient formulas themselves are tested, not only their transcription.
// Matrices are row-strided (ld > cols) with NaN in the gap columns: a kernel that reads the gap
// produces NaN, one that writes it is caught by the gap check (helpers in test_kernels_common.h).
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
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/batchnorm.h"
#include "kernels/gemm.h"
#include "test_kernels_common.h"

namespace {

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
namespace cpu = kernels::cpu;

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

  cpu::batch_norm_forward_training(
      {x.ptr(), rows, channels, x.ld}, {y.ptr(), rows, channels, y.ld}, {gamma.data(), beta.data()},
      {saved_mean.data(), saved_invstd.data(), running_mean.data(), running_var.data()},
      {p.eps, p.momentum, p.unbiased});

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
  cpu::batch_norm_forward_training(
      {x.ptr(), rows, channels, x.ld}, {y.ptr(), rows, channels, y.ld}, {nullptr, nullptr},
      {saved_mean.data(), saved_invstd.data(), nullptr, nullptr}, {eps, 0.1f, true});
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
  cpu::batch_norm_forward_training(
      {x.ptr(), 1, channels, x.ld}, {y.ptr(), 1, channels, y.ld}, {nullptr, beta.data()},
      {saved_mean.data(), saved_invstd.data(), running_mean.data(), running_var.data()},
      {1e-5f, 0.1f, true});
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
    cpu::batch_norm_forward_eval({x.ptr(), rows, channels, x.ld}, {y.ptr(), rows, channels, y.ld},
                                 {with_affine ? gamma.data() : nullptr,
                                  with_affine ? beta.data() : nullptr, rmean.data(), rvar.data()},
                                 {eps});
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
    cpu::batch_norm_forward_training(
        {x.ptr(), r, c, x.ld}, {y.ptr(), r, c, y.ld}, {gamma.data(), beta.data()},
        {saved_mean.data(), saved_invstd.data(), nullptr, nullptr}, {eps, 0.1f, false});
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

    cpu::batch_norm_backward_training(
        {s.x.ptr(), rows, channels, s.x.ld}, {s.dy.ptr(), rows, channels, s.dy.ld},
        {s.gamma.data(), nullptr, nullptr, nullptr, s.saved_mean.data(), s.saved_invstd.data()},
        {dx.ptr(), rows, channels, dx.ld}, accumulate, {dgamma.data(), dbeta.data()});

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
  cpu::batch_norm_backward_training(
      {s.x.ptr(), rows, cols, s.x.ld}, {s.dy.ptr(), rows, cols, s.dy.ld},
      {s.gamma.data(), nullptr, nullptr, nullptr, s.saved_mean.data(), s.saved_invstd.data()},
      {dx.ptr(), rows, cols, dx.ld}, false, {dgamma.data(), dbeta.data()});
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
  cpu::batch_norm_backward_training(
      {s.x.ptr(), rows, channels, s.x.ld}, {s.dy.ptr(), rows, channels, s.dy.ld},
      {nullptr, nullptr, nullptr, nullptr, s.saved_mean.data(), s.saved_invstd.data()},
      {dx_null.ptr(), rows, channels, dx_null.ld}, false, {nullptr, nullptr});
  cpu::batch_norm_backward_training(
      {s.x.ptr(), rows, channels, s.x.ld}, {s.dy.ptr(), rows, channels, s.dy.ld},
      {ones.data(), nullptr, nullptr, nullptr, s.saved_mean.data(), s.saved_invstd.data()},
      {dx_ones.ptr(), rows, channels, dx_ones.ld}, false, {nullptr, nullptr});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) ASSERT_EQ(dx_null.at(r, c), dx_ones.at(r, c));
  expect_gaps_untouched(dx_null, "dx");

  // dx == null: parameter gradients only, the same values as with dx.
  std::vector<float> dg1(channels, 0.5f), db1(channels, -0.5f), dg2 = dg1, db2 = db1;
  cpu::batch_norm_backward_training(
      {s.x.ptr(), rows, channels, s.x.ld}, {s.dy.ptr(), rows, channels, s.dy.ld},
      {s.gamma.data(), nullptr, nullptr, nullptr, s.saved_mean.data(), s.saved_invstd.data()},
      {nullptr, rows, channels, 0}, false, {dg1.data(), db1.data()});
  cpu::batch_norm_backward_training(
      {s.x.ptr(), rows, channels, s.x.ld}, {s.dy.ptr(), rows, channels, s.dy.ld},
      {s.gamma.data(), nullptr, nullptr, nullptr, s.saved_mean.data(), s.saved_invstd.data()},
      {dx_ones.ptr(), rows, channels, dx_ones.ld}, false, {dg2.data(), db2.data()});
  EXPECT_EQ(dg1, dg2);
  EXPECT_EQ(db1, db2);
  EXPECT_NE(dg1, std::vector<float>(channels, 0.5f));
}

// A backward's inputs, drawn from rng in this order: x [rows, channels] (row stride ldx) uniform in
// [x_low, x_high), dy (row stride ldy) uniform in [-1, 1), gamma [channels] uniform in [0.5, 1.5).
struct BackwardInputs {
  Strided x, dy;
  std::vector<float> gamma;
  BackwardInputs(int64_t rows, int64_t channels, int64_t ldx, int64_t ldy, std::mt19937& rng,
                 float x_low, float x_high)
      : x(rows, channels, ldx), dy(rows, channels, ldy) {
    fill_uniform(x, rng, x_low, x_high);
    fill_uniform(dy, rng, -1.0f, 1.0f);
    gamma = uniform_vector(channels, rng, 0.5f, 1.5f);
  }
};

TEST(BatchNorm, BackwardEvalTreatsStatisticsAsConstants) {
  std::mt19937 rng(31);
  const int64_t rows = 29, channels = 6;
  const BackwardInputs in(rows, channels, 8, 9, rng, -2.0f, 2.0f);
  const Strided &x = in.x, &dy = in.dy;
  const std::vector<float>& gamma = in.gamma;
  const std::vector<float> rmean = uniform_vector(channels, rng, -1.0f, 1.0f);
  const std::vector<float> rvar = uniform_vector(channels, rng, 0.1f, 2.0f);
  const float eps = 1e-3f;
  for (bool accumulate : {false, true}) {
    Strided dx(rows, channels, 7);
    fill_uniform(dx, rng, -1.0f, 1.0f);
    const Strided dx0 = dx;
    std::vector<float> dgamma(channels, 0.25f), dbeta(channels, -0.25f);
    cpu::batch_norm_backward_eval(
        {x.ptr(), rows, channels, x.ld}, {dy.ptr(), rows, channels, dy.ld},
        {gamma.data(), nullptr, rmean.data(), rvar.data()}, {eps},
        {dx.ptr(), rows, channels, dx.ld}, accumulate, {dgamma.data(), dbeta.data()});
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
  const BackwardInputs in(rows, channels, 19, 18, rng, -1.0f, 5.0f);
  const Strided &x = in.x, &dy = in.dy;
  const std::vector<float>& gamma = in.gamma;
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
    cpu::batch_norm_forward_training(
        {x.ptr(), rows, channels, x.ld}, {o.y.data(), rows, channels, channels},
        {gamma.data(), beta.data()}, {o.mean.data(), o.invstd.data(), o.rm.data(), o.rv.data()},
        {1e-5f, 0.1f, true});
    cpu::batch_norm_backward_training(
        {x.ptr(), rows, channels, x.ld}, {dy.ptr(), rows, channels, dy.ld},
        {gamma.data(), nullptr, nullptr, nullptr, o.mean.data(), o.invstd.data()},
        {o.dx.data(), rows, channels, channels}, false, {o.dgamma.data(), o.dbeta.data()});
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

// bf16 matrices run by emulation (kernels/bf16_emulation.h, docs/precision.md): a bf16 x gives bit for
// bit what the f32 kernel gives on its widened values (y, the saved and running statistics), and a bf16
// y is that f32 y rounded once.
TEST(BatchNorm, Bf16MatricesRunByEmulation) {
  const int64_t rows = 4, channels = 3;
  std::vector<uint16_t> x_bits(rows * channels);
  std::vector<float> x_wide(rows * channels);
  for (size_t i = 0; i < x_bits.size(); ++i) {
    x_bits[i] = kernels::bf16_bits_from_f32(0.37f * float(i) - 1.3f);
    x_wide[i] = kernels::f32_from_bf16_bits(x_bits[i]);
  }
  const kernels::ConstMatrixView bf16_x(x_bits.data(), rows, channels, channels, kernels::DType::bf16);
  const kernels::ConstMatrixView f32_x(x_wide.data(), rows, channels, channels);
  struct Run {
    std::vector<float> y, mean, invstd, rm, rv;
  };
  auto run = [&](kernels::ConstMatrixView x) {
    Run r{std::vector<float>(rows * channels), std::vector<float>(channels), std::vector<float>(channels),
          std::vector<float>(channels, 0.0f), std::vector<float>(channels, 1.0f)};
    kernels::BatchNormStatsOut stats;
    stats.saved_mean = r.mean.data();
    stats.saved_invstd = r.invstd.data();
    stats.running_mean = r.rm.data();
    stats.running_var = r.rv.data();
    cpu::batch_norm_forward_training(x, {r.y.data(), rows, channels, channels}, {}, stats, {1e-5f, 0.1f, true});
    return r;
  };
  const Run narrow = run(bf16_x), wide = run(f32_x);
  EXPECT_EQ(narrow.y, wide.y);
  EXPECT_EQ(narrow.mean, wide.mean);
  EXPECT_EQ(narrow.invstd, wide.invstd);
  EXPECT_EQ(narrow.rm, wide.rm);
  EXPECT_EQ(narrow.rv, wide.rv);
  std::vector<uint16_t> y_bits(rows * channels);
  kernels::BatchNormStatsOut no_stats;
  cpu::batch_norm_forward_training(bf16_x, {y_bits.data(), rows, channels, channels, kernels::DType::bf16}, {},
                                   no_stats, {1e-5f, 0.1f, true});
  for (size_t i = 0; i < y_bits.size(); ++i) EXPECT_EQ(y_bits[i], kernels::bf16_bits_from_f32(wide.y[i])) << i;
}

// The synchronised batch norm's kernels (--sync-bn) with one process's sums: the statistics, y, the
// parameter-gradient sums and dx of the ordinary training kernels (the same maths split at its sums).
TEST(BatchNormSync, SplitKernelsGiveTheTrainingKernelsResults) {
  BnBackwardSetup s(3 * 4 * 5, 9, 23);
  const int64_t rows = s.rows, channels = s.channels;
  const auto C = static_cast<size_t>(channels);
  const BnStats st = bn_stats(s.x);

  std::vector<double> sums(C), centred(C);
  cpu::batch_norm_channel_sums(s.x.view(), nullptr, sums.data());
  std::vector<double> mean(C);
  for (size_t c = 0; c < C; ++c) {
    EXPECT_TRUE(close(sums[c], st.mean[c] * double(rows), 1e-9, 1e-12)) << "sum c=" << c;
    mean[c] = sums[c] / double(rows);
  }
  std::vector<double> mean_by_kernel(C);
  cpu::batch_norm_sync_mean(sums.data(), channels, double(rows), mean_by_kernel.data());
  EXPECT_EQ(mean_by_kernel, mean);
  cpu::batch_norm_channel_sums(s.x.view(), mean.data(), centred.data());
  for (size_t c = 0; c < C; ++c)
    EXPECT_TRUE(close(centred[c], st.var[c] * double(rows), 1e-9, 1e-12)) << "centred squares c=" << c;

  // The saved and running statistics from the sums: the training forward's (its mean and variance are the
  // same doubles up to their summation order), PyTorch's unbiased running variance and Keras's biased one.
  for (const bool unbiased : {true, false}) {
    const kernels::BatchNormHyper h{s.eps, 0.25f, unbiased};
    std::vector<float> rm(C, 0.5f), rv(C, 2.0f), rm_ref(rm), rv_ref(rv), saved_mean(C), saved_invstd(C),
        saved_mean_ref(C), saved_invstd_ref(C);
    Strided scratch(rows, channels, channels);
    cpu::batch_norm_forward_training(s.x.view(), scratch.view(), {}, {saved_mean_ref.data(), saved_invstd_ref.data(),
                                                                      rm_ref.data(), rv_ref.data()}, h);
    cpu::batch_norm_sync_statistics(mean.data(), centred.data(), channels, double(rows),
                                    {saved_mean.data(), saved_invstd.data(), rm.data(), rv.data()}, h);
    for (size_t c = 0; c < C; ++c) {
      EXPECT_TRUE(close(saved_mean[c], saved_mean_ref[c], 1e-6, 1e-7)) << "saved mean c=" << c;
      EXPECT_TRUE(close(saved_invstd[c], saved_invstd_ref[c], 1e-6, 1e-7)) << "saved invstd c=" << c;
      EXPECT_TRUE(close(rm[c], rm_ref[c], 1e-6, 1e-7)) << "running mean c=" << c;
      EXPECT_TRUE(close(rv[c], rv_ref[c], 1e-6, 1e-7)) << "running var c=" << c << " unbiased=" << unbiased;
    }
  }

  // y from the training forward's saved statistics.
  kernels::BatchNormChannels ch{s.gamma.data(), s.beta.data(), nullptr, nullptr, s.saved_mean.data(),
                                s.saved_invstd.data()};
  Strided y(rows, channels, channels + 1), y_ref(rows, channels, channels);
  cpu::batch_norm_forward_training(s.x.view(), y_ref.view(), {s.gamma.data(), s.beta.data()}, {}, {s.eps, 0.1f, false});
  cpu::batch_norm_normalize_forward(s.x.view(), y.view(), ch);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c)
      EXPECT_TRUE(close(y.at(r, c), y_ref.at(r, c), 1e-6, 1e-6)) << "y r=" << r << " c=" << c;
  expect_gaps_untouched(y, "y");

  // Backward: [sum dy | sum dy * xhat] are dbeta and dgamma; dx from them over `rows` rows.
  std::vector<double> grad_sums(2 * C);
  cpu::batch_norm_backward_channel_sums(s.x.view(), s.dy.view(), ch, grad_sums.data());
  std::vector<float> dgamma(C, 0.0f), dbeta(C, 0.0f);
  Strided dx(rows, channels, channels + 2), dx_ref(rows, channels, channels);
  cpu::batch_norm_backward_training(s.x.view(), s.dy.view(), ch, dx_ref.view(), false, {dgamma.data(), dbeta.data()});
  std::vector<float> dgamma_synced(C, -1.0f), dbeta_synced(C, -1.0f);  // written, not accumulated
  cpu::batch_norm_sync_parameter_grads(grad_sums.data(), channels, {dgamma_synced.data(), dbeta_synced.data()});
  for (size_t c = 0; c < C; ++c) {
    EXPECT_TRUE(close(float(grad_sums[c]), dbeta[c], 1e-6, 1e-6)) << "sum dy c=" << c;
    EXPECT_TRUE(close(float(grad_sums[C + c]), dgamma[c], 1e-6, 1e-6)) << "sum dy xhat c=" << c;
    EXPECT_EQ(dbeta_synced[c], float(grad_sums[c])) << c;
    EXPECT_EQ(dgamma_synced[c], float(grad_sums[C + c])) << c;
  }
  cpu::batch_norm_normalize_backward(s.x.view(), s.dy.view(), ch, grad_sums.data(), double(rows), dx.view());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c)
      EXPECT_TRUE(close(dx.at(r, c), dx_ref.at(r, c), 1e-6, 1e-6)) << "dx r=" << r << " c=" << c;
  expect_gaps_untouched(dx, "dx");
}

}  // namespace
