// CPU batch norm fused with ReLU (kernels/batchnorm.h, batch_norm_relu_*): the reference for the CUDA
// fused kernels. Checked bit for bit against the unfused pair (batch_norm_* then relu_forward; relu_backward
// then batch_norm_backward_training) on dense and row-strided matrices, with and without gamma/beta,
// on one thread's size and on the threaded path; the fused backward also against central finite
// differences of a double forward y = max(BN(x), 0) (tolerance 1e-6 + 2e-3 |ref|, the differences'
// own error at step 1e-4 in double, well away from ReLU's kink).
// The engine op batch_norm_relu against relu(batch_norm(...)) too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/engine.h"
#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"
#include "support/gradcheck.h"
#include "support/random_values.h"

namespace {

namespace cpu = kernels::cpu;
using kernels::ConstMatrixView;
using kernels::MatrixView;


struct Shape {
  int64_t rows, cols, ld;
  bool gamma, beta;
};

// The shapes: a small strided one, a dense one, a channel prefix of a wider buffer, one big enough for
// the threaded path (rows * cols >= 2^15), no gamma, no affine.
const std::vector<Shape> kShapes = {{7, 5, 8, true, true},     {64, 16, 16, true, true}, {33, 12, 40, true, true},
                                    {700, 64, 72, true, true}, {50, 9, 9, false, true},  {20, 6, 7, false, false}};

struct Channels {
  std::vector<float> gamma, beta, running_mean, running_var;
  kernels::BatchNormChannels view(bool with_gamma, bool with_beta) const {
    kernels::BatchNormChannels ch;
    ch.gamma = with_gamma ? gamma.data() : nullptr;
    ch.beta = with_beta ? beta.data() : nullptr;
    ch.running_mean = running_mean.data();
    ch.running_var = running_var.data();
    return ch;
  }
};

Channels make_channels(int64_t c, uint64_t seed) {
  Channels ch;
  ch.gamma = test_support::uniform(size_t(c), seed, 0.5f, 1.5f);
  ch.beta = test_support::uniform(size_t(c), seed + 1, -0.5f, 0.5f);
  ch.running_mean = test_support::uniform(size_t(c), seed + 2, -0.3f, 0.3f);
  ch.running_var = test_support::uniform(size_t(c), seed + 3, 0.5f, 2.0f);
  return ch;
}

TEST(BatchNormRelu, ForwardTrainingEqualsBatchNormThenReluBitForBit) {
  for (const Shape& s : kShapes) {
    const size_t n = size_t(s.rows * s.ld);
    const std::vector<float> x = test_support::uniform(n, 1 + uint64_t(s.rows), -2.0f, 3.0f);
    const Channels ch = make_channels(s.cols, 7);
    std::vector<float> y_fused(n, -7.0f), y_bn(n, -7.0f), y_relu(n, -7.0f);
    std::vector<float> mean_f(size_t(s.cols)), invstd_f(size_t(s.cols)), mean_u(size_t(s.cols)), invstd_u(size_t(s.cols));
    std::vector<float> rm_f = ch.running_mean, rv_f = ch.running_var, rm_u = ch.running_mean, rv_u = ch.running_var;
    kernels::BatchNormHyper h;
    cpu::batch_norm_relu_forward_training({x.data(), s.rows, s.cols, s.ld}, {y_fused.data(), s.rows, s.cols, s.ld},
                                          ch.view(s.gamma, s.beta),
                                          {mean_f.data(), invstd_f.data(), rm_f.data(), rv_f.data()}, h);
    cpu::batch_norm_forward_training({x.data(), s.rows, s.cols, s.ld}, {y_bn.data(), s.rows, s.cols, s.ld},
                                     ch.view(s.gamma, s.beta), {mean_u.data(), invstd_u.data(), rm_u.data(), rv_u.data()},
                                     h);
    cpu::relu_forward({y_bn.data(), s.rows, s.cols, s.ld}, {y_relu.data(), s.rows, s.cols, s.ld});
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.ld; ++c) {
        const size_t i = size_t(r * s.ld + c);
        if (c < s.cols)
          ASSERT_EQ(y_fused[i], y_relu[i]) << "rows " << s.rows << " cols " << s.cols << " at " << r << "," << c;
        else
          ASSERT_EQ(y_fused[i], -7.0f) << "the gap is written at " << r << "," << c;
      }
    EXPECT_EQ(mean_f, mean_u);
    EXPECT_EQ(invstd_f, invstd_u);
    EXPECT_EQ(rm_f, rm_u);
    EXPECT_EQ(rv_f, rv_u);
  }
}

