// GPU batch normalisation on all-bf16 activations (kernels/cuda/batchnorm.cu: x, y, dy, dx bf16 and
// native; statistics, parameters and their gradients f32) against the CPU's bf16 emulation
// (kernels/cpu/batchnorm.cpp through kernels/bf16_emulation.h: widen, the f32 kernel, one rounding per
// stored value): training forward and backward, eval forward and backward, plain and fused with ReLU,
// dx overwrite and accumulate and absent (parameter gradients only). Shapes cover the 16-byte statistics
// path (8 bf16 a load: C and ld multiples of 8) and the scalar one (odd C or ld).
// Both sides read the same bf16 x and dy, so they differ only as the f32 kernels do (double sums in
// another order, FMA): tolerances (atol + rtol |ref|) are the f32 GPU tests' for the f32 outputs
//   saved_mean, saved_invstd, running stats: 1e-6 + 1e-5 |ref|;  dgamma, dbeta: 1e-4 + 1e-5 |ref|
// and one bf16 ulp for the bf16 outputs (an f32 difference may move a rounding): y, dx 1e-5 + 8e-3 |ref|.
// The ReLU mask is recomputed on each side from its own statistics, so x is centred per channel and
// away from its mean (|x - mean| >= 0.1, beta = 0): no element sits at the kink.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "gpu_test_util.h"
#include "kernels/batchnorm.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;
using engine::Device;
using engine::Tensor;
using kernels::DType;

