// The GPU's mixed-precision GEMM (kernels/cuda/gemm_cublas.cpp: gemm_mixed, cuBLAS with bf16 A and B
// and CUBLAS_COMPUTE_32F) against the CPU reference (kernels/cpu/gemm.cpp), on the same bf16 inputs:
// every transpose, row-strided operands, beta != 0 (a bf16 C read widened), k = 0, an f32 C and a bf16
// C. Tolerances, atol + rtol |cpu|:
//   f32 C:  1e-5 + 1e-5 (bf16 products are exact in f32: only the summation order differs)
//   bf16 C: 1e-5 + 8e-3 (that order may move a sum across a rounding boundary: one bf16 ulp, at most
//           2^-7 = 7.8e-3 of the value)
// Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "engine/ops/common.h"
#include "engine/tensor.h"
#include "gpu_test_util.h"
#include "kernels/gemm.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using engine::Device;
using engine::DType;
using engine::Tensor;

struct MixedCase {
  const char* name;
  bool ta, tb;
  int64_t m, n, k, pad;
  DType out;
  float alpha, beta;
};

void PrintTo(const MixedCase& c, std::ostream* os) { *os << c.name; }

class CudaBf16Gemm : public ::testing::TestWithParam<MixedCase> {};

// A [rows, cols] matrix of `dtype` with row stride cols + pad (a slice of a wider buffer), on `device`:
// uniform values from `seed`, or NaN everywhere when seed == 0.
Tensor strided_bf16(int64_t rows, int64_t cols, int64_t pad, uint64_t seed, Device device, DType dtype) {
  const size_t count = size_t(rows * (cols + pad));
  const std::vector<float> values = seed == 0 ? std::vector<float>(count, gpu_test::kNaN) : gpu_test::uniform(count, seed);
  const Tensor wide = Tensor::from_vector({rows, cols + pad}, values, Device::cpu(), dtype).to(device);
  return wide.slice(1, 0, cols);
}

TEST_P(CudaBf16Gemm, MatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  const MixedCase g = GetParam();
  std::vector<Tensor> results;
  for (Device device : {Device::cpu(), Device::cuda()}) {
    const Tensor a = strided_bf16(g.ta ? g.k : g.m, g.ta ? g.m : g.k, g.pad, 1, device, DType::bf16);
    const Tensor b = strided_bf16(g.tb ? g.n : g.k, g.tb ? g.k : g.n, g.pad, 2, device, DType::bf16);
    const Tensor c = strided_bf16(g.m, g.n, g.pad, g.beta == 0.0f ? 0 : 3, device, g.out);  // NaN: never read
    const auto gemm = ENGINE_KERNEL(device, gemm_mixed);
    gemm(g.ta, g.tb, g.alpha, engine::detail::as_rows(a), engine::detail::as_rows(b), g.beta,
         engine::detail::as_rows(c));
    results.push_back(c);
  }
  const double rtol = g.out == DType::bf16 ? 8e-3 : 1e-5;
  EXPECT_TRUE(gpu_test::close(results[1].to_vector(), results[0].to_vector(), 1e-5, rtol));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CudaBf16Gemm,
    ::testing::Values(MixedCase{"plain_bf16_out", false, false, 33, 17, 64, 0, DType::bf16, 1.0f, 0.0f},
                      MixedCase{"plain_f32_out", false, false, 33, 17, 64, 0, DType::f32, 1.0f, 0.0f},
                      MixedCase{"transpose_b_strided", false, true, 20, 31, 129, 3, DType::bf16, 1.0f, 0.0f},
                      MixedCase{"transpose_a_strided", true, false, 19, 8, 40, 5, DType::bf16, 1.0f, 0.0f},
                      MixedCase{"both_beta_bf16", true, true, 12, 14, 300, 2, DType::bf16, 0.5f, 1.0f},
                      MixedCase{"accumulate_f32", false, true, 64, 40, 96, 1, DType::f32, 1.0f, 1.0f},
                      MixedCase{"k_zero", true, false, 4, 5, 0, 0, DType::bf16, 1.0f, 2.0f}),
    [](const ::testing::TestParamInfo<MixedCase>& info) { return std::string(info.param.name); });

TEST(CudaBf16GemmF32Inputs, F32InputsWithABf16OutputRoundTheF32Product) {
  SKIP_WITHOUT_CUDA();
  gpu_test::SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(false);
  std::vector<Tensor> results;
  for (Device device : {Device::cpu(), Device::cuda()}) {
    const Tensor a = strided_bf16(9, 30, 0, 4, device, DType::f32);
    const Tensor b = strided_bf16(30, 11, 0, 5, device, DType::f32);
    const Tensor c = Tensor::empty({9, 11}, device, DType::bf16);
    ENGINE_KERNEL(device, gemm_mixed)(false, false, 1.0f, engine::detail::as_rows(a), engine::detail::as_rows(b),
                                      0.0f, engine::detail::as_rows(c));
    results.push_back(c);
  }
  EXPECT_TRUE(gpu_test::close(results[1].to_vector(), results[0].to_vector(), 1e-5, 8e-3));
}

}  // namespace

#else

TEST(CudaBf16Gemm, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif  // ENGINE_WITH_CUDA