TEST(BatchNormRelu, ForwardEvalEqualsBatchNormThenReluBitForBit) {
  for (const Shape& s : kShapes) {
    const size_t n = size_t(s.rows * s.ld);
    const std::vector<float> x = test_support::uniform(n, 11 + uint64_t(s.cols), -2.0f, 2.0f);
    const Channels ch = make_channels(s.cols, 17);
    std::vector<float> y_fused(n, -7.0f), y_bn(n, -7.0f), y_relu(n, -7.0f);
    cpu::batch_norm_relu_forward_eval({x.data(), s.rows, s.cols, s.ld}, {y_fused.data(), s.rows, s.cols, s.ld},
                                      ch.view(s.gamma, s.beta), kernels::BatchNormHyper{});
    cpu::batch_norm_forward_eval({x.data(), s.rows, s.cols, s.ld}, {y_bn.data(), s.rows, s.cols, s.ld},
                                 ch.view(s.gamma, s.beta), kernels::BatchNormHyper{});
    cpu::relu_forward({y_bn.data(), s.rows, s.cols, s.ld}, {y_relu.data(), s.rows, s.cols, s.ld});
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c) ASSERT_EQ(y_fused[size_t(r * s.ld + c)], y_relu[size_t(r * s.ld + c)]);
  }
}

TEST(BatchNormRelu, BackwardTrainingEqualsReluBackwardThenBatchNormBackwardBitForBit) {
  for (const Shape& s : kShapes)
    for (const bool accumulate : {false, true}) {
      const size_t n = size_t(s.rows * s.ld);
      const std::vector<float> x = test_support::uniform(n, 21 + uint64_t(s.rows), -2.0f, 3.0f);
      const std::vector<float> dy = test_support::uniform(n, 22 + uint64_t(s.rows), -1.0f, 1.0f);
      const Channels chv = make_channels(s.cols, 27);
      std::vector<float> mean(size_t(s.cols)), invstd(size_t(s.cols)), y(n, 0.0f);
      kernels::BatchNormChannels ch = chv.view(s.gamma, s.beta);
      cpu::batch_norm_relu_forward_training({x.data(), s.rows, s.cols, s.ld}, {y.data(), s.rows, s.cols, s.ld}, ch,
                                            {mean.data(), invstd.data(), nullptr, nullptr}, kernels::BatchNormHyper{});
      ch.saved_mean = mean.data();
      ch.saved_invstd = invstd.data();

      const std::vector<float> dx0 = test_support::uniform(n, 23, -0.5f, 0.5f);
      const std::vector<float> dg0 = test_support::uniform(size_t(s.cols), 24, -0.5f, 0.5f), db0 = test_support::uniform(size_t(s.cols), 25, -0.5f, 0.5f);
      std::vector<float> dx_fused = dx0, dg_fused = dg0, db_fused = db0;
      cpu::batch_norm_relu_backward_training({x.data(), s.rows, s.cols, s.ld}, {dy.data(), s.rows, s.cols, s.ld}, ch,
                                             {dx_fused.data(), s.rows, s.cols, s.ld}, accumulate,
                                             {dg_fused.data(), db_fused.data()});
      std::vector<float> dz(n, 0.0f), dx_unfused = dx0, dg_unfused = dg0, db_unfused = db0;
      cpu::relu_backward({y.data(), s.rows, s.cols, s.ld}, {dy.data(), s.rows, s.cols, s.ld},
                         {dz.data(), s.rows, s.cols, s.ld}, false);
      cpu::batch_norm_backward_training({x.data(), s.rows, s.cols, s.ld}, {dz.data(), s.rows, s.cols, s.ld}, ch,
                                        {dx_unfused.data(), s.rows, s.cols, s.ld}, accumulate,
                                        {dg_unfused.data(), db_unfused.data()});
      EXPECT_EQ(dx_fused, dx_unfused) << "rows " << s.rows << " cols " << s.cols << " accumulate " << accumulate;
      EXPECT_EQ(dg_fused, dg_unfused);
      EXPECT_EQ(db_fused, db_unfused);
    }
}

