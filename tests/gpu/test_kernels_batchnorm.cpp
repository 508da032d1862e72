// GPU batch normalisation (kernels/cuda/batchnorm.cu) against the CPU reference
// (kernels/cpu/batchnorm.cpp): training forward (y, saved statistics, running statistics with the
// Keras and PyTorch conventions), eval forward, training and eval backward with and without
// gamma/beta, dx overwrite/accumulate, dgamma/dbeta accumulation, and determinism (two runs are
// bitwise equal). Inputs have a non-zero mean and NaN in their row-stride gaps; outputs are NaN
// before an overwrite and carry a sentinel in their gaps. Tolerances (atol + rtol |ref|):
//   saved_mean, saved_invstd, running stats:  1e-6 + 1e-5 |ref|  (double statistics summed in a
//                                             different order, then rounded to float)
//   y, dx:                                    1e-5 + 1e-5 |ref|  (FMA vs separate rounding)
//   dgamma, dbeta:                            1e-4 + 1e-5 |ref|  (float sums of M products)
// The synchronised batch norm's per-channel maths: bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/batchnorm.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

struct BnCase {
  const char* name;
  int64_t rows, channels, ldx, ldy;
};

void PrintTo(const BnCase& c, std::ostream* os) { *os << c.name; }

class CudaBatchNorm : public ::testing::TestWithParam<BnCase> {};

struct Inputs {
  std::vector<float> x, dy, gamma, beta, running_mean, running_var;
  Inputs(const BnCase& c, uint64_t seed) {
    const size_t n = size_t(c.rows * c.channels), C = size_t(c.channels);
    std::vector<float> xd = away_from_zero(n, seed, 0.1f, 2.0f);
    for (float& v : xd) v += 0.75f;  // a mean to subtract
    x = strided(xd, c.rows, c.channels, c.ldx, kNaN);
    dy = strided(away_from_zero(n, seed + 1), c.rows, c.channels, c.ldy, kNaN);
    gamma = away_from_zero(C, seed + 2, 0.5f, 1.5f);
    beta = away_from_zero(C, seed + 3);
    running_mean = away_from_zero(C, seed + 4);
    running_var = uniform(C, seed + 5, 0.5f, 2.0f);
  }
};

TEST_P(CudaBatchNorm, ForwardTraining) {
  SKIP_WITHOUT_CUDA();
  const BnCase c = GetParam();
  const Inputs in(c, 101);
  const int64_t C = c.channels;
  for (bool with_affine : {true, false}) {
    for (bool keras : {true, false}) {
      SCOPED_TRACE(std::string(with_affine ? "gamma/beta" : "no gamma/beta") +
                   (keras ? ", keras" : ", torch"));
      const float eps = keras ? 1e-3f : 1e-5f, momentum = keras ? 0.01f : 0.1f;
      const bool unbiased = !keras;
      const std::vector<float> y_start =
          strided(std::vector<float>(size_t(c.rows * C), kNaN), c.rows, C, c.ldy, kGapSentinel);
      std::vector<float> y_ref = y_start, mean_ref(static_cast<size_t>(C)), invstd_ref(static_cast<size_t>(C));
      std::vector<float> rm_ref = in.running_mean, rv_ref = in.running_var;
      kernels::cpu::batch_norm_forward_training(
          {in.x.data(), c.rows, C, c.ldx}, {y_ref.data(), c.rows, C, c.ldy},
          {with_affine ? in.gamma.data() : nullptr, with_affine ? in.beta.data() : nullptr},
          {mean_ref.data(), invstd_ref.data(), rm_ref.data(), rv_ref.data()},
          {eps, momentum, unbiased});

      DeviceBuffer x(in.x), gamma(in.gamma), beta(in.beta), y(y_start), mean(static_cast<size_t>(C)),
          invstd(static_cast<size_t>(C)), rm(in.running_mean), rv(in.running_var);
      auto run = [&] {
        kernels::cuda::batch_norm_forward_training(
            {x.get(), c.rows, C, c.ldx}, {y.get(), c.rows, C, c.ldy},
            {with_affine ? gamma.get() : nullptr, with_affine ? beta.get() : nullptr},
            {mean.get(), invstd.get(), rm.get(), rv.get()}, {eps, momentum, unbiased});
      };
      run();
      const std::vector<float> y_got = y.download(), mean_got = mean.download(),
                               invstd_got = invstd.download();
      EXPECT_TRUE(close(mean_got, mean_ref, 1e-6, 1e-5)) << "saved_mean";
      EXPECT_TRUE(close(invstd_got, invstd_ref, 1e-6, 1e-5)) << "saved_invstd";
      EXPECT_TRUE(close(rm.download(), rm_ref, 1e-6, 1e-5)) << "running_mean";
      EXPECT_TRUE(close(rv.download(), rv_ref, 1e-6, 1e-5)) << "running_var";
      EXPECT_TRUE(close(dense_part(y_got, c.rows, C, c.ldy), dense_part(y_ref, c.rows, C, c.ldy),
                        1e-5, 1e-5))
          << "y";
      EXPECT_TRUE(gaps_untouched(y_got, y_start, c.rows, C, c.ldy));

      // Determinism: the same inputs (running stats reset) give bitwise the same outputs.
      rm.upload(in.running_mean);
      rv.upload(in.running_var);
      y.upload(y_start);
      run();
      EXPECT_TRUE(bitwise_equal(y.download(), y_got));
      EXPECT_TRUE(bitwise_equal(mean.download(), mean_got));
      EXPECT_TRUE(bitwise_equal(invstd.download(), invstd_got));
    }
  }
}