struct Case {
  const char* name;
  int64_t rows, channels, ld;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class CudaBatchNormBf16 : public ::testing::TestWithParam<Case> {};

// The batch-norm kernels of one backend.
struct Backend {
  decltype(&kernels::cpu::batch_norm_forward_training) forward_training, relu_forward_training;
  decltype(&kernels::cpu::batch_norm_forward_eval) forward_eval, relu_forward_eval;
  decltype(&kernels::cpu::batch_norm_backward_training) backward_training, relu_backward_training;
  decltype(&kernels::cpu::batch_norm_backward_eval) backward_eval;
};
const Backend kCpu{&kernels::cpu::batch_norm_forward_training, &kernels::cpu::batch_norm_relu_forward_training,
                   &kernels::cpu::batch_norm_forward_eval,     &kernels::cpu::batch_norm_relu_forward_eval,
                   &kernels::cpu::batch_norm_backward_training, &kernels::cpu::batch_norm_relu_backward_training,
                   &kernels::cpu::batch_norm_backward_eval};
const Backend kCuda{&kernels::cuda::batch_norm_forward_training, &kernels::cuda::batch_norm_relu_forward_training,
                    &kernels::cuda::batch_norm_forward_eval,     &kernels::cuda::batch_norm_relu_forward_eval,
                    &kernels::cuda::batch_norm_backward_training, &kernels::cuda::batch_norm_relu_backward_training,
                    &kernels::cuda::batch_norm_backward_eval};

// Every output of one run on one device, as host floats (bf16 ones widened, dense part only).
struct Outputs {
  std::vector<std::vector<float>> bf16, f32;
};

Outputs run(const Case& c, Device device, bool relu, bool accumulate, bool with_dx) {
  const Backend& k = device.is_cpu() ? kCpu : kCuda;
  const int64_t R = c.rows, C = c.channels, L = c.ld;
  const size_t nC = size_t(C);
  // x: centred per channel, away from the mean (see the top); dy and a prior dx: uniform.
  std::vector<float> dense = away_from_zero(size_t(R * C), 1, 0.1f, 1.0f);
  for (int64_t ch = 0; ch < C; ++ch) {
    double mean = 0;
    for (int64_t r = 0; r < R; ++r) mean += dense[size_t(r * C + ch)];
    for (int64_t r = 0; r < R; ++r) dense[size_t(r * C + ch)] -= float(mean / double(R));
  }
  auto bf16 = [&](const std::vector<float>& v) { return Tensor::from_vector({R, L}, v, device, DType::bf16); };
  auto f32 = [&](const std::vector<float>& v) { return Tensor::from_vector({int64_t(v.size())}, v, device); };
  auto view = [&](const Tensor& t) { return kernels::MatrixView(t.raw_data(), R, C, L, DType::bf16); };
  const Tensor x = bf16(strided(dense, R, C, L, kNaN));
  const Tensor dy = bf16(strided(uniform(size_t(R * C), 2), R, C, L, kNaN));
  const std::vector<float> dx_start = accumulate ? strided(uniform(size_t(R * C), 3), R, C, L, kGapSentinel)
                                                 : strided(std::vector<float>(size_t(R * C), kNaN), R, C, L, kGapSentinel);
  const Tensor y_train = bf16(std::vector<float>(size_t(R * L), 0.0f)), y_eval = y_train.clone();
  const Tensor dx_train = bf16(dx_start), dx_eval = bf16(dx_start);
  const Tensor gamma = f32(uniform(nC, 4, 0.5f, 1.5f)), beta = f32(std::vector<float>(nC, 0.0f));
  const Tensor rm = f32(uniform(nC, 5, -0.1f, 0.1f)), rv = f32(uniform(nC, 6, 0.5f, 1.5f));
  const Tensor rm_eval = rm.clone(), rv_eval = rv.clone();  // eval reads the running stats before the update
  const Tensor mean = f32(std::vector<float>(nC)), invstd = f32(std::vector<float>(nC));
  const Tensor dg_train = f32(std::vector<float>(nC, 0.5f)), db_train = f32(std::vector<float>(nC, -0.5f));
  const Tensor dg_eval = dg_train.clone(), db_eval = db_train.clone();
  const kernels::BatchNormHyper h{1e-3f, 0.1f, true};

  (relu ? k.relu_forward_training : k.forward_training)(view(x), view(y_train), {gamma.data(), beta.data()},
                                                        {mean.data(), invstd.data(), rm.data(), rv.data()}, h);
  kernels::BatchNormChannels saved{gamma.data(), beta.data(), nullptr, nullptr, mean.data(), invstd.data()};
  const kernels::MatrixView no_dx;
  (relu ? k.relu_backward_training : k.backward_training)(view(x), view(dy), saved,
                                                          with_dx ? view(dx_train) : no_dx, accumulate,
                                                          {dg_train.data(), db_train.data()});
  const kernels::BatchNormChannels running{gamma.data(), beta.data(), rm_eval.data(), rv_eval.data(), nullptr,
                                           nullptr};
  (relu ? k.relu_forward_eval : k.forward_eval)(view(x), view(y_eval), running, h);
  k.backward_eval(view(x), view(dy), running, h, with_dx ? view(dx_eval) : no_dx, accumulate,
                  {dg_eval.data(), db_eval.data()});

  Outputs out;
  for (const Tensor* t : {&y_train, &dx_train, &y_eval, &dx_eval})
    out.bf16.push_back(dense_part(t->to_vector(), R, C, L));
  for (const Tensor* t : {&mean, &invstd, &rm, &rv, &dg_train, &db_train, &dg_eval, &db_eval})
    out.f32.push_back(t->to_vector());
  return out;
}

TEST_P(CudaBatchNormBf16, MatchesCpuEmulation) {
  SKIP_WITHOUT_CUDA();
  const Case c = GetParam();
  const char* bf16_names[4] = {"y (training)", "dx (training)", "y (eval)", "dx (eval)"};
  const char* f32_names[8] = {"saved_mean", "saved_invstd", "running_mean", "running_var",
                              "dgamma (training)", "dbeta (training)", "dgamma (eval)", "dbeta (eval)"};
  for (bool relu : {false, true})
    for (bool accumulate : {false, true})
      for (bool with_dx : {true, false}) {
        SCOPED_TRACE(std::string(relu ? "fused ReLU" : "plain") + (accumulate ? ", accumulate" : ", overwrite") +
                     (with_dx ? "" : ", no dx"));
        const Outputs ref = run(c, Device::cpu(), relu, accumulate, with_dx);
        const Outputs got = run(c, Device::cuda(), relu, accumulate, with_dx);
        for (size_t i = 0; i < 4; ++i) {
          const bool untouched_dx = (i == 1 || i == 3) && !with_dx;  // both keep their start (NaN when
          if (untouched_dx)                                          // overwriting), which close() fails
            EXPECT_TRUE(bitwise_equal(got.bf16[i], ref.bf16[i])) << bf16_names[i];
          else
            EXPECT_TRUE(close(got.bf16[i], ref.bf16[i], 1e-5, 8e-3)) << bf16_names[i];
        }
        for (size_t i = 0; i < 8; ++i) {
          const bool sums = i >= 4;
          EXPECT_TRUE(close(got.f32[i], ref.f32[i], sums ? 1e-4 : 1e-6, 1e-5)) << f32_names[i];
        }
      }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaBatchNormBf16,
    ::testing::Values(Case{"one_row", 1, 8, 8}, Case{"odd_5x3_ld5_scalar_path", 5, 3, 5},
                      Case{"vector_path_64x16", 64, 16, 16},
                      Case{"densenet_56x56x128_b1_ld256", 3136, 128, 256},
                      Case{"densenet_7x7x1920_b2", 98, 1920, 1920},
                      Case{"irv2_17x17x192_b1_ld1088", 289, 192, 1088},
                      Case{"odd_999x20_ld21", 999, 20, 21}),
    test_support::case_name<Case>);

}  // namespace

#else

TEST(CudaBatchNormBf16, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