// L = sum_{r,c} w[r,c] * max(BN(x)[r,c], 0) in double; its gradients by central differences against the
// fused backward with dy = w.
TEST(BatchNormRelu, BackwardTrainingMatchesFiniteDifferences) {
  const int64_t rows = 12, cols = 4;
  const double eps = 1e-5;
  std::vector<float> xf = test_support::uniform(size_t(rows * cols), 31, -2.0f, 2.0f);
  const std::vector<float> w = test_support::uniform(size_t(rows * cols), 32, -1.0f, 1.0f);
  const Channels chv = make_channels(cols, 33);
  const auto loss = [&](const std::vector<double>& x, const std::vector<double>& gamma, const std::vector<double>& beta,
                        double* min_abs_z) {
    double total = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      double mean = 0.0, var = 0.0;
      for (int64_t r = 0; r < rows; ++r) mean += x[size_t(r * cols + c)];
      mean /= double(rows);
      for (int64_t r = 0; r < rows; ++r) var += (x[size_t(r * cols + c)] - mean) * (x[size_t(r * cols + c)] - mean);
      var /= double(rows);
      for (int64_t r = 0; r < rows; ++r) {
        const double z = gamma[size_t(c)] * (x[size_t(r * cols + c)] - mean) / std::sqrt(var + eps) + beta[size_t(c)];
        if (min_abs_z) *min_abs_z = std::min(*min_abs_z, std::fabs(z));
        total += w[size_t(r * cols + c)] * (z > 0.0 ? z : 0.0);
      }
    }
    return total;
  };
  std::vector<double> x(xf.begin(), xf.end()), gamma(chv.gamma.begin(), chv.gamma.end()), beta(chv.beta.begin(), chv.beta.end());
  double min_abs_z = 1e9;
  loss(x, gamma, beta, &min_abs_z);
  ASSERT_GT(min_abs_z, 1e-2) << "a BN output sits on ReLU's kink: finite differences would straddle it";

  std::vector<float> mean(static_cast<size_t>(cols)), invstd(static_cast<size_t>(cols)), y(xf.size());
  kernels::BatchNormChannels ch = chv.view(true, true);
  kernels::BatchNormHyper h;
  h.eps = float(eps);
  cpu::batch_norm_relu_forward_training({xf.data(), rows, cols, cols}, {y.data(), rows, cols, cols}, ch,
                                        {mean.data(), invstd.data(), nullptr, nullptr}, h);
  ch.saved_mean = mean.data();
  ch.saved_invstd = invstd.data();
  std::vector<float> dx(xf.size(), 0.0f), dgamma(static_cast<size_t>(cols), 0.0f), dbeta(static_cast<size_t>(cols), 0.0f);
  cpu::batch_norm_relu_backward_training({xf.data(), rows, cols, cols}, {w.data(), rows, cols, cols}, ch,
                                         {dx.data(), rows, cols, cols}, false, {dgamma.data(), dbeta.data()});

  const double step = 1e-4;
  const auto expect_near = [](double actual, double expected, const char* what, size_t i) {
    EXPECT_LE(std::fabs(actual - expected), 1e-6 + 2e-3 * std::fabs(expected)) << what << "[" << i << "]";
  };
  for (size_t i = 0; i < x.size(); ++i) {
    std::vector<double> plus = x, minus = x;
    plus[i] += step;
    minus[i] -= step;
    expect_near(dx[i], (loss(plus, gamma, beta, nullptr) - loss(minus, gamma, beta, nullptr)) / (2 * step), "dx", i);
  }
  for (size_t c = 0; c < size_t(cols); ++c) {
    std::vector<double> gp = gamma, gm = gamma, bp = beta, bm = beta;
    gp[c] += step;
    gm[c] -= step;
    bp[c] += step;
    bm[c] -= step;
    expect_near(dgamma[c], (loss(x, gp, beta, nullptr) - loss(x, gm, beta, nullptr)) / (2 * step), "dgamma", c);
    expect_near(dbeta[c], (loss(x, gamma, bp, nullptr) - loss(x, gamma, bm, nullptr)) / (2 * step), "dbeta", c);
  }
}

}  // namespace

// The engine op: batch_norm_relu equals relu(batch_norm(...)) bit for bit, values and gradients
// (x, gamma, beta through autograd), and updates the running statistics alike.

namespace {

TEST(BatchNormReluOp, EqualsReluOfBatchNormBitForBit) {
  using engine::Tensor;
  for (const bool training : {true, false}) {
    engine::Generator gen(41);
    const Tensor x0 = test_support::random_tensor({2, 5, 5, 12}, gen, -2.0f, 2.0f);
    const Tensor g0 = test_support::random_tensor({12}, gen, 0.5f, 1.5f);
    const Tensor b0 = test_support::random_tensor({12}, gen, -0.5f, 0.5f);
    const Tensor w = test_support::random_tensor({2, 5, 5, 12}, gen, -1.0f, 1.0f);
    struct Run {
      std::vector<float> y, dx, dgamma, dbeta, running_mean, running_var;
    };
    const auto run = [&](bool fused) {
      Tensor x = x0.clone(), gamma = g0.clone(), beta = b0.clone();
      x.set_requires_grad(true);
      gamma.set_requires_grad(true);
      beta.set_requires_grad(true);
      Tensor rm = Tensor::zeros({12}), rv = Tensor::ones({12});
      const engine::BatchNormOptions o = engine::BatchNormOptions::torch();
      const Tensor y = fused ? engine::batch_norm_relu(x, gamma, beta, rm, rv, training, o)
                             : engine::relu(engine::batch_norm(x, gamma, beta, rm, rv, training, o));
      y.backward(w);
      return Run{y.to_vector(), x.grad().to_vector(), gamma.grad().to_vector(), beta.grad().to_vector(),
                 rm.to_vector(), rv.to_vector()};
    };
    const Run fused = run(true), unfused = run(false);
    EXPECT_EQ(fused.y, unfused.y) << "training " << training;
    EXPECT_EQ(fused.dx, unfused.dx) << "training " << training;
    EXPECT_EQ(fused.dgamma, unfused.dgamma) << "training " << training;
    EXPECT_EQ(fused.dbeta, unfused.dbeta) << "training " << training;
    EXPECT_EQ(fused.running_mean, unfused.running_mean);
    EXPECT_EQ(fused.running_var, unfused.running_var);
  }
}

}  // namespace