TEST_P(CudaBatchNorm, ForwardEval) {
  SKIP_WITHOUT_CUDA();
  const BnCase c = GetParam();
  const Inputs in(c, 202);
  const int64_t C = c.channels;
  for (bool with_affine : {true, false}) {
    const std::vector<float> y_start =
        strided(std::vector<float>(size_t(c.rows * C), kNaN), c.rows, C, c.ldy, kGapSentinel);
    std::vector<float> y_ref = y_start;
    kernels::cpu::batch_norm_forward_eval(
        {in.x.data(), c.rows, C, c.ldx}, {y_ref.data(), c.rows, C, c.ldy},
        {with_affine ? in.gamma.data() : nullptr, with_affine ? in.beta.data() : nullptr,
         in.running_mean.data(), in.running_var.data()},
        {1e-3f});
    DeviceBuffer x(in.x), gamma(in.gamma), beta(in.beta), y(y_start), rm(in.running_mean),
        rv(in.running_var);
    kernels::cuda::batch_norm_forward_eval({x.get(), c.rows, C, c.ldx}, {y.get(), c.rows, C, c.ldy},
                                           {with_affine ? gamma.get() : nullptr,
                                            with_affine ? beta.get() : nullptr, rm.get(), rv.get()},
                                           {1e-3f});
    const std::vector<float> y_got = y.download();
    EXPECT_TRUE(close(dense_part(y_got, c.rows, C, c.ldy), dense_part(y_ref, c.rows, C, c.ldy),
                      1e-5, 1e-5))
        << (with_affine ? "gamma/beta" : "no gamma/beta");
    EXPECT_TRUE(gaps_untouched(y_got, y_start, c.rows, C, c.ldy));
  }
}

