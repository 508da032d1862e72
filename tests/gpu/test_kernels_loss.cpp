// GPU binary cross-entropy (kernels/cuda/loss.cu) against the CPU reference (kernels/cpu/loss.cpp).
// Tolerances (atol + rtol |ref|):
//   BCE loss (double, reduction order differs):  1e-12 relative
//   BCE gradient (double maths, float result):   1e-10 + 1e-6 |ref|
//   bf16 operands against the CPU emulation:     loss 1e-12 relative, gradient one bf16 ulp (8e-3 |ref|)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "gpu_test_util.h"
#include "kernels/loss.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

struct BceCase {
  const char* name;
  int64_t n;
  bool weights;
};

void PrintTo(const BceCase& c, std::ostream* os) { *os << c.name; }

class CudaBce : public ::testing::TestWithParam<BceCase> {};

TEST_P(CudaBce, ForwardBackward) {
  SKIP_WITHOUT_CUDA();
  const BceCase c = GetParam();
  const size_t n = size_t(c.n);
  std::vector<float> logits = away_from_zero(n, 71, 0.05f, 6.0f);
  // Extreme logits where the naive formula overflows or cancels.
  const float extremes[] = {30.0f, -30.0f, 1e4f, -1e4f, 88.0f, -88.0f};
  for (size_t i = 0; i < std::min<size_t>(n, 6); ++i) logits[i] = extremes[i];
  std::vector<float> targets = uniform(n, 72, 0.0f, 1.0f);  // soft targets
  for (size_t i = 0; i < n; i += 3) targets[i] = float(i % 2);  // and hard ones
  const std::vector<float> weights = uniform(n, 73, 0.25f, 2.0f);
  const float* w_host = c.weights ? weights.data() : nullptr;

  DeviceBuffer z(logits), t(targets), w(weights);
  const float* w_dev = c.weights ? w.get() : nullptr;
  const double cpu = kernels::cpu::bce_with_logits_forward(
      {logits.data(), c.n, 1, 1}, {targets.data(), c.n, 1, 1}, {w_host, c.n, 1, 1});
  const double gpu = kernels::cuda::bce_with_logits_forward(
      {z.get(), c.n, 1, 1}, {t.get(), c.n, 1, 1}, {w_dev, c.n, 1, 1});
  const double again = kernels::cuda::bce_with_logits_forward(
      {z.get(), c.n, 1, 1}, {t.get(), c.n, 1, 1}, {w_dev, c.n, 1, 1});
  EXPECT_TRUE(std::isfinite(gpu));
  EXPECT_NEAR(gpu, cpu, 1e-12 * std::fabs(cpu));
  EXPECT_EQ(std::memcmp(&gpu, &again, sizeof(double)), 0) << "the loss differs between runs";

  const std::vector<float> prior = away_from_zero(n, 74);
  for (bool accumulate : {false, true}) {
    const std::vector<float> start = accumulate ? prior : std::vector<float>(n, kNaN);
    std::vector<float> ref = start;
    kernels::cpu::bce_with_logits_backward({logits.data(), c.n, 1, 1}, {targets.data(), c.n, 1, 1},
                                           {w_host, c.n, 1, 1}, 0.75f, {ref.data(), c.n, 1, 1},
                                           accumulate);
    DeviceBuffer dz(start), dz_from(start), dloss(std::vector<float>{0.75f}), loss_out(std::vector<float>{kNaN});
    kernels::cuda::bce_with_logits_backward({z.get(), c.n, 1, 1}, {t.get(), c.n, 1, 1},
                                            {w_dev, c.n, 1, 1}, 0.75f, {dz.get(), c.n, 1, 1},
                                            accumulate);
    const std::vector<float> dz_host = dz.download();
    EXPECT_TRUE(close(dz_host, ref, 1e-10, 1e-6)) << "accumulate " << accumulate;
    // The f32 training step's entry points: the loss and dloss in device memory, bit for bit the others.
    kernels::cuda::bce_with_logits_backward_from({z.get(), c.n, 1, 1}, {t.get(), c.n, 1, 1}, {w_dev, c.n, 1, 1},
                                                 dloss.get(), {dz_from.get(), c.n, 1, 1}, accumulate);
    EXPECT_TRUE(bitwise_equal(dz_from.download(), dz_host)) << "backward_from, accumulate " << accumulate;
    kernels::cuda::bce_with_logits_forward_to({z.get(), c.n, 1, 1}, {t.get(), c.n, 1, 1}, {w_dev, c.n, 1, 1},
                                              loss_out.get());
    EXPECT_EQ(loss_out.download()[0], static_cast<float>(gpu)) << "forward_to";
  }
}

