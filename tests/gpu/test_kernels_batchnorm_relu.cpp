// GPU batch norm fused with ReLU (kernels/cuda/batchnorm.cu, batch_norm_relu_*) against the CPU
// reference (kernels/cpu/batchnorm.cpp), and the one-pass streaming statistics of training forward on
// inputs whose mean is far from zero (the cancellation case of E[x^2] - E[x]^2). Shapes cover the
// 16-byte vector path (C and ld multiples of 4, aligned) and the scalar path (odd C or ld), M = 1, and
// DenseNet/IRv2 sizes. Tolerances (atol + rtol |ref|), as tests/gpu/test_kernels_batchnorm.cpp:
//   saved_mean, saved_invstd, running stats: 1e-6 + 1e-5 |ref| (double sums in another order);
//   y, dx: 1e-5 + 1e-5 |ref|; dgamma, dbeta: 1e-4 + 1e-5 |ref|.
// The ReLU mask is recomputed from the saved statistics, and with gamma and beta the kink z = 0 lies inside
// the data: the CPU's backward reference takes the GPU's saved statistics, so that both decide each
// element's side from the same floats (the statistics themselves are compared by tolerance). Also: two
// GPU runs are bit for bit the same.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/batchnorm.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

struct Case {
  const char* name;
  int64_t rows, channels, ld;
  float offset;  // added to every x: the statistics' cancellation test
};

class CudaBatchNormRelu : public ::testing::TestWithParam<Case> {};

// x = offset + a value away from zero per element, centred per channel so that z stays away from 0.
std::vector<float> make_input(const Case& c, uint64_t seed) {
  std::vector<float> dense = away_from_zero(size_t(c.rows * c.channels), seed, 0.1f, 1.0f);
  for (int64_t ch = 0; ch < c.channels; ++ch) {
    double mean = 0;
    for (int64_t r = 0; r < c.rows; ++r) mean += dense[size_t(r * c.channels + ch)];
    mean /= double(c.rows);
    for (int64_t r = 0; r < c.rows; ++r) dense[size_t(r * c.channels + ch)] -= float(mean);
  }
  for (float& v : dense) v += c.offset;
  return strided(dense, c.rows, c.channels, c.ld, kNaN);
}

TEST_P(CudaBatchNormRelu, ForwardTrainingAndBackward) {
  SKIP_WITHOUT_CUDA();
  const Case c = GetParam();
  const int64_t C = c.channels;
  const size_t nC = static_cast<size_t>(C);
  const std::vector<float> x = make_input(c, 1);
  const std::vector<float> dy = strided(uniform(size_t(c.rows * C), 2), c.rows, C, c.ld, kNaN);
  const std::vector<float> rm0 = uniform(nC, 3, -0.1f, 0.1f), rv0 = uniform(nC, 4, 0.5f, 1.5f);
  const kernels::BatchNormHyper h{1e-5f, 0.1f, true};
  // gamma and beta move the ReLU's threshold away from xhat = 0: the mask must use both.
  const std::vector<float> gamma = uniform(nC, 5, 0.5f, 1.5f), beta = uniform(nC, 6, -0.5f, 0.5f);

  // CPU reference.
  std::vector<float> y_ref(x.size(), kGapSentinel), mean_ref(nC), invstd_ref(nC), rm_ref = rm0,
      rv_ref = rv0;
  kernels::cpu::batch_norm_relu_forward_training({x.data(), c.rows, C, c.ld}, {y_ref.data(), c.rows, C, c.ld},
                                                 {gamma.data(), beta.data()},
                                                 {mean_ref.data(), invstd_ref.data(), rm_ref.data(), rv_ref.data()}, h);
  // The backward's reference takes the GPU's saved statistics (below): with gamma and beta the ReLU's kink
  // lies inside the data, and an element within rounding of it must fall on the same side on both.
  std::vector<float> dx_ref(x.size(), kGapSentinel), dg_ref(nC, 0.5f), db_ref(nC, -0.5f);

  std::vector<float> first_y, first_dx;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer dx_in(x), dy_in(dy), y(std::vector<float>(x.size(), kGapSentinel)), mean(nC),
        invstd(nC), rm(rm0), rv(rv0), gamma_d(gamma), beta_d(beta);
    kernels::cuda::batch_norm_relu_forward_training({dx_in.get(), c.rows, C, c.ld}, {y.get(), c.rows, C, c.ld},
                                                    {gamma_d.get(), beta_d.get()},
                                                    {mean.get(), invstd.get(), rm.get(), rv.get()}, h);
    EXPECT_TRUE(close(mean.download(), mean_ref, 1e-6, 1e-5)) << "saved_mean";
    EXPECT_TRUE(close(invstd.download(), invstd_ref, 1e-6, 1e-5)) << "saved_invstd";
    EXPECT_TRUE(close(rm.download(), rm_ref, 1e-6, 1e-5)) << "running_mean";
    EXPECT_TRUE(close(rv.download(), rv_ref, 1e-6, 1e-5)) << "running_var";
    const std::vector<float> y_host = y.download();
    if (run == 0) {
      std::vector<float> gpu_mean = mean.download(), gpu_invstd = invstd.download();
      kernels::BatchNormChannels ch_ref;
      ch_ref.gamma = gamma.data();
      ch_ref.beta = beta.data();
      ch_ref.saved_mean = gpu_mean.data();
      ch_ref.saved_invstd = gpu_invstd.data();
      kernels::cpu::batch_norm_relu_backward_training({x.data(), c.rows, C, c.ld}, {dy.data(), c.rows, C, c.ld},
                                                      ch_ref, {dx_ref.data(), c.rows, C, c.ld}, false,
                                                      {dg_ref.data(), db_ref.data()});
    }
    EXPECT_TRUE(close(dense_part(y_host, c.rows, C, c.ld), dense_part(y_ref, c.rows, C, c.ld), 1e-5, 1e-5)) << "y";
    EXPECT_TRUE(gaps_untouched(y_host, std::vector<float>(x.size(), kGapSentinel), c.rows, C, c.ld));

    kernels::BatchNormChannels ch;
    ch.gamma = gamma_d.get();
    ch.beta = beta_d.get();
    ch.saved_mean = mean.get();
    ch.saved_invstd = invstd.get();
    DeviceBuffer dx(std::vector<float>(x.size(), kGapSentinel)), dg(std::vector<float>(nC, 0.5f)),
        db(std::vector<float>(nC, -0.5f));
    kernels::cuda::batch_norm_relu_backward_training({dx_in.get(), c.rows, C, c.ld}, {dy_in.get(), c.rows, C, c.ld},
                                                     ch, {dx.get(), c.rows, C, c.ld}, false, {dg.get(), db.get()});
    const std::vector<float> dx_host = dx.download();
    EXPECT_TRUE(close(dense_part(dx_host, c.rows, C, c.ld), dense_part(dx_ref, c.rows, C, c.ld), 1e-5, 1e-5)) << "dx";
    EXPECT_TRUE(close(dg.download(), dg_ref, 1e-4, 1e-5)) << "dgamma";
    EXPECT_TRUE(close(db.download(), db_ref, 1e-4, 1e-5)) << "dbeta";
    if (run == 0) {
      first_y = y_host;
      first_dx = dx_host;
    } else {
      EXPECT_TRUE(bitwise_equal(y_host, first_y)) << "y run to run";
      EXPECT_TRUE(bitwise_equal(dx_host, first_dx)) << "dx run to run";
    }
  }
}