// Backward, training (saved statistics) or eval (running statistics), every combination of
// gamma present, dx overwrite/accumulate/absent and dgamma/dbeta present/absent.
void check_backward(const BnCase& c, bool training) {
  const Inputs in(c, training ? 303 : 404);
  const int64_t C = c.channels;
  // The saved statistics of a training forward on x (from the CPU; the GPU's agree, see above).
  std::vector<float> saved_mean(static_cast<size_t>(C)), saved_invstd(static_cast<size_t>(C));
  {
    std::vector<float> y(size_t(c.rows * C));
    kernels::cpu::batch_norm_forward_training(
        {in.x.data(), c.rows, C, c.ldx}, {y.data(), c.rows, C, C}, {nullptr, nullptr},
        {saved_mean.data(), saved_invstd.data(), nullptr, nullptr}, {1e-3f, 0.0f, false});
  }
  const std::vector<float> dx_prior = strided(away_from_zero(size_t(c.rows * C), 505), c.rows, C,
                                              c.ldx, kGapSentinel);
  const std::vector<float> dx_poison =
      strided(std::vector<float>(size_t(c.rows * C), kNaN), c.rows, C, c.ldx, kGapSentinel);
  const std::vector<float> dgamma_prior = away_from_zero(size_t(C), 506);
  const std::vector<float> dbeta_prior = away_from_zero(size_t(C), 507);

  for (bool with_gamma : {true, false})
    for (int dx_mode : {0, 1, 2})  // 0: overwrite, 1: accumulate, 2: no dx
      for (bool with_param_grads : {true, false}) {
        if (dx_mode == 2 && !with_param_grads) continue;
        SCOPED_TRACE(std::string(training ? "training" : "eval") +
                     (with_gamma ? ", gamma" : ", no gamma") + ", dx mode " +
                     std::to_string(dx_mode) + (with_param_grads ? ", dgamma/dbeta" : ""));
        const bool accumulate = dx_mode == 1;
        const std::vector<float>& dx_start = accumulate ? dx_prior : dx_poison;
        std::vector<float> dx_ref = dx_start, dgamma_ref = dgamma_prior, dbeta_ref = dbeta_prior;
        float* dx_ref_ptr = dx_mode == 2 ? nullptr : dx_ref.data();
        const float* gamma_host = with_gamma ? in.gamma.data() : nullptr;
        float* dg_ref = with_param_grads ? dgamma_ref.data() : nullptr;
        float* db_ref = with_param_grads ? dbeta_ref.data() : nullptr;
        if (training)
          kernels::cpu::batch_norm_backward_training(
              {in.x.data(), c.rows, C, c.ldx}, {in.dy.data(), c.rows, C, c.ldy},
              {gamma_host, nullptr, nullptr, nullptr, saved_mean.data(), saved_invstd.data()},
              {dx_ref_ptr, c.rows, C, c.ldx}, accumulate, {dg_ref, db_ref});
        else
          kernels::cpu::batch_norm_backward_eval(
              {in.x.data(), c.rows, C, c.ldx}, {in.dy.data(), c.rows, C, c.ldy},
              {gamma_host, nullptr, in.running_mean.data(), in.running_var.data()}, {1e-3f},
              {dx_ref_ptr, c.rows, C, c.ldx}, accumulate, {dg_ref, db_ref});

        DeviceBuffer x(in.x), dy(in.dy), gamma(in.gamma), mean(saved_mean), invstd(saved_invstd),
            rm(in.running_mean), rv(in.running_var), dx(dx_start), dgamma(dgamma_prior),
            dbeta(dbeta_prior);
        auto run = [&] {
          float* dx_ptr = dx_mode == 2 ? nullptr : dx.get();
          const float* g = with_gamma ? gamma.get() : nullptr;
          float* dg = with_param_grads ? dgamma.get() : nullptr;
          float* db = with_param_grads ? dbeta.get() : nullptr;
          if (training)
            kernels::cuda::batch_norm_backward_training(
                {x.get(), c.rows, C, c.ldx}, {dy.get(), c.rows, C, c.ldy},
                {g, nullptr, nullptr, nullptr, mean.get(), invstd.get()},
                {dx_ptr, c.rows, C, c.ldx}, accumulate, {dg, db});
          else
            kernels::cuda::batch_norm_backward_eval(
                {x.get(), c.rows, C, c.ldx}, {dy.get(), c.rows, C, c.ldy},
                {g, nullptr, rm.get(), rv.get()}, {1e-3f}, {dx_ptr, c.rows, C, c.ldx}, accumulate,
                {dg, db});
        };
        run();
        const std::vector<float> dx_got = dx.download(), dgamma_got = dgamma.download(),
                                 dbeta_got = dbeta.download();
        if (dx_mode == 2) {
          EXPECT_TRUE(bitwise_equal(dx_got, dx_start)) << "dx was written although null";
        } else {
          EXPECT_TRUE(close(dense_part(dx_got, c.rows, C, c.ldx),
                            dense_part(dx_ref, c.rows, C, c.ldx), 1e-5, 1e-5))
              << "dx";
          EXPECT_TRUE(gaps_untouched(dx_got, dx_start, c.rows, C, c.ldx));
        }
        EXPECT_TRUE(close(dgamma_got, dgamma_ref, 1e-4, 1e-5)) << "dgamma";
        EXPECT_TRUE(close(dbeta_got, dbeta_ref, 1e-4, 1e-5)) << "dbeta";

        // Determinism.
        dx.upload(dx_start);
        dgamma.upload(dgamma_prior);
        dbeta.upload(dbeta_prior);
        run();
        EXPECT_TRUE(bitwise_equal(dx.download(), dx_got));
        EXPECT_TRUE(bitwise_equal(dgamma.download(), dgamma_got));
        EXPECT_TRUE(bitwise_equal(dbeta.download(), dbeta_got));
      }
}

