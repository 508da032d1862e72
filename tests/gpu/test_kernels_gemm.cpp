// GPU GEMM (kernels/cuda/gemm_cublas.cpp, cuBLAS) against the CPU reference (kernels/cpu/gemm.cpp,
// OpenBLAS): every transpose combination, padded leading dimensions with NaN gaps in A and B and a
// sentinel in C's gaps, alpha/beta, k == 0, linear-layer shapes of the two nets. C is NaN before a
// beta == 0 product (cuBLAS must not read it). Tolerances (atol + rtol |ref|), scale = sqrt(k) (the
// typical size of a sum of k products of values in [-1, 1]):
//   TF32 off (true FP32):   1e-5 * scale + 1e-5 |ref|
//   TF32 on (10-bit inputs): 4e-3 * scale + 4e-3 |ref|
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

using test_support::GemmCase;

class CudaGemm : public ::testing::TestWithParam<GemmCase> {};

void check(const GemmCase& c, bool tf32) {
  SwitchesGuard guard;
  kernels::cuda::set_allow_tf32(tf32);
  // Stored shapes: A is [m, k] (or [k, m] transposed), B is [k, n] (or [n, k]).
  const int64_t a_rows = c.transpose_a ? c.k : c.m, a_cols = c.transpose_a ? c.m : c.k;
  const int64_t b_rows = c.transpose_b ? c.n : c.k, b_cols = c.transpose_b ? c.k : c.n;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  const std::vector<float> a = strided(uniform(size_t(a_rows * a_cols), 1), a_rows, a_cols, lda, kNaN);
  const std::vector<float> b = strided(uniform(size_t(b_rows * b_cols), 2), b_rows, b_cols, ldb, kNaN);
  const std::vector<float> c_start =
      c.beta == 0.0f ? strided(std::vector<float>(size_t(c.m * c.n), kNaN), c.m, c.n, ldc, kGapSentinel)
                     : strided(away_from_zero(size_t(c.m * c.n), 3), c.m, c.n, ldc, kGapSentinel);
  std::vector<float> expected = c_start;
  kernels::cpu::gemm(c.transpose_a, c.transpose_b, c.m, c.n, c.k, c.alpha, a.data(), lda, b.data(),
                     ldb, c.beta, expected.data(), ldc);
  DeviceBuffer da(a), db(b), dc(c_start);
  kernels::cuda::gemm(c.transpose_a, c.transpose_b, c.m, c.n, c.k, c.alpha, da.get(), lda, db.get(),
                      ldb, c.beta, dc.get(), ldc);
  const std::vector<float> got = dc.download();
  const double scale = std::sqrt(double(std::max<int64_t>(c.k, 1)));
  const double tol = tf32 ? 4e-3 : 1e-5;
  EXPECT_TRUE(close(dense_part(got, c.m, c.n, ldc), dense_part(expected, c.m, c.n, ldc),
                    tol * scale, tol))
      << (tf32 ? "TF32 on" : "TF32 off");
  EXPECT_TRUE(gaps_untouched(got, c_start, c.m, c.n, ldc));
}

TEST_P(CudaGemm, Fp32) {
  SKIP_WITHOUT_CUDA();
  check(GetParam(), false);
}

TEST_P(CudaGemm, Tf32) {
  SKIP_WITHOUT_CUDA();
  check(GetParam(), true);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaGemm,
    ::testing::Values(GemmCase{"one", 1, 1, 1, false, false, 0, 1.0f, 0.0f},
                      GemmCase{"nn_37x53x29_pad3", 37, 53, 29, false, false, 3, 1.0f, 0.0f},
                      GemmCase{"tn_37x53x29_pad3", 37, 53, 29, true, false, 3, 1.0f, 0.0f},
                      GemmCase{"nt_37x53x29_pad3", 37, 53, 29, false, true, 3, 1.0f, 0.0f},
                      GemmCase{"tt_37x53x29_pad3", 37, 53, 29, true, true, 3, 1.0f, 0.0f},
                      GemmCase{"alpha_beta_accumulate", 31, 17, 64, false, true, 1, 0.5f, 1.0f},
                      GemmCase{"beta_half", 9, 11, 13, true, false, 2, -1.25f, 0.5f},
                      GemmCase{"k0_beta0", 5, 7, 0, false, false, 1, 1.0f, 0.0f},
                      GemmCase{"k0_beta_half", 5, 7, 0, false, false, 1, 1.0f, 0.5f},
                      // DenseNet-201 head: y[32, 1] = x[32, 1920] W[1, 1920]^T, and its backward
                      GemmCase{"densenet_head_fwd", 32, 1, 1920, false, true, 0, 1.0f, 0.0f},
                      GemmCase{"densenet_head_dw", 1, 1920, 32, true, false, 0, 1.0f, 1.0f},
                      // Inception-ResNet-v2 head at 1000 classes: x[32, 1536] W[1000, 1536]^T
                      GemmCase{"irv2_head_1000_fwd", 32, 1000, 1536, false, true, 0, 1.0f, 0.0f},
                      GemmCase{"irv2_head_1000_dx", 32, 1536, 1000, false, false, 0, 1.0f, 0.0f}),
    test_support::case_name<GemmCase>);

TEST(CudaGemmErrors, RowStrideSmallerThanRowThrows) {
  SKIP_WITHOUT_CUDA();
  DeviceBuffer a(16), b(16), c(16);
  EXPECT_THROW(kernels::cuda::gemm(false, false, 2, 2, 4, 1.0f, a.get(), 3, b.get(), 2, 0.0f,
                                   c.get(), 2),
               std::runtime_error);
}

}  // namespace

#else

TEST(CudaGemm, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
