// CPU GEMM (kernels/gemm.h; OpenBLAS, or the built-in fallback) against direct loops in double:
// every transpose combination, padded leading dimensions whose gaps hold NaN (never read, never
// written), alpha and beta, k == 0, and C full of NaN before a beta == 0 product (C must not be
// read then). The product is the same bits for 1 and 2 threads, and inside a parallel region.
//
// Tolerance: a float result r matches the double reference e when |r - e| <= 1e-4 + 1e-4 * |e|
// (inputs uniform in [-1, 1), at most a few thousand products per element).
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "support/kernel_cases.h"
#include "test_kernels_common.h"

namespace {

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
namespace cpu = kernels::cpu;

using test_support::GemmCase;

// The operands of one case: A stored [m, k] (or [k, m] transposed), B [k, n] (or [n, k]), C [m, n],
// each with row stride cols + pad. C starts as NaN when beta == 0, random otherwise.
struct GemmData {
  Matrix a, b, c;
  GemmData(const GemmCase& g, std::mt19937& rng)
      : a(random_matrix(g.transpose_a ? g.k : g.m, g.transpose_a ? g.m : g.k,
                        (g.transpose_a ? g.m : g.k) + g.pad, rng)),
        b(random_matrix(g.transpose_b ? g.n : g.k, g.transpose_b ? g.k : g.n,
                        (g.transpose_b ? g.k : g.n) + g.pad, rng)),
        c(g.beta == 0.0f ? Matrix(g.m, g.n, g.n + g.pad, kNaN)
                         : random_matrix(g.m, g.n, g.n + g.pad, rng)) {}
};

void run_gemm(const GemmCase& g, const GemmData& d, Matrix* c) {
  cpu::gemm(g.transpose_a, g.transpose_b, g.m, g.n, g.k, g.alpha, d.a.ptr(), d.a.ld, d.b.ptr(),
            d.b.ld, g.beta, c->ptr(), c->ld);
}

// C = alpha * op(A) op(B) + beta * C0, in double, straight from gemm.h (beta == 0: C0 is not read).
Reference gemm_reference(const GemmCase& g, const GemmData& d) {
  Reference ref(g.m, g.n);
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < g.k; ++p) {
        const double a = g.transpose_a ? d.a.at(p, i) : d.a.at(i, p);
        const double b = g.transpose_b ? d.b.at(j, p) : d.b.at(p, j);
        acc += a * b;
      }
      ref.at(i, j) = double(g.alpha) * acc + (g.beta != 0.0f ? double(g.beta) * d.c.at(i, j) : 0.0);
    }
  return ref;
}

class CpuGemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(CpuGemm, MatchesDoubleLoops) {
  const GemmCase g = GetParam();
  std::mt19937 rng(7);
  const GemmData d(g, rng);
  Matrix c = d.c;
  run_gemm(g, d, &c);
  EXPECT_TRUE(matches(c, gemm_reference(g, d)));
}

TEST_P(CpuGemm, SameBitsForOneAndTwoThreads) {
  const GemmCase g = GetParam();
  std::mt19937 rng(8);
  const GemmData d(g, rng);
  const int threads = cpu::num_threads();
  Matrix c[2] = {d.c, d.c};
  for (int t = 0; t < 2; ++t) {
    cpu::set_num_threads(t + 1);
    run_gemm(g, d, &c[t]);
  }
  cpu::set_num_threads(threads);
  EXPECT_TRUE(bitwise_equal(c[0], c[1]));
}

// Inside a parallel region (a kernel's own parallel loop) gemm runs the same parts one after the other:
// the same bits as outside. gemm_serial is the same for 1 and 2 threads too (one call).
TEST_P(CpuGemm, SameBitsInsideAParallelRegionAndAsOneSerialCall) {
  const GemmCase g = GetParam();
  std::mt19937 rng(9);
  const GemmData d(g, rng);
  const int threads = cpu::num_threads();
  cpu::set_num_threads(2);
  Matrix outside = d.c, inside = d.c, serial[2] = {d.c, d.c};
  run_gemm(g, d, &outside);
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    run_gemm(g, d, &inside);
  }
  for (int t = 0; t < 2; ++t) {
    cpu::set_num_threads(t + 1);
    cpu::gemm_serial(g.transpose_a, g.transpose_b, g.m, g.n, g.k, g.alpha, d.a.ptr(), d.a.ld, d.b.ptr(), d.b.ld,
                     g.beta, serial[t].ptr(), serial[t].ld);
  }
  cpu::set_num_threads(threads);
  EXPECT_TRUE(bitwise_equal(outside, inside));
  EXPECT_TRUE(bitwise_equal(serial[0], serial[1]));
  EXPECT_TRUE(matches(serial[0], gemm_reference(g, d)));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuGemm,
    ::testing::Values(GemmCase{"nn", 7, 5, 3, false, false, 0, 1.0f, 0.0f},
                      GemmCase{"nt_padded", 13, 9, 11, false, true, 3, 1.0f, 0.0f},
                      GemmCase{"tn_alpha_beta", 17, 6, 19, true, false, 2, 0.5f, 1.0f},
                      GemmCase{"tt_negative_alpha", 5, 8, 4, true, true, 1, -1.5f, 0.25f},
                      GemmCase{"k0_beta0_zeroes_c", 4, 3, 0, false, false, 1, 1.0f, 0.0f},
                      GemmCase{"k0_scales_c", 4, 3, 0, false, false, 1, 1.0f, 2.0f},
                      GemmCase{"linear_head", 8, 1, 1920, false, true, 0, 1.0f, 1.0f},
                      GemmCase{"wide_short", 3, 700, 64, false, false, 5, 1.0f, 0.0f},
                      GemmCase{"tall_narrow", 1031, 7, 33, false, false, 0, 1.0f, 0.0f},
                      GemmCase{"weight_gradient_tn", 24, 40, 300, true, false, 4, 1.0f, 1.0f},
                      // Large enough to be split in two (rows, then columns), at a row that is not a
                      // multiple of 12 (OpenBLAS's AVX2 kernels round a row by its place in a block of 12).
                      GemmCase{"split_rows", 1000, 64, 100, false, true, 0, 1.0f, 0.0f},
                      GemmCase{"split_columns_beta", 40, 900, 200, true, false, 3, 1.0f, 0.5f}),
    test_support::case_name<GemmCase>);

}  // namespace