TEST_P(CudaBatchNorm, BackwardTraining) {
  SKIP_WITHOUT_CUDA();
  check_backward(GetParam(), true);
}

TEST_P(CudaBatchNorm, BackwardEval) {
  SKIP_WITHOUT_CUDA();
  check_backward(GetParam(), false);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaBatchNorm,
    ::testing::Values(BnCase{"one_row", 1, 7, 7, 7},  // M = 1: the unbiased factor is undefined
                      BnCase{"odd_5x3", 5, 3, 4, 6},
                      // DenseNet: 56x56x128 at batch 4, read from a 256-wide concatenation buffer
                      BnCase{"densenet_56x56x128_b4_ld256", 12544, 128, 256, 128},
                      // DenseNet-201's last block: 7x7x1920 at batch 4
                      BnCase{"densenet_7x7x1920_b4", 196, 1920, 1920, 1920},
                      // Inception-ResNet-v2 17x17 branch (192 channels) at batch 4
                      BnCase{"irv2_17x17x192_b4", 1156, 192, 1088, 192},
                      // Many rows in few channels: long chunks of rows per block and a partial last one
                      BnCase{"long_40001x12", 40001, 12, 12, 12}),
    test_support::case_name<BnCase>);

TEST(CudaBatchNormEdges, EmptyWritesNothing) {
  SKIP_WITHOUT_CUDA();
  DeviceBuffer buffer(std::vector<float>(8, kGapSentinel));
  kernels::cuda::batch_norm_forward_training(
      {buffer.get(), 0, 4, 4}, {buffer.get(), 0, 4, 4}, {nullptr, nullptr},
      {buffer.get(), buffer.get(), buffer.get(), buffer.get()}, {1e-3f, 0.1f, true});
  EXPECT_TRUE(bitwise_equal(buffer.download(), std::vector<float>(8, kGapSentinel)));
}

// Doubles in a float DeviceBuffer (two floats each), for the synchronised batch norm's per-channel sums.
std::vector<float> as_float_words(const std::vector<double>& d) {
  std::vector<float> words(2 * d.size());
  std::memcpy(words.data(), d.data(), d.size() * sizeof(double));
  return words;
}
std::vector<double> as_doubles(const std::vector<float>& words) {
  std::vector<double> d(words.size() / 2);
  std::memcpy(d.data(), words.data(), d.size() * sizeof(double));
  return d;
}