TEST_P(CudaBatchNormRelu, ForwardEval) {
  SKIP_WITHOUT_CUDA();
  const Case c = GetParam();
  const int64_t C = c.channels;
  const size_t nC = static_cast<size_t>(C);
  const std::vector<float> x = make_input(c, 5);
  const std::vector<float> gamma = uniform(nC, 6, 0.5f, 1.5f), beta = uniform(nC, 7, -0.5f, 0.5f);
  const std::vector<float> rm = uniform(nC, 8, -0.1f, 0.1f), rv = uniform(nC, 9, 0.5f, 1.5f);
  std::vector<float> y_ref(x.size(), kGapSentinel);
  kernels::BatchNormChannels ch_ref{gamma.data(), beta.data(), rm.data(), rv.data(), nullptr, nullptr};
  kernels::cpu::batch_norm_relu_forward_eval({x.data(), c.rows, C, c.ld}, {y_ref.data(), c.rows, C, c.ld}, ch_ref,
                                             {1e-3f, 0.1f, true});
  DeviceBuffer xd(x), y(std::vector<float>(x.size(), kGapSentinel)), g(gamma), b(beta), m(rm), v(rv);
  kernels::BatchNormChannels ch{g.get(), b.get(), m.get(), v.get(), nullptr, nullptr};
  kernels::cuda::batch_norm_relu_forward_eval({xd.get(), c.rows, C, c.ld}, {y.get(), c.rows, C, c.ld}, ch,
                                              {1e-3f, 0.1f, true});
  EXPECT_TRUE(close(dense_part(y.download(), c.rows, C, c.ld), dense_part(y_ref, c.rows, C, c.ld), 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaBatchNormRelu,
    ::testing::Values(Case{"one_row", 1, 8, 8, 0.0f}, Case{"odd_5x3_scalar_path", 5, 3, 4, 0.0f},
                      Case{"vector_path_64x16", 64, 16, 16, 0.0f},
                      Case{"densenet_56x56x128_b4_ld256", 12544, 128, 256, 0.0f},
                      Case{"densenet_7x7x1920_b4", 196, 1920, 1920, 0.0f},
                      Case{"irv2_17x17x192_b4_ld1088", 1156, 192, 1088, 0.0f},
                      Case{"mean_1000_cancellation", 4096, 32, 32, 1000.0f},
                      Case{"odd_ld_mean_100", 999, 20, 21, 100.0f}),
    test_support::case_name<Case>);

}  // namespace

#else

TEST(CudaBatchNormRelu, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