// bf16 operands are read natively, in any mix (bf16 logits and dlogits beside f32 targets and weights:
// the mixed-precision head; or everything bf16): the CPU emulation's loss (the same double maths on
// the same widened values: 1e-12 relative) and gradient (one rounding to bf16 of the f32 result: one
// bf16 ulp, 1e-10 + 8e-3 |ref|), through both entry points (host dloss, and device loss / dloss).
TEST_P(CudaBce, Bf16OperandsMatchCpuEmulation) {
  SKIP_WITHOUT_CUDA();
  const BceCase c = GetParam();
  const size_t n = size_t(c.n);
  const std::vector<float> logits = away_from_zero(n, 81, 0.05f, 6.0f);
  const std::vector<float> targets = uniform(n, 82, 0.0f, 1.0f), weights = uniform(n, 83, 0.25f, 2.0f);
  const std::vector<float> prior = away_from_zero(n, 84);
  using engine::Tensor;
  using kernels::DType;
  for (bool all_bf16 : {false, true})
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::string(all_bf16 ? "all bf16" : "bf16 logits, f32 targets") +
                   (accumulate ? ", accumulate" : ""));
      const DType other = all_bf16 ? DType::bf16 : DType::f32;
      auto run = [&](engine::Device d, double* loss, std::vector<float>* dz_host, std::vector<float>* dz_from_host) {
        const Tensor z = Tensor::from_vector({c.n, 1}, logits, d, DType::bf16);
        const Tensor t = Tensor::from_vector({c.n, 1}, targets, d, other);
        const Tensor w = Tensor::from_vector({c.n, 1}, weights, d, other);
        const Tensor dz = Tensor::from_vector({c.n, 1}, accumulate ? prior : std::vector<float>(n, kNaN), d, DType::bf16);
        const Tensor dz_from = dz.clone();
        const Tensor loss_out = Tensor::zeros({1}, d), dloss = Tensor::full({1}, 0.75f, d);
        const kernels::ConstMatrixView zv(z.raw_data(), c.n, 1, 1, DType::bf16), tv(t.raw_data(), c.n, 1, 1, other);
        const kernels::ConstMatrixView wv(c.weights ? w.raw_data() : nullptr, c.n, 1, 1, other);
        const kernels::MatrixView dzv(dz.raw_data(), c.n, 1, 1, DType::bf16), dz_fromv(dz_from.raw_data(), c.n, 1, 1, DType::bf16);
        if (d.is_cpu()) {
          *loss = kernels::cpu::bce_with_logits_forward(zv, tv, wv);
          kernels::cpu::bce_with_logits_backward(zv, tv, wv, 0.75f, dzv, accumulate);
          kernels::cpu::bce_with_logits_backward_from(zv, tv, wv, dloss.data(), dz_fromv, accumulate);
        } else {
          *loss = kernels::cuda::bce_with_logits_forward(zv, tv, wv);
          kernels::cuda::bce_with_logits_forward_to(zv, tv, wv, loss_out.data());
          EXPECT_EQ(loss_out.to_vector()[0], static_cast<float>(*loss)) << "forward_to: the forward's loss, rounded once";
          kernels::cuda::bce_with_logits_backward(zv, tv, wv, 0.75f, dzv, accumulate);
          kernels::cuda::bce_with_logits_backward_from(zv, tv, wv, dloss.data(), dz_fromv, accumulate);
        }
        *dz_host = dz.to_vector();
        *dz_from_host = dz_from.to_vector();
      };
      double cpu_loss = 0, gpu_loss = 0;
      std::vector<float> cpu_dz, cpu_dz_from, gpu_dz, gpu_dz_from;
      run(engine::Device::cpu(), &cpu_loss, &cpu_dz, &cpu_dz_from);
      run(engine::Device::cuda(), &gpu_loss, &gpu_dz, &gpu_dz_from);
      EXPECT_NEAR(gpu_loss, cpu_loss, 1e-12 * std::fabs(cpu_loss));
      EXPECT_TRUE(close(gpu_dz, cpu_dz, 1e-10, 8e-3)) << "backward";
      EXPECT_TRUE(close(gpu_dz_from, cpu_dz_from, 1e-10, 8e-3)) << "backward_from";
    }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, CudaBce,
    ::testing::Values(BceCase{"n1", 1, false}, BceCase{"batch32_weighted", 32, true},
                      BceCase{"batch7", 7, false},
                      BceCase{"n100003_weighted", 100003, true},
                      // more than 512 blocks of 256 threads: the reduction's grid-stride loop runs 4 times
                      BceCase{"n400009_weighted", 400009, true}),
    test_support::case_name<BceCase>);

TEST(CudaBceEdges, EmptyBatch) {
  SKIP_WITHOUT_CUDA();
  DeviceBuffer dz(std::vector<float>(2, kGapSentinel));
  EXPECT_EQ(kernels::cuda::bce_with_logits_forward({dz.get(), 0, 1, 1}, {dz.get(), 0, 1, 1},
                                                   {nullptr, 0, 1, 1}),
            0.0);
  kernels::cuda::bce_with_logits_backward({dz.get(), 0, 1, 1}, {dz.get(), 0, 1, 1},
                                          {nullptr, 0, 1, 1}, 1.0f, {dz.get(), 0, 1, 1}, false);
  EXPECT_TRUE(bitwise_equal(dz.download(), std::vector<float>(2, kGapSentinel)));
  // The device-side entry points: the loss of nothing is 0, written; no gradient is touched.
  DeviceBuffer loss(std::vector<float>(1, kGapSentinel)), dloss(std::vector<float>(1, 1.0f));
  kernels::cuda::bce_with_logits_forward_to({dz.get(), 0, 1, 1}, {dz.get(), 0, 1, 1}, {nullptr, 0, 1, 1}, loss.get());
  EXPECT_EQ(loss.download()[0], 0.0f) << "forward_to";
  kernels::cuda::bce_with_logits_backward_from({dz.get(), 0, 1, 1}, {dz.get(), 0, 1, 1}, {nullptr, 0, 1, 1},
                                               dloss.get(), {dz.get(), 0, 1, 1}, false);
  EXPECT_TRUE(bitwise_equal(dz.download(), std::vector<float>(2, kGapSentinel))) << "backward_from";
}

}  // namespace

#else

TEST(CudaLoss, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