// The synchronised batch norm's per-channel maths (--sync-bn) against the CPU's, bit for bit: both round
// each double operation once, in the same order.
TEST(CudaBatchNormSync, PerChannelMathsMatchTheCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const int64_t C = 301;
  const auto Cs = static_cast<size_t>(C);
  const double count = 4 * 17 * 17;
  std::vector<double> sums(2 * C), var_sums(C);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> value(-300.0, 900.0), positive(0.5, 4000.0);
  for (double& v : sums) v = value(rng);
  for (double& v : var_sums) v = positive(rng);
  const std::vector<float> rm0 = away_from_zero(Cs, 8), rv0 = uniform(Cs, 9, 0.5f, 2.0f);

  std::vector<double> mean_ref(Cs);
  kernels::cpu::batch_norm_sync_mean(sums.data(), C, count, mean_ref.data());
  DeviceBuffer sums_d(as_float_words(sums)), var_sums_d(as_float_words(var_sums)), mean_d(2 * Cs);
  kernels::cuda::batch_norm_sync_mean(reinterpret_cast<double*>(sums_d.get()), C, count,
                                      reinterpret_cast<double*>(mean_d.get()));
  EXPECT_EQ(as_doubles(mean_d.download()), mean_ref) << "mean";

  for (const bool unbiased : {true, false}) {
    SCOPED_TRACE(unbiased ? "unbiased running variance" : "biased running variance");
    const kernels::BatchNormHyper h{1e-3f, 0.1f, unbiased};
    std::vector<float> saved_mean(Cs), saved_invstd(Cs), rm = rm0, rv = rv0;
    kernels::cpu::batch_norm_sync_statistics(mean_ref.data(), var_sums.data(), C, count,
                                             {saved_mean.data(), saved_invstd.data(), rm.data(), rv.data()}, h);
    DeviceBuffer saved_mean_d(Cs), saved_invstd_d(Cs), rm_d(rm0), rv_d(rv0);
    kernels::cuda::batch_norm_sync_statistics(reinterpret_cast<const double*>(mean_d.get()),
                                              reinterpret_cast<const double*>(var_sums_d.get()), C, count,
                                              {saved_mean_d.get(), saved_invstd_d.get(), rm_d.get(), rv_d.get()}, h);
    EXPECT_TRUE(bitwise_equal(saved_mean_d.download(), saved_mean)) << "saved_mean";
    EXPECT_TRUE(bitwise_equal(saved_invstd_d.download(), saved_invstd)) << "saved_invstd";
    EXPECT_TRUE(bitwise_equal(rm_d.download(), rm)) << "running_mean";
    EXPECT_TRUE(bitwise_equal(rv_d.download(), rv)) << "running_var";
  }

  std::vector<float> dgamma(Cs), dbeta(Cs);
  kernels::cpu::batch_norm_sync_parameter_grads(sums.data(), C, {dgamma.data(), dbeta.data()});
  DeviceBuffer dgamma_d(Cs), dbeta_d(Cs);  // NaN before: written, not accumulated
  kernels::cuda::batch_norm_sync_parameter_grads(reinterpret_cast<const double*>(sums_d.get()), C,
                                                 {dgamma_d.get(), dbeta_d.get()});
  EXPECT_TRUE(bitwise_equal(dgamma_d.download(), dgamma)) << "dgamma";
  EXPECT_TRUE(bitwise_equal(dbeta_d.download(), dbeta)) << "dbeta";
}

// The synchronised batch norm's passes over the activations against the CPU's, on a strided slice: the
// channel sums (plain and centred; double, another summation order: 1e-12 relative), the backward's two
// sums, and y and dx from given statistics and sums (1e-5, as the training kernels).
TEST(CudaBatchNormSync, ActivationPassesMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  const int64_t rows = 1156, C = 40, ld = 48;
  const auto Cs = static_cast<size_t>(C);
  const std::vector<float> x = strided(away_from_zero(size_t(rows * C), 41, 0.1f, 2.0f), rows, C, ld, kNaN);
  const std::vector<float> dy = strided(away_from_zero(size_t(rows * C), 42), rows, C, ld, kNaN);
  const std::vector<float> gamma = away_from_zero(Cs, 43, 0.5f, 1.5f), beta = away_from_zero(Cs, 44);
  std::vector<float> mean(Cs), invstd(Cs);
  std::vector<float> scratch(size_t(rows * ld));
  kernels::cpu::batch_norm_forward_training({x.data(), rows, C, ld}, {scratch.data(), rows, C, ld}, {},
                                            {mean.data(), invstd.data(), nullptr, nullptr}, {1e-3f, 0.1f, true});
  const auto doubles_close = [](const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!(std::fabs(a[i] - b[i]) <= 1e-12 * std::fabs(b[i]) + 1e-9)) return false;  // NaN fails
    return true;
  };
  DeviceBuffer x_d(x), dy_d(dy), gamma_d(gamma), beta_d(beta), mean_d(mean), invstd_d(invstd);
  // Sums, plain and around a center (the mean, in double).
  std::vector<double> sums(Cs), centred(Cs), center(Cs);
  for (size_t c = 0; c < Cs; ++c) center[c] = double(mean[c]);
  kernels::cpu::batch_norm_channel_sums({x.data(), rows, C, ld}, nullptr, sums.data());
  kernels::cpu::batch_norm_channel_sums({x.data(), rows, C, ld}, center.data(), centred.data());
  DeviceBuffer sums_d(2 * Cs), centred_d(2 * Cs), center_d(as_float_words(center));
  kernels::cuda::batch_norm_channel_sums({x_d.get(), rows, C, ld}, nullptr, reinterpret_cast<double*>(sums_d.get()));
  kernels::cuda::batch_norm_channel_sums({x_d.get(), rows, C, ld}, reinterpret_cast<const double*>(center_d.get()),
                                         reinterpret_cast<double*>(centred_d.get()));
  EXPECT_TRUE(doubles_close(as_doubles(sums_d.download()), sums)) << "sum x";
  EXPECT_TRUE(doubles_close(as_doubles(centred_d.download()), centred)) << "sum (x - center)^2";
  // y from the given statistics.
  kernels::BatchNormChannels ch{gamma.data(), beta.data(), nullptr, nullptr, mean.data(), invstd.data()};
  kernels::BatchNormChannels ch_d{gamma_d.get(), beta_d.get(), nullptr, nullptr, mean_d.get(), invstd_d.get()};
  std::vector<float> y = strided(std::vector<float>(size_t(rows * C), kNaN), rows, C, ld, kGapSentinel);
  DeviceBuffer y_d(y);
  kernels::cpu::batch_norm_normalize_forward({x.data(), rows, C, ld}, {y.data(), rows, C, ld}, ch);
  kernels::cuda::batch_norm_normalize_forward({x_d.get(), rows, C, ld}, {y_d.get(), rows, C, ld}, ch_d);
  const std::vector<float> y_got = y_d.download();
  EXPECT_TRUE(close(dense_part(y_got, rows, C, ld), dense_part(y, rows, C, ld), 1e-5, 1e-5)) << "y";
  EXPECT_TRUE(gaps_untouched(y_got, y, rows, C, ld)) << "y's gaps";
  // Backward: the two sums, then dx from them over `rows` rows.
  std::vector<double> grad_sums(2 * Cs);
  kernels::cpu::batch_norm_backward_channel_sums({x.data(), rows, C, ld}, {dy.data(), rows, C, ld}, ch, grad_sums.data());
  DeviceBuffer grad_sums_d(4 * Cs);
  kernels::cuda::batch_norm_backward_channel_sums({x_d.get(), rows, C, ld}, {dy_d.get(), rows, C, ld}, ch_d,
                                                  reinterpret_cast<double*>(grad_sums_d.get()));
  EXPECT_TRUE(doubles_close(as_doubles(grad_sums_d.download()), grad_sums)) << "sum dy, sum dy xhat";
  std::vector<float> dx = strided(std::vector<float>(size_t(rows * C), kNaN), rows, C, ld, kGapSentinel);
  DeviceBuffer dx_d(dx), cpu_sums_d(as_float_words(grad_sums));
  kernels::cpu::batch_norm_normalize_backward({x.data(), rows, C, ld}, {dy.data(), rows, C, ld}, ch, grad_sums.data(),
                                              double(rows), {dx.data(), rows, C, ld});
  kernels::cuda::batch_norm_normalize_backward({x_d.get(), rows, C, ld}, {dy_d.get(), rows, C, ld}, ch_d,
                                               reinterpret_cast<const double*>(cpu_sums_d.get()), double(rows),
                                               {dx_d.get(), rows, C, ld});
  const std::vector<float> dx_got = dx_d.download();
  EXPECT_TRUE(close(dense_part(dx_got, rows, C, ld), dense_part(dx, rows, C, ld), 1e-5, 1e-5)) << "dx";
  EXPECT_TRUE(gaps_untouched(dx_got, dx, rows, C, ld)) << "dx's gaps";
}

}  // namespace

#else

TEST(CudaBatchNorm, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
